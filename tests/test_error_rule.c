/* SPDX-License-Identifier: MIT */
/*
 * Tests: the error rule (core.h, "The error rule, in one sentence") and
 * the idioms a C programmer writes against it, each asserted the way a
 * Python user would expect the same code to behave:
 *
 *   An error stays in flight from its raise until your code handles it
 *   (aw_catch, aw_error_clear, or `continue` to the next item of AW_FOR);
 *   every exit of every block it leaves sees it, however the block is
 *   left; and a cancelled task's exits always see the cancellation.
 *
 * Also the two bugs of issue 11 (an exit stack used as a block's manager
 * chained a suppressed error; AW_FOR carried a `continue`d error to a later
 * clean exit), the dropped-error report, and aw_cleanup_run.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a recording manager ---------------------------------------------------- */

typedef struct rmgr {
	aw_mgr mgr;
	const char *name;
	aw_evlog *log;
	int seen_err;
	int exits;
	bool suppress;
} rmgr;

static int rmgr_exit(aw_mgr *m, int err)
{
	rmgr *r = (rmgr *)m;
	r->exits++;
	r->seen_err = err;
	aw_evlog_add(r->log, "exit %s(%s)", r->name, aw_test_code_name(err));
	return r->suppress ? 0 : err;
}

static const aw_mgr_ops rmgr_ops = { .name = "recorder", .exit = rmgr_exit };

static aw_mgr *rm(rmgr *r, const char *name, aw_evlog *log)
{
	memset(r, 0, sizeof *r);
	r->mgr.ops = &rmgr_ops;
	r->name = name;
	r->log = log;
	return &r->mgr;
}

/* An iterator over 0..n-1. */
typedef struct range {
	aw_iter it;
	int n, pos, vals[16];
	int exit_err, exits;
} range;

static int range_exit(aw_mgr *m, int err)
{
	range *r = (range *)m;
	r->exits++;
	r->exit_err = err;
	return err;
}

static int range_next(aw_iter *it, void **item)
{
	range *r = (range *)it;
	if (r->pos >= r->n)
		return 0;
	r->vals[r->pos] = r->pos;
	*item = &r->vals[r->pos++];
	return 1;
}

static const aw_mgr_ops range_ops = { .name = "range", .exit = range_exit };

static aw_iter *range_init(range *r, int n)
{
	memset(r, 0, sizeof *r);
	r->it.mgr.ops = &range_ops;
	r->it.next = range_next;
	r->n = n;
	return &r->it;
}

typedef struct ctx {
	aw_evlog log;
	rmgr a, b, c;
	range r;
	int rc, pending, seen;
	int items;
	char msg[128], cause_msg[128];
	bool has_cause;
} ctx;

static void snap(ctx *c)
{
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	c->has_cause = e && e->cause;
	snprintf(c->cause_msg, sizeof c->cause_msg, "%s", e && e->cause ? e->cause->msg : "");
}

/* ---- bug 1: an exit stack as a block's manager -------------------------------- */

static int raise_a(void *a)
{
	(void)a;
	return aw_raise(-EFAULT, "A");
}

static int suppress_all(void *a, int e)
{
	(void)a;
	(void)e;
	return 0;
}

static int exitstack_bug_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack s;
	AW_WITH(aw_exitstack_init(&s)) {
		if (aw_exitstack_callback(&s, raise_a, NULL) || aw_exitstack_push_exit(&s, suppress_all, NULL))
			return -1;
		c->rc = aw_raise(-EDOM, "body");
		break;
	}
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_as_block_manager_does_not_chain_a_body_error_an_inner_exit_suppressed)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(exitstack_bug_main, &c), 0);
	CHECK_EQ(c.pending, -EFAULT);
	CHECK_STR(c.msg, "A");
	CHECK(!c.has_cause);
}

/* CPython's test_exit_exception_chaining, through a block: the chain is
 * I -> K -> A (the suppressed error does not come back). */
static int raise_k(void *a)
{
	(void)a;
	return aw_raise(-EXDEV, "K");
}

static int raise_i(void *a)
{
	(void)a;
	return aw_raise(-EINTR, "I");
}

static int raise_v(void *a)
{
	(void)a;
	return aw_raise(-ERANGE, "V");
}

static int chaining_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack s;
	AW_WITH(aw_exitstack_init(&s)) {
		if (aw_exitstack_callback(&s, raise_i, NULL) || aw_exitstack_callback(&s, raise_k, NULL) ||
		    aw_exitstack_callback(&s, raise_a, NULL) || aw_exitstack_push_exit(&s, suppress_all, NULL) ||
		    aw_exitstack_callback(&s, raise_v, NULL))
			return -1;
		c->rc = aw_raise(-EDOM, "body");
		break;
	}
	const aw_error *e = aw_error_current();
	char chain[128] = "";
	for (; e; e = e->cause) {
		strcat(chain, e->msg);
		strcat(chain, e->cause ? ">" : "");
	}
	snprintf(c->msg, sizeof c->msg, "%s", chain);
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_as_block_manager_chains_exceptions_as_cpython_does)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(chaining_main, &c), 0);
	/* V replaced the body error; the suppressing exit handled that whole
	 * chain; then A was raised with nothing in flight, K during A, I
	 * during K. */
	CHECK_STR(c.msg, "I>K>A");
}

/* ---- bug 2: AW_FOR and `continue` ------------------------------------------- */

static int for_continue_main(void *arg)
{
	ctx *c = arg;
	int *x;
	AW_FOR(x, range_init(&c->r, 10)) {
		if (*x == 1) {
			c->rc = aw_raise(-EIO, "item 1");
			continue;
		}
		if (*x == 2)
			break;   /* clean early exit */
	}
	c->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(for_continue_handles_the_iterations_error_and_a_later_clean_break_carries_none)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(for_continue_main, &c), 0);
	CHECK_EQ(c.r.exits, 1);
	CHECK_EQ(c.r.exit_err, 0);
	CHECK_EQ(c.pending, 0);
}

static int for_continue_return_main(void *arg)
{
	ctx *c = arg;
	int *x;
	AW_FOR(x, range_init(&c->r, 10)) {
		if (*x == 1) {
			c->rc = aw_raise(-EIO, "item 1");
			continue;
		}
		if (*x == 3) {
			c->pending = aw_error_pending();
			return 7;   /* clean return from a later iteration */
		}
	}
	return 0;
}

AW_TEST(for_continue_handles_the_iterations_error_and_a_later_clean_return_carries_none)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(for_continue_return_main, &c), 7);
	CHECK_EQ(c.pending, 0);
	CHECK_EQ(c.r.exit_err, 0);
}

/* The idiom `if (rc < 0) continue;` skips the item, as `except E: continue`. */
static int for_skip_main(void *arg)
{
	ctx *c = arg;
	int *x;
	AW_FOR(x, range_init(&c->r, 5)) {
		int rc = *x % 2 ? aw_raise(-EINVAL, "odd item %d", *x) : 0;
		if (rc < 0)
			continue;
		c->items++;
	}
	c->pending = aw_error_pending();
	return 0;
}

AW_TEST(idiom_if_rc_negative_continue_skips_the_item_and_the_loop_ends_clean)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(for_skip_main, &c), 0);
	CHECK_EQ(c.items, 3);
	CHECK_EQ(c.r.exit_err, 0);
	CHECK_EQ(c.pending, 0);
}

/* `break` after an error raised in that iteration carries it out. */
static int for_break_error_main(void *arg)
{
	ctx *c = arg;
	int *x;
	AW_FOR(x, range_init(&c->r, 5)) {
		if (*x == 2) {
			c->rc = aw_raise(-EIO, "item 2");
			break;
		}
	}
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(idiom_if_rc_negative_break_in_a_for_loop_carries_the_error_to_the_exit_and_after)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(for_break_error_main, &c), 0);
	CHECK_EQ(c.r.exit_err, -EIO);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "item 2");
}

/* ---- the idioms --------------------------------------------------------------- */

static int fails(int code)
{
	return aw_raise(code, "the call failed");
}

static int return_rc_inner(ctx *c)
{
	AW_WITH(rm(&c->a, "a", &c->log)) {
		AW_WITH(rm(&c->b, "b", &c->log)) {
			int rc = fails(-EIO);
			if (rc < 0)
				return rc;
			aw_evlog_add(&c->log, "not reached");
		}
	}
	return 0;
}

static int return_rc_main(void *arg)
{
	ctx *c = arg;
	c->rc = return_rc_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(idiom_if_rc_negative_return_rc_hands_the_error_to_every_exit)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(return_rc_main, &c), 0);
	CHECK_STR(c.log.s, "exit b(EIO) exit a(EIO)");
	CHECK_EQ(c.rc, -EIO);
	CHECK_EQ(c.pending, -EIO);
}

static int catch_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(rm(&c->a, "a", &c->log)) {
		int rc = fails(-ENOENT);
		if (aw_catch(rc, -ENOENT))
			aw_evlog_add(&c->log, "default");
		else if (rc < 0)
			return rc;
		aw_evlog_add(&c->log, "went on");
	}
	snap(c);
	return 0;
}

AW_TEST(idiom_checking_a_code_with_aw_catch_and_going_on_is_handled)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(catch_main, &c), 0);
	CHECK_STR(c.log.s, "default went on exit a(0)");
	CHECK_EQ(c.pending, 0);
}

static int catch_other_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(rm(&c->a, "a", &c->log)) {
		int rc = fails(-EACCES);
		c->seen = aw_catch(rc, -ENOENT);
		if (!c->seen && aw_catch(rc, 0))
			aw_evlog_add(&c->log, "any");
	}
	snap(c);
	return 0;
}

AW_TEST(aw_catch_matches_only_its_code_and_zero_matches_any_failure)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(catch_other_main, &c), 0);
	CHECK_EQ(c.seen, 0);
	CHECK_STR(c.log.s, "any exit a(0)");
	CHECK_EQ(c.pending, 0);
	CHECK(!aw_catch(0, 0));
	CHECK(!aw_catch(5, 0));
}

/* Fail safe: a failure the body ignored reaches the exit at the end. */
static int ignored_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(rm(&c->a, "tx", &c->log)) {
		(void)!fails(-EIO);            /* ignored */
		aw_evlog_add(&c->log, "more work");
	}
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(an_ignored_failure_reaches_the_exit_when_the_body_runs_to_its_end)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(ignored_main, &c), 0);
	CHECK_STR(c.log.s, "more work exit tx(EIO)");
	CHECK_EQ(c.pending, -EIO);
}

/* Raise and leave in one step. */
static int raise_leave_inner(ctx *c)
{
	AW_WITH(rm(&c->a, "a", &c->log)) {
		return aw_raise(-EBADMSG, "bad input: %d", 42);
	}
	return 0;
}

static int raise_leave_main(void *arg)
{
	ctx *c = arg;
	c->rc = raise_leave_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(idiom_return_aw_raise_raises_and_leaves_in_one_step)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(raise_leave_main, &c), 0);
	CHECK_EQ(c.rc, -EBADMSG);
	CHECK_STR(c.log.s, "exit a(EBADMSG)");
	CHECK_STR(c.msg, "bad input: 42");
}

/* Leaving a loop from inside nested blocks: goto, every exit innermost first. */
static int goto_main(void *arg)
{
	ctx *c = arg;
	for (int i = 0; i < 5; i++) {
		AW_WITH(rm(&c->a, "a", &c->log)) {
			AW_WITH(rm(&c->b, "b", &c->log)) {
				c->items++;
				if (i == 1)
					goto done;
			}
		}
	}
done:
	snap(c);
	return 0;
}

AW_TEST(idiom_goto_leaves_a_loop_from_inside_nested_blocks_running_every_exit)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(goto_main, &c), 0);
	CHECK_EQ(c.items, 2);
	CHECK_STR(c.log.s, "exit b(0) exit a(0) exit b(0) exit a(0)");
	CHECK_EQ(c.pending, 0);
}

/* Suppression decides the return value with `return aw_error_pending()`. */
static int suppress_inner(ctx *c)
{
	rmgr *a = (rmgr *)rm(&c->a, "a", &c->log);
	a->suppress = true;
	AW_WITH(&a->mgr) {
		int rc = fails(-EIO);
		if (rc < 0)
			break;
	}
	return aw_error_pending();
}

static int suppress_main(void *arg)
{
	ctx *c = arg;
	c->rc = suppress_inner(c);
	return 0;
}

AW_TEST(idiom_break_then_return_aw_error_pending_lets_a_suppressing_exit_decide_the_result)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(suppress_main, &c), 0);
	CHECK_STR(c.log.s, "exit a(EIO)");
	CHECK_EQ(c.rc, 0);
}

/* ---- cancellation is level-triggered all the way ------------------------------ */

static int swallow_worker(void *arg)
{
	ctx *c = arg;
	AW_WITH(rm(&c->a, "tx", &c->log)) {
		int rc = aw_sleep(AW_SEC(10));
		if (aw_catch(rc, -ECANCELED))        /* swallowed */
			aw_evlog_add(&c->log, "swallowed");
		aw_evlog_add(&c->log, "commit?");
	}
	c->pending = aw_error_pending();
	return c->pending;
}

static int swallow_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, swallow_worker, c, "worker"))
		return -1;
	(void)!aw_sleep(AW_MS(5));
	aw_task_cancel(w);
	c->rc = aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(cancelled_tasks_exit_sees_the_cancellation_even_when_the_body_swallowed_it)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(swallow_main, &c), 0);
	CHECK_STR(c.log.s, "swallowed commit? exit tx(ECANCELED)");
	CHECK_EQ(c.pending, -ECANCELED);
	CHECK_EQ(c.rc, -ECANCELED);
}

/* A task cancelled while it ran without waiting: its next exit sees it. */
static int nowait_worker(void *arg)
{
	ctx *c = arg;
	aw_task_cancel(aw_task_current());
	AW_WITH(rm(&c->a, "tx", &c->log)) {
		aw_evlog_add(&c->log, "body");
	}
	c->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int nowait_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, nowait_worker, c, "worker"))
		return -1;
	c->rc = aw_task_join(w);
	return 0;
}

AW_TEST(cancelled_tasks_exit_sees_the_cancellation_when_the_body_never_waited)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(nowait_main, &c), 0);
	CHECK_STR(c.log.s, "body exit tx(ECANCELED)");
	CHECK_EQ(c.pending, -ECANCELED);
}

/* A move_on around the block: the inner exit sees the timeout, the scope's
 * own exit suppresses it and execution goes on. */
static int move_on_main(void *arg)
{
	ctx *c = arg;
	aw_scope s;
	AW_WITH(aw_move_on_init(&s, AW_MS(5))) {
		AW_WITH(rm(&c->a, "tx", &c->log)) {
			int rc = aw_sleep(AW_SEC(10));
			(void)!aw_catch(rc, 0);
		}
	}
	c->seen = s.fired;
	c->pending = aw_error_pending();
	return 0;
}

AW_TEST(exit_inside_a_fired_move_on_sees_the_timeout_and_the_scope_suppresses_it)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(move_on_main, &c), 0);
	CHECK_STR(c.log.s, "exit tx(ETIMEDOUT)");
	CHECK(c.seen);
	CHECK_EQ(c.pending, 0);
}

/* Exits inside a shield do not see the cancellation outside it. */
static int shield_worker(void *arg)
{
	ctx *c = arg;
	aw_task_cancel(aw_task_current());
	aw_scope sh;
	AW_WITH(aw_shield_init(&sh)) {
		AW_WITH(rm(&c->a, "inner", &c->log)) {
			c->rc = aw_sleep(AW_MS(1));
		}
	}
	c->pending = aw_error_pending();
	c->seen = aw_sleep(AW_MS(1));   /* outside the shield: cancelled */
	aw_error_clear();
	return 0;
}

static int shield_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, shield_worker, c, "worker"))
		return -1;
	(void)!aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(exits_inside_a_shield_do_not_see_the_cancellation_outside_it)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(shield_main, &c), 0);
	CHECK_EQ(c.rc, 0);
	/* The inner block's exit saw nothing; the first wait after the
	 * shield sees the cancellation. */
	CHECK_STR(c.log.s, "exit inner(0)");
	CHECK_EQ(c.pending, 0);
	CHECK_EQ(c.seen, -ECANCELED);
}

/* ---- dropped errors are reported in debug mode ------------------------------- */

static int drop_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++) {
		(void)!aw_raise(-EIO, "dropped %d", i);   /* replaced by the next: dropped */
	}
	(void)!aw_raise(-EPERM, "handled");
	aw_error_clear();
	return 0;   /* returns success with "dropped 2" in flight: dropped too */
}

AW_TEST(dropped_error_is_reported_once_per_raise_site_with_its_location)
{
	char path[] = "/tmp/aw-drop-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	FILE *log = fdopen(fd, "w+");
	CHECK(log != NULL);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	cfg.debug_errors = true;
	CHECK_EQ(aw_run_config(&cfg, drop_main, NULL), 0);
	fflush(log);
	rewind(log);
	char buf[4096];
	size_t n = fread(buf, 1, sizeof buf - 1, log);
	buf[n] = 0;
	fclose(log);
	unlink(path);
	/* One line for the site, whatever the number of drops there. */
	const char *first = strstr(buf, "was never handled");
	CHECK(first != NULL);
	CHECK(strstr(first + 1, "was never handled") == NULL);
	CHECK(strstr(buf, "test_error_rule.c:") != NULL);
	CHECK(strstr(buf, "): handled (") == NULL);
	CHECK(strstr(buf, "dropped 0") != NULL);
}

static int nodrop_main(void *arg)
{
	(void)arg;
	int rc = aw_raise(-EIO, "handled");
	(void)!aw_catch(rc, -EIO);
	return 0;
}

AW_TEST(handled_errors_are_not_reported_in_debug_mode)
{
	char path[] = "/tmp/aw-drop-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	FILE *log = fdopen(fd, "w+");
	CHECK(log != NULL);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	cfg.debug_errors = true;
	CHECK_EQ(aw_run_config(&cfg, nodrop_main, NULL), 0);
	fflush(log);
	long size = ftell(log);
	fclose(log);
	unlink(path);
	CHECK_EQ(size, 0);
}

/* ---- aw_cleanup_run ------------------------------------------------------------ */

typedef struct cleanup_ctx {
	int seen_err, sleep_rc, rc, pending;
	char msg[64];
	aw_time took;
} cleanup_ctx;

static int slow_rollback(void *arg, int err)
{
	cleanup_ctx *c = arg;
	c->seen_err = err;
	c->sleep_rc = aw_sleep(AW_MS(20));   /* would fail if not shielded */
	return aw_raise(-EPIPE, "the rollback failed");
}

static int cleanup_worker(void *arg)
{
	cleanup_ctx *c = arg;
	int rc = aw_sleep(AW_SEC(10));         /* cancelled: -ECANCELED in flight */
	aw_time t0 = aw_now();
	c->rc = aw_cleanup_run(slow_rollback, c, AW_SEC(1));
	c->took = aw_now() - t0;
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	return rc;
}

static int cleanup_main(void *arg)
{
	aw_task *w;
	if (aw_spawn(&w, cleanup_worker, arg, "worker"))
		return -1;
	(void)!aw_sleep(AW_MS(2));
	aw_task_cancel(w);
	(void)!aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(cleanup_run_is_shielded_sees_the_error_and_keeps_it_in_flight)
{
	cleanup_ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(cleanup_main, &c), 0);
	CHECK_EQ(c.seen_err, -ECANCELED);
	CHECK_EQ(c.sleep_rc, 0);
	CHECK_GE(c.took, AW_MS(20));
	CHECK_EQ(c.rc, -EPIPE);               /* the cleanup's result */
	CHECK_EQ(c.pending, -ECANCELED);      /* the error in flight is unchanged */
	CHECK(strstr(c.msg, "cancelled") != NULL);
}

static int bounded_cleanup(void *arg, int err)
{
	cleanup_ctx *c = arg;
	c->seen_err = err;
	c->sleep_rc = aw_sleep(AW_SEC(10));
	return c->sleep_rc;
}

static int bounded_main(void *arg)
{
	cleanup_ctx *c = arg;
	aw_task_cancel(aw_task_current());   /* nothing in flight, but cancelled */
	aw_time t0 = aw_now();
	c->rc = aw_cleanup_run(bounded_cleanup, c, AW_MS(30));
	c->took = aw_now() - t0;
	c->pending = aw_error_pending();
	return 0;
}

AW_TEST(cleanup_run_is_bounded_by_its_limit_and_sees_a_pending_cancellation)
{
	cleanup_ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(bounded_main, &c), 0);
	CHECK_EQ(c.seen_err, -ECANCELED);
	CHECK_EQ(c.sleep_rc, -ETIMEDOUT);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK_GE(c.took, AW_MS(30));
	CHECK_LT(c.took, AW_SEC(5));
	CHECK_EQ(c.pending, 0);
}

/* ---- manual cleanups see the cancellation too ------------------------------- */

static int close_worker(void *arg)
{
	ctx *c = arg;
	aw_exitstack s;
	(void)aw_exitstack_init(&s);
	if (aw_exitstack_push(&s, rm(&c->a, "a", &c->log)))
		return -1;
	aw_mgr *b = rm(&c->b, "b", &c->log);
	if (aw_enter(b))
		return -1;
	aw_task_cancel(aw_task_current());
	c->rc = aw_exitstack_close(&s);
	aw_error_clear();
	c->seen = aw_exit(b, 0);
	aw_error_clear();
	return 0;
}

static int close_main(void *arg)
{
	aw_task *w;
	if (aw_spawn(&w, close_worker, arg, "worker"))
		return -1;
	(void)!aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_close_and_manual_exit_of_a_cancelled_task_see_the_cancellation)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(close_main, &c), 0);
	CHECK_STR(c.log.s, "exit a(ECANCELED) exit b(ECANCELED)");
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK_EQ(c.seen, -ECANCELED);
}
