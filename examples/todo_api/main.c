/* SPDX-License-Identifier: MIT */
/*
 * todo_api — a complete small service in the seed's style: a todo list in
 * PostgreSQL behind a JSON API, with a front page. fastapi_app.py next to
 * this file is the same service in FastAPI (docs/guide.md compares them).
 *
 *     @asynccontextmanager
 *     async def lifespan(app):
 *         async with asyncpg.create_pool(DATABASE_URL) as pool:
 *             await pool.execute(SCHEMA)
 *             app.state.pool = pool
 *             yield
 *
 *     @app.get("/todos")
 *     async def list_todos(limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0),
 *                          done: bool | None = None, db=Depends(get_db)): ...
 *     @app.post("/todos", status_code=201)
 *     async def create_todo(body: TodoIn, db=Depends(get_db)): ...
 *     @app.get("/todos/{todo_id}")  ...  @app.patch  ...  @app.delete
 *     app.add_middleware(CORSMiddleware, allow_origins=["*"], ...)
 *     app.mount("/", StaticFiles(directory="static", html=True))
 *
 * Routes:
 *   GET    /todos?limit=20&offset=0&done=true   {"items": [...], "total": N, "limit": L, "offset": O}
 *   POST   /todos          {"title": "...", "done": false}   201 and the todo
 *   GET    /todos/{id}     the todo, or 404
 *   PATCH  /todos/{id}     {"title"?: "...", "done"?: bool}  the todo, or 404
 *   DELETE /todos/{id}     204, or 404
 *   GET    /openapi.json   the API's OpenAPI 3.1 document; GET /docs: a page for it
 *   GET    /               the front page (static/, served by aw_app_static)
 *
 * How it maps:
 *   - the lifespan opens the pool and creates the table before the server
 *     accepts anything; the pool closes after the last request;
 *   - get_db is a dependency: a generator manager around the pool's
 *     acquire, released after the response has been sent;
 *   - bodies and query parameters are checked field by field and every bad
 *     one is listed in a 422, as FastAPI/pydantic answers:
 *     {"detail": [{"loc": ["body", "title"], "msg": "...", "type": "..."}]};
 *   - errors become responses in one place (fail()): a missing todo 404, a
 *     database that is down 503, bad JSON 400 (the app layer's), anything
 *     else 500 with the request id and nothing internal;
 *   - every answer carries X-Request-ID (the client's, or one the server
 *     made) and the CORS headers; OPTIONS answers the preflight;
 *   - the front page and the OpenAPI documents are files in static/,
 *     mounted at "/" (routes win over the mount).
 *
 *     $ DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db ./todo_api --port 8000 &
 *     $ curl -s -X POST -d '{"title": "write the docs"}' http://127.0.0.1:8000/todos
 *     {"id":1,"title":"write the docs","done":false,"created_at":"2026-12-06T09:30:00.123+00:00"}
 *
 * Options: --static DIR (default: the static/ next to this file in the
 * source tree), and aw_app_main's (--port, --host, --workers, --access-log).
 */
#include <awith/http.h>
#include <awith/log.h>
#include <awith/pg.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TODO_STATIC_DIR
#define TODO_STATIC_DIR "static"
#endif

#define TITLE_MAX 200
#define COLUMNS "id, title, done, created_at"

/* ---- the pool, for the app's lifetime ---------------------------------------- */

static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	const char *url = getenv("DATABASE_URL");
	if (!url || !*url)
		return aw_raise(-EINVAL, "DATABASE_URL is not set (e.g. postgresql://user:pw@127.0.0.1:5432/db)");
	aw_pg_pool_mgr pm;
	AW_WITH(aw_pg_pool_mgr_init(&pm, &(aw_pg_pool_opts){ .dsn = url, .min_size = 1, .max_size = 8,
							   .acquire_timeout = AW_SEC(5) })) {
		aw_pg_result *r = NULL;
		int rc = aw_pg_pool_query(pm.pool, &r,
					  "CREATE TABLE IF NOT EXISTS todos (id bigserial PRIMARY KEY, "
					  "title text NOT NULL, done boolean NOT NULL DEFAULT false, "
					  "created_at timestamptz NOT NULL DEFAULT now())", AW_PG_NOARGS);
		aw_pg_result_free(r);
		if (rc < 0)
			return rc;
		int err = aw_gen_yield(g, pm.pool);   /* the server runs here */
		if (err)
			return err;
	}
	return aw_error_pending();
}

/* The seed's get_db: a pooled connection for the request. */
static int get_db(aw_gen *g, void *arg)
{
	(void)arg;
	aw_pg_pool *pool = aw_app_state(aw_http_app(aw_http_dep_request(g)));
	aw_pg_acquire a;
	int err = 0;
	AW_WITH(aw_pg_acquire_init(&a, pool)) {
		err = aw_gen_yield(g, a.conn);
	}
	return err ? err : aw_error_pending();
}
static const aw_http_dep DB = AW_HTTP_DEP("get_db", get_db, NULL);

/* ---- errors become responses here ------------------------------------------- */

#define ENOTODO 1   /* positive: not an errno, a "no such todo" answer */

/* CORS on every answer (CORSMiddleware with allow_origins=["*"]). */
static int cors(aw_http_response *res)
{
	return aw_http_set_header(res, "Access-Control-Allow-Origin", "*");
}

/* Answer a failure: the error in flight (rc < 0) or a missing todo. */
static int fail(aw_http_request *req, aw_http_response *res, int rc)
{
	int status = 500;
	const char *detail = "Internal Server Error";
	if (rc == ENOTODO) {
		status = 404;
		detail = "Todo not found";
	} else if (rc == -EBADMSG || rc == -AW_ETOOLONG) {
		return rc;   /* bad JSON, too large: the app layer's 400 / 413 */
	} else if (rc == -ETIMEDOUT || rc == -AW_EPG_TOO_MANY || rc == -ECONNREFUSED || rc == -ECONNRESET ||
		   rc == -EPIPE || rc == -AW_EPG_AUTH || rc == -AW_EPG_NODB) {
		status = 503;
		detail = "database unavailable";
	}
	if (rc < 0) {
		aw_log_ratelimited(stderr, aw_error_current(), "%.*s %.*s failed (%d)", (int)aw_http_method(req).len,
				   aw_http_method(req).p, (int)aw_http_path(req).len, aw_http_path(req).p, status);
		aw_error_clear();
	}
	json_t *body = json_pack("{s:s}", "detail", detail);
	if (status == 500)   /* nothing internal: the id finds the log line */
		json_object_set_new(body, "request_id", json_string(aw_log_context_get("request_id")));
	int r = cors(res);
	if (!r)
		r = aw_http_json(res, status, body);
	json_decref(body);
	return r;
}

/* ---- validation: every bad field, FastAPI's 422 ------------------------------------ */

typedef struct errors {
	json_t *list;   /* [{"loc": [...], "msg": ..., "type": ...}] */
} errors;

static void bad(errors *e, const char *where, const char *field, const char *msg, const char *type)
{
	if (!e->list)
		e->list = json_array();
	json_array_append_new(e->list, json_pack("{s:[s,s],s:s,s:s}", "loc", where, field, "msg", msg, "type", type));
}

static int unprocessable(aw_http_response *res, errors *e)
{
	json_t *body = json_pack("{s:o}", "detail", e->list);
	e->list = NULL;
	int rc = cors(res);
	if (!rc)
		rc = aw_http_json(res, 422, body);
	json_decref(body);
	return rc;
}

typedef struct todo_in {
	const char *title;   /* NULL: not given */
	int done;            /* -1: not given */
} todo_in;

/* The body: {"title": str 1..200, "done": bool}; title required on create. */
static int parse_todo(aw_http_request *req, todo_in *in, bool create, errors *e)
{
	json_t *body;
	int rc = aw_http_json_body(req, &body);
	if (rc < 0)
		return rc;
	*in = (todo_in){ NULL, -1 };
	if (!json_is_object(body)) {
		bad(e, "body", "__root__", "value is not a valid dict", "type_error.dict");
		return 0;
	}
	json_t *t = json_object_get(body, "title"), *d = json_object_get(body, "done");
	if (!t && create)
		bad(e, "body", "title", "field required", "value_error.missing");
	else if (t && !json_is_string(t))
		bad(e, "body", "title", "str type expected", "type_error.str");
	else if (t && (json_string_length(t) < 1 || json_string_length(t) > TITLE_MAX))
		bad(e, "body", "title", "ensure this value has 1 to 200 characters", "value_error.any_str");
	else if (t)
		in->title = json_string_value(t);
	if (d && !json_is_boolean(d))
		bad(e, "body", "done", "value could not be parsed to a boolean", "type_error.bool");
	else if (d)
		in->done = json_is_true(d);
	return 0;
}

/* An integer query parameter in [lo, hi], or def when absent. */
static int query_int(aw_http_request *req, const char *name, long def, long lo, long hi, long *out, errors *e)
{
	const char *v;
	int rc = aw_http_query(req, name, &v);
	if (rc < 0)
		return rc;
	*out = def;
	if (!v)
		return 0;
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end)
		bad(e, "query", name, "value is not a valid integer", "type_error.integer");
	else if (n < lo || n > hi)
		bad(e, "query", name, "value is out of range", "value_error.number");
	else
		*out = n;
	return 0;
}

/* The {id} of the path: a positive integer, or a 422. */
static const char *path_id(aw_http_request *req, errors *e)
{
	const char *id = aw_http_param(req, "id");
	char *end;
	long long n = strtoll(id, &end, 10);
	if (!*id || *end || n < 1) {
		bad(e, "path", "id", "value is not a valid integer", "type_error.integer");
		return NULL;
	}
	return id;
}

/* ---- handlers ------------------------------------------------------------------ */

/* One row (the first) as the answer, or ENOTODO when there is none. */
static int send_todo(aw_http_response *res, int status, aw_pg_result *r)
{
	if (aw_pg_nrows(r) == 0)
		return ENOTODO;
	json_t *row;
	int rc = aw_pg_row_to_json(r, 0, &row);
	if (rc < 0)
		return rc;
	rc = cors(res);
	if (!rc)
		rc = aw_http_json(res, status, row);
	json_decref(row);
	return rc;
}

static int list_todos(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	errors e = { 0 };
	long limit, offset;
	const char *done;
	int rc = query_int(req, "limit", 20, 1, 100, &limit, &e);
	if (!rc)
		rc = query_int(req, "offset", 0, 0, 1L << 40, &offset, &e);
	if (!rc)
		rc = aw_http_query(req, "done", &done);
	if (rc < 0)
		return rc;
	if (done && strcmp(done, "true") && strcmp(done, "false"))
		bad(&e, "query", "done", "value could not be parsed to a boolean", "type_error.bool");
	if (e.list)
		return unprocessable(res, &e);
	aw_pg_conn *db;
	aw_pg_result *r = NULL, *n = NULL;
	char ls[24], os[24];
	snprintf(ls, sizeof ls, "%ld", limit);
	snprintf(os, sizeof os, "%ld", offset);
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) < 0 ||
	    (rc = aw_pg_query(db, &r, "SELECT " COLUMNS " FROM todos WHERE $3::boolean IS NULL OR done = $3 "
				      "ORDER BY id LIMIT $1 OFFSET $2", AW_PG_ARGS(ls, os, done))) < 0 ||
	    (rc = aw_pg_query(db, &n, "SELECT count(*) FROM todos WHERE $1::boolean IS NULL OR done = $1",
			      AW_PG_ARGS(done))) < 0)
		goto out;
	json_t *items, *body = NULL;
	int64_t total = 0;
	if ((rc = aw_pg_result_to_json(r, &items)) < 0 || (rc = aw_pg_get_int(n, 0, 0, &total)) < 0)
		goto out;
	body = json_pack("{s:o,s:I,s:i,s:I}", "items", items, "total", (json_int_t)total, "limit", (int)limit,
			 "offset", (json_int_t)offset);
	rc = cors(res);
	if (!rc)
		rc = aw_http_json(res, 200, body);
	json_decref(body);
out:
	aw_pg_result_free(r);
	aw_pg_result_free(n);
	return rc ? fail(req, res, rc) : 0;
}

static int create_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	errors e = { 0 };
	todo_in in;
	int rc = parse_todo(req, &in, true, &e);
	if (rc < 0)
		return fail(req, res, rc);
	if (e.list)
		return unprocessable(res, &e);
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "INSERT INTO todos (title, done) VALUES ($1, $2) RETURNING " COLUMNS,
			      AW_PG_ARGS(in.title, in.done == 1 ? "true" : "false"))) >= 0)
		rc = send_todo(res, 201, r);
	aw_pg_result_free(r);
	return rc ? fail(req, res, rc) : 0;
}

static int get_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	errors e = { 0 };
	const char *id = path_id(req, &e);
	if (!id)
		return unprocessable(res, &e);
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "SELECT " COLUMNS " FROM todos WHERE id = $1", AW_PG_ARGS(id))) >= 0)
		rc = send_todo(res, 200, r);
	aw_pg_result_free(r);
	return rc ? fail(req, res, rc) : 0;
}

static int update_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	errors e = { 0 };
	todo_in in;
	const char *id = path_id(req, &e);
	int rc = parse_todo(req, &in, false, &e);
	if (rc < 0)
		return fail(req, res, rc);
	if (e.list)
		return unprocessable(res, &e);
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	const char *done = in.done < 0 ? NULL : in.done ? "true" : "false";
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "UPDATE todos SET title = coalesce($2, title), done = coalesce($3::boolean, done) "
				      "WHERE id = $1 RETURNING " COLUMNS, AW_PG_ARGS(id, in.title, done))) >= 0)
		rc = send_todo(res, 200, r);
	aw_pg_result_free(r);
	return rc ? fail(req, res, rc) : 0;
}

static int delete_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	errors e = { 0 };
	const char *id = path_id(req, &e);
	if (!id)
		return unprocessable(res, &e);
	aw_pg_conn *db;
	uint64_t n = 0;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_exec(db, &n, "DELETE FROM todos WHERE id = $1", AW_PG_ARGS(id))) >= 0) {
		if (n == 0)
			rc = ENOTODO;
		else if (!(rc = cors(res)))
			rc = aw_http_send(res, 204, NULL, NULL, 0);
	}
	return rc ? fail(req, res, rc) : 0;
}

/* The CORS preflight (OPTIONS /todos, /todos/{id}). */
static int preflight(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = cors(res);
	if (!rc)
		rc = aw_http_set_header(res, "Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE");
	if (!rc)
		rc = aw_http_set_header(res, "Access-Control-Allow-Headers", "Content-Type, X-Request-ID");
	if (!rc)
		rc = aw_http_set_header(res, "Access-Control-Max-Age", "600");
	return rc ? rc : aw_http_send(res, 200, "text/plain; charset=utf-8", "OK", 2);
}

/* GET /docs: the OpenAPI page (a file of the static directory). */
static int docs(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	return aw_http_file_in(res, ud, "docs.html", NULL);
}

int main(int argc, char **argv)
{
	const char *static_dir = TODO_STATIC_DIR;
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--static")) {
			static_dir = argv[i + 1];
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof *argv);
			argc -= 2;
			i--;
		}
	aw_app *app;
	if (aw_app_new(&app, "todo_api") < 0)
		return 1;
	if (aw_app_lifespan(app, lifespan, NULL) || aw_app_route(app, "GET", "/todos", list_todos, NULL) ||
	    aw_app_route(app, "POST", "/todos", create_todo, NULL) ||
	    aw_app_route(app, "GET", "/todos/{id}", get_todo, NULL) ||
	    aw_app_route(app, "PATCH", "/todos/{id}", update_todo, NULL) ||
	    aw_app_route(app, "DELETE", "/todos/{id}", delete_todo, NULL) ||
	    aw_app_route(app, "OPTIONS", "/todos", preflight, NULL) ||
	    aw_app_route(app, "OPTIONS", "/todos/{id}", preflight, NULL) ||
	    aw_app_route(app, "GET", "/docs", docs, (void *)static_dir) ||
	    aw_app_static(app, "/", static_dir, NULL)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
