/* SPDX-License-Identifier: MIT */
/*
 * awith/metrics.h — counters, gauges and histograms for Prometheus.
 *
 * Part of the core layer (libc only: it knows nothing of HTTP). A process
 * has one registry of metric families; the library registers its own
 * (awith_tasks_alive, awith_loop_lag_seconds, process_cpu_seconds_total,
 * and, when used, the http, client and pg layers' families) and a program
 * adds its own with the same calls. aw_metrics_render writes them all in
 * Prometheus' text exposition format (version 0.0.4); the http layer
 * serves that at a route (aw_app_metrics in http.h), and any other server
 * can serve the same text.
 *
 *     static aw_metric *jobs, *job_seconds;
 *     aw_metric_counter_new(&jobs, "myapp_jobs_total", "Jobs done.", NULL);
 *     aw_metric_histogram_new(&job_seconds, "myapp_job_seconds", "Job time.", NULL, NULL, 0);
 *     ...
 *     aw_metric_counter_add(jobs, 1);                 // no lock, no atomic RMW
 *     aw_metric_observe(job_seconds, elapsed_s);
 *
 * The hot path costs no lock: every thread writes its own share of each
 * series (per-thread storage, so a loop's increments are plain loads and
 * stores on memory no other thread writes), and rendering sums the shares
 * under the registry's lock. A thread that ends folds its shares into the
 * process's total, so counters never go back. Creating families and
 * series takes the lock: do it once (at startup, or the first time a label
 * combination is seen) and keep the pointer.
 *
 * Labels: a family may have up to AW_METRIC_MAX_LABELS label names; each
 * combination of values is a series, got with aw_metric_with and kept.
 * Label values are any bytes (rendered with \\, \" and \n escaped); keep
 * their number bounded (route templates, not raw paths).
 *
 * Thread safety: every function here may be called from any thread.
 */
#ifndef AWITH_METRICS_H
#define AWITH_METRICS_H

#include "awith/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* A family of series, or one series of it (opaque; lives as long as the
 * process). */
typedef struct aw_metric aw_metric;

/* Limits: label names per family, bucket bounds per histogram. */
#define AW_METRIC_MAX_LABELS 8
#define AW_METRIC_MAX_BUCKETS 64

/* Make (or find) a family. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*,
 * `help` is one line of text (may be NULL), `labels` is NULL (no labels)
 * or a NULL-terminated array of label names ([a-zA-Z_][a-zA-Z0-9_]*, not
 * starting with "__"; a histogram may not use "le"); the strings are
 * copied. Registering a name again with the same type, labels (and
 * buckets) returns the family already there (0), so layers and programs
 * may each ask for it; a different shape is -EEXIST. Bad names are
 * -EINVAL, too many families or series -ENOSPC, -ENOMEM. Raised.
 *
 * For a family with labels, *out is the family itself: adds and observes
 * on it do nothing; take a series with aw_metric_with. For a family
 * without labels, *out is its one series. */
int aw_metric_counter_new(aw_metric **out, const char *name, const char *help, const char *const *labels) AW_MUST_USE;
int aw_metric_gauge_new(aw_metric **out, const char *name, const char *help, const char *const *labels) AW_MUST_USE;
/* Histogram with fixed buckets: `bounds` are the upper bounds (le),
 * finite and strictly increasing, at most AW_METRIC_MAX_BUCKETS; the +Inf
 * bucket is implicit. bounds NULL (nbounds 0): AW_METRIC_SECONDS_BUCKETS,
 * for durations in seconds (.0005 s to 10 s). */
int aw_metric_histogram_new(aw_metric **out, const char *name, const char *help, const char *const *labels,
			    const double *bounds, size_t nbounds) AW_MUST_USE;

/* A gauge or counter whose value is computed when the metrics are
 * rendered: fn(arg) is called on the rendering thread, under the
 * registry's lock (it must not create metrics). For values that already
 * exist elsewhere (the process's RSS, a queue's length). A counter's fn
 * must never go down. No labels. */
int aw_metric_gauge_fn_new(aw_metric **out, const char *name, const char *help, double (*fn)(void *arg),
			   void *arg) AW_MUST_USE;
int aw_metric_counter_fn_new(aw_metric **out, const char *name, const char *help, double (*fn)(void *arg),
			     void *arg) AW_MUST_USE;

/* The series of labelled family m for `values` (one per label name, in
 * order; copied), made on first use; the same pointer every time after.
 * For a family without labels (values NULL) m itself. -EINVAL for a NULL
 * value or a series of an unlabelled family, -ENOSPC, -ENOMEM. Takes the
 * registry lock: keep the result. */
int aw_metric_with(aw_metric *m, aw_metric **out, const char *const *values) AW_MUST_USE;

/* The hot path: no lock, no atomic read-modify-write. Each call changes
 * the calling thread's share. A NULL m (a metric that could not be made)
 * or a call of the wrong kind does nothing. */
void aw_metric_counter_add(aw_metric *m, uint64_t n);
/* A gauge's value is the sum of every thread's share: add changes the
 * calling thread's share, set replaces it. From one thread (one loop)
 * that is the plain "add" and "set"; a gauge moved up on one thread and
 * down on another (a queue's producer and consumer) sums right. */
void aw_metric_gauge_add(aw_metric *m, double delta);
void aw_metric_gauge_set(aw_metric *m, double value);
/* Count v in the first bucket whose bound is >= v (and in _sum/_count). */
void aw_metric_observe(aw_metric *m, double v);

/* The current value (sum over threads) of a counter or gauge series, or a
 * histogram series' count; 0 for a labelled family or NULL. For tests and
 * for programs that read their own metrics. */
double aw_metric_value(const aw_metric *m);
/* A histogram series' sum of observed values (0 otherwise). */
double aw_metric_sum(const aw_metric *m);

/* Render every family, in the order they were made (series in the order
 * their label values were first used), in the text exposition format
 * (Content-Type AW_METRICS_CONTENT_TYPE): "# HELP" and "# TYPE" lines,
 * then one line per series (histograms: cumulative _bucket lines ending
 * with le="+Inf", then _sum and _count). Families with labels and no
 * series yet are left out. *out is malloc'd and NUL-terminated (free it),
 * *len its length. `extra` (NULL: none) is a label added to every line:
 * "name=\"value\"" text already escaped, e.g. worker="2". 0 or -ENOMEM
 * (raised). */
int aw_metrics_render(char **out, size_t *len, const char *extra) AW_MUST_USE;
#define AW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The default buckets for durations in seconds. */
#define AW_METRIC_SECONDS_BUCKETS \
	{ 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* AWITH_METRICS_H */
