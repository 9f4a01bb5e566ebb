/* SPDX-License-Identifier: MIT */
/* Tests: the PostgreSQL pool (src/pg/pool.c) and pipelining
 * (src/pg/pipeline.c), against the real server in DATABASE_URL, including
 * faults: terminated backends, a server restart, refused connections, the
 * server's connection limit. */
#include "pg_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED");

static aw_pg_pool_opts base_opts(size_t min, size_t max)
{
	aw_pg_pool_opts o = { .dsn = getenv("DATABASE_URL"), .min_size = min, .max_size = max };
	return o;
}

static int pid_of(aw_pg_conn *c) { return aw_pg_conn_pid(c); }

/* ---- settings ---------------------------------------------------------------- */

static int invalid_main(void *arg)
{
	(void)arg;
	PCHECK(PG_URL());
	aw_pg_pool *p = (aw_pg_pool *)1;
	PCHECK_RC(aw_pg_pool_open(&p, NULL), -EINVAL);
	PCHECK(p == NULL);
	aw_pg_pool_opts o = base_opts(0, 4);
	o.dsn = NULL;
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("dsn"));
	o = base_opts(5, 2);
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("min_size"));
	o = base_opts(0, 2);
	o.acquire_timeout = -1;
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("acquire_timeout"));
	o = base_opts(0, 2);
	o.idle_timeout = -5;
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("idle_timeout"));
	o = base_opts(0, 20000);
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	aw_pg_opts co;
	aw_pg_opts_default(&co);
	co.stmt_cache = 99999;
	o = base_opts(0, 2);
	o.conn = &co;
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("stmt_cache"));
	aw_error_clear();
	return 0;
}

AW_TEST(pg_pool_rejects_invalid_settings) { PG_RUN(invalid_main, NULL); }

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	bind(s, (struct sockaddr *)&a, sizeof a);
	getsockname(s, (struct sockaddr *)&a, &len);
	close(s);
	return ntohs(a.sin_port);
}

static int refused_main(void *arg)
{
	(void)arg;
	char url[128];
	snprintf(url, sizeof url, "postgresql://awith:awith_pw@127.0.0.1:%d/awith_test", free_port());
	aw_pg_pool_opts o = { .dsn = url, .min_size = 2, .max_size = 4 };
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), -ECONNREFUSED);
	PCHECK(aw_ledger_count() == 0);
	/* With min_size 0 the open succeeds and acquire reports the refusal. */
	o.min_size = 0;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_pool_acquire(p, &c), -ECONNREFUSED);
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.size == 0 && st.in_use == 0);
	aw_error_clear();
	PCHECK_RC(aw_pg_pool_close(p), 0);
	return 0;
}

AW_TEST(pg_pool_server_refusing_at_start_fails_the_open_with_its_error) { PG_RUN(refused_main, NULL); }

/* ---- acquire order ------------------------------------------------------------------ */

static int lifo_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 4);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_conn *a, *b, *c;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &a), 0);
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &b), 0);
		int pa = pid_of(a), pb = pid_of(b);
		PCHECK(pa != pb);
		aw_pg_pool_release(pm.pool, a);
		aw_pg_pool_release(pm.pool, b);
		/* The most recently released comes back first. */
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), 0);
		PCHECK(pid_of(c) == pb);
		aw_pg_pool_release(pm.pool, c);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size == 2 && st.idle == 2 && st.in_use == 0 && st.acquires == 3 && st.opened == 2);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_hands_out_the_most_recently_released_connection_first) { PG_RUN(lifo_main, NULL); }

typedef struct fifo_ctx {
	aw_pg_pool *p;
	aw_evlog log;
	int id;
} fifo_ctx;

typedef struct fifo_arg {
	fifo_ctx *x;
	int id;
} fifo_arg;

static int fifo_waiter(void *arg)
{
	fifo_arg *a = arg;
	aw_pg_acquire acq;
	AW_WITH(aw_pg_acquire_init(&acq, a->x->p)) {
		aw_evlog_add(&a->x->log, "got%d", a->id);
		if (aw_sleep(AW_MS(5)) < 0)
			break;
	}
	return aw_error_pending();
}

/* Spawn n tasks running fn, each queued behind the previous one (the
 * pool has no free connection), and check that all n wait. */
static int queue_in_order(fifo_ctx *x, int (*fn)(void *), int n, aw_task **t, fifo_arg *args)
{
	for (int i = 0; i < n; i++) {
		args[i] = (fifo_arg){ x, i };
		PCHECK_RC(aw_spawn(&t[i], fn, &args[i], "waiter"), 0);
		PCHECK_RC(aw_sleep(AW_MS(2)), 0);   /* queue in this order */
	}
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(x->p, &st);
	PCHECK(st.waiters == (size_t)n);
	return 0;
}

static int fifo_main(void *arg)
{
	fifo_ctx *x = arg;
	aw_pg_pool_opts o = base_opts(1, 1);
	PCHECK(o.dsn);
	PCHECK_RC(aw_pg_pool_open(&x->p, &o), 0);
	aw_pg_conn *held;
	PCHECK_RC(aw_pg_pool_acquire(x->p, &held), 0);
	aw_task *t[5];
	fifo_arg args[5];
	PCHECK_RC(queue_in_order(x, fifo_waiter, 5, t, args), 0);
	aw_pg_pool_stats st;
	aw_pg_pool_release(x->p, held);
	for (int i = 0; i < 5; i++)
		PCHECK_RC(aw_task_join(t[i]), 0);
	PCHECK_STR(x->log.s, "got0 got1 got2 got3 got4");
	aw_pg_pool_stats_get(x->p, &st);
	PCHECK(st.size == 1 && st.waiters == 0 && st.acquires == 6);
	PCHECK(st.wait_max >= AW_MS(5));
	PCHECK_RC(aw_pg_pool_close(x->p), 0);
	return 0;
}

AW_TEST(pg_pool_waiters_are_served_in_fifo_order)
{
	fifo_ctx x = { 0 };
	PG_RUN(fifo_main, &x);
}

static int acquire_timeout_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(1, 1);   /* connected at open: a connect
	                                         under ASan on a busy machine
	                                         can take longer than 150 ms */
	PCHECK(o.dsn);
	o.acquire_timeout = AW_MS(150);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_pg_conn *a, *b;
	PCHECK_RC(aw_pg_pool_acquire(p, &a), 0);
	aw_time t0 = aw_now();
	PCHECK_RC(aw_pg_pool_acquire(p, &b), -ETIMEDOUT);
	PCHECK(aw_now() - t0 >= AW_MS(140));
	PCHECK(pg_error_mentions("acquire timed out"));
	aw_error_clear();
	/* An enclosing deadline applies too, and is reported as its own. */
	aw_scope s;
	int rc = 1;
	AW_WITH(aw_move_on_init(&s, AW_MS(50))) {
		rc = aw_pg_pool_acquire(p, &b);
		if (rc < 0)
			break;
	}
	PCHECK(s.fired);
	PCHECK_RC(rc, -ETIMEDOUT);
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.waiters == 0 && st.in_use == 1);
	aw_pg_pool_release(p, a);
	PCHECK_RC(aw_pg_pool_acquire(p, &b), 0);
	aw_pg_pool_release(p, b);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	return 0;
}

AW_TEST(pg_pool_acquire_timeout_is_etimedout_and_leaves_no_waiter) { PG_RUN(acquire_timeout_main, NULL); }

/* ---- release ------------------------------------------------------------------------ */

typedef struct holder_ctx {
	aw_pg_pool *p;
	bool inside;
} holder_ctx;

static int holder(void *arg)
{
	holder_ctx *h = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, h->p)) {
		PCHECK_RC(pg_exec_rows(a.conn, "BEGIN", AW_PG_NOARGS), 0);
		h->inside = true;
		if (pg_exec_rows(a.conn, "SELECT pg_sleep(30)", AW_PG_NOARGS) < 0)
			break;
	}
	return 0;
}

static int cancelled_holder_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 2);
	PCHECK(o.dsn);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	holder_ctx h = { p, false };
	aw_task *t;
	PCHECK_RC(aw_spawn(&t, holder, &h, "holder"), 0);
	/* Until the holder is inside its transaction (a connect under ASan on
	 * a busy machine can take longer than any fixed wait). */
	for (int i = 0; i < 500 && !h.inside; i++)
		PCHECK_RC(aw_sleep(AW_MS(10)), 0);
	PCHECK(h.inside);
	PCHECK_RC(aw_sleep(AW_MS(50)), 0);   /* now in pg_sleep */
	aw_time t0 = aw_now();
	aw_task_cancel(t);
	PCHECK_RC(aw_task_join(t), 0);
	PCHECK(aw_now() - t0 < AW_SEC(5));
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	/* Back in the pool, clean: the query was cancelled on the server and
	 * the transaction rolled back. */
	PCHECK(st.in_use == 0 && st.idle == 1 && st.discarded == 0);
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_pool_acquire(p, &c), 0);
	PCHECK(aw_pg_conn_tx_status(c) == 'I');
	aw_pg_pool_release(p, c);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	return 0;
}

AW_TEST(pg_pool_cancelled_holder_gives_the_connection_back_clean) { PG_RUN(cancelled_holder_main, NULL); }

static int rollback_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_acquire a;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK_RC(aw_pg_exec_script(a.conn, "CREATE TABLE IF NOT EXISTS t_pool_rb(v int)"), 0);
			PCHECK_RC(pg_exec_rows(a.conn, "TRUNCATE t_pool_rb", AW_PG_NOARGS), 0);
			PCHECK_RC(pg_exec_rows(a.conn, "BEGIN", AW_PG_NOARGS), 0);
			PCHECK_RC(pg_exec_rows(a.conn, "INSERT INTO t_pool_rb VALUES (1)", AW_PG_NOARGS), 1);
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'T');
		}   /* released with the transaction open */
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
			aw_pg_result *r;
			PCHECK_RC(aw_pg_query(a.conn, &r, "SELECT count(*) FROM t_pool_rb", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "0");
			aw_pg_result_free(r);
			/* A failed transaction is rolled back too. */
			PCHECK_RC(pg_exec_rows(a.conn, "BEGIN", AW_PG_NOARGS), 0);
			PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
			aw_error_clear();
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'E');
		}
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
			PCHECK_RC(aw_pg_exec_script(a.conn, "DROP TABLE t_pool_rb"), 0);
		}
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.discarded == 0 && st.opened == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_release_rolls_back_an_open_or_failed_transaction) { PG_RUN(rollback_main, NULL); }

static int reset_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_acquire a;
		int pid = 0;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			pid = pid_of(a.conn);
			PCHECK_RC(pg_exec_rows(a.conn, "SET application_name = 'changed'", AW_PG_NOARGS), 0);
			PCHECK_RC(pg_exec_rows(a.conn, "LISTEN somewhere", AW_PG_NOARGS), 0);
		}
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK(pid_of(a.conn) == pid);   /* the same connection, reset */
			aw_pg_result *r;
			PCHECK_RC(aw_pg_query(a.conn, &r, "SELECT current_setting('application_name'), "
					      "(SELECT count(*) FROM pg_listening_channels())", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "awith");
			PCHECK_STR(aw_pg_text(r, 0, 1), "0");
			aw_pg_result_free(r);
		}
	}
	PCHECK(aw_error_pending() == 0);

	/* reset = "": session state survives (the caller's choice). */
	o.reset = "";
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_acquire a;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK_RC(pg_exec_rows(a.conn, "SET application_name = 'kept'", AW_PG_NOARGS), 0);
		}
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			aw_pg_result *r;
			PCHECK_RC(aw_pg_query(a.conn, &r, "SHOW application_name", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "kept");
			aw_pg_result_free(r);
		}
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_release_resets_session_state_changed_by_the_holder) { PG_RUN(reset_main, NULL); }

static int reset_fails_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 2);
	PCHECK(o.dsn);
	o.reset = "SELECT 1/0";
	o.reset_always = true;
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_acquire a;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1", AW_PG_NOARGS), 1);
		}
		/* The block itself did not fail: the reset's failure only costs
		 * the connection. */
		PCHECK(aw_error_pending() == 0);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size == 0 && st.discarded == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_discards_a_connection_whose_reset_fails) { PG_RUN(reset_fails_main, NULL); }

/* ---- broken connections -------------------------------------------------------------- */

static int terminate(const char *pid)
{
	aw_pg_conn *k;
	int rc = aw_pg_connect(&k, getenv("DATABASE_URL_SUPER"), NULL);
	if (rc < 0)
		return rc;
	aw_pg_result *r;
	rc = aw_pg_query(k, &r, "SELECT pg_terminate_backend($1::int)", AW_PG_ARGS(pid));
	if (rc == 0)
		rc = strcmp(aw_pg_text(r, 0, 0), "t") ? -ESRCH : 0;
	aw_pg_result_free(r);
	aw_pg_conn_close(k);
	return rc;
}

static int idle_terminated_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(1, 2);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_conn *c;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), 0);
		char pid[16];
		snprintf(pid, sizeof pid, "%d", pid_of(c));
		aw_pg_pool_release(pm.pool, c);
		PCHECK_RC(terminate(pid), 0);
		PCHECK_RC(aw_sleep(AW_MS(100)), 0);   /* the FATAL arrives on the idle socket */
		/* The next acquire does not hand out the dead connection. */
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), 0);
		PCHECK(pid_of(c) != atoi(pid));
		PCHECK_RC(pg_exec_rows(c, "SELECT 1", AW_PG_NOARGS), 1);
		aw_pg_pool_release(pm.pool, c);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.discarded == 1 && st.size == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_notices_an_idle_connection_terminated_by_the_server) { PG_RUN(idle_terminated_main, NULL); }

static int sweep_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(2, 2);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_conn *a, *b;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &a), 0);
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &b), 0);
		char pa[16], pb[16];
		snprintf(pa, sizeof pa, "%d", pid_of(a));
		snprintf(pb, sizeof pb, "%d", pid_of(b));
		aw_pg_pool_release(pm.pool, a);
		aw_pg_pool_release(pm.pool, b);
		PCHECK_RC(terminate(pa), 0);
		PCHECK_RC(terminate(pb), 0);
		/* Without any acquire, the maintenance sweep drops both and
		 * opens new ones up to min_size. */
		PCHECK_RC(aw_sleep(AW_MS(2500)), 0);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.discarded == 2);
		PCHECK(st.size == 2 && st.idle == 2 && st.opened == 4);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_watches_idle_connections_and_refills_min_size) { PG_RUN(sweep_main, NULL); }

static int victim(void *arg)
{
	aw_pg_pool *p = arg;
	aw_pg_acquire a;
	int rc = 1;
	AW_WITH(aw_pg_acquire_init(&a, p)) {
		rc = pg_exec_rows(a.conn, "SELECT pg_sleep(20)", AW_PG_NOARGS);
		if (rc < 0)
			break;
	}
	aw_error_clear();
	return rc;
}

static int terminated_mid_query_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 2);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, victim, pm.pool, "victim"), 0);
		PCHECK_RC(aw_sleep(AW_MS(200)), 0);
		aw_pg_conn *k;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &k), 0);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(k, &r, "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(20)' "
				      "AND state = 'active'", AW_PG_NOARGS), 0);
		PCHECK(aw_pg_nrows(r) == 1);
		char pid[16];
		snprintf(pid, sizeof pid, "%s", aw_pg_text(r, 0, 0));
		aw_pg_result_free(r);
		aw_pg_pool_release(pm.pool, k);
		PCHECK_RC(terminate(pid), 0);
		PCHECK_RC(aw_task_join(t), -ECONNRESET);
		aw_error_clear();
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.in_use == 0 && st.discarded == 1 && st.size == 1);
		/* The pool goes on. */
		PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 5", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "5");
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_backend_terminated_mid_query_is_an_error_and_the_connection_is_dropped)
{
	PG_RUN(terminated_mid_query_main, NULL);
}

static int retire_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	o.max_queries = 3;
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		int pids[6];
		for (int i = 0; i < 6; i++) {
			aw_pg_acquire a;
			AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
				pids[i] = pid_of(a.conn);
				PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1", AW_PG_NOARGS), 1);
			}
		}
		PCHECK(pids[0] == pids[1] && pids[1] == pids[2]);
		PCHECK(pids[3] != pids[2] && pids[3] == pids[5]);
	}
	PCHECK(aw_error_pending() == 0);
	o.max_queries = 0;
	o.max_lifetime = AW_MS(300);
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_conn *c;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), 0);
		int first = pid_of(c);
		aw_pg_pool_release(pm.pool, c);
		PCHECK_RC(aw_sleep(AW_MS(400)), 0);
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), 0);
		PCHECK(pid_of(c) != first);
		aw_pg_pool_release(pm.pool, c);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_retires_connections_after_max_queries_and_max_lifetime) { PG_RUN(retire_main, NULL); }

typedef struct burst_ctx {
	aw_pg_pool *p;
	int ok;
} burst_ctx;

static int burst_task(void *arg)
{
	burst_ctx *b = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, b->p)) {
		if (pg_exec_rows(a.conn, "SELECT pg_sleep(0.05)", AW_PG_NOARGS) == 1)
			b->ok++;
	}
	return aw_error_pending();
}

static int idle_timeout_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(1, 4);
	PCHECK(o.dsn);
	o.idle_timeout = AW_MS(200);
	o.max_connecting = 4;   /* all four open at once (the default 2 would let
	                           a release serve the fourth) */
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		burst_ctx b = { pm.pool, 0 };
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 4; i++)
				PCHECK_RC(aw_group_spawn(&g, burst_task, &b, "burst"), 0);
		}
		PCHECK(b.ok == 4);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size == 4 && st.idle == 4);
		PCHECK_RC(aw_sleep(AW_MS(2300)), 0);
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_idle_timeout_shrinks_the_pool_to_min_size) { PG_RUN(idle_timeout_main, NULL); }

/* ---- concurrency and close ----------------------------------------------------------------- */

typedef struct many_ctx {
	aw_pg_pool *p;
	int bad;
	size_t max_seen;
	bool pool_query;
} many_ctx;

static int many_task(void *arg)
{
	many_ctx *m = arg;
	for (int i = 0; i < 20; i++) {
		char v[16];
		snprintf(v, sizeof v, "%d", i * 7);
		aw_pg_result *r = NULL;
		int rc;
		if (m->pool_query) {
			rc = aw_pg_pool_query(m->p, &r, "SELECT $1::int * 2", AW_PG_ARGS(v));
		} else {
			aw_pg_acquire a;
			rc = -1;
			AW_WITH(aw_pg_acquire_init(&a, m->p)) {
				rc = aw_pg_query(a.conn, &r, "SELECT $1::int * 2", AW_PG_ARGS(v));
				aw_pg_pool_stats st;
				aw_pg_pool_stats_get(m->p, &st);
				if (st.size > m->max_seen)
					m->max_seen = st.size;
			}
		}
		if (rc < 0 || !r || atoi(aw_pg_text(r, 0, 0)) != i * 14)
			m->bad++;
		aw_pg_result_free(r);
	}
	return 0;
}

static int many_main(void *arg)
{
	many_ctx *m = arg;
	aw_pg_pool_opts o = base_opts(0, 8);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		m->p = pm.pool;
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 200; i++)
				PCHECK_RC(aw_group_spawn(&g, many_task, m, "q"), 0);
		}
		PCHECK(m->bad == 0);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size <= 8 && st.in_use == 0 && st.waiters == 0);
		PCHECK(st.acquires == 4000);
		PCHECK(m->max_seen <= 8);
		PCHECK(st.wait_p50 <= st.wait_p90 && st.wait_p90 <= st.wait_p99 && st.wait_p99 <= st.wait_max);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_200_tasks_share_8_connections)
{
	many_ctx m = { 0 };
	PG_RUN(many_main, &m);
}

static int closer_holder(void *arg)
{
	aw_pg_pool *p = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, p)) {
		if (aw_sleep(AW_SEC(30)) < 0)   /* ignores the pool closing: cut off */
			break;
	}
	aw_error_clear();
	return 0;
}

static int close_waiter(void *arg)
{
	aw_pg_pool *p = arg;
	aw_pg_conn *c;
	int rc = aw_pg_pool_acquire(p, &c);
	aw_error_clear();
	return rc;
}

static int close_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	o.close_grace = AW_MS(200);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_task *h, *w;
	PCHECK_RC(aw_spawn(&h, closer_holder, p, "holder"), 0);
	/* Until the holder has its connection (connects are slow under ASan). */
	aw_pg_pool_stats st;
	for (int i = 0; i < 500; i++) {
		aw_pg_pool_stats_get(p, &st);
		if (st.in_use == 1)
			break;
		PCHECK_RC(aw_sleep(AW_MS(10)), 0);
	}
	PCHECK(st.in_use == 1);
	PCHECK_RC(aw_spawn(&w, close_waiter, p, "waiter"), 0);
	PCHECK_RC(aw_sleep(AW_MS(20)), 0);
	aw_time t0 = aw_now();
	PCHECK_RC(aw_pg_pool_close(p), -ETIMEDOUT);
	aw_time took = aw_now() - t0;
	PCHECK(took >= AW_MS(190) && took < AW_SEC(3));
	PCHECK(pg_error_mentions("grace"));
	aw_error_clear();
	/* The waiter was told the pool closed; the holder was cancelled and
	 * gave its connection back (so nothing leaks). */
	PCHECK_RC(aw_task_join(w), -AW_ECLOSED);
	PCHECK_RC(aw_task_join(h), 0);
	PCHECK(aw_ledger_count() == 0);
	return 0;
}

AW_TEST(pg_pool_close_waits_for_holders_then_cancels_them_and_wakes_waiters) { PG_RUN(close_main, NULL); }

static int close_clean_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(3, 3);
	PCHECK(o.dsn);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.size == 3 && st.idle == 3);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	/* Every server process of ours is gone. */
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, getenv("DATABASE_URL"), NULL), 0);
	PCHECK_RC(aw_sleep(AW_MS(100)), 0);
	aw_pg_result *r;
	PCHECK_RC(aw_pg_query(c, &r, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'awith' "
			      "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
			      "AND client_port IS NOT NULL AND backend_start > now() - interval '5 seconds' "
			      "AND state IS NOT NULL AND query NOT LIKE '%pg_sleep%'", AW_PG_NOARGS), 0);
	int left = atoi(aw_pg_text(r, 0, 0));
	aw_pg_result_free(r);
	aw_pg_conn_close(c);
	PCHECK(left == 0);
	return 0;
}

AW_TEST(pg_pool_close_closes_every_connection) { PG_RUN(close_clean_main, NULL); }

static int leak_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 2);
	PCHECK(o.dsn);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_pool_acquire(p, &c), 0);
	return 0;   /* neither released nor closed */
}

AW_TEST(pg_pool_never_closed_and_connection_never_released_are_reported)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *log = open_memstream(&buf, &len);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	int rc = aw_run_config(&cfg, leak_main, NULL);
	fclose(log);
	CHECK_EQ(rc, 0);
	int ok = strstr(buf, "pg pool") && strstr(buf, "acquired from the pool") && strstr(buf, "test_pg_pool.c");
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "report: %s", buf);
	free(buf);
}

/* ---- pipelining ------------------------------------------------------------------------------ */

static int pipeline_main(void *arg)
{
	many_ctx *m = arg;
	aw_pg_pool_opts o = base_opts(0, 4);
	PCHECK(o.dsn);
	o.pipeline = true;
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		m->p = pm.pool;
		m->pool_query = true;
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 200; i++)
				PCHECK_RC(aw_group_spawn(&g, many_task, m, "q"), 0);
		}
		PCHECK(m->bad == 0);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.size <= 4);
		/* Fewer acquires than queries: the queries shared pipes. */
		PCHECK(st.acquires < 4000);

		/* One query's error does not disturb the others in flight. */
		aw_pg_result *r;
		PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
		PCHECK(pg_error_mentions("22012"));
		aw_error_clear();
		PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'fine'", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "fine");
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_pipeline_mode_shares_connections_between_tasks)
{
	many_ctx m = { 0 };
	PG_RUN(pipeline_main, &m);
}

typedef struct mixed_ctx {
	aw_pg_pool *p;
	int good, failed;
} mixed_ctx;

static int mixed_task(void *arg)
{
	mixed_ctx *x = arg;
	for (int i = 0; i < 30; i++) {
		aw_pg_result *r = NULL;
		bool bad = i % 7 == 3;
		int rc = aw_pg_pool_query(x->p, &r, bad ? "SELECT * FROM no_such_table_xyz" : "SELECT $1::text",
					  bad ? 0 : 1, bad ? NULL : (const char *const[]){ "ok" });
		if (bad && rc == -AW_EPG)
			x->failed++;
		else if (!bad && rc == 0 && !strcmp(aw_pg_text(r, 0, 0), "ok"))
			x->good++;
		aw_error_clear();
		aw_pg_result_free(r);
	}
	return 0;
}

static int abandon_task(void *arg)
{
	aw_pg_pool *p = arg;
	aw_pg_result *r = NULL;
	int rc = aw_pg_pool_query(p, &r, "SELECT pg_sleep(0.3)", AW_PG_NOARGS);
	aw_pg_result_free(r);
	aw_error_clear();
	return rc;
}

static int pipeline_errors_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 2);
	PCHECK(o.dsn);
	o.pipeline = true;
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		mixed_ctx x = { pm.pool, 0, 0 };
		/* A task cancelled while its query is in flight abandons it;
		 * the queries after it on the same pipe are not disturbed. */
		aw_task *ab;
		PCHECK_RC(aw_spawn(&ab, abandon_task, pm.pool, "abandon"), 0);
		PCHECK_RC(aw_sleep(AW_MS(50)), 0);
		aw_task_cancel(ab);
		PCHECK_RC(aw_task_join(ab), -ECANCELED);
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 20; i++)
				PCHECK_RC(aw_group_spawn(&g, mixed_task, &x, "mixed"), 0);
		}
		/* 30 queries per task: indexes 3, 10, 17, 24 are bad. */
		PCHECK(x.failed == 20 * 4);
		PCHECK(x.good == 20 * 26);
		aw_pg_result *r;
		PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'after'", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "after");
		aw_pg_result_free(r);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_pipeline_isolates_errors_and_abandoned_queries) { PG_RUN(pipeline_errors_main, NULL); }

/* ---- faults: the server's connection limit, a server restart --------------------------------- */

static int limit_main(void *arg)
{
	(void)arg;
	aw_pg_conn *su;
	PCHECK(PG_URL_SUPER());
	PCHECK_RC(aw_pg_connect(&su, getenv("DATABASE_URL_SUPER"), NULL), 0);
	PCHECK_RC(aw_pg_exec_script(su, "DROP ROLE IF EXISTS awith_limited; "
				       "CREATE ROLE awith_limited LOGIN PASSWORD 'lim_pw' CONNECTION LIMIT 2"), 0);
	char *url = pg_url_with(getenv("DATABASE_URL"), "awith_limited", "lim_pw", NULL);
	aw_pg_pool_opts o = { .dsn = url, .max_size = 4 };
	aw_pg_pool *p;
	int rc = aw_pg_pool_open(&p, &o);
	PCHECK_RC(rc, 0);
	aw_pg_conn *a, *b, *c;
	PCHECK_RC(aw_pg_pool_acquire(p, &a), 0);
	PCHECK_RC(aw_pg_pool_acquire(p, &b), 0);
	PCHECK_RC(aw_pg_pool_acquire(p, &c), -AW_EPG_TOO_MANY);
	PCHECK(pg_error_mentions("too many connections"));
	aw_error_clear();
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.size == 2 && st.in_use == 2);
	aw_pg_pool_release(p, a);
	PCHECK_RC(aw_pg_pool_acquire(p, &c), 0);   /* the freed one */
	aw_pg_pool_release(p, b);
	aw_pg_pool_release(p, c);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	free(url);
	PCHECK_RC(aw_pg_exec_script(su, "DROP ROLE awith_limited"), 0);
	aw_pg_conn_close(su);
	return 0;
}

AW_TEST(pg_pool_server_connection_limit_is_a_clear_error_and_the_pool_stays_consistent)
{
	PG_RUN(limit_main, NULL);
}

/* The server's own max_connections (the private cluster: 100, of which 3
 * are reserved for superusers): acquire until the server says no. */
static int max_connections_main(void *arg)
{
	(void)arg;
	PCHECK(PG_URL());
	aw_pg_conn *probe;
	aw_pg_result *r;
	PCHECK_RC(aw_pg_connect(&probe, getenv("DATABASE_URL"), NULL), 0);
	PCHECK_RC(aw_pg_query(probe, &r, "SELECT current_setting('max_connections')::int", AW_PG_NOARGS), 0);
	int limit = atoi(aw_pg_text(r, 0, 0));
	aw_pg_result_free(r);
	aw_pg_conn_close(probe);
	PCHECK(limit > 0 && limit <= 2000);
	aw_pg_pool_opts o = base_opts(0, (size_t)limit + 5);
	o.acquire_timeout = AW_SEC(30);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	aw_pg_conn **held = calloc((size_t)limit + 5, sizeof *held);
	int n = 0, rc = 0;
	while (n < limit + 5 && (rc = aw_pg_pool_acquire(p, &held[n])) == 0)
		n++;
	PCHECK_RC(rc, -AW_EPG_TOO_MANY);
	PCHECK(pg_error_mentions("too many clients") || pg_error_mentions("reserved"));
	aw_error_clear();
	PCHECK(n >= 1 && n < limit);
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.size == (size_t)n && st.in_use == (size_t)n && st.opening == 0);
	for (int i = 0; i < n; i++)
		aw_pg_pool_release(p, held[i]);
	free(held);
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_pool_acquire(p, &c), 0);
	PCHECK_RC(pg_exec_rows(c, "SELECT 1", AW_PG_NOARGS), 1);
	aw_pg_pool_release(p, c);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	return 0;
}

AW_TEST(pg_pool_server_max_connections_reached_is_a_clear_error_and_nothing_leaks)
{
	PG_RUN(max_connections_main, NULL);
}

typedef struct restart_ctx {
	aw_pg_pool *p;
	bool stop;
	int ok_before, ok_after, errors;
	bool restarted;
	int bad_code;
} restart_ctx;

static int restart_worker(void *arg)
{
	restart_ctx *x = arg;
	while (!x->stop) {
		aw_pg_result *r = NULL;
		int rc = aw_pg_pool_query(x->p, &r, "SELECT 1", AW_PG_NOARGS);
		if (rc == 0) {
			if (x->restarted)
				x->ok_after++;
			else
				x->ok_before++;
		} else {
			x->errors++;
			if (rc != -ECONNRESET && rc != -ECONNREFUSED && rc != -EAGAIN && rc != -AW_EPG)
				x->bad_code = rc;
			aw_error_clear();
		}
		aw_pg_result_free(r);
		if (aw_sleep(AW_MS(rc == 0 ? 2 : 20)) < 0)
			break;
	}
	return 0;
}

static int run_script(void *arg)
{
	return system((const char *)arg) == 0 ? 0 : -EIO;
}

static int restart_main(void *arg)
{
	restart_ctx *x = arg;
	aw_pg_pool_opts o = base_opts(2, 4);
	PCHECK(o.dsn);
	const char *script = getenv("AW_PG_CLUSTER_SCRIPT"), *dir = getenv("AW_PG_CLUSTER_DIR");
	PCHECK(script && dir);
	char down[1024], up[1024];
	snprintf(down, sizeof down, "'%s' down '%s' fast >/dev/null 2>&1", script, dir);
	snprintf(up, sizeof up, "'%s' up '%s' >/dev/null 2>&1", script, dir);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 6; i++)
				PCHECK_RC(aw_group_spawn(&g, restart_worker, x, "worker"), 0);
			PCHECK_RC(aw_sleep(AW_MS(300)), 0);
			PCHECK_RC(aw_to_thread(run_script, down), 0);
			PCHECK_RC(aw_sleep(AW_MS(300)), 0);   /* queries fail meanwhile */
			PCHECK_RC(aw_to_thread(run_script, up), 0);
			x->restarted = true;
			PCHECK_RC(aw_sleep(AW_MS(1500)), 0);
			x->stop = true;
		}
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.in_use == 0);
		PCHECK(st.discarded >= 2);
	}
	PCHECK(x->ok_before > 0);
	PCHECK(x->errors > 0);
	PCHECK(x->ok_after > 0);
	PCHECK(x->bad_code == 0);
	return aw_error_pending();
}

AW_TEST(pg_pool_recovers_by_itself_after_the_server_restarts)
{
	restart_ctx x = { 0 };
	PG_RUN(restart_main, &x);
	/* Whatever happened, leave the server running for the next tests. */
	const char *script = getenv("AW_PG_CLUSTER_SCRIPT"), *dir = getenv("AW_PG_CLUSTER_DIR");
	if (script && dir) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "'%s' status '%s' >/dev/null 2>&1 || '%s' up '%s' >/dev/null 2>&1", script,
			 dir, script, dir);
		CHECK(system(cmd) == 0);
	}
}

/* ---- slots, session state and pipes: edge cases ------------------------------------------- */

static int slot_waiter(void *arg)
{
	fifo_arg *a = arg;
	aw_pg_acquire acq;
	AW_WITH(aw_pg_acquire_init(&acq, a->x->p)) {
		aw_evlog_add(&a->x->log, "got%d", a->id);
		if (pg_exec_rows(acq.conn, "SELECT 1", AW_PG_NOARGS) < 0)
			break;
	}
	return aw_error_pending();
}

/* A discarded connection frees a slot for the first waiter, which opens a
 * connection at once even though others are still queued behind it (it
 * used to queue again behind them, and the slot stayed unused until every
 * acquire timed out). */
static int freed_slot_main(void *arg)
{
	fifo_ctx *x = arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	o.max_queries = 1;                 /* every release discards */
	o.acquire_timeout = AW_SEC(3);
	PCHECK_RC(aw_pg_pool_open(&x->p, &o), 0);
	aw_pg_conn *held;
	PCHECK_RC(aw_pg_pool_acquire(x->p, &held), 0);
	PCHECK_RC(pg_exec_rows(held, "SELECT 1", AW_PG_NOARGS), 1);
	aw_task *t[3];
	fifo_arg args[3];
	PCHECK_RC(queue_in_order(x, slot_waiter, 3, t, args), 0);
	aw_pg_pool_stats st;
	aw_time t0 = aw_now();
	aw_pg_pool_release(x->p, held);
	for (int i = 0; i < 3; i++)
		PCHECK_RC(aw_task_join(t[i]), 0);
	PCHECK(aw_now() - t0 < AW_SEC(2));
	PCHECK_STR(x->log.s, "got0 got1 got2");
	aw_pg_pool_stats_get(x->p, &st);
	PCHECK(st.discarded == 4 && st.opened == 4 && st.waiters == 0 && st.size == 0);
	PCHECK_RC(aw_pg_pool_close(x->p), 0);
	return 0;
}

AW_TEST(pg_pool_freed_slot_goes_to_the_first_waiter_while_others_queue)
{
	fifo_ctx x = { 0 };
	PG_RUN(freed_slot_main, &x);
}

/* A batch cancelled in its last statement: the SET before it completed
 * (and was committed: the batch is one implicit transaction), seen only by
 * the drain after the cancel request. The pool still resets the session
 * before the next holder. */
static int drained_set_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_acquire a;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			aw_scope s;
			int rc = 1;
			AW_WITH(aw_move_on_init(&s, AW_SEC(30))) {
				aw_scope_cancel(&s);
				/* pg_sleep(1): should the cancel request reach the
				 * server before the batch does, it is ignored, and
				 * the drain still ends soon. */
				rc = aw_pg_exec_script(a.conn, "SET application_name = 'aw_left_behind'; "
						       "COMMIT; SELECT pg_sleep(1)");
			}
			PCHECK_RC(rc, -ECANCELED);
			PCHECK(aw_pg_conn_ok(a.conn));
		}
		PCHECK_RC(aw_error_pending(), 0);
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			aw_pg_result *r;
			PCHECK_RC(aw_pg_query(a.conn, &r, "SHOW application_name", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "awith");
			aw_pg_result_free(r);
		}
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.discarded == 0 && st.opened == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_resets_session_state_changed_before_a_cancelled_statement) { PG_RUN(drained_set_main, NULL); }

/* Notifications the holder's session got and never read do not reach the
 * next holder's listener. */
typedef struct fresh_sender {
	aw_pg_conn *c;
	const char *chan;
	int rc;
} fresh_sender;

static int send_fresh(void *arg)
{
	fresh_sender *f = arg;
	f->rc = aw_sleep(AW_MS(100));
	if (f->rc == 0)
		f->rc = aw_pg_notify(f->c, f->chan, "fresh");
	return f->rc;
}

static int stale_notify_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	char chan[64];
	snprintf(chan, sizeof chan, "aw_stale_%d", (int)getpid());
	aw_pg_pool_mgr pm;
	aw_pg_connection other;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o), aw_pg_connection_init(&other, getenv("DATABASE_URL"), NULL)) {
		aw_pg_acquire a;
		int pid = 0;
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			pid = aw_pg_conn_pid(a.conn);
			char sql[128];
			snprintf(sql, sizeof sql, "LISTEN %s", chan);
			PCHECK_RC(aw_pg_exec_script(a.conn, sql), 0);
			/* To itself: delivered with the statement's answer, queued
			 * in libpq, never read. */
			PCHECK_RC(aw_pg_notify(a.conn, chan, "stale"), 0);
		}
		PCHECK_RC(aw_error_pending(), 0);
		AW_WITH(aw_pg_acquire_init(&a, pm.pool)) {
			PCHECK(aw_pg_conn_pid(a.conn) == pid);   /* the same session */
			fresh_sender f = { other.conn, chan, 1 };
			aw_task *t;
			PCHECK_RC(aw_spawn(&t, send_fresh, &f, "sender"), 0);
			const char *chans[] = { chan, NULL };
			aw_pg_listener l;
			aw_pg_notification *n;
			int got = 0;
			AW_FOR(n, aw_pg_listen_init(&l, a.conn, chans)) {
				got++;
				PCHECK_STR(n->payload, "fresh");
				break;
			}
			PCHECK_RC(aw_error_pending(), 0);
			PCHECK(got == 1);
			PCHECK_RC(aw_task_join(t), 0);
		}
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_release_drops_notifications_nobody_read) { PG_RUN(stale_notify_main, NULL); }

/* Pipelining: a pool close whose grace runs out cancels the pump that
 * holds the pipe's connection, not the task that happened to open the
 * pipe (which may be gone by then): the query in flight fails with
 * -ECANCELED, and close returns after the grace period. */
typedef struct pipe_sleeper {
	aw_pg_pool *p;
	int rc;
} pipe_sleeper;

static int pipe_opener(void *arg)
{
	pipe_sleeper *s = arg;
	aw_pg_result *r;
	s->rc = aw_pg_pool_query(s->p, &r, "SELECT 1", AW_PG_NOARGS);
	if (s->rc == 0)
		aw_pg_result_free(r);
	return 0;   /* gone: the pipe it opened lives on */
}

static int pipe_sleep_query(void *arg)
{
	pipe_sleeper *s = arg;
	aw_pg_result *r = NULL;
	s->rc = aw_pg_pool_query(s->p, &r, "SELECT pg_sleep(19)", AW_PG_NOARGS);
	if (s->rc == 0)
		aw_pg_result_free(r);
	aw_error_clear();
	return 0;
}

static int pipe_close_main(void *arg)
{
	(void)arg;
	aw_pg_pool_opts o = base_opts(0, 1);
	PCHECK(o.dsn);
	o.pipeline = true;
	o.close_grace = AW_MS(200);
	aw_pg_pool *p;
	PCHECK_RC(aw_pg_pool_open(&p, &o), 0);
	pipe_sleeper opener = { p, 1 }, sleeper = { p, 1 };
	aw_task *t1, *t2;
	PCHECK_RC(aw_spawn(&t1, pipe_opener, &opener, "opener"), 0);
	PCHECK_RC(aw_task_join(t1), 0);          /* the opener is gone */
	PCHECK_RC(opener.rc, 0);
	PCHECK_RC(aw_spawn(&t2, pipe_sleep_query, &sleeper, "sleeper"), 0);
	PCHECK_RC(aw_sleep(AW_MS(20)), 0);       /* within PIPE_IDLE: same pipe */
	aw_pg_pool_stats st;
	aw_pg_pool_stats_get(p, &st);
	PCHECK(st.in_use == 1);
	aw_time t0 = aw_now();
	PCHECK_RC(aw_pg_pool_close(p), -ETIMEDOUT);
	aw_time took = aw_now() - t0;
	PCHECK(took >= AW_MS(190) && took < AW_SEC(3));
	aw_error_clear();
	PCHECK_RC(aw_task_join(t2), 0);
	PCHECK_RC(sleeper.rc, -ECANCELED);
	PCHECK(aw_ledger_count() == 0);
	/* The server was told to stop: no backend sleeps on for nobody. */
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, getenv("DATABASE_URL"), NULL), 0);
	int64_t left = -1;
	for (int i = 0; i < 50 && left != 0; i++) {
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(c, &r, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
				      "AND query LIKE 'SELECT pg_sleep(19)%'", AW_PG_NOARGS), 0);
		PCHECK_RC(aw_pg_get_int(r, 0, 0, &left), 0);
		aw_pg_result_free(r);
		if (left)
			PCHECK_RC(aw_sleep(AW_MS(20)), 0);
	}
	aw_pg_conn_close(c);
	PCHECK(left == 0);
	return 0;
}

AW_TEST(pg_pool_pipeline_close_after_grace_cancels_the_pump_not_the_opener) { PG_RUN(pipe_close_main, NULL); }

/* Pipelining with a full statement cache: the DEALLOCATE of the evicted
 * statement runs in a segment of its own, so its failure (the statement
 * was deallocated behind the cache's back) does not fail the query; and a
 * cached statement deallocated behind the cache's back is prepared again.
 * The same holds without pipelining. */
static int pipe_dealloc_main(void *arg)
{
	(void)arg;
	aw_pg_opts co;
	aw_pg_opts_default(&co);
	co.stmt_cache = 2;
	for (int pipelined = 0; pipelined < 2; pipelined++) {
		aw_pg_pool_opts o = base_opts(0, 1);
		PCHECK(o.dsn);
		o.pipeline = pipelined;
		o.conn = &co;
		aw_pg_pool_mgr pm;
		AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
			aw_pg_result *r;
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 1", AW_PG_NOARGS), 0);   /* aw_1 */
			aw_pg_result_free(r);
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "DEALLOCATE aw_1", AW_PG_NOARGS), 0);
			aw_pg_result_free(r);
			/* The cache is full: aw_1 is evicted, its DEALLOCATE fails. */
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'after'", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "after");
			aw_pg_result_free(r);
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'again'", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "again");
			aw_pg_result_free(r);
			/* The cache is now aw_4 ('again'), aw_3 ('after'). A statement
			 * still cached but deallocated by hand: the query using it
			 * prepares it again and runs (once), in both modes. */
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "DEALLOCATE aw_4", AW_PG_NOARGS), 0);
			aw_pg_result_free(r);
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'again'", AW_PG_NOARGS), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "again");
			aw_pg_result_free(r);
			PCHECK_RC(aw_pg_pool_query(pm.pool, &r, "SELECT 'again'", AW_PG_NOARGS), 0);
			aw_pg_result_free(r);
			aw_pg_pool_stats st;
			aw_pg_pool_stats_get(pm.pool, &st);
			PCHECK(st.opened == 1 && st.discarded == 0);
		}
		PCHECK_RC(aw_error_pending(), 0);
	}
	return 0;
}

AW_TEST(pg_pool_statement_deallocated_behind_the_cache_does_not_fail_the_next_query)
{
	PG_RUN(pipe_dealloc_main, NULL);
}
