/* SPDX-License-Identifier: MIT */
/* Running behind a load balancer, run as an operator would (the
 * scale_app example, signals, a pid file): the readiness route fails
 * first on SIGTERM (drain_delay) while requests are still served; a
 * failing readiness check names itself; SIGUSR2 starts a new generation
 * on the same listening sockets and the old one drains, with clients
 * hammering the port and not one request failing (one process and two
 * workers); a new generation that cannot start leaves the old one
 * serving; sockets handed in by systemd's LISTEN_FDS protocol are used. */
#include "harness.h"
#include "http_util.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define APP AW_EXAMPLES_DIR "/scale_app"

static int get(int port, const char *path, resp *r)
{
	char req[256];
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", path);
	return http_once(port, req, strlen(req), r, NULL);
}

static int status_of(int port, const char *path, char *body, size_t len)
{
	resp r;
	int st = get(port, path, &r);
	if (body)
		snprintf(body, len, "%s", st > 0 && r.body ? r.body : "");
	resp_free(&r);
	return st;
}

static int read_pid_file(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

/* Wait until the pid file names another process than `old` (and return
 * it), up to ms. */
static int wait_new_pid(const char *path, int old, int ms)
{
	long long dl = now_ms() + ms;
	while (now_ms() < dl) {
		int p = read_pid_file(path);
		if (p > 0 && p != old)
			return p;
		usleep(10000);
	}
	return 0;
}

/* Orphaned generations come to us (we are their subreaper): reap any. */
static bool gone(int pid, int ms)
{
	long long dl = now_ms() + ms;
	while (now_ms() < dl) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (kill(pid, 0) != 0)
			return true;
		usleep(10000);
	}
	return false;
}

/* A client hammering the port from a child process: requests on fresh
 * connections one after the other (and every tenth a slow one, in flight
 * across the handover), until SIGTERM; writes "ok N failed M" to outfd. */
static volatile sig_atomic_t hammer_stop;
static void on_term(int s)
{
	(void)s;
	hammer_stop = 1;
}

static pid_t hammer(int port, int outfd)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGTERM, on_term);
	int ok = 0, failed = 0;
	char first[256] = "";
	for (int i = 0; !hammer_stop; i++) {
		char body[64];
		int st = status_of(port, i % 10 == 9 ? "/pid?sleep=150" : "/pid", body, sizeof body);
		/* The test's SIGTERM ends the hammer: a request it interrupted
		 * (poll's EINTR) is not the server's failure. Seen in CI as
		 * "ok 110 failed 1 request 110: status -1", the last one. */
		if (st != 200 && hammer_stop)
			break;
		if (st == 200)
			ok++;
		else if (failed++ == 0)
			snprintf(first, sizeof first, "request %d: status %d", i, st);
	}
	dprintf(outfd, "ok %d failed %d %s\n", ok, failed, first);
	_exit(0);
}

static void hammer_end(pid_t pid, int fd, int *ok, int *failed, char *line, size_t len)
{
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	memset(line, 0, len);
	(void)!pread(fd, line, len - 1, 0);
	*ok = *failed = -1;
	sscanf(line, "ok %d failed %d", ok, failed);
}

static int anon(void)
{
	char path[] = "/tmp/aw-scale-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static void pid_path(char *buf, size_t len)
{
	snprintf(buf, len, "/tmp/aw-scale-%d.pid", (int)getpid());
	unlink(buf);
}

AW_TEST(readiness_fails_first_then_the_server_stops)
{
	int port = free_port();
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	const char *argv[] = { APP, "--port", ps, "--drain-delay", "800", NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	char body[256];
	CHECK_EQ(status_of(port, "/readyz", body, sizeof body), 200);
	CHECK_STR(body, "{\"status\":\"ready\"}");
	CHECK_EQ(kill(p.pid, SIGTERM), 0);
	usleep(100000);
	/* not ready, yet alive and serving: the balancer moves away */
	CHECK_EQ(status_of(port, "/readyz", body, sizeof body), 503);
	CHECK_STR(body, "{\"status\":\"draining\"}");
	CHECK_EQ(status_of(port, "/livez", NULL, 0), 200);
	CHECK_EQ(status_of(port, "/pid", NULL, 0), 200);
	/* then it stops */
	long long t0 = now_ms();
	while (now_ms() - t0 < 3000 && status_of(port, "/pid", NULL, 0) == 200)
		usleep(20000);
	CHECK(status_of(port, "/pid", NULL, 0) < 0);
	CHECK_EQ(proc_wait(&p, 0), 0);
	CHECK(strstr(p.err, "Terminated: not ready; stopping in 800 ms") != NULL);
}

AW_TEST(readiness_names_the_failing_check)
{
	int port = free_port(), dead = free_port();
	char ps[16], dsn[128];
	snprintf(ps, sizeof ps, "%d", port);
	snprintf(dsn, sizeof dsn, "DATABASE_URL=host=127.0.0.1 port=%d connect_timeout=1", dead);
	putenv(dsn);
	const char *argv[] = { APP, "--port", ps, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	char body[512];
	CHECK_EQ(status_of(port, "/readyz", body, sizeof body), 503);
	CHECK(strstr(body, "\"status\":\"unready\",\"check\":\"database\"") != NULL);
	CHECK(strstr(body, "refused") != NULL);
	CHECK_EQ(status_of(port, "/livez", NULL, 0), 200);
	/* a request that needs the database: a clear 503, at once */
	long long t0 = now_ms();
	CHECK_EQ(status_of(port, "/db/write", body, sizeof body), 503);
	CHECK(now_ms() - t0 < 2500);
	CHECK(strstr(body, "\"detail\":\"write: ") != NULL);
	CHECK_EQ(proc_wait(&p, SIGTERM), 0);
}

/* SIGUSR2 twice under load: two new generations in turn, each taking the
 * sockets over; the client sees every request answered. */
static void restart_under_load(const char *workers)
{
	CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	int port = free_port();
	char ps[16], pidf[64];
	snprintf(ps, sizeof ps, "%d", port);
	pid_path(pidf, sizeof pidf);
	const char *argv[] = { APP, "--port", ps, "--workers", workers, "--pid-file", pidf, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	int gen1 = wait_new_pid(pidf, 0, 5000);
	CHECK_EQ(gen1, p.pid);
	int outfd = anon();
	pid_t h = hammer(port, outfd);
	usleep(300000);
	/* a slow request in flight on the old generation is answered by it */
	int slow = cli_connect(port);
	CHECK(slow >= 0);
	CHECK_EQ(cli_sends(slow, "GET /pid?sleep=600 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
	usleep(50000);
	CHECK_EQ(kill(gen1, SIGUSR2), 0);
	int gen2 = wait_new_pid(pidf, gen1, 10000);
	CHECK(gen2 > 0);
	resp r;
	CHECK_EQ(cli_read(slow, &r, false), 0);
	CHECK_EQ(r.status, 200);
	char conn[32] = "";
	CHECK(resp_header(&r, "Connection", conn, sizeof conn));
	CHECK_STR(conn, "close");   /* the old generation is draining */
	resp_free(&r);
	close(slow);
	CHECK_EQ(proc_wait(&p, 0), 0);   /* gen1 exits by itself, cleanly */
	usleep(300000);
	CHECK_EQ(kill(gen2, SIGUSR2), 0);
	int gen3 = wait_new_pid(pidf, gen2, 10000);
	CHECK(gen3 > 0);
	CHECK(gone(gen2, 10000));
	usleep(300000);
	int ok, failed;
	char line[512];
	hammer_end(h, outfd, &ok, &failed, line, sizeof line);
	fprintf(stderr, "  %s", line);
	CHECK_GT(ok, 50);
	CHECK_EQ(failed, 0);
	char body[64];
	CHECK_EQ(status_of(port, "/pid", body, sizeof body), 200);
	CHECK(atoi(body) != gen1 && atoi(body) != gen2);
	CHECK_EQ(kill(gen3, SIGTERM), 0);
	CHECK(gone(gen3, 10000));
	CHECK(access(pidf, F_OK) != 0);   /* the last generation removed it */
	CHECK(strstr(p.err, "graceful restart: started") != NULL);
	CHECK(strstr(p.err, "inherited listening socket") != NULL);
	close(outfd);
}

AW_TEST(sigusr2_restart_under_load_drops_nothing_one_process)
{
	restart_under_load("1");
}

AW_TEST(sigusr2_restart_under_load_drops_nothing_two_workers)
{
	restart_under_load("2");
}

/* The executable at the path is what the next generation runs (a deploy
 * installs it over the old one); one that does not come up leaves the old
 * generation serving. */
AW_TEST(a_new_generation_that_fails_leaves_the_old_one_serving)
{
	char dir[] = "/tmp/aw-scale-bin-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char bin[128], cmd[512];
	snprintf(bin, sizeof bin, "%s/scale_app", dir);
	snprintf(cmd, sizeof cmd, "cp %s %s", APP, bin);
	CHECK_EQ(system(cmd), 0);
	int port = free_port();
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	const char *argv[] = { bin, "--port", ps, "--workers", "2", NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	CHECK(wait_listening(port, 5000));
	/* the "new build": exits at once */
	unlink(bin);
	FILE *f = fopen(bin, "w");
	CHECK(f != NULL);
	fprintf(f, "#!/bin/sh\necho broken build >&2\nexit 1\n");
	fclose(f);
	chmod(bin, 0755);
	CHECK_EQ(kill(p.pid, SIGUSR2), 0);
	usleep(500000);
	CHECK_EQ(status_of(port, "/pid", NULL, 0), 200);
	CHECK_EQ(proc_wait(&p, SIGTERM), 0);
	CHECK(strstr(p.err, "broken build") != NULL);
	CHECK(strstr(p.err, "exited before it was ready: serving on") != NULL);
	unlink(bin);
	rmdir(dir);
}

static int listening_socket(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) ||
	    getsockname(fd, (struct sockaddr *)&a, &al))
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* systemd's socket activation: the socket as fd 3, LISTEN_PID = the
 * service's pid. --port is then ignored. */
static pid_t activate(int fd, const char *workers, bool right_pid, int logfd)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dup2(logfd, 2);
	dup2(fd, 3);
	char n[32];
	snprintf(n, sizeof n, "%d", right_pid ? (int)getpid() : 1);
	setenv("LISTEN_PID", n, 1);
	setenv("LISTEN_FDS", "1", 1);
	char other[16];
	snprintf(other, sizeof other, "%d", free_port());
	execl(APP, APP, "--port", other, "--workers", workers, (char *)NULL);
	_exit(127);
}

AW_TEST(listen_fds_from_systemd_are_used)
{
	for (int k = 0; k < 2; k++) {
		int port;
		int fd = listening_socket(&port);
		CHECK(fd >= 0);
		int logfd = anon();
		pid_t pid = activate(fd, k ? "2" : "1", true, logfd);
		close(fd);   /* the service holds it now */
		char body[32];
		long long dl = now_ms() + 5000;
		int st;
		while ((st = status_of(port, "/pid", body, sizeof body)) != 200 && now_ms() < dl)
			usleep(20000);
		CHECK_EQ(st, 200);
		kill(pid, SIGTERM);
		int status;
		waitpid(pid, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		char log[8192] = "";
		(void)!pread(logfd, log, sizeof log - 1, 0);
		CHECK(strstr(log, "using 1 inherited listening socket(s) (LISTEN_FDS)") != NULL);
		close(logfd);
	}
}

AW_TEST(listen_fds_for_another_pid_are_ignored)
{
	int port;
	int fd = listening_socket(&port);
	CHECK(fd >= 0);
	int logfd = anon();
	pid_t pid = activate(fd, "1", false, logfd);
	close(fd);
	usleep(500000);
	kill(pid, SIGTERM);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char log[8192] = "";
	(void)!pread(logfd, log, sizeof log - 1, 0);
	CHECK(strstr(log, "LISTEN_FDS") == NULL);
	CHECK(strstr(log, "listening on http://127.0.0.1:") != NULL);
	close(logfd);
}

/* systemd's Type=notify: READY=1 with MAINPID when a generation serves,
 * again from the new generation after SIGUSR2 (so systemd follows it). */
AW_TEST(notify_socket_gets_ready_and_the_new_main_pid)
{
	CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	char path[64], env[96];
	snprintf(path, sizeof path, "/tmp/aw-notify-%d.sock", (int)getpid());
	unlink(path);
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	CHECK_EQ(bind(s, (struct sockaddr *)&sun, sizeof sun), 0);
	struct timeval tv = { 5, 0 };
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	snprintf(env, sizeof env, "NOTIFY_SOCKET=%s", path);
	putenv(env);
	int port = free_port();
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	const char *argv[] = { APP, "--port", ps, "--workers", "2", NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	char msg[128] = "", want[64];
	CHECK(recv(s, msg, sizeof msg - 1, 0) > 0);
	snprintf(want, sizeof want, "READY=1\nMAINPID=%d", (int)p.pid);
	CHECK_STR(msg, want);
	CHECK_EQ(kill(p.pid, SIGUSR2), 0);
	memset(msg, 0, sizeof msg);
	CHECK(recv(s, msg, sizeof msg - 1, 0) > 0);
	int next = 0;
	CHECK_EQ(sscanf(msg, "READY=1\nMAINPID=%d", &next), 1);
	CHECK(next > 0 && next != p.pid);
	CHECK_EQ(proc_wait(&p, 0), 0);
	CHECK_EQ(status_of(port, "/pid", NULL, 0), 200);
	CHECK_EQ(kill(next, SIGTERM), 0);
	CHECK(gone(next, 10000));
	close(s);
	unlink(path);
}

/* SIGTERM while the next generation is still starting: the restart is
 * called off (the new one is told to stop) and this one stops at once,
 * not after the 60 s the new one would have had. */
AW_TEST(sigterm_during_a_restart_stops_both)
{
	CHECK_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	for (int k = 0; k < 2; k++) {
		char dir[] = "/tmp/aw-scale-bin-XXXXXX";
		CHECK(mkdtemp(dir) != NULL);
		char bin[128], mark[160], cmd[512];
		snprintf(bin, sizeof bin, "%s/scale_app", dir);
		snprintf(mark, sizeof mark, "%s/started", dir);
		snprintf(cmd, sizeof cmd, "cp %s %s", APP, bin);
		CHECK_EQ(system(cmd), 0);
		int port = free_port();
		char ps[16];
		snprintf(ps, sizeof ps, "%d", port);
		const char *argv[] = { bin, "--port", ps, "--workers", k ? "2" : "1", NULL };
		proc p;
		CHECK_EQ(proc_start(&p, argv), 0);
		CHECK(wait_listening(port, 5000));
		/* the "new build" never becomes ready */
		unlink(bin);
		FILE *f = fopen(bin, "w");
		CHECK(f != NULL);
		fprintf(f, "#!/bin/sh\necho $$ > %s\nexec sleep 30\n", mark);
		fclose(f);
		chmod(bin, 0755);
		CHECK_EQ(kill(p.pid, SIGUSR2), 0);
		long long dl = now_ms() + 5000;
		while (access(mark, F_OK) != 0 && now_ms() < dl)
			usleep(10000);
		usleep(50000);
		FILE *m = fopen(mark, "r");
		CHECK(m != NULL);
		int next = 0;
		CHECK_EQ(fscanf(m, "%d", &next), 1);
		fclose(m);
		long long t0 = now_ms();
		CHECK_EQ(proc_wait(&p, SIGTERM), 0);
		CHECK(now_ms() - t0 < 5000);
		CHECK(gone(next, 5000));
		unlink(bin);
		unlink(mark);
		rmdir(dir);
	}
}
