/* SPDX-License-Identifier: MIT */
/* The server against a real client: curl (Debian's, run with fork/exec).
 * GET and POST with JSON, chunked uploads and downloads, HTTP/1.0, HEAD,
 * keep-alive reuse across URLs, Expect: 100-continue, parallel transfers. */
#include "harness.h"
#include "http_util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static int h_sum(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	json_t *v;
	int rc = aw_http_json_body(req, &v);
	if (rc)
		return rc;
	json_int_t sum = 0;
	size_t i;
	json_t *x;
	json_array_foreach(json_object_get(v, "n"), i, x) sum += json_integer_value(x);
	aw_jw *w = aw_http_json_begin(res, 200);
	aw_jw_object(w);
	aw_jw_key(w, "sum");
	aw_jw_int(w, sum);
	aw_jw_object_end(w);
	return aw_http_json_end(w);
}

static int h_size(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char buf[4096];
	size_t total = 0;
	unsigned sum = 0;
	ssize_t n;
	while ((n = aw_http_body_read(req, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			sum = sum * 31 + (unsigned char)buf[i];
		total += (size_t)n;
	}
	if (n < 0)
		return (int)n;
	char out[64];
	snprintf(out, sizeof out, "%zu %u", total, sum);
	return aw_http_text(res, 200, out);
}

static int gen_numbers(aw_gen *g, void *arg)
{
	(void)arg;
	char line[32];
	for (int i = 1; i <= 100; i++) {
		int n = snprintf(line, sizeof line, "%d\n", i);
		aw_chunk ch = { line, (size_t)n, 0 };
		int rc = aw_gen_yield(g, &ch);
		if (rc)
			return rc;
	}
	return 0;
}

static int h_numbers(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_gen_iter gi;
	return aw_http_stream(res, 200, "text/plain", aw_gen_iter_init(&gi, "numbers", gen_numbers, NULL));
}

static int h_file(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	return aw_http_file(res, ud, NULL);
}

static char file_path[64];

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "curl") < 0)
		abort();   /* no memory: nothing to test */
	aw_app_limits(app)->body_bytes = 8 << 20;
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_root, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/sum", h_sum, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "POST", "/size", h_size, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "PUT", "/size", h_size, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/numbers", h_numbers, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/file", h_file, file_path), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/missing", h_file, "/nonexistent/file.txt"), 0);
	return app;
}

#define START(s)                                                                   \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make_app), 0);                                      \
	char base[64];                                                             \
	snprintf(base, sizeof base, "http://127.0.0.1:%d", s.port)

static char out[1 << 20];

static const char *url(const char *base, const char *path)
{
	static char u[8][128];
	static int k;
	char *p = u[k++ % 8];
	snprintf(p, 128, "%s%s", base, path);
	return p;
}

AW_TEST(curl_get_and_post_json)
{
	START(s);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", url(base, "/"), NULL), 0);
	CHECK_STR(out, "{\"message\":\"Hello, World!\"}");
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-H", "Content-Type: application/json", "-d", "{\"n\":[1,2,3,39]}",
			  url(base, "/sum"), NULL), 0);
	CHECK_STR(out, "{\"sum\":45}");
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "{nope",
			  url(base, "/sum"), NULL), 0);
	CHECK_STR(out, "400");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(curl_keepalive_reuse)
{
	START(s);
	/* three URLs, one connection: curl counts the new connections */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null", "-w",
			  "%{num_connects} ", url(base, "/"), url(base, "/numbers"), url(base, "/"), NULL), 0);
	CHECK_STR(out, "1 0 0 ");
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(curl_chunked_both_ways)
{
	START(s);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "--raw", url(base, "/numbers"), NULL), 0);
	CHECK(strstr(out, "\r\n1\n\r\n") != NULL);   /* raw: the chunk framing is there */
	CHECK_EQ(run_curl(out, sizeof out, "-sS", url(base, "/numbers"), NULL), 0);
	char want[512] = "";
	for (int i = 1; i <= 100; i++)
		snprintf(want + strlen(want), sizeof want - strlen(want), "%d\n", i);
	CHECK_STR(out, want);
	/* a chunked upload: curl reads stdin-like data of unknown length */
	char path[] = "/tmp/aw-curl-upload-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	size_t n = 3 << 20;
	char *data = malloc(n);
	unsigned sum = 0;
	for (size_t i = 0; i < n; i++) {
		data[i] = (char)(i * 13 + i / 7);
		sum = sum * 31 + (unsigned char)data[i];
	}
	CHECK_EQ(write(fd, data, n), (ssize_t)n);
	close(fd);
	free(data);
	char at[80];
	snprintf(at, sizeof at, "@%s", path);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", at,
			  url(base, "/size"), NULL), 0);
	char w[64];
	snprintf(w, sizeof w, "%zu %u", n, sum);
	CHECK_STR(out, w);
	/* the same with Expect: 100-continue, which curl waits 1 s for unless
	 * the server answers it */
	long long t0 = now_ms();
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-H", "Expect: 100-continue", "-T", path, url(base, "/size"), NULL), 0);
	CHECK_STR(out, w);
	CHECK_LT(now_ms() - t0, 900);
	unlink(path);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(curl_http10_and_head)
{
	START(s);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "--http1.0", url(base, "/"), NULL), 0);
	CHECK_STR(out, "{\"message\":\"Hello, World!\"}");
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "--http1.0", url(base, "/numbers"), NULL), 0);
	CHECK(strncmp(out, "1\n2\n3\n", 6) == 0);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-I", url(base, "/"), NULL), 0);
	CHECK(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0);
	CHECK(strstr(out, "Content-Length: 27\r\n") != NULL);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(curl_files)
{
	snprintf(file_path, sizeof file_path, "/tmp/aw-curl-file-%d.txt", (int)getpid());
	FILE *f = fopen(file_path, "w");
	CHECK(f != NULL);
	for (int i = 0; i < 20000; i++)
		fprintf(f, "line %d\n", i);
	fclose(f);
	START(s);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-D", "-", url(base, "/file"), NULL), 0);
	CHECK(strstr(out, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
	CHECK(strstr(out, "line 0\nline 1\n") != NULL);
	CHECK(strstr(out, "line 19999\n") != NULL);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
			  url(base, "/missing"), NULL), 0);
	CHECK_STR(out, "404 22");
	CHECK_EQ(srv_stop(&s), 0);
	unlink(file_path);
}

AW_TEST(curl_parallel)
{
	START(s);
	/* five rounds of eight transfers at once */
	for (int k = 0; k < 5; k++) {
		CHECK_EQ(run_curl(out, sizeof out, "-s", "--parallel", "--parallel-max", "8", url(base, "/"),
				  url(base, "/"), url(base, "/"), url(base, "/"), url(base, "/"), url(base, "/"),
				  url(base, "/"), url(base, "/"), NULL), 0);
		size_t cnt = 0;
		for (const char *p = out; (p = strstr(p, "Hello, World!")); p++)
			cnt++;
		CHECK_EQ(cnt, 8);
	}
	CHECK_EQ(srv_stop(&s), 0);
}
