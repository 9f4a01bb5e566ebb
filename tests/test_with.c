/* SPDX-License-Identifier: MIT */
/*
 * Tests: the block statement AW_WITH (DESIGN.md, "The context-manager
 * protocol", rules 1-5) and the manual aw_enter/aw_exit pair.
 *
 * Every scenario runs inside aw_run(); a recording manager ("tmgr") appends
 * "enter x" / "exit x(CODE)" to an event log, and the checks after aw_run
 * compare the whole log, the counts, the error each exit saw and the error
 * in flight after the block.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

enum {
	X_PASS,          /* return err */
	X_SUPPRESS,      /* return 0 */
	X_REPLACE,       /* return aw_raise(exit_code, "replaced by <name>") */
	X_REPLACE_BARE,  /* return exit_code without raising */
	X_FAIL,          /* return aw_raise(exit_code, "<name> failed") even if err == 0 */
	X_SLEEP_RESULT,  /* return the exit's sleep result if it failed, else err */
};

typedef struct tmgr {
	aw_mgr mgr;
	const char *name;
	aw_evlog *log;
	int enter_rc;       /* < 0: enter fails with it */
	bool enter_bare;    /* ... returning the bare code, without raising */
	int exit_mode;      /* X_* */
	int exit_code;
	aw_time exit_sleep; /* > 0: the exit sleeps this long */
	aw_time enter_sleep;/* > 0: the enter sleeps this long (and fails if that fails) */
	/* observed */
	int enters, exits;
	int seen_err;             /* the err argument of exit */
	int seen_cur;             /* aw_error_current()'s code inside exit */
	char seen_msg[128];       /* ... and its message */
	int exit_sleep_rc;
	aw_time exit_sleep_took;
} tmgr;

static int tmgr_enter(aw_mgr *m)
{
	tmgr *t = (tmgr *)m;
	t->enters++;
	if (t->enter_sleep > 0) {
		int rc = aw_sleep(t->enter_sleep);
		if (rc) {
			aw_evlog_add(t->log, "enter %s(%s)", t->name, aw_test_code_name(rc));
			return rc;
		}
	}
	if (t->enter_rc < 0) {
		aw_evlog_add(t->log, "enter %s(fail)", t->name);
		if (t->enter_bare)
			return t->enter_rc;
		return aw_raise(t->enter_rc, "%s refused to enter", t->name);
	}
	aw_evlog_add(t->log, "enter %s", t->name);
	return 0;
}

static int tmgr_exit(aw_mgr *m, int err)
{
	tmgr *t = (tmgr *)m;
	t->exits++;
	t->seen_err = err;
	const aw_error *cur = aw_error_current();
	t->seen_cur = cur ? cur->code : 0;
	snprintf(t->seen_msg, sizeof t->seen_msg, "%s", cur ? cur->msg : "");
	aw_evlog_add(t->log, "exit %s(%s)", t->name, aw_test_code_name(err));
	if (t->exit_sleep > 0) {
		aw_time t0 = aw_now();
		t->exit_sleep_rc = aw_sleep(t->exit_sleep);
		t->exit_sleep_took = aw_now() - t0;
	}
	switch (t->exit_mode) {
	case X_SUPPRESS: return 0;
	case X_REPLACE: return aw_raise(t->exit_code, "replaced by %s", t->name);
	case X_REPLACE_BARE: return t->exit_code;
	case X_FAIL: return aw_raise(t->exit_code, "%s failed", t->name);
	case X_SLEEP_RESULT: return t->exit_sleep_rc ? t->exit_sleep_rc : err;
	default: return err;
	}
}

static const aw_mgr_ops tmgr_ops = { .name = "test manager", .enter = tmgr_enter, .exit = tmgr_exit };

static aw_mgr *tm(tmgr *t, const char *name, aw_evlog *log)
{
	memset(t, 0, sizeof *t);
	t->mgr.ops = &tmgr_ops;
	t->name = name;
	t->log = log;
	return &t->mgr;
}

/* A generic scenario context. */
typedef struct ctx {
	aw_evlog log;
	tmgr a, b, c;
	int rc;            /* what the scenario function returned */
	int pending;       /* aw_error_pending() after the block */
	int cause_code;    /* aw_error_current()->cause->code, if any */
	char msg[128];     /* aw_error_current()->msg after the block */
	char cause_msg[128];
	bool has_cause2;   /* the cause has a cause of its own */
	int sleep_rc;
	aw_time took;
	int join_rc;
	int pending_after_join;
	int iterations;
} ctx;

/* Record the error state after a block into c. */
static void snap(ctx *c)
{
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	c->cause_code = e && e->cause ? e->cause->code : 0;
	snprintf(c->cause_msg, sizeof c->cause_msg, "%s", e && e->cause ? e->cause->msg : "");
	c->has_cause2 = e && e->cause && e->cause->cause;
}

static void init3(ctx *c)
{
	memset(c, 0, sizeof *c);
	tm(&c->a, "a", &c->log);
	tm(&c->b, "b", &c->log);
	tm(&c->c, "c", &c->log);
}

/* ---- rule 1: exit runs exactly once on every way out ------------------------------- */

static int normal_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(exit_runs_once_on_normal_end_with_no_error)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(normal_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0) after");
	CHECK_EQ(c.a.enters, 1);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, 0);
}

static int return_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
		return 7;
	}
	aw_evlog_add(&c->log, "not reached");
	return -1;
}

static int return_main(void *arg)
{
	ctx *c = arg;
	c->rc = return_inner(c);
	aw_evlog_add(&c->log, "returned %d", c->rc);
	snap(c);
	return 0;
}

AW_TEST(exit_runs_once_on_return_and_return_value_is_kept)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(return_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0) returned 7");
	CHECK_EQ(c.rc, 7);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, 0);
}

static int break_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
		if (c->a.enters)
			break;
		aw_evlog_add(&c->log, "not reached");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(exit_runs_once_on_break_and_execution_continues_after_block)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(break_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0) after");
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.pending, 0);
}

static int break_in_loop_main(void *arg)
{
	ctx *c = arg;
	for (int i = 0; i < 3; i++) {
		AW_WITH(&c->a.mgr) {
			c->iterations++;
			break;   /* leaves the block, not the loop */
		}
	}
	return 0;
}

AW_TEST(break_leaves_only_the_block_not_the_enclosing_loop)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(break_in_loop_main, &c), 0);
	CHECK_EQ(c.iterations, 3);
	CHECK_EQ(c.a.enters, 3);
	CHECK_EQ(c.a.exits, 3);
	CHECK_STR(c.log.s, "enter a exit a(0) enter a exit a(0) enter a exit a(0)");
}

static int goto_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		AW_WITH(&c->b.mgr) {
			aw_evlog_add(&c->log, "body");
			if (c->b.enters)
				goto out;
			aw_evlog_add(&c->log, "not reached");
		}
		aw_evlog_add(&c->log, "not reached either");
	}
	aw_evlog_add(&c->log, "not reached at all");
out:
	aw_evlog_add(&c->log, "out");
	snap(c);
	return 0;
}

AW_TEST(exit_runs_once_on_goto_out_of_nested_blocks)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(goto_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b body exit b(0) exit a(0) out");
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.b.exits, 1);
	CHECK_EQ(c.pending, 0);
}

static int continue_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		(void)!aw_raise(-EIO, "raised, then the body continued past it");
		aw_evlog_add(&c->log, "body");
		continue;
		aw_evlog_add(&c->log, "not reached");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

/* The error rule: `continue` leaves the block like falling off its end,
 * and an error nobody handled is not taken as handled: the exit sees it
 * and it stays in flight after the block. */
AW_TEST(continue_with_an_unhandled_error_hands_it_to_the_exit_and_it_stays_pending)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(continue_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(EIO) after");
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_EQ(c.pending, -EIO);
}

static int error_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
		return aw_raise(-EIO, "disk %d on fire", 3);
	}
	return 0;
}

static int error_main(void *arg)
{
	ctx *c = arg;
	c->rc = error_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exit_runs_once_on_error_and_sees_the_body_error)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(error_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(EIO)");
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_EQ(c.a.seen_cur, -EIO);            /* aw_error_current() inside exit */
	CHECK_STR(c.a.seen_msg, "disk 3 on fire");
	CHECK_EQ(c.rc, -EIO);
	CHECK_EQ(c.pending, -EIO);               /* propagated past the block */
	CHECK_STR(c.msg, "disk 3 on fire");
	CHECK_EQ(c.cause_code, 0);
}

/* Cancellation: another task cancels the worker while its body sleeps. */
static int cancel_worker(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
		int rc = aw_sleep(AW_SEC(10));
		c->sleep_rc = rc;
		if (rc)
			return rc;
		aw_evlog_add(&c->log, "not reached");
	}
	return 0;
}

static int cancel_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	aw_time t0 = aw_now();
	if (aw_spawn(&w, cancel_worker, c, "worker"))
		return -1;
	EXPECT_EQ(aw_yield(), 0);            /* the worker runs until it sleeps */
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	c->took = aw_now() - t0;
	c->pending_after_join = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(exit_runs_once_on_cancellation_and_sees_ecanceled)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(cancel_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body cancel exit a(ECANCELED)");
	CHECK_EQ(c.sleep_rc, -ECANCELED);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, -ECANCELED);
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
	CHECK_LT(c.took, AW_SEC(2));
}

static int timeout_inner(ctx *c)
{
	AW_WITH(AW_TIMEOUT(AW_MS(30))) {
		AW_WITH(&c->a.mgr) {
			aw_evlog_add(&c->log, "body");
			int rc = aw_sleep(AW_SEC(10));
			c->sleep_rc = rc;
			if (rc)
				return rc;
			aw_evlog_add(&c->log, "not reached");
		}
	}
	return 0;
}

static int timeout_main(void *arg)
{
	ctx *c = arg;
	aw_time t0 = aw_now();
	c->rc = timeout_inner(c);
	c->took = aw_now() - t0;
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exit_runs_once_on_timeout_and_sees_etimedout)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(timeout_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(ETIMEDOUT)");
	CHECK_EQ(c.sleep_rc, -ETIMEDOUT);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, -ETIMEDOUT);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK_EQ(c.pending, -ETIMEDOUT);
	CHECK_GE(c.took, AW_MS(25));
	CHECK_LT(c.took, AW_SEC(2));
}

/* ---- LIFO order, several managers in one statement ---------------------------------------- */

static int nested_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		AW_WITH(&c->b.mgr) {
			AW_WITH(&c->c.mgr) {
				aw_evlog_add(&c->log, "body");
			}
		}
	}
	snap(c);
	return 0;
}

AW_TEST(nested_blocks_exit_in_lifo_order)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(nested_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c body exit c(0) exit b(0) exit a(0)");
	CHECK_EQ(c.a.exits + c.b.exits + c.c.exits, 3);
	CHECK_EQ(c.pending, 0);
}

static int nested_error_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		AW_WITH(&c->b.mgr) {
			AW_WITH(&c->c.mgr) {
				return aw_raise(-EPIPE, "peer went away");
			}
		}
	}
	return 0;
}

static int nested_error_main(void *arg)
{
	ctx *c = arg;
	c->rc = nested_error_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(nested_blocks_exit_lifo_and_each_sees_the_error_leaving_through_it)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(nested_error_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c exit c(EPIPE) exit b(EPIPE) exit a(EPIPE)");
	CHECK_EQ(c.rc, -EPIPE);
	CHECK_EQ(c.pending, -EPIPE);
	CHECK_STR(c.msg, "peer went away");
}

static int multi_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr, &c->b.mgr, &c->c.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	snap(c);
	return 0;
}

AW_TEST(several_managers_in_one_with_enter_left_to_right_exit_right_to_left)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(multi_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c body exit c(0) exit b(0) exit a(0)");
	CHECK_EQ(c.a.enters + c.b.enters + c.c.enters, 3);
	CHECK_EQ(c.a.exits + c.b.exits + c.c.exits, 3);
	CHECK_EQ(c.pending, 0);
}

static int multi_break_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr, &c->b.mgr, &c->c.mgr) {
		aw_evlog_add(&c->log, "body");
		break;
	}
	aw_evlog_add(&c->log, "after");
	return 0;
}

AW_TEST(break_in_a_several_manager_with_leaves_all_of_them_once)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(multi_break_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c body exit c(0) exit b(0) exit a(0) after");
}

/* ---- enter failures ------------------------------------------------------------------------- */

static int enter_fail_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(enter_fails_body_and_exit_do_not_run_and_error_propagates)
{
	ctx c;
	init3(&c);
	c.a.enter_rc = -ECONNREFUSED;
	CHECK_EQ(aw_run(enter_fail_main, &c), 0);
	CHECK_STR(c.log.s, "enter a(fail) after");
	CHECK_EQ(c.a.enters, 1);
	CHECK_EQ(c.a.exits, 0);
	CHECK_EQ(c.pending, -ECONNREFUSED);
	CHECK_STR(c.msg, "a refused to enter");
}

AW_TEST(enter_failing_with_a_bare_code_still_leaves_that_error_pending)
{
	ctx c;
	init3(&c);
	c.a.enter_rc = -EACCES;
	c.a.enter_bare = true;
	CHECK_EQ(aw_run(enter_fail_main, &c), 0);
	CHECK_STR(c.log.s, "enter a(fail) after");
	CHECK_EQ(c.a.exits, 0);
	CHECK_EQ(c.pending, -EACCES);
	CHECK(strstr(c.msg, "test manager") != NULL);   /* the made-up message names the manager */
}

static int multi_enter_fail_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr, &c->b.mgr, &c->c.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(second_of_three_enters_fails_first_exits_with_its_error_third_never_entered)
{
	ctx c;
	init3(&c);
	c.b.enter_rc = -EACCES;
	CHECK_EQ(aw_run(multi_enter_fail_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b(fail) exit a(EACCES) after");
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.a.seen_err, -EACCES);
	CHECK_STR(c.a.seen_msg, "b refused to enter");
	CHECK_EQ(c.b.exits, 0);
	CHECK_EQ(c.c.enters, 0);
	CHECK_EQ(c.c.exits, 0);
	CHECK_EQ(c.pending, -EACCES);
	CHECK_STR(c.msg, "b refused to enter");
}

/* ---- rule 3: which error exit sees -------------------------------------------------------- */

static int handled_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		int rc = aw_raise(-EIO, "transient");
		if (rc == -EIO)
			aw_error_clear();   /* handled: `except OSError: pass` */
		aw_evlog_add(&c->log, "handled");
		return 0;              /* leaving abruptly, no error in flight */
	}
	return 1;
}

static int handled_main(void *arg)
{
	ctx *c = arg;
	c->rc = handled_inner(c);
	snap(c);
	return 0;
}

AW_TEST(error_raised_and_handled_inside_body_is_not_seen_by_exit)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(handled_main, &c), 0);
	CHECK_STR(c.log.s, "enter a handled exit a(0)");
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.pending, 0);
}

static int before_main(void *arg)
{
	ctx *c = arg;
	(void)!aw_raise(-EPERM, "raised before the block");
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
		break;   /* abrupt: would hand over an error raised inside */
	}
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(error_raised_before_block_is_not_seen_by_exit_and_stays_pending)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(before_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0)");
	CHECK_EQ(c.a.seen_err, 0);
	/* The block did not fail and did not handle it: the earlier error is
	 * still the one in flight. */
	CHECK_EQ(c.pending, -EPERM);
	CHECK_STR(c.msg, "raised before the block");
}

static int before_normal_main(void *arg)
{
	ctx *c = arg;
	(void)!aw_raise(-EPERM, "raised before the block");
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(error_raised_before_block_survives_a_block_that_ends_normally)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(before_normal_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0)");
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, -EPERM);
	CHECK_STR(c.msg, "raised before the block");
}

static int break_error_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		(void)!aw_raise(-EIO, "in flight at the break");
		break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(break_with_an_error_in_flight_hands_it_to_exit_and_it_stays_pending)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(break_error_main, &c), 0);
	CHECK_STR(c.log.s, "enter a exit a(EIO) after");
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "in flight at the break");
}

/* A transaction must never commit on an error path: an error raised in the
 * outer body, then an inner block that ends normally, then `return` with
 * that error: the outer exit must still see it. */
static int survive_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		int rc = aw_raise(-EIO, "write failed");
		AW_WITH(&c->b.mgr) {
			aw_evlog_add(&c->log, "log the failure");
		}
		return rc;
	}
	return 0;
}

static int survive_main(void *arg)
{
	ctx *c = arg;
	c->rc = survive_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(error_in_flight_survives_an_inner_block_and_reaches_the_outer_exit)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(survive_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b log the failure exit b(0) exit a(EIO)");
	CHECK_EQ(c.b.seen_err, 0);
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_STR(c.a.seen_msg, "write failed");
	CHECK_EQ(c.pending, -EIO);
}

static int enter_cancel_worker(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr, &c->b.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	c->pending = aw_error_pending();
	return c->pending;
}

static int enter_cancel_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, enter_cancel_worker, c, "worker"))
		return -1;
	EXPECT_EQ(aw_yield(), 0);
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(enter_that_waits_and_is_cancelled_skips_body_and_its_exit_but_exits_those_entered)
{
	ctx c;
	init3(&c);
	c.b.enter_sleep = AW_SEC(10);
	CHECK_EQ(aw_run(enter_cancel_main, &c), 0);
	CHECK_STR(c.log.s, "enter a cancel enter b(ECANCELED) exit a(ECANCELED)");
	CHECK_EQ(c.b.exits, 0);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.pending, -ECANCELED);
	CHECK_EQ(c.join_rc, -ECANCELED);
}

/* ---- rule 4: suppress and replace ---------------------------------------------------------- */

static int suppress_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		(void)!aw_raise(-EIO, "swallowed");
		aw_evlog_add(&c->log, "body");
		break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(exit_suppressing_continues_after_block_with_no_error_pending)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_SUPPRESS;
	CHECK_EQ(aw_run(suppress_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(EIO) after");
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_STR(c.a.seen_msg, "swallowed");
	CHECK_EQ(c.pending, 0);
}

static int suppress_return_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		return aw_raise(-EIO, "swallowed on return");
	}
	return 0;
}

static int suppress_return_main(void *arg)
{
	ctx *c = arg;
	c->rc = suppress_return_inner(c);
	snap(c);
	return 0;
}

AW_TEST(exit_suppressing_on_a_return_path_clears_the_error_but_keeps_the_return_value)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_SUPPRESS;
	CHECK_EQ(aw_run(suppress_return_main, &c), 0);
	CHECK_EQ(c.a.seen_err, -EIO);
	CHECK_EQ(c.rc, -EIO);      /* C cannot change a computed return value */
	CHECK_EQ(c.pending, 0);    /* ... but the error state shows the suppression */
}

static int replace_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		return aw_raise(-EIO, "original");
	}
	return 0;
}

static int replace_main(void *arg)
{
	ctx *c = arg;
	c->rc = replace_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exit_replacing_makes_new_error_current_with_old_one_as_cause)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_REPLACE;
	c.a.exit_code = -EPROTO;
	CHECK_EQ(aw_run(replace_main, &c), 0);
	CHECK_STR(c.log.s, "enter a exit a(EIO)");
	CHECK_EQ(c.pending, -EPROTO);
	CHECK_STR(c.msg, "replaced by a");
	CHECK_EQ(c.cause_code, -EIO);
	CHECK_STR(c.cause_msg, "original");
	CHECK(!c.has_cause2);
}

AW_TEST(exit_replacing_with_a_bare_code_gets_an_error_made_with_the_old_one_as_cause)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_REPLACE_BARE;
	c.a.exit_code = -ENOTCONN;
	CHECK_EQ(aw_run(replace_main, &c), 0);
	CHECK_EQ(c.pending, -ENOTCONN);
	CHECK(strstr(c.msg, "test manager") != NULL);
	CHECK_EQ(c.cause_code, -EIO);
	CHECK_STR(c.cause_msg, "original");
}

static int replace_chain_main(void *arg)
{
	ctx *c = arg;
	c->rc = nested_error_inner(c);   /* c raises EPIPE; b and a replace */
	snap(c);
	const aw_error *e = aw_error_current();
	/* Walk the whole chain into the log. */
	for (; e; e = e->cause)
		aw_evlog_add(&c->log, "[%s: %s]", aw_test_code_name(e->code), e->msg);
	aw_error_clear();
	return 0;
}

AW_TEST(two_replacing_exits_build_a_three_link_cause_chain_newest_first)
{
	ctx c;
	init3(&c);
	c.b.exit_mode = X_REPLACE;
	c.b.exit_code = -EPROTO;
	c.a.exit_mode = X_REPLACE;
	c.a.exit_code = -ENOTCONN;
	CHECK_EQ(aw_run(replace_chain_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c exit c(EPIPE) exit b(EPIPE) exit a(EPROTO) "
			   "[ENOTCONN: replaced by a] [EPROTO: replaced by b] [EPIPE: peer went away]");
	CHECK_EQ(c.a.seen_err, -EPROTO);
	CHECK_STR(c.a.seen_msg, "replaced by b");
	CHECK_EQ(c.pending, -ENOTCONN);
}

static int inner_suppress_inner(ctx *c)
{
	AW_WITH(&c->a.mgr) {
		AW_WITH(&c->b.mgr) {
			return aw_raise(-EIO, "inner");
		}
	}
	return 0;
}

static int inner_suppress_main(void *arg)
{
	ctx *c = arg;
	c->rc = inner_suppress_inner(c);
	snap(c);
	return 0;
}

AW_TEST(after_inner_exit_suppresses_outer_exit_sees_no_error)
{
	ctx c;
	init3(&c);
	c.b.exit_mode = X_SUPPRESS;
	CHECK_EQ(aw_run(inner_suppress_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b exit b(EIO) exit a(0)");
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, 0);
}

static int multi_suppress_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr, &c->b.mgr, &c->c.mgr) {
		(void)!aw_raise(-EIO, "in the body");
		break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(suppress_in_one_statement_hides_the_error_from_managers_to_its_left)
{
	ctx c;
	init3(&c);
	c.b.exit_mode = X_SUPPRESS;
	CHECK_EQ(aw_run(multi_suppress_main, &c), 0);
	CHECK_STR(c.log.s, "enter a enter b enter c exit c(EIO) exit b(EIO) exit a(0) after");
	CHECK_EQ(c.pending, 0);
}

static int exit_fail_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exit_failing_when_body_did_not_fails_the_block)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_FAIL;
	c.a.exit_code = -EIO;
	CHECK_EQ(aw_run(exit_fail_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0) after");
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "a failed");
	CHECK_EQ(c.cause_code, 0);
}

AW_TEST(exit_failing_with_a_bare_code_when_body_did_not_fails_the_block)
{
	ctx c;
	init3(&c);
	c.a.exit_mode = X_REPLACE_BARE;
	c.a.exit_code = -EPIPE;
	CHECK_EQ(aw_run(exit_fail_main, &c), 0);
	CHECK_EQ(c.a.seen_err, 0);
	CHECK_EQ(c.pending, -EPIPE);
	CHECK(strstr(c.msg, "test manager") != NULL);
}

/* ---- rule 5: exits wait, shielded, under the grace deadline ------------------------------- */

AW_TEST(exit_can_wait_and_the_block_waits_for_it)
{
	ctx c;
	init3(&c);
	c.a.exit_sleep = AW_MS(20);
	CHECK_EQ(aw_run(normal_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0) after");
	CHECK_EQ(c.a.exit_sleep_rc, 0);
	CHECK_GE(c.a.exit_sleep_took, AW_MS(19));
	CHECK_EQ(c.pending, 0);
}

AW_TEST(exit_that_waits_completes_even_when_the_task_was_cancelled)
{
	ctx c;
	init3(&c);
	c.a.exit_sleep = AW_MS(30);
	CHECK_EQ(aw_run(cancel_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body cancel exit a(ECANCELED)");
	CHECK_EQ(c.a.seen_err, -ECANCELED);
	CHECK_EQ(c.a.exit_sleep_rc, 0);              /* shielded */
	CHECK_GE(c.a.exit_sleep_took, AW_MS(29));
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
}

static int grace_main(void *arg)
{
	ctx *c = arg;
	aw_time t0 = aw_now();
	AW_WITH(&c->a.mgr) {
		aw_evlog_add(&c->log, "body");
	}
	c->took = aw_now() - t0;
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exit_wait_is_bounded_by_the_grace_deadline)
{
	ctx c;
	init3(&c);
	c.a.exit_sleep = AW_SEC(10);
	c.a.exit_mode = X_SLEEP_RESULT;
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.grace = AW_MS(50);
	CHECK_EQ(aw_run_config(&cfg, grace_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body exit a(0)");
	CHECK_EQ(c.a.exit_sleep_rc, -ETIMEDOUT);
	CHECK_GE(c.a.exit_sleep_took, AW_MS(45));
	CHECK_LT(c.a.exit_sleep_took, AW_SEC(2));
	CHECK_LT(c.took, AW_SEC(2));
	/* The exit returned its sleep's failure: the block fails with it. */
	CHECK_EQ(c.pending, -ETIMEDOUT);
	CHECK(strstr(c.msg, "grace") != NULL);
}

AW_TEST(exit_wait_after_cancellation_is_bounded_by_the_grace_deadline)
{
	ctx c;
	init3(&c);
	c.a.exit_sleep = AW_SEC(10);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.grace = AW_MS(50);
	CHECK_EQ(aw_run_config(&cfg, cancel_main, &c), 0);
	CHECK_STR(c.log.s, "enter a body cancel exit a(ECANCELED)");
	CHECK_EQ(c.a.exit_sleep_rc, -ETIMEDOUT);
	CHECK_GE(c.a.exit_sleep_took, AW_MS(45));
	CHECK_LT(c.a.exit_sleep_took, AW_SEC(2));
	CHECK_LT(c.took, AW_SEC(2));
	/* The exit passed the cancellation on (X_PASS). */
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
}

/* ---- the manual pair -------------------------------------------------------------------- */

static int manual_main(void *arg)
{
	ctx *c = arg;
	int rc = aw_enter(&c->a.mgr);
	aw_evlog_add(&c->log, "entered %d ledger %zu", rc, aw_ledger_count());
	rc = aw_exit(&c->a.mgr, 0);
	aw_evlog_add(&c->log, "exited %d ledger %zu", rc, aw_ledger_count());

	/* An error handed to aw_exit reaches the exit, which lets it go on. */
	rc = aw_enter(&c->b.mgr);
	int err = aw_raise(-EIO, "manual failure");
	rc = aw_exit(&c->b.mgr, err);
	aw_evlog_add(&c->log, "exited %s", aw_test_code_name(rc));
	snap(c);
	aw_error_clear();

	/* Exiting a manager that was never entered is an error, not a call. */
	c->rc = aw_exit(&c->c.mgr, 0);
	c->cause_code = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(manual_enter_exit_pair_runs_enter_and_exit_once_and_tracks_the_ledger)
{
	ctx c;
	init3(&c);
	CHECK_EQ(aw_run(manual_main, &c), 0);
	CHECK_STR(c.log.s, "enter a entered 0 ledger 1 exit a(0) exited 0 ledger 0 "
			   "enter b exit b(EIO) exited EIO");
	CHECK_EQ(c.a.enters, 1);
	CHECK_EQ(c.a.exits, 1);
	CHECK_EQ(c.b.seen_err, -EIO);
	CHECK_STR(c.b.seen_msg, "manual failure");
	CHECK_EQ(c.pending, -EIO);
	CHECK_EQ(c.c.exits, 0);
	CHECK_EQ(c.rc, -EINVAL);
	CHECK_EQ(c.cause_code, -EINVAL);
}

static int manual_enter_fail_main(void *arg)
{
	ctx *c = arg;
	c->rc = aw_enter(&c->a.mgr);
	snap(c);
	c->iterations = (int)aw_ledger_count();
	aw_error_clear();
	return 0;
}

AW_TEST(manual_enter_failing_returns_its_error_and_records_nothing)
{
	ctx c;
	init3(&c);
	c.a.enter_rc = -ECONNREFUSED;
	CHECK_EQ(aw_run(manual_enter_fail_main, &c), 0);
	CHECK_EQ(c.rc, -ECONNREFUSED);
	CHECK_EQ(c.pending, -ECONNREFUSED);
	CHECK_EQ(c.iterations, 0);
	CHECK_EQ(c.a.exits, 0);
}

static const aw_mgr_ops leaky_ops = { .name = "leaky-widget", .enter = tmgr_enter, .exit = tmgr_exit };

typedef struct leak_ctx {
	tmgr m;
	aw_evlog log;
	int line;
	int rc;
} leak_ctx;

static int leak_main(void *arg)
{
	leak_ctx *c = arg;
	c->line = __LINE__ + 1;
	c->rc = aw_enter(&c->m.mgr);
	return 0;   /* never exited */
}

AW_TEST(manager_entered_manually_and_never_exited_is_reported_at_loop_shutdown)
{
	leak_ctx c;
	memset(&c, 0, sizeof c);
	tm(&c.m, "w", &c.log);
	c.m.mgr.ops = &leaky_ops;
	char *buf = NULL;
	size_t len = 0;
	FILE *log = open_memstream(&buf, &len);
	CHECK(log != NULL);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	int rc = aw_run_config(&cfg, leak_main, &c);
	fclose(log);
	char where[64];
	snprintf(where, sizeof where, "test_with.c:%d", c.line);
	bool has_leak = buf && strstr(buf, "leak") != NULL;
	bool has_name = buf && strstr(buf, "leaky-widget") != NULL;
	bool has_where = buf && strstr(buf, where) != NULL;
	if (!has_leak || !has_name || !has_where)
		fprintf(stderr, "log was: %s\n", buf ? buf : "(null)");
	free(buf);
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.m.enters, 1);
	CHECK_EQ(c.m.exits, 0);
	CHECK(has_leak);
	CHECK(has_name);
	CHECK(has_where);
}

/* A manager whose exit frees it and fails (a stream whose close reports a
 * send error): the block must not read the manager after its exit (ASan
 * sees a use after free otherwise), and the exit's own error goes on. */
typedef struct { aw_mgr mgr; } selffree_mgr;

static int selffree_enter(aw_mgr *m) { (void)m; return 0; }

static int selffree_exit(aw_mgr *m, int err)
{
	(void)err;
	free(m);
	return aw_raise(-EPIPE, "closing it failed");
}

static const aw_mgr_ops selffree_ops = { .name = "self-freeing", .enter = selffree_enter, .exit = selffree_exit };

static int selffree_main(void *arg)
{
	int *codes = arg;
	for (int round = 0; round < 2; round++) {   /* the inline exit, then one in two managers */
		selffree_mgr *m = malloc(sizeof *m);
		m->mgr.ops = &selffree_ops;
		if (!round) {
			AW_WITH(&m->mgr) {}
		} else {
			selffree_mgr *other = malloc(sizeof *other);
			other->mgr.ops = &selffree_ops;
			AW_WITH(&other->mgr, &m->mgr) {}
		}
		const aw_error *e = aw_error_current();
		codes[round] = e ? e->code : 0;
		aw_error_clear();
	}
	return 0;
}

AW_TEST(an_exit_that_frees_its_manager_and_fails_is_not_read_after_it_ran)
{
	int codes[2] = { 0, 0 };
	CHECK_EQ(aw_run(selffree_main, codes), 0);
	CHECK_EQ(codes[0], -EPIPE);
	CHECK_EQ(codes[1], -EPIPE);
}
