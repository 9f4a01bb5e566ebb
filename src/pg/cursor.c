/* SPDX-License-Identifier: MIT */
/*
 * Cursors: an async iterator over a query's rows, fetched in batches.
 *
 * Enter DECLAREs a NO SCROLL cursor (named aw_cur_<n>, unique per
 * connection) for the caller's query with its parameters; each step hands
 * out the next row of the current batch, FETCHing the next batch when it
 * runs out; exit CLOSEs the cursor while the transaction can still run
 * statements (an aborted transaction or a lost session drops it anyway).
 * Without HOLD a cursor lives only inside a transaction, hence the
 * requirement. The connection is free between steps: the loop's body may
 * run other statements on it.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One statement (with optional text parameters) as its own protocol step:
 * busy guard, send unnamed (a cursor name is new every time, so caching is
 * no use), wait, collect. */
static int cursor_stmt(aw_pg_conn *c, PGresult **out, const char *sql, int nparams,
		       const char *const *params, const char *what)
{
	if (out)
		*out = NULL;
	int rc = aw_pg_begin(c, what);
	if (rc < 0)
		return rc;
	if (!PQsendQueryParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0)) {
		rc = aw_pg_conn_fail(c, "cannot send");
	} else {
		rc = aw_pg_roundtrip(c, out);
		if (rc == 1) {    /* a COPY: not a cursor's business */
			if (out) {
				PQclear(*out);
				*out = NULL;
			}
			(void)aw_pg_interrupted(c, -ECANCELED);
			aw_error_clear();
			rc = aw_raise(-EINVAL, "%s: COPY cannot run in a cursor", what);
		}
	}
	c->queries++;
	aw_pg_end(c);
	return rc;
}

static int cursor_enter(aw_mgr *m)
{
	aw_pg_cursor *cur = (aw_pg_cursor *)m;
	aw_pg_conn *c = cur->conn;
	cur->open = cur->ended = false;
	cur->cur.res = NULL;
	cur->cur.row = 0;
	if (!c)
		return aw_raise(-EINVAL, "aw_pg_cursor: connection is NULL");
	if (!cur->sql)
		return aw_raise(-EINVAL, "aw_pg_cursor: sql is NULL");
	if (cur->batch <= 0)
		return aw_raise(-EINVAL, "aw_pg_cursor: batch must be at least 1, not %d", cur->batch);
	if (cur->nparams < 0 || (cur->nparams > 0 && !cur->params))
		return aw_raise(-EINVAL, "aw_pg_cursor: %d parameters (with an array)", cur->nparams);
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		return aw_raise(-ECONNRESET, "aw_pg_cursor: the connection is broken");
	}
	if (PQtransactionStatus(c->pg) == PQTRANS_IDLE)
		return aw_raise(-EINVAL, "aw_pg_cursor: a cursor must run inside a transaction "
				"(enter an aw_pg_tx block on the connection first)");

	snprintf(cur->name, sizeof cur->name, "aw_cur_%llu", (unsigned long long)++c->cursor_seq);
	static const char prefix[] = "DECLARE %s NO SCROLL CURSOR FOR ";
	size_t n = strlen(cur->sql) + sizeof prefix + sizeof cur->name;
	char *sql = aw__malloc(n);
	if (!sql)
		return aw_raise(-ENOMEM, "aw_pg_cursor: out of memory");
	snprintf(sql, n, "DECLARE %s NO SCROLL CURSOR FOR %s", cur->name, cur->sql);
	/* A cursor without HOLD ends with the transaction: it leaves no
	 * session state for the pool to reset. */
	bool dirty = c->dirty;
	int rc = cursor_stmt(c, NULL, sql, cur->nparams, cur->params, "aw_pg_cursor (DECLARE)");
	free(sql);
	if (rc < 0)
		return rc;
	c->dirty = dirty;
	cur->open = true;
	return 0;
}

static int cursor_next(aw_iter *it, void **item)
{
	aw_pg_cursor *cur = (aw_pg_cursor *)it;
	if (cur->ended)
		return 0;
	if (cur->cur.res && cur->cur.row + 1 < aw_pg_nrows(cur->cur.res)) {
		cur->cur.row++;
		*item = &cur->cur;
		return 1;
	}
	/* The batch is used up. A short batch was the last one. */
	if (cur->cur.res) {
		bool last = aw_pg_nrows(cur->cur.res) < cur->batch;
		aw_pg_result_free(cur->cur.res);
		cur->cur.res = NULL;
		if (last) {
			cur->ended = true;
			return 0;
		}
	}
	char sql[80];
	snprintf(sql, sizeof sql, "FETCH FORWARD %d FROM %s", cur->batch, cur->name);
	PGresult *r = NULL;
	int rc = cursor_stmt(cur->conn, &r, sql, 0, NULL, "aw_pg_cursor (FETCH)");
	if (rc < 0)
		return rc;
	if (!r || PQntuples(r) == 0) {
		PQclear(r);
		cur->ended = true;
		return 0;
	}
	cur->cur.res = aw_pg_wrap(r);
	cur->cur.row = 0;
	*item = &cur->cur;
	return 1;
}

static int cursor_exit(aw_mgr *m, int err)
{
	aw_pg_cursor *cur = (aw_pg_cursor *)m;
	aw_pg_conn *c = cur->conn;
	aw_pg_result_free(cur->cur.res);
	cur->cur.res = NULL;
	if (!cur->open)
		return err;
	cur->open = false;
	cur->ended = true;
	/* Only a transaction that still runs statements has the cursor to
	 * close: an aborted one drops it at ROLLBACK, a lost session with it. */
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_INTRANS)
		return err;
	char sql[64];
	snprintf(sql, sizeof sql, "CLOSE %s", cur->name);
	int rc = cursor_stmt(c, NULL, sql, 0, NULL, "aw_pg_cursor (CLOSE)");
	if (err)
		return err;   /* the block's error is the one that matters */
	return rc;
}

static void cursor_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_cursor *cur = (aw_pg_cursor *)m;
	snprintf(buf, len, "cursor %s, batches of %d", cur->open ? cur->name : "(closed)", cur->batch);
}

static const aw_mgr_ops cursor_ops = { "pg cursor", cursor_enter, cursor_exit, cursor_describe };

aw_iter *aw_pg_cursor_init(aw_pg_cursor *cur, aw_pg_conn *c, int batch, const char *sql, int nparams,
			   const char *const *params)
{
	memset(cur, 0, sizeof *cur);
	cur->iter.mgr.ops = &cursor_ops;
	cur->iter.next = cursor_next;
	cur->conn = c;
	cur->batch = batch;
	cur->sql = sql;
	cur->nparams = nparams;
	cur->params = params;
	return &cur->iter;
}
