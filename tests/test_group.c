/* SPDX-License-Identifier: MIT */
/* Tests: task groups (Python's TaskGroup). */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A child's behaviour and what it saw. */
struct child {
	aw_time sleep;     /* sleep this long first (0: no wait at all) */
	int fail;          /* then return aw_raise(fail) if non-zero */
	int fail_on_cancel;/* if the sleep is cancelled, fail with this instead */
	int sleep_rc;
	bool done;
};

static int child_fn(void *arg)
{
	struct child *c = arg;
	c->sleep_rc = 0;
	if (c->sleep) {
		c->sleep_rc = aw_sleep(c->sleep);
		if (c->sleep_rc < 0) {
			if (c->fail_on_cancel)
				return aw_raise(c->fail_on_cancel, "child failed while cancelled");
			return c->sleep_rc;
		}
	}
	c->done = true;
	if (c->fail)
		return aw_raise(c->fail, "child failed with %d", c->fail);
	return 0;
}

/* Outcome of a group block. */
struct outcome {
	int body_rc;          /* the body's wait */
	int spawn_after_rc;   /* a spawn after the failure */
	bool body_after;
	int pending;
	int members[4];
	int nmembers;
	int cause;
	char msg[128];
	aw_time elapsed;
};

static void take_outcome(struct outcome *o)
{
	o->pending = aw_error_pending();
	const aw_error *e = aw_error_current();
	o->nmembers = 0;
	if (e) {
		snprintf(o->msg, sizeof o->msg, "%s", e->msg);
		for (const aw_error *m = e->members; m && o->nmembers < 4; m = m->next_member)
			o->members[o->nmembers++] = m->code;
		o->cause = e->cause ? e->cause->code : 0;
	}
	aw_error_clear();
}

static void outcome_init(struct outcome *o)
{
	memset(o, 0, sizeof *o);
	o->body_rc = o->spawn_after_rc = o->pending = 1;
}

/* ---- the exit waits ------------------------------------------------------ */

struct waits_ctx { struct child c[3]; struct outcome o; };

static int main_waits(void *arg)
{
	struct waits_ctx *w = arg;
	aw_group g;
	aw_time t0 = aw_now();
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 3; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &w->c[i], "child"), 0);
		EXPECT_EQ(g.running, 3);
		/* The body ends at once; the exit waits for the children. */
	}
	w->o.elapsed = aw_now() - t0;
	EXPECT_EQ(g.running, 0);
	take_outcome(&w->o);
	return 0;
}

AW_TEST(group_exit_waits_for_every_child)
{
	struct waits_ctx w;
	memset(&w, 0, sizeof w);
	w.c[0].sleep = AW_MS(20);
	w.c[1].sleep = AW_MS(5);
	w.c[2].sleep = AW_MS(10);
	CHECK_EQ(aw_run(main_waits, &w), 0);
	for (int i = 0; i < 3; i++) {
		CHECK(w.c[i].done);
		CHECK_EQ(w.c[i].sleep_rc, 0);
	}
	CHECK_EQ(w.o.pending, 0);
	CHECK_GE(w.o.elapsed, AW_MS(20));
	CHECK_LT(w.o.elapsed, AW_SEC(5));
}

/* ---- a failing child --------------------------------------------------------- */

struct fail_ctx { struct child c[3]; struct outcome o; };

static int main_one_fails(void *arg)
{
	struct fail_ctx *f = arg;
	aw_group g;
	aw_time t0 = aw_now();
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 3; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &f->c[i], "child"), 0);
		f->o.body_rc = aw_sleep(AW_SEC(10));
		if (f->o.body_rc < 0)
			break;
		f->o.body_after = true;
	}
	f->o.elapsed = aw_now() - t0;
	take_outcome(&f->o);
	return 0;
}

AW_TEST(failing_child_cancels_siblings_and_body_and_the_block_fails_egroup)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_SEC(10);                       /* a sibling */
	f.c[1].sleep = AW_MS(5), f.c[1].fail = -EIO;     /* the failure */
	f.c[2].sleep = AW_SEC(10);                       /* another sibling */
	CHECK_EQ(aw_run(main_one_fails, &f), 0);
	CHECK_EQ(f.o.body_rc, -ECANCELED);
	CHECK(!f.o.body_after);
	CHECK_EQ(f.c[0].sleep_rc, -ECANCELED);
	CHECK_EQ(f.c[2].sleep_rc, -ECANCELED);
	CHECK(!f.c[0].done);
	CHECK(!f.c[2].done);
	CHECK_EQ(f.o.pending, -AW_EGROUP);
	CHECK_EQ(f.o.nmembers, 1);
	CHECK_EQ(f.o.members[0], -EIO);
	CHECK(strstr(f.o.msg, "1 task") != NULL);
	CHECK_LT(f.o.elapsed, AW_SEC(5));
}

static int main_two_fail(void *arg)
{
	struct fail_ctx *f = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 3; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &f->c[i], "child"), 0);
		f->o.body_rc = aw_sleep(AW_SEC(10));
		if (f->o.body_rc < 0)
			break;
	}
	take_outcome(&f->o);
	return 0;
}

AW_TEST(two_failing_children_give_two_members_in_order_of_failure)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_MS(5), f.c[0].fail = -EIO;             /* fails first */
	f.c[1].sleep = AW_SEC(10), f.c[1].fail_on_cancel = -EPIPE; /* fails when cancelled */
	f.c[2].sleep = AW_SEC(10);                               /* just cancelled */
	CHECK_EQ(aw_run(main_two_fail, &f), 0);
	CHECK_EQ(f.o.body_rc, -ECANCELED);
	CHECK_EQ(f.o.pending, -AW_EGROUP);
	CHECK_EQ(f.o.nmembers, 2);
	CHECK_EQ(f.o.members[0], -EIO);
	CHECK_EQ(f.o.members[1], -EPIPE);
	CHECK_EQ(f.c[2].sleep_rc, -ECANCELED);
}

AW_TEST(children_failing_before_their_first_wait_are_all_members)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	/* No waits at all: each fails on its first run, in spawn order. */
	f.c[0].fail = -EIO;
	f.c[1].fail = -EPIPE;
	f.c[2].fail = -ENOENT;
	CHECK_EQ(aw_run(main_two_fail, &f), 0);
	CHECK_EQ(f.o.body_rc, -ECANCELED);
	CHECK_EQ(f.o.pending, -AW_EGROUP);
	CHECK_EQ(f.o.nmembers, 3);
	CHECK_EQ(f.o.members[0], -EIO);
	CHECK_EQ(f.o.members[1], -EPIPE);
	CHECK_EQ(f.o.members[2], -ENOENT);
}

/* ---- a failing body ------------------------------------------------------ */

static int main_body_fails(void *arg)
{
	struct fail_ctx *f = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 2; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &f->c[i], "child"), 0);
		EXPECT_EQ(aw_sleep(AW_MS(2)), 0);   /* the children wait now */
		(void)!aw_raise(-EINVAL, "the body failed");
		break;
	}
	take_outcome(&f->o);
	return 0;
}

AW_TEST(body_failure_cancels_the_children_and_the_bodys_error_goes_on)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_SEC(10);
	f.c[1].sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_body_fails, &f), 0);
	CHECK_EQ(f.c[0].sleep_rc, -ECANCELED);
	CHECK_EQ(f.c[1].sleep_rc, -ECANCELED);
	CHECK_EQ(f.o.pending, -EINVAL);
	CHECK_STR(f.o.msg, "the body failed");
	CHECK_EQ(f.o.nmembers, 0);
}

AW_TEST(body_failure_with_failing_children_is_egroup_caused_by_the_body)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_SEC(10), f.c[0].fail_on_cancel = -EIO;   /* fails in its cancel */
	f.c[1].sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_body_fails, &f), 0);
	CHECK_EQ(f.c[1].sleep_rc, -ECANCELED);
	CHECK_EQ(f.o.pending, -AW_EGROUP);
	CHECK_EQ(f.o.nmembers, 1);
	CHECK_EQ(f.o.members[0], -EIO);
	CHECK_EQ(f.o.cause, -EINVAL);   /* the body's error, kept as the cause */
}

/* ---- spawning into a failed group -------------------------------------- */

static int main_spawn_after_fail(void *arg)
{
	struct fail_ctx *f = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		EXPECT_EQ(aw_group_spawn(&g, child_fn, &f->c[0], "failer"), 0);
		f->o.body_rc = aw_sleep(AW_SEC(10));   /* the child fails */
		aw_error_clear();
		f->o.spawn_after_rc = aw_group_spawn(&g, child_fn, &f->c[1], "late");
		EXPECT_EQ(aw_error_pending(), -ECANCELED);
		break;
	}
	take_outcome(&f->o);
	/* After the block, spawning is refused too. */
	int rc = aw_group_spawn(&g, child_fn, &f->c[1], "later");
	EXPECT_EQ(rc, -EINVAL);
	aw_error_clear();
	return 0;
}

AW_TEST(spawning_into_a_group_after_it_failed_is_ecanceled)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_MS(2), f.c[0].fail = -EIO;
	CHECK_EQ(aw_run(main_spawn_after_fail, &f), 0);
	CHECK_EQ(f.o.body_rc, -ECANCELED);
	CHECK_EQ(f.o.spawn_after_rc, -ECANCELED);
	CHECK(!f.c[1].done);
	CHECK_EQ(f.o.pending, -AW_EGROUP);
	CHECK_EQ(f.o.nmembers, 1);
	CHECK_EQ(f.o.members[0], -EIO);
}

/* ---- cancelling the owner -------------------------------------------------- */

struct owner_ctx { struct child c[2]; struct outcome o; bool after_block; int later_rc; };

static int owner_task(void *arg)
{
	struct owner_ctx *w = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 2; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &w->c[i], "child"), 0);
		/* Fall off the end: the exit waits for the children. */
	}
	w->after_block = true;
	take_outcome(&w->o);
	w->later_rc = aw_yield();   /* the owner is still cancelled */
	aw_error_clear();
	return 0;
}

static int main_cancel_owner(void *arg)
{
	struct owner_ctx *w = arg;
	aw_task *t;
	aw_time t0 = aw_now();
	EXPECT_EQ(aw_spawn(&t, owner_task, w, "owner"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* the owner waits in the exit */
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	w->o.elapsed = aw_now() - t0;
	return 0;
}

AW_TEST(cancelling_the_owner_while_its_group_exit_waits_cancels_the_children)
{
	struct owner_ctx w;
	memset(&w, 0, sizeof w);
	outcome_init(&w.o);
	w.c[0].sleep = AW_SEC(10);
	w.c[1].sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_cancel_owner, &w), 0);
	CHECK_EQ(w.c[0].sleep_rc, -ECANCELED);
	CHECK_EQ(w.c[1].sleep_rc, -ECANCELED);
	CHECK(w.after_block);
	/* Cancelled children are not failures; the owner's own cancellation
	 * ends the block (as asyncio's TaskGroup re-raises CancelledError). */
	CHECK_EQ(w.o.pending, -ECANCELED);
	CHECK_EQ(w.later_rc, -ECANCELED);
	CHECK_LT(w.o.elapsed, AW_SEC(5));
}

struct timeout_ctx { struct child c; struct outcome o; bool fired; };

static int main_outer_timeout(void *arg)
{
	struct timeout_ctx *w = arg;
	aw_time t0 = aw_now();
	aw_scope s;
	AW_WITH(aw_timeout_init(&s, AW_MS(50))) {
		aw_group g;
		AW_WITH(aw_group_init(&g)) {
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &w->c, "child"), 0);
			/* Fall off the end: the exit waits for the child. */
		}
	}
	w->fired = s.fired;
	take_outcome(&w->o);
	w->o.elapsed = aw_now() - t0;
	return 0;
}

AW_TEST(outer_timeout_while_a_group_exit_waits_cancels_the_children_and_fails_with_etimedout)
{
	struct timeout_ctx w;
	memset(&w, 0, sizeof w);
	outcome_init(&w.o);
	w.c.sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_outer_timeout, &w), 0);
	CHECK_EQ(w.c.sleep_rc, -ECANCELED);
	CHECK(w.fired);
	CHECK_EQ(w.o.pending, -ETIMEDOUT);
	CHECK_LT(w.o.elapsed, AW_SEC(5));
}

static int owner_in_body(void *arg)
{
	struct owner_ctx *w = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 2; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &w->c[i], "child"), 0);
		w->o.body_rc = aw_sleep(AW_SEC(10));
		if (w->o.body_rc < 0)
			break;
	}
	w->after_block = true;
	take_outcome(&w->o);
	return 0;
}

static int main_cancel_owner_body(void *arg)
{
	struct owner_ctx *w = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, owner_in_body, w, "owner"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(cancelling_the_owner_in_the_body_cancels_children_and_ecanceled_goes_on)
{
	struct owner_ctx w;
	memset(&w, 0, sizeof w);
	outcome_init(&w.o);
	w.c[0].sleep = AW_SEC(10);
	w.c[1].sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_cancel_owner_body, &w), 0);
	CHECK_EQ(w.o.body_rc, -ECANCELED);
	CHECK_EQ(w.c[0].sleep_rc, -ECANCELED);
	CHECK_EQ(w.c[1].sleep_rc, -ECANCELED);
	CHECK(w.after_block);
	CHECK_EQ(w.o.pending, -ECANCELED);
}

/* ---- aw_group_cancel ----------------------------------------------------------- */

static int main_group_cancel(void *arg)
{
	struct fail_ctx *f = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < 2; i++)
			EXPECT_EQ(aw_group_spawn(&g, child_fn, &f->c[i], "child"), 0);
		EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
		aw_group_cancel(&g);
		f->o.body_rc = aw_sleep(AW_SEC(10));
		if (f->o.body_rc < 0)
			break;
		f->o.body_after = true;
	}
	take_outcome(&f->o);
	f->o.spawn_after_rc = aw_sleep(AW_MS(1));   /* the owner is fine */
	return 0;
}

AW_TEST(group_cancel_stops_children_and_body_without_an_error)
{
	struct fail_ctx f;
	memset(&f, 0, sizeof f);
	outcome_init(&f.o);
	f.c[0].sleep = AW_SEC(10);
	f.c[1].sleep = AW_SEC(10);
	CHECK_EQ(aw_run(main_group_cancel, &f), 0);
	CHECK_EQ(f.o.body_rc, -ECANCELED);
	CHECK(!f.o.body_after);
	CHECK_EQ(f.c[0].sleep_rc, -ECANCELED);
	CHECK_EQ(f.c[1].sleep_rc, -ECANCELED);
	CHECK_EQ(f.o.pending, 0);
	CHECK_EQ(f.o.spawn_after_rc, 0);
}

static int main_spawn_inactive(void *arg)
{
	aw_group g;
	aw_group_init(&g);
	struct child c = { 0 };
	*(int *)arg = aw_group_spawn(&g, child_fn, &c, "x");
	aw_error_clear();
	return 0;
}

AW_TEST(spawning_into_a_group_whose_block_is_not_active_is_einval)
{
	int rc = 1;
	CHECK_EQ(aw_run(main_spawn_inactive, &rc), 0);
	CHECK_EQ(rc, -EINVAL);
}
