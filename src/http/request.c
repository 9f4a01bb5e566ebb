/* SPDX-License-Identifier: MIT */
/*
 * Requests: llhttp (strict mode) plus the checks llhttp leaves to the
 * application, and the request accessors.
 *
 * Parsing is incremental and zero copy. llhttp hands us spans (pointers
 * into the bytes we feed it); we keep them as offsets from the head's first
 * byte, because the read buffer may move between two reads. A span cut by
 * the end of the bytes fed so far is continued by the next callback of the
 * same kind. When the head is complete, llhttp pauses (on_headers_complete
 * returns HPE_PAUSED) and the connection decides what to do with the body.
 *
 * What strict llhttp 8.1 does not reject and we do (each found by feeding
 * it the case): bare LF after the request line and as the empty line ending
 * the headers or trailers; obs-fold (a header line starting with SP/HTAB);
 * an empty header name; "Transfer-Encoding: gzip, chunked" (a coding we do
 * not implement: 501) and any Transfer-Encoding in HTTP/1.0; a missing or
 * duplicated Host in HTTP/1.1; versions other than 1.0 and 1.1 (HTTP/2.0,
 * and 0.9 requests without a version); several spaces between the parts of
 * the request line; a fragment ('#') in the target; empty chunk extension
 * names or values (";=x", ";a="); chunk extensions beyond a size limit;
 * unknown Expect values (417); CONNECT (501).
 * Header values: llhttp strips leading whitespace, we strip the trailing.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static inline aw_http_conn *conn_of(llhttp_t *p) { return p->data; }

static int reject(llhttp_t *p, int status, const char *msg)
{
	aw_http_conn *c = conn_of(p);
	if (!c->reject) {
		c->reject = status;
		c->reject_msg = msg;
	}
	llhttp_set_error_reason(p, msg);
	return HPE_USER;
}

/* ---- the head ---------------------------------------------------------------- */

static int on_method(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	if (!c->req.method_len)
		c->req.method_off = (uint32_t)(at - c->cb_base);
	c->req.method_len += (uint32_t)n;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	if (!c->req.target_len)
		c->req.target_off = (uint32_t)(at - c->cb_base);
	c->req.target_len += (uint32_t)n;
	if (c->req.target_len > c->lim->request_line)
		return reject(p, 414, "request target too long");
	return 0;
}

static int on_version(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	if (!c->version_len)
		c->version_off = (uint32_t)(at - c->cb_base);
	c->version_len += (uint32_t)n;
	return 0;
}

static int on_version_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	c->version_done = true;
	c->line_end = c->version_off + c->version_len;
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	if (c->phase != PHASE_HEAD) {
		/* A trailer field: checked and counted, not kept. */
		if (c->pstate != PS_FIELD) {
			c->pstate = PS_FIELD;
			c->ext_name_len = 0;
			if (++c->trailer_count > c->lim->header_count)
				return reject(p, 431, "too many trailer fields");
		}
		c->ext_name_len += n;
		return 0;
	}
	if (c->pstate != PS_FIELD) {
		if (c->req.nhdrs >= c->hdr_cap)
			return reject(p, 431, "too many header fields");
		c->hdrs[c->req.nhdrs++] = (aw_http_hdr){ .name = (uint32_t)(at - c->cb_base) };
		c->pstate = PS_FIELD;
	}
	c->hdrs[c->req.nhdrs - 1].name_len += (uint32_t)n;
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	bool empty = c->pstate != PS_FIELD ||
		     (c->phase == PHASE_HEAD ? c->hdrs[c->req.nhdrs - 1].name_len == 0 : c->ext_name_len == 0);
	if (empty)
		return reject(p, 400, "empty header field name");
	c->pstate = PS_NONE;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	if (c->phase != PHASE_HEAD) {
		c->pstate = PS_VALUE;
		return 0;
	}
	aw_http_hdr *h = &c->hdrs[c->req.nhdrs - 1];
	if (c->pstate != PS_VALUE) {
		h->value = (uint32_t)(at - c->cb_base);
		h->value_len = 0;
		c->pstate = PS_VALUE;
	}
	h->value_len += (uint32_t)n;
	return 0;
}

static bool name_is(const char *base, const aw_http_hdr *h, const char *lower, size_t len)
{
	return h->name_len == len && strncasecmp(base + h->name, lower, len) == 0;
}

static bool value_is(const char *base, const aw_http_hdr *h, const char *lower, size_t len)
{
	return h->value_len == len && strncasecmp(base + h->value, lower, len) == 0;
}

/* Host = uri-host [ ":" port ]: reg-name, IPv4, or an IP-literal. */
static bool host_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
			continue;
		if (!strchr("-._~%!$&'()*+,;=:[]", ch) || ch == 0)
			return false;
	}
	return true;
}

static int on_header_value_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	if (c->phase != PHASE_HEAD) {
		c->pstate = PS_NONE;
		return 0;
	}
	aw_http_hdr *h = &c->hdrs[c->req.nhdrs - 1];
	const char *base = c->cb_base;
	if (c->pstate != PS_VALUE) {
		h->value = h->name + h->name_len;
		h->value_len = 0;
	}
	while (h->value_len && (base[h->value + h->value_len - 1] == ' ' || base[h->value + h->value_len - 1] == '\t'))
		h->value_len--;
	c->pstate = PS_NONE;
	switch (h->name_len) {
	case 4:
		if (name_is(base, h, "host", 4)) {
			c->host_count++;
			c->host_idx = c->req.nhdrs - 1;
			if (!host_ok(base + h->value, h->value_len))
				return reject(p, 400, "invalid Host header");
		}
		break;
	case 6:
		if (name_is(base, h, "expect", 6)) {
			if (value_is(base, h, "100-continue", 12))
				c->req.expect_continue = true;
			else
				c->expect_other = true;
		}
		break;
	case 17:
		if (name_is(base, h, "transfer-encoding", 17)) {
			c->te_seen = true;
			if (!value_is(base, h, "chunked", 7))
				c->te_not_chunked = true;
		}
		break;
	}
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	aw_http_request *r = &c->req;
	const char *base = c->cb_base;
	if (!c->version_len)
		return reject(p, 400, "missing HTTP version (HTTP/0.9 is not supported)");
	if (p->http_major != 1 || p->http_minor > 1)
		return reject(p, 505, "HTTP version not supported");
	/* method SP target SP "HTTP/" version: exactly one space each. */
	if (r->target_off != r->method_off + r->method_len + 1 || base[r->method_off + r->method_len] != ' ' ||
	    c->version_off != r->target_off + r->target_len + 6 || base[r->target_off + r->target_len] != ' ' ||
	    c->version_len != 3)
		return reject(p, 400, "malformed request line");
	r->minor = p->http_minor;
	r->method = p->method;
	if (p->method == HTTP_CONNECT)
		return reject(p, 501, "CONNECT is not supported");
	if (c->host_count > 1)
		return reject(p, 400, "duplicate Host header");
	if (c->host_count == 0 && p->http_minor == 1)
		return reject(p, 400, "missing Host header");
	if (c->te_seen) {
		if (p->http_minor == 0)
			return reject(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
		if (c->te_not_chunked && !(p->flags & F_CHUNKED))
			return reject(p, 400, "Transfer-Encoding without a final chunked");
		if (c->te_not_chunked)
			return reject(p, 501, "transfer coding not implemented (only chunked is)");
	}
	if (c->expect_other)
		return reject(p, 417, "unsupported Expect value");
	if (p->flags & F_CHUNKED) {
		r->body_mode = AW_BODY_CHUNKED;
	} else if (p->content_length > 0) {
		r->body_mode = AW_BODY_LENGTH;
		r->content_length = p->content_length;
		if (p->content_length > c->lim->body_bytes)
			return reject(p, 413, "request body too large");
	} else {
		r->body_mode = AW_BODY_NONE;
	}
	if (r->body_mode == AW_BODY_NONE || p->http_minor == 0)
		r->expect_continue = false;
	r->keep_alive = llhttp_should_keep_alive(p);
	r->is_head = p->method == HTTP_HEAD;
	c->pause_why = PAUSE_HEAD;
	return HPE_PAUSED;
}

/* ---- the body ------------------------------------------------------------------ */

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	aw_http_conn *c = conn_of(p);
	aw_http_request *r = &c->req;
	r->body_seen += n;
	if (r->body_mode == AW_BODY_CHUNKED && r->body_seen > c->lim->body_bytes)
		return reject(p, 413, "request body too large");
	switch (c->sink) {
	case SINK_COPY:
		memcpy(c->sink_buf + c->sink_len, at, n);
		c->sink_len += n;
		break;
	case SINK_ACCUM:
		if (aw__buf_put(&r->body_buf, at, n))
			return reject(p, 503, "out of memory for the request body");
		break;
	case SINK_SPAN:
		if (c->span_count++ == 0) {
			c->span_p = at;
			c->span_n = n;
			break;
		}
		if (c->span_count == 2 && aw__buf_put(&r->body_buf, c->span_p, c->span_n))
			return reject(p, 503, "out of memory for the request body");
		if (aw__buf_put(&r->body_buf, at, n))
			return reject(p, 503, "out of memory for the request body");
		break;
	default:
		break;
	}
	return 0;
}

static int on_chunk_header(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	if (p->content_length == 0) {
		c->pause_why = PAUSE_LAST_CHUNK;
		return HPE_PAUSED;
	}
	return 0;
}

static int on_ext_name(llhttp_t *p, const char *at, size_t n)
{
	(void)at;
	aw_http_conn *c = conn_of(p);
	c->ext_name_len += n;
	c->ext_total += n;
	if (c->ext_total > AW_HTTP_CHUNK_EXT_MAX)
		return reject(p, 400, "chunk extensions too long");
	return 0;
}

static int on_ext_name_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	if (!c->ext_name_len)
		return reject(p, 400, "malformed chunk extension (empty name)");
	c->ext_name_len = 0;
	return 0;
}

static int on_ext_value(llhttp_t *p, const char *at, size_t n)
{
	(void)at;
	aw_http_conn *c = conn_of(p);
	c->ext_val_len += n;
	c->ext_total += n;
	if (c->ext_total > AW_HTTP_CHUNK_EXT_MAX)
		return reject(p, 400, "chunk extensions too long");
	return 0;
}

static int on_ext_value_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	if (!c->ext_val_len)
		return reject(p, 400, "malformed chunk extension (empty value)");
	c->ext_val_len = 0;
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	aw_http_conn *c = conn_of(p);
	c->pause_why = PAUSE_DONE;
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
	.on_method = on_method,
	.on_url = on_url,
	.on_version = on_version,
	.on_version_complete = on_version_complete,
	.on_header_field = on_header_field,
	.on_header_field_complete = on_header_field_complete,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_chunk_header = on_chunk_header,
	.on_chunk_extension_name = on_ext_name,
	.on_chunk_extension_name_complete = on_ext_name_complete,
	.on_chunk_extension_value = on_ext_value,
	.on_chunk_extension_value_complete = on_ext_value_complete,
	.on_message_complete = on_message_complete,
};

/* ---- line-ending checks ---------------------------------------------------------- */

/* Every LF must follow a CR and every CR precede an LF; a line may not
 * start with SP or HTAB (obs-fold). The head is contiguous: memchr. */
static const char *check_head_lines(const char *data, size_t n)
{
	const char *end = data + n;
	for (const char *q = data; (q = memchr(q, '\n', (size_t)(end - q))); q++) {
		if (q == data || q[-1] != '\r')
			return "bare LF in the request head";
		if (q + 1 < end && (q[1] == ' ' || q[1] == '\t'))
			return "obsolete line folding in the request head";
	}
	for (const char *q = data; (q = memchr(q, '\r', (size_t)(end - q))); q++)
		if (q + 1 >= end || q[1] != '\n')
			return "bare CR in the request head";
	return NULL;
}

/* The same for the trailer section, which may arrive in pieces. */
static const char *check_trailer_bytes(aw_http_conn *c, const char *p, size_t n)
{
	char prev = c->scan_prev;
	for (size_t i = 0; i < n; i++) {
		char b = p[i];
		if (prev == '\r' && b != '\n')
			return "bare CR in the trailers";
		if (b == '\n' && prev != '\r')
			return "bare LF in the trailers";
		if (prev == '\n' && (b == ' ' || b == '\t'))
			return "obsolete line folding in the trailers";
		prev = b;
	}
	c->scan_prev = prev;
	return NULL;
}

/* ---- feeding ------------------------------------------------------------------ */

void aw__http_conn_setup(aw_http_conn *c, aw_app *app, const aw_http_limits *lim)
{
	c->app = app;
	c->lim = lim;
	llhttp_init(&c->parser, HTTP_REQUEST, &settings);
	c->parser.data = c;
	c->hdr_cap = lim->header_count ? (uint32_t)lim->header_count : 1;
	c->hdrs = NULL;
	aw__arena_init(&c->arena);
	c->req.conn = c;
	c->req.app = app;
	c->res.conn = c;
	c->res.req = &c->req;
}

void aw__http_conn_free(aw_http_conn *c)
{
	aw__http_conn_reset(c);
	free(c->hdrs);
	c->hdrs = NULL;
	aw__buf_free(&c->out);
	aw__buf_free(&c->body);
	aw__buf_free(&c->res.hdrs);
	aw__buf_free(&c->res.held_body);
	aw__buf_free(&c->req.body_buf);
}

extern void aw__http_json_free(void *json);

void aw__http_conn_reset(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	llhttp_reset(&c->parser);
	free(r->head_copy);
	if (r->json)
		aw__http_json_free(r->json);
	aw_buf body_buf = r->body_buf;
	body_buf.len = 0;
	if (body_buf.cap > 64 * 1024) {   /* do not keep a large upload's memory */
		aw__buf_free(&body_buf);
	}
	*r = (aw_http_request){ .conn = c, .app = c->app, .hdrs = c->hdrs, .body_buf = body_buf };
	c->phase = PHASE_HEAD;
	c->pstate = PS_NONE;
	c->fed = 0;
	c->line_end = 0;
	c->host_count = 0;
	c->te_seen = c->te_not_chunked = c->expect_other = c->version_done = false;
	c->version_off = c->version_len = 0;
	c->pause_why = PAUSE_NONE;
	c->trailer_count = 0;
	c->trailer_bytes = 0;
	c->ext_total = c->ext_name_len = c->ext_val_len = 0;
	c->reject = 0;
	c->reject_msg = NULL;
	c->sink = SINK_NONE;
	c->span_count = 0;
	c->body_fed = 0;
	/* Keep the scratch buffers for the next request, unless one grew
	 * large for a big response. */
	if (c->out.cap > 256 * 1024 && !c->out.len)
		aw__buf_free(&c->out);
	if (c->body.cap > 256 * 1024)
		aw__buf_free(&c->body);
	c->body.len = 0;
	aw__arena_reset(&c->arena);
	aw__http_response_reset(&c->res);
}

/* RFC 9110 token characters. */
static bool tchar(char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int aw__http_error_status(aw_http_conn *c, llhttp_errno_t e, const char *data, size_t len)
{
	/* Ours, whatever code llhttp wraps it in (HPE_USER from data
	 * callbacks, HPE_CB_HEADERS_COMPLETE from on_headers_complete...). */
	if (c->reject)
		return c->reject;
	switch (e) {
	case HPE_USER:
		return c->reject ? c->reject : 400;
	case HPE_INVALID_METHOD: {
		/* A well-formed token we do not know: 501; anything else: 400. */
		size_t i = 0;
		while (i + 1 < len && data[i] == '\r' && data[i + 1] == '\n')
			i += 2;
		size_t start = i;
		while (i < len && tchar(data[i]))
			i++;
		bool token = i > start && (i == len || data[i] == ' ');
		c->reject_msg = token ? "method not implemented" : "invalid method";
		return token ? 501 : 400;
	}
	case HPE_INVALID_VERSION: {
		const char *why = llhttp_get_error_reason(&c->parser);
		if (why && strcmp(why, "Invalid HTTP version") == 0) {
			c->reject_msg = "HTTP version not supported";
			return 505;
		}
		c->reject_msg = "invalid HTTP version";
		return 400;
	}
	case HPE_PAUSED_H2_UPGRADE:
		c->reject_msg = "HTTP/2 is not supported on this port";
		return 505;
	default:
		c->reject_msg = llhttp_get_error_reason(&c->parser);
		if (!c->reject_msg || !*c->reject_msg)
			c->reject_msg = llhttp_errno_name(e);
		return 400;
	}
}

int aw__http_feed_head(aw_http_conn *c, const char *data, size_t len)
{
	c->cb_base = data;
	if (len <= c->fed)
		return 0;
	llhttp_errno_t e = llhttp_execute(&c->parser, data + c->fed, len - c->fed);
	if (AW_LIKELY(e == HPE_PAUSED && c->pause_why == PAUSE_HEAD)) {
		size_t head = (size_t)(llhttp_get_error_pos(&c->parser) - data);
		c->fed = head;
		c->req.head_len = (uint32_t)head;
		if (head - c->line_end > c->lim->header_bytes) {
			c->reject_msg = "header section too large";
			return 431;
		}
		const char *bad = check_head_lines(data, head);
		if (bad) {
			c->reject_msg = bad;
			return 400;
		}
		c->req.base = data;
		c->req.hdrs = c->hdrs;
		llhttp_resume(&c->parser);
		c->phase = PHASE_BODY;
		c->pause_why = PAUSE_NONE;
		return 1;
	}
	if (e != HPE_OK)
		return aw__http_error_status(c, e, data, len);
	c->fed = len;
	if (!c->version_done) {
		if (len > c->lim->request_line + 32) {   /* method, spaces, version */
			c->reject_msg = "request line too long";
			return 414;
		}
	} else if (len - c->line_end > c->lim->header_bytes) {
		c->reject_msg = "header section too large";
		return 431;
	}
	return 0;
}

int aw__http_feed_body(aw_http_conn *c, const char *data, size_t len, size_t *used)
{
	size_t off = 0;
	*used = 0;
	if (c->phase == PHASE_DONE)
		return 1;
	for (;;) {
		bool trailers = c->phase == PHASE_TRAILERS;
		llhttp_errno_t e = llhttp_execute(&c->parser, data + off, len - off);
		size_t end;
		if (e == HPE_OK)
			end = len;
		else if (e == HPE_PAUSED)
			end = (size_t)(llhttp_get_error_pos(&c->parser) - data);
		else
			return aw__http_error_status(c, e, data, len);
		c->body_fed += end - off;
		if (trailers) {
			c->trailer_bytes += end - off;
			if (c->trailer_bytes > c->lim->header_bytes) {
				c->reject_msg = "trailer section too large";
				return 431;
			}
			const char *bad = check_trailer_bytes(c, data + off, end - off);
			if (bad) {
				c->reject_msg = bad;
				return 400;
			}
		} else if (c->req.body_mode == AW_BODY_CHUNKED &&
			   c->body_fed - c->req.body_seen > c->lim->body_bytes + 65536) {
			c->reject_msg = "too much chunked framing";
			return 413;
		}
		*used = end;
		off = end;
		if (e == HPE_OK)
			return 0;
		int why = c->pause_why;
		c->pause_why = PAUSE_NONE;
		llhttp_resume(&c->parser);
		if (why == PAUSE_DONE) {
			c->phase = PHASE_DONE;
			c->req.body_complete = true;
			return 1;
		}
		if (why == PAUSE_LAST_CHUNK) {
			c->phase = PHASE_TRAILERS;
			c->scan_prev = '\n';
		}
		if (off == len && why != PAUSE_LAST_CHUNK)
			return 0;
	}
}

/* ---- the target ------------------------------------------------------------------ */

int aw__http_prepare_request(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	const char *t = r->base + r->target_off;
	size_t n = r->target_len;
	if (memchr(t, '#', n)) {
		c->reject_msg = "fragment in the request target";
		return 400;
	}
	const char *path = t;
	size_t plen = n;
	if (t[0] == '/') {
		/* origin-form */
	} else if (n == 1 && t[0] == '*') {
		if (r->method != HTTP_OPTIONS) {
			c->reject_msg = "'*' is only a target for OPTIONS";
			return 400;
		}
	} else {
		/* absolute-form: http(s)://authority[/path][?query] */
		size_t skip = 0;
		if (n >= 7 && strncasecmp(t, "http://", 7) == 0)
			skip = 7;
		else if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
			skip = 8;
		if (!skip) {
			c->reject_msg = "invalid request target";
			return 400;
		}
		const char *a = t + skip, *end = t + n;
		const char *slash = a;
		while (slash < end && *slash != '/' && *slash != '?')
			slash++;
		if (slash == a) {
			c->reject_msg = "request target without a host";
			return 400;
		}
		if (slash == end || *slash == '?') {
			/* no path: "/" plus the query, if any */
			r->path = (aw_str){ "/", 1 };
			if (slash < end)
				r->query = (aw_str){ slash + 1, (size_t)(end - slash - 1) };
			return 0;
		}
		path = slash;
		plen = (size_t)(end - slash);
	}
	const char *q = memchr(path, '?', plen);
	if (q) {
		r->query = (aw_str){ q + 1, plen - (size_t)(q - path) - 1 };
		plen = (size_t)(q - path);
	}
	r->path = (aw_str){ path, plen };
	return 0;
}

/* ---- accessors ----------------------------------------------------------------- */

aw_str aw_http_method(const aw_http_request *req)
{
	return (aw_str){ req->base + req->method_off, req->method_len };
}

aw_str aw_http_target(const aw_http_request *req)
{
	return (aw_str){ req->base + req->target_off, req->target_len };
}

aw_str aw_http_path(const aw_http_request *req)
{
	return req->path;
}

int aw_http_version_minor(const aw_http_request *req)
{
	return req->minor;
}

aw_str aw_http_header(const aw_http_request *req, const char *name)
{
	size_t n = strlen(name);
	for (uint32_t i = 0; i < req->nhdrs; i++) {
		const aw_http_hdr *h = &req->hdrs[i];
		if (h->name_len == n && strncasecmp(req->base + h->name, name, n) == 0)
			return (aw_str){ req->base + h->value, h->value_len };
	}
	return (aw_str){ NULL, 0 };
}

bool aw_http_header_at(const aw_http_request *req, size_t i, aw_str *name, aw_str *value)
{
	if (i >= req->nhdrs)
		return false;
	const aw_http_hdr *h = &req->hdrs[i];
	*name = (aw_str){ req->base + h->name, h->name_len };
	*value = (aw_str){ req->base + h->value, h->value_len };
	return true;
}

const char *aw_http_param(const aw_http_request *req, const char *name)
{
	size_t n = strlen(name);
	for (unsigned i = 0; i < req->nparams; i++)
		if (req->params[i].name_len == n && memcmp(req->params[i].name, name, n) == 0)
			return req->params[i].value;
	return NULL;
}

static int parse_query(aw_http_request *req)
{
	aw_http_conn *c = req->conn;
	req->query_parsed = true;
	if (!req->query.p || !req->query.len)
		return 0;
	const char *s = req->query.p, *end = s + req->query.len;
	unsigned count = 1;
	for (const char *q = s; q < end; q++)
		count += *q == '&';
	aw_http_qpair *pairs = aw__arena_alloc(&c->arena, count * sizeof *pairs);
	if (!pairs)
		return aw_raise(-ENOMEM, "no memory to decode the query string");
	unsigned n = 0;
	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		if (!amp)
			amp = end;
		if (amp > s) {
			const char *eq = memchr(s, '=', (size_t)(amp - s));
			const char *kend = eq ? eq : amp;
			const char *v = eq ? eq + 1 : amp;
			char *k = aw__arena_alloc(&c->arena, (size_t)(kend - s) + 1);
			char *val = aw__arena_alloc(&c->arena, (size_t)(amp - v) + 1);
			if (!k || !val)
				return aw_raise(-ENOMEM, "no memory to decode the query string");
			ssize_t kl = aw__http_pct_decode(s, (size_t)(kend - s), k, true);
			ssize_t vl = aw__http_pct_decode(v, (size_t)(amp - v), val, true);
			if (kl < 0 || vl < 0) {
				req->query_bad = true;
				req->bad_request = "invalid percent-encoding in the query string";
				return aw_raise(-EBADMSG, "invalid percent-encoding (or a NUL byte) in the query string");
			}
			pairs[n++] = (aw_http_qpair){ k, val };
		}
		s = amp + 1;
	}
	req->qpairs = pairs;
	req->nquery = n;
	return 0;
}

int aw_http_query(const aw_http_request *creq, const char *name, const char **out)
{
	aw_http_request *req = (aw_http_request *)creq;   /* decoded on first use */
	if (!out)
		return aw_raise(-EINVAL, "aw_http_query: out is NULL");
	*out = NULL;
	int rc;
	if (!req->query_parsed && (rc = parse_query(req)) < 0)
		return rc;
	if (req->query_bad)
		return aw_raise(-EBADMSG, "invalid percent-encoding (or a NUL byte) in the query string");
	for (unsigned i = 0; i < req->nquery; i++)
		if (strcmp(req->qpairs[i].name, name) == 0) {
			*out = req->qpairs[i].value;
			break;
		}
	return 0;
}
