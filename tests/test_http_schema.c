/* SPDX-License-Identifier: MIT */
/* Declared shapes (awith/schema.h) through real sockets: bodies and
 * parameters validated into C structs, 422 answers listing every problem
 * by location (FastAPI/pydantic's format), 400 for what is not JSON,
 * response models, the OpenAPI document and its docs page. */
#include "harness.h"
#include "http_util.h"

#include <awith/schema.h>

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the declarations ------------------------------------------------------------- */

struct addr {
	const char *city;
	const char *zip;
};
static const aw_field addr_fields[] = {
	AW_F_STRING(struct addr, city, .required = true, AW_LEN(1, 40)),
	AW_F_STRING(struct addr, zip, AW_LEN(0, 5)),
};
static const aw_schema addr_schema = AW_SCHEMA(struct addr, "Address", addr_fields);

struct item {
	const char *sku;
	int qty;
	double price;
	int8_t small;
};
static const aw_field item_fields[] = {
	AW_F_STRING(struct item, sku, .required = true, AW_LEN(1, 8)),
	AW_F_INT(struct item, qty, .required = true, AW_MIN(1), AW_MAX(1000)),
	AW_F_NUMBER(struct item, price, AW_MIN(0)),
	AW_F_INT(struct item, small),
};
static const aw_schema item_schema = AW_SCHEMA(struct item, "Item", item_fields);
static const aw_field item_of_order = AW_ITEM_OBJECT(struct item, &item_schema);
static const aw_field tag_item = AW_ITEM(const char *, AW_STRING, AW_LEN(1, 8));

static const char *const prios[] = { "low", "normal", "high", NULL };
struct order {
	const char *customer;
	int prio;
	bool gift, gift_set;
	struct addr ship;
	struct item *items;
	size_t nitems;
	const char **tags;
	size_t ntags;
	int64_t ref;
};
static const aw_field order_fields[] = {
	AW_F_STRING(struct order, customer, .required = true, AW_LEN(1, 20), .description = "who orders"),
	AW_F_ENUM(struct order, prio, prios),
	AW_F_BOOL(struct order, gift, AW_PRESENT(struct order, gift_set)),
	AW_F_OBJECT(struct order, ship, &addr_schema, .required = true),
	AW_F_ARRAY(struct order, items, nitems, &item_of_order, .required = true, AW_LEN(1, 5)),
	AW_F_ARRAY(struct order, tags, ntags, &tag_item),
	AW_F_INT(struct order, ref),
};
static const aw_schema order_schema = AW_SCHEMA(struct order, "Order", order_fields);

struct note {
	const char *text;
	int stars;
};
static const aw_field note_fields[] = {
	AW_F_STRING(struct note, text, .required = true),
	AW_F_INT(struct note, stars, AW_MIN(1), AW_MAX(5)),
};
static const aw_schema note_schema = {
	.name = "Note", .size = sizeof(struct note), .fields = note_fields, .nfields = 2, .extra = AW_EXTRA_IGNORE,
};

static const char *const sorts[] = { "asc", "desc", NULL };
struct item_params {
	int64_t id;
	int limit;
	int sort;
	bool verbose;
	const char *q;
	double min_price;
};
static const aw_field item_param_fields[] = {
	AW_F_INT(struct item_params, id, .in = AW_IN_PATH, AW_MIN(1)),
	AW_F_INT(struct item_params, limit, .in = AW_IN_QUERY, AW_MIN(1), AW_MAX(100)),
	AW_F_ENUM(struct item_params, sort, sorts, .in = AW_IN_QUERY),
	AW_F_BOOL(struct item_params, verbose, .in = AW_IN_QUERY),
	AW_F_STRING(struct item_params, q, .in = AW_IN_QUERY, AW_LEN(1, 5)),
	AW_F_NUMBER(struct item_params, min_price, .in = AW_IN_QUERY, AW_MIN(0)),
};
static const aw_schema item_params_schema = AW_SCHEMA(struct item_params, NULL, item_param_fields);

struct id_params {
	int id;
};
static const aw_field id_param_fields[] = {
	AW_F_INT(struct id_params, id, .in = AW_IN_PATH, AW_MIN(1)),
};
static const aw_schema id_params_schema = AW_SCHEMA(struct id_params, NULL, id_param_fields);

/* ---- the app ------------------------------------------------------------------------ */

static int h_order(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct order *o = aw_http_valid_body(req);
	return aw_http_model(res, 201, &order_schema, o);
}

static int h_items(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct item_params *p = aw_http_valid_params(req);
	char out[200];
	snprintf(out, sizeof out, "id=%lld limit=%d sort=%d verbose=%d q=%s min_price=%g", (long long)p->id, p->limit,
		 p->sort, p->verbose, p->q ? p->q : "(null)", p->min_price);
	return aw_http_text(res, 200, out);
}

static int h_update(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct id_params *p = aw_http_valid_params(req);
	const struct order *o = aw_http_valid_body(req);
	char out[100];
	snprintf(out, sizeof out, "id=%d customer=%s", p->id, o->customer);
	return aw_http_text(res, 200, out);
}

/* Without a spec: the handler parses its body itself, after defaults. */
static int h_note(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	struct note n = { .text = NULL, .stars = 3 };
	int rc = aw_http_parse_body(req, &note_schema, &n);
	if (rc)
		return rc;
	char out[100];
	snprintf(out, sizeof out, "text=%s stars=%d", n.text, n.stars);
	return aw_http_text(res, 200, out);
}

/* Without a spec, parameters parsed by the handler over its defaults. */
static int h_explicit(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	struct item_params p = { .limit = 20, .sort = 1, .q = "default" };
	int rc = aw_http_parse_params(req, &item_params_schema, &p);
	if (rc)
		return rc;
	char out[200];
	snprintf(out, sizeof out, "id=%lld limit=%d sort=%d q=%s", (long long)p.id, p.limit, p.sort, p.q);
	return aw_http_text(res, 200, out);
}

static int h_raw(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	json_t *j;
	int rc = aw_http_json_body(req, &j);
	if (rc)
		return rc;
	return aw_http_text(res, 200, "parsed");
}

static int h_list(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	static const struct item items[] = { { "a", 1, 2.5, 0 }, { "b\"q", 2, 0, -3 } };
	return aw_http_model_list(res, 200, &item_schema, items, 2);
}

/* A struct the model cannot write: an enum index out of range, or a
 * string that is not UTF-8 (?bad=utf8). */
static int h_bad_model(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *which = NULL;
	if (aw_http_query(req, "bad", &which) < 0)
		return aw_error_pending();
	struct item it = { "ok", 1, 0, 0 };
	struct order o = { .customer = "A", .prio = 7, .items = &it, .nitems = 1 };
	if (which && strcmp(which, "utf8") == 0) {
		o.prio = 0;
		o.customer = "\xff";
	}
	return aw_http_model(res, 200, &order_schema, &o);
}

static const aw_route_spec order_spec = {
	.summary = "Create an order", .tag = "orders", .body = &order_schema, .response = &order_schema, .status = 201,
};
static const aw_route_spec items_spec = { .summary = "An item", .params = &item_params_schema };
static const aw_route_spec update_spec = { .params = &id_params_schema, .body = &order_schema };
static const aw_route_spec list_spec = { .response = &item_schema, .response_list = true };

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "schematest") < 0)
		return NULL;
	if (aw_app_route_spec(app, "POST", "/orders", h_order, NULL, &order_spec) ||
	    aw_app_route_spec(app, "PUT", "/orders/{id}", h_update, NULL, &update_spec) ||
	    aw_app_route_spec(app, "GET", "/items/{id}", h_items, NULL, &items_spec) ||
	    aw_app_route_spec(app, "GET", "/items", h_list, NULL, &list_spec) ||
	    aw_app_route(app, "POST", "/notes", h_note, NULL) || aw_app_route(app, "POST", "/raw", h_raw, NULL) ||
	    aw_app_route(app, "GET", "/plain/{name}", h_raw, NULL) ||
	    aw_app_route(app, "GET", "/bad_model", h_bad_model, NULL) ||
	    aw_app_route(app, "GET", "/explicit/{id}", h_explicit, NULL) ||
	    aw_app_openapi(app, &(aw_openapi_opts){ .title = "Schema test", .version = "1.2.3" })) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return NULL;
	}
	return app;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static int request(int port, const char *method, const char *path, const char *body, size_t blen, resp *r)
{
	size_t cap = blen + 512;
	char *raw = malloc(cap);
	int n = snprintf(raw, cap,
			 "%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 method, path, blen);
	memcpy(raw + n, body, blen);
	int st = http_once(port, raw, (size_t)n + blen, r, NULL);
	free(raw);
	return st;
}

static int post(int port, const char *path, const char *body, resp *r)
{
	return request(port, "POST", path, body, strlen(body), r);
}

static int get(int port, const char *path, resp *r)
{
	return request(port, "GET", path, "", 0, r);
}

/* The 422 body's problems: "loc|type" lines, loc as JSON. */
static char *problems(const resp *r)
{
	json_error_t e;
	json_t *j = json_loads(r->body, 0, &e);
	if (!j)
		return strdup("(not JSON)");
	json_t *d = json_object_get(j, "detail");
	size_t cap = 8192, n = 0;
	char *out = calloc(1, cap);
	size_t i;
	json_t *x;
	json_array_foreach(d, i, x) {
		char *loc = json_dumps(json_object_get(x, "loc"), JSON_COMPACT);
		const char *type = json_string_value(json_object_get(x, "type"));
		const char *msg = json_string_value(json_object_get(x, "msg"));
		if (n < cap)
			n += (size_t)snprintf(out + n, cap - n, "%s|%s|%s\n", loc, type ? type : "?", msg ? msg : "?");
		free(loc);
	}
	json_decref(j);
	return out;
}

static size_t nproblems(const resp *r)
{
	json_t *j = json_loads(r->body, 0, NULL);
	size_t n = json_array_size(json_object_get(j, "detail"));
	json_decref(j);
	return n;
}

#define GOOD_ITEMS "[{\"sku\":\"a1\",\"qty\":1},{\"sku\":\"b2\",\"qty\":1000,\"price\":9.5}]"
#define GOOD_SHIP "{\"city\":\"Oslo\",\"zip\":\"0150\"}"

#define HAS(hay, needle)                                                                  \
	do {                                                                              \
		if (!strstr((hay), (needle))) {                                           \
			aw_test_fail(__FILE__, __LINE__, "'%s' not in:\n%s", needle, hay); \
			return;                                                           \
		}                                                                         \
	} while (0)

/* `call`, a request into r, is answered 422 and its problems hold `needle`;
 * r is freed. A macro, so that a failed check fails the test at the line
 * of the call and ends it there, as the checks written out would. */
#define CHECK_422_HAS(call, needle)             \
	do {                                    \
		CHECK_EQ(call, 422);            \
		char *p_ = problems(&r);        \
		HAS(p_, needle);                \
		free(p_);                       \
		resp_free(&r);                  \
	} while (0)

/* ---- bodies --------------------------------------------------------------------------- */

AW_TEST(valid_order_parses_into_the_struct_and_serialises_back)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	const char *in = "{\"customer\":\"Ann\",\"prio\":\"high\",\"gift\":false,\"ship\":" GOOD_SHIP
			 ",\"items\":" GOOD_ITEMS ",\"tags\":[\"x\",\"yy\"],\"ref\":9007199254740993}";
	CHECK_EQ(post(s.port, "/orders", in, &r), 201);
	json_t *got = json_loads(r.body, 0, NULL);
	json_t *want = json_loads("{\"customer\":\"Ann\",\"prio\":\"high\",\"gift\":false,\"ship\":" GOOD_SHIP
				  ",\"items\":[{\"sku\":\"a1\",\"qty\":1,\"price\":0,\"small\":0},{\"sku\":\"b2\",\"qty\":"
				  "1000,\"price\":9.5,\"small\":0}],\"tags\":[\"x\",\"yy\"],\"ref\":9007199254740993}",
				  0, NULL);
	bool same = got && want && json_equal(got, want);
	if (!same)
		fprintf(stderr, "got %s\n", r.body);
	json_decref(got);
	json_decref(want);
	CHECK(same);
	resp_free(&r);
	/* optional members left out: zero, and a gift flag not given is not
	 * serialised (AW_PRESENT) */
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"B\",\"ship\":{\"city\":\"X\"},\"items\":[{\"sku\":\"s\",\"qty\":2}]}", &r),
		 201);
	HAS(r.body, "\"prio\":\"low\"");
	HAS(r.body, "\"zip\":null");
	HAS(r.body, "\"tags\":[]");
	CHECK(!strstr(r.body, "gift"));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(nested_object_errors_name_their_path)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"A\",\"ship\":{\"zip\":\"123456\"},\"items\":" GOOD_ITEMS "}", &r),
		 422);
	char ct[64];
	CHECK(resp_header(&r, "Content-Type", ct, sizeof ct));
	CHECK(strcmp(ct, "application/json") == 0);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"ship\",\"city\"]|missing|Field required");
	HAS(p, "[\"body\",\"ship\",\"zip\"]|string_too_long|String should have at most 5 characters");
	CHECK_EQ(nproblems(&r), 2);
	free(p);
	resp_free(&r);
	CHECK_422_HAS(post(s.port, "/orders", "{\"customer\":\"A\",\"ship\":[1],\"items\":" GOOD_ITEMS "}", &r),
		      "[\"body\",\"ship\"]|model_attributes_type|");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(array_item_errors_are_indexed)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":[{\"sku\":\"a\",\"qty\":1},{\"sku\":\"b\",\"qty\":2},"
		      "{\"sku\":\"c\",\"qty\":0}],\"tags\":[\"ok\",\"\",5]}",
		      &r),
		 422);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"items\",2,\"qty\"]|greater_than_equal|Input should be greater than or equal to 1");
	HAS(p, "[\"body\",\"tags\",1]|string_too_short|String should have at least 1 character\n");
	HAS(p, "[\"body\",\"tags\",2]|string_type|");
	CHECK_EQ(nproblems(&r), 3);
	free(p);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(bounds_are_inclusive_and_checked_for_numbers_strings_and_lists)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	/* the limits themselves pass: qty 1 and 1000, customer of 20 chars
	 * (counted in code points: 20 x "é" is 40 bytes), 5 items */
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
		      "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\",\"ship\":" GOOD_SHIP
		      ",\"items\":[{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1000},{\"sku\":\"a\",\"qty\":1},"
		      "{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1}]}",
		      &r),
		 201);
	resp_free(&r);
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":\"123456789012345678901\",\"ship\":" GOOD_SHIP
		      ",\"items\":[{\"sku\":\"a\",\"qty\":1001,\"price\":-0.5,\"small\":200}]}",
		      &r),
		 422);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"customer\"]|string_too_long|String should have at most 20 characters");
	HAS(p, "[\"body\",\"items\",0,\"qty\"]|less_than_equal|Input should be less than or equal to 1000");
	HAS(p, "[\"body\",\"items\",0,\"price\"]|greater_than_equal|Input should be greater than or equal to 0");
	/* the member's own width bounds an undeclared range: int8_t */
	HAS(p, "[\"body\",\"items\",0,\"small\"]|less_than_equal|Input should be less than or equal to 127");
	free(p);
	resp_free(&r);
	CHECK_422_HAS(post(s.port, "/orders", "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":[]}", &r),
		      "[\"body\",\"items\"]|too_short|List should have at least 1 item after validation, not 0");
	CHECK_422_HAS(post(s.port, "/orders",
		      "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":[" "{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1},"
		      "{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1},{\"sku\":\"a\",\"qty\":1}]}",
		      &r), "[\"body\",\"items\"]|too_long|List should have at most 5 items after validation, not 6");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(an_enum_value_outside_its_list_is_422)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_422_HAS(post(s.port, "/orders",
			   "{\"customer\":\"A\",\"prio\":\"urgent\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS "}", &r),
		      "[\"body\",\"prio\"]|enum|Input should be 'low', 'normal' or 'high'");
	/* the index is not accepted for the name */
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"A\",\"prio\":1,\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS "}", &r),
		 422);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(missing_required_fields_are_each_listed)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":null}", &r), 422);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"customer\"]|missing|Field required");
	HAS(p, "[\"body\",\"ship\"]|missing|Field required");
	HAS(p, "[\"body\",\"items\"]|missing|Field required");
	CHECK_EQ(nproblems(&r), 3);
	free(p);
	resp_free(&r);
	/* no body at all: the body is missing */
	CHECK_422_HAS(post(s.port, "/orders", "", &r), "[\"body\"]|missing|Field required");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(wrong_types_are_422_with_the_type_error)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":5,\"gift\":\"yes\",\"ship\":" GOOD_SHIP ",\"items\":{\"sku\":\"a\"},\"ref\":1.5,\"tags\":\"x\"}", &r),
		 422);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"customer\"]|string_type|Input should be a valid string");
	HAS(p, "[\"body\",\"gift\"]|bool_type|Input should be a valid boolean");
	HAS(p, "[\"body\",\"items\"]|list_type|Input should be a valid list");
	HAS(p, "[\"body\",\"ref\"]|int_from_float|");
	HAS(p, "[\"body\",\"tags\"]|list_type|");
	free(p);
	resp_free(&r);
	CHECK_422_HAS(post(s.port, "/orders", "[1,2]", &r), "[\"body\"]|model_attributes_type|");
	/* an integral real is an integer (pydantic's lax mode) */
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":[{\"sku\":\"a\",\"qty\":2.0}]}", &r),
		 201);
	HAS(r.body, "\"qty\":2");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(several_errors_at_once_are_all_listed)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":\"\",\"prio\":\"x\",\"ship\":{},\"items\":[{\"qty\":\"1\"},{\"sku\":\"a\",\"qty\":-1}],"
		      "\"extra\":1}",
		      &r),
		 422);
	char *p = problems(&r);
	CHECK_EQ(nproblems(&r), 7);
	HAS(p, "[\"body\",\"customer\"]|string_too_short|");
	HAS(p, "[\"body\",\"prio\"]|enum|");
	HAS(p, "[\"body\",\"ship\",\"city\"]|missing|");
	HAS(p, "[\"body\",\"items\",0,\"sku\"]|missing|");
	HAS(p, "[\"body\",\"items\",0,\"qty\"]|int_type|");
	HAS(p, "[\"body\",\"items\",1,\"qty\"]|greater_than_equal|");
	HAS(p, "[\"body\",\"extra\"]|extra_forbidden|Extra inputs are not permitted");
	free(p);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	/* the log names the request's problems, not as a server failure */
	char *log = srv_log(&s);
	CHECK(!strstr(log, "failed (500)"));
	free(log);
}

AW_TEST(unknown_fields_are_rejected_by_default_and_ignored_when_the_schema_says)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders",
		      "{\"customer\":\"A\",\"ship\":{\"city\":\"c\",\"street\":\"s\"},\"items\":" GOOD_ITEMS ",\"custmer\":\"typo\"}", &r),
		 422);
	char *p = problems(&r);
	HAS(p, "[\"body\",\"ship\",\"street\"]|extra_forbidden|");
	HAS(p, "[\"body\",\"custmer\"]|extra_forbidden|");
	CHECK_EQ(nproblems(&r), 2);
	free(p);
	resp_free(&r);
	/* AW_EXTRA_IGNORE, and a handler's own defaults kept (stars=3) */
	CHECK_EQ(post(s.port, "/notes", "{\"text\":\"hi\",\"mood\":\"good\"}", &r), 200);
	CHECK(strcmp(r.body, "text=hi stars=3") == 0);
	resp_free(&r);
	CHECK_422_HAS(post(s.port, "/notes", "{\"text\":\"hi\",\"stars\":9}", &r),
		      "[\"body\",\"stars\"]|less_than_equal|");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(bad_json_is_400_and_not_422)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":", &r), 400);
	HAS(r.body, "invalid JSON");
	resp_free(&r);
	CHECK_EQ(post(s.port, "/notes", "{'text':1}", &r), 400);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(deeply_nested_json_is_400_without_overflowing_the_stack)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	size_t n = 200000;
	char *deep = malloc(2 * n + 1);
	memset(deep, '[', n);
	memset(deep + n, ']', n);
	deep[2 * n] = 0;
	resp r;
	long long t0 = now_ms();
	CHECK_EQ(post(s.port, "/orders", deep, &r), 400);
	HAS(r.body, "nested too deeply");
	resp_free(&r);
	/* the plain JSON body reader has the same guard */
	CHECK_EQ(post(s.port, "/raw", deep, &r), 400);
	resp_free(&r);
	/* objects too, and brackets inside strings do not count */
	char *obj = malloc(6 * 70 + 8);
	size_t k = 0;
	for (int i = 0; i < 70; i++)
		k += (size_t)sprintf(obj + k, "{\"a\":");
	obj[k++] = '1';
	for (int i = 0; i < 70; i++)
		obj[k++] = '}';
	obj[k] = 0;
	CHECK_EQ(post(s.port, "/raw", obj, &r), 400);
	resp_free(&r);
	CHECK_EQ(post(s.port, "/raw", "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", &r),
		 200);
	resp_free(&r);
	free(obj);
	fprintf(stderr, "400 for 400 KB of nesting in %lld ms\n", now_ms() - t0);
	free(deep);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(a_huge_array_of_bad_items_lists_at_most_64_problems)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	/* 20000 tags, each a number: 20000 problems, 64 listed */
	size_t n = 20000;
	char *b = malloc(n * 2 + 200);
	size_t k = (size_t)sprintf(b, "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS ",\"tags\":[");
	for (size_t i = 0; i < n; i++)
		k += (size_t)sprintf(b + k, "%s1", i ? "," : "");
	k += (size_t)sprintf(b + k, "]}");
	resp r;
	long long t0 = now_ms();
	CHECK_EQ(request(s.port, "POST", "/orders", b, k, &r), 422);
	long long ms = now_ms() - t0;
	CHECK_EQ(nproblems(&r), AW_VALIDATION_MAX_ERRORS);
	fprintf(stderr, "20000 bad items: 422 (%zu bytes) in %lld ms\n", r.body_len, ms);
	CHECK_LT(r.body_len, 8000);
	resp_free(&r);
	free(b);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	(void)log;
	free(log);
}

AW_TEST(many_unknown_keys_list_at_most_64_problems)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	size_t n = 20000;
	char *b = malloc(n * 16 + 200);
	size_t k = (size_t)sprintf(b, "{\"customer\":\"A\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS);
	for (size_t i = 0; i < n; i++)
		k += (size_t)sprintf(b + k, ",\"k%zu\":1", i);
	k += (size_t)sprintf(b + k, "}");
	resp r;
	CHECK_EQ(request(s.port, "POST", "/orders", b, k, &r), 422);
	CHECK_EQ(nproblems(&r), AW_VALIDATION_MAX_ERRORS);
	char *p = problems(&r);
	HAS(p, "|extra_forbidden|");
	free(p);
	resp_free(&r);
	free(b);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(non_utf8_body_is_400_and_non_utf8_query_is_422)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"\xff\xfe\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS "}", &r), 400);
	resp_free(&r);
	/* an overlong encoding is not UTF-8 either */
	CHECK_EQ(post(s.port, "/orders", "{\"customer\":\"\xc0\xaf\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS "}", &r), 400);
	resp_free(&r);
	CHECK_422_HAS(get(s.port, "/items/1?q=%ff%fe", &r), "[\"query\",\"q\"]|string_unicode|");
	CHECK_EQ(get(s.port, "/items/1?q=%c3%a9", &r), 200);
	HAS(r.body, "q=\xc3\xa9 ");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- parameters -------------------------------------------------------------------------- */

AW_TEST(path_and_query_parameters_are_typed)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/items/42?limit=100&sort=desc&verbose=yes&q=abc&min_price=2.5", &r), 200);
	CHECK(strcmp(r.body, "id=42 limit=100 sort=1 verbose=1 q=abc min_price=2.5") == 0);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/items/7", &r), 200);
	CHECK(strcmp(r.body, "id=7 limit=0 sort=0 verbose=0 q=(null) min_price=0") == 0);
	resp_free(&r);
	/* unknown query parameters are ignored */
	CHECK_EQ(get(s.port, "/items/7?utm_source=x&verbose=OFF", &r), 200);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/items/0?limit=101&sort=up&verbose=maybe&q=abcdef&min_price=x", &r), 422);
	char *p = problems(&r);
	HAS(p, "[\"path\",\"id\"]|greater_than_equal|Input should be greater than or equal to 1");
	HAS(p, "[\"query\",\"limit\"]|less_than_equal|Input should be less than or equal to 100");
	HAS(p, "[\"query\",\"sort\"]|enum|Input should be 'asc' or 'desc'");
	HAS(p, "[\"query\",\"verbose\"]|bool_parsing|");
	HAS(p, "[\"query\",\"q\"]|string_too_long|");
	HAS(p, "[\"query\",\"min_price\"]|float_parsing|");
	CHECK_EQ(nproblems(&r), 6);
	free(p);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/items/abc?limit=1.5", &r), 422);
	p = problems(&r);
	HAS(p, "[\"path\",\"id\"]|int_parsing|");
	HAS(p, "[\"query\",\"limit\"]|int_parsing|");
	free(p);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/items/99999999999999999999", &r), 422);
	resp_free(&r);
	/* a bad %-escape in the query stays a 400 */
	CHECK_EQ(get(s.port, "/items/1?q=%zz", &r), 400);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(a_handler_parses_parameters_over_its_own_defaults)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/explicit/3", &r), 200);
	CHECK(strcmp(r.body, "id=3 limit=20 sort=1 q=default") == 0);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/explicit/3?limit=5&sort=asc&q=x", &r), 200);
	CHECK(strcmp(r.body, "id=3 limit=5 sort=0 q=x") == 0);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/explicit/-1?limit=0", &r), 422);
	char *p = problems(&r);
	HAS(p, "[\"path\",\"id\"]|greater_than_equal|");
	HAS(p, "[\"query\",\"limit\"]|greater_than_equal|");
	free(p);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(parameter_and_body_problems_come_in_one_422)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(request(s.port, "PUT", "/orders/0", "{\"ship\":{}}", 11, &r), 422);
	char *p = problems(&r);
	HAS(p, "[\"path\",\"id\"]|greater_than_equal|");
	HAS(p, "[\"body\",\"customer\"]|missing|");
	HAS(p, "[\"body\",\"ship\",\"city\"]|missing|");
	HAS(p, "[\"body\",\"items\"]|missing|");
	CHECK_EQ(nproblems(&r), 4);
	free(p);
	resp_free(&r);
	const char *ok = "{\"customer\":\"Bo\",\"ship\":" GOOD_SHIP ",\"items\":" GOOD_ITEMS "}";
	CHECK_EQ(request(s.port, "PUT", "/orders/5", ok, strlen(ok), &r), 200);
	CHECK(strcmp(r.body, "id=5 customer=Bo") == 0);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- response models ------------------------------------------------------------------------ */

AW_TEST(a_response_model_list_serialises_each_struct)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/items", &r), 200);
	CHECK(strcmp(r.body, "[{\"sku\":\"a\",\"qty\":1,\"price\":2.5,\"small\":0},{\"sku\":\"b\\\"q\",\"qty\":2,\"price\":0,"
			     "\"small\":-3}]") == 0);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(a_model_that_cannot_be_written_is_a_500_that_says_nothing_internal)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/bad_model", &r), 500);
	CHECK(!strstr(r.body, "enum"));
	resp_free(&r);
	CHECK_EQ(get(s.port, "/bad_model?bad=utf8", &r), 500);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	/* the log says why */
	char *log = srv_log(&s);
	HAS(log, "enum index 7 out of range");
	free(log);
}

/* ---- OpenAPI ---------------------------------------------------------------------------------- */

AW_TEST(the_openapi_document_describes_routes_parameters_bodies_and_responses)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/openapi.json", &r), 200);
	json_error_t e;
	json_t *d = json_loads(r.body, 0, &e);
	CHECK(d != NULL);
	CHECK(strcmp(json_string_value(json_object_get(d, "openapi")), "3.1.0") == 0);
	json_t *info = json_object_get(d, "info");
	CHECK(strcmp(json_string_value(json_object_get(info, "title")), "Schema test") == 0);
	CHECK(strcmp(json_string_value(json_object_get(info, "version")), "1.2.3") == 0);
	json_t *paths = json_object_get(d, "paths");
	/* every route but the document's own and the page */
	CHECK(json_object_get(paths, "/orders") && json_object_get(paths, "/orders/{id}") &&
	      json_object_get(paths, "/items/{id}") && json_object_get(paths, "/notes") &&
	      json_object_get(paths, "/plain/{name}"));
	CHECK(!json_object_get(paths, "/openapi.json") && !json_object_get(paths, "/docs"));
	json_t *post = json_object_get(json_object_get(paths, "/orders"), "post");
	CHECK(strcmp(json_string_value(json_object_get(post, "summary")), "Create an order") == 0);
	json_t *body = json_object_get(json_object_get(json_object_get(post, "requestBody"), "content"), "application/json");
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(body, "schema"), "$ref")),
		     "#/components/schemas/Order") == 0);
	json_t *resps = json_object_get(post, "responses");
	CHECK(json_object_get(resps, "201") && json_object_get(resps, "422"));
	json_t *comps = json_object_get(json_object_get(d, "components"), "schemas");
	json_t *order = json_object_get(comps, "Order");
	json_t *props = json_object_get(order, "properties");
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(props, "customer"), "maxLength")), 20);
	CHECK_EQ(json_array_size(json_object_get(json_object_get(props, "prio"), "enum")), 3);
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(json_object_get(props, "items"), "items"), "$ref")),
		     "#/components/schemas/Item") == 0);
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(props, "items"), "maxItems")), 5);
	CHECK(json_is_false(json_object_get(order, "additionalProperties")));
	CHECK_EQ(json_array_size(json_object_get(order, "required")), 3);
	CHECK(json_object_get(comps, "Item") && json_object_get(comps, "Address") &&
	      json_object_get(comps, "HTTPValidationError"));
	json_t *params = json_object_get(json_object_get(json_object_get(paths, "/items/{id}"), "get"), "parameters");
	CHECK_EQ(json_array_size(params), 6);
	json_t *id = json_array_get(params, 0);
	CHECK(strcmp(json_string_value(json_object_get(id, "in")), "path") == 0);
	CHECK(json_is_true(json_object_get(id, "required")));
	CHECK_EQ(json_integer_value(json_object_get(json_object_get(id, "schema"), "minimum")), 1);
	/* a route without a spec: its path parameter as a string */
	json_t *plain = json_object_get(json_object_get(paths, "/plain/{name}"), "get");
	CHECK(strcmp(json_string_value(json_object_get(json_array_get(json_object_get(plain, "parameters"), 0), "name")),
		     "name") == 0);
	/* a list response */
	json_t *list = json_object_get(
		json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(paths, "/items"), "get"),
								"responses"),
						"200"),
				"content"),
		"application/json");
	CHECK(strcmp(json_string_value(json_object_get(json_object_get(list, "schema"), "type")), "array") == 0);
	json_decref(d);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(the_docs_page_is_self_contained)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	CHECK_EQ(get(s.port, "/docs", &r), 200);
	char ct[64];
	CHECK(resp_header(&r, "Content-Type", ct, sizeof ct));
	CHECK(strncmp(ct, "text/html", 9) == 0);
	HAS(r.body, "const DOC = '/openapi.json';");
	CHECK(!strstr(r.body, "http://") && !strstr(r.body, "https://") && !strstr(r.body, " src="));
	CHECK(!strstr(r.body, "__OPENAPI_PATH__"));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- declarations refused ------------------------------------------------------------------- */

struct bad {
	int n;
	const char *s;
};

static int h_none(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)res;
	(void)ud;
	return 0;
}

AW_TEST(bad_tables_are_refused_when_the_route_is_added)
{
	aw_app *app;
	CHECK_EQ(aw_app_new(&app, "bad"), 0);
	/* a string declared on an int */
	static const aw_field f1[] = { AW_F(struct bad, n, AW_STRING) };
	static const aw_schema s1 = AW_SCHEMA(struct bad, "B1", f1);
	CHECK_EQ(aw_schema_check(&s1, false), -EINVAL);
	CHECK(strstr(aw_error_current()->msg, "'n'"));
	aw_error_clear();
	/* an enum without values */
	static const aw_field f2[] = { AW_F(struct bad, n, AW_ENUM) };
	static const aw_schema s2 = AW_SCHEMA(struct bad, "B2", f2);
	CHECK_EQ(aw_schema_check(&s2, false), -EINVAL);
	aw_error_clear();
	/* a params field without .in */
	static const aw_field f3[] = { AW_F_INT(struct bad, n) };
	static const aw_schema s3 = AW_SCHEMA(struct bad, NULL, f3);
	CHECK_EQ(aw_schema_check(&s3, true), -EINVAL);
	aw_error_clear();
	CHECK_EQ(aw_app_route_spec(app, "GET", "/b/{n}", h_none, NULL, &(aw_route_spec){ .params = &s3 }), -EINVAL);
	aw_error_clear();
	/* {id} of the template not declared; a declared path field not in it */
	static const aw_field f4[] = { AW_F_INT(struct bad, n, .in = AW_IN_PATH) };
	static const aw_schema s4 = AW_SCHEMA(struct bad, NULL, f4);
	static const aw_route_spec sp4 = { .params = &s4 };
	CHECK_EQ(aw_app_route_spec(app, "GET", "/b/{id}", h_none, NULL, &sp4), -EINVAL);
	CHECK(strstr(aw_error_current()->msg, "{id}"));
	aw_error_clear();
	CHECK_EQ(aw_app_route_spec(app, "GET", "/b", h_none, NULL, &sp4), -EINVAL);
	aw_error_clear();
	CHECK_EQ(aw_app_route_spec(app, "GET", "/b/{n}", h_none, NULL, &sp4), 0);
	CHECK_EQ(aw_app_openapi(app, &(aw_openapi_opts){ .path = "/x y" }), -EINVAL);
	aw_error_clear();
	CHECK_EQ(aw_app_openapi(app, NULL), 0);
	CHECK_EQ(aw_app_openapi(app, NULL), -EEXIST);
	aw_error_clear();
	char *doc;
	CHECK_EQ(aw_app_openapi_json(app, NULL, &doc), 0);
	CHECK(strstr(doc, "\"/b/{n}\""));
	free(doc);
	aw_app_free(app);
	CHECK(strcmp(aw_strerror(-AW_EHTTP_VALIDATION), "validation failed") == 0);
}
