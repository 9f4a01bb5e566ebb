/* SPDX-License-Identifier: MIT */
/* Tests: buffered streams over socketpairs and pipes (src/io/stream.c). */
#include "harness.h"

#include "awith/io.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
	aw_stream *a, *b;     /* the two ends */
	int rc[8];
	char buf[256];
	size_t len;
	int step;
} pair_ctx;

static int make_pair(pair_ctx *c, const aw_stream_opts *opts)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -errno;
	int rc = aw_stream_from_fd(&c->a, sv[0], opts);
	if (rc) {
		close(sv[0]);
		close(sv[1]);
		return rc;
	}
	rc = aw_stream_from_fd(&c->b, sv[1], opts);
	if (rc)
		close(sv[1]);
	return rc;
}

static void close_pair(pair_ctx *c)
{
	if (aw_stream_close(c->a, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	if (aw_stream_close(c->b, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
}

/* ---- read_exact / EOF ------------------------------------------------------- */

static int writer_then_close(void *arg)
{
	pair_ctx *c = arg;
	int rc = aw_stream_write(c->b, "hello", 5, AW_NEVER);
	rc |= aw_sleep(AW_MS(5));
	rc |= aw_stream_write(c->b, " world", 6, AW_NEVER);
	rc |= aw_stream_shutdown(c->b, AW_NEVER);
	return rc;
}

static int read_exact_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	aw_task *w;
	if (aw_spawn(&w, writer_then_close, c, "writer"))
		return -1;
	c->rc[0] = aw_stream_read_exact(c->a, c->buf, 8, AW_NEVER);   /* spans both writes */
	c->rc[1] = aw_stream_read_exact(c->a, c->buf + 8, 10, AW_NEVER); /* only 3 left */
	c->rc[2] = (int)aw_stream_buffered(c->a);
	c->rc[3] = aw_task_join(w);
	close_pair(c);
	return 0;
}

AW_TEST(read_exact_waits_across_writes_and_eof_midway_is_aw_eeof_with_bytes_kept)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(read_exact_main, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK(memcmp(c.buf, "hello wo", 8) == 0);
	CHECK_EQ(c.rc[1], -AW_EEOF);
	CHECK_EQ(c.rc[2], 3);   /* "rld" stays buffered: nothing lost */
	CHECK_EQ(c.rc[3], 0);
}

/* ---- lines ------------------------------------------------------------------ */

static int lines_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	const char *text = "first\nsecond line\nthis one is far too long\nlast";
	if (aw_stream_write(c->b, text, strlen(text), AW_NEVER) || aw_stream_shutdown(c->b, AW_NEVER))
		return -1;
	const char *line;
	size_t len;
	c->rc[0] = aw_stream_read_line(c->a, 64, &line, &len, AW_NEVER);
	if (!c->rc[0])
		c->len = (size_t)snprintf(c->buf, sizeof c->buf, "%.*s|", (int)len, line);
	c->rc[1] = aw_stream_read_line(c->a, 64, &line, &len, AW_NEVER);
	if (!c->rc[1])
		c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len, "%.*s|", (int)len, line);
	c->rc[2] = aw_stream_read_line(c->a, 10, &line, &len, AW_NEVER);      /* too long */
	c->rc[3] = (int)aw_stream_buffered(c->a);                              /* untouched */
	c->rc[4] = aw_stream_read_line(c->a, 64, &line, &len, AW_NEVER);      /* now fits */
	c->rc[5] = aw_stream_read_line(c->a, 64, &line, &len, AW_NEVER);      /* "last", no \n */
	char rest[16] = "";
	c->rc[6] = (int)aw_stream_read(c->a, rest, sizeof rest - 1, AW_NEVER);
	c->len += (size_t)snprintf(c->buf + c->len, sizeof c->buf - c->len, "%s", rest);
	close_pair(c);
	return 0;
}

AW_TEST(read_line_returns_lines_and_too_long_line_is_aw_etoolong_without_consuming)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(lines_main, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 0);
	CHECK_EQ(c.rc[2], -AW_ETOOLONG);
	CHECK_EQ(c.rc[3], (long long)strlen("this one is far too long\nlast"));
	CHECK_EQ(c.rc[4], 0);
	CHECK_EQ(c.rc[5], -AW_EEOF);
	CHECK_EQ(c.rc[6], 4);
	CHECK_STR(c.buf, "first\n|second line\n|last");
}

static int until_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	/* The delimiter arrives split across two writes. */
	if (aw_stream_write(c->b, "key: value\r", 11, AW_NEVER))
		return -1;
	aw_task *t = NULL;
	(void)t;
	const char *p;
	size_t len;
	EXPECT_EQ(aw_stream_write(c->b, "\n\r\nbody", 7, AW_NEVER), 0);
	c->rc[0] = aw_stream_read_until(c->a, "\r\n\r\n", 4, 100, &p, &len, AW_NEVER);
	c->len = len;
	c->rc[1] = (int)aw_stream_buffered(c->a);
	close_pair(c);
	return 0;
}

AW_TEST(read_until_finds_a_multibyte_delimiter_split_across_reads)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(until_main, &c), 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.len, 14);
	CHECK_EQ(c.rc[1], 4);
}

/* ---- read_all ------------------------------------------------------------- */

static int read_all_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	char big[3000];
	memset(big, 'x', sizeof big);
	EXPECT_EQ(aw_stream_write(c->b, big, sizeof big, AW_NEVER), 0);
	EXPECT_EQ(aw_stream_shutdown(c->b, AW_NEVER), 0);
	char *out = NULL;
	size_t len = 0;
	c->rc[0] = aw_stream_read_all(c->a, 2999, &out, &len, AW_NEVER);
	c->rc[1] = out == NULL;
	close_pair(c);
	if (make_pair(c, NULL))
		return -1;
	EXPECT_EQ(aw_stream_write(c->b, big, sizeof big, AW_NEVER), 0);
	EXPECT_EQ(aw_stream_shutdown(c->b, AW_NEVER), 0);
	c->rc[2] = aw_stream_read_all(c->a, 3000, &out, &len, AW_NEVER);
	c->rc[3] = (int)len;
	c->rc[4] = out && out[len] == 0 && out[0] == 'x' && out[len - 1] == 'x';
	free(out);
	close_pair(c);
	return 0;
}

AW_TEST(read_all_over_max_is_aw_etoolong_and_exactly_max_is_read_whole)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(read_all_main, &c), 0);
	CHECK_EQ(c.rc[0], -AW_ETOOLONG);
	CHECK_EQ(c.rc[1], 1);
	CHECK_EQ(c.rc[2], 0);
	CHECK_EQ(c.rc[3], 3000);
	CHECK_EQ(c.rc[4], 1);
}

/* ---- backpressure ---------------------------------------------------------- */

typedef struct {
	pair_ctx p;
	size_t total, got;
	int wrc, rrc;
	size_t max_pending;
} bp_ctx;

static int bp_writer(void *arg)
{
	bp_ctx *c = arg;
	char chunk[8192];
	memset(chunk, 'a', sizeof chunk);
	for (size_t sent = 0; sent < c->total; sent += sizeof chunk) {
		int rc = aw_stream_write(c->p.b, chunk, sizeof chunk, AW_NEVER);
		if (rc) {
			/* The reader waits without a deadline: end its wait
			 * (an injected allocation failure lands here). */
			shutdown(aw_stream_fd(c->p.b), SHUT_WR);
			return c->wrc = rc;
		}
		if (aw_stream_pending(c->p.b) > c->max_pending)
			c->max_pending = aw_stream_pending(c->p.b);
	}
	return c->wrc = aw_stream_shutdown(c->p.b, AW_NEVER);
}

static int bp_main(void *arg)
{
	bp_ctx *c = arg;
	aw_stream_opts o = { .write_buffer = 16 * 1024 };
	if (make_pair(&c->p, &o))
		return -1;
	aw_task *w;
	if (aw_spawn(&w, bp_writer, c, "writer"))
		return -1;
	char buf[4096];
	for (;;) {
		EXPECT_EQ(aw_sleep(AW_US(50)), 0);   /* a slow reader */
		ssize_t r = aw_stream_read(c->p.a, buf, sizeof buf, AW_NEVER);
		if (r <= 0) {
			c->rrc = (int)r;
			break;
		}
		c->got += (size_t)r;
	}
	EXPECT_EQ(aw_task_join(w), 0);
	close_pair(&c->p);
	return 0;
}

AW_TEST(writer_waits_when_the_write_buffer_is_full_and_every_byte_arrives)
{
	bp_ctx c = { .total = 2 * 1024 * 1024 };
	CHECK_EQ(aw_run(bp_main, &c), 0);
	CHECK_EQ(c.wrc, 0);
	CHECK_EQ(c.rrc, 0);
	CHECK_EQ(c.got, c.total);
	CHECK_LE(c.max_pending, 16 * 1024);
}

static int stalled_main(void *arg)
{
	pair_ctx *c = arg;
	aw_stream_opts o = { .write_buffer = 4096 };
	if (make_pair(c, &o))
		return -1;
	/* Nobody reads c->b's peer: the kernel buffers fill, then ours. */
	static char chunk[65536];
	aw_time dl = aw_deadline_after(AW_MS(100));
	int rc = 0;
	for (int i = 0; i < 1000 && !rc; i++)
		rc = aw_stream_write(c->a, chunk, sizeof chunk, dl);
	c->rc[0] = rc;
	const aw_error *e = aw_error_current();
	c->rc[1] = e && strstr(e->msg, "not reading") != NULL;
	/* A small write still fits the buffer and returns at once... */
	c->rc[4] = aw_stream_write(c->a, "x", 1, aw_deadline_after(AW_MS(20)));
	c->rc[2] = aw_stream_pending(c->a) > 0;
	/* Closing does not wait forever for a peer that never reads. */
	c->rc[3] = aw_stream_close(c->a, aw_deadline_after(AW_MS(20)));
	if (aw_stream_close(c->b, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	return 0;
}

AW_TEST(peer_that_stops_reading_blocks_the_writer_until_the_deadline_then_etimedout)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(stalled_main, &c), 0);
	CHECK_EQ(c.rc[0], -ETIMEDOUT);
	CHECK_EQ(c.rc[1], 1);
	CHECK_EQ(c.rc[4], 0);
	CHECK_EQ(c.rc[2], 1);
	CHECK_EQ(c.rc[3], -ETIMEDOUT);   /* ...and close gives up at its deadline */
}

/* ---- errors ----------------------------------------------------------------- */

static int epipe_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	if (aw_stream_close(c->b, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	c->b = NULL;
	char chunk[4096] = { 0 };
	int rc = 0;
	for (int i = 0; i < 100 && !rc; i++)
		rc = aw_stream_write(c->a, chunk, sizeof chunk, AW_NEVER);
	c->rc[0] = rc;
	c->rc[1] = aw_stream_write(c->a, "x", 1, AW_NEVER);
	char buf[8];
	c->rc[2] = (int)aw_stream_read(c->a, buf, sizeof buf, AW_NEVER);
	if (aw_stream_close(c->a, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	return 0;
}

AW_TEST(writing_to_a_closed_peer_is_epipe_not_sigpipe_and_the_stream_stays_broken)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(epipe_main, &c), 0);
	CHECK(c.rc[0] == -EPIPE || c.rc[0] == -ECONNRESET);
	CHECK_EQ(c.rc[1], c.rc[0]);
	CHECK_EQ(c.rc[2], 0);   /* reading sees the end */
}

static int deadline_main(void *arg)
{
	pair_ctx *c = arg;
	if (make_pair(c, NULL))
		return -1;
	char buf[8];
	aw_time t0 = aw_now();
	c->rc[0] = (int)aw_stream_read(c->a, buf, sizeof buf, aw_deadline_after(AW_MS(30)));
	c->rc[1] = (int)((aw_now() - t0) / AW_MS(1));
	close_pair(c);
	return 0;
}

AW_TEST(read_with_a_deadline_and_no_data_is_etimedout)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(deadline_main, &c), 0);
	CHECK_EQ(c.rc[0], -ETIMEDOUT);
	CHECK_GE(c.rc[1], 25);
	CHECK_LT(c.rc[1], 2000);
}

/* ---- peek/consume, pipes, manager ------------------------------------------- */

static int peek_main(void *arg)
{
	pair_ctx *c = arg;
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return -1;
	if (aw_stream_from_fd(&c->a, p[0], NULL) || aw_stream_from_fd(&c->b, p[1], NULL))
		return -1;
	EXPECT_EQ(aw_stream_write(c->b, "abcdef", 6, AW_NEVER), 0);
	c->rc[0] = (int)aw_stream_fill(c->a, 1024, AW_NEVER);
	const char *d;
	size_t n;
	aw_stream_peek(c->a, &d, &n);
	c->rc[1] = (int)n;
	c->rc[2] = n >= 3 && memcmp(d, "abc", 3) == 0;
	aw_stream_consume(c->a, 4);
	aw_stream_peek(c->a, &d, &n);
	c->rc[3] = n == 2 && memcmp(d, "ef", 2) == 0;
	/* The stream's manager closes it on the way out. */
	AW_WITH(aw_stream_mgr(c->b)) {
		EXPECT_EQ(aw_stream_write(c->b, "z", 1, AW_NEVER), 0);
	}
	c->b = NULL;
	char buf[8];
	c->rc[4] = (int)aw_stream_read(c->a, buf, sizeof buf, AW_NEVER);   /* "ef" */
	c->rc[5] = (int)aw_stream_read(c->a, buf, sizeof buf, AW_NEVER);   /* "z" */
	c->rc[6] = (int)aw_stream_read(c->a, buf, sizeof buf, AW_NEVER);   /* EOF */
	if (aw_stream_close(c->a, AW_NEVER) < 0)
		aw_error_clear();   /* teardown: its failure is not under test */
	return 0;
}

AW_TEST(peek_and_consume_give_zero_copy_access_and_the_manager_closes_a_pipe_end)
{
	pair_ctx c = { 0 };
	CHECK_EQ(aw_run(peek_main, &c), 0);
	CHECK_EQ(c.rc[0], 6);
	CHECK_EQ(c.rc[1], 6);
	CHECK_EQ(c.rc[2], 1);
	CHECK_EQ(c.rc[3], 1);
	CHECK_EQ(c.rc[4], 2);
	CHECK_EQ(c.rc[5], 1);
	CHECK_EQ(c.rc[6], 0);
}

static int leak_main(void *arg)
{
	int *leaked = arg;
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	aw_stream *s;
	if (aw_stream_from_fd(&s, sv[0], NULL))
		return -1;
	close(sv[1]);
	*leaked = sv[0];
	return 0;   /* s is never closed */
}

AW_TEST(stream_never_closed_is_reported_at_shutdown_with_where_it_was_opened)
{
	char *text = NULL;
	size_t len = 0;
	FILE *log = open_memstream(&text, &len);
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.log = log;
	int leaked = -1;
	CHECK_EQ(aw_run_config(&cfg, leak_main, &leaked), 0);
	fclose(log);
	CHECK(strstr(text, "leak: stream") != NULL);
	CHECK(strstr(text, "test_stream.c") != NULL);
	free(text);
	/* After the report, the loop released the leaked stream: its fd is
	 * closed (and LeakSanitizer sees no lost memory). */
	CHECK_GE(leaked, 0);
	CHECK_EQ(fcntl(leaked, F_GETFD), -1);
}

/* ---- where a stream call waits ------------------------------------------------- */

/* The stream calls record their caller's location as every public waiting
 * call does: a task waiting in aw_stream_read shows the caller's line in the
 * dump, not the fd wait inside the library. */
struct where_ctx { pair_ctx p; int read_line; char *dump; size_t len; };

static int blocked_reader(void *arg)
{
	struct where_ctx *w = arg;
	char buf[8];
	w->read_line = __LINE__; ssize_t n = aw_stream_read(w->p.a, buf, sizeof buf, AW_NEVER);
	return n == 1 ? 0 : -1;
}

static int where_main(void *arg)
{
	struct where_ctx *w = arg;
	if (make_pair(&w->p, NULL))
		return -1;
	aw_task *t;
	if (aw_spawn(&t, blocked_reader, w, "reader"))
		return -1;
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	FILE *f = open_memstream(&w->dump, &w->len);
	aw_dump(f);
	fclose(f);
	EXPECT_EQ(aw_stream_write(w->p.b, "x", 1, AW_NEVER), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	close_pair(&w->p);
	return 0;
}

AW_TEST(dump_shows_a_stream_read_waiting_at_its_callers_line)
{
	struct where_ctx w;
	memset(&w, 0, sizeof w);
	CHECK_EQ(aw_run(where_main, &w), 0);
	CHECK(w.dump != NULL);
	const char *line = strstr(w.dump, "'reader'");
	CHECK(line != NULL);
	const char *eol = strchr(line, '\n');
	CHECK(eol != NULL);
	char first[512], want[64];
	snprintf(first, sizeof first, "%.*s", (int)(eol - line), line);
	snprintf(want, sizeof want, "test_stream.c:%d", w.read_line);
	if (!strstr(first, want))
		aw_test_fail(__FILE__, __LINE__, "expected %s in: %s", want, first);
	free(w.dump);
}

/* ---- injected short reads/writes and EINTR ----------------------------------- */

/* In a -Dfault_injection build (scripts/test.sh's ASan build) the stream's
 * read/write/send calls are wrapped (src/common/alloc.h): AW_FAULT_IO_SHORT=N
 * makes every Nth call move half the bytes, AW_FAULT_IO_EINTR=N makes every
 * Nth fail with EINTR first. Elsewhere the symbol below is absent and the
 * test only checks the data. */
unsigned long aw__fault_io_injected(void) __attribute__((weak));

#define FAULT_BYTES ((size_t)3 << 20)

static unsigned char fault_pattern(size_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

typedef struct fault_ctx {
	pair_ctx p;
	bool pipe;       /* a pipe (short reads injected too) or a socketpair */
	int wrc, rrc;
	size_t got, mismatches;
	unsigned char wbuf[70000], rbuf[5000];   /* off the tasks' small stacks */
} fault_ctx;

static int fault_writer(void *arg)
{
	fault_ctx *c = arg;
	unsigned char *buf = c->wbuf;
	size_t off = 0, step = 1;
	while (off < FAULT_BYTES) {
		size_t n = step % sizeof c->wbuf + 1;   /* 1 byte to ~70 KB, varying */
		if (n > FAULT_BYTES - off)
			n = FAULT_BYTES - off;
		for (size_t i = 0; i < n; i++)
			buf[i] = fault_pattern(off + i);
		int rc = aw_stream_write(c->p.b, buf, n, AW_NEVER);
		if (rc) {
			/* End the reader's wait (it has no deadline). */
			if (c->pipe) {
				(void)!aw_stream_close(c->p.b, AW_NEVER);
				c->p.b = NULL;
			} else {
				shutdown(aw_stream_fd(c->p.b), SHUT_WR);
			}
			c->wrc = rc;
			return rc;
		}
		off += n;
		step = step * 7 + 13;
	}
	c->wrc = c->pipe ? aw_stream_drain(c->p.b, AW_NEVER) : aw_stream_shutdown(c->p.b, AW_NEVER);
	if (c->pipe) {
		(void)!aw_stream_close(c->p.b, AW_NEVER);   /* the reader's EOF */
		c->p.b = NULL;
	}
	return 0;
}

static int fault_main(void *arg)
{
	fault_ctx *c = arg;
	if (c->pipe) {
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) != 0)
			return -1;
		int rc = aw_stream_from_fd(&c->p.a, fds[0], &(aw_stream_opts){ .read_buffer = 4096 });
		if (rc) {
			close(fds[0]);
			close(fds[1]);
			return rc;
		}
		rc = aw_stream_from_fd(&c->p.b, fds[1], NULL);
		if (rc) {
			close(fds[1]);
			(void)!aw_stream_close(c->p.a, AW_NEVER);
			return rc;
		}
	} else {
		int rc = make_pair(&c->p, &(aw_stream_opts){ .read_buffer = 4096 });
		if (rc) {
			if (c->p.a)
				(void)!aw_stream_close(c->p.a, AW_NEVER);
			return rc;
		}
	}
	aw_task *w;
	int rc = aw_spawn(&w, fault_writer, c, "writer");
	if (rc) {
		(void)!aw_stream_close(c->p.a, AW_NEVER);
		(void)!aw_stream_close(c->p.b, AW_NEVER);
		return rc;
	}
	unsigned char *buf = c->rbuf;
	for (;;) {
		ssize_t n = aw_stream_read(c->p.a, buf, sizeof c->rbuf, AW_NEVER);
		if (n <= 0) {
			c->rrc = (int)n;
			if (n < 0)
				aw_task_cancel(w);   /* it may wait for room forever */
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != fault_pattern(c->got + (size_t)i))
				c->mismatches++;
		c->got += (size_t)n;
	}
	(void)!aw_task_join(w);
	(void)!aw_stream_close(c->p.a, AW_NEVER);
	if (c->p.b)
		(void)!aw_stream_close(c->p.b, AW_NEVER);
	aw_error_clear();
	return 0;
}

static void stream_through_faults(bool use_pipe)
{
	if (!getenv("AW_FAULT_IO_SHORT"))
		setenv("AW_FAULT_IO_SHORT", "3", 1);   /* before the first library call */
	if (!getenv("AW_FAULT_IO_EINTR"))
		setenv("AW_FAULT_IO_EINTR", "5", 1);
	fault_ctx *c = calloc(1, sizeof *c);
	CHECK(c != NULL);
	c->pipe = use_pipe;
	int rc = aw_run(fault_main, c);
	fault_ctx r;
	memcpy(&r, c, offsetof(fault_ctx, wbuf));
	free(c);
	CHECK_EQ(rc, 0);
	CHECK_EQ(r.wrc, 0);
	CHECK_EQ(r.rrc, 0);
	CHECK_EQ(r.got, FAULT_BYTES);
	CHECK_EQ(r.mismatches, 0);
	if (aw__fault_io_injected)
		CHECK_GE(aw__fault_io_injected(), 100);
}

/* Socket: short writes and EINTR both ways (see aw__fault_read on reads). */
AW_TEST(stream_data_is_intact_through_short_writes_and_eintr_on_a_socket)
{
	stream_through_faults(false);
}

AW_TEST(stream_data_is_intact_through_short_reads_short_writes_and_eintr_on_a_pipe)
{
	stream_through_faults(true);
}

/* ---- aw_stream_sendfile ------------------------------------------------------- */

#define SF_SIZE (600 * 1024)

typedef struct sf_ctx {
	pair_ctx p;
	int fd;                /* the file */
	ssize_t sent, short_sent, at_end;
	int wrc;
	char *got;
	size_t got_len;
	off_t file_pos;        /* the file's own offset after the sends */
} sf_ctx;

static int sf_writer(void *arg)
{
	sf_ctx *c = arg;
	/* Buffered bytes first: a head that must precede the file. */
	c->wrc = aw_stream_write(c->p.b, "HEAD", 4, AW_NEVER);
	c->sent = aw_stream_sendfile(c->p.b, c->fd, 1000, SF_SIZE - 2000, aw_deadline_after(AW_SEC(5)));
	/* Past the end: the count says how much there was. */
	c->short_sent = aw_stream_sendfile(c->p.b, c->fd, SF_SIZE - 10, 100, aw_deadline_after(AW_SEC(5)));
	c->at_end = aw_stream_sendfile(c->p.b, c->fd, SF_SIZE, 100, aw_deadline_after(AW_SEC(5)));
	c->file_pos = lseek(c->fd, 0, SEEK_CUR);
	c->wrc |= aw_stream_shutdown(c->p.b, AW_NEVER);
	return 0;
}

static int sf_main(void *arg)
{
	sf_ctx *c = arg;
	aw_stream_opts o = { .write_buffer = 4096 };   /* the writer must wait for the reader */
	if (make_pair(&c->p, &o))
		return -1;
	aw_task *w;
	if (aw_spawn(&w, sf_writer, c, "sf-writer"))
		return -1;
	int rc = aw_stream_read_all(c->p.a, 2 * SF_SIZE, &c->got, &c->got_len, aw_deadline_after(AW_SEC(10)));
	EXPECT_EQ(rc, 0);
	EXPECT_EQ(aw_task_join(w), 0);
	close_pair(&c->p);
	return 0;
}

AW_TEST(sendfile_sends_a_file_range_after_the_buffered_bytes_and_a_short_count_at_its_end)
{
	char path[] = "/tmp/aw-sendfile-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	char *data = malloc(SF_SIZE);
	CHECK(data != NULL);
	for (size_t i = 0; i < SF_SIZE; i++)
		data[i] = (char)(i * 31 + i / 977);
	CHECK_EQ(write(fd, data, SF_SIZE), SF_SIZE);
	CHECK_EQ(lseek(fd, 5, SEEK_SET), 5);
	sf_ctx c = { .fd = fd };
	CHECK_EQ(aw_run(sf_main, &c), 0);
	CHECK_EQ(c.wrc, 0);
	CHECK_EQ(c.sent, SF_SIZE - 2000);
	CHECK_EQ(c.short_sent, 10);
	CHECK_EQ(c.at_end, 0);
	CHECK_EQ(c.file_pos, 5);   /* the file's own offset is left alone */
	CHECK_EQ(c.got_len, 4 + (SF_SIZE - 2000) + 10);
	CHECK(memcmp(c.got, "HEAD", 4) == 0);
	CHECK(memcmp(c.got + 4, data + 1000, SF_SIZE - 2000) == 0);
	CHECK(memcmp(c.got + 4 + SF_SIZE - 2000, data + SF_SIZE - 10, 10) == 0);
	free(c.got);
	free(data);
	close(fd);
}

typedef struct sf_slow_ctx {
	pair_ctx p;
	int fd;
	ssize_t first, second;
	int second_err;
} sf_slow_ctx;

static int sf_slow_main(void *arg)
{
	sf_slow_ctx *c = arg;
	if (make_pair(&c->p, NULL))
		return -1;
	/* Nobody reads: the socket buffer fills, then the deadline passes. */
	c->first = aw_stream_sendfile(c->p.b, c->fd, 0, 8 * 1024 * 1024, aw_deadline_after(AW_MS(50)));
	c->second = aw_stream_sendfile(c->p.b, c->fd, c->first > 0 ? c->first : 0, 8 * 1024 * 1024,
				       aw_deadline_after(AW_MS(50)));
	c->second_err = c->second < 0 && aw_error_current() && strstr(aw_error_current()->msg, "not reading");
	aw_error_clear();
	close_pair(&c->p);
	return 0;
}

AW_TEST(sendfile_returns_short_when_the_deadline_passes_after_progress_and_etimedout_without)
{
	char path[] = "/tmp/aw-sendfile-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	unlink(path);
	CHECK_EQ(ftruncate(fd, 8 * 1024 * 1024), 0);
	sf_slow_ctx c = { .fd = fd };
	CHECK_EQ(aw_run(sf_slow_main, &c), 0);
	CHECK_GT(c.first, 0);
	CHECK_LT(c.first, 8 * 1024 * 1024);
	CHECK_EQ(c.second, -ETIMEDOUT);
	CHECK_EQ(c.second_err, 1);
	close(fd);
}

/* ---- write-behind (io_uring) and the direct path: order and accounting -- */

static unsigned char pat(size_t i) { return (unsigned char)(i * 13 + i / 509); }

typedef struct {
	pair_ctx p;
	size_t written, got;
	bool ok;
	int wrc, drc;
	aw_time pause;
} order_ctx;

/* Reads c->p.b until EOF, checking each byte continues the pattern. */
static int pattern_reader(void *arg)
{
	order_ctx *c = arg;
	if (c->pause && aw_sleep(c->pause))
		return -1;
	char buf[4096];
	c->ok = true;
	for (;;) {
		ssize_t r = aw_stream_read(c->p.b, buf, sizeof buf, aw_deadline_after(AW_SEC(10)));
		if (r < 0)
			return (int)r;
		if (r == 0)
			return 0;
		for (ssize_t i = 0; i < r; i++, c->got++)
			c->ok = c->ok && (unsigned char)buf[i] == pat(c->got);
	}
}

/* Pieces of sizes from 1 byte to 3 KiB, many per loop turn (they extend
 * the send in flight, and some do not fit behind it), some turns apart. */
static int order_main(void *arg)
{
	order_ctx *c = arg;
	aw_stream_opts o = { .write_buffer = 16 * 1024 };
	if (make_pair(&c->p, &o))
		return -1;
	aw_task *r;
	EXPECT_EQ(aw_spawn(&r, pattern_reader, c, "reader"), 0);
	unsigned char piece[3072];
	for (int i = 0; i < 2000 && !c->wrc; i++) {
		size_t n = 1 + (size_t)(i * 397) % sizeof piece;
		for (size_t k = 0; k < n; k++)
			piece[k] = pat(c->written + k);
		c->wrc = aw_stream_write(c->p.a, piece, n, aw_deadline_after(AW_SEC(10)));
		if (!c->wrc)
			c->written += n;
		if (i % 50 == 49 && aw_sleep(0))
			break;
	}
	if (!c->wrc)
		c->wrc = aw_stream_shutdown(c->p.a, aw_deadline_after(AW_SEC(10)));
	EXPECT_EQ(aw_task_join(r), 0);
	close_pair(&c->p);
	return 0;
}

AW_TEST(many_small_writes_reach_the_peer_whole_and_in_order)
{
	order_ctx c = { 0 };
	CHECK_EQ(aw_run(order_main, &c), 0);
	CHECK_EQ(c.wrc, 0);
	CHECK(c.written > 2 * 1024 * 1024);
	CHECK_EQ(c.got, c.written);
	CHECK(c.ok);
}

/* The peer stops reading: writes fail at their deadline; then a drain,
 * while the peer reads again, sends what was left. The peer must get the
 * writes' bytes in order, none twice and none missing, up to at least
 * everything the successful writes took. */
static int resume_main(void *arg)
{
	order_ctx *c = arg;
	aw_stream_opts o = { .write_buffer = 8 * 1024 };
	if (make_pair(&c->p, &o))
		return -1;
	unsigned char piece[1500];
	size_t offered = 0;
	for (int i = 0; i < 10000; i++) {
		for (size_t k = 0; k < sizeof piece; k++)
			piece[k] = pat(offered + k);
		int rc = aw_stream_write(c->p.a, piece, sizeof piece, aw_deadline_after(AW_MS(30)));
		if (rc) {
			c->wrc = rc;
			aw_error_clear();
			break;
		}
		offered += sizeof piece;
		c->written = offered;
	}
	aw_task *r;
	EXPECT_EQ(aw_spawn(&r, pattern_reader, c, "reader"), 0);
	c->drc = aw_stream_drain(c->p.a, aw_deadline_after(AW_SEC(10)));
	EXPECT_EQ(aw_stream_shutdown(c->p.a, aw_deadline_after(AW_SEC(10))), 0);
	EXPECT_EQ(aw_task_join(r), 0);
	close_pair(&c->p);
	return 0;
}

AW_TEST(a_write_past_its_deadline_keeps_its_unsent_bytes_and_a_drain_sends_each_once)
{
	order_ctx c = { 0 };
	CHECK_EQ(aw_run(resume_main, &c), 0);
	CHECK_EQ(c.wrc, -ETIMEDOUT);
	CHECK_EQ(c.drc, 0);
	CHECK(c.got >= c.written);          /* nothing a write took is lost */
	CHECK(c.got <= c.written + 1500);   /* at most the failed write's own bytes besides */
	CHECK(c.ok);                        /* in order, none twice */
}
