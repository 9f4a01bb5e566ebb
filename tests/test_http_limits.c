/* SPDX-License-Identifier: MIT */
/* Limits (414, 431, 413) and timeouts (header, idle body, idle keep-alive,
 * request deadline), and slow clients that must not hold back others. The
 * app uses small limits so the tests run fast. */
#include "harness.h"
#include "http_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int h_echo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	return aw_http_send(res, 200, "text/plain", data, len);
}

static int h_sleep(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_sleep(AW_SEC(3));
	if (rc)
		return rc;
	return aw_http_text(res, 200, "woke");
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "limits") < 0)
		abort();   /* no memory: nothing to test */
	aw_http_limits *l = aw_app_limits(app);
	l->request_line = 256;
	l->header_bytes = 512;
	l->header_count = 10;
	l->body_bytes = 1000;
	l->header_timeout = AW_MS(300);
	l->body_idle = AW_MS(300);
	l->keepalive_idle = AW_MS(300);
	l->request_deadline = AW_MS(400);
	EXPECT_EQ(aw_app_route(app, "*", "/", h_echo, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/sleep", h_sleep, NULL), 0);
	return app;
}

#define START(s)                                                                   \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make_app), 0)
#define STOP(s) CHECK_EQ(srv_stop(&s), 0)

static int once(int port, const char *raw, bool *closed)
{
	resp r;
	int st = http_once(port, raw, strlen(raw), &r, closed);
	resp_free(&r);
	return st;
}

AW_TEST(request_line_414)
{
	START(s);
	char req[1024];
	snprintf(req, sizeof req, "GET /%0300d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	bool closed;
	CHECK_EQ(once(s.port, req, &closed), 414);
	CHECK(closed);
	/* a target just under the limit is fine (404: no such route) */
	snprintf(req, sizeof req, "GET /%0200d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	CHECK_EQ(once(s.port, req, &closed), 404);
	/* sent slowly, with no end of line in sight */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /"), 0);
	char chunk[100];
	memset(chunk, 'a', sizeof chunk);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(cli_send(fd, chunk, sizeof chunk), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 414);
	resp_free(&r);
	CHECK(cli_closed(fd, 2000));
	close(fd);
	STOP(s);
}

AW_TEST(header_section_431)
{
	START(s);
	char req[4096];
	int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
	memset(req + n, 'v', 600);
	strcpy(req + n + 600, "\r\n\r\n");
	bool closed;
	CHECK_EQ(once(s.port, req, &closed), 431);
	CHECK(closed);
	/* too many fields */
	n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < 12; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "X-%d: v\r\n", i);
	snprintf(req + n, sizeof req - (size_t)n, "\r\n");
	CHECK_EQ(once(s.port, req, &closed), 431);
	CHECK(closed);
	/* nine fields are fine */
	n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 0; i < 9; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "X-%d: v\r\n", i);
	snprintf(req + n, sizeof req - (size_t)n, "\r\n");
	CHECK_EQ(once(s.port, req, &closed), 200);
	/* the trailers count too */
	n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n");
	for (int i = 0; i < 12; i++)
		n += snprintf(req + n, sizeof req - (size_t)n, "T-%d: v\r\n", i);
	snprintf(req + n, sizeof req - (size_t)n, "\r\n");
	CHECK_EQ(once(s.port, req, &closed), 431);
	CHECK(closed);
	STOP(s);
}

AW_TEST(body_413)
{
	START(s);
	/* announced too large: answered before the body is sent */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 413);
	resp_free(&r);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	/* chunked, found out while reading */
	fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
	char chunk[300];
	memset(chunk, 'c', sizeof chunk);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ(cli_sends(fd, "12c\r\n"), 0);
		CHECK_EQ(cli_send(fd, chunk, sizeof chunk), 0);
		CHECK_EQ(cli_sends(fd, "\r\n"), 0);
	}
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 413);
	resp_free(&r);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	/* exactly the limit is fine */
	char req[2000];
	int n = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
	memset(req + n, 'b', 1000);
	req[n + 1000] = 0;
	bool closed;
	CHECK_EQ(once(s.port, req, &closed), 200);
	STOP(s);
}

AW_TEST(header_timeout_408)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	long long t0 = now_ms();
	/* slowloris: a byte every 100 ms never completes the head */
	const char *part = "GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ";
	CHECK_EQ(cli_sends(fd, part), 0);
	for (int i = 0; i < 3; i++) {
		usleep(100000);
		if (cli_sends(fd, "z"))
			break;
	}
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 408);
	long long dt = now_ms() - t0;
	CHECK_GE(dt, 250);
	CHECK_LT(dt, 2000);
	resp_free(&r);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	/* a connection that never says anything is closed quietly */
	fd = cli_connect(s.port);
	CHECK(fd >= 0);
	t0 = now_ms();
	size_t len;
	char *all = cli_read_all(fd, &len, 3000);
	CHECK_EQ(len, 0);
	free(all);
	CHECK_LT(now_ms() - t0, 2000);
	close(fd);
	STOP(s);
}

AW_TEST(keepalive_idle_close)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	long long t0 = now_ms();
	/* idle, but within the limit: still open */
	usleep(150000);
	CHECK_EQ(cli_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	t0 = now_ms();
	CHECK(cli_closed(fd, 3000));
	long long dt = now_ms() - t0;
	CHECK_GE(dt, 250);
	CHECK_LT(dt, 2000);
	close(fd);
	STOP(s);
}

AW_TEST(body_idle_408)
{
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	long long t0 = now_ms();
	CHECK_EQ(cli_sends(fd, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 408);
	long long dt = now_ms() - t0;
	CHECK_GE(dt, 250);
	CHECK_LT(dt, 2000);
	resp_free(&r);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	STOP(s);
}

AW_TEST(request_deadline_is_504)
{
	START(s);
	long long t0 = now_ms();
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /sleep HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 504);
	CHECK(strncmp(r.body, "{\"detail\":\"the request took too long\",\"request_id\":\"", 52) == 0);
	resp_free(&r);
	long long dt = now_ms() - t0;
	CHECK_GE(dt, 350);
	CHECK_LT(dt, 2500);
	/* the connection itself is fine */
	CHECK_EQ(cli_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	close(fd);
	STOP(s);
}

/* 60 slow clients hold partial heads; a normal client is served at once. */
AW_TEST(slow_clients_do_not_block_others)
{
	START(s);
	int slow[60];
	for (int i = 0; i < 60; i++) {
		slow[i] = cli_connect(s.port);
		CHECK(slow[i] >= 0);
		CHECK_EQ(cli_sends(slow[i], "GET / HTTP/1.1\r\nHo"), 0);
	}
	/* and one that sends a body it never finishes */
	int stall = cli_connect(s.port);
	CHECK(stall >= 0);
	CHECK_EQ(cli_sends(stall, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab"), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	for (int i = 0; i < 20; i++) {
		long long t0 = now_ms();
		CHECK_EQ(cli_sends(fd, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
		resp r;
		CHECK_EQ(cli_read(fd, &r, false), 0);
		CHECK_EQ(r.status, 200);
		resp_free(&r);
		CHECK_LT(now_ms() - t0, 150);
	}
	close(fd);
	close(stall);
	for (int i = 0; i < 60; i++)
		close(slow[i]);
	STOP(s);
}
