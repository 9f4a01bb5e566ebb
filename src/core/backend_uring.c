/* SPDX-License-Identifier: MIT */
/*
 * The poll backend on io_uring (liburing), built with the meson feature
 * io_uring. Same contract as backend_epoll.c, so every layer above runs
 * unchanged on it:
 *
 *  - aw_uring_add arms one multishot IORING_OP_POLL_ADD per fd for
 *    POLLIN|POLLOUT|POLLRDHUP, edge-triggered (io_uring's default without
 *    IORING_POLL_ADD_LEVEL): each wake-up of the fd posts one completion
 *    with the mask, as epoll_wait reports an EPOLLET registration.
 *  - Nothing enters the kernel when a request is queued: the SQEs of a
 *    loop turn (new fds, removals, re-arms) go in with the turn's single
 *    io_uring_enter, which also waits (EXT_ARG timeout). A turn that must
 *    not block and has nothing to submit reads the completion ring without
 *    any system call at all (unless the kernel flags task work or an
 *    overflow: IORING_SETUP_TASKRUN_FLAG).
 *  - aw_uring_del queues an IORING_OP_ASYNC_CANCEL of the poll (not a
 *    POLL_REMOVE, which fails while the poll's wakeup runs) and bumps the fd's
 *    generation; the generation is in every poll's user_data, so a
 *    completion of the removed poll that is already in the ring (or comes
 *    before the removal is processed) is dropped: a reused fd number never
 *    sees its predecessor's events. The poll holds a reference to the file
 *    until the removal runs, which is at the next io_uring_enter (the same
 *    loop turn), so a closed socket's FIN is not held back longer than that.
 *  - A multishot poll the kernel ends (a completion without
 *    IORING_CQE_F_MORE, e.g. after a CQ overflow) is armed again.
 *  - Sends (aw_uring_send) are queued on a list and get their SQEs just
 *    before the turn's io_uring_enter, so every write a task makes in the
 *    turn lands in one IORING_OP_SEND, and every connection's sends go in
 *    with the same enter as the receives. A short send is continued from
 *    the completion (queued again); MSG_WAITALL lets the kernel itself
 *    continue a stream socket's partial send.
 */
#include "internal.h"

#if AW_HAVE_IO_URING

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AW_URING_ENTRIES 256         /* SQ size; the CQ gets 16 times that */
#define AW_URING_POLL_BIT (UINT64_C(1) << 63)
#define AW_URING_OP_BIT (UINT64_C(1) << 62)   /* user_data: an aw_backend_op pointer */
#define AW_URING_ACC_BIT (UINT64_C(1) << 61)  /* user_data: an aw_acceptq pointer (accept_uring.c) */
/* An accept's user_data: bit 61 alone of the tag bits (a poll's generation
 * and a receive's serial may set bit 61 too, but with bit 63 set). */
#define is_accept_ud(ud) (((ud) & (AW_URING_POLL_BIT | AW_URING_OP_BIT | AW_URING_ACC_BIT)) == AW_URING_ACC_BIT)
#define AW_URING_GEN_MASK 0x7fffffffu

typedef struct uring_fd {
	uint64_t data;      /* handed to on_ready */
	uint32_t gen;       /* registration generation (user_data bits 32..62) */
	bool live;          /* registered (aw_uring_add, no del since) */
} uring_fd;

struct aw_uring {
	struct io_uring ring;
	aw_backend *b;
	uring_fd *fds;
	size_t nfds;
	aw_backend_op *sends, **sends_tail;   /* queued sends (no SQE yet) */
	size_t accepts;      /* multishot accepts armed (final completion not seen) */
};

static uint64_t poll_ud(int fd, uint32_t gen)
{
	return AW_URING_POLL_BIT | (uint64_t)(gen & AW_URING_GEN_MASK) << 32 | (uint32_t)fd;
}

/* A free SQE; when the SQ is full, submit what is queued (an extra
 * io_uring_enter, only in a turn that queued more than the SQ holds). */
static struct io_uring_sqe *sqe_get(struct aw_uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

struct io_uring *aw__uring_ring(aw_backend *b)
{
	return &b->uring->ring;
}

struct io_uring_sqe *aw__uring_sqe(aw_backend *b)
{
	return sqe_get(b->uring);
}

bool aw__uring_cancel_sync(aw_backend *b, uint64_t ud)
{
	struct io_uring *ring = &b->uring->ring;
	struct io_uring_sync_cancel_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.addr = ud;
	reg.fd = -1;
	reg.timeout.tv_sec = -1;
	reg.timeout.tv_nsec = -1;
	io_uring_submit(ring);   /* the request may still be queued */
	int rc = io_uring_register_sync_cancel(ring, &reg);
	return rc == 0 || rc == -ENOENT || rc == -EALREADY;
}

bool aw__uring_cancel_async(aw_backend *b, uint64_t ud)
{
	struct io_uring_sqe *sqe = sqe_get(b->uring);
	if (!sqe)
		return false;
	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, 0);   /* the cancel's own completion: ignored */
	return true;
}

static int arm(struct aw_uring *u, int fd)
{
	struct io_uring_sqe *sqe = sqe_get(u);
	if (!sqe)
		return -EAGAIN;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN | POLLOUT | POLLRDHUP);
	io_uring_sqe_set_data64(sqe, poll_ud(fd, u->fds[fd].gen));
	return 0;
}

/* The sysctl's word on an EPERM, for the log. */
static const char *why_eperm(void)
{
	static __thread char buf[160];
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");
	int v = -1;
	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	if (v == 2)
		snprintf(buf, sizeof buf, "io_uring is disabled by the sysctl kernel.io_uring_disabled=2");
	else if (v == 1)
		snprintf(buf, sizeof buf, "kernel.io_uring_disabled=1 and this process is not in "
					  "kernel.io_uring_group (EPERM)");
	else
		snprintf(buf, sizeof buf, "io_uring_setup refused (EPERM): a seccomp policy or an LSM");
	return buf;
}

int aw_uring_init(aw_backend *b, const char **why)
{
	struct aw_uring *u = aw__calloc(1, sizeof *u);
	if (!u)
		return -ENOMEM;
	/* Newest flags first: one issuer (the loop thread), task work run
	 * only when we enter (no IPI into a busy loop), and a flag telling us
	 * when to; older kernels refuse the flags they do not know. */
	static const unsigned tries[] = {
		IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN |
			IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
		IORING_SETUP_CQSIZE,
	};
	int rc = -EINVAL;
	struct io_uring_params p;
	for (size_t i = 0; i < sizeof tries / sizeof tries[0] && rc == -EINVAL; i++) {
		memset(&p, 0, sizeof p);
		p.flags = tries[i];
		p.cq_entries = AW_URING_ENTRIES * 16;
		rc = io_uring_queue_init_params(AW_URING_ENTRIES, &u->ring, &p);
	}
	if (rc == -EPERM)
		*why = why_eperm();
	if (rc) {
		free(u);
		return rc;
	}
	/* Multishot poll came with 5.13 (as did IORING_FEAT_RSRC_TAGS); the
	 * single-call wait with a timeout with 5.11 (IORING_FEAT_EXT_ARG). */
	if (!(p.features & IORING_FEAT_EXT_ARG) || !(p.features & IORING_FEAT_RSRC_TAGS) ||
	    !(p.features & IORING_FEAT_NODROP)) {
		io_uring_queue_exit(&u->ring);
		free(u);
		*why = "the kernel's io_uring is older than 5.13 (no multishot poll)";
		return -ENOSYS;
	}
	u->b = b;
	u->sends_tail = &u->sends;
	b->uring = u;
	return 0;
}

void aw_uring_fini(aw_backend *b)
{
	struct aw_uring *u = b->uring;
	if (!u)
		return;
	/* Hand the queued removals in first: a ring fd a forked child still
	 * holds would otherwise keep those files open. */
	io_uring_submit(&u->ring);
	/* Multishot accepts still armed (a listener closed in the last
	 * turn, or never closed): cancel them and reap their completions,
	 * so every descriptor the kernel accepted for them is closed and
	 * every orphaned queue freed (accept_uring.c). */
	if (u->accepts) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
			io_uring_sqe_set_data64(sqe, 0);
			io_uring_submit(&u->ring);
		}
	}
	for (int i = 0; i < 1000 && u->accepts; i++) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
		if (io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) != 0)
			continue;
		uint64_t ud = cqe->user_data;
		int res = cqe->res;
		unsigned flags = cqe->flags;
		io_uring_cqe_seen(&u->ring, cqe);
		if (is_accept_ud(ud)) {
			if (!(flags & IORING_CQE_F_MORE))
				u->accepts--;
			aw__accept_complete((aw_acceptq *)(uintptr_t)(ud & ~AW_URING_ACC_BIT), res, flags, true);
		}
	}
	io_uring_queue_exit(&u->ring);
	aw__recvq_fini(b);
	free(u->fds);
	free(u);
	b->uring = NULL;
}

int aw_uring_add(aw_backend *b, int fd, uint64_t data)
{
	struct aw_uring *u = b->uring;
	if (fd < 0)
		return -EBADF;
	if ((size_t)fd >= u->nfds) {
		size_t n = u->nfds ? u->nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		uring_fd *v = aw__realloc(u->fds, n * sizeof *v);
		if (!v)
			return -ENOMEM;
		memset(v + u->nfds, 0, (n - u->nfds) * sizeof *v);
		u->fds = v;
		u->nfds = n;
	}
	uring_fd *e = &u->fds[fd];
	if (e->live)
		return -EEXIST;
	e->data = data;
	int rc = arm(u, fd);
	if (rc)
		return rc;
	e->live = true;
	return 0;
}

int aw_uring_del(aw_backend *b, int fd)
{
	struct aw_uring *u = b->uring;
	if (fd < 0 || (size_t)fd >= u->nfds || !u->fds[fd].live)
		return -ENOENT;
	uring_fd *e = &u->fds[fd];
	uint64_t old = poll_ud(fd, e->gen);
	e->live = false;
	e->gen = (e->gen + 1) & AW_URING_GEN_MASK;   /* completions of `old` are stale now */
	struct io_uring_sqe *sqe = sqe_get(u);
	if (!sqe)
		return -EAGAIN;
	/* An async cancel, not IORING_OP_POLL_REMOVE: a removal fails with
	 * -EALREADY while the poll's wakeup is being handled (a socket that
	 * is readable as the poll is armed: a new connection whose request
	 * came with it), and the multishot poll then stays armed, holding
	 * the socket open after its close (the client never sees the end). A
	 * cancel marks the poll cancelled, which its wakeup honours. */
	io_uring_prep_cancel64(sqe, old, 0);
	io_uring_sqe_set_data64(sqe, 0);   /* its own completion: ignored */
	return 0;
}

int aw_uring_recv(aw_backend *b, int fd, void *buf, size_t len, aw_backend_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(b->uring);
	if (!sqe)
		return -EAGAIN;
	io_uring_prep_recv(sqe, fd, buf, len, 0);
	io_uring_sqe_set_data64(sqe, AW_URING_OP_BIT | (uint64_t)(uintptr_t)op);
	op->done = false;
	op->res = 0;
	b->ops++;
	return 0;
}

/* One file operation (aw_fileop_run): the SQE for its kind, with the same
 * completion path as a receive (AW_URING_OP_BIT | op). No flags: io_uring
 * first tries it without blocking (a page-cache read, a cached path
 * lookup) inside the turn's io_uring_enter, and hands what must block to
 * its io-wq workers. */
int aw_uring_fileop(aw_backend *b, const aw_fileop *f, aw_backend_op *op)
{
	struct io_uring_sqe *sqe = sqe_get(b->uring);
	if (!sqe)
		return -EAGAIN;
	switch (f->kind) {
	case AW_FILEOP_OPEN:
		io_uring_prep_openat(sqe, AT_FDCWD, f->path, f->flags, f->mode);
		break;
	case AW_FILEOP_READ:
		io_uring_prep_read(sqe, f->fd, f->buf, (unsigned)f->len, (uint64_t)f->off);
		break;
	case AW_FILEOP_WRITE:
		io_uring_prep_write(sqe, f->fd, f->buf, (unsigned)f->len, (uint64_t)f->off);
		break;
	case AW_FILEOP_FSYNC:
		io_uring_prep_fsync(sqe, f->fd, 0);
		break;
	case AW_FILEOP_CLOSE:
		io_uring_prep_close(sqe, f->fd);
		break;
	case AW_FILEOP_RENAME:
		io_uring_prep_renameat(sqe, AT_FDCWD, f->path, AT_FDCWD, f->path2, 0);
		break;
	case AW_FILEOP_UNLINK:
		io_uring_prep_unlinkat(sqe, AT_FDCWD, f->path, 0);
		break;
	default:
		/* Hand the slot back as a no-op: an SQE once taken is submitted. */
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data64(sqe, 0);
		return -EINVAL;
	}
	io_uring_sqe_set_data64(sqe, AW_URING_OP_BIT | (uint64_t)(uintptr_t)op);
	op->done = false;
	op->res = 0;
	b->ops++;
	return 0;
}

void aw_uring_send(aw_backend *b, aw_backend_op *op)
{
	struct aw_uring *u = b->uring;
	op->done = false;
	op->res = 0;
	op->queued = true;
	op->next = NULL;
	*u->sends_tail = op;
	u->sends_tail = &op->next;
	b->ops++;
}

/* Give each queued send its SQE (before the turn's enter). */
static void sends_prep(struct aw_uring *u)
{
	while (u->sends) {
		aw_backend_op *op = u->sends;
		struct io_uring_sqe *sqe = sqe_get(u);
		if (!sqe)
			return;   /* SQ full even after a submit: the next turn */
		u->sends = op->next;
		if (!u->sends)
			u->sends_tail = &u->sends;
		op->next = NULL;
		op->queued = false;
		op->in_kernel = true;
		io_uring_prep_send(sqe, op->fd, op->buf + op->sent, op->len - op->sent, MSG_NOSIGNAL | MSG_WAITALL);
		if (op->poll_first)
			sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
		io_uring_sqe_set_data64(sqe, AW_URING_OP_BIT | (uint64_t)(uintptr_t)op);
	}
}

bool aw_uring_cancel(aw_backend *b, aw_backend_op *op, bool sync)
{
	struct aw_uring *u = b->uring;
	uint64_t ud = AW_URING_OP_BIT | (uint64_t)(uintptr_t)op;
	if (op->is_send) {
		if (op->done)
			return true;
		/* A send not yet in the kernel goes in first: what the socket
		 * takes at once is sent (as a write(2) would have), and only
		 * the part that would wait is cancelled. */
		op->stop = true;
		if (op->queued)
			sends_prep(u);
	}
	/* Synchronous: its CQE is then in the ring for the next poll.
	 * Otherwise the asynchronous cancel, and the waiter's own wait (no
	 * SQE: the waiter still waits for the completion). */
	if (sync && aw__uring_cancel_sync(b, ud) && !(op->is_send && op->queued))
		return true;
	(void)aw__uring_cancel_async(b, ud);
	return false;
}

int aw_uring_accept_arm(aw_backend *b, int fd, aw_acceptq *q)
{
	struct aw_uring *u = b->uring;
	struct io_uring_sqe *sqe = sqe_get(u);
	if (!sqe)
		return -EAGAIN;
	io_uring_prep_multishot_accept(sqe, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, AW_URING_ACC_BIT | (uint64_t)(uintptr_t)q);
	u->accepts++;
	return 0;
}

void aw_uring_accept_cancel(aw_backend *b, aw_acceptq *q, bool sync)
{
	uint64_t ud = AW_URING_ACC_BIT | (uint64_t)(uintptr_t)q;
	if (sync && aw__uring_cancel_sync(b, ud))
		return;   /* gone; its last completions are in the ring */
	/* No SQE: the listener's close (its POLL/ACCEPT fails) ends it. */
	(void)aw__uring_cancel_async(b, ud);
}

/* One completion: a poll's mask, an operation's result, or an error. */
static int complete(struct aw_uring *u, uint64_t ud, int res, unsigned flags, aw_backend_ready_fn *on_ready,
		    void *ctx)
{
	if ((ud & AW_URING_RECV_TAG) == AW_URING_RECV_TAG) {
		aw__recvq_complete(u->b, ud, res, flags);   /* recv_ring.c */
		return 1;
	}
	if (is_accept_ud(ud)) {
		if (!(flags & IORING_CQE_F_MORE))
			u->accepts--;
		aw__accept_complete((aw_acceptq *)(uintptr_t)(ud & ~AW_URING_ACC_BIT), res, flags, false);
		return 1;
	}
	if (ud & AW_URING_OP_BIT) {
		aw_backend_op *op = (aw_backend_op *)(uintptr_t)(ud & ~AW_URING_OP_BIT);
		if (op->is_send) {
			op->in_kernel = false;
			if (res > 0)
				op->sent += (size_t)res;
			bool more = op->sent < op->len;
			if (!op->stop && more && (res > 0 || res == -EAGAIN)) {
				/* Short (the buffer grew since the SQE was made, or
				 * the kernel stopped early), or EAGAIN, which the
				 * kernel should not report (it polls for room
				 * itself): the rest goes with the next turn, after
				 * waiting in the kernel for room on an EAGAIN. */
				op->poll_first = res == -EAGAIN;
				u->b->ops--;   /* aw_uring_send counts it again */
				aw_uring_send(u->b, op);
				return 1;
			}
			op->poll_first = false;
			if (res >= 0)
				res = !more ? 0 : op->stop ? -ECANCELED : -EIO;   /* EIO: a send of 0 bytes */
			if (op->orphan) {
				u->b->ops--;
				free(op);
				return 1;
			}
		}
		op->res = res;
		op->done = true;
		u->b->ops--;
		if (op->task)
			aw_task_wake(op->task, 0);
		return 1;
	}
	if (!(ud & AW_URING_POLL_BIT))
		return 0;   /* a removal's or a cancel's own completion */
	int fd = (int)(uint32_t)ud;
	uint32_t gen = (uint32_t)(ud >> 32) & AW_URING_GEN_MASK;
	if ((size_t)fd >= u->nfds || !u->fds[fd].live || u->fds[fd].gen != gen)
		return 0;   /* the registration was removed since: stale */
	uint64_t data = u->fds[fd].data;
	if (!(flags & IORING_CQE_F_MORE)) {
		/* The kernel ended the multishot poll: arm it again, unless
		 * the fd itself is bad (closed without aw_fd_forget), which
		 * would only fail again. */
		if (res >= 0 || (res != -EBADF && res != -EINVAL && res != -ECANCELED)) {
			if (arm(u, fd))
				u->fds[fd].live = false;
		} else {
			u->fds[fd].live = false;
		}
	}
	if (res < 0) {
		/* Let the waiters retry their I/O: it reports the real error. */
		on_ready(ctx, data, true, true, false);
		return 1;
	}
	unsigned m = (unsigned)res;
	bool err = m & (POLLERR | POLLHUP);
	on_ready(ctx, data, err || (m & (POLLIN | POLLRDHUP | POLLPRI)), err || (m & POLLOUT),
		 err || (m & POLLRDHUP));
	return 1;
}

int aw_uring_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx)
{
	struct aw_uring *u = b->uring;
	int rc;
	if (u->sends)
		sends_prep(u);
	if (timeout == 0) {
		/* Enters only if something is queued or the kernel asks to. */
		rc = io_uring_submit(&u->ring);
	} else {
		struct __kernel_timespec ts, *tsp = NULL;
		if (timeout > 0) {
			ts.tv_sec = timeout / AW_SEC(1);
			ts.tv_nsec = timeout % AW_SEC(1);
			tsp = &ts;
		}
		struct io_uring_cqe *cqe;
		rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
		return rc;
	/* Copy a batch out and hand the slots back before running the
	 * callbacks: they may queue SQEs (a hook watching another fd), and a
	 * full SQ submits, which needs CQ room. */
	int seen = 0;
	for (int round = 0; round < 4; round++) {
		struct { uint64_t ud; int res; unsigned flags; } batch[256];
		unsigned head, n = 0;
		struct io_uring_cqe *cqe;
		io_uring_for_each_cqe(&u->ring, head, cqe) {
			batch[n].ud = cqe->user_data;
			batch[n].res = cqe->res;
			batch[n].flags = cqe->flags;
			if (++n == 256)
				break;
		}
		io_uring_cq_advance(&u->ring, n);
		for (unsigned i = 0; i < n; i++)
			seen += complete(u, batch[i].ud, batch[i].res, batch[i].flags, on_ready, ctx);
		if (n < 256)
			break;
	}
	return seen;
}

#endif /* AW_HAVE_IO_URING */
