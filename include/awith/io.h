/* SPDX-License-Identifier: MIT */
/*
 * awith/io.h — sockets, buffered streams, TLS, files, temp files and
 * directories, name resolution, signals.
 *
 * Every resource is a context manager: its `mgr` can be entered with
 * AW_WITH, whose exit closes it on every way out of the block. The open
 * functions (manual API) put the resource in the loop's ledger until it is
 * closed, so one that is never closed is reported at loop shutdown with
 * where it was opened.
 *
 * Time limits. The model is the cancel scope: AW_WITH(aw_timeout_init(&to,
 * AW_SEC(2))) { ... } bounds every wait inside the block. The waiting calls
 * here also take an absolute deadline as their last argument (AW_NEVER for
 * none): it is shorthand for a deadline scope around that one call — the
 * same timer, the same -ETIMEDOUT, and the scopes around the call still
 * apply (the earliest deadline wins). Every wait is a cancellation point.
 * Errors are negative
 * codes, raised on the task (aw_error_current()) with a clear message:
 *   -ECONNREFUSED, -ECONNRESET, -EPIPE, -ETIMEDOUT, -EADDRINUSE ...
 *   -AW_EEOF        the peer closed in the middle of a read that needs more
 *   -AW_ETOOLONG    a delimiter/line/body limit was exceeded (nothing is
 *                   consumed: the data stays in the buffer)
 *   -AW_ETLS        TLS protocol failure
 *   -AW_ETLS_VERIFY the peer's certificate or host name did not verify
 *   -AW_EDNS        the name could not be resolved
 */
#ifndef AWITH_IO_H
#define AWITH_IO_H

#include "awith/core.h"

#include <netdb.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API: the
 * library is built with -fvisibility=hidden, so exactly these are exported. */
#pragma GCC visibility push(default)

/* io's error codes (returned negated, like errno codes): the io range of
 * awith/ext.h's error ranges. aw_strerror knows them once io is linked. */
enum {
	AW_EIO_BASE = 0x4100,
	AW_ETLS,           /* TLS protocol failure */
	AW_ETLS_VERIFY,    /* the peer's certificate or host name did not verify */
	AW_EDNS,           /* a host name could not be resolved */
	AW_EIO_LAST
};
/* The layer's messages for aw_strerror come with its library; this
 * reference makes a static link take them along even when the program
 * calls no other function of the layer. */
extern const char aw__io_error_range;
static const char *const aw__io_error_range_ref __attribute__((used, unused)) = &aw__io_error_range;

struct addrinfo;   /* <netdb.h>; declared here so the prototype below does
                      not declare it in its own parameter scope */

/* ------------------------------------------------------------------------ */
/* TLS contexts (OpenSSL)                                                   */

typedef struct aw_tls_ctx aw_tls_ctx;

typedef struct aw_tls_opts {
	const char *ca_file;     /* client: trust these CAs instead of the system's;
	                            server: require client certificates signed
	                            by them (mutual TLS) */
	const char *cert_file;   /* server (or client auth): PEM certificate chain */
	const char *key_file;    /* server: PEM private key */
	const char *alpn;        /* comma-separated protocols, e.g. "h2,http/1.1" */
	bool insecure_no_verify; /* client: skip verification (tests only!) */
	/* Server with ca_file: ask for a client certificate but also accept
	 * a client that sends none (one that is sent must still verify). */
	bool client_cert_optional;
	/* TLS 1.2 cipher list and TLS 1.3 cipher suites, in OpenSSL's syntax
	 * (SSL_CTX_set_cipher_list, SSL_CTX_set_ciphersuites). NULL: a server
	 * uses AW_TLS_SERVER_CIPHERS (forward-secret AEAD suites only) and
	 * OpenSSL's TLS 1.3 default; a client uses OpenSSL's defaults. A list
	 * OpenSSL rejects (no cipher in it) is -EINVAL. */
	const char *ciphers;
	const char *ciphersuites;
} aw_tls_opts;

/* The server's default TLS 1.2 ciphers: Mozilla's "intermediate"
 * configuration (ECDHE/DHE key exchange, AES-GCM and ChaCha20-Poly1305;
 * no CBC, no static RSA key exchange). TLS 1.0 and 1.1 are never offered
 * nor accepted: every context is TLS 1.2 or later. */
#define AW_TLS_SERVER_CIPHERS                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                       \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                       \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                       \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* Client context: certificate and host name verification on by default.
 * -AW_ETLS with the OpenSSL reason if a file cannot be loaded. */
int aw_tls_client_ctx(aw_tls_ctx **out, const aw_tls_opts *opts) AW_MUST_USE;
/* Server context: cert_file and key_file required. */
int aw_tls_server_ctx(aw_tls_ctx **out, const aw_tls_opts *opts) AW_MUST_USE;
/* Release a reference (the creator's, or aw_tls_ctx_ref's). Streams that
 * use the context hold their own until they are closed. NULL: no-op. */
void aw_tls_ctx_free(aw_tls_ctx *ctx);
/* Take one more reference to ctx (released with aw_tls_ctx_free);
 * returns ctx. Thread-safe, as OpenSSL's reference counts are. */
aw_tls_ctx *aw_tls_ctx_ref(aw_tls_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Buffered streams                                                          */

typedef struct aw_stream aw_stream;

typedef struct aw_stream_opts {
	size_t read_buffer;      /* initial read buffer; default 16 KiB (grows
	                            up to the largest limit a read asks for) */
	size_t write_buffer;     /* bound of buffered, unsent bytes; writers
	                            wait while it is full; default 64 KiB */
} aw_stream_opts;

/* Wrap a connected, non-blocking-capable fd (the stream owns it from now
 * on and makes it O_NONBLOCK). */
int aw_stream_from_fd(aw_stream **out, int fd, const aw_stream_opts *opts) AW_MUST_USE;
/* While a stream owns its fd, do not aw_fd_wait on the fd yourself: after
 * a short read the stream waits for the next readiness edge instead of
 * reading once more, and a wait of yours would take that edge from it.
 * Use aw_stream_fill to wait for data. */

/* The stream's manager: enter does nothing (it is open), exit closes it
 * (aw_stream_close, bounded by the cleanup grace deadline). */
aw_mgr *aw_stream_mgr(aw_stream *s);
int aw_stream_fd(const aw_stream *s);

/* Waits: read whatever is available, at most n bytes (at least 1).
 * Returns the count, 0 at end of stream, or a negative error. */
ssize_t aw_stream_read(aw_stream *s, void *buf, size_t n, aw_time deadline) AW_MUST_USE;
/* Waits: read exactly n bytes. -AW_EEOF if the stream ends first (the
 * bytes that did arrive stay buffered: nothing is lost). */
int aw_stream_read_exact(aw_stream *s, void *buf, size_t n, aw_time deadline) AW_MUST_USE;
/* Waits: until `delim` is buffered within the first `max` bytes. On
 * success *line points into the read buffer (zero copy) and *len counts
 * the bytes up to and including the delimiter; they are consumed, and the
 * pointer is valid until the next read call. -AW_ETOOLONG if max bytes
 * arrive without it; -AW_EEOF if the stream ends first (a final
 * unterminated piece stays buffered: read it with aw_stream_read). */
int aw_stream_read_until(aw_stream *s, const void *delim, size_t dlen, size_t max,
			 const char **line, size_t *len, aw_time deadline) AW_MUST_USE;
/* aw_stream_read_until with "\n". */
int aw_stream_read_line(aw_stream *s, size_t max, const char **line, size_t *len, aw_time deadline) AW_MUST_USE;
/* Waits: read to end of stream into a malloc'd buffer (NUL-terminated for
 * convenience; *len excludes it). -AW_ETOOLONG if more than max bytes. */
int aw_stream_read_all(aw_stream *s, size_t max, char **out, size_t *len, aw_time deadline) AW_MUST_USE;

/* Zero-copy access for parsers: the buffered bytes, without waiting. */
void aw_stream_peek(aw_stream *s, const char **data, size_t *len);
/* Waits: read more into the buffer (at least 1 byte unless at EOF).
 * Returns bytes added, 0 at EOF. -AW_ETOOLONG if the buffer already holds
 * `max` bytes (the parser's limit). */
ssize_t aw_stream_fill(aw_stream *s, size_t max, aw_time deadline) AW_MUST_USE;
/* Drop n bytes from the front of the buffer (n <= buffered). */
void aw_stream_consume(aw_stream *s, size_t n);

/* Waits (backpressure): queue n bytes; sends right away when possible and
 * waits while more than write_buffer bytes are unsent. Returns 0; on
 * error the stream is broken (-EPIPE, -ECONNRESET, -ETIMEDOUT) and
 * further writes fail. */
int aw_stream_write(aw_stream *s, const void *buf, size_t n, aw_time deadline) AW_MUST_USE;
int aw_stream_writev(aw_stream *s, const struct iovec *iov, int iovcnt, aw_time deadline) AW_MUST_USE;
/* Waits: send n bytes of the file `fd` from offset `off` after every byte
 * already buffered: sendfile(2) on a plain fd (the bytes go from the page
 * cache to the socket, never through user memory), else (TLS, or a file
 * that cannot be sendfile'd) read off the loop with aw_file_pread in
 * 64 KiB pieces and written. Returns the count sent, as write(2) does: n,
 * or fewer when the file ended first (it shrank) or, on a plain fd, when
 * this call's deadline passed after some bytes had gone (the caller goes
 * on with a fresh deadline: a deadline per step of progress, not per
 * file; an enclosing scope's deadline is an error as usual); 0
 * when the file has nothing at off; or a negative error as aw_stream_write
 * when nothing could be sent (-EPIPE, -ECONNRESET, -ETIMEDOUT; the stream
 * is broken after a send error). The file's own offset is not
 * used or moved. sendfile reads the file on the loop thread: from the page
 * cache that costs nothing, but a cold file's first read waits for the
 * disk (nginx's `sendfile on` without aio threads behaves the same). */
ssize_t aw_stream_sendfile(aw_stream *s, int fd, off_t off, size_t n, aw_time deadline) AW_MUST_USE;
/* Waits until every buffered byte is sent. */
int aw_stream_drain(aw_stream *s, aw_time deadline) AW_MUST_USE;
/* Waits: drain, then shut down the write side (FIN; TLS close_notify). */
int aw_stream_shutdown(aw_stream *s, aw_time deadline) AW_MUST_USE;
/* Waits: drain (bounded by deadline), TLS close_notify, close, free.
 * Always frees s, whatever it returns. */
int aw_stream_close(aw_stream *s, aw_time deadline) AW_MUST_USE;
size_t aw_stream_buffered(const aw_stream *s);   /* unread bytes */
size_t aw_stream_pending(const aw_stream *s);    /* unsent bytes */

/* TLS on a connected stream. Waits for the handshake. Client: `host` is
 * used for SNI and checked against the certificate (unless the context is
 * insecure; IP literals are checked against IP SANs, without SNI). Server:
 * host is NULL. Unsent plaintext is drained first; plaintext already read
 * but not consumed is refused (-EINVAL). A failed handshake leaves the
 * stream broken (reads and writes fail with -AW_ETLS); close it.
 * End of stream: a read returns 0 only after the peer's close_notify; a
 * connection closed without it is a possible truncation: -ECONNRESET. */
int aw_stream_tls_client(aw_stream *s, aw_tls_ctx *ctx, const char *host, aw_time deadline) AW_MUST_USE;
int aw_stream_tls_server(aw_stream *s, aw_tls_ctx *ctx, aw_time deadline) AW_MUST_USE;
/* The negotiated ALPN protocol ("" if none). */
const char *aw_stream_alpn(const aw_stream *s);
/* The subject of the peer's certificate, in RFC 2253 form (as nginx's
 * $ssl_client_s_dn: "CN=client,O=Example"), when the peer presented one
 * and it verified (a server context with ca_file, or a verifying client
 * context); a malloc'd string for the caller to free. NULL when there is
 * none: a plain stream, a handshake not done, no certificate, or a
 * context that does not verify; NULL with -ENOMEM raised when out of
 * memory. */
char *aw_stream_tls_peer_subject(const aw_stream *s);

/* ------------------------------------------------------------------------ */
/* Name resolution (getaddrinfo on the thread pool)                        */

/* Waits: resolve host (name or literal) and port for a stream socket.
 * Returns a list to free with freeaddrinfo. At the deadline or on
 * cancellation it returns at once (the lookup finishes in the background
 * and its result is dropped). -AW_EDNS with gai_strerror's text. */
int aw_resolve(const char *host, int port, struct addrinfo **out, aw_time deadline) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* TCP and Unix sockets                                                     */

/* Waits: resolve host and try every address in order until one connects
 * (IPv6 and IPv4 alike); TCP_NODELAY is on. -ECONNREFUSED, -ETIMEDOUT,
 * -AW_EDNS, -ENETUNREACH ... (the last address's error, message listing
 * what was tried). */
int aw_tcp_connect(aw_stream **out, const char *host, int port, aw_time deadline) AW_MUST_USE;
int aw_unix_connect(aw_stream **out, const char *path, aw_time deadline) AW_MUST_USE;

/* Connect on enter, close on exit: AW_WITH(aw_tcp_connection_init(&c, ...)). */
typedef struct aw_connection {
	aw_mgr mgr;
	aw_stream *stream;       /* valid inside the block */
	const char *host;        /* or the Unix path */
	int port;                /* -1: Unix socket */
	aw_time deadline;
} aw_connection;
aw_mgr *aw_tcp_connection_init(aw_connection *c, const char *host, int port, aw_time deadline);
aw_mgr *aw_unix_connection_init(aw_connection *c, const char *path, aw_time deadline);

typedef struct aw_listener aw_listener;

typedef struct aw_listen_opts {
	int backlog;             /* default 511 */
	bool reuseport;          /* SO_REUSEPORT: several processes share it */
	bool no_reuseaddr;       /* SO_REUSEADDR is on unless this is set */
	bool v6only;             /* for "::": IPv6 only */
	bool keepalive;          /* SO_KEEPALIVE on accepted connections */
	aw_stream_opts stream;   /* for accepted streams */
} aw_listen_opts;

/* Bind and listen. host NULL or "" means all IPv4 addresses ("0.0.0.0");
 * port 0 picks a free port (aw_listener_port tells which). */
int aw_tcp_listen(aw_listener **out, const char *host, int port, const aw_listen_opts *opts) AW_MUST_USE;
/* A stale socket file at path is replaced only if nothing listens on it. */
int aw_unix_listen(aw_listener **out, const char *path, const aw_listen_opts *opts) AW_MUST_USE;
/* A listener over a socket that is already listening (inherited from a
 * parent, from systemd's socket activation, from an older generation of
 * the same server). Takes the descriptor: closing the listener closes it
 * (a Unix socket's file is not removed). Sets it non-blocking and
 * close-on-exec (the file status flag is shared with other holders of the
 * same socket). -EBADF if fd is not a socket, -EINVAL if it is not a
 * listening stream socket (fd stays the caller's then), -ENOMEM (fd is
 * closed). */
int aw_listener_from_fd(aw_listener **out, int fd, const aw_listen_opts *opts) AW_MUST_USE;
int aw_listener_port(const aw_listener *l);
int aw_listener_fd(const aw_listener *l);
/* Waits: the next connection. Transient errors (EMFILE, ECONNABORTED) are
 * reported, not retried silently. */
int aw_listener_accept(aw_listener *l, aw_stream **out, aw_time deadline) AW_MUST_USE;
/* Without waiting: a connection the kernel already accepted for l and
 * queued (io_uring's multishot accept; after aw_fd_accept_stop on
 * aw_listener_fd(l), which says how many), set up as aw_listener_accept
 * sets it up. 0 and *out; -EAGAIN (not raised) when none is queued, and
 * always on epoll: it never takes a client from the kernel's backlog;
 * -ENOMEM (raised; that connection is closed). For a server that stops
 * accepting but serves the clients that connected while it listened. */
int aw_listener_accept_queued(aw_listener *l, aw_stream **out) AW_MUST_USE;
/* Accepted connections as an async iterator: AW_FOR(conn, it) hands out
 * aw_stream * (the receiver owns each one). */
aw_iter *aw_listener_iter(aw_listener *l);
aw_mgr *aw_listener_mgr(aw_listener *l);   /* exit closes */
void aw_listener_close(aw_listener *l);    /* removes a Unix socket file */

/* ------------------------------------------------------------------------ */
/* Files (off the loop: the thread pool, or the loop's io_uring)            */
/*
 * On the epoll backend each call is one aw_to_thread job (open, every
 * read or write, close in a pool thread). On the io_uring backend
 * (aw_loop_backend() == "io_uring") the same steps are io_uring
 * operations (aw_fileop_run, ext.h) submitted with the loop's one
 * io_uring_enter per turn, and the pool starts no thread for them. The
 * results, error codes and messages are the same on both. Cancellation:
 * a read returns the cancel code only once the kernel has let go of the
 * buffer (io_uring: the read is cancelled and awaited, shielded; a
 * regular-file read already under way is awaited to its end); a write is
 * never cut short: it runs to its end, then the cancel code is returned
 * (on the pool, a job no thread had started yet is withdrawn instead). */

/* Waits: read a whole file into a malloc'd, NUL-terminated buffer.
 * -AW_ETOOLONG if it is larger than max. */
int aw_file_read_all(const char *path, size_t max, char **out, size_t *len) AW_MUST_USE;
/* Waits: write (create/truncate, `mode`) a whole file; with `atomic`, write
 * a temp file beside it, fsync, and rename over the target. */
int aw_file_write_all(const char *path, const void *data, size_t len, mode_t mode, bool atomic) AW_MUST_USE;
/* Waits: pread/pwrite the whole range (loops over short transfers).
 * aw_file_pread returns the count read (short only at end of file). */
ssize_t aw_file_pread(int fd, void *buf, size_t n, off_t off) AW_MUST_USE;
int aw_file_pwrite(int fd, const void *buf, size_t n, off_t off) AW_MUST_USE;

/* A file read in chunks as an async iterator (the seed's "async for chunk
 * in stream"): each item is an aw_chunk * (core.h) valid until the next step. */
typedef struct aw_file_chunks {
	aw_iter iter;
	const char *path;
	size_t chunk_size;
	int fd;
	off_t offset;
	char *buf;
	aw_chunk chunk;
	aw_ledger_entry ledger;
} aw_file_chunks;
/* chunk_size 0 is -EINVAL at enter. */
aw_iter *aw_file_chunks_init(aw_file_chunks *fc, const char *path, size_t chunk_size);

/* Temp file: enter creates a unique file (mode 0600) in dir (NULL: $TMPDIR
 * or /tmp) named prefix-XXXXXX; exit closes and removes it, on every way
 * out, cancellation included. */
typedef struct aw_tempfile {
	aw_mgr mgr;
	const char *dir, *prefix;
	int fd;
	char path[4096];
} aw_tempfile;
aw_mgr *aw_tempfile_init(aw_tempfile *t, const char *dir, const char *prefix);

/* Temp dir: mode 0700; exit removes it and everything in it (not
 * following symlinks), off the loop. */
typedef struct aw_tempdir {
	aw_mgr mgr;
	const char *dir, *prefix;
	char path[4096];
} aw_tempdir;
aw_mgr *aw_tempdir_init(aw_tempdir *t, const char *dir, const char *prefix);

/* ------------------------------------------------------------------------ */
/* Signals as waits (signalfd)                                              */

/* Enter blocks the listed signals on the loop thread (the pool's threads
 * block every signal) and opens a signalfd; exit closes it and unblocks
 * each signal once the last block that blocked it has left (and only if it
 * was not blocked before), so nested or overlapping blocks in different
 * tasks never unblock a signal another one still waits for. SIGKILL,
 * SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL: -EINVAL. */
typedef struct aw_signals {
	aw_mgr mgr;
	int signals[8];
	int count;
	int fd;
} aw_signals;
/* sigs: up to 8 signal numbers. */
aw_mgr *aw_signals_init(aw_signals *s, const int *sigs, int count);
/* Note: signals that arrive after the last wait are still pending when the
 * block ends; if nothing else blocks them then, their default action runs
 * (a second SIGTERM during a server's teardown ends the process). Keep the
 * block open for as long as such signals must be caught. */
/* Waits: the next of the signals; returns its number (> 0). */
int aw_signals_wait(aw_signals *s, aw_time deadline) AW_MUST_USE;

/* Every waiting call records its caller's location, the one way core.h
 * describes (a same-named macro stores AW_HERE before the call): the
 * opening calls for the ledger, the others for aw_dump's "waits at". */
#define aw_stream_read(s, buf, n, dl) AW__AT((aw_stream_read)((s), (buf), (n), (dl)))
#define aw_stream_read_exact(s, buf, n, dl) AW__AT((aw_stream_read_exact)((s), (buf), (n), (dl)))
#define aw_stream_read_until(s, d, dlen, max, line, len, dl) \
	AW__AT((aw_stream_read_until)((s), (d), (dlen), (max), (line), (len), (dl)))
#define aw_stream_read_line(s, max, line, len, dl) AW__AT((aw_stream_read_line)((s), (max), (line), (len), (dl)))
#define aw_stream_read_all(s, max, out, len, dl) AW__AT((aw_stream_read_all)((s), (max), (out), (len), (dl)))
#define aw_stream_fill(s, max, dl) AW__AT((aw_stream_fill)((s), (max), (dl)))
#define aw_stream_write(s, buf, n, dl) AW__AT((aw_stream_write)((s), (buf), (n), (dl)))
#define aw_stream_writev(s, iov, cnt, dl) AW__AT((aw_stream_writev)((s), (iov), (cnt), (dl)))
#define aw_stream_sendfile(s, fd, off, n, dl) AW__AT((aw_stream_sendfile)((s), (fd), (off), (n), (dl)))
#define aw_stream_drain(s, dl) AW__AT((aw_stream_drain)((s), (dl)))
#define aw_stream_shutdown(s, dl) AW__AT((aw_stream_shutdown)((s), (dl)))
#define aw_stream_close(s, dl) AW__AT((aw_stream_close)((s), (dl)))
#define aw_stream_tls_client(s, ctx, host, dl) AW__AT((aw_stream_tls_client)((s), (ctx), (host), (dl)))
#define aw_stream_tls_server(s, ctx, dl) AW__AT((aw_stream_tls_server)((s), (ctx), (dl)))
#define aw_resolve(host, port, out, dl) AW__AT((aw_resolve)((host), (port), (out), (dl)))
#define aw_file_read_all(path, max, out, len) AW__AT((aw_file_read_all)((path), (max), (out), (len)))
#define aw_file_write_all(path, data, len, mode, atomic) \
	AW__AT((aw_file_write_all)((path), (data), (len), (mode), (atomic)))
#define aw_file_pread(fd, buf, n, off) AW__AT((aw_file_pread)((fd), (buf), (n), (off)))
#define aw_file_pwrite(fd, buf, n, off) AW__AT((aw_file_pwrite)((fd), (buf), (n), (off)))
#define aw_signals_wait(s, dl) AW__AT((aw_signals_wait)((s), (dl)))
#define aw_stream_from_fd(out, fd, opts) AW__AT((aw_stream_from_fd)((out), (fd), (opts)))
#define aw_tcp_connect(out, host, port, dl) AW__AT((aw_tcp_connect)((out), (host), (port), (dl)))
#define aw_unix_connect(out, path, dl) AW__AT((aw_unix_connect)((out), (path), (dl)))
#define aw_tcp_listen(out, host, port, opts) AW__AT((aw_tcp_listen)((out), (host), (port), (opts)))
#define aw_unix_listen(out, path, opts) AW__AT((aw_unix_listen)((out), (path), (opts)))
#define aw_listener_from_fd(out, fd, opts) AW__AT((aw_listener_from_fd)((out), (fd), (opts)))
#define aw_listener_accept(l, out, dl) AW__AT((aw_listener_accept)((l), (out), (dl)))
#define aw_listener_accept_queued(l, out) AW__AT((aw_listener_accept_queued)((l), (out)))

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif
