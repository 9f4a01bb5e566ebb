/* SPDX-License-Identifier: MIT */
/*
 * 13_error_rule — where C differs: there are no exceptions, so awith has a
 * rule for which error an exit sees (core.h, first lines):
 *
 *     An error stays in flight from its raise until your code handles it
 *     (aw_catch, aw_error_clear, or `continue` to the next item of
 *     AW_FOR); every exit of every block it leaves sees it, however the
 *     block is left; and a cancelled task's exits always see the
 *     cancellation.
 *
 * A transaction-like manager shows it: its exit COMMITs when it sees no
 * error and ROLLs BACK otherwise.
 */
#include <awith/core.h>

#include <errno.h>
#include <stdio.h>

typedef struct tx {
	aw_mgr mgr;
} tx;

static int tx_enter(aw_mgr *self)
{
	(void)self;
	puts("  BEGIN");
	return 0;
}

static int tx_exit(aw_mgr *self, int err)
{
	(void)self;
	if (err)
		printf("  ROLLBACK (%s)\n", aw_strerror(err));
	else
		puts("  COMMIT");
	return err;
}

static const aw_mgr_ops tx_ops = { .name = "tx", .enter = tx_enter, .exit = tx_exit };
#define TX() (&(tx){ .mgr = { &tx_ops } }.mgr)

/* A statement that fails: raises its error and returns the code. */
static int insert(const char *what, int fail)
{
	printf("  insert %s\n", what);
	if (fail)
		return aw_raise(fail, "insert %s failed", what);
	return 0;
}

/* 1. The body ignores a failure and runs to its end. In Python the
 *    exception would propagate; in C the error stays in flight, so the
 *    exit sees it: no half-done COMMIT. */
static void ignored(void)
{
	puts("1. a failure the body ignores");
	AW_WITH(TX()) {
		int rc = insert("a", -EIO);
		(void)rc;   /* not checked */
		insert("b", 0);
	}
	printf("  after the block: %s\n", aw_strerror(aw_error_pending()));
	aw_error_clear();
}

/* 2. The body handles it: aw_catch is `except FileExistsError:`. */
static void handled(void)
{
	puts("2. a failure the body handles");
	AW_WITH(TX()) {
		int rc = insert("a", -EEXIST);
		if (aw_catch(rc, -EEXIST))
			puts("  a exists already: fine");
		insert("b", 0);
	}
	printf("  after the block: %s\n", aw_error_pending() ? "error" : "no error");
}

/* 3. Raise and leave in one step. */
static int leave(void)
{
	puts("3. return aw_raise(...)");
	AW_WITH(TX()) {
		insert("a", 0);
		return aw_raise(-EINVAL, "the order is empty");
	}
	return 0;
}

/* 4. A cancelled task whose body swallowed the cancellation: its exit
 *    still sees it. */
static int cancelled_body(void *arg)
{
	(void)arg;
	AW_WITH(TX()) {
		int rc = aw_sleep(AW_SEC(10));   /* cancelled here */
		printf("  sleep returned %s; the body goes on\n", aw_strerror(rc));
		aw_error_clear();   /* swallowed */
	}
	return aw_error_pending();   /* what the exit left in flight */
}

static int amain(void *arg)
{
	(void)arg;
	ignored();
	handled();
	printf("  returned: %s\n", aw_strerror(leave()));
	aw_error_clear();

	puts("4. a cancelled task");
	aw_task *t;
	if (aw_spawn(&t, cancelled_body, NULL, "worker") < 0 || aw_sleep(AW_MS(10)) < 0)
		return aw_error_pending();
	aw_task_cancel(t);
	int rc = aw_task_join(t);   /* the task's error moves to us */
	printf("  the task ended with: %s\n", aw_strerror(rc));
	aw_error_clear();
	return 0;
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
