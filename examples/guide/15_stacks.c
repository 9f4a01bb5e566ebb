/* SPDX-License-Identifier: MIT */
/*
 * 15_stacks — where C differs: every task has a stack of its own.
 *
 * A Python coroutine can only `await` from another coroutine: the chain of
 * `async def`s reaches up to the event loop. An awith task is stackful, so
 * any function may wait, however deep, even inside a callback a C library
 * calls (here qsort's comparator) — which is also why an exit, a plain C
 * cleanup function, can wait. The price: each task has a fixed-size stack
 * (aw_config.stack_size, 64 KiB by default; only the pages touched cost
 * memory), with a guard page below it.
 *
 *     15_stacks              a comparator that waits; a task with a bigger stack
 *     15_stacks --overflow   a task that overflows its stack: the process
 *                            dies with SIGSEGV and says which task it was
 */
#include <awith/core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1. Waiting inside a callback. */
static int others_ran;

static int other_task(void *arg)
{
	(void)arg;
	for (;;) {
		if (aw_yield() < 0)
			return 0;
		others_ran++;
	}
}

static int compare_and_wait(const void *a, const void *b)
{
	if (aw_yield() < 0)   /* a wait from inside qsort */
		abort();
	return *(const int *)a - *(const int *)b;
}

/* 2. Deep recursion needs a bigger stack: 256 frames of 2 KiB. */
static int __attribute__((noinline)) depth(int n)
{
	volatile char frame[2048];
	memset((char *)frame, n, sizeof frame);
	return n == 0 ? 0 : 1 + depth(n - 1) + (frame[n % sizeof frame] & 0);
}

static int deep(void *arg)
{
	return depth(*(int *)arg);
}

static int amain(void *arg)
{
	bool overflow = arg != NULL;
	aw_task *t;

	if (overflow) {
		/* 100,000 frames of 2 KiB on the default 64 KiB stack. */
		int n = 100000;
		if (aw_spawn(&t, deep, &n, "deep") < 0)
			return aw_error_pending();
		return aw_task_join(t);   /* never returns: SIGSEGV */
	}

	if (aw_spawn(&t, other_task, NULL, "other") < 0)
		return aw_error_pending();
	int v[] = { 5, 3, 9, 1, 7, 2, 8, 6, 4, 0 };
	qsort(v, 10, sizeof v[0], compare_and_wait);
	printf("sorted:");
	for (int i = 0; i < 10; i++)
		printf(" %d", v[i]);
	printf("; the other task ran %s while qsort waited\n", others_ran > 0 ? "yes" : "NOT");
	aw_task_cancel(t);
	if (aw_task_join(t) < 0)
		return aw_error_pending();

	int n = 256;   /* about 512 KiB of stack */
	aw_spawn_opts opts = { .name = "deep", .stack_size = 1024 * 1024 };
	if (aw_spawn_with(&t, deep, &n, &opts) < 0)
		return aw_error_pending();
	printf("recursion %d frames deep on a 1 MiB stack: %d\n", n, aw_task_join(t));
	return 0;
}

int main(int argc, char **argv)
{
	bool overflow = argc > 1 && strcmp(argv[1], "--overflow") == 0;
	return aw_run(amain, overflow ? argv[1] : NULL) == 0 ? 0 : 1;
}
