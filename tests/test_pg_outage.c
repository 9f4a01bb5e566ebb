/* SPDX-License-Identifier: MIT */
/* Tests: the pg layer under outages (issue 12, docs/reliability.md,
 * "PostgreSQL outages"): the pool backs off while the server is down and
 * fails acquires fast with the cause, recovers within a second of the
 * server accepting again, replaces a connection found dead before its
 * holder's first statement went out, and never retries a statement that
 * reached the server. Against the private cluster, which these tests stop
 * and start (scripts/pg_cluster.sh through AW_PG_CLUSTER_SCRIPT and
 * AW_PG_CLUSTER_DIR): run serially. */
#include "pg_util.h"

#include <stdio.h>
#include <unistd.h>

AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED");

/* A check inside a task group's block: returning from there would leave
 * the group waiting for workers that never stop. Record the failure, run
 * `stop` (make the workers end) and leave the block. */
#define GCHECK(cond, stop)                                                        \
	if (!(cond)) {                                                            \
		aw_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);             \
		stop;                                                             \
		break;                                                            \
	}

static int run_script(void *arg)
{
	return system((const char *)arg) == 0 ? 0 : -EIO;
}

/* "down" or "up" of the private cluster, off the loop. */
static int cluster(const char *verb)
{
	const char *script = getenv("AW_PG_CLUSTER_SCRIPT"), *dir = getenv("AW_PG_CLUSTER_DIR");
	if (!script || !dir)
		return aw_raise(-EINVAL, "AW_PG_CLUSTER_SCRIPT / AW_PG_CLUSTER_DIR are not set");
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "'%s' %s '%s' %s >/dev/null 2>&1", script, verb, dir,
		 strcmp(verb, "down") ? "" : "fast");
	return aw_to_thread(run_script, cmd);
}

/* Whatever a test did, leave the server running for the next ones. */
static void ensure_up(void)
{
	const char *script = getenv("AW_PG_CLUSTER_SCRIPT"), *dir = getenv("AW_PG_CLUSTER_DIR");
	if (script && dir) {
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "'%s' status '%s' >/dev/null 2>&1 || '%s' up '%s' >/dev/null 2>&1",
			 script, dir, script, dir);
		if (system(cmd) != 0)
			aw_test_fail(__FILE__, __LINE__, "the server could not be started again");
	}
}

/* ---- the outage: no storm, fast failures, fast recovery ---------------------------------- */

typedef struct outage_ctx {
	aw_pg_pool *p;
	bool stop;
	bool down;                 /* the server is stopped (between down and up) */
	int ok, failed, failed_with_cause, bad_code;
	int slow_failures;         /* failed after more than 20 ms */
	aw_time fail_max, fail_sum, fast_max;
	aw_time up_at;             /* when "up" returned: the server accepts */
	aw_time first_ok_after_up;
} outage_ctx;

static int outage_worker(void *arg)
{
	outage_ctx *x = arg;
	while (!x->stop) {
		aw_time t0 = aw_now();
		aw_pg_conn *c;
		int rc = aw_pg_pool_acquire(x->p, &c);
		aw_time took = aw_now() - t0;
		if (rc == 0) {
			rc = (int)aw_pg_exec(c, NULL, "SELECT 1", AW_PG_NOARGS);
			aw_pg_pool_release(x->p, c);
		}
		if (rc >= 0) {
			x->ok++;
			if (x->up_at && !x->first_ok_after_up)
				x->first_ok_after_up = aw_now();
		} else {
			const aw_error *e = aw_error_current();
			if (x->down) {
				x->failed++;
				if (took > AW_MS(20))
					x->slow_failures++;
				if (took > x->fail_max)
					x->fail_max = took;
				x->fail_sum += took;
				/* A fast failure carries the connect's error as its
				 * cause, with the same code. */
				if (e && e->cause && e->cause->code == e->code && strstr(e->msg, "backing off")) {
					x->failed_with_cause++;
					if (took > x->fast_max)
						x->fast_max = took;
				}
			}
			if (rc != -ECONNREFUSED && rc != -ECONNRESET && rc != -EAGAIN && rc != -AW_EPG)
				x->bad_code = rc;
			aw_error_clear();
		}
		if (aw_sleep(AW_MS(1)) < 0)
			break;
	}
	return 0;
}

static int outage_main(void *arg)
{
	outage_ctx *x = arg;
	aw_pg_pool_opts o = { .dsn = PG_URL(), .max_size = 10, .acquire_timeout = AW_SEC(5) };
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		aw_group g;
		aw_pg_pool_stats before, during, after;
		aw_time down_at = 0, up_start = 0;
		AW_WITH(aw_group_init(&g)) {
			int spawned = 0;
			while (spawned < 50 && aw_group_spawn(&g, outage_worker, x, "worker") == 0)
				spawned++;
			GCHECK(spawned == 50, x->stop = true);
			/* Serving (connects are slow under ASan on a busy machine). */
			for (int i = 0; i < 1000 && x->ok < 50; i++)
				if (aw_sleep(AW_MS(10)) < 0)
					break;
			GCHECK(x->ok > 0, x->stop = true);
			x->down = true;
			GCHECK(cluster("down") == 0, x->stop = true);
			down_at = aw_now();
			aw_pg_pool_stats_get(pm.pool, &before);
			GCHECK(aw_sleep(AW_SEC(3)) == 0, x->stop = true);
			aw_pg_pool_stats_get(pm.pool, &during);
			up_start = aw_now();
			GCHECK(cluster("up") == 0, x->stop = true);
			x->up_at = aw_now();
			x->down = false;
			GCHECK(aw_sleep(AW_MS(1500)) == 0, x->stop = true);
			x->stop = true;
		}
		PCHECK(!aw_test_failed());
		aw_pg_pool_stats_get(pm.pool, &after);
		double secs = (double)(up_start - down_at) / 1e9;
		uint64_t attempts = during.connect_attempts - before.connect_attempts;
		printf("    outage %.2f s: %d acquires failed (%d fast, with the cause), %llu connect attempts "
		       "(%llu failed), fail latency mean %.3f ms max %.3f ms (fast ones: max %.3f ms), %d over 20 ms; first success %.3f s after the "
		       "server accepted again (up took %.2f s)\n",
		       secs, x->failed, x->failed_with_cause, (unsigned long long)attempts,
		       (unsigned long long)(during.connect_failures - before.connect_failures),
		       x->failed ? (double)x->fail_sum / x->failed / 1e6 : 0.0, (double)x->fail_max / 1e6,
		       (double)x->fast_max / 1e6, x->slow_failures, x->first_ok_after_up ? (double)(x->first_ok_after_up - x->up_at) / 1e9 : -1.0,
		       (double)(x->up_at - up_start) / 1e9);
		/* No storm: a handful of connects per second, not one per acquire. */
		PCHECK(x->failed > 1000);
		PCHECK(attempts <= 4 + (uint64_t)(10 * secs));
		PCHECK(during.failing);
		/* Fast: well under the 5 s acquire timeout, and with the cause. */
		/* (The few slow ones: acquires queued behind the connections
		 * that were in use when the server went down, or behind the
		 * first connects, before the pool knew.) */
		PCHECK(x->slow_failures < x->failed / 100);
		PCHECK(x->fail_max < AW_SEC(1));
		PCHECK(x->failed_with_cause > x->failed * 9 / 10);
		PCHECK(x->bad_code == 0);
		/* Recovery within a second of the server accepting. */
		PCHECK(x->first_ok_after_up > 0);
		PCHECK(x->first_ok_after_up - x->up_at < AW_SEC(1));
		PCHECK(!after.failing);
		PCHECK(after.in_use == 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_backs_off_while_the_server_is_down_and_recovers_within_a_second)
{
	outage_ctx x = { 0 };
	PG_RUN(outage_main, &x);
	ensure_up();
}

/* A refused pool open counts as one attempt, and the next acquire on a
 * pool whose server refuses fails fast with the connect error as cause. */
static int refused_main(void *arg)
{
	(void)arg;
	const char *url = PG_URL();
	PCHECK(url);
	/* A port nobody listens on: the private cluster's port + 1 is free
	 * unless something else took it; use a closed socket's port instead. */
	aw_pg_pool_opts o = { .dsn = "postgresql://awith@127.0.0.1:1/x", .max_size = 4,
			      .backoff_initial = AW_MS(200), .backoff_max = AW_MS(400) };
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		aw_pg_conn *c;
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), -ECONNREFUSED);
		aw_error_clear();
		for (int i = 0; i < 100; i++) {
			aw_time t0 = aw_now();
			int rc = aw_pg_pool_acquire(pm.pool, &c);
			PCHECK(aw_now() - t0 < AW_MS(20));
			const aw_error *e = aw_error_current();
			PCHECK_RC(rc, -ECONNREFUSED);
			PCHECK(e && e->cause && e->cause->code == -ECONNREFUSED);
			PCHECK(strstr(e->cause->msg, "cannot connect"));
			aw_error_clear();
		}
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.connect_attempts == 1 && st.connect_failures == 1 && st.fast_failures == 100);
		/* After the delay (at most backoff_initial), one probe again. */
		PCHECK_RC(aw_sleep(AW_MS(210)), 0);
		PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), -ECONNREFUSED);
		aw_error_clear();
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.connect_attempts == 2);
	}
	return aw_error_pending();
}

AW_TEST(pg_pool_fails_acquires_fast_with_the_connect_error_as_cause_while_backing_off)
{
	PG_RUN(refused_main, NULL);
}

static int backoff_settings_main(void *arg)
{
	(void)arg;
	aw_pg_pool *p;
	aw_pg_pool_opts o = { .dsn = "postgresql://awith@127.0.0.1:1/x", .backoff_initial = -1 };
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("backoff_initial"));
	o.backoff_initial = AW_SEC(2);
	o.backoff_max = AW_SEC(1);
	PCHECK_RC(aw_pg_pool_open(&p, &o), -EINVAL);
	PCHECK(pg_error_mentions("backoff_max"));
	aw_error_clear();
	return 0;
}

AW_TEST(pg_pool_rejects_bad_backoff_settings) { PG_RUN(backoff_settings_main, NULL); }

/* At most max_connecting connects in flight, also when healthy. */
typedef struct conc_ctx {
	aw_pg_pool *p;
	size_t max_opening;
} conc_ctx;

static int conc_worker(void *arg)
{
	conc_ctx *x = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, x->p)) {
		if (aw_pg_exec(a.conn, NULL, "SELECT pg_sleep(0.05)", AW_PG_NOARGS) < 0)
			break;
	}
	return aw_error_pending();
}

static int watch_opening(void *arg)
{
	conc_ctx *x = arg;
	for (;;) {
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(x->p, &st);
		if (st.opening > x->max_opening)
			x->max_opening = st.opening;
		if (aw_sleep(AW_US(200)) < 0)
			return 0;
	}
}

static int conc_main(void *arg)
{
	conc_ctx *x = arg;
	aw_pg_pool_opts o = { .dsn = PG_URL(), .max_size = 10 };
	PCHECK(o.dsn);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		aw_task *w;
		PCHECK_RC(aw_spawn(&w, watch_opening, x, "watch"), 0);
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 30; i++)
				GCHECK(aw_group_spawn(&g, conc_worker, x, "worker") == 0, (void)0);
		}
		aw_task_cancel(w);
		(void)!aw_task_join(w);
		aw_error_clear();
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		/* (How many get opened depends on how fast connects are
		 * against the 50 ms statements: releases serve waiters too.) */
		PCHECK(st.opened >= 2 && st.opened <= 10);
		PCHECK(st.acquires == 30);
	}
	PCHECK(x->max_opening == 2);
	return aw_error_pending();
}

AW_TEST(pg_pool_keeps_at_most_max_connecting_connects_in_flight)
{
	conc_ctx x = { 0 };
	PG_RUN(conc_main, &x);
}

/* ---- a connection dead before anything was sent: replaced, not an error ----------------- */

/* Terminate the backends (pg_terminate_backend) and wait until they are
 * gone, so their FATAL and hang-up are in the clients' sockets. */
static int terminate_and_wait(aw_pg_conn *k, const int *pids, int n)
{
	char list[512] = "";
	size_t len = 0;
	for (int i = 0; i < n; i++)
		len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", i ? "," : "", pids[i]);
	char sql[700];
	snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid IN (%s)",
		 list);
	aw_pg_result *r;
	int rc = aw_pg_query(k, &r, sql, AW_PG_NOARGS);
	if (rc < 0)
		return rc;
	aw_pg_result_free(r);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s)", list);
	for (int tries = 0; tries < 500; tries++) {
		rc = aw_pg_query(k, &r, sql, AW_PG_NOARGS);
		if (rc < 0)
			return rc;
		bool gone = !strcmp(aw_pg_text(r, 0, 0), "0");
		aw_pg_result_free(r);
		if (gone)
			return 0;
		if ((rc = aw_sleep(AW_MS(10))) < 0)
			return rc;
	}
	return aw_raise(-ETIMEDOUT, "the terminated backends did not go away");
}

typedef struct handover_ctx {
	aw_pg_pool *p;
	aw_event release;
	int pids[4];
	int held;
	int ok, errors;
} handover_ctx;

static int holder(void *arg)
{
	handover_ctx *x = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, x->p)) {
		if (aw_pg_exec(a.conn, NULL, "SELECT 1", AW_PG_NOARGS) < 0)
			break;
		x->pids[x->held++] = aw_pg_conn_pid(a.conn);
		if (aw_event_wait(&x->release) < 0)
			break;
	}
	return aw_error_pending();
}

static int next_holder(void *arg)
{
	handover_ctx *x = arg;
	aw_pg_acquire a;
	int64_t rc = -1;
	AW_WITH(aw_pg_acquire_init(&a, x->p)) {
		/* The first statement on a connection whose backend was
		 * terminated while the previous holder had it idle. */
		rc = aw_pg_exec(a.conn, NULL, "SELECT 1", AW_PG_NOARGS);
		if (rc < 0)
			break;
	}
	if (rc == 0 && !aw_error_pending())
		x->ok++;
	else
		x->errors++;
	aw_error_clear();
	return 0;
}

static int handover_main(void *arg)
{
	handover_ctx *x = arg;
	aw_pg_pool_opts o = { .dsn = PG_URL(), .max_size = 4 };
	PCHECK(o.dsn);
	aw_pg_conn *k;
	PCHECK_RC(aw_pg_connect(&k, o.dsn, NULL), 0);
	aw_event_init(&x->release);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			int spawned = 0;
			while (spawned < 4 && aw_group_spawn(&g, holder, x, "holder") == 0)
				spawned++;
			GCHECK(spawned == 4, aw_event_set(&x->release));
			for (int i = 0; i < 2000 && x->held < 4; i++)
				if (aw_sleep(AW_MS(5)) < 0)
					break;
			GCHECK(x->held == 4, aw_event_set(&x->release));
			/* Four more queue for the held connections. */
			for (int i = 0; i < 4; i++)
				GCHECK(aw_group_spawn(&g, next_holder, x, "next") == 0, aw_event_set(&x->release));
			GCHECK(aw_sleep(AW_MS(20)) == 0, aw_event_set(&x->release));
			GCHECK(terminate_and_wait(k, x->pids, 4) == 0, aw_event_set(&x->release));
			/* Released straight to the waiters. */
			aw_event_set(&x->release);
		}
		PCHECK(!aw_test_failed());
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		printf("    4 connections terminated while held idle: %d of 4 next holders' statements ran, "
		       "%d errors; %llu revived\n", x->ok, x->errors, (unsigned long long)st.revived);
		PCHECK(x->ok == 4 && x->errors == 0);
		PCHECK(st.revived == 4);
		PCHECK(st.in_use == 0 && st.size == 4);
	}
	aw_pg_conn_close(k);
	return aw_error_pending();
}

AW_TEST(pg_pool_replaces_a_connection_found_dead_before_the_holders_first_statement)
{
	handover_ctx x = { 0 };
	PG_RUN(handover_main, &x);
}

typedef struct idle_ctx {
	aw_pg_pool *p;
	int ok, errors;
} idle_ctx;

static int idle_query(void *arg)
{
	idle_ctx *x = arg;
	aw_pg_result *r;
	if (aw_pg_pool_query(x->p, &r, "SELECT 1", AW_PG_NOARGS) == 0) {
		x->ok++;
		aw_pg_result_free(r);
	} else {
		x->errors++;
		aw_error_clear();
	}
	return 0;
}

static int idle_main(void *arg)
{
	idle_ctx *x = arg;
	aw_pg_pool_opts o = { .dsn = PG_URL(), .min_size = 6, .max_size = 6 };
	PCHECK(o.dsn);
	aw_pg_conn *k;
	PCHECK_RC(aw_pg_connect(&k, o.dsn, NULL), 0);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		/* Six idle connections; take them all once to learn the pids. */
		aw_pg_conn *c[6];
		int pids[6];
		for (int i = 0; i < 6; i++) {
			PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c[i]), 0);
			pids[i] = aw_pg_conn_pid(c[i]);
		}
		for (int i = 0; i < 6; i++)
			aw_pg_pool_release(pm.pool, c[i]);
		PCHECK_RC(terminate_and_wait(k, pids, 6), 0);
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 12; i++)
				GCHECK(aw_group_spawn(&g, idle_query, x, "q") == 0, (void)0);
		}
		PCHECK(x->ok == 12 && x->errors == 0);
	}
	aw_pg_conn_close(k);
	return aw_error_pending();
}

AW_TEST(pg_pool_idle_connections_terminated_by_the_server_give_no_errors)
{
	idle_ctx x = { 0 };
	PG_RUN(idle_main, &x);
}

/* ---- a statement that reached the server is never retried -------------------------------- */

typedef struct once_ctx {
	aw_pg_pool *p;
	int rc;
	int pid;
} once_ctx;

static int side_effect_task(void *arg)
{
	once_ctx *x = arg;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, x->p)) {
		x->pid = aw_pg_conn_pid(a.conn);
		/* The holder's first statement (the one a retry would repeat):
		 * a side effect outside any transaction's control, then a wait. */
		x->rc = (int)aw_pg_exec(a.conn, NULL, "SELECT nextval('aw_outage_once'), pg_sleep(20)", AW_PG_NOARGS);
		if (x->rc < 0)
			break;
	}
	aw_error_clear();
	return 0;
}

static int once_main(void *arg)
{
	once_ctx *x = arg;
	aw_pg_pool_opts o = { .dsn = PG_URL(), .max_size = 2 };
	PCHECK(o.dsn);
	aw_pg_conn *k;
	PCHECK_RC(aw_pg_connect(&k, o.dsn, NULL), 0);
	PCHECK_RC(aw_pg_exec_script(k, "SET client_min_messages = warning; DROP SEQUENCE IF EXISTS aw_outage_once; "
				       "CREATE SEQUENCE aw_outage_once"), 0);
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &o)) {
		x->p = pm.pool;
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, side_effect_task, x, "side-effect"), 0);
		/* Wait until the statement runs on the server (in its sleep,
		 * so nextval, evaluated first, has run), then kill it. */
		aw_pg_result *r;
		bool running = false;
		for (int tries = 0; tries < 500 && !running; tries++) {
			PCHECK_RC(aw_pg_query(k, &r, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
					      "AND wait_event = 'PgSleep' "
					      "AND query LIKE 'SELECT nextval(''aw_outage_once'')%'", AW_PG_NOARGS), 0);
			running = !strcmp(aw_pg_text(r, 0, 0), "1");
			aw_pg_result_free(r);
			if (!running)
				PCHECK_RC(aw_sleep(AW_MS(10)), 0);
		}
		PCHECK(running);
		PCHECK_RC(terminate_and_wait(k, &x->pid, 1), 0);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x->rc, -ECONNRESET);
		PCHECK_RC(aw_pg_query(k, &r, "SELECT last_value, is_called FROM aw_outage_once", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "1");   /* ran once, not again */
		PCHECK_STR(aw_pg_text(r, 0, 1), "t");
		aw_pg_result_free(r);
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.revived == 0);
	}
	PCHECK_RC(aw_pg_exec_script(k, "DROP SEQUENCE aw_outage_once"), 0);
	aw_pg_conn_close(k);
	return aw_error_pending();
}

AW_TEST(pg_pool_never_retries_a_statement_that_reached_the_server)
{
	once_ctx x = { 0 };
	PG_RUN(once_main, &x);
}
