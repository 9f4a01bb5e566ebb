/* SPDX-License-Identifier: MIT */
/*
 * Sends through io_uring (aw_fd_send, aw_fd_send_start / _finish,
 * awith/ext.h): the send side of what aw_fd_recv does for receives.
 *
 * Each fd has at most one send in flight, recorded in an aw_backend_op
 * that its aw_fdstate owns (allocated at the fd's first send and kept for
 * the next ones until aw_fd_forget): a send is started by one call and
 * may be collected by a later one, or by another task, so the record
 * cannot live on a stack the way aw_fd_recv's does. The backend gives the
 * queued send its SQE just before the loop's io_uring_enter, so the writes
 * of a whole loop turn leave in one IORING_OP_SEND per socket and one
 * system call for all sockets; it continues short sends itself.
 *
 * One send per fd at a time keeps the bytes in order: two SENDs on one
 * socket in flight together could complete out of order when the first
 * has to wait for room. A writer that has more to say while a send is in
 * flight extends it (same buffer, longer length) instead.
 *
 * Buffer safety, as for receives: a wait that ends early (deadline,
 * cancellation, aw_fd_forget) cancels the send and waits, shielded, for
 * its completion, so the kernel has let go of the buffer when the call
 * returns; aw_fd_forget does the same for a send nobody waits for (a
 * synchronous cancel, or turning the ring until the completion came).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if AW_HAVE_IO_URING

/* The fd's send record: in flight or finished and not yet collected. */
static aw_backend_op *active_op(aw_loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nfds)
		return NULL;
	aw_backend_op *op = l->fds[fd].send_op;
	return op && op->is_send && op->fd == fd && op->buf ? op : NULL;
}

int aw_fd_send_start(int fd, const void *buf, size_t len)
{
	aw_loop *l = aw__loop;
	if (!l || !l->running)
		return aw_raise(-AW_ENOTASK, "aw_fd_send_start outside of a task");
	if (l->backend.kind != AW_BACKEND_KIND_URING)
		return -EOPNOTSUPP;
	aw_fdstate *s;
	int rc = aw__fd_state(l, fd, &s);
	if (rc)
		return aw_raise(rc, "aw_fd_send_start(%d): %s", fd, aw_strerror(rc));
	if (!buf && len)
		return aw_raise(-EINVAL, "aw_fd_send_start(%d): no buffer for %zu byte(s)", fd, len);
	aw_backend_op *op = s->send_op;
	if (op && op->buf) {
		/* In flight (or finished, not collected): only an extension of
		 * the same buffer, before the send has ended, is allowed. */
		if (op->buf == buf && len >= op->len && !op->done && !op->stop) {
			op->len = len;
			return 0;
		}
		return aw_raise(-EBUSY, "fd %d: a send of %zu byte(s) is %s; collect it with aw_fd_send_finish first",
				fd, op->len, op->done ? "finished but not collected" : "in flight");
	}
	if (!len)
		return 0;
	if (!op) {
		op = aw__calloc(1, sizeof *op);
		if (!op)
			return aw_raise(-ENOMEM, "fd %d: no memory for a send", fd);
		s->send_op = op;
	}
	memset(op, 0, sizeof *op);
	op->is_send = true;
	op->fd = fd;
	op->buf = buf;
	op->len = len;
	aw_uring_send(&l->backend, op);
	return 0;
}

bool aw_fd_sending(int fd)
{
	aw_loop *l = aw__loop;
	aw_backend_op *op = l ? active_op(l, fd) : NULL;
	return op && (!op->done || op->task);
}

int (aw_fd_send_finish)(int fd, size_t *sent, aw_time deadline)
{
	*sent = 0;
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_fd_send_finish outside of a task");
	if (l->backend.kind != AW_BACKEND_KIND_URING)
		return -EOPNOTSUPP;
	aw_backend_op *op = active_op(l, fd);
	if (!op)
		return 0;
	int v = 0;
	if (op->task && op->task != t)
		/* Woken by the completion but not yet run: the result is its. */
		return aw_raise(-AW_EBUSY_WAIT, "task '%s' already waits for fd %d's send", op->task->name, fd);
	if (!op->done) {
		aw_fdstate *s = &l->fds[fd];
		if (op->task || (s->writer && s->writer != t))
			return aw_raise(-AW_EBUSY_WAIT, "task '%s' already waits for fd %d's send",
					op->task ? op->task->name : s->writer->name, fd);
		op->task = t;
		s->writer = t;   /* aw_fd_forget wakes it (EBADF) */
		do   /* a writable edge of fd wakes the writer with 0 too: not ours */
			v = aw_task_park(deadline, false);
		while (v == 0 && !op->done);
		if (!op->done) {
			/* Deadline, cancellation or aw_fd_forget: the kernel may
			 * still read buf. Cancel, and wait with cancellation off
			 * until it has let go of it. */
			aw_uring_cancel(&l->backend, op, false);
			while (!op->done)
				(void)aw_task_park(AW_NEVER, true);
		}
		op->task = NULL;
		s = &l->fds[fd];   /* the table may have moved */
		if (s->writer == t)
			s->writer = NULL;
	}
	*sent = op->sent;
	size_t len = op->len;
	int res = op->res;
	bool forgotten = op->forgotten;
	if (forgotten)
		free(op);   /* detached by aw_fd_forget, left to us */
	else
		op->buf = NULL;   /* collected: the fd has no send now */
	if (v < 0 && v != AW_WAKE_TIMER)
		return v;   /* cancelled (raised): what went is in *sent */
	if (forgotten && res)
		return aw_raise(-EBADF, "fd %d was closed with %zu of %zu byte(s) sent", fd, *sent, len);
	if (v > 0)
		return aw_raise(-v, "fd %d: %s", fd, aw_strerror(-v));
	if (res == 0)
		return 0;   /* everything went (also when it beat the deadline) */
	if (res == -ECANCELED && v == AW_WAKE_TIMER)
		return aw_raise(-ETIMEDOUT, "fd %d: deadline passed with %zu of %zu byte(s) sent (the peer is not reading)",
				fd, *sent, len);
	return aw_raise(res, "send to fd %d: %s", fd, aw_strerror(res));
}

int (aw_fd_send)(int fd, const void *buf, size_t len, size_t *sent, aw_time deadline)
{
	*sent = 0;
	aw_loop *l = aw__loop;
	if (!l || !l->running)
		return aw_raise(-AW_ENOTASK, "aw_fd_send outside of a task");
	if (l->backend.kind != AW_BACKEND_KIND_URING)
		return -EOPNOTSUPP;
	aw_backend_op *op = active_op(l, fd);
	if (op)
		return aw_raise(-EBUSY, "fd %d: a send of aw_fd_send_start is %s", fd,
				op->done ? "finished but not collected" : "in flight");
	int rc = aw_fd_send_start(fd, buf, len);
	if (rc)
		return rc;
	return (aw_fd_send_finish)(fd, sent, deadline);
}

void aw__fd_send_forget(aw_loop *l, int fd)
{
	aw_backend_op *op = l->fds[fd].send_op;
	l->fds[fd].send_op = NULL;
	if (!op->buf) {
		free(op);   /* idle: nothing in flight, nothing to collect */
		return;
	}
	op->forgotten = true;
	/* Kernel 6.0+: the synchronous cancel returns once the send is gone
	 * (its completion then waits in the ring); on older kernels turn the
	 * ring until the completion came. */
	if (!op->done && !aw_uring_cancel(&l->backend, op, true))
		while (!op->done && aw_backend_poll(&l->backend, AW_MS(10), aw__on_ready, l) >= 0)
			;
	if (op->task)
		return;   /* its waiter collects it (and frees it) */
	if (op->done)
		free(op);
	else
		op->orphan = true;   /* freed by the backend at its completion */
}

#else /* no io_uring in this build */

int aw_fd_send_start(int fd, const void *buf, size_t len)
{
	(void)fd, (void)buf, (void)len;
	return aw__loop && aw__loop->running ? -EOPNOTSUPP : aw_raise(-AW_ENOTASK, "aw_fd_send_start outside of a task");
}

bool aw_fd_sending(int fd)
{
	(void)fd;
	return false;
}

int (aw_fd_send_finish)(int fd, size_t *sent, aw_time deadline)
{
	(void)fd, (void)deadline;
	*sent = 0;
	return aw__loop && aw__loop->running ? -EOPNOTSUPP : aw_raise(-AW_ENOTASK, "aw_fd_send_finish outside of a task");
}

int (aw_fd_send)(int fd, const void *buf, size_t len, size_t *sent, aw_time deadline)
{
	(void)fd, (void)buf, (void)len, (void)deadline;
	*sent = 0;
	return aw__loop && aw__loop->running ? -EOPNOTSUPP : aw_raise(-AW_ENOTASK, "aw_fd_send outside of a task");
}

void aw__fd_send_forget(aw_loop *l, int fd)
{
	free(l->fds[fd].send_op);
	l->fds[fd].send_op = NULL;
}

#endif
