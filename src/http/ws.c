/* SPDX-License-Identifier: MIT */
/*
 * WebSocket (RFC 6455) on the HTTP/1.1 server: the opening handshake of a
 * WebSocket route, then the framing, on the connection's own task.
 *
 * The framing is ours, not libwslay's (docs/design.md, "WebSocket framing:
 * why not wslay"): a reader parses frames straight out of the aw_stream's
 * read buffer with waits that take deadlines and are cancellation points,
 * and writers put whole frames through aw_stream_writev, which gives the
 * backpressure. State that outlives a wait (a frame half read, a message
 * half assembled) lives in the aw_ws, so a recv that times out can be
 * called again and goes on where it stopped.
 *
 * Tasks: one task reads at a time (ws->reading); any task may send (a lock
 * keeps frames whole). The reader answers pings and close frames. A task
 * that closes while another reads sends the close frame and waits for the
 * reader to see the peer's (ws->closed); a reader waiting for bytes is
 * woken (its wait scope cancelled) when the socket ends elsewhere or the
 * server drains.
 */
#include "internal.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_SMALL_FRAME 2048   /* payloads copied next to their header */

enum { WS_OPEN, WS_CLOSED };
enum { FILL_OK = 1, FILL_END = 0, FILL_WAKE = 2 };

typedef struct aw_ws_route {
	aw_ws_handler fn;
	void *ud;
	aw_ws_opts o;
	char **origins;      /* NULL-terminated copies, or NULL */
	char **protocols;
	struct aw_ws_route *next;
} aw_ws_route;

/* An incremental UTF-8 check: bytes still expected in a sequence and the
 * range of the next one. */
typedef struct u8st {
	uint8_t need, lo, hi;
} u8st;

struct aw_ws {
	aw_mgr mgr;
	aw_iter iter;
	aw_http_conn *c;
	aw_stream *s;
	aw_http_request *req;
	const aw_ws_opts *o;
	const char *protocol;
	void *data;

	/* reading */
	bool reading;
	aw_scope *wait_scope;      /* the reader's wait for bytes (to wake it) */
	aw_time last_rx;
	bool ping_out;
	bool in_frame;             /* a frame's header was consumed, payload left */
	uint8_t op;                /* the frame's opcode */
	bool fin;
	uint8_t mask[4];
	uint64_t left;             /* payload bytes still to read */
	unsigned mpos;             /* mask position */
	int frag;                  /* type of the message being assembled (0: none) */
	u8st u8;                   /* UTF-8 check of the text being assembled */
	aw_buf msg;
	char ctrl[126];
	size_t ctrl_len;
	aw_ws_msg out;
	unsigned streak;           /* messages since the last yield */

	/* writing */
	aw_lock wlock;
	uint64_t bytes_sent;

	/* closing */
	int state;
	bool close_sent;
	aw_time close_deadline;
	int code;
	bool by_peer;
	bool going_away;
	aw_event closed;
};

/* ---- UTF-8 ------------------------------------------------------------------------ */

/* Incremental check (RFC 3629: no overlongs, no surrogates, <= U+10FFFF);
 * the state carries a sequence split across fragments. */
static bool utf8_feed(u8st *st, const uint8_t *p, size_t n)
{
	uint8_t need = st->need, lo = st->lo, hi = st->hi;
	for (size_t i = 0; i < n; i++) {
		uint8_t b = p[i];
		if (need) {
			if (b < lo || b > hi)
				return false;
			lo = 0x80, hi = 0xBF;
			need--;
			continue;
		}
		if (b < 0x80) {
			/* a run of ASCII, 8 at a time */
			while (i + 8 <= n) {
				uint64_t w;
				memcpy(&w, p + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			if (i < n && p[i] >= 0x80)
				i--;
			continue;
		}
		lo = 0x80, hi = 0xBF;
		if (b >= 0xC2 && b <= 0xDF)
			need = 1;
		else if (b == 0xE0)
			need = 2, lo = 0xA0;
		else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF)
			need = 2;
		else if (b == 0xED)
			need = 2, hi = 0x9F;
		else if (b == 0xF0)
			need = 3, lo = 0x90;
		else if (b >= 0xF1 && b <= 0xF3)
			need = 3;
		else if (b == 0xF4)
			need = 3, hi = 0x8F;
		else
			return false;
	}
	st->need = need, st->lo = lo, st->hi = hi;
	return true;
}

static bool utf8_valid(const void *p, size_t n)
{
	u8st t = { 0, 0, 0 };
	return utf8_feed(&t, p, n) && t.need == 0;
}

/* ---- writing ------------------------------------------------------------------------ */

static void wake_reader(aw_ws *ws)
{
	if (ws->wait_scope)
		aw_scope_cancel(ws->wait_scope);
}

/* The socket has ended (no more frames either way). */
static void ended(aw_ws *ws, int code, bool by_peer)
{
	if (ws->state == WS_CLOSED)
		return;
	ws->state = WS_CLOSED;
	if (!ws->code)
		ws->code = code;
	ws->by_peer = by_peer;
	aw_event_set(&ws->closed);
	wake_reader(ws);
}

/* A peer that does not read: drop the connection now rather than drain
 * what is queued for it (the server's close would wait for that): later
 * writes fail at once (EPIPE after the shutdown) and the close resets the
 * connection (SO_LINGER 0), discarding the kernel's queue. */
static void drop(aw_ws *ws)
{
	int fd = aw_stream_fd(ws->s);
	struct linger lg = { 1, 0 };
	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	(void)shutdown(fd, SHUT_WR);
}

/* One whole frame (server frames are not masked). A failure breaks the
 * connection: the socket ends with 1006. */
static int write_frame(aw_ws *ws, int op, const void *p, size_t n, aw_time deadline)
{
	uint8_t h[10];
	size_t hl;
	h[0] = (uint8_t)(0x80 | op);
	if (n < 126) {
		h[1] = (uint8_t)n;
		hl = 2;
	} else if (n <= 0xFFFF) {
		h[1] = 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	if (!aw_lock_try(&ws->wlock)) {
		int rc = (aw_lock_acquire)(&ws->wlock);
		if (rc < 0)
			return rc;
	}
	int rc;
	if (n <= WS_SMALL_FRAME) {
		/* One send for a small frame: header and payload side by side
		 * (a writev of two pieces would be two sends, two segments). */
		uint8_t buf[10 + WS_SMALL_FRAME];
		memcpy(buf, h, hl);
		if (n)
			memcpy(buf + hl, p, n);
		rc = (aw_stream_write)(ws->s, buf, hl + n, deadline);
	} else {
		struct iovec iov[2] = { { h, hl }, { (void *)p, n } };
		rc = (aw_stream_writev)(ws->s, iov, 2, deadline);
	}
	(void)!aw_lock_release(&ws->wlock);
	if (rc < 0) {
		if (rc == -ETIMEDOUT)
			drop(ws);
		ended(ws, AW_WS_ABNORMAL, true);
		return rc;
	}
	ws->bytes_sent += n;
	return 0;
}

static int send_close_frame(aw_ws *ws, int code, const char *reason)
{
	char p[125];
	size_t n = 0;
	if (code && code != AW_WS_NO_STATUS) {
		p[0] = (char)(code >> 8);
		p[1] = (char)code;
		n = 2;
		if (reason) {
			size_t r = strlen(reason);
			if (r > 123)
				r = 123;
			memcpy(p + 2, reason, r);
			n += r;
		}
	}
	ws->close_sent = true;
	ws->close_deadline = aw__http_after(ws->o->close_timeout);
	return write_frame(ws, 8, p, n, ws->close_deadline);
}

/* Fail the connection (RFC 6455 7.1.7): the close frame with the code, no
 * wait for the peer's. */
static int fail(aw_ws *ws, int code, const char *why)
{
	if (!ws->close_sent && ws->state != WS_CLOSED) {
		int rc = send_close_frame(ws, code, why);
		if (rc < 0)
			aw_error_clear();
	}
	ws->code = code;
	ended(ws, code, false);
	return 0;
}

/* ---- reading ------------------------------------------------------------------------ */

/* Wait until `need` bytes are buffered. FILL_OK; FILL_END when the socket
 * has ended (end of stream, reset, idle peer, the close handshake's time is
 * up); FILL_WAKE when the server drains; or the caller's deadline or
 * cancellation (negative, raised). Answers the ping timer on the way. */
static int fill(aw_ws *ws, size_t need, aw_time deadline)
{
	for (;;) {
		if (ws->state == WS_CLOSED)
			return FILL_END;
		const char *d;
		size_t n;
		aw_stream_peek(ws->s, &d, &n);
		if (n >= need)
			return FILL_OK;
		if (ws->going_away && !ws->close_sent)
			return FILL_WAKE;
		const aw_ws_opts *o = ws->o;
		aw_time idle_at = ws->last_rx + o->idle_timeout;
		aw_time t = idle_at;
		if (!ws->ping_out && ws->last_rx + o->ping_interval < t)
			t = ws->last_rx + o->ping_interval;
		if (ws->close_sent && ws->close_deadline < t)
			t = ws->close_deadline;
		/* The timer is the fill's deadline (the stream raises its own
		 * -ETIMEDOUT: told from the caller's by the clock); the scope is
		 * only there to be woken (aw_scope_cancel). */
		aw_scope sc;
		ssize_t r = 0;
		bool ours = t < deadline;
		AW_WITH(aw_move_on_at_init(&sc, AW_NEVER)) {
			ws->wait_scope = &sc;
			r = (aw_stream_fill)(ws->s, need + 64 * 1024, ours ? t : deadline);
		}
		ws->wait_scope = NULL;
		if (sc.fired || (r == -ETIMEDOUT && ours && aw_now() >= t)) {
			if (!sc.fired)
				aw_error_clear();   /* our timer, not the caller's deadline */
			if (ws->state == WS_CLOSED)
				return FILL_END;
			if (ws->going_away && !ws->close_sent)
				return FILL_WAKE;
			aw_time now = aw_now();
			if (ws->close_sent && now >= ws->close_deadline) {
				ended(ws, ws->code, false);   /* no answer: done anyway */
				return FILL_END;
			}
			if (now >= idle_at) {
				fail(ws, AW_WS_GOING_AWAY, "idle timeout");
				ws->code = AW_WS_ABNORMAL;
				return FILL_END;
			}
			if (!ws->ping_out && now >= ws->last_rx + o->ping_interval) {
				ws->ping_out = true;
				if (write_frame(ws, 9, NULL, 0, aw__http_after(o->send_timeout)) < 0) {
					aw_error_clear();
					return FILL_END;
				}
			}
			continue;
		}
		if (r > 0) {
			ws->last_rx = aw_now();
			ws->ping_out = false;
			continue;
		}
		if (r == -ETIMEDOUT || r == -ECANCELED)
			return (int)r;   /* the caller's deadline or cancellation */
		/* end of stream or a broken connection */
		aw_error_clear();
		ended(ws, AW_WS_ABNORMAL, true);
		return FILL_END;
	}
}

static bool close_code_ok(int code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

/* The peer's close frame (payload in ws->ctrl). */
static int on_close(aw_ws *ws)
{
	int code = AW_WS_NO_STATUS;
	if (ws->ctrl_len == 1)
		return fail(ws, AW_WS_PROTOCOL_ERROR, "close frame of one byte");
	if (ws->ctrl_len >= 2) {
		code = ((uint8_t)ws->ctrl[0] << 8) | (uint8_t)ws->ctrl[1];
		if (!close_code_ok(code))
			return fail(ws, AW_WS_PROTOCOL_ERROR, "invalid close code");
		if (!utf8_valid(ws->ctrl + 2, ws->ctrl_len - 2))
			return fail(ws, AW_WS_INVALID_DATA, "close reason is not UTF-8");
	}
	if (ws->close_sent) {
		ended(ws, ws->code, false);   /* the answer to ours */
		return 0;
	}
	/* Echo the code (RFC 6455 5.5.1), then the socket has ended. */
	ws->code = code;
	if (send_close_frame(ws, code, NULL) < 0)
		aw_error_clear();
	ended(ws, code, true);
	return 0;
}

/* The next message into ws->out: 1; 0 once the socket has ended; or the
 * deadline's or cancellation's code. */
static int recv_msg(aw_ws *ws, aw_time deadline)
{
	const aw_ws_opts *o = ws->o;
	/* Fairness: a peer that sends faster than the handler works would
	 * keep the buffer full and this task running without a wait (the
	 * loop's other tasks starved): let them run every 32 messages. */
	if (++ws->streak >= 32) {
		ws->streak = 0;
		int rc = (aw_yield)();
		if (rc < 0)
			return rc;
	}
	for (;;) {
		if (ws->state == WS_CLOSED)
			return 0;
		if (ws->going_away && !ws->close_sent) {
			ws->code = AW_WS_GOING_AWAY;
			if (send_close_frame(ws, AW_WS_GOING_AWAY, "server shutdown") < 0) {
				aw_error_clear();
				return 0;
			}
			continue;
		}
		const char *d;
		size_t n;
		int rc;
		if (!ws->in_frame) {
			rc = fill(ws, 2, deadline);
			if (rc != FILL_OK) {
				if (rc == FILL_WAKE)
					continue;
				return rc;
			}
			aw_stream_peek(ws->s, &d, &n);
			uint8_t b0 = (uint8_t)d[0], b1 = (uint8_t)d[1];
			unsigned l7 = b1 & 0x7F;
			size_t hl = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
			if (!(b1 & 0x80))
				return fail(ws, AW_WS_PROTOCOL_ERROR, "client frame not masked");
			if (b0 & 0x70)
				return fail(ws, AW_WS_PROTOCOL_ERROR, "reserved bits set");
			rc = fill(ws, hl, deadline);
			if (rc != FILL_OK) {
				if (rc == FILL_WAKE)
					continue;
				return rc;
			}
			aw_stream_peek(ws->s, &d, &n);
			const uint8_t *h = (const uint8_t *)d;
			uint64_t len = l7;
			if (l7 == 126)
				len = (uint64_t)h[2] << 8 | h[3];
			else if (l7 == 127) {
				len = 0;
				for (int i = 0; i < 8; i++)
					len = len << 8 | h[2 + i];
				if (len >> 63)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "frame length out of range");
			}
			uint8_t op = b0 & 0x0F;
			bool fin = b0 & 0x80;
			if (op & 8) {
				if (op > 10)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "unknown control opcode");
				if (!fin)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "fragmented control frame");
				if (len > 125)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "control frame over 125 bytes");
				ws->ctrl_len = 0;
			} else {
				if (op > 2)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "unknown opcode");
				if (op == 0 && !ws->frag)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "continuation frame without a message");
				if (op != 0 && ws->frag)
					return fail(ws, AW_WS_PROTOCOL_ERROR, "new message inside a fragmented one");
				if (op != 0 && !(o->accept & (op == 1 ? AW_WS_TEXT : AW_WS_BINARY)))
					return fail(ws, AW_WS_UNSUPPORTED,
						    op == 1 ? "text messages not accepted" : "binary messages not accepted");
				if (len > o->max_frame)
					return fail(ws, AW_WS_TOO_BIG, "frame too big");
				if (op != 0) {
					ws->frag = op;
					ws->msg.len = 0;
					ws->u8 = (u8st){ 0, 0, 0 };
				}
				if (len > o->max_message - ws->msg.len)
					return fail(ws, AW_WS_TOO_BIG, "message too big");
				if (aw__buf_reserve(&ws->msg, (size_t)len + 1))
					return aw_raise(-ENOMEM, "WebSocket: no memory for a message of %llu bytes",
							(unsigned long long)(ws->msg.len + len));
			}
			memcpy(ws->mask, h + hl - 4, 4);
			ws->op = op;
			ws->fin = fin;
			ws->left = len;
			ws->mpos = 0;
			ws->in_frame = true;
			aw_stream_consume(ws->s, hl);
		}
		bool ctrl = ws->op & 8;
		while (ws->left) {
			rc = fill(ws, 1, deadline);
			if (rc != FILL_OK) {
				if (rc == FILL_WAKE) {
					ws->code = AW_WS_GOING_AWAY;
					if (send_close_frame(ws, AW_WS_GOING_AWAY, "server shutdown") < 0) {
						aw_error_clear();
						return 0;
					}
					continue;
				}
				return rc;
			}
			aw_stream_peek(ws->s, &d, &n);
			size_t take = n < ws->left ? n : (size_t)ws->left;
			uint8_t *dst = ctrl ? (uint8_t *)ws->ctrl + ws->ctrl_len : (uint8_t *)ws->msg.p + ws->msg.len;
			const uint8_t *src = (const uint8_t *)d;
			unsigned m = ws->mpos;
			for (size_t i = 0; i < take; i++)
				dst[i] = src[i] ^ ws->mask[(m + i) & 3];
			ws->mpos = (unsigned)((m + take) & 3);
			aw_stream_consume(ws->s, take);
			ws->left -= take;
			if (ctrl) {
				ws->ctrl_len += take;
			} else {
				ws->msg.len += take;
				if (ws->frag == 1 && !utf8_feed(&ws->u8, dst, take))
					return fail(ws, AW_WS_INVALID_DATA, "text message is not UTF-8");
			}
		}
		ws->in_frame = false;
		if (ctrl) {
			if (ws->op == 9) {   /* ping: pong with its payload */
				if (!ws->close_sent &&
				    write_frame(ws, 10, ws->ctrl, ws->ctrl_len, aw__http_after(o->send_timeout)) < 0) {
					aw_error_clear();
					return 0;
				}
			} else if (ws->op == 8) {
				return on_close(ws);
			}
			continue;
		}
		if (!ws->fin)
			continue;
		if (ws->frag == 1 && ws->u8.need)
			return fail(ws, AW_WS_INVALID_DATA, "text message ends inside a UTF-8 sequence");
		ws->msg.p[ws->msg.len] = '\0';
		ws->out = (aw_ws_msg){ ws->frag == 1 ? AW_WS_TEXT : AW_WS_BINARY, ws->msg.p, ws->msg.len };
		ws->frag = 0;
		if (ws->close_sent)
			continue;   /* closing: messages are dropped */
		return 1;
	}
}

int (aw_ws_recv)(aw_ws *ws, aw_ws_msg **msg, aw_time deadline)
{
	*msg = NULL;
	if (ws->reading)
		return aw_raise(-AW_EBUSY_WAIT, "aw_ws_recv: another task reads this WebSocket");
	ws->reading = true;
	int rc = recv_msg(ws, deadline);
	ws->reading = false;
	if (rc == 1)
		*msg = &ws->out;
	return rc;
}

/* ---- the iterator and the manager ------------------------------------------------------ */

static int iter_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int iter_exit(aw_mgr *m, int err)
{
	(void)m;
	return err;
}

static int iter_next(aw_iter *it, void **item)
{
	aw_ws *ws = AW_CONTAINER_OF(it, aw_ws, iter);
	aw_ws_msg *msg;
	int rc = (aw_ws_recv)(ws, &msg, AW_NEVER);
	*item = msg;
	return rc;
}

static const aw_mgr_ops iter_ops = { .name = "websocket messages", .enter = iter_enter, .exit = iter_exit };

aw_iter *aw_ws_messages(aw_ws *ws)
{
	return &ws->iter;
}

typedef struct close_args {
	aw_ws *ws;
	int code;
	const char *reason;
} close_args;

static int close_now(aw_ws *ws, int code, const char *reason)
{
	if (ws->state == WS_CLOSED)
		return 0;
	if (!ws->close_sent) {
		ws->code = code;
		if (send_close_frame(ws, code, reason) < 0) {
			aw_error_clear();
			return 0;
		}
	}
	if (ws->reading) {
		/* The reader sees the peer's close frame: wait for it. */
		aw_scope sc;
		int rc = 0;
		AW_WITH(aw_move_on_at_init(&sc, ws->close_deadline)) {
			while (ws->state != WS_CLOSED && (rc = aw_event_wait(&ws->closed)) == 0)
				;
		}
		if (sc.fired || ws->state != WS_CLOSED) {
			ended(ws, ws->code, false);
			if (rc < 0 && !sc.fired)
				return rc;
		}
		return 0;
	}
	ws->reading = true;
	int rc;
	while ((rc = recv_msg(ws, AW_NEVER)) == 1)
		;   /* dropped */
	ws->reading = false;
	return rc;
}

int (aw_ws_close)(aw_ws *ws, int code, const char *reason)
{
	if (!close_code_ok(code) || code == 1004 || code == 1005 || code == 1006)
		return aw_raise(-EINVAL, "aw_ws_close: %d is not a close code one may send", code);
	if (reason && (strlen(reason) > 123 || !utf8_valid(reason, strlen(reason))))
		return aw_raise(-EINVAL, "aw_ws_close: the reason must be UTF-8 of at most 123 bytes");
	return close_now(ws, code, reason);
}

static int close_cb(void *arg, int err)
{
	(void)err;
	close_args *a = arg;
	return close_now(a->ws, a->code, a->reason);
}

static int close_code_for(const aw_ws *ws, int err)
{
	if (ws->going_away || err == -ECANCELED)
		return AW_WS_GOING_AWAY;
	return err ? AW_WS_INTERNAL_ERROR : AW_WS_NORMAL;
}

static int mgr_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int mgr_exit(aw_mgr *m, int err)
{
	aw_ws *ws = AW_CONTAINER_OF(m, aw_ws, mgr);
	if (ws->state != WS_CLOSED) {
		close_args a = { ws, close_code_for(ws, err), NULL };
		(void)!aw_cleanup_run(close_cb, &a, AW_NEVER);
	}
	return err;
}

static void mgr_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_ws *ws = AW_CONTAINER_OF(m, aw_ws, mgr);
	snprintf(buf, len, "%s, %llu bytes sent", ws->state == WS_CLOSED ? "closed" : ws->close_sent ? "closing" : "open",
		 (unsigned long long)ws->bytes_sent);
}

static const aw_mgr_ops mgr_ops = { .name = "websocket", .enter = mgr_enter, .exit = mgr_exit,
				    .describe = mgr_describe };

aw_mgr *aw_ws_mgr(aw_ws *ws) { return &ws->mgr; }

/* ---- sending ---------------------------------------------------------------------- */

int (aw_ws_send)(aw_ws *ws, int type, const void *data, size_t len)
{
	if (type != AW_WS_TEXT && type != AW_WS_BINARY)
		return aw_raise(-EINVAL, "aw_ws_send: type %d is neither AW_WS_TEXT nor AW_WS_BINARY", type);
	if (type == AW_WS_TEXT && !utf8_valid(data, len))
		return aw_raise(-EILSEQ, "aw_ws_send: the text is not valid UTF-8");
	if (ws->state == WS_CLOSED || ws->close_sent)
		return aw_raise(-AW_ECLOSED, "aw_ws_send: the WebSocket is closed (%d)", ws->code);
	return write_frame(ws, type == AW_WS_TEXT ? 1 : 2, data, len, aw__http_after(ws->o->send_timeout));
}

int aw_ws_send_text(aw_ws *ws, const char *text)
{
	return (aw_ws_send)(ws, AW_WS_TEXT, text, text ? strlen(text) : 0);
}

int aw_ws_ping(aw_ws *ws, const void *data, size_t len)
{
	if (len > 125)
		return aw_raise(-EINVAL, "aw_ws_ping: %zu bytes of payload (125 at most)", len);
	if (ws->state == WS_CLOSED || ws->close_sent)
		return aw_raise(-AW_ECLOSED, "aw_ws_ping: the WebSocket is closed");
	return write_frame(ws, 9, data, len, aw__http_after(ws->o->send_timeout));
}

int aw_ws_close_code(const aw_ws *ws) { return ws->state == WS_CLOSED ? ws->code : 0; }
bool aw_ws_closed_by_peer(const aw_ws *ws) { return ws->by_peer; }
const char *aw_ws_protocol(const aw_ws *ws) { return ws->protocol; }
aw_http_request *aw_ws_request(const aw_ws *ws) { return ws->req; }
void aw_ws_set_data(aw_ws *ws, void *data) { ws->data = data; }
void *aw_ws_data(const aw_ws *ws) { return ws->data; }

void aw__ws_going_away(aw_ws *ws)
{
	ws->going_away = true;
	wake_reader(ws);
}

/* ---- the opening handshake ------------------------------------------------------------ */

/* Does the comma-separated header value hold `token` (case-insensitive)? */
static bool has_token(aw_str v, const char *token)
{
	if (!v.p)
		return false;
	size_t tl = strlen(token);
	const char *p = v.p, *end = v.p + v.len;
	while (p < end) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
			p++;
		const char *s = p;
		while (p < end && *p != ',')
			p++;
		const char *e = p;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
			return true;
	}
	return false;
}

static int refuse(aw_http_response *res, int status, const char *detail)
{
	char body[256];
	int n = snprintf(body, sizeof body, "{\"detail\": \"%s\"}", detail);
	return aw_http_send(res, status, "application/json", body, (size_t)n);
}

static bool origin_ok(const aw_ws_route *rt, aw_http_request *req)
{
	aw_str origin = aw_http_header(req, "Origin");
	if (rt->origins) {
		for (char **o = rt->origins; *o; o++)
			if (strcmp(*o, "*") == 0 ||
			    (origin.p && strlen(*o) == origin.len && strncasecmp(*o, origin.p, origin.len) == 0))
				return true;
		return false;
	}
	if (!origin.p)
		return true;   /* not a browser */
	const char *sep = memmem(origin.p, origin.len, "://", 3);
	if (!sep)
		return false;  /* "null" and the like */
	aw_str host = aw_http_header(req, "Host");
	const char *h = sep + 3;
	size_t hl = origin.len - (size_t)(h - origin.p);
	return host.p && host.len == hl && strncasecmp(host.p, h, hl) == 0;
}

/* The server's first protocol that the client offers, or NULL. */
static const char *pick_protocol(const aw_ws_route *rt, aw_http_request *req)
{
	if (!rt->protocols)
		return NULL;
	for (char **p = rt->protocols; *p; p++) {
		aw_str name, value;
		for (size_t i = 0; aw_http_header_at(req, i, &name, &value); i++)
			if (name.len == 22 && strncasecmp(name.p, "Sec-WebSocket-Protocol", 22) == 0 && has_token(value, *p))
				return *p;
	}
	return NULL;
}

/* Keep the head readable after the connection's buffer carries frames:
 * move it out (as a request with a body does) and point the request's
 * slices at the copy. */
static int keep_head(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	if (!r->head_copy) {
		char *copy = aw__malloc(r->head_len);
		if (!copy)
			return aw_raise(-ENOMEM, "WebSocket: no memory for the request head");
		memcpy(copy, r->base, r->head_len);
		const char *old = r->base;
		if (r->path.p >= old && r->path.p < old + r->head_len)
			r->path.p = copy + (r->path.p - old);
		if (r->query.p && r->query.p >= old && r->query.p < old + r->head_len)
			r->query.p = copy + (r->query.p - old);
		r->head_copy = copy;
		r->base = copy;
	}
	if (c->pos) {
		aw_stream_consume(c->s, c->pos);
		c->pos = 0;
	}
	return 0;
}

static bool peer_error(int rc)
{
	return rc == -AW_ECLOSED || rc == -EPIPE || rc == -ECONNRESET || rc == -ETIMEDOUT;
}

int aw__ws_route_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	const aw_ws_route *rt = ud;
	aw_http_conn *c = req->conn;
	if (!c || !c->s)
		return refuse(res, 500, "WebSocket needs a connection");
	if (req->minor != 1)
		return refuse(res, 400, "WebSocket needs HTTP/1.1");
	if (req->is_head)   /* the router lets HEAD into GET routes */
		return refuse(res, 400, "a WebSocket upgrade is a GET");
	if (req->body_mode != AW_BODY_NONE)
		return refuse(res, 400, "a WebSocket upgrade has no body");
	if (!has_token(aw_http_header(req, "Upgrade"), "websocket") ||
	    !has_token(aw_http_header(req, "Connection"), "upgrade")) {
		if (aw_http_set_header(res, "Upgrade", "websocket") < 0 ||
		    aw_http_set_header(res, "Sec-WebSocket-Version", "13") < 0)
			return aw_error_pending();
		return refuse(res, 426, "this resource is a WebSocket: Upgrade: websocket required");
	}
	aw_str ver = aw_http_header(req, "Sec-WebSocket-Version");
	if (ver.len != 2 || memcmp(ver.p, "13", 2) != 0) {
		if (aw_http_set_header(res, "Sec-WebSocket-Version", "13") < 0)
			return aw_error_pending();
		return refuse(res, 426, "unsupported Sec-WebSocket-Version (13 only)");
	}
	aw_str key = aw_http_header(req, "Sec-WebSocket-Key");
	unsigned char raw[24];
	if (key.len != 24 || key.p[22] != '=' || key.p[23] != '=' ||
	    EVP_DecodeBlock(raw, (const unsigned char *)key.p, 24) != 18)
		return refuse(res, 400, "Sec-WebSocket-Key is not 16 bytes in base64");
	for (size_t i = 0; i < 22; i++)
		if (!(key.p[i] >= 'A' && key.p[i] <= 'Z') && !(key.p[i] >= 'a' && key.p[i] <= 'z') &&
		    !(key.p[i] >= '0' && key.p[i] <= '9') && key.p[i] != '+' && key.p[i] != '/')
			return refuse(res, 400, "Sec-WebSocket-Key is not 16 bytes in base64");
	if (!origin_ok(rt, req))
		return refuse(res, 403, "origin not allowed");
	const char *proto = pick_protocol(rt, req);
	if (!proto && rt->o.require_protocol)
		return refuse(res, 400, "no common subprotocol");

	/* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)). */
	char kg[24 + sizeof WS_GUID];
	memcpy(kg, key.p, 24);
	memcpy(kg + 24, WS_GUID, sizeof WS_GUID - 1);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char accept[32];
	if (!EVP_Digest(kg, 24 + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
		return aw_raise(-EIO, "WebSocket: SHA-1 failed (OpenSSL)");
	EVP_EncodeBlock((unsigned char *)accept, md, 20);

	aw_buf head = { 0 };
	int rc = 0;
	static const char h1[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				 "Sec-WebSocket-Accept: ";
	if (aw__buf_put(&head, h1, sizeof h1 - 1) || aw__buf_put(&head, accept, 28) || aw__buf_put(&head, "\r\n", 2) ||
	    (proto && (aw__buf_put(&head, "Sec-WebSocket-Protocol: ", 24) || aw__buf_put(&head, proto, strlen(proto)) ||
		       aw__buf_put(&head, "\r\n", 2))) ||
	    (res->hdrs.len && aw__buf_put(&head, res->hdrs.p, res->hdrs.len)) || aw__buf_put(&head, "\r\n", 2)) {
		aw__buf_free(&head);
		return aw_raise(-ENOMEM, "WebSocket: no memory for the 101");
	}
	res->sent = true;
	res->close = true;
	res->status = 101;
	if (keep_head(c) < 0) {
		aw__buf_free(&head);
		res->sent = false;
		return aw_error_pending();
	}
	aw_time send_deadline = aw__http_after(rt->o.send_timeout ? rt->o.send_timeout : c->lim->send_idle);
	if ((c->out.len && aw__http_flush(c)) || aw_stream_write(c->s, head.p, head.len, send_deadline) < 0) {
		aw__buf_free(&head);
		aw_error_clear();   /* the client went away before the upgrade: nobody to tell */
		return 0;
	}
	res->head_written = true;
	aw__buf_free(&head);

	aw_ws_opts o = rt->o;
	if (!o.send_timeout)
		o.send_timeout = c->lim->send_idle;
	aw_ws ws = {
		.mgr = { &mgr_ops },
		.iter = { .mgr = { &iter_ops }, .next = iter_next },
		.c = c,
		.s = c->s,
		.req = req,
		.o = &o,
		.protocol = proto,
		.last_rx = aw_now(),
	};
	aw_lock_init(&ws.wlock);
	aw_event_init(&ws.closed);
	c->ws = &ws;
	if (c->srv && c->srv->draining)
		ws.going_away = true;
	rc = rt->fn(&ws, req, rt->ud);
	if (rc > 0)
		rc = 0;
	if (ws.state != WS_CLOSED) {
		close_args a = { &ws, close_code_for(&ws, rc < 0 ? rc : aw_error_pending()), NULL };
		(void)!aw_cleanup_run(close_cb, &a, AW_NEVER);
	}
	c->ws = NULL;
	res->body_bytes = ws.bytes_sent;
	aw__buf_free(&ws.msg);
	if (rc < 0 && ws.by_peer && peer_error(rc)) {
		aw_error_clear();   /* only says the peer left */
		return 0;
	}
	if (rc == 0 && aw_error_pending() && ws.by_peer && peer_error(aw_error_pending())) {
		aw_error_clear();
		return 0;
	}
	return rc < 0 ? rc : aw_error_pending();
}

/* ---- the route ------------------------------------------------------------------------ */

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

static char **strv_dup(const char *const *v, bool *oom)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n])
		n++;
	char **out = aw__calloc(n + 1, sizeof *out);
	if (!out) {
		*oom = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!(out[i] = aw__strdup(v[i]))) {
			strv_free(out);
			*oom = true;
			return NULL;
		}
	return out;
}

void aw__ws_routes_free(aw_ws_route *rt)
{
	while (rt) {
		aw_ws_route *next = rt->next;
		strv_free(rt->origins);
		strv_free(rt->protocols);
		free(rt);
		rt = next;
	}
}

int aw_app_ws(aw_app *app, const char *path, aw_ws_handler fn, void *ud, const aw_ws_opts *opts)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_ws: no app (did aw_app_new run out of memory?)");
	if (!fn)
		return aw_raise(-EINVAL, "aw_app_ws: no handler");
	aw_ws_opts o = opts ? *opts : (aw_ws_opts){ 0 };
	if (!o.max_message)
		o.max_message = 1 << 20;
	if (!o.max_frame || o.max_frame > o.max_message)
		o.max_frame = o.max_message;
	if (!o.accept)
		o.accept = AW_WS_TEXT | AW_WS_BINARY;
	if (!o.ping_interval)
		o.ping_interval = AW_SEC(20);
	if (!o.idle_timeout)
		o.idle_timeout = o.ping_interval > AW_SEC(20) ? 3 * o.ping_interval : AW_SEC(60);
	if (!o.close_timeout)
		o.close_timeout = AW_SEC(5);
	if (o.idle_timeout <= o.ping_interval)
		return aw_raise(-EINVAL, "aw_app_ws: idle_timeout must be longer than ping_interval");
	aw_ws_route *rt = aw__calloc(1, sizeof *rt);
	if (!rt)
		return aw_raise(-ENOMEM, "aw_app_ws: no memory");
	bool oom = false;
	rt->fn = fn;
	rt->ud = ud;
	rt->o = o;
	rt->origins = strv_dup(o.origins, &oom);
	rt->protocols = strv_dup(o.protocols, &oom);
	rt->o.origins = NULL;
	rt->o.protocols = NULL;
	if (oom) {
		aw__ws_routes_free(rt);
		return aw_raise(-ENOMEM, "aw_app_ws: no memory");
	}
	aw_http_route_opts ro = { .finish_when_client_gone = true };
	int rc = aw_app_route_opts(app, "GET", path, aw__ws_route_handler, rt, &ro);
	if (rc < 0) {
		aw__ws_routes_free(rt);
		return rc;
	}
	rt->next = app->ws_routes;
	app->ws_routes = rt;
	return 0;
}
