/* SPDX-License-Identifier: MIT */
/*
 * The client session: one CURLM driven by the loop.
 *
 * curl says which sockets to watch (socket callback) and when to call it
 * back (timer callback). Each watched socket gets a small detached watcher
 * task: it waits with aw_fd_wait_any for what curl wants and hands the
 * readiness to curl_multi_socket_action. The loop's fd waits are
 * edge-triggered and curl does not always drain a socket, so before parking
 * the watcher checks the socket's level with a zero-timeout poll(). When
 * curl changes what it wants, or stops watching the socket, the watcher is
 * woken out of its wait with -EINTR (aw_task_wake) and re-reads its orders.
 * One detached timer task per session sleeps until curl's timeout (the
 * session's exit tells it to end and waits for it). Finished transfers wake
 * their requesting task through an aw_event.
 *
 * The session's state (aw_client) lives on the heap, apart from the
 * caller's aw_client_session: a session entered with aw_enter and never
 * exited is released at loop end from its ledger entry, when the caller's
 * struct may be gone.
 */
#include "internal.h"
#include "awith/metrics.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* A watched socket. Owned by its watcher task once spawned: the session
 * unlinks it and sets `removed`; the watcher frees it. */
typedef struct aw_client_sock {
	int fd;
	int want;                 /* AW_READABLE | AW_WRITABLE */
	bool removed;
	bool parked;              /* in aw_fd_wait_any */
	aw_task *task;            /* detached; valid until removed is seen */
	aw_client *c;             /* valid until removed */
	struct aw_client_sock *prev, *next;
} aw_client_sock;

static void sock_unlink(aw_client *c, aw_client_sock *k)
{
	if (k->prev)
		k->prev->next = k->next;
	else
		c->socks = k->next;
	if (k->next)
		k->next->prev = k->prev;
	k->prev = k->next = NULL;
}

static void sock_kick(aw_client_sock *k)
{
	if (k->parked)
		aw_task_wake(k->task, -EINTR);
}

static void sock_remove(aw_client *c, aw_client_sock *k)
{
	sock_unlink(c, k);
	k->removed = true;
	k->c = NULL;
	sock_kick(k);
}

/* Hand finished transfers to their tasks. */
void aw__client_check_done(aw_client *c)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(c->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		aw_client_xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (!x)
			continue;
		x->result = m->data.result;
		x->finished = true;
		aw_event_set(&x->progress);
		aw_event_set(&x->up_room);
	}
}

static void socket_action(aw_client *c, int fd, int flags)
{
	int running;
	c->in_action++;
	curl_multi_socket_action(c->multi, fd, flags, &running);
	c->in_action--;
	aw__client_check_done(c);
}

static int watcher(void *arg)
{
	aw_client_sock *k = arg;
	while (!k->removed) {
		int want = k->want, got = 0;
		/* Level check first (aw_fd_wait's contract: try, and wait only
		 * when nothing is ready): curl may have left data unread, and a
		 * socket taken back from curl's connection pool is writable
		 * without a new edge (io_uring's poll reports only the events
		 * of each wake-up, not the whole mask as epoll does). */
		struct pollfd p = { .fd = k->fd, .events = (short)((want & AW_READABLE ? POLLIN : 0) |
								   (want & AW_WRITABLE ? POLLOUT : 0)) };
		if (poll(&p, 1, 0) > 0) {
			if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
				got = want;
			else
				got = (p.revents & POLLIN ? AW_READABLE : 0) | (p.revents & POLLOUT ? AW_WRITABLE : 0);
		}
		if (!got) {
			k->parked = true;
			got = aw_fd_wait_any(k->fd, want, AW_NEVER);
			k->parked = false;
			if (k->removed)
				break;
			if (got == -EINTR)
				continue;   /* new orders */
			if (got < 0) {
				aw_error_clear();
				if (got == -EBADF) {
					/* closed under us: let curl find out */
					got = want;
				} else if (got == -AW_EBUSY_WAIT) {
					/* the previous watcher of a reused fd has
					 * not run yet to clear its slot */
					if (aw_yield() < 0) {
						aw_error_clear();
						break;
					}
					continue;
				} else {
					/* cancelled (loop shutdown): stop watching */
					break;
				}
			}
		}
		int flags = (got & AW_READABLE ? CURL_CSELECT_IN : 0) | (got & AW_WRITABLE ? CURL_CSELECT_OUT : 0);
		socket_action(k->c, k->fd, flags);
		if (!k->removed && (k->want == 0)) {
			/* should not happen (curl says REMOVE instead) */
			break;
		}
		/* Be fair to other tasks on a busy socket. */
		if (!k->removed && aw_yield() < 0) {
			aw_error_clear();
			break;
		}
	}
	if (!k->removed && k->c) {
		/* Stopped early (cancelled at loop shutdown): curl must not
		 * hand this record back to on_socket once it is freed. */
		if (k->c->multi)
			curl_multi_assign(k->c->multi, k->fd, NULL);
		sock_unlink(k->c, k);
	}
	free(k);
	return 0;
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	(void)easy;
	aw_client *c = userp;
	aw_client_sock *k = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (k) {
			curl_multi_assign(c->multi, fd, NULL);
			sock_remove(c, k);
		}
		return 0;
	}
	int want = (what == CURL_POLL_IN ? AW_READABLE : 0) | (what == CURL_POLL_OUT ? AW_WRITABLE : 0) |
		   (what == CURL_POLL_INOUT ? AW_READABLE | AW_WRITABLE : 0);
	if (k) {
		if (k->want != want) {
			k->want = want;
			sock_kick(k);
		}
		return 0;
	}
	k = aw__calloc(1, sizeof *k);
	if (!k)
		return -1;
	k->fd = fd;
	k->want = want;
	k->c = c;
	aw_task *t;
	if (aw_spawn(&t, watcher, k, "client-socket") < 0) {
		aw_error_clear();
		free(k);
		return -1;
	}
	k->task = t;
	aw_task_detach(t);
	k->next = c->socks;
	if (c->socks)
		c->socks->prev = k;
	c->socks = k;
	curl_multi_assign(c->multi, fd, k);
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	aw_client *c = userp;
	c->timer_deadline = timeout_ms < 0 ? AW_NEVER : aw_deadline_after(AW_MS(timeout_ms));
	aw_event_set(&c->timer_ev);
	return 0;
}

/* Ends when the session closes (closing set, timer_ev set) or when it is
 * cancelled (loop end); timer_done says so either way. */
static int timer_task(void *arg)
{
	aw_client *c = arg;
	while (!c->closing) {
		aw_event_clear(&c->timer_ev);
		aw_time dl = c->timer_deadline;
		if (dl != AW_NEVER && dl <= aw_now()) {
			c->timer_deadline = AW_NEVER;
			socket_action(c, CURL_SOCKET_TIMEOUT, 0);
			continue;
		}
		aw_scope sc = { .deadline = 0 };
		int rc = 0;
		AW_WITH(aw_move_on_at_init(&sc, dl)) {
			rc = aw_event_wait(&c->timer_ev);
		}
		/* -ETIMEDOUT: our deadline (the block falls off its end, so
		 * sc.fired stays false); anything else is the cancellation
		 * of a closing session. */
		if (rc < 0 && rc != -ETIMEDOUT) {
			aw_error_clear();
			break;   /* cancelled: the loop is ending */
		}
		aw_error_clear();
	}
	aw_event_set(&c->timer_done);
	return 0;
}

/* ---- metrics -------------------------------------------------------------------- */

/* The client's series (awith/metrics.h), made at the first session. The
 * request counter's series per status are kept in a table (lock-free
 * after the first request with that status). */
static struct {
	aw_metric *sessions, *connections, *requests;
	_Atomic(aw_metric *) by_status[1000];   /* [0]: "error" */
} cm;
static pthread_once_t cm_once = PTHREAD_ONCE_INIT;

static void cm_init(void)
{
	static const char *const labels[] = { "status", NULL };
	int rc = 0;
	rc |= aw_metric_gauge_new(&cm.sessions, "awith_client_sessions", "HTTP client sessions open.", NULL);
	rc |= aw_metric_gauge_new(&cm.connections, "awith_client_connections",
				  "Connections the HTTP client sessions have open (all sessions).", NULL);
	rc |= aw_metric_counter_new(&cm.requests, "awith_client_requests_total",
				    "HTTP client requests finished, by response status (\"error\": no response: "
				    "connect failure, timeout, reset ...).",
				    labels);
	if (rc)
		aw_error_clear();   /* a metric not made stays NULL: its updates do nothing */
}

void aw__client_metrics_sessions(int delta)
{
	pthread_once(&cm_once, cm_init);
	aw_metric_gauge_add(cm.sessions, delta);
}

void aw__client_metrics_connections(int delta)
{
	pthread_once(&cm_once, cm_init);
	aw_metric_gauge_add(cm.connections, delta);
}

void aw__client_metrics_request(aw_client_xfer *x)
{
	if (x->counted)
		return;
	x->counted = true;
	long code = 0;
	if (x->result == CURLE_OK && x->ours == AW_XFER_OURS_NONE)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	if (code < 100 || code > 999)
		code = 0;
	pthread_once(&cm_once, cm_init);
	aw_metric *s = atomic_load_explicit(&cm.by_status[code], memory_order_acquire);
	if (!s && cm.requests) {
		char st[8];
		snprintf(st, sizeof st, "%ld", code);
		if (aw_metric_with(cm.requests, &s, (const char *const[]){ code ? st : "error", NULL }) < 0) {
			aw_error_clear();
			return;
		}
		atomic_store_explicit(&cm.by_status[code], s, memory_order_release);
	}
	aw_metric_counter_add(s, 1);
}

/* curl closes its sockets through us, so the loop forgets them first. */
static int on_close_socket(void *clientp, curl_socket_t fd)
{
	(void)clientp;
	aw__client_metrics_connections(-1);
	return aw_fd_close(fd) == 0 ? 0 : 1;
}

void aw__client_easy_setup(CURL *e)
{
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, NULL);
}

void aw__client_xfer_link(aw_client *c, aw_client_xfer *x)
{
	x->c = c;
	x->prev = NULL;
	x->next = c->xfers;
	if (c->xfers)
		c->xfers->prev = x;
	c->xfers = x;
}

void aw__client_xfer_unlink(aw_client_xfer *x)
{
	aw_client *c = x->c;
	if (!c)
		return;
	if (x->prev)
		x->prev->next = x->next;
	else
		c->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

void aw__client_xfer_detach(aw_client_xfer *x)
{
	if (x->in_multi && x->c && x->c->multi)
		curl_multi_remove_handle(x->c->multi, x->easy);
	x->in_multi = false;
}

CURL *aw__client_easy_get(aw_client *c)
{
	if (c->nspare)
		return c->spare[--c->nspare];
	return curl_easy_init();
}

void aw__client_easy_put(aw_client *c, CURL *e)
{
	/* Not with the cookie jar: curl_easy_reset keeps the list that
	 * CURLOPT_COOKIEFILE appends to, so a reused handle would grow it. */
	if (c && !c->closing && !c->share && c->nspare < AW_CLIENT_SPARE_EASY) {
		curl_easy_reset(e);
		c->spare[c->nspare++] = e;
		return;
	}
	curl_easy_cleanup(e);
}

/* Free the session's state. `c->closing` is set and the timer task has
 * ended. Transfers still linked (responses not exited yet) lose their
 * session: they stay readable, and their exit frees them alone. */
static void client_free(aw_client *c)
{
	if (c->counted)
		aw__client_metrics_sessions(-1);
	while (c->xfers) {
		aw_client_xfer *x = c->xfers;
		aw__client_xfer_detach(x);
		if (c->share)
			curl_easy_setopt(x->easy, CURLOPT_SHARE, NULL);
		aw__client_xfer_unlink(x);
		x->c = NULL;
	}
	/* Closes every connection (through on_close_socket). */
	if (c->multi)
		curl_multi_cleanup(c->multi);
	c->multi = NULL;
	while (c->socks)
		sock_remove(c, c->socks);
	while (c->nspare)
		curl_easy_cleanup(c->spare[--c->nspare]);
	if (c->share)
		curl_share_cleanup(c->share);
	curl_slist_free_all(c->headers);
	aw_ledger_close(&c->ledger);
	free(c->label);
	free(c);
}

/* A session entered with aw_enter and never exited, at loop end (after the
 * report): every task has ended, the timer and the watchers included. */
static void client_release_leaked(aw_ledger_entry *e)
{
	aw_client *c = AW_CONTAINER_OF(e, aw_client, ledger);
	c->closing = true;
	client_free(c);
}

/* 0 means "the default": a session never waits forever unless told to
 * (AW_NEVER). */
static void opts_default_timeouts(aw_client_opts *o)
{
	if (o->timeout == 0)
		o->timeout = AW_CLIENT_DEFAULT_TIMEOUT;
	if (o->connect_timeout == 0)
		o->connect_timeout = AW_CLIENT_DEFAULT_CONNECT_TIMEOUT;
	if (o->read_timeout == 0)
		o->read_timeout = AW_CLIENT_DEFAULT_READ_TIMEOUT;
}

/* curl_global_init is not thread-safe and must run once per process:
 * sessions may be entered on several loops' threads at once. Its result
 * stays: a failure (out of memory at first use) fails every session. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static int session_enter(aw_mgr *m)
{
	aw_client_session *s = (aw_client_session *)(void *)m;
	const aw_loc *manual = aw_manual_enter_loc(m);
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK)
		return aw_raise(-ENOMEM, "curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
	opts_default_timeouts(&s->opts);
	const aw_client_opts *o = &s->opts;
	if (o->max_connections < 0 || o->max_host_connections < 0 || o->timeout < 0 || o->connect_timeout < 0 ||
	    o->read_timeout < 0)
		return aw_raise(-EINVAL, "aw_client_session: negative limit or timeout");
	if (o->http_version < AW_CLIENT_HTTP_DEFAULT || o->http_version > AW_CLIENT_HTTP2_PRIOR_KNOWLEDGE)
		return aw_raise(-EINVAL, "aw_client_session: unknown http_version %d", o->http_version);
	aw_client *c = aw__calloc(1, sizeof *c);
	if (!c)
		return aw_raise(-ENOMEM, "out of memory for a client session");
	c->closing = true;   /* until the timer task runs: client_free may run */
	c->multi = curl_multi_init();
	c->label = aw__strdup(o->base_url ? o->base_url : "(no base url)");
	if (!c->multi || !c->label) {
		client_free(c);
		return aw_raise(-ENOMEM, "out of memory for a client session (curl_multi_init)");
	}
	for (const char *const *h = o->headers; h && *h; h++) {
		struct curl_slist *n = curl_slist_append(c->headers, *h);
		if (!n) {
			client_free(c);
			return aw_raise(-ENOMEM, "out of memory for default headers");
		}
		c->headers = n;
	}
	if (o->cookies) {
		/* One cookie store for every transfer of the session (each
		 * request is its own easy handle). One thread: no locks. */
		c->share = curl_share_init();
		if (!c->share || curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE) != CURLSHE_OK) {
			client_free(c);
			return aw_raise(-ENOMEM, "out of memory for the cookie jar");
		}
	}
	c->timer_deadline = AW_NEVER;
	aw_event_init(&c->timer_ev);
	aw_event_init(&c->timer_done);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	/* HTTP/2: concurrent transfers to one host share a connection. */
	curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	if (o->max_connections > 0)
		curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, o->max_connections);
	if (o->max_host_connections > 0)
		curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->max_host_connections);
	c->closing = false;
	aw_task *t;
	int rc = aw_spawn(&t, timer_task, c, "client-timer");
	if (rc < 0) {
		c->closing = true;
		client_free(c);
		return rc;
	}
	aw_task_detach(t);
	if (manual) {
		aw_ledger_open(&c->ledger, "client session (connection pool)", manual);
		c->ledger.owner = c;
		c->ledger.release = client_release_leaked;
		c->ledgered = true;
	}
	s->impl = c;
	c->counted = true;
	aw__client_metrics_sessions(1);
	return 0;
}

static int session_exit(aw_mgr *m, int err)
{
	aw_client_session *s = (aw_client_session *)(void *)m;
	aw_client *c = s->impl;
	if (!c)
		return err;
	s->impl = NULL;
	c->closing = true;
	aw_event_set(&c->timer_ev);
	if (aw_event_wait(&c->timer_done) < 0) {
		/* Only past the grace deadline: the timer task still refers to
		 * c, so c must stay (a bounded leak, reported). */
		return err;
	}
	client_free(c);
	/* Let the watchers see `removed` and free themselves. */
	int rc = aw_yield();
	return err ? err : rc;   /* only past the grace deadline */
}

static void session_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_client_session *s = (aw_client_session *)(void *)m;
	aw_client *c = s->impl;
	size_t n = 0;
	for (aw_client_xfer *x = c ? c->xfers : NULL; x; x = x->next)
		n++;
	snprintf(buf, len, "%s, %zu transfer(s)", s->opts.base_url ? s->opts.base_url : "(no base url)", n);
}

static const aw_mgr_ops session_ops = {
	.name = "client session",
	.enter = session_enter,
	.exit = session_exit,
	.describe = session_describe,
};

aw_mgr *aw_client_session_init(aw_client_session *s, const aw_client_opts *opts)
{
	memset(s, 0, sizeof *s);
	s->mgr.ops = &session_ops;
	if (opts)
		s->opts = *opts;
	opts_default_timeouts(&s->opts);
	return &s->mgr;
}
