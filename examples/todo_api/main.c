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
 *   GET    /openapi.json   the API's OpenAPI 3.1 document; GET /docs: a page for it (aw_app_openapi)
 *   GET    /               the front page (static/, served by aw_app_static)
 *
 * How it maps:
 *   - the lifespan opens the pool and creates the table before the server
 *     accepts anything; the pool closes after the last request;
 *   - get_db is a dependency: a generator manager around the pool's
 *     acquire, released after the response has been sent;
 *   - bodies, path and query parameters are declared once (awith/schema.h:
 *     pydantic's models and FastAPI's Query/Path) and checked before the
 *     handler runs; every bad field is listed in a 422, as FastAPI answers:
 *     {"detail": [{"loc": ["body", "title"], "msg": "...", "type": "..."}]};
 *     the answers are response models (a struct written as JSON);
 *   - handlers return errors and the app's error table makes the answers
 *     (aw_app_error_status: FastAPI's exception handlers): a missing todo
 *     404, a database that is down 503, bad JSON 400, anything else 500
 *     with the request id and nothing internal, logged once with its cause;
 *   - middleware, as managers around every request (app.add_middleware):
 *     X-Request-ID on every answer (the client's, or one the server made)
 *     and CORS, whose preflight the middleware answers;
 *   - the OpenAPI document and its page come from the same declarations;
 *     the front page is static/index.html, mounted at "/" (routes win over
 *     the mount).
 *
 *     $ DATABASE_URL=postgresql://user:pw@127.0.0.1:5432/db ./todo_api --port 8000 &
 *     $ curl -s -X POST -d '{"title": "write the docs"}' http://127.0.0.1:8000/todos
 *     {"id":1,"title":"write the docs","done":false,"created_at":"2026-12-06T10:05:05.963657+00:00"}
 *
 * Options: --static DIR (default: the static/ next to this file in the
 * source tree), and aw_app_main's (--port, --host, --workers, --access-log).
 */
#include <awith/http.h>
#include <awith/middleware.h>
#include <awith/pg.h>
#include <awith/schema.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TODO_STATIC_DIR
#define TODO_STATIC_DIR "static"
#endif

/* created_at as ISO 8601, as FastAPI writes a datetime. */
#define COLUMNS "id, title, done, to_json(created_at) #>> '{}'"

/* ---- the shapes, declared once: validation, answers, OpenAPI ------------------ */

typedef struct todo {
	int64_t id;
	const char *title;
	bool done;
	const char *created_at;
} todo;
static const aw_field todo_fields[] = {
	AW_F_INT(todo, id, .required = true),
	AW_F_STRING(todo, title, .required = true, AW_LEN(1, 200)),
	AW_F_BOOL(todo, done, .required = true),
	AW_F_STRING(todo, created_at, .required = true, .description = "ISO 8601"),
};
static const aw_schema todo_schema = AW_SCHEMA(todo, "Todo", todo_fields);

/* POST /todos and PATCH /todos/{id}: title required on create only. */
typedef struct todo_in {
	const char *title;
	bool done, has_title, has_done;
} todo_in;
static const aw_field todo_in_fields[] = {
	AW_F_STRING(todo_in, title, .required = true, AW_LEN(1, 200)),
	AW_F_BOOL(todo_in, done),
};
static const aw_schema todo_in_schema = AW_SCHEMA(todo_in, "TodoIn", todo_in_fields);
static const aw_field todo_patch_fields[] = {
	AW_F_STRING(todo_in, title, AW_LEN(1, 200), AW_PRESENT(todo_in, has_title)),
	AW_F_BOOL(todo_in, done, AW_PRESENT(todo_in, has_done)),
};
static const aw_schema todo_patch_schema = AW_SCHEMA(todo_in, "TodoPatch", todo_patch_fields);

typedef struct id_params {
	int64_t id;
} id_params;
static const aw_field id_fields[] = { AW_F_INT(id_params, id, .in = AW_IN_PATH, .required = true, AW_MIN(1)) };
static const aw_schema id_schema = AW_SCHEMA(id_params, NULL, id_fields);

typedef struct page_params {
	int64_t limit, offset;
	bool done, has_limit, has_done;
} page_params;
static const aw_field page_fields[] = {
	AW_F_INT(page_params, limit, .in = AW_IN_QUERY, AW_MIN(1), AW_MAX(100), AW_PRESENT(page_params, has_limit),
		 .description = "default 20"),
	AW_F_INT(page_params, offset, .in = AW_IN_QUERY, AW_MIN(0)),
	AW_F_BOOL(page_params, done, .in = AW_IN_QUERY, AW_PRESENT(page_params, has_done)),
};
static const aw_schema page_schema = AW_SCHEMA(page_params, NULL, page_fields);

typedef struct todo_page {
	todo *items;
	size_t nitems;
	int64_t total, limit, offset;
} todo_page;
static const aw_field todo_item = AW_ITEM_OBJECT(todo, &todo_schema);
static const aw_field todo_page_fields[] = {
	AW_F_ARRAY(todo_page, items, nitems, &todo_item, .required = true),
	AW_F_INT(todo_page, total, .required = true),
	AW_F_INT(todo_page, limit, .required = true),
	AW_F_INT(todo_page, offset, .required = true),
};
static const aw_schema todo_page_schema = AW_SCHEMA(todo_page, "TodoPage", todo_page_fields);

static const aw_route_spec list_spec = { .summary = "List todos", .params = &page_schema,
					 .response = &todo_page_schema };
static const aw_route_spec create_spec = { .summary = "Create a todo", .body = &todo_in_schema,
					   .response = &todo_schema, .status = 201 };
static const aw_route_spec get_spec = { .summary = "Get a todo", .params = &id_schema, .response = &todo_schema };
static const aw_route_spec update_spec = { .summary = "Update a todo", .params = &id_schema,
					   .body = &todo_patch_schema, .response = &todo_schema };
static const aw_route_spec delete_spec = { .summary = "Delete a todo", .params = &id_schema, .status = 204 };

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

/* ---- handlers ------------------------------------------------------------------ */

static void row_to_todo(const aw_pg_result *r, int row, todo *t)
{
	t->id = atoll(aw_pg_text(r, row, 0));
	t->title = aw_pg_text(r, row, 1);
	t->done = aw_pg_text(r, row, 2)[0] == 't';
	t->created_at = aw_pg_text(r, row, 3);
}

/* One row (the first) as the answer; none: 404. */
static int send_todo(aw_http_response *res, int status, aw_pg_result *r)
{
	if (aw_pg_nrows(r) == 0)
		return aw_raise(-AW_EHTTP_NOT_FOUND, "Todo not found");
	todo t;
	row_to_todo(r, 0, &t);
	return aw_http_model(res, status, &todo_schema, &t);
}

static int list_todos(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const page_params *q = aw_http_valid_params(req);
	char ls[24], os[24];
	snprintf(ls, sizeof ls, "%lld", q->has_limit ? (long long)q->limit : 20LL);
	snprintf(os, sizeof os, "%lld", (long long)q->offset);
	const char *done = !q->has_done ? NULL : q->done ? "true" : "false";
	aw_pg_conn *db;
	aw_pg_result *r = NULL, *n = NULL;
	todo *items = NULL;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) < 0 ||
	    (rc = aw_pg_query(db, &r, "SELECT " COLUMNS " FROM todos WHERE $3::boolean IS NULL OR done = $3 "
				      "ORDER BY id LIMIT $1 OFFSET $2", AW_PG_ARGS(ls, os, done))) < 0 ||
	    (rc = aw_pg_query(db, &n, "SELECT count(*) FROM todos WHERE $1::boolean IS NULL OR done = $1",
			      AW_PG_ARGS(done))) < 0)
		goto out;
	todo_page page = { .limit = atoll(ls), .offset = q->offset, .nitems = (size_t)aw_pg_nrows(r) };
	if (page.nitems && !(items = calloc(page.nitems, sizeof *items))) {
		rc = aw_raise(-ENOMEM, "no memory for %zu todos", page.nitems);
		goto out;
	}
	for (size_t i = 0; i < page.nitems; i++)
		row_to_todo(r, (int)i, &items[i]);
	page.items = items;
	if ((rc = aw_pg_get_int(n, 0, 0, &page.total)) < 0)
		goto out;
	rc = aw_http_model(res, 200, &todo_page_schema, &page);
out:
	free(items);
	aw_pg_result_free(r);
	aw_pg_result_free(n);
	return rc;
}

static int create_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const todo_in *in = aw_http_valid_body(req);
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "INSERT INTO todos (title, done) VALUES ($1, $2) RETURNING " COLUMNS,
			      AW_PG_ARGS(in->title, in->done ? "true" : "false"))) >= 0)
		rc = send_todo(res, 201, r);
	aw_pg_result_free(r);
	return rc;
}

static int get_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)((const id_params *)aw_http_valid_params(req))->id);
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "SELECT " COLUMNS " FROM todos WHERE id = $1", AW_PG_ARGS(id))) >= 0)
		rc = send_todo(res, 200, r);
	aw_pg_result_free(r);
	return rc;
}

static int update_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const todo_in *in = aw_http_valid_body(req);
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)((const id_params *)aw_http_valid_params(req))->id);
	const char *title = in->has_title ? in->title : NULL;
	const char *done = !in->has_done ? NULL : in->done ? "true" : "false";
	aw_pg_conn *db;
	aw_pg_result *r = NULL;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_query(db, &r, "UPDATE todos SET title = coalesce($2, title), done = coalesce($3::boolean, done) "
				      "WHERE id = $1 RETURNING " COLUMNS, AW_PG_ARGS(id, title, done))) >= 0)
		rc = send_todo(res, 200, r);
	aw_pg_result_free(r);
	return rc;
}

static int delete_todo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char id[24];
	snprintf(id, sizeof id, "%lld", (long long)((const id_params *)aw_http_valid_params(req))->id);
	aw_pg_conn *db;
	uint64_t n = 0;
	int rc;
	if ((rc = aw_http_depends(req, &DB, (void **)&db)) >= 0 &&
	    (rc = aw_pg_exec(db, &n, "DELETE FROM todos WHERE id = $1", AW_PG_ARGS(id))) >= 0) {
		rc = n ? aw_http_send(res, 204, NULL, NULL, 0) : aw_raise(-AW_EHTTP_NOT_FOUND, "Todo not found");
	}
	return rc;
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
	static const char *const any_origin[] = { "*", NULL };
	aw_http_mw *id, *cors;
	if (aw_http_mw_request_id(&id, NULL) || aw_app_use(app, id) ||
	    aw_http_mw_cors(&cors, &(aw_http_cors_opts){ .origins = any_origin, .methods = "GET, POST, PATCH, DELETE",
							 .headers = "Content-Type, X-Request-ID" }) ||
	    aw_app_use(app, cors) ||
	    /* A database we may not use is unavailable too (the rest of the
	     * table is the app's defaults: 400, 404, 422, 503, 504, 500). */
	    aw_app_error_status(app, -AW_EPG_AUTH, -AW_EPG_NODB, 503, NULL) ||
	    aw_app_lifespan(app, lifespan, NULL) ||
	    aw_app_route_spec(app, "GET", "/todos", list_todos, NULL, &list_spec) ||
	    aw_app_route_spec(app, "POST", "/todos", create_todo, NULL, &create_spec) ||
	    aw_app_route_spec(app, "GET", "/todos/{id}", get_todo, NULL, &get_spec) ||
	    aw_app_route_spec(app, "PATCH", "/todos/{id}", update_todo, NULL, &update_spec) ||
	    aw_app_route_spec(app, "DELETE", "/todos/{id}", delete_todo, NULL, &delete_spec) ||
	    aw_app_openapi(app, &(aw_openapi_opts){ .title = "todo_api", .version = "1.0.0" }) ||
	    aw_app_static(app, "/", static_dir, NULL)) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
