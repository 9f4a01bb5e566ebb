/* SPDX-License-Identifier: MIT */
/*
 * TCP and Unix sockets: connecting (every resolved address in order),
 * listening, accepting (also as an async iterator), and the managers that
 * connect on enter and close on exit.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct aw_listener {
	aw_mgr mgr;
	aw_iter iter;
	int fd;
	int port;            /* -1 for Unix sockets */
	bool tcp;
	char *unix_path;     /* removed at close */
	aw_listen_opts opts;
	aw_ledger_entry ledger;
};

static void addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%d", host, port);
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, len, "%s", ((const struct sockaddr_un *)(const void *)sa)->sun_path);
	} else {
		snprintf(buf, len, "?");
	}
}

int aw__socket_connect(int fd, const struct sockaddr *addr, socklen_t len, aw_time deadline)
{
	char where[INET6_ADDRSTRLEN + 16 > 120 ? INET6_ADDRSTRLEN + 16 : 120];
	if (connect(fd, addr, len) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EAGAIN) {
		int e = errno;
		addr_text(addr, where, sizeof where);
		return aw_raise(-e, "connect to %s: %s", where, strerror(e));
	}
	int rc = (aw_fd_wait)(fd, AW_WRITABLE, deadline);
	if (rc) {
		addr_text(addr, where, sizeof where);
		if (rc == -ETIMEDOUT)
			return aw_raise(-ETIMEDOUT, "connect to %s: timed out", where);
		return rc;
	}
	int err = 0;
	socklen_t el = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
		err = errno;
	if (err) {
		addr_text(addr, where, sizeof where);
		return aw_raise(-err, "connect to %s: %s", where, strerror(err));
	}
	return 0;
}

static void set_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int (aw_tcp_connect)(aw_stream **out, const char *host, int port, aw_time deadline)
{
	*out = NULL;
	const aw_loc *opened_at = aw__where;
	if (port <= 0 || port > 65535)
		return aw_raise(-EINVAL, "aw_tcp_connect: invalid port %d", port);
	struct addrinfo *ai;
	int rc = (aw_resolve)(host, port, &ai, deadline);
	if (rc)
		return rc;
	char tried[512] = "";
	size_t used = 0;
	int last = -ECONNREFUSED;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		rc = aw__socket_connect(fd, a->ai_addr, a->ai_addrlen, deadline);
		if (rc == 0) {
			set_nodelay(fd);
			freeaddrinfo(ai);
			aw__where = opened_at;   /* the waits above moved it */
			rc = (aw_stream_from_fd)(out, fd, NULL);
			if (rc)
				aw_fd_close(fd);
			return rc;
		}
		aw_fd_close(fd);
		last = rc;
		char where[128];
		addr_text(a->ai_addr, where, sizeof where);
		if (used < sizeof tried)
			used += (size_t)snprintf(tried + used, sizeof tried - used, "%s%s: %s", used ? "; " : "",
						 where, aw_strerror(rc));
		/* A deadline or cancellation ends the attempts: it would fail
		 * every remaining address the same way. */
		if (rc == -ETIMEDOUT || rc == -ECANCELED)
			break;
	}
	freeaddrinfo(ai);
	return aw_raise(last, "cannot connect to %s:%d (%s)", host, port, tried);
}

int (aw_unix_connect)(aw_stream **out, const char *path, aw_time deadline)
{
	*out = NULL;
	const aw_loc *opened_at = aw__where;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (!path || strlen(path) >= sizeof sun.sun_path)
		return aw_raise(-ENAMETOOLONG, "Unix socket path too long (max %zu bytes)", sizeof sun.sun_path - 1);
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return aw_raise(-errno, "socket: %m");
	int rc = aw__socket_connect(fd, (struct sockaddr *)&sun, sizeof sun, deadline);
	if (rc) {
		aw_fd_close(fd);
		return rc;
	}
	aw__where = opened_at;
	rc = (aw_stream_from_fd)(out, fd, NULL);
	if (rc)
		aw_fd_close(fd);
	return rc;
}

/* ---- connection managers ----------------------------------------------------- */

static int connection_enter(aw_mgr *m)
{
	aw_connection *c = AW_CONTAINER_OF(m, aw_connection, mgr);
	if (c->port < 0)
		return (aw_unix_connect)(&c->stream, c->host, c->deadline);
	return (aw_tcp_connect)(&c->stream, c->host, c->port, c->deadline);
}

static int connection_exit(aw_mgr *m, int err)
{
	aw_connection *c = AW_CONTAINER_OF(m, aw_connection, mgr);
	int rc = (aw_stream_close)(c->stream, AW_NEVER);
	c->stream = NULL;
	return err ? err : rc;
}

static const aw_mgr_ops connection_ops = { .name = "connection", .enter = connection_enter, .exit = connection_exit };

aw_mgr *aw_tcp_connection_init(aw_connection *c, const char *host, int port, aw_time deadline)
{
	*c = (aw_connection){ .mgr = { &connection_ops }, .host = host, .port = port, .deadline = deadline };
	return &c->mgr;
}

aw_mgr *aw_unix_connection_init(aw_connection *c, const char *path, aw_time deadline)
{
	*c = (aw_connection){ .mgr = { &connection_ops }, .host = path, .port = -1, .deadline = deadline };
	return &c->mgr;
}

/* ---- listening ---------------------------------------------------------------- */

static int noop_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int listener_exit(aw_mgr *m, int err)
{
	aw_listener_close(AW_CONTAINER_OF(m, aw_listener, mgr));
	return err;
}

static int iter_exit(aw_mgr *m, int err)
{
	(void)m;   /* the listener outlives the loop over it */
	return err;
}

static int iter_next(aw_iter *it, void **item)
{
	aw_listener *l = AW_CONTAINER_OF(it, aw_listener, iter);
	aw_stream *s;
	int rc = (aw_listener_accept)(l, &s, AW_NEVER);
	if (rc)
		return rc;
	*item = s;
	return 1;
}

static const aw_mgr_ops listener_ops = { .name = "listener", .enter = noop_enter, .exit = listener_exit };
static const aw_mgr_ops listener_iter_ops = { .name = "accept loop", .enter = noop_enter, .exit = iter_exit };

/* Still open at loop shutdown: reported by the ledger, then released. */
static void listener_release_leaked(aw_ledger_entry *e)
{
	aw_listener *l = AW_CONTAINER_OF(e, aw_listener, ledger);
	aw_fd_close(l->fd);
	if (l->unix_path) {
		unlink(l->unix_path);
		free(l->unix_path);
	}
	free(l);
}

static int listener_new(aw_listener **out, int fd, const aw_listen_opts *opts, const aw_loc *loc)
{
	aw_listener *l = aw__calloc(1, sizeof *l);
	if (!l) {
		close(fd);
		return aw_raise(-ENOMEM, "listener: no memory");
	}
	l->mgr.ops = &listener_ops;
	l->iter.mgr.ops = &listener_iter_ops;
	l->iter.next = iter_next;
	l->fd = fd;
	l->port = -1;
	if (opts)
		l->opts = *opts;
	aw_ledger_open(&l->ledger, "listener", loc);
	l->ledger.owner = l;
	l->ledger.release = listener_release_leaked;
	*out = l;
	return 0;
}

int (aw_tcp_listen)(aw_listener **out, const char *host, int port, const aw_listen_opts *opts)
{
	*out = NULL;
	const aw_loc *loc = aw__where;
	if (port < 0 || port > 65535)
		return aw_raise(-EINVAL, "aw_tcp_listen: invalid port %d", port);
	if (!host || !*host)
		host = "0.0.0.0";
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	char portstr[8];
	snprintf(portstr, sizeof portstr, "%d", port);
	struct addrinfo *ai = NULL;
	/* Listening addresses are literals or local names: resolving them
	 * here, before the server runs, does not stall other tasks for long.
	 * Literals never touch the resolver (AI_NUMERICHOST first). */
	hints.ai_flags |= AI_NUMERICHOST;
	int g = getaddrinfo(host, portstr, &hints, &ai);
	if (g == EAI_NONAME) {
		hints.ai_flags &= ~AI_NUMERICHOST;
		g = getaddrinfo(host, portstr, &hints, &ai);
	}
	if (g)
		return aw_raise(-AW_EDNS, "cannot resolve listening address '%s': %s", host, gai_strerror(g));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return aw_raise(-errno, "socket: %m");
	}
	int one = 1;
	if (!(opts && opts->no_reuseaddr))
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (opts && opts->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		return aw_raise(-e, "SO_REUSEPORT: %s", strerror(e));
	}
	if (ai->ai_family == AF_INET6) {
		int v6only = opts && opts->v6only;
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
	}
	int backlog = opts && opts->backlog > 0 ? opts->backlog : 511;
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
		int e = errno;
		char where[128];
		addr_text(ai->ai_addr, where, sizeof where);
		freeaddrinfo(ai);
		close(fd);
		return aw_raise(-e, "cannot listen on %s: %s", where, strerror(e));
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	int rc = listener_new(out, fd, opts, loc);
	if (rc)
		return rc;
	(*out)->tcp = true;
	(*out)->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						: ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

int (aw_unix_listen)(aw_listener **out, const char *path, const aw_listen_opts *opts)
{
	*out = NULL;
	const aw_loc *loc = aw__where;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (!path || !*path || strlen(path) >= sizeof sun.sun_path)
		return aw_raise(-ENAMETOOLONG, "Unix socket path empty or too long (max %zu bytes)",
				sizeof sun.sun_path - 1);
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return aw_raise(-errno, "socket: %m");
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		/* A stale socket file: replace it only if nobody answers on it. */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			close(fd);
			return aw_raise(-EADDRINUSE, "cannot listen on %s: another process listens there", path);
		}
		unlink(path);
	}
	int backlog = opts && opts->backlog > 0 ? opts->backlog : 511;
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 || listen(fd, backlog) != 0) {
		int e = errno;
		close(fd);
		return aw_raise(-e, "cannot listen on %s: %s", path, strerror(e));
	}
	int rc = listener_new(out, fd, opts, loc);
	if (rc) {
		unlink(path);
		return rc;
	}
	(*out)->unix_path = aw__strdup(path);
	return 0;
}

int (aw_listener_from_fd)(aw_listener **out, int fd, const aw_listen_opts *opts)
{
	*out = NULL;
	const aw_loc *loc = aw__where;
	int type = 0, listening = 0;
	socklen_t tl = sizeof type, ll = sizeof listening;
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0)
		return aw_raise(-EBADF, "aw_listener_from_fd: fd %d is not a socket", fd);
	if (type != SOCK_STREAM || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) != 0 || !listening)
		return aw_raise(-EINVAL, "aw_listener_from_fd: fd %d is not a listening stream socket", fd);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		return aw_raise(-errno, "aw_listener_from_fd: getsockname: %m");
	/* Non-blocking and close-on-exec here: the descriptor may be shared
	 * with other processes (inherited), where O_NONBLOCK is shared too;
	 * every user of a listener accepts without blocking anyway. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
		return aw_raise(-errno, "aw_listener_from_fd: fcntl: %m");
	int rc = listener_new(out, fd, opts, loc);
	if (rc)
		return rc;
	if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
		(*out)->tcp = true;
		(*out)->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
							: ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	return 0;
}

int aw_listener_port(const aw_listener *l) { return l->port; }
int aw_listener_fd(const aw_listener *l) { return l->fd; }
aw_mgr *aw_listener_mgr(aw_listener *l) { return &l->mgr; }
aw_iter *aw_listener_iter(aw_listener *l) { return &l->iter; }

/* An accepted connection's socket options, then its stream (the fd is
 * closed if that fails). */
static int accepted_stream(aw_listener *l, int fd, aw_stream **out, const aw_loc *loc)
{
	if (l->tcp) {
		set_nodelay(fd);
		if (l->opts.keepalive) {
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
		}
	}
	aw__where = loc;
	int rc = (aw_stream_from_fd)(out, fd, &l->opts.stream);
	if (rc)
		close(fd);
	return rc;
}

int (aw_listener_accept_queued)(aw_listener *l, aw_stream **out)
{
	*out = NULL;
	const aw_loc *loc = aw__where;
	int fd = aw_fd_accept_queued(l->fd);
	if (fd < 0)
		return fd;   /* -EAGAIN: none queued */
	return accepted_stream(l, fd, out, loc);
}

int (aw_listener_accept)(aw_listener *l, aw_stream **out, aw_time deadline)
{
	*out = NULL;
	const aw_loc *loc = aw__where;
	for (;;) {
		/* On io_uring: the listener's multishot accept (accept_uring.c);
		 * -EOPNOTSUPP: not here, accept4 as below. */
		aw__where = loc;
		int fd = (aw_fd_accept)(l->fd, deadline);
		if (fd < 0 && fd != -EOPNOTSUPP)
			return fd;
		if (fd < 0)
			fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0)
			return accepted_stream(l, fd, out, loc);
		int e = errno;
		if (e == EINTR || e == ECONNABORTED)
			continue;   /* the client gave up before we accepted: not ours */
		if (e == EAGAIN || e == EWOULDBLOCK) {
			int rc = (aw_fd_wait)(l->fd, AW_READABLE, deadline);
			if (rc == -ETIMEDOUT)
				return aw_raise(-ETIMEDOUT, "no connection before the deadline");
			if (rc)
				return rc;
			continue;
		}
		return aw_raise(-e, "accept on fd %d: %s", l->fd, strerror(e));
	}
}

void aw_listener_close(aw_listener *l)
{
	if (!l)
		return;
	aw_fd_close(l->fd);
	if (l->unix_path) {
		unlink(l->unix_path);
		free(l->unix_path);
	}
	aw_ledger_close(&l->ledger);
	free(l);
}
