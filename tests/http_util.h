/* SPDX-License-Identifier: MIT */
/* Helpers for the HTTP tests: a server in a child process, a raw blocking
 * client, a small response reader, and curl.
 *
 * The server runs in a forked child (its own loop, as in production); the
 * test talks to it over 127.0.0.1 with plain blocking sockets (5 s
 * timeouts), exactly as a client would. The child's stderr (the app's
 * log) goes to a file the test can read after srv_stop.
 */
#ifndef AW_TEST_HTTP_UTIL_H
#define AW_TEST_HTTP_UTIL_H

#include <awith/http.h>

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct srv {
	pid_t pid;
	int port;
	int logfd;             /* the child's stderr: an unlinked temp file */
	char *logdata;         /* read at srv_stop/srv_wait */
} srv;

/* Build the app in the child (called after fork, before the loop). */
typedef aw_app *(*srv_make_fn)(void);

/* Fork a server: make() the app, listen on 127.0.0.1:0, report the port,
 * aw_app_serve until SIGTERM. Returns 0 or -1. */
int srv_start(srv *s, srv_make_fn make);
/* The body of a server child (run in aw_run after fork, stderr to the
 * log): listen, write the port (an int) to report_fd and close it, then
 * serve until SIGTERM. Returns 0 for a clean exit. */
typedef int (*srv_child_fn)(void *arg, int report_fd);
/* Fork a server whose child runs fn(arg, report_fd): for a server
 * srv_start's plain listener does not fit (TLS, options). Same result
 * and same srv_stop/srv_wait/srv_log as srv_start. */
int srv_start_child(srv *s, srv_child_fn fn, void *arg);
/* SIGTERM, wait (up to 15 s, then SIGKILL). Returns the child's exit
 * status (0 = clean), or -1 if it had to be killed or crashed. */
int srv_stop(srv *s);
/* Wait for a server told to stop already (up to 15 s), same result. */
int srv_wait(srv *s);
/* The server's log, after srv_stop/srv_wait (malloc'd, NUL-terminated). */
char *srv_log(const srv *s);

/* A blocking connection with 5 s send/receive timeouts; -1 on failure. */
int cli_connect(int port);
int cli_send(int fd, const void *data, size_t n);
int cli_sends(int fd, const char *s);

typedef struct resp {
	int status;
	char head[8192];       /* status line + headers, NUL-terminated */
	char *body;            /* malloc'd, NUL-terminated */
	size_t body_len;
	bool chunked;
	bool eof;              /* the body ended at end of stream */
} resp;

/* Read one response. `no_body`: the request was HEAD. Returns 0, or -1
 * (timeout, garbage, EOF before a status line; r then holds no memory). */
int cli_read(int fd, resp *r, bool no_body);
void resp_free(resp *r);
/* A header's value in r->head (case-insensitive), copied to out. */
bool resp_header(const resp *r, const char *name, char *out, size_t len);
/* True when the peer closes (EOF or reset) within `ms`, reading and
 * dropping anything that arrives first. */
bool cli_closed(int fd, int ms);
/* True once the server has accepted connection fd (a 127.0.0.1 TCP
 * client): its end has left the accept queue and is a socket file (an
 * inode in /proc/net/tcp). Waits up to `ms`. */
bool cli_wait_accepted(int fd, int ms);
/* Read everything until EOF (or timeout) into a malloc'd buffer. */
char *cli_read_all(int fd, size_t *len, int ms);

/* One request on a fresh connection; returns the status (-1 on failure)
 * and fills r (free with resp_free) and *closed (did the server close the
 * connection after it?). */
int http_once(int port, const char *raw, size_t len, resp *r, bool *closed);

/* Run `curl` with args (NULL-terminated); its stdout into out (NUL-term.).
 * Returns curl's exit status, or -1. */
int run_curl(char *out, size_t outlen, ...) __attribute__((sentinel));

/* Run argv (a program found on PATH) to its end; its stdout then its
 * stderr into out (NUL-terminated). Returns the exit status, or -1. */
int run_cmd(char *out, size_t outlen, const char *const argv[]);

/* Milliseconds since an arbitrary point. */
long long now_ms(void);

#endif

/* A free TCP port on 127.0.0.1 (bound, read, closed). */
int free_port(void);

/* A program run as a user would: stdout and stderr each to an unlinked
 * temp file, read back by proc_wait. */
typedef struct proc {
	pid_t pid;
	int outfd, errfd;
	char *out, *err;       /* after proc_wait (kept until the next one) */
} proc;
int proc_start(proc *p, const char *const argv[]);
/* Connect to 127.0.0.1:port until it answers (up to ms). */
bool wait_listening(int port, int ms);
/* Send sig (0: none) and wait up to 15 s; the exit status, or -1 if it
 * was killed by a signal (or had to be). */
int proc_wait(proc *p, int sig);
