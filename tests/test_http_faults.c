/* SPDX-License-Identifier: MIT */
/* Server faults (issue 12): clients that go away while their handler runs,
 * connection caps, running out of file descriptors, root-confined files,
 * oversized uploads. A server in a child process, real sockets against it
 * (tests/http_util.c); the PostgreSQL test uses the cluster in
 * DATABASE_URL. */
#include "harness.h"
#include "http_util.h"

#include <awith/pg.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the client is gone ------------------------------------------------------- */

/* Dependency: records in the log how its teardown ended and when (the
 * monotonic clock is shared with the test process). */

/* The app's set-up calls cannot fail here; if one does, the server child
 * dies and the test says so. */
static void must(int rc)
{
	if (rc < 0)
		abort();
}

static aw_app *new_app(const char *name)
{
	aw_app *app = NULL;
	must(aw_app_new(&app, name));
	return app;
}

static int dep_note(aw_gen *g, void *arg)
{
	(void)arg;
	int err = aw_gen_yield(g, (void *)"dep");
	fprintf(stderr, "teardown err=%d at=%lld\n", err, now_ms());
	return err;
}
static const aw_http_dep note_dep = AW_HTTP_DEP("note", dep_note, NULL);

static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	void *dep_value;
	if (aw_http_depends(req, &note_dep, &dep_value) < 0)
		return aw_error_pending();
	int rc = aw_sleep(AW_SEC(10));
	fprintf(stderr, "slow woke rc=%d\n", rc);
	if (rc)
		return rc;
	return aw_http_text(res, 200, "slept");
}

static int h_stubborn(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	void *dep_value;
	if (aw_http_depends(req, &note_dep, &dep_value) < 0)
		return aw_error_pending();
	int rc = aw_sleep(AW_MS(600));
	fprintf(stderr, "stubborn finished rc=%d\n", rc);
	if (rc)
		return rc;
	return aw_http_text(res, 200, "done");
}

static int h_short(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud, (void)req;
	int rc = aw_sleep(AW_MS(300));
	if (rc)
		return rc;
	return aw_http_text(res, 200, "short");
}

static int h_fast(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud, (void)req;
	return aw_http_text(res, 200, "fast");
}

static aw_app *make_gone_app(void)
{
	aw_app *app = new_app("gone");
	aw_app_access_log(app, stderr);
	must(aw_app_route(app, "GET", "/slow", h_slow, NULL));
	must(aw_app_route_opts(app, "GET", "/stubborn", h_stubborn, NULL,
			  &(aw_http_route_opts){ .finish_when_client_gone = true }));
	must(aw_app_route(app, "GET", "/short", h_short, NULL));
	must(aw_app_route(app, "GET", "/fast", h_fast, NULL));
	return app;
}

/* The "at=" time of the teardown line in the log, or -1. */
static long long teardown_at(const char *log, int *err)
{
	const char *p = strstr(log, "teardown err=");
	long long at = -1;
	if (!p || sscanf(p, "teardown err=%d at=%lld", err, &at) != 2)
		return -1;
	return at;
}

AW_TEST(a_handler_is_cancelled_when_its_client_closes)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_gone_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	usleep(150 * 1000);   /* the handler is asleep */
	long long closed = now_ms();
	close(fd);
	usleep(400 * 1000);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	int err = 0;
	long long at = teardown_at(log, &err);
	if (at < 0 || err != -ECANCELED || at - closed > 200 || !strstr(log, "\" 499 ") ||
	    strstr(log, " 500 ") || strstr(log, "failed"))
		aw_test_fail(__FILE__, __LINE__, "teardown %lld ms after the close (err %d); log:\n%s",
			     at < 0 ? -1 : at - closed, err, log);
	CHECK(strstr(log, "slow woke rc=-125") != NULL);
	free(log);
}

AW_TEST(a_client_that_closes_with_the_end_of_its_request_cancels_the_handler)
{
	/* The FIN comes with the end of the request: the loop sees it before
	 * the handler starts (the server waits for the rest of the head). */
	srv s;
	CHECK_EQ(srv_start(&s, make_gone_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n"), 0);
	usleep(100 * 1000);
	long long closed = now_ms();
	CHECK_EQ(cli_sends(fd, "\r\n"), 0);
	close(fd);
	usleep(400 * 1000);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	int err = 0;
	long long at = teardown_at(log, &err);
	if (at < 0 || err != -ECANCELED || at - closed > 200 || !strstr(log, "\" 499 "))
		aw_test_fail(__FILE__, __LINE__, "teardown %lld ms after the close (err %d); log:\n%s",
			     at < 0 ? -1 : at - closed, err, log);
	free(log);
}

AW_TEST(a_half_closed_client_still_gets_its_pipelined_answers)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_gone_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /short HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	usleep(50 * 1000);
	CHECK_EQ(shutdown(fd, SHUT_WR), 0);   /* done sending; still reading */
	resp a, b;
	CHECK_EQ(cli_read(fd, &a, false), 0);
	CHECK_EQ(a.status, 200);
	CHECK_STR(a.body, "short");
	resp_free(&a);
	CHECK_EQ(cli_read(fd, &b, false), 0);
	CHECK_EQ(b.status, 200);
	CHECK_STR(b.body, "fast");
	resp_free(&b);
	close(fd);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

AW_TEST(a_route_that_opted_out_finishes_after_its_client_closed)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_gone_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /stubborn HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	usleep(100 * 1000);
	close(fd);
	usleep(900 * 1000);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	int err = 1;
	bool ok = strstr(log, "stubborn finished rc=0") && teardown_at(log, &err) > 0 && err == 0 &&
		  strstr(log, "/stubborn HTTP/1.1\" 200 ");
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "log:\n%s", log);
	free(log);
}

/* The same with a slow query through a pool: the backend stops working. */

static int pg_life(aw_gen *g, void *arg)
{
	(void)arg;
	aw_pg_pool *pool;
	aw_pg_pool_opts o = { .dsn = getenv("DATABASE_URL"), .max_size = 2 };
	if (aw_pg_pool_open(&pool, &o) < 0)
		return aw_error_pending();
	int err = aw_gen_yield(g, pool);
	if (aw_pg_pool_close(pool))
		aw_error_clear();
	return err;
}

/* The query, marked with the test process's id (parallel runs share the
 * cluster). Set before the server forks. */
static char sleep_sql[96];

static int h_pg_sleep(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_pg_pool *pool = aw_app_state(aw_http_app(req));
	aw_pg_result *r = NULL;
	int rc = aw_pg_pool_query(pool, &r, sleep_sql, 0, NULL);
	fprintf(stderr, "query rc=%d\n", rc);
	if (rc)
		return rc;
	aw_pg_result_free(r);
	return aw_http_text(res, 200, "slept");
}

static aw_app *make_pg_app(void)
{
	aw_app *app = new_app("gone-pg");
	aw_app_access_log(app, stderr);
	must(aw_app_lifespan(app, pg_life, NULL));
	must(aw_app_route(app, "GET", "/sleep", h_pg_sleep, NULL));
	return app;
}

/* Backends running the test's sleep now (psql), or -1. */
static int sleeping_backends(void)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "psql \"$DATABASE_URL\" -XAtqc \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
		 "AND query = '%s'\" 2>&1", sleep_sql);
	FILE *p = popen(cmd, "r");
	if (!p)
		return -1;
	int n = -1;
	if (fscanf(p, "%d", &n) != 1)
		n = -1;
	pclose(p);
	return n;
}

AW_TEST(a_slow_query_stops_on_the_server_when_the_client_closes)
{
	CHECK(getenv("DATABASE_URL") != NULL);
	snprintf(sleep_sql, sizeof sleep_sql, "SELECT pg_sleep(30) /* aw-gone-test %d */", (int)getpid());
	srv s;
	CHECK_EQ(srv_start(&s, make_pg_app), 0);
	int fd = cli_connect(s.port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	int n = 0;
	for (int i = 0; i < 50 && n != 1; i++) {
		usleep(20 * 1000);
		n = sleeping_backends();
	}
	CHECK_EQ(n, 1);
	close(fd);
	usleep(200 * 1000);
	CHECK_EQ(sleeping_backends(), 0);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	bool ok = strstr(log, "query rc=-125") && strstr(log, "\" 499 ") && !strstr(log, " 500 ");
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "log:\n%s", log);
	free(log);
}

/* ---- oversized uploads ------------------------------------------------------------ */

static int h_upload(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *data;
	size_t len;
	int rc = aw_http_body(req, &data, &len);
	if (rc)
		return rc;
	char msg[32];
	snprintf(msg, sizeof msg, "%zu", len);
	return aw_http_text(res, 200, msg);
}

static aw_app *make_upload_app(void)
{
	aw_app *app = new_app("upload");   /* the default 1 MiB body limit */
	must(aw_app_route(app, "POST", "/upload", h_upload, NULL));
	return app;
}

#define UPLOAD (4 * 1024 * 1024)

/* Send the whole upload as a client that reads only afterwards (most
 * clients do, and many give up at a failed send: Python's http.client
 * raises on the reset), then read the answer. The status; -1 if nothing
 * came; -2 if the upload was cut off by a reset (the server closed with
 * unread input) though the answer came. */
static int upload_once(int port, const char *body, bool chunked)
{
	int fd = cli_connect(port);
	if (fd < 0)
		return -1;
	char head[200];
	if (chunked)
		snprintf(head, sizeof head, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
	else
		snprintf(head, sizeof head, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", UPLOAD);
	bool sent = cli_sends(fd, head) == 0;
	for (size_t off = 0; sent && off < UPLOAD; off += 65536) {
		if (chunked)
			sent = cli_sends(fd, "10000\r\n") == 0;
		sent = sent && cli_send(fd, body + off, 65536) == 0;
		if (chunked)
			sent = sent && cli_sends(fd, "\r\n") == 0;
	}
	if (sent && chunked)
		cli_sends(fd, "0\r\n\r\n");
	resp r;
	int st = cli_read(fd, &r, false) == 0 ? r.status : -1;
	if (st > 0)
		resp_free(&r);
	close(fd);
	return st > 0 && !sent ? -2 : st;
}

AW_TEST(an_oversized_upload_always_gets_413)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_upload_app), 0);
	char *body = malloc(UPLOAD);
	CHECK(body != NULL);
	memset(body, 'u', UPLOAD);
	int bad = 0, first = 0;
	for (int i = 0; i < 200; i++) {
		int st = upload_once(s.port, body, i % 2 == 1);   /* Content-Length, then chunked */
		if (st != 413 && !bad++)
			first = st;
	}
	free(body);
	if (bad)
		aw_test_fail(__FILE__, __LINE__, "%d of 200 uploads got no 413 (the first: %d)", bad, first);
	CHECK_EQ(srv_stop(&s), 0);
	free(srv_log(&s));
}

/* ---- connection caps and running out of descriptors ------------------------------ */

static aw_app *make_capped_app(void)
{
	aw_app *app = new_app("capped");
	aw_http_limits *l = aw_app_limits(app);
	l->max_connections = 4;
	l->max_connections_per_client = 0;
	l->keepalive_idle = AW_SEC(20);
	must(aw_app_route(app, "GET", "/fast", h_fast, NULL));
	return app;
}

static aw_app *make_per_client_app(void)
{
	aw_app *app = make_capped_app();
	aw_http_limits *l = aw_app_limits(app);
	l->max_connections = 100;
	l->max_connections_per_client = 2;
	return app;
}

/* A connection from a given local address (127.0.0.x), 5 s timeouts. */
static int connect_from(int port, const char *from)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET };
	inet_pton(AF_INET, from, &a.sin_addr);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) || connect(fd, (struct sockaddr *)&to, sizeof to)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One GET /fast on fd: the status; -1 when the connection ended or timed
 * out without an answer. A receive timeout of ms. */
static int get_fast(int fd, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (cli_sends(fd, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"))
		return -1;
	resp r;
	if (cli_read(fd, &r, false))
		return -1;
	int st = r.status;
	char conn[32] = "";
	if (st == 503 && (!resp_header(&r, "Connection", conn, sizeof conn) || strcmp(conn, "close") != 0))
		st = -503;   /* a refusal must say it closes */
	resp_free(&r);
	return st;
}

/* A new connection over a cap: refused at once (503 or closed), not left
 * waiting. The time it took in ms, or -1 if it was served or waited. */
static long long refused_in(int fd)
{
	long long t0 = now_ms();
	int st = get_fast(fd, 2000);
	long long ms = now_ms() - t0;
	if (st == 200 || ms >= 2000)
		return -1;
	return ms;
}

AW_TEST(connections_over_the_worker_cap_are_refused_and_established_ones_go_on)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_capped_app), 0);
	int fds[4];
	for (int i = 0; i < 4; i++) {
		fds[i] = cli_connect(s.port);
		CHECK(fds[i] >= 0);
		CHECK_EQ(get_fast(fds[i], 5000), 200);
	}
	for (int k = 0; k < 3; k++) {
		int extra = cli_connect(s.port);
		CHECK(extra >= 0);
		long long ms = refused_in(extra);
		close(extra);
		CHECK(ms >= 0 && ms < 500);
	}
	for (int i = 0; i < 4; i++)
		CHECK_EQ(get_fast(fds[i], 5000), 200);   /* unaffected */
	close(fds[0]);
	usleep(100 * 1000);
	int again = cli_connect(s.port);   /* a slot is free again */
	CHECK(again >= 0);
	CHECK_EQ(get_fast(again, 5000), 200);
	close(again);
	for (int i = 1; i < 4; i++)
		close(fds[i]);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "max_connections reached") != NULL);
	free(log);
}

AW_TEST(connections_over_the_per_client_cap_are_refused_and_other_clients_go_on)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_per_client_app), 0);
	int a1 = connect_from(s.port, "127.0.0.2"), a2 = connect_from(s.port, "127.0.0.2");
	CHECK(a1 >= 0 && a2 >= 0);
	CHECK_EQ(get_fast(a1, 5000), 200);
	CHECK_EQ(get_fast(a2, 5000), 200);
	int a3 = connect_from(s.port, "127.0.0.2");
	CHECK(a3 >= 0);
	long long ms = refused_in(a3);
	close(a3);
	CHECK(ms >= 0 && ms < 500);
	int b1 = connect_from(s.port, "127.0.0.3");   /* another client: served */
	CHECK(b1 >= 0);
	CHECK_EQ(get_fast(b1, 5000), 200);
	CHECK_EQ(get_fast(a1, 5000), 200);             /* established: unaffected */
	close(a2);
	usleep(100 * 1000);
	int a4 = connect_from(s.port, "127.0.0.2");   /* its count went down */
	CHECK(a4 >= 0);
	CHECK_EQ(get_fast(a4, 5000), 200);
	close(a4);
	close(a1);
	close(b1);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "max_connections_per_client reached") != NULL);
	free(log);
}

static aw_app *make_few_fds_app(void)
{
	struct rlimit rl = { 40, 40 };
	if (setrlimit(RLIMIT_NOFILE, &rl))
		return NULL;
	aw_app *app = new_app("few-fds");
	aw_app_limits(app)->keepalive_idle = AW_SEC(20);
	must(aw_app_route(app, "GET", "/fast", h_fast, NULL));
	return app;
}

/* CPU time (user + system, in clock ticks) of a process. */
static long long cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

AW_TEST(out_of_descriptors_new_clients_are_refused_at_once_without_spinning)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_few_fds_app), 0);
	enum { N = 60 };
	int fds[N], served = 0, refused = 0, waited = 0;
	for (int i = 0; i < N; i++) {
		fds[i] = cli_connect(s.port);
		CHECK(fds[i] >= 0);
		long long t0 = now_ms();
		int st = get_fast(fds[i], 2000);
		if (st == 200) {
			served++;
		} else {
			if (now_ms() - t0 >= 1000)
				waited++;
			else
				refused++;
			close(fds[i]);
			fds[i] = -1;
		}
	}
	if (served < 20 || refused < 10 || waited) {
		srv_stop(&s);
		char *log = srv_log(&s);
		aw_test_fail(__FILE__, __LINE__, "served %d, refused %d, left waiting %d; log:\n%s", served, refused,
			     waited, log);
		free(log);
		return;
	}
	/* At the limit, with clients knocking: the server does not spin. */
	long long c0 = cpu_ticks(s.pid);
	for (int k = 0; k < 10; k++) {
		int x = cli_connect(s.port);
		if (x >= 0) {
			get_fast(x, 1000);
			close(x);
		}
		usleep(100 * 1000);
	}
	long long used = cpu_ticks(s.pid) - c0;
	CHECK(c0 >= 0);
	CHECK_LT(used, 20);   /* ticks (10 ms): far from a core's 100 */
	/* Established connections are served; freed descriptors serve again. */
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0) {
			CHECK_EQ(get_fast(fds[i], 5000), 200);
			close(fds[i]);
			fds[i] = -1;
		}
	usleep(200 * 1000);
	int again = cli_connect(s.port);
	CHECK(again >= 0);
	CHECK_EQ(get_fast(again, 5000), 200);
	close(again);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "out of file descriptors") != NULL);
	free(log);
}

/* ---- files confined to a root ------------------------------------------------------ */

static char files_root[256];

static int h_files(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return aw_http_file_in(res, files_root, aw_http_param(req, "name"), NULL);
}

static aw_app *make_files_app(void)
{
	aw_app *app = new_app("files");
	must(aw_app_route(app, "GET", "/files/{name}", h_files, NULL));
	return app;
}

static int write_file(const char *dir, const char *name, const char *text)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* GET /files/<enc> (already encoded as a client would send it): the
 * status, and the body into out. */
static int get_file(int port, const char *enc, char *out, size_t outlen)
{
	char raw[512];
	snprintf(raw, sizeof raw, "GET /files/%s HTTP/1.1\r\nHost: x\r\n\r\n", enc);
	resp r;
	int st = http_once(port, raw, strlen(raw), &r, NULL);
	if (st > 0) {
		snprintf(out, outlen, "%s", r.body ? r.body : "");
		resp_free(&r);
	}
	return st;
}

AW_TEST(files_are_served_only_from_inside_their_root)
{
	char base[] = "/tmp/aw-files-XXXXXX";
	CHECK(mkdtemp(base) != NULL);
	snprintf(files_root, sizeof files_root, "%s/root", base);
	char p[512];
	CHECK_EQ(mkdir(files_root, 0755), 0);
	snprintf(p, sizeof p, "%s/sub", files_root);
	CHECK_EQ(mkdir(p, 0755), 0);
	CHECK_EQ(write_file(files_root, "hello.txt", "hello"), 0);
	CHECK_EQ(write_file(files_root, "sub/index.html", "<p>index</p>"), 0);
	CHECK_EQ(write_file(base, "secret.txt", "secret"), 0);
	snprintf(p, sizeof p, "%s/link_in", files_root);
	CHECK_EQ(symlink("sub/../hello.txt", p), 0);
	snprintf(p, sizeof p, "%s/link_out", files_root);
	CHECK_EQ(symlink("/etc/passwd", p), 0);
	snprintf(p, sizeof p, "%s/link_up", files_root);
	CHECK_EQ(symlink("../secret.txt", p), 0);
	snprintf(p, sizeof p, "%s/link_dir_out", files_root);
	CHECK_EQ(symlink("..", p), 0);

	srv s;
	CHECK_EQ(srv_start(&s, make_files_app), 0);
	char body[256];
	CHECK_EQ(get_file(s.port, "hello.txt", body, sizeof body), 200);
	CHECK_STR(body, "hello");
	CHECK_EQ(get_file(s.port, "link_in", body, sizeof body), 200);   /* a symlink inside: followed */
	CHECK_STR(body, "hello");
	CHECK_EQ(get_file(s.port, "sub", body, sizeof body), 200);       /* a directory: its index */
	CHECK_STR(body, "<p>index</p>");
	CHECK_EQ(get_file(s.port, "sub%2Findex.html", body, sizeof body), 200);
	CHECK_EQ(get_file(s.port, "sub%2F.%2F..%2Fhello.txt", body, sizeof body), 404);   /* '..': never */
	CHECK_EQ(get_file(s.port, "..%2f..%2fetc%2fpasswd", body, sizeof body), 404);
	CHECK(strstr(body, "root:") == NULL);
	CHECK_EQ(get_file(s.port, "..%2fsecret.txt", body, sizeof body), 404);
	CHECK_EQ(get_file(s.port, "..", body, sizeof body), 404);
	CHECK_EQ(get_file(s.port, "%2Fetc%2Fpasswd", body, sizeof body), 404);   /* absolute */
	CHECK_EQ(get_file(s.port, "hello.txt%00.png", body, sizeof body), 400); /* NUL */
	CHECK_EQ(get_file(s.port, "link_out", body, sizeof body), 403);
	CHECK(strstr(body, "root:") == NULL);
	CHECK_EQ(get_file(s.port, "link_up", body, sizeof body), 403);
	CHECK(strstr(body, "secret") == NULL);
	CHECK_EQ(get_file(s.port, "link_dir_out%2Fsecret.txt", body, sizeof body), 403);
	CHECK_EQ(get_file(s.port, "missing.txt", body, sizeof body), 404);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "link_out under") != NULL && strstr(log, "a symlink leads out of the root") != NULL);
	free(log);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
	CHECK_EQ(system(cmd), 0);
}
