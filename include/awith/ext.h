/* SPDX-License-Identifier: MIT */
/*
 * awith/ext.h — the extension API: how to write a new async resource.
 *
 * core.h is what a program uses; this header is what a library author uses
 * to turn something that has its own file descriptors (a database driver,
 * a message-queue client, a device) into awith managers and waiting calls.
 * awith's own io, http, client and pg layers are written on exactly this
 * header plus the public ones; examples/redis_client.c wraps Debian's
 * hiredis with it.
 *
 * The building blocks:
 *   - park and wake: a task parks (gives the loop its stack) until some
 *     code wakes it with a value, its own deadline passes, or it is
 *     cancelled; the code that will wake it keeps the aw_task pointer;
 *   - wait queues: FIFO lists of parked tasks (a pool's waiters, a
 *     channel's readers), with a slot for what is handed over;
 *   - fd watching: beyond aw_fd_wait (core.h), watch an fd nobody waits on,
 *     learn what arrived without a syscall, and get a callback when the
 *     peer hangs up;
 *   - error objects: build one with a message and a location, raise it,
 *     keep a reference;
 *   - error ranges: give your library's error codes messages that
 *     aw_strerror returns.
 *
 * Threading: like everything in core.h, these are for the loop's own
 * thread (aw_task_wake from another thread is not allowed: use a
 * aw_to_thread job or a queue instead). Stability: this header follows the
 * same soname policy as core.h (docs/design.md, "Versions").
 */
#ifndef AWITH_EXT_H
#define AWITH_EXT_H

#include <awith/core.h>

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* ------------------------------------------------------------------------ */
/* Park and wake                                                            */

/* What aw_task_park returns when the parker's own deadline passed (and
 * nobody woke it first). Negative, like every other non-result. */
#define AW_WAKE_TIMER (INT_MIN + 1)

/* Park the running task until aw_task_wake(t, value) (returns value), its
 * own `deadline` passes (returns AW_WAKE_TIMER, nothing raised: the caller
 * decides what a timeout means) or it is cancelled: a reachable cancel
 * scope is or becomes cancelled, or a scope's deadline passes (returns the
 * negative cancel code, already raised). Cancellation is checked before
 * parking, so a cancelled task never parks. After a timer or cancel
 * return the caller must undo its registration (leave its wait queue,
 * drop its pointer from wherever wakers look). `shielded` parks with
 * cancellation off — for waits that must finish, such as a cleanup.
 * Must be called inside a task: -AW_ENOTASK otherwise (raised). Values
 * passed to aw_task_wake should be >= 0 or a -errno code; INT_MIN + n is
 * reserved. */
int aw_task_park(aw_time deadline, bool shielded);

/* Make the parked task t runnable with `value` as aw_task_park's result.
 * A no-op unless t is parked: a task is woken at most once per park, so
 * two wakers racing is harmless (the first value wins). Never switches:
 * t runs later, from the loop. Loop thread only. */
void aw_task_wake(aw_task *t, int value);

/* The loop's clock as read at the top of its current iteration (no
 * syscall): good for deadlines of milliseconds and more. aw_now() outside
 * a loop. */
aw_time aw_loop_now(void);

/* ------------------------------------------------------------------------ */
/* Wait queues: FIFO lists of parked tasks                                  */

/* One entry, usually on the waiting task's stack. `data` carries what the
 * waker hands over (or what the waiter offers). `linked` tells whether it
 * is still on a queue: a waiter woken by aw_waitq_pop is unlinked, one
 * whose park returned a timer or cancel value may still be linked and
 * must aw_waitq_remove itself. */
struct aw_waiter {
	aw_waiter *prev, *next;
	aw_task *task;
	void *data;
	bool linked;
};

/* Append w (for task t) at the tail. */
void aw_waitq_push(aw_waitq *q, aw_waiter *w, aw_task *t);
/* Unlink w if it is linked (safe to call when it is not). */
void aw_waitq_remove(aw_waitq *q, aw_waiter *w);
/* Unlink and return the head, NULL if empty. The caller wakes w->task. */
aw_waiter *aw_waitq_pop(aw_waitq *q);
static inline bool aw_waitq_empty(const aw_waitq *q) { return q->head == NULL; }

/* ------------------------------------------------------------------------ */
/* Watching file descriptors                                                */

/* aw_fd_take_ready's bit for "the peer closed its side" (beside
 * AW_READABLE). */
#define AW_FD_HUP 4

/* Whether the loop has seen the peer of fd close its side (EPOLLRDHUP or
 * HUP). Lets a reader that got a short read wait for readiness instead of
 * reading once more only to learn nothing is left. */
bool aw_fd_peer_closed(int fd);

/* Register fd with the loop now, without waiting, so that
 * aw_fd_take_ready sees what arrives from here on. 0 or -errno. Undone by
 * aw_fd_forget / aw_fd_close (core.h), which every fd the loop has seen
 * must get before it is closed. */
int aw_fd_watch(int fd);

/* What the loop has seen of fd since the last wait on it, without waiting
 * and without a syscall: AW_READABLE if a readable edge came that no wait
 * consumed (consumed now: read until EAGAIN, or accept seeing only the
 * next edge), plus AW_FD_HUP if the peer closed its side. For an owner
 * checking an fd nobody waits on (a pool's idle connections). */
int aw_fd_take_ready(int fd);

/* Receive up to len bytes from socket fd into buf with one io_uring
 * operation (IORING_OP_RECV) and wait for it: the wait for data and the
 * read are one step in the kernel, and the loop submits it with its one
 * io_uring_enter per turn, so the task makes no system call of its own.
 * Returns 0 with *got bytes received (*got == 0: the peer closed), or a
 * negative code: -ETIMEDOUT after deadline, the cancel code when
 * cancelled, -EBADF when aw_fd_forget/aw_fd_close ran meanwhile,
 * -AW_EBUSY_WAIT if another task reads fd, the receive's -errno (all
 * raised); and -EOPNOTSUPP, not raised, when the loop does not run on
 * io_uring (aw_loop_backend): the caller then reads and waits with
 * aw_fd_wait itself.
 * Never leaves the operation behind: when the wait ends early (deadline,
 * cancellation, aw_fd_forget) the receive is cancelled
 * (IORING_OP_ASYNC_CANCEL) and this returns only after its completion, so
 * no byte lands in buf after the call returns, and no later completion
 * reaches anyone. Bytes that did land first are not lost: *got counts them
 * whatever the return code. aw_fd_forget of fd with a receive in flight
 * returns only once the kernel has let go of buf. Waits.
 * With AWITH_URING_RECV=multishot (opt-in; the default, =single, is the
 * above; a kernel before 6.0 falls back to it, saying so once) the first
 * call arms one multishot receive for fd into the loop's provided buffer
 * ring instead, and from then on the kernel receives whatever arrives for
 * fd into the ring until aw_fd_forget: a call copies queued bytes into buf
 * without waiting and waits only when none are queued. Same results; the
 * kernel never writes into buf at all, and a wait that ends early leaves
 * what arrived queued for the next call. From the first call until
 * aw_fd_forget the caller must not read fd by other means (recv(2), a TLS
 * library on fd): bytes already queued would be skipped. Take them with
 * aw_fd_recv_take, which is what awith's streams do. */
int aw_fd_recv(int fd, void *buf, size_t len, size_t *got, aw_time deadline) AW_MUST_USE;
#define aw_fd_recv(fd, buf, len, got, dl) AW__AT((aw_fd_recv)((fd), (buf), (len), (got), (dl)))

/* Accept the next connection on listening socket fd through io_uring: one
 * multishot IORING_OP_ACCEPT per listener, armed by the first call and
 * kept armed, so a busy listener costs no system call per connection. The
 * connections the kernel accepts while no task waits are queued on the
 * listener, up to a bound past which the multishot is cancelled and the
 * kernel's backlog holds the clients until the queue is drained.
 * Returns the new socket (SOCK_NONBLOCK|SOCK_CLOEXEC, as accept4 with
 * those flags), or a negative code: the accept's own -errno as accept4
 * would say it (-EMFILE, -ENFILE, ...; after the connections queued
 * before it), -ETIMEDOUT after deadline, the cancel code when cancelled (a
 * connection arriving then stays queued for the next call), -EBADF when
 * aw_fd_forget/aw_fd_close ran meanwhile, -AW_EBUSY_WAIT if another task
 * waits on fd (all raised); and -EOPNOTSUPP, not raised, when the loop
 * does not run on io_uring, the kernel has no multishot accept (before
 * 5.19), or AWITH_URING_ACCEPT=0 is set: the caller then uses accept4 and
 * aw_fd_wait. aw_fd_forget/aw_fd_close of fd closes every queued
 * connection and cancels the multishot; connections still arriving from it
 * are closed too. aw_listener_accept (io.h) uses this. Waits. */
int aw_fd_accept(int fd, aw_time deadline) AW_MUST_USE;
#define aw_fd_accept(fd, dl) AW__AT((aw_fd_accept)((fd), (dl)))
/* Stop pulling connections for listening fd: its multishot accept (see
 * aw_fd_accept) is cancelled synchronously (kernel 6.0+; before, an async
 * cancel), so the next clients stay in the listen backlog, where another
 * process sharing the socket (a graceful restart's successor) takes them.
 * Inside a task it then waits (shielded, at most 1 s) for the multishot's
 * final completion: when it returns, every connection the kernel accepted
 * for fd, those that raced the cancel too, is queued, and no more arrive.
 * Returns how many are queued (0 on epoll, when nothing was armed, or
 * when fd was closed meanwhile). The queue is kept: those clients
 * connected while we listened and are ours to serve; take them with
 * aw_fd_accept_queued (or the next aw_fd_accept, which arms the multishot
 * again). Only aw_fd_forget/aw_fd_close of fd closes what is still queued.
 * For a server that stops accepting on a listener it keeps open (the http
 * server does, at the end of its accept loop). */
int aw_fd_accept_stop(int fd);
/* Without waiting, and without arming anything: the next connection
 * already accepted for listening fd and queued (see aw_fd_accept_stop),
 * as aw_fd_accept returns it; -EAGAIN (not raised) when none is queued,
 * and always on epoll (it never takes from the kernel's backlog). */
int aw_fd_accept_queued(int fd);

/* The bytes the loop has already received for socket fd (aw_fd_recv in
 * multishot mode) and not yet handed out, without waiting and without a
 * system call: copies up to len of them into buf. Returns 0 with *got > 0
 * bytes; 0 with *got == 0 when the peer's end of file is next; -EAGAIN
 * (not raised) when nothing is queued and the kernel receives for fd
 * (aw_fd_recv waits for it); -EOPNOTSUPP (not raised) when the loop does
 * not receive for fd (epoll, AWITH_URING_RECV=single, no aw_fd_recv on fd
 * yet, or its buffer ring is dry just now): the caller reads fd itself;
 * the receive's -errno (raised once, end of file after it). A reader that
 * would read(2) fd before waiting calls this first. Does not wait. */
int aw_fd_recv_take(int fd, void *buf, size_t len, size_t *got);

/* How many bytes the loop has received for fd and not yet handed out
 * (aw_fd_recv in multishot mode; 0 otherwise): what FIONREAD on the
 * socket no longer counts. Does not wait. */
size_t aw_fd_recv_queued(int fd);

/* Send len bytes from buf on socket fd through io_uring (IORING_OP_SEND,
 * MSG_NOSIGNAL) and wait until all of them went: the loop submits the
 * send with its one io_uring_enter per turn, batched with every other
 * task's sends and receives, so the task makes no system call of its
 * own; a short send is continued until len bytes went. The twin of
 * aw_fd_recv, with the same contract: returns 0 with *sent == len, or a
 * negative code with *sent the bytes that did go (they went, whatever the
 * code): -ETIMEDOUT after deadline (a peer that stops reading), the
 * cancel code when cancelled, -EBADF when aw_fd_forget/aw_fd_close ran
 * meanwhile, -EBUSY if fd has a send of aw_fd_send_start in flight,
 * -AW_EBUSY_WAIT if another task waits for fd to be writable, the send's
 * -errno (-EPIPE, -ECONNRESET ...) (all raised); and -EOPNOTSUPP, not
 * raised, when the loop does not run on io_uring: the caller then sends
 * and waits with aw_fd_wait itself. When the wait ends early the send is
 * cancelled (IORING_OP_ASYNC_CANCEL) and this returns only after the
 * kernel has let go of buf: no byte of buf is read after the call returns.
 * Waits. */
int aw_fd_send(int fd, const void *buf, size_t len, size_t *sent, aw_time deadline) AW_MUST_USE;
#define aw_fd_send(fd, buf, len, sent, dl) AW__AT((aw_fd_send)((fd), (buf), (len), (sent), (dl)))

/* aw_fd_send in two halves, for a buffered writer that goes on while the
 * bytes go out (awith's streams): aw_fd_send_start queues the send of
 * buf[0, len) on socket fd and returns at once; the SQE is made just
 * before the loop's next io_uring_enter. buf must stay valid and its
 * first len bytes unchanged until aw_fd_send_finish has returned.
 * Calling it again while the send is in flight with the same buf and a
 * larger len extends it (bytes appended behind the first ones go out in
 * the same send if it has not reached the kernel yet, else right after
 * it). Returns 0; -EOPNOTSUPP (not raised) when the loop does not run on
 * io_uring; -EBUSY if a send of fd with another buf or a smaller len is
 * in flight or finished but not yet collected with aw_fd_send_finish;
 * -EINVAL (buf NULL), -ENOMEM, -EBADF, -AW_ENOTASK (raised). len 0 with no send in flight:
 * nothing happens. Does not wait. */
int aw_fd_send_start(int fd, const void *buf, size_t len);

/* Whether fd has a send of aw_fd_send_start that has not completed yet
 * (so aw_fd_send_finish would wait), or that a task waiting in
 * aw_fd_send_finish is about to collect (only that task may: another
 * gets -AW_EBUSY_WAIT, and aw_fd_send_start -EBUSY). No system call. */
bool aw_fd_sending(int fd);

/* Collect fd's send started with aw_fd_send_start, waiting for it if it
 * is still in flight, under aw_fd_send's contract (the same codes, *sent
 * the bytes that went, the send cancelled and the kernel done with the
 * buffer before this returns when the wait ends early). Once it returns
 * the buffer is the caller's again and fd has no send in flight. No send
 * started: 0 with *sent 0. Waits (only while the send is in flight). */
int aw_fd_send_finish(int fd, size_t *sent, aw_time deadline) AW_MUST_USE;
#define aw_fd_send_finish(fd, sent, dl) AW__AT((aw_fd_send_finish)((fd), (sent), (dl)))

/* File operations through io_uring. A regular file is always "ready", so
 * epoll cannot wait for one and disk I/O otherwise goes to the thread pool
 * (aw_to_thread); on the io_uring backend the kernel does it instead: the
 * loop submits the operation with its one io_uring_enter per turn and the
 * task parks until the completion (a read from the page cache completes in
 * that same system call; what must block runs in the kernel's own io-wq
 * workers). The io layer's aw_file_* calls are built on this. */
enum aw_fileop_kind {
	AW_FILEOP_OPEN = 1,  /* openat(AT_FDCWD, path, flags, mode): res = the new fd */
	AW_FILEOP_READ,      /* read up to len bytes into buf at offset off
	                        (off -1: at the file position, which advances,
	                        as read(2) for FIFOs): res = the count, 0 at EOF */
	AW_FILEOP_WRITE,     /* write up to len bytes of buf at off (-1: at the
	                        file position): res = the count (may be short) */
	AW_FILEOP_FSYNC,     /* fsync(fd): res = 0 */
	AW_FILEOP_CLOSE,     /* close(fd): res = 0 */
	AW_FILEOP_RENAME,    /* rename(path, path2): res = 0 */
	AW_FILEOP_UNLINK,    /* unlink(path): res = 0 */
};
typedef struct aw_fileop {
	int kind;            /* AW_FILEOP_* */
	int fd;              /* READ, WRITE, FSYNC, CLOSE */
	void *buf;           /* READ (written into), WRITE (read from) */
	size_t len;          /* READ, WRITE: at most UINT_MAX bytes per op */
	int64_t off;         /* READ, WRITE */
	const char *path;    /* OPEN, RENAME (from), UNLINK */
	const char *path2;   /* RENAME (to) */
	int flags;           /* OPEN */
	unsigned mode;       /* OPEN with O_CREAT */
	bool shielded;       /* in: run to the end whatever happens to the task */
	/* out */
	int res;             /* the result: >= 0, or -errno (not raised) */
	bool cancelled;      /* shielded: the task was cancelled meanwhile */
} aw_fileop;

/* Waits: run op on the loop's io_uring and wait for its completion.
 * Returns 0 when it completed: op->res is the system call's result, an
 * error in it is -errno NOT raised (the caller words the message, as after
 * a system call). Other returns: -EOPNOTSUPP (not raised) when the loop
 * does not run on io_uring (aw_loop_backend): the caller does the work
 * another way; -EINVAL (raised) for an unknown kind or len > UINT_MAX;
 * -AW_ENOTASK; and the cancel code (raised) when the task was cancelled
 * or its scope's deadline passed while op was in flight — then op was
 * cancelled (IORING_OP_ASYNC_CANCEL) and this returned only after its
 * completion, waiting shielded as long as the kernel still held buf (a
 * regular-file read already in an io-wq worker cannot be stopped: the wait
 * lasts as long as that read), so nothing is written into buf after the
 * return and no later completion reaches anyone; op->res is what the
 * kernel had reached (bytes that did land count), except that an OPEN that
 * completed anyway has its fd closed here (res -ECANCELED). With
 * op->shielded the operation is never cancelled and the call never returns
 * the cancel code: op->cancelled says the task was cancelled meanwhile
 * (nothing raised; its next wait reports it) — for writes, which are not
 * cut short at a random point. Each completed operation counts in the
 * metric awith_io_uring_file_ops_total. */
int aw_fileop_run(aw_fileop *op) AW_MUST_USE;
#define aw_fileop_run(op) AW__AT((aw_fileop_run)(op))

/* Call fn(arg) from the loop when it first sees the peer of fd hang up
 * (EPOLLRDHUP, HUP or ERR), whether or not a task waits on fd. fn runs in
 * the loop, not in a task: it must not wait (typically it cancels or wakes
 * a task). Registers fd as aw_fd_watch. One hook per fd; fn NULL removes
 * it; aw_fd_forget drops it. 0 or -errno. */
int aw_fd_on_hup(int fd, void (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Error objects                                                            */

/* Build an error (not raised): code is a negative errno or AW_E* code,
 * loc where it happened (AW_HERE, or a location recorded by a public call;
 * may be NULL), the message printf-formatted (NULL fmt: aw_strerror's
 * text). NULL when out of memory: aw_error_raise_obj(NULL) then raises
 * the shared "out of memory" error, and aw_error_hold / aw_error_free
 * accept NULL, so the result can be passed on unchecked. */
aw_error *aw_error_new(const aw_loc *loc, int code, const char *fmt, ...) AW_PRINTF(3, 4);

/* Raise a built error on the running task (or the thread, outside a
 * task), taking the reference the caller holds: what aw_raise does after
 * building one. Lets a resource keep an error (say, why a pool is down)
 * and raise it to every caller: aw_error_hold first, once per raise.
 * Replaces an error in flight that nobody handled (reported as dropped
 * with debug_errors on). */
void aw_error_raise_obj(aw_error *e);

/* Take one more reference to e (NULL: nothing). aw_error_free drops one. */
void aw_error_hold(aw_error *e);

/* ------------------------------------------------------------------------ */
/* Error code ranges                                                        */

/* Each layer (and each library built on this header) owns a range of
 * AW_ERANGE_SIZE codes starting at a multiple of AW_ERANGE_SIZE: core
 * 0x4000 (core.h), io 0x4100 (io.h), http 0x4200, client 0x4300, pg 0x4400
 * (pg.h). 0x4800 .. 0x7fff is for libraries outside awith: pick a base
 * there, name it in your header, and register it once. */
#define AW_ERANGE_SIZE 0x100
#define AW_ERANGE_USER 0x4800

/* The message for one code of the range (code positive, within the
 * range), or NULL if the range has no such code. */
typedef const char *aw_strerror_fn(int code);

/* Make aw_strerror answer for codes [base, base + AW_ERANGE_SIZE) with
 * fn; `name` names the range's owner (a static string, for diagnostics).
 * Registering the same base with the same fn again is a no-op (0); base
 * not a multiple of AW_ERANGE_SIZE, below AW_EBASE, above 0x7fff, or
 * taken by another fn: -EINVAL / -EEXIST. Up to 32 ranges; -ENOSPC past
 * that. Thread-safe; meant for a constructor or the start of main. */
int aw_error_range_register(int base, const char *name, aw_strerror_fn *fn);

/* ------------------------------------------------------------------------ */
/* Small helpers for manager implementations                                */

/* The struct of type T whose member m is at p: the manager's ops get the
 * aw_mgr pointer, embedded in the resource's own struct. */
#define AW_CONTAINER_OF(p, T, m) ((T *)(void *)((char *)(p) - offsetof(T, m)))

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
