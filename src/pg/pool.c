/* SPDX-License-Identifier: MIT */
/*
 * The connection pool (asyncpg's Pool, in C).
 *
 * Connections are idle (a LIFO stack: the most recently released is handed
 * out first, so a small working set stays warm and the rest age out), in
 * use (a list, with the holding task, so close can cancel holders), or
 * being opened (counted). size = idle + in use + opening <= max_size.
 *
 * Acquire takes an idle connection if no one waits before it, opens one if
 * below max_size, or queues (FIFO). Release hands the connection straight
 * to the longest waiter, so no one barges past the queue. A waiter woken
 * because a slot was freed (a connection discarded) opens one itself.
 *
 * Idle connections stay watched: their sockets remain registered with the
 * loop, whose cached readiness shows whether the server sent anything (a
 * FATAL before it closed a terminated backend) or hung up. Acquire checks
 * that before handing a connection out, without a syscall when nothing
 * came; a maintenance task sweeps the idle list every second (idle
 * timeout, max lifetime, lost connections) and opens connections back up to
 * min_size.
 *
 * Backoff (docs/pg.md, "Outages"): at most max_connecting connects are in
 * flight. A connect that fails for a reason of the server's (refused,
 * timed out, reset, too many clients, starting up ...; not the caller's
 * cancellation or deadline) puts the pool in the failing state: no connect
 * before retry_at = now + a delay that doubles per failure in a row from
 * backoff_initial up to backoff_max, with jitter (uniform in [d/2, d]). While
 * failing, an acquire that finds no idle connection and may not start a
 * probe (too early, or max_connecting probes already in flight) fails at
 * once with the last connect error's code and that error as its cause;
 * every waiter is woken to do the same. The first successful connect ends
 * the failing state. So an outage costs a handful of connects per second,
 * not one per request, and recovery comes within backoff_max of the
 * server accepting again (as long as acquires keep coming).
 */
#include "internal.h"
#include "awith/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define STATS_RING AW_PG_STATS_RING
#define RELEASE_BUDGET AW_SEC(5)
#define DEFAULT_MAX 10
#define DEFAULT_CLOSE_GRACE AW_SEC(10)
#define DEFAULT_MAX_CONNECTING 2
#define DEFAULT_BACKOFF_INITIAL AW_MS(50)
#define DEFAULT_BACKOFF_MAX AW_MS(500)
static void pool_free(aw_pg_pool *p);

#define DEFAULT_RESET "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"

static size_t pool_size(const aw_pg_pool *p) { return p->nidle + p->nbusy + p->nopening; }

/* ---- lists --------------------------------------------------------------- */

static void list_push(aw_pg_conn **head, aw_pg_conn *c)
{
	c->pprev = NULL;
	c->pnext = *head;
	if (*head)
		(*head)->pprev = c;
	*head = c;
}

static void list_remove(aw_pg_conn **head, aw_pg_conn *c)
{
	if (c->pprev)
		c->pprev->pnext = c->pnext;
	else
		*head = c->pnext;
	if (c->pnext)
		c->pnext->pprev = c->pprev;
	c->pnext = c->pprev = NULL;
}

/* ---- waiters --------------------------------------------------------------- */

static void wake_waiter(pool_waiter *pw)
{
	aw_task_wake(pw->w.task, 0);
}

/* A slot is free (a connection was discarded, or an open failed): let the
 * longest waiter open one. */
static void offer_slot(aw_pg_pool *p)
{
	if (p->closing || pool_size(p) >= p->o.max_size)
		return;
	if (p->fail_streak > 0) {
		/* The server is failing: every waiter goes round again, to
		 * probe or to fail fast (none may wait for a connect that the
		 * backoff will not start). */
		aw_waiter *w;
		while ((w = aw_waitq_pop(&p->waiters))) {
			p->nwaiters--;
			pool_waiter *pw = w->data;
			pw->retry = true;
			wake_waiter(pw);
		}
		return;
	}
	aw_waiter *w = aw_waitq_pop(&p->waiters);
	if (!w)
		return;
	p->nwaiters--;
	pool_waiter *pw = w->data;
	pw->retry = true;
	wake_waiter(pw);
}

static void discard(aw_pg_pool *p, aw_pg_conn *c)
{
	c->pool = NULL;
	aw_pg_conn_close(c);
	p->discarded++;
	offer_slot(p);
}

/* ---- health of an idle connection -------------------------------------------- */


/* What an idle connection received: drop notifications nobody listens to;
 * an unsolicited result (a FATAL before the server closes) or a lost
 * connection means it cannot be handed out. true when it still can. */
static bool consume_idle_input(aw_pg_conn *c)
{
	if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK || c->broken)
		return false;
	PGnotify *n;
	while ((n = PQnotifies(c->pg)))
		PQfreemem(n);
	if (!PQisBusy(c->pg)) {
		PGresult *r;
		bool bad = false;
		while ((r = PQgetResult(c->pg))) {
			bad = true;
			PQclear(r);
		}
		if (bad)
			return false;
	}
	return PQstatus(c->pg) == CONNECTION_OK && !c->broken;
}

/* True if the idle connection is still good. Anything the server sent
 * while it sat idle (a notice, a notification, the FATAL of a terminated
 * backend) is read now; a hang-up or a bad status means it is lost. */
static bool idle_healthy(aw_pg_pool *p, aw_pg_conn *c)
{
	if (c->broken)
		return false;
	if (p->o.max_lifetime && aw_now() - c->created >= p->o.max_lifetime)
		return false;
	int seen = aw_fd_take_ready(c->fd);
	if (seen & AW_FD_HUP)
		return false;
	if ((seen & AW_READABLE) && !consume_idle_input(c))
		return false;
	return PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

/* The same check, by asking the socket now (a non-blocking peek) rather
 * than the loop's cached readiness, which lags behind when the loop has not
 * polled since the server spoke. */
static bool alive_now(aw_pg_conn *c)
{
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK)
		return false;
	if (!aw_pg_input_pending(c))
		return true;
	return consume_idle_input(c) && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

/* ---- opening ---------------------------------------------------------------- */

/* ---- metrics ---------------------------------------------------------------------- */

/* The pools' series (awith/metrics.h), made by the first pool opened.
 * Gauges sum over every pool of the process: each pool adds the change
 * since what it last published, on its loop's thread (so several pools,
 * on several loops, add up without a lock), and takes its part back when
 * it is freed. Published at each acquire, release, connect, queueing and
 * idle reap: the gauges are as of the pool's last operation. */
static struct {
	aw_metric *g[4];          /* size, idle, in_use, waiters */
	aw_metric *wait;          /* acquire-wait histogram */
} pgm;
static pthread_once_t pgm_once = PTHREAD_ONCE_INIT;

static void pgm_init(void)
{
	static const double waits[] = { 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30 };
	int rc = 0;
	rc |= aw_metric_gauge_new(&pgm.g[0], "awith_pg_pool_connections",
				  "Open pg pool connections (idle + in use + opening), all pools.", NULL);
	rc |= aw_metric_gauge_new(&pgm.g[1], "awith_pg_pool_idle_connections", "Idle pg pool connections.", NULL);
	rc |= aw_metric_gauge_new(&pgm.g[2], "awith_pg_pool_in_use_connections",
				  "pg pool connections held by a task.", NULL);
	rc |= aw_metric_gauge_new(&pgm.g[3], "awith_pg_pool_waiters", "Tasks waiting in a pg pool acquire.", NULL);
	rc |= aw_metric_histogram_new(&pgm.wait, "awith_pg_pool_acquire_wait_seconds",
				      "How long successful pg pool acquires waited.", NULL, waits,
				      sizeof waits / sizeof *waits);
	if (rc)
		aw_error_clear();   /* a metric not made stays NULL: its updates do nothing */
}

static void pool_publish_values(aw_pg_pool *p, const double v[4])
{
	pthread_once(&pgm_once, pgm_init);
	for (int i = 0; i < 4; i++)
		if (v[i] != p->published[i]) {
			aw_metric_gauge_add(pgm.g[i], v[i] - p->published[i]);
			p->published[i] = v[i];
		}
}

static void pool_publish(aw_pg_pool *p)
{
	double v[4] = { (double)(p->nidle + p->nbusy + p->nopening), (double)p->nidle, (double)p->nbusy,
			(double)p->nwaiters };
	pool_publish_values(p, v);
}

static void stats_wait(aw_pg_pool *p, aw_time waited)
{
	p->waits[p->nwaits % STATS_RING] = waited;
	p->nwaits++;
	pthread_once(&pgm_once, pgm_init);
	aw_metric_observe(pgm.wait, (double)waited / 1e9);
	pool_publish(p);
}

/* ---- backoff -------------------------------------------------------------------- */

static uint64_t next_rand(aw_pg_pool *p)
{
	/* xorshift64*: jitter only, no need for more. */
	uint64_t x = p->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	p->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* A connect failed for a reason of the server's: enter or stay in the
 * failing state, keep its error as the cause for fast failures. */
static void note_connect_failure(aw_pg_pool *p)
{
	p->connect_failures++;
	if (p->fail_streak < 64)
		p->fail_streak++;
	aw_time d = p->backoff_initial;
	for (unsigned i = 1; i < p->fail_streak && d < p->backoff_max; i++)
		d *= 2;
	if (d > p->backoff_max)
		d = p->backoff_max;
	aw_time half = d / 2;
	aw_time jitter = half > 0 ? (aw_time)(next_rand(p) % (uint64_t)(half + 1)) : 0;
	p->retry_at = aw_now() + half + jitter;
	aw_error *e = (aw_error *)aw_error_current();
	if (e) {
		e->refs++;
		aw_error_free(p->last_err);
		p->last_err = e;
	}
}

static void note_connect_success(aw_pg_pool *p)
{
	p->fail_streak = 0;
	p->retry_at = 0;
	aw_error_free(p->last_err);
	p->last_err = NULL;
}

/* While failing: may this acquire start a connect (a probe)? */
static bool may_probe(const aw_pg_pool *p)
{
	return p->fail_streak == 0 || (aw_now() >= p->retry_at && p->nopening < p->max_connecting);
}

/* Fail an acquire at once while the server fails: the last connect's code,
 * its error as the cause. */
static int fail_fast(aw_pg_pool *p, const aw_loc *loc)
{
	p->fast_failures++;
	int code = p->last_err ? p->last_err->code : -ECONNREFUSED;
	aw_time left = p->retry_at - aw_now();
	aw_error *e;
	if (left > 0)
		e = aw_error_new(loc, code, "pg pool: the server is failing (%u connects failed in a row); "
				 "backing off, next connect in %lld ms", p->fail_streak,
				 (long long)((left + AW_MS(1) - 1) / AW_MS(1)));
	else
		e = aw_error_new(loc, code, "pg pool: the server is failing (%u connects failed in a row); "
				 "%zu connect(s) already trying", p->fail_streak, p->nopening);
	if (!e)
		return aw_raise(code, "pg pool: the server is failing");
	if (p->last_err) {
		p->last_err->refs++;
		e->cause = p->last_err;
	}
	aw_error_raise_obj(e);
	return code;
}

/* Waits: open one connection for the pool (counted in size meanwhile). */
static int open_conn(aw_pg_pool *p, aw_pg_conn **out, aw_time deadline)
{
	p->nopening++;
	p->connect_attempts++;
	pool_publish(p);
	aw_pg_opts o = p->conn_opts;
	if (deadline != AW_NEVER) {
		aw_time left = deadline - aw_now();
		if (left <= 0)
			left = 1;
		if (left < o.connect_timeout)
			o.connect_timeout = left;
	}
	int rc = aw_pg_connect(out, p->dsn, &o);
	p->nopening--;
	pool_publish(p);
	if (rc < 0) {
		/* The caller's cancellation or deadline says nothing about the
		 * server. */
		const aw_error *e = aw_error_current();
		if (rc != -ECANCELED && !(e && e->origin) && !p->closing)
			note_connect_failure(p);
		offer_slot(p);
		if (p->closing && p->nbusy + p->nopening == 0) {
			aw_event_set(&p->drained);
			if (p->orphaned)
				pool_free(p);
		}
		return rc;
	}
	/* The pool tracks its connections; the ledger tracks acquisitions. */
	aw_ledger_close(&(*out)->ledger);
	(*out)->in_ledger = false;
	(*out)->pool = p;
	p->opened++;
	note_connect_success(p);
	if (p->closing) {
		discard(p, *out);
		*out = NULL;
		if (p->nbusy + p->nopening == 0) {
			aw_event_set(&p->drained);
			if (p->orphaned)
				pool_free(p);
		}
		return aw_raise(-AW_ECLOSED, "the pg pool was closed while connecting");
	}
	return 0;
}

/* ---- acquire / release ----------------------------------------------------------- */

static void hand_out(aw_pg_pool *p, aw_pg_conn *c, const aw_loc *loc, aw_time t0)
{
	list_push(&p->busy, c);
	p->nbusy++;
	c->holder = aw_task_current();
	c->fresh = true;
	p->acquires++;
	stats_wait(p, aw_now() - t0);
	aw_ledger_open(&c->ledger, "pg connection (acquired from the pool)", loc);
	c->ledger.owner = c;
	c->in_ledger = true;
}

/* Move the server session (libpq handle, socket, statement cache, last
 * error ...) of n under c and c's under n; what belongs to the pool
 * entry (ledger, lists, holder, pool) stays where it is. */
static void swap_session(aw_pg_conn *c, aw_pg_conn *n)
{
#define SWAP(f)                                   \
	do {                                      \
		__typeof__(c->f) t_ = c->f;       \
		c->f = n->f;                      \
		n->f = t_;                        \
	} while (0)
	SWAP(pg);
	SWAP(fd);
	SWAP(broken);
	SWAP(dirty);
	SWAP(read_since_send);
	SWAP(pid);
	SWAP(queries);
	SWAP(cancel);
	SWAP(buckets);
	SWAP(nbuckets);
	SWAP(ncached);
	SWAP(lru_head);
	SWAP(lru_tail);
	SWAP(next_stmt);
	SWAP(err_res);
	SWAP(err);
	SWAP(cursor_seq);
	SWAP(copy_unflushed);
	SWAP(created);
#undef SWAP
	aw_pg_conn_own_notices(c);
	aw_pg_conn_own_notices(n);
}

int aw_pg_pool_revive(aw_pg_conn *c)
{
	c->fresh = false;
	aw_pg_pool *p = c->pool;
	if (!p || c->pipe || c->busy || alive_now(c))
		return 0;
	/* Dead before the holder sent anything: a new session under the
	 * same handle. The connect follows the pool's rules (backoff). */
	c->broken = true;
	if (p->closing)
		return aw_raise(-AW_ECLOSED, "the pg pool is closed");
	if (p->fail_streak > 0 && !may_probe(p))
		return fail_fast(p, AW_HERE);
	aw_pg_conn *n;
	int rc = open_conn(p, &n, AW_NEVER);
	if (rc < 0)
		return rc;
	swap_session(c, n);
	n->pool = NULL;
	aw_pg_conn_close(n);   /* the dead session */
	p->discarded++;
	p->revived++;
	offer_slot(p);   /* a waiter held back by max_connecting */
	return 0;
}

int aw_pg_pool_acquire_at(const aw_loc *loc, aw_pg_pool *p, aw_pg_conn **out)
{
	*out = NULL;
	if (!p)
		return aw_raise(-EINVAL, "aw_pg_pool_acquire: pool is NULL");
	aw_task *self = aw_task_current();
	if (!self)
		return aw_raise(-AW_ENOTASK, "aw_pg_pool_acquire outside of a task");
	aw_time t0 = aw_now();
	aw_time deadline = p->o.acquire_timeout > 0 ? aw_deadline_after(p->o.acquire_timeout) : AW_NEVER;
	/* A waiter woken by offer_slot was at the head of the queue: it goes
	 * first, past those still queued (else it would queue again behind
	 * them, and the free slot would stay unused while they all wait). */
	bool my_turn = false;
	for (;;) {
		if (p->closing)
			return aw_raise(-AW_ECLOSED, "the pg pool is closed");
		bool first = my_turn || aw_waitq_empty(&p->waiters);
		my_turn = false;
		/* Idle connections go to whoever queued first. */
		while (p->idle && first) {
			aw_pg_conn *c = p->idle;
			list_remove(&p->idle, c);
			p->nidle--;
			if (!idle_healthy(p, c)) {
				discard(p, c);
				continue;
			}
			hand_out(p, c, loc, t0);
			*out = c;
			return 0;
		}
		if (pool_size(p) < p->o.max_size && first && p->fail_streak > 0 && !may_probe(p))
			return fail_fast(p, loc);
		if (pool_size(p) < p->o.max_size && first && p->nopening < p->max_connecting) {
			aw_pg_conn *c;
			int rc = open_conn(p, &c, deadline);
			if (rc < 0) {
				const aw_error *e = aw_error_current();
				if (rc == -ETIMEDOUT && deadline != AW_NEVER && e && !e->origin && aw_now() >= deadline)
					return aw_raise(rc, "pg pool acquire timed out after %lld ms while connecting: %s",
							(long long)(p->o.acquire_timeout / AW_MS(1)), e->msg);
				return rc;
			}
			hand_out(p, c, loc, t0);
			/* A waiter held back by max_connecting may connect now. */
			offer_slot(p);
			*out = c;
			return 0;
		}
		/* Queue. */
		pool_waiter pw = { .conn = NULL };
		pw.w.data = &pw;
		aw_waitq_push(&p->waiters, &pw.w, self);
		p->nwaiters++;
		pool_publish(p);
		int v;
		for (;;) {
			v = aw_task_park(deadline, false);
			if (!pw.w.linked || v < 0 || v == AW_WAKE_TIMER)
				break;
		}
		if (pw.w.linked) {
			aw_waitq_remove(&p->waiters, &pw.w);
			p->nwaiters--;
		}
		pool_publish(p);
		if (pw.conn) {
			/* Handed over (a hand-over wins over a cancel arriving in
			 * the same turn: the holder's exit releases it). */
			aw_pg_conn *c = pw.conn;
			c->holder = self;
			c->fresh = true;
			p->acquires++;
			stats_wait(p, aw_now() - t0);
			aw_ledger_open(&c->ledger, "pg connection (acquired from the pool)", loc);
			c->ledger.owner = c;
			c->in_ledger = true;
			*out = c;
			return 0;
		}
		if (pw.err)
			return aw_raise(pw.err, "the pg pool was closed while waiting for a connection");
		if (v == AW_WAKE_TIMER) {
			/* Pass our turn on: a slot may be free now. */
			offer_slot(p);
			return aw_raise(-ETIMEDOUT, "pg pool acquire timed out after %lld ms "
					"(%zu in use, %zu waiting, max_size %zu)",
					(long long)(p->o.acquire_timeout / AW_MS(1)), p->nbusy, p->nwaiters, p->o.max_size);
		}
		if (v < 0) {
			offer_slot(p);
			return v;   /* cancelled (already raised) */
		}
		/* pw.retry: a slot was freed; go round again, first in line. */
		my_turn = pw.retry;
	}
}

/* Put a connection back: to the longest waiter, or on top of the idle
 * stack. */
static void put_back(aw_pg_pool *p, aw_pg_conn *c)
{
	aw_waiter *w = aw_waitq_pop(&p->waiters);
	if (w) {
		p->nwaiters--;
		pool_waiter *pw = w->data;
		pw->conn = c;
		list_push(&p->busy, c);
		p->nbusy++;
		wake_waiter(pw);
		return;
	}
	c->idle_since = aw_now();
	list_push(&p->idle, c);
	p->nidle++;
}

/* Under aw_cleanup_run: roll back an open or failed transaction and reset
 * session state left behind (SET, LISTEN, cursors ...). 0 when both went
 * through. */
struct reuse_clean {
	aw_pg_pool *p;
	aw_pg_conn *c;
	PGTransactionStatusType ts;
};

static int rollback_and_reset(void *arg, int err)
{
	(void)err;
	struct reuse_clean *r = arg;
	aw_pg_conn *c = r->c;
	int rc = 0;
	if (r->ts == PQTRANS_INTRANS || r->ts == PQTRANS_INERROR) {
		if ((rc = aw_pg_begin(c, "pool release")) < 0)
			return rc;
		rc = aw_pg_simple(c, "ROLLBACK");
		aw_pg_end(c);
		if (rc < 0)
			return rc;
	}
	if (r->p->reset[0] && (c->dirty || r->p->o.reset_always)) {
		c->dirty = false;
		if ((rc = aw_pg_begin(c, "pool release")) < 0)
			return rc;
		rc = aw_pg_simple(c, r->p->reset);
		aw_pg_end(c);
	}
	return rc < 0 ? rc : 0;
}

/* Waits (shielded): make the connection fit for the next user, or decide
 * it is not. Returns true if it can go back. */
static bool clean_for_reuse(aw_pg_pool *p, aw_pg_conn *c)
{
	if (!aw_pg_conn_ok(c) || c->busy)
		return false;
	if (p->o.max_queries && c->queries >= p->o.max_queries)
		return false;
	if (p->o.max_lifetime && aw_now() - c->created >= p->o.max_lifetime)
		return false;
	PGTransactionStatusType ts = PQtransactionStatus(c->pg);
	if (ts == PQTRANS_ACTIVE || ts == PQTRANS_UNKNOWN)
		return false;
	/* Shielded and bounded, the holder's error kept in flight. */
	struct reuse_clean rc = { p, c, ts };
	bool ok = aw_cleanup_run(rollback_and_reset, &rc, RELEASE_BUDGET) == 0;
	/* Notifications the holder's session received and nobody read (a
	 * LISTEN by hand, a NOTIFY to itself): they sit in libpq's queue, and
	 * the next holder's listener would take them for its own. */
	PGnotify *n;
	while ((n = PQnotifies(c->pg)))
		PQfreemem(n);
	return ok && aw_pg_conn_ok(c) && PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

void aw_pg_pool_release(aw_pg_pool *p, aw_pg_conn *c)
{
	if (!p || !c)
		return;
	if (c->in_ledger)
		aw_ledger_close(&c->ledger);
	c->in_ledger = false;
	list_remove(&p->busy, c);
	p->nbusy--;
	c->holder = NULL;
	c->fresh = false;
	/* The error in flight (the block's) survives the cleanup: the
	 * cleanup runs through aw_cleanup_run. */
	bool ok = !p->closing && clean_for_reuse(p, c);
	if (ok)
		put_back(p, c);
	else
		discard(p, c);
	pool_publish(p);
	if (p->closing && p->nbusy + p->nopening == 0) {
		aw_event_set(&p->drained);
		if (p->orphaned)
			pool_free(p);
	}
}

/* ---- the acquire manager ---------------------------------------------------------- */

static int acquire_enter(aw_mgr *m)
{
	aw_pg_acquire *a = (aw_pg_acquire *)m;
	return aw_pg_pool_acquire_at(AW_HERE, a->pool, &a->conn);
}

static int acquire_exit(aw_mgr *m, int err)
{
	aw_pg_acquire *a = (aw_pg_acquire *)m;
	aw_pg_pool_release(a->pool, a->conn);
	a->conn = NULL;
	return err;
}

static void acquire_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_acquire *a = (aw_pg_acquire *)m;
	snprintf(buf, len, "backend pid %d", a->conn ? a->conn->pid : 0);
}

static const aw_mgr_ops acquire_ops = { "pg pool connection", acquire_enter, acquire_exit, acquire_describe };

aw_mgr *aw_pg_acquire_init(aw_pg_acquire *a, aw_pg_pool *p)
{
	a->mgr.ops = &acquire_ops;
	a->pool = p;
	a->conn = NULL;
	return &a->mgr;
}

/* ---- maintenance -------------------------------------------------------------------- */

static int maintain(void *arg)
{
	aw_pg_pool *p = arg;
	for (;;) {
		if (aw_sleep(AW_SEC(1)) < 0)
			return 0;
		aw_time now = aw_now();
		aw_pg_conn *next;
		for (aw_pg_conn *c = p->idle; c; c = next) {
			next = c->pnext;
			bool old = p->o.max_lifetime && now - c->created >= p->o.max_lifetime;
			bool idle_long = p->o.idle_timeout && now - c->idle_since >= p->o.idle_timeout &&
					 pool_size(p) > p->o.min_size;
			if (old || idle_long || !idle_healthy(p, c)) {
				list_remove(&p->idle, c);
				p->nidle--;
				discard(p, c);
			}
		}
		pool_publish(p);
		/* Back up to min_size (e.g. after the server restarted). Failures
		 * are retried at the next sweep; acquire reports its own. */
		while (!p->closing && pool_size(p) < p->o.min_size && may_probe(p) &&
		       p->nopening < p->max_connecting) {
			aw_pg_conn *c;
			if (open_conn(p, &c, aw_deadline_after(AW_SEC(5))) < 0) {
				aw_error_clear();
				break;
			}
			put_back(p, c);
			offer_slot(p);   /* a waiter held back by max_connecting */
		}
	}
}

/* ---- open / close --------------------------------------------------------------------- */

static void pool_free(aw_pg_pool *p)
{
	static const double none[4];
	pool_publish_values(p, none);   /* take this pool's part back */
	aw_gauge_source_remove(&p->gauges);
	aw_pg_pipe_free(p);
	aw_error_free(p->last_err);
	free(p->dsn);
	free(p->reset);
	free(p);
}

/* A pool never closed, at loop shutdown after the leak report: close its
 * sockets and free it. Entries for connections acquired from it were
 * opened later, so the report has passed them already. */
static void pool_ledger_release(aw_ledger_entry *e)
{
	aw_pg_pool *p = (aw_pg_pool *)(void *)((char *)e - offsetof(aw_pg_pool, ledger));
	aw_pg_conn *lists[2] = { p->idle, p->busy };
	for (int i = 0; i < 2; i++) {
		aw_pg_conn *next;
		for (aw_pg_conn *c = lists[i]; c; c = next) {
			next = c->pnext;
			c->in_ledger = false;
			aw_pg_conn_close(c);
		}
	}
	p->idle = p->busy = NULL;
	pool_free(p);
}

/* The pool's gauges for aw_ledger_visit (the debug page's sparklines). */
static void pool_gauges_read(aw_gauge_source *g, void (*emit)(void *ctx, const char *name, double value),
			     void *ctx)
{
	aw_pg_pool *p = (aw_pg_pool *)((char *)g - offsetof(aw_pg_pool, gauges));
	emit(ctx, "size", (double)pool_size(p));
	emit(ctx, "idle", (double)p->nidle);
	emit(ctx, "in_use", (double)p->nbusy);
	emit(ctx, "waiters", (double)p->nwaiters);
	emit(ctx, "acquires", (double)p->acquires);
}

int aw_pg_pool_open_at(const aw_loc *loc, aw_pg_pool **out, const aw_pg_pool_opts *opts)
{
	*out = NULL;
	if (!opts)
		return aw_raise(-EINVAL, "aw_pg_pool_open: opts is NULL (dsn is required)");
	if (!opts->dsn)
		return aw_raise(-EINVAL, "aw_pg_pool_opts.dsn is required");
	aw_pg_pool_opts o = *opts;
	if (o.max_size == 0)
		o.max_size = o.min_size > DEFAULT_MAX ? o.min_size : DEFAULT_MAX;
	if (o.min_size > o.max_size)
		return aw_raise(-EINVAL, "aw_pg_pool_opts: min_size %zu is larger than max_size %zu", o.min_size,
				o.max_size);
	if (o.max_size > 10000)
		return aw_raise(-EINVAL, "aw_pg_pool_opts.max_size %zu is too large (max 10000)", o.max_size);
	if (o.acquire_timeout < 0 || o.max_lifetime < 0 || o.idle_timeout < 0 || o.close_grace < 0)
		return aw_raise(-EINVAL, "aw_pg_pool_opts: %s is negative",
				o.acquire_timeout < 0 ? "acquire_timeout" : o.max_lifetime < 0 ? "max_lifetime" :
				o.idle_timeout < 0 ? "idle_timeout" : "close_grace");
	if (o.close_grace == 0)
		o.close_grace = DEFAULT_CLOSE_GRACE;
	if (o.backoff_initial < 0 || o.backoff_max < 0)
		return aw_raise(-EINVAL, "aw_pg_pool_opts: %s is negative",
				o.backoff_initial < 0 ? "backoff_initial" : "backoff_max");
	if (o.backoff_initial == 0)
		o.backoff_initial = DEFAULT_BACKOFF_INITIAL;
	if (o.backoff_max == 0)
		o.backoff_max = DEFAULT_BACKOFF_MAX > o.backoff_initial ? DEFAULT_BACKOFF_MAX : o.backoff_initial;
	if (o.backoff_max < o.backoff_initial)
		return aw_raise(-EINVAL, "aw_pg_pool_opts: backoff_max %lld ms is less than backoff_initial %lld ms",
				(long long)(o.backoff_max / AW_MS(1)), (long long)(o.backoff_initial / AW_MS(1)));
	if (o.max_connecting == 0)
		o.max_connecting = DEFAULT_MAX_CONNECTING;
	if (!aw_task_current())
		return aw_raise(-AW_ENOTASK, "aw_pg_pool_open outside of a task");
	aw_pg_opts co;
	if (o.conn)
		co = *o.conn;
	else
		aw_pg_opts_default(&co);
	if (co.stmt_cache < 0 || co.stmt_cache > 10000)
		return aw_raise(-EINVAL, "aw_pg_opts.stmt_cache must be 0..10000, not %d", co.stmt_cache);
	if (co.connect_timeout < 0)
		return aw_raise(-EINVAL, "aw_pg_opts.connect_timeout is negative");

	aw_pg_pool *p = aw__calloc(1, sizeof *p);
	if (!p)
		return aw_raise(-ENOMEM, "aw_pg_pool_open: out of memory");
	p->standby = -1;
	p->replica_lag = -1;
	p->dsn = aw__strdup(o.dsn);
	p->reset = aw__strdup(o.reset ? o.reset : DEFAULT_RESET);
	if (!p->dsn || !p->reset) {
		pool_free(p);
		return aw_raise(-ENOMEM, "aw_pg_pool_open: out of memory");
	}
	o.dsn = p->dsn;
	o.reset = p->reset;
	o.conn = NULL;
	p->o = o;
	p->conn_opts = co;
	p->max_connecting = o.max_connecting;
	p->backoff_initial = o.backoff_initial;
	p->backoff_max = o.backoff_max;
	p->rng = (uint64_t)aw_now() ^ (uint64_t)(uintptr_t)p ^ 0x9E3779B97F4A7C15ULL;
	if (!p->rng)
		p->rng = 1;
	aw_event_init(&p->drained);

	/* The first connections: a server that refuses them fails the open. */
	for (size_t i = 0; i < o.min_size; i++) {
		aw_pg_conn *c;
		int rc = open_conn(p, &c, AW_NEVER);
		if (rc < 0) {
			while (p->idle) {
				aw_pg_conn *x = p->idle;
				list_remove(&p->idle, x);
				p->nidle--;
				x->pool = NULL;
				aw_pg_conn_close(x);
			}
			pool_free(p);
			return rc;
		}
		put_back(p, c);
	}
	int rc = aw_spawn(&p->maint, maintain, p, "pg-pool-maintenance");
	if (rc < 0) {
		while (p->idle) {
			aw_pg_conn *x = p->idle;
			list_remove(&p->idle, x);
			x->pool = NULL;
			aw_pg_conn_close(x);
		}
		pool_free(p);
		return rc;
	}
	aw_ledger_open(&p->ledger, "pg pool", loc);
	p->ledger.owner = p;
	p->ledger.release = pool_ledger_release;
	p->gauges.name = "pg pool";
	p->gauges.read = pool_gauges_read;
	aw_gauge_source_add(&p->gauges);
	*out = p;
	return 0;
}

/* Under aw_cleanup_run, for aw_pg_pool_close: stop the maintenance task,
 * close the idle connections, wait for the holders for the grace period,
 * then cancel them and wait for their releases (bounded). -ETIMEDOUT when
 * the grace period ran out. */
static int drain_for_close(void *arg, int err)
{
	(void)err;
	aw_pg_pool *p = arg;
	int result = 0;
	if (p->maint) {
		aw_task_cancel(p->maint);
		if (aw_task_join(p->maint) < 0)
			aw_error_clear();   /* its cancellation: ours */
		p->maint = NULL;
	}
	while (p->idle) {
		aw_pg_conn *c = p->idle;
		list_remove(&p->idle, c);
		p->nidle--;
		c->pool = NULL;
		aw_pg_conn_close(c);
	}
	if (p->nbusy + p->nopening == 0)
		return 0;
	aw_scope grace;
	AW_WITH(aw_move_on_init(&grace, p->o.close_grace)) {
		while (p->nbusy + p->nopening > 0)
			if (aw_event_wait(&p->drained) < 0)
				break;
	}
	if (p->nbusy + p->nopening > 0) {
		/* Cut off: cancel the holders; their exits release. */
		result = -ETIMEDOUT;
		for (aw_pg_conn *c = p->busy; c; c = c->pnext)
			if (c->holder)
				aw_task_cancel(c->holder);
		aw_scope last;
		AW_WITH(aw_move_on_init(&last, RELEASE_BUDGET)) {
			while (p->nbusy + p->nopening > 0)
				if (aw_event_wait(&p->drained) < 0)
					break;
		}
	}
	return result;
}

int aw_pg_pool_close(aw_pg_pool *p)
{
	if (!p)
		return 0;
	int result = 0;
	p->closing = true;
	aw_pg_pipe_close(p);
	/* Waiters get -AW_ECLOSED. */
	aw_waiter *w;
	while ((w = aw_waitq_pop(&p->waiters))) {
		pool_waiter *pw = w->data;
		pw->err = -AW_ECLOSED;
		wake_waiter(pw);
	}
	p->nwaiters = 0;
	/* Shielded, the caller's error kept in flight; bounded by the grace
	 * period and the release budget inside. */
	if (aw_cleanup_run(drain_for_close, p, AW_NEVER) == -ETIMEDOUT)
		result = -ETIMEDOUT;
	aw_ledger_close(&p->ledger);
	aw_gauge_source_remove(&p->gauges);
	long long grace_ms = (long long)(p->o.close_grace / AW_MS(1));
	if (p->nbusy + p->nopening > 0) {
		/* Holders that ignore cancellation still have connections: the
		 * last release frees the pool (closing, so it closes them). */
		p->orphaned = true;
		result = -ETIMEDOUT;
	} else {
		pool_free(p);
	}
	if (result < 0)
		return aw_raise(result, "aw_pg_pool_close: connections still in use after the %lld ms grace "
				"period; their holders were cancelled", grace_ms);
	return 0;
}

static int pool_mgr_enter(aw_mgr *m)
{
	aw_pg_pool_mgr *pm = (aw_pg_pool_mgr *)m;
	return aw_pg_pool_open_at(AW_HERE, &pm->pool, &pm->opts);
}

static int pool_mgr_exit(aw_mgr *m, int err)
{
	aw_pg_pool_mgr *pm = (aw_pg_pool_mgr *)m;
	int rc = aw_pg_pool_close(pm->pool);
	pm->pool = NULL;
	return err ? err : rc;
}

static const aw_mgr_ops pool_mgr_ops = { "pg pool", pool_mgr_enter, pool_mgr_exit, NULL };

aw_mgr *aw_pg_pool_mgr_init(aw_pg_pool_mgr *m, const aw_pg_pool_opts *opts)
{
	memset(m, 0, sizeof *m);
	m->mgr.ops = &pool_mgr_ops;
	if (opts)
		m->opts = *opts;
	return &m->mgr;
}

/* ---- one-shot queries ------------------------------------------------------------------ */

int aw_pg_pool_query(aw_pg_pool *p, aw_pg_result **out, const char *sql, int nparams, const char *const *params)
{
	*out = NULL;
	if (p && p->o.pipeline && !p->closing) {
		PGresult *r = NULL;
		int rc = aw_pg_pipe_query(p, &r, sql, nparams, params);
		*out = r ? aw_pg_wrap(r) : NULL;
		return rc;
	}
	aw_pg_conn *c;
	int rc = aw_pg_pool_acquire_at(AW_HERE, p, &c);
	if (rc < 0)
		return rc;
	rc = aw_pg_query(c, out, sql, nparams, params);
	aw_pg_pool_release(p, c);
	return rc;
}

/* ---- stats -------------------------------------------------------------------------------- */

static int cmp_time(const void *a, const void *b)
{
	aw_time x = *(const aw_time *)a, y = *(const aw_time *)b;
	return x < y ? -1 : x > y;
}

void aw_pg_pool_stats_get(const aw_pg_pool *p, aw_pg_pool_stats *s)
{
	memset(s, 0, sizeof *s);
	if (!p)
		return;
	s->size = pool_size(p);
	s->idle = p->nidle;
	s->in_use = p->nbusy;
	s->opening = p->nopening;
	s->waiters = p->nwaiters;
	s->acquires = p->acquires;
	s->opened = p->opened;
	s->discarded = p->discarded;
	s->connect_attempts = p->connect_attempts;
	s->connect_failures = p->connect_failures;
	s->fast_failures = p->fast_failures;
	s->revived = p->revived;
	s->failing = p->fail_streak > 0;
	s->standby = p->standby;
	s->replica_lag = p->replica_lag;
	s->checked_at = p->checked_at;
	size_t n = p->nwaits < STATS_RING ? p->nwaits : STATS_RING;
	if (!n)
		return;
	aw_time *v = aw__malloc(n * sizeof *v);
	if (!v)
		return;
	memcpy(v, p->waits, n * sizeof *v);
	qsort(v, n, sizeof *v, cmp_time);
	s->wait_p50 = v[(n - 1) * 50 / 100];
	s->wait_p90 = v[(n - 1) * 90 / 100];
	s->wait_p99 = v[(n - 1) * 99 / 100];
	s->wait_max = v[n - 1];
	free(v);
}

/* ---- readiness and replication ------------------------------------------------------ */

/* One round trip that says what the server is: a standby's replay lag is
 * 0 when it has replayed all it received (an idle primary sends nothing,
 * and now() - last replay would grow without any lag), else the age of
 * the last transaction it replayed. Plain SQL, so that it also runs
 * through pgbouncer. */
static const char check_sql[] =
	"SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() "
	"OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
	"ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8";

int aw_pg_pool_check(aw_pg_pool *p)
{
	if (!p)
		return aw_raise(-EINVAL, "aw_pg_pool_check: no pool");
	aw_pg_acquire a;
	aw_pg_result *r = NULL;
	int rc = 0;
	AW_WITH(aw_pg_acquire_init(&a, p)) {
		rc = aw_pg_query(a.conn, &r, check_sql, 0, NULL);
	}
	if (!rc)
		rc = aw_error_pending();
	if (rc) {
		aw_pg_result_free(r);
		return rc;
	}
	bool standby = false;
	double lag = 0;
	if (aw_pg_get_bool(r, 0, 0, &standby) || aw_pg_get_double(r, 0, 1, &lag)) {
		aw_pg_result_free(r);
		return aw_raise(-EPROTO, "aw_pg_pool_check: unexpected answer");
	}
	aw_pg_result_free(r);
	p->standby = standby;
	p->replica_lag = (aw_time)(lag * 1e9);
	p->checked_at = aw_now();
	return 0;
}
