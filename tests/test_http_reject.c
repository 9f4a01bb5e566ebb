/* SPDX-License-Identifier: MIT */
/* Every request the server must reject: the status, a JSON body that says
 * nothing internal, Connection: close, and the connection really closed.
 * Each case is a raw request written on a fresh socket. */
#include "harness.h"
#include "http_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int h_ok(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	return aw_http_send(res, 200, "text/plain", data, len);
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "reject") < 0)
		abort();   /* no memory: nothing to test */
	EXPECT_EQ(aw_app_route(app, "*", "/", h_ok, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "*", "/x", h_ok, NULL), 0);
	return app;
}

typedef struct rcase {
	const char *name;
	const char *raw;
	size_t len;     /* 0: strlen(raw) */
	int status;
} rcase;

#define CASE(n, raw, st) { n, raw, sizeof(raw) - 1, st }

/* Returns false (and records why) when the case is not rejected properly. */
static bool rejected(int port, const rcase *c)
{
	resp r;
	bool closed = false;
	int st = http_once(port, c->raw, c->len, &r, &closed);
	bool ok = true;
	char conn[32] = "";
	if (st != c->status) {
		aw_test_fail(__FILE__, __LINE__, "case %s: status %d, want %d", c->name, st, c->status);
		ok = false;
	} else if (c->status >= 400 && c->status != 404) {
		if (!resp_header(&r, "Connection", conn, sizeof conn) || strcmp(conn, "close") != 0) {
			aw_test_fail(__FILE__, __LINE__, "case %s: no Connection: close", c->name);
			ok = false;
		} else if (!closed) {
			aw_test_fail(__FILE__, __LINE__, "case %s: the connection stayed open", c->name);
			ok = false;
		} else if (!r.body || strncmp(r.body, "{\"detail\":\"", 11) != 0 || strstr(r.body, ".c:")) {
			aw_test_fail(__FILE__, __LINE__, "case %s: body %s", c->name, r.body ? r.body : "(none)");
			ok = false;
		}
	}
	resp_free(&r);
	return ok;
}

static void run_cases(const rcase *cases, size_t n)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	for (size_t i = 0; i < n; i++)
		rejected(s.port, &cases[i]);
	CHECK_EQ(srv_stop(&s), 0);
}

#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases)[0])

#define POST "POST /x HTTP/1.1\r\nHost: a\r\n"

AW_TEST(framing_conflicts)
{
	static const rcase cases[] = {
		CASE("baseline", POST "Content-Length: 3\r\n\r\nabc", 200),
		CASE("cl+te", POST "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
		CASE("te+cl", POST "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
		CASE("cl differing", POST "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
		CASE("cl repeated", POST "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
		CASE("cl list", POST "Content-Length: 3, 3\r\n\r\nabc", 400),
		CASE("cl sign", POST "Content-Length: +3\r\n\r\nabc", 400),
		CASE("cl negative", POST "Content-Length: -1\r\n\r\n", 400),
		CASE("cl overflow", POST "Content-Length: 99999999999999999999999\r\n\r\n", 400),
		CASE("cl empty", POST "Content-Length: \r\n\r\n", 400),
	};
	RUN(cases);
}

AW_TEST(transfer_encodings)
{
	static const rcase cases[] = {
		CASE("chunked ok", POST "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200),
		CASE("chunked then gzip", POST "Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
		CASE("gzip only", POST "Transfer-Encoding: gzip\r\n\r\n", 400),
		CASE("two TE headers", POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
		CASE("chunked twice", POST "Transfer-Encoding: chunked, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
		CASE("gzip, chunked", POST "Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
		CASE("identity", POST "Transfer-Encoding: identity\r\n\r\n", 400),
		CASE("TE in HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
	};
	RUN(cases);
}

#define CH POST "Transfer-Encoding: chunked\r\n\r\n"

AW_TEST(chunk_sizes_and_extensions)
{
	static char longext[2200];
	snprintf(longext, sizeof longext, CH "3;a=%01500d\r\nabc\r\n0\r\n\r\n", 0);
	rcase cases[] = {
		CASE("extension ok", CH "3;name=value\r\nabc\r\n0;q=\"x y\"\r\n\r\n", 200),
		CASE("name only ok", CH "3;name\r\nabc\r\n0\r\n\r\n", 200),
		CASE("size junk", CH "3x\r\nabc\r\n0\r\n\r\n", 400),
		CASE("size negative", CH "-3\r\nabc\r\n0\r\n\r\n", 400),
		CASE("size 0x", CH "0x3\r\nabc\r\n0\r\n\r\n", 400),
		CASE("size empty", CH "\r\nabc\r\n0\r\n\r\n", 400),
		CASE("size overflow", CH "fffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400),
		CASE("size space", CH "3 \r\nabc\r\n0\r\n\r\n", 400),
		CASE("data too long", CH "3\r\nabcd\r\n0\r\n\r\n", 400),
		CASE("ext semicolon only", CH "3;\r\nabc\r\n0\r\n\r\n", 400),
		CASE("ext empty name", CH "3;=v\r\nabc\r\n0\r\n\r\n", 400),
		CASE("ext empty value", CH "3;a=\r\nabc\r\n0\r\n\r\n", 400),
		CASE("ext open quote", CH "3;a=\"b\r\nabc\r\n0\r\n\r\n", 400),
		CASE("ext space in value", CH "3;a=b c\r\nabc\r\n0\r\n\r\n", 400),
		CASE("ext control char", CH "3;a=\x01\r\nabc\r\n0\r\n\r\n", 400),
		{ "ext too long", longext, 0, 400 },
	};
	cases[15].len = strlen(longext);
	RUN(cases);
}

AW_TEST(bare_cr_lf_and_folding)
{
	static const rcase cases[] = {
		CASE("LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
		CASE("LF after header", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
		CASE("LF only", "GET / HTTP/1.1\nHost: a\n\n", 400),
		CASE("LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
		CASE("CR in a value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400),
		CASE("CR between headers", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
		CASE("CR in the target", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("CR ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\rX", 400),
		CASE("LF in chunk size line", CH "3\nabc\r\n0\r\n\r\n", 400),
		CASE("LF after chunk data", CH "3\r\nabc\n0\r\n\r\n", 400),
		CASE("LF ending the trailers", CH "3\r\nabc\r\n0\r\n\n", 400),
		CASE("LF in a trailer", CH "3\r\nabc\r\n0\r\nT: 1\n\r\n", 400),
		CASE("obs-fold space", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
		CASE("obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400),
		CASE("obs-fold first line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
		CASE("obs-fold trailer", CH "3\r\nabc\r\n0\r\nT: 1\r\n 2\r\n\r\n", 400),
		CASE("trailers ok", CH "3\r\nabc\r\n0\r\nT: 1\r\nU: 2\r\n\r\n", 200),
	};
	RUN(cases);
}

AW_TEST(header_names_and_values)
{
	static const rcase cases[] = {
		CASE("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
		CASE("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
		CASE("space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: b\r\n\r\n", 400),
		CASE("control in name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01: b\r\n\r\n", 400),
		CASE("NUL in name", "GET / HTTP/1.1\r\nHost: a\r\nX\0Y: b\r\n\r\n", 400),
		CASE("8-bit in name", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n", 400),
		CASE("control in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
		CASE("DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 400),
		CASE("NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
		CASE("empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400),
		CASE("no colon", "GET / HTTP/1.1\r\nHost: a\r\nXY\r\n\r\n", 400),
		CASE("tab and obs-text in value ok", "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xc3\xa9\r\n\r\n", 200),
	};
	RUN(cases);
}

AW_TEST(host_header)
{
	static const rcase cases[] = {
		CASE("missing in 1.1", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400),
		CASE("duplicated", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
		CASE("duplicated same", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
		CASE("duplicated in 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
		CASE("invalid", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
		CASE("missing in 1.0 ok", "GET / HTTP/1.0\r\n\r\n", 200),
		CASE("with port ok", "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", 200),
		CASE("IPv6 ok", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200),
		CASE("empty ok", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 200),
	};
	RUN(cases);
}

AW_TEST(methods_versions_request_lines)
{
	static const rcase cases[] = {
		CASE("unknown method", "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
		CASE("lowercase method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
		CASE("bad method char", "GE@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 501),
		CASE("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
		CASE("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
		CASE("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
		CASE("HTTP/0.9 request", "GET /\r\n\r\n", 400),
		/* The HTTP/2 preface starts HTTP/2 (test_http2), or gets 505
		 * with aw_app_http2(app)->enabled = false. */
		CASE("version lowercase", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("version junk", "GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400),
		CASE("version trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
		CASE("two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("two spaces after target", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("control in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("fragment", "GET /x#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("relative target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("star for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
		CASE("star for OPTIONS ok", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 404),
		CASE("leading CRLF ok", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
	};
	RUN(cases);
}

/* After a rejection the server is still fine for everyone else. */
AW_TEST(server_survives_garbage)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello, not HTTP";
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, garbage, sizeof garbage - 1, &r, &closed), 400);
	CHECK(closed);
	resp_free(&r);
	const char *ok = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK_EQ(http_once(s.port, ok, strlen(ok), &r, NULL), 200);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}
