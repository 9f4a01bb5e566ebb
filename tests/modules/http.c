/* SPDX-License-Identifier: MIT */
/* An http program (tests/check_modules.sh): built with
 * `pkg-config awith-http` only. An app with a route whose handler answers
 * with a jansson value (json_t is in http.h's API, so jansson's flags come
 * with the module), and the llhttp-based request path compiled in; a
 * declared shape (awith/schema.h, in the same module) checked. */
#include <awith/http.h>
#include <awith/schema.h>

#include <jansson.h>
#include <stdio.h>

static int hello(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	json_t *body = json_pack("{s:s}", "message", "Hello, World!");
	int rc = aw_http_json(res, 200, body);
	json_decref(body);
	return rc;
}

struct point {
	int x;
	const char *label;
};
static const aw_field point_fields[] = {
	AW_F_INT(struct point, x, .required = true, AW_MIN(0)),
	AW_F_STRING(struct point, label, AW_LEN(1, 10)),
};
static const aw_schema point_schema = AW_SCHEMA(struct point, "Point", point_fields);

int main(void)
{
	if (aw_schema_check(&point_schema, false) != 0)
		return 1;
	aw_app *app;
	if (aw_app_new(&app, "modules") < 0)
		return 1;
	int rc = aw_app_route(app, "GET", "/", hello, NULL);
	aw_app_free(app);
	json_t *v = json_pack("{s:i}", "n", 1);
	printf("http: %d %s\n", rc, v ? "json" : "no json");
	json_decref(v);
	return rc == 0 ? 0 : 1;
}
