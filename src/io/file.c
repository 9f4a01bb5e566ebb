/* SPDX-License-Identifier: MIT */
/*
 * Files off the loop: whole-file reads and writes, positioned I/O, and a
 * file read in chunks as an async iterator.
 *
 * Disk I/O cannot be waited for with epoll (a regular file is always
 * "ready", and a read may still block on the disk), so every call runs on
 * the loop's thread pool through aw_to_thread. One job per call does the
 * whole loop (open, every short read or write, close) in the thread: a
 * round trip to the pool per read(2) would cost more than the read.
 *
 * Jobs live in the caller's frame (aw_to_thread waits for them). When the
 * caller is cancelled while its job runs, aw_to_thread waits for the job
 * and drops its result: whatever the job allocated or opened is then
 * released here, so a cancellation leaks nothing. Long reads poll
 * aw_thread_cancelled() and stop early; writes run to the end (a write cut
 * at a random point is worse than one finished after the caller left).
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers (run in the worker thread) ------------------------------------- */

/* pread until n bytes, end of file, or an error. Returns the count, or
 * -errno. Stops early (-ECANCELED) if the waiting task gave up. */
static ssize_t pread_full(int fd, char *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		if (aw_thread_cancelled())
			return -ECANCELED;
		ssize_t r = pread(fd, buf + done, n - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

/* pwrite (or write, when off < 0) all n bytes. 0 or -errno. */
static int write_full(int fd, const char *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t r = off < 0 ? write(fd, buf + done, n - done) : pwrite(fd, buf + done, n - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;   /* no progress on a regular file: give up, do not spin */
		done += (size_t)r;
	}
	return 0;
}

/* ---- aw_file_read_all ---------------------------------------------------------- */

typedef struct read_all_job {
	const char *path;
	size_t max;
	char *buf;
	size_t len;
} read_all_job;

static int read_all_in_thread(void *arg)
{
	read_all_job *j = arg;
	int fd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return aw_raise(-errno, "cannot open '%s' for reading: %m", j->path);
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
		if (aw_thread_cancelled()) {
			rc = -ECANCELED;   /* dropped by aw_to_thread anyway */
			break;
		}
		/* read, not pread: FIFOs and character devices cannot seek. */
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = aw_raise(-errno, "cannot read '%s': %m", j->path);
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
	int rc = (aw_to_thread)(read_all_in_thread, &j);
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
static int create_temp_beside(const char *path, char *tmp, size_t tmplen, mode_t mode)
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
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return aw_raise(-errno, "cannot create a temporary file beside '%s': %m", path);
	}
	return aw_raise(-EEXIST, "cannot create a temporary file beside '%s': 100 names taken", path);
}

/* fsync the directory that holds path, so that a rename into it survives a
 * crash. 0 or a raised error. */
static int fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? aw__strndup(path, slash == path ? 1 : (size_t)(slash - path)) : aw__strdup(".");
	if (!dir)
		return aw_raise(-ENOMEM, "out of memory");
	int rc = 0;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		rc = aw_raise(-errno, "'%s' was replaced, but its directory '%s' cannot be opened to sync it: %m",
			      path, dir);
	else if (fsync(fd) != 0 && errno != EINVAL)   /* EINVAL: the fs cannot sync directories */
		rc = aw_raise(-errno, "'%s' was replaced, but syncing its directory '%s' failed: %m", path, dir);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

static int write_atomic(write_all_job *j)
{
	size_t tmplen = strlen(j->path) + sizeof ".tmpXXXXXX";
	char *tmp = aw__malloc(tmplen);
	if (!tmp)
		return aw_raise(-ENOMEM, "writing '%s': out of memory", j->path);
	int rc = 0;
	int fd = create_temp_beside(j->path, tmp, tmplen, j->mode);
	if (fd < 0) {
		free(tmp);
		return fd;
	}
	/* From here on every failure removes the temp file: the target is
	 * either the old file or the complete new one, never a mix. */
	int w = write_full(fd, j->data, j->len, -1);
	if (w < 0) {
		errno = -w;
		rc = aw_raise(w, "cannot write '%s': %m", tmp);
	} else if (fsync(fd) != 0) {
		rc = aw_raise(-errno, "cannot sync '%s': %m", tmp);
	}
	if (close(fd) != 0 && !rc)
		rc = aw_raise(-errno, "cannot close '%s': %m", tmp);
	if (!rc && rename(tmp, j->path) != 0)
		rc = aw_raise(-errno, "cannot rename '%s' to '%s': %m", tmp, j->path);
	if (rc)
		unlink(tmp);
	else
		rc = fsync_parent(j->path);
	free(tmp);
	return rc;
}

static int write_all_in_thread(void *arg)
{
	write_all_job *j = arg;
	if (j->atomic)
		return write_atomic(j);
	int fd = open(j->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, j->mode);
	if (fd < 0)
		return aw_raise(-errno, "cannot open '%s' for writing: %m", j->path);
	int rc = write_full(fd, j->data, j->len, -1);
	if (rc < 0) {
		errno = -rc;
		rc = aw_raise(rc, "cannot write '%s': %m", j->path);
	}
	/* close reports delayed write errors (NFS, quotas). */
	if (close(fd) != 0 && !rc)
		rc = aw_raise(-errno, "cannot close '%s': %m", j->path);
	return rc;
}

/* Waits: write len bytes of data as the whole content of path, created
 * with `mode` (less the umask) if it does not exist. Not atomic: open with
 * O_TRUNC and write (a crash or error can leave a partial file). Atomic:
 * write "<path>.tmpXXXXXX" in the same directory, fsync it, rename it over
 * path and fsync the directory: readers see the old content or the new,
 * never a mix, and on any failure the temp file is removed and path is
 * untouched. Returns 0 or a raised -errno (-ENOENT for a missing
 * directory, -EACCES, -ENOSPC, -ENAMETOOLONG ...), or the cancel code
 * (the write still completes in the background: it is not cut short). */
int (aw_file_write_all)(const char *path, const void *data, size_t len, mode_t mode, bool atomic)
{
	if (!path || !*path)
		return aw_raise(-EINVAL, "aw_file_write_all: empty path");
	if (!data && len)
		return aw_raise(-EINVAL, "aw_file_write_all: data is NULL");
	write_all_job j = { .path = path, .data = data, .len = len, .mode = mode, .atomic = atomic };
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

static int pread_in_thread(void *arg)
{
	pio_job *j = arg;
	j->result = pread_full(j->fd, j->buf, j->n, j->off);
	if (j->result < 0 && j->result != -ECANCELED) {
		errno = (int)-j->result;
		return aw_raise((int)j->result, "pread of %zu bytes at offset %jd from fd %d: %m", j->n,
				(intmax_t)j->off, j->fd);
	}
	return j->result < 0 ? (int)j->result : 0;
}

static int pwrite_in_thread(void *arg)
{
	pio_job *j = arg;
	int rc = write_full(j->fd, j->buf, j->n, j->off);
	if (rc < 0) {
		errno = -rc;
		return aw_raise(rc, "pwrite of %zu bytes at offset %jd to fd %d: %m", j->n, (intmax_t)j->off, j->fd);
	}
	return 0;
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
	rc = (aw_to_thread)(pread_in_thread, &j);
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
	return (aw_to_thread)(pwrite_in_thread, &j);
}

/* ---- aw_file_chunks: a file as an async iterator -------------------------------- */

typedef struct open_job {
	const char *path;
	int fd;
} open_job;

static int open_in_thread(void *arg)
{
	open_job *j = arg;
	int fd = open(j->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return aw_raise(-errno, "cannot open '%s' for reading: %m", j->path);
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return aw_raise(-EISDIR, "cannot read '%s' in chunks: it is a directory", j->path);
	}
	j->fd = fd;
	return 0;
}

/* Enter: validate, allocate the chunk buffer, open the file (on the pool),
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
	int rc = (aw_to_thread)(open_in_thread, &j);
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
