/* SPDX-License-Identifier: MIT */
/* Response trailers (aw_http_declare_trailer, aw_http_set_trailer):
 * HTTP/1.1 chunked trailer sections read from a raw socket and by curl,
 * HTTP/2 trailing HEADERS frames seen by nghttp -v and curl
 * --http2-prior-knowledge, the checks on names and values, the cases where
 * a trailer cannot be sent (-AW_EHTTP_TRAILER), and a body cut short that
 * never ends cleanly with its trailers. The server runs in a child
 * (tests/http_util.c). */
#include "harness.h"
#include "http_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the app ---------------------------------------------------------------- */

static const char *const parts[] = { "alpha ", "beta ", "gamma" };
#define BODY "alpha beta gamma"

static uint32_t fnv(uint32_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

typedef struct sum_gen {
	aw_http_response *res;
	int fail_at;   /* the part before which the source fails (-1: never) */
} sum_gen;

/* Yields the parts, hashing them, then sets the checksum and a gRPC-style
 * status as trailers: what is known only at the end of the body. */
static int gen_sum(aw_gen *g, void *arg)
{
	sum_gen *sg = arg;
	uint32_t h = 2166136261u;
	for (int i = 0; i < 3; i++) {
		if (i == sg->fail_at) {
			/* Set, then fail: the trailers must not go out. The
			 * pause lets what was yielded leave first, so that the
			 * client has seen the body start. */
			if (aw_sleep(AW_MS(100)))
				return aw_error_pending();
			if (aw_http_set_trailer(sg->res, "grpc-status", "0"))
				return aw_error_pending();
			return aw_raise(-EIO, "the body's source failed");
		}
		aw_chunk ch = { parts[i], strlen(parts[i]), 0 };
		h = fnv(h, parts[i], strlen(parts[i]));
		int rc = aw_gen_yield(g, &ch);
		if (rc)
			return rc;
	}
	/* After the head: an undeclared field is refused. */
	int late = aw_http_set_trailer(sg->res, "X-Undeclared", "1");
	aw_error_clear();
	char v[64];
	snprintf(v, sizeof v, "undeclared=%d", late);
	int rc = aw_http_set_trailer(sg->res, "X-Checks", v);
	if (rc)
		return rc;
	snprintf(v, sizeof v, "%08x", h);
	rc = aw_http_set_trailer(sg->res, "X-Checksum", v);
	if (!rc)
		rc = aw_http_set_trailer(sg->res, "grpc-status", "0");
	return rc;
}

static int stream_with(aw_http_request *req, aw_http_response *res, int fail_at)
{
	int rc = aw_http_declare_trailer(res, "X-Checksum");
	if (!rc)
		rc = aw_http_declare_trailer(res, "grpc-status");
	if (!rc)
		rc = aw_http_declare_trailer(res, "X-Checks");
	/* Set before the response starts: declared by setting it. */
	if (!rc)
		rc = aw_http_set_trailer(res, "X-TE-Trailers", aw_http_accepts_trailers(req) ? "yes" : "no");
	if (rc)
		return rc;
	sum_gen sg = { res, fail_at };
	aw_gen_iter gi;
	return aw_http_stream(res, 200, "text/plain", aw_gen_iter_init(&gi, "sum", gen_sum, &sg));
}

static int h_stream(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return stream_with(req, res, -1);
}

static int h_fail(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return stream_with(req, res, 1);
}

/* A complete response with a trailer. */
static int h_send(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_http_set_trailer(res, "X-Sum", "42");
	if (rc)
		return rc;
	return aw_http_text(res, 200, "whole body");
}

/* A complete response with a trailer, then a failure: the error's answer
 * replaces it, without the trailer. */
static int h_sendfail(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_http_set_trailer(res, "X-Sum", "42");
	if (!rc)
		rc = aw_http_text(res, 200, "whole body");
	if (rc)
		return rc;
	return aw_raise(-EIO, "failed after the answer");
}

/* Setting a trailer after a complete response was sent: -EALREADY (else
 * 500: the response is replaced while none of it has left). */
static int h_late(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_http_text(res, 200, "late");
	if (rc)
		return rc;
	rc = aw_http_set_trailer(res, "X-Late", "1");
	if (rc != -EALREADY)
		return aw_raise(-EIO, "set after the send: %d", rc);
	aw_error_clear();
	return 0;
}

/* Bad names and values: the codes as text. */
static int h_bad(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	const char *names[] = { "Content-Length", "transfer-encoding", "Host", "Trailer", "Set-Cookie",
				"Bad Name", "X-A\r\nX-B", "", NULL };
	char out[1024];
	size_t n = 0;
	for (int i = 0; names[i]; i++) {
		n += (size_t)snprintf(out + n, sizeof out - n, "%d ", aw_http_declare_trailer(res, names[i]));
		aw_error_clear();
	}
	n += (size_t)snprintf(out + n, sizeof out - n, "%d ", aw_http_set_trailer(res, "X-Ok", "a\r\nInjected: 1"));
	aw_error_clear();
	n += (size_t)snprintf(out + n, sizeof out - n, "%d ", aw_http_set_trailer(res, "X-Ok", "a\nb"));
	aw_error_clear();
	/* 16 fields, then one more */
	int rc = 0;
	for (int i = 0; i < 16 && !rc; i++) {
		char nm[16];
		snprintf(nm, sizeof nm, "X-%d", i);
		rc = aw_http_declare_trailer(res, nm);
	}
	n += (size_t)snprintf(out + n, sizeof out - n, "%d ", rc);
	n += (size_t)snprintf(out + n, sizeof out - n, "%d ", aw_http_declare_trailer(res, "X-16"));
	aw_error_clear();
	n += (size_t)snprintf(out + n, sizeof out - n, "%d ", aw_http_declare_trailer(res, "x-3"));   /* same field */
	static char big[9000];
	memset(big, 'v', sizeof big - 1);
	n += (size_t)snprintf(out + n, sizeof out - n, "%d", aw_http_set_trailer(res, "X-0", big));
	aw_error_clear();
	/* X-0..X-15 are declared, none set: the answer goes chunked with an
	 * empty trailer section. */
	return aw_http_send(res, 200, "text/plain", out, n);
}

/* Declared trailers and a file (sent with its Content-Length). */
static int h_file(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_http_declare_trailer(res, "X-Checksum");
	if (rc)
		return rc;
	return aw_http_file(res, "/etc/passwd", "text/plain");
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "trailers") < 0)
		return NULL;
	if (aw_app_route(app, "GET", "/stream", h_stream, NULL) || aw_app_route(app, "GET", "/fail", h_fail, NULL) ||
	    aw_app_route(app, "GET", "/send", h_send, NULL) || aw_app_route(app, "GET", "/late", h_late, NULL) ||
	    aw_app_route(app, "GET", "/bad", h_bad, NULL) || aw_app_route(app, "GET", "/file", h_file, NULL) ||
	    aw_app_route(app, "GET", "/sendfail", h_sendfail, NULL))
		return NULL;
	return app;
}

/* ---- helpers -------------------------------------------------------------------- */

/* One raw request; everything the server sends until it closes. */
static char *raw(int port, const char *req, size_t *len)
{
	int fd = cli_connect(port);
	if (fd < 0)
		return NULL;
	if (cli_sends(fd, req)) {
		close(fd);
		return NULL;
	}
	char *all = cli_read_all(fd, len, 5000);
	close(fd);
	return all;
}

static char *checksum_hex(char *out)
{
	sprintf(out, "%08x", fnv(2166136261u, BODY, strlen(BODY)));
	return out;
}

/* ---- HTTP/1.1 -------------------------------------------------------------------- */

AW_TEST(h1_streamed_body_ends_with_its_trailers_after_the_last_chunk)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	size_t len;
	char *all = raw(s.port, "GET /stream HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "HTTP/1.1 200 OK\r\n") == all);
	CHECK(strstr(all, "\r\nTransfer-Encoding: chunked\r\n") != NULL);
	CHECK(strstr(all, "\r\nTrailer: X-Checksum, grpc-status, X-Checks, X-TE-Trailers\r\n") != NULL);
	char sum[16], want[512];
	snprintf(want, sizeof want,
		 "\r\n\r\n6\r\nalpha \r\n5\r\nbeta \r\n5\r\ngamma\r\n0\r\nX-Checksum: %s\r\ngrpc-status: 0\r\n"
		 "X-Checks: undeclared=%d\r\nX-TE-Trailers: yes\r\n\r\n",
		 checksum_hex(sum), -AW_EHTTP_TRAILER);
	char *body = strstr(all, "\r\n\r\n");
	CHECK(body != NULL);
	CHECK_STR(body, want);   /* and nothing after: the message ends there */
	free(all);
	/* Without TE: trailers they are sent all the same (RFC 9110 6.5.1),
	 * and the handler can tell. */
	all = raw(s.port, "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "\r\nX-TE-Trailers: no\r\n\r\n") != NULL);
	CHECK(strstr(all, "\r\ngrpc-status: 0\r\n") != NULL);
	free(all);
	/* TE with other codings and parameters around it */
	all = raw(s.port, "GET /stream HTTP/1.1\r\nHost: x\r\nTE: gzip;q=0.5, trailers\r\nConnection: close\r\n\r\n",
		  &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "\r\nX-TE-Trailers: yes\r\n\r\n") != NULL);
	free(all);
	all = raw(s.port, "GET /stream HTTP/1.1\r\nHost: x\r\nTE: trailersx\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "\r\nX-TE-Trailers: no\r\n\r\n") != NULL);
	free(all);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(h1_connection_stays_usable_after_a_trailer_section)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	/* Pipelined: the framing must end exactly where the next response starts. */
	CHECK_EQ(cli_sends(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /send HTTP/1.1\r\nHost: x\r\n\r\n"
			       "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"),
		 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.chunked);
	CHECK_STR(r.body, BODY);
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK(r.chunked);   /* a complete response with trailers goes chunked */
	char v[64];
	CHECK(resp_header(&r, "Trailer", v, sizeof v));
	CHECK_STR(v, "X-Sum");
	CHECK(!resp_header(&r, "Content-Length", v, sizeof v));
	CHECK_STR(r.body, "whole body");
	resp_free(&r);
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(r.body, BODY);
	resp_free(&r);
	close(fd);
	/* the complete response's bytes */
	size_t len;
	char *all = raw(s.port, "GET /send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	char *body = strstr(all, "\r\n\r\n");
	CHECK(body != NULL);
	CHECK_STR(body, "\r\n\r\na\r\nwhole body\r\n0\r\nX-Sum: 42\r\n\r\n");
	free(all);
	/* HEAD: no body, no trailers, the length as GET's would be without them */
	all = raw(s.port, "HEAD /send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "X-Sum") == NULL);
	CHECK(strstr(all, "\r\n\r\n")[4] == 0);
	free(all);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(curl_reads_h1_trailers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[8192], sum[16], want[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/stream", s.port);
	/* -D -: curl hands trailer fields to its header output after the body's */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http1.1", "-D", "-", "-o", "/dev/null", url, (char *)NULL), 0);
	CHECK(strstr(out, "Trailer: X-Checksum, grpc-status") != NULL);
	snprintf(want, sizeof want, "X-Checksum: %s\r\n", checksum_hex(sum));
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "grpc-status: 0\r\n") != NULL);
	CHECK(strstr(out, want) > strstr(out, "Trailer:"));
	/* the body as curl decodes it */
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http1.1", url, (char *)NULL), 0);
	CHECK_STR(out, BODY);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(h1_body_cut_short_closes_without_the_last_chunk_or_trailers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	/* keep-alive asked for: only the close tells the body is cut short */
	CHECK_EQ(cli_sends(fd, "GET /fail HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n"), 0);
	size_t len;
	char *all = cli_read_all(fd, &len, 5000);
	close(fd);
	CHECK(all != NULL);
	char *body = strstr(all, "\r\n\r\n");
	CHECK(body != NULL);
	CHECK_STR(body, "\r\n\r\n6\r\nalpha \r\n");   /* then EOF: no "0\r\n", no grpc-status */
	free(all);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(bad_trailer_names_and_values_are_refused_with_distinct_codes)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	bool closed;
	const char req[] = "GET /bad HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, req, sizeof req - 1, &r, &closed), 200);
	char want[256];
	int T = -AW_EHTTP_TRAILER, I = -EINVAL;
	/* framing, routing, metadata fields: the trailer code; malformed
	 * names and values: -EINVAL; 16 fields fine, a 17th over the limit,
	 * the same name again is no new field; a value over 8 KiB refused */
	snprintf(want, sizeof want, "%d %d %d %d %d %d %d %d %d %d %d %d %d %d", T, T, T, T, T, I, I, I, I, I, 0, T, 0,
		 T);
	CHECK_STR(r.body, want);
	resp_free(&r);
	CHECK(strcmp(aw_strerror(-AW_EHTTP_TRAILER), "trailer cannot be sent") == 0);
	/* after a complete response was sent: -EALREADY (checked in the handler) */
	const char late[] = "GET /late HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, late, sizeof late - 1, &r, &closed), 200);
	CHECK_STR(r.body, "late");
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_trailer_that_cannot_be_sent_is_an_error_not_dropped)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	bool closed;
	/* HTTP/1.0: no chunked coding to carry them */
	const char r10[] = "GET /stream HTTP/1.0\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, r10, sizeof r10 - 1, &r, &closed), 500);
	CHECK(strstr(r.body, "alpha") == NULL);
	resp_free(&r);
	/* a response framed by its Content-Length */
	const char rf[] = "GET /file HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(http_once(s.port, rf, sizeof rf - 1, &r, &closed), 500);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "HTTP/1.0 response cannot carry trailers") != NULL);
	CHECK(strstr(log, "Content-Length cannot carry the declared trailers") != NULL);
	free(log);
}

AW_TEST(h1_an_error_after_a_complete_response_replaces_it_without_its_trailers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	size_t len;
	char *all = raw(s.port, "GET /sendfail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &len);
	CHECK(all != NULL);
	CHECK(strstr(all, "HTTP/1.1 500 ") == all);
	CHECK(strstr(all, "X-Sum") == NULL);
	CHECK(strstr(all, "Trailer:") == NULL);
	CHECK(strstr(all, "whole body") == NULL);
	CHECK(strstr(all, "\r\nContent-Length: ") != NULL);
	free(all);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

/* ---- HTTP/2 --------------------------------------------------------------------- */

AW_TEST(h2_trailers_are_a_final_headers_frame_seen_by_nghttp)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[16384], sum[16], want[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/stream", s.port);
	const char *argv[] = { "/usr/bin/nghttp", "-v", url, NULL };
	CHECK_EQ(run_cmd(out, sizeof out, argv), 0);
	if (getenv("TR_DEBUG"))
		fprintf(stderr, "%s\n", out);
	/* After the last DATA frame (which does not end the stream): the
	 * trailers (names lowercased; nghttp prints the fields, then the
	 * frame), in a HEADERS frame with END_STREAM, the stream's last. */
	char *data = strstr(out, "recv DATA frame <length=16, flags=0x00");
	CHECK(data != NULL);
	CHECK(strstr(data + 1, "recv DATA") == NULL);
	snprintf(want, sizeof want, "recv (stream_id=13) x-checksum: %s\n", checksum_hex(sum));
	CHECK(strstr(data, want) != NULL);
	CHECK(strstr(data, "recv (stream_id=13) grpc-status: 0\n") != NULL);
	snprintf(want, sizeof want, "recv (stream_id=13) x-checks: undeclared=%d\n", -AW_EHTTP_TRAILER);
	CHECK(strstr(data, want) != NULL);
	CHECK(strstr(data, "recv (stream_id=13) x-te-trailers: no\n") != NULL);   /* nghttp sends no TE */
	char *hf = strstr(data, "recv HEADERS frame");
	CHECK(hf != NULL);
	CHECK(strstr(hf, "flags=0x05") != NULL);
	CHECK(strstr(hf, "; END_STREAM | END_HEADERS") != NULL);
	CHECK(strstr(hf + 1, "recv HEADERS") == NULL);
	CHECK(strstr(out, "alpha beta gamma") != NULL);
	/* TE: trailers, as gRPC clients send it */
	const char *argv_te[] = { "/usr/bin/nghttp", "-v", "-H", "te: trailers", url, NULL };
	CHECK_EQ(run_cmd(out, sizeof out, argv_te), 0);
	CHECK(strstr(out, "recv (stream_id=13) x-te-trailers: yes\n") != NULL);
	/* a complete response's trailer */
	snprintf(url, sizeof url, "http://127.0.0.1:%d/send", s.port);
	CHECK_EQ(run_cmd(out, sizeof out, argv), 0);
	data = strstr(out, "recv DATA frame <length=10, flags=0x00");
	CHECK(data != NULL);
	CHECK(strstr(data, "recv (stream_id=13) x-sum: 42\n") != NULL);
	hf = strstr(data, "recv HEADERS frame");
	CHECK(hf != NULL && strstr(hf, "; END_STREAM | END_HEADERS") != NULL);
	CHECK(strstr(out, "whole body") != NULL);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(curl_reads_h2_trailers_with_prior_knowledge)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[8192], sum[16], want[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/stream", s.port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null", url,
			  (char *)NULL),
		 0);
	CHECK(strstr(out, "HTTP/2 200") != NULL);
	snprintf(want, sizeof want, "x-checksum: %s", checksum_hex(sum));
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "grpc-status: 0") != NULL);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", url, (char *)NULL), 0);
	CHECK_STR(out, BODY);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(h2_an_error_after_a_complete_response_replaces_it_without_a_second_headers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[16384];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/sendfail", s.port);
	const char *argv[] = { "/usr/bin/nghttp", "-v", url, NULL };
	CHECK_EQ(run_cmd(out, sizeof out, argv), 0);
	/* one response, the error's: its HEADERS, its body, END_STREAM on
	 * the DATA frame (no trailers) */
	CHECK(strstr(out, "recv (stream_id=13) :status: 500") != NULL);
	CHECK(strstr(out, ":status: 200") == NULL);
	CHECK(strstr(out, "x-sum") == NULL);
	CHECK(strstr(out, "whole body") == NULL);
	CHECK(strstr(out, "[ERROR]") == NULL);
	char *hf = strstr(out, "recv HEADERS frame");
	CHECK(hf != NULL);
	CHECK(strstr(hf + 1, "recv HEADERS frame") == NULL);
	CHECK(strstr(out, "flags=0x01, stream_id=13") != NULL);   /* DATA with END_STREAM */
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(h2_body_cut_short_resets_the_stream_without_trailers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	char url[128], out[16384];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/fail", s.port);
	const char *argv[] = { "/usr/bin/nghttp", "-v", url, NULL };
	(void)run_cmd(out, sizeof out, argv);   /* nghttp fails the request */
	if (getenv("TR_DEBUG"))
		fprintf(stderr, "%s\n", out);
	/* the head, the first part, then a reset: no second HEADERS */
	CHECK(strstr(out, "recv (stream_id=13) :status: 200") != NULL);
	CHECK(strstr(out, ":status: 500") == NULL);
	CHECK(strstr(out, "alpha ") != NULL);
	CHECK(strstr(out, "recv RST_STREAM") != NULL);
	CHECK(strstr(out, "INTERNAL_ERROR") != NULL);
	CHECK(strstr(out, "grpc-status") == NULL);
	CHECK(strstr(out, "x-checksum") == NULL);
	/* curl sees a failed transfer, not a clean end */
	CHECK_NE(run_curl(out, sizeof out, "-s", "--http2-prior-knowledge", url, (char *)NULL), 0);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}


/* ---- HTTP/2 over TLS (ALPN) ------------------------------------------------------ */

static char tls_dir[64], tls_cert[96], tls_key[96];

/* A self-signed certificate for 127.0.0.1, made with the openssl command. */
static bool make_cert(void)
{
	snprintf(tls_dir, sizeof tls_dir, "/tmp/aw-trailers-XXXXXX");
	if (!mkdtemp(tls_dir))
		return false;
	snprintf(tls_cert, sizeof tls_cert, "%s/cert.pem", tls_dir);
	snprintf(tls_key, sizeof tls_key, "%s/key.pem", tls_dir);
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s -out %s "
		 "-subj /CN=localhost -days 1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
		 tls_key, tls_cert);
	return system(cmd) == 0;
}

static void remove_cert(void)
{
	unlink(tls_cert);
	unlink(tls_key);
	rmdir(tls_dir);
}

/* The app on one TLS listener, in a child (srv_start_child). */
static int tls_child_main(void *arg, int report_fd)
{
	(void)arg;
	aw_app *app = make_app();
	if (!app)
		return -1;
	aw_app_tls_opts o = { .cert_file = tls_cert, .key_file = tls_key };
	aw_listener *l = NULL;
	int rc = aw_app_tls(app, &o);
	if (!rc)
		rc = aw_tcp_listen(&l, "127.0.0.1", 0, NULL);
	int port = rc ? 0 : aw_listener_port(l);
	if (write(report_fd, &port, sizeof port) != (ssize_t)sizeof port && !rc)
		rc = -EIO;
	close(report_fd);
	aw_app_listener ls[1] = { { l, true } };
	if (!rc)
		rc = aw_app_serve_listeners(app, ls, 1);
	if (rc)
		aw_error_print(stderr, aw_error_current());
	if (l)
		aw_listener_close(l);
	aw_app_free(app);
	return rc;
}

AW_TEST(h2_over_tls_carries_trailers_to_curl_and_nghttp)
{
	CHECK(make_cert());
	srv s;
	int started = srv_start_child(&s, tls_child_main, NULL);
	if (started) {
		remove_cert();
		if (s.pid > 0)
			srv_stop(&s);
		CHECK_EQ(started, 0);
	}
	char url[128], out[16384], sum[16], want[96];
	snprintf(url, sizeof url, "https://127.0.0.1:%d/stream", s.port);
	/* curl picks h2 by ALPN */
	int rc = run_curl(out, sizeof out, "-s", "-k", "--http2", "-D", "-", "-o", "/dev/null", url, (char *)NULL);
	char nout[16384];
	const char *argv[] = { "/usr/bin/nghttp", "-v", url, NULL };
	int nrc = run_cmd(nout, sizeof nout, argv);
	int stop = srv_stop(&s);
	free(srv_log(&s));
	remove_cert();
	CHECK_EQ(rc, 0);
	CHECK(strstr(out, "HTTP/2 200") != NULL);
	snprintf(want, sizeof want, "x-checksum: %s", checksum_hex(sum));
	CHECK(strstr(out, want) != NULL);
	CHECK(strstr(out, "grpc-status: 0") != NULL);
	CHECK_EQ(nrc, 0);
	CHECK(strstr(nout, "The negotiated protocol: h2") != NULL);
	char *data = strstr(nout, "recv DATA frame <length=16, flags=0x00");
	CHECK(data != NULL);
	CHECK(strstr(data, want) != NULL);
	char *hf = strstr(data, "recv HEADERS frame");
	CHECK(hf != NULL && strstr(hf, "; END_STREAM | END_HEADERS") != NULL);
	CHECK_EQ(stop, 0);
}

