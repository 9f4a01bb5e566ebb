/* SPDX-License-Identifier: MIT */
/* Several loops on several threads of one process (one loop per thread,
 * shared-nothing): four threads each run a loop with an HTTP server (the app
 * layer), a client session doing requests against it and, when DATABASE_URL
 * is set, a PostgreSQL pool behind one of the routes. scripts/test.sh also
 * builds this program with ThreadSanitizer (build-tsan/), so any unguarded
 * process-wide state the layers share shows up as a race.
 *
 * The loops overlap on purpose: loop 0 starts first and stops first while
 * the others still run, and those check that the process-wide SIGSEGV
 * handler (stack overflow reports) is still theirs. */
#include "harness.h"

#include "awith/client.h"
#include "awith/http.h"
#include "awith/io.h"
#include "awith/pg.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NLOOPS 4
#define HELLO_REQUESTS 20
#define PG_REQUESTS 5

typedef struct loop_ctx {
	int id;
	const char *dsn;          /* NULL: no pg part */
	aw_pg_pool *pool;
	int hello_ok, pg_ok, serve_rc;
	int fail_line;            /* first failed step (0: none) */
	char fail_msg[256];
	bool handler_kept;        /* SIGSEGV handler unchanged after loop 0 stopped */
} loop_ctx;

static atomic_int loops_up;       /* loops that have started */
static atomic_bool loop0_done;    /* loop 0's aw_run returned */

static void fail_at(loop_ctx *c, int line)
{
	if (c->fail_line)
		return;
	c->fail_line = line;
	const aw_error *e = aw_error_current();
	snprintf(c->fail_msg, sizeof c->fail_msg, "%s", e && e->msg ? e->msg : "(no error in flight)");
}
#define STEP(c, cond)                          \
	do {                                   \
		if (!(cond))                   \
			fail_at((c), __LINE__); \
	} while (0)

static int h_hello(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	loop_ctx *c = ud;
	char text[32];
	snprintf(text, sizeof text, "hello from loop %d", c->id);
	return aw_http_text(res, 200, text);
}

/* /pg?n=N answers N + 1 computed by the server, through this loop's pool. */
static int h_pg(aw_http_request *req, aw_http_response *res, void *ud)
{
	loop_ctx *c = ud;
	const char *n = NULL;
	if (aw_http_query(req, "n", &n) < 0)
		return aw_error_pending();
	aw_pg_result *r;
	int rc = aw_pg_pool_query(c->pool, &r, "SELECT $1::int + 1", 1, (const char *const[]){ n ? n : "0" });
	if (rc < 0)
		return rc;
	char text[32];
	snprintf(text, sizeof text, "%s", aw_pg_text(r, 0, 0));
	aw_pg_result_free(r);
	return aw_http_text(res, 200, text);
}

typedef struct serve_arg {
	aw_app *app;
	aw_listener *l;
	int rc;
} serve_arg;

static int serve_task(void *arg)
{
	serve_arg *s = arg;
	s->rc = aw_app_serve(s->app, s->l);
	return 0;
}

static void client_part(loop_ctx *c, int port)
{
	aw_client_session s;
	char url[96], want[32];
	snprintf(want, sizeof want, "hello from loop %d", c->id);
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .timeout = AW_SEC(60) })) {
		for (int i = 0; i < HELLO_REQUESTS; i++) {
			aw_client_response r;
			snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", port);
			AW_WITH(aw_client_get_init(&r, &s, url)) {
				if (aw_client_response_status(&r) == 200 &&
				    strcmp(aw_client_response_text(&r), want) == 0)
					c->hello_ok++;
			}
			STEP(c, aw_error_pending() == 0);
			aw_error_clear();
		}
		for (int i = 0; c->pool && i < PG_REQUESTS; i++) {
			aw_client_response r;
			int n = c->id * 100 + i;
			char expect[16];
			snprintf(expect, sizeof expect, "%d", n + 1);
			snprintf(url, sizeof url, "http://127.0.0.1:%d/pg?n=%d", port, n);
			AW_WITH(aw_client_get_init(&r, &s, url)) {
				if (aw_client_response_status(&r) == 200 &&
				    strcmp(aw_client_response_text(&r), expect) == 0)
					c->pg_ok++;
			}
			STEP(c, aw_error_pending() == 0);
			aw_error_clear();
		}
	}
}

static int loop_main(void *arg)
{
	loop_ctx *c = arg;
	struct sigaction at_start;
	sigaction(SIGSEGV, NULL, &at_start);
	atomic_fetch_add(&loops_up, 1);

	if (c->dsn) {
		aw_pg_pool_opts po = { .dsn = c->dsn, .max_size = 2 };
		int rc = aw_pg_pool_open(&c->pool, &po);
		STEP(c, rc == 0);
		if (rc) {
			c->pool = NULL;
			aw_error_clear();
		}
	}
	aw_app *app = NULL;
	STEP(c, aw_app_new(&app, "loops-threads") == 0);
	if (!app)
		return 0;
	STEP(c, aw_app_route(app, "GET", "/hello", h_hello, c) == 0);
	if (c->pool)
		STEP(c, aw_app_route(app, "GET", "/pg", h_pg, c) == 0);
	aw_listener *l;
	int rc = aw_tcp_listen(&l, "127.0.0.1", 0, NULL);
	STEP(c, rc == 0);
	if (rc == 0) {
		serve_arg sa = { .app = app, .l = l };
		aw_task *t;
		rc = aw_spawn(&t, serve_task, &sa, "serve");
		STEP(c, rc == 0);
		if (rc == 0) {
			client_part(c, aw_listener_port(l));
			/* Loop 0 stops first, once every loop is up; the others
			 * keep going until it has stopped. */
			if (c->id == 0) {
				while (atomic_load(&loops_up) < NLOOPS)
					(void)!aw_sleep(AW_MS(2));
			} else {
				while (!atomic_load(&loop0_done))
					(void)!aw_sleep(AW_MS(2));
				struct sigaction now;
				sigaction(SIGSEGV, NULL, &now);
				c->handler_kept = now.sa_sigaction == at_start.sa_sigaction &&
						  now.sa_flags == at_start.sa_flags;
			}
			aw_app_stop(app);
			(void)!aw_task_join(t);
			c->serve_rc = sa.rc;
		}
		aw_listener_close(l);
	}
	aw_app_free(app);
	if (c->pool)
		STEP(c, aw_pg_pool_close(c->pool) == 0);
	aw_error_clear();
	return 0;
}

typedef struct thread_arg {
	loop_ctx *c;
	int rc;
} thread_arg;

static void *thread_main(void *arg)
{
	thread_arg *ta = arg;
	if (ta->c->id != 0)
		while (atomic_load(&loops_up) < 1)
			usleep(1000);
	ta->rc = aw_run(loop_main, ta->c);
	if (ta->c->id == 0)
		atomic_store(&loop0_done, true);
	return NULL;
}

AW_TEST(four_loops_on_four_threads_serve_fetch_and_query_independently)
{
	const char *dsn = getenv("DATABASE_URL");
	if (!dsn || !*dsn) {
		fprintf(stderr, "DATABASE_URL is not set: the PostgreSQL part of this test is skipped "
				"(scripts/test.sh starts a private cluster and sets it)\n");
		dsn = NULL;
	}
	struct sigaction before;
	sigaction(SIGSEGV, NULL, &before);
	loop_ctx c[NLOOPS];
	thread_arg ta[NLOOPS];
	pthread_t th[NLOOPS];
	for (int i = 0; i < NLOOPS; i++) {
		c[i] = (loop_ctx){ .id = i, .dsn = dsn };
		ta[i] = (thread_arg){ .c = &c[i], .rc = -1 };
		CHECK_EQ(pthread_create(&th[i], NULL, thread_main, &ta[i]), 0);
	}
	for (int i = 0; i < NLOOPS; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < NLOOPS; i++) {
		if (c[i].fail_line)
			fprintf(stderr, "loop %d: step at line %d failed: %s\n", i, c[i].fail_line, c[i].fail_msg);
		CHECK_EQ(ta[i].rc, 0);
		CHECK_EQ(c[i].fail_line, 0);
		CHECK_EQ(c[i].hello_ok, HELLO_REQUESTS);
		CHECK_EQ(c[i].pg_ok, dsn ? PG_REQUESTS : 0);
		CHECK_EQ(c[i].serve_rc, 0);
		if (i != 0)
			CHECK(c[i].handler_kept);
	}
	/* Every loop has stopped: the disposition from before the first one
	 * is back (the default here; the sanitizer's handler under one). */
	struct sigaction now;
	sigaction(SIGSEGV, NULL, &now);
	CHECK(now.sa_sigaction == before.sa_sigaction);
}
