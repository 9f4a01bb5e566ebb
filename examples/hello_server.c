/* SPDX-License-Identifier: MIT */
/*
 * hello_server — the smallest awith web app: FastAPI's hello world.
 *
 *     app = FastAPI()
 *
 *     @app.get("/")
 *     async def root():
 *         return {"message": "Hello, World!"}
 *
 *     uvicorn.run(app, host="127.0.0.1", port=8000)
 *
 * How it maps:
 *   - FastAPI() is aw_app_new; @app.get("/") is aw_app_route;
 *   - returning a dict is the fast JSON writer: the body is written straight
 *     into the response buffer, with no DOM (aw_http_json with a jansson
 *     value works too);
 *   - uvicorn.run is aw_app_main: --port N (default 8000), --host H
 *     (default 127.0.0.1), --workers N (processes sharing the port with
 *     SO_REUSEPORT). It serves until SIGINT or SIGTERM, then stops
 *     accepting, lets requests in flight finish, and returns.
 *
 *     $ ./hello_server --port 8000 &
 *     $ curl -s http://127.0.0.1:8000/
 *     {"message":"Hello, World!"}
 *
 * The same port speaks HTTP/2 to a client that opens with its preface
 * (h2c with prior knowledge):
 *
 *     $ curl -s --http2-prior-knowledge http://127.0.0.1:8000/
 *     {"message":"Hello, World!"}
 *     $ h2load -n 10000 -c 10 -m 10 http://127.0.0.1:8000/
 *
 * With --metrics /metrics (or AWITH_METRICS=/metrics) it also serves
 * Prometheus metrics there (docs/observability.md). With --middleware
 * every request goes through the stack of awith/middleware.h that
 * bench/http_bench.sh measures: request id (X-Request-ID on every
 * response), Server-Timing, gzip (this body is under its 1 KiB minimum:
 * what a small JSON answer costs with the stack on).
 *
 * HTTPS beside it (uvicorn's --ssl-certfile/--ssl-keyfile): with
 * --tls-cert and --tls-key it also listens with TLS on --tls-port
 * (default 8443; --port off for TLS only); SIGHUP reloads the certificate
 * without dropping connections (docs/http.md, "HTTPS"):
 *
 *     $ ./hello_server --tls-cert fullchain.pem --tls-key privkey.pem &
 *     $ curl -s --cacert ca.pem https://localhost:8443/
 *     {"message":"Hello, World!"}
 */
#include <awith/http.h>
#include <awith/middleware.h>

#include <string.h>

static int root(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "message");
	aw_jw_string(w, "Hello, World!");
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "hello") < 0)
		return 1;
	if (aw_app_route(app, "GET", "/", root, NULL)) {
		aw_error_print(stderr, aw_error_current());
		return 1;
	}
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--middleware")) {
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof *argv);
			argc--;
			aw_http_mw *id, *timing, *gz;
			if (aw_http_mw_request_id(&id, NULL) || aw_app_use(app, id) || aw_http_mw_timing(&timing, NULL) ||
			    aw_app_use(app, timing) || aw_http_mw_gzip(&gz, NULL) || aw_app_use(app, gz)) {
				aw_error_print(stderr, aw_error_current());
				aw_app_free(app);
				return 1;
			}
			break;
		}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
