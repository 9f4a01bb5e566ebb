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


/*
 * aw_ctx_hop(from, to): the same switch as aw_ctx_switch, written inline in
 * the caller, for the generator hand-offs (gen.c). Why: aw_ctx_switch is a
 * call whose `ret` lands in another context, so the CPU's return-address
 * predictor misses there and on every return the resumed context makes
 * afterwards (its entries were pushed by the other context): several
 * mispredictions per switch. The hop pushes no return address: it saves a
 * label of the caller's code and leaves with an indirect jump, which the
 * branch target predictor learns (each hop site has one or two targets),
 * and the return stack stays in step with the calls both contexts make.
 *
 * The saved frame has aw_ctx_switch's layout (return address, rbp, rbx,
 * r12-r15 / x19-x30, d8-d15), so either switch resumes a context the other
 * saved: a generator parked by a task switch is resumed by a hop, and the
 * reverse. The hop saves only what the compiler cannot be told about (the
 * frame pointer); every other register is declared clobbered, so the
 * caller keeps nothing live in registers across it (on aarch64 that
 * includes x18, a temporary on Linux that compilers do allocate). The
 * 128-byte red zone below the stack pointer is stepped over first (x86-64).
 * The resume label is reached by an indirect jump: a build that enforced
 * branch-target landing pads (x86 IBT, aarch64 BTI) would need `endbr64` /
 * `bti j` there; the .S files carry no such property note, so no awith
 * binary is marked for enforcement (the same holds for aw_ctx_switch's
 * returns into other stacks under shadow stacks).
 */
#if defined(__x86_64__)
#define AW_CTX_HOP 1
#if defined(__AVX512F__)
#define AW__HOP_CLOBBER_AVX512 , "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", \
	"xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7"
#else
#define AW__HOP_CLOBBER_AVX512
#endif
static inline __attribute__((always_inline)) void aw_ctx_hop(aw_ctx *from, aw_ctx *to)
{
	__asm__ __volatile__(
		"leaq -128(%%rsp), %%rsp\n\t"   /* step over the red zone */
		"leaq 1f(%%rip), %%rax\n\t"
		"pushq %%rax\n\t"               /* where this context resumes */
		"pushq %%rbp\n\t"
		"leaq -40(%%rsp), %%rsp\n\t"    /* rbx, r12-r15: clobbered, not saved */
		"movq %%rsp, (%0)\n\t"
		"movq (%1), %%rsp\n\t"
		"popq %%r15\n\t"
		"popq %%r14\n\t"
		"popq %%r13\n\t"
		"popq %%r12\n\t"
		"popq %%rbx\n\t"
		"popq %%rbp\n\t"
		"popq %%rax\n\t"
		"jmpq *%%rax\n"
		"1:\n\t"
		"leaq 128(%%rsp), %%rsp\n\t"
		: "+D"(from), "+S"(to)
		:
		: "rax", "rbx", "rcx", "rdx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
		  "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
		  "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)",
		  "memory", "cc" AW__HOP_CLOBBER_AVX512);
}
#elif defined(__aarch64__)
#define AW_CTX_HOP 1
static inline __attribute__((always_inline)) void aw_ctx_hop(aw_ctx *from, aw_ctx *to)
{
	register aw_ctx *f __asm__("x0") = from;
	register aw_ctx *t __asm__("x1") = to;
	__asm__ __volatile__(
		"sub sp, sp, #176\n\t"
		"adr x2, 1f\n\t"
		"stp x29, x2, [sp, #80]\n\t"     /* frame pointer; x30 slot: where to resume */
		"mov x2, sp\n\t"
		"str x2, [%0]\n\t"
		"ldr x2, [%1]\n\t"
		"mov sp, x2\n\t"
		"ldp x19, x20, [sp, #0]\n\t"
		"ldp x21, x22, [sp, #16]\n\t"
		"ldp x23, x24, [sp, #32]\n\t"
		"ldp x25, x26, [sp, #48]\n\t"
		"ldp x27, x28, [sp, #64]\n\t"
		"ldp x29, x30, [sp, #80]\n\t"
		"ldp d8, d9, [sp, #96]\n\t"
		"ldp d10, d11, [sp, #112]\n\t"
		"ldp d12, d13, [sp, #128]\n\t"
		"ldp d14, d15, [sp, #144]\n\t"
		"add sp, sp, #176\n\t"
		"br x30\n"
		"1:\n\t"
		: "+r"(f), "+r"(t)
		:
		: "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
		  "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x30",
		  "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13",
		  "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25",
		  "v26", "v27", "v28", "v29", "v30", "v31", "memory", "cc");
}
#else
#define AW_CTX_HOP 0
#endif

#endif
