/* SPDX-License-Identifier: MIT */
/*
 * 14_time_limits — where C differs: time limits.
 *
 *     async with asyncio.timeout(0.05):       AW_WITH(AW_TIMEOUT(AW_MS(50)))
 *         await slow()
 *
 * A time limit is a cancel scope, a manager that nests: every wait inside
 * fails with -ETIMEDOUT once its deadline passes. What differs from asyncio:
 *   - the failure is a return code, and it is level-triggered: every later
 *     wait in the scope fails too (asyncio delivers one CancelledError that
 *     code can swallow and then wait on);
 *   - deadlines are absolute times, so one deadline can bound several calls;
 *   - a move_on scope (Trio's move_on_after) ends the block quietly and
 *     says whether it fired;
 *   - exits run shielded: a manager's exit can still wait (flush, ROLLBACK)
 *     after the timeout, bounded by aw_config.grace.
 */
#include <awith/core.h>

#include <errno.h>
#include <stdio.h>

/* A manager whose exit waits (a flush), to show it still can after a
 * timeout. */
typedef struct flusher {
	aw_mgr mgr;
} flusher;

static int flusher_exit(aw_mgr *self, int err)
{
	(void)self;
	int rc = aw_sleep(AW_MS(5));   /* shielded: works although the block timed out */
	printf("  exit: flushed (sleep returned %d), the block's error: %s\n", rc, aw_strerror(err));
	return err;
}

static const aw_mgr_ops flusher_ops = { .name = "flusher", .exit = flusher_exit };

static int amain(void *arg)
{
	(void)arg;

	puts("1. asyncio.timeout(0.05)");
	AW_WITH(AW_TIMEOUT(AW_MS(50))) {
		int rc = aw_sleep(AW_SEC(10));
		printf("  first wait: %s\n", aw_strerror(rc));
		rc = aw_sleep(AW_SEC(10));   /* level-triggered: fails at once too */
		printf("  second wait: %s\n", aw_strerror(rc));
	}
	int rc = aw_error_pending();
	if (aw_catch(rc, -ETIMEDOUT))   /* except TimeoutError: */
		puts("  after the block: timed out, handled");

	puts("2. move_on: the block ends quietly");
	aw_scope s;
	AW_WITH(aw_move_on_init(&s, AW_MS(20))) {
		if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	printf("  fired: %s, in flight: %d\n", s.fired ? "yes" : "no", aw_error_pending());

	puts("3. one deadline for several steps");
	aw_time deadline = aw_deadline_after(AW_MS(250));
	AW_WITH(aw_deadline_init(&s, deadline)) {
		for (int step = 1; step <= 5; step++) {
			if (aw_sleep(AW_MS(100)) < 0) {
				printf("  step %d: %s\n", step, aw_strerror(aw_error_pending()));
				break;
			}
			printf("  step %d: done\n", step);
		}
	}
	aw_catch(aw_error_pending(), -ETIMEDOUT);

	puts("4. an exit that waits after the timeout");
	flusher f = { .mgr = { &flusher_ops } };
	AW_WITH(AW_TIMEOUT(AW_MS(20)), &f.mgr) {
		if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	aw_catch(aw_error_pending(), -ETIMEDOUT);
	return 0;
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
