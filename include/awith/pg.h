/* SPDX-License-Identifier: MIT */
/*
 * awith/pg.h — PostgreSQL on libpq's non-blocking API, driven by the awith
 * loop: connections, queries with parameters, typed results and JSON, a
 * per-connection prepared-statement cache, cancellation, the pool (asyncpg's
 * Pool, in C), transactions and savepoints, cursors, LISTEN/NOTIFY, COPY.
 *
 *     aw_pg_pool *pool;
 *     if (aw_pg_pool_open(&pool, &(aw_pg_pool_opts){ .dsn = url, .max_size = 8 }) < 0) ...
 *     aw_pg_acquire a;
 *     AW_WITH(aw_pg_acquire_init(&a, pool)) {
 *         aw_pg_rows q;
 *         AW_WITH(aw_pg_rows_init(&q, a.conn, "SELECT id, name FROM users WHERE id = $1",
 *                             AW_PG_ARGS("42"))) {
 *             for (int i = 0; i < aw_pg_nrows(q.res); i++)
 *                 printf("%s\n", aw_pg_text(q.res, i, 1));
 *         }
 *     }
 *     aw_pg_pool_close(pool);
 *
 * Every call that talks to the server waits without blocking the loop and is
 * a cancellation point; put it in AW_WITH(AW_TIMEOUT(...)) for a deadline.
 * A query interrupted by cancellation or a deadline sends a cancel request
 * to the server (from the thread pool: libpq 15's PQcancel blocks) and
 * drains the connection; the connection is then clean, or it is marked
 * broken (aw_pg_conn_ok() false) and the pool discards it.
 *
 * Parameters are always passed separately from the SQL text ($1, $2 ...),
 * in PostgreSQL's text format; NULL is SQL NULL. SQL is never built from
 * values by this API.
 *
 * Errors (returned negated and raised, like every awith call):
 *   -AW_EPG          the server rejected the statement (aw_pg_last_error()
 *                    has SQLSTATE, message, detail, hint, position); the
 *                    connection stays usable
 *   -AW_EPG_AUTH     authentication failed (wrong password, no such role)
 *   -AW_EPG_NODB     the database does not exist
 *   -AW_EPG_TOO_MANY the server has no connection slot left (53300)
 *   -ECONNREFUSED    nothing listens at the address
 *   -AW_EDNS         the host name could not be resolved
 *   -ECONNRESET      the connection was lost (server stopped, backend
 *                    terminated); the connection is broken
 *   -ETIMEDOUT       a deadline passed (connect or an enclosing timeout)
 *   -ECANCELED       the task was cancelled
 *   -EINVAL          a bad DSN, option or argument (message says which)
 *   -AW_EPG_NULL     a typed getter met SQL NULL
 *   -AW_EPG_TYPE     a typed getter met a column of another type, or a
 *                    value that does not convert
 *   -ERANGE          a value out of the getter's range
 *   -AW_ECLOSED      the pool is closed
 */
#ifndef AWITH_PG_H
#define AWITH_PG_H

#include <awith/core.h>
#include <awith/io.h>   /* -AW_EDNS, the connection errors shared with io */

#ifdef __cplusplus
extern "C" {
#endif

/* Every declaration from here to the matching pop is the public API: the
 * library is built with -fvisibility=hidden, so exactly these are exported. */
#pragma GCC visibility push(default)

/* pg's error codes (returned negated, like errno codes): the pg range of
 * awith/ext.h's error ranges. Connection failures also use io's
 * -AW_EDNS (awith/io.h, included here). */
enum {
	AW_EPG_BASE = 0x4400,
	AW_EPG,            /* PostgreSQL rejected a statement (SQLSTATE on the connection) */
	AW_EPG_AUTH,       /* PostgreSQL authentication failed */
	AW_EPG_NODB,       /* the PostgreSQL database does not exist */
	AW_EPG_TOO_MANY,   /* the PostgreSQL server has no connection slot left */
	AW_EPG_NULL,       /* a typed getter met SQL NULL */
	AW_EPG_TYPE,       /* a typed getter met another column type or a bad value */
	AW_EPG_LAST
};
/* The layer's messages for aw_strerror come with its library; this
 * reference makes a static link take them along even when the program
 * calls no other function of the layer. */
extern const char aw__pg_error_range;
static const char *const aw__pg_error_range_ref __attribute__((used, unused)) = &aw__pg_error_range;

struct json_t;   /* jansson's json_t */

/* ------------------------------------------------------------------------ */
/* Connections                                                              */

typedef struct aw_pg_conn aw_pg_conn;       /* opaque */
typedef struct aw_pg_result aw_pg_result;   /* opaque: a result set */

typedef struct aw_pg_opts {
	aw_time connect_timeout;   /* deadline for connecting (duration);
	                              0: 10 s */
	int stmt_cache;            /* prepared statements kept per connection
	                              (LRU by SQL text). 0 turns the cache
	                              off: every query is sent unnamed
	                              (PQsendQueryParams), as pgbouncer's
	                              transaction mode needs. Use
	                              aw_pg_opts_default() for the default
	                              (100). Max 10000. */
	const char *application_name;  /* reported to the server; NULL: "awith" */
	bool trace_comment;        /* put the task's trace context (core.h,
	                              "Tracing context") into the text of each
	                              statement sent while it has one, as
	                              sqlcommenter does: a comment holding
	                              traceparent='00-<trace id>-<span id>-01'
	                              (the statement's own span) at the end
	                              (before a final ';'), which the server
	                              shows in pg_stat_activity and its logs.
	                              The text then differs per statement, so
	                              such statements are sent unnamed
	                              (parsed every time, as with stmt_cache
	                              0) and never fill the statement cache;
	                              the same statements outside a trace
	                              still use it. Covers aw_pg_query,
	                              aw_pg_exec, aw_pg_rows, aw_pg_exec_script
	                              and aw_pg_pool_query (pipelined too);
	                              not cursors, COPY, or aw_pg_tx's
	                              BEGIN/COMMIT. Default off. Whatever this
	                              says, each of those statements sent while
	                              the task has a trace context is recorded
	                              as a span ("pg SELECT", kind client,
	                              with its duration and error). */
	bool transaction_pooler;   /* the DSN reaches a transaction-mode
	                              pooler (pgbouncer pool_mode=transaction):
	                              each transaction may run on another
	                              server connection, so nothing may
	                              outlive one. The statement cache is off
	                              (as stmt_cache 0, whatever it says), and
	                              statements that would leave session
	                              state on a server connection other
	                              clients get next are refused before
	                              they are sent, with -ENOTSUP and a
	                              message saying what to do instead:
	                              LISTEN (aw_pg_listen_init too), SET
	                              other than SET LOCAL / SET TRANSACTION
	                              / SET CONSTRAINTS, PREPARE, CREATE TEMP
	                              outside a transaction, DECLARE ... WITH
	                              HOLD, session advisory locks
	                              (pg_advisory_lock; the _xact_ ones are
	                              fine). Only a statement's first keyword
	                              (and for locks its text) is looked at.
	                              docs/scale.md, "pgbouncer". */
} aw_pg_opts;

/* The defaults (what a NULL opts means). */
void aw_pg_opts_default(aw_pg_opts *o);

/* Waits: connect to `dsn` (a postgresql:// URL or key=value pairs) under
 * opts->connect_timeout, without blocking the loop. The connection is in
 * the ledger until aw_pg_conn_close (a connection never closed is reported
 * at loop shutdown with where it was opened). */
int aw_pg_connect(aw_pg_conn **out, const char *dsn, const aw_pg_opts *opts) AW_MUST_USE;
#define aw_pg_connect(out, dsn, opts) AW__AT((aw_pg_connect)((out), (dsn), (opts)))
/* Close (sends Terminate; does not wait). NULL is a no-op. */
void aw_pg_conn_close(aw_pg_conn *c);

/* The same as a manager: enter connects, exit closes. */
typedef struct aw_pg_connection {
	aw_mgr mgr;
	const char *dsn;
	aw_pg_opts opts;
	aw_pg_conn *conn;              /* set while entered */
} aw_pg_connection;
aw_mgr *aw_pg_connection_init(aw_pg_connection *m, const char *dsn, const aw_pg_opts *opts);

/* False once the connection is lost or left in an unknown state. */
bool aw_pg_conn_ok(const aw_pg_conn *c);
/* The server process id of the connection (for pg_cancel_backend ...). */
int aw_pg_conn_pid(const aw_pg_conn *c);
/* 'I' idle, 'T' in a transaction, 'E' in a failed transaction, '?' unknown
 * or broken. */
char aw_pg_conn_tx_status(const aw_pg_conn *c);
/* Statements the connection prepared and keeps (cache size now). */
size_t aw_pg_conn_cached(const aw_pg_conn *c);
/* Queries run on the connection since it was opened. */
uint64_t aw_pg_conn_queries(const aw_pg_conn *c);
/* The connection's libpq handle (PGconn *), for what this API lacks. Do
 * not wait on its socket or change its non-blocking mode. */
void *aw_pg_conn_pgconn(aw_pg_conn *c);

/* ------------------------------------------------------------------------ */
/* Queries                                                   aw_pg_query(3) */

/* AW_PG_ARGS("1", NULL, name) expands to `count, array` for the query
 * functions; NULL is SQL NULL. AW_PG_NOARGS for none. */
#define AW_PG_ARGS(...) \
	(int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), (const char *const[]){__VA_ARGS__}
#define AW_PG_NOARGS 0, NULL

/* Waits: run one statement with nparams text parameters and return its
 * result in *out (free it with aw_pg_result_free). The statement goes
 * through the prepared-statement cache when it is on. A statement the
 * server rejects returns -AW_EPG (see aw_pg_last_error). At most 65535
 * parameters. */
int aw_pg_query(aw_pg_conn *c, aw_pg_result **out, const char *sql, int nparams,
		const char *const *params) AW_MUST_USE;
/* Waits: run a statement whose rows are not wanted. Returns 0 or an error;
 * *rows (when rows is not NULL) gets the row count of its command tag (rows
 * inserted, updated, deleted, copied, or returned by a SELECT; 0 for
 * commands without one, and on failure). */
int aw_pg_exec(aw_pg_conn *c, uint64_t *rows, const char *sql, int nparams, const char *const *params) AW_MUST_USE;
/* Waits: run a script of one or more statements with no parameters
 * (simple query protocol; never cached). Returns 0 or an error. */
int aw_pg_exec_script(aw_pg_conn *c, const char *sql) AW_MUST_USE;

/* A query whose result lives for a block: enter runs it, exit frees it. */
typedef struct aw_pg_rows {
	aw_mgr mgr;
	aw_pg_conn *conn;
	const char *sql;
	int nparams;
	const char *const *params;
	aw_pg_result *res;             /* set while entered */
} aw_pg_rows;
aw_mgr *aw_pg_rows_init(aw_pg_rows *q, aw_pg_conn *c, const char *sql, int nparams, const char *const *params);

/* The details of the last server error on this connection (valid until the
 * next query on it). */
typedef struct aw_pg_error_info {
	char sqlstate[6];              /* e.g. "23505"; "" if none */
	const char *severity;          /* "ERROR", "FATAL" ...; never NULL */
	const char *message;           /* primary message; never NULL */
	const char *detail;            /* or NULL */
	const char *hint;              /* or NULL */
	int position;                  /* 1-based character in the SQL; 0 if none */
} aw_pg_error_info;
const aw_pg_error_info *aw_pg_last_error(const aw_pg_conn *c);

/* ------------------------------------------------------------------------ */
/* Results                                                  aw_pg_result(3) */

void aw_pg_result_free(aw_pg_result *r);    /* NULL is a no-op */
int aw_pg_nrows(const aw_pg_result *r);
int aw_pg_ncols(const aw_pg_result *r);
const char *aw_pg_colname(const aw_pg_result *r, int col);   /* NULL if out of range */
/* Column index by name, or -1. */
int aw_pg_colnum(const aw_pg_result *r, const char *name);
/* The column's type OID (e.g. 23 for int4). 0 if out of range. */
unsigned aw_pg_coltype(const aw_pg_result *r, int col);
/* Rows affected by the statement (its command tag), 0 if none. */
int64_t aw_pg_affected(const aw_pg_result *r);
/* Whether the value is SQL NULL (true for out-of-range cells too). */
bool aw_pg_isnull(const aw_pg_result *r, int row, int col);
/* The value in PostgreSQL's text format, NULL for SQL NULL or out of range.
 * Valid until the result is freed. */
const char *aw_pg_text(const aw_pg_result *r, int row, int col);
size_t aw_pg_len(const aw_pg_result *r, int row, int col);

/* Typed getters: 0 and *out set, or -AW_EPG_NULL (SQL NULL), -AW_EPG_TYPE
 * (the column's type is not one that converts), -ERANGE, -EINVAL (row or
 * column out of range). None raises: they are checks, not failures. */
int aw_pg_get_int(const aw_pg_result *r, int row, int col, int64_t *out) AW_MUST_USE;    /* int2/4/8, oid */
int aw_pg_get_double(const aw_pg_result *r, int row, int col, double *out) AW_MUST_USE;  /* float4/8, numeric, ints */
int aw_pg_get_bool(const aw_pg_result *r, int row, int col, bool *out) AW_MUST_USE;      /* bool */
int aw_pg_get_str(const aw_pg_result *r, int row, int col, const char **out) AW_MUST_USE;/* any type, text form */
/* bytea, decoded: *out is malloc'd (free it), *len its size. */
int aw_pg_get_bytea(const aw_pg_result *r, int row, int col, void **out, size_t *len) AW_MUST_USE;
/* The same by column name (-EINVAL if there is no such column). */
int aw_pg_get_int_by(const aw_pg_result *r, int row, const char *col, int64_t *out) AW_MUST_USE;
int aw_pg_get_double_by(const aw_pg_result *r, int row, const char *col, double *out) AW_MUST_USE;
int aw_pg_get_bool_by(const aw_pg_result *r, int row, const char *col, bool *out) AW_MUST_USE;
int aw_pg_get_str_by(const aw_pg_result *r, int row, const char *col, const char **out) AW_MUST_USE;

/* JSON. Values convert by column type: int2/4/8, oid, float4/8 and
 * numeric to numbers (NaN and infinities as the strings "NaN", "Infinity",
 * "-Infinity", since JSON has no such numbers); bool to true/false;
 * json/jsonb passed through as they are; timestamptz and timestamp as
 * ISO-8601 ("2024-05-01T12:30:00.5+00:00"); date as "YYYY-MM-DD"; uuid,
 * text and every other type as strings; bytea as its hex text "\\x0102";
 * arrays of any of these (nested too) as JSON arrays; SQL NULL as null.
 * Keys are the column names. */
/* One row as an object: *out is a new reference. */
int aw_pg_row_to_json(const aw_pg_result *r, int row, struct json_t **out) AW_MUST_USE;
/* Every row as an array of objects. */
int aw_pg_result_to_json(const aw_pg_result *r, struct json_t **out) AW_MUST_USE;
/* The same array, written straight to JSON text (no intermediate objects):
 * *out is malloc'd and NUL-terminated, *len its length. */
int aw_pg_result_json_text(const aw_pg_result *r, char **out, size_t *len) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* Transactions: commit on a clean exit, rollback on any error or           */
/* cancellation (awaited in shielded cleanup). Nested blocks on the same    */
/* connection become savepoints.                               aw_pg_tx(3) */

enum aw_pg_isolation {
	AW_PG_ISOLATION_DEFAULT = 0,   /* the server's default_transaction_isolation */
	AW_PG_READ_COMMITTED,
	AW_PG_REPEATABLE_READ,
	AW_PG_SERIALIZABLE,
};

typedef struct aw_pg_tx_opts {
	enum aw_pg_isolation isolation;
	bool read_only;
	bool deferrable;               /* with SERIALIZABLE + read_only */
} aw_pg_tx_opts;

typedef struct aw_pg_tx {
	aw_mgr mgr;
	aw_pg_conn *conn;
	aw_pg_tx_opts opts;
	unsigned depth;                /* 0: outermost (BEGIN), else savepoint */
	bool finished;                 /* committed or rolled back early */
} aw_pg_tx;

/* Enter: BEGIN (with the options) or, inside another transaction block of
 * the same connection, SAVEPOINT. Exit: COMMIT / RELEASE SAVEPOINT when the
 * block ends without error, ROLLBACK / ROLLBACK TO SAVEPOINT otherwise (the
 * error goes on). A COMMIT that fails (e.g. a deferred constraint or a
 * serialization failure) makes the block fail with -AW_EPG. Options on a
 * savepoint are -EINVAL. */
aw_mgr *aw_pg_tx_init(aw_pg_tx *tx, aw_pg_conn *c, const aw_pg_tx_opts *opts);

/* ------------------------------------------------------------------------ */
/* Cursors                                                  aw_pg_cursor(3) */
/* An async iterator over the rows of a query, fetched `batch` rows at a    */
/* time (DECLARE ... NO SCROLL CURSOR / FETCH / CLOSE). Must run inside a   */
/* transaction (-EINVAL otherwise). Leaving the loop closes it.             */

typedef struct aw_pg_row {
	aw_pg_result *res;             /* the current batch */
	int row;                       /* index in it */
} aw_pg_row;

typedef struct aw_pg_cursor {
	aw_iter iter;
	aw_pg_conn *conn;
	const char *sql;
	int nparams;
	const char *const *params;
	int batch;
	char name[32];
	aw_pg_row cur;
	bool open, ended;
} aw_pg_cursor;

/*     aw_pg_cursor cur; aw_pg_row *row;
 *     AW_FOR(row, aw_pg_cursor_init(&cur, c, 500, "SELECT * FROM big", AW_PG_NOARGS))
 *         use(aw_pg_text(row->res, row->row, 0));                                    */
aw_iter *aw_pg_cursor_init(aw_pg_cursor *cur, aw_pg_conn *c, int batch, const char *sql, int nparams,
			   const char *const *params);

/* ------------------------------------------------------------------------ */
/* LISTEN/NOTIFY                                          aw_pg_listener(3) */

typedef struct aw_pg_notification {
	const char *channel;
	const char *payload;
	int pid;                       /* the notifying backend */
} aw_pg_notification;

typedef struct aw_pg_listener {
	aw_iter iter;
	aw_pg_conn *conn;
	const char *const *channels;   /* NULL-terminated */
	void *cur;                     /* internal: the current PGnotify */
	aw_pg_notification item;
	bool listening;
} aw_pg_listener;

/* An async iterator of notifications on `channels` (NULL-terminated):
 * enter LISTENs, each step waits for the next notification, exit
 * UNLISTENs. Items are valid until the next step. The connection must not
 * be used by anything else while the loop runs. */
aw_iter *aw_pg_listen_init(aw_pg_listener *l, aw_pg_conn *c, const char *const *channels);
/* Waits: NOTIFY channel with payload (pg_notify; both passed as parameters). */
int aw_pg_notify(aw_pg_conn *c, const char *channel, const char *payload) AW_MUST_USE;

/* ------------------------------------------------------------------------ */
/* COPY                                                                     */

/* COPY ... FROM STDIN as a manager: enter sends the statement, the body
 * writes data with aw_pg_copy_write, the exit ends the copy (or aborts it
 * when the block fails, so no row is stored) and sets `rows`. */
typedef struct aw_pg_copy_in {
	aw_mgr mgr;
	aw_pg_conn *conn;
	const char *sql;
	int64_t rows;                  /* rows copied, after a clean exit */
	bool active;
} aw_pg_copy_in;
aw_mgr *aw_pg_copy_in_init(aw_pg_copy_in *cp, aw_pg_conn *c, const char *sql);
/* Waits while the connection's send buffer is full. */
int aw_pg_copy_write(aw_pg_copy_in *cp, const void *data, size_t len) AW_MUST_USE;

/* COPY ... TO STDOUT as an async iterator of chunks (one data row each in
 * text/csv format). Leaving the loop early cancels the copy. */
typedef struct aw_pg_copy_out {
	aw_iter iter;
	aw_pg_conn *conn;
	const char *sql;
	char *buf;                     /* internal */
	aw_chunk chunk;
	int64_t rows;                  /* rows copied, once the loop ended */
	bool active;
} aw_pg_copy_out;
aw_iter *aw_pg_copy_out_init(aw_pg_copy_out *cp, aw_pg_conn *c, const char *sql);

/* ------------------------------------------------------------------------ */
/* The pool                                                                 */

typedef struct aw_pg_pool aw_pg_pool;       /* opaque */

typedef struct aw_pg_pool_opts {
	const char *dsn;               /* required */
	const aw_pg_opts *conn;        /* per-connection options; NULL: defaults */
	size_t min_size;               /* kept open (also when idle); default 0 */
	size_t max_size;               /* default 10; at least 1 */
	aw_time acquire_timeout;       /* how long acquire waits (duration,
	                                  including connecting); 0: no limit of
	                                  its own (enclosing scopes still apply) */
	aw_time max_lifetime;          /* close a connection this old when it
	                                  comes back; 0: no limit */
	aw_time idle_timeout;          /* close connections idle this long,
	                                  down to min_size; 0: never */
	uint64_t max_queries;          /* close a connection after this many
	                                  queries; 0: no limit */
	const char *reset;             /* run on release when the connection
	                                  changed session state; NULL: "SELECT
	                                  pg_advisory_unlock_all(); CLOSE ALL;
	                                  UNLISTEN *; RESET ALL"; "": none */
	bool reset_always;             /* run `reset` on every release, not only
	                                  after a statement that changed session
	                                  state (SET, LISTEN, DECLARE, PREPARE,
	                                  CREATE TEMP ...; see docs/pg.md) */
	bool pipeline;                 /* aw_pg_pool_query sends concurrent
	                                  queries down shared connections in
	                                  libpq's pipeline mode */
	aw_time close_grace;           /* aw_pg_pool_close waits this long for
	                                  connections in use; 0: 10 s */
	/* Outages (docs/pg.md, "Outages"). A connect that fails for a reason
	 * of the server's (refused, reset, timed out, too many clients,
	 * starting up, ...; not the caller's cancellation or deadline) makes
	 * the pool back off: no new connect for a delay that doubles per
	 * failure in a row from backoff_initial up to backoff_max, jittered
	 * uniformly in [delay/2, delay]. Meanwhile an acquire that finds no
	 * idle connection fails at once instead of connecting: with the last
	 * failed connect's code (-ECONNREFUSED, -ETIMEDOUT, -AW_EPG_TOO_MANY,
	 * -EAGAIN ... as aw_pg_connect returns it, so callers keep one way of
	 * telling an outage) and that connect's error as the raised error's
	 * cause (aw_error.cause). When the delay is over, the next acquires
	 * try again (at most max_connecting at once); the first connect that
	 * succeeds ends the backoff. */
	size_t max_connecting;         /* connects in flight at most (always,
	                                  not only while failing); 0: 2 */
	aw_time backoff_initial;       /* first delay after a failed connect;
	                                  0: 50 ms */
	aw_time backoff_max;           /* the cap (and so the longest time from
	                                  the server accepting again to the
	                                  pool trying it); 0: 500 ms (or
	                                  backoff_initial if larger) */
} aw_pg_pool_opts;

/* Waits: create a pool and open min_size connections. Invalid settings
 * (no dsn, max_size 0, min_size > max_size, negative durations,
 * backoff_max < backoff_initial) are
 * -EINVAL with a message naming the setting; a server that refuses the
 * first connections fails the open with that connection's error. */
int aw_pg_pool_open(aw_pg_pool **out, const aw_pg_pool_opts *opts) AW_MUST_USE;
#define aw_pg_pool_open(out, opts) AW__AT((aw_pg_pool_open)((out), (opts)))
/* Waits: stop handing out connections (acquire fails with -AW_ECLOSED),
 * wake every waiter with -AW_ECLOSED, wait up to close_grace for the
 * connections in use to come back, then cancel their holders' queries and
 * close every connection. Frees the pool. Returns 0, or -ETIMEDOUT if some
 * holder had to be cut off. */
int aw_pg_pool_close(aw_pg_pool *p) AW_MUST_USE;

/* The pool as a manager (for a lifespan or a block): enter opens, exit
 * closes. */
typedef struct aw_pg_pool_mgr {
	aw_mgr mgr;
	aw_pg_pool_opts opts;
	aw_pg_pool *pool;              /* set while entered */
} aw_pg_pool_mgr;
aw_mgr *aw_pg_pool_mgr_init(aw_pg_pool_mgr *m, const aw_pg_pool_opts *opts);

/* Acquire a connection as a manager: enter waits for one (FIFO among
 * waiters; the most recently released idle connection first; opens a new
 * one while below max_size), exit releases it in shielded cleanup, so a
 * cancelled holder never leaks it. */
typedef struct aw_pg_acquire {
	aw_mgr mgr;
	aw_pg_pool *pool;
	aw_pg_conn *conn;              /* set while entered */
} aw_pg_acquire;
aw_mgr *aw_pg_acquire_init(aw_pg_acquire *a, aw_pg_pool *p);

/* A connection whose server session died while it sat in the pool (a
 * terminated backend, a restarted server) is not handed out; and if its
 * death shows only when the holder's first statement is about to be sent
 * (nothing of it sent yet), the pool opens a new connection and moves it
 * under the same aw_pg_conn, so the statement runs there instead of
 * failing (stats.revived). The backend pid and aw_pg_conn_pgconn() may
 * therefore change at that first statement. A statement that was sent is
 * never retried: if the connection dies after that, the error is the
 * caller's (docs/pg.md, "A connection found dead before anything was
 * sent"). */

/* Manual form (prefer the manager): a connection acquired and never
 * released is reported at loop shutdown with where it was acquired, and so
 * is a pool never closed. Release: runs the reset if needed and
 * returns the connection to the idle list, or discards it if it is broken,
 * in a failed state that ROLLBACK cannot clear, too old, or over its query
 * budget. Waits (shielded). */
int aw_pg_pool_acquire(aw_pg_pool *p, aw_pg_conn **out) AW_MUST_USE;
#define aw_pg_pool_acquire(p, out) AW__AT((aw_pg_pool_acquire)((p), (out)))
void aw_pg_pool_release(aw_pg_pool *p, aw_pg_conn *c);

/* Waits: acquire, query, release. With opts.pipeline, the query instead
 * joins the pipeline of a shared connection (several tasks' queries in
 * flight on one connection, results handed back in order). */
int aw_pg_pool_query(aw_pg_pool *p, aw_pg_result **out, const char *sql, int nparams,
		     const char *const *params) AW_MUST_USE;

typedef struct aw_pg_pool_stats {
	size_t size;                   /* open connections (idle + in use + opening) */
	size_t idle;
	size_t in_use;
	size_t opening;                /* connects in progress */
	size_t waiters;                /* tasks waiting in acquire */
	uint64_t acquires;             /* successful acquires so far */
	uint64_t opened, discarded;    /* connections opened / closed as broken,
	                                  old, idle or failed reset */
	uint64_t connect_attempts;     /* connects started (successful or not) */
	uint64_t connect_failures;     /* connects that failed for a reason of
	                                  the server's (these drive the backoff) */
	uint64_t fast_failures;        /* acquires failed at once while backing off */
	uint64_t revived;              /* connections found dead when their
	                                  holder's first statement was about to
	                                  go out, and replaced by a new one
	                                  (nothing had reached the server) */
	bool failing;                  /* backing off now (the last connect failed) */
	aw_time wait_p50, wait_p90, wait_p99, wait_max;  /* acquire waits over the
	                                  last 1024 acquires (ns) */
	/* What the last aw_pg_pool_check found (the server the pool's
	 * connections reach now, e.g. through a multi-host DSN): */
	int standby;                   /* 1 a standby (in recovery), 0 a
	                                  primary, -1 never checked */
	aw_time replica_lag;           /* a standby's replay lag (ns): 0 when it
	                                  has replayed all it received, else the
	                                  age of the last transaction it
	                                  replayed; 0 on a primary; -1 never
	                                  checked */
	aw_time checked_at;            /* aw_now() of that check; 0 never */
} aw_pg_pool_stats;
void aw_pg_pool_stats_get(const aw_pg_pool *p, aw_pg_pool_stats *out);

/* Waits: can the pool serve now? Acquires a connection (as
 * aw_pg_pool_acquire: while the pool backs off after failed connects it
 * fails at once with the last connect's code), asks the server whether it
 * is a standby and how far its replay lags, records both in the stats
 * (standby, replica_lag, checked_at) and releases. Returns 0 or the
 * error (raised). Made for readiness checks (aw_app_ready_check in
 * http.h) and for watching a read pool's replica
 * (target_session_attrs=standby or prefer-standby in its DSN). One plain
 * query: it also runs through pgbouncer. */
int aw_pg_pool_check(aw_pg_pool *p) AW_MUST_USE;

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* AWITH_PG_H */
