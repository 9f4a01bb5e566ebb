/* SPDX-License-Identifier: MIT */
/*
 * Tests: generator-style managers (aw_gen, Python's @asynccontextmanager),
 * DESIGN.md rule 7. One function sets up, yields once, tears down; the
 * body's error arrives at the yield, where the generator may handle it.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

typedef struct gctx {
	aw_evlog log;
	aw_gen g, g2;
	int value;              /* what the generator yields (its address) */
	int value2;
	void *body_value;       /* what the body saw */
	/* generator knobs */
	aw_time setup_sleep, teardown_sleep;
	/* observed inside the generator */
	int calls;
	int yield_rc, yield2_rc;
	int cur_at_yield;       /* aw_error_current() at the yield */
	char msg_at_yield[128];
	int setup_sleep_rc, teardown_sleep_rc;
	aw_time teardown_took;
	/* observed after the block */
	int rc, pending, cause_code;
	char msg[128], cause_msg[128];
	int sleep_rc, join_rc, pending_after_join;
	int ticks, ticks_during_setup;
	bool stop_ticking;
	aw_time took;
} gctx;

static void snap(gctx *c)
{
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	c->cause_code = e && e->cause ? e->cause->code : 0;
	snprintf(c->cause_msg, sizeof c->cause_msg, "%s", e && e->cause ? e->cause->msg : "");
}

static void note_yield(gctx *c, int r)
{
	c->yield_rc = r;
	const aw_error *e = aw_error_current();
	c->cur_at_yield = e ? e->code : 0;
	snprintf(c->msg_at_yield, sizeof c->msg_at_yield, "%s", e ? e->msg : "");
}

/* The plain generator: setup, yield &value, teardown, let the error go on. */
static int plain_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	c->calls++;
	aw_evlog_add(&c->log, "setup");
	if (c->setup_sleep) {
		int t0 = c->ticks;
		c->setup_sleep_rc = aw_sleep(c->setup_sleep);
		c->ticks_during_setup = c->ticks - t0;
	}
	int r = aw_gen_yield(g, &c->value);
	note_yield(c, r);
	aw_evlog_add(&c->log, "teardown(%s)", aw_test_code_name(r));
	if (c->teardown_sleep) {
		aw_time t0 = aw_now();
		c->teardown_sleep_rc = aw_sleep(c->teardown_sleep);
		c->teardown_took = aw_now() - t0;
	}
	return r;
}

/* ---- order and value --------------------------------------------------------- */

static int plain_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "plain", plain_gen, c)) {
		c->body_value = aw_gen_value(&c->g);
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(gen_runs_setup_body_teardown_in_order_and_body_gets_the_yielded_value)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(plain_main, &c), 0);
	CHECK_STR(c.log.s, "setup body teardown(0) after");
	CHECK(c.body_value == &c.value);
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(c.yield_rc, 0);
	CHECK_EQ(c.pending, 0);
}

static int nested_gen_b(aw_gen *g, void *arg)
{
	gctx *c = arg;
	aw_evlog_add(&c->log, "setup B");
	int r = aw_gen_yield(g, &c->value2);
	aw_evlog_add(&c->log, "teardown B(%s)", aw_test_code_name(r));
	return r;
}

static int nested_gen_a(aw_gen *g, void *arg)
{
	gctx *c = arg;
	aw_evlog_add(&c->log, "setup A");
	int r = aw_gen_yield(g, &c->value);
	aw_evlog_add(&c->log, "teardown A(%s)", aw_test_code_name(r));
	return r;
}

static int nested_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "A", nested_gen_a, c), aw_gen_init(&c->g2, "B", nested_gen_b, c)) {
		aw_evlog_add(&c->log, "body %d",
			     aw_gen_value(&c->g) == &c->value && aw_gen_value(&c->g2) == &c->value2);
	}
	snap(c);
	return 0;
}

AW_TEST(two_gens_in_one_with_set_up_left_to_right_and_tear_down_right_to_left)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(nested_main, &c), 0);
	CHECK_STR(c.log.s, "setup A setup B body 1 teardown B(0) teardown A(0)");
	CHECK_EQ(c.pending, 0);
}

/* ---- protocol errors: no yield, two yields --------------------------------------------------- */

static int noyield_gen(aw_gen *g, void *arg)
{
	(void)g;
	gctx *c = arg;
	c->calls++;
	aw_evlog_add(&c->log, "setup, no yield");
	return 0;
}

static int noyield_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "lazy", noyield_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_that_does_not_yield_fails_enter_with_noyield_and_body_does_not_run)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(noyield_main, &c), 0);
	CHECK_STR(c.log.s, "setup, no yield after");
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(c.pending, -AW_EGEN_NOYIELD);
	CHECK(strstr(c.msg, "lazy") != NULL);   /* the message names the generator */
}

static int twice_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	c->calls++;
	aw_evlog_add(&c->log, "setup");
	c->yield_rc = aw_gen_yield(g, &c->value);
	c->yield2_rc = aw_gen_yield(g, &c->value);
	aw_evlog_add(&c->log, "teardown(%s,%s)", aw_test_code_name(c->yield_rc),
		     aw_test_code_name(c->yield2_rc));
	return 0;
}

static int twice_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "greedy", twice_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_that_yields_twice_fails_the_block_exit_with_yieldtwice)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(twice_main, &c), 0);
	/* The body ran once; the second yield got the error and the generator
	 * could still tear down. */
	CHECK_STR(c.log.s, "setup body teardown(0,YIELDTWICE) after");
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(c.yield_rc, 0);
	CHECK_EQ(c.yield2_rc, -AW_EGEN_YIELDTWICE);
	CHECK_EQ(c.pending, -AW_EGEN_YIELDTWICE);
	CHECK(strstr(c.msg, "greedy") != NULL);
}

/* ---- the body's error at the yield ------------------------------------------------------ */

static int body_error_inner(gctx *c, aw_gen_fn fn)
{
	AW_WITH(aw_gen_init(&c->g, "g", fn, c)) {
		aw_evlog_add(&c->log, "body");
		return aw_raise(-EIO, "body failed");
	}
	return 0;
}

static int body_error_main(void *arg)
{
	gctx *c = arg;
	c->rc = body_error_inner(c, plain_gen);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_receives_the_body_error_at_the_yield_and_lets_it_go_on)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(body_error_main, &c), 0);
	CHECK_STR(c.log.s, "setup body teardown(EIO)");
	CHECK_EQ(c.yield_rc, -EIO);
	CHECK_EQ(c.cur_at_yield, -EIO);              /* aw_error_current() there */
	CHECK_STR(c.msg_at_yield, "body failed");
	CHECK_EQ(c.rc, -EIO);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "body failed");
}

static int handling_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	aw_evlog_add(&c->log, "setup");
	int r = aw_gen_yield(g, &c->value);
	note_yield(c, r);
	if (r == -EIO) {
		aw_evlog_add(&c->log, "handled(%s)", aw_test_code_name(r));   /* `except OSError:` */
		return 0;
	}
	return r;
}

static int handled_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "handler", handling_gen, c)) {
		aw_evlog_add(&c->log, "body");
		(void)!aw_raise(-EIO, "body failed");
		break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(gen_handling_the_body_error_at_the_yield_suppresses_it)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(handled_main, &c), 0);
	CHECK_STR(c.log.s, "setup body handled(EIO) after");
	CHECK_EQ(c.cur_at_yield, -EIO);
	CHECK_STR(c.msg_at_yield, "body failed");
	CHECK_EQ(c.pending, 0);
}

static int replacing_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	int r = aw_gen_yield(g, &c->value);
	note_yield(c, r);
	if (r)
		return aw_raise(-EPROTO, "wrapped by the generator");
	return 0;
}

static int replaced_main(void *arg)
{
	gctx *c = arg;
	c->rc = body_error_inner(c, replacing_gen);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_replacing_the_body_error_keeps_it_as_the_cause)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(replaced_main, &c), 0);
	CHECK_EQ(c.yield_rc, -EIO);
	CHECK_EQ(c.pending, -EPROTO);
	CHECK_STR(c.msg, "wrapped by the generator");
	CHECK_EQ(c.cause_code, -EIO);
	CHECK_STR(c.cause_msg, "body failed");
}

static int teardown_fail_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	int r = aw_gen_yield(g, &c->value);
	note_yield(c, r);
	aw_evlog_add(&c->log, "teardown(%s)", aw_test_code_name(r));
	return aw_raise(-EIO, "teardown failed");
}

static int teardown_fail_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "g", teardown_fail_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_teardown_failing_after_a_clean_body_fails_the_block)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(teardown_fail_main, &c), 0);
	CHECK_STR(c.log.s, "body teardown(0) after");
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "teardown failed");
	CHECK_EQ(c.cause_code, 0);
}

/* ---- setup failure ------------------------------------------------------------------------ */

static int setup_fail_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	c->calls++;
	aw_evlog_add(&c->log, "setup");
	if (c->calls)
		return aw_raise(-EIO, "setup failed: %s", "no disk");
	int r = aw_gen_yield(g, NULL);
	aw_evlog_add(&c->log, "teardown (not reached)");
	return r;
}

static int setup_fail_main(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "g", setup_fail_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_failing_in_setup_fails_the_enter_with_its_error)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(setup_fail_main, &c), 0);
	CHECK_STR(c.log.s, "setup after");
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "setup failed: no disk");
}

/* ---- waiting inside the generator ------------------------------------------------------------ */

static int ticker(void *arg)
{
	gctx *c = arg;
	while (!c->stop_ticking) {
		c->ticks++;
		if (aw_sleep(AW_MS(1)))
			break;
	}
	return 0;
}

static int waiting_main(void *arg)
{
	gctx *c = arg;
	aw_task *tk;
	if (aw_spawn(&tk, ticker, c, "ticker"))
		return -1;
	aw_time t0 = aw_now();
	AW_WITH(aw_gen_init(&c->g, "sleepy", plain_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	c->took = aw_now() - t0;
	snap(c);
	c->stop_ticking = true;
	return aw_task_join(tk);
}

AW_TEST(gen_can_wait_in_setup_and_teardown_while_other_tasks_run)
{
	gctx c;
	memset(&c, 0, sizeof c);
	c.setup_sleep = AW_MS(20);
	c.teardown_sleep = AW_MS(20);
	CHECK_EQ(aw_run(waiting_main, &c), 0);
	CHECK_STR(c.log.s, "setup body teardown(0)");
	CHECK_EQ(c.setup_sleep_rc, 0);
	CHECK_EQ(c.teardown_sleep_rc, 0);
	CHECK_GE(c.teardown_took, AW_MS(19));
	CHECK_GE(c.took, AW_MS(39));
	CHECK_GT(c.ticks_during_setup, 0);   /* the loop ran others meanwhile */
	CHECK_EQ(c.pending, 0);
}

/* ---- cancellation, timeouts, grace ------------------------------------------------------------------ */

static int cancel_worker(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "g", plain_gen, c)) {
		aw_evlog_add(&c->log, "body");
		int rc = aw_sleep(AW_SEC(10));
		c->sleep_rc = rc;
		if (rc)
			return rc;
	}
	return 0;
}

static int cancel_main(void *arg)
{
	gctx *c = arg;
	aw_task *w;
	aw_time t0 = aw_now();
	if (aw_spawn(&w, cancel_worker, c, "worker"))
		return -1;
	EXPECT_EQ(aw_yield(), 0);
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	c->took = aw_now() - t0;
	c->pending_after_join = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(gen_teardown_runs_on_cancellation_and_may_still_wait)
{
	gctx c;
	memset(&c, 0, sizeof c);
	c.teardown_sleep = AW_MS(20);
	CHECK_EQ(aw_run(cancel_main, &c), 0);
	CHECK_STR(c.log.s, "setup body cancel teardown(ECANCELED)");
	CHECK_EQ(c.sleep_rc, -ECANCELED);
	CHECK_EQ(c.yield_rc, -ECANCELED);
	CHECK_EQ(c.teardown_sleep_rc, 0);            /* shielded */
	CHECK_GE(c.teardown_took, AW_MS(19));
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
	CHECK_LT(c.took, AW_SEC(2));
}

AW_TEST(gen_teardown_wait_is_bounded_by_the_grace_deadline)
{
	gctx c;
	memset(&c, 0, sizeof c);
	c.teardown_sleep = AW_SEC(10);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.grace = AW_MS(50);
	CHECK_EQ(aw_run_config(&cfg, cancel_main, &c), 0);
	CHECK_STR(c.log.s, "setup body cancel teardown(ECANCELED)");
	CHECK_EQ(c.teardown_sleep_rc, -ETIMEDOUT);
	CHECK_GE(c.teardown_took, AW_MS(45));
	CHECK_LT(c.teardown_took, AW_SEC(2));
	CHECK_LT(c.took, AW_SEC(2));
	CHECK_EQ(c.join_rc, -ECANCELED);
}

static int timeout_inner(gctx *c)
{
	AW_WITH(AW_TIMEOUT(AW_MS(30)), aw_gen_init(&c->g, "g", plain_gen, c)) {
		aw_evlog_add(&c->log, "body");
		int rc = aw_sleep(AW_SEC(10));
		c->sleep_rc = rc;
		if (rc)
			return rc;
	}
	return 0;
}

static int timeout_main(void *arg)
{
	gctx *c = arg;
	aw_time t0 = aw_now();
	c->rc = timeout_inner(c);
	c->took = aw_now() - t0;
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_receives_the_timeout_at_the_yield)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(timeout_main, &c), 0);
	CHECK_STR(c.log.s, "setup body teardown(ETIMEDOUT)");
	CHECK_EQ(c.sleep_rc, -ETIMEDOUT);
	CHECK_EQ(c.yield_rc, -ETIMEDOUT);
	CHECK_EQ(c.rc, -ETIMEDOUT);
	CHECK_EQ(c.pending, -ETIMEDOUT);
	CHECK_LT(c.took, AW_SEC(2));
}

/* ---- misuse ------------------------------------------------------------------------------ */

static int yield_outside_main(void *arg)
{
	gctx *c = arg;
	aw_gen_init(&c->g, "g", plain_gen, c);
	c->rc = aw_gen_yield(&c->g, NULL);   /* not from inside the generator */
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_yield_outside_its_generator_function_fails_with_einval)
{
	gctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(yield_outside_main, &c), 0);
	CHECK_EQ(c.rc, -EINVAL);
	CHECK_EQ(c.pending, -EINVAL);
	CHECK_EQ(c.calls, 0);
}

/* ---- a generator holding a manager across its yield ---------------------------------------- */

typedef struct rmgr {
	aw_mgr mgr;
	aw_evlog *log;
	int seen_err;
	int exits;
} rmgr;

static int rmgr_enter(aw_mgr *m)
{
	rmgr *r = (rmgr *)m;
	aw_evlog_add(r->log, "lock");
	return 0;
}

static int rmgr_exit(aw_mgr *m, int err)
{
	rmgr *r = (rmgr *)m;
	r->exits++;
	r->seen_err = err;
	aw_evlog_add(r->log, "unlock(%s)", aw_test_code_name(err));
	return err;
}

static const aw_mgr_ops rmgr_ops = { .name = "lock-ish", .enter = rmgr_enter, .exit = rmgr_exit };

static rmgr held_lock;

/* `async with lock: yield conn` */
static int holding_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	AW_WITH(&held_lock.mgr) {
		int r = aw_gen_yield(g, &c->value);
		note_yield(c, r);
		if (r)
			return r;   /* leaves the inner block with the body's error */
		aw_evlog_add(&c->log, "clean");
	}
	return 0;
}

static int holding_main(void *arg)
{
	gctx *c = arg;
	c->rc = body_error_inner(c, holding_gen);
	snap(c);
	aw_error_clear();
	/* And once more with a clean body. */
	memset(&c->g, 0, sizeof c->g);
	AW_WITH(aw_gen_init(&c->g, "g", holding_gen, c)) {
		aw_evlog_add(&c->log, "body2");
	}
	c->pending_after_join = aw_error_pending();
	return 0;
}

AW_TEST(gen_holding_a_manager_across_its_yield_exits_it_with_the_body_error)
{
	gctx c;
	memset(&c, 0, sizeof c);
	held_lock = (rmgr){ .mgr = { &rmgr_ops }, .log = &c.log };
	CHECK_EQ(aw_run(holding_main, &c), 0);
	CHECK_STR(c.log.s, "lock body unlock(EIO) lock body2 clean unlock(0)");
	CHECK_EQ(held_lock.exits, 2);
	CHECK_EQ(c.rc, -EIO);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "body failed");
	CHECK_EQ(c.pending_after_join, 0);
}

/* ---- cancelled while the generator waits in its setup ---------------------------------------- */

/* A setup that waits and gives up when its wait fails. */
static int cancellable_setup_gen(aw_gen *g, void *arg)
{
	gctx *c = arg;
	aw_evlog_add(&c->log, "setup");
	c->setup_sleep_rc = aw_sleep(c->setup_sleep);
	if (c->setup_sleep_rc)
		return c->setup_sleep_rc;
	int r = aw_gen_yield(g, &c->value);
	aw_evlog_add(&c->log, "teardown(%s)", aw_test_code_name(r));
	return r;
}

static int cancel_setup_worker(void *arg)
{
	gctx *c = arg;
	AW_WITH(aw_gen_init(&c->g, "slow-setup", cancellable_setup_gen, c)) {
		aw_evlog_add(&c->log, "body");
	}
	c->pending = aw_error_pending();
	return c->pending;
}

static int cancel_setup_main(void *arg)
{
	gctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, cancel_setup_worker, c, "worker"))
		return -1;
	EXPECT_EQ(aw_yield(), 0);
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_cancelled_while_waiting_in_setup_fails_the_enter_with_ecanceled)
{
	gctx c;
	memset(&c, 0, sizeof c);
	c.setup_sleep = AW_SEC(10);
	CHECK_EQ(aw_run(cancel_setup_main, &c), 0);
	CHECK_STR(c.log.s, "setup cancel");
	CHECK_EQ(c.setup_sleep_rc, -ECANCELED);
	CHECK_EQ(c.pending, -ECANCELED);
	CHECK_EQ(c.join_rc, -ECANCELED);
}

/* ---- many at once: runners taken, parked and ended ------------------------------ */

/* 100 tasks are each inside a generator that holds an inner generator
 * across its yield (200 generators suspended at once, more than the loop
 * keeps parked between blocks: the rest end when they finish). Every
 * generator sleeps in setup and teardown, so the tasks' hand-offs
 * interleave. */
#define MANY 100

typedef struct many {
	aw_event go;
	int slot[MANY];
	const void *outer_stack[MANY], *inner_stack[MANY];
	int entered, failed, outer_torn, inner_torn, wrong_value, wrong_err;
	const void *seq_stack[3];
} many;

typedef struct many_arg {
	many *m;
	int i;
	aw_gen inner;
} many_arg;

static int many_inner(aw_gen *g, void *arg)
{
	many_arg *a = arg;
	a->m->inner_stack[a->i] = __builtin_frame_address(0);
	if (aw_sleep(AW_MS(a->i % 3)))
		return aw_error_pending();
	int r = aw_gen_yield(g, &a->m->slot[a->i]);
	if (aw_sleep(AW_MS(a->i % 2)) == 0)
		a->m->inner_torn++;
	return r;
}

static int many_outer(aw_gen *g, void *arg)
{
	many_arg *a = arg;
	a->m->outer_stack[a->i] = __builtin_frame_address(0);
	if (aw_sleep(AW_MS(a->i % 4)))
		return aw_error_pending();
	int r = 0;
	AW_WITH(aw_gen_init(&a->inner, "inner", many_inner, a)) {
		r = aw_gen_yield(g, aw_gen_value(&a->inner));
		if (aw_sleep(AW_MS(a->i % 3)) == 0)
			a->m->outer_torn++;
	}
	return r;
}

static int many_worker(void *arg)
{
	many_arg *a = arg;
	aw_gen g;
	bool inside = false;
	AW_WITH(aw_gen_init(&g, "outer", many_outer, a)) {
		inside = true;
		if (aw_gen_value(&g) != &a->m->slot[a->i])
			a->m->wrong_value++;
		a->m->entered++;
		int rc = aw_event_wait(&a->m->go);   /* all 100 are inside now */
		if (rc)
			return rc;
	}
	if (!inside)
		a->m->failed++;   /* the enter failed: main must not wait for it */
	if (aw_error_pending())
		a->m->wrong_err++;
	return 0;
}

static int seq_gen(aw_gen *g, void *arg)
{
	const void **where = arg;
	*where = __builtin_frame_address(0);   /* the real stack, also under ASan's fake stacks */
	return aw_gen_yield(g, NULL);
}

static int many_main(void *arg)
{
	many *m = arg;
	aw_event_init(&m->go);
	many_arg args[MANY];
	aw_task *t[MANY];
	for (int i = 0; i < MANY; i++) {
		args[i] = (many_arg){ .m = m, .i = i };
		if (aw_spawn(&t[i], many_worker, &args[i], NULL))
			return -1;
	}
	while (m->entered + m->failed < MANY)
		if (aw_sleep(AW_MS(1)))
			return -1;
	aw_event_set(&m->go);
	for (int i = 0; i < MANY; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	/* Afterwards, blocks one after another reuse one parked runner. */
	for (int k = 0; k < 3; k++) {
		aw_gen g;
		AW_WITH(aw_gen_init(&g, "seq", seq_gen, &m->seq_stack[k])) {
		}
	}
	return aw_error_pending();
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
	return x < y ? -1 : x > y;
}

AW_TEST(gen_many_suspended_at_once_each_run_on_their_own_stack_and_all_tear_down)
{
	static many mm;
	many *m = &mm;
	CHECK_EQ(aw_run(many_main, m), 0);
	CHECK_EQ(m->failed, 0);
	CHECK_EQ(m->entered, MANY);
	CHECK_EQ(m->wrong_value, 0);
	CHECK_EQ(m->outer_torn, MANY);
	CHECK_EQ(m->inner_torn, MANY);
	CHECK_EQ(m->wrong_err, 0);
	/* 200 generators suspended at once: 200 different stacks. */
	const void *all[2 * MANY];
	memcpy(all, m->outer_stack, sizeof m->outer_stack);
	memcpy(all + MANY, m->inner_stack, sizeof m->inner_stack);
	qsort(all, 2 * MANY, sizeof all[0], cmp_ptr);
	int distinct = 1;
	for (int i = 1; i < 2 * MANY; i++)
		distinct += all[i] != all[i - 1];
	CHECK_EQ(distinct, 2 * MANY);
	CHECK(m->seq_stack[0] == m->seq_stack[1]);
	CHECK(m->seq_stack[1] == m->seq_stack[2]);
}
