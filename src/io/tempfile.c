/* SPDX-License-Identifier: MIT */
/*
 * Temporary files and directories as managers: created on enter, removed on
 * exit, on every way out of the block (cancellation and timeouts included,
 * since exits run shielded).
 *
 * Creating one entry in a directory is a single quick syscall, done on the
 * loop thread. Removing a directory tree can take long (many files, a slow
 * disk), so the tempdir's exit does it on the thread pool.
 *
 * Exit policy for both: the error the block leaves with goes on unchanged
 * (a cancellation must stay a cancellation for its scope to see it); a
 * cleanup failure replaces "no error" only, so a block that succeeded but
 * left its temp behind fails.
 */
#include "internal.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Build "<dir>/<prefix>-XXXXXX" into out (sizeof 4096). dir NULL: $TMPDIR
 * if set and not empty, else /tmp. prefix NULL: "awith". */
static int temp_template(const char *who, const char *dir, const char *prefix, char *out, size_t len)
{
	if (!dir || !*dir) {
		dir = getenv("TMPDIR");
		if (!dir || !*dir)
			dir = "/tmp";
	}
	if (!prefix)
		prefix = "awith";
	if (strchr(prefix, '/'))
		return aw_raise(-EINVAL, "%s: the prefix \"%s\" contains a '/'", who, prefix);
	int n = snprintf(out, len, "%s/%s-XXXXXX", dir, prefix);
	if (n < 0 || (size_t)n >= len) {
		out[0] = '\0';
		return aw_raise(-ENAMETOOLONG, "%s: the path \"%s/%s-XXXXXX\" is longer than %zu bytes", who, dir,
				prefix, len - 1);
	}
	return 0;
}

/* ---- temp file ----------------------------------------------------------------- */

/* Enter: create the file with mkostemp (O_CLOEXEC), exactly mode 0600
 * whatever the umask. t->path and t->fd are set. */
static int tempfile_enter(aw_mgr *m)
{
	aw_tempfile *t = AW_CONTAINER_OF(m, aw_tempfile, mgr);
	t->fd = -1;
	int rc = temp_template("aw_tempfile", t->dir, t->prefix, t->path, sizeof t->path);
	if (rc)
		return rc;
	int fd = mkostemp(t->path, O_CLOEXEC);
	if (fd < 0) {
		rc = aw_raise(-errno, "aw_tempfile: cannot create %s: %m", t->path);
		t->path[0] = '\0';
		return rc;
	}
	if (fchmod(fd, 0600) != 0) {
		rc = aw_raise(-errno, "aw_tempfile: cannot chmod %s: %m", t->path);
		close(fd);
		unlink(t->path);
		t->path[0] = '\0';
		return rc;
	}
	t->fd = fd;
	return 0;
}

/* Exit: close and unlink. A file the body already renamed or removed
 * (ENOENT) is not an error: moving a finished temp file into place is the
 * usual way to use one. */
static int tempfile_exit(aw_mgr *m, int err)
{
	aw_tempfile *t = AW_CONTAINER_OF(m, aw_tempfile, mgr);
	int rc = 0;
	if (t->fd >= 0) {
		/* aw_fd_close: the body may have waited on the fd. */
		int c = aw_fd_close(t->fd);
		if (c < 0 && c != -EINTR)
			rc = aw_raise(c, "aw_tempfile: closing %s: %s", t->path, aw_strerror(c));
		t->fd = -1;
	}
	if (t->path[0] && unlink(t->path) != 0 && errno != ENOENT && !rc)
		rc = aw_raise(-errno, "aw_tempfile: cannot remove %s: %m", t->path);
	return err ? err : rc;
}

static void tempfile_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_tempfile *t = AW_CONTAINER_OF(m, aw_tempfile, mgr);
	snprintf(buf, len, "%s (fd %d)", t->path, t->fd);
}

static const aw_mgr_ops tempfile_ops = {
	.name = "tempfile",
	.enter = tempfile_enter,
	.exit = tempfile_exit,
	.describe = tempfile_describe,
};

/* Prepare t: AW_WITH(aw_tempfile_init(&t, NULL, "upload")) { use t.fd,
 * t.path }. dir and prefix are read at enter and must live until then.
 * Enter errors: -ENAMETOOLONG (the path does not fit t->path), -EINVAL (a
 * '/' in prefix), mkostemp's -errno (-ENOENT, -EACCES ...). */
aw_mgr *aw_tempfile_init(aw_tempfile *t, const char *dir, const char *prefix)
{
	t->mgr.ops = &tempfile_ops;
	t->dir = dir;
	t->prefix = prefix;
	t->fd = -1;
	t->path[0] = '\0';
	return &t->mgr;
}

/* ---- temp dir -------------------------------------------------------------------- */

/* Enter: mkdtemp (mode 0700, whatever the umask). */
static int tempdir_enter(aw_mgr *m)
{
	aw_tempdir *t = AW_CONTAINER_OF(m, aw_tempdir, mgr);
	int rc = temp_template("aw_tempdir", t->dir, t->prefix, t->path, sizeof t->path);
	if (rc)
		return rc;
	if (!mkdtemp(t->path)) {
		rc = aw_raise(-errno, "aw_tempdir: cannot create %s: %m", t->path);
		t->path[0] = '\0';
		return rc;
	}
	if (chmod(t->path, 0700) != 0) {
		rc = aw_raise(-errno, "aw_tempdir: cannot chmod %s: %m", t->path);
		rmdir(t->path);
		t->path[0] = '\0';
		return rc;
	}
	return 0;
}

/* nftw has no user argument: the first failure of the walk running on this
 * (worker) thread is kept here. */
static __thread int rm_errno;
static __thread char rm_failed[4096];

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	/* FTW_DEPTH: a directory comes after its contents. FTW_PHYS: a
	 * symlink is removed, never followed out of the tree. */
	int r = type == FTW_DP ? rmdir(path) : unlink(path);
	if (r != 0 && errno != ENOENT && !rm_errno) {
		rm_errno = errno;
		snprintf(rm_failed, sizeof rm_failed, "%s", path);
	}
	return 0;   /* go on: remove as much as possible */
}

/* Remove the tree at root. 0, or the first failure raised. */
static int rm_tree(const char *root)
{
	rm_errno = 0;
	rm_failed[0] = '\0';
	/* A subdirectory we cannot read shows up as FTW_DNR; it is then
	 * removed with rmdir, which fails if it is not empty: reported. */
	if (nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && !rm_errno) {
		rm_errno = errno;
		snprintf(rm_failed, sizeof rm_failed, "%s", root);
	}
	if (rm_errno == ENOENT)
		rm_errno = 0;   /* the body removed it itself */
	if (rm_errno) {
		errno = rm_errno;
		return aw_raise(-rm_errno, "aw_tempdir: cannot remove %s: %m", rm_failed);
	}
	return 0;
}

typedef struct rm_job {
	const char *root;
	bool ran;
} rm_job;

static int rm_tree_in_thread(void *arg)
{
	rm_job *j = arg;
	j->ran = true;
	return rm_tree(j->root);
}

/* Exit: remove the directory and everything in it, on the thread pool. If
 * the job never ran (no thread could start, or the cleanup's grace period
 * ran out while it was queued), the removal runs here, on the loop thread:
 * a late cleanup is better than a leaked directory. */
static int tempdir_exit(aw_mgr *m, int err)
{
	aw_tempdir *t = AW_CONTAINER_OF(m, aw_tempdir, mgr);
	if (!t->path[0])
		return err;
	rm_job j = { .root = t->path };
	int rc = (aw_to_thread)(rm_tree_in_thread, &j);
	if (rc < 0 && !j.ran)
		rc = rm_tree(t->path);
	t->path[0] = '\0';
	return err ? err : rc;
}

static void tempdir_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_tempdir *t = AW_CONTAINER_OF(m, aw_tempdir, mgr);
	snprintf(buf, len, "%s", t->path);
}

static const aw_mgr_ops tempdir_ops = {
	.name = "tempdir",
	.enter = tempdir_enter,
	.exit = tempdir_exit,
	.describe = tempdir_describe,
};

/* Prepare t: AW_WITH(aw_tempdir_init(&t, NULL, "work")) { use t.path }.
 * Enter errors as for aw_tempfile. The exit removes the tree without
 * following symlinks (a link to elsewhere is removed, not its target). */
aw_mgr *aw_tempdir_init(aw_tempdir *t, const char *dir, const char *prefix)
{
	t->mgr.ops = &tempdir_ops;
	t->dir = dir;
	t->prefix = prefix;
	t->path[0] = '\0';
	return &t->mgr;
}
