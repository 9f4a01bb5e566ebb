/* SPDX-License-Identifier: MIT */
/* A pg program (tests/check_modules.sh): built with `pkg-config awith-pg`
 * only. With DATABASE_URL it runs a query and converts the result to JSON
 * (json_t is in pg.h's API); without one, a connection to a socket
 * directory that does not exist fails with an error, as it should. */
#include <awith/pg.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static int task(void *arg)
{
	(void)arg;
	const char *url = getenv("DATABASE_URL");
	aw_pg_conn *c;
	if (!url) {
		int rc = aw_pg_connect(&c, "host=/nonexistent/awith dbname=x connect_timeout=2", NULL);
		aw_error_clear();
		printf("pg: no server: %s\n", aw_strerror(rc));
		if (rc == 0)
			aw_pg_conn_close(c);
		return rc < 0 ? 0 : 1;
	}
	if (aw_pg_connect(&c, url, NULL) < 0)
		return 1;
	int ok = 0;
	aw_pg_result *r;
	if (aw_pg_query(c, &r, "SELECT 41 + 1 AS answer", AW_PG_NOARGS) == 0) {
		json_t *j;
		if (aw_pg_result_to_json(r, &j) == 0) {
			char *text = json_dumps(j, JSON_COMPACT);
			printf("pg: %s\n", text ? text : "?");
			ok = text != NULL;
			free(text);
			json_decref(j);
		}
		aw_pg_result_free(r);
	}
	aw_pg_conn_close(c);
	aw_error_clear();
	return ok ? 0 : 1;
}

int main(void)
{
	return aw_run(task, NULL) == 0 ? 0 : 1;
}
