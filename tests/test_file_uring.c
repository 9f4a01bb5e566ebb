/* SPDX-License-Identifier: MIT */
/* Tests: file calls (aw_file_*) on the io_uring backend go through the
 * ring, not the thread pool, with the pool path's results; cancellation
 * leaves buffers alone (src/io/file.c, src/core/fileop.c). Each test picks
 * its backends itself (aw_config.backend), whatever AWITH_BACKEND says. */
#include "harness.h"
#include "workdir.h"

#include "awith/ext.h"
#include "awith/io.h"
#include "awith/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int run_on(int backend, aw_task_fn fn, void *arg)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = backend;
	return aw_run_config(&cfg, fn, arg);
}

/* fn on the io_uring backend with a FIFO "fifo" in a fresh workdir (the
 * cancellation tests read from it); fn's result, or -1 when the directory
 * or the FIFO could not be made (said on stderr). */
static int run_on_fifo(aw_task_fn fn, void *arg)
{
	if (!make_workdir("file-uring")) {
		perror("run_on_fifo: mkdtemp");
		return -1;
	}
	char path[300];
	in_workdir(path, sizeof path, "fifo");
	int rc = -1;
	if (mkfifo(path, 0600) == 0)
		rc = run_on(AW_BACKEND_URING, fn, arg);
	else
		perror("run_on_fifo: mkfifo");
	remove_workdir();
	return rc;
}

/* The process's own threads: /proc/self/task less io_uring's io-wq
 * workers (comm "iou-wrk-<tid>"), which are the kernel's, not a pool's. */
static int thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], comm[64] = "";
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		FILE *f = fopen(path, "re");
		if (f) {
			if (!fgets(comm, sizeof comm, f))
				comm[0] = '\0';
			fclose(f);
		}
		if (strncmp(comm, "iou-", 4) != 0)
			n++;
	}
	closedir(d);
	return n;
}

/* awith_io_uring_file_ops_total as /metrics shows it. */
static double uring_file_ops(void)
{
	char *text = NULL;
	size_t len = 0;
	if (aw_metrics_render(&text, &len, NULL))
		return -1;
	double v = -1;
	const char *p = strstr(text, "\nawith_io_uring_file_ops_total ");
	if (p)
		v = strtod(p + strlen("\nawith_io_uring_file_ops_total "), NULL);
	free(text);
	return v;
}

static bool write_plain(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return false;
	bool ok = write(fd, data, len) == (ssize_t)len;
	return close(fd) == 0 && ok;
}

/* ---- the ring is used, the pool is not ------------------------------------------------ */

typedef struct path_case {
	int threads_before, threads_after;
	double ops_before, ops_after;
	int rc[4];
	bool content_ok;
} path_case;

#define SMALL_SIZE (64 * 1024)

static int calls_main(void *arg)
{
	path_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "small");
	c->threads_before = thread_count();
	c->ops_before = uring_file_ops();
	char *buf = NULL;
	size_t len = 0;
	c->rc[0] = aw_file_read_all(path, 1 << 20, &buf, &len);
	c->content_ok = buf && len == SMALL_SIZE && (unsigned char)buf[SMALL_SIZE - 1] == (SMALL_SIZE - 1) % 251;
	free(buf);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char part[1000];
	ssize_t n = aw_file_pread(fd, part, sizeof part, 5000);
	c->rc[1] = (int)n;
	if (n != (ssize_t)sizeof part || (unsigned char)part[0] != 5000 % 251)
		c->content_ok = false;
	close(fd);
	aw_file_chunks fc;
	aw_chunk *ch;
	size_t total = 0;
	AW_FOR(ch, aw_file_chunks_init(&fc, path, 16384))
		total += ch->len;
	c->rc[2] = total == SMALL_SIZE ? 0 : -1;
	/* Writes: atomic (open O_EXCL, write, fsync, close, rename, the
	 * directory's fsync) and positioned. */
	char out[300];
	in_workdir(out, sizeof out, "out");
	c->rc[3] = aw_file_write_all(out, "written", 7, 0600, true);
	fd = open(out, O_RDWR | O_CLOEXEC);
	if (c->rc[3] == 0)
		c->rc[3] = aw_file_pwrite(fd, "W", 1, 0);
	close(fd);
	c->threads_after = thread_count();
	c->ops_after = uring_file_ops();
	return 0;
}

static void make_small(void)
{
	char path[300];
	in_workdir(path, sizeof path, "small");
	static unsigned char data[SMALL_SIZE];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (unsigned char)(i % 251);
	CHECK(write_plain(path, data, sizeof data));
}

AW_TEST(file_calls_on_io_uring_are_ring_operations_and_start_no_pool_thread)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	CHECK(make_workdir("file-uring"));
	make_small();
	path_case c = { 0 };
	int rc = run_on(AW_BACKEND_URING, calls_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 1000);
	CHECK_EQ(c.rc[2], 0);
	CHECK_EQ(c.rc[3], 0);
	CHECK(c.content_ok);
	/* read_all: open + 2 reads; pread: 1; chunks: open + 5 reads; the
	 * atomic write: open, write, fsync, close, rename, the directory's
	 * open and fsync; pwrite: 1 */
	CHECK_EQ(c.ops_after - c.ops_before, 18.0);
	/* No pool worker (io-wq workers, if the kernel needed one, are not counted). */
	CHECK_EQ(c.threads_after, c.threads_before);
}

AW_TEST(file_calls_on_epoll_stay_on_the_thread_pool)
{
	CHECK(make_workdir("file-uring"));
	make_small();
	path_case c = { 0 };
	int rc = run_on(AW_BACKEND_EPOLL, calls_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 1000);
	CHECK_EQ(c.rc[3], 0);
	CHECK(c.content_ok);
	CHECK_EQ(c.ops_after, c.ops_before);           /* not one ring operation */
	CHECK_GT(c.threads_after, c.threads_before);   /* the pool started a worker */
}

/* ---- several MiB both ways, on both backends ------------------------------------------ */

#define BIG_SIZE (6 * 1024 * 1024 + 12345)

typedef struct big_case {
	int rc[6];
	bool same_all, same_pread, same_chunks;
	double ops;
} big_case;

static unsigned char big_byte(size_t i)
{
	return (unsigned char)((i * 2654435761u) >> 13);
}

static int big_main(void *arg)
{
	big_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "big");
	double ops0 = uring_file_ops();
	unsigned char *data = malloc(BIG_SIZE);
	if (!data)
		return -ENOMEM;
	for (size_t i = 0; i < BIG_SIZE; i++)
		data[i] = big_byte(i);
	c->rc[0] = aw_file_write_all(path, data, BIG_SIZE, 0600, true);
	char *buf = NULL;
	size_t len = 0;
	c->rc[1] = aw_file_read_all(path, BIG_SIZE, &buf, &len);
	c->same_all = buf && len == BIG_SIZE && memcmp(buf, data, BIG_SIZE) == 0;
	free(buf);
	/* pwrite a window in the middle, pread across it and the tail. */
	int fd = open(path, O_RDWR | O_CLOEXEC);
	memset(data + 3000000, 0x5a, 1 << 20);
	c->rc[2] = aw_file_pwrite(fd, data + 3000000, 1 << 20, 3000000);
	unsigned char *back = malloc(BIG_SIZE);
	ssize_t n = back ? aw_file_pread(fd, back, BIG_SIZE, 0) : -1;
	c->rc[3] = n == BIG_SIZE ? 0 : (int)n;
	c->same_pread = back && n == BIG_SIZE && memcmp(back, data, BIG_SIZE) == 0;
	n = back ? aw_file_pread(fd, back, 100000, BIG_SIZE - 1000) : -1;   /* short only at EOF */
	c->rc[4] = (int)n;
	free(back);
	close(fd);
	aw_file_chunks fc;
	aw_chunk *ch;
	c->same_chunks = true;
	size_t total = 0;
	AW_FOR(ch, aw_file_chunks_init(&fc, path, 256 * 1024)) {
		if (memcmp(ch->data, data + ch->offset, ch->len) != 0)
			c->same_chunks = false;
		total += ch->len;
	}
	c->rc[5] = total == BIG_SIZE ? 0 : -1;
	free(data);
	c->ops = uring_file_ops() - ops0;
	return 0;
}

static void big_on(int backend)
{
	CHECK(make_workdir("file-uring"));
	big_case c = { { 1, 1, 1, 1, 1, 1 }, false, false, false, 0 };
	int rc = run_on(backend, big_main, &c);
	char probe[300];
	snprintf(probe, sizeof probe, "ls '%s' | grep -q tmp", workdir);
	bool temp_left = system(probe) == 0;
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 0);
	CHECK_EQ(c.rc[2], 0);
	CHECK_EQ(c.rc[3], 0);
	CHECK_EQ(c.rc[4], 1000);
	CHECK_EQ(c.rc[5], 0);
	CHECK(c.same_all);
	CHECK(c.same_pread);
	CHECK(c.same_chunks);
	CHECK(!temp_left);
	if (backend == AW_BACKEND_URING)
		CHECK_GT(c.ops, 10.0);
	else
		CHECK_EQ(c.ops, 0.0);
}

AW_TEST(file_of_several_mib_round_trips_on_io_uring)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	big_on(AW_BACKEND_URING);
}

AW_TEST(file_of_several_mib_round_trips_on_epoll)
{
	big_on(AW_BACKEND_EPOLL);
}

/* ---- the same errors and messages on both backends ------------------------------------ */

#define NERR 9

typedef struct err_case {
	int rc[NERR];
	char msg[NERR][300];
} err_case;

static void note(err_case *c, int i, int rc)
{
	c->rc[i] = rc;
	const aw_error *e = aw_error_current();
	snprintf(c->msg[i], sizeof c->msg[i], "%s", rc < 0 && e && e->msg ? e->msg : "");
	aw_error_clear();
}

static int errors_main(void *arg)
{
	err_case *c = arg;
	char missing[300], target[300];
	in_workdir(missing, sizeof missing, "no/such/file");
	in_workdir(target, sizeof target, "no-dir/target");
	char *buf = NULL;
	size_t len = 0;
	note(c, 0, aw_file_read_all(missing, 100, &buf, &len));
	note(c, 1, aw_file_read_all(workdir, 100, &buf, &len));   /* a directory */
	char small[8];
	note(c, 2, (int)aw_file_pread(999, small, sizeof small, 0));   /* not open: EBADF from the kernel */
	note(c, 3, aw_file_pwrite(999, small, sizeof small, 0));
	note(c, 4, aw_file_write_all(target, "x", 1, 0600, true));
	note(c, 5, aw_file_write_all(target, "x", 1, 0600, false));
	aw_file_chunks fc;
	aw_chunk *ch;
	int n = 0;
	int rc = 0;
	AW_FOR(ch, aw_file_chunks_init(&fc, workdir, 4096))
		n++;
	rc = aw_error_pending();
	note(c, 6, n ? 1 : rc);
	int p[2];
	if (pipe(p) == 0) {   /* pread/pwrite need a seekable fd; io_uring alone would ignore the offset */
		if (write(p[1], "abcdef", 6) != 6)
			return -EIO;
		note(c, 7, (int)aw_file_pread(p[0], small, 4, 100));
		note(c, 8, aw_file_pwrite(p[1], "xy", 2, 100));
		close(p[0]);
		close(p[1]);
	}
	return 0;
}

AW_TEST(file_errors_are_the_same_codes_and_messages_on_io_uring_and_epoll)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	CHECK(make_workdir("file-uring"));
	/* fd 999 is not open in this process. */
	CHECK(fcntl(999, F_GETFD) == -1);
	err_case e = { 0 }, u = { 0 };
	int rc1 = run_on(AW_BACKEND_EPOLL, errors_main, &e);
	int rc2 = run_on(AW_BACKEND_URING, errors_main, &u);
	remove_workdir();
	CHECK_EQ(rc1, 0);
	CHECK_EQ(rc2, 0);
	CHECK_EQ(e.rc[0], -ENOENT);
	CHECK_EQ(e.rc[1], -EISDIR);
	CHECK_EQ(e.rc[2], -EBADF);
	CHECK_EQ(e.rc[3], -EBADF);
	CHECK_EQ(e.rc[4], -ENOENT);
	CHECK_EQ(e.rc[5], -ENOENT);
	CHECK_EQ(e.rc[6], -EISDIR);
	CHECK_EQ(e.rc[7], -ESPIPE);
	CHECK_EQ(e.rc[8], -ESPIPE);
	for (int i = 0; i < NERR; i++) {
		CHECK_EQ(u.rc[i], e.rc[i]);
		CHECK(strcmp(u.msg[i], e.msg[i]) == 0);
		if (strcmp(u.msg[i], e.msg[i]) != 0)
			fprintf(stderr, "     epoll: %s\n     uring: %s\n", e.msg[i], u.msg[i]);
	}
}

/* ---- cancellation ------------------------------------------------------------------------- */

/* A read parked on a FIFO that has a writer but no data: the loop's
 * deadline cancels it mid-read. The ring's read is cancelled and awaited:
 * bytes written into the FIFO afterwards are still there to read, so no
 * read of the abandoned operation took them (into a freed buffer). */
typedef struct cancel_case {
	int rc;
	char left[16];
	ssize_t left_len;
	char *buf;
	bool slow_enough;
} cancel_case;

static int fifo_cancel_main(void *arg)
{
	cancel_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "fifo");
	int keep = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);   /* a writer, so open(O_RDONLY) does not block */
	if (keep < 0)
		return -errno;
	if (write(keep, "abc", 3) != 3)
		return -EIO;
	aw_time t0 = aw_now();
	aw_scope to;
	size_t len = 0;
	c->rc = 1;
	AW_WITH(aw_move_on_init(&to, AW_MS(100)))
		c->rc = aw_file_read_all(path, 1 << 16, &c->buf, &len);
	c->slow_enough = aw_now() - t0 >= AW_MS(90);
	/* Written after the cancelled read returned: must stay in the FIFO. */
	if (write(keep, "XYZ", 3) != 3)
		return -EIO;
	int s = aw_sleep(AW_MS(20));   /* a late completion would have landed by now */
	(void)s;
	c->left_len = read(keep, c->left, sizeof c->left - 1);
	close(keep);
	return 0;
}

AW_TEST(file_read_cancelled_mid_read_on_io_uring_never_takes_later_bytes)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	cancel_case c = { 0 };
	int rc = run_on_fifo(fifo_cancel_main, &c);
	CHECK_EQ(rc, 0);
	CHECK(c.rc < 0);            /* the cancel code (a move_on scope's own code) */
	CHECK(c.buf == NULL);       /* nothing handed out */
	CHECK(c.slow_enough);       /* it really waited in the read until the deadline */
	CHECK_EQ(c.left_len, 3);
	CHECK(memcmp(c.left, "XYZ", 3) == 0);
}

/* The same rule below aw_file_*, with the caller's own buffer: a read the
 * task abandons (aw_task_cancel) returns the cancel code only after the
 * kernel let go of buf; bytes written afterwards never reach buf. */
typedef struct op_case {
	int fd_keep;
	char buf[64];
	int rc, res;
	bool buf_untouched;
	ssize_t left_len;
	char left[16];
} op_case;

static int op_reader(void *arg)
{
	op_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "fifo");
	aw_fileop open_op = { .kind = AW_FILEOP_OPEN, .path = path, .flags = O_RDONLY | O_CLOEXEC };
	if (aw_fileop_run(&open_op) || open_op.res < 0)
		return -1;
	aw_fileop rd = { .kind = AW_FILEOP_READ, .fd = open_op.res, .buf = c->buf, .len = sizeof c->buf, .off = -1 };
	c->rc = aw_fileop_run(&rd);
	c->res = rd.res;
	close(open_op.res);
	return c->rc;
}

static int op_cancel_main(void *arg)
{
	op_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "fifo");
	c->fd_keep = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (c->fd_keep < 0)
		return -errno;
	memset(c->buf, '#', sizeof c->buf);
	aw_task *t;
	if (aw_spawn(&t, op_reader, c, "reader"))
		return -1;
	if (aw_sleep(AW_MS(30)))
		return -1;
	aw_task_cancel(t);
	int j = aw_task_join(t);
	(void)j;
	aw_error_clear();
	if (write(c->fd_keep, "late", 4) != 4)
		return -EIO;
	if (aw_sleep(AW_MS(20)))
		return -1;
	c->buf_untouched = true;
	for (size_t i = 0; i < sizeof c->buf; i++)
		if (c->buf[i] != '#')
			c->buf_untouched = false;
	c->left_len = read(c->fd_keep, c->left, sizeof c->left - 1);
	close(c->fd_keep);
	return 0;
}

AW_TEST(fileop_read_cancelled_returns_after_the_kernel_let_go_of_the_buffer)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	op_case c = { 0 };
	int rc = run_on_fifo(op_cancel_main, &c);
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK_EQ(c.res, -ECANCELED);   /* the kernel's word: cancelled before any byte */
	CHECK(c.buf_untouched);
	CHECK_EQ(c.left_len, 4);
	CHECK(memcmp(c.left, "late", 4) == 0);
}

/* An atomic write whose task is cancelled while it runs is never cut at a
 * random point, and the call reports the cancellation. On io_uring the
 * operations are queued at once, so the write is always done whole; on the
 * pool a job that no thread had started yet is withdrawn (the target keeps
 * its old content), one that runs is done whole. */
typedef struct wcancel_case {
	int rc;
	bool whole, old;
} wcancel_case;

#define WC_SIZE (4 * 1024 * 1024)

static int writer(void *arg)
{
	wcancel_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "target");
	char *data = malloc(WC_SIZE);
	if (!data)
		return -ENOMEM;
	memset(data, 'n', WC_SIZE);
	c->rc = aw_file_write_all(path, data, WC_SIZE, 0600, true);
	free(data);
	return c->rc;
}

static int wcancel_main(void *arg)
{
	wcancel_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "target");
	if (!write_plain(path, "old", 3))
		return -EIO;
	aw_task *t;
	c->rc = 1;
	if (aw_spawn(&t, writer, c, "writer"))
		return -1;
	int y = aw_yield();   /* the writer starts, and waits for its first step */
	(void)y;
	aw_task_cancel(t);
	int j = aw_task_join(t);
	(void)j;
	aw_error_clear();
	char *buf = NULL;
	size_t len = 0;
	if (aw_file_read_all(path, WC_SIZE, &buf, &len) == 0) {
		c->whole = len == WC_SIZE && buf[0] == 'n' && buf[WC_SIZE - 1] == 'n';
		c->old = len == 3 && memcmp(buf, "old", 3) == 0;
		free(buf);
	}
	return 0;
}

static void wcancel_on(int backend)
{
	CHECK(make_workdir("file-uring"));
	wcancel_case c = { 0 };
	int rc = run_on(backend, wcancel_main, &c);
	char probe[300];
	snprintf(probe, sizeof probe, "ls '%s' | grep -q tmp", workdir);
	bool temp_left = system(probe) == 0;
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc, -ECANCELED);
	if (backend == AW_BACKEND_URING)
		CHECK(c.whole);
	else
		CHECK(c.whole || c.old);
	CHECK(!temp_left);
}

AW_TEST(file_atomic_write_cancelled_midway_completes_whole_and_returns_the_cancel_code_on_io_uring)
{
#if !AW_TEST_HAVE_IO_URING
	return;
#endif
	wcancel_on(AW_BACKEND_URING);
}

AW_TEST(file_atomic_write_cancelled_on_epoll_is_whole_or_withdrawn_never_partial)
{
	wcancel_on(AW_BACKEND_EPOLL);
}
