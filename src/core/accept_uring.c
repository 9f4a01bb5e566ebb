/* SPDX-License-Identifier: MIT */
/*
 * Listeners on the io_uring backend: one multishot IORING_OP_ACCEPT per
 * listening fd instead of a readiness wait and an accept4 per connection
 * (aw_listener_accept, src/io/socket.c, calls aw_fd_accept first).
 *
 * The multishot is armed by the first accept on the fd and stays armed:
 * each connection the kernel accepts (SOCK_NONBLOCK|SOCK_CLOEXEC, as
 * accept4 gives today) arrives as a completion with the new fd, which is
 * handed to the task waiting in accept, or queued on the listener when none
 * waits. The queue is bounded: once it holds AW_ACCEPTQ_STOP connections
 * the multishot is cancelled (stop pulling), and the kernel's backlog holds
 * the next clients until an accept empties the queue and arms it again.
 * (Completions the kernel posted before the cancel took effect are still
 * queued: the queue then holds at most the backlog's worth more.)
 *
 * A completion without IORING_CQE_F_MORE ends the multishot. A success or
 * a transient error (ECONNABORTED, EAGAIN, EINTR) arms it again at once;
 * a real error (EMFILE, ENFILE, ENOBUFS, ENOMEM ...) is handed to the
 * accept caller exactly as accept4 would have said it, after the queued
 * connections, and the next accept arms again: the http server's
 * spare-descriptor strategy (accept4 on the listener while no multishot is
 * armed) keeps working unchanged. A kernel without multishot accept (before
 * 5.19) answers the first arming with EINVAL: the queue is marked
 * unsupported and the caller falls back to accept4 for good.
 *
 * Closing the listener (aw_fd_forget) closes the queued connections and
 * cancels the multishot; the queue is then an orphan, which closes every fd
 * still arriving and is freed by the final completion (or by the ring's
 * end, aw_uring_fini). No accepted descriptor leaks.
 *
 * While accepts keep coming (a server's accept loop) the multishot stays
 * armed between them. A task that leaves accept without a connection
 * (cancelled, timed out) stops it (a synchronous cancel): nobody waits, so
 * the kernel's backlog keeps the next clients, where another process
 * sharing the listener — a graceful restart's successor — takes them. What
 * the kernel had accepted before the cancel is queued for the next accept,
 * never lost to it (closed if the listener closes first).
 *
 * A server that stops accepting (the http server's accept loop, at
 * shutdown or a graceful restart) calls aw_fd_accept_stop: the synchronous
 * cancel, then a wait for the multishot's final completion, so that every
 * connection the kernel accepted for us, including those racing the
 * cancel, is in the queue when it returns; aw_fd_accept_queued then hands
 * them out one by one without waiting or arming again. Those clients
 * connected while we listened: the server serves them (a connection the
 * kernel handed us is ours), it does not close them with the listener.
 *
 * AWITH_URING_ACCEPT=0 in the environment turns this off (readiness and
 * accept4 as on epoll), for comparison (bench/http_bench.sh).
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if AW_HAVE_IO_URING

#include <liburing.h>

#define AW_ACCEPTQ_STOP 64   /* queued connections at which pulling stops */

struct aw_acceptq {
	aw_loop *loop;
	int fd;               /* the listener */
	bool armed;           /* the multishot is in the kernel (no final completion yet) */
	bool stopped;         /* cancelled by us (queue full): re-armed by an accept */
	bool orphan;          /* the listener is gone: close what arrives, free at the end */
	bool unsupported;     /* the kernel refused multishot accept: accept4 */
	int err;              /* an error to hand to the next accept (-errno) */
	aw_task *task;        /* the task waiting in aw_fd_accept */
	struct stop_wait *stopper;   /* aw_fd_accept_stop waiting for the final completion */
	int *fds;             /* queued connections, a ring of cap */
	size_t head, n, cap;
};

/* aw_fd_accept_stop's wait (on its stack): woken by the multishot's final
 * completion, or by the listener's close (gone: the queue is no longer its
 * to touch). */
struct stop_wait {
	aw_task *task;
	bool gone;
};

static bool disabled(void)
{
	/* AWITH_URING_ACCEPT=0: readiness + accept4 (for benches). Read once;
	 * loops on several threads may race to read it first (ThreadSanitizer
	 * saw it in test_loops_threads), so the cache is atomic: each computes
	 * the same value. */
	static _Atomic int cached = -1;
	int v = atomic_load_explicit(&cached, memory_order_relaxed);
	if (v < 0) {
		const char *e = getenv("AWITH_URING_ACCEPT");
		v = e && (strcmp(e, "0") == 0 || strcmp(e, "off") == 0 || strcmp(e, "no") == 0);
		atomic_store_explicit(&cached, v, memory_order_relaxed);
	}
	return v;
}

static bool push(aw_acceptq *q, int fd)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		int *v = aw__malloc(cap * sizeof *v);
		if (!v)
			return false;
		for (size_t i = 0; i < q->n; i++)
			v[i] = q->fds[(q->head + i) % q->cap];
		free(q->fds);
		q->fds = v;
		q->head = 0;
		q->cap = cap;
	}
	q->fds[(q->head + q->n) % q->cap] = fd;
	q->n++;
	return true;
}

static int pop(aw_acceptq *q)
{
	int fd = q->fds[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return fd;
}

static void q_free(aw_acceptq *q)
{
	while (q->n)
		close(pop(q));
	free(q->fds);
	free(q);
}

static int arm(aw_acceptq *q)
{
	int rc = aw_uring_accept_arm(&q->loop->backend, q->fd, q);
	if (rc == 0) {
		q->armed = true;
		q->stopped = false;
	}
	return rc;
}

void aw__accept_complete(aw_acceptq *q, int res, unsigned flags, bool fini)
{
	bool more = flags & IORING_CQE_F_MORE;
	if (!more)
		q->armed = false;
	if (!more && q->stopper && !fini) {
		aw_task_wake(q->stopper->task, 0);   /* every connection it took is queued now */
		q->stopper = NULL;
	}
	if (q->orphan || fini) {
		if (res >= 0)
			close(res);
		if (!more && q->orphan)
			q_free(q);
		return;
	}
	if (res >= 0) {
		if (!push(q, res)) {
			close(res);   /* no memory to queue it: the client sees a reset */
			if (!q->err)
				q->err = -ENOMEM;
		} else if (q->n >= AW_ACCEPTQ_STOP && q->armed && !q->stopped) {
			q->stopped = true;   /* stop pulling: the backlog holds the rest */
			aw_uring_accept_cancel(&q->loop->backend, q, false);
		}
	} else if (res == -EINVAL && !q->n && !q->err && !more) {
		q->unsupported = true;   /* no multishot accept in this kernel */
	} else if (res != -ECANCELED && res != -ECONNABORTED && res != -EAGAIN && res != -EINTR) {
		if (!q->err)
			q->err = res;
	}
	if (!more && !q->armed && !q->stopped && !q->err && !q->unsupported && res != -ECANCELED &&
	    q->n < AW_ACCEPTQ_STOP)
		arm(q);   /* the kernel ended it on its own: pull on */
	if (q->task && (q->n || q->err || q->unsupported || !q->armed))
		aw_task_wake(q->task, 0);
}

int (aw_fd_accept)(int fd, aw_time deadline)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t || l->backend.kind != AW_BACKEND_KIND_URING || disabled())
		return -EOPNOTSUPP;
	aw_fdstate *s;
	int rc = aw__fd_state(l, fd, &s);
	if (rc)
		return aw_raise(rc, "accept on fd %d: %s", fd, aw_strerror(rc));
	aw_acceptq *q = s->accept_q;
	if (!q) {
		q = aw__calloc(1, sizeof *q);
		if (!q)
			return aw_raise(-ENOMEM, "accept on fd %d: no memory for its queue", fd);
		q->loop = l;
		q->fd = fd;
		s->accept_q = q;
	}
	for (;;) {
		if (q->unsupported)
			return -EOPNOTSUPP;
		if (q->n)
			return pop(q);
		if (q->err) {
			int e = q->err;
			q->err = 0;
			return aw_raise(e, "accept on fd %d: %s", fd, aw_strerror(e));
		}
		if (s->reader)
			return aw_raise(-AW_EBUSY_WAIT, "task '%s' already waits for fd %d to be readable",
					s->reader->name, fd);
		if (!q->armed && (rc = arm(q)) != 0)
			return aw_raise(rc, "accept on fd %d: cannot arm the multishot accept: %s", fd,
					aw_strerror(rc));
		q->task = t;
		s->reader = t;   /* aw_fd_forget wakes it (EBADF) */
		int v = aw_task_park(deadline, false);
		s = &l->fds[fd];   /* the table may have moved */
		if (s->reader == t)
			s->reader = NULL;
		if (v != 0 && s->accept_q == q) {
			if (q->task == t)
				q->task = NULL;
			if (q->armed && !q->stopped && !q->n) {
				/* Nobody waits any more: stop pulling, so the
				 * kernel leaves the next clients in the backlog,
				 * where another process sharing the listener (a
				 * graceful restart's successor) can take them. */
				q->stopped = true;
				aw_uring_accept_cancel(&l->backend, q, true);
			}
		}
		if (v == 0) {
			q->task = NULL;
			continue;
		}
		if (v == AW_WAKE_TIMER) {
			if (q->n)
				continue;   /* it came with the deadline: take it */
			return aw_raise(-ETIMEDOUT, "no connection before the deadline");
		}
		if (v > 0)
			return aw_raise(-v, "accept on fd %d: %s", fd, aw_strerror(-v));
		return v;   /* cancelled (raised): a connection arriving now stays queued */
	}
}

int aw_fd_accept_stop(int fd)
{
	aw_loop *l = aw__loop;
	if (!l || fd < 0 || (size_t)fd >= l->nfds || l->backend.kind != AW_BACKEND_KIND_URING)
		return 0;
	aw_acceptq *q = l->fds[fd].accept_q;
	if (!q)
		return 0;
	if (q->armed) {
		/* Also when the bound already asked for a cancel (stopped): the
		 * synchronous one returns once the kernel no longer accepts. */
		q->stopped = true;
		aw_uring_accept_cancel(&l->backend, q, true);
	}
	/* The connections the kernel accepted before the cancel took effect
	 * come as completions ahead of the final one (in the ring already,
	 * handled at the loop's next poll): wait for it, so that every one of
	 * them is queued when this returns. Shielded (a stop must finish),
	 * and bounded in case a kernel is slow to end it. */
	aw_task *t = l->running;
	if (q->armed && t && !q->stopper) {
		struct stop_wait w = { t, false };
		q->stopper = &w;
		(void)aw_task_park(aw_now() + AW_SEC(1), true);
		if (w.gone)
			return 0;   /* the listener was closed meanwhile: so were its connections */
		if (q->stopper == &w)
			q->stopper = NULL;   /* the bound passed first */
	}
	return (int)q->n;
}

int aw_fd_accept_queued(int fd)
{
	aw_loop *l = aw__loop;
	if (!l || fd < 0 || (size_t)fd >= l->nfds)
		return -EAGAIN;
	aw_acceptq *q = l->fds[fd].accept_q;
	if (!q || !q->n)
		return -EAGAIN;
	return pop(q);
}

void aw__fd_accept_forget(aw_loop *l, int fd)
{
	aw_acceptq *q = l->fds[fd].accept_q;
	l->fds[fd].accept_q = NULL;
	q->task = NULL;
	if (q->stopper) {
		q->stopper->gone = true;
		aw_task_wake(q->stopper->task, 0);
		q->stopper = NULL;
	}
	while (q->n)
		close(pop(q));
	if (!q->armed) {
		q_free(q);
		return;
	}
	q->orphan = true;   /* freed by its final completion */
	aw_uring_accept_cancel(&l->backend, q, true);
}

void aw__fd_accept_free(aw_acceptq *q)
{
	q->orphan = false;
	q_free(q);
}

#else

int (aw_fd_accept)(int fd, aw_time deadline)
{
	(void)fd;
	(void)deadline;
	return -EOPNOTSUPP;
}

int aw_fd_accept_stop(int fd)
{
	(void)fd;
	return 0;
}

int aw_fd_accept_queued(int fd)
{
	(void)fd;
	return -EAGAIN;
}

#endif /* AW_HAVE_IO_URING */
