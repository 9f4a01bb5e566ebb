/* SPDX-License-Identifier: MIT */
/*
 * Generator-style managers (Python's @asynccontextmanager) and generator
 * iterators (async generators for AW_FOR).
 *
 * The generator function runs on a child stack of its own, inside the task
 * that enters it: while it runs, the task's current context (t->cur) is the
 * generator's, so a wait inside it suspends the whole task and resumes right
 * there. aw_gen_yield switches back to the context that resumed it; the
 * manager's exit switches in again, handing over the body's error, which
 * aw_gen_yield returns.
 */
#include "internal.h"

#include <string.h>

enum { GEN_IDLE, GEN_STARTED, GEN_RUNNING, GEN_YIELDED, GEN_DONE };

static void gen_entry(void *arg)
{
	aw_gen *g = arg;
	aw_loop *l = aw__loop;
	aw_coro_started(l);
	g->result = g->fn(g, g->arg);
	g->state = GEN_DONE;
	aw_coro *c = g->coro;
	c->dead = true;
	l->running->cur = c->parent;
	aw_coro_switch(c, c->parent);
	__builtin_unreachable();
}

/* Map the child stack; the generator has not run yet. */
static int gen_start(aw_gen *g)
{
	aw_loop *l = aw__loop;
	if (!l || !l->running)
		return aw_raise(-AW_ENOTASK, "generator manager '%s' entered outside of a task", g->name);
	aw_stack st;
	void *top = aw_stack_get(l, l->cfg.stack_size, &st);
	if (!top)
		return aw_raise(-ENOMEM, "cannot map a stack for generator '%s': %m", g->name);
	aw_coro *c = (aw_coro *)(((uintptr_t)top - sizeof(aw_coro)) & ~(uintptr_t)63);
	c->asan_fake = NULL;
	c->parent = NULL;
	c->dead = false;
	c->stack = st;
	c->lo = st.lo;
	c->size = (size_t)((char *)c - (char *)st.lo);
	aw_ctx_init(&c->ctx, c->lo, c, gen_entry, g);
	g->coro = c;
	g->state = GEN_STARTED;
	return 0;
}

/* Run the generator until it yields or returns. */
static void gen_resume(aw_gen *g, int to_gen)
{
	aw_task *t = aw__loop->running;
	aw_coro *c = g->coro;
	g->to_gen = to_gen;
	g->state = GEN_RUNNING;
	c->parent = t->cur;
	t->cur = c;
	aw_coro_switch(c->parent, c);
}

static void gen_release(aw_gen *g)
{
	aw_coro *c = g->coro;
	if (!c)
		return;
	aw_stack st = c->stack;
	g->coro = NULL;
	aw_stack_put(aw__loop, &st);
}

int aw_gen_yield(aw_gen *g, void *value)
{
	aw_task *t = aw__current();
	aw_coro *c = g ? g->coro : NULL;
	if (!t || !c || t->cur != c || g->state != GEN_RUNNING)
		return aw_raise(-EINVAL, "aw_gen_yield called outside of its generator function");
	g->value = value;
	g->state = GEN_YIELDED;
	t->cur = c->parent;
	aw_coro_switch(c, c->parent);
	return g->to_gen;
}

/* Resume with `to_gen` until the generator returns; a generator that yields
 * again gets `again` from that yield. Returns whether it yielded again. */
static bool gen_finish(aw_gen *g, int to_gen, int again)
{
	bool yielded_again = false;
	gen_resume(g, to_gen);
	while (g->state == GEN_YIELDED) {
		yielded_again = true;
		gen_resume(g, again);
	}
	return yielded_again;
}

/* ---- as a manager -------------------------------------------------------------- */

static int gen_enter(aw_mgr *m)
{
	aw_gen *g = AW_CONTAINER_OF(m, aw_gen, mgr);
	if (g->state != GEN_IDLE)
		return aw_raise(-EINVAL, "generator manager '%s' entered twice (make one aw_gen per block)", g->name);
	int rc = gen_start(g);
	if (rc)
		return rc;
	gen_resume(g, 0);
	if (g->state == GEN_YIELDED)
		return 0;
	int r = g->result;
	gen_release(g);
	if (r < 0)
		return aw_error_pending() == r ? r : aw_raise(r, "generator manager '%s' failed: %s", g->name, aw_strerror(r));
	return aw_raise(-AW_EGEN_NOYIELD, "generator manager '%s' returned without yielding", g->name);
}

static int gen_exit(aw_mgr *m, int err)
{
	aw_gen *g = AW_CONTAINER_OF(m, aw_gen, mgr);
	bool twice = gen_finish(g, err, -AW_EGEN_YIELDTWICE);
	int rc = g->result;
	gen_release(g);
	if (twice)
		return aw_raise(-AW_EGEN_YIELDTWICE, "generator manager '%s' yielded more than once", g->name);
	return rc;
}

static const aw_mgr_ops gen_ops = { .name = "generator", .enter = gen_enter, .exit = gen_exit };

aw_mgr *aw_gen_init(aw_gen *g, const char *name, aw_gen_fn fn, void *arg)
{
	memset(g, 0, sizeof *g);
	g->mgr.ops = &gen_ops;
	g->fn = fn;
	g->arg = arg;
	g->name = name ? name : "generator";
	g->state = GEN_IDLE;
	return &g->mgr;
}

/* ---- as an iterator ------------------------------------------------------------ */

static int gen_iter_enter(aw_mgr *m)
{
	aw_gen_iter *gi = AW_CONTAINER_OF(m, aw_gen_iter, iter.mgr);
	if (gi->gen.state != GEN_IDLE)
		return aw_raise(-EINVAL, "generator iterator '%s' entered twice", gi->gen.name);
	gi->started = gi->finished = false;
	return gen_start(&gi->gen);
}

static int gen_iter_next(aw_iter *it, void **item)
{
	aw_gen_iter *gi = AW_CONTAINER_OF(it, aw_gen_iter, iter);
	aw_gen *g = &gi->gen;
	if (gi->finished)
		return 0;
	gi->started = true;
	gen_resume(g, 0);
	if (g->state == GEN_YIELDED) {
		*item = g->value;
		return 1;
	}
	gi->finished = true;
	int r = g->result;
	gen_release(g);
	if (r < 0 && r != -AW_ECLOSED)
		return aw_error_pending() == r ? r : aw_raise(r, "generator iterator '%s' failed: %s", g->name, aw_strerror(r));
	return 0;
}

static int gen_iter_exit(aw_mgr *m, int err)
{
	aw_gen_iter *gi = AW_CONTAINER_OF(m, aw_gen_iter, iter.mgr);
	aw_gen *g = &gi->gen;
	if (gi->finished || !g->coro) {
		g->state = GEN_IDLE;
		return err;
	}
	if (!gi->started) {
		/* Never ran: nothing to tear down. */
		gen_release(g);
		g->state = GEN_IDLE;
		return err;
	}
	/* Closed early: the pending yield returns the error the loop is left
	 * with, or -AW_ECLOSED (Python's GeneratorExit). */
	int close_code = err ? err : -AW_ECLOSED;
	bool twice = gen_finish(g, close_code, -AW_ECLOSED);
	int rc = g->result;
	gen_release(g);
	gi->finished = true;
	g->state = GEN_IDLE;
	if (twice)
		return aw_raise(-AW_EGEN_YIELDTWICE, "generator iterator '%s' yielded after being closed", g->name);
	if (rc == close_code || rc == 0 || rc == -AW_ECLOSED)
		return err;   /* a clean close */
	return rc;
}

static const aw_mgr_ops gen_iter_ops = { .name = "generator iterator", .enter = gen_iter_enter, .exit = gen_iter_exit };

aw_iter *aw_gen_iter_init(aw_gen_iter *gi, const char *name, aw_gen_fn fn, void *arg)
{
	memset(gi, 0, sizeof *gi);
	gi->iter.mgr.ops = &gen_iter_ops;
	gi->iter.next = gen_iter_next;
	gi->gen.fn = fn;
	gi->gen.arg = arg;
	gi->gen.name = name ? name : "generator iterator";
	gi->gen.state = GEN_IDLE;
	return &gi->iter;
}
