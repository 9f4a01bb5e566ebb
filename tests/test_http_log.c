/* SPDX-License-Identifier: MIT */
/* The http server's logs (awith/log.h, docs/observability.md "Logs"): the
 * access log in combined and JSON forms, for handled requests and for
 * requests rejected before a handler ran (400, 413, 431), with request
 * ids (the client's X-Request-ID, echoed, or one made by the server)
 * that the handler's own records carry too. A real server in a child
 * process, real sockets and curl; the child's stderr is read back. */
#include "harness.h"
#include "http_util.h"

#include <awith/log.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int h_hello(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud, (void)req;
	aw_log_kv(AW_LOG_INFO, "saying hello", AW_KV_STR("who", "world"));
	return aw_http_send(res, 200, "text/plain", "hello", 5);
}

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

static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud, (void)req;
	int rc = aw_sleep(AW_SEC(5));
	if (rc)
		return rc;
	return aw_http_send(res, 200, "text/plain", "late", 4);
}

static aw_app *make(aw_access_log_format f)
{
	aw_app *app;
	if (aw_app_new(&app, "logs") < 0)
		abort();
	EXPECT_EQ(aw_app_route(app, "GET", "/hello", h_hello, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/echo", h_echo, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/slow", h_slow, NULL), 0);
	aw_app_limits(app)->body_bytes = 100;
	aw_app_limits(app)->header_bytes = 1024;
	aw_app_access_log(app, stderr);
	aw_app_access_log_format(app, f);
	return app;
}

static aw_app *make_combined(void) { return make(AW_ACCESS_LOG_COMBINED); }
static aw_app *make_json(void) { return make(AW_ACCESS_LOG_JSON); }

/* The line of `log` containing `needle`, copied to out. */
static bool line_with(const char *log, const char *needle, char *out, size_t len)
{
	const char *p = log ? strstr(log, needle) : NULL;
	if (!p)
		return false;
	const char *b = p;
	while (b > log && b[-1] != '\n')
		b--;
	const char *e = strchr(p, '\n');
	size_t n = e ? (size_t)(e - b) : strlen(b);
	snprintf(out, len, "%.*s", (int)n, b);
	return true;
}

/* "[06/Dec/2026:06:12:12 +0000]" replaced by "[T]", the duration by D. */
static void normalize_combined(char *l)
{
	char *a = strchr(l, '['), *b = a ? strchr(a, ']') : NULL;
	if (a && b && b - a == 27 && memcmp(b - 5, "+0000", 5) == 0)
		memmove(a + 2, b, strlen(b) + 1), a[1] = 'T';
	/* the duration: the number before the request id, at the end */
	char *id = strrchr(l, ' ');
	char *d = id;
	while (d && d > l && d[-1] != ' ')
		d--;
	if (id && d && d < id && isdigit((unsigned char)*d) && strchr(d, '.') < id) {
		memmove(d + 1, id, strlen(id) + 1);
		*d = 'D';
	}
}

AW_TEST(access_log_combined_line_with_the_clients_request_id_echoed_and_in_the_handlers_records)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_combined), 0);
	resp r;
	bool closed;
	const char req[] = "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc-123\r\n"
			   "Referer: http://ref/\"q\"\r\nUser-Agent: tester/1.0\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, sizeof req - 1, &r, &closed), 200);
	char id[64] = "";
	CHECK(resp_header(&r, "X-Request-ID", id, sizeof id));
	CHECK_STR(id, "abc-123");
	resp_free(&r);
	/* A real client too: curl, no id sent: one is made. */
	char out[256], url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/hello", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-A", "curl-test", "-o", "/dev/null", "-w", "%{http_code}", url, NULL), 0);
	CHECK_STR(out, "200");
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	char line[1024];
	CHECK(line_with(log, "\"GET /hello?x=1 HTTP/1.1\"", line, sizeof line));
	normalize_combined(line);
	CHECK_STR(line, "127.0.0.1 - - [T] \"GET /hello?x=1 HTTP/1.1\" 200 5 \"http://ref/\\\"q\\\"\" \"tester/1.0\" D abc-123");
	/* The handler's own record carries the request id (text format). */
	CHECK(line_with(log, "saying hello", line, sizeof line));
	CHECK(strstr(line, " INFO  [") != NULL);
	CHECK(strstr(line, "saying hello request_id=abc-123 who=world") != NULL);
	/* curl's request: the made id is 16 hex digits, and its handler
	 * record has the same one. */
	CHECK(line_with(log, "\"curl-test\"", line, sizeof line));
	const char *made = strrchr(line, ' ') + 1;
	CHECK_EQ(strlen(made), 16);
	CHECK_EQ(strspn(made, "0123456789abcdef"), 16);
	char want[64];
	snprintf(want, sizeof want, "request_id=%s who=world", made);
	CHECK(strstr(log, want) != NULL);
	CHECK(strstr(line, "\"GET /hello HTTP/1.1\" 200 5 \"-\" \"curl-test\"") != NULL);
	free(log);
}

AW_TEST(access_log_json_has_requests_rejected_before_the_handler_with_their_ids)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_json), 0);
	resp r;
	bool closed;
	/* 413: the declared body is over the limit; the handler never runs. */
	const char big[] = "POST /echo HTTP/1.1\r\nHost: a\r\nX-Request-ID: big-1\r\nContent-Length: 5000\r\n\r\n";
	CHECK_EQ(http_once(s.port, big, sizeof big - 1, &r, &closed), 413);
	char id[64] = "";
	CHECK(resp_header(&r, "X-Request-ID", id, sizeof id));
	CHECK_STR(id, "big-1");
	resp_free(&r);
	/* 400: not a request line at all. */
	const char bad[] = "HELLO\x01 there\r\n\r\n";
	CHECK_EQ(http_once(s.port, bad, sizeof bad - 1, &r, &closed), 400);
	resp_free(&r);
	/* 431: the header section is over 1 KiB. */
	char huge[3000];
	int n = snprintf(huge, sizeof huge, "GET /hello HTTP/1.1\r\nHost: a\r\nX-Pad: %02000d\r\n\r\n", 0);
	CHECK_EQ(http_once(s.port, huge, (size_t)n, &r, &closed), 431);
	resp_free(&r);
	/* A handled one, with a body. */
	const char ok[] = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
	CHECK_EQ(http_once(s.port, ok, sizeof ok - 1, &r, &closed), 200);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	char line[2048];
	CHECK(line_with(log, "\"status\":413", line, sizeof line));
	CHECK(strncmp(line, "{\"time\":\"20", 11) == 0);
	CHECK(strstr(line, "\"msg\":\"request\",\"request_id\":\"big-1\",\"client\":\"127.0.0.1\",\"method\":\"POST\","
			   "\"path\":\"/echo\",\"proto\":\"HTTP/1.1\",\"status\":413,\"bytes\":") != NULL);
	CHECK(strstr(line, "\"referer\":null,\"user_agent\":null}") != NULL);
	CHECK(line_with(log, "\"status\":400", line, sizeof line));
	CHECK(strstr(line, "\"method\":null,\"path\":null,\"proto\":null,\"status\":400,") != NULL);
	CHECK(strstr(line, "\"request_id\":\"") != NULL);
	CHECK(line_with(log, "\"status\":431", line, sizeof line));
	CHECK(strstr(line, "\"method\":\"GET\",\"path\":\"/hello\",\"proto\":\"HTTP/1.1\",\"status\":431") != NULL);
	CHECK(line_with(log, "\"status\":200", line, sizeof line));
	CHECK(strstr(line, "\"method\":\"POST\",\"path\":\"/echo\",\"proto\":\"HTTP/1.1\",\"status\":200,\"bytes\":3,\"duration_ms\":") != NULL);
	free(log);
}

static aw_app *make_capped(void)
{
	aw_app *app = make(AW_ACCESS_LOG_JSON);
	aw_app_limits(app)->max_connections = 1;
	aw_app_limits(app)->max_connections_per_client = 0;
	aw_app_limits(app)->keepalive_idle = AW_SEC(20);
	return app;
}

AW_TEST(access_log_has_connections_refused_over_the_cap_with_503)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_capped), 0);
	/* The one connection the cap allows, kept open (served once). */
	int held = cli_connect(s.port);
	CHECK(held >= 0);
	CHECK_EQ(cli_sends(held, "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(held, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	/* The next one is refused at accept, before any request is read. */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 503);
	resp_free(&r);
	close(fd);
	close(held);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	char line[2048];
	CHECK(line_with(log, "\"status\":503", line, sizeof line));
	CHECK(strstr(line, "\"msg\":\"request\",\"client\":\"127.0.0.1\",\"method\":null,\"path\":null,\"proto\":null,"
			   "\"status\":503,\"bytes\":34,") != NULL);
	CHECK(strstr(line, ",\"request_id\":\"") != NULL);
	CHECK(strstr(log, "refused 1 new connection(s) with 503") != NULL);
	free(log);
}

AW_TEST(access_log_has_a_too_long_request_line_and_a_client_that_left_with_499)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_json), 0);
	/* 414: a request line over 8 KiB, rejected while it arrives. */
	static char longreq[10000];
	int n = snprintf(longreq, sizeof longreq, "GET /%09000d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, longreq, (size_t)n, &r, &closed), 414);
	resp_free(&r);
	/* 499: the client sends its request and goes away while the handler
	 * sleeps; nothing is answered, the access log says 499. */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /slow HTTP/1.1\r\nHost: a\r\nX-Request-ID: gone-1\r\n\r\n"), 0);
	usleep(200 * 1000);
	close(fd);
	usleep(300 * 1000);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	char line[2048];
	CHECK(line_with(log, "\"status\":414", line, sizeof line));
	CHECK(strstr(line, "\"method\":null,\"path\":null,\"proto\":null,\"status\":414,") != NULL);
	CHECK(line_with(log, "\"status\":499", line, sizeof line));
	CHECK(strstr(line, "\"request_id\":\"gone-1\",\"client\":\"127.0.0.1\",\"method\":\"GET\",\"path\":\"/slow\","
			   "\"proto\":\"HTTP/1.1\",\"status\":499,\"bytes\":0,") != NULL);
	free(log);
}
