/* SPDX-License-Identifier: MIT */
/*
 * The /metrics endpoint (aw_app_metrics): the http layer's series and the
 * route that serves the whole registry (awith/metrics.h) in Prometheus'
 * text format.
 *
 * Series, counted only when the app has metrics on:
 *   awith_http_requests_total{route,method,status}   counter
 *   awith_http_request_duration_seconds{route}       histogram
 *   awith_http_requests_in_flight                    gauge
 *   awith_http_connections                           gauge (open)
 * `route` is the matched template ("/users/{id}"), or "(unmatched)" for a
 * 404, a 405 and a request rejected before routing (400, 413, 431 ...);
 * `method` is the parser's name for it ("(unknown)" when the request line
 * did not parse). Their number is bounded by the app's routes, the
 * methods llhttp knows and the status codes.
 *
 * The hot path per request: one clock read (the start is the loop's time
 * of the step), two gauge adds, a counter
 * add and a histogram observe on this thread's shard, plus a lookup in
 * the route's cache of (method, status) pairs (atomic loads, no lock).
 * The registry's lock is taken only the first time a pair is seen.
 *
 * Workers (aw_app_run with workers > 1): a scrape through the shared port
 * lands on one worker, chosen by the kernel. So each worker also listens
 * on a private Unix socket (in a 0700 directory the supervisor made, one
 * socket per worker index), and the worker that gets the scrape asks the
 * others for their text over it and answers with every worker's series,
 * each line labelled worker="N", under one HELP/TYPE header per family.
 * Per-worker series (not a sum) because a worker that restarts starts its
 * counters at 0 again: Prometheus handles that as a counter reset of that
 * worker's series (rate() stays right), where a sum that suddenly drops
 * would read as a reset of everything. sum() in PromQL gives the service's
 * totals. A worker that does not answer within a second (restarting) is
 * left out of that scrape.
 */
#include "internal.h"
#include "awith/metrics.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct aw_http_metrics {
	char *path;
	aw_metric *requests;       /* family {route,method,status} */
	aw_metric *duration;       /* family {route} */
	aw_metric *in_flight, *connections;
	aw_http_mcache unmatched;
	char *peer_dir;            /* workers: the private socket directory */
};

#define UNMATCHED "(unmatched)"
#define PEER_TIMEOUT AW_SEC(1)
#define PEER_MAX (64u << 20)

/* ---- counting ------------------------------------------------------------------- */

static aw_metric *mcache_duration(aw_http_metrics *m, aw_http_mcache *mc, const char *route)
{
	aw_metric *s = atomic_load_explicit(&mc->duration, memory_order_acquire);
	if (AW_LIKELY(s != NULL))
		return s;
	if (aw_metric_with(m->duration, &s, (const char *const[]){ route, NULL }) < 0) {
		aw_error_clear();
		return NULL;
	}
	atomic_store_explicit(&mc->duration, s, memory_order_release);
	return s;
}

static const char *method_name(const aw_http_request *r, int method)
{
	if (method == 0xff)
		return "(unknown)";
	(void)r;
	return llhttp_method_name((llhttp_method_t)method);
}

static aw_metric *mcache_requests(aw_http_metrics *m, aw_http_mcache *mc, const char *route,
				  const aw_http_request *r, int method, int status)
{
	uint32_t key = (uint32_t)method << 16 | (uint32_t)status;
	unsigned h = (key * 2654435761u) >> 28;   /* 16 slots */
	for (unsigned i = 0; i < AW_HTTP_MCACHE; i++) {
		_Atomic(aw_http_mkey *) *slot = &mc->by_status[(h + i) % AW_HTTP_MCACHE];
		aw_http_mkey *k = atomic_load_explicit(slot, memory_order_acquire);
		if (AW_LIKELY(k != NULL)) {
			if (k->key == key)
				return k->requests;
			continue;
		}
		/* Not cached: find the series (lock), then try to publish it. */
		char st[8];
		snprintf(st, sizeof st, "%d", status);
		aw_metric *s;
		if (aw_metric_with(m->requests, &s, (const char *const[]){ route, method_name(r, method), st, NULL }) < 0) {
			aw_error_clear();
			return NULL;
		}
		aw_http_mkey *nk = aw__malloc(sizeof *nk);
		if (!nk)
			return s;
		*nk = (aw_http_mkey){ key, s };
		aw_http_mkey *expected = NULL;
		if (atomic_compare_exchange_strong_explicit(slot, &expected, nk, memory_order_acq_rel,
							    memory_order_acquire))
			return s;
		free(nk);   /* another loop filled the slot first */
		if (expected->key == key)
			return expected->requests;
	}
	/* More pairs than the cache holds: the registry's lookup each time. */
	char st[8];
	snprintf(st, sizeof st, "%d", status);
	aw_metric *s;
	if (aw_metric_with(m->requests, &s, (const char *const[]){ route, method_name(r, method), st, NULL }) < 0) {
		aw_error_clear();
		return NULL;
	}
	return s;
}

void aw__http_metrics_request_done(aw_http_conn *c)
{
	aw_http_metrics *m = c->app->metrics;
	if (!m)
		return;
	aw_http_request *r = &c->req;
	int status = c->res.status;
	if (status < 100 || status > 999)
		return;
	const aw_route *rt = r->route;
	aw_http_mcache *mc = rt ? (aw_http_mcache *)&rt->mcache : &m->unmatched;
	const char *route = rt ? rt->path : UNMATCHED;
	int method = r->method_len ? r->method : 0xff;
	aw_metric_counter_add(mcache_requests(m, mc, route, r, method, status), 1);
	if (r->started) {
		aw_metric *d = mcache_duration(m, mc, route);
		aw_metric_observe(d, (double)(aw_now() - r->started) / 1e9);
	}
}

void aw__http_metrics_in_flight(aw_app *app, int delta)
{
	if (app->metrics)
		aw_metric_gauge_add(app->metrics->in_flight, delta);
}

void aw__http_metrics_connections(aw_app *app, int delta)
{
	if (app->metrics)
		aw_metric_gauge_add(app->metrics->connections, delta);
}

/* ---- the endpoint --------------------------------------------------------------------- */

/* Append `text` to `out`, one family at a time: a family seen before (its
 * "# HELP name" line) gets the new lines after its own, so every family
 * stays one block with one header, as the format wants. Both texts come
 * from aw_metrics_render in processes of the same program. */
typedef struct fam_block {
	char *name;                /* "# HELP name " key */
	aw_buf lines;              /* its text, header included */
} fam_block;

typedef struct merged {
	fam_block *v;
	size_t n, cap;
	bool oom;
} merged;

static fam_block *merged_find(merged *mg, const char *key, size_t klen)
{
	for (size_t i = 0; i < mg->n; i++)
		if (strlen(mg->v[i].name) == klen && memcmp(mg->v[i].name, key, klen) == 0)
			return &mg->v[i];
	if (mg->n == mg->cap) {
		size_t cap = mg->cap ? mg->cap * 2 : 64;
		fam_block *v = aw__realloc(mg->v, cap * sizeof *v);
		if (!v)
			return NULL;
		mg->v = v;
		mg->cap = cap;
	}
	fam_block *b = &mg->v[mg->n];
	*b = (fam_block){ aw__strndup(key, klen), { 0 } };
	if (!b->name)
		return NULL;
	mg->n++;
	return b;
}

static void merged_add(merged *mg, const char *text, size_t len)
{
	const char *p = text, *end = text + len;
	fam_block *cur = NULL;
	bool header_known = false;
	while (p < end && !mg->oom) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl + 1 : end;
		if (eol - p > 7 && memcmp(p, "# HELP ", 7) == 0) {
			const char *n = p + 7, *sp = memchr(n, ' ', (size_t)(eol - n));
			size_t klen = sp ? (size_t)(sp - n) : (size_t)(eol - n);
			size_t before = mg->n;
			cur = merged_find(mg, n, klen);
			if (!cur) {
				mg->oom = true;
				break;
			}
			header_known = mg->n == before;
			if (header_known) {
				p = eol;
				continue;   /* this family's header is there already */
			}
		} else if (header_known && eol - p > 7 && memcmp(p, "# TYPE ", 7) == 0) {
			p = eol;
			continue;
		}
		if (cur && aw__buf_put(&cur->lines, p, (size_t)(eol - p)))
			mg->oom = true;
		p = eol;
	}
}

static void merged_free(merged *mg)
{
	for (size_t i = 0; i < mg->n; i++) {
		free(mg->v[i].name);
		aw__buf_free(&mg->v[i].lines);
	}
	free(mg->v);
}

static void peer_path(const aw_http_metrics *m, int worker, char *buf, size_t len)
{
	snprintf(buf, len, "%s/w%d.sock", m->peer_dir, worker);
}

/* Another worker's text, or -1 (it is left out of this scrape). */
static int peer_fetch(const aw_http_metrics *m, int worker, char **out, size_t *len)
{
	char path[256];
	peer_path(m, worker, path, sizeof path);
	aw_time dl = aw_deadline_after(PEER_TIMEOUT);
	aw_stream *s;
	if (aw_unix_connect(&s, path, dl) < 0) {
		aw_error_clear();
		return -1;
	}
	int rc = aw_stream_read_all(s, PEER_MAX, out, len, dl);
	if (aw_stream_close(s, dl) < 0 && !rc)
		rc = -1;
	if (rc < 0) {
		aw_error_clear();
		if (*out)
			free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

static int serve_metrics(aw_http_request *req, aw_http_response *res, void *ud)
{
	(void)ud;
	aw_app *app = aw_http_app(req);
	aw_http_metrics *m = app->metrics;
	char extra[32] = "";
	if (app->worker >= 0 && app->nworkers > 1)
		snprintf(extra, sizeof extra, "worker=\"%d\"", app->worker);
	char *text;
	size_t len;
	int rc = aw_metrics_render(&text, &len, extra);
	if (rc)
		return rc;
	if (!m || !m->peer_dir || app->nworkers <= 1 || app->worker < 0) {
		rc = aw_http_send(res, 200, AW_METRICS_CONTENT_TYPE, text, len);
		free(text);
		return rc;
	}
	merged mg = { 0 };
	merged_add(&mg, text, len);
	free(text);
	for (int w = 0; w < app->nworkers && !mg.oom; w++) {
		if (w == app->worker)
			continue;
		char *t = NULL;
		size_t n = 0;
		if (peer_fetch(m, w, &t, &n) == 0) {
			merged_add(&mg, t, n);
			free(t);
		}
	}
	aw_buf all = { 0 };
	for (size_t i = 0; i < mg.n && !mg.oom; i++)
		if (aw__buf_put(&all, mg.v[i].lines.p ? mg.v[i].lines.p : "", mg.v[i].lines.len))
			mg.oom = true;
	bool oom = mg.oom;
	merged_free(&mg);
	if (oom) {
		aw__buf_free(&all);
		return aw_raise(-ENOMEM, "metrics: out of memory");
	}
	rc = aw_http_send(res, 200, AW_METRICS_CONTENT_TYPE, all.p ? all.p : "", all.len);
	aw__buf_free(&all);
	return rc;
}

/* ---- workers: the private socket ------------------------------------------------------ */

/* One worker's side: answer each connection on its private socket with
 * its own text (labelled worker="N"). Runs in the app's serving group,
 * cancelled when serving ends. Connections are served one at a time: a
 * render is quick, and only scrapes come here. */
static int peer_listener(void *arg)
{
	aw_app *app = arg;
	aw_http_metrics *m = app->metrics;
	char path[256], extra[32];
	peer_path(m, app->worker, path, sizeof path);
	snprintf(extra, sizeof extra, "worker=\"%d\"", app->worker);
	aw_listener *l;
	if (aw_unix_listen(&l, path, NULL) < 0) {
		aw__http_log_error(app, aw_error_current(), "metrics: cannot listen on %s: other workers' "
				   "scrapes will leave this worker out", path);
		aw_error_clear();
		return 0;
	}
	AW_WITH(aw_listener_mgr(l)) {
		for (;;) {
			aw_stream *s;
			int rc = aw_listener_accept(l, &s, AW_NEVER);
			if (rc == -ECANCELED)
				break;
			if (rc < 0) {
				aw_error_clear();
				if (aw_sleep(AW_MS(100)) < 0)
					break;
				continue;
			}
			char *text = NULL;
			size_t len = 0;
			aw_time dl = aw_deadline_after(PEER_TIMEOUT);
			if (aw_metrics_render(&text, &len, extra) == 0)
				if (aw_stream_write(s, text, len, dl) < 0)
					aw_error_clear();
			free(text);
			if (aw_stream_close(s, dl) < 0)
				aw_error_clear();
			aw_error_clear();
		}
	}
	aw_error_clear();
	unlink(path);
	return 0;
}

int aw__http_metrics_peer_start(aw_app *app, aw_group *g)
{
	aw_http_metrics *m = app->metrics;
	if (!m || !m->peer_dir || app->worker < 0 || app->nworkers <= 1)
		return 0;
	return aw_group_spawn(g, peer_listener, app, "http-metrics-peer");
}

/* The supervisor, before the workers start: the directory of their
 * private sockets (0700: only this user can connect). */
int aw__http_metrics_workers_prepare(aw_app *app)
{
	aw_http_metrics *m = app->metrics;
	if (!m || m->peer_dir)
		return 0;
	const char *base = getenv("XDG_RUNTIME_DIR");
	if (!base || !*base || access(base, W_OK) != 0)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	char *dir = NULL;
	if (aw__asprintf(&dir, "%s/awith-metrics-XXXXXX", base) < 0 || !dir)
		return aw_raise(-ENOMEM, "metrics: out of memory");
	if (!mkdtemp(dir)) {
		int e = errno;
		free(dir);
		return aw_raise(-e, "metrics: cannot make a directory for the workers' sockets in %s: %s", base,
				strerror(e));
	}
	m->peer_dir = dir;
	return 0;
}

/* The supervisor, after the last worker: remove the directory. */
void aw__http_metrics_workers_done(aw_app *app)
{
	aw_http_metrics *m = app->metrics;
	if (!m || !m->peer_dir)
		return;
	for (int w = 0; w < app->nworkers; w++) {
		char path[256];
		peer_path(m, w, path, sizeof path);
		unlink(path);
	}
	rmdir(m->peer_dir);
	free(m->peer_dir);
	m->peer_dir = NULL;
}

/* ---- turning it on --------------------------------------------------------------------- */

int aw_app_metrics(aw_app *app, const char *path)
{
	if (!app)
		return aw_raise(-EINVAL, "aw_app_metrics: no app (did aw_app_new run out of memory?)");
	if (!path || path[0] != '/')
		return aw_raise(-EINVAL, "aw_app_metrics: the path must start with '/'");
	if (app->metrics)
		return aw_raise(-EALREADY, "aw_app_metrics: metrics are on already (at %s)", app->metrics->path);
	if (app->srv)
		return aw_raise(-EBUSY, "aw_app_metrics: the app is serving");
	aw_http_metrics *m = aw__calloc(1, sizeof *m);
	if (!m || !(m->path = aw__strdup(path))) {
		free(m);
		return aw_raise(-ENOMEM, "aw_app_metrics: out of memory");
	}
	static const char *const req_labels[] = { "route", "method", "status", NULL };
	static const char *const route_label[] = { "route", NULL };
	int rc;
	if ((rc = aw_metric_counter_new(&m->requests, "awith_http_requests_total",
					"HTTP requests answered, by route template, method and status.", req_labels)) ||
	    (rc = aw_metric_histogram_new(&m->duration, "awith_http_request_duration_seconds",
					  "Time from a request's complete head to its response, by route template.",
					  route_label, NULL, 0)) ||
	    (rc = aw_metric_gauge_new(&m->in_flight, "awith_http_requests_in_flight",
				      "Requests being handled now.", NULL)) ||
	    (rc = aw_metric_gauge_new(&m->connections, "awith_http_connections", "Open client connections.",
				      NULL)) ||
	    (rc = aw_app_route(app, "GET", path, serve_metrics, NULL))) {
		free(m->path);
		free(m);
		return rc;
	}
	app->metrics = m;
	return 0;
}

void aw__http_metrics_free(aw_app *app)
{
	aw_http_metrics *m = app->metrics;
	if (!m)
		return;
	for (unsigned i = 0; i < AW_HTTP_MCACHE; i++)
		free(atomic_load_explicit(&m->unmatched.by_status[i], memory_order_relaxed));
	free(m->peer_dir);
	free(m->path);
	free(m);
	app->metrics = NULL;
}

/* A route's cached keys (router.c frees routes). */
void aw__http_mcache_free(aw_http_mcache *mc)
{
	for (unsigned i = 0; i < AW_HTTP_MCACHE; i++)
		free(atomic_load_explicit(&mc->by_status[i], memory_order_relaxed));
}
