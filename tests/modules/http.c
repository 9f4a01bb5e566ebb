/* SPDX-License-Identifier: MIT */
/* An http program (tests/check_modules.sh): built with
 * `pkg-config awith-http` only. An app with a route whose handler answers
 * with a jansson value (json_t is in http.h's API, so jansson's flags come
 * with the module), and the llhttp-based request path compiled in. */
#include <awith/http.h>

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

int main(void)
{
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
