/* SPDX-License-Identifier: MIT */
/*
 * AW_FOR's step: fetch the next item of an entered iterator. The iterator
 * is the block's manager, so however the loop is left, its exit closes it.
 */
#include "internal.h"

bool aw__iter_step(aw_with *w, aw_iter *it, void **item)
{
	if (w->state != AW__WITH_BODY)
		return false;
	/* The previous iteration ended by reaching the end of the body or by
	 * `continue`: what it raised and left in flight is handled (`except
	 * E: continue`). Each iteration is its own scope for errors, so that
	 * only an error raised in the iteration a `break` leaves goes on. */
	aw_task *t = w->task;
	aw_error *e = t ? t->err : NULL;
	if (e && e->serial > w->serial)
		aw_error_clear();
	int rc = it->next(it, item);
	if (rc > 0) {
		if (t)
			w->serial = t->raises;
		return true;
	}
	if (rc == 0)
		w->state = AW__WITH_NORMAL;   /* the end of the items, not a break */
	if (rc < 0) {
		/* Leave the block as by an error: the exit sees it, and it stays
		 * in flight after the loop. */
		if (aw_error_pending() != rc)
			(void)!aw_raise(rc, "iterator '%s' failed: %s", it->mgr.ops->name, aw_strerror(rc));
		w->state = AW__WITH_BROKEN;
	}
	return false;
}
