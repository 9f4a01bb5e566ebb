/* SPDX-License-Identifier: MIT */
/* Tests: the metrics registry and the text exposition format
 * (src/core/metrics.c, awith/metrics.h). Each test runs in its own forked
 * process, so each starts with a registry holding only what the core
 * registers; a family's block is found in the rendered text by its HELP
 * line and compared exactly. */
#include "harness.h"

#include "awith/core.h"
#include "awith/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Test buffers stay reachable (freed when their slot is reused), so a
 * CHECK that returns early leaks nothing under LSan, also when an injected
 * allocation failure (scripts/fault_alloc.sh) changes a value. */
static char *kept[16];
static unsigned nkept;
static char *keep(char *p)
{
	unsigned i = nkept++ % 16;
	free(kept[i]);
	kept[i] = p;
	return p;
}

/* The rendered text of one family: from its "# HELP name " line to the
 * next "# HELP" (or the end). A fresh malloc'd string, NULL if absent. */
static char *family_block(const char *name)
{
	char *all;
	size_t len;
	if (aw_metrics_render(&all, &len, NULL) < 0)
		return NULL;
	char head[256];
	snprintf(head, sizeof head, "# HELP %s ", name);
	char *p = strstr(all, head);
	char *res = NULL;
	if (p) {
		char *end = strstr(p + 1, "# HELP ");
		size_t n = end ? (size_t)(end - p) : strlen(p);
		res = strndup(p, n);
	}
	free(all);
	return keep(res);
}

AW_TEST(counter_renders_help_type_and_its_value)
{
	aw_metric *c;
	CHECK_EQ(aw_metric_counter_new(&c, "test_jobs_total", "Jobs done.", NULL), 0);
	aw_metric_counter_add(c, 3);
	aw_metric_counter_add(c, 4);
	char *b = family_block("test_jobs_total");
	CHECK(b);
	CHECK_STR(b, "# HELP test_jobs_total Jobs done.\n"
		     "# TYPE test_jobs_total counter\n"
		     "test_jobs_total 7\n");
	CHECK(aw_metric_value(c) == 7);
}

AW_TEST(labelled_series_render_in_first_use_order_with_escaped_values)
{
	aw_metric *fam, *a, *b, *again;
	static const char *const labels[] = { "route", "status", NULL };
	CHECK_EQ(aw_metric_counter_new(&fam, "test_requests_total", "Requests\\served\nby route.", labels), 0);
	CHECK_EQ(aw_metric_with(fam, &a, (const char *const[]){ "/users/{id}", "200" }), 0);
	CHECK_EQ(aw_metric_with(fam, &b, (const char *const[]){ "a \"quoted\" \\ back\nslash", "500" }), 0);
	CHECK_EQ(aw_metric_with(fam, &again, (const char *const[]){ "/users/{id}", "200" }), 0);
	CHECK(again == a);
	aw_metric_counter_add(a, 2);
	aw_metric_counter_add(b, 1);
	aw_metric_counter_add(fam, 100);   /* the family itself: nothing */
	char *t = family_block("test_requests_total");
	CHECK(t);
	CHECK_STR(t, "# HELP test_requests_total Requests\\\\served\\nby route.\n"
		     "# TYPE test_requests_total counter\n"
		     "test_requests_total{route=\"/users/{id}\",status=\"200\"} 2\n"
		     "test_requests_total{route=\"a \\\"quoted\\\" \\\\ back\\nslash\",status=\"500\"} 1\n");
}

AW_TEST(labelled_family_without_series_is_left_out)
{
	aw_metric *fam;
	static const char *const labels[] = { "x", NULL };
	CHECK_EQ(aw_metric_gauge_new(&fam, "test_unused", "Never used.", labels), 0);
	char *t = family_block("test_unused");
	CHECK(t == NULL);
}

AW_TEST(histogram_buckets_are_cumulative_and_end_with_inf_sum_and_count)
{
	aw_metric *h;
	static const double bounds[] = { 0.1, 0.5, 2.5 };
	CHECK_EQ(aw_metric_histogram_new(&h, "test_latency_seconds", "Latency.", NULL, bounds, 3), 0);
	aw_metric_observe(h, 0.05);
	aw_metric_observe(h, 0.1);    /* le is inclusive */
	aw_metric_observe(h, 0.3);
	aw_metric_observe(h, 3);      /* only +Inf */
	aw_metric_observe(h, 100);
	char *t = family_block("test_latency_seconds");
	CHECK(t);
	CHECK_STR(t, "# HELP test_latency_seconds Latency.\n"
		     "# TYPE test_latency_seconds histogram\n"
		     "test_latency_seconds_bucket{le=\"0.1\"} 2\n"
		     "test_latency_seconds_bucket{le=\"0.5\"} 3\n"
		     "test_latency_seconds_bucket{le=\"2.5\"} 3\n"
		     "test_latency_seconds_bucket{le=\"+Inf\"} 5\n"
		     "test_latency_seconds_sum 103.45\n"
		     "test_latency_seconds_count 5\n");
	CHECK(aw_metric_value(h) == 5);
	CHECK(fabs(aw_metric_sum(h) - 103.45) < 1e-9);
}

AW_TEST(histogram_bounds_are_inclusive_at_every_bucket_and_nan_goes_to_inf)
{
	aw_metric *h;
	static const double bounds[] = { 1, 2, 3, 4, 5 };
	CHECK_EQ(aw_metric_histogram_new(&h, "test_edges", "E.", NULL, bounds, 5), 0);
	for (int v = 0; v <= 6; v++)
		aw_metric_observe(h, v);
	aw_metric_observe(h, -1e300);
	aw_metric_observe(h, NAN);
	char *t = family_block("test_edges");
	CHECK(t);
	CHECK_STR(t, "# HELP test_edges E.\n"
		     "# TYPE test_edges histogram\n"
		     "test_edges_bucket{le=\"1\"} 3\n"
		     "test_edges_bucket{le=\"2\"} 4\n"
		     "test_edges_bucket{le=\"3\"} 5\n"
		     "test_edges_bucket{le=\"4\"} 6\n"
		     "test_edges_bucket{le=\"5\"} 7\n"
		     "test_edges_bucket{le=\"+Inf\"} 9\n"
		     "test_edges_sum -1e+300\n"
		     "test_edges_count 9\n");
}

AW_TEST(histogram_with_labels_puts_le_last)
{
	aw_metric *fam, *s;
	static const double bounds[] = { 1 };
	static const char *const labels[] = { "route", NULL };
	CHECK_EQ(aw_metric_histogram_new(&fam, "test_h", "H.", labels, bounds, 1), 0);
	CHECK_EQ(aw_metric_with(fam, &s, (const char *const[]){ "/" }), 0);
	aw_metric_observe(s, 0.5);
	char *t = family_block("test_h");
	CHECK(t);
	CHECK_STR(t, "# HELP test_h H.\n"
		     "# TYPE test_h histogram\n"
		     "test_h_bucket{route=\"/\",le=\"1\"} 1\n"
		     "test_h_bucket{route=\"/\",le=\"+Inf\"} 1\n"
		     "test_h_sum{route=\"/\"} 0.5\n"
		     "test_h_count{route=\"/\"} 1\n");
}

AW_TEST(default_histogram_buckets_are_the_seconds_buckets)
{
	aw_metric *h;
	CHECK_EQ(aw_metric_histogram_new(&h, "test_default_seconds", "D.", NULL, NULL, 0), 0);
	aw_metric_observe(h, 0.0007);
	char *t = family_block("test_default_seconds");
	CHECK(t);
	CHECK(strstr(t, "test_default_seconds_bucket{le=\"0.0005\"} 0\n"));
	CHECK(strstr(t, "test_default_seconds_bucket{le=\"0.001\"} 1\n"));
	CHECK(strstr(t, "test_default_seconds_bucket{le=\"10\"} 1\n"));
	CHECK(strstr(t, "test_default_seconds_bucket{le=\"+Inf\"} 1\n"));
}

AW_TEST(gauge_set_add_and_special_values)
{
	aw_metric *g;
	CHECK_EQ(aw_metric_gauge_new(&g, "test_temp", "T.", NULL), 0);
	aw_metric_gauge_set(g, 2.5);
	aw_metric_gauge_add(g, -1);
	char *t = family_block("test_temp");
	CHECK(t);
	CHECK_STR(t, "# HELP test_temp T.\n# TYPE test_temp gauge\ntest_temp 1.5\n");
	aw_metric_gauge_set(g, INFINITY);
	t = family_block("test_temp");
	CHECK(t && strstr(t, "test_temp +Inf\n"));
	aw_metric_gauge_set(g, -INFINITY);
	t = family_block("test_temp");
	CHECK(t && strstr(t, "test_temp -Inf\n"));
	aw_metric_gauge_set(g, NAN);
	t = family_block("test_temp");
	CHECK(t && strstr(t, "test_temp NaN\n"));
	aw_metric_gauge_set(g, 0.1);
	t = family_block("test_temp");
	CHECK(t && strstr(t, "test_temp 0.1\n"));   /* shortest form that reads back */
}

AW_TEST(extra_label_goes_on_every_line)
{
	aw_metric *c, *fam, *s;
	static const char *const labels[] = { "k", NULL };
	CHECK_EQ(aw_metric_counter_new(&c, "test_x_total", "X.", NULL), 0);
	CHECK_EQ(aw_metric_counter_new(&fam, "test_y_total", "Y.", labels), 0);
	CHECK_EQ(aw_metric_with(fam, &s, (const char *const[]){ "v" }), 0);
	aw_metric_counter_add(c, 1);
	char *all;
	size_t len;
	CHECK_EQ(aw_metrics_render(&all, &len, "worker=\"3\""), 0);
	keep(all);
	CHECK(strlen(all) == len);
	CHECK(strstr(all, "\ntest_x_total{worker=\"3\"} 1\n"));
	CHECK(strstr(all, "\ntest_y_total{k=\"v\",worker=\"3\"} 0\n"));
}

static double forty_two(void *arg)
{
	(void)arg;
	return 42;
}

AW_TEST(function_gauge_is_called_at_render)
{
	aw_metric *g;
	CHECK_EQ(aw_metric_gauge_fn_new(&g, "test_answer", "A.", forty_two, NULL), 0);
	char *t = family_block("test_answer");
	CHECK(t);
	CHECK_STR(t, "# HELP test_answer A.\n# TYPE test_answer gauge\ntest_answer 42\n");
	CHECK(aw_metric_value(g) == 42);
}

AW_TEST(registering_the_same_family_twice_returns_it_and_another_shape_is_eexist)
{
	aw_metric *a, *b, *c;
	CHECK_EQ(aw_metric_counter_new(&a, "test_same_total", "S.", NULL), 0);
	CHECK_EQ(aw_metric_counter_new(&b, "test_same_total", "S.", NULL), 0);
	CHECK(a == b);
	CHECK_EQ(aw_metric_gauge_new(&c, "test_same_total", "S.", NULL), -EEXIST);
	CHECK(c == NULL);
	aw_error_clear();
	static const char *const labels[] = { "x", NULL };
	CHECK_EQ(aw_metric_counter_new(&c, "test_same_total", "S.", labels), -EEXIST);
	aw_error_clear();
}

AW_TEST(bad_names_labels_and_buckets_are_einval)
{
	aw_metric *m;
	CHECK_EQ(aw_metric_counter_new(&m, "9lives", "", NULL), -EINVAL);
	CHECK_EQ(aw_metric_counter_new(&m, "has-dash", "", NULL), -EINVAL);
	CHECK_EQ(aw_metric_counter_new(&m, "", "", NULL), -EINVAL);
	CHECK_EQ(aw_metric_counter_new(&m, "ok_name", "", (const char *const[]){ "__reserved", NULL }), -EINVAL);
	CHECK_EQ(aw_metric_counter_new(&m, "ok_name", "", (const char *const[]){ "a:b", NULL }), -EINVAL);
	CHECK_EQ(aw_metric_histogram_new(&m, "ok_h", "", (const char *const[]){ "le", NULL }, NULL, 0), -EINVAL);
	CHECK_EQ(aw_metric_histogram_new(&m, "ok_h", "", NULL, (const double[]){ 1, 1 }, 2), -EINVAL);
	CHECK_EQ(aw_metric_histogram_new(&m, "ok_h", "", NULL, (const double[]){ 2, 1 }, 2), -EINVAL);
	CHECK_EQ(aw_metric_histogram_new(&m, "ok_h", "", NULL, (const double[]){ 1, INFINITY }, 2), -EINVAL);
	aw_metric *fam, *s;
	CHECK_EQ(aw_metric_counter_new(&fam, "ok_l_total", "", (const char *const[]){ "a", "b", NULL }), 0);
	CHECK_EQ(aw_metric_with(fam, &s, (const char *const[]){ "x", NULL }), -EINVAL);
	CHECK_EQ(aw_metric_with(fam, &s, NULL), -EINVAL);
	aw_error_clear();
	/* NULL metrics do nothing. */
	aw_metric_counter_add(NULL, 1);
	aw_metric_observe(NULL, 1);
	aw_metric_gauge_set(NULL, 1);
	CHECK(aw_metric_value(NULL) == 0);
}

/* ---- threads: per-thread shares summed, kept when a thread ends ---------------- */

static aw_metric *thr_counter, *thr_gauge;

static void *count_a_lot(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100000; i++)
		aw_metric_counter_add(thr_counter, 1);
	aw_metric_gauge_add(thr_gauge, -1);   /* the consumer side */
	return NULL;
}

AW_TEST(threads_count_into_their_own_shares_and_the_sum_survives_them)
{
	CHECK_EQ(aw_metric_counter_new(&thr_counter, "test_thr_total", "T.", NULL), 0);
	CHECK_EQ(aw_metric_gauge_new(&thr_gauge, "test_thr_queue", "Q.", NULL), 0);
	aw_metric_gauge_add(thr_gauge, 4);   /* produced here, consumed there */
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, count_a_lot, NULL), 0);
	/* Render while they count: no crash, a value in range. */
	double mid = aw_metric_value(thr_counter);
	CHECK(mid >= 0 && mid <= 400000);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK(aw_metric_value(thr_counter) == 400000);
	CHECK(aw_metric_value(thr_gauge) == 0);
	char *b = family_block("test_thr_total");
	CHECK(b && strstr(b, "test_thr_total 400000\n"));
}

/* ---- the core's own series --------------------------------------------------------- */

static int sleeper(void *arg)
{
	(void)arg;
	return aw_sleep(AW_MS(50));
}

static int core_main(void *arg)
{
	char **text = arg;
	aw_task *t[3];
	for (int i = 0; i < 3; i++)
		if (aw_spawn(&t[i], sleeper, NULL, "sleeper"))
			return -1;
	if (aw_sleep(AW_MS(10)))
		return -1;
	size_t len;
	if (aw_metrics_render(text, &len, NULL))
		return -1;
	for (int i = 0; i < 3; i++)
		if (aw_task_join(t[i]) < 0)
			return -1;
	return 0;
}

static double series_value(const char *text, const char *series)
{
	char key[200];
	snprintf(key, sizeof key, "\n%s ", series);
	const char *p = strstr(text, key);
	return p ? strtod(p + strlen(key), NULL) : -1;
}

AW_TEST(core_series_show_tasks_alive_parked_loop_lag_and_the_process)
{
	char *text = NULL;
	int rc = aw_run(core_main, &text);
	keep(text);
	CHECK_EQ(rc, 0);
	CHECK(text);
	/* main + 3 sleepers alive; the 3 sleepers parked (main is running
	 * the render, the gauges were published before its sleep ended). */
	CHECK(series_value(text, "awith_tasks_alive") == 4);
	CHECK(series_value(text, "awith_tasks_parked") == 3);
	CHECK(series_value(text, "awith_loops_running") == 1);
	/* main's 10 ms sleep fired: one timer counted in the lag histogram. */
	CHECK(series_value(text, "awith_loop_lag_seconds_count") >= 1);
	CHECK(strstr(text, "# TYPE awith_loop_lag_seconds histogram\n"));
	CHECK(series_value(text, "process_resident_memory_bytes") > 1e5);
	CHECK(series_value(text, "process_open_fds") >= 3);
	CHECK(series_value(text, "process_cpu_seconds_total") >= 0);
	CHECK(series_value(text, "process_start_time_seconds") > 1.5e9);
	CHECK(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
	/* After the loop: nothing alive. */
	char *after;
	size_t len;
	CHECK_EQ(aw_metrics_render(&after, &len, NULL), 0);
	keep(after);
	CHECK(series_value(after, "awith_tasks_alive") == 0);
	CHECK(series_value(after, "awith_loops_running") == 0);
	CHECK(series_value(after, "awith_loop_lag_seconds_count") >= 4);
}

static int blocker(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 50 * 1000000 };
	nanosleep(&ts, NULL);
	return 0;
}

static int job_task(void *arg)
{
	(void)arg;
	return aw_to_thread(blocker, NULL);
}

static int queue_main(void *arg)
{
	char **text = arg;
	aw_task *t[3];
	for (int i = 0; i < 3; i++)
		if (aw_spawn(&t[i], job_task, NULL, "job"))
			return -1;
	if (aw_sleep(AW_MS(20)))
		return -1;
	size_t len;
	if (aw_metrics_render(text, &len, NULL))
		return -1;
	for (int i = 0; i < 3; i++)
		if (aw_task_join(t[i]) < 0)
			return -1;
	return 0;
}

AW_TEST(threadpool_queue_depth_counts_jobs_waiting_for_a_thread)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 1;
	char *text = NULL;
	int rc = aw_run_config(&cfg, queue_main, &text);
	keep(text);
	CHECK_EQ(rc, 0);
	CHECK(text);
	CHECK(series_value(text, "awith_threadpool_queue_depth") == 2);
	CHECK(series_value(text, "awith_threadpool_busy_threads") == 1);
	char *after;
	size_t len;
	CHECK_EQ(aw_metrics_render(&after, &len, NULL), 0);
	keep(after);
	CHECK(series_value(after, "awith_threadpool_queue_depth") == 0);
	CHECK(series_value(after, "awith_threadpool_busy_threads") == 0);
}

static int slow_main(void *arg)
{
	(void)arg;
	aw_time end = aw_now() + AW_MS(120);
	while (aw_now() < end)
		;   /* runs without waiting */
	return aw_sleep(AW_MS(1));   /* the report comes at this wait */
}

AW_TEST(slow_steps_are_counted)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.slow_step = AW_MS(30);
	cfg.log = fopen("/dev/null", "w");
	CHECK(cfg.log);
	CHECK_EQ(aw_run_config(&cfg, slow_main, NULL), 0);
	fclose(cfg.log);
	char *text;
	size_t len;
	CHECK_EQ(aw_metrics_render(&text, &len, NULL), 0);
	keep(text);
	CHECK(series_value(text, "awith_slow_steps_total") >= 1);
}
