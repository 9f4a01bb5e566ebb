/* SPDX-License-Identifier: MIT */
/* Tests: cancel scopes — timeouts, move_on, shields, scope cancel, grace. */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* What a scenario saw; checked by the test body after aw_run. */
struct rec {
	int wait_rc, wait2_rc, pending, pending2;
	bool after, fired, inner_fired;
	aw_time elapsed;
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof *r);
	r->wait_rc = r->wait2_rc = r->pending = r->pending2 = 1;
}

/* ---- fail_after ----------------------------------------------------------- */

static int main_timeout_fires(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	aw_time t0 = aw_now();
	AW_WITH(aw_timeout_init(&s, AW_MS(20))) {
		r->wait_rc = aw_sleep(AW_SEC(10));
		if (r->wait_rc < 0)
			break;
		r->after = true;   /* not reached */
	}
	r->elapsed = aw_now() - t0;
	r->fired = s.fired;
	r->pending = aw_error_pending();
	const aw_error *e = aw_error_current();
	EXPECT(e && strstr(e->msg, "timed out"));
	aw_error_clear();
	/* Outside the scope, waits work again. */
	r->wait2_rc = aw_sleep(AW_MS(1));
	return 0;
}

AW_TEST(timeout_that_fires_fails_the_wait_and_the_block_with_etimedout)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_timeout_fires, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK(r.fired);
	CHECK(!r.after);
	CHECK_GE(r.elapsed, AW_MS(20));
	CHECK_LT(r.elapsed, AW_SEC(5));
	CHECK_EQ(r.wait2_rc, 0);
}

static int main_timeout_level(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(5))) {
		r->wait_rc = aw_sleep(AW_SEC(10));
		aw_error_clear();   /* "handled" — but the scope stays cancelled */
		r->wait2_rc = aw_yield();
		r->pending = aw_error_pending();
	}
	/* The second wait's error was not handled; and even if it had been,
	 * the scope is cancelled: its exit sees its own timeout. */
	r->pending2 = aw_error_pending();
	r->fired = s.fired;
	aw_error_clear();
	return 0;
}

AW_TEST(timeout_is_level_triggered_every_wait_inside_fails_and_the_block_fails)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_timeout_level, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK_EQ(r.wait2_rc, -ETIMEDOUT);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK_EQ(r.pending2, -ETIMEDOUT);
	CHECK(r.fired);
}

static int main_timeout_swallowed(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(5))) {
		r->wait_rc = aw_sleep(AW_SEC(10));
		aw_error_clear();   /* swallowed, and no wait after it */
	}
	r->pending = aw_error_pending();
	r->fired = s.fired;
	aw_error_clear();
	return 0;
}

/* Level-triggered all the way: a body that swallows its timeout and runs
 * to its end still leaves the block by the timeout. */
AW_TEST(timeout_swallowed_by_the_body_still_fails_the_block_at_its_exit)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_timeout_swallowed, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK(r.fired);
}

static int main_timeout_not_fired(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_SEC(10))) {
		r->wait_rc = aw_sleep(AW_MS(5));
		r->wait2_rc = aw_yield();
		r->after = true;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	return 0;
}

AW_TEST(timeout_that_does_not_fire_changes_nothing)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_timeout_not_fired, &r), 0);
	CHECK_EQ(r.wait_rc, 0);
	CHECK_EQ(r.wait2_rc, 0);
	CHECK(r.after);
	CHECK(!r.fired);
	CHECK_EQ(r.pending, 0);
}

static int main_timeout_at_past(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_deadline_init(&s, aw_now() - AW_MS(1))) {
		r->wait_rc = aw_yield();
		if (r->wait_rc)
			break;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	aw_error_clear();
	/* The one-liner form. */
	AW_WITH(AW_TIMEOUT(AW_MS(5))) {
		r->wait2_rc = aw_sleep(AW_SEC(10));
		if (r->wait2_rc)
			break;
	}
	r->pending2 = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(timeout_at_a_passed_deadline_fails_the_first_wait)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_timeout_at_past, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(r.fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK_EQ(r.wait2_rc, -ETIMEDOUT);
	CHECK_EQ(r.pending2, -ETIMEDOUT);
}

/* The deadline passes while the task runs without waiting (the loop's
 * cached time is older than the deadline): the next yield, which arms no
 * timer, still fails, by the clock. */
static int main_deadline_passed_while_running(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(2))) {
		aw_time until = aw_now() + AW_MS(5);
		while (aw_now() < until)
			;   /* busy: no loop step, so no fresh cached time */
		r->wait_rc = aw_yield();
		if (r->wait_rc)
			break;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(yield_after_a_deadline_passed_while_running_fails)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_deadline_passed_while_running, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(r.fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
}

static int main_nested_inner_fires(void *arg)
{
	struct rec *r = arg;
	aw_scope outer, inner;
	AW_WITH(aw_timeout_init(&outer, AW_SEC(10))) {
		AW_WITH(aw_timeout_init(&inner, AW_MS(10))) {
			r->wait_rc = aw_sleep(AW_SEC(10));
			if (r->wait_rc < 0)
				break;
		}
		r->inner_fired = inner.fired;
		r->pending = aw_error_pending();
		aw_error_clear();   /* handled: the outer block goes on */
		r->wait2_rc = aw_sleep(AW_MS(1));
		r->after = true;
	}
	r->fired = outer.fired;
	r->pending2 = aw_error_pending();
	return 0;
}

AW_TEST(nested_timeouts_the_inner_shorter_one_fires_the_outer_does_not)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_nested_inner_fires, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(r.inner_fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK_EQ(r.wait2_rc, 0);
	CHECK(r.after);
	CHECK(!r.fired);
	CHECK_EQ(r.pending2, 0);
}

static int main_nested_outer_fires(void *arg)
{
	struct rec *r = arg;
	aw_scope outer, inner;
	aw_time t0 = aw_now();
	AW_WITH(aw_timeout_init(&outer, AW_MS(15))) {
		AW_WITH(aw_timeout_init(&inner, AW_SEC(10))) {
			r->wait_rc = aw_sleep(AW_SEC(10));
			if (r->wait_rc < 0)
				break;
		}
		r->inner_fired = inner.fired;
		r->pending = aw_error_pending();   /* passed on by the inner exit */
		if (r->pending)
			break;
		r->after = true;
	}
	r->elapsed = aw_now() - t0;
	r->fired = outer.fired;
	r->pending2 = aw_error_pending();
	const aw_error *e = aw_error_current();
	EXPECT(e && e->origin == &outer);
	aw_error_clear();
	return 0;
}

AW_TEST(outer_timeout_inside_a_longer_inner_one_is_reported_as_the_outers)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_nested_outer_fires, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(!r.inner_fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK(!r.after);
	CHECK(r.fired);
	CHECK_EQ(r.pending2, -ETIMEDOUT);
	CHECK_LT(r.elapsed, AW_SEC(5));
}

/* ---- aw_task_cancel vs timeouts ------------------------------------------ */

static int cancelled_in_timeout(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_SEC(10))) {
		r->wait_rc = aw_sleep(AW_SEC(10));
		if (r->wait_rc < 0)
			break;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int main_cancel_in_timeout(void *arg)
{
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cancelled_in_timeout, arg, "victim"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(t);
	return aw_task_join(t);
}

AW_TEST(task_cancel_inside_a_timeout_block_gives_ecanceled)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_cancel_in_timeout, &r), 0);
	CHECK_EQ(r.wait_rc, -ECANCELED);
	CHECK(!r.fired);
	CHECK_EQ(r.pending, -ECANCELED);
}

static int main_cancel_and_expired_timeout(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(1))) {
		aw_time until = aw_now() + AW_MS(5);
		while (aw_now() < until)
			;   /* the deadline passes without a wait */
		aw_task_cancel(aw_task_current());
		r->wait_rc = aw_sleep(AW_SEC(10));
		if (r->wait_rc < 0)
			break;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(task_cancel_wins_over_an_expired_inner_timeout_never_etimedout)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_cancel_and_expired_timeout, &r), 0);
	CHECK_EQ(r.wait_rc, -ECANCELED);
	CHECK(!r.fired);
	CHECK_EQ(r.pending, -ECANCELED);
}

/* ---- move_on -------------------------------------------------------------- */

static int main_move_on(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	aw_time t0 = aw_now();
	AW_WITH(aw_move_on_init(&s, AW_MS(15))) {
		r->wait_rc = aw_sleep(AW_SEC(10));
		if (r->wait_rc < 0)
			break;
		r->after = true;   /* not reached */
	}
	r->elapsed = aw_now() - t0;
	r->fired = s.fired;
	r->pending = aw_error_pending();
	r->wait2_rc = aw_sleep(AW_MS(1));   /* execution continues normally */
	return 0;
}

AW_TEST(move_on_suppresses_its_own_timeout_and_execution_continues)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_move_on, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(!r.after);
	CHECK(r.fired);
	CHECK_EQ(r.pending, 0);
	CHECK_EQ(r.wait2_rc, 0);
	CHECK_GE(r.elapsed, AW_MS(15));
	CHECK_LT(r.elapsed, AW_SEC(5));
}

static int main_move_on_outer(void *arg)
{
	struct rec *r = arg;
	aw_scope outer, inner;
	AW_WITH(aw_timeout_init(&outer, AW_MS(10))) {
		AW_WITH(aw_move_on_init(&inner, AW_SEC(10))) {
			r->wait_rc = aw_sleep(AW_SEC(10));
			if (r->wait_rc < 0)
				break;
		}
		r->inner_fired = inner.fired;
		r->pending = aw_error_pending();
		if (r->pending)
			break;
	}
	r->fired = outer.fired;
	r->pending2 = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(move_on_does_not_swallow_an_outer_timeout)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_move_on_outer, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(!r.inner_fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK(r.fired);
	CHECK_EQ(r.pending2, -ETIMEDOUT);
}

static int main_move_on_not_fired(void *arg)
{
	struct rec *r = arg;
	aw_scope s;
	AW_WITH(aw_move_on_init(&s, AW_SEC(10))) {
		r->wait_rc = aw_sleep(AW_MS(2));
		r->after = true;
	}
	r->fired = s.fired;
	r->pending = aw_error_pending();
	return 0;
}

AW_TEST(move_on_that_does_not_fire_changes_nothing)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_move_on_not_fired, &r), 0);
	CHECK_EQ(r.wait_rc, 0);
	CHECK(r.after);
	CHECK(!r.fired);
	CHECK_EQ(r.pending, 0);
}

/* ---- shields --------------------------------------------------------------- */

static int shielded_task(void *arg)
{
	struct rec *r = arg;
	aw_time t0 = aw_now();
	AW_WITH(aw_shield_init(&(aw_scope){ .deadline = 0 })) {
		r->wait_rc = aw_sleep(AW_MS(30));   /* cancelled meanwhile */
		r->after = true;
	}
	r->elapsed = aw_now() - t0;
	r->wait2_rc = aw_sleep(AW_SEC(10));      /* the cancel arrives here */
	r->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int main_shield(void *arg)
{
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, shielded_task, arg, "shielded"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(t);
	return aw_task_join(t);
}

AW_TEST(shield_blocks_task_cancel_until_it_ends)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_shield, &r), 0);
	CHECK_EQ(r.wait_rc, 0);
	CHECK(r.after);
	CHECK_GE(r.elapsed, AW_MS(30));
	CHECK_EQ(r.wait2_rc, -ECANCELED);
	CHECK_EQ(r.pending, -ECANCELED);
}

static int main_shield_own_deadline(void *arg)
{
	struct rec *r = arg;
	aw_scope outer, sh, own;
	AW_WITH(aw_timeout_init(&outer, AW_MS(1))) {
		AW_WITH(aw_shield_init(&sh), aw_timeout_init(&own, AW_MS(20))) {
			/* The outer timeout passes during this sleep but does not
			 * reach inside; the deadline inside the shield does. */
			r->wait_rc = aw_sleep(AW_SEC(10));
			if (r->wait_rc < 0)
				break;
		}
		r->inner_fired = own.fired;
		r->pending = aw_error_pending();
		aw_error_clear();
		r->wait2_rc = aw_yield();   /* outside the shield: outer fires */
		if (r->wait2_rc < 0)
			break;
	}
	r->fired = outer.fired;
	r->pending2 = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(shield_with_a_timeout_inside_is_cancelled_only_by_that_timeout)
{
	struct rec r;
	rec_init(&r);
	CHECK_EQ(aw_run(main_shield_own_deadline, &r), 0);
	CHECK_EQ(r.wait_rc, -ETIMEDOUT);
	CHECK(r.inner_fired);
	CHECK_EQ(r.pending, -ETIMEDOUT);
	CHECK_EQ(r.wait2_rc, -ETIMEDOUT);
	CHECK(r.fired);
	CHECK_EQ(r.pending2, -ETIMEDOUT);
}

/* ---- aw_scope_cancel ------------------------------------------------------ */

struct scope_cancel_ctx {
	aw_scope s;
	bool move_on;
	bool entered;
	struct rec r;
};

static int scope_cancel_task(void *arg)
{
	struct scope_cancel_ctx *c = arg;
	aw_mgr *m = c->move_on ? aw_move_on_at_init(&c->s, AW_NEVER) : aw_deadline_init(&c->s, AW_NEVER);
	AW_WITH(m) {
		c->entered = true;
		c->r.wait_rc = aw_sleep(AW_SEC(10));
		if (c->r.wait_rc < 0)
			break;
	}
	c->r.fired = c->s.fired;
	c->r.pending = aw_error_pending();
	aw_error_clear();
	c->r.wait2_rc = aw_sleep(AW_MS(1));   /* the task itself is not cancelled */
	return 0;
}

static int main_scope_cancel(void *arg)
{
	struct scope_cancel_ctx *c = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, scope_cancel_task, c, "scoped"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	EXPECT(c->entered);
	aw_scope_cancel(&c->s);
	aw_scope_cancel(&c->s);   /* idempotent */
	return aw_task_join(t);
}

AW_TEST(scope_cancel_fails_waits_inside_with_ecanceled)
{
	struct scope_cancel_ctx c;
	memset(&c, 0, sizeof c);
	rec_init(&c.r);
	CHECK_EQ(aw_run(main_scope_cancel, &c), 0);
	CHECK_EQ(c.r.wait_rc, -ECANCELED);
	CHECK(c.r.fired);
	CHECK_EQ(c.r.pending, -ECANCELED);
	CHECK_EQ(c.r.wait2_rc, 0);
}

AW_TEST(scope_cancel_of_a_move_on_scope_is_suppressed_at_exit)
{
	struct scope_cancel_ctx c;
	memset(&c, 0, sizeof c);
	c.move_on = true;
	rec_init(&c.r);
	CHECK_EQ(aw_run(main_scope_cancel, &c), 0);
	CHECK_EQ(c.r.wait_rc, -ECANCELED);
	CHECK(c.r.fired);
	CHECK_EQ(c.r.pending, 0);
	CHECK_EQ(c.r.wait2_rc, 0);
}

/* ---- exits: shielded, under the grace deadline --------------------------- */

typedef struct slow_exit {
	aw_mgr mgr;
	int first_rc, second_rc, err, block_rc;
	aw_time first_elapsed, second_elapsed;
} slow_exit;

static int slow_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int slow_exit_fn(aw_mgr *m, int err)
{
	slow_exit *x = (slow_exit *)m;
	x->err = err;
	aw_time t0 = aw_now();
	x->first_rc = aw_sleep(AW_MS(10));     /* shielded: works although cancelled */
	x->first_elapsed = aw_now() - t0;
	x->second_rc = aw_sleep(AW_SEC(10));   /* stopped by the grace deadline */
	x->second_elapsed = aw_now() - t0;
	return err;
}

static const aw_mgr_ops slow_ops = { .name = "slow-exit", .enter = slow_enter, .exit = slow_exit_fn };

static int grace_task(void *arg)
{
	slow_exit *x = arg;
	AW_WITH(&x->mgr) {
		if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	return aw_error_pending();
}

static int main_grace(void *arg)
{
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, grace_task, arg, "graceful"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(t);
	((slow_exit *)arg)->block_rc = aw_task_join(t);
	aw_error_clear();
	return 0;
}

AW_TEST(grace_deadline_bounds_an_exit_that_waits)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.grace = AW_MS(60);
	slow_exit x = { .mgr = { &slow_ops }, .first_rc = 1, .second_rc = 1 };
	aw_time t0 = aw_now();
	CHECK_EQ(aw_run_config(&cfg, main_grace, &x), 0);
	CHECK_EQ(x.block_rc, -ECANCELED);
	CHECK_LT(aw_now() - t0, AW_SEC(5));
	CHECK_EQ(x.err, -ECANCELED);
	CHECK_EQ(x.first_rc, 0);
	CHECK_GE(x.first_elapsed, AW_MS(10));
	CHECK_EQ(x.second_rc, -ETIMEDOUT);
	CHECK_GE(x.second_elapsed, AW_MS(30));   /* grace counts from the loop's cached time */
	CHECK_LT(x.second_elapsed, AW_SEC(5));
}

static int main_grace_timeout(void *arg)
{
	slow_exit *x = arg;
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(5)), &x->mgr) {
		if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	x->block_rc = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(exit_inside_a_fired_timeout_can_wait_until_the_grace_deadline)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.grace = AW_MS(40);
	slow_exit x = { .mgr = { &slow_ops }, .first_rc = 1, .second_rc = 1 };
	CHECK_EQ(aw_run_config(&cfg, main_grace_timeout, &x), 0);
	CHECK_EQ(x.block_rc, -ETIMEDOUT);
	CHECK_EQ(x.err, -ETIMEDOUT);
	CHECK_EQ(x.first_rc, 0);
	CHECK_EQ(x.second_rc, -ETIMEDOUT);
	CHECK_GE(x.second_elapsed, AW_MS(20));
	CHECK_LT(x.second_elapsed, AW_SEC(5));
}

AW_TEST(scopes_outside_a_task_fail_to_enter_with_enotask)
{
	aw_scope s;
	bool ran = false;
	AW_WITH(aw_timeout_init(&s, AW_MS(1))) {
		ran = true;
	}
	CHECK(!ran);
	CHECK_EQ(aw_error_pending(), -AW_ENOTASK);
	aw_error_clear();
}
