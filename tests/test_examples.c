/* SPDX-License-Identifier: MIT */
/* Tests: the example programs (examples/) run and print what they promise.
 *
 * Each test runs one example binary from AW_EXAMPLES_DIR (set by
 * tests/meson.build to <build>/examples) with fork/exec, captures its stdout
 * and stderr, and checks its exit status, that stderr is empty (no leak
 * report, no sanitizer output), and the key lines of stdout in order.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AW_EXAMPLES_DIR
#error "AW_EXAMPLES_DIR must name the directory of the built examples"
#endif

#define OUT_MAX (64 * 1024)

typedef struct run_result {
	int status;          /* waitpid status */
	char out[OUT_MAX];   /* stdout, NUL-terminated (truncated if longer) */
	char err[OUT_MAX];   /* stderr, likewise */
} run_result;

/* Append what fd has to buf (keeping it NUL-terminated); returns false at
 * EOF or error. Bytes past the buffer are read and dropped. */
static bool drain(int fd, char *buf, size_t *len)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof tmp);
	if (n < 0 && errno == EINTR)
		return true;
	if (n <= 0)
		return false;
	size_t room = OUT_MAX - 1 - *len;
	size_t take = (size_t)n < room ? (size_t)n : room;
	memcpy(buf + *len, tmp, take);
	*len += take;
	buf[*len] = '\0';
	return true;
}

/* Run AW_EXAMPLES_DIR/<name> with stdin from /dev/null and, if tmpdir is
 * non-NULL, TMPDIR=tmpdir. Returns false (after recording a failure) if it
 * could not be started. The example is killed by SIGALRM after 20 s (and by
 * SIGKILL if its output is still open after 25 s), so a hang cannot outlive
 * the test. */
static bool run_example(const char *name, const char *tmpdir, run_result *r)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", AW_EXAMPLES_DIR, name);
	if (access(path, X_OK) != 0) {
		aw_test_fail(__FILE__, __LINE__, "%s: not built or not executable: %s", path, strerror(errno));
		return false;
	}
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
		aw_test_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
		return false;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		aw_test_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
		close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
		return false;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		if (tmpdir)
			setenv("TMPDIR", tmpdir, 1);
		alarm(20);   /* survives exec: a hung example dies */
		execl(path, name, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	size_t lo = 0, le = 0;
	r->out[0] = r->err[0] = '\0';
	struct pollfd fds[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };
	int open_fds = 2;
	time_t give_up = time(NULL) + 25;   /* in case the pipes stay open */
	while (open_fds && time(NULL) < give_up) {
		int n = poll(fds, 2, 1000);
		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			if (!drain(fds[i].fd, i ? r->err : r->out, i ? &le : &lo)) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	if (open_fds)
		kill(pid, SIGKILL);
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
	return true;
}

/* True if the example exited with status 0 and wrote nothing to stderr;
 * otherwise records why (with its output, to debug from the test log). */
static bool check_clean_exit(const char *name, const run_result *r)
{
	if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0) {
		aw_test_fail(__FILE__, __LINE__, "%s: %s %d\n--- stdout:\n%s--- stderr:\n%s", name,
			     WIFEXITED(r->status) ? "exit status" : "killed by signal",
			     WIFEXITED(r->status) ? WEXITSTATUS(r->status) : WTERMSIG(r->status), r->out, r->err);
		return false;
	}
	if (r->err[0]) {
		aw_test_fail(__FILE__, __LINE__, "%s: unexpected stderr:\n%s", name, r->err);
		return false;
	}
	return true;
}

/* Find `line` as a whole line of `text` at or after `from`; returns the
 * start of the next line, or NULL. */
static const char *find_line(const char *text, const char *from, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = from; (p = strstr(p, line)); p++) {
		bool starts = p == text || p[-1] == '\n';
		bool ends = p[n] == '\n' || p[n] == '\0';
		if (starts && ends)
			return p[n] ? p + n + 1 : p + n;
	}
	return NULL;
}

/* Check that lines[0..n) appear as whole lines of out, in this order
 * (other lines may come between). Records the first one missing. */
static bool expect_in_order(const char *name, const char *out, const char *const *lines, size_t n)
{
	const char *at = out;
	for (size_t i = 0; i < n; i++) {
		const char *next = find_line(out, at, lines[i]);
		if (!next) {
			aw_test_fail(__FILE__, __LINE__, "%s: line \"%s\" missing or out of order in:\n%s",
				     name, lines[i], out);
			return false;
		}
		at = next;
	}
	return true;
}
#define EXPECT_IN_ORDER(name, out, ...)                                                   \
	do {                                                                               \
		const char *const lines_[] = { __VA_ARGS__ };                              \
		if (!expect_in_order((name), (out), lines_, sizeof lines_ / sizeof lines_[0])) \
			return;                                                            \
	} while (0)

/* ---- async_logger --------------------------------------------------------- */

AW_TEST(async_logger_prints_exactly_enter_body_exit)
{
	static run_result r;
	if (!run_example("async_logger", NULL, &r) || !check_clean_exit("async_logger", &r))
		return;
	CHECK_STR(r.out, "Async Enter\nInside block\nAsync Exit\n");
}

/* ---- temp_file ------------------------------------------------------------ */

/* The rest of the first line at or after `from` that starts with `prefix`
 * (copied to buf). */
static bool path_after(const char *from, const char *prefix, char *buf, size_t len)
{
	const char *p = strstr(from, prefix);
	if (!p)
		return false;
	p += strlen(prefix);
	size_t n = strcspn(p, "\n");
	if (n == 0 || n >= len)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

/* Best effort: remove dir and the files in it (after a failure). */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				unlinkat(dirfd(d), e->d_name, 0);
		closedir(d);
	}
	rmdir(dir);
}

AW_TEST(temp_file_creates_in_tmpdir_and_removes_on_both_paths)
{
	/* A private TMPDIR: we can check where the files were made and that
	 * nothing is left behind. */
	char dir[] = "/tmp/aw-test-examples-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	static run_result r;
	bool ran = run_example("temp_file", dir, &r);
	bool clean = ran && check_clean_exit("temp_file", &r);

	/* Whatever happened, the directory must be empty now. */
	char leftover[PATH_MAX + 64] = "";
	int removed = rmdir(dir);
	if (removed != 0) {
		snprintf(leftover, sizeof leftover, "%s not empty after the example: %s", dir, strerror(errno));
		remove_tree(dir);
	}
	if (!clean)
		return;
	CHECK_STR(leftover, "");
	CHECK_EQ(removed, 0);

	/* Normal use: both uses get a distinct file under TMPDIR. */
	char p1[PATH_MAX], p2[PATH_MAX];
	const char *second = strstr(r.out, "== body fails\n");
	CHECK(second != NULL);
	CHECK(path_after(r.out, "setup: created ", p1, sizeof p1));
	CHECK(path_after(second, "setup: created ", p2, sizeof p2));
	CHECK(strncmp(p1, dir, strlen(dir)) == 0 && p1[strlen(dir)] == '/');
	CHECK(strncmp(p2, dir, strlen(dir)) == 0 && p2[strlen(dir)] == '/');
	CHECK(strcmp(p1, p2) != 0);

	char l[6][PATH_MAX + 128];
	snprintf(l[0], sizeof l[0], "setup: created %s", p1);
	snprintf(l[1], sizeof l[1], "using temp file at %s", p1);
	snprintf(l[2], sizeof l[2], "teardown: closed and removed %s (block error: none)", p1);
	snprintf(l[3], sizeof l[3], "setup: created %s", p2);
	snprintf(l[4], sizeof l[4], "using temp file at %s", p2);
	snprintf(l[5], sizeof l[5], "teardown: closed and removed %s (block error: %s)", p2, strerror(EIO));
	char block_failed[128];
	snprintf(block_failed, sizeof block_failed, "block failed with: %s", strerror(EIO));
	char saw_eio[128];
	snprintf(saw_eio, sizeof saw_eio, "teardown saw: %s", strerror(EIO));

	EXPECT_IN_ORDER("temp_file", r.out,
			"== normal use", l[0], l[1], "content: hello from awith", l[2],
			"exists after block: no", "teardown saw: no error",
			"== body fails", l[3], l[4], l[5], block_failed,
			"exists after block: no", saw_eio);
	/* The failing body never got to write: no content line after it. */
	CHECK(strstr(second, "content:") == NULL);
	/* And the files are really gone. */
	CHECK(access(p1, F_OK) != 0 && errno == ENOENT);
	CHECK(access(p2, F_OK) != 0 && errno == ENOENT);
}

/* ---- nesting -------------------------------------------------------------- */

AW_TEST(nesting_exits_lifo_for_nested_and_multi_manager_blocks)
{
	static run_result r;
	if (!run_example("nesting", NULL, &r) || !check_clean_exit("nesting", &r))
		return;
	EXPECT_IN_ORDER("nesting", r.out,
			"-- nested", "enter session", "enter request", "body", "exit request", "exit session",
			"-- one statement", "enter a", "enter b", "enter c", "body", "exit c", "exit b", "exit a");
}

AW_TEST(nesting_timeout_block_is_left_with_etimedout)
{
	static run_result r;
	if (!run_example("nesting", NULL, &r) || !check_clean_exit("nesting", &r))
		return;
	char want[160];
	snprintf(want, sizeof want, "timeout block left with: %s (after well under 1 s)", strerror(ETIMEDOUT));
	EXPECT_IN_ORDER("nesting", r.out, "-- timeout", want, "-- task group");
	CHECK(strstr(r.out, "not reached") == NULL);
}

AW_TEST(nesting_task_group_waits_for_every_child)
{
	static run_result r;
	if (!run_example("nesting", NULL, &r) || !check_clean_exit("nesting", &r))
		return;
	/* Children start only when the body waits (here: at its exit), and the
	 * exit returns only after all of them. Their own order is timing. */
	const char *group = find_line(r.out, r.out, "-- task group");
	CHECK(group != NULL);
	const char *started = find_line(r.out, group, "children started");
	CHECK(started != NULL);
	const char *exited = find_line(r.out, started, "group exited: 3 of 3 children done");
	CHECK(exited != NULL);
	const char *children[] = { "child 1 done", "child 2 done", "child 3 done" };
	for (size_t i = 0; i < 3; i++) {
		const char *c = find_line(r.out, started, children[i]);
		CHECK(c != NULL);
		CHECK(c < exited);
	}
}

AW_TEST(nesting_async_for_break_closes_the_stream)
{
	static run_result r;
	if (!run_example("nesting", NULL, &r) || !check_clean_exit("nesting", &r))
		return;
	EXPECT_IN_ORDER("nesting", r.out,
			"-- async for", "enter streaming_context",
			"process chunk-1", "process chunk-2", "process chunk-3",
			"stream closed (consumer stopped early)", "after the loop",
			"exit streaming_context");
	CHECK(strstr(r.out, "process chunk-4") == NULL);
}

/* ---- cheat_sheet ---------------------------------------------------------- */

AW_TEST(cheat_sheet_runs_both_styles_and_nests_lifo)
{
	static run_result r;
	if (!run_example("cheat_sheet", NULL, &r) || !check_clean_exit("cheat_sheet", &r))
		return;
	EXPECT_IN_ORDER("cheat_sheet", r.out,
			/* class-style */
			"class-style: acquire db", "do_something(db): use #1", "class-style: release db (no error)",
			/* generator-style */
			"generator: set up db", "do_something(db): use #2", "generator: tear down db (no error)",
			/* both in one statement: entered left to right, exited right to left */
			"class-style: acquire db", "generator: set up db", "do_something(db): use #3",
			"generator: tear down db (no error)", "class-style: release db (no error)");
}
