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
 * connections are cancelled (they close), busy ones finish their request
 * (answered with Connection: close) within shutdown_grace; the rest are
 * then cancelled and awaited: their dependencies' teardown and their
 * streams' exits still run (shielded, under the loop's cleanup grace).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_SLACK 64
#define LINGER_TIME AW_SEC(5)
#define LINGER_IDLE AW_SEC(1)

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
	int unread = 0;
	if (ioctl(aw_stream_fd(c->s), FIONREAD, &unread) == 0 && unread > 0)
		return;
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
		if (srv_draining(c))
			return 0;
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

static void access_log(aw_http_conn *c)
{
	aw_app *app = c->app;
	aw_http_request *r = &c->req;
	double ms = (double)(aw_now() - r->started) / 1e6;
	fprintf(app->access_log, "%s \"%.*s %.*s HTTP/1.%d\" %d %zu %.3fms\n", c->peer, (int)r->method_len,
		r->base + r->method_off, (int)r->target_len, r->base + r->target_off, r->minor, c->res.status,
		c->res.body_bytes, ms);
}

/* Serve one parsed request. Returns true to keep the connection. */
static bool handle_request(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	const char *data;
	size_t len;
	c->requests++;
	r->started = c->app->access_log ? aw_now() : 0;
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
	int st = aw__http_prepare_request(c);
	if (st) {
		c->res.close = true;
		aw__http_queue_error(c, st, c->reject_msg, NULL);
	} else {
		aw__app_dispatch(c);
	}
	bool keep = !c->res.close && drain_body(c);
	if (c->pos) {
		aw_stream_consume(c->s, c->pos);
		c->pos = 0;
	}
	if (c->app->access_log && c->res.status)
		access_log(c);
	return keep && !srv_draining(c);
}

static void serve_conn(aw_http_conn *c)
{
	for (;;) {
		aw__http_conn_reset(c);
		int st = read_head(c);
		if (st == 0)
			break;
		if (st >= 400) {
			const char *msg = c->reject_msg;
			aw__http_conn_reset(c);
			c->res.close = true;
			aw__http_queue_error(c, st, msg, NULL);
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
static bool refuse_out_of_fds(aw_http_server *srv)
{
	if (srv->spare_fd < 0)
		return false;
	int lfd = aw_listener_fd(srv->l);
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

static void peer_text(aw_stream *s, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	snprintf(buf, len, "-");
	if (getpeername(aw_stream_fd(s), (struct sockaddr *)&ss, &sl) != 0)
		return;
	char host[INET6_ADDRSTRLEN];
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%d", host, ntohs(in->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(buf, len, "[%s]:%d", host, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "unix");
	}
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
		peer_text(st.s, c->peer, sizeof c->peer);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	AW_WITH(aw_stream_mgr(st.s)) {
		/* A handler whose client goes away is cancelled: the loop
		 * calls on_peer_closed on EPOLLRDHUP (nothing per request). */
		if (aw_fd_on_hup(aw_stream_fd(st.s), on_peer_closed, c))
			aw_error_clear();
		if (!srv->draining)
			serve_conn(c);
		aw_fd_on_hup(aw_stream_fd(st.s), NULL, NULL);
	}
	aw_error_clear();   /* a failed close: nothing more to tell the client */
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	aw__http_conn_free(c);
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
	if (srv->accepting)
		aw_scope_cancel(&srv->accept_scope);
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

static void drain_connections(aw_http_server *srv)
{
	aw_app *app = srv->app;
	srv->draining = true;
	for (aw_http_conn *c = srv->conns; c; c = c->next)
		if (c->idle && c->task)
			aw_task_cancel(c->task);
	if (srv->nconns && !srv->hurry) {
		aw_scope grace;
		AW_WITH(aw_move_on_init(&grace, app->limits.shutdown_grace)) {
			srv->grace = &grace;
			while (srv->nconns)
				if (aw_event_wait(&srv->drained))
					break;
		}
		srv->grace = NULL;
		aw_error_clear();
	}
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

static void accept_loop(aw_http_server *srv)
{
	aw_app *app = srv->app;
	if (srv->stop || app->stop_requested)
		return;
	AW_WITH(aw_move_on_at_init(&srv->accept_scope, AW_NEVER)) {
		srv->accepting = true;
		while (!srv->stop) {
			aw_stream *s;
			int rc = aw_listener_accept(srv->l, &s, AW_NEVER);
			if (rc == -ECANCELED)
				break;
			if ((rc == -EMFILE || rc == -ENFILE) && refuse_out_of_fds(srv)) {
				/* accept4 says EMFILE before it looks for a
				 * client: wait for one before trying again. */
				aw_error_clear();
				if (aw_fd_wait(aw_listener_fd(srv->l), AW_READABLE, AW_NEVER) == -ECANCELED)
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
					srv->error = aw_error_take();
					break;
				}
				/* Out of fds or memory: breathe, go on. */
				aw_error_clear();
				if (aw_sleep(AW_MS(rc == -EMFILE || rc == -ENFILE ? 100 : 10)))
					break;
				continue;
			}
			const aw_http_limits *lim = &app->limits;
			if (lim->max_connections && srv->nconns >= lim->max_connections) {
				refuse_stream(srv, s, "max_connections reached");
				continue;
			}
			aw_http_peer *peer = NULL;
			uint8_t addr[16];
			if (lim->max_connections_per_client && peer_addr(aw_stream_fd(s), addr) &&
			    (peer = peer_get(srv, addr))) {
				if (peer->count >= lim->max_connections_per_client) {
					refuse_stream(srv, s, "max_connections_per_client reached");
					continue;
				}
				peer->count++;
			}
			conn_start *st = aw__malloc(sizeof *st);
			if (st) {
				*st = (conn_start){ srv, s, aw__http_now(), peer };
				aw_spawn_opts o = { .name = "http-conn" };
				if (aw_spawn_with(NULL, conn_main, st, &o) == 0) {
					srv->nconns++;
					continue;
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
		srv->accepting = false;
	}
	srv->accepting = false;
	aw_error_clear();
	/* Stop listening: new connections are refused at once (with
	 * SO_REUSEPORT the kernel sends them to the other workers) instead of
	 * waiting in a backlog nobody accepts from. The caller closes the
	 * listener. */
	shutdown(aw_listener_fd(srv->l), SHUT_RDWR);
}

void aw__http_server_hurry(aw_http_server *srv)
{
	srv->hurry = true;
	if (srv->grace)
		aw_scope_cancel(srv->grace);
}

int aw__http_server_run(aw_app *app, aw_listener *l)
{
	aw_http_server srv = { .app = app, .l = l };
	/* Reserved for refusing clients when out of descriptors. */
	srv.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	aw_event_init(&srv.drained);
	app->srv = &srv;
	accept_loop(&srv);
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
