/* SPDX-License-Identifier: MIT */
/* The /metrics endpoint (aw_app_metrics): a server in a child process,
 * requests over real sockets, then a scrape whose text is checked line by
 * line: counts by route, method and status, the duration histogram, the
 * in-flight and connection gauges, a program's own metric, and workers
 * answering for each other. */
#include "harness.h"
#include "http_util.h"

#include <awith/metrics.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static aw_metric *user_jobs;

static int h_root(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	aw_metric_counter_add(user_jobs, 2);
	return aw_http_text(res, 200, "hi");
}

static int h_user(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	return aw_http_text(res, 200, aw_http_param(req, "id"));
}

static int h_fail(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)res, (void)ud;
	return aw_raise(-EIO, "the disk is on fire");
}

static int h_slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_sleep(AW_MS(60));
	if (rc < 0)
		return rc;
	return aw_http_text(res, 200, "slow");
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "metrics") < 0)
		abort();
	aw_app_error_log(app, fopen("/dev/null", "w"));
	EXPECT_EQ(aw_app_route(app, "GET", "/", h_root, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/users/{id}", h_user, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "*", "/fail", h_fail, NULL), 0);
	EXPECT_EQ(aw_app_route(app, "GET", "/slow", h_slow, NULL), 0);
	EXPECT_EQ(aw_app_metrics(app, "/metrics"), 0);
	EXPECT_EQ(aw_metric_counter_new(&user_jobs, "myapp_jobs_total", "Jobs done by the handler.", NULL), 0);
	return app;
}

static int get(int port, const char *path, resp *r)
{
	char req[512];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
	bool closed;
	return http_once(port, req, strlen(req), r, &closed);
}

/* The value of one exact series line ("name{labels}"), -1 if absent. */
static double value_of(const char *text, const char *series)
{
	char key[400];
	snprintf(key, sizeof key, "\n%s ", series);
	const char *p = strstr(text, key);
	return p ? strtod(p + strlen(key), NULL) : -1;
}

static char *scrape(int port)
{
	resp r;
	if (get(port, "/metrics", &r) != 200) {
		resp_free(&r);
		return NULL;
	}
	char ct[128];
	if (!resp_header(&r, "Content-Type", ct, sizeof ct) || strcmp(ct, AW_METRICS_CONTENT_TYPE) != 0) {
		resp_free(&r);
		return NULL;
	}
	char *body = r.body;
	r.body = NULL;
	resp_free(&r);
	return body;
}

AW_TEST(metrics_count_requests_by_route_method_and_status)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	for (int i = 0; i < 25; i++) {
		CHECK_EQ(get(s.port, "/", &r), 200);
		resp_free(&r);
	}
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(get(s.port, i == 2 ? "/users/8" : "/users/7", &r), 200);
		resp_free(&r);
	}
	CHECK_EQ(get(s.port, "/fail", &r), 500);
	resp_free(&r);
	CHECK_EQ(get(s.port, "/nowhere", &r), 404);
	resp_free(&r);
	bool closed;
	const char *post = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	CHECK_EQ(http_once(s.port, post, strlen(post), &r, &closed), 405);
	resp_free(&r);
	const char *bad = "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n";   /* two Hosts: 400 before routing */
	CHECK_EQ(http_once(s.port, bad, strlen(bad), &r, &closed), 400);
	resp_free(&r);

	char *t = scrape(s.port);
	CHECK(t);
	CHECK(value_of(t, "awith_http_requests_total{route=\"/\",method=\"GET\",status=\"200\"}") == 25);
	/* The template, not the path: both ids count under one series. */
	CHECK(value_of(t, "awith_http_requests_total{route=\"/users/{id}\",method=\"GET\",status=\"200\"}") == 3);
	CHECK(value_of(t, "awith_http_requests_total{route=\"/fail\",method=\"GET\",status=\"500\"}") == 1);
	CHECK(value_of(t, "awith_http_requests_total{route=\"(unmatched)\",method=\"GET\",status=\"404\"}") == 1);
	CHECK(value_of(t, "awith_http_requests_total{route=\"(unmatched)\",method=\"POST\",status=\"405\"}") == 1);
	CHECK(value_of(t, "awith_http_requests_total{route=\"(unmatched)\",method=\"(unknown)\",status=\"400\"}") == 1);
	/* The program's own metric, counted in the handler. */
	CHECK(value_of(t, "myapp_jobs_total") == 50);
	CHECK(strstr(t, "# HELP awith_http_requests_total HTTP requests answered, by route template, method and "
			"status.\n# TYPE awith_http_requests_total counter\n"));
	/* The core's and the process's series are there too. */
	CHECK(value_of(t, "awith_tasks_alive") >= 2);
	CHECK(value_of(t, "process_open_fds") > 3);
	CHECK(value_of(t, "process_resident_memory_bytes") > 1e5);
	free(t);
	/* The scrape counts itself once it is answered. */
	t = scrape(s.port);
	CHECK(t);
	CHECK(value_of(t, "awith_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}") == 1);
	free(t);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(duration_histogram_puts_each_request_in_its_bucket)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	resp r;
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(get(s.port, "/slow", &r), 200);
		resp_free(&r);
	}
	char *t = scrape(s.port);
	CHECK(t);
	CHECK(value_of(t, "awith_http_request_duration_seconds_count{route=\"/slow\"}") == 2);
	CHECK(value_of(t, "awith_http_request_duration_seconds_bucket{route=\"/slow\",le=\"0.05\"}") == 0);
	CHECK(value_of(t, "awith_http_request_duration_seconds_bucket{route=\"/slow\",le=\"+Inf\"}") == 2);
	double sum = value_of(t, "awith_http_request_duration_seconds_sum{route=\"/slow\"}");
	CHECK(sum >= 0.12 && sum < 5);
	CHECK(strstr(t, "# TYPE awith_http_request_duration_seconds histogram\n"));
	free(t);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(connections_and_in_flight_gauges_follow_the_clients)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app), 0);
	int idle[3];
	for (int i = 0; i < 3; i++) {
		idle[i] = cli_connect(s.port);
		CHECK(idle[i] >= 0);
	}
	/* A request in flight: /slow sleeps 60 ms; scrape meanwhile. */
	int busy = cli_connect(s.port);
	CHECK(busy >= 0);
	CHECK_EQ(cli_sends(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	usleep(20000);
	char *t = scrape(s.port);
	CHECK(t);
	CHECK(value_of(t, "awith_http_connections") == 5);   /* 3 idle + busy + the scrape's */
	CHECK(value_of(t, "awith_http_requests_in_flight") == 2);   /* /slow and the scrape */
	free(t);
	resp r;
	CHECK_EQ(cli_read(busy, &r, false), 0);
	resp_free(&r);
	for (int i = 0; i < 3; i++)
		close(idle[i]);
	close(busy);
	usleep(50000);
	t = scrape(s.port);
	CHECK(t);
	CHECK(value_of(t, "awith_http_connections") == 1);
	CHECK(value_of(t, "awith_http_requests_in_flight") == 1);
	free(t);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(app_metrics_rejects_a_bad_path_and_a_second_call)
{
	aw_app *app;
	CHECK_EQ(aw_app_new(&app, "x"), 0);
	CHECK_EQ(aw_app_metrics(app, "metrics"), -EINVAL);
	CHECK_EQ(aw_app_metrics(app, NULL), -EINVAL);
	CHECK_EQ(aw_app_metrics(app, "/metrics"), 0);
	CHECK_EQ(aw_app_metrics(app, "/other"), -EALREADY);
	CHECK_EQ(aw_app_metrics(NULL, "/metrics"), -EINVAL);
	aw_error_clear();
	aw_app_free(app);
}

/* ---- workers -------------------------------------------------------------------- */

static int h_pid(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	char out[32];
	snprintf(out, sizeof out, "%d", (int)getpid());
	return aw_http_text(res, 200, out);
}

AW_TEST(a_scrape_of_any_worker_answers_for_every_worker_with_a_worker_label)
{
	int port = free_port();
	CHECK(port > 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 2);
		aw_app *app;
		if (aw_app_new(&app, "workers") < 0)
			abort();
		EXPECT_EQ(aw_app_route(app, "GET", "/", h_pid, NULL), 0);
		EXPECT_EQ(aw_app_metrics(app, "/metrics"), 0);
		int rc = aw_app_run(app, "127.0.0.1", port, 2);
		aw_app_free(app);
		_exit(rc == 0 ? 0 : 1);
	}
	/* Wait for both workers: fresh connections until two pids answered. */
	char pids[2][32] = { "", "" };
	int n = 0, total = 0;
	long long end = now_ms() + 10000;
	resp r;
	while (now_ms() < end && total < 200) {
		int st = get(port, "/", &r);
		if (st != 200) {
			resp_free(&r);
			usleep(20000);
			continue;
		}
		total++;
		if (n < 2 && strcmp(r.body, pids[0]) != 0 && strcmp(r.body, pids[1]) != 0)
			snprintf(pids[n++], sizeof pids[0], "%s", r.body);
		resp_free(&r);
	}
	CHECK_EQ(n, 2);
	CHECK_EQ(total, 200);
	/* Each scrape lands on one worker (the kernel picks) and shows both. */
	for (int k = 0; k < 4; k++) {
		char *t = scrape(port);
		CHECK(t);
		double w0 = value_of(t, "awith_http_requests_total{route=\"/\",method=\"GET\",status=\"200\",worker=\"0\"}");
		double w1 = value_of(t, "awith_http_requests_total{route=\"/\",method=\"GET\",status=\"200\",worker=\"1\"}");
		CHECK(w0 > 0 && w1 > 0);
		CHECK(w0 + w1 == 200);
		CHECK(value_of(t, "awith_tasks_alive{worker=\"0\"}") > 0);
		CHECK(value_of(t, "awith_tasks_alive{worker=\"1\"}") > 0);
		CHECK(value_of(t, "process_resident_memory_bytes{worker=\"1\"}") > 0);
		/* One header per family, every series of it after it. */
		const char *h = "# HELP awith_http_requests_total ";
		char *first = strstr(t, h);
		CHECK(first && !strstr(first + 1, h));
		char *tasks = strstr(t, "# TYPE awith_tasks_alive gauge\n");
		CHECK(tasks);
		char *next = strstr(tasks + 1, "# HELP");
		char *a0 = strstr(tasks, "awith_tasks_alive{worker=\"0\"}"), *a1 = strstr(tasks, "awith_tasks_alive{worker=\"1\"}");
		CHECK(a0 && a1 && (!next || (a0 < next && a1 < next)));
		free(t);
	}
	kill(pid, SIGTERM);
	int status;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
