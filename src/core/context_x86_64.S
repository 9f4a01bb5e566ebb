/* SPDX-License-Identifier: MIT */
/*
 * aw_ctx_switch for x86-64 System V.
 *
 * void aw_ctx_switch(aw_ctx *from, aw_ctx *to)   rdi = from, rsi = to
 *
 * Pushes the callee-saved registers on the running stack, stores rsp in
 * from->sp, loads to->sp and pops the other context's registers. The caller
 * has already saved everything else (the switch is an ordinary call).
 *
 * A fresh context (aw_ctx_init) is a stack holding six zeroed registers
 * with r12 = entry and r13 = arg, then the address of aw_ctx_trampoline as
 * the return address.
 */
#if defined(__x86_64__)
	.text
	.p2align 4
	.globl aw_ctx_switch
	.hidden aw_ctx_switch
	.type aw_ctx_switch, @function
aw_ctx_switch:
	.cfi_startproc
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq (%rsi), %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.cfi_endproc
	.size aw_ctx_switch, .-aw_ctx_switch

	.p2align 4
	.globl aw_ctx_trampoline
	.hidden aw_ctx_trampoline
	.type aw_ctx_trampoline, @function
aw_ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip           /* end of the call chain for debuggers */
	movq %r13, %rdi
	callq *%r12
	ud2                          /* entry must not return */
	.cfi_endproc
	.size aw_ctx_trampoline, .-aw_ctx_trampoline
#endif
	.section .note.GNU-stack, "", @progbits
