/* SPDX-License-Identifier: MIT */
/* See http_util.h. */
#include "http_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the server child ---------------------------------------------------------- */

typedef struct child_args {
	srv_make_fn make;
	int report_fd;
} child_args;

static int child_main(void *arg)
{
	child_args *a = arg;
	aw_app *app = a->make();
	if (!app)
		return -1;
	aw_listener *l;
	int rc = aw_tcp_listen(&l, "127.0.0.1", 0, NULL);
	if (rc) {
		aw_error_print(stderr, aw_error_current());
		aw_app_free(app);
		return rc;
	}
	int port = aw_listener_port(l);
	if (write(a->report_fd, &port, sizeof port) != (ssize_t)sizeof port)
		rc = -EIO;
	close(a->report_fd);
	AW_WITH(aw_listener_mgr(l)) {
		if (!rc)
			rc = aw_app_serve(app, l);
		if (rc)
			aw_error_print(stderr, aw_error_current());
	}
	aw_app_free(app);
	return rc;
}

static char *read_fd_all(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	for (;;) {
		if (len + 4096 + 1 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t n = pread(fd, buf + len, cap - len - 1, (off_t)len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	return buf;
}

static int serve_made(void *arg, int report_fd)
{
	child_args *a = arg;
	a->report_fd = report_fd;
	return child_main(a);
}

int srv_start(srv *s, srv_make_fn make)
{
	child_args a = { make, -1 };
	return srv_start_child(s, serve_made, &a);
}

typedef struct child_run {
	srv_child_fn fn;
	void *arg;
	int report_fd;
} child_run;

static int child_run_main(void *arg)
{
	child_run *c = arg;
	return c->fn(c->arg, c->report_fd);
}

int srv_start_child(srv *s, srv_child_fn fn, void *arg)
{
	memset(s, 0, sizeof *s);
	s->logfd = -1;
	char path[] = "/tmp/aw-http-test-XXXXXX";
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
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		close(lf);
		return -1;
	}
	if (pid == 0) {
		/* never outlive the test (a failed CHECK returns early) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(p[0]);
		dup2(lf, 2);
		close(lf);
		setvbuf(stderr, NULL, _IONBF, 0);
		child_run c = { fn, arg, p[1] };
		int rc = aw_run(child_run_main, &c);
		fflush(NULL);
		exit(rc == 0 ? 0 : 1);   /* exit(): LeakSanitizer checks the server too */
	}
	close(p[1]);
	s->pid = pid;
	s->logfd = lf;
	struct pollfd pf = { p[0], POLLIN, 0 };
	int port = 0;
	if (poll(&pf, 1, 10000) == 1 && read(p[0], &port, sizeof port) == (ssize_t)sizeof port)
		s->port = port;
	close(p[0]);
	return s->port ? 0 : -1;   /* the child is left for srv_wait */
}

/* Wait for the child `pid` to exit, up to 15 s, then SIGKILL it; its wait
 * status into *status. True if it had to be killed. */
static bool reap_child(pid_t pid, int *status)
{
	long long deadline = now_ms() + 15000;
	for (;;) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return false;
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return true;
		}
		usleep(2000);
	}
}

int srv_stop(srv *s)
{
	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	return srv_wait(s);
}

int srv_wait(srv *s)
{
	if (s->pid <= 0)
		return -1;
	int status = 0;
	bool killed = reap_child(s->pid, &status);
	s->pid = 0;
	/* kept in a global (reachable: not a leak), replaced by the next */
	static char *last_log;
	free(last_log);
	s->logdata = last_log = read_fd_all(s->logfd);
	close(s->logfd);
	s->logfd = -1;
	if (killed)
		return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	fprintf(stderr, "srv_wait: the server died of signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
	return -1;
}

char *srv_log(const srv *s)
{
	return strdup(s->logdata ? s->logdata : "");
}

/* ---- the client ------------------------------------------------------------------- */

int cli_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin)) {
		close(fd);
		return -1;
	}
	return fd;
}

int cli_send(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int cli_sends(int fd, const char *s)
{
	return cli_send(fd, s, strlen(s));
}

/* A buffered reader over the fd: bytes left over after one response stay
 * for the next (pipelining), kept per fd in a small table. */
typedef struct rbuf {
	int fd;
	char data[65536];
	size_t len;
} rbuf;
static rbuf bufs[8];

static rbuf *rb_for(int fd)
{
	for (int i = 0; i < 8; i++)
		if (bufs[i].fd == fd && bufs[i].len)
			return &bufs[i];
	for (int i = 0; i < 8; i++)
		if (!bufs[i].len) {
			bufs[i].fd = fd;
			return &bufs[i];
		}
	return &bufs[0];
}

static int rb_fill(rbuf *b)
{
	if (b->len == sizeof b->data)
		return -1;
	ssize_t n;
	do
		n = recv(b->fd, b->data + b->len, sizeof b->data - b->len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	b->len += (size_t)n;
	return (int)n;
}

static void rb_drop(rbuf *b, size_t n)
{
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

static int body_put(resp *r, size_t *cap, const char *p, size_t n)
{
	if (r->body_len + n + 1 > *cap) {
		*cap = (r->body_len + n + 1) * 2;
		char *nb = realloc(r->body, *cap);
		if (!nb)
			return -1;
		r->body = nb;
	}
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = 0;
	return 0;
}

static int read_resp(int fd, resp *r, bool no_body);

int cli_read(int fd, resp *r, bool no_body)
{
	int rc = read_resp(fd, r, no_body);
	if (rc < 0)
		resp_free(r);   /* a failed read holds nothing: callers may return at once */
	return rc;
}

static int read_resp(int fd, resp *r, bool no_body)
{
	memset(r, 0, sizeof *r);
	rbuf *b = rb_for(fd);
	size_t cap = 0;
	body_put(r, &cap, "", 0);
	char *end;
	for (;;) {
		/* skip interim 1xx responses */
		while (!(end = memmem(b->data, b->len, "\r\n\r\n", 4)))
			if (rb_fill(b) <= 0)
				return -1;
		size_t hl = (size_t)(end - b->data) + 4;
		if (hl >= sizeof r->head)
			return -1;
		memcpy(r->head, b->data, hl);
		r->head[hl] = 0;
		rb_drop(b, hl);
		if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
			return -1;
		if (r->status >= 200)
			break;
	}
	char v[64];
	if (no_body || r->status == 204 || r->status == 304)
		return 0;
	if (resp_header(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0) {
		r->chunked = true;
		for (;;) {
			char *eol;
			while (!(eol = memmem(b->data, b->len, "\r\n", 2)))
				if (rb_fill(b) <= 0)
					return -1;
			size_t sz = strtoul(b->data, NULL, 16);
			rb_drop(b, (size_t)(eol - b->data) + 2);
			if (sz == 0) {
				while (!(eol = memmem(b->data, b->len, "\r\n\r\n", 4)) &&
				       !(b->len >= 2 && b->data[0] == '\r' && b->data[1] == '\n'))
					if (rb_fill(b) <= 0)
						return -1;
				if (b->len >= 2 && b->data[0] == '\r' && b->data[1] == '\n')
					rb_drop(b, 2);
				else
					rb_drop(b, (size_t)(eol - b->data) + 4);
				return 0;
			}
			while (b->len < sz + 2)
				if (rb_fill(b) <= 0)
					return -1;
			body_put(r, &cap, b->data, sz);
			rb_drop(b, sz + 2);
		}
	}
	if (resp_header(r, "Content-Length", v, sizeof v)) {
		size_t n = strtoul(v, NULL, 10);
		while (r->body_len < n) {
			if (!b->len && rb_fill(b) <= 0)
				return -1;
			size_t take = b->len < n - r->body_len ? b->len : n - r->body_len;
			body_put(r, &cap, b->data, take);
			rb_drop(b, take);
		}
		return 0;
	}
	/* close-delimited */
	for (;;) {
		if (b->len) {
			body_put(r, &cap, b->data, b->len);
			rb_drop(b, b->len);
		}
		int n = rb_fill(b);
		if (n < 0)
			return -1;
		if (n == 0) {
			r->eof = true;
			return 0;
		}
	}
}

void resp_free(resp *r)
{
	free(r->body);
	r->body = NULL;
}

bool resp_header(const resp *r, const char *name, char *out, size_t len)
{
	size_t n = strlen(name);
	for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		const char *line = p + 2;
		if (strncasecmp(line, name, n) == 0 && line[n] == ':') {
			const char *v = line + n + 1;
			while (*v == ' ')
				v++;
			const char *e = strstr(v, "\r\n");
			size_t vl = e ? (size_t)(e - v) : strlen(v);
			if (vl >= len)
				vl = len - 1;
			memcpy(out, v, vl);
			out[vl] = 0;
			return true;
		}
	}
	return false;
}

bool cli_closed(int fd, int ms)
{
	rbuf *b = rb_for(fd);
	b->len = 0;
	long long deadline = now_ms() + ms;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			return false;
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, (int)left) <= 0)
			return false;
		char tmp[4096];
		ssize_t n = recv(fd, tmp, sizeof tmp, 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return true;
	}
}

char *cli_read_all(int fd, size_t *len, int ms)
{
	rbuf *b = rb_for(fd);
	size_t cap = b->len + 4096, n = b->len;
	char *out = malloc(cap);
	memcpy(out, b->data, b->len);
	b->len = 0;
	long long deadline = now_ms() + ms;
	for (;;) {
		long long left = deadline - now_ms();
		if (left <= 0)
			break;
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, (int)left) <= 0)
			break;
		if (n + 4096 + 1 > cap) {
			cap *= 2;
			out = realloc(out, cap);
		}
		ssize_t r = recv(fd, out + n, cap - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	out[n] = 0;
	*len = n;
	return out;
}

int http_once(int port, const char *raw, size_t len, resp *r, bool *closed)
{
	memset(r, 0, sizeof *r);
	int fd = cli_connect(port);
	if (fd < 0)
		return -1;
	int status = -1;
	if (cli_send(fd, raw, len) == 0 && cli_read(fd, r, strncmp(raw, "HEAD ", 5) == 0) == 0)
		status = r->status;
	if (closed)
		*closed = cli_closed(fd, 3000);
	rb_for(fd)->len = 0;
	close(fd);
	return status;
}

/* ---- curl ---------------------------------------------------------------------------- */

int run_cmd(char *out, size_t outlen, const char *const argv[])
{
	proc p;
	if (proc_start(&p, argv))
		return -1;
	int st = proc_wait(&p, 0);
	snprintf(out, outlen, "%s%s", p.out ? p.out : "", p.err ? p.err : "");
	return st;
}

int run_curl(char *out, size_t outlen, ...)
{
	const char *argv[64];
	int argc = 0;
	argv[argc++] = "curl";
	va_list ap;
	va_start(ap, outlen);
	const char *a;
	while ((a = va_arg(ap, const char *)) && argc < 62)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		int dn = open("/dev/null", O_WRONLY);
		if (dn >= 0)
			dup2(dn, 2);
		execvp("curl", (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0;
	for (;;) {
		ssize_t r = read(p[0], out + n, outlen - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == outlen - 1)
			break;
	}
	out[n] = 0;
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- programs ----------------------------------------------------------------------- */

int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t sl = sizeof sin;
	int port = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sin, &sl) == 0)
		port = ntohs(sin.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static int anon_file(void)
{
	char path[] = "/tmp/aw-http-proc-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

int proc_start(proc *p, const char *const argv[])
{
	memset(p, 0, sizeof *p);
	p->outfd = anon_file();
	p->errfd = anon_file();
	if (p->outfd < 0 || p->errfd < 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(p->outfd, 1);
		dup2(p->errfd, 2);
		int dn = open("/dev/null", O_RDONLY);
		if (dn >= 0)
			dup2(dn, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	p->pid = pid;
	return 0;
}

bool wait_listening(int port, int ms)
{
	long long deadline = now_ms() + ms;
	while (now_ms() < deadline) {
		int fd = cli_connect(port);
		if (fd >= 0) {
			close(fd);
			return true;
		}
		usleep(10000);
	}
	return false;
}

bool cli_wait_accepted(int fd, int ms)
{
	struct sockaddr_in me, peer;
	socklen_t len = sizeof me;
	if (getsockname(fd, (struct sockaddr *)&me, &len) || (len = sizeof peer, getpeername(fd, (struct sockaddr *)&peer, &len)))
		return false;
	/* The server's end of this connection: local = our peer, remote = us. */
	char want[64];
	snprintf(want, sizeof want, "%08X:%04X %08X:%04X", (unsigned)peer.sin_addr.s_addr, ntohs(peer.sin_port),
		 (unsigned)me.sin_addr.s_addr, ntohs(me.sin_port));
	long long deadline = now_ms() + ms;
	do {
		FILE *f = fopen("/proc/net/tcp", "r");
		char line[512];
		bool accepted = false;
		while (f && fgets(line, sizeof line, f)) {
			char *at = strstr(line, want);
			unsigned long inode = 0;
			/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
			if (at && sscanf(at, "%*s %*s %*s %*s %*s %*s %*s %*s %lu", &inode) == 1 && inode != 0)
				accepted = true;
		}
		if (f)
			fclose(f);
		if (accepted)
			return true;
		usleep(5000);
	} while (now_ms() < deadline);
	return false;
}

int proc_wait(proc *p, int sig)
{
	if (p->pid <= 0)
		return -1;
	if (sig)
		kill(p->pid, sig);
	int status = 0;
	bool killed = reap_child(p->pid, &status);
	p->pid = 0;
	static char *last_out, *last_err;   /* reachable: not leaks */
	free(last_out);
	free(last_err);
	p->out = last_out = read_fd_all(p->outfd);
	p->err = last_err = read_fd_all(p->errfd);
	close(p->outfd);
	close(p->errfd);
	p->outfd = p->errfd = -1;
	if (killed || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}
