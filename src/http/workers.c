/* SPDX-License-Identifier: MIT */
/*
 * Running an app: in this process, or as N worker processes that each
 * bind host:port with SO_REUSEPORT and run their own loop (the kernel
 * spreads connections over them, as with nginx's workers).
 *
 * The supervisor is plain C with no loop: it forks before any loop or
 * thread exists, then waits for signals with sigwaitinfo. A worker that
 * dies (a signal, a non-zero exit) is restarted, with a backoff when it
 * dies young; a worker whose startup failed (it could not listen, or the
 * lifespan's setup failed) is not: the supervisor stops the others and
 * returns the failure. SIGTERM or SIGINT is passed on to every worker,
 * each drains its connections (aw_app_serve), and the supervisor returns
 * when the last one has exited. Workers get SIGTERM if the supervisor dies
 * (PR_SET_PDEATHSIG).
 *
 * The listening sockets belong to the supervisor (one SO_REUSEPORT socket
 * per worker and port, cleartext and TLS, or those inherited through
 * LISTEN_FDS): a worker accepts on its own sockets and a restarted worker
 * takes the same ones, so nothing queued on them is lost; SIGUSR2 hands
 * them all to the next generation (handover.c; the TLS ones named "https"
 * in LISTEN_FDNAMES), which the old one's workers leave to accept alone.
 * SIGHUP (with TLS) reloads the certificates: the supervisor's copy, and
 * it passes the signal on to every worker.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bool aw__app_started(const aw_app *app);

#define EXIT_STARTUP_FAILED 3

typedef struct run_args {
	aw_app *app;
	const char *host;
	int port;
	int fd;            /* the listening socket (bound by aw_app_run or inherited); -1: none */
	int tls_fd;        /* the TLS port's, likewise (-1: no TLS) */
	int worker;        /* -1: single process */
	int rc;
} run_args;

static void log_listening(run_args *a, const char *scheme, const char *host, aw_listener *l)
{
	if (a->worker < 0)
		aw__http_log_error(a->app, NULL, "listening on %s://%s:%d (pid %d)", scheme, host, aw_listener_port(l),
				   (int)getpid());
	else
		aw__http_log_error(a->app, NULL, "worker %d listening on %s://%s:%d (pid %d)", a->worker, scheme, host,
				   aw_listener_port(l), (int)getpid());
}

/* A listener on a socket aw_app_run bound or inherited ("http" or
 * "https"). */
static int run_adopt(run_args *a, int sock, const char *scheme, aw_listener **l)
{
	/* A descriptor of our own: the listener closes it, the socket stays
	 * open in the supervisor (or for the next generation). */
	int fd = fcntl(sock, F_DUPFD_CLOEXEC, 3);
	int rc = fd < 0 ? aw_raise(-errno, "dup: %m") : aw_listener_from_fd(l, fd, NULL);
	if (rc) {
		if (fd >= 0 && rc != -ENOMEM)
			close(fd);
		aw__http_log_error(a->app, aw_error_current(), "cannot listen (%s)", scheme);
		return rc;
	}
	const char *host = a->host;
	if (strcmp(scheme, "https") == 0 && aw__http_tls_host(a->app))
		host = aw__http_tls_host(a->app);
	log_listening(a, scheme, host, *l);
	return 0;
}

static int run_main(void *arg)
{
	run_args *a = arg;
	aw_app *app = a->app;
	aw_listener *plain = NULL, *tls = NULL;
	aw_app_listener ls[2];
	size_t n = 0;
	int rc = 0;
	/* The cleartext socket (none with AW_APP_NO_PORT), and the TLS port
	 * beside it when the app has TLS settings. */
	if (a->fd >= 0) {
		rc = run_adopt(a, a->fd, "http", &plain);
		if (rc)
			goto out;
		ls[n++] = (aw_app_listener){ plain, false };
	}
	if (app->tls && a->tls_fd >= 0) {
		rc = run_adopt(a, a->tls_fd, "https", &tls);
		if (rc)
			goto out;
		ls[n++] = (aw_app_listener){ tls, true };
	}
	rc = aw_app_serve_listeners(app, ls, n);
	if (rc)
		aw__http_log_error(app, aw_error_current(), "the server stopped with an error");
out:
	if (plain)
		aw_listener_close(plain);
	if (tls)
		aw_listener_close(tls);
	a->rc = rc;
	return rc;
}

static int run_here(aw_app *app, const char *host, int port, int fd, int tls_fd, int worker)
{
	app->worker = worker;
	run_args a = { app, host, port, fd, tls_fd, worker, 0 };
	int rc = aw_run(run_main, &a);
	if (rc == -EBUSY)
		return aw_raise(-EBUSY, "aw_app_run runs its own loop: call it outside aw_run "
				"(inside a loop, use aw_app_serve)");
	return rc;
}

/* ---- the supervisor ------------------------------------------------------------------- */

typedef struct worker {
	pid_t pid;
	struct timespec started;
	struct timespec restart_at;   /* pending restart (pid == 0) */
	int backoff_ms;
	bool pending;
} worker;

static double since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static pid_t start_worker(aw_app *app, const char *host, int port, int fd, int tls_fd, int i,
			  const sigset_t *child_mask, pid_t parent)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* The worker: die with the supervisor; keep SIGINT/SIGTERM/SIGUSR2
	 * blocked (the server's signal block waits for them), unblock the
	 * rest. The old generation's pipe is the supervisor's. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	app->supervisor = (int)parent;
	sigprocmask(SIG_SETMASK, child_mask, NULL);
	if (app->ready_fd >= 0) {
		close(app->ready_fd);
		app->ready_fd = -1;
	}
	int rc = run_here(app, host, port, fd, tls_fd, i);
	fflush(NULL);
	_exit(rc == 0 ? 0 : aw__app_started(app) ? 1 : EXIT_STARTUP_FAILED);
}

#define MAX_SOCKETS 64

/* A generation's listening sockets: fd[0 .. n-ntls) the cleartext port's,
 * fd[n-ntls .. n) the TLS port's (the order aw__handover_spawn hands them
 * on in, naming the TLS ones "https" in LISTEN_FDNAMES). */
typedef struct gen_sockets {
	int fd[2 * MAX_SOCKETS];
	int n, ntls;
} gen_sockets;

static int plain_count(const gen_sockets *g)
{
	return g->n - g->ntls;
}

/* Worker i's sockets (-1: none of that kind). */
static int plain_fd(const gen_sockets *g, int i)
{
	return plain_count(g) > 0 ? g->fd[i % plain_count(g)] : -1;
}

static int tls_fd(const gen_sockets *g, int i)
{
	return g->ntls > 0 ? g->fd[plain_count(g) + i % g->ntls] : -1;
}

static void close_sockets(gen_sockets *g)
{
	for (int i = 0; i < g->n; i++)
		close(g->fd[i]);
	g->n = g->ntls = 0;
}

/* Bind n sockets on host:*port (port 0: the first picks a free port, the
 * others take the same), appended to g. */
static int bind_sockets(gen_sockets *g, const char *host, int *port, int n, bool reuseport)
{
	for (int i = 0; i < n; i++) {
		int p;
		int rc = aw__listen_socket(host, *port, reuseport, &g->fd[g->n], &p);
		if (rc)
			return rc;
		*port = p;
		g->n++;
	}
	return 0;
}

/* The listening sockets of this generation: inherited (LISTEN_FDS; those
 * named "https" are the TLS port's), or bound here, n per port (one
 * SO_REUSEPORT socket per worker): the cleartext port's (none with
 * AW_APP_NO_PORT), then with aw_app_tls the TLS port's (bound here too when
 * the inherited ones have no "https"). */
static int open_sockets(aw_app *app, const char *host, int *port, int n, bool reuseport, gen_sockets *g)
{
	int first;
	uint64_t tls = 0;
	int got = aw__listen_fds(&first, &tls);
	g->n = g->ntls = 0;
	if (got > 0) {
		for (int i = 0; i < got; i++)
			if (!(tls >> i & 1))
				g->fd[g->n++] = first + i;
		for (int i = 0; i < got; i++)
			if (tls >> i & 1) {
				g->fd[g->n++] = first + i;
				g->ntls++;
			}
		app->listener_shared = true;
		aw__http_log_error(app, NULL, "using %d inherited listening socket(s) (LISTEN_FDS), %d of them TLS",
				   got, g->ntls);
		if (g->ntls > 0 || !app->tls)
			return 0;
	} else if (*port != AW_APP_NO_PORT) {
		int rc = bind_sockets(g, host, port, n, reuseport);
		if (rc) {
			close_sockets(g);
			return rc;
		}
	}
	if (app->tls) {
		const char *th = aw__http_tls_host(app) ? aw__http_tls_host(app) : host;
		int tport = aw__http_tls_port(app);
		int before = g->n;
		int rc = bind_sockets(g, th, &tport, n, reuseport);
		g->ntls = g->n - before;
		if (rc) {
			close_sockets(g);
			return rc;
		}
		aw__http_tls_set_port(app, tport);
	}
	if (got == 0)
		app->listener_shared = n > 1;
	return 0;
}

/* A graceful restart in progress (SIGUSR2): the next generation's pid and
 * the pipe it says "ready" on. */
typedef struct next_gen {
	pid_t pid;
	int rd;
	struct timespec started;
} next_gen;

static void kill_all(worker *w, int n, int sig)
{
	for (int i = 0; i < n; i++) {
		w[i].pending = false;
		if (w[i].pid > 0)
			kill(w[i].pid, sig);
	}
}

static int supervise(aw_app *app, const char *host, int port, int n)
{
	gen_sockets gs;
	/* A socket per worker and port, up to what a handover can carry
	 * (MAX_SOCKETS in all); more workers share them (worker i takes
	 * socket i mod count). */
	int per = app->tls ? MAX_SOCKETS / 2 : MAX_SOCKETS;
	int rc = open_sockets(app, host, &port, n < per ? n : per, true, &gs);
	if (rc)
		return rc;
	worker *w = aw__calloc((size_t)n, sizeof *w);
	int started_pipe[2] = { -1, -1 };
	if (!w || pipe2(started_pipe, O_CLOEXEC)) {
		close_sockets(&gs);
		free(w);
		return aw_raise(-ENOMEM, "aw_app_run: no memory");
	}
	fcntl(started_pipe[0], F_SETFL, O_NONBLOCK);
	app->nworkers = n;
	if (aw__http_metrics_workers_prepare(app)) {
		aw__http_log_error(app, aw_error_current(), "metrics: each scrape will show one worker only");
		aw_error_clear();
	}
	sigset_t set, old, child_mask;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR2);
	if (app->tls)
		sigaddset(&set, SIGHUP);   /* reload: passed on to the workers */
	sigprocmask(SIG_BLOCK, &set, &old);
	child_mask = old;
	sigaddset(&child_mask, SIGINT);
	sigaddset(&child_mask, SIGTERM);
	if (app->tls)
		sigaddset(&child_mask, SIGHUP);   /* the worker's server waits for it */
	sigaddset(&child_mask, SIGUSR2);
	sigdelset(&child_mask, SIGCHLD);
	pid_t self = getpid();
	if (port >= 0)
		aw__http_log_error(app, NULL, "supervisor (pid %d): %d workers on http://%s:%d", (int)self, n, host, port);
	if (app->tls)
		aw__http_log_error(app, NULL, "supervisor (pid %d): %d workers on https://%s:%d", (int)self, n,
				   aw__http_tls_host(app) ? aw__http_tls_host(app) : host, aw__http_tls_port(app));

	int live = 0, nstarted = 0;
	bool stopping = false, ready = false;
	next_gen next = { .pid = 0, .rd = -1 };
	app->started_fd = started_pipe[1];
	for (int i = 0; i < n; i++) {
		w[i].pid = start_worker(app, host, port, plain_fd(&gs, i), tls_fd(&gs, i), i, &child_mask, self);
		if (w[i].pid < 0) {
			rc = aw_raise(-errno, "fork: %m");
			stopping = true;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &w[i].started);
		w[i].backoff_ms = 100;
		live++;
	}
	if (stopping)
		kill_all(w, n, SIGTERM);

	while (live > 0 || (!stopping && n > 0)) {
		/* The earliest pending restart bounds the wait; so does a
		 * readiness we are waiting for (polled: this loop has no
		 * poll of its own, only signals). */
		double wait = 3600;
		for (int i = 0; i < n; i++)
			if (w[i].pending) {
				double left = -since(&w[i].restart_at);
				if (left < wait)
					wait = left < 0 ? 0 : left;
			}
		if ((!ready && !stopping) || next.pid > 0)
			wait = wait < 0.02 ? wait : 0.02;
		struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
		siginfo_t si;
		int sig = sigtimedwait(&set, &si, &ts);
		if (sig == SIGHUP && !stopping) {
			/* Every worker reloads its certificate (but one that
			 * asked for it with aw_app_tls_reload: it has), and so
			 * does the supervisor, for the workers it forks later. */
			aw__http_tls_reload_supervisor(app);
			for (int i = 0; i < n; i++)
				if (w[i].pid > 0 && w[i].pid != si.si_pid)
					kill(w[i].pid, SIGHUP);
		}
		if (sig == SIGINT || sig == SIGTERM) {
			if (!stopping)
				aw__http_log_error(app, NULL, "supervisor: %s: stopping %d worker(s)", strsignal(sig), live);
			stopping = true;
			kill_all(w, n, SIGTERM);
		} else if (sig == SIGUSR2 && !stopping) {
			if (next.pid > 0) {
				aw__http_log_error(app, NULL, "supervisor: SIGUSR2: a restart is already under way");
			} else if (aw__handover_spawn(app, gs.fd, gs.n, gs.ntls, &next.pid, &next.rd)) {
				aw__http_log_error(app, aw_error_current(), "graceful restart failed: serving on");
				aw_error_clear();
				next.pid = 0;
			} else {
				clock_gettime(CLOCK_MONOTONIC, &next.started);
			}
		}
		/* Workers that serve. */
		char buf[64];
		ssize_t got;
		while ((got = read(started_pipe[0], buf, sizeof buf)) > 0)
			nstarted += (int)got;
		if (!ready && nstarted >= n) {
			ready = true;
			aw__generation_ready(app);
		}
		/* The next generation: ready (then this one drains), dead or
		 * late (then this one serves on). */
		if (next.pid > 0) {
			char b;
			got = read(next.rd, &b, 1);
			if (got == 1) {
				aw__http_log_error(app, NULL,
						   "graceful restart: pid %d serves: this generation (pid %d) drains",
						   (int)next.pid, (int)self);
				close(next.rd);
				next = (next_gen){ .pid = 0, .rd = -1 };
				stopping = true;
				kill_all(w, n, SIGUSR2);
			} else if (got == 0 || since(&next.started) > 60) {
				aw__http_log_error(app, NULL, "graceful restart: pid %d %s: serving on", (int)next.pid,
						   got == 0 ? "exited before it was ready" : "not ready within 60 s");
				if (got != 0)
					kill(next.pid, SIGTERM);
				close(next.rd);
				next = (next_gen){ .pid = 0, .rd = -1 };
			}
		}
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i;
			for (i = 0; i < n && w[i].pid != pid; i++)
				;
			if (i == n)
				continue;   /* a next generation that died: its pipe says so */
			w[i].pid = 0;
			live--;
			bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			if (stopping || clean)
				continue;
			if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_STARTUP_FAILED) {
				aw__http_log_error(app, NULL, "supervisor: worker %d (pid %d) failed to start: stopping", i,
						   (int)pid);
				rc = aw_raise(-ECHILD, "worker %d failed to start (see its log)", i);
				stopping = true;
				kill_all(w, n, SIGTERM);
				continue;
			}
			double age = since(&w[i].started);
			if (age > 10)
				w[i].backoff_ms = 100;
			double delay = age < 1 ? w[i].backoff_ms / 1000.0 : 0;
			if (age < 1 && w[i].backoff_ms < 5000)
				w[i].backoff_ms *= 2;
			if (WIFSIGNALED(status))
				aw__http_log_error(app, NULL, "supervisor: worker %d (pid %d) killed by %s: restarting%s", i,
						   (int)pid, strsignal(WTERMSIG(status)), delay > 0 ? " after a pause" : "");
			else
				aw__http_log_error(app, NULL, "supervisor: worker %d (pid %d) exited with %d: restarting", i,
						   (int)pid, WEXITSTATUS(status));
			clock_gettime(CLOCK_MONOTONIC, &w[i].restart_at);
			long ns = w[i].restart_at.tv_nsec + (long)(delay * 1e9);
			w[i].restart_at.tv_sec += ns / 1000000000;
			w[i].restart_at.tv_nsec = ns % 1000000000;
			w[i].pending = true;
		}
		if (!stopping) {
			for (int i = 0; i < n; i++) {
				if (!w[i].pending || since(&w[i].restart_at) < 0)
					continue;
				w[i].pending = false;
				w[i].pid = start_worker(app, host, port, plain_fd(&gs, i), tls_fd(&gs, i), i, &child_mask, self);
				if (w[i].pid < 0) {
					w[i].pid = 0;
					w[i].pending = true;
					clock_gettime(CLOCK_MONOTONIC, &w[i].restart_at);
					w[i].restart_at.tv_sec += 1;
					continue;
				}
				clock_gettime(CLOCK_MONOTONIC, &w[i].started);
				live++;
			}
		}
		if (stopping && live == 0)
			break;
	}
	if (next.pid > 0) {
		/* Stopped (SIGTERM) while a next generation was starting: it
		 * would serve alone, unasked. */
		kill(next.pid, SIGTERM);
		close(next.rd);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close_sockets(&gs);
	close(started_pipe[0]);
	close(started_pipe[1]);
	app->started_fd = -1;
	free(w);
	aw__http_metrics_workers_done(app);
	app->nworkers = 0;
	return rc;
}

static int run_single(aw_app *app, const char *host, int port)
{
	gen_sockets gs;
	int rc = open_sockets(app, host, &port, 1, false, &gs);
	if (rc)
		return rc;
	app->gen_fds = gs.fd;
	app->gen_nfds = gs.n;
	app->gen_ntls = gs.ntls;
	rc = run_here(app, host, port, plain_fd(&gs, 0), tls_fd(&gs, 0), -1);
	app->gen_fds = NULL;
	app->gen_nfds = 0;
	app->gen_ntls = 0;
	close_sockets(&gs);
	return rc;
}

int aw_app_run(aw_app *app, const char *host, int port, int workers)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_run: no app");
	if (!host || !*host)
		host = "127.0.0.1";
	if (port < AW_APP_NO_PORT || port > 65535 || (port == AW_APP_NO_PORT && !app->tls))
		return aw_raise(-EINVAL, "aw_app_run: invalid port %d%s", port,
				port == AW_APP_NO_PORT ? " (no cleartext port needs a TLS one: aw_app_tls)" : "");
	if (aw_task_current())
		return aw_raise(-EBUSY, "aw_app_run runs its own loop: call it outside aw_run "
				"(inside a loop, use aw_app_serve)");
	aw__generation_init(app);
	/* SIGUSR2 is ours from now on: one that comes before the loop (or
	 * the supervisor) waits for it instead of killing the process (its
	 * default action); the signal block takes it when it opens. */
	sigset_t usr2, old;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, &old);
	int rc = workers <= 1 ? run_single(app, host, port) : supervise(app, host, port, workers);
	sigprocmask(SIG_SETMASK, &old, NULL);
	aw__generation_exit(app);
	app->run_managed = false;
	return rc;
}

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [--host H] [--port N] [--workers N] [--access-log] [--metrics PATH]\n"
		"          [--tls-cert FILE --tls-key FILE [--tls-port N] [--tls-client-ca FILE]]\n"
		"          [--health] [--drain-delay MS] [--pid-file PATH]\n"
		"  --host H      address to listen on (default 127.0.0.1)\n"
		"  --port N      port (default 8000; 0 picks a free one; off: none, TLS only)\n"
		"  --tls-cert FILE, --tls-key FILE\n"
		"                also serve HTTPS with this PEM certificate chain and key\n"
		"  --tls-port N  the HTTPS port (default 8443; 0 picks a free one)\n"
		"  --tls-client-ca FILE\n"
		"                require client certificates signed by these CAs (mutual TLS)\n"
		"  --tls-handshake-timeout MS\n"
		"                close a TLS handshake not done in MS ms (default 10000)\n"
		"  --workers N   worker processes sharing the port (default 1)\n"
		"  --access-log  log each request to stdout\n"
		"  --metrics PATH  serve Prometheus metrics at PATH (e.g. /metrics);\n"
		"                also AWITH_METRICS=PATH in the environment\n"
		"  --health      GET /livez and /readyz (aw_app_health)\n"
		"  --drain-delay MS  on SIGTERM, fail /readyz for MS ms before stopping\n"
		"  --pid-file PATH   write the serving generation's pid there\n"
		"Runs until SIGINT or SIGTERM; SIGUSR2 restarts it gracefully (a new\n"
		"generation takes over the listening sockets, this one drains); with TLS,\n"
		"SIGHUP reloads the certificate.\n",
		prog);
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = (int)v;
	return true;
}

int aw_app_main(aw_app *app, int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int port = 8000, workers = 1, drain_ms = 0;
	bool health = false;
	const char *prog = argc > 0 && argv[0] ? argv[0] : "app";
	const char *metrics = getenv("AWITH_METRICS");
	aw_app_tls_opts tls = { .port = 8443 };
	int ms;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout, prog);
			return 0;
		} else if (strcmp(a, "--access-log") == 0) {
			setvbuf(stdout, NULL, _IOLBF, 0);   /* whole lines, also across workers */
			aw_app_access_log(app, stdout);
		} else if (strcmp(a, "--metrics") == 0 && v) {
			metrics = v;
			i++;
		} else if (strcmp(a, "--health") == 0) {
			health = true;
		} else if (strcmp(a, "--drain-delay") == 0 && v && parse_int(v, 0, 3600 * 1000, &drain_ms)) {
			aw_app_limits(app)->drain_delay = AW_MS(drain_ms);
			i++;
		} else if (strcmp(a, "--pid-file") == 0 && v) {
			if (aw_app_pid_file(app, v) < 0) {
				aw_error_clear();
				return 2;
			}
			i++;
		} else if (strcmp(a, "--host") == 0 && v) {
			host = v;
			i++;
		} else if (strcmp(a, "--port") == 0 && v && parse_int(v, 0, 65535, &port)) {
			i++;
		} else if (strcmp(a, "--port") == 0 && v && strcmp(v, "off") == 0) {
			port = AW_APP_NO_PORT;
			i++;
		} else if (strcmp(a, "--tls-cert") == 0 && v) {
			tls.cert_file = v;
			i++;
		} else if (strcmp(a, "--tls-key") == 0 && v) {
			tls.key_file = v;
			i++;
		} else if (strcmp(a, "--tls-client-ca") == 0 && v) {
			tls.client_ca_file = v;
			i++;
		} else if (strcmp(a, "--tls-port") == 0 && v && parse_int(v, 0, 65535, &tls.port)) {
			i++;
		} else if (strcmp(a, "--tls-handshake-timeout") == 0 && v && parse_int(v, 1, 3600 * 1000, &ms)) {
			tls.handshake_timeout = AW_MS(ms);
			i++;
		} else if (strcmp(a, "--workers") == 0 && v && parse_int(v, 1, 1024, &workers)) {
			i++;
		} else {
			fprintf(stderr, "%s: bad argument '%s'\n", prog, a);
			usage(stderr, prog);
			return 2;
		}
	}
	if (metrics && *metrics && !app->metrics && aw_app_metrics(app, metrics) < 0) {
		fprintf(stderr, "%s: --metrics %s: ", prog, metrics);
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 2;
	}
	if (!tls.cert_file != !tls.key_file || (tls.client_ca_file && !tls.cert_file)) {
		fprintf(stderr, "%s: --tls-cert and --tls-key go together (and --tls-client-ca needs them)\n", prog);
		return 2;
	}
	if (port == AW_APP_NO_PORT && !tls.cert_file) {
		fprintf(stderr, "%s: --port off needs --tls-cert and --tls-key\n", prog);
		return 2;
	}
	if (tls.cert_file && aw_app_tls(app, &tls) < 0) {
		fprintf(stderr, "%s: TLS: ", prog);
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 2;
	}
	if (health && !app->health_on && aw_app_health(app, "/livez", "/readyz") < 0) {
		fprintf(stderr, "%s: --health: ", prog);
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 2;
	}
	int rc = aw_app_run(app, host, port, workers);
	if (rc) {
		if (aw_error_pending())
			aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 1;
	}
	return 0;
}
