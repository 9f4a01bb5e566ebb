/* SPDX-License-Identifier: MIT */
/* Tests: TCP and Unix sockets over loopback (src/io/socket.c). */
#include "harness.h"

#include "awith/io.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
	aw_listener *l;
	const char *host;
	char path[108];
	int clients, served;
	int rc[8];
	char reply[64];
} echo_ctx;

/* Echo one line back per connection, for `clients` connections. */
static int echo_server(void *arg)
{
	echo_ctx *c = arg;
	aw_stream *conn;
	AW_FOR(conn, aw_listener_iter(c->l)) {
		AW_WITH(aw_stream_mgr(conn)) {
			const char *line;
			size_t len;
			if (aw_stream_read_line(conn, 1024, &line, &len, AW_NEVER) == 0)
				EXPECT_EQ(aw_stream_write(conn, line, len, AW_NEVER), 0);
		}
		if (++c->served == c->clients)
			break;
	}
	return 0;
}

static int ask(aw_stream *s, const char *q, char *out, size_t outlen)
{
	int rc = aw_stream_write(s, q, strlen(q), AW_NEVER);
	if (rc)
		return rc;
	const char *line;
	size_t len;
	rc = aw_stream_read_line(s, 1024, &line, &len, aw_deadline_after(AW_SEC(5)));
	if (rc)
		return rc;
	snprintf(out, outlen, "%.*s", (int)len, line);
	return 0;
}

static int tcp_echo_main(void *arg)
{
	echo_ctx *c = arg;
	c->clients = 2;
	c->rc[0] = aw_tcp_listen(&c->l, c->host, 0, NULL);
	if (c->rc[0])
		return c->rc[0];
	int port = aw_listener_port(c->l);
	aw_task *srv;
	if (aw_spawn(&srv, echo_server, c, "server"))
		return -1;
	/* Manual API ... */
	aw_stream *s;
	c->rc[1] = aw_tcp_connect(&s, c->host, port, aw_deadline_after(AW_SEC(5)));
	if (!c->rc[1]) {
		c->rc[2] = ask(s, "ping\n", c->reply, sizeof c->reply);
		if (aw_stream_close(s, AW_NEVER) < 0)
			aw_error_clear();   /* teardown: its failure is not under test */
	}
	/* ... and the connection manager. */
	aw_connection conn;
	char second[64] = "";
	AW_WITH(aw_tcp_connection_init(&conn, c->host, port, aw_deadline_after(AW_SEC(5)))) {
		c->rc[3] = ask(conn.stream, "again\n", second, sizeof second);
	}
	if (aw_error_pending() || c->rc[1] || c->rc[2] || c->rc[3])
		aw_task_cancel(srv);   /* a client failed: the server would wait for it forever */
	aw_error_clear();
	c->rc[4] = aw_task_join(srv);
	aw_listener_close(c->l);
	strcat(c->reply, second);
	return 0;
}

AW_TEST(tcp_echo_over_ipv4_loopback_with_the_accept_iterator)
{
	echo_ctx c = { .host = "127.0.0.1" };
	CHECK_EQ(aw_run(tcp_echo_main, &c), 0);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(c.rc[i], 0);
	CHECK_STR(c.reply, "ping\nagain\n");
	CHECK_EQ(c.served, 2);
}

AW_TEST(tcp_echo_over_ipv6_loopback)
{
	echo_ctx c = { .host = "::1" };
	CHECK_EQ(aw_run(tcp_echo_main, &c), 0);
	if (c.rc[0] == -EADDRNOTAVAIL || c.rc[0] == -EAFNOSUPPORT)
		return;   /* no IPv6 on this machine */
	for (int i = 0; i < 5; i++)
		CHECK_EQ(c.rc[i], 0);
	CHECK_STR(c.reply, "ping\nagain\n");
}

AW_TEST(tcp_connect_by_host_name_localhost)
{
	echo_ctx c = { .host = "localhost" };
	CHECK_EQ(aw_run(tcp_echo_main, &c), 0);
	for (int i = 0; i < 5; i++)
		CHECK_EQ(c.rc[i], 0);
	CHECK_STR(c.reply, "ping\nagain\n");
}

static int unix_echo_main(void *arg)
{
	echo_ctx *c = arg;
	c->clients = 1;
	c->rc[0] = aw_unix_listen(&c->l, c->path, NULL);
	if (c->rc[0])
		return c->rc[0];
	aw_task *srv;
	if (aw_spawn(&srv, echo_server, c, "server"))
		return -1;
	aw_connection conn;
	AW_WITH(aw_unix_connection_init(&conn, c->path, aw_deadline_after(AW_SEC(5)))) {
		c->rc[1] = ask(conn.stream, "unix\n", c->reply, sizeof c->reply);
	}
	c->rc[2] = aw_task_join(srv);
	aw_listener_close(c->l);
	struct stat st;
	c->rc[3] = stat(c->path, &st) == 0;   /* removed at close */
	return 0;
}

AW_TEST(unix_socket_echo_and_the_socket_file_is_removed_at_close)
{
	echo_ctx c = { 0 };
	snprintf(c.path, sizeof c.path, "/tmp/awith-test-%d.sock", (int)getpid());
	CHECK_EQ(aw_run(unix_echo_main, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 0);
	CHECK_EQ(c.rc[2], 0);
	CHECK_EQ(c.rc[3], 0);
	CHECK_STR(c.reply, "unix\n");
}

static int refused_main(void *arg)
{
	echo_ctx *c = arg;
	/* Find a port nobody listens on: listen, note the port, close. */
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	int port = aw_listener_port(l);
	aw_listener_close(l);
	aw_stream *s;
	c->rc[0] = aw_tcp_connect(&s, "127.0.0.1", port, aw_deadline_after(AW_SEC(5)));
	const aw_error *e = aw_error_current();
	c->rc[1] = e && strstr(e->msg, "127.0.0.1") && strstr(e->msg, "refused");
	c->rc[2] = s == NULL;
	/* An unresolvable name is its own error. */
	c->rc[3] = aw_tcp_connect(&s, "no-such-host.invalid", 80, aw_deadline_after(AW_SEC(10)));
	c->rc[4] = aw_unix_connect(&s, "/nonexistent/awith.sock", AW_NEVER);
	return 0;
}

AW_TEST(connection_refused_unresolvable_and_missing_unix_path_are_distinct_errors)
{
	echo_ctx c = { 0 };
	CHECK_EQ(aw_run(refused_main, &c), 0);
	CHECK_EQ(c.rc[0], -ECONNREFUSED);
	CHECK_EQ(c.rc[1], 1);
	CHECK_EQ(c.rc[2], 1);
	CHECK_EQ(c.rc[3], -AW_EDNS);
	CHECK_EQ(c.rc[4], -ENOENT);
}

static int inuse_main(void *arg)
{
	echo_ctx *c = arg;
	aw_listener *a, *b;
	if (aw_tcp_listen(&a, "127.0.0.1", 0, NULL))
		return -1;
	c->rc[0] = aw_tcp_listen(&b, "127.0.0.1", aw_listener_port(a), NULL);
	aw_listener_close(a);
	/* SO_REUSEPORT lets two listeners share a port. */
	aw_listen_opts o = { .reuseport = true };
	if (aw_tcp_listen(&a, "127.0.0.1", 0, &o))
		return -1;
	c->rc[1] = aw_tcp_listen(&b, "127.0.0.1", aw_listener_port(a), &o);
	if (!c->rc[1])
		aw_listener_close(b);
	aw_listener_close(a);
	return 0;
}

AW_TEST(listening_on_a_used_port_is_eaddrinuse_unless_both_use_reuseport)
{
	echo_ctx c = { 0 };
	CHECK_EQ(aw_run(inuse_main, &c), 0);
	CHECK_EQ(c.rc[0], -EADDRINUSE);
	CHECK_EQ(c.rc[1], 0);
}

static int accept_deadline_main(void *arg)
{
	echo_ctx *c = arg;
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	AW_WITH(aw_listener_mgr(l)) {
		aw_stream *s;
		c->rc[0] = aw_listener_accept(l, &s, aw_deadline_after(AW_MS(20)));
	}
	return 0;
}

AW_TEST(accept_with_a_deadline_and_no_client_is_etimedout_and_the_manager_closes_the_listener)
{
	echo_ctx c = { 0 };
	CHECK_EQ(aw_run(accept_deadline_main, &c), 0);
	CHECK_EQ(c.rc[0], -ETIMEDOUT);
}

static int reset_server(void *arg)
{
	echo_ctx *c = arg;
	aw_stream *s;
	if (aw_listener_accept(c->l, &s, AW_NEVER))
		return -1;
	/* SO_LINGER 0: close sends RST instead of FIN. */
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(aw_stream_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	if (aw_stream_close(s, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	return 0;
}

static int reset_main(void *arg)
{
	echo_ctx *c = arg;
	if (aw_tcp_listen(&c->l, "127.0.0.1", 0, NULL))
		return -1;
	/* Connect first (the kernel completes it from the backlog), then let
	 * the server accept and reset it. */
	aw_stream *s;
	if (aw_tcp_connect(&s, "127.0.0.1", aw_listener_port(c->l), AW_NEVER))
		return -1;
	aw_task *srv;
	if (aw_spawn(&srv, reset_server, c, "server"))
		return -1;
	EXPECT_EQ(aw_task_join(srv), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	char buf[16];
	c->rc[0] = (int)aw_stream_read(s, buf, sizeof buf, aw_deadline_after(AW_SEC(5)));
	if (aw_stream_close(s, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	aw_listener_close(c->l);
	return 0;
}

AW_TEST(connection_reset_by_the_peer_is_econnreset)
{
	echo_ctx c = { 0 };
	CHECK_EQ(aw_run(reset_main, &c), 0);
	CHECK_EQ(c.rc[0], -ECONNRESET);
}

/* Many concurrent clients against one accept loop. */
typedef struct {
	echo_ctx e;
	int port, ok;
} many_ctx;

static int many_client(void *arg)
{
	many_ctx *m = arg;
	aw_connection conn;
	char reply[32];
	int rc = 0;
	AW_WITH(aw_tcp_connection_init(&conn, "127.0.0.1", m->port, aw_deadline_after(AW_SEC(10)))) {
		rc = ask(conn.stream, "hi\n", reply, sizeof reply);
		if (!rc && strcmp(reply, "hi\n") == 0)
			m->ok++;
	}
	return rc ? rc : aw_error_pending();
}

static int conn_handler(void *arg)
{
	aw_stream *conn = arg;
	AW_WITH(aw_stream_mgr(conn)) {
		const char *line;
		size_t len;
		if (aw_stream_read_line(conn, 1024, &line, &len, AW_NEVER) == 0)
			EXPECT_EQ(aw_stream_write(conn, line, len, AW_NEVER), 0);
	}
	return 0;
}

static int many_server(void *arg)
{
	many_ctx *m = arg;
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < m->e.clients; i++) {
			aw_stream *conn;
			if (aw_listener_accept(m->e.l, &conn, AW_NEVER))
				break;
			if (aw_group_spawn(&g, conn_handler, conn, "conn")) {
				if (aw_stream_close(conn, AW_NEVER) < 0)
					aw_error_clear();   /* teardown: its failure is not under test */
				break;
			}
		}
	}
	return aw_error_pending();
}

static int many_main(void *arg)
{
	many_ctx *m = arg;
	m->e.clients = 200;
	if (aw_tcp_listen(&m->e.l, "127.0.0.1", 0, NULL))
		return -1;
	m->port = aw_listener_port(m->e.l);
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		if (aw_group_spawn(&g, many_server, m, "server"))
			break;
		for (int i = 0; i < m->e.clients; i++)
			if (aw_group_spawn(&g, many_client, m, "client"))
				break;
	}
	m->e.rc[0] = aw_error_pending();
	aw_listener_close(m->e.l);
	return 0;
}

AW_TEST(two_hundred_concurrent_clients_are_served_and_no_fd_leaks)
{
	many_ctx m = { 0 };
	CHECK_EQ(aw_run(many_main, &m), 0);
	CHECK_EQ(m.e.rc[0], 0);
	CHECK_EQ(m.ok, 200);
}
