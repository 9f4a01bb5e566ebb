/* SPDX-License-Identifier: MIT */
/* Tests: tasks — spawn, join, cancel, yield, sleep, fd waits, deadlocks. */
#include "harness.h"

#include <awith/core.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* The running test's event log. */
static aw_evlog evlog;

static aw_config default_cfg(void)
{
	aw_config cfg;
	aw_config_default(&cfg);
	return cfg;
}

/* ---- spawn and join ------------------------------------------------------ */

static int return_arg(void *arg) { return (int)(intptr_t)arg; }

static int main_spawn_join(void *arg)
{
	(void)arg;
	aw_task *t;
	int rc = aw_spawn(&t, return_arg, (void *)(intptr_t)42, "answer");
	EXPECT_EQ(rc, 0);
	EXPECT(!aw_task_done(t));
	EXPECT(strcmp(aw_task_name(t), "answer") == 0);
	return aw_task_join(t);
}

AW_TEST(spawn_then_join_returns_the_tasks_result)
{
	CHECK_EQ(aw_run(main_spawn_join, NULL), 42);
}

static int fail_eio(void *arg)
{
	(void)arg;
	int rc = aw_sleep(AW_MS(1));
	if (rc < 0)
		return rc;
	return aw_raise(-EIO, "x");
}

static int main_join_error(void *arg)
{
	int *seen = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, fail_eio, NULL, "failer"), 0);
	EXPECT_EQ(aw_error_pending(), 0);
	int rc = aw_task_join(t);
	EXPECT_EQ(rc, -EIO);
	const aw_error *e = aw_error_current();
	EXPECT(e != NULL);
	if (e) {
		seen[0] = e->code;
		seen[1] = strcmp(e->msg, "x") == 0;
		seen[2] = e->loc && strstr(e->loc->file, "test_task.c") != NULL;
	}
	aw_error_clear();
	return 0;
}

AW_TEST(task_error_moves_to_the_joiner_with_code_and_message)
{
	int seen[3] = { 0 };
	CHECK_EQ(aw_run(main_join_error, seen), 0);
	CHECK_EQ(seen[0], -EIO);
	CHECK(seen[1]);
	CHECK(seen[2]);
}

static int main_join_finished(void *arg)
{
	(void)arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, return_arg, (void *)(intptr_t)7, NULL), 0);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_yield(), 0);
	EXPECT(aw_task_done(t));
	aw_time t0 = aw_now();
	int rc = aw_task_join(t);
	EXPECT(aw_now() - t0 < AW_SEC(1));
	return rc;
}

AW_TEST(join_of_a_task_that_already_finished_returns_its_result)
{
	CHECK_EQ(aw_run(main_join_finished, NULL), 7);
}

static int detached_count;

static int detached_worker(void *arg)
{
	(void)arg;
	if (aw_sleep(AW_MS(5)) == 0 && aw_yield() == 0)
		detached_count++;
	return 0;
}

static int main_detached(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++)
		EXPECT_EQ(aw_spawn(NULL, detached_worker, NULL, NULL), 0);
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, detached_worker, NULL, NULL), 0);
	aw_task_detach(t);
	aw_time deadline = aw_deadline_after(AW_SEC(5));
	while (detached_count < 6 && aw_now() < deadline)
		if (aw_sleep(AW_MS(2)) < 0)
			return -1;
	return detached_count;
}

AW_TEST(detached_tasks_run_to_completion)
{
	CHECK_EQ(aw_run(main_detached, NULL), 6);
	CHECK_EQ(detached_count, 6);
}

static int log_name(void *arg)
{
	aw_evlog_add(&evlog, "%s", (const char *)arg);
	return 0;
}

static int main_fifo(void *arg)
{
	(void)arg;
	static const char *names[] = { "t0", "t1", "t2", "t3", "t4" };
	aw_task *t[5];
	for (int i = 0; i < 5; i++)
		EXPECT_EQ(aw_spawn(&t[i], log_name, (void *)names[i], names[i]), 0);
	aw_evlog_add(&evlog, "spawned");  /* spawned tasks run only when main waits */
	for (int i = 0; i < 5; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	return 0;
}

AW_TEST(tasks_first_run_in_fifo_order_of_spawn)
{
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_fifo, NULL), 0);
	CHECK_STR(evlog.s, "spawned t0 t1 t2 t3 t4");
}

static int yielder(void *arg)
{
	const char *name = arg;
	for (int i = 1; i <= 3; i++) {
		aw_evlog_add(&evlog, "%s%d", name, i);
		EXPECT_EQ(aw_yield(), 0);
	}
	return 0;
}

static int main_yield(void *arg)
{
	(void)arg;
	aw_task *a, *b;
	EXPECT_EQ(aw_spawn(&a, yielder, "A", "A"), 0);
	EXPECT_EQ(aw_spawn(&b, yielder, "B", "B"), 0);
	EXPECT_EQ(aw_task_join(a), 0);
	EXPECT_EQ(aw_task_join(b), 0);
	return 0;
}

AW_TEST(yield_interleaves_two_tasks)
{
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_yield, NULL), 0);
	CHECK_STR(evlog.s, "A1 B1 A2 B2 A3 B3");
}

struct sleeper { const char *name; aw_time dur; };

static int sleeper_fn(void *arg)
{
	struct sleeper *s = arg;
	int rc = aw_sleep(s->dur);
	aw_evlog_add(&evlog, "%s", s->name);
	return rc;
}

static int main_sleepers(void *arg)
{
	(void)arg;
	struct sleeper s[] = { { "s30", AW_MS(30) }, { "s10", AW_MS(10) }, { "s20", AW_MS(20) },
			       { "s0", 0 } };
	aw_task *t[4];
	aw_time t0 = aw_now();
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(aw_spawn(&t[i], sleeper_fn, &s[i], s[i].name), 0);
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	aw_time el = aw_now() - t0;
	EXPECT(el >= AW_MS(30));
	EXPECT(el < AW_SEC(5));
	return 0;
}

AW_TEST(sleepers_wake_in_order_of_their_deadlines)
{
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_sleepers, NULL), 0);
	CHECK_STR(evlog.s, "s0 s10 s20 s30");
}

static int main_sleep_until(void *arg)
{
	(void)arg;
	aw_time t0 = aw_now();
	EXPECT_EQ(aw_sleep_until(t0 + AW_MS(15)), 0);
	EXPECT(aw_now() >= t0 + AW_MS(15));
	EXPECT_EQ(aw_sleep_until(t0), 0);   /* a passed deadline returns at once */
	EXPECT_EQ(aw_sleep(0), 0);
	EXPECT_EQ(aw_sleep(-5), 0);
	EXPECT(aw_now() - t0 < AW_SEC(5));
	return 0;
}

AW_TEST(sleep_until_waits_for_an_absolute_deadline)
{
	CHECK_EQ(aw_run(main_sleep_until, NULL), 0);
}

static int join_self(void *arg)
{
	*(int *)arg = aw_task_join(aw_task_current());
	aw_error_clear();
	return 0;
}

static int main_join_misuse(void *arg)
{
	int *rc = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, join_self, &rc[0], "self-joiner"), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT_EQ(aw_spawn(&t, return_arg, NULL, NULL), 0);
	aw_task_detach(t);
	rc[1] = aw_task_join(t);   /* detached: no longer joinable */
	aw_error_clear();
	rc[2] = aw_task_join(NULL);
	aw_error_clear();
	return 0;
}

AW_TEST(join_of_itself_is_edeadlk_and_of_a_detached_task_einval)
{
	int rc[3] = { 1, 1, 1 };
	CHECK_EQ(aw_run(main_join_misuse, rc), 0);
	CHECK_EQ(rc[0], -EDEADLK);
	CHECK_EQ(rc[1], -EINVAL);
	CHECK_EQ(rc[2], -EINVAL);
}

/* ---- cancellation -------------------------------------------------------- */

struct cancel_rec { int r[3]; aw_time elapsed; int pending_after; };

static int cancel_victim(void *arg)
{
	struct cancel_rec *c = arg;
	aw_time t0 = aw_now();
	c->r[0] = aw_sleep(AW_SEC(10));
	c->elapsed = aw_now() - t0;
	c->r[1] = aw_sleep(AW_SEC(10));
	c->r[2] = aw_yield();
	c->pending_after = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int main_cancel_sleep(void *arg)
{
	struct cancel_rec *c = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cancel_victim, c, "victim"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(t);
	aw_task_cancel(t);   /* idempotent */
	int rc = aw_task_join(t);
	aw_task_cancel(NULL);
	return rc;
}

AW_TEST(cancel_makes_sleep_return_ecanceled_and_every_later_wait_too)
{
	struct cancel_rec c = { { 1, 1, 1 }, 0, 0 };
	CHECK_EQ(aw_run(main_cancel_sleep, &c), 0);
	CHECK_EQ(c.r[0], -ECANCELED);
	CHECK_EQ(c.r[1], -ECANCELED);
	CHECK_EQ(c.r[2], -ECANCELED);
	CHECK_EQ(c.pending_after, -ECANCELED);
	CHECK_LT(c.elapsed, AW_SEC(5));
}

static int cancel_before_first_run(void *arg)
{
	int *r = arg;
	*r = aw_yield();
	return *r;
}

static int main_cancel_before_run(void *arg)
{
	int *r = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cancel_before_first_run, r, NULL), 0);
	aw_task_cancel(t);   /* not started yet: its first wait fails */
	int rc = aw_task_join(t);
	EXPECT_EQ(rc, -ECANCELED);
	EXPECT_EQ(aw_error_pending(), -ECANCELED);   /* the task's error moved here */
	aw_error_clear();
	return 0;
}

AW_TEST(cancel_before_a_task_first_runs_fails_its_first_wait)
{
	int r = 1;
	CHECK_EQ(aw_run(main_cancel_before_run, &r), 0);
	CHECK_EQ(r, -ECANCELED);
}

struct joiner_rec { aw_task *target; int join_rc; };

static int slow_target(void *arg)
{
	(void)arg;
	if (aw_sleep(AW_MS(30)) < 0)
		return -1;
	return 7;
}

static int joiner_fn(void *arg)
{
	struct joiner_rec *j = arg;
	j->join_rc = aw_task_join(j->target);
	aw_error_clear();
	return 0;
}

static int main_cancel_joiner(void *arg)
{
	struct joiner_rec *j = arg;
	aw_task *jt;
	EXPECT_EQ(aw_spawn(&j->target, slow_target, NULL, "target"), 0);
	EXPECT_EQ(aw_spawn(&jt, joiner_fn, j, "joiner"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(jt);
	EXPECT_EQ(aw_task_join(jt), 0);
	EXPECT(!aw_task_done(j->target));
	/* The target was not harmed and can still be joined. */
	return aw_task_join(j->target);
}

AW_TEST(cancelling_a_joiner_leaves_the_target_joinable)
{
	struct joiner_rec j = { NULL, 1 };
	CHECK_EQ(aw_run(main_cancel_joiner, &j), 7);
	CHECK_EQ(j.join_rc, -ECANCELED);
}

/* A manager that records its exit (and may wait inside it). */
typedef struct rec_mgr {
	aw_mgr mgr;
	int enters, exits, exit_err;
	aw_time exit_sleep;
	int exit_sleep_rc;
} rec_mgr;

static int rec_enter(aw_mgr *m)
{
	((rec_mgr *)m)->enters++;
	return 0;
}

static int rec_exit(aw_mgr *m, int err)
{
	rec_mgr *r = (rec_mgr *)m;
	r->exits++;
	r->exit_err = err;
	if (r->exit_sleep)
		r->exit_sleep_rc = aw_sleep(r->exit_sleep);
	return err;
}

static const aw_mgr_ops rec_ops = { .name = "recorder", .enter = rec_enter, .exit = rec_exit };

struct leftover { rec_mgr m; int sleep_rc; bool after_block; };

static int leftover_task(void *arg)
{
	struct leftover *lo = arg;
	AW_WITH(&lo->m.mgr) {
		lo->sleep_rc = aw_sleep(AW_SEC(30));
		if (lo->sleep_rc < 0)
			break;
	}
	lo->after_block = true;
	return lo->sleep_rc;
}

static int main_returns_early(void *arg)
{
	struct leftover *lo = arg;
	EXPECT_EQ(aw_spawn(NULL, leftover_task, lo, "leftover"), 0);
	aw_task *j;
	EXPECT_EQ(aw_spawn(&j, leftover_task, lo + 1, "leftover-joinable"), 0);
	aw_task_detach(j);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	return 42;
}

AW_TEST(aw_run_cancels_and_awaits_tasks_left_when_main_returns)
{
	struct leftover lo[2];
	memset(lo, 0, sizeof lo);
	for (int i = 0; i < 2; i++) {
		lo[i].m.mgr.ops = &rec_ops;
		lo[i].m.exit_sleep = AW_MS(10);   /* the exit waits: it is awaited */
		lo[i].sleep_rc = 1;
		lo[i].m.exit_sleep_rc = 1;
	}
	aw_time t0 = aw_now();
	CHECK_EQ(aw_run(main_returns_early, lo), 42);
	CHECK_LT(aw_now() - t0, AW_SEC(10));
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(lo[i].m.enters, 1);
		CHECK_EQ(lo[i].m.exits, 1);
		CHECK_EQ(lo[i].sleep_rc, -ECANCELED);
		CHECK_EQ(lo[i].m.exit_err, -ECANCELED);
		CHECK_EQ(lo[i].m.exit_sleep_rc, 0);   /* exits are shielded */
		CHECK(lo[i].after_block);
	}
}

static int return_neg(void *arg)
{
	(void)arg;
	return -EPIPE;
}

AW_TEST(main_return_value_is_aw_runs_result)
{
	CHECK_EQ(aw_run(return_arg, (void *)(intptr_t)0), 0);
	CHECK_EQ(aw_run(return_arg, (void *)(intptr_t)1234), 1234);
	aw_config cfg = default_cfg();
	char *buf = NULL;
	size_t len = 0;
	cfg.log = open_memstream(&buf, &len);
	CHECK(cfg.log != NULL);
	int rc = aw_run_config(&cfg, return_neg, NULL);
	fclose(cfg.log);
	CHECK_EQ(rc, -EPIPE);
	CHECK(strstr(buf, "main task failed") != NULL);
	free(buf);
}

static int nested_run(void *arg)
{
	*(int *)arg = aw_run(return_arg, NULL);   /* one loop per thread */
	return 0;
}

AW_TEST(aw_run_inside_a_running_loop_is_ebusy_and_null_main_einval)
{
	int nested = 1;
	CHECK_EQ(aw_run(nested_run, &nested), 0);
	CHECK_EQ(nested, -EBUSY);
	CHECK_EQ(aw_run(NULL, NULL), -EINVAL);
}

AW_TEST(waits_outside_a_task_return_enotask)
{
	CHECK_EQ(aw_sleep(AW_MS(1)), -AW_ENOTASK);
	CHECK_EQ(aw_error_pending(), -AW_ENOTASK);
	CHECK_EQ(aw_yield(), -AW_ENOTASK);
	CHECK_EQ(aw_sleep_until(aw_now() + AW_MS(1)), -AW_ENOTASK);
	CHECK_EQ(aw_fd_wait(0, AW_READABLE, AW_NEVER), -AW_ENOTASK);
	aw_task *t = (aw_task *)1;
	CHECK_EQ(aw_spawn(&t, return_arg, NULL, NULL), -AW_ENOTASK);
	CHECK(t == NULL);
	CHECK(aw_task_current() == NULL);
	aw_error_clear();
	CHECK_EQ(aw_error_pending(), 0);
}

/* ---- fd waits ---------------------------------------------------------- */

struct pipe_ctx { int rfd, wfd; int rc; int nread; char c; int busy_rc; };

static int pipe_reader(void *arg)
{
	struct pipe_ctx *p = arg;
	char c;
	ssize_t n = read(p->rfd, &c, 1);
	EXPECT(n < 0 && errno == EAGAIN);
	p->rc = aw_fd_wait(p->rfd, AW_READABLE, aw_deadline_after(AW_SEC(10)));
	n = read(p->rfd, &c, 1);
	p->nread = (int)n;
	p->c = c;
	return 0;
}

static int pipe_writer(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	aw_evlog_add(&evlog, "write");
	EXPECT_EQ(write(p->wfd, "z", 1), 1);
	return 0;
}

static int open_pipe(struct pipe_ctx *p)
{
	int fds[2];
	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
		return -1;
	p->rfd = fds[0];
	p->wfd = fds[1];
	return 0;
}

static void close_pipe(struct pipe_ctx *p)
{
	EXPECT_EQ(aw_fd_close(p->rfd), 0);
	EXPECT_EQ(aw_fd_close(p->wfd), 0);
}

static int main_fd_readable(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	aw_task *r, *w;
	EXPECT_EQ(aw_spawn(&r, pipe_reader, p, "reader"), 0);
	EXPECT_EQ(aw_spawn(&w, pipe_writer, p, "writer"), 0);
	EXPECT_EQ(aw_task_join(r), 0);
	EXPECT_EQ(aw_task_join(w), 0);
	close_pipe(p);
	return 0;
}

AW_TEST(fd_wait_returns_when_another_task_writes_the_pipe)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_readable, &p), 0);
	CHECK_EQ(p.rc, 0);
	CHECK_EQ(p.nread, 1);
	CHECK_EQ(p.c, 'z');
}

static int main_fd_timeout(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	aw_time t0 = aw_now();
	p->rc = aw_fd_wait(p->rfd, AW_READABLE, t0 + AW_MS(20));
	aw_time el = aw_now() - t0;
	EXPECT(el >= AW_MS(20));
	EXPECT(el < AW_SEC(5));
	EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
	/* Bad direction and bad fd. */
	EXPECT_EQ(aw_fd_wait(p->rfd, 3, AW_NEVER), -EINVAL);
	EXPECT_EQ(aw_fd_wait(-1, AW_READABLE, AW_NEVER), -EBADF);
	/* The write end of an empty pipe is writable. */
	EXPECT_EQ(aw_fd_wait(p->wfd, AW_WRITABLE, aw_deadline_after(AW_SEC(5))), 0);
	aw_error_clear();
	close_pipe(p);
	return 0;
}

AW_TEST(fd_wait_returns_etimedout_when_its_deadline_passes)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_timeout, &p), 0);
	CHECK_EQ(p.rc, -ETIMEDOUT);
}

static int main_fd_busy(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	aw_task *r;
	EXPECT_EQ(aw_spawn(&r, pipe_reader, p, "reader"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);   /* the reader waits now */
	p->busy_rc = aw_fd_wait(p->rfd, AW_READABLE, aw_deadline_after(AW_SEC(5)));
	EXPECT_EQ(aw_error_pending(), -AW_EBUSY_WAIT);
	aw_error_clear();
	EXPECT_EQ(write(p->wfd, "q", 1), 1);
	EXPECT_EQ(aw_task_join(r), 0);
	close_pipe(p);
	return 0;
}

AW_TEST(fd_wait_by_a_second_waiter_is_ebusy_wait)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_busy, &p), 0);
	CHECK_EQ(p.busy_rc, -AW_EBUSY_WAIT);
	CHECK_EQ(p.rc, 0);
	CHECK_EQ(p.c, 'q');
}

static int main_fd_forget(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	aw_task *r;
	EXPECT_EQ(aw_spawn(&r, pipe_reader, p, "reader"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	aw_time t0 = aw_now();
	aw_fd_forget(p->rfd);
	EXPECT_EQ(aw_task_join(r), 0);
	EXPECT(aw_now() - t0 < AW_SEC(5));
	close_pipe(p);
	return 0;
}

AW_TEST(fd_forget_wakes_the_waiter_with_ebadf)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_forget, &p), 0);
	CHECK_EQ(p.rc, -EBADF);
	CHECK_EQ(p.nread, -1);
}

static int main_fd_cancel(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	aw_task *r;
	EXPECT_EQ(aw_spawn(&r, pipe_reader, p, "reader"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	aw_task_cancel(r);
	EXPECT_EQ(aw_task_join(r), 0);
	/* The cancelled waiter gave up its slot: a new wait is not busy. */
	EXPECT_EQ(write(p->wfd, "k", 1), 1);
	EXPECT_EQ(aw_fd_wait(p->rfd, AW_READABLE, aw_deadline_after(AW_SEC(5))), 0);
	close_pipe(p);
	return 0;
}

AW_TEST(fd_wait_cancelled_returns_ecanceled_and_frees_the_slot)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_cancel, &p), 0);
	CHECK_EQ(p.rc, -ECANCELED);
}

static int main_fd_already_ready(void *arg)
{
	struct pipe_ctx *p = arg;
	EXPECT_EQ(open_pipe(p), 0);
	EXPECT_EQ(write(p->wfd, "r", 1), 1);   /* before the first wait */
	aw_time t0 = aw_now();
	p->rc = aw_fd_wait(p->rfd, AW_READABLE, aw_deadline_after(AW_SEC(5)));
	EXPECT(aw_now() - t0 < AW_SEC(2));
	p->nread = (int)read(p->rfd, &p->c, 1);
	/* Drained: the next wait times out. */
	EXPECT_EQ(aw_fd_wait(p->rfd, AW_READABLE, aw_deadline_after(AW_MS(5))), -ETIMEDOUT);
	aw_error_clear();
	close_pipe(p);
	return 0;
}

AW_TEST(fd_wait_on_an_fd_that_is_already_readable_returns_at_once)
{
	struct pipe_ctx p = { .rfd = -1, .wfd = -1, .rc = 1 };
	CHECK_EQ(aw_run(main_fd_already_ready, &p), 0);
	CHECK_EQ(p.rc, 0);
	CHECK_EQ(p.nread, 1);
	CHECK_EQ(p.c, 'r');
}

/* ---- deadlock detection ------------------------------------------------- */

static int main_deadlock(void *arg)
{
	int *rc = arg;
	aw_event e;
	aw_event_init(&e);
	*rc = aw_event_wait(&e);   /* nobody will ever set it */
	return *rc;
}

AW_TEST(deadlock_is_reported_and_the_wait_returns_ecanceled)
{
	aw_config cfg = default_cfg();
	char *buf = NULL;
	size_t len = 0;
	cfg.log = open_memstream(&buf, &len);
	CHECK(cfg.log != NULL);
	int wait_rc = 1;
	aw_time t0 = aw_now();
	int rc = aw_run_config(&cfg, main_deadlock, &wait_rc);
	fclose(cfg.log);
	CHECK_EQ(rc, -ECANCELED);
	CHECK_EQ(wait_rc, -ECANCELED);
	CHECK_LT(aw_now() - t0, AW_SEC(5));
	CHECK(strstr(buf, "deadlock") != NULL);
	CHECK(strstr(buf, "'main'") != NULL);
	free(buf);
}

/* ---- stacks and scale --------------------------------------------------- */

static int big_frame(void *arg)
{
	(void)arg;
	volatile char buf[200 * 1024];
	memset((char *)buf, 1, sizeof buf);
	int sum = 0;
	for (size_t i = 0; i < sizeof buf; i += 4096)
		sum += buf[i];
	if (aw_yield() < 0)
		return -1;
	return sum;
}

static int main_custom_stack(void *arg)
{
	(void)arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "a-name-that-is-longer-than-thirty-one-bytes", .stack_size = 1024 * 1024 };
	EXPECT_EQ(aw_spawn_with(&t, big_frame, NULL, &o), 0);
	EXPECT_EQ(strlen(aw_task_name(t)), 31);
	EXPECT(aw_task_id(t) != aw_task_id(aw_task_current()));
	return aw_task_join(t);
}

AW_TEST(task_with_a_custom_stack_size_can_use_a_large_frame)
{
	CHECK_EQ(aw_run(main_custom_stack, NULL), (200 * 1024 + 4095) / 4096);
}

static int many_done;

static int many_worker(void *arg)
{
	(void)arg;
	if (aw_sleep(AW_MS(1)) == 0)
		many_done++;
	return 0;
}

static int main_many(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++) {
		int rc = aw_spawn(NULL, many_worker, NULL, NULL);
		if (rc) {
			EXPECT_EQ(rc, 0);
			return -1;
		}
	}
	aw_time deadline = aw_deadline_after(AW_SEC(20));
	while (many_done < 10000 && aw_now() < deadline)
		if (aw_sleep(AW_MS(5)) < 0)
			return -1;
	return many_done;
}

AW_TEST(ten_thousand_tasks_each_sleep_1ms_and_finish)
{
	aw_config cfg = default_cfg();
	cfg.slow_step = 0;   /* spawning 10,000 is one long step */
	CHECK_EQ(aw_run_config(&cfg, main_many, NULL), 10000);
}
