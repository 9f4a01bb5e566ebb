/* SPDX-License-Identifier: MIT */
/* Tests: aw_to_thread, blocking work on the loop's thread pool. */
#include "harness.h"

#include <awith/core.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
}

/* ---- results ------------------------------------------------------------------ */

static int times_two(void *arg)
{
	return 2 * (int)(intptr_t)arg;
}

static int fails_eio(void *arg)
{
	(void)arg;
	return aw_raise(-EIO, "disk on fire");
}

static int fails_bare(void *arg)
{
	(void)arg;
	return -ENOSPC;
}

struct results { int r[3]; int codes[3]; char msg[2][64]; bool loc_ok; };

static int main_results(void *arg)
{
	struct results *r = arg;
	r->r[0] = aw_to_thread(times_two, (void *)(intptr_t)21);
	r->r[1] = aw_to_thread(fails_eio, NULL);
	const aw_error *e = aw_error_current();
	if (e) {
		r->codes[1] = e->code;
		snprintf(r->msg[0], sizeof r->msg[0], "%s", e->msg);
		r->loc_ok = e->loc && strstr(e->loc->file, "test_thread.c");
	}
	aw_error_clear();
	r->r[2] = aw_to_thread(fails_bare, NULL);
	e = aw_error_current();
	if (e) {
		r->codes[2] = e->code;
		snprintf(r->msg[1], sizeof r->msg[1], "%s", e->msg);
	}
	aw_error_clear();
	EXPECT_EQ(aw_to_thread(NULL, NULL), -EINVAL);
	aw_error_clear();
	return 0;
}

AW_TEST(to_thread_returns_the_functions_result_and_carries_its_error)
{
	struct results r;
	memset(&r, 0, sizeof r);
	CHECK_EQ(aw_run(main_results, &r), 0);
	CHECK_EQ(r.r[0], 42);
	CHECK_EQ(r.r[1], -EIO);
	CHECK_EQ(r.codes[1], -EIO);
	CHECK_STR(r.msg[0], "disk on fire");
	CHECK(r.loc_ok);
	CHECK_EQ(r.r[2], -ENOSPC);
	CHECK_EQ(r.codes[2], -ENOSPC);
	CHECK(strlen(r.msg[1]) > 0);
}

AW_TEST(to_thread_outside_a_task_is_enotask)
{
	CHECK_EQ(aw_to_thread(times_two, NULL), -AW_ENOTASK);
	aw_error_clear();
	CHECK(!aw_thread_cancelled());
}

/* ---- off the loop thread --------------------------------------------------- */

struct offloop { pthread_t loop_thread, job_thread; int ticks_during; int ticks; bool stop; int rc; };

static int blocking_job(void *arg)
{
	struct offloop *o = arg;
	o->job_thread = pthread_self();
	sleep_ms(100);   /* a blocking call: only this worker waits */
	return 5;
}

static int ticker(void *arg)
{
	struct offloop *o = arg;
	while (!o->stop) {
		if (aw_sleep(AW_MS(5)) < 0)
			break;
		o->ticks++;
	}
	return 0;
}

static int main_offloop(void *arg)
{
	struct offloop *o = arg;
	o->loop_thread = pthread_self();
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, ticker, o, "ticker"), 0);
	EXPECT_EQ(aw_yield(), 0);
	int before = o->ticks;
	o->rc = aw_to_thread(blocking_job, o);
	o->ticks_during = o->ticks - before;
	o->stop = true;
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(to_thread_runs_off_the_loop_while_other_tasks_keep_running)
{
	struct offloop o;
	memset(&o, 0, sizeof o);
	CHECK_EQ(aw_run(main_offloop, &o), 0);
	CHECK_EQ(o.rc, 5);
	CHECK(!pthread_equal(o.loop_thread, o.job_thread));
	CHECK_GE(o.ticks_during, 3);   /* ~20 expected; generous */
}

/* ---- cancellation ------------------------------------------------------------- */

struct cancel_job {
	atomic_int started;
	atomic_int saw_cancel;
	atomic_int finished;
	int rc;
	bool job_done_at_return;
	aw_time waited;
};

static int cancellable_job(void *arg)
{
	struct cancel_job *c = arg;
	atomic_store(&c->started, 1);
	for (int i = 0; i < 5000 && !aw_thread_cancelled(); i++)
		sleep_ms(1);
	atomic_store(&c->saw_cancel, aw_thread_cancelled());
	sleep_ms(20);   /* some cleanup: the task must still wait for it */
	atomic_store(&c->finished, 1);
	return 7;
}

static int cancel_task(void *arg)
{
	struct cancel_job *c = arg;
	aw_time t0 = aw_now();
	c->rc = aw_to_thread(cancellable_job, c);
	c->waited = aw_now() - t0;
	c->job_done_at_return = atomic_load(&c->finished);
	aw_error_clear();
	return 0;
}

static int main_cancel(void *arg)
{
	struct cancel_job *c = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, cancel_task, c, "offloader"), 0);
	aw_time deadline = aw_deadline_after(AW_SEC(10));
	while (!atomic_load(&c->started) && aw_now() < deadline)
		EXPECT_EQ(aw_sleep(AW_MS(1)), 0);
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(cancel_while_the_job_runs_waits_for_it_and_returns_ecanceled)
{
	struct cancel_job c;
	memset(&c, 0, sizeof c);
	aw_time t0 = aw_now();
	CHECK_EQ(aw_run(main_cancel, &c), 0);
	CHECK(atomic_load(&c.started));
	CHECK(atomic_load(&c.saw_cancel));
	CHECK_EQ(c.rc, -ECANCELED);
	CHECK(c.job_done_at_return);
	CHECK_GE(c.waited, AW_MS(20));
	CHECK_LT(aw_now() - t0, AW_SEC(5));
}

struct queued_cancel { atomic_int release; int rc_block, rc_queued; atomic_int queued_ran; };

static int blocker_job(void *arg)
{
	struct queued_cancel *q = arg;
	for (int i = 0; i < 5000 && !atomic_load(&q->release); i++)
		sleep_ms(1);
	return 1;
}

static int never_job(void *arg)
{
	struct queued_cancel *q = arg;
	atomic_store(&q->queued_ran, 1);
	return 2;
}

static int queued_task(void *arg)
{
	struct queued_cancel *q = arg;
	q->rc_queued = aw_to_thread(never_job, q);
	aw_error_clear();
	return 0;
}

static int blocker_task(void *arg)
{
	struct queued_cancel *q = arg;
	q->rc_block = aw_to_thread(blocker_job, q);
	return 0;
}

static int main_withdraw(void *arg)
{
	struct queued_cancel *q = arg;
	aw_task *b, *t;
	EXPECT_EQ(aw_spawn(&b, blocker_task, q, "blocker"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* the only worker is busy */
	EXPECT_EQ(aw_spawn(&t, queued_task, q, "queued"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);   /* its job is queued */
	aw_time t0 = aw_now();
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);      /* withdrawn: returns at once */
	EXPECT(aw_now() - t0 < AW_SEC(2));
	atomic_store(&q->release, 1);
	EXPECT_EQ(aw_task_join(b), 0);
	return 0;
}

AW_TEST(cancel_before_the_job_starts_withdraws_it)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 1;
	struct queued_cancel q;
	memset(&q, 0, sizeof q);
	CHECK_EQ(aw_run_config(&cfg, main_withdraw, &q), 0);
	CHECK_EQ(q.rc_queued, -ECANCELED);
	CHECK(!atomic_load(&q.queued_ran));
	CHECK_EQ(q.rc_block, 1);
}

/* ---- more jobs than threads ------------------------------------------------ */

static atomic_int running_now, running_max;

static int counted_job(void *arg)
{
	int now = atomic_fetch_add(&running_now, 1) + 1;
	int max = atomic_load(&running_max);
	while (now > max && !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	sleep_ms(15);
	atomic_fetch_sub(&running_now, 1);
	return 100 + (int)(intptr_t)arg;
}

struct job_slot { int i; int rc; };

static int job_task(void *arg)
{
	struct job_slot *s = arg;
	s->rc = aw_to_thread(counted_job, (void *)(intptr_t)s->i);
	return 0;
}

static int main_many_jobs(void *arg)
{
	struct job_slot *s = arg;
	aw_task *t[10];
	for (int i = 0; i < 10; i++) {
		s[i].i = i;
		EXPECT_EQ(aw_spawn(&t[i], job_task, &s[i], "job"), 0);
	}
	for (int i = 0; i < 10; i++)
		EXPECT_EQ(aw_task_join(t[i]), 0);
	return 0;
}

AW_TEST(more_jobs_than_threads_queue_up_and_all_complete)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 2;
	struct job_slot s[10];
	memset(s, 0, sizeof s);
	aw_time t0 = aw_now();
	CHECK_EQ(aw_run_config(&cfg, main_many_jobs, s), 0);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(s[i].rc, 100 + i);
	CHECK_LE(atomic_load(&running_max), 2);
	CHECK_GE(atomic_load(&running_max), 1);
	/* 10 jobs of 15 ms on 2 threads: at least 5 rounds. */
	CHECK_GE(aw_now() - t0, AW_MS(75));
	CHECK_LT(aw_now() - t0, AW_SEC(10));
}
