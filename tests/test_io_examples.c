/* SPDX-License-Identifier: MIT */
/* Tests: the io example programs (examples/echo_server, echo_client,
 * stream_chunks) run as a user would run them, and checked by their output
 * and exit status.
 *
 * Each example is started from AW_EXAMPLES_DIR (set by tests/meson.build to
 * <build>/examples) with fork/exec; its stdout and stderr are captured
 * through pipes. The echo server gets a free port (bound to port 0 here,
 * closed, then passed with --port) and is waited for by its "listening on"
 * line. Every started process is killed and reaped before its test returns,
 * also when a check fails.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AW_EXAMPLES_DIR
#error "AW_EXAMPLES_DIR must name the directory of the built examples"
#endif

#define OUT_MAX (64 * 1024)

/* ---- running an example ----------------------------------------------------- */

typedef struct proc {
	const char *name;
	pid_t pid;             /* 0 once reaped (or never started) */
	int fd[2];             /* stdout, stderr pipes (read ends); -1 when closed */
	char buf[2][OUT_MAX];  /* what they said, NUL-terminated */
	size_t len[2];
	int status;            /* waitpid status, once reaped */
} proc;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Start AW_EXAMPLES_DIR/argv[0] with stdin from /dev/null and, if tmpdir is
 * non-NULL, TMPDIR=tmpdir. argv is NULL-terminated. false (after recording a
 * failure) if it could not be started. SIGALRM ends it after 25 s whatever
 * happens, so a hang cannot outlive the test. */
static bool start(proc *p, const char *tmpdir, char *const argv[])
{
	memset(p, 0, sizeof *p);
	p->name = argv[0];
	p->fd[0] = p->fd[1] = -1;
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", AW_EXAMPLES_DIR, argv[0]);
	if (access(path, X_OK) != 0) {
		aw_test_fail(__FILE__, __LINE__, "%s: not built or not executable: %s", path, strerror(errno));
		return false;
	}
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) != 0)
		return aw_test_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno)), false;
	if (pipe2(pe, O_CLOEXEC) != 0) {
		close(po[0]), close(po[1]);
		return aw_test_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno)), false;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		aw_test_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		return false;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (tmpdir)
			setenv("TMPDIR", tmpdir, 1);
		alarm(25);   /* survives exec */
		execv(path, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	p->pid = pid;
	p->fd[0] = po[0];
	p->fd[1] = pe[0];
	return true;
}

/* Read what is there (waiting up to timeout_ms for something). Returns
 * false once both pipes are closed. */
static bool pump(proc *p, int timeout_ms)
{
	struct pollfd fds[2];
	for (int i = 0; i < 2; i++)
		fds[i] = (struct pollfd){ .fd = p->fd[i], .events = POLLIN };   /* -1: ignored */
	if (p->fd[0] < 0 && p->fd[1] < 0)
		return false;
	int n = poll(fds, 2, timeout_ms);
	if (n <= 0)
		return true;
	for (int i = 0; i < 2; i++) {
		if (p->fd[i] < 0 || !fds[i].revents)
			continue;
		char tmp[4096];
		ssize_t r = read(p->fd[i], tmp, sizeof tmp);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(p->fd[i]);
			p->fd[i] = -1;
			continue;
		}
		size_t room = OUT_MAX - 1 - p->len[i];
		size_t take = (size_t)r < room ? (size_t)r : room;
		memcpy(p->buf[i] + p->len[i], tmp, take);
		p->len[i] += take;
		p->buf[i][p->len[i]] = '\0';
	}
	return true;
}

/* Wait (up to `seconds`) until stdout contains `text`. */
static bool wait_for_output(proc *p, const char *text, double seconds)
{
	double give_up = now_s() + seconds;
	while (!strstr(p->buf[0], text)) {
		if (now_s() >= give_up || !pump(p, 50))
			return strstr(p->buf[0], text) != NULL;
	}
	return true;
}

/* Read to the end of its output and reap it, killing it (SIGKILL) if it is
 * still running after `seconds`. Closes the pipes. Safe to call twice.
 * Returns false if it had to be killed. */
static bool finish(proc *p, double seconds)
{
	if (!p->pid)
		return true;
	bool in_time = true;
	double give_up = now_s() + seconds;
	while (pump(p, 50)) {
		if (now_s() >= give_up) {
			in_time = false;
			kill(p->pid, SIGKILL);
			break;
		}
	}
	for (int i = 0; i < 2; i++)
		if (p->fd[i] >= 0)
			close(p->fd[i]), p->fd[i] = -1;
	while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
		;
	p->pid = 0;
	return in_time;
}

/* Run an example to its end. */
static bool run(proc *p, const char *tmpdir, char *const argv[])
{
	if (!start(p, tmpdir, argv))
		return false;
	if (!finish(p, 20)) {
		aw_test_fail(__FILE__, __LINE__, "%s did not finish in 20 s; stdout:\n%s", argv[0], p->buf[0]);
		return false;
	}
	return true;
}

/* Exit status 0 and, unless stderr_ok, nothing on stderr. */
static bool check_exit_0(const proc *p, bool stderr_ok)
{
	if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0) {
		aw_test_fail(__FILE__, __LINE__, "%s: %s %d\n--- stdout:\n%s--- stderr:\n%s", p->name,
			     WIFEXITED(p->status) ? "exit status" : "killed by signal",
			     WIFEXITED(p->status) ? WEXITSTATUS(p->status) : WTERMSIG(p->status), p->buf[0], p->buf[1]);
		return false;
	}
	if (!stderr_ok && p->buf[1][0]) {
		aw_test_fail(__FILE__, __LINE__, "%s: unexpected stderr:\n%s", p->name, p->buf[1]);
		return false;
	}
	return true;
}

/* Whether `line` is a whole line of text. */
static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}
#define CHECK_LINE(p, line)                                                                            \
	do {                                                                                           \
		if (!has_line((p)->buf[0], (line))) {                                                  \
			aw_test_fail(__FILE__, __LINE__, "%s: no line \"%s\" in:\n%s", (p)->name, (line), \
				     (p)->buf[0]);                                                     \
			return;                                                                        \
		}                                                                                      \
	} while (0)

/* ---- sockets from the test's side ------------------------------------------- */

/* A port nobody listens on right now: bind port 0, note it, close. */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int port = -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* A blocking connection to 127.0.0.1:port with 5 s send/receive timeouts. */
static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send msg on fd and read exactly as many bytes back; true if they match. */
static bool echoes(int fd, const char *msg)
{
	size_t n = strlen(msg);
	if (send(fd, msg, n, MSG_NOSIGNAL) != (ssize_t)n)
		return false;
	char back[256];
	size_t got = 0;
	while (got < n && got < sizeof back) {
		ssize_t r = recv(fd, back + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return got == n && memcmp(back, msg, n) == 0;
}

/* ---- echo_server + echo_client ---------------------------------------------- */

typedef struct server {
	proc p;
	int port;
	char port_arg[16];
} server;

/* Start echo_server on a free port and wait for its "listening on" line. */
static bool start_server(server *s)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		s->port = free_port();
		if (s->port <= 0) {
			aw_test_fail(__FILE__, __LINE__, "no free port: %s", strerror(errno));
			return false;
		}
		snprintf(s->port_arg, sizeof s->port_arg, "%d", s->port);
		char *argv[] = { "echo_server", "--port", s->port_arg, NULL };
		if (!start(&s->p, NULL, argv))
			return false;
		char want[64];
		snprintf(want, sizeof want, "listening on 127.0.0.1:%d\n", s->port);
		if (wait_for_output(&s->p, want, 10))
			return true;
		finish(&s->p, 2);
		/* Someone took the port between our probe and the server's
		 * bind: try another one. Anything else is a failure. */
		if (!strstr(s->p.buf[1], "in use"))
			break;
	}
	aw_test_fail(__FILE__, __LINE__, "echo_server did not start listening; stdout:\n%s--- stderr:\n%s",
		     s->p.buf[0], s->p.buf[1]);
	return false;
}

/* Signal the server and check it stops cleanly: exit 0, the shutdown lines,
 * nothing on stderr unless stderr_ok. */
static void stop_server(server *s, int sig, bool stderr_ok)
{
	kill(s->p.pid, sig);
	if (!finish(&s->p, 10)) {
		aw_test_fail(__FILE__, __LINE__, "echo_server did not stop within 10 s of signal %d; stdout:\n%s", sig,
			     s->p.buf[0]);
		return;
	}
	if (!check_exit_0(&s->p, stderr_ok))
		return;
	char want[64];
	snprintf(want, sizeof want, "received SIG%s, shutting down", sigabbrev_np(sig));
	CHECK(strstr(s->p.buf[0], want) != NULL);
	CHECK_LINE(&s->p, "echo server stopped");
	/* "stopped" is the last line: every connection's exit ran before it. */
	const char *last = strstr(s->p.buf[0], "echo server stopped\n");
	CHECK(last && last[strlen("echo server stopped\n")] == '\0');
}

static void client_round_trip(server *s)
{
	static proc c;
	char *argv[] = { "echo_client", "--port", s->port_arg, "hello", "async with, in C", "", "last one", NULL };
	if (!run(&c, NULL, argv) || !check_exit_0(&c, false))
		return;
	CHECK_STR(c.buf[0], "hello\nasync with, in C\n\nlast one\n");

	/* A second client, with --host given: the server serves on. */
	char *again[] = { "echo_client", "--host", "127.0.0.1", "--port", s->port_arg, "again", NULL };
	if (!run(&c, NULL, again) || !check_exit_0(&c, false))
		return;
	CHECK_STR(c.buf[0], "again\n");
}

AW_TEST(echo_client_round_trips_through_echo_server_which_stops_cleanly_on_sigterm)
{
	static server s;
	if (!start_server(&s))
		return;
	client_round_trip(&s);
	if (aw_test_failed()) {
		finish(&s.p, 0);
		return;
	}
	stop_server(&s, SIGTERM, false);
	finish(&s.p, 0);
	CHECK(strstr(s.p.buf[0], "(2 connections served)") != NULL);
}

/* Many connections at once, each its own task: all echo, interleaved. */
static void many_connections(server *s, int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		fds[i] = connect_to(s->port);
		CHECK(fds[i] >= 0);
	}
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < n; i++) {
			char msg[64];
			snprintf(msg, sizeof msg, "connection %d, round %d", i, round);
			CHECK(echoes(fds[i], msg));
		}
	}
}

AW_TEST(echo_server_serves_many_connections_at_once)
{
	static server s;
	if (!start_server(&s))
		return;
	int fds[50];
	for (int i = 0; i < 50; i++)
		fds[i] = -1;
	many_connections(&s, fds, 50);
	for (int i = 0; i < 50; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	if (aw_test_failed()) {
		finish(&s.p, 0);
		return;
	}
	stop_server(&s, SIGTERM, false);
	finish(&s.p, 0);
}

/* A connection still open at shutdown: its task is cancelled, its exit
 * closes the stream (the client sees end of stream), and the server still
 * exits 0. SIGINT works like SIGTERM. */
static void open_connection_at_shutdown(server *s, int fd)
{
	CHECK(fd >= 0);
	CHECK(echoes(fd, "still here"));
	stop_server(s, SIGINT, false);
	if (aw_test_failed())
		return;
	char b;
	CHECK_EQ(recv(fd, &b, 1, 0), 0);   /* closed by the server: EOF, not a timeout */
}

AW_TEST(echo_server_closes_open_connections_and_exits_0_on_sigint)
{
	static server s;
	if (!start_server(&s))
		return;
	int fd = connect_to(s.port);
	open_connection_at_shutdown(&s, fd);
	if (fd >= 0)
		close(fd);
	finish(&s.p, 0);
}

/* A client that resets its connection ends only its own task: the server
 * takes it as routine (nothing on stderr) and serves the next client. */
static void reset_then_serve(server *s)
{
	int fd = connect_to(s->port);
	CHECK(fd >= 0);
	bool ok = echoes(fd, "about to reset");
	/* Unread data plus SO_LINGER 0: close sends RST. */
	send(fd, "unread", 6, MSG_NOSIGNAL);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
	CHECK(ok);
	static proc c;
	char *argv[] = { "echo_client", "--port", s->port_arg, "after the reset", NULL };
	if (!run(&c, NULL, argv) || !check_exit_0(&c, false))
		return;
	CHECK_STR(c.buf[0], "after the reset\n");
	stop_server(s, SIGTERM, false);   /* a reset is routine: nothing on stderr */
}

AW_TEST(echo_server_survives_a_client_that_resets_its_connection)
{
	static server s;
	if (!start_server(&s))
		return;
	reset_then_serve(&s);
	finish(&s.p, 0);
}

AW_TEST(echo_client_against_a_closed_port_exits_nonzero_with_refused)
{
	int port = free_port();
	CHECK_GT(port, 0);
	char port_arg[16];
	snprintf(port_arg, sizeof port_arg, "%d", port);
	static proc c;
	char *argv[] = { "echo_client", "--port", port_arg, "hello", NULL };
	if (!run(&c, NULL, argv))
		return;
	CHECK(WIFEXITED(c.status));
	CHECK_EQ(WEXITSTATUS(c.status), 1);
	CHECK_STR(c.buf[0], "");
	/* The error, printed once by aw_error_print: message, code, where. */
	CHECK(strstr(c.buf[1], "echo_client: ") == c.buf[1]);
	CHECK(strstr(c.buf[1], "refused") != NULL);
	CHECK(strstr(c.buf[1], port_arg) != NULL);
	CHECK(strstr(c.buf[1], "main task failed") == NULL);
}

AW_TEST(echo_server_on_a_port_in_use_exits_1_with_the_error)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 1) == 0 &&
		  getsockname(fd, (struct sockaddr *)&a, &len) == 0;
	char port_arg[16];
	snprintf(port_arg, sizeof port_arg, "%d", ntohs(a.sin_port));
	static proc p;
	char *argv[] = { "echo_server", "--port", port_arg, NULL };
	bool ran = ok && run(&p, NULL, argv);
	close(fd);
	CHECK(ok);
	if (!ran)
		return;
	CHECK(WIFEXITED(p.status));
	CHECK_EQ(WEXITSTATUS(p.status), 1);
	CHECK(strstr(p.buf[0], "listening") == NULL);
	CHECK(strstr(p.buf[1], "echo_server: ") == p.buf[1]);
	CHECK(strstr(p.buf[1], strerror(EADDRINUSE)) != NULL);
}

AW_TEST(echo_programs_reject_bad_arguments_with_usage)
{
	static proc p;
	char *server_argv[] = { "echo_server", "--port", "70000", NULL };
	if (!run(&p, NULL, server_argv))
		return;
	CHECK(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 2);
	CHECK(strstr(p.buf[1], "usage: echo_server") != NULL);
	char *client_argv[] = { "echo_client", "--port", "8000", NULL };   /* no message */
	if (!run(&p, NULL, client_argv))
		return;
	CHECK(WIFEXITED(p.status) && WEXITSTATUS(p.status) == 2);
	CHECK(strstr(p.buf[1], "usage: echo_client") != NULL);
}

/* ---- stream_chunks ------------------------------------------------------------ */

static void stream_chunks_output(const proc *p)
{
	/* 1. the temp file: 2000 lines of 64 bytes, in 16 KiB chunks. */
	CHECK_LINE(p, "reading a temp file of 2000 lines");
	CHECK_LINE(p, "file chunk 1: 16384 bytes, running total 16384 bytes, 256 lines");
	CHECK_LINE(p, "file chunk 8: 13312 bytes, running total 128000 bytes, 2000 lines");
	CHECK_LINE(p, "file total: 128000 bytes, 2000 lines");
	/* 2. the socket: 32 chunks of 16 lines, however TCP splits them. */
	CHECK_LINE(p, "socket total: 32768 bytes, 512 lines");
	/* 3. breaking out early closes the generator, then the connection. */
	const char *early = strstr(p->buf[0], "== a socket, stopping after the first 100 lines\n");
	CHECK(early != NULL);
	const char *closed = strstr(early, "reader: the loop was left early (");
	CHECK(closed != NULL);
	const char *head = strstr(early, "head: stopped at line 100: line 00100: async with ... async for chunk in stream");
	CHECK(head != NULL);
	CHECK(closed < head);   /* the generator's teardown ran when the loop was left */
	CHECK(strstr(early, "socket total:") == NULL);
}

AW_TEST(stream_chunks_counts_a_temp_file_and_a_socket_and_stops_early)
{
	char dir[] = "/tmp/aw-test-io-examples-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	static proc p;
	char *argv[] = { "stream_chunks", NULL };
	bool ran = run(&p, dir, argv);
	int removed = rmdir(dir);   /* the temp file is gone: the dir is empty */
	if (removed != 0) {
		char cmd[PATH_MAX + 16];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
	if (!ran || !check_exit_0(&p, false))
		return;
	CHECK_EQ(removed, 0);
	stream_chunks_output(&p);
}

AW_TEST(stream_chunks_reads_a_given_file_and_reports_a_missing_one)
{
	/* 100,000 bytes with a newline every 81st byte: 1234 lines. */
	char path[] = "/tmp/aw-test-chunks-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	static char data[100000];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = i % 81 == 80 ? '\n' : 'a' + (char)(i % 26);
	bool written = write(fd, data, sizeof data) == (ssize_t)sizeof data;
	close(fd);
	static proc p;
	char *argv[] = { "stream_chunks", path, NULL };
	bool ran = written && run(&p, NULL, argv);
	unlink(path);
	CHECK(written);
	if (!ran || !check_exit_0(&p, false))
		return;
	char want[PATH_MAX + 16];
	snprintf(want, sizeof want, "reading %s", path);
	CHECK_LINE(&p, want);
	CHECK_LINE(&p, "file chunk 6: 16384 bytes, running total 98304 bytes, 1213 lines");
	CHECK_LINE(&p, "file chunk 7: 1696 bytes, running total 100000 bytes, 1234 lines");
	CHECK_LINE(&p, "file total: 100000 bytes, 1234 lines");

	/* A missing file: the open error, printed, exit status 1. */
	char *missing[] = { "stream_chunks", "/nonexistent/awith-chunks", NULL };
	if (!run(&p, NULL, missing))
		return;
	CHECK(WIFEXITED(p.status));
	CHECK_EQ(WEXITSTATUS(p.status), 1);
	CHECK(strstr(p.buf[1], "stream_chunks: ") == p.buf[1]);
	CHECK(strstr(p.buf[1], "/nonexistent/awith-chunks") != NULL);
	CHECK(strstr(p.buf[1], strerror(ENOENT)) != NULL);
}
