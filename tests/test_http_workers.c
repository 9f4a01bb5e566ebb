/* SPDX-License-Identifier: MIT */
/* Worker processes: aw_app_run with N workers on one port (SO_REUSEPORT).
 * Both serve; a killed worker is replaced; SIGTERM drains all of them (a
 * request in flight still gets its answer); a worker whose startup fails
 * stops the whole thing. */
#include "harness.h"
#include "http_util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int h_pid(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	const char *ms;
	int rc = aw_http_query(req, "sleep", &ms);
	if (rc < 0)
		return rc;
	if (ms && (rc = aw_sleep(AW_MS(atoi(ms)))) < 0)
		return rc;
	char out[32];
	snprintf(out, sizeof out, "%d", (int)getpid());
	return aw_http_text(res, 200, out);
}

static int bad_lifespan(aw_gen *g, void *arg)
{
	(void)g, (void)arg;
	return aw_raise(-ECONNREFUSED, "cannot reach the database");
}

typedef struct sup {
	pid_t pid;
	int logfd;
} sup;

/* Fork a supervisor: aw_app_run(app, 127.0.0.1, port, n). */
static int sup_start(sup *s, int port, int n, bool failing)
{
	char path[] = "/tmp/aw-http-workers-XXXXXX";
	s->logfd = mkostemp(path, O_CLOEXEC);
	if (s->logfd < 0)
		return -1;
	unlink(path);
	fflush(NULL);
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(s->logfd, 2);
		aw_app *app;
		if (aw_app_new(&app, "workers") < 0)
			abort();   /* no memory: nothing to test */
		aw_app_limits(app)->keepalive_idle = AW_MS(200);
		if (failing)
			EXPECT_EQ(aw_app_lifespan(app, bad_lifespan, NULL), 0);
		EXPECT_EQ(aw_app_route(app, "GET", "/pid", h_pid, NULL), 0);
		int rc = aw_app_run(app, "127.0.0.1", port, n);
		aw_app_free(app);
		exit(rc == 0 ? 0 : 1);
	}
	return 0;
}

static char *sup_log(sup *s)
{
	char *buf = calloc(1, 65536);
	ssize_t n = pread(s->logfd, buf, 65535, 0);
	if (n > 0)
		buf[n] = 0;
	return buf;
}

static int sup_wait(sup *s, int ms)
{
	int status;
	long long deadline = now_ms() + ms;
	while (waitpid(s->pid, &status, WNOHANG) != s->pid) {
		if (now_ms() > deadline) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &status, 0);
			return -2;
		}
		usleep(5000);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* One request on a fresh connection: the worker's pid, or -1. */
static int pid_of_worker(int port, const char *path)
{
	resp r;
	char req[128];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", path);
	int st = http_once(port, req, strlen(req), &r, NULL);
	int pid = st == 200 ? atoi(r.body) : -1;
	resp_free(&r);
	return pid;
}

AW_TEST(workers_share_restart_and_drain)
{
	int port = free_port();
	sup s;
	CHECK_EQ(sup_start(&s, port, 2, false), 0);
	CHECK(wait_listening(port, 5000));
	/* both workers answer (the kernel spreads new connections) */
	int pids[2] = { 0, 0 };
	for (int i = 0; i < 200 && !pids[1]; i++) {
		int p = pid_of_worker(port, "/pid");
		if (p <= 0)
			continue;
		if (!pids[0])
			pids[0] = p;
		else if (p != pids[0])
			pids[1] = p;
	}
	CHECK(pids[0] > 0 && pids[1] > 0);
	CHECK(pids[0] != s.pid && pids[1] != s.pid);
	/* kill one: the other goes on serving, and a new one appears */
	CHECK_EQ(kill(pids[0], SIGKILL), 0);
	int fresh = 0, served = 0;
	long long deadline = now_ms() + 8000;
	while (!fresh && now_ms() < deadline) {
		int p = pid_of_worker(port, "/pid");
		if (p > 0) {
			served++;
			CHECK(p != pids[0]);
			if (p != pids[1])
				fresh = p;
		} else {
			usleep(10000);
		}
	}
	CHECK(fresh > 0);
	CHECK_GT(served, 0);
	/* SIGTERM with a request in flight: it is answered, then all exit */
	int fd = cli_connect(port);
	CHECK(fd >= 0);
	CHECK_EQ(cli_sends(fd, "GET /pid?sleep=400 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	usleep(100000);
	CHECK_EQ(kill(s.pid, SIGTERM), 0);
	resp r;
	CHECK_EQ(cli_read(fd, &r, false), 0);
	CHECK_EQ(r.status, 200);
	resp_free(&r);
	close(fd);
	CHECK_EQ(sup_wait(&s, 10000), 0);
	CHECK(kill(pids[1], 0) != 0);
	CHECK(kill(fresh, 0) != 0);
	CHECK(!wait_listening(port, 100));
	char *log = sup_log(&s);
	CHECK(strstr(log, "killed by Killed: restarting") != NULL);
	CHECK(strstr(log, "stopping 2 worker(s)") != NULL);
	free(log);
	close(s.logfd);
}

AW_TEST(worker_startup_failure_stops_all)
{
	int port = free_port();
	sup s;
	CHECK_EQ(sup_start(&s, port, 3, true), 0);
	CHECK_EQ(sup_wait(&s, 10000), 1);
	char *log = sup_log(&s);
	CHECK(strstr(log, "cannot reach the database") != NULL);
	CHECK(strstr(log, "failed to start: stopping") != NULL);
	free(log);
	close(s.logfd);
}

AW_TEST(single_process_run)
{
	int port = free_port();
	sup s;
	CHECK_EQ(sup_start(&s, port, 1, false), 0);
	CHECK(wait_listening(port, 5000));
	CHECK_EQ(pid_of_worker(port, "/pid"), s.pid);
	CHECK_EQ(kill(s.pid, SIGINT), 0);
	CHECK_EQ(sup_wait(&s, 10000), 0);
	close(s.logfd);
}
