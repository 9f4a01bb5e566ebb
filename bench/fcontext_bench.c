/* SPDX-License-Identifier: MIT */
/*
 * fcontext_bench — the context switch of Boost.Context (Debian's
 * libboost-context-dev), measured the way core_bench measures awith's
 * `switch` case, so bench/run.sh can put the two side by side.
 *
 *     fcontext_bench [--quick]
 *
 * Two contexts hand over to each other with jump_fcontext (the bare
 * assembly switch under boost::context::fiber: no scheduler, no ready
 * queue); per switch = total / (2n). Calibrated as core_bench is (doubling
 * n until a run takes 1/10 of the target, then ~0.3 s per run, best of 3).
 * awith's `switch` is a whole task switch (aw_yield: the ready queue, the
 * task's state, the loop's bookkeeping) on its own assembly switch, so the
 * ratio shows what the scheduler costs on top of a bare switch.
 *
 * Boost.Context's fcontext functions have C linkage (extern "C" in
 * boost/context/detail/fcontext.hpp); they are declared here as the
 * library exports them.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef void *fcontext_t;
typedef struct transfer_t {
	fcontext_t fctx;
	void *data;
} transfer_t;
extern transfer_t jump_fcontext(fcontext_t const to, void *vp);
extern fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

#define STACK (64 * 1024)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The other side: jump back for every jump in, forever (the stack is
 * dropped with the run). */
static void ponger(transfer_t t)
{
	for (;;)
		t = jump_fcontext(t.fctx, NULL);
}

/* n round trips (2n switches); elapsed ns, or 0 on failure. */
static uint64_t run(uint64_t n)
{
	void *stack = mmap(NULL, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (stack == MAP_FAILED)
		return 0;
	fcontext_t ctx = make_fcontext((char *)stack + STACK, STACK, ponger);
	uint64_t t0 = now_ns();
	for (uint64_t i = 0; i < n; i++)
		ctx = jump_fcontext(ctx, NULL).fctx;
	uint64_t t = now_ns() - t0;
	munmap(stack, STACK);
	return t ? t : 1;
}

int main(int argc, char **argv)
{
	double target = 0.3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			target = 0.05;
		else {
			fprintf(stderr, "usage: fcontext_bench [--quick]\n");
			return 2;
		}
	}
	uint64_t n = 1000, t;
	while ((t = run(n)) && t < target * 1e9 / 10)
		n *= 2;
	if (!t) {
		printf("fcontext_switch failed (no stack)\n");
		return 1;
	}
	n = (uint64_t)((double)n * (target * 1e9 / (double)t)) + 1;
	double best = 0;
	for (int r = 0; r < 3; r++) {
		uint64_t e = run(n);
		double per = (double)e / (double)(2 * n);
		if (!e) {
			printf("fcontext_switch failed (no stack)\n");
			return 1;
		}
		if (r == 0 || per < best)
			best = per;
	}
	printf("fcontext_switch %.1f ns/op\n", best);
	return 0;
}
