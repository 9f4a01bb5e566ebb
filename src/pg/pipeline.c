/* SPDX-License-Identifier: MIT */
/*
 * Pipelining (aw_pg_pool_opts.pipeline): concurrent aw_pg_pool_query calls
 * from different tasks share connections in libpq's pipeline mode, so one
 * connection carries many statements in flight instead of one round trip
 * each.
 *
 * A pipe is a connection acquired from the pool and switched to pipeline
 * mode, with a FIFO of entries (one per query) and a pump task. A query
 * appends its messages to libpq's output buffer (Parse when the statement
 * is new to the connection, then Bind/Execute, then a Sync of its own, so
 * that one query's error aborts nothing but itself), pushes them out if the
 * socket takes them, and parks. The pump flushes what is left, reads the
 * results in order and hands each entry its result at its Sync. A pipe
 * whose FIFO stays empty for PIPE_IDLE goes back to the pool.
 *
 * Picking a pipe: the least loaded one, unless every pipe already has work
 * and the pool can hand out another connection without waiting.
 *
 * A task cancelled while its query is in flight abandons the entry (the
 * pump frees it when its results come); no cancel request is sent, since
 * the server would cancel whichever of the pipe's statements runs then.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define PIPE_IDLE AW_MS(50)

typedef struct pipe_entry pipe_entry;
struct pipe_entry {
	pipe_entry *next;
	aw_task *task;            /* NULL once abandoned */
	PGresult *res, *err;
	int dealloc_left;         /* a queued DEALLOCATE's result, then its
	                             Sync, still to come (2, 1 or 0) */
	bool parse_left;          /* a queued Parse's result still to come */
	bool cached;              /* ran a statement prepared earlier */
	bool stale;               /* ... which the server no longer had */
	char stmt_name[24];
	aw_pg_stmt_ref prep;      /* the statement this entry prepares */
	int code;                 /* set with done: 0, -AW_EPG, -ECONNRESET */
	bool done;
};

struct aw_pg_pipe {
	aw_pg_pool *pool;
	aw_pg_conn *c;
	aw_task *pump;
	pipe_entry *head, *tail;
	size_t inflight;
	bool out_pending;         /* libpq holds bytes the socket did not take */
	bool failed;
	bool pump_parked;         /* parked in its idle wait */
};

struct aw_pg_pipes {
	aw_pg_pipe **v;
	size_t n, cap;
};

/* ---- the pipe list ---------------------------------------------------------- */

static int pipes_add(aw_pg_pool *p, aw_pg_pipe *pp)
{
	if (!p->pipes) {
		p->pipes = aw__calloc(1, sizeof *p->pipes);
		if (!p->pipes)
			return -ENOMEM;
	}
	struct aw_pg_pipes *ps = p->pipes;
	if (ps->n == ps->cap) {
		size_t nc = ps->cap ? ps->cap * 2 : 8;
		aw_pg_pipe **v = aw__realloc(ps->v, nc * sizeof *v);
		if (!v)
			return -ENOMEM;
		ps->v = v;
		ps->cap = nc;
	}
	ps->v[ps->n++] = pp;
	return 0;
}

static void pipes_remove(aw_pg_pool *p, aw_pg_pipe *pp)
{
	struct aw_pg_pipes *ps = p->pipes;
	for (size_t i = 0; ps && i < ps->n; i++)
		if (ps->v[i] == pp) {
			ps->v[i] = ps->v[--ps->n];
			return;
		}
}

/* ---- completing entries ------------------------------------------------------------ */

static void entry_finish(pipe_entry *e, int code)
{
	e->done = true;
	e->code = code;
	if (e->task) {
		aw_task_wake(e->task, 0);
		return;
	}
	/* Abandoned: nobody will read it. */
	PQclear(e->res);
	PQclear(e->err);
	free(e);
}

static pipe_entry *entry_pop(aw_pg_pipe *pp)
{
	pipe_entry *e = pp->head;
	pp->head = e->next;
	if (!pp->head)
		pp->tail = NULL;
	pp->inflight--;
	return e;
}

/* The connection is lost (code -ECONNRESET), or the pump was cancelled
 * by a pool close whose grace period ran out (-ECANCELED): every entry
 * fails with that code, and the connection, whose statements are still in
 * flight, is discarded. */
static void pipe_fail_with(aw_pg_pipe *pp, int code)
{
	pp->failed = true;
	pp->c->broken = true;
	while (pp->head)
		entry_finish(entry_pop(pp), code);
}

static void pipe_fail(aw_pg_pipe *pp) { pipe_fail_with(pp, -ECONNRESET); }

/* The entry's cached statement is gone on the server (26000: a
 * DEALLOCATE behind the cache's back; then others may be gone too, so the
 * whole cache is forgotten, as the unpipelined path does) or no longer fits
 * (0A000): drop it, so the retry prepares it again. */
static bool stale_statement(aw_pg_conn *c, pipe_entry *e, const PGresult *r)
{
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	if (!st || (strcmp(st, "26000") && strcmp(st, "0A000")))
		return false;
	if (!strcmp(st, "26000")) {
		aw_pg_cache_forget(c);
	} else {
		aw_pg_stmt_ref ref = { .stmt = true };
		memcpy(ref.name, e->stmt_name, sizeof ref.name);
		aw_pg_stmt_drop(c, &ref);
	}
	return true;
}

/* Take every result libpq has complete, in order. Returns -1 if the
 * connection failed. */
static int pipe_process(aw_pg_pipe *pp)
{
	aw_pg_conn *c = pp->c;
	int nulls = 0;
	while (pp->head && !PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			/* The end of one statement's results; a second NULL in a
			 * row means nothing more is complete yet. */
			if (++nulls >= 2)
				break;
			continue;
		}
		nulls = 0;
		pipe_entry *e = pp->head;
		ExecStatusType st = PQresultStatus(r);
		if (e->dealloc_left == 2 && st != PGRES_COPY_IN && st != PGRES_COPY_OUT && st != PGRES_COPY_BOTH) {
			/* The DEALLOCATE of an evicted statement, in a segment of
			 * its own: whether it worked is not this query's business
			 * (a failure means the statement is gone already). */
			PQclear(r);
			e->dealloc_left = 1;
			if (PQstatus(c->pg) != CONNECTION_OK)
				return -1;
			continue;
		}
		switch (st) {
		case PGRES_PIPELINE_SYNC:
			PQclear(r);
			if (e->dealloc_left == 1) {   /* the DEALLOCATE's own Sync */
				e->dealloc_left = 0;
				break;
			}
			entry_finish(entry_pop(pp), e->err ? -AW_EPG : 0);
			break;
		case PGRES_PIPELINE_ABORTED:
			PQclear(r);
			e->parse_left = false;
			break;
		case PGRES_FATAL_ERROR:
		case PGRES_BAD_RESPONSE:
			if (e->parse_left) {
				e->parse_left = false;
				aw_pg_stmt_drop(c, &e->prep);   /* the Parse failed */
			} else if (e->cached && !e->err && stale_statement(c, e, r)) {
				e->stale = true;
			}
			if (!e->err)
				e->err = r;
			else
				PQclear(r);
			if (PQstatus(c->pg) != CONNECTION_OK)
				return -1;
			break;
		case PGRES_COPY_IN:
		case PGRES_COPY_OUT:
		case PGRES_COPY_BOTH:
			PQclear(r);
			return -1;   /* COPY cannot run in a pipeline */
		default:
			if (e->parse_left) {
				e->parse_left = false;
				PQclear(r);
			} else {
				aw_pg_note_command(c, r);
				PQclear(e->res);
				e->res = r;
			}
			break;
		}
	}
	return PQstatus(c->pg) == CONNECTION_OK ? 0 : -1;
}

/* ---- the pump ------------------------------------------------------------------------- */

static void pipe_retire(aw_pg_pipe *pp)
{
	aw_pg_pool *p = pp->pool;
	aw_pg_conn *c = pp->c;
	pipes_remove(p, pp);
	if (!pp->failed && PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF && !PQexitPipelineMode(c->pg))
		c->broken = true;
	c->pipe = NULL;
	free(pp);
	aw_pg_pool_release(p, c);
}

static int pump(void *arg)
{
	aw_pg_pipe *pp = arg;
	aw_pg_conn *c = pp->c;
	for (;;) {
		if (!pp->head) {
			if (pp->pool->closing || pp->failed)
				break;
			pp->pump_parked = true;
			int v = aw_task_park(aw_deadline_after(PIPE_IDLE), false);
			pp->pump_parked = false;
			if (pp->head)
				continue;
			if (v == AW_WAKE_TIMER || v < 0)
				break;
			continue;
		}
		int want = AW_READABLE;
		if (pp->out_pending) {
			int r = PQflush(c->pg);
			if (r < 0) {
				pipe_fail(pp);
				continue;
			}
			pp->out_pending = r == 1;
			if (pp->out_pending)
				want |= AW_WRITABLE;
		}
		if (pipe_process(pp) < 0) {
			pipe_fail(pp);
			continue;
		}
		if (!pp->head)
			continue;
		if (!aw_pg_input_pending(c)) {
			/* A pool close lets the statements in flight finish
			 * (their tasks are waiting for them) until its grace
			 * period ends; then it cancels the pump, the holder. */
			int rc = aw_fd_wait_any(c->fd, want, AW_NEVER);
			if (rc < 0) {
				aw_error_clear();
				if (rc == -ECANCELED) {
					/* The pool close's grace ran out: the connection
					 * is discarded, so stop the server's work on
					 * the statements in flight too. */
					(void)aw_pg_cancel_request(c);
					aw_error_clear();
					pipe_fail_with(pp, -ECANCELED);
				} else {
					pipe_fail(pp);
				}
				continue;
			}
		}
		if (!PQconsumeInput(c->pg)) {
			pipe_fail(pp);
			continue;
		}
	}
	pipe_retire(pp);
	return 0;
}

/* ---- picking a pipe ------------------------------------------------------------------- */

/* Waits: a new pipe on a connection from the pool. */
static int pipe_open(aw_pg_pool *p, aw_pg_pipe **out)
{
	aw_pg_conn *c;
	int rc = aw_pg_pool_acquire_at(AW_HERE, p, &c);
	if (rc < 0)
		return rc;
	aw_pg_pipe *pp = aw__calloc(1, sizeof *pp);
	if (!pp || pipes_add(p, pp) < 0) {
		free(pp);
		aw_pg_pool_release(p, c);
		return aw_raise(-ENOMEM, "pg pipeline: out of memory");
	}
	if (!PQenterPipelineMode(c->pg)) {
		pipes_remove(p, pp);
		free(pp);
		aw_pg_pool_release(p, c);
		return aw_raise(-EIO, "pg pipeline: cannot enter pipeline mode: %s", PQerrorMessage(c->pg));
	}
	pp->pool = p;
	pp->c = c;
	c->pipe = pp;
	rc = aw_spawn(&pp->pump, pump, pp, "pg-pipe-pump");
	if (rc < 0) {
		pipes_remove(p, pp);
		PQexitPipelineMode(c->pg);
		c->pipe = NULL;
		free(pp);
		aw_pg_pool_release(p, c);
		return rc;
	}
	aw_task_detach(pp->pump);
	/* The pump holds the connection from now on: the task that opened
	 * the pipe may be long gone when a pool close cancels holders. */
	c->holder = pp->pump;
	*out = pp;
	return 0;
}

static int pipe_pick(aw_pg_pool *p, aw_pg_pipe **out)
{
	aw_pg_pipe *best = NULL;
	struct aw_pg_pipes *ps = p->pipes;
	for (size_t i = 0; ps && i < ps->n; i++) {
		aw_pg_pipe *pp = ps->v[i];
		if (pp->failed)
			continue;
		if (!best || pp->inflight < best->inflight)
			best = pp;
	}
	bool can_grow = aw_waitq_empty(&p->waiters) &&
			(p->idle || p->nidle + p->nbusy + p->nopening < p->o.max_size);
	if (best && (best->inflight == 0 || !can_grow)) {
		*out = best;
		return 0;
	}
	if (!best || can_grow)
		return pipe_open(p, out);
	*out = best;
	return 0;
}

/* ---- the query ---------------------------------------------------------------------------- */

static int pipe_query_traced(aw_pg_pool *p, aw_task *self, PGresult **out, const char *sql, int nparams,
			     const char *const *params, bool *stale, aw_pg_qtrace *qt);

/* One attempt. *stale is set when the query ran a cached statement that
 * the server no longer has (26000: deallocated behind the cache's back) or
 * whose result shape changed (0A000): nothing ran, the pump dropped the
 * entry from the cache, and one more attempt will prepare it afresh. */
static int pipe_query_once(aw_pg_pool *p, aw_task *self, PGresult **out, const char *sql, int nparams,
			   const char *const *params, bool *stale)
{
	aw_pg_qtrace qt;
	int rc = pipe_query_traced(p, self, out, sql, nparams, params, stale, &qt);
	aw_pg_trace_end(&qt, rc);
	return rc;
}

/* One attempt, with its span: the connection is picked first, so that
 * its options say whether the text carries the trace comment. */
static int pipe_query_traced(aw_pg_pool *p, aw_task *self, PGresult **out, const char *sql, int nparams,
			     const char *const *params, bool *stale, aw_pg_qtrace *qt)
{
	qt->on = false;
	qt->sql = NULL;
	*stale = false;
	aw_pg_pipe *pp = NULL;
	if (p->conn_opts.transaction_pooler && aw_pg_session_guard(&(aw_pg_conn){ .opts = p->conn_opts }, sql,
								  "aw_pg_pool_query") < 0)
		return -ENOTSUP;
	int rc = pipe_pick(p, &pp);
	if (rc < 0)
		return rc;
	aw_pg_conn *c = pp->c;
	const char *text = aw_pg_trace_begin(qt, c, sql);
	pipe_entry *e = aw__calloc(1, sizeof *e);
	if (!e)
		return aw_raise(-ENOMEM, "aw_pg_pool_query: out of memory");
	e->task = self;

	/* Queue the messages: [Parse] Bind/Execute Sync. */
	bool sent;
	if (text == sql && c->opts.stmt_cache > 0) {
		const char *name;
		rc = aw_pg_stmt_lookup_or_send(c, sql, nparams, &name, &e->prep);
		if (rc < 0) {
			/* A DEALLOCATE already queued with no entry to take its
			 * results would put every later entry out of step. */
			if (e->prep.dealloc)
				pipe_fail(pp);
			free(e);
			return rc;
		}
		e->cached = !e->prep.stmt;
		memcpy(e->stmt_name, name, sizeof e->stmt_name);
		e->dealloc_left = e->prep.dealloc ? 2 : 0;
		e->parse_left = e->prep.stmt;
		sent = PQsendQueryPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
	} else {
		sent = PQsendQueryParams(c->pg, text, nparams, NULL, params, NULL, NULL, 0);
	}
	if (!sent || !PQpipelineSync(c->pg)) {
		free(e);
		pipe_fail(pp);
		return aw_raise(-ECONNRESET, "pg pipeline: cannot queue the statement: %s", PQerrorMessage(c->pg));
	}
	c->queries++;
	if (pp->tail)
		pp->tail->next = e;
	else
		pp->head = e;
	pp->tail = e;
	pp->inflight++;
	/* Push it out now if the socket takes it; else the pump will. */
	if (!pp->out_pending) {
		int r = PQflush(c->pg);
		if (r < 0) {
			pipe_fail(pp);
		} else if (r == 1) {
			pp->out_pending = true;
		}
	}
	aw_task_wake(pp->pump, 0);   /* no-op unless it is parked */

	while (!e->done) {
		int v = aw_task_park(AW_NEVER, false);
		if (e->done)
			break;
		if (v < 0) {
			e->task = NULL;   /* the pump frees it */
			return v;
		}
	}
	int code = e->code;
	if (code == -AW_EPG && e->stale) {
		*stale = true;
		PQclear(e->res);
		PQclear(e->err);
		free(e);
		return code;
	}
	if (code == -AW_EPG) {
		PGresult *er = e->err;
		const char *st = PQresultErrorField(er, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(er, PG_DIAG_MESSAGE_PRIMARY);
		const char *detail = PQresultErrorField(er, PG_DIAG_MESSAGE_DETAIL);
		(void)!aw_raise(code, "PostgreSQL ERROR %s: %s%s%s", st ? st : "(no SQLSTATE)", msg ? msg : "",
			 detail ? " DETAIL: " : "", detail ? detail : "");
	} else if (code == -ECANCELED) {
		(void)!aw_raise(code, "pg pipeline: the pool was closed and its grace period ran out "
			 "while the statement was in flight");
	} else if (code < 0) {
		(void)!aw_raise(code, "pg pipeline: the connection was lost");
	} else {
		*out = e->res;
		e->res = NULL;
	}
	PQclear(e->res);
	PQclear(e->err);
	free(e);
	return code;
}

int aw_pg_pipe_query(aw_pg_pool *p, PGresult **out, const char *sql, int nparams, const char *const *params)
{
	*out = NULL;
	if (!sql)
		return aw_raise(-EINVAL, "aw_pg_pool_query: sql is NULL");
	if (nparams < 0 || nparams > 65535 || (nparams > 0 && !params))
		return aw_raise(-EINVAL, "aw_pg_pool_query: %d parameters (0..65535, with an array)", nparams);
	aw_task *self = aw_task_current();
	if (!self)
		return aw_raise(-AW_ENOTASK, "aw_pg_pool_query outside of a task");
	bool stale;
	int rc = pipe_query_once(p, self, out, sql, nparams, params, &stale);
	if (stale)   /* as the unpipelined path does: once */
		rc = pipe_query_once(p, self, out, sql, nparams, params, &stale);
	if (stale)
		return aw_raise(rc, "PostgreSQL ERROR: the prepared statement for this query vanished twice "
				"(DEALLOCATE or a changed result type behind the statement cache)");
	return rc;
}

void aw_pg_pipe_close(aw_pg_pool *p)
{
	struct aw_pg_pipes *ps = p->pipes;
	/* Pumps see p->closing and retire once their entries are done. */
	for (size_t i = 0; ps && i < ps->n; i++)
		aw_task_wake(ps->v[i]->pump, 0);
}

void aw_pg_pipe_free(aw_pg_pool *p)
{
	if (p->pipes) {
		free(p->pipes->v);
		free(p->pipes);
		p->pipes = NULL;
	}
}
