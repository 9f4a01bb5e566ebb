/* SPDX-License-Identifier: MIT */
/*
 * The loop: one per thread. Each iteration runs due timers, runs the ready
 * tasks (they hand over to each other directly, within a budget), and
 * polls the backend, blocking only when nothing is ready. Small on
 * purpose: the interesting work lives in tasks.
 */
#include "internal.h"
#include "awith/metrics.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define AW_BUDGET 1024   /* task switches between two polls */

aw_time aw_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (aw_time)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

aw_time aw_loop_now(void)
{
	aw_loop *l = aw__loop;
	return l ? l->now : aw_now();
}

aw_time aw_deadline_after(aw_time dur)
{
	if (dur <= 0)
		return aw_now();
	aw_time now = aw_now();
	return dur >= AW_NEVER - now ? AW_NEVER : now + dur;
}

void aw_config_default(aw_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->stack_size = AW_ASAN ? 256 * 1024 : 64 * 1024;
	cfg->stack_cache = 1024;
	cfg->grace = AW_SEC(5);
	cfg->slow_step = AW_MS(100);
	cfg->threads = 4;
	cfg->dump_signal = SIGUSR1;
	cfg->log = stderr;
	const char *dbg = getenv("AWITH_DEBUG_ERRORS");
	cfg->debug_errors = dbg && *dbg && strcmp(dbg, "0") != 0;
}

/* ---- fd readiness ----------------------------------------------------------- */

int aw__fd_state(aw_loop *l, int fd, aw_fdstate **out)
{
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= l->nfds) {
		size_t n = l->nfds ? l->nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		aw_fdstate *v = aw__realloc(l->fds, n * sizeof *v);
		if (!v)
			return -ENOMEM;
		memset(v + l->nfds, 0, (n - l->nfds) * sizeof *v);
		l->fds = v;
		l->nfds = n;
	}
	*out = &l->fds[fd];
	return 0;
}

void aw__on_ready(void *ctx, uint64_t data, bool rd, bool wr, bool hup)
{
	aw_loop *l = ctx;
	if (data == UINT64_MAX) {            /* the wake eventfd */
		uint64_t n;
		ssize_t r = read(l->wake_fd, &n, sizeof n);
		(void)r;
		aw_threadpool_deliver(l);
		return;
	}
	if (data >= l->nfds)
		return;
	aw_fdstate *s = &l->fds[data];
	if (hup && !s->hup) {
		s->hup = true;
		if (s->on_hup)
			s->on_hup(s->hup_arg);
		s = &l->fds[data];   /* a hook that registered another fd may have moved the table */
	}
	/* A task waiting for an io_uring receive or send of this fd is woken
	 * by that operation's completion, not by a readiness edge. */
	if (rd) {
		s->readable = true;
		if (s->reader && !s->read_op)
			aw_task_wake(s->reader, 0);
	}
	if (wr) {
		s->writable = true;
		if (s->writer && !(s->send_op && s->send_op->task == s->writer))
			aw_task_wake(s->writer, 0);
	}
}

int (aw_fd_wait_any)(int fd, int directions, aw_time deadline)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_fd_wait outside of a task");
	if (!directions || (directions & ~(AW_READABLE | AW_WRITABLE)))
		return aw_raise(-EINVAL, "aw_fd_wait: directions must be AW_READABLE and/or AW_WRITABLE");
	bool rd = directions & AW_READABLE, wr = directions & AW_WRITABLE;
	aw_fdstate *s;
	int rc = aw__fd_state(l, fd, &s);
	if (rc)
		return aw_raise(rc, "aw_fd_wait(%d): %s", fd, aw_strerror(rc));
	if (!s->registered) {
		rc = aw_backend_add(&l->backend, fd, (uint64_t)fd);
		if (rc == -EEXIST)
			rc = 0;
		if (rc)
			return aw_raise(rc, "cannot watch fd %d: %s", fd, aw_strerror(rc));
		s->registered = true;
		/* Edge-triggered: the first epoll_wait reports what is ready now. */
		s->readable = s->writable = false;
	}
	/* An edge that arrived since the last wait is reported once; the
	 * caller retries its I/O and waits again on EAGAIN. */
	int ready = (rd && s->readable ? AW_READABLE : 0) | (wr && s->writable ? AW_WRITABLE : 0);
	if (ready) {
		if (ready & AW_READABLE)
			s->readable = false;
		if (ready & AW_WRITABLE)
			s->writable = false;
		return ready;
	}
	if ((rd && s->reader) || (wr && s->writer)) {
		aw_task *other = rd && s->reader ? s->reader : s->writer;
		return aw_raise(-AW_EBUSY_WAIT, "task '%s' already waits for fd %d to be %s", other->name, fd,
				rd && s->reader ? "readable" : "writable");
	}
	if (rd)
		s->reader = t;
	if (wr)
		s->writer = t;
	int v = aw_task_park(deadline, false);
	/* The fd table may have moved (realloc) while we waited. */
	s = &l->fds[fd];
	if (s->reader == t)
		s->reader = NULL;
	if (s->writer == t)
		s->writer = NULL;
	if (v == AW_WAKE_TIMER)
		return aw_raise(-ETIMEDOUT, "fd %d did not become %s before the deadline", fd,
				rd && wr ? "ready" : rd ? "readable" : "writable");
	if (v < 0)
		return v;
	if (v > 0)
		return aw_raise(-v, "fd %d: %s", fd, aw_strerror(-v));
	ready = (rd && s->readable ? AW_READABLE : 0) | (wr && s->writable ? AW_WRITABLE : 0);
	if (ready & AW_READABLE)
		s->readable = false;
	if (ready & AW_WRITABLE)
		s->writable = false;
	return ready ? ready : directions;
}

int (aw_fd_recv)(int fd, void *buf, size_t len, size_t *got, aw_time deadline)
{
	*got = 0;
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_fd_recv outside of a task");
#if AW_HAVE_IO_URING
	if (l->backend.kind != AW_BACKEND_KIND_URING)
		return -EOPNOTSUPP;
	aw_fdstate *s;
	int rc = aw__fd_state(l, fd, &s);
	if (rc)
		return aw_raise(rc, "aw_fd_recv(%d): %s", fd, aw_strerror(rc));
	if (s->reader)
		return aw_raise(-AW_EBUSY_WAIT, "task '%s' already waits for fd %d to be readable", s->reader->name,
				fd);
	/* AWITH_URING_RECV=multishot: from the loop's buffer ring
	 * (recv_ring.c); -EOPNOTSUPP: this one goes as a single receive. */
	rc = aw__recvq_recv(l, fd, buf, len, got, deadline);
	if (rc != -EOPNOTSUPP)
		return rc;
	s = &l->fds[fd];   /* it may have waited: the table may have moved */
	aw_backend_op op = { .task = t };
	rc = aw_uring_recv(&l->backend, fd, buf, len, &op);
	if (rc)
		return aw_raise(rc, "fd %d: cannot queue a receive: %s", fd, aw_strerror(rc));
	s->reader = t;
	s->read_op = &op;
	int v;
	do   /* a readiness edge of fd (a poll on it) wakes the reader with 0 too: not ours */
		v = aw_task_park(deadline, false);
	while (v == 0 && !op.done);
	if (!op.done) {
		/* Deadline, cancellation, or aw_fd_forget (EBADF): the kernel
		 * may still write into buf. Cancel, and wait with
		 * cancellation off until it has let go of it. */
		aw_uring_cancel(&l->backend, &op, false);
		while (!op.done)
			(void)aw_task_park(AW_NEVER, true);
	}
	s = &l->fds[fd];   /* the table may have moved */
	if (s->reader == t)
		s->reader = NULL;
	if (s->read_op == &op)
		s->read_op = NULL;
	if (op.res > 0)
		*got = (size_t)op.res;
	if (v < 0 && v != AW_WAKE_TIMER)
		return v;   /* cancelled (raised): what did land is in *got */
	if (v > 0)
		return aw_raise(-v, "fd %d: %s", fd, aw_strerror(-v));
	if (op.res >= 0)
		return 0;   /* data or end of file (also when it beat the deadline) */
	if (op.res == -ECANCELED && v == AW_WAKE_TIMER)
		return aw_raise(-ETIMEDOUT, "fd %d: no data before the deadline", fd);
	return aw_raise(op.res, "fd %d: receive: %s", fd, aw_strerror(op.res));
#else
	(void)fd;
	(void)buf;
	(void)len;
	(void)deadline;
	return -EOPNOTSUPP;
#endif
}

int (aw_fd_wait)(int fd, int direction, aw_time deadline)
{
	if (direction != AW_READABLE && direction != AW_WRITABLE)
		return aw_raise(-EINVAL, "aw_fd_wait: direction must be AW_READABLE or AW_WRITABLE");
	int rc = (aw_fd_wait_any)(fd, direction, deadline);
	return rc < 0 ? rc : 0;
}

bool aw_fd_peer_closed(int fd)
{
	aw_loop *l = aw__loop;
	return l && fd >= 0 && (size_t)fd < l->nfds && l->fds[fd].hup;
}

int aw_fd_take_ready(int fd)
{
	aw_loop *l = aw__loop;
	if (!l || fd < 0 || (size_t)fd >= l->nfds)
		return 0;
	aw_fdstate *s = &l->fds[fd];
	int r = (s->readable ? AW_READABLE : 0) | (s->hup ? AW_FD_HUP : 0);
	s->readable = false;
	return r;
}

int aw_fd_watch(int fd)
{
	aw_loop *l = aw__loop;
	if (!l)
		return -AW_ENOTASK;
	aw_fdstate *s;
	int rc = aw__fd_state(l, fd, &s);
	if (rc)
		return rc;
	if (s->registered)
		return 0;
	rc = aw_backend_add(&l->backend, fd, (uint64_t)fd);
	if (rc == -EEXIST)
		rc = 0;
	if (rc)
		return rc;
	s->registered = true;
	s->readable = s->writable = false;
	return 0;
}

int aw_fd_on_hup(int fd, void (*fn)(void *arg), void *arg)
{
	aw_loop *l = aw__loop;
	if (!l)
		return -AW_ENOTASK;
	int rc = aw_fd_watch(fd);
	if (rc)
		return rc;
	aw_fdstate *s = &l->fds[fd];
	s->on_hup = fn;
	s->hup_arg = arg;
	return 0;
}

void aw_fd_forget(int fd)
{
	aw_loop *l = aw__loop;
	if (!l || fd < 0 || (size_t)fd >= l->nfds)
		return;
	aw_fdstate *s = &l->fds[fd];
#if AW_HAVE_IO_URING
	/* A receive in flight into a buffer the caller may free once the fd
	 * is gone: have the kernel let go of it before returning. */
	if (s->read_op && !s->read_op->done && l->backend.kind == AW_BACKEND_KIND_URING)
		aw_uring_cancel(&l->backend, s->read_op, true);
	if (s->send_op)
		aw__fd_send_forget(l, fd);
	if (l->fds[fd].accept_q)
		aw__fd_accept_forget(l, fd);
	aw__recvq_forget(l, fd);
	s = &l->fds[fd];   /* a poll in there may have moved the table */
#endif
	if (s->registered)
		aw_backend_del(&l->backend, fd);
	/* Positive wake values are errno codes for the waiter. */
	if (s->reader)
		aw_task_wake(s->reader, EBADF);
	if (s->writer)
		aw_task_wake(s->writer, EBADF);
	memset(s, 0, sizeof *s);
}

int aw_fd_close(int fd)
{
	aw_fd_forget(fd);
	return close(fd) == 0 ? 0 : -errno;
}

static bool fd_waiters(aw_loop *l)
{
	if (l->backend.ops)
		return true;   /* a task waits for an io_uring operation */
	for (size_t i = 0; i < l->nfds; i++)
		if (l->fds[i].reader || l->fds[i].writer)
			return true;
	return false;
}

/* ---- the dump signal ------------------------------------------------------ */

/* Process-wide: every running loop (any thread) that wants the dump signal.
 * Slots are claimed and cleared with atomics (loops start and stop on
 * several threads at once); the handler only reads them. A loop leaving
 * clears its slot, then waits until no handler is still inside (one may
 * have loaded the pointer just before): only then is the loop freed. More
 * than 64 loops at once: the extra ones get no dump on the signal. */
#define AW_SIGNAL_LOOPS 64
static _Atomic(aw_loop *) signal_loops[AW_SIGNAL_LOOPS];
static atomic_int signal_handlers_inside;

static void on_dump_signal(int sig)
{
	(void)sig;
	int saved = errno;
	atomic_fetch_add(&signal_handlers_inside, 1);
	for (size_t i = 0; i < AW_SIGNAL_LOOPS; i++) {
		aw_loop *l = atomic_load(&signal_loops[i]);
		if (l) {
			atomic_store_explicit(&l->dump_requested, 1, memory_order_relaxed);
			aw_loop_notify(l);
		}
	}
	atomic_fetch_sub(&signal_handlers_inside, 1);
	errno = saved;
}

static void signal_register(aw_loop *l, bool on)
{
	for (size_t i = 0; i < AW_SIGNAL_LOOPS; i++) {
		aw_loop *expected = on ? NULL : l;
		if (atomic_compare_exchange_strong(&signal_loops[i], &expected, on ? l : NULL))
			break;
	}
	if (!on)
		while (atomic_load(&signal_handlers_inside))
			sched_yield();
}

/* ---- running -------------------------------------------------------------- */

/* Run ready tasks until none is ready or the budget is spent. */
static void run_ready(aw_loop *l)
{
	l->budget = AW_BUDGET;
	while (l->ready_head && l->budget) {
		aw_task *t = l->ready_head;
		l->ready_head = t->next_ready;
		if (!l->ready_head)
			l->ready_tail = NULL;
		t->next_ready = NULL;
		l->budget--;
		t->state = AW_TASK_RUNNING;
		l->running = t;
		aw__hot = &t->hot;
		aw_coro_switch(&l->main, t->cur);
		l->running = NULL;
		aw__hot = NULL;
	}
}

static void cancel_all(aw_loop *l)
{
	for (aw_task *t = l->all; t; t = t->all_next)
		aw_task_cancel(t);
}

/* One iteration: timers, ready tasks, then poll (blocking only if nothing
 * is ready). Returns false on a deadlock: nothing is ready and nothing
 * (timer, fd, thread job, signal) can ever make a task ready. */
static bool iterate(aw_loop *l, const aw_task *until)
{
	l->now = aw_now();
	aw_timer_run(&l->timers, l->now, l->timers_run_at);
	l->timers_run_at = l->now;
	run_ready(l);
	if (atomic_load_explicit(&l->dump_requested, memory_order_relaxed)) {
		atomic_store_explicit(&l->dump_requested, 0, memory_order_relaxed);
		aw_dump(l->cfg.log);
	}
	if (!l->ntasks || (until && until->state == AW_TASK_DONE))
		return true;   /* nothing left to wait for, or main returned:
		                  do not block in poll before phase 2 */
	aw_time timeout = 0;
	if (!l->ready_head) {
		aw_time next = aw_timer_next(&l->timers);
		if (next == AW_NEVER) {
			if (l->ntasks && !fd_waiters(l) && !aw_threadpool_inflight(l))
				return false;
			timeout = -1;
		} else {
			l->now = aw_now();
			timeout = next > l->now ? next - l->now : 0;
		}
	}
	/* Publish the loop's gauges before it may block (this thread's
	 * share, once per iteration rather than per task, and only when they
	 * changed). */
	if (AW_UNLIKELY(l->ntasks != l->published_tasks || l->nparked != l->published_parked)) {
		l->published_tasks = l->ntasks;
		l->published_parked = l->nparked;
		aw_metric_gauge_set(aw__metrics.tasks_alive, (double)l->ntasks);
		aw_metric_gauge_set(aw__metrics.tasks_parked, (double)l->nparked);
	}
	atomic_store_explicit(&l->in_poll, 1, memory_order_relaxed);
	aw_backend_poll(&l->backend, timeout, aw__on_ready, l);
	atomic_store_explicit(&l->in_poll, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&l->switches, 1, memory_order_relaxed);
	return true;
}

/* Nothing can run again: report, and cancel every task so that each one's
 * waits fail and its exits run. If that wakes nobody (every task waits
 * with cancellation off, e.g. to re-take a lock that a finished task still
 * holds), the program cannot go on: say so and abort rather than spin or
 * hang. */
static void report_deadlock(aw_loop *l)
{
	size_t ready_before = 0;
	/* One line for aw_ledger_visit: the tasks and where they wait. */
	char line[240];
	int n = snprintf(line, sizeof line, "awith: deadlock: %zu task(s) wait and nothing can wake them:", l->ntasks);
	for (aw_task *t = l->all; t && n > 0 && (size_t)n < sizeof line; t = t->all_next) {
		const aw_loc *w = t->where;
		n += snprintf(line + n, sizeof line - (size_t)n, "%s '%s' at %s:%d", t == l->all ? "" : ";", t->name,
			      w && w->file ? w->file : "?", w ? w->line : 0);
	}
	aw_loop_event_record(l, AW_LOOP_EVENT_DEADLOCK, 0, "", NULL, NULL, line);
	fprintf(l->cfg.log, "awith: deadlock: every task waits and nothing can wake them; "
			    "cancelling them all. Tasks:\n");
	aw_dump(l->cfg.log);
	cancel_all(l);
	for (aw_task *t = l->ready_head; t; t = t->next_ready)
		ready_before++;
	if (!ready_before) {
		fprintf(l->cfg.log, "awith: deadlock is unrecoverable: no task can be cancelled "
				    "(all wait with cancellation off); aborting\n");
		fflush(l->cfg.log);
		abort();
	}
}

static void loop_free(aw_loop *l)
{
	aw_watchdog_stop(l);
	aw_threadpool_shutdown(l);
	if (l->cfg.dump_signal)
		signal_register(l, false);
	aw_stack_overflow_handler_remove(l);
	aw_stack_cache_drain(l);
	aw_timer_heap_free(&l->timers);
	aw_backend_fini(&l->backend);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	for (size_t i = 0; i < l->nfds; i++) {
		free(l->fds[i].send_op);   /* sends of fds never forgotten (the ring is gone) */
#if AW_HAVE_IO_URING
		if (l->fds[i].accept_q)
			aw__fd_accept_free(l->fds[i].accept_q);
#endif
	}
	free(l->fds);
	aw_error_free(l->thread_err);
	free(l);
}

int aw_run_config(const aw_config *cfg, aw_task_fn main_fn, void *arg)
{
	if (aw__loop)
		return -EBUSY;
	if (!main_fn)
		return -EINVAL;
	aw_loop *l = aw__calloc(1, sizeof *l);
	if (!l)
		return -ENOMEM;
	aw_config_default(&l->cfg);
	if (cfg) {
		aw_config c = *cfg;
		if (c.stack_size)
			l->cfg.stack_size = c.stack_size;
		l->cfg.stack_cache = c.stack_cache;
		if (c.grace > 0)
			l->cfg.grace = c.grace;
		l->cfg.slow_step = c.slow_step;
		if (c.threads)
			l->cfg.threads = c.threads;
		l->cfg.dump_signal = c.dump_signal;
		if (c.log)
			l->cfg.log = c.log;
		l->cfg.debug_errors = l->cfg.debug_errors || c.debug_errors;
		l->cfg.backend = c.backend;
	}
	long ps = sysconf(_SC_PAGESIZE);
	if (l->cfg.stack_size < 16 * 1024)
		l->cfg.stack_size = 16 * 1024;
	l->cfg.stack_size = (l->cfg.stack_size + (size_t)ps - 1) / (size_t)ps * (size_t)ps;
	l->wake_fd = -1;
	l->backend.fd = -1;
	int rc = aw_backend_init(&l->backend, l->cfg.backend, l->cfg.log);
	if (rc) {
		loop_free(l);
		return rc;
	}
	l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wake_fd < 0 || aw_backend_add(&l->backend, l->wake_fd, UINT64_MAX) != 0) {
		rc = -errno;
		loop_free(l);
		return rc ? rc : -EMFILE;
	}
	aw__loop = l;
	l->now = aw_now();
	l->timers_run_at = l->now;
	aw__metrics_core_init();
	aw_metric_gauge_add(aw__metrics.loops, 1);
	aw_stack_overflow_handler_install(l);
	if (l->cfg.dump_signal) {
		signal_register(l, true);
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = on_dump_signal;
		sa.sa_flags = SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(l->cfg.dump_signal, &sa, NULL);
	}
	aw_watchdog_start(l);

	aw_task *main_task;
	aw_spawn_opts o = { .name = "main" };
	rc = aw_spawn_with(&main_task, main_fn, arg, &o);
	if (rc) {
		fprintf(l->cfg.log, "awith: cannot start the main task: %s\n", aw_strerror(rc));
		aw__loop = NULL;
		loop_free(l);
		return rc;
	}
	/* Phase 1: until main returns. */
	while (main_task->state != AW_TASK_DONE)
		if (!iterate(l, main_task))
			report_deadlock(l);
	/* Phase 2: cancel what is left and let it unwind (exits run). */
	l->stopping = true;
	if (l->ntasks)
		cancel_all(l);
	while (l->ntasks)
		if (!iterate(l, NULL))
			report_deadlock(l);
	int result = main_task->result;
	if (result < 0 && main_task->err) {
		fprintf(l->cfg.log, "awith: main task failed:\n");
		aw_error_print(l->cfg.log, main_task->err);
	}
	aw_task_free(l, main_task);
	/* Joinable tasks nobody joined or detached: report and free. */
	while (l->all) {
		aw_task *t = l->all;
		fprintf(l->cfg.log, "awith: leak: task '%s' finished but was never joined or detached\n", t->name);
		aw_task_free(l, t);
	}
	aw_ledger_report_leaks(l);
	aw__gen_runners_drain(l);
	aw_metric_gauge_add(aw__metrics.loops, -1);
	aw_metric_gauge_set(aw__metrics.tasks_alive, 0);
	aw_metric_gauge_set(aw__metrics.tasks_parked, 0);
	aw__loop = NULL;
	loop_free(l);
	return result;
}

int aw_run(aw_task_fn main_fn, void *arg)
{
	return aw_run_config(NULL, main_fn, arg);
}
