/* SPDX-License-Identifier: MIT */
/*
 * TLS on streams (OpenSSL 3): contexts, the handshake, and the transport
 * hooks stream.c calls when s->ssl is set.
 *
 * The socket is non-blocking: every SSL call that would block returns
 * SSL_ERROR_WANT_READ/WRITE, and we wait for the fd with aw_fd_wait (the
 * handshake, close_notify) or hand -EAGAIN and the direction back to the
 * stream (aw__tls_recv/send), which waits and calls again.
 *
 * The SSL object reads and writes the fd through a small BIO of our own
 * rather than SSL_set_fd's socket BIO, for one reason: OpenSSL's socket BIO
 * writes with write(2), and a peer that has closed turns that into SIGPIPE,
 * which kills a process that did not ignore it. Ours uses
 * send(MSG_NOSIGNAL), as the plain stream does, so a closed peer is -EPIPE.
 *
 * OpenSSL's error queue is per thread and every task of the loop shares
 * it, and a task may wait between two SSL calls while another task makes
 * its own. So the queue is cleared before each SSL call and read right after
 * it, before anything can wait: stale errors never leak into a message.
 *
 * Writes. OpenSSL requires a write that would block to be retried with
 * the same bytes (it has already encrypted them into a record); the stream
 * retries the way send(2) allows, with more, fewer, or moved bytes. So
 * aw__tls_send copies a blocked write's bytes aside, retries from the copy,
 * and squares the count with the stream afterwards (see tls_conn).
 *
 * End of stream. A clean end is the peer's close_notify: aw__tls_recv
 * returns 0. A TCP EOF without close_notify is a truncation (an attacker,
 * or a peer that crashed, can cut the data short at any point); OpenSSL 3
 * without SSL_OP_IGNORE_UNEXPECTED_EOF reports it as SSL_ERROR_SSL with
 * SSL_R_UNEXPECTED_EOF_WHILE_READING (our BIO answers BIO_CTRL_EOF so that
 * it can tell). We keep that strictness and return -ECONNRESET, raised with
 * a message that says what happened: the data before it was delivered, but
 * the caller must not take the end for a complete message.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* One record's worth of plaintext per SSL_write: a call that would block
 * then has at most one record pending in OpenSSL (see aw__tls_send), and
 * OpenSSL's multi-record (multiblock) write path, which would pend up to
 * eight, never triggers. */
#define TLS_WRITE_MAX 16384

struct aw_tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
	bool verify;              /* client: check the server's certificate */
	size_t alpn_len;          /* protocols in wire format (length-prefixed) */
	unsigned char alpn[];
};

/* What a TLS stream keeps besides the SSL object (SSL_get_app_data). */
typedef struct tls_conn {
	/* OpenSSL's write retry rule, hidden from the stream (see
	 * aw__tls_send): after SSL_write(buf, n) would block, OpenSSL holds a
	 * record made of those n bytes and must be called again with the same
	 * n bytes. We keep a copy of them in `hold` and retry from it. */
	unsigned char *hold;
	size_t hold_len;          /* > 0: OpenSSL holds a record of hold[0, hold_len) */
	/* After a retry completed, bytes hold[credit_off, + credit_len) are
	 * sent although the stream has not offered them again yet (its retry
	 * was shorter): they are acknowledged as it does, without sending. */
	size_t credit_off, credit_len;
	/* A fatal error happened (handshake failed, protocol error, reset):
	 * the connection may not be used, nor shut down with close_notify. */
	bool broken;
} tls_conn;

/* ---- process-wide OpenSSL objects ---------------------------------------- */

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static BIO_METHOD *fd_bio_method;   /* our fd BIO; lives as long as the process */
static int ctx_index = -1;          /* SSL_CTX ex_data slot of the aw_tls_ctx */

/* The fd BIO keeps fd * 4 + drained * 2 + is_sock in its data pointer:
 * no allocation. `drained`: the last read(2) returned less than asked
 * (the socket was empty after it; see aw__tls_drained). */
static inline int fd_bio_fd(BIO *b) { return (int)((intptr_t)BIO_get_data(b) >> 2); }
static inline bool fd_bio_sock(BIO *b) { return ((intptr_t)BIO_get_data(b) & 1) != 0; }
static inline bool fd_bio_drained(BIO *b) { return ((intptr_t)BIO_get_data(b) & 2) != 0; }
static inline void fd_bio_set_drained(BIO *b, bool d)
{
	intptr_t v = (intptr_t)BIO_get_data(b);
	BIO_set_data(b, (void *)(d ? v | 2 : v & ~(intptr_t)2));
}

/* BIO write: send(MSG_NOSIGNAL) on sockets (no SIGPIPE), write(2)
 * otherwise. EAGAIN becomes a retry for OpenSSL's WANT_WRITE; errno stays
 * as the call left it, for SSL_ERROR_SYSCALL. */
static int fd_bio_write(BIO *b, const char *buf, int len)
{
	BIO_clear_retry_flags(b);
	int fd = fd_bio_fd(b);
	ssize_t n;
	do
		n = fd_bio_sock(b) ? send(fd, buf, (size_t)len, MSG_NOSIGNAL) : write(fd, buf, (size_t)len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return (int)n;
}

/* BIO read. A 0 (the peer's FIN) sets BIO_FLAGS_IN_EOF, which BIO_CTRL_EOF
 * reports: that is how OpenSSL 3 tells an unexpected EOF (truncation) from
 * other system errors. */
static int fd_bio_read(BIO *b, char *buf, int len)
{
	BIO_clear_retry_flags(b);
	int fd = fd_bio_fd(b);
	ssize_t n;
	do
		n = read(fd, buf, (size_t)len);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	if (n == 0)
		BIO_set_flags(b, BIO_FLAGS_IN_EOF);
	fd_bio_set_drained(b, fd_bio_sock(b) && n > 0 && n < len);
	return (int)n;
}

static long fd_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;   /* nothing is buffered: writes go straight to the fd */
	case BIO_CTRL_EOF:
		return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
	case BIO_C_GET_FD:
		if (ptr)
			*(int *)ptr = fd_bio_fd(b);
		return fd_bio_fd(b);
	default:
		return 0;
	}
}

/* An ex_data free callback: an aw_tls_ctx lives exactly as long as its
 * SSL_CTX, which every SSL made from it holds a reference to. So
 * aw_tls_ctx_free while streams still use the context is safe: the ALPN
 * list the server callback reads stays until the last of them is freed. */
static void tls_ctx_exdata_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	free(ptr);
}

static void tls_init_once(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
				     "awith fd");
	if (m && BIO_meth_set_write(m, fd_bio_write) && BIO_meth_set_read(m, fd_bio_read) &&
	    BIO_meth_set_ctrl(m, fd_bio_ctrl))
		fd_bio_method = m;
	else
		BIO_meth_free(m);
	ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, tls_ctx_exdata_free);
}

/* 0, or -AW_ETLS raised if OpenSSL's process-wide objects are missing. */
static int tls_init(const char *who)
{
	pthread_once(&tls_once, tls_init_once);
	if (!fd_bio_method || ctx_index < 0)
		return aw_raise(-AW_ETLS, "%s: cannot set up OpenSSL (out of memory?)", who);
	return 0;
}

/* ---- errors ------------------------------------------------------------- */

/* Append the reasons of OpenSSL's queued errors, oldest first, to buf
 * ("; "-separated), and empty the queue. "unknown error" if it is empty. */
static const char *tls_err_text(char *buf, size_t len)
{
	size_t used = 0;
	unsigned long e;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		char tmp[256];
		if (!r) {
			ERR_error_string_n(e, tmp, sizeof tmp);
			r = tmp;
		}
		if (used < len) {
			int n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", r);
			if (n > 0)
				used += (size_t)n;
		}
	}
	if (!buf[0])
		snprintf(buf, len, "unknown error");
	return buf;
}

/* True if the newest queued error is OpenSSL 3's "unexpected eof while
 * reading": the TCP stream ended without close_notify. */
static bool tls_err_is_unexpected_eof(void)
{
	unsigned long e = ERR_peek_last_error();
	return e && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* A timeout from our own deadline (not from an enclosing scope, whose
 * error must go on unchanged so that the scope recognises it). */
static bool own_timeout(int rc, aw_time deadline)
{
	if (rc != -ETIMEDOUT || deadline == AW_NEVER)
		return false;
	const aw_error *e = aw_error_current();
	return e && !e->origin && aw_now() >= deadline;
}

static tls_conn *conn_of(SSL *ssl) { return SSL_get_app_data(ssl); }

/* After a fatal error OpenSSL forbids further I/O and SSL_shutdown: mark
 * the connection so that both fail fast and close sends nothing. */
static void conn_break(SSL *ssl)
{
	conn_of(ssl)->broken = true;
	SSL_set_quiet_shutdown(ssl, 1);
}

static int broken_error(aw_stream *s, const char *op)
{
	return aw_raise(-AW_ETLS, "TLS %s on fd %d: the connection is unusable after an earlier failure", op,
			s->fd);
}

/* ---- contexts ------------------------------------------------------------ */

/* Turn "h2,http/1.1" into ALPN wire format (each name prefixed by its
 * length) in out (at least strlen(list) + 1 bytes). Names must be 1..31
 * bytes, so that the negotiated one always fits aw_stream's alpn[32].
 * Returns the length, or -EINVAL raised. */
static int alpn_wire(const char *who, const char *list, unsigned char *out)
{
	size_t n = 0;
	const char *p = list;
	for (;;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || len > 31)
			return aw_raise(-EINVAL, "%s: bad ALPN list \"%s\": each protocol name must be 1 to 31 bytes",
					who, list);
		out[n++] = (unsigned char)len;
		memcpy(out + n, p, len);
		n += len;
		if (!end)
			return (int)n;
		p = end + 1;
	}
}

/* Server ALPN: pick the first protocol of *our* list that the client
 * offers (our preference order, not the client's). With no overlap we
 * carry on without ALPN (NOACK) rather than abort the handshake: the
 * application sees alpn "" and decides; RFC 7301 allows either. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	(void)ssl;
	aw_tls_ctx *c = arg;
	unsigned char *sel = NULL;
	unsigned char sellen = 0;
	if (SSL_select_next_proto(&sel, &sellen, c->alpn, (unsigned int)c->alpn_len, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	*outlen = sellen;
	return SSL_TLSEXT_ERR_OK;
}

/* Load cert_file (a PEM chain) and key_file, and check that they match. */
static int load_cert_and_key(const char *who, SSL_CTX *sc, const aw_tls_opts *o)
{
	char why[512];
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(sc, o->cert_file) != 1)
		return aw_raise(-AW_ETLS, "%s: cannot load the certificate chain from '%s': %s", who, o->cert_file,
				tls_err_text(why, sizeof why));
	if (SSL_CTX_use_PrivateKey_file(sc, o->key_file, SSL_FILETYPE_PEM) != 1) {
		/* Loading the key already compares it with the certificate. */
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH))
			return aw_raise(-AW_ETLS, "%s: the private key in '%s' does not match the certificate in '%s': %s",
					who, o->key_file, o->cert_file, tls_err_text(why, sizeof why));
		return aw_raise(-AW_ETLS, "%s: cannot load the private key from '%s': %s", who, o->key_file,
				tls_err_text(why, sizeof why));
	}
	if (SSL_CTX_check_private_key(sc) != 1)
		return aw_raise(-AW_ETLS, "%s: the private key in '%s' does not match the certificate in '%s': %s",
				who, o->key_file, o->cert_file, tls_err_text(why, sizeof why));
	return 0;
}

/* Build a context; `server` picks the side. See aw_tls_client_ctx and
 * aw_tls_server_ctx. On failure nothing is left allocated. */
static int tls_ctx_new(aw_tls_ctx **out, const aw_tls_opts *opts, bool server)
{
	const char *who = server ? "aw_tls_server_ctx" : "aw_tls_client_ctx";
	static const aw_tls_opts none;
	const aw_tls_opts *o = opts ? opts : &none;
	char why[512];
	if (!out)
		return aw_raise(-EINVAL, "%s: out is NULL", who);
	*out = NULL;
	int rc = tls_init(who);
	if (rc)
		return rc;
	if (server && (!o->cert_file || !o->key_file))
		return aw_raise(-EINVAL, "%s: cert_file and key_file are required", who);
	if (!server && (!o->cert_file) != (!o->key_file))
		return aw_raise(-EINVAL, "%s: a client certificate needs both cert_file and key_file", who);

	size_t alen = o->alpn ? strlen(o->alpn) : 0;
	if (alen > 4096)
		return aw_raise(-EINVAL, "%s: the ALPN list is too long (%zu bytes)", who, alen);
	aw_tls_ctx *c = aw__calloc(1, sizeof *c + alen + 1);
	if (!c)
		return aw_raise(-ENOMEM, "%s: out of memory", who);
	c->server = server;
	if (o->alpn) {
		rc = alpn_wire(who, o->alpn, c->alpn);
		if (rc < 0) {
			free(c);
			return rc;
		}
		c->alpn_len = (size_t)rc;
	}

	ERR_clear_error();
	SSL_CTX *sc = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!sc) {
		free(c);
		return aw_raise(-AW_ETLS, "%s: SSL_CTX_new failed: %s", who, tls_err_text(why, sizeof why));
	}
	/* From here on the SSL_CTX owns c: SSL_CTX_free frees both. */
	if (!SSL_CTX_set_ex_data(sc, ctx_index, c)) {
		free(c);
		SSL_CTX_free(sc);
		return aw_raise(-ENOMEM, "%s: out of memory", who);
	}
	c->ssl_ctx = sc;

	SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
	/* Partial writes: SSL_write returns after each record, like send(2).
	 * Moving buffer: a retry after WANT_WRITE may come from another
	 * address (the stream's buffer can be compacted or grown meanwhile).
	 * Release buffers: an idle connection does not keep ~34 KiB. */
	SSL_CTX_set_mode(sc, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				     SSL_MODE_RELEASE_BUFFERS);
	/* TLS 1.2 renegotiation is a DoS lever and nothing here needs it. */
	SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
	/* Read ahead: one read(2) takes whatever the socket holds (a whole
	 * record, or several) instead of a header read and a body read per
	 * record, as nginx does. Safe with the stream: it always calls
	 * aw__tls_recv before it waits, so bytes OpenSSL holds are taken
	 * before any wait, and OpenSSL says WANT_READ only after a read that
	 * found the socket empty. */
	SSL_CTX_set_read_ahead(sc, 1);

	const char *ciphers = o->ciphers ? o->ciphers : server ? AW_TLS_SERVER_CIPHERS : NULL;
	ERR_clear_error();
	if (ciphers && SSL_CTX_set_cipher_list(sc, ciphers) != 1) {
		rc = aw_raise(-EINVAL, "%s: bad cipher list \"%s\": %s", who, ciphers, tls_err_text(why, sizeof why));
		goto fail;
	}
	if (o->ciphersuites && SSL_CTX_set_ciphersuites(sc, o->ciphersuites) != 1) {
		rc = aw_raise(-EINVAL, "%s: bad TLS 1.3 cipher suites \"%s\": %s", who, o->ciphersuites,
			      tls_err_text(why, sizeof why));
		goto fail;
	}

	if (o->cert_file) {
		rc = load_cert_and_key(who, sc, o);
		if (rc)
			goto fail;
	}
	if (server) {
		if (o->ca_file) {
			/* Client certificates: required, and checked against
			 * ca_file (mutual TLS). */
			ERR_clear_error();
			if (SSL_CTX_load_verify_locations(sc, o->ca_file, NULL) != 1) {
				rc = aw_raise(-AW_ETLS, "%s: cannot load CA certificates from '%s': %s", who,
					      o->ca_file, tls_err_text(why, sizeof why));
				goto fail;
			}
			/* Our CAs' names go in the CertificateRequest, so that
			 * a client with several certificates picks one of ours. */
			STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
			if (names)
				SSL_CTX_set_client_CA_list(sc, names);
			ERR_clear_error();
			SSL_CTX_set_verify(sc, o->client_cert_optional ? SSL_VERIFY_PEER
								       : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
					   NULL);
			c->verify = true;
		} else if (o->client_cert_optional) {
			rc = aw_raise(-EINVAL, "%s: client_cert_optional needs ca_file (the CAs client certificates "
				      "are checked against)", who);
			goto fail;
		}
		/* Needed for session resumption once client certificates are
		 * verified; harmless otherwise. */
		static const unsigned char sid[] = "awith";
		SSL_CTX_set_session_id_context(sc, sid, sizeof sid - 1);
		/* Resumption by session tickets (stateless: any process with
		 * the context's key) rather than OpenSSL's in-memory session
		 * cache, which stores every new session and walks the whole
		 * table every 255 of them to expire old ones; per process, it
		 * would not survive a reload anyway. nginx's default likewise. */
		SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
		if (c->alpn_len)
			SSL_CTX_set_alpn_select_cb(sc, alpn_select, c);
	} else {
		if (!o->insecure_no_verify) {
			ERR_clear_error();
			int ok = o->ca_file ? SSL_CTX_load_verify_locations(sc, o->ca_file, NULL)
					    : SSL_CTX_set_default_verify_paths(sc);
			if (ok != 1) {
				rc = aw_raise(-AW_ETLS, "%s: cannot load CA certificates from '%s': %s", who,
					      o->ca_file ? o->ca_file : "the system's default paths",
					      tls_err_text(why, sizeof why));
				goto fail;
			}
			SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
			c->verify = true;
		} else {
			SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
		}
		/* Note the inverted convention: 0 is success. */
		if (c->alpn_len && SSL_CTX_set_alpn_protos(sc, c->alpn, (unsigned int)c->alpn_len) != 0) {
			rc = aw_raise(-ENOMEM, "%s: cannot set the ALPN list", who);
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	SSL_CTX_free(sc);   /* frees c too */
	return rc;
}

/* Client context: TLS 1.2 or later; the server's certificate is verified
 * against opts->ca_file, or the system's default CA paths, and the host
 * name against the certificate at aw_stream_tls_client (unless
 * opts->insecure_no_verify). cert_file + key_file, if given, are a client
 * certificate. alpn: the protocols to offer. opts may be NULL. Returns 0,
 * -EINVAL for bad options, -AW_ETLS with OpenSSL's reason if a file cannot
 * be loaded, -ENOMEM. */
int aw_tls_client_ctx(aw_tls_ctx **out, const aw_tls_opts *opts)
{
	return tls_ctx_new(out, opts, false);
}

/* Server context: TLS 1.2 or later; cert_file (PEM chain) and key_file are
 * required and must match (-AW_ETLS otherwise). alpn: the protocols we
 * speak, in our order of preference. ca_file, if given, makes client
 * certificates required and verified against it (mutual TLS). */
int aw_tls_server_ctx(aw_tls_ctx **out, const aw_tls_opts *opts)
{
	return tls_ctx_new(out, opts, true);
}

/* Release the caller's reference. Streams already using the context keep
 * it alive (OpenSSL reference counts it) until they are closed. NULL is a
 * no-op. */
void aw_tls_ctx_free(aw_tls_ctx *ctx)
{
	if (ctx)
		SSL_CTX_free(ctx->ssl_ctx);   /* frees ctx with the last reference */
}

/* One more reference: the aw_tls_ctx lives as long as its SSL_CTX (see
 * tls_ctx_exdata_free), so OpenSSL's count is the count of both. */
aw_tls_ctx *aw_tls_ctx_ref(aw_tls_ctx *ctx)
{
	if (ctx)
		SSL_CTX_up_ref(ctx->ssl_ctx);
	return ctx;
}

/* ---- the handshake -------------------------------------------------------- */

/* Copy a literal IP address out of host, without IPv6's brackets
 * ("[::1]"), into ip. True if host is one. */
static bool host_ip_literal(const char *host, char *ip, size_t len)
{
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n == 0 || n >= len)
		return false;
	memcpy(ip, host, n);
	ip[n] = '\0';
	unsigned char addr[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, ip, addr) == 1 || inet_pton(AF_INET6, ip, addr) == 1;
}

/* Turn a failed SSL_do_handshake into a raised error. Called right after
 * it, with the error queue still holding its reasons. */
static int handshake_error(aw_stream *s, SSL *ssl, int sslerr, const char *peer, int saved_errno)
{
	char why[512];
	long vr = SSL_get_verify_result(ssl);
	if (sslerr == SSL_ERROR_SSL && vr != X509_V_OK) {
		ERR_clear_error();
		return aw_raise(-AW_ETLS_VERIFY, "TLS handshake with %s (fd %d): certificate verification failed: %s",
				peer, s->fd, X509_verify_cert_error_string(vr));
	}
	if (sslerr == SSL_ERROR_SSL && tls_err_is_unexpected_eof()) {
		ERR_clear_error();
		return aw_raise(-AW_ETLS, "TLS handshake with %s (fd %d): the peer closed the connection", peer,
				s->fd);
	}
	if (sslerr == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
		if (saved_errno == 0)
			return aw_raise(-AW_ETLS, "TLS handshake with %s (fd %d): the peer closed the connection",
					peer, s->fd);
		errno = saved_errno;
		return aw_raise(-saved_errno, "TLS handshake with %s (fd %d): %m", peer, s->fd);
	}
	return aw_raise(-AW_ETLS, "TLS handshake with %s (fd %d) failed: %s", peer, s->fd,
			tls_err_text(why, sizeof why));
}

/* Run the handshake to its end or the deadline. 0 or a raised error. */
static int handshake(aw_stream *s, SSL *ssl, const char *peer, aw_time deadline)
{
	for (;;) {
		ERR_clear_error();
		errno = 0;
		int r = SSL_do_handshake(ssl);
		int saved_errno = errno;
		if (r == 1)
			return 0;
		int e = SSL_get_error(ssl, r);
		int dir;
		if (e == SSL_ERROR_WANT_READ)
			dir = AW_READABLE;
		else if (e == SSL_ERROR_WANT_WRITE)
			dir = AW_WRITABLE;
		else
			return handshake_error(s, ssl, e, peer, saved_errno);
		int rc = (aw_fd_wait)(s->fd, dir, deadline);
		if (own_timeout(rc, deadline))
			return aw_raise(-ETIMEDOUT, "TLS handshake with %s (fd %d) timed out", peer, s->fd);
		if (rc)
			return rc;
	}
}

/* Start TLS on s, as a client (host: SNI and verification) or server
 * (host NULL). See aw_stream_tls_client. */
static int stream_tls_start(aw_stream *s, aw_tls_ctx *ctx, const char *host, bool server, aw_time deadline)
{
	const char *who = server ? "aw_stream_tls_server" : "aw_stream_tls_client";
	char why[512];
	if (!s || !ctx)
		return aw_raise(-EINVAL, "%s: %s is NULL", who, s ? "ctx" : "s");
	if (ctx->server != server)
		return aw_raise(-EINVAL, "%s: given a %s context", who, ctx->server ? "server" : "client");
	if (s->ssl)
		return aw_raise(-EINVAL, "%s: fd %d already speaks TLS", who, s->fd);
	if (s->rend > s->rstart)
		/* Those bytes were read off the socket as plaintext; if they
		 * were the peer's first TLS bytes, OpenSSL would never see them. */
		return aw_raise(-EINVAL, "%s: fd %d has %zu byte(s) already read into the stream's buffer", who,
				s->fd, s->rend - s->rstart);
	if (!server && ctx->verify && (!host || !*host))
		return aw_raise(-EINVAL, "%s: a host name is required to verify the server's certificate", who);
	if (host && strlen(host) > 253 + 2)
		return aw_raise(-EINVAL, "%s: host name too long (%zu bytes)", who, strlen(host));
	int rc = tls_init(who);
	if (rc)
		return rc;
	/* Plaintext queued before the switch (e.g. a STARTTLS reply) goes
	 * first, as plaintext. */
	if (s->wend > s->wstart) {
		rc = (aw_stream_drain)(s, deadline);
		if (rc)
			return rc;
	}

	tls_conn *conn = aw__calloc(1, sizeof *conn);
	ERR_clear_error();
	SSL *ssl = conn ? SSL_new(ctx->ssl_ctx) : NULL;
	if (!ssl) {
		free(conn);
		return aw_raise(-ENOMEM, "%s: cannot create the TLS connection: %s", who, tls_err_text(why, sizeof why));
	}
	SSL_set_app_data(ssl, conn);
	BIO *bio = BIO_new(fd_bio_method);
	if (!bio) {
		rc = aw_raise(-ENOMEM, "%s: cannot create the TLS connection's BIO", who);
		goto fail_setup;
	}
	BIO_set_data(bio, (void *)((intptr_t)s->fd * 4 + (s->is_sock ? 1 : 0)));
	BIO_set_init(bio, 1);
	SSL_set_bio(ssl, bio, bio);   /* one reference, owned by ssl now */

	char ip[INET6_ADDRSTRLEN];
	const char *peer = host && *host ? host : "the client";
	if (server) {
		SSL_set_accept_state(ssl);
	} else {
		SSL_set_connect_state(ssl);
		bool is_ip = host && host_ip_literal(host, ip, sizeof ip);
		ERR_clear_error();
		/* SNI carries DNS names only (RFC 6066). */
		if (host && *host && !is_ip && SSL_set_tlsext_host_name(ssl, host) != 1) {
			rc = aw_raise(-EINVAL, "%s: cannot use \"%s\" as the server name: %s", who, host,
				      tls_err_text(why, sizeof why));
			goto fail_setup;
		}
		if (ctx->verify) {
			int ok;
			if (is_ip) {
				ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip);
			} else {
				SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
				ok = SSL_set1_host(ssl, host);
			}
			if (ok != 1) {
				rc = aw_raise(-EINVAL, "%s: cannot check the certificate against \"%s\": %s", who, host,
					      tls_err_text(why, sizeof why));
				goto fail_setup;
			}
		}
	}

	s->ssl = ssl;
	s->alpn[0] = '\0';
	rc = handshake(s, ssl, peer, deadline);
	if (rc) {
		/* The stream stays a TLS stream (so no plaintext can slip out
		 * if the caller goes on) but unusable; close frees it. */
		conn_break(ssl);
		return rc;
	}
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	SSL_get0_alpn_selected(ssl, &proto, &plen);
	if (plen >= sizeof s->alpn) {
		conn_break(ssl);
		return aw_raise(-AW_ETLS, "%s: the peer selected an ALPN protocol of %u bytes (at most %zu)", who,
				plen, sizeof s->alpn - 1);
	}
	if (plen)
		memcpy(s->alpn, proto, plen);
	s->alpn[plen] = '\0';
	return 0;

fail_setup:
	/* Nothing was sent yet: the stream stays plain, as it was. */
	SSL_free(ssl);
	free(conn);
	return rc;
}

/* Waits: switch the connected stream s to TLS as the client and run the
 * handshake until `deadline`. host is sent as SNI (unless it is an IP
 * literal) and, when ctx verifies, the certificate must be valid for it
 * (DNS name, or IP address for a literal; "[::1]" is accepted). Plaintext
 * still queued for writing is sent first; bytes already read into the
 * buffer are refused (-EINVAL). Errors: -AW_ETLS_VERIFY (the message names
 * the verification error), -AW_ETLS (OpenSSL's reason), -ETIMEDOUT,
 * -ECONNRESET ..., the cancel code. After a failed handshake the stream
 * only fails: close it. */
int (aw_stream_tls_client)(aw_stream *s, aw_tls_ctx *ctx, const char *host, aw_time deadline)
{
	return stream_tls_start(s, ctx, host, false, deadline);
}

/* Waits: the same as the server, with a server context; ALPN picks our
 * first protocol the client offers. */
int (aw_stream_tls_server)(aw_stream *s, aw_tls_ctx *ctx, aw_time deadline)
{
	return stream_tls_start(s, ctx, NULL, true, deadline);
}

/* ---- transport hooks (stream.c) -------------------------------------------- */

/* Read up to n bytes of plaintext. Returns > 0, 0 at the peer's
 * close_notify (a clean end), -EAGAIN with *want (TLS may need to write to
 * read), or a raised error: -ECONNRESET for a TCP end without close_notify
 * (truncation) or a reset, -AW_ETLS for a protocol error. After an error
 * the connection is unusable. */
ssize_t aw__tls_recv(aw_stream *s, void *buf, size_t n, int *want)
{
	SSL *ssl = s->ssl;
	char why[512];
	if (conn_of(ssl)->broken)
		return broken_error(s, "read");
	if (n == 0)   /* 0 would read as the end of the stream */
		return aw_raise(-EINVAL, "TLS read on fd %d into 0 bytes", s->fd);
	if (n > INT_MAX)
		n = INT_MAX;
	ERR_clear_error();
	errno = 0;
	int r = SSL_read(ssl, buf, (int)n);
	int saved_errno = errno;
	if (r > 0)
		return r;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = AW_READABLE;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = AW_WRITABLE;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		conn_break(ssl);
		if (ERR_peek_error() == 0 && saved_errno) {
			errno = saved_errno;
			return aw_raise(-saved_errno, "TLS read on fd %d: %m", s->fd);
		}
		/* OpenSSL before 3.0 reported a truncation this way. */
		ERR_clear_error();
		return aw_raise(-ECONNRESET, "TLS read on fd %d: the peer closed the connection without "
				"close_notify (the data may be truncated)", s->fd);
	case SSL_ERROR_SSL:
		conn_break(ssl);
		if (tls_err_is_unexpected_eof()) {
			ERR_clear_error();
			return aw_raise(-ECONNRESET, "TLS read on fd %d: the peer closed the connection without "
					"close_notify (the data may be truncated)", s->fd);
		}
		return aw_raise(-AW_ETLS, "TLS read on fd %d: %s", s->fd, tls_err_text(why, sizeof why));
	default:
		conn_break(ssl);
		return aw_raise(-AW_ETLS, "TLS read on fd %d: %s", s->fd, tls_err_text(why, sizeof why));
	}
}

/* After aw__tls_recv returned data: true when reading again could only
 * say EAGAIN: OpenSSL holds no byte (no plaintext, no partial record) and
 * its last read(2) found less than it asked for, so the socket was empty
 * then and anything that came since brings a readiness edge. The stream
 * then waits for the edge instead of calling SSL_read for an EAGAIN (its
 * "one read per message", as for plain sockets). */
bool aw__tls_drained(aw_stream *s)
{
	SSL *ssl = s->ssl;
	return fd_bio_drained(SSL_get_rbio(ssl)) && !SSL_has_pending(ssl);
}

/* The SSL_write half of aw__tls_send: write buf[0, n) (n <= one record) and
 * map the outcome. */
static ssize_t tls_write(aw_stream *s, SSL *ssl, const void *buf, size_t n, int *want)
{
	char why[512];
	ERR_clear_error();
	errno = 0;
	int r = SSL_write(ssl, buf, (int)n);
	int saved_errno = errno;
	if (r > 0)
		return r;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		*want = AW_READABLE;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*want = AW_WRITABLE;
		return -EAGAIN;
	case SSL_ERROR_SYSCALL:
		conn_break(ssl);
		if (ERR_peek_error() == 0) {
			errno = saved_errno ? saved_errno : EPIPE;
			return aw_raise(-errno, "TLS write on fd %d: %m", s->fd);
		}
		return aw_raise(-AW_ETLS, "TLS write on fd %d: %s", s->fd, tls_err_text(why, sizeof why));
	case SSL_ERROR_ZERO_RETURN:
		return aw_raise(-EPIPE, "TLS write on fd %d: the connection was shut down", s->fd);
	default:
		conn_break(ssl);
		return aw_raise(-AW_ETLS, "TLS write on fd %d: %s", s->fd, tls_err_text(why, sizeof why));
	}
}

static int retry_mismatch(aw_stream *s)
{
	return aw_raise(-EINVAL, "TLS write on fd %d: the bytes offered after a write that would block are not "
			"the ones offered before (a stream must send its bytes in order)", s->fd);
}

/* Write up to n bytes of plaintext (at most one 16 KiB record per call).
 * Returns the count taken (> 0), -EAGAIN with *want, or a raised error
 * (-EPIPE, -ECONNRESET, -AW_ETLS; the connection is then unusable).
 *
 * The caller may retry after -EAGAIN however it likes, as with send(2):
 * with the same bytes, more of them, fewer, from another address. OpenSSL
 * does not allow that (a retry must repeat the blocked call), so the bytes
 * of a blocked call are copied aside and the retry is made from the copy;
 * if the caller's retry was shorter than what that sent, the surplus is
 * acknowledged on its next calls without being sent twice. What the caller
 * offers must only be its byte stream, in order (checked: -EINVAL). */
ssize_t aw__tls_send(aw_stream *s, const void *buf, size_t n, int *want)
{
	SSL *ssl = s->ssl;
	tls_conn *conn = conn_of(ssl);
	if (conn->broken)
		return broken_error(s, "write");
	if (n == 0)
		return aw_raise(-EINVAL, "TLS write on fd %d of 0 bytes", s->fd);
	if (conn->credit_len) {
		size_t k = n < conn->credit_len ? n : conn->credit_len;
		if (memcmp(buf, conn->hold + conn->credit_off, k) != 0)
			return retry_mismatch(s);
		conn->credit_off += k;
		conn->credit_len -= k;
		if (!conn->credit_len) {
			free(conn->hold);
			conn->hold = NULL;
		}
		return (ssize_t)k;
	}
	if (conn->hold_len) {
		size_t k = n < conn->hold_len ? n : conn->hold_len;
		if (memcmp(buf, conn->hold, k) != 0)
			return retry_mismatch(s);
		ssize_t r = tls_write(s, ssl, conn->hold, conn->hold_len, want);
		if (r <= 0)
			return r;
		/* OpenSSL took r bytes of the copy (all of them, unless the
		 * peer asked for small records). */
		conn->hold_len = 0;
		if ((size_t)r > n) {
			conn->credit_off = n;
			conn->credit_len = (size_t)r - n;
			return (ssize_t)n;
		}
		free(conn->hold);
		conn->hold = NULL;
		return r;
	}
	if (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)
		return aw_raise(-EPIPE, "TLS write on fd %d after close_notify was sent", s->fd);
	if (n > TLS_WRITE_MAX)
		n = TLS_WRITE_MAX;
	ssize_t r = tls_write(s, ssl, buf, n, want);
	if (r == -EAGAIN) {
		conn->hold = aw__malloc(n);
		if (!conn->hold) {
			conn_break(ssl);
			return aw_raise(-ENOMEM, "TLS write on fd %d: no memory to keep a blocked record", s->fd);
		}
		memcpy(conn->hold, buf, n);
		conn->hold_len = n;
	}
	return r;
}

/* Waits: send our close_notify (once), waiting for writability until
 * `deadline`; the peer's reply is not awaited (the stream may still read
 * until it arrives). Returns 0; 0 as well when there is nothing to close
 * (handshake not finished, an earlier fatal error) or the peer is already
 * gone (EPIPE/ECONNRESET: nobody is left to notify); else -ETIMEDOUT, the
 * cancel code, -AW_ETLS, raised. */
int aw__tls_shutdown(aw_stream *s, aw_time deadline)
{
	SSL *ssl = s->ssl;
	char why[512];
	if (!ssl || conn_of(ssl)->broken || !SSL_is_init_finished(ssl))
		return 0;
	tls_conn *conn = conn_of(ssl);
	for (;;) {
		int rc, want = AW_WRITABLE;
		if (conn->hold_len) {
			/* OpenSSL sends nothing else before a record it holds:
			 * finish it first (see aw__tls_send). */
			ssize_t r = tls_write(s, ssl, conn->hold, conn->hold_len, &want);
			if (r > 0) {
				conn->hold_len = 0;
				continue;
			}
			if (r != -EAGAIN)
				return (int)r;
			goto wait;
		}
		ERR_clear_error();
		errno = 0;
		int r = SSL_shutdown(ssl);
		int saved_errno = errno;
		if (r >= 0)
			return 0;   /* sent (0), or both sides done (1) */
		int e = SSL_get_error(ssl, r);
		if (e == SSL_ERROR_WANT_WRITE)
			goto wait;
		if (e == SSL_ERROR_WANT_READ) {
			/* Only when OpenSSL would need the peer first (e.g. in
			 * the middle of another operation): nothing more to do
			 * without waiting for the peer, which we do not. */
			ERR_clear_error();
			return 0;
		}
		conn_break(ssl);
		if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
			if (saved_errno == EPIPE || saved_errno == ECONNRESET || saved_errno == 0)
				return 0;
			errno = saved_errno;
			return aw_raise(-saved_errno, "TLS close_notify on fd %d: %m", s->fd);
		}
		return aw_raise(-AW_ETLS, "TLS close_notify on fd %d: %s", s->fd, tls_err_text(why, sizeof why));
wait:
		rc = (aw_fd_wait)(s->fd, want, deadline);
		if (rc) {
			conn_break(ssl);
			if (own_timeout(rc, deadline))
				return aw_raise(-ETIMEDOUT, "TLS close_notify on fd %d: timed out (the peer is not "
						"reading)", s->fd);
			return rc;
		}
	}
}

/* Free the TLS state (not the fd, which the stream closes); s->ssl = NULL. */
void aw__tls_free(aw_stream *s)
{
	SSL *ssl = s->ssl;
	if (!ssl)
		return;
	tls_conn *conn = conn_of(ssl);
	SSL_free(ssl);
	free(conn->hold);
	free(conn);
	s->ssl = NULL;
}

/* The verified peer certificate's subject (see io.h). Verified: the
 * context checks peer certificates (a failed check aborts the handshake,
 * so a certificate present after it has verified), and OpenSSL's result
 * says so. */
char *aw_stream_tls_peer_subject(const aw_stream *s)
{
	SSL *ssl = s ? s->ssl : NULL;
	if (!ssl || conn_of(ssl)->broken || !SSL_is_init_finished(ssl))
		return NULL;
	aw_tls_ctx *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
	if (!c || !c->verify || SSL_get_verify_result(ssl) != X509_V_OK)
		return NULL;
	X509 *cert = SSL_get0_peer_certificate(ssl);
	if (!cert)
		return NULL;
	BIO *mem = BIO_new(BIO_s_mem());
	char *out = NULL;
	if (mem && X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		char *p;
		long n = BIO_get_mem_data(mem, &p);
		out = n >= 0 ? aw__malloc((size_t)n + 1) : NULL;
		if (out) {
			memcpy(out, p, (size_t)n);
			out[n] = '\0';
		}
	}
	BIO_free(mem);
	ERR_clear_error();
	if (!out)
		(void)!aw_raise(-ENOMEM, "aw_stream_tls_peer_subject: out of memory");
	return out;
}
