/* SPDX-License-Identifier: MIT */
/*
 * echo_server — a TCP echo server: one task per connection in a task group,
 * shut down cleanly by SIGINT or SIGTERM.
 *
 *     echo_server [--port N]        (default 8000; listens on 127.0.0.1)
 *
 * The Python it maps to (asyncio):
 *
 *     async def handle(reader, writer):
 *         async with contextlib.aclosing(writer):       # closed on every way out
 *             while data := await reader.read(65536):
 *                 writer.write(data)
 *                 await writer.drain()
 *
 *     async def main(port):
 *         stop = asyncio.Event()
 *         loop = asyncio.get_running_loop()
 *         for sig in (signal.SIGINT, signal.SIGTERM):
 *             loop.add_signal_handler(sig, stop.set)
 *         async with await asyncio.start_server(handle, "127.0.0.1", port) as server, \
 *                    asyncio.TaskGroup() as tg:
 *             print(f"listening on 127.0.0.1:{port}", flush=True)
 *             ...accept, tg.create_task(handle(conn)) for each connection...
 *             await stop.wait(); cancel everything
 *         print("echo server stopped")
 *
 * How it maps:
 *   - the listener is a manager: AW_WITH(aw_listener_mgr(l)) closes it on
 *     every way out;
 *   - `asyncio.TaskGroup()` is aw_group: each connection is a child task;
 *     the group's exit waits for every child, so every connection's own
 *     exit (closing its stream) has run before the block is left;
 *   - `loop.add_signal_handler` is aw_signals: entering it blocks SIGINT and
 *     SIGTERM on the loop thread and opens a signalfd, so a task can simply
 *     wait for the signal (aw_signals_wait) like for any other event. That
 *     task then calls aw_group_cancel: the accept loop (the group's body)
 *     and every connection task get -ECANCELED at their current wait, their
 *     exits run, and the group's exit swallows its own cancellation;
 *   - `async for conn in listener`: AW_FOR over aw_listener_iter hands out
 *     each accepted connection (the receiver owns it).
 *
 * A client that resets its connection ends only its own task: the handler
 * returns 0 (reporting on stderr any error other than a reset or a broken
 * pipe, which are routine), so one bad client never cancels its siblings
 * (a handler that *failed* would make the group cancel everything, which is
 * the TaskGroup contract, and not what a server wants for a peer's error).
 *
 * Raw bytes are echoed (aw_stream_read then aw_stream_write), whatever their
 * framing: bench/echo_bench.sh measures this very program.
 */
#include <awith/io.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct server {
	aw_listener *listener;
	aw_group group;         /* the connections, and the signal watcher */
	aw_signals signals;     /* SIGINT, SIGTERM as waits */
	unsigned long accepted;
} server;

/* A peer that resets or stops reading is routine for a server (a client
 * killed mid-request, a load generator that exits): not worth a report. */
static bool peer_went_away(int err)
{
	return err == -ECONNRESET || err == -EPIPE;
}

/* One connection: echo until the client closes its side. */
static int handle_connection(void *arg)
{
	aw_stream *s = arg;
	char buf[16 * 1024];
	AW_WITH(aw_stream_mgr(s)) {   /* `async with conn:` — closed on every way out */
		ssize_t n;
		while ((n = aw_stream_read(s, buf, sizeof buf, AW_NEVER)) > 0)
			if ((n = aw_stream_write(s, buf, (size_t)n, AW_NEVER)) < 0)
				break;
		/* n == 0: the client closed its side. n < 0: cancelled (the
		 * server is stopping) or an error. It stays in flight: the
		 * stream's exit sees it (as an exception leaving Python's
		 * `async with`) and it is still pending after the block. */
	}
	/* The error is this connection's business, not the server's: report
	 * what is worth reporting and end this task normally (`except`), so
	 * the group does not cancel the other connections. */
	int err = aw_error_pending();
	if (err) {
		if (err != -ECANCELED && !peer_went_away(err)) {
			fprintf(stderr, "echo_server: connection ended: ");
			aw_error_print(stderr, aw_error_current());
		}
		aw_error_clear();
	}
	return 0;
}

/* The signal watcher: wait for SIGINT or SIGTERM, then cancel the group
 * (the accept loop and every connection). */
static int watch_signals(void *arg)
{
	server *srv = arg;
	int sig = aw_signals_wait(&srv->signals, AW_NEVER);
	if (sig < 0)
		return sig;   /* cancelled: the server is stopping anyway */
	/* The two it waits for, by name (sigabbrev_np would need _GNU_SOURCE,
	 * which a program built with only the README's line does not define). */
	const char *name = sig == SIGINT ? "INT" : sig == SIGTERM ? "TERM" : "?";
	printf("received SIG%s, shutting down (%lu connection%s served)\n", name, srv->accepted,
	       srv->accepted == 1 ? "" : "s");
	fflush(stdout);
	aw_group_cancel(&srv->group);
	return 0;
}

/* Transient accept errors: out of descriptors or memory. The server waits
 * a little and goes on accepting rather than dying. */
static bool accept_error_is_transient(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* `async for conn in listener: tg.create_task(handle(conn))`, until the
 * group is cancelled. Returns the error that ended it (in flight). */
static int accept_loop(server *srv)
{
	for (;;) {
		aw_stream *conn;
		AW_FOR(conn, aw_listener_iter(srv->listener)) {
			srv->accepted++;
			int rc = aw_group_spawn(&srv->group, handle_connection, conn, "connection");
			if (rc < 0) {   /* the group is shutting down */
				int crc = aw_stream_close(conn, AW_NEVER);
				return crc < 0 ? crc : rc;
			}
		}
		/* The accept loop ended with an error (still in flight): the
		 * cancellation of a shutdown, or accept's own failure. */
		int err = aw_error_pending();
		if (!accept_error_is_transient(err))
			return err;
		fprintf(stderr, "echo_server: ");
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();
		int rc = aw_sleep(AW_MS(100));
		if (rc < 0)
			return rc;
	}
}

/* Print the error in flight (message, where, causes), mark it handled, and
 * return EXIT_FAILURE for main. (A task that returns a negative code has
 * failed with an error that is not handled: aw_run would print it again.) */
static int report(void)
{
	fprintf(stderr, "echo_server: ");
	aw_error_print(stderr, aw_error_current());
	aw_error_clear();
	return EXIT_FAILURE;
}

static int serve(void *arg)
{
	int port = *(int *)arg;
	server srv = { 0 };
	int rc = aw_tcp_listen(&srv.listener, "127.0.0.1", port, NULL);
	if (rc < 0)
		return report();   /* -EADDRINUSE, -EACCES ... */

	/* `async with server, signals, TaskGroup() as tg:` — exited right to
	 * left: the group waits for its tasks, then the signals are restored,
	 * then the listener is closed. */
	AW_WITH(aw_listener_mgr(srv.listener),
		aw_signals_init(&srv.signals, (const int[]){ SIGINT, SIGTERM }, 2),
		aw_group_init(&srv.group)) {
		/* The signals are blocked from here on: a SIGTERM sent as soon as
		 * this line is read waits for the watcher instead of killing us. */
		printf("listening on 127.0.0.1:%d\n", aw_listener_port(srv.listener));
		fflush(stdout);

		if (aw_group_spawn(&srv.group, watch_signals, &srv, "signals") < 0)
			break;   /* leaves the block with the error */
		if (accept_loop(&srv) < 0)
			break;   /* the exits see the error; the group's exit swallows
			            the cancellation it caused itself */
	}
	/* Every connection's exit has run here. What is in flight now is a
	 * real failure (listen ok but accept failed, a handler failed ...). */
	rc = aw_error_pending();
	puts("echo server stopped");
	fflush(stdout);
	return rc < 0 ? report() : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_server [--port N]   (N in 0..65535; default 8000)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int port = 8000;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end || v < 0 || v > 65535)
				usage();
			port = (int)v;
		} else {
			usage();
		}
	}
	return aw_run(serve, &port) == 0 ? 0 : 1;
}
