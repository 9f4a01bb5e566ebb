/* SPDX-License-Identifier: MIT */
/*
 * awith/core.h — stackful tasks, the loop, cancellation, and async context
 * managers: Python's `async with`, in C.
 *
 * The whole public surface of the core layer. Contracts are stated next to
 * each declaration; docs/design.md explains the reasons behind them.
 *
 * Conventions
 *   - Functions that can fail return int: 0 (or a count) on success, a
 *     negative code on failure: -errno where one fits (-ECANCELED,
 *     -ETIMEDOUT, -ENOMEM, -EINVAL ...), else one of the AW_E* codes below.
 *   - A failing function also *raises* a rich error on the running task
 *     (message, file:line, cause chain): aw_error_current().
 *
 * The error rule, in one sentence:
 *
 *     An error stays in flight from its raise until your code handles it
 *     (aw_catch, aw_error_clear, or `continue` to the next item of
 *     AW_FOR); every exit of every block it leaves sees it, however the
 *     block is left; and a cancelled task's exits always see the
 *     cancellation.
 *
 *   So a body that ignores a failed statement and runs to its end does not
 *   commit its transaction: the exit sees the failure and rolls back. To
 *   raise and leave in one step: `return aw_raise(code, "...")` (aw_raise's
 *   result must be used, so a raise that forgets to leave does not compile
 *   cleanly). To check a code and go on: `if (aw_catch(rc, -ENOENT)) ...`.
 *   Set AWITH_DEBUG_ERRORS=1 (or aw_config.debug_errors) to have every
 *   error that was raised and then dropped — neither handled nor passed on
 *   — reported once per raise site, with its file:line.
 *   - Time is int64 nanoseconds on CLOCK_MONOTONIC. Deadlines are absolute
 *     (libdill's lesson: they compose, relative timeouts do not);
 *     AW_NEVER means no deadline.
 *   - Functions marked "waits" may suspend the calling task. They must be
 *     called from inside a task (aw_run's main or a spawned task); outside one
 *     they return -AW_ENOTASK. Every wait is a cancellation point.
 *
 * The block statement
 *
 *     AW_WITH(&logger.mgr) {
 *         ...                        // body
 *     }
 *
 * enters the manager, runs the body, and runs the manager's exit exactly once
 * on every way out of the block: falling off the end, return, break, goto, an
 * error, cancellation, a timeout. Nested blocks exit in LIFO order. Exits
 * run on the task's own stack and may wait (send ROLLBACK, flush, close TLS).
 * See AW_WITH below for the exact rules.
 */
#ifndef AWITH_CORE_H
#define AWITH_CORE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "awith/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API: the
 * library is built with -fvisibility=hidden, so exactly these are exported. */
#pragma GCC visibility push(default)

/* Attributes of the declarations below: a result that must be used (a
 * waiting call's: ignoring it does not compile cleanly), printf-style
 * format checking of argument f against the arguments from a on. */
#define AW_MUST_USE __attribute__((warn_unused_result))
#define AW_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* ------------------------------------------------------------------------ */
/* Error codes beyond errno                                  aw_error_codes(3) */

/* All are returned negated, like errno codes. Each layer owns a range of
 * 0x100 codes declared in its own header: core 0x4000 (here), io 0x4100,
 * http 0x4200, client 0x4300, pg 0x4400; ranges from 0x4800 are for
 * libraries built on awith/ext.h (aw_error_range_register). aw_strerror
 * knows every range whose layer is linked in. */

enum {
	AW_EBASE = 0x4000,
	AW_ENOTASK,        /* a waiting call made outside of any task */
	AW_EGEN_NOYIELD,   /* a generator manager returned without yielding */
	AW_EGEN_YIELDTWICE,/* a generator manager yielded a second time */
	AW_ECLOSED,        /* the queue (or other channel) was closed */
	AW_EGROUP,         /* one or more tasks of a task group failed */
	AW_EBUSY_WAIT,     /* another task already waits on this fd/direction */
	AW_EEXIT,          /* a manager's exit failed without raising its own error */
	AW_EEOF,           /* the stream ended in the middle of a read that needs more */
	AW_ETOOLONG,       /* a size limit (line, delimiter, body, file) was exceeded */
	AW_ELAST
};

/* ------------------------------------------------------------------------ */
/* Time                                                                     */

typedef int64_t aw_time;                 /* nanoseconds, CLOCK_MONOTONIC */
#define AW_NEVER INT64_MAX
#define AW_NS(x)  ((aw_time)(x))
#define AW_US(x)  ((aw_time)(x) * 1000)
#define AW_MS(x)  ((aw_time)(x) * 1000000)
#define AW_SEC(x) ((aw_time)(x) * 1000000000)

/* Current monotonic time. */
aw_time aw_now(void);
/* now + dur, saturating at AW_NEVER; dur < 0 counts as 0. */
aw_time aw_deadline_after(aw_time dur);

/* ------------------------------------------------------------------------ */
/* Source locations: where a manager was entered, where a task waits.       */

typedef struct aw_loc {
	const char *file;
	const char *func;
	int line;
} aw_loc;

/* A pointer to a static record of the current file:line. Costs nothing at
 * run time. */
#define AW_HERE \
	({ static const aw_loc aw__here_ = { __FILE__, __func__, __LINE__ }; &aw__here_; })

/* How the caller's location is recorded — one way for every public call
 * that records it: the call is wrapped in a same-named macro,
 * AW__AT((fn)(args)), which stores AW_HERE (a pointer to a static record:
 * one store, no call) in aw__where before the call; the function reads it
 * on entry. Waiting calls (every one in core.h and io.h, and pg's
 * aw_pg_connect, aw_pg_pool_open, aw_pg_pool_acquire) report it in aw_dump
 * and in ledger entries; aw_raise keeps it in the error; aw_enter / aw_exit
 * in the manual-API ledger record. (fn)(args) calls a function without
 * recording: the library's own calls do, so a dump shows the user's line.
 * (pg queries and http body reads do not record yet: a dump shows the
 * library's wait.)
 * Internal: the location the next wait reports in dumps. */
extern __thread const aw_loc *aw__where;
static inline void aw__at(const aw_loc *loc) { aw__where = loc; }
#define AW__AT(call) (aw__at(AW_HERE), (call))

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

typedef struct aw_error aw_error;
struct aw_error {
	int code;              /* negative code */
	char *msg;             /* human-readable, never NULL */
	const aw_loc *loc;     /* where it was raised (may be NULL) */
	aw_error *cause;       /* the error being handled when this one was
	                          raised (Python's __context__), or NULL */
	aw_error *members;     /* for AW_EGROUP: each child's error, linked by */
	aw_error *next_member; /* next_member, in the order they failed */
	const void *origin;    /* internal: the cancel scope that caused it */
	uint64_t serial;       /* internal: per-task raise number */
	unsigned refs;         /* internal: shared by causes and handlers */
	bool handled;          /* internal: cleared or suppressed since it was
	                          raised (never becomes a later error's cause) */
};

/* Raise: record a rich error on the running task (or on the thread when no
 * task runs) and return `code` (negative), so `return aw_raise(...)` reads
 * naturally. The message is printf-formatted; %m works. It replaces the
 * error in flight. Inside a manager's exit, the error being handled is
 * aw_error_current() until the exit raises; if the exit then returns the
 * new code, the handled error becomes the new one's cause. A positive or
 * zero code is a programming error and is raised as -EINVAL. */
int aw_raise(int code, const char *fmt, ...) AW_PRINTF(2, 3) AW_MUST_USE;
#define aw_raise(code, ...) AW__AT((aw_raise)((code), __VA_ARGS__))

/* The code of the error in flight on this task (raised and not yet handled),
 * or 0. After a block whose exit failed, this is how the failure shows. */
int aw_error_pending(void);
/* The error in flight, or NULL. Valid until the next raise or clear. */
const aw_error *aw_error_current(void);
/* Mark the error in flight as handled (Python's `except:` clause). */
void aw_error_clear(void);
/* `except code:` in one call. If rc == code (or, with code == 0, if rc is
 * any negative code), the error in flight is handled (cleared) and the
 * result is true; otherwise nothing changes and the result is false.
 *
 *     rc = aw_file_read_all(path, &buf, &len);
 *     if (aw_catch(rc, -ENOENT))
 *         buf = default_config();        // handled: no exit will see it
 *     else if (rc < 0)
 *         return rc;                      // passed on
 */
bool aw_catch(int rc, int code);
/* Take ownership of the error in flight (the task no longer has one). Free it
 * with aw_error_free. */
aw_error *aw_error_take(void);
void aw_error_free(aw_error *e);
/* Print an error with its location, its cause chain and group members, in
 * one call. NULL prints "no error". */
void aw_error_print(FILE *out, const aw_error *e);
/* A short static description of a code (negative or positive). */
const char *aw_strerror(int code);

/* ------------------------------------------------------------------------ */
/* Rate-limited logging, per message site             aw_log_ratelimited(3) */
/*
 * A failure that happens once per request (the database is down, a
 * dependency refuses) must not print one line per request: during an
 * outage that is tens of thousands of identical lines a second. Each place
 * in the code that logs such a failure is a site (a static record made by
 * AW_LOG_SITE where it is used, keyed by its file:line like AW_HERE); a
 * site prints at most `burst` messages per `interval` (process-wide
 * setting, default 10 per 5 s) and drops the rest, counting them. The next
 * message the site prints after dropping some is preceded by
 * "awith: N similar messages suppressed (file:line)". So a flood costs
 * about burst lines per interval, and nothing is hidden without a trace
 * (the count comes with the site's next message once the interval is
 * over, or from aw_log_flush, e.g. at exit: aw_app_serve calls it when
 * the server stops).
 *
 *     aw_log_ratelimited(stderr, aw_error_current(), "GET /users: database unavailable");
 *
 * Thread-safe (one lock around the counters). Counting is per process:
 * each worker process limits its own lines. The leveled, structured
 * records of awith/log.h (aw_log, aw_log_error, aw_log_kv) are limited per
 * call site by this same mechanism and setting.
 */
typedef struct aw_log_site {
	aw_loc loc;                /* the call site */
	aw_time window;            /* internal: start of the current interval */
	unsigned printed;          /* internal: messages printed in it */
	uint64_t suppressed;       /* internal: dropped since the last printed */
	struct aw_log_site *next;  /* internal: in the list of sites that
	                              dropped something (aw_log_flush) */
	bool listed;               /* internal */
} aw_log_site;

/* A pointer to the static site record of the current file:line. */
#define AW_LOG_SITE \
	({ static aw_log_site aw__site_ = { { __FILE__, __func__, __LINE__ }, 0, 0, 0, NULL, false }; &aw__site_; })

/* Decide for one message of `site`: true to print it, false to drop it
 * (counted). When true and some were dropped before it, *suppressed (if
 * not NULL) gets their number, to report with this message; else 0. For
 * callers with their own line format (the http app's error log). */
bool aw_log_allow(aw_log_site *site, uint64_t *suppressed);

/* Print one line (fmt plus "\n") to `out`, then `e` with its cause chain
 * (aw_error_print) if e is not NULL, then flush — unless `site` is over its
 * limit (then nothing is printed and the message is counted). A suppressed
 * count goes first, as its own line. Returns true if printed. */
bool aw_log_ratelimited_at(aw_log_site *site, FILE *out, const aw_error *e, const char *fmt, ...)
	AW_PRINTF(4, 5);
#define aw_log_ratelimited(out, e, ...) aw_log_ratelimited_at(AW_LOG_SITE, (out), (e), __VA_ARGS__)

/* Report every count still pending (sites that dropped messages and have
 * printed none since): one "awith: N similar messages suppressed
 * (file:line)" line each, to `out`. For the end of a program or of an
 * outage, so a flood that stopped is still accounted for. */
void aw_log_flush(FILE *out);

/* The limit for every site: at most `burst` messages per `interval`
 * (duration, > 0). burst 0 turns the limit off (every message printed).
 * Default: 10 per 5 s. */
void aw_log_limit_set(unsigned burst, aw_time interval);

/* ------------------------------------------------------------------------ */
/* The loop and tasks                                                       */

typedef struct aw_task aw_task;
typedef int (*aw_task_fn)(void *arg);

typedef struct aw_config {
	size_t stack_size;   /* default task/generator stack, virtual bytes.
	                        Default 64 KiB (256 KiB under ASan). Only touched
	                        pages cost memory. Min 16 KiB. */
	size_t stack_cache;  /* freed stacks kept for reuse; default 1024 (a
	                        cached stack keeps the pages it touched, so a
	                        loop holds at most this many of them after a
	                        peak; past it, every task ended is a munmap, a
	                        TLB shootdown on every core the process runs on) */
	aw_time grace;       /* how long a cleanup (exit) may wait once it is
	                        running; default 5 s */
	aw_time slow_step;   /* report a task that runs this long without
	                        waiting; default 100 ms; 0 disables */
	unsigned threads;    /* to_thread pool size; default 4 */
	int dump_signal;     /* signal that prints aw_dump to `log`;
	                        default SIGUSR1; 0 = none */
	FILE *log;           /* where reports go; default stderr */
	bool debug_errors;   /* report errors raised and then dropped (neither
	                        handled nor passed on), once per raise site;
	                        default: true when AWITH_DEBUG_ERRORS=1 */
	int backend;         /* how the loop waits for fds: an aw_backend_choice.
	                        Default (0): the AWITH_BACKEND environment
	                        variable (epoll, uring or auto), else auto */
} aw_config;

/* The loop's poll backend (aw_config.backend; AWITH_BACKEND=epoll|uring|auto).
 *   AW_BACKEND_DEFAULT  0: what AWITH_BACKEND says, else AW_BACKEND_AUTO
 *   AW_BACKEND_AUTO     io_uring when this build has it and the kernel
 *                       allows it; else epoll, said once per process on
 *                       the loop's log (why: not built in, ENOSYS, the
 *                       kernel.io_uring_disabled sysctl, EPERM from a
 *                       seccomp policy ...)
 *   AW_BACKEND_EPOLL    epoll
 *   AW_BACKEND_URING    io_uring or nothing: aw_run_config fails with the
 *                       reason on the log (-ENOSYS when not built in, else
 *                       the kernel's code from io_uring_setup)
 * An unknown AWITH_BACKEND value makes aw_run_config fail with -EINVAL. */
typedef enum aw_backend_choice {
	AW_BACKEND_DEFAULT = 0,
	AW_BACKEND_AUTO = 1,
	AW_BACKEND_EPOLL = 2,
	AW_BACKEND_URING = 3,
} aw_backend_choice;

/* The running loop's backend: "epoll" or "io_uring"; NULL outside a loop.
 * The string is static. */
const char *aw_loop_backend(void);

/* Fill *cfg with the defaults. */
void aw_config_default(aw_config *cfg);

/* Create a loop on this thread, run main(arg) as its first task, and run
 * the loop until main returns. Tasks still running then are cancelled and
 * awaited (their exits run). Managers entered with the manual API and never
 * exited, and ledger entries never closed, are reported to cfg->log with
 * where they were opened. Returns main's result, or a negative code if the
 * loop could not start (-ENOMEM, -EMFILE, -EBUSY if this thread already
 * runs a loop). One loop per thread; run several threads for several. */
int aw_run(aw_task_fn main, void *arg) AW_MUST_USE;
int aw_run_config(const aw_config *cfg, aw_task_fn main, void *arg) AW_MUST_USE;

/* Options for aw_spawn_with. Zero means default. */
typedef struct aw_spawn_opts {
	const char *name;     /* copied (truncated to 31 bytes); default "task-N" */
	size_t stack_size;    /* default: the loop's stack_size */
} aw_spawn_opts;

/* Start fn(arg) as a new task; it first runs when the spawner next waits.
 * If out is non-NULL the task is joinable and *out must later be given to
 * aw_task_join or aw_task_detach; if NULL the task is detached. Returns 0,
 * -ENOMEM (the message names vm.max_map_count when mmap is refused), or
 * -AW_ENOTASK outside a loop. */
int aw_spawn(aw_task **out, aw_task_fn fn, void *arg, const char *name) AW_MUST_USE;
int aw_spawn_with(aw_task **out, aw_task_fn fn, void *arg, const aw_spawn_opts *opts) AW_MUST_USE;

/* Waits until t finishes and releases the handle. Returns t's result (its
 * function's return value); when that is negative, t's rich error moves to
 * the caller as the error in flight. If the caller is cancelled while
 * waiting, returns the cancellation code and t stays joinable. */
int aw_task_join(aw_task *t) AW_MUST_USE;
#define aw_task_join(t) AW__AT((aw_task_join)(t))
/* Release a handle without waiting; t runs on and is freed when it ends. */
void aw_task_detach(aw_task *t);
/* Request cancellation: t's current or next wait returns -ECANCELED, and so
 * does every wait after it (level-triggered) except inside exits, which run
 * shielded under the grace deadline. Idempotent; no-op on finished tasks. */
void aw_task_cancel(aw_task *t);

aw_task *aw_task_current(void);     /* NULL outside a task */
const char *aw_task_name(const aw_task *t);
/* Rename t (copied, truncated to 31 bytes; NULL or "" is ignored): what
 * aw_dump, slow-step reports and aw_ledger_visit call it from now on. The
 * http layer names a handler's task after its request while the debug page
 * is on. */
void aw_task_set_name(aw_task *t, const char *name);
uint64_t aw_task_id(const aw_task *t);
bool aw_task_done(const aw_task *t);

/* Waits: let every other ready task run once, then continue. A
 * cancellation point: returns -ECANCELED if the task is cancelled. */
int aw_yield(void) AW_MUST_USE;
#define aw_yield() AW__AT((aw_yield)())
/* Waits for dur ns (0: same as yield). Returns 0, or the cancel code. */
int aw_sleep(aw_time dur) AW_MUST_USE;
#define aw_sleep(dur) AW__AT((aw_sleep)(dur))
/* Waits until the absolute time `deadline`. */
int aw_sleep_until(aw_time deadline) AW_MUST_USE;
#define aw_sleep_until(d) AW__AT((aw_sleep_until)(d))

/* fd readiness. */
enum { AW_READABLE = 1, AW_WRITABLE = 2 };
/* Waits until fd may be readable/writable (one direction per call) or until
 * deadline. Edge-triggered underneath: call it after the operation returned
 * EAGAIN (on the io_uring backend an edge reports only the events of that
 * wake-up, so a wait for an fd that was ready all along may not return).
 * Returns 0, -ETIMEDOUT, the cancel code, -AW_EBUSY_WAIT if another task
 * already waits on the same fd and direction, or -EBADF/-EPERM from epoll (a
 * regular file cannot be waited on; on io_uring it is always ready). */
int aw_fd_wait(int fd, int direction, aw_time deadline) AW_MUST_USE;
#define aw_fd_wait(fd, dir, dl) AW__AT((aw_fd_wait)((fd), (dir), (dl)))
/* Waits until fd may be ready in any of `directions` (AW_READABLE |
 * AW_WRITABLE) or until deadline. Returns the mask of directions that are
 * (> 0), or an error as aw_fd_wait. */
int aw_fd_wait_any(int fd, int directions, aw_time deadline) AW_MUST_USE;
#define aw_fd_wait_any(fd, dirs, dl) AW__AT((aw_fd_wait_any)((fd), (dirs), (dl)))
/* Drop the loop's registration of fd. Call before close(fd): a closed and
 * reused fd number would otherwise inherit the old registration. Tasks
 * waiting on fd are woken with -EBADF. */
void aw_fd_forget(int fd);
/* aw_fd_forget + close. Returns close's result (0 or -errno). */
int aw_fd_close(int fd);

/* ------------------------------------------------------------------------ */
/* The context-manager protocol                                  aw_with(3) */

typedef struct aw_mgr aw_mgr;
typedef struct aw_mgr_ops {
	const char *name;                   /* what it is, for the ledger */
	/* Enter. May wait. Returns 0, or a negative error: then the body does
	 * not run and exit is not called. */
	int (*enter)(aw_mgr *self);
	/* Exit. May wait; runs shielded from cancellation under the grace
	 * deadline. `err` is the error the block is left with (0: none).
	 * Return err to let it go on, 0 to suppress it, or another code to
	 * replace it (raise it with aw_raise: the old error becomes its cause;
	 * a bare code gets a raised error made for it). The return value
	 * decides: returning the same code as err lets the original go on,
	 * even if the exit raised a new error with that code meanwhile. */
	int (*exit)(aw_mgr *self, int err);
	/* Optional: a line of detail for aw_dump (e.g. "3 entries"). */
	void (*describe)(aw_mgr *self, char *buf, size_t len);
} aw_mgr_ops;

/* The header every manager embeds (usually as its first member, `mgr`). */
struct aw_mgr {
	const aw_mgr_ops *ops;
};

/* A block in progress. Lives on the task's stack inside AW_WITH; it is the
 * ledger record of what the task holds. Internal fields. */
typedef struct aw_with aw_with;
struct aw_with {
	aw_mgr *const *mgrs;    /* the managers, entered in order */
	unsigned count;         /* how many */
	unsigned entered;       /* how many entered so far */
	int state;              /* AW__WITH_* */
	int result;             /* the block's outcome after exit (0 or code) */
	const aw_loc *loc;      /* where the block is */
	aw_time since;          /* when it was entered */
	uint64_t serial;        /* task's raise counter at entry */
	aw_with *outer;         /* next older block of the task (ledger) */
	aw_task *task;
	/* Set while the exits run (shielded cleanup). */
	aw_with *cleanup_outer;
	void *boundary;         /* cancel scope chain at cleanup start */
	aw_time grace_deadline; /* 0 until the exit first waits */
};

enum { AW__WITH_INIT, AW__WITH_BODY, AW__WITH_NORMAL, AW__WITH_BROKEN, AW__WITH_DONE };

/* Internal: the part of the running task that the block statement touches
 * (the task's first fields of that kind; see src/core/internal.h), so that
 * the common case of AW_WITH is inline in the caller. aw__hot is the running
 * task's, NULL outside tasks; the scheduler sets it at every switch. */
typedef struct aw__task_hot {
	aw_with *withs;
	aw_with *cleanup;
	aw_error *err;
	uint64_t raises;
	void *scope;
	const aw_time *now;
	aw_task *self;
	unsigned cancels;  /* cancelled scopes on the task's chain (a hint: 0
	                      means no exit can owe a cancellation) */
	aw_time limit;     /* earliest deadline on the task's scope chain */
} aw__task_hot;
extern __thread aw__task_hot *aw__hot;

/* Out-of-line halves of the block statement (do not call directly). */
bool aw__with_begin(aw_with *w);
void aw__with_leave(aw_with *w);
bool aw__with_enter_failed(aw_with *w, aw_mgr *m, int rc);
void aw__with_exit_failed(aw_with *w, aw_mgr *m, uint64_t before, int rc);

/* Enter: one manager, in a task, is handled here; the rest out of line. */
static inline bool aw__with_step(aw_with *w)
{
	if (w->state != AW__WITH_INIT)
		return false;
	aw__task_hot *h = aw__hot;
	aw_mgr *m = w->mgrs[0];
	if (__builtin_expect(!h || w->count != 1 || !m || !m->ops || !m->ops->enter, 0))
		return aw__with_begin(w);
	w->task = h->self;
	w->serial = h->raises;
	w->since = *h->now;
	int rc = m->ops->enter(m);
	if (__builtin_expect(rc != 0, 0))
		return aw__with_enter_failed(w, m, rc);
	w->entered = 1;
	w->outer = h->withs;
	h->withs = w;
	w->state = AW__WITH_BODY;
	return true;
}

/* Leave (the cleanup handler): with nothing in flight and no cancellation
 * owed, the one exit gets 0 however the block was left; that case is
 * handled here. */
static inline void aw__with_cleanup(aw_with *w)
{
	aw__task_hot *h = aw__hot;
	if (__builtin_expect(!h || w->entered != 1 || h->err || h->cancels || h->limit <= *h->now ||
			     w->state == AW__WITH_INIT || w->state == AW__WITH_DONE || w->task != h->self, 0)) {
		aw__with_leave(w);
		return;
	}
	aw_mgr *m = w->mgrs[0];
	h->withs = w->outer;
	w->state = AW__WITH_DONE;
	if (!m->ops->exit)
		return;
	w->cleanup_outer = h->cleanup;   /* shielded cleanup (see with.c) */
	w->boundary = h->scope;
	w->grace_deadline = 0;
	h->cleanup = w;
	uint64_t before = h->raises;
	int rc = m->ops->exit(m, 0);
	h->cleanup = w->cleanup_outer;
	if (__builtin_expect(rc != 0 || h->err != NULL, 0))
		aw__with_exit_failed(w, m, before, rc);
}

/* The `for` increment: reached only when the body ran to its end. */
static inline void aw__with_body_done(aw_with *w)
{
	if (w->state == AW__WITH_BODY)
		w->state = AW__WITH_NORMAL;
}

#define AW__CAT_(a, b) a##b
#define AW__CAT(a, b) AW__CAT_(a, b)

#ifndef __cplusplus
#define AW__NARGS(...) (sizeof((aw_mgr *[]){__VA_ARGS__}) / sizeof(aw_mgr *))
/* The block's aw_with, from the name the loop declared. */
#define AW__W(w) (w)
#define AW__WITH_LOOP(w, body_done, ...)                                         \
	for (aw_with w __attribute__((cleanup(aw__with_cleanup))) = {               \
		     .mgrs = (aw_mgr *const[]){__VA_ARGS__},                       \
		     .count = AW__NARGS(__VA_ARGS__),                              \
		     .loc = AW_HERE};                                              \
	     aw__with_step(&w); body_done(&w))
#else
/* C++: the same statement over a block object (aw__block, below the cancel
 * scopes) that holds the managers and whose destructor runs the exits —
 * at the same points as C's cleanup attribute. */
#define AW__W(w) ((w).with_)
#define AW__WITH_LOOP(w, body_done, ...)                                         \
	for (aw__block w(AW_HERE, __VA_ARGS__); aw__with_step(&w.with_); body_done(&w.with_))
#endif
#define AW__WITH_NAMED(w, ...) AW__WITH_LOOP(w, aw__with_body_done, __VA_ARGS__)

/*
 * AW_WITH(m1, m2, ...) { body }  — Python's `async with m1, m2: body`.
 *
 * Each argument is an `aw_mgr *`. All argument expressions are evaluated
 * first; the managers are then entered left to right. If one fails to enter,
 * the ones already entered exit (right to left) with that error, the body
 * does not run, and the error stays in flight (aw_error_pending()).
 *
 * Leaving the block (THE ERROR RULE, stated at the top of this file): an
 * error raised inside the block and not handled is handed to every exit,
 * however the block is left — falling off the end, `continue`, return,
 * break, goto — and stays in flight after the block unless an exit
 * suppresses it. Handled means aw_error_clear() (or aw_catch) was called
 * for it; a `continue` to the next item of AW_FOR handles the errors of
 * that iteration (`except E: continue`). Errors raised before the block
 * are never handed to its exits. If the task's cancel scopes around the
 * block are cancelled (aw_task_cancel, a timeout that passed), the exits
 * see the cancellation even when nothing is in flight (level-triggered:
 * a body that swallowed -ECANCELED cannot make a transaction commit).
 *
 * `break` and `continue` leave this block (as in the kernel's
 * scoped_guard), not an enclosing loop: C gives a macro no way to pass
 * them on. To leave a loop from inside blocks, use `goto` to a label after
 * the loop (every exit runs, innermost first) or `return`.
 *
 * Exits run right to left; each sees the error as the previous one left it:
 *   - returning err propagates it;
 *   - returning 0 suppresses it: the error is cleared, outer blocks see no
 *     error, and execution continues after the block (on a return path the
 *     function still returns the value it computed: see aw_error_pending);
 *   - returning another code replaces it; the old error is its cause.
 * An exit that fails although the block did not makes the block fail: the
 * error is in flight after the block (aw_error_pending()).
 * C cannot change a `return` value already computed. The idiom that lets
 * an exit's suppression or replacement decide what a function returns:
 *
 *     AW_WITH(m) { ...; if (rc < 0) break; ... }
 *     return aw_error_pending();      // 0 if an exit suppressed it
 *
 * Exits run shielded from cancellation: waits inside them work even if the
 * task was cancelled, until the grace deadline (aw_config.grace) after the
 * exit first waits; then they fail with -ETIMEDOUT.
 */
#define AW_WITH(...) AW__WITH_NAMED(AW__CAT(aw__with_, __COUNTER__), __VA_ARGS__)

/* Manual API, for lifetimes that do not fit a block. The pair must be
 * matched: a manager entered here and never exited is reported (with the
 * place it was entered) at loop shutdown. Prefer AW_WITH. */
int aw_enter(aw_mgr *m) AW_MUST_USE;
int aw_exit(aw_mgr *m, int err) AW_MUST_USE;
#define aw_enter(m) AW__AT((aw_enter)(m))
#define aw_exit(m, err) AW__AT((aw_exit)((m), (err)))
/* For a manager's enter: where aw_enter was called, when m is being entered
 * with the manual API; NULL when a block enters it (the block already
 * guarantees the exit). Read it before the enter first waits. A manager
 * that holds resources of its own (sockets, memory, tasks) opens a ledger
 * entry there, with a release function, so that one never exited is
 * reported with that location and its resources released at loop end. */
const aw_loc *aw_manual_enter_loc(const aw_mgr *m);

/* ------------------------------------------------------------------------ */
/* Cancel scopes: timeouts, deadlines, shields (managers that nest).        */

typedef struct aw_scope aw_scope;
struct aw_scope {
	aw_mgr mgr;
	aw_time deadline;     /* AW_NEVER: none */
	int code;             /* what waits inside it fail with once cancelled */
	bool cancelled;
	bool shield;          /* blocks cancellation from outer scopes */
	bool suppress;        /* move_on: the scope's own cancellation is
	                         swallowed at exit */
	bool fired;           /* set at exit: this scope's cancellation ended
	                         the block */
	aw_scope *outer;
	aw_task *task;
	aw_time outer_limit;  /* internal: the task's chain limit before it */
};

/* fail_after: waits inside the block fail once `deadline` passes; the block
 * is left with -ETIMEDOUT, which its exit lets through. A cancellation or
 * timeout from an *outer* scope is never reported as this timeout: the exit
 * passes that one on unchanged. */
aw_mgr *aw_deadline_init(aw_scope *s, aw_time deadline);
aw_mgr *aw_timeout_init(aw_scope *s, aw_time dur);
/* move_on_after: same, but the scope's own timeout is suppressed at exit
 * (execution continues after the block); check s->fired. */
aw_mgr *aw_move_on_at_init(aw_scope *s, aw_time deadline);
aw_mgr *aw_move_on_init(aw_scope *s, aw_time dur);
/* shield: waits inside are not cancelled by outer scopes or aw_task_cancel.
 * A bounded shielded cleanup is a shield plus a deadline scope inside it:
 * AW_WITH(aw_shield_init(&sh), aw_timeout_init(&to, AW_MS(100))). */
aw_mgr *aw_shield_init(aw_scope *s);
/* Cancel a scope from anywhere on its loop: waits inside fail with
 * -ECANCELED; the scope's exit suppresses that if it is a move_on scope. */
void aw_scope_cancel(aw_scope *s);

/* Block-scoped one-liners: AW_WITH(AW_TIMEOUT(AW_MS(100))) { ... }, the
 * same as the named forms with storage the block owns (use the named forms
 * to look at s.fired afterwards). In C++ they are values that the block
 * object turns into scopes it holds. */
#ifndef __cplusplus
#define AW_TIMEOUT(dur) aw_timeout_init(&(aw_scope){ .deadline = 0 }, (dur))
#define AW_MOVE_ON(dur) aw_move_on_init(&(aw_scope){ .deadline = 0 }, (dur))
#define AW_SHIELD() aw_shield_init(&(aw_scope){ .deadline = 0 })
#else
} /* extern "C" */
struct aw__scope_spec {
	aw_time dur;
	int kind;   /* 0 timeout, 1 move_on, 2 shield */
};
#define AW_TIMEOUT(dur) (aw__scope_spec{ (dur), 0 })
#define AW_MOVE_ON(dur) (aw__scope_spec{ (dur), 1 })
#define AW_SHIELD() (aw__scope_spec{ AW_NEVER, 2 })

static inline aw_mgr *aw__bind(aw_mgr *m, aw_scope *) { return m; }
static inline aw_mgr *aw__bind(const aw__scope_spec &sp, aw_scope *store)
{
	switch (sp.kind) {
	case 0: return aw_timeout_init(store, sp.dur);
	case 1: return aw_move_on_init(store, sp.dur);
	default: return aw_shield_init(store);
	}
}

/* The block statement's object in C++: the managers (and the storage of
 * AW_TIMEOUT-style scopes) live in it, for the block's lifetime; the
 * destructor is the C version's cleanup handler. Not copyable or movable:
 * the managers' addresses are in the ledger while the block runs. */
template <unsigned N>
struct aw__block {
	aw_mgr *m[N];
	aw_scope s[N];
	aw_with with_;
	template <class... A>
	explicit aw__block(const aw_loc *loc, const A &...a) : m{}, s{}, with_()
	{
		unsigned i = 0;
		((m[i] = aw__bind(a, &s[i]), ++i), ...);
		with_.mgrs = m;
		with_.count = N;
		with_.loc = loc;
	}
	~aw__block() { aw__with_cleanup(&with_); }
	aw__block(const aw__block &) = delete;
	aw__block &operator=(const aw__block &) = delete;
};
template <class... A>
aw__block(const aw_loc *, const A &...) -> aw__block<sizeof...(A)>;
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Generator-style managers (Python's @asynccontextmanager)                 */

typedef struct aw_gen aw_gen;
/* A generator function: set up, aw_gen_yield(g, value) exactly once, tear
 * down. aw_gen_yield returns the error the body is leaving with (0 if none).
 * The function's return value is handled like an exit's: return that error
 * to let it go on, 0 to suppress it, another code to replace it. A negative
 * return before yielding fails the enter (the body does not run). */
typedef int (*aw_gen_fn)(aw_gen *g, void *arg);

struct aw_gen {
	aw_mgr mgr;
	aw_gen_fn fn;
	void *arg;
	void *value;          /* what the generator yielded */
	/* internal */
	void *coro;
	int state;
	int to_gen;
	int result;
	const char *name;
};

/* Prepare g (no allocation yet) and return its manager. The generator runs
 * on its own small stack (aw_config.stack_size): a runner's, taken from the
 * loop's parked runners at enter (a new one from the stack cache when none
 * is parked) and parked again at exit. Errors at enter: the
 * generator's own error, -AW_EGEN_NOYIELD if it returned 0 without
 * yielding; at exit: -AW_EGEN_YIELDTWICE if it yielded again (the second
 * aw_gen_yield returns -AW_EGEN_YIELDTWICE so it can tear down). */
aw_mgr *aw_gen_init(aw_gen *g, const char *name, aw_gen_fn fn, void *arg);
/* From inside the generator function: hand `value` to the block and wait
 * until it is left. */
int aw_gen_yield(aw_gen *g, void *value) AW_MUST_USE;
static inline void *aw_gen_value(const aw_gen *g) { return g->value; }

/* ------------------------------------------------------------------------ */
/* Exit stacks (Python's AsyncExitStack)                    aw_exitstack(3) */

typedef struct aw_exitstack_entry aw_exitstack_entry;
typedef struct aw_exitstack {
	aw_mgr mgr;
	aw_exitstack_entry *entries;
	size_t count, cap;
} aw_exitstack;

typedef int (*aw_exit_fn)(void *arg, int err);   /* like aw_mgr_ops.exit */
typedef int (*aw_callback_fn)(void *arg);        /* called with no error */

/* Initialise an empty stack; returns its manager (its exit closes it). */
aw_mgr *aw_exitstack_init(aw_exitstack *s);
/* Waits: enter m and push its exit. If entering fails nothing is pushed
 * and the error is returned. Room is made before m is entered, so -ENOMEM
 * (the stack cannot grow) usually leaves m never entered; if m's enter
 * pushed onto this same stack and the room is gone, m is exited again at
 * once with -ENOMEM. */
int aw_exitstack_enter(aw_exitstack *s, aw_mgr *m) AW_MUST_USE;
/* Push the exit of an already-entered manager. */
int aw_exitstack_push(aw_exitstack *s, aw_mgr *m) AW_MUST_USE;
/* Push an exit function (sees and may suppress/replace the error). */
int aw_exitstack_push_exit(aw_exitstack *s, aw_exit_fn fn, void *arg) AW_MUST_USE;
/* Push a callback (Python's push_async_callback): runs with no error
 * argument; its failure replaces the error passing through. */
int aw_exitstack_callback(aw_exitstack *s, aw_callback_fn fn, void *arg) AW_MUST_USE;
/* Move every entry to `into` (which must be initialised and empty), leaving
 * s empty: the resources now outlive s's block. */
void aw_exitstack_pop_all(aw_exitstack *s, aw_exitstack *into);
/* Waits: unwind the entries LIFO with `err` passing through as in nested
 * blocks (every exit runs even when one fails; a new error keeps the
 * previous one as its cause). Iterative: any number of entries. Returns
 * the final error (0 if none). The stack is empty afterwards. */
int aw_exitstack_unwind(aw_exitstack *s, int err) AW_MUST_USE;
/* Waits: unwind with no error (Python's aclose()). */
int aw_exitstack_close(aw_exitstack *s) AW_MUST_USE;
#define aw_exitstack_close(s) AW__AT((aw_exitstack_close)(s))

/* Waits: run a cleanup now, as an exit runs — shielded from cancellation,
 * for at most `limit` (AW_NEVER: only the grace deadline of an enclosing
 * exit bounds it) — with the error in flight set aside and put back
 * afterwards, unchanged. fn(arg, err) gets the code of that error, or the
 * task's pending cancellation when nothing is in flight (a cleanup always
 * sees a cancellation), or 0. Whatever fn raises is handled here: fn's
 * result is the return value (0 or negative) for the caller to act on
 * (e.g. discard a connection whose ROLLBACK failed), and it never replaces
 * the error that was in flight. The helper for "keep the error, send
 * ROLLBACK shielded and bounded, raise the error again". */
int aw_cleanup_run(aw_exit_fn fn, void *arg, aw_time limit) AW_MUST_USE;
#define aw_cleanup_run(fn, arg, limit) AW__AT((aw_cleanup_run)((fn), (arg), (limit)))

/* ------------------------------------------------------------------------ */
/* Chunks: the item of every async iterator over bytes (aw_file_chunks_init,
 * aw_client_response_chunks, aw_pg_copy_out_init; what aw_http_stream
 * sends). `data` is valid until the next step; `offset` counts the bytes
 * before this chunk (the file offset for a file). */
typedef struct aw_chunk {
	const char *data;
	size_t len;
	int64_t offset;
} aw_chunk;

/* ------------------------------------------------------------------------ */
/* Async iterators (async for); an iterator is a manager, so leaving the    */
/* loop early still closes it (Python's aclosing).                           */

typedef struct aw_iter aw_iter;
struct aw_iter {
	aw_mgr mgr;                                 /* enter opens, exit closes */
	/* Waits: produce the next item into *item. Returns 1 with an item,
	 * 0 at the end, or a negative error (raised). */
	int (*next)(aw_iter *it, void **item);
};

/*
 * AW_FOR(item, iter) { body }  — `async with aclosing(iter): async for item in iter`
 *
 * `item` is an lvalue of pointer type declared by the caller. The iterator
 * is entered before the first item and exited once, on every way out:
 * the end of the items, `break` (ends the loop), return/goto, or an error
 * from next() (which is then in flight, and the exit sees it). `break`
 * leaves the loop as it leaves AW_WITH: an error raised in the body and not
 * cleared goes to the exit and stays in flight after the loop, so
 * `if (rc < 0) break;` carries the error out.
 */
bool aw__iter_step(aw_with *w, aw_iter *it, void **item);
/* AW_FOR: `iter` is evaluated once (AW_FOR(x, aw_gen_iter_init(...)) is
 * fine): each step takes the iterator back from the block's manager. */
#define AW__ITER_OF(w) ((aw_iter *)(void *)((char *)AW__W(w).mgrs[0] - offsetof(aw_iter, mgr)))
/* The block's `for` increment under AW_FOR: reached when the inner loop
 * ended. aw__iter_step marks the end of the items (NORMAL) and an error
 * from next() (BROKEN); still BODY means the body left by `break`, which
 * then counts as leaving the block by break: an error raised in that
 * iteration and not cleared goes on, as `break` out of AW_WITH. */
static inline void aw__for_body_done(aw_with *w)
{
	if (w->state == AW__WITH_BODY)
		w->state = AW__WITH_BROKEN;
}
#define AW__FOR_NAMED(w, item, iter)                                             \
	AW__WITH_LOOP(w, aw__for_body_done, &(iter)->mgr)                        \
	for (; aw__iter_step(&AW__W(w), AW__ITER_OF(w), (void **)&(item));)
#define AW_FOR(item, iter) AW__FOR_NAMED(AW__CAT(aw__with_, __COUNTER__), item, iter)

/* A generator-style iterator: fn yields many values with aw_gen_yield (each
 * call returns 0 to continue, or the error the loop is left with, in which
 * case fn should tear down and return). Leaving the loop early delivers
 * -AW_ECLOSED at the yield (Python's GeneratorExit); returning that (or 0)
 * is a clean close. */
typedef struct aw_gen_iter {
	aw_iter iter;
	aw_gen gen;
	bool started, finished;
} aw_gen_iter;
aw_iter *aw_gen_iter_init(aw_gen_iter *gi, const char *name, aw_gen_fn fn, void *arg);

/* ------------------------------------------------------------------------ */
/* Task groups (Python's TaskGroup)                                         */

typedef struct aw_group {
	aw_mgr mgr;
	aw_scope scope;        /* cancelled when a child fails */
	aw_task *children;     /* running children */
	size_t running;
	aw_error *errors;      /* failed children's errors, in order */
	aw_error **errors_tail;
	size_t failed;
	aw_task *owner;        /* the task whose block holds the group */
	aw_scope *cancelled_by;/* an enclosing scope cancelled while the exit
	                          waited: its error ends the block */
	bool waiting;
} aw_group;

/* Initialise and return the manager. The block's exit waits for every
 * child. The first child that fails (returns < 0, other than by being
 * cancelled by the group) cancels its siblings and the block's body. The
 * exit then fails with -AW_EGROUP whose error lists every failed child's
 * error (members). If the body fails, the children are cancelled and the
 * body's error goes on (with the children's failures, if any, grouped). */
aw_mgr *aw_group_init(aw_group *g);
/* Start a child in g. Only while g's block is active. */
int aw_group_spawn(aw_group *g, aw_task_fn fn, void *arg, const char *name) AW_MUST_USE;
/* Cancel every child and the body. */
void aw_group_cancel(aw_group *g);

/* ------------------------------------------------------------------------ */
/* Synchronisation                                               aw_lock(3) */
/* All waiters are served FIFO. Not thread-safe: one loop.                  */
/* Time limits: these waits (and aw_task_join, aw_to_thread, the queue) take
 * no deadline argument; they are bounded by the cancel scopes around them:
 * AW_WITH(aw_timeout_init(&to, AW_MS(100))) { rc = aw_lock_acquire(&l); }
 * fails the acquire with -ETIMEDOUT when the scope's deadline passes. */

/* Internal wait list node, on the waiting task's stack. */
typedef struct aw_waiter aw_waiter;
typedef struct aw_waitq { aw_waiter *head, *tail; } aw_waitq;

/* Lock (asyncio.Lock). Usable as a manager: AW_WITH(aw_lock_mgr(&lock)). Ownership
 * is handed directly to the longest waiter on release (no barging). */
typedef struct aw_lock {
	aw_mgr mgr;
	aw_task *owner;
	aw_waitq waiters;
} aw_lock;
void aw_lock_init(aw_lock *l);
/* The lock's manager: enter acquires (waits), exit releases. */
static inline aw_mgr *aw_lock_mgr(aw_lock *l) { return &l->mgr; }
int aw_lock_acquire(aw_lock *l) AW_MUST_USE;   /* waits; 0 or cancel code */
#define aw_lock_acquire(l) AW__AT((aw_lock_acquire)(l))
bool aw_lock_try(aw_lock *l);
/* Release: -EPERM if the caller does not hold it. */
int aw_lock_release(aw_lock *l) AW_MUST_USE;

/* Semaphore (asyncio.Semaphore, bounded: release past the initial value is
 * -EOVERFLOW). Manager: acquire/release one unit. */
typedef struct aw_sem {
	aw_mgr mgr;
	size_t value, max;
	aw_waitq waiters;
} aw_sem;
void aw_sem_init(aw_sem *s, size_t value);
/* The semaphore's manager: enter acquires one unit (waits), exit releases it. */
static inline aw_mgr *aw_sem_mgr(aw_sem *s) { return &s->mgr; }
int aw_sem_acquire(aw_sem *s) AW_MUST_USE;
#define aw_sem_acquire(s) AW__AT((aw_sem_acquire)(s))
bool aw_sem_try(aw_sem *s);
int aw_sem_release(aw_sem *s) AW_MUST_USE;

/* Event (asyncio.Event). */
typedef struct aw_event {
	bool set;
	aw_waitq waiters;
} aw_event;
void aw_event_init(aw_event *e);
void aw_event_set(aw_event *e);        /* wakes every waiter */
void aw_event_clear(aw_event *e);
bool aw_event_is_set(const aw_event *e);
int aw_event_wait(aw_event *e) AW_MUST_USE;   /* waits; 0 or cancel code */
#define aw_event_wait(e) AW__AT((aw_event_wait)(e))

/* Condition (asyncio.Condition) bound to a lock; its manager is the lock's. */
typedef struct aw_cond {
	aw_lock *lock;
	aw_waitq waiters;
} aw_cond;
void aw_cond_init(aw_cond *c, aw_lock *l);
/* Waits: release the lock, wait for a notify, re-acquire the lock. The lock
 * is held again on return, also when the wait was cancelled (the return is
 * then the cancel code). -EPERM if the lock is not held by the caller. */
int aw_cond_wait(aw_cond *c) AW_MUST_USE;
#define aw_cond_wait(c) AW__AT((aw_cond_wait)(c))
void aw_cond_notify(aw_cond *c, size_t n);
void aw_cond_notify_all(aw_cond *c);

/* Bounded FIFO queue of pointers (asyncio.Queue with maxsize). */
typedef struct aw_queue {
	void **ring;
	size_t cap, head, len;
	bool closed;
	aw_waitq getters, putters;
} aw_queue;
/* capacity >= 1; -EINVAL otherwise, -ENOMEM. */
int aw_queue_init(aw_queue *q, size_t capacity) AW_MUST_USE;
void aw_queue_destroy(aw_queue *q);
/* Waits while full. -AW_ECLOSED if the queue is (or gets) closed. */
int aw_queue_put(aw_queue *q, void *item) AW_MUST_USE;
#define aw_queue_put(q, i) AW__AT((aw_queue_put)((q), (i)))
/* Waits while empty. Items put before close are still delivered; then
 * -AW_ECLOSED. */
int aw_queue_get(aw_queue *q, void **item) AW_MUST_USE;
#define aw_queue_get(q, i) AW__AT((aw_queue_get)((q), (i)))
int aw_queue_try_put(aw_queue *q, void *item) AW_MUST_USE;   /* -EAGAIN if full */
int aw_queue_try_get(aw_queue *q, void **item) AW_MUST_USE;  /* -EAGAIN if empty */
/* Close: every waiting putter, and every getter once empty, is woken with
 * -AW_ECLOSED. Idempotent. */
void aw_queue_close(aw_queue *q);
static inline size_t aw_queue_len(const aw_queue *q) { return q->len; }

/* ------------------------------------------------------------------------ */
/* Blocking work off the loop                                               */

/* Waits: run fn(arg) on the loop's bounded thread pool and return its
 * result. Cancellation cannot stop a function that is already running (C
 * has no safe way to), so: if the job has not started, it is withdrawn and
 * the cancel code returned at once; if it runs, the task waits for it to
 * finish (fn may poll aw_thread_cancelled() to stop early), then returns
 * the cancel code and fn's result is discarded. */
int aw_to_thread(int (*fn)(void *arg), void *arg) AW_MUST_USE;
#define aw_to_thread(fn, arg) AW__AT((aw_to_thread)((fn), (arg)))
/* From inside a to_thread function: true once the waiting task was
 * cancelled. */
bool aw_thread_cancelled(void);

/* ------------------------------------------------------------------------ */
/* Tracing context (W3C Trace Context) and spans                aw_trace(3) */
/*
 * A request can be followed across services without a tracing library:
 * every task may have a current trace context — the trace id (16 bytes),
 * the id of the span it is in now (8 bytes), the trace flags and the
 * vendors' tracestate — which the http server takes from an incoming
 * `traceparent` header (or starts), the http client sends on with each
 * request, and the pg layer puts into a statement's SQL comment (opt-in).
 * Each span (a server request, a client request, a query, or any block
 * the program wraps in an aw_span) is recorded when it ends, with its
 * duration, to the log (awith/log.h) or a sink of the program's
 * (aw_span_sink_set; docs/observability.md, "Tracing", lists the fields).
 *
 * Inheritance: a task spawned (aw_spawn, aw_group_spawn) by a task that
 * has a trace context starts with a copy of it (tracestate included), so
 * its spans and outgoing requests belong to the same trace, as children
 * of the span that was current when it was spawned. A task spawned
 * outside any trace has none. Generators run in their task's context.
 *
 * Ids are random: a per-thread xoshiro256** generator seeded from
 * getrandom (and seeded again in a forked child); all-zero ids are never
 * made. A span costs about 90 ns when nobody records it (two monotonic
 * clock reads, a 64-bit id, a level check). Loop thread only, like the rest of core.h.
 */

#define AW_TRACEPARENT_LEN 55        /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define AW_TRACESTATE_MAX 512        /* chars of tracestate kept (W3C) */
#define AW_TRACESTATE_MEMBERS 32     /* list-members kept (W3C) */
#define AW_TRACE_SAMPLED 0x01        /* trace-flags bit: the caller records */

typedef struct aw_trace {
	uint8_t trace_id[16];
	uint8_t span_id[8];          /* the current span: parent of the next */
	uint8_t flags;               /* W3C trace-flags (version 00: sampled only) */
	const char *tracestate;      /* NUL-terminated, or NULL; borrowed: the
	                                owner of the aw_trace keeps it alive */
} aw_trace;

/* The running task's trace context, or NULL (none, or outside a task).
 * Valid while the span that made it current is open. */
const aw_trace *aw_trace_current(void);
/* Make t the running task's trace context and return the previous one
 * (NULL: none); t NULL clears it. The caller keeps *t alive until it puts
 * the previous one back. Outside a task: does nothing, returns NULL. For
 * layers that run a request under a context (aw_span does this itself). */
aw_trace *aw_trace_swap(aw_trace *t);
/* Fill t with a new trace: random trace id and span id, flags sampled, no
 * tracestate. */
void aw_trace_new(aw_trace *t);
/* A new random span id (never all zero). */
void aw_trace_span_id_new(uint8_t out[8]);
/* Parse a `traceparent` header value (W3C Trace Context, level 1): version
 * 00 is exactly "00-<32 hex>-<16 hex>-<2 hex>", lowercase hex; a higher
 * version is read by its first 55 characters (followed by the end or
 * '-'); version ff, uppercase or other non-hex, wrong lengths, an all-zero
 * trace id or parent id are -EINVAL (not raised: a malformed header means
 * "start a new trace", not an error). On success t gets the trace id, the
 * parent id as span_id, the flags, and no tracestate. */
int aw_trace_parse(aw_trace *t, const char *value, size_t len);
/* Write t as a version-00 traceparent ("00-<trace id>-<span id>-<flags>",
 * only the sampled flag kept) into out (room for AW_TRACEPARENT_LEN + 1),
 * NUL-terminated. Returns AW_TRACEPARENT_LEN. */
size_t aw_trace_format(const aw_trace *t, char *out);
/* Check and trim a `tracestate` header value into out (outlen bytes):
 * list-members "key=value" split by commas (optional spaces and tabs
 * around them, empty members dropped), keys and values as the W3C grammar
 * says. Malformed members, duplicate keys or more than 32 members drop the
 * whole value (the spec allows it: a partial list would lie); over 512
 * characters, members longer than 128 go first, then members from the
 * end. Returns the length written (0: nothing to keep), NUL-terminated
 * when outlen > 0. */
size_t aw_tracestate_clean(const char *in, size_t len, char *out, size_t outlen);
/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void aw_trace_hex(const uint8_t *bytes, size_t n, char *out);

/* Kinds of span (OpenTelemetry's names). */
enum { AW_SPAN_INTERNAL, AW_SPAN_SERVER, AW_SPAN_CLIENT };

/* A span: a named, timed piece of a trace. As a block manager:
 *
 *     aw_span s;
 *     AW_WITH(aw_span_init(&s, "load user")) { ... }
 *
 * enter makes a child of the current context (or starts a new trace when
 * the task has none): same trace id, a new span id, parent = the current
 * span id; it becomes the task's current context for the body (what
 * client requests, queries and spawned tasks inside see); exit puts the
 * parent back and records the span with the error the block is left with
 * (the exit lets it go on). aw_span_begin / aw_span_end are the same
 * without a block, for a layer's own spans. */
typedef struct aw_span {
	aw_mgr mgr;
	const char *name;            /* borrowed until recorded */
	aw_trace ctx;                /* trace id, this span's id, flags, tracestate */
	uint8_t parent_id[8];        /* all zero: a root span */
	int kind;                    /* AW_SPAN_* */
	int status;                  /* the layer's status (HTTP status), 0: none */
	int error;                   /* the code the span ended with, 0: none */
	const char *error_msg;       /* its message while recording, or NULL */
	aw_time start;               /* CLOCK_MONOTONIC */
	int64_t start_unix_ns;       /* CLOCK_REALTIME ns, set when the span is
	                                recorded (0 before: no clock read for
	                                spans nobody records) */
	/* internal */
	aw_trace *saved;             /* the context current before begin */
	aw_task *task;               /* the task it was made current in */
	bool current;
	bool open;
} aw_span;

/* Prepare a span manager (no I/O, cannot fail). */
aw_mgr *aw_span_init(aw_span *s, const char *name);
/* Open a span of `kind`, child of `parent` (NULL: the running task's
 * current context; none: a new trace). With make_current, it becomes the
 * running task's context until aw_span_end. */
void aw_span_begin(aw_span *s, const char *name, int kind, const aw_trace *parent, bool make_current);
/* Close it: put the previous context back (if it was made current),
 * record it with `err` (0 or a negative code; the message of the error in
 * flight is recorded when its code is err). Idempotent. */
void aw_span_end(aw_span *s, int err);
/* The layer's status for the record (e.g. the HTTP status). */
static inline void aw_span_set_status(aw_span *s, int status) { s->status = status; }

/* Where finished spans go. By default, to the log (awith/log.h): one
 * record per span on the "span" channel, at level AW_LOG_DEBUG (see
 * aw_span_log_level_set), not rate-limited, with the fields span (the
 * name), kind, trace_id, span_id, parent_id (absent for a root), sampled,
 * start (RFC 3339 UTC, microseconds), duration_ms, status (absent when
 * 0), error_code and error (absent when it ended without one), besides
 * the log's own (time, level, task, the task's context fields such as
 * request_id): docs/observability.md, "Tracing". aw_span_sink_set
 * replaces that with fn(span, duration, arg), called in the task that
 * ended the span, right after (it must not wait; span->error_msg is
 * valid during the call), e.g. to export spans elsewhere; fn NULL puts
 * the log back. Process-wide; set it at the start of main. */
typedef void aw_span_sink_fn(const aw_span *s, aw_time duration, void *arg);
void aw_span_sink_set(aw_span_sink_fn *fn, void *arg);
/* The log level of span records (an AW_LOG_* value of awith/log.h;
 * default AW_LOG_DEBUG, so that a service logs them once its level is
 * debug, or at AW_LOG_INFO once set here); 0 stops recording them. */
void aw_span_log_level_set(int level);

/* ------------------------------------------------------------------------ */
/* Observability: the ledger and the dump                        aw_dump(3) */

/* A resource opened with a manual (non-block) API, tracked until closed. */
typedef struct aw_ledger_entry {
	const char *what;
	const aw_loc *loc;
	aw_time since;
	aw_task *task;
	const void *owner;   /* optional: the tracked object (set after open) */
	/* optional: called after a leak report at loop shutdown, e.g. to free
	 * an entry allocated for the purpose (set after open) */
	void (*release)(struct aw_ledger_entry *e);
	struct aw_ledger_entry *prev, *next;
} aw_ledger_entry;
/* Record that `what` was opened at loc (by the running task, if any). */
void aw_ledger_open(aw_ledger_entry *e, const char *what, const aw_loc *loc);
/* Record that it was closed. Safe to call twice. */
void aw_ledger_close(aw_ledger_entry *e);
/* Number of open manual entries on this thread's loop. */
size_t aw_ledger_count(void);

/* Print every task: id, name, state, where it waits, and every manager it
 * holds (what, entered at file:line, for how long), then the open manual
 * ledger entries. Also sent by the dump signal (aw_config.dump_signal). */
void aw_dump(FILE *out);

/* The ledger as data (what aw_dump prints, for a program to show: the http
 * layer's debug page serves it as JSON). aw_ledger_visit walks, on the
 * calling thread's loop and in one go (no callback may wait, so the
 * picture is consistent: nothing runs between two callbacks):
 *   1. loop(): the loop's gauges (aw_loop_gauges);
 *   2. for every live task, task() and then hold() for each manager it
 *      holds (innermost block first; a block of several managers gives one
 *      hold per entered manager, in entry order) and each manual ledger
 *      entry it opened (aw_enter, aw_pg_pool_acquire ...; manual = true);
 *   3. hold() with task NULL for the open manual entries whose task has
 *      ended (or that were opened outside any task);
 *   4. event() for the recent slow steps and deadlock reports, oldest
 *      first (the loop keeps the last AW_LOOP_EVENTS);
 *   5. gauge() for every gauge source (aw_gauge_source_add), e.g. each pg
 *      pool's size / idle / in use / waiters.
 * Any callback may be NULL. Strings and locations passed to a callback are
 * valid during that call only. Returns 0, or -ESRCH (not raised) when the
 * thread has no loop; then nothing is called. */
typedef struct aw_task_info {
	uint64_t id;
	const char *name;
	const char *state;        /* "running", "ready" or "waiting" */
	const aw_loc *where;      /* where it waits (or last waited); NULL if never */
	aw_time waiting;          /* for how long it has waited (ns), measured
	                             from when it parked (loop time, exact to one
	                             loop step); 0 unless waiting */
	bool cancelled;
} aw_task_info;
typedef struct aw_hold_info {
	const char *what;         /* the manager's name ("pg transaction", "lock"
	                             ...) or the manual entry's */
	const aw_loc *loc;        /* where it was entered (NULL: unknown) */
	aw_time age;              /* for how long it has been held (ns) */
	const char *detail;       /* the manager's describe() line, or "" */
	bool manual;              /* opened with a manual API, not a block */
} aw_hold_info;
typedef struct aw_loop_gauges {
	size_t tasks, running, ready, waiting;  /* live tasks and their states */
	size_t manual;            /* open manual ledger entries */
	uint64_t switches;        /* task switches and poll returns so far */
	uint64_t slow_steps;      /* slow steps reported so far */
	size_t thread_jobs;       /* aw_to_thread jobs not yet delivered */
	int pid;                  /* the process (the worker, under SO_REUSEPORT) */
} aw_loop_gauges;
/* A slow step or a deadlock report, as aw_ledger_visit hands it. */
enum { AW_LOOP_EVENT_SLOW_STEP = 1, AW_LOOP_EVENT_DEADLOCK = 2 };
#define AW_LOOP_EVENTS 32
typedef struct aw_loop_event {
	int kind;                 /* AW_LOOP_EVENT_* */
	aw_time ago;              /* how long ago it was reported (ns) */
	aw_time duration;         /* slow step: how long the step ran (ns) */
	const char *task;         /* slow step: the task's name, "" if unknown */
	const aw_loc *resumed_at; /* slow step: where it resumed (may be NULL) */
	const aw_loc *waits_at;   /* slow step: where it next waited (may be NULL) */
	const char *text;         /* the line printed to the loop's log */
} aw_loop_event;
typedef struct aw_ledger_visitor {
	void *ctx;
	void (*loop)(void *ctx, const aw_loop_gauges *g);
	void (*task)(void *ctx, const aw_task_info *t);
	void (*hold)(void *ctx, const aw_task_info *t, const aw_hold_info *h);
	void (*event)(void *ctx, const aw_loop_event *e);
	/* source: the source's ordinal in this walk (two pools both named
	 * "pg pool" have different ones) */
	void (*gauge)(void *ctx, unsigned source, const char *source_name, const char *name, double value);
} aw_ledger_visitor;
int aw_ledger_visit(const aw_ledger_visitor *v);

/* A gauge source: something with numbers worth watching (a connection
 * pool), registered on the running thread's loop for aw_ledger_visit.
 * read() calls emit(ctx, name, value) for each gauge; it must not wait.
 * The struct is embedded in the object it describes; name stays valid
 * while registered. Remove it before freeing the object (remove is safe
 * twice, and on a never-added source). No loop: add does nothing. */
typedef struct aw_gauge_source {
	const char *name;
	void (*read)(struct aw_gauge_source *s,
		     void (*emit)(void *ctx, const char *name, double value), void *ctx);
	struct aw_gauge_source *prev, *next;
	bool added;
} aw_gauge_source;
void aw_gauge_source_add(aw_gauge_source *s);
void aw_gauge_source_remove(aw_gauge_source *s);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* AWITH_CORE_H */
