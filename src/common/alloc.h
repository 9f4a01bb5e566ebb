/* SPDX-License-Identifier: MIT */
/*
 * The library's allocations and the syscalls we inject faults into.
 *
 * Every allocation in src/ goes through aw__malloc, aw__calloc, aw__realloc,
 * aw__strdup, aw__strndup, aw__asprintf and aw__vasprintf (free stays free),
 * the task stack mmap asks aw__fault_mmap() first, and the stream's plain
 * fd transport calls aw__fault_read/aw__fault_write/aw__fault_send.
 *
 * In a normal build these are the libc functions themselves (macros: no
 * call, no cost). With the meson option fault_injection (AW_FAULT_INJECTION)
 * they are src/core/fault.c's counting wrappers, driven by environment
 * variables (docs/design.md, "Fault injection"):
 *   AW_FAULT_ALLOC_FAIL=N  the Nth allocation of the process fails (NULL,
 *                          errno ENOMEM; the stack mmap counts as one)
 *   AW_FAULT_COUNT=1       print "awith-fault: <n> allocations" at exit
 *   AW_FAULT_IO_SHORT=N    every Nth read/write moves half the bytes
 *                          (reads: not on sockets, see aw__fault_read)
 *   AW_FAULT_IO_EINTR=N    every Nth read/write fails with EINTR first
 */
#ifndef AW_CORE_ALLOC_H
#define AW_CORE_ALLOC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if AW_FAULT_INJECTION
/* Defined in libawith-core (fault.c) and, in this build only, exported
 * from it: every layer's library counts against the one process-wide
 * allocation counter. tests/check_exports.sh accepts exactly these names
 * in a fault-injection build; a normal build exports none of them. */
#pragma GCC visibility push(default)
void *aw__malloc(size_t n);
void *aw__calloc(size_t n, size_t size);
void *aw__realloc(void *p, size_t n);
char *aw__strdup(const char *s);
char *aw__strndup(const char *s, size_t n);
int aw__vasprintf(char **out, const char *fmt, va_list ap);
int aw__asprintf(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True: this stack mapping is to fail (counted as an allocation). */
bool aw__fault_mmap(void);
/* may_short: a short read may be injected. Not for stream sockets: the
 * stream takes a short read there as "the socket is empty now" (Linux TCP
 * and Unix stream sockets return less than asked only then), so an
 * injected one would model a kernel that does not exist. EINTR may be. */
ssize_t aw__fault_read(int fd, void *buf, size_t n, bool may_short);
ssize_t aw__fault_write(int fd, const void *buf, size_t n);
ssize_t aw__fault_send(int fd, const void *buf, size_t n, int flags);
#pragma GCC visibility pop
#else
#define aw__malloc malloc
#define aw__calloc calloc
#define aw__realloc realloc
#define aw__strdup strdup
#define aw__strndup strndup
#define aw__vasprintf vasprintf
#define aw__asprintf asprintf
#define aw__fault_mmap() false
#define aw__fault_read(fd, buf, n, may_short) read((fd), (buf), (n))
#define aw__fault_write write
#define aw__fault_send send
#endif

#endif
