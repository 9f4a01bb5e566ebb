/* SPDX-License-Identifier: MIT */
/*
 * async_logger — the seed's first example, in C.
 *
 *     class AsyncLogger:
 *         async def __aenter__(self):
 *             print("Async Enter")
 *             return self
 *         async def __aexit__(self, exc_type, exc_val, tb):
 *             print("Async Exit")
 *
 *     async def main():
 *         async with AsyncLogger():
 *             print("Inside block")
 *
 *     asyncio.run(main())
 *
 * How it maps:
 *   - the class is a struct that embeds `aw_mgr` (the protocol header) and a
 *     static table of operations: enter = __aenter__, exit = __aexit__;
 *   - `async with X():` is `AW_WITH(x) { ... }`; like AsyncLogger(), the
 *     manager is built in the statement itself (a compound literal in the
 *     caller's frame: entering it allocates nothing);
 *   - enter and exit may wait, as `async def` methods may `await`: both sleep
 *     for a millisecond here, which suspends only this task;
 *   - __aexit__'s (exc_type, exc, tb) is exit's `err`: 0 when the block ends
 *     normally, else the error it is left with. Returning it lets it go on
 *     (like returning None in Python); returning 0 would suppress it;
 *   - asyncio.run(main()) is aw_run(amain, NULL).
 *
 * Output, exactly:
 *     Async Enter
 *     Inside block
 *     Async Exit
 */
#include <awith/core.h>

#include <stdio.h>

typedef struct async_logger {
	aw_mgr mgr;   /* first member: what AW_WITH takes */
} async_logger;

/* __aenter__: may wait. 0 = entered; a negative code = the body is skipped
 * and exit is not called. */
static int logger_enter(aw_mgr *self)
{
	(void)self;
	puts("Async Enter");
	return aw_sleep(AW_MS(1));   /* an `await` inside __aenter__ */
}

/* __aexit__: runs exactly once on every way out of the block, may wait, and
 * sees why the block is left (err). */
static int logger_exit(aw_mgr *self, int err)
{
	(void)self;
	/* Exits run shielded from cancellation, so this wait works even when
	 * the task is being cancelled (within the grace period). */
	int rc = aw_sleep(AW_MS(1));
	puts("Async Exit");
	return err ? err : rc;   /* pass the block's error on; 0 if none */
}

static const aw_mgr_ops async_logger_ops = {
	.name = "AsyncLogger",   /* shown in dumps and leak reports */
	.enter = logger_enter,
	.exit = logger_exit,
};

/* `AsyncLogger()`: a fresh manager in the caller's frame. */
#define ASYNC_LOGGER() (&(async_logger){ .mgr = { &async_logger_ops } }.mgr)

static int amain(void *arg)
{
	(void)arg;
	AW_WITH(ASYNC_LOGGER()) {
		puts("Inside block");
	}
	/* A failed enter or exit leaves its error in flight after the block. */
	return aw_error_pending();
}

int main(void)
{
	int rc = aw_run(amain, NULL);
	if (rc < 0) {
		fprintf(stderr, "async_logger: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
