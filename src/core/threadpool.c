/* SPDX-License-Identifier: MIT */
/*
 * aw_to_thread: blocking work on a small per-loop pool of threads.
 *
 * A job lives in the frame of the task that waits for it. That is safe
 * because the task waits for its job in every case: until the job is
 * withdrawn (not started yet) or delivered back (finished). A cancelled task
 * whose job is already running cannot stop it (C has no safe way to), so it
 * raises the job's `cancelled` flag for fn to poll and waits on, shielded.
 *
 * Threads: workers start lazily, up to cfg.threads, when a job finds no idle
 * worker. The pending FIFO and the completion list sit under one mutex. A
 * worker that finishes a job appends it to the completion list and, if the
 * list was empty, writes the loop's eventfd (loop->wake_fd); the loop then
 * calls aw_threadpool_deliver, which takes the whole list and wakes each
 * task. Tasks, the wait, the wake and `inflight` all stay on the loop thread;
 * workers touch only the pool and the jobs they hold.
 *
 * Errors: fn runs with no loop on its thread, so an aw_raise inside it goes
 * to that thread's own error slot. A failing fn's error is taken there and
 * raised on the waiting task, so its message and location survive the trip.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_DEFAULT_THREADS 4   /* aw_config.threads == 0 */

enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

typedef struct aw_job aw_job;
struct aw_job {
	aw_job *prev, *next;     /* pending FIFO or completion list (mutex) */
	int (*fn)(void *arg);
	void *arg;
	aw_task *task;           /* the waiting task */
	int state;               /* JOB_*, under the mutex */
	int result;              /* fn's result, set under the mutex */
	aw_error *err;           /* the worker's error when result < 0 */
	atomic_int cancelled;    /* the task gave up: fn may stop early */
	bool delivered;          /* loop thread only: handed back by deliver */
};

struct aw_threadpool {
	aw_loop *loop;
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* workers wait here for jobs or stop */
	aw_job *pending_head, *pending_tail;
	size_t npending;
	aw_job *done_head, *done_tail;
	pthread_t *threads;      /* [max] */
	unsigned nthreads, max;
	unsigned idle;           /* workers waiting on cv */
	bool stop;
	size_t inflight;         /* loop thread only: submitted, not yet
	                            withdrawn or delivered */
};

/* The job the current worker thread runs, for aw_thread_cancelled. */
static __thread aw_job *tls_job;

/* ---- lists (caller holds the mutex) -------------------------------------- */

/* Queue j last in the pending FIFO. */
static void pending_append(aw_threadpool *p, aw_job *j)
{
	j->next = NULL;
	j->prev = p->pending_tail;
	if (p->pending_tail)
		p->pending_tail->next = j;
	else
		p->pending_head = j;
	p->pending_tail = j;
	p->npending++;
}

/* Take j out of the pending FIFO (a worker picks it, or it is withdrawn). */
static void pending_remove(aw_threadpool *p, aw_job *j)
{
	if (j->prev)
		j->prev->next = j->next;
	else
		p->pending_head = j->next;
	if (j->next)
		j->next->prev = j->prev;
	else
		p->pending_tail = j->prev;
	j->prev = j->next = NULL;
	p->npending--;
}

/* Append to the completion list. True if it was empty, i.e. the loop has not
 * been told about any of its jobs yet and must be woken. */
static bool done_append(aw_threadpool *p, aw_job *j)
{
	bool first = p->done_head == NULL;
	j->next = NULL;
	if (p->done_tail)
		p->done_tail->next = j;
	else
		p->done_head = j;
	p->done_tail = j;
	return first;
}

/* ---- workers ----------------------------------------------------------- */

/* Worker thread: take pending jobs FIFO until told to stop and the FIFO is
 * empty. Runs with every signal blocked (inherited from pool_grow_locked),
 * so signals keep going to the loop thread. */
static void *worker_main(void *arg)
{
	aw_threadpool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->pending_head && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->cv, &p->mu);
			p->idle--;
		}
		aw_job *j = p->pending_head;
		if (!j)
			break;
		pending_remove(p, j);
		j->state = JOB_RUNNING;
		pthread_mutex_unlock(&p->mu);

		tls_job = j;
		int r = j->fn(j->arg);
		tls_job = NULL;
		/* A failure's rich error is carried to the task; anything
		 * left over from a success must not leak into the next job. */
		aw_error *e = NULL;
		if (r < 0)
			e = aw_error_take();
		else
			aw_error_clear();

		pthread_mutex_lock(&p->mu);
		j->result = r;
		j->err = e;
		j->state = JOB_DONE;
		/* After this the job may be delivered and its frame gone at
		 * any moment: do not touch j again. */
		if (done_append(p, j))
			aw_loop_notify(p->loop);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Start one more worker if the pending jobs outnumber the idle workers and
 * the pool may grow. Returns 0 or a pthread_create error (positive). Caller
 * holds the mutex. The loop thread's signals are blocked around the create
 * so the worker starts with all of them blocked: no window in which a
 * signal meant for the loop could land on it. */
static int pool_grow_locked(aw_threadpool *p)
{
	if (p->idle >= p->npending || p->nthreads >= p->max)
		return 0;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&p->threads[p->nthreads], NULL, worker_main, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return err;
	p->nthreads++;
	return 0;
}

/* Create loop->pool (no threads yet). 0, or -ENOMEM / the pthread init
 * error, raised. */
static int pool_create(aw_loop *loop)
{
	unsigned max = loop->cfg.threads ? loop->cfg.threads : POOL_DEFAULT_THREADS;
	aw_threadpool *p = aw__calloc(1, sizeof *p);
	pthread_t *threads = aw__calloc(max, sizeof *threads);
	if (!p || !threads) {
		free(threads);
		free(p);
		return aw_raise(-ENOMEM, "aw_to_thread: cannot allocate the thread pool");
	}
	int err = pthread_mutex_init(&p->mu, NULL);
	if (!err) {
		err = pthread_cond_init(&p->cv, NULL);
		if (err)
			pthread_mutex_destroy(&p->mu);
	}
	if (err) {
		free(threads);
		free(p);
		errno = err;
		return aw_raise(-err, "aw_to_thread: cannot set up the thread pool: %m");
	}
	p->loop = loop;
	p->threads = threads;
	p->max = max;
	loop->pool = p;
	return 0;
}

/* ---- the task side --------------------------------------------------------- */

/* Raise the finished job's outcome on the task and return its result: a
 * failing fn's own error if it raised one with the same code, else an error
 * made for it. */
static int job_result(aw_job *j)
{
	aw_error *e = j->err;
	j->err = NULL;
	if (j->result >= 0)
		return j->result;
	if (e && e->code == j->result) {
		aw_error_raise_obj(e);
		return j->result;
	}
	int r;
	if (e)
		r = aw_raise(j->result, "aw_to_thread: the function returned %d (%s); it had "
			     "raised: %s", j->result, aw_strerror(j->result), e->msg);
	else
		r = aw_raise(j->result, "aw_to_thread: the function failed: %s",
			     aw_strerror(j->result));
	aw_error_free(e);
	return r;
}

/* Waits: run fn(arg) on the loop's pool and return its result (a negative
 * result is raised on the task, see job_result). If cancelled before fn
 * started, the job is withdrawn and the cancel code returned at once; if fn
 * runs, aw_thread_cancelled() turns true for it and the task waits
 * (shielded) until it is done, then returns the cancel code, fn's result
 * discarded. A job already delivered when the task would notice the
 * cancellation returns its result; the next wait reports the cancellation.
 * -AW_ENOTASK outside a task, -EINVAL for a NULL fn, -ENOMEM or a thread
 * creation error (-EAGAIN) if no worker can run it. */
int (aw_to_thread)(int (*fn)(void *arg), void *arg)
{
	aw_task *t = aw__current();
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_to_thread: the caller is not a task");
	if (!fn)
		return aw_raise(-EINVAL, "aw_to_thread: fn is NULL");
	aw_loop *loop = t->loop;
	if (!loop->pool) {
		int rc = pool_create(loop);
		if (rc < 0)
			return rc;
	}
	aw_threadpool *p = loop->pool;

	aw_job job = { .fn = fn, .arg = arg, .task = t, .state = JOB_QUEUED };
	atomic_init(&job.cancelled, 0);

	pthread_mutex_lock(&p->mu);
	pending_append(p, &job);
	int err = pool_grow_locked(p);
	if (err && p->nthreads == 0) {
		/* Nobody could ever run it. With at least one worker the job
		 * just waits its turn. */
		pending_remove(p, &job);
		pthread_mutex_unlock(&p->mu);
		errno = err;
		return aw_raise(-err, "aw_to_thread: cannot start a worker thread: %m");
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	p->inflight++;

	int rc;
	do
		rc = aw_task_park(AW_NEVER, false);
	while (!job.delivered && rc >= 0);
	if (job.delivered && rc >= 0)
		/* Delivered counts even if a cancellation came first
		 * (task_hand made park return 0). */
		return job_result(&job);
	if (job.delivered) {
		/* Not expected (see task_hand), but the cancel code is
		 * raised already: report it, drop the result. */
		aw_error_free(job.err);
		return rc;
	}

	/* Cancelled (the code is already raised on the task). */
	pthread_mutex_lock(&p->mu);
	if (job.state == JOB_QUEUED) {
		pending_remove(p, &job);
		pthread_mutex_unlock(&p->mu);
		p->inflight--;
		return rc;
	}
	atomic_store_explicit(&job.cancelled, 1, memory_order_relaxed);
	pthread_mutex_unlock(&p->mu);
	/* Running or finished: a worker holds (or held) a pointer into this
	 * frame, so stay until deliver has taken it back. */
	while (!job.delivered)
		(void)aw_task_park(AW_NEVER, true);
	aw_error_free(job.err);
	return rc;
}

/* From inside a to_thread function: true once its task gave up waiting for
 * it. False on any other thread. A relaxed load: it is a hint to poll, and
 * publishes nothing else. */
bool aw_thread_cancelled(void)
{
	aw_job *j = tls_job;
	return j && atomic_load_explicit(&j->cancelled, memory_order_relaxed);
}

/* ---- the loop side ----------------------------------------------------------- */

/* Wake the loop from any thread or a signal handler: add 1 to its eventfd.
 * Only write(2), and errno is preserved, so it is async-signal-safe. A full
 * counter (EAGAIN) already means a wake-up is pending, so errors are moot. */
void aw_loop_notify(aw_loop *loop)
{
	int saved = errno;
	uint64_t one = 1;
	ssize_t n = write(loop->wake_fd, &one, sizeof one);
	(void)n;
	errno = saved;
}

/* Wake t so that its park returns v, even if a cancellation readied it
 * first (aw_task_wake would do nothing then, and should the cancellation
 * turn out moot, park would sleep again with the job already delivered).
 * The finished job wins; the cancellation is level-triggered and shows at
 * the task's next wait.
 * aw_task_wake does this for every waker. */
static inline void task_hand(aw_task *t, int v)
{
	aw_task_wake(t, v);   /* a hand-over wins over a pending cancel */
}

/* Loop thread, when wake_fd fired: hand every finished job back to its task
 * (its park returns 0). The loop must read (reset) the eventfd *before*
 * calling this: a worker that finishes after the list was taken writes it
 * again, and that write must not be swallowed. */
void aw_threadpool_deliver(aw_loop *loop)
{
	aw_threadpool *p = loop->pool;
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	aw_job *j = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	while (j) {
		aw_job *next = j->next;
		p->inflight--;
		j->delivered = true;
		task_hand(j->task, 0);
		j = next;
	}
}

/* Jobs submitted and not yet withdrawn or delivered: while non-zero, a loop
 * with nothing else to wait for is waiting on the pool, not deadlocked. */
size_t aw_threadpool_inflight(aw_loop *loop)
{
	return loop->pool ? loop->pool->inflight : 0;
}

/* Loop end (no job in flight): stop and join the workers, free the pool.
 * Must run before wake_fd is closed (a worker may still be writing it). */
void aw_threadpool_shutdown(aw_loop *loop)
{
	aw_threadpool *p = loop->pool;
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
	loop->pool = NULL;
}
