/* SPDX-License-Identifier: MIT */
/* The HTTP/1.1 server over real sockets: responses, keep-alive,
 * pipelining, HTTP/1.0, HEAD, Connection: close, chunked bodies in and out,
 * Expect: 100-continue, streamed request bodies. */
#include "harness.h"
#include "http_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the app under test ------------------------------------------------------------ */

static int h_root(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "message");
	aw_jw_string(w, "Hello, World!");
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int h_echo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	char n[32];
	snprintf(n, sizeof n, "%zu", len);
	EXPECT_EQ(aw_http_set_header(res, "X-Body-Len", n), 0);
	return aw_http_send(res, 200, "application/octet-stream", data, len);
}

static int h_count(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char buf[1000];
	size_t total = 0;
	unsigned long sum = 0;
	for (;;) {
		ssize_t n = aw_http_body_read(req, buf, sizeof buf);
		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			sum += (unsigned char)buf[i];
		total += (size_t)n;
	}
	char out[64];
	snprintf(out, sizeof out, "%zu %lu", total, sum);
	return aw_http_text(res, 200, out);
}

static int h_ignore(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	return aw_http_text(res, 200, "ignored");
}

static int h_nothing(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)res, (void)ud;
	return 0;
}

static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *ms;
	int rc = aw_http_query(req, "ms", &ms);
	if (rc < 0)
		return rc;
	rc = aw_sleep(AW_MS(ms ? atoi(ms) : 100));
	if (rc)
		return rc;
	return aw_http_text(res, 200, ms ? ms : "slow");
}

static int h_user(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char out[256];
	snprintf(out, sizeof out, "user %s", aw_http_param(req, "id"));
	return aw_http_text(res, 200, out);
}

static int chunks_gen(aw_gen *g, void *arg)
{
	(void)arg;
	static const char *parts[] = { "one", "two", "three" };
	for (int i = 0; i < 3; i++) {
		aw_chunk ch = { parts[i], strlen(parts[i]), 0 };
		int rc = aw_gen_yield(g, &ch);
		if (rc)
			return rc;
		if (aw_sleep(AW_MS(5)))
			return aw_error_pending();
	}
	return 0;
}

static int h_stream(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_gen_iter gi;
	return aw_http_stream(res, 200, "text/plain", aw_gen_iter_init(&gi, "chunks", chunks_gen, NULL));
}

static int h_big(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	size_t n = 1 << 20;
	char *p = malloc(n);
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		p[i] = (char)('a' + i % 26);
	int rc = aw_http_send(res, 200, "text/plain", p, n);
	free(p);
	return rc;
}

static int h_header(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *name;
	int rc = aw_http_query(req, "name", &name);
	if (rc < 0)
		return rc;
	aw_str v = aw_http_header(req, name);
	char out[512];
	snprintf(out, sizeof out, "[%.*s]", (int)v.len, v.p ? v.p : "");
	return aw_http_text(res, 200, out);
}

static int h_target(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_str p = aw_http_path(req);
	const char *q;
	int rc = aw_http_query(req, "q", &q);
	if (rc < 0)
		return rc;
	char out[512];
	snprintf(out, sizeof out, "%.*s q=%s", (int)p.len, p.p, q ? q : "-");
	return aw_http_text(res, 200, out);
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "test") < 0)
		abort();   /* no memory: nothing to test */
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_root, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/echo", h_echo, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/count", h_count, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/ignore", h_ignore, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/nothing", h_nothing, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/slow", h_slow, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/users/{id}", h_user, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/stream", h_stream, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/big", h_big, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/header", h_header, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/target", h_target, NULL), 0);
	return app;
}

#define START(s)                                                                   \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make_app), 0)
#define STOP(s) CHECK_EQ(srv_stop(&s), 0)

/* ---- tests ------------------------------------------------------------------------------ */

AW_TEST(hello_json)
{
	START(s);
	resp r;
	bool closed;
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, &closed), 200);
	CHECK_STR(r.body, "{\"message\":\"Hello, World!\"}");
	char v[128];
	CHECK(resp_header(&r, "Content-Type", v, sizeof v));
	CHECK_STR(v, "application/json");
	CHECK(resp_header(&r, "Content-Length", v, sizeof v));
	CHECK_STR(v, "27");
	CHECK(resp_header(&r, "Date", v, sizeof v));
	CHECK(strstr(v, "GMT") != NULL);
	CHECK(!resp_header(&r, "Connection", v, sizeof v));
	CHECK(!closed);   /* keep-alive: the server waits for more */
	resp_free(&r);
	STOP(s);
}

AW_TEST(keepalive_reuse)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	for (int i = 0; i < 20; i++) {
		char req[128];
		snprintf(req, sizeof req, "GET /users/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
		CHECK_EQ(cli_sends(fd, req), 0);
		resp r;
		CHECK_EQ(cli_read(fd, &r, false), 0);
		CHECK_EQ(r.status, 200);
		char want[64];
		snprintf(want, sizeof want, "user %d", i);
		CHECK_STR(r.body, want);
		resp_free(&r);
	}
	close(fd);
	STOP(s);
}

AW_TEST(pipelining_in_order)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	/* The first is slow: the others must still come after it, in order. */
	const char *reqs = "GET /slow?ms=150 HTTP/1.1\r\nHost: x\r\n\r\n"
			   "GET /users/2 HTTP/1.1\r\nHost: x\r\n\r\n"
			   "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
			   "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
			   "GET /slow?ms=10 HTTP/1.1\r\nHost: x\r\n\r\n"
			   "GET /users/6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	CHECK_EQ(cli_sends(fd, reqs), 0);
	const char *want[] = { "150", "user 2", "hello", "", "10", "user 6" };
	for (int i = 0; i < 6; i++) {
		resp r;
		CHECK_EQ(cli_read(fd, &r, i == 3), 0);
		CHECK_EQ(r.status, 200);
		CHECK_STR(r.body, want[i]);
		resp_free(&r);
	}
	CHECK(cli_closed(fd, 3000));
	close(fd);
	STOP(s);
}

AW_TEST(http10)
{
	START(s);
	resp r;
	bool closed;
	const char *req = "GET / HTTP/1.0\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, &closed), 200);
	CHECK(closed);   /* 1.0 without keep-alive: closed */
	char v[64];
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	resp_free(&r);

	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(cli_sends(fd, "GET /users/1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
		CHECK_EQ(cli_read(fd, &r, false), 0);
		CHECK_EQ(r.status, 200);
		CHECK(resp_header(&r, "Connection", v, sizeof v));
		CHECK_STR(v, "keep-alive");
		CHECK_STR(r.body, "user 1");
		resp_free(&r);
	}
	/* a streamed body to a 1.0 client: no chunking, ends with the connection */
	CHECK_EQ(cli_sends(fd, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK(!r.chunked);
	CHECK(r.eof);
	CHECK_STR(r.body, "onetwothree");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(head_has_no_body)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /users/9 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, true), 0);
	CHECK_EQ(r.status, 200);
	char v[64];
	CHECK(resp_header(&r, "Content-Length", v, sizeof v));
	CHECK_STR(v, "27");
	resp_free(&r);
	/* if HEAD had carried a body, this would read it as a status line */
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "user 9");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(connection_close)
{
	START(s);
	resp r;
	bool closed;
	const char *req = "GET /users/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, &closed), 200);
	CHECK(closed);
	char v[64];
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	resp_free(&r);
	STOP(s);
}

AW_TEST(chunked_request_body)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	/* in pieces, with an extension and a trailer */
	CHECK_EQ(cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"), 0);
	usleep(20000);
	CHECK_EQ(cli_sends(fd, "lo\r\n6;ext=1\r\n, worl\r\n1\r\nd\r\n0\r\nX-Trailer: yes\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "hello, world");
	resp_free(&r);
	/* the connection goes on */
	CHECK_EQ(cli_sends(fd, "GET /users/5 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "user 5");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(chunked_response)
{
	START(s);
	resp r;
	const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 200);
	CHECK(r.chunked);
	CHECK_STR(r.body, "onetwothree");
	resp_free(&r);
	/* HEAD of a streamed response: headers only */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /users/3 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, true), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "user 3");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(expect_100_continue)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"), 0);
	char buf[64] = { 0 };
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	CHECK(n > 0);
	CHECK_STR(buf, "HTTP/1.1 100 Continue\r\n\r\n");
	CHECK_EQ(cli_sends(fd, "ping"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, "ping");
	resp_free(&r);
	close(fd);

	/* a handler that does not want the body: no 100, and the connection
	 * closes (the client has not sent the body) */
	fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK(strstr(r.head, "100 Continue") == NULL);
	char v[32];
	CHECK(resp_header(&r, "Connection", v, sizeof v));
	CHECK_STR(v, "close");
	resp_free(&r);
	CHECK(cli_closed(fd, 3000));
	close(fd);

	/* an Expect we do not know */
	const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: teapot\r\n\r\nping";
	bool closed;
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, &closed), 417);
	CHECK(closed);
	resp_free(&r);
	STOP(s);
}

AW_TEST(streamed_request_body)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	size_t n = 300 * 1000;
	char *body = malloc(n);
	unsigned long sum = 0;
	for (size_t i = 0; i < n; i++) {
		body[i] = (char)(i * 7);
		sum += (unsigned char)body[i];
	}
	char head[128];
	snprintf(head, sizeof head, "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
	CHECK_EQ(cli_sends(fd, head), 0);
	CHECK_EQ(cli_send(fd, body, n), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	char want[64];
	snprintf(want, sizeof want, "%zu %lu", n, sum);
	CHECK_STR(r.body, want);
	resp_free(&r);
	/* the same, chunked, 1000-byte chunks */
	CHECK_EQ(cli_sends(fd, "POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
	for (size_t off = 0; off < n; off += 1000) {
		char sz[16];
		snprintf(sz, sizeof sz, "%x\r\n", 1000);
		CHECK_EQ(cli_sends(fd, sz), 0);
		CHECK_EQ(cli_send(fd, body + off, 1000), 0);
		CHECK_EQ(cli_sends(fd, "\r\n"), 0);
	}
	CHECK_EQ(cli_sends(fd, "0\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, want);
	resp_free(&r);
	free(body);
	close(fd);
	STOP(s);
}

AW_TEST(unread_body_is_dropped)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	char req[3000];
	int hl = snprintf(req, sizeof req, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n");
	memset(req + hl, 'z', 2000);
	CHECK_EQ(cli_send(fd, req, (size_t)hl + 2000), 0);
	CHECK_EQ(cli_sends(fd, "GET /users/4 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "ignored");
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "user 4");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(no_response_is_204_and_errors_are_json)
{
	START(s);
	resp r;
	const char *req = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 204);
	resp_free(&r);
	req = "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 404);
	CHECK_STR(r.body, "{\"detail\":\"Not Found\"}");
	resp_free(&r);
	req = "DELETE /users/1 HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 405);
	char v[64];
	CHECK(resp_header(&r, "Allow", v, sizeof v));
	CHECK_STR(v, "GET, HEAD");
	resp_free(&r);
	STOP(s);
}

AW_TEST(large_response)
{
	START(s);
	resp r;
	const char *req = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 200);
	CHECK_EQ(r.body_len, 1 << 20);
	bool ok = true;
	for (size_t i = 0; i < r.body_len; i++)
		if (r.body[i] != (char)('a' + i % 26))
			ok = false;
	CHECK(ok);
	resp_free(&r);
	STOP(s);
}

AW_TEST(headers_and_targets)
{
	START(s);
	resp r;
	/* case-insensitive names, trailing whitespace trimmed */
	const char *req = "GET /header?name=x-thing HTTP/1.1\r\nHost: x\r\nX-THING:   a b  \t\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 200);
	CHECK_STR(r.body, "[a b]");
	resp_free(&r);
	/* absolute-form */
	req = "GET http://example.com/target?q=%41+b HTTP/1.1\r\nHost: example.com\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 200);
	CHECK_STR(r.body, "/target q=A b");
	resp_free(&r);
	/* percent-decoded path parameter */
	req = "GET /users/a%20b%2Fc HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 200);
	CHECK_STR(r.body, "user a b/c");
	resp_free(&r);
	/* a NUL byte in the path: 400 */
	req = "GET /users/a%00b HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, NULL), 400);
	resp_free(&r);
	STOP(s);
}
