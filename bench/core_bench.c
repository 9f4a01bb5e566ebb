/* SPDX-License-Identifier: MIT */
/*
 * core_bench — the C side of awith's core micro-benchmark.
 *
 *     core_bench [--quick] [--iterations N] [--case NAME]...
 *
 * The Python side is bench/py/core_bench.py (asyncio or uvloop). This file
 * implements the same cases with the same semantics, method and output, so
 * bench/run.sh can join the outputs line by line into ratios. Read the
 * Python script's docstring for the definition of each case; in short:
 *
 *   switch            two tasks ping-pong with aw_yield; total / (2n)
 *   with_class        AW_WITH on a class-style manager built per block in the
 *                     caller's frame, enter/exit returning 0; per block
 *   with_gen          AW_WITH on aw_gen_init per block; the generator yields
 *                     and returns; per block
 *   exitstack_entry   an aw_exitstack enters 100 class-style managers, then
 *                     closes; per entry (enter + its exit)
 *   spawn_join        aw_spawn + aw_task_join of a task returning 0
 *   lock_uncontended  AW_WITH(aw_lock_mgr(&lock)) on a free lock; per block
 *   timeout_block     AW_WITH(AW_TIMEOUT(AW_SEC(10))) with an empty body
 *   rss_idle_100k     RSS per idle task: N tasks wait on one shared aw_event;
 *   rss_idle_1m       (RSS after they are all parked - RSS before) / N, in
 *                     bytes, handle array (8 B/task) included, as in Python.
 *                     N = 100,000 / 1,000,000 (10,000 / 100,000 with --quick)
 *
 * Output: one line per case, "<case> <value> <unit>" with unit ns/op
 * (%.1f) or B/task (%.0f). A case that cannot run prints
 * "<case> skipped (<why>)"; one that fails prints "<case> failed (<why>)"
 * and makes the exit status 1.
 *
 * Method (as in Python): each timing case runs in a fresh loop (aw_run_config);
 * it is calibrated by doubling the iteration count until a run takes >= 1/10
 * of the target (this is also the warm-up), the count is then set for ~0.3 s
 * per run (~0.05 s with --quick), the case runs 3 times and the best (minimum)
 * ns/op is reported. Time is aw_now() (CLOCK_MONOTONIC) around the measured
 * code only. Each rss case runs in a fresh child process (this program,
 * re-executed with --case NAME) unless it is the only case asked for.
 *
 * --iterations N runs each timing case once with exactly N operations, no
 * calibration: for instruction counts under Valgrind, which do not depend
 * on the machine's load (callgrind's total for 2N minus that for N, over N,
 * is the cost of one operation; see docs/performance.md).
 *
 * The watchdog is off (slow_step = 0): a benchmark loop never waits for
 * long stretches on purpose, and the report would only add noise.
 */
#include <awith/core.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUNS 3
#define TARGET_S 0.3
#define QUICK_TARGET_S 0.05
#define EXITSTACK_DEPTH 100

/* A compiler barrier: "this may read and write any memory". Placed in each
 * measured body so that the compiler must materialise the manager (its
 * address escapes) and cannot fold or drop iterations. The managers' enter
 * and exit are reached through function pointers inside the library, which
 * the compiler cannot see through, so they run for real as well. */
#define BARRIER() __asm__ __volatile__("" ::: "memory")

/* ---- managers used by the cases ------------------------------------------ */

/* Class-style manager that does nothing (Python's CM). */
typedef struct nop_mgr {
	aw_mgr mgr;
} nop_mgr;

static int nop_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int nop_exit(aw_mgr *m, int err)
{
	(void)m;
	(void)err;
	return 0;
}

static const aw_mgr_ops nop_ops = { .name = "nop", .enter = nop_enter, .exit = nop_exit };

/* Generator-style manager that only yields a value (Python's gen_cm). */
static int gen_yield_once(aw_gen *g, void *arg)
{
	(void)arg;
	return aw_gen_yield(g, (void *)1);   /* 0, or the body's error: goes on */
}

static int nop_task(void *arg)
{
	(void)arg;
	return 0;
}

/* ---- timing cases ---------------------------------------------------------
 * Each runs inside a task: case(n, &elapsed_ns, &ops) -> 0 or a negative
 * code. `ops` is what elapsed is divided by. */

typedef int (*case_fn)(uint64_t n, aw_time *elapsed, uint64_t *ops);

static int pinger(void *arg)
{
	uint64_t n = *(const uint64_t *)arg;
	for (uint64_t i = 0; i < n; i++) {
		int rc = aw_yield();
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int case_switch(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_task *a, *b;
	aw_time t0 = aw_now();
	int rc = aw_spawn(&a, pinger, &n, "pinger-a");
	if (rc < 0)
		return rc;
	rc = aw_spawn(&b, pinger, &n, "pinger-b");
	if (rc < 0) {
		aw_task_cancel(a);
		if (aw_task_join(a) < 0)
			aw_error_clear();   /* cancelled above: expected */
		return rc;
	}
	/* While this task waits in join, a and b hand over to each other. */
	int ra = aw_task_join(a);
	int rb = aw_task_join(b);
	*elapsed = aw_now() - t0;
	*ops = 2 * n;
	return ra < 0 ? ra : rb < 0 ? rb : 0;
}

static int case_with_class(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		nop_mgr m = { .mgr = { &nop_ops } };   /* CM(), in the caller's frame */
		AW_WITH(&m.mgr) {
			BARRIER();
		}
	}
	*elapsed = aw_now() - t0;
	*ops = n;
	return aw_error_pending();   /* a failed enter/exit stays in flight */
}

static int case_with_gen(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		aw_gen g;
		AW_WITH(aw_gen_init(&g, "gen_cm", gen_yield_once, NULL)) {
			BARRIER();
		}
	}
	*elapsed = aw_now() - t0;
	*ops = n;
	return aw_error_pending();
}

static int case_exitstack_entry(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	nop_mgr mgrs[EXITSTACK_DEPTH];
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		aw_exitstack s;
		aw_exitstack_init(&s);
		for (int j = 0; j < EXITSTACK_DEPTH; j++) {
			mgrs[j] = (nop_mgr){ .mgr = { &nop_ops } };   /* CM() per entry */
			int rc = aw_exitstack_enter(&s, &mgrs[j].mgr);
			if (rc < 0) {
				return aw_exitstack_unwind(&s, rc);   /* rc, or what an exit made of it */
			}
		}
		int rc = aw_exitstack_close(&s);   /* exits run LIFO */
		if (rc < 0)
			return rc;
	}
	*elapsed = aw_now() - t0;
	*ops = n * EXITSTACK_DEPTH;
	return 0;
}

static int case_spawn_join(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		aw_task *t;
		int rc = aw_spawn(&t, nop_task, NULL, NULL);   /* default name, like create_task */
		if (rc < 0)
			return rc;
		rc = aw_task_join(t);
		if (rc < 0)
			return rc;
	}
	*elapsed = aw_now() - t0;
	*ops = n;
	return 0;
}

static int case_lock_uncontended(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_lock lock;
	aw_lock_init(&lock);
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		AW_WITH(aw_lock_mgr(&lock)) {
			BARRIER();
		}
	}
	*elapsed = aw_now() - t0;
	*ops = n;
	return aw_error_pending();
}

static int case_timeout_block(uint64_t n, aw_time *elapsed, uint64_t *ops)
{
	aw_time t0 = aw_now();
	for (uint64_t i = 0; i < n; i++) {
		AW_WITH(AW_TIMEOUT(AW_SEC(10))) {
			BARRIER();
		}
	}
	*elapsed = aw_now() - t0;
	*ops = n;
	return aw_error_pending();
}

static const struct timing_case {
	const char *name;
	case_fn fn;
} timing_cases[] = {
	{ "switch", case_switch },
	{ "with_class", case_with_class },
	{ "with_gen", case_with_gen },
	{ "exitstack_entry", case_exitstack_entry },
	{ "spawn_join", case_spawn_join },
	{ "lock_uncontended", case_lock_uncontended },
	{ "timeout_block", case_timeout_block },
};
#define N_TIMING (sizeof timing_cases / sizeof timing_cases[0])

/* What the main task of one timing case's loop does: calibrate, then the
 * best ns/op of RUNS runs of ~target_s each (run_timing in the Python). */
typedef struct timing_job {
	case_fn fn;
	double target_s;
	uint64_t iterations;   /* --iterations: one run of exactly this many */
	double best_ns;
} timing_job;

static int timing_main(void *arg)
{
	timing_job *job = arg;
	uint64_t n = 1, ops = 0;
	aw_time elapsed = 0;
	if (job->iterations) {
		int rc = job->fn(job->iterations, &elapsed, &ops);
		job->best_ns = (double)elapsed / (double)(ops ? ops : 1);
		return rc;
	}
	for (;;) {
		int rc = job->fn(n, &elapsed, &ops);
		if (rc < 0)
			return rc;
		if ((double)elapsed >= job->target_s * 1e9 / 10 || n >= (uint64_t)1 << 30)
			break;
		n *= 2;
	}
	double scaled = (double)n * job->target_s * 1e9 / (double)(elapsed > 1 ? elapsed : 1);
	n = scaled < 1 ? 1 : (uint64_t)scaled;
	job->best_ns = -1;
	for (int r = 0; r < RUNS; r++) {
		int rc = job->fn(n, &elapsed, &ops);
		if (rc < 0)
			return rc;
		double per_op = (double)elapsed / (double)ops;
		if (job->best_ns < 0 || per_op < job->best_ns)
			job->best_ns = per_op;
	}
	return 0;
}

/* Run one timing case on a fresh loop and print its line. Returns false if
 * it failed. */
static bool run_timing_case(const struct timing_case *c, double target_s, uint64_t iterations)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = 0;   /* no watchdog reports for busy benchmark loops */
	timing_job job = { .fn = c->fn, .target_s = target_s, .iterations = iterations, .best_ns = -1 };
	int rc = aw_run_config(&cfg, timing_main, &job);
	if (rc < 0 || job.best_ns < 0) {
		printf("%s failed (%s)\n", c->name, aw_strerror(rc < 0 ? rc : -EPROTO));
		fflush(stdout);
		return false;
	}
	printf("%s %.1f ns/op\n", c->name, job.best_ns);
	fflush(stdout);
	return true;
}

/* ---- memory cases ------------------------------------------------------------ */

static const struct rss_case {
	const char *name;
	uint64_t n, quick_n;
} rss_cases[] = {
	{ "rss_idle_100k", 100000, 10000 },
	{ "rss_idle_1m", 1000000, 100000 },
};
#define N_RSS (sizeof rss_cases / sizeof rss_cases[0])

/* Resident set size in bytes from /proc/self/statm (second field, pages),
 * or -1. Reads with a stack buffer: no allocation between the two samples
 * besides what is measured. */
static int64_t rss_bytes(void)
{
	char buf[256];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = '\0';
	unsigned long long size, resident;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return -1;
	return (int64_t)resident * sysconf(_SC_PAGESIZE);
}

/* A number from a one-line file (e.g. /proc/sys/vm/max_map_count), or -1. */
static long long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long long v = -1;
	if (fscanf(f, "%lld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Mappings this process has now (lines of /proc/self/maps), or 0. */
static long long current_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	long long n = 0;
	int ch;
	while ((ch = getc(f)) != EOF)
		n += ch == '\n';
	fclose(f);
	return n;
}

typedef struct rss_job {
	uint64_t n;
	aw_event ev;
	uint64_t started, finished;
	double per_task;      /* result, B/task */
} rss_job;

static int idle_task(void *arg)
{
	rss_job *job = arg;
	job->started++;
	int rc = aw_event_wait(&job->ev);
	job->finished++;
	return rc < 0 ? rc : 0;
}

static int rss_main(void *arg)
{
	rss_job *job = arg;
	uint64_t n = job->n;
	aw_event_init(&job->ev);

	int64_t before = rss_bytes();
	/* The handles, like Python's list of tasks: counted in the delta. */
	aw_task **tasks = malloc(n * sizeof *tasks);
	if (!tasks)
		return aw_raise(-ENOMEM, "no memory for %" PRIu64 " task handles", n);
	uint64_t spawned = 0;
	int rc = 0;
	for (; spawned < n; spawned++) {
		rc = aw_spawn(&tasks[spawned], idle_task, job, NULL);
		if (rc < 0)
			break;
	}
	/* Yield until every task has run up to its wait (one yield normally
	 * suffices: this task queues behind all of them). */
	while (job->started < spawned && rc == 0)
		rc = aw_yield();
	int64_t after = rss_bytes();

	/* Wake them all and let them end (Python cancels; either ends them). */
	aw_event_set(&job->ev);
	for (uint64_t i = 0; i < spawned; i++) {
		int jrc = aw_task_join(tasks[i]);
		if (jrc < 0 && rc == 0)
			rc = jrc;
	}
	free(tasks);
	if (rc < 0)
		return rc;
	if (job->finished != n || before < 0 || after < 0)
		return aw_raise(-EPROTO, "rss case: %" PRIu64 " of %" PRIu64 " tasks finished", job->finished, n);
	job->per_task = (double)(after - before) / (double)n;
	return 0;
}

/* Run one rss case in this process and print its line. */
static bool run_rss_here(const struct rss_case *c, bool quick)
{
	uint64_t n = quick ? c->quick_n : c->n;
	/* Each guarded stack is two mappings; past vm.max_map_count mmap
	 * fails. Check first, with room for what the process maps besides. */
	long long max_maps = read_number("/proc/sys/vm/max_map_count");
	long long need = 2 * (long long)n + current_maps() + 1000;
	if (max_maps >= 0 && max_maps < need) {
		printf("%s skipped (vm.max_map_count too low)\n", c->name);
		fflush(stdout);
		return true;
	}
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = 0;
	cfg.stack_cache = 16;   /* do not keep 1M freed stacks mapped */
	rss_job job = { .n = n };
	int rc = aw_run_config(&cfg, rss_main, &job);
	if (rc < 0) {
		printf("%s failed (%s)\n", c->name, aw_strerror(rc));
		fflush(stdout);
		return false;
	}
	printf("%s %.0f B/task\n", c->name, job.per_task);
	fflush(stdout);
	return true;
}

/* Run one rss case in a fresh child process (this program, re-executed), so
 * the memory earlier cases touched cannot skew it. The child prints its own
 * line on our stdout. */
static bool run_rss_child(const struct rss_case *c, bool quick)
{
	char self[4096];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	if (len <= 0) {
		printf("%s failed (cannot find this program: %s)\n", c->name, strerror(errno));
		return false;
	}
	self[len] = '\0';
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		printf("%s failed (fork: %s)\n", c->name, strerror(errno));
		return false;
	}
	if (pid == 0) {
		char *argv[] = { self, "--case", (char *)c->name, quick ? "--quick" : NULL, NULL };
		execv(self, argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (WIFSIGNALED(status))
		printf("%s failed (child killed by signal %d)\n", c->name, WTERMSIG(status));
	/* Else the child printed its own "failed" line. */
	fflush(stdout);
	return false;
}

/* ---- main -------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out, "usage: core_bench [--quick] [--iterations N] [--case NAME]...\ncases:");
	for (size_t i = 0; i < N_TIMING; i++)
		fprintf(out, " %s", timing_cases[i].name);
	for (size_t i = 0; i < N_RSS; i++)
		fprintf(out, " %s", rss_cases[i].name);
	fprintf(out, "\n");
}

/* Index of a case name: timing cases first, then rss cases; -1 if none. */
static int case_index(const char *name)
{
	for (size_t i = 0; i < N_TIMING; i++)
		if (strcmp(name, timing_cases[i].name) == 0)
			return (int)i;
	for (size_t i = 0; i < N_RSS; i++)
		if (strcmp(name, rss_cases[i].name) == 0)
			return (int)(N_TIMING + i);
	return -1;
}

int main(int argc, char **argv)
{
	bool quick = false;
	uint64_t iterations = 0;
	int chosen[64];
	size_t nchosen = 0;
	for (int i = 1; i < argc; i++) {
		const char *name = NULL;
		if (strcmp(argv[i], "--quick") == 0) {
			quick = true;
			continue;
		} else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
			char *end;
			iterations = strtoull(argv[++i], &end, 10);
			if (*end || !iterations) {
				fprintf(stderr, "core_bench: --iterations wants a positive number\n");
				return 2;
			}
			continue;
		} else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
			name = argv[++i];
		} else if (strncmp(argv[i], "--case=", 7) == 0) {
			name = argv[i] + 7;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "core_bench: unknown argument '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
		int idx = case_index(name);
		if (idx < 0) {
			fprintf(stderr, "core_bench: unknown case '%s'\n", name);
			usage(stderr);
			return 2;
		}
		if (nchosen == sizeof chosen / sizeof chosen[0]) {
			fprintf(stderr, "core_bench: too many --case options\n");
			return 2;
		}
		chosen[nchosen++] = idx;
	}
	if (!nchosen)   /* all cases, in the Python script's order */
		for (size_t i = 0; i < N_TIMING + N_RSS; i++)
			chosen[nchosen++] = (int)i;

	double target_s = quick ? QUICK_TARGET_S : TARGET_S;
	/* A lone case runs in this process (it is fresh); otherwise each rss
	 * case gets its own child process. */
	bool alone = nchosen == 1;
	bool ok = true;
	for (size_t i = 0; i < nchosen; i++) {
		size_t idx = (size_t)chosen[i];
		if (idx < N_TIMING)
			ok &= run_timing_case(&timing_cases[idx], target_s, iterations);
		else if (alone)
			ok &= run_rss_here(&rss_cases[idx - N_TIMING], quick);
		else
			ok &= run_rss_child(&rss_cases[idx - N_TIMING], quick);
	}
	return ok ? 0 : 1;
}
