/* SPDX-License-Identifier: MIT */
/*
 * The machine context switch: save the callee-saved registers and the stack
 * pointer of the running context, restore another's. Assembly for x86-64
 * SysV and aarch64 (context_*.S); ucontext as the last-resort fallback
 * (context.c). The FPU control words are per thread, not per context: a task
 * that changes rounding modes must restore them before it waits.
 */
#ifndef AW_CORE_CONTEXT_H
#define AW_CORE_CONTEXT_H

#include <stddef.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define AW_CTX_ASM 1
typedef struct aw_ctx {
	void *sp;               /* saved stack pointer; registers are on the stack */
} aw_ctx;
#else
#define AW_CTX_ASM 0
#include <ucontext.h>
typedef struct aw_ctx {
	ucontext_t uc;
} aw_ctx;
#endif

/* Prepare ctx so that the first switch into it calls entry(arg) on the stack
 * whose usable range is [lo, hi). entry must never return. */
void aw_ctx_init(aw_ctx *ctx, void *lo, void *hi, void (*entry)(void *), void *arg);

/* Save the running context into *from and resume *to. Returns when some
 * context switches back to *from. */
void aw_ctx_switch(aw_ctx *from, aw_ctx *to);

#endif
