/* SPDX-License-Identifier: MIT */
/*
 * redis_client — a third-party C library with its own sockets (Debian's
 * hiredis, async API) turned into awith managers, written only on the
 * installed headers <awith/core.h> and <awith/ext.h>.
 *
 *     redis_client [ADDRESS]         ADDRESS, else $REDIS_URL, else 127.0.0.1:6379
 *
 *     ADDRESS: redis://HOST:PORT, HOST:PORT, HOST, unix:///PATH or /PATH
 *
 * Build it outside the tree against the installed package:
 *
 *     cc -Wall -Wextra redis_client.c -o redis_client \
 *        $(pkg-config --cflags --libs awith-core hiredis)
 *
 * (libhiredis-dev and redis-server on Debian; tests/check_redis_example.sh
 * does exactly this against a `meson install` and a private redis-server.)
 *
 * What it shows, in Python terms (redis.asyncio):
 *
 *     async with Redis(host, port) as r:              # redis_conn_init
 *         await r.set("greeting", "hello")            # redis_command: waits
 *         async with r.pubsub() as p:                 # redis_subscribe_init
 *             await p.subscribe("news")
 *             async for msg in p.listen(): ...        # AW_FOR(msg, ...)
 *         async with asyncio.timeout(0.1):
 *             await r.blpop("jobs")                   # -ETIMEDOUT
 *
 * The file has two parts: the wrapper (everything named redis_*, what a
 * library would ship as its own .c/.h) and the program (main and its tasks).
 *
 * How the wrapper drives hiredis
 * ------------------------------
 * hiredis's async API owns the socket and the protocol; it asks an "event
 * library" to tell it when the socket is readable or writable, through five
 * hooks (ev.addRead/delRead/addWrite/delWrite/cleanup; hiredis 1.x adds
 * scheduleTimer, which only serves its own timeouts: unused here, awith's
 * cancel scopes bound every wait instead). The adapter is:
 *
 *   - one *driver task* per connection, the only task that ever waits on
 *     the socket. It waits (aw_fd_wait_any) for readability, and for
 *     writability while hiredis has bytes the socket did not take, and
 *     calls redisAsyncHandleRead / redisAsyncHandleWrite; a command just
 *     queued is written at once, without a wait. hiredis then runs
 *     the reply callbacks on the driver's stack; a callback never waits, it
 *     only copies the reply and wakes the task that sent the command
 *     (aw_task_wake).
 *   - the hooks only record what hiredis wants and wake the driver out of
 *     its wait (aw_task_wake(driver, -EINTR): aw_fd_wait_any returns a
 *     negative wake value as it is), so it re-reads its orders.
 *   - a task that sends a command parks (aw_task_park) until its reply
 *     callback wakes it. Many tasks may share one connection: hiredis
 *     pipelines their commands and hands each reply to its own callback.
 *
 * Why one driver rather than "whoever waits drives the fd": only one task
 * may wait on an fd and direction (-AW_EBUSY_WAIT), a pub/sub connection
 * receives messages nobody has asked for yet, and a server hang-up must be
 * seen even when no command is in flight. A driver per connection gives all
 * three for one small task.
 *
 * Two details of the loop matter here. It is edge-triggered, and hiredis
 * reads at most 16 KiB per call, so after each read the driver polls the
 * socket's level (poll with timeout 0) and reads again while data is left.
 * And hiredis closes the socket itself (redisFree): the cleanup hook calls
 * aw_fd_forget first, so a reused fd number never inherits the loop's
 * registration (that also wakes the driver, with -EBADF).
 *
 * Cancellation and time limits
 * ----------------------------
 * No call takes a timeout argument except the connect; wrap calls in cancel
 * scopes (AW_WITH(AW_TIMEOUT(AW_MS(100))) { ... }), or cancel the task.
 *
 * A command whose wait is cancelled or times out CLOSES ITS CONNECTION, and
 * later commands on it fail with -REDIS_ECLOSED (redis-py's asyncio client
 * makes the same choice). hiredis cannot withdraw a command already sent, so
 * the connection could only go on by discarding the late reply — and a
 * blocking command left on the server (BLPOP, XREAD BLOCK) would still take
 * the next element pushed, for a reply nobody reads: the element would be
 * lost. Closing the socket makes the server drop the command. Other tasks'
 * commands in flight on that connection fail with -REDIS_ECLOSED too: give
 * blocking commands a connection of their own.
 *
 * Memory a late callback could touch: a command's record is on the heap,
 * not the waiting task's stack; a task that gives up marks it abandoned
 * (task = NULL) and the callback frees it when the reply (or the close)
 * comes. A subscription's record is the caller's redis_sub; its exit
 * either completes UNSUBSCRIBE (hiredis forgets the pointer) or closes the
 * connection (hiredis calls the callback one last time, with NULL, right
 * then). And the connection's exit frees the hiredis context and joins the
 * driver before the redis_conn goes away.
 *
 * Errors: the wrapper's own codes, in a range registered with
 * aw_error_range_register (REDIS_EBASE = AW_ERANGE_USER), so aw_strerror
 * and aw_error_print name them; the server's error replies come back as
 * -REDIS_EREPLY with the server's text ("ERR value is not an integer...")
 * in the raised error's message.
 *
 * Limits of the example: hiredis resolves host names itself with a blocking
 * getaddrinfo (use an address, "localhost", or a unix socket); one
 * subscription (channel) per connection at a time; messages that arrive
 * while the loop's body runs are queued without a bound (a slow consumer
 * of a busy channel grows memory); no AUTH/SELECT options (send them as
 * commands after connecting).
 */
#include <awith/core.h>
#include <awith/ext.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* The wrapper                                                              */
/* ======================================================================== */

/* Error codes, returned negated like every awith code. The range is
 * registered once, from a constructor, so aw_strerror knows it before main. */
enum {
	REDIS_EBASE = AW_ERANGE_USER, /* 0x4800: this wrapper's range */
	REDIS_ECONNECT,               /* could not connect (refused, no such socket, ...) */
	REDIS_ECLOSED,                /* the connection is closed: lost, or closed after a
	                                 cancelled command */
	REDIS_EREPLY,                 /* the server answered with an error reply */
	REDIS_ESUBSCRIBED,            /* a plain command on a connection in pub/sub mode */
	REDIS_ECOMMAND,               /* hiredis refused to send the command (bad format) */
	REDIS_ELAST
};

static const char *redis_strerror(int code)
{
	switch (code) {
	case REDIS_ECONNECT: return "cannot connect to the redis server";
	case REDIS_ECLOSED: return "the redis connection is closed";
	case REDIS_EREPLY: return "the redis server replied with an error";
	case REDIS_ESUBSCRIBED: return "the redis connection is subscribed (pub/sub mode)";
	case REDIS_ECOMMAND: return "the redis command could not be sent";
	default: return NULL;
	}
}

__attribute__((constructor)) static void redis_errors_register(void)
{
	if (aw_error_range_register(REDIS_EBASE, "redis example", redis_strerror) < 0)
		fprintf(stderr, "redis: cannot register error codes at 0x%x\n", REDIS_EBASE);
}

/* A connection: the manager AW_WITH enters. All fields are the wrapper's. */
typedef struct redis_conn {
	aw_mgr mgr;
	char host[256];        /* host, or the unix socket's path */
	int port;              /* 0 for a unix socket */
	aw_time deadline;      /* for the connect (and its first PING) */
	redisAsyncContext *ac; /* NULL once hiredis freed it */
	int fd;
	aw_task *driver;       /* the task that waits on fd */
	bool want_read, want_write;
	bool write_fresh;      /* a command was queued since the last write attempt */
	unsigned waiting;      /* commands in flight (for aw_dump) */
	char why[128];         /* why the connection closed */
} redis_conn;

/* One command in flight. On the heap: its callback may come after the task
 * that sent it has given up (then task is NULL and the callback frees it). */
typedef struct redis_call {
	aw_task *task;
	redis_conn *conn;
	bool done;             /* the callback ran (and woke the task) */
	int code;              /* 0, -REDIS_ECLOSED, -REDIS_EREPLY or -ENOMEM */
	redisReply *reply;     /* our copy (also for error replies: the message) */
	char why[512];         /* for -REDIS_ECLOSED */
} redis_call;

/* Replies: hiredis frees its reply when the callback returns, so the task
 * gets a deep copy. Free it with redis_reply_free. The copy keeps every
 * field of the caller's hiredis version (memcpy), then owns its strings. */
static void redis_reply_free(redisReply *r)
{
	if (!r)
		return;
	if (r->element) {
		for (size_t i = 0; i < r->elements; i++)
			redis_reply_free(r->element[i]);
		free(r->element);
	}
	free(r->str);
	free(r);
}

static redisReply *reply_copy(const redisReply *src)
{
	redisReply *r = malloc(sizeof *r);
	if (!r)
		return NULL;
	memcpy(r, src, sizeof *r);
	r->str = NULL;
	r->element = NULL;
	if (src->str) {
		r->str = malloc(src->len + 1);
		if (!r->str)
			goto fail;
		memcpy(r->str, src->str, src->len);
		r->str[src->len] = '\0';
	}
	if (src->element) {
		r->element = calloc(src->elements ? src->elements : 1, sizeof *r->element);
		if (!r->element)
			goto fail;
		for (size_t i = 0; i < src->elements; i++)
			if (src->element[i] && !(r->element[i] = reply_copy(src->element[i])))
				goto fail;
	}
	return r;
fail:
	r->elements = r->element ? r->elements : 0;
	redis_reply_free(r);
	return NULL;
}

/* Where the connection goes, for messages. */
static const char *conn_where(const redis_conn *r, char *buf, size_t len)
{
	if (r->port)
		snprintf(buf, len, "%s:%d", r->host, r->port);
	else
		snprintf(buf, len, "unix:%s", r->host);
	return buf;
}

/* ---- the event-library hooks: record, and wake the driver ------------- */

static void wake_driver(redis_conn *r)
{
	if (r->driver)
		aw_task_wake(r->driver, -EINTR);   /* no-op unless it is parked */
}

static void hook_add_read(void *p) { redis_conn *r = p; r->want_read = true; wake_driver(r); }
static void hook_del_read(void *p) { ((redis_conn *)p)->want_read = false; }
static void hook_add_write(void *p)
{
	redis_conn *r = p;
	r->want_write = r->write_fresh = true;
	wake_driver(r);
}
static void hook_del_write(void *p) { ((redis_conn *)p)->want_write = false; }

/* hiredis is about to close the socket (possibly more than once). */
static void hook_cleanup(void *p)
{
	redis_conn *r = p;
	if (!r->ac)
		return;
	if (!r->why[0])
		snprintf(r->why, sizeof r->why, "%s",
			 r->ac->err && r->ac->errstr && r->ac->errstr[0] ? r->ac->errstr : "closed by the client");
	r->ac = NULL;                  /* freed right after this returns */
	aw_fd_forget(r->fd);           /* before hiredis's close(fd); wakes the driver */
	r->want_read = r->want_write = false;
}

/* Close now: every command in flight gets -REDIS_ECLOSED (hiredis runs the
 * callbacks with NULL, from here), every subscription ends. */
static void conn_abort(redis_conn *r, const char *why)
{
	if (!r->ac)
		return;
	if (!r->why[0])
		snprintf(r->why, sizeof r->why, "%s", why);
	redisAsyncFree(r->ac);         /* calls hook_cleanup */
}

/* ---- the driver task ---------------------------------------------------- */

/* Whether bytes (or a hang-up) wait on fd now: the loop is edge-triggered
 * and hiredis reads one buffer per call. */
static bool readable_now(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

static int driver_main(void *arg)
{
	redis_conn *r = arg;
	bool more = false;                 /* bytes known to wait: read without waiting */
	while (r->ac) {
		bool connected = r->ac->c.flags & REDIS_CONNECTED;
		/* A command was just queued on a connected socket: write at once,
		 * and wait for room only when a write could not take everything. */
		if (connected && r->want_write && r->write_fresh) {
			redisAsyncHandleWrite(r->ac);
			/* An addWrite during that call meant "not all of it went",
			 * not a new command: wait for room rather than retry. */
			r->write_fresh = false;
			continue;
		}
		int rc = AW_READABLE;
		if (!more) {
			/* Until connected only writability matters (the connect's
			 * end); after that read always, so a hang-up is seen even
			 * when nothing is asked. */
			int dirs = connected ? AW_READABLE | (r->want_write ? AW_WRITABLE : 0) : AW_WRITABLE;
			rc = aw_fd_wait_any(r->fd, dirs, AW_NEVER);
			if (rc == -EINTR)      /* a hook woke us: read the orders again */
				continue;
			if (rc < 0) {          /* fd forgotten (-EBADF) or cancelled: the end */
				aw_error_clear();
				break;
			}
		}
		if ((rc & AW_WRITABLE) && r->ac) {
			redisAsyncHandleWrite(r->ac);
			r->write_fresh = false;
		}
		if ((rc & AW_READABLE) && r->ac) {
			/* Read while the socket has bytes (no new edge will say so),
			 * but let the tasks the replies woke run every 64 reads:
			 * a flood of pub/sub messages must not starve them. */
			int n = 0;
			do
				redisAsyncHandleRead(r->ac);
			while (r->ac && (more = readable_now(r->fd)) && ++n < 64);
			if (more && r->ac && aw_yield() < 0) {
				aw_error_clear();
				break;
			}
		}
	}
	return 0;
}

/* ---- commands ----------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	redis_call *c = privdata;
	if (!c->task) {                /* abandoned: its task gave up */
		free(c);
		return;
	}
	c->conn->waiting--;
	c->done = true;
	if (!reply) {
		/* Say it all now: when the task runs, the connection's block
		 * may be over (its exit is what closed it). */
		char where[300];
		c->code = -REDIS_ECLOSED;
		snprintf(c->why, sizeof c->why, "connection to %s closed (%s)",
			 conn_where(c->conn, where, sizeof where),
			 ac->err && ac->errstr && ac->errstr[0] ? ac->errstr
			 : c->conn->why[0] ? c->conn->why : "closed");
	} else if (!(c->reply = reply_copy(reply))) {
		c->code = -ENOMEM;
	} else if (c->reply->type == REDIS_REPLY_ERROR) {
		c->code = -REDIS_EREPLY;
	}
	aw_task_wake(c->task, 0);
}

/* The command's name (its format's first word), for messages. */
static void command_name(const char *fmt, char *buf, size_t len)
{
	size_t n = strcspn(fmt, " ");
	snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), fmt);
}

/* Waits: send a command and wait for its reply until `deadline` (AW_NEVER:
 * only the cancel scopes around the call bound it). */
static int redis_vcommand_at(redis_conn *r, aw_time deadline, redisReply **out, const char *fmt, va_list ap)
{
	char name[32], where[300];
	command_name(fmt, name, sizeof name);
	if (out)
		*out = NULL;
	aw_task *self = aw_task_current();
	if (!self)
		return aw_raise(-AW_ENOTASK, "redis: %s outside of a task", name);
	if (!r->ac)
		return aw_raise(-REDIS_ECLOSED, "redis: %s on a closed connection to %s (%s)", name,
				conn_where(r, where, sizeof where), r->why);
	if (r->ac->c.flags & REDIS_SUBSCRIBED)
		return aw_raise(-REDIS_ESUBSCRIBED, "redis: %s on a connection in pub/sub mode: use another connection",
				name);
	redis_call *c = calloc(1, sizeof *c);
	if (!c)
		return aw_raise(-ENOMEM, "redis: %s: out of memory", name);
	c->task = self;
	c->conn = r;
	if (redisvAsyncCommand(r->ac, on_reply, c, fmt, ap) != REDIS_OK) {
		free(c);
		return aw_raise(-REDIS_ECOMMAND, "redis: hiredis refused to send %s (bad format string?)", name);
	}
	r->waiting++;
	int v = aw_task_park(deadline, false);
	if (!c->done) {
		/* Timer or cancellation: the reply will come, or not, for nobody.
		 * Leave the record to the callback and close the connection (see
		 * the top of the file: why not keep it). */
		c->task = NULL;
		r->waiting--;
		int rc = v == AW_WAKE_TIMER
			? aw_raise(-ETIMEDOUT, "redis: %s: no reply before the deadline", name)
			: v;                   /* the cancel code, already raised */
		conn_abort(r, "closed after a command was cancelled or timed out");
		return rc;
	}
	/* The callback ran: the record is ours (and r may be gone: use c). */
	int rc = c->code;
	redisReply *reply = c->reply;
	if (v < 0)                     /* cancelled after the reply came: the cancel wins */
		rc = v;
	else if (rc == -REDIS_EREPLY)
		rc = aw_raise(rc, "redis: %s: %s", name, reply->str ? reply->str : "error");
	else if (rc == -REDIS_ECLOSED)
		rc = aw_raise(rc, "redis: %s: %s", name, c->why);
	else if (rc < 0)
		rc = aw_raise(rc, "redis: %s: out of memory copying the reply", name);
	if (rc == 0 && out)
		*out = reply;
	else
		redis_reply_free(reply);
	free(c);
	return rc;
}

/* Waits: send a command (hiredis's format: %s a C string, %b a pointer and
 * a size_t length) and wait for its reply. 0 and, if `reply` is not NULL,
 * *reply = the reply (free it with redis_reply_free); or a negative code,
 * raised, *reply NULL:
 *   -REDIS_EREPLY      the server's error reply; its text is the message
 *                      (the connection stays usable);
 *   -REDIS_ECLOSED     the connection is (or got) closed;
 *   -REDIS_ESUBSCRIBED the connection is in pub/sub mode;
 *   -REDIS_ECOMMAND    hiredis refused the command;
 *   the cancel code    -ETIMEDOUT from a timeout scope, -ECANCELED: the
 *                      connection is then closed (top of the file).
 * Any task may call it on a shared connection while the connection's
 * block is active; replies are matched to their callers in order. */
AW_MUST_USE static int redis_command(redis_conn *r, redisReply **reply, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = redis_vcommand_at(r, AW_NEVER, reply, fmt, ap);
	va_end(ap);
	return rc;
}

static int call_at(redis_conn *r, aw_time deadline, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = redis_vcommand_at(r, deadline, NULL, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- the connection manager ------------------------------------------- */

/* Close and join the driver. Also from a failed enter, which may have been
 * cancelled: the join is shielded, or a cancelled join would leave the
 * driver running on after r is gone (it ends at once: aw_fd_forget woke it). */
static int conn_close(redis_conn *r)
{
	int rc = 0;
	conn_abort(r, "closed by the client");
	if (r->driver) {
		aw_task_cancel(r->driver);
		AW_WITH(AW_SHIELD()) {
			rc = aw_task_join(r->driver);
		}
		r->driver = NULL;
	}
	return rc;
}

static int conn_enter(aw_mgr *m)
{
	redis_conn *r = AW_CONTAINER_OF(m, redis_conn, mgr);
	char where[300];
	conn_where(r, where, sizeof where);
	r->why[0] = '\0';
	r->ac = r->port ? redisAsyncConnect(r->host, r->port) : redisAsyncConnectUnix(r->host);
	if (!r->ac)
		return aw_raise(-ENOMEM, "redis: connect to %s: out of memory", where);
	if (r->ac->err) {              /* failed at once (refused, no such socket) */
		int rc = aw_raise(-REDIS_ECONNECT, "redis: cannot connect to %s: %s", where, r->ac->errstr);
		redisAsyncFree(r->ac);     /* no hooks yet: the fd was never watched */
		r->ac = NULL;
		return rc;
	}
	r->fd = r->ac->c.fd;
	r->ac->data = r;
	r->ac->ev.data = r;
	r->ac->ev.addRead = hook_add_read;
	r->ac->ev.delRead = hook_del_read;
	r->ac->ev.addWrite = hook_add_write;
	r->ac->ev.delWrite = hook_del_write;
	r->ac->ev.cleanup = hook_cleanup;
	int rc = aw_spawn(&r->driver, driver_main, r, "redis driver");
	if (rc < 0) {
		r->driver = NULL;
		conn_abort(r, "the driver task could not start");
		return rc;
	}
	/* The connect completes when the socket first turns writable; a PING
	 * proves the server answers, within the caller's deadline. */
	rc = call_at(r, r->deadline, "PING");
	if (rc < 0) {
		if (rc == -REDIS_ECLOSED) {   /* connect failed on the way */
			aw_error_clear();
			rc = aw_raise(-REDIS_ECONNECT, "redis: cannot connect to %s: %s", where, r->why);
		}
		if (conn_close(r) < 0)
			aw_error_clear();
		return rc;
	}
	return 0;
}

static int conn_exit(aw_mgr *m, int err)
{
	redis_conn *r = AW_CONTAINER_OF(m, redis_conn, mgr);
	int rc = conn_close(r);
	return err ? err : rc;
}

static void conn_describe(aw_mgr *m, char *buf, size_t len)
{
	redis_conn *r = AW_CONTAINER_OF(m, redis_conn, mgr);
	char where[300];
	snprintf(buf, len, "%s, %s, %u command(s) waiting", conn_where(r, where, sizeof where),
		 r->ac ? "open" : "closed", r->waiting);
}

static const aw_mgr_ops conn_ops = {
	.name = "redis connection",
	.enter = conn_enter,
	.exit = conn_exit,
	.describe = conn_describe,
};

/* The connection's manager: AW_WITH(redis_conn_init(&r, host, port,
 * deadline)) { ... }. host is an address or a name ("localhost"), or, with
 * port 0, a unix socket's path; it is copied. Enter connects (without
 * blocking the loop) and waits, until `deadline` (absolute), for the
 * server to answer a PING: -REDIS_ECONNECT (refused, no such socket, ...),
 * -ETIMEDOUT, or -ENAMETOOLONG for a host of 256 bytes or more. Exit closes:
 * commands still in flight from other tasks get -REDIS_ECLOSED. */
static aw_mgr *redis_conn_init(redis_conn *r, const char *host, int port, aw_time deadline)
{
	memset(r, 0, sizeof *r);
	r->mgr.ops = &conn_ops;
	r->fd = -1;
	r->port = port;
	r->deadline = deadline;
	snprintf(r->host, sizeof r->host, "%s", host);
	return &r->mgr;
}

/* ---- pub/sub as an async iterator ----------------------------------------- */

/* One message: valid until the next step of the loop. */
typedef struct redis_message {
	const char *channel;
	const char *data;      /* the payload (NUL-terminated too) */
	size_t len;
} redis_message;

typedef struct redis_msg_node {
	struct redis_msg_node *next;
	redis_message msg;
	char buf[];            /* channel\0payload\0 */
} redis_msg_node;

enum { SUB_PENDING, SUB_ACTIVE, SUB_UNSUBSCRIBED, SUB_CLOSED };

typedef struct redis_sub {
	aw_iter iter;
	redis_conn *conn;
	char channel[128];
	int state;
	redis_msg_node *head, *tail, *current;   /* received, not yet handed out */
	aw_task *waiter;       /* the task parked in enter, next or exit */
	bool oom;              /* a message could not be stored */
} redis_sub;

static void free_nodes(redis_sub *s)
{
	free(s->current);
	s->current = NULL;
	while (s->head) {
		redis_msg_node *n = s->head;
		s->head = n->next;
		free(n);
	}
	s->tail = NULL;
}

/* hiredis calls this for "subscribe", every "message", "unsubscribe", and
 * once with NULL when the connection is freed. */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
	(void)ac;
	redis_sub *s = privdata;
	redisReply *r = reply;
	if (!r) {
		s->state = SUB_CLOSED;
	} else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3 && r->element[0]->str) {
		const char *kind = r->element[0]->str;
		if (!strcmp(kind, "subscribe")) {
			s->state = SUB_ACTIVE;
		} else if (!strcmp(kind, "unsubscribe")) {
			s->state = SUB_UNSUBSCRIBED;
		} else if (!strcmp(kind, "message") && r->element[1]->str && r->element[2]->str) {
			size_t clen = r->element[1]->len, dlen = r->element[2]->len;
			redis_msg_node *n = malloc(sizeof *n + clen + dlen + 2);
			if (!n) {
				s->oom = true;
			} else {
				n->next = NULL;
				memcpy(n->buf, r->element[1]->str, clen);
				n->buf[clen] = '\0';
				memcpy(n->buf + clen + 1, r->element[2]->str, dlen);
				n->buf[clen + 1 + dlen] = '\0';
				n->msg = (redis_message){ n->buf, n->buf + clen + 1, dlen };
				if (s->tail)
					s->tail->next = n;
				else
					s->head = n;
				s->tail = n;
			}
		}
	}
	if (s->waiter)
		aw_task_wake(s->waiter, 0);
}

/* Park until the callback changes something or `deadline`. 0, AW_WAKE_TIMER
 * or the cancel code (raised). */
static int sub_park(redis_sub *s, aw_time deadline)
{
	s->waiter = aw_task_current();
	int v = aw_task_park(deadline, false);
	s->waiter = NULL;
	return v;
}

static int sub_enter(aw_mgr *m)
{
	redis_sub *s = AW_CONTAINER_OF(m, redis_sub, iter.mgr);
	redis_conn *r = s->conn;
	if (!r->ac)
		return aw_raise(-REDIS_ECLOSED, "redis: SUBSCRIBE %s on a closed connection (%s)", s->channel, r->why);
	if (r->ac->c.flags & REDIS_SUBSCRIBED)
		return aw_raise(-REDIS_ESUBSCRIBED, "redis: SUBSCRIBE %s: this connection already has a subscription",
				s->channel);
	if (redisAsyncCommand(r->ac, on_sub, s, "SUBSCRIBE %s", s->channel) != REDIS_OK)
		return aw_raise(-REDIS_ECOMMAND, "redis: hiredis refused SUBSCRIBE %s", s->channel);
	s->state = SUB_PENDING;
	while (s->state == SUB_PENDING) {
		int v = sub_park(s, AW_NEVER);
		if (v < 0 && s->state == SUB_PENDING) {
			/* Cancelled mid-handshake: the exit will not run, and hiredis
			 * holds s. Closing makes it let go (on_sub(NULL) runs now). */
			conn_abort(r, "closed after SUBSCRIBE was cancelled");
			return v;
		}
	}
	if (s->state == SUB_CLOSED)
		return aw_raise(-REDIS_ECLOSED, "redis: SUBSCRIBE %s: connection closed (%s)", s->channel, r->why);
	return 0;
}

static int sub_next(aw_iter *it, void **item)
{
	redis_sub *s = AW_CONTAINER_OF(it, redis_sub, iter);
	free(s->current);
	s->current = NULL;
	for (;;) {
		if (s->oom) {
			s->oom = false;
			return aw_raise(-ENOMEM, "redis: %s: out of memory storing a message", s->channel);
		}
		if (s->head) {
			s->current = s->head;
			s->head = s->head->next;
			if (!s->head)
				s->tail = NULL;
			*item = &s->current->msg;
			return 1;
		}
		if (s->state == SUB_UNSUBSCRIBED)
			return 0;
		if (s->state == SUB_CLOSED)
			return aw_raise(-REDIS_ECLOSED, "redis: subscription to %s ended: connection closed (%s)",
					s->channel, s->conn->why);
		int v = sub_park(s, AW_NEVER);
		if (v < 0)
			return v;   /* cancelled: the subscription is intact, the exit unsubscribes */
	}
}

static int sub_exit(aw_mgr *m, int err)
{
	redis_sub *s = AW_CONTAINER_OF(m, redis_sub, iter.mgr);
	redis_conn *r = s->conn;
	int rc = 0;
	if (s->state == SUB_ACTIVE && r->ac) {
		/* UNSUBSCRIBE has no reply of its own: the confirmation comes to
		 * on_sub. Exits run shielded; the wait is bounded on its own. */
		if (redisAsyncCommand(r->ac, NULL, NULL, "UNSUBSCRIBE %s", s->channel) == REDIS_OK) {
			aw_time limit = aw_deadline_after(AW_SEC(2));
			while (s->state == SUB_ACTIVE)
				if (sub_park(s, limit) < 0)
					break;
		}
		if (s->state == SUB_ACTIVE) {   /* no confirmation: hiredis must drop s */
			conn_abort(r, "closed after UNSUBSCRIBE went unanswered");
			rc = aw_raise(-REDIS_ECLOSED, "redis: UNSUBSCRIBE %s went unanswered: connection closed",
				      s->channel);
		}
	}
	free_nodes(s);
	return err ? err : rc;   /* err: the block's error goes on, whatever we raised */
}

static const aw_mgr_ops sub_ops = { .name = "redis subscription", .enter = sub_enter, .exit = sub_exit };

/* An async iterator over the messages of one channel, on connection r
 * (which is in pub/sub mode while the loop runs: other tasks' commands on
 * it fail with -REDIS_ESUBSCRIBED; publish from another connection):
 *
 *     redis_sub sub;
 *     redis_message *msg;
 *     AW_FOR(msg, redis_subscribe_init(&sub, &r, "news")) { ... msg->data ... }
 *
 * Enter sends SUBSCRIBE and waits for the confirmation; each step waits for
 * the next message (messages that arrive meanwhile are queued); leaving the
 * loop (break, return, an error, a timeout) sends UNSUBSCRIBE and waits for
 * its confirmation, after which r takes plain commands again. The loop ends
 * by itself (0) only if the server unsubscribes us; -REDIS_ECLOSED if the
 * connection closes. A channel name is cut at 127 bytes. */
static aw_iter *redis_subscribe_init(redis_sub *s, redis_conn *r, const char *channel)
{
	memset(s, 0, sizeof *s);
	s->iter.mgr.ops = &sub_ops;
	s->iter.next = sub_next;
	s->conn = r;
	snprintf(s->channel, sizeof s->channel, "%s", channel);
	return &s->iter;
}

/* ======================================================================== */
/* The program                                                              */
/* ======================================================================== */

enum { NMESSAGES = 5 };

typedef struct demo {
	char host[256];
	int port;
	redis_conn r;                      /* main's connection, shared with the publisher */
	const char *channel, *jobs;
	int received;
} demo;

/* ADDRESS -> host and port (port 0: a unix socket path). */
static int parse_address(const char *a, demo *d)
{
	const char *p;
	if (!strncmp(a, "unix://", 7) || !strncmp(a, "unix:", 5)) {
		a += a[5] == '/' && a[6] == '/' ? 7 : 5;
		d->port = 0;
		return snprintf(d->host, sizeof d->host, "%s", a) < (int)sizeof d->host && a[0] == '/' ? 0 : -1;
	}
	if (a[0] == '/') {
		d->port = 0;
		return snprintf(d->host, sizeof d->host, "%s", a) < (int)sizeof d->host ? 0 : -1;
	}
	if (!strncmp(a, "redis://", 8))
		a += 8;
	d->port = 6379;
	if ((p = strrchr(a, ':'))) {
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (*end || port <= 0 || port > 65535)
			return -1;
		d->port = (int)port;
	} else {
		p = a + strlen(a);
	}
	if (p == a || (size_t)(p - a) >= sizeof d->host)
		return -1;
	snprintf(d->host, sizeof d->host, "%.*s", (int)(p - a), a);
	return 0;
}

/* Print a reply the way redis-cli does, on one line. */
static void print_reply(const redisReply *r)
{
	switch (r->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS: printf("%s", r->str); break;
	case REDIS_REPLY_INTEGER: printf("(integer) %lld", r->integer); break;
	case REDIS_REPLY_NIL: printf("(nil)"); break;
	case REDIS_REPLY_ARRAY:
		printf("[");
		for (size_t i = 0; i < r->elements; i++) {
			fputs(i ? ", " : "", stdout);
			print_reply(r->element[i]);
		}
		printf("]");
		break;
	default: printf("(reply type %d)", r->type);
	}
}

/* Run a command on main's connection, print "COMMAND -> reply". */
static int show(redis_conn *r, const char *label, const char *fmt, const char *a, const char *b)
{
	redisReply *reply;
	int rc = redis_command(r, &reply, fmt, a, b);
	if (rc < 0)
		return rc;
	printf("%s -> ", label);
	print_reply(reply);
	printf("\n");
	redis_reply_free(reply);
	return 0;
}

/* The subscriber: its own connection (pub/sub mode takes it over), the
 * messages as an async iterator, then the connection back in plain mode. */
static int subscriber(void *arg)
{
	demo *d = arg;
	redis_conn rs;
	redis_sub sub;
	redis_message *msg;
	AW_WITH(redis_conn_init(&rs, d->host, d->port, aw_deadline_after(AW_SEC(5)))) {
		AW_FOR(msg, redis_subscribe_init(&sub, &rs, d->channel)) {
			d->received++;
			printf("subscriber: message %d on %s: %s\n", d->received, msg->channel, msg->data);
			if (d->received == NMESSAGES)
				break;             /* the exit sends UNSUBSCRIBE */
		}
		if (aw_error_pending())
			break;
		redisReply *reply;
		if (redis_command(&rs, &reply, "PING") < 0)
			break;
		printf("subscriber: after UNSUBSCRIBE the connection takes commands again: PING -> %s\n", reply->str);
		redis_reply_free(reply);
	}
	return aw_error_pending();
}

/* The publisher: on main's connection, shared with main (main is parked in
 * the task group's exit meanwhile; hiredis would pipeline both anyway). */
static int publisher(void *arg)
{
	demo *d = arg;
	redisReply *reply;
	long long subscribers = 0, delivered = 0;
	/* Publish only once the subscriber listens (PUBLISH is fire-and-forget). */
	while (subscribers == 0) {
		int rc = redis_command(&d->r, &reply, "PUBSUB NUMSUB %s", d->channel);
		if (rc < 0)
			return rc;
		subscribers = reply->elements == 2 ? reply->element[1]->integer : 0;
		redis_reply_free(reply);
		if (subscribers == 0 && (rc = aw_sleep(AW_MS(2))) < 0)
			return rc;
	}
	for (int i = 1; i <= NMESSAGES; i++) {
		char text[64];
		snprintf(text, sizeof text, "item %d", i);
		int rc = redis_command(&d->r, &reply, "PUBLISH %s %s", d->channel, text);
		if (rc < 0)
			return rc;
		delivered += reply->integer;
		redis_reply_free(reply);
	}
	printf("publisher: %d messages published, %lld delivered\n", NMESSAGES, delivered);
	return 0;
}

/* A command with a time limit against a call that blocks: BLPOP on an empty
 * list, on a connection of its own. */
static int blocked_call(demo *d)
{
	redis_conn b;
	int rc = 0;
	AW_WITH(redis_conn_init(&b, d->host, d->port, aw_deadline_after(AW_SEC(5)))) {
		aw_time t0 = aw_now();
		AW_WITH(AW_TIMEOUT(AW_MS(100))) {
			rc = redis_command(&b, NULL, "BLPOP %s 0", d->jobs);
		}
		long long ms = (long long)((aw_now() - t0) / AW_MS(1));
		printf("BLPOP %s 0 under AW_TIMEOUT(100 ms) -> %s (%s) after %s100 ms\n", d->jobs,
		       rc == -ETIMEDOUT ? "-ETIMEDOUT" : "?", aw_strerror(rc), ms >= 100 ? ">= " : "< ");
		if (!aw_catch(rc, -ETIMEDOUT))
			break;                 /* anything else goes on */
		rc = redis_command(&b, NULL, "PING");
		printf("the timed-out connection is closed: PING -> %s\n",
		       rc == -REDIS_ECLOSED ? "-REDIS_ECLOSED" : "?");
		if (!aw_catch(rc, -REDIS_ECLOSED))
			break;
	}
	if (aw_error_pending())
		return aw_error_pending();
	/* The server dropped the BLPOP with the socket, so an element pushed now
	 * stays in the list (kept alive, the BLPOP would take it for nobody). */
	for (;;) {
		redisReply *info;
		if ((rc = redis_command(&d->r, &info, "INFO clients")) < 0)
			return rc;
		bool blocked = info->str && !strstr(info->str, "blocked_clients:0");
		redis_reply_free(info);
		if (!blocked)
			break;
		if ((rc = aw_sleep(AW_MS(2))) < 0)
			return rc;
	}
	if ((rc = show(&d->r, "LPUSH jobs job-1", "LPUSH %s %s", d->jobs, "job-1")) < 0)
		return rc;
	return show(&d->r, "LLEN jobs (the abandoned BLPOP took nothing)", "LLEN %s", d->jobs, NULL);
}

static int run(void *arg)
{
	demo *d = arg;
	int rc = 0;
	AW_WITH(redis_conn_init(&d->r, d->host, d->port, aw_deadline_after(AW_SEC(5)))) {
		char where[300];
		printf("connected to %s\n", conn_where(&d->r, where, sizeof where));
		/* Plain commands; each waits for its reply without blocking the loop. */
		if ((rc = redis_command(&d->r, NULL, "DEL %s %s %s", "awith:example:greeting",
					"awith:example:counter", d->jobs)) < 0)
			break;
		if ((rc = show(&d->r, "SET greeting", "SET %s %s", "awith:example:greeting", "hello from awith")) < 0 ||
		    (rc = show(&d->r, "GET greeting", "GET %s", "awith:example:greeting", NULL)) < 0 ||
		    (rc = show(&d->r, "INCR counter", "INCR %s", "awith:example:counter", NULL)) < 0 ||
		    (rc = show(&d->r, "INCR counter", "INCR %s", "awith:example:counter", NULL)) < 0)
			break;
		/* An error reply is an error code with the server's text; the
		 * connection stays usable. */
		rc = redis_command(&d->r, NULL, "INCR %s", "awith:example:greeting");
		printf("INCR greeting -> %s: %s\n", rc == -REDIS_EREPLY ? "-REDIS_EREPLY" : "?",
		       aw_error_current() ? aw_error_current()->msg : "no error");
		if (!aw_catch(rc, -REDIS_EREPLY))
			break;
		/* Pub/sub: one task subscribes, another publishes. */
		aw_group g;
		AW_WITH(AW_TIMEOUT(AW_SEC(10)), aw_group_init(&g)) {
			if ((rc = aw_group_spawn(&g, subscriber, d, "subscriber")) < 0 ||
			    (rc = aw_group_spawn(&g, publisher, d, "publisher")) < 0)
				break;
		}
		if (aw_error_pending())
			break;
		printf("subscriber got %d of %d messages\n", d->received, NMESSAGES);
		/* A time limit against a blocked call. */
		if ((rc = blocked_call(d)) < 0)
			break;
	}
	if (aw_error_pending() < 0) {
		fprintf(stderr, "redis_client: ");
		aw_error_print(stderr, aw_error_current());
		aw_error_clear();      /* handled here ... */
		return 1;              /* ... and made the exit status */
	}
	return 0;
}

int main(int argc, char **argv)
{
	demo d = { .channel = "awith:example:news", .jobs = "awith:example:jobs" };
	const char *addr = argc > 1 ? argv[1] : getenv("REDIS_URL");
	if (!addr || !*addr)
		addr = "127.0.0.1:6379";
	if (argc > 2 || parse_address(addr, &d) < 0) {
		fprintf(stderr, "usage: redis_client [redis://HOST:PORT | HOST:PORT | unix:///PATH]\n"
				"       (default: $REDIS_URL, else 127.0.0.1:6379)\n");
		return 2;
	}
	int rc = aw_run(run, &d);
	if (rc != 0)
		return 1;
	printf("done\n");
	return 0;
}
