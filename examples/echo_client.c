/* SPDX-License-Identifier: MIT */
/*
 * echo_client — connect, send each message, read it back, print it.
 *
 *     echo_client [--host H] [--port N] MESSAGE...   (default 127.0.0.1:8000)
 *
 * The Python it maps to (asyncio streams):
 *
 *     async def main(host, port, messages):
 *         reader, writer = await asyncio.open_connection(host, port)
 *         async with contextlib.aclosing(writer):          # closed on every way out
 *             for m in messages:
 *                 writer.write(m.encode())
 *                 await writer.drain()
 *                 echo = await asyncio.wait_for(reader.readexactly(len(m)), 5)
 *                 print(echo.decode())
 *
 * How it maps:
 *   - `open_connection` + `async with` is one manager here:
 *     AW_WITH(aw_tcp_connection_init(&c, host, port, deadline)) connects on enter
 *     (trying every address the name resolves to) and closes on exit; inside
 *     the block c.stream is the connected, buffered stream;
 *   - a failed enter (connection refused, unknown host, timeout) skips the
 *     body, and the error is in flight after the block: aw_error_print shows
 *     its message (which addresses were tried), where it was raised, and its
 *     causes — Python's traceback, in one call;
 *   - `readexactly` is aw_stream_read_exact; `wait_for(..., 5)` is the
 *     absolute deadline every blocking call takes as its last argument.
 *
 * The server echoes raw bytes (examples/echo_server.c), so each message is
 * read back by its length: no framing is needed.
 */
#include <awith/io.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct options {
	const char *host;
	int port;
	char **messages;
	int count;
} options;

/* Send m, read as many bytes back, print them. 0 or the error (raised). */
static int echo_one(aw_stream *s, const char *m)
{
	size_t len = strlen(m);
	int rc = aw_stream_write(s, m, len, aw_deadline_after(AW_SEC(5)));
	if (rc < 0)
		return rc;
	char *echo = malloc(len + 1);
	if (!echo)
		return aw_raise(-ENOMEM, "no memory for a %zu-byte message", len);
	rc = aw_stream_read_exact(s, echo, len, aw_deadline_after(AW_SEC(5)));
	if (rc == 0) {
		echo[len] = '\0';
		printf("%s\n", echo);
	}
	free(echo);
	return rc;
}

static int talk(void *arg)
{
	const options *o = arg;
	aw_connection c;

	AW_WITH(aw_tcp_connection_init(&c, o->host, o->port, aw_deadline_after(AW_SEC(5)))) {
		int i = 0;
		while (i < o->count && echo_one(c.stream, o->messages[i]) == 0)
			i++;
		if (i < o->count)
			break;   /* `break` leaves the block with the error in flight
			            (falling off its end would mark it handled) */
	}
	/* The connect (enter), an exchange (body) or the close (exit) failed. */
	if (aw_error_pending() < 0) {
		fprintf(stderr, "echo_client: ");
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();      /* handled here ... */
		return EXIT_FAILURE;   /* ... and made the exit status */
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: echo_client [--host H] [--port N] MESSAGE...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	options o = { .host = "127.0.0.1", .port = 8000 };
	int i = 1;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
			o.host = argv[++i];
		} else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*argv[i] == '\0' || *end || v < 1 || v > 65535)
				usage();
			o.port = (int)v;
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			usage();
		} else {
			break;
		}
	}
	o.messages = argv + i;
	o.count = argc - i;
	if (o.count == 0)
		usage();
	return aw_run(talk, &o) == 0 ? 0 : 1;
}
