/* SPDX-License-Identifier: MIT */
/*
 * 07_two_managers — the seed's
 *
 *     async with manager1(), manager2():
 *         ...
 *
 * AW_WITH(a, b) enters a then b and exits b then a, as the nested form
 * does. If b fails to enter, the body is skipped and a exits with b's error.
 */
#include <awith/core.h>

#include <errno.h>
#include <stdio.h>

typedef struct tracer {
	aw_mgr mgr;
	const char *name;
	int fail_enter;   /* a code to fail the enter with, or 0 */
} tracer;

static int tracer_enter(aw_mgr *self)
{
	tracer *t = (tracer *)self;
	printf("%s: enter\n", t->name);
	if (t->fail_enter)
		return aw_raise(t->fail_enter, "%s could not be entered", t->name);
	return aw_sleep(AW_MS(1));   /* an enter may wait */
}

static int tracer_exit(aw_mgr *self, int err)
{
	tracer *t = (tracer *)self;
	printf("%s: exit (%s)\n", t->name, err ? aw_strerror(err) : "no error");
	return err;
}

static const aw_mgr_ops tracer_ops = { .name = "tracer", .enter = tracer_enter, .exit = tracer_exit };

static aw_mgr *manager(tracer *t, const char *name, int fail_enter)
{
	*t = (tracer){ .mgr = { &tracer_ops }, .name = name, .fail_enter = fail_enter };
	return &t->mgr;
}

static int amain(void *arg)
{
	(void)arg;
	tracer m1, m2;
	AW_WITH(manager(&m1, "manager1", 0), manager(&m2, "manager2", 0)) {
		puts("body");
	}

	puts("-- manager2 fails to enter");
	AW_WITH(manager(&m1, "manager1", 0), manager(&m2, "manager2", -ECONNREFUSED)) {
		puts("body (not reached)");
	}
	printf("after the block: %s\n", aw_strerror(aw_error_pending()));
	aw_error_clear();
	return 0;
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
