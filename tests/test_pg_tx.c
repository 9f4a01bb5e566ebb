/* SPDX-License-Identifier: MIT */
/* Tests: transactions and savepoints (src/pg/tx.c), cursors (cursor.c),
 * LISTEN/NOTIFY (notify.c) and COPY in both directions (copy.c), against
 * the real server in DATABASE_URL. Tables other connections must see are
 * named after the test process (the gcc and sanitizer runs share one
 * server) and dropped at the end; the rest are temporary. */
#include "pg_util.h"

#include <stdio.h>
#include <unistd.h>

AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED");

/* ---- helpers ------------------------------------------------------------------ */

/* A table name unique to this test process. */
static void table_name(char *buf, size_t len, const char *base)
{
	snprintf(buf, len, "%s_%d", base, (int)getpid());
}

/* The single integer a query returns, or INT64_MIN on an error. */
static int64_t scalar(aw_pg_conn *c, const char *sql)
{
	aw_pg_result *r;
	if (aw_pg_query(c, &r, sql, AW_PG_NOARGS) < 0)
		return INT64_MIN;
	int64_t v = INT64_MIN;
	if (aw_pg_get_int(r, 0, 0, &v) < 0)
		v = INT64_MIN;
	aw_pg_result_free(r);
	return v;
}

static int64_t count_rows(aw_pg_conn *c, const char *table)
{
	char sql[160];
	snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
	return scalar(c, sql);
}

/* The text of the single value a query returns (static buffer). */
static const char *show(aw_pg_conn *c, const char *sql)
{
	static char buf[128];
	aw_pg_result *r;
	if (aw_pg_query(c, &r, sql, AW_PG_NOARGS) < 0)
		return "(error)";
	snprintf(buf, sizeof buf, "%s", aw_pg_text(r, 0, 0) ? aw_pg_text(r, 0, 0) : "(null)");
	aw_pg_result_free(r);
	return buf;
}

static int make_table(aw_pg_conn *c, const char *table, const char *columns)
{
	char sql[320];
	snprintf(sql, sizeof sql, "SET client_min_messages = warning; DROP TABLE IF EXISTS %s; "
		 "CREATE TABLE %s %s; RESET client_min_messages", table, table, columns);
	return aw_pg_exec_script(c, sql);
}

static int drop_table(aw_pg_conn *c, const char *table)
{
	char sql[160];
	snprintf(sql, sizeof sql, "DROP TABLE IF EXISTS %s", table);
	return aw_pg_exec_script(c, sql);
}

static int64_t insert_id(aw_pg_conn *c, const char *table, const char *id)
{
	char sql[160];
	snprintf(sql, sizeof sql, "INSERT INTO %s (id) VALUES ($1::int)", table);
	return pg_exec_rows(c, sql, AW_PG_ARGS(id));
}

static int terminate(aw_pg_conn *by, aw_pg_conn *victim)
{
	char pid[16];
	snprintf(pid, sizeof pid, "%d", aw_pg_conn_pid(victim));
	/* pg_terminate_backend(pid, timeout) waits until the backend is gone. */
	aw_pg_result *r;
	int rc = aw_pg_query(by, &r, "SELECT pg_terminate_backend($1::int, 5000)", AW_PG_ARGS(pid));
	if (rc < 0)
		return rc;
	bool ok = aw_pg_text(r, 0, 0) && !strcmp(aw_pg_text(r, 0, 0), "t");
	aw_pg_result_free(r);
	return ok ? 0 : -1;
}

/* ---- transactions ------------------------------------------------------------- */

static int commit_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_commit");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(id int primary key)"), 0);
		aw_pg_tx tx;
		bool ran = false;
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			PCHECK(tx.depth == 0);
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'T');
			PCHECK_RC(insert_id(a.conn, t, "1"), 1);
			PCHECK_RC(insert_id(a.conn, t, "2"), 1);
			/* Not visible outside before the COMMIT. */
			PCHECK(count_rows(b.conn, t) == 0);
			ran = true;
		}
		PCHECK(ran);
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(tx.finished);
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 2);
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_commit_on_clean_exit_is_visible_from_another_connection) { PG_RUN(commit_main, NULL); }

/* The half-committed transfer (issue 11): inside a transaction a
 * statement fails before reaching the server because the task was
 * cancelled; the body carries on to its end without looking. The exit must
 * roll back — never commit the first half — and the block must fail. */
struct half_ctx {
	char table[64];
	int tx_rc, second_rc, pending;
	bool swallow;     /* the body also clears the error it got */
	bool reached_end;
	aw_event asleep;  /* set by the worker just before its sleep: the
	                     cancel is sent then, not after a fixed delay
	                     that a loaded machine may outlast */
};

static int half_worker(void *arg)
{
	struct half_ctx *h = arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			(void)!insert_id(a.conn, h->table, "1");            /* debit */
			aw_event_set(&h->asleep);
			int rc = aw_sleep(AW_SEC(10));                      /* cancelled here */
			if (h->swallow)
				(void)!aw_catch(rc, 0);
			h->second_rc = (int)insert_id(a.conn, h->table, "2"); /* credit: never sent */
			if (h->swallow)
				(void)!aw_catch(h->second_rc, 0);
			h->reached_end = true;                              /* falls off the end */
		}
		h->pending = aw_error_pending();
	}
	return aw_error_pending();
}

static int half_main(void *arg)
{
	struct half_ctx *h = arg;
	aw_pg_connection b;
	AW_WITH(aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(b.conn, h->table, "(id int primary key)"), 0);
		aw_task *w;
		aw_event_init(&h->asleep);
		PCHECK_RC(aw_spawn(&w, half_worker, h, "transfer"), 0);
		PCHECK_RC(aw_event_wait(&h->asleep), 0);   /* the debit is in, the worker sleeps */
		aw_task_cancel(w);
		h->tx_rc = aw_task_join(w);
		aw_error_clear();
		PCHECK(count_rows(b.conn, h->table) == 0);   /* nothing committed */
		PCHECK_RC(drop_table(b.conn, h->table), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_cancelled_statement_ignored_by_the_body_never_commits_half_a_transaction)
{
	struct half_ctx h = { .swallow = false };
	table_name(h.table, sizeof h.table, "aw_tx_half");
	PG_RUN(half_main, &h);
	CHECK(h.reached_end);
	CHECK_EQ(h.second_rc, -ECANCELED);
	CHECK_EQ(h.pending, -ECANCELED);
	CHECK_EQ(h.tx_rc, -ECANCELED);
}

AW_TEST(pg_tx_cancelled_statement_swallowed_by_the_body_still_rolls_back)
{
	struct half_ctx h = { .swallow = true };
	table_name(h.table, sizeof h.table, "aw_tx_half2");
	PG_RUN(half_main, &h);
	CHECK(h.reached_end);
	CHECK_EQ(h.second_rc, -ECANCELED);
	CHECK_EQ(h.pending, -ECANCELED);
}

/* Leaves its block by `return` with the error the statement raised. */
static int failing_unit_of_work(aw_pg_conn *c, const char *t)
{
	aw_pg_tx tx;
	AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
		int64_t rc = insert_id(c, t, "7");
		if (rc < 0)
			return (int)rc;
		rc = insert_id(c, t, "7");   /* duplicate key */
		if (rc < 0)
			return (int)rc;
	}
	return 0;
}

static int rollback_error_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_rollback");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(id int primary key)"), 0);

		/* A server error, leaving by break. */
		aw_pg_tx tx;
		int64_t rc = 1;
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			PCHECK_RC(insert_id(a.conn, t, "1"), 1);
			rc = insert_id(a.conn, t, "1");
			if (rc < 0)
				break;
		}
		PCHECK_RC(rc, -AW_EPG);
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK(pg_error_mentions("23505"));
		/* The ROLLBACK kept the error that failed the block describable. */
		PCHECK_STR(aw_pg_last_error(a.conn)->sqlstate, "23505");
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 0);
		PCHECK(count_rows(a.conn, t) == 0);

		/* The same by return from a function. */
		int unit_rc = failing_unit_of_work(a.conn, t);
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK_RC(unit_rc, -AW_EPG);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 0);

		/* An application error (not the server's): rolled back, and it
		 * goes on unchanged. */
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			PCHECK_RC(insert_id(a.conn, t, "2"), 1);
			(void)!aw_raise(-EIO, "the application gave up");
			break;
		}
		PCHECK_RC(aw_error_pending(), -EIO);
		PCHECK(pg_error_mentions("the application gave up"));
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 0);
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_error_in_block_rolls_back_and_the_error_goes_on) { PG_RUN(rollback_error_main, NULL); }

typedef struct tx_task {
	aw_pg_conn *c;
	const char *table;
	bool in_query;        /* wait in a server statement, else in aw_sleep */
	bool inserted;
	int rc, pending;
} tx_task;

static int tx_worker(void *arg)
{
	tx_task *x = arg;
	aw_pg_tx tx;
	AW_WITH(aw_pg_tx_init(&tx, x->c, NULL)) {
		if (insert_id(x->c, x->table, "1") != 1)
			break;
		x->inserted = true;
		x->rc = x->in_query ? pg_exec_rows(x->c, "SELECT pg_sleep(20)", AW_PG_NOARGS) : aw_sleep(AW_SEC(20));
		if (x->rc < 0)
			break;
	}
	x->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int cancel_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_cancel");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(id int primary key)"), 0);
		for (int in_query = 0; in_query < 2; in_query++) {
			tx_task x = { a.conn, t, in_query, false, 1, 1 };
			aw_task *w;
			aw_time t0 = aw_now();
			PCHECK_RC(aw_spawn(&w, tx_worker, &x, "tx-worker"), 0);
			for (int i = 0; i < 200 && !x.inserted; i++)
				PCHECK_RC(aw_sleep(AW_MS(5)), 0);
			PCHECK(x.inserted);
			PCHECK_RC(aw_sleep(AW_MS(50)), 0);
			aw_task_cancel(w);
			PCHECK_RC(aw_task_join(w), 0);
			PCHECK_RC(x.rc, -ECANCELED);
			PCHECK_RC(x.pending, -ECANCELED);
			PCHECK(aw_now() - t0 < AW_SEC(5));
			/* The ROLLBACK was awaited in the shielded exit. */
			PCHECK(aw_pg_conn_ok(a.conn));
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
			PCHECK(count_rows(b.conn, t) == 0);
			PCHECK(count_rows(a.conn, t) == 0);
		}
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_task_cancellation_rolls_back) { PG_RUN(cancel_main, NULL); }

static int timeout_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_timeout");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(id int primary key)"), 0);
		aw_time t0 = aw_now();
		int64_t rc = 1;
		AW_WITH(AW_TIMEOUT(AW_MS(200))) {
			aw_pg_tx tx;
			AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
				PCHECK_RC(insert_id(a.conn, t, "1"), 1);
				rc = pg_exec_rows(a.conn, "SELECT pg_sleep(20)", AW_PG_NOARGS);
				if (rc < 0)
					break;
			}
		}
		PCHECK_RC(rc, -ETIMEDOUT);
		PCHECK_RC(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		PCHECK(aw_now() - t0 < AW_SEC(5));
		PCHECK(aw_pg_conn_ok(a.conn));
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 0);

		/* A deadline that passes while the body waits on something else. */
		AW_WITH(AW_TIMEOUT(AW_MS(100))) {
			aw_pg_tx tx;
			AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
				PCHECK_RC(insert_id(a.conn, t, "2"), 1);
				if (aw_sleep(AW_SEC(10)) < 0)
					break;
			}
		}
		PCHECK_RC(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 0);
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_timeout_rolls_back) { PG_RUN(timeout_main, NULL); }

static int savepoint_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_savepoint");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(id int primary key)"), 0);
		aw_pg_tx outer, inner, inner2, innermost;
		AW_WITH(aw_pg_tx_init(&outer, a.conn, NULL)) {
			PCHECK_RC(insert_id(a.conn, t, "1"), 1);
			/* A savepoint that fails: only its own work is undone. */
			int64_t rc = 1;
			AW_WITH(aw_pg_tx_init(&inner, a.conn, NULL)) {
				PCHECK(inner.depth == 1);
				PCHECK_RC(insert_id(a.conn, t, "2"), 1);
				rc = insert_id(a.conn, t, "1");   /* duplicate */
				if (rc < 0)
					break;
			}
			PCHECK_RC(rc, -AW_EPG);
			PCHECK_RC(aw_error_pending(), -AW_EPG);
			aw_error_clear();
			/* The outer transaction is usable again, not aborted. */
			PCHECK(aw_pg_conn_tx_status(a.conn) == 'T');
			PCHECK(count_rows(a.conn, t) == 1);

			/* Savepoints that succeed are released, nested two deep. */
			AW_WITH(aw_pg_tx_init(&inner2, a.conn, NULL)) {
				PCHECK_RC(insert_id(a.conn, t, "3"), 1);
				AW_WITH(aw_pg_tx_init(&innermost, a.conn, NULL)) {
					PCHECK(innermost.depth == 2);
					PCHECK_RC(insert_id(a.conn, t, "4"), 1);
				}
				PCHECK_RC(aw_error_pending(), 0);
			}
			PCHECK_RC(aw_error_pending(), 0);
			PCHECK_RC(insert_id(a.conn, t, "5"), 1);
			PCHECK(count_rows(b.conn, t) == 0);
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(count_rows(b.conn, t) == 4);
		char sql[128];
		snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE id = 2", t);
		PCHECK(scalar(b.conn, sql) == 0);

		/* A transaction begun by hand: the block is a savepoint in it and
		 * does not commit the caller's transaction. */
		PCHECK_RC(aw_pg_exec_script(a.conn, "BEGIN"), 0);
		AW_WITH(aw_pg_tx_init(&inner, a.conn, NULL)) {
			PCHECK(inner.depth == 1);
			PCHECK_RC(insert_id(a.conn, t, "6"), 1);
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'T');
		PCHECK_RC(aw_pg_exec_script(a.conn, "ROLLBACK"), 0);
		PCHECK(count_rows(b.conn, t) == 4);
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_nested_block_is_a_savepoint_and_its_rollback_keeps_the_outer_work) { PG_RUN(savepoint_main, NULL); }

static int options_main(void *arg)
{
	(void)arg;
	char t[64];
	table_name(t, sizeof t, "aw_tx_options");
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		PCHECK_RC(make_table(c, t, "(id int primary key)"), 0);
		char def[64];
		snprintf(def, sizeof def, "%s", show(c, "SHOW default_transaction_isolation"));
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			PCHECK_STR(show(c, "SHOW transaction_isolation"), def);
			PCHECK_STR(show(c, "SHOW transaction_read_only"), "off");
		}
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ .isolation = AW_PG_READ_COMMITTED })) {
			PCHECK_STR(show(c, "SHOW transaction_isolation"), "read committed");
		}
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ .isolation = AW_PG_REPEATABLE_READ })) {
			PCHECK_STR(show(c, "SHOW transaction_isolation"), "repeatable read");
			PCHECK_STR(show(c, "SHOW transaction_read_only"), "off");
		}
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ AW_PG_SERIALIZABLE, true, true })) {
			PCHECK_STR(show(c, "SHOW transaction_isolation"), "serializable");
			PCHECK_STR(show(c, "SHOW transaction_read_only"), "on");
			PCHECK_STR(show(c, "SHOW transaction_deferrable"), "on");
		}
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ .read_only = true, .deferrable = true })) {
			PCHECK_STR(show(c, "SHOW transaction_read_only"), "on");
			PCHECK_STR(show(c, "SHOW transaction_deferrable"), "on");
		}
		PCHECK_RC(aw_error_pending(), 0);

		/* READ ONLY rejects writes: SQLSTATE 25006, and the block fails. */
		int64_t rc = 1;
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ .read_only = true })) {
			PCHECK_STR(show(c, "SHOW transaction_read_only"), "on");
			rc = insert_id(c, t, "1");
			if (rc < 0)
				break;
		}
		PCHECK_RC(rc, -AW_EPG);
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "25006");
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, t) == 0);

		/* Options on a savepoint, and options that do not exist. */
		bool ran = false;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			PCHECK_RC(insert_id(c, t, "2"), 1);
			aw_pg_tx sp;
			AW_WITH(aw_pg_tx_init(&sp, c, &(aw_pg_tx_opts){ .isolation = AW_PG_SERIALIZABLE })) {
				ran = true;
			}
			PCHECK_RC(aw_error_pending(), -EINVAL);
			PCHECK(pg_error_mentions("nested"));
			aw_error_clear();
			AW_WITH(aw_pg_tx_init(&sp, c, &(aw_pg_tx_opts){ .read_only = true })) {
				ran = true;
			}
			PCHECK_RC(aw_error_pending(), -EINVAL);
			aw_error_clear();
			PCHECK(aw_pg_conn_tx_status(c) == 'T');
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(count_rows(c, t) == 1);
		AW_WITH(aw_pg_tx_init(&tx, c, &(aw_pg_tx_opts){ .isolation = (enum aw_pg_isolation)42 })) {
			ran = true;
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), -EINVAL);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK_RC(drop_table(c, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_isolation_read_only_deferrable_and_bad_options) { PG_RUN(options_main, NULL); }

static int failed_commit_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_deferred(id int UNIQUE DEFERRABLE INITIALLY DEFERRED)"),
			  0);
		aw_pg_tx tx;
		bool body_done = false;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			PCHECK_RC(insert_id(c, "t_deferred", "1"), 1);
			PCHECK_RC(insert_id(c, "t_deferred", "1"), 1);   /* checked at COMMIT */
			body_done = true;
		}
		PCHECK(body_done);
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK(pg_error_mentions("COMMIT failed"));
		PCHECK(pg_error_mentions("23505"));
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "23505");
		aw_error_clear();
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_deferred") == 0);

		/* A transaction the server aborted while the body handled the
		 * error and went on: rolled back, and the block fails. */
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			PCHECK_RC(insert_id(c, "t_deferred", "2"), 1);
			PCHECK_RC(pg_exec_rows(c, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
			aw_error_clear();
			PCHECK(aw_pg_conn_tx_status(c) == 'E');
		}
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK(pg_error_mentions("aborted by an earlier error"));
		PCHECK(pg_error_mentions("22012"));
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_deferred") == 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_failed_commit_or_aborted_transaction_fails_the_block) { PG_RUN(failed_commit_main, NULL); }

/* Write skew under SERIALIZABLE: each transaction reads what the other
 * writes. The inner block commits first; the outer one's COMMIT is the one
 * the server refuses (40001), and the block fails with -AW_EPG. */
static int serialization_main(void *arg)
{
	(void)arg;
	char t[64], sql[256];
	table_name(t, sizeof t, "aw_tx_serial");
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		PCHECK_RC(make_table(a.conn, t, "(class int, value int)"), 0);
		snprintf(sql, sizeof sql, "INSERT INTO %s VALUES (1, 10), (1, 20), (2, 100), (2, 200)", t);
		PCHECK_RC(pg_exec_rows(a.conn, sql, AW_PG_NOARGS), 4);
		char sum1[128], sum2[128], ins1[128], ins2[128];
		snprintf(sum1, sizeof sum1, "SELECT sum(value) FROM %s WHERE class = 1", t);
		snprintf(sum2, sizeof sum2, "SELECT sum(value) FROM %s WHERE class = 2", t);
		snprintf(ins1, sizeof ins1, "INSERT INTO %s VALUES (1, 300)", t);
		snprintf(ins2, sizeof ins2, "INSERT INTO %s VALUES (2, 30)", t);
		aw_pg_tx_opts ser = { .isolation = AW_PG_SERIALIZABLE };
		aw_pg_tx ta, tb;
		bool inner_committed = false;
		AW_WITH(aw_pg_tx_init(&ta, a.conn, &ser)) {
			AW_WITH(aw_pg_tx_init(&tb, b.conn, &ser)) {
				PCHECK(scalar(a.conn, sum1) == 30);
				PCHECK(scalar(b.conn, sum2) == 300);
				PCHECK_RC(pg_exec_rows(a.conn, ins2, AW_PG_NOARGS), 1);
				PCHECK_RC(pg_exec_rows(b.conn, ins1, AW_PG_NOARGS), 1);
			}
			PCHECK_RC(aw_error_pending(), 0);
			inner_committed = true;
		}
		PCHECK(inner_committed);
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK(pg_error_mentions("COMMIT failed"));
		PCHECK_STR(aw_pg_last_error(a.conn)->sqlstate, "40001");
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
		PCHECK(scalar(b.conn, sql) == 5);   /* b's row only */
		PCHECK_RC(drop_table(b.conn, t), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_serialization_failure_at_commit_fails_the_block) { PG_RUN(serialization_main, NULL); }

static int broken_main(void *arg)
{
	(void)arg;
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		/* The session is lost in the middle of the block: the exit has
		 * nothing to send and the error goes on. */
		aw_pg_tx tx;
		int64_t rc = 1;
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1", AW_PG_NOARGS), 1);
			PCHECK_RC(terminate(b.conn, a.conn), 0);
			rc = pg_exec_rows(a.conn, "SELECT 2", AW_PG_NOARGS);
			if (rc < 0)
				break;
		}
		PCHECK_RC(rc, -ECONNRESET);
		PCHECK_RC(aw_error_pending(), -ECONNRESET);
		aw_error_clear();
		PCHECK(!aw_pg_conn_ok(a.conn));

		/* A transaction begun on the broken connection fails clearly. */
		bool ran = false;
		AW_WITH(aw_pg_tx_init(&tx, a.conn, NULL)) {
			ran = true;
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), -ECONNRESET);
		PCHECK(pg_error_mentions("broken"));
		aw_error_clear();

		/* One whose loss is only found out by BEGIN itself. */
		aw_pg_conn *c;
		PCHECK_RC(aw_pg_connect(&c, PG_URL(), NULL), 0);
		PCHECK_RC(terminate(b.conn, c), 0);
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			ran = true;
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), -ECONNRESET);
		aw_error_clear();
		PCHECK(!aw_pg_conn_ok(c));
		aw_pg_conn_close(c);
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_lost_connection_lets_the_error_go_on_and_broken_connection_cannot_begin)
{
	PG_RUN(broken_main, NULL);
}

/* ---- cursors ------------------------------------------------------------------- */

/* pg_cursors also lists the unnamed portal of the query asking. */
#define OPEN_CURSORS "SELECT count(*) FROM pg_cursors WHERE name LIKE 'aw_cur_%'"

static int cursor_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_seen(g int)"), 0);
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			aw_pg_cursor cur;
			aw_pg_row *row;
			int n = 0, batches = 0;
			uint64_t q0 = aw_pg_conn_queries(c);
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 100, "SELECT g, g * 2 AS twice FROM generate_series(1, $1::int) g",
						      AW_PG_ARGS("1050"))) {
				n++;
				if (row->row == 0) {
					batches++;
					PCHECK(aw_pg_nrows(row->res) <= 100);
				}
				int64_t g, twice;
				PCHECK_RC(aw_pg_get_int(row->res, row->row, 0, &g), 0);
				PCHECK_RC(aw_pg_get_int_by(row->res, row->row, "twice", &twice), 0);
				PCHECK(g == n && twice == 2 * g);
				/* The connection is free between steps. */
				if (g % 500 == 0)
					PCHECK_RC(pg_exec_rows(c, "INSERT INTO t_seen VALUES ($1::int)",
							     AW_PG_ARGS(aw_pg_text(row->res, row->row, 0))), 1);
			}
			PCHECK_RC(aw_error_pending(), 0);
			PCHECK(n == 1050);
			PCHECK(batches == 11);
			PCHECK(!strncmp(cur.name, "aw_cur_", 7));
			PCHECK(!cur.open);
			/* DECLARE, 11 FETCHes (the short last batch ends it), CLOSE, and
			 * the body's two INSERTs. */
			PCHECK(aw_pg_conn_queries(c) - q0 == 15);
			PCHECK(count_rows(c, "t_seen") == 2);
			PCHECK(scalar(c, OPEN_CURSORS) == 0);

			/* An exact multiple of the batch; two cursors at once get
			 * different names. */
			aw_pg_cursor c1, c2;
			aw_pg_row *r1, *r2;
			int pairs = 0;
			AW_FOR(r1, aw_pg_cursor_init(&c1, c, 5, "SELECT g FROM generate_series(1, 20) g", AW_PG_NOARGS)) {
				AW_FOR(r2, aw_pg_cursor_init(&c2, c, 7, "SELECT g FROM generate_series(1, $1::int) g",
							     AW_PG_ARGS("3"))) {
					PCHECK(strcmp(c1.name, c2.name) != 0);
					pairs++;
				}
				PCHECK_RC(aw_error_pending(), 0);
				(void)r1;
				(void)r2;
			}
			PCHECK(pairs == 60);
			/* No rows at all. */
			n = 0;
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 10, "SELECT 1 WHERE false", AW_PG_NOARGS))
				n++;
			PCHECK(n == 0);
			PCHECK_RC(aw_error_pending(), 0);
			PCHECK(scalar(c, OPEN_CURSORS) == 0);
		}
		PCHECK_RC(aw_error_pending(), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_cursor_yields_every_row_in_batches) { PG_RUN(cursor_main, NULL); }

/* Leaves the loop with an error (a `break` in AW_FOR would end the loop as
 * handled: the error has to leave by return). */
static int cursor_fail_at_third_row(aw_pg_conn *c)
{
	aw_pg_cursor cur;
	aw_pg_row *row;
	int n = 0;
	AW_FOR(row, aw_pg_cursor_init(&cur, c, 50, "SELECT g FROM generate_series(1, 100000) g", AW_PG_NOARGS)) {
		if (++n == 3)
			return aw_raise(-EIO, "stop here");
		(void)row;
	}
	return 0;
}

static int cursor_break_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			aw_pg_cursor cur;
			aw_pg_row *row;
			int n = 0;
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 50, "SELECT g FROM generate_series(1, 100000) g", AW_PG_NOARGS)) {
				PCHECK(scalar(c, OPEN_CURSORS) == 1);
				if (++n == 120)
					break;
				(void)row;
			}
			PCHECK_RC(aw_error_pending(), 0);
			PCHECK(n == 120);
			PCHECK(scalar(c, OPEN_CURSORS) == 0);
			PCHECK(aw_pg_conn_tx_status(c) == 'T');

			/* Leaving by an error closes it too; the error goes on. */
			int cur_rc = cursor_fail_at_third_row(c);
			PCHECK_RC(aw_error_pending(), -EIO);
			PCHECK_RC(cur_rc, -EIO);
			aw_error_clear();
			PCHECK(scalar(c, OPEN_CURSORS) == 0);
			PCHECK(aw_pg_conn_tx_status(c) == 'T');
		}
		PCHECK_RC(aw_error_pending(), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_cursor_early_break_closes_the_cursor) { PG_RUN(cursor_break_main, NULL); }

static int cursor_misuse_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		aw_pg_cursor cur;
		aw_pg_row *row;
		int n = 0;
		AW_FOR(row, aw_pg_cursor_init(&cur, c, 10, "SELECT 1", AW_PG_NOARGS))
			n++;
		PCHECK(n == 0);
		PCHECK_RC(aw_error_pending(), -EINVAL);
		PCHECK(pg_error_mentions("inside a transaction"));
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');

		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 0, "SELECT 1", AW_PG_NOARGS))
				n++;
			PCHECK_RC(aw_error_pending(), -EINVAL);
			PCHECK(pg_error_mentions("batch"));
			aw_error_clear();
			AW_FOR(row, aw_pg_cursor_init(&cur, c, -5, "SELECT 1", AW_PG_NOARGS))
				n++;
			PCHECK_RC(aw_error_pending(), -EINVAL);
			aw_error_clear();
			PCHECK(n == 0);
			/* A query the server rejects fails at DECLARE. */
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 10, "SELECT nosuchcolumn FROM pg_class", AW_PG_NOARGS))
				n++;
			PCHECK(n == 0);
			PCHECK_RC(aw_error_pending(), -AW_EPG);
			PCHECK_STR(aw_pg_last_error(c)->sqlstate, "42703");
			/* Left unhandled: the transaction block fails and rolls back. */
		}
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		/* An error in the middle of the rows ends the loop with it. */
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			AW_FOR(row, aw_pg_cursor_init(&cur, c, 10, "SELECT 10 / (20 - g) FROM generate_series(1, 30) g",
						      AW_PG_NOARGS))
				n++;
			PCHECK_RC(aw_error_pending(), -AW_EPG);
			PCHECK_STR(aw_pg_last_error(c)->sqlstate, "22012");
			aw_error_clear();
			PCHECK(aw_pg_conn_tx_status(c) == 'E');
		}
		PCHECK(n == 10);   /* the first batch; the second fails at row 20 */
		PCHECK_RC(aw_error_pending(), -AW_EPG);   /* aborted: rolled back, not committed */
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
	}
	return aw_error_pending();
}

AW_TEST(pg_cursor_outside_a_transaction_or_bad_batch_is_einval) { PG_RUN(cursor_misuse_main, NULL); }

/* ---- LISTEN/NOTIFY ----------------------------------------------------------------- */

typedef struct notifier {
	aw_pg_conn *c;
	const char *const *channels;   /* sent in order */
	const char *const *payloads;
	aw_time delay;
	int rc;
} notifier;

static int notify_task(void *arg)
{
	notifier *x = arg;
	x->rc = aw_sleep(x->delay);
	for (int i = 0; x->rc == 0 && x->channels[i]; i++)
		x->rc = aw_pg_notify(x->c, x->channels[i], x->payloads[i]);
	return x->rc;
}

static int listen_main(void *arg)
{
	(void)arg;
	/* Upper case, a space and a quote: the name is quoted, never SQL. */
	char chan[64];
	snprintf(chan, sizeof chan, "Aw Chan \"%d\"", (int)getpid());
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		const char *chans[] = { chan, NULL };
		notifier x = { b.conn, chans, (const char *const[]){ "hello, world" }, AW_MS(50), 1 };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, notify_task, &x, "notifier"), 0);
		aw_pg_listener l;
		aw_pg_notification *n;
		int got = 0;
		AW_FOR(n, aw_pg_listen_init(&l, a.conn, chans)) {
			PCHECK_STR(n->channel, chan);
			if (++got == 1) {
				PCHECK_STR(n->payload, "hello, world");
				PCHECK(n->pid == aw_pg_conn_pid(b.conn));
				PCHECK(scalar(a.conn, "SELECT count(*) FROM pg_listening_channels()") == 1);
				/* The connection is free between steps: a notification to
				 * itself arrives at the next one. */
				PCHECK_RC(aw_pg_notify(a.conn, chan, "to myself"), 0);
				continue;
			}
			PCHECK_STR(n->payload, "to myself");
			PCHECK(n->pid == aw_pg_conn_pid(a.conn));
			break;
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(got == 2);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x.rc, 0);
		/* The exit UNLISTENed. */
		PCHECK(scalar(a.conn, "SELECT count(*) FROM pg_listening_channels()") == 0);
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(l.cur == NULL);
		PCHECK_RC(aw_pg_notify(b.conn, NULL, "x"), -EINVAL);
		aw_error_clear();
	}
	return aw_error_pending();
}

AW_TEST(pg_listen_receives_channel_payload_and_pid_from_another_connection) { PG_RUN(listen_main, NULL); }

static int listen_many_main(void *arg)
{
	(void)arg;
	char c1[32], c2[32], c3[32];
	snprintf(c1, sizeof c1, "aw_one_%d", (int)getpid());
	snprintf(c2, sizeof c2, "aw_two_%d", (int)getpid());
	snprintf(c3, sizeof c3, "aw_three_%d", (int)getpid());
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		const char *listened[] = { c1, c2, NULL };
		/* c3 is not listened to; the empty payload arrives as "". */
		notifier x = { b.conn, (const char *const[]){ c3, c1, c2, c1, NULL },
			       (const char *const[]){ "no", "a", "b", "" }, AW_MS(30), 1 };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, notify_task, &x, "notifier"), 0);
		const char *want_ch[] = { c1, c2, c1 }, *want_pl[] = { "a", "b", "" };
		aw_pg_listener l;
		aw_pg_notification *n;
		int got = 0;
		AW_WITH(AW_TIMEOUT(AW_SEC(10))) {
			AW_FOR(n, aw_pg_listen_init(&l, a.conn, listened)) {
				PCHECK(got < 3);
				PCHECK_STR(n->channel, want_ch[got]);
				PCHECK_STR(n->payload, want_pl[got]);
				if (++got == 3)
					break;
			}
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK(scalar(a.conn, "SELECT count(*) FROM pg_listening_channels()") == 0);

		/* Notifications sent in a transaction arrive at its COMMIT only;
		 * none arrives for a rolled-back one. */
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, b.conn, NULL)) {
			PCHECK_RC(aw_pg_notify(b.conn, c1, "rolled back"), 0);
			(void)!aw_raise(-EIO, "undo");
			break;
		}
		aw_error_clear();
		AW_WITH(aw_pg_tx_init(&tx, b.conn, NULL)) {
			PCHECK_RC(aw_pg_notify(b.conn, c1, "committed"), 0);
		}
		PCHECK_RC(aw_error_pending(), 0);
		/* Listening only now: earlier notifications are not replayed. */
		aw_scope s;
		got = 0;
		AW_WITH(aw_move_on_init(&s, AW_MS(200))) {
			AW_FOR(n, aw_pg_listen_init(&l, a.conn, listened))
				got++;
		}
		PCHECK(s.fired);
		PCHECK(got == 0);
		PCHECK_RC(aw_error_pending(), 0);
	}
	return aw_error_pending();
}

AW_TEST(pg_listen_on_several_channels_gets_only_those_in_order) { PG_RUN(listen_many_main, NULL); }

typedef struct listen_task {
	aw_pg_conn *c;
	const char *const *channels;
	bool waiting;
	int got, rc, pending;
} listen_task;

static int listen_worker(void *arg)
{
	listen_task *x = arg;
	aw_pg_listener l;
	aw_pg_notification *n;
	x->waiting = true;
	AW_FOR(n, aw_pg_listen_init(&l, x->c, x->channels))
		x->got++;
	x->pending = aw_error_pending();
	aw_error_clear();
	return 0;
}

static int listen_cancel_main(void *arg)
{
	(void)arg;
	char chan[32];
	snprintf(chan, sizeof chan, "aw_cancel_%d", (int)getpid());
	const char *chans[] = { chan, NULL };
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		listen_task x = { a.conn, chans, false, 0, 0, 1 };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, listen_worker, &x, "listener"), 0);
		PCHECK_RC(aw_sleep(AW_MS(100)), 0);
		PCHECK(x.waiting);
		/* While it waits, the connection is its own. */
		PCHECK_RC(pg_exec_rows(a.conn, "SELECT 1", AW_PG_NOARGS), -EBUSY);
		aw_error_clear();
		PCHECK_RC(aw_pg_notify(b.conn, chan, "one"), 0);
		PCHECK_RC(aw_sleep(AW_MS(100)), 0);
		PCHECK(x.got == 1);
		aw_task_cancel(t);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(x.pending, -ECANCELED);
		PCHECK(x.got == 1);
		PCHECK(aw_pg_conn_ok(a.conn));
		PCHECK(aw_pg_conn_tx_status(a.conn) == 'I');
		PCHECK(scalar(a.conn, "SELECT count(*) FROM pg_listening_channels()") == 0);

		/* The session lost while waiting ends the loop with -ECONNRESET. */
		listen_task y = { a.conn, chans, false, 0, 0, 1 };
		PCHECK_RC(aw_spawn(&t, listen_worker, &y, "listener"), 0);
		PCHECK_RC(aw_sleep(AW_MS(100)), 0);
		PCHECK(y.waiting);
		PCHECK_RC(terminate(b.conn, a.conn), 0);
		PCHECK_RC(aw_task_join(t), 0);
		PCHECK_RC(y.pending, -ECONNRESET);
		PCHECK(!aw_pg_conn_ok(a.conn));
	}
	return aw_error_pending();
}

AW_TEST(pg_listen_loop_cancelled_cleanly_and_lost_connection_is_econnreset) { PG_RUN(listen_cancel_main, NULL); }

/* ---- COPY -------------------------------------------------------------------------- */

static int copy_in_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_copy(id int primary key, name text)"), 0);
		aw_pg_copy_in cp;
		AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy (id, name) FROM STDIN")) {
			char line[64];
			for (int i = 1; i <= 10000; i++) {
				int n = snprintf(line, sizeof line, "%d\tname %d\n", i, i);
				PCHECK_RC(aw_pg_copy_write(&cp, line, (size_t)n), 0);
			}
			/* The connection is the copy's until the block ends. */
			PCHECK_RC(pg_exec_rows(c, "SELECT 1", AW_PG_NOARGS), -EBUSY);
			aw_error_clear();
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(cp.rows == 10000);
		PCHECK(!cp.active);
		PCHECK(count_rows(c, "t_copy") == 10000);
		PCHECK(scalar(c, "SELECT sum(id) FROM t_copy") == 50005000);
		PCHECK_STR(show(c, "SELECT name FROM t_copy WHERE id = 4321"), "name 4321");

		/* Large writes (many rows per write, a few MB in all), CSV. */
		char *big = malloc(1 << 20);
		PCHECK(big);
		int id = 100000;
		AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy (id, name) FROM STDIN (FORMAT csv)")) {
			for (int chunk = 0; chunk < 4; chunk++) {
				size_t len = 0;
				while (len < (1 << 20) - 200) {
					len += (size_t)snprintf(big + len, 200, "%d,\"x, %0100d\"\n", id, id);
					id++;
				}
				if (aw_pg_copy_write(&cp, big, len) < 0)
					break;
			}
		}
		free(big);
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(cp.rows == id - 100000 && cp.rows > 30000);
		PCHECK(count_rows(c, "t_copy") == 10000 + cp.rows);

		/* Writing outside the block, or a statement that is not a COPY
		 * FROM STDIN. */
		PCHECK_RC(aw_pg_copy_write(&cp, "1\n", 2), -EINVAL);
		aw_error_clear();
		bool ran = false;
		AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy TO STDOUT")) {
			ran = true;
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), -EINVAL);
		PCHECK(pg_error_mentions("FROM STDIN"));
		aw_error_clear();
		AW_WITH(aw_pg_copy_in_init(&cp, c, "SELECT 1")) {
			ran = true;
		}
		PCHECK(!ran);
		PCHECK_RC(aw_error_pending(), -EINVAL);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(scalar(c, "SELECT 5") == 5);
	}
	return aw_error_pending();
}

AW_TEST(pg_copy_in_of_10000_rows_stores_them_all) { PG_RUN(copy_in_main, NULL); }

static int copy_in_abort_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_copy(id int primary key, name text)"), 0);
		aw_pg_copy_in cp;
		AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy FROM STDIN")) {
			char line[64];
			for (int i = 1; i <= 500; i++) {
				int n = snprintf(line, sizeof line, "%d\tx\n", i);
				PCHECK_RC(aw_pg_copy_write(&cp, line, (size_t)n), 0);
			}
			(void)!aw_raise(-EIO, "the source of the data failed");
			break;
		}
		PCHECK_RC(aw_error_pending(), -EIO);
		PCHECK(pg_error_mentions("the source of the data failed"));
		aw_error_clear();
		PCHECK(cp.rows == 0);
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_copy") == 0);

		/* Cancelled by a deadline while writing: nothing stored either. */
		AW_WITH(AW_TIMEOUT(AW_MS(100))) {
			AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy FROM STDIN")) {
				PCHECK_RC(aw_pg_copy_write(&cp, "1\ty\n", 4), 0);
				if (aw_sleep(AW_SEC(10)) < 0)
					break;
			}
		}
		PCHECK_RC(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_copy") == 0);

		/* Bad data: the server rejects the COPY at its end; the block
		 * fails with -AW_EPG, nothing is stored, the connection goes on. */
		AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy FROM STDIN")) {
			PCHECK_RC(aw_pg_copy_write(&cp, "1\tok\n", 5), 0);
			PCHECK_RC(aw_pg_copy_write(&cp, "two\tbad\n", 8), 0);
			PCHECK_RC(aw_pg_copy_write(&cp, "3\tok\n", 5), 0);
		}
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "22P02");
		aw_error_clear();
		PCHECK(cp.rows == 0);
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_copy") == 0);

		/* Inside a transaction, an aborted COPY takes the transaction
		 * with it: the transaction block rolls back and fails. */
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, c, NULL)) {
			PCHECK_RC(insert_id(c, "t_copy", "99"), 1);
			AW_WITH(aw_pg_copy_in_init(&cp, c, "COPY t_copy FROM STDIN")) {
				PCHECK_RC(aw_pg_copy_write(&cp, "99\tduplicate\n", 13), 0);
			}
		}
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "23505");
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(count_rows(c, "t_copy") == 0);
		PCHECK(scalar(c, "SELECT 7") == 7);
	}
	return aw_error_pending();
}

AW_TEST(pg_copy_in_aborted_or_bad_data_stores_nothing_and_connection_stays_usable)
{
	PG_RUN(copy_in_abort_main, NULL);
}

static int copy_out_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		aw_pg_copy_out cp;
		aw_chunk *ch;
		int n = 0;
		int64_t off = 0;
		AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY (SELECT g, 'row ' || g FROM generate_series(1, 10000) g) TO STDOUT")) {
			n++;
			if (ch->offset != off) {   /* the bytes copied before this row */
				aw_test_fail(__FILE__, __LINE__, "row %d: offset %lld, want %lld", n, (long long)ch->offset,
					     (long long)off);
				return -1;
			}
			off += (int64_t)ch->len;
			char want[64];
			int len = snprintf(want, sizeof want, "%d\trow %d\n", n, n);
			if (ch->len != (size_t)len || memcmp(ch->data, want, (size_t)len) != 0) {
				aw_test_fail(__FILE__, __LINE__, "row %d: got '%.*s'", n, (int)ch->len, ch->data);
				return -1;
			}
			/* The connection is the copy's until the loop ends. */
			if (n == 5000) {
				PCHECK_RC(pg_exec_rows(c, "SELECT 1", AW_PG_NOARGS), -EBUSY);
				aw_error_clear();
			}
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(n == 10000);
		PCHECK(cp.rows == 10000);
		PCHECK(aw_pg_conn_tx_status(c) == 'I');

		/* A table, in CSV. */
		PCHECK_RC(aw_pg_exec_script(c, "CREATE TEMP TABLE t_out(id int, name text); "
					       "INSERT INTO t_out VALUES (1, 'a,b'), (2, NULL)"), 0);
		n = 0;
		AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY t_out TO STDOUT (FORMAT csv)")) {
			const char *want = n == 0 ? "1,\"a,b\"\n" : "2,\n";
			PCHECK(ch->len == strlen(want) && !memcmp(ch->data, want, ch->len));
			n++;
		}
		PCHECK(n == 2 && cp.rows == 2);

		/* A server error in the middle of the rows ends the loop with it. */
		n = 0;
		AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY (SELECT 1 / (3000 - g) FROM generate_series(1, 5000) g) TO STDOUT"))
			n++;
		PCHECK_RC(aw_error_pending(), -AW_EPG);
		PCHECK_STR(aw_pg_last_error(c)->sqlstate, "22012");
		aw_error_clear();
		PCHECK(n < 3000);
		PCHECK(aw_pg_conn_tx_status(c) == 'I');

		/* Not a COPY TO STDOUT. */
		AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY t_out FROM STDIN"))
			n++;
		PCHECK_RC(aw_error_pending(), -EINVAL);
		PCHECK(pg_error_mentions("TO STDOUT"));
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(scalar(c, "SELECT count(*) FROM t_out") == 2);
	}
	return aw_error_pending();
}

AW_TEST(pg_copy_out_of_10000_rows_yields_exactly_the_rows) { PG_RUN(copy_out_main, NULL); }

static int copy_out_fail_at_third_row(aw_pg_conn *c)
{
	aw_pg_copy_out cp;
	aw_chunk *ch;
	int n = 0;
	AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY (SELECT g FROM generate_series(1, 50000000) g) TO STDOUT")) {
		if (++n == 3)
			return aw_raise(-EIO, "enough");
		(void)ch;
	}
	return 0;
}

static int copy_out_break_main(void *arg)
{
	(void)arg;
	aw_pg_connection a;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL)) {
		aw_pg_conn *c = a.conn;
		int pid = aw_pg_conn_pid(c);
		aw_pg_copy_out cp;
		aw_chunk *ch;
		int n = 0;
		aw_time t0 = aw_now();
		/* Far more rows than will be read (20 GB: minutes of work for
		 * the server on any machine): the exit must stop the server. The
		 * set-returning function sits in the select list, so rows stream
		 * from the first one (in FROM, the server would first materialise
		 * them all, which is what the old bound mostly measured). The
		 * bound below is loose for a machine under load. */
		AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY (SELECT generate_series(1, 200000000), repeat('x', 100)) TO STDOUT")) {
			if (++n == 10)
				break;
			(void)ch;
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(n == 10);
		PCHECK(aw_now() - t0 < AW_SEC(30));
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_pid(c) == pid);
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(scalar(c, "SELECT 11") == 11);

		/* Leaving by an error, and by a deadline. */
		{
			int64_t got = copy_out_fail_at_third_row(c);
			PCHECK_RC(aw_error_pending(), -EIO);
			PCHECK_RC(got, -EIO);
		}
		aw_error_clear();
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		AW_WITH(AW_TIMEOUT(AW_MS(100))) {
			AW_FOR(ch, aw_pg_copy_out_init(&cp, c, "COPY (SELECT pg_sleep(0.01), g FROM generate_series(1, 100000) g) TO STDOUT")) {
				(void)ch;
			}
		}
		PCHECK_RC(aw_error_pending(), -ETIMEDOUT);
		aw_error_clear();
		PCHECK(aw_pg_conn_ok(c));
		PCHECK(aw_pg_conn_tx_status(c) == 'I');
		PCHECK(scalar(c, "SELECT 12") == 12);
	}
	return aw_error_pending();
}

AW_TEST(pg_copy_out_early_break_leaves_the_connection_usable) { PG_RUN(copy_out_break_main, NULL); }

/* ---- interrupted enters ------------------------------------------------------------ */

/* A block whose BEGIN is interrupted (here: the scope is cancelled before
 * the answer is read; the drain after the cancel request sees the BEGIN
 * complete) must not leave the session inside a transaction that no exit
 * ends. */
static int cancelled_begin_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		aw_scope s;
		int rc = 1;
		bool entered = false;
		AW_WITH(aw_move_on_init(&s, AW_SEC(30))) {
			aw_scope_cancel(&s);
			aw_pg_tx tx;
			AW_WITH(aw_pg_tx_init(&tx, cm.conn, NULL)) {
				entered = true;
			}
			rc = aw_error_pending();
		}
		PCHECK(!entered);
		PCHECK_RC(rc, -ECANCELED);
		PCHECK(aw_pg_conn_ok(cm.conn));
		PCHECK(aw_pg_conn_tx_status(cm.conn) == 'I');
		/* A transaction block works on the connection afterwards. */
		aw_pg_tx tx;
		AW_WITH(aw_pg_tx_init(&tx, cm.conn, NULL)) {
			PCHECK(aw_pg_conn_tx_status(cm.conn) == 'T');
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(aw_pg_conn_tx_status(cm.conn) == 'I');
	}
	return aw_error_pending();
}

AW_TEST(pg_tx_begin_interrupted_by_a_cancel_leaves_no_transaction_open) { PG_RUN(cancelled_begin_main, NULL); }

/* A listener whose LISTEN is interrupted leaves no channel listened to:
 * the undo runs shielded, and covers the channel whose LISTEN the drain
 * saw complete. */
static int cancelled_listen_main(void *arg)
{
	(void)arg;
	aw_pg_connection cm;
	AW_WITH(aw_pg_connection_init(&cm, PG_URL(), NULL)) {
		const char *chans[] = { "aw_cancel_a", "aw_cancel_b", NULL };
		aw_scope s;
		int got = 0, rc = 1;
		AW_WITH(aw_move_on_init(&s, AW_SEC(30))) {
			aw_scope_cancel(&s);
			aw_pg_listener l;
			aw_pg_notification *n;
			AW_FOR(n, aw_pg_listen_init(&l, cm.conn, chans)) {
				(void)n;
				got++;
			}
			rc = aw_error_pending();
		}
		PCHECK(got == 0);
		PCHECK_RC(rc, -ECANCELED);
		PCHECK(aw_pg_conn_ok(cm.conn));
		PCHECK(scalar(cm.conn, "SELECT count(*) FROM pg_listening_channels()") == 0);
		PCHECK(aw_pg_conn_tx_status(cm.conn) == 'I');
	}
	return aw_error_pending();
}

AW_TEST(pg_listen_interrupted_at_enter_leaves_no_channel_listened) { PG_RUN(cancelled_listen_main, NULL); }

/* The session also listens to a channel by hand: the listener yields only
 * its own channels' notifications. */
static int listen_own_channels_main(void *arg)
{
	(void)arg;
	char mine[32], other[32];
	snprintf(mine, sizeof mine, "aw_mine_%d", (int)getpid());
	snprintf(other, sizeof other, "aw_other_%d", (int)getpid());
	aw_pg_connection a, b;
	AW_WITH(aw_pg_connection_init(&a, PG_URL(), NULL), aw_pg_connection_init(&b, PG_URL(), NULL)) {
		char sql[80];
		snprintf(sql, sizeof sql, "LISTEN %s", other);
		PCHECK_RC(aw_pg_exec_script(a.conn, sql), 0);
		notifier x = { b.conn, (const char *const[]){ other, mine, NULL },
			       (const char *const[]){ "not yours", "yours" }, AW_MS(30), 1 };
		aw_task *t;
		PCHECK_RC(aw_spawn(&t, notify_task, &x, "notifier"), 0);
		const char *listened[] = { mine, NULL };
		aw_pg_listener l;
		aw_pg_notification *n;
		int got = 0;
		AW_WITH(AW_TIMEOUT(AW_SEC(10))) {
			AW_FOR(n, aw_pg_listen_init(&l, a.conn, listened)) {
				got++;
				PCHECK_STR(n->channel, mine);
				PCHECK_STR(n->payload, "yours");
				break;
			}
		}
		PCHECK_RC(aw_error_pending(), 0);
		PCHECK(got == 1);
		PCHECK_RC(aw_task_join(t), 0);
		/* The hand-made LISTEN is the caller's: still there. */
		PCHECK(scalar(a.conn, "SELECT count(*) FROM pg_listening_channels()") == 1);
	}
	return aw_error_pending();
}

AW_TEST(pg_listen_yields_only_its_own_channels) { PG_RUN(listen_own_channels_main, NULL); }
