/* SPDX-License-Identifier: MIT */
/*
 * LISTEN/NOTIFY: a listener is an async iterator of notifications.
 *
 * Enter LISTENs on each channel (names quoted with PQescapeIdentifier, so
 * any name is an identifier, never SQL); each step returns a notification
 * libpq already parsed, or waits for input on the connection's socket until
 * one arrives; exit UNLISTENs the same channels. A step holds the
 * connection's busy guard while it waits (another task's statement would
 * race it for the socket); between steps the body may use the connection.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* How long undoing the LISTENs of a failed enter may take. */
#define UNDO_BUDGET AW_SEC(5)

/* Send "<verb> <quoted channel>" for every channel (the first `count`; -1:
 * all). Returns 0 or the first error; *done counts the channels done. */
static int each_channel(aw_pg_conn *c, const char *const *channels, const char *verb, int count, int *done)
{
	*done = 0;
	for (int i = 0; channels[i] && (count < 0 || i < count); i++) {
		const char *ch = channels[i];
		char *quoted = PQescapeIdentifier(c->pg, ch, strlen(ch));
		if (!quoted)
			return aw_raise(-EINVAL, "aw_pg_listen: cannot quote channel name '%s': %s", ch,
					PQerrorMessage(c->pg));
		size_t n = strlen(verb) + strlen(quoted) + 2;
		char *sql = aw__malloc(n);
		if (!sql) {
			PQfreemem(quoted);
			return aw_raise(-ENOMEM, "aw_pg_listen: out of memory");
		}
		snprintf(sql, n, "%s %s", verb, quoted);
		PQfreemem(quoted);
		int rc = aw_pg_simple(c, sql);
		free(sql);
		c->queries++;
		if (rc < 0)
			return rc;
		++*done;
	}
	return 0;
}


/* The undo of a LISTEN enter that failed half-way: UNLISTEN the first n
 * channels (run by aw_cleanup_run: shielded, bounded, the enter's error
 * kept in flight). */
struct unlisten {
	aw_pg_listener *l;
	int n;
};

static int unlisten_done(void *arg, int err)
{
	(void)err;
	struct unlisten *u = arg;
	int undone;
	return each_channel(u->l->conn, u->l->channels, "UNLISTEN", u->n, &undone);
}

static int listen_enter(aw_mgr *m)
{
	aw_pg_listener *l = (aw_pg_listener *)m;
	aw_pg_conn *c = l->conn;
	l->cur = NULL;
	l->listening = false;
	memset(&l->item, 0, sizeof l->item);
	if (!l->channels || !l->channels[0])
		return aw_raise(-EINVAL, "aw_pg_listen: no channels (a NULL-terminated array of names)");
	for (int i = 0; l->channels[i]; i++)
		if (!l->channels[i][0])
			return aw_raise(-EINVAL, "aw_pg_listen: channel %d is an empty name", i);
	int rc = aw_pg_session_guard(c, "LISTEN", "aw_pg_listen");
	if (rc < 0)
		return rc;
	rc = aw_pg_begin(c, "aw_pg_listen (LISTEN)");
	if (rc < 0)
		return rc;
	int done;
	rc = each_channel(c, l->channels, "LISTEN", -1, &done);
	if (rc < 0 && aw_pg_conn_ok(c)) {
		/* Leave no channel behind: undo those that worked, keeping the
		 * error of the one that did not. The one that failed is undone
		 * too: a cancel or deadline interrupts its wait, but the drain
		 * after the cancel request may have seen it complete (UNLISTEN
		 * of a channel not listened to is harmless). Shielded: after a
		 * cancellation, an unshielded UNLISTEN would fail at once. */
		struct unlisten u = { l, done + 1 };
		if (aw_cleanup_run(unlisten_done, &u, UNDO_BUDGET) < 0)
			c->broken = true;   /* channels may still be listened: never reuse it */
		PGnotify *n;
		while ((n = PQnotifies(c->pg)))
			PQfreemem(n);
	}
	aw_pg_end(c);
	if (rc < 0)
		return rc;
	l->listening = true;
	return 0;
}

/* The server reports the channel as LISTEN folded it: quoted by us, so
 * exactly the name given. */
static bool wanted(const aw_pg_listener *l, const char *channel)
{
	for (int i = 0; l->channels[i]; i++)
		if (!strcmp(l->channels[i], channel))
			return true;
	return false;
}

static void drop_current(aw_pg_listener *l)
{
	if (l->cur)
		PQfreemem(l->cur);
	l->cur = NULL;
	memset(&l->item, 0, sizeof l->item);
}

static int listen_next(aw_iter *it, void **item)
{
	aw_pg_listener *l = (aw_pg_listener *)it;
	aw_pg_conn *c = l->conn;
	drop_current(l);
	int rc = aw_pg_begin(c, "aw_pg_listen (waiting for a notification)");
	if (rc < 0)
		return rc;
	PGnotify *n;
	for (;;) {
		/* Only this listener's channels: the session may also listen
		 * to others (a LISTEN by hand), whose notifications are not
		 * this loop's items. */
		while ((n = PQnotifies(c->pg)) && !wanted(l, n->relname))
			PQfreemem(n);
		if (n)
			break;
		rc = aw_pg_wait_input(c);
		if (rc < 0)
			break;
	}
	aw_pg_end(c);
	if (rc < 0) {
		/* A lost session (terminated backend, server stopped) ends the
		 * loop as one: -ECONNRESET, whatever libpq's wording. */
		if ((c->broken || PQstatus(c->pg) != CONNECTION_OK) && rc != -ECONNRESET) {
			c->broken = true;
			return aw_raise(-ECONNRESET, "aw_pg_listen: the connection was lost while waiting: %s",
					aw_strerror(rc));
		}
		return rc;   /* cancelled or a deadline: the protocol is idle, nothing to undo */
	}
	l->cur = n;
	l->item.channel = n->relname;
	l->item.payload = n->extra ? n->extra : "";
	l->item.pid = n->be_pid;
	*item = &l->item;
	return 1;
}

static int listen_exit(aw_mgr *m, int err)
{
	aw_pg_listener *l = (aw_pg_listener *)m;
	aw_pg_conn *c = l->conn;
	drop_current(l);
	if (!l->listening)
		return err;
	l->listening = false;
	if (c->broken || PQstatus(c->pg) != CONNECTION_OK)
		return err;   /* the session, and its LISTENs, are gone */
	int rc = aw_pg_begin(c, "aw_pg_listen (UNLISTEN)");
	if (rc == 0) {
		int done;
		rc = each_channel(c, l->channels, "UNLISTEN", -1, &done);
		/* Notifications that came before the UNLISTEN are for this loop,
		 * which is over: a later listener must not see them. */
		PGnotify *n;
		while ((n = PQnotifies(c->pg)))
			PQfreemem(n);
		aw_pg_end(c);
	}
	if (err)
		return err;
	return rc;
}

static void listen_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_pg_listener *l = (aw_pg_listener *)m;
	snprintf(buf, len, "LISTEN %s%s", l->channels && l->channels[0] ? l->channels[0] : "?",
		 l->channels && l->channels[0] && l->channels[1] ? " ..." : "");
}

static const aw_mgr_ops listen_ops = { "pg listener", listen_enter, listen_exit, listen_describe };

aw_iter *aw_pg_listen_init(aw_pg_listener *l, aw_pg_conn *c, const char *const *channels)
{
	memset(l, 0, sizeof *l);
	l->iter.mgr.ops = &listen_ops;
	l->iter.next = listen_next;
	l->conn = c;
	l->channels = channels;
	return &l->iter;
}

int aw_pg_notify(aw_pg_conn *c, const char *channel, const char *payload)
{
	if (!channel || !*channel)
		return aw_raise(-EINVAL, "aw_pg_notify: channel is %s", channel ? "empty" : "NULL");
	return aw_pg_exec(c, NULL, "SELECT pg_notify($1, $2)", AW_PG_ARGS(channel, payload ? payload : ""));
}
