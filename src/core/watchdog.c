/* SPDX-License-Identifier: MIT */
/*
 * The slow-step watchdog (asyncio's slow-callback warning, for stackful
 * tasks): report a task that runs too long without waiting, because while
 * it runs, nothing else on its loop does.
 *
 * A sampling thread, so that the loop thread pays nothing but the switch
 * counter it keeps anyway: every slow_step/4 the watchdog reads
 * loop->switches and loop->in_poll. A counter that has not moved for
 * slow_step while the loop is not blocked in poll means one step is stuck;
 * the watchdog then raises loop->slow_flag, once per stuck step. The loop
 * thread checks the flag when the task next waits (aw_task_park) and calls
 * aw_watchdog_report, which prints the line and lowers the flag. The
 * watchdog never reads anything but atomics: `running`, tasks and locations
 * belong to the loop thread.
 *
 * Timing is sampled, so the reported time is a lower bound: the step began
 * at most one tick before the watchdog first saw it.
 *
 * The watchdog's own state lives on the heap, found by the loop thread
 * through a thread-local pointer (start, report and stop all run on the
 * loop's thread; one loop per thread), so struct aw_loop needs no more than
 * its atomics.
 */
#include "internal.h"
#include "awith/metrics.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#define TICK_MIN AW_US(100)   /* bound the sampling rate for tiny slow_steps */

typedef struct aw_watchdog {
	aw_loop *loop;
	pthread_mutex_t mu;      /* with cv: sleep between samples, wake on stop */
	pthread_cond_t cv;       /* on CLOCK_MONOTONIC */
	aw_time step, tick;
	/* Published with slow_flag, read by the report. */
	_Atomic aw_time since;   /* when the stuck step was first seen */
	_Atomic uint64_t mark;   /* the switch count during that step */
	_Atomic aw_time stuck;   /* how long it has been seen stuck so far */
	/* Watchdog thread only. */
	uint64_t last;           /* switch count at the previous sample */
	aw_time last_change;     /* when `last` was first seen */
	bool flagged;            /* this stuck step was flagged already */
} aw_watchdog;

static __thread aw_watchdog *tls_wd;

/* An absolute aw_time as a timespec for pthread_cond_timedwait. */
static struct timespec ts_of(aw_time t)
{
	struct timespec ts = { .tv_sec = t / 1000000000, .tv_nsec = t % 1000000000 };
	return ts;
}

/* One sample (watchdog thread). A moved counter or a loop in poll starts a
 * new step; a step seen unchanged for slow_step is flagged once. If the
 * previous report is still pending (the flag is up: the loop never got to a
 * wait), it stays the one to report. */
static void watchdog_sample(aw_watchdog *wd)
{
	aw_loop *loop = wd->loop;
	uint64_t s = atomic_load_explicit(&loop->switches, memory_order_relaxed);
	int polling = atomic_load_explicit(&loop->in_poll, memory_order_relaxed);
	aw_time now = aw_now();
	if (s != wd->last || polling) {
		wd->last = s;
		wd->last_change = now;
		wd->flagged = false;
		return;
	}
	aw_time ran = now - wd->last_change;
	if (wd->flagged) {
		if (atomic_load_explicit(&wd->mark, memory_order_relaxed) == s)
			atomic_store_explicit(&wd->stuck, ran, memory_order_relaxed);
		return;
	}
	if (ran < wd->step)
		return;
	wd->flagged = true;
	if (atomic_load_explicit(&loop->slow_flag, memory_order_acquire))
		return;
	atomic_store_explicit(&wd->since, wd->last_change, memory_order_relaxed);
	atomic_store_explicit(&wd->mark, s, memory_order_relaxed);
	atomic_store_explicit(&wd->stuck, ran, memory_order_relaxed);
	/* Release: the report that sees the flag sees the three above. */
	atomic_store_explicit(&loop->slow_flag, 1, memory_order_release);
}

/* The watchdog thread: sample every tick until told to stop. It sleeps on a
 * condition variable rather than in clock_nanosleep so that stop wakes it at
 * once. All signals are blocked (by aw_watchdog_start, before creating it). */
static void *watchdog_main(void *arg)
{
	aw_watchdog *wd = arg;
	aw_loop *loop = wd->loop;
	wd->last = atomic_load_explicit(&loop->switches, memory_order_relaxed);
	wd->last_change = aw_now();
	aw_time next = wd->last_change + wd->tick;
	pthread_mutex_lock(&wd->mu);
	while (!atomic_load_explicit(&loop->watchdog_stop, memory_order_relaxed)) {
		struct timespec ts = ts_of(next);
		int rc = pthread_cond_timedwait(&wd->cv, &wd->mu, &ts);
		if (rc != ETIMEDOUT)
			continue;   /* stop, or a spurious wake before the tick */
		watchdog_sample(wd);
		next += wd->tick;
		aw_time now = aw_now();
		if (next <= now)
			/* We were not scheduled for a while (a loaded machine,
			 * a suspend): resume the rhythm, do not burst. */
			next = now + wd->tick;
	}
	pthread_mutex_unlock(&wd->mu);
	return NULL;
}

/* Loop thread, at loop start: start the watchdog thread if cfg.slow_step >
 * 0. Returns 0 (also when disabled or already running) or a negative errno
 * (-ENOMEM, -EAGAIN ...), not raised: the loop runs fine without it. */
int aw_watchdog_start(aw_loop *loop)
{
	if (loop->cfg.slow_step <= 0 || loop->watchdog_running)
		return 0;
	aw_watchdog *wd = aw__calloc(1, sizeof *wd);
	if (!wd)
		return -ENOMEM;
	wd->loop = loop;
	wd->step = loop->cfg.slow_step;
	wd->tick = wd->step / 4 > TICK_MIN ? wd->step / 4 : TICK_MIN;

	pthread_condattr_t ca;
	int err = pthread_condattr_init(&ca);
	if (err)
		goto fail_free;
	err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (!err)
		err = pthread_cond_init(&wd->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto fail_free;
	err = pthread_mutex_init(&wd->mu, NULL);
	if (err)
		goto fail_cond;

	atomic_store_explicit(&loop->watchdog_stop, 0, memory_order_relaxed);
	atomic_store_explicit(&loop->slow_flag, 0, memory_order_relaxed);
	/* Block every signal while creating it, so the thread starts with
	 * them blocked: signals stay with the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&loop->watchdog, NULL, watchdog_main, wd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto fail_mutex;
	loop->watchdog_running = true;
	tls_wd = wd;
	return 0;

fail_mutex:
	pthread_mutex_destroy(&wd->mu);
fail_cond:
	pthread_cond_destroy(&wd->cv);
fail_free:
	free(wd);
	return -err;
}

/* Loop thread, at loop end: stop and join the watchdog thread (at once: it
 * is woken from its sleep), free its state, lower a pending flag. A no-op
 * when it is not running. */
void aw_watchdog_stop(aw_loop *loop)
{
	if (!loop->watchdog_running)
		return;
	aw_watchdog *wd = tls_wd;
	/* Set under the mutex: the thread checks it under the mutex before
	 * each sleep, so the signal cannot fall between check and sleep. */
	pthread_mutex_lock(&wd->mu);
	atomic_store_explicit(&loop->watchdog_stop, 1, memory_order_relaxed);
	pthread_cond_signal(&wd->cv);
	pthread_mutex_unlock(&wd->mu);
	pthread_join(loop->watchdog, NULL);
	loop->watchdog_running = false;
	tls_wd = NULL;
	pthread_mutex_destroy(&wd->mu);
	pthread_cond_destroy(&wd->cv);
	free(wd);
	atomic_store_explicit(&loop->slow_flag, 0, memory_order_relaxed);
}

/* Append "file:line" (with " in func" if with_func) of loc, or "?", to
 * buf at *n (truncating at len). */
static void put_loc(char *buf, size_t len, size_t *n, const aw_loc *loc, bool with_func)
{
	if (*n >= len)
		return;
	int k;
	if (!loc || !loc->file)
		k = snprintf(buf + *n, len - *n, "?");
	else if (with_func)
		k = snprintf(buf + *n, len - *n, "%s:%d in %s", loc->file, loc->line, loc->func ? loc->func : "?");
	else
		k = snprintf(buf + *n, len - *n, "%s:%d", loc->file, loc->line);
	if (k > 0)
		*n += (size_t)k;
}

/* Append printf-style text to buf at *n (truncating at len). */
static void put(char *buf, size_t len, size_t *n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t len, size_t *n, const char *fmt, ...)
{
	if (*n >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(buf + *n, len - *n, fmt, ap);
	va_end(ap);
	if (k > 0)
		*n += (size_t)k;
}

/* Loop thread, when slow_flag is up and task t, which was running, is about
 * to wait at suspended_at (may be NULL). Must be called before the switch
 * counter is bumped for that wait, as aw_task_park does: the counter is how
 * the report checks that the flagged step is t's. If it is not (the slow
 * step ended in a yield, a task's return or loop code, which do not report),
 * the line says so instead of blaming t. Prints one line to cfg.log and
 * lowers the flag. */
void aw_watchdog_report(aw_loop *loop, aw_task *t, const aw_loc *suspended_at)
{
	if (!atomic_load_explicit(&loop->slow_flag, memory_order_acquire))
		return;
	aw_watchdog *wd = tls_wd;
	if (wd && wd->loop == loop) {
		FILE *out = loop->cfg.log ? loop->cfg.log : stderr;
		uint64_t mark = atomic_load_explicit(&wd->mark, memory_order_relaxed);
		uint64_t now_sw = atomic_load_explicit(&loop->switches, memory_order_relaxed);
		/* One line, kept for aw_ledger_visit as well as printed. */
		char line[512];
		size_t n = 0;
		aw_time ran;
		const char *name = t ? (loop->slow_name[0] ? loop->slow_name : t->name) : "";
		if (t && now_sw == mark) {
			aw_time since = atomic_load_explicit(&wd->since, memory_order_relaxed);
			ran = aw_now() - since;
			put(line, sizeof line, &n, "awith: slow step: task '%s' ran %lld ms without waiting (resumed at ",
			    name, (long long)(ran / 1000000));
			put_loc(line, sizeof line, &n, loop->slow_resumed_at, true);
			put(line, sizeof line, &n, ", now waiting at ");
			put_loc(line, sizeof line, &n, suspended_at, false);
			put(line, sizeof line, &n, ")");
			aw_loop_event_record(loop, AW_LOOP_EVENT_SLOW_STEP, ran, name, loop->slow_resumed_at,
					     suspended_at, line);
			aw_metric_counter_add(aw__metrics.slow_steps, 1);
		} else {
			ran = atomic_load_explicit(&wd->stuck, memory_order_relaxed);
			put(line, sizeof line, &n,
			    "awith: slow step: the loop ran at least %lld ms without waiting, "
			    "in a step that ended without a wait (a task that yielded or "
			    "returned, or the loop itself), so it cannot be named",
			    (long long)(ran / 1000000));
			aw_loop_event_record(loop, AW_LOOP_EVENT_SLOW_STEP, ran, "", NULL, NULL, line);
			aw_metric_counter_add(aw__metrics.slow_steps, 1);
		}
		fprintf(out, "%s\n", line);
		fflush(out);
	}
	loop->slow_name[0] = 0;
	atomic_store_explicit(&loop->slow_flag, 0, memory_order_release);
}
