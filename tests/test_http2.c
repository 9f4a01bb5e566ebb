/* SPDX-License-Identifier: MIT */
/* HTTP/2 in the server: h2c with prior knowledge against curl, nghttp and
 * h2load (Debian's nghttp2-client), and hand-built frames from a raw
 * socket for what clients do not do on their own (a slow and a fast
 * stream side by side, resets, floods). The server runs in a child
 * (tests/http_util.c); its log (stderr) is read after it stops. */
#include "harness.h"
#include "http_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the app ---------------------------------------------------------------- */

static int started, cancelled;   /* in the server's process */

static int h_root(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	return aw_http_text(res, 200, "hello");
}

/* Sleeps ?ms=N (default 1000); counts starts and cancellations. */
static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	started++;
	const char *ms = NULL;
	if (aw_http_query(req, "ms", &ms))
		return -EBADMSG;
	int rc = aw_sleep(AW_MS(ms ? atoi(ms) : 1000));
	if (rc == -ECANCELED) {
		cancelled++;
		fprintf(stderr, "slow handler cancelled\n");
		return rc;
	}
	if (rc)
		return rc;
	return aw_http_text(res, 200, "slow");
}

static int h_stats(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	char b[64];
	snprintf(b, sizeof b, "%d %d", started, cancelled);
	return aw_http_text(res, 200, b);
}

/* The body's size and a hash, read in pieces (flow control). */
static int h_size(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char buf[8192];
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

static int h_echo(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *d;
	size_t n;
	int rc = aw_http_body(req, &d, &n);
	if (rc)
		return rc;
	return aw_http_send(res, 200, "application/octet-stream", d, n);
}

/* ?n=BYTES streamed in 16 KiB chunks of 'a'..'z'. */
static int gen_big(aw_gen *g, void *arg)
{
	size_t left = *(size_t *)arg;
	static char chunk[16384];
	for (size_t i = 0; i < sizeof chunk; i++)
		chunk[i] = (char)('a' + i % 26);
	while (left) {
		size_t k = left < sizeof chunk ? left : sizeof chunk;
		aw_chunk ch = { chunk, k, 0 };
		int rc = aw_gen_yield(g, &ch);
		if (rc)
			return rc;
		left -= k;
	}
	return 0;
}

static int h_big(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *n = NULL;
	if (aw_http_query(req, "n", &n))
		return -EBADMSG;
	size_t left = n ? (size_t)atol(n) : 1 << 20;
	aw_gen_iter gi;
	return aw_http_stream(res, 200, "text/plain", aw_gen_iter_init(&gi, "big", gen_big, &left));
}

static int h_header(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_str v = aw_http_header(req, "x-probe");
	aw_str ck = aw_http_header(req, "cookie");
	char b[256];
	snprintf(b, sizeof b, "%.*s|%.*s|%.*s", (int)v.len, v.p ? v.p : "", (int)ck.len, ck.p ? ck.p : "",
		 (int)aw_http_method(req).len, aw_http_method(req).p);
	if (aw_http_set_header(res, "X-Reply", "yes") || aw_http_set_header(res, "Connection", "close"))
		return -EINVAL;
	return aw_http_text(res, 200, b);
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "h2") < 0)
		return NULL;
	aw_app_access_log(app, stderr);
	aw_app_limits(app)->body_bytes = 16 << 20;
	aw_app_limits(app)->shutdown_grace = AW_SEC(5);
	aw_http2_opts *o = aw_app_http2(app);
	o->max_resets = 50;
	if (aw_app_route(app, "GET", "/", h_root, NULL) || aw_app_route(app, "GET", "/slow", h_slow, NULL) ||
	    aw_app_route(app, "GET", "/stats", h_stats, NULL) || aw_app_route(app, "POST", "/size", h_size, NULL) ||
	    aw_app_route(app, "POST", "/echo", h_echo, NULL) || aw_app_route(app, "GET", "/big", h_big, NULL) ||
	    aw_app_route(app, "GET", "/header", h_header, NULL))
		return NULL;
	return app;
}

static aw_app *make_app_h2_off(void)
{
	aw_app *app = make_app();
	if (app)
		aw_app_http2(app)->enabled = false;
	return app;
}

/* ---- a raw HTTP/2 client --------------------------------------------------------- */

enum { F_DATA, F_HEADERS, F_PRIORITY, F_RST, F_SETTINGS, F_PUSH, F_PING, F_GOAWAY, F_WINDOW, F_CONT };

static int frame(int fd, int type, int flags, uint32_t sid, const void *p, size_t n)
{
	uint8_t h[9] = { (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, (uint8_t)type, (uint8_t)flags,
			 (uint8_t)(sid >> 24 & 0x7f), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid };
	if (cli_send(fd, h, 9))
		return -1;
	return n ? cli_send(fd, p, n) : 0;
}

/* HPACK integer with an n-bit prefix. */
static size_t hp_int(uint8_t *o, uint8_t first, int bits, size_t v)
{
	size_t max = (1u << bits) - 1, i = 0;
	if (v < max) {
		o[i++] = (uint8_t)(first | v);
		return i;
	}
	o[i++] = (uint8_t)(first | max);
	v -= max;
	while (v >= 128) {
		o[i++] = (uint8_t)(v % 128 + 128);
		v /= 128;
	}
	o[i++] = (uint8_t)v;
	return i;
}

/* A literal field without indexing, new name. */
static size_t hp_lit(uint8_t *o, const char *n, const char *v)
{
	size_t i = 0, nl = strlen(n), vl = strlen(v);
	o[i++] = 0;
	i += hp_int(o + i, 0, 7, nl);
	memcpy(o + i, n, nl);
	i += nl;
	i += hp_int(o + i, 0, 7, vl);
	memcpy(o + i, v, vl);
	return i + vl;
}

/* A request's header block. */
static size_t hp_req(uint8_t *o, const char *method, const char *path)
{
	size_t n = hp_lit(o, ":method", method);
	n += hp_lit(o + n, ":scheme", "http");
	n += hp_lit(o + n, ":path", path);
	n += hp_lit(o + n, ":authority", "localhost");
	return n;
}

/* A GET of `path` on stream `sid`: one HEADERS frame with END_STREAM and
 * END_HEADERS. Returns frame()'s result. */
static int h2_get(int fd, uint32_t sid, const char *path)
{
	uint8_t b[512];
	size_t n = hp_req(b, "GET", path);
	return frame(fd, F_HEADERS, 0x5, sid, b, n);
}

/* Connect, send the preface and an empty SETTINGS. */
static int h2_open(int port)
{
	int fd = cli_connect(port);
	if (fd < 0)
		return -1;
	if (cli_send(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) || frame(fd, F_SETTINGS, 0, 0, NULL, 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static int read_full(int fd, void *buf, size_t n, int ms)
{
	size_t got = 0;
	while (got < n) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, ms) <= 0)
			return -1;
		ssize_t r = recv(fd, (char *)buf + got, n - got, 0);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

typedef struct fr {
	int type, flags;
	uint32_t sid;
	size_t len;
	uint8_t p[70000];
} fr;

/* The next frame, within ms; -1 on EOF, reset or timeout. */
static int next_frame(int fd, fr *f, int ms)
{
	uint8_t h[9];
	if (read_full(fd, h, 9, ms))
		return -1;
	f->len = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
	f->type = h[3];
	f->flags = h[4];
	f->sid = ((uint32_t)h[5] & 0x7f) << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
	if (f->len > sizeof f->p)
		return -1;
	return read_full(fd, f->p, f->len, ms);
}

/* Read frames until a GOAWAY (its error code) or the end of the
 * connection (-1), within ms. */
static long wait_goaway(int fd, int ms)
{
	static fr f;
	long long end = now_ms() + ms;
	while (now_ms() < end) {
		if (next_frame(fd, &f, (int)(end - now_ms())))
			return -1;
		if (f.type == F_GOAWAY && f.len >= 8)
			return (long)((uint32_t)f.p[4] << 24 | (uint32_t)f.p[5] << 16 | (uint32_t)f.p[6] << 8 | f.p[7]);
	}
	return -2;
}

/* Read frames into f until one on stream `sid` of type `type` (-1: any)
 * with every bit of `flags` set, each within 3 s; -1 if one does not come
 * (next_frame failed). */
static int await_frame(int fd, fr *f, int type, uint32_t sid, int flags)
{
	for (;;) {
		if (next_frame(fd, f, 3000))
			return -1;
		if ((type < 0 || f->type == type) && f->sid == sid && (f->flags & flags) == flags)
			return 0;
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* curl --http2-prior-knowledge; returns the HTTP status (-1). */
static int curl_h2(int port, const char *path, char *out, size_t outlen)
{
	char url[128], fmt[] = "\n%{http_code} %{http_version}";
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	if (run_curl(out, outlen, "-s", "--http2-prior-knowledge", "-w", fmt, url, (char *)NULL) != 0)
		return -1;
	char *nl = strrchr(out, '\n');
	if (!nl)
		return -1;
	int st = atoi(nl + 1);
	if (!strstr(nl, " 2"))
		return -2;   /* not HTTP/2 */
	*nl = 0;
	return st;
}

/* ---- tests -------------------------------------------------------------------- */

AW_TEST(h2c_prior_knowledge_serves_the_routes_of_http1)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char out[4096];
	CHECK_EQ(curl_h2(s.port, "/", out, sizeof out), 200);
	CHECK_STR(out, "hello");
	CHECK_EQ(curl_h2(s.port, "/nope", out, sizeof out), 404);
	CHECK(strstr(out, "\"detail\"") != NULL);
	/* the same server still speaks HTTP/1.1 */
	resp r;
	bool closed;
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, strlen(req), &r, &closed), 200);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "\"GET / HTTP/2.0\" 200 5") != NULL);
	CHECK(strstr(log, "\"GET /nope HTTP/2.0\" 404") != NULL);
	CHECK(strstr(log, "\"GET / HTTP/1.1\" 200") != NULL);
	free(log);
}

AW_TEST(request_headers_cookies_and_response_headers_cross_over)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char out[8192], url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/header", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-i", "--http2-prior-knowledge", "-H", "X-Probe: 42", "-H",
			  "Cookie: a=1", "-H", "X-Request-ID: req-h2-1", url, (char *)NULL),
		 0);
	CHECK(strstr(out, "HTTP/2 200") != NULL);
	CHECK(strstr(out, "x-reply: yes") != NULL);
	CHECK(strstr(out, "x-request-id: req-h2-1") != NULL);
	CHECK(strstr(out, "connection:") == NULL);   /* HTTP/1.1-only: dropped */
	CHECK(strstr(out, "42|a=1|GET") != NULL);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(http2_can_be_turned_off_then_the_preface_gets_505)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app_h2_off), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 505);
	resp_free(&r);
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(many_streams_on_one_connection_with_h2load)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[8192];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
	const char *argv[] = { "/usr/bin/h2load", "-n", "2000", "-c", "2", "-m", "100", url, NULL };
	CHECK_EQ(run_cmd(out, sizeof out, argv), 0);
	CHECK(strstr(out, "2000 succeeded, 0 failed, 0 errored") != NULL);
	CHECK(strstr(out, "2000 2xx") != NULL);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_slow_stream_does_not_block_a_fast_one)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(h2_get(fd, 1, "/slow?ms=1500"), 0);
	long long t0 = now_ms();
	CHECK_EQ(h2_get(fd, 3, "/"), 0);
	static fr f;
	uint32_t first = 0;
	long long t_fast = 0;
	while (!first) {
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
		if (f.type == F_HEADERS) {
			first = f.sid;
			t_fast = now_ms() - t0;
		}
	}
	CHECK_EQ(first, 3u);
	CHECK(t_fast < 1000);
	/* the slow one still completes on the same connection */
	CHECK_EQ(await_frame(fd, &f, -1, 1, 1), 0);   /* END_STREAM on stream 1 */
	CHECK(now_ms() - t0 >= 1400);
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

static void make_file(const char *path, size_t n)
{
	FILE *f = fopen(path, "wb");
	for (size_t i = 0; i < n; i++)
		fputc((int)((i * 7 + i / 1000) & 0xff), f);
	fclose(f);
}

/* A new temp file from the template `path` (its name written back) with n
 * bytes of make_file; -1 if mkstemp fails. */
static int temp_file(char *path, size_t n)
{
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	make_file(path, n);
	return 0;
}

static unsigned file_hash(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned sum = 0;
	int ch;
	*len = 0;
	while (f && (ch = fgetc(f)) != EOF) {
		sum = sum * 31 + (unsigned char)ch;
		(*len)++;
	}
	if (f)
		fclose(f);
	return sum;
}

AW_TEST(big_bodies_both_ways_under_flow_control)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char in[] = "/tmp/aw_h2_up_XXXXXX";
	size_t size = 5 * 1024 * 1024 + 123;   /* 80 stream windows */
	CHECK_EQ(temp_file(in, size), 0);
	size_t len;
	unsigned hash = file_hash(in, &len);
	char out[4096], url[128], data[64], want[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/size", s.port);
	snprintf(data, sizeof data, "@%s", in);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "--data-binary", data, url, (char *)NULL), 0);
	snprintf(want, sizeof want, "%zu %u", size, hash);
	CHECK_STR(out, want);
	/* the whole body at once (aw_http_body), sent back */
	char back[] = "/tmp/aw_h2_down_XXXXXX";
	CHECK_EQ(temp_file(back, 0), 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "--data-binary", data, "-o", back, url,
			  (char *)NULL),
		 0);
	size_t blen;
	CHECK_EQ(file_hash(back, &blen), hash);
	CHECK_EQ(blen, size);
	/* a streamed 8 MiB response */
	snprintf(url, sizeof url, "http://127.0.0.1:%d/big?n=8388608", s.port);
	/* (this caught a lost wake-up: output queued by the handler while
	 * the connection's write waited was left unsent) */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "-o", back, "-w", "%{size_download}", url,
			  (char *)NULL),
		 0);
	CHECK_STR(out, "8388608");
	unlink(in);
	unlink(back);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_handler_that_does_not_read_holds_back_only_its_own_stream)
{
	/* Stream 1 sends far more than its window to a handler that sleeps
	 * without reading; the server's window stops it at 64 KiB, and
	 * stream 3 on the same connection is answered meanwhile. */
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	static fr f;
	do   /* the server's SETTINGS (its 64 KiB window), acknowledged */
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
	while (f.type != F_SETTINGS || (f.flags & 1));
	CHECK_EQ(frame(fd, F_SETTINGS, 1, 0, NULL, 0), 0);
	uint8_t b[512];
	size_t n = hp_req(b, "GET", "/slow?ms=1000");
	CHECK_EQ(frame(fd, F_HEADERS, 0x4, 1, b, n), 0);
	static uint8_t chunk[16384];
	memset(chunk, 'x', sizeof chunk);
	for (int i = 0; i < 4; i++)   /* 64 KiB: exactly the window */
		CHECK_EQ(frame(fd, F_DATA, 0, 1, chunk, sizeof chunk), 0);
	n = hp_req(b, "GET", "/");
	CHECK_EQ(frame(fd, F_HEADERS, 0x5, 3, b, n), 0);
	bool fast = false;
	long long t0 = now_ms();
	while (!fast) {
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
		CHECK(!(f.type == F_WINDOW && f.sid == 1));   /* no window for the unread stream */
		if (f.type == F_HEADERS && f.sid == 3)
			fast = true;
	}
	CHECK(now_ms() - t0 < 800);
	/* more DATA on stream 1 than its window is a flow-control error */
	CHECK_EQ(frame(fd, F_DATA, 0, 1, chunk, 100), 0);
	bool reset = false;
	while (!reset) {
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
		if ((f.type == F_RST && f.sid == 1) || f.type == F_GOAWAY) {
			CHECK_EQ(be32(f.p + (f.type == F_GOAWAY ? 4 : 0)), 3u);   /* FLOW_CONTROL_ERROR */
			reset = true;
		}
	}
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(request_trailers_are_accepted_with_nghttp)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char in[] = "/tmp/aw_h2_tr_XXXXXX";
	CHECK_EQ(temp_file(in, 100000), 0);
	size_t len;
	unsigned hash = file_hash(in, &len);
	char url[128], out[8192], want[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/size", s.port);
	const char *argv[] = { "/usr/bin/nghttp", "-d", in, "--trailer", "x-checksum: abc", url, NULL };
	CHECK_EQ(run_cmd(out, sizeof out, argv), 0);
	snprintf(want, sizeof want, "100000 %u", hash);
	CHECK(strstr(out, want) != NULL);
	unlink(in);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_header_list_over_the_limit_gets_431)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	static char hdr[40100];
	memcpy(hdr, "X-Big: ", 7);
	memset(hdr + 7, 'a', 40000);
	hdr[40007] = 0;
	char url[128], out[4096];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "-H", hdr, "-w", "%{http_code}", url,
			  (char *)NULL),
		 0);
	CHECK(strstr(out, "431") != NULL);
	/* the HTTP/1.1 header_count limit holds too */
	char *args[260];
	int na = 0;
	static char hs[120][32];
	args[na++] = "-s";
	args[na++] = "--http2-prior-knowledge";
	for (int i = 0; i < 120; i++) {
		snprintf(hs[i], sizeof hs[i], "X-H%d: v", i);
		args[na++] = "-H";
		args[na++] = hs[i];
	}
	args[na++] = "-w";
	args[na++] = "%{http_code}";
	args[na++] = url;
	args[na] = NULL;
	pid_t pid;
	int p[2];
	CHECK_EQ(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		char *full[264] = { "curl" };
		memcpy(full + 1, args, (size_t)(na + 1) * sizeof *args);
		execvp("curl", full);
		_exit(127);
	}
	close(p[1]);
	size_t got = 0;
	ssize_t r;
	while ((r = read(p[0], out + got, sizeof out - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = 0;
	close(p[0]);
	int wst;
	waitpid(pid, &wst, 0);
	CHECK(strstr(out, "431") != NULL);
	CHECK_EQ(curl_h2(s.port, "/", out, sizeof out), 200);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_reset_stream_cancels_its_handler)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(h2_get(fd, 1, "/slow?ms=5000"), 0);
	usleep(200 * 1000);
	uint8_t code[4] = { 0, 0, 0, 8 };   /* CANCEL */
	CHECK_EQ(frame(fd, F_RST, 0, 1, code, 4), 0);
	usleep(200 * 1000);
	char out[256];
	CHECK_EQ(curl_h2(s.port, "/stats", out, sizeof out), 200);
	CHECK_STR(out, "1 1");   /* started, cancelled */
	/* the connection goes on */
	CHECK_EQ(h2_get(fd, 3, "/"), 0);
	static fr f;
	CHECK_EQ(await_frame(fd, &f, F_HEADERS, 3, 0), 0);
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "slow handler cancelled") != NULL);
	CHECK(strstr(log, "\"GET /slow?ms=5000 HTTP/2.0\" 499") != NULL);
	free(log);
}

AW_TEST(rapid_reset_gets_goaway_enhance_your_calm)
{
	/* CVE-2023-44487: open and reset streams as fast as possible. The
	 * app allows 50 resets a second: the connection gets GOAWAY
	 * ENHANCE_YOUR_CALM (0xb), the handlers started stay bounded, and
	 * another client is served meanwhile. */
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	uint8_t b[512];
	size_t n = hp_req(b, "GET", "/slow?ms=5000");
	uint8_t code[4] = { 0, 0, 0, 8 };
	static uint8_t burst[1000 * (9 + 512 + 13)];
	size_t bl = 0;
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t sid = 1 + 2 * i;
		uint8_t h[9] = { 0, (uint8_t)(n >> 8), (uint8_t)n, F_HEADERS, 0x5, (uint8_t)(sid >> 24), (uint8_t)(sid >> 16),
				 (uint8_t)(sid >> 8), (uint8_t)sid };
		memcpy(burst + bl, h, 9);
		memcpy(burst + bl + 9, b, n);
		bl += 9 + n;
		uint8_t r[9] = { 0, 0, 4, F_RST, 0, (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8),
				 (uint8_t)sid };
		memcpy(burst + bl, r, 9);
		memcpy(burst + bl + 9, code, 4);
		bl += 13;
	}
	(void)cli_send(fd, burst, bl);   /* the server may close before it all went */
	CHECK_EQ(wait_goaway(fd, 3000), 0xb);
	close(fd);
	char out[256];
	CHECK_EQ(curl_h2(s.port, "/", out, sizeof out), 200);
	CHECK_EQ(curl_h2(s.port, "/stats", out, sizeof out), 200);
	int st = atoi(out);
	CHECK(st <= 60);   /* bounded by max_resets, not the 1000 sent */
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "rapid reset") != NULL);
	free(log);
}

AW_TEST(a_continuation_flood_ends_the_connection)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	uint8_t b[512];
	size_t n = hp_req(b, "GET", "/");
	CHECK_EQ(frame(fd, F_HEADERS, 0x1, 1, b, n), 0);   /* END_STREAM, no END_HEADERS */
	static uint8_t c[1000];
	size_t cl = 0;
	for (int i = 0; i < 40; i++)
		cl = hp_lit(c, "x-flood", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	int sent = 0;
	for (int i = 0; i < 10000; i++, sent++)
		if (frame(fd, F_CONT, 0, 1, c, cl))
			break;   /* the server closed */
	long g = wait_goaway(fd, 3000);
	CHECK(g == -1 || g > 0);   /* closed, or GOAWAY with an error */
	CHECK(sent < 10000 || g != -2);
	close(fd);
	char out[256];
	CHECK_EQ(curl_h2(s.port, "/", out, sizeof out), 200);
	int st = srv_stop(&s);
	char *log = srv_log(&s);
	if (st)
		fprintf(stderr, "%s\n", log);
	free(log);
	CHECK_EQ(st, 0);
}

static void flood(int port, int type)
{
	int fd = h2_open(port);
	CHECK(fd >= 0);
	/* 20000 frames that each ask for an acknowledgement, sent without
	 * reading one */
	static uint8_t buf[20000 * 17];
	size_t bl = 0;
	for (int i = 0; i < 20000; i++) {
		uint8_t h[9] = { 0, 0, (uint8_t)(type == F_PING ? 8 : 0), (uint8_t)type, 0, 0, 0, 0, 0 };
		memcpy(buf + bl, h, 9);
		bl += 9;
		if (type == F_PING) {
			memset(buf + bl, i & 0xff, 8);
			bl += 8;
		}
	}
	long long t0 = now_ms();
	(void)cli_send(fd, buf, bl);
	char out[256];
	CHECK_EQ(curl_h2(port, "/", out, sizeof out), 200);   /* others are served */
	CHECK(cli_closed(fd, 3000));                          /* the flooder is cut off */
	CHECK(now_ms() - t0 < 3000);
	close(fd);
}

AW_TEST(ping_and_settings_floods_are_cut_off)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	flood(s.port, F_PING);
	flood(s.port, F_SETTINGS);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "a flood of control frames") != NULL);
	free(log);
}

AW_TEST(shutdown_sends_goaway_and_finishes_open_streams)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(h2_get(fd, 1, "/slow?ms=800"), 0);
	usleep(200 * 1000);
	kill(s.pid, SIGTERM);
	static fr f;
	bool goaway = false, done = false;
	while (!done) {
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
		if (f.type == F_GOAWAY) {
			CHECK(f.len >= 8);
			CHECK_EQ(be32(f.p + 4), 0u);   /* NO_ERROR */
			CHECK_EQ(be32(f.p) & 0x7fffffff, 1u);   /* stream 1 still served */
			goaway = true;
		}
		if (f.sid == 1 && (f.flags & 1)) {
			CHECK(goaway);
			done = true;
		}
	}
	CHECK(cli_closed(fd, 3000));
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "\"GET /slow?ms=800 HTTP/2.0\" 200") != NULL);
	free(log);
}

AW_TEST(an_idle_connection_is_closed_at_shutdown_with_goaway)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(h2_get(fd, 1, "/"), 0);
	static fr f;
	CHECK_EQ(await_frame(fd, &f, -1, 1, 1), 0);   /* answered: END_STREAM on stream 1 */
	long long t0 = now_ms();
	kill(s.pid, SIGTERM);
	CHECK_EQ(wait_goaway(fd, 3000), 0);
	CHECK(now_ms() - t0 < 1000);
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
	free(srv_log(&s));
}

/* A client that connected (and said its preface) just before the
 * shutdown and sends its first request just after: the request is served
 * (GOAWAY names its stream), not refused with a GOAWAY naming stream 0.
 * The client connected while the server listened and would not retry. */
AW_TEST(a_connection_with_no_stream_yet_at_shutdown_gets_its_first_request_answered)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	static fr f;
	CHECK_EQ(await_frame(fd, &f, F_SETTINGS, 0, 0), 0);   /* the server serves it as HTTP/2 */
	kill(s.pid, SIGTERM);
	usleep(300 * 1000);
	CHECK_EQ(h2_get(fd, 1, "/"), 0);
	bool goaway = false, done = false;
	while (!done) {
		CHECK_EQ(next_frame(fd, &f, 3000), 0);
		if (f.type == F_GOAWAY) {
			CHECK(f.len >= 8);
			CHECK_EQ(be32(f.p + 4), 0u);              /* NO_ERROR */
			CHECK_EQ(be32(f.p) & 0x7fffffff, 1u);     /* stream 1 is served */
			goaway = true;
		}
		if (f.sid == 1 && (f.flags & 1))
			done = true;
	}
	CHECK(done);
	CHECK(goaway || wait_goaway(fd, 3000) == 0);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "\"GET / HTTP/2.0\" 200") != NULL);
	free(log);
}

/* One that never opens a stream holds the shutdown for the first-request
 * window (1 s), not the grace (5 s here): then GOAWAY naming stream 0. */
AW_TEST(a_connection_that_opens_no_stream_is_closed_after_the_first_request_window)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	static fr f;
	CHECK_EQ(await_frame(fd, &f, F_SETTINGS, 0, 0), 0);
	long long t0 = now_ms();
	kill(s.pid, SIGTERM);
	CHECK_EQ(wait_goaway(fd, 4000), 0);
	long long took = now_ms() - t0;
	CHECK(took >= 800 && took < 3000);
	CHECK(cli_closed(fd, 3000));
	close(fd);
	CHECK_EQ(srv_wait(&s), 0);
	free(srv_log(&s));
}

static aw_app *make_app_small(void)
{
	aw_app *app = make_app();
	if (app) {
		aw_app_limits(app)->body_bytes = 100000;
		aw_app_limits(app)->keepalive_idle = AW_MS(300);
	}
	return app;
}

AW_TEST(a_body_over_body_bytes_gets_413_with_or_without_content_length)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app_small), 0);
	char in[] = "/tmp/aw_h2_413_XXXXXX";
	CHECK_EQ(temp_file(in, 200000), 0);   /* the 100,000 over the limit are drained */
	char url[128], url2[128], data[64], out[4096];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/size", s.port);
	snprintf(url2, sizeof url2, "http://127.0.0.1:%d/", s.port);
	snprintf(data, sizeof data, "@%s", in);
	/* with content-length, then without (a body of unknown length);
	 * curl 7.88 stops sending at the 413 and fails a request it sends
	 * next on that connection (--next): the next one comes on its own */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "--data-binary", data, "-w", " %{http_code}",
			  url, (char *)NULL),
		 0);
	CHECK(strstr(out, "request body too large\"} 413") != NULL);
	CHECK_EQ(curl_h2(s.port, "/", out, sizeof out), 200);
	(void)url2;
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked",
			  "--data-binary", data, "-w", " %{http_code}", url, (char *)NULL),
		 0);
	CHECK(strstr(out, " 413") != NULL);
	unlink(in);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(an_idle_connection_gets_goaway_after_keepalive_idle)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app_small), 0);
	int fd = h2_open(s.port);
	CHECK(fd >= 0);
	long long t0 = now_ms();
	CHECK_EQ(wait_goaway(fd, 3000), 0);
	long long dt = now_ms() - t0;
	CHECK(dt >= 250 && dt < 2000);
	CHECK(cli_closed(fd, 2000));
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}
