/* SPDX-License-Identifier: MIT */
/*
 * File calls on the two backends, side by side: the thread pool (epoll
 * backend: one aw_to_thread job per call) against io_uring (the loop's
 * ring: IORING_OP_OPENAT/READ/WRITE/CLOSE submitted with the turn's one
 * io_uring_enter). One process runs both, interleaved, `rounds` times per
 * case; each number is the median.
 *
 *   build/bench/file_bench [--quick] [--default-malloc] [--dir DIR]
 *   build/bench/file_bench --case 1 --backend uring   # one case, one
 *                                  # backend (under perf record -g)
 *
 * Cases: aw_file_read_all of a 64 KiB file (1 task, then 16 tasks at
 * once), aw_file_pread of 4 KiB at random offsets of an 8 MiB file (16
 * tasks), aw_file_write_all of 4 KiB, not atomic (16 tasks, each its own
 * file). The files sit in DIR ($TMPDIR or /tmp), so reads come from the
 * page cache: this measures the cost of getting a call done, not the disk.
 * CPU per op is the process's user + system time (getrusage: every thread,
 * the pool's workers and io_uring's io-wq workers included) over the ops.
 */
#include <awith/core.h>
#include <awith/io.h>

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SMALL (64 * 1024)
#define BIG (8 * 1024 * 1024)

enum { CASE_READ_ALL, CASE_PREAD, CASE_WRITE_ALL };

typedef struct bench_case {
	const char *name;
	int kind;
	int tasks;
} bench_case;

typedef struct run {
	const bench_case *bc;
	aw_time duration;
	const char *dir;
	uint64_t ops;
	int err;
	char backend[16];
	aw_time t0, t1;   /* the workers' run, without the loop's start and end */
	double c0, c1;
} run;

typedef struct worker {
	run *r;
	int id;
	uint64_t ops;
	int bigfd;
} worker;

static char small_path[512], big_path[512];

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}


static int worker_main(void *arg)
{
	worker *w = arg;
	run *r = w->r;
	aw_time end = aw_now() + r->duration;
	char wpath[600];
	snprintf(wpath, sizeof wpath, "%s/file_bench.w%d", r->dir, w->id);
	static char wdata[4096];
	char pbuf[4096];
	unsigned seed = (unsigned)w->id * 2654435761u + 1;
	while (aw_now() < end) {
		int rc = 0;
		for (int i = 0; i < 16 && rc == 0; i++) {
			if (r->bc->kind == CASE_READ_ALL) {
				char *buf = NULL;
				size_t len = 0;
				rc = aw_file_read_all(small_path, SMALL, &buf, &len);
				free(buf);
			} else if (r->bc->kind == CASE_PREAD) {
				seed = seed * 1103515245u + 12345u;
				off_t off = (off_t)(seed % (BIG / 4096)) * 4096;
				ssize_t n = aw_file_pread(w->bigfd, pbuf, sizeof pbuf, off);
				rc = n == (ssize_t)sizeof pbuf ? 0 : -1;
			} else {
				rc = aw_file_write_all(wpath, wdata, sizeof wdata, 0600, false);
			}
			if (rc == 0)
				w->ops++;
		}
		if (rc) {
			r->err = rc;
			break;
		}
	}
	unlink(wpath);
	return 0;
}

static int bench_main(void *arg)
{
	run *r = arg;
	snprintf(r->backend, sizeof r->backend, "%s", aw_loop_backend());
	int bigfd = open(big_path, O_RDONLY | O_CLOEXEC);
	if (bigfd < 0)
		return -1;
	worker ws[64];
	aw_task *ts[64];
	int n = r->bc->tasks;
	r->c0 = cpu_seconds();
	r->t0 = aw_now();
	for (int i = 0; i < n; i++) {
		ws[i] = (worker){ .r = r, .id = i, .bigfd = bigfd };
		if (aw_spawn(&ts[i], worker_main, &ws[i], "worker"))
			return -1;
	}
	for (int i = 0; i < n; i++) {
		if (aw_task_join(ts[i]))
			aw_error_clear();
		r->ops += ws[i].ops;
	}
	r->t1 = aw_now();
	r->c1 = cpu_seconds();
	close(bigfd);
	return 0;
}

/* ops/s and µs of CPU per op of one run on `backend`. */
static int measure(const bench_case *bc, int backend, aw_time duration, const char *dir, double *rate,
		   double *cpu_us)
{
	run r = { .bc = bc, .duration = duration, .dir = dir };
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.backend = backend;
	int rc = aw_run_config(&cfg, bench_main, &r);
	if (rc || r.err || !r.ops) {
		fprintf(stderr, "file_bench: %s on %s failed (%d, %d)\n", bc->name,
			backend == AW_BACKEND_URING ? "io_uring" : "epoll", rc, r.err);
		return -1;
	}
	*rate = (double)r.ops / ((double)(r.t1 - r.t0) / 1e9);
	*cpu_us = (r.c1 - r.c0) * 1e6 / (double)r.ops;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int make_file(const char *path, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	char block[65536];
	for (size_t i = 0; i < sizeof block; i++)
		block[i] = (char)(i * 31);
	for (size_t done = 0; done < size; done += sizeof block)
		if (write(fd, block, sizeof block) != (ssize_t)sizeof block) {
			close(fd);
			return -1;
		}
	return close(fd);
}

int main(int argc, char **argv)
{
	int rounds = 5;
	int only_case = -1, only_backend = -1;
	bool default_malloc = false;   /* --case N, --backend epoll|uring: for a profiler */
	aw_time duration = AW_MS(400);
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			rounds = 3;
			duration = AW_MS(150);
		} else if (strcmp(argv[i], "--default-malloc") == 0) {
			default_malloc = true;
		} else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) {
			only_case = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
			i++;
			only_backend = strcmp(argv[i], "uring") == 0 ? 1 : 0;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			dir = argv[++i];
		} else {
			fprintf(stderr, "usage: file_bench [--quick] [--default-malloc] [--dir DIR] [--case N] [--backend epoll|uring]\n");
			return 2;
		}
	}
	/* aw_file_read_all mallocs each file's buffer: with glibc's default
	 * trim threshold, 16 live 64 KiB buffers make the heap shrink and grow
	 * again, and every read then first faults its buffer's pages in
	 * (perf: most of the time in exc_page_fault under _copy_to_iter, and
	 * page faults are dear under this hypervisor). That is the
	 * allocator, not the file path, and it hits the two backends
	 * differently (the pool's threads allocate from their own arenas).
	 * Keep freed memory, as a server that reads files in a loop would:
	 * --default-malloc leaves glibc's defaults. */
	if (!default_malloc) {
		mallopt(M_TRIM_THRESHOLD, 64 << 20);
		mallopt(M_MMAP_THRESHOLD, 4 << 20);
	}
	snprintf(small_path, sizeof small_path, "%s/file_bench.64k", dir);
	snprintf(big_path, sizeof big_path, "%s/file_bench.8m", dir);
	if (make_file(small_path, SMALL) || make_file(big_path, BIG)) {
		perror("file_bench: cannot create the test files");
		return 1;
	}
	static const bench_case cases[] = {
		{ "read_all 64 KiB, 1 task", CASE_READ_ALL, 1 },
		{ "read_all 64 KiB, 16 tasks", CASE_READ_ALL, 16 },
		{ "pread 4 KiB random, 16 tasks", CASE_PREAD, 16 },
		{ "write_all 4 KiB, 16 tasks", CASE_WRITE_ALL, 16 },
	};
	printf("file_bench: %d rounds of %.2f s per case and backend, interleaved; medians; files in %s; %s\n",
	       rounds, (double)duration / 1e9, dir, default_malloc ? "glibc malloc defaults" : "malloc keeps freed memory");
	printf("%-30s %12s %12s %8s %10s %10s %8s\n", "case", "pool op/s", "uring op/s", "ratio", "pool us/op",
	       "uring us/op", "ratio");
	int status = 0;
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		double rate[2][16] = { { 0 } }, cpu[2][16] = { { 0 } };
		int ok = 1;
		if (only_case >= 0 && (size_t)only_case != c)
			continue;
		for (int k = 0; k < rounds && ok; k++)
			for (int b = 0; b < 2 && ok; b++)
				ok = (only_backend >= 0 && b != only_backend) ||
				     measure(&cases[c], b ? AW_BACKEND_URING : AW_BACKEND_EPOLL, duration, dir,
					     &rate[b][k], &cpu[b][k]) == 0;
		if (!ok) {
			status = 1;
			continue;
		}
		double re = median(rate[0], rounds), ru = median(rate[1], rounds);
		double ce = median(cpu[0], rounds), cu = median(cpu[1], rounds);
		printf("%-30s %12.0f %12.0f %7.2fx %10.2f %10.2f %7.2fx\n", cases[c].name, re, ru, ru / re, ce, cu,
		       cu / ce);
	}
	printf("ratio: io_uring / pool (op/s: > 1 is faster; CPU per op: < 1 is cheaper)\n");
	unlink(small_path);
	unlink(big_path);
	return status;
}
