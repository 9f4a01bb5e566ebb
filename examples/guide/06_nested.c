/* SPDX-License-Identifier: MIT */
/*
 * 06_nested — the seed's nested blocks:
 *
 *     async with aiohttp.ClientSession() as session:
 *         async with session.get(url) as response:
 *             data = await response.text()
 *
 * and the same two managers in one statement (`async with a, b:`).
 *
 *     06_nested URL
 */
#include <awith/client.h>

#include <stdio.h>

static int amain(void *arg)
{
	const char *url = arg;

	aw_client_session session;
	AW_WITH(aw_client_session_init(&session, NULL)) {
		aw_client_response response;
		AW_WITH(aw_client_get_init(&response, &session, url)) {
			const char *data = aw_client_response_text(&response);
			printf("nested: %d %s\n", aw_client_response_status(&response), data);
		}
	}
	if (aw_error_pending())
		goto failed;

	/* One statement: the session is entered first, the request second;
	 * they exit in reverse order. */
	aw_client_response r;
	AW_WITH(aw_client_session_init(&session, NULL), aw_client_get_init(&r, &session, url)) {
		printf("one statement: %d %s\n", aw_client_response_status(&r), aw_client_response_text(&r));
	}

	if (!aw_error_pending())
		return 0;
failed:   /* a refused connection, a timeout ...: the error is in flight */
	aw_error_print(stderr, aw_error_current());
	aw_error_clear();
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s URL\n", argv[0]);
		return 2;
	}
	return aw_run(amain, argv[1]) == 0 ? 0 : 1;
}
