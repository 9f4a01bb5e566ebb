/* SPDX-License-Identifier: MIT */
/* Tests: the loop's poll backend — which one runs (aw_config.backend,
 * AWITH_BACKEND, auto and its fallback when the kernel refuses io_uring),
 * and what both must keep: a reused fd number never sees its
 * predecessor's readiness, a closed socket is released at once. */
#include "harness.h"

#include "awith/core.h"
#include "awith/ext.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AW_TEST_HAVE_IO_URING
#define AW_TEST_HAVE_IO_URING 0
#endif

static const char *seen;

static int note_backend(void *arg)
{
	(void)arg;
	seen = aw_loop_backend();
	return 0;
}

/* Run a loop with this backend choice (log captured into buf). */
static int run_with(int choice, char *buf, size_t len)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = choice;
	FILE *log = fmemopen(buf, len, "w");
	if (!log)
		return -errno;
	setvbuf(log, NULL, _IONBF, 0);
	cfg.log = log;
	seen = NULL;
	int rc = aw_run_config(&cfg, note_backend, NULL);
	fclose(log);
	return rc;
}

AW_TEST(aw_loop_backend_names_the_backend_the_config_chose)
{
	char log[512] = "";
	CHECK(aw_loop_backend() == NULL);   /* outside a loop */
	CHECK_EQ(run_with(AW_BACKEND_EPOLL, log, sizeof log), 0);
	CHECK(seen && strcmp(seen, "epoll") == 0);
	if (AW_TEST_HAVE_IO_URING) {
		CHECK_EQ(run_with(AW_BACKEND_URING, log, sizeof log), 0);
		CHECK(seen && strcmp(seen, "io_uring") == 0);
		CHECK_EQ(run_with(AW_BACKEND_AUTO, log, sizeof log), 0);
		CHECK(seen && strcmp(seen, "io_uring") == 0);   /* this kernel allows it */
		CHECK_EQ(log[0], '\0');                         /* and nothing is said */
	} else {
		CHECK_EQ(run_with(AW_BACKEND_URING, log, sizeof log), -ENOSYS);
		CHECK(strstr(log, "this build has none") != NULL);
	}
}

AW_TEST(awith_backend_env_var_chooses_the_backend_when_the_config_does_not)
{
	char log[512] = "";
	setenv("AWITH_BACKEND", "epoll", 1);
	CHECK_EQ(run_with(AW_BACKEND_DEFAULT, log, sizeof log), 0);
	CHECK(seen && strcmp(seen, "epoll") == 0);
	if (AW_TEST_HAVE_IO_URING) {
		setenv("AWITH_BACKEND", "uring", 1);
		CHECK_EQ(run_with(AW_BACKEND_DEFAULT, log, sizeof log), 0);
		CHECK(seen && strcmp(seen, "io_uring") == 0);
		/* An explicit choice in the config wins over the variable. */
		CHECK_EQ(run_with(AW_BACKEND_EPOLL, log, sizeof log), 0);
		CHECK(seen && strcmp(seen, "epoll") == 0);
	}
}

AW_TEST(an_unknown_awith_backend_value_fails_aw_run_with_einval_and_says_why)
{
	char log[512] = "";
	setenv("AWITH_BACKEND", "kqueue", 1);
	CHECK_EQ(run_with(AW_BACKEND_DEFAULT, log, sizeof log), -EINVAL);
	CHECK(seen == NULL);   /* main never ran */
	CHECK(strstr(log, "AWITH_BACKEND=kqueue: unknown backend") != NULL);
	CHECK_EQ(run_with(42, log, sizeof log), -EINVAL);
}

/* The suite's uring pass (scripts/test.sh, AWITH_BACKEND=uring) must really
 * run on io_uring, and the default pass on what auto picks: this is the
 * test that proves which backend the other programs of the pass ran on. */
AW_TEST(the_loop_runs_on_the_backend_awith_backend_asks_for)
{
	const char *want = getenv("AWITH_BACKEND");
	int rc = aw_run(note_backend, NULL);
	CHECK_EQ(rc, 0);
	CHECK(seen != NULL);
	if (want && strcmp(want, "epoll") == 0)
		CHECK(strcmp(seen, "epoll") == 0);
	else if (want && strcmp(want, "uring") == 0)
		CHECK(strcmp(seen, "io_uring") == 0);
	else
		CHECK(strcmp(seen, AW_TEST_HAVE_IO_URING ? "io_uring" : "epoll") == 0);
	printf("     backend: %s (AWITH_BACKEND=%s)\n", seen, want ? want : "");
}

/* A seccomp filter that makes io_uring_setup fail with `err`, as a
 * container runtime's default profile does. For this forked test only. */
static int refuse_io_uring(int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -errno;
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		return -errno;
	return 0;
}

AW_TEST(auto_falls_back_to_epoll_when_seccomp_refuses_io_uring_and_says_so_once)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;   /* no io_uring in this build: auto is epoll, nothing to fall back from */
	CHECK_EQ(refuse_io_uring(EPERM), 0);
	char log[512] = "";
	CHECK_EQ(run_with(AW_BACKEND_AUTO, log, sizeof log), 0);
	CHECK(seen && strcmp(seen, "epoll") == 0);
	CHECK(strstr(log, "io_uring unavailable") != NULL);
	CHECK(strstr(log, "EPERM") != NULL);
	/* Said once per process: the next loop falls back quietly. */
	char log2[512] = "";
	CHECK_EQ(run_with(AW_BACKEND_AUTO, log2, sizeof log2), 0);
	CHECK(seen && strcmp(seen, "epoll") == 0);
	CHECK_EQ(log2[0], '\0');
	/* Asked for explicitly, io_uring is that or nothing. */
	CHECK_EQ(run_with(AW_BACKEND_URING, log2, sizeof log2), -EPERM);
	CHECK(seen == NULL);
	CHECK(strstr(log2, "io_uring backend requested but unavailable") != NULL);
}

AW_TEST(auto_falls_back_to_epoll_when_the_kernel_has_no_io_uring)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	CHECK_EQ(refuse_io_uring(ENOSYS), 0);
	char log[512] = "";
	CHECK_EQ(run_with(AW_BACKEND_AUTO, log, sizeof log), 0);
	CHECK(seen && strcmp(seen, "epoll") == 0);
	CHECK(strstr(log, "ENOSYS") != NULL);
}

/* ---- what both backends keep ------------------------------------------- */

struct reuse { int rc, wait_rc, nread; };

/* The old pipe's read end becomes readable while it is still registered
 * (its readiness is on its way: in the completion ring, or in task work
 * the next io_uring_enter runs), then is closed and its number reused by a
 * new, empty pipe: a wait on the new one must not wake for the old data. */
static int main_reuse(void *arg)
{
	struct reuse *r = arg;
	int a[2], b[2];
	if (pipe2(a, O_NONBLOCK | O_CLOEXEC) != 0)
		return -errno;
	int num = a[0];
	EXPECT_EQ(aw_fd_watch(num), 0);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* a loop turn: the registration is in the kernel */
	EXPECT_EQ(write(a[1], "x", 1), 1);  /* readiness is on its way */
	EXPECT_EQ(aw_fd_close(num), 0);
	if (pipe2(b, O_NONBLOCK | O_CLOEXEC) != 0)
		return -errno;
	if (b[0] != num) {                   /* take the old number */
		EXPECT_EQ(dup3(b[0], num, O_CLOEXEC), num);
		close(b[0]);
	}
	r->wait_rc = aw_fd_wait(num, AW_READABLE, aw_deadline_after(AW_MS(50)));
	aw_error_clear();
	char c;
	r->nread = (int)read(num, &c, 1);
	EXPECT_EQ(aw_fd_close(num), 0);
	close(a[1]);
	close(b[1]);
	return 0;
}

AW_TEST(a_reused_fd_number_never_sees_its_predecessors_readiness)
{
	struct reuse r = { 1, 1, 1 };
	CHECK_EQ(aw_run(main_reuse, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK_EQ(r.nread, -1);   /* the new pipe is empty */
}

struct release { int wait_rc; ssize_t nread; aw_time took; };

/* io_uring's poll holds a reference to the file: the removal queued by
 * aw_fd_close must reach the kernel with the next loop turn, or the peer
 * would not see the close. */
static int main_release(void *arg)
{
	struct release *r = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	EXPECT_EQ(aw_fd_watch(sv[0]), 0);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* a loop turn: the poll is armed */
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	aw_time t0 = aw_now();
	r->wait_rc = aw_fd_wait(sv[1], AW_READABLE, aw_deadline_after(AW_SEC(2)));
	r->took = aw_now() - t0;
	char c;
	r->nread = read(sv[1], &c, 1);
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(a_closed_watched_socket_is_released_by_the_next_loop_turn)
{
	struct release r = { 1, 1, 0 };
	CHECK_EQ(aw_run(main_release, &r), 0);
	CHECK_EQ(r.wait_rc, 0);
	CHECK_EQ(r.nread, 0);   /* EOF: the peer's end is really closed */
	CHECK(r.took < AW_MS(500));
}

/* A socket already readable when its poll is armed, forgotten in the same
 * turn: the poll and its removal reach the kernel together, while the
 * poll's wakeup is being handled. The removal must still end it: an
 * IORING_OP_POLL_REMOVE then failed with -EALREADY, and the multishot poll
 * kept the closed socket open (its peer never saw the end). */
static int main_release_readable(void *arg)
{
	struct release *r = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	EXPECT_EQ(write(sv[1], "x", 1), 1);   /* readable before it is watched */
	EXPECT_EQ(aw_fd_watch(sv[0]), 0);
	aw_fd_forget(sv[0]);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);     /* a loop turn: both go in, the fd still open */
	close(sv[0]);
	aw_time t0 = aw_now();
	r->wait_rc = aw_fd_wait(sv[1], AW_READABLE, aw_deadline_after(AW_SEC(2)));
	aw_error_clear();
	r->took = aw_now() - t0;
	char c;
	r->nread = read(sv[1], &c, 1);
	if (r->nread < 0 && errno == ECONNRESET)
		r->nread = 0;   /* closed with our byte unread: a reset, the end too */
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(a_socket_forgotten_as_its_poll_fires_is_released_by_the_next_loop_turn)
{
	for (int i = 0; i < 5; i++) {
		struct release r = { 1, 1, 0 };
		CHECK_EQ(aw_run(main_release_readable, &r), 0);
		CHECK_EQ(r.wait_rc, 0);
		CHECK_EQ(r.nread, 0);   /* EOF or reset: the peer's end is really closed */
		CHECK(r.took < AW_MS(500));
	}
}

/* ---- aw_fd_recv: one io_uring operation per read ----------------------- */

struct rx {
	int fd;
	char buf[64];
	size_t got;
	int rc;
	aw_time deadline;
	bool ended;
};

static int receiver(void *arg)
{
	struct rx *r = arg;
	r->rc = aw_fd_recv(r->fd, r->buf, sizeof r->buf, &r->got, r->deadline);
	aw_error_clear();   /* the test reads rc */
	r->ended = true;
	return 0;
}

static bool on_uring(void)
{
	const char *b = aw_loop_backend();
	return b && strcmp(b, "io_uring") == 0;
}

struct recv_case { int rc_epoll; bool uring; int rc; size_t got; char text[16]; };

static int main_recv(void *arg)
{
	struct recv_case *c = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	c->uring = on_uring();
	struct rx r = { .fd = sv[0], .deadline = aw_deadline_after(AW_SEC(5)) };
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, receiver, &r, "receiver"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* it waits in the kernel now */
	EXPECT_EQ(write(sv[1], "hello", 5), 5);
	EXPECT_EQ(aw_task_join(t), 0);
	c->rc = r.rc;
	c->got = r.got;
	snprintf(c->text, sizeof c->text, "%.*s", (int)r.got, r.buf);
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	close(sv[1]);
	return 0;
}

AW_TEST(fd_recv_receives_on_io_uring_and_says_eopnotsupp_on_epoll)
{
	struct recv_case c = { 0 };
	CHECK_EQ(aw_run(main_recv, &c), 0);
	if (c.uring) {
		CHECK_EQ(c.rc, 0);
		CHECK_EQ(c.got, 5);
		CHECK_STR(c.text, "hello");
	} else {
		CHECK_EQ(c.rc, -EOPNOTSUPP);
		CHECK_EQ(c.got, 0);
	}
	char log[256];
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = AW_BACKEND_EPOLL;
	FILE *f = fmemopen(log, sizeof log, "w");
	cfg.log = f;
	CHECK_EQ(aw_run_config(&cfg, main_recv, &c), 0);
	fclose(f);
	CHECK(!c.uring);
	CHECK_EQ(c.rc, -EOPNOTSUPP);
}

/* The buffer's owner abandons the receive (cancelled, or past its
 * deadline); afterwards the peer writes. The bytes must stay in the socket
 * for whoever reads next, the abandoned buffer must stay untouched, and no
 * completion may reach anyone: the call returned only once the kernel had
 * let go. */
struct abandon { bool uring; int rc; size_t got; bool untouched; char later[16]; int how; };

static int main_abandon(void *arg)
{
	struct abandon *c = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	c->uring = on_uring();
	struct rx *r = calloc(1, sizeof *r);
	r->fd = sv[0];
	memset(r->buf, 0x5a, sizeof r->buf);
	r->deadline = c->how == 1 ? aw_deadline_after(AW_MS(20)) : AW_NEVER;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, receiver, r, "receiver"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* the receive is in flight */
	if (c->how == 0)
		aw_task_cancel(t);
	if (aw_task_join(t) < 0)
		aw_error_clear();
	aw_error_clear();
	c->rc = r->rc;
	c->got = r->got;
	/* Now the peer writes, and the loop turns a few times. */
	EXPECT_EQ(write(sv[1], "late", 4), 4);
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	c->untouched = true;
	for (size_t i = 0; i < sizeof r->buf; i++)
		c->untouched = c->untouched && r->buf[i] == 0x5a;
	free(r);
	char b[16] = "";
	ssize_t n = read(sv[0], b, sizeof b - 1);
	snprintf(c->later, sizeof c->later, "%.*s", n > 0 ? (int)n : 0, b);
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	close(sv[1]);
	return 0;
}

AW_TEST(a_cancelled_fd_recv_leaves_the_buffer_and_the_bytes_alone)
{
	/* The single receive into the caller's buffer (the multishot mode
	 * queues the late bytes in the loop instead: test_recv_multishot). */
	setenv("AWITH_URING_RECV", "single", 1);
	struct abandon c = { .how = 0 };
	CHECK_EQ(aw_run(main_abandon, &c), 0);
	if (!c.uring)
		return;   /* epoll: -EOPNOTSUPP, nothing was in flight */
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK_EQ(c.got, 0);
	CHECK(c.untouched);
	CHECK_STR(c.later, "late");   /* still in the socket: the receive was really cancelled */
}

AW_TEST(an_fd_recv_past_its_deadline_returns_etimedout_and_leaves_the_bytes_alone)
{
	/* The single receive into the caller's buffer (the multishot mode
	 * queues the late bytes in the loop instead: test_recv_multishot). */
	setenv("AWITH_URING_RECV", "single", 1);
	struct abandon c = { .how = 1 };
	CHECK_EQ(aw_run(main_abandon, &c), 0);
	if (!c.uring)
		return;
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK_EQ(c.got, 0);
	CHECK(c.untouched);
	CHECK_STR(c.later, "late");
}

/* aw_fd_close of an fd with a receive in flight: when it returns, the
 * kernel has let go of the buffer (the socket lives on through a dup, so a
 * receive left behind would still take the bytes). */
struct forget { bool uring; int rc; bool untouched_at_once, untouched_later; char later[16]; };

static int main_forget(void *arg)
{
	struct forget *c = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	c->uring = on_uring();
	int keep = dup(sv[0]);
	struct rx *r = calloc(1, sizeof *r);
	r->fd = sv[0];
	r->deadline = AW_NEVER;
	memset(r->buf, 0x5a, sizeof r->buf);
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, receiver, r, "receiver"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	EXPECT_EQ(write(sv[1], "late", 4), 4);   /* before any loop turn */
	c->untouched_at_once = true;
	for (size_t i = 0; i < sizeof r->buf; i++)
		c->untouched_at_once = c->untouched_at_once && r->buf[i] == 0x5a;
	if (aw_task_join(t) < 0)
		aw_error_clear();
	aw_error_clear();
	c->rc = r->rc;
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	c->untouched_later = true;
	for (size_t i = 0; i < sizeof r->buf; i++)
		c->untouched_later = c->untouched_later && r->buf[i] == 0x5a;
	free(r);
	char b[16] = "";
	ssize_t n = read(keep, b, sizeof b - 1);
	snprintf(c->later, sizeof c->later, "%.*s", n > 0 ? (int)n : 0, b);
	close(keep);
	close(sv[1]);
	return 0;
}

AW_TEST(closing_an_fd_with_a_receive_in_flight_returns_once_the_kernel_let_go)
{
	struct forget c = { 0 };
	CHECK_EQ(aw_run(main_forget, &c), 0);
	if (!c.uring)
		return;
	CHECK_EQ(c.rc, -EBADF);
	CHECK(c.untouched_at_once);
	CHECK(c.untouched_later);
	CHECK_STR(c.later, "late");
}

/* ---- aw_fd_send: sends through io_uring ------------------------------- */

#define BIG (256 * 1024)   /* many times the small send buffer below */

/* A socketpair whose sending side has a small buffer (sends must wait for
 * the peer, and come back short). */
static int small_pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	int sz = 4096;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	return 0;
}

static void fill_pattern(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + i / 251);
}

/* Read what is in the socket now (non-blocking) and check it continues the
 * pattern from *off. Returns false on a wrong byte. */
static bool drain_check(int fd, size_t *off)
{
	unsigned char b[8192];
	bool ok = true;
	for (;;) {
		ssize_t n = read(fd, b, sizeof b);
		if (n <= 0)
			return ok;
		for (ssize_t i = 0; i < n; i++, (*off)++)
			ok = ok && b[i] == (unsigned char)(*off * 7 + *off / 251);
	}
}

struct tx {
	int fd;
	unsigned char *buf;
	size_t len, sent;
	int rc;
	aw_time deadline, took, ended;
};

static int sender(void *arg)
{
	struct tx *x = arg;
	aw_time t0 = aw_now();
	x->rc = aw_fd_send(x->fd, x->buf, x->len, &x->sent, x->deadline);
	x->ended = aw_now();
	x->took = x->ended - t0;
	aw_error_clear();   /* the test reads rc */
	return 0;
}

/* A reader task: waits for the peer's bytes and checks them. */
struct peer { int fd; size_t want, got; bool ok; aw_time pause; };

static int peer_reader(void *arg)
{
	struct peer *p = arg;
	p->ok = true;
	if (p->pause && aw_sleep(p->pause))
		return -1;
	while (p->got < p->want) {
		if (aw_fd_wait(p->fd, AW_READABLE, aw_deadline_after(AW_SEC(5))))
			return -1;
		p->ok = drain_check(p->fd, &p->got) && p->ok;
	}
	return 0;
}

struct send_case { bool uring; int rc; size_t sent, got; bool ok; aw_time took; int rc_epoll; };

/* The peer pauses 50 ms before reading (the send waits in the kernel),
 * then reads everything: the sender is woken only when all of it went. */
static int main_send(void *arg)
{
	struct send_case *c = arg;
	int sv[2];
	if (small_pair(sv))
		return -1;
	c->uring = on_uring();
	struct tx x = { .fd = sv[0], .len = BIG, .deadline = aw_deadline_after(AW_SEC(5)) };
	x.buf = malloc(BIG);
	fill_pattern(x.buf, BIG);
	struct peer p = { .fd = sv[1], .want = BIG, .pause = AW_MS(50) };
	aw_task *ts, *tp;
	EXPECT_EQ(aw_spawn(&tp, peer_reader, &p, "peer"), 0);
	EXPECT_EQ(aw_spawn(&ts, sender, &x, "sender"), 0);
	EXPECT_EQ(aw_task_join(ts), 0);
	if (!c->uring)
		aw_task_cancel(tp);   /* epoll: nothing was sent */
	if (aw_task_join(tp))
		aw_error_clear();
	c->rc = x.rc;
	c->sent = x.sent;
	c->took = x.took;
	c->got = p.got;
	c->ok = p.ok;
	free(x.buf);
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(fd_send_sends_everything_the_peer_reads_on_io_uring_and_says_eopnotsupp_on_epoll)
{
	struct send_case c = { 0 };
	CHECK_EQ(aw_run(main_send, &c), 0);
	if (c.uring) {
		CHECK_EQ(c.rc, 0);
		CHECK_EQ(c.sent, BIG);
		CHECK_EQ(c.got, BIG);
		CHECK(c.ok);                    /* the bytes, in order */
		CHECK(c.took >= AW_MS(45));     /* it waited for the peer to read */
	} else {
		CHECK_EQ(c.rc, -EOPNOTSUPP);
		CHECK_EQ(c.sent, 0);
	}
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = AW_BACKEND_EPOLL;
	CHECK_EQ(aw_run_config(&cfg, main_send, &c), 0);
	CHECK(!c.uring);
	CHECK_EQ(c.rc, -EOPNOTSUPP);
}

/* The sender abandons a send the peer does not read (past its deadline,
 * cancelled, or its fd closed under it); then it scribbles over its buffer
 * and the loop turns. The peer must read exactly the bytes the call said
 * went, all of them from before the scribbling: the kernel had let go of
 * the buffer when the call returned. */
struct abandon_send { bool uring; int rc; size_t sent, got; bool ok; aw_time took; int how; };

static int main_abandon_send(void *arg)
{
	struct abandon_send *c = arg;
	int sv[2];
	if (small_pair(sv))
		return -1;
	c->uring = on_uring();
	int keep = dup(sv[0]);
	struct tx x = { .fd = sv[0], .len = BIG };
	x.buf = malloc(BIG);
	fill_pattern(x.buf, BIG);
	aw_time t_set = aw_now();
	x.deadline = c->how == 1 ? aw_deadline_after(AW_MS(30)) : AW_NEVER;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, sender, &x, "sender"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);   /* the send waits for room in the kernel */
	if (c->how == 0)
		aw_task_cancel(t);
	if (c->how == 2)
		EXPECT_EQ(aw_fd_close(sv[0]), 0);
	if (aw_task_join(t) < 0)
		aw_error_clear();
	aw_error_clear();
	c->rc = x.rc;
	c->sent = x.sent;
	/* From when the deadline was set, not from the sender's start: a
	 * loaded machine may start the sender late. */
	c->took = x.ended - t_set;
	memset(x.buf, 'X', BIG);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	c->got = 0;
	c->ok = drain_check(sv[1], &c->got);
	free(x.buf);
	if (c->how != 2)
		EXPECT_EQ(aw_fd_close(sv[0]), 0);
	close(keep);
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(an_fd_send_past_its_deadline_returns_etimedout_and_leaves_the_buffer_alone)
{
	struct abandon_send c = { .how = 1 };
	CHECK_EQ(aw_run(main_abandon_send, &c), 0);
	if (!c.uring)
		return;   /* epoll: -EOPNOTSUPP, nothing was in flight */
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK(c.took >= AW_MS(25));   /* it waited for the peer until the deadline */
	CHECK(c.sent > 0 && c.sent < BIG);
	CHECK_EQ(c.got, c.sent);      /* the count is right */
	CHECK(c.ok);                  /* and no byte was read after the return */
}

AW_TEST(a_cancelled_fd_send_leaves_the_buffer_alone_and_counts_what_went)
{
	struct abandon_send c = { .how = 0 };
	CHECK_EQ(aw_run(main_abandon_send, &c), 0);
	if (!c.uring)
		return;
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK(c.sent > 0 && c.sent < BIG);
	CHECK_EQ(c.got, c.sent);
	CHECK(c.ok);
}

AW_TEST(closing_an_fd_with_a_send_in_flight_returns_once_the_kernel_let_go)
{
	struct abandon_send c = { .how = 2 };
	CHECK_EQ(aw_run(main_abandon_send, &c), 0);
	if (!c.uring)
		return;
	CHECK_EQ(c.rc, -EBADF);
	CHECK(c.sent < BIG);
	CHECK_EQ(c.got, c.sent);
	CHECK(c.ok);
}

/* The same for a send nobody waits for (aw_fd_send_start): aw_fd_close
 * lets the caller free the buffer at once. */
struct orphan_send { bool uring; size_t got; bool ok; int rc_start; };

static int main_orphan_send(void *arg)
{
	struct orphan_send *c = arg;
	int sv[2];
	if (small_pair(sv))
		return -1;
	c->uring = on_uring();
	int keep = dup(sv[0]);
	unsigned char *buf = malloc(BIG);
	fill_pattern(buf, BIG);
	c->rc_start = aw_fd_send_start(sv[0], buf, BIG);
	aw_error_clear();
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);   /* part went, the rest waits for room */
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	memset(buf, 'X', BIG);
	free(buf);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	c->ok = drain_check(sv[1], &c->got);
	close(keep);
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(closing_an_fd_with_a_started_send_nobody_waits_for_lets_the_buffer_go)
{
	struct orphan_send c = { 0 };
	CHECK_EQ(aw_run(main_orphan_send, &c), 0);
	if (!c.uring) {
		CHECK_EQ(c.rc_start, -EOPNOTSUPP);
		return;
	}
	CHECK_EQ(c.rc_start, 0);
	CHECK(c.got > 0 && c.got < BIG);
	CHECK(c.ok);   /* every byte the peer got is from before the close */
}

/* Writes of one loop turn extend the send that has not reached the kernel
 * yet; aw_fd_send_finish collects it; a different buffer is refused while
 * a send is in flight. */
struct extend_case { bool uring; int rc_other, rc_finish, rc_again; size_t sent; bool sending; char text[32]; };

static int main_extend(void *arg)
{
	struct extend_case *c = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	c->uring = on_uring();
	static char msg[] = "hello, world";
	if (aw_fd_send_start(sv[0], msg, 5) != 0)
		goto out;
	EXPECT_EQ(aw_fd_send_start(sv[0], msg, 12), 0);      /* extends it */
	c->rc_other = aw_fd_send_start(sv[0], "other", 5);   /* another buffer */
	aw_error_clear();
	c->sending = aw_fd_sending(sv[0]);
	c->rc_finish = aw_fd_send_finish(sv[0], &c->sent, aw_deadline_after(AW_SEC(5)));
	size_t again = 1;
	c->rc_again = aw_fd_send_finish(sv[0], &again, AW_NEVER);   /* nothing in flight now */
	EXPECT_EQ(again, 0);
	EXPECT_EQ(aw_fd_wait(sv[1], AW_READABLE, aw_deadline_after(AW_SEC(5))), 0);
	ssize_t n = read(sv[1], c->text, sizeof c->text - 1);
	c->text[n > 0 ? n : 0] = 0;
out:
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	EXPECT_EQ(aw_fd_close(sv[1]), 0);
	return 0;
}

AW_TEST(fd_send_start_extends_the_send_of_the_turn_and_finish_collects_it)
{
	struct extend_case c = { 0 };
	CHECK_EQ(aw_run(main_extend, &c), 0);
	if (!c.uring)
		return;
	CHECK_EQ(c.rc_other, -EBUSY);
	CHECK(c.sending);
	CHECK_EQ(c.rc_finish, 0);
	CHECK_EQ(c.sent, 12);
	CHECK_EQ(c.rc_again, 0);
	CHECK_STR(c.text, "hello, world");
}

/* The peer is gone: the send's error is raised as a send(2)'s would be. */
struct gone_case { bool uring; int rc; size_t sent; };

static int main_gone(void *arg)
{
	struct gone_case *c = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	c->uring = on_uring();
	close(sv[1]);
	c->rc = aw_fd_send(sv[0], "hello", 5, &c->sent, aw_deadline_after(AW_SEC(5)));
	aw_error_clear();
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	return 0;
}

AW_TEST(fd_send_to_a_closed_peer_raises_epipe_and_no_sigpipe)
{
	struct gone_case c = { 0 };
	CHECK_EQ(aw_run(main_gone, &c), 0);   /* alive: MSG_NOSIGNAL */
	if (!c.uring)
		return;
	CHECK_EQ(c.rc, -EPIPE);
	CHECK_EQ(c.sent, 0);
}
