/* SPDX-License-Identifier: MIT */
/*
 * Tests: async iterators and AW_FOR (DESIGN.md rule 8): the iterator is a
 * manager, so it is closed exactly once however the loop is left; generator
 * iterators (aw_gen_iter) get -AW_ECLOSED at their pending yield when the
 * loop is left early.
 */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------------- */

enum { MAXN = 64 };

/* A counting iterator: yields pointers to 1..n. */
typedef struct titer {
	aw_iter it;
	aw_evlog *log;
	int n;
	int fail_at;        /* next() fails instead of producing this item */
	int enter_rc;
	aw_time next_sleep; /* next() waits this long first ... */
	int slow_from;      /* ... and 10 s from this item on (0: never) */
	int vals[MAXN];
	int pos;
	int enters, exits, nexts;
	int seen_err;
	char seen_msg[128];
} titer;

static int titer_enter(aw_mgr *m)
{
	titer *t = (titer *)m;   /* it.mgr is the first member */
	t->enters++;
	if (t->enter_rc) {
		aw_evlog_add(t->log, "open(fail)");
		return aw_raise(t->enter_rc, "cannot open the iterator");
	}
	aw_evlog_add(t->log, "open");
	t->pos = 0;
	return 0;
}

static int titer_exit(aw_mgr *m, int err)
{
	titer *t = (titer *)m;
	t->exits++;
	t->seen_err = err;
	const aw_error *e = aw_error_current();
	snprintf(t->seen_msg, sizeof t->seen_msg, "%s", err && e ? e->msg : "");
	aw_evlog_add(t->log, "close(%s)", aw_test_code_name(err));
	return err;
}

static int titer_next(aw_iter *it, void **item)
{
	titer *t = (titer *)it;
	t->nexts++;
	if (t->next_sleep) {
		bool slow = t->slow_from && t->pos + 1 >= t->slow_from;
		int rc = aw_sleep(slow ? AW_SEC(10) : t->next_sleep);
		if (rc)
			return rc;
	}
	if (t->pos >= t->n)
		return 0;
	int v = t->pos + 1;
	if (v == t->fail_at)
		return aw_raise(-EIO, "cannot read item %d", v);
	t->vals[t->pos] = v;
	*item = &t->vals[t->pos];
	t->pos++;
	return 1;
}

static const aw_mgr_ops titer_ops = { .name = "counting iterator", .enter = titer_enter, .exit = titer_exit };

static aw_iter *titer_init(titer *t, int n, aw_evlog *log)
{
	memset(t, 0, sizeof *t);
	t->it.mgr.ops = &titer_ops;
	t->it.next = titer_next;
	t->n = n;
	t->log = log;
	return &t->it;
}

typedef struct ctx {
	aw_evlog log;
	titer ti;
	aw_gen_iter gi;
	int n;               /* generator: how many values */
	int stop_at;         /* the loop leaves at this item */
	int fail_after;      /* generator: fail after yielding this many */
	int extra_yields;    /* generator: yields after being closed */
	int gvals[MAXN];
	int yield_rcs[MAXN];
	int nyields;
	bool teardown;
	aw_time gen_sleep;      /* generator: wait before each item ... */
	int slow_from;          /* ... and 10 s from this item on (0: never) */
	int rc, pending;
	char msg[128];
	int cause_code;
	int join_rc, pending_after_join;
	int evals;
} ctx;

static void snap(ctx *c)
{
	const aw_error *e = aw_error_current();
	c->pending = aw_error_pending();
	snprintf(c->msg, sizeof c->msg, "%s", e ? e->msg : "");
	c->cause_code = e && e->cause ? e->cause->code : 0;
}

/* ---- AW_FOR over a class-style iterator ------------------------------------------------ */

static int exhaust_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(for_visits_every_item_and_exhausting_closes_the_iterator_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 5, &c.log);
	CHECK_EQ(aw_run(exhaust_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 3 4 5 close(0) after");
	CHECK_EQ(c.ti.enters, 1);
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.nexts, 6);
	CHECK_EQ(c.ti.seen_err, 0);
	CHECK_EQ(c.pending, 0);
}

AW_TEST(for_over_an_empty_iterator_runs_no_body_and_closes_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 0, &c.log);
	CHECK_EQ(aw_run(exhaust_main, &c), 0);
	CHECK_STR(c.log.s, "open close(0) after");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.nexts, 1);
}

static int break_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == c->stop_at)
			break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	return 0;
}

AW_TEST(for_breaking_out_early_closes_the_iterator_once_with_no_error)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.stop_at = 3;
	CHECK_EQ(aw_run(break_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 3 close(0) after");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.seen_err, 0);
	CHECK_EQ(c.ti.nexts, 3);       /* no item fetched past the break */
	CHECK_EQ(c.pending, 0);
}

/* break with an error raised in that iteration: the error leaves the loop
 * (the iterator's exit sees it, it is in flight after the loop), as break
 * out of AW_WITH does; an error raised in an earlier iteration that the
 * body cleared does not. */
static int break_error_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == 1) {
			(void)!aw_raise(-EPIPE, "handled in the body");
			aw_error_clear();
		}
		if (*item == c->stop_at && aw_raise(-EIO, "failed at item %d", *item) < 0)
			break;
	}
	aw_evlog_add(&c->log, "after(%s)", aw_test_code_name(aw_error_pending()));
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(for_break_with_an_error_raised_in_the_body_carries_it_out_of_the_loop)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.stop_at = 3;
	CHECK_EQ(aw_run(break_error_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 3 close(EIO) after(EIO)");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.seen_err, -EIO);
	CHECK_EQ(c.pending, -EIO);
}

static int continue_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		if (*item % 2)
			continue;
		aw_evlog_add(&c->log, "%d", *item);
	}
	aw_evlog_add(&c->log, "after");
	return 0;
}

AW_TEST(for_continue_skips_to_the_next_item_and_still_closes_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 6, &c.log);
	CHECK_EQ(aw_run(continue_main, &c), 0);
	CHECK_STR(c.log.s, "open 2 4 6 close(0) after");
	CHECK_EQ(c.ti.exits, 1);
}

static int return_inner(ctx *c)
{
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == c->stop_at)
			return *item * 10;
	}
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

AW_TEST(for_return_from_inside_the_loop_closes_the_iterator_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.stop_at = 2;
	CHECK_EQ(aw_run(return_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 close(0) returned 20");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.pending, 0);
}

static int goto_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == 2)
			goto done;
	}
	aw_evlog_add(&c->log, "not reached");
done:
	aw_evlog_add(&c->log, "done");
	return 0;
}

AW_TEST(for_goto_out_of_the_loop_closes_the_iterator_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	CHECK_EQ(aw_run(goto_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 close(0) done");
	CHECK_EQ(c.ti.exits, 1);
}

AW_TEST(for_next_error_ends_the_loop_exit_sees_it_and_it_is_pending_after)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.ti.fail_at = 3;
	CHECK_EQ(aw_run(exhaust_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 close(EIO) after");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.seen_err, -EIO);
	CHECK_STR(c.ti.seen_msg, "cannot read item 3");
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "cannot read item 3");
}

static int body_error_inner(ctx *c)
{
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == c->stop_at)
			return aw_raise(-EPIPE, "body failed at %d", *item);
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

AW_TEST(for_body_error_leaving_the_loop_is_seen_by_the_iterator_exit)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.stop_at = 2;
	CHECK_EQ(aw_run(body_error_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 close(EPIPE)");
	CHECK_EQ(c.ti.seen_err, -EPIPE);
	CHECK_STR(c.ti.seen_msg, "body failed at 2");
	CHECK_EQ(c.rc, -EPIPE);
	CHECK_EQ(c.pending, -EPIPE);
}

AW_TEST(for_with_a_failing_open_runs_no_next_no_body_and_no_close)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 10, &c.log);
	c.ti.enter_rc = -EACCES;
	CHECK_EQ(aw_run(exhaust_main, &c), 0);
	CHECK_STR(c.log.s, "open(fail) after");
	CHECK_EQ(c.ti.nexts, 0);
	CHECK_EQ(c.ti.exits, 0);
	CHECK_EQ(c.pending, -EACCES);
	CHECK_STR(c.msg, "cannot open the iterator");
}

static int cancel_worker(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, &c->ti.it) {
		aw_evlog_add(&c->log, "%d", *item);
	}
	c->pending = aw_error_pending();
	aw_evlog_add(&c->log, "after");
	return c->pending;
}

static int cancel_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, cancel_worker, c, "worker"))
		return -1;
	while (c->ti.pos < 2)   /* two items arrived; next() waits for the third */
		if (aw_sleep(AW_MS(1)) < 0)
			return -1;
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	c->pending_after_join = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(for_cancelled_while_next_waits_ends_the_loop_and_closes_with_ecanceled)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 1000, &c.log);
	c.ti.next_sleep = AW_MS(2);
	c.ti.slow_from = 3;   /* the cancel arrives while next() waits for item 3 */
	CHECK_EQ(aw_run(cancel_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 cancel close(ECANCELED) after");
	CHECK_EQ(c.ti.exits, 1);
	CHECK_EQ(c.ti.seen_err, -ECANCELED);
	CHECK_EQ(c.pending, -ECANCELED);
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
}

static int nested_main(void *arg)
{
	ctx *c = arg;
	titer outer, inner;
	titer_init(&outer, 3, &c->log);
	int *a, *b;
	AW_FOR(a, &outer.it) {
		titer_init(&inner, 3, &c->log);
		AW_FOR(b, &inner.it) {
			aw_evlog_add(&c->log, "%d%d", *a, *b);
			if (*b == *a)
				break;   /* ends the inner loop only */
		}
		c->nyields += inner.exits;
	}
	c->rc = outer.exits;
	return 0;
}

AW_TEST(nested_for_loops_break_only_the_inner_one_and_close_each_iterator_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	CHECK_EQ(aw_run(nested_main, &c), 0);
	CHECK_STR(c.log.s, "open open 11 close(0) open 21 22 close(0) open 31 32 33 close(0) close(0)");
	CHECK_EQ(c.nyields, 3);
	CHECK_EQ(c.rc, 1);
}

static aw_iter *counted_iter(ctx *c)
{
	c->evals++;
	return &c->ti.it;
}

static int eval_once_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, counted_iter(c)) {
		aw_evlog_add(&c->log, "%d", *item);
	}
	return 0;
}

AW_TEST(for_evaluates_its_iterator_argument_once)
{
	ctx c;
	memset(&c, 0, sizeof c);
	titer_init(&c.ti, 4, &c.log);
	CHECK_EQ(aw_run(eval_once_main, &c), 0);
	CHECK_STR(c.log.s, "open 1 2 3 4 close(0)");
	CHECK_EQ(c.evals, 1);
}

/* ---- generator iterators --------------------------------------------------------------- */

/* Yields 1..n; records each yield's result; stops on the first non-zero. */
static int counting_gen(aw_gen *g, void *arg)
{
	ctx *c = arg;
	aw_evlog_add(&c->log, "gen start");
	for (int i = 1; i <= c->n; i++) {
		if (c->gen_sleep) {
			bool slow = c->slow_from && i >= c->slow_from;
			int rc = aw_sleep(slow ? AW_SEC(10) : c->gen_sleep);
			if (rc) {
				aw_evlog_add(&c->log, "gen wait %s", aw_test_code_name(rc));
				return rc;
			}
		}
		if (c->fail_after && i > c->fail_after)
			return aw_raise(-EIO, "generator failed after %d", c->fail_after);
		c->gvals[i] = i;
		int r = aw_gen_yield(g, &c->gvals[i]);
		c->yield_rcs[c->nyields++] = r;
		if (r) {
			aw_evlog_add(&c->log, "gen closed(%s)", aw_test_code_name(r));
			/* Ignore the close a few times (a misbehaving generator). */
			for (int k = 0; k < c->extra_yields; k++) {
				r = aw_gen_yield(g, &c->gvals[i]);
				c->yield_rcs[c->nyields++] = r;
			}
			c->teardown = true;
			return r;
		}
	}
	aw_evlog_add(&c->log, "gen end");
	c->teardown = true;
	return 0;
}

static int gen_loop_main(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, aw_gen_iter_init(&c->gi, "counter", counting_gen, c)) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == c->stop_at)
			break;
	}
	aw_evlog_add(&c->log, "after");
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_iter_yields_1_to_n_and_the_generator_runs_to_its_end)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 5;
	CHECK_EQ(aw_run(gen_loop_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 3 4 5 gen end after");
	CHECK_EQ(c.nyields, 5);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(c.yield_rcs[i], 0);
	CHECK(c.teardown);
	CHECK_EQ(c.pending, 0);
}

AW_TEST(gen_iter_break_early_delivers_eclosed_at_the_pending_yield_and_teardown_runs)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 10;
	c.stop_at = 2;
	CHECK_EQ(aw_run(gen_loop_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 gen closed(ECLOSED) after");
	CHECK_EQ(c.nyields, 2);
	CHECK_EQ(c.yield_rcs[0], 0);
	CHECK_EQ(c.yield_rcs[1], -AW_ECLOSED);
	CHECK(c.teardown);
	CHECK_EQ(c.pending, 0);   /* a clean close */
}

static int gen_body_error_inner(ctx *c)
{
	int *item;
	AW_FOR(item, aw_gen_iter_init(&c->gi, "counter", counting_gen, c)) {
		aw_evlog_add(&c->log, "%d", *item);
		if (*item == c->stop_at)
			return aw_raise(-EPIPE, "body failed at %d", *item);
	}
	return 0;
}

static int gen_body_error_main(void *arg)
{
	ctx *c = arg;
	c->rc = gen_body_error_inner(c);
	snap(c);
	aw_error_clear();
	return 0;
}

AW_TEST(gen_iter_left_with_an_error_delivers_that_error_at_the_yield)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 10;
	c.stop_at = 2;
	CHECK_EQ(aw_run(gen_body_error_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 gen closed(EPIPE)");
	CHECK_EQ(c.yield_rcs[1], -EPIPE);
	CHECK(c.teardown);
	CHECK_EQ(c.rc, -EPIPE);
	CHECK_EQ(c.pending, -EPIPE);
	CHECK_STR(c.msg, "body failed at 2");
}

AW_TEST(gen_iter_failing_generator_ends_the_loop_with_its_error_pending)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 10;
	c.fail_after = 2;
	CHECK_EQ(aw_run(gen_loop_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 after");
	CHECK_EQ(c.pending, -EIO);
	CHECK_STR(c.msg, "generator failed after 2");
}

AW_TEST(gen_iter_yielding_after_being_closed_fails_the_loop_with_yieldtwice)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 10;
	c.stop_at = 1;
	c.extra_yields = 2;
	CHECK_EQ(aw_run(gen_loop_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 gen closed(ECLOSED) after");
	/* Every yield after the close got -AW_ECLOSED again; then the
	 * generator returned and the loop's exit failed. */
	CHECK_EQ(c.nyields, 3);
	CHECK_EQ(c.yield_rcs[1], -AW_ECLOSED);
	CHECK_EQ(c.yield_rcs[2], -AW_ECLOSED);
	CHECK(c.teardown);
	CHECK_EQ(c.pending, -AW_EGEN_YIELDTWICE);
}

static int gen_cancel_worker(void *arg)
{
	ctx *c = arg;
	int *item;
	AW_FOR(item, aw_gen_iter_init(&c->gi, "ticker", counting_gen, c)) {
		aw_evlog_add(&c->log, "%d", *item);
	}
	c->pending = aw_error_pending();
	return c->pending;
}

static int gen_cancel_main(void *arg)
{
	ctx *c = arg;
	aw_task *w;
	if (aw_spawn(&w, gen_cancel_worker, c, "worker"))
		return -1;
	while (c->nyields < 2)   /* two items delivered; the generator waits for the third */
		if (aw_sleep(AW_MS(1)) < 0)
			return -1;
	aw_evlog_add(&c->log, "cancel");
	aw_task_cancel(w);
	c->join_rc = aw_task_join(w);
	c->pending_after_join = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(gen_iter_cancelled_while_the_generator_waits_ends_the_loop_with_ecanceled)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 1000;
	c.gen_sleep = AW_MS(2);
	c.slow_from = 3;   /* the cancel arrives while the generator waits for item 3 */
	CHECK_EQ(aw_run(gen_cancel_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 cancel gen wait ECANCELED");
	CHECK_EQ(c.pending, -ECANCELED);
	CHECK_EQ(c.join_rc, -ECANCELED);
	CHECK_EQ(c.pending_after_join, -ECANCELED);
}

static int gen_twice_main(void *arg)
{
	ctx *c = arg;
	int *item;
	/* The same aw_gen_iter, iterated twice. */
	for (int round = 0; round < 2; round++) {
		AW_FOR(item, aw_gen_iter_init(&c->gi, "counter", counting_gen, c)) {
			aw_evlog_add(&c->log, "%d", *item);
			if (*item == c->stop_at)
				break;
		}
	}
	snap(c);
	return 0;
}

AW_TEST(gen_iter_can_be_reinitialised_and_iterated_again)
{
	ctx c;
	memset(&c, 0, sizeof c);
	c.n = 3;
	c.stop_at = 2;
	CHECK_EQ(aw_run(gen_twice_main, &c), 0);
	CHECK_STR(c.log.s, "gen start 1 2 gen closed(ECLOSED) gen start 1 2 gen closed(ECLOSED)");
	CHECK_EQ(c.pending, 0);
}
