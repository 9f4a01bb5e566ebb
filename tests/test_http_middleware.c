/* SPDX-License-Identifier: MIT */
/* Middleware as managers (awith/middleware.h), through real sockets: order
 * and LIFO exits that see the handler's error, enters that answer, exits
 * that replace the response or map the error, route groups, the app's
 * error table and its defaults, the fail-safe rule, and the shipped
 * middleware: request id, CORS, Server-Timing, gzip/deflate, the
 * per-address rate limit. Events inside the server go to its stderr (the
 * log file), checked after it stops. */
#include "harness.h"
#include "http_util.h"

#include <awith/middleware.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#define EV(...) fprintf(stderr, "EV " __VA_ARGS__)

/* ---- handlers ------------------------------------------------------------------- */

static int h_text(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	EV("handler %s\n", (const char *)ud);
	return aw_http_text(res, 200, ud);
}

/* /err?code=N: fails with -N, raised with a message. */
static int h_err(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)res, (void)ud;
	const char *v = NULL;
	if (aw_http_query(req, "code", &v) < 0 || !v)
		return -EINVAL;
	int code = -atoi(v);
	return aw_raise(code, "failure %d at /secret/place", code);
}

/* Sends 200, then fails: the error must win. */
static int h_sent_then_failed(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	if (aw_http_text(res, 200, "all good"))
		return -ENOMEM;
	return aw_raise(-EIO, "failed after answering");
}

/* A body of n bytes of text: /big?n=5000&type=text/html */
static int h_big(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *nv = NULL, *type = NULL, *etag = NULL;
	if (aw_http_query(req, "n", &nv) < 0 || aw_http_query(req, "type", &type) < 0 ||
	    aw_http_query(req, "etag", &etag) < 0)
		return -EBADMSG;
	size_t n = nv ? (size_t)atol(nv) : 5000;
	char *b = malloc(n + 1);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		b[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	if (etag && aw_http_set_header(res, "ETag", etag)) {
		free(b);
		return -EINVAL;
	}
	int rc = aw_http_send(res, 200, type ? type : "text/plain", b, n);
	free(b);
	return rc;
}

/* A streamed response: its head leaves before the exits. */
static int chunk_gen(aw_gen *g, void *arg)
{
	(void)arg;
	static aw_chunk ch = { "streamed", 8, 0 };
	return aw_gen_yield(g, &ch);
}

static int h_stream(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_gen_iter gi;
	return aw_http_stream(res, 200, "text/plain", aw_gen_iter_init(&gi, "chunks", chunk_gen, NULL));
}

/* ---- middleware for the tests ------------------------------------------------------ */

/* Class-style: logs enter and exit with the error it sees. */
static int log_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)req, (void)res;
	*(int *)state = 7;
	EV("%s enter\n", (const char *)self);
	return 0;
}

static int log_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)req;
	EV("%s exit err=%d status=%d state=%d\n", (const char *)self, err, aw_http_response_status(res), *(int *)state);
	return err;
}

static aw_http_mw *logger(const char *name)
{
	aw_http_mw_ops ops = { .name = name, .state_size = sizeof(int), .enter = log_enter, .exit = log_exit };
	aw_http_mw *mw = NULL;
	EXPECT_EQ(aw_http_mw_new(&mw, &ops, (void *)name), 0);
	return mw;
}

/* Generator-style: setup, yield, teardown seeing the error. */
static int gen_mw(aw_gen *g, void *arg)
{
	aw_http_request *req = aw_http_mw_request(g);
	EV("%s enter %.*s\n", (const char *)arg, (int)aw_http_path(req).len, aw_http_path(req).p);
	int err = aw_gen_yield(g, NULL);
	EV("%s exit err=%d\n", (const char *)arg, err);
	return err;
}

/* Auth: no "Authorization: Bearer ok" answers 401 from the enter. */
static int auth_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)self, (void)state;
	aw_str a = aw_http_header(req, "Authorization");
	if (a.len == 9 && memcmp(a.p, "Bearer ok", 9) == 0)
		return 0;
	EV("auth refuses\n");
	if (aw_http_set_header(res, "WWW-Authenticate", "Bearer"))
		return -ENOMEM;
	return aw_http_text(res, 401, "who are you?");
}

static int auth_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)self, (void)req, (void)state;
	EV("auth exit status=%d\n", aw_http_response_status(res));
	return err;
}

/* Maps -ENOENT to a 404 (a new code, raised: the response is made again)
 * and replaces the response of -EACCES with its own, suppressing it. */
static int mapper_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)self, (void)req, (void)state;
	if (err == -ENOENT)
		return aw_raise(-AW_EHTTP_NOT_FOUND, "no such thing here");
	if (err == -EACCES) {
		if (aw_http_response_clear(res) || aw_http_text(res, 418, "replaced by the middleware"))
			return err;
		return 0;
	}
	return err;
}

/* An enter that fails: the request fails with its error; its exit does
 * not run (a manager whose enter failed is not exited). */
static int locked_enter(void *self, aw_http_request *req, aw_http_response *res, void *state)
{
	(void)self, (void)req, (void)res, (void)state;
	EV("L enter fails\n");
	return aw_raise(-AW_EHTTP_FORBIDDEN, "locked for maintenance");
}

static int locked_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)self, (void)req, (void)res, (void)state;
	EV("L exit (must not run)\n");
	return err;
}

/* A generator-style middleware that answers the request's -EIO itself
 * (its teardown sees the error at the yield), and one whose exit fails. */
static int fallback_gen(aw_gen *g, void *arg)
{
	(void)arg;
	int err = aw_gen_yield(g, NULL);
	if (err != -EIO)
		return err;
	aw_http_response *res = aw_http_mw_response(g);
	if (aw_http_response_clear(res) || aw_http_text(res, 200, "fallback answer"))
		return err;
	aw_error_clear();
	return 0;   /* handled: suppressed */
}

static int failing_exit(void *self, aw_http_request *req, aw_http_response *res, void *state, int err)
{
	(void)self, (void)req, (void)res, (void)state;
	if (err)
		return err;
	return aw_raise(-ENOTRECOVERABLE, "the audit log is gone");
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "mwtest") < 0)
		return NULL;
	aw_app_access_log(app, stderr);
	aw_http_mw *a = NULL, *b, *auth, *map, *g1, *g2;
	EXPECT_EQ(aw_http_mw_gen(&a, "A", gen_mw, "A"), 0);
	EXPECT_EQ(aw_app_use(app, a), 0);
	EXPECT_EQ(aw_app_use(app, b = logger("B")), 0);
	aw_http_mw_ops mops = { .name = "mapper", .exit = mapper_exit };
	EXPECT_EQ(aw_http_mw_new(&map, &mops, NULL), 0);
	EXPECT_EQ(aw_app_use(app, map), 0);
	EXPECT_EQ(aw_app_error_status(app, -(0x4400 + 0xff), -0x4400, 503, "database unavailable"), 0);
	EXPECT_EQ(aw_app_error_status(app, -EPERM, -EPERM, 403, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "root"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/err", h_err, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/sent-then-failed", h_sent_then_failed, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/only-post", h_text, "post"), 0);
	/* groups: /api (auth, G1) and /api/v2 (G2) */
	aw_http_group *api, *v2;
	EXPECT_EQ(aw_app_group(app, "/api/", &api), 0);
	aw_http_mw_ops aops = { .name = "auth", .enter = auth_enter, .exit = auth_exit };
	EXPECT_EQ(aw_http_mw_new(&auth, &aops, NULL), 0);
	EXPECT_EQ(aw_http_group_use(api, auth), 0);
	EXPECT_EQ(aw_http_group_use(api, g1 = logger("G1")), 0);
	EXPECT_EQ(aw_http_group_route(api, "GET", "/", h_text, "api root"), 0);
	EXPECT_EQ(aw_http_group_route(api, "GET", "/items/{id}", h_text, "item"), 0);
	EXPECT_EQ(aw_http_group_group(api, "/v2", &v2), 0);
	EXPECT_EQ(aw_http_group_use(v2, g2 = logger("G2")), 0);
	EXPECT_EQ(aw_http_group_route(v2, "GET", "/things", h_text, "v2 things"), 0);
	aw_http_group *locked;
	aw_http_mw *lmw;
	aw_http_mw_ops lops = { .name = "locked", .enter = locked_enter, .exit = locked_exit };
	EXPECT_EQ(aw_app_group(app, "/locked", &locked), 0);
	EXPECT_EQ(aw_http_mw_new(&lmw, &lops, NULL), 0);
	EXPECT_EQ(aw_http_group_use(locked, lmw), 0);
	EXPECT_EQ(aw_http_group_route(locked, "GET", "/", h_text, "locked"), 0);
	aw_http_group *fb, *fx;
	aw_http_mw *fbm, *fxm;
	EXPECT_EQ(aw_app_group(app, "/fallback", &fb), 0);
	EXPECT_EQ(aw_http_mw_gen(&fbm, "fallback", fallback_gen, NULL), 0);
	EXPECT_EQ(aw_http_group_use(fb, fbm), 0);
	EXPECT_EQ(aw_http_group_route(fb, "GET", "/err", h_err, NULL), 0);
	EXPECT_EQ(aw_app_group(app, "/audited", &fx), 0);
	aw_http_mw_ops xops = { .name = "audit", .exit = failing_exit };
	EXPECT_EQ(aw_http_mw_new(&fxm, &xops, NULL), 0);
	EXPECT_EQ(aw_http_group_use(fx, fxm), 0);
	EXPECT_EQ(aw_http_group_route(fx, "GET", "/", h_text, "audited"), 0);
	/* bad input */
	aw_http_group *bad = NULL;
	EXPECT_EQ(aw_app_group(app, "nope", &bad), -EINVAL);
	EXPECT_EQ(aw_app_use(app, NULL), -EINVAL);
	EXPECT_EQ(aw_app_error_status(app, 5, 5, 500, NULL), -EINVAL);
	EXPECT_EQ(aw_app_error_status(app, -5, -5, 200, NULL), -EINVAL);
	aw_error_clear();
	return app;
}

#define START(s, make)                                                             \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make), 0)

static int get(int port, const char *raw, resp *r)
{
	return http_once(port, raw, strlen(raw), r, NULL);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: a\r\n\r\n"

/* The EV lines of the server's log, joined with '|'. */
static char *events(srv *s)
{
	char *log = srv_log(s);
	size_t n = strlen(log);
	char *out = calloc(1, n + 1);
	size_t o = 0;
	for (char *p = log; (p = strstr(p, "EV "));) {
		p += 3;
		char *e = strchr(p, '\n');
		if (!e)
			break;
		if (o)
			out[o++] = '|';
		memcpy(out + o, p, (size_t)(e - p));
		o += (size_t)(e - p);
		p = e;
	}
	free(log);
	return out;
}

static int count(const char *s, const char *part)
{
	int n = 0;
	for (const char *q = s; q && (q = strstr(q, part)); q++)
		n++;
	return n;
}

/* ---- order, answers, errors ------------------------------------------------------------ */

AW_TEST(middleware_enter_in_order_and_exit_lifo_seeing_the_handlers_error)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/"), &r), 200);
	CHECK_STR(r.body, "root");
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/err?code=5"), &r), 500);   /* -EIO */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "A enter /|B enter|handler root|B exit err=0 status=200 state=7|A exit err=0|"
		      "A enter /err|B enter|B exit err=-5 status=500 state=7|A exit err=-5");
	free(ev);
}

AW_TEST(the_apps_middleware_see_404_and_405)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/nowhere"), &r), 404);
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/only-post"), &r), 405);
	char v[64];
	CHECK(resp_header(&r, "Allow", v, sizeof v));
	CHECK_STR(v, "POST");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "A enter /nowhere|B enter|B exit err=0 status=404 state=7|A exit err=0|"
		      "A enter /only-post|B enter|B exit err=0 status=405 state=7|A exit err=0");
	free(ev);
}

AW_TEST(an_exit_maps_the_error_to_another_code_or_replaces_the_response)
{
	START(s, make_app);
	resp r;
	/* -ENOENT mapped by the exit to AW_EHTTP_NOT_FOUND with its message */
	CHECK_EQ(get(s.port, GET("/err?code=2"), &r), 404);
	CHECK_STR(r.body, "{\"detail\":\"no such thing here\"}");
	resp_free(&r);
	/* -EACCES: the exit sends its own answer and suppresses the error */
	CHECK_EQ(get(s.port, GET("/err?code=13"), &r), 418);
	CHECK_STR(r.body, "replaced by the middleware");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	/* the outer exit saw the new code; nothing logged for 4xx */
	char *ev = events(&s);
	CHECK(strstr(ev, "B exit err=-16900 status=404 state=7|A exit err=-16900") != NULL);   /* -AW_EHTTP_NOT_FOUND */
	CHECK(strstr(ev, "A enter /err|B enter|B exit err=0 status=418 state=7|A exit err=0") != NULL);
	CHECK(!strstr(log, "failed ("));
	free(ev);
	free(log);
}

AW_TEST(error_table_maps_codes_and_ranges_and_the_defaults_answer_the_rest)
{
	START(s, make_app);
	static const struct {
		int code, status;
		const char *body;   /* prefix */
	} cases[] = {
		{ ETIMEDOUT, 504, "{\"detail\":\"a service the request needs timed out\",\"request_id\":\"" },
		{ ECONNREFUSED, 503, "{\"detail\":\"a service the request needs is unavailable\",\"request_id\":\"" },
		{ AW_ECLOSED, 503, "{\"detail\":\"a service the request needs is unavailable\"" },
		{ 0x4404, 503, "{\"detail\":\"database unavailable\",\"request_id\":\"" },   /* the user's pg range */
		{ 0x4401, 503, "{\"detail\":\"database unavailable\"" },
		{ EBADMSG, 400, "{\"detail\":\"Bad Request\"}" },
		{ AW_EHTTP_VALIDATION, 422, "{\"detail\":\"failure -16902 at /secret/place\"}" },
		{ AW_EHTTP_CONFLICT, 409, "{\"detail\":\"failure -16901 at /secret/place\"}" },
		{ EPERM, 403, "{\"detail\":\"failure -1 at /secret/place\"}" },   /* the user's, own message */
		{ EIO, 500, "{\"detail\":\"Internal Server Error\",\"request_id\":\"" },
		{ ENOMEM, 500, "{\"detail\":\"Internal Server Error\",\"request_id\":\"" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char req[128];
		snprintf(req, sizeof req, "GET /err?code=%d HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].code);
		resp r;
		CHECK_EQ(get(s.port, req, &r), cases[i].status);
		if (strncmp(r.body, cases[i].body, strlen(cases[i].body)) != 0)
			fprintf(stderr, "case %zu: %s\n", i, r.body);
		CHECK(strncmp(r.body, cases[i].body, strlen(cases[i].body)) == 0);
		if (cases[i].status >= 500)
			CHECK(!strstr(r.body, "secret"));   /* nothing internal */
		resp_free(&r);
	}
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	/* each 5xx logged once with its message and location; 4xx not */
	CHECK_EQ(count(log, "GET /err failed (5"), 7);
	CHECK_EQ(count(log, "failure -5 at /secret/place"), 1);
	CHECK(strstr(log, "test_http_middleware.c") != NULL);
	CHECK(!strstr(log, "failed (4"));
	free(log);
}

/* The same app without middleware: the fail-safe rule holds on the plain
 * path too. */
static aw_app *make_plain(void)
{
	aw_app *app;
	if (aw_app_new(&app, "plain") < 0)
		return NULL;
	EXPECT_EQ(aw_app_route(app, "GET", "/sent-then-failed", h_sent_then_failed, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/err", h_err, NULL), 0);
	return app;
}

AW_TEST(a_handler_that_answered_200_and_then_failed_answers_the_error_never_200)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/sent-then-failed"), &r), 500);
	CHECK(strncmp(r.body, "{\"detail\":\"Internal Server Error\"", 33) == 0);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	START(p, make_plain);
	CHECK_EQ(get(p.port, GET("/sent-then-failed"), &r), 500);
	CHECK(!strstr(r.body, "all good"));
	resp_free(&r);
	/* and the connection goes on: two on one connection */
	int fd = cli_connect(p.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, GET("/sent-then-failed") GET("/err?code=110")), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 500);
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 504);
	resp_free(&r);
	close(fd);
	CHECK_EQ(srv_stop(&p), 0);
}

AW_TEST(an_enter_that_answers_skips_the_handler_and_the_inner_middleware)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/api/items/1"), &r), 401);
	CHECK_STR(r.body, "who are you?");
	char v[64];
	CHECK(resp_header(&r, "WWW-Authenticate", v, sizeof v));
	resp_free(&r);
	const char *ok = "GET /api/items/1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ok\r\n\r\n";
	CHECK_EQ(get(s.port, ok, &r), 200);
	CHECK_STR(r.body, "item");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "A enter /api/items/1|B enter|auth refuses|auth exit status=401|"
		      "B exit err=0 status=401 state=7|A exit err=0|"
		      "A enter /api/items/1|B enter|G1 enter|handler item|G1 exit err=0 status=200 state=7|"
		      "auth exit status=200|B exit err=0 status=200 state=7|A exit err=0");
	free(ev);
}

AW_TEST(an_enter_that_fails_fails_the_request_and_is_not_exited)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/locked"), &r), 403);
	CHECK_STR(r.body, "{\"detail\":\"locked for maintenance\"}");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "A enter /locked|B enter|L enter fails|B exit err=-16899 status=403 state=7|A exit err=-16899");
	free(ev);
}

AW_TEST(a_generator_middleware_answers_the_error_it_sees_and_suppresses_it)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/fallback/err?code=5"), &r), 200);
	CHECK_STR(r.body, "fallback answer");
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/fallback/err?code=22"), &r), 500);   /* not its error: passed on */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK(strstr(ev, "A enter /fallback/err|B enter|B exit err=0 status=200 state=7|A exit err=0") != NULL);
	CHECK(strstr(ev, "B exit err=-22 status=500 state=7|A exit err=-22") != NULL);
	free(ev);
}

AW_TEST(an_exit_that_fails_turns_the_answer_into_its_error_never_a_2xx)
{
	START(s, make_app);
	resp r;
	CHECK_EQ(get(s.port, GET("/audited"), &r), 500);
	CHECK(!strstr(r.body, "audited"));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK(strstr(ev, "handler audited|B exit err=-131 status=500 state=7|A exit err=-131") != NULL);
	free(ev);
	char *log = srv_log(&s);
	CHECK(strstr(log, "GET /audited failed (500)") != NULL);
	CHECK(strstr(log, "the audit log is gone") != NULL);
	free(log);
}

AW_TEST(groups_share_a_prefix_and_nest_their_middleware_inside_the_apps)
{
	START(s, make_app);
	resp r;
	const char *a = "GET /api/v2/things HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ok\r\n\r\n";
	CHECK_EQ(get(s.port, a, &r), 200);
	CHECK_STR(r.body, "v2 things");
	resp_free(&r);
	const char *b = "GET /api HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ok\r\n\r\n";
	CHECK_EQ(get(s.port, b, &r), 200);
	CHECK_STR(r.body, "api root");
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/"), &r), 200);   /* outside the group: none of its middleware */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *ev = events(&s);
	CHECK_STR(ev, "A enter /api/v2/things|B enter|G1 enter|G2 enter|handler v2 things|"
		      "G2 exit err=0 status=200 state=7|G1 exit err=0 status=200 state=7|auth exit status=200|"
		      "B exit err=0 status=200 state=7|A exit err=0|"
		      "A enter /api|B enter|G1 enter|handler api root|G1 exit err=0 status=200 state=7|"
		      "auth exit status=200|B exit err=0 status=200 state=7|A exit err=0|"
		      "A enter /|B enter|handler root|B exit err=0 status=200 state=7|A exit err=0");
	free(ev);
}

/* ---- the shipped middleware ------------------------------------------------------------ */

static aw_app *make_shipped(void)
{
	aw_app *app;
	if (aw_app_new(&app, "shipped") < 0)
		return NULL;
	aw_app_access_log(app, stderr);
	aw_http_mw *id, *cors, *timing, *gz;
	static const char *const origins[] = { "https://app.example", "http://localhost:3000", NULL };
	EXPECT_EQ(aw_http_mw_request_id(&id, NULL), 0);
	EXPECT_EQ(aw_app_use(app, id), 0);
	EXPECT_EQ(aw_http_mw_cors(&cors, &(aw_http_cors_opts){ .origins = origins, .methods = "GET, POST, DELETE",
								 .headers = "Content-Type, X-Token",
								 .expose_headers = "X-Request-ID",
								 .credentials = true, .max_age = 300 }),
		  0);
	EXPECT_EQ(aw_app_use(app, cors), 0);
	EXPECT_EQ(aw_http_mw_timing(&timing, "total"), 0);
	EXPECT_EQ(aw_app_use(app, timing), 0);
	EXPECT_EQ(aw_http_mw_gzip(&gz, &(aw_http_gzip_opts){ .min_size = 256 }), 0);
	EXPECT_EQ(aw_app_use(app, gz), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "root"), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/big", h_big, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/err", h_err, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/stream", h_stream, NULL), 0);
	/* bad settings */
	aw_http_mw *bad;
	EXPECT_EQ(aw_http_mw_timing(&bad, "a b"), -EINVAL);
	EXPECT_EQ(aw_http_mw_gzip(&bad, &(aw_http_gzip_opts){ .level = 10 }), -EINVAL);
	EXPECT_EQ(aw_http_mw_rate_limit(&bad, &(aw_http_rate_limit_opts){ .rate = 0 }), -EINVAL);
	EXPECT_EQ(aw_http_mw_request_id(&bad, &(aw_http_request_id_opts){ .header = "X Bad" }), -EINVAL);
	aw_error_clear();
	return app;
}

AW_TEST(request_id_middleware_answers_with_the_id_made_or_given)
{
	START(s, make_shipped);
	resp r;
	char v[160];
	CHECK_EQ(get(s.port, GET("/"), &r), 200);
	CHECK(resp_header(&r, "X-Request-ID", v, sizeof v));
	CHECK_EQ(strlen(v), 16u);   /* made by the server */
	resp_free(&r);
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-123\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "X-Request-ID", v, sizeof v));
	CHECK_STR(v, "abc-123");
	resp_free(&r);
	/* error responses and streamed ones carry it too; the 5xx body has the same id */
	CHECK_EQ(get(s.port, GET("/err?code=5"), &r), 500);
	CHECK(resp_header(&r, "X-Request-ID", v, sizeof v));
	CHECK(strstr(r.body, v) != NULL);
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/stream"), &r), 200);
	CHECK(resp_header(&r, "X-Request-ID", v, sizeof v));
	CHECK_STR(r.body, "streamed");
	CHECK(!resp_header(&r, "Server-Timing", v, sizeof v));   /* its head left before the exit */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "abc-123") != NULL);   /* the access log's request_id */
	free(log);
}

static aw_app *make_custom_id(void)
{
	aw_app *app;
	if (aw_app_new(&app, "customid") < 0)
		return NULL;
	aw_http_mw *id, *fresh;
	EXPECT_EQ(aw_http_mw_request_id(&id, &(aw_http_request_id_opts){ .header = "X-Correlation-ID" }), 0);
	EXPECT_EQ(aw_app_use(app, id), 0);
	aw_http_group *g;
	EXPECT_EQ(aw_app_group(app, "/edge", &g), 0);
	EXPECT_EQ(aw_http_mw_request_id(&fresh, &(aw_http_request_id_opts){ .header = "X-Correlation-ID",
									    .ignore_incoming = true }),
		  0);
	EXPECT_EQ(aw_http_group_use(g, fresh), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "root"), 0);
	EXPECT_EQ(aw_http_group_route(g, "GET", "/", h_text, "edge"), 0);
	return app;
}

AW_TEST(request_id_middleware_reads_and_echoes_its_own_header_or_ignores_the_clients)
{
	START(s, make_custom_id);
	resp r;
	char v[160];
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: corr-9\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "X-Correlation-ID", v, sizeof v));
	CHECK_STR(v, "corr-9");
	CHECK(!resp_header(&r, "X-Request-ID", v, sizeof v));
	resp_free(&r);
	/* an X-Request-ID is not our header: a made id instead */
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: other\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "X-Correlation-ID", v, sizeof v));
	CHECK_EQ(strlen(v), 16u);
	resp_free(&r);
	CHECK_EQ(get(s.port, "GET /edge HTTP/1.1\r\nHost: a\r\nX-Correlation-ID: chosen-by-client\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "X-Correlation-ID", v, sizeof v));
	CHECK_EQ(strlen(v), 16u);   /* ignored: a fresh one */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(cors_answers_preflights_and_marks_responses_to_allowed_origins)
{
	START(s, make_shipped);
	resp r;
	char v[256];
	/* an allowed preflight */
	CHECK_EQ(get(s.port, "OPTIONS /big HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
			     "Access-Control-Request-Method: DELETE\r\n"
			     "Access-Control-Request-Headers: content-type, x-token\r\n\r\n", &r), 204);
	CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	CHECK_STR(v, "https://app.example");
	CHECK(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof v));
	CHECK_STR(v, "GET, POST, DELETE");
	CHECK(resp_header(&r, "Access-Control-Allow-Headers", v, sizeof v));
	CHECK_STR(v, "content-type, x-token");
	CHECK(resp_header(&r, "Access-Control-Max-Age", v, sizeof v));
	CHECK_STR(v, "300");
	CHECK(resp_header(&r, "Access-Control-Allow-Credentials", v, sizeof v));
	CHECK_STR(v, "true");
	CHECK(resp_header(&r, "Vary", v, sizeof v));
	CHECK_STR(v, "Origin");
	resp_free(&r);
	/* refused: origin, method, header */
	CHECK_EQ(get(s.port, "OPTIONS /big HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\n"
			     "Access-Control-Request-Method: GET\r\n\r\n", &r), 400);
	CHECK_STR(r.body, "{\"detail\":\"CORS preflight refused: origin not allowed\"}");
	CHECK(!resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(get(s.port, "OPTIONS /big HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
			     "Access-Control-Request-Method: PUT\r\n\r\n", &r), 400);
	CHECK_STR(r.body, "{\"detail\":\"CORS preflight refused: method not allowed\"}");
	resp_free(&r);
	CHECK_EQ(get(s.port, "OPTIONS /big HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
			     "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-secret\r\n\r\n", &r), 400);
	CHECK_STR(r.body, "{\"detail\":\"CORS preflight refused: header not allowed\"}");
	resp_free(&r);
	/* a simple request from an allowed origin, and its error response */
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nOrigin: http://localhost:3000\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	CHECK_STR(v, "http://localhost:3000");
	CHECK(resp_header(&r, "Access-Control-Expose-Headers", v, sizeof v));
	CHECK_STR(v, "X-Request-ID");
	resp_free(&r);
	CHECK_EQ(get(s.port, "GET /err?code=5 HTTP/1.1\r\nHost: a\r\nOrigin: http://localhost:3000\r\n\r\n", &r), 500);
	CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	resp_free(&r);
	/* other origins and no origin: no CORS header */
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\n\r\n", &r), 200);
	CHECK(!resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	CHECK(resp_header(&r, "Vary", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/"), &r), 200);
	CHECK(!resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

static aw_app *make_open_cors(void)
{
	aw_app *app;
	if (aw_app_new(&app, "opencors") < 0)
		return NULL;
	static const char *const any[] = { "*", NULL };
	aw_http_mw *cors;
	EXPECT_EQ(aw_http_mw_cors(&cors, &(aw_http_cors_opts){ .origins = any, .methods = "*", .headers = "*",
								 .max_age = -1 }),
		  0);
	EXPECT_EQ(aw_app_use(app, cors), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "root"), 0);
	return app;
}

AW_TEST(cors_with_any_origin_answers_star_and_allows_what_is_asked)
{
	START(s, make_open_cors);
	resp r;
	char v[256];
	CHECK_EQ(get(s.port, "GET / HTTP/1.1\r\nHost: a\r\nOrigin: https://anyone.example\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
	CHECK_STR(v, "*");
	CHECK(!resp_header(&r, "Vary", v, sizeof v));
	CHECK(!resp_header(&r, "Access-Control-Allow-Credentials", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(get(s.port, "OPTIONS / HTTP/1.1\r\nHost: a\r\nOrigin: https://anyone.example\r\n"
			     "Access-Control-Request-Method: PATCH\r\nAccess-Control-Request-Headers: x-anything\r\n\r\n", &r), 204);
	CHECK(resp_header(&r, "Access-Control-Allow-Methods", v, sizeof v));
	CHECK_STR(v, "PATCH");
	CHECK(resp_header(&r, "Access-Control-Allow-Headers", v, sizeof v));
	CHECK_STR(v, "x-anything");
	CHECK(!resp_header(&r, "Access-Control-Max-Age", v, sizeof v));   /* max_age < 0: none */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(timing_puts_server_timing_on_held_responses)
{
	START(s, make_shipped);
	resp r;
	char v[128];
	CHECK_EQ(get(s.port, GET("/"), &r), 200);
	CHECK(resp_header(&r, "Server-Timing", v, sizeof v));
	CHECK(strncmp(v, "total;dur=", 10) == 0);
	char *end;
	double ms = strtod(v + 10, &end);
	CHECK(*end == 0 && ms >= 0 && ms < 1000);
	resp_free(&r);
	CHECK_EQ(get(s.port, GET("/nowhere"), &r), 404);   /* answers of the router too */
	CHECK(resp_header(&r, "Server-Timing", v, sizeof v));
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

/* Inflate a gzip (wbits 31) or zlib (15) body; its length, or -1. */
static long inflate_body(const char *in, size_t n, char *out, size_t cap, int wbits)
{
	z_stream z = { 0 };
	if (inflateInit2(&z, wbits) != Z_OK)
		return -1;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)cap;
	int rc = inflate(&z, Z_FINISH);
	long len = rc == Z_STREAM_END && z.avail_in == 0 ? (long)z.total_out : -1;
	inflateEnd(&z);
	return len;
}

static int get_enc(int port, const char *path, const char *ae, resp *r)
{
	char req[512];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\n%s%s%s\r\n", path, ae ? "Accept-Encoding: " : "",
		 ae ? ae : "", ae ? "\r\n" : "");
	return get(port, req, r);
}

AW_TEST(gzip_follows_accept_encoding_q_values_and_skips_small_or_packed_bodies)
{
	START(s, make_shipped);
	static char plain[20000], out[20000];
	for (size_t i = 0; i < 5000; i++)
		plain[i] = "the quick brown fox jumps over the lazy dog\n"[i % 44];
	resp r;
	char v[128];
	static const struct {
		const char *ae, *coding;
	} cases[] = {
		{ "gzip", "gzip" },
		{ "gzip, deflate, br", "gzip" },
		{ "deflate", "deflate" },
		{ "gzip;q=0.5, deflate;q=0.8", "deflate" },
		{ "deflate;q=0.5, gzip", "gzip" },
		{ "x-gzip", "gzip" },
		{ "*", "gzip" },
		{ "*;q=0.1, gzip;q=0", "deflate" },
		{ "GZIP;Q=1.0", "gzip" },
		{ "gzip;q=0, deflate;q=0", NULL },
		{ "identity", NULL },
		{ "br", NULL },
		{ NULL, NULL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		CHECK_EQ(get_enc(s.port, "/big?n=5000", cases[i].ae, &r), 200);
		CHECK(resp_header(&r, "Vary", v, sizeof v));
		CHECK_STR(v, "Accept-Encoding");
		bool has = resp_header(&r, "Content-Encoding", v, sizeof v);
		if (!cases[i].coding) {
			CHECK(!has);
			CHECK_EQ(r.body_len, 5000u);
		} else {
			CHECK(has);
			CHECK_STR(v, cases[i].coding);
			CHECK_LT(r.body_len, 1000u);
			CHECK(resp_header(&r, "Content-Length", v, sizeof v));
			CHECK_EQ((size_t)atol(v), r.body_len);
			long n = inflate_body(r.body, r.body_len, out, sizeof out,
					      strcmp(cases[i].coding, "gzip") == 0 ? 31 : 15);
			CHECK_EQ(n, 5000);
			CHECK(memcmp(out, plain, 5000) == 0);
		}
		resp_free(&r);
	}
	/* small bodies, packed types: untouched (no Vary for packed ones) */
	CHECK_EQ(get_enc(s.port, "/big?n=100", "gzip", &r), 200);
	CHECK(!resp_header(&r, "Content-Encoding", v, sizeof v));
	CHECK_EQ(r.body_len, 100u);
	resp_free(&r);
	CHECK_EQ(get_enc(s.port, "/big?n=5000&type=image/png", "gzip", &r), 200);
	CHECK(!resp_header(&r, "Content-Encoding", v, sizeof v));
	CHECK(!resp_header(&r, "Vary", v, sizeof v));
	CHECK_EQ(r.body_len, 5000u);
	resp_free(&r);
	CHECK_EQ(get_enc(s.port, "/big?n=5000&type=image/svg%2Bxml", "gzip", &r), 200);
	CHECK(resp_header(&r, "Content-Encoding", v, sizeof v));
	resp_free(&r);
	/* a strong ETag becomes weak on the compressed variant */
	CHECK_EQ(get_enc(s.port, "/big?n=5000&etag=%22v1%22", "gzip", &r), 200);
	CHECK(resp_header(&r, "ETag", v, sizeof v));
	CHECK_STR(v, "W/\"v1\"");
	resp_free(&r);
	/* HEAD says what GET would */
	CHECK_EQ(get(s.port, "HEAD /big?n=5000 HTTP/1.1\r\nHost: a\r\nAccept-Encoding: gzip\r\n\r\n", &r), 200);
	CHECK(resp_header(&r, "Content-Encoding", v, sizeof v));
	CHECK(resp_header(&r, "Content-Length", v, sizeof v));
	CHECK_LT(atol(v), 1000);
	resp_free(&r);
	/* a large body: the whole MiB-sized answer round-trips, with curl too */
	CHECK_EQ(get_enc(s.port, "/big?n=1000000", "gzip", &r), 200);
	CHECK(resp_header(&r, "Content-Encoding", v, sizeof v));
	char *big = malloc(1000001);
	CHECK_EQ(inflate_body(r.body, r.body_len, big, 1000001, 31), 1000000);
	free(big);
	resp_free(&r);
	char url[96], curl_out[256];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/big?n=200000", s.port);
	CHECK_EQ(run_curl(curl_out, sizeof curl_out, "-s", "--compressed", "-o", "/dev/null", "-w",
			  "%{http_code} %{size_download} %{size_header}", url, NULL), 0);
	CHECK(strncmp(curl_out, "200 ", 4) == 0);
	CHECK_LT(atol(curl_out + 4), 20000);   /* downloaded compressed, decoded by curl without complaint */
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- the rate limit ------------------------------------------------------------------- */

static aw_app *make_limited(void)
{
	aw_app *app;
	if (aw_app_new(&app, "limited") < 0)
		return NULL;
	aw_http_mw *rl;
	EXPECT_EQ(aw_http_mw_rate_limit(&rl, &(aw_http_rate_limit_opts){ .rate = 0.5, .burst = 3, .max_clients = 16 }),
		  0);
	EXPECT_EQ(aw_app_use(app, rl), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_text, "root"), 0);
	return app;
}

/* One request from the local address 127.0.0.x (Linux routes all of
 * 127/8 to the loopback). The status, Retry-After in *retry. */
static int get_from(int port, int x, long *retry)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in me = { .sin_family = AF_INET }, srv_addr = { .sin_family = AF_INET };
	me.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)x);
	srv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv_addr.sin_port = htons((uint16_t)port);
	int status = -1;
	resp r;
	memset(&r, 0, sizeof r);
	if (bind(fd, (struct sockaddr *)&me, sizeof me) == 0 &&
	    connect(fd, (struct sockaddr *)&srv_addr, sizeof srv_addr) == 0 &&
	    cli_sends(fd, GET("/")) == 0 && cli_read(fd, &r, false) == 0) {
		status = r.status;
		char v[32];
		*retry = resp_header(&r, "Retry-After", v, sizeof v) ? atol(v) : -1;
		if (status == 429 && strcmp(r.body, "{\"detail\":\"too many requests\"}"))
			status = -2;
		resp_free(&r);
	}
	close(fd);
	return status;
}

AW_TEST(rate_limit_answers_429_with_retry_after_per_client_address)
{
	START(s, make_limited);
	long retry = 0;
	for (int i = 0; i < 3; i++)
		CHECK_EQ(get_from(s.port, 2, &retry), 200);   /* the burst */
	CHECK_EQ(get_from(s.port, 2, &retry), 429);
	CHECK_EQ(retry, 2);   /* one token at 0.5 a second */
	CHECK_EQ(get_from(s.port, 3, &retry), 200);   /* another address has its own bucket */
	usleep(2100000);
	CHECK_EQ(get_from(s.port, 2, &retry), 200);   /* refilled */
	CHECK_EQ(get_from(s.port, 2, &retry), 429);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(rate_limit_memory_is_bounded_a_flood_of_addresses_makes_it_forget_not_grow)
{
	START(s, make_limited);
	long retry = 0;
	for (int i = 0; i < 3; i++)
		CHECK_EQ(get_from(s.port, 2, &retry), 200);
	CHECK_EQ(get_from(s.port, 2, &retry), 429);
	/* 200 other addresses, 16 slots: each is served (its own full bucket) */
	for (int x = 10; x < 210; x++)
		CHECK_EQ(get_from(s.port, x, &retry), 200);
	/* 127.0.0.2 was pushed out by them: it starts again with a full bucket */
	CHECK_EQ(get_from(s.port, 2, &retry), 200);
	CHECK_EQ(srv_stop(&s), 0);
}
