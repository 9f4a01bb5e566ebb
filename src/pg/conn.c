/* SPDX-License-Identifier: MIT */
/*
 * PostgreSQL connections on libpq's non-blocking API: connecting under a
 * deadline, sending statements, waiting for results on the loop, the
 * prepared-statement cache, server errors, and what happens when a task is
 * cancelled in the middle of a statement (a cancel request from the thread
 * pool, then the connection is drained or marked broken).
 */
#include "internal.h"

#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>


#define DEFAULT_CONNECT_TIMEOUT AW_SEC(10)
#define DEFAULT_STMT_CACHE 100
#define MAX_STMT_CACHE 10000
#define MAX_PARAMS 65535
/* How long a cancel request and the drain after it may take before the
 * connection is given up as broken. */
#define CANCEL_BUDGET AW_SEC(5)

void aw_pg_opts_default(aw_pg_opts *o)
{
	memset(o, 0, sizeof *o);
	o->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	o->stmt_cache = DEFAULT_STMT_CACHE;
	o->application_name = "awith";
}

/* ---- errors ------------------------------------------------------------- */

/* libpq's messages end with a newline and may span lines; keep the first
 * meaningful line, without the trailing newline. */
static void first_line(const char *msg, char *buf, size_t len)
{
	if (!msg)
		msg = "";
	/* Multi-host attempts prefix 'connection to server at ... failed: '. */
	size_t n = strcspn(msg, "\n");
	if (n >= len)
		n = len - 1;
	memcpy(buf, msg, n);
	buf[n] = 0;
}

void aw_pg_error_reset(aw_pg_conn *c)
{
	if (c->err_res)
		PQclear(c->err_res);
	c->err_res = NULL;
	memset(&c->err, 0, sizeof c->err);
	c->err.severity = "";
	c->err.message = "";
}

static const char *field(const PGresult *r, int code)
{
	return PQresultErrorField(r, code);
}

int aw_pg_server_error(aw_pg_conn *c, PGresult *r, const char *sql)
{
	aw_pg_error_reset(c);
	c->err_res = r;
	const char *st = field(r, PG_DIAG_SQLSTATE);
	if (st)
		snprintf(c->err.sqlstate, sizeof c->err.sqlstate, "%s", st);
	const char *sev = field(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	if (!sev)
		sev = field(r, PG_DIAG_SEVERITY);
	c->err.severity = sev ? sev : "ERROR";
	const char *msg = field(r, PG_DIAG_MESSAGE_PRIMARY);
	if (!msg) {
		msg = PQresultErrorMessage(r);
		if (!msg || !*msg)
			msg = PQerrorMessage(c->pg);
	}
	c->err.message = msg ? msg : "";
	c->err.detail = field(r, PG_DIAG_MESSAGE_DETAIL);
	c->err.hint = field(r, PG_DIAG_MESSAGE_HINT);
	const char *pos = field(r, PG_DIAG_STATEMENT_POSITION);
	c->err.position = pos ? atoi(pos) : 0;

	char line[512];
	first_line(c->err.message, line, sizeof line);
	bool lost = PQstatus(c->pg) == CONNECTION_BAD;
	if (lost)
		c->broken = true;
	/* A write refused because the server is a standby now (after a
	 * failover, a connection that still reaches the old primary demoted
	 * and following the new one; or a DSN without
	 * target_session_attrs=read-write): the pool discards the connection,
	 * and the next connect goes where the DSN points now. A read-only
	 * transaction the caller asked for on a primary is not this. */
	else if (!strcmp(c->err.sqlstate, "25006")) {
		const char *hs = PQparameterStatus(c->pg, "in_hot_standby");
		if (hs && !strcmp(hs, "on"))
			c->broken = true;
	}
	int code = lost ? -ECONNRESET : -AW_EPG;
	(void)sql;
	return aw_raise(code, "PostgreSQL %s %s: %s%s%s%s%s%s", c->err.severity,
			c->err.sqlstate[0] ? c->err.sqlstate : "(no SQLSTATE)", line,
			c->err.detail ? " DETAIL: " : "", c->err.detail ? c->err.detail : "",
			c->err.position ? " (at character " : "",
			c->err.position ? pos : "", c->err.position ? ")" : "");
}

/* Classify a libpq connection-level message. */
static int classify(const char *msg, bool connecting)
{
	if (strstr(msg, "password authentication failed") || strstr(msg, "no password supplied") ||
	    strstr(msg, "authentication failed") || (strstr(msg, "role \"") && strstr(msg, "does not exist")))
		return -AW_EPG_AUTH;
	if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
		return -AW_EPG_NODB;
	if (strstr(msg, "too many clients") || strstr(msg, "too many connections") || strstr(msg, "remaining connection slots are reserved"))
		return -AW_EPG_TOO_MANY;
	if (strstr(msg, "Connection refused"))
		return -ECONNREFUSED;
	if (strstr(msg, "could not translate host name"))
		return -AW_EDNS;
	if (strstr(msg, "the database system is starting up") ||
	    strstr(msg, "the database system is shutting down") ||
	    strstr(msg, "the database system is in recovery mode"))
		return -EAGAIN;
	if (strstr(msg, "invalid connection option") || strstr(msg, "missing \"=\"") ||
	    strstr(msg, "invalid URI") || strstr(msg, "invalid integer value") || strstr(msg, "invalid port"))
		return -EINVAL;
	return connecting ? -ECONNRESET : -ECONNRESET;
}

int aw_pg_conn_fail(aw_pg_conn *c, const char *what)
{
	char line[512];
	first_line(PQerrorMessage(c->pg), line, sizeof line);
	if (PQstatus(c->pg) == CONNECTION_BAD)
		c->broken = true;
	int code = classify(line, false);
	if (code == -EINVAL || code == -AW_EDNS)
		code = -ECONNRESET;
	if (!c->broken)
		code = -EIO;
	return aw_raise(code, "PostgreSQL connection %s: %s", what, line[0] ? line : "failed");
}

/* ---- the ledger ------------------------------------------------------------ */

static void conn_free(aw_pg_conn *c)
{
	if (c->pg) {
		int fd = PQsocket(c->pg);
		if (fd >= 0)
			aw_fd_forget(fd);
		PQfinish(c->pg);
	}
	if (c->cancel)
		PQfreeCancel(c->cancel);
	aw_pg_error_reset(c);
	aw_pg_cache_forget(c);
	free(c->buckets);
	free(c);
}

/* At loop shutdown, after the leak report: close the socket, so a leaked
 * connection does not also leak its fd. */
static void conn_ledger_release(aw_ledger_entry *e)
{
	aw_pg_conn *c = AW_CONTAINER_OF_PG(e);
	c->in_ledger = false;
	conn_free(c);
}

/* ---- connecting ------------------------------------------------------------ */

static int connect_failed(PGconn *pg, int fd, const char *dsn_what, bool timed_out)
{
	char line[512];
	first_line(PQerrorMessage(pg), line, sizeof line);
	int code = timed_out ? -ETIMEDOUT : classify(line, true);
	if (fd >= 0)
		aw_fd_forget(fd);
	PQfinish(pg);
	return aw_raise(code, "cannot connect to PostgreSQL%s: %s", dsn_what, line[0] ? line : aw_strerror(code));
}

/* libpq passes server notices here, and also an ErrorResponse that comes
 * while nothing is in flight: the FATAL a backend sends before it closes
 * (terminated, server shutting down). That one marks the connection broken
 * at once, before the hang-up follows (pool.c relies on it to replace a
 * connection before anything is sent on it). Nothing is printed: a library
 * must not write to the application's stderr. */
static void notice_receive(void *arg, const PGresult *r)
{
	aw_pg_conn *c = arg;
	const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
	if (c && sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
		c->broken = true;
}

void aw_pg_conn_own_notices(aw_pg_conn *c)
{
	PQsetNoticeReceiver(c->pg, notice_receive, c);
}

int aw_pg_connect_at(const aw_loc *loc, aw_pg_conn **out, const char *dsn, const aw_pg_opts *opts)
{
	*out = NULL;
	if (!aw_task_current())
		return aw_raise(-AW_ENOTASK, "aw_pg_connect outside of a task");
	if (!dsn)
		return aw_raise(-EINVAL, "aw_pg_connect: dsn is NULL");
	aw_pg_opts o;
	if (opts)
		o = *opts;
	else
		aw_pg_opts_default(&o);
	if (o.connect_timeout < 0)
		return aw_raise(-EINVAL, "aw_pg_opts.connect_timeout is negative");
	if (o.stmt_cache < 0 || o.stmt_cache > MAX_STMT_CACHE)
		return aw_raise(-EINVAL, "aw_pg_opts.stmt_cache must be 0..%d, not %d", MAX_STMT_CACHE, o.stmt_cache);
	if (o.connect_timeout == 0)
		o.connect_timeout = DEFAULT_CONNECT_TIMEOUT;
	if (o.transaction_pooler)
		o.stmt_cache = 0;   /* a named statement lives on one server connection */
	if (!o.application_name)
		o.application_name = "awith";

	/* Reject a malformed DSN before any I/O, with libpq's reason. */
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(dsn, &perr);
	if (!parsed) {
		char line[256];
		first_line(perr ? perr : "out of memory", line, sizeof line);
		PQfreemem(perr);
		return aw_raise(perr ? -EINVAL : -ENOMEM, "invalid PostgreSQL DSN: %s", line);
	}
	PQconninfoFree(parsed);

	/* Keywords before dbname are defaults the DSN may override: JSON
	 * output assumes UTF-8. */
	const char *kw[] = { "client_encoding", "dbname", "fallback_application_name", NULL };
	const char *vals[] = { "UTF8", dsn, o.application_name, NULL };
	aw_time deadline = aw_deadline_after(o.connect_timeout);
	PGconn *pg = PQconnectStartParams(kw, vals, 1);
	if (!pg)
		return aw_raise(-ENOMEM, "cannot connect to PostgreSQL: out of memory");
	if (PQstatus(pg) == CONNECTION_BAD)
		return connect_failed(pg, -1, "", false);

	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int fd = PQsocket(pg);
	for (;;) {
		if (fd < 0)
			return connect_failed(pg, -1, "", false);
		int rc = aw_fd_wait(fd, st == PGRES_POLLING_READING ? AW_READABLE : AW_WRITABLE, deadline);
		if (rc < 0) {
			const aw_error *e = aw_error_current();
			bool ours = rc == -ETIMEDOUT && e && !e->origin && aw_now() >= deadline;
			if (ours)
				return connect_failed(pg, fd, " (connect timeout)", true);
			aw_fd_forget(fd);
			PQfinish(pg);
			return rc;   /* cancelled, or an enclosing deadline: keep that error */
		}
		st = PQconnectPoll(pg);
		/* libpq may close the socket and open another (next address,
		 * SSL retry) with the same number: start every wait from a
		 * fresh registration. */
		aw_fd_forget(fd);
		fd = PQsocket(pg);
		if (st == PGRES_POLLING_OK)
			break;
		if (st == PGRES_POLLING_FAILED)
			return connect_failed(pg, fd, "", false);
	}
	if (PQsetnonblocking(pg, 1) != 0)
		return connect_failed(pg, fd, "", false);

	aw_pg_conn *c = aw__calloc(1, sizeof *c);
	if (!c) {
		PQfinish(pg);
		return aw_raise(-ENOMEM, "aw_pg_connect: out of memory");
	}
	c->pg = pg;
	c->fd = fd;
	c->opts = o;
	c->pid = PQbackendPID(pg);
	/* libpq prints server notices to stderr by default. */
	aw_pg_conn_own_notices(c);
	/* Watched from now on, also while idle in a pool (see pool.c). */
	(void)aw_fd_watch(fd);
	c->cancel = PQgetCancel(pg);
	c->created = aw_now();
	aw_pg_error_reset(c);

	/* JSON needs ISO dates; DateStyle is reported by the server. */
	const char *ds = PQparameterStatus(pg, "DateStyle");
	if (!ds || strncmp(ds, "ISO", 3) != 0) {
		int rc = aw_pg_simple(c, "SET DateStyle TO ISO");
		if (rc < 0) {
			conn_free(c);
			return rc;
		}
		c->dirty = false;
	}
	aw_ledger_open(&c->ledger, "pg connection", loc);
	c->ledger.owner = c;
	c->ledger.release = conn_ledger_release;
	c->in_ledger = true;
	*out = c;
	return 0;
}

void aw_pg_conn_close(aw_pg_conn *c)
{
	if (!c)
		return;
	if (c->in_ledger)
		aw_ledger_close(&c->ledger);
	c->in_ledger = false;
	conn_free(c);
}

static int connection_enter(aw_mgr *m)
{
	aw_pg_connection *cm = (aw_pg_connection *)m;
	return aw_pg_connect(&cm->conn, cm->dsn, &cm->opts);
}

static int connection_exit(aw_mgr *m, int err)
{
	aw_pg_connection *cm = (aw_pg_connection *)m;
	aw_pg_conn_close(cm->conn);
	cm->conn = NULL;
	return err;
}

static const aw_mgr_ops connection_ops = { "pg connection", connection_enter, connection_exit, NULL };

aw_mgr *aw_pg_connection_init(aw_pg_connection *m, const char *dsn, const aw_pg_opts *opts)
{
	memset(m, 0, sizeof *m);
	m->mgr.ops = &connection_ops;
	m->dsn = dsn;
	if (opts)
		m->opts = *opts;
	else
		aw_pg_opts_default(&m->opts);
	return &m->mgr;
}

bool aw_pg_conn_ok(const aw_pg_conn *c)
{
	return c && !c->broken && PQstatus(c->pg) == CONNECTION_OK;
}

int aw_pg_conn_pid(const aw_pg_conn *c) { return c ? c->pid : 0; }

char aw_pg_conn_tx_status(const aw_pg_conn *c)
{
	if (!aw_pg_conn_ok(c))
		return '?';
	switch (PQtransactionStatus(c->pg)) {
	case PQTRANS_IDLE: return 'I';
	case PQTRANS_INTRANS: return 'T';
	case PQTRANS_INERROR: return 'E';
	default: return '?';
	}
}

size_t aw_pg_conn_cached(const aw_pg_conn *c) { return c ? c->ncached : 0; }
uint64_t aw_pg_conn_queries(const aw_pg_conn *c) { return c ? c->queries : 0; }
void *aw_pg_conn_pgconn(aw_pg_conn *c) { return c ? c->pg : NULL; }

const aw_pg_error_info *aw_pg_last_error(const aw_pg_conn *c)
{
	static const aw_pg_error_info none = { "", "", "", NULL, NULL, 0 };
	return c ? &c->err : &none;
}

/* ---- waiting on the socket -------------------------------------------------- */

/* Bytes already readable that an edge-triggered wait would not report
 * again: unread TLS records, or bytes in the socket. */
bool aw_pg_input_pending(aw_pg_conn *c)
{
	SSL *ssl = PQsslInUse(c->pg) ? PQsslStruct(c->pg, "OpenSSL") : NULL;
	if (ssl && SSL_has_pending(ssl))
		return true;
	char b;
	ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n >= 0)
		return true;          /* data, or EOF: PQconsumeInput will see it */
	return errno != EAGAIN && errno != EWOULDBLOCK;
}

int aw_pg_flush(aw_pg_conn *c)
{
	/* Everything the server sent for earlier statements was read up to
	 * its ReadyForQuery; what comes next comes with a new edge. */
	c->read_since_send = false;
	for (;;) {
		int r = PQflush(c->pg);
		if (r == 0)
			return 0;
		if (r < 0)
			return aw_pg_conn_fail(c, "lost while sending");
		int ready = aw_fd_wait_any(c->fd, AW_READABLE | AW_WRITABLE, AW_NEVER);
		if (ready < 0)
			return ready;
		if (ready & AW_READABLE) {
			c->read_since_send = true;
			if (!PQconsumeInput(c->pg))
				return aw_pg_conn_fail(c, "lost while sending");
		}
	}
}

int aw_pg_wait_result(aw_pg_conn *c)
{
	/* First wait after a send: nothing of the answer was read yet, so
	 * its bytes will come with an edge. After any read, check for bytes
	 * that it left behind before waiting for a new edge. */
	while (PQisBusy(c->pg)) {
		if (!c->read_since_send || !aw_pg_input_pending(c)) {
			int rc = aw_fd_wait(c->fd, AW_READABLE, AW_NEVER);
			if (rc < 0)
				return rc;
		}
		c->read_since_send = true;
		if (!PQconsumeInput(c->pg))
			return aw_pg_conn_fail(c, "lost while reading");
	}
	return 0;
}

int aw_pg_wait_input(aw_pg_conn *c)
{
	if (!aw_pg_input_pending(c)) {
		int rc = aw_fd_wait(c->fd, AW_READABLE, AW_NEVER);
		if (rc < 0)
			return rc;
	}
	c->read_since_send = true;
	if (!PQconsumeInput(c->pg))
		return aw_pg_conn_fail(c, "lost while waiting for input");
	return 0;
}

/* ---- behind a transaction-mode pooler ---------------------------------------- */

/* The next keyword of sql at *i (letters and '_'), upper-cased into w;
 * whitespace and comments before it skipped. */
static size_t next_word(const char *sql, size_t *i, char *w, size_t wl)
{
	size_t k = *i;
	for (;;) {
		while (sql[k] == ' ' || sql[k] == '\t' || sql[k] == '\n' || sql[k] == '\r' || sql[k] == '(')
			k++;
		if (sql[k] == '-' && sql[k + 1] == '-') {
			while (sql[k] && sql[k] != '\n')
				k++;
		} else if (sql[k] == '/' && sql[k + 1] == '*') {
			const char *end = strstr(sql + k + 2, "*/");
			k = end ? (size_t)(end - sql) + 2 : strlen(sql);
		} else {
			break;
		}
	}
	size_t n = 0;
	while (((sql[k] | 0x20) >= 'a' && (sql[k] | 0x20) <= 'z') || sql[k] == '_') {
		if (n + 1 < wl)
			w[n++] = (char)(sql[k] & ~0x20);
		k++;
	}
	w[n] = 0;
	*i = k;
	return n;
}

static bool contains_ci(const char *s, const char *needle)
{
	size_t nl = strlen(needle);
	for (; *s; s++)
		if (!strncasecmp(s, needle, nl))
			return true;
	return false;
}

int aw_pg_session_guard(aw_pg_conn *c, const char *sql, const char *what)
{
	if (!c || !sql || !c->opts.transaction_pooler)
		return 0;
	char w1[16], w2[16];
	size_t i = 0;
	next_word(sql, &i, w1, sizeof w1);
	next_word(sql, &i, w2, sizeof w2);
	bool in_tx = c->pg && PQtransactionStatus(c->pg) == PQTRANS_INTRANS;
	const char *why = NULL;
	if (!strcmp(w1, "LISTEN"))
		why = "LISTEN needs a session of its own: notifications go to whichever client has the server "
		      "connection next. Listen on a direct connection to the server";
	else if (!strcmp(w1, "SET") && strcmp(w2, "LOCAL") && strcmp(w2, "TRANSACTION") && strcmp(w2, "CONSTRAINTS"))
		why = "SET lasts for the session, and the server connection goes to other clients after this "
		      "transaction. Use SET LOCAL inside a transaction (aw_pg_tx)";
	else if (!strcmp(w1, "PREPARE") && strcmp(w2, "TRANSACTION"))
		why = "a prepared statement lives on one server connection; the next transaction may run on another";
	else if (!strcmp(w1, "CREATE") && (!strcmp(w2, "TEMP") || !strcmp(w2, "TEMPORARY")) && !in_tx)
		why = "a temporary table outside a transaction lives on a server connection other clients get "
		      "next. Create it inside a transaction with ON COMMIT DROP";
	else if (!strcmp(w1, "DECLARE") && contains_ci(sql, "with hold"))
		why = "a cursor WITH HOLD outlives the transaction, on a server connection other clients get next";
	else if (contains_ci(sql, "pg_advisory_lock(") || contains_ci(sql, "pg_advisory_lock_shared(") ||
		 contains_ci(sql, "pg_try_advisory_lock("))
		why = "a session advisory lock stays with a server connection other clients get next. "
		      "Use pg_advisory_xact_lock inside a transaction";
	if (!why)
		return 0;
	return aw_raise(-ENOTSUP, "%s: not through a transaction-mode pooler (aw_pg_opts.transaction_pooler): %s",
			what, why);
}

/* ---- session state tracking ------------------------------------------------- */

/* Statements whose effect ends with the statement or the transaction. Any
 * other command tag (SET, LISTEN, DECLARE, PREPARE, CREATE ..., DISCARD)
 * may leave session state behind, so the pool resets the connection. */
static const char *const clean_tags[] = {
	"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE", "BEGIN",
	"START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "CLOSE CURSOR", "SHOW",
	"VALUES", "TABLE", "EXPLAIN",
};

void aw_pg_note_command(aw_pg_conn *c, const PGresult *r)
{
	const char *tag = PQcmdStatus((PGresult *)r);
	if (!tag || !*tag)
		return;
	if (!strcmp(tag, "DISCARD ALL") || !strcmp(tag, "DEALLOCATE ALL"))
		aw_pg_cache_forget(c);
	for (size_t i = 0; i < sizeof clean_tags / sizeof clean_tags[0]; i++) {
		size_t n = strlen(clean_tags[i]);
		if (!strncmp(tag, clean_tags[i], n) && (tag[n] == 0 || tag[n] == ' '))
			return;
	}
	c->dirty = true;
}

int aw_pg_begin(aw_pg_conn *c, const char *what)
{
	if (!c)
		return aw_raise(-EINVAL, "%s: connection is NULL", what);
	if (c->busy)
		return aw_raise(-EBUSY, "%s: the connection is in use by another operation "
				"(one statement at a time per connection; use a pool)", what);
	if (c->fresh) {
		/* The holder's first statement: if the server closed the
		 * connection while it sat in the pool, nothing was sent yet,
		 * so the pool may replace it (pool.c). */
		int rc = aw_pg_pool_revive(c);
		if (rc < 0)
			return rc;
	}
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		return aw_raise(-ECONNRESET, "%s: the connection is broken", what);
	}
	if (c->pipe)
		return aw_raise(-EBUSY, "%s: the connection is in pipeline mode", what);
	c->busy = true;
	aw_pg_error_reset(c);
	return 0;
}

/* ---- results -------------------------------------------------------------- */

int aw_pg_collect(aw_pg_conn *c, PGresult **out)
{
	PGresult *keep = NULL, *err = NULL;
	if (out)
		*out = NULL;
	for (;;) {
		int rc = aw_pg_wait_result(c);
		if (rc < 0) {
			PQclear(keep);
			PQclear(err);
			return rc;
		}
		PGresult *r = PQgetResult(c->pg);
		if (!r)
			break;
		switch (PQresultStatus(r)) {
		case PGRES_COPY_IN:
		case PGRES_COPY_OUT:
		case PGRES_COPY_BOTH:
			PQclear(keep);
			PQclear(err);
			if (out)
				*out = r;
			else
				PQclear(r);
			return 1;
		case PGRES_FATAL_ERROR:
		case PGRES_BAD_RESPONSE:
		case PGRES_NONFATAL_ERROR:
			if (!err)
				err = r;
			else
				PQclear(r);
			break;
		default:
			aw_pg_note_command(c, r);
			PQclear(keep);
			keep = r;
			break;
		}
	}
	if (err) {
		PQclear(keep);
		return aw_pg_server_error(c, err, NULL);
	}
	if (PQstatus(c->pg) != CONNECTION_OK) {
		PQclear(keep);
		return aw_pg_conn_fail(c, "lost");
	}
	if (out)
		*out = keep;
	else
		PQclear(keep);
	return 0;
}

/* ---- interruption ------------------------------------------------------------ */

static int send_cancel(void *arg)
{
	aw_pg_conn *c = arg;
	char errbuf[256];
	return PQcancel(c->cancel, errbuf, sizeof errbuf) ? 0 : -ECONNREFUSED;
}

/* Runs under aw_cleanup_run: shielded, bounded, the error in flight kept. */
static int send_cancel_shielded(void *arg, int err)
{
	(void)err;
	return aw_to_thread(send_cancel, arg);
}

int aw_pg_cancel_request(aw_pg_conn *c)
{
	if (!c->cancel)
		return -ENOTSUP;
	return aw_cleanup_run(send_cancel_shielded, c, CANCEL_BUDGET);
}

/* Drain every result of the statement in flight (after a cancel request),
 * ending a COPY the server may have started. Returns 0 if the connection
 * is idle again. */
static int drain(aw_pg_conn *c)
{
	for (;;) {
		int rc = aw_pg_wait_result(c);
		if (rc < 0)
			return rc;
		PGresult *r = PQgetResult(c->pg);
		if (!r)
			break;
		ExecStatusType st = PQresultStatus(r);
		/* A statement of the batch that completed before the cancel
		 * (SET ...; SELECT pg_sleep(...)) changed the session all the
		 * same: the pool must reset it. */
		if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
			aw_pg_note_command(c, r);
		PQclear(r);
		if (st == PGRES_COPY_IN) {
			if (PQputCopyEnd(c->pg, "cancelled by the client") < 0)
				return -ECONNRESET;
			if ((rc = aw_pg_flush(c)) < 0)
				return rc;
		} else if (st == PGRES_COPY_OUT) {
			char *buf;
			int n;
			while ((n = PQgetCopyData(c->pg, &buf, 1)) != -1) {
				if (n == -2)
					return -ECONNRESET;
				if (n > 0) {
					PQfreemem(buf);
					continue;
				}
				if ((rc = aw_pg_wait_input(c)) < 0)
					return rc;
			}
		} else if (st == PGRES_COPY_BOTH) {
			return -EPROTO;
		}
	}
	return PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_ACTIVE ? 0 : -ECONNRESET;
}

/* After an interruption, under aw_cleanup_run: finish sending what is
 * buffered (a half-sent message would desynchronise the protocol), ask the
 * server to cancel, then read everything up to ReadyForQuery. 0 when the
 * connection is clean again. */
static int stop_statement(void *arg, int err)
{
	(void)err;
	aw_pg_conn *c = arg;
	if (aw_pg_flush(c) == 0 && c->cancel && PQtransactionStatus(c->pg) == PQTRANS_ACTIVE) {
		int rc = aw_to_thread(send_cancel, c);
		return rc < 0 ? rc : drain(c);
	}
	if (PQstatus(c->pg) == CONNECTION_OK)
		return drain(c);
	return -ECONNRESET;
}

int aw_pg_interrupted(aw_pg_conn *c, int rc)
{
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		return rc;
	}
	if (rc != -ECANCELED && rc != -ETIMEDOUT) {
		/* Not an interruption we can recover from (e.g. the fd was
		 * forgotten under us): the protocol state is unknown. */
		c->broken = true;
		return rc;
	}
	bool had_error = aw_error_pending() != 0;
	if (aw_cleanup_run(stop_statement, c, CANCEL_BUDGET) < 0)
		c->broken = true;
	if (!had_error)
		return aw_raise(rc, "PostgreSQL statement interrupted");
	return rc;
}

/* ---- the prepared-statement cache ---------------------------------------- */

static uint64_t hash_sql(const char *s)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static void lru_unlink(aw_pg_conn *c, aw_pg_stmt *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_head(aw_pg_conn *c, aw_pg_stmt *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static aw_pg_stmt *cache_find(aw_pg_conn *c, const char *sql, uint64_t h)
{
	if (!c->nbuckets)
		return NULL;
	for (aw_pg_stmt *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && !strcmp(e->sql, sql))
			return e;
	return NULL;
}

static void cache_remove(aw_pg_conn *c, aw_pg_stmt *e)
{
	aw_pg_stmt **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	c->ncached--;
	free(e->sql);
	free(e);
}

void aw_pg_cache_forget(aw_pg_conn *c)
{
	while (c->lru_head)
		cache_remove(c, c->lru_head);
}

static int cache_insert(aw_pg_conn *c, aw_pg_stmt *e)
{
	if (!c->nbuckets || c->ncached + 1 > c->nbuckets) {
		size_t n = c->nbuckets ? c->nbuckets * 2 : 16;
		aw_pg_stmt **b = aw__calloc(n, sizeof *b);
		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < c->nbuckets; i++) {
			aw_pg_stmt *x = c->buckets[i];
			while (x) {
				aw_pg_stmt *next = x->hnext;
				x->hnext = b[x->hash & (n - 1)];
				b[x->hash & (n - 1)] = x;
				x = next;
			}
		}
		free(c->buckets);
		c->buckets = b;
		c->nbuckets = n;
	}
	e->hnext = c->buckets[e->hash & (c->nbuckets - 1)];
	c->buckets[e->hash & (c->nbuckets - 1)] = e;
	lru_push_head(c, e);
	c->ncached++;
	return 0;
}

/* Send, flush and collect; on an interruption, cancel and drain. */
static int roundtrip(aw_pg_conn *c, PGresult **out)
{
	int rc = aw_pg_flush(c);
	if (rc == 0)
		rc = aw_pg_collect(c, out);
	if (rc < 0 && rc != -AW_EPG)
		return aw_pg_interrupted(c, rc);
	return rc;
}

int aw_pg_roundtrip(aw_pg_conn *c, PGresult **out)
{
	return roundtrip(c, out);
}

int aw_pg_simple(aw_pg_conn *c, const char *sql)
{
	if (!PQsendQuery(c->pg, sql))
		return aw_pg_conn_fail(c, "cannot send");
	int rc = roundtrip(c, NULL);
	if (rc == 1) {            /* a COPY: not what this call is for */
		(void)aw_pg_interrupted(c, -ECANCELED);
		aw_error_clear();
		return aw_raise(-EINVAL, "COPY is not supported here; use aw_pg_copy_in/out");
	}
	return rc;
}

/* Make sure `sql` is prepared on the connection: the cached statement, or
 * a new one (evicting the least recently used). */
static int stmt_get(aw_pg_conn *c, const char *sql, int nparams, aw_pg_stmt **out)
{
	uint64_t h = hash_sql(sql);
	aw_pg_stmt *e = cache_find(c, sql, h);
	if (e) {
		if (c->lru_head != e) {
			lru_unlink(c, e);
			lru_push_head(c, e);
		}
		*out = e;
		return 0;
	}
	if (c->ncached >= (size_t)c->opts.stmt_cache && c->lru_tail) {
		char dealloc[64];
		snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", c->lru_tail->name);
		cache_remove(c, c->lru_tail);
		int rc = aw_pg_simple(c, dealloc);
		/* Deallocated behind our back (a DEALLOCATE by name): what we
		 * wanted is done. Inside a transaction the error aborted it, and
		 * the caller must hear that. */
		if (rc == -AW_EPG && !strcmp(c->err.sqlstate, "26000") &&
		    PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
			aw_error_clear();
			aw_pg_error_reset(c);
			rc = 0;
		}
		if (rc < 0)
			return rc;
	}
	e = aw__calloc(1, sizeof *e);
	if (!e || !(e->sql = aw__strdup(sql))) {
		free(e);
		return aw_raise(-ENOMEM, "statement cache: out of memory");
	}
	e->hash = h;
	e->nparams = nparams;
	snprintf(e->name, sizeof e->name, "aw_%llu", (unsigned long long)++c->next_stmt);
	if (!PQsendPrepare(c->pg, e->name, sql, nparams, NULL)) {
		free(e->sql);
		free(e);
		return aw_pg_conn_fail(c, "cannot send");
	}
	int rc = roundtrip(c, NULL);
	if (rc < 0) {
		free(e->sql);
		free(e);
		return rc;
	}
	if (cache_insert(c, e) < 0) {
		free(e->sql);
		free(e);
		return aw_raise(-ENOMEM, "statement cache: out of memory");
	}
	*out = e;
	return 0;
}

int aw_pg_stmt_lookup_or_send(aw_pg_conn *c, const char *sql, int nparams, const char **name,
			      aw_pg_stmt_ref *prep)
{
	memset(prep, 0, sizeof *prep);
	uint64_t h = hash_sql(sql);
	aw_pg_stmt *e = cache_find(c, sql, h);
	if (e) {
		if (c->lru_head != e) {
			lru_unlink(c, e);
			lru_push_head(c, e);
		}
		*name = e->name;
		return 0;
	}
	if (c->ncached >= (size_t)c->opts.stmt_cache && c->lru_tail) {
		char dealloc[64];
		snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", c->lru_tail->name);
		cache_remove(c, c->lru_tail);
		/* With a Sync of its own: if it fails (deallocated behind our
		 * back), the error aborts only this segment, not the query's
		 * Parse and Execute that follow. */
		if (!PQsendQueryParams(c->pg, dealloc, 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c->pg))
			return aw_pg_conn_fail(c, "cannot queue");
		prep->dealloc = true;
	}
	e = aw__calloc(1, sizeof *e);
	if (!e || !(e->sql = aw__strdup(sql))) {
		free(e);
		return aw_raise(-ENOMEM, "statement cache: out of memory");
	}
	e->hash = h;
	e->nparams = nparams;
	snprintf(e->name, sizeof e->name, "aw_%llu", (unsigned long long)++c->next_stmt);
	if (!PQsendPrepare(c->pg, e->name, sql, nparams, NULL)) {
		free(e->sql);
		free(e);
		return aw_pg_conn_fail(c, "cannot queue");
	}
	if (cache_insert(c, e) < 0) {
		free(e->sql);
		free(e);
		return aw_raise(-ENOMEM, "statement cache: out of memory");
	}
	prep->stmt = true;
	memcpy(prep->name, e->name, sizeof prep->name);
	*name = e->name;
	return 0;
}

void aw_pg_stmt_drop(aw_pg_conn *c, const aw_pg_stmt_ref *prep)
{
	if (!prep->stmt)
		return;
	for (aw_pg_stmt *e = c->lru_head; e; e = e->lru_next)
		if (!strcmp(e->name, prep->name)) {
			cache_remove(c, e);
			return;
		}
}

/* The statement behind a cached entry is gone or changed shape: drop it
 * and run the query again (only outside a transaction, where the failed
 * attempt changed nothing). */
static bool retry_uncached(aw_pg_conn *c, aw_pg_stmt *e)
{
	const char *st = c->err.sqlstate;
	if (strcmp(st, "26000") && strcmp(st, "0A000"))
		return false;
	if (!strcmp(st, "26000"))
		aw_pg_cache_forget(c);   /* DISCARD/DEALLOCATE ALL behind our back */
	else
		cache_remove(c, e);
	return PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

static int run(aw_pg_conn *c, PGresult **out, const char *sql, int nparams, const char *const *params,
	       const char *what)
{
	if (out)
		*out = NULL;
	if (!sql)
		return aw_raise(-EINVAL, "%s: sql is NULL", what);
	if (nparams < 0 || nparams > MAX_PARAMS || (nparams > 0 && !params))
		return aw_raise(-EINVAL, "%s: %d parameters (0..%d, with an array)", what, nparams, MAX_PARAMS);
	int rc = aw_pg_session_guard(c, sql, what);
	if (rc < 0)
		return rc;
	rc = aw_pg_begin(c, what);
	if (rc < 0)
		return rc;
	aw_pg_qtrace qt;
	const char *text = aw_pg_trace_begin(&qt, c, sql);
	for (int attempt = 0;; attempt++) {
		aw_pg_stmt *e = NULL;
		if (text == sql && c->opts.stmt_cache > 0) {
			rc = stmt_get(c, sql, nparams, &e);
			if (rc < 0)
				break;
			if (!PQsendQueryPrepared(c->pg, e->name, nparams, params, NULL, NULL, 0)) {
				rc = aw_pg_conn_fail(c, "cannot send");
				break;
			}
		} else if (!PQsendQueryParams(c->pg, text, nparams, NULL, params, NULL, NULL, 0)) {
			rc = aw_pg_conn_fail(c, "cannot send");
			break;
		}
		rc = roundtrip(c, out);
		if (rc == -AW_EPG && e && attempt == 0 && retry_uncached(c, e)) {
			aw_error_clear();
			continue;
		}
		break;
	}
	if (rc == 1) {
		PQclear(*out);
		*out = NULL;
		(void)aw_pg_interrupted(c, -ECANCELED);
		aw_error_clear();
		rc = aw_raise(-EINVAL, "%s: COPY is not supported here; use aw_pg_copy_in/out", what);
	}
	aw_pg_trace_end(&qt, rc);
	c->queries++;
	aw_pg_end(c);
	return rc;
}

int aw_pg_query(aw_pg_conn *c, aw_pg_result **out, const char *sql, int nparams, const char *const *params)
{
	PGresult *r = NULL;
	if (!out)
		return aw_raise(-EINVAL, "aw_pg_query: out is NULL");
	*out = NULL;
	int rc = run(c, &r, sql, nparams, params, "aw_pg_query");
	if (rc < 0)
		return rc;
	if (!r)
		return aw_raise(-EPROTO, "aw_pg_query: the statement returned no result");
	*out = aw_pg_wrap(r);
	return 0;
}

int aw_pg_exec(aw_pg_conn *c, uint64_t *rows, const char *sql, int nparams, const char *const *params)
{
	if (rows)
		*rows = 0;
	PGresult *r = NULL;
	int rc = run(c, &r, sql, nparams, params, "aw_pg_exec");
	if (rc < 0)
		return rc;
	if (rows && r)
		*rows = (uint64_t)aw_pg_affected(aw_pg_wrap(r));
	PQclear(r);
	return 0;
}

int aw_pg_exec_script(aw_pg_conn *c, const char *sql)
{
	if (!sql)
		return aw_raise(-EINVAL, "aw_pg_exec_script: sql is NULL");
	int rc = aw_pg_session_guard(c, sql, "aw_pg_exec_script");
	if (rc < 0)
		return rc;
	rc = aw_pg_begin(c, "aw_pg_exec_script");
	if (rc < 0)
		return rc;
	aw_pg_qtrace qt;
	rc = aw_pg_simple(c, aw_pg_trace_begin(&qt, c, sql));
	aw_pg_trace_end(&qt, rc);
	c->queries++;
	aw_pg_end(c);
	return rc;
}

/* ---- the query as a manager --------------------------------------------------- */

static int rows_enter(aw_mgr *m)
{
	aw_pg_rows *q = (aw_pg_rows *)m;
	return aw_pg_query(q->conn, &q->res, q->sql, q->nparams, q->params);
}

static int rows_exit(aw_mgr *m, int err)
{
	aw_pg_rows *q = (aw_pg_rows *)m;
	aw_pg_result_free(q->res);
	q->res = NULL;
	return err;
}

static const aw_mgr_ops rows_ops = { "pg rows", rows_enter, rows_exit, NULL };

aw_mgr *aw_pg_rows_init(aw_pg_rows *q, aw_pg_conn *c, const char *sql, int nparams, const char *const *params)
{
	q->mgr.ops = &rows_ops;
	q->conn = c;
	q->sql = sql;
	q->nparams = nparams;
	q->params = params;
	q->res = NULL;
	return &q->mgr;
}
