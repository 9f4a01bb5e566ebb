/* SPDX-License-Identifier: MIT */
/*
 * Buffered streams over a connected fd (socket or pipe), optionally TLS.
 *
 * Reading: one growable buffer; parsers look at it in place (peek/consume,
 * read_until's zero-copy line) and the buffer grows only up to the largest
 * limit a caller asks for. Nothing is consumed by a read that fails: an
 * early EOF or an over-long line leaves the bytes in the buffer.
 *
 * Writing: a write sends at once when the socket takes it and buffers the
 * rest; it waits (backpressure) while more than `write_buffer` bytes are
 * unsent, sending straight from the caller's memory meanwhile, so a large
 * write is never copied whole. Unsent bytes also go out whenever the stream
 * waits to read (it then waits for either direction), so a request written
 * into the buffer cannot sit there while the task waits for the answer.
 * When the loop runs on io_uring, a plain socket's writes go out behind
 * the writer instead (stream_usend.c): copied into the buffer, sent with
 * the loop's next io_uring_enter, no system call of the stream's own.
 */
#include "internal.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_RBUF (16 * 1024)
#define DEFAULT_WLIMIT (64 * 1024)

/* ---- transport ----------------------------------------------------------- */

ssize_t aw__stream_recv(aw_stream *s, void *buf, size_t n, int *want)
{
	if (s->ssl)
		return aw__tls_recv(s, buf, n, want);
	for (;;) {
		ssize_t r = aw__fault_read(s->fd, buf, n, !s->is_sock);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = AW_READABLE;
			return -EAGAIN;
		}
		return aw_raise(-errno, "read from fd %d: %m", s->fd);
	}
}

ssize_t aw__stream_send(aw_stream *s, const void *buf, size_t n, int *want)
{
	if (s->ssl)
		return aw__tls_send(s, buf, n, want);
	for (;;) {
		/* MSG_NOSIGNAL: a closed peer is -EPIPE, not a process-killing
		 * SIGPIPE. Pipes cannot take send(). */
		ssize_t r = s->is_sock ? aw__fault_send(s->fd, buf, n, MSG_NOSIGNAL) : aw__fault_write(s->fd, buf, n);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			*want = AW_WRITABLE;
			return -EAGAIN;
		}
		return aw_raise(-errno, "write to fd %d: %m", s->fd);
	}
}

/* ---- lifetime -------------------------------------------------------------- */

static int stream_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int stream_exit(aw_mgr *m, int err)
{
	aw_stream *s = AW_CONTAINER_OF(m, aw_stream, mgr);
	int rc = (aw_stream_close)(s, AW_NEVER);   /* bounded by the grace deadline */
	return err ? err : rc;
}

static const aw_mgr_ops stream_ops = { .name = "stream", .enter = stream_enter, .exit = stream_exit };

/* A stream still open when its loop shuts down: reported by the ledger,
 * then released here so that neither its fd nor its memory leaks. */
static void stream_release_leaked(aw_ledger_entry *e)
{
	aw_stream *s = AW_CONTAINER_OF(e, aw_stream, ledger);
	if (s->ssl)
		aw__tls_free(s);
	aw_fd_close(s->fd);
	free(s->rbuf);
	free(s->wbuf);
	free(s);
}

int (aw_stream_from_fd)(aw_stream **out, int fd, const aw_stream_opts *opts)
{
	*out = NULL;
	if (fd < 0)
		return aw_raise(-EBADF, "aw_stream_from_fd: invalid fd %d", fd);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return aw_raise(-errno, "aw_stream_from_fd: fd %d: %m", fd);
	aw_stream *s = aw__calloc(1, sizeof *s);
	size_t rcap = opts && opts->read_buffer ? opts->read_buffer : DEFAULT_RBUF;
	char *rbuf = s ? aw__malloc(rcap) : NULL;
	if (!rbuf) {
		free(s);
		return aw_raise(-ENOMEM, "aw_stream_from_fd: no memory for the buffers");
	}
	struct stat st;
	s->mgr.ops = &stream_ops;
	s->fd = fd;
	s->is_sock = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	s->rbuf = rbuf;
	s->rcap = rcap;
	s->wlimit = opts && opts->write_buffer ? opts->write_buffer : DEFAULT_WLIMIT;
	s->usend = s->is_sock && aw__usend_wanted();
	aw_ledger_open(&s->ledger, "stream", aw__where);
	s->ledger.owner = s;
	s->ledger.release = stream_release_leaked;
	*out = s;
	return 0;
}

aw_mgr *aw_stream_mgr(aw_stream *s) { return &s->mgr; }
int aw_stream_fd(const aw_stream *s) { return s->fd; }
size_t aw_stream_buffered(const aw_stream *s) { return s->rend - s->rstart; }
size_t aw_stream_pending(const aw_stream *s) { return s->wend - s->wstart; }
const char *aw_stream_alpn(const aw_stream *s) { return s->alpn; }

/* ---- writing --------------------------------------------------------------- */

static int broken(aw_stream *s)
{
	return aw_raise(s->werror, "stream fd %d is broken by an earlier write error: %s", s->fd,
			aw_strerror(s->werror));
}

static int write_timeout(aw_stream *s, size_t unsent)
{
	return aw_raise(-ETIMEDOUT, "stream fd %d: deadline passed with %zu byte(s) unsent (the peer is not reading)",
			s->fd, unsent);
}

/* Send from the buffer without waiting. Returns 0 (maybe some left), or a
 * negative error (stream broken). */
static int flush_nowait(aw_stream *s)
{
	while (s->wstart < s->wend) {
		int want;
		ssize_t r = aw__stream_send(s, s->wbuf + s->wstart, s->wend - s->wstart, &want);
		if (r == -EAGAIN)
			return 0;
		if (r < 0) {
			s->werror = (int)r;
			return (int)r;
		}
		s->wstart += (size_t)r;
	}
	s->wstart = s->wend = 0;
	return 0;
}

/* Send `n` bytes from the caller's buf, waiting as needed (nothing is
 * buffered). On a deadline, *sent tells how far it got. */
static int send_all(aw_stream *s, const char *buf, size_t n, aw_time deadline, size_t *sent)
{
	*sent = 0;
	while (n) {
		int want;
		ssize_t r = aw__stream_send(s, buf, n, &want);
		if (r == -EAGAIN) {
			int rc = (aw_fd_wait)(s->fd, want, deadline);
			if (rc == -ETIMEDOUT)
				return write_timeout(s, n + aw_stream_pending(s));
			if (rc)
				return rc;
			continue;
		}
		if (r < 0) {
			s->werror = (int)r;
			return (int)r;
		}
		buf += r;
		n -= (size_t)r;
		*sent += (size_t)r;
	}
	return 0;
}

int (aw_stream_drain)(aw_stream *s, aw_time deadline)
{
	if (s->werror)
		return broken(s);
	if (s->usend && !s->ssl)
		return aw__usend_drain(s, deadline);
	/* Advance wstart as bytes go out: after a deadline, a later drain
	 * goes on from there and never sends a byte twice. */
	while (s->wstart < s->wend) {
		int want;
		ssize_t r = aw__stream_send(s, s->wbuf + s->wstart, s->wend - s->wstart, &want);
		if (r == -EAGAIN) {
			int rc = (aw_fd_wait)(s->fd, want, deadline);
			if (rc == -ETIMEDOUT)
				return write_timeout(s, s->wend - s->wstart);
			if (rc)
				return rc;
			continue;
		}
		if (r < 0) {
			s->werror = (int)r;
			return (int)r;
		}
		s->wstart += (size_t)r;
	}
	s->wstart = s->wend = 0;
	return 0;
}

int aw__stream_buffer_append(aw_stream *s, const char *p, size_t n)
{
	if (s->wstart > 0 && s->wend + n > s->wcap) {
		memmove(s->wbuf, s->wbuf + s->wstart, s->wend - s->wstart);
		s->wend -= s->wstart;
		s->wstart = 0;
	}
	if (s->wend + n > s->wcap) {
		size_t cap = s->wcap ? s->wcap : 4096;
		while (cap < s->wend + n)
			cap *= 2;
		char *w = aw__realloc(s->wbuf, cap);
		if (!w)
			return aw_raise(-ENOMEM, "stream: cannot grow the write buffer to %zu bytes", cap);
		s->wbuf = w;
		s->wcap = cap;
	}
	memcpy(s->wbuf + s->wend, p, n);
	s->wend += n;
	return 0;
}

int (aw_stream_writev)(aw_stream *s, const struct iovec *iov, int iovcnt, aw_time deadline)
{
	if (s->werror)
		return broken(s);
	if (s->wshut)
		return aw_raise(-EPIPE, "stream fd %d: write after shutdown", s->fd);
	if (s->usend && !s->ssl)
		return aw__usend_writev(s, iov, iovcnt, deadline);
	for (int i = 0; i < iovcnt; i++) {
		const char *p = iov[i].iov_base;
		size_t n = iov[i].iov_len;
		if (!n)
			continue;
		/* Nothing queued: try the socket first, no copy. */
		if (s->wstart == s->wend) {
			int want;
			ssize_t r = aw__stream_send(s, p, n, &want);
			if (r < 0 && r != -EAGAIN) {
				s->werror = (int)r;
				return (int)r;
			}
			if (r > 0) {
				p += r;
				n -= (size_t)r;
			} else if (s->ssl) {
				/* OpenSSL now holds a record made from these n
				 * bytes and must be called again with at least as
				 * many: finish them from the caller's memory. */
				size_t sent;
				int rc = send_all(s, p, n, deadline, &sent);
				if (rc)
					return rc;
				continue;
			}
		}
		if (!n)
			continue;
		if (aw_stream_pending(s) + n > s->wlimit) {
			/* Over the bound: send what is queued, then the caller's
			 * bytes straight from their memory, until the rest fits. */
			int rc = (aw_stream_drain)(s, deadline);
			if (rc)
				return rc;
			if (n > s->wlimit) {
				size_t direct = n - s->wlimit, sent;
				rc = send_all(s, p, direct, deadline, &sent);
				if (rc)
					return rc;
				p += direct;
				n -= direct;
			}
		}
		int rc = aw__stream_buffer_append(s, p, n);
		if (rc)
			return rc;
		rc = flush_nowait(s);
		if (rc)
			return rc;
	}
	return 0;
}

int (aw_stream_write)(aw_stream *s, const void *buf, size_t n, aw_time deadline)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = n };
	return (aw_stream_writev)(s, &iov, 1, deadline);
}

/* ---- file bodies ------------------------------------------------------------- */

/* Without sendfile (TLS, or a file system or fd that refuses it): read off
 * the loop in 64 KiB pieces and write them. */
static ssize_t copy_file(aw_stream *s, int fd, off_t off, size_t n, aw_time deadline, size_t done)
{
	size_t piece = n - done < 64 * 1024 ? n - done : 64 * 1024;
	char *buf = aw__malloc(piece);
	if (!buf)
		return aw_raise(-ENOMEM, "aw_stream_sendfile: no memory for a %zu-byte buffer", piece);
	ssize_t rc = 0;
	while (done < n) {
		size_t want = n - done < piece ? n - done : piece;
		ssize_t r = (aw_file_pread)(fd, buf, want, off + (off_t)done);
		if (r < 0) {
			rc = r;
			break;
		}
		if (r == 0)
			break;   /* the file ended: short count */
		int w = (aw_stream_write)(s, buf, (size_t)r, deadline);
		if (w) {
			rc = w;
			break;
		}
		done += (size_t)r;
	}
	free(buf);
	return rc < 0 ? rc : (ssize_t)done;
}

ssize_t (aw_stream_sendfile)(aw_stream *s, int fd, off_t off, size_t n, aw_time deadline)
{
	if (fd < 0 || off < 0)
		return aw_raise(-EINVAL, "aw_stream_sendfile: bad fd %d or offset %jd", fd, (intmax_t)off);
	if (s->werror)
		return broken(s);
	if (s->wshut)
		return aw_raise(-EPIPE, "stream fd %d: write after shutdown", s->fd);
	/* What was written before goes first. */
	int rc = (aw_stream_drain)(s, deadline);
	if (rc)
		return rc;
	if (s->ssl)
		return copy_file(s, fd, off, n, deadline, 0);
	size_t done = 0;
	while (done < n) {
		off_t pos = off + (off_t)done;
		size_t want = n - done < (size_t)1 << 30 ? n - done : (size_t)1 << 30;
		ssize_t r = sendfile(s->fd, fd, &pos, want);
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		if (r == 0)
			break;   /* the file ended */
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			rc = (aw_fd_wait)(s->fd, AW_WRITABLE, deadline);
			if (rc == -ETIMEDOUT && done && aw_now() >= deadline) {
				/* Our deadline, after progress: a short count, as
				 * write(2). (A scope around the call that expired
				 * earlier is not ours to absorb: it goes on.) */
				aw_error_clear();
				break;
			}
			if (rc == -ETIMEDOUT)
				return write_timeout(s, n - done);
			if (rc)
				return rc;
			continue;
		}
		if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && done == 0)
			return copy_file(s, fd, off, n, deadline, 0);   /* this pair cannot sendfile */
		if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
			s->werror = -errno;
			return aw_raise(-errno, "sendfile to fd %d: %m", s->fd);
		}
		return aw_raise(-errno, "sendfile from fd %d to fd %d: %m", fd, s->fd);
	}
	return (ssize_t)done;
}

/* ---- reading --------------------------------------------------------------- */

/* Make room for at least one more byte, growing up to `max` buffered. */
static int make_room(aw_stream *s, size_t max)
{
	if (s->rstart == s->rend)
		s->rstart = s->rend = 0;
	if (s->rend < s->rcap)
		return 0;
	size_t have = s->rend - s->rstart;
	if (s->rstart > 0) {
		memmove(s->rbuf, s->rbuf + s->rstart, have);
		s->rstart = 0;
		s->rend = have;
		return 0;
	}
	if (have >= max)
		return aw_raise(-AW_ETOOLONG, "stream fd %d: %zu bytes buffered, the limit is %zu", s->fd, have, max);
	size_t cap = s->rcap * 2;
	if (cap > max)
		cap = max;
	char *r = aw__realloc(s->rbuf, cap);
	if (!r)
		return aw_raise(-ENOMEM, "stream: cannot grow the read buffer to %zu bytes", cap);
	s->rbuf = r;
	s->rcap = cap;
	return 0;
}

ssize_t (aw_stream_fill)(aw_stream *s, size_t max, aw_time deadline)
{
	if (s->eof)
		return 0;
	int rc = make_room(s, max);
	if (rc)
		return rc;
	for (;;) {
		if (s->usend && !s->ssl)
			aw__usend_kick(s);   /* io_uring: goes with the loop's next enter */
		else if (s->wstart < s->wend && !s->werror)
			flush_nowait(s);   /* an error is sticky; reading goes on */
		int want = AW_READABLE;
		ssize_t r;
		if (s->drained && !aw_fd_peer_closed(s->fd)) {
			/* The last read left the socket empty: reading again now
			 * would only return EAGAIN (one system call per message
			 * for nothing). New data brings a readiness edge. */
			s->drained = false;
			r = -EAGAIN;
		} else {
			size_t space = s->rcap - s->rend, got = 0;
			/* io_uring, multishot: what the loop received for
			 * us comes first, and the socket is not read
			 * (-EAGAIN: nothing yet, aw_fd_recv waits for it). */
			r = s->is_sock && !s->ssl ? aw_fd_recv_take(s->fd, s->rbuf + s->rend, space, &got) : -EOPNOTSUPP;
			if (r == 0)
				r = (ssize_t)got;
			else if (r == -EOPNOTSUPP)
				r = aw__stream_recv(s, s->rbuf + s->rend, space, &want);
			if (r > 0) {
				s->rend += (size_t)r;
				s->drained = s->ssl ? aw__tls_drained(s) : s->is_sock && (size_t)r < space;
				return r;
			}
		}
		if (r == 0) {
			s->eof = true;
			return 0;
		}
		if (r != -EAGAIN)
			return r;
		int dirs = want;
		if (s->wstart < s->wend && !s->werror && !(s->usend && !s->ssl))
			dirs |= AW_WRITABLE;
		if (dirs == AW_READABLE && s->is_sock && !s->ssl) {
			/* On io_uring: wait and read in one operation (no
			 * read system call of ours). -EOPNOTSUPP: epoll. */
			size_t got = 0, space = s->rcap - s->rend;
			rc = (aw_fd_recv)(s->fd, s->rbuf + s->rend, space, &got, deadline);
			if (rc != -EOPNOTSUPP) {
				s->rend += got;   /* bytes that landed are kept, whatever came with them */
				if (rc == -ETIMEDOUT && !got)
					return aw_raise(-ETIMEDOUT, "stream fd %d: no data before the deadline", s->fd);
				if (rc < 0 && !got)
					return rc;
				if (rc < 0)
					aw_error_clear();   /* the bytes first; the next wait sees it again */
				if (!got) {
					s->eof = true;
					return 0;
				}
				s->drained = got < space;
				return (ssize_t)got;
			}
		}
		rc = (aw_fd_wait_any)(s->fd, dirs, deadline);
		if (rc == -ETIMEDOUT)
			return aw_raise(-ETIMEDOUT, "stream fd %d: no data before the deadline", s->fd);
		if (rc < 0)
			return rc;
	}
}

void aw_stream_peek(aw_stream *s, const char **data, size_t *len)
{
	*data = s->rbuf + s->rstart;
	*len = s->rend - s->rstart;
}

void aw_stream_consume(aw_stream *s, size_t n)
{
	size_t have = s->rend - s->rstart;
	s->rstart += n < have ? n : have;
}

ssize_t (aw_stream_read)(aw_stream *s, void *buf, size_t n, aw_time deadline)
{
	if (!n)
		return 0;
	if (s->rstart == s->rend) {
		if (s->eof)
			return 0;
		ssize_t r = (aw_stream_fill)(s, s->rcap, deadline);
		if (r <= 0)
			return r;
	}
	size_t have = s->rend - s->rstart;
	if (n > have)
		n = have;
	memcpy(buf, s->rbuf + s->rstart, n);
	s->rstart += n;
	return (ssize_t)n;
}

int (aw_stream_read_exact)(aw_stream *s, void *buf, size_t n, aw_time deadline)
{
	while (s->rend - s->rstart < n) {
		if (s->eof)
			return aw_raise(-AW_EEOF, "stream fd %d ended after %zu of %zu bytes", s->fd,
					s->rend - s->rstart, n);
		ssize_t r = (aw_stream_fill)(s, n, deadline);
		if (r < 0)
			return (int)r;
	}
	memcpy(buf, s->rbuf + s->rstart, n);
	s->rstart += n;
	return 0;
}

int (aw_stream_read_until)(aw_stream *s, const void *delim, size_t dlen, size_t max, const char **line,
			 size_t *len, aw_time deadline)
{
	if (!dlen)
		return aw_raise(-EINVAL, "aw_stream_read_until: empty delimiter");
	size_t scanned = 0;   /* bytes already searched (relative to rstart) */
	for (;;) {
		size_t have = s->rend - s->rstart;
		size_t limit = have < max ? have : max;
		size_t from = scanned > dlen ? scanned - dlen + 1 : 0;
		if (limit >= dlen && from <= limit - dlen) {
			const char *base = s->rbuf + s->rstart;
			const char *hit = memmem(base + from, limit - from, delim, dlen);
			if (hit) {
				*line = base;
				*len = (size_t)(hit - base) + dlen;
				s->rstart += *len;
				return 0;
			}
		}
		scanned = limit;
		if (have >= max)
			return aw_raise(-AW_ETOOLONG, "stream fd %d: no delimiter within %zu bytes", s->fd, max);
		if (s->eof)
			return aw_raise(-AW_EEOF, "stream fd %d ended before the delimiter (%zu bytes buffered)", s->fd,
					have);
		ssize_t r = (aw_stream_fill)(s, max, deadline);
		if (r < 0)
			return (int)r;
	}
}

int (aw_stream_read_line)(aw_stream *s, size_t max, const char **line, size_t *len, aw_time deadline)
{
	return (aw_stream_read_until)(s, "\n", 1, max, line, len, deadline);
}

int (aw_stream_read_all)(aw_stream *s, size_t max, char **out, size_t *len, aw_time deadline)
{
	*out = NULL;
	*len = 0;
	while (!s->eof) {
		if (s->rend - s->rstart > max)
			break;
		/* Allow one byte past max so that "more than max" is seen. */
		ssize_t r = (aw_stream_fill)(s, max + 1, deadline);
		if (r < 0)
			return (int)r;
	}
	size_t have = s->rend - s->rstart;
	if (have > max)
		return aw_raise(-AW_ETOOLONG, "stream fd %d: more than %zu bytes before the end", s->fd, max);
	char *buf = aw__malloc(have + 1);
	if (!buf)
		return aw_raise(-ENOMEM, "aw_stream_read_all: no memory for %zu bytes", have);
	memcpy(buf, s->rbuf + s->rstart, have);
	buf[have] = 0;
	s->rstart = s->rend = 0;
	*out = buf;
	*len = have;
	return 0;
}

/* ---- shutdown and close ---------------------------------------------------- */

int (aw_stream_shutdown)(aw_stream *s, aw_time deadline)
{
	int rc = (aw_stream_drain)(s, deadline);
	if (rc)
		return rc;
	if (s->wshut)
		return 0;
	s->wshut = true;
	if (s->ssl) {
		rc = aw__tls_shutdown(s, deadline);
		if (rc)
			return rc;
	}
	if (s->is_sock && shutdown(s->fd, SHUT_WR) != 0 && errno != ENOTCONN)
		return aw_raise(-errno, "shutdown of fd %d: %m", s->fd);
	return 0;
}

int (aw_stream_close)(aw_stream *s, aw_time deadline)
{
	if (!s)
		return 0;
	int rc = 0;
	if (!s->werror && s->wstart < s->wend)
		rc = (aw_stream_drain)(s, deadline);
	if (s->ssl) {
		if (!rc && !s->wshut && !s->werror)
			rc = aw__tls_shutdown(s, deadline);
		aw__tls_free(s);
	}
	int crc = aw_fd_close(s->fd);
	if (!rc && crc)
		rc = aw_raise(crc, "close of fd %d: %s", s->fd, aw_strerror(crc));
	aw_ledger_close(&s->ledger);
	free(s->rbuf);
	free(s->wbuf);
	free(s);
	return rc;
}
