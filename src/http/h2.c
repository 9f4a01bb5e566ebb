/* SPDX-License-Identifier: MIT */
/*
 * HTTP/2 on libnghttp2: one connection task does the I/O and runs the
 * nghttp2 session; one task per stream runs the request through the same
 * code as HTTP/1.1.
 *
 * The connection task (aw__http_h2_serve, in the connection's own task)
 * loops: hand nghttp2 what the socket gave (mem_recv: callbacks below
 * build streams), send what nghttp2 has to send (mem_send, batched into
 * one write), then wait for the socket or for a "kick" from a stream task
 * that queued something (a response, body bytes, a window update). The
 * kick cancels the scope the wait runs in: one task ever waits on the
 * socket, so the stream's read/write directions are never shared.
 *
 * A stream is translated at the edge: its header block becomes an
 * HTTP/1.1 head ("GET /p HTTP/1.1\r\nHost: a\r\n...") fed to the same
 * llhttp parser and checks (aw__http_feed_head), so routing, limits,
 * parameters and every request accessor work unchanged. Its task owns an
 * aw_http_conn of its own with c->h2 set; the response functions
 * (response.c) call aw__h2_respond / aw__h2_head / aw__h2_write /
 * aw__h2_flush instead of writing HTTP/1.1 bytes: the body goes to c->out,
 * from which nghttp2's data source copies DATA frames as the client's
 * window allows (a writer parks while more than OUT_HIGH bytes wait).
 * Request bodies arrive in st->in; the window is given back
 * (nghttp2_session_consume: the session runs with no automatic window
 * updates) only as the handler reads, so a client can never be more than
 * a window ahead of its handler.
 *
 * Lifetimes: a stream is created at its first HEADERS (owned by the
 * connection until the header block completes), then owned by its task,
 * which frees it. nghttp2 may close the stream earlier (a reset, an
 * error): on_stream_close marks it closed, cancels its handler and wakes
 * its waits; the task then ends without touching the session's stream.
 * The connection ends only after every stream task has (it cancels them
 * when the connection itself goes).
 */
#include "internal.h"
#include "awith/log.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OUT_HIGH (64 * 1024)      /* a response writer waits above this */
#define READ_CHUNK (64 * 1024)    /* bytes read and handed to nghttp2 at once */
#define SEND_BATCH (64 * 1024)
/* SETTINGS and PING frames (each wants an acknowledgement) a client may
 * send per second; beyond: GOAWAY ENHANCE_YOUR_CALM. nghttp2's own bound
 * (max_outbound_ack) counts acks not yet sent, which a client that does not
 * read keeps below it while our writes wait on its full socket. */
#define MAX_CONTROL_PER_SEC 1000
/* After ENHANCE_YOUR_CALM: how long the GOAWAY may take to leave. */
#define CALM_SEND AW_SEC(1)
/* Ended streams a connection keeps for its next ones: a stream is about
 * 4 KiB plus its buffers, and malloc/free of those per request was a third
 * of the server's time under h2load -m 10. */
#define SPARE_MAX 16

typedef struct aw_h2 aw_h2;
typedef struct aw_h2_stream aw_h2_stream;

struct aw_h2_stream {
	aw_http_conn c;            /* the request, the response, c->out */
	aw_h2 *h;
	int32_t id;
	aw_task *task;
	aw_h2_stream *prev, *next; /* h->streams */
	aw_task *waiter;           /* the stream's task, parked for body or window */

	/* the header block, as an HTTP/1.1 head */
	aw_buf pseudo;             /* method \0 path \0 authority \0 */
	size_t method_len, path_len, auth_len;
	bool has_method, has_path, has_auth, has_host;
	aw_buf fields;             /* "name: value\r\n"... */
	aw_buf head;               /* the HTTP/1.1 head built from them */
	aw_buf cookie;             /* the cookie fields joined with "; " */
	size_t list_size;          /* RFC 9113 header list size */
	int reject;                /* 431 when over max_header_list */
	bool headers_done;         /* the request's header block ended */

	/* the request body */
	aw_buf in;
	size_t in_off;
	size_t unconsumed;         /* received, window not given back yet */
	uint64_t in_total;
	bool in_eof;               /* END_STREAM received */
	bool too_long;             /* more than body_bytes: dropped */
	bool draining;             /* answered: the rest is read and dropped */
	uint64_t dropped;          /* bytes dropped, stream window withheld */
	uint64_t drained;          /* bytes dropped while draining */

	/* the response */
	bool respond_pending;      /* a complete response, submitted at the flush */
	const char *pend_ctype;    /* its content type (in the arena) */
	size_t pend_ctype_len;
	uint64_t pend_len;         /* its Content-Length (HEAD: the GET body's) */
	size_t out_off;            /* c->out bytes already in DATA frames */
	bool submitted;            /* HEADERS submitted */
	bool has_data;             /* with a data source */
	bool eof;                  /* the body is complete */
	bool deferred;             /* the data source waits for bytes */
	bool end_sent;             /* END_STREAM left */
	bool closed;               /* nghttp2 closed the stream */
	uint32_t close_code;
};

struct aw_h2 {
	aw_http_conn *c;           /* the connection's conn (c->s) */
	aw_app *app;
	const aw_http2_opts *o;
	nghttp2_session *ses;
	aw_h2_stream *streams;     /* with a task */
	aw_h2_stream *pending;     /* header block not complete yet (no task) */
	aw_h2_stream *spare;       /* ended streams kept for reuse (next-linked) */
	size_t nspare;
	size_t live;               /* stream tasks running */
	size_t zombies;            /* of which their stream is closed already */
	aw_scope *kick;            /* the connection's wait, while it waits */
	bool kicked;
	bool goaway;               /* GOAWAY submitted */
	bool dead;                 /* the connection ended: streams stop */
	aw_event done;             /* live dropped to 0 after dead */
	aw_buf wbuf;
	/* rapid reset */
	aw_time reset_start;
	uint32_t resets;
	/* SETTINGS and PING floods */
	aw_time ctl_start;
	uint32_t ctl;
	bool calm;                 /* ENHANCE_YOUR_CALM sent: the connection ends */
};

void aw__http2_defaults(aw_http2_opts *o)
{
	*o = (aw_http2_opts){
		.enabled = true,
		.max_concurrent_streams = 100,
		.max_header_list = 32 * 1024,
		.initial_window = 64 * 1024,
		.connection_window = 1024 * 1024,
		.max_resets = 200,
		.reset_window = AW_SEC(1),
	};
}

aw_http2_opts *aw_app_http2(aw_app *app)
{
	return app ? &app->h2 : NULL;
}

#define OPT(h, f, def) ((h)->o->f ? (h)->o->f : (def))

static void kick(aw_h2 *h)
{
	if (h->kick && !h->kicked) {
		h->kicked = true;
		aw_scope_cancel(h->kick);
	}
}

void aw__http_h2_kick(aw_http_conn *c)
{
	if (c->h2c)
		kick(c->h2c);
}

bool aw__http_h2_awaits_first_stream(const aw_http_conn *c)
{
	const aw_h2 *h = c->h2c;
	return h && h->ses && h->live == 0 && !h->goaway && nghttp2_session_get_last_proc_stream_id(h->ses) == 0;
}

static void st_wake(aw_h2_stream *st)
{
	if (st->waiter)
		aw_task_wake(st->waiter, 0);
}

/* Park the stream's task until woken (0), `deadline` (AW_WAKE_TIMER) or
 * cancelled (the code, raised). */
static int st_park(aw_h2_stream *st, aw_time deadline)
{
	st->waiter = aw_task_current();
	int v = aw_task_park(deadline, false);
	st->waiter = NULL;
	return v;
}

static void list_add(aw_h2_stream **head, aw_h2_stream *st)
{
	st->prev = NULL;
	st->next = *head;
	if (*head)
		(*head)->prev = st;
	*head = st;
}

static void list_del(aw_h2_stream **head, aw_h2_stream *st)
{
	if (st->prev)
		st->prev->next = st->next;
	else
		*head = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->prev = st->next = NULL;
}

static aw_h2_stream *stream_of(aw_h2 *h, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(h->ses, id) : NULL;
}

static void stream_free(aw_h2_stream *st)
{
	aw__http_conn_free(&st->c);
	aw__buf_free(&st->pseudo);
	aw__buf_free(&st->fields);
	aw__buf_free(&st->head);
	aw__buf_free(&st->cookie);
	aw__buf_free(&st->in);
	free(st);
}

/* An ended stream: kept for reuse (its buffers too) or freed. */
static void stream_release(aw_h2 *h, aw_h2_stream *st)
{
	if (h->nspare >= SPARE_MAX || h->dead) {
		stream_free(st);
		return;
	}
	aw__http_conn_reset(&st->c);
	if (st->in.cap > 64 * 1024)
		aw__buf_free(&st->in);
	if (st->head.cap > 16 * 1024)
		aw__buf_free(&st->head);
	st->next = h->spare;
	h->spare = st;
	h->nspare++;
}

/* A stream for a new request: a spare one reset, or a new one. */
static aw_h2_stream *stream_take(aw_h2 *h)
{
	aw_h2_stream *st = h->spare;
	if (!st) {
		st = aw__calloc(1, sizeof *st);
		if (!st)
			return NULL;
		aw__http_conn_setup(&st->c, h->app, &h->app->limits);
		st->c.hdrs = aw__malloc(st->c.hdr_cap * sizeof *st->c.hdrs);
		if (!st->c.hdrs) {
			stream_free(st);
			return NULL;
		}
		aw__http_conn_reset(&st->c);
		return st;
	}
	h->spare = st->next;
	h->nspare--;
	aw_buf keep[5] = { st->pseudo, st->fields, st->cookie, st->in, st->head };
	memset((char *)st + offsetof(aw_h2_stream, h), 0, sizeof *st - offsetof(aw_h2_stream, h));
	for (int i = 0; i < 5; i++)
		keep[i].len = 0;
	st->pseudo = keep[0], st->fields = keep[1], st->cookie = keep[2], st->in = keep[3], st->head = keep[4];
	aw_http_conn *c = &st->c;
	c->out.len = 0;
	c->requests = 0;
	c->body_timeout = c->peer_gone = c->hup_seen = c->echo_request_id = false;
	c->handler_scope = NULL;
	return st;
}

/* Give back the window of bytes received and not read: the stream's and
 * the connection's while nghttp2 still has the stream, else the
 * connection's. */
static void give_back(aw_h2 *h, aw_h2_stream *st)
{
	if (!st->unconsumed)
		return;
	if (st->closed)
		(void)nghttp2_session_consume_connection(h->ses, st->unconsumed);
	else
		(void)nghttp2_session_consume(h->ses, st->id, st->unconsumed);
	st->unconsumed = 0;
}

/* ---- the response -------------------------------------------------------------- */

/* The body's last DATA frame: END_STREAM on it, or, with trailers set
 * (aw_http_set_trailer), on a HEADERS frame after it. */
static int data_end(nghttp2_session *ses, aw_h2_stream *st, uint32_t *flags)
{
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	aw_http_trailers *tr = st->c.res.tr;
	if (!aw__http_trailers_set(&st->c.res))
		return 0;
	nghttp2_nv nv[AW_HTTP_TRAILERS_MAX];
	size_t n = 0;
	for (unsigned i = 0; i < tr->n; i++)
		if (tr->v[i].value)
			nv[n++] = (nghttp2_nv){ (uint8_t *)tr->v[i].lname, (uint8_t *)tr->v[i].value, tr->v[i].nlen,
						tr->v[i].vlen, NGHTTP2_NV_FLAG_NONE };
	int rv = nghttp2_submit_trailer(ses, st->id, nv, n);   /* copies nv */
	if (rv)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* reset: never a clean end without them */
	*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	return 0;
}

static ssize_t data_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
			 nghttp2_data_source *src, void *ud)
{
	(void)ud;
	aw_h2_stream *st = src->ptr;
	if (nghttp2_session_get_stream_user_data(ses, id) != st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* its task ended: reset it */
	aw_http_conn *c = &st->c;
	size_t avail = c->out.len - st->out_off;
	if (!avail) {
		if (st->eof)
			return data_end(ses, st, flags);
		st->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	size_t n = avail < length ? avail : length;
	memcpy(buf, c->out.p + st->out_off, n);
	st->out_off += n;
	if (st->out_off == c->out.len) {
		c->out.len = st->out_off = 0;
		if (st->eof && data_end(ses, st, flags))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		st_wake(st);
	} else if (c->out.len - st->out_off <= OUT_HIGH / 2) {
		st_wake(st);
	}
	return (ssize_t)n;
}

static bool status_has_body(int status)
{
	return !(status < 200 || status == 204 || status == 304);
}

static bool hop_by_hop(const char *n, size_t l)
{
	return (l == 10 && strncasecmp(n, "connection", l) == 0) || (l == 10 && strncasecmp(n, "keep-alive", l) == 0) ||
	       (l == 16 && strncasecmp(n, "proxy-connection", l) == 0) ||
	       (l == 17 && strncasecmp(n, "transfer-encoding", l) == 0) || (l == 7 && strncasecmp(n, "upgrade", l) == 0);
}

#define NV(n, nl, v, vl) ((nghttp2_nv){ (uint8_t *)(n), (uint8_t *)(v), (nl), (vl), NGHTTP2_NV_FLAG_NONE })

/* Submit the response's HEADERS: the status, content type and length, the
 * date, the handler's headers (names lowercased, HTTP/1.1 connection
 * fields dropped), X-Request-ID. */
static int submit_head(aw_h2_stream *st, int status, const char *ctype, size_t ctype_len, bool known, uint64_t len,
		       bool with_data)
{
	aw_http_conn *c = &st->c;
	aw_http_response *res = &c->res;
	aw_h2 *h = st->h;
	res->status = status;
	res->sent = true;
	if (st->closed || h->dead)
		return 0;   /* reset by the client: nobody to answer */
	size_t nh = 0;
	for (size_t i = 0; i < res->hdrs.len; i++)
		nh += res->hdrs.p[i] == '\n';
	nghttp2_nv *nv = aw__arena_alloc(&c->arena, (nh + 6) * sizeof *nv);
	char *lower = res->hdrs.len ? aw__arena_alloc(&c->arena, res->hdrs.len) : NULL;
	if (!nv || (res->hdrs.len && !lower))
		return aw_raise(-ENOMEM, "no memory for a response head");
	size_t n = 0;
	char sbuf[4] = { (char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10), (char)('0' + status % 10), 0 };
	nv[n++] = NV(":status", 7, sbuf, 3);
	if (ctype && status_has_body(status))
		nv[n++] = NV("content-type", 12, ctype, ctype_len);
	char lbuf[24];
	if (known && status_has_body(status)) {
		char *e = lbuf + sizeof lbuf, *p = e;
		uint64_t v = len;
		do
			*--p = (char)('0' + v % 10);
		while ((v /= 10) != 0);
		nv[n++] = NV("content-length", 14, p, (size_t)(e - p));
	}
	if (!res->user_date) {
		size_t dl;
		const char *d = aw__http_date_line(&dl);   /* "Date: ...\r\n" */
		nv[n++] = NV("date", 4, d + 6, dl - 8);
	}
	/* "Name: value\r\n" lines as the HTTP/1.1 head would have them. */
	for (size_t i = 0; i < res->hdrs.len;) {
		const char *line = res->hdrs.p + i;
		const char *end = memchr(line, '\n', res->hdrs.len - i);
		size_t ll = (size_t)(end - line) + 1;
		const char *colon = memchr(line, ':', ll);
		size_t nl = (size_t)(colon - line);
		const char *v = colon + 2;
		size_t vl = (size_t)(end - 1 - v);
		char *ln = lower + i;
		for (size_t k = 0; k < nl; k++)
			ln[k] = (char)((line[k] >= 'A' && line[k] <= 'Z') ? line[k] + 32 : line[k]);
		if (!hop_by_hop(line, nl))
			nv[n++] = NV(ln, nl, v, vl);
		i += ll;
	}
	if (c->echo_request_id) {
		const char *idh = c->request_id_header ? c->request_id_header : "x-request-id";
		size_t il = strlen(idh);
		char *li = aw__arena_alloc(&c->arena, il + 1);
		if (!li)
			return aw_raise(-ENOMEM, "no memory for a response head");
		for (size_t k = 0; k < il; k++)
			li[k] = (char)((idh[k] >= 'A' && idh[k] <= 'Z') ? idh[k] + 32 : idh[k]);
		nv[n++] = NV(li, il, c->request_id, strlen(c->request_id));
	}
	nghttp2_data_provider dp = { .source.ptr = st, .read_callback = data_read };
	int rv = nghttp2_submit_response(h->ses, st->id, nv, n, with_data ? &dp : NULL);
	if (rv)
		return aw_raise(-EIO, "HTTP/2 stream %d: cannot submit the response: %s", st->id, nghttp2_strerror(rv));
	st->submitted = true;
	st->has_data = with_data;
	kick(h);
	return 0;
}

/* A complete response is kept (its body in c->out) and submitted at the
 * flush, when the handler is done (as HTTP/1.1 queues it until then): a
 * handler that fails after sending it gets the error's answer instead
 * (aw__http_response_retract empties c->out and the next respond
 * replaces it), never a second HEADERS frame on the stream. */
int aw__h2_respond(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, const void *body, size_t len)
{
	aw_h2_stream *st = c->h2;
	c->out.len = st->out_off = 0;
	c->res.out_mark = 0;
	c->res.body_bytes = 0;
	if (!c->req.is_head && status_has_body(status) && len) {
		if (aw__buf_put(&c->out, body, len))
			return aw_raise(-ENOMEM, "no memory for a %zu-byte response", len);
		c->res.body_bytes = len;
	}
	st->pend_ctype = NULL;
	st->pend_ctype_len = 0;
	if (ctype && !(st->pend_ctype = aw__arena_strndup(&c->arena, ctype, ctype_len)))
		return aw_raise(-ENOMEM, "no memory for a response's content type");
	st->pend_ctype_len = ctype ? ctype_len : 0;
	st->pend_len = len;
	st->respond_pending = true;
	c->res.status = status;
	c->res.sent = true;
	return 0;
}

/* Submit the complete response kept by aw__h2_respond (if it still
 * stands: the error mapping may have retracted it). */
static int submit_pending(aw_h2_stream *st)
{
	aw_http_conn *c = &st->c;
	if (!st->respond_pending)
		return 0;
	st->respond_pending = false;
	if (!c->res.sent)
		return 0;
	int status = c->res.status;
	/* Trailers need a body to follow (even an empty one). */
	bool with_data = !c->req.is_head && status_has_body(status) && (c->out.len || aw__http_trailers_set(&c->res));
	st->eof = true;
	int rc = submit_head(st, status, st->pend_ctype, st->pend_ctype_len, true, st->pend_len, with_data);
	if (!rc)
		c->res.head_written = true;   /* submitted: nghttp2 sends it */
	return rc;
}

int aw__h2_head(aw_http_conn *c, int status, const char *ctype, bool known, uint64_t len, bool body_follows)
{
	aw_h2_stream *st = c->h2;
	if (!body_follows)
		st->eof = true;
	return submit_head(st, status, ctype, ctype ? strlen(ctype) : 0, known, len, body_follows);
}

static int stream_gone(aw_h2_stream *st)
{
	aw_http_conn *c = &st->c;
	c->res.close = true;
	if (st->h->dead)
		return aw_raise(-ECONNRESET, "HTTP/2 stream %d: the connection is gone", st->id);
	return aw_raise(-ECONNRESET, "HTTP/2 stream %d: the client reset it (%s)", st->id,
			nghttp2_http2_strerror(st->close_code));
}

/* Wait until at most `high` bytes of c->out are unsent. */
static int wait_out(aw_h2_stream *st, size_t high)
{
	aw_http_conn *c = &st->c;
	while (!st->closed && !st->h->dead && c->out.len - st->out_off > high) {
		int v = st_park(st, aw__http_after(c->lim->send_idle));
		if (v == AW_WAKE_TIMER) {
			c->res.close = true;
			return aw_raise(-ETIMEDOUT, "HTTP/2 stream %d: the client's window stayed closed for %lld ms",
					st->id, (long long)(c->lim->send_idle / 1000000));
		}
		if (v < 0)
			return v;
	}
	if (st->closed || st->h->dead)
		return c->out.len - st->out_off ? stream_gone(st) : 0;
	return 0;
}

static void resume(aw_h2_stream *st)
{
	if (st->deferred && !st->closed && !st->h->dead) {
		st->deferred = false;
		(void)nghttp2_session_resume_data(st->h->ses, st->id);
	}
	kick(st->h);
}

int aw__h2_write(aw_http_conn *c, const void *p, size_t n)
{
	aw_h2_stream *st = c->h2;
	if (st->closed || st->h->dead)
		return stream_gone(st);
	if (aw__buf_put(&c->out, p, n))
		return aw_raise(-ENOMEM, "no memory for %zu response bytes", n);
	resume(st);
	return wait_out(st, OUT_HIGH);
}

int aw__h2_flush(aw_http_conn *c)
{
	aw_h2_stream *st = c->h2;
	int rc = submit_pending(st);
	if (rc)
		return rc;
	if (!st->submitted)
		return 0;
	resume(st);
	return wait_out(st, 0);
}

/* ---- the request body ------------------------------------------------------------ */

/* Wait for body bytes, its end or a failure. 0 when there is something
 * to read or the body ended; < 0 raised. */
static int body_wait(aw_h2_stream *st)
{
	aw_http_conn *c = &st->c;
	while (st->in.len == st->in_off && !st->in_eof && !st->too_long) {
		if (st->closed || st->h->dead)
			return stream_gone(st);
		int v = st_park(st, aw__http_after(c->lim->body_idle));
		if (v == AW_WAKE_TIMER) {
			c->body_timeout = true;
			return aw_raise(-ETIMEDOUT, "request body: no data for %lld ms",
					(long long)(c->lim->body_idle / 1000000));
		}
		if (v < 0)
			return v;
	}
	if (st->too_long && st->in.len == st->in_off) {
		c->reject_msg = "request body too large";
		return aw_raise(-AW_ETOOLONG, "request body: more than %zu bytes", c->lim->body_bytes);
	}
	return 0;
}

/* n bytes of st->in were read: give their window back. */
static void body_used(aw_h2_stream *st, size_t n)
{
	st->in_off += n;
	if (st->in_off == st->in.len)
		st->in.len = st->in_off = 0;
	size_t k = n < st->unconsumed ? n : st->unconsumed;
	if (k && !st->h->dead) {
		st->unconsumed -= k;
		if (st->closed)
			(void)nghttp2_session_consume_connection(st->h->ses, k);
		else
			(void)nghttp2_session_consume(st->h->ses, st->id, k);
		kick(st->h);
	}
	st->c.req.body_seen += n;
	if (st->in_eof && st->in.len == 0)
		st->c.req.body_complete = true;
}

ssize_t aw__h2_body_read(aw_http_conn *c, void *buf, size_t n)
{
	aw_h2_stream *st = c->h2;
	int rc = body_wait(st);
	if (rc)
		return rc;
	size_t avail = st->in.len - st->in_off;
	size_t k = avail < n ? avail : n;
	memcpy(buf, st->in.p + st->in_off, k);
	body_used(st, k);
	return (ssize_t)k;
}

int aw__h2_body_all(aw_http_conn *c)
{
	aw_h2_stream *st = c->h2;
	aw_http_request *r = &c->req;
	r->body_buf.len = 0;
	for (;;) {
		int rc = body_wait(st);
		if (rc)
			return rc;
		size_t avail = st->in.len - st->in_off;
		if (!avail)
			break;
		if (aw__buf_put(&r->body_buf, st->in.p + st->in_off, avail))
			return aw_raise(-ENOMEM, "request body: no memory for %zu bytes", r->body_buf.len + avail);
		body_used(st, avail);
	}
	r->body = r->body_buf.p ? r->body_buf.p : "";
	r->body_len = r->body_buf.len;
	r->body_loaded = true;
	r->body_complete = true;
	return 0;
}

/* ---- a stream's task ------------------------------------------------------------- */

/* The header block as an HTTP/1.1 head in st->head (kept with the
 * stream: the request's names and values point into it). */
static int build_head(aw_h2_stream *st, char **out, size_t *len)
{
	aw_buf b = st->head;
	b.len = 0;
	const char *m = st->pseudo.p;
	const char *path = m + st->method_len + 1;
	const char *auth = path + st->path_len + 1;
	int rc = 0;
	rc |= aw__buf_put(&b, m, st->method_len);
	rc |= aw__buf_put(&b, " ", 1);
	if (st->has_path)
		rc |= aw__buf_put(&b, path, st->path_len);
	else
		rc |= aw__buf_put(&b, auth, st->auth_len);   /* CONNECT authority */
	rc |= aw__buf_put(&b, " HTTP/1.1\r\n", 11);
	if (st->has_auth && !st->has_host) {
		rc |= aw__buf_put(&b, "host: ", 6);
		rc |= aw__buf_put(&b, auth, st->auth_len);
		rc |= aw__buf_put(&b, "\r\n", 2);
	}
	if (st->fields.len)
		rc |= aw__buf_put(&b, st->fields.p, st->fields.len);
	if (st->cookie.len) {
		rc |= aw__buf_put(&b, "cookie: ", 8);
		rc |= aw__buf_put(&b, st->cookie.p, st->cookie.len);
		rc |= aw__buf_put(&b, "\r\n", 2);
	}
	rc |= aw__buf_put(&b, "\r\n", 2);
	st->head = b;
	if (rc)
		return -ENOMEM;
	*out = b.p;
	*len = b.len;
	return 0;
}

/* After the handler: end the body, wait for it to leave, reset the
 * stream when the request body was not read to its end. */
static void stream_finish(aw_h2_stream *st)
{
	aw_http_conn *c = &st->c;
	aw_h2 *h = st->h;
	if (st->closed || h->dead)
		return;
	if (submit_pending(st))
		aw_error_clear();   /* not submitted: reset below */
	if (!st->submitted) {
		(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
		kick(h);
		return;
	}
	if (!st->eof) {
		if (c->req.trace_err < 0) {
			/* The handler failed in the middle of its body: only a
			 * reset tells the client it is cut short. */
			(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
			kick(h);
			return;
		}
		st->eof = true;
	}
	resume(st);
	AW_WITH(AW_SHIELD()) {
		aw_time deadline = aw__http_after(c->lim->send_idle);
		while (!st->closed && !h->dead && !st->end_sent) {
			size_t before = c->out.len - st->out_off;
			int v = st_park(st, deadline);
			if (v == AW_WAKE_TIMER) {
				if (c->out.len - st->out_off < before) {
					deadline = aw__http_after(c->lim->send_idle);
					continue;
				}
				(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
				kick(h);
				break;
			}
		}
	}
	aw_error_clear();
	if (!st->closed && !h->dead && st->end_sent && !st->in_eof) {
		/* The client still sends a body nobody reads: read and drop up
		 * to AW_HTTP_DRAIN_MAX (its window given back, so that it can
		 * finish: some clients, curl 7.88 among them, take a reset of a
		 * stream they still upload on as a failed request), then reset
		 * it with NO_ERROR (RFC 9113 8.1). */
		st->draining = true;
		give_back(h, st);
		if (st->dropped)
			(void)nghttp2_session_consume_stream(h->ses, st->id, st->dropped);
		st->in.len = st->in_off = 0;
		kick(h);
		AW_WITH(AW_SHIELD()) {
			while (!st->closed && !h->dead && !st->in_eof && st->drained <= AW_HTTP_DRAIN_MAX)
				if (st_park(st, aw__http_after(c->lim->body_idle)) == AW_WAKE_TIMER)
					break;
		}
		aw_error_clear();
		if (!st->closed && !h->dead && !st->in_eof) {
			(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
			kick(h);
		}
	}
}

static void serve_stream(aw_h2_stream *st)
{
	aw_http_conn *c = &st->c;
	aw_http_request *r = &c->req;
	c->requests++;
	char *head = NULL;
	size_t hlen = 0;
	int status = st->reject;
	if (!status && build_head(st, &head, &hlen))
		status = 503;
	if (!status) {
		int fs = aw__http_feed_head(c, head, hlen);
		if (fs != 1)
			status = fs >= 400 ? fs : 400;
	}
	if (status) {
		if (!r->base || !c->req.method_len)
			r->base = head ? head : "";
		r->method_len = r->target_len = 0;
		if (!c->reject_msg)
			c->reject_msg = status == 431 ? "header list too large" : aw__http_reason(status);
		const char *msg = c->reject_msg;
		aw__http_request_begin(c);
		aw__http_queue_error(c, status, msg, NULL);
	} else {
		r->base = head;
		if (st->in_eof && st->in.len == 0) {
			r->body_mode = AW_BODY_NONE;
			r->body_complete = true;
		} else if (r->body_mode == AW_BODY_NONE) {
			r->body_mode = AW_BODY_CHUNKED;   /* length unknown: until END_STREAM */
		}
		if (r->body_mode == AW_BODY_LENGTH && r->content_length > c->lim->body_bytes)
			st->too_long = true;
		r->continue_sent = true;   /* HTTP/2 needs no 100 Continue */
		aw__http_request_begin(c);
		aw__http_trace_begin(c);
		int st2 = aw__http_prepare_request(c);
		if (st2) {
			aw__http_queue_error(c, st2, c->reject_msg, NULL);
		} else {
			aw_trace *outer = aw__http_trace_enter(r);
			aw__app_dispatch(c);
			(void)aw_trace_swap(outer);
		}
	}
	stream_finish(st);
	aw_error_clear();
	aw__http_request_end(c);
}

static int stream_main(void *arg)
{
	aw_h2_stream *st = arg;
	aw_h2 *h = st->h;
	serve_stream(st);
	aw_error_clear();
	/* Detach from the session: data still arriving for it is dropped. */
	if (!st->closed && !h->dead)
		(void)nghttp2_session_set_stream_user_data(h->ses, st->id, NULL);
	if (!h->dead)
		give_back(h, st);
	list_del(&h->streams, st);
	if (st->closed)
		h->zombies--;
	h->live--;
	stream_release(h, st);
	if (h->dead && h->live == 0)
		aw_event_set(&h->done);
	kick(h);
	return 0;
}

/* The header block completed: start the stream's task. */
static int stream_start(aw_h2 *h, aw_h2_stream *st)
{
	st->headers_done = true;
	if (!st->has_method || (!st->has_path && !st->has_auth)) {
		(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
		return 0;
	}
	aw_spawn_opts o = { .name = "http-h2-stream" };
	aw_task *t;
	if (aw_spawn_with(&t, stream_main, st, &o)) {
		aw_error_clear();
		aw__http_log_limited(h->app, NULL, "HTTP/2: cannot start a stream task: refusing the stream");
		(void)nghttp2_submit_rst_stream(h->ses, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	st->task = t;
	aw_task_detach(t);
	list_del(&h->pending, st);
	list_add(&h->streams, st);
	h->live++;
	return 0;
}

/* ---- nghttp2's callbacks (in the connection's task) ---------------------------- */

static int on_begin_headers(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
	aw_h2 *h = ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	aw_h2_stream *st = stream_take(h);
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* resets the stream */
	st->c.srv = h->c->srv;
	st->c.s = h->c->s;
	st->c.accepted = h->c->accepted;
	memcpy(st->c.peer, h->c->peer, sizeof st->c.peer);
	/* Over TLS: the stream's handler sees what the connection's would
	 * (aw_http_is_tls, aw_http_peer_cert_subject); the subject is the
	 * connection's (freed after every stream has ended). */
	st->c.tls = h->c->tls;
	st->c.peer_subject = h->c->peer_subject;
	st->c.h2 = st;
	st->h = h;
	st->id = f->hd.stream_id;
	list_add(&h->pending, st);
	nghttp2_session_set_stream_user_data(ses, st->id, st);
	return 0;
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	(void)ses, (void)flags;
	aw_h2 *h = ud;
	aw_h2_stream *st = stream_of(h, f->hd.stream_id);
	if (!st || st->reject)
		return 0;
	st->list_size += nlen + vlen + 32;
	if (st->list_size > OPT(h, max_header_list, 32 * 1024)) {
		st->reject = 431;
		st->c.reject_msg = st->headers_done ? "trailer section too large" : "header list too large";
		return 0;
	}
	if (st->headers_done)
		return 0;   /* trailers: counted, dropped */
	const char *n = (const char *)name, *v = (const char *)value;
	int rc = 0;
	if (nlen && n[0] == ':') {
		/* nghttp2 checked them (once each, before the fields) */
		if (nlen == 7 && memcmp(n, ":method", 7) == 0) {
			st->has_method = true;
			st->method_len = vlen;
		} else if (nlen == 5 && memcmp(n, ":path", 5) == 0) {
			st->has_path = true;
			st->path_len = vlen;
		} else if (nlen == 10 && memcmp(n, ":authority", 10) == 0) {
			st->has_auth = true;
			st->auth_len = vlen;
		} else {
			return 0;   /* :scheme */
		}
		return 0;
	}
	if (nlen == 6 && memcmp(n, "cookie", 6) == 0) {
		if (st->cookie.len)
			rc |= aw__buf_put(&st->cookie, "; ", 2);
		rc |= aw__buf_put(&st->cookie, v, vlen);
	} else {
		if (nlen == 4 && memcmp(n, "host", 4) == 0)
			st->has_host = true;
		rc |= aw__buf_put(&st->fields, n, nlen);
		rc |= aw__buf_put(&st->fields, ": ", 2);
		rc |= aw__buf_put(&st->fields, v, vlen);
		rc |= aw__buf_put(&st->fields, "\r\n", 2);
	}
	return rc ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

/* The pseudo-headers arrive first, each once, in any order: keep their
 * values in st->pseudo (method \0 path \0 authority \0) once they are all
 * seen. nghttp2 hands them out before the regular fields, so collect them
 * through a second, value-keeping callback. */
static int on_header_pseudo(nghttp2_session *ses, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
			    const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	aw_h2 *h = ud;
	aw_h2_stream *st = stream_of(h, f->hd.stream_id);
	if (st && !st->headers_done && !st->reject && nlen && name[0] == ':') {
		/* Store in arrival order, tagged; build_head wants them in
		 * a fixed layout, done in pseudo_layout. */
		char tag = nlen == 7 && memcmp(name, ":method", 7) == 0 ? 'm' :
			   nlen == 5 && memcmp(name, ":path", 5) == 0 ? 'p' :
			   nlen == 10 && memcmp(name, ":authority", 10) == 0 ? 'a' : 0;
		if (tag) {
			uint32_t l = (uint32_t)vlen;
			if (aw__buf_put(&st->pseudo, &tag, 1) || aw__buf_put(&st->pseudo, &l, sizeof l) ||
			    aw__buf_put(&st->pseudo, value, vlen))
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
	}
	return on_header(ses, f, name, nlen, value, vlen, flags, ud);
}

/* Rewrite st->pseudo from tagged records into method \0 path \0 authority \0. */
static int pseudo_layout(aw_h2_stream *st)
{
	const char *v[3] = { "", "", "" };
	size_t l[3] = { 0, 0, 0 };
	for (size_t i = 0; i + 5 <= st->pseudo.len;) {
		char tag = st->pseudo.p[i];
		uint32_t n;
		memcpy(&n, st->pseudo.p + i + 1, sizeof n);
		int k = tag == 'm' ? 0 : tag == 'p' ? 1 : 2;
		v[k] = st->pseudo.p + i + 5;
		l[k] = n;
		i += 5 + n;
	}
	aw_buf b = { 0 };
	int rc = 0;
	for (int k = 0; k < 3; k++) {
		rc |= aw__buf_put(&b, v[k], l[k]);
		rc |= aw__buf_put(&b, "", 1);
	}
	aw__buf_free(&st->pseudo);
	st->pseudo = b;
	st->method_len = l[0];
	st->path_len = l[1];
	st->auth_len = l[2];
	return rc ? -ENOMEM : 0;
}

static void count_reset(aw_h2 *h)
{
	aw_time now = aw__http_now();
	aw_time win = OPT(h, reset_window, AW_SEC(1));
	if (now - h->reset_start >= win) {
		h->reset_start = now;
		h->resets = 0;
	}
	if (++h->resets > OPT(h, max_resets, 200) && !h->calm) {
		h->calm = true;
		aw__http_log_limited(h->app, NULL,
				     "HTTP/2: more than %u streams reset by the client within %lld ms "
				     "(rapid reset): GOAWAY ENHANCE_YOUR_CALM",
				     (unsigned)OPT(h, max_resets, 200), (long long)(win / 1000000));
		(void)nghttp2_session_terminate_session(h->ses, NGHTTP2_ENHANCE_YOUR_CALM);
	}
}

static void count_control(aw_h2 *h)
{
	aw_time now = aw__http_now();
	if (now - h->ctl_start >= AW_SEC(1)) {
		h->ctl_start = now;
		h->ctl = 0;
	}
	if (++h->ctl > MAX_CONTROL_PER_SEC && !h->calm) {
		h->calm = true;
		aw__http_log_limited(h->app, NULL,
				     "HTTP/2: more than %d SETTINGS/PING frames within a second (a flood of control "
				     "frames): GOAWAY ENHANCE_YOUR_CALM", MAX_CONTROL_PER_SEC);
		(void)nghttp2_session_terminate_session(h->ses, NGHTTP2_ENHANCE_YOUR_CALM);
	}
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
	(void)ses;
	aw_h2 *h = ud;
	if (f->hd.type == NGHTTP2_RST_STREAM) {
		count_reset(h);
		return 0;
	}
	if ((f->hd.type == NGHTTP2_PING || f->hd.type == NGHTTP2_SETTINGS) && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
		count_control(h);
		return 0;
	}
	aw_h2_stream *st = stream_of(h, f->hd.stream_id);
	if (!st)
		return 0;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	if (f->hd.type == NGHTTP2_HEADERS && !st->headers_done) {
		if (end)
			st->in_eof = true;
		if (pseudo_layout(st))
			st->reject = 503;
		return stream_start(h, st);
	}
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end) {
		st->in_eof = true;
		if (st->in.len == st->in_off)
			st->c.req.body_complete = true;
		st_wake(st);
	}
	return 0;
}

static int on_data(nghttp2_session *ses, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	(void)flags;
	aw_h2 *h = ud;
	aw_h2_stream *st = stream_of(h, id);
	if (!st || !st->task) {
		(void)nghttp2_session_consume(ses, id, len);   /* nobody reads it */
		return 0;
	}
	st->in_total += len;
	if (st->draining) {
		st->drained += len;
		(void)nghttp2_session_consume(ses, id, len);
		st_wake(st);
		return 0;
	}
	if (st->too_long || st->in_total > st->c.lim->body_bytes) {
		/* Dropped; the stream's window is not given back (the client
		 * stalls), the connection's is (the other streams go on). */
		st->too_long = true;
		st->dropped += len;
		(void)nghttp2_session_consume_connection(ses, len);
		st_wake(st);
		return 0;
	}
	if (aw__buf_put(&st->in, data, len))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->unconsumed += len;
	st_wake(st);
	return 0;
}

static int on_frame_send(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
	(void)ses;
	aw_h2 *h = ud;
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		aw_h2_stream *st = stream_of(h, f->hd.stream_id);
		if (st) {
			st->end_sent = true;
			st_wake(st);
		}
	}
	return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t id, uint32_t code, void *ud)
{
	(void)ses;
	aw_h2 *h = ud;
	aw_h2_stream *st = stream_of(h, id);
	if (!st)
		return 0;
	if (!st->task) {
		list_del(&h->pending, st);
		stream_release(h, st);   /* closed before its header block completed */
		return 0;
	}
	give_back(h, st);
	st->closed = true;
	st->close_code = code;
	h->zombies++;
	aw_http_conn *c = &st->c;
	if (!st->end_sent && c->handler_scope && !c->peer_gone &&
	    !(c->req.route && c->req.route->opts.finish_when_client_gone)) {
		/* Reset before its response ended: as a client that went away. */
		c->peer_gone = true;
		aw_scope_cancel(c->handler_scope);
	}
	st_wake(st);
	return 0;
}

/* ---- the connection -------------------------------------------------------------- */

/* Send everything nghttp2 has queued, batched into few writes. */
static int send_pending(aw_h2 *h)
{
	aw_http_conn *c = h->c;
	for (;;) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(h->ses, &d);
		if (n < 0)
			return aw_raise(-EIO, "HTTP/2: %s", nghttp2_strerror((int)n));
		if (n && aw__buf_put(&h->wbuf, d, (size_t)n))
			return aw_raise(-ENOMEM, "HTTP/2: no memory for output");
		if (n && h->wbuf.len < SEND_BATCH)
			continue;
		if (!h->wbuf.len)
			return 0;   /* nghttp2 has nothing more, everything written */
		/* The write may wait (the client reads slowly): stream tasks
		 * that queue output meanwhile cannot kick a task that does not
		 * wait on its scope, so ask nghttp2 again after every write. */
		aw_time idle = h->calm && CALM_SEND < c->lim->send_idle ? CALM_SEND : c->lim->send_idle;
		int rc = aw_stream_write(c->s, h->wbuf.p, h->wbuf.len, aw__http_after(idle));
		h->wbuf.len = 0;
		if (rc)
			return rc;
	}
}

static nghttp2_session_callbacks *callbacks(void)
{
	nghttp2_session_callbacks *mine;
	if (nghttp2_session_callbacks_new(&mine))
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(mine, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(mine, on_header_pseudo);
	nghttp2_session_callbacks_set_on_frame_recv_callback(mine, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(mine, on_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(mine, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(mine, on_stream_close);
	return mine;
}

static int session_new(aw_h2 *h)
{
	nghttp2_session_callbacks *cbs = callbacks();
	nghttp2_option *opt;
	if (!cbs || nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cbs);
		return aw_raise(-ENOMEM, "HTTP/2: no memory for a session");
	}
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_continuations(opt, 8);
	/* Our own rapid-reset count (count_reset) answers first; nghttp2's
	 * token bucket stays as a backstop. */
	int rv = nghttp2_session_server_new2(&h->ses, cbs, h, opt);   /* copies cbs */
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rv)
		return aw_raise(-ENOMEM, "HTTP/2: cannot create a session: %s", nghttp2_strerror(rv));
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, OPT(h, max_concurrent_streams, 100) },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, OPT(h, initial_window, 64 * 1024) },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, OPT(h, max_header_list, 32 * 1024) },
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
	};
	rv = nghttp2_submit_settings(h->ses, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
	if (!rv)
		rv = nghttp2_session_set_local_window_size(h->ses, NGHTTP2_FLAG_NONE, 0,
							   (int32_t)OPT(h, connection_window, 1024 * 1024));
	if (rv)
		return aw_raise(-EIO, "HTTP/2: cannot set up the session: %s", nghttp2_strerror(rv));
	return 0;
}

/* Wait for input or a kick. 1: bytes to read; 0: kicked or idle timeout
 * handled (loop again); < 0: the connection ends (EOF, error, cancelled). */
static int conn_wait(aw_h2 *h, aw_time deadline, bool read)
{
	aw_http_conn *c = h->c;
	ssize_t n = 0;
	aw_scope sc;
	h->kicked = false;
	AW_WITH(aw_move_on_at_init(&sc, deadline)) {
		h->kick = &sc;
		if (read)
			n = aw_stream_fill(c->s, aw_stream_buffered(c->s) + READ_CHUNK, AW_NEVER);
		else
			n = aw_sleep_until(AW_NEVER);
		h->kick = NULL;
	}
	h->kick = NULL;
	if (h->kicked) {
		aw_error_clear();
		return 0;
	}
	if (n > 0)
		return 1;
	if (n == 0 && read)
		return -AW_EEOF;
	if (!aw_error_pending() && aw_now() >= deadline)
		return -ETIMEDOUT;   /* the move-on scope's deadline: idle */
	return n ? (int)n : -ECANCELED;
}

void aw__http_h2_serve(aw_http_conn *c)
{
	aw_h2 *h = aw__calloc(1, sizeof *h);
	if (!h) {
		aw__http_log_limited(c->app, NULL, "HTTP/2: no memory for a connection: closing it");
		return;
	}
	h->c = c;
	h->app = c->app;
	h->o = &c->app->h2;
	aw_event_init(&h->done);
	if (session_new(h)) {
		aw__http_log_limited(c->app, aw_error_current(), "HTTP/2: closing the connection");
		aw_error_clear();
		if (h->ses)
			nghttp2_session_del(h->ses);
		free(h);
		return;
	}
	c->h2c = h;
	c->idle = false;
	bool cancelled = false, fatal = false;
	for (;;) {
		if (fatal && !nghttp2_session_want_write(h->ses))
			break;
		if (send_pending(h))
			break;
		if (!nghttp2_session_want_read(h->ses) && !nghttp2_session_want_write(h->ses))
			break;   /* GOAWAY both ways, or a fatal error queued and sent */
		bool draining = c->srv && c->srv->draining;
		/* A connection that opened no stream yet when the shutdown
		 * began (just accepted; its client connected while we listened
		 * and will not retry) gets until first_request_end to open one,
		 * as an HTTP/1 connection gets for its first request: a GOAWAY
		 * naming stream 0 now would fail a request already on its way. */
		bool first_wait = draining && !c->srv->hurry && aw__http_h2_awaits_first_stream(c) &&
				  aw_now() < c->srv->first_request_end;
		if (draining && !h->goaway && !first_wait) {
			h->goaway = true;
			(void)nghttp2_submit_goaway(h->ses, NGHTTP2_FLAG_NONE,
						    nghttp2_session_get_last_proc_stream_id(h->ses), NGHTTP2_NO_ERROR, NULL,
						    0);
			continue;
		}
		if (draining && h->live == 0 && !first_wait)
			break;
		/* Nothing buffered: wait. Idle (no stream task): the keep-alive
		 * timeout applies, and a shutdown may cancel the wait. */
		const char *data;
		size_t len;
		aw_stream_peek(c->s, &data, &len);
		bool throttled = h->zombies >= OPT(h, max_concurrent_streams, 100);
		if (!len || throttled) {
			c->idle = h->live == 0;
			aw_time idle_end = first_wait ? c->srv->first_request_end : aw__http_after(c->lim->keepalive_idle);
			int w = conn_wait(h, h->live ? AW_NEVER : idle_end, !throttled);
			c->idle = false;
			if (w == 0)
				continue;
			if (w == -ETIMEDOUT && h->live == 0) {
				aw_error_clear();
				(void)nghttp2_submit_goaway(h->ses, NGHTTP2_FLAG_NONE,
							    nghttp2_session_get_last_proc_stream_id(h->ses),
							    NGHTTP2_NO_ERROR, NULL, 0);
				h->goaway = true;
				break;
			}
			if (w < 0) {
				cancelled = w == -ECANCELED;
				aw_error_clear();
				break;
			}
			aw_stream_peek(c->s, &data, &len);
		}
		ssize_t used = nghttp2_session_mem_recv(h->ses, (const uint8_t *)data, len);
		if (used < 0) {
			/* A fatal protocol error (bad preface, a flood...):
			 * nghttp2 queued a GOAWAY when it could. */
			aw__http_log_limited(c->app, NULL, "HTTP/2: closing the connection: %s",
					     nghttp2_strerror((int)used));
			aw_stream_consume(c->s, len);
			if (used == NGHTTP2_ERR_FLOODED || used == NGHTTP2_ERR_BAD_CLIENT_MAGIC)
				break;
			(void)nghttp2_session_terminate_session(h->ses, NGHTTP2_PROTOCOL_ERROR);
			fatal = true;
			continue;   /* send the GOAWAY, then want_write is off */
		}
		aw_stream_consume(c->s, (size_t)used);
	}
	aw_error_clear();
	/* The connection is over: the streams' tasks end (cancelled), then
	 * a last GOAWAY if none was sent, under a short shielded deadline. */
	h->dead = true;
	for (aw_h2_stream *st = h->streams; st; st = st->next) {
		aw_http_conn *sc = &st->c;
		if (sc->handler_scope && !sc->peer_gone) {
			sc->peer_gone = true;
			aw_scope_cancel(sc->handler_scope);
		}
		if (cancelled || !sc->handler_scope)
			aw_task_cancel(st->task);
		st_wake(st);
	}
	AW_WITH(AW_SHIELD()) {
		while (h->live)
			if (aw_event_wait(&h->done))
				break;
	}
	aw_error_clear();
	if (!h->goaway && !cancelled) {
		(void)nghttp2_session_terminate_session(h->ses, NGHTTP2_NO_ERROR);
		h->goaway = true;
	}
	if (h->goaway || cancelled) {
		if (!h->goaway)
			(void)nghttp2_session_terminate_session(h->ses, NGHTTP2_NO_ERROR);
		aw_scope sh, to;
		AW_WITH(aw_shield_init(&sh), aw_timeout_init(&to, AW_MS(200))) {
			if (send_pending(h))
				aw_error_clear();
		}
		aw_error_clear();
	}
	c->h2c = NULL;
	nghttp2_session_del(h->ses);   /* calls no callback: free what it held */
	while (h->pending) {
		aw_h2_stream *st = h->pending;
		list_del(&h->pending, st);
		stream_free(st);
	}
	while (h->spare) {
		aw_h2_stream *st = h->spare;
		h->spare = st->next;
		stream_free(st);
	}
	aw__buf_free(&h->wbuf);
	free(h);
}
