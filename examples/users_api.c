/* SPDX-License-Identifier: MIT */
/*
 * users_api — the seed's FastAPI + asyncpg service, in C.
 *
 *     @app.on_event("startup")
 *     async def startup():
 *         app.state.pool = await asyncpg.create_pool(DATABASE_URL)
 *
 *     @app.on_event("shutdown")
 *     async def shutdown():
 *         await app.state.pool.close()
 *
 *     @app.get("/users")
 *     async def get_users():
 *         async with app.state.pool.acquire() as conn:
 *             rows = await conn.fetch("SELECT * FROM users")
 *             return [dict(row) for row in rows]
 *
 *     @asynccontextmanager
 *     async def get_db():
 *         async with db_pool.acquire() as conn:
 *             yield conn
 *
 *     @app.get("/products")
 *     async def read_products(db = Depends(get_db)):
 *         return await db.fetch("SELECT * FROM products")
 *
 * How it maps:
 *   - startup/shutdown is the app's lifespan (a generator manager): the pool
 *     is opened before the server accepts anything and closed after the
 *     last connection is done;
 *   - /users takes a pooled connection with AW_WITH(aw_pg_acquire_init(...)):
 *     the connection goes back to the pool on every way out of the block;
 *   - /products gets its connection from the get_db dependency, a
 *     generator manager around the same acquire, released after the
 *     response has been sent;
 *   - every row becomes a JSON object keyed by column name
 *     (aw_pg_result_json_text: ints as numbers, timestamptz as ISO-8601 ...).
 *
 *     $ DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db ./users_api --port 8000 &
 *     $ curl -s http://127.0.0.1:8000/users
 *     [{"id":1,"name":"Ada","email":"ada@example.com","created_at":"2024-05-01T12:00:00+00:00"}]
 *
 * Options: --port N, --host H, --workers N (each worker has its own pool),
 * --pool N (connections per worker, default 8), --debug-page (or the
 * environment variable AWITH_DEBUG_PAGE=1): the live ledger page at
 * /debug/awith (loopback clients only; AWITH_DEBUG_TOKEN=secret requires
 * that token too) and a demo route that holds a transaction open,
 * GET /slow?seconds=N (default 2, at most 60), and one that computes
 * without waiting (a slow step), GET /busy?ms=N (default 150, at most 2000;
 * both parameters declared with awith/schema.h: a bad one is a 422), for the
 * page to show:
 *
 *     $ AWITH_DEBUG_PAGE=1 ./users_api --port 8000 &
 *     $ curl -s 'http://127.0.0.1:8000/slow?seconds=30' &
 *     $ xdg-open http://127.0.0.1:8000/debug/awith
 * Errors are mapped in one place, as FastAPI's exception handlers: the
 * handlers just return them. Every pg error (the AW_EPG_* range) answers
 * 503 {"detail": "database unavailable", "request_id": ...}, as does a
 * pool that cannot connect (the app's defaults); the server log has the
 * whole error with its cause chain once per failed request, rate-limited
 * per place that logs it: during an outage, a few lines and "N similar
 * messages suppressed", not one line per request. While the database is
 * down the pool backs off and fails acquires at once, so requests get
 * their 503 in well under a millisecond. Every response carries its
 * X-Request-ID (the request-id middleware).
 */
#include <awith/http.h>
#include <awith/middleware.h>
#include <awith/schema.h>
#include <awith/pg.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t pool_size = 8;

/* The app's state: the pool, opened by the lifespan. */
static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	const char *url = getenv("DATABASE_URL");
	if (!url || !*url)
		return aw_raise(-EINVAL, "DATABASE_URL is not set (e.g. postgresql://user:pw@127.0.0.1:5432/db)");
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &(aw_pg_pool_opts){ .dsn = url, .min_size = 1, .max_size = pool_size,
							   .acquire_timeout = AW_SEC(5) })) {
		/* The yielded value is the app's state (aw_app_state). */
		int err = aw_gen_yield(g, pm.pool);   /* the server runs here */
		if (err)
			return err;
	}
	return aw_error_pending();
}

/* Send a result as a JSON array of objects. */
static int send_rows(aw_http_response *res, const aw_pg_result *r)
{
	char *json;
	size_t len;
	int rc = aw_pg_result_json_text(r, &json, &len);
	if (rc < 0)
		return rc;
	rc = aw_http_send(res, 200, "application/json", json, len);
	free(json);
	return rc;
}

static int get_users(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_pg_pool *pool = aw_app_state(aw_http_app(req));
	int rc = 0;
	aw_pg_acquire a;
	AW_WITH(aw_pg_acquire_init(&a, pool)) {
		aw_pg_rows q;
		AW_WITH(aw_pg_rows_init(&q, a.conn, "SELECT * FROM users", AW_PG_NOARGS)) {
			rc = send_rows(res, q.res);
		}
	}
	return rc ? rc : aw_error_pending();   /* a failure: the app answers it */
}

/* The seed's get_db: a generator manager around the pool's acquire. */
static int get_db(aw_gen *g, void *arg)
{
	(void)arg;
	aw_pg_pool *pool = aw_app_state(aw_http_app(aw_http_dep_request(g)));
	aw_pg_acquire a;
	int err = 0;
	AW_WITH(aw_pg_acquire_init(&a, pool)) {
		err = aw_gen_yield(g, a.conn);   /* the handler runs, the response is sent */
	}
	return err ? err : aw_error_pending();
}
static const aw_http_dep DB = AW_HTTP_DEP("get_db", get_db, NULL);

static int read_products(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_pg_conn *db;
	aw_pg_result *r;
	int rc = aw_http_depends(req, &DB, (void **)&db);
	if (rc < 0 || (rc = aw_pg_query(db, &r, "SELECT * FROM products", AW_PG_NOARGS)) < 0)
		return rc;
	rc = send_rows(res, r);
	aw_pg_result_free(r);
	return rc;
}

/* The debug page's demo: a request that holds a pooled connection and a
 * transaction while the server sleeps for it (SELECT pg_sleep). */
struct slow_params {
	double seconds;
};
static const aw_field slow_fields[] = {
	AW_F_NUMBER(struct slow_params, seconds, .in = AW_IN_QUERY, AW_MIN(0), AW_MAX(60)),
};
static const aw_schema slow_schema = AW_SCHEMA(struct slow_params, NULL, slow_fields);

static int slow_report(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_pg_pool *pool = aw_app_state(aw_http_app(req));
	struct slow_params p = { .seconds = 2.0 };   /* the default */
	int rc = aw_http_parse_params(req, &slow_schema, &p);   /* else 422 */
	if (rc < 0)
		return rc;
	char secs_text[32];
	snprintf(secs_text, sizeof secs_text, "%.3f", p.seconds);
	aw_pg_acquire a;
	aw_pg_tx tx;
	AW_WITH(aw_pg_acquire_init(&a, pool)) {
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			rc = aw_pg_exec(a.conn, NULL, "SELECT pg_sleep($1::float8)", AW_PG_ARGS(secs_text));
		}
	}
	if (rc < 0 || (rc = aw_error_pending()) < 0)
		return rc;
	return aw_http_text(res, 200, "done\n");
}

/* The debug page's other demo: a request that computes for ms milliseconds
 * without waiting (a slow step: nothing else on the loop runs meanwhile;
 * the watchdog reports it, and the page lists it). */
struct busy_params {
	int ms;
};
static const aw_field busy_fields[] = {
	AW_F_INT(struct busy_params, ms, .in = AW_IN_QUERY, AW_MIN(0), AW_MAX(2000)),
};
static const aw_schema busy_schema = AW_SCHEMA(struct busy_params, NULL, busy_fields);

static int busy(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	struct busy_params p = { .ms = 150 };
	int rc = aw_http_parse_params(req, &busy_schema, &p);
	if (rc < 0)
		return rc;
	aw_time until = aw_now() + AW_MS(p.ms);
	volatile unsigned long spins = 0;
	while (aw_now() < until)
		spins++;
	return aw_http_text(res, 200, "done\n");
}

int main(int argc, char **argv)
{
	/* --pool N and --debug-page are ours; the rest goes to aw_app_main
	 * (--port, --host, --workers, --metrics /metrics for Prometheus). */
	const char *env = getenv("AWITH_DEBUG_PAGE");
	bool debug_page = env && *env && strcmp(env, "0");
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--debug-page")) {
			debug_page = true;
			memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof *argv);
			argc--;
			i--;
		}
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--pool")) {
			char *end;
			long n = strtol(argv[i + 1], &end, 10);
			if (*end || n < 1 || n > 1000) {
				fprintf(stderr, "usage: users_api [--port N] [--host H] [--workers N] [--pool N] [--debug-page]\n");
				return 2;
			}
			pool_size = (size_t)n;
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof *argv);
			argc -= 2;
			i--;
		}
	aw_app *app;
	if (aw_app_new(&app, "users_api") < 0)
		return 1;
	aw_http_mw *request_id;
	if (aw_app_lifespan(app, lifespan, NULL) || aw_app_route(app, "GET", "/users", get_users, NULL) ||
	    aw_app_route(app, "GET", "/products", read_products, NULL) ||
	    aw_app_error_status(app, -AW_EPG_BASE, -(AW_EPG_BASE + 0xff), 503, "database unavailable") ||
	    aw_http_mw_request_id(&request_id, NULL) || aw_app_use(app, request_id)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	if (debug_page) {
		const char *token = getenv("AWITH_DEBUG_TOKEN");
		aw_app_debug_opts dopts = { .token = token && *token ? token : NULL };
		if (aw_app_debug_page(app, "/debug/awith", &dopts) || aw_app_route(app, "GET", "/slow", slow_report, NULL) ||
		    aw_app_route(app, "GET", "/busy", busy, NULL)) {
			aw_error_print(stderr, aw_error_current());
			aw_app_free(app);
			return 1;
		}
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
