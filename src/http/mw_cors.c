/* SPDX-License-Identifier: MIT */
/*
 * The CORS middleware (awith/middleware.h, aw_http_mw_cors): answers
 * preflights itself and puts the Access-Control-* headers on the other
 * responses to allowed origins. The headers are set in the enter, before
 * the handler runs: they then reach every response (streamed ones, and
 * error responses, which keep what middleware set on entering).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct cors {
	char **origins;
	size_t norigins;
	bool any_origin;
	char *methods;
	bool any_method;
	char *headers;       /* NULL: none */
	bool any_header;
	char *expose;
	bool credentials;
	int max_age;
} cors;

static void cors_free(void *self)
{
	cors *o = self;
	if (!o)
		return;
	for (size_t i = 0; i < o->norigins; i++)
		free(o->origins[i]);
	free(o->origins);
	free(o->methods);
	free(o->headers);
	free(o->expose);
	free(o);
}

/* Is [p, p+n) one of the comma-separated items of list? */
static bool in_list(const char *list, const char *p, size_t n, bool nocase)
{
	if (!list)
		return false;
	for (const char *s = list; *s;) {
		while (*s == ' ' || *s == ',' || *s == '\t')
			s++;
		const char *e = s;
		while (*e && *e != ',')
			e++;
		const char *t = e;
		while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
			t--;
		if ((size_t)(t - s) == n && n && (nocase ? strncasecmp(s, p, n) : strncmp(s, p, n)) == 0)
			return true;
		s = e;
	}
	return false;
}

static bool origin_ok(const cors *o, aw_str origin)
{
	if (o->any_origin)
		return true;
	for (size_t i = 0; i < o->norigins; i++)
		if (strlen(o->origins[i]) == origin.len && memcmp(o->origins[i], origin.p, origin.len) == 0)
			return true;
	return false;
}

/* Headers a browser may send without asking (the Fetch standard's
 * CORS-safelisted request headers). */
static bool safelisted(const char *p, size_t n)
{
	return in_list("Accept, Accept-Language, Content-Language, Content-Type, Range", p, n, true);
}

static int set(aw_http_response *res, const char *name, const char *value)
{
	int rc = aw_http_set_header(res, name, value);
	if (rc)
		aw_error_clear();   /* no memory: the response goes without it */
	return rc;
}

static void set_origin(const cors *o, aw_http_response *res, aw_str origin)
{
	char v[512];
	if (o->any_origin && !o->credentials) {
		set(res, "Access-Control-Allow-Origin", "*");
	} else {
		snprintf(v, sizeof v, "%.*s", (int)origin.len, origin.p);
		set(res, "Access-Control-Allow-Origin", v);
		set(res, "Vary", "Origin");
	}
	if (o->credentials)
		set(res, "Access-Control-Allow-Credentials", "true");
}

static int preflight(const cors *o, aw_http_request *req, aw_http_response *res, aw_str origin, aw_str method)
{
	const char *why = NULL;
	aw_str hdrs = aw_http_header(req, "Access-Control-Request-Headers");
	if (!origin_ok(o, origin)) {
		why = "origin not allowed";
	} else if (!o->any_method && !in_list(o->methods, method.p, method.len, false)) {
		why = "method not allowed";
	} else if (hdrs.len && !o->any_header) {
		const char *s = hdrs.p, *end = hdrs.p + hdrs.len;
		while (s < end && !why) {
			while (s < end && (*s == ' ' || *s == ',' || *s == '\t'))
				s++;
			const char *e = s;
			while (e < end && *e != ',')
				e++;
			const char *t = e;
			while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
				t--;
			if (t > s && !safelisted(s, (size_t)(t - s)) && !in_list(o->headers, s, (size_t)(t - s), true))
				why = "header not allowed";
			s = e;
		}
	}
	if (why) {
		if (!o->any_origin || o->credentials)
			set(res, "Vary", "Origin");
		char d[64];
		snprintf(d, sizeof d, "CORS preflight refused: %s", why);
		aw_jw *w = aw_http_json_begin(res, 400);
		aw_jw_object(w);
		aw_jw_key(w, "detail");
		aw_jw_string(w, d);
		aw_jw_object_end(w);
		return aw_http_json_end(w);
	}
	set_origin(o, res, origin);
	char v[512];
	if (o->any_method) {
		snprintf(v, sizeof v, "%.*s", (int)method.len, method.p);
		set(res, "Access-Control-Allow-Methods", v);
	} else {
		set(res, "Access-Control-Allow-Methods", o->methods);
	}
	if (hdrs.len) {
		/* Echo what was asked (all of it was allowed). */
		snprintf(v, sizeof v, "%.*s", (int)hdrs.len, hdrs.p);
		set(res, "Access-Control-Allow-Headers", v);
	}
	if (o->max_age >= 0) {
		snprintf(v, sizeof v, "%d", o->max_age);
		set(res, "Access-Control-Max-Age", v);
	}
	return aw_http_send(res, 204, NULL, NULL, 0);
}

static int cors_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)state;
	const cors *o = self;
	aw_str origin = aw_http_header(req, "Origin");
	if (!origin.p)
		return 0;   /* not a cross-origin request */
	aw_str m = aw_http_method(req);
	aw_str want = aw_http_header(req, "Access-Control-Request-Method");
	if (m.len == 7 && memcmp(m.p, "OPTIONS", 7) == 0 && want.p)
		return preflight(o, req, res, origin, want);
	if (!origin_ok(o, origin)) {
		if (!o->any_origin)
			set(res, "Vary", "Origin");
		return 0;
	}
	set_origin(o, res, origin);
	if (o->expose)
		set(res, "Access-Control-Expose-Headers", o->expose);
	return 0;
}

static bool value_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

int aw_http_mw_cors(aw_http_mw **out, const aw_http_cors_opts *opts)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_http_mw_cors: out is NULL");
	*out = NULL;
	aw_http_cors_opts d = { 0 };
	if (!opts)
		opts = &d;
	const char *strs[] = { opts->methods, opts->headers, opts->expose_headers };
	for (int i = 0; i < 3; i++)
		if (strs[i] && !value_ok(strs[i]))
			return aw_raise(-EINVAL, "aw_http_mw_cors: a control character in '%s'", strs[i]);
	cors *o = aw__calloc(1, sizeof *o);
	if (!o)
		return aw_raise(-ENOMEM, "aw_http_mw_cors: no memory");
	size_t n = 0;
	while (opts->origins && opts->origins[n])
		n++;
	if (n && !(o->origins = aw__calloc(n, sizeof *o->origins)))
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const char *s = opts->origins[i];
		if (strcmp(s, "*") == 0) {
			o->any_origin = true;
			continue;
		}
		if (!value_ok(s) || !*s || strlen(s) > 400) {
			cors_free(o);
			return aw_raise(-EINVAL, "aw_http_mw_cors: '%s' is not an origin", s);
		}
		if (!(o->origins[o->norigins] = aw__strdup(s)))
			goto oom;
		o->norigins++;
	}
	const char *methods = opts->methods ? opts->methods : "GET, HEAD, POST";
	o->any_method = strcmp(methods, "*") == 0;
	if (!(o->methods = aw__strdup(methods)))
		goto oom;
	if (opts->headers) {
		o->any_header = strcmp(opts->headers, "*") == 0;
		if (!(o->headers = aw__strdup(opts->headers)))
			goto oom;
	}
	if (opts->expose_headers && !(o->expose = aw__strdup(opts->expose_headers)))
		goto oom;
	o->credentials = opts->credentials;
	o->max_age = opts->max_age == 0 ? 600 : opts->max_age;
	static const aw_http_mw_ops ops = { .name = "cors", .enter = cors_enter, .free = cors_free };
	return aw_http_mw_new(out, &ops, o);
oom:
	cors_free(o);
	return aw_raise(-ENOMEM, "aw_http_mw_cors: no memory");
}
