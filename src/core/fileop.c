/* SPDX-License-Identifier: MIT */
/*
 * File operations on the loop's io_uring (aw_fileop_run, ext.h): the task
 * parks on one aw_backend_op, the completion path aw_fd_recv uses, and the
 * loop submits the SQE with its one io_uring_enter per turn.
 *
 * The rule every waiting call keeps: a cancelled task never sees a
 * completion of an operation it abandoned, and no buffer is written after
 * its owner has gone. A cancelled operation is therefore cancelled in the
 * kernel and awaited, shielded, before the call returns. That wait is
 * bounded by the operation itself: a read or write already running in an
 * io-wq worker (regular files: io_uring cannot interrupt those) finishes,
 * and anything still waiting (a FIFO with no writer) is cancelled at once.
 */
#include "internal.h"
#include "awith/metrics.h"

#include <unistd.h>

int (aw_fileop_run)(aw_fileop *f)
{
	aw_loop *l = aw__loop;
	aw_task *t = l ? l->running : NULL;
	if (!t)
		return aw_raise(-AW_ENOTASK, "aw_fileop_run outside of a task");
	f->res = 0;
	f->cancelled = false;
#if AW_HAVE_IO_URING
	if (l->backend.kind != AW_BACKEND_KIND_URING)
		return -EOPNOTSUPP;
	if ((f->kind == AW_FILEOP_READ || f->kind == AW_FILEOP_WRITE) && f->len > UINT_MAX)
		return aw_raise(-EINVAL, "aw_fileop_run: %zu bytes is more than one operation can do", f->len);
	aw_backend_op op = { .task = t };
	int rc = aw_uring_fileop(&l->backend, f, &op);
	if (rc)
		return aw_raise(rc, "aw_fileop_run: cannot queue the operation (kind %d): %s", f->kind,
				aw_strerror(rc));
	int v = 0;
	if (f->shielded) {
		while (!op.done)
			(void)aw_task_park(AW_NEVER, true);
		aw_scope *origin = NULL;
		aw_time next;
		f->cancelled = aw_scope_pending_cancel(t, aw_now(), &origin, &next) != 0;
	} else {
		do   /* nobody else wakes this task with 0 while it waits here */
			v = aw_task_park(AW_NEVER, false);
		while (v >= 0 && !op.done);
		if (!op.done) {
			/* Cancelled: the kernel may still use buf. */
			aw_uring_cancel(&l->backend, &op, false);
			while (!op.done)
				(void)aw_task_park(AW_NEVER, true);
		}
	}
	aw_metric_counter_add(aw__metrics.uring_file_ops, 1);
	f->res = op.res;
	if (v < 0) {
		if (f->kind == AW_FILEOP_OPEN && op.res >= 0) {
			close(op.res);   /* opened after all: nobody will close it */
			f->res = -ECANCELED;
		}
		return v;   /* the cancel code, raised by the park */
	}
	return 0;
#else
	return -EOPNOTSUPP;
#endif
}
