/* SPDX-License-Identifier: MIT */
/*
 * aw_resolve: getaddrinfo off the loop, bounded by a deadline and by
 * cancellation without waiting for getaddrinfo to return.
 *
 * getaddrinfo cannot be interrupted, and aw_to_thread, once the function
 * runs, waits for it (its job lives in the waiter's frame). A lookup that
 * hangs on an unreachable name server would then hold the caller far past
 * its deadline. So the waiting is split in two:
 *
 *   - a detached helper task runs (aw_to_thread)(getaddrinfo) and is the one
 *     that waits for the thread, however long it takes;
 *   - the caller (the requester) parks until the helper hands the result
 *     over, its deadline passes, or it is cancelled, and then leaves at once.
 *
 * They share a heap job with a three-state machine, touched only on the
 * loop thread (the worker thread writes the result fields, published to the
 * loop by aw_to_thread's completion):
 *
 *   WAITING   --helper done-->   DONE       requester takes the result and
 *                                           frees the job
 *   WAITING   --requester leaves--> ABANDONED  helper frees the result and
 *                                              the job when it is done
 *
 * At loop shutdown the helper is cancelled like every task: a lookup not yet
 * started is withdrawn, a running one is waited for, and the job is freed
 * either way.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { JOB_WAITING, JOB_DONE, JOB_ABANDONED };

typedef struct resolve_job {
	int state;
	aw_task *requester;      /* parked in aw_resolve, or NULL */
	int rc;                  /* aw_to_thread's failure (< 0), else 0 */
	int gai;                 /* getaddrinfo's result */
	int gai_errno;           /* errno, for EAI_SYSTEM */
	struct addrinfo *res;
	char port[8];
	char host[];
} resolve_job;

/* Worker thread: the lookup itself. Always "succeeds": the outcome is in
 * the job, and the requester (not the helper) raises it. */
static int resolve_in_thread(void *arg)
{
	resolve_job *j = arg;
	/* No AI_ADDRCONFIG: it hides ::1 and 127.0.0.1 on hosts without a
	 * configured address of that family (containers, test rigs). */
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	errno = 0;
	j->gai = getaddrinfo(j->host, j->port, &hints, &j->res);
	j->gai_errno = errno;
	return 0;
}

/* The helper task: wait for the lookup, then hand it over or clean up. */
static int resolve_helper(void *arg)
{
	resolve_job *j = arg;
	int rc = 0;
	if (j->state == JOB_WAITING)   /* the requester may have left already */
		rc = (aw_to_thread)(resolve_in_thread, j);
	if (j->state == JOB_ABANDONED) {
		if (j->res)
			freeaddrinfo(j->res);
		free(j);
	} else {
		if (rc < 0 && j->res) {
			/* Cancelled (loop shutdown) with the result discarded. */
			freeaddrinfo(j->res);
			j->res = NULL;
		}
		j->rc = rc < 0 ? rc : 0;
		j->state = JOB_DONE;
		if (j->requester)
			aw_task_wake(j->requester, 0);
	}
	/* Whatever the helper raised is reported by the requester, or moot. */
	aw_error_clear();
	return 0;
}

/* Raise the outcome of a finished lookup. */
static int resolve_error(const char *host, int gai, int gai_errno)
{
	if (gai == EAI_MEMORY)
		return aw_raise(-ENOMEM, "resolving %s: out of memory", host);
	if (gai == EAI_SYSTEM && gai_errno) {
		errno = gai_errno;
		return aw_raise(-AW_EDNS, "cannot resolve %s: %s: %m", host, gai_strerror(gai));
	}
	return aw_raise(-AW_EDNS, "cannot resolve %s: %s", host, gai_strerror(gai));
}

/* Literal addresses need no lookup: try AI_NUMERICHOST on the loop thread.
 * Returns 1 (resolved, *out set), 0 (not a literal), or a raised error.
 * "[::1]" (bracketed IPv6, as in URLs) is accepted. */
static int resolve_literal(const char *host, const char *port, struct addrinfo **out)
{
	char buf[64];
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof buf) {
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	int gai = getaddrinfo(host, port, &hints, out);
	if (gai == 0)
		return 1;
	*out = NULL;
	if (gai == EAI_NONAME)
		return 0;
	return resolve_error(host, gai, errno);
}

/* Waits: resolve host (a name, or a literal IPv4/IPv6 address) and port
 * for a stream socket; *out gets the list (free it with freeaddrinfo), in
 * getaddrinfo's order. Literals resolve at once, without the thread pool
 * and without waiting. Otherwise the lookup runs on the thread pool, and
 * the call returns at `deadline` (-ETIMEDOUT, "resolving <host> timed out")
 * or when cancelled (the cancel code) without waiting for it: it finishes
 * in the background and its result is dropped. Errors: -EINVAL (bad
 * arguments), -AW_EDNS with gai_strerror's text and the host name, -ENOMEM,
 * -AW_ENOTASK for a name looked up outside a task. */
int (aw_resolve)(const char *host, int port, struct addrinfo **out, aw_time deadline)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_resolve: out is NULL");
	*out = NULL;
	if (!host || !*host)
		return aw_raise(-EINVAL, "aw_resolve: empty host name");
	if (port < 0 || port > 65535)
		return aw_raise(-EINVAL, "aw_resolve: port %d out of range (0-65535)", port);
	size_t hlen = strlen(host);
	if (hlen > 1024)   /* NI_MAXHOST - 1; DNS names stop at 253 */
		return aw_raise(-EINVAL, "aw_resolve: host name too long (%zu bytes)", hlen);
	char portstr[8];
	snprintf(portstr, sizeof portstr, "%d", port);

	int rc = resolve_literal(host, portstr, out);
	if (rc != 0)
		return rc < 0 ? rc : 0;

	aw_task *self = aw_task_current();
	if (!self)
		return aw_raise(-AW_ENOTASK, "(aw_resolve)(%s): looking up a name waits, and the caller is not a task",
				host);
	if (deadline != AW_NEVER && aw_now() >= deadline)
		return aw_raise(-ETIMEDOUT, "resolving %s timed out (the deadline had passed)", host);

	resolve_job *j = aw__calloc(1, sizeof *j + hlen + 1);
	if (!j)
		return aw_raise(-ENOMEM, "(aw_resolve)(%s): out of memory", host);
	memcpy(j->host, host, hlen + 1);
	memcpy(j->port, portstr, sizeof portstr);
	j->state = JOB_WAITING;
	char name[32];   /* task names keep 31 bytes: enough to tell lookups apart in a dump */
	snprintf(name, sizeof name, "resolve %s", host);
	rc = aw_spawn(NULL, resolve_helper, j, name);
	if (rc < 0) {
		free(j);
		return rc;
	}
	j->requester = self;

	aw__at(AW_HERE);   /* dumps show the task waiting here */
	int v = 0;
	while (j->state != JOB_DONE) {
		v = aw_task_park(deadline, false);
		if (v == AW_WAKE_TIMER || v < 0)
			break;
	}
	/* A cancellation (raised already) wins over a result that arrived in
	 * the same turn: the caller asked to stop. A result that arrived with
	 * the deadline is taken. */
	bool cancelled = v < 0 && v != AW_WAKE_TIMER;
	if (cancelled || j->state != JOB_DONE) {
		j->requester = NULL;
		if (j->state == JOB_DONE) {
			if (j->res)
				freeaddrinfo(j->res);
			free(j);
		} else {
			j->state = JOB_ABANDONED;   /* the helper frees it */
		}
		if (cancelled)
			return v;
		return aw_raise(-ETIMEDOUT, "resolving %s timed out", host);
	}

	if (j->rc < 0)
		rc = aw_raise(j->rc, "resolving %s: the lookup could not run: %s", host, aw_strerror(j->rc));
	else if (j->gai)
		rc = resolve_error(host, j->gai, j->gai_errno);
	else
		*out = j->res;
	free(j);
	return rc;
}
