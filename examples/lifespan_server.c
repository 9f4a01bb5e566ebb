/* SPDX-License-Identifier: MIT */
/*
 * lifespan_server — FastAPI's lifespan and a dependency with teardown.
 *
 *     @asynccontextmanager
 *     async def lifespan(app):
 *         app.state.pool = await create_pool()      # startup
 *         yield
 *         await app.state.pool.close()              # shutdown
 *
 *     async def get_db():
 *         conn = await app.state.pool.acquire()
 *         try:
 *             yield conn                            # the handler runs here
 *         finally:
 *             await app.state.pool.release(conn)    # after the response
 *
 *     @app.get("/items/{item_id}")
 *     async def read_item(item_id: int, db = Depends(get_db)):
 *         return {"item_id": item_id, "conn": db.id}
 *
 * How it maps:
 *   - the lifespan is a generator manager (aw_gen_fn): setup, aw_gen_yield
 *     with the app's state, teardown. The server enters it before it
 *     accepts anything and exits it after the last connection closed, on
 *     SIGINT/SIGTERM; the teardown sees the error the server stops with;
 *   - Depends(get_db) is aw_http_depends(req, &DB): a generator manager
 *     entered the first time a handler asks for it in a request (a second
 *     call gets the same value), exited after the response has been sent,
 *     in reverse order, also when the handler failed (its aw_gen_yield
 *     returns the handler's error) or the client went away;
 *   - the "pool" here is a toy: a fixed set of connection ids, handed out
 *     and taken back, with a short wait in each teardown to show that the
 *     response does not wait for it.
 *
 *     $ ./lifespan_server --port 8000 &
 *     $ curl -s http://127.0.0.1:8000/items/42
 *     {"item_id":42,"conn":1}
 *     $ curl -s http://127.0.0.1:8000/items/x
 *     {"detail":"item_id must be an integer"}
 *     $ kill -INT %1
 *
 * The program prints each step to stdout: startup, each dependency's setup
 * and teardown (with the error it saw), shutdown.
 */
#include <awith/http.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The toy pool: the app's state, created by the lifespan. */
typedef struct pool {
	bool busy[4];
	int acquired, released;
} pool;

static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	pool *p = calloc(1, sizeof *p);
	if (!p)
		return aw_raise(-ENOMEM, "no memory for the pool");
	printf("startup: pool of %zu connections ready\n", sizeof p->busy / sizeof p->busy[0]);
	fflush(stdout);
	int err = aw_gen_yield(g, p);   /* the server runs here */
	printf("shutdown: pool closed (%d acquired, %d released, server error %d)\n", p->acquired, p->released, err);
	fflush(stdout);
	free(p);
	return err;
}

/* The dependency: acquire a connection, yield it, release it. */
static int get_db(aw_gen *g, void *arg)
{
	(void)arg;
	aw_http_request *req = aw_http_dep_request(g);
	pool *p = aw_app_state(aw_http_app(req));
	int id = -1;
	for (int i = 0; i < 4; i++)
		if (!p->busy[i]) {
			id = i;
			break;
		}
	if (id < 0)
		return aw_raise(-EAGAIN, "pool exhausted");
	p->busy[id] = true;
	p->acquired++;
	printf("get_db: acquired conn %d\n", id + 1);
	fflush(stdout);
	int conn = id + 1;
	int err = aw_gen_yield(g, &conn);   /* the handler runs, the response is sent */
	int rc = aw_sleep(AW_MS(10));       /* a teardown may wait (e.g. ROLLBACK) */
	p->busy[id] = false;
	p->released++;
	printf("get_db: released conn %d (handler error: %d)\n", id + 1, err);
	fflush(stdout);
	return err ? err : rc;
}
static const aw_http_dep DB = AW_HTTP_DEP("get_db", get_db, NULL);

static int read_item(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *s = aw_http_param(req, "item_id");
	char *end;
	long id = strtol(s, &end, 10);
	if (!*s || *end) {
		aw_jw *w = aw_http_json_begin(res, 422);
		aw_jw_object(w);
		aw_jw_key(w, "detail");
		aw_jw_string(w, "item_id must be an integer");
		aw_jw_object_end(w);
		return aw_http_json_end(w);
	}
	int *conn;
	int rc = aw_http_depends(req, &DB, (void **)&conn);
	if (rc < 0)
		return rc;   /* 500; logged with the cause */
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "item_id");
	aw_jw_int(w, id);
	aw_jw_key(w, "conn");
	aw_jw_int(w, *conn);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

int main(int argc, char **argv)
{
	aw_app *app;
	if (aw_app_new(&app, "lifespan") < 0)
		return 1;
	if (aw_app_lifespan(app, lifespan, NULL) || aw_app_route(app, "GET", "/items/{item_id}", read_item, NULL)) {
		aw_error_print(stderr, aw_error_current());
		return 1;
	}
	int rc = aw_app_main(app, argc, argv);
	aw_app_free(app);
	return rc;
}
