/* SPDX-License-Identifier: MIT */
/*
 * A plain socket stream's writes when the loop runs on io_uring: write-
 * behind through aw_fd_send_start (awith/ext.h), so a write makes no
 * system call and the bytes leave with the loop's one io_uring_enter per
 * turn, batched with every other connection's sends and receives.
 *
 * The bytes are copied once, into the write buffer, and a write returns
 * as soon as they are there: wbuf[wstart, wend) is then the fd's send in
 * flight (winflight), and each later write appends behind it and extends
 * that send (same buffer, longer length) — in place only: while the
 * kernel may read wbuf it is never moved (no memmove, no realloc). A write
 * that does not fit behind it, or would pass the write_buffer bound, first
 * waits for the send to finish (aw_fd_send_finish: backpressure, under
 * the deadline); one larger than the bound goes straight from the
 * caller's memory while the task waits (aw_fd_send), never copied.
 *
 * What the kernel reports comes back when the send is collected: by the
 * next write, a drain, a shutdown or a close. A send error (EPIPE,
 * ECONNRESET ...) makes the stream broken for writing as on epoll, and is
 * raised there: on io_uring a write can return before the error is known,
 * as a write(2) into the kernel's buffer can. A deadline or a cancellation
 * cancels the send; the bytes that did not go stay in the buffer, and a
 * later drain goes on from there (never a byte twice).
 *
 * TLS streams keep the direct path (stream.c): OpenSSL's BIO writes
 * synchronously into the socket, and its record must be written again
 * with the same bytes after a partial write, which write-behind through a
 * buffer OpenSSL does not own would have to emulate.
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

bool aw__usend_wanted(void)
{
	/* AWITH_URING_SEND=0: the direct path on io_uring too (for benches).
	 * Read once; loops on several threads may race to read it first, so
	 * the cache is atomic (each computes the same value). */
	static _Atomic int cached = -1;
	int off = atomic_load_explicit(&cached, memory_order_relaxed);
	if (off < 0) {
		const char *v = getenv("AWITH_URING_SEND");
		off = v && strcmp(v, "0") == 0;
		atomic_store_explicit(&cached, off, memory_order_relaxed);
	}
	const char *b = aw_loop_backend();
	return !off && b && strcmp(b, "io_uring") == 0;
}

/* Collect the send in flight, waiting for it if need be; the bytes that
 * went leave the buffer. */
static int collect(aw_stream *s, aw_time deadline)
{
	size_t sent = 0;
	int rc = (aw_fd_send_finish)(s->fd, &sent, deadline);
	if (rc == -AW_EBUSY_WAIT)
		return rc;   /* another task of this stream waits for it: still in flight */
	s->winflight = false;
	s->wstart += sent;
	if (s->wstart == s->wend)
		s->wstart = s->wend = 0;
	if (!rc)
		return 0;
	if (rc == -ETIMEDOUT)
		return aw_raise(-ETIMEDOUT,
				"stream fd %d: deadline passed with %zu byte(s) unsent (the peer is not reading)", s->fd,
				s->wend - s->wstart);
	if (rc != -ECANCELED && rc != -EBUSY)
		s->werror = rc;   /* the send's own error: broken, as on epoll */
	return rc;
}

/* Start (or extend) the send of everything buffered. */
static int start(aw_stream *s)
{
	int rc = aw_fd_send_start(s->fd, s->wbuf + s->wstart, s->wend - s->wstart);
	if (rc == 0)
		s->winflight = true;
	if (rc == -EBUSY && s->winflight && aw_fd_sending(s->fd)) {
		/* The send is done, and another task of this stream waits in
		 * a drain to collect it: that drain sends these bytes next. */
		aw_error_clear();
		return 0;
	}
	return rc;
}

int aw__usend_drain(aw_stream *s, aw_time deadline)
{
	while (s->wstart < s->wend) {
		if (!s->winflight) {
			int rc = start(s);
			if (rc)
				return rc;
		}
		int rc = collect(s, deadline);
		if (rc)
			return rc;
	}
	s->wstart = s->wend = 0;
	return 0;
}

void aw__usend_kick(aw_stream *s)
{
	if (s->winflight || s->werror || s->wstart == s->wend)
		return;
	if (start(s))
		aw_error_clear();   /* reading goes on; the next write or drain says it */
}

int aw__usend_writev(aw_stream *s, const struct iovec *iov, int iovcnt, aw_time deadline)
{
	for (int i = 0; i < iovcnt; i++) {
		const char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		if (!n)
			continue;
		int rc;
		if (s->winflight && !aw_fd_sending(s->fd) && (rc = collect(s, deadline)))
			return rc;
		if (s->wend - s->wstart + n > s->wlimit || (s->winflight && s->wend + n > s->wcap)) {
			/* Past the bound, or no room behind the bytes the
			 * kernel reads: wait for them to go. */
			if ((rc = aw__usend_drain(s, deadline)))
				return rc;
			if (n > s->wlimit) {
				size_t sent;
				rc = (aw_fd_send)(s->fd, p, n, &sent, deadline);
				if (rc == -ETIMEDOUT)
					return aw_raise(-ETIMEDOUT,
							"stream fd %d: deadline passed with %zu byte(s) unsent (the peer is not reading)",
							s->fd, n - sent);
				if (rc && rc != -ECANCELED)
					s->werror = rc;
				if (rc)
					return rc;
				continue;
			}
		}
		if ((rc = aw__stream_buffer_append(s, p, n)))
			return rc;
		if ((rc = start(s)))
			return rc;
	}
	return 0;
}
