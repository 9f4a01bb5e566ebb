/* SPDX-License-Identifier: MIT */
/*
 * Timers: a binary min-heap of pointers, each timer knowing its index so
 * that disarming is O(log n). A task has one embedded timer (its park
 * deadline), so timers never allocate except when the heap grows.
 */
#include "internal.h"

#include <stdlib.h>

void aw_timer_init(aw_timer *t, void (*fire)(aw_timer *))
{
	t->when = AW_NEVER;
	t->idx = SIZE_MAX;
	t->fire = fire;
}

static void set(aw_timer_heap *h, size_t i, aw_timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void sift_up(aw_timer_heap *h, size_t i)
{
	aw_timer *t = h->v[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h->v[p]->when <= t->when)
			break;
		set(h, i, h->v[p]);
		i = p;
	}
	set(h, i, t);
}

static void sift_down(aw_timer_heap *h, size_t i)
{
	aw_timer *t = h->v[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= h->len)
			break;
		if (c + 1 < h->len && h->v[c + 1]->when < h->v[c]->when)
			c++;
		if (t->when <= h->v[c]->when)
			break;
		set(h, i, h->v[c]);
		i = c;
	}
	set(h, i, t);
}

int aw_timer_arm(aw_timer_heap *h, aw_timer *t, aw_time when)
{
	if (aw_timer_armed(t)) {
		aw_time old = t->when;
		t->when = when;
		if (when < old)
			sift_up(h, t->idx);
		else
			sift_down(h, t->idx);
		return 0;
	}
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		aw_timer **v = aw__realloc(h->v, cap * sizeof *v);
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->when = when;
	set(h, h->len++, t);
	sift_up(h, t->idx);
	return 0;
}

void aw_timer_disarm(aw_timer_heap *h, aw_timer *t)
{
	if (!aw_timer_armed(t))
		return;
	size_t i = t->idx;
	t->idx = SIZE_MAX;
	aw_timer *last = h->v[--h->len];
	if (last == t)
		return;
	set(h, i, last);
	if (i > 0 && h->v[(i - 1) / 2]->when > last->when)
		sift_up(h, i);
	else
		sift_down(h, i);
}

aw_time aw_timer_next(const aw_timer_heap *h)
{
	return h->len ? h->v[0]->when : AW_NEVER;
}

void aw_timer_run(aw_timer_heap *h, aw_time now)
{
	while (h->len && h->v[0]->when <= now) {
		aw_timer *t = h->v[0];
		aw_timer_disarm(h, t);
		t->fire(t);
	}
}

void aw_timer_heap_free(aw_timer_heap *h)
{
	free(h->v);
	h->v = NULL;
	h->len = h->cap = 0;
}
