/* SPDX-License-Identifier: MIT */
/*
 * 01_with_open — the seed's first snippet, a plain `with` block:
 *
 *     with open('log.txt', 'w') as f:
 *         f.write("Logging something important.")
 *
 * In awith a manager is a struct that embeds aw_mgr, with an enter and an
 * exit; AW_WITH runs the exit on every way out of the block. The write goes
 * to the loop's thread pool (aw_file_pwrite), so it waits like an `await`.
 *
 *     01_with_open [PATH]      (default: log.txt)
 */
#include <awith/io.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* open(path, 'w') as a manager: enter opens, exit closes. */
typedef struct open_file {
	aw_mgr mgr;
	const char *path;
	int fd;
	off_t written;
} open_file;

static int open_file_enter(aw_mgr *self)
{
	open_file *f = (open_file *)self;
	f->fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f->fd < 0)
		return aw_raise(-errno, "open %s: %m", f->path);
	return 0;
}

static int open_file_exit(aw_mgr *self, int err)
{
	open_file *f = (open_file *)self;
	close(f->fd);
	printf("closed %s (%s)\n", f->path, err ? aw_strerror(err) : "no error");
	return err;   /* let the block's error go on */
}

static const aw_mgr_ops open_file_ops = { .name = "open_file", .enter = open_file_enter, .exit = open_file_exit };

static aw_mgr *open_file_init(open_file *f, const char *path)
{
	*f = (open_file){ .mgr = { &open_file_ops }, .path = path, .fd = -1 };
	return &f->mgr;
}

/* f.write(s): waits (the write runs on the thread pool). */
static int file_write(open_file *f, const char *s)
{
	int rc = aw_file_pwrite(f->fd, s, strlen(s), f->written);
	if (rc == 0)
		f->written += (off_t)strlen(s);
	return rc;
}

/* The same block, left by an error: the file is closed all the same. */
static int write_and_fail(const char *path)
{
	open_file f;
	AW_WITH(open_file_init(&f, path)) {
		return aw_raise(-EIO, "the disk went away while logging");
	}
	return 0;
}

static int amain(void *arg)
{
	const char *path = arg;

	open_file f;
	AW_WITH(open_file_init(&f, path)) {
		if (file_write(&f, "Logging something important.") < 0)
			break;   /* leave with the error: the exit sees it */
	}
	if (aw_error_pending())
		return aw_error_pending();

	char *text;
	size_t len;
	if (aw_file_read_all(path, 4096, &text, &len) < 0)
		return aw_error_pending();
	printf("%s holds: %s\n", path, text);
	free(text);

	int rc = write_and_fail(path);
	printf("second block failed with: %s\n", aw_strerror(rc));
	aw_error_clear();   /* handled */
	return 0;
}

int main(int argc, char **argv)
{
	return aw_run(amain, argc > 1 ? argv[1] : "log.txt") == 0 ? 0 : 1;
}
