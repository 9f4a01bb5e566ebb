/* SPDX-License-Identifier: MIT */
/*
 * Responses: the status line and headers, complete bodies, JSON through
 * jansson, streamed (chunked) bodies from an async iterator, files.
 *
 * Complete responses are appended to the connection's output buffer; the
 * connection writes it when it is about to wait for the client (so the
 * answers to pipelined requests leave in one write) or when it grows large.
 * Bodies of more than BIG_BODY bytes are written from the caller's memory
 * instead of being copied. A streamed response writes its head at once and
 * then each chunk.
 */
#include "internal.h"

#include <fcntl.h>
#include <jansson.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BIG_BODY (32 * 1024)
#define OUT_FLUSH (64 * 1024)

const char *aw__http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 418: return "I'm a teapot";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 425: return "Too Early";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 451: return "Unavailable For Legal Reasons";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: break;
	}
	switch (status / 100) {
	case 1: return "Informational";
	case 2: return "Success";
	case 3: return "Redirection";
	case 4: return "Client Error";
	default: return "Server Error";
	}
}

/* ---- Date, once per second per thread ---------------------------------------- */

static __thread time_t date_sec = -1;
static __thread char date_line[64];
static __thread size_t date_len;

const char *aw__http_date_line(size_t *len)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (AW_UNLIKELY(ts.tv_sec != date_sec)) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		date_len = strftime(date_line, sizeof date_line, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
		date_sec = ts.tv_sec;
	}
	*len = date_len;
	return date_line;
}

/* ---- building the head ------------------------------------------------------------- */

void aw__http_response_reset(aw_http_response *res)
{
	res->status = 0;
	res->sent = res->head_written = res->close = false;
	res->user_date = res->user_server = res->in_json = false;
	res->body_bytes = 0;
	res->hdrs.len = 0;
	res->hold = res->held = res->from_error = false;
	res->mapped_err = 0;
	res->held_ctype = NULL;
	res->held_ctype_len = 0;
	res->held_body.len = 0;
	res->hdrs_keep = 0;
	res->out_mark = 0;
	res->tr = NULL;   /* in the arena, reset with the request */
	res->tr_open = false;
}

static inline char *put(char *o, const char *s, size_t n)
{
	memcpy(o, s, n);
	return o + n;
}

static char *put_u64(char *o, uint64_t v)
{
	char tmp[24];
	int i = 0;
	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		*o++ = tmp[--i];
	return o;
}

static bool status_has_body(int status)
{
	return !(status < 200 || status == 204 || status == 304);
}

/* Decide whether the connection stays open after this response. */
static bool keep_alive(aw_http_conn *c)
{
	aw_http_request *r = &c->req;
	if (!r->keep_alive || c->res.close || (c->srv && c->srv->draining))
		return false;
	if (r->body_mode != AW_BODY_NONE && !r->body_complete) {
		/* The body is read and dropped after the response, unless the
		 * client waits for our 100 Continue or it is large. */
		if (r->expect_continue && !r->continue_sent)
			return false;
		if (r->body_mode == AW_BODY_LENGTH && r->content_length - r->body_seen > AW_HTTP_DRAIN_MAX)
			return false;
	}
	return true;
}

/* FRAME_H2: an HTTP/2 stream's DATA frames (h2.c frames the body). */
enum { FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE, FRAME_H2 };

/* Append the status line and headers to c->out. */
static int put_head(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, int framing, uint64_t len)
{
	aw_http_response *res = &c->res;
	res->status = status;
	bool keep = framing != FRAME_CLOSE && keep_alive(c);
	res->close = !keep;
	const char *reason = aw__http_reason(status);
	size_t rlen = strlen(reason);
	size_t dlen;
	const char *date = aw__http_date_line(&dlen);
	const char *idh = c->request_id_header ? c->request_id_header : "X-Request-ID";
	size_t idhlen = c->echo_request_id ? strlen(idh) : 0;
	size_t tlen = framing == FRAME_CHUNKED ? aw__http_trailer_header_len(res) : 0;
	size_t need = 32 + rlen + (ctype ? 16 + ctype_len : 0) + 48 + dlen + res->hdrs.len + 32 + tlen +
		      (c->echo_request_id ? 4 + idhlen + sizeof c->request_id : 0);
	if (aw__buf_reserve(&c->out, need))
		return aw_raise(-ENOMEM, "no memory for a response head");
	res->out_mark = c->out.len;
	char *o = c->out.p + c->out.len;
	o = put(o, "HTTP/1.1 ", 9);
	*o++ = (char)('0' + status / 100);
	*o++ = (char)('0' + status / 10 % 10);
	*o++ = (char)('0' + status % 10);
	*o++ = ' ';
	o = put(o, reason, rlen);
	o = put(o, "\r\n", 2);
	if (ctype && status_has_body(status)) {
		o = put(o, "Content-Type: ", 14);
		o = put(o, ctype, ctype_len);
		o = put(o, "\r\n", 2);
	}
	if (framing == FRAME_LENGTH && status_has_body(status)) {
		o = put(o, "Content-Length: ", 16);
		o = put_u64(o, len);
		o = put(o, "\r\n", 2);
	} else if (framing == FRAME_CHUNKED) {
		o = put(o, "Transfer-Encoding: chunked\r\n", 28);
		if (tlen)
			o = aw__http_trailer_header_put(res, o);
	}
	if (!res->user_date)
		o = put(o, date, dlen);
	if (res->hdrs.len)
		o = put(o, res->hdrs.p, res->hdrs.len);
	if (c->echo_request_id) {
		o = put(o, idh, idhlen);
		o = put(o, ": ", 2);
		o = put(o, c->request_id, strlen(c->request_id));
		o = put(o, "\r\n", 2);
	}
	if (!keep)
		o = put(o, "Connection: close\r\n", 19);
	else if (c->req.minor == 0)
		o = put(o, "Connection: keep-alive\r\n", 24);
	o = put(o, "\r\n", 2);
	c->out.len = (size_t)(o - c->out.p);
	return 0;
}

int aw__http_queue_head(aw_http_conn *c, int status, const char *ctype, uint64_t len)
{
	if (c->res.tr)
		return aw_raise(-AW_EHTTP_TRAILER, "a response with a Content-Length cannot carry the declared trailers");
	if (c->h2) {
		c->res.sent = true;
		return aw__h2_head(c, status, ctype, true, len, !c->req.is_head && status_has_body(status) && len);
	}
	int rc = put_head(c, status, ctype, ctype ? strlen(ctype) : 0, FRAME_LENGTH, len);
	if (rc)
		return rc;
	c->res.sent = true;
	return 0;
}

static aw_time send_deadline(aw_http_conn *c)
{
	return aw__http_after(c->lim->send_idle);
}

int aw__http_flush(aw_http_conn *c)
{
	if (c->h2)
		return aw__h2_flush(c);
	if (!c->out.len || !c->s)
		return 0;
	int rc = aw_stream_write(c->s, c->out.p, c->out.len, send_deadline(c));
	c->out.len = 0;
	if (rc == 0)
		c->res.head_written = true;
	return rc;
}

/* Middleware wraps the request: keep the response (copied) for their
 * exits; aw__http_release_held queues it. */
static int hold_response(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, const void *body,
			 size_t len)
{
	aw_http_response *res = &c->res;
	char *ct = NULL;
	if (ctype && !(ct = aw__arena_strndup(&c->arena, ctype, ctype_len)))
		return aw_raise(-ENOMEM, "no memory for a response's content type");
	res->held_body.len = 0;
	if (len && aw__buf_put(&res->held_body, body, len))
		return aw_raise(-ENOMEM, "no memory for a %zu-byte response", len);
	res->held_ctype = ct;
	res->held_ctype_len = ct ? ctype_len : 0;
	res->status = status;
	res->sent = res->held = true;
	res->from_error = false;
	return 0;
}

/* HTTP/1.1, a complete response with trailers: chunked, the body as one
 * chunk, then the trailer section. */
static int queue_with_trailers(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, const void *body,
			       size_t len)
{
	int rc = put_head(c, status, ctype, ctype_len, FRAME_CHUNKED, 0);
	if (rc)
		return rc;
	aw_http_response *res = &c->res;
	res->sent = true;
	res->body_bytes = len;
	if (len) {
		char hex[24];
		int hl = snprintf(hex, sizeof hex, "%zx\r\n", len);
		if (aw__buf_put(&c->out, hex, (size_t)hl) || aw__buf_put(&c->out, body, len) ||
		    aw__buf_put(&c->out, "\r\n", 2))
			return aw_raise(-ENOMEM, "no memory for a %zu-byte response", len);
	}
	rc = aw__http_trailer_section(res, &c->out);
	if (!rc && c->out.len >= OUT_FLUSH && c->s)
		rc = aw__http_flush(c);
	return rc;
}

int aw__http_queue_response(aw_http_conn *c, int status, const char *ctype, size_t ctype_len, const void *body,
			    size_t len)
{
	if (c->res.hold)
		return hold_response(c, status, ctype, ctype_len, body, len);
	if (c->h2)
		return aw__h2_respond(c, status, ctype, ctype_len, body, len);
	if (c->res.tr && !c->req.is_head && status_has_body(status))
		return queue_with_trailers(c, status, ctype, ctype_len, body, len);
	int rc = put_head(c, status, ctype, ctype_len, FRAME_LENGTH, len);
	if (rc)
		return rc;
	aw_http_response *res = &c->res;
	res->sent = true;
	if (c->req.is_head || !status_has_body(status) || !len)
		return 0;
	res->body_bytes = len;
	if (len >= BIG_BODY && c->s) {
		/* Head from the buffer, body from the caller's memory. */
		struct iovec iov[2] = { { c->out.p, c->out.len }, { (void *)body, len } };
		rc = aw_stream_writev(c->s, iov, 2, send_deadline(c));
		c->out.len = 0;
		res->head_written = true;
		return rc;
	}
	if (aw__buf_put(&c->out, body, len))
		return aw_raise(-ENOMEM, "no memory for a %zu-byte response", len);
	if (c->out.len >= OUT_FLUSH && c->s)
		return aw__http_flush(c);
	return 0;
}

static size_t json_escape_into(char *o, const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			o[n++] = '\\';
			o[n++] = (char)ch;
		} else if (ch >= 0x7f) {
			o[n++] = '?';   /* keep the body valid UTF-8 whatever the message holds */
		} else if (ch < 0x20) {
			n += (size_t)sprintf(o + n, "\\u%04x", ch);
		} else {
			o[n++] = (char)ch;
		}
	}
	return n;
}

int aw__http_queue_error(aw_http_conn *c, int status, const char *detail, const char *allow)
{
	aw_http_response *res = &c->res;
	/* The handler's headers go; those middleware set on entering stay.
	 * Its trailers go too: an error answer carries none. */
	res->hdrs.len = res->hdrs_keep < res->hdrs.len ? res->hdrs_keep : res->hdrs.len;
	res->tr = NULL;
	res->user_date = false;
	if (allow && *allow) {
		aw__buf_put(&res->hdrs, "Allow: ", 7);
		aw__buf_put(&res->hdrs, allow, strlen(allow));
		aw__buf_put(&res->hdrs, "\r\n", 2);
	}
	if (!detail)
		detail = aw__http_reason(status);
	char body[1400];
	size_t dl = strlen(detail);
	if (dl > 200)
		dl = 200;   /* our own messages are short; never echo much */
	char d[210];
	memcpy(d, detail, dl);
	d[dl] = 0;
	size_t n = (size_t)snprintf(body, sizeof body, "{\"detail\":\"");
	n += json_escape_into(body + n, d);
	n += (size_t)snprintf(body + n, sizeof body - n, "\"}");
	return aw__http_queue_response(c, status, "application/json", 16, body, n);
}

/* ---- the public response API ---------------------------------------------------- */

static bool token_char(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

int aw_http_set_header(aw_http_response *res, const char *name, const char *value)
{
	if (res->sent && !res->held)
		return aw_raise(-EALREADY, "aw_http_set_header: the response was already sent");
	if (!name || !*name || !value)
		return aw_raise(-EINVAL, "aw_http_set_header: empty name or NULL value");
	for (const char *p = name; *p; p++)
		if (!token_char((unsigned char)*p))
			return aw_raise(-EINVAL, "aw_http_set_header: invalid character 0x%02x in header name",
					(unsigned char)*p);
	for (const char *p = value; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return aw_raise(-EINVAL, "aw_http_set_header(%s): control character 0x%02x in the value "
					"(no header injection)", name, ch);
	}
	/* The names the server owns, compared only at their length (most
	 * headers are none of them: four strcasecmp were a third of this
	 * call's instructions). */
	size_t nl = strlen(name), vl = strlen(value);
	if ((nl == 14 && strcasecmp(name, "Content-Length") == 0) ||
	    (nl == 17 && strcasecmp(name, "Transfer-Encoding") == 0))
		return aw_raise(-EINVAL, "aw_http_set_header: %s is set by the server", name);
	if (nl == 10 && strcasecmp(name, "Connection") == 0) {
		if (strcasecmp(value, "close") == 0) {
			res->close = true;
			return 0;
		}
		if (strcasecmp(value, "keep-alive") == 0)
			return 0;
		return aw_raise(-EINVAL, "aw_http_set_header: Connection: '%s' (only close or keep-alive)", value);
	}
	if (nl == 4 && strcasecmp(name, "Date") == 0)
		res->user_date = true;
	if (aw__buf_reserve(&res->hdrs, nl + vl + 4))
		return aw_raise(-ENOMEM, "aw_http_set_header: no memory");
	aw__buf_put(&res->hdrs, name, nl);
	aw__buf_put(&res->hdrs, ": ", 2);
	aw__buf_put(&res->hdrs, value, vl);
	aw__buf_put(&res->hdrs, "\r\n", 2);
	return 0;
}

static int check_send(aw_http_response *res, int status, const char *who)
{
	if (res->sent)
		return aw_raise(-EALREADY, "%s: a response was already sent", who);
	if (res->in_json)
		return aw_raise(-EALREADY, "%s: a JSON response is being written (aw_http_json_begin)", who);
	if (status < 200 || status > 999)
		return aw_raise(-EINVAL, "%s: status %d is not a final status (200-999)", who, status);
	return 0;
}

int aw_http_send(aw_http_response *res, int status, const char *content_type, const void *body, size_t len)
{
	int rc = check_send(res, status, "aw_http_send");
	if (rc)
		return rc;
	if (content_type && (strchr(content_type, '\r') || strchr(content_type, '\n')))
		return aw_raise(-EINVAL, "aw_http_send: CR or LF in the content type");
	if (!body && len)
		return aw_raise(-EINVAL, "aw_http_send: NULL body with length %zu", len);
	return aw__http_queue_response(res->conn, status, content_type, content_type ? strlen(content_type) : 0,
				       body, len);
}

int aw_http_text(aw_http_response *res, int status, const char *text)
{
	int rc = check_send(res, status, "aw_http_text");
	if (rc)
		return rc;
	return aw__http_queue_response(res->conn, status, "text/plain; charset=utf-8", 25, text,
				       text ? strlen(text) : 0);
}

int aw_http_json(aw_http_response *res, int status, const json_t *json)
{
	int rc = check_send(res, status, "aw_http_json");
	if (rc)
		return rc;
	if (!json)
		return aw_raise(-EINVAL, "aw_http_json: NULL value");
	aw_http_conn *c = res->conn;
	size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
	size_t n = json_dumpb(json, NULL, 0, flags);
	if (!n)
		return aw_raise(-EINVAL, "aw_http_json: the value cannot be serialised (NaN or infinity?)");
	c->body.len = 0;
	if (aw__buf_reserve(&c->body, n))
		return aw_raise(-ENOMEM, "aw_http_json: no memory for %zu bytes", n);
	if (json_dumpb(json, c->body.p, n, flags) != n)
		return aw_raise(-EINVAL, "aw_http_json: the value changed while serialising");
	return aw__http_queue_response(c, status, "application/json", 16, c->body.p, n);
}

void aw__http_json_free(void *json)
{
	json_decref(json);
}

/* ---- streamed responses ---------------------------------------------------------- */

static int stream_head(aw_http_response *res, int status, const char *ctype, int *framing, bool known,
		       uint64_t len)
{
	aw_http_conn *c = res->conn;
	if (known && res->tr)
		return aw_raise(-AW_EHTTP_TRAILER, "a response with a Content-Length cannot carry the declared trailers");
	if (c->h2) {
		*framing = FRAME_H2;
		int rc = aw__h2_head(c, status, ctype, known, len, !c->req.is_head && status_has_body(status));
		if (rc)
			return rc;
		/* Submitted: nghttp2 sends it, it cannot be taken back. A
		 * handler failing later must not get a second HEADERS (an
		 * error status, which the client takes as malformed): the
		 * stream is reset instead (h2.c, stream_finish). */
		res->sent = res->head_written = true;
		return 0;
	}
	if (!c->s)
		return aw_raise(-ENOTCONN, "streamed response without a connection");
	*framing = known ? FRAME_LENGTH : c->req.minor == 0 ? FRAME_CLOSE : FRAME_CHUNKED;
	int rc = put_head(c, status, ctype, ctype ? strlen(ctype) : 0, *framing, len);
	if (rc)
		return rc;
	res->sent = true;
	return aw__http_flush(c);
}

/* Write one piece of a streamed body. */
static int stream_piece(aw_http_conn *c, int framing, const char *p, size_t n)
{
	if (!n)
		return 0;
	c->res.body_bytes += n;
	if (framing == FRAME_H2)
		return aw__h2_write(c, p, n);
	if (framing != FRAME_CHUNKED)
		return aw_stream_write(c->s, p, n, send_deadline(c));
	char hex[24];
	int hl = snprintf(hex, sizeof hex, "%zx\r\n", n);
	struct iovec iov[3] = { { hex, (size_t)hl }, { (void *)p, n }, { "\r\n", 2 } };
	return aw_stream_writev(c->s, iov, 3, send_deadline(c));
}

int aw_http_stream(aw_http_response *res, int status, const char *content_type, aw_iter *chunks)
{
	int rc = check_send(res, status, "aw_http_stream");
	if (rc)
		return rc;
	if (!chunks)
		return aw_raise(-EINVAL, "aw_http_stream: no iterator");
	aw_http_conn *c = res->conn;
	int framing = FRAME_LENGTH;
	rc = stream_head(res, status, content_type, &framing, false, 0);
	if (rc || c->req.is_head || !status_has_body(status)) {
		if (rc)
			res->close = true;
		return rc;
	}
	aw_chunk *ch = NULL;
	int werr = 0;
	res->tr_open = true;   /* the iterator may set trailers until it ends */
	AW_FOR(ch, chunks) {
		werr = stream_piece(c, framing, ch->data, ch->len);
		if (werr)
			break;   /* the client went away: close the iterator */
	}
	res->tr_open = false;
	rc = werr ? werr : aw_error_pending();
	if (!rc && framing == FRAME_CHUNKED && res->tr) {
		/* The trailers, after the last chunk (HTTP/2: h2.c sends
		 * them when the stream's body ends). */
		rc = aw__http_trailer_section(res, &c->out);
		if (!rc)
			rc = aw__http_flush(c);
	} else if (!rc && framing == FRAME_CHUNKED) {
		rc = aw_stream_write(c->s, "0\r\n\r\n", 5, send_deadline(c));
	}
	if (rc) {
		res->close = true;   /* the body is cut short: only closing tells */
		if (werr && !aw_error_pending())
			(void)!aw_raise(werr, "streamed response: the client went away");
	}
	return rc;
}

/* ---- files ----------------------------------------------------------------------- */

static const char *guess_type(const char *path)
{
	return aw__http_mime_type(path, strlen(path));
}

typedef struct stat_job {
	const char *path;
	struct stat st;
	int err;
} stat_job;

static int stat_in_thread(void *arg)
{
	stat_job *j = arg;
	j->err = stat(j->path, &j->st) == 0 ? 0 : errno;
	return 0;
}

int aw_http_file(aw_http_response *res, const char *path, const char *content_type)
{
	int rc = check_send(res, 200, "aw_http_file");
	if (rc)
		return rc;
	if (!path)
		return aw_raise(-EINVAL, "aw_http_file: no path");
	aw_http_conn *c = res->conn;
	stat_job j = { .path = path };
	rc = aw_to_thread(stat_in_thread, &j);
	if (rc)
		return rc;
	if (j.err == ENOENT || j.err == ENOTDIR || (!j.err && !S_ISREG(j.st.st_mode)))
		return aw__http_queue_error(c, 404, "Not Found", NULL);
	if (j.err)
		return aw_raise(-j.err, "aw_http_file: %s: %s", path, strerror(j.err));
	if (!content_type)
		content_type = guess_type(path);
	uint64_t size = (uint64_t)j.st.st_size;
	int framing = FRAME_LENGTH;
	aw_file_chunks fc;
	aw_iter *it = aw_file_chunks_init(&fc, path, 64 * 1024);
	if (c->req.is_head || !c->s) {
		if (!c->s)
			return aw__http_queue_response(c, 200, content_type, strlen(content_type), NULL, 0);
		return stream_head(res, 200, content_type, &framing, true, size);
	}
	/* Open the file before the head: a file that vanished is still a 404. */
	rc = 0;
	uint64_t sent = 0;
	bool head = false;
	aw_chunk *ch = NULL;
	AW_FOR(ch, it) {
		if (!head) {
			rc = stream_head(res, 200, content_type, &framing, true, size);
			head = true;
			if (rc)
				break;
		}
		size_t n = ch->len;
		if (n > size - sent)
			n = (size_t)(size - sent);   /* it grew: send what we announced */
		rc = stream_piece(c, framing, ch->data, n);
		sent += n;
		if (rc || sent == size)
			break;
	}
	if (!rc)
		rc = aw_error_pending();
	if (!head && !rc)
		return stream_head(res, 200, content_type, &framing, true, size);   /* empty file */
	if (!head && rc == -ENOENT) {
		aw_error_clear();
		return aw__http_queue_error(c, 404, "Not Found", NULL);
	}
	if (!rc && sent < size)
		rc = aw_raise(-EIO, "aw_http_file: %s shrank while being sent (%llu of %llu bytes)", path,
			      (unsigned long long)sent, (unsigned long long)size);
	if (rc)
		res->close = true;
	return rc;
}

/* ---- files confined to a root directory -------------------------------------------- */

/* The outcome of opening a file under a root (in a thread). */
typedef struct confined_job {
	const char *root, *rel;
	char path[4096];          /* rel, or rel + "/index.html" for a directory */
	int fd;                   /* the open file, or -1 */
	int status;               /* 0, or 403/404 for the client */
	const char *why;          /* for the log: why 403 */
	int err;                  /* errno of a server-side failure (500) */
	struct stat st;
} confined_job;

/* openat2 with RESOLVE_BENEATH: every step of the resolution (symlinks
 * included) stays under dirfd; -1 with errno (ENOSYS: not available). */
static int open_beneath(int dirfd, const char *rel)
{
#ifdef SYS_openat2
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
#else
	(void)dirfd, (void)rel;
	errno = ENOSYS;
	return -1;
#endif
}

/* Without openat2 (kernels before 5.6, or a seccomp filter that refuses
 * it): open normally, then check where the open file really is (its
 * /proc/self/fd link) against the root's real path. The check is of the
 * object opened, so a symlink swapped in between cannot fool it. */
static int open_checked(int rootfd, const char *rel, char *rootreal, size_t rootlen)
{
	int fd = openat(rootfd, rel, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -1;
	char link[64], real[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, real, sizeof real - 1);
	if (n < 0) {
		close(fd);
		errno = EOPNOTSUPP;   /* no /proc: cannot check, refuse (500) */
		return -1;
	}
	real[n] = 0;
	bool inside = (size_t)n >= rootlen && memcmp(real, rootreal, rootlen) == 0 &&
		      (real[rootlen] == '/' || real[rootlen] == 0 || (rootlen == 1 && rootreal[0] == '/'));
	if (!inside) {
		close(fd);
		errno = EXDEV;
		return -1;
	}
	return fd;
}

int aw__http_open_under(int rootfd, const char *rel, const char *root, bool *no_openat2)
{
	if (!*no_openat2) {
		int fd = open_beneath(rootfd, rel);
		if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
			return fd;
		*no_openat2 = true;
	}
	char rootreal[4096];
	if (!realpath(root, rootreal))
		return -1;
	return open_checked(rootfd, rel, rootreal, strlen(rootreal));
}

int aw__http_open_status(int e, const char **why)
{
	if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG)
		return 404;
	if (e == EXDEV || e == ELOOP) {
		*why = "a symlink leads out of the root";
		return 403;
	}
	if (e == EACCES || e == EPERM) {
		*why = "permission denied";
		return 403;
	}
	return 0;
}

static void confined_fail(confined_job *j, int e)
{
	j->status = aw__http_open_status(e, &j->why);
	if (!j->status)
		j->err = e;
}

static int confined_open_in_thread(void *arg)
{
	confined_job *j = arg;
	j->fd = -1;
	int rootfd = open(j->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		j->err = errno;
		return 0;
	}
	bool no_openat2 = false;
	snprintf(j->path, sizeof j->path, "%s", *j->rel ? j->rel : ".");
	int fd = aw__http_open_under(rootfd, j->path, j->root, &no_openat2);
	if (fd >= 0 && fstat(fd, &j->st) == 0 && S_ISDIR(j->st.st_mode)) {
		/* A directory: its index.html (resolved from the root again). */
		close(fd);
		size_t n = strlen(j->path);
		while (n > 1 && j->path[n - 1] == '/')
			j->path[--n] = 0;
		if (n + sizeof "/index.html" > sizeof j->path) {
			errno = ENAMETOOLONG;
			fd = -1;
		} else {
			memcpy(j->path + n, "/index.html", sizeof "/index.html");
			fd = aw__http_open_under(rootfd, j->path, j->root, &no_openat2);
		}
	}
	int e = errno;
	close(rootfd);
	if (fd < 0) {
		confined_fail(j, e);
		return 0;
	}
	if (fstat(fd, &j->st) != 0) {
		j->err = errno;
		close(fd);
		return 0;
	}
	if (!S_ISREG(j->st.st_mode)) {
		close(fd);   /* a device, a FIFO, a socket: not a file to serve */
		j->status = 404;
		return 0;
	}
	j->fd = fd;
	return 0;
}

/* A relative path that cannot name anything under a root: absolute, or
 * with a ".." segment. */
static bool rel_escapes(const char *rel)
{
	if (rel[0] == '/')
		return true;
	for (const char *s = rel;;) {
		const char *e = strchr(s, '/');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return true;
		if (!e)
			return false;
		s = e + 1;
	}
}

int aw_http_file_in(aw_http_response *res, const char *root, const char *rel, const char *content_type)
{
	int rc = check_send(res, 200, "aw_http_file_in");
	if (rc)
		return rc;
	if (!root || !*root || !rel)
		return aw_raise(-EINVAL, "aw_http_file_in: no root or no path");
	aw_http_conn *c = res->conn;
	if (rel_escapes(rel))
		return aw__http_queue_error(c, 404, "Not Found", NULL);
	confined_job j = { .root = root, .rel = rel, .fd = -1 };
	rc = aw_to_thread(confined_open_in_thread, &j);
	if (rc) {
		if (j.fd >= 0)
			close(j.fd);
		return rc;
	}
	if (j.err)
		return aw_raise(-j.err, "aw_http_file_in: %s under %s: %s", rel, root, strerror(j.err));
	if (j.status == 403) {
		aw__http_log_error(c->app, NULL, "aw_http_file_in: %s under %s: 403 (%s)", rel, root, j.why);
		return aw__http_queue_error(c, 403, "Forbidden", NULL);
	}
	if (j.status)
		return aw__http_queue_error(c, j.status, "Not Found", NULL);
	if (!content_type)
		content_type = guess_type(j.path);
	uint64_t size = (uint64_t)j.st.st_size;
	int framing = FRAME_LENGTH;
	if (c->req.is_head || !c->s) {
		close(j.fd);
		if (!c->s)
			return aw__http_queue_response(c, 200, content_type, strlen(content_type), NULL, 0);
		return stream_head(res, 200, content_type, &framing, true, size);
	}
	char *buf = malloc(64 * 1024);
	if (!buf) {
		close(j.fd);
		return aw_raise(-ENOMEM, "aw_http_file_in: no memory");
	}
	rc = stream_head(res, 200, content_type, &framing, true, size);
	uint64_t sent = 0;
	while (!rc && sent < size) {
		size_t want = size - sent < 64 * 1024 ? (size_t)(size - sent) : 64 * 1024;
		ssize_t n = aw_file_pread(j.fd, buf, want, (off_t)sent);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		if (n == 0) {
			rc = aw_raise(-EIO, "aw_http_file_in: %s shrank while being sent (%llu of %llu bytes)", j.path,
				      (unsigned long long)sent, (unsigned long long)size);
			break;
		}
		rc = stream_piece(c, framing, buf, (size_t)n);
		sent += (uint64_t)n;
	}
	free(buf);
	close(j.fd);
	if (rc)
		res->close = true;
	return rc;
}
