/* SPDX-License-Identifier: MIT */
/*
 * nesting — the seed's "Advanced Patterns", in C.
 *
 *  1. Nesting managers:                 async with a:
 *                                           async with b: ...
 *  2. Several in one statement:         async with a, b: ...
 *     AW_WITH(a, b) enters left to right and exits right to left, exactly
 *     like the nested form (LIFO).
 *  3. A deadline around a block:        async with asyncio.timeout(0.02): ...
 *     AW_WITH(AW_TIMEOUT(dur)): waits inside fail with -ETIMEDOUT once the
 *     deadline passes; the block is left with that error.
 *  4. A task group:                     async with asyncio.TaskGroup() as tg:
 *                                           tg.create_task(child(i))
 *     The block's exit waits for every child.
 *  5. Combining with async for:         async with streaming_context() as s:
 *                                           async for chunk in s: ...
 *     AW_FOR(item, iterator) over an aw_gen_iter (an async generator).
 *     Breaking out early still closes the generator: its pending yield
 *     returns -AW_ECLOSED (Python's GeneratorExit) and it tears down, which
 *     is what Python's `aclosing()` gives you.
 *
 * Each manager prints when it is entered and exited, so the output shows
 * the order.
 */
#include <awith/core.h>

#include <stdio.h>

/* ---- a class-style manager that prints its enter and exit ---------------- */

typedef struct tracer {
	aw_mgr mgr;
	const char *name;
} tracer;

static int tracer_enter(aw_mgr *self)
{
	tracer *t = (tracer *)self;   /* mgr is the first member */
	printf("enter %s\n", t->name);
	return 0;
}

static int tracer_exit(aw_mgr *self, int err)
{
	tracer *t = (tracer *)self;
	printf("exit %s%s%s\n", t->name, err ? ": " : "", err ? aw_strerror(err) : "");
	return err;
}

static const aw_mgr_ops tracer_ops = { .name = "tracer", .enter = tracer_enter, .exit = tracer_exit };

/* `Tracer(name)`, built in the caller's frame. */
#define TRACER(nm) (&(tracer){ .mgr = { &tracer_ops }, .name = (nm) }.mgr)

/* ---- 1 and 2: nesting, and several managers in one statement ------------- */

static void nested_blocks(void)
{
	puts("-- nested");
	AW_WITH(TRACER("session")) {
		AW_WITH(TRACER("request")) {
			puts("body");
		}
	}

	puts("-- one statement");
	AW_WITH(TRACER("a"), TRACER("b"), TRACER("c")) {
		puts("body");
	}
}

/* ---- 3: a timeout block ---------------------------------------------------- */

static void timeout_block(void)
{
	puts("-- timeout");
	aw_time t0 = aw_now();
	AW_WITH(AW_TIMEOUT(AW_MS(20))) {
		/* A "slow operation": would take a second. */
		if (aw_sleep(AW_SEC(1)) < 0)
			break;   /* leave with the error: the scope's exit sees it */
		puts("not reached");
	}
	/* The timeout's error is in flight after the block. */
	int rc = aw_error_pending();
	long ms = (long)((aw_now() - t0) / AW_MS(1));
	printf("timeout block left with: %s (after %s 1 s)\n", aw_strerror(rc),
	       ms < 1000 ? "well under" : "NOT under");
	aw_error_clear();   /* handled */
}

/* ---- 4: a task group ------------------------------------------------------- */

static int done_children;

static int child(void *arg)
{
	long i = (long)arg;
	/* Each child waits a different time: they finish in their own order. */
	int rc = aw_sleep(AW_MS(5 * (4 - i)));
	if (rc < 0)
		return rc;
	printf("child %ld done\n", i);
	done_children++;
	return 0;
}

static int task_group(void)
{
	puts("-- task group");
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (long i = 1; i <= 3; i++) {
			int rc = aw_group_spawn(&g, child, (void *)i, "child");
			if (rc < 0)
				return rc;   /* the exit cancels and waits for the others */
		}
		puts("children started");
	}   /* the exit waits here until every child has finished */
	printf("group exited: %d of 3 children done\n", done_children);
	return aw_error_pending();   /* -AW_EGROUP if a child had failed */
}

/* ---- 5: async for over a streaming source, broken out of early ------------- */

/* An async generator: yields chunks of a "stream" until it is exhausted or
 * closed. Each aw_gen_yield returns 0 to go on, or the code the loop is
 * left with (-AW_ECLOSED when the consumer just stopped early). */
static int stream_chunks(aw_gen *g, void *arg)
{
	static const char *chunks[] = { "chunk-1", "chunk-2", "chunk-3", "chunk-4", "chunk-5" };
	(void)arg;
	int rc = 0;
	for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
		rc = aw_sleep(AW_MS(1));   /* "receive" the chunk */
		if (rc < 0)
			break;
		rc = aw_gen_yield(g, (void *)chunks[i]);
		if (rc < 0)
			break;
	}
	/* Teardown, on every way out. */
	printf("stream closed (%s)\n", rc == -AW_ECLOSED ? "consumer stopped early" :
	       rc ? aw_strerror(rc) : "exhausted");
	return rc;   /* -AW_ECLOSED or 0 is a clean close */
}

static void async_for(void)
{
	puts("-- async for");
	AW_WITH(TRACER("streaming_context")) {
		aw_gen_iter stream;
		const char *chunk;
		/* AW_FOR enters the iterator (a manager) and closes it on
		 * every way out of the loop, like Python's aclosing(). */
		AW_FOR(chunk, aw_gen_iter_init(&stream, "stream", stream_chunks, NULL)) {
			printf("process %s\n", chunk);
			if (chunk[6] == '3')
				break;   /* stop early: the stream is still closed */
		}
		puts("after the loop");
	}
}

static int amain(void *arg)
{
	(void)arg;
	nested_blocks();
	timeout_block();
	int rc = task_group();
	if (rc < 0)
		return rc;
	async_for();
	return aw_error_pending();
}

int main(void)
{
	int rc = aw_run(amain, NULL);
	if (rc < 0) {
		fprintf(stderr, "nesting: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
