/* SPDX-License-Identifier: MIT */
/* Tests: lock, semaphore, event, condition. */
#include "harness.h"

#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static aw_evlog evlog;

/* ---- lock ---------------------------------------------------------------- */

struct lock_ctx {
	aw_lock lock;
	int inside, max_inside;
	int rc[4];
	bool got[4];
	bool cancel_first;
};

struct worker { struct lock_ctx *c; int id; const char *name; };

static int lock_worker(void *arg)
{
	struct worker *w = arg;
	struct lock_ctx *c = w->c;
	int rc = aw_lock_acquire(&c->lock);
	c->rc[w->id] = rc;
	if (rc)
		return 0;
	c->got[w->id] = true;
	EXPECT(c->lock.owner == aw_task_current());
	aw_evlog_add(&evlog, "%s", w->name);
	if (++c->inside > c->max_inside)
		c->max_inside = c->inside;
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);   /* hold it across a wait */
	c->inside--;
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	return 0;
}

static int main_lock_fifo(void *arg)
{
	struct lock_ctx *c = arg;
	static const char *names[] = { "w0", "w1", "w2" };
	struct worker w[3];
	aw_task *t[3];
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ c, i, names[i] };
		EXPECT_EQ(aw_spawn(&t[i], lock_worker, &w[i], names[i]), 0);
	}
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);   /* all three queue up, in order */
	EXPECT(!aw_lock_try(&c->lock));
	aw_evlog_add(&evlog, "release");
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	/* Hand-off: the first waiter owns it now, before it even runs. */
	EXPECT(c->lock.owner == t[0]);
	EXPECT(!aw_lock_try(&c->lock));     /* no barging */
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	EXPECT(c->lock.owner == NULL);
	return 0;
}

AW_TEST(lock_is_mutually_exclusive_and_handed_over_in_arrival_order)
{
	struct lock_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_lock_fifo, &c), 0);
	CHECK_STR(evlog.s, "release w0 w1 w2");
	CHECK_EQ(c.max_inside, 1);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(c.rc[i], 0);
}

static int hold_lock(void *arg)
{
	struct lock_ctx *c = arg;
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	return 0;
}

static int main_lock_eperm(void *arg)
{
	struct lock_ctx *c = arg;
	c->rc[0] = aw_lock_release(&c->lock);   /* not held at all */
	EXPECT_EQ(aw_error_pending(), -EPERM);
	aw_error_clear();
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, hold_lock, c, "holder"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	c->rc[1] = aw_lock_release(&c->lock);   /* held by another task */
	const aw_error *e = aw_error_current();
	EXPECT(e && strstr(e->msg, "holder"));
	aw_error_clear();
	EXPECT(c->lock.owner == t);             /* unchanged */
	EXPECT_EQ(aw_task_join(t), 0);
	/* Not reentrant: a second acquire by the owner is refused. */
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	c->rc[2] = aw_lock_acquire(&c->lock);
	aw_error_clear();
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	return 0;
}

AW_TEST(lock_release_by_a_non_owner_is_eperm)
{
	struct lock_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	CHECK_EQ(aw_run(main_lock_eperm, &c), 0);
	CHECK_EQ(c.rc[0], -EPERM);
	CHECK_EQ(c.rc[1], -EPERM);
	CHECK_EQ(c.rc[2], -EDEADLK);
	CHECK(c.lock.owner == NULL);
}

/* The lock as a manager, left in every way. */
static int with_lock_error(aw_lock *l)
{
	AW_WITH(aw_lock_mgr(l)) {
		EXPECT(l->owner == aw_task_current());
		return aw_raise(-EIO, "failed while holding the lock");
	}
	return 0;
}

static int with_lock_break(aw_lock *l)
{
	AW_WITH(aw_lock_mgr(l)) {
		(void)!aw_raise(-ENOENT, "broke out");
		break;
	}
	return aw_error_pending();
}

static int with_lock_goto(aw_lock *l)
{
	AW_WITH(aw_lock_mgr(l)) {
		if (aw_sleep(AW_MS(1)) == 0)
			goto out;
	}
	return -1;
out:
	return l->owner == NULL ? 0 : -1;
}

static int cancelled_in_lock(void *arg)
{
	aw_lock *l = arg;
	AW_WITH(aw_lock_mgr(l)) {
		if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	return 0;
}

static int main_lock_mgr(void *arg)
{
	int *rc = arg;
	aw_lock l;
	aw_lock_init(&l);
	rc[0] = with_lock_error(&l);
	EXPECT_EQ(aw_error_pending(), -EIO);
	EXPECT(l.owner == NULL);
	aw_error_clear();
	rc[1] = with_lock_break(&l);
	EXPECT(l.owner == NULL);
	aw_error_clear();
	rc[2] = with_lock_goto(&l);
	EXPECT(l.owner == NULL);
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cancelled_in_lock, &l, "holder"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT(l.owner == t);
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT(l.owner == NULL);
	/* Released on the normal path too, and usable again. */
	AW_WITH(aw_lock_mgr(&l)) {
		EXPECT(l.owner == aw_task_current());
	}
	EXPECT(l.owner == NULL);
	return 0;
}

AW_TEST(lock_as_a_manager_releases_on_every_way_out)
{
	int rc[3] = { 1, 1, 1 };
	CHECK_EQ(aw_run(main_lock_mgr, rc), 0);
	CHECK_EQ(rc[0], -EIO);
	CHECK_EQ(rc[1], -ENOENT);
	CHECK_EQ(rc[2], 0);
}

static int main_lock_cancel_waiter(void *arg)
{
	struct lock_ctx *c = arg;
	static const char *names[] = { "w0", "w1", "w2" };
	struct worker w[3];
	aw_task *t[3];
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	for (int i = 0; i < 3; i++) {
		w[i] = (struct worker){ c, i, names[i] };
		EXPECT_EQ(aw_spawn(&t[i], lock_worker, &w[i], names[i]), 0);
	}
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);   /* w0, w1, w2 queued */
	aw_task_cancel(t[1]);
	EXPECT_EQ(aw_task_join(t[1]), 0);   /* it left the queue */
	aw_evlog_add(&evlog, "release");
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	EXPECT_EQ(aw_task_join(t[0]), 0);
	EXPECT_EQ(aw_task_join(t[2]), 0);
	EXPECT(c->lock.owner == NULL);
	return 0;
}

AW_TEST(cancelled_lock_waiter_leaves_the_queue_and_never_gets_the_lock)
{
	struct lock_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_lock_cancel_waiter, &c), 0);
	CHECK_STR(evlog.s, "release w0 w2");
	CHECK_EQ(c.rc[1], -ECANCELED);
	CHECK(!c.got[1]);
	CHECK(c.got[0]);
	CHECK(c.got[2]);
}

static int lock_worker_expect_cancel(void *arg);

static int main_lock_cancel_after_handoff(void *arg)
{
	struct lock_ctx *c = arg;
	struct worker w = { c, 0, "w0" };
	aw_task *t;
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	EXPECT_EQ(aw_spawn(&t, lock_worker_expect_cancel, &w, "w0"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	/* Hand the lock over and cancel the waiter before it runs, in either
	 * order: it keeps the lock (the grant wins); the cancel shows at its
	 * next wait. */
	if (c->cancel_first) {
		aw_task_cancel(t);
		EXPECT_EQ(aw_lock_release(&c->lock), 0);
	} else {
		EXPECT_EQ(aw_lock_release(&c->lock), 0);
		aw_task_cancel(t);
	}
	EXPECT(c->lock.owner == t);
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT(c->lock.owner == NULL);
	return 0;
}

static int lock_worker_expect_cancel(void *arg)
{
	struct worker *w = arg;
	struct lock_ctx *c = w->c;
	c->rc[0] = aw_lock_acquire(&c->lock);
	if (c->rc[0])
		return 0;
	c->got[0] = true;
	c->rc[1] = aw_sleep(AW_MS(1));
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	aw_error_clear();
	return 0;
}

AW_TEST(lock_handed_over_before_a_cancel_is_kept_and_the_cancel_comes_next)
{
	struct lock_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	c.rc[0] = c.rc[1] = 1;
	CHECK_EQ(aw_run(main_lock_cancel_after_handoff, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK(c.got[0]);
	CHECK_EQ(c.rc[1], -ECANCELED);
	CHECK(c.lock.owner == NULL);

	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	c.rc[0] = c.rc[1] = 1;
	c.cancel_first = true;
	CHECK_EQ(aw_run(main_lock_cancel_after_handoff, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK(c.got[0]);
	CHECK_EQ(c.rc[1], -ECANCELED);
	CHECK(c.lock.owner == NULL);
}

/* ---- semaphore ------------------------------------------------------------- */

struct sem_ctx { aw_sem sem; int inside, max_inside, done, rc; };

static int sem_worker(void *arg)
{
	struct sem_ctx *c = arg;
	AW_WITH(aw_sem_mgr(&c->sem)) {
		if (++c->inside > c->max_inside)
			c->max_inside = c->inside;
		EXPECT_EQ(aw_sleep(AW_MS(3)), 0);
		c->inside--;
	}
	c->done++;
	return 0;
}

static int main_sem(void *arg)
{
	struct sem_ctx *c = arg;
	aw_task *t[8];
	for (int i = 0; i < 8; i++)
		EXPECT_EQ(aw_spawn(&t[i], sem_worker, c, "sem-worker"), 0);
	for (int i = 0; i < 8; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	EXPECT_EQ(c->sem.value, 3);
	c->rc = aw_sem_release(&c->sem);   /* beyond the initial value */
	EXPECT_EQ(aw_error_pending(), -EOVERFLOW);
	aw_error_clear();
	EXPECT_EQ(c->sem.value, 3);
	/* try: takes while units are free, then refuses. */
	EXPECT(aw_sem_try(&c->sem));
	EXPECT(aw_sem_try(&c->sem));
	EXPECT(aw_sem_try(&c->sem));
	EXPECT(!aw_sem_try(&c->sem));
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_sem_release(&c->sem), 0);
	return 0;
}

AW_TEST(semaphore_bounds_concurrency_and_release_beyond_initial_is_eoverflow)
{
	struct sem_ctx c;
	memset(&c, 0, sizeof c);
	aw_sem_init(&c.sem, 3);
	CHECK_EQ(aw_run(main_sem, &c), 0);
	CHECK_EQ(c.rc, -EOVERFLOW);
	CHECK_EQ(c.max_inside, 3);
	CHECK_EQ(c.done, 8);
	CHECK_EQ(c.inside, 0);
}

struct sem_cancel_ctx { aw_sem sem; int rc[2]; bool got[2]; };
struct sem_w { struct sem_cancel_ctx *c; int id; };

static int sem_waiter(void *arg)
{
	struct sem_w *w = arg;
	w->c->rc[w->id] = aw_sem_acquire(&w->c->sem);
	if (w->c->rc[w->id] == 0) {
		w->c->got[w->id] = true;
		EXPECT_EQ(aw_sem_release(&w->c->sem), 0);
	}
	aw_error_clear();
	return 0;
}

static int main_sem_cancel(void *arg)
{
	struct sem_cancel_ctx *c = arg;
	struct sem_w w[2] = { { c, 0 }, { c, 1 } };
	aw_task *t[2];
	EXPECT_EQ(aw_sem_acquire(&c->sem), 0);
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_spawn(&t[i], sem_waiter, &w[i], "sem-waiter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	aw_task_cancel(t[0]);
	EXPECT_EQ(aw_task_join(t[0]), 0);
	EXPECT_EQ(aw_sem_release(&c->sem), 0);   /* goes to the second waiter */
	EXPECT_EQ(aw_task_join(t[1]), 0);
	EXPECT_EQ(c->sem.value, 1);              /* no unit lost or made up */
	return 0;
}

AW_TEST(cancelled_semaphore_waiter_leaves_the_queue_and_no_unit_is_lost)
{
	struct sem_cancel_ctx c;
	memset(&c, 0, sizeof c);
	aw_sem_init(&c.sem, 1);
	c.rc[0] = c.rc[1] = 1;
	CHECK_EQ(aw_run(main_sem_cancel, &c), 0);
	CHECK_EQ(c.rc[0], -ECANCELED);
	CHECK(!c.got[0]);
	CHECK_EQ(c.rc[1], 0);
	CHECK(c.got[1]);
}

static int main_sem_zero(void *arg)
{
	int *rc = arg;
	aw_sem s;
	aw_sem_init(&s, 0);
	rc[0] = aw_sem_release(&s);
	aw_error_clear();
	aw_scope sc;
	AW_WITH(aw_timeout_init(&sc, AW_MS(5))) {
		rc[1] = aw_sem_acquire(&s);   /* nothing ever frees a unit */
	}
	return 0;
}

AW_TEST(semaphore_with_zero_units_refuses_release_and_acquire_waits)
{
	int rc[2] = { 1, 1 };
	CHECK_EQ(aw_run(main_sem_zero, rc), 0);
	CHECK_EQ(rc[0], -EOVERFLOW);
	CHECK_EQ(rc[1], -ETIMEDOUT);
}

/* ---- event ------------------------------------------------------------------ */

struct event_ctx { aw_event e; int rc[3]; int woke; };

static int event_waiter(void *arg)
{
	struct event_ctx *c = arg;
	int i = c->woke++;   /* index by arrival */
	c->rc[i] = aw_event_wait(&c->e);
	return 0;
}

static int main_event(void *arg)
{
	struct event_ctx *c = arg;
	aw_task *t[3];
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_spawn(&t[i], event_waiter, c, "waiter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	for (int i = 0; i < 3; i++)
		EXPECT(!aw_task_done(t[i]));
	EXPECT(!aw_event_is_set(&c->e));
	aw_event_set(&c->e);
	EXPECT(aw_event_is_set(&c->e));
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	/* Set: waits return at once. Cleared: they wait again. */
	EXPECT_EQ(aw_event_wait(&c->e), 0);
	aw_event_clear(&c->e);
	EXPECT(!aw_event_is_set(&c->e));
	aw_scope s;
	int rc = 1;
	AW_WITH(aw_move_on_init(&s, AW_MS(5))) {
		rc = aw_event_wait(&c->e);
	}
	EXPECT_EQ(rc, -ETIMEDOUT);
	EXPECT(s.fired);            /* its exit saw its own timeout */
	EXPECT_EQ(aw_error_pending(), 0);   /* ... and suppressed it */
	return 0;
}

AW_TEST(event_set_wakes_every_waiter)
{
	struct event_ctx c;
	memset(&c, 0, sizeof c);
	for (int i = 0; i < 3; i++)
		c.rc[i] = 1;
	aw_event_init(&c.e);
	CHECK_EQ(aw_run(main_event, &c), 0);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(c.rc[i], 0);
}

/* ---- condition ------------------------------------------------------------- */

struct cond_ctx {
	aw_lock lock;
	aw_cond cond;
	int woke;
	int rc[4];
	bool held_on_return[4];
};

struct cw { struct cond_ctx *c; int id; };

static int cond_waiter(void *arg)
{
	struct cw *w = arg;
	struct cond_ctx *c = w->c;
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	c->rc[w->id] = aw_cond_wait(&c->cond);
	c->held_on_return[w->id] = c->lock.owner == aw_task_current();
	c->woke++;
	aw_error_clear();
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	return 0;
}

static int main_cond(void *arg)
{
	struct cond_ctx *c = arg;
	struct cw w[3];
	aw_task *t[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct cw){ c, i };
		EXPECT_EQ(aw_spawn(&t[i], cond_waiter, &w[i], "cond-waiter"), 0);
	}
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT_EQ(c->woke, 0);
	EXPECT(c->lock.owner == NULL);   /* every waiter released it */

	/* notify(1) under the lock wakes exactly one. */
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	aw_cond_notify(&c->cond, 1);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT_EQ(c->woke, 0);           /* it needs the lock we hold */
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT_EQ(c->woke, 1);
	EXPECT(aw_task_done(t[0]));      /* the longest waiter first */

	/* notify_all wakes the rest. */
	aw_cond_notify_all(&c->cond);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	EXPECT_EQ(c->woke, 3);

	/* Waiting without the lock is refused. */
	c->rc[3] = aw_cond_wait(&c->cond);
	aw_error_clear();
	return 0;
}

AW_TEST(condition_notify_one_then_all_with_the_lock_held_on_return)
{
	struct cond_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	aw_cond_init(&c.cond, &c.lock);
	for (int i = 0; i < 4; i++)
		c.rc[i] = 1;
	CHECK_EQ(aw_run(main_cond, &c), 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(c.rc[i], 0);
		CHECK(c.held_on_return[i]);
	}
	CHECK_EQ(c.rc[3], -EPERM);
	CHECK(c.lock.owner == NULL);
}

static int main_cond_cancel(void *arg)
{
	struct cond_ctx *c = arg;
	struct cw w = { c, 0 };
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cond_waiter, &w, "cond-waiter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	/* Hold the lock while the waiter is cancelled: its wait must re-take
	 * the lock before returning, so it cannot return yet. */
	EXPECT_EQ(aw_lock_acquire(&c->lock), 0);
	aw_task_cancel(t);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	EXPECT(!aw_task_done(t));
	EXPECT_EQ(c->woke, 0);
	EXPECT_EQ(aw_lock_release(&c->lock), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	/* It left the condition's queue: a notify finds nobody. */
	EXPECT(c->cond.waiters.head == NULL);
	EXPECT(c->lock.owner == NULL);
	return 0;
}

AW_TEST(condition_wait_cancelled_returns_ecanceled_with_the_lock_held)
{
	struct cond_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	aw_cond_init(&c.cond, &c.lock);
	c.rc[0] = 1;
	CHECK_EQ(aw_run(main_cond_cancel, &c), 0);
	CHECK_EQ(c.rc[0], -ECANCELED);
	CHECK(c.held_on_return[0]);
	CHECK_EQ(c.woke, 1);
}
