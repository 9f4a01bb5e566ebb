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
 */
#include "internal.h"

#include <arpa/inet.h>
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
	bool reuseport;
	int worker;        /* -1: single process */
	int rc;
} run_args;

/* Listen on host:port and log it ("http" or "https"). */
static int run_listen(run_args *a, const char *scheme, const char *host, int port, aw_listener **l)
{
	aw_listen_opts o = { .reuseport = a->reuseport };
	int rc = aw_tcp_listen(l, host, port, &o);
	if (rc) {
		aw__http_log_error(a->app, aw_error_current(), "cannot listen on %s:%d", host, port);
		return rc;
	}
	if (a->worker < 0)
		aw__http_log_error(a->app, NULL, "listening on %s://%s:%d (pid %d)", scheme, host, aw_listener_port(*l),
				   (int)getpid());
	else
		aw__http_log_error(a->app, NULL, "worker %d listening on %s://%s:%d (pid %d)", a->worker, scheme, host,
				   aw_listener_port(*l), (int)getpid());
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
	/* The cleartext port (unless AW_APP_NO_PORT), and the TLS one beside
	 * it when the app has TLS settings. */
	if (a->port >= 0) {
		rc = run_listen(a, "http", a->host, a->port, &plain);
		if (rc)
			goto out;
		ls[n++] = (aw_app_listener){ plain, false };
	}
	if (app->tls) {
		const char *th = aw__http_tls_host(app) ? aw__http_tls_host(app) : a->host;
		rc = run_listen(a, "https", th, aw__http_tls_port(app), &tls);
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

static int run_here(aw_app *app, const char *host, int port, bool reuseport, int worker)
{
	app->worker = worker;
	run_args a = { app, host, port, reuseport, worker, 0 };
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

static pid_t start_worker(aw_app *app, const char *host, int port, int i, const sigset_t *child_mask, pid_t parent)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	/* The worker: die with the supervisor; keep SIGINT/SIGTERM blocked
	 * (the server's signal block waits for them), unblock the rest. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	app->supervisor = (int)parent;
	sigprocmask(SIG_SETMASK, child_mask, NULL);
	int rc = run_here(app, host, port, true, i);
	fflush(NULL);
	_exit(rc == 0 ? 0 : aw__app_started(app) ? 1 : EXIT_STARTUP_FAILED);
}

/* Find a port for "port 0" and keep it reserved (bound, not listening)
 * while the workers bind it too. */
static int reserve_port(const char *host, int *port, int *fd_out)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai;
	int g = getaddrinfo(host, "0", &hints, &ai);
	if (g)
		return aw_raise(-AW_EDNS, "cannot resolve '%s': %s", host, gai_strerror(g));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) || bind(fd, ai->ai_addr, ai->ai_addrlen)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return aw_raise(-e, "cannot reserve a port on %s: %s", host, strerror(e));
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	*port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
					 : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*fd_out = fd;
	return 0;
}

static int supervise(aw_app *app, const char *host, int port, int n)
{
	int hold = -1, tls_hold = -1;
	if (port == 0) {
		int rc = reserve_port(host, &port, &hold);
		if (rc)
			return rc;
	}
	if (app->tls && aw__http_tls_port(app) == 0) {
		int tport;
		const char *th = aw__http_tls_host(app) ? aw__http_tls_host(app) : host;
		int rc = reserve_port(th, &tport, &tls_hold);
		if (rc) {
			if (hold >= 0)
				close(hold);
			return rc;
		}
		aw__http_tls_set_port(app, tport);
	}
	worker *w = aw__calloc((size_t)n, sizeof *w);
	if (!w) {
		if (hold >= 0)
			close(hold);
		if (tls_hold >= 0)
			close(tls_hold);
		return aw_raise(-ENOMEM, "aw_app_run: no memory");
	}
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
	if (app->tls)
		sigaddset(&set, SIGHUP);   /* reload: passed on to the workers */
	sigprocmask(SIG_BLOCK, &set, &old);
	child_mask = old;
	sigaddset(&child_mask, SIGINT);
	sigaddset(&child_mask, SIGTERM);
	if (app->tls)
		sigaddset(&child_mask, SIGHUP);   /* the worker's server waits for it */
	sigdelset(&child_mask, SIGCHLD);
	pid_t self = getpid();
	if (port >= 0)
		aw__http_log_error(app, NULL, "supervisor (pid %d): %d workers on http://%s:%d", (int)self, n, host, port);
	if (app->tls)
		aw__http_log_error(app, NULL, "supervisor (pid %d): %d workers on https://%s:%d", (int)self, n,
				   aw__http_tls_host(app) ? aw__http_tls_host(app) : host, aw__http_tls_port(app));

	int rc = 0, live = 0;
	bool stopping = false;
	for (int i = 0; i < n; i++) {
		w[i].pid = start_worker(app, host, port, i, &child_mask, self);
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
		for (int i = 0; i < n; i++)
			if (w[i].pid > 0)
				kill(w[i].pid, SIGTERM);

	while (live > 0 || (!stopping && n > 0)) {
		/* The earliest pending restart bounds the wait. */
		double wait = 3600;
		for (int i = 0; i < n; i++)
			if (w[i].pending) {
				double left = -since(&w[i].restart_at);
				if (left < wait)
					wait = left < 0 ? 0 : left;
			}
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
			for (int i = 0; i < n; i++) {
				w[i].pending = false;
				if (w[i].pid > 0)
					kill(w[i].pid, SIGTERM);
			}
		}
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i;
			for (i = 0; i < n && w[i].pid != pid; i++)
				;
			if (i == n)
				continue;
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
				for (int k = 0; k < n; k++) {
					w[k].pending = false;
					if (w[k].pid > 0)
						kill(w[k].pid, SIGTERM);
				}
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
				w[i].pid = start_worker(app, host, port, i, &child_mask, self);
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
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (hold >= 0)
		close(hold);
	if (tls_hold >= 0)
		close(tls_hold);
	free(w);
	aw__http_metrics_workers_done(app);
	app->nworkers = 0;
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
	if (workers <= 1)
		return run_here(app, host, port, false, -1);
	return supervise(app, host, port, workers);
}

static void usage(FILE *out, const char *prog)
{
	fprintf(out,
		"usage: %s [--host H] [--port N] [--workers N] [--access-log] [--metrics PATH]\n"
		"          [--tls-cert FILE --tls-key FILE [--tls-port N] [--tls-client-ca FILE]]\n"
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
		"Runs until SIGINT or SIGTERM; with TLS, SIGHUP reloads the certificate.\n",
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
	int port = 8000, workers = 1;
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
	int rc = aw_app_run(app, host, port, workers);
	if (rc) {
		if (aw_error_pending())
			aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		return 1;
	}
	return 0;
}
