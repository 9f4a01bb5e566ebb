/* SPDX-License-Identifier: MIT */
/*
 * pg_pool_bench — the seed's query through the pool from many tasks:
 * `SELECT * FROM users` (or --query SQL) in a loop, for a fixed time, and
 * the rate printed as "queries/s: N". bench/pg_bench.sh runs it next to
 * asyncpg's pool and pgbench on the same server.
 *
 *     pg_pool_bench --url URL [--tasks 64] [--conns 8] [--seconds 5]
 *                   [--query SQL] [--pipeline] [--stmt-cache N]
 *
 * Each task: acquire (AW_WITH), run the query (prepared, from the
 * connection's statement cache), walk every row and column (as a client
 * that uses the rows would), release. With --pipeline the tasks use
 * aw_pg_pool_query on a pool in pipeline mode instead.
 */
#include <awith/pg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench {
	const char *url, *query;
	int tasks, conns, seconds, stmt_cache;
	bool pipeline;
	aw_pg_pool *pool;
	aw_time stop;
	uint64_t queries, rows, errors;
	size_t bytes;
} bench;

static void use_rows(bench *b, aw_pg_result *r)
{
	int n = aw_pg_nrows(r), m = aw_pg_ncols(r);
	for (int i = 0; i < n; i++)
		for (int j = 0; j < m; j++)
			b->bytes += aw_pg_len(r, i, j);
	b->rows += (uint64_t)n;
}

static int worker(void *arg)
{
	bench *b = arg;
	while (aw_now() < b->stop) {
		aw_pg_result *r = NULL;
		int rc;
		if (b->pipeline) {
			rc = aw_pg_pool_query(b->pool, &r, b->query, AW_PG_NOARGS);
		} else {
			aw_pg_acquire a;
			rc = -1;
			AW_WITH(aw_pg_acquire_init(&a, b->pool)) {
				rc = aw_pg_query(a.conn, &r, b->query, AW_PG_NOARGS);
			}
		}
		if (rc < 0 || !r) {
			if (b->errors++ == 0)
				aw_error_print(stderr, aw_error_current());
			aw_error_clear();
			if (b->errors > 1000)
				return -EIO;
			continue;
		}
		use_rows(b, r);
		aw_pg_result_free(r);
		b->queries++;
	}
	return 0;
}

static int run(void *arg)
{
	bench *b = arg;
	aw_pg_opts co;
	aw_pg_opts_default(&co);
	if (b->stmt_cache >= 0)
		co.stmt_cache = b->stmt_cache;
	aw_pg_pool_opts o = { .dsn = b->url, .conn = &co, .min_size = (size_t)b->conns,
			      .max_size = (size_t)b->conns, .pipeline = b->pipeline };
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		b->pool = pm.pool;
		/* Warm up: every connection prepares the statement. */
		b->stop = aw_deadline_after(AW_MS(500));
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < b->tasks; i++)
				if (aw_group_spawn(&g, worker, b, "bench") < 0)
					break;
		}
		if (aw_error_pending())
			break;
		b->queries = b->rows = b->errors = 0;
		aw_time t0 = aw_now();
		b->stop = t0 + AW_SEC(b->seconds);
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < b->tasks; i++)
				if (aw_group_spawn(&g, worker, b, "bench") < 0)
					break;
		}
		if (aw_error_pending())
			break;
		double secs = (double)(aw_now() - t0) / 1e9;
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		printf("queries/s: %.0f\n", (double)b->queries / secs);
		printf("rows/query: %.1f, errors: %llu, connections: %zu, acquire wait p50 %.1f us p99 %.1f us\n",
		       b->queries ? (double)b->rows / (double)b->queries : 0.0, (unsigned long long)b->errors, st.size,
		       st.wait_p50 / 1e3, st.wait_p99 / 1e3);
	}
	return aw_error_pending();
}

static void usage(void)
{
	fprintf(stderr, "usage: pg_pool_bench --url URL [--tasks N] [--conns N] [--seconds N] [--query SQL] "
			"[--pipeline] [--stmt-cache N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	bench b = { .url = getenv("DATABASE_URL"), .query = "SELECT * FROM users", .tasks = 64, .conns = 8,
		    .seconds = 5, .stmt_cache = -1 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--pipeline")) {
			b.pipeline = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--url"))
			b.url = v;
		else if (!strcmp(a, "--query"))
			b.query = v;
		else if (!strcmp(a, "--tasks"))
			b.tasks = atoi(v);
		else if (!strcmp(a, "--conns"))
			b.conns = atoi(v);
		else if (!strcmp(a, "--seconds"))
			b.seconds = atoi(v);
		else if (!strcmp(a, "--stmt-cache"))
			b.stmt_cache = atoi(v);
		else
			usage();
	}
	if (!b.url || b.tasks < 1 || b.conns < 1 || b.seconds < 1)
		usage();
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.stack_size = 64 * 1024;
	int rc = aw_run_config(&cfg, run, &b);
	if (rc < 0) {
		fprintf(stderr, "pg_pool_bench: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
