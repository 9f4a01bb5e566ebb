/* SPDX-License-Identifier: MIT */
/* WebSocket (RFC 6455) routes: raw frames over real sockets against a
 * server in a child process. The handshake and its errors, masking,
 * fragments, UTF-8, sizes, ping/pong and the idle timeout, the close
 * handshake both ways, backpressure, origins, subprotocols, and the 1001
 * of a server shutdown. The app uses short timers so the tests run fast. */
#include "harness.h"
#include "http_util.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the server ------------------------------------------------------------------ */

static int h_echo(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	aw_ws_msg *msg;
	AW_WITH(aw_ws_mgr(ws)) {
		AW_FOR(msg, aw_ws_messages(ws)) {
			if (aw_ws_send(ws, msg->type, msg->data, msg->len) < 0)
				break;
		}
	}
	return aw_error_pending();
}

/* Says which subprotocol was chosen and the path parameter, then echoes. */
static int h_info(aw_ws *ws, aw_http_request *req, void *ud)
{
	char line[200];
	snprintf(line, sizeof line, "proto=%s name=%s", aw_ws_protocol(ws) ? aw_ws_protocol(ws) : "-",
		 aw_http_param(req, "name"));
	int rc = aw_ws_send_text(ws, line);
	if (rc < 0)
		return rc;
	return h_echo(ws, req, ud);
}

/* Sends "bye" and closes with 4001 (server-initiated close handshake). */
static int h_closer(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	int rc = aw_ws_send_text(ws, "bye");
	if (rc < 0)
		return rc;
	aw_time t0 = aw_now();
	rc = aw_ws_close(ws, 4001, "done here");
	if (rc < 0)
		return rc;
	/* The handshake's outcome, for the client to read in the log. */
	fprintf(stderr, "closer: code=%d by_peer=%d waited_ms=%lld\n", aw_ws_close_code(ws), aw_ws_closed_by_peer(ws),
		(long long)((aw_now() - t0) / 1000000));
	return 0;
}

/* Sends 64 KiB messages as fast as the client reads them; says in the log
 * how the sending ended. */
static int h_flood(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	static char big[64 * 1024];
	memset(big, 'x', sizeof big);
	aw_time t0 = aw_now();
	int n = 0, rc;
	while ((rc = aw_ws_send(ws, AW_WS_BINARY, big, sizeof big)) == 0)
		n++;
	fprintf(stderr, "flood: rc=%d sent=%d ms=%lld code=%d\n", rc, n, (long long)((aw_now() - t0) / 1000000),
		aw_ws_close_code(ws));
	return rc;
}

/* Echoes, and fails on "fail": the socket is closed with 1011. */
static int h_fails(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	aw_ws_msg *msg;
	AW_WITH(aw_ws_mgr(ws)) {
		AW_FOR(msg, aw_ws_messages(ws)) {
			if (strcmp(msg->data, "fail") == 0) {
				(void)!aw_raise(-EIO, "the handler failed on purpose");
				break;
			}
			if (aw_ws_send(ws, msg->type, msg->data, msg->len) < 0)
				break;
		}
	}
	return aw_error_pending();
}

/* aw_ws_recv with a deadline: "tick" each time 150 ms pass without a
 * message, an echo otherwise. */
static int h_ticks(aw_ws *ws, aw_http_request *req, void *ud)
{
	(void)req, (void)ud;
	AW_WITH(aw_ws_mgr(ws)) {
		for (;;) {
			aw_ws_msg *msg;
			int rc = aw_ws_recv(ws, &msg, aw_deadline_after(AW_MS(150)));
			if (rc == -ETIMEDOUT) {
				aw_error_clear();
				if (aw_ws_send_text(ws, "tick") < 0)
					break;
				continue;
			}
			if (rc <= 0)
				break;
			if (aw_ws_send(ws, msg->type, msg->data, msg->len) < 0)
				break;
		}
	}
	return aw_error_pending();
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "ws") < 0)
		abort();
	static const char *const protos[] = { "chat.v2", "chat", NULL };
	aw_ws_opts o = {
		.max_message = 1000,
		.max_frame = 600,
		.ping_interval = AW_MS(200),
		.idle_timeout = AW_MS(700),
		.close_timeout = AW_MS(500),
		.send_timeout = AW_MS(500),
		.protocols = protos,
	};
	EXPECT_EQ(aw_app_ws(app, "/echo", h_echo, NULL, &o), 0);
	EXPECT_EQ(aw_app_ws(app, "/info/{name}", h_info, NULL, &o), 0);
	EXPECT_EQ(aw_app_ws(app, "/closer", h_closer, NULL, &o), 0);
	EXPECT_EQ(aw_app_ws(app, "/flood", h_flood, NULL, &o), 0);
	EXPECT_EQ(aw_app_ws(app, "/fails", h_fails, NULL, &o), 0);
	aw_ws_opts quiet = o;   /* no pings in the way */
	quiet.ping_interval = AW_SEC(10);
	quiet.idle_timeout = AW_SEC(30);
	EXPECT_EQ(aw_app_ws(app, "/ticks", h_ticks, NULL, &quiet), 0);
	aw_ws_opts t = o;
	t.accept = AW_WS_TEXT;
	EXPECT_EQ(aw_app_ws(app, "/text", h_echo, NULL, &t), 0);
	static const char *const origins[] = { "https://good.example", NULL };
	aw_ws_opts g = o;
	g.origins = origins;
	EXPECT_EQ(aw_app_ws(app, "/origin", h_echo, NULL, &g), 0);
	aw_ws_opts r = o;
	r.require_protocol = true;
	EXPECT_EQ(aw_app_ws(app, "/strict", h_echo, NULL, &r), 0);
	aw_app_limits(app)->shutdown_grace = AW_SEC(3);
	return app;
}

/* The same app with the access log (to the log file) and metrics on. */
static aw_app *make_app_observed(void)
{
	aw_app *app = make_app();
	aw_app_access_log(app, stderr);
	EXPECT_EQ(aw_app_metrics(app, "/metrics"), 0);
	return app;
}

#define START(s)                                                                   \
	srv s;                                                                     \
	CHECK_EQ(srv_start(&s, make_app), 0)
#define STOP(s) CHECK_EQ(srv_stop(&s), 0)

/* ---- a raw client ------------------------------------------------------------------- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   /* RFC 6455 1.3 */

/* Read a response head (up to the blank line). Returns the status, -1. */
static int read_head(int fd, char *head, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, head + n, 1);
		if (r <= 0)
			return -1;
		n++;
		if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0)
			break;
	}
	head[n] = 0;
	int st = -1;
	if (sscanf(head, "HTTP/1.1 %d", &st) != 1)
		return -1;
	return st;
}

static bool head_has(const char *head, const char *line)
{
	return strcasestr(head, line) != NULL;
}

/* Open path with the usual headers plus `extra` (CRLF-terminated lines).
 * Returns the fd (status in *st, head in head) or -1. */
static int ws_open(int port, const char *path, const char *extra, int *st, char *head, size_t cap)
{
	int fd = cli_connect(port);
	if (fd < 0)
		return -1;
	char req[2048];
	snprintf(req, sizeof req,
		 "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		 path, port, extra ? extra : "");
	if (cli_sends(fd, req)) {
		close(fd);
		return -1;
	}
	*st = read_head(fd, head, cap);
	return fd;
}

static int ws_connect(int port, const char *path)
{
	char head[2048];
	int st;
	int fd = ws_open(port, path, NULL, &st, head, sizeof head);
	if (fd >= 0 && st != 101) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One frame; masked unless `unmasked`. */
static int send_frame_x(int fd, int b0, const void *p, size_t n, bool unmasked)
{
	unsigned char h[14];
	size_t hl = 2;
	h[0] = (unsigned char)b0;
	unsigned char mbit = unmasked ? 0 : 0x80;
	if (n < 126) {
		h[1] = (unsigned char)(mbit | n);
	} else if (n <= 0xFFFF) {
		h[1] = mbit | 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = mbit | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
		hl = 10;
	}
	static const unsigned char mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	if (!unmasked) {
		memcpy(h + hl, mask, 4);
		hl += 4;
	}
	unsigned char *buf = malloc(hl + n + 1);
	memcpy(buf, h, hl);
	for (size_t i = 0; i < n; i++)
		buf[hl + i] = ((const unsigned char *)p)[i] ^ (unmasked ? 0 : mask[i & 3]);
	int rc = cli_send(fd, buf, hl + n);
	free(buf);
	return rc;
}

static int send_frame(int fd, int b0, const void *p, size_t n)
{
	return send_frame_x(fd, b0, p, n, false);
}

static int send_text(int fd, const char *s)
{
	return send_frame(fd, 0x81, s, strlen(s));
}

static int send_close(int fd, int code, const char *reason)
{
	char p[128] = { 0 };
	size_t n = 0;
	if (code) {
		p[0] = (char)(code >> 8);
		p[1] = (char)code;
		n = 2;
		if (reason) {
			memcpy(p + 2, reason, strlen(reason));
			n += strlen(reason);
		}
	}
	return send_frame(fd, 0x88, p, n);
}

typedef struct frame {
	int op;
	bool fin;
	bool masked;
	size_t len;
	char *data;   /* malloc'd, NUL-terminated */
} frame;

static bool read_full(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)buf + got, n - got);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

/* Read one frame (5 s timeout via the socket). false at EOF/timeout. */
static bool recv_frame(int fd, frame *f)
{
	unsigned char h[8];
	memset(f, 0, sizeof *f);
	if (!read_full(fd, h, 2))
		return false;
	f->op = h[0] & 0x0F;
	f->fin = h[0] & 0x80;
	f->masked = h[1] & 0x80;
	size_t len = h[1] & 0x7F;
	if (len == 126) {
		if (!read_full(fd, h, 2))
			return false;
		len = (size_t)h[0] << 8 | h[1];
	} else if (len == 127) {
		if (!read_full(fd, h, 8))
			return false;
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | h[i];
	}
	f->len = len;
	f->data = malloc(len + 1);
	if (!read_full(fd, f->data, len)) {
		free(f->data);
		f->data = NULL;
		return false;
	}
	f->data[len] = 0;
	return true;
}

/* The close code of the next frame (which must be a close), or -1. */
static int recv_close_code(int fd)
{
	frame f;
	if (!recv_frame(fd, &f))
		return -1;
	int code = f.op == 8 ? (f.len >= 2 ? ((unsigned char)f.data[0] << 8 | (unsigned char)f.data[1]) : 1005) : -f.op - 100;
	free(f.data);
	return code;
}

/* Expect a text or binary frame with exactly `want`. */
static bool recv_is(int fd, int op, const char *want, size_t n)
{
	frame f;
	if (!recv_frame(fd, &f))
		return false;
	bool ok = f.op == op && f.fin && !f.masked && f.len == n && memcmp(f.data, want, n) == 0;
	if (!ok)
		aw_test_fail(__FILE__, __LINE__, "got op %d len %zu (%.40s), wanted op %d len %zu", f.op, f.len,
			     f.data ? f.data : "", op, n);
	free(f.data);
	return ok;
}

/* The fd is closed by the server within ms. */
static bool eof_within(int fd, int ms)
{
	return cli_closed(fd, ms);
}

/* ---- the handshake ------------------------------------------------------------------- */

AW_TEST(handshake_answers_101_with_the_rfc_accept_key)
{
	START(s);
	char head[2048];
	int st;
	int fd = ws_open(s.port, "/echo", NULL, &st, head, sizeof head);
	CHECK(fd >= 0);
	CHECK_EQ(st, 101);
	CHECK(head_has(head, "Sec-WebSocket-Accept: " KEY_ACCEPT "\r\n"));
	CHECK(head_has(head, "Upgrade: websocket\r\n"));
	CHECK(head_has(head, "Connection: Upgrade\r\n"));
	CHECK(!head_has(head, "Sec-WebSocket-Protocol"));
	CHECK_EQ(send_text(fd, "hello"), 0);
	CHECK(recv_is(fd, 1, "hello", 5));
	close(fd);
	STOP(s);
}

AW_TEST(handshake_errors_are_http_answers_without_upgrade)
{
	START(s);
	resp r;
	bool closed;
	/* a plain GET on a WebSocket route: 426 with Upgrade */
	const char *plain = "GET /echo HTTP/1.1\r\nHost: a\r\n\r\n";
	CHECK_EQ(http_once(s.port, plain, strlen(plain), &r, &closed), 426);
	char v[64];
	CHECK(resp_header(&r, "Sec-WebSocket-Version", v, sizeof v) && strcmp(v, "13") == 0);
	CHECK(resp_header(&r, "Upgrade", v, sizeof v) && strcmp(v, "websocket") == 0);
	resp_free(&r);
	/* another version */
	const char *v8 = "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n";
	CHECK_EQ(http_once(s.port, v8, strlen(v8), &r, &closed), 426);
	CHECK(resp_header(&r, "Sec-WebSocket-Version", v, sizeof v) && strcmp(v, "13") == 0);
	resp_free(&r);
	/* a key that is not 16 bytes of base64 */
	const char *badkey = "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			     "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n";
	CHECK_EQ(http_once(s.port, badkey, strlen(badkey), &r, &closed), 400);
	resp_free(&r);
	const char *nokey = "GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			    "Sec-WebSocket-Version: 13\r\n\r\n";
	CHECK_EQ(http_once(s.port, nokey, strlen(nokey), &r, &closed), 400);
	resp_free(&r);
	/* HTTP/1.0 */
	const char *h10 = "GET /echo HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			  "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
	CHECK_EQ(http_once(s.port, h10, strlen(h10), &r, &closed), 400);
	resp_free(&r);
	/* POST: only GET upgrades */
	const char *post = "POST /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			   "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n";
	CHECK_EQ(http_once(s.port, post, strlen(post), &r, &closed), 405);
	resp_free(&r);
	const char *head = "HEAD /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			   "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
	int fd0 = cli_connect(s.port);
	CHECK(fd0 >= 0);
	CHECK_EQ(cli_sends(fd0, head), 0);
	CHECK_EQ(cli_read(fd0, &r, true), 0);
	CHECK_EQ(r.status, 400);
	resp_free(&r);
	close(fd0);
	/* the server still upgrades a good one */
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	close(fd);
	STOP(s);
}

AW_TEST(origin_is_checked_before_the_upgrade)
{
	START(s);
	char head[2048];
	int st;
	/* the allow list */
	int fd = ws_open(s.port, "/origin", "Origin: https://evil.example\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 403);
	CHECK(!head_has(head, "Sec-WebSocket-Accept"));
	close(fd);
	fd = ws_open(s.port, "/origin", "Origin: https://GOOD.example\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 101);
	close(fd);
	fd = ws_open(s.port, "/origin", NULL, &st, head, sizeof head);
	CHECK_EQ(st, 403);   /* a list: no Origin is not on it */
	close(fd);
	/* the default: same origin as Host, or no Origin */
	fd = ws_open(s.port, "/echo", "Origin: http://other.example:1234\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 403);
	close(fd);
	char same[128];
	snprintf(same, sizeof same, "Origin: http://127.0.0.1:%d\r\n", s.port);
	fd = ws_open(s.port, "/echo", same, &st, head, sizeof head);
	CHECK_EQ(st, 101);
	close(fd);
	fd = ws_open(s.port, "/echo", "Origin: null\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 403);
	close(fd);
	STOP(s);
}

AW_TEST(subprotocol_is_the_servers_first_choice_the_client_offers)
{
	START(s);
	char head[2048];
	int st;
	int fd = ws_open(s.port, "/info/ann", "Sec-WebSocket-Protocol: chat, chat.v2\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 101);
	CHECK(head_has(head, "Sec-WebSocket-Protocol: chat.v2\r\n"));
	CHECK(recv_is(fd, 1, "proto=chat.v2 name=ann", 22));
	close(fd);
	/* repeated headers count too */
	fd = ws_open(s.port, "/info/bob", "Sec-WebSocket-Protocol: x\r\nSec-WebSocket-Protocol: chat\r\n", &st, head,
		     sizeof head);
	CHECK_EQ(st, 101);
	CHECK(head_has(head, "Sec-WebSocket-Protocol: chat\r\n"));
	CHECK(recv_is(fd, 1, "proto=chat name=bob", 19));
	close(fd);
	/* nothing in common: upgraded without a protocol */
	fd = ws_open(s.port, "/info/cy", "Sec-WebSocket-Protocol: mqtt\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 101);
	CHECK(!head_has(head, "Sec-WebSocket-Protocol"));
	CHECK(recv_is(fd, 1, "proto=- name=cy", 15));
	close(fd);
	/* ... unless the route requires one */
	fd = ws_open(s.port, "/strict", "Sec-WebSocket-Protocol: mqtt\r\n", &st, head, sizeof head);
	CHECK_EQ(st, 400);
	close(fd);
	STOP(s);
}

/* ---- frames -------------------------------------------------------------------------- */

AW_TEST(text_and_binary_echo_with_every_length_encoding)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, ""), 0);
	CHECK(recv_is(fd, 1, "", 0));
	char bin[300];
	for (int i = 0; i < 300; i++)
		bin[i] = (char)i;
	CHECK_EQ(send_frame(fd, 0x82, bin, 125), 0);
	CHECK(recv_is(fd, 2, bin, 125));
	CHECK_EQ(send_frame(fd, 0x82, bin, 300), 0);   /* 16-bit length */
	CHECK(recv_is(fd, 2, bin, 300));
	CHECK_EQ(send_text(fd, "h\xc3\xa9llo \xf0\x9f\x98\x80"), 0);
	CHECK(recv_is(fd, 1, "h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
	/* two frames in one write */
	unsigned char two[] = { 0x81, 0x82, 0, 0, 0, 0, 'h', 'i', 0x81, 0x81, 1, 1, 1, 1, 'x' ^ 1 };
	CHECK_EQ(cli_send(fd, two, sizeof two), 0);
	CHECK(recv_is(fd, 1, "hi", 2));
	CHECK(recv_is(fd, 1, "x", 1));
	close(fd);
	STOP(s);
}

AW_TEST(unmasked_client_frame_is_closed_with_1002)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame_x(fd, 0x81, "hi", 2, true), 0);
	CHECK_EQ(recv_close_code(fd), 1002);
	CHECK(eof_within(fd, 2000));
	close(fd);
	STOP(s);
}

AW_TEST(fragments_are_assembled_with_control_frames_between)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame(fd, 0x01, "Hel", 3), 0);
	CHECK_EQ(send_frame(fd, 0x89, "p1", 2), 0);   /* ping in the middle */
	CHECK(recv_is(fd, 10, "p1", 2));              /* pong, same payload */
	CHECK_EQ(send_frame(fd, 0x00, "lo ", 3), 0);
	/* a UTF-8 sequence split across two fragments */
	CHECK_EQ(send_frame(fd, 0x00, "w\xc3", 2), 0);
	CHECK_EQ(send_frame(fd, 0x80, "\xb6rld", 4), 0);
	CHECK(recv_is(fd, 1, "Hello w\xc3\xb6rld", 12));
	/* binary in fragments */
	CHECK_EQ(send_frame(fd, 0x02, "ab", 2), 0);
	CHECK_EQ(send_frame(fd, 0x80, "cd", 2), 0);
	CHECK(recv_is(fd, 2, "abcd", 4));
	close(fd);
	STOP(s);
}

/* Each violation on a fresh socket: the close code that comes back. */
static int violation(int port, const void *raw, size_t n)
{
	int fd = ws_connect(port, "/echo");
	if (fd < 0)
		return -1;
	int code = cli_send(fd, raw, n) ? -1 : recv_close_code(fd);
	if (!eof_within(fd, 2000))
		code = -2;
	close(fd);
	return code;
}

AW_TEST(protocol_violations_close_with_1002)
{
	START(s);
	/* a continuation without a message */
	unsigned char cont[] = { 0x80, 0x81, 0, 0, 0, 0, 'x' };
	CHECK_EQ(violation(s.port, cont, sizeof cont), 1002);
	/* a new message inside a fragmented one */
	unsigned char inside[] = { 0x01, 0x81, 0, 0, 0, 0, 'a', 0x81, 0x81, 0, 0, 0, 0, 'b' };
	CHECK_EQ(violation(s.port, inside, sizeof inside), 1002);
	/* reserved bits (no extension was negotiated) */
	unsigned char rsv[] = { 0xC1, 0x81, 0, 0, 0, 0, 'x' };
	CHECK_EQ(violation(s.port, rsv, sizeof rsv), 1002);
	/* unknown opcodes, data and control */
	unsigned char op3[] = { 0x83, 0x80, 0, 0, 0, 0 };
	CHECK_EQ(violation(s.port, op3, sizeof op3), 1002);
	unsigned char opb[] = { 0x8B, 0x80, 0, 0, 0, 0 };
	CHECK_EQ(violation(s.port, opb, sizeof opb), 1002);
	/* a fragmented ping, a ping over 125 bytes */
	unsigned char fping[] = { 0x09, 0x80, 0, 0, 0, 0 };
	CHECK_EQ(violation(s.port, fping, sizeof fping), 1002);
	unsigned char bigping[4 + 4 + 126] = { 0x89, 0xFE, 0, 126, 0, 0, 0, 0 };
	CHECK_EQ(violation(s.port, bigping, sizeof bigping), 1002);
	/* close codes one may not send, a close of one byte */
	unsigned char c1005[] = { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xED };
	CHECK_EQ(violation(s.port, c1005, sizeof c1005), 1002);
	unsigned char c999[] = { 0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE7 };
	CHECK_EQ(violation(s.port, c999, sizeof c999), 1002);
	unsigned char c1[] = { 0x88, 0x81, 0, 0, 0, 0, 0x03 };
	CHECK_EQ(violation(s.port, c1, sizeof c1), 1002);
	/* the server still serves */
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, "ok"), 0);
	CHECK(recv_is(fd, 1, "ok", 2));
	close(fd);
	STOP(s);
}

AW_TEST(invalid_utf8_text_is_closed_with_1007)
{
	START(s);
	unsigned char bad[] = { 0x81, 0x82, 0, 0, 0, 0, 0xC3, 0x28 };
	CHECK_EQ(violation(s.port, bad, sizeof bad), 1007);
	/* a surrogate (CESU), an overlong '/' */
	unsigned char sur[] = { 0x81, 0x83, 0, 0, 0, 0, 0xED, 0xA0, 0x80 };
	CHECK_EQ(violation(s.port, sur, sizeof sur), 1007);
	unsigned char over[] = { 0x81, 0x82, 0, 0, 0, 0, 0xC0, 0xAF };
	CHECK_EQ(violation(s.port, over, sizeof over), 1007);
	/* a message that ends inside a sequence */
	unsigned char cut[] = { 0x01, 0x81, 0, 0, 0, 0, 0xE2, 0x80, 0x81, 0, 0, 0, 0, 0x82 };
	CHECK_EQ(violation(s.port, cut, sizeof cut), 1007);
	/* a close reason that is not UTF-8 */
	unsigned char reason[] = { 0x88, 0x83, 0, 0, 0, 0, 0x03, 0xE8, 0xFF };
	CHECK_EQ(violation(s.port, reason, sizeof reason), 1007);
	/* binary may hold anything */
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame(fd, 0x82, "\xC3\x28", 2), 0);
	CHECK(recv_is(fd, 2, "\xC3\x28", 2));
	close(fd);
	STOP(s);
}

AW_TEST(frame_and_message_sizes_close_with_1009)
{
	START(s);
	static char big[2000];
	memset(big, 'a', sizeof big);
	/* one frame over max_frame (600) */
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame(fd, 0x81, big, 601), 0);
	CHECK_EQ(recv_close_code(fd), 1009);
	CHECK(eof_within(fd, 2000));
	close(fd);
	/* frames under it, a message over max_message (1000) */
	fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame(fd, 0x01, big, 600), 0);
	CHECK_EQ(send_frame(fd, 0x80, big, 401), 0);
	CHECK_EQ(recv_close_code(fd), 1009);
	close(fd);
	/* exactly max_message in two frames is fine */
	fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_frame(fd, 0x01, big, 600), 0);
	CHECK_EQ(send_frame(fd, 0x80, big, 400), 0);
	CHECK(recv_is(fd, 1, big, 1000));
	close(fd);
	STOP(s);
}

AW_TEST(a_message_type_the_route_does_not_accept_closes_with_1003)
{
	START(s);
	int fd = ws_connect(s.port, "/text");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, "fine"), 0);
	CHECK(recv_is(fd, 1, "fine", 4));
	CHECK_EQ(send_frame(fd, 0x82, "bin", 3), 0);
	CHECK_EQ(recv_close_code(fd), 1003);
	close(fd);
	STOP(s);
}

AW_TEST(recv_with_a_deadline_times_out_and_goes_on_where_it_stopped)
{
	START(s);
	int fd = ws_connect(s.port, "/ticks");
	CHECK(fd >= 0);
	CHECK(recv_is(fd, 1, "tick", 4));
	/* half a message, then half a frame: the deadline passes inside them */
	CHECK_EQ(send_frame(fd, 0x01, "frag", 4), 0);
	CHECK(recv_is(fd, 1, "tick", 4));
	unsigned char half[] = { 0x80, 0x85, 0, 0, 0, 0, 'm', 'e' };
	CHECK_EQ(cli_send(fd, half, sizeof half), 0);
	CHECK(recv_is(fd, 1, "tick", 4));
	CHECK_EQ(cli_send(fd, "nts", 3), 0);
	CHECK(recv_is(fd, 1, "fragments", 9));
	close(fd);
	STOP(s);
}

/* ---- ping, pong, idle ------------------------------------------------------------------ */

AW_TEST(a_silent_peer_is_pinged_and_kept_while_it_answers)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	long long t0 = now_ms();
	/* answer three pings: well past idle_timeout (700 ms) in all */
	for (int i = 0; i < 5; i++) {
		frame f;
		CHECK(recv_frame(fd, &f));
		CHECK_EQ(f.op, 9);
		CHECK_EQ(send_frame(fd, 0x8A, f.data, f.len), 0);
		free(f.data);
	}
	CHECK(now_ms() - t0 >= 800);
	CHECK_EQ(send_text(fd, "alive"), 0);
	CHECK(recv_is(fd, 1, "alive", 5));
	close(fd);
	STOP(s);
}

AW_TEST(a_peer_that_does_not_answer_pings_is_dropped_at_the_idle_timeout)
{
	START(s);
	long long t0 = now_ms();   /* before the upgrade: the server's clock starts after it */
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	frame f;
	CHECK(recv_frame(fd, &f));
	CHECK_EQ(f.op, 9);   /* the ping, after ping_interval (200 ms) */
	free(f.data);
	long long tp = now_ms() - t0;
	if (tp < 195 || tp >= 1500)   /* upper bound generous: a loaded machine, ASan */
		aw_test_fail(__FILE__, __LINE__, "the ping came after %lld ms", tp);
	CHECK_EQ(recv_close_code(fd), 1001);   /* idle_timeout: 700 ms */
	long long tc = now_ms() - t0;
	if (tc < 695 || tc >= 3000)
		aw_test_fail(__FILE__, __LINE__, "the close came after %lld ms", tc);
	CHECK(eof_within(fd, 2000));
	close(fd);
	STOP(s);
}

/* ---- the close handshake ---------------------------------------------------------------- */

AW_TEST(client_close_is_echoed_and_the_server_closes_the_connection)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_close(fd, 1000, "done"), 0);
	frame f;
	CHECK(recv_frame(fd, &f));
	CHECK_EQ(f.op, 8);
	CHECK_EQ(f.len, (size_t)2);
	CHECK_EQ(((unsigned char)f.data[0] << 8 | (unsigned char)f.data[1]), 1000);
	free(f.data);
	CHECK(eof_within(fd, 2000));
	close(fd);
	/* a close with no code is answered with none */
	fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_close(fd, 0, NULL), 0);
	CHECK_EQ(recv_close_code(fd), 1005);
	close(fd);
	/* 4000-4999 are the application's */
	fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_close(fd, 4321, "app"), 0);
	CHECK_EQ(recv_close_code(fd), 4321);
	close(fd);
	STOP(s);
}

AW_TEST(a_failing_handler_closes_with_1011_and_is_logged)
{
	START(s);
	int fd = ws_connect(s.port, "/fails");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, "ok"), 0);
	CHECK(recv_is(fd, 1, "ok", 2));
	CHECK_EQ(send_text(fd, "fail"), 0);
	CHECK_EQ(recv_close_code(fd), 1011);   /* the manager's exit saw the error */
	CHECK_EQ(send_close(fd, 1011, NULL), 0);
	CHECK(eof_within(fd, 2000));
	close(fd);
	STOP(s);
	char *log = srv_log(&s);
	bool logged = strstr(log, "the handler failed on purpose") != NULL;
	free(log);
	CHECK(logged);
}

AW_TEST(server_close_waits_for_the_peers_close_frame)
{
	START(s);
	int fd = ws_connect(s.port, "/closer");
	CHECK(fd >= 0);
	CHECK(recv_is(fd, 1, "bye", 3));
	frame f;
	CHECK(recv_frame(fd, &f));
	CHECK_EQ(f.op, 8);
	CHECK(f.len == 11 && memcmp(f.data, "\x0f\xa1" "done here", 11) == 0);
	free(f.data);
	usleep(100 * 1000);   /* the server waits for us */
	CHECK_EQ(send_close(fd, 4001, NULL), 0);
	CHECK(eof_within(fd, 2000));
	close(fd);
	/* a peer that never answers: the server gives up after close_timeout */
	fd = ws_connect(s.port, "/closer");
	CHECK(fd >= 0);
	long long t0 = now_ms();
	CHECK(recv_is(fd, 1, "bye", 3));
	CHECK_EQ(recv_close_code(fd), 4001);
	CHECK(eof_within(fd, 3000));
	long long t = now_ms() - t0;
	CHECK(t >= 400 && t < 2500);
	close(fd);
	STOP(s);
	char *log = srv_log(&s);
	/* the first waited for our close (~100 ms), the second for close_timeout (500 ms) */
	const char *l1 = strstr(log, "closer: ");
	const char *l2 = l1 ? strstr(l1 + 1, "closer: ") : NULL;
	int code1 = 0, code2 = 0, peer1 = -1, peer2 = -1, ms1 = -1, ms2 = -1;
	bool parsed = l2 && sscanf(l1, "closer: code=%d by_peer=%d waited_ms=%d", &code1, &peer1, &ms1) == 3 &&
		      sscanf(l2, "closer: code=%d by_peer=%d waited_ms=%d", &code2, &peer2, &ms2) == 3;
	free(log);
	CHECK(parsed);
	CHECK_EQ(code1, 4001);
	CHECK_EQ(code2, 4001);
	CHECK_EQ(peer1, 0);
	CHECK_EQ(peer2, 0);
	CHECK(ms1 >= 80 && ms1 < 450);
	CHECK(ms2 >= 450 && ms2 < 2000);
}

AW_TEST(a_server_shutdown_closes_sockets_with_1001)
{
	START(s);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, "x"), 0);
	CHECK(recv_is(fd, 1, "x", 1));
	long long t0 = now_ms();
	kill(s.pid, SIGTERM);
	CHECK_EQ(recv_close_code(fd), 1001);
	CHECK_EQ(send_close(fd, 1001, NULL), 0);
	CHECK(eof_within(fd, 2000));
	CHECK_EQ(srv_wait(&s), 0);
	CHECK(now_ms() - t0 < 2000);   /* not the 3 s grace */
	close(fd);
}

/* ---- backpressure -------------------------------------------------------------------- */

AW_TEST(a_client_that_does_not_read_holds_only_its_own_sends)
{
	START(s);
	int fd = ws_connect(s.port, "/flood");
	CHECK(fd >= 0);
	/* read a little, then stop reading */
	frame f;
	CHECK(recv_frame(fd, &f));
	CHECK_EQ(f.op, 2);
	CHECK_EQ(f.len, (size_t)65536);
	free(f.data);
	/* the server's send waits (backpressure) while others are served */
	int other = ws_connect(s.port, "/echo");
	CHECK(other >= 0);
	long long t0 = now_ms();
	CHECK_EQ(send_text(other, "still here"), 0);
	CHECK(recv_is(other, 1, "still here", 10));
	CHECK(now_ms() - t0 < 450);   /* well before the flood's send_timeout (500 ms) */
	close(other);
	/* and gives up after send_timeout (500 ms) without progress: the
	 * connection is dropped (what was in flight is then read to its end) */
	usleep(1500 * 1000);
	bool gone = eof_within(fd, 3000);
	close(fd);
	STOP(s);
	char *log = srv_log(&s);
	if (!gone)
		fprintf(stderr, "log: %s\n", log);
	CHECK(gone);
	const char *line = strstr(log, "flood: rc=");
	CHECK(line != NULL);
	int rc = 0, sent = 0, ms = 0, code = 0;
	CHECK_EQ(sscanf(line, "flood: rc=%d sent=%d ms=%d code=%d", &rc, &sent, &ms, &code), 4);
	CHECK_EQ(rc, -ETIMEDOUT);
	CHECK(sent < 1000);   /* bounded by the socket buffers, not 64 KiB x forever */
	CHECK_EQ(code, 1006);
	free(log);
}

/* ---- the server's rules --------------------------------------------------------------- */

AW_TEST(access_log_and_metrics_count_a_socket_as_its_101)
{
	srv s;
	CHECK_EQ(srv_start(&s, make_app_observed), 0);
	int fd = ws_connect(s.port, "/echo");
	CHECK(fd >= 0);
	CHECK_EQ(send_text(fd, "0123456789"), 0);
	CHECK(recv_is(fd, 1, "0123456789", 10));
	CHECK_EQ(send_close(fd, 1000, NULL), 0);
	CHECK_EQ(recv_close_code(fd), 1000);
	CHECK(eof_within(fd, 2000));
	close(fd);
	/* counted once the socket has ended */
	char out[65536];
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", s.port);
	bool found = false;
	for (int i = 0; i < 50 && !found; i++) {
		CHECK_EQ(run_curl(out, sizeof out, "-s", url, (char *)NULL), 0);
		found = strstr(out, "awith_http_requests_total{route=\"/echo\",method=\"GET\",status=\"101\"} 1") != NULL;
		if (!found)
			usleep(50 * 1000);
	}
	CHECK(found);
	STOP(s);
	char *log = srv_log(&s);
	/* combined format: the request line, 101, the message bytes sent (10
	 * echoed + the 2 of the close frame) */
	bool logged = strstr(log, "\"GET /echo HTTP/1.1\" 101 12 ") != NULL;
	if (!logged)
		fprintf(stderr, "log: %s\n", log);
	free(log);
	CHECK(logged);
}
