/* SPDX-License-Identifier: MIT */
/*
 * Internal structures of the pg layer, shared by the files in src/pg/.
 *
 * How a query waits (conn.c): libpq is used in non-blocking mode. Sending
 * appends to libpq's output buffer and PQflush pushes it out, waiting for
 * writability (and reading meanwhile, as libpq asks) while it returns 1.
 * Receiving waits for readability, then PQconsumeInput, until PQisBusy is
 * false. The loop's fd waits are edge-triggered, and PQconsumeInput does
 * not read the socket until EAGAIN, so before waiting again the connection
 * checks whether bytes are already pending (MSG_PEEK, and SSL_pending under
 * TLS): waiting for an edge that already came would hang. See
 * docs/design.md, "pg".
 */
#ifndef AW_PG_INTERNAL_H
#define AW_PG_INTERNAL_H

#include "awith/core.h"
#include "awith/ext.h"
#include "../common/alloc.h"
#include "../common/util.h"
#include "../common/cnum.h"
#include "awith/pg.h"

#include <libpq-fe.h>
#include <stddef.h>

#define AW_CONTAINER_OF_PG(e) ((aw_pg_conn *)(void *)((char *)(e) - offsetof(aw_pg_conn, ledger)))

typedef struct aw_pg_stmt aw_pg_stmt;     /* a cached prepared statement */
struct aw_pg_stmt {
	char *sql;
	uint64_t hash;
	int nparams;
	char name[24];
	aw_pg_stmt *hnext;                 /* hash chain */
	aw_pg_stmt *lru_prev, *lru_next;   /* most recent at head */
};

typedef struct aw_pg_pipe aw_pg_pipe;     /* pipeline.c */
typedef struct aw_pg_pool_slot aw_pg_pool_slot;

/* trace.c: a statement's span and its commented text (aw_pg_opts.
 * trace_comment). begin returns the text to send: sql itself, or the
 * commented copy (then qt->sql; send it unnamed, not through the
 * statement cache). end records the span with the statement's result. */
typedef struct aw_pg_qtrace {
	aw_span span;
	char name[24];
	char *sql;                /* the commented copy, or NULL */
	bool on;
} aw_pg_qtrace;
const char *aw_pg_trace_begin(aw_pg_qtrace *qt, const aw_pg_conn *c, const char *sql);
void aw_pg_trace_end(aw_pg_qtrace *qt, int rc);

struct aw_pg_conn {
	PGconn *pg;
	int fd;
	aw_pg_opts opts;
	bool broken;              /* lost, or left in an unknown state */
	bool busy;                /* a task is using the protocol right now */
	bool dirty;               /* ran a statement that changed session state */
	bool read_since_send;     /* PQconsumeInput ran since the last flush
	                             began: bytes may sit in the socket that no
	                             new edge will announce */
	int pid;
	uint64_t queries;
	PGcancel *cancel;

	/* the prepared-statement cache */
	aw_pg_stmt **buckets;
	size_t nbuckets, ncached;
	aw_pg_stmt *lru_head, *lru_tail;
	uint64_t next_stmt;

	/* the last server error */
	PGresult *err_res;
	aw_pg_error_info err;

	unsigned tx_depth;        /* nesting of aw_pg_tx blocks */
	uint64_t cursor_seq;
	size_t copy_unflushed;    /* COPY FROM STDIN bytes queued in libpq since
	                             the last flush (copy.c) */

	aw_ledger_entry ledger;
	bool in_ledger;

	/* pool bookkeeping (pool.c) */
	void *pool;
	aw_pg_conn *pnext, *pprev;
	aw_task *holder;
	aw_time created, idle_since;
	bool fresh;               /* handed out, the holder sent nothing yet */
	aw_pg_pipe *pipe;         /* pipeline mode state, or NULL */
};

/* A result is libpq's PGresult itself. */
static inline PGresult *aw_pg_res(const aw_pg_result *r) { return (PGresult *)(void *)r; }
static inline aw_pg_result *aw_pg_wrap(PGresult *r) { return (aw_pg_result *)(void *)r; }

/* ---- conn.c ------------------------------------------------------------- */

/* Under opts.transaction_pooler: -ENOTSUP (raised) for a statement that
 * would leave session state behind; 0 otherwise. */
int aw_pg_session_guard(aw_pg_conn *c, const char *sql, const char *what);

/* Waits: flush libpq's output buffer. */
int aw_pg_flush(aw_pg_conn *c);
/* Waits until PQisBusy is false (a whole result can be taken). */
int aw_pg_wait_result(aw_pg_conn *c);
/* Waits until at least one byte more is readable (or pending in libpq's
 * TLS layer), then PQconsumeInput. For notification loops. */
int aw_pg_wait_input(aw_pg_conn *c);
/* Waits: collect every result of the statement in flight until libpq
 * returns NULL. *out gets the last successful one (NULL if unwanted: then
 * freed). A server error becomes -AW_EPG (raised, saved for
 * aw_pg_last_error). COPY states stop the collection and return 1 with
 * the COPY result in *out. */
int aw_pg_collect(aw_pg_conn *c, PGresult **out);
/* The wait or send of a statement in flight failed with rc: if rc is a
 * cancellation or deadline, send a cancel request and drain the connection
 * (shielded, bounded), marking it broken if that fails; if rc is a lost
 * connection, mark it broken. Keeps the original error in flight and
 * returns rc. */
int aw_pg_interrupted(aw_pg_conn *c, int rc);
/* Waits (shielded, bounded): send a cancel request for whatever the
 * connection's backend runs now, from the thread pool (libpq 15's PQcancel
 * blocks). For a connection about to be discarded with statements in
 * flight, so the server stops working for nobody. The error in flight
 * survives; returns 0 or why the request could not be sent. */
int aw_pg_cancel_request(aw_pg_conn *c);
/* Raise the right error for a libpq failure (PQerrorMessage), marking the
 * connection broken if its status is bad. */
int aw_pg_conn_fail(aw_pg_conn *c, const char *what);
/* Record a server error result (takes r) and raise -AW_EPG. */
int aw_pg_server_error(aw_pg_conn *c, PGresult *r, const char *sql);
/* Drop the last error. */
void aw_pg_error_reset(aw_pg_conn *c);
/* Mark the connection dirty if this command tag changes session state. */
void aw_pg_note_command(aw_pg_conn *c, const PGresult *r);
/* Route the connection's notices (and idle-time FATALs) to it again, after
 * its PGconn moved to another aw_pg_conn (pool.c's revive). */
void aw_pg_conn_own_notices(aw_pg_conn *c);
/* Guard against two tasks using one connection at a time; the first
 * statement of a pool holder first lets the pool replace a connection
 * found dead (aw_pg_pool_revive). */
int aw_pg_begin(aw_pg_conn *c, const char *what);
static inline void aw_pg_end(aw_pg_conn *c) { c->busy = false; }
/* Waits: flush the statement just queued (PQsend*) and collect its results
 * as aw_pg_collect does; an interruption (cancellation, deadline) sends a
 * cancel request and drains (aw_pg_interrupted). Returns 0, 1 for a COPY
 * state (result in *out), or an error. */
int aw_pg_roundtrip(aw_pg_conn *c, PGresult **out);
/* Run a statement with no parameters and no rows wanted, not cached
 * (transaction control, LISTEN ...). Waits. */
int aw_pg_simple(aw_pg_conn *c, const char *sql);
/* Drop every cached statement without telling the server (DISCARD ALL). */
void aw_pg_cache_forget(aw_pg_conn *c);
/* Bytes are readable without waiting (see the top of this file). */
bool aw_pg_input_pending(aw_pg_conn *c);

/* For pipeline mode, where nothing can wait for a Parse to finish: the
 * statement for sql, or queue its Parse (and the DEALLOCATE of the least
 * recently used one when the cache is full) into the pipeline and cache it
 * at once. *name is valid until the next cache change. prep records what
 * was queued, in this order: prep->dealloc if a DEALLOCATE and its own
 * Sync were (a result or error, then a PIPELINE_SYNC, both to skip);
 * prep->stmt if a Parse was (one result, then the query's own). */
typedef struct aw_pg_stmt_ref {
	bool dealloc;
	bool stmt;
	char name[24];
} aw_pg_stmt_ref;
int aw_pg_stmt_lookup_or_send(aw_pg_conn *c, const char *sql, int nparams, const char **name,
			      aw_pg_stmt_ref *prep);
/* The queued Parse failed: forget the statement (if still cached). */
void aw_pg_stmt_drop(aw_pg_conn *c, const aw_pg_stmt_ref *prep);

/* ---- json.c ------------------------------------------------------------- */
/* Append one value as JSON to buf (grown with realloc). */
typedef struct aw_pg_buf { char *p; size_t len, cap; bool oom; } aw_pg_buf;

/* ---- the pool (pool.c), shared with pipeline.c ------------------------------ */

#define AW_PG_STATS_RING 1024   /* acquire waits kept for the percentiles */

typedef struct pool_waiter {
	aw_waiter w;             /* in p->waiters; w.data = this */
	aw_pg_conn *conn;        /* handed over by a release */
	int err;                 /* or: the pool closed (-AW_ECLOSED) */
	bool retry;              /* or: a slot was freed, open one */
} pool_waiter;

struct aw_pg_pool {
	aw_pg_pool_opts o;
	int standby;             /* aw_pg_pool_check: -1 unknown, 0, 1 */
	aw_time replica_lag;     /* at the last check; -1 unknown */
	aw_time checked_at;
	char *dsn, *reset;
	aw_pg_opts conn_opts;

	aw_pg_conn *idle;        /* LIFO via pnext/pprev */
	aw_pg_conn *busy;        /* in use */
	size_t nidle, nbusy, nopening;
	aw_waitq waiters;
	size_t nwaiters;
	double published[4];     /* size, idle, in use, waiters as last added
	                            to the metrics' gauges (pool_publish) */

	bool closing;
	aw_event drained;        /* set when nbusy + nopening reach 0 while closing */
	aw_task *maint;

	uint64_t acquires, opened, discarded;
	/* Connecting while the server fails (pool.c, "backoff"). */
	size_t max_connecting;   /* connects in flight at most */
	aw_time backoff_initial, backoff_max;
	unsigned fail_streak;    /* connects failed in a row; 0: healthy */
	aw_time retry_at;        /* while failing: no connect before this */
	aw_error *last_err;      /* the last failed connect's error (a ref) */
	uint64_t rng;            /* jitter */
	uint64_t connect_attempts, connect_failures, fast_failures, revived;
	aw_time waits[AW_PG_STATS_RING];
	size_t nwaits;

	aw_ledger_entry ledger;
	aw_gauge_source gauges;  /* size, idle, in use ... for aw_ledger_visit */
	bool orphaned;           /* closed with connections still held: freed
	                            by the last release */
	struct aw_pg_pipes *pipes; /* pipeline.c */
};

/* The located forms behind the public calls (located.c passes aw__where,
 * the caller's location recorded by the public macros; the library's own
 * managers pass theirs). */
int aw_pg_connect_at(const aw_loc *loc, aw_pg_conn **out, const char *dsn, const aw_pg_opts *opts);
int aw_pg_pool_open_at(const aw_loc *loc, aw_pg_pool **out, const aw_pg_pool_opts *opts);
/* Waits: acquire / release with the pool's rules (pool.c). */
int aw_pg_pool_acquire_at(const aw_loc *loc, aw_pg_pool *p, aw_pg_conn **out);
/* pipeline.c: a query down a shared connection in pipeline mode; close
 * every pipe (at pool close). */
int aw_pg_pipe_query(aw_pg_pool *p, PGresult **out, const char *sql, int nparams, const char *const *params);
void aw_pg_pipe_close(aw_pg_pool *p);
void aw_pg_pipe_free(aw_pg_pool *p);
/* Waits: c was handed out by the pool and its holder is about to send its
 * first statement (c->fresh). If the server closed the connection meanwhile
 * (an idle-time FATAL, a hang-up, seen now with a non-blocking peek),
 * nothing of that statement has reached the server: open a new connection
 * and move its session under c (the holder keeps its pointer). Returns 0,
 * or the connect's error (c stays broken). Clears c->fresh. */
int aw_pg_pool_revive(aw_pg_conn *c);
/* Release a connection (pool.c). */
void aw_pg_pool_release(aw_pg_pool *p, aw_pg_conn *c);

#endif
