/* SPDX-License-Identifier: MIT */
/*
 * scale_app — one instance of a service meant to run as several, behind a
 * load balancer (scripts/cluster.sh, docs/scale.md):
 *
 *   GET /livez, /readyz   health: /readyz is 503 while draining or while
 *                         the database pool cannot get a connection
 *   GET /pid[?sleep=MS]   which process answered (after MS ms)
 *   GET /db/write         INSERT a row on the primary (DATABASE_URL)
 *   GET /db/read          a read on the read pool (READ_DATABASE_URL,
 *                         e.g. target_session_attrs=prefer-standby) or the
 *                         primary's pool; says whether a standby answered
 *   GET /db/stats         both pools' stats, with the replica's lag
 *
 * A database error or a pool that cannot connect answers 503 at once
 * ({"detail": ...}), never a hang: acquires and statements are bounded
 * (2 s). Environment: DATABASE_URL (a multi-host DSN for failover, e.g.
 * "host=a,b port=5432,5433 target_session_attrs=read-write"),
 * READ_DATABASE_URL, AWITH_PGBOUNCER=1 / AWITH_READ_PGBOUNCER=1 (that
 * pool's DSN goes through pgbouncer's transaction mode:
 * aw_pg_opts.transaction_pooler). Options: those of aw_app_main (--port, --workers,
 * --drain-delay, --pid-file, ...); /livez and /readyz are always on.
 *
 *     $ DATABASE_URL=postgresql:///postgres ./scale_app --port 8000 --workers 2 &
 *     $ curl -s localhost:8000/db/write
 *     $ kill -USR2 $!          # graceful restart: no request is dropped
 */
#include <awith/http.h>
#include <awith/pg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pools {
	aw_pg_pool *rw, *ro;   /* ro == rw when there is no read DSN */
} pools;

static pools P;

static aw_pg_pool_opts pool_opts(const char *dsn, const aw_pg_opts *co)
{
	return (aw_pg_pool_opts){ .dsn = dsn, .conn = co, .max_size = 4, .acquire_timeout = AW_SEC(2),
				  .backoff_max = AW_MS(250) };
}

static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	const char *rw = getenv("DATABASE_URL"), *ro = getenv("READ_DATABASE_URL");
	aw_pg_opts co, cro;
	aw_pg_opts_default(&co);
	co.connect_timeout = AW_SEC(2);
	cro = co;
	/* Behind pgbouncer's transaction mode: no named statements, no
	 * session state (aw_pg_opts.transaction_pooler). */
	const char *pgb = getenv("AWITH_PGBOUNCER"), *rpgb = getenv("AWITH_READ_PGBOUNCER");
	co.transaction_pooler = pgb && *pgb == '1';
	cro.transaction_pooler = rpgb && *rpgb == '1';
	aw_pg_pool_mgr m1, m2;
	aw_pg_pool_opts o1 = pool_opts(rw ? rw : "", &co), o2 = pool_opts(ro ? ro : "", &cro);
	if (!rw || !*rw)
		return aw_gen_yield(g, NULL);   /* no database: /db answers 503 */
	/* The pools open no connection here (min_size 0): an instance starts
	 * while the database is down, and says so on /readyz. */
	AW_WITH(aw_pg_pool_mgr_init(&m1, &o1)) {
		P.rw = P.ro = m1.pool;
		if (ro && *ro) {
			AW_WITH(aw_pg_pool_mgr_init(&m2, &o2)) {
				P.ro = m2.pool;
				(void)!aw_gen_yield(g, NULL);
				P.ro = P.rw;
			}
		} else {
			(void)!aw_gen_yield(g, NULL);
		}
		P.rw = P.ro = NULL;
	}
	return aw_error_pending();
}

static int unavailable(aw_http_response *res, const char *what)
{
	const aw_error *e = aw_error_current();
	char detail[300];
	snprintf(detail, sizeof detail, "%s: %s", what, e ? e->msg : "unavailable");
	aw_error_clear();
	aw_jw *w = aw_http_json_begin(res, 503);
	aw_jw_object(w);
	aw_jw_key(w, "detail");
	aw_jw_string(w, detail);
	aw_jw_object_end(w);
	if (aw_http_set_header(res, "Retry-After", "1"))
		aw_error_clear();
	return aw_http_json_end(w);
}

static int no_db(aw_http_response *res)
{
	(void)!aw_raise(-ENOTCONN, "no DATABASE_URL");
	return unavailable(res, "db");
}

static int h_pid(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *ms;
	int rc = aw_http_query(req, "sleep", &ms);
	if (rc < 0)
		return rc;
	if (ms && (rc = aw_sleep(AW_MS(atoi(ms)))) < 0)
		return rc;
	char out[32];
	snprintf(out, sizeof out, "%d\n", (int)getpid());
	return aw_http_text(res, 200, out);
}

static int h_write(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	if (!P.rw)
		return no_db(res);
	char pid[16];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	aw_pg_result *r = NULL;
	int rc = 0;
	AW_WITH(AW_TIMEOUT(AW_SEC(2))) {
		rc = aw_pg_pool_query(P.rw, &r, "INSERT INTO awith_hits (pid) VALUES ($1::int) RETURNING id",
				      AW_PG_ARGS(pid));
	}
	if (rc || aw_error_pending()) {
		aw_pg_result_free(r);
		return unavailable(res, "write");
	}
	char out[64];
	snprintf(out, sizeof out, "{\"id\":%s}", aw_pg_text(r, 0, 0));
	aw_pg_result_free(r);
	return aw_http_send(res, 200, "application/json", out, strlen(out));
}

static int h_read(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	if (!P.ro)
		return no_db(res);
	aw_pg_result *r = NULL;
	int rc = 0;
	AW_WITH(AW_TIMEOUT(AW_SEC(2))) {
		rc = aw_pg_pool_query(P.ro, &r,
				      "SELECT pg_is_in_recovery(), (SELECT count(*) FROM awith_hits), "
				      "current_setting('port')", AW_PG_NOARGS);
	}
	if (rc || aw_error_pending()) {
		aw_pg_result_free(r);
		return unavailable(res, "read");
	}
	char out[128];
	snprintf(out, sizeof out, "{\"standby\":%s,\"rows\":%s,\"port\":%s}",
		 strcmp(aw_pg_text(r, 0, 0), "t") ? "false" : "true", aw_pg_text(r, 0, 1), aw_pg_text(r, 0, 2));
	aw_pg_result_free(r);
	return aw_http_send(res, 200, "application/json", out, strlen(out));
}

static void pool_json(aw_jw *w, const char *key, aw_pg_pool *p)
{
	aw_pg_pool_stats s;
	aw_pg_pool_stats_get(p, &s);
	aw_jw_key(w, key);
	aw_jw_object(w);
	aw_jw_key(w, "size");
	aw_jw_int(w, (long long)s.size);
	aw_jw_key(w, "discarded");
	aw_jw_int(w, (long long)s.discarded);
	aw_jw_key(w, "connect_failures");
	aw_jw_int(w, (long long)s.connect_failures);
	aw_jw_key(w, "standby");
	aw_jw_int(w, s.standby);
	aw_jw_key(w, "replica_lag_ms");
	aw_jw_double(w, s.replica_lag < 0 ? -1.0 : (double)s.replica_lag / 1e6);
	aw_jw_object_end(w);
}

static int h_stats(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	if (!P.rw)
		return no_db(res);
	/* Fresh numbers: check both (a failing check leaves the old ones). */
	if (aw_pg_pool_check(P.rw))
		aw_error_clear();
	if (P.ro != P.rw && aw_pg_pool_check(P.ro))
		aw_error_clear();
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	pool_json(w, "rw", P.rw);
	if (P.ro != P.rw)
		pool_json(w, "ro", P.ro);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int ready_db(aw_app *app, void *arg)
{
	(void)app, (void)arg;
	return P.rw ? aw_pg_pool_check(P.rw) : 0;
}

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "scale_app") < 0)
		return 1;
	aw_app_limits(app)->request_deadline = AW_SEC(5);
	if (aw_app_lifespan(app, lifespan, NULL) || aw_app_health(app, "/livez", "/readyz") ||
	    aw_app_ready_check(app, "database", ready_db, NULL) || aw_app_route(app, "GET", "/pid", h_pid, NULL) ||
	    aw_app_route(app, "GET", "/db/write", h_write, NULL) || aw_app_route(app, "GET", "/db/read", h_read, NULL) ||
	    aw_app_route(app, "GET", "/db/stats", h_stats, NULL)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
