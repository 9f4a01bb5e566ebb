/* SPDX-License-Identifier: MIT */
/*
 * The server: an accept loop, one task per connection, request bodies,
 * timeouts, graceful shutdown.
 *
 * A connection task reads a head (keep-alive idle timeout until its first
 * byte, then the header timeout for the whole head), answers it, and goes
 * on with the next; requests already buffered (pipelining) are answered in
 * order and their responses leave together, written when the task is about
 * to wait. A slow client only ever holds its own task.
 *
 * Shutdown (aw_app_stop, SIGINT/SIGTERM): the accept loop stops, idle
 * keep-alive connections are cancelled (they close: a client retries a
 * request on a reused connection that closed), busy ones finish their
 * request (answered with Connection: close) within shutdown_grace; the
 * rest are then cancelled and awaited: their dependencies' teardown and
 * their streams' exits still run (shielded, under the loop's cleanup
 * grace).
 *
 * A connection accepted but not yet past its first request head (its TLS
 * handshake or its first bytes still on the way) is not idle in that
 * sense: its client connected before the listener closed and will not
 * retry a new connection that failed. It gets FIRST_REQUEST_WINDOW after
 * the shutdown began (within the grace) to bring its first request, which
 * is answered with Connection: close; one still silent then (a browser's
 * speculative pre-connect, a stalled handshake) is cancelled. Without the
 * window every graceful restart failed the few requests whose connection
 * the old generation had just accepted. On io_uring that includes the
 * connections the listener's multishot accept had already taken when the
 * accept loop stopped (aw_fd_accept_stop, then aw_listener_accept_queued):
 * the kernel handed them to us, so they are served, not closed. An
 * HTTP/2 connection that has opened no stream yet gets the same window for
 * its first stream (h2.c: the GOAWAY waits for it).
 */
#include "internal.h"
#include "awith/schema.h"
#include "awith/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD_SLACK 64
#define LINGER_TIME AW_SEC(5)
#define LINGER_IDLE AW_SEC(1)
#define FIRST_REQUEST_WINDOW AW_SEC(1)   /* at shutdown: see the comment at the top */

/* ---- the body ----------------------------------------------------------------- */

static int send_continue(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	r->continue_sent = true;
	if (!c->s)
		return 0;
	if (aw__buf_put(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25))
		return aw_raise(-ENOMEM, "no memory for 100 Continue");
	return aw__http_flush(c);
}

/* The stream position of the next body byte: consumed right away once the
 * head was copied out of the read buffer, else counted in c->pos. */
static void body_used(aw_http_conn *c, size_t used)
{
	if (c->req.head_copy)
		aw_stream_consume(c->s, used);
	else
		c->pos += used;
}

static int body_error(aw_http_conn *c, int status)
{
	c->reject = status;
	c->res.close = true;
	switch (status) {
	case 413: return aw_raise(-AW_ETOOLONG, "request body: %s", c->reject_msg);
	case 431: return aw_raise(-AW_ETOOLONG, "request trailers: %s", c->reject_msg);
	case 503: return aw_raise(-ENOMEM, "request body: %s", c->reject_msg);
	default: return aw_raise(-EBADMSG, "request body: %s", c->reject_msg);
	}
}

/* Feed at most `max` more bytes of the body to the parser, reading when
 * nothing is buffered. 1: the body is complete; 0: progress (maybe no
 * body byte, only framing); < 0: a raised error. */
static int body_pump(aw_http_conn *c, size_t max)
{
	aw_http_request *r = &c->req;
	if (r->body_complete)
		return 1;
	if (c->reject)
		return aw_raise(-EBADMSG, "request body: the request was rejected");
	if (r->expect_continue && !r->continue_sent) {
		int rc = send_continue(c);
		if (rc)
			return rc;
	}
	const char *data;
	size_t len;
	aw_stream_peek(c->s, &data, &len);
	if (len <= c->pos) {
		if (c->out.len) {
			int rc = aw__http_flush(c);
			if (rc)
				return rc;
		}
		ssize_t n = aw_stream_fill(c->s, c->pos + 256 * 1024, aw__http_after(c->lim->body_idle));
		if (n == 0) {
			c->res.close = true;
			return aw_raise(-AW_EEOF, "the client closed the connection in the middle of the request body");
		}
		if (n < 0) {
			c->res.close = true;
			if (n == -ETIMEDOUT && aw_now() < r->deadline) {
				c->body_timeout = true;
				return aw_raise(-ETIMEDOUT, "request body: no data for %lld ms",
						(long long)(c->lim->body_idle / 1000000));
			}
			return (int)n;
		}
		aw_stream_peek(c->s, &data, &len);
	}
	size_t avail = len - c->pos;
	size_t used;
	int st = aw__http_feed_body(c, data + c->pos, avail < max ? avail : max, &used);
	body_used(c, used);
	if (st >= 400)
		return body_error(c, st);
	if (st == 1 && c->handler_scope && c->hup_seen)
		aw__http_conn_check_peer(c);
	return st;
}

static int body_begin(aw_http_request *req, const char *who)
{
	if (!req->conn->s)
		return aw_raise(-ENOTCONN, "%s: no connection", who);
	if (req->body_seen && !req->body_loaded)
		return aw_raise(-EALREADY, "%s: the body is being read with aw_http_body_read", who);
	return 0;
}

int aw_http_body(aw_http_request *req, const char **data, size_t *len)
{
	*data = NULL;
	*len = 0;
	if (req->body_loaded) {
		*data = req->body ? req->body : "";
		*len = req->body_len;
		return 0;
	}
	if (req->body_mode == AW_BODY_NONE) {
		req->body_loaded = true;
		*data = "";
		return 0;
	}
	int rc = body_begin(req, "aw_http_body");
	if (rc)
		return rc;
	aw_http_conn *c = req->conn;
	if (c->h2) {
		rc = aw__h2_body_all(c);
		if (rc)
			return rc;
		*data = req->body;
		*len = req->body_len;
		return 0;
	}
	c->sink = req->head_copy ? SINK_ACCUM : SINK_SPAN;
	c->span_count = 0;
	req->body_buf.len = 0;
	for (;;) {
		rc = body_pump(c, SIZE_MAX);
		if (rc < 0) {
			c->sink = SINK_NONE;
			return rc;
		}
		if (rc == 1)
			break;
	}
	if (c->sink == SINK_SPAN && c->span_count == 1) {
		req->body = c->span_p;
		req->body_len = c->span_n;
	} else if (c->sink == SINK_SPAN && c->span_count == 0) {
		req->body = "";
		req->body_len = 0;
	} else {
		req->body = req->body_buf.p ? req->body_buf.p : "";
		req->body_len = req->body_buf.len;
	}
	c->sink = SINK_NONE;
	req->body_loaded = true;
	*data = req->body;
	*len = req->body_len;
	return 0;
}

ssize_t aw_http_body_read(aw_http_request *req, void *buf, size_t n)
{
	if (req->body_loaded)
		return aw_raise(-EALREADY, "aw_http_body_read: the body was already read whole");
	if (req->body_mode == AW_BODY_NONE || req->body_complete || !n)
		return 0;
	if (!req->conn->s)
		return aw_raise(-ENOTCONN, "aw_http_body_read: no connection");
	aw_http_conn *c = req->conn;
	if (c->h2)
		return aw__h2_body_read(c, buf, n);
	c->sink = SINK_COPY;
	c->sink_buf = buf;
	c->sink_len = 0;
	while (!c->sink_len) {
		int rc = body_pump(c, n);
		if (rc < 0) {
			c->sink = SINK_NONE;
			return rc;
		}
		if (rc == 1)
			break;
	}
	c->sink = SINK_NONE;
	return (ssize_t)c->sink_len;
}

int aw_http_json_body(aw_http_request *req, json_t **json)
{
	*json = NULL;
	if (req->json) {
		*json = req->json;
		return 0;
	}
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	/* jansson's parser recurses once per level (up to 2048): a task's
	 * stack is 64 KiB, so deep nesting is refused before it parses. */
	if (aw__json_depth(data, len, AW_JSON_MAX_DEPTH) > AW_JSON_MAX_DEPTH) {
		req->bad_request = "invalid JSON: nested too deeply (the limit is 64 levels)";
		_Static_assert(AW_JSON_MAX_DEPTH == 64, "the message says 64");
		return aw_raise(-EBADMSG, "request body: %s", req->bad_request);
	}
	json_error_t jerr;
	json_t *v = json_loadb(data, len, JSON_DECODE_ANY, &jerr);
	if (!v) {
		char msg[200];
		snprintf(msg, sizeof msg, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		req->bad_request = aw__arena_strndup(&req->conn->arena, msg, strlen(msg));
		if (!req->bad_request)
			req->bad_request = "invalid JSON";
		return aw_raise(-EBADMSG, "request body: %s", msg);
	}
	req->json = v;
	*json = v;
	return 0;
}

aw_time aw_http_deadline(const aw_http_request *req)
{
	return req->deadline;
}

aw_app *aw_http_app(const aw_http_request *req)
{
	return req->app;
}

/* After the response: read and drop what is left of the body, so the
 * connection can go on. Returns false if it must close instead. */
static bool drain_body(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	if (r->body_mode == AW_BODY_NONE || r->body_complete)
		return true;
	if (c->reject || c->res.close)
		return false;
	c->sink = SINK_DISCARD;
	uint64_t start = r->body_seen;
	while (!r->body_complete) {
		int rc = body_pump(c, SIZE_MAX);
		if (rc < 0 || r->body_seen - start > AW_HTTP_DRAIN_MAX) {
			aw_error_clear();
			c->sink = SINK_NONE;
			return false;
		}
	}
	c->sink = SINK_NONE;
	return true;
}

/* ---- connections -------------------------------------------------------------- */

void aw__http_conn_check_peer(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	if (!c->handler_scope || c->peer_gone || !c->s)
		return;
	if (r->route && r->route->opts.finish_when_client_gone)
		return;
	if (r->body_mode != AW_BODY_NONE && !r->body_complete)
		return;   /* the handler's body reads see the end */
	/* Pipelined requests sent before the close still want answers. */
	if (aw_stream_buffered(c->s) > c->pos)
		return;
	/* Bytes still in the socket: a pipelined request. Not over TLS,
	 * where they are records we cannot read here, and a client that
	 * leaves sends one (close_notify) before its FIN (tls.c). */
	int unread = 0;
	if (!c->tls && ioctl(aw_stream_fd(c->s), FIONREAD, &unread) == 0 && unread > 0)
		return;
	if (!c->tls && aw_fd_recv_queued(aw_stream_fd(c->s)) > 0)
		return;   /* received by the loop (io_uring multishot): not in the socket */
	c->peer_gone = true;
	aw_scope_cancel(c->handler_scope);
}

/* The loop saw the peer close (aw_fd_on_hup): runs in the loop, not in
 * the connection's task. */
static void on_peer_closed(void *arg)
{
	aw_http_conn *c = arg;
	c->hup_seen = true;
	if (c->handler_scope)
		aw__http_conn_check_peer(c);
}

static bool srv_draining(aw_http_conn *c)
{
	return c->srv && c->srv->draining;
}

/* Read a request head. 1: complete; 0: close quietly (end of stream, idle
 * timeout, cancellation); >= 400: reject with that status. */
static int read_head(aw_http_conn *c)
{
	const aw_http_limits *lim = c->lim;
	size_t max = lim->request_line + lim->header_bytes + HEAD_SLACK;
	const char *data;
	size_t len;
	aw_time deadline;
	c->idle = true;
	aw_stream_peek(c->s, &data, &len);
	if (len == 0) {
		if (c->out.len && aw__http_flush(c))
			return 0;
		if (srv_draining(c) && c->requests > 0)
			return 0;   /* idle keep-alive: closed (the first request is still awaited) */
		deadline = c->requests == 0 ? c->accepted + lim->header_timeout : aw__http_after(lim->keepalive_idle);
		ssize_t n = aw_stream_fill(c->s, max, deadline);
		if (n <= 0)
			return 0;
		aw_stream_peek(c->s, &data, &len);
	}
	deadline = c->requests == 0 ? c->accepted + lim->header_timeout : aw__http_after(lim->header_timeout);
	for (;;) {
		int st = aw__http_feed_head(c, data, len);
		if (st == 1) {
			c->idle = false;
			return 1;
		}
		if (st >= 400)
			return st;
		if (c->out.len && aw__http_flush(c))
			return 0;
		ssize_t n = aw_stream_fill(c->s, max, deadline);
		if (n == 0)
			return 0;   /* the client gave up mid-request: nobody to answer */
		if (n == -ETIMEDOUT) {
			c->reject_msg = "the request head did not arrive in time";
			return 408;
		}
		if (n == -AW_ETOOLONG) {
			c->reject_msg = c->version_done ? "header section too large" : "request line too long";
			return c->version_done ? 431 : 414;
		}
		if (n < 0)
			return 0;
		aw_stream_peek(c->s, &data, &len);
	}
}

/* Close after an error: stop writing, then read and drop what the client
 * still sends, so that our response is not destroyed by a reset (a close
 * with unread input sends RST, and the client's kernel then drops the
 * response it has not read yet: a client still sending a 4 MiB upload
 * would see no 413 at all). Bounded by time, not bytes (as nginx's
 * lingering_close): until the client stops sending for LINGER_IDLE, ends
 * its side, or LINGER_TIME has passed. */
static void linger_close(aw_http_conn *c)
{
	aw_time end = aw__http_after(LINGER_TIME);
	if (aw_stream_shutdown(c->s, end)) {
		aw_error_clear();
		return;
	}
	for (;;) {
		const char *d;
		size_t n;
		aw_stream_peek(c->s, &d, &n);
		aw_stream_consume(c->s, n);
		aw_time idle = aw__http_after(LINGER_IDLE);
		ssize_t r = aw_stream_fill(c->s, 64 * 1024, idle < end ? idle : end);
		if (r <= 0)
			break;
	}
	aw_error_clear();
}

/* ---- request ids and the access log ------------------------------------------- */

static void peer_text(int fd, char *buf, size_t len);

/* Made ids: a random per-process prefix (drawn again in a forked child,
 * so workers differ) and a counter: 16 hex digits. */
static _Atomic uint64_t id_counter;
static uint32_t id_prefix;
static pthread_once_t id_once = PTHREAD_ONCE_INIT;

static void id_prefix_draw(void)
{
	uint32_t p;
	if (getrandom(&p, sizeof p, GRND_NONBLOCK) != (ssize_t)sizeof p)
		p = (uint32_t)getpid() * 2654435761u ^ (uint32_t)aw_now();
	id_prefix = p;
}

static void id_init(void)
{
	id_prefix_draw();
	pthread_atfork(NULL, NULL, id_prefix_draw);
}

/* 16 hex digits and a NUL into out (snprintf's %08x%08x costs more than
 * the rest of the request id's bookkeeping). */
void aw__http_request_id_make(char *out)
{
	static const char hex[] = "0123456789abcdef";
	pthread_once(&id_once, id_init);
	uint64_t v = (uint64_t)id_prefix << 32 |
		     (uint32_t)atomic_fetch_add_explicit(&id_counter, 1, memory_order_relaxed);
	for (int i = 15; i >= 0; i--, v >>= 4)
		out[i] = hex[v & 15];
	out[16] = 0;
}

bool aw__http_request_id_ok(aw_str v)
{
	if (!v.p || v.len == 0 || v.len > 128)
		return false;
	for (size_t i = 0; i < v.len; i++)
		if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f)
			return false;
	return true;
}

/* Give the request its id (the client's X-Request-ID when sane, else a
 * made one) and put it in the task's log context. r NULL: a head that
 * was rejected (nothing parsed to read it from). */
/* A header's value in a raw head that was not parsed (a rejected one):
 * the first "\r\nName:" line before the blank line, trimmed. */
static aw_str raw_header(const char *data, size_t len, const char *name)
{
	size_t nl = strlen(name);
	const char *end = len ? memmem(data, len, "\r\n\r\n", 4) : NULL;
	size_t lim = end ? (size_t)(end - data) + 2 : len;
	for (const char *p = data; p && (size_t)(p - data) + 2 + nl < lim;) {
		p = memmem(p, lim - (size_t)(p - data), "\r\n", 2);
		if (!p || (size_t)(p - data) + 2 + nl >= lim)
			break;
		p += 2;
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *v = p + nl + 1, *e = memmem(v, lim - (size_t)(v - data), "\r\n", 2);
			if (!e)
				break;
			while (v < e && (*v == ' ' || *v == '\t'))
				v++;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			return (aw_str){ v, (size_t)(e - v) };
		}
	}
	return (aw_str){ NULL, 0 };
}

static void request_id_begin(aw_http_conn *c, const aw_http_request *r, aw_str raw)
{
	aw_str v = r ? aw_http_header(r, "X-Request-ID") : raw;
	c->echo_request_id = aw__http_request_id_ok(v);
	if (c->echo_request_id) {
		memcpy(c->request_id, v.p, v.len);
		c->request_id[v.len] = 0;
	} else {
		aw__http_request_id_make(c->request_id);
	}
	if (aw_log_context_set("request_id", c->request_id))
		aw_error_clear();   /* no memory: records go without it */
}

/* A middleware's choice of id (aw_http_mw_request_id). */
void aw__http_request_id_set(aw_http_conn *c, const char *id, size_t len)
{
	if (len >= sizeof c->request_id)
		len = sizeof c->request_id - 1;
	memmove(c->request_id, id, len);
	c->request_id[len] = 0;
	if (aw_log_context_set("request_id", c->request_id))
		aw_error_clear();
}

static void request_id_end(aw_http_conn *c)
{
	c->echo_request_id = false;
	c->request_id_header = NULL;
	if (aw_log_context_set("request_id", NULL))
		aw_error_clear();
}

/* Apache's escaping inside a quoted combined-log field: \" \\ and \xNN
 * for bytes outside printable ASCII. */
static size_t put_quoted(char *o, size_t room, const char *s, size_t n)
{
	size_t w = 0;
	if (!s || n == 0) {
		if (room > 1)
			o[w++] = '-';
		return w;
	}
	for (size_t i = 0; i < n && w + 5 < room; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			o[w++] = '\\';
			o[w++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			w += (size_t)snprintf(o + w, room - w, "\\x%02x", ch);
		} else {
			o[w++] = (char)ch;
		}
	}
	return w;
}

typedef struct access_entry {
	aw_str method, target, referer, agent;
	int minor;             /* -1: unknown; 20: HTTP/2.0 */
	int status;
	size_t bytes;
	aw_time started;
} access_entry;

/* One access record: combined line or fields through the log sink. */
static void access_write(aw_app *app, const char *peer, const char *request_id, const access_entry *a)
{
	double ms = a->started ? (double)(aw_now() - a->started) / 1e6 : 0;
	char proto[24] = "";
	if (a->minor == 20)
		snprintf(proto, sizeof proto, "HTTP/2.0");
	else if (a->minor >= 0)
		snprintf(proto, sizeof proto, "HTTP/1.%d", a->minor);
	aw_log_field f[] = {
		AW_KV_STR("client", peer),
		AW_KV_STRN("method", a->method.p, a->method.len),
		AW_KV_STRN("path", a->target.p, a->target.len),
		AW_KV_STR("proto", a->minor >= 0 ? proto : NULL),
		AW_KV_INT("status", a->status),
		AW_KV_INT("bytes", a->bytes),
		AW_KV_FLOAT("duration_ms", ms),
		AW_KV_STRN("referer", a->referer.p, a->referer.len),
		AW_KV_STRN("user_agent", a->agent.p, a->agent.len),
	};
	aw_log_field all[sizeof f / sizeof f[0] + 1];
	memcpy(all, f, sizeof f);
	size_t n = sizeof f / sizeof f[0];
	/* In a connection task the id is in the log context already; a
	 * refusal in the accept loop has it only here. */
	if (request_id && !aw_log_context_get("request_id"))
		all[n++] = AW_KV_STR("request_id", request_id);
	aw_log_record rec = { .level = AW_LOG_INFO, .channel = "access", .msg = "request", .fields = all,
			      .nfields = n };
	aw_log_emit_opts o = { .out = app->access_log, .unfiltered = true };
	/* AUTO: combined next to text logs, else the log's own format
	 * (json or logfmt: opts.format stays 0). */
	int fmt = app->access_format;
	bool combined = fmt == AW_ACCESS_LOG_COMBINED ||
			(fmt == AW_ACCESS_LOG_AUTO && aw_log_format_get() == AW_LOG_TEXT);
	char line[4096];
	if (combined) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		char when[40];
		strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S +0000", &tm);
		size_t w = (size_t)snprintf(line, sizeof line, "%s - - [%s] \"", peer[0] ? peer : "-", when);
		if (a->method.p && a->target.p && a->minor >= 0) {
			w += put_quoted(line + w, sizeof line - w, a->method.p, a->method.len);
			line[w++] = ' ';
			w += put_quoted(line + w, sizeof line - w, a->target.p, a->target.len);
			w += (size_t)snprintf(line + w, sizeof line - w, " %s", proto);
		} else {
			line[w++] = '-';
		}
		if (a->bytes)
			w += (size_t)snprintf(line + w, sizeof line - w, "\" %d %zu \"", a->status, a->bytes);
		else
			w += (size_t)snprintf(line + w, sizeof line - w, "\" %d - \"", a->status);
		w += put_quoted(line + w, sizeof line - w - 200, a->referer.p, a->referer.len);
		w += (size_t)snprintf(line + w, sizeof line - w, "\" \"");
		w += put_quoted(line + w, sizeof line - w - 200, a->agent.p, a->agent.len);
		snprintf(line + w, sizeof line - w, "\" %.3f %s", ms, request_id ? request_id : "-");
		o.line = line;
	} else if (fmt == AW_ACCESS_LOG_JSON) {
		o.format = AW_LOG_JSON;
	}
	(void)aw_log_emit(NULL, &rec, &o);
}

static void access_log(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	access_entry a = {
		.method = { r->base + r->method_off, r->method_len },
		.target = { r->base + r->target_off, r->target_len },
		.referer = aw_http_header(r, "Referer"),
		.agent = aw_http_header(r, "User-Agent"),
		.minor = c->h2 ? 20 : r->minor,
		.status = c->res.status,
		.bytes = c->res.body_bytes,
		.started = r->started,
	};
	access_write(c->app, c->peer, c->request_id, &a);
}

/* A head rejected before it was parsed (400, 408, 414, 431, 505...): the
 * request line is taken from the buffered bytes when it arrived whole. */
static void access_log_rejected(aw_http_conn *c, const char *data, size_t len, int status, aw_time started)
{
	access_entry a = { .minor = -1, .status = status, .bytes = c->res.body_bytes, .started = started };
	const char *end = len ? memmem(data, len < 8192 ? len : 8192, "\r\n", 2) : NULL;
	if (end) {
		const char *sp1 = memchr(data, ' ', (size_t)(end - data));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
		if (sp1 && sp2 && end - sp2 == 9 && memcmp(sp2 + 1, "HTTP/1.", 7) == 0) {
			a.method = (aw_str){ data, (size_t)(sp1 - data) };
			a.target = (aw_str){ sp1 + 1, (size_t)(sp2 - sp1 - 1) };
			a.minor = sp2[8] >= '0' && sp2[8] <= '9' ? sp2[8] - '0' : -1;
			if (a.minor < 0)
				a.method = a.target = (aw_str){ NULL, 0 };
		}
	}
	access_write(c->app, c->peer, c->request_id, &a);
}

/* Serve one parsed request. Returns true to keep the connection. */
static bool handle_request(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	const char *data;
	size_t len;
	c->requests++;
	/* The metrics' duration counts from the loop's time of this step
	 * (no clock read; the request was readable by then: the time it
	 * waited for its turn counts, as it should). The access log wants
	 * the clock. */
	aw__http_request_begin(c);
	aw_stream_peek(c->s, &data, &len);
	c->pos = r->head_len;
	bool all_here = r->body_mode == AW_BODY_NONE ||
			(r->body_mode == AW_BODY_LENGTH && len - r->head_len >= r->content_length);
	if (!all_here) {
		/* The body will be read into the buffer: move the head out of
		 * its way, so that names and values stay valid. */
		r->head_copy = aw__malloc(r->head_len);
		if (!r->head_copy) {
			c->res.close = true;
			aw__http_queue_error(c, 503, "Service Unavailable", NULL);
			return false;
		}
		memcpy(r->head_copy, data, r->head_len);
		r->base = r->head_copy;
		aw_stream_consume(c->s, r->head_len);
		c->pos = 0;
	}
	if (all_here)
		r->continue_sent = true;   /* the body is here already: no 100 needed */
	aw__http_trace_begin(c);
	int st = aw__http_prepare_request(c);
	if (st) {
		c->res.close = true;
		aw__http_queue_error(c, st, c->reject_msg, NULL);
	} else {
		aw_trace *outer = aw__http_trace_enter(r);
		aw__app_dispatch(c);
		(void)aw_trace_swap(outer);
	}
	bool keep = !c->res.close && drain_body(c);
	if (c->pos) {
		aw_stream_consume(c->s, c->pos);
		c->pos = 0;
	}
	aw__http_request_end(c);
	return keep && !srv_draining(c);
}

void aw__http_request_begin(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	r->started = c->app->access_log ? aw_now() : c->app->metrics ? aw_loop_now() : 0;
	request_id_begin(c, r, (aw_str){ NULL, 0 });
	aw__http_metrics_in_flight(c->app, 1);
}

void aw__http_request_end(aw_http_conn *c)
{
	if (c->app->access_log && c->res.status)
		access_log(c);
	aw__http_metrics_request_done(c);
	aw__http_metrics_in_flight(c->app, -1);
	aw__http_trace_end(c);   /* before the request id goes: the span's record carries it */
	request_id_end(c);
}

static void serve_conn(aw_http_conn *c)
{
	for (;;) {
		aw__http_conn_reset(c);
		aw_time t0 = c->app->access_log ? aw_now() : 0;
		int st = read_head(c);
		if (st == 0)
			break;
		if (st == 505 && c->requests == 0 && aw__http_h2_enabled(c->app)) {
			/* "PRI * HTTP/2.0": the HTTP/2 preface (h2c with prior
			 * knowledge); h2.c reads the rest of it. */
			const char *data;
			size_t len;
			aw_stream_peek(c->s, &data, &len);
			if (len >= 16 && memcmp(data, "PRI * HTTP/2.0\r\n", 16) == 0) {
				aw__http_conn_reset(c);
				aw__http_h2_serve(c);
				break;
			}
		}
		if (st >= 400) {
			const char *msg = c->reject_msg;
			aw__http_conn_reset(c);
			const char *data;
			size_t len;
			aw_stream_peek(c->s, &data, &len);
			len = len < 64 * 1024 ? len : 64 * 1024;
			request_id_begin(c, NULL, raw_header(data, len, "X-Request-ID"));
			c->res.close = true;
			aw__http_queue_error(c, st, msg, NULL);
			aw__http_metrics_request_done(c);
			if (c->app->access_log)
				access_log_rejected(c, data, len, st, t0);
			request_id_end(c);
			if (aw__http_flush(c) == 0)
				linger_close(c);
			break;
		}
		c->in_request = true;
		bool keep = handle_request(c);
		c->in_request = false;
		if (!keep) {
			if (aw__http_flush(c) == 0 && (c->reject || aw_stream_buffered(c->s) || !c->req.body_complete))
				linger_close(c);
			break;
		}
		/* Flush now unless the next request is already here (pipelining:
		 * its answer goes out in the same write). */
		if (!aw_stream_buffered(c->s) && c->out.len && aw__http_flush(c))
			break;
	}
	aw_error_clear();
	aw__http_conn_reset(c);
}

typedef struct conn_start {
	aw_http_server *srv;
	aw_stream *s;
	aw_time accepted;
	aw_http_peer *peer;
	bool tls;
} conn_start;

/* ---- connection caps and refusals ------------------------------------------------ */

#define REFUSE_BODY "{\"detail\": \"too many connections\"}"
static const char refuse_503[] = "HTTP/1.1 503 Service Unavailable\r\n"
				 "Content-Type: application/json\r\n"
				 "Retry-After: 1\r\n"
				 "Connection: close\r\n"
				 "Content-Length: 34\r\n"
				 "\r\n" REFUSE_BODY;
_Static_assert(sizeof REFUSE_BODY - 1 == 34, "Content-Length of the refusal");

/* Answer a connection we will not serve with the fixed 503, without
 * reading its request or waiting (one non-blocking send: it fits any
 * socket buffer); the caller closes it. Logged at most once a second. */
static void refuse(aw_http_server *srv, int fd, const char *why)
{
	ssize_t w = send(fd, refuse_503, sizeof refuse_503 - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)w;
	srv->refused++;
	if (srv->app->access_log) {
		char peer[64], id[20];
		peer_text(fd, peer, sizeof peer);
		aw__http_request_id_make(id);
		access_entry a = { .minor = -1, .status = 503, .bytes = sizeof REFUSE_BODY - 1 };
		access_write(srv->app, peer, id, &a);
	}
	aw_time now = aw__http_now();
	if (now - srv->refused_log_at >= AW_SEC(1) || !srv->refused_log_at) {
		aw__http_log_error(srv->app, NULL, "refused %llu new connection(s) with 503: %s",
				   (unsigned long long)(srv->refused - srv->refused_logged), why);
		srv->refused_logged = srv->refused;
		srv->refused_log_at = now;
	}
}

static void refuse_stream(aw_http_server *srv, aw_stream *s, const char *why)
{
	refuse(srv, aw_stream_fd(s), why);
	if (aw_stream_close(s, aw__http_after(AW_SEC(1))))
		aw_error_clear();
}

/* The client's address as 16 bytes (IPv4 mapped into IPv6); false for
 * other families (Unix sockets: no per-client cap). */
static bool peer_addr(int fd, uint8_t out[16])
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return false;
	if (ss.ss_family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		return true;
	}
	if (ss.ss_family == AF_INET6) {
		memcpy(out, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		return true;
	}
	return false;
}

static size_t peer_bucket(const uint8_t a[16])
{
	uint64_t h = 1469598103934665603ULL;
	for (int i = 0; i < 16; i++)
		h = (h ^ a[i]) * 1099511628211ULL;
	return (size_t)(h % AW_HTTP_PEER_BUCKETS);
}

/* The count of an address (created at 0); NULL when out of memory (that
 * connection is then not counted). */
static aw_http_peer *peer_get(aw_http_server *srv, const uint8_t a[16])
{
	if (!srv->peers && !(srv->peers = calloc(AW_HTTP_PEER_BUCKETS, sizeof *srv->peers)))
		return NULL;
	aw_http_peer **b = &srv->peers[peer_bucket(a)];
	for (aw_http_peer *p = *b; p; p = p->next)
		if (memcmp(p->addr, a, 16) == 0)
			return p;
	aw_http_peer *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	memcpy(p->addr, a, 16);
	p->next = *b;
	*b = p;
	return p;
}

static void peer_put(aw_http_server *srv, aw_http_peer *p)
{
	if (--p->count)
		return;
	for (aw_http_peer **b = &srv->peers[peer_bucket(p->addr)]; *b; b = &(*b)->next)
		if (*b == p) {
			*b = p->next;
			break;
		}
	free(p);
}

/* Out of file descriptors: the classic spare-descriptor trick. Free the
 * reserved descriptor, accept a waiting client into it, refuse it (503)
 * and close it, take the spare back; until no client waits. Clients are
 * told at once instead of timing out in the backlog, and the listener is
 * drained, so its next readiness means a new client: the caller waits for
 * it (no spinning). False when there is no spare (then the caller backs
 * off by sleeping). */
static bool refuse_out_of_fds(aw_http_server *srv, aw_listener *l)
{
	if (srv->spare_fd < 0)
		return false;
	int lfd = aw_listener_fd(l);
	for (int i = 0; i < 256; i++) {
		close(srv->spare_fd);
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		int e = errno;
		if (fd >= 0) {
			refuse(srv, fd, "out of file descriptors");
			close(fd);
		}
		srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (srv->spare_fd < 0)
			return false;   /* someone took the slot: back off */
		if (fd < 0)
			return e == EAGAIN || e == EWOULDBLOCK || e == ECONNABORTED || e == EINTR;
	}
	return true;
}

/* The client's address without the port (the combined log's %h). */
static void peer_text(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	snprintf(buf, len, "-");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)len);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)len);
	else
		snprintf(buf, len, "unix");
}

static int conn_main(void *arg)
{
	conn_start st = *(conn_start *)arg;
	free(arg);
	aw_http_server *srv = st.srv;
	aw_app *app = srv->app;
	aw_http_conn *c = aw__calloc(1, sizeof *c);
	if (c) {
		aw__http_conn_setup(c, app, &app->limits);
		c->hdrs = aw__malloc(c->hdr_cap * sizeof *c->hdrs);
	}
	if (!c || !c->hdrs) {
		if (c)
			aw__http_conn_free(c);
		free(c);
		aw__http_log_limited(app, NULL, "no memory for a connection: closing it");
		if (aw_stream_close(st.s, AW_NEVER))
			aw_error_clear();
		goto done;
	}
	c->srv = srv;
	c->s = st.s;
	c->accepted = st.accepted;
	c->task = aw_task_current();
	if (app->access_log)
		peer_text(aw_stream_fd(st.s), c->peer, sizeof c->peer);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	aw__http_metrics_connections(app, 1);
	AW_WITH(aw_stream_mgr(st.s)) {
		/* A handler whose client goes away is cancelled: the loop
		 * calls on_peer_closed on EPOLLRDHUP (nothing per request). */
		if (aw_fd_on_hup(aw_stream_fd(st.s), on_peer_closed, c))
			aw_error_clear();
		if (!srv->draining)
			aw__http_conn_serve(c, st.tls, serve_conn);   /* TLS and HTTP/2: tls.c */
		aw_fd_on_hup(aw_stream_fd(st.s), NULL, NULL);
	}
	aw_error_clear();   /* a failed close: nothing more to tell the client */
	aw__http_metrics_connections(app, -1);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	aw__http_conn_free(c);
	free(c->peer_subject);
	free(c);
done:
	if (st.peer)
		peer_put(srv, st.peer);
	if (--srv->nconns == 0 && srv->draining)
		aw_event_set(&srv->drained);
	return 0;
}

/* ---- the accept loop and shutdown -------------------------------------------------- */

void aw__http_server_stop(aw_http_server *srv)
{
	srv->stop = true;
	for (size_t i = 0; i < srv->nls; i++)
		if (srv->ls[i].accepting)
			aw_scope_cancel(&srv->ls[i].accept_scope);
}


/* Under aw_cleanup_run (shielded; the error in flight kept): wait until the
 * cancelled connections have ended. */
static int wait_drained(void *arg, int err)
{
	(void)err;
	aw_http_server *srv = arg;
	while (srv->nconns) {
		int rc = aw_event_wait(&srv->drained);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A connection still waiting for its first request head (or in its TLS
 * handshake) when the shutdown began. */
static bool conn_awaits_first_request(const aw_http_conn *c)
{
	return c->idle && c->task && c->requests == 0 && !c->h2c && !c->ws;
}

/* Wait for the connections to end, at most until the scope's deadline
 * (a second signal cancels it: srv->hurry). */
static void wait_drained_until(aw_http_server *srv, aw_time deadline)
{
	aw_scope grace;
	AW_WITH(aw_move_on_at_init(&grace, deadline)) {
		srv->grace = &grace;
		while (srv->nconns)
			if (aw_event_wait(&srv->drained))
				break;
	}
	srv->grace = NULL;
	aw_error_clear();
}

static void drain_connections(aw_http_server *srv)
{
	aw_app *app = srv->app;
	aw_time start = aw_now();
	aw_time grace_end = start + app->limits.shutdown_grace;
	size_t awaited = 0;
	aw_time window_end = start + FIRST_REQUEST_WINDOW;
	srv->first_request_end = window_end < grace_end ? window_end : grace_end;
	srv->draining = true;
	for (aw_http_conn *c = srv->conns; c; c = c->next) {
		if (c->h2c) {
			/* GOAWAY now, its streams finish; one with no stream yet
			 * waits for its first (h2.c) */
			if (aw__http_h2_awaits_first_stream(c))
				awaited++;
			aw__http_h2_kick(c);
		} else if (c->ws)
			aw__ws_going_away(c->ws);   /* close 1001 */
		else if (conn_awaits_first_request(c))
			awaited++;   /* its first request is still coming: see FIRST_REQUEST_WINDOW */
		else if (c->idle && c->task)
			aw_task_cancel(c->task);
	}
	if (awaited) {
		if (srv->nconns && !srv->hurry)
			wait_drained_until(srv, srv->first_request_end);
		for (aw_http_conn *c = srv->conns; c; c = c->next)
			if (conn_awaits_first_request(c))
				aw_task_cancel(c->task);
			else if (aw__http_h2_awaits_first_stream(c))
				aw__http_h2_kick(c);   /* its window is over: GOAWAY, close */
	}
	if (srv->nconns && !srv->hurry)
		wait_drained_until(srv, grace_end);
	if (srv->nconns) {
		size_t n = 0;
		for (aw_http_conn *c = srv->conns; c; c = c->next, n++)
			if (c->task)
				aw_task_cancel(c->task);
		aw__http_log_error(app, NULL, "shutdown: cancelling %zu connection(s) still busy after the %lld ms grace",
				   n, (long long)(app->limits.shutdown_grace / 1000000));
		if (aw_cleanup_run(wait_drained, srv, AW_NEVER) < 0)
			aw__http_log_error(app, NULL, "shutdown: %zu connection(s) did not end", srv->nconns);
	}
}

/* A connection accepted on ls: refused at the caps, else its task started. */
static void conn_accepted(aw_http_lsock *ls, aw_stream *s)
{
	aw_http_server *srv = ls->srv;
	aw_app *app = srv->app;
	const aw_http_limits *lim = &app->limits;
	if (lim->max_connections && srv->nconns >= lim->max_connections) {
		refuse_stream(srv, s, "max_connections reached");
		return;
	}
	aw_http_peer *peer = NULL;
	uint8_t addr[16];
	if (lim->max_connections_per_client && peer_addr(aw_stream_fd(s), addr) &&
	    (peer = peer_get(srv, addr))) {
		if (peer->count >= lim->max_connections_per_client) {
			refuse_stream(srv, s, "max_connections_per_client reached");
			return;
		}
		peer->count++;
	}
	conn_start *st = aw__malloc(sizeof *st);
	if (st) {
		*st = (conn_start){ srv, s, aw__http_now(), peer, ls->tls };
		aw_spawn_opts o = { .name = "http-conn" };
		if (aw_spawn_with(NULL, conn_main, st, &o) == 0) {
			srv->nconns++;
			return;
		}
		free(st);
	}
	if (peer)
		peer_put(srv, peer);
	aw__http_log_error(app, aw_error_current(), "cannot start a connection task: closing it");
	aw_error_clear();
	if (aw_stream_close(s, AW_NEVER))
		aw_error_clear();
}

static void accept_loop(aw_http_lsock *ls)
{
	aw_http_server *srv = ls->srv;
	aw_app *app = srv->app;
	if (srv->stop || app->stop_requested)
		return;
	AW_WITH(aw_move_on_at_init(&ls->accept_scope, AW_NEVER)) {
		ls->accepting = true;
		while (!srv->stop) {
			aw_stream *s;
			int rc = aw_listener_accept(ls->l, &s, AW_NEVER);
			if (rc == -ECANCELED)
				break;
			if ((rc == -EMFILE || rc == -ENFILE) && refuse_out_of_fds(srv, ls->l)) {
				/* accept4 says EMFILE before it looks for a
				 * client: wait for one before trying again. */
				aw_error_clear();
				if (aw_fd_wait(aw_listener_fd(ls->l), AW_READABLE, AW_NEVER) == -ECANCELED)
					break;
				aw_error_clear();
				continue;
			}
			if (rc) {
				bool transient = rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM ||
						 rc == -EPROTO || rc == -EPERM || rc == -ETIMEDOUT;
				aw__http_log_limited(app, aw_error_current(), "accept failed%s",
						     transient ? "" : ": the listener is unusable, stopping");
				if (!transient) {
					/* e.g. a listener that was closed or shut down:
					 * retrying would spin. Stop, and say why. */
					if (!srv->error)
						srv->error = aw_error_take();
					aw_error_clear();
					break;
				}
				/* Out of fds or memory: breathe, go on. */
				aw_error_clear();
				if (aw_sleep(AW_MS(rc == -EMFILE || rc == -ENFILE ? 100 : 10)))
					break;
				continue;
			}
			conn_accepted(ls, s);
		}
		ls->accepting = false;
	}
	ls->accepting = false;
	aw_error_clear();
	/* On io_uring: stop the listener's multishot accept, which would
	 * otherwise go on taking clients from a shared listener's backlog;
	 * then serve the connections it had already taken (queued, or racing
	 * the stop): their clients connected while we listened, so they are
	 * served like one accepted just before the shutdown (the first-request
	 * window), not closed with the listener. */
	if (aw_fd_accept_stop(aw_listener_fd(ls->l)) > 0) {
		aw_stream *s;
		int rc;
		while ((rc = aw_listener_accept_queued(ls->l, &s)) != -EAGAIN) {
			if (rc == 0)
				conn_accepted(ls, s);
			aw_error_clear();
		}
	}
	/* Let the connection tasks started last (on both backends: the accept
	 * that came with the stop, the queued ones) begin before the drain
	 * looks at the connections: one that began only after it would be
	 * closed unserved (conn_main), not given the first-request window. */
	if (aw_yield())
		aw_error_clear();
	/* Stop listening: new connections are refused at once (with
	 * SO_REUSEPORT the kernel sends them to the other workers) instead of
	 * waiting in a backlog nobody accepts from. The caller closes the
	 * listener. Not a listener shared with other processes (inherited,
	 * handed to the next generation, cleartext or TLS alike): they go on
	 * accepting on it. */
	if (!app->listener_shared)
		shutdown(aw_listener_fd(ls->l), SHUT_RDWR);
	/* One listener stopped (asked to, or failed): the others stop too. */
	aw__http_server_stop(srv);
}

/* The accept loop of a listener after the first, in a task of its own. */
static int accept_task(void *arg)
{
	accept_loop(arg);
	return 0;
}

void aw__http_server_hurry(aw_http_server *srv)
{
	srv->hurry = true;
	if (srv->grace)
		aw_scope_cancel(srv->grace);
}

int aw__http_server_run(aw_app *app, aw_http_lsock *ls, size_t n)
{
	aw_http_server srv = { .app = app, .ls = ls, .nls = n };
	/* Reserved for refusing clients when out of descriptors. */
	srv.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	aw_event_init(&srv.drained);
	app->srv = &srv;
	for (size_t i = 0; i < n; i++)
		ls[i] = (aw_http_lsock){ .l = ls[i].l, .tls = ls[i].tls, .srv = &srv };
	/* The first listener's loop runs here, the others' in a group (each
	 * loop, when it ends, stops the others: the group's exit joins them). */
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (size_t i = 1; i < n; i++)
			if (aw_group_spawn(&g, accept_task, &ls[i], "http-accept")) {
				aw__http_log_error(app, aw_error_current(), "cannot start an accept loop");
				aw_error_clear();
				aw__http_server_stop(&srv);
			}
		accept_loop(&ls[0]);
	}
	aw_error_clear();
	drain_connections(&srv);
	app->srv = NULL;
	if (srv.spare_fd >= 0)
		close(srv.spare_fd);
	free(srv.peers);   /* empty: every connection put its count back */
	if (srv.error) {
		int rc = srv.error->code;
		aw_error_raise_obj(srv.error);
		return rc;
	}
	return 0;
}
