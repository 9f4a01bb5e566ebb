/* SPDX-License-Identifier: MIT */
/*
 * Task and generator stacks: one mmap each, a PROT_NONE guard page at the
 * low end, reserved lazily (MAP_NORESERVE: only touched pages cost memory),
 * and a per-loop cache so that spawning does not call mmap.
 *
 * A stack overflow hits the guard page; the SIGSEGV handler, running on an
 * alternate signal stack, recognises the guard of the running coroutine and
 * names the task before the process dies, instead of a bare segfault.
 */
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if AW_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

/* Cached process-wide; loops on several threads may fill it at once (the
 * same value: relaxed atomics keep that race defined). */
static size_t page_size(void)
{
	static _Atomic size_t ps;
	size_t v = atomic_load_explicit(&ps, memory_order_relaxed);
	if (!v) {
		v = (size_t)sysconf(_SC_PAGESIZE);
		atomic_store_explicit(&ps, v, memory_order_relaxed);
	}
	return v;
}

/* `to` is a power of two (a page size): no division on the spawn path. */
static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

void *aw_stack_get(aw_loop *loop, size_t size, aw_stack *out)
{
	size_t ps = page_size();
	size_t usable = round_up(size, ps);
	size_t map_size = usable + ps;

	if (map_size == loop->cfg.stack_size + ps && loop->stack_cache_len) {
		*out = loop->stack_cache[--loop->stack_cache_len];
#if AW_HAVE_VALGRIND
		/* A reused stack's old contents are garbage to its new owner;
		 * Valgrind would otherwise flag writes over a dead frame. */
		VALGRIND_MAKE_MEM_UNDEFINED(out->lo, out->map_size - ps);
#endif
		return (char *)out->map + out->map_size;
	}
	if (aw__fault_mmap())   /* fault injection: as if the map failed */
		return NULL;
	void *map = mmap(NULL, map_size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (map == MAP_FAILED)
		return NULL;
	if (mprotect(map, ps, PROT_NONE) != 0) {
		/* Each guarded stack is two mappings: vm.max_map_count bounds
		 * how many can exist. */
		int e = errno;
		munmap(map, map_size);
		errno = e == ENOMEM ? ENOMEM : e;
		return NULL;
	}
	out->map = map;
	out->map_size = map_size;
	out->lo = (char *)map + ps;
	out->vg_id = 0;
#if AW_HAVE_VALGRIND
	if (RUNNING_ON_VALGRIND)
		out->vg_id = VALGRIND_STACK_REGISTER((char *)map + ps, (char *)map + map_size);
#endif
	return (char *)map + map_size;
}

static void stack_unmap(aw_stack *s)
{
#if AW_HAVE_VALGRIND
	if (s->vg_id)
		VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
	munmap(s->map, s->map_size);
}

void aw_stack_put(aw_loop *loop, aw_stack *s)
{
	size_t ps = page_size();
	if (s->map_size == loop->cfg.stack_size + ps && loop->stack_cache_len < loop->cfg.stack_cache) {
		if (!loop->stack_cache) {
			loop->stack_cache = aw__calloc(loop->cfg.stack_cache, sizeof(aw_stack));
			if (!loop->stack_cache) {
				stack_unmap(s);
				return;
			}
		}
		loop->stack_cache[loop->stack_cache_len++] = *s;
		return;
	}
	stack_unmap(s);
}

void aw_stack_cache_drain(aw_loop *loop)
{
	while (loop->stack_cache_len)
		stack_unmap(&loop->stack_cache[--loop->stack_cache_len]);
	free(loop->stack_cache);
	loop->stack_cache = NULL;
}

/* ---- overflow reporting ------------------------------------------------- */

/* The SIGSEGV/SIGBUS dispositions are process-wide, the alternate signal
 * stack is per thread. So: the first loop to start (on any thread) installs
 * the handler and saves the previous dispositions, the last one to stop
 * puts them back (a count under a mutex; several loops run on several
 * threads); each loop's thread gets its own alternate stack. */
static pthread_mutex_t handler_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned handler_users;                 /* loops with the handler */
static struct sigaction old_segv, old_bus;     /* set before the handler
                                                  runs, stable while it is
                                                  installed */
static __thread bool handler_installed;        /* this thread's loop counts */

static void write_str(const char *s) { ssize_t r = write(2, s, strlen(s)); (void)r; }

static void write_num(size_t n)
{
	char buf[24];
	int i = sizeof buf;
	buf[--i] = 0;
	do {
		buf[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n && i > 0);
	write_str(buf + i);
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
	aw_loop *loop = aw__loop;
	aw_task *t = loop ? loop->running : NULL;
	if (t && t->cur) {
		char *guard = t->cur->stack.map;
		size_t ps = page_size();
		char *addr = si->si_addr;
		/* The guard page, or just below it (a big frame can skip it). */
		if (guard && addr >= guard - 16 * ps && addr < guard + ps) {
			write_str("awith: stack overflow in task '");
			write_str(t->name);
			write_str("'");
			if (t->cur != &t->coro)
				write_str(" (in a generator's stack)");
			write_str(": stack of ");
			write_num(t->cur->size / 1024);
			write_str(" KiB exhausted; give it a larger stack_size (aw_spawn_opts) "
				  "or keep large buffers off the stack\n");
		}
	}
	/* Hand the signal on: restore the previous disposition and return; the
	 * faulting instruction runs again and the process dies as it would
	 * have (core dump included). */
	sigaction(sig, sig == SIGSEGV ? &old_segv : &old_bus, NULL);
	if ((sig == SIGSEGV ? old_segv : old_bus).sa_flags & SA_SIGINFO) {
		void (*h)(int, siginfo_t *, void *) = (sig == SIGSEGV ? old_segv : old_bus).sa_sigaction;
		if (h)
			h(sig, si, uctx);
	}
}

void aw_stack_overflow_handler_install(aw_loop *loop)
{
	if (handler_installed)
		return;
	size_t alt_size = 64 * 1024;
	loop->altstack = mmap(NULL, alt_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (loop->altstack == MAP_FAILED) {
		loop->altstack = NULL;
		return;
	}
	stack_t ss = { .ss_sp = loop->altstack, .ss_size = alt_size, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0) {
		munmap(loop->altstack, alt_size);
		loop->altstack = NULL;
		return;
	}
	pthread_mutex_lock(&handler_mu);
	if (handler_users++ == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = on_segv;
		sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGSEGV, NULL, &old_segv);
		sigaction(SIGBUS, NULL, &old_bus);
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
	}
	pthread_mutex_unlock(&handler_mu);
	handler_installed = true;
}

void aw_stack_overflow_handler_remove(aw_loop *loop)
{
	if (!handler_installed)
		return;
	pthread_mutex_lock(&handler_mu);
	if (--handler_users == 0) {
		sigaction(SIGSEGV, &old_segv, NULL);
		sigaction(SIGBUS, &old_bus, NULL);
	}
	pthread_mutex_unlock(&handler_mu);
	stack_t ss = { .ss_flags = SS_DISABLE };
	sigaltstack(&ss, NULL);
	if (loop->altstack)
		munmap(loop->altstack, 64 * 1024);
	loop->altstack = NULL;
	handler_installed = false;
}
