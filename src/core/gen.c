/* SPDX-License-Identifier: MIT */
/*
 * Generator-style managers (Python's @asynccontextmanager) and generator
 * iterators (async generators for AW_FOR).
 *
 * The generator function runs on a stack of its own, inside the task that
 * enters it: while it runs, the task's current context (t->cur) is the
 * generator's, so a wait inside it suspends the whole task and resumes right
 * there. aw_gen_yield switches back to the context that resumed it; the
 * manager's exit switches in again, handing over the body's error, which
 * aw_gen_yield returns.
 *
 * The stack is a runner's (see docs/design.md, "Generator hand-offs"): a
 * coroutine parked on its own stack in a loop that runs one generator
 * function per job. Finished runners wait on a per-loop free list, so a
 * block costs a pop, four plain context switches and a push: no stack taken
 * from and given back to the stack cache, no context built, no trampoline.
 * The hand-offs between a task and its generator switch directly, outside
 * the scheduler: no task changes, so neither the loop's switch counter
 * (the watchdog's sign of progress between tasks) nor the zombie check
 * applies (a zombie is only pending right after a task ends, and whoever
 * resumes next reaps it before any hand-off).
 */
#include "internal.h"

#include <string.h>

enum { GEN_IDLE, GEN_STARTED, GEN_RUNNING, GEN_YIELDED, GEN_DONE };

/* Runners kept parked per loop; more finished at once go (their stacks back
 * to the stack cache). */
#define GEN_RUNNERS_KEPT 64

/* A runner: the aw_coro at the top of its stack, with its job. */
typedef struct aw_gen_runner {
	aw_coro coro;
	aw_gen *job;                   /* the generator to run; NULL: end */
	struct aw_gen_runner *next;    /* on the loop's free list */
} aw_gen_runner;

/* A hand-off between a task's contexts. Under ASan the general switch (with
 * the fiber annotations); otherwise the bare register switch. */
static inline __attribute__((always_inline)) void gen_switch(aw_coro *from, aw_coro *to)
{
#if AW_ASAN
	aw_coro_switch(from, to);
#elif AW_CTX_HOP
	aw_ctx_hop(&from->ctx, &to->ctx);
#else
	aw_ctx_switch(&from->ctx, &to->ctx);
#endif
}

static void runner_main(void *arg)
{
	aw_gen_runner *r = arg;
	aw_coro_started(aw__loop);
	aw_gen *g;
	while ((g = r->job) != NULL) {
		g->result = g->fn(g, g->arg);
		g->state = GEN_DONE;
		r->job = NULL;
		gen_switch(&r->coro, r->coro.parent);   /* resumed with the next job */
	}
	r->coro.dead = true;
	gen_switch(&r->coro, r->coro.parent);
	__builtin_unreachable();
}

static aw_gen_runner *runner_new(aw_loop *l)
{
	aw_stack st;
	void *top = aw_stack_get(l, l->cfg.stack_size, &st);
	if (!top)
		return NULL;
	aw_gen_runner *r = (aw_gen_runner *)(((uintptr_t)top - sizeof(aw_gen_runner)) & ~(uintptr_t)63);
	r->coro.asan_fake = NULL;
	r->coro.parent = NULL;
	r->coro.dead = false;
	r->coro.stack = st;
	r->coro.lo = st.lo;
	r->coro.size = (size_t)((char *)r - (char *)st.lo);
	r->job = NULL;
	r->next = NULL;
	aw_ctx_init(&r->coro.ctx, r->coro.lo, r, runner_main, r);
	return r;
}

/* The context running now: the running task's, or the loop's own. */
static aw_coro *here(aw_loop *l)
{
	return l->running ? l->running->cur : &l->main;
}

/* End a parked runner (switch in with no job: it marks itself dead and
 * comes back, which lets ASan drop its fake stack) and free its stack. */
static void runner_end(aw_loop *l, aw_gen_runner *r)
{
	r->job = NULL;
	r->coro.parent = here(l);
	gen_switch(r->coro.parent, &r->coro);
	aw_stack st = r->coro.stack;
	aw_stack_put(l, &st);
}

/* A parked runner back to the free list, or ended if the list is full. */
static void runner_put(aw_loop *l, aw_gen_runner *r)
{
	if (l->gen_runners_len < GEN_RUNNERS_KEPT) {
		r->next = l->gen_runners;
		l->gen_runners = r;
		l->gen_runners_len++;
		return;
	}
	runner_end(l, r);
}

void aw__gen_runners_drain(aw_loop *l)
{
	while (l->gen_runners) {
		aw_gen_runner *r = l->gen_runners;
		l->gen_runners = r->next;
		l->gen_runners_len--;
		runner_end(l, r);
	}
}

/* Take a runner for g; the generator has not run yet. */
static int gen_start(aw_gen *g)
{
	aw_loop *l = aw__loop;
	if (AW_UNLIKELY(!l || !l->running))
		return aw_raise(-AW_ENOTASK, "generator manager '%s' entered outside of a task", g->name);
	aw_gen_runner *r = l->gen_runners;
	if (AW_LIKELY(r != NULL)) {
		l->gen_runners = r->next;
		l->gen_runners_len--;
	} else if (!(r = runner_new(l))) {
		return aw_raise(-ENOMEM, "cannot map a stack for generator '%s': %m", g->name);
	}
	r->job = g;
	g->coro = r;
	g->state = GEN_STARTED;
	return 0;
}

/* Run the generator until it yields or returns. */
static inline __attribute__((always_inline)) void gen_resume(aw_gen *g, int to_gen)
{
	aw_task *t = aw__loop->running;
	aw_gen_runner *r = g->coro;
	aw_coro *from = t->cur;
	g->to_gen = to_gen;
	g->state = GEN_RUNNING;
	r->coro.parent = from;
	t->cur = &r->coro;
	gen_switch(from, &r->coro);
	/* Back here: the generator yielded or returned (a wait inside it
	 * suspended and resumed the task in between). */
	t->cur = from;
}

/* The generator has returned: its runner goes back to the free list. */
static void gen_release(aw_gen *g)
{
	aw_gen_runner *r = g->coro;
	if (!r)
		return;
	g->coro = NULL;
	runner_put(aw__loop, r);
}

int aw_gen_yield(aw_gen *g, void *value)
{
	aw_task *t = aw__current();
	aw_gen_runner *r = g ? g->coro : NULL;
	if (AW_UNLIKELY(!t || !r || t->cur != &r->coro || g->state != GEN_RUNNING))
		return aw_raise(-EINVAL, "aw_gen_yield called outside of its generator function");
	g->value = value;
	g->state = GEN_YIELDED;
	gen_switch(&r->coro, r->coro.parent);
	return g->to_gen;
}

/* Resume with `to_gen` until the generator returns; a generator that yields
 * again gets `again` from that yield. Returns whether it yielded again. */
static bool gen_finish(aw_gen *g, int to_gen, int again)
{
	bool yielded_again = false;
	gen_resume(g, to_gen);
	while (AW_UNLIKELY(g->state == GEN_YIELDED)) {
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
	/* A compound literal, not memset: a few stores inline, no call (one
	 * aw_gen per block). */
	*g = (aw_gen){ .mgr = { .ops = &gen_ops }, .fn = fn, .arg = arg,
		       .name = name ? name : "generator", .state = GEN_IDLE };
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
