/* SPDX-License-Identifier: MIT */
/*
 * COPY: FROM STDIN as a manager, TO STDOUT as an async iterator.
 *
 * Both hold the connection's busy guard from enter to exit: while the
 * server is in a COPY state the protocol carries nothing else.
 *
 * COPY FROM STDIN: enter sends the statement and waits for CopyInResponse;
 * aw_pg_copy_write queues data in libpq and flushes (waiting for the
 * socket) once COPY_FLUSH_AT bytes are queued, so memory stays bounded
 * while the send path sets the pace; exit ends the copy with CopyDone (a
 * clean block) or CopyFail (a failed one: the server then stores nothing)
 * and collects the final result.
 *
 * COPY TO STDOUT: enter sends the statement and waits for CopyOutResponse;
 * each step takes one data row from libpq (PQgetCopyData, async), waiting
 * for input when none is buffered; after the last row the final result
 * gives the row count. Leaving early sends a cancel request and drains the
 * rest (aw_pg_interrupted), so the connection is usable again.
 */
#include "internal.h"

#include <string.h>

/* Queue this much COPY data in libpq before a flush waits for the socket. */
#define COPY_FLUSH_AT (64 * 1024)

/* Send `sql`, wait for the COPY state `want`. Holds the busy guard on
 * success. */
static int copy_start(aw_pg_conn *c, const char *sql, ExecStatusType want, const char *what)
{
	if (!sql)
		return aw_raise(-EINVAL, "%s: sql is NULL", what);
	int rc = aw_pg_begin(c, what);
	if (rc < 0)
		return rc;
	PGresult *r = NULL;
	if (!PQsendQuery(c->pg, sql)) {
		rc = aw_pg_conn_fail(c, "cannot send");
	} else {
		rc = aw_pg_roundtrip(c, &r);
		if (rc == 1 && PQresultStatus(r) != want) {
			/* The other direction: end it and say what was expected. */
			(void)aw_pg_interrupted(c, -ECANCELED);
			aw_error_clear();
			rc = aw_raise(-EINVAL, "%s: the statement is not a COPY %s", what,
				      want == PGRES_COPY_IN ? "FROM STDIN" : "TO STDOUT");
		} else if (rc == 0) {
			rc = aw_raise(-EINVAL, "%s: the statement is not a COPY %s (it ran to completion)", what,
				      want == PGRES_COPY_IN ? "FROM STDIN" : "TO STDOUT");
		}
	}
	PQclear(r);
	c->queries++;
	if (rc < 0) {
		aw_pg_end(c);
		return rc;
	}
	return 0;
}

/* ---- COPY FROM STDIN -------------------------------------------------------- */

static int copy_in_enter(aw_mgr *m)
{
	aw_pg_copy_in *cp = (aw_pg_copy_in *)m;
	cp->rows = 0;
	cp->active = false;
	int rc = copy_start(cp->conn, cp->sql, PGRES_COPY_IN, "aw_pg_copy_in");
	if (rc < 0)
		return rc;
	cp->conn->copy_unflushed = 0;
	cp->active = true;
	return 0;
}

/* The server left the COPY on its own (it reported an error, or the session
 * ended): collect why. The copy is over either way. */
static int copy_in_ended(aw_pg_copy_in *cp)
{
	aw_pg_conn *c = cp->conn;
	cp->active = false;
	if (PQstatus(c->pg) != CONNECTION_OK)
		return aw_pg_conn_fail(c, "lost during COPY");
	c->read_since_send = true;   /* bytes may have arrived unread */
	int rc = aw_pg_collect(c, NULL);
	if (rc < 0 && rc != -AW_EPG)
		return aw_pg_interrupted(c, rc);
	if (rc >= 0)
		return aw_raise(-EPROTO, "aw_pg_copy_write: the server ended the COPY without an error");
	return rc;
}

int aw_pg_copy_write(aw_pg_copy_in *cp, const void *data, size_t len)
{
	if (!cp || !cp->active)
		return aw_raise(-EINVAL, "aw_pg_copy_write: no COPY in progress (use it inside the copy's block)");
	aw_pg_conn *c = cp->conn;
	if (len > INT32_MAX - 64)
		return aw_raise(-EINVAL, "aw_pg_copy_write: %zu bytes in one write (split it)", len);
	if (len == 0)
		return 0;
	for (;;) {
		int r = PQputCopyData(c->pg, data, (int)len);
		if (r == 1)
			break;
		if (r < 0)
			return copy_in_ended(cp);
		/* 0: libpq could not make room without blocking. */
		int rc = aw_pg_flush(c);
		if (rc < 0)
			return rc == -ECANCELED || rc == -ETIMEDOUT ? rc : copy_in_ended(cp);
		c->copy_unflushed = 0;
	}
	c->copy_unflushed += len;
	if (c->copy_unflushed >= COPY_FLUSH_AT) {
		int rc = aw_pg_flush(c);
		if (rc < 0)
			return rc == -ECANCELED || rc == -ETIMEDOUT ? rc : copy_in_ended(cp);
		c->copy_unflushed = 0;
	}
	return 0;
}

static int copy_in_exit(aw_mgr *m, int err)
{
	aw_pg_copy_in *cp = (aw_pg_copy_in *)m;
	aw_pg_conn *c = cp->conn;
	if (!cp->active) {
		/* The server ended the COPY during a write (its error was that
		 * write's result), or the connection was lost. */
		aw_pg_end(c);
		if (err)
			return err;
		if (c->broken)
			return aw_raise(-ECONNRESET, "aw_pg_copy_in: the connection was lost; nothing was copied");
		return aw_raise(-AW_EPG, "aw_pg_copy_in: the COPY had already failed%s%s%s; nothing was stored",
				c->err.sqlstate[0] ? " (SQLSTATE " : "", c->err.sqlstate, c->err.sqlstate[0] ? ")" : "");
	}
	cp->active = false;
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		aw_pg_end(c);
		return err ? err : aw_raise(-ECONNRESET, "aw_pg_copy_in: the connection was lost; nothing was copied");
	}

	/* CopyDone, or CopyFail with a reason the server logs and echoes. */
	int rc = 0;
	for (;;) {
		int r = PQputCopyEnd(c->pg, err ? "aborted by the client: the block failed" : NULL);
		if (r == 1)
			break;
		if (r < 0) {
			rc = aw_pg_conn_fail(c, "cannot end the COPY");
			break;
		}
		if ((rc = aw_pg_flush(c)) < 0)
			break;
	}
	if (rc == 0)
		rc = aw_pg_flush(c);
	PGresult *res = NULL;
	if (rc == 0) {
		/* The server may have answered during the copy (a notice, an
		 * early error) with bytes we have not read: look before waiting. */
		c->read_since_send = true;
		rc = aw_pg_collect(c, &res);
		if (rc == 1) {       /* another COPY state: not possible after CopyDone */
			PQclear(res);
			res = NULL;
			c->broken = true;
			rc = aw_raise(-EPROTO, "aw_pg_copy_in: unexpected COPY state after the end of the copy");
		}
	}
	if (rc < 0 && rc != -AW_EPG && rc != -EPROTO)
		rc = aw_pg_interrupted(c, rc);
	aw_pg_end(c);
	if (err) {
		/* The abort's own error (57014, "COPY from stdin failed") is the
		 * expected answer; the block's error goes on. */
		PQclear(res);
		return err;
	}
	if (rc < 0) {
		PQclear(res);
		return rc;   /* bad data, a constraint ...: nothing was stored */
	}
	cp->rows = res ? aw_pg_affected(aw_pg_wrap(res)) : 0;
	PQclear(res);
	return 0;
}

static void copy_in_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_copy_in *cp = (aw_pg_copy_in *)m;
	snprintf(buf, len, "COPY FROM STDIN%s", cp->active ? " (sending)" : "");
}

static const aw_mgr_ops copy_in_ops = { "pg copy in", copy_in_enter, copy_in_exit, copy_in_describe };

aw_mgr *aw_pg_copy_in_init(aw_pg_copy_in *cp, aw_pg_conn *c, const char *sql)
{
	memset(cp, 0, sizeof *cp);
	cp->mgr.ops = &copy_in_ops;
	cp->conn = c;
	cp->sql = sql;
	return &cp->mgr;
}

/* ---- COPY TO STDOUT ----------------------------------------------------------- */

static int copy_out_enter(aw_mgr *m)
{
	aw_pg_copy_out *cp = (aw_pg_copy_out *)m;
	cp->rows = 0;
	cp->active = false;
	cp->buf = NULL;
	cp->chunk = (aw_chunk){ .data = NULL };
	int rc = copy_start(cp->conn, cp->sql, PGRES_COPY_OUT, "aw_pg_copy_out");
	if (rc < 0)
		return rc;
	cp->active = true;
	return 0;
}

static void copy_out_drop(aw_pg_copy_out *cp)
{
	if (cp->buf)
		PQfreemem(cp->buf);
	cp->buf = NULL;
	cp->chunk.offset += (int64_t)cp->chunk.len;
	cp->chunk.data = NULL;
	cp->chunk.len = 0;
}

static int copy_out_next(aw_iter *it, void **item)
{
	aw_pg_copy_out *cp = (aw_pg_copy_out *)it;
	aw_pg_conn *c = cp->conn;
	copy_out_drop(cp);
	if (!cp->active)
		return 0;
	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(c->pg, &buf, 1);
		if (n > 0) {
			cp->buf = buf;
			cp->chunk.data = buf;
			cp->chunk.len = (size_t)n;
			*item = &cp->chunk;
			return 1;
		}
		if (n == -1)
			break;   /* the copy is done: the final result follows */
		if (n == -2) {
			cp->active = false;
			return aw_pg_conn_fail(c, "lost during COPY");
		}
		/* Stays active on a cancellation or deadline: the exit cancels
		 * the copy on the server and drains it. */
		int rc = aw_pg_wait_input(c);
		if (rc < 0) {
			if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
				c->broken = true;
				cp->active = false;
			}
			return rc;
		}
	}
	cp->active = false;
	PGresult *res = NULL;
	int rc = aw_pg_collect(c, &res);
	if (rc < 0) {
		/* A server error mid-copy (the query failed on some row) is
		 * final; an interruption cancels and drains. */
		if (rc != -AW_EPG)
			rc = aw_pg_interrupted(c, rc);
		return rc;
	}
	if (rc == 1) {
		PQclear(res);
		c->broken = true;
		return aw_raise(-EPROTO, "aw_pg_copy_out: unexpected COPY state after the end of the copy");
	}
	cp->rows = res ? aw_pg_affected(aw_pg_wrap(res)) : 0;
	PQclear(res);
	return 0;
}

static int copy_out_exit(aw_mgr *m, int err)
{
	aw_pg_copy_out *cp = (aw_pg_copy_out *)m;
	aw_pg_conn *c = cp->conn;
	copy_out_drop(cp);
	int rc = err;
	if (cp->active) {
		/* Left early (break, an error in the body, a cancellation): ask
		 * the server to stop and read the rest up to ReadyForQuery. */
		cp->active = false;
		if (!c->broken && PQstatus(c->pg) == CONNECTION_OK) {
			(void)aw_pg_interrupted(c, err == -ETIMEDOUT ? -ETIMEDOUT : -ECANCELED);
			if (!err)
				aw_error_clear();   /* the interruption was ours, not an error */
		}
		if (!err && (c->broken || PQstatus(c->pg) != CONNECTION_OK)) {
			c->broken = true;
			rc = aw_raise(-ECONNRESET, "aw_pg_copy_out: could not stop the COPY; the connection is broken");
		}
		/* The cancel's own error (57014) is not the block's business. */
		aw_pg_error_reset(c);
	}
	aw_pg_end(c);
	return rc;
}

static void copy_out_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_copy_out *cp = (aw_pg_copy_out *)m;
	snprintf(buf, len, "COPY TO STDOUT%s", cp->active ? " (receiving)" : "");
}

static const aw_mgr_ops copy_out_ops = { "pg copy out", copy_out_enter, copy_out_exit, copy_out_describe };

aw_iter *aw_pg_copy_out_init(aw_pg_copy_out *cp, aw_pg_conn *c, const char *sql)
{
	memset(cp, 0, sizeof *cp);
	cp->iter.mgr.ops = &copy_out_ops;
	cp->iter.next = copy_out_next;
	cp->conn = c;
	cp->sql = sql;
	return &cp->iter;
}
