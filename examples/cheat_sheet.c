/* SPDX-License-Identifier: MIT */
/*
 * cheat_sheet — the seed's cheat sheet as one compilable file.
 *
 *     # Basic Structure
 *     class MyAsyncManager:
 *         async def __aenter__(self): ...
 *         async def __aexit__(self, exc_type, exc, tb): ...
 *
 *     # Shortcut with contextlib
 *     @asynccontextmanager
 *     async def my_manager():
 *         yield resource
 *
 *     # Usage
 *     async with my_manager() as res:
 *         await do_something(res)
 *
 * The three parts follow, in that order. Rules that hold for both styles:
 *   - enter and exit (or the code before and after the yield) may wait;
 *   - enter fails with a negative code => the body and exit do not run;
 *   - exit runs exactly once on every way out of the block (end, return,
 *     break, goto, error, cancellation, timeout), innermost first;
 *   - exit gets the error the block is left with (0: none) and returns it
 *     to let it go on, 0 to suppress it, or a new code to replace it.
 */
#include <awith/core.h>

#include <stdio.h>

/* A resource to manage: here just a counter of uses. */
typedef struct resource {
	const char *name;
	int uses;
} resource;

/* ---- Basic structure: a class-style manager -------------------------------
 * A struct that embeds aw_mgr, plus a static table of operations. It lives in
 * the caller's frame; entering it allocates nothing. */

typedef struct my_async_manager {
	aw_mgr mgr;          /* the protocol header, first */
	resource *res;       /* what `as` gives the block */
} my_async_manager;

/* async def __aenter__(self) */
static int my_enter(aw_mgr *self)
{
	my_async_manager *m = (my_async_manager *)self;
	printf("class-style: acquire %s\n", m->res->name);
	return aw_yield();   /* any `await` works here */
}

/* async def __aexit__(self, exc_type, exc, tb) */
static int my_exit(aw_mgr *self, int err)
{
	my_async_manager *m = (my_async_manager *)self;
	printf("class-style: release %s (%s)\n", m->res->name, err ? aw_strerror(err) : "no error");
	return err;   /* Python's `return None`: let the error go on */
}

static const aw_mgr_ops my_ops = { .name = "MyAsyncManager", .enter = my_enter, .exit = my_exit };

/* MyAsyncManager(res): initialise in place and return the manager. */
static aw_mgr *my_async_manager_init(my_async_manager *m, resource *res)
{
	*m = (my_async_manager){ .mgr = { &my_ops }, .res = res };
	return &m->mgr;
}

/* ---- Shortcut: a generator-style manager (@asynccontextmanager) -----------
 * One function: setup, aw_gen_yield(resource), teardown. aw_gen_yield
 * returns the body's error, so the teardown always runs after it. */

static int my_manager_gen(aw_gen *g, void *arg)
{
	resource *res = arg;
	printf("generator: set up %s\n", res->name);          /* before yield */
	int err = aw_gen_yield(g, res);                       /* yield resource */
	printf("generator: tear down %s (%s)\n", res->name,   /* after yield */
	       err ? aw_strerror(err) : "no error");
	return err;
}

/* my_manager(): the aw_gen lives in the caller's frame. */
static aw_mgr *my_manager(aw_gen *g, resource *res)
{
	return aw_gen_init(g, "my_manager", my_manager_gen, res);
}

/* ---- Usage ------------------------------------------------------------------ */

/* await do_something(res) */
static int do_something(resource *res)
{
	res->uses++;
	printf("do_something(%s): use #%d\n", res->name, res->uses);
	return aw_sleep(AW_MS(1));
}

static int amain(void *arg)
{
	(void)arg;
	resource db = { .name = "db", .uses = 0 };

	/* async with MyAsyncManager(db) as res: await do_something(res) */
	my_async_manager m;
	AW_WITH(my_async_manager_init(&m, &db)) {
		resource *res = m.res;
		if (do_something(res) < 0)
			break;   /* leave with the error: exit sees it */
	}

	/* async with my_manager() as res: await do_something(res) */
	aw_gen g;
	AW_WITH(my_manager(&g, &db)) {
		resource *res = aw_gen_value(&g);
		if (do_something(res) < 0)
			break;
	}

	/* Both at once, exits in reverse order: async with A() as a, B() as b: */
	aw_gen g2;
	AW_WITH(my_async_manager_init(&m, &db), my_manager(&g2, &db)) {
		if (do_something(&db) < 0)
			break;
	}

	/* A failed enter or exit, or an error a block was left with, is still
	 * in flight here; 0 when all went well. */
	return aw_error_pending();
}

int main(void)
{
	int rc = aw_run(amain, NULL);
	if (rc < 0) {
		fprintf(stderr, "cheat_sheet: %s\n", aw_strerror(rc));
		return 1;
	}
	return 0;
}
