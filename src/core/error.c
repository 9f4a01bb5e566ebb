/* SPDX-License-Identifier: MIT */
/*
 * The error model: functions return 0 or a negative code; the running task
 * keeps the rich error in flight (message, location, cause chain, group
 * members). Errors are reference counted because an exit that replaces an
 * error keeps the old one as the new one's cause while the block machinery
 * may still hold it.
 */
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* An error that could not be allocated: raising still works, the message
 * is generic. Shared by every thread, so never written: aw_error_hold and
 * aw_error_free leave its count alone and it is never freed. */
static aw_error oom_error = { .code = -ENOMEM, .msg = "out of memory (while raising an error)", .refs = 1u << 30 };

aw_error **aw__err_slot(uint64_t **raises)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	static __thread aw_error *no_loop_err;
	static __thread uint64_t no_loop_raises;
	if (t) {
		if (raises)
			*raises = &t->raises;
		return &t->err;
	}
	if (l) {
		if (raises)
			*raises = &l->thread_raises;
		return &l->thread_err;
	}
	if (raises)
		*raises = &no_loop_raises;
	return &no_loop_err;
}

static aw_error *error_vnew(const aw_loc *loc, int code, const char *fmt, va_list ap)
{
	aw_error *e = aw__calloc(1, sizeof *e);
	if (!e)
		return NULL;
	if (code >= 0)
		code = -EINVAL;
	e->code = code;
	e->loc = loc;
	e->refs = 1;
	if (aw__vasprintf(&e->msg, fmt, ap) < 0) {
		e->msg = NULL;
		free(e);
		return NULL;
	}
	return e;
}

aw_error *aw_error_new(const aw_loc *loc, int code, const char *fmt, ...)
{
	if (!fmt)
		return aw_error_new(loc, code, "%s", aw_strerror(code));
	va_list ap;
	va_start(ap, fmt);
	aw_error *e = error_vnew(loc, code, fmt, ap);
	va_end(ap);
	return e;
}

void aw_error_hold(aw_error *e)
{
	if (e && e != &oom_error)
		e->refs++;
}

void aw_error_free(aw_error *e)
{
	/* Iterative over the cause chain: long chains must not recurse. */
	while (e && e != &oom_error) {
		if (--e->refs > 0)
			return;
		aw_error *cause = e->cause;
		aw_error *m = e->members;
		while (m) {
			aw_error *next = m->next_member;
			m->next_member = NULL;
			aw_error_free(m);
			m = next;
		}
		free(e->msg);
		free(e);
		e = cause;
	}
}

/* Debug reports of dropped errors (aw_config.debug_errors): each raise
 * site is reported once per thread. Sites are static records (AW_HERE), so
 * their addresses identify them; errors made without a site are keyed by
 * their code. */
#define DROP_SITES 256
static __thread const void *drop_seen[DROP_SITES];
static __thread unsigned drop_seen_n;

static bool drop_first_time(const void *key)
{
	for (unsigned i = 0; i < drop_seen_n; i++)
		if (drop_seen[i] == key)
			return false;
	if (drop_seen_n < DROP_SITES)
		drop_seen[drop_seen_n++] = key;
	return true;
}

void aw__error_drop(aw_error *e)
{
	aw_loop *l = aw__loop;
	if (e && e != &oom_error && e->refs == 1 && !e->handled && l && l->cfg.debug_errors) {
		const void *key = e->loc ? (const void *)e->loc : (const void *)(intptr_t)e->code;
		if (drop_first_time(key)) {
			aw_task *t = l->running;
			if (e->loc)
				fprintf(l->cfg.log, "awith: error raised at %s:%d in %s was never handled (task '%s'): %s (%s)\n",
					e->loc->file, e->loc->line, e->loc->func, t ? t->name : "-", e->msg,
					aw_strerror(e->code));
			else
				fprintf(l->cfg.log, "awith: error was never handled (task '%s'): %s (%s)\n",
					t ? t->name : "-", e->msg, aw_strerror(e->code));
		}
	}
	aw_error_free(e);
}

void aw_error_raise_obj(aw_error *e)
{
	uint64_t *raises;
	aw_error **slot = aw__err_slot(&raises);
	if (!e)
		e = &oom_error;
	if (e != &oom_error) {
		e->serial = ++*raises;
		e->handled = false;
	}
	aw_error *old = *slot;
	*slot = e;
	/* The error it replaces was neither handled nor passed on. */
	aw__error_drop(old);
}

int (aw_raise)(int code, const char *fmt, ...)
{
	const aw_loc *loc = aw__where;   /* the caller's: AW__AT in core.h */
	if (code >= 0)
		code = -EINVAL;
	va_list ap;
	va_start(ap, fmt);
	aw_error *e = error_vnew(loc, code, fmt, ap);
	va_end(ap);
	if (!e) {
		/* Keep the code: the caller returns it, and the in-flight error
		 * must agree with the return value. */
		e = aw__calloc(1, sizeof *e);
		if (e) {
			e->code = code;
			e->refs = 1;
			e->loc = loc;
			e->msg = aw__strdup(aw_strerror(code));
			if (!e->msg) {
				free(e);
				e = NULL;
			}
		}
	}
	aw_error_raise_obj(e);
	return code;
}

void aw__error_restore(aw_error *e)
{
	aw_error **slot = aw__err_slot(NULL);
	aw__error_drop(*slot);
	*slot = e;   /* its serial unchanged: it was raised where it was */
}

int aw_error_pending(void)
{
	aw_error *e = *aw__err_slot(NULL);
	return e ? e->code : 0;
}

const aw_error *aw_error_current(void)
{
	return *aw__err_slot(NULL);
}

void aw_error_clear(void)
{
	aw_error **slot = aw__err_slot(NULL);
	aw_error *e = *slot;
	*slot = NULL;
	/* An exit holding it (or a cause of it) must not chain it again. */
	for (aw_error *c = e; c && c != &oom_error; c = c->cause)
		c->handled = true;
	aw_error_free(e);
}

bool aw_catch(int rc, int code)
{
	if (rc >= 0 || (code != 0 && rc != code))
		return false;
	if (aw_error_pending() == rc)
		aw_error_clear();
	return true;
}

aw_error *aw_error_take(void)
{
	aw_error **slot = aw__err_slot(NULL);
	aw_error *e = *slot;
	*slot = NULL;
	return e;
}

static const char *const aw_messages[] = {
	[AW_ENOTASK - AW_EBASE] = "called outside of a task",
	[AW_EGEN_NOYIELD - AW_EBASE] = "generator manager did not yield",
	[AW_EGEN_YIELDTWICE - AW_EBASE] = "generator manager yielded twice",
	[AW_ECLOSED - AW_EBASE] = "closed",
	[AW_EGROUP - AW_EBASE] = "tasks of a task group failed",
	[AW_EBUSY_WAIT - AW_EBASE] = "another task already waits on this",
	[AW_EEXIT - AW_EBASE] = "a manager's exit failed",
	[AW_EEOF - AW_EBASE] = "unexpected end of stream",
	[AW_ETOOLONG - AW_EBASE] = "size limit exceeded",
};

/* The ranges other layers and libraries registered (awith/ext.h). Written
 * under the lock, read without it: an entry is filled before `nranges`
 * counts it (release), and entries never change once counted. */
#define AW_MAX_RANGES 32
static struct {
	int base;
	const char *name;
	aw_strerror_fn *fn;
} ranges[AW_MAX_RANGES];
static _Atomic unsigned nranges;
static pthread_mutex_t ranges_lock = PTHREAD_MUTEX_INITIALIZER;

int aw_error_range_register(int base, const char *name, aw_strerror_fn *fn)
{
	if (!fn || !name || base % AW_ERANGE_SIZE != 0 || base <= AW_EBASE || base > 0x7fff)
		return -EINVAL;
	int rc = 0;
	pthread_mutex_lock(&ranges_lock);
	unsigned n = atomic_load_explicit(&nranges, memory_order_relaxed);
	for (unsigned i = 0; i < n; i++) {
		if (ranges[i].base == base) {
			rc = ranges[i].fn == fn ? 0 : -EEXIST;
			goto out;
		}
	}
	if (n == AW_MAX_RANGES) {
		rc = -ENOSPC;
		goto out;
	}
	ranges[n].base = base;
	ranges[n].name = name;
	ranges[n].fn = fn;
	atomic_store_explicit(&nranges, n + 1, memory_order_release);
out:
	pthread_mutex_unlock(&ranges_lock);
	return rc;
}

const char *aw_strerror(int code)
{
	if (code < 0)
		code = -code;
	if (code == 0)
		return "no error";
	if (code > AW_EBASE && code < AW_ELAST)
		return aw_messages[code - AW_EBASE];
	if (code < AW_EBASE) {
		const char *m = strerrordesc_np(code);
		return m ? m : "unknown error";
	}
	int base = code - code % AW_ERANGE_SIZE;
	unsigned n = atomic_load_explicit(&nranges, memory_order_acquire);
	for (unsigned i = 0; i < n; i++) {
		if (ranges[i].base != base)
			continue;
		const char *m = ranges[i].fn(code);
		return m ? m : "unknown error";
	}
	return "unknown error";
}

static void print_one(FILE *out, const aw_error *e, int depth)
{
	fprintf(out, "%*s%s (%s", depth * 2, "", e->msg, aw_strerror(e->code));
	if (e->loc)
		fprintf(out, ", at %s:%d in %s", e->loc->file, e->loc->line, e->loc->func);
	fprintf(out, ")\n");
}

static void print_error(FILE *out, const aw_error *e, int depth)
{
	for (; e; e = e->cause) {
		print_one(out, e, depth);
		int i = 1;
		for (const aw_error *m = e->members; m; m = m->next_member, i++) {
			fprintf(out, "%*s[%d of group]\n", depth * 2 + 2, "", i);
			print_error(out, m, depth + 2);
		}
		if (e->cause)
			fprintf(out, "%*sduring handling of:\n", depth * 2, "");
	}
}

void aw_error_print(FILE *out, const aw_error *e)
{
	if (!e) {
		fprintf(out, "no error\n");
		return;
	}
	print_error(out, e, 0);
}
