/* The HTTP client session (src/client) against a local server: the
 * project's own http app in a forked child (tests/http_util.c), or a raw
 * socket server inside the test's loop. Only 127.0.0.1. */
#include <awith/client.h>
#include <awith/io.h>

#include "harness.h"
#include "http_util.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the server app ------------------------------------------------------------------ */

static int h_hello(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_http_set_header(res, "X-Server", "awith-test");
	return aw_http_send(res, 200, "application/json", "{\"message\":\"hi\",\"n\":42}", 23);
}

static int h_echo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	void *v;
	int rc = aw_http_json_body(req, &v);
	if (rc)
		return rc;
	json_t *out = json_pack("{s:O, s:s}", "got", (json_t *)v, "method", "POST");
	rc = aw_http_json(res, 201, out);
	json_decref(out);
	return rc;
}

static int h_raw(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	char out[128];
	aw_str m = aw_http_method(req);
	aw_str h = aw_http_header(req, "X-Test");
	snprintf(out, sizeof out, "%.*s %zu %.*s", (int)m.len, m.p, len, (int)h.len, h.p ? h.p : "");
	return aw_http_text(res, 200, out);
}

static int h_missing(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	return aw_http_text(res, 404, "no such thing here");
}

static int h_big(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	size_t n = 200000;
	char *b = malloc(n);
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		b[i] = (char)('a' + i % 26);
	int rc = aw_http_send(res, 200, "text/plain", b, n);
	free(b);
	return rc;
}

static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_sleep(AW_SEC(3));
	if (rc)
		return rc;
	return aw_http_text(res, 200, "late");
}

static int h_redirect(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_http_set_header(res, "Location", "/hello");
	return aw_http_text(res, 302, "moved");
}

static int h_loop(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_http_set_header(res, "Location", "/loop");
	return aw_http_text(res, 302, "again");
}

static aw_app *make_app(void)
{
	aw_app *app = aw_app_new("client-test");
	aw_app_route(app, "GET", "/hello", h_hello, NULL);
	aw_app_route(app, "POST", "/echo", h_echo, NULL);
	aw_app_route(app, "*", "/raw", h_raw, NULL);
	aw_app_route(app, "GET", "/missing", h_missing, NULL);
	aw_app_route(app, "GET", "/big", h_big, NULL);
	aw_app_route(app, "GET", "/slow", h_slow, NULL);
	aw_app_route(app, "GET", "/redirect", h_redirect, NULL);
	aw_app_route(app, "GET", "/loop", h_loop, NULL);
	return app;
}

/* ---- client side ------------------------------------------------------------------- */

typedef struct ctx {
	int port;
	char base[64];
	int rc, rc2, rc3, status, status2;
	char text[512], text2[512], hdr[64], msg[512];
	long long n;
	size_t len;
	int ok_count;
} ctx;

static void save_msg(ctx *c)
{
	const aw_error *e = aw_error_current();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
}

static int get_json_main(void *arg)
{
	ctx *c = arg;
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base })) {
		aw_client_response r;
		AW_WITH(aw_client_get(&r, &s, "/hello")) {
			c->status = aw_client_response_status(&r);
			const char *h = aw_client_response_header(&r, "x-server");
			snprintf(c->hdr, sizeof c->hdr, "%s", h ? h : "(none)");
			json_t *j;
			c->rc = aw_client_response_json(&r, &j);
			if (c->rc == 0) {
				c->n = json_integer_value(json_object_get(j, "n"));
				snprintf(c->text, sizeof c->text, "%s", json_string_value(json_object_get(j, "message")));
				json_decref(j);
			}
		}
		c->rc2 = aw_error_pending();
		/* The same session again: the connection is reused. */
		json_t *body = json_pack("{s:i, s:[s,s]}", "x", 7, "list", "a", "b");
		AW_WITH(aw_client_post_json(&r, &s, "/echo", body)) {
			c->status2 = aw_client_response_status(&r);
			snprintf(c->text2, sizeof c->text2, "%s", aw_client_response_text(&r));
		}
		json_decref(body);
		c->rc3 = aw_error_pending();
	}
	return 0;
}

/* Start the test app in a server process, run main_fn in a loop against it
 * (c->port set, c->base = "http://127.0.0.1:<port>" + suffix), stop the
 * server. Returns 0, or -1 after recording why (the server did not start or
 * stop cleanly, or aw_run failed). */
static int run_against_app(ctx *c, aw_task_fn main_fn, const char *suffix)
{
	srv sv;
	memset(c, 0, sizeof *c);
	if (srv_start(&sv, make_app) != 0) {
		aw_test_fail(__FILE__, __LINE__, "the test server did not start");
		return -1;
	}
	c->port = sv.port;
	snprintf(c->base, sizeof c->base, "http://127.0.0.1:%d%s", sv.port, suffix);
	int rc = aw_run(main_fn, c);
	if (srv_stop(&sv) != 0) {
		aw_test_fail(__FILE__, __LINE__, "the test server did not stop cleanly");
		return -1;
	}
	if (rc != 0) {
		aw_test_fail(__FILE__, __LINE__, "aw_run returned %d", rc);
		return -1;
	}
	return 0;
}

AW_TEST(client_get_json_headers_and_post_json_over_one_session)
{
	srv sv;
	CHECK_EQ(srv_start(&sv, make_app), 0);
	ctx c = { .port = sv.port };
	snprintf(c.base, sizeof c.base, "http://127.0.0.1:%d", sv.port);
	int rc = aw_run(get_json_main, &c);
	int st = srv_stop(&sv);
	if (st) {
		char *log = srv_log(&sv);
		fprintf(stderr, "%s", log ? log : "");
		free(log);
	}
	CHECK_EQ(st, 0);
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.rc2, 0);
	CHECK_EQ(c.rc3, 0);
	CHECK_EQ(c.status, 200);
	CHECK_STR(c.hdr, "awith-test");
	CHECK_STR(c.text, "hi");
	CHECK_EQ(c.n, 42);
	CHECK_EQ(c.status2, 201);
	CHECK_STR(c.text2, "{\"got\":{\"x\":7,\"list\":[\"a\",\"b\"]},\"method\":\"POST\"}");
}

static int methods_main(void *arg)
{
	ctx *c = arg;
	aw_client_session s;
	const char *defaults[] = { "X-Test: from-session", NULL };
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base, .headers = defaults })) {
		aw_client_response r;
		const char *hdrs[] = { "X-Test: from-request", NULL };
		AW_WITH(aw_client_request_init(&r, &s, &(aw_client_request){
			.method = "PUT", .url = "raw", .body = "abc\0def", .body_len = 7, .headers = hdrs })) {
			c->status = aw_client_response_status(&r);
			snprintf(c->text, sizeof c->text, "%s", aw_client_response_text(&r));
		}
		AW_WITH(aw_client_get(&r, &s, "/raw")) {
			snprintf(c->text2, sizeof c->text2, "%s", aw_client_response_text(&r));
		}
		c->rc = aw_error_pending();
	}
	return 0;
}

AW_TEST(client_methods_bytes_bodies_and_default_headers)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, methods_main, "/"), 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.status, 200);
	/* curl sends both headers; the server reports the last one */
	CHECK(strncmp(c.text, "PUT 7 ", 6) == 0);
	CHECK_STR(c.text2, "GET 0 from-session");
}

static int one_error(ctx *c, const aw_client_opts *o, const char *url, int *out)
{
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, o)) {
		aw_client_response r;
		AW_WITH(aw_client_get(&r, &s, url)) {
			c->status = aw_client_response_status(&r);
		}
		*out = aw_error_pending();
		if (*out)
			save_msg(c);
		aw_error_clear();
	}
	return 0;
}

static int refused_main(void *arg)
{
	ctx *c = arg;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", c->port);
	return one_error(c, NULL, url, &c->rc);
}

AW_TEST(client_connection_refused_is_econnrefused)
{
	ctx c = { .port = free_port() };
	CHECK_GT(c.port, 0);
	CHECK_EQ(aw_run(refused_main, &c), 0);
	CHECK_EQ(c.rc, -ECONNREFUSED);
	CHECK(strstr(c.msg, "cannot connect") != NULL);
}

static int dns_main(void *arg)
{
	ctx *c = arg;
	return one_error(c, &(aw_client_opts){ .timeout = AW_SEC(10) }, "http://no-such-host.invalid/", &c->rc);
}

AW_TEST(client_unresolvable_host_is_edns)
{
	ctx c = { 0 };
	CHECK_EQ(aw_run(dns_main, &c), 0);
	CHECK_EQ(c.rc, -AW_EDNS);
	CHECK(strstr(c.msg, "no-such-host.invalid") != NULL);
}

static int timeout_main(void *arg)
{
	ctx *c = arg;
	aw_time t0 = aw_now();
	one_error(c, &(aw_client_opts){ .base_url = c->base, .timeout = AW_MS(300) }, "/slow", &c->rc);
	c->n = (aw_now() - t0) / AW_MS(1);
	return 0;
}

AW_TEST(client_total_timeout_is_etimedout)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, timeout_main, ""), 0);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK(strstr(c.msg, "request timeout") != NULL);
	CHECK_GE(c.n, 250);
	CHECK_LT(c.n, 2500);
}

/* A listener whose backlog is full: further SYNs are dropped on loopback,
 * so connecting hangs until the connect timeout. */
static int connect_timeout_main(void *arg)
{
	ctx *c = arg;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 0) || getsockname(l, (struct sockaddr *)&a, &al)) {
		close(l);
		return -1;
	}
	int fill[4];
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&a, sizeof a);
	}
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
	aw_time t0 = aw_now();
	one_error(c, &(aw_client_opts){ .connect_timeout = AW_MS(300), .timeout = AW_SEC(5) }, url, &c->rc);
	c->n = (aw_now() - t0) / AW_MS(1);
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	close(l);
	return 0;
}

AW_TEST(client_connect_timeout_is_a_distinct_etimedout)
{
	ctx c = { 0 };
	CHECK_EQ(aw_run(connect_timeout_main, &c), 0);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK(strstr(c.msg, "connect timeout") != NULL);
	CHECK_LT(c.n, 2500);
}

static int too_long_main(void *arg)
{
	ctx *c = arg;
	one_error(c, &(aw_client_opts){ .base_url = c->base, .max_body = 1000 }, "/big", &c->rc);
	/* Under the limit it reads whole. */
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base })) {
		aw_client_response r;
		AW_WITH(aw_client_get(&r, &s, "/big")) {
			const char *b = aw_client_response_body(&r, &c->len);
			c->rc2 = b && b[0] == 'a' && b[25] == 'z' && b[c->len - 1] == (char)('a' + (c->len - 1) % 26);
		}
		c->rc3 = aw_error_pending();
	}
	return 0;
}

AW_TEST(client_body_over_the_limit_is_etoolong)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, too_long_main, ""), 0);
	CHECK_EQ(c.rc, -AW_ETOOLONG);
	CHECK(strstr(c.msg, "1000 bytes") != NULL);
	CHECK_EQ(c.rc3, 0);
	CHECK_EQ(c.len, 200000);
	CHECK_EQ(c.rc2, 1);
}

static int status_main(void *arg)
{
	ctx *c = arg;
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base })) {
		aw_client_response r;
		AW_WITH(aw_client_get(&r, &s, "/missing")) {
			c->status = aw_client_response_status(&r);
			c->rc = aw_client_response_raise_for_status(&r);
			save_msg(c);
			aw_error_clear();
		}
		AW_WITH(aw_client_get(&r, &s, "/hello")) {
			c->rc2 = aw_client_response_raise_for_status(&r);
		}
		/* Redirects: followed, up to the limit. */
		AW_WITH(aw_client_get(&r, &s, "/redirect")) {
			c->status2 = aw_client_response_status(&r);
			snprintf(c->text, sizeof c->text, "%s", aw_client_response_url(&r));
		}
		AW_WITH(aw_client_get(&r, &s, "/loop")) {
			c->ok_count++;
		}
		c->rc3 = aw_error_pending();
		aw_error_clear();
	}
	return 0;
}

AW_TEST(client_raise_for_status_and_redirects)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, status_main, ""), 0);
	CHECK_EQ(c.status, 404);
	CHECK_EQ(c.rc, -EREMOTEIO);
	CHECK(strstr(c.msg, "HTTP 404") != NULL);
	CHECK(strstr(c.msg, "no such thing here") != NULL);
	CHECK_EQ(c.rc2, 0);
	CHECK_EQ(c.status2, 200);
	CHECK(strstr(c.text, "/hello") != NULL);
	CHECK_EQ(c.ok_count, 0);
	CHECK_EQ(c.rc3, -ELOOP);
}

/* ---- streamed bodies, early exits, cancellation ------------------------------------------ */

static int stream_main(void *arg)
{
	ctx *c = arg;
	aw_client_session s;
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base, .max_body = 1000 })) {
		aw_client_response r;
		/* The size limit is for bodies read whole: a stream reads on. */
		AW_WITH(aw_client_stream_init(&r, &s, &(aw_client_request){ .url = "/big" })) {
			c->status = aw_client_response_status(&r);
			aw_client_chunks it;
			aw_client_chunk *ch;
			size_t off = 0;
			bool good = true;
			AW_FOR(ch, aw_client_response_chunks(&r, &it)) {
				for (size_t i = 0; i < ch->len; i++)
					if (ch->data[i] != (char)('a' + (off + i) % 26))
						good = false;
				off += ch->len;
				c->ok_count++;
				if (c->ok_count % 4 == 0 && aw_sleep(AW_MS(5)) < 0)
					break;   /* a slow reader: the transfer pauses */
			}
			c->len = off;
			c->rc2 = good;
		}
		c->rc = aw_error_pending();
		aw_error_clear();
		/* Leaving after the first chunk closes that transfer; the session
		 * goes on. */
		AW_WITH(aw_client_stream_init(&r, &s, &(aw_client_request){ .url = "/big" })) {
			aw_client_chunks it;
			aw_client_chunk *ch;
			AW_FOR(ch, aw_client_response_chunks(&r, &it)) {
				c->n += (long long)ch->len;
				break;
			}
		}
		/* A request cancelled by the caller's timeout. */
		AW_WITH(AW_TIMEOUT(AW_MS(200))) {
			AW_WITH(aw_client_get(&r, &s, "/slow")) {
				c->status2 = -1;
			}
		}
		c->rc3 = aw_error_pending();
		aw_error_clear();
		AW_WITH(aw_client_get(&r, &s, "/hello")) {
			c->status2 = aw_client_response_status(&r);
		}
		if (aw_error_pending())
			c->status2 = -2;
	}
	return 0;
}

AW_TEST(client_streamed_body_early_exit_and_cancelled_request)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, stream_main, ""), 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.status, 200);
	CHECK_EQ(c.len, 200000);
	CHECK_EQ(c.rc2, 1);
	CHECK_GT(c.ok_count, 1);
	CHECK_GT(c.n, 0);
	CHECK_LT(c.n, 200000);
	CHECK_EQ(c.rc3, -ETIMEDOUT);
	CHECK_EQ(c.status2, 200);
}

/* ---- a raw socket server in the test's loop: faults curl must report ------------------- */

typedef struct raw {
	int lfd, port;
	const char *reply;
} raw;

static int raw_serve(void *arg)
{
	raw *w = arg;
	int fd;
	while ((fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0) {
		if (errno != EAGAIN)
			return -errno;
		int rc = aw_fd_wait(w->lfd, AW_READABLE, AW_NEVER);
		if (rc < 0)
			return rc;
	}
	char buf[4096];
	size_t got = 0;
	while (!memmem(buf, got, "\r\n\r\n", 4) && got < sizeof buf) {
		ssize_t n = read(fd, buf + got, sizeof buf - got);
		if (n > 0) {
			got += (size_t)n;
		} else if (n < 0 && errno == EAGAIN) {
			if (aw_fd_wait(fd, AW_READABLE, aw_deadline_after(AW_SEC(5))) < 0)
				break;
		} else {
			break;
		}
	}
	ssize_t n = write(fd, w->reply, strlen(w->reply));
	(void)n;
	aw_sleep(AW_MS(20));
	aw_fd_close(fd);
	return 0;
}

static int raw_main(void *arg)
{
	ctx *c = arg;
	raw w = { .reply = c->text };
	w.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (bind(w.lfd, (struct sockaddr *)&a, sizeof a) || listen(w.lfd, 8) ||
	    getsockname(w.lfd, (struct sockaddr *)&a, &al)) {
		close(w.lfd);
		return -1;
	}
	aw_task *t;
	if (aw_spawn(&t, raw_serve, &w, "raw-server") < 0) {
		close(w.lfd);
		return -1;
	}
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(a.sin_port));
	one_error(c, &(aw_client_opts){ .timeout = AW_SEC(5) }, url, &c->rc);
	(void)aw_task_join(t);
	aw_error_clear();
	aw_fd_close(w.lfd);
	return 0;
}

AW_TEST(client_server_closing_mid_body_is_econnreset)
{
	ctx c = { 0 };
	snprintf(c.text, sizeof c.text, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it");
	CHECK_EQ(aw_run(raw_main, &c), 0);
	CHECK_EQ(c.rc, -ECONNRESET);
	CHECK(strstr(c.msg, "closed early") != NULL);
}

AW_TEST(client_invalid_chunked_encoding_is_an_error)
{
	ctx c = { 0 };
	snprintf(c.text, sizeof c.text,
		 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
	CHECK_EQ(aw_run(raw_main, &c), 0);
	CHECK_EQ(c.rc, -EPROTO);
	CHECK(strstr(c.msg, "hunk") != NULL);
}

AW_TEST(client_garbage_reply_is_eproto)
{
	ctx c = { 0 };
	snprintf(c.text, sizeof c.text, "this is not http\r\n\r\n");
	CHECK_EQ(aw_run(raw_main, &c), 0);
	CHECK_EQ(c.rc, -EPROTO);
}

/* ---- concurrency ------------------------------------------------------------------------ */

typedef struct conc {
	aw_client_session *s;
	ctx *c;
} conc;

static int one_get(void *arg)
{
	conc *k = arg;
	aw_client_response r;
	AW_WITH(aw_client_get(&r, k->s, "/hello")) {
		if (aw_client_response_status(&r) == 200 && strstr(aw_client_response_text(&r), "\"hi\""))
			k->c->ok_count++;
	}
	return aw_error_pending();
}

static int concurrent_main(void *arg)
{
	ctx *c = arg;
	aw_client_session s;
	conc k = { &s, c };
	AW_WITH(aw_client_session_init(&s, &(aw_client_opts){ .base_url = c->base, .max_host_connections = 8 })) {
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			for (int i = 0; i < 200; i++)
				if (aw_group_spawn(&g, one_get, &k, "get") < 0)
					break;
		}
		c->rc = aw_error_pending();
		aw_error_clear();
	}
	return 0;
}

AW_TEST(client_200_concurrent_requests_through_one_session)
{
	ctx c;
	CHECK_EQ(run_against_app(&c, concurrent_main, ""), 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.ok_count, 200);
}

/* ---- the example ------------------------------------------------------------------------ */

#ifdef AW_EXAMPLES_DIR
AW_TEST(example_fetch_data_prints_the_json)
{
	srv sv;
	CHECK_EQ(srv_start(&sv, make_app), 0);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", sv.port);
	proc p;
	const char *argv[] = { AW_EXAMPLES_DIR "/fetch_data", url, NULL };
	CHECK_EQ(proc_start(&p, argv), 0);
	int st = proc_wait(&p, 0);
	char out[512];
	snprintf(out, sizeof out, "%s", p.out ? p.out : "");
	char bad[64];
	snprintf(bad, sizeof bad, "http://127.0.0.1:%d/missing", sv.port);
	proc q;
	const char *argv2[] = { AW_EXAMPLES_DIR "/fetch_data", bad, NULL };
	CHECK_EQ(proc_start(&q, argv2), 0);
	int st2 = proc_wait(&q, 0);
	CHECK_EQ(srv_stop(&sv), 0);
	CHECK_EQ(st, 0);
	CHECK(strstr(out, "\"message\": \"hi\"") != NULL);
	CHECK(strstr(out, "\"n\": 42") != NULL);
	CHECK_NE(st2, 0);
	CHECK(strstr(q.err, "404") != NULL);
}
#endif
