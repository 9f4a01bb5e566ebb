/* SPDX-License-Identifier: MIT */
/*
 * Cancel scopes: the task's own cancellation, timeouts (fail_after),
 * move_on scopes, shields, and the group's scope. They form a chain from
 * the innermost scope to the task's root.
 *
 * Deadlines cost nothing until the task waits: a wait arms one timer at the
 * earliest deadline on its chain (task.c), and a scope is marked cancelled
 * when a wait finds its deadline passed. Cancellation is level-triggered:
 * once a scope is cancelled, every wait inside it fails, not only the first
 * (Trio's rule, not asyncio's). A task cannot swallow its cancellation by
 * accident and wait on forever; cleanup that must wait runs in exits, which
 * are shielded (with.c).
 *
 * Which code does a wait get when several scopes are cancelled? The
 * outermost one's: if an outer scope is cancelled, whatever an inner timeout
 * says is moot. So an outer cancellation is never mistaken for an inner
 * timeout, and each scope's exit recognises its own cancellation by the
 * error's origin.
 */
#include "internal.h"

int aw_scope_pending_cancel(aw_task *t, aw_time now, aw_scope **origin, aw_time *next_deadline)
{
	aw_scope *boundary = t->cleanup ? (aw_scope *)t->cleanup->boundary : NULL;
	int code = 0;
	aw_time next = AW_NEVER;
	for (aw_scope *s = t->scope; s && s != boundary; s = s->outer) {
		if (!s->cancelled && s->deadline <= now)
			aw__scope_mark(s, s->code);
		if (s->cancelled) {
			code = s->code;
			*origin = s;
		} else if (s->deadline < next) {
			next = s->deadline;
		}
		if (s->shield)
			break;
	}
	/* Deadlines of scopes inside the cancelled one no longer matter, but
	 * keeping the minimum is harmless: the wait fails at once anyway. */
	*next_deadline = next;
	return code;
}

void aw_scope_poke(aw_task *t)
{
	if (t->state != AW_TASK_PARKED || t->park_shielded)
		return;
	aw_scope *origin;
	aw_time next;
	if (aw_scope_pending_cancel(t, t->loop->now, &origin, &next))
		aw_task_wake(t, AW__WAKE_CANCEL);
}

void aw__scope_mark(aw_scope *s, int code)
{
	if (s->cancelled)
		return;
	s->cancelled = true;
	s->code = code;
	if (s->task)
		s->task->cancels++;
}

void aw__scope_push(aw_task *t, aw_scope *s)
{
	s->task = t;
	s->outer = t->scope;
	s->outer_limit = t->limit;
	/* A shield hides the deadlines around it. */
	aw_time outer = s->shield ? AW_NEVER : t->limit;
	t->limit = s->deadline < outer ? s->deadline : outer;
	if (s->cancelled)
		t->cancels++;   /* cancelled before it was entered */
	t->scope = s;
}

void aw__scope_pop(aw_task *t, aw_scope *s)
{
	t->scope = s->outer;
	t->limit = s->outer_limit;
	if (s->cancelled && t->cancels)
		t->cancels--;
	s->task = NULL;
}

int aw__cancel_owed(aw_task *t, bool raise)
{
	if (!t || (t->scope == &t->root && !t->root.cancelled))
		return 0;
	aw_scope *origin = NULL;
	aw_time next;
	int code = aw_scope_pending_cancel(t, t->loop->now, &origin, &next);
	if (!code)
		return 0;
	if (raise && (!t->err || t->err->code != code))
		return aw__raise_cancel(t, code, origin);
	return code;
}

void aw_scope_cancel(aw_scope *s)
{
	if (s->cancelled)
		return;
	aw__scope_mark(s, -ECANCELED);
	if (s->task) {
		/* A group exit waits shielded for its children; cancelling a
		 * scope around it cancels them (asyncio and Trio do too). */
		if (s->task->waiting_group && s->task->waiting_group != AW_CONTAINER_OF(s, aw_group, scope))
			aw__group_outer_cancel(s->task->waiting_group, s);
		aw_scope_poke(s->task);
	}
}

aw_scope *aw_scope_outer_cancelled(aw_task *t, aw_scope *from, aw_time now, aw_time *next_deadline)
{
	aw_scope *origin = NULL;
	aw_time next = AW_NEVER;
	for (aw_scope *s = from; s; s = s->outer) {
		if (!s->cancelled && s->deadline <= now)
			aw__scope_mark(s, s->code);
		if (s->cancelled)
			origin = s;
		else if (s->deadline < next)
			next = s->deadline;
		if (s->shield)
			break;
	}
	(void)t;
	*next_deadline = next;
	return origin;
}

static int scope_enter(aw_mgr *m)
{
	aw_scope *s = AW_CONTAINER_OF(m, aw_scope, mgr);
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "a cancel scope needs a task");
	s->fired = false;
	aw__scope_push(t, s);
	return 0;
}

static int scope_exit(aw_mgr *m, int err)
{
	aw_scope *s = AW_CONTAINER_OF(m, aw_scope, mgr);
	aw__scope_pop(s->task, s);
	if (err) {
		const aw_error *e = aw_error_current();
		if (e && e->origin == s) {
			s->fired = true;
			return s->suppress ? 0 : err;
		}
	}
	return err;
}

static const aw_mgr_ops timeout_ops = { .name = "timeout", .enter = scope_enter, .exit = scope_exit };
static const aw_mgr_ops move_on_ops = { .name = "move_on", .enter = scope_enter, .exit = scope_exit };
static const aw_mgr_ops shield_ops = { .name = "shield", .enter = scope_enter, .exit = scope_exit };

static aw_mgr *scope_init(aw_scope *s, const aw_mgr_ops *ops, aw_time deadline, int code, bool suppress,
			  bool shield)
{
	*s = (aw_scope){
		.mgr = { ops },
		.deadline = deadline,
		.code = code,
		.suppress = suppress,
		.shield = shield,
	};
	return &s->mgr;
}

aw_mgr *aw_deadline_init(aw_scope *s, aw_time deadline)
{
	return scope_init(s, &timeout_ops, deadline, -ETIMEDOUT, false, false);
}

aw_mgr *aw_timeout_init(aw_scope *s, aw_time dur)
{
	return aw_deadline_init(s, aw_deadline_after(dur));
}

aw_mgr *aw_move_on_at_init(aw_scope *s, aw_time deadline)
{
	return scope_init(s, &move_on_ops, deadline, -ETIMEDOUT, true, false);
}

aw_mgr *aw_move_on_init(aw_scope *s, aw_time dur)
{
	return aw_move_on_at_init(s, aw_deadline_after(dur));
}

aw_mgr *aw_shield(aw_scope *s, aw_time deadline)
{
	return scope_init(s, &shield_ops, deadline, -ETIMEDOUT, false, true);
}

/* A shield of the one convention (aw_<what>_init fills s, cannot fail):
 * no deadline of its own; a bounded shielded cleanup nests a deadline scope
 * inside it (or uses aw_cleanup_run). */
aw_mgr *aw_shield_init(aw_scope *s)
{
	return aw_shield(s, AW_NEVER);
}
