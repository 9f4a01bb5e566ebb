/* SPDX-License-Identifier: MIT */
/*
 * The OpenAPI 3.1 document of an app (aw_app_openapi): its routes (from
 * the router), and for routes added with a spec (schema.c) their
 * parameters, body and response models, named schemas as components, and
 * the 422 answer (FastAPI's HTTPValidationError). Built with jansson on
 * the first request and kept (published with a compare-and-swap, so loops
 * on several threads may race to build it: one wins, the others free
 * theirs). The docs page (openapi_page.html, embedded at build time) is
 * plain HTML and JavaScript that fetches the document and renders it.
 */
#include "internal.h"
#include "awith/schema.h"

#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

extern const char aw__openapi_page_html[];
extern const size_t aw__openapi_page_html_len;

struct aw_openapi {
	char *title, *version, *path, *docs_path;
	char *page;
	size_t page_len;
	_Atomic(char *) doc;
};

static int doc_handler(aw_http_request *req, aw_http_response *res, void *ud);
static int page_handler(aw_http_request *req, aw_http_response *res, void *ud);

void aw__http_openapi_free(aw_app *app)
{
	struct aw_openapi *o = app->openapi;
	if (!o)
		return;
	free(o->title);
	free(o->version);
	free(o->path);
	free(o->docs_path);
	free(o->page);
	free(atomic_load(&o->doc));
	free(o);
	app->openapi = NULL;
}

/* ---- building the document ----------------------------------------------------------- */

typedef struct comp {
	const aw_schema *s;
	char *name;
} comp;

typedef struct build {
	json_t *schemas;   /* components.schemas */
	comp *comps;
	size_t ncomps, cap;
	int err;
} build;

typedef struct rt {
	const aw_route *route;
	const aw_route_spec *spec;
} rt;

typedef struct rtlist {
	rt *v;
	size_t n, cap;
	const aw_app *app;
	bool oom;
} rtlist;

static json_t *schema_json(build *b, const aw_schema *s);

static json_t *num_json(double x)
{
	if (x == floor(x) && fabs(x) < 9e15)
		return json_integer((json_int_t)x);
	return json_real(x);
}

static void set(json_t *o, const char *k, json_t *v)
{
	json_object_set_new(o, k, v);
}

static json_t *field_json(build *b, const aw_field *f)
{
	json_t *j;
	switch (f->type) {
	case AW_STRING:
		j = json_pack("{s:s}", "type", "string");
		if (f->min_len)
			set(j, "minLength", json_integer((json_int_t)f->min_len));
		if (f->max_len)
			set(j, "maxLength", json_integer((json_int_t)f->max_len));
		break;
	case AW_INT:
		j = json_pack("{s:s, s:s}", "type", "integer", "format", f->size <= 4 ? "int32" : "int64");
		if (f->has_min)
			set(j, "minimum", num_json(f->min));
		if (f->has_max)
			set(j, "maximum", num_json(f->max));
		break;
	case AW_NUMBER:
		j = json_pack("{s:s, s:s}", "type", "number", "format", f->size == sizeof(float) ? "float" : "double");
		if (f->has_min)
			set(j, "minimum", num_json(f->min));
		if (f->has_max)
			set(j, "maximum", num_json(f->max));
		break;
	case AW_BOOL:
		j = json_pack("{s:s}", "type", "boolean");
		break;
	case AW_ENUM: {
		json_t *vals = json_array();
		for (size_t i = 0; f->enum_values[i]; i++)
			json_array_append_new(vals, json_string(f->enum_values[i]));
		j = json_pack("{s:s, s:o}", "type", "string", "enum", vals);
		break;
	}
	case AW_OBJECT:
		j = schema_json(b, f->object);
		break;
	case AW_ARRAY:
		j = json_pack("{s:s, s:o}", "type", "array", "items", field_json(b, f->items));
		if (f->min_len)
			set(j, "minItems", json_integer((json_int_t)f->min_len));
		if (f->max_len)
			set(j, "maxItems", json_integer((json_int_t)f->max_len));
		break;
	default:
		j = json_object();
		break;
	}
	if (!j) {
		b->err = -ENOMEM;
		return json_object();
	}
	if (f->description && f->type != AW_OBJECT)
		set(j, "description", json_string(f->description));
	return j;
}

static json_t *object_body(build *b, const aw_schema *s, const char *title)
{
	json_t *props = json_object(), *req = json_array();
	for (size_t i = 0; i < s->nfields; i++) {
		const aw_field *f = &s->fields[i];
		set(props, f->name, field_json(b, f));
		if (f->required)
			json_array_append_new(req, json_string(f->name));
	}
	json_t *j = json_pack("{s:s, s:o}", "type", "object", "properties", props);
	if (!j) {
		b->err = -ENOMEM;
		json_decref(req);
		return json_object();
	}
	if (title)
		set(j, "title", json_string(title));
	if (s->description)
		set(j, "description", json_string(s->description));
	if (json_array_size(req))
		set(j, "required", req);
	else
		json_decref(req);
	if (s->extra == AW_EXTRA_FORBID)
		set(j, "additionalProperties", json_false());
	return j;
}

/* A named schema: a $ref to its component (registered on first use, under
 * a unique name); an anonymous one: inline. */
static json_t *schema_json(build *b, const aw_schema *s)
{
	if (!s->name)
		return object_body(b, s, NULL);
	const char *name = NULL;
	for (size_t i = 0; i < b->ncomps; i++)
		if (b->comps[i].s == s)
			name = b->comps[i].name;
	if (!name) {
		char buf[128];
		snprintf(buf, sizeof buf, "%s", s->name);
		/* component names: ^[a-zA-Z0-9._-]+$ */
		for (char *p = buf; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			      *p == '.' || *p == '_' || *p == '-'))
				*p = '_';
		for (int k = 2; json_object_get(b->schemas, buf); k++)
			snprintf(buf, sizeof buf, "%.100s_%d", s->name, k);
		if (b->ncomps == b->cap) {
			size_t cap = b->cap ? 2 * b->cap : 8;
			comp *v = realloc(b->comps, cap * sizeof *v);
			if (!v) {
				b->err = -ENOMEM;
				return json_object();
			}
			b->comps = v;
			b->cap = cap;
		}
		char *dup = strdup(buf);
		if (!dup) {
			b->err = -ENOMEM;
			return json_object();
		}
		b->comps[b->ncomps++] = (comp){ s, dup };
		name = dup;
		/* registered before its body is built: a schema that contains
		 * itself (through an array) refers to itself */
		set(b->schemas, name, json_object());
		set(b->schemas, name, object_body(b, s, name));
	}
	char ref[200];
	snprintf(ref, sizeof ref, "#/components/schemas/%s", name);
	return json_pack("{s:s}", "$ref", ref);
}

static void collect(const aw_route *r, void *arg)
{
	rtlist *l = arg;
	if (r->method[0] == '*' || r->fn == doc_handler || r->fn == page_handler)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		rt *v = realloc(l->v, cap * sizeof *v);
		if (!v) {
			l->oom = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	const aw_route_spec *spec = NULL;
	if (r->fn == aw__http_spec_handler)
		spec = ((const aw_http_spec_route *)r->ud)->spec;
	l->v[l->n++] = (rt){ r, spec };
}

static int rt_cmp(const void *a, const void *b)
{
	const rt *x = a, *y = b;
	int c = strcmp(x->route->path, y->route->path);
	return c ? c : strcmp(x->route->method, y->route->method);
}

static json_t *operation(build *b, const rt *r)
{
	const aw_route *route = r->route;
	const aw_route_spec *spec = r->spec;
	json_t *op = json_object();
	char opid[300];
	size_t n = 0;
	for (const char *p = route->method; *p && n < 40; p++)
		opid[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	for (const char *p = route->path; *p && n < sizeof opid - 1; p++) {
		char ch = *p;
		opid[n++] = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ? ch : '_';
	}
	opid[n] = 0;
	if (spec && spec->summary)
		set(op, "summary", json_string(spec->summary));
	if (spec && spec->description)
		set(op, "description", json_string(spec->description));
	if (spec && spec->tag)
		set(op, "tags", json_pack("[s]", spec->tag));
	set(op, "operationId", json_string(opid));

	json_t *params = json_array();
	if (spec && spec->params) {
		for (size_t i = 0; i < spec->params->nfields; i++) {
			const aw_field *f = &spec->params->fields[i];
			json_t *p = json_pack("{s:s, s:s, s:b, s:o}", "name", f->name, "in",
					      f->in == AW_IN_PATH ? "path" : "query", "required",
					      f->in == AW_IN_PATH || f->required, "schema", field_json(b, f));
			if (f->description)
				set(p, "description", json_string(f->description));
			json_array_append_new(params, p);
		}
	} else {
		for (unsigned i = 0; i < route->nnames; i++)
			json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", route->names[i], "in",
								"path", "required", 1, "schema", "type", "string"));
	}
	if (json_array_size(params))
		set(op, "parameters", params);
	else
		json_decref(params);

	if (spec && spec->body)
		set(op, "requestBody",
		    json_pack("{s:b, s:{s:{s:o}}}", "required", 1, "content", "application/json", "schema",
			      schema_json(b, spec->body)));

	json_t *responses = json_object();
	int status = spec && spec->status ? spec->status : 200;
	char code[8];
	snprintf(code, sizeof code, "%d", status);
	json_t *ok = json_pack("{s:s}", "description", "Successful Response");
	if (spec && spec->response && status != 204) {
		json_t *sch = schema_json(b, spec->response);
		if (spec->response_list)
			sch = json_pack("{s:s, s:o}", "type", "array", "items", sch);
		set(ok, "content", json_pack("{s:{s:o}}", "application/json", "schema", sch));
	}
	set(responses, code, ok);
	if (spec && (spec->params || spec->body))
		set(responses, "422",
		    json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", "Validation Error", "content", "application/json",
			      "schema", "$ref", "#/components/schemas/HTTPValidationError"));
	set(op, "responses", responses);
	return op;
}

static char *build_doc(aw_app *app)
{
	struct aw_openapi *o = app->openapi;
	rtlist l = { .app = app };
	aw__router_each(&app->router, collect, &l);
	if (l.oom) {
		free(l.v);
		return NULL;
	}
	if (l.n)
		qsort(l.v, l.n, sizeof *l.v, rt_cmp);
	build b = { .schemas = json_object() };
	set(b.schemas, "ValidationError",
	    json_pack("{s:s, s:s, s:{s:{s:s, s:{s:[{s:s}, {s:s}]}}, s:{s:s}, s:{s:s}}, s:[s, s, s]}", "title",
		      "ValidationError", "type", "object", "properties", "loc", "type", "array", "items", "anyOf", "type",
		      "string", "type", "integer", "msg", "type", "string", "type", "type", "string", "required", "loc",
		      "msg", "type"));
	set(b.schemas, "HTTPValidationError",
	    json_pack("{s:s, s:s, s:{s:{s:s, s:{s:s}}}}", "title", "HTTPValidationError", "type", "object",
		      "properties", "detail", "type", "array", "items", "$ref", "#/components/schemas/ValidationError"));
	json_t *paths = json_object();
	for (size_t i = 0; i < l.n; i++) {
		json_t *item = json_object_get(paths, l.v[i].route->path);
		if (!item) {
			item = json_object();
			set(paths, l.v[i].route->path, item);
		}
		char m[40];
		size_t k = 0;
		for (const char *p = l.v[i].route->method; *p && k < sizeof m - 1; p++)
			m[k++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		m[k] = 0;
		/* OpenAPI knows these methods; others are left out */
		static const char *const known[] = { "get", "put", "post", "delete", "options", "head", "patch", "trace" };
		bool ok = false;
		for (size_t q = 0; q < sizeof known / sizeof known[0]; q++)
			ok |= strcmp(known[q], m) == 0;
		if (ok)
			set(item, m, operation(&b, &l.v[i]));
	}
	json_t *doc = json_pack("{s:s, s:{s:s, s:s}, s:o, s:{s:o}}", "openapi", "3.1.0", "info", "title", o->title,
				"version", o->version, "paths", paths, "components", "schemas", b.schemas);
	char *text = doc && !b.err ? json_dumps(doc, JSON_INDENT(1) | JSON_ENSURE_ASCII) : NULL;
	json_decref(doc);
	for (size_t i = 0; i < b.ncomps; i++)
		free(b.comps[i].name);
	free(b.comps);
	free(l.v);
	return text;
}

static const char *doc_text(aw_app *app)
{
	struct aw_openapi *o = app->openapi;
	char *d = atomic_load(&o->doc);
	if (d)
		return d;
	char *mine = build_doc(app);
	if (!mine)
		return NULL;
	char *expected = NULL;
	if (!atomic_compare_exchange_strong(&o->doc, &expected, mine)) {
		free(mine);
		return expected;
	}
	return mine;
}

/* ---- serving ----------------------------------------------------------------------- */

static int doc_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	const char *d = doc_text(ud);
	if (!d)
		return aw_raise(-ENOMEM, "openapi: out of memory building the document");
	return aw_http_send(res, 200, "application/json", d, strlen(d));
}

static int page_handler(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	struct aw_openapi *o = ((aw_app *)ud)->openapi;
	int rc = aw_http_set_header(res, "Content-Security-Policy",
				    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
				    "connect-src 'self'");
	if (rc)
		return rc;
	return aw_http_send(res, 200, "text/html; charset=utf-8", o->page, o->page_len);
}

static bool path_ok(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) > 200)
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("/_.~-", *p)))
			return false;
	return true;
}

/* The page with every placeholder replaced by the document's path
 * (checked by path_ok: nothing to escape). */
static char *make_page(const char *doc_path, size_t *len)
{
	static const char ph[] = "__OPENAPI_PATH__";
	const char *src = aw__openapi_page_html, *end = src + aw__openapi_page_html_len;
	size_t pl = strlen(doc_path);
	aw_buf b = { 0 };
	int bad = 0;
	for (;;) {
		const char *at = memmem(src, (size_t)(end - src), ph, sizeof ph - 1);
		if (!at)
			break;
		bad |= aw__buf_put(&b, src, (size_t)(at - src));
		bad |= aw__buf_put(&b, doc_path, pl);
		src = at + sizeof ph - 1;
	}
	bad |= aw__buf_put(&b, src, (size_t)(end - src));
	if (bad) {
		aw__buf_free(&b);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

static struct aw_openapi *opts_new(aw_app *app, const aw_openapi_opts *opts)
{
	struct aw_openapi *o = calloc(1, sizeof *o);
	if (!o)
		return NULL;
	const char *title = opts && opts->title ? opts->title : app->name ? app->name : "app";
	o->title = strdup(title);
	o->version = strdup(opts && opts->version ? opts->version : "0.1.0");
	o->path = strdup(opts && opts->path ? opts->path : "/openapi.json");
	o->docs_path = strdup(opts && opts->docs_path ? opts->docs_path : "/docs");
	if (!o->title || !o->version || !o->path || !o->docs_path) {
		free(o->title);
		free(o->version);
		free(o->path);
		free(o->docs_path);
		free(o);
		return NULL;
	}
	return o;
}

int aw_app_openapi_json(aw_app *app, const aw_openapi_opts *opts, char **out)
{
	if (!app || !out)
		return aw_raise(-EINVAL, "aw_app_openapi_json: NULL argument");
	*out = NULL;
	struct aw_openapi *saved = app->openapi;
	struct aw_openapi *o = opts_new(app, opts);
	if (!o)
		return aw_raise(-ENOMEM, "aw_app_openapi_json: out of memory");
	app->openapi = o;
	*out = build_doc(app);
	app->openapi = saved;
	free(o->title);
	free(o->version);
	free(o->path);
	free(o->docs_path);
	free(o);
	return *out ? 0 : aw_raise(-ENOMEM, "aw_app_openapi_json: out of memory");
}

int aw_app_openapi(aw_app *app, const aw_openapi_opts *opts)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_openapi: no app");
	if (app->openapi)
		return aw_raise(-EEXIST, "aw_app_openapi: already on");
	const char *path = opts && opts->path ? opts->path : "/openapi.json";
	const char *docs = opts && opts->docs_path ? opts->docs_path : "/docs";
	if (!path_ok(path) || (*docs && !path_ok(docs)))
		return aw_raise(-EINVAL, "aw_app_openapi: paths must start with '/' and use only A-Z a-z 0-9 / _ . ~ -");
	struct aw_openapi *o = opts_new(app, opts);
	if (!o || !(o->page = make_page(o->path, &o->page_len))) {
		app->openapi = o;
		aw__http_openapi_free(app);
		return aw_raise(-ENOMEM, "aw_app_openapi: out of memory");
	}
	app->openapi = o;
	int rc = aw_app_route(app, "GET", o->path, doc_handler, app);
	if (!rc && *docs)
		rc = aw_app_route(app, "GET", o->docs_path, page_handler, app);
	return rc;
}
