/* SPDX-License-Identifier: MIT */
/*
 * WebSocket echo load generator (plain sockets, one edge-triggered epoll
 * loop, no library): N connections upgrade to ws://127.0.0.1:PORT/PATH,
 * then each sends a masked text message of SIZE bytes and waits for its
 * echo, over and over (one message in flight per connection, like N
 * chatty clients). After a warm-up it counts the echoes for SECONDS and
 * prints one line:
 *
 *     msgs=N secs=S rate=R p50_us=A p99_us=B errors=E
 *
 * Usage: ws_load PORT [CONNS=100] [SECONDS=5] [SIZE=64] [PATH=/echo]
 * [WARMUP=1] [DEPTH=1]. DEPTH messages are kept in flight per connection
 * (each echo sends the next; the latencies are then those of the
 * connection's last echo to the next, not round trips). Every echo is
 * checked (type, length, bytes). Exit 1 on a connection that fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct conn {
	int fd;
	int state;            /* 0 handshake, 1 echoing */
	char in[1 << 16];
	size_t inlen;
	uint64_t sent_at;     /* ns */
} conn;

static size_t size;
static char *frame;       /* the masked frame */
static size_t frame_len;
static char *payload;
static uint64_t *lat;     /* latencies in the measured window (us) */
static size_t nlat, caplat;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN)
				continue;   /* tiny frames: the buffer frees at once */
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ws_load PORT [CONNS] [SECONDS] [SIZE] [PATH] [WARMUP]\n");
		return 2;
	}
	int port = atoi(argv[1]);
	int nconn = argc > 2 ? atoi(argv[2]) : 100;
	double seconds = argc > 3 ? atof(argv[3]) : 5;
	size = argc > 4 ? (size_t)atol(argv[4]) : 64;
	const char *path = argc > 5 ? argv[5] : "/echo";
	double warm = argc > 6 ? atof(argv[6]) : 1;
	int depth = argc > 7 ? atoi(argv[7]) : 1;
	if (size >= 65536 || nconn < 1 || depth < 1 || depth > 64)
		return 2;

	payload = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		payload[i] = (char)('a' + i % 26);
	frame = malloc(size + 14);
	size_t hl = 2;
	frame[0] = (char)0x81;
	if (size < 126) {
		frame[1] = (char)(0x80 | size);
	} else {
		frame[1] = (char)(0x80 | 126);
		frame[2] = (char)(size >> 8);
		frame[3] = (char)size;
		hl = 4;
	}
	const unsigned char mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
	memcpy(frame + hl, mask, 4);
	hl += 4;
	for (size_t i = 0; i < size; i++)
		frame[hl + i] = (char)(payload[i] ^ mask[i & 3]);
	frame_len = hl + size;

	int ep = epoll_create1(0);
	conn *cs = calloc((size_t)nconn, sizeof *cs);
	char req[512];
	int rl = snprintf(req, sizeof req,
			  "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			  path, port);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	for (int i = 0; i < nconn; i++) {
		conn *c = &cs[i];
		c->fd = socket(AF_INET, SOCK_STREAM, 0);
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) || send_all(c->fd, req, (size_t)rl)) {
			perror("ws_load: connect");
			return 1;
		}
		/* the 101, blocking (before the clock starts) */
		for (;;) {
			ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
			if (r <= 0) {
				fprintf(stderr, "ws_load: no 101\n");
				return 1;
			}
			c->inlen += (size_t)r;
			char *e = memmem(c->in, c->inlen, "\r\n\r\n", 4);
			if (e) {
				if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) {
					fprintf(stderr, "ws_load: %.40s\n", c->in);
					return 1;
				}
				size_t used = (size_t)(e + 4 - c->in);
				memmove(c->in, c->in + used, c->inlen - used);
				c->inlen -= used;
				break;
			}
		}
		struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = c };
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		c->state = 1;
	}
	/* non-blocking from here */
	for (int i = 0; i < nconn; i++) {
		int one = 1;
		ioctl(cs[i].fd, FIONBIO, &one);
	}
	uint64_t t_start = now_ns();
	uint64_t t_measure = t_start + (uint64_t)(warm * 1e9);
	uint64_t t_end = t_measure + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < nconn; i++) {
		cs[i].sent_at = now_ns();
		for (int d = 0; d < depth; d++)
			if (send_all(cs[i].fd, frame, frame_len)) {
				perror("ws_load: send");
				return 1;
			}
	}
	uint64_t msgs = 0, errors = 0;
	caplat = 1 << 20;
	lat = malloc(caplat * sizeof *lat);
	struct epoll_event evs[256];
	for (;;) {
		uint64_t now = now_ns();
		if (now >= t_end)
			break;
		int n = epoll_wait(ep, evs, 256, 100);
		for (int k = 0; k < n; k++) {
			conn *c = evs[k].data.ptr;
			for (;;) {
				ssize_t r = recv(c->fd, c->in + c->inlen, sizeof c->in - c->inlen, 0);
				if (r < 0 && errno == EAGAIN)
					break;
				if (r <= 0) {
					fprintf(stderr, "ws_load: connection ended (%s)\n", r ? strerror(errno) : "EOF");
					return 1;
				}
				c->inlen += (size_t)r;
				/* whole echoes */
				for (;;) {
					if (c->inlen < 2)
						break;
					unsigned char *h = (unsigned char *)c->in;
					size_t len = h[1] & 0x7F, off = 2;
					if (len == 126) {
						if (c->inlen < 4)
							break;
						len = (size_t)h[2] << 8 | h[3];
						off = 4;
					}
					if (c->inlen < off + len)
						break;
					if ((h[0] & 0x0F) != 1 || len != size || memcmp(c->in + off, payload, size) != 0)
						errors++;
					memmove(c->in, c->in + off + len, c->inlen - off - len);
					c->inlen -= off + len;
					uint64_t t = now_ns();
					if (t >= t_measure && t < t_end) {
						msgs++;
						if (nlat < caplat)
							lat[nlat++] = (t - c->sent_at) / 1000;
					}
					c->sent_at = t;
					if (send_all(c->fd, frame, frame_len)) {
						perror("ws_load: send");
						return 1;
					}
				}
			}
		}
	}
	qsort(lat, nlat, sizeof *lat, cmp_u64);
	uint64_t p50 = nlat ? lat[nlat / 2] : 0, p99 = nlat ? lat[nlat * 99 / 100] : 0;
	printf("msgs=%llu secs=%.2f rate=%.0f p50_us=%llu p99_us=%llu errors=%llu\n", (unsigned long long)msgs,
	       seconds, (double)msgs / seconds, (unsigned long long)p50, (unsigned long long)p99,
	       (unsigned long long)errors);
	for (int i = 0; i < nconn; i++)
		close(cs[i].fd);
	return errors ? 1 : 0;
}
