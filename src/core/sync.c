/* SPDX-License-Identifier: MIT */
/*
 * Synchronisation between tasks of one loop: wait lists, lock, semaphore,
 * event, condition.
 *
 * Everything here runs on the loop thread, so no atomics: a wait list is an
 * intrusive FIFO of aw_waiter nodes that live in the waiting task's stack
 * frame (waiting allocates nothing), and every waker hands what it releases
 * straight to the first waiter (ownership of a lock, a semaphore unit) before
 * waking it. Hand-off is what makes the primitives FIFO with no barging: a
 * task that arrives while others wait can never overtake them, because the
 * thing it wants is never "free" while someone is queued for it.
 *
 * The one subtle case is a waiter that a cancellation (or its park timer)
 * has already made ready but that has not run yet to take itself off the
 * list. aw_task_wake is a no-op on it, so a plain wake would lose what we
 * hand over (a lock nobody holds, a unit nobody has). waiter_wake instead
 * replaces the pending cancel wake with the grant: park then returns the
 * grant, the waiter keeps it, and the cancellation, being level-triggered,
 * is reported by its next wait. Hence the rule every waiter here follows:
 * unlinked by a waker => park returned that waker's value.
 */
#include "internal.h"

#include <stdalign.h>

/* ------------------------------------------------------------------------ */
/* Wait lists                                                               */

/* Append w (on t's stack) at the tail of q. w->data is left as the caller
 * set it (a putter fills it before queueing). Marks w linked. */
void aw_waitq_push(aw_waitq *q, aw_waiter *w, aw_task *t)
{
	w->task = t;
	w->next = NULL;
	w->prev = q->tail;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	w->linked = true;
}

/* Unlink w from q. A no-op when w is not linked, so a waiter leaving on
 * cancellation may call it without first checking who unlinked it. */
void aw_waitq_remove(aw_waitq *q, aw_waiter *w)
{
	if (!w->linked)
		return;
	if (w->prev)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->prev = w->next = NULL;
	w->linked = false;
}

/* Unlink and return the longest waiter, or NULL if q is empty. The caller
 * then wakes it (see waiter_wake for handing it something). */
aw_waiter *aw_waitq_pop(aw_waitq *q)
{
	aw_waiter *w = q->head;
	if (w)
		aw_waitq_remove(q, w);
	return w;
}

/* Wake a waiter just popped so that its park returns v, even if a
 * cancellation or its park timer readied it first (see the top of the
 * file). The task is then in the ready queue inside aw_task_park, which
 * returns t->wake when it is not one of the AW__WAKE_* markers.
 * aw_task_wake does this for every waker. */
static inline void waiter_wake(aw_waiter *w, int v)
{
	aw_task_wake(w->task, v);   /* a hand-over wins over a pending cancel */
}

/* Park the running task, queued as w on q, until a waker unlinks it. Returns
 * the waker's value (0 for every waker in this file), or the negative cancel
 * code (already raised) with w off the list. A wake that left w queued is
 * not for this wait (nothing in the core does that today): park again. */
static int waitq_wait(aw_waitq *q, aw_waiter *w)
{
	for (;;) {
		int rc = aw_task_park(AW_NEVER, false);
		if (!w->linked)
			return rc;
		if (rc < 0) {
			aw_waitq_remove(q, w);
			return rc;
		}
	}
}

/* Number of waiters, for dumps only (O(n)). */
static size_t waitq_count(const aw_waitq *q)
{
	size_t n = 0;
	for (const aw_waiter *w = q->head; w; w = w->next)
		n++;
	return n;
}

/* ------------------------------------------------------------------------ */
/* Lock                                                                     */

/* Code outside any task (before aw_run, or in the loop's own context) may
 * take a free lock: it then belongs to this placeholder, which is never a
 * real task. The owner field can therefore never be NULL while the lock is
 * held, and a lock taken outside a task is released outside a task. */
static alignas(max_align_t) char lock_notask_tag;
#define LOCK_NOTASK ((aw_task *)(void *)&lock_notask_tag)

/* Who the caller is, as a lock owner. */
static inline aw_task *lock_self(void)
{
	aw_task *t = aw__current();
	return t ? t : LOCK_NOTASK;
}

/* The owner's name for messages and dumps. A task may end while holding a
 * lock (it then stays locked, as in asyncio) and its memory be freed, so the
 * pointer is only dereferenced if it is still one of the loop's tasks. Only
 * used on error and dump paths: the walk costs nothing that matters. */
static const char *lock_owner_name(const aw_task *t)
{
	if (t == LOCK_NOTASK)
		return "(no task)";
	aw_loop *l = aw__loop;
	for (const aw_task *x = l ? l->all : NULL; x; x = x->all_next)
		if (x == t)
			return t->name;
	return "(a task that has ended)";
}

/* Give the held lock to the longest waiter, or free it. The caller has
 * checked ownership. Waking does not switch: the new owner runs later. */
static void lock_handoff(aw_lock *l)
{
	if (AW_LIKELY(!l->waiters.head)) {   /* nobody waits: no call */
		l->owner = NULL;
		return;
	}
	aw_waiter *w = aw_waitq_pop(&l->waiters);
	l->owner = w->task;
	waiter_wake(w, 0);
}

/* aw_lock_acquire when the lock is held: queue and wait for the hand-off.
 * Same results as aw_lock_acquire. */
static int lock_acquire_slow(aw_lock *l)
{
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK,
				"aw_lock_acquire: the lock is held by task '%s' and the caller is "
				"not a task, so it cannot wait", lock_owner_name(l->owner));
	if (l->owner == t)
		/* asyncio's Lock is not reentrant either; there it hangs
		 * forever. Say so instead. */
		return aw_raise(-EDEADLK,
				"aw_lock_acquire: task '%s' already holds this lock (locks are "
				"not reentrant)", t->name);
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&l->waiters, &w, t);
	/* 0: lock_handoff made us the owner (even if a cancel came after).
	 * Negative: cancelled while still queued; nothing is held. */
	return waitq_wait(&l->waiters, &w);
}

static int lock_mgr_enter(aw_mgr *m);
static int lock_mgr_exit(aw_mgr *m, int err);
static void lock_mgr_describe(aw_mgr *m, char *buf, size_t len);

static const aw_mgr_ops lock_ops = {
	.name = "lock",
	.enter = lock_mgr_enter,
	.exit = lock_mgr_exit,
	.describe = lock_mgr_describe,
};

/* Prepare an unlocked lock; its manager acquires on enter and releases on
 * exit. */
void aw_lock_init(aw_lock *l)
{
	l->mgr.ops = &lock_ops;
	l->owner = NULL;
	l->waiters.head = l->waiters.tail = NULL;
}

/* Waits: take the lock, queueing FIFO behind earlier waiters. 0, or the
 * cancel code (the lock is then not held), -EDEADLK if the caller already
 * holds it, -AW_ENOTASK if it must wait outside a task. A free lock is taken
 * without waiting (and without being a cancellation point, as in asyncio):
 * that path is a compare, the running task (two loads) and a store. */
int (aw_lock_acquire)(aw_lock *l)
{
	if (AW_LIKELY(l->owner == NULL)) {
		l->owner = lock_self();
		return 0;
	}
	return lock_acquire_slow(l);
}

/* Take the lock if it is free; never waits. Free implies nobody is queued
 * (hand-off), so this cannot barge. */
bool aw_lock_try(aw_lock *l)
{
	if (l->owner)
		return false;
	l->owner = lock_self();
	return true;
}

/* Release: hand the lock to the longest waiter, or free it. 0, or -EPERM
 * (raised) if the caller does not hold it. Never waits. */
int aw_lock_release(aw_lock *l)
{
	aw_task *self = lock_self();
	if (AW_UNLIKELY(l->owner != self)) {
		if (!l->owner)
			return aw_raise(-EPERM, "aw_lock_release: the lock is not held");
		return aw_raise(-EPERM, "aw_lock_release: the lock is held by task '%s', not by "
				"the caller ('%s')", lock_owner_name(l->owner),
				lock_owner_name(self));
	}
	lock_handoff(l);
	return 0;
}

/* Manager enter: acquire. Calls the function, not the macro, so the wait
 * location stays the one AW_WITH recorded. */
static int lock_mgr_enter(aw_mgr *m)
{
	return (aw_lock_acquire)(AW_CONTAINER_OF(m, aw_lock, mgr));
}

/* Manager exit: release and let the block's error go on. If the release
 * itself fails (the body released the lock by hand), that raised -EPERM
 * replaces the error, as the protocol asks of an exit that raises. */
static int lock_mgr_exit(aw_mgr *m, int err)
{
	int rc = aw_lock_release(AW_CONTAINER_OF(m, aw_lock, mgr));
	return rc < 0 ? rc : err;
}

/* Dump detail: who holds it and how many wait. */
static void lock_mgr_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_lock *l = AW_CONTAINER_OF(m, aw_lock, mgr);
	if (l->owner)
		snprintf(buf, len, "held by '%s', %zu waiting", lock_owner_name(l->owner),
			 waitq_count(&l->waiters));
	else
		snprintf(buf, len, "free");
}

/* The shielded acquire of a condition wait: the lock must be held again when
 * aw_cond_wait returns, whatever happens, so cancellation is off for this
 * wait (asyncio's Condition.wait does the same by retrying). */
static void lock_acquire_shielded(aw_lock *l, aw_task *t)
{
	if (!l->owner) {
		l->owner = t;
		return;
	}
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&l->waiters, &w, t);
	while (w.linked)
		(void)aw_task_park(AW_NEVER, true);
}

/* ------------------------------------------------------------------------ */
/* Semaphore                                                                */

static int sem_mgr_enter(aw_mgr *m);
static int sem_mgr_exit(aw_mgr *m, int err);
static void sem_mgr_describe(aw_mgr *m, char *buf, size_t len);

static const aw_mgr_ops sem_ops = {
	.name = "semaphore",
	.enter = sem_mgr_enter,
	.exit = sem_mgr_exit,
	.describe = sem_mgr_describe,
};

/* Prepare a bounded semaphore holding `value` units, which is also its bound:
 * releases may never bring it above `value`. */
void aw_sem_init(aw_sem *s, size_t value)
{
	s->mgr.ops = &sem_ops;
	s->value = value;
	s->max = value;
	s->waiters.head = s->waiters.tail = NULL;
}

/* aw_sem_acquire when no unit is free: queue and wait for a released unit.
 * Same results as aw_sem_acquire. */
static int sem_acquire_slow(aw_sem *s)
{
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_sem_acquire: no unit is free and the caller is "
				"not a task, so it cannot wait");
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&s->waiters, &w, t);
	/* 0: a releaser handed us its unit (the count was left unchanged). */
	return waitq_wait(&s->waiters, &w);
}

/* Waits: take one unit, FIFO behind earlier waiters. 0 or the cancel code (no
 * unit is then held); -AW_ENOTASK if it must wait outside a task. */
int (aw_sem_acquire)(aw_sem *s)
{
	if (AW_LIKELY(s->value > 0)) {
		s->value--;
		return 0;
	}
	return sem_acquire_slow(s);
}

/* Take a unit if one is free; never waits. value > 0 implies nobody is
 * queued (hand-off), so this cannot barge. */
bool aw_sem_try(aw_sem *s)
{
	if (s->value == 0)
		return false;
	s->value--;
	return true;
}

/* Give a unit back: straight to the longest waiter if there is one, else to
 * the count. -EOVERFLOW (raised) if that would exceed the initial value (a
 * release without an acquire: asyncio's BoundedSemaphore raises ValueError).
 * The bound is checked first, so a semaphore made with 0 units never accepts
 * a release. Never waits. */
int aw_sem_release(aw_sem *s)
{
	if (AW_UNLIKELY(s->value >= s->max))
		return aw_raise(-EOVERFLOW, "aw_sem_release: released more often than acquired "
				"(bound %zu)", s->max);
	aw_waiter *w = aw_waitq_pop(&s->waiters);
	if (w)
		waiter_wake(w, 0);
	else
		s->value++;
	return 0;
}

/* Manager enter: acquire one unit. */
static int sem_mgr_enter(aw_mgr *m)
{
	return (aw_sem_acquire)(AW_CONTAINER_OF(m, aw_sem, mgr));
}

/* Manager exit: release the unit and let the block's error go on (a failed
 * release replaces it, see lock_mgr_exit). */
static int sem_mgr_exit(aw_mgr *m, int err)
{
	int rc = aw_sem_release(AW_CONTAINER_OF(m, aw_sem, mgr));
	return rc < 0 ? rc : err;
}

/* Dump detail: free units and waiters. */
static void sem_mgr_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_sem *s = AW_CONTAINER_OF(m, aw_sem, mgr);
	snprintf(buf, len, "%zu of %zu free, %zu waiting", s->value, s->max,
		 waitq_count(&s->waiters));
}

/* ------------------------------------------------------------------------ */
/* Event                                                                    */

/* Prepare a cleared event. */
void aw_event_init(aw_event *e)
{
	e->set = false;
	e->waiters.head = e->waiters.tail = NULL;
}

/* Set the event and wake every waiter (each one's wait returns 0, even if
 * the event is cleared again before it runs, as in asyncio). */
void aw_event_set(aw_event *e)
{
	e->set = true;
	aw_waiter *w;
	while ((w = aw_waitq_pop(&e->waiters)))
		waiter_wake(w, 0);
}

/* Clear the event; later waits wait again. */
void aw_event_clear(aw_event *e)
{
	e->set = false;
}

/* Whether the event is set now. */
bool aw_event_is_set(const aw_event *e)
{
	return e->set;
}

/* Waits until the event is set: 0 at once if it is, else 0 when set, or the
 * cancel code; -AW_ENOTASK if it must wait outside a task. */
int (aw_event_wait)(aw_event *e)
{
	if (e->set)
		return 0;
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_event_wait: the event is not set and the caller "
				"is not a task, so it cannot wait");
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&e->waiters, &w, t);
	return waitq_wait(&e->waiters, &w);
}

/* ------------------------------------------------------------------------ */
/* Condition                                                                */

/* Prepare a condition bound to lock l (which must outlive it). */
void aw_cond_init(aw_cond *c, aw_lock *l)
{
	c->lock = l;
	c->waiters.head = c->waiters.tail = NULL;
}

/* Waits: queue on c, release the lock, wait for a notify, re-take the lock.
 * The lock is held again on every return but the two caller errors: 0 when
 * notified, the cancel code when cancelled (the re-take is shielded: it is
 * not abandoned). -EPERM if the caller does not hold the lock, -AW_ENOTASK
 * outside a task (both raised; the lock is then untouched). */
int (aw_cond_wait)(aw_cond *c)
{
	aw_task *t = aw__current();
	aw_lock *l = c->lock;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_cond_wait: the caller is not a task");
	if (l->owner != t)
		return aw_raise(-EPERM, "aw_cond_wait: the condition's lock is not held by the "
				"caller ('%s')", t->name);
	/* Queue before releasing: a notify issued by whoever gets the lock
	 * next must find us. */
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&c->waiters, &w, t);
	lock_handoff(l);
	int rc = waitq_wait(&c->waiters, &w);
	lock_acquire_shielded(l, t);
	return rc;
}

/* Wake up to n waiters, longest first. Each then re-takes the lock in turn.
 * Does not require the lock (asyncio does; here there is no race to guard:
 * one thread). */
void aw_cond_notify(aw_cond *c, size_t n)
{
	aw_waiter *w;
	while (n > 0 && (w = aw_waitq_pop(&c->waiters))) {
		waiter_wake(w, 0);
		n--;
	}
}

/* Wake every waiter. */
void aw_cond_notify_all(aw_cond *c)
{
	aw_cond_notify(c, SIZE_MAX);
}
