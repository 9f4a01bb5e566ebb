/* SPDX-License-Identifier: MIT */
/* Tests: listeners accepting on both loop backends — through one multishot
 * IORING_OP_ACCEPT on io_uring (aw_fd_accept, src/core/accept_uring.c),
 * through readiness and accept4 on epoll — with the same results: many
 * connections, no descriptor leaked by a listener closed with connections
 * queued (or still arriving), EMFILE handed to the accept caller, and a
 * task cancelled in accept losing no connection. */
#include "harness.h"

#include "awith/core.h"
#include "awith/ext.h"
#include "awith/io.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AW_TEST_HAVE_IO_URING
#define AW_TEST_HAVE_IO_URING 0
#endif

/* A result this test does not look at (the error rule: cleared). */
static void ignore(int rc)
{
	if (rc)
		aw_error_clear();
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;   /* the directory's own descriptor */
}

/* A blocking client connected to 127.0.0.1:port (the kernel completes the
 * handshake from the listener's backlog: no accept needed). */
static int client(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

typedef struct {
	int n;            /* clients */
	int accepted;
	int multishot;    /* aw_fd_accept answered (not -EOPNOTSUPP) */
	int rc;
	int before, after;
	aw_listener *l;
	int cfds[300];
} ctx;

static int run_on(int backend, aw_task_fn fn, ctx *c)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = backend;
	return aw_run_config(&cfg, fn, c);
}

static int main_many(void *arg)
{
	ctx *c = arg;
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	int port = aw_listener_port(l);
	for (int i = 0; i < c->n; i++)
		c->cfds[i] = client(port);
	for (int i = 0; i < c->n; i++) {
		aw_stream *s;
		if (i == 0) {
			/* the first straight through aw_fd_accept: which path ran */
			int fd = aw_fd_accept(aw_listener_fd(l), aw_deadline_after(AW_SEC(5)));
			if (fd == -EOPNOTSUPP)
				aw_error_clear();
			else if (fd >= 0) {
				c->multishot = 1;
				c->accepted++;
				close(fd);
				continue;
			}
		}
		if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))))
			break;
		c->accepted++;
		ignore(aw_stream_close(s, AW_NEVER));
	}
	for (int i = 0; i < c->n; i++)
		close(c->cfds[i]);
	aw_listener_close(l);
	return 0;
}

AW_TEST(many_connections_are_accepted_on_both_backends)
{
	ctx c = { .n = 300 };
	CHECK_EQ(run_on(AW_BACKEND_EPOLL, main_many, &c), 0);
	CHECK_EQ(c.accepted, 300);
	CHECK_EQ(c.multishot, 0);
	if (AW_TEST_HAVE_IO_URING) {
		memset(&c, 0, sizeof c);
		c.n = 300;
		CHECK_EQ(run_on(AW_BACKEND_URING, main_many, &c), 0);
		CHECK_EQ(c.accepted, 300);
		CHECK_EQ(c.multishot, 1);   /* this kernel has multishot accept (5.19+) */
	}
}

/* Accept one connection (arming the multishot, which pulls the others
 * into the listener's queue), then close the listener with the rest
 * queued; `settle`: let the loop turn before counting (else the count is
 * taken after the loop ended: the ring's own teardown). */
static int main_close_queued(void *arg)
{
	ctx *c = arg;
	c->before = open_fds();
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	int port = aw_listener_port(l);
	for (int i = 0; i < c->n; i++)
		c->cfds[i] = client(port);
	aw_stream *s;
	if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))))
		return -1;
	c->accepted = 1;
	ignore(aw_sleep(AW_MS(20)));   /* the multishot takes the rest meanwhile */
	ignore(aw_stream_close(s, AW_NEVER));
	aw_listener_close(l);
	for (int i = 0; i < c->n; i++)
		close(c->cfds[i]);
	if (c->rc) {   /* settle */
		ignore(aw_sleep(AW_MS(20)));
		c->after = open_fds();
	}
	return 0;
}

AW_TEST(a_listener_closed_with_connections_queued_leaks_no_fd)
{
	for (int b = 0; b < 2; b++) {
		if (b == 1 && !AW_TEST_HAVE_IO_URING)
			break;
		int backend = b ? AW_BACKEND_URING : AW_BACKEND_EPOLL;
		ctx c = { .n = 100, .rc = 1 };
		CHECK_EQ(run_on(backend, main_close_queued, &c), 0);
		CHECK_EQ(c.accepted, 1);
		CHECK_EQ(c.after, c.before);   /* counted inside the loop */
		ctx d = { .n = 100 };
		int before = open_fds();
		CHECK_EQ(run_on(backend, main_close_queued, &d), 0);
		CHECK_EQ(open_fds(), before);   /* and after it ended */
	}
}

/* No descriptor left: the accept says EMFILE (the connection waits in the
 * backlog), and once a descriptor is free again it is accepted. */
static int main_emfile(void *arg)
{
	ctx *c = arg;
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	c->cfds[0] = client(aw_listener_port(l));
	struct rlimit old, low;
	getrlimit(RLIMIT_NOFILE, &old);
	/* Fill every free descriptor below a lowered limit. */
	low = old;
	low.rlim_cur = 64;
	int hold[64], nh = 0;
	setrlimit(RLIMIT_NOFILE, &low);
	for (int fd; nh < 64 && (fd = dup(0)) >= 0;)
		hold[nh++] = fd;
	aw_stream *s;
	c->rc = aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5)));
	aw_error_clear();
	for (int i = 0; i < nh; i++)
		close(hold[i]);
	setrlimit(RLIMIT_NOFILE, &old);
	if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))) == 0) {
		c->accepted = 1;
		ignore(aw_stream_close(s, AW_NEVER));
	}
	close(c->cfds[0]);
	aw_listener_close(l);
	return 0;
}

AW_TEST(emfile_reaches_the_accept_caller_on_both_backends)
{
	ctx c = { 0 };
	CHECK_EQ(run_on(AW_BACKEND_EPOLL, main_emfile, &c), 0);
	CHECK_EQ(c.rc, -EMFILE);
	CHECK_EQ(c.accepted, 1);
	if (AW_TEST_HAVE_IO_URING) {
		memset(&c, 0, sizeof c);
		CHECK_EQ(run_on(AW_BACKEND_URING, main_emfile, &c), 0);
		CHECK_EQ(c.rc, -EMFILE);
		CHECK_EQ(c.accepted, 1);
	}
}

static int acceptor(void *arg)
{
	ctx *c = arg;
	aw_stream *s;
	c->rc = aw_listener_accept(c->l, &s, AW_NEVER);
	if (c->rc == 0)
		ignore(aw_stream_close(s, AW_NEVER));
	return c->rc;
}

/* A task waiting in accept is cancelled; a client then connects: the next
 * accept (another task) gets it; the cancelled task got only the
 * cancellation. */
static int main_cancel(void *arg)
{
	ctx *c = arg;
	if (aw_tcp_listen(&c->l, "127.0.0.1", 0, NULL))
		return -1;
	aw_task *t;
	if (aw_spawn(&t, acceptor, c, "acceptor"))
		return -1;
	ignore(aw_sleep(AW_MS(10)));   /* it waits in accept now */
	aw_task_cancel(t);
	ignore(aw_task_join(t));
	aw_error_clear();
	int cancelled = c->rc;
	c->cfds[0] = client(aw_listener_port(c->l));
	aw_stream *s;
	if (aw_listener_accept(c->l, &s, aw_deadline_after(AW_SEC(5))) == 0) {
		c->accepted = 1;
		ignore(aw_stream_close(s, AW_NEVER));
	}
	c->rc = cancelled;
	close(c->cfds[0]);
	aw_listener_close(c->l);
	return 0;
}

AW_TEST(a_task_cancelled_in_accept_loses_no_connection)
{
	for (int b = 0; b < 2; b++) {
		if (b == 1 && !AW_TEST_HAVE_IO_URING)
			break;
		ctx c = { 0 };
		CHECK_EQ(run_on(b ? AW_BACKEND_URING : AW_BACKEND_EPOLL, main_cancel, &c), 0);
		CHECK_EQ(c.rc, -ECANCELED);
		CHECK_EQ(c.accepted, 1);
	}
}

/* A deadline in accept on io_uring: -ETIMEDOUT, as on epoll. */
static int main_deadline(void *arg)
{
	ctx *c = arg;
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	aw_stream *s;
	c->rc = aw_listener_accept(l, &s, aw_deadline_after(AW_MS(20)));
	aw_error_clear();
	aw_listener_close(l);
	return 0;
}

AW_TEST(accept_past_its_deadline_says_etimedout_on_both_backends)
{
	for (int b = 0; b < 2; b++) {
		if (b == 1 && !AW_TEST_HAVE_IO_URING)
			break;
		ctx c = { 0 };
		CHECK_EQ(run_on(b ? AW_BACKEND_URING : AW_BACKEND_EPOLL, main_deadline, &c), 0);
		CHECK_EQ(c.rc, -ETIMEDOUT);
	}
}


/* Connections arriving while nobody accepts are pulled into the listener's
 * queue only up to its bound: the rest wait in the kernel's backlog (not
 * accepted: no descriptor of this process), and all are accepted in the
 * end. */
static int main_bound(void *arg)
{
	ctx *c = arg;
	aw_listener *l;
	aw_listen_opts o = { .backlog = 1024 };
	if (aw_tcp_listen(&l, "127.0.0.1", 0, &o))
		return -1;
	int port = aw_listener_port(l);
	aw_stream *s;
	c->cfds[0] = client(port);
	if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))))   /* arms the multishot */
		return -1;
	ignore(aw_stream_close(s, AW_NEVER));
	c->before = open_fds();
	for (int i = 1; i < c->n; i++) {
		c->cfds[i] = client(port);
		if (i % 16 == 0)
			ignore(aw_sleep(AW_MS(1)));   /* let the ring take them in turns */
	}
	ignore(aw_sleep(AW_MS(20)));
	c->after = open_fds();   /* the clients' own fds + what was pulled */
	c->accepted = 1;
	while (c->accepted < c->n && aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))) == 0) {
		c->accepted++;
		ignore(aw_stream_close(s, AW_NEVER));
	}
	for (int i = 0; i < c->n; i++)
		close(c->cfds[i]);
	aw_listener_close(l);
	return 0;
}

AW_TEST(connections_nobody_accepts_are_pulled_only_up_to_the_bound)
{
	if (!AW_TEST_HAVE_IO_URING)
		return;
	ctx c = { .n = 300 };
	CHECK_EQ(run_on(AW_BACKEND_URING, main_bound, &c), 0);
	int pulled = c.after - c.before - (c.n - 1);
	CHECK(pulled >= 64);    /* the multishot did pull */
	CHECK(pulled < 200);    /* and stopped well before all 299 */
	CHECK_EQ(c.accepted, 300);
}

/* Take from the kernel's backlog directly (as a restart's successor would). */
static int take_backlog(int lfd)
{
	int n = 0, fd;
	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		close(fd);
		n++;
	}
	return n;
}

typedef struct {
	int queued_at_stop;   /* aw_fd_accept_stop's count, settled phase */
	int taken;            /* aw_listener_accept_queued, settled phase */
	int after_stop;       /* clients connected after the stop: taken from the queue */
	int backlog;          /* left in the backlog, settled phase */
	int raced, raced_backlog, raced_queued;   /* the stop right after the connects */
	int empty_rc;         /* aw_listener_accept_queued with nothing queued */
	int pending;          /* an error left raised by it */
} stop_ctx;

static int take_queued(aw_listener *l)
{
	int n = 0;
	aw_stream *s;
	while (aw_listener_accept_queued(l, &s) == 0) {
		n++;
		ignore(aw_stream_close(s, AW_NEVER));
	}
	return n;
}

static int main_stop(void *arg)
{
	stop_ctx *c = arg;
	aw_listener *l;
	if (aw_tcp_listen(&l, "127.0.0.1", 0, NULL))
		return -1;
	int port = aw_listener_port(l), lfd = aw_listener_fd(l);
	int cfds[40], n = 0;
	aw_stream *s;
	cfds[n++] = client(port);
	if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))))   /* arms the multishot */
		return -1;
	ignore(aw_stream_close(s, AW_NEVER));
	/* Settled: ten clients, the loop turns (the multishot takes them),
	 * the stop; five more after it. */
	for (int i = 0; i < 10; i++)
		cfds[n++] = client(port);
	ignore(aw_sleep(AW_MS(20)));
	c->queued_at_stop = aw_fd_accept_stop(lfd);
	for (int i = 0; i < 5; i++)
		cfds[n++] = client(port);
	ignore(aw_sleep(AW_MS(20)));
	c->taken = take_queued(l);
	c->empty_rc = aw_listener_accept_queued(l, &s);
	c->pending = aw_error_pending();
	c->backlog = take_backlog(lfd);
	/* Raced: armed again, ten clients and the stop at once (their
	 * completions race the cancel): each is queued or in the backlog. */
	cfds[n++] = client(port);
	if (aw_listener_accept(l, &s, aw_deadline_after(AW_SEC(5))))
		return -1;
	ignore(aw_stream_close(s, AW_NEVER));
	for (int i = 0; i < 10; i++)
		cfds[n++] = client(port);
	c->raced = aw_fd_accept_stop(lfd);
	c->raced_queued = take_queued(l);
	c->raced_backlog = take_backlog(lfd);
	for (int i = 0; i < n; i++)
		close(cfds[i]);
	aw_listener_close(l);
	return 0;
}

/* A server that stops accepting (aw_fd_accept_stop) keeps every connection
 * the kernel already handed it (queued by the multishot, those racing the
 * cancel too: counted and all queued when the stop returns) for
 * aw_listener_accept_queued; clients arriving after it stay in the
 * kernel's backlog for a successor; none is lost in between. On epoll
 * nothing is ever queued: all stay in the backlog. */
AW_TEST(a_stopped_listener_keeps_what_the_kernel_handed_it_and_leaves_the_rest_in_the_backlog)
{
	for (int b = 0; b < 2; b++) {
		if (b == 1 && !AW_TEST_HAVE_IO_URING)
			break;
		stop_ctx c;
		memset(&c, 0, sizeof c);
		int before = open_fds();
		aw_config cfg;
		aw_config_default(&cfg);
		cfg.backend = b ? AW_BACKEND_URING : AW_BACKEND_EPOLL;
		CHECK_EQ(aw_run_config(&cfg, main_stop, &c), 0);
		fprintf(stderr, "%s: queued at the stop %d, backlog %d; raced: queued %d, backlog %d\n",
			b ? "io_uring" : "epoll", c.queued_at_stop, c.backlog, c.raced_queued, c.raced_backlog);
		CHECK_EQ(open_fds(), before);   /* nothing leaked */
		CHECK_EQ(c.empty_rc, -EAGAIN);
		CHECK_EQ(c.pending, 0);         /* -EAGAIN is not raised */
		CHECK_EQ(c.taken, c.queued_at_stop);   /* nothing queued after the stop */
		CHECK_EQ(c.taken + c.backlog, 15);
		CHECK_EQ(c.raced_queued, c.raced);
		CHECK_EQ(c.raced_queued + c.raced_backlog, 10);
		if (b == 0) {
			CHECK_EQ(c.queued_at_stop, 0);
			CHECK_EQ(c.backlog, 15);
		} else {
			CHECK_EQ(c.queued_at_stop, 10);   /* the kernel had handed us those */
			CHECK_EQ(c.backlog, 5);           /* the later ones were left */
		}
	}
}
