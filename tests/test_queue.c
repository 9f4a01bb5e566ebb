/* SPDX-License-Identifier: MIT */
/* Tests: the bounded queue. */
#include "harness.h"

#include <awith/core.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define ITEM(n) ((void *)(intptr_t)(n))
#define NUM(p) ((int)(intptr_t)(p))

static aw_evlog evlog;

/* ---- order ------------------------------------------------------------------ */

static int main_fifo(void *arg)
{
	(void)arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 4), 0);
	for (int i = 1; i <= 4; i++)
		EXPECT_EQ(aw_queue_put(&q, ITEM(i)), 0);
	EXPECT_EQ(aw_queue_len(&q), 4);
	/* Interleave so that the ring wraps around. */
	for (int i = 5; i <= 10; i++) {
		void *p = NULL;
		EXPECT_EQ(aw_queue_get(&q, &p), 0);
		aw_evlog_add(&evlog, "%d", NUM(p));
		EXPECT_EQ(aw_queue_put(&q, ITEM(i)), 0);
	}
	while (aw_queue_len(&q)) {
		void *p = NULL;
		EXPECT_EQ(aw_queue_get(&q, &p), 0);
		aw_evlog_add(&evlog, "%d", NUM(p));
	}
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(queue_delivers_items_in_fifo_order)
{
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_fifo, NULL), 0);
	CHECK_STR(evlog.s, "1 2 3 4 5 6 7 8 9 10");
}

/* ---- waiting ------------------------------------------------------------------ */

struct pc { aw_queue q; int puts_done; int n; int rc; };

static int producer(void *arg)
{
	struct pc *c = arg;
	for (int i = 1; i <= c->n; i++) {
		int rc = aw_queue_put(&c->q, ITEM(i));
		if (rc) {
			c->rc = rc;
			return 0;
		}
		aw_evlog_add(&evlog, "p%d", i);
		c->puts_done = i;
	}
	return 0;
}

static int main_put_waits(void *arg)
{
	struct pc *c = arg;
	EXPECT_EQ(aw_queue_init(&c->q, 2), 0);
	c->n = 5;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, producer, c, "producer"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	/* Full: the producer waits in its third put. */
	EXPECT_EQ(c->puts_done, 2);
	EXPECT_EQ(aw_queue_len(&c->q), 2);
	EXPECT(!aw_task_done(t));
	for (int i = 1; i <= 5; i++) {
		void *p = NULL;
		EXPECT_EQ(aw_queue_get(&c->q, &p), 0);
		aw_evlog_add(&evlog, "g%d", NUM(p));
		EXPECT_EQ(NUM(p), i);
		EXPECT_EQ(aw_sleep(AW_MS(1)), 0);
	}
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT_EQ(c->puts_done, 5);
	aw_queue_destroy(&c->q);
	return 0;
}

AW_TEST(put_waits_while_full_and_resumes_when_a_get_frees_space)
{
	struct pc c;
	memset(&c, 0, sizeof c);
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_put_waits, &c), 0);
	CHECK_EQ(c.rc, 0);
	/* A get moves the waiting putter's item in at once. */
	CHECK_STR(evlog.s, "p1 p2 g1 p3 g2 p4 g3 p5 g4 g5");
}

struct getter_ctx { aw_queue *q; int rc; int got; aw_time elapsed; };

static int getter(void *arg)
{
	struct getter_ctx *g = arg;
	void *p = ITEM(-1);
	aw_time t0 = aw_now();
	g->rc = aw_queue_get(g->q, &p);
	g->elapsed = aw_now() - t0;
	g->got = NUM(p);
	aw_evlog_add(&evlog, "got%d", g->got);
	return 0;
}

static int main_get_waits(void *arg)
{
	struct getter_ctx *g = arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 3), 0);
	g[0].q = g[1].q = &q;
	aw_task *t[2];
	EXPECT_EQ(aw_spawn(&t[0], getter, &g[0], "getter0"), 0);
	EXPECT_EQ(aw_spawn(&t[1], getter, &g[1], "getter1"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	EXPECT(!aw_task_done(t[0]));
	EXPECT(!aw_task_done(t[1]));
	aw_evlog_add(&evlog, "put%d", 7);
	EXPECT_EQ(aw_queue_put(&q, ITEM(7)), 0);
	EXPECT_EQ(aw_queue_len(&q), 0);   /* handed straight to the first getter */
	aw_evlog_add(&evlog, "put%d", 8);
	EXPECT_EQ(aw_queue_try_put(&q, ITEM(8)), 0);
	EXPECT_EQ(aw_task_join(t[0]), 0);
	EXPECT_EQ(aw_task_join(t[1]), 0);
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(get_waits_while_empty_and_getters_are_served_in_order)
{
	struct getter_ctx g[2];
	memset(g, 0, sizeof g);
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_get_waits, g), 0);
	CHECK_STR(evlog.s, "put7 put8 got7 got8");
	CHECK_EQ(g[0].rc, 0);
	CHECK_EQ(g[0].got, 7);
	CHECK_EQ(g[1].rc, 0);
	CHECK_EQ(g[1].got, 8);
	/* That the getters waited is proven by !aw_task_done before the put
	 * (a lower bound on elapsed time would depend on when they started). */
	CHECK_LT(g[0].elapsed, AW_SEC(5));
}

/* ---- close -------------------------------------------------------------------- */

static int main_close_getters(void *arg)
{
	struct getter_ctx *g = arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 2), 0);
	g[0].q = g[1].q = &q;
	aw_task *t[2];
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_spawn(&t[i], getter, &g[i], "getter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	aw_queue_close(&q);
	aw_queue_close(&q);   /* idempotent */
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	/* Closed: puts fail at once. */
	EXPECT_EQ(aw_queue_put(&q, ITEM(1)), -AW_ECLOSED);
	EXPECT_EQ(aw_queue_try_put(&q, ITEM(1)), -AW_ECLOSED);
	EXPECT_EQ(aw_queue_try_get(&q, &(void *){ NULL }), -AW_ECLOSED);
	aw_error_clear();
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(close_wakes_waiting_getters_with_eclosed)
{
	struct getter_ctx g[2];
	memset(g, 0, sizeof g);
	CHECK_EQ(aw_run(main_close_getters, g), 0);
	for (int i = 0; i < 2; i++) {
		CHECK_EQ(g[i].rc, -AW_ECLOSED);
		CHECK_EQ(g[i].got, -1);   /* *item untouched on failure */
	}
}

struct putter_ctx { aw_queue *q; int item; int rc; };

static int putter(void *arg)
{
	struct putter_ctx *p = arg;
	p->rc = aw_queue_put(p->q, ITEM(p->item));
	return 0;
}

static int main_close_putters(void *arg)
{
	struct putter_ctx *p = arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 2), 0);
	EXPECT_EQ(aw_queue_put(&q, ITEM(1)), 0);
	EXPECT_EQ(aw_queue_put(&q, ITEM(2)), 0);
	aw_task *t[2];
	for (int i = 0; i < 2; i++) {
		p[i].q = &q;
		p[i].item = 10 + i;
		EXPECT_EQ(aw_spawn(&t[i], putter, &p[i], "putter"), 0);
	}
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT(!aw_task_done(t[0]));
	aw_queue_close(&q);
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	/* Items queued before close are still delivered, then ECLOSED. */
	for (int i = 1; i <= 2; i++) {
		void *it = NULL;
		EXPECT_EQ(aw_queue_get(&q, &it), 0);
		aw_evlog_add(&evlog, "%d", NUM(it));
	}
	void *it = ITEM(-1);
	int rc = aw_queue_get(&q, &it);
	EXPECT_EQ(rc, -AW_ECLOSED);
	EXPECT_EQ(aw_error_pending(), -AW_ECLOSED);
	EXPECT_EQ(NUM(it), -1);
	aw_error_clear();
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(close_wakes_putters_and_queued_items_are_still_delivered_then_eclosed)
{
	struct putter_ctx p[2];
	memset(p, 0, sizeof p);
	aw_evlog_reset(&evlog);
	CHECK_EQ(aw_run(main_close_putters, p), 0);
	CHECK_EQ(p[0].rc, -AW_ECLOSED);
	CHECK_EQ(p[1].rc, -AW_ECLOSED);
	CHECK_STR(evlog.s, "1 2");
}

/* ---- try_put / try_get ----------------------------------------------------- */

static int main_try(void *arg)
{
	(void)arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 1), 0);
	void *it = NULL;
	EXPECT_EQ(aw_queue_try_get(&q, &it), -EAGAIN);
	EXPECT_EQ(aw_error_pending(), 0);   /* -EAGAIN is not raised */
	EXPECT_EQ(aw_queue_try_put(&q, ITEM(5)), 0);
	EXPECT_EQ(aw_queue_try_put(&q, ITEM(6)), -EAGAIN);
	EXPECT_EQ(aw_error_pending(), 0);
	EXPECT_EQ(aw_queue_try_get(&q, &it), 0);
	EXPECT_EQ(NUM(it), 5);
	EXPECT_EQ(aw_queue_try_get(&q, &it), -EAGAIN);
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(try_put_when_full_and_try_get_when_empty_are_eagain)
{
	CHECK_EQ(aw_run(main_try, NULL), 0);
}

static int main_try_waiters(void *arg)
{
	(void)arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 1), 0);
	EXPECT_EQ(aw_queue_put(&q, ITEM(1)), 0);
	struct putter_ctx p = { &q, 2, 1 };
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, putter, &p, "putter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	/* try_get frees a slot: the waiting putter's item moves in, so a
	 * try_put cannot overtake it. */
	void *it = NULL;
	EXPECT_EQ(aw_queue_try_get(&q, &it), 0);
	EXPECT_EQ(NUM(it), 1);
	EXPECT_EQ(aw_queue_try_put(&q, ITEM(3)), -EAGAIN);
	EXPECT_EQ(aw_task_join(t), 0);
	EXPECT_EQ(p.rc, 0);
	EXPECT_EQ(aw_queue_try_get(&q, &it), 0);
	EXPECT_EQ(NUM(it), 2);
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(try_put_cannot_overtake_a_waiting_putter)
{
	CHECK_EQ(aw_run(main_try_waiters, NULL), 0);
}

/* ---- cancellation and bad input -------------------------------------------- */

static int main_cancel_getter(void *arg)
{
	struct getter_ctx *g = arg;
	aw_queue q;
	EXPECT_EQ(aw_queue_init(&q, 1), 0);
	g[0].q = g[1].q = &q;
	aw_task *t[2];
	for (int i = 0; i < 2; i++)
		EXPECT_EQ(aw_spawn(&t[i], getter, &g[i], "getter"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	aw_task_cancel(t[0]);
	EXPECT_EQ(aw_task_join(t[0]), 0);
	EXPECT_EQ(aw_queue_put(&q, ITEM(9)), 0);   /* goes to the second getter */
	EXPECT_EQ(aw_task_join(t[1]), 0);
	aw_queue_destroy(&q);
	return 0;
}

AW_TEST(cancelled_getter_leaves_the_queue_and_the_item_goes_to_the_next)
{
	struct getter_ctx g[2];
	memset(g, 0, sizeof g);
	CHECK_EQ(aw_run(main_cancel_getter, g), 0);
	CHECK_EQ(g[0].rc, -ECANCELED);
	CHECK_EQ(g[0].got, -1);
	CHECK_EQ(g[1].rc, 0);
	CHECK_EQ(g[1].got, 9);
}

AW_TEST(queue_of_capacity_zero_is_einval)
{
	aw_queue q;
	CHECK_EQ(aw_queue_init(&q, 0), -EINVAL);
	CHECK_EQ(aw_error_pending(), -EINVAL);
	aw_error_clear();
	/* A failed init leaves a closed queue: use fails instead of waiting. */
	CHECK_EQ(aw_queue_try_put(&q, ITEM(1)), -AW_ECLOSED);
	aw_error_clear();
	aw_queue_destroy(&q);
	aw_queue_destroy(&q);
}

AW_TEST(queue_without_a_loop_works_until_it_would_wait)
{
	aw_queue q;
	CHECK_EQ(aw_queue_init(&q, 1), 0);
	CHECK_EQ(aw_queue_put(&q, ITEM(1)), 0);
	CHECK_EQ(aw_queue_put(&q, ITEM(2)), -AW_ENOTASK);
	void *it = NULL;
	CHECK_EQ(aw_queue_get(&q, &it), 0);
	CHECK_EQ(NUM(it), 1);
	CHECK_EQ(aw_queue_get(&q, &it), -AW_ENOTASK);
	aw_error_clear();
	aw_queue_destroy(&q);
}
