/* SPDX-License-Identifier: MIT */
/*
 * Bounded FIFO queue of pointers (asyncio.Queue with a maxsize).
 *
 * A ring buffer plus two wait lists. As with the lock, things are handed
 * over rather than left for a race: a put that finds a getter waiting gives
 * the item straight to it (getters only wait on an empty queue), and a get
 * that frees a slot moves the first waiting putter's item into the ring
 * (putters only wait on a full one). So items leave in the order they were
 * put, waiters are served in the order they came, and try_put/try_get can
 * never overtake a waiter. Invariants:
 *     getters waiting => len == 0        putters waiting => len == cap
 *
 * An item is owned by the queue only once put returned 0: a put that fails
 * (closed, cancelled) leaves the item with its caller.
 */
#include "internal.h"

#include <stdlib.h>

/* Wake value telling a waiter the queue was closed. Positive, so it cannot
 * be mistaken for a grant (0) or a cancel code (negative). */
#define QUEUE_WAKE_CLOSED 1

/* Wake a waiter just popped so that its park returns v, even if a
 * cancellation readied it first: an item handed to a getter, or taken from
 * a putter, must not be lost (see the top of sync.c).
 * aw_task_wake does this for every waker. */
static inline void waiter_wake(aw_waiter *w, int v)
{
	aw_task_wake(w->task, v);   /* a hand-over wins over a pending cancel */
}

/* Append to the ring; the caller has checked len < cap. */
static inline void ring_push(aw_queue *q, void *item)
{
	size_t i = q->head + q->len;
	if (i >= q->cap)
		i -= q->cap;
	q->ring[i] = item;
	q->len++;
}

/* Take the oldest item; the caller has checked len > 0. */
static inline void *ring_pop(aw_queue *q)
{
	void *item = q->ring[q->head];
	if (++q->head == q->cap)
		q->head = 0;
	q->len--;
	return item;
}

/* Prepare an open, empty queue holding at most `capacity` items. 0, or
 * -EINVAL (capacity 0) / -ENOMEM, raised. On failure q is left closed and
 * empty, so that using it anyway fails with -AW_ECLOSED instead of waiting
 * forever, and aw_queue_destroy is still safe. */
int aw_queue_init(aw_queue *q, size_t capacity)
{
	q->ring = NULL;
	q->cap = q->head = q->len = 0;
	q->closed = true;
	q->getters.head = q->getters.tail = NULL;
	q->putters.head = q->putters.tail = NULL;
	if (capacity == 0)
		return aw_raise(-EINVAL, "aw_queue_init: capacity must be at least 1");
	/* calloc checks capacity * sizeof(void *) for overflow. */
	q->ring = aw__calloc(capacity, sizeof *q->ring);
	if (!q->ring)
		return aw_raise(-ENOMEM, "aw_queue_init: cannot allocate room for %zu items",
				capacity);
	q->cap = capacity;
	q->closed = false;
	return 0;
}

/* Free the ring. Items still queued are dropped (they belong to the caller).
 * Meant for a queue nobody waits on; as a safety net it first closes the
 * queue, so a forgotten waiter wakes with -AW_ECLOSED instead of sleeping
 * forever (it does not touch q after that). Idempotent. */
void aw_queue_destroy(aw_queue *q)
{
	aw_queue_close(q);
	free(q->ring);
	q->ring = NULL;
	q->cap = q->head = q->len = 0;
}

/* Hand item to the longest waiting getter, if any. True if taken. */
static inline bool give_to_getter(aw_queue *q, void *item)
{
	aw_waiter *g = aw_waitq_pop(&q->getters);
	if (!g)
		return false;
	g->data = item;
	waiter_wake(g, 0);
	return true;
}

/* A slot just freed: move the longest waiting putter's item into the ring and
 * let it go. Keeps the queue full while putters wait. */
static inline void take_from_putter(aw_queue *q)
{
	aw_waiter *p = aw_waitq_pop(&q->putters);
	if (!p)
		return;
	ring_push(q, p->data);
	waiter_wake(p, 0);
}

/* Park, queued as w on l, until a waker unlinks it. Returns the waker's
 * value: 0 (item handed over) or QUEUE_WAKE_CLOSED, also if a cancellation
 * came first (waiter_wake); or a negative cancel code (already raised) with
 * w off the list. A wake that left w queued is not for this wait: park
 * again. */
static int queue_wait(aw_waitq *l, aw_waiter *w)
{
	for (;;) {
		int rc = aw_task_park(AW_NEVER, false);
		if (!w->linked)
			return rc;
		if (rc < 0) {
			aw_waitq_remove(l, w);
			return rc;
		}
	}
}

/* Waits while full: append item. 0 (the queue owns the item); -AW_ECLOSED if
 * the queue is closed or gets closed while waiting; the cancel code if
 * cancelled while waiting (the item was not queued); -AW_ENOTASK if it must
 * wait outside a task. Errors are raised. */
int (aw_queue_put)(aw_queue *q, void *item)
{
	if (AW_UNLIKELY(q->closed))
		return aw_raise(-AW_ECLOSED, "aw_queue_put: the queue is closed");
	if (give_to_getter(q, item))
		return 0;
	if (AW_LIKELY(q->len < q->cap)) {
		ring_push(q, item);
		return 0;
	}
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_queue_put: the queue is full and the caller is "
				"not a task, so it cannot wait");
	aw_waiter w = { .data = item };
	aw_waitq_push(&q->putters, &w, t);
	int rc = queue_wait(&q->putters, &w);
	if (rc == QUEUE_WAKE_CLOSED)
		return aw_raise(-AW_ECLOSED, "aw_queue_put: the queue was closed while waiting "
				"for room");
	/* 0: a getter moved our item into the ring. Negative: cancelled
	 * while queued; the item was not taken. */
	return rc;
}

/* Waits while empty: take the oldest item into *item. 0; once the queue is
 * closed and drained, -AW_ECLOSED; the cancel code if cancelled while
 * waiting (nothing was taken); -AW_ENOTASK if it must wait outside a task.
 * Errors are raised; *item is only written on success. */
int (aw_queue_get)(aw_queue *q, void **item)
{
	if (AW_LIKELY(q->len > 0)) {
		*item = ring_pop(q);
		take_from_putter(q);
		return 0;
	}
	if (q->closed)
		return aw_raise(-AW_ECLOSED, "aw_queue_get: the queue is closed and empty");
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_queue_get: the queue is empty and the caller is "
				"not a task, so it cannot wait");
	aw_waiter w = { .data = NULL };
	aw_waitq_push(&q->getters, &w, t);
	int rc = queue_wait(&q->getters, &w);
	if (rc == 0) {
		/* A putter handed the item over; we keep it even if a
		 * cancellation came after (its next wait reports that). */
		*item = w.data;
		return 0;
	}
	if (rc == QUEUE_WAKE_CLOSED)
		return aw_raise(-AW_ECLOSED, "aw_queue_get: the queue was closed while waiting "
				"for an item");
	return rc;
}

/* Append item without waiting. 0; -EAGAIN if full (not raised: a normal
 * outcome to poll for); -AW_ECLOSED (raised) if closed. */
int aw_queue_try_put(aw_queue *q, void *item)
{
	if (AW_UNLIKELY(q->closed))
		return aw_raise(-AW_ECLOSED, "aw_queue_try_put: the queue is closed");
	if (give_to_getter(q, item))
		return 0;
	if (q->len < q->cap) {
		ring_push(q, item);
		return 0;
	}
	return -EAGAIN;
}

/* Take the oldest item without waiting. 0; -EAGAIN if empty and open (not
 * raised); -AW_ECLOSED (raised) if empty and closed. */
int aw_queue_try_get(aw_queue *q, void **item)
{
	if (q->len > 0) {
		*item = ring_pop(q);
		take_from_putter(q);
		return 0;
	}
	if (q->closed)
		return aw_raise(-AW_ECLOSED, "aw_queue_try_get: the queue is closed and empty");
	return -EAGAIN;
}

/* Close: no more puts. Every waiting putter fails with -AW_ECLOSED (its item
 * stays its own); every waiting getter too (getters only wait on an empty
 * queue, so none can miss an item). Items already queued are still
 * delivered by later gets. Idempotent. */
void aw_queue_close(aw_queue *q)
{
	q->closed = true;
	aw_waiter *w;
	while ((w = aw_waitq_pop(&q->putters)))
		waiter_wake(w, QUEUE_WAKE_CLOSED);
	while ((w = aw_waitq_pop(&q->getters)))
		waiter_wake(w, QUEUE_WAKE_CLOSED);
}
