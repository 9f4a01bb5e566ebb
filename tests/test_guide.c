/* SPDX-License-Identifier: MIT */
/* Tests: docs/guide.md and its programs (examples/guide/).
 *
 * Each guide program runs as a user would (fork/exec, stdout and stderr
 * captured: tests/http_util.c's proc) and its output is checked, the
 * seed's printed lines exactly where the seed shows them. And the guide
 * cannot drift from the code: every ```c block in docs/guide.md must be
 * marked with the file it comes from and still be that file's text, and
 * every guide program must be quoted.
 *
 * AW_GUIDE_DIR is <build>/examples/guide, AW_SOURCE_DIR the source root
 * (tests/meson.build sets both).
 */
#include "harness.h"
#include "http_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef AW_GUIDE_DIR
#error "AW_GUIDE_DIR must name the directory of the built guide programs"
#endif
#ifndef AW_SOURCE_DIR
#error "AW_SOURCE_DIR must name the source root"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

#define PROG(name) AW_GUIDE_DIR "/" name

/* Run a guide program to its end; its exit status (-1: killed by a signal).
 * p->out and p->err hold its output afterwards. */
static int run(proc *p, const char *const argv[])
{
	if (proc_start(p, argv) != 0)
		return -2;
	return proc_wait(p, 0);
}

/* ---- the seed's snippets ---------------------------------------------------- */

AW_TEST(guide_with_open_writes_the_file_and_closes_it_on_both_paths)
{
	char dir[] = "/tmp/aw-test-guide-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[64];
	snprintf(path, sizeof path, "%s/log.txt", dir);
	const char *argv[] = { PROG("01_with_open"), path, NULL };
	proc p;
	int st = run(&p, argv);
	FILE *f = fopen(path, "r");
	char content[128] = "";
	if (f) {
		if (!fgets(content, sizeof content, f))
			content[0] = '\0';
		fclose(f);
	}
	unlink(path);
	rmdir(dir);
	CHECK_EQ(st, 0);
	CHECK_STR(p.err, "");
	char want[1024];
	snprintf(want, sizeof want,
		 "closed %s (no error)\n"
		 "%s holds: Logging something important.\n"
		 "closed %s (%s)\n"
		 "second block failed with: %s\n",
		 path, path, path, strerror(EIO), strerror(EIO));
	CHECK_STR(p.out, want);
	CHECK_STR(content, "");   /* the failed second block opened it for writing, truncating it */
}

AW_TEST(guide_temporary_file_prints_the_seeds_output_exactly)
{
	const char *argv[] = { PROG("05_temporary_file"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.err, "");
	CHECK_STR(p.out, "Setting up async resource\n"
			 "Using temp file at /tmp/temp.txt\n"
			 "Cleaning up async resource\n");
}

static int h_data(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)req;
	(void)ud;
	static const char body[] = "{\"data\":[1,2,3]}";
	return aw_http_send(res, 200, "application/json", body, sizeof body - 1);
}

static aw_app *make_app(void)
{
	aw_app *app;
	if (aw_app_new(&app, "guide-test") < 0 || aw_app_route(app, "GET", "/data", h_data, NULL) < 0)
		abort();   /* no memory: nothing to test */
	return app;
}

AW_TEST(guide_nested_session_and_request_read_the_text_both_ways)
{
	srv sv;
	CHECK_EQ(srv_start(&sv, make_app), 0);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/data", sv.port);
	const char *argv[] = { PROG("06_nested"), url, NULL };
	proc p;
	int st = run(&p, argv);
	CHECK_EQ(srv_stop(&sv), 0);
	CHECK_EQ(st, 0);
	CHECK_STR(p.err, "");
	CHECK_STR(p.out, "nested: 200 {\"data\":[1,2,3]}\n"
			 "one statement: 200 {\"data\":[1,2,3]}\n");
}

AW_TEST(guide_nested_session_reports_a_refused_connection_and_fails)
{
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/data", free_port());
	const char *argv[] = { PROG("06_nested"), url, NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 1);
	CHECK_STR(p.out, "");
	CHECK(strstr(p.err, "refused") != NULL);
}

AW_TEST(guide_two_managers_enter_in_order_exit_in_reverse_and_unwind_a_failed_enter)
{
	const char *argv[] = { PROG("07_two_managers"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.err, "");
	char want[1024];
	snprintf(want, sizeof want,
		 "manager1: enter\nmanager2: enter\nbody\nmanager2: exit (no error)\nmanager1: exit (no error)\n"
		 "-- manager2 fails to enter\nmanager1: enter\nmanager2: enter\nmanager1: exit (%s)\n"
		 "after the block: %s\n",
		 strerror(ECONNREFUSED), strerror(ECONNREFUSED));
	CHECK_STR(p.out, want);
}

AW_TEST(guide_async_for_reads_a_file_in_chunks_and_removes_it)
{
	const char *argv[] = { PROG("08_async_for"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.err, "");
	CHECK_STR(p.out, "chunk at 0: 4096 bytes\n"
			 "chunk at 4096: 4096 bytes\n"
			 "chunk at 8192: 1808 bytes\n"
			 "done: the file is closed and removed\n");
}

AW_TEST(guide_blocking_call_is_reported_by_the_watchdog_and_to_thread_keeps_the_loop_running)
{
	const char *argv[] = { PROG("10_blocking"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.out, "on the loop: result 42, ticks meanwhile: 0\n"
			 "aw_to_thread: result 42, the ticker kept ticking\n");
	/* The report names the task and the lines around the blocking call
	 * (where it resumed, where it waited next). A busy machine may add
	 * reports of its own, so others are allowed. */
	CHECK(strstr(p.err, "awith: slow step: task 'main' ran ") != NULL);
	CHECK(strstr(p.err, "(resumed at ") != NULL);
	CHECK(strstr(p.err, "10_blocking.c:") != NULL);
	CHECK(strstr(p.err, " in amain, now waiting at ") != NULL);
}

AW_TEST(guide_leaked_session_is_reported_at_exit_with_where_it_was_entered)
{
	const char *argv[] = { PROG("11_leak"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.out, "inside the block: 0 open ledger entries\n"
			 "after the block: 0 open ledger entries\n"
			 "entered by hand: 2 open ledger entries\n");
	CHECK(strstr(p.err, "awith: leak: client session opened at ") != NULL);
	CHECK(strstr(p.err, "11_leak.c:") != NULL);
	CHECK(strstr(p.err, "was never closed") != NULL);
}

/* ---- where C differs ---------------------------------------------------------- */

AW_TEST(guide_error_rule_exits_see_ignored_failures_and_a_swallowed_cancellation)
{
	const char *argv[] = { PROG("13_error_rule"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.err, "");
	char want[2048];
	snprintf(want, sizeof want,
		 "1. a failure the body ignores\n  BEGIN\n  insert a\n  insert b\n  ROLLBACK (%s)\n"
		 "  after the block: %s\n"
		 "2. a failure the body handles\n  BEGIN\n  insert a\n  a exists already: fine\n  insert b\n"
		 "  COMMIT\n  after the block: no error\n"
		 "3. return aw_raise(...)\n  BEGIN\n  insert a\n  ROLLBACK (%s)\n  returned: %s\n"
		 "4. a cancelled task\n  BEGIN\n  sleep returned %s; the body goes on\n  ROLLBACK (%s)\n"
		 "  the task ended with: %s\n",
		 strerror(EIO), strerror(EIO), strerror(EINVAL), strerror(EINVAL), strerror(ECANCELED),
		 strerror(ECANCELED), strerror(ECANCELED));
	CHECK_STR(p.out, want);
}

AW_TEST(guide_time_limits_timeout_move_on_shared_deadline_and_an_exit_that_waits)
{
	const char *argv[] = { PROG("14_time_limits"), NULL };
	proc p;
	long long t0 = now_ms();
	CHECK_EQ(run(&p, argv), 0);
	long long ms = now_ms() - t0;
	CHECK_STR(p.err, "");
	const char *to = strerror(ETIMEDOUT);
	char want[2048];
	snprintf(want, sizeof want,
		 "1. asyncio.timeout(0.05)\n  first wait: %s\n  second wait: %s\n  after the block: timed out, handled\n"
		 "2. move_on: the block ends quietly\n  fired: yes, in flight: 0\n"
		 "3. one deadline for several steps\n  step 1: done\n  step 2: done\n  step 3: %s\n"
		 "4. an exit that waits after the timeout\n"
		 "  exit: flushed (sleep returned 0), the block's error: %s\n",
		 to, to, to, to);
	CHECK_STR(p.out, want);
	CHECK_LT(ms, 5000);   /* no 10 s sleep ran to its end */
}

AW_TEST(guide_stacks_wait_inside_a_callback_and_grow_on_request)
{
	const char *argv[] = { PROG("15_stacks"), NULL };
	proc p;
	CHECK_EQ(run(&p, argv), 0);
	CHECK_STR(p.err, "");
	CHECK_STR(p.out, "sorted: 0 1 2 3 4 5 6 7 8 9; the other task ran yes while qsort waited\n"
			 "recursion 256 frames deep on a 1 MiB stack: 256\n");
}

AW_TEST(guide_stack_overflow_kills_the_process_naming_the_task)
{
	const char *argv[] = { PROG("15_stacks"), "--overflow", NULL };
	proc p;
	int st = run(&p, argv);
	CHECK_NE(st, 0);
	if (!TEST_ASAN) {
		CHECK_EQ(st, -1);   /* killed by a signal (SIGSEGV) */
		CHECK(strstr(p.err, "awith: stack overflow in task 'deep'") != NULL);
	} else {
		CHECK(strstr(p.err, "stack overflow in task 'deep'") != NULL || strstr(p.err, "AddressSanitizer") != NULL);
	}
}

/* ---- the guide cannot drift ------------------------------------------------- */

/* A file's lines (malloc'd, each without its newline). */
typedef struct lines {
	char **v;
	size_t n;
	char *buf;
} lines;

static bool lines_read(lines *l, const char *path)
{
	memset(l, 0, sizeof *l);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t cap = 0, len = 0;
	char tmp[4096];
	size_t k;
	while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) {
		if (len + k + 1 > cap) {
			cap = (len + k + 1) * 2;
			l->buf = realloc(l->buf, cap);
		}
		memcpy(l->buf + len, tmp, k);
		len += k;
	}
	fclose(f);
	if (!l->buf)
		l->buf = calloc(1, 1);
	l->buf[len] = '\0';
	size_t vcap = 0;
	for (char *p = l->buf; *p;) {
		char *nl = strchr(p, '\n');
		if (l->n == vcap) {
			vcap = vcap ? vcap * 2 : 256;
			l->v = realloc(l->v, vcap * sizeof *l->v);
		}
		l->v[l->n++] = p;
		if (!nl)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return true;
}

static void lines_free(lines *l)
{
	free(l->v);
	free(l->buf);
}

/* True if block[0..n) equals file lines [at, at + n). */
static bool same_run(const lines *file, size_t at, char *const *block, size_t n)
{
	if (at + n > file->n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(file->v[at + i], block[i]) != 0)
			return false;
	return true;
}

/* Problems found by check_guide, one per line. */
static char why[16384];
static size_t why_len;

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(why + why_len, sizeof why - why_len, fmt, ap);
	va_end(ap);
	if (k > 0)
		why_len += (size_t)k < sizeof why - why_len ? (size_t)k : sizeof why - why_len - 1;
	if (why_len < sizeof why - 1)
		why[why_len++] = '\n', why[why_len] = '\0';
}

/* Check the guide: returns the number of problems found (described in
 * `why`); `quoted` collects the files quoted, one per line. */
static int check_guide(const char *guide_path, char *quoted, size_t qlen)
{
	why_len = 0;
	why[0] = '\0';
	lines g;
	if (!lines_read(&g, guide_path)) {
		problem("cannot read %s: %s", guide_path, strerror(errno));
		return 1;
	}
	int problems = 0, blocks = 0;
	size_t qn = 0;
	quoted[0] = '\0';
	for (size_t i = 0; i < g.n; i++) {
		if (strncmp(g.v[i], "```c", 4) == 0 && (g.v[i][4] == '\0' || g.v[i][4] == ' ')) {
			/* A C block without a marker line right before it. */
			if (i == 0 || strncmp(g.v[i - 1], "<!-- file: ", 11) != 0) {
				problem("guide.md:%zu: a ```c block without a <!-- file: ... --> marker", i + 1);
				problems++;
			}
			continue;
		}
		if (strncmp(g.v[i], "<!-- file: ", 11) != 0)
			continue;
		char path[512] = "";
		unsigned a = 0, b = 0;
		int nf = sscanf(g.v[i] + 11, "%511s lines %u-%u", path, &a, &b);
		if (nf != 1 && nf != 3) {
			problem("guide.md:%zu: bad marker: %s", i + 1, g.v[i]);
			problems++;
			continue;
		}
		if (i + 1 >= g.n || strncmp(g.v[i + 1], "```c", 4) != 0) {
			problem("guide.md:%zu: the marker is not followed by a ```c block", i + 1);
			problems++;
			continue;
		}
		size_t start = i + 2, end = start;
		while (end < g.n && strcmp(g.v[end], "```") != 0)
			end++;
		if (end == g.n) {
			problem("guide.md:%zu: the block never ends", i + 1);
			problems++;
			break;
		}
		size_t n = end - start;
		blocks++;
		char full[PATH_MAX];
		snprintf(full, sizeof full, "%s/%s", AW_SOURCE_DIR, path);
		lines f;
		if (!lines_read(&f, full)) {
			problem("guide.md:%zu: cannot read %s: %s", i + 1, path, strerror(errno));
			problems++;
			i = end;
			continue;
		}
		bool ok = false;
		if (nf == 3)
			ok = a >= 1 && b >= a && b - a + 1 == n && same_run(&f, a - 1, &g.v[start], n);
		else
			for (size_t at = 0; !ok && at + n <= f.n; at++)
				ok = same_run(&f, at, &g.v[start], n);
		if (!ok) {
			problem("guide.md:%zu: the block (%zu lines, first: \"%s\") is not %s%s",
				     i + 1, n, n ? g.v[start] : "", nf == 3 ? "exactly the marked lines of " : "a run of lines of ",
				     path);
			problems++;
		}
		lines_free(&f);
		int k = snprintf(quoted + qn, qlen - qn, "%s\n", path);
		if (k > 0 && (size_t)k < qlen - qn)
			qn += (size_t)k;
		i = end;
	}
	lines_free(&g);
	if (blocks == 0) {
		problem("guide.md has no marked C blocks");
		problems++;
	}
	return problems;
}

AW_TEST(guide_code_blocks_are_the_text_of_the_files_they_name)
{
	static char quoted[65536];
	if (check_guide(AW_SOURCE_DIR "/docs/guide.md", quoted, sizeof quoted) != 0)
		aw_test_fail(__FILE__, __LINE__, "docs/guide.md:\n%s", why);
}

AW_TEST(guide_quotes_every_guide_program)
{
	static char quoted[65536];
	if (check_guide(AW_SOURCE_DIR "/docs/guide.md", quoted, sizeof quoted) != 0) {
		aw_test_fail(__FILE__, __LINE__, "docs/guide.md:\n%s", why);
		return;
	}
	DIR *d = opendir(AW_SOURCE_DIR "/examples/guide");
	CHECK(d != NULL);
	struct dirent *e;
	int programs = 0;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 3 || strcmp(e->d_name + n - 2, ".c") != 0)
			continue;
		programs++;
		char want[300];
		snprintf(want, sizeof want, "examples/guide/%s\n", e->d_name);
		bool found = strncmp(quoted, want, strlen(want)) == 0;
		char nl_want[304];
		snprintf(nl_want, sizeof nl_want, "\n%s", want);
		found = found || strstr(quoted, nl_want) != NULL;
		if (!found)
			aw_test_fail(__FILE__, __LINE__, "examples/guide/%s is not quoted in docs/guide.md", e->d_name);
	}
	closedir(d);
	CHECK_GE(programs, 10);
}

/* The outputs the guide shows: a ```text block after an
 * <!-- output: NAME --> marker starts with "$ build/examples/guide/NAME"
 * and its other lines are exactly what that program prints on stdout. */
AW_TEST(guide_outputs_shown_are_what_the_programs_print)
{
	lines g;
	CHECK(lines_read(&g, AW_SOURCE_DIR "/docs/guide.md"));
	int shown = 0;
	for (size_t i = 0; i < g.n; i++) {
		if (strncmp(g.v[i], "<!-- output: ", 13) != 0)
			continue;
		char name[64] = "";
		if (sscanf(g.v[i] + 13, "%63s", name) != 1 || i + 2 >= g.n || strcmp(g.v[i + 1], "```text") != 0) {
			aw_test_fail(__FILE__, __LINE__, "guide.md:%zu: bad output marker", i + 1);
			break;
		}
		char cmd[128];
		snprintf(cmd, sizeof cmd, "$ build/examples/guide/%s", name);
		if (strcmp(g.v[i + 2], cmd) != 0) {
			aw_test_fail(__FILE__, __LINE__, "guide.md:%zu: the block does not start with \"%s\"", i + 3, cmd);
			break;
		}
		static char want[8192];
		size_t wn = 0, j = i + 3;
		for (; j < g.n && strcmp(g.v[j], "```") != 0; j++)
			wn += (size_t)snprintf(want + wn, sizeof want - wn, "%s\n", g.v[j]);
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s/%s", AW_GUIDE_DIR, name);
		const char *argv[] = { path, NULL };
		proc p;
		int st = run(&p, argv);
		if (st != 0 || strcmp(p.out, want) != 0) {
			aw_test_fail(__FILE__, __LINE__, "guide.md:%zu: %s exited %d and printed:\n%s--- the guide shows:\n%s",
				     i + 1, name, st, p.out, want);
			break;
		}
		shown++;
		i = j;
	}
	lines_free(&g);
	CHECK_GE(shown, 5);
}

/* The checker itself: a changed line, a missing marker and a wrong range
 * are each caught (a checker that accepts anything proves nothing). */
AW_TEST(guide_checker_catches_a_changed_line_a_missing_marker_and_a_wrong_range)
{
	char dir[] = "/tmp/aw-test-guide-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/guide.md", dir);
	static const char *const cases[] = {
		/* 0: good, a run of lines */
		"<!-- file: examples/guide/05_temporary_file.c -->\n```c\n"
		"\tputs(\"Setting up async resource\");\n\tint err = aw_gen_yield(g, (char *)\"/tmp/temp.txt\");\n```\n",
		/* 1: a changed line */
		"<!-- file: examples/guide/05_temporary_file.c -->\n```c\n"
		"\tputs(\"Setting up an async resource\");\n```\n",
		/* 2: no marker */
		"text\n```c\nint x;\n```\n",
		/* 3: a range that is not the block */
		"<!-- file: examples/guide/05_temporary_file.c lines 1-2 -->\n```c\n"
		"\tputs(\"Setting up async resource\");\n```\n",
	};
	static char quoted[4096];
	int problems[4];
	for (int c = 0; c < 4; c++) {
		FILE *f = fopen(path, "w");
		CHECK(f != NULL);
		fputs(cases[c], f);
		fclose(f);
		problems[c] = check_guide(path, quoted, sizeof quoted);
	}
	unlink(path);
	rmdir(dir);
	CHECK_EQ(problems[0], 0);
	CHECK_EQ(problems[1], 1);
	CHECK_GE(problems[2], 1);
	CHECK_EQ(problems[3], 1);
}
