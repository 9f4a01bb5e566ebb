/* SPDX-License-Identifier: MIT */
/*
 * Receives through a provided buffer ring (io_uring, AWITH_URING_RECV=
 * multishot): aw_fd_recv's second mode, beside the single IORING_OP_RECV
 * into the caller's buffer (loop.c), which stays the default: measured
 * side by side, this mode cost the same server CPU per request within the
 * noise (docs/performance.md), and it adds a buffer ring per loop and a
 * second ownership rule.
 *
 * Each loop has one buffer ring (RQ_BUFS buffers of RQ_BUF_SIZE bytes,
 * registered with IORING_REGISTER_PBUF_RING at the first receive, so a loop
 * that never receives pays nothing). The first aw_fd_recv of a socket arms
 * one IORING_OP_RECV with IORING_RECV_MULTISHOT and IOSQE_BUFFER_SELECT for
 * it: from then on the kernel receives whenever data arrives, into a buffer
 * it picks from the ring, and posts a completion (buffer id, length) per
 * buffer, with no SQE of ours per read. The completions are queued per fd
 * in order; aw_fd_recv copies from the queue into the caller's buffer
 * (a partly consumed buffer keeps an offset), hands each consumed buffer
 * back to the ring, and waits only when the queue is empty.
 *
 * Ownership: the kernel writes only into the ring's buffers, which the loop
 * owns until the fd's queue hands them back; it never writes into the
 * caller's memory. So a wait that ends early (deadline, cancellation,
 * aw_fd_forget) just stops waiting: there is nothing to cancel and wait
 * for, and what arrived is queued for the next call, never lost.
 * aw_fd_forget hands the fd's queued buffers back and cancels its
 * multishot synchronously (IORING_REGISTER_SYNC_CANCEL), so that no byte
 * sent after it is taken from a socket that lives on (a dup, an fd handed
 * to someone else). Every multishot's user_data carries the fd and a
 * per-arm serial: a completion of an ended or forgotten multishot (a
 * reused fd number) is stale, its buffer goes straight back to the ring.
 *
 * What ends a multishot, and what follows:
 *  - -ENOBUFS (the ring ran dry): the data stays in the socket. When its
 *    reader has taken the queue and wants more, the multishot is armed
 *    again if the ring has buffers (RQ_REARM_MIN); if not, that read goes
 *    without the ring (a single IORING_OP_RECV into the caller's buffer, as
 *    in AWITH_URING_RECV=single), so no reader ever waits for another
 *    connection to give buffers back. Order is kept: an fd never has two
 *    receives at once, and never one while bytes are queued.
 *  - a completion without IORING_CQE_F_MORE (the kernel ended it): armed
 *    again when the reader wants more.
 *  - RQ_FD_CAP buffers queued on one fd that its reader does not take (a
 *    busy handler, a client that pipelines a lot): the multishot is
 *    cancelled, so that one connection cannot drain the ring for all the
 *    others; the socket's own buffer and TCP's window take over, as with
 *    a single receive. Armed again when its reader wants more.
 *  - end of file (res 0) and errors: delivered after the queued bytes,
 *    in order.
 *  - -EINVAL on the loop's first multishot (a kernel before 6.0 without
 *    IORING_RECV_MULTISHOT) or a buffer ring the kernel refuses (before
 *    5.19): the loop falls back to single receives, said once per process.
 */
#include "internal.h"

#if AW_HAVE_IO_URING

#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* 256 × 4 KiB = 1 MiB per loop, bounded whatever the number of
 * connections: an idle keep-alive connection holds no buffer (a multishot
 * waiting for data has taken none), a busy one holds what arrived and its
 * task has not taken yet (usually one buffer, handed back in the same loop
 * turn). 4 KiB: a request line and headers fit in one, a 16 KiB stream
 * read takes four. */
#define RQ_BUFS 256
#define RQ_BUF_SIZE 4096
#define RQ_FD_CAP 16          /* buffers one fd may hold before its multishot is stopped */
#define RQ_REARM_MIN 16       /* fewer free: a reader without a multishot goes without the ring */
#define RQ_BGID 1
#define RQ_SERIAL_MASK 0x3fffffffu

typedef struct rq_buf {
	uint16_t bid;
	uint16_t len;
} rq_buf;

typedef struct rq_fd {
	uint32_t serial;          /* of the multishot armed now (user_data bits 32..61) */
	bool armed;               /* a multishot is in the kernel */
	bool cancelling;          /* its cancel is queued (RQ_FD_CAP) */
	bool has_end;             /* end of file (end 0) or an error (end < 0) follows the queue */
	int end;
	rq_buf *q;                /* circular: q[head .. head+len) */
	unsigned qhead, qlen, qcap;
	unsigned off;             /* bytes of q[qhead] already handed out */
	size_t bytes;             /* bytes queued, not yet handed out */
	aw_backend_op *waiter;    /* the task waiting in aw_fd_recv */
} rq_fd;

struct aw_recvq {
	struct io_uring_buf_ring *br;
	char *mem;                /* RQ_BUFS × RQ_BUF_SIZE */
	size_t maplen;
	unsigned free;            /* buffers in the kernel's ring */
	uint32_t serial;
	bool off;                 /* this kernel cannot: single receives */
	bool worked;              /* a multishot delivered something */
	rq_fd **fds;
	size_t nfds;
};

static atomic_int fallback_said;

bool aw__recv_multishot_wanted(void)
{
	/* AWITH_URING_RECV=multishot|single; single by default: measured,
	 * the multishot mode did not pay (docs/performance.md, 2026-12-06
	 * 15:49). Read once; loops on several threads may race to read it
	 * first, so the cache is atomic (each computes the same value). */
	static _Atomic int cached = -1;
	int on = atomic_load_explicit(&cached, memory_order_relaxed);
	if (on < 0) {
		const char *v = getenv("AWITH_URING_RECV");
		on = v && strcmp(v, "multishot") == 0;
		atomic_store_explicit(&cached, on, memory_order_relaxed);
	}
	return on;
}

static void say_fallback(aw_loop *l, const char *why)
{
	if (!atomic_exchange(&fallback_said, 1))
		fprintf(l->cfg.log, "awith: io_uring: %s; receives are single IORING_OP_RECV\n", why);
}

/* The loop's ring, set up at its first use; NULL: single receives. */
static struct aw_recvq *recvq(aw_loop *l)
{
	aw_backend *b = &l->backend;
	struct aw_recvq *r = b->recvq;
	if (r)
		return r->off ? NULL : r;
	if (!aw__recv_multishot_wanted())
		return NULL;
	r = aw__calloc(1, sizeof *r);
	if (!r)
		return NULL;
	b->recvq = r;
	size_t ringlen = RQ_BUFS * sizeof(struct io_uring_buf);   /* 4 KiB: a page */
	r->maplen = ringlen + (size_t)RQ_BUFS * RQ_BUF_SIZE;
	void *m = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		r->maplen = 0;
		r->off = true;
		return NULL;
	}
	r->br = m;
	r->mem = (char *)m + ringlen;
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof reg);
	reg.ring_addr = (uint64_t)(uintptr_t)r->br;
	reg.ring_entries = RQ_BUFS;
	reg.bgid = RQ_BGID;
	int rc = io_uring_register_buf_ring(aw__uring_ring(b), &reg, 0);
	if (rc) {
		say_fallback(l, rc == -EINVAL ? "no provided buffer rings (a kernel before 5.19)"
					      : "the kernel refused the provided buffer ring");
		r->off = true;
		return NULL;
	}
	io_uring_buf_ring_init(r->br);
	for (unsigned i = 0; i < RQ_BUFS; i++)
		io_uring_buf_ring_add(r->br, r->mem + (size_t)i * RQ_BUF_SIZE, RQ_BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(RQ_BUFS), (int)i);
	io_uring_buf_ring_advance(r->br, RQ_BUFS);
	r->free = RQ_BUFS;
	return r;
}

void aw__recvq_fini(aw_backend *b)
{
	struct aw_recvq *r = b->recvq;
	if (!r)
		return;
	/* After io_uring_queue_exit: the kernel has let go of the ring. */
	for (size_t i = 0; i < r->nfds; i++)
		if (r->fds[i]) {
			free(r->fds[i]->q);
			free(r->fds[i]);
		}
	free(r->fds);
	if (r->maplen)
		munmap(r->br, r->maplen);
	free(r);
	b->recvq = NULL;
}

static rq_fd *fd_find(struct aw_recvq *r, int fd)
{
	return fd >= 0 && (size_t)fd < r->nfds ? r->fds[fd] : NULL;
}

static rq_fd *fd_get(struct aw_recvq *r, int fd)
{
	if ((size_t)fd >= r->nfds) {
		size_t n = r->nfds ? r->nfds : 64;
		while (n <= (size_t)fd)
			n *= 2;
		rq_fd **v = aw__realloc(r->fds, n * sizeof *v);
		if (!v)
			return NULL;
		memset(v + r->nfds, 0, (n - r->nfds) * sizeof *v);
		r->fds = v;
		r->nfds = n;
	}
	if (!r->fds[fd])
		r->fds[fd] = aw__calloc(1, sizeof(rq_fd));
	return r->fds[fd];
}

static uint64_t rq_ud(int fd, uint32_t serial)
{
	return AW_URING_RECV_TAG | (uint64_t)(serial & RQ_SERIAL_MASK) << 32 | (uint32_t)fd;
}

static int arm(aw_backend *b, struct aw_recvq *r, int fd, rq_fd *f)
{
	struct io_uring_sqe *sqe = aw__uring_sqe(b);
	if (!sqe)
		return -EAGAIN;
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RQ_BGID;
	r->serial = (r->serial + 1) & RQ_SERIAL_MASK;
	f->serial = r->serial;
	io_uring_sqe_set_data64(sqe, rq_ud(fd, f->serial));
	f->armed = true;
	f->cancelling = false;
	return 0;
}

/* Arm f's multishot if it has none. false: the ring is (nearly) dry and
 * f has none: the caller receives this time without the ring (a single
 * IORING_OP_RECV into its own buffer, or a read), which keeps every reader
 * going whatever the others hold; the bytes stay in order because f has
 * no multishot and nothing queued then. */
static bool want_more(aw_backend *b, struct aw_recvq *r, int fd, rq_fd *f)
{
	if (f->armed)
		return true;
	if (r->free < RQ_REARM_MIN)
		return false;
	return arm(b, r, fd, f) == 0;
}

static void give_back(struct aw_recvq *r, unsigned bid)
{
	io_uring_buf_ring_add(r->br, r->mem + (size_t)bid * RQ_BUF_SIZE, RQ_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(RQ_BUFS), 0);
	io_uring_buf_ring_advance(r->br, 1);
	r->free++;
}

/* Queue a buffer; false when the queue cannot grow (no memory). */
static bool push(struct aw_recvq *r, rq_fd *f, unsigned bid, unsigned len)
{
	if (f->qlen == f->qcap) {
		/* Grow (never past RQ_BUFS: there are no more buffers). */
		unsigned n = f->qcap ? f->qcap * 2 : 4;
		rq_buf *v = aw__malloc(n * sizeof *v);
		if (!v)
			return false;
		for (unsigned i = 0; i < f->qlen; i++)
			v[i] = f->q[(f->qhead + i) % f->qcap];
		free(f->q);
		f->q = v;
		f->qcap = n;
		f->qhead = 0;
	}
	f->q[(f->qhead + f->qlen) % f->qcap] = (rq_buf){ (uint16_t)bid, (uint16_t)len };
	f->qlen++;
	f->bytes += len;
	(void)r;
	return true;
}

/* Copy up to len queued bytes into buf; consumed buffers go back. */
static size_t take(struct aw_recvq *r, rq_fd *f, char *buf, size_t len)
{
	size_t n = 0;
	while (n < len && f->qlen) {
		rq_buf *e = &f->q[f->qhead];
		size_t c = e->len - f->off;
		if (c > len - n)
			c = len - n;
		memcpy(buf + n, r->mem + (size_t)e->bid * RQ_BUF_SIZE + f->off, c);
		n += c;
		f->off += (unsigned)c;
		if (f->off == e->len) {
			unsigned bid = e->bid;
			f->qhead = (f->qhead + 1) % f->qcap;
			f->qlen--;
			f->off = 0;
			give_back(r, bid);
		}
	}
	f->bytes -= n;
	return n;
}

void aw__recvq_complete(aw_backend *b, uint64_t ud, int res, unsigned flags)
{
	struct aw_recvq *r = b->recvq;
	if (!r)
		return;
	int fd = (int)(uint32_t)ud;
	uint32_t serial = (uint32_t)(ud >> 32) & RQ_SERIAL_MASK;
	bool hasbuf = flags & IORING_CQE_F_BUFFER;
	unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
	if (hasbuf)
		r->free--;
	rq_fd *f = fd_find(r, fd);
	if (!f || !f->armed || f->serial != serial) {
		if (hasbuf)
			give_back(r, bid);   /* stale: forgotten, or a reused fd number */
		return;
	}
	if (!(flags & IORING_CQE_F_MORE))
		f->armed = f->cancelling = false;
	if (res > 0 && hasbuf) {
		r->worked = true;
		if (f->has_end) {
			give_back(r, bid);   /* past a lost buffer (ENOMEM): nothing after it counts */
		} else if (!push(r, f, bid, (unsigned)res)) {
			/* Bytes we cannot keep: the stream is broken from here
			 * (after what is queued), never silently short. */
			give_back(r, bid);
			if (!f->has_end) {
				f->has_end = true;
				f->end = -ENOMEM;
			}
		}
		if (f->armed && !f->cancelling && (f->qlen >= RQ_FD_CAP || f->has_end)) {
			/* Its reader is behind: stop taking buffers for it. */
			if (aw__uring_cancel_async(b, ud)) {
				f->cancelling = true;
			}
		}
	} else {
		if (hasbuf)
			give_back(r, bid);
		if (res == 0) {
			f->has_end = true;   /* end of file, after the queue */
			f->end = 0;
		} else if (res == -EINVAL && !r->worked) {
			/* The kernel does not know IORING_RECV_MULTISHOT (before 6.0). */
			r->off = true;
			say_fallback(aw__loop, "no multishot receive (a kernel before 6.0)");
		} else if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
			f->has_end = true;   /* the error, after the queue */
			f->end = res;
		}
	}
	if (!f->waiter)
		return;
	/* Data, the end, or no multishot any more (ENOBUFS, a cancel, the
	 * kernel ended it): the reader takes it, or arms again, or goes
	 * without the ring. */
	if (f->qlen || f->has_end || r->off || !f->armed) {
		f->waiter->done = true;
		aw_task_wake(f->waiter->task, 0);
	}
}

void aw__recvq_forget(aw_loop *l, int fd)
{
	aw_backend *b = &l->backend;
	struct aw_recvq *r = b->recvq;
	rq_fd *f = r ? fd_find(r, fd) : NULL;
	if (!f)
		return;
	r->fds[fd] = NULL;
	if (f->armed) {
		/* Its completions are stale from now on (the record is gone).
		 * Synchronous (6.0+, as multishot receives are): when this
		 * returns the kernel takes no more bytes from the socket, which
		 * may live on (a dup, an fd handed elsewhere after the forget).
		 * No buffer of the caller is at stake either way. */
		uint64_t ud = rq_ud(fd, f->serial);
		if (!aw__uring_cancel_sync(b, ud))
			(void)aw__uring_cancel_async(b, ud);
	}
	while (f->qlen) {
		give_back(r, f->q[f->qhead].bid);
		f->qhead = (f->qhead + 1) % f->qcap;
		f->qlen--;
	}
	free(f->q);
	free(f);
}

/* The end that follows the queue: 0 (end of file, sticky), or an error,
 * reported once (end of file after it, as a socket does). */
static int deliver_end(rq_fd *f, int fd)
{
	int e = f->end;
	f->end = 0;
	if (!e)
		return 0;
	return aw_raise(e, "fd %d: receive: %s", fd, aw_strerror(e));
}

int aw__recvq_recv(aw_loop *l, int fd, void *buf, size_t len, size_t *got, aw_time deadline)
{
	struct aw_recvq *r = recvq(l);
	if (!r)
		return -EOPNOTSUPP;
	aw_task *t = l->running;
	aw_backend *b = &l->backend;
	aw_fdstate *s = &l->fds[fd];   /* aw_fd_recv checked it: in the table, no other reader */
	rq_fd *f = fd_get(r, fd);
	if (!f)
		return aw_raise(-ENOMEM, "fd %d: no memory for a receive queue", fd);
	for (;;) {
		if (f->qlen) {
			*got = take(r, f, buf, len);
			return 0;
		}
		if (f->has_end)
			return deliver_end(f, fd);
		if (r->off)
			return -EOPNOTSUPP;   /* the kernel could not: a single receive */
		if (!want_more(b, r, fd, f))
			return -EOPNOTSUPP;   /* the ring is dry: a single receive */
		aw_backend_op op = { .task = t };
		f->waiter = &op;
		s->reader = t;
		s->read_op = &op;   /* a readiness edge of fd does not wake us */
		b->ops++;
		int v;
		do   /* a poll's readiness edge of fd wakes the reader with 0 too: not ours */
			v = aw_task_park(deadline, false);
		while (v == 0 && !op.done);
		b->ops--;
		/* aw_fd_forget may have run (the record is gone) and the fd
		 * number be someone else's now: look both up again. */
		f = fd_find(r, fd);
		if (f && f->waiter == &op)
			f->waiter = NULL;
		s = &l->fds[fd];
		if (s->reader == t)
			s->reader = NULL;
		if (s->read_op == &op)
			s->read_op = NULL;
		if (v > 0)
			return aw_raise(-v, "fd %d: %s", fd, aw_strerror(-v));
		if (v < 0 && v != AW_WAKE_TIMER)
			return v;   /* cancelled (raised): the bytes stay queued */
		if (!f)
			return aw_raise(-EBADF, "fd %d: forgotten while receiving", fd);
		if (v == AW_WAKE_TIMER && !f->qlen && !f->has_end)
			return aw_raise(-ETIMEDOUT, "fd %d: no data before the deadline", fd);
	}
}

int aw_fd_recv_take(int fd, void *buf, size_t len, size_t *got)
{
	*got = 0;
	aw_loop *l = aw__loop;
	struct aw_recvq *r = l && l->backend.kind == AW_BACKEND_KIND_URING ? l->backend.recvq : NULL;
	rq_fd *f = r ? fd_find(r, fd) : NULL;
	if (!f)
		return -EOPNOTSUPP;
	if (f->qlen) {
		*got = take(r, f, buf, len);
		return 0;
	}
	if (f->has_end)
		return deliver_end(f, fd);
	if (r->off)
		return -EOPNOTSUPP;
	return want_more(&l->backend, r, fd, f) ? -EAGAIN : -EOPNOTSUPP;
}

size_t aw_fd_recv_queued(int fd)
{
	aw_loop *l = aw__loop;
	struct aw_recvq *r = l && l->backend.kind == AW_BACKEND_KIND_URING ? l->backend.recvq : NULL;
	rq_fd *f = r ? fd_find(r, fd) : NULL;
	return f ? f->bytes : 0;
}

#else /* no io_uring in this build */

int aw_fd_recv_take(int fd, void *buf, size_t len, size_t *got)
{
	(void)fd, (void)buf, (void)len;
	*got = 0;
	return -EOPNOTSUPP;
}

size_t aw_fd_recv_queued(int fd)
{
	(void)fd;
	return 0;
}

#endif
