/* SPDX-License-Identifier: MIT */
/*
 * epoll_echo — the baseline of bench/echo_bench.sh: a minimal hand-written
 * TCP echo server in plain C. One thread, non-blocking sockets, epoll in
 * edge-triggered mode, no library: about the practical limit of a
 * single-threaded echo server on this kernel, so awith's echo_server is
 * measured against it.
 *
 *     epoll_echo [--port N] [--classic]
 *
 * Listens on 127.0.0.1 (default port 8000; 0 picks a free one). --classic
 * reads every socket until EAGAIN, as the textbook edge-triggered loop does
 * (and as awith's streams do), instead of stopping at a short read.
 *
 * Prints "listening on 127.0.0.1:PORT" (flushed) once it accepts, then runs
 * until killed. Raw bytes are echoed, with one recv and one send per
 * message in ping-pong (on_readable says how the EAGAIN recv is saved). A
 * connection whose peer does not read its echoes stops being read (its
 * unsent bytes are kept, and reading goes on when they are sent): the same
 * backpressure the other servers have.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* accept4 (the build defines it too) */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
	int fd;
	char *pending;         /* echoes not yet sent */
	size_t plen, pcap;
	bool read_paused;      /* unread input may remain (edge-triggered) */
} conn;

static char buf[64 * 1024];
static bool classic;   /* --classic: always read to EAGAIN */

static void conn_close(int ep, conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->pending);
	free(c);
}

/* Send what is pending. 1: all sent; 0: would block; -1: error. */
static int flush_pending(conn *c)
{
	size_t off = 0;
	while (off < c->plen) {
		ssize_t w = send(c->fd, c->pending + off, c->plen - off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			memmove(c->pending, c->pending + off, c->plen - off);
			c->plen -= off;
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		}
		off += (size_t)w;
	}
	c->plen = 0;
	return 1;
}

static bool keep(conn *c, const char *data, size_t n)
{
	if (c->plen + n > c->pcap) {
		size_t cap = c->pcap ? c->pcap : 4096;
		while (cap < c->plen + n)
			cap *= 2;
		char *p = realloc(c->pending, cap);
		if (!p)
			return false;
		c->pending = p;
		c->pcap = cap;
	}
	memcpy(c->pending + c->plen, data, n);
	c->plen += n;
	return true;
}

/* Read and echo until the socket is drained. false: close the connection.
 *
 * Drained means EAGAIN, or a short read (fewer bytes than asked for: the
 * receive queue was emptied, and data arriving after it raises a new edge),
 * which saves the EAGAIN read per message that the textbook edge-triggered
 * loop makes. Not when the peer has hung up (`hup`): that edge is already
 * consumed, so read on to the 0 that says so. */
static bool on_readable(conn *c, bool hup)
{
	for (;;) {
		ssize_t n = recv(c->fd, buf, sizeof buf, 0);
		if (n == 0)
			return false;   /* peer closed */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		ssize_t w = 0;
		while (w < n) {
			ssize_t r = send(c->fd, buf + w, (size_t)(n - w), MSG_NOSIGNAL);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					return false;
				/* The peer is slow: keep the rest, stop reading
				 * until EPOLLOUT says it drained. */
				if (!keep(c, buf + w, (size_t)(n - w)))
					return false;
				c->read_paused = true;
				return true;
			}
			w += r;
		}
		if ((size_t)n < sizeof buf && !hup && !classic)
			return true;
	}
}

int main(int argc, char **argv)
{
	int port = 8000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			port = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--classic") == 0) {
			classic = true;
		} else {
			fprintf(stderr, "usage: epoll_echo [--port N] [--classic]\n");
			return 2;
		}
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 511) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
		perror("epoll_echo: listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = NULL };   /* NULL: the listener */
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
	fflush(stdout);

	struct epoll_event events[256];
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("epoll_echo: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			conn *c = events[i].data.ptr;
			if (!c) {   /* accept everything that is there */
				for (;;) {
					int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (fd < 0)
						break;   /* EAGAIN, or a transient error: next edge */
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					conn *nc = calloc(1, sizeof *nc);
					if (!nc) {
						close(fd);
						continue;
					}
					nc->fd = fd;
					struct epoll_event cev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
								   .data.ptr = nc };
					if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) != 0) {
						close(fd);
						free(nc);
					}
				}
				continue;
			}
			uint32_t e = events[i].events;
			bool ok = !(e & EPOLLERR);
			if (ok && (e & EPOLLOUT) && c->plen) {
				int r = flush_pending(c);
				ok = r >= 0;
				if (r == 1 && c->read_paused) {
					c->read_paused = false;
					ok = on_readable(c, true);   /* input that waited: read to EAGAIN */
				}
			}
			if (ok && (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !c->read_paused)
				ok = on_readable(c, e & (EPOLLRDHUP | EPOLLHUP));
			if (!ok)
				conn_close(ep, c);
		}
	}
}
