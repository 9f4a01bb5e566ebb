/* SPDX-License-Identifier: MIT */
/*
 * The ledger: what every task holds, and what was opened with a manual API
 * and not closed yet. The blocks a task is in are already a LIFO list on
 * its stack (aw_with.outer), so tracking them costs two stores per block;
 * manual resources are kept in a per-loop list of entries embedded in the
 * resource itself.
 */
#include "internal.h"

void aw_ledger_open(aw_ledger_entry *e, const char *what, const aw_loc *loc)
{
	aw_loop *l = aw__loop;
	e->what = what;
	e->loc = loc;
	e->owner = NULL;
	e->release = NULL;
	e->prev = NULL;
	e->next = NULL;
	e->task = NULL;
	e->since = 0;
	if (!l)
		return;   /* no loop: nothing to report to */
	e->task = l->running;
	e->since = aw_now();
	e->next = l->ledger;
	if (l->ledger)
		l->ledger->prev = e;
	l->ledger = e;
	l->ledger_len++;
}

void aw_ledger_close(aw_ledger_entry *e)
{
	aw_loop *l = aw__loop;
	if (!l || !e->what)
		return;
	if (e->prev)
		e->prev->next = e->next;
	else if (l->ledger == e)
		l->ledger = e->next;
	else
		return;   /* not linked (closed already) */
	if (e->next)
		e->next->prev = e->prev;
	e->prev = e->next = NULL;
	e->what = NULL;
	l->ledger_len--;
}

size_t aw_ledger_count(void)
{
	aw_loop *l = aw__loop;
	return l ? l->ledger_len : 0;
}

static const char *state_name(int s)
{
	switch (s) {
	case AW_TASK_READY: return "ready";
	case AW_TASK_RUNNING: return "running";
	case AW_TASK_PARKED: return "waiting";
	case AW_TASK_DONE: return "done";
	}
	return "?";
}

static void print_loc(FILE *out, const aw_loc *loc)
{
	if (loc)
		fprintf(out, "%s:%d (%s)", loc->file, loc->line, loc->func);
	else
		fprintf(out, "?");
}

static double ms_since(aw_time since, aw_time now) { return (double)(now - since) / 1e6; }

static void dump_task(FILE *out, aw_loop *l, aw_task *t, aw_time now)
{
	fprintf(out, "  task %llu '%s': %s", (unsigned long long)t->id, t->name, state_name(t->state));
	if (t->state == AW_TASK_PARKED || t->state == AW_TASK_READY) {
		fprintf(out, " at ");
		print_loc(out, t->where);
	}
	if (t->root.cancelled)
		fprintf(out, " [cancelled]");
	fprintf(out, "\n");
	for (aw_with *w = t->withs; w; w = w->outer) {
		for (unsigned i = 0; i < w->entered; i++) {
			aw_mgr *m = w->mgrs[i];
			fprintf(out, "    holds %s, entered at ", m->ops->name);
			print_loc(out, w->loc);
			fprintf(out, ", %.1f ms ago", ms_since(w->since, now));
			if (m->ops->describe) {
				char buf[128] = "";
				m->ops->describe(m, buf, sizeof buf);
				fprintf(out, " (%s)", buf);
			}
			fprintf(out, "\n");
		}
	}
	for (aw_ledger_entry *e = l->ledger; e; e = e->next) {
		if (e->task != t)
			continue;
		fprintf(out, "    opened %s at ", e->what);
		print_loc(out, e->loc);
		fprintf(out, ", %.1f ms ago (manual)\n", ms_since(e->since, now));
	}
}

void aw_dump(FILE *out)
{
	aw_loop *l = aw__loop;
	if (!l) {
		fprintf(out, "awith: no loop on this thread\n");
		return;
	}
	aw_time now = aw_now();
	fprintf(out, "awith: %zu live task(s), %zu open manual resource(s)\n", l->ntasks, l->ledger_len);
	for (aw_task *t = l->all; t; t = t->all_next)
		dump_task(out, l, t, now);
	bool header = false;
	for (aw_ledger_entry *e = l->ledger; e; e = e->next) {
		bool live = false;
		for (aw_task *t = l->all; t; t = t->all_next)
			live |= e->task == t;
		if (live)
			continue;
		if (!header)
			fprintf(out, "  not owned by a live task:\n");
		header = true;
		fprintf(out, "    opened %s at ", e->what);
		print_loc(out, e->loc);
		fprintf(out, ", %.1f ms ago\n", ms_since(e->since, now));
	}
	fflush(out);
}

void aw_ledger_report_leaks(aw_loop *l)
{
	aw_time now = aw_now();
	aw_ledger_entry *e = l->ledger;
	l->ledger = NULL;
	l->ledger_len = 0;
	while (e) {
		aw_ledger_entry *next = e->next;
		fprintf(l->cfg.log, "awith: leak: %s opened at ", e->what);
		print_loc(l->cfg.log, e->loc);
		fprintf(l->cfg.log, " %.1f ms ago was never closed\n", ms_since(e->since, now));
		/* The entries live in memory we do not own: unlink, and let the
		 * owner release what it allocated for the ledger. */
		e->prev = e->next = NULL;
		if (e->release)
			e->release(e);
		e = next;
	}
	fflush(l->cfg.log);
}
