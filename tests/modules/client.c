/* SPDX-License-Identifier: MIT */
/* A client program (tests/check_modules.sh): built with
 * `pkg-config awith-client` only. A session (libcurl) and a GET to a port
 * nobody listens on: the refusal comes back as an error. */
#include <awith/client.h>

#include <jansson.h>
#include <stdio.h>

static int task(void *arg)
{
	const char *url = arg;
	int got = 0;
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .timeout = AW_SEC(10) })) {
		aw_client_response r;
		AW_WITH(aw_client_get_init(&r, &s, url)) {
			json_t *data;
			if (aw_client_response_json(&r, &data) == 0)
				json_decref(data);
		}
	}
	got = aw_error_pending();
	aw_error_clear();
	printf("client: GET %s: %s\n", url, aw_strerror(got));
	return got < 0 ? 0 : 1;   /* refused: an error, as it should be */
}

int main(int argc, char **argv)
{
	return aw_run(task, argc > 1 ? argv[1] : "http://127.0.0.1:9/") == 0 ? 0 : 1;
}
