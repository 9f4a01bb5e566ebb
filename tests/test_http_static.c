/* SPDX-License-Identifier: MIT */
/* Static directories (aw_app_static, issue 15): files, HEAD, validators and
 * conditional requests, ranges, directories and their index, precompressed
 * variants, and confinement to the root whatever the encoding or symlinks.
 * A server in a child process (tests/http_util.c), raw requests over real
 * sockets and curl against it. */
#include "harness.h"
#include "http_util.h"

#include <awith/middleware.h>
#include <awith/schema.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

/* The tree served, made fresh by each test (fork per test). */
static char base[64];         /* holds secret.txt and www/ */
static char www[96];
static aw_static_opts mount_opts;
static const char *mount_prefix = "/static";
static aw_time send_idle;           /* 0: the default */

#define BIG_SIZE (1024 * 1024 + 123)   /* over the in-buffer limit: sendfile */
#define MTIME 1704164645               /* Tue, 02 Jan 2024 03:04:05 GMT */

static void must(int rc)
{
	if (rc < 0)
		abort();
}

static int put_file(const char *rel, const void *data, size_t n)
{
	char p[256];
	snprintf(p, sizeof p, "%s/%s", www, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, n);
	close(fd);
	struct timespec ts[2] = { { MTIME, 0 }, { MTIME, 0 } };
	if (w != (ssize_t)n || utimensat(AT_FDCWD, p, ts, 0) != 0)
		return -1;
	return 0;
}

static unsigned char big_byte(size_t i)
{
	return (unsigned char)(i * 7 + i / 251);
}

static int make_tree(void)
{
	snprintf(base, sizeof base, "/tmp/aw-static-XXXXXX");
	if (!mkdtemp(base))
		return -1;
	snprintf(www, sizeof www, "%s/www", base);
	char p[256];
	if (mkdir(www, 0755))
		return -1;
	snprintf(p, sizeof p, "%s/secret.txt", base);
	FILE *f = fopen(p, "w");
	if (!f)
		return -1;
	fputs("secret", f);
	fclose(f);
	const char *dirs[] = { "docs", "empty", "sub" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s/%s", www, dirs[i]);
		if (mkdir(p, 0755))
			return -1;
	}
	if (put_file("hello.txt", "hello world\n", 12) || put_file("index.html", "<h1>home</h1>", 13) ||
	    put_file("docs/index.html", "<h1>docs</h1>", 13) || put_file("style.css", "body{}", 6) ||
	    put_file("app.js", "console.log('plain')", 20) || put_file("app.js.gz", "GZBYTES", 7) ||
	    put_file(".env", "SECRET=1", 8) || put_file("sub/.htpasswd", "x", 1) || put_file("zero.txt", "", 0) ||
	    put_file("a\\b.txt", "backslash", 9) || put_file("%2e%2e", "literal", 7) ||
	    put_file("image.PNG", "png", 3) || put_file("noext", "raw", 3))
		return -1;
	unsigned char *big = malloc(BIG_SIZE);
	if (!big)
		return -1;
	for (size_t i = 0; i < BIG_SIZE; i++)
		big[i] = big_byte(i);
	int rc = put_file("big.bin", big, BIG_SIZE);
	free(big);
	if (rc)
		return -1;
	struct { const char *name, *target; } links[] = {
		{ "link_in", "sub/../hello.txt" }, { "link_out", "/etc/passwd" },
		{ "link_up", "../secret.txt" },    { "link_dir_out", ".." },
	};
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof p, "%s/%s", www, links[i].name);
		if (symlink(links[i].target, p))
			return -1;
	}
	snprintf(p, sizeof p, "%s/fifo", www);
	return mkfifo(p, 0644);
}

static void remove_tree(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", base);
}

static aw_app *make_app(void)
{
	aw_app *app = NULL;
	must(aw_app_new(&app, "static"));
	aw_app_error_log(app, stderr);
	if (send_idle)
		aw_app_limits(app)->send_idle = send_idle;
	must(aw_app_static(app, mount_prefix, www, &mount_opts));
	return app;
}

/* One request "METHOD target" with extra header lines (each ending in
 * \r\n) on a fresh connection. */
static int req(int port, const char *method, const char *target, const char *headers, resp *r)
{
	char raw[2048];
	snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, target, headers ? headers : "");
	return http_once(port, raw, strlen(raw), r, NULL);
}

static bool has(const resp *r, const char *name, const char *want)
{
	char v[256];
	return resp_header(r, name, v, sizeof v) && strcmp(v, want) == 0;
}

static bool hdr_of(const resp *r, const char *name, char *out, size_t n)
{
	return resp_header(r, name, out, n);
}

/* One request (req) on a fresh connection whose status must be `status`,
 * and for CHECK_REQ_BODY whose body must be exactly `want`; the response is
 * freed. Macros, so that a failed check fails the test at the line of the
 * call and ends it there, as a CHECK written out would. */
#define CHECK_REQ_STATUS(port, method, target, headers, status)             \
	do {                                                                \
		resp r_;                                                    \
		CHECK_EQ(req(port, method, target, headers, &r_), status);  \
		resp_free(&r_);                                             \
	} while (0)
#define CHECK_REQ_BODY(port, method, target, headers, status, want)         \
	do {                                                                \
		resp r_;                                                    \
		CHECK_EQ(req(port, method, target, headers, &r_), status);  \
		CHECK_STR(r_.body, want);                                   \
		resp_free(&r_);                                             \
	} while (0)

/* The server, on a fresh tree: or the test fails. */
#define START(s)                                  \
	do {                                      \
		CHECK_EQ(make_tree(), 0);         \
		CHECK_EQ(srv_start(&(s), make_app), 0); \
	} while (0)
#define STOP(s)                                   \
	do {                                      \
		CHECK_EQ(srv_stop(&(s)), 0);      \
		remove_tree();                    \
	} while (0)

AW_TEST(a_file_is_served_with_its_type_length_and_validators)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", NULL, &r), 200);
	CHECK_STR(r.body, "hello world\n");
	CHECK(has(&r, "Content-Type", "text/plain; charset=utf-8"));
	CHECK(has(&r, "Content-Length", "12"));
	CHECK(has(&r, "Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT"));
	CHECK(has(&r, "Accept-Ranges", "bytes"));
	CHECK(has(&r, "X-Content-Type-Options", "nosniff"));
	CHECK(has(&r, "Vary", "Accept-Encoding"));
	char etag[128];
	CHECK(hdr_of(&r, "ETag", etag, sizeof etag));
	CHECK(etag[0] == '"' && etag[strlen(etag) - 1] == '"');
	resp_free(&r);
	/* Types by extension, case-insensitively; unknown: octet-stream. */
	CHECK_EQ(req(s.port, "GET", "/static/style.css", NULL, &r), 200);
	CHECK(has(&r, "Content-Type", "text/css; charset=utf-8"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/image.PNG", NULL, &r), 200);
	CHECK(has(&r, "Content-Type", "image/png"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/noext", NULL, &r), 200);
	CHECK(has(&r, "Content-Type", "application/octet-stream"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/zero.txt", NULL, &r), 200);
	CHECK(has(&r, "Content-Length", "0"));
	CHECK_EQ(r.body_len, 0);
	resp_free(&r);
	/* A symlink that stays inside is followed; a name with %xx decoded. */
	CHECK_REQ_BODY(s.port, "GET", "/static/link_in", NULL, 200, "hello world\n");
	CHECK_REQ_BODY(s.port, "GET", "/static/h%65llo.txt", NULL, 200, "hello world\n");
	CHECK_REQ_STATUS(s.port, "GET", "/static/missing.txt", NULL, 404);
	STOP(s);
}

AW_TEST(head_answers_the_headers_of_get_without_a_body)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "HEAD", "/static/big.bin", NULL, &r), 200);
	char v[64];
	snprintf(v, sizeof v, "%d", BIG_SIZE);
	CHECK(has(&r, "Content-Length", v));
	CHECK(hdr_of(&r, "ETag", v, sizeof v));
	CHECK_EQ(r.body_len, 0);
	resp_free(&r);
	/* The connection goes on: nothing of the body was sent after it. */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "HEAD /static/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, true), 0);
	CHECK_EQ(r.status, 200);
	CHECK(has(&r, "Content-Length", "12"));
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "hello world\n");
	resp_free(&r);
	close(fd);
	/* Range is for GET only: HEAD with one is a 200. */
	CHECK_REQ_STATUS(s.port, "HEAD", "/static/hello.txt", "Range: bytes=0-1\r\n", 200);
	STOP(s);
}

AW_TEST(if_none_match_and_if_modified_since_give_304)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", NULL, &r), 200);
	char etag[128], h[400];
	CHECK(hdr_of(&r, "ETag", etag, sizeof etag));
	resp_free(&r);
	snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", h, &r), 304);
	CHECK(has(&r, "ETag", etag));
	CHECK(has(&r, "Last-Modified", "Tue, 02 Jan 2024 03:04:05 GMT"));
	CHECK(!hdr_of(&r, "Content-Length", h, sizeof h) || strcmp(h, "0") == 0);
	CHECK_EQ(r.body_len, 0);
	resp_free(&r);
	/* In a list, weak, or "*": still a match (weak comparison). */
	snprintf(h, sizeof h, "If-None-Match: \"other\", W/%s\r\n", etag);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", h, 304);
	CHECK_REQ_STATUS(s.port, "HEAD", "/static/hello.txt", "If-None-Match: *\r\n", 304);
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", "If-None-Match: \"other\"\r\n", 200, "hello world\n");
	/* If-Modified-Since: the three date forms; not before the mtime. */
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Modified-Since: Tue, 02 Jan 2024 03:04:05 GMT\r\n",
			 304);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Modified-Since: Wednesday, 03-Jan-24 00:00:00 GMT\r\n",
			 304);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Modified-Since: Tue Jan  2 03:04:05 2024\r\n", 304);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Modified-Since: Tue, 02 Jan 2024 03:04:04 GMT\r\n",
			 200);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Modified-Since: yesterday\r\n", 200);
	/* If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3). */
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt",
			 "If-None-Match: \"other\"\r\nIf-Modified-Since: Tue, 02 Jan 2024 03:04:05 GMT\r\n", 200);
	/* A changed file has another ETag: the old one no longer matches. */
	CHECK_EQ(put_file("hello.txt", "hello again\n", 12), 0);
	char p[256];
	snprintf(p, sizeof p, "%s/hello.txt", www);
	struct timespec ts[2] = { { MTIME + 60, 0 }, { MTIME + 60, 0 } };
	CHECK_EQ(utimensat(AT_FDCWD, p, ts, 0), 0);
	snprintf(h, sizeof h, "If-None-Match: %s\r\n", etag);
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", h, 200, "hello again\n");
	STOP(s);
}

AW_TEST(if_match_and_if_unmodified_since_that_fail_give_412)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", NULL, &r), 200);
	char etag[128], h[400];
	CHECK(hdr_of(&r, "ETag", etag, sizeof etag));
	resp_free(&r);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Match: \"other\"\r\n", 412);
	snprintf(h, sizeof h, "If-Match: W/%s\r\n", etag);   /* strong comparison: weak never matches */
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", h, 412);
	snprintf(h, sizeof h, "If-Match: %s\r\n", etag);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", h, 200);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Unmodified-Since: Mon, 01 Jan 2024 00:00:00 GMT\r\n",
			 412);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "If-Unmodified-Since: Tue, 02 Jan 2024 03:04:05 GMT\r\n",
			 200);
	STOP(s);
}

AW_TEST(a_single_range_gives_206_with_content_range)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=0-4\r\n", &r), 206);
	CHECK_STR(r.body, "hello");
	CHECK(has(&r, "Content-Range", "bytes 0-4/12"));
	CHECK(has(&r, "Content-Length", "5"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=6-\r\n", &r), 206);
	CHECK_STR(r.body, "world\n");
	CHECK(has(&r, "Content-Range", "bytes 6-11/12"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=-3\r\n", &r), 206);
	CHECK_STR(r.body, "ld\n");
	CHECK(has(&r, "Content-Range", "bytes 9-11/12"));
	resp_free(&r);
	/* A last position beyond the end, a suffix longer than the file. */
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=10-999\r\n", &r), 206);
	CHECK_STR(r.body, "d\n");
	CHECK(has(&r, "Content-Range", "bytes 10-11/12"));
	resp_free(&r);
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", "Range: bytes=-100\r\n", 206, "hello world\n");
	/* A range in the middle of a large file: sendfile from an offset. */
	CHECK_EQ(req(s.port, "GET", "/static/big.bin", "Range: bytes=100000-999999\r\n", &r), 206);
	CHECK_EQ(r.body_len, 900000);
	bool same = true;
	for (size_t i = 0; i < r.body_len && same; i++)
		same = (unsigned char)r.body[i] == big_byte(100000 + i);
	CHECK(same);
	CHECK(has(&r, "Content-Range", "bytes 100000-999999/1048699"));
	resp_free(&r);
	STOP(s);
}

AW_TEST(a_range_that_cannot_be_satisfied_gives_416)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=12-\r\n", &r), 416);
	CHECK(has(&r, "Content-Range", "bytes */12"));
	resp_free(&r);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt", "Range: bytes=-0\r\n", 416);
	CHECK_EQ(req(s.port, "GET", "/static/zero.txt", "Range: bytes=0-\r\n", &r), 416);
	CHECK(has(&r, "Content-Range", "bytes */0"));
	resp_free(&r);
	STOP(s);
}

AW_TEST(several_or_malformed_ranges_give_the_whole_file)
{
	srv s;
	START(s);
	resp r;
	const char *ranges[] = {
		"Range: bytes=0-1,4-5\r\n", "Range: bytes=5-2\r\n", "Range: lines=0-1\r\n",
		"Range: bytes=abc\r\n",     "Range: bytes=-\r\n",   "Range: bytes=99999999999999999999999-\r\n",
	};
	for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
		CHECK_EQ(req(s.port, "GET", "/static/hello.txt", ranges[i], &r), 200);
		CHECK_STR(r.body, "hello world\n");
		CHECK(!hdr_of(&r, "Content-Range", (char[8]){ 0 }, 8));
		resp_free(&r);
	}
	STOP(s);
}

AW_TEST(if_range_that_does_not_match_gives_the_whole_file)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", NULL, &r), 200);
	char etag[128], h[400];
	CHECK(hdr_of(&r, "ETag", etag, sizeof etag));
	resp_free(&r);
	snprintf(h, sizeof h, "Range: bytes=0-4\r\nIf-Range: %s\r\n", etag);
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", h, 206, "hello");
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", "Range: bytes=0-4\r\nIf-Range: \"old\"\r\n",
			 200, "hello world\n");
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt",
			 "Range: bytes=0-4\r\nIf-Range: Tue, 02 Jan 2024 03:04:05 GMT\r\n", 206);
	CHECK_REQ_STATUS(s.port, "GET", "/static/hello.txt",
			 "Range: bytes=0-4\r\nIf-Range: Tue, 02 Jan 2024 03:04:06 GMT\r\n", 200);
	STOP(s);
}

AW_TEST(a_large_file_is_sent_whole_and_the_connection_goes_on)
{
	srv s;
	START(s);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	/* Pipelined: small, large, small: answered in order. */
	CHECK_EQ(cli_sends(fd, "GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /static/style.css HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "hello world\n");
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(r.body_len, BIG_SIZE);
	bool same = true;
	for (size_t i = 0; i < r.body_len && same; i++)
		same = (unsigned char)r.body[i] == big_byte(i);
	CHECK(same);
	CHECK(has(&r, "Content-Type", "application/octet-stream"));
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_STR(r.body, "body{}");
	resp_free(&r);
	close(fd);
	STOP(s);
}

AW_TEST(a_directory_serves_its_index_and_one_named_without_slash_is_redirected)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/", NULL, &r), 200);
	CHECK_STR(r.body, "<h1>home</h1>");
	CHECK(has(&r, "Content-Type", "text/html; charset=utf-8"));
	resp_free(&r);
	CHECK_REQ_BODY(s.port, "GET", "/static/docs/", NULL, 200, "<h1>docs</h1>");
	CHECK_EQ(req(s.port, "GET", "/static/docs?x=1", NULL, &r), 301);
	CHECK(has(&r, "Location", "/static/docs/?x=1"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static", NULL, &r), 301);
	CHECK(has(&r, "Location", "/static/"));
	resp_free(&r);
	/* No listing by default: a directory without index.html is a 404. */
	CHECK_EQ(req(s.port, "GET", "/static/empty/", NULL, &r), 404);
	CHECK(strstr(r.body, "hello") == NULL);
	resp_free(&r);
	/* Other methods: 405 with Allow. */
	CHECK_EQ(req(s.port, "POST", "/static/hello.txt", "Content-Length: 0\r\n", &r), 405);
	char allow[64];
	CHECK(hdr_of(&r, "Allow", allow, sizeof allow));
	CHECK(strstr(allow, "GET") && strstr(allow, "HEAD"));
	resp_free(&r);
	STOP(s);
}

AW_TEST(a_directory_without_an_index_option_is_404)
{
	mount_opts = (aw_static_opts){ .index = "" };
	srv s;
	START(s);
	CHECK_REQ_STATUS(s.port, "GET", "/static/docs/", NULL, 404);
	CHECK_REQ_STATUS(s.port, "GET", "/static/docs/index.html", NULL, 200);
	STOP(s);
}

AW_TEST(the_gz_variant_is_served_when_the_client_accepts_gzip)
{
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/app.js", "Accept-Encoding: gzip, deflate, br\r\n", &r), 200);
	CHECK_STR(r.body, "GZBYTES");
	CHECK(has(&r, "Content-Encoding", "gzip"));
	CHECK(has(&r, "Content-Type", "text/javascript; charset=utf-8"));
	CHECK(has(&r, "Vary", "Accept-Encoding"));
	char gztag[128], tag[128];
	CHECK(hdr_of(&r, "ETag", gztag, sizeof gztag));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/app.js", NULL, &r), 200);
	CHECK_STR(r.body, "console.log('plain')");
	CHECK(!hdr_of(&r, "Content-Encoding", tag, sizeof tag));
	CHECK(has(&r, "Vary", "Accept-Encoding"));
	CHECK(hdr_of(&r, "ETag", tag, sizeof tag));
	CHECK(strcmp(tag, gztag) != 0);   /* two representations, two tags */
	resp_free(&r);
	const char *refusing[] = { "Accept-Encoding: gzip;q=0, deflate\r\n", "Accept-Encoding: br\r\n",
				   "Accept-Encoding: *;q=1, gzip;q=0.000\r\n", "Accept-Encoding: identity\r\n" };
	for (size_t i = 0; i < 4; i++) {
		CHECK_REQ_BODY(s.port, "GET", "/static/app.js", refusing[i], 200, "console.log('plain')");
	}
	CHECK_REQ_BODY(s.port, "GET", "/static/app.js", "Accept-Encoding: *\r\n", 200, "GZBYTES");
	CHECK_REQ_BODY(s.port, "GET", "/static/app.js", "Accept-Encoding: GZIP;q=0.5\r\n", 200, "GZBYTES");
	/* No variant next to it: the file itself. */
	CHECK_REQ_BODY(s.port, "GET", "/static/hello.txt", "Accept-Encoding: gzip\r\n", 200, "hello world\n");
	STOP(s);
}

AW_TEST(the_gz_variant_is_not_served_when_precompressed_is_off)
{
	mount_opts = (aw_static_opts){ .no_precompressed = true, .cache_control = "public, max-age=60" };
	srv s;
	START(s);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/app.js", "Accept-Encoding: gzip\r\n", &r), 200);
	CHECK_STR(r.body, "console.log('plain')");
	char v[64];
	CHECK(!hdr_of(&r, "Vary", v, sizeof v));
	CHECK(has(&r, "Cache-Control", "public, max-age=60"));
	resp_free(&r);
	STOP(s);
}

/* GET /static/<enc>: the status; the body must not hold `leak`. */
static int get_no_leak(int port, const char *enc, const char *leak)
{
	char target[512];
	snprintf(target, sizeof target, "/static/%s", enc);
	resp r;
	int st = req(port, "GET", target, NULL, &r);
	if (st > 0) {
		if (r.body && strstr(r.body, leak))
			st = -2;
		resp_free(&r);
	}
	return st;
}

AW_TEST(nothing_outside_the_root_is_served_whatever_the_encoding)
{
	srv s;
	START(s);
	/* Dot-dot, plain and encoded in every way a client can. */
	CHECK_EQ(get_no_leak(s.port, "../secret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "%2e%2e/secret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "%2E%2E%2Fsecret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "sub/%2e%2e/%2e%2e/secret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "..%2f..%2f..%2fetc%2fpasswd", "root:"), 404);
	CHECK_EQ(get_no_leak(s.port, "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd", "root:"), 404);
	/* Double encoding decodes once: a name with '%' in it. */
	CHECK_EQ(get_no_leak(s.port, "%252e%252e/secret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "%252e%252e", "secret"), 200);   /* the file named "%2e%2e" */
	/* Absolute paths, from "//" or an encoded slash. */
	CHECK_EQ(get_no_leak(s.port, "/etc/passwd", "root:"), 404);
	CHECK_EQ(get_no_leak(s.port, "%2fetc%2fpasswd", "root:"), 404);
	/* NUL: the router's 400, before the handler. */
	CHECK_EQ(get_no_leak(s.port, "hello.txt%00.png", "hello"), 400);
	CHECK_EQ(get_no_leak(s.port, "%00", "hello"), 400);
	/* Backslashes are not separators on Linux: names, never a way up. */
	CHECK_EQ(get_no_leak(s.port, "..%5csecret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "..\\secret.txt", "secret"), 404);
	CHECK_EQ(get_no_leak(s.port, "a%5cb.txt", "secret"), 200);
	/* Symlinks that lead out: refused (403), logged. */
	CHECK_EQ(get_no_leak(s.port, "link_out", "root:"), 403);
	CHECK_EQ(get_no_leak(s.port, "link_up", "secret"), 403);
	CHECK_EQ(get_no_leak(s.port, "link_dir_out/secret.txt", "secret"), 403);
	CHECK_EQ(get_no_leak(s.port, "link_dir_out/", "secret"), 403);
	/* Not regular files: 404. */
	CHECK_EQ(get_no_leak(s.port, "fifo", "x"), 404);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "link_out under") && strstr(log, "a symlink leads out of the root"));
	free(log);
	remove_tree();
}

AW_TEST(names_starting_with_a_dot_are_hidden_unless_allowed)
{
	srv s;
	START(s);
	CHECK_EQ(get_no_leak(s.port, ".env", "SECRET"), 404);
	CHECK_EQ(get_no_leak(s.port, "%2eenv", "SECRET"), 404);
	CHECK_EQ(get_no_leak(s.port, "sub/.htpasswd", "x"), 404);
	STOP(s);
	mount_opts = (aw_static_opts){ .dotfiles = true };
	START(s);
	CHECK_REQ_BODY(s.port, "GET", "/static/.env", NULL, 200, "SECRET=1");
	STOP(s);
}

AW_TEST(a_mount_at_the_root_serves_the_index_at_slash)
{
	mount_prefix = "/";
	srv s;
	START(s);
	CHECK_REQ_BODY(s.port, "GET", "/", NULL, 200, "<h1>home</h1>");
	CHECK_REQ_BODY(s.port, "GET", "/docs/", NULL, 200, "<h1>docs</h1>");
	CHECK_REQ_STATUS(s.port, "GET", "/%2e%2e/secret.txt", NULL, 404);
	STOP(s);
}

/* Routes of the app and the mount side by side. */
static int h_special(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	return aw_http_text(res, 200, "a route of its own");
}

static int h_rest(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *p = aw_http_param(req, "p");
	char out[300];
	snprintf(out, sizeof out, "[%s]", p ? p : "(none)");
	return aw_http_text(res, 200, out);
}

static aw_app *make_routes_app(void)
{
	aw_app *app = make_app();
	must(aw_app_route(app, "GET", "/static/special.txt", h_special, NULL));
	must(aw_app_route(app, "GET", "/files/{p...}", h_rest, NULL));
	must(aw_app_route(app, "GET", "/files/{p...}/x", h_rest, NULL) == -EINVAL ? 0 : -1);
	aw_error_clear();
	return app;
}

AW_TEST(a_rest_template_takes_the_rest_of_the_path_and_literal_routes_win)
{
	CHECK_EQ(make_tree(), 0);
	srv s;
	CHECK_EQ(srv_start(&s, make_routes_app), 0);
	CHECK_REQ_BODY(s.port, "GET", "/static/special.txt", NULL, 200, "a route of its own");
	CHECK_REQ_BODY(s.port, "GET", "/files/a/b%2Fc/d.txt", NULL, 200, "[a/b/c/d.txt]");
	CHECK_REQ_BODY(s.port, "GET", "/files/", NULL, 200, "[]");
	CHECK_REQ_STATUS(s.port, "GET", "/files", NULL, 404);
	CHECK_EQ(srv_stop(&s), 0);
	remove_tree();
}

AW_TEST(mounting_checks_the_prefix_and_the_directory)
{
	CHECK_EQ(make_tree(), 0);
	aw_app *app = NULL;
	CHECK_EQ(aw_app_new(&app, "m"), 0);
	CHECK_EQ(aw_app_static(app, "static", www, NULL), -EINVAL);
	CHECK_EQ(aw_app_static(app, "/static/", www, NULL), -EINVAL);
	CHECK_EQ(aw_app_static(app, "/st{x}", www, NULL), -EINVAL);
	CHECK_EQ(aw_app_static(app, "/a//b", www, NULL), -EINVAL);
	CHECK_EQ(aw_app_static(app, "/static", "/nonexistent-dir-xyz", NULL), -ENOENT);
	char p[256];
	snprintf(p, sizeof p, "%s/hello.txt", www);
	CHECK_EQ(aw_app_static(app, "/static", p, NULL), -ENOTDIR);
	CHECK_EQ(aw_app_static(app, "/static", www, &(aw_static_opts){ .index = "../x" }), -EINVAL);
	CHECK_EQ(aw_app_static(app, "/static", www, NULL), 0);
	CHECK_EQ(aw_app_static(app, "/static", www, NULL), -EEXIST);
	CHECK_EQ(aw_app_static(app, "/other", www, NULL), 0);
	aw_error_clear();
	aw_app_free(app);
	remove_tree();
}

AW_TEST(curl_downloads_resumes_revalidates_and_decompresses)
{
	srv s;
	START(s);
	/* A real gzip variant for --compressed. */
	char cmd[512];
	snprintf(cmd, sizeof cmd, "printf 'compressed text' > '%s/c.txt' && printf 'compressed text, gz' | gzip -c > '%s/c.txt.gz'",
		 www, www);
	CHECK_EQ(system(cmd), 0);
	char url[128], out[8192];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/static/hello.txt", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-sf", url, NULL), 0);
	CHECK_STR(out, "hello world\n");
	CHECK_EQ(run_curl(out, sizeof out, "-sf", "-r", "6-10", url, NULL), 0);
	CHECK_STR(out, "world");
	/* -z: only if newer than the date; the file is not: 304, no body. */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-z",
			  "Tue, 02 Jan 2024 03:04:05 GMT", url, NULL), 0);
	CHECK_STR(out, "304");
	/* Resume a partial download (-C): the rest of the big file. */
	char part[256];
	snprintf(part, sizeof part, "%s/part.bin", base);
	unsigned char head[1000];
	for (size_t i = 0; i < sizeof head; i++)
		head[i] = big_byte(i);
	FILE *f = fopen(part, "w");
	CHECK(f != NULL);
	CHECK_EQ(fwrite(head, 1, sizeof head, f), sizeof head);
	fclose(f);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/static/big.bin", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-sf", "-C", "-", "-o", part, url, NULL), 0);
	struct stat st;
	CHECK_EQ(stat(part, &st), 0);
	CHECK_EQ(st.st_size, BIG_SIZE);
	snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s/big.bin'", part, www);
	CHECK_EQ(system(cmd), 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/static/c.txt", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-sf", "--compressed", url, NULL), 0);
	CHECK_STR(out, "compressed text, gz");
	CHECK_EQ(run_curl(out, sizeof out, "-sf", url, NULL), 0);
	CHECK_STR(out, "compressed text");
	STOP(s);
}

AW_TEST(a_listing_when_asked_shows_the_names_escaped_and_hides_dotfiles)
{
	mount_opts = (aw_static_opts){ .listing = true };
	srv s;
	START(s);
	char p[256];
	snprintf(p, sizeof p, "%s/empty/<b>&\"x\".txt", www);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	fclose(f);
	snprintf(p, sizeof p, "%s/empty/sub dir", www);
	CHECK_EQ(mkdir(p, 0755), 0);
	snprintf(p, sizeof p, "%s/empty/.hidden", www);
	f = fopen(p, "w");
	CHECK(f != NULL);
	fclose(f);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/static/empty/", NULL, &r), 200);
	CHECK(has(&r, "Content-Type", "text/html; charset=utf-8"));
	CHECK(has(&r, "Cache-Control", "no-cache"));
	CHECK(strstr(r.body, "<title>Index of /static/empty/</title>") != NULL);
	CHECK(strstr(r.body, "<a href=\"%3Cb%3E%26%22x%22.txt\">&lt;b&gt;&amp;&quot;x&quot;.txt</a>") != NULL);
	CHECK(strstr(r.body, "<a href=\"sub%20dir/\">sub dir/</a>") != NULL);
	CHECK(strstr(r.body, "hidden") == NULL);
	CHECK(strstr(r.body, "<b>") == NULL);   /* nothing of a name is markup */
	resp_free(&r);
	/* A directory with an index still serves the index. */
	CHECK_REQ_BODY(s.port, "GET", "/static/docs/", NULL, 200, "<h1>docs</h1>");
	/* Confinement holds for listings too. */
	CHECK_REQ_STATUS(s.port, "GET", "/static/link_dir_out/", NULL, 403);
	CHECK_REQ_STATUS(s.port, "GET", "/static/%2e%2e/", NULL, 404);
	STOP(s);
}

#define HUGE_SIZE (12 * 1024 * 1024)   /* more than the socket buffers hold */

/* A client with a small receive buffer. */
static int slow_client(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int small = 16 * 1024;
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

AW_TEST(a_slow_reader_gets_the_whole_file_and_one_that_stops_reading_is_cut_off)
{
	send_idle = AW_MS(300);
	srv s;
	START(s);
	char p[256];
	snprintf(p, sizeof p, "%s/huge.bin", www);
	int hf = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	CHECK(hf >= 0);
	CHECK_EQ(ftruncate(hf, HUGE_SIZE), 0);
	close(hf);
	/* Slow but steady (a 16 KiB window, a pause after each read): 12 MiB
	 * in a second or more, several times send_idle. */
	int fd = slow_client(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	static char buf[256 * 1024];
	size_t total = 0;
	long long t0 = now_ms();
	while (total < (size_t)HUGE_SIZE + 100) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n <= 0)
			break;
		total += (size_t)n;
		usleep(1500);
	}
	long long took = now_ms() - t0;
	CHECK_GT(took, 600);                       /* it was slow indeed */
	CHECK_GT(total, (size_t)HUGE_SIZE);        /* and got everything (+ the head) */
	CHECK_LT(total, (size_t)HUGE_SIZE + 1024);
	close(fd);
	/* One that stops reading: cut off once send_idle passes without progress. */
	fd = slow_client(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	usleep(1500 * 1000);
	size_t got = 0;
	char *all = cli_read_all(fd, &got, 3000);
	free(all);
	CHECK_LT(got, (size_t)HUGE_SIZE);
	close(fd);
	STOP(s);
}

static aw_app *make_openapi_app(void)
{
	aw_app *app = make_routes_app();
	must(aw_app_openapi(app, NULL));
	return app;
}

AW_TEST(static_mounts_stay_out_of_the_openapi_document_and_rest_templates_are_plain_parameters)
{
	CHECK_EQ(make_tree(), 0);
	srv s;
	CHECK_EQ(srv_start(&s, make_openapi_app), 0);
	resp r;
	CHECK_EQ(req(s.port, "GET", "/openapi.json", NULL, &r), 200);
	CHECK(strstr(r.body, "\"/files/{p}\"") != NULL);
	CHECK(strstr(r.body, "...") == NULL);
	CHECK(strstr(r.body, "\"/static/{path}\"") == NULL && strstr(r.body, "\"/static\"") == NULL);
	CHECK(strstr(r.body, "\"/static/special.txt\"") != NULL);   /* an app route under the prefix is one */
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	remove_tree();
}

static aw_app *make_mw_app(void)
{
	aw_app *app = make_app();
	static const char *const any[] = { "*", NULL };
	aw_http_mw *id, *cors, *gz;
	must(aw_http_mw_request_id(&id, NULL));
	must(aw_app_use(app, id));
	must(aw_http_mw_cors(&cors, &(aw_http_cors_opts){ .origins = any }));
	must(aw_app_use(app, cors));
	must(aw_http_mw_gzip(&gz, NULL));
	must(aw_app_use(app, gz));
	return app;
}

AW_TEST(static_files_pass_through_the_middleware_stack)
{
	CHECK_EQ(make_tree(), 0);
	srv s;
	CHECK_EQ(srv_start(&s, make_mw_app), 0);
	resp r;
	/* A small file: CORS and the request id on it, the body as is (gzip
	 * leaves a file the handler wrote itself alone). */
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Origin: http://x.example\r\nX-Request-ID: st-1\r\n"
						     "Accept-Encoding: gzip\r\n", &r), 200);
	CHECK_STR(r.body, "hello world\n");
	CHECK(has(&r, "X-Request-ID", "st-1"));
	CHECK(has(&r, "Access-Control-Allow-Origin", "*"));
	char etag[128], h[300];
	CHECK(hdr_of(&r, "ETag", etag, sizeof etag));
	resp_free(&r);
	/* A precompressed variant keeps its one Content-Encoding. */
	CHECK_EQ(req(s.port, "GET", "/static/app.js", "Accept-Encoding: gzip\r\n", &r), 200);
	CHECK_STR(r.body, "GZBYTES");
	CHECK(has(&r, "Content-Encoding", "gzip"));
	resp_free(&r);
	/* The held short answers: 304, 416, 404, 301. */
	snprintf(h, sizeof h, "If-None-Match: %s\r\nX-Request-ID: st-2\r\n", etag);
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", h, &r), 304);
	CHECK(has(&r, "ETag", etag) && has(&r, "X-Request-ID", "st-2"));
	resp_free(&r);
	CHECK_EQ(req(s.port, "GET", "/static/hello.txt", "Range: bytes=50-\r\n", &r), 416);
	CHECK(has(&r, "Content-Range", "bytes */12"));
	resp_free(&r);
	CHECK_REQ_STATUS(s.port, "GET", "/static/missing", NULL, 404);
	CHECK_EQ(req(s.port, "GET", "/static/docs", NULL, &r), 301);
	CHECK(has(&r, "Location", "/static/docs/"));
	resp_free(&r);
	/* A large file by sendfile and a range of it, then the connection goes on. */
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /static/big.bin HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
			       "GET /static/big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-10\r\n\r\n"), 0);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_EQ(r.body_len, BIG_SIZE);
	CHECK((unsigned char)r.body[BIG_SIZE - 1] == big_byte(BIG_SIZE - 1));
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 206);
	CHECK_EQ(r.body_len, 10);
	resp_free(&r);
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	remove_tree();
}
