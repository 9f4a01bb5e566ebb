/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of the core layer, shared by the files in src/core/
 * only. Not installed. The other layers (io, http, client, pg) are built on
 * the public headers plus awith/ext.h (park and wake, wait queues, fd
 * watching, error objects), like any library outside awith would be.
 */
#ifndef AW_CORE_INTERNAL_H
#define AW_CORE_INTERNAL_H

#include "awith/core.h"
#include "awith/ext.h"
#include "../common/alloc.h"
#include "../common/util.h"
#include "context.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#if defined(__SANITIZE_ADDRESS__)
#define AW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define AW_ASAN 1
#endif
#endif
#ifndef AW_ASAN
#define AW_ASAN 0
#endif


typedef struct aw_loop aw_loop;

/* ---- stacks (stack.c) --------------------------------------------------- */

/* A guarded stack mapping: [guard page][usable ... hi). The owning coroutine
 * record (aw_coro, or the whole aw_task) sits at the top of the usable area,
 * so a task costs one mapping and, while idle, usually one touched page. */
typedef struct aw_stack {
	void *map;        /* mmap base (the guard page) */
	size_t map_size;  /* whole mapping */
	void *lo;         /* lowest usable address (just above the guard) */
	unsigned vg_id;   /* Valgrind stack id, 0 if none */
} aw_stack;

/* Get a mapping with at least `size` usable bytes: from the loop's cache if
 * size is the loop's default, else a fresh mmap. Returns the usable top
 * (highest address, exclusive) or NULL with errno = ENOMEM. */
void *aw_stack_get(aw_loop *loop, size_t size, aw_stack *out);
/* Give a mapping back (to the cache if it has the default size and the
 * cache has room, else munmap). */
void aw_stack_put(aw_loop *loop, aw_stack *s);
/* Drop every cached stack. */
void aw_stack_cache_drain(aw_loop *loop);
/* Install the SIGSEGV handler (on an alternate signal stack) that names the
 * task whose guard page was hit. Per thread; idempotent. */
void aw_stack_overflow_handler_install(aw_loop *loop);
void aw_stack_overflow_handler_remove(aw_loop *loop);

/* ---- coroutines ---------------------------------------------------------- */

/* A context of execution: a task's main stack, a generator's stack, or the
 * loop's own (thread) stack. */
typedef struct aw_coro {
	aw_ctx ctx;
	aw_stack stack;
	void *lo;                /* lowest usable address (for ASan) */
	size_t size;             /* usable size */
	void *asan_fake;         /* ASan fake stack save slot */
	struct aw_coro *parent;  /* generator: the context that entered it */
	bool dead;               /* will never be resumed again */
} aw_coro;

/* Switch from the running coroutine `from` to `to`, with the sanitizer
 * annotations. Returns when something switches back to `from`. */
void aw_coro_switch(aw_coro *from, aw_coro *to);
/* First call on a fresh coroutine's stack (sanitizer bookkeeping, freeing
 * the stack of a task that just ended). */
void aw_coro_started(aw_loop *loop);

/* End the loop's parked generator runners and give their stacks back
 * (gen.c); at loop end, while aw__loop is still set. */
void aw__gen_runners_drain(aw_loop *loop);

/* ---- timers (timer.c): a binary min-heap --------------------------------- */

typedef struct aw_timer aw_timer;
struct aw_timer {
	aw_time when;
	size_t idx;              /* position in the heap; SIZE_MAX if not armed */
	void (*fire)(aw_timer *t);
};
typedef struct aw_timer_heap {
	aw_timer **v;
	size_t len, cap;
} aw_timer_heap;

void aw_timer_init(aw_timer *t, void (*fire)(aw_timer *));
static inline bool aw_timer_armed(const aw_timer *t) { return t->idx != SIZE_MAX; }
/* Arm (or re-arm) t at `when`. -ENOMEM if the heap cannot grow. */
int aw_timer_arm(aw_timer_heap *h, aw_timer *t, aw_time when);
void aw_timer_disarm(aw_timer_heap *h, aw_timer *t);
/* Earliest deadline, AW_NEVER if none. */
aw_time aw_timer_next(const aw_timer_heap *h);
/* Disarm and fire every timer due at `now`, earliest first. Timers that
 * became due after `since` (the previous run) count their lateness, now -
 * when, in the loop-lag histogram; one already due at the previous run was
 * armed in the past, so its lateness says nothing about the loop. */
void aw_timer_run(aw_timer_heap *h, aw_time now, aw_time since);
void aw_timer_heap_free(aw_timer_heap *h);

/* ---- the poll backend (backend.c picks one: backend_epoll.c,
 * backend_uring.c) --------------------------------------------------------- */

/* Both backends keep the same contract: each fd is registered once for
 * edge-triggered read+write readiness (plus the peer's half close), the
 * loop keeps the readiness bits (loop.c), and a poll reports each event
 * with the `data` the fd was added with. Only the loop thread calls them. */
enum { AW_BACKEND_KIND_EPOLL = 1, AW_BACKEND_KIND_URING = 2 };
struct aw_uring;
typedef struct aw_backend {
	int kind;                /* AW_BACKEND_KIND_*; 0 before init */
	int fd;                  /* the epoll fd (epoll only) */
	struct aw_uring *uring;  /* the ring (io_uring only) */
	struct aw_recvq *recvq;  /* its provided buffer ring for receives
	                            (recv_ring.c), set up at the first one */
	size_t ops;              /* operations in flight (io_uring only): a
	                            loop with a task waiting for one is not
	                            deadlocked */
} aw_backend;

/* One io_uring operation. A receive (aw_fd_recv) lives on its waiting
 * task's stack: that call never returns before `done`, so the record and
 * the buffer outlive the kernel's use of them. A send (aw_fd_send_start,
 * fd_send.c) belongs to its fd's aw_fdstate (heap: the fd table moves);
 * nobody need wait for it, so its completions are handled in the loop:
 * a short send is continued from buf + sent until len bytes went. */
typedef struct aw_acceptq aw_acceptq;   /* accept_uring.c */
typedef struct aw_backend_op {
	aw_task *task;           /* woken (value 0) when done; NULL: nobody waits */
	int res;                 /* the completion's result (a send: 0 or -errno) */
	bool done;
	/* sends only */
	bool is_send;
	bool queued;             /* on the ring's list: its SQE is made at the
	                            next poll (writes of the same turn extend it) */
	bool in_kernel;          /* an SQE of it is in the kernel */
	bool stop;               /* cancelled: do not continue a short send */
	bool poll_first;         /* the kernel said EAGAIN: wait for room first */
	bool orphan;             /* its fd was forgotten: freed at completion */
	bool forgotten;          /* aw_fd_forget ran: the waiter gets -EBADF */
	int fd;
	const char *buf;
	size_t len, sent;        /* bytes to send from buf; bytes gone so far */
	struct aw_backend_op *next;   /* the ring's list of queued sends */
} aw_backend_op;
/* Start the backend the choice (aw_backend_choice, DEFAULT resolved from
 * AWITH_BACKEND) names; AUTO falls back to epoll and says why once per
 * process on `log`. 0 or a negative code (with the reason on `log`). */
int aw_backend_init(aw_backend *b, int choice, FILE *log);
void aw_backend_fini(aw_backend *b);
/* Register fd for edge-triggered read+write readiness with `data`. */
int aw_backend_add(aw_backend *b, int fd, uint64_t data);
/* Stop watching fd. Called before the fd is closed; no event for this
 * registration is reported after it (an io_uring poll still in flight is
 * removed, and its completions are dropped by generation). */
int aw_backend_del(aw_backend *b, int fd);
/* Wait up to `timeout` ns (-1 forever, 0 poll) and call on_ready(ctx, data,
 * readable, writable, hup) for each event; hup: the peer closed its side
 * (or the fd is in error). Returns events seen, or -errno. */
typedef void aw_backend_ready_fn(void *ctx, uint64_t data, bool rd, bool wr, bool hup);
int aw_backend_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx);
const char *aw_backend_name(const aw_backend *b);

/* The two implementations (same contracts as above). */
int aw_epoll_init(aw_backend *b);
void aw_epoll_fini(aw_backend *b);
int aw_epoll_add(aw_backend *b, int fd, uint64_t data);
int aw_epoll_del(aw_backend *b, int fd);
int aw_epoll_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx);
#if AW_HAVE_IO_URING
/* 0, or the kernel's refusal (-ENOSYS, -EPERM, -ENOMEM ...) from
 * io_uring_setup; *why names it for the log. */
int aw_uring_init(aw_backend *b, const char **why);
void aw_uring_fini(aw_backend *b);
int aw_uring_add(aw_backend *b, int fd, uint64_t data);
int aw_uring_del(aw_backend *b, int fd);
int aw_uring_poll(aw_backend *b, aw_time timeout, aw_backend_ready_fn *on_ready, void *ctx);
/* Queue a receive of up to len bytes from socket fd into buf; the
 * completion sets op->res and op->done and wakes op->task. 0 or -errno. */
int aw_uring_recv(aw_backend *b, int fd, void *buf, size_t len, aw_backend_op *op);
/* Queue file operation f (ext.h's aw_fileop: its kind's SQE) with op's
 * completion: the same as aw_uring_recv's. 0, -EINVAL (unknown kind) or
 * -EAGAIN (no SQE). */
int aw_uring_fileop(aw_backend *b, const aw_fileop *f, aw_backend_op *op);
/* Ask the kernel to cancel op (IORING_OP_ASYNC_CANCEL); its completion
 * still comes (with -ECANCELED, or the result it had reached). sync: also
 * wait in the kernel until op has finished with its buffer (for
 * aw_fd_forget, which must not return while the kernel may still write
 * into a buffer its caller is about to free). Returns true when the kernel
 * has let go of op's buffer already (sync and the kernel could say so).
 * A send also stops being continued, and one still queued goes into the
 * kernel first (what the socket takes at once is sent). */
bool aw_uring_cancel(aw_backend *b, aw_backend_op *op, bool sync);
/* Queue a send of op->buf[op->sent .. op->len) on op->fd (MSG_NOSIGNAL):
 * its SQE is made at the next aw_uring_poll, with the turn's other SQEs,
 * so op->len may still grow until then. The completion continues a short
 * send; when everything went, or on an error or a cancel, op->res and
 * op->done are set and op->task (if any) is woken. */
void aw_uring_send(aw_backend *b, aw_backend_op *op);
/* Arm one multishot IORING_OP_ACCEPT on listening fd (accepted sockets
 * SOCK_NONBLOCK|SOCK_CLOEXEC, as accept4 gets them); each completion goes
 * to aw__accept_complete(q, ...) until one comes without
 * IORING_CQE_F_MORE. 0 or -EAGAIN (no SQE). */
int aw_uring_accept_arm(aw_backend *b, int fd, aw_acceptq *q);
/* Ask the kernel to end q's multishot accept (IORING_OP_ASYNC_CANCEL);
 * its final completion (-ECANCELED, no F_MORE) still comes. sync (kernel
 * 6.0+): return only once the kernel has stopped accepting for q (the
 * completions are then in the ring for the next poll). */
void aw_uring_accept_cancel(aw_backend *b, aw_acceptq *q, bool sync);
/* accept_uring.c: one completion of q's multishot accept: res is an
 * accepted fd or -errno; without IORING_CQE_F_MORE the multishot has
 * ended. fini: the ring is going away (no task is woken). */
void aw__accept_complete(aw_acceptq *q, int res, unsigned flags, bool fini);

/* backend_uring.c, for recv_ring.c: the ring, and a free SQE (NULL when
 * the SQ is full even after a submit); and cancelling a request. */
struct io_uring;
struct io_uring_sqe;
struct io_uring *aw__uring_ring(aw_backend *b);
struct io_uring_sqe *aw__uring_sqe(aw_backend *b);
/* Cancel the request whose user_data is ud, for every io_uring user of
 * the backend (operations, accepts, multishot receives).
 * aw__uring_cancel_sync: submits what is queued (the request may still be
 * in the SQ), then IORING_REGISTER_SYNC_CANCEL (kernel 6.0+); true when
 * the request is gone (or already was): the kernel has let go of its
 * buffers and its last completions are in the ring. false: the kernel
 * could not say; queue an asynchronous cancel and wait for the completion.
 * aw__uring_cancel_async: queues IORING_OP_ASYNC_CANCEL (its own
 * completion ignored); false when no SQE could be had. */
bool aw__uring_cancel_sync(aw_backend *b, uint64_t ud);
bool aw__uring_cancel_async(aw_backend *b, uint64_t ud);
/* user_data of a multishot receive: the tag, a per-arm serial (bits
 * 32..61) and the fd (bits 0..31). */
#define AW_URING_RECV_TAG (UINT64_C(3) << 62)
/* recv_ring.c: multishot receives into the loop's provided buffer ring
 * (AWITH_URING_RECV=multishot). aw__recvq_recv is aw_fd_recv's path when
 * on: the same contract, or -EOPNOTSUPP (not raised) when this receive
 * goes as a single IORING_OP_RECV (mode off, kernel without, ring dry).
 * Called by aw_fd_recv only, after its checks: fd is in l->fds and no
 * task waits to read it. */
bool aw__recv_multishot_wanted(void);
int aw__recvq_recv(aw_loop *l, int fd, void *buf, size_t len, size_t *got, aw_time deadline);
void aw__recvq_complete(aw_backend *b, uint64_t ud, int res, unsigned flags);
/* aw_fd_forget's part: fd's queued buffers go back, its multishot is
 * cancelled (asynchronously: the kernel never writes the caller's memory). */
void aw__recvq_forget(aw_loop *l, int fd);
/* After io_uring_queue_exit: frees the buffer ring and the queues. */
void aw__recvq_fini(aw_backend *b);
#endif

/* ---- tasks ---------------------------------------------------------------- */

enum { AW_TASK_READY, AW_TASK_RUNNING, AW_TASK_PARKED, AW_TASK_DONE };

/* Wake values that are not results handed over by a waker. */
/* AW_WAKE_TIMER (the park's own deadline passed): awith/ext.h. */
#define AW__WAKE_CANCEL (INT_MIN + 2)  /* a reachable scope was cancelled */

struct aw_task {
	aw_coro coro;            /* the task's own stack (first: see stack.c) */
	aw_coro *cur;            /* context to resume: coro, or a generator's */
	aw_loop *loop;
	int state;
	aw_task *next_ready;
	aw_task_fn fn;
	void *arg;
	int result;
	uint64_t id;
	char name[32];

	/* What the block statement touches, also seen from core.h as
	 * aw__task_hot (same fields, same order) so that AW_WITH's common
	 * case is inline in the caller. */
	union {
		aw__task_hot hot;
		struct {
			aw_with *withs;  /* innermost block (ledger) */
			aw_with *cleanup;/* innermost block whose exits are running */
			aw_error *err;   /* in flight, or NULL */
			uint64_t raises; /* raise counter: serials */
			aw_scope *scope; /* innermost cancel scope */
			const aw_time *now; /* the loop's cached time */
			aw_task *self;
			unsigned cancels; /* cancelled scopes on the chain (hint) */
			aw_time limit;   /* earliest deadline on the scope chain */
		};
	};
	aw_scope root;           /* the task's own scope: aw_task_cancel */

	/* parking */
	int wake;                /* value handed by the waker */
	aw_time park_deadline;   /* the waiter's own deadline */
	const aw_loc *where;     /* where it waits (or last waited) */
	aw_time parked_at;       /* loop time when it last parked (ledger) */
	aw_timer timer;
	bool park_shielded;      /* parked with cancellation off */

	/* joining */
	aw_task *joiner;
	bool detached;

	/* group membership */
	aw_group *group;
	aw_group *waiting_group; /* group whose exit this task waits in */
	aw_task *group_prev, *group_next;

	/* every live task of the loop */
	aw_task *all_prev, *all_next;

	/* tracing (trace.c): the current context (NULL: none), and the copy
	 * a task spawned from a traced task starts with (tracestate owned) */
	aw_trace *trace;
	aw_trace trace_inherited;
	char *trace_state;

	/* log context fields (aw_log_context_set), freed when the task ends */
	struct aw_log_ctx *logctx;
};

/* trace.c: give a new task a copy of the spawner's context (if any). */
void aw__trace_inherit(aw_task *child, const aw_task *parent);
/* trace.c: free what aw__trace_inherit allocated. */
void aw__trace_release(aw_task *t);

/* log.c: free a task's (or thread's) log context fields. */
void aw__log_context_free(struct aw_log_ctx **ctx);

/* Wait lists (aw_waiter, aw_waitq_*): awith/ext.h. */

/* ---- the loop -------------------------------------------------------------- */

typedef struct aw_fdstate {
	aw_task *reader, *writer;
	aw_backend_op *read_op;  /* the reader's io_uring receive in flight */
	aw_backend_op *send_op;  /* the fd's io_uring send (fd_send.c), kept for reuse */
	aw_acceptq *accept_q;    /* a listener's multishot accept (accept_uring.c) */
	bool registered, readable, writable;
	bool hup;                /* sticky: the peer closed its side */
	void (*on_hup)(void *arg); /* aw_fd_on_hup */
	void *hup_arg;
} aw_fdstate;

/* aw_fd_peer_closed, aw_fd_watch, aw_fd_take_ready, aw_fd_on_hup: awith/ext.h. */

/* loop.c: fd's state in the loop's table (grown as needed). 0 or -errno. */
int aw__fd_state(aw_loop *l, int fd, aw_fdstate **out);
/* loop.c: the loop's readiness callback (for a poll outside iterate). */
void aw__on_ready(void *ctx, uint64_t data, bool rd, bool wr, bool hup);
/* fd_send.c: aw_fd_forget's part: the kernel lets go of fd's send buffer
 * before this returns; the send record is detached from fd's state (the
 * table may have moved when it returns). */
void aw__fd_send_forget(aw_loop *l, int fd);
/* accept_uring.c: aw_fd_forget's part: queued connections are closed and
 * the multishot cancelled; what it still delivers is closed too. */
void aw__fd_accept_forget(aw_loop *l, int fd);
/* accept_uring.c: the loop's end (after the ring's): close the queued
 * connections of a listener never closed, and free its queue. */
void aw__fd_accept_free(aw_acceptq *q);

typedef struct aw_threadpool aw_threadpool;

struct aw_loop {
	aw_config cfg;
	aw_coro main;            /* the thread's own stack: runs the loop */
	aw_task *running;        /* task running now, NULL in the loop */
	aw_task *ready_head, *ready_tail;
	unsigned budget;         /* direct task-to-task switches left before the
	                            loop polls again (fairness with I/O) */
	aw_time now;             /* cached at each loop iteration */
	aw_timer_heap timers;
	aw_backend backend;
	aw_fdstate *fds;
	size_t nfds;

	int wake_fd;             /* eventfd: other threads wake the loop */
	atomic_int dump_requested;   /* set by the dump signal (any thread) */

	aw_task *all;            /* every live task */
	size_t ntasks;
	size_t nparked;          /* tasks in aw_task_park (the metrics' gauge) */
	size_t published_tasks, published_parked; /* as last set in the gauges */
	aw_time timers_run_at;   /* when aw_timer_run last looked (loop lag) */
	uint64_t next_id;
	aw_task *zombie;         /* finished task whose stack is freed next */

	aw_stack *stack_cache;   /* free stacks (array) */
	size_t stack_cache_len;
	struct aw_gen_runner *gen_runners; /* parked generator runners (gen.c) */
	unsigned gen_runners_len;

	aw_ledger_entry *ledger; /* open manual entries */
	size_t ledger_len;

	aw_error *thread_err;    /* error raised outside any task */
	uint64_t thread_raises;

	aw_threadpool *pool;

	/* slow-step watchdog (watchdog.c): the loop thread publishes a switch
	 * counter; the watchdog thread flags a step that runs too long. */
	_Atomic uint64_t switches;
	_Atomic int in_poll;     /* the loop thread is in the backend's poll */
	_Atomic int slow_flag;
	aw_time slow_since;      /* loop thread: when the flagged step began */
	const aw_loc *slow_resumed_at;
	pthread_t watchdog;
	bool watchdog_running;
	_Atomic int watchdog_stop;

	void *altstack;          /* for the overflow handler */
	bool stopping;

	/* Recent slow steps and deadlock reports for aw_ledger_visit
	 * (snapshot.c): a ring of the last AW_LOOP_EVENTS. */
	struct aw_loop_event_rec {
		int kind;
		aw_time at, duration;
		char task[32];
		const aw_loc *resumed_at, *waits_at;
		char text[240];
	} events[AW_LOOP_EVENTS];
	unsigned events_next;    /* total recorded (ring index = n % size) */
	char slow_name[32];      /* the running task's name when it was renamed
	                            during a flagged slow step ("" if not) */
	uint64_t slow_steps;
	aw_gauge_source *gauges; /* aw_gauge_source_add */
};

extern __thread aw_loop *aw__loop;

static inline aw_task *aw__current(void)
{
	aw_loop *l = aw__loop;
	return l ? l->running : NULL;
}

/* aw_task_wake, aw_task_park: awith/ext.h. */
/* Append a READY/RUNNING task to the ready queue. */
void aw_task_enqueue(aw_loop *loop, aw_task *t);

/* The cancel code that waits of the running task currently get (0 if none):
 * the outermost cancelled scope reachable from the innermost one, stopping
 * at shields and at the running cleanup's boundary. Also marks scopes whose
 * deadline has passed as cancelled. */
int aw_scope_pending_cancel(aw_task *t, aw_time now, aw_scope **origin, aw_time *next_deadline);
/* A shield with its own deadline (scope.c); the public form is
 * aw_shield_init (shield.c), which has none. */
aw_mgr *aw_shield(aw_scope *s, aw_time deadline);
/* Like aw_scope_pending_cancel but from scope `from` outward, ignoring the
 * cleanup boundary (for a group exit, which must see scopes around it):
 * the outermost cancelled scope or NULL; *next_deadline the earliest
 * deadline still ahead. */
aw_scope *aw_scope_outer_cancelled(aw_task *t, aw_scope *from, aw_time now, aw_time *next_deadline);
/* A scope around a group whose exit is waiting was cancelled: cancel the
 * children, and make the exit report that scope's cancellation. */
void aw__group_outer_cancel(aw_group *g, aw_scope *origin);
/* Raise the error a wait gets from a cancelled scope (origin) or, with
 * origin NULL, from the grace deadline. Returns code. */
int aw__raise_cancel(aw_task *t, int code, aw_scope *origin);
/* Re-evaluate a parked task after a scope change: wake it with
 * AW__WAKE_CANCEL if a reachable scope is now cancelled. */
void aw_scope_poke(aw_task *t);
/* Push s (filled in by the caller) as t's innermost scope / pop it again,
 * keeping the task's chain limit and cancel count (the hints AW_WITH's
 * inline exit reads) right. */
void aw__scope_push(aw_task *t, aw_scope *s);
void aw__scope_pop(aw_task *t, aw_scope *s);
/* Mark s cancelled with code (idempotent), counting it on its task. */
void aw__scope_mark(aw_scope *s, int code);
/* The cancellation an exit of the running cleanup or block owes: the code a
 * wait would get now (0 if none), raised on t with its origin when `raise`
 * is set and nothing with that code is in flight. */
int aw__cancel_owed(aw_task *t, bool raise);
/* The cheap test first (the hints AW_WITH's inline exit reads): false means
 * no cancellation can be owed. */
static inline bool aw__cancel_maybe(const aw_task *t)
{
	return t && (t->cancels || t->limit <= *t->now);
}
/* error.c: free an error the machinery drops without it having been
 * handled or passed on; reported once per raise site when the loop's
 * debug_errors is set. */
void aw__error_drop(aw_error *e);
/* Put an error taken with aw_error_take back in flight as it was (same
 * serial: blocks entered since do not take it for one of theirs). */
void aw__error_restore(aw_error *e);

/* Errors (aw_error_new, aw_error_raise_obj, aw_error_hold: awith/ext.h) */
/* Error slot of the running task or of the thread. */
aw_error **aw__err_slot(uint64_t **raises);
/* with.c: run one exit function with `err` passing through, and apply its
 * return value (propagate / suppress / replace, with the cause chain) to
 * the error in flight. `name` names the manager in made-up messages. Must
 * run between aw__cleanup_begin/end. Returns the error that goes on. */
int aw__run_exit(int (*exit_fn)(void *ctx, int err), void *ctx, const char *name, int err);
/* The second half of aw__run_exit, for callers that called the exit
 * themselves: apply its return value rc to the error in flight (*slot).
 * held: a reference to the error handed to the exit (err != 0); prior: a
 * reference to an error from before the block (err == 0); before: the raise
 * counter before the exit ran. Consumes both references. */
int aw__exit_apply(aw_error **slot, const char *name, int err, aw_error *held, aw_error *prior,
		   uint64_t before, int rc);
/* Enter / leave shielded cleanup (the exits of a block). t may be NULL. */
void aw__cleanup_begin(aw_task *t, aw_with *w);
void aw__cleanup_end(aw_task *t, aw_with *w);

/* Task lifetime internals (task.c) */
void aw_task_free(aw_loop *loop, aw_task *t);
/* Called when a task that belongs to a group finishes (group.c). */
void aw__group_child_done(aw_task *t);

/* Threadpool (threadpool.c) */
void aw_threadpool_shutdown(aw_loop *loop);
/* Jobs submitted and not yet delivered back (a loop with nothing else to
 * wait for is not deadlocked while this is non-zero). */
size_t aw_threadpool_inflight(aw_loop *loop);
/* Loop calls this when its wake fd fires: deliver finished jobs. */
void aw_threadpool_deliver(aw_loop *loop);
/* Wake the loop from another thread (async-signal-safe). */
void aw_loop_notify(aw_loop *loop);

/* Ledger (ledger.c) */
void aw_ledger_report_leaks(aw_loop *loop);

/* Metrics (metrics.c): the core layer's own series, made once per process
 * (aw__metrics_core_init, at the first loop or render). A pointer left
 * NULL (out of memory) makes its updates do nothing. */
typedef struct aw_metric aw_metric;
typedef struct aw_metrics_core {
	aw_metric *loops, *tasks_alive, *tasks_parked, *loop_lag, *slow_steps;
	aw_metric *threadpool_queue, *threadpool_busy;
	aw_metric *uring_file_ops;
	aw_metric *cpu, *rss, *vms, *fds, *max_fds, *start;
} aw_metrics_core;
extern aw_metrics_core aw__metrics;
void aw__metrics_core_init(void);
/* Snapshot (snapshot.c): record a slow step or a deadlock report for
 * aw_ledger_visit. text: the line as printed (without the newline). */
void aw_loop_event_record(aw_loop *loop, int kind, aw_time duration, const char *task,
			  const aw_loc *resumed_at, const aw_loc *waits_at, const char *text);

/* Watchdog (watchdog.c) */
int aw_watchdog_start(aw_loop *loop);
void aw_watchdog_stop(aw_loop *loop);
/* Called by the loop thread at each switch when slow_flag is set. */
void aw_watchdog_report(aw_loop *loop, aw_task *t, const aw_loc *suspended_at);

#endif
