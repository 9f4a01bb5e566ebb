/* SPDX-License-Identifier: MIT */
/*
 * Requests and their responses. The response is a manager: enter sends
 * the request on the session's CURLM and waits (an aw_event) until the
 * transfer is done, with the body read whole up to the size limit; exit
 * frees the transfer. The easy handle leaves the CURLM as soon as the
 * transfer is done, so its connection is back in the pool for the next
 * request while the block is still reading the response.
 *
 * Two deadlines are ours, not curl's, kept by the waiting task itself
 * (xfer_wait): the connect timeout counts from the moment the request is
 * handed to curl, so it also covers the wait for a free connection slot
 * (curl's CONNECTTIMEOUT starts only when curl begins to connect, and a
 * transfer queued behind CURLMOPT_MAX_HOST_CONNECTIONS waits without
 * limit); the read idle timeout is a deadline that every sign of life
 * (bytes in, bytes of a streamed body out) moves, checked when it passes
 * (no wake-up per chunk). curl's LOW_SPEED options count whole seconds.
 *
 * A request body from a source (body_fn, body_stream) is pumped by a small
 * detached task of the request's: it fills one buffer from the source
 * (which may wait), curl's read callback empties it and says PAUSE when it
 * is empty, and the pump unpauses the transfer when it has refilled it.
 */
#include "internal.h"

#include <awith/io.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define AW_CLIENT_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define AW_CLIENT_DEFAULT_REDIRECTS 10
#define AW_CLIENT_UPLOAD_BUF ((size_t)64 << 10)

static int buf_add(aw_client_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = aw__realloc(b->data, cap);
		if (!d)
			return -ENOMEM;
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	aw_client_xfer *x = ud;
	size_t len = size * n;
	if (x->idle)
		x->last_rx = aw_now();
	if (x->streaming) {
		/* Backpressure: one chunk at a time; curl holds the rest (and
		 * stops reading the socket) until the reader takes it. */
		if (x->pending) {
			x->paused = true;
			return CURL_WRITEFUNC_PAUSE;
		}
		x->body.len = 0;
		if (buf_add(&x->body, p, len) < 0)
			return 0;
		x->pending = true;
		x->headers_done = true;
		aw_event_set(&x->progress);
		return len;
	}
	if (x->body.len + len > x->max_body) {
		x->too_long = true;
		return 0;   /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (buf_add(&x->body, p, len) < 0)
		return 0;
	return len;
}

/* Header lines are kept as "Name: value\0"; a status line starts over
 * (a redirect's or a 100 Continue's headers are not the final ones). */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	aw_client_xfer *x = ud;
	size_t len = size * n;
	if (x->idle)
		x->last_rx = aw_now();
	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		x->hdrs.len = 0;
		x->saw_location = false;
		return len;
	}
	size_t l = len;
	while (l && (p[l - 1] == '\n' || p[l - 1] == '\r'))
		l--;
	if (!l && x->streaming && !x->headers_done) {
		/* End of a header block: the final one unless curl goes on
		 * (1xx, or a redirect it follows). */
		long code = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200 && !(code >= 300 && code < 400 && x->saw_location && x->follow)) {
			x->headers_done = true;
			aw_event_set(&x->progress);
		}
		return len;
	}
	if (!l || !memchr(p, ':', l))
		return len;
	if (l > 9 && strncasecmp(p, "location:", 9) == 0)
		x->saw_location = true;
	if (buf_add(&x->hdrs, p, l) < 0 || buf_add(&x->hdrs, "", 1) < 0)
		return 0;
	return len;
}

/* A connection is up (or reused) and the request is about to leave: the
 * connect timeout is over, the read idle clock starts. */
static int on_prereq(void *ud, char *remote_ip, char *local_ip, int remote_port, int local_port)
{
	(void)remote_ip, (void)local_ip, (void)remote_port, (void)local_port;
	aw_client_xfer *x = ud;
	x->connected = true;
	x->last_rx = aw_now();
	return CURL_PREREQFUNC_OK;
}

/* Only to know whether curl got as far as a socket (the connect timeout's
 * message says "waiting for a free connection slot" otherwise). */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)purpose;
	aw_client_xfer *x = ud;
	x->sock_opened = true;
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* With a read idle timeout: bytes of a body sent from memory (POSTFIELDS)
 * are signs of life too. */
static int on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	(void)dltotal, (void)ultotal;
	aw_client_xfer *x = ud;
	if (ulnow != x->last_ul || dlnow != x->last_dl) {
		x->last_ul = ulnow;
		x->last_dl = dlnow;
		x->last_rx = aw_now();
	}
	return 0;
}

/* ---- request bodies from a source ------------------------------------------------------ */

/* curl wants body bytes: from the pump's buffer, or PAUSE until the pump
 * has more (it unpauses). */
static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
	aw_client_xfer *x = ud;
	size_t want = size * n;
	if (x->up_failed)
		return CURL_READFUNC_ABORT;
	if (x->up_off < x->up_len) {
		size_t k = x->up_len - x->up_off;
		if (k > want)
			k = want;
		memcpy(buf, x->up_buf + x->up_off, k);
		x->up_off += k;
		if (x->up_off == x->up_len)
			aw_event_set(&x->up_room);
		x->last_rx = aw_now();
		return k;
	}
	if (x->up_eof)
		return 0;
	x->up_paused = true;
	aw_event_set(&x->up_room);
	return CURL_READFUNC_PAUSE;
}

/* Resume a transfer that curl paused in one direction; the other keeps its
 * pause. Not from inside a curl callback. */
static void xfer_unpause(aw_client_xfer *x, bool send)
{
	if (send)
		x->up_paused = false;
	else
		x->paused = false;
	if (x->finished || !x->in_multi)
		return;
	int still = (x->paused ? CURLPAUSE_RECV : 0) | (x->up_paused ? CURLPAUSE_SEND : 0);
	curl_easy_pause(x->easy, still);
}

static int pump_task(void *arg)
{
	aw_client_xfer *x = arg;
	int rc = 0;
	for (;;) {
		while (x->up_off < x->up_len && !x->finished) {
			aw_event_clear(&x->up_room);
			rc = aw_event_wait(&x->up_room);
			if (rc < 0)
				goto out;
		}
		if (x->finished)
			break;
		ssize_t n = x->body_fn ? x->body_fn(x->body_arg, x->up_buf, AW_CLIENT_UPLOAD_BUF)
				       : aw_stream_read(x->body_stream, x->up_buf, AW_CLIENT_UPLOAD_BUF, AW_NEVER);
		if (n > (ssize_t)AW_CLIENT_UPLOAD_BUF)
			n = aw_raise(-EINVAL, "the request body's source returned %zd bytes, more than the %zu asked for",
				     n, AW_CLIENT_UPLOAD_BUF);
		if (n < 0) {
			rc = (int)n;
			if (!aw_error_pending())
				(void)!aw_raise(rc, "the request body's source failed");
			x->up_failed = true;
		} else if (n == 0) {
			x->up_eof = true;
		} else {
			x->up_len = (size_t)n;
			x->up_off = 0;
		}
		x->last_rx = aw_now();   /* the wait was ours, not the server's */
		if (x->up_paused)
			xfer_unpause(x, true);
		if (n <= 0)
			break;
	}
out:
	if (rc < 0)
		x->pump_err = aw_error_take();
	x->pump_rc = rc;
	x->pump = NULL;
	aw_event_set(&x->pump_done);
	return 0;
}

/* Stop the pump if it runs and wait for it (shielded: it must be gone
 * before the transfer is freed). Returns false if it could not be waited
 * for (past the grace deadline in an exit): then x must not be freed. */
static bool pump_stop(aw_client_xfer *x)
{
	if (!x->pump && !x->pump_started)
		return true;
	if (x->pump) {
		x->pump_stopped = true;
		aw_task_cancel(x->pump);
	}
	int rc = 0;
	AW_WITH(AW_SHIELD()) {
		rc = aw_event_wait(&x->pump_done);
	}
	return rc == 0;
}

static void xfer_free(aw_client_xfer *x)
{
	if (!x)
		return;
	aw__client_xfer_detach(x);
	aw__client_xfer_unlink(x);
	aw_ledger_close(&x->ledger);
	if (x->easy)
		aw__client_easy_put(x->c, x->easy);
	curl_slist_free_all(x->headers);
	free(x->body.data);
	free(x->hdrs.data);
	free(x->json_body);
	free(x->up_buf);
	if (x->pump_err)
		aw_error_free(x->pump_err);
	free(x->url);
	free(x);
}

/* Free, once the pump is gone (else leave it: see pump_stop). */
static void xfer_finish(aw_client_xfer *x)
{
	if (x && pump_stop(x))
		xfer_free(x);
}

/* A response entered with aw_enter and never exited, at loop end (after
 * the report; every task has ended, the pump included). */
static void xfer_release_leaked(aw_ledger_entry *e)
{
	aw_client_xfer *x = AW_CONTAINER_OF(e, aw_client_xfer, ledger);
	xfer_free(x);
}

/* The request's timeout, else the session's (which the session resolved
 * to its default when 0); AW_NEVER, the explicit "none", becomes 0. */
static aw_time timeout_pick(aw_time req, aw_time session)
{
	aw_time t = req ? req : session;
	return t == AW_NEVER ? 0 : t;
}

/* End a transfer on one of our deadlines. */
static void xfer_end_ours(aw_client_xfer *x, int why)
{
	aw__client_xfer_detach(x);
	x->ours = why;
	x->result = CURLE_OPERATION_TIMEDOUT;
	x->finished = true;
	aw_event_set(&x->progress);
	aw_event_set(&x->up_room);
}

/* Waits: for the next progress event, or until one of our deadlines ends
 * the transfer (then it is finished). Callers check their condition before
 * each call. Returns 0 or the cancel code (in flight). */
static int xfer_wait(aw_client_xfer *x)
{
	aw_time dl = AW_NEVER;
	int why = AW_XFER_OURS_NONE;
	if (!x->connected) {
		if (x->ctimeout > 0) {
			dl = x->started + x->ctimeout;
			why = AW_XFER_OURS_CONNECT;
		}
		/* The idle clock starts with the connection, which wakes
		 * no one: look again an idle period from now. */
		if (x->idle > 0 && aw_now() + x->idle < dl) {
			dl = aw_now() + x->idle;
			why = AW_XFER_OURS_NONE;
		}
	} else if (x->idle > 0 && x->up_paused) {
		/* Waiting for our own body source is not the server's
		 * silence; the pump moves last_rx when it resumes. */
		dl = aw_now() + x->idle;
	} else if (x->idle > 0) {
		dl = x->last_rx + x->idle;
		why = AW_XFER_OURS_IDLE;
	}
	aw_event_clear(&x->progress);
	if (dl == AW_NEVER)
		return aw_event_wait(&x->progress);
	if (dl <= aw_now()) {
		xfer_end_ours(x, why);
		return 0;
	}
	int rc = 0;
	aw_scope sc = { .deadline = 0 };
	AW_WITH(aw_move_on_at_init(&sc, dl)) {
		rc = aw_event_wait(&x->progress);
		if (rc < 0) {
			const aw_error *e = aw_error_current();
			if (!e || e->origin != &sc)
				break;   /* cancelled from outside: stays in flight */
			aw_error_clear();
			rc = 0;   /* our deadline: the caller loops, we look again */
		}
	}
	return rc;
}

static long long ms_of(aw_time t)
{
	return (long long)(t / AW_MS(1));
}

/* The transfer's outcome as our code, raised. The pump has ended. */
static int map_error(aw_client_xfer *x)
{
	CURLcode rc = x->result;
	const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	const char *url = x->url;
	long oserr = 0;
	if (x->ours == AW_XFER_OURS_CONNECT) {
		if (!x->sock_opened)
			return aw_raise(-ETIMEDOUT,
					"%s: connect timeout (%lld ms): no connection yet (still waiting for a free "
					"connection slot, or for the host name)",
					url, ms_of(x->ctimeout));
		return aw_raise(-ETIMEDOUT, "%s: connect timeout (%lld ms) while connecting", url, ms_of(x->ctimeout));
	}
	if (x->ours == AW_XFER_OURS_IDLE)
		return aw_raise(-ETIMEDOUT, "%s: read idle timeout: no bytes for %lld ms", url, ms_of(x->idle));
	if (rc == CURLE_OK)
		return 0;
	if (x->up_failed && x->pump_rc < 0 && !x->pump_stopped)
		return aw_raise(x->pump_rc, "%s: the request body's source failed: %s", url,
				x->pump_err ? x->pump_err->msg : aw_strerror(x->pump_rc));
	curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
	switch (rc) {
	case CURLE_WRITE_ERROR:
		if (x->too_long)
			return aw_raise(-AW_ETOOLONG, "%s: the response body is over the limit of %zu bytes", url,
					x->max_body);
		return aw_raise(-ENOMEM, "%s: out of memory reading the body", url);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return aw_raise(-AW_EDNS, "%s: cannot resolve host: %s", url, detail);
	case CURLE_COULDNT_CONNECT:
		return aw_raise(oserr > 0 ? -(int)oserr : -ECONNREFUSED, "%s: cannot connect: %s", url, detail);
	case CURLE_OPERATION_TIMEDOUT: {
		curl_off_t ct = 0;
		curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &ct);
		if (ct == 0 && x->ctimeout > 0)
			return aw_raise(-ETIMEDOUT, "%s: connect timeout (%lld ms): %s", url, ms_of(x->ctimeout),
					detail);
		return aw_raise(-ETIMEDOUT, "%s: request timeout (%lld ms): %s", url, ms_of(x->timeout), detail);
	}
	case CURLE_TOO_MANY_REDIRECTS:
		return aw_raise(-ELOOP, "%s: too many redirects: %s", url, detail);
	case CURLE_PEER_FAILED_VERIFICATION:
		return aw_raise(-AW_ETLS_VERIFY, "%s: TLS verification failed: %s", url, detail);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
		return aw_raise(-AW_ETLS, "%s: TLS failure: %s", url, detail);
	case CURLE_RECV_ERROR:
		/* No OS error: curl refused what it read (e.g. a bad chunk). */
		if (oserr <= 0)
			return aw_raise(-EPROTO, "%s: malformed response: %s", url, detail);
		return aw_raise(-ECONNRESET, "%s: connection closed early: %s", url, detail);
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return aw_raise(-ECONNRESET, "%s: connection closed early: %s", url, detail);
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return aw_raise(-EPROTO, "%s: malformed response: %s", url, detail);
	case CURLE_UNSUPPORTED_PROTOCOL:
		if (strstr(detail, "HTTP/0.9"))
			return aw_raise(-EPROTO, "%s: malformed response: %s", url, detail);
		/* fall through */
	case CURLE_URL_MALFORMAT:
		return aw_raise(-EINVAL, "%s: bad URL: %s", url, detail);
	default:
		return aw_raise(-EIO, "%s: transfer failed: %s", url, detail);
	}
}

/* The request URL: base_url + url (when url has no scheme), then the query
 * parameters, encoded, before any fragment. NULL with the error raised. */
static char *make_url(const aw_client_session *s, const aw_client_request *req, CURL *e)
{
	const char *url = req->url;
	const char *base = s->opts.base_url;
	aw_client_buf b = { 0 };
	int rc = 0;
	if (!base || strstr(url, "://")) {
		rc = buf_add(&b, url, strlen(url));
	} else {
		size_t bl = strlen(base);
		while (bl && base[bl - 1] == '/')
			bl--;
		rc = buf_add(&b, base, bl);
		if (!rc && url[0] != '/')
			rc = buf_add(&b, "/", 1);
		if (!rc)
			rc = buf_add(&b, url, strlen(url));
	}
	if (rc == 0 && req->query && req->query[0]) {
		/* Put the parameters before a fragment, if there is one. */
		char *hash = strchr(b.data, '#');
		char *frag = NULL;
		if (hash) {
			frag = aw__strdup(hash);
			*hash = 0;
			b.len = (size_t)(hash - b.data);
			if (!frag)
				rc = -ENOMEM;
		}
		char sep = strchr(b.data, '?') ? '&' : '?';
		if (b.len && (b.data[b.len - 1] == '?' || b.data[b.len - 1] == '&'))
			sep = 0;
		for (const char *const *q = req->query; *q && !rc; q += 2) {
			if (!q[1]) {
				free(frag);
				free(b.data);
				(void)!aw_raise(-EINVAL, "%s: query parameter '%s' has no value (the list is name, value, ..., NULL)",
					 url, q[0]);
				return NULL;
			}
			char *n = curl_easy_escape(e, q[0], 0);
			char *v = curl_easy_escape(e, q[1], 0);
			if (!n || !v)
				rc = -ENOMEM;
			if (!rc && sep)
				rc = buf_add(&b, &sep, 1);
			if (!rc)
				rc = buf_add(&b, n, strlen(n));
			if (!rc)
				rc = buf_add(&b, "=", 1);
			if (!rc)
				rc = buf_add(&b, v, strlen(v));
			sep = '&';
			curl_free(n);
			curl_free(v);
		}
		if (!rc && frag)
			rc = buf_add(&b, frag, strlen(frag));
		free(frag);
	}
	if (rc) {
		free(b.data);
		(void)!aw_raise(-ENOMEM, "out of memory for a request URL");
		return NULL;
	}
	return b.data;
}

static int add_header(aw_client_xfer *x, const char *h)
{
	struct curl_slist *n = curl_slist_append(x->headers, h);
	if (!n)
		return -ENOMEM;
	x->headers = n;
	return 0;
}

/* Bad requests: -EINVAL, raised. */
static int check_request(const aw_client_request *req)
{
	if (!req->url)
		return aw_raise(-EINVAL, "aw_client request without a URL");
	int bodies = (req->body != NULL) + (req->json != NULL) + (req->body_fn != NULL) + (req->body_stream != NULL);
	if (bodies > 1)
		return aw_raise(-EINVAL, "%s: more than one of body, json, body_fn and body_stream", req->url);
	if (req->body_len && !req->body && !req->body_fn && !req->body_stream)
		return aw_raise(-EINVAL, "%s: body_len without a body", req->url);
	if (req->timeout < 0 || req->connect_timeout < 0 || req->read_timeout < 0)
		return aw_raise(-EINVAL, "%s: negative timeout", req->url);
	if (req->method && (!req->method[0] || strpbrk(req->method, " \t\r\n")))
		return aw_raise(-EINVAL, "%s: bad method '%s'", req->url, req->method);
	return 0;
}

static void set_ms(CURL *e, CURLoption opt, aw_time t)
{
	long ms = (long)(t / AW_MS(1));
	curl_easy_setopt(e, opt, ms ? ms : 1L);
}

static int response_enter(aw_mgr *m)
{
	aw_client_response *r = (aw_client_response *)(void *)m;
	const aw_loc *manual = aw_manual_enter_loc(m);
	aw_client_session *s = r->session;
	aw_client *c = s ? s->impl : NULL;
	const aw_client_request *req = &r->req;
	if (!c)
		return aw_raise(-EINVAL, "aw_client request outside of an entered session");
	int rc = check_request(req);
	if (rc)
		return rc;
	aw_client_xfer *x = aw__calloc(1, sizeof *x);
	if (!x)
		return aw_raise(-ENOMEM, "out of memory for a request");
	aw_event_init(&x->progress);
	aw_event_init(&x->up_room);
	aw_event_init(&x->pump_done);
	x->streaming = r->stream;
	x->max_body = req->max_body ? req->max_body : s->opts.max_body ? s->opts.max_body : AW_CLIENT_DEFAULT_MAX_BODY;
	x->easy = aw__client_easy_get(c);
	if (!x->easy) {
		free(x);
		return aw_raise(-ENOMEM, "out of memory for a request (curl_easy_init)");
	}
	aw__client_xfer_link(c, x);
	if (manual) {
		aw_ledger_open(&x->ledger, "client response (transfer)", manual);
		x->ledger.owner = x;
		x->ledger.release = xfer_release_leaked;
		x->ledgered = true;
	}
	CURL *e = x->easy;
	x->url = make_url(s, req, e);
	if (!x->url) {
		xfer_free(x);
		return aw_error_pending() ? aw_error_pending() : -ENOMEM;
	}
	aw__client_easy_setup(e);
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");

	for (struct curl_slist *h = c->headers; h && !rc; h = h->next)
		rc = add_header(x, h->data);
	for (const char *const *h = req->headers; h && *h && !rc; h++)
		rc = add_header(x, *h);

	const char *method = req->method;
	bool has_body = req->body || req->json || req->body_fn || req->body_stream;
	bool upload = req->body_fn || req->body_stream;
	if (!method)
		method = has_body ? "POST" : "GET";
	if (req->json) {
		x->json_body = json_dumps((const json_t *)req->json, JSON_COMPACT);
		if (!x->json_body) {
			xfer_free(x);
			return aw_raise(-EINVAL, "%s: the request's JSON body cannot be serialised", x->url);
		}
		if (!rc)
			rc = add_header(x, "Content-Type: application/json");
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->json_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(x->json_body));
	} else if (req->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)req->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	} else if (upload) {
		x->body_fn = req->body_fn;
		x->body_arg = req->body_arg;
		x->body_stream = req->body_stream;
		x->up_buf = aw__malloc(AW_CLIENT_UPLOAD_BUF);
		if (!x->up_buf)
			rc = -ENOMEM;
		/* An upload of unknown size goes chunked (HTTP/1.1). */
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, req->body_len ? (curl_off_t)req->body_len : (curl_off_t)-1);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(e, CURLOPT_READDATA, x);
	}
	if (has_body && !rc)
		rc = add_header(x, "Expect:");   /* no 100-continue round trip */
	if (rc) {
		xfer_free(x);
		return aw_raise(rc, "out of memory for a request");
	}
	if (strcasecmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (upload ? strcmp(method, "PUT") != 0
			: !(strcmp(method, "GET") == 0 && !has_body) && !(strcmp(method, "POST") == 0 && has_body))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

	/* Internally 0 is "none": AW_NEVER (the public "off") maps to it. */
	x->timeout = timeout_pick(req->timeout, s->opts.timeout);
	x->ctimeout = timeout_pick(req->connect_timeout, s->opts.connect_timeout);
	x->idle = timeout_pick(req->read_timeout, s->opts.read_timeout);
	if (x->timeout > 0)
		set_ms(e, CURLOPT_TIMEOUT_MS, x->timeout);
	if (x->ctimeout > 0)
		set_ms(e, CURLOPT_CONNECTTIMEOUT_MS, x->ctimeout);
	if (x->idle > 0) {
		curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
		curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
		curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
	}
	int redirects = s->opts.max_redirects;
	if (redirects >= 0) {
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
		x->follow = true;
		curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)(redirects ? redirects : AW_CLIENT_DEFAULT_REDIRECTS));
	}
	if (s->opts.ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, s->opts.ca_file);
	if (s->opts.insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	/* Proxies: curl reads the environment unless CURLOPT_PROXY is set. */
	if (s->opts.proxy)
		curl_easy_setopt(e, CURLOPT_PROXY, s->opts.proxy);
	switch (s->opts.http_version) {
	case AW_CLIENT_HTTP1_1:
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
		break;
	case AW_CLIENT_HTTP2_PRIOR_KNOWLEDGE:
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
		curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
		break;
	default:
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
		/* Concurrent requests wait for the first connection to say
		 * whether it multiplexes rather than each opening its own. */
		if (strncasecmp(x->url, "https:", 6) == 0)
			curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
		break;
	}
	if (c->share) {
		curl_easy_setopt(e, CURLOPT_SHARE, c->share);
		curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");   /* the engine on, no file */
	}

	if (upload) {
		aw_task *t;
		rc = aw_spawn(&t, pump_task, x, "client-upload");
		if (rc < 0) {
			xfer_free(x);
			return rc;
		}
		aw_task_detach(t);
		x->pump = t;
		x->pump_started = true;
	}
	x->started = aw_now();
	x->last_rx = x->started;
	CURLMcode mc = curl_multi_add_handle(c->multi, e);
	if (mc != CURLM_OK) {
		x->finished = true;
		xfer_finish(x);
		return aw_raise(-ENOMEM, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
	}
	x->in_multi = true;
	rc = 0;
	while (!x->finished && !(x->streaming && x->headers_done)) {
		rc = xfer_wait(x);
		if (rc < 0)
			break;
	}
	if (rc == 0 && !x->finished) {
		/* A stream whose headers are in: the body follows through the
		 * iterator. */
		r->x = x;
		return 0;
	}
	/* Out of the pool's hands: the connection is reusable (or closed if
	 * the transfer did not finish). */
	aw__client_xfer_detach(x);
	x->finished = true;
	if (rc < 0) {
		/* Cancelled: the error stays in flight. */
		xfer_finish(x);
		return rc;
	}
	if (!pump_stop(x))
		return aw_error_pending() ? aw_error_pending() : -ETIMEDOUT;
	rc = map_error(x);
	if (rc < 0) {
		xfer_free(x);
		return rc;
	}
	if (!x->body.data && buf_add(&x->body, "", 0) < 0) {
		xfer_free(x);
		return aw_raise(-ENOMEM, "out of memory");
	}
	r->x = x;
	return 0;
}

static int response_exit(aw_mgr *m, int err)
{
	aw_client_response *r = (aw_client_response *)(void *)m;
	aw_client_xfer *x = r->x;
	r->x = NULL;
	if (!x)
		return err;
	/* Left before the end of a streamed body: curl closes the connection
	 * (it cannot be reused mid-body). */
	aw__client_xfer_detach(x);
	x->finished = true;
	xfer_finish(x);
	return err;
}

static void response_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_client_response *r = (aw_client_response *)(void *)m;
	snprintf(buf, len, "%s %s", r->req.method ? r->req.method : "GET", r->req.url ? r->req.url : "?");
}

static const aw_mgr_ops response_ops = {
	.name = "client response",
	.enter = response_enter,
	.exit = response_exit,
	.describe = response_describe,
};

aw_mgr *aw_client_response_init(aw_client_response *r, aw_client_session *s, const aw_client_request *req)
{
	memset(r, 0, sizeof *r);
	r->mgr.ops = &response_ops;
	r->session = s;
	if (req)
		r->req = *req;
	return &r->mgr;
}

aw_mgr *aw_client_get_init(aw_client_response *r, aw_client_session *s, const char *url)
{
	return aw_client_response_init(r, s, &(aw_client_request){ .url = url });
}

aw_mgr *aw_client_post_json_init(aw_client_response *r, aw_client_session *s, const char *url, const struct json_t *json)
{
	return aw_client_response_init(r, s, &(aw_client_request){ .method = "POST", .url = url, .json = json });
}

int aw_client_response_http_version(const aw_client_response *r)
{
	long v = 0;
	if (!r->x)
		return 0;
	curl_easy_getinfo(r->x->easy, CURLINFO_HTTP_VERSION, &v);
	switch (v) {
	case CURL_HTTP_VERSION_1_0:
		return 10;
	case CURL_HTTP_VERSION_1_1:
		return 11;
	case CURL_HTTP_VERSION_2_0:
		return 20;
	case CURL_HTTP_VERSION_3:
		return 30;
	default:
		return 0;
	}
}

int aw_client_response_status(const aw_client_response *r)
{
	long code = 0;
	if (r->x)
		curl_easy_getinfo(r->x->easy, CURLINFO_RESPONSE_CODE, &code);
	return (int)code;
}

const char *aw_client_response_header(const aw_client_response *r, const char *name)
{
	if (!r->x || !r->x->hdrs.data)
		return NULL;
	size_t nl = strlen(name);
	const char *found = NULL;
	const char *p = r->x->hdrs.data, *end = p + r->x->hdrs.len;
	while (p < end) {
		size_t l = strlen(p);
		if (l > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			found = v;
		}
		p += l + 1;
	}
	return found;
}

const char *aw_client_response_body(const aw_client_response *r, size_t *len)
{
	if (r->x && r->x->streaming) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = r->x ? r->x->body.len : 0;
	return r->x ? r->x->body.data : NULL;
}

const char *aw_client_response_text(const aw_client_response *r)
{
	return r->x && !r->x->streaming ? r->x->body.data : NULL;
}

const char *aw_client_response_url(const aw_client_response *r)
{
	char *u = NULL;
	if (r->x)
		curl_easy_getinfo(r->x->easy, CURLINFO_EFFECTIVE_URL, &u);
	return u;
}

int aw_client_response_json(const aw_client_response *r, struct json_t **out)
{
	*out = NULL;
	if (!r->x || r->x->streaming)
		return aw_raise(-EINVAL, "aw_client_response_json outside of a (non-streamed) response block");
	json_error_t je;
	json_t *v = json_loadb(r->x->body.data, r->x->body.len, JSON_DECODE_ANY, &je);
	if (!v)
		return aw_raise(-EPROTO, "%s: the body is not JSON: %s (line %d, column %d)", r->x->url, je.text,
				je.line, je.column);
	*out = v;
	return 0;
}

int aw_client_response_raise_for_status(const aw_client_response *r)
{
	int st = aw_client_response_status(r);
	if (st < 400)
		return 0;
	if (r->x->streaming)
		return aw_raise(-EREMOTEIO, "HTTP %d from %s", st, r->x->url);
	size_t n = r->x->body.len < 200 ? r->x->body.len : 200;
	return aw_raise(-EREMOTEIO, "HTTP %d from %s: %.*s%s", st, r->x->url, (int)n, r->x->body.data,
			r->x->body.len > n ? "..." : "");
}

aw_mgr *aw_client_stream_init(aw_client_response *r, aw_client_session *s, const aw_client_request *req)
{
	aw_mgr *m = aw_client_response_init(r, s, req);
	r->stream = true;
	return m;
}

static int chunks_next(aw_iter *iter, void **item)
{
	aw_client_chunks *it = (aw_client_chunks *)(void *)iter;
	aw_client_response *r = it->r;
	aw_client_xfer *x = r->x;
	if (!x || !x->streaming)
		return aw_raise(-EINVAL, "aw_client_response_chunks: not inside a streamed response block");
	if (it->taken) {
		/* The reader is done with the previous chunk. */
		it->taken = false;
		x->pending = false;
	}
	for (;;) {
		if (x->pending) {
			it->chunk.offset += (int64_t)it->chunk.len;
			it->chunk.data = x->body.data;
			it->chunk.len = x->body.len;
			it->taken = true;
			*item = &it->chunk;
			return 1;
		}
		if (x->finished) {
			aw__client_xfer_detach(x);
			if (!pump_stop(x))
				return aw_error_pending() ? aw_error_pending() : -ETIMEDOUT;
			int rc = map_error(x);
			return rc < 0 ? rc : 0;
		}
		if (x->paused) {
			/* The pause was ours (the reader was busy): the idle
			 * clock starts again. Unpausing may deliver the held
			 * data at once (write callback). */
			x->last_rx = aw_now();
			xfer_unpause(x, false);
			continue;
		}
		int rc = xfer_wait(x);
		if (rc < 0)
			return rc;
	}
}

static int chunks_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int chunks_exit(aw_mgr *m, int err)
{
	(void)m;
	return err;   /* the response's exit releases the transfer */
}

static const aw_mgr_ops chunks_ops = {
	.name = "client body chunks",
	.enter = chunks_enter,
	.exit = chunks_exit,
};

aw_iter *aw_client_response_chunks(aw_client_chunks *it, aw_client_response *r)
{
	memset(it, 0, sizeof *it);
	it->iter.mgr.ops = &chunks_ops;
	it->iter.next = chunks_next;
	it->r = r;
	return &it->iter;
}
