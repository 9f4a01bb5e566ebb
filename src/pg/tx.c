/* SPDX-License-Identifier: MIT */
/*
 * Transactions as managers: BEGIN at enter, COMMIT on a clean exit,
 * ROLLBACK on any error or cancellation. A block inside another
 * transaction block of the same connection is a savepoint instead.
 *
 * The exit runs shielded (the core's rule for exits), so the ROLLBACK of a
 * cancelled or timed-out block is really sent and awaited; the block's
 * error then goes on unchanged. The statements sent here are fixed
 * keywords and generated savepoint names only: never a user value.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Savepoint names are "aw_sp_<depth>". Blocks nest strictly (LIFO), and
 * PostgreSQL's RELEASE / ROLLBACK TO act on the most recent savepoint of a
 * name, so depth is enough to name them. */
#define SAVEPOINT_FMT "aw_sp_%u"
/* How long the ROLLBACK of an interrupted BEGIN may take. */
#define UNDO_BUDGET AW_SEC(5)

/* Run one transaction-control statement as its own protocol step (busy
 * guard, no parameters, not cached). When it succeeds, the connection's
 * last error (aw_pg_last_error) is put back as it was: after a block fails
 * on a server error and rolls back, the caller still sees that error's
 * SQLSTATE, not an empty one. When it fails on a server error, the new
 * error replaces it. */
static int control(aw_pg_conn *c, const char *sql, const char *what)
{
	PGresult *saved = c->err_res;
	aw_pg_error_info info = c->err;
	c->err_res = NULL;
	int rc = aw_pg_begin(c, what);
	if (rc == 0) {
		rc = aw_pg_simple(c, sql);
		c->queries++;
		aw_pg_end(c);
	}
	if (c->err_res) {
		/* A new server error: it describes this statement. */
		PQclear(saved);
	} else {
		aw_pg_error_reset(c);
		c->err_res = saved;
		c->err = info;
	}
	return rc;
}

/* Waits (shielded, bounded): ROLLBACK a transaction that tx_enter began
 * but cannot hand to the block; the connection is marked broken if the
 * session does not end up idle. The error in flight survives. */
static int rollback_begin(void *arg, int err)
{
	(void)err;
	return control(arg, "ROLLBACK", "aw_pg_tx (ROLLBACK of an interrupted BEGIN)");
}

static void undo_begin(aw_pg_conn *c)
{
	int rc = aw_cleanup_run(rollback_begin, c, UNDO_BUDGET);
	if (rc < 0 || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->broken = true;
}

static bool nondefault(const aw_pg_tx_opts *o)
{
	return o->isolation != AW_PG_ISOLATION_DEFAULT || o->read_only || o->deferrable;
}

static int tx_enter(aw_mgr *m)
{
	aw_pg_tx *tx = (aw_pg_tx *)m;
	aw_pg_conn *c = tx->conn;
	tx->finished = false;
	if (!c)
		return aw_raise(-EINVAL, "aw_pg_tx: connection is NULL");
	if ((unsigned)tx->opts.isolation > AW_PG_SERIALIZABLE)
		return aw_raise(-EINVAL, "aw_pg_tx: unknown isolation level %d", (int)tx->opts.isolation);
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		c->broken = true;
		return aw_raise(-ECONNRESET, "aw_pg_tx: cannot begin a transaction: the connection is broken");
	}

	/* Nested: inside another block of ours, or inside a transaction the
	 * caller began by hand (BEGIN there would only warn, and our COMMIT
	 * would end the caller's transaction). */
	bool nested = c->tx_depth > 0 || PQtransactionStatus(c->pg) != PQTRANS_IDLE;
	char sql[128];
	if (nested) {
		if (nondefault(&tx->opts))
			return aw_raise(-EINVAL, "aw_pg_tx: isolation, read_only and deferrable apply to the "
					"outermost transaction only; this block is nested (a savepoint)");
		tx->depth = c->tx_depth + (c->tx_depth == 0 ? 1 : 0);
		snprintf(sql, sizeof sql, "SAVEPOINT " SAVEPOINT_FMT, tx->depth);
	} else {
		static const char *const levels[] = {
			[AW_PG_ISOLATION_DEFAULT] = "",
			[AW_PG_READ_COMMITTED] = " ISOLATION LEVEL READ COMMITTED",
			[AW_PG_REPEATABLE_READ] = " ISOLATION LEVEL REPEATABLE READ",
			[AW_PG_SERIALIZABLE] = " ISOLATION LEVEL SERIALIZABLE",
		};
		tx->depth = 0;
		snprintf(sql, sizeof sql, "BEGIN%s%s%s%s", levels[tx->opts.isolation],
			 tx->opts.isolation != AW_PG_ISOLATION_DEFAULT && tx->opts.read_only ? "," : "",
			 tx->opts.read_only ? " READ ONLY" : "",
			 tx->opts.deferrable ? (tx->opts.isolation != AW_PG_ISOLATION_DEFAULT || tx->opts.read_only
							? ", DEFERRABLE" : " DEFERRABLE")
					     : "");
	}
	int rc = control(c, sql, nested ? "aw_pg_tx (SAVEPOINT)" : "aw_pg_tx (BEGIN)");
	if (rc < 0) {
		/* Interrupted (cancelled, a deadline) after the server ran the
		 * BEGIN: the drain after the cancel request saw it complete, and
		 * the session is in a transaction that no exit will end. Roll it
		 * back, shielded, keeping the interruption as the error. */
		if (!nested && aw_pg_conn_ok(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
			undo_begin(c);
		return rc;
	}
	c->tx_depth++;
	return 0;
}

/* Undo the block's work: ROLLBACK, or ROLLBACK TO + RELEASE for a
 * savepoint (so that the outer transaction goes on without it). */
static int roll_back(aw_pg_tx *tx)
{
	aw_pg_conn *c = tx->conn;
	char sql[128];
	if (tx->depth == 0)
		snprintf(sql, sizeof sql, "ROLLBACK");
	else
		snprintf(sql, sizeof sql, "ROLLBACK TO SAVEPOINT " SAVEPOINT_FMT "; RELEASE SAVEPOINT " SAVEPOINT_FMT,
			 tx->depth, tx->depth);
	int rc = control(c, sql, tx->depth ? "aw_pg_tx (ROLLBACK TO SAVEPOINT)" : "aw_pg_tx (ROLLBACK)");
	/* The outermost ROLLBACK did not complete (a deadline, a lost
	 * connection): the session may still be inside the transaction, which
	 * no later user of the connection expects. */
	if (rc < 0 && tx->depth == 0 && !c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->broken = true;
	return rc;
}

static int tx_exit(aw_mgr *m, int err)
{
	aw_pg_tx *tx = (aw_pg_tx *)m;
	aw_pg_conn *c = tx->conn;
	if (c->tx_depth > 0)
		c->tx_depth--;
	tx->finished = true;
	const char *kind = tx->depth ? "savepoint" : "transaction";

	if (c->broken || PQstatus(c->pg) != CONNECTION_OK) {
		/* Lost during the block: the server rolled back when the session
		 * ended. Nothing to send. */
		c->broken = true;
		if (err)
			return err;
		return aw_raise(-ECONNRESET, "aw_pg_tx: the connection was lost; the %s was not committed", kind);
	}

	if (err) {
		/* Whatever the rollback meets, the block's error goes on: it is
		 * the reason, and the core restores it when we return it. */
		(void)roll_back(tx);
		return err;
	}

	if (PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
		/* An error inside the block was handled (the body went on), but
		 * the server aborted the transaction: it cannot commit. Undo it
		 * and say so, rather than report a commit that did not happen. */
		char state[6];
		snprintf(state, sizeof state, "%s", c->err.sqlstate);
		int rc = roll_back(tx);
		if (rc < 0)
			return rc;
		return aw_raise(-AW_EPG, "aw_pg_tx: the %s was aborted by an earlier error%s%s%s and was rolled back, "
				"not committed", kind, state[0] ? " (SQLSTATE " : "", state, state[0] ? ")" : "");
	}

	char sql[64];
	if (tx->depth == 0)
		snprintf(sql, sizeof sql, "COMMIT");
	else
		snprintf(sql, sizeof sql, "RELEASE SAVEPOINT " SAVEPOINT_FMT, tx->depth);
	int rc = control(c, sql, tx->depth ? "aw_pg_tx (RELEASE SAVEPOINT)" : "aw_pg_tx (COMMIT)");
	if (rc == -AW_EPG) {
		/* A COMMIT the server refuses (a deferred constraint, a
		 * serialization failure) ends the transaction rolled back. */
		const aw_error *e = aw_error_current();
		char msg[640];
		snprintf(msg, sizeof msg, "%s", e && e->msg ? e->msg : aw_strerror(rc));
		if (tx->depth == 0)
			return aw_raise(-AW_EPG, "aw_pg_tx: COMMIT failed; the transaction was rolled back: %s", msg);
		/* A failed RELEASE leaves the outer transaction aborted: the
		 * outer block rolls back when this error reaches it. */
		return aw_raise(-AW_EPG, "aw_pg_tx: RELEASE SAVEPOINT failed: %s", msg);
	}
	if (rc < 0 && tx->depth == 0 && !c->broken && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		c->broken = true;   /* COMMIT interrupted: outcome unknown */
	return rc;
}

static void tx_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_tx *tx = (aw_pg_tx *)m;
	if (tx->depth)
		snprintf(buf, len, "savepoint " SAVEPOINT_FMT, tx->depth);
	else
		snprintf(buf, len, "transaction on backend %d", tx->conn ? tx->conn->pid : 0);
}

static const aw_mgr_ops tx_ops = { "pg transaction", tx_enter, tx_exit, tx_describe };

aw_mgr *aw_pg_tx_init(aw_pg_tx *tx, aw_pg_conn *c, const aw_pg_tx_opts *opts)
{
	memset(tx, 0, sizeof *tx);
	tx->mgr.ops = &tx_ops;
	tx->conn = c;
	if (opts)
		tx->opts = *opts;
	return &tx->mgr;
}
