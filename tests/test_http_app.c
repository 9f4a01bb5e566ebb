/* SPDX-License-Identifier: MIT */
/* The app layer: router, query decoding, JSON in and out, handler errors
 * (500 without internals, logged with the cause chain), dependencies
 * (cached per request, LIFO teardown after the response, also on failure
 * and client disconnect), lifespan and hooks, graceful shutdown. Events
 * inside the server are printed to its stderr (the log file) and checked
 * by the test. */
#include "harness.h"
#include "http_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define EV(...) fprintf(stderr, "EV " __VA_ARGS__)

/* ---- routes ---------------------------------------------------------------------- */

static int h_text(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	return aw_http_text(res, 200, ud);
}

static int h_params(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char out[256];
	snprintf(out, sizeof out, "org=%s repo=%s", aw_http_param(req, "org"), aw_http_param(req, "repo"));
	return aw_http_text(res, 200, out);
}

static int h_query(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *a, *b, *e, *none;
	int rc;
	if ((rc = aw_http_query(req, "a", &a)) < 0 || (rc = aw_http_query(req, "b", &b)) < 0 ||
	    (rc = aw_http_query(req, "e", &e)) < 0 || (rc = aw_http_query(req, "none", &none)) < 0)
		return rc;
	char out[256];
	snprintf(out, sizeof out, "a=%s b=%s e=%s none=%s", a ? a : "(null)", b ? b : "(null)", e ? e : "(null)",
		 none ? "set" : "(null)");
	return aw_http_text(res, 200, out);
}

static int h_json_in(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	json_t *v;
	int rc = aw_http_json_body(req, &v);
	if (rc)
		return rc;
	json_t *x = json_object_get(v, "x");
	json_t *out = json_pack("{s:O?, s:b}", "got", x, "ok", 1);
	rc = aw_http_json(res, 201, out);
	json_decref(out);
	return rc;
}

static int h_writer(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "s");
	aw_jw_string(w, "q\"b\\n\n\t\x01 \xc3\xa9\xe2\x82\xac");
	aw_jw_key(w, "i");
	aw_jw_int(w, -9223372036854775807LL - 1);
	aw_jw_key(w, "d");
	aw_jw_double(w, 0.1);
	aw_jw_key(w, "a");
	aw_jw_array(w);
	aw_jw_bool(w, true);
	aw_jw_null(w);
	aw_jw_raw(w, "{\"r\":1}", 7);
	aw_jw_array(w);
	aw_jw_array_end(w);
	aw_jw_array_end(w);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int h_writer_bad(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_string(w, "value without a key");
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

/* A manager whose exit fails while handling the body's error: a cause
 * chain ("rollback failed" during handling of "disk on fire"). */
static int tx_gen(aw_gen *g, void *arg)
{
	(void)arg;
	int err = aw_gen_yield(g, NULL);
	if (err)
		return aw_raise(-ENOTRECOVERABLE, "rollback failed");
	return 0;
}

static int h_fail(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)res, (void)ud;
	aw_gen tx;
	AW_WITH(aw_gen_init(&tx, "tx", tx_gen, NULL)) {
		return aw_raise(-EIO, "disk on fire at /secret/path");
	}
	return 0;
}

static int h_headers(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int bad = aw_http_set_header(res, "X-Evil", "a\r\nSet-Cookie: x=1");
	aw_error_clear();
	int bad2 = aw_http_set_header(res, "Content-Length", "5");
	aw_error_clear();
	EXPECT_EQ(aw_http_set_header(res, "X-Good", "yes"), 0);
	char out[64];
	snprintf(out, sizeof out, "%d %d", bad, bad2);
	return aw_http_text(res, 200, out);
}

/* The names the server owns, in any case, beside ones of the same length
 * that it does not (aw_http_set_header compares by length first). */
static int h_owned_headers(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int te = aw_http_set_header(res, "transfer-encoding", "chunked");
	aw_error_clear();
	int cl = aw_http_set_header(res, "CONTENT-LENGTH", "1");
	aw_error_clear();
	int conn = aw_http_set_header(res, "connection", "upgrade");
	aw_error_clear();
	EXPECT_EQ(aw_http_set_header(res, "Content-Lengths", "x"), 0);   /* 15 letters: not the server's */
	EXPECT_EQ(aw_http_set_header(res, "Connectio", "x"), 0);
	EXPECT_EQ(aw_http_set_header(res, "Dates", "x"), 0);
	EXPECT_EQ(aw_http_set_header(res, "Server", "t"), 0);
	EXPECT_EQ(aw_http_set_header(res, "DATE", "Thu, 01 Jan 1970 00:00:00 GMT"), 0);   /* replaces the server's */
	EXPECT_EQ(aw_http_set_header(res, "CONNECTION", "close"), 0);
	char out[64];
	snprintf(out, sizeof out, "%d %d %d", te, cl, conn);
	return aw_http_text(res, 200, out);
}

/* ---- dependencies ------------------------------------------------------------------- */

static int a_entries;

static int dep_a(aw_gen *g, void *arg)
{
	(void)arg;
	a_entries++;
	EV("a enter %d\n", a_entries);
	int err = aw_gen_yield(g, "A");
	/* teardown waits: it must run after the response has left (long
	 * enough that a slow, sanitized run still tells the two apart) */
	int rc = aw_sleep(AW_MS(600));
	EV("a exit err=%d\n", err);
	return err ? err : rc;
}
static const aw_http_dep DEP_A = AW_HTTP_DEP("a", dep_a, NULL);

static int dep_b(aw_gen *g, void *arg)
{
	(void)arg;
	aw_http_request *req = aw_http_dep_request(g);
	const char *a;
	int rc = aw_http_depends(req, &DEP_A, (void **)&a);   /* a dependency of a dependency */
	if (rc < 0)
		return rc;
	EV("b enter (a=%s)\n", a);
	int err = aw_gen_yield(g, "B");
	EV("b exit err=%d\n", err);
	return err;
}
static const aw_http_dep DEP_B = AW_HTTP_DEP("b", dep_b, NULL);

static int dep_bad_teardown(aw_gen *g, void *arg)
{
	(void)arg;
	int err = aw_gen_yield(g, "C");
	EV("c exit err=%d\n", err);
	return aw_raise(-EPIPE, "teardown exploded");
}
static const aw_http_dep DEP_C = AW_HTTP_DEP("c", dep_bad_teardown, NULL);

static int h_deps(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *a, *b, *b2;
	int rc = aw_http_depends(req, &DEP_B, (void **)&b);
	if (rc < 0)
		return rc;
	if ((rc = aw_http_depends(req, &DEP_A, (void **)&a)) < 0)   /* cached: not entered again */
		return rc;
	if ((rc = aw_http_depends(req, &DEP_B, (void **)&b2)) < 0)
		return rc;
	if (b != b2)
		return -EINVAL;
	const char *fail, *bad;
	if ((rc = aw_http_query(req, "fail", &fail)) < 0 || (rc = aw_http_query(req, "bad", &bad)) < 0)
		return rc;
	if (fail)
		return aw_raise(-ENOENT, "handler failed on purpose");
	void *c;
	if (bad && (rc = aw_http_depends(req, &DEP_C, &c)) < 0)
		return rc;
	char out[64];
	snprintf(out, sizeof out, "%s%s", a, b);
	return aw_http_text(res, 200, out);
}

/* A dependency may yield NULL: that is a value, not a failure. */
static int dep_null(aw_gen *g, void *arg)
{
	(void)arg;
	return aw_gen_yield(g, NULL);
}
static const aw_http_dep DEP_NULL = AW_HTTP_DEP("null", dep_null, NULL);

static int dep_refuses(aw_gen *g, void *arg)
{
	(void)g;
	(void)arg;
	return aw_raise(-EACCES, "no entry");
}
static const aw_http_dep DEP_REFUSES = AW_HTTP_DEP("refuses", dep_refuses, NULL);

static int h_dep_values(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	void *v = &v;
	int rc = aw_http_depends(req, &DEP_NULL, &v);
	if (rc < 0)
		return rc;
	void *w = &w;
	int refused = aw_http_depends(req, &DEP_REFUSES, &w);
	int pending = aw_error_pending();
	aw_error_clear();   /* handled: reported in the body */
	char out[96];
	snprintf(out, sizeof out, "null rc=%d value=%s; refused rc=%d pending=%d out=%s", rc, v ? "set" : "NULL",
		 refused, pending, w ? "set" : "NULL");
	return aw_http_text(res, 200, out);
}

static int h_slow_dep(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	void *a;
	int rc = aw_http_depends(req, &DEP_A, &a);
	if (rc < 0)
		return rc;
	EV("slow handler start\n");
	rc = aw_sleep(AW_MS(300));
	EV("slow handler woke rc=%d\n", rc);
	if (rc)
		return rc;
	rc = aw_http_text(res, 200, "slow done");
	EV("slow handler sent rc=%d\n", rc);
	return rc;
}

/* ---- lifespan ------------------------------------------------------------------------ */

static int lifespan(aw_gen *g, void *arg)
{
	(void)arg;
	EV("lifespan setup\n");
	static const char state[] = "the-state";
	int err = aw_gen_yield(g, (void *)state);
	EV("lifespan teardown err=%d\n", err);
	return err;
}

static int hook(aw_app *app, void *arg)
{
	(void)app;
	EV("hook %s\n", (const char *)arg);
	return 0;
}

static int h_state(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return aw_http_text(res, 200, aw_app_state(aw_http_app(req)));
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "apptest") < 0)
		return NULL;   /* no memory: the caller's check fails the test */
	aw_http_limits *l = aw_app_limits(app);
	l->shutdown_grace = AW_MS(2000);
	EXPECT_EQ(aw_app_lifespan(app, lifespan, NULL), 0);
	EXPECT_EQ(aw_app_on_startup(app, hook, "start1"), 0);
	EXPECT_EQ(aw_app_on_startup(app, hook, "start2"), 0);
	EXPECT_EQ(aw_app_on_shutdown(app, hook, "stop1"), 0);
	EXPECT_EQ(aw_app_on_shutdown(app, hook, "stop2"), 0);
	aw_app_access_log(app, stderr);
	EXPECT_EQ(aw_app_route(app, "GET", "/users/me", h_text, "me"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/users/{id}", h_text, "some user"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/users/{id}/posts", h_text, "posts"), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/users", h_text, "created"), 0);
	EXPECT_EQ(aw_app_route(app, "PUT", "/users/{id}", h_text, "put"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/repos/{org}/{repo}", h_params, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/trailing/", h_text, "slash"), 0);
	EXPECT_EQ(aw_app_route(app, "*", "/any", h_text, "any"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/q", h_query, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/json", h_json_in, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/writer", h_writer, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/writer-bad", h_writer_bad, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/fail", h_fail, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/headers", h_headers, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/owned-headers", h_owned_headers, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/deps", h_deps, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/dep-values", h_dep_values, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/slow-dep", h_slow_dep, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/state", h_state, NULL), 0);
	return app;
}

#define START(s)                                                                   \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make_app), 0)

static int get(int port, const char *raw, resp *r)
{
	return http_once(port, raw, strlen(raw), r, NULL);
}

static int body_is(int port, const char *raw, int status, const char *body)
{
	resp r;
	int st = get(port, raw, &r);
	int ok = st == status && r.body && strcmp(r.body, body) == 0;
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "%s -> %d '%s', want %d '%s'", raw, st, r.body ? r.body : "", status,
			     body);
	resp_free(&r);
	return ok;
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: a\r\n\r\n"

/* Lines "EV ..." of the log, in order, joined by '|'. */
static char *events(const srv *s)
{
	char *log = srv_log(s);
	char *out = calloc(1, strlen(log) + 1);
	for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n"))
		if (strncmp(line, "EV ", 3) == 0) {
			if (*out)
				strcat(out, "|");
			strcat(out, line + 3);
		}
	free(log);
	return out;
}

/* ---- tests ------------------------------------------------------------------------------ */

AW_TEST(router_matches_templates_with_params_404s_and_405s_with_allow)
{
	START(s);
	body_is(s.port, GET("/users/me"), 200, "me");
	body_is(s.port, GET("/users/42"), 200, "some user");
	body_is(s.port, GET("/users/me/posts"), 200, "posts");   /* backtracks to {id} */
	body_is(s.port, GET("/repos/awith/core"), 200, "org=awith repo=core");
	body_is(s.port, GET("/trailing/"), 200, "slash");
	body_is(s.port, "DELETE /any HTTP/1.1\r\nHost: a\r\n\r\n", 200, "any");
	body_is(s.port, GET("/trailing"), 404, "{\"detail\":\"Not Found\"}");
	body_is(s.port, GET("/users/"), 404, "{\"detail\":\"Not Found\"}");
	body_is(s.port, GET("/nope"), 404, "{\"detail\":\"Not Found\"}");
	/* HEAD falls back to GET */
	resp r;
	CHECK_EQ(http_once(s.port, "HEAD /users/me HTTP/1.1\r\nHost: a\r\n\r\n", 37, &r, NULL), 200);
	resp_free(&r);
	/* 405 with every allowed method */
	CHECK_EQ(get(s.port, "DELETE /users/42 HTTP/1.1\r\nHost: a\r\n\r\n", &r), 405);
	char allow[128];
	CHECK(resp_header(&r, "Allow", allow, sizeof allow));
	CHECK_STR(allow, "GET, HEAD, PUT");
	resp_free(&r);
	CHECK_EQ(get(s.port, "GET /users HTTP/1.1\r\nHost: a\r\n\r\n", &r), 405);
	CHECK(resp_header(&r, "Allow", allow, sizeof allow));
	CHECK_STR(allow, "POST");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(router_rejects_bad_templates)
{
	aw_app *app;
	if (aw_app_new(&app, "t") < 0)
		CHECK(!"aw_app_new: no memory");
	/* Every code first, then the checks: a failed check must not leak
	 * the app (the fault-injection runner fails allocations here). */
	int rc[10] = {
		aw_app_route(app, "GET", "/a/{id}", h_text, NULL),
		aw_app_route(app, "GET", "/a/{id}", h_text, NULL),
		aw_app_route(app, "GET", "no-slash", h_text, NULL),
		aw_app_route(app, "GET", "/a/{id", h_text, NULL),
		aw_app_route(app, "GET", "/a/x{id}", h_text, NULL),
		aw_app_route(app, "GET", "/a/{i-d}", h_text, NULL),
		aw_app_route(app, "GET", "/a/{id}/{id}", h_text, NULL),
		aw_app_route(app, "get", "/b", h_text, NULL),
		aw_app_route(app, "GET", "/b%20c", h_text, NULL),
		aw_app_route(app, "GET", "/b", NULL, NULL),
	};
	aw_error_clear();
	aw_app_free(app);
	CHECK_EQ(rc[0], 0);
	CHECK_EQ(rc[1], -EEXIST);
	for (int i = 2; i < 10; i++)
		CHECK_EQ(rc[i], -EINVAL);
}

AW_TEST(query_decoding)
{
	START(s);
	body_is(s.port, GET("/q?a=1&b=x+y%21&e=&a=2"), 200, "a=1 b=x y! e= none=(null)");
	body_is(s.port, GET("/q?b=%E2%82%AC&a=%41"), 200, "a=A b=\xe2\x82\xac e=(null) none=(null)");
	body_is(s.port, GET("/q"), 200, "a=(null) b=(null) e=(null) none=(null)");
	body_is(s.port, GET("/q?a=%zz"), 400, "{\"detail\":\"invalid percent-encoding in the query string\"}");
	body_is(s.port, GET("/q?a=%00"), 400, "{\"detail\":\"invalid percent-encoding in the query string\"}");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(json_in_and_out)
{
	START(s);
	resp r;
	const char *req = "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n{\"x\": [1, \"two\"]}";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 201);
	CHECK_STR(r.body, "{\"got\":[1,\"two\"],\"ok\":true}");
	resp_free(&r);
	/* chunked JSON */
	req = "POST /json HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"x\"\r\n4\r\n: 5}\r\n0\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 201);
	CHECK_STR(r.body, "{\"got\":5,\"ok\":true}");
	resp_free(&r);
	/* invalid JSON: a clear 400 */
	req = "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\n{\"x\": 1";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 400);
	CHECK(strncmp(r.body, "{\"detail\":\"invalid JSON: ", 25) == 0);
	resp_free(&r);
	/* the writer */
	CHECK_EQ(get(s.port, GET("/writer"), &r), 200);
	CHECK_STR(r.body, "{\"s\":\"q\\\"b\\\\n\\n\\t\\u0001 \xc3\xa9\xe2\x82\xac\",\"i\":-9223372036854775808,"
			  "\"d\":0.1,\"a\":[true,null,{\"r\":1},[]]}");
	json_error_t je;
	json_t *parsed = json_loads(r.body, 0, &je);
	CHECK(parsed != NULL);
	json_decref(parsed);
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/writer-bad"), &r), 500);
	CHECK(strncmp(r.body, "{\"detail\":\"Internal Server Error\",\"request_id\":\"", 48) == 0);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(set_header_refuses_the_framing_headers_in_any_case_and_honours_date_and_connection)
{
	START(s);
	resp r;
	CHECK_EQ(get(s.port, GET("/owned-headers"), &r), 200);
	CHECK_STR(r.body, "-22 -22 -22");
	char v[64];
	CHECK(resp_header(&r, "Content-Lengths", v, sizeof v));
	CHECK(resp_header(&r, "Connectio", v, sizeof v));
	CHECK(resp_header(&r, "Dates", v, sizeof v));
	CHECK(resp_header(&r, "Server", v, sizeof v));
	CHECK(resp_header(&r, "Date", v, sizeof v));
	CHECK_STR(v, "Thu, 01 Jan 1970 00:00:00 GMT");
	int dates = 0;   /* one Date only: the handler's */
	for (const char *p = r.head; (p = strcasestr(p, "\r\nDate:")) != NULL; p += 2)
		dates++;
	CHECK_EQ(dates, 1);
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	CHECK(r.body_len == 11);   /* its own Content-Length, not the handler's */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(handler_error_is_500_and_logged)
{
	START(s);
	resp r;
	CHECK_EQ(get(s.port, GET("/fail"), &r), 500);
	/* nothing internal; the request id, to quote when reporting it */
	CHECK_EQ(strlen(r.body), 48u + 16 + 2);
	CHECK(strncmp(r.body, "{\"detail\":\"Internal Server Error\",\"request_id\":\"", 48) == 0);
	char id[20];
	memcpy(id, r.body + 48, 16);
	id[16] = 0;
	resp_free(&r);
	/* header injection refused */
	CHECK_EQ(get(s.port, GET("/headers"), &r), 200);
	char v[32];
	CHECK_STR(r.body, "-22 -22");
	CHECK(resp_header(&r, "X-Good", v, sizeof v));
	CHECK(!resp_header(&r, "X-Evil", v, sizeof v));
	CHECK(!resp_header(&r, "Set-Cookie", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	/* the log has the whole chain, with locations */
	CHECK(strstr(log, "GET /fail failed (500)") != NULL);
	CHECK(strstr(log, id) != NULL);   /* the log record carries the same id */
	/* logged once: one record for the failure */
	const char *first = strstr(log, "GET /fail failed");
	CHECK(first && !strstr(first + 1, "GET /fail failed"));
	CHECK(strstr(log, "rollback failed") != NULL);
	CHECK(strstr(log, "during handling of") != NULL);
	CHECK(strstr(log, "disk on fire at /secret/path") != NULL);
	CHECK(strstr(log, "test_http_app.c") != NULL);
	/* the access log */
	CHECK(strstr(log, "\"GET /fail HTTP/1.1\" 500") != NULL);
	free(log);
}

AW_TEST(dependencies_enter_once_and_tear_down_lifo_after_the_response_seeing_the_error)
{
	START(s);
	resp r;
	long long t0 = now_ms();
	CHECK_EQ(get(s.port, GET("/deps"), &r), 200);
	/* the response left before the teardown's 600 ms sleep */
	CHECK_LT(now_ms() - t0, 500);
	CHECK_STR(r.body, "AB");
	resp_free(&r);
	usleep(800000);
	CHECK_EQ(get(s.port, GET("/deps?fail=1"), &r), 500);
	resp_free(&r);
	usleep(800000);
	CHECK_EQ(get(s.port, GET("/deps?bad=1"), &r), 200);   /* a failing teardown: logged only */
	resp_free(&r);
	usleep(800000);
	CHECK_EQ(get(s.port, GET("/deps"), &r), 200);           /* and the server goes on */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	const char *want =
		"hook start1|hook start2|lifespan setup|"
		"a enter 1|b enter (a=A)|b exit err=0|a exit err=0|"
		"a enter 2|b enter (a=A)|b exit err=-2|a exit err=-2|"
		"a enter 3|b enter (a=A)|c exit err=0|b exit err=-32|a exit err=-32|"
		"a enter 4|b enter (a=A)|b exit err=0|a exit err=0|"
		"lifespan teardown err=0|hook stop2|hook stop1";
	CHECK_STR(ev, want);
	free(ev);
	char *log = srv_log(&s);
	CHECK(strstr(log, "GET /deps: a dependency's teardown failed") != NULL);
	CHECK(strstr(log, "teardown exploded") != NULL);
	CHECK(strstr(log, "handler failed on purpose") != NULL);
	free(log);
}

AW_TEST(depends_returns_zero_with_a_null_value_and_the_code_of_a_failed_dependency)
{
	START(s);
	resp r;
	CHECK_EQ(get(s.port, GET("/dep-values"), &r), 200);
	CHECK_STR(r.body, "null rc=0 value=NULL; refused rc=-13 pending=-13 out=NULL");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(teardown_after_client_disconnect)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, GET("/slow-dep")), 0);
	usleep(50000);
	close(fd);   /* the client goes away while the handler runs */
	usleep(600000);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	/* the handler is cancelled when its client goes away, and its
	 * dependency's teardown sees the cancellation */
	CHECK(strstr(ev, "a enter 1|slow handler start|slow handler woke rc=-125|a exit err=-125") != NULL);
	CHECK(strstr(ev, "lifespan teardown err=0") != NULL);
	CHECK(strstr(ev, "|a exit") < strstr(ev, "lifespan teardown"));
	free(ev);
}

AW_TEST(lifespan_state)
{
	START(s);
	body_is(s.port, GET("/state"), 200, "the-state");
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "hook start1|hook start2|lifespan setup|lifespan teardown err=0|hook stop2|hook stop1");
	free(ev);
}

static int failing_lifespan(aw_gen *g, void *arg)
{
	(void)g, (void)arg;
	EV("setup fails\n");
	return aw_raise(-ECONNREFUSED, "database is down");
}

static aw_app *make_failing(void)
{
	aw_app *app;
	if (aw_app_new(&app, "failing") < 0)
		return NULL;   /* no memory: the caller's check fails the test */
	EXPECT_EQ(aw_app_lifespan(app, failing_lifespan, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "x"), 0);
	return app;
}

AW_TEST(lifespan_setup_failure)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_failing), 0);
	CHECK_EQ(srv_wait(&s), 1);
	char *log = srv_log(&s);
	CHECK(strstr(log, "database is down") != NULL);
	free(log);
}

AW_TEST(graceful_shutdown_with_request_in_flight)
{
	START(s);
	int idle = cli_connect(s.port);   /* an idle keep-alive connection */
	CHECK(idle >= 0);
	CHECK_EQ(cli_sends(idle, GET("/state")), 0);
	resp r;
	CHECK_EQ(cli_read(idle, &r, false), 0);
	resp_free(&r);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, GET("/slow-dep")), 0);
	usleep(100000);
	kill(s.pid, SIGTERM);
	/* the idle one is closed at once; the busy one gets its answer */
	CHECK(cli_closed(idle, 1000));
	close(idle);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "slow done");
	char v[32];
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	resp_free(&r);
	CHECK(cli_closed(fd, 2000));
	close(fd);
	/* no new connections */
	usleep(50000);
	int late = cli_connect(s.port);
	if (late >= 0) {
		CHECK(cli_closed(late, 2000));
		close(late);
	}
	CHECK_EQ(srv_wait(&s), 0);
	char *ev = events(&s);
	CHECK(strstr(ev, "slow handler sent rc=0|a exit err=0|lifespan teardown err=0|hook stop2|hook stop1") != NULL);
	free(ev);
}

/* A client that connected just before the shutdown began has not had its
 * chance: its first request is answered (with Connection: close), though
 * it arrives after the shutdown started. A graceful restart depends on it. */
AW_TEST(a_connection_accepted_before_shutdown_gets_its_first_request_answered)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK(cli_wait_accepted(fd, 5000));
	kill(s.pid, SIGTERM);
	usleep(300000);   /* the shutdown is under way */
	CHECK_EQ(cli_sends(fd, GET("/state")), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "the-state");
	char v[32];
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	resp_free(&r);
	CHECK(cli_closed(fd, 2000));
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
}

static aw_app *make_long_grace(void)
{
	aw_app *app = make_app();
	aw_app_limits(app)->shutdown_grace = AW_SEC(20);
	return app;
}

/* A connection that never sends (a browser's speculative pre-connect)
 * holds the shutdown for the first-request window (1 s), not the grace. */
AW_TEST(a_silent_connection_holds_shutdown_for_the_first_request_window_not_the_grace)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_long_grace), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK(cli_wait_accepted(fd, 5000));
	long long t0 = now_ms();
	kill(s.pid, SIGTERM);
	CHECK(cli_closed(fd, 5000));
	long long closed_after = now_ms() - t0;
	close(fd);
	CHECK_GE(closed_after, 800);    /* it was given the window */
	CHECK_LT(closed_after, 5000);   /* and not the 20 s grace */
	CHECK_EQ(srv_wait(&s), 0);
}

static aw_app *make_short_grace(void)
{
	aw_app *app = make_app();
	aw_app_limits(app)->shutdown_grace = AW_MS(100);
	return app;
}

AW_TEST(shutdown_cancels_after_grace)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_short_grace), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, GET("/slow-dep")), 0);
	usleep(50000);
	long long t0 = now_ms();
	kill(s.pid, SIGTERM);
	resp r;
	int rc = cli_read(fd, &r, false);
	if (rc == 0) {
		CHECK_EQ(r.status, 503);
		resp_free(&r);
	}
	CHECK(cli_closed(fd, 2000));
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
	CHECK_LT(now_ms() - t0, 2000);
	char *ev = events(&s);
	/* the handler was cancelled; its dependency still tore down, seeing it */
	CHECK(strstr(ev, "slow handler woke rc=-125|a exit err=-125|lifespan teardown") != NULL);
	free(ev);
}

/* aw_app_stop from another task; then serving again on the listener that
 * was shut down fails at once (no spinning on accept errors). */
static int stopper(void *arg)
{
	int rc = aw_sleep(AW_MS(50));
	/* Stop it even when the sleep failed (an injected allocation failure
	 * arming its timer): otherwise the serve would never end. */
	aw_app_stop(arg);
	return rc;
}

static int serve_twice(void *arg)
{
	int *rcs = arg;
	aw_app *app;
	if (aw_app_new(&app, "twice") < 0)
		return aw_error_pending();   /* no memory: the test fails */
	FILE *quiet = fopen("/dev/null", "we");
	aw_app_error_log(app, quiet);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "x"), 0);
	aw_listener *l;
	int rc = aw_tcp_listen(&l, "127.0.0.1", 0, NULL);
	aw_task *t;
	if (rc == 0) {
		rc = aw_spawn(&t, stopper, app, "stopper");
		if (rc)
			aw_listener_close(l);
	}
	if (rc) {   /* e.g. an injected allocation failure: free what we have */
		aw_app_free(app);
		fclose(quiet);
		return rc;
	}
	rcs[0] = aw_app_serve(app, l);
	EXPECT_EQ(aw_task_join(t), 0);
	/* Serve again only after a first serve that ran and was stopped: after
	 * one that failed at once (an injected allocation failure), nobody
	 * would stop the second. */
	if (rcs[0] == 0)
		rcs[1] = aw_app_serve(app, l);
	aw_error_clear();
	aw_listener_close(l);
	aw_app_free(app);
	fclose(quiet);
	return 0;
}

AW_TEST(stop_and_serve_again)
{
	int rcs[2] = { 1, 1 };
	long long t0 = now_ms();
	CHECK_EQ(aw_run(serve_twice, rcs), 0);
	CHECK_EQ(rcs[0], 0);
	CHECK(rcs[1] < 0);
	CHECK_LT(now_ms() - t0, 3000);
}

/* ---- a graceful restart serves every client that connected while the old
 * generation listened ------------------------------------------------------------- */

static int restart_arm_fd = -1;       /* readable: the stopping handler stops the app */
static int restart_block_fd = -1;     /* the blocking handler reads a byte from it */
static int restart_blocked_fd = -1;   /* ... after writing one to this */

static int h_stop_when_told(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	int rc = aw_fd_wait(restart_arm_fd, AW_READABLE, aw_deadline_after(AW_SEC(10)));
	aw_app_stop(ud);
	return rc ? rc : aw_http_text(res, 200, "stopping");
}

/* Holds the whole loop (a blocking read): what happens meanwhile reaches
 * the server in one batch at its next poll. */
static int h_block_loop(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	char c = 'b';
	if (write(restart_blocked_fd, &c, 1) != 1 || read(restart_block_fd, &c, 1) != 1)
		return aw_raise(-EIO, "the test's pipes");
	return aw_http_text(res, 200, "unblocked");
}

/* The old generation: aw_app_run on the listening socket handed over as
 * systemd does (LISTEN_FDS), so it is shared: stopping leaves it open. */
static void restart_old_generation(int lfd, int arm, int block, int blocked)
{
	restart_arm_fd = fcntl(arm, F_DUPFD_CLOEXEC, 50);
	restart_block_fd = fcntl(block, F_DUPFD_CLOEXEC, 50);
	restart_blocked_fd = fcntl(blocked, F_DUPFD_CLOEXEC, 50);
	int hi = fcntl(lfd, F_DUPFD_CLOEXEC, 50);
	if (hi < 0 || restart_arm_fd < 0 || restart_block_fd < 0 || restart_blocked_fd < 0 || dup2(hi, 3) != 3)
		_exit(3);
	close(hi);
	char pid[32];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "1", 1);
	aw_app *app;
	if (aw_app_new(&app, "old-generation") < 0)
		_exit(4);
	FILE *quiet = fopen("/dev/null", "we");
	aw_app_error_log(app, quiet);
	if (aw_app_route(app, "GET", "/", h_text, "old") || aw_app_route(app, "GET", "/stop-when-told", h_stop_when_told, app) ||
	    aw_app_route(app, "GET", "/block-loop", h_block_loop, NULL))
		_exit(5);
	int rc = aw_app_run(app, "127.0.0.1", 0, 1);
	aw_app_free(app);
	fclose(quiet);
	exit(rc == 0 ? 0 : 1);   /* exit(): LeakSanitizer checks the server too */
}

/* The successor: answers whatever the old generation left in the backlog. */
static int restart_successor(int lfd)
{
	int n = 0;
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			return n;
		struct timeval tv = { 2, 0 };
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		char buf[4096];
		size_t len = 0;
		ssize_t got;
		while (len < sizeof buf - 1 && (got = read(c, buf + len, sizeof buf - 1 - len)) > 0) {
			len += (size_t)got;
			buf[len] = 0;
			if (strstr(buf, "\r\n\r\n"))
				break;
		}
		const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nsuccessor";
		if (cli_sends(c, ok) == 0)
			n++;
		close(c);
	}
}

/* A graceful restart stops the old generation while clients keep
 * connecting. The clients the kernel handed to the old generation (on
 * io_uring: taken by its multishot accept, queued, not yet picked up by
 * the accept loop when the stop came) are the old generation's: it
 * serves them (the first-request window), it does not close them with the
 * listener; the ones still in the backlog are the successor's. Every
 * client gets its answer from one or the other; none is reset. The
 * window is made deterministic: the server's loop is held while the stop
 * is armed and the clients connect and send, so the stop and the
 * connections reach it in the same poll, the stop first. */
AW_TEST(a_graceful_restart_answers_every_client_that_connected_while_the_old_generation_listened)
{
	enum { N = 8 };
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(lfd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	CHECK_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
	CHECK_EQ(listen(lfd, 64), 0);
	CHECK_EQ(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
	int port = ntohs(a.sin_port);
	int arm[2], block[2], blocked[2];
	CHECK_EQ(pipe2(arm, O_CLOEXEC), 0);
	CHECK_EQ(pipe2(block, O_CLOEXEC), 0);
	CHECK_EQ(pipe2(blocked, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		restart_old_generation(lfd, arm[0], block[0], blocked[1]);
	}
	close(arm[0]);
	close(block[0]);
	close(blocked[1]);
	/* The stop, armed: a handler waits for the arm pipe. */
	int stopc = cli_connect(port);
	CHECK(stopc >= 0);
	CHECK_EQ(cli_sends(stopc, GET("/stop-when-told")), 0);
	usleep(200000);
	/* Hold the server's loop. */
	int blockc = cli_connect(port);
	CHECK(blockc >= 0);
	CHECK_EQ(cli_sends(blockc, GET("/block-loop")), 0);
	struct pollfd pf = { blocked[0], POLLIN, 0 };
	CHECK_EQ(poll(&pf, 1, 5000), 1);
	char c;
	CHECK_EQ(read(blocked[0], &c, 1), 1);
	/* Meanwhile: the stop, then the clients, each with its request. */
	CHECK_EQ(write(arm[1], "s", 1), 1);
	int fds[N];
	for (int i = 0; i < N; i++) {
		fds[i] = cli_connect(port);
		CHECK(fds[i] >= 0);
		CHECK_EQ(cli_sends(fds[i], GET("/")), 0);
	}
	CHECK_EQ(write(block[1], "g", 1), 1);   /* let the loop go */
	resp r;
	CHECK_EQ(cli_read(blockc, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	CHECK_EQ(cli_read(stopc, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	/* The old generation drains and exits; the successor takes over. */
	int status = -1;
	long long deadline = now_ms() + 10000;
	while (waitpid(pid, &status, WNOHANG) != pid && now_ms() < deadline)
		usleep(2000);
	if (now_ms() >= deadline) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_EQ(fcntl(lfd, F_SETFL, O_NONBLOCK), 0);
	int by_successor = restart_successor(lfd);
	int by_old = 0, answered = 0;
	for (int i = 0; i < N; i++) {
		if (cli_read(fds[i], &r, false) == 0 && r.status == 200) {
			answered++;
			by_old += strcmp(r.body, "old") == 0;
			resp_free(&r);
		}
		close(fds[i]);
	}
	fprintf(stderr, "answered %d of %d: %d by the old generation, %d by the successor\n", answered, N, by_old,
		by_successor);
	CHECK_EQ(answered, N);
	CHECK_GE(by_old, 1);   /* the stop came after the old generation took one */
	close(stopc);
	close(blockc);
	close(arm[1]);
	close(block[1]);
	close(blocked[0]);
	close(lfd);
}
