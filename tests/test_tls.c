/* SPDX-License-Identifier: MIT */
/* Tests: TLS contexts and TLS streams (src/io/tls.c), over socketpairs.
 *
 * A throwaway CA and certificates (EC P-256, fast) are made once per run
 * with the openssl command, in a temp dir the parent process removes at
 * exit: a server certificate for DNS:localhost and IP:127.0.0.1, a client
 * certificate, and a key that matches neither. */
#include "harness.h"

#include "awith/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>


/* The error in flight's message contains `part` (case-insensitive). */
static bool error_mentions(const char *part)
{
	const aw_error *e = aw_error_current();
	return e && e->msg && strcasestr(e->msg, part) != NULL;
}

/* ---- fixture: certificates -------------------------------------------------------- */

static char certdir[256];
static pid_t certdir_owner;
static bool certs_ok;

static char ca_pem[300], srv_pem[300], srv_key[300], cli_pem[300], cli_key[300], other_key[300];

static void path_in(char *out, const char *name)
{
	snprintf(out, 300, "%s/%s", certdir, name);
}

__attribute__((constructor)) static void make_certs(void)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(certdir, sizeof certdir, "%s/awith-tls-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(certdir))
		return;
	certdir_owner = getpid();
	char cmd[4096];
	snprintf(cmd, sizeof cmd,
		 "set -e; cd '%s';"
		 "K='genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256';"
		 "openssl $K -out ca.key; openssl $K -out server.key; openssl $K -out client.key;"
		 "openssl $K -out other.key;"
		 "openssl req -x509 -new -key ca.key -subj '/CN=awith test CA' -days 2 -out ca.pem"
		 " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign;"
		 "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
		 "extendedKeyUsage=serverAuth\\n' > server.ext;"
		 "printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=clientAuth\\n' > client.ext;"
		 "openssl req -new -key server.key -subj '/CN=localhost' -out server.csr;"
		 "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
		 " -extfile server.ext -out server.pem;"
		 "openssl req -new -key client.key -subj '/CN=awith test client' -out client.csr;"
		 "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
		 " -extfile client.ext -out client.pem",
		 certdir);
	/* Quiet unless it fails. */
	char full[sizeof cmd + 2 * sizeof certdir + 64];
	snprintf(full, sizeof full, "( %s ) >'%s/openssl.log' 2>&1 || cat '%s/openssl.log' >&2", cmd, certdir,
		 certdir);
	if (system(full) != 0)
		return;
	path_in(ca_pem, "ca.pem");
	path_in(srv_pem, "server.pem");
	path_in(srv_key, "server.key");
	path_in(cli_pem, "client.pem");
	path_in(cli_key, "client.key");
	path_in(other_key, "other.key");
	certs_ok = access(srv_pem, R_OK) == 0 && access(cli_pem, R_OK) == 0;
}

/* Every forked test child runs destructors too: only the parent removes. */
__attribute__((destructor)) static void remove_certs(void)
{
	if (!certdir_owner || getpid() != certdir_owner)
		return;
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", certdir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_tls: could not remove %s\n", certdir);
}

/* ---- a client and a server over a socketpair ---------------------------------------- */

typedef struct tls_case {
	/* set up by the test */
	aw_tls_opts copts, sopts;
	const char *host;            /* what the client checks */
	void (*client_body)(struct tls_case *c);
	void (*server_body)(struct tls_case *c);
	/* results */
	int cctx_rc, sctx_rc;
	int client_rc, server_rc;    /* the handshakes */
	char client_msg[512], server_msg[512];
	char client_alpn[32], server_alpn[32];
	/* for bodies */
	aw_stream *cs, *ss;
	int fds[2];
	char got[256];
	ssize_t n;
	int rc1, rc2;
} tls_case;

static void note_error(char *out, size_t len)
{
	const aw_error *e = aw_error_current();
	snprintf(out, len, "%s", e && e->msg ? e->msg : "");
}

static aw_tls_ctx *server_ctx_global;

static int server_task(void *arg)
{
	tls_case *c = arg;
	c->server_rc = aw_stream_tls_server(c->ss, server_ctx_global, aw_deadline_after(AW_SEC(10)));
	if (c->server_rc)
		note_error(c->server_msg, sizeof c->server_msg);
	snprintf(c->server_alpn, sizeof c->server_alpn, "%s", aw_stream_alpn(c->ss));
	if (!c->server_rc && c->server_body)
		c->server_body(c);
	int rc = aw_stream_close(c->ss, aw_deadline_after(AW_SEC(5)));
	c->ss = NULL;
	aw_error_clear();
	return rc < 0 ? 0 : 0;
}

static int run_case_main(void *arg)
{
	tls_case *c = arg;
	aw_tls_ctx *cctx = NULL, *sctx = NULL;
	c->cctx_rc = aw_tls_client_ctx(&cctx, &c->copts);
	c->sctx_rc = aw_tls_server_ctx(&sctx, &c->sopts);
	if (c->cctx_rc || c->sctx_rc) {
		aw_tls_ctx_free(cctx);
		aw_tls_ctx_free(sctx);
		return -1;
	}
	server_ctx_global = sctx;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fds) != 0)
		return -errno;
	EXPECT_EQ(aw_stream_from_fd(&c->cs, c->fds[0], NULL), 0);
	EXPECT_EQ(aw_stream_from_fd(&c->ss, c->fds[1], NULL), 0);
	aw_task *srv;
	EXPECT_EQ(aw_spawn(&srv, server_task, c, "tls-server"), 0);
	c->client_rc = aw_stream_tls_client(c->cs, cctx, c->host, aw_deadline_after(AW_SEC(10)));
	if (c->client_rc)
		note_error(c->client_msg, sizeof c->client_msg);
	snprintf(c->client_alpn, sizeof c->client_alpn, "%s", aw_stream_alpn(c->cs));
	if (!c->client_rc && c->client_body)
		c->client_body(c);
	if (aw_stream_close(c->cs, aw_deadline_after(AW_SEC(5))) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	aw_error_clear();
	if (aw_task_join(srv) < 0)
		aw_error_clear();   /* the server's outcome is recorded by the server task */
	/* The SSL objects hold their own references: freeing the contexts
	 * last is not required, but it is what a program does. */
	aw_tls_ctx_free(cctx);
	aw_tls_ctx_free(sctx);
	return 0;
}

static void default_opts(tls_case *c)
{
	c->copts = (aw_tls_opts){ .ca_file = ca_pem };
	c->sopts = (aw_tls_opts){ .cert_file = srv_pem, .key_file = srv_key };
	c->host = "localhost";
}

/* ---- echo ---------------------------------------------------------------------------- */

/* Write a line, read the echo into c->got; rc1/rc2: the write's and the
 * read's results (the tests check them). */
static void echo_client(tls_case *c)
{
	aw_time dl = aw_deadline_after(AW_SEC(10));
	c->rc1 = aw_stream_write(c->cs, "hello over tls\n", 15, dl);
	const char *line;
	size_t len;
	c->rc2 = aw_stream_read_line(c->cs, 100, &line, &len, dl);
	if (c->rc2 == 0 && len < sizeof c->got) {
		memcpy(c->got, line, len);
		c->got[len] = '\0';
	}
}

static void echo_server(tls_case *c)
{
	aw_time dl = aw_deadline_after(AW_SEC(10));
	const char *line;
	size_t len;
	if (aw_stream_read_line(c->ss, 100, &line, &len, dl) == 0)
		EXPECT_EQ(aw_stream_write(c->ss, line, len, dl), 0);
}

AW_TEST(tls_echo_over_a_socketpair_with_the_ca_file_verifies_and_round_trips)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.client_body = echo_client;
	c.server_body = echo_server;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.cctx_rc, 0);
	CHECK_EQ(c.sctx_rc, 0);
	CHECK_STR(c.client_msg, "");
	CHECK_EQ(c.client_rc, 0);
	CHECK_EQ(c.server_rc, 0);
	CHECK_STR(c.got, "hello over tls\n");
	CHECK_STR(c.client_alpn, "");
	CHECK_STR(c.server_alpn, "");
}

AW_TEST(tls_client_verifies_an_ip_literal_against_the_certificates_ip_san)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.host = "127.0.0.1";
	c.client_body = echo_client;
	c.server_body = echo_server;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_STR(c.client_msg, "");
	CHECK_EQ(c.client_rc, 0);
	CHECK_STR(c.got, "hello over tls\n");
}

/* ---- verification failures --------------------------------------------------------------- */

AW_TEST(tls_client_without_the_ca_fails_with_aw_etls_verify_naming_the_reason)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.copts.ca_file = NULL;   /* the system's CAs do not know ours */
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, -AW_ETLS_VERIFY);
	CHECK(strstr(c.client_msg, "certificate verification failed") != NULL);
	CHECK(strstr(c.client_msg, "local issuer") != NULL);   /* X509_verify_cert_error_string */
	CHECK(strstr(c.client_msg, "localhost") != NULL);
	/* The server sees the client's alert. */
	CHECK_EQ(c.server_rc, -AW_ETLS);
	CHECK(c.server_msg[0] != '\0');
}

AW_TEST(tls_wrong_host_name_fails_with_aw_etls_verify_hostname_mismatch)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.host = "www.example.com";
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, -AW_ETLS_VERIFY);
	CHECK(strcasestr(c.client_msg, "hostname mismatch") != NULL);
	CHECK(strstr(c.client_msg, "www.example.com") != NULL);
}

AW_TEST(tls_wrong_ip_literal_fails_with_aw_etls_verify_ip_mismatch)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.host = "127.0.0.2";
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, -AW_ETLS_VERIFY);
	CHECK(strcasestr(c.client_msg, "IP address mismatch") != NULL);
}

AW_TEST(tls_insecure_client_connects_without_ca_and_with_any_host)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.copts = (aw_tls_opts){ .insecure_no_verify = true };
	c.host = "not-the-name";
	c.client_body = echo_client;
	c.server_body = echo_server;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, 0);
	CHECK_STR(c.got, "hello over tls\n");
}

/* ---- ALPN ---------------------------------------------------------------------------------- */

static void alpn_case(const char *client, const char *server, char *calpn, char *salpn)
{
	tls_case c = { 0 };
	default_opts(&c);
	c.copts.alpn = client;
	c.sopts.alpn = server;
	c.client_body = echo_client;
	c.server_body = echo_server;
	if (aw_run(run_case_main, &c) != 0 || c.client_rc || c.server_rc) {
		aw_test_fail(__FILE__, __LINE__, "handshake failed: %s / %s", c.client_msg, c.server_msg);
		return;
	}
	strcpy(calpn, c.client_alpn);
	strcpy(salpn, c.server_alpn);
}

AW_TEST(tls_alpn_server_picks_its_own_first_choice_that_the_client_offers)
{
	CHECK(certs_ok);
	char ca[32] = "?", sa[32] = "?";
	alpn_case("http/1.1,h2", "h2,http/1.1", ca, sa);
	CHECK_STR(ca, "h2");
	CHECK_STR(sa, "h2");
	alpn_case("h2,http/1.1", "http/1.1", ca, sa);
	CHECK_STR(ca, "http/1.1");
	CHECK_STR(sa, "http/1.1");
}

AW_TEST(tls_alpn_without_overlap_or_without_client_list_negotiates_nothing)
{
	CHECK(certs_ok);
	char ca[32] = "?", sa[32] = "?";
	alpn_case("spdy/3", "h2,http/1.1", ca, sa);
	CHECK_STR(ca, "");
	CHECK_STR(sa, "");
	alpn_case(NULL, "h2", ca, sa);
	CHECK_STR(ca, "");
	CHECK_STR(sa, "");
}

/* ---- end of stream: close_notify vs truncation ------------------------------------------------ */

static void read_to_end_client(tls_case *c)
{
	aw_time dl = aw_deadline_after(AW_SEC(10));
	char buf[64];
	size_t got = 0;
	for (;;) {
		ssize_t r = aw_stream_read(c->cs, buf, sizeof buf, dl);
		if (r <= 0) {
			c->n = r;
			if (r < 0)
				note_error(c->client_msg, sizeof c->client_msg);
			break;
		}
		if (got + (size_t)r < sizeof c->got) {
			memcpy(c->got + got, buf, (size_t)r);
			got += (size_t)r;
		}
	}
}

static void write_then_close_server(tls_case *c)
{
	EXPECT_EQ(aw_stream_write(c->ss, "last words", 10, aw_deadline_after(AW_SEC(5))), 0);
	/* server_task closes: drain, close_notify, close. */
}

AW_TEST(tls_close_sends_close_notify_and_the_peer_reads_a_clean_eof)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.client_body = read_to_end_client;
	c.server_body = write_then_close_server;
	c.n = 99;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, 0);
	CHECK_STR(c.got, "last words");
	CHECK_EQ(c.n, 0);
	CHECK_STR(c.client_msg, "");
}

static void write_then_fin_without_close_notify(tls_case *c)
{
	EXPECT_EQ(aw_stream_write(c->ss, "cut", 3, aw_deadline_after(AW_SEC(5))), 0);
	/* Below TLS: end the byte stream with no close_notify. */
	EXPECT_EQ(shutdown(aw_stream_fd(c->ss), SHUT_WR), 0);
	EXPECT_EQ(aw_sleep(AW_MS(50)), 0);
}

AW_TEST(tls_eof_without_close_notify_is_econnreset_after_the_data_arrived)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.client_body = read_to_end_client;
	c.server_body = write_then_fin_without_close_notify;
	c.n = 99;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.client_rc, 0);
	CHECK_STR(c.got, "cut");
	CHECK_EQ(c.n, -ECONNRESET);
	CHECK(strstr(c.client_msg, "without close_notify") != NULL);
}

/* ---- bulk data and backpressure ------------------------------------------------------------------- */

#define BULK_WRITES 24
#define BULK_CHUNK (70 * 1024)   /* just over the default write_buffer */

static unsigned char bulk_byte(size_t i) { return (unsigned char)(i * 131 + (i >> 9)); }

static void bulk_client(tls_case *c)
{
	aw_time dl = aw_deadline_after(AW_SEC(20));
	unsigned char *buf = malloc(BULK_CHUNK);
	size_t pos = 0;
	for (int w = 0; w < BULK_WRITES && buf; w++) {
		for (size_t i = 0; i < BULK_CHUNK; i++)
			buf[i] = bulk_byte(pos + i);
		int rc = aw_stream_write(c->cs, buf, BULK_CHUNK, dl);
		EXPECT_EQ(rc, 0);
		if (rc) {
			note_error(c->client_msg, sizeof c->client_msg);
			break;
		}
		pos += BULK_CHUNK;
		if (w % 4 == 3)
			EXPECT_EQ(aw_stream_drain(c->cs, dl), 0);
	}
	free(buf);
	EXPECT_EQ(aw_stream_shutdown(c->cs, dl), 0);
	/* Wait for the server's verdict. */
	char verdict[8] = "";
	EXPECT_EQ(aw_stream_read_exact(c->cs, verdict, 2, dl), 0);
	memcpy(c->got, verdict, 3);
}

static void bulk_server(tls_case *c)
{
	aw_time dl = aw_deadline_after(AW_SEC(20));
	char buf[3000];   /* odd size: reads straddle records */
	size_t pos = 0;
	bool ok = true;
	for (int i = 0;; i++) {
		if (i % 64 == 0)
			EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* a slow reader: the writer must wait */
		ssize_t r = aw_stream_read(c->ss, buf, sizeof buf, dl);
		if (r <= 0) {
			c->rc2 = (int)r;
			break;
		}
		for (ssize_t k = 0; k < r; k++)
			if ((unsigned char)buf[k] != bulk_byte(pos + (size_t)k))
				ok = false;
		pos += (size_t)r;
	}
	c->n = (ssize_t)pos;
	ok = ok && pos == (size_t)BULK_WRITES * BULK_CHUNK && c->rc2 == 0;
	EXPECT_EQ(aw_stream_write(c->ss, ok ? "ok" : "no", 2, dl), 0);
	EXPECT_EQ(aw_stream_drain(c->ss, dl), 0);
}

AW_TEST(tls_bulk_transfer_under_backpressure_arrives_intact_and_in_order)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.client_body = bulk_client;
	c.server_body = bulk_server;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_STR(c.client_msg, "");
	CHECK_EQ(c.client_rc, 0);
	CHECK_EQ(c.n, (ssize_t)BULK_WRITES * BULK_CHUNK);
	CHECK_EQ(c.rc2, 0);
	CHECK_STR(c.got, "ok");
}

/* ---- mutual TLS ------------------------------------------------------------------------------------- */

AW_TEST(tls_server_with_ca_file_requires_a_client_certificate)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	default_opts(&c);
	c.sopts.ca_file = ca_pem;
	c.copts.cert_file = cli_pem;
	c.copts.key_file = cli_key;
	c.client_body = echo_client;
	c.server_body = echo_server;
	CHECK_EQ(aw_run(run_case_main, &c), 0);
	CHECK_EQ(c.server_rc, 0);
	CHECK_EQ(c.client_rc, 0);
	CHECK_STR(c.got, "hello over tls\n");

	tls_case d = { 0 };
	default_opts(&d);
	d.sopts.ca_file = ca_pem;   /* and the client has no certificate */
	d.client_body = echo_client;
	d.server_body = echo_server;
	CHECK_EQ(aw_run(run_case_main, &d), 0);
	CHECK_EQ(d.server_rc, -AW_ETLS);
	CHECK(strcasestr(d.server_msg, "certificate") != NULL);
	/* TLS 1.3: the client's handshake is over before the server checks
	 * the client; it learns from the server's alert on its first read. */
	CHECK_EQ(d.rc2, -AW_ETLS);
	CHECK_STR(d.got, "");
}

/* ---- contexts ------------------------------------------------------------------------------------------ */

static int ctx_errors_main(void *arg)
{
	int *rcs = arg;
	aw_tls_ctx *ctx = NULL;
	aw_tls_opts o = { .cert_file = srv_pem, .key_file = other_key };
	rcs[0] = aw_tls_server_ctx(&ctx, &o);
	EXPECT(ctx == NULL);
	EXPECT(error_mentions("does not match"));

	o = (aw_tls_opts){ .cert_file = "/nonexistent/cert.pem", .key_file = srv_key };
	rcs[1] = aw_tls_server_ctx(&ctx, &o);
	EXPECT(error_mentions("/nonexistent/cert.pem"));

	o = (aw_tls_opts){ .cert_file = srv_pem };
	rcs[2] = aw_tls_server_ctx(&ctx, &o);

	o = (aw_tls_opts){ .alpn = "h2,,http/1.1" };
	rcs[3] = aw_tls_client_ctx(&ctx, &o);
	EXPECT(error_mentions("ALPN"));

	o = (aw_tls_opts){ .ca_file = "/nonexistent/ca.pem" };
	rcs[4] = aw_tls_client_ctx(&ctx, &o);
	EXPECT(error_mentions("/nonexistent/ca.pem"));

	/* A client context cannot serve. */
	rcs[5] = aw_tls_client_ctx(&ctx, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
		aw_stream *s;
		if (aw_stream_from_fd(&s, sv[0], NULL) == 0) {
			rcs[6] = aw_stream_tls_server(s, ctx, AW_NEVER);
			rcs[7] = aw_stream_tls_client(s, ctx, NULL, AW_NEVER);   /* verifying needs a host */
			if (aw_stream_close(s, AW_NEVER) < 0)
				aw_error_clear();   /* teardown: its failure is not under test */
		}
		close(sv[1]);
	}
	aw_tls_ctx_free(ctx);
	aw_error_clear();
	return 0;
}

AW_TEST(tls_context_errors_are_clear_and_leave_nothing_allocated)
{
	CHECK(certs_ok);
	int rcs[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	CHECK_EQ(aw_run(ctx_errors_main, rcs), 0);
	CHECK_EQ(rcs[0], -AW_ETLS);     /* key does not match the certificate */
	CHECK_EQ(rcs[1], -AW_ETLS);     /* missing file */
	CHECK_EQ(rcs[2], -EINVAL);      /* server without key */
	CHECK_EQ(rcs[3], -EINVAL);      /* empty ALPN entry */
	CHECK_EQ(rcs[4], -AW_ETLS);     /* missing CA file */
	CHECK_EQ(rcs[5], 0);
	CHECK_EQ(rcs[6], -EINVAL);      /* client context given to the server side */
	CHECK_EQ(rcs[7], -EINVAL);      /* no host name to verify */
}

/* ---- a handshake that cannot finish --------------------------------------------------------------------- */

static int silent_peer_main(void *arg)
{
	int *rc = arg;
	aw_tls_ctx *ctx = NULL;
	aw_tls_opts o = { .ca_file = ca_pem };
	if (aw_tls_client_ctx(&ctx, &o))
		return -1;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	aw_stream *s;
	EXPECT_EQ(aw_stream_from_fd(&s, sv[0], NULL), 0);
	aw_time t0 = aw_now();
	rc[0] = aw_stream_tls_client(s, ctx, "localhost", aw_deadline_after(AW_MS(50)));
	rc[1] = (int)((aw_now() - t0) / AW_MS(1));
	EXPECT(error_mentions("timed out"));
	/* The stream is unusable now, without crashing or sending plaintext. */
	rc[2] = aw_stream_write(s, "x", 1, AW_NEVER);
	aw_error_clear();
	if (aw_stream_close(s, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	close(sv[1]);
	aw_tls_ctx_free(ctx);
	aw_error_clear();
	return 0;
}

AW_TEST(tls_handshake_with_a_silent_peer_times_out_at_the_deadline)
{
	CHECK(certs_ok);
	int rc[3] = { 1, -1, 1 };
	CHECK_EQ(aw_run(silent_peer_main, rc), 0);
	CHECK_EQ(rc[0], -ETIMEDOUT);
	CHECK_GE(rc[1], 45);
	CHECK_LT(rc[1], 2000);
	CHECK_EQ(rc[2], -AW_ETLS);
}

/* ---- the transport hook's write retry rule ------------------------------------------------------------ */

/* aw__tls_send is stream.c's hook; this drives it directly, as the stream
 * would, to pin down the retry rule it promises (like send(2)'s). */
#include "../src/io/internal.h"

#define RETRY_TOTAL (600 * 1024)

static unsigned char retry_byte(size_t i) { return (unsigned char)(i * 7 + (i >> 11)); }

static int retry_reader(void *arg)
{
	tls_case *c = arg;
	if (aw_sleep(AW_MS(30)) < 0)
		return -1;   /* let the writer fill the socket first */
	char buf[5000];
	size_t pos = 0;
	bool ok = true;
	while (pos < RETRY_TOTAL) {
		ssize_t r = aw_stream_read(c->ss, buf, sizeof buf, aw_deadline_after(AW_SEC(10)));
		if (r <= 0)
			break;
		for (ssize_t k = 0; k < r; k++)
			ok = ok && (unsigned char)buf[k] == retry_byte(pos + (size_t)k);
		pos += (size_t)r;
	}
	c->n = (ssize_t)pos;
	c->rc2 = ok;
	return 0;
}

static int retry_main(void *arg)
{
	tls_case *c = arg;
	aw_tls_ctx *cctx = NULL, *sctx = NULL;
	aw_tls_opts co = { .ca_file = ca_pem }, so = { .cert_file = srv_pem, .key_file = srv_key };
	if (aw_tls_client_ctx(&cctx, &co) || aw_tls_server_ctx(&sctx, &so))
		return -1;
	server_ctx_global = sctx;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c->fds) != 0)
		return -1;
	EXPECT_EQ(aw_stream_from_fd(&c->cs, c->fds[0], NULL), 0);
	EXPECT_EQ(aw_stream_from_fd(&c->ss, c->fds[1], NULL), 0);
	/* The server task shakes hands and keeps its stream open (see
	 * hold_server_open) while the reader task reads it. */
	aw_task *srv;
	EXPECT_EQ(aw_spawn(&srv, server_task, c, "tls-server"), 0);
	EXPECT_EQ(aw_stream_tls_client(c->cs, cctx, "localhost", aw_deadline_after(AW_SEC(10))), 0);
	unsigned char *all = malloc(RETRY_TOTAL);
	for (size_t i = 0; all && i < RETRY_TOTAL; i++)
		all[i] = retry_byte(i);
	size_t pos = 0;
	int shorter = 0, mismatch_checked = 0, credited = 0;
	aw_task *rd = NULL;
	while (all && pos < RETRY_TOTAL) {
		size_t n = RETRY_TOTAL - pos < 40000 ? RETRY_TOTAL - pos : 40000;
		int want = 0;
		ssize_t r = aw__tls_send(c->cs, all + pos, n, &want);
		if (r == -EAGAIN) {
			if (!rd)
				EXPECT_EQ(aw_spawn(&rd, retry_reader, c, "reader"), 0);
			if (!mismatch_checked) {
				/* Other bytes than the blocked ones: refused. */
				unsigned char other[100];
				memset(other, 0x5a, sizeof other);
				EXPECT_EQ(aw__tls_send(c->cs, other, sizeof other, &want), -EINVAL);
				aw_error_clear();
				mismatch_checked = 1;
			}
			EXPECT_EQ(aw_fd_wait(aw_stream_fd(c->cs), want, aw_deadline_after(AW_SEC(10))), 0);
			/* Retry shorter than the blocked record, as a stream that
			 * chose to send part of it directly would. */
			if (shorter < 3) {
				shorter++;
				n = 1000;
			}
			r = aw__tls_send(c->cs, all + pos, n, &want);
			if (r == -EAGAIN)
				continue;
			if (r == 1000) {
				/* The record went out whole: the next 15384 bytes are
				 * acknowledged without being sent again. */
				ssize_t k = aw__tls_send(c->cs, all + pos + 1000, 40000, &want);
				EXPECT(k > 0);
				if (k > 0) {
					credited++;
					r += k;
				}
			}
		}
		EXPECT(r > 0);
		if (r <= 0)
			break;
		pos += (size_t)r;
	}
	c->rc1 = credited;
	if (!rd)
		EXPECT_EQ(aw_spawn(&rd, retry_reader, c, "reader"), 0);
	EXPECT_EQ(aw_task_join(rd), 0);
	free(all);
	EXPECT_EQ(aw_task_join(srv), 0);   /* it closes its stream */
	if (aw_stream_close(c->cs, aw_deadline_after(AW_SEC(5))) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	aw_error_clear();
	aw_tls_ctx_free(cctx);
	aw_tls_ctx_free(sctx);
	return 0;
}

/* Keep the server stream open until the reader has read it all. */
static void hold_server_open(tls_case *c)
{
	while (c->n == 0)
		if (aw_sleep(AW_MS(5)) < 0)
			return;
}

AW_TEST(tls_send_hook_accepts_shorter_and_moved_retries_like_send_and_refuses_other_bytes)
{
	CHECK(certs_ok);
	tls_case c = { 0 };
	c.server_body = hold_server_open;
	CHECK_EQ(aw_run(retry_main, &c), 0);
	CHECK_EQ(c.n, RETRY_TOTAL);
	CHECK_EQ(c.rc2, 1);       /* every byte, in order, once */
	CHECK_GE(c.rc1, 1);       /* the acknowledged-without-resend path ran */
}
