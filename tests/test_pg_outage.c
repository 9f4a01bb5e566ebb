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
			rc = (int)aw_pg_exec(c, "SELECT 1", AW_PG_NOARGS);
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
			for (int i = 0; i < 50; i++)
				PCHECK_RC(aw_group_spawn(&g, outage_worker, x, "worker"), 0);
			PCHECK_RC(aw_sleep(AW_MS(200)), 0);
			PCHECK(x->ok > 0);
			x->down = true;
			PCHECK_RC(cluster("down"), 0);
			down_at = aw_now();
			aw_pg_pool_stats_get(pm.pool, &before);
			PCHECK_RC(aw_sleep(AW_SEC(3)), 0);
			aw_pg_pool_stats_get(pm.pool, &during);
			up_start = aw_now();
			PCHECK_RC(cluster("up"), 0);
			x->up_at = aw_now();
			x->down = false;
			PCHECK_RC(aw_sleep(AW_MS(1500)), 0);
			x->stop = true;
		}
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
			PCHECK_RC(aw_pg_pool_acquire(pm.pool, &c), -ECONNREFUSED);
			PCHECK(aw_now() - t0 < AW_MS(20));
			const aw_error *e = aw_error_current();
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
		if (aw_pg_exec(a.conn, "SELECT pg_sleep(0.05)", AW_PG_NOARGS) < 0)
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
				PCHECK_RC(aw_group_spawn(&g, conc_worker, x, "worker"), 0);
		}
		aw_task_cancel(w);
		(void)aw_task_join(w);
		aw_error_clear();
		aw_pg_pool_stats st;
		aw_pg_pool_stats_get(pm.pool, &st);
		PCHECK(st.opened == 10);
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
