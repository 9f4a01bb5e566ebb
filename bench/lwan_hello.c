/* SPDX-License-Identifier: MIT */
/*
 * lwan's peer of examples/hello_server for bench/http_bench.sh: GET /
 * answers {"message":"Hello, World!"} (27 bytes, application/json) from a
 * handler, the way lwan's own src/samples/hello does (a static body set on
 * the response buffer), on 127.0.0.1:PORT with one worker thread and
 * keep-alive (lwan's default, 15 s idle timeout), access logging off.
 *
 *   lwan_hello PORT
 *
 * Not part of the awith build: lwan is not packaged in Debian, so
 * bench/http_bench.sh compiles this file against a liblwan.a built from
 * the lwan source it is given (LWAN_SRC), with the link line of lwan's own
 * hello sample. lwan's main thread only runs lwan's job thread (timers,
 * cache expiry); the requests are served by the one worker thread.
 */
#include <stdio.h>
#include <stdlib.h>

#include "lwan.h"

static enum lwan_http_status hello_json(struct lwan_request *request
                                        __attribute__((unused)),
                                        struct lwan_response *response,
                                        void *data __attribute__((unused)))
{
	static const char body[] = "{\"message\":\"Hello, World!\"}";

	response->mime_type = "application/json";
	lwan_strbuf_set_static(response->buffer, body, sizeof(body) - 1);
	return HTTP_OK;
}

int main(int argc, char *argv[])
{
	static char listener[64];
	struct lwan_config config = *lwan_get_default_config();
	const struct lwan_url_map map[] = {
		{.prefix = "/", .handler = hello_json},
		{.prefix = NULL},
	};
	struct lwan l;
	long port;

	if (argc != 2 || (port = strtol(argv[1], NULL, 10)) <= 0 || port > 65535) {
		fprintf(stderr, "usage: %s PORT\n", argv[0]);
		return 2;
	}
	snprintf(listener, sizeof(listener), "127.0.0.1:%ld", port);
	config.listener = listener;
	config.n_threads = 1;
	config.quiet = 1;

	lwan_init_with_config(&l, &config);
	lwan_set_url_map(&l, map);
	lwan_main_loop(&l);
	lwan_shutdown(&l);
	return 0;
}
