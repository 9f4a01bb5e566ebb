/* SPDX-License-Identifier: MIT */
/*
 * Files off the loop: whole-file reads and writes, positioned I/O, and a
 * file read in chunks as an async iterator.
 *
 * Disk I/O cannot be waited for with epoll (a regular file is always
 * "ready", and a read may still block on the disk), so on the epoll
 * backend every call runs on the loop's thread pool through aw_to_thread.
 * One job per call does the whole loop (open, every short read or write,
 * close) in the thread: a round trip to the pool per read(2) would cost
 * more than the read.
 *
 * On the io_uring backend the same code runs in the task instead, each
 * system call replaced by an aw_fileop_run (ext.h): IORING_OP_OPENAT,
 * READ, WRITE, FSYNC, CLOSE, RENAMEAT, UNLINKAT, submitted with the loop
 * turn's one io_uring_enter; a page-cache read completes inside that
 * call, and what must block runs in the kernel's io-wq workers, so the
 * pool never starts a thread for a file. The fctx below selects the one
 * or the other, so both paths share every check and every message: the
 * results and error codes are the same. What stays a plain system call on
 * the loop thread, on both paths' loop side: fstat of an fd just opened
 * (it reads the in-memory inode and never waits for the disk, while
 * IORING_OP_STATX always goes to an io-wq worker, costing more than the
 * call), getrandom for a temp name, and closing a read-only fd (nothing
 * to flush). Temp files (tempfile.c) are created with one mkostemp on the
 * loop thread as before, and a temp directory tree is still removed on the
 * pool: a tree walk is a chain of dependent calls (readdir, then each
 * unlink), one pool job instead of a loop turn per entry.
 *
 * Jobs live in the caller's frame (aw_to_thread waits for them). When the
 * caller is cancelled while its job runs, aw_to_thread waits for the job
 * and drops its result: whatever the job allocated or opened is then
 * released here, so a cancellation leaks nothing. Long reads poll
 * aw_thread_cancelled() and stop early; writes run to the end (a write cut
 * at a random point is worse than one finished after the caller left).
 * On io_uring the same: a read's operation is cancelled and awaited (the
 * kernel lets go of the buffer before the call returns the cancel code);
 * writes run shielded to their end, then the cancel code is returned.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the system calls, on the pool or the ring -------------------------------- */

/* Where a call's system calls go. ring false: plain system calls (in a pool
 * thread). ring true: aw_fileop_run from the task; `cancel` then holds the
 * cancel code (raised) once an operation was cancelled, and `cancel_seen`
 * says a shielded write saw a cancellation (nothing raised yet). */
typedef struct fctx {
	bool ring;
	bool shielded;   /* writes: never cut short */
	bool cancel_seen;
	int cancel;
} fctx;

/* Each returns the system call's result or -errno (nothing raised); on the
 * ring, a cancellation returns c->cancel (raised), which callers check
 * first: `if (c->cancel) return c->cancel;`. */
static int ring_run(fctx *c, aw_fileop *op)
{
	op->shielded = c->shielded;
	int rc = (aw_fileop_run)(op);
	if (rc < 0) {
		c->cancel = rc;   /* the cancel code (or a queueing failure), raised */
		return rc;
	}
	if (op->cancelled)
		c->cancel_seen = true;
	return op->res;
}

static bool f_cancelled(fctx *c)
{
	return c->ring ? c->cancel != 0 : aw_thread_cancelled();
}

static int f_open(fctx *c, const char *path, int flags, mode_t mode)
{
	if (c->ring)
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_OPEN, .path = path, .flags = flags, .mode = mode });
	int fd = open(path, flags, mode);
	return fd < 0 ? -errno : fd;
}

static ssize_t f_read(fctx *c, int fd, void *buf, size_t n, off_t off)
{
	if (c->ring) {
		if (n > UINT_MAX)
			n = UINT_MAX & ~(size_t)4095;   /* one operation's most: the caller loops */
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_READ, .fd = fd, .buf = buf, .len = n, .off = off });
	}
	ssize_t r = off < 0 ? read(fd, buf, n) : pread(fd, buf, n, off);
	return r < 0 ? -errno : r;
}

static ssize_t f_write(fctx *c, int fd, const void *buf, size_t n, off_t off)
{
	if (c->ring) {
		if (n > UINT_MAX)
			n = UINT_MAX & ~(size_t)4095;
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_WRITE, .fd = fd, .buf = (void *)buf, .len = n,
						 .off = off });
	}
	ssize_t r = off < 0 ? write(fd, buf, n) : pwrite(fd, buf, n, off);
	return r < 0 ? -errno : r;
}

static int f_fsync(fctx *c, int fd)
{
	if (c->ring)
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_FSYNC, .fd = fd });
	return fsync(fd) == 0 ? 0 : -errno;
}

/* Close an fd that was written (close reports delayed write errors). */
static int f_close(fctx *c, int fd)
{
	if (c->ring)
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_CLOSE, .fd = fd });
	return close(fd) == 0 ? 0 : -errno;
}

static int f_rename(fctx *c, const char *from, const char *to)
{
	if (c->ring)
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_RENAME, .path = from, .path2 = to });
	return rename(from, to) == 0 ? 0 : -errno;
}

static int f_unlink(fctx *c, const char *path)
{
	if (c->ring)
		return ring_run(c, &(aw_fileop){ .kind = AW_FILEOP_UNLINK, .path = path });
	return unlink(path) == 0 ? 0 : -errno;
}

/* Whether this task's file calls go through the loop's io_uring. */
static bool use_ring(void)
{
	const char *b = aw_loop_backend();
	return b && b[0] == 'i';   /* "io_uring" */
}

/* ---- helpers ------------------------------------------------------------------- */

/* pread until n bytes, end of file, or an error. Returns the count, or
 * -errno. Stops early (-ECANCELED; on the ring the cancel code, raised)
 * if the waiting task gave up. */
static ssize_t pread_full(fctx *c, int fd, char *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		if (f_cancelled(c))
			return c->ring ? c->cancel : -ECANCELED;
		ssize_t r = f_read(c, fd, buf + done, n - done, off + (off_t)done);
		if (c->cancel)
			return c->cancel;
		if (r < 0) {
			if (r == -EINTR)
				continue;
			return r;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* pwrite (or write, when off < 0) all n bytes. 0 or -errno (on the ring,
 * the cancel code if the queueing failed; writes are shielded). */
static int write_full(fctx *c, int fd, const char *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = f_write(c, fd, buf + done, n - done, off < 0 ? -1 : off + (off_t)done);
		if (c->cancel)
			return c->cancel;
		if (r < 0) {
			if (r == -EINTR)
				continue;
			return (int)r;
		}
		if (r == 0)
			return -EIO;   /* no progress on a regular file: give up, do not spin */
		done += (size_t)r;
	}
	return 0;
}

/* The end of a write on the ring: the write ran to its end shielded; if
 * the task was cancelled meanwhile, the result is dropped and the cancel
 * code returned, as aw_to_thread does for a job the task gave up on. */
static int ring_write_result(fctx *c, int rc)
{
	if (c->cancel)
		return c->cancel;
	if (!c->cancel_seen)
		return rc;
	if (rc < 0)
		aw_error_clear();   /* dropped: the cancellation is what the caller sees */
	int y = aw_yield();   /* a cancelled task's yield returns the cancel code, raised */
	return y < 0 ? y : rc;
}

/* path opened read-only: the fd, or a raised error (the ring's cancel code
 * when the open was cancelled). */
static int open_for_reading(fctx *c, const char *path)
{
	int fd = f_open(c, path, O_RDONLY | O_CLOEXEC, 0);
	if (c->cancel)
		return c->cancel;
	if (fd < 0) {
		errno = -fd;
		return aw_raise(fd, "cannot open '%s' for reading: %m", path);
	}
	return fd;
}

/* ---- aw_file_read_all ---------------------------------------------------------- */

typedef struct read_all_job {
	const char *path;
	size_t max;
	char *buf;
	size_t len;
} read_all_job;

static int read_all(fctx *c, read_all_job *j)
{
	int fd = open_for_reading(c, j->path);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int rc = aw_raise(-errno, "cannot stat '%s': %m", j->path);
		close(fd);
		return rc;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return aw_raise(-EISDIR, "cannot read '%s': it is a directory", j->path);
	}
	/* One byte past max is read, to tell "exactly max" from "more". */
	size_t limit = j->max < SIZE_MAX - 2 ? j->max + 1 : SIZE_MAX - 1;
	if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > j->max) {
		close(fd);
		return aw_raise(-AW_ETOOLONG, "'%s' is %jd bytes, more than the limit of %zu", j->path,
				(intmax_t)st.st_size, j->max);
	}
	/* The size is a hint only (/proc files say 0; a file may grow). */
	size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
	if (cap > limit)
		cap = limit;
	char *buf = aw__malloc(cap + 1);   /* + the NUL */
	if (!buf) {
		close(fd);
		return aw_raise(-ENOMEM, "reading '%s': out of memory for %zu bytes", j->path, cap);
	}
	size_t len = 0;
	int rc = 0;
	for (;;) {
		if (len == cap) {
			if (cap >= limit)
				break;   /* limit bytes read: more than max */
			size_t ncap = cap > limit / 2 ? limit : cap * 2;
			char *nb = aw__realloc(buf, ncap + 1);
			if (!nb) {
				rc = aw_raise(-ENOMEM, "reading '%s': out of memory for %zu bytes", j->path, ncap);
				break;
			}
			buf = nb;
			cap = ncap;
		}
		if (f_cancelled(c)) {
			rc = c->ring ? c->cancel : -ECANCELED;   /* dropped by aw_to_thread anyway */
			break;
		}
		/* read, not pread: FIFOs and character devices cannot seek. */
		ssize_t r = f_read(c, fd, buf + len, cap - len, -1);
		if (c->cancel) {
			rc = c->cancel;   /* the kernel has let go of buf */
			break;
		}
		if (r < 0) {
			if (r == -EINTR)
				continue;
			errno = (int)-r;
			rc = aw_raise((int)r, "cannot read '%s': %m", j->path);
			break;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!rc && len > j->max)
		rc = aw_raise(-AW_ETOOLONG, "'%s' is more than the limit of %zu bytes", j->path, j->max);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[len] = '\0';
	j->buf = buf;
	j->len = len;
	return 0;
}

static int read_all_in_thread(void *arg)
{
	return read_all(&(fctx){ .ring = false }, arg);
}

/* Waits: read the whole file at path into a malloc'd buffer, NUL-terminated
 * (*len excludes the NUL; it may be NULL). Files that report no size (/proc)
 * are read to their end all the same. Errors (nothing allocated): -errno of
 * open/read (-ENOENT, -EACCES, -EISDIR ...), -AW_ETOOLONG if the file holds
 * more than max bytes, -ENOMEM, the cancel code. */
int (aw_file_read_all)(const char *path, size_t max, char **out, size_t *len)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_file_read_all: out is NULL");
	*out = NULL;
	if (len)
		*len = 0;
	if (!path)
		return aw_raise(-EINVAL, "aw_file_read_all: path is NULL");
	read_all_job j = { .path = path, .max = max };
	int rc = use_ring() ? read_all(&(fctx){ .ring = true }, &j) : (aw_to_thread)(read_all_in_thread, &j);
	if (rc < 0) {
		free(j.buf);   /* finished, but the caller was cancelled meanwhile */
		return rc;
	}
	*out = j.buf;
	if (len)
		*len = j.len;
	return 0;
}

/* ---- aw_file_write_all --------------------------------------------------------- */

typedef struct write_all_job {
	const char *path;
	const char *data;
	size_t len;
	mode_t mode;
	bool atomic;
} write_all_job;

/* Create path + ".tmpXXXXXX" (six random letters and digits) with O_EXCL,
 * so the kernel applies the umask to `mode` as for the target itself.
 * Returns the fd (tmp holds the name) or a raised error. */
static int create_temp_beside(fctx *c, const char *path, char *tmp, size_t tmplen, mode_t mode)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char rnd[6];
		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
			/* Only if the kernel lacks getrandom: a weaker name is
			 * fine, O_EXCL keeps it safe. */
			uint64_t x = (uint64_t)aw_now() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)attempt * 0x9e3779b97f4a7c15u;
			memcpy(rnd, &x, sizeof rnd);
		}
		char suffix[7];
		for (size_t i = 0; i < sizeof rnd; i++)
			suffix[i] = alphabet[rnd[i] % (sizeof alphabet - 1)];
		suffix[6] = '\0';
		snprintf(tmp, tmplen, "%s.tmp%s", path, suffix);
		int fd = f_open(c, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (c->cancel)
			return c->cancel;
		if (fd >= 0)
			return fd;
		if (fd != -EEXIST) {
			errno = -fd;
			return aw_raise(fd, "cannot create a temporary file beside '%s': %m", path);
		}
	}
	return aw_raise(-EEXIST, "cannot create a temporary file beside '%s': 100 names taken", path);
}

/* fsync the directory that holds path, so that a rename into it survives a
 * crash. 0 or a raised error. */
static int fsync_parent(fctx *c, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? aw__strndup(path, slash == path ? 1 : (size_t)(slash - path)) : aw__strdup(".");
	if (!dir)
		return aw_raise(-ENOMEM, "out of memory");
	int rc = 0;
	int fd = f_open(c, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	int s = fd < 0 || c->cancel ? 0 : f_fsync(c, fd);
	if (c->cancel)
		rc = c->cancel;
	else if (fd < 0) {
		errno = -fd;
		rc = aw_raise(fd, "'%s' was replaced, but its directory '%s' cannot be opened to sync it: %m",
			      path, dir);
	} else if (s != 0 && s != -EINVAL) {   /* EINVAL: the fs cannot sync directories */
		errno = -s;
		rc = aw_raise(s, "'%s' was replaced, but syncing its directory '%s' failed: %m", path, dir);
	}
	if (fd >= 0)
		close(fd);   /* read-only: nothing to flush */
	free(dir);
	return rc;
}

static int write_atomic(fctx *c, write_all_job *j)
{
	size_t tmplen = strlen(j->path) + sizeof ".tmpXXXXXX";
	char *tmp = aw__malloc(tmplen);
	if (!tmp)
		return aw_raise(-ENOMEM, "writing '%s': out of memory", j->path);
	int rc = 0;
	int fd = create_temp_beside(c, j->path, tmp, tmplen, j->mode);
	if (fd < 0) {
		free(tmp);
		return fd;
	}
	/* From here on every failure removes the temp file: the target is
	 * either the old file or the complete new one, never a mix. */
	int w = write_full(c, fd, j->data, j->len, -1);
	int s = 0;
	if (c->cancel)
		rc = c->cancel;
	else if (w < 0) {
		errno = -w;
		rc = aw_raise(w, "cannot write '%s': %m", tmp);
	} else if ((s = f_fsync(c, fd)) != 0) {
		errno = -s;
		rc = c->cancel ? c->cancel : aw_raise(s, "cannot sync '%s': %m", tmp);
	}
	int cl = c->cancel ? (close(fd) == 0 ? 0 : -errno) : f_close(c, fd);
	if (c->cancel && !rc)
		rc = c->cancel;
	if (cl != 0 && !rc) {
		errno = -cl;
		rc = aw_raise(cl, "cannot close '%s': %m", tmp);
	}
	if (!rc) {
		int r = f_rename(c, tmp, j->path);
		if (c->cancel)
			rc = c->cancel;
		else if (r != 0) {
			errno = -r;
			rc = aw_raise(r, "cannot rename '%s' to '%s': %m", tmp, j->path);
		}
	}
	if (rc) {
		if (c->cancel)
			unlink(tmp);   /* the ring could not queue: a plain call */
		else
			(void)f_unlink(c, tmp);
	} else {
		rc = fsync_parent(c, j->path);
	}
	free(tmp);
	return rc;
}

static int write_all(fctx *c, write_all_job *j)
{
	if (j->atomic)
		return write_atomic(c, j);
	int fd = f_open(c, j->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, j->mode);
	if (c->cancel)
		return c->cancel;
	if (fd < 0) {
		errno = -fd;
		return aw_raise(fd, "cannot open '%s' for writing: %m", j->path);
	}
	int rc = write_full(c, fd, j->data, j->len, -1);
	if (c->cancel)
		rc = c->cancel;
	else if (rc < 0) {
		errno = -rc;
		rc = aw_raise(rc, "cannot write '%s': %m", j->path);
	}
	/* close reports delayed write errors (NFS, quotas). */
	int cl = c->cancel ? (close(fd) == 0 ? 0 : -errno) : f_close(c, fd);
	if (c->cancel && !rc)
		rc = c->cancel;
	if (cl != 0 && !rc) {
		errno = -cl;
		rc = aw_raise(cl, "cannot close '%s': %m", j->path);
	}
	return rc;
}

static int write_all_in_thread(void *arg)
{
	return write_all(&(fctx){ .ring = false }, arg);
}

/* Waits: write len bytes of data as the whole content of path, created
 * with `mode` (less the umask) if it does not exist. Not atomic: open with
 * O_TRUNC and write (a crash or error can leave a partial file). Atomic:
 * write "<path>.tmpXXXXXX" in the same directory, fsync it, rename it over
 * path and fsync the directory: readers see the old content or the new,
 * never a mix, and on any failure the temp file is removed and path is
 * untouched. Returns 0 or a raised -errno (-ENOENT for a missing
 * directory, -EACCES, -ENOSPC, -ENAMETOOLONG ...), or the cancel code
 * (the write is not cut short: on the pool it completes in its thread, on
 * io_uring before the call returns; a pool job no thread had started yet
 * is withdrawn). */
int (aw_file_write_all)(const char *path, const void *data, size_t len, mode_t mode, bool atomic)
{
	if (!path || !*path)
		return aw_raise(-EINVAL, "aw_file_write_all: empty path");
	if (!data && len)
		return aw_raise(-EINVAL, "aw_file_write_all: data is NULL");
	write_all_job j = { .path = path, .data = data, .len = len, .mode = mode, .atomic = atomic };
	if (use_ring()) {
		fctx c = { .ring = true, .shielded = true };
		return ring_write_result(&c, write_all(&c, &j));
	}
	return (aw_to_thread)(write_all_in_thread, &j);
}

/* ---- aw_file_pread / aw_file_pwrite -------------------------------------------- */

typedef struct pio_job {
	int fd;
	void *buf;
	size_t n;
	off_t off;
	ssize_t result;
} pio_job;

/* On the ring: io_uring ignores the offset of a pipe or a socket (it reads
 * or writes the stream), where pread(2) and pwrite(2) fail with ESPIPE.
 * One lseek (no copy, no wait) keeps the pool's answer. -ESPIPE or 0. */
static int ring_seekable(fctx *c, int fd)
{
	if (c->ring && lseek(fd, 0, SEEK_CUR) < 0 && errno == ESPIPE)
		return -ESPIPE;
	return 0;
}

static int pread_io(fctx *c, pio_job *j)
{
	j->result = ring_seekable(c, j->fd);
	if (!j->result)
		j->result = pread_full(c, j->fd, j->buf, j->n, j->off);
	if (c->cancel)
		return c->cancel;
	if (j->result < 0 && j->result != -ECANCELED) {
		errno = (int)-j->result;
		return aw_raise((int)j->result, "pread of %zu bytes at offset %jd from fd %d: %m", j->n,
				(intmax_t)j->off, j->fd);
	}
	return j->result < 0 ? (int)j->result : 0;
}

static int pread_in_thread(void *arg)
{
	return pread_io(&(fctx){ .ring = false }, arg);
}

static int pwrite_io(fctx *c, pio_job *j)
{
	int rc = ring_seekable(c, j->fd);
	if (!rc)
		rc = write_full(c, j->fd, j->buf, j->n, j->off);
	if (c->cancel)
		return c->cancel;
	if (rc < 0) {
		errno = -rc;
		return aw_raise(rc, "pwrite of %zu bytes at offset %jd to fd %d: %m", j->n, (intmax_t)j->off, j->fd);
	}
	return 0;
}

static int pwrite_in_thread(void *arg)
{
	return pwrite_io(&(fctx){ .ring = false }, arg);
}

static int pio_check(const char *who, int fd, const void *buf, size_t n, off_t off)
{
	if (fd < 0)
		return aw_raise(-EBADF, "%s: invalid fd %d", who, fd);
	if (!buf && n)
		return aw_raise(-EINVAL, "%s: buf is NULL", who);
	if (off < 0)
		return aw_raise(-EINVAL, "%s: negative offset %jd", who, (intmax_t)off);
	if (n > SSIZE_MAX)
		return aw_raise(-EINVAL, "%s: %zu bytes is more than one call can do", who, n);
	return 0;
}

/* Waits: read n bytes at offset off of fd (a file: its position is not
 * used or changed), looping over short reads. Returns the count read,
 * short only at end of file; -errno raised, or the cancel code. */
ssize_t (aw_file_pread)(int fd, void *buf, size_t n, off_t off)
{
	int rc = pio_check("aw_file_pread", fd, buf, n, off);
	if (rc)
		return rc;
	if (!n)
		return 0;
	pio_job j = { .fd = fd, .buf = buf, .n = n, .off = off };
	rc = use_ring() ? pread_io(&(fctx){ .ring = true }, &j) : (aw_to_thread)(pread_in_thread, &j);
	return rc < 0 ? rc : j.result;
}

/* Waits: write all n bytes at offset off of fd, looping over short writes.
 * 0, -errno raised (-ENOSPC, -EBADF ...), or the cancel code (the write
 * still completes). */
int (aw_file_pwrite)(int fd, const void *buf, size_t n, off_t off)
{
	int rc = pio_check("aw_file_pwrite", fd, buf, n, off);
	if (rc)
		return rc;
	if (!n)
		return 0;
	pio_job j = { .fd = fd, .buf = (void *)buf, .n = n, .off = off };
	if (use_ring()) {
		fctx c = { .ring = true, .shielded = true };
		return ring_write_result(&c, pwrite_io(&c, &j));
	}
	return (aw_to_thread)(pwrite_in_thread, &j);
}

/* ---- aw_file_chunks: a file as an async iterator -------------------------------- */

typedef struct open_job {
	const char *path;
	int fd;
} open_job;

static int open_for_chunks(fctx *c, open_job *j)
{
	int fd = open_for_reading(c, j->path);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return aw_raise(-EISDIR, "cannot read '%s' in chunks: it is a directory", j->path);
	}
	j->fd = fd;
	return 0;
}

static int open_in_thread(void *arg)
{
	return open_for_chunks(&(fctx){ .ring = false }, arg);
}

/* Enter: validate, allocate the chunk buffer, open the file (on the pool,
 * or the ring),
 * and put it in the ledger. */
static int chunks_enter(aw_mgr *m)
{
	aw_file_chunks *fc = AW_CONTAINER_OF(m, aw_file_chunks, iter.mgr);
	if (!fc->path)
		return aw_raise(-EINVAL, "aw_file_chunks: path is NULL");
	if (fc->chunk_size == 0 || fc->chunk_size > SSIZE_MAX)
		return aw_raise(-EINVAL, "aw_file_chunks('%s'): chunk_size %zu is not a usable size", fc->path,
				fc->chunk_size);
	fc->buf = aw__malloc(fc->chunk_size);
	if (!fc->buf)
		return aw_raise(-ENOMEM, "aw_file_chunks('%s'): out of memory for a %zu-byte chunk", fc->path,
				fc->chunk_size);
	open_job j = { .path = fc->path, .fd = -1 };
	int rc = use_ring() ? open_for_chunks(&(fctx){ .ring = true }, &j) : (aw_to_thread)(open_in_thread, &j);
	if (rc < 0) {
		if (j.fd >= 0)
			close(j.fd);   /* opened, but the caller was cancelled meanwhile */
		free(fc->buf);
		fc->buf = NULL;
		return rc;
	}
	fc->fd = j.fd;
	fc->offset = 0;
	aw_ledger_open(&fc->ledger, "file chunks", AW_HERE);
	fc->ledger.owner = fc;
	return 0;
}

/* Next: read the next chunk_size bytes (fewer only for the last chunk). */
static int chunks_next(aw_iter *it, void **item)
{
	aw_file_chunks *fc = AW_CONTAINER_OF(it, aw_file_chunks, iter);
	ssize_t n = (aw_file_pread)(fc->fd, fc->buf, fc->chunk_size, fc->offset);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return 0;
	fc->chunk = (aw_chunk){ .data = fc->buf, .len = (size_t)n, .offset = fc->offset };
	fc->offset += (off_t)n;
	*item = &fc->chunk;
	return 1;
}

/* Exit: close the fd, free the buffer, close the ledger entry; the error
 * passing through goes on. Closing a read-only fd cannot lose data, so it
 * is done here on the loop thread. */
static int chunks_exit(aw_mgr *m, int err)
{
	aw_file_chunks *fc = AW_CONTAINER_OF(m, aw_file_chunks, iter.mgr);
	if (fc->fd >= 0)
		close(fc->fd);
	fc->fd = -1;
	free(fc->buf);
	fc->buf = NULL;
	aw_ledger_close(&fc->ledger);
	return err;
}

static void chunks_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_file_chunks *fc = AW_CONTAINER_OF(m, aw_file_chunks, iter.mgr);
	snprintf(buf, len, "%s at offset %jd", fc->path ? fc->path : "?", (intmax_t)fc->offset);
}

static const aw_mgr_ops chunks_ops = {
	.name = "file chunks",
	.enter = chunks_enter,
	.exit = chunks_exit,
	.describe = chunks_describe,
};

/* Prepare fc (nothing is opened or allocated until the loop enters it):
 * AW_FOR(chunk, aw_file_chunks_init(&fc, path, 64 * 1024)) { ... } yields
 * aw_chunk * items of chunk_size bytes (the last may be shorter) with
 * increasing offsets, each valid until the next step. The file is opened
 * when the loop starts (-ENOENT ..., -EINVAL for chunk_size 0) and closed
 * on every way out of the loop. path must outlive the loop. */
aw_iter *aw_file_chunks_init(aw_file_chunks *fc, const char *path, size_t chunk_size)
{
	*fc = (aw_file_chunks){
		.iter = { .mgr = { .ops = &chunks_ops }, .next = chunks_next },
		.path = path,
		.chunk_size = chunk_size,
		.fd = -1,
	};
	return &fc->iter;
}
