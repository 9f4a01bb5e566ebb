/* SPDX-License-Identifier: MIT */
/*
 * Tests: exit stacks (aw_exitstack, Python's AsyncExitStack), DESIGN.md
 * rule 6: entries pushed at run time unwind LIFO, every exit runs even when
 * one fails, errors chain as through nested blocks, any number of entries.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

enum { X_PASS, X_SUPPRESS, X_FAIL };

/* A recording manager; also usable as an exit function's or a callback's
 * argument. */
typedef struct tmgr {
	aw_mgr mgr;
	const char *name;
	aw_evlog *log;
	int enter_rc;
	int exit_mode;
	int exit_code;
	aw_time exit_sleep;
	int enters, exits;
	int seen_err;
	int exit_sleep_rc;
} tmgr;

static int tmgr_enter(aw_mgr *m)
{
	tmgr *t = (tmgr *)m;
	t->enters++;
	if (t->enter_rc) {
		aw_evlog_add(t->log, "enter %s(fail)", t->name);
		return aw_raise(t->enter_rc, "%s refused to enter", t->name);
	}
	aw_evlog_add(t->log, "enter %s", t->name);
	return 0;
}

static int tmgr_finish(tmgr *t, const char *what, int err)
{
	t->exits++;
	t->seen_err = err;
	aw_evlog_add(t->log, "%s %s(%s)", what, t->name, aw_test_code_name(err));
	if (t->exit_sleep)
		t->exit_sleep_rc = aw_sleep(t->exit_sleep);
	switch (t->exit_mode) {
	case X_SUPPRESS: return 0;
	case X_FAIL: return aw_raise(t->exit_code, "%s failed", t->name);
	default: return err;
	}
}

static int tmgr_exit(aw_mgr *m, int err) { return tmgr_finish((tmgr *)m, "exit", err); }
static int exit_fn(void *arg, int err) { return tmgr_finish(arg, "exitfn", err); }
static int callback_fn(void *arg)
{
	tmgr *t = arg;
	t->exits++;
	aw_evlog_add(t->log, "callback %s", t->name);
	if (t->exit_mode == X_FAIL)
		return aw_raise(t->exit_code, "%s failed", t->name);
	return 0;
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

typedef struct ctx {
	aw_evlog log;
	tmgr m[4];
	aw_exitstack s, s2;
	int rc, rc2, close_rc, pending;
	int cause_code, cause_cause_code;
	char msg[128], cause_msg[128];
	bool has_cause3;
	size_t count_after, count2;
	int join_rc;
} ctx;

static void init(ctx *c)
{
	memset(c, 0, sizeof *c);
	static const char *names[] = { "1", "2", "3", "4" };
	for (int i = 0; i < 4; i++)
		tm(&c->m[i], names[i], &c->log);
}

static void snap(ctx *c)
{
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	c->cause_code = e && e->cause ? e->cause->code : 0;
	snprintf(c->cause_msg, sizeof c->cause_msg, "%s", e && e->cause ? e->cause->msg : "");
	c->cause_cause_code = e && e->cause && e->cause->cause ? e->cause->cause->code : 0;
	c->has_cause3 = e && e->cause && e->cause->cause && e->cause->cause->cause;
}

/* ---- order ------------------------------------------------------------------- */

static int lifo_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(aw_exitstack_init(&c->s)) {
		if (aw_exitstack_enter(&c->s, &c->m[0].mgr) ||
		    aw_exitstack_push_exit(&c->s, exit_fn, &c->m[1]) ||
		    aw_exitstack_callback(&c->s, callback_fn, &c->m[2]))
			return -1;
		/* An already-entered manager: push only its exit. */
		if (c->m[3].mgr.ops->enter(&c->m[3].mgr) || aw_exitstack_push(&c->s, &c->m[3].mgr))
			return -1;
		c->count_after = c->s.count;
		aw_evlog_add(&c->log, "body");
	}
	snap(c);
	return 0;
}

AW_TEST(exitstack_unwinds_managers_exit_functions_and_callbacks_lifo)
{
	ctx c;
	init(&c);
	CHECK_EQ(aw_run(lifo_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 4 body exit 4(0) callback 3 exitfn 2(0) exit 1(0)");
	CHECK_EQ(c.count_after, 4);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(c.m[i].exits, 1);
	CHECK_EQ(c.s.count, 0);
	CHECK_EQ(c.pending, 0);
}

static int body_error_inner(ctx *c)
{
	AW_WITH(aw_exitstack_init(&c->s)) {
		for (int i = 0; i < 3; i++)
			if (aw_exitstack_enter(&c->s, &c->m[i].mgr))
				return -1;
		return aw_raise(-EPIPE, "body failed");
	}
	return 0;
}

static int body_error_main(void *arg)
{
	ctx *c = arg;
	c->rc = body_error_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_as_block_manager_passes_the_body_error_through_every_entry)
{
	ctx c;
	init(&c);
	CHECK_EQ(aw_run(body_error_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 enter 3 exit 3(EPIPE) exit 2(EPIPE) exit 1(EPIPE)");
	CHECK_EQ(c.rc, -EPIPE);
	CHECK_EQ(c.pending, -EPIPE);
	CHECK_STR(c.msg, "body failed");
	CHECK_EQ(c.cause_code, 0);
}

/* ---- failures and chaining ---------------------------------------------------------- */

static int close_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack_init(&c->s);
	for (int i = 0; i < 3; i++)
		if (aw_exitstack_enter(&c->s, &c->m[i].mgr))
			return -1;
	c->close_rc = aw_exitstack_close(&c->s);
	snap(c);
	c->count_after = c->s.count;
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_runs_every_exit_even_when_one_fails)
{
	ctx c;
	init(&c);
	c.m[1].exit_mode = X_FAIL;
	c.m[1].exit_code = -EIO;
	CHECK_EQ(aw_run(close_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 enter 3 exit 3(0) exit 2(0) exit 1(EIO)");
	for (int i = 0; i < 3; i++)
		CHECK_EQ(c.m[i].exits, 1);
	CHECK_EQ(c.close_rc, -EIO);
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "2 failed");
	CHECK_EQ(c.count_after, 0);
}

AW_TEST(exitstack_chains_errors_in_python_order_later_failure_has_earlier_as_cause)
{
	/* Entries [1, 2, 3]; unwinding runs 3, 2, 1. 3 fails with ENOSPC, 2
	 * lets it pass, 1 fails with EBADMSG while handling it: as in
	 * Python's AsyncExitStack, the final error is 1's, whose cause
	 * (__context__) is 3's. */
	ctx c;
	init(&c);
	c.m[2].exit_mode = X_FAIL;
	c.m[2].exit_code = -ENOSPC;
	c.m[0].exit_mode = X_FAIL;
	c.m[0].exit_code = -EBADMSG;
	CHECK_EQ(aw_run(close_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 enter 3 exit 3(0) exit 2(ENOSPC) exit 1(ENOSPC)");
	CHECK_EQ(c.m[1].seen_err, -ENOSPC);
	CHECK_EQ(c.m[0].seen_err, -ENOSPC);
	CHECK_EQ(c.close_rc, -EBADMSG);
	CHECK_EQ(c.pending, -EBADMSG);
	CHECK_STR(c.msg, "1 failed");
	CHECK_EQ(c.cause_code, -ENOSPC);
	CHECK_STR(c.cause_msg, "3 failed");
	CHECK_EQ(c.cause_cause_code, 0);
}

AW_TEST(exitstack_chain_of_three_failures_newest_first)
{
	ctx c;
	init(&c);
	for (int i = 0; i < 3; i++)
		c.m[i].exit_mode = X_FAIL;
	c.m[2].exit_code = -ENOSPC;
	c.m[1].exit_code = -EACCES;
	c.m[0].exit_code = -EBADMSG;
	CHECK_EQ(aw_run(close_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 enter 3 exit 3(0) exit 2(ENOSPC) exit 1(EACCES)");
	CHECK_EQ(c.close_rc, -EBADMSG);
	CHECK_EQ(c.cause_code, -EACCES);
	CHECK_EQ(c.cause_cause_code, -ENOSPC);
	CHECK(!c.has_cause3);
}

/* ---- push_exit and callbacks ------------------------------------------------------------ */

static int suppress_main(void *arg)
{
	ctx *c = arg;
	AW_WITH(aw_exitstack_init(&c->s)) {
		if (aw_exitstack_enter(&c->s, &c->m[0].mgr) ||
		    aw_exitstack_push_exit(&c->s, exit_fn, &c->m[1]))
			return -1;
		(void)!aw_raise(-EIO, "to be suppressed");
		break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(exitstack_push_exit_can_suppress_and_entries_below_it_then_see_no_error)
{
	ctx c;
	init(&c);
	c.m[1].exit_mode = X_SUPPRESS;
	CHECK_EQ(aw_run(suppress_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 exitfn 2(EIO) exit 1(0) after");
	CHECK_EQ(c.m[1].seen_err, -EIO);
	CHECK_EQ(c.m[0].seen_err, 0);
	CHECK_EQ(c.pending, 0);
}

static int callback_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack_init(&c->s);
	if (aw_exitstack_enter(&c->s, &c->m[0].mgr) ||
	    aw_exitstack_callback(&c->s, callback_fn, &c->m[1]))
		return -1;
	int err = aw_raise(-EPIPE, "passing through");
	c->close_rc = aw_exitstack_unwind(&c->s, err);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_callback_runs_once_and_lets_the_error_through)
{
	ctx c;
	init(&c);
	CHECK_EQ(aw_run(callback_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 callback 2 exit 1(EPIPE)");
	CHECK_EQ(c.m[1].exits, 1);
	CHECK_EQ(c.close_rc, -EPIPE);
	CHECK_EQ(c.pending, -EPIPE);
	CHECK_STR(c.msg, "passing through");
}

AW_TEST(exitstack_failing_callback_replaces_the_error_and_keeps_it_as_cause)
{
	ctx c;
	init(&c);
	c.m[1].exit_mode = X_FAIL;
	c.m[1].exit_code = -EBADMSG;
	CHECK_EQ(aw_run(callback_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 callback 2 exit 1(EBADMSG)");
	CHECK_EQ(c.close_rc, -EBADMSG);
	CHECK_EQ(c.pending, -EBADMSG);
	CHECK_STR(c.msg, "2 failed");
	CHECK_EQ(c.cause_code, -EPIPE);
	CHECK_STR(c.cause_msg, "passing through");
}

/* An exit that pushes onto the stack being unwound: the new entry runs next. */
static int pushing_exit(void *arg, int err)
{
	ctx *c = arg;
	aw_evlog_add(&c->log, "pusher");
	if (aw_exitstack_callback(&c->s, callback_fn, &c->m[3]))
		return -EIO;
	return err;
}

static int push_during_unwind_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack_init(&c->s);
	if (aw_exitstack_enter(&c->s, &c->m[0].mgr) || aw_exitstack_push_exit(&c->s, pushing_exit, c))
		return -1;
	c->close_rc = aw_exitstack_close(&c->s);
	c->count_after = c->s.count;
	snap(c);
	return 0;
}

AW_TEST(exitstack_entry_pushed_by_an_exit_during_unwind_runs_next)
{
	ctx c;
	init(&c);
	CHECK_EQ(aw_run(push_during_unwind_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 pusher callback 4 exit 1(0)");
	CHECK_EQ(c.close_rc, 0);
	CHECK_EQ(c.count_after, 0);
	CHECK_EQ(c.pending, 0);
}

/* ---- pop_all ---------------------------------------------------------------------- */

static int pop_all_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack_init(&c->s2);
	AW_WITH(aw_exitstack_init(&c->s)) {
		if (aw_exitstack_enter(&c->s, &c->m[0].mgr) ||
		    aw_exitstack_enter(&c->s, &c->m[1].mgr) ||
		    aw_exitstack_callback(&c->s, callback_fn, &c->m[2]))
			return -1;
		aw_exitstack_pop_all(&c->s, &c->s2);
		c->count_after = c->s.count;
		c->count2 = c->s2.count;
		aw_evlog_add(&c->log, "moved");
	}
	/* The block's exit closed s: nothing ran. */
	aw_evlog_add(&c->log, "block left");
	c->rc = aw_exitstack_close(&c->s);    /* closing the original again: nothing */
	aw_evlog_add(&c->log, "original closed");
	c->close_rc = aw_exitstack_close(&c->s2);
	snap(c);
	return 0;
}

AW_TEST(exitstack_pop_all_moves_entries_so_only_the_new_stack_runs_them)
{
	ctx c;
	init(&c);
	CHECK_EQ(aw_run(pop_all_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 moved block left original closed callback 3 exit 2(0) exit 1(0)");
	CHECK_EQ(c.count_after, 0);
	CHECK_EQ(c.count2, 3);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.close_rc, 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(c.m[i].exits, 1);
	CHECK_EQ(c.pending, 0);
}

/* ---- enter failures ---------------------------------------------------------------- */

static int enter_fail_main(void *arg)
{
	ctx *c = arg;
	aw_exitstack_init(&c->s);
	if (aw_exitstack_enter(&c->s, &c->m[0].mgr))
		return -1;
	c->rc = aw_exitstack_enter(&c->s, &c->m[1].mgr);
	c->count_after = c->s.count;
	snap(c);
	aw_error_clear();
	c->close_rc = aw_exitstack_close(&c->s);
	return 0;
}

AW_TEST(exitstack_enter_with_a_failing_enter_pushes_nothing)
{
	ctx c;
	init(&c);
	c.m[1].enter_rc = -EACCES;
	CHECK_EQ(aw_run(enter_fail_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2(fail) exit 1(0)");
	CHECK_EQ(c.rc, -EACCES);
	CHECK_EQ(c.pending, -EACCES);
	CHECK_STR(c.msg, "2 refused to enter");
	CHECK_EQ(c.count_after, 1);
	CHECK_EQ(c.m[1].exits, 0);
	CHECK_EQ(c.close_rc, 0);
}

/* ---- waiting exits, cancellation ----------------------------------------------------------- */

static int cancel_worker(void *arg)
{
	ctx *c = arg;
	AW_WITH(aw_exitstack_init(&c->s)) {
		for (int i = 0; i < 3; i++)
			if (aw_exitstack_enter(&c->s, &c->m[i].mgr))
				return -1;
		int rc = aw_sleep(AW_SEC(10));
		c->rc = rc;
		if (rc)
			return rc;
	}
	return 0;
}

static int cancel_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, cancel_worker, c, "worker"))
		return -1;
	EXPECT_EQ(aw_yield(), 0);
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	c->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(exitstack_entries_run_and_may_wait_when_the_task_is_cancelled)
{
	ctx c;
	init(&c);
	for (int i = 0; i < 3; i++)
		c.m[i].exit_sleep = AW_MS(5);
	CHECK_EQ(aw_run(cancel_main, &c), 0);
	CHECK_STR(c.log.s, "enter 1 enter 2 enter 3 cancel exit 3(ECANCELED) exit 2(ECANCELED) exit 1(ECANCELED)");
	CHECK_EQ(c.rc, -ECANCELED);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(c.m[i].exits, 1);
		CHECK_EQ(c.m[i].exit_sleep_rc, 0);   /* shielded */
	}
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending, -ECANCELED);
}

/* ---- 10,000 entries ------------------------------------------------------------------ */

enum { MANY = 10000 };

typedef struct many_ctx {
	int order[MANY];   /* order[k] = index of the k-th exit run */
	int ran;
	int idx[MANY];
	bool fail;
	int push_rc, close_rc, pending;
	int chain_len;
	bool chain_ok;
	int join_rc;
} many_ctx;

static many_ctx *many;

static int many_exit(void *arg, int err)
{
	int i = *(int *)arg;
	if (many->ran < MANY)
		many->order[many->ran] = i;
	many->ran++;
	/* Alternate codes: an exit returning the very code it was handed
	 * propagates that error (its own is dropped), so each differs from
	 * the one before. */
	if (many->fail)
		return aw_raise(i % 2 ? -EIO : -EPIPE, "exit %d failed", i);
	return err;
}

static int many_worker(void *arg)
{
	many_ctx *m = arg;
	aw_exitstack s;
	aw_exitstack_init(&s);
	for (int i = 0; i < MANY; i++) {
		m->idx[i] = i;
		int rc = aw_exitstack_push_exit(&s, many_exit, &m->idx[i]);
		if (rc) {
			m->push_rc = rc;
			break;
		}
	}
	m->close_rc = aw_exitstack_close(&s);
	m->pending = aw_error_pending();
	/* The chain, newest first: exit 0 (run last) ... exit 9999 (run first). */
	m->chain_ok = true;
	int n = 0;
	for (const aw_error *e = aw_error_current(); e; e = e->cause, n++) {
		char want[32];
		snprintf(want, sizeof want, "exit %d failed", n);
		if (e->code != (n % 2 ? -EIO : -EPIPE) || strcmp(e->msg, want) != 0)
			m->chain_ok = false;
	}
	m->chain_len = n;
	aw_error_clear();   /* frees a 10,000-long chain */
	return 0;
}

static int many_main(void *arg)
{
	many_ctx *m = arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "small-stack", .stack_size = 32 * 1024 };
	if (aw_spawn_with(&t, many_worker, m, &o))
		return -1;
	m->join_rc = aw_task_join(t);
	return 0;
}

AW_TEST(exitstack_10000_entries_unwind_in_reverse_on_a_32k_stack)
{
	many_ctx *m = calloc(1, sizeof *m);
	CHECK(m != NULL);
	many = m;
	int rc = aw_run(many_main, m);
	bool reversed = true;
	for (int k = 0; k < MANY; k++)
		if (m->order[k] != MANY - 1 - k)
			reversed = false;
	many_ctx r = *m;
	free(m);
	CHECK_EQ(rc, 0);
	CHECK_EQ(r.join_rc, 0);
	CHECK_EQ(r.push_rc, 0);
	CHECK_EQ(r.ran, MANY);
	CHECK(reversed);
	CHECK_EQ(r.close_rc, 0);
	CHECK_EQ(r.pending, 0);
	CHECK_EQ(r.chain_len, 0);
}

AW_TEST(exitstack_10000_failing_exits_chain_every_error_and_free_without_recursion)
{
	many_ctx *m = calloc(1, sizeof *m);
	CHECK(m != NULL);
	m->fail = true;
	many = m;
	int rc = aw_run(many_main, m);
	many_ctx r = *m;
	free(m);
	CHECK_EQ(rc, 0);
	CHECK_EQ(r.join_rc, 0);
	CHECK_EQ(r.ran, MANY);
	CHECK_EQ(r.close_rc, -EPIPE);   /* exit 0's, run last */
	CHECK_EQ(r.pending, -EPIPE);
	CHECK_EQ(r.chain_len, MANY);
	CHECK(r.chain_ok);
}

/* ---- re-entered from a manager's enter ------------------------------------- */

static aw_exitstack reent_stack;
static aw_gen reent_gens[24];
static int reent_inner(aw_gen *g, void *arg)
{
	(void)arg;
	return aw_gen_yield(g, NULL);
}

static int reent_outer(aw_gen *g, void *arg)
{
	aw_gen *inner = arg;
	/* Enters into the same exit stack, from inside an enter of it. */
	if (aw_exitstack_enter(&reent_stack, aw_gen_init(inner, "inner", reent_inner, NULL)))
		return aw_error_pending();
	return aw_gen_yield(g, NULL);
}

static int reent_main(void *arg)
{
	size_t *counts = arg;
	AW_WITH(aw_exitstack_init(&reent_stack)) {
		/* Fill to one below the first capacity (8), so the inner push
		 * takes the last reserved slot. */
		for (int i = 0; i < 7; i++)
			if (aw_exitstack_enter(&reent_stack, aw_gen_init(&reent_gens[i], "x", reent_inner, NULL)))
				return -1;
		if (aw_exitstack_enter(&reent_stack, aw_gen_init(&reent_gens[20], "outer", reent_outer, &reent_gens[21])))
			return -1;
		counts[0] = reent_stack.count;
		counts[1] = reent_stack.cap >= reent_stack.count;
	}
	counts[2] = reent_stack.count;
	return aw_error_pending();
}

AW_TEST(exitstack_enter_reentered_from_a_managers_enter_keeps_every_entry)
{
	size_t counts[3] = { 0 };
	CHECK_EQ(aw_run(reent_main, counts), 0);
	CHECK_EQ(counts[0], 9);   /* 7 + the inner + the outer */
	CHECK_EQ(counts[1], 1);
	CHECK_EQ(counts[2], 0);   /* all unwound */
}
