/* SPDX-License-Identifier: MIT */
/*
 * HTTPS: the app's TLS settings, the handshake in each connection's task,
 * the protocol a connection speaks (ALPN), and certificate reload.
 *
 * The TLS itself is io's (src/io/tls.c, OpenSSL): a server context made
 * from the certificate chain and key files, and aw_stream_tls_server on
 * the accepted stream. What this file adds is the server's policy:
 *
 * The handshake runs in the connection's own task, never in the accept
 * loop, so a client that stalls holds only its task; it must end
 * handshake_timeout after the accept (the same clock as the header
 * timeout, which starts over for the first request). Until it ends the
 * connection counts as idle and before its first request: a shutdown
 * gives it server.c's first-request window, then closes it. A failure or a
 * timeout is counted (awith_http_tls_handshakes_total{result}), logged
 * rate-limited per kind (a scanner or a flood cannot fill the log), and
 * the connection closed; nothing else is affected.
 *
 * Reload. The current context is one pointer under a mutex (an app may
 * be served by several loops in one process): each handshake takes a
 * reference to it (OpenSSL's count; every SSL made from it holds its own),
 * a reload builds a new context off the loop and swaps the pointer, and
 * the old one is freed with the last connection that uses it. So new
 * handshakes use the new certificate and connections already open keep
 * going. A failed reload changes nothing. Under aw_app_run's workers each
 * process holds its own context: SIGHUP to the supervisor is passed on to
 * every worker (workers.c), and the supervisor reloads its own copy too,
 * which a worker it forks later inherits.
 *
 * ALPN. The context offers "h2,http/1.1" when the app serves HTTP/2
 * (aw_app_http2(app)->enabled, on by default) and "http/1.1" otherwise; since HTTP/2 may
 * be turned on after aw_app_tls, aw__http_tls_prepare builds the context
 * again at serve time when the list changed.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "awith/metrics.h"

#define HANDSHAKE_TIMEOUT_DEFAULT AW_SEC(10)

typedef struct aw_app_tls tls_state;

struct aw_app_tls {
	/* the options, copied; read-only while the app serves */
	char *cert_file, *key_file, *ca_file, *ciphers, *ciphersuites, *host;
	bool client_optional;
	aw_time handshake_timeout;
	int port;

	pthread_mutex_t lock;    /* guards ctx and ctx_h2 */
	aw_tls_ctx *ctx;         /* the current context: new handshakes use it */
	bool ctx_h2;             /* ctx offers "h2" */

	/* awith_http_tls_handshakes_total{result}, ..._reloads_total{result} */
	aw_metric *hs_ok, *hs_failed, *hs_timeout, *reload_ok, *reload_failed;
};

/* ---- contexts ------------------------------------------------------------------- */

/* Build a server context from t's files. No task needed (the thread pool
 * and the supervisor call it); errors are raised on the calling thread. */
static int ctx_build(const tls_state *t, bool h2, aw_tls_ctx **out)
{
	aw_tls_opts o = {
		.cert_file = t->cert_file,
		.key_file = t->key_file,
		.ca_file = t->ca_file,
		.client_cert_optional = t->client_optional,
		.alpn = h2 ? "h2,http/1.1" : "http/1.1",
		.ciphers = t->ciphers,
		.ciphersuites = t->ciphersuites,
	};
	return aw_tls_server_ctx(out, &o);
}

/* The current context, with a reference for the caller. */
static aw_tls_ctx *ctx_get(tls_state *t)
{
	pthread_mutex_lock(&t->lock);
	aw_tls_ctx *c = aw_tls_ctx_ref(t->ctx);
	pthread_mutex_unlock(&t->lock);
	return c;
}

/* Make ctx the current one; the old one goes with its last user. */
static void ctx_swap(tls_state *t, aw_tls_ctx *ctx, bool h2)
{
	pthread_mutex_lock(&t->lock);
	aw_tls_ctx *old = t->ctx;
	t->ctx = ctx;
	t->ctx_h2 = h2;
	pthread_mutex_unlock(&t->lock);
	aw_tls_ctx_free(old);
}

typedef struct build_job {
	const tls_state *t;
	bool h2;
	aw_tls_ctx *ctx;
	aw_error *err;           /* the build's error, taken off the pool's thread */
} build_job;

static int build_on_thread(void *arg)
{
	build_job *j = arg;
	if (ctx_build(j->t, j->h2, &j->ctx))
		j->err = aw_error_take();
	return 0;
}

/* Build a context off the loop when in a task (file reads and key parsing
 * do not hold up the other connections), else right here. 0 with *out, or
 * the build's error, raised on this task. */
static int ctx_build_here(const tls_state *t, bool h2, aw_tls_ctx **out)
{
	*out = NULL;
	if (!aw_task_current())
		return ctx_build(t, h2, out);
	build_job j = { .t = t, .h2 = h2 };
	int rc = aw_to_thread(build_on_thread, &j);
	if (rc) {
		/* Cancelled while it ran: its result is not wanted. */
		aw_tls_ctx_free(j.ctx);
		aw_error_free(j.err);
		return rc;
	}
	if (j.err) {
		rc = j.err->code;
		aw_error_raise_obj(j.err);
		return rc;
	}
	*out = j.ctx;
	return 0;
}

/* ---- settings ------------------------------------------------------------------- */

static void tls_free(tls_state *t)
{
	if (!t)
		return;
	aw_tls_ctx_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t->cert_file);
	free(t->key_file);
	free(t->ca_file);
	free(t->ciphers);
	free(t->ciphersuites);
	free(t->host);
	free(t);
}

void aw__http_tls_free(aw_app *app)
{
	tls_free(app->tls);
	app->tls = NULL;
}

/* strdup that keeps NULL; false when out of memory. */
static bool dup_opt(char **out, const char *s)
{
	*out = s ? aw__strdup(s) : NULL;
	return !s || *out;
}

static aw_metric *series(aw_metric *family, const char *value)
{
	aw_metric *s = NULL;
	if (family && aw_metric_with(family, &s, (const char *const[]){ value, NULL }) < 0) {
		aw_error_clear();   /* no metric: counting is not worth failing for */
		s = NULL;
	}
	return s;
}

static void metrics_init(tls_state *t)
{
	static const char *const labels[] = { "result", NULL };
	aw_metric *hs = NULL, *rl = NULL;
	if (aw_metric_counter_new(&hs, "awith_http_tls_handshakes_total",
				  "TLS handshakes of the server's TLS listeners, by result (ok, failed, timeout).",
				  labels) < 0)
		aw_error_clear();
	if (aw_metric_counter_new(&rl, "awith_http_tls_reloads_total",
				  "Certificate reloads (SIGHUP, aw_app_tls_reload), by result (ok, failed).", labels) < 0)
		aw_error_clear();
	t->hs_ok = series(hs, "ok");
	t->hs_failed = series(hs, "failed");
	t->hs_timeout = series(hs, "timeout");
	t->reload_ok = series(rl, "ok");
	t->reload_failed = series(rl, "failed");
}

int aw_app_tls(aw_app *app, const aw_app_tls_opts *opts)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_tls: no app (did aw_app_new run out of memory?)");
	if (!opts)
		return aw_raise(-EINVAL, "aw_app_tls: opts is NULL");
	if (!opts->cert_file || !*opts->cert_file || !opts->key_file || !*opts->key_file)
		return aw_raise(-EINVAL, "aw_app_tls: cert_file and key_file are required");
	if (opts->port < 0 || opts->port > 65535)
		return aw_raise(-EINVAL, "aw_app_tls: invalid port %d", opts->port);
	if (opts->handshake_timeout < 0)
		return aw_raise(-EINVAL, "aw_app_tls: negative handshake_timeout");
	if (opts->client_cert_optional && !opts->client_ca_file)
		return aw_raise(-EINVAL, "aw_app_tls: client_cert_optional needs client_ca_file (the CAs that "
				"client certificates are checked against)");
	if (app->srv || app->sig)
		return aw_raise(-EBUSY, "aw_app_tls: the app is serving (use aw_app_tls_reload)");
	tls_state *t = aw__calloc(1, sizeof *t);
	if (!t)
		return aw_raise(-ENOMEM, "aw_app_tls: out of memory");
	pthread_mutex_init(&t->lock, NULL);
	t->client_optional = opts->client_cert_optional;
	t->handshake_timeout = opts->handshake_timeout ? opts->handshake_timeout : HANDSHAKE_TIMEOUT_DEFAULT;
	t->port = opts->port;
	if (!dup_opt(&t->cert_file, opts->cert_file) || !dup_opt(&t->key_file, opts->key_file) ||
	    !dup_opt(&t->ca_file, opts->client_ca_file) || !dup_opt(&t->ciphers, opts->ciphers) ||
	    !dup_opt(&t->ciphersuites, opts->ciphersuites) || !dup_opt(&t->host, opts->host)) {
		tls_free(t);
		return aw_raise(-ENOMEM, "aw_app_tls: out of memory");
	}
	bool h2 = aw__http_h2_enabled(app);
	int rc = ctx_build(t, h2, &t->ctx);
	if (rc) {
		tls_free(t);
		return rc;
	}
	t->ctx_h2 = h2;
	metrics_init(t);
	tls_free(app->tls);
	app->tls = t;
	return 0;
}

const char *aw__http_tls_host(const aw_app *app)
{
	return app->tls ? app->tls->host : NULL;
}

int aw__http_tls_port(const aw_app *app)
{
	return app->tls ? app->tls->port : -1;
}

void aw__http_tls_set_port(aw_app *app, int port)
{
	if (app->tls)
		app->tls->port = port;
}

int aw__http_tls_prepare(aw_app *app)
{
	tls_state *t = app->tls;
	bool h2 = aw__http_h2_enabled(app);
	pthread_mutex_lock(&t->lock);
	bool same = t->ctx_h2 == h2;
	pthread_mutex_unlock(&t->lock);
	if (same)
		return 0;
	aw_tls_ctx *ctx;
	int rc = ctx_build_here(t, h2, &ctx);
	if (rc)
		return rc;
	ctx_swap(t, ctx, h2);
	return 0;
}

/* ---- reload --------------------------------------------------------------------- */

/* Reload in this process (waits when in a task). Logged either way. */
static int reload_here(aw_app *app, const char *why)
{
	tls_state *t = app->tls;
	pthread_mutex_lock(&t->lock);
	bool h2 = t->ctx_h2;
	pthread_mutex_unlock(&t->lock);
	aw_tls_ctx *ctx;
	int rc = ctx_build_here(t, h2, &ctx);
	if (rc) {
		aw_metric_counter_add(t->reload_failed, 1);
		aw__http_log_error(app, aw_error_current(), "%s: the TLS certificate was not reloaded (the current one "
				   "stays in use)", why);
		return rc;
	}
	ctx_swap(t, ctx, h2);
	aw_metric_counter_add(t->reload_ok, 1);
	aw__http_log_error(app, NULL, "%s: reloaded the TLS certificate from %s", why, t->cert_file);
	return 0;
}

int aw_app_tls_reload(aw_app *app)
{
	if (!app || !app->tls)
		return aw_raise(-EINVAL, "aw_app_tls_reload: TLS is not on (aw_app_tls)");
	int rc = reload_here(app, "aw_app_tls_reload");
	/* A worker: the supervisor tells the others (not this one again). */
	if (app->worker >= 0 && app->supervisor > 0 && getppid() == app->supervisor)
		kill(app->supervisor, SIGHUP);
	return rc;
}

void aw__http_tls_on_sighup(aw_app *app)
{
	if (!app->tls)
		return;
	if (reload_here(app, "SIGHUP"))
		aw_error_clear();   /* logged; the server goes on with the old certificate */
}

void aw__http_tls_reload_supervisor(aw_app *app)
{
	if (!app->tls)
		return;
	if (reload_here(app, "supervisor: SIGHUP"))
		aw_error_clear();
}

/* ---- connections ------------------------------------------------------------------- */

/* The client's address and port, for the log. */
static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	snprintf(buf, len, "the client");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(buf, len, "%s:%d", ip, port);
	} else if (ss.ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(buf, len, "[%s]:%d", ip, port);
	} else {
		snprintf(buf, len, "a Unix socket client");
	}
}

/* The handshake, bounded by the handshake timeout from the accept. 0, or
 * an error that is counted and logged here (and not left in flight). */
static int tls_accept(aw_http_conn *c)
{
	aw_app *app = c->app;
	tls_state *t = app->tls;
	aw_tls_ctx *ctx = ctx_get(t);
	aw_time deadline = c->accepted + t->handshake_timeout;
	/* Named now: once the peer has gone, getpeername cannot tell. */
	char who[80];
	peer_name(aw_stream_fd(c->s), who, sizeof who);
	/* Idle until the handshake is done (a shutdown gives it the first-request window). */
	c->idle = true;
	int rc = aw_stream_tls_server(c->s, ctx, deadline);
	c->idle = false;
	aw_tls_ctx_free(ctx);   /* the SSL holds its own reference */
	if (rc == 0) {
		c->tls = true;
		aw_metric_counter_add(t->hs_ok, 1);
		if (t->ca_file && !(c->peer_subject = aw_stream_tls_peer_subject(c->s)) && aw_error_pending()) {
			aw__http_log_limited(app, aw_error_current(), "TLS: cannot keep the client certificate's subject");
			aw_error_clear();
			return -ENOMEM;
		}
		return 0;
	}
	if (rc == -ECANCELED || (c->srv && c->srv->draining)) {
		aw_error_clear();   /* shutting down: not the client's failure */
		return rc;
	}
	if (rc == -ETIMEDOUT && aw_now() >= deadline) {
		aw_metric_counter_add(t->hs_timeout, 1);
		aw__http_log_limited(app, NULL, "TLS handshake with %s: not done within %lld ms: closed", who,
				     (long long)(t->handshake_timeout / 1000000));
	} else {
		aw_metric_counter_add(t->hs_failed, 1);
		aw__http_log_limited(app, aw_error_current(), "TLS handshake with %s failed: closed", who);
	}
	aw_error_clear();
	return rc;
}

void aw__http_conn_serve(aw_http_conn *c, bool tls, void (*serve_h1)(aw_http_conn *c))
{
	if (tls && tls_accept(c) != 0)
		return;
	/* The HTTP/2 dispatch point: ALPN selected "h2" (offered only while
	 * the app serves HTTP/2). Anything else, no ALPN included, is h1. */
	if (c->tls && aw__http_h2_enabled(c->app) && strcmp(aw_stream_alpn(c->s), "h2") == 0) {
		aw__http_h2_serve(c);
		return;
	}
	serve_h1(c);
}

const char *aw_http_peer_cert_subject(const aw_http_request *req)
{
	return req && req->conn ? req->conn->peer_subject : NULL;
}

bool aw_http_is_tls(const aw_http_request *req)
{
	return req && req->conn && req->conn->tls;
}
