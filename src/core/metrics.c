/* SPDX-License-Identifier: MIT */
/*
 * The metrics registry (awith/metrics.h): families and series under one
 * process-wide lock; values in per-thread shards that only their thread
 * writes, summed when rendered.
 *
 * Storage: every series owns a run of slots (a counter or gauge 1, a
 * histogram one per bucket plus +Inf plus the sum), numbered process-wide
 * when the series is made. A thread's shard maps a slot number to a
 * 64-bit cell through fixed chunks of CHUNK_SLOTS cells, allocated the
 * first time the thread touches a slot in them and never moved, so the
 * renderer can read a cell while its thread writes it. Cells are C11
 * atomics written with relaxed load + store by their one writer (a plain
 * `mov`/`add`/`mov` on x86 and arm64: no lock prefix, no fence) and read
 * with relaxed loads by the renderer: no data race, and no cost beyond
 * the increment. Counters and bucket counts are integers; gauges and
 * histogram sums are doubles stored by their bits.
 *
 * A thread that ends (pthread key destructor) adds its shard into the
 * `retired` totals under the lock and frees it, so its counts stay.
 * Families and series are never freed (they live as long as the process,
 * as in every Prometheus client).
 */
#include "internal.h"
#include "awith/metrics.h"
#include "../common/cnum.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define CHUNK_SLOTS 1024
#define MAX_CHUNKS 128          /* 131072 slots per process */
#define NO_SLOT UINT32_MAX

enum { K_COUNTER, K_GAUGE, K_HISTOGRAM, K_COUNTER_FN, K_GAUGE_FN };

typedef struct family family;

struct aw_metric {
	family *fam;
	uint32_t slot;             /* first slot; NO_SLOT: a labelled family's root */
	uint8_t kind;              /* K_* (copied from the family for the hot path) */
	char **values;             /* label values (series of a labelled family) */
	aw_metric *next;           /* next series of the family */
};

struct family {
	aw_metric root;
	int kind;
	char *name, *help;
	char *labels[AW_METRIC_MAX_LABELS];
	unsigned nlabels;
	double bounds[AW_METRIC_MAX_BUCKETS];
	unsigned nbounds;
	double (*fn)(void *arg);
	void *fn_arg;
	aw_metric *series, **series_tail;
	family *next;
};

typedef struct shard {
	_Atomic(_Atomic uint64_t *) chunk[MAX_CHUNKS];
	struct shard *prev, *next;
} shard;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static family *families, **families_tail = &families;
static uint32_t next_slot;
static shard *shards;                       /* live threads' shards (mu) */
static uint64_t *retired[MAX_CHUNKS];       /* ended threads' totals (mu) */
static pthread_key_t shard_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static __thread shard *tls_shard;

/* ---- per-thread shards ------------------------------------------------------ */

static uint64_t cell_get(_Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }
static void cell_put(_Atomic uint64_t *c, uint64_t v) { atomic_store_explicit(c, v, memory_order_relaxed); }
static double d_of(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
static uint64_t u_of(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }

static bool slot_is_double(const aw_metric *m, uint32_t i)
{
	switch (m->kind) {
	case K_GAUGE: return true;
	case K_HISTOGRAM: return i == m->slot + m->fam->nbounds + 1;
	default: return false;
	}
}

/* Add shard s into the retired totals (mu held). */
static void shard_fold(shard *s)
{
	for (family *f = families; f; f = f->next) {
		unsigned n = f->kind == K_HISTOGRAM ? f->nbounds + 2 : 1;
		for (aw_metric *m = f->series; m; m = m->next) {
			if (m->slot == NO_SLOT)
				continue;
			for (unsigned k = 0; k < n; k++) {
				uint32_t i = m->slot + k;
				_Atomic uint64_t *c = atomic_load_explicit(&s->chunk[i / CHUNK_SLOTS], memory_order_acquire);
				if (!c)
					continue;
				uint64_t *r = retired[i / CHUNK_SLOTS];
				if (!r && !(r = retired[i / CHUNK_SLOTS] = aw__calloc(CHUNK_SLOTS, sizeof *r)))
					continue;   /* out of memory: that thread's share is lost */
				uint64_t v = cell_get(&c[i % CHUNK_SLOTS]);
				uint64_t *dst = &r[i % CHUNK_SLOTS];
				*dst = slot_is_double(m, i) ? u_of(d_of(*dst) + d_of(v)) : *dst + v;
			}
		}
	}
}

static void shard_free(shard *s)
{
	for (size_t i = 0; i < MAX_CHUNKS; i++)
		free((void *)atomic_load_explicit(&s->chunk[i], memory_order_relaxed));
	free(s);
}

/* The thread ends: its counts join the retired totals. */
static void shard_release(void *arg)
{
	shard *s = arg;
	pthread_mutex_lock(&mu);
	shard_fold(s);
	if (s->prev)
		s->prev->next = s->next;
	else
		shards = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pthread_mutex_unlock(&mu);
	if (tls_shard == s)
		tls_shard = NULL;
	shard_free(s);
}

static void atfork_lock(void) { pthread_mutex_lock(&mu); }
static void atfork_unlock(void) { pthread_mutex_unlock(&mu); }

static void key_init(void)
{
	pthread_key_create(&shard_key, shard_release);
	/* A fork while another thread holds the lock must not leave the
	 * child's registry locked forever. */
	pthread_atfork(atfork_lock, atfork_unlock, atfork_unlock);
}

/* The slow path of the hot path: this thread's first touch of a chunk.
 * NULL when out of memory (the update is dropped). */
static __attribute__((noinline)) _Atomic uint64_t *cell_slow(uint32_t i)
{
	shard *s = tls_shard;
	if (!s) {
		pthread_once(&key_once, key_init);
		s = aw__calloc(1, sizeof *s);
		if (!s)
			return NULL;
		pthread_mutex_lock(&mu);
		s->next = shards;
		if (shards)
			shards->prev = s;
		shards = s;
		pthread_mutex_unlock(&mu);
		tls_shard = s;
		pthread_setspecific(shard_key, s);
	}
	_Atomic uint64_t *c = atomic_load_explicit(&s->chunk[i / CHUNK_SLOTS], memory_order_relaxed);
	if (!c) {
		c = aw__calloc(CHUNK_SLOTS, sizeof *c);
		if (!c)
			return NULL;
		/* Release: a renderer that sees the pointer sees zeroed cells. */
		atomic_store_explicit(&s->chunk[i / CHUNK_SLOTS], c, memory_order_release);
	}
	return c + i % CHUNK_SLOTS;
}

static inline _Atomic uint64_t *cell(uint32_t i)
{
	shard *s = tls_shard;
	if (AW_LIKELY(s != NULL)) {
		_Atomic uint64_t *c = atomic_load_explicit(&s->chunk[i / CHUNK_SLOTS], memory_order_relaxed);
		if (AW_LIKELY(c != NULL))
			return c + i % CHUNK_SLOTS;
	}
	return cell_slow(i);
}

/* Sum of slot i over the retired totals and every live shard (mu held). */
static uint64_t sum_u(uint32_t i)
{
	uint64_t v = retired[i / CHUNK_SLOTS] ? retired[i / CHUNK_SLOTS][i % CHUNK_SLOTS] : 0;
	for (shard *s = shards; s; s = s->next) {
		_Atomic uint64_t *c = atomic_load_explicit(&s->chunk[i / CHUNK_SLOTS], memory_order_acquire);
		if (c)
			v += cell_get(&c[i % CHUNK_SLOTS]);
	}
	return v;
}

static double sum_d(uint32_t i)
{
	double v = retired[i / CHUNK_SLOTS] ? d_of(retired[i / CHUNK_SLOTS][i % CHUNK_SLOTS]) : 0;
	for (shard *s = shards; s; s = s->next) {
		_Atomic uint64_t *c = atomic_load_explicit(&s->chunk[i / CHUNK_SLOTS], memory_order_acquire);
		if (c)
			v += d_of(cell_get(&c[i % CHUNK_SLOTS]));
	}
	return v;
}

/* ---- the hot path -------------------------------------------------------------- */

void aw_metric_counter_add(aw_metric *m, uint64_t n)
{
	if (AW_UNLIKELY(!m || m->kind != K_COUNTER || m->slot == NO_SLOT))
		return;
	_Atomic uint64_t *c = cell(m->slot);
	if (AW_LIKELY(c != NULL))
		cell_put(c, cell_get(c) + n);
}

void aw_metric_gauge_add(aw_metric *m, double delta)
{
	if (AW_UNLIKELY(!m || m->kind != K_GAUGE || m->slot == NO_SLOT))
		return;
	_Atomic uint64_t *c = cell(m->slot);
	if (AW_LIKELY(c != NULL))
		cell_put(c, u_of(d_of(cell_get(c)) + delta));
}

void aw_metric_gauge_set(aw_metric *m, double value)
{
	if (AW_UNLIKELY(!m || m->kind != K_GAUGE || m->slot == NO_SLOT))
		return;
	_Atomic uint64_t *c = cell(m->slot);
	if (AW_LIKELY(c != NULL))
		cell_put(c, u_of(value));
}

void aw_metric_observe(aw_metric *m, double v)
{
	if (AW_UNLIKELY(!m || m->kind != K_HISTOGRAM || m->slot == NO_SLOT))
		return;
	const family *f = m->fam;
	/* The first bound >= v (NaN: none, so +Inf). A linear scan: latencies
	 * mostly fall in the first buckets, where it stops after a compare or
	 * two (measured under callgrind: a binary search cost 30 more
	 * instructions per request on the hello benchmark). */
	unsigned b = 0;
	while (b < f->nbounds && !(v <= f->bounds[b]))
		b++;
	/* The series' slots never straddle a chunk (series_slots). */
	_Atomic uint64_t *c = cell(m->slot);
	if (AW_UNLIKELY(c == NULL))
		return;
	cell_put(&c[b], cell_get(&c[b]) + 1);
	if (!isnan(v))
		cell_put(&c[f->nbounds + 1], u_of(d_of(cell_get(&c[f->nbounds + 1])) + v));
}

/* ---- reading ------------------------------------------------------------------------ */

static double value_locked(const aw_metric *m)
{
	switch (m->kind) {
	case K_COUNTER: return (double)sum_u(m->slot);
	case K_GAUGE: return sum_d(m->slot);
	case K_HISTOGRAM: {
		uint64_t n = 0;
		for (unsigned b = 0; b <= m->fam->nbounds; b++)
			n += sum_u(m->slot + b);
		return (double)n;
	}
	default: return m->fam->fn ? m->fam->fn(m->fam->fn_arg) : 0;
	}
}

double aw_metric_value(const aw_metric *m)
{
	if (!m || (m->slot == NO_SLOT && m->kind != K_COUNTER_FN && m->kind != K_GAUGE_FN))
		return 0;
	pthread_mutex_lock(&mu);
	double v = value_locked(m);
	pthread_mutex_unlock(&mu);
	return v;
}

double aw_metric_sum(const aw_metric *m)
{
	if (!m || m->kind != K_HISTOGRAM || m->slot == NO_SLOT)
		return 0;
	pthread_mutex_lock(&mu);
	double v = sum_d(m->slot + m->fam->nbounds + 1);
	pthread_mutex_unlock(&mu);
	return v;
}

/* ---- families and series ------------------------------------------------------------ */

static bool name_ok(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char ch = *p;
		bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon && ch == ':');
		if (!alpha && !(p > s && ch >= '0' && ch <= '9'))
			return false;
	}
	return true;
}

static unsigned series_slots(const family *f)
{
	return f->kind == K_HISTOGRAM ? f->nbounds + 2 : 1;
}

/* Number the slots of a new series (mu held): a run that does not
 * straddle a chunk, so a histogram's cells are one array. */
static int slots_take(const family *f, uint32_t *out)
{
	unsigned n = series_slots(f);
	uint32_t s = next_slot;
	if (s / CHUNK_SLOTS != (s + n - 1) / CHUNK_SLOTS)
		s = (s / CHUNK_SLOTS + 1) * CHUNK_SLOTS;
	if ((uint64_t)s + n > (uint64_t)CHUNK_SLOTS * MAX_CHUNKS)
		return -ENOSPC;
	*out = s;
	next_slot = s + n;
	return 0;
}

static family *family_find(const char *name)
{
	for (family *f = families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static bool same_shape(const family *f, int kind, const char *const *labels, const double *bounds, unsigned nbounds)
{
	if (f->kind != kind)
		return false;
	unsigned n = 0;
	for (; labels && labels[n]; n++)
		if (n >= f->nlabels || strcmp(f->labels[n], labels[n]) != 0)
			return false;
	if (n != f->nlabels)
		return false;
	if (kind == K_HISTOGRAM) {
		if (nbounds != f->nbounds)
			return false;
		for (unsigned i = 0; i < nbounds; i++)
			if (f->bounds[i] != bounds[i])
				return false;
	}
	return true;
}

static void family_free(family *f)
{
	for (unsigned i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	free(f->name);
	free(f->help);
	free(f);
}

static int family_new(aw_metric **out, int kind, const char *name, const char *help, const char *const *labels,
		      const double *bounds, size_t nbounds, double (*fn)(void *), void *arg)
{
	static const double seconds[] = AW_METRIC_SECONDS_BUCKETS;
	if (!out)
		return aw_raise(-EINVAL, "metric '%s': out is NULL", name ? name : "?");
	*out = NULL;
	if (!name_ok(name, true))
		return aw_raise(-EINVAL, "metric name '%s' is not [a-zA-Z_:][a-zA-Z0-9_:]*", name ? name : "(null)");
	if (kind == K_HISTOGRAM && !bounds) {
		bounds = seconds;
		nbounds = sizeof seconds / sizeof *seconds;
	}
	if (nbounds > AW_METRIC_MAX_BUCKETS)
		return aw_raise(-EINVAL, "metric '%s': %zu buckets (at most %d)", name, nbounds, AW_METRIC_MAX_BUCKETS);
	for (size_t i = 0; i < nbounds; i++)
		if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
			return aw_raise(-EINVAL, "metric '%s': bucket bounds must be finite and increasing", name);
	unsigned nl = 0;
	for (; labels && labels[nl]; nl++) {
		if (nl >= AW_METRIC_MAX_LABELS)
			return aw_raise(-EINVAL, "metric '%s': more than %d labels", name, AW_METRIC_MAX_LABELS);
		if (!name_ok(labels[nl], false) || strncmp(labels[nl], "__", 2) == 0 ||
		    (kind == K_HISTOGRAM && strcmp(labels[nl], "le") == 0))
			return aw_raise(-EINVAL, "metric '%s': bad label name '%s'", name, labels[nl]);
	}
	pthread_mutex_lock(&mu);
	family *f = family_find(name);
	if (f) {
		bool same = same_shape(f, kind, labels, bounds, (unsigned)nbounds) && f->fn == fn && f->fn_arg == arg;
		pthread_mutex_unlock(&mu);
		if (!same)
			return aw_raise(-EEXIST, "metric '%s' exists with another type, labels or buckets", name);
		*out = &f->root;
		return 0;
	}
	int rc = -ENOMEM;
	f = aw__calloc(1, sizeof *f);
	if (!f)
		goto fail;
	f->kind = kind;
	f->name = aw__strdup(name);
	f->help = aw__strdup(help ? help : "");
	if (!f->name || !f->help)
		goto fail;
	for (unsigned i = 0; i < nl; i++)
		if (!(f->labels[f->nlabels++] = aw__strdup(labels[i])))
			goto fail;
	if (nbounds)
		memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
	f->nbounds = (unsigned)nbounds;
	f->fn = fn;
	f->fn_arg = arg;
	f->series_tail = &f->series;
	f->root = (aw_metric){ .fam = f, .slot = NO_SLOT, .kind = (uint8_t)kind };
	if (!nl && kind != K_COUNTER_FN && kind != K_GAUGE_FN) {
		rc = slots_take(f, &f->root.slot);
		if (rc)
			goto fail;
	}
	if (!nl) {
		/* The one series is the family itself. */
		*f->series_tail = &f->root;
		f->series_tail = &f->root.next;
	}
	*families_tail = f;
	families_tail = &f->next;
	pthread_mutex_unlock(&mu);
	*out = &f->root;
	return 0;
fail:
	pthread_mutex_unlock(&mu);
	if (f)
		family_free(f);
	return aw_raise(rc, "metric '%s': %s", name, rc == -ENOSPC ? "too many series" : "out of memory");
}

int aw_metric_counter_new(aw_metric **out, const char *name, const char *help, const char *const *labels)
{
	return family_new(out, K_COUNTER, name, help, labels, NULL, 0, NULL, NULL);
}

int aw_metric_gauge_new(aw_metric **out, const char *name, const char *help, const char *const *labels)
{
	return family_new(out, K_GAUGE, name, help, labels, NULL, 0, NULL, NULL);
}

int aw_metric_histogram_new(aw_metric **out, const char *name, const char *help, const char *const *labels,
			    const double *bounds, size_t nbounds)
{
	if (!bounds && nbounds)
		return aw_raise(-EINVAL, "metric '%s': %zu bounds and no array", name ? name : "?", nbounds);
	return family_new(out, K_HISTOGRAM, name, help, labels, bounds, nbounds, NULL, NULL);
}

int aw_metric_gauge_fn_new(aw_metric **out, const char *name, const char *help, double (*fn)(void *), void *arg)
{
	if (!fn)
		return aw_raise(-EINVAL, "metric '%s': no function", name ? name : "?");
	return family_new(out, K_GAUGE_FN, name, help, NULL, NULL, 0, fn, arg);
}

int aw_metric_counter_fn_new(aw_metric **out, const char *name, const char *help, double (*fn)(void *), void *arg)
{
	if (!fn)
		return aw_raise(-EINVAL, "metric '%s': no function", name ? name : "?");
	return family_new(out, K_COUNTER_FN, name, help, NULL, NULL, 0, fn, arg);
}

int aw_metric_with(aw_metric *m, aw_metric **out, const char *const *values)
{
	if (!out)
		return aw_raise(-EINVAL, "aw_metric_with: out is NULL");
	*out = NULL;
	if (!m)
		return aw_raise(-EINVAL, "aw_metric_with: no metric");
	family *f = m->fam;
	if (!f->nlabels) {
		if (values && values[0])
			return aw_raise(-EINVAL, "metric '%s' has no labels", f->name);
		*out = &f->root;
		return 0;
	}
	if (m != &f->root)
		return aw_raise(-EINVAL, "metric '%s': aw_metric_with wants the family, not a series", f->name);
	for (unsigned i = 0; i < f->nlabels; i++)
		if (!values || !values[i])
			return aw_raise(-EINVAL, "metric '%s': no value for label '%s'", f->name, f->labels[i]);
	pthread_mutex_lock(&mu);
	for (aw_metric *s = f->series; s; s = s->next) {
		unsigned i = 0;
		while (i < f->nlabels && strcmp(s->values[i], values[i]) == 0)
			i++;
		if (i == f->nlabels) {
			pthread_mutex_unlock(&mu);
			*out = s;
			return 0;
		}
	}
	int rc = -ENOMEM;
	aw_metric *s = aw__calloc(1, sizeof *s);
	if (!s || !(s->values = aw__calloc(f->nlabels, sizeof *s->values)))
		goto fail;
	for (unsigned i = 0; i < f->nlabels; i++)
		if (!(s->values[i] = aw__strdup(values[i])))
			goto fail;
	s->fam = f;
	s->kind = (uint8_t)f->kind;
	rc = slots_take(f, &s->slot);
	if (rc)
		goto fail;
	*f->series_tail = s;
	f->series_tail = &s->next;
	pthread_mutex_unlock(&mu);
	*out = s;
	return 0;
fail:
	pthread_mutex_unlock(&mu);
	if (s) {
		for (unsigned i = 0; s->values && i < f->nlabels; i++)
			free(s->values[i]);
		free(s->values);
		free(s);
	}
	return aw_raise(rc, "metric '%s': %s", f->name, rc == -ENOSPC ? "too many series" : "out of memory");
}

/* ---- rendering ------------------------------------------------------------------------ */

typedef struct out {
	char *p;
	size_t len, cap;
	bool oom;
} out;

static void put(out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		while (o->len + n + 1 > cap)
			cap *= 2;
		char *p = aw__realloc(o->p, cap);
		if (!p) {
			o->oom = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = 0;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

/* Escape for HELP (\\ and \n) or label values (also \"). */
static void put_escaped(out *o, const char *s, bool quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *rep = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
		if (!rep)
			continue;
		put(o, run, (size_t)(s - run));
		puts_(o, rep);
		run = s + 1;
	}
	put(o, run, (size_t)(s - run));
}

/* The shortest text that reads back as v (C locale), or Prometheus's
 * spelling of the specials. */
static void fmt_double(char *buf, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(buf, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		aw__snprintf_c(buf, len, "%.*g", prec, v);
		if (aw__strtod_c(buf, NULL) == v)
			return;
	}
}

static void put_double(out *o, double v)
{
	char b[40];
	fmt_double(b, sizeof b, v);
	puts_(o, b);
}

static void put_u64(out *o, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof b, "%llu", (unsigned long long)v);
	puts_(o, b);
}

/* name[suffix]{labels[,extra][,le="x"]} */
static void put_series_name(out *o, const family *f, const aw_metric *m, const char *suffix, const char *extra,
			    const char *le)
{
	puts_(o, f->name);
	puts_(o, suffix);
	bool any = f->nlabels || (extra && *extra) || le;
	if (!any)
		return;
	put(o, "{", 1);
	const char *sep = "";
	for (unsigned i = 0; i < f->nlabels; i++) {
		puts_(o, sep);
		puts_(o, f->labels[i]);
		put(o, "=\"", 2);
		put_escaped(o, m->values[i], true);
		put(o, "\"", 1);
		sep = ",";
	}
	if (extra && *extra) {
		puts_(o, sep);
		puts_(o, extra);
		sep = ",";
	}
	if (le) {
		puts_(o, sep);
		put(o, "le=\"", 4);
		puts_(o, le);
		put(o, "\"", 1);
	}
	put(o, "}", 1);
}

static void render_family(out *o, const family *f, const char *extra)
{
	if (!f->series)
		return;
	static const char *const types[] = { "counter", "gauge", "histogram", "counter", "gauge" };
	puts_(o, "# HELP ");
	puts_(o, f->name);
	put(o, " ", 1);
	put_escaped(o, f->help, false);
	puts_(o, "\n# TYPE ");
	puts_(o, f->name);
	put(o, " ", 1);
	puts_(o, types[f->kind]);
	put(o, "\n", 1);
	for (const aw_metric *m = f->series; m; m = m->next) {
		switch (f->kind) {
		case K_COUNTER:
			put_series_name(o, f, m, "", extra, NULL);
			put(o, " ", 1);
			put_u64(o, sum_u(m->slot));
			put(o, "\n", 1);
			break;
		case K_GAUGE:
			put_series_name(o, f, m, "", extra, NULL);
			put(o, " ", 1);
			put_double(o, sum_d(m->slot));
			put(o, "\n", 1);
			break;
		case K_HISTOGRAM: {
			uint64_t cum = 0;
			for (unsigned b = 0; b <= f->nbounds; b++) {
				char le[40];
				if (b < f->nbounds)
					fmt_double(le, sizeof le, f->bounds[b]);
				else
					snprintf(le, sizeof le, "+Inf");
				cum += sum_u(m->slot + b);
				put_series_name(o, f, m, "_bucket", extra, le);
				put(o, " ", 1);
				put_u64(o, cum);
				put(o, "\n", 1);
			}
			put_series_name(o, f, m, "_sum", extra, NULL);
			put(o, " ", 1);
			put_double(o, sum_d(m->slot + f->nbounds + 1));
			put(o, "\n", 1);
			put_series_name(o, f, m, "_count", extra, NULL);
			put(o, " ", 1);
			put_u64(o, cum);
			put(o, "\n", 1);
			break;
		}
		default:
			put_series_name(o, f, m, "", extra, NULL);
			put(o, " ", 1);
			put_double(o, f->fn(f->fn_arg));
			put(o, "\n", 1);
			break;
		}
	}
}

int aw_metrics_render(char **outp, size_t *lenp, const char *extra)
{
	if (!outp || !lenp)
		return aw_raise(-EINVAL, "aw_metrics_render: out or len is NULL");
	*outp = NULL;
	*lenp = 0;
	aw__metrics_core_init();
	/* The rendering loop's own gauges as of now; other loops' as of
	 * their last poll. */
	aw_loop *l = aw__loop;
	if (l) {
		l->published_tasks = l->ntasks;
		l->published_parked = l->nparked;
		aw_metric_gauge_set(aw__metrics.tasks_alive, (double)l->ntasks);
		aw_metric_gauge_set(aw__metrics.tasks_parked, (double)l->nparked);
	}
	out o = { 0 };
	put(&o, "", 0);   /* an empty registry still gives "" */
	pthread_mutex_lock(&mu);
	for (const family *f = families; f; f = f->next)
		render_family(&o, f, extra);
	pthread_mutex_unlock(&mu);
	if (o.oom) {
		free(o.p);
		return aw_raise(-ENOMEM, "aw_metrics_render: out of memory");
	}
	*outp = o.p;
	*lenp = o.len;
	return 0;
}

/* ---- the core layer's own metrics -------------------------------------------------- */

aw_metrics_core aw__metrics;

static double proc_cpu_seconds(void *arg)
{
	(void)arg;
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* /proc/self/statm: size and resident, in pages. */
static double proc_statm(int field)
{
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f)
		return 0;
	unsigned long size = 0, resident = 0;
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	if (n != 2)
		return 0;
	return (double)(field ? resident : size) * (double)sysconf(_SC_PAGESIZE);
}

static double proc_rss(void *arg) { (void)arg; return proc_statm(1); }
static double proc_vms(void *arg) { (void)arg; return proc_statm(0); }

static double proc_open_fds(void *arg)
{
	(void)arg;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	double n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;   /* the directory's own descriptor */
}

static double proc_max_fds(void *arg)
{
	(void)arg;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	return (double)rl.rlim_cur;
}

/* Start time since the epoch: /proc/self/stat's starttime (clock ticks
 * since boot) plus /proc/stat's btime. */
static double proc_start_time(void *arg)
{
	(void)arg;
	static double cached;
	if (cached)
		return cached;
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* After ") ": field 3 (state) ... field 22 (starttime). */
	unsigned long long start = 0;
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%llu", &start) != 1)
		return 0;
	f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	unsigned long long btime = 0;
	char line[256];
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "btime %llu", &btime) == 1)
			break;
	fclose(f);
	if (!btime)
		return 0;
	cached = (double)btime + (double)start / (double)sysconf(_SC_CLK_TCK);
	return cached;
}

static void core_init(void)
{
	static const double lag[] = { 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5 };
	aw_metrics_core *m = &aw__metrics;
	int rc = 0;
	rc |= aw_metric_gauge_new(&m->loops, "awith_loops_running", "Event loops running in this process.", NULL);
	rc |= aw_metric_gauge_new(&m->tasks_alive, "awith_tasks_alive",
				  "Tasks alive (spawned and not yet finished), all loops.", NULL);
	rc |= aw_metric_gauge_new(&m->tasks_parked, "awith_tasks_parked",
				  "Tasks parked: waiting for I/O, a timer, a lock, a queue or another task.", NULL);
	rc |= aw_metric_histogram_new(&m->loop_lag, "awith_loop_lag_seconds",
				      "How late timers fire: the loop's time at the run minus the timer's deadline.",
				      NULL, lag, sizeof lag / sizeof *lag);
	rc |= aw_metric_counter_new(&m->slow_steps, "awith_slow_steps_total",
				    "Steps reported as slow: a task ran longer than the slow_step setting without "
				    "waiting.",
				    NULL);
	rc |= aw_metric_gauge_new(&m->threadpool_queue, "awith_threadpool_queue_depth",
				  "aw_to_thread jobs waiting for a free thread.", NULL);
	rc |= aw_metric_gauge_new(&m->threadpool_busy, "awith_threadpool_busy_threads",
				  "aw_to_thread jobs running on a pool thread.", NULL);
	rc |= aw_metric_counter_new(&m->uring_file_ops, "awith_io_uring_file_ops_total",
				    "File operations (open, read, write, fsync, close, rename, unlink) done through "
				    "the loop's io_uring instead of the thread pool.",
				    NULL);
	rc |= aw_metric_counter_fn_new(&m->cpu, "process_cpu_seconds_total", "User and system CPU time spent in seconds.",
				       proc_cpu_seconds, NULL);
	rc |= aw_metric_gauge_fn_new(&m->rss, "process_resident_memory_bytes", "Resident memory size in bytes.",
				     proc_rss, NULL);
	rc |= aw_metric_gauge_fn_new(&m->vms, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
				     proc_vms, NULL);
	rc |= aw_metric_gauge_fn_new(&m->fds, "process_open_fds", "Number of open file descriptors.", proc_open_fds,
				     NULL);
	rc |= aw_metric_gauge_fn_new(&m->max_fds, "process_max_fds", "Maximum number of open file descriptors.",
				     proc_max_fds, NULL);
	rc |= aw_metric_gauge_fn_new(&m->start, "process_start_time_seconds",
				     "Start time of the process since unix epoch in seconds.", proc_start_time, NULL);
	if (rc)
		aw_error_clear();   /* a metric that could not be made stays NULL: its updates do nothing */
}

static pthread_once_t core_once = PTHREAD_ONCE_INIT;

void aw__metrics_core_init(void)
{
	pthread_once(&core_once, core_init);
}
