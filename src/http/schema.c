/* SPDX-License-Identifier: MIT */
/*
 * Declared shapes (awith/schema.h): parameters and JSON bodies validated
 * into C structs, 422 answers listing every problem, structs serialised
 * back to JSON, and routes that carry their spec (for the OpenAPI
 * document, openapi.c).
 *
 * Validation walks the schema and the parsed JSON (jansson) together; the
 * recursion follows the schema, and a schema can only recurse through an
 * array of itself, so its depth is bounded by the JSON's, which
 * aw_http_json_body caps at AW_JSON_MAX_DEPTH before parsing. Problems are
 * kept in the request's arena as they are found (the location as a
 * path of keys and indexes), rendered into the 422 body once.
 */
#include "internal.h"
#include "awith/schema.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- per-request state -------------------------------------------------------- */

#define PATH_MAX_SEGS (2 * AW_JSON_MAX_DEPTH + 8)

typedef struct vseg {
	const char *key;   /* NULL: an index */
	size_t idx;
} vseg;

typedef struct verr {
	struct verr *next;
	char *loc;         /* the JSON array, rendered */
	char *dotted;      /* body.items[2].qty, for the log */
	const char *msg;   /* arena or static */
	const char *type;  /* static */
} verr;

struct aw_http_valid {
	verr *head, **tail;
	size_t count;      /* all found (only the first AW_VALIDATION_MAX_ERRORS kept) */
	const void *params, *body;
	char *detail;      /* rendered on demand */
	vseg path[PATH_MAX_SEGS];
	size_t depth;
	bool oom;
};

typedef struct aw_http_valid vctx;

static vctx *valid_state(aw_http_request *req)
{
	if (!req->valid) {
		vctx *v = aw__arena_alloc(&req->conn->arena, sizeof *v);
		if (!v)
			return NULL;
		memset(v, 0, sizeof *v);
		v->tail = &v->head;
		req->valid = v;
	}
	return req->valid;
}

static void push_key(vctx *v, const char *key)
{
	if (v->depth < PATH_MAX_SEGS)
		v->path[v->depth] = (vseg){ .key = key };
	v->depth++;
}

static void push_idx(vctx *v, size_t i)
{
	if (v->depth < PATH_MAX_SEGS)
		v->path[v->depth] = (vseg){ .idx = i };
	v->depth++;
}

static void pop(vctx *v)
{
	v->depth--;
}

/* JSON-escape s (a key: our own names, or a client's unknown key) into b. */
static int put_jstr(aw_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (aw__buf_put(b, "\"", 1))
		return -1;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		size_t n = 0;
		if (*p == '"' || *p == '\\') {
			esc[n++] = '\\';
			esc[n++] = (char)*p;
		} else if (*p < 0x20) {
			memcpy(esc, "\\u00", 4);
			n = 4;
			esc[n++] = hex[*p >> 4];
			esc[n++] = hex[*p & 15];
		} else {
			esc[n++] = (char)*p;
		}
		if (aw__buf_put(b, esc, n))
			return -1;
	}
	return aw__buf_put(b, "\"", 1);
}

static void add_error(aw_http_request *req, vctx *v, const char *type, const char *fmt, ...) AW_PRINTF(4, 5);
static void add_error(aw_http_request *req, vctx *v, const char *type, const char *fmt, ...)
{
	v->count++;
	if (v->count > AW_VALIDATION_MAX_ERRORS || v->oom)
		return;
	aw_arena *a = &req->conn->arena;
	verr *e = aw__arena_alloc(a, sizeof *e);
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	aw_buf loc = { 0 }, dot = { 0 };
	int bad = !e;
	bad |= aw__buf_put(&loc, "[", 1);
	size_t n = v->depth < PATH_MAX_SEGS ? v->depth : PATH_MAX_SEGS;
	for (size_t i = 0; i < n && !bad; i++) {
		const vseg *s = &v->path[i];
		if (i)
			bad |= aw__buf_put(&loc, ",", 1);
		if (s->key) {
			bad |= put_jstr(&loc, s->key);
			if (i)
				bad |= aw__buf_put(&dot, ".", 1);
			bad |= aw__buf_put(&dot, s->key, strlen(s->key));
		} else {
			char num[32];
			int k = snprintf(num, sizeof num, "%zu", s->idx);
			bad |= aw__buf_put(&loc, num, (size_t)k);
			k = snprintf(num, sizeof num, "[%zu]", s->idx);
			bad |= aw__buf_put(&dot, num, (size_t)k);
		}
	}
	bad |= aw__buf_put(&loc, "]", 1);
	if (!bad) {
		e->loc = aw__arena_strndup(a, loc.p, loc.len);
		e->dotted = aw__arena_strndup(a, dot.p ? dot.p : "", dot.len);
		e->msg = aw__arena_strndup(a, msg, strlen(msg));
		e->type = type;
		bad = !e->loc || !e->dotted || !e->msg;
	}
	aw__buf_free(&loc);
	aw__buf_free(&dot);
	if (bad) {
		v->oom = true;
		return;
	}
	e->next = NULL;
	*v->tail = e;
	v->tail = &e->next;
}

const char *aw_http_validation_detail(const aw_http_request *req)
{
	vctx *v = req ? req->valid : NULL;
	if (!v || !v->head)
		return NULL;
	if (v->detail)
		return v->detail;
	aw_buf b = { 0 };
	int bad = aw__buf_put(&b, "{\"detail\":[", 11);
	for (verr *e = v->head; e && !bad; e = e->next) {
		if (e != v->head)
			bad |= aw__buf_put(&b, ",", 1);
		bad |= aw__buf_put(&b, "{\"loc\":", 7);
		bad |= aw__buf_put(&b, e->loc, strlen(e->loc));
		bad |= aw__buf_put(&b, ",\"msg\":", 7);
		bad |= put_jstr(&b, e->msg);
		bad |= aw__buf_put(&b, ",\"type\":", 8);
		bad |= put_jstr(&b, e->type);
		bad |= aw__buf_put(&b, "}", 1);
	}
	bad |= aw__buf_put(&b, "]}", 2);
	if (!bad)
		v->detail = aw__arena_strndup(&req->conn->arena, b.p, b.len);
	aw__buf_free(&b);
	return v->detail;
}

bool aw__http_queue_validation(aw_http_conn *c)
{
	const char *vd = aw_http_validation_detail(&c->req);
	if (!vd)
		return false;
	/* As for every error answer: the handler's headers go (those
	 * middleware set on entering stay). */
	if (c->res.hdrs.len > c->res.hdrs_keep)
		c->res.hdrs.len = c->res.hdrs_keep;
	if (aw__http_queue_response(c, 422, "application/json", 16, vd, strlen(vd)))
		aw_error_clear();   /* no memory for the answer: the connection closes */
	return true;
}

/* Raise the validation error for what was found (messages: the first
 * few problems, for the log). */
static int raise_invalid(vctx *v)
{
	if (v->oom)
		return aw_raise(-ENOMEM, "request validation: out of memory");
	char first[300] = "";
	size_t n = 0;
	int k = 0;
	for (verr *e = v->head; e && k < 3 && n < sizeof first; e = e->next, k++)
		n += (size_t)snprintf(first + n, sizeof first - n, "%s%s: %s", k ? "; " : "", e->dotted, e->msg);
	return aw_raise(-AW_EHTTP_VALIDATION, "%zu invalid input%s: %s%s", v->count, v->count == 1 ? "" : "s", first,
			v->count > 3 ? "; ..." : "");
}

/* ---- checking tables ------------------------------------------------------------ */

static bool int_size_ok(size_t n)
{
	return n == 1 || n == 2 || n == 4 || n == 8;
}

static int check_field(const aw_field *f, size_t struct_size, bool params, int depth, const char *owner);

static int check_schema(const aw_schema *s, bool params, int depth)
{
	if (!s || (!s->fields && s->nfields))
		return aw_raise(-EINVAL, "schema %s: no fields table", s && s->name ? s->name : "(anonymous)");
	if (depth > 16)
		return 0;   /* a schema that contains itself through arrays: checked already */
	for (size_t i = 0; i < s->nfields; i++) {
		const aw_field *f = &s->fields[i];
		if (!f->name || !*f->name)
			return aw_raise(-EINVAL, "schema %s: field %zu has no name", s->name ? s->name : "(anonymous)", i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(s->fields[j].name, f->name) == 0)
				return aw_raise(-EINVAL, "schema %s: field '%s' declared twice",
						s->name ? s->name : "(anonymous)", f->name);
		int rc = check_field(f, s->size, params, depth, s->name ? s->name : "(anonymous)");
		if (rc)
			return rc;
	}
	return 0;
}

static int check_field(const aw_field *f, size_t struct_size, bool params, int depth, const char *owner)
{
	const char *n = f->name ? f->name : "item";
	if (f->offset + f->size > struct_size && struct_size)
		return aw_raise(-EINVAL, "schema %s: field '%s' lies outside the struct", owner, n);
	if (f->present && f->present - 1 + sizeof(bool) > struct_size)
		return aw_raise(-EINVAL, "schema %s: field '%s': its presence flag lies outside the struct", owner, n);
	if (params && f->in != AW_IN_PATH && f->in != AW_IN_QUERY)
		return aw_raise(-EINVAL, "params schema %s: field '%s' needs .in = AW_IN_PATH or AW_IN_QUERY", owner, n);
	if (f->has_min && f->has_max && f->min > f->max)
		return aw_raise(-EINVAL, "schema %s: field '%s': min > max", owner, n);
	if (f->max_len && f->min_len > f->max_len)
		return aw_raise(-EINVAL, "schema %s: field '%s': min_len > max_len", owner, n);
	switch (f->type) {
	case AW_STRING:
		if (f->size != sizeof(char *))
			return aw_raise(-EINVAL, "schema %s: string field '%s' must be a const char *", owner, n);
		return 0;
	case AW_INT:
		if (!int_size_ok(f->size))
			return aw_raise(-EINVAL, "schema %s: integer field '%s' has size %zu", owner, n, f->size);
		return 0;
	case AW_NUMBER:
		if (f->size != sizeof(double) && f->size != sizeof(float))
			return aw_raise(-EINVAL, "schema %s: number field '%s' must be a double or float", owner, n);
		return 0;
	case AW_BOOL:
		if (f->size != sizeof(bool))
			return aw_raise(-EINVAL, "schema %s: bool field '%s' must be a bool", owner, n);
		return 0;
	case AW_ENUM:
		if (!int_size_ok(f->size))
			return aw_raise(-EINVAL, "schema %s: enum field '%s' has size %zu", owner, n, f->size);
		if (!f->enum_values || !f->enum_values[0])
			return aw_raise(-EINVAL, "schema %s: enum field '%s' has no values", owner, n);
		return 0;
	case AW_OBJECT:
		if (params)
			return aw_raise(-EINVAL, "params schema %s: '%s' cannot be an object", owner, n);
		if (!f->object)
			return aw_raise(-EINVAL, "schema %s: object field '%s' has no schema", owner, n);
		if (f->object->size != f->size)
			return aw_raise(-EINVAL, "schema %s: object field '%s' is %zu bytes, its schema %zu", owner, n,
					f->size, f->object->size);
		return check_schema(f->object, false, depth + 1);
	case AW_ARRAY:
		if (params)
			return aw_raise(-EINVAL, "params schema %s: '%s' cannot be an array", owner, n);
		if (f->size != sizeof(void *) || !f->items)
			return aw_raise(-EINVAL, "schema %s: array field '%s' needs a pointer member and an item shape",
					owner, n);
		if (struct_size && f->count_offset + sizeof(size_t) > struct_size)
			return aw_raise(-EINVAL, "schema %s: array field '%s': its count lies outside the struct", owner,
					n);
		if (!f->items->size || f->items->offset || f->items->type == AW_ARRAY)
			return aw_raise(-EINVAL, "schema %s: array field '%s': bad item shape (arrays of arrays are not supported)",
					owner, n);
		return check_field(f->items, f->items->size, false, depth + 1, owner);
	default:
		return aw_raise(-EINVAL, "schema %s: field '%s' has no type", owner, n);
	}
}

int aw_schema_check(const aw_schema *s, bool params)
{
	return check_schema(s, params, 0);
}

/* ---- storing values ------------------------------------------------------------- */

static void store_int(void *p, size_t size, long long x)
{
	switch (size) {
	case 1: { int8_t v = (int8_t)x; memcpy(p, &v, 1); break; }
	case 2: { int16_t v = (int16_t)x; memcpy(p, &v, 2); break; }
	case 4: { int32_t v = (int32_t)x; memcpy(p, &v, 4); break; }
	default: memcpy(p, &x, 8); break;
	}
}

static long long load_int(const void *p, size_t size)
{
	switch (size) {
	case 1: { int8_t v; memcpy(&v, p, 1); return v; }
	case 2: { int16_t v; memcpy(&v, p, 2); return v; }
	case 4: { int32_t v; memcpy(&v, p, 4); return v; }
	default: { long long v; memcpy(&v, p, 8); return v; }
	}
}

static void int_limits(size_t size, long long *lo, long long *hi)
{
	if (size >= 8) {
		*lo = LLONG_MIN;
		*hi = LLONG_MAX;
	} else {
		*hi = (1LL << (size * 8 - 1)) - 1;
		*lo = -*hi - 1;
	}
}

static void fmt_num(char *buf, size_t n, double x)
{
	if (x == floor(x) && fabs(x) < 1e15)
		aw__snprintf_c(buf, n, "%.0f", x);
	else
		aw__snprintf_c(buf, n, "%.17g", x);
}

/* Bounds on a number that has the right type. */
static bool check_bounds(aw_http_request *req, vctx *v, const aw_field *f, double x)
{
	char b[40];
	if (f->has_min && x < f->min) {
		fmt_num(b, sizeof b, f->min);
		add_error(req, v, "greater_than_equal", "Input should be greater than or equal to %s", b);
		return false;
	}
	if (f->has_max && x > f->max) {
		fmt_num(b, sizeof b, f->max);
		add_error(req, v, "less_than_equal", "Input should be less than or equal to %s", b);
		return false;
	}
	return true;
}

static bool store_checked_int(aw_http_request *req, vctx *v, const aw_field *f, void *dst, long long x)
{
	long long lo, hi;
	int_limits(f->size, &lo, &hi);
	if (x < lo) {
		add_error(req, v, "greater_than_equal", "Input should be greater than or equal to %lld", lo);
		return false;
	}
	if (x > hi) {
		add_error(req, v, "less_than_equal", "Input should be less than or equal to %lld", hi);
		return false;
	}
	if (!check_bounds(req, v, f, (double)x))
		return false;
	store_int(dst, f->size, x);
	return true;
}

static size_t utf8_chars(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xC0) != 0x80;
	return c;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			k = 1;
			cp = c & 0x1F;
		} else if ((c & 0xF0) == 0xE0) {
			k = 2;
			cp = c & 0x0F;
		} else if ((c & 0xF8) == 0xF0) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static bool check_string(aw_http_request *req, vctx *v, const aw_field *f, const char *s, size_t len)
{
	size_t n = utf8_chars(s, len);
	if (f->min_len && n < f->min_len) {
		add_error(req, v, "string_too_short", "String should have at least %zu character%s", f->min_len,
			  f->min_len == 1 ? "" : "s");
		return false;
	}
	if (f->max_len && n > f->max_len) {
		add_error(req, v, "string_too_long", "String should have at most %zu character%s", f->max_len,
			  f->max_len == 1 ? "" : "s");
		return false;
	}
	return true;
}

/* "Input should be 'a', 'b' or 'c'" */
static void enum_error(aw_http_request *req, vctx *v, const aw_field *f)
{
	char b[160];
	size_t n = 0, count = 0;
	while (f->enum_values[count])
		count++;
	for (size_t i = 0; i < count && n < sizeof b - 8; i++) {
		const char *sep = i == 0 ? "" : i + 1 == count ? " or " : ", ";
		int k = snprintf(b + n, sizeof b - n, "%s'%s'", sep, f->enum_values[i]);
		n += k > 0 ? (size_t)k : 0;
	}
	if (n >= sizeof b - 8)
		memcpy(b + sizeof b - 8, "...", 4);
	add_error(req, v, "enum", "Input should be %s", b);
}

static bool store_enum(aw_http_request *req, vctx *v, const aw_field *f, void *dst, const char *s)
{
	for (long long i = 0; f->enum_values[i]; i++)
		if (strcmp(f->enum_values[i], s) == 0) {
			store_int(dst, f->size, i);
			return true;
		}
	enum_error(req, v, f);
	return false;
}

static void set_present(const aw_field *f, char *base)
{
	if (f->present)
		base[f->present - 1] = 1;
}

/* ---- JSON bodies ------------------------------------------------------------------ */

static void json_object_into(aw_http_request *req, vctx *v, const aw_schema *s, json_t *j, char *out);

/* One value of shape f into dst (the member's address). */
static void json_value_into(aw_http_request *req, vctx *v, const aw_field *f, json_t *j, char *dst)
{
	switch (f->type) {
	case AW_STRING:
		if (!json_is_string(j)) {
			add_error(req, v, "string_type", "Input should be a valid string");
			return;
		}
		if (!check_string(req, v, f, json_string_value(j), json_string_length(j)))
			return;
		{
			/* the value lives in the request's JSON until the request is done */
			const char *p = json_string_value(j);
			memcpy(dst, &p, sizeof p);
		}
		return;
	case AW_INT:
		if (json_is_integer(j)) {
			(void)store_checked_int(req, v, f, dst, json_integer_value(j));
		} else if (json_is_real(j)) {
			double x = json_real_value(j);
			if (x != floor(x))
				add_error(req, v, "int_from_float",
					  "Input should be a valid integer, got a number with a fractional part");
			else if (x < -9.2e18 || x > 9.2e18)
				add_error(req, v, "int_range", "Input should be a valid integer, the number is too large");
			else
				(void)store_checked_int(req, v, f, dst, (long long)x);
		} else {
			add_error(req, v, "int_type", "Input should be a valid integer");
		}
		return;
	case AW_NUMBER: {
		if (!json_is_number(j)) {
			add_error(req, v, "float_type", "Input should be a valid number");
			return;
		}
		double x = json_number_value(j);
		if (!check_bounds(req, v, f, x))
			return;
		if (f->size == sizeof(float)) {
			float y = (float)x;
			memcpy(dst, &y, sizeof y);
		} else {
			memcpy(dst, &x, sizeof x);
		}
		return;
	}
	case AW_BOOL:
		if (!json_is_boolean(j)) {
			add_error(req, v, "bool_type", "Input should be a valid boolean");
			return;
		}
		*(bool *)(void *)dst = json_is_true(j);
		return;
	case AW_ENUM:
		if (!json_is_string(j)) {
			enum_error(req, v, f);
			return;
		}
		(void)store_enum(req, v, f, dst, json_string_value(j));
		return;
	case AW_OBJECT:
		json_object_into(req, v, f->object, j, dst);
		return;
	case AW_ARRAY: {
		if (!json_is_array(j)) {
			add_error(req, v, "list_type", "Input should be a valid list");
			return;
		}
		size_t n = json_array_size(j);
		if (f->min_len && n < f->min_len) {
			add_error(req, v, "too_short", "List should have at least %zu item%s after validation, not %zu",
				  f->min_len, f->min_len == 1 ? "" : "s", n);
			return;
		}
		if (f->max_len && n > f->max_len) {
			add_error(req, v, "too_long", "List should have at most %zu item%s after validation, not %zu",
				  f->max_len, f->max_len == 1 ? "" : "s", n);
			return;
		}
		const aw_field *it = f->items;
		char *items = NULL;
		if (n) {
			if (n > SIZE_MAX / it->size || !(items = aw__arena_alloc(&req->conn->arena, n * it->size))) {
				v->oom = true;
				return;
			}
			memset(items, 0, n * it->size);
		}
		for (size_t i = 0; i < n; i++) {
			push_idx(v, i);
			json_t *x = json_array_get(j, i);
			if (json_is_null(x) && it->type != AW_OBJECT)
				add_error(req, v, it->type == AW_STRING ? "string_type" : "missing",
					  it->type == AW_STRING ? "Input should be a valid string" : "Field required");
			else
				json_value_into(req, v, it, x, items + i * it->size);
			pop(v);
		}
		memcpy(dst, &items, sizeof items);
		memcpy(dst - f->offset + f->count_offset, &n, sizeof n);
		return;
	}
	}
}

static void json_object_into(aw_http_request *req, vctx *v, const aw_schema *s, json_t *j, char *out)
{
	if (!json_is_object(j)) {
		add_error(req, v, "model_attributes_type",
			  "Input should be a valid dictionary or object to extract fields from");
		return;
	}
	for (size_t i = 0; i < s->nfields; i++) {
		const aw_field *f = &s->fields[i];
		json_t *x = json_object_get(j, f->name);
		push_key(v, f->name);
		if (!x || json_is_null(x)) {
			if (f->required)
				add_error(req, v, "missing", "Field required");
		} else {
			size_t before = v->count;
			json_value_into(req, v, f, x, out + f->offset);
			if (v->count == before)
				set_present(f, out);
		}
		pop(v);
	}
	if (s->extra == AW_EXTRA_FORBID) {
		const char *key;
		json_t *x;
		json_object_foreach(j, key, x) {
			bool known = false;
			for (size_t i = 0; i < s->nfields && !known; i++)
				known = strcmp(s->fields[i].name, key) == 0;
			if (known)
				continue;
			if (v->count >= AW_VALIDATION_MAX_ERRORS) {
				v->count++;   /* counted, not kept: no copy of the key */
				continue;
			}
			const char *k = aw__arena_strndup(&req->conn->arena, key, strlen(key));
			if (!k) {
				v->oom = true;
				return;
			}
			push_key(v, k);
			add_error(req, v, "extra_forbidden", "Extra inputs are not permitted");
			pop(v);
		}
	}
}

/* Parse and check the body into out; problems are recorded, not raised.
 * Returns 0 (look at v->count) or a raised error of the body itself. */
static int body_collect(aw_http_request *req, vctx *v, const aw_schema *s, void *out)
{
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	v->depth = 0;
	push_key(v, "body");
	if (len == 0) {
		add_error(req, v, "missing", "Field required");
		pop(v);
		return 0;
	}
	json_t *j;
	rc = aw_http_json_body(req, &j);
	if (rc) {
		pop(v);
		return rc;
	}
	json_object_into(req, v, s, j, out);
	pop(v);
	return 0;
}

int aw_http_parse_body(aw_http_request *req, const aw_schema *s, void *out)
{
	if (!req || !s || !out)
		return aw_raise(-EINVAL, "aw_http_parse_body: NULL argument");
	vctx *v = valid_state(req);
	if (!v)
		return aw_raise(-ENOMEM, "aw_http_parse_body: out of memory");
	size_t before = v->count;
	int rc = body_collect(req, v, s, out);
	if (rc)
		return rc;
	if (v->count != before || v->oom)
		return raise_invalid(v);
	return 0;
}

/* ---- parameters --------------------------------------------------------------------- */

static bool parse_ll(const char *s, long long *out)
{
	const char *p = s;
	if (*p == '-' || *p == '+')
		p++;
	if (*p < '0' || *p > '9')
		return false;
	errno = 0;
	char *end;
	long long x = strtoll(s, &end, 10);
	if (*end || errno)
		return false;
	*out = x;
	return true;
}

static void param_into(aw_http_request *req, vctx *v, const aw_field *f, const char *text, char *dst)
{
	size_t len = strlen(text);
	switch (f->type) {
	case AW_STRING:
		if (!utf8_valid((const unsigned char *)text, len)) {
			add_error(req, v, "string_unicode",
				  "Input should be a valid string, unable to parse raw data as a unicode string");
			return;
		}
		if (check_string(req, v, f, text, len))
			memcpy(dst, &text, sizeof text);
		return;
	case AW_INT: {
		long long x;
		if (!parse_ll(text, &x)) {
			add_error(req, v, "int_parsing", "Input should be a valid integer, unable to parse string as an integer");
			return;
		}
		(void)store_checked_int(req, v, f, dst, x);
		return;
	}
	case AW_NUMBER: {
		char *end;
		double x = len ? aw__strtod_c(text, &end) : 0;
		if (!len || *end || !isfinite(x)) {
			add_error(req, v, "float_parsing", "Input should be a valid number, unable to parse string as a number");
			return;
		}
		if (!check_bounds(req, v, f, x))
			return;
		if (f->size == sizeof(float)) {
			float y = (float)x;
			memcpy(dst, &y, sizeof y);
		} else {
			memcpy(dst, &x, sizeof x);
		}
		return;
	}
	case AW_BOOL: {
		static const char *const yes[] = { "true", "1", "yes", "on", "t", "y" };
		static const char *const no[] = { "false", "0", "no", "off", "f", "n" };
		for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
			if (strcasecmp(text, yes[i]) == 0) {
				*(bool *)(void *)dst = true;
				return;
			}
			if (strcasecmp(text, no[i]) == 0) {
				*(bool *)(void *)dst = false;
				return;
			}
		}
		add_error(req, v, "bool_parsing", "Input should be a valid boolean, unable to interpret input");
		return;
	}
	case AW_ENUM:
		(void)store_enum(req, v, f, dst, text);
		return;
	default:
		return;   /* refused by aw_schema_check */
	}
}

static int params_collect(aw_http_request *req, vctx *v, const aw_schema *s, void *outp)
{
	char *out = outp;
	for (size_t i = 0; i < s->nfields; i++) {
		const aw_field *f = &s->fields[i];
		const char *text = NULL;
		v->depth = 0;
		if (f->in == AW_IN_PATH) {
			text = aw_http_param(req, f->name);
			push_key(v, "path");
		} else {
			int rc = aw_http_query(req, f->name, &text);
			if (rc < 0)
				return rc;   /* a bad %-escape: 400, as for any query */
			push_key(v, "query");
		}
		push_key(v, f->name);
		if (!text) {
			if (f->required || f->in == AW_IN_PATH)
				add_error(req, v, "missing", "Field required");
		} else {
			size_t before = v->count;
			param_into(req, v, f, text, out + f->offset);
			if (v->count == before)
				set_present(f, out);
		}
		v->depth = 0;
	}
	return 0;
}

int aw_http_parse_params(aw_http_request *req, const aw_schema *s, void *out)
{
	if (!req || !s || !out)
		return aw_raise(-EINVAL, "aw_http_parse_params: NULL argument");
	vctx *v = valid_state(req);
	if (!v)
		return aw_raise(-ENOMEM, "aw_http_parse_params: out of memory");
	size_t before = v->count;
	int rc = params_collect(req, v, s, out);
	if (rc)
		return rc;
	if (v->count != before || v->oom)
		return raise_invalid(v);
	return 0;
}

/* ---- routes with a spec -------------------------------------------------------------- */

/* The handler every spec'd route is registered with (openapi.c tells
 * them apart by it): validate, then call the user's. */
int aw__http_spec_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	aw_http_spec_route *sr = ud;
	const aw_route_spec *spec = sr->spec;
	vctx *v = valid_state(req);
	if (!v)
		return aw_raise(-ENOMEM, "request validation: out of memory");
	aw_arena *a = &req->conn->arena;
	void *params = NULL, *body = NULL;
	if (spec->params) {
		params = aw__arena_alloc(a, spec->params->size ? spec->params->size : 1);
		if (!params)
			return aw_raise(-ENOMEM, "request validation: out of memory");
		memset(params, 0, spec->params->size);
		int rc = params_collect(req, v, spec->params, params);
		if (rc)
			return rc;
	}
	if (spec->body) {
		body = aw__arena_alloc(a, spec->body->size ? spec->body->size : 1);
		if (!body)
			return aw_raise(-ENOMEM, "request validation: out of memory");
		memset(body, 0, spec->body->size);
		int rc = body_collect(req, v, spec->body, body);
		if (rc)
			return rc;
	}
	if (v->count || v->oom)
		return raise_invalid(v);
	v->params = params;
	v->body = body;
	return sr->fn(req, res, sr->ud);
}

const void *aw_http_valid_params(const aw_http_request *req)
{
	return req && req->valid ? req->valid->params : NULL;
}

const void *aw_http_valid_body(const aw_http_request *req)
{
	return req && req->valid ? req->valid->body : NULL;
}

/* Does the template have {name}? */
static bool template_has(const char *path, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = path; (p = strchr(p, '{')); p++)
		if (strncmp(p + 1, name, n) == 0 && p[1 + n] == '}')
			return true;
	return false;
}

int aw_app_route_spec(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud,
		      const aw_route_spec *spec)
{
	if (!spec)
		return aw_app_route(app, method, path, fn, ud);
	if (!app || !path || !fn)
		return aw_raise(-EINVAL, "aw_app_route_spec: NULL argument");
	int rc;
	if (spec->params && (rc = aw_schema_check(spec->params, true)))
		return rc;
	if (spec->body && (rc = aw_schema_check(spec->body, false)))
		return rc;
	if (spec->response && (rc = aw_schema_check(spec->response, false)))
		return rc;
	/* every {name} of the template declared, every path field in it */
	for (const char *p = path; (p = strchr(p, '{')); p++) {
		const char *e = strchr(p, '}');
		if (!e)
			break;   /* the router refuses it */
		bool found = false;
		for (size_t i = 0; spec->params && i < spec->params->nfields && !found; i++) {
			const aw_field *f = &spec->params->fields[i];
			found = f->in == AW_IN_PATH && strlen(f->name) == (size_t)(e - p - 1) &&
				memcmp(f->name, p + 1, (size_t)(e - p - 1)) == 0;
		}
		if (!found)
			return aw_raise(-EINVAL, "aw_app_route_spec(%s): {%.*s} is not declared in the params schema", path,
					(int)(e - p - 1), p + 1);
	}
	for (size_t i = 0; spec->params && i < spec->params->nfields; i++) {
		const aw_field *f = &spec->params->fields[i];
		if (f->in == AW_IN_PATH && !template_has(path, f->name))
			return aw_raise(-EINVAL, "aw_app_route_spec(%s): path parameter '%s' is not in the template", path,
					f->name);
	}
	aw_http_spec_route *sr = aw__calloc(1, sizeof *sr);
	if (!sr)
		return aw_raise(-ENOMEM, "aw_app_route_spec: out of memory");
	sr->fn = fn;
	sr->ud = ud;
	sr->spec = spec;
	rc = aw_app_route(app, method, path, aw__http_spec_handler, sr);
	if (rc) {
		free(sr);
		return rc;
	}
	sr->next = app->spec_routes;
	app->spec_routes = sr;
	return 0;
}

void aw__http_spec_routes_free(aw_app *app)
{
	for (aw_http_spec_route *sr = app->spec_routes; sr;) {
		aw_http_spec_route *n = sr->next;
		free(sr);
		sr = n;
	}
	app->spec_routes = NULL;
}

/* ---- response models ---------------------------------------------------------------- */

static void jw_value(aw_jw *w, const aw_field *f, const char *p);

static void jw_model_at(aw_jw *w, const aw_schema *s, const char *obj, int depth)
{
	if (depth > AW_JSON_MAX_DEPTH) {
		if (!w->err)
			w->err = aw_raise(-EINVAL, "aw_jw_model: nesting deeper than %d levels", AW_JSON_MAX_DEPTH);
		return;
	}
	aw_jw_object(w);
	for (size_t i = 0; i < s->nfields; i++) {
		const aw_field *f = &s->fields[i];
		if (f->present && !obj[f->present - 1])
			continue;
		aw_jw_key(w, f->name);
		if (f->type == AW_OBJECT)
			jw_model_at(w, f->object, obj + f->offset, depth + 1);
		else if (f->type == AW_ARRAY) {
			const char *items;
			size_t n;
			memcpy(&items, obj + f->offset, sizeof items);
			memcpy(&n, obj + f->count_offset, sizeof n);
			aw_jw_array(w);
			for (size_t k = 0; k < n && items; k++) {
				if (f->items->type == AW_OBJECT)
					jw_model_at(w, f->items->object, items + k * f->items->size, depth + 1);
				else
					jw_value(w, f->items, items + k * f->items->size);
			}
			aw_jw_array_end(w);
		} else {
			jw_value(w, f, obj + f->offset);
		}
	}
	aw_jw_object_end(w);
}

static void jw_value(aw_jw *w, const aw_field *f, const char *p)
{
	switch (f->type) {
	case AW_STRING: {
		const char *s;
		memcpy(&s, p, sizeof s);
		if (s)
			aw_jw_string(w, s);
		else
			aw_jw_null(w);
		return;
	}
	case AW_INT:
		aw_jw_int(w, load_int(p, f->size));
		return;
	case AW_NUMBER:
		if (f->size == sizeof(float)) {
			float y;
			memcpy(&y, p, sizeof y);
			aw_jw_double(w, y);
		} else {
			double x;
			memcpy(&x, p, sizeof x);
			aw_jw_double(w, x);
		}
		return;
	case AW_BOOL:
		aw_jw_bool(w, *(const bool *)(const void *)p);
		return;
	case AW_ENUM: {
		long long i = load_int(p, f->size), n = 0;
		while (f->enum_values[n])
			n++;
		if (i < 0 || i >= n) {
			if (!w->err)
				w->err = aw_raise(-EINVAL, "aw_jw_model: field '%s': enum index %lld out of range", f->name, i);
			return;
		}
		aw_jw_string(w, f->enum_values[i]);
		return;
	}
	default:
		aw_jw_null(w);
		return;
	}
}

void aw_jw_model(aw_jw *w, const aw_schema *s, const void *obj)
{
	if (!w)
		return;
	if (!s || !obj) {
		if (!w->err)
			w->err = aw_raise(-EINVAL, "aw_jw_model: NULL schema or object");
		return;
	}
	jw_model_at(w, s, obj, 0);
}

int aw_http_model(aw_http_response *res, int status, const aw_schema *s, const void *obj)
{
	aw_jw *w = aw_http_json_begin(res, status);
	aw_jw_model(w, s, obj);
	return aw_http_json_end(w);
}

int aw_http_model_list(aw_http_response *res, int status, const aw_schema *s, const void *items, size_t n)
{
	aw_jw *w = aw_http_json_begin(res, status);
	aw_jw_array(w);
	for (size_t i = 0; i < n && s && items; i++)
		aw_jw_model(w, s, (const char *)items + i * s->size);
	aw_jw_array_end(w);
	return aw_http_json_end(w);
}

/* ---- the JSON depth guard ----------------------------------------------------------- */

size_t aw__json_depth(const char *p, size_t n, size_t limit)
{
	size_t d = 0, max = 0;
	bool in_str = false;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == '"') {
			in_str = true;
		} else if (ch == '[' || ch == '{') {
			if (++d > max) {
				max = d;
				if (max > limit)
					return max;
			}
		} else if ((ch == ']' || ch == '}') && d) {
			d--;
		}
	}
	return max;
}
