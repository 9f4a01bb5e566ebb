/* SPDX-License-Identifier: MIT */
/* Tests: signals as waits (src/io/signal.c). */
#include "harness.h"

#include "awith/io.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>


static bool blocked_now(int sig)
{
	sigset_t cur;
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, sig) == 1;
}

typedef struct sig_case {
	int got[4];
	bool blocked_inside, blocked_after;
	int rc;
} sig_case;

static int raiser(void *arg)
{
	int sig = (int)(intptr_t)arg;
	if (aw_sleep(AW_MS(10)) < 0)
		return -1;
	/* raise() is thread-directed (the loop thread); kill() is
	 * process-directed: the loop's other threads block every signal, so
	 * it lands here too. */
	if (sig == SIGTERM)
		return kill(getpid(), sig);
	return raise(sig);
}

static int wait_main(void *arg)
{
	sig_case *c = arg;
	aw_signals s;
	AW_WITH(aw_signals_init(&s, (int[]){ SIGUSR2, SIGTERM }, 2)) {
		c->blocked_inside = blocked_now(SIGUSR2) && blocked_now(SIGTERM);
		aw_task *t;
		EXPECT_EQ(aw_spawn(&t, raiser, (void *)(intptr_t)SIGUSR2, "raiser"), 0);
		c->got[0] = aw_signals_wait(&s, aw_deadline_after(AW_SEC(5)));
		EXPECT_EQ(aw_task_join(t), 0);
		EXPECT_EQ(aw_spawn(&t, raiser, (void *)(intptr_t)SIGTERM, "killer"), 0);
		c->got[1] = aw_signals_wait(&s, aw_deadline_after(AW_SEC(5)));
		EXPECT_EQ(aw_task_join(t), 0);
		/* Signals that arrived before the wait are returned at once. */
		raise(SIGUSR2);
		c->got[2] = aw_signals_wait(&s, aw_deadline_after(AW_SEC(5)));
	}
	c->blocked_after = blocked_now(SIGUSR2) || blocked_now(SIGTERM);
	return 0;
}

AW_TEST(signals_wait_returns_the_number_raised_by_another_task_and_the_mask_is_restored)
{
	sig_case c = { .rc = 0 };
	CHECK(!blocked_now(SIGUSR2));
	CHECK_EQ(aw_run(wait_main, &c), 0);
	CHECK(c.blocked_inside);
	CHECK_EQ(c.got[0], SIGUSR2);
	CHECK_EQ(c.got[1], SIGTERM);
	CHECK_EQ(c.got[2], SIGUSR2);
	CHECK(!c.blocked_after);
}

static int timeout_main(void *arg)
{
	sig_case *c = arg;
	aw_signals s;
	AW_WITH(aw_signals_init(&s, (int[]){ SIGUSR2 }, 1)) {
		aw_time t0 = aw_now();
		c->rc = aw_signals_wait(&s, aw_deadline_after(AW_MS(30)));
		c->got[0] = (int)((aw_now() - t0) / AW_MS(1));
		const aw_error *e = aw_error_current();
		EXPECT(e && strstr(e->msg, "waiting for signals timed out"));
		aw_error_clear();
	}
	return 0;
}

AW_TEST(signals_wait_with_a_deadline_is_etimedout)
{
	sig_case c = { .rc = 0 };
	CHECK_EQ(aw_run(timeout_main, &c), 0);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK_GE(c.got[0], 25);
	CHECK_LT(c.got[0], 1000);
}

/* A signal the user blocked before stays blocked after the block; nested
 * blocks for the same signal keep it blocked until the outer one leaves. */
static int nested_main(void *arg)
{
	sig_case *c = arg;
	aw_signals outer, inner;
	AW_WITH(aw_signals_init(&outer, (int[]){ SIGUSR2 }, 1)) {
		AW_WITH(aw_signals_init(&inner, (int[]){ SIGUSR2, SIGHUP }, 2)) {
			EXPECT(blocked_now(SIGHUP));
		}
		c->blocked_inside = blocked_now(SIGUSR2) && !blocked_now(SIGHUP);
		raise(SIGUSR2);   /* still caught by the outer block */
		c->got[0] = aw_signals_wait(&outer, aw_deadline_after(AW_SEC(5)));
	}
	c->blocked_after = blocked_now(SIGUSR2);
	c->got[1] = blocked_now(SIGWINCH);   /* the user's own block, untouched */
	return 0;
}

AW_TEST(signals_nested_blocks_restore_only_what_they_blocked)
{
	sig_case c = { .rc = 0 };
	sigset_t user, old;
	sigemptyset(&user);
	sigaddset(&user, SIGWINCH);
	pthread_sigmask(SIG_BLOCK, &user, &old);
	int rc = aw_run(nested_main, &c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	CHECK_EQ(rc, 0);
	CHECK(c.blocked_inside);
	CHECK_EQ(c.got[0], SIGUSR2);
	CHECK(!c.blocked_after);
	CHECK_EQ(c.got[1], 1);
}

/* Two tasks' blocks that end out of order: the first to leave must not
 * unblock the signal the other still waits for. */
static int late_waiter(void *arg)
{
	sig_case *c = arg;
	aw_signals s;
	AW_WITH(aw_signals_init(&s, (int[]){ SIGUSR2 }, 1)) {
		EXPECT_EQ(aw_sleep(AW_MS(30)), 0);   /* the other block leaves meanwhile */
		c->blocked_inside = blocked_now(SIGUSR2);
		raise(SIGUSR2);
		c->got[1] = aw_signals_wait(&s, aw_deadline_after(AW_SEC(5)));
	}
	return 0;
}

static int interleaved_main(void *arg)
{
	sig_case *c = arg;
	aw_task *t;
	aw_signals s;
	AW_WITH(aw_signals_init(&s, (int[]){ SIGUSR2 }, 1)) {
		EXPECT_EQ(aw_spawn(&t, late_waiter, c, "late"), 0);
		EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* it enters its block */
	}
	EXPECT_EQ(aw_task_join(t), 0);
	c->blocked_after = blocked_now(SIGUSR2);
	return 0;
}

AW_TEST(signals_blocks_of_two_tasks_may_end_in_any_order)
{
	sig_case c = { .rc = 0 };
	CHECK_EQ(aw_run(interleaved_main, &c), 0);
	CHECK(c.blocked_inside);
	CHECK_EQ(c.got[1], SIGUSR2);
	CHECK(!c.blocked_after);
}

static int invalid_main(void *arg)
{
	int *rc = arg;
	aw_signals s;
	int bodies = 0;
	AW_WITH(aw_signals_init(&s, (int[]){ SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGALRM,
					     SIGCHLD, SIGWINCH },
				9))
		bodies++;
	rc[0] = aw_error_pending();
	AW_WITH(aw_signals_init(&s, (int[]){ 0 }, 1))
		bodies++;
	rc[1] = aw_error_pending();
	AW_WITH(aw_signals_init(&s, (int[]){ SIGKILL }, 1))
		bodies++;
	rc[2] = aw_error_pending();
	AW_WITH(aw_signals_init(&s, (int[]){ 1000 }, 1))
		bodies++;
	rc[3] = aw_error_pending();
	AW_WITH(aw_signals_init(&s, NULL, 0))
		bodies++;
	rc[4] = aw_error_pending();
	rc[5] = bodies;
	rc[6] = aw_signals_wait(&s, AW_NEVER);   /* not entered */
	aw_error_clear();
	return 0;
}

AW_TEST(signals_invalid_numbers_or_more_than_eight_are_einval)
{
	int rc[7] = { 1, 1, 1, 1, 1, 1, 1 };
	CHECK_EQ(aw_run(invalid_main, rc), 0);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(rc[i], -EINVAL);
	CHECK_EQ(rc[5], 0);
	CHECK_EQ(rc[6], -EINVAL);
	CHECK(!blocked_now(SIGUSR1));
}
