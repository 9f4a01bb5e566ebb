/* SPDX-License-Identifier: MIT */
/* Tests: observability — error printing, the dump, the ledger, slow steps,
 * stack overflows, the dump signal. */
#include "harness.h"

#include <awith/core.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif


/* Does `text` contain "test_observe.c:<line>"? */
static bool has_loc(const char *text, int line)
{
	char want[64];
	snprintf(want, sizeof want, "test_observe.c:%d", line);
	return text && strstr(text, want) != NULL;
}

/* A log captured in memory: cfg.log for one aw_run. */
struct capture { char *buf; size_t len; FILE *f; };

static bool capture_open(struct capture *c, aw_config *cfg)
{
	memset(c, 0, sizeof *c);
	c->f = open_memstream(&c->buf, &c->len);
	cfg->log = c->f;
	return c->f != NULL;
}

static void capture_close(struct capture *c)
{
	fclose(c->f);
	c->f = NULL;
}

/* ---- aw_error_print -------------------------------------------------------- */

typedef struct replacer { aw_mgr mgr; int line; } replacer;

static int replacer_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int replacer_exit(aw_mgr *m, int err)
{
	replacer *r = (replacer *)m;
	if (!err)
		return 0;
	r->line = __LINE__; return aw_raise(-EPIPE, "outer problem while closing");
}

static const aw_mgr_ops replacer_ops = { .name = "replacer", .enter = replacer_enter, .exit = replacer_exit };

struct print_ctx { char *chain; size_t chain_len; char *group; size_t group_len; int lines[2]; };

static int group_child_fails(void *arg)
{
	int *line = arg;
	*line = __LINE__; return aw_raise(-ENOENT, "child broke");
}

static int main_print(void *arg)
{
	struct print_ctx *p = arg;
	replacer r = { .mgr = { &replacer_ops } };
	AW_WITH(&r.mgr) {
		p->lines[0] = __LINE__; (void)!aw_raise(-EIO, "inner problem %d", 17);
		break;
	}
	p->lines[1] = r.line;
	const aw_error *e = aw_error_current();
	EXPECT(e && e->code == -EPIPE && e->cause && e->cause->code == -EIO);
	FILE *f = open_memstream(&p->chain, &p->chain_len);
	aw_error_print(f, e);
	aw_error_print(f, NULL);
	fclose(f);
	aw_error_clear();

	aw_group g;
	int child_line = 0;
	AW_WITH(aw_group_init(&g)) {
		EXPECT_EQ(aw_group_spawn(&g, group_child_fails, &child_line, "breaker"), 0);
	}
	f = open_memstream(&p->group, &p->group_len);
	aw_error_print(f, aw_error_current());
	fprintf(f, "child line %d\n", child_line);
	fclose(f);
	aw_error_clear();
	return 0;
}

AW_TEST(error_print_shows_message_location_and_cause_chain)
{
	struct print_ctx p;
	memset(&p, 0, sizeof p);
	CHECK_EQ(aw_run(main_print, &p), 0);
	CHECK(p.chain != NULL);
	CHECK(strstr(p.chain, "outer problem while closing") != NULL);
	CHECK(strstr(p.chain, "inner problem 17") != NULL);
	CHECK(strstr(p.chain, "during handling of") != NULL);
	/* The newer error first, then its cause. */
	CHECK(strstr(p.chain, "outer problem") < strstr(p.chain, "inner problem"));
	CHECK(has_loc(p.chain, p.lines[0]));
	CHECK(has_loc(p.chain, p.lines[1]));
	CHECK(strstr(p.chain, "no error") != NULL);
	CHECK(p.group != NULL);
	CHECK(strstr(p.group, "task group failed") != NULL);
	CHECK(strstr(p.group, "[1 of group]") != NULL);
	CHECK(strstr(p.group, "child broke") != NULL);
	int child_line = 0;
	const char *cl = strstr(p.group, "child line ");
	CHECK(cl != NULL);
	child_line = atoi(cl + strlen("child line "));
	CHECK(has_loc(p.group, child_line));
	free(p.chain);
	free(p.group);
}

AW_TEST(strerror_describes_errno_and_awith_codes)
{
	CHECK_STR(aw_strerror(0), "no error");
	CHECK(strstr(aw_strerror(-AW_ECLOSED), "closed") != NULL);
	CHECK(strstr(aw_strerror(AW_EGROUP), "group") != NULL);
	CHECK(strlen(aw_strerror(-ETIMEDOUT)) > 0);
	CHECK_STR(aw_strerror(-999999), "unknown error");
}

/* ---- aw_dump ------------------------------------------------------------------- */

struct dump_ctx { aw_lock lock; int with_line, sleep_line; char *buf; size_t len; };

static int sleeper_with_lock(void *arg)
{
	struct dump_ctx *d = arg;
	d->with_line = __LINE__; AW_WITH(aw_lock_mgr(&d->lock)) {
		d->sleep_line = __LINE__; if (aw_sleep(AW_SEC(10)) < 0)
			break;
	}
	return 0;
}

static int main_dump(void *arg)
{
	struct dump_ctx *d = arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "sleeper" };
	EXPECT_EQ(aw_spawn_with(&t, sleeper_with_lock, d, &o), 0);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	FILE *f = open_memstream(&d->buf, &d->len);
	aw_dump(f);
	fclose(f);
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(dump_lists_each_task_where_it_waits_and_the_managers_it_holds)
{
	struct dump_ctx d;
	memset(&d, 0, sizeof d);
	aw_lock_init(&d.lock);
	CHECK_EQ(aw_run(main_dump, &d), 0);
	CHECK(d.buf != NULL);
	CHECK(strstr(d.buf, "'sleeper'") != NULL);
	CHECK(strstr(d.buf, "'main'") != NULL);
	CHECK(has_loc(d.buf, d.sleep_line));     /* where it waits */
	CHECK(strstr(d.buf, "holds lock") != NULL);
	CHECK(has_loc(d.buf, d.with_line));      /* where it entered the lock */
	CHECK(strstr(d.buf, "held by 'sleeper'") != NULL);
	/* The sleeper's lines come after its header line. */
	CHECK(strstr(d.buf, "'sleeper'") < strstr(d.buf, "holds lock"));
	free(d.buf);
}

struct dump2_ctx { aw_lock lock; aw_cond cond; int wait_line; char *buf; size_t len; };

static int cond_waiter(void *arg)
{
	struct dump2_ctx *d = arg;
	EXPECT_EQ(aw_lock_acquire(&d->lock), 0);
	d->wait_line = __LINE__; EXPECT_EQ(aw_cond_wait(&d->cond), 0);
	EXPECT_EQ(aw_lock_release(&d->lock), 0);
	return 0;
}

static int main_dump_rewait(void *arg)
{
	struct dump2_ctx *d = arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "cond-waiter" };
	EXPECT_EQ(aw_spawn_with(&t, cond_waiter, d, &o), 0);
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	EXPECT_EQ(aw_lock_acquire(&d->lock), 0);
	aw_cond_notify(&d->cond, 1);
	/* The waiter now waits, inside the same aw_cond_wait, to re-take the
	 * lock we hold; other tasks' waits ran in between. */
	EXPECT_EQ(aw_sleep(AW_MS(2)), 0);
	FILE *f = open_memstream(&d->buf, &d->len);
	aw_dump(f);
	fclose(f);
	EXPECT_EQ(aw_lock_release(&d->lock), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(dump_shows_a_tasks_own_wait_location_after_other_tasks_waited)
{
	struct dump2_ctx d;
	memset(&d, 0, sizeof d);
	aw_lock_init(&d.lock);
	aw_cond_init(&d.cond, &d.lock);
	CHECK_EQ(aw_run(main_dump_rewait, &d), 0);
	CHECK(d.buf != NULL);
	const char *line = strstr(d.buf, "'cond-waiter'");
	CHECK(line != NULL);
	const char *eol = strchr(line, '\n');
	CHECK(eol != NULL);
	char first[512];
	snprintf(first, sizeof first, "%.*s", (int)(eol - line), line);
	if (!has_loc(first, d.wait_line))
		aw_test_fail(__FILE__, __LINE__, "expected test_observe.c:%d in: %s", d.wait_line, first);
	CHECK(strstr(first, "(cond_waiter)") != NULL);
	free(d.buf);
}

AW_TEST(dump_outside_a_loop_says_so)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	CHECK(f != NULL);
	aw_dump(f);
	fclose(f);
	CHECK(strstr(buf, "no loop") != NULL);
	free(buf);
}

/* ---- the ledger ----------------------------------------------------------- */

struct ledger_ctx {
	aw_ledger_entry leaked, closed;
	aw_lock lock;
	int leaked_line, enter_line;
	size_t count_open, count_after;
	char *dump;
	size_t dump_len;
};

static int main_ledger(void *arg)
{
	struct ledger_ctx *c = arg;
	c->leaked_line = __LINE__; aw_ledger_open(&c->leaked, "widget", AW_HERE);
	aw_ledger_open(&c->closed, "gadget", AW_HERE);
	c->count_open = aw_ledger_count();
	aw_ledger_close(&c->closed);
	aw_ledger_close(&c->closed);   /* safe twice */
	c->count_after = aw_ledger_count();
	/* A manager entered by hand and never exited. */
	c->enter_line = __LINE__; EXPECT_EQ(aw_enter(aw_lock_mgr(&c->lock)), 0);
	FILE *f = open_memstream(&c->dump, &c->dump_len);
	aw_dump(f);
	fclose(f);
	return 0;
}

AW_TEST(ledger_entry_left_open_is_reported_at_shutdown_with_name_and_place)
{
	struct ledger_ctx c;
	memset(&c, 0, sizeof c);
	aw_lock_init(&c.lock);
	aw_config cfg;
	aw_config_default(&cfg);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	int rc = aw_run_config(&cfg, main_ledger, &c);
	capture_close(&cap);
	CHECK_EQ(rc, 0);
	CHECK_EQ(c.count_open, 2);
	CHECK_EQ(c.count_after, 1);
	CHECK(strstr(cap.buf, "leak: widget") != NULL);
	CHECK(has_loc(cap.buf, c.leaked_line));
	CHECK(strstr(cap.buf, "never closed") != NULL);
	CHECK(strstr(cap.buf, "gadget") == NULL);
	CHECK(strstr(cap.buf, "leak: lock") != NULL);
	CHECK(has_loc(cap.buf, c.enter_line));
	/* The live dump shows them too, as the task's manual entries. */
	CHECK(strstr(c.dump, "opened widget") != NULL);
	CHECK(strstr(c.dump, "opened lock") != NULL);
	free(cap.buf);
	free(c.dump);
}

AW_TEST(ledger_without_a_loop_records_nothing)
{
	aw_ledger_entry e;
	aw_ledger_open(&e, "orphan", AW_HERE);
	CHECK_EQ(aw_ledger_count(), 0);
	aw_ledger_close(&e);
}

/* ---- slow steps ------------------------------------------------------------ */

static int busy_task(void *arg)
{
	(void)arg;
	aw_time until = aw_now() + AW_MS(300);
	while (aw_now() < until)
		;   /* blocks the loop: no wait for 300 ms */
	return aw_sleep(AW_MS(1));
}

static int main_slow(void *arg)
{
	(void)arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "busy" };
	EXPECT_EQ(aw_spawn_with(&t, busy_task, NULL, &o), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	return 0;
}

AW_TEST(slow_step_is_reported_with_the_task_name)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = AW_MS(50);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	int rc = aw_run_config(&cfg, main_slow, NULL);
	capture_close(&cap);
	CHECK_EQ(rc, 0);
	CHECK(strstr(cap.buf, "slow step") != NULL);
	CHECK(strstr(cap.buf, "'busy'") != NULL);
	CHECK(strstr(cap.buf, "test_observe.c") != NULL);
	free(cap.buf);
}

/* ---- stack overflow ------------------------------------------------------- */

static int __attribute__((noinline)) recurse(int depth)
{
	volatile char buf[2048];
	memset((char *)buf, depth & 0x7f, sizeof buf);
	if (depth > 10000000)
		return buf[0];
	return recurse(depth + 1) + buf[depth % sizeof buf];
}

static int deep_task(void *arg)
{
	(void)arg;
	return recurse(0);
}

static int main_overflow(void *arg)
{
	(void)arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "deep" };
	if (aw_spawn_with(&t, deep_task, NULL, &o) != 0)
		return 1;
	return aw_task_join(t);
}

AW_TEST(stack_overflow_kills_with_sigsegv_naming_the_task)
{
	int fds[2];
	CHECK_EQ(pipe(fds), 0);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		dup2(fds[1], 2);
		close(fds[1]);
		if (aw_run(main_overflow, NULL) != 0)
			_exit(1);
		_exit(0);   /* not reached */
	}
	close(fds[1]);
	char out[8192];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fds[0], out + len, sizeof out - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof out - 1)
			break;
	}
	out[len] = 0;
	close(fds[0]);
	int status = 0;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	bool abnormal = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
	CHECK(abnormal);
	if (!TEST_ASAN) {
		CHECK(WIFSIGNALED(status));
		CHECK_EQ(WTERMSIG(status), SIGSEGV);
		CHECK(strstr(out, "stack overflow in task 'deep'") != NULL);
	} else {
		/* ASan's own SEGV report may come instead of (or after) ours. */
		CHECK(strstr(out, "stack overflow in task 'deep'") != NULL ||
		      strstr(out, "AddressSanitizer") != NULL);
	}
}

/* ---- the dump signal ------------------------------------------------------ */

static int main_signal(void *arg)
{
	(void)arg;
	EXPECT_EQ(raise(SIGUSR1), 0);
	for (int i = 0; i < 3; i++)
		EXPECT_EQ(aw_yield(), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	return 0;
}

AW_TEST(dump_signal_prints_the_dump_to_the_log)
{
	aw_config cfg;
	aw_config_default(&cfg);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	int rc = aw_run_config(&cfg, main_signal, NULL);
	capture_close(&cap);
	CHECK_EQ(rc, 0);
	CHECK(strstr(cap.buf, "live task(s)") != NULL);
	CHECK(strstr(cap.buf, "'main'") != NULL);
	free(cap.buf);
}

/* ---- aw_ledger_visit: the ledger as data ------------------------------------ */

/* What one walk saw: the holder task and the gauges of interest. */
struct seen {
	bool loop_called;
	aw_loop_gauges g;
	int holder_state_ok, holder_where_line, hold_line;
	aw_time holder_waiting, hold_age;
	char hold_what[32], hold_detail[64];
	int tasks, holds_of_holder, orphans;
	int slow_events;
	char slow_task[32];
	aw_time slow_duration;
	int gauge_sources;
	double gauge_value;
	bool order_ok;           /* task() came before each of its hold()s */
	uint64_t last_task;
};

static void seen_loop(void *ctx, const aw_loop_gauges *g)
{
	struct seen *s = ctx;
	s->loop_called = true;
	s->g = *g;
}

static void seen_task(void *ctx, const aw_task_info *t)
{
	struct seen *s = ctx;
	s->tasks++;
	s->last_task = t->id;
	if (!strcmp(t->name, "holder")) {
		s->holder_state_ok = !strcmp(t->state, "waiting");
		s->holder_where_line = t->where ? t->where->line : -1;
		s->holder_waiting = t->waiting;
	}
}

static void seen_hold(void *ctx, const aw_task_info *t, const aw_hold_info *h)
{
	struct seen *s = ctx;
	if (!t) {
		s->orphans++;
		return;
	}
	if (t->id != s->last_task)
		s->order_ok = false;
	if (!strcmp(t->name, "holder")) {
		if (!s->holds_of_holder++) {
			snprintf(s->hold_what, sizeof s->hold_what, "%s", h->what);
			snprintf(s->hold_detail, sizeof s->hold_detail, "%s", h->detail);
			s->hold_line = h->loc ? h->loc->line : -1;
			s->hold_age = h->age;
		}
	}
}

static void seen_event(void *ctx, const aw_loop_event *e)
{
	struct seen *s = ctx;
	if (e->kind == AW_LOOP_EVENT_SLOW_STEP) {
		s->slow_events++;
		snprintf(s->slow_task, sizeof s->slow_task, "%s", e->task);
		s->slow_duration = e->duration;
	}
}

static void seen_gauge(void *ctx, unsigned source, const char *source_name, const char *name, double value)
{
	struct seen *s = ctx;
	(void)source;
	if (!strcmp(source_name, "widgets") && !strcmp(name, "in_use")) {
		s->gauge_sources++;
		s->gauge_value = value;
	}
}

static void widgets_read(aw_gauge_source *g, void (*emit)(void *ctx, const char *name, double value), void *ctx)
{
	(void)g;
	emit(ctx, "in_use", 7);
}

struct visit_case { int with_line, wait_line; struct seen before, after; };

static int holder_task(void *arg)
{
	struct visit_case *vc = arg;
	aw_lock lk;
	aw_lock_init(&lk);
	vc->with_line = __LINE__ + 1;
	AW_WITH(aw_lock_mgr(&lk)) {
		vc->wait_line = __LINE__ + 1;
		int rc = aw_sleep(AW_MS(300));
		(void)rc;   /* cancelled by main at the end */
	}
	aw_error_clear();
	return 0;
}

static int main_visit(void *arg)
{
	struct visit_case *vc = arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "holder" };
	EXPECT_EQ(aw_spawn_with(&t, holder_task, vc, &o), 0);
	aw_gauge_source widgets = { .name = "widgets", .read = widgets_read };
	aw_gauge_source_add(&widgets);
	EXPECT_EQ(aw_sleep(AW_MS(40)), 0);
	aw_ledger_visitor v = { &vc->before, seen_loop, seen_task, seen_hold, seen_event, seen_gauge };
	vc->before.order_ok = true;
	EXPECT_EQ(aw_ledger_visit(&v), 0);
	aw_gauge_source_remove(&widgets);
	aw_gauge_source_remove(&widgets);   /* twice: harmless */
	aw_task_cancel(t);
	EXPECT_EQ(aw_task_join(t), 0);
	v.ctx = &vc->after;
	vc->after.order_ok = true;
	EXPECT_EQ(aw_ledger_visit(&v), 0);
	return 0;
}

AW_TEST(ledger_visit_shows_each_task_where_it_waits_since_when_and_what_it_holds)
{
	struct visit_case vc;
	memset(&vc, 0, sizeof vc);
	CHECK_EQ(aw_run(main_visit, &vc), 0);
	struct seen *b = &vc.before;
	CHECK(b->loop_called);
	CHECK_EQ(b->g.tasks, 2);          /* main (running) and holder (waiting) */
	CHECK_EQ(b->g.running, 1);
	CHECK_EQ(b->g.waiting, 1);
	CHECK_EQ(b->g.pid, (int)getpid());
	CHECK_EQ(b->tasks, 2);
	CHECK(b->order_ok);
	CHECK(b->holder_state_ok);
	CHECK_EQ(b->holder_where_line, vc.wait_line);
	CHECK_GE(b->holder_waiting, AW_MS(20));   /* parked ~40 ms before the walk */
	CHECK_LT(b->holder_waiting, AW_MS(5000));
	CHECK_EQ(b->holds_of_holder, 1);
	CHECK_STR(b->hold_what, "lock");
	CHECK_EQ(b->hold_line, vc.with_line);
	CHECK_GE(b->hold_age, b->holder_waiting);
	CHECK_EQ(b->gauge_sources, 1);
	CHECK(b->gauge_value == 7);
	/* After: the holder is gone, and so is its lock; the source too. */
	CHECK_EQ(vc.after.tasks, 1);
	CHECK_EQ(vc.after.holds_of_holder, 0);
	CHECK_EQ(vc.after.gauge_sources, 0);
}

static int main_slow_visit(void *arg)
{
	struct seen *s = arg;
	aw_task *t;
	aw_spawn_opts o = { .name = "busy" };
	EXPECT_EQ(aw_spawn_with(&t, busy_task, NULL, &o), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	aw_ledger_visitor v = { .ctx = s, .loop = seen_loop, .event = seen_event };
	EXPECT_EQ(aw_ledger_visit(&v), 0);
	return 0;
}

AW_TEST(ledger_visit_lists_the_recent_slow_steps)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = AW_MS(50);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	struct seen s;
	memset(&s, 0, sizeof s);
	int rc = aw_run_config(&cfg, main_slow_visit, &s);
	capture_close(&cap);
	free(cap.buf);
	CHECK_EQ(rc, 0);
	CHECK_EQ(s.slow_events, 1);
	CHECK_EQ(s.g.slow_steps, 1);
	CHECK_STR(s.slow_task, "busy");
	CHECK_GE(s.slow_duration, AW_MS(50));
}

/* Renamed in the middle of a slow step (what the http layer does when a
 * handler returns): the report names the step by the name it ran under. */
static int renamed_busy(void *arg)
{
	(void)arg;
	aw_task_set_name(aw_task_current(), "GET /busy");
	aw_time until = aw_now() + AW_MS(200);
	while (aw_now() < until)
		;
	aw_task_set_name(aw_task_current(), "http-conn");
	return aw_sleep(AW_MS(1));
}

static int main_renamed(void *arg)
{
	struct seen *s = arg;
	aw_task *t;
	EXPECT_EQ(aw_spawn(&t, renamed_busy, NULL, "conn"), 0);
	EXPECT_EQ(aw_task_join(t), 0);
	aw_ledger_visitor v = { .ctx = s, .event = seen_event };
	EXPECT_EQ(aw_ledger_visit(&v), 0);
	return 0;
}

AW_TEST(slow_step_keeps_the_name_the_task_ran_under)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = AW_MS(50);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	struct seen s;
	memset(&s, 0, sizeof s);
	int rc = aw_run_config(&cfg, main_renamed, &s);
	capture_close(&cap);
	CHECK_EQ(rc, 0);
	CHECK_STR(s.slow_task, "GET /busy");
	CHECK(strstr(cap.buf, "task 'GET /busy' ran") != NULL);
	free(cap.buf);
}

AW_TEST(ledger_visit_without_a_loop_is_esrch)
{
	aw_ledger_visitor v = { 0 };
	CHECK_EQ(aw_ledger_visit(&v), -ESRCH);
	aw_gauge_source g = { .name = "x", .read = widgets_read };
	aw_gauge_source_add(&g);   /* no loop: nothing happens */
	CHECK(!g.added);
	aw_gauge_source_remove(&g);
}

/* A deadlock (every task waits, nothing can wake them): the loop reports
 * it, cancels the tasks, and the report is in the walk's events. */
struct deadlock_seen { int waited, line; int deadlocks; char text[240]; };

static void deadlock_event(void *ctx, const aw_loop_event *e)
{
	struct deadlock_seen *s = ctx;
	if (e->kind == AW_LOOP_EVENT_DEADLOCK) {
		s->deadlocks++;
		snprintf(s->text, sizeof s->text, "%s", e->text);
	}
}

static int main_deadlock_visit(void *arg)
{
	struct deadlock_seen *s = arg;
	aw_event ev;
	aw_event_init(&ev);
	s->line = __LINE__ + 1;
	s->waited = aw_event_wait(&ev);   /* nobody sets it */
	aw_error_clear();
	aw_ledger_visitor v = { .ctx = s, .event = deadlock_event };
	EXPECT_EQ(aw_ledger_visit(&v), 0);
	return 0;
}

AW_TEST(ledger_visit_lists_a_deadlock_report)
{
	aw_config cfg;
	aw_config_default(&cfg);
	struct capture cap;
	CHECK(capture_open(&cap, &cfg));
	struct deadlock_seen s;
	memset(&s, 0, sizeof s);
	int rc = aw_run_config(&cfg, main_deadlock_visit, &s);
	capture_close(&cap);
	free(cap.buf);
	CHECK_EQ(rc, 0);
	CHECK_EQ(s.waited, -ECANCELED);
	CHECK_EQ(s.deadlocks, 1);
	CHECK(strstr(s.text, "deadlock: 1 task(s) wait") != NULL);
	CHECK(strstr(s.text, "'main' at ") != NULL);
	CHECK(has_loc(s.text, s.line));
}
