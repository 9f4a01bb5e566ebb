/* SPDX-License-Identifier: MIT */
/*
 * Tasks: spawning, the switch between them, parking and waking, joining,
 * cancelling, sleeping and yielding.
 *
 * A task is one guarded stack mapping with its aw_task record at the top
 * (see stack.c), so spawning from the stack cache allocates nothing else.
 * When a task waits, it switches directly to the next ready task while the
 * loop's per-iteration budget lasts, and to the loop otherwise: a ping-pong
 * between two tasks costs one context switch per hand-over, while the loop
 * still polls for I/O at least every `budget` switches.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if AW_ASAN
#include <sanitizer/asan_interface.h>
#endif

__thread aw_loop *aw__loop __attribute__((tls_model("initial-exec")));
__thread const aw_loc *aw__where __attribute__((tls_model("initial-exec")));
__thread aw__task_hot *aw__hot __attribute__((tls_model("initial-exec")));

/* ---- switching ------------------------------------------------------------ */

static void reap(aw_loop *l)
{
	aw_task *z = l->zombie;
	if (z) {
		l->zombie = NULL;
		aw_task_free(l, z);
	}
}

#if AW_ASAN
static __thread aw_coro *switch_from;
static void after_switch(aw_loop *l, void *fake)
{
	const void *bottom;
	size_t size;
	__sanitizer_finish_switch_fiber(fake, &bottom, &size);
	/* The first switch out of the thread's own stack tells us its bounds. */
	if (switch_from == &l->main && !l->main.lo) {
		l->main.lo = (void *)bottom;
		l->main.size = size;
	}
}
#endif

static inline __attribute__((always_inline)) void coro_switch(aw_loop *l, aw_coro *from, aw_coro *to)
{
	atomic_store_explicit(&l->switches, atomic_load_explicit(&l->switches, memory_order_relaxed) + 1,
			      memory_order_relaxed);
#if AW_ASAN
	switch_from = from;
	__sanitizer_start_switch_fiber(from->dead ? NULL : &from->asan_fake, to->lo, to->size);
	aw_ctx_switch(&from->ctx, &to->ctx);
	after_switch(l, from->asan_fake);
#else
	aw_ctx_switch(&from->ctx, &to->ctx);
#endif
	if (AW_UNLIKELY(l->zombie != NULL))
		reap(l);
}

void aw_coro_switch(aw_coro *from, aw_coro *to)
{
	coro_switch(aw__loop, from, to);
}

void aw_coro_started(aw_loop *l)
{
#if AW_ASAN
	after_switch(l, NULL);
#endif
	if (l->zombie)
		reap(l);
}

/* Leave the running task (already marked parked/done/ready): run the next
 * ready task directly if the budget allows, else return to the loop. */
static void switch_away(aw_loop *l, aw_task *self)
{
	aw_coro *from = self->cur;
	aw_task *next = NULL;
	if (l->budget && l->ready_head) {
		next = l->ready_head;
		l->ready_head = next->next_ready;
		if (!l->ready_head)
			l->ready_tail = NULL;
		next->next_ready = NULL;
		l->budget--;
	}
	if (next == self) {
		self->state = AW_TASK_RUNNING;
		return;
	}
	if (next) {
		next->state = AW_TASK_RUNNING;
		l->running = next;
		aw__hot = &next->hot;
		coro_switch(l, from, next->cur);
	} else {
		l->running = NULL;
		aw__hot = NULL;
		coro_switch(l, from, &l->main);
	}
	/* Whoever resumed us set l->running = self. */
}

static inline __attribute__((always_inline)) void enqueue(aw_loop *l, aw_task *t)
{
	t->state = AW_TASK_READY;
	t->next_ready = NULL;
	if (l->ready_tail)
		l->ready_tail->next_ready = t;
	else
		l->ready_head = t;
	l->ready_tail = t;
}

void aw_task_enqueue(aw_loop *l, aw_task *t)
{
	enqueue(l, t);
}

void aw_task_wake(aw_task *t, int value)
{
	if (t->state == AW_TASK_READY && (t->wake == AW__WAKE_CANCEL || t->wake == AW_WAKE_TIMER)) {
		/* Woken by a cancel or a deadline and not yet running, then
		 * handed something (a lock, an item, a finished job): the hand-
		 * over wins, or it would be lost. The cancellation is not lost
		 * either: it is level-triggered and shows at the next wait. */
		t->wake = value;
		return;
	}
	if (t->state != AW_TASK_PARKED)
		return;
	t->wake = value;
	aw_task_enqueue(t->loop, t);
}

static void on_park_timer(aw_timer *tm)
{
	aw_task *t = AW_CONTAINER_OF(tm, aw_task, timer);
	aw_task_wake(t, AW_WAKE_TIMER);
}

/* ---- parking -------------------------------------------------------------- */

/* The earliest grace deadline of the running cleanups (exits), setting each
 * one's deadline when the exit first waits. */
static aw_time cleanup_grace(aw_task *t)
{
	aw_time g = AW_NEVER;
	for (aw_with *w = t->cleanup; w; w = w->cleanup_outer) {
		if (!w->grace_deadline) {
			/* Starts now, by the clock: the loop's cached `now` may
			 * be a whole step old, which would eat into the grace. */
			aw_time gr = t->loop->cfg.grace;
			aw_time start = aw_now();
			w->grace_deadline = gr >= AW_NEVER - start ? AW_NEVER : start + gr;
		}
		if (w->grace_deadline < g)
			g = w->grace_deadline;
	}
	return g;
}

int aw__raise_cancel(aw_task *t, int code, aw_scope *origin)
{
	aw_error *e;
	if (origin == &t->root)
		e = aw_error_new(t->where, code, "task '%s' was cancelled", t->name);
	else if (origin && code == -ETIMEDOUT)
		e = aw_error_new(t->where, code, "timed out (deadline of the timeout scope passed)");
	else if (origin)
		e = aw_error_new(t->where, code, "cancelled by an enclosing scope");
	else
		e = aw_error_new(t->where, code, "cleanup grace period (%lld ms) expired while an exit waited",
				 (long long)(t->loop->cfg.grace / AW_MS(1)));
	if (e)
		e->origin = origin;
	aw_error_raise_obj(e);
	return code;
}

/* The cancellation (if any) the running task's waits get now, grace
 * included. Returns 0 or a raised cancel code; *deadline gets the earliest
 * deadline still ahead. */
static int pending(aw_task *t, aw_time now, aw_time *deadline)
{
	if (AW_LIKELY(t->scope == &t->root && !t->root.cancelled && !t->cleanup)) {
		*deadline = AW_NEVER;   /* no scope, no cleanup: nothing to check */
		return 0;
	}
	aw_scope *origin = NULL;
	int code = aw_scope_pending_cancel(t, now, &origin, deadline);
	if (code)
		return aw__raise_cancel(t, code, origin);
	if (t->cleanup) {
		aw_time g = cleanup_grace(t);
		if (g <= now)
			return aw__raise_cancel(t, -ETIMEDOUT, NULL);
		if (g < *deadline)
			*deadline = g;
	}
	return 0;
}

int aw_task_park(aw_time deadline, bool shielded)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "a waiting call was made outside of a task");
	if (AW_UNLIKELY(atomic_load_explicit(&l->slow_flag, memory_order_relaxed)))
		aw_watchdog_report(l, t, aw__where);
	t->where = aw__where;
	t->parked_at = l->now;   /* one store: the cached loop time is exact
	                            enough for "waiting for 3.2 s" */
	for (;;) {
		aw_time eff = AW_NEVER;
		if (!shielded) {
			int c = pending(t, l->now, &eff);
			if (c)
				return c;
		}
		if (deadline < eff)
			eff = deadline;
		if (eff != AW_NEVER && aw_timer_arm(&l->timers, &t->timer, eff) != 0)
			return aw_raise(-ENOMEM, "cannot arm a timer");
		t->wake = 0;
		t->park_deadline = deadline;
		t->park_shielded = shielded;
		t->state = AW_TASK_PARKED;
		l->nparked++;
		switch_away(l, t);
		l->nparked--;
		if (aw_timer_armed(&t->timer))
			aw_timer_disarm(&l->timers, &t->timer);
		l->slow_resumed_at = t->where;
		/* aw__where is per thread: other tasks moved it while we
		 * waited. Restore ours, so that a second park inside the same
		 * call (a re-wait, cond_wait's re-acquire) reports this task's
		 * own location, not theirs. */
		aw__where = t->where;
		int v = t->wake;
		if (v == AW_WAKE_TIMER) {
			aw_time now = aw_now();
			l->now = now;
			if (deadline != AW_NEVER && now >= deadline)
				return AW_WAKE_TIMER;
			v = AW__WAKE_CANCEL;
		}
		if (v != AW__WAKE_CANCEL)
			return v;
		if (!shielded) {
			int c = pending(t, aw_now(), &eff);
			if (c)
				return c;
		}
		/* The scope that woke us is gone (left or un-cancelled): the
		 * waiter's registration is still in place; wait again. */
	}
}

/* ---- scheduling primitives ------------------------------------------------ */

int (aw_yield)(void)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_yield outside of a task");
	aw_time next;
	int c = pending(t, l->now, &next);
	if (!c && next != AW_NEVER) {
		/* A deadline ahead of the loop's cached time may have passed by
		 * the clock (the cache is as old as the last loop step): a yield
		 * never arms a timer that would notice, so read the clock. Only
		 * tasks inside a deadline pay for it. */
		aw_time now = aw_now();
		if (next <= now) {
			l->now = now;
			c = pending(t, now, &next);
		}
	}
	if (c)
		return c;
	if (AW_UNLIKELY(atomic_load_explicit(&l->slow_flag, memory_order_relaxed)))
		aw_watchdog_report(l, t, aw__where);
	t->where = aw__where;
	enqueue(l, t);
	switch_away(l, t);
	l->slow_resumed_at = t->where;
	aw__where = t->where;   /* ours again (see aw_task_park) */
	return 0;
}

int (aw_sleep_until)(aw_time deadline)
{
	int v = aw_task_park(deadline, false);
	return v == AW_WAKE_TIMER ? 0 : v < 0 ? v : 0;
}

int (aw_sleep)(aw_time dur)
{
	if (dur <= 0)
		return (aw_yield)();
	return (aw_sleep_until)(aw_deadline_after(dur));
}

/* ---- spawning ------------------------------------------------------------- */

static void task_finish(aw_task *t, int rc) __attribute__((noreturn));

static void task_entry(void *arg)
{
	aw_task *t = arg;
	aw_coro_started(t->loop);
	t->loop->slow_resumed_at = NULL;   /* a fresh task resumed nowhere */
	int rc = t->fn(t->arg);
	task_finish(t, rc);
}

static void task_finish(aw_task *t, int rc)
{
	aw_loop *l = t->loop;
	if (AW_UNLIKELY(atomic_load_explicit(&l->slow_flag, memory_order_relaxed)))
		aw_watchdog_report(l, t, NULL);
	t->result = rc;
	if (rc < 0) {
		if (!t->err || t->err->code != rc)
			(void)!aw_raise(rc, "task '%s' failed: %s", t->name, aw_strerror(rc));
	} else if (t->err) {
		/* Returned success with an error in flight: it was dropped. */
		aw__error_drop(t->err);
		t->err = NULL;
	}
	aw__log_context_free(&t->logctx);
	t->state = AW_TASK_DONE;
	t->where = NULL;
	l->ntasks--;
	if (t->group)
		aw__group_child_done(t);   /* takes the error, detaches t */
	if (t->joiner)
		aw_task_wake(t->joiner, 0);
	t->coro.dead = true;
	if (t->detached)
		l->zombie = t;       /* freed by whoever runs next */
	switch_away(l, t);
	__builtin_unreachable();
}

/* The task's name: a copy of `name` (truncated), or "task-<id>". By hand:
 * snprintf here was a third of the cost of a spawn. */
static void set_name(aw_task *t, const char *name)
{
	size_t i = 0;
	if (name) {
		for (; i < sizeof t->name - 1 && name[i]; i++)
			t->name[i] = name[i];
		t->name[i] = 0;
		return;
	}
	char digits[24];
	size_t n = 0;
	uint64_t id = t->id;
	do {
		digits[n++] = (char)('0' + id % 10);
		id /= 10;
	} while (id);
	memcpy(t->name, "task-", 5);
	i = 5;
	while (n && i < sizeof t->name - 1)
		t->name[i++] = digits[--n];
	t->name[i] = 0;
}

int aw_spawn_with(aw_task **out, aw_task_fn fn, void *arg, const aw_spawn_opts *opts)
{
	aw_loop *l = aw__loop;
	if (out)
		*out = NULL;
	if (!l)
		return aw_raise(-AW_ENOTASK, "aw_spawn outside of a running loop");
	if (!fn)
		return aw_raise(-EINVAL, "aw_spawn: no function");
	size_t size = opts && opts->stack_size ? opts->stack_size : l->cfg.stack_size;
	if (size < 16 * 1024)
		size = 16 * 1024;
	aw_stack stack;
	void *top = aw_stack_get(l, size, &stack);
	if (!top)
		return aw_raise(-ENOMEM,
				"cannot map a %zu KiB task stack (%m); with many tasks, "
				"raise vm.max_map_count (each stack is two mappings)", size / 1024);
	uintptr_t tp = ((uintptr_t)top - sizeof(aw_task)) & ~(uintptr_t)63;
	aw_task *t = (aw_task *)tp;
	memset(t, 0, sizeof *t);
	t->coro.stack = stack;
	/* Usable range: from just above the guard page up to the task record. */
	t->coro.lo = stack.lo;
	t->coro.size = (size_t)((char *)t - (char *)t->coro.lo);
	aw_ctx_init(&t->coro.ctx, t->coro.lo, (void *)t, task_entry, t);
	t->cur = &t->coro;
	t->loop = l;
	t->fn = fn;
	t->arg = arg;
	t->id = ++l->next_id;
	set_name(t, opts ? opts->name : NULL);
	aw_timer_init(&t->timer, on_park_timer);
	t->root.deadline = AW_NEVER;
	t->root.outer_limit = AW_NEVER;
	t->root.code = -ECANCELED;
	t->root.task = t;
	t->scope = &t->root;
	t->limit = AW_NEVER;
	t->now = &l->now;
	t->self = t;
	t->detached = out == NULL;
	if (l->running && l->running->trace)
		aw__trace_inherit(t, l->running);
	t->all_next = l->all;
	if (l->all)
		l->all->all_prev = t;
	l->all = t;
	l->ntasks++;
	aw_task_enqueue(l, t);
	if (out)
		*out = t;
	return 0;
}

int aw_spawn(aw_task **out, aw_task_fn fn, void *arg, const char *name)
{
	aw_spawn_opts o = { .name = name };
	return aw_spawn_with(out, fn, arg, &o);
}

void aw_task_free(aw_loop *l, aw_task *t)
{
	if (t->all_prev)
		t->all_prev->all_next = t->all_next;
	else
		l->all = t->all_next;
	if (t->all_next)
		t->all_next->all_prev = t->all_prev;
	aw_error_free(t->err);
	t->err = NULL;
	aw__trace_release(t);
	aw__log_context_free(&t->logctx);
	aw_stack stack = t->coro.stack;
	aw_stack_put(l, &stack);
}

int (aw_task_join)(aw_task *t)
{
	aw_loop *l = aw__loop;
	aw_task *self = l ? l->running : NULL;
	if (!t)
		return aw_raise(-EINVAL, "aw_task_join: no task");
	if (t == self)
		return aw_raise(-EDEADLK, "task '%s' cannot join itself", t->name);
	if (t->detached || t->joiner)
		return aw_raise(-EINVAL, "task '%s' is detached or already being joined", t->name);
	while (t->state != AW_TASK_DONE) {
		t->joiner = self;
		int v = aw_task_park(AW_NEVER, false);
		t->joiner = NULL;
		if (v < 0 && t->state != AW_TASK_DONE)
			return v;
	}
	int rc = t->result;
	if (rc < 0 && t->err) {
		aw_error *e = t->err;
		t->err = NULL;
		aw_error_raise_obj(e);
	}
	aw_task_free(l, t);
	return rc;
}

void aw_task_detach(aw_task *t)
{
	if (!t || t->detached)
		return;
	if (t->state == AW_TASK_DONE) {
		aw_task_free(t->loop, t);
		return;
	}
	t->detached = true;
}

void aw_task_cancel(aw_task *t)
{
	if (!t || t->state == AW_TASK_DONE)
		return;
	aw__scope_mark(&t->root, -ECANCELED);
	if (t->waiting_group)
		aw__group_outer_cancel(t->waiting_group, &t->root);
	aw_scope_poke(t);
}

aw_task *aw_task_current(void) { return aw__current(); }
const char *aw_task_name(const aw_task *t) { return t ? t->name : "(none)"; }
uint64_t aw_task_id(const aw_task *t) { return t ? t->id : 0; }

void aw_task_set_name(aw_task *t, const char *name)
{
	if (!t || !name || !*name)
		return;
	aw_loop *l = t->loop;
	/* Renamed in the middle of a step the watchdog flagged as slow (the
	 * http layer names a handler's task after its request and renames it
	 * when the handler returns): the report, made at the next wait, names
	 * the step by what the task was called while it ran. */
	if (l && l->running == t && !l->slow_name[0] &&
	    atomic_load_explicit(&l->slow_flag, memory_order_relaxed))
		snprintf(l->slow_name, sizeof l->slow_name, "%s", t->name);
	snprintf(t->name, sizeof t->name, "%s", name);
}
bool aw_task_done(const aw_task *t) { return t && t->state == AW_TASK_DONE; }
