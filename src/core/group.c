/* SPDX-License-Identifier: MIT */
/*
 * Task groups (Python's TaskGroup). The group is a cancel scope around its
 * block's body plus a set of child tasks. The first child that fails
 * cancels its siblings and the body; the exit waits (shielded) for every
 * child, then reports every failure as one -AW_EGROUP error whose members
 * are the children's errors, in the order they failed.
 */
#include "internal.h"

static void cancel_children(aw_group *g)
{
	for (aw_task *c = g->children; c; c = c->group_next)
		aw_task_cancel(c);
}

void aw_group_cancel(aw_group *g)
{
	cancel_children(g);
	aw_scope_cancel(&g->scope);
}

void aw__group_child_done(aw_task *c)
{
	aw_group *g = c->group;
	if (c->group_prev)
		c->group_prev->group_next = c->group_next;
	else
		g->children = c->group_next;
	if (c->group_next)
		c->group_next->group_prev = c->group_prev;
	c->group = NULL;
	c->group_prev = c->group_next = NULL;
	g->running--;

	int rc = c->result;
	/* A child that ends with the cancellation it was given did not fail. */
	bool was_cancelled = c->root.cancelled && rc == -ECANCELED;
	if (rc < 0 && !was_cancelled) {
		aw_error *e = c->err;
		c->err = NULL;
		if (!e)
			e = aw_error_new(NULL, rc, "task '%s' failed: %s", c->name, aw_strerror(rc));
		if (e) {
			*g->errors_tail = e;
			g->errors_tail = &e->next_member;
		}
		if (g->failed++ == 0)
			aw_group_cancel(g);
	}
	c->detached = true;   /* the group was its only handle */
	if (g->waiting && g->running == 0)
		aw_task_wake(g->owner, 0);
}

static int group_enter(aw_mgr *m)
{
	aw_group *g = AW_CONTAINER_OF(m, aw_group, mgr);
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "a task group needs a task");
	g->owner = t;
	g->scope = (aw_scope){ .deadline = AW_NEVER, .code = -ECANCELED };
	aw__scope_push(t, &g->scope);
	return 0;
}

static int group_exit(aw_mgr *m, int err)
{
	aw_group *g = AW_CONTAINER_OF(m, aw_group, mgr);
	aw_task *t = g->owner;
	if (err || t->root.cancelled)
		cancel_children(g);
	g->waiting = true;
	g->cancelled_by = NULL;
	t->waiting_group = g;
	/* Wait shielded (children always end: they finish or are cancelled),
	 * but watch the scopes around the group: if one is cancelled or its
	 * deadline passes, cancel the children (asyncio's and Trio's rule). */
	while (g->running) {
		aw_time next;
		aw_scope *o = g->cancelled_by ? NULL : aw_scope_outer_cancelled(t, g->scope.outer, aw_now(), &next);
		if (o)
			aw__group_outer_cancel(g, o);
		aw_task_park(g->cancelled_by ? AW_NEVER : next, true);
	}
	t->waiting_group = NULL;
	g->waiting = false;
	aw__scope_pop(t, &g->scope);
	g->owner = NULL;
	if (g->failed) {
		aw_error *e = aw_error_new(NULL, -AW_EGROUP, "%zu task(s) of the task group failed", g->failed);
		if (!e) {
			/* No room for the group's error: its members go (the
			 * code stays: aw_raise keeps it even without memory). */
			for (aw_error *m = g->errors, *next; m; m = next) {
				next = m->next_member;
				m->next_member = NULL;
				aw_error_free(m);
			}
			g->errors = NULL;
			g->errors_tail = &g->errors;
			return aw_raise(-AW_EGROUP, "%zu task(s) of the task group failed", g->failed);
		}
		e->members = g->errors;
		g->errors = NULL;
		g->errors_tail = &g->errors;
		aw_error_raise_obj(e);
		return -AW_EGROUP;
	}
	if (err) {
		const aw_error *cur = aw_error_current();
		if (cur && cur->origin == &g->scope)
			return 0;   /* aw_group_cancel without a failure: done */
		return err;
	}
	if (g->cancelled_by)
		return aw__raise_cancel(t, g->cancelled_by->code, g->cancelled_by);
	return 0;
}

void aw__group_outer_cancel(aw_group *g, aw_scope *origin)
{
	if (!g->cancelled_by)
		g->cancelled_by = origin;
	cancel_children(g);
}

static void group_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_group *g = AW_CONTAINER_OF(m, aw_group, mgr);
	snprintf(buf, len, "%zu running, %zu failed", g->running, g->failed);
}

static const aw_mgr_ops group_ops = {
	.name = "task group", .enter = group_enter, .exit = group_exit, .describe = group_describe,
};

aw_mgr *aw_group_init(aw_group *g)
{
	*g = (aw_group){ .mgr = { &group_ops } };
	g->errors_tail = &g->errors;
	return &g->mgr;
}

int aw_group_spawn(aw_group *g, aw_task_fn fn, void *arg, const char *name)
{
	if (!g->owner)
		return aw_raise(-EINVAL, "aw_group_spawn: the group's block is not active");
	if (g->failed || g->scope.cancelled)
		return aw_raise(-ECANCELED, "aw_group_spawn: the task group is shutting down");
	aw_task *c;
	int rc = aw_spawn(&c, fn, arg, name);
	if (rc)
		return rc;
	c->group = g;
	c->group_next = g->children;
	if (g->children)
		g->children->group_prev = c;
	g->children = c;
	g->running++;
	return 0;
}
