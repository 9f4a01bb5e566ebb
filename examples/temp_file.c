/* SPDX-License-Identifier: MIT */
/*
 * temp_file — the seed's generator-style manager, made real.
 *
 *     @asynccontextmanager
 *     async def temporary_file():
 *         print("Setting up async resource")
 *         yield "/tmp/temp.txt"
 *         print("Cleaning up async resource")
 *
 *     async with temporary_file() as path:
 *         print(f"Using temp file at {path}")
 *
 * How it maps:
 *   - @asynccontextmanager is aw_gen: one function does the setup, hands a
 *     value to the block with aw_gen_yield (Python's `yield`), and does the
 *     teardown after it. It runs on a small stack of its own, so it may wait
 *     anywhere, like an `async def` generator;
 *   - `as path` is aw_gen_value(&tf.gen);
 *   - aw_gen_yield returns the error the body is leaving with (0 if none).
 *     That is where Python would raise the body's exception inside the
 *     generator; a C generator sees the code and must still tear down, which
 *     is what `try: yield ... finally: cleanup` does in Python. Returning
 *     that code lets the error go on; returning 0 would suppress it.
 *
 * Unlike the seed's fixed "/tmp/temp.txt", the setup really creates a unique
 * file with mkstemp (mode 0600, in $TMPDIR or /tmp), and the teardown closes
 * and unlinks it, also when the body fails. The program uses it twice: once
 * normally (write a line, read it back), once with the body failing with
 * -EIO, then shows that the file is gone and that the teardown saw the error.
 *
 * (The file I/O here is plain blocking stdio on a tiny local file; a server
 * would hand real file work to aw_to_thread so the loop keeps running.)
 */
#include <awith/core.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The manager: the generator plus what the generator reports back. */
typedef struct temp_file {
	aw_gen gen;            /* the manager (aw_gen_init) */
	char path[PATH_MAX];   /* the file's path, set by the setup */
	int fd;                /* mkstemp's descriptor, closed by the teardown */
	int teardown_err;      /* the error the teardown saw (0: none) */
} temp_file;

/* The generator function: setup, yield the path, teardown. */
static int temporary_file_gen(aw_gen *g, void *arg)
{
	temp_file *tf = arg;

	/* Setup. A negative return before the yield fails the enter: the body
	 * does not run, the error is in flight after the block. */
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	int n = snprintf(tf->path, sizeof tf->path, "%s/awith-temp-XXXXXX", dir);
	if (n < 0 || (size_t)n >= sizeof tf->path)
		return aw_raise(-ENAMETOOLONG, "temporary_file: TMPDIR is too long: %s", dir);
	tf->fd = mkstemp(tf->path);   /* creates the file, mode 0600 */
	if (tf->fd < 0)
		return aw_raise(-errno, "temporary_file: mkstemp in %s: %m", dir);
	printf("setup: created %s\n", tf->path);

	/* Hand the path to the block; wait here until the block is left. */
	int err = aw_gen_yield(g, tf->path);

	/* Teardown: runs on every way out of the block. */
	tf->teardown_err = err;
	close(tf->fd);
	tf->fd = -1;
	if (unlink(tf->path) != 0)
		perror("temporary_file: unlink");
	printf("teardown: closed and removed %s (block error: %s)\n", tf->path,
	       err ? aw_strerror(err) : "none");
	return err;   /* do not swallow the body's error */
}

/* `temporary_file()`: prepare tf and return its manager. Nothing runs (and
 * nothing is allocated) until AW_WITH enters it. */
static aw_mgr *temporary_file(temp_file *tf)
{
	tf->path[0] = '\0';
	tf->fd = -1;
	tf->teardown_err = 0;
	return aw_gen_init(&tf->gen, "temporary_file", temporary_file_gen, tf);
}

static const char *exists(const char *path)
{
	return access(path, F_OK) == 0 ? "yes" : "no";
}

/* First use: write a line through the path, read it back. */
static int use_normally(temp_file *tf)
{
	AW_WITH(temporary_file(tf)) {
		const char *path = aw_gen_value(&tf->gen);
		printf("using temp file at %s\n", path);

		FILE *f = fopen(path, "w+");
		if (!f)
			return aw_raise(-errno, "fopen %s: %m", path);
		char line[128] = "";
		fputs("hello from awith\n", f);
		rewind(f);
		if (!fgets(line, sizeof line, f))
			line[0] = '\0';
		fclose(f);
		line[strcspn(line, "\n")] = '\0';
		printf("content: %s\n", line);
	}
	/* An error from the enter, or from the teardown, shows here. */
	return aw_error_pending();
}

/* Second use: the body fails. The teardown still runs, sees -EIO, and the
 * error goes on to our caller. */
static int use_and_fail(temp_file *tf)
{
	AW_WITH(temporary_file(tf)) {
		printf("using temp file at %s\n", (const char *)aw_gen_value(&tf->gen));
		return aw_raise(-EIO, "simulated failure while writing %s", tf->path);
	}
	return 0;
}

static int amain(void *arg)
{
	(void)arg;
	temp_file tf;

	puts("== normal use");
	int rc = use_normally(&tf);
	if (rc < 0)
		return rc;
	printf("exists after block: %s\n", exists(tf.path));
	printf("teardown saw: %s\n", tf.teardown_err ? aw_strerror(tf.teardown_err) : "no error");

	puts("== body fails");
	rc = use_and_fail(&tf);
	printf("block failed with: %s\n", aw_strerror(rc));
	aw_error_print(stdout, aw_error_current());   /* message, file:line */
	aw_error_clear();   /* handled: Python's `except OSError:` */
	printf("exists after block: %s\n", exists(tf.path));
	printf("teardown saw: %s\n", tf.teardown_err ? aw_strerror(tf.teardown_err) : "no error");
	return rc == -EIO && tf.teardown_err == -EIO ? 0 : -EPROTO;
}

int main(void)
{
	int rc = aw_run(amain, NULL);
	if (rc < 0) {
		fprintf(stderr, "temp_file: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
