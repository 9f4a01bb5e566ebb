/* SPDX-License-Identifier: MIT */
/*
 * pg_pool — the pool on its own: open it, run queries from many tasks at
 * once, use a transaction, read the pool's statistics, close it.
 *
 *     pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=4)
 *     async def worker(i):
 *         async with pool.acquire() as conn:
 *             return await conn.fetchval("SELECT $1::int * $1::int", i)
 *     squares = await asyncio.gather(*(worker(i) for i in range(1, 21)))
 *     async with pool.acquire() as conn:
 *         async with conn.transaction():
 *             await conn.execute("INSERT INTO ...")
 *     await pool.close()
 *
 *     $ DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db ./pg_pool
 *     20 tasks, 4 connections: sum of squares 1..20 = 2870
 *     transaction: 3 rows inserted, rolled back on error: 0 rows left
 *     pool: size 4, idle 4, 21 acquires, p50 wait ...
 */
#include <awith/pg.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct job {
	aw_pg_pool *pool;
	int i;
	long square;
} job;

/* One task: a pooled connection for one query. */
static int worker(void *arg)
{
	job *j = arg;
	char n[16];
	snprintf(n, sizeof n, "%d", j->i);
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, j->pool)) {
		aw_pg_rows q;
		AW_WITH(aw_pg_rows_init(&q, a.conn, "SELECT $1::int * $1::int", AW_PG_ARGS(n))) {
			int64_t v;
			if (aw_pg_get_int(q.res, 0, 0, &v) == 0)
				j->square = (long)v;
		}
	}
	return aw_error_pending();
}

/* A transaction that fails half way: nothing it did stays. */
static int insert_then_fail(aw_pg_conn *c)
{
	aw_pg_tx tx;
	AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
		for (int i = 0; i < 3; i++)
			if (aw_pg_exec(c, NULL, "INSERT INTO pg_pool_demo VALUES ($1)", AW_PG_ARGS("x")) < 0)
				break;
		return aw_raise(-ECANCELED, "changed my mind");   /* the exit rolls back */
	}
	return aw_error_pending();
}

static int run(void *arg)
{
	(void)arg;
	const char *url = getenv("DATABASE_URL");
	if (!url)
		return aw_raise(-EINVAL, "DATABASE_URL is not set");
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &(aw_pg_pool_opts){ .dsn = url, .min_size = 2, .max_size = 4 })) {
		job jobs[20];
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 20; i++) {
				jobs[i] = (job){ pm.pool, i + 1, 0 };
				if (aw_group_spawn(&g, worker, &jobs[i], "worker") < 0)
					break;
			}
		}
		if (aw_error_pending())
			break;
		long sum = 0;
		for (int i = 0; i < 20; i++)
			sum += jobs[i].square;
		printf("20 tasks, 4 connections: sum of squares 1..20 = %ld\n", sum);

		aw_pg_acquire a;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			if (aw_pg_exec_script(a.conn, "CREATE TEMP TABLE pg_pool_demo(v text)") < 0)
				break;
			int rc = insert_then_fail(a.conn);
			aw_error_clear();
			aw_pg_result *r;
			if (aw_pg_query(a.conn, &r, "SELECT count(*) FROM pg_pool_demo", AW_PG_NOARGS) < 0)
				break;
			printf("transaction: 3 rows inserted, rolled back on error (%s): %s rows left\n", aw_strerror(rc),
			       aw_pg_text(r, 0, 0));
			aw_pg_result_free(r);
		}
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		printf("pool: size %zu, idle %zu, %llu acquires, p50 wait %.3f ms, max wait %.3f ms\n", st.size,
		       st.idle, (unsigned long long)st.acquires, st.wait_p50 / 1e6, st.wait_max / 1e6);
	}
	return aw_error_pending();
}

int main(void)
{
	int rc = aw_run(run, NULL);
	if (rc < 0) {
		fprintf(stderr, "pg_pool: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
