/* SPDX-License-Identifier: MIT */
/*
 * Exit stacks (Python's AsyncExitStack): managers, exit functions and
 * callbacks pushed at run time, unwound LIFO with the error passing from
 * one exit to the next exactly as through nested blocks. The entries are an
 * array and the unwinding a loop, so any number of them unwinds in constant
 * stack depth.
 */
#include "internal.h"

#include <stdlib.h>

enum { ENTRY_MGR, ENTRY_EXIT, ENTRY_CALLBACK };

struct aw_exitstack_entry {
	int kind;
	void *p;            /* the manager, or the function's argument */
	union {
		aw_exit_fn exit;
		aw_callback_fn callback;
	} fn;
};

/* Make room for one more entry. */
static int reserve(aw_exitstack *s)
{
	if (s->count < s->cap)
		return 0;
	size_t cap = s->cap ? s->cap * 2 : 8;
	aw_exitstack_entry *e = aw__realloc(s->entries, cap * sizeof *e);
	if (!e)
		return aw_raise(-ENOMEM, "exit stack: cannot grow to %zu entries", cap);
	s->entries = e;
	s->cap = cap;
	return 0;
}

static int run_entry(void *ctx, int err);

int aw_exitstack_enter(aw_exitstack *s, aw_mgr *m)
{
	if (!m || !m->ops)
		return aw_raise(-EINVAL, "aw_exitstack_enter: manager is NULL or has no ops");
	int rc = reserve(s);   /* before entering: pushing then cannot fail */
	if (rc)
		return rc;
	rc = m->ops->enter ? m->ops->enter(m) : 0;
	if (rc)
		return rc < 0 ? rc : aw_raise(-AW_EEXIT, "enter of '%s' returned %d", m->ops->name, rc);
	/* The enter may itself have pushed onto this stack (a generator that
	 * enters into the same exit stack) and used the room reserved above. */
	rc = reserve(s);
	if (AW_UNLIKELY(rc)) {
		/* Entered but cannot be recorded: exit it now, so nothing leaks. */
		aw_task *t = aw__current();
		aw_with cw = { 0 };
		aw__cleanup_begin(t, &cw);
		aw_exitstack_entry e = { .kind = ENTRY_MGR, .p = m };
		rc = aw__run_exit(run_entry, &e, m->ops->name, rc);
		aw__cleanup_end(t, &cw);
		return rc;
	}
	s->entries[s->count++] = (aw_exitstack_entry){ .kind = ENTRY_MGR, .p = m };
	return 0;
}

int aw_exitstack_push(aw_exitstack *s, aw_mgr *m)
{
	if (!m || !m->ops)
		return aw_raise(-EINVAL, "aw_exitstack_push: manager is NULL or has no ops");
	int rc = reserve(s);
	if (rc)
		return rc;
	s->entries[s->count++] = (aw_exitstack_entry){ .kind = ENTRY_MGR, .p = m };
	return 0;
}

int aw_exitstack_push_exit(aw_exitstack *s, aw_exit_fn fn, void *arg)
{
	if (!fn)
		return aw_raise(-EINVAL, "aw_exitstack_push_exit: no function");
	int rc = reserve(s);
	if (rc)
		return rc;
	s->entries[s->count++] = (aw_exitstack_entry){ .kind = ENTRY_EXIT, .p = arg, .fn.exit = fn };
	return 0;
}

int aw_exitstack_callback(aw_exitstack *s, aw_callback_fn fn, void *arg)
{
	if (!fn)
		return aw_raise(-EINVAL, "aw_exitstack_callback: no function");
	int rc = reserve(s);
	if (rc)
		return rc;
	s->entries[s->count++] = (aw_exitstack_entry){ .kind = ENTRY_CALLBACK, .p = arg, .fn.callback = fn };
	return 0;
}

void aw_exitstack_pop_all(aw_exitstack *s, aw_exitstack *into)
{
	free(into->entries);
	into->entries = s->entries;
	into->count = s->count;
	into->cap = s->cap;
	s->entries = NULL;
	s->count = s->cap = 0;
}

static int run_entry(void *ctx, int err)
{
	aw_exitstack_entry *e = ctx;
	switch (e->kind) {
	case ENTRY_MGR: {
		aw_mgr *m = e->p;
		return m->ops->exit ? m->ops->exit(m, err) : err;
	}
	case ENTRY_EXIT:
		return e->fn.exit(e->p, err);
	default: {
		int rc = e->fn.callback(e->p);
		return rc < 0 ? rc : err;
	}
	}
}

static const char *entry_name(const aw_exitstack_entry *e)
{
	switch (e->kind) {
	case ENTRY_MGR: return ((aw_mgr *)e->p)->ops->name;
	case ENTRY_EXIT: return "exit function";
	default: return "callback";
	}
}

int aw_exitstack_unwind(aw_exitstack *s, int err)
{
	aw_task *t = aw__current();
	if (!err && s->count && aw__cancel_maybe(t))
		err = aw__cancel_owed(t, true);   /* a cleanup always sees a cancellation */
	aw_with cw = { 0 };
	aw__cleanup_begin(t, &cw);
	while (s->count) {
		/* Copy: an exit may push onto the same stack (it then runs next). */
		aw_exitstack_entry e = s->entries[--s->count];
		if (AW_LIKELY(t && !err && !t->err && e.kind == ENTRY_MGR)) {
			/* Nothing in flight: call the exit directly; only one that
			 * fails or leaves an error behind needs the general path. */
			aw_mgr *m = e.p;
			if (!m->ops->exit)
				continue;
			uint64_t before = t->raises;
			int rc = m->ops->exit(m, 0);
			if (AW_LIKELY(rc == 0 && !t->err))
				continue;
			err = aw__exit_apply(&t->err, m->ops->name, 0, NULL, NULL, before, rc);
			continue;
		}
		err = aw__run_exit(run_entry, &e, entry_name(&e), err);
	}
	aw__cleanup_end(t, &cw);
	free(s->entries);
	s->entries = NULL;
	s->cap = 0;
	return err;
}

int (aw_exitstack_close)(aw_exitstack *s)
{
	return aw_exitstack_unwind(s, 0);
}

static int exitstack_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int exitstack_exit(aw_mgr *m, int err)
{
	return aw_exitstack_unwind(AW_CONTAINER_OF(m, aw_exitstack, mgr), err);
}

static void exitstack_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_exitstack *s = AW_CONTAINER_OF(m, aw_exitstack, mgr);
	snprintf(buf, len, "%zu entr%s", s->count, s->count == 1 ? "y" : "ies");
}

static const aw_mgr_ops exitstack_ops = {
	.name = "exit stack", .enter = exitstack_enter, .exit = exitstack_exit, .describe = exitstack_describe,
};

aw_mgr *aw_exitstack_init(aw_exitstack *s)
{
	*s = (aw_exitstack){ .mgr = { &exitstack_ops } };
	return &s->mgr;
}
