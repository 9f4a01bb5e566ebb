/* SPDX-License-Identifier: MIT */
/*
 * awith/schema.h — declared shapes for the http app layer: a request body,
 * the path and query parameters, a response, each declared once as a static
 * table of fields that says where each value lives in a C struct; from it
 * the library parses and validates input into the struct (or answers 422
 * listing every bad field, as FastAPI/pydantic does), serialises a struct
 * to JSON, and describes the routes in an OpenAPI 3.1 document.
 *
 *     struct item  { const char *sku; int qty; };
 *     struct order { const char *customer; int prio; struct item *items; size_t nitems; };
 *
 *     static const aw_field item_fields[] = {
 *         AW_F_STRING(struct item, sku, .required = true, AW_LEN(1, 32)),
 *         AW_F_INT(struct item, qty, .required = true, AW_MIN(1), AW_MAX(1000)),
 *     };
 *     static const aw_schema item_schema = AW_SCHEMA(struct item, "Item", item_fields);
 *     static const aw_field item_of_order = AW_ITEM_OBJECT(struct item, &item_schema);
 *     static const char *const prios[] = { "low", "normal", "high", NULL };
 *     static const aw_field order_fields[] = {
 *         AW_F_STRING(struct order, customer, .required = true, AW_LEN(1, 100)),
 *         AW_F_ENUM(struct order, prio, prios),
 *         AW_F_ARRAY(struct order, items, nitems, &item_of_order, .required = true, AW_LEN(1, 50)),
 *     };
 *     static const aw_schema order_schema = AW_SCHEMA(struct order, "Order", order_fields);
 *
 *     static const aw_route_spec create_order_spec = { .summary = "Create an order",
 *         .body = &order_schema, .response = &order_schema, .status = 201 };
 *     static int create_order(aw_http_request *req, aw_http_response *res, void *ud)
 *     {
 *         const struct order *o = aw_http_valid_body(req);   // parsed and checked
 *         ...
 *         return aw_http_model(res, 201, &order_schema, o);
 *     }
 *     ...
 *     aw_app_route_spec(app, "POST", "/orders", create_order, NULL, &create_order_spec);
 *     aw_app_openapi(app, NULL);     // GET /openapi.json and GET /docs
 *
 * A bad body is answered before the handler runs:
 *
 *     422 {"detail":[{"loc":["body","items",2,"qty"],"msg":"Input should be
 *          greater than or equal to 1","type":"greater_than_equal"}, ...]}
 *
 * Tables, schemas and specs are read, never copied: they must outlive the
 * app (declare them static const). Part of libawith-http.
 */
#ifndef AWITH_SCHEMA_H
#define AWITH_SCHEMA_H

#include "awith/http.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* ------------------------------------------------------------------------ */
/* Fields and schemas                                           aw_schema(3) */

/* A field's JSON type and its C representation (the member at `offset`,
 * `size` bytes):
 *   AW_STRING  const char * — NUL-terminated UTF-8 owned by the request
 *              (valid until the request is done); NULL when absent. A
 *              \u0000 in a body string is bad JSON (400: the parser
 *              refuses it); a parameter that is not UTF-8 is a 422
 *              (string_unicode).
 *   AW_INT     a signed integer of 1, 2, 4 or 8 bytes (int8_t ... int64_t,
 *              int, long); a JSON number with a fraction or out of the
 *              member's range is rejected (int_from_float, int_range).
 *   AW_NUMBER  double (8 bytes) or float (4); a JSON integer is accepted.
 *   AW_BOOL    bool (1 byte).
 *   AW_ENUM    the index of the value in `enum_values` (a NULL-terminated
 *              list of strings), stored as a signed integer of 1, 2, 4 or 8
 *              bytes (an enum member is 4); JSON is the string.
 *   AW_OBJECT  a nested struct stored inline (`object`->size bytes).
 *   AW_ARRAY   a pointer to the first item (items laid out as `items`
 *              says, `items`->size bytes each, memory owned by the
 *              request) and the count in the size_t member at
 *              `count_offset`; NULL and 0 when absent or empty. */
typedef enum aw_ftype {
	AW_STRING = 1,
	AW_INT,
	AW_NUMBER,
	AW_BOOL,
	AW_ENUM,
	AW_OBJECT,
	AW_ARRAY,
} aw_ftype;

/* Where a parameter comes from (a params schema; ignored in bodies). A
 * path parameter is the route template's {name}; a query parameter the
 * first ?name=value (decoded). Parameters are text: an AW_INT, AW_NUMBER
 * parses the whole text as a decimal number, an AW_BOOL takes true/false,
 * 1/0, yes/no, on/off (pydantic's set); AW_OBJECT and AW_ARRAY are not
 * parameters. */
typedef enum aw_fin {
	AW_IN_BODY = 0,
	AW_IN_PATH,
	AW_IN_QUERY,
} aw_fin;

typedef struct aw_schema aw_schema;

typedef struct aw_field {
	const char *name;          /* the JSON key / parameter name */
	aw_ftype type;
	aw_fin in;                 /* parameters only */
	size_t offset;             /* where the value goes: offsetof(T, member) */
	size_t size;               /* sizeof the member */
	bool required;             /* absent (or null): 422 "missing" */
	/* Bounds. AW_INT, AW_NUMBER: min/max inclusive when has_min/has_max
	 * (AW_MIN, AW_MAX; integer bounds are exact up to 2^53). AW_STRING:
	 * length in Unicode code points; AW_ARRAY: item count — min_len (0:
	 * none) and max_len (0: none) (AW_LEN). */
	bool has_min, has_max;
	double min, max;
	size_t min_len, max_len;
	const char *const *enum_values;  /* AW_ENUM: NULL-terminated */
	const aw_schema *object;         /* AW_OBJECT (and an AW_ARRAY item of objects) */
	const struct aw_field *items;    /* AW_ARRAY: the item's shape (AW_ITEM...) */
	size_t count_offset;             /* AW_ARRAY: offsetof the size_t count */
	/* offsetof(T, a bool member) + 1 (AW_PRESENT), or 0: that bool is set
	 * when the field was given (not null), so an optional field's absence
	 * can be told from its zero value. Serialising, a field whose flag is
	 * false is left out. */
	size_t present;
	const char *description;         /* OpenAPI only */
} aw_field;

/* Unknown keys in a body object: rejected by default — each is a 422
 * "extra_forbidden" (a typo in an optional field's name would otherwise
 * drop data silently); AW_EXTRA_IGNORE skips them, as pydantic's default
 * does. Unknown query parameters are always ignored (caches and trackers
 * add their own). */
typedef enum aw_extra {
	AW_EXTRA_FORBID = 0,
	AW_EXTRA_IGNORE,
} aw_extra;

struct aw_schema {
	const char *name;          /* OpenAPI component name ("Order"); NULL: described inline */
	size_t size;               /* sizeof the struct */
	const aw_field *fields;
	size_t nfields;
	aw_extra extra;
	const char *description;   /* OpenAPI only */
};

/* Declaring tables. AW_F_*(T, member, ...) fills name, type, offset and
 * size; the rest are designated initializers (.required = true, AW_MIN(1),
 * AW_LEN(1, 64), .in = AW_IN_QUERY, .description = "..."). In C: C++20's
 * designated initializers must follow the declaration order, which the
 * macros do not promise; C++ fills aw_field members by name instead. */
#define AW_F(T, m, type_, ...) \
	{ .name = #m, .type = (type_), .offset = offsetof(T, m), .size = sizeof(((T *)0)->m), __VA_ARGS__ }
#define AW_F_STRING(T, m, ...) AW_F(T, m, AW_STRING, __VA_ARGS__)
#define AW_F_INT(T, m, ...) AW_F(T, m, AW_INT, __VA_ARGS__)
#define AW_F_NUMBER(T, m, ...) AW_F(T, m, AW_NUMBER, __VA_ARGS__)
#define AW_F_BOOL(T, m, ...) AW_F(T, m, AW_BOOL, __VA_ARGS__)
#define AW_F_ENUM(T, m, values, ...) AW_F(T, m, AW_ENUM, .enum_values = (values), __VA_ARGS__)
#define AW_F_OBJECT(T, m, schema, ...) AW_F(T, m, AW_OBJECT, .object = (schema), __VA_ARGS__)
#define AW_F_ARRAY(T, m, count_m, item, ...) \
	AW_F(T, m, AW_ARRAY, .items = (item), .count_offset = offsetof(T, count_m), __VA_ARGS__)
/* An array's item: its C type and JSON type (bounds as for fields). */
#define AW_ITEM(CT, type_, ...) { .name = "item", .type = (type_), .size = sizeof(CT), __VA_ARGS__ }
#define AW_ITEM_OBJECT(CT, schema) AW_ITEM(CT, AW_OBJECT, .object = (schema))
#define AW_MIN(v) .has_min = true, .min = (v)
#define AW_MAX(v) .has_max = true, .max = (v)
#define AW_LEN(lo, hi) .min_len = (lo), .max_len = (hi)
#define AW_PRESENT(T, m) .present = offsetof(T, m) + 1
#define AW_SCHEMA(T, name_, fields_) \
	{ .name = (name_), .size = sizeof(T), .fields = (fields_), .nfields = sizeof(fields_) / sizeof((fields_)[0]) }

/* Check a schema's table (recursively): sizes that fit the declared
 * types, members inside the struct, enum lists, item shapes, a params
 * schema's AW_IN_* (not AW_OBJECT / AW_ARRAY). `params`: it declares
 * parameters. 0 or -EINVAL raised with the field's path. Routes with a
 * spec are checked when added. */
int aw_schema_check(const aw_schema *s, bool params) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* Validation                                          aw_http_parse_body(3) */

/* Input that does not match its declaration is -AW_EHTTP_VALIDATION
 * (http.h): the client gets 422 with the list of every bad field
 * (aw_http_validation_detail). */
/* At most this many problems are listed in one 422 (the rest are
 * counted in the error's message): a huge bad array stays a small
 * answer. */
#define AW_VALIDATION_MAX_ERRORS 64
/* Bodies nested deeper than this (objects and arrays) are refused before
 * parsing: 400 from aw_http_parse_body and aw_http_json_body alike
 * (nothing recursive ever sees them). */
#define AW_JSON_MAX_DEPTH 64

/* Waits: read the body as JSON and validate it against `s` into `out`
 * (s->size bytes; members the body does not give keep the values `out`
 * had — fill it with the defaults first). Returns 0; -EBADMSG (400:
 * not JSON, not UTF-8, nested deeper than AW_JSON_MAX_DEPTH); the body's
 * errors (413, 408 ...); -AW_EHTTP_VALIDATION (422) with every problem
 * recorded for the answer, locations starting with "body"; -ENOMEM. All
 * raised: a handler returns it and the app answers. Strings and arrays
 * live in the request's memory until it is done. */
int aw_http_parse_body(aw_http_request *req, const aw_schema *s, void *out) AW_MUST_USE;
/* The same for the path and query parameters declared in `s` (fields
 * with .in = AW_IN_PATH / AW_IN_QUERY; locations ["path", name] /
 * ["query", name]). Does not wait. */
int aw_http_parse_params(aw_http_request *req, const aw_schema *s, void *out) AW_MUST_USE;
/* The 422 answer's JSON body for the problems recorded in this request
 * ({"detail":[{"loc":[...],"msg":"...","type":"..."},...]}),
 * NUL-terminated, owned by the request; NULL when there are none. The app
 * answers -AW_EHTTP_VALIDATION with it; error mappers can too. */
const char *aw_http_validation_detail(const aw_http_request *req);

/* ------------------------------------------------------------------------ */
/* Routes with declared input and output               aw_app_route_spec(3) */

typedef struct aw_route_spec {
	const char *summary;          /* OpenAPI: one line */
	const char *description;
	const char *tag;              /* OpenAPI: a group on the docs page */
	const aw_schema *params;      /* path and query parameters, or NULL */
	const aw_schema *body;        /* the JSON body, or NULL */
	const aw_schema *response;    /* the success answer's model, or NULL */
	bool response_list;           /* the answer is an array of `response` */
	int status;                   /* the success status; 0: 200 */
} aw_route_spec;

/* aw_app_route with a spec: before `fn` runs, the parameters and the body
 * are parsed and validated (params then body; problems of both listed in
 * one 422, and then `fn` does not run); `fn` gets them with
 * aw_http_valid_params / aw_http_valid_body. The route is described in
 * the OpenAPI document. spec NULL: as aw_app_route (undocumented shapes).
 * -EINVAL (a bad template or table: aw_schema_check; a path {name} the
 * params schema does not declare, or an AW_IN_PATH field the template
 * lacks), -ENOMEM; raised. */
int aw_app_route_spec(aw_app *app, const char *method, const char *path, aw_http_handler fn, void *ud,
		      const aw_route_spec *spec) AW_MUST_USE;
/* Inside a spec'd route's handler: the parsed parameters / body (structs
 * as the spec's schemas declare, owned by the request), or NULL when the
 * spec declares none. */
const void *aw_http_valid_params(const aw_http_request *req);
const void *aw_http_valid_body(const aw_http_request *req);

/* ------------------------------------------------------------------------ */
/* Response models                                         aw_http_model(3) */

/* Write the struct `obj` as the JSON object `s` declares, into a JSON
 * writer (a value position): strings NULL → null, enums as their names,
 * an optional field whose AW_PRESENT flag is false left out. An enum
 * index out of range, invalid UTF-8 or a non-finite number is the
 * writer's error (aw_http_json_end returns it). */
void aw_jw_model(aw_jw *w, const aw_schema *s, const void *obj);
/* A complete response: obj serialised (aw_http_json_begin, aw_jw_model,
 * aw_http_json_end). -EINVAL / -EILSEQ raised as the writer's. */
int aw_http_model(aw_http_response *res, int status, const aw_schema *s, const void *obj) AW_MUST_USE;
/* A JSON array of n structs laid out one after another (s->size each). */
int aw_http_model_list(aw_http_response *res, int status, const aw_schema *s, const void *items, size_t n)
	AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* OpenAPI                                                  aw_app_openapi(3) */

typedef struct aw_openapi_opts {
	const char *title;        /* default: the app's name */
	const char *version;      /* the API's version; default "0.1.0" */
	const char *path;         /* the document; default "/openapi.json" */
	const char *docs_path;    /* the page; default "/docs"; "" for none */
} aw_openapi_opts;

/* Serve an OpenAPI 3.1 document of the app's routes (method, path and its
 * parameters; for spec'd routes their parameters, body and response with
 * components for named schemas, and the 422 answer) at GET opts->path,
 * and a self-contained HTML page that renders it and can send requests
 * (no external resources) at GET opts->docs_path. Routes for any method
 * ("*") and the two routes themselves are left out. The document is built
 * on its first request (routes added later are not in it). opts NULL: the
 * defaults. Call before serving. -EINVAL (a path not starting with '/'),
 * -EEXIST (already on), -ENOMEM; raised. */
int aw_app_openapi(aw_app *app, const aw_openapi_opts *opts) AW_MUST_USE;
/* The document as JSON text now (malloc'd, NUL-terminated; free it), for
 * a build step or a test. -ENOMEM raised. */
int aw_app_openapi_json(aw_app *app, const aw_openapi_opts *opts, char **out) AW_MUST_USE;

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
