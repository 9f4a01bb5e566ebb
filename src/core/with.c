/* SPDX-License-Identifier: MIT */
/*
 * The block statement's machinery (AW_WITH in core.h) and the manual
 * enter/exit pair.
 *
 * Which error does an exit see? The task numbers every error it raises
 * (serials). A block notes the counter when it is entered; when it is left
 * — by any path, falling off the end included — while the error in flight
 * was raised after that, the exits get that error: an error nobody handled
 * (aw_error_clear, aw_catch) is never taken as handled. Errors from before
 * the block never reach its exits. When nothing is in flight but the
 * task's scopes around the block are cancelled, the exits get the
 * cancellation (level-triggered, as Trio), so a body that swallowed its
 * -ECANCELED cannot make a transaction commit.
 *
 * Exits run shielded: the cancel-scope chain as it is when the exits start
 * is the cleanup's boundary, which waits inside the exit do not look past
 * (scope.c), and the first wait in an exit starts the grace deadline.
 */
#include "internal.h"

#include <stdlib.h>

void aw__cleanup_begin(aw_task *t, aw_with *w)
{
	if (!t)
		return;
	w->cleanup_outer = t->cleanup;
	w->boundary = t->scope;
	w->grace_deadline = 0;
	t->cleanup = w;
}

void aw__cleanup_end(aw_task *t, aw_with *w)
{
	if (t)
		t->cleanup = w->cleanup_outer;
}

static bool chain_contains(const aw_error *e, const aw_error *x)
{
	for (; e; e = e->cause)
		if (e == x)
			return true;
	return false;
}


int aw__run_exit(int (*exit_fn)(void *ctx, int err), void *ctx, const char *name, int err)
{
	uint64_t *raises;
	aw_error **slot = aw__err_slot(&raises);
	aw_error *held = NULL, *prior = NULL;
	if (err) {
		/* The error being handled: normally the one in flight. If the
		 * caller passed a bare code, make an error for it so that the
		 * chain is complete. */
		if (!*slot || (*slot)->code != err)
			aw_error_raise_obj(aw_error_new(NULL, err, "%s", aw_strerror(err)));
		held = *slot;
		aw_error_hold(held);
	} else if (*slot) {
		/* An error from before the block: not this exit's business. */
		prior = *slot;
		aw_error_hold(prior);
	}
	uint64_t before = *raises;
	int rc = exit_fn(ctx, err);
	return aw__exit_apply(slot, name, err, held, prior, before, rc);
}

/* The second half of aw__run_exit: apply the exit's return value `rc` to
 * the error in flight (*slot). held: a reference to the error handed to the
 * exit (err != 0); prior: a reference to an error from before the block
 * (err == 0); before: the raise counter before the exit ran. Consumes both
 * references. */
int aw__exit_apply(aw_error **slot, const char *name, int err, aw_error *held, aw_error *prior,
		   uint64_t before, int rc)
{
	aw_error *cur = *slot;

	if (rc == 0 && err == 0) {
		/* Nothing was handled: an error from before the block stays in
		 * flight; whatever the exit raised and dropped is gone. */
		if (cur != prior) {
			*slot = prior;
			prior = NULL;
			aw__error_drop(cur);
		}
		aw_error_free(prior);
		return 0;
	}
	if (rc == err) {
		/* Propagate: whatever the exit raised and dropped is gone; the
		 * handled error is in flight again. */
		if (cur != held) {
			*slot = held;
			held = NULL;
			aw__error_drop(cur);
		} else {
			aw_error_free(held);
		}
		return err;
	}
	if (rc == 0) {
		/* Suppress: the error is handled. An exit further out that
		 * still holds it (an exit stack used as a block's manager) must
		 * not make it a later error's cause. */
		*slot = NULL;
		for (aw_error *e = held; e; e = e->cause)
			e->handled = true;
		for (aw_error *e = cur; e && e != held; e = e->cause)
			e->handled = true;
		aw_error_free(cur);
		aw_error_free(held);
		return 0;
	}
	/* Replace. Use the exit's own error if it raised one with that code. */
	aw_error *fresh = NULL;
	if (rc > 0) {
		fresh = aw_error_new(NULL, -AW_EEXIT, "exit of '%s' returned %d, not 0 or a negative code", name, rc);
		rc = -AW_EEXIT;
	} else if (cur && cur != held && cur->serial > before && cur->code == rc) {
		fresh = cur;
		*slot = NULL;
		cur = NULL;
	} else {
		fresh = aw_error_new(NULL, rc, "exit of '%s' failed: %s", name, aw_strerror(rc));
	}
	if (cur && cur != held && fresh) {
		/* Something else the exit raised: keep it in the chain. */
		aw_error *end = fresh;
		while (end->cause)
			end = end->cause;
		end->cause = cur;
		cur = NULL;
	}
	*slot = NULL;
	aw_error_free(cur);
	if (fresh && held && !held->handled && !chain_contains(fresh, held)) {
		aw_error *end = fresh;
		while (end->cause)
			end = end->cause;
		end->cause = held;   /* our reference moves into the chain */
		held = NULL;
	}
	aw_error_free(held);
	aw_error_free(prior);
	aw_error_raise_obj(fresh);
	return rc;
}

static int call_mgr_exit(void *ctx, int err)
{
	aw_mgr *m = ctx;
	return m->ops->exit(m, err);
}

/* Exit the first `n` managers of w, right to left, with err passing. */
static int exit_managers(aw_task *t, aw_with *w, unsigned n, int err)
{
	aw__cleanup_begin(t, w);
	for (unsigned i = n; i-- > 0;) {
		aw_mgr *m = w->mgrs[i];
		if (!m->ops->exit)
			continue;
		if (AW_LIKELY(t && !err && !t->err)) {
			/* The common case: nothing in flight. Call the exit
			 * directly; only an exit that fails or leaves an error
			 * behind needs the general treatment. */
			uint64_t before = t->raises;
			const char *name = m->ops->name;   /* the exit may free m (a stream's close) */
			int rc = m->ops->exit(m, 0);
			if (AW_LIKELY(rc == 0 && !t->err))
				continue;
			err = aw__exit_apply(&t->err, name, 0, NULL, NULL, before, rc);
			continue;
		}
		err = aw__run_exit(call_mgr_exit, m, m->ops->name, err);
	}
	aw__cleanup_end(t, w);
	return err;
}

/* Manager i (m) failed to enter with rc: make sure its error is raised,
 * then unwind the managers entered before it, with that error. */
static bool enter_failed(aw_task *t, aw_with *w, unsigned i, aw_mgr *m, int rc)
{
	if (rc > 0)
		rc = aw_raise(-AW_EEXIT, "enter of '%s' returned %d, not 0 or a negative code", m->ops->name, rc);
	else if (aw_error_pending() != rc)
		rc = aw_raise(rc, "enter of '%s' failed: %s", m && m->ops ? m->ops->name : "?", aw_strerror(rc));
	if (i)
		exit_managers(t, w, i, rc);
	w->result = aw_error_pending();
	w->state = AW__WITH_DONE;
	return false;
}

/* The block statement's enter when the inline fast path in core.h does not
 * apply (outside a task, several managers, no enter function). */
bool aw__with_begin(aw_with *w)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	uint64_t *raises;
	if (t) {
		raises = &t->raises;
		w->since = l->now;
	} else {
		aw__err_slot(&raises);
		w->since = l ? l->now : 0;
	}
	w->task = t;
	w->serial = *raises;
	for (unsigned i = 0; i < w->count; i++) {
		aw_mgr *m = w->mgrs[i];
		int rc;
		if (AW_UNLIKELY(!m || !m->ops))
			rc = aw_raise(-EINVAL, "AW_WITH: manager %u is NULL or has no ops", i);
		else
			rc = m->ops->enter ? m->ops->enter(m) : 0;
		if (AW_UNLIKELY(rc != 0))
			return enter_failed(t, w, i, m, rc);
		w->entered = i + 1;
	}
	if (t) {
		w->outer = t->withs;
		t->withs = w;
	}
	w->state = AW__WITH_BODY;
	return true;
}

/* The inline fast path's enter failed with rc. */
bool aw__with_enter_failed(aw_with *w, aw_mgr *m, int rc)
{
	return enter_failed(w->task, w, 0, m, rc);
}

/* The block statement's exit when the inline fast path in core.h does not
 * apply (an error in flight, several managers, outside a task...). */
void aw__with_leave(aw_with *w)
{
	if (w->state != AW__WITH_BODY && w->state != AW__WITH_NORMAL && w->state != AW__WITH_BROKEN)
		return;
	aw_task *t = w->task;
	aw_error *e = t ? t->err : *aw__err_slot(NULL);
	int err = 0;
	if (e && e->serial > w->serial)
		err = e->code;   /* raised inside and not handled: however we leave */
	else if (aw__cancel_maybe(t))
		err = aw__cancel_owed(t, true);
	if (t)
		t->withs = w->outer;
	w->result = exit_managers(t, w, w->entered, err);
	w->state = AW__WITH_DONE;
}

/* The inline fast path's exit failed (rc != 0) or left an error in flight. */
void aw__with_exit_failed(aw_with *w, aw_mgr *m, uint64_t before, int rc)
{
	aw_task *t = w->task;
	/* The exit may have freed m (a stream's close frees the stream):
	 * its name is read only when the exit did not raise its own error
	 * with that code, the one case that makes up a message. */
	const aw_error *e = t->err;
	bool own = rc < 0 && e && e->serial > before && e->code == rc;
	w->result = aw__exit_apply(&t->err, own ? "" : m->ops->name, 0, NULL, NULL, before, rc);
}

/* ---- running a cleanup now ------------------------------------------------ */

int (aw_cleanup_run)(aw_exit_fn fn, void *arg, aw_time limit)
{
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_cleanup_run outside of a task");
	int owed = aw__cancel_owed(t, false);
	aw_error *held = aw_error_take();
	int err = held ? held->code : owed;
	/* Shielded like an exit: the chain as it is now is the boundary;
	 * `limit` is a deadline scope inside it. */
	aw_with cw = { 0 };
	aw__cleanup_begin(t, &cw);
	aw_scope bound = { .mgr = { NULL }, .deadline = aw_deadline_after(limit), .code = -ETIMEDOUT };
	if (limit == AW_NEVER)
		bound.deadline = AW_NEVER;
	aw__scope_push(t, &bound);
	int rc = fn(arg, err);
	aw__scope_pop(t, &bound);
	aw__cleanup_end(t, &cw);
	/* What the cleanup raised is handled here: its code is our result. */
	aw_error_clear();
	if (held)
		aw__error_restore(held);
	return rc > 0 ? -AW_EEXIT : rc;
}

/* ---- manual enter / exit -------------------------------------------------- */

typedef struct manual_entry {
	aw_ledger_entry ledger;
	aw_mgr *mgr;
} manual_entry;

static void manual_entry_release(aw_ledger_entry *e)
{
	free(AW_CONTAINER_OF(e, manual_entry, ledger));
}

/* The manager aw_enter is entering and where from, until its enter first
 * waits or returns (aw_manual_enter_loc). */
static __thread const aw_mgr *manual_entering;
static __thread const aw_loc *manual_entering_loc;

const aw_loc *aw_manual_enter_loc(const aw_mgr *m)
{
	return m && manual_entering == m ? manual_entering_loc : NULL;
}

int (aw_enter)(aw_mgr *m)
{
	const aw_loc *loc = aw__where;   /* the caller's: AW__AT in core.h */
	if (!m || !m->ops)
		return aw_raise(-EINVAL, "aw_enter: manager is NULL or has no ops");
	manual_entry *me = aw__malloc(sizeof *me);
	if (!me)
		return aw_raise(-ENOMEM, "aw_enter: no memory for the ledger entry");
	manual_entering = m;
	manual_entering_loc = loc;
	int rc = m->ops->enter ? m->ops->enter(m) : 0;
	manual_entering = NULL;
	manual_entering_loc = NULL;
	if (rc != 0) {
		free(me);
		return rc < 0 ? rc : aw_raise(-AW_EEXIT, "enter of '%s' returned %d", m->ops->name, rc);
	}
	me->mgr = m;
	aw_ledger_open(&me->ledger, m->ops->name, loc);
	me->ledger.owner = m;
	me->ledger.release = manual_entry_release;
	return 0;
}

int (aw_exit)(aw_mgr *m, int err)
{
	aw_loop *l = aw__loop;
	manual_entry *me = NULL;
	for (aw_ledger_entry *e = l ? l->ledger : NULL; e; e = e->next) {
		if (e->owner == m && e->what == m->ops->name) {
			me = AW_CONTAINER_OF(e, manual_entry, ledger);
			break;
		}
	}
	if (!me)
		return aw_raise(-EINVAL, "aw_exit: '%s' was not entered with aw_enter", m->ops->name);
	aw_ledger_close(&me->ledger);
	free(me);
	if (!m->ops->exit)
		return err;
	aw_task *t = aw__current();
	if (!err && aw__cancel_maybe(t))
		err = aw__cancel_owed(t, true);   /* a cleanup always sees a cancellation */
	aw_with cw = { 0 };
	aw__cleanup_begin(t, &cw);
	int rc = aw__run_exit(call_mgr_exit, m, m->ops->name, err);
	aw__cleanup_end(t, &cw);
	return rc;
}
