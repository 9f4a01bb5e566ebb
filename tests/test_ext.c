/* SPDX-License-Identifier: MIT */
/* Tests: the extension API (awith/ext.h) — a resource written only with it
 * (a one-slot mailbox: park, wake, wait queue), fd watching, error objects
 * and error ranges, including the io and pg layers' own ranges. */
#include "harness.h"

#include <awith/core.h>
#include <awith/ext.h>
#include <awith/io.h>
#include <awith/pg.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a resource built on ext.h alone ------------------------------------- */

/* A mailbox: get waits until a value is put; put hands it straight to the
 * first waiter (FIFO) or keeps it for the next get. */
typedef struct mailbox {
	aw_waitq getters;
	bool full;
	int value;
} mailbox;

static int mailbox_get(mailbox *m, aw_time deadline, int *out)
{
	if (m->full) {
		m->full = false;
		*out = m->value;
		return 0;
	}
	aw_waiter w = { 0 };
	int v;
	w.data = out;
	aw_waitq_push(&m->getters, &w, aw_task_current());
	v = aw_task_park(deadline, false);
	if (w.linked) {   /* timer or cancel: nobody handed us a value */
		aw_waitq_remove(&m->getters, &w);
		if (v == AW_WAKE_TIMER)
			return aw_raise(-ETIMEDOUT, "mailbox: nothing arrived in time");
		return v;   /* the cancel code, already raised */
	}
	return 0;
}

static void mailbox_put(mailbox *m, int value)
{
	aw_waiter *w = aw_waitq_pop(&m->getters);
	if (w) {
		*(int *)w->data = value;
		aw_task_wake(w->task, 0);
		return;
	}
	m->full = true;
	m->value = value;
}

struct getter { mailbox *m; int got, rc; aw_time deadline; };

static int getter_task(void *arg)
{
	struct getter *g = arg;
	g->rc = mailbox_get(g->m, g->deadline, &g->got);
	if (g->rc < 0)
		aw_error_clear();
	return 0;
}

static int main_mailbox(void *arg)
{
	(void)arg;
	mailbox m = { 0 };
	struct getter g[2] = { { &m, -1, 1, AW_NEVER }, { &m, -1, 1, AW_NEVER } };
	aw_task *t[2];
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_spawn(&t[i], getter_task, &g[i], "getter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);   /* both park, in order */
	EXPECT(!aw_waitq_empty(&m.getters));
	mailbox_put(&m, 7);
	mailbox_put(&m, 8);
	EXPECT(aw_waitq_empty(&m.getters));
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	EXPECT_EQ(g[0].rc, 0);
	EXPECT_EQ(g[0].got, 7);   /* FIFO: the first parked gets the first value */
	EXPECT_EQ(g[1].rc, 0);
	EXPECT_EQ(g[1].got, 8);
	mailbox_put(&m, 9);       /* nobody waits: kept */
	int v = 0;
	EXPECT_EQ(mailbox_get(&m, AW_NEVER, &v), 0);
	EXPECT_EQ(v, 9);
	return 0;
}

AW_TEST(ext_park_and_wake_hand_values_to_waiters_in_fifo_order)
{
	EXPECT_EQ(aw_run(main_mailbox, NULL), 0);
}

static int main_mailbox_timer(void *arg)
{
	(void)arg;
	mailbox m = { 0 };
	int v = -1;
	aw_time t0 = aw_now();
	EXPECT_EQ(mailbox_get(&m, aw_deadline_after(AW_MS(20)), &v), -ETIMEDOUT);
	EXPECT(aw_now() - t0 >= AW_MS(20));
	EXPECT(aw_waitq_empty(&m.getters));   /* the waiter left the queue */
	EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
	aw_error_clear();
	EXPECT_EQ(v, -1);
	return 0;
}

AW_TEST(ext_park_returns_wake_timer_at_the_parkers_own_deadline)
{
	EXPECT_EQ(aw_run(main_mailbox_timer, NULL), 0);
}

static int main_mailbox_cancel(void *arg)
{
	(void)arg;
	mailbox m = { 0 };
	struct getter g = { &m, -1, 1, AW_NEVER };
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, getter_task, &g, "getter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT_EQ(g.rc, -ECANCELED);
	EXPECT(aw_waitq_empty(&m.getters));
	mailbox_put(&m, 5);                  /* nobody to hand it to now: kept */
	EXPECT(m.full);
	return 0;
}

AW_TEST(ext_cancelled_parker_gets_the_cancel_code_and_leaves_the_queue)
{
	EXPECT_EQ(aw_run(main_mailbox_cancel, NULL), 0);
}

static int main_timeout_scope(void *arg)
{
	(void)arg;
	mailbox m = { 0 };
	int v = -1, rc = 1;
	aw_scope to;
	AW_WITH(aw_timeout_init(&to, AW_MS(10))) {
		rc = mailbox_get(&m, AW_NEVER, &v);   /* the scope's deadline cancels it */
	}
	EXPECT_EQ(rc, -ETIMEDOUT);
	EXPECT_EQ(aw_error_pending(), -ETIMEDOUT);
	aw_error_clear();
	EXPECT(aw_waitq_empty(&m.getters));
	return 0;
}

AW_TEST(ext_park_obeys_the_timeout_scopes_around_it)
{
	EXPECT_EQ(aw_run(main_timeout_scope, NULL), 0);
}

AW_TEST(ext_park_outside_a_task_is_enotask)
{
	EXPECT_EQ(aw_task_park(AW_NEVER, false), -AW_ENOTASK);
	aw_error_clear();
}

/* ---- fd watching ---------------------------------------------------------- */

static int hups;
static void on_hup(void *arg) { hups += *(int *)arg; }

static int main_fd_watch(void *arg)
{
	(void)arg;
	int sv[2];
	static int one = 1;
	EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	EXPECT_EQ(aw_fd_watch(sv[0]), 0);
	EXPECT_EQ(aw_fd_take_ready(sv[0]), 0);
	EXPECT_EQ(write(sv[1], "x", 1), 1);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);    /* let the loop see the edge */
	EXPECT_EQ(aw_fd_take_ready(sv[0]), AW_READABLE);
	EXPECT_EQ(aw_fd_take_ready(sv[0]), 0);   /* consumed */
	EXPECT(!aw_fd_peer_closed(sv[0]));
	hups = 0;
	EXPECT_EQ(aw_fd_on_hup(sv[0], on_hup, &one), 0);
	close(sv[1]);
	EXPECT_EQ(aw_sleep(AW_MS(1)), 0);
	EXPECT_EQ(hups, 1);                  /* called once, from the loop */
	EXPECT(aw_fd_peer_closed(sv[0]));
	EXPECT(aw_fd_take_ready(sv[0]) & AW_FD_HUP);
	EXPECT_EQ(aw_fd_close(sv[0]), 0);
	return 0;
}

AW_TEST(ext_fd_watch_reports_edges_and_hangups_without_a_waiter)
{
	EXPECT_EQ(aw_run(main_fd_watch, NULL), 0);
}

/* ---- error objects -------------------------------------------------------- */

static int main_error_obj(void *arg)
{
	(void)arg;
	aw_error *kept = aw_error_new(AW_HERE, -ECONNREFUSED, "service down since %d", 42);
	for (int i = 0; i < 2; i++) {   /* raise the same error to two callers */
		aw_error_hold(kept);
		aw_error_raise_obj(kept);
		EXPECT_EQ(aw_error_pending(), -ECONNREFUSED);
		EXPECT_STR_EQ(aw_error_current()->msg, "service down since 42");
		aw_error_clear();
	}
	aw_error_free(kept);
	aw_error *plain = aw_error_new(NULL, -AW_EDNS, NULL);
	EXPECT_STR_EQ(plain->msg, "name resolution failed");
	aw_error_free(plain);
	return 0;
}

AW_TEST(ext_a_kept_error_object_is_raised_to_each_caller_with_its_message)
{
	EXPECT_EQ(aw_run(main_error_obj, NULL), 0);
}

/* ---- error ranges --------------------------------------------------------- */

AW_TEST(strerror_knows_the_io_and_pg_ranges_from_their_own_headers)
{
	EXPECT_STR_EQ(aw_strerror(-AW_ETOOLONG), "size limit exceeded");   /* core */
	EXPECT_STR_EQ(aw_strerror(-AW_ETLS_VERIFY), "TLS certificate verification failed");
	EXPECT_STR_EQ(aw_strerror(-AW_EDNS), "name resolution failed");
	EXPECT_STR_EQ(aw_strerror(-AW_EPG_NODB), "the database does not exist");
	EXPECT_STR_EQ(aw_strerror(-AW_EPG_TYPE), "the value does not have the requested type");
	EXPECT_STR_EQ(aw_strerror(-(AW_EPG_LAST + 3)), "unknown error");
	EXPECT(AW_EIO_BASE % AW_ERANGE_SIZE == 0 && AW_EPG_BASE % AW_ERANGE_SIZE == 0);
	EXPECT((int)AW_ELAST < (int)AW_EIO_BASE && (int)AW_EIO_LAST < (int)AW_EPG_BASE);
}

enum { MY_EBASE = AW_ERANGE_USER + 0x300, MY_ENOPE };
static const char *my_strerror(int code) { return code == MY_ENOPE ? "nope, said the widget" : NULL; }
static const char *other_strerror(int code) { (void)code; return "other"; }

AW_TEST(a_library_registers_its_own_error_range_once)
{
	EXPECT_STR_EQ(aw_strerror(-MY_ENOPE), "unknown error");
	EXPECT_EQ(aw_error_range_register(MY_EBASE, "widget", my_strerror), 0);
	EXPECT_STR_EQ(aw_strerror(-MY_ENOPE), "nope, said the widget");
	EXPECT_STR_EQ(aw_strerror(MY_ENOPE), "nope, said the widget");
	EXPECT_STR_EQ(aw_strerror(-(MY_ENOPE + 1)), "unknown error");
	EXPECT_EQ(aw_error_range_register(MY_EBASE, "widget", my_strerror), 0);   /* again: no-op */
	EXPECT_EQ(aw_error_range_register(MY_EBASE, "other", other_strerror), -EEXIST);
	EXPECT_EQ(aw_error_range_register(AW_EPG_BASE, "other", other_strerror), -EEXIST);
	EXPECT_EQ(aw_error_range_register(MY_EBASE + 1, "other", other_strerror), -EINVAL);
	EXPECT_EQ(aw_error_range_register(AW_EBASE, "other", other_strerror), -EINVAL);
	EXPECT_EQ(aw_error_range_register(0x8000, "other", other_strerror), -EINVAL);
	EXPECT_EQ(aw_error_range_register(0x4900, "other", NULL), -EINVAL);
	EXPECT_STR_EQ(aw_strerror(-MY_ENOPE), "nope, said the widget");
}

AW_TEST(error_ranges_run_out_with_enospc_not_a_crash)
{
	int rc = 0, n = 0;
	for (int base = AW_ERANGE_USER; base <= 0x7f00 && rc == 0; base += AW_ERANGE_SIZE) {
		rc = aw_error_range_register(base, "filler", other_strerror);
		n += rc == 0;
	}
	EXPECT_EQ(rc, -ENOSPC);
	EXPECT(n > 0 && n <= 32);
	EXPECT_STR_EQ(aw_strerror(-AW_EDNS), "name resolution failed");   /* still there */
}
