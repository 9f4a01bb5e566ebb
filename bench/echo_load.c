/* SPDX-License-Identifier: MIT */
/*
 * echo_load — the load generator of bench/echo_bench.sh. Plain C and epoll
 * (no awith), so that it measures the server, whichever it is.
 *
 *     echo_load --port N [--host 127.0.0.1] [--conns C] [--seconds D]
 *               [--size B] [--warmup W]
 *
 * Opens C connections (TCP_NODELAY), each of which does ping-pong: write a
 * B-byte message (default 64), read the B bytes echoed back, check them,
 * repeat. One thread, one epoll set (edge-triggered), non-blocking sockets.
 * After W seconds of warm-up (default 0.5) it counts the round trips that
 * complete in the next D seconds (default 3) and prints one line:
 *
 *     conns=C size=B seconds=D msgs=M msgs_per_s=R total_msgs=T total_seconds=S
 *
 * total_msgs and total_seconds also count the warm-up (from the first
 * message sent to the end): bench/echo_bench.sh divides the server's CPU
 * time over that span by total_msgs.
 *
 * Exit status 1 (with the reason on stderr) if a connection fails, closes,
 * or echoes wrong bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* the build defines it too */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
	int fd;
	unsigned id;
	uint64_t seq;          /* round trips done */
	size_t sent, got;      /* of the current message */
	char *msg, *back;      /* what was sent, what came back */
} conn;

static size_t msg_size = 64;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, unsigned id)
{
	fprintf(stderr, "echo_load: connection %u: %s\n", id, what);
	exit(1);
}

/* The next message: its connection and sequence number, then filler. */
static void fill(conn *c)
{
	memset(c->msg, 'a' + (int)(c->seq % 26), msg_size);
	char head[48];
	int n = snprintf(head, sizeof head, "%u:%llu:", c->id, (unsigned long long)c->seq);
	memcpy(c->msg, head, (size_t)n < msg_size ? (size_t)n : msg_size);
	c->sent = c->got = 0;
}

/* Send the rest of the current message (it is tiny: this rarely loops). */
static void send_rest(conn *c)
{
	while (c->sent < msg_size) {
		ssize_t w = send(c->fd, c->msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;   /* EPOLLOUT will tell */
			die(strerror(errno), c->id);
		}
		c->sent += (size_t)w;
	}
}

/* Read what is there; returns the round trips completed. */
static unsigned on_readable(conn *c)
{
	unsigned done = 0;
	for (;;) {
		ssize_t r = recv(c->fd, c->back + c->got, msg_size - c->got, 0);
		if (r == 0)
			die("the server closed the connection", c->id);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return done;
			die(strerror(errno), c->id);
		}
		c->got += (size_t)r;
		if (c->got < msg_size)
			continue;
		if (memcmp(c->msg, c->back, msg_size) != 0)
			die("the echo differs from the message", c->id);
		done++;
		c->seq++;
		fill(c);
		send_rest(c);
		/* Ping-pong: nothing more can arrive before the server has the
		 * new message, so stop here rather than pay for an EAGAIN. */
		return done;
	}
}

static int connect_to(const char *host, int port)
{
	char portstr[16];
	snprintf(portstr, sizeof portstr, "%d", port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	if (getaddrinfo(host, portstr, &hints, &res) != 0)
		return -1;
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_load --port N [--host H] [--conns C] [--seconds D] [--size B] [--warmup W]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 0;
	unsigned nconns = 1;
	double seconds = 3, warmup = 0.5;
	for (int i = 1; i < argc; i += 2) {   /* every option takes a value */
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		if (strcmp(argv[i], "--port") == 0)
			port = atoi(v);
		else if (strcmp(argv[i], "--host") == 0)
			host = v;
		else if (strcmp(argv[i], "--conns") == 0)
			nconns = (unsigned)atoi(v);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = atof(v);
		else if (strcmp(argv[i], "--size") == 0)
			msg_size = (size_t)atoi(v);
		else if (strcmp(argv[i], "--warmup") == 0)
			warmup = atof(v);
		else
			usage();
	}
	if (port <= 0 || port > 65535 || nconns < 1 || nconns > 100000 || seconds <= 0 || warmup < 0 ||
	    msg_size < 16 || msg_size > 1 << 20)
		usage();

	int ep = epoll_create1(EPOLL_CLOEXEC);
	conn *conns = calloc(nconns, sizeof *conns);
	if (ep < 0 || !conns) {
		perror("echo_load");
		return 1;
	}
	for (unsigned i = 0; i < nconns; i++) {
		conn *c = &conns[i];
		c->id = i;
		c->fd = connect_to(host, port);
		if (c->fd < 0) {
			fprintf(stderr, "echo_load: cannot connect to %s:%d: %s\n", host, port, strerror(errno));
			return 1;
		}
		c->msg = malloc(msg_size);
		c->back = malloc(msg_size);
		if (!c->msg || !c->back) {
			perror("echo_load");
			return 1;
		}
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
			perror("echo_load: epoll_ctl");
			return 1;
		}
	}
	for (unsigned i = 0; i < nconns; i++) {
		fill(&conns[i]);
		send_rest(&conns[i]);
	}

	struct epoll_event events[512];
	double start = now_s(), t0 = start + warmup, t1 = t0 + seconds;
	uint64_t msgs = 0, total = 0;
	bool measuring = false;
	for (;;) {
		int n = epoll_wait(ep, events, 512, 1000);
		if (n < 0 && errno != EINTR) {
			perror("echo_load: epoll_wait");
			return 1;
		}
		unsigned done = 0;
		for (int i = 0; i < n; i++) {
			conn *c = events[i].data.ptr;
			uint32_t e = events[i].events;
			if (e & EPOLLERR)
				die("socket error", c->id);
			if ((e & EPOLLOUT) && c->sent < msg_size)
				send_rest(c);
			if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))
				done += on_readable(c);
		}
		total += done;
		double t = now_s();
		if (!measuring && t >= t0) {
			measuring = true;   /* the warm-up is over: count from here */
			t0 = t;
			t1 = t0 + seconds;
			continue;
		}
		if (measuring) {
			msgs += done;
			if (t >= t1) {
				double elapsed = t - t0;
				printf("conns=%u size=%zu seconds=%.3f msgs=%llu msgs_per_s=%.0f total_msgs=%llu "
				       "total_seconds=%.3f\n",
				       nconns, msg_size, elapsed, (unsigned long long)msgs, (double)msgs / elapsed,
				       (unsigned long long)total, t - start);
				return 0;
			}
		}
	}
}
