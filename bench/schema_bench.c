/* SPDX-License-Identifier: MIT */
/*
 * What a declared shape costs (bench/schema_bench.sh): one server, the
 * same order body posted to two routes that accept the same input and
 * answer the same JSON —
 *   POST /declared  aw_app_route_spec: the body validated into a struct by
 *                   the library, the answer written by aw_http_model;
 *   POST /by_hand   aw_http_json_body and jansson lookups with the same
 *                   checks written out, the answer with aw_jw_* calls;
 * and GET /plain, a fixed text answer, for the server's own cost.
 * Usage: schema_bench --port N
 */
#include <awith/schema.h>

#include <jansson.h>
#include <string.h>

struct item {
	const char *sku;
	int qty;
};
struct order {
	const char *customer;
	int prio;
	struct item *items;
	size_t nitems;
};
static const char *const prios[] = { "low", "normal", "high", NULL };
static const aw_field item_fields[] = {
	AW_F_STRING(struct item, sku, .required = true, AW_LEN(1, 16)),
	AW_F_INT(struct item, qty, .required = true, AW_MIN(1), AW_MAX(1000)),
};
static const aw_schema item_schema = AW_SCHEMA(struct item, "Item", item_fields);
static const aw_field an_item = AW_ITEM_OBJECT(struct item, &item_schema);
static const aw_field order_fields[] = {
	AW_F_STRING(struct order, customer, .required = true, AW_LEN(1, 100)),
	AW_F_ENUM(struct order, prio, prios),
	AW_F_ARRAY(struct order, items, nitems, &an_item, .required = true, AW_LEN(1, 50)),
};
static const aw_schema order_schema = AW_SCHEMA(struct order, "Order", order_fields);

static int declared(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return aw_http_model(res, 200, &order_schema, aw_http_valid_body(req));
}

/* The same checks by hand (the first problem only: a hand-written
 * handler rarely lists them all). */
static int by_hand(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	json_t *j;
	int rc = aw_http_json_body(req, &j);
	if (rc)
		return rc;
	json_t *c = json_object_get(j, "customer"), *p = json_object_get(j, "prio"), *items = json_object_get(j, "items");
	if (!json_is_string(c) || json_string_length(c) < 1 || json_string_length(c) > 100)
		return aw_http_text(res, 422, "customer");
	int prio = 0;
	if (p) {
		if (!json_is_string(p))
			return aw_http_text(res, 422, "prio");
		for (prio = 0; prios[prio] && strcmp(prios[prio], json_string_value(p)); prio++)
			;
		if (!prios[prio])
			return aw_http_text(res, 422, "prio");
	}
	if (!json_is_array(items) || json_array_size(items) < 1 || json_array_size(items) > 50)
		return aw_http_text(res, 422, "items");
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		json_t *sku = json_object_get(it, "sku"), *qty = json_object_get(it, "qty");
		if (!json_is_string(sku) || json_string_length(sku) < 1 || json_string_length(sku) > 16 ||
		    !json_is_integer(qty) || json_integer_value(qty) < 1 || json_integer_value(qty) > 1000)
			return aw_http_text(res, 422, "item");
	}
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "customer");
	aw_jw_string(w, json_string_value(c));
	aw_jw_key(w, "prio");
	aw_jw_string(w, prios[prio]);
	aw_jw_key(w, "items");
	aw_jw_array(w);
	json_array_foreach(items, i, it) {
		aw_jw_object(w);
		aw_jw_key(w, "sku");
		aw_jw_string(w, json_string_value(json_object_get(it, "sku")));
		aw_jw_key(w, "qty");
		aw_jw_int(w, json_integer_value(json_object_get(it, "qty")));
		aw_jw_object_end(w);
	}
	aw_jw_array_end(w);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int plain(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	return aw_http_text(res, 200, "ok");
}

static const aw_route_spec spec = { .body = &order_schema, .response = &order_schema };

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "schema_bench") < 0)
		return 1;
	if (aw_app_route_spec(app, "POST", "/declared", declared, NULL, &spec) < 0 ||
	    aw_app_route(app, "POST", "/by_hand", by_hand, NULL) < 0 || aw_app_route(app, "GET", "/plain", plain, NULL) < 0)
		return 1;
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc < 0;
}
