/* SPDX-License-Identifier: MIT */
/*
 * stream_chunks — the seed's "Combining with async for":
 *
 *     async with some_streaming_context() as stream:
 *         async for chunk in stream:
 *             await process(chunk)
 *
 * "Useful when reading big files or streaming API responses": this program
 * does both, processing each chunk as it arrives (counting bytes and lines,
 * printing a running total), never holding the whole stream in memory.
 *
 *     stream_chunks [FILE]
 *
 * 1. A file. With no FILE argument a temp file is made and filled first:
 *
 *        async with tempfile() as path:                 # AW_WITH(aw_tempfile_init(...))
 *            await write_lines(path)
 *            async with aiofiles.open(path) as f:       # AW_FOR(chunk,
 *                async for chunk in f.iter_chunked(n):  #   aw_file_chunks_init(...))
 *                    process(chunk)
 *
 *    aw_file_chunks is an async iterator, and an iterator is a manager:
 *    AW_FOR enters it (opens the file, off the loop), steps it (each read
 *    runs on the thread pool, so a slow disk never stalls the loop), and
 *    exits it on every way out (closes the file). That is Python's
 *    `async with aclosing(it): async for chunk in it`.
 *
 * 2. A socket. A server task streams N chunks of lines; the client task
 *
 *        async with await open_connection(host, port) as stream:  # AW_WITH(aw_tcp_connection_init(...))
 *            async for chunk in read_chunks(stream):             # AW_FOR over aw_gen_iter
 *                process(chunk)
 *
 *    where read_chunks is an async generator (`async def` with `yield`):
 *
 *        async def read_chunks(stream):
 *            while data := await stream.read(8192):
 *                yield data
 *
 *    In C it is an aw_gen_iter: a function on a small stack of its own that
 *    calls aw_stream_read and hands each chunk to the loop with
 *    aw_gen_yield.
 *
 * 3. Breaking out early (once, over the socket): the client stops after the
 *    first 100 lines, like `head`. Leaving the loop closes the generator —
 *    its pending aw_gen_yield returns -AW_ECLOSED (Python's GeneratorExit)
 *    and it tears down — and then the connection's exit closes the socket.
 *
 * Both tasks of part 2 run in one task group (asyncio.TaskGroup), so the
 * block is left only after both have finished.
 */
#include <awith/io.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- process(chunk): count bytes and lines, print a running total -------- */

typedef struct totals {
	const char *what;       /* "file", "socket" */
	uint64_t bytes, lines;
	unsigned chunks;
} totals;

static void process(totals *t, const char *data, size_t len)
{
	t->chunks++;
	t->bytes += len;
	for (const char *p = data, *end = data + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
		t->lines++;
	printf("%s chunk %u: %zu bytes, running total %" PRIu64 " bytes, %" PRIu64 " lines\n", t->what,
	       t->chunks, len, t->bytes, t->lines);
}

static void print_totals(const totals *t)
{
	printf("%s total: %" PRIu64 " bytes, %" PRIu64 " lines\n", t->what, t->bytes, t->lines);
}

/* The text both parts stream: numbered lines of exactly LINE_LEN bytes. */
#define LINE_LEN 64
static void make_line(char *out, unsigned n)
{
	static const char text[] = "async with ... async for chunk in stream";
	char head[24];
	int k = snprintf(head, sizeof head, "line %05u: ", n % 100000);
	memset(out, '.', LINE_LEN - 1);
	memcpy(out, head, (size_t)k);
	memcpy(out + k, text, sizeof text - 1);
	out[LINE_LEN - 1] = '\n';
}

/* ---- 1. a file, in chunks -------------------------------------------------- */

#define FILE_LINES 2000              /* 128,000 bytes */
#define FILE_CHUNK (16 * 1024)

/* `async for chunk in file_chunks(path)`: returns 0, or the error (raised). */
static int count_file(const char *path)
{
	totals t = { .what = "file" };
	aw_file_chunks fc;
	aw_chunk *chunk;
	AW_FOR(chunk, aw_file_chunks_init(&fc, path, FILE_CHUNK)) {
		process(&t, chunk->data, chunk->len);
	}
	/* An error from opening or reading the file ends the loop and stays
	 * in flight after it (the iterator's exit closed the file anyway). */
	int rc = aw_error_pending();
	if (rc < 0)
		return rc;
	print_totals(&t);
	return 0;
}

/* Fill the temp file with FILE_LINES lines (off the loop, like the reads). */
static int write_lines(int fd)
{
	char *text = malloc((size_t)FILE_LINES * LINE_LEN);
	if (!text)
		return aw_raise(-ENOMEM, "no memory for the file's text");
	for (unsigned i = 0; i < FILE_LINES; i++)
		make_line(text + (size_t)i * LINE_LEN, i + 1);
	int rc = aw_file_pwrite(fd, text, (size_t)FILE_LINES * LINE_LEN, 0);
	free(text);
	return rc;
}

static int file_part(const char *path)
{
	puts("== a file, in chunks");
	if (path) {
		printf("reading %s\n", path);
		return count_file(path);
	}
	int rc = 0;
	aw_tempfile tf;
	AW_WITH(aw_tempfile_init(&tf, NULL, "stream-chunks")) {   /* removed on every way out */
		printf("reading a temp file of %d lines\n", FILE_LINES);
		if ((rc = write_lines(tf.fd)) < 0 || (rc = count_file(tf.path)) < 0)
			break;   /* leave the block with the error in flight */
	}
	return rc < 0 ? rc : aw_error_pending();   /* the enter or exit may fail too */
}

/* ---- 2. a socket, in chunks ------------------------------------------------ */

#define SOCKET_CHUNKS 32
#define LINES_PER_CHUNK 16           /* 32 x 16 lines x 64 bytes = 32,768 bytes */
#define HEAD_LINES 100

typedef struct socket_demo {
	aw_listener *listener;
	bool head_only;         /* part 3: stop after HEAD_LINES lines */
} socket_demo;

/* The server: accept one connection and stream SOCKET_CHUNKS chunks of
 * lines, one every millisecond, like a producer that makes them as it goes. */
static int streaming_server(void *arg)
{
	socket_demo *d = arg;
	aw_stream *conn;
	if (aw_listener_accept(d->listener, &conn, aw_deadline_after(AW_SEC(5))) < 0)
		return aw_error_pending();
	char chunk[LINES_PER_CHUNK * LINE_LEN];
	size_t sent = 0;
	AW_WITH(aw_stream_mgr(conn)) {
		for (unsigned c = 0; c < SOCKET_CHUNKS; c++) {
			for (unsigned l = 0; l < LINES_PER_CHUNK; l++)
				make_line(chunk + l * LINE_LEN, c * LINES_PER_CHUNK + l + 1);
			if (aw_stream_write(conn, chunk, sizeof chunk, aw_deadline_after(AW_SEC(5))) < 0 ||
			    aw_sleep(AW_MS(1)) < 0)
				break;
			sent += sizeof chunk;
		}
		if (sent < sizeof chunk * SOCKET_CHUNKS) {
			/* The client went away (part 3): not the server's failure.
			 * The write's error is still in flight here: the stream's
			 * exit sees it, and it is still in flight after the block
			 * (the error rule; handled below). */
			printf("server: the client stopped reading (%s); %zu of %zu bytes were sent\n",
			       aw_strerror(aw_error_pending()), sent, sizeof chunk * SOCKET_CHUNKS);
		}
	}
	/* In flight here: a failed write or a failed close. A reset or a
	 * broken pipe from a client that stopped reading is expected in part 3:
	 * handled. */
	int rc = aw_error_pending();
	if (rc == -ECONNRESET || rc == -EPIPE)
		aw_error_clear(), rc = 0;
	return rc;
}

/* The async generator: `while data := await stream.read(n): yield data`. */
typedef struct chunk_reader {
	aw_stream *stream;
	char buf[8192];
	aw_chunk chunk;
	uint64_t offset;
} chunk_reader;

static int read_chunks(aw_gen *g, void *arg)
{
	chunk_reader *r = arg;
	for (;;) {
		ssize_t n = aw_stream_read(r->stream, r->buf, sizeof r->buf, aw_deadline_after(AW_SEC(5)));
		if (n < 0)
			return (int)n;   /* ends the loop with this error */
		if (n == 0)
			return 0;        /* end of stream: the end of the items */
		r->chunk = (aw_chunk){ .data = r->buf, .len = (size_t)n, .offset = (off_t)r->offset };
		r->offset += (uint64_t)n;
		int err = aw_gen_yield(g, &r->chunk);
		if (err) {
			/* The loop was left early: tear down (nothing to free here;
			 * the connection belongs to the block around the loop). */
			printf("reader: the loop was left early (%s), tearing down after %" PRIu64 " bytes\n",
			       aw_strerror(err), r->offset);
			return err;
		}
	}
}

/* For part 3: collect line number `want` (1-based) across chunk borders. */
typedef struct line_finder {
	uint64_t want, seen;
	char text[LINE_LEN + 1];
	size_t len;
} line_finder;

/* Feed one chunk; true once line `want` is complete (in f->text). */
static bool find_line(line_finder *f, const char *p, size_t n)
{
	const char *end = p + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t take = (size_t)((nl ? nl : end) - p);
		if (f->seen + 1 == f->want) {
			size_t room = sizeof f->text - 1 - f->len;
			take = take < room ? take : room;
			memcpy(f->text + f->len, p, take);
			f->len += take;
			f->text[f->len] = '\0';
		}
		if (!nl)
			break;
		if (++f->seen == f->want)
			return true;
		p = nl + 1;
	}
	return false;
}

/* The client: `async with connection as stream: async for chunk in ...`. */
static int streaming_client(void *arg)
{
	socket_demo *d = arg;
	totals t = { .what = "socket" };
	line_finder head = { .want = HEAD_LINES };
	aw_connection c;
	chunk_reader r = { 0 };
	aw_gen_iter gi;
	aw_chunk *chunk;

	AW_WITH(aw_tcp_connection_init(&c, "127.0.0.1", aw_listener_port(d->listener), aw_deadline_after(AW_SEC(5)))) {
		r.stream = c.stream;
		AW_FOR(chunk, aw_gen_iter_init(&gi, "read_chunks", read_chunks, &r)) {
			process(&t, chunk->data, chunk->len);
			if (d->head_only && find_line(&head, chunk->data, chunk->len))
				break;   /* leaves the loop: the generator is closed */
		}
		if (aw_error_pending())
			break;   /* the generator failed: leave the block with its error */
	}
	int rc = aw_error_pending();   /* connect, read, or close failed */
	if (rc < 0)
		return rc;
	if (d->head_only)
		printf("head: stopped at line %d: %s\n", HEAD_LINES, head.text);
	else
		print_totals(&t);
	return 0;
}

static int socket_part(bool head_only)
{
	puts(head_only ? "== a socket, stopping after the first 100 lines" : "== a socket, in chunks");
	socket_demo d = { .head_only = head_only };
	if (aw_tcp_listen(&d.listener, "127.0.0.1", 0, NULL) < 0)
		return aw_error_pending();
	aw_group g;
	AW_WITH(aw_listener_mgr(d.listener), aw_group_init(&g)) {
		if (aw_group_spawn(&g, streaming_server, &d, "server") < 0 ||
		    aw_group_spawn(&g, streaming_client, &d, "client") < 0)
			break;
	}
	/* A failed task makes the group's exit fail with -AW_EGROUP, listing
	 * each failure. */
	return aw_error_pending();
}

/* ---- main ------------------------------------------------------------------- */

static int amain(void *arg)
{
	const char *path = arg;
	int rc = file_part(path);
	if (rc >= 0)
		rc = socket_part(false);
	if (rc >= 0)
		rc = socket_part(true);
	if (rc < 0) {
		fprintf(stderr, "stream_chunks: ");
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();      /* handled here: a task returning a negative */
		return EXIT_FAILURE;   /* code would have aw_run print it again */
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: stream_chunks [FILE]\n");
		return 2;
	}
	return aw_run(amain, argc == 2 ? argv[1] : NULL) == 0 ? 0 : 1;
}
