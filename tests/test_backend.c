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
