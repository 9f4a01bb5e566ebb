/* SPDX-License-Identifier: MIT */
/*
 * The fast JSON writer: a response body written straight into the
 * connection's scratch buffer, with no DOM. The writer is part of the
 * response (no allocation); a small bit stack tracks the nesting (64
 * levels). Misuse (a value in an object without a key, closing what is not
 * open, a second root value, invalid UTF-8, NaN) records the first error,
 * raises it, and makes every later call a no-op; aw_http_json_end then
 * returns it and nothing is sent (the handler's error becomes a 500).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 63

static void fail(aw_jw *w, int code, const char *what)
{
	if (!w->err)
		w->err = aw_raise(code, "JSON writer: %s", what);
}

static inline bool room(aw_jw *w, size_t n)
{
	if (AW_LIKELY(w->out->len + n <= w->out->cap))
		return true;
	if (aw__buf_reserve(w->out, n)) {
		fail(w, -ENOMEM, "out of memory");
		return false;
	}
	return true;
}

static inline void put1(aw_jw *w, char ch)
{
	w->out->p[w->out->len++] = ch;
}

/* Before any value: the separator, and the checks. */
static bool value_start(aw_jw *w)
{
	if (w->err)
		return false;
	uint64_t bit = (uint64_t)1 << w->depth;
	if (w->depth == 0) {
		if (w->has_item & 1) {
			fail(w, -EINVAL, "a second value at the top level");
			return false;
		}
	} else if (w->is_obj & bit) {
		if (!w->after_key) {
			fail(w, -EINVAL, "a value in an object without a key");
			return false;
		}
		w->after_key = false;
	} else if (w->has_item & bit) {
		if (!room(w, 1))
			return false;
		put1(w, ',');
	}
	w->has_item |= bit;
	return true;
}

static void jw_open(aw_jw *w, char ch, bool obj)
{
	if (!value_start(w))
		return;
	if (w->depth >= MAX_DEPTH) {
		fail(w, -EINVAL, "nesting deeper than 63 levels");
		return;
	}
	if (!room(w, 1))
		return;
	put1(w, ch);
	w->depth++;
	uint64_t bit = (uint64_t)1 << w->depth;
	if (obj)
		w->is_obj |= bit;
	else
		w->is_obj &= ~bit;
	w->has_item &= ~bit;
}

static void jw_close(aw_jw *w, char ch, bool obj)
{
	if (w->err)
		return;
	uint64_t bit = (uint64_t)1 << w->depth;
	if (w->depth == 0 || !!(w->is_obj & bit) != obj) {
		fail(w, -EINVAL, obj ? "closing an object that is not open" : "closing an array that is not open");
		return;
	}
	if (w->after_key) {
		fail(w, -EINVAL, "a key without a value");
		return;
	}
	if (!room(w, 1))
		return;
	put1(w, ch);
	w->depth--;
}

aw_jw *aw_http_json_begin(aw_http_response *res, int status)
{
	aw_http_conn *c = res->conn;
	aw_jw *w = &res->jw;
	*w = (aw_jw){ .res = res, .out = &c->body, .status = status };
	c->body.len = 0;
	if (res->sent || res->in_json)
		fail(w, -EALREADY, "a response was already sent");
	else if (status < 200 || status > 999)
		fail(w, -EINVAL, "not a final status (200-999)");
	res->in_json = true;
	return w;
}

void aw_jw_object(aw_jw *w) { jw_open(w, '{', true); }
void aw_jw_object_end(aw_jw *w) { jw_close(w, '}', true); }
void aw_jw_array(aw_jw *w) { jw_open(w, '[', false); }
void aw_jw_array_end(aw_jw *w) { jw_close(w, ']', false); }

/* Length of the valid UTF-8 sequence at s (0: invalid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c0 = s[0];
	if (c0 >= 0xc2 && c0 <= 0xdf)
		return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c0 >= 0xe0 && c0 <= 0xef) {
		if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c0 == 0xe0 && s[1] < 0xa0) || (c0 == 0xed && s[1] > 0x9f))
			return 0;   /* overlong, or a surrogate */
		return 3;
	}
	if (c0 >= 0xf0 && c0 <= 0xf4) {
		if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c0 == 0xf0 && s[1] < 0x90) || (c0 == 0xf4 && s[1] > 0x8f))
			return 0;
		return 4;
	}
	return 0;
}

static const char hexd[] = "0123456789abcdef";

static void put_string(aw_jw *w, const char *str, size_t n)
{
	/* Worst case: every byte becomes \u00XX. */
	if (!room(w, n * 6 + 2))
		return;
	char *o = w->out->p + w->out->len;
	const unsigned char *s = (const unsigned char *)str, *end = s + n;
	*o++ = '"';
	while (s < end) {
		unsigned char ch = *s;
		if (AW_LIKELY(ch >= 0x20 && ch != '"' && ch != '\\' && ch < 0x80)) {
			*o++ = (char)ch;
			s++;
			continue;
		}
		if (ch >= 0x80) {
			size_t l = utf8_len(s, (size_t)(end - s));
			if (!l) {
				fail(w, -EILSEQ, "a string is not valid UTF-8");
				return;
			}
			memcpy(o, s, l);
			o += l;
			s += l;
			continue;
		}
		*o++ = '\\';
		switch (ch) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hexd[ch >> 4];
			*o++ = hexd[ch & 15];
		}
		s++;
	}
	*o++ = '"';
	w->out->len = (size_t)(o - w->out->p);
}

void aw_jw_key(aw_jw *w, const char *key)
{
	if (w->err)
		return;
	uint64_t bit = (uint64_t)1 << w->depth;
	if (w->depth == 0 || !(w->is_obj & bit)) {
		fail(w, -EINVAL, "a key outside of an object");
		return;
	}
	if (w->after_key) {
		fail(w, -EINVAL, "two keys in a row");
		return;
	}
	if (!key) {
		fail(w, -EINVAL, "a NULL key");
		return;
	}
	if (w->has_item & bit) {
		if (!room(w, 1))
			return;
		put1(w, ',');
	}
	w->has_item |= bit;
	put_string(w, key, strlen(key));
	if (w->err || !room(w, 1))
		return;
	put1(w, ':');
	w->after_key = true;
}

void aw_jw_string_len(aw_jw *w, const char *s, size_t len)
{
	if (!s && len) {
		fail(w, -EINVAL, "a NULL string");
		return;
	}
	if (value_start(w))
		put_string(w, s ? s : "", len);
}

void aw_jw_string(aw_jw *w, const char *s)
{
	if (!s) {
		aw_jw_null(w);
		return;
	}
	aw_jw_string_len(w, s, strlen(s));
}

void aw_jw_int(aw_jw *w, long long v)
{
	if (!value_start(w) || !room(w, 24))
		return;
	char tmp[24];
	int i = 0;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	do {
		tmp[i++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		put1(w, '-');
	while (i)
		put1(w, tmp[--i]);
}

void aw_jw_double(aw_jw *w, double v)
{
	if (w->err)
		return;
	if (!isfinite(v)) {
		fail(w, -EINVAL, "NaN or infinity has no JSON form");
		return;
	}
	if (!value_start(w) || !room(w, 32))
		return;
	/* The shortest of %.15g..%.17g that reads back as the same double. */
	char tmp[32];
	for (int prec = 15; prec <= 17; prec++) {
		aw__snprintf_c(tmp, sizeof tmp, "%.*g", prec, v);   /* '.' in every locale */
		if (prec == 17 || aw__strtod_c(tmp, NULL) == v)
			break;
	}
	size_t n = strlen(tmp);
	memcpy(w->out->p + w->out->len, tmp, n);
	w->out->len += n;
}

void aw_jw_bool(aw_jw *w, bool v)
{
	if (!value_start(w) || !room(w, 5))
		return;
	memcpy(w->out->p + w->out->len, v ? "true" : "false", v ? 4 : 5);
	w->out->len += v ? 4 : 5;
}

void aw_jw_null(aw_jw *w)
{
	if (!value_start(w) || !room(w, 4))
		return;
	memcpy(w->out->p + w->out->len, "null", 4);
	w->out->len += 4;
}

void aw_jw_raw(aw_jw *w, const char *json, size_t len)
{
	if (!json || !len) {
		fail(w, -EINVAL, "empty raw JSON");
		return;
	}
	if (!value_start(w) || !room(w, len))
		return;
	memcpy(w->out->p + w->out->len, json, len);
	w->out->len += len;
}

int aw_http_json_end(aw_jw *w)
{
	aw_http_response *res = w->res;
	res->in_json = false;
	if (w->err)
		return w->err;
	if (w->depth != 0)
		return w->err = aw_raise(-EINVAL, "JSON writer: %d container(s) left open", w->depth);
	if (!(w->has_item & 1))
		return w->err = aw_raise(-EINVAL, "JSON writer: no value written");
	aw_http_conn *c = res->conn;
	return aw__http_queue_response(c, w->status, "application/json", 16, c->body.p, c->body.len);
}
