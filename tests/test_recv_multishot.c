/* SPDX-License-Identifier: MIT */
/* Tests: aw_fd_recv's multishot mode on io_uring (AWITH_URING_RECV=
 * multishot, src/core/recv_ring.c): one multishot receive per socket into
 * the loop's provided buffer ring (256 × 4 KiB), the completions queued
 * per fd and copied out by aw_fd_recv / aw_fd_recv_take. Real TCP sockets
 * on loopback. Each test runs its loop on io_uring itself
 * (aw_config.backend), whatever AWITH_BACKEND says. */
#include "harness.h"

#include "awith/ext.h"
#include "awith/io.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AW_TEST_HAVE_IO_URING
#define AW_TEST_HAVE_IO_URING 0
#endif

#define RING_BYTES (256 * 4096)   /* recv_ring.c's RQ_BUFS × RQ_BUF_SIZE */

/* fn on io_uring with AWITH_URING_RECV=mode (NULL: unset), read at the
 * loop's first receive (each test is a process of its own). */
static int run_mode(const char *mode, aw_task_fn fn, void *arg)
{
	if (mode)
		setenv("AWITH_URING_RECV", mode, 1);
	else
		unsetenv("AWITH_URING_RECV");
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = AW_BACKEND_URING;
	return aw_run_config(&cfg, fn, arg);
}

static int run_uring(aw_task_fn fn, void *arg)
{
	return run_mode("multishot", fn, arg);   /* opt-in */
}

static int lfd = -1;

/* A connected TCP pair on loopback: *ours non-blocking (the loop's side),
 * *peer blocking (the test writes into it). 0 or -1. */
static int tcp_pair(int *ours, int *peer)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (lfd < 0) {
		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 512))
			return -1;
	}
	if (getsockname(lfd, (struct sockaddr *)&a, &al))
		return -1;
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a))
		return -1;
	int s = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (s < 0)
		return -1;
	*ours = s;
	*peer = c;
	return 0;
}

static void close_listener(void)
{
	if (lfd >= 0)
		close(lfd);
	lfd = -1;
}

static unsigned char pattern(unsigned conn, size_t i)
{
	return (unsigned char)((i * 7 + i / 4093 + conn * 31) % 251);
}

static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w <= 0)
			return false;
		c += w;
		n -= (size_t)w;
	}
	return true;
}

static bool write_pattern(int fd, unsigned conn, size_t from, size_t n)
{
	unsigned char buf[8192];
	while (n) {
		size_t c = n < sizeof buf ? n : sizeof buf;
		for (size_t i = 0; i < c; i++)
			buf[i] = pattern(conn, from + i);
		if (!write_all(fd, buf, c))
			return false;
		from += c;
		n -= c;
	}
	return true;
}

/* ---- order across buffers and partial reads ---------------------------- */

struct order { size_t total, bad_at; bool eof_twice; size_t max_queued; int rc; };

#define ORDER_N (1 << 20)   /* as much as the whole ring: many buffers, ENOBUFS on the way */

/* The peer, on its own thread: chunks of odd sizes, then the end. */
static void *order_writer(void *arg)
{
	int peer = *(int *)arg;
	static const size_t chunks[] = { 17, 4096, 50000, 3, 12289, 65536 };
	size_t at = 0;
	for (unsigned k = 0; at < ORDER_N; k++) {
		size_t c = chunks[k % 6] < ORDER_N - at ? chunks[k % 6] : ORDER_N - at;
		if (!write_pattern(peer, 0, at, c))
			break;
		at += c;
	}
	shutdown(peer, SHUT_WR);
	return NULL;
}

static int main_order(void *arg)
{
	struct order *o = arg;
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	pthread_t th;
	if (pthread_create(&th, NULL, order_writer, &peer))
		return -1;
	static const size_t sizes[] = { 1, 13, 4095, 4097, 10000, 65536, 7 };
	unsigned char *buf = malloc(65536);
	size_t at = 0, k = 0;
	o->bad_at = SIZE_MAX;
	for (;;) {
		size_t got = 0;
		int rc = aw_fd_recv(fd, buf, sizes[k++ % 7], &got, aw_deadline_after(AW_SEC(10)));
		if (rc) {
			o->rc = rc;
			aw_error_clear();
			break;
		}
		if (!got)
			break;
		for (size_t i = 0; i < got && o->bad_at == SIZE_MAX; i++)
			if (buf[i] != pattern(0, at + i))
				o->bad_at = at + i;
		at += got;
		size_t q = aw_fd_recv_queued(fd);
		if (q > o->max_queued)
			o->max_queued = q;
		if (k % 64 == 0)
			EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* let the queue grow now and then */
	}
	pthread_join(th, NULL);
	o->total = at;
	size_t got = 1;
	o->eof_twice = aw_fd_recv(fd, buf, 10, &got, aw_deadline_after(AW_SEC(1))) == 0 && got == 0;
	free(buf);
	EXPECT_EQ(aw_fd_close(fd), 0);
	close(peer);
	close_listener();
	return 0;
}

AW_TEST(multishot_receives_every_byte_in_order_across_buffers_and_partial_reads)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct order o = { 0 };
	CHECK_EQ(run_uring(main_order, &o), 0);
	CHECK_EQ(o.rc, 0);
	CHECK_EQ(o.bad_at, SIZE_MAX);
	CHECK_EQ(o.total, ORDER_N);
	CHECK(o.eof_twice);
	CHECK_GT(o.max_queued, 4096);   /* it did queue in the loop: the multishot mode ran */
}

/* ---- the ring running dry ---------------------------------------------- */

#define DRY_CONNS 40
#define DRY_EACH (40 * 1024)   /* 10 buffers each (below the per-fd cap), 1.6 MiB in all */

struct dry { size_t queued, in_sockets, bad_conn, total[DRY_CONNS]; int rc; };

static int main_dry(void *arg)
{
	struct dry *d = arg;
	int fd[DRY_CONNS], peer[DRY_CONNS];
	d->bad_conn = SIZE_MAX;
	char c;
	size_t got;
	for (unsigned i = 0; i < DRY_CONNS; i++) {
		if (tcp_pair(&fd[i], &peer[i]))
			return -1;
		/* Arm each one's multishot with a first byte. */
		EXPECT_EQ(write(peer[i], "x", 1), 1);
		EXPECT_EQ(aw_fd_recv(fd[i], &c, 1, &got, aw_deadline_after(AW_SEC(5))), 0);
	}
	for (unsigned i = 0; i < DRY_CONNS; i++) {
		EXPECT(write_pattern(peer[i], i, 0, DRY_EACH));
		shutdown(peer[i], SHUT_WR);
	}
	EXPECT_EQ(aw_sleep(AW_MS(100)), 0);   /* the kernel fills the ring, then says ENOBUFS */
	for (unsigned i = 0; i < DRY_CONNS; i++) {
		int n = 0;
		EXPECT_EQ(ioctl(fd[i], FIONREAD, &n), 0);
		d->in_sockets += (size_t)n;
		d->queued += aw_fd_recv_queued(fd[i]);
	}
	unsigned char buf[3000];
	for (unsigned i = 0; i < DRY_CONNS; i++) {
		for (;;) {
			int rc = aw_fd_recv(fd[i], buf, sizeof buf, &got, aw_deadline_after(AW_SEC(5)));
			if (rc) {
				d->rc = rc;
				aw_error_clear();
				break;
			}
			if (!got)
				break;
			for (size_t j = 0; j < got; j++)
				if (buf[j] != pattern(i, d->total[i] + j) && d->bad_conn == SIZE_MAX)
					d->bad_conn = i;
			d->total[i] += got;
		}
		EXPECT_EQ(aw_fd_close(fd[i]), 0);
		close(peer[i]);
	}
	close_listener();
	return 0;
}

AW_TEST(a_dry_ring_loses_no_byte_and_every_connection_completes)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct dry d = { 0 };
	CHECK_EQ(run_uring(main_dry, &d), 0);
	/* The ring was dry: it held what it could, the rest waited in the
	 * sockets (no multishot was taking it). */
	CHECK_LE(d.queued, RING_BYTES);
	CHECK_GT(d.queued, RING_BYTES / 2);
	CHECK_GT(d.in_sockets, 0);
	CHECK_EQ(d.queued + d.in_sockets, (size_t)DRY_CONNS * DRY_EACH);
	CHECK_EQ(d.rc, 0);
	CHECK_EQ(d.bad_conn, SIZE_MAX);
	for (unsigned i = 0; i < DRY_CONNS; i++)
		CHECK_EQ(d.total[i], DRY_EACH);
}

/* ---- a wait that gives up ---------------------------------------------- */

struct rx { int fd; char buf[64]; size_t got; int rc; aw_time deadline; };

static int receiver(void *arg)
{
	struct rx *r = arg;
	r->rc = aw_fd_recv(r->fd, r->buf, sizeof r->buf, &r->got, r->deadline);
	aw_error_clear();
	return 0;
}

struct giveup { int how; int rc; size_t got, queued; int socket_read; char next[16]; };

static int main_giveup(void *arg)
{
	struct giveup *g = arg;
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	struct rx r = { .fd = fd, .deadline = g->how == 1 ? aw_deadline_after(AW_MS(20)) : AW_NEVER };
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, receiver, &r, "receiver"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* it waits, its multishot armed */
	if (g->how == 0)
		aw_task_cancel(t);
	if (aw_task_join(t) < 0)
		aw_error_clear();
	aw_error_clear();
	g->rc = r.rc;
	g->got = r.got;
	EXPECT(write_all(peer, "late", 4));   /* nobody waits now */
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	g->queued = aw_fd_recv_queued(fd);
	char b[16];
	g->socket_read = (int)read(fd, b, sizeof b);   /* the loop has them, not the socket */
	size_t got = 0;
	EXPECT_EQ(aw_fd_recv(fd, b, sizeof b - 1, &got, aw_deadline_after(AW_SEC(1))), 0);
	snprintf(g->next, sizeof g->next, "%.*s", (int)got, b);
	EXPECT_EQ(aw_fd_close(fd), 0);
	close(peer);
	close_listener();
	return 0;
}

AW_TEST(a_cancelled_multishot_recv_leaves_what_arrives_queued_for_the_next_call)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct giveup g = { .how = 0 };
	CHECK_EQ(run_uring(main_giveup, &g), 0);
	CHECK_EQ(g.rc, -ECANCELED);
	CHECK_EQ(g.got, 0);
	CHECK_EQ(g.queued, 4);
	CHECK_EQ(g.socket_read, -1);
	CHECK_STR(g.next, "late");
}

AW_TEST(a_multishot_recv_past_its_deadline_leaves_what_arrives_queued_for_the_next_call)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct giveup g = { .how = 1 };
	CHECK_EQ(run_uring(main_giveup, &g), 0);
	CHECK_EQ(g.rc, -ETIMEDOUT);
	CHECK_EQ(g.got, 0);
	CHECK_EQ(g.queued, 4);
	CHECK_EQ(g.socket_read, -1);
	CHECK_STR(g.next, "late");
}

/* ---- end of file after the data ---------------------------------------- */

struct eof { size_t total, queued_before; int rc; bool bad, eof_again; int take_rc; size_t take_got; };

static int main_eof(void *arg)
{
	struct eof *e = arg;
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	char c;
	size_t got;
	EXPECT(write_all(peer, "y", 1));
	EXPECT_EQ(aw_fd_recv(fd, &c, 1, &got, aw_deadline_after(AW_SEC(5))), 0);   /* armed */
	EXPECT(write_pattern(peer, 3, 0, 10000));
	close(peer);   /* the end comes right behind the bytes */
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	e->queued_before = aw_fd_recv_queued(fd);
	unsigned char buf[3000];
	for (;;) {
		e->rc = aw_fd_recv(fd, buf, sizeof buf, &got, aw_deadline_after(AW_SEC(5)));
		if (e->rc || !got)
			break;
		for (size_t i = 0; i < got; i++)
			e->bad = e->bad || buf[i] != pattern(3, e->total + i);
		e->total += got;
	}
	aw_error_clear();
	e->eof_again = aw_fd_recv(fd, buf, sizeof buf, &got, aw_deadline_after(AW_SEC(1))) == 0 && got == 0;
	e->take_rc = aw_fd_recv_take(fd, buf, sizeof buf, &e->take_got);
	EXPECT_EQ(aw_fd_close(fd), 0);
	close_listener();
	return 0;
}

AW_TEST(end_of_file_comes_after_every_queued_byte)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct eof e = { 0 };
	CHECK_EQ(run_uring(main_eof, &e), 0);
	CHECK_EQ(e.queued_before, 10000);   /* all in the loop, the end behind them */
	CHECK_EQ(e.rc, 0);
	CHECK(!e.bad);
	CHECK_EQ(e.total, 10000);
	CHECK(e.eof_again);
	CHECK_EQ(e.take_rc, 0);   /* end of file for aw_fd_recv_take too */
	CHECK_EQ(e.take_got, 0);
}

/* ---- forget and close give the buffers back ---------------------------- */

struct churn { size_t last_queued; int rc; };

static int main_churn(void *arg)
{
	struct churn *c = arg;
	char b;
	size_t got;
	/* 300 connections × 2 buffers held at their close: more than the
	 * ring's 256 if a close kept them. */
	for (int i = 0; i < 300; i++) {
		int fd, peer;
		if (tcp_pair(&fd, &peer))
			return -1;
		EXPECT(write_pattern(peer, 1, 0, 8192));
		EXPECT_EQ(aw_fd_recv(fd, &b, 1, &got, aw_deadline_after(AW_SEC(5))), 0);
		EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* the rest is queued */
		EXPECT_EQ(aw_fd_close(fd), 0);
		close(peer);
	}
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	EXPECT(write_pattern(peer, 1, 0, 8192));
	c->rc = aw_fd_recv(fd, &b, 1, &got, aw_deadline_after(AW_SEC(5)));
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	/* Still received through the ring: it has its buffers back (a dry
	 * ring would have made this a single receive, nothing queued). */
	c->last_queued = aw_fd_recv_queued(fd);
	EXPECT_EQ(aw_fd_close(fd), 0);
	close(peer);
	close_listener();
	return 0;
}

AW_TEST(closing_many_connections_with_queued_bytes_gives_every_buffer_back)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct churn c = { 0 };
	CHECK_EQ(run_uring(main_churn, &c), 0);
	CHECK_EQ(c.rc, 0);
	CHECK_EQ(c.last_queued, 8191);
}

/* ---- a reused fd number ------------------------------------------------ */

struct reuse { bool same_number; char got[64]; size_t queued_after; };

static int main_reuse(void *arg)
{
	struct reuse *r = arg;
	int a, pa, b, pb;
	if (tcp_pair(&a, &pa))
		return -1;
	char c;
	size_t got;
	EXPECT(write_all(pa, "A", 1));
	EXPECT_EQ(aw_fd_recv(a, &c, 1, &got, aw_deadline_after(AW_SEC(5))), 0);   /* armed */
	EXPECT(write_all(pa, "AAAAAAAAAAAAAAAA", 16));   /* completions on their way, no loop turn */
	int c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	EXPECT_EQ(aw_fd_close(a), 0);
	/* The next socket (the accepted one) gets the same number. */
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	if (c2 < 0 || connect(c2, (struct sockaddr *)&sa, sizeof sa))
		return -1;
	b = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	pb = c2;
	r->same_number = b == a;
	EXPECT(write_all(pa, "AAAA", 4));   /* the old socket's peer goes on */
	EXPECT(write_all(pb, "BBBB", 4));
	/* No loop turn since the close: whatever the old multishot posted is
	 * still in the ring when the new one is armed under the same number. */
	char buf[63];
	EXPECT_EQ(aw_fd_recv(b, buf, sizeof buf, &got, aw_deadline_after(AW_SEC(1))), 0);
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	snprintf(r->got, sizeof r->got, "%.*s", (int)got, buf);
	r->queued_after = aw_fd_recv_queued(b);
	EXPECT_EQ(aw_fd_close(b), 0);
	close(pa);
	close(pb);
	close_listener();
	return 0;
}

AW_TEST(a_reused_fd_number_gets_nothing_of_its_predecessors_bytes)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct reuse r = { 0 };
	CHECK_EQ(run_uring(main_reuse, &r), 0);
	CHECK(r.same_number);
	CHECK_STR(r.got, "BBBB");
	CHECK_EQ(r.queued_after, 0);
}

/* ---- a stream on top --------------------------------------------------- */

struct lines { int n, bad; int rc; };

static int main_lines(void *arg)
{
	struct lines *l = arg;
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	aw_stream *s;
	EXPECT_EQ(aw_stream_from_fd(&s, fd, NULL), 0);
	/* Lines of every length around the 4 KiB buffers, written in one go
	 * before the stream reads, and more while it reads. */
	char *big = malloc(12000);
	for (int i = 0; i < 400; i++) {
		int len = (i * 97) % 11000;
		int n = snprintf(big, 32, "%d:", i);
		memset(big + n, 'a' + i % 26, (size_t)len);
		big[n + len] = '\n';
		EXPECT(write_all(peer, big, (size_t)n + (size_t)len + 1));
		if (i % 50 != 49)
			continue;
		for (int j = l->n; j <= i; j++) {
			const char *line;
			size_t ll;
			int rc = aw_stream_read_line(s, 16384, &line, &ll, aw_deadline_after(AW_SEC(5)));
			if (rc) {
				l->rc = rc;
				aw_error_clear();
				goto out;
			}
			int want = (j * 97) % 11000;
			char head[32];
			int hn = snprintf(head, sizeof head, "%d:", j);
			if (ll != (size_t)(hn + want + 1) || memcmp(line, head, (size_t)hn) != 0 ||
			    (want && line[hn + want - 1] != 'a' + j % 26))
				l->bad++;
			l->n++;
		}
	}
out:
	free(big);
	EXPECT_EQ(aw_stream_close(s, aw_deadline_after(AW_SEC(1))), 0);
	close(peer);
	close_listener();
	return 0;
}

AW_TEST(a_stream_on_multishot_reads_every_line_in_order)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct lines l = { 0 };
	CHECK_EQ(run_uring(main_lines, &l), 0);
	CHECK_EQ(l.rc, 0);
	CHECK_EQ(l.n, 400);
	CHECK_EQ(l.bad, 0);
}

/* ---- the switch -------------------------------------------------------- */

struct single { int rc, take_rc; size_t got, queued; };

static int main_single(void *arg)
{
	struct single *s = arg;
	int fd, peer;
	if (tcp_pair(&fd, &peer))
		return -1;
	EXPECT(write_all(peer, "hello", 5));
	char b[16];
	s->rc = aw_fd_recv(fd, b, 2, &s->got, aw_deadline_after(AW_SEC(5)));
	s->queued = aw_fd_recv_queued(fd);
	size_t got;
	s->take_rc = aw_fd_recv_take(fd, b, sizeof b, &got);
	EXPECT_EQ(aw_fd_close(fd), 0);
	close(peer);
	close_listener();
	return 0;
}

AW_TEST(awith_uring_recv_single_receives_into_the_callers_buffer_and_queues_nothing)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct single s = { 0 };
	CHECK_EQ(run_mode("single", main_single, &s), 0);
	CHECK_EQ(s.rc, 0);
	CHECK_EQ(s.got, 2);
	CHECK_EQ(s.queued, 0);   /* the rest is still in the socket */
	CHECK_EQ(s.take_rc, -EOPNOTSUPP);
}

AW_TEST(single_receives_are_the_default)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct single s = { 0 };
	CHECK_EQ(run_mode(NULL, main_single, &s), 0);
	CHECK_EQ(s.rc, 0);
	CHECK_EQ(s.queued, 0);
	CHECK_EQ(s.take_rc, -EOPNOTSUPP);
}

AW_TEST(awith_uring_recv_multishot_queues_in_the_loop)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	struct single m = { 0 };
	CHECK_EQ(run_mode("multishot", main_single, &m), 0);
	CHECK_EQ(m.rc, 0);
	CHECK_EQ(m.got, 2);
	CHECK_EQ(m.queued, 3);   /* "llo" waits in the loop, not in the socket */
	CHECK_EQ(m.take_rc, 0);
}
