/*
 * Requests and their responses. The response is a manager: enter sends
 * the request on the session's CURLM and waits (an aw_event) until the
 * transfer is done, with the body read whole up to the size limit; exit
 * frees the transfer. The easy handle leaves the CURLM as soon as the
 * transfer is done, so its connection is back in the pool for the next
 * request while the block is still reading the response.
 */
#include "internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AW_CLIENT_DEFAULT_MAX_BODY ((size_t)8 << 20)
#define AW_CLIENT_DEFAULT_REDIRECTS 10

static int buf_add(aw_client_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *d = realloc(b->data, cap);
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

static void xfer_free(aw_client_xfer *x)
{
	if (!x)
		return;
	if (x->easy)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->headers);
	free(x->body.data);
	free(x->hdrs.data);
	free(x->json_body);
	free(x->url);
	free(x);
}

static int map_error(aw_client_xfer *x, const aw_client_request *req)
{
	aw_time connect_timeout = x->ctimeout;
	CURLcode rc = x->result;
	const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
	const char *url = x->url;
	long oserr = 0;
	curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
	switch (rc) {
	case CURLE_OK:
		return 0;
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
		if (ct == 0 && connect_timeout > 0)
			return aw_raise(-ETIMEDOUT, "%s: connect timeout (%lld ms): %s", url,
					(long long)(connect_timeout / AW_MS(1)), detail);
		return aw_raise(-ETIMEDOUT, "%s: request timeout (%lld ms): %s", url,
				(long long)(req->timeout / AW_MS(1)), detail);
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

static char *make_url(const aw_client_session *s, const char *url)
{
	const char *base = s->opts.base_url;
	if (!base || strstr(url, "://"))
		return strdup(url);
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		bl--;
	const char *sep = url[0] == '/' ? "" : "/";
	size_t n = bl + strlen(sep) + strlen(url) + 1;
	char *out = malloc(n);
	if (out)
		snprintf(out, n, "%.*s%s%s", (int)bl, base, sep, url);
	return out;
}

static int add_header(aw_client_xfer *x, const char *h)
{
	struct curl_slist *n = curl_slist_append(x->headers, h);
	if (!n)
		return -ENOMEM;
	x->headers = n;
	return 0;
}

static int response_enter(aw_mgr *m)
{
	aw_client_response *r = (aw_client_response *)(void *)m;
	aw_client_session *s = r->session;
	aw_client *c = s ? s->impl : NULL;
	const aw_client_request *req = &r->req;
	if (!c)
		return aw_raise(-EINVAL, "aw_client request outside of an entered session");
	if (!req->url)
		return aw_raise(-EINVAL, "aw_client request without a URL");
	aw_client_xfer *x = calloc(1, sizeof *x);
	if (!x)
		return aw_raise(-ENOMEM, "out of memory for a request");
	aw_event_init(&x->done);
	aw_event_init(&x->progress);
	x->streaming = r->stream;
	x->max_body = req->max_body ? req->max_body : s->opts.max_body ? s->opts.max_body : AW_CLIENT_DEFAULT_MAX_BODY;
	x->url = make_url(s, req->url);
	x->easy = curl_easy_init();
	if (!x->url || !x->easy) {
		xfer_free(x);
		return aw_raise(-ENOMEM, "out of memory for a request");
	}
	CURL *e = x->easy;
	aw__client_easy_setup(e);
	curl_easy_setopt(e, CURLOPT_URL, x->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");

	int rc = 0;
	for (struct curl_slist *h = c->headers; h && !rc; h = h->next)
		rc = add_header(x, h->data);
	for (const char *const *h = req->headers; h && *h && !rc; h++)
		rc = add_header(x, *h);

	const char *method = req->method;
	bool has_body = req->body || req->json;
	if (req->json) {
		x->json_body = json_dumps((const json_t *)req->json, JSON_COMPACT);
		if (!x->json_body) {
			xfer_free(x);
			return aw_raise(-EINVAL, "the request's JSON body cannot be serialised");
		}
		if (!rc)
			rc = add_header(x, "Content-Type: application/json");
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->json_body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(x->json_body));
	} else if (req->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)req->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
	}
	if (has_body && !rc)
		rc = add_header(x, "Expect:");   /* no 100-continue round trip */
	if (rc) {
		xfer_free(x);
		return aw_raise(rc, "out of memory for request headers");
	}
	if (!method)
		method = has_body ? "POST" : "GET";
	if (strcasecmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (!(strcmp(method, "GET") == 0 && !has_body) && !(strcmp(method, "POST") == 0 && has_body))
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

	aw_time timeout = req->timeout ? req->timeout : s->opts.timeout;
	aw_time ctimeout = req->connect_timeout ? req->connect_timeout : s->opts.connect_timeout;
	r->req.timeout = timeout;
	x->ctimeout = ctimeout;
	if (timeout > 0)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout / AW_MS(1) ? timeout / AW_MS(1) : 1));
	if (ctimeout > 0)
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(ctimeout / AW_MS(1) ? ctimeout / AW_MS(1) : 1));
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

	CURLMcode mc = curl_multi_add_handle(c->multi, e);
	if (mc != CURLM_OK) {
		xfer_free(x);
		return aw_raise(-ENOMEM, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
	}
	x->in_multi = true;
	if (x->streaming) {
		/* Wait for the final headers (or the end); the body follows
		 * through the iterator. */
		while (!x->headers_done && !x->finished) {
			aw_event_clear(&x->progress);
			rc = aw_event_wait(&x->progress);
			if (rc < 0)
				break;
		}
		if (rc == 0 && !x->finished) {
			r->x = x;
			return 0;
		}
	} else {
		rc = aw_event_wait(&x->done);
	}
	/* Out of the pool's hands: the connection is reusable (or closed if
	 * the transfer did not finish). */
	curl_multi_remove_handle(c->multi, e);
	x->in_multi = false;
	if (rc < 0) {
		xfer_free(x);
		return rc;
	}
	rc = map_error(x, req);
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
	if (x && x->in_multi) {
		/* Left before the end of a streamed body: curl closes the
		 * connection (it cannot be reused mid-body). */
		aw_client *c = r->session->impl;
		if (c && c->multi)
			curl_multi_remove_handle(c->multi, x->easy);
		x->in_multi = false;
	}
	xfer_free(r->x);
	r->x = NULL;
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

aw_mgr *aw_client_request_init(aw_client_response *r, aw_client_session *s, const aw_client_request *req)
{
	memset(r, 0, sizeof *r);
	r->mgr.ops = &response_ops;
	r->session = s;
	if (req)
		r->req = *req;
	return &r->mgr;
}

aw_mgr *aw_client_get(aw_client_response *r, aw_client_session *s, const char *url)
{
	return aw_client_request_init(r, s, &(aw_client_request){ .url = url });
}

aw_mgr *aw_client_post_json(aw_client_response *r, aw_client_session *s, const char *url, const struct json_t *json)
{
	return aw_client_request_init(r, s, &(aw_client_request){ .method = "POST", .url = url, .json = json });
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
	aw_mgr *m = aw_client_request_init(r, s, req);
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
			it->chunk.data = x->body.data;
			it->chunk.len = x->body.len;
			it->taken = true;
			*item = &it->chunk;
			return 1;
		}
		if (x->finished) {
			if (x->in_multi) {
				aw_client *c = r->session->impl;
				curl_multi_remove_handle(c->multi, x->easy);
				x->in_multi = false;
			}
			int rc = map_error(x, &r->req);
			return rc < 0 ? rc : 0;
		}
		if (x->paused) {
			/* May deliver the held data at once (write callback). */
			x->paused = false;
			curl_easy_pause(x->easy, CURLPAUSE_CONT);
			continue;
		}
		aw_event_clear(&x->progress);
		int rc = aw_event_wait(&x->progress);
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

aw_iter *aw_client_response_chunks(aw_client_response *r, aw_client_chunks *it)
{
	memset(it, 0, sizeof *it);
	it->iter.mgr.ops = &chunks_ops;
	it->iter.next = chunks_next;
	it->r = r;
	return &it->iter;
}
