/* SPDX-License-Identifier: MIT */
/*
 * HTTPS in the server (aw_app_tls): a cleartext and a TLS listener side by
 * side in one app (a child process, its own loop, real sockets), clients
 * of our own (the client session on libcurl with a CA file, and io's TLS
 * stream with and without a client certificate), handshakes that stall or
 * fail, certificate reload on SIGHUP (one process and two workers) while
 * an old keep-alive connection goes on, mutual TLS.
 *
 * Certificates are made at start with the openssl command in a temp dir:
 * CA 1 signs the server certificate (localhost, 127.0.0.1) and the client
 * certificate; CA 2 signs a second server certificate (O=second), the one
 * a reload switches to, and which a client trusting only CA 1 refuses.
 */
#include "harness.h"
#include "http_util.h"

#include <awith/client.h>
#include <awith/http.h>
#include <awith/io.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- certificates ------------------------------------------------------------------ */

static char certdir[256];
static pid_t certdir_owner;
static bool certs_ok;

static char ca1[300], ca2[300], srv1_pem[300], srv1_key[300], srv2_pem[300], srv2_key[300], cli_pem[300],
	cli_key[300];

static void path_in(char *out, const char *name)
{
	snprintf(out, 300, "%s/%s", certdir, name);
}

__attribute__((constructor)) static void make_certs(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(certdir, sizeof certdir, "%s/awith-https-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(certdir))
		return;
	certdir_owner = getpid();
	char cmd[4096];
	snprintf(cmd, sizeof cmd,
		 "set -e; cd '%s';"
		 "K='genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256';"
		 "for k in ca1 ca2 srv1 srv2 cli; do openssl $K -out $k.key; done;"
		 "for c in 1 2; do openssl req -x509 -new -key ca$c.key -subj \"/CN=awith test CA $c\" -days 2"
		 " -out ca$c.pem -addext basicConstraints=critical,CA:TRUE"
		 " -addext keyUsage=critical,keyCertSign,cRLSign; done;"
		 "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
		 "extendedKeyUsage=serverAuth\\n' > server.ext;"
		 "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext;"
		 "openssl req -new -key srv1.key -subj '/CN=localhost/O=first' -out srv1.csr;"
		 "openssl x509 -req -in srv1.csr -CA ca1.pem -CAkey ca1.key -CAcreateserial -days 2"
		 " -extfile server.ext -out srv1.pem;"
		 "openssl req -new -key srv2.key -subj '/CN=localhost/O=second' -out srv2.csr;"
		 "openssl x509 -req -in srv2.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -days 2"
		 " -extfile server.ext -out srv2.pem;"
		 "openssl req -new -key cli.key -subj '/CN=alice/O=awith tests' -out cli.csr;"
		 "openssl x509 -req -in cli.csr -CA ca1.pem -CAkey ca1.key -CAcreateserial -days 2"
		 " -extfile client.ext -out cli.pem",
		 certdir);
	char full[sizeof cmd + 2 * sizeof certdir + 64];
	snprintf(full, sizeof full, "( %s ) >'%s/openssl.log' 2>&1 || cat '%s/openssl.log' >&2", cmd, certdir,
		 certdir);
	if (system(full) != 0)
		return;
	path_in(ca1, "ca1.pem");
	path_in(ca2, "ca2.pem");
	path_in(srv1_pem, "srv1.pem");
	path_in(srv1_key, "srv1.key");
	path_in(srv2_pem, "srv2.pem");
	path_in(srv2_key, "srv2.key");
	path_in(cli_pem, "cli.pem");
	path_in(cli_key, "cli.key");
	certs_ok = access(srv2_pem, R_OK) == 0 && access(cli_pem, R_OK) == 0;
}

__attribute__((destructor)) static void remove_certs(void)
{
	if (!certdir_owner || getpid() != certdir_owner)
		return;
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_http_tls: could not remove %s\n", certdir);
}

/* Copy a file (the reload tests work on copies they overwrite). */
static bool copy_file(const char *from, const char *to)
{
	char buf[16384];
	FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
	size_t n = 0;
	bool ok = in && out;
	while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
		ok = fwrite(buf, 1, n, out) == n;
	if (in)
		fclose(in);
	if (out && fclose(out))
		ok = false;
	return ok;
}

/* ---- the server: an app on a cleartext and a TLS listener ----------------------------- */

/* What the next server is made with (set by the test before tls_srv_start). */
static aw_app_tls_opts cfg;
static int cfg_workers;   /* > 1: aw_app_run with workers (ports reported from the log) */
static bool cfg_http2_off;   /* make_app turns HTTP/2 off */
static aw_time cfg_grace;    /* shutdown grace (0: 2 s) */

/* GET /: who is asking, over what: "tls=1 subject=CN=alice,O=awith tests". */
static int who(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	char body[512];
	const char *subj = aw_http_peer_cert_subject(req);
	snprintf(body, sizeof body, "tls=%d subject=%s pid=%d", aw_http_is_tls(req), subj ? subj : "(none)",
		 (int)getpid());
	return aw_http_text(res, 200, body);
}

/* GET /slow: waits 3 s; says on stderr whether it was cancelled. */
static int slow(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req, (void)ud;
	long long t0 = now_ms();
	int rc = aw_sleep(AW_SEC(3));
	fprintf(stderr, "slow: %s after %lld ms\n", rc == -ECANCELED ? "cancelled" : "finished", now_ms() - t0);
	if (rc)
		return rc;
	return aw_http_text(res, 200, "slow");
}

/* POST /reload: aw_app_tls_reload from a handler (an admin endpoint). */
static int reload(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	int rc = aw_app_tls_reload(aw_http_app(req));
	if (rc)
		return rc;
	return aw_http_text(res, 200, "reloaded");
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "tls") < 0)
		return NULL;
	if (aw_app_route(app, "GET", "/", who, NULL) < 0 || aw_app_route(app, "GET", "/slow", slow, NULL) < 0 ||
	    aw_app_route(app, "POST", "/reload", reload, NULL) < 0 ||
	    aw_app_metrics(app, "/metrics") < 0 ||
	    aw_app_tls(app, &cfg) < 0) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return NULL;
	}
	aw_app_limits(app)->shutdown_grace = cfg_grace ? cfg_grace : AW_SEC(2);
	if (cfg_http2_off)
		aw_app_http2(app)->enabled = false;
	return app;
}

typedef struct child_args {
	int report_fd;
} child_args;

static int child_main(void *arg)
{
	child_args *a = arg;
	aw_app *app = make_app();
	if (!app)
		return -1;
	aw_listener *plain, *tls;
	int rc = aw_tcp_listen(&plain, "127.0.0.1", 0, NULL);
	if (rc == 0 && (rc = aw_tcp_listen(&tls, "127.0.0.1", 0, NULL)) != 0)
		aw_listener_close(plain);
	if (rc) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return rc;
	}
	int ports[2] = { aw_listener_port(plain), aw_listener_port(tls) };
	if (write(a->report_fd, ports, sizeof ports) != (ssize_t)sizeof ports)
		rc = -EIO;
	close(a->report_fd);
	aw_app_listener ls[2] = { { plain, false }, { tls, true } };
	if (!rc)
		rc = aw_app_serve_listeners(app, ls, 2);
	if (rc)
		aw_error_print(stderr, aw_error_current());
	aw_listener_close(plain);
	aw_listener_close(tls);
	aw_app_free(app);
	return rc;
}

static int tport;   /* the TLS port of the last server started */

/* Fork the server; s->port is its cleartext port, tport its TLS port. */
static int tls_srv_start(srv *s)
{
	memset(s, 0, sizeof *s);
	s->logfd = -1;
	char path[] = "/tmp/aw-https-test-XXXXXX";
	int lf = mkostemp(path, O_CLOEXEC);
	if (lf < 0)
		return -1;
	unlink(path);
	int p[2];
	if (pipe2(p, O_CLOEXEC)) {
		close(lf);
		return -1;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		dup2(lf, 2);
		close(lf);
		setvbuf(stderr, NULL, _IONBF, 0);
		int rc;
		if (cfg_workers > 1) {
			/* aw_app_run picks the ports and logs them. */
			close(p[1]);
			aw_app *app = make_app();
			rc = app ? aw_app_run(app, "127.0.0.1", 0, cfg_workers) : -1;
			if (rc)
				aw_error_print(stderr, aw_error_current());
			aw_app_free(app);
		} else {
			child_args a = { p[1] };
			rc = aw_run(child_main, &a);
		}
		fflush(NULL);
		exit(rc == 0 ? 0 : 1);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		close(lf);
		return -1;
	}
	s->pid = pid;
	s->logfd = lf;
	tport = 0;
	if (cfg_workers > 1) {
		close(p[0]);
		/* "... on https://127.0.0.1:PORT" in the supervisor's log. */
		for (int i = 0; i < 500 && !tport; i++) {
			char buf[8192];
			ssize_t n = pread(lf, buf, sizeof buf - 1, 0);
			buf[n > 0 ? n : 0] = 0;
			const char *h = strstr(buf, "workers on https://127.0.0.1:");
			const char *c = strstr(buf, "workers on http://127.0.0.1:");
			if (h && c) {
				tport = atoi(h + strlen("workers on https://127.0.0.1:"));
				s->port = atoi(c + strlen("workers on http://127.0.0.1:"));
			}
			usleep(10000);
		}
		return tport && wait_listening(tport, 5000) ? 0 : -1;
	}
	struct pollfd pf = { p[0], POLLIN, 0 };
	int ports[2] = { 0, 0 };
	if (poll(&pf, 1, 10000) == 1 && read(p[0], ports, sizeof ports) == (ssize_t)sizeof ports) {
		s->port = ports[0];
		tport = ports[1];
	}
	close(p[0]);
	return s->port && tport ? 0 : -1;
}

static void cfg_default(void)
{
	cfg = (aw_app_tls_opts){ .cert_file = srv1_pem, .key_file = srv1_key };
	cfg_workers = 0;
	cfg_http2_off = false;
	cfg_grace = 0;
}

/* ---- a client of our own: io's TLS stream ------------------------------------------ */

typedef struct tls_get {
	/* in */
	int port;
	const char *ca;            /* trust this CA (verify "localhost") */
	const char *cert, *key;    /* client certificate, if any */
	const char *alpn;
	/* out */
	int rc;                    /* the handshake's or the request's error */
	int status;
	char body[512];
	char alpn_got[32];
	char server_subject[256];
	aw_stream *s;              /* kept open when keep is set */
	bool keep;
	bool handshake_only;       /* no GET (the peer chose h2) */
	pid_t stop_after_connect;  /* SIGTERM this server between connect and handshake */
	bool conn_close;           /* out: the answer said Connection: close */
} tls_get;

/* One GET / on stream s: the status and body (Content-Length framed). */
static int get_on(aw_stream *s, tls_get *g)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int rc = aw_stream_write(s, req, sizeof req - 1, aw_deadline_after(AW_SEC(5)));
	const char *head;
	size_t hlen;
	if (!rc)
		rc = aw_stream_read_until(s, "\r\n\r\n", 4, 8192, &head, &hlen, aw_deadline_after(AW_SEC(5)));
	if (rc)
		return rc;
	g->status = atoi(head + 9);
	const char *cc = strcasestr(head, "\r\nconnection: close\r\n");
	g->conn_close = cc && cc < head + hlen;
	const char *cl = strcasestr(head, "content-length:");
	size_t n = cl && cl < head + hlen ? (size_t)atoi(cl + 15) : 0;
	if (n >= sizeof g->body)
		return -E2BIG;
	rc = aw_stream_read_exact(s, g->body, n, aw_deadline_after(AW_SEC(5)));
	g->body[rc ? 0 : n] = 0;
	return rc;
}

/* Connect, handshake (verifying "localhost" against g->ca), GET /. */
static int tls_get_task(void *arg)
{
	tls_get *g = arg;
	aw_tls_ctx *ctx = NULL;
	aw_tls_opts o = { .ca_file = g->ca, .cert_file = g->cert, .key_file = g->key, .alpn = g->alpn };
	aw_stream *s = NULL;
	int rc = aw_tls_client_ctx(&ctx, &o);
	if (!rc)
		rc = aw_tcp_connect(&s, "127.0.0.1", g->port, aw_deadline_after(AW_SEC(5)));
	if (!rc && g->stop_after_connect) {
		/* accepted, then the server is told to stop before the handshake */
		if (!cli_wait_accepted(aw_stream_fd(s), 5000))
			rc = -ETIMEDOUT;
		else if (kill(g->stop_after_connect, SIGTERM) == 0)
			rc = aw_sleep(AW_MS(300));
	}
	if (!rc)
		rc = aw_stream_tls_client(s, ctx, "localhost", aw_deadline_after(AW_SEC(5)));
	if (!rc) {
		snprintf(g->alpn_got, sizeof g->alpn_got, "%s", aw_stream_alpn(s));
		char *subj = aw_stream_tls_peer_subject(s);
		snprintf(g->server_subject, sizeof g->server_subject, "%s", subj ? subj : "");
		free(subj);
		if (!g->handshake_only)
			rc = get_on(s, g);
	}
	g->rc = rc;
	aw_error_clear();
	if (s && g->keep && !rc) {
		g->s = s;
	} else if (s) {
		if (aw_stream_close(s, aw_deadline_after(AW_SEC(1))))
			aw_error_clear();
	}
	aw_tls_ctx_free(ctx);
	return 0;
}

/* The same, outside a loop (a loop of its own for the one request). */
static int tls_get_run(tls_get *g)
{
	if (aw_run(tls_get_task, g))
		return -1;
	return g->rc;
}

/* ---- side by side, verified by our own clients ---------------------------------------- */

AW_TEST(https_and_http_listen_side_by_side_in_one_app)
{
	CHECK(certs_ok);
	cfg_default();
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get g = { .port = tport, .ca = ca1 };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(g.status, 200);
	CHECK(strncmp(g.body, "tls=1 subject=(none)", 20) == 0);
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &r, &closed), 200);
	CHECK(strncmp(r.body, "tls=0 subject=(none)", 20) == 0);
	resp_free(&r);
	/* A TLS client on the cleartext port and a cleartext request on the
	 * TLS port both fail, and both servers go on. */
	tls_get wrong = { .port = s.port, .ca = ca1 };
	CHECK_NE(tls_get_run(&wrong), 0);
	CHECK_NE(http_once(tport, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &r, &closed), 200);
	resp_free(&r);
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(srv_stop(&s), 0);
}

typedef struct client_case {
	int port;
	const char *ca;
	int rc, status, version;
	char body[256];
} client_case;

static int client_task(void *arg)
{
	client_case *c = arg;
	char url[64];
	snprintf(url, sizeof url, "https://localhost:%d/", c->port);
	aw_client_session cs;
	aw_client_opts o = { .ca_file = c->ca };
	AW_WITH(aw_client_session_init(&cs, &o)) {
		aw_client_response r;
		AW_WITH(aw_client_get_init(&r, &cs, url)) {
			c->status = aw_client_response_status(&r);
			c->version = aw_client_response_http_version(&r);
			size_t n;
			const char *b = aw_client_response_body(&r, &n);
			snprintf(c->body, sizeof c->body, "%.*s", (int)n, b);
		}
	}
	c->rc = aw_error_pending();
	aw_error_clear();
	return 0;
}

AW_TEST(own_client_session_gets_https_with_a_ca_file_and_refuses_an_untrusted_certificate)
{
	CHECK(certs_ok);
	cfg_default();
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	client_case ok = { .port = tport, .ca = ca1 };
	CHECK_EQ(aw_run(client_task, &ok), 0);
	CHECK_STR(aw_test_code_name(ok.rc), "0");
	CHECK_EQ(ok.status, 200);
	CHECK(strncmp(ok.body, "tls=1", 5) == 0);
	client_case bad = { .port = tport, .ca = ca2 };
	CHECK_EQ(aw_run(client_task, &bad), 0);
	CHECK_STR(aw_test_code_name(bad.rc), "ETLS_VERIFY");
	/* Our stream client too: the handshake fails verification. */
	tls_get g = { .port = tport, .ca = ca2 };
	CHECK_STR(aw_test_code_name(tls_get_run(&g)), "ETLS_VERIFY");
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "TLS handshake with 127.0.0.1:") != NULL);   /* the refused one, logged */
	free(log);
}

AW_TEST(alpn_chooses_h2_when_the_app_serves_http2_and_the_client_offers_it)
{
	CHECK(certs_ok);
	cfg_default();   /* HTTP/2 is on by default */
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get g = { .port = tport, .ca = ca1, .alpn = "h2,http/1.1", .handshake_only = true };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_STR(g.alpn_got, "h2");
	tls_get h1 = { .port = tport, .ca = ca1, .alpn = "http/1.1" };
	CHECK_EQ(tls_get_run(&h1), 0);
	CHECK_STR(h1.alpn_got, "http/1.1");
	CHECK_EQ(h1.status, 200);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(alpn_offers_http11_only_without_http2_and_no_alpn_is_served_http11)
{
	CHECK(certs_ok);
	cfg_default();
	cfg_http2_off = true;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get g = { .port = tport, .ca = ca1, .alpn = "h2,http/1.1" };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_STR(g.alpn_got, "http/1.1");
	CHECK_EQ(g.status, 200);
	tls_get none = { .port = tport, .ca = ca1 };
	CHECK_EQ(tls_get_run(&none), 0);
	CHECK_STR(none.alpn_got, "");
	CHECK_EQ(none.status, 200);
	/* Only protocols we do not speak: no ALPN agreed, still HTTP/1.1. */
	tls_get other = { .port = tport, .ca = ca1, .alpn = "spdy/3,h2" };
	CHECK_EQ(tls_get_run(&other), 0);
	CHECK_STR(other.alpn_got, "");
	CHECK_EQ(other.status, 200);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- handshakes that stall or fail ----------------------------------------------------- */

AW_TEST(a_handshake_that_stalls_is_closed_at_the_timeout_and_others_are_served)
{
	CHECK(certs_ok);
	cfg_default();
	cfg.handshake_timeout = AW_MS(1000);
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	/* One says nothing, one sends half a ClientHello record header. */
	long long t0 = now_ms();
	int quiet = cli_connect(tport);
	int half = cli_connect(tport);
	CHECK(quiet >= 0 && half >= 0);
	CHECK_EQ(cli_send(half, "\x16\x03\x01\x02", 4), 0);
	/* Meanwhile a full client is served, while both still hang. */
	tls_get g = { .port = tport, .ca = ca1 };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(g.status, 200);
	struct pollfd pf = { quiet, POLLIN, 0 };
	CHECK_EQ(poll(&pf, 1, 0), 0);   /* not closed yet */
	CHECK(cli_closed(quiet, 3000));
	long long waited = now_ms() - t0;
	CHECK(cli_closed(half, 1000));
	/* About the timeout: the deadline counts from the loop's time of the
	 * accept (read at the top of that loop iteration: a loaded or
	 * sanitized run can make it some 100 ms older than the accept). */
	CHECK_GE(waited, 600);
	CHECK_LT(waited, 2500);
	close(quiet);
	close(half);
	/* Counted, by kind. */
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 34, &r, &closed), 200);
	CHECK(strstr(r.body, "awith_http_tls_handshakes_total{result=\"timeout\"} 2") != NULL);
	CHECK(strstr(r.body, "awith_http_tls_handshakes_total{result=\"ok\"} 1") != NULL);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "not done within 1000 ms: closed") != NULL);
	free(log);
}

AW_TEST(failed_handshakes_are_counted_logged_rate_limited_and_do_not_stop_the_server)
{
	CHECK(certs_ok);
	cfg_default();
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	/* 40 clients speaking cleartext HTTP to the TLS port. */
	for (int i = 0; i < 40; i++) {
		int fd = cli_connect(tport);
		CHECK(fd >= 0);
		CHECK_EQ(cli_sends(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
		CHECK(cli_closed(fd, 2000));
		close(fd);
	}
	tls_get g = { .port = tport, .ca = ca1 };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(g.status, 200);
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 34, &r, &closed), 200);
	CHECK(strstr(r.body, "awith_http_tls_handshakes_total{result=\"failed\"} 40") != NULL);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	int lines = 0;
	for (const char *p = log; (p = strstr(p, "TLS handshake with 127.0.0.1:")) != NULL; p++)
		lines++;
	CHECK_GE(lines, 1);
	CHECK_LE(lines, 12);   /* the rate limit: 10 per 5 s per place */
	CHECK(strstr(log, "similar messages suppressed") != NULL);
	free(log);
}

/* A client that stalls in its handshake holds the shutdown for the
 * first-request window (1 s), not for the grace nor its handshake timeout. */
AW_TEST(shutdown_closes_a_connection_stuck_in_its_handshake_after_the_first_request_window)
{
	CHECK(certs_ok);
	cfg_default();
	cfg.handshake_timeout = AW_SEC(30);
	cfg_grace = AW_SEC(20);
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	int fd = cli_connect(tport);
	CHECK(fd >= 0);
	CHECK(cli_wait_accepted(fd, 5000));
	long long t0 = now_ms();
	CHECK_EQ(srv_stop(&s), 0);
	long long took = now_ms() - t0;
	CHECK_GE(took, 800);    /* it was given the window */
	CHECK_LT(took, 5000);   /* not the 20 s grace, not the 30 s handshake timeout */
	CHECK(cli_closed(fd, 1000));
	close(fd);
}

/* Accepted before the shutdown, handshake after it began: served (the
 * graceful restart's new connections in flight depend on it). */
AW_TEST(a_connection_accepted_before_shutdown_finishes_its_handshake_and_first_request)
{
	CHECK(certs_ok);
	cfg_default();
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get g = { .port = tport, .ca = ca1, .stop_after_connect = s.pid };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(g.status, 200);
	CHECK(strstr(g.body, "tls=1") != NULL);
	CHECK(g.conn_close);
	CHECK_EQ(srv_wait(&s), 0);
}

static int gone_task(void *arg)
{
	(void)arg;
	aw_tls_ctx *ctx = NULL;
	aw_tls_opts o = { .ca_file = ca1 };
	aw_stream *s = NULL;
	static const char req[] = "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int rc = aw_tls_client_ctx(&ctx, &o);
	if (!rc)
		rc = aw_tcp_connect(&s, "127.0.0.1", tport, aw_deadline_after(AW_SEC(5)));
	if (!rc)
		rc = aw_stream_tls_client(s, ctx, "localhost", aw_deadline_after(AW_SEC(5)));
	if (!rc)
		rc = aw_stream_write(s, req, sizeof req - 1, aw_deadline_after(AW_SEC(5)));
	EXPECT_EQ(rc, 0);
	aw_error_clear();
	if (aw_sleep(AW_MS(300)))
		aw_error_clear();
	/* close_notify, then FIN: the client is gone. */
	if (s && aw_stream_close(s, aw_deadline_after(AW_SEC(1))))
		aw_error_clear();
	aw_tls_ctx_free(ctx);
	return 0;
}

AW_TEST(a_client_gone_over_tls_cancels_its_handler)
{
	CHECK(certs_ok);
	cfg_default();
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	CHECK_EQ(aw_run(gone_task, NULL), 0);
	usleep(1000 * 1000);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "slow: cancelled after") != NULL);
	free(log);
}

/* ---- mutual TLS ------------------------------------------------------------------------ */

AW_TEST(mutual_tls_shows_the_verified_subject_to_handlers_and_null_over_cleartext)
{
	CHECK(certs_ok);
	cfg_default();
	cfg.client_ca_file = ca1;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get g = { .port = tport, .ca = ca1, .cert = cli_pem, .key = cli_key };
	CHECK_EQ(tls_get_run(&g), 0);
	CHECK_EQ(g.status, 200);
	CHECK(strncmp(g.body, "tls=1 subject=O=awith tests,CN=alice ", 37) == 0);
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, &r, &closed), 200);
	CHECK(strncmp(r.body, "tls=0 subject=(none)", 20) == 0);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
}

AW_TEST(mutual_tls_required_refuses_a_client_without_a_certificate_or_with_an_untrusted_one)
{
	CHECK(certs_ok);
	cfg_default();
	cfg.client_ca_file = ca1;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	/* TLS 1.3: the client's handshake ends before the server has seen its
	 * (missing) certificate; the server's alert fails the first read. */
	tls_get none = { .port = tport, .ca = ca1 };
	CHECK_NE(tls_get_run(&none), 0);
	CHECK_NE(none.status, 200);
	/* A certificate from another CA (the second server's, as a client's). */
	tls_get other = { .port = tport, .ca = ca1, .cert = srv2_pem, .key = srv2_key };
	CHECK_NE(tls_get_run(&other), 0);
	CHECK_NE(other.status, 200);
	tls_get good = { .port = tport, .ca = ca1, .cert = cli_pem, .key = cli_key };
	CHECK_EQ(tls_get_run(&good), 0);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "peer did not return a certificate") != NULL ||
	      strstr(log, "certificate required") != NULL);
	free(log);
}

AW_TEST(mutual_tls_optional_serves_a_client_without_a_certificate_with_a_null_subject)
{
	CHECK(certs_ok);
	cfg_default();
	cfg.client_ca_file = ca1;
	cfg.client_cert_optional = true;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	tls_get none = { .port = tport, .ca = ca1 };
	CHECK_EQ(tls_get_run(&none), 0);
	CHECK(strncmp(none.body, "tls=1 subject=(none)", 20) == 0);
	tls_get good = { .port = tport, .ca = ca1, .cert = cli_pem, .key = cli_key };
	CHECK_EQ(tls_get_run(&good), 0);
	CHECK(strncmp(good.body, "tls=1 subject=O=awith tests,CN=alice ", 37) == 0);
	/* One that is sent must still verify. */
	tls_get other = { .port = tport, .ca = ca1, .cert = srv2_pem, .key = srv2_key };
	CHECK_NE(tls_get_run(&other), 0);
	CHECK_EQ(srv_stop(&s), 0);
}

/* ---- reload -------------------------------------------------------------------------- */

typedef struct reload_case {
	srv *s;
	pid_t signal_to;
	const char *ca_after;      /* trusts the certificate reloaded */
	int before, old_again, after, after_old_ca;
	char subject_before[256], subject_after[256];
	bool broken;               /* the new files are garbage: nothing changes */
	bool by_api;               /* POST /reload to a worker instead of SIGHUP */
	int api_status;
} reload_case;

static int reload_task(void *arg)
{
	reload_case *rc = arg;
	/* An old keep-alive connection, on the first certificate. */
	tls_get old = { .port = tport, .ca = ca1, .keep = true };
	tls_get_task(&old);
	rc->before = old.rc ? old.rc : old.status;
	snprintf(rc->subject_before, sizeof rc->subject_before, "%s", old.server_subject);
	/* New files in place, then SIGHUP. */
	char pem[300], key[300];
	path_in(pem, "reload.pem");
	path_in(key, "reload.key");
	if (rc->broken) {
		FILE *f = fopen(pem, "w");
		if (f) {
			fputs("not a certificate\n", f);
			fclose(f);
		}
	} else {
		(void)!copy_file(srv2_pem, pem);
		(void)!copy_file(srv2_key, key);
	}
	if (rc->by_api) {
		resp r;
		bool closed;
		rc->api_status = http_once(rc->s->port, "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
					   53, &r, &closed);
		resp_free(&r);
	} else {
		kill(rc->signal_to, SIGHUP);
	}
	if (aw_sleep(AW_MS(500)))
		aw_error_clear();
	/* New handshakes: the new certificate (or still the old one). */
	for (int i = 0; i < 8; i++) {
		tls_get g = { .port = tport, .ca = rc->ca_after };
		tls_get_task(&g);
		rc->after = g.rc ? g.rc : g.status;
		if (rc->after != 200)
			break;
		snprintf(rc->subject_after, sizeof rc->subject_after, "%s", g.server_subject);
	}
	tls_get g1 = { .port = tport, .ca = ca1 };
	tls_get_task(&g1);
	rc->after_old_ca = g1.rc ? g1.rc : g1.status;
	/* The old connection goes on. */
	if (old.s) {
		int e = get_on(old.s, &old);
		rc->old_again = e ? e : old.status;
		aw_error_clear();
		if (aw_stream_close(old.s, aw_deadline_after(AW_SEC(1))))
			aw_error_clear();
	}
	return 0;
}

static void reload_setup(void)
{
	char pem[300], key[300];
	path_in(pem, "reload.pem");
	path_in(key, "reload.key");
	CHECK(copy_file(srv1_pem, pem) && copy_file(srv1_key, key));
	static char spem[300], skey[300];
	memcpy(spem, pem, sizeof spem);
	memcpy(skey, key, sizeof skey);
	cfg_default();
	cfg.cert_file = spem;
	cfg.key_file = skey;
}

AW_TEST(sighup_reloads_the_certificate_and_an_old_keepalive_connection_goes_on)
{
	CHECK(certs_ok);
	reload_setup();
	CHECK(!aw_test_failed());
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	reload_case rc = { .s = &s, .signal_to = s.pid, .ca_after = ca2 };
	CHECK_EQ(aw_run(reload_task, &rc), 0);
	CHECK_EQ(rc.before, 200);
	CHECK_STR(rc.subject_before, "O=first,CN=localhost");
	CHECK_EQ(rc.after, 200);
	CHECK_STR(rc.subject_after, "O=second,CN=localhost");
	CHECK_STR(aw_test_code_name(rc.after_old_ca), "ETLS_VERIFY");   /* nobody gets the old one */
	CHECK_EQ(rc.old_again, 200);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "SIGHUP: reloaded the TLS certificate from") != NULL);
	free(log);
}

AW_TEST(a_reload_from_a_broken_file_keeps_the_current_certificate)
{
	CHECK(certs_ok);
	reload_setup();
	CHECK(!aw_test_failed());
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	reload_case rc = { .s = &s, .signal_to = s.pid, .ca_after = ca1, .broken = true };
	CHECK_EQ(aw_run(reload_task, &rc), 0);
	CHECK_EQ(rc.before, 200);
	CHECK_EQ(rc.after, 200);
	CHECK_STR(rc.subject_after, "O=first,CN=localhost");
	CHECK_EQ(rc.old_again, 200);
	resp r;
	bool closed;
	CHECK_EQ(http_once(s.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 34, &r, &closed), 200);
	CHECK(strstr(r.body, "awith_http_tls_reloads_total{result=\"failed\"} 1") != NULL);
	resp_free(&r);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	CHECK(strstr(log, "the TLS certificate was not reloaded (the current one stays in use)") != NULL);
	CHECK(strstr(log, "reload.pem") != NULL);
	free(log);
}

AW_TEST(sighup_to_the_supervisor_reloads_every_worker)
{
	CHECK(certs_ok);
	reload_setup();
	CHECK(!aw_test_failed());
	cfg_workers = 2;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	/* Both workers answer before the reload (SO_REUSEPORT spreads new
	 * connections; a few tries reach both). */
	reload_case rc = { .s = &s, .signal_to = s.pid, .ca_after = ca2 };
	CHECK_EQ(aw_run(reload_task, &rc), 0);
	CHECK_EQ(rc.before, 200);
	CHECK_EQ(rc.after, 200);   /* 8 new connections, all on the new certificate */
	CHECK_STR(rc.subject_after, "O=second,CN=localhost");
	CHECK_STR(aw_test_code_name(rc.after_old_ca), "ETLS_VERIFY");
	CHECK_EQ(rc.old_again, 200);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	int workers = 0;
	for (const char *p = log; (p = strstr(p, "] SIGHUP: reloaded the TLS certificate")) != NULL; p++)
		workers++;
	CHECK_EQ(workers, 2);
	CHECK(strstr(log, "supervisor: SIGHUP: reloaded the TLS certificate") != NULL);
	free(log);
}

AW_TEST(aw_app_tls_reload_in_one_worker_reloads_every_worker)
{
	CHECK(certs_ok);
	reload_setup();
	CHECK(!aw_test_failed());
	cfg_workers = 2;
	srv s;
	CHECK_EQ(tls_srv_start(&s), 0);
	reload_case rc = { .s = &s, .ca_after = ca2, .by_api = true };
	CHECK_EQ(aw_run(reload_task, &rc), 0);
	CHECK_EQ(rc.api_status, 200);
	CHECK_EQ(rc.before, 200);
	CHECK_EQ(rc.after, 200);   /* 8 new connections, whichever worker takes them */
	CHECK_STR(rc.subject_after, "O=second,CN=localhost");
	CHECK_EQ(rc.old_again, 200);
	CHECK_EQ(srv_stop(&s), 0);
	char *log = srv_log(&s);
	/* The one that was asked, once; the other through the supervisor;
	 * the supervisor's own copy. */
	CHECK(strstr(log, "aw_app_tls_reload: reloaded the TLS certificate") != NULL);
	int by_signal = 0;
	for (const char *p = log; (p = strstr(p, "] SIGHUP: reloaded the TLS certificate")) != NULL; p++)
		by_signal++;
	CHECK_EQ(by_signal, 1);
	CHECK(strstr(log, "supervisor: SIGHUP: reloaded the TLS certificate") != NULL);
	free(log);
}

/* ---- settings ---------------------------------------------------------------------------- */

AW_TEST(tls_settings_fail_early_with_clear_errors)
{
	CHECK(certs_ok);
	aw_app *app;
	CHECK_EQ(aw_app_new(&app, "bad"), 0);
	aw_app_tls_opts o = { .cert_file = "/nonexistent/cert.pem", .key_file = srv1_key };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "ETLS");
	CHECK(strstr(aw_error_current()->msg, "/nonexistent/cert.pem") != NULL);
	aw_error_clear();
	o = (aw_app_tls_opts){ .cert_file = srv1_pem, .key_file = srv2_key };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "ETLS");
	CHECK(strstr(aw_error_current()->msg, "does not match") != NULL);
	aw_error_clear();
	o = (aw_app_tls_opts){ .cert_file = srv1_pem };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "EINVAL");
	aw_error_clear();
	o = (aw_app_tls_opts){ .cert_file = srv1_pem, .key_file = srv1_key, .client_cert_optional = true };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "EINVAL");
	aw_error_clear();
	o = (aw_app_tls_opts){ .cert_file = srv1_pem, .key_file = srv1_key, .ciphers = "NO-SUCH-CIPHER" };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "EINVAL");
	aw_error_clear();
	o = (aw_app_tls_opts){ .cert_file = srv1_pem, .key_file = srv1_key, .client_ca_file = "/nonexistent/ca" };
	CHECK_STR(aw_test_code_name(aw_app_tls(app, &o)), "ETLS");
	aw_error_clear();
	CHECK_STR(aw_test_code_name(aw_app_tls_reload(app)), "EINVAL");   /* TLS not on */
	aw_error_clear();
	CHECK_STR(aw_test_code_name(aw_app_run(app, "127.0.0.1", AW_APP_NO_PORT, 1)), "EINVAL");
	aw_error_clear();
	aw_app_free(app);
}

static int serve_tls_without_settings(void *arg)
{
	(void)arg;
	aw_app *app;
	aw_listener *l;
	int rc = aw_app_new(&app, "x");
	if (!rc)
		rc = aw_tcp_listen(&l, "127.0.0.1", 0, NULL);
	if (rc)
		return rc;
	rc = aw_app_serve_listeners(app, &(aw_app_listener){ l, true }, 1);
	EXPECT_STR_EQ(aw_test_code_name(rc), "EINVAL");
	EXPECT(strstr(aw_error_current()->msg, "aw_app_tls") != NULL);
	aw_error_clear();
	rc = aw_app_serve_listeners(app, &(aw_app_listener){ l, false }, 0);
	EXPECT_STR_EQ(aw_test_code_name(rc), "EINVAL");
	aw_error_clear();
	aw_listener_close(l);
	aw_app_free(app);
	return 0;
}

AW_TEST(a_tls_listener_without_tls_settings_is_einval)
{
	CHECK_EQ(aw_run(serve_tls_without_settings, NULL), 0);
}
