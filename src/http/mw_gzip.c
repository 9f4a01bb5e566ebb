/* SPDX-License-Identifier: MIT */
/*
 * The compression middleware (awith/middleware.h, aw_http_mw_gzip): gzip
 * or deflate (zlib) of held responses, in its exit.
 *
 * A z_stream costs a deflateInit (about 270 KB of window and hash tables
 * at the default memLevel): one per thread and coding, reset per response
 * (deflateReset), so a response costs the compression itself only. The
 * streams are freed when their thread ends.
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

typedef struct gz {
	size_t min_size;
	int level;
} gz;

enum { CODING_NONE, CODING_GZIP, CODING_DEFLATE };

/* ---- Accept-Encoding -------------------------------------------------------------- */

/* q of one element's parameters ("q=0.5"); 1 without one; -1 if malformed
 * (the element is then ignored). Thousandths. */
static int parse_q(const char *p, const char *end)
{
	while (p < end) {
		while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
			p++;
		if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
			p += 2;
			if (p >= end || (*p != '0' && *p != '1'))
				return -1;
			int q = (*p - '0') * 1000;
			p++;
			if (p < end && *p == '.') {
				p++;
				int scale = 100;
				while (p < end && *p >= '0' && *p <= '9' && scale) {
					q += (*p - '0') * scale;
					scale /= 10;
					p++;
				}
			}
			return q > 1000 ? -1 : q;
		}
		while (p < end && *p != ';')
			p++;
	}
	return 1000;
}

/* The coding to answer with (RFC 9110 12.5.3): the highest q above 0
 * among gzip (x-gzip) and deflate, "*" standing for those not named;
 * gzip at equal q. */
static int choose_coding(aw_str ae)
{
	if (!ae.p)
		return CODING_NONE;
	int qg = -1, qd = -1, qstar = -1;
	const char *s = ae.p, *end = ae.p + ae.len;
	while (s < end) {
		while (s < end && (*s == ' ' || *s == ',' || *s == '\t'))
			s++;
		const char *e = s;
		while (e < end && *e != ',')
			e++;
		const char *t = s;
		while (t < e && *t != ';' && *t != ' ' && *t != '\t')
			t++;
		size_t n = (size_t)(t - s);
		int q = parse_q(t, e);
		if (q >= 0) {
			if ((n == 4 && strncasecmp(s, "gzip", 4) == 0) || (n == 6 && strncasecmp(s, "x-gzip", 6) == 0))
				qg = q > qg ? q : qg;
			else if (n == 7 && strncasecmp(s, "deflate", 7) == 0)
				qd = q > qd ? q : qd;
			else if (n == 1 && *s == '*')
				qstar = q;
		}
		s = e;
	}
	if (qg < 0)
		qg = qstar;
	if (qd < 0)
		qd = qstar;
	if (qg > 0 && qg >= qd)
		return CODING_GZIP;
	if (qd > 0)
		return CODING_DEFLATE;
	return CODING_NONE;
}

/* ---- what is worth compressing ---------------------------------------------------- */

static bool prefix(aw_str s, const char *p)
{
	size_t n = strlen(p);
	return s.len >= n && strncasecmp(s.p, p, n) == 0;
}

/* Content types that are compressed already (or opaque). */
static bool compressible(aw_str ct)
{
	if (!ct.p)
		return true;   /* no type: as text */
	if (prefix(ct, "image/"))
		return prefix(ct, "image/svg+xml");
	if (prefix(ct, "audio/") || prefix(ct, "video/") || prefix(ct, "font/woff"))
		return false;
	static const char *const packed[] = {
		"application/zip", "application/gzip", "application/x-gzip", "application/zstd",
		"application/x-bzip2", "application/x-xz", "application/x-7z-compressed",
		"application/octet-stream", "application/x-rar-compressed", "application/vnd.rar",
	};
	for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++)
		if (prefix(ct, packed[i]))
			return false;
	return true;
}

/* ---- zlib streams, one per thread and coding ------------------------------------- */

typedef struct zstreams {
	z_stream s[2];
	bool ready[2];
	int level[2];
} zstreams;

static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;

static void zstreams_free(void *p)
{
	zstreams *z = p;
	for (int i = 0; i < 2; i++)
		if (z->ready[i])
			deflateEnd(&z->s[i]);
	free(z);
}

static void zkey_make(void)
{
	if (pthread_key_create(&zkey, zstreams_free))
		zkey = (pthread_key_t)-1;
}

/* A reset stream for the coding and level; NULL when out of memory. */
static z_stream *zstream(int coding, int level)
{
	pthread_once(&zonce, zkey_make);
	if (zkey == (pthread_key_t)-1)
		return NULL;
	zstreams *z = pthread_getspecific(zkey);
	if (!z) {
		if (!(z = calloc(1, sizeof *z)))
			return NULL;
		if (pthread_setspecific(zkey, z)) {
			free(z);
			return NULL;
		}
	}
	int i = coding == CODING_GZIP ? 0 : 1;
	if (z->ready[i] && z->level[i] != level) {
		deflateEnd(&z->s[i]);
		z->ready[i] = false;
	}
	if (!z->ready[i]) {
		memset(&z->s[i], 0, sizeof z->s[i]);
		/* windowBits 15 + 16: a gzip wrapper; 15: zlib's (HTTP's
		 * "deflate" is the zlib format, RFC 9110 8.4.1.2). */
		if (deflateInit2(&z->s[i], level, Z_DEFLATED, coding == CODING_GZIP ? 31 : 15, 8, Z_DEFAULT_STRATEGY) !=
		    Z_OK)
			return NULL;
		z->ready[i] = true;
		z->level[i] = level;
		return &z->s[i];
	}
	if (deflateReset(&z->s[i]) != Z_OK)
		return NULL;
	return &z->s[i];
}

/* ---- the exit ------------------------------------------------------------------ */

static void add_header(aw_http_response *res, const char *name, const char *value)
{
	if (aw__http_header_put(res, name, strlen(name), value, strlen(value)))
		aw_error_clear();
}

/* "Vary: Accept-Encoding", unless a Vary already names it (or "*"). */
static void add_vary(aw_http_response *res)
{
	aw_str v = aw_http_response_header(res, "Vary");
	if (v.p)
		for (size_t i = 0; i + 1 <= v.len; i++)
			if (v.p[i] == '*' || (v.len - i >= 15 && strncasecmp(v.p + i, "accept-encoding", 15) == 0))
				return;
	add_header(res, "Vary", "Accept-Encoding");
}

static int gz_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)state;
	const gz *o = self;
	if (!aw_http_response_editable(res))
		return err;
	int status = aw_http_response_status(res);
	if (status < 200 || status == 204 || status == 206 || status == 304)
		return err;
	const char *body;
	size_t len;
	if (aw_http_response_body(res, &body, &len)) {
		aw_error_clear();
		return err;
	}
	if (len < o->min_size || aw_http_response_header(res, "Content-Encoding").p ||
	    !compressible(aw_http_response_header(res, "Content-Type")))
		return err;
	aw_str cc = aw_http_response_header(res, "Cache-Control");
	if (cc.p && memmem(cc.p, cc.len, "no-transform", 12))
		return err;
	add_vary(res);
	int coding = choose_coding(aw_http_header(req, "Accept-Encoding"));
	if (coding == CODING_NONE)
		return err;
	z_stream *z = zstream(coding, o->level);
	if (!z)
		return err;   /* no memory: send it as it is */
	uLong bound = deflateBound(z, (uLong)len);
	char *outp = aw__arena_alloc(&req->conn->arena, bound);
	if (!outp)
		return err;
	z->next_in = (Bytef *)(uintptr_t)body;
	z->avail_in = (uInt)len;
	z->next_out = (Bytef *)outp;
	z->avail_out = (uInt)bound;
	if (deflate(z, Z_FINISH) != Z_STREAM_END)
		return err;
	size_t n = (size_t)z->total_out;
	if (n >= len)
		return err;   /* not smaller: the original is the better answer */
	if (aw_http_response_set_body(res, outp, n)) {
		aw_error_clear();
		return err;
	}
	add_header(res, "Content-Encoding", coding == CODING_GZIP ? "gzip" : "deflate");
	aw_str etag = aw_http_response_header(res, "ETag");
	if (etag.p && etag.len >= 2 && etag.len < 250 && etag.p[0] == '"') {
		/* Another representation: a strong validator becomes weak. */
		char w[256];
		snprintf(w, sizeof w, "W/%.*s", (int)etag.len, etag.p);
		if (aw_http_response_remove_header(res, "ETag"))
			aw_error_clear();
		add_header(res, "ETag", w);
	}
	return err;
}

int aw_http_mw_gzip(aw_http_mw **out, const aw_http_gzip_opts *opts)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_gzip: out is NULL");
	*out = NULL;
	int level = opts && opts->level ? opts->level : 6;
	if (level < 1 || level > 9)
		return aw_raise(-EINVAL, "aw_http_mw_gzip: level %d (1-9)", level);
	gz *o = aw__calloc(1, sizeof *o);
	if (!o)
		return aw_raise(-ENOMEM, "aw_http_mw_gzip: no memory");
	o->min_size = opts && opts->min_size ? opts->min_size : 1024;
	o->level = level;
	static const aw_http_mw_ops ops = { .name = "gzip", .exit = gz_exit, .free = free };
	return aw_http_mw_new(out, &ops, o);
}
