/* SPDX-License-Identifier: MIT */
/* Compiled by tests/check_api.sh with -Wall -Werror: each CASE ignores the
 * result of one waiting call (the C form of forgetting to `await`) and must
 * fail to compile; CASE 0 uses every result and must compile. The calls go
 * through the same-named macros that record the caller's location
 * (AW__AT), which must not hide the attribute. Never linked or run. */
#include <awith/core.h>
#include <awith/io.h>
#include <awith/http.h>
#include <awith/pg.h>

int aw_api_must_use(aw_lock *l, aw_queue *q, aw_task *t, aw_stream *s, aw_pg_conn *c, aw_http_request *req,
		    const aw_http_dep *dep);
int aw_api_must_use(aw_lock *l, aw_queue *q, aw_task *t, aw_stream *s, aw_pg_conn *c, aw_http_request *req,
		    const aw_http_dep *dep)
{
	void *item = 0;
	(void)l; (void)q; (void)t; (void)s; (void)c; (void)req; (void)dep; (void)item;
#if CASE == 0
	int rc = aw_sleep(AW_MS(1));
	if (rc == 0)
		rc = aw_yield();
	if (rc == 0)
		rc = aw_lock_acquire(l);
	if (rc == 0)
		rc = aw_queue_get(q, &item);
	if (rc == 0)
		rc = aw_task_join(t);
	if (rc == 0)
		rc = aw_stream_write(s, "x", 1, AW_NEVER);
	if (rc == 0)
		rc = aw_pg_exec(c, NULL, "SELECT 1", AW_PG_NOARGS);
	if (rc == 0)
		rc = aw_http_depends(req, dep, &item);
	return rc;
#elif CASE == 1
	aw_sleep(AW_MS(1));
#elif CASE == 2
	aw_yield();
#elif CASE == 3
	aw_lock_acquire(l);
#elif CASE == 4
	aw_queue_get(q, &item);
#elif CASE == 5
	aw_task_join(t);
#elif CASE == 6
	aw_stream_write(s, "x", 1, AW_NEVER);
#elif CASE == 7
	aw_pg_exec(c, NULL, "SELECT 1", AW_PG_NOARGS);
#elif CASE == 8
	aw_http_depends(req, dep, &item);
#elif CASE == 9
	aw_sleep_until(AW_NEVER);
#endif
	return 0;
}
