/* SPDX-License-Identifier: MIT */
/* The seed's fetch_data: a client session, a GET, the JSON printed.
 *
 *     async with aiohttp.ClientSession() as session:
 *         async with session.get(url) as response:
 *             return await response.json()
 *
 *     $ fetch_data http://127.0.0.1:8000/
 *     {
 *       "message": "Hello, World!"
 *     }
 *
 * Exit status 0 on success; 1 with the error printed on failure (a refused
 * connection, a timeout, a 4xx/5xx status, a body that is not JSON).
 */
#include <awith/client.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static int fetch_data(void *arg)
{
	const char *url = arg;
	aw_client_session session;
	AW_WITH(aw_client_session_init(&session, &(aw_client_opts){ .timeout = AW_SEC(30) })) {
		aw_client_response response;
		AW_WITH(aw_client_get_init(&response, &session, url)) {
			json_t *data;
			if (aw_client_response_raise_for_status(&response) < 0 ||
			    aw_client_response_json(&response, &data) < 0)
				break;   /* the error is in flight: the blocks pass it on */
			json_dumpf(data, stdout, JSON_INDENT(2));
			putchar('\n');
			json_decref(data);
		}
	}
	int rc = aw_error_pending();
	if (rc) {
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s URL\n", argv[0]);
		return 2;
	}
	return aw_run(fetch_data, argv[1]) == 0 ? 0 : 1;
}
