/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of the io layer (src/io/), shared by its files.
 */
#ifndef AW_IO_INTERNAL_H
#define AW_IO_INTERNAL_H

#include "awith/core.h"
#include "awith/ext.h"
#include "../common/alloc.h"
#include "../common/util.h"
#include "awith/io.h"

/* A buffered stream over a connected fd, optionally through TLS. */
struct aw_stream {
	aw_mgr mgr;
	int fd;
	bool is_sock;            /* send(MSG_NOSIGNAL) instead of write */
	/* read buffer: unread bytes are rbuf[rstart, rend) */
	char *rbuf;
	size_t rcap, rstart, rend;
	/* write buffer: unsent bytes are wbuf[wstart, wend) */
	char *wbuf;
	size_t wcap, wstart, wend;
	size_t wlimit;           /* writers wait while more is unsent */
	bool eof;                /* the peer ended its side */
	bool drained;            /* the last read was short: the kernel buffer
	                            is probably empty (wait before reading) */
	bool wshut;              /* we shut down our write side */
	int werror;              /* sticky: the stream is broken for writing */
	bool usend;              /* the loop runs on io_uring: plain socket writes
	                            go out by aw_fd_send_start (write-behind) */
	bool winflight;          /* usend: wbuf[wstart, wend) is the fd's send in
	                            flight (or done, not yet collected): wbuf must
	                            not move until aw_fd_send_finish */
	void *ssl;               /* SSL *, when TLS is on */
	char alpn[32];
	aw_ledger_entry ledger;
};

/* The transport under a stream: the plain fd or TLS. Each returns > 0
 * bytes, 0 at end of stream (recv only), -EAGAIN with *want set to
 * AW_READABLE or AW_WRITABLE (TLS may need to write to read and vice
 * versa), or a negative error (already raised, with a clear message). */
ssize_t aw__stream_recv(aw_stream *s, void *buf, size_t n, int *want);
ssize_t aw__stream_send(aw_stream *s, const void *buf, size_t n, int *want);

/* stream.c: append to the write buffer (growing it; the caller checked
 * the bound and, with a send in flight, that it fits in place). */
int aw__stream_buffer_append(aw_stream *s, const char *p, size_t n);

/* stream_usend.c: a plain socket stream's writes on io_uring (write-
 * behind through aw_fd_send_start). Whether new streams use it; writev
 * and drain on that path (same contracts as aw_stream_writev / _drain);
 * kick: start sending what is buffered, without waiting (before a read). */
bool aw__usend_wanted(void);
int aw__usend_writev(aw_stream *s, const struct iovec *iov, int iovcnt, aw_time deadline);
int aw__usend_drain(aw_stream *s, aw_time deadline);
void aw__usend_kick(aw_stream *s);

/* tls.c: the same for an SSL stream, plus close_notify and freeing. */
ssize_t aw__tls_recv(aw_stream *s, void *buf, size_t n, int *want);
bool aw__tls_drained(aw_stream *s);
ssize_t aw__tls_send(aw_stream *s, const void *buf, size_t n, int *want);
/* Waits: send close_notify (does not wait for the peer's). */
int aw__tls_shutdown(aw_stream *s, aw_time deadline);
void aw__tls_free(aw_stream *s);

/* Waits: connect a fresh non-blocking socket fd to addr (connect +
 * SO_ERROR). Returns 0 or a raised negative error. */
int aw__socket_connect(int fd, const struct sockaddr *addr, socklen_t len, aw_time deadline);

#endif
