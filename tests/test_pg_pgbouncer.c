/* SPDX-License-Identifier: MIT */
/* Through pgbouncer in transaction mode (PGBOUNCER_URL, started by
 * tests/check_pgbouncer.sh with two server connections for many clients):
 * with aw_pg_opts.transaction_pooler the pg suite's transaction,
 * parameters and pipelining cases work (no named statement is left on a
 * server connection), and what transaction pooling cannot offer (LISTEN,
 * SET, PREPARE, session advisory locks) is refused before it is sent,
 * with -ENOTSUP and a message that says what to do instead. */
#include "pg_util.h"

AW_TEST_REQUIRE_ENV("PGBOUNCER_URL", "AW_PG_REQUIRED");

static const char *bouncer(void)
{
	return getenv("PGBOUNCER_URL");
}

/* A statement whose rows are not wanted, on the pool. */
static int pool_exec(aw_pg_pool *p, const char *sql)
{
	aw_pg_result *r = NULL;
	int rc = aw_pg_pool_query(p, &r, sql, AW_PG_NOARGS);
	aw_pg_result_free(r);
	return rc;
}

static aw_pg_opts pooled_opts(void)
{
	aw_pg_opts o;
	aw_pg_opts_default(&o);
	o.transaction_pooler = true;
	return o;
}

typedef struct txarg {
	aw_pg_pool *pool;
	int id;
	int rc;
} txarg;

/* Insert two rows in a committed transaction and one in a rolled-back one. */
static int tx_task(void *arg)
{
	txarg *t = arg;
	char id[16];
	snprintf(id, sizeof id, "%d", t->id);
	aw_pg_acquire a;
	aw_pg_tx tx;
	AW_WITH(aw_pg_acquire_init(&a, t->pool)) {
		for (int round = 0; round < 5; round++) {
			AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
				/* SET LOCAL is the transaction's: fine here */
				PCHECK_RC(aw_pg_exec(a.conn, NULL, "SET LOCAL statement_timeout = '5s'", AW_PG_NOARGS), 0);
				PCHECK_RC(aw_pg_exec(a.conn, NULL, "INSERT INTO pgb_rows (task, v) VALUES ($1::int, 1)",
						     AW_PG_ARGS(id)), 0);
				PCHECK_RC(aw_pg_exec(a.conn, NULL, "INSERT INTO pgb_rows (task, v) VALUES ($1::int, 2)",
						     AW_PG_ARGS(id)), 0);
			}
			PCHECK_RC(aw_error_pending(), 0);
			AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
				PCHECK_RC(aw_pg_exec(a.conn, NULL, "INSERT INTO pgb_rows (task, v) VALUES ($1::int, 3)",
						     AW_PG_ARGS(id)), 0);
				(void)!aw_raise(-EINTR, "roll it back");
			}
			PCHECK(aw_error_pending() == -EINTR);   /* rolled back, and handled here */
			aw_error_clear();
		}
		PCHECK(aw_pg_conn_cached(a.conn) == 0);
	}
	return 0;
}

static int transactions_main(void *arg)
{
	(void)arg;
	aw_pg_opts co = pooled_opts();
	aw_pg_pool *pool;
	aw_pg_pool_opts po = { .dsn = bouncer(), .conn = &co, .max_size = 6 };
	PCHECK_RC(aw_pg_pool_open(&pool, &po), 0);
	PCHECK_RC(pool_exec(pool, "DROP TABLE IF EXISTS pgb_rows"), 0);
	PCHECK_RC(pool_exec(pool, "CREATE TABLE pgb_rows (task int, v int)"), 0);
	txarg t[6];
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 6; i++) {
			t[i] = (txarg){ pool, i, 0 };
			PCHECK_RC(aw_group_spawn(&g, tx_task, &t[i], "tx"), 0);
		}
	}
	PCHECK_RC(aw_error_pending(), 0);
	aw_pg_result *r;
	PCHECK_RC(aw_pg_pool_query(pool, &r, "SELECT count(*), count(*) FILTER (WHERE v = 3) FROM pgb_rows",
				   AW_PG_NOARGS), 0);
	PCHECK_STR(aw_pg_text(r, 0, 0), "60");
	PCHECK_STR(aw_pg_text(r, 0, 1), "0");
	aw_pg_result_free(r);
	PCHECK_RC(pool_exec(pool, "DROP TABLE pgb_rows"), 0);
	PCHECK_RC(aw_pg_pool_close(pool), 0);
	return 0;
}

AW_TEST(transactions_run_through_pgbouncer)
{
	PG_RUN(transactions_main, NULL);
}

typedef struct piparg {
	aw_pg_pool *pool;
	int i;
} piparg;

static int pipe_task(void *arg)
{
	piparg *a = arg;
	char n[16], want[16];
	snprintf(n, sizeof n, "%d", a->i);
	snprintf(want, sizeof want, "%d", a->i * 2);
	aw_pg_result *r;
	PCHECK_RC(aw_pg_pool_query(a->pool, &r, "SELECT $1::int * 2", AW_PG_ARGS(n)), 0);
	PCHECK_STR(aw_pg_text(r, 0, 0), want);
	aw_pg_result_free(r);
	return 0;
}

static int pipeline_main(void *arg)
{
	(void)arg;
	aw_pg_opts co = pooled_opts();
	aw_pg_pool *pool;
	aw_pg_pool_opts po = { .dsn = bouncer(), .conn = &co, .max_size = 2, .pipeline = true };
	PCHECK_RC(aw_pg_pool_open(&pool, &po), 0);
	piparg a[60];
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 60; i++) {
			a[i] = (piparg){ pool, i };
			PCHECK_RC(aw_group_spawn(&g, pipe_task, &a[i], "q"), 0);
		}
	}
	PCHECK_RC(aw_error_pending(), 0);
	/* what the pipeline refuses, it refuses too */
	PCHECK_RC(pool_exec(pool, "SET search_path = public"), -ENOTSUP);
	PCHECK_RC(aw_pg_pool_close(pool), 0);
	return 0;
}

AW_TEST(pipelining_runs_through_pgbouncer)
{
	PG_RUN(pipeline_main, NULL);
}

static int listen_main(void *arg)
{
	(void)arg;
	aw_pg_opts co = pooled_opts();
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, bouncer(), &co), 0);
	static const char *const chans[] = { "jobs", NULL };
	aw_pg_listener l;
	int rc = 0;
	aw_pg_notification *item;
	AW_FOR(item, aw_pg_listen_init(&l, c, chans)) {
		(void)item;
		rc = 1;   /* never: the enter fails */
		break;
	}
	PCHECK(rc == 0);
	PCHECK_RC(aw_error_pending(), -ENOTSUP);
	PCHECK(pg_error_mentions("LISTEN needs a session of its own"));
	/* the statement form too; the connection still serves */
	PCHECK_RC(aw_pg_exec(c, NULL, "LISTEN jobs", AW_PG_NOARGS), -ENOTSUP);
	PCHECK(pg_error_mentions("transaction-mode pooler"));
	PCHECK_RC(aw_pg_exec(c, NULL, "  /* hi */ listen jobs", AW_PG_NOARGS), -ENOTSUP);
	PCHECK_RC(aw_pg_exec(c, NULL, "SELECT 1", AW_PG_NOARGS), 0);
	aw_pg_conn_close(c);
	return 0;
}

AW_TEST(listen_is_refused_with_a_clear_error)
{
	PG_RUN(listen_main, NULL);
}

static int session_main(void *arg)
{
	(void)arg;
	aw_pg_opts co = pooled_opts();
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, bouncer(), &co), 0);
	PCHECK_RC(aw_pg_exec(c, NULL, "SET search_path = public", AW_PG_NOARGS), -ENOTSUP);
	PCHECK(pg_error_mentions("Use SET LOCAL inside a transaction"));
	PCHECK_RC(aw_pg_exec(c, NULL, "set session timezone = 'UTC'", AW_PG_NOARGS), -ENOTSUP);
	PCHECK_RC(aw_pg_exec(c, NULL, "PREPARE p AS SELECT 1", AW_PG_NOARGS), -ENOTSUP);
	PCHECK_RC(aw_pg_exec(c, NULL, "SELECT pg_advisory_lock(42)", AW_PG_NOARGS), -ENOTSUP);
	PCHECK(pg_error_mentions("pg_advisory_xact_lock"));
	PCHECK_RC(aw_pg_exec(c, NULL, "CREATE TEMP TABLE t (x int)", AW_PG_NOARGS), -ENOTSUP);
	PCHECK_RC(aw_pg_exec_script(c, "SET work_mem = '8MB'"), -ENOTSUP);
	aw_pg_tx tx;
	AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
		PCHECK_RC(aw_pg_exec(c, NULL, "SET LOCAL work_mem = '8MB'", AW_PG_NOARGS), 0);
		PCHECK_RC(aw_pg_exec(c, NULL, "SELECT pg_advisory_xact_lock(42)", AW_PG_NOARGS), 0);
		PCHECK_RC(aw_pg_exec(c, NULL, "CREATE TEMP TABLE t (x int) ON COMMIT DROP", AW_PG_NOARGS), 0);
	}
	PCHECK_RC(aw_error_pending(), 0);
	aw_pg_result *r;
	PCHECK_RC(aw_pg_query(c, &r, "SHOW work_mem", AW_PG_NOARGS), 0);
	PCHECK(strcmp(aw_pg_text(r, 0, 0), "8MB") != 0);   /* nothing leaked */
	aw_pg_result_free(r);
	aw_pg_conn_close(c);
	return 0;
}

AW_TEST(session_state_is_refused_before_it_is_sent)
{
	PG_RUN(session_main, NULL);
}
