/* SPDX-License-Identifier: MIT */
/* Tests: files off the loop, file chunks, temp files and dirs
 * (src/io/file.c, src/io/tempfile.c). */
#include "harness.h"
#include "workdir.h"

#include "awith/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


static bool error_mentions(const char *part)
{
	const aw_error *e = aw_error_current();
	return e && e->msg && strstr(e->msg, part) != NULL;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;   /* the directory's own fd */
}

/* Entries of dir whose name starts with prefix. */
static int count_entries(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

/* Each test works in a private directory (tests/workdir.c). */

/* ---- read_all / write_all ------------------------------------------------------------ */

typedef struct rw_case {
	int rc[8];
	char *buf;
	size_t len;
	int temp_left;
	mode_t mode;
} rw_case;

static int round_trip_main(void *arg)
{
	rw_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "data.bin");
	char data[10000];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i * 7 + 3);
	c->rc[0] = aw_file_write_all(path, data, sizeof data, 0640, false);
	c->rc[1] = aw_file_read_all(path, sizeof data, &c->buf, &c->len);
	EXPECT(c->buf && c->len == sizeof data && memcmp(c->buf, data, sizeof data) == 0);
	EXPECT(c->buf && c->buf[c->len] == '\0');
	free(c->buf);
	c->buf = NULL;
	/* Atomic replace with a shorter content. */
	c->rc[2] = aw_file_write_all(path, "short", 5, 0600, true);
	c->rc[3] = aw_file_read_all(path, 100, &c->buf, &c->len);
	EXPECT(c->buf && c->len == 5 && strcmp(c->buf, "short") == 0);
	free(c->buf);
	c->buf = NULL;
	c->temp_left = count_entries(workdir, "data.bin.tmp");
	struct stat st;
	if (stat(path, &st) == 0)
		c->mode = st.st_mode & 0777;
	/* An empty file reads as an empty, NUL-terminated buffer. */
	c->rc[4] = aw_file_write_all(path, NULL, 0, 0600, true);
	c->rc[5] = aw_file_read_all(path, 0, &c->buf, &c->len);
	EXPECT(c->buf && c->len == 0 && c->buf[0] == '\0');
	free(c->buf);
	c->buf = NULL;
	return 0;
}

AW_TEST(file_write_all_and_read_all_round_trip_plain_and_atomic)
{
	CHECK(make_workdir("file-test"));
	rw_case c = { { 1, 1, 1, 1, 1, 1 }, NULL, 0, -1, 0 };
	mode_t old = umask(022);
	int rc = aw_run(round_trip_main, &c);
	umask(old);
	remove_workdir();
	CHECK_EQ(rc, 0);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(c.rc[i], 0);
	CHECK_EQ(c.temp_left, 0);
	CHECK_EQ(c.mode, 0600);
}

static int limits_main(void *arg)
{
	rw_case *c = arg;
	char path[300], missing[300];
	in_workdir(path, sizeof path, "ten");
	in_workdir(missing, sizeof missing, "missing");
	c->rc[0] = aw_file_write_all(path, "0123456789", 10, 0644, false);
	c->rc[1] = aw_file_read_all(path, 9, &c->buf, &c->len);
	EXPECT(c->buf == NULL);
	EXPECT(error_mentions(path));
	c->rc[2] = aw_file_read_all(path, 10, &c->buf, &c->len);   /* exactly max: fine */
	free(c->buf);
	c->buf = NULL;
	c->rc[3] = aw_file_read_all(missing, 100, &c->buf, &c->len);
	EXPECT(error_mentions(missing));
	c->rc[4] = aw_file_read_all(workdir, 100, &c->buf, &c->len);
	/* /proc files report size 0 and are still read whole. */
	c->rc[5] = aw_file_read_all("/proc/self/status", 1 << 20, &c->buf, &c->len);
	EXPECT(c->buf && strstr(c->buf, "Pid:") != NULL);
	free(c->buf);
	c->buf = NULL;
	c->rc[6] = aw_file_read_all("/proc/self/status", 10, &c->buf, &c->len);
	c->rc[7] = aw_file_write_all("/nonexistent-dir/x", "x", 1, 0644, true);
	aw_error_clear();
	return 0;
}

AW_TEST(file_read_all_limits_and_errors_are_clear_codes)
{
	CHECK(make_workdir("file-test"));
	rw_case c = { { 1, 1, 1, 1, 1, 1, 1, 1 }, NULL, 0, 0, 0 };
	int rc = aw_run(limits_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], -AW_ETOOLONG);
	CHECK_EQ(c.rc[2], 0);
	CHECK_EQ(c.rc[3], -ENOENT);
	CHECK_EQ(c.rc[4], -EISDIR);
	CHECK_EQ(c.rc[5], 0);
	CHECK_EQ(c.rc[6], -AW_ETOOLONG);
	CHECK_EQ(c.rc[7], -ENOENT);
}

/* An atomic write that fails after its temp file was written (the rename
 * over a non-empty directory fails) removes the temp file; other files are
 * untouched. */
static int atomic_failure_main(void *arg)
{
	rw_case *c = arg;
	char target[300];
	in_workdir(target, sizeof target, "target");
	c->rc[0] = aw_file_write_all(target, "old", 3, 0644, false);
	/* rename over a non-empty directory fails: EISDIR. */
	char dirtarget[300], inner[320];
	in_workdir(dirtarget, sizeof dirtarget, "adir");
	snprintf(inner, sizeof inner, "%s/inner", dirtarget);
	mkdir(dirtarget, 0700);
	c->rc[1] = aw_file_write_all(inner, "x", 1, 0644, false);
	c->rc[2] = aw_file_write_all(dirtarget, "new", 3, 0644, true);
	c->temp_left = count_entries(workdir, "adir.tmp");
	c->rc[3] = aw_file_read_all(target, 100, &c->buf, &c->len);
	EXPECT(c->buf && strcmp(c->buf, "old") == 0);
	free(c->buf);
	c->buf = NULL;
	aw_error_clear();
	return 0;
}

AW_TEST(file_atomic_write_that_fails_removes_its_temp_file_and_keeps_the_target)
{
	CHECK(make_workdir("file-test"));
	rw_case c = { { 1, 1, 1, 1 }, NULL, 0, -1, 0 };
	int rc = aw_run(atomic_failure_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 0);
	CHECK(c.rc[2] == -EISDIR || c.rc[2] == -ENOTEMPTY || c.rc[2] == -EEXIST);
	CHECK_EQ(c.temp_left, 0);
	CHECK_EQ(c.rc[3], 0);
}

/* ---- pread / pwrite ---------------------------------------------------------------------- */

static int pio_main(void *arg)
{
	rw_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "pio");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	static char big[300000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i % 251);
	c->rc[0] = aw_file_pwrite(fd, big, sizeof big, 0);
	c->rc[1] = aw_file_pwrite(fd, "XYZ", 3, 1000);
	char got[16] = "";
	c->rc[2] = (int)aw_file_pread(fd, got, 5, 999);
	EXPECT(memcmp(got, "\xf6XYZ\xfa", 5) == 0);   /* 999 % 251 = 246, 1003 % 251 = 250 */
	static char back[300000];
	c->rc[3] = (int)aw_file_pread(fd, back, sizeof back, 0);
	EXPECT(memcmp(back, big, 999) == 0 && memcmp(back + 1003, big + 1003, sizeof big - 1003) == 0);
	/* Short only at end of file. */
	c->rc[4] = (int)aw_file_pread(fd, back, sizeof back, (off_t)sizeof big - 10);
	c->rc[5] = (int)aw_file_pread(fd, back, 10, (off_t)sizeof big + 100);
	c->rc[6] = (int)aw_file_pread(-1, back, 10, 0);
	c->rc[7] = aw_file_pwrite(fd, "x", 1, -5);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	EXPECT_EQ(pos, 0);   /* positioned I/O leaves the offset alone */
	close(fd);
	aw_error_clear();
	return 0;
}

AW_TEST(file_pread_pwrite_transfer_whole_ranges_and_short_only_at_eof)
{
	CHECK(make_workdir("file-test"));
	rw_case c = { { 1, 1, 1, 1, 1, 1, 1, 1 }, NULL, 0, 0, 0 };
	int rc = aw_run(pio_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc[0], 0);
	CHECK_EQ(c.rc[1], 0);
	CHECK_EQ(c.rc[2], 5);
	CHECK_EQ(c.rc[3], 300000);
	CHECK_EQ(c.rc[4], 10);
	CHECK_EQ(c.rc[5], 0);
	CHECK_EQ(c.rc[6], -EBADF);
	CHECK_EQ(c.rc[7], -EINVAL);
}

/* ---- file chunks ---------------------------------------------------------------------------- */

typedef struct chunk_case {
	size_t total;
	int chunks;
	bool increasing, contiguous, content_ok;
	int fds_before, fds_inside, fds_after;
	int rc, ledger_inside, ledger_after;
} chunk_case;

#define CHUNK_FILE_SIZE (100 * 1000 + 17)

static int chunks_main(void *arg)
{
	chunk_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "chunks");
	static char data[CHUNK_FILE_SIZE];
	for (size_t i = 0; i < sizeof data; i++)
		data[i] = (char)(i % 13);
	if (aw_file_write_all(path, data, sizeof data, 0600, false))
		return -1;
	c->fds_before = count_fds();
	c->increasing = c->contiguous = c->content_ok = true;
	off_t last = -1;
	aw_file_chunks fc;
	aw_chunk *ch;
	AW_FOR(ch, aw_file_chunks_init(&fc, path, 4096)) {
		if (ch->offset <= last)
			c->increasing = false;
		if ((size_t)ch->offset != c->total)
			c->contiguous = false;
		if (memcmp(ch->data, data + ch->offset, ch->len) != 0)
			c->content_ok = false;
		last = ch->offset;
		c->total += ch->len;
		c->chunks++;
		if (c->chunks == 1) {
			c->fds_inside = count_fds();
			c->ledger_inside = (int)aw_ledger_count();
		}
	}
	c->fds_after = count_fds();
	c->ledger_after = (int)aw_ledger_count();
	return 0;
}

AW_TEST(file_chunks_cover_the_file_in_order_and_close_at_the_end)
{
	CHECK(make_workdir("file-test"));
	chunk_case c = { 0 };
	int rc = aw_run(chunks_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.total, CHUNK_FILE_SIZE);
	CHECK_EQ(c.chunks, (CHUNK_FILE_SIZE + 4095) / 4096);
	CHECK(c.increasing);
	CHECK(c.contiguous);
	CHECK(c.content_ok);
	CHECK_EQ(c.fds_inside, c.fds_before + 1);
	CHECK_EQ(c.fds_after, c.fds_before);
	CHECK_EQ(c.ledger_inside, 1);
	CHECK_EQ(c.ledger_after, 0);
}

static int chunks_break_main(void *arg)
{
	chunk_case *c = arg;
	char path[300];
	in_workdir(path, sizeof path, "chunks");
	static char data[CHUNK_FILE_SIZE];
	if (aw_file_write_all(path, data, sizeof data, 0600, false))
		return -1;
	c->fds_before = count_fds();
	aw_file_chunks fc;
	aw_chunk *ch;
	AW_FOR(ch, aw_file_chunks_init(&fc, path, 1000)) {
		c->chunks++;
		c->fds_inside = count_fds();
		if (c->chunks == 3)
			break;
	}
	c->fds_after = count_fds();
	c->ledger_after = (int)aw_ledger_count();

	/* A missing file fails the loop's enter: the body never runs. */
	int bodies = 0;
	in_workdir(path, sizeof path, "nope");
	AW_FOR(ch, aw_file_chunks_init(&fc, path, 1000))
		bodies++;
	c->rc = aw_error_pending();
	EXPECT_EQ(bodies, 0);
	EXPECT(error_mentions("nope"));
	aw_error_clear();
	return 0;
}

AW_TEST(file_chunks_break_early_closes_the_fd_and_a_missing_file_fails_enter)
{
	CHECK(make_workdir("file-test"));
	chunk_case c = { 0 };
	int rc = aw_run(chunks_break_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.chunks, 3);
	CHECK_EQ(c.fds_inside, c.fds_before + 1);
	CHECK_EQ(c.fds_after, c.fds_before);
	CHECK_EQ(c.ledger_after, 0);
	CHECK_EQ(c.rc, -ENOENT);
}

/* ---- temp files ------------------------------------------------------------------------------ */

typedef struct temp_case {
	char path[4096];
	int mode;
	bool existed, gone;
	int rc, fds_before, fds_after;
} temp_case;

static int tempfile_normal_main(void *arg)
{
	temp_case *c = arg;
	c->fds_before = count_fds();
	aw_tempfile t;
	AW_WITH(aw_tempfile_init(&t, workdir, "up")) {
		snprintf(c->path, sizeof c->path, "%s", t.path);
		struct stat st;
		c->existed = fstat(t.fd, &st) == 0 && access(t.path, F_OK) == 0;
		c->mode = (int)(st.st_mode & 0777);
		EXPECT_EQ(write(t.fd, "abc", 3), 3);
		EXPECT(fcntl(t.fd, F_GETFD) & FD_CLOEXEC);
	}
	c->gone = access(c->path, F_OK) != 0 && errno == ENOENT;
	c->fds_after = count_fds();
	return 0;
}

AW_TEST(tempfile_is_0600_inside_the_block_and_removed_after_it)
{
	CHECK(make_workdir("file-test"));
	temp_case c = { 0 };
	mode_t old = umask(0);   /* 0600 whatever the umask */
	int rc = aw_run(tempfile_normal_main, &c);
	umask(old);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK(c.existed);
	CHECK_EQ(c.mode, 0600);
	CHECK(strncmp(c.path, workdir, strlen(workdir)) == 0);
	CHECK(strstr(c.path, "/up-") != NULL);
	CHECK(c.gone);
	CHECK_EQ(c.fds_after, c.fds_before);
}

static int tempfile_error_body(temp_case *c)
{
	aw_tempfile t;
	AW_WITH(aw_tempfile_init(&t, workdir, NULL)) {
		snprintf(c->path, sizeof c->path, "%s", t.path);
		return aw_raise(-EIO, "body failed");
	}
	return 0;
}

static int tempfile_error_main(void *arg)
{
	temp_case *c = arg;
	c->fds_before = count_fds();
	c->rc = tempfile_error_body(c);
	EXPECT_EQ(aw_error_pending(), -EIO);   /* the exit let it through */
	aw_error_clear();
	c->gone = c->path[0] && access(c->path, F_OK) != 0;
	c->fds_after = count_fds();
	return 0;
}

AW_TEST(tempfile_is_removed_when_the_body_fails_and_the_error_goes_on)
{
	CHECK(make_workdir("file-test"));
	temp_case c = { 0 };
	int rc = aw_run(tempfile_error_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.rc, -EIO);
	CHECK(c.gone);
	CHECK_EQ(c.fds_after, c.fds_before);
}

static int tempfile_sleeper(void *arg)
{
	temp_case *c = arg;
	aw_tempfile t;
	AW_WITH(aw_tempfile_init(&t, workdir, "cancel")) {
		snprintf(c->path, sizeof c->path, "%s", t.path);
		c->rc = aw_sleep(AW_SEC(10));
	}
	return c->rc;
}

static int tempfile_cancel_main(void *arg)
{
	temp_case *c = arg;
	c->fds_before = count_fds();
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, tempfile_sleeper, c, "sleeper"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	c->existed = c->path[0] && access(c->path, F_OK) == 0;
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), -ECANCELED);
	aw_error_clear();
	c->gone = c->path[0] && access(c->path, F_OK) != 0;
	c->fds_after = count_fds();
	return 0;
}

AW_TEST(tempfile_is_removed_when_the_task_is_cancelled)
{
	CHECK(make_workdir("file-test"));
	temp_case c = { 0 };
	int rc = aw_run(tempfile_cancel_main, &c);
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK(c.existed);
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK(c.gone);
	CHECK_EQ(c.fds_after, c.fds_before);
}

static int tempfile_bad_main(void *arg)
{
	int *rc = arg;
	char longdir[5000];
	memset(longdir, 'd', sizeof longdir - 1);
	longdir[0] = '/';
	longdir[sizeof longdir - 1] = '\0';
	aw_tempfile t;
	int bodies = 0;
	AW_WITH(aw_tempfile_init(&t, longdir, NULL))
		bodies++;
	rc[0] = aw_error_pending();
	AW_WITH(aw_tempfile_init(&t, workdir, "a/b"))
		bodies++;
	rc[1] = aw_error_pending();
	AW_WITH(aw_tempfile_init(&t, "/nonexistent-dir", NULL))
		bodies++;
	rc[2] = aw_error_pending();
	aw_tempdir d;
	AW_WITH(aw_tempdir_init(&d, longdir, NULL))
		bodies++;
	rc[3] = aw_error_pending();
	rc[4] = bodies;
	aw_error_clear();
	return 0;
}

AW_TEST(tempfile_with_too_long_a_path_is_enametoolong_and_bad_prefix_einval)
{
	CHECK(make_workdir("file-test"));
	int rc[5] = { 1, 1, 1, 1, 1 };
	int r = aw_run(tempfile_bad_main, rc);
	remove_workdir();
	CHECK_EQ(r, 0);
	CHECK_EQ(rc[0], -ENAMETOOLONG);
	CHECK_EQ(rc[1], -EINVAL);
	CHECK_EQ(rc[2], -ENOENT);
	CHECK_EQ(rc[3], -ENAMETOOLONG);
	CHECK_EQ(rc[4], 0);
}

/* ---- temp dirs ----------------------------------------------------------------------------------- */

static int tempdir_main(void *arg)
{
	temp_case *c = arg;
	aw_tempdir d;
	AW_WITH(aw_tempdir_init(&d, workdir, "work")) {
		snprintf(c->path, sizeof c->path, "%s", d.path);
		struct stat st;
		c->existed = stat(d.path, &st) == 0 && S_ISDIR(st.st_mode);
		c->mode = (int)(st.st_mode & 0777);
		char p[4200];
		snprintf(p, sizeof p, "%s/a", d.path);
		EXPECT_EQ(mkdir(p, 0755), 0);
		snprintf(p, sizeof p, "%s/a/b", d.path);
		EXPECT_EQ(mkdir(p, 0755), 0);
		snprintf(p, sizeof p, "%s/a/b/file", d.path);
		EXPECT_EQ(aw_file_write_all(p, "deep", 4, 0644, false), 0);
		snprintf(p, sizeof p, "%s/top", d.path);
		EXPECT_EQ(aw_file_write_all(p, "top", 3, 0400, false), 0);
		/* A symlink out of the tree: removed, its target kept. */
		snprintf(p, sizeof p, "%s/link", d.path);
		EXPECT_EQ(symlink(workdir, p), 0);
	}
	c->rc = aw_error_pending();
	c->gone = access(c->path, F_OK) != 0 && errno == ENOENT;
	return 0;
}

AW_TEST(tempdir_is_0700_and_removed_with_nested_content_but_not_symlink_targets)
{
	CHECK(make_workdir("file-test"));
	temp_case c = { 0 };
	int rc = aw_run(tempdir_main, &c);
	bool workdir_kept = access(workdir, F_OK) == 0;
	remove_workdir();
	CHECK_EQ(rc, 0);
	CHECK(c.existed);
	CHECK_EQ(c.mode, 0700);
	CHECK_EQ(c.rc, 0);
	CHECK(c.gone);
	CHECK(workdir_kept);
}
