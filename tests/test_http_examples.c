/* SPDX-License-Identifier: MIT */
/* The HTTP example programs, run as a user would: each on a free port,
 * asked with curl, stopped with SIGINT or SIGTERM, its exit status and
 * output checked. */
#include "harness.h"
#include "http_util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EX(name) AW_EXAMPLES_DIR "/" name

static char out[65536];

AW_TEST(hello_server)
{
	int port = free_port();
	char ps[16], url[64];
	snprintf(ps, sizeof ps, "%d", port);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	const char *argv[] = { EX("hello_server"), "--port", ps, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	CHECK_EQ(run_curl(out, sizeof out, "-sS", url, NULL), 0);
	CHECK_STR(out, "{\"message\":\"Hello, World!\"}");
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url, NULL), 0);
	CHECK_STR(out, "405");
	CHECK_EQ(proc_wait(&p, SIGINT), 0);
	CHECK(strstr(p.err, "listening on http://127.0.0.1:") != NULL);
	CHECK(strstr(p.err, "Interrupt: shutting down") != NULL);
}

AW_TEST(hello_server_speaks_http2_with_prior_knowledge)
{
	int port = free_port();
	char ps[16], url[64];
	snprintf(ps, sizeof ps, "%d", port);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	const char *argv[] = { EX("hello_server"), "--port", ps, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", url, NULL), 0);
	CHECK_STR(out, "{\"message\":\"Hello, World!\"} 2");
	CHECK_EQ(proc_wait(&p, SIGTERM), 0);
}

AW_TEST(hello_server_usage)
{
	const char *argv[] = { EX("hello_server"), "--port", "nope", NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK_EQ(proc_wait(&p, 0), 2);
	CHECK(strstr(p.err, "usage:") != NULL);
}

AW_TEST(hello_server_workers)
{
	int port = free_port();
	char ps[16], url[64];
	snprintf(ps, sizeof ps, "%d", port);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	const char *argv[] = { EX("hello_server"), "--port", ps, "--workers", "2", NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(run_curl(out, sizeof out, "-sS", url, NULL), 0);
		CHECK_STR(out, "{\"message\":\"Hello, World!\"}");
	}
	CHECK_EQ(proc_wait(&p, SIGTERM), 0);
	CHECK(strstr(p.err, "2 workers on http://127.0.0.1:") != NULL);
	CHECK(strstr(p.err, "worker 0 listening") != NULL);
	CHECK(strstr(p.err, "worker 1 listening") != NULL);
}

AW_TEST(lifespan_server)
{
	int port = free_port();
	char ps[16], base[64], u1[96], u2[96];
	snprintf(ps, sizeof ps, "%d", port);
	snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
	snprintf(u1, sizeof u1, "%s/items/42", base);
	snprintf(u2, sizeof u2, "%s/items/x", base);
	const char *argv[] = { EX("lifespan_server"), "--port", ps, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	CHECK_EQ(run_curl(out, sizeof out, "-sS", u1, NULL), 0);
	CHECK_STR(out, "{\"item_id\":42,\"conn\":1}");
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-w", " %{http_code}", u2, NULL), 0);
	CHECK_STR(out, "{\"detail\":\"item_id must be an integer\"} 422");
	CHECK_EQ(proc_wait(&p, SIGINT), 0);
	CHECK_STR(p.out, "startup: pool of 4 connections ready\n"
			 "get_db: acquired conn 1\n"
			 "get_db: released conn 1 (handler error: 0)\n"
			 "shutdown: pool closed (1 acquired, 1 released, server error 0)\n");
}

AW_TEST(static_server_serves_a_directory_and_ranges_of_its_files)
{
	char dir[] = "/tmp/aw-static-ex-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "printf '<p>hi</p>' > '%s/index.html' && printf 0123456789 > '%s/digits.txt'", dir, dir);
	CHECK_EQ(system(cmd), 0);
	int port = free_port();
	char ps[16], url[96];
	snprintf(ps, sizeof ps, "%d", port);
	const char *argv[] = { EX("static_server"), "--dir", dir, "--port", ps, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-w", " %{content_type}", url, NULL), 0);
	CHECK_STR(out, "<p>hi</p> text/html; charset=utf-8");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/digits.txt", port);
	CHECK_EQ(run_curl(out, sizeof out, "-sS", "-r", "2-4", "-w", " %{http_code}", url, NULL), 0);
	CHECK_STR(out, "234 206");
	snprintf(url, sizeof url, "http://127.0.0.1:%d/..%%2f..%%2fetc%%2fpasswd", port);
	CHECK_EQ(run_curl(out, sizeof out, "-s", "-o", "/dev/null", "-w", "%{http_code}", url, NULL), 0);
	CHECK_STR(out, "404");
	CHECK_EQ(proc_wait(&p, SIGINT), 0);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	CHECK_EQ(system(cmd), 0);
}
