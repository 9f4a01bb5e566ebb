/* SPDX-License-Identifier: MIT */
/*
 * 10_blocking — the seed's pitfall "Blocking calls inside async with":
 * a blocking call stops every task of the loop. In awith the loop's
 * watchdog notices (it prints "awith: slow step: task ... ran N ms without
 * waiting" to stderr, with where the task resumed and where it waited), and
 * aw_to_thread runs the call on the loop's thread pool instead, so the
 * other tasks keep running.
 *
 * A ticker task counts 10 ms ticks while main makes the same 300 ms
 * blocking call twice: once on the loop, once through aw_to_thread.
 */
#include <awith/core.h>

#include <stdio.h>
#include <unistd.h>

static int ticks;

static int ticker(void *arg)
{
	(void)arg;
	while (aw_sleep(AW_MS(10)) == 0)
		ticks++;
	return 0;   /* cancelled: done */
}

/* A call that blocks its thread for 300 ms (a stand-in for a synchronous
 * library call: a DNS lookup, a big file, a CPU-heavy step). */
static int blocking_call(void *arg)
{
	(void)arg;
	usleep(300 * 1000);
	return 42;
}

static int amain(void *arg)
{
	(void)arg;
	aw_task *t;
	if (aw_spawn(&t, ticker, NULL, "ticker") < 0)
		return aw_error_pending();
	if (aw_sleep(AW_MS(20)) < 0)   /* let the ticker start */
		return aw_error_pending();

	int before = ticks;
	int result = blocking_call(NULL);   /* wrong: the whole loop stops */
	printf("on the loop: result %d, ticks meanwhile: %d\n", result, ticks - before);

	before = ticks;
	result = aw_to_thread(blocking_call, NULL);   /* right: only this task waits */
	printf("aw_to_thread: result %d, the ticker %s\n", result,
	       ticks - before >= 5 ? "kept ticking" : "STOPPED");

	aw_task_cancel(t);
	return aw_task_join(t);
}

int main(void)
{
	return aw_run(amain, NULL) == 0 ? 0 : 1;
}
