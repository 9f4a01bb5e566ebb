/* SPDX-License-Identifier: MIT */
/*
 * orders_api: a small JSON API whose input and output are declared once
 * (awith/schema.h) — the body of POST /orders and the parameters of
 * GET /orders and GET /orders/{id} are validated into C structs before
 * the handlers run (a bad request gets 422 listing every bad field), the
 * answers are serialised from structs, and GET /openapi.json and
 * GET /docs describe it all. Orders are kept in memory.
 *
 *     ./orders_api --port 8000
 *     curl -d '{"customer":"Ann","items":[{"sku":"A1","qty":2}]}' localhost:8000/orders
 *     curl 'localhost:8000/orders?limit=10&status=open'
 *     open http://localhost:8000/docs
 *
 * The FastAPI equivalent: pydantic models Item and Order, an OrderIn body
 * parameter, Query(ge=1, le=100) and Path(ge=1) parameters.
 */
#include <awith/schema.h>

#include <stdlib.h>
#include <string.h>

struct item {
	const char *sku;
	int qty;
	double price;
};

struct order {
	long long id;
	const char *customer;
	int status;                /* index in statuses */
	struct item *items;
	size_t nitems;
	const char *note;
};

static const char *const statuses[] = { "open", "paid", "shipped", NULL };

static const aw_field item_fields[] = {
	AW_F_STRING(struct item, sku, .required = true, AW_LEN(1, 16), .description = "stock keeping unit"),
	AW_F_INT(struct item, qty, .required = true, AW_MIN(1), AW_MAX(1000)),
	AW_F_NUMBER(struct item, price, AW_MIN(0)),
};
static const aw_schema item_schema = AW_SCHEMA(struct item, "Item", item_fields);
static const aw_field an_item = AW_ITEM_OBJECT(struct item, &item_schema);

/* What a client sends (no id: the server gives it). */
static const aw_field order_in_fields[] = {
	AW_F_STRING(struct order, customer, .required = true, AW_LEN(1, 100)),
	AW_F_ENUM(struct order, status, statuses),
	AW_F_ARRAY(struct order, items, nitems, &an_item, .required = true, AW_LEN(1, 50)),
	AW_F_STRING(struct order, note, AW_LEN(0, 500)),
};
static const aw_schema order_in_schema = AW_SCHEMA(struct order, "OrderIn", order_in_fields);

/* What the server answers. */
static const aw_field order_fields[] = {
	AW_F_INT(struct order, id, .required = true),
	AW_F_STRING(struct order, customer, .required = true),
	AW_F_ENUM(struct order, status, statuses, .required = true),
	AW_F_ARRAY(struct order, items, nitems, &an_item, .required = true),
	AW_F_STRING(struct order, note),
};
static const aw_schema order_schema = AW_SCHEMA(struct order, "Order", order_fields);

struct list_params {
	int limit;
	int status;
	bool has_status;
};
static const aw_field list_param_fields[] = {
	AW_F_INT(struct list_params, limit, .in = AW_IN_QUERY, AW_MIN(1), AW_MAX(100)),
	AW_F_ENUM(struct list_params, status, statuses, .in = AW_IN_QUERY, AW_PRESENT(struct list_params, has_status)),
};
static const aw_schema list_params_schema = AW_SCHEMA(struct list_params, NULL, list_param_fields);

struct id_params {
	long long id;
};
static const aw_field id_param_fields[] = {
	AW_F_INT(struct id_params, id, .in = AW_IN_PATH, AW_MIN(1)),
};
static const aw_schema id_params_schema = AW_SCHEMA(struct id_params, NULL, id_param_fields);

/* The store: this process's orders, copied out of the requests (their
 * strings and items live in the request's memory). */
#define MAX_ORDERS 1000
static struct order orders[MAX_ORDERS];
static size_t norders;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int create_order(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct order *in = aw_http_valid_body(req);
	if (norders == MAX_ORDERS)
		return aw_http_text(res, 507, "the store is full");
	struct order *o = &orders[norders];
	*o = (struct order){ .id = (long long)norders + 1, .customer = strdup(in->customer), .status = in->status,
			     .note = dup_or_null(in->note), .nitems = in->nitems };
	o->items = calloc(in->nitems, sizeof *o->items);
	for (size_t i = 0; i < in->nitems && o->items; i++)
		o->items[i] = (struct item){ strdup(in->items[i].sku), in->items[i].qty, in->items[i].price };
	norders++;
	return aw_http_model(res, 201, &order_schema, o);
}

static int get_order(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct id_params *p = aw_http_valid_params(req);
	if (p->id > (long long)norders)
		return aw_http_send(res, 404, "application/json", "{\"detail\":\"no such order\"}", 26);
	return aw_http_model(res, 200, &order_schema, &orders[p->id - 1]);
}

static int list_orders(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const struct list_params *p = aw_http_valid_params(req);
	int limit = p->limit ? p->limit : 20;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_array(w);
	for (size_t i = 0, n = 0; i < norders && n < (size_t)limit; i++)
		if (!p->has_status || orders[i].status == p->status) {
			aw_jw_model(w, &order_schema, &orders[i]);
			n++;
		}
	aw_jw_array_end(w);
	return aw_http_json_end(w);
}

static const aw_route_spec create_spec = {
	.summary = "Create an order", .tag = "orders", .body = &order_in_schema, .response = &order_schema,
	.status = 201,
};
static const aw_route_spec get_spec = {
	.summary = "One order", .tag = "orders", .params = &id_params_schema, .response = &order_schema,
};
static const aw_route_spec list_spec = {
	.summary = "Orders, oldest first", .tag = "orders", .params = &list_params_schema, .response = &order_schema,
	.response_list = true,
};

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "orders") < 0)
		return 1;
	if (aw_app_route_spec(app, "POST", "/orders", create_order, NULL, &create_spec) < 0 ||
	    aw_app_route_spec(app, "GET", "/orders", list_orders, NULL, &list_spec) < 0 ||
	    aw_app_route_spec(app, "GET", "/orders/{id}", get_order, NULL, &get_spec) < 0 ||
	    aw_app_openapi(app, &(aw_openapi_opts){ .title = "Orders", .version = "1.0.0" }) < 0) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc < 0;
}
