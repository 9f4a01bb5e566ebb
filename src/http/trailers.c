/* SPDX-License-Identifier: MIT */
/*
 * Response trailers (RFC 9110 6.5): the fields a handler declares and
 * sets, their checks, and their HTTP/1.1 form (the head's Trailer field,
 * the trailer section after the last chunk). response.c frames the body
 * around them; h2.c sends them as the stream's last HEADERS frame.
 *
 * Names and values live in the request's arena (reset with it): a value
 * set again takes new arena bytes, bounded by the request's life.
 */
#include "internal.h"

#include <strings.h>

/* Fields whose meaning is needed before the content (framing, routing,
 * authentication, request modifiers, response controls, content format:
 * RFC 9110 6.5.1), or that a client would merge wrongly: never trailers.
 * The list of Go's net/http (badTrailer) plus the cookie and
 * response-control fields. */
static const char *const forbidden[] = {
	"Age", "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
	"Content-Range", "Content-Type", "Cookie", "Date", "Expect", "Expires", "Host", "Keep-Alive",
	"Location", "Max-Forwards", "Pragma", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Range", "Retry-After", "Set-Cookie", "TE", "Trailer", "Transfer-Encoding",
	"Upgrade", "Vary", "WWW-Authenticate",
};

static bool token_char(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int check_name(const char *who, const char *name)
{
	if (!name || !*name)
		return aw_raise(-EINVAL, "%s: empty trailer name", who);
	for (const char *p = name; *p; p++)
		if (!token_char((unsigned char)*p))
			return aw_raise(-EINVAL, "%s: invalid character 0x%02x in trailer name", who,
					(unsigned char)*p);
	for (size_t i = 0; i < sizeof forbidden / sizeof forbidden[0]; i++)
		if (strcasecmp(name, forbidden[i]) == 0)
			return aw_raise(-AW_EHTTP_TRAILER, "%s: %s cannot be a trailer (RFC 9110 6.5.1)", who, name);
	return 0;
}

static aw_http_trailer *find(aw_http_trailers *tr, const char *name)
{
	for (unsigned i = 0; tr && i < tr->n; i++)
		if (strcasecmp(tr->v[i].name, name) == 0)
			return &tr->v[i];
	return NULL;
}

/* Declare `name` (checked): the field, found or added. */
static int declare(aw_http_response *res, const char *who, const char *name, aw_http_trailer **out)
{
	aw_http_conn *c = res->conn;
	int rc = check_name(who, name);
	if (rc)
		return rc;
	if (!c->h2 && c->req.minor == 0)
		return aw_raise(-AW_EHTTP_TRAILER, "%s(%s): an HTTP/1.0 response cannot carry trailers (no chunked "
				"coding)", who, name);
	aw_http_trailer *t = find(res->tr, name);
	if (t) {
		*out = t;
		return 0;
	}
	if (res->sent)
		return aw_raise(-AW_EHTTP_TRAILER, "%s(%s): not declared before the response started", who, name);
	if (!res->tr) {
		res->tr = aw__arena_alloc(&c->arena, sizeof *res->tr);
		if (!res->tr)
			return aw_raise(-ENOMEM, "%s: no memory", who);
		res->tr->n = 0;
		res->tr->bytes = 0;
	}
	aw_http_trailers *tr = res->tr;
	size_t nl = strlen(name);
	if (tr->n == AW_HTTP_TRAILERS_MAX)
		return aw_raise(-AW_EHTTP_TRAILER, "%s(%s): more than %d trailers", who, name, AW_HTTP_TRAILERS_MAX);
	if (tr->bytes + nl > AW_HTTP_TRAILER_BYTES)
		return aw_raise(-AW_EHTTP_TRAILER, "%s(%s): trailers over %d bytes", who, name, AW_HTTP_TRAILER_BYTES);
	char *n = aw__arena_strndup(&c->arena, name, nl);
	char *ln = aw__arena_strndup(&c->arena, name, nl);
	if (!n || !ln)
		return aw_raise(-ENOMEM, "%s: no memory", who);
	for (size_t k = 0; k < nl; k++)
		if (ln[k] >= 'A' && ln[k] <= 'Z')
			ln[k] = (char)(ln[k] + 32);
	t = &tr->v[tr->n++];
	*t = (aw_http_trailer){ .name = n, .lname = ln, .nlen = nl };
	tr->bytes += nl;
	*out = t;
	return 0;
}

int aw_http_declare_trailer(aw_http_response *res, const char *name)
{
	if (!res)
		return aw_raise(-EINVAL, "aw_http_declare_trailer: no response");
	if (res->sent)
		return aw_raise(-EALREADY, "aw_http_declare_trailer(%s): the response has started", name ? name : "");
	aw_http_trailer *t;
	return declare(res, "aw_http_declare_trailer", name, &t);
}

int aw_http_set_trailer(aw_http_response *res, const char *name, const char *value)
{
	if (!res)
		return aw_raise(-EINVAL, "aw_http_set_trailer: no response");
	if (res->sent && !res->tr_open)
		return aw_raise(-EALREADY, "aw_http_set_trailer(%s): the body has ended", name ? name : "");
	if (!value)
		return aw_raise(-EINVAL, "aw_http_set_trailer(%s): NULL value", name ? name : "");
	for (const char *p = value; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return aw_raise(-EINVAL, "aw_http_set_trailer(%s): control character 0x%02x in the value",
					name ? name : "", ch);
	}
	aw_http_trailer *t;
	int rc = declare(res, "aw_http_set_trailer", name, &t);
	if (rc)
		return rc;
	size_t vl = strlen(value);
	size_t bytes = res->tr->bytes - (t->value ? t->vlen : 0) + vl;
	if (bytes > AW_HTTP_TRAILER_BYTES)
		return aw_raise(-AW_EHTTP_TRAILER, "aw_http_set_trailer(%s): trailers over %d bytes", name,
				AW_HTTP_TRAILER_BYTES);
	char *v = aw__arena_strndup(&res->conn->arena, value, vl);
	if (!v)
		return aw_raise(-ENOMEM, "aw_http_set_trailer: no memory");
	t->value = v;
	t->vlen = vl;
	res->tr->bytes = bytes;
	return 0;
}

bool aw_http_accepts_trailers(const aw_http_request *req)
{
	aw_str n, v;
	for (size_t i = 0; req && aw_http_header_at(req, i, &n, &v); i++) {
		if (n.len != 2 || strncasecmp(n.p, "te", 2) != 0)
			continue;
		/* #t-codings: "trailers" among them, alone (it takes no parameters). */
		for (size_t k = 0; k < v.len;) {
			while (k < v.len && (v.p[k] == ' ' || v.p[k] == '\t' || v.p[k] == ','))
				k++;
			size_t s = k;
			while (k < v.len && v.p[k] != ',' && v.p[k] != ';' && v.p[k] != ' ' && v.p[k] != '\t')
				k++;
			size_t e = k;
			while (k < v.len && v.p[k] == ' ')
				k++;
			if (e - s == 8 && strncasecmp(v.p + s, "trailers", 8) == 0 && (k == v.len || v.p[k] == ','))
				return true;
			while (k < v.len && v.p[k] != ',')
				k++;
		}
	}
	return false;
}

bool aw__http_trailers_set(const aw_http_response *res)
{
	for (unsigned i = 0; res->tr && i < res->tr->n; i++)
		if (res->tr->v[i].value)
			return true;
	return false;
}

size_t aw__http_trailer_header_len(const aw_http_response *res)
{
	if (!res->tr || !res->tr->n)
		return 0;
	size_t n = 11;   /* "Trailer: " "\r\n" */
	for (unsigned i = 0; i < res->tr->n; i++)
		n += res->tr->v[i].nlen + 2;
	return n;
}

char *aw__http_trailer_header_put(const aw_http_response *res, char *o)
{
	if (!res->tr || !res->tr->n)
		return o;
	memcpy(o, "Trailer: ", 9);
	o += 9;
	for (unsigned i = 0; i < res->tr->n; i++) {
		if (i) {
			memcpy(o, ", ", 2);
			o += 2;
		}
		memcpy(o, res->tr->v[i].name, res->tr->v[i].nlen);
		o += res->tr->v[i].nlen;
	}
	memcpy(o, "\r\n", 2);
	return o + 2;
}

int aw__http_trailer_section(const aw_http_response *res, aw_buf *b)
{
	int rc = aw__buf_put(b, "0\r\n", 3);
	for (unsigned i = 0; res->tr && i < res->tr->n; i++) {
		const aw_http_trailer *t = &res->tr->v[i];
		if (!t->value)
			continue;
		rc |= aw__buf_put(b, t->name, t->nlen);
		rc |= aw__buf_put(b, ": ", 2);
		rc |= aw__buf_put(b, t->value, t->vlen);
		rc |= aw__buf_put(b, "\r\n", 2);
	}
	rc |= aw__buf_put(b, "\r\n", 2);
	return rc ? aw_raise(-ENOMEM, "no memory for the trailer section") : 0;
}
