/* SPDX-License-Identifier: MIT */
/*
 * Creating contexts for the assembly switch, and the ucontext fallback for
 * other architectures (slower: swapcontext saves the signal mask with a
 * system call).
 */
#include "context.h"

#include <stdint.h>
#include <string.h>

#if AW_CTX_ASM
void aw_ctx_trampoline(void);

void aw_ctx_init(aw_ctx *ctx, void *lo, void *hi, void (*entry)(void *), void *arg)
{
	(void)lo;
	uintptr_t top = ((uintptr_t)hi & ~(uintptr_t)15) - 16;
#if defined(__x86_64__)
	/* After the six pops and the `ret`, rsp == top: 16-byte aligned, as the
	 * `call` in the trampoline expects. */
	void **sp = (void **)(top - 7 * sizeof(void *));
	memset(sp, 0, 7 * sizeof(void *));
	sp[0] = NULL;                  /* r15 */
	sp[1] = NULL;                  /* r14 */
	sp[2] = arg;                   /* r13 */
	sp[3] = (void *)entry;         /* r12 */
	sp[4] = NULL;                  /* rbx */
	sp[5] = NULL;                  /* rbp: ends frame-pointer walks */
	sp[6] = (void *)aw_ctx_trampoline;
	ctx->sp = sp;
#elif defined(__aarch64__)
	void **sp = (void **)(top - 176);
	memset(sp, 0, 176);
	sp[0] = (void *)entry;         /* x19 */
	sp[1] = arg;                   /* x20 */
	sp[11] = (void *)aw_ctx_trampoline; /* x30 */
	ctx->sp = sp;
#endif
}
#else
void aw_ctx_init(aw_ctx *ctx, void *lo, void *hi, void (*entry)(void *), void *arg)
{
	getcontext(&ctx->uc);
	ctx->uc.uc_stack.ss_sp = lo;
	ctx->uc.uc_stack.ss_size = (size_t)((char *)hi - (char *)lo) - 64;
	ctx->uc.uc_link = NULL;
	/* POSIX says makecontext takes int arguments; glibc on LP64 targets
	 * passes whole registers, which is what this fallback relies on. */
	makecontext(&ctx->uc, (void (*)(void))entry, 1, arg);
}

void aw_ctx_switch(aw_ctx *from, aw_ctx *to)
{
	swapcontext(&from->uc, &to->uc);
}
#endif
