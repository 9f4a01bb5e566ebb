/* SPDX-License-Identifier: MIT */
/*
 * 11_leak — the seed's pitfall "Not releasing resources": a session
 * entered without a block and never closed.
 *
 * AW_WITH cannot forget: the exit runs on every way out. The manual pair
 * aw_enter/aw_exit (for lifetimes that do not fit a block) can; the loop's
 * ledger then reports, when aw_run ends, what was never exited and where
 * it was entered, and releases it (the session's connections are closed).
 */
#include <awith/client.h>

#include <stdio.h>

static int amain(void *arg)
{
	(void)arg;
	aw_client_session s;

	/* The block form: nothing to forget. */
	AW_WITH(aw_client_session_init(&s, NULL)) {
		printf("inside the block: %zu open ledger entries\n", aw_ledger_count());
	}
	printf("after the block: %zu open ledger entries\n", aw_ledger_count());

	/* The manual form, with the aw_exit forgotten. */
	static aw_client_session leaked;
	if (aw_enter(aw_client_session_init(&leaked, NULL)) < 0)
		return aw_error_pending();
	printf("entered by hand: %zu open ledger entries\n", aw_ledger_count());
	return 0;   /* aw_run reports the session on stderr */
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
