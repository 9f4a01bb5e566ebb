/* SPDX-License-Identifier: MIT */
/*
 * Results: rows and columns, typed getters, and conversion to JSON (as
 * jansson values or straight to text). Values arrive in PostgreSQL's text
 * format; the column's type OID decides how each converts.
 */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Built-in type OIDs (pg_type.h; stable across server versions). */
enum {
	OID_BOOL = 16, OID_BYTEA = 17, OID_NAME = 19, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23,
	OID_TEXT = 25, OID_OID = 26, OID_JSON = 114, OID_FLOAT4 = 700, OID_FLOAT8 = 701,
	OID_BPCHAR = 1042, OID_VARCHAR = 1043, OID_DATE = 1082, OID_TIMESTAMP = 1114,
	OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_UUID = 2950, OID_JSONB = 3802,
};

/* Array type -> element type, for the array types JSON knows. */
static unsigned array_elem(unsigned oid)
{
	switch (oid) {
	case 1000: return OID_BOOL;
	case 1001: return OID_BYTEA;
	case 1003: return OID_NAME;
	case 1005: return OID_INT2;
	case 1007: return OID_INT4;
	case 1016: return OID_INT8;
	case 1009: return OID_TEXT;
	case 1014: return OID_BPCHAR;
	case 1015: return OID_VARCHAR;
	case 1028: return OID_OID;
	case 199: return OID_JSON;
	case 3807: return OID_JSONB;
	case 1021: return OID_FLOAT4;
	case 1022: return OID_FLOAT8;
	case 1231: return OID_NUMERIC;
	case 2951: return OID_UUID;
	case 1182: return OID_DATE;
	case 1115: return OID_TIMESTAMP;
	case 1185: return OID_TIMESTAMPTZ;
	default: return 0;
	}
}

void aw_pg_result_free(aw_pg_result *r)
{
	if (r)
		PQclear(aw_pg_res(r));
}

int aw_pg_nrows(const aw_pg_result *r) { return r ? PQntuples(aw_pg_res(r)) : 0; }
int aw_pg_ncols(const aw_pg_result *r) { return r ? PQnfields(aw_pg_res(r)) : 0; }

const char *aw_pg_colname(const aw_pg_result *r, int col)
{
	return r && col >= 0 && col < PQnfields(aw_pg_res(r)) ? PQfname(aw_pg_res(r), col) : NULL;
}

int aw_pg_colnum(const aw_pg_result *r, const char *name)
{
	if (!r || !name)
		return -1;
	/* PQfnumber folds unquoted names to lower case; compare exactly
	 * first, so "Name" finds a column the query called "Name". */
	int n = PQnfields(aw_pg_res(r));
	for (int i = 0; i < n; i++)
		if (!strcmp(PQfname(aw_pg_res(r), i), name))
			return i;
	return PQfnumber(aw_pg_res(r), name);
}

unsigned aw_pg_coltype(const aw_pg_result *r, int col)
{
	return r && col >= 0 && col < PQnfields(aw_pg_res(r)) ? (unsigned)PQftype(aw_pg_res(r), col) : 0;
}

int64_t aw_pg_affected(const aw_pg_result *r)
{
	if (!r)
		return 0;
	const char *s = PQcmdTuples(aw_pg_res(r));
	return s && *s ? strtoll(s, NULL, 10) : 0;
}

static bool in_range(const aw_pg_result *r, int row, int col)
{
	return r && row >= 0 && col >= 0 && row < PQntuples(aw_pg_res(r)) && col < PQnfields(aw_pg_res(r));
}

bool aw_pg_isnull(const aw_pg_result *r, int row, int col)
{
	return !in_range(r, row, col) || PQgetisnull(aw_pg_res(r), row, col);
}

const char *aw_pg_text(const aw_pg_result *r, int row, int col)
{
	return aw_pg_isnull(r, row, col) ? NULL : PQgetvalue(aw_pg_res(r), row, col);
}

size_t aw_pg_len(const aw_pg_result *r, int row, int col)
{
	return aw_pg_isnull(r, row, col) ? 0 : (size_t)PQgetlength(aw_pg_res(r), row, col);
}

/* ---- typed getters ---------------------------------------------------------- */

static int cell(const aw_pg_result *r, int row, int col, const char **v)
{
	if (!in_range(r, row, col))
		return -EINVAL;
	if (PQgetisnull(aw_pg_res(r), row, col))
		return -AW_EPG_NULL;
	*v = PQgetvalue(aw_pg_res(r), row, col);
	return 0;
}

static bool is_int_type(unsigned t) { return t == OID_INT2 || t == OID_INT4 || t == OID_INT8 || t == OID_OID; }

int aw_pg_get_int(const aw_pg_result *r, int row, int col, int64_t *out)
{
	const char *v;
	int rc = cell(r, row, col, &v);
	if (rc)
		return rc;
	if (!is_int_type(aw_pg_coltype(r, col)))
		return -AW_EPG_TYPE;
	errno = 0;
	char *end;
	long long x = strtoll(v, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == v || *end)
		return -AW_EPG_TYPE;
	*out = x;
	return 0;
}

int aw_pg_get_double(const aw_pg_result *r, int row, int col, double *out)
{
	const char *v;
	int rc = cell(r, row, col, &v);
	if (rc)
		return rc;
	unsigned t = aw_pg_coltype(r, col);
	if (t != OID_FLOAT4 && t != OID_FLOAT8 && t != OID_NUMERIC && !is_int_type(t))
		return -AW_EPG_TYPE;
	errno = 0;
	char *end;
	double x = aw__strtod_c(v, &end);   /* PostgreSQL writes '.' whatever our locale */
	if (end == v || *end)
		return -AW_EPG_TYPE;
	if (errno == ERANGE && isinf(x))
		return -ERANGE;
	*out = x;
	return 0;
}

int aw_pg_get_bool(const aw_pg_result *r, int row, int col, bool *out)
{
	const char *v;
	int rc = cell(r, row, col, &v);
	if (rc)
		return rc;
	if (aw_pg_coltype(r, col) != OID_BOOL)
		return -AW_EPG_TYPE;
	if (!strcmp(v, "t"))
		*out = true;
	else if (!strcmp(v, "f"))
		*out = false;
	else
		return -AW_EPG_TYPE;
	return 0;
}

int aw_pg_get_str(const aw_pg_result *r, int row, int col, const char **out)
{
	return cell(r, row, col, out);
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

int aw_pg_get_bytea(const aw_pg_result *r, int row, int col, void **out, size_t *len)
{
	const char *v;
	int rc = cell(r, row, col, &v);
	if (rc)
		return rc;
	if (aw_pg_coltype(r, col) != OID_BYTEA)
		return -AW_EPG_TYPE;
	size_t n = (size_t)PQgetlength(aw_pg_res(r), row, col);
	if (n < 2 || v[0] != '\\' || v[1] != 'x' || (n - 2) % 2)
		return -AW_EPG_TYPE;   /* bytea_output = escape is not supported */
	unsigned char *b = aw__malloc((n - 2) / 2 + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 2, j = 0; i < n; i += 2, j++) {
		int hi = hexval(v[i]), lo = hexval(v[i + 1]);
		if (hi < 0 || lo < 0) {
			free(b);
			return -AW_EPG_TYPE;
		}
		b[j] = (unsigned char)(hi << 4 | lo);
	}
	*out = b;
	*len = (n - 2) / 2;
	return 0;
}

#define BY_NAME(fn, T)                                                            \
	int fn##_by(const aw_pg_result *r, int row, const char *name, T out)      \
	{                                                                         \
		int col = aw_pg_colnum(r, name);                                  \
		return col < 0 ? -EINVAL : fn(r, row, col, out);                  \
	}
BY_NAME(aw_pg_get_int, int64_t *)
BY_NAME(aw_pg_get_double, double *)
BY_NAME(aw_pg_get_bool, bool *)
BY_NAME(aw_pg_get_str, const char **)

/* ---- JSON ------------------------------------------------------------------------ */

/* Where converted values go: JSON text, or jansson values. One converter
 * (emit_value) drives both, so the type rules live in one place. */
typedef struct sink sink;
struct sink {
	void (*null)(sink *s);
	void (*boolean)(sink *s, bool v);
	void (*number)(sink *s, const char *v, size_t n);   /* valid JSON number */
	void (*string)(sink *s, const char *v, size_t n);
	void (*raw)(sink *s, const char *json, size_t n);   /* valid JSON */
	void (*array_begin)(sink *s);
	void (*array_end)(sink *s);
	int err;
};

/* Whether text is a JSON number (PostgreSQL's numeric/float output is,
 * except NaN and infinities, and numbers like "1e+20"). */
static bool json_number(const char *v, size_t n)
{
	size_t i = 0;
	if (i < n && v[i] == '-')
		i++;
	if (i >= n || !(v[i] >= '0' && v[i] <= '9'))
		return false;
	if (v[i] == '0' && i + 1 < n && v[i + 1] >= '0' && v[i + 1] <= '9')
		return false;
	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++;
	if (i < n && v[i] == '.') {
		i++;
		if (i >= n || !(v[i] >= '0' && v[i] <= '9'))
			return false;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
	}
	if (i < n && (v[i] == 'e' || v[i] == 'E')) {
		i++;
		if (i < n && (v[i] == '+' || v[i] == '-'))
			i++;
		if (i >= n || !(v[i] >= '0' && v[i] <= '9'))
			return false;
		while (i < n && v[i] >= '0' && v[i] <= '9')
			i++;
	}
	return i == n;
}

/* "2024-05-01 12:30:00.5+02" -> "2024-05-01T12:30:00.5+02:00". Years
 * past 9999 have more digits ("12345-06-07 08:09:10"): the date ends at
 * the first space, wherever that is. BC dates, infinity and other
 * DateStyles are passed on as the server's text. */
static void emit_timestamp(sink *s, const char *v, size_t n, bool tz)
{
	char buf[80];
	size_t y = 0;
	while (y < n && v[y] >= '0' && v[y] <= '9')
		y++;
	size_t d = y + 6;                       /* the space after "-MM-DD" */
	bool iso = y >= 4 && d < n && v[y] == '-' && v[y + 3] == '-' && v[d] == ' ' &&
		   !(n >= 3 && !memcmp(v + n - 3, " BC", 3));
	if (!iso || n >= sizeof buf - 4) {
		s->string(s, v, n);
		return;
	}
	memcpy(buf, v, n);
	buf[d] = 'T';
	size_t len = n;
	if (tz) {
		/* The offset starts at the last '+' or '-' after the time. */
		size_t k = n;
		while (k > d + 1 && buf[k - 1] != '+' && buf[k - 1] != '-')
			k--;
		if (k > d + 1 && n - k == 2) {          /* "+02" */
			memcpy(buf + n, ":00", 3);
			len = n + 3;
		}
	}
	s->string(s, buf, len);
}

static void emit_scalar(sink *s, unsigned type, const char *v, size_t n)
{
	switch (type) {
	case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID:
	case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC:
		if (json_number(v, n))
			s->number(s, v, n);
		else if (n == 8 && !memcmp(v, "Infinity", 8))
			s->string(s, v, n);
		else if (n == 9 && !memcmp(v, "-Infinity", 9))
			s->string(s, v, n);
		else if (n == 3 && !memcmp(v, "NaN", 3))
			s->string(s, v, n);
		else
			s->string(s, v, n);   /* e.g. "1e+20": keep the text */
		return;
	case OID_BOOL:
		s->boolean(s, n == 1 && v[0] == 't');
		return;
	case OID_JSON: case OID_JSONB:
		s->raw(s, v, n);
		return;
	case OID_TIMESTAMPTZ:
		emit_timestamp(s, v, n, true);
		return;
	case OID_TIMESTAMP:
		emit_timestamp(s, v, n, false);
		return;
	default:
		s->string(s, v, n);
		return;
	}
}

/* Parse one level of PostgreSQL's array text (starting at '{') and emit
 * its elements; nested arrays recurse. Returns the position after the
 * matching '}', or NULL if malformed. */
static const char *emit_array(sink *s, unsigned elem, const char *p, const char *end, int depth)
{
	if (depth > 32 || p >= end || *p != '{')
		return NULL;
	p++;
	s->array_begin(s);
	char *tmp = NULL;
	size_t tcap = 0;
	if (p < end && *p == '}') {
		s->array_end(s);
		return p + 1;
	}
	for (;;) {
		if (p >= end)
			goto bad;
		if (*p == '{') {
			p = emit_array(s, elem, p, end, depth + 1);
			if (!p)
				goto bad;
		} else if (*p == '"') {
			p++;
			size_t tl = 0;
			while (p < end && *p != '"') {
				if (*p == '\\' && p + 1 < end)
					p++;
				if (tl + 1 >= tcap) {
					size_t nc = tcap ? tcap * 2 : 64;
					char *t = aw__realloc(tmp, nc);
					if (!t) {
						s->err = -ENOMEM;
						goto bad;
					}
					tmp = t;
					tcap = nc;
				}
				tmp[tl++] = *p++;
			}
			if (p >= end)
				goto bad;
			p++;
			emit_scalar(s, elem, tmp ? tmp : "", tl);
		} else {
			const char *q = p;
			while (p < end && *p != ',' && *p != '}')
				p++;
			size_t len = (size_t)(p - q);
			if (len == 4 && !strncasecmp(q, "NULL", 4))
				s->null(s);
			else
				emit_scalar(s, elem, q, len);
		}
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == '}') {
			free(tmp);
			s->array_end(s);
			return p + 1;
		}
		goto bad;
	}
bad:
	free(tmp);
	return NULL;
}

static void emit_value(sink *s, const aw_pg_result *r, int row, int col)
{
	if (PQgetisnull(aw_pg_res(r), row, col)) {
		s->null(s);
		return;
	}
	const char *v = PQgetvalue(aw_pg_res(r), row, col);
	size_t n = (size_t)PQgetlength(aw_pg_res(r), row, col);
	unsigned t = aw_pg_coltype(r, col);
	unsigned elem = array_elem(t);
	if (!elem) {
		emit_scalar(s, t, v, n);
		return;
	}
	const char *p = v, *end = v + n;
	if (p < end && *p == '[') {          /* "[0:1]={...}": explicit bounds */
		const char *eq = memchr(p, '=', n);
		p = eq ? eq + 1 : end;
	}
	/* The whole text is one array: anything after its '}' is malformed
	 * too, not something to drop silently. */
	const char *after = emit_array(s, elem, p, end, 0);
	if ((!after || after != end) && !s->err)
		s->err = -AW_EPG_TYPE;
}

/* ---- the text sink ------------------------------------------------------------ */

typedef struct text_sink {
	sink s;
	aw_pg_buf b;
	bool first;              /* no comma before the next array element */
} text_sink;

static bool tb_room(aw_pg_buf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	size_t nc = b->cap ? b->cap : 256;
	while (nc < b->len + n + 1)
		nc *= 2;
	char *p = aw__realloc(b->p, nc);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = nc;
	return true;
}

static void tb_put(aw_pg_buf *b, const char *s, size_t n)
{
	if (tb_room(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void tb_sep(text_sink *t)
{
	if (!t->first)
		tb_put(&t->b, ",", 1);
	t->first = false;
}

static void tb_string_body(aw_pg_buf *b, const char *v, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (!tb_room(b, n + 2))
		return;
	b->p[b->len++] = '"';
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && (unsigned char)v[j] >= 0x20 && v[j] != '"' && v[j] != '\\')
			j++;
		tb_put(b, v + i, j - i);
		if (j >= n)
			break;
		unsigned char ch = (unsigned char)v[j];
		char esc[6];
		size_t el = 2;
		esc[0] = '\\';
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
			esc[4] = hex[ch >> 4]; esc[5] = hex[ch & 15];
			el = 6;
		}
		tb_put(b, esc, el);
		i = j + 1;
	}
	tb_put(b, "\"", 1);
}

static void ts_null(sink *s) { text_sink *t = (text_sink *)s; tb_sep(t); tb_put(&t->b, "null", 4); }
static void ts_bool(sink *s, bool v)
{
	text_sink *t = (text_sink *)s;
	tb_sep(t);
	tb_put(&t->b, v ? "true" : "false", v ? 4 : 5);
}
static void ts_raw(sink *s, const char *v, size_t n) { text_sink *t = (text_sink *)s; tb_sep(t); tb_put(&t->b, v, n); }
static void ts_string(sink *s, const char *v, size_t n) { text_sink *t = (text_sink *)s; tb_sep(t); tb_string_body(&t->b, v, n); }
static void ts_abegin(sink *s) { text_sink *t = (text_sink *)s; tb_sep(t); tb_put(&t->b, "[", 1); t->first = true; }
static void ts_aend(sink *s) { text_sink *t = (text_sink *)s; tb_put(&t->b, "]", 1); t->first = false; }

static void text_sink_init(text_sink *t)
{
	memset(t, 0, sizeof *t);
	t->s = (sink){ ts_null, ts_bool, ts_raw, ts_string, ts_raw, ts_abegin, ts_aend, 0 };
}

int aw_pg_result_json_text(const aw_pg_result *r, char **out, size_t *len)
{
	*out = NULL;
	if (len)
		*len = 0;
	if (!r)
		return aw_raise(-EINVAL, "aw_pg_result_json_text: result is NULL");
	text_sink t;
	text_sink_init(&t);
	int rows = aw_pg_nrows(r), cols = aw_pg_ncols(r);
	/* Keys once, already quoted. */
	tb_room(&t.b, (size_t)rows * (size_t)cols * 16 + 2);
	tb_put(&t.b, "[", 1);
	for (int i = 0; i < rows; i++) {
		tb_put(&t.b, i ? ",{" : "{", i ? 2 : 1);
		for (int j = 0; j < cols; j++) {
			if (j)
				tb_put(&t.b, ",", 1);
			const char *name = PQfname(aw_pg_res(r), j);
			tb_string_body(&t.b, name, strlen(name));
			tb_put(&t.b, ":", 1);
			t.first = true;
			emit_value(&t.s, r, i, j);
		}
		tb_put(&t.b, "}", 1);
	}
	tb_put(&t.b, "]", 1);
	if (t.b.oom || t.s.err) {
		free(t.b.p);
		int code = t.b.oom ? -ENOMEM : t.s.err;
		return aw_raise(code, "cannot convert the result to JSON: %s",
				code == -ENOMEM ? "out of memory" : "a malformed array value");
	}
	t.b.p[t.b.len] = 0;
	*out = t.b.p;
	if (len)
		*len = t.b.len;
	return 0;
}

/* ---- the jansson sink ----------------------------------------------------------- */

typedef struct json_sink {
	sink s;
	json_t *stack[34];       /* open arrays; [0] is the slot for the value */
	int depth;
	json_t *value;           /* the finished top-level value */
} json_sink;

static void js_put(json_sink *j, json_t *v)
{
	if (!v) {
		j->s.err = -ENOMEM;
		return;
	}
	if (j->depth > 0) {
		if (json_array_append_new(j->stack[j->depth - 1], v) < 0)
			j->s.err = -ENOMEM;
	} else {
		json_decref(j->value);
		j->value = v;
	}
}

static void js_null(sink *s) { js_put((json_sink *)s, json_null()); }
static void js_bool(sink *s, bool v) { js_put((json_sink *)s, json_boolean(v)); }

static void js_number(sink *s, const char *v, size_t n)
{
	char buf[64];
	json_t *x = NULL;
	bool integral = !memchr(v, '.', n) && !memchr(v, 'e', n) && !memchr(v, 'E', n);
	if (n < sizeof buf) {
		memcpy(buf, v, n);
		buf[n] = 0;
		errno = 0;
		if (integral) {
			long long i = strtoll(buf, NULL, 10);
			if (errno != ERANGE)
				x = json_integer(i);
		}
		if (!x) {
			errno = 0;
			double d = aw__strtod_c(buf, NULL);
			x = json_real(d);
		}
	} else {
		/* Longer than any double: keep the digits as a string rather
		 * than lose them. */
		x = json_stringn(v, n);
	}
	js_put((json_sink *)s, x);
}

static void js_string(sink *s, const char *v, size_t n) { js_put((json_sink *)s, json_stringn(v, n)); }

static void js_raw(sink *s, const char *v, size_t n)
{
	json_error_t e;
	json_t *x = json_loadb(v, n, JSON_DECODE_ANY, &e);
	if (!x)
		x = json_stringn(v, n);   /* not JSON after all (cannot happen for json/jsonb) */
	js_put((json_sink *)s, x);
}

static void js_abegin(sink *s)
{
	json_sink *j = (json_sink *)s;
	json_t *a = json_array();
	if (!a || j->depth >= 33) {
		json_decref(a);
		s->err = a ? -AW_EPG_TYPE : -ENOMEM;
		return;
	}
	j->stack[j->depth++] = a;
}

static void js_aend(sink *s)
{
	json_sink *j = (json_sink *)s;
	if (j->depth <= 0)
		return;
	json_t *a = j->stack[--j->depth];
	js_put(j, a);
}

static json_t *row_object(const aw_pg_result *r, int row, int *err)
{
	json_t *obj = json_object();
	if (!obj) {
		*err = -ENOMEM;
		return NULL;
	}
	int cols = aw_pg_ncols(r);
	for (int j = 0; j < cols; j++) {
		json_sink js = { .s = { js_null, js_bool, js_number, js_string, js_raw, js_abegin, js_aend, 0 } };
		emit_value(&js.s, r, row, j);
		while (js.depth > 0)
			json_decref(js.stack[--js.depth]);
		if (js.s.err || !js.value || json_object_set_new(obj, PQfname(aw_pg_res(r), j), js.value) < 0) {
			*err = js.s.err ? js.s.err : -ENOMEM;
			if (!js.s.err)
				json_decref(js.value);
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

int aw_pg_row_to_json(const aw_pg_result *r, int row, json_t **out)
{
	*out = NULL;
	if (!r || row < 0 || row >= aw_pg_nrows(r))
		return aw_raise(-EINVAL, "aw_pg_row_to_json: row %d out of range", row);
	int err = 0;
	json_t *o = row_object(r, row, &err);
	if (!o)
		return aw_raise(err, "cannot convert row %d to JSON", row);
	*out = o;
	return 0;
}

int aw_pg_result_to_json(const aw_pg_result *r, json_t **out)
{
	*out = NULL;
	if (!r)
		return aw_raise(-EINVAL, "aw_pg_result_to_json: result is NULL");
	json_t *a = json_array();
	if (!a)
		return aw_raise(-ENOMEM, "aw_pg_result_to_json: out of memory");
	int rows = aw_pg_nrows(r);
	for (int i = 0; i < rows; i++) {
		int err = 0;
		json_t *o = row_object(r, i, &err);
		if (!o || json_array_append_new(a, o) < 0) {
			json_decref(a);
			return aw_raise(err ? err : -ENOMEM, "cannot convert row %d to JSON", i);
		}
	}
	*out = a;
	return 0;
}
