/* SPDX-License-Identifier: MIT */
/*
 * Fault injection (built only with -Dfault_injection=true): see alloc.h for
 * the knobs and docs/design.md ("Fault injection") for the design.
 *
 * One process-wide allocation counter (atomic: loops on several threads and
 * the thread pool allocate too). A forked child (the test harness forks per
 * test, tests fork servers) inherits the count and goes on from there, so
 * "the Nth allocation" is counted per process from its start. The settings
 * are read from the environment once, at the first call.
 */
#include "internal.h"

/* Built by meson only with -Dfault_injection=true; a build that compiles
 * every file of src/core (the aarch64 cross build in scripts/test.sh) gets
 * nothing from it. */
#if AW_FAULT_INJECTION

#include <errno.h>
#include <stdatomic.h>

static atomic_ulong allocs;        /* allocations so far (this process) */
static atomic_ulong io_calls;      /* read/write calls so far */
static atomic_int ready;           /* 0 unread, 1 being read, 2 read */
static unsigned long fail_at;      /* AW_FAULT_ALLOC_FAIL; 0: never */
static unsigned long io_short, io_eintr;
static bool count_at_exit;
static bool print_stack;           /* AW_FAULT_STACK: where the failure is */
static atomic_ulong io_injected;   /* short or EINTR results handed out */

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AW_FAULT_SANITIZER_STACK 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define AW_FAULT_SANITIZER_STACK 1
#endif
#ifdef AW_FAULT_SANITIZER_STACK
void __sanitizer_print_stack_trace(void);
#endif

static unsigned long env_num(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	return *end ? 0 : n;
}

static void print_count(void)
{
	unsigned long n = atomic_load(&allocs);
	if (n)
		fprintf(stderr, "awith-fault: %lu allocations (pid %d)\n", n, (int)getpid());
}

static void settings(void)
{
	if (atomic_load_explicit(&ready, memory_order_acquire) == 2)
		return;
	int expected = 0;
	if (atomic_compare_exchange_strong(&ready, &expected, 1)) {
		fail_at = env_num("AW_FAULT_ALLOC_FAIL");
		io_short = env_num("AW_FAULT_IO_SHORT");
		io_eintr = env_num("AW_FAULT_IO_EINTR");
		count_at_exit = env_num("AW_FAULT_COUNT") != 0;
		print_stack = env_num("AW_FAULT_STACK") != 0;
		if (count_at_exit)
			atexit(print_count);
		atomic_store_explicit(&ready, 2, memory_order_release);
		return;
	}
	while (atomic_load_explicit(&ready, memory_order_acquire) != 2)
		;
}

/* Count one allocation; true if it is the one to fail. */
static bool alloc_fails(void)
{
	settings();
	unsigned long n = atomic_fetch_add(&allocs, 1) + 1;
	if (fail_at && n == fail_at) {
		/* Said on stderr, so a run's output shows which allocation
		 * failed (scripts/fault_alloc.sh reads it). */
		fprintf(stderr, "awith-fault: allocation %lu fails (ENOMEM)\n", n);
#ifdef AW_FAULT_SANITIZER_STACK
		if (print_stack)
			__sanitizer_print_stack_trace();
#endif
		errno = ENOMEM;
		return true;
	}
	return false;
}

void *aw__malloc(size_t n) { return alloc_fails() ? NULL : malloc(n); }
void *aw__calloc(size_t n, size_t size) { return alloc_fails() ? NULL : calloc(n, size); }
void *aw__realloc(void *p, size_t n) { return alloc_fails() ? NULL : realloc(p, n); }
char *aw__strdup(const char *s) { return alloc_fails() ? NULL : strdup(s); }
char *aw__strndup(const char *s, size_t n) { return alloc_fails() ? NULL : strndup(s, n); }

int aw__vasprintf(char **out, const char *fmt, va_list ap)
{
	if (alloc_fails()) {
		*out = NULL;
		return -1;
	}
	return vasprintf(out, fmt, ap);
}

int aw__asprintf(char **out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = aw__vasprintf(out, fmt, ap);
	va_end(ap);
	return r;
}

bool aw__fault_mmap(void) { return alloc_fails(); }

/* Every io_eintr-th call fails with EINTR before doing anything; every
 * io_short-th call moves at most half the bytes. Returns -1 (EINTR) or the
 * length to pass on. */
static ssize_t io_fault(size_t n, bool may_short)
{
	settings();
	if (!io_short && !io_eintr)
		return (ssize_t)n;
	unsigned long k = atomic_fetch_add(&io_calls, 1) + 1;
	if (io_eintr && k % io_eintr == 0) {
		atomic_fetch_add(&io_injected, 1);
		errno = EINTR;
		return -1;
	}
	if (may_short && io_short && k % io_short == 0 && n > 1) {
		atomic_fetch_add(&io_injected, 1);
		return (ssize_t)(n / 2);
	}
	return (ssize_t)n;
}

/* For tests (declared weak there: absent from normal builds): how many
 * short or EINTR results the stream's syscalls were given. */
unsigned long aw__fault_io_injected(void);
unsigned long aw__fault_io_injected(void) { return atomic_load(&io_injected); }

ssize_t aw__fault_read(int fd, void *buf, size_t n, bool may_short)
{
	ssize_t m = io_fault(n, may_short);
	return m < 0 ? -1 : read(fd, buf, (size_t)m);
}

ssize_t aw__fault_write(int fd, const void *buf, size_t n)
{
	ssize_t m = io_fault(n, true);
	return m < 0 ? -1 : write(fd, buf, (size_t)m);
}

ssize_t aw__fault_send(int fd, const void *buf, size_t n, int flags)
{
	ssize_t m = io_fault(n, true);
	return m < 0 ? -1 : send(fd, buf, (size_t)m, flags);
}

#endif /* AW_FAULT_INJECTION */
