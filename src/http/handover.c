/* SPDX-License-Identifier: MIT */
/*
 * Generations of a server and the sockets they hand on.
 *
 * Listening sockets outlive the processes that accept on them: aw_app_run
 * binds them once (or takes them from its parent by systemd's LISTEN_FDS
 * protocol), its workers inherit them, and a graceful restart (SIGUSR2)
 * runs the executable again with the same sockets as descriptors 3.. and
 * LISTEN_FDS/LISTEN_PID set, as systemd's socket activation does. The new
 * generation says it serves through AWITH_READY_FD (a pipe); only then does
 * the old one stop accepting. A connection that arrives in between waits
 * in the one accept queue both generations share, so none is refused or
 * lost: this is why the sockets are handed over rather than bound again
 * with SO_REUSEPORT (closing a reuseport socket drops the connections
 * queued on it).
 *
 * The protocol is implemented here rather than with libsystemd: it is
 * three environment variables and a datagram, and the library stays free
 * of that dependency.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_LISTEN_FDS 64

static bool parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* sd_listen_fds_with_names(3): the descriptors handed to this very
 * process (LISTEN_PID names it: a child that inherited the environment is
 * not meant), removed from the environment so that our own children do
 * not take them too. Bit i of *tls is set when descriptor 3+i is named
 * "https" in LISTEN_FDNAMES (the TLS port's sockets, as aw__handover_spawn
 * names them; a systemd .socket unit names them with FileDescriptorName=). */
int aw__listen_fds(int *first, uint64_t *tls)
{
	*first = 3;
	*tls = 0;
	const char *pid_s = getenv("LISTEN_PID"), *fds_s = getenv("LISTEN_FDS");
	long pid = 0, n = 0;
	bool mine = parse_long(pid_s, 1, LONG_MAX, &pid) && pid == (long)getpid() &&
		    parse_long(fds_s, 1, MAX_LISTEN_FDS, &n);
	const char *names = getenv("LISTEN_FDNAMES");
	for (int i = 0; mine && names && i < n; i++) {
		size_t len = strcspn(names, ":");
		if (len == 5 && strncmp(names, "https", 5) == 0)
			*tls |= (uint64_t)1 << i;
		if (!names[len])
			break;
		names += len + 1;
	}
	if (pid_s || fds_s) {
		unsetenv("LISTEN_PID");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_FDNAMES");
	}
	if (!mine)
		return 0;
	for (int i = 0; i < n; i++)
		fcntl(3 + i, F_SETFD, FD_CLOEXEC);
	return (int)n;
}

/* The old generation's pipe: written once this generation serves. */
static int take_ready_fd(void)
{
	long fd = -1;
	const char *s = getenv("AWITH_READY_FD");
	if (!s)
		return -1;
	bool ok = parse_long(s, 3, 65535, &fd);
	unsetenv("AWITH_READY_FD");
	if (!ok || fcntl((int)fd, F_GETFD) < 0)
		return -1;
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	return (int)fd;
}

int aw__listen_socket(const char *host, int port, bool reuseport, int *fd_out, int *port_out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	char ps[8];
	snprintf(ps, sizeof ps, "%d", port);
	struct addrinfo *ai;
	int g = getaddrinfo(host, ps, &hints, &ai);
	if (g)
		return aw_raise(-AW_EDNS, "cannot resolve listening address '%s': %s", host, gai_strerror(g));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 511)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return aw_raise(-e, "cannot listen on %s:%d: %s", host, port, strerror(e));
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

/* ---- starting the next generation ------------------------------------------------ */

/* The executable now at our path: after a deploy replaced the file,
 * /proc/self/exe reads "PATH (deleted)"; the new file is at PATH. */
static int exe_path(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n <= 0)
		return aw_raise(-errno, "cannot read /proc/self/exe: %m");
	buf[n] = 0;
	static const char del[] = " (deleted)";
	size_t dl = sizeof del - 1;
	if ((size_t)n > dl && strcmp(buf + n - dl, del) == 0)
		buf[n - dl] = 0;
	return 0;
}

/* Our own argv, from /proc/self/cmdline (aw_app_run is not given it). */
static char **self_argv(char **blob)
{
	*blob = NULL;
	FILE *f = fopen("/proc/self/cmdline", "re");
	if (!f)
		return NULL;
	size_t cap = 4096, len = 0;
	char *b = malloc(cap);
	size_t got;
	while (b && (got = fread(b + len, 1, cap - len - 1, f)) > 0) {
		len += got;
		if (len + 1 >= cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (!b || len == 0) {
		free(b);
		return NULL;
	}
	b[len] = 0;
	size_t argc = 0;
	for (size_t i = 0; i < len; i++)
		if (b[i] == 0)
			argc++;
	if (b[len - 1] != 0)
		argc++;
	char **argv = calloc(argc + 1, sizeof *argv);
	if (!argv) {
		free(b);
		return NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < len && k < argc; i += strlen(b + i) + 1)
		argv[k++] = b + i;
	*blob = b;
	return argv;
}

static bool env_ours(const char *e)
{
	return strncmp(e, "LISTEN_PID=", 11) == 0 || strncmp(e, "LISTEN_FDS=", 11) == 0 ||
	       strncmp(e, "LISTEN_FDNAMES=", 15) == 0 || strncmp(e, "AWITH_READY_FD=", 15) == 0;
}

int aw__handover_spawn(aw_app *app, const int *fds, int n, int ntls, pid_t *child, int *ready_rd)
{
	(void)app;
	*child = -1;
	*ready_rd = -1;
	if (n <= 0 || n > MAX_LISTEN_FDS)
		return aw_raise(-EINVAL, "graceful restart: no listening socket to hand over");
	char path[PATH_MAX];
	int rc = exe_path(path, sizeof path);
	if (rc)
		return rc;
	char *blob;
	char **argv = self_argv(&blob);
	if (!argv)
		return aw_raise(-ENOMEM, "graceful restart: cannot read /proc/self/cmdline");
	size_t ne = 0;
	while (environ[ne])
		ne++;
	char **envp = calloc(ne + 5, sizeof *envp);
	static char fds_var[32], ready_var[40], pid_var[32], names_var[16 + 6 * MAX_LISTEN_FDS];
	snprintf(fds_var, sizeof fds_var, "LISTEN_FDS=%d", n);
	/* The last ntls sockets are the TLS port's: named so that the next
	 * generation tells them apart. */
	size_t nl = (size_t)snprintf(names_var, sizeof names_var, "LISTEN_FDNAMES=");
	for (int i = 0; i < n; i++)
		nl += (size_t)snprintf(names_var + nl, sizeof names_var - nl, "%s%s", i ? ":" : "",
				       i >= n - ntls ? "https" : "http");
	snprintf(ready_var, sizeof ready_var, "AWITH_READY_FD=%d", 3 + n);
	strcpy(pid_var, "LISTEN_PID=");
	int p[2] = { -1, -1 }, hi[MAX_LISTEN_FDS + 1];
	int nhi = 0;
	if (!envp) {
		rc = aw_raise(-ENOMEM, "graceful restart: no memory");
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < ne; i++)
		if (!env_ours(environ[i]))
			envp[k++] = environ[i];
	envp[k++] = fds_var;
	envp[k++] = ready_var;
	envp[k++] = pid_var;
	envp[k++] = names_var;
	if (pipe2(p, O_CLOEXEC)) {
		rc = aw_raise(-errno, "graceful restart: pipe: %m");
		goto out;
	}
	/* Above every target (3 .. 3+n), so the child's dup2s cannot
	 * overwrite a descriptor it has still to move. */
	for (int i = 0; i <= n; i++) {
		hi[i] = fcntl(i < n ? fds[i] : p[1], F_DUPFD_CLOEXEC, 3 + n + 1);
		if (hi[i] < 0) {
			rc = aw_raise(-errno, "graceful restart: fcntl: %m");
			goto out;
		}
		nhi++;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		rc = aw_raise(-errno, "graceful restart: fork: %m");
		goto out;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here (the parent may have
		 * threads). A clean signal mask: ours blocks what our loop
		 * waits for, and exec keeps the mask. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int i = 0; i <= n; i++)
			if (dup2(hi[i], 3 + i) < 0)
				_exit(127);
		char digits[24];
		int nd = 0;
		for (long v = (long)getpid(); v > 0 && nd < 23; v /= 10)
			digits[nd++] = (char)('0' + v % 10);
		char *d = pid_var + 11;
		while (nd > 0)
			*d++ = digits[--nd];
		*d = 0;
		execve(path, argv, envp);
		_exit(127);
	}
	*child = pid;
	*ready_rd = p[0];
	p[0] = -1;
	fcntl(*ready_rd, F_SETFL, fcntl(*ready_rd, F_GETFL) | O_NONBLOCK);
	aw__http_log_error(app, NULL, "graceful restart: started %s (pid %d) with %d listening socket(s)", path,
			   (int)pid, n);
out:
	for (int i = 0; i < nhi; i++)
		close(hi[i]);
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	free(envp);
	free(argv);
	free(blob);
	return rc;
}

/* ---- readiness of a generation ----------------------------------------------------- */

static void sd_notify_ready(void)
{
	const char *addr = getenv("NOTIFY_SOCKET");
	if (!addr || (addr[0] != '/' && addr[0] != '@'))
		return;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	size_t len = strlen(addr);
	if (len >= sizeof sun.sun_path)
		return;
	memcpy(sun.sun_path, addr, len);
	if (addr[0] == '@')
		sun.sun_path[0] = 0;   /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	char msg[64];
	int ml = snprintf(msg, sizeof msg, "READY=1\nMAINPID=%d", (int)getpid());
	(void)!sendto(fd, msg, (size_t)ml, MSG_NOSIGNAL, (struct sockaddr *)&sun,
		      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

static void write_pid_file(aw_app *app)
{
	if (!app->pid_file)
		return;
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.%d.tmp", app->pid_file, (int)getpid());
	FILE *f = fopen(tmp, "we");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0 || rename(tmp, app->pid_file) != 0) {
		aw__http_log_error(app, NULL, "cannot write the pid file %s: %s", app->pid_file, strerror(errno));
		unlink(tmp);
	}
}

void aw__generation_ready(aw_app *app)
{
	if (!app->run_managed)
		return;
	write_pid_file(app);
	if (app->ready_fd >= 0) {
		(void)!write(app->ready_fd, "R", 1);
		close(app->ready_fd);
		app->ready_fd = -1;
	}
	sd_notify_ready();
}

void aw__generation_exit(aw_app *app)
{
	if (app->ready_fd >= 0) {
		close(app->ready_fd);
		app->ready_fd = -1;
	}
	if (!app->pid_file)
		return;
	FILE *f = fopen(app->pid_file, "re");
	int pid = 0;
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid == (int)getpid())
		unlink(app->pid_file);
}

void aw__app_announce_started(aw_app *app)
{
	if (app->worker >= 0) {
		if (app->started_fd >= 0) {
			(void)!write(app->started_fd, "S", 1);
			close(app->started_fd);
			app->started_fd = -1;
		}
	} else {
		aw__generation_ready(app);
	}
}

void aw__generation_init(aw_app *app)
{
	app->run_managed = true;
	app->ready_fd = take_ready_fd();
}

int aw_app_pid_file(aw_app *app, const char *path)
{
	if (!app || !path || !*path)
		return aw_raise(-EINVAL, "aw_app_pid_file: no app or no path");
	char *p = aw__strdup(path);
	if (!p)
		return aw_raise(-ENOMEM, "aw_app_pid_file: no memory");
	free(app->pid_file);
	app->pid_file = p;
	return 0;
}

/* ---- one process: SIGUSR2 inside the loop ------------------------------------------ */

/* Returns 0 (restarted, or failed and serving on), -ECANCELED (the
 * watcher was cancelled), or SIGINT/SIGTERM that came while the new
 * generation was starting (it was told to stop; the caller stops this
 * one as for that signal). */

int aw__handover_single(aw_app *app)
{
	if (app->handing_over)
		return 0;
	pid_t child;
	int rd;
	int rc = aw__handover_spawn(app, app->gen_fds, app->gen_nfds, app->gen_ntls, &child, &rd);
	if (rc) {
		aw__http_log_error(app, aw_error_current(), "graceful restart failed: this process goes on serving");
		aw_error_clear();
		return 0;
	}
	char b = 0;
	ssize_t got = -1;
	int stop_sig = 0;
	/* Wait for "ready" in short steps: a SIGTERM meanwhile stops the
	 * restart (and then this process, as usual) instead of waiting. */
	aw_time deadline = aw_now() + AW_SEC(60);
	for (;;) {
		aw_time step = aw_now() + AW_MS(100);
		rc = aw_fd_wait(rd, AW_READABLE, step < deadline ? step : deadline);
		if (rc == 0) {
			got = read(rd, &b, 1);
			break;
		}
		aw_error_clear();
		if (rc != -ETIMEDOUT || aw_now() >= deadline)
			break;
		int sig = aw_signals_wait(app->sig, aw_now());
		aw_error_clear();
		if (sig == SIGHUP)
			aw__http_tls_on_sighup(app);
		if (sig == SIGINT || sig == SIGTERM) {
			stop_sig = sig;
			break;
		}
	}
	aw_fd_close(rd);
	if (got == 1) {
		aw__http_log_error(app, NULL, "graceful restart: pid %d serves: this one (pid %d) drains", (int)child,
				   (int)getpid());
		app->listener_shared = true;
		app->handing_over = true;
		aw_app_stop(app);
		return 0;
	}
	if (stop_sig) {
		aw__http_log_error(app, NULL, "graceful restart: %s before pid %d was ready: stopping it",
				   strsignal(stop_sig), (int)child);
		kill(child, SIGTERM);
		return stop_sig;
	}
	aw__http_log_error(app, NULL, "graceful restart: pid %d did not become ready%s: this process goes on serving",
			   (int)child, rc ? " within 60 s" : "");
	if (rc)
		kill(child, SIGTERM);
	(void)waitpid(child, NULL, WNOHANG);
	return rc == -ECANCELED ? rc : 0;
}
