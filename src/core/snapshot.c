/* SPDX-License-Identifier: MIT */
/*
 * The ledger as data: aw_ledger_visit walks what aw_dump prints (tasks,
 * where they wait, what they hold), plus the loop's gauges, the recent slow
 * steps and deadlock reports, and the registered gauge sources, handing
 * each item to a callback. Everything happens on the loop's thread in one
 * call and the callbacks may not wait, so the picture is consistent: no
 * task runs between two callbacks. Formatting (JSON for the http layer's
 * debug page) is the caller's business: the core stays libc-only.
 */
#include "internal.h"

#include <string.h>
#include <unistd.h>

static const char *state_name(int s)
{
	switch (s) {
	case AW_TASK_READY: return "ready";
	case AW_TASK_RUNNING: return "running";
	case AW_TASK_PARKED: return "waiting";
	}
	return "done";
}

void aw_loop_event_record(aw_loop *l, int kind, aw_time duration, const char *task,
			  const aw_loc *resumed_at, const aw_loc *waits_at, const char *text)
{
	struct aw_loop_event_rec *r = &l->events[l->events_next % AW_LOOP_EVENTS];
	l->events_next++;
	if (kind == AW_LOOP_EVENT_SLOW_STEP)
		l->slow_steps++;
	r->kind = kind;
	r->at = aw_now();
	r->duration = duration;
	snprintf(r->task, sizeof r->task, "%s", task ? task : "");
	r->resumed_at = resumed_at;
	r->waits_at = waits_at;
	snprintf(r->text, sizeof r->text, "%s", text ? text : "");
}

static void task_info(aw_task_info *ti, const aw_task *t, aw_time now)
{
	ti->id = t->id;
	ti->name = t->name;
	ti->state = state_name(t->state);
	ti->where = t->where;
	ti->waiting = t->state == AW_TASK_PARKED && now > t->parked_at ? now - t->parked_at : 0;
	ti->cancelled = t->root.cancelled;
}

static bool task_live(const aw_loop *l, const aw_task *t)
{
	for (const aw_task *u = l->all; u; u = u->all_next)
		if (u == t)
			return true;
	return false;
}

static void manual_hold(const aw_ledger_visitor *v, const aw_task_info *ti, const aw_ledger_entry *e,
			aw_time now)
{
	aw_hold_info h = {
		.what = e->what,
		.loc = e->loc,
		.age = now > e->since ? now - e->since : 0,
		.detail = "",
		.manual = true,
	};
	v->hold(v->ctx, ti, &h);
}

/* Binds a gauge source's name to each gauge it emits. */
struct emit_ctx {
	const aw_ledger_visitor *v;
	unsigned index;
	const char *source;
};
static void emit_gauge(void *ctx, const char *name, double value)
{
	struct emit_ctx *ec = ctx;
	ec->v->gauge(ec->v->ctx, ec->index, ec->source, name, value);
}

int aw_ledger_visit(const aw_ledger_visitor *v)
{
	aw_loop *l = aw__loop;
	if (!l)
		return -ESRCH;
	aw_time now = aw_now();
	if (v->loop) {
		aw_loop_gauges g = {
			.tasks = l->ntasks,
			.manual = l->ledger_len,
			.switches = atomic_load_explicit(&l->switches, memory_order_relaxed),
			.slow_steps = l->slow_steps,
			.thread_jobs = aw_threadpool_inflight(l),
			.pid = (int)getpid(),
		};
		for (aw_task *t = l->all; t; t = t->all_next) {
			if (t->state == AW_TASK_RUNNING)
				g.running++;
			else if (t->state == AW_TASK_READY)
				g.ready++;
			else if (t->state == AW_TASK_PARKED)
				g.waiting++;
		}
		v->loop(v->ctx, &g);
	}
	for (aw_task *t = l->all; t; t = t->all_next) {
		aw_task_info ti;
		task_info(&ti, t, now);
		if (v->task)
			v->task(v->ctx, &ti);
		if (!v->hold)
			continue;
		for (aw_with *w = t->withs; w; w = w->outer) {
			for (unsigned i = 0; i < w->entered; i++) {
				aw_mgr *m = w->mgrs[i];
				char buf[128] = "";
				if (m->ops->describe)
					m->ops->describe(m, buf, sizeof buf);
				aw_hold_info h = {
					.what = m->ops->name ? m->ops->name : "?",
					.loc = w->loc,
					.age = now > w->since ? now - w->since : 0,
					.detail = buf,
					.manual = false,
				};
				v->hold(v->ctx, &ti, &h);
			}
		}
		for (aw_ledger_entry *e = l->ledger; e; e = e->next)
			if (e->task == t)
				manual_hold(v, &ti, e, now);
	}
	if (v->hold)
		for (aw_ledger_entry *e = l->ledger; e; e = e->next)
			if (!e->task || !task_live(l, e->task))
				manual_hold(v, NULL, e, now);
	if (v->event) {
		unsigned n = l->events_next < AW_LOOP_EVENTS ? l->events_next : AW_LOOP_EVENTS;
		for (unsigned i = 0; i < n; i++) {
			const struct aw_loop_event_rec *r = &l->events[(l->events_next - n + i) % AW_LOOP_EVENTS];
			aw_loop_event e = {
				.kind = r->kind,
				.ago = now > r->at ? now - r->at : 0,
				.duration = r->duration,
				.task = r->task,
				.resumed_at = r->resumed_at,
				.waits_at = r->waits_at,
				.text = r->text,
			};
			v->event(v->ctx, &e);
		}
	}
	unsigned index = 0;
	if (v->gauge)
		for (aw_gauge_source *s = l->gauges; s; s = s->next) {
			struct emit_ctx ec = { v, index++, s->name };
			s->read(s, emit_gauge, &ec);
		}
	return 0;
}

void aw_gauge_source_add(aw_gauge_source *s)
{
	aw_loop *l = aw__loop;
	if (!l || s->added)
		return;
	s->prev = NULL;
	s->next = l->gauges;
	if (l->gauges)
		l->gauges->prev = s;
	l->gauges = s;
	s->added = true;
}

void aw_gauge_source_remove(aw_gauge_source *s)
{
	aw_loop *l = aw__loop;
	if (!l || !s->added)
		return;
	if (s->prev)
		s->prev->next = s->next;
	else
		l->gauges = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->added = false;
}
