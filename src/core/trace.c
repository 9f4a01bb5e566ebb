// SPDX-License-Identifier: MIT
/*
 * Tracing context (awith/core.h, "Tracing context"): W3C traceparent and
 * tracestate, a per-task current context, spans and their sink.
 *
 * The context is a pointer in the task (NULL: none) to an aw_trace owned
 * by whoever made it current (a span on the task's stack, a server
 * request); a spawned task gets a copy of its spawner's (the spawner's
 * span may end first). Ids come from a per-thread generator seeded from
 * getrandom (no syscall per span); a forked child reseeds.
 */
#include "internal.h"
#include "awith/log.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- random ids ------------------------------------------------------------ */

/* xoshiro256** per thread, seeded from getrandom: ids must be unique and
 * unpredictable enough to not collide across services (W3C asks for
 * random ids, not secret ones), and a syscall per span would cost more
 * than the span. A forked child reseeds (two workers must not hand out
 * the same ids). */
static __thread uint64_t rnd_s[4];
static __thread bool rnd_seeded;
static pthread_once_t rnd_once = PTHREAD_ONCE_INIT;

static void rnd_after_fork(void) { rnd_seeded = false; }
static void rnd_register(void) { pthread_atfork(NULL, NULL, rnd_after_fork); }

/* When getrandom is unavailable (a seccomp filter, an old kernel): a
 * splitmix64 stream seeded from the clocks and the address of the state. */
static void rnd_fallback(uint64_t *p, size_t n)
{
	struct timespec a, b;
	clock_gettime(CLOCK_REALTIME, &a);
	clock_gettime(CLOCK_MONOTONIC, &b);
	uint64_t x = (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 32) ^ (uint64_t)b.tv_nsec ^ (uint64_t)(uintptr_t)p;
	for (size_t i = 0; i < n; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		p[i] = z ^ (z >> 31);
	}
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rnd_next(void)
{
	if (!rnd_seeded) {
		pthread_once(&rnd_once, rnd_register);
		if (getrandom(rnd_s, sizeof rnd_s, GRND_NONBLOCK) != (ssize_t)sizeof rnd_s)
			rnd_fallback(rnd_s, 4);
		if (!(rnd_s[0] | rnd_s[1] | rnd_s[2] | rnd_s[3]))
			rnd_s[0] = 1;
		rnd_seeded = true;
	}
	uint64_t *s = rnd_s;
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void rnd_bytes(uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd_next();
		memcpy(out + i, &v, n - i < 8 ? n - i : 8);
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

static void rnd_id(uint8_t *out, size_t n)
{
	do
		rnd_bytes(out, n);
	while (all_zero(out, n));
}

void aw_trace_span_id_new(uint8_t out[8]) { rnd_id(out, 8); }

void aw_trace_new(aw_trace *t)
{
	rnd_id(t->trace_id, 16);
	rnd_id(t->span_id, 8);
	t->flags = AW_TRACE_SAMPLED;
	t->tracestate = NULL;
}

/* ---- the current context ------------------------------------------------------ */

const aw_trace *aw_trace_current(void)
{
	aw_task *t = aw__current();
	return t ? t->trace : NULL;
}

aw_trace *aw_trace_swap(aw_trace *tr)
{
	aw_task *t = aw__current();
	if (!t)
		return NULL;
	aw_trace *old = t->trace;
	t->trace = tr;
	return old;
}

void aw__trace_inherit(aw_task *child, const aw_task *parent)
{
	const aw_trace *p = parent->trace;
	child->trace_inherited = *p;
	child->trace_inherited.tracestate = NULL;
	if (p->tracestate && *p->tracestate) {
		/* Without memory the child still joins the trace; only the
		 * vendors' entries are lost. */
		child->trace_state = aw__strdup(p->tracestate);
		child->trace_inherited.tracestate = child->trace_state;
	}
	child->trace = &child->trace_inherited;
}

void aw__trace_release(aw_task *t)
{
	free(t->trace_state);
	t->trace_state = NULL;
	t->trace = NULL;
}

/* ---- traceparent ------------------------------------------------------------------ */

static int hexval(char c)
{
	/* Lowercase only: the spec makes uppercase hex invalid. */
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

int aw_trace_parse(aw_trace *t, const char *v, size_t len)
{
	uint8_t version, flags, tid[16], pid[8];
	if (!v || len < AW_TRACEPARENT_LEN)
		return -EINVAL;
	if (!unhex(v, &version, 1) || version == 0xff)
		return -EINVAL;
	/* Version 00 is exactly 55 characters; a later version may append
	 * fields after a '-' (read what version 00 defines, W3C 4.3). */
	if (version == 0 ? len != AW_TRACEPARENT_LEN : len > AW_TRACEPARENT_LEN && v[AW_TRACEPARENT_LEN] != '-')
		return -EINVAL;
	if (v[2] != '-' || v[35] != '-' || v[52] != '-')
		return -EINVAL;
	if (!unhex(v + 3, tid, 16) || !unhex(v + 36, pid, 8) || !unhex(v + 53, &flags, 1))
		return -EINVAL;
	if (all_zero(tid, 16) || all_zero(pid, 8))
		return -EINVAL;
	memcpy(t->trace_id, tid, 16);
	memcpy(t->span_id, pid, 8);
	t->flags = flags;
	t->tracestate = NULL;
	return 0;
}

void aw_trace_hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

size_t aw_trace_format(const aw_trace *t, char *out)
{
	uint8_t flags = t->flags & AW_TRACE_SAMPLED;   /* the only flag of version 00 */
	memcpy(out, "00-", 3);
	aw_trace_hex(t->trace_id, 16, out + 3);
	out[35] = '-';
	aw_trace_hex(t->span_id, 8, out + 36);
	out[52] = '-';
	aw_trace_hex(&flags, 1, out + 53);
	return AW_TRACEPARENT_LEN;
}

/* ---- tracestate ------------------------------------------------------------------- */

static bool key_chr(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

/* simple-key = lcalpha 0*255(keychr);
 * multi-tenant-key = (lcalpha / DIGIT) 0*240(keychr) "@" lcalpha 0*13(keychr) */
static bool valid_key(const char *k, size_t n)
{
	if (n == 0)
		return false;
	const char *at = memchr(k, '@', n);
	for (size_t i = 0; i < n; i++)
		if (k + i != at && !key_chr(k[i]))
			return false;
	if (!at)
		return n <= 256 && k[0] >= 'a' && k[0] <= 'z';
	size_t tn = (size_t)(at - k), sn = n - tn - 1;
	return tn >= 1 && tn <= 241 && sn >= 1 && sn <= 14 && at[1] >= 'a' && at[1] <= 'z';
}

/* value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
 * nblk-chr = %x21-2B / %x2D-3C / %x3E-7E (no ',' and no '=') */
static bool valid_value(const char *v, size_t n)
{
	if (n == 0 || n > 256 || v[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
			return false;
	}
	return true;
}

typedef struct ts_member {
	const char *p;
	size_t len, key_len;
	bool keep;
} ts_member;

size_t aw_tracestate_clean(const char *in, size_t len, char *out, size_t outlen)
{
	ts_member m[AW_TRACESTATE_MEMBERS];
	size_t n = 0;
	if (outlen)
		out[0] = 0;
	if (!in)
		return 0;
	size_t i = 0;
	while (i <= len) {
		size_t end = i;
		while (end < len && in[end] != ',')
			end++;
		size_t a = i, b = end;
		while (a < b && (in[a] == ' ' || in[a] == '\t'))
			a++;
		while (b > a && (in[b - 1] == ' ' || in[b - 1] == '\t'))
			b--;
		if (b > a) {
			const char *eq = memchr(in + a, '=', b - a);
			if (!eq || n == AW_TRACESTATE_MEMBERS)
				return 0;
			size_t kl = (size_t)(eq - (in + a));
			if (!valid_key(in + a, kl) || !valid_value(eq + 1, b - a - kl - 1))
				return 0;
			for (size_t j = 0; j < n; j++)
				if (m[j].key_len == kl && !memcmp(m[j].p, in + a, kl))
					return 0;   /* a duplicate key */
			m[n++] = (ts_member){ in + a, b - a, kl, true };
		}
		i = end + 1;
	}
	/* Over the limit: members over 128 characters go first, then members
	 * from the end (W3C 3.3.1.5). */
	size_t total = 0;
	for (size_t j = 0; j < n; j++)
		total += m[j].len + (j ? 1 : 0);
	for (size_t j = 0; j < n && total > AW_TRACESTATE_MAX; j++)
		if (m[j].len > 128) {
			m[j].keep = false;
			total -= m[j].len + 1;
		}
	for (size_t j = n; j-- > 0 && total > AW_TRACESTATE_MAX;)
		if (m[j].keep) {
			m[j].keep = false;
			total -= m[j].len + 1;
		}
	size_t w = 0;
	for (size_t j = 0; j < n; j++) {
		if (!m[j].keep)
			continue;
		size_t need = (w ? 1 : 0) + m[j].len;
		if (w + need + 1 > outlen)
			break;
		if (w)
			out[w++] = ',';
		memcpy(out + w, m[j].p, m[j].len);
		w += m[j].len;
	}
	if (outlen)
		out[w] = 0;
	return w;
}

/* ---- spans ------------------------------------------------------------------------ */

static aw_span_sink_fn *sink_fn;
static void *sink_arg;
static int span_level = AW_LOG_DEBUG;

void aw_span_sink_set(aw_span_sink_fn *fn, void *arg)
{
	__atomic_store_n(&sink_arg, arg, __ATOMIC_RELAXED);
	__atomic_store_n(&sink_fn, fn, __ATOMIC_RELEASE);
}

void aw_span_log_level_set(int level)
{
	__atomic_store_n(&span_level, level, __ATOMIC_RELAXED);
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case AW_SPAN_SERVER: return "server";
	case AW_SPAN_CLIENT: return "client";
	default: return "internal";
	}
}

/* RFC 3339, UTC, microseconds: "2026-12-06T06:12:12.345678Z". */
static void format_start(int64_t unix_ns, char *out, size_t len)
{
	time_t secs = (time_t)(unix_ns / 1000000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t k = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + k, len - k, ".%06ldZ", (long)(unix_ns % 1000000000 / 1000));
}

/* The default: one log record (awith/log.h) on the "span" channel, at
 * span_level, not rate-limited (a span is data, not a message). */
static void span_to_log(const aw_span *s, aw_time duration)
{
	int level = __atomic_load_n(&span_level, __ATOMIC_RELAXED);
	if (level <= 0 || !aw_log_enabled((aw_log_level)level))
		return;
	char tid[33], sid[17], pid[17], start[40];
	aw_trace_hex(s->ctx.trace_id, 16, tid);
	aw_trace_hex(s->ctx.span_id, 8, sid);
	aw_trace_hex(s->parent_id, 8, pid);
	format_start(s->start_unix_ns, start, sizeof start);
	aw_log_field f[12];
	size_t n = 0;
	f[n++] = AW_KV_STR("span", s->name ? s->name : "");
	f[n++] = AW_KV_STR("kind", kind_name(s->kind));
	f[n++] = AW_KV_STR("trace_id", tid);
	f[n++] = AW_KV_STR("span_id", sid);
	if (!all_zero(s->parent_id, 8))
		f[n++] = AW_KV_STR("parent_id", pid);
	f[n++] = AW_KV_BOOL("sampled", s->ctx.flags & AW_TRACE_SAMPLED);
	f[n++] = AW_KV_STR("start", start);
	f[n++] = AW_KV_FLOAT("duration_ms", (double)duration / 1e6);
	if (s->status)
		f[n++] = AW_KV_INT("status", s->status);
	if (s->error) {
		f[n++] = AW_KV_INT("error_code", s->error);
		f[n++] = AW_KV_STR("error", s->error_msg ? s->error_msg : aw_strerror(s->error));
	}
	aw_log_record rec = {
		.level = (aw_log_level)level,
		.channel = "span",
		.msg = "span",
		.fields = f,
		.nfields = n,
	};
	(void)aw_log_emit(NULL, &rec, NULL);
}

/* The one place spans leave: the program's sink, else the log (when
 * its level lets span records through). The wall-clock start is read
 * only for a span that is recorded: now minus the duration. */
static void span_record(aw_span *s, aw_time duration)
{
	aw_span_sink_fn *fn = __atomic_load_n(&sink_fn, __ATOMIC_ACQUIRE);
	int level = __atomic_load_n(&span_level, __ATOMIC_RELAXED);
	if (!fn && (level <= 0 || !aw_log_enabled((aw_log_level)level)))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	s->start_unix_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - duration;
	if (fn)
		fn(s, duration, __atomic_load_n(&sink_arg, __ATOMIC_RELAXED));
	else
		span_to_log(s, duration);
}

void aw_span_begin(aw_span *s, const char *name, int kind, const aw_trace *parent, bool make_current)
{
	aw_task *t = aw__current();
	if (!parent && t)
		parent = t->trace;
	s->name = name ? name : "span";
	s->kind = kind;
	s->status = 0;
	s->error = 0;
	s->error_msg = NULL;
	if (parent) {
		memcpy(s->ctx.trace_id, parent->trace_id, 16);
		memcpy(s->parent_id, parent->span_id, 8);
		s->ctx.flags = parent->flags;
		s->ctx.tracestate = parent->tracestate;
		aw_trace_span_id_new(s->ctx.span_id);
	} else {
		aw_trace_new(&s->ctx);
		memset(s->parent_id, 0, sizeof s->parent_id);
	}
	s->start_unix_ns = 0;   /* worked out when recorded: one clock read less */
	s->start = aw_now();
	s->task = t;
	s->current = make_current && t;
	s->saved = NULL;
	if (s->current) {
		s->saved = t->trace;
		t->trace = &s->ctx;
	}
	s->open = true;
}

void aw_span_end(aw_span *s, int err)
{
	if (!s->open)
		return;
	s->open = false;
	aw_time dur = aw_now() - s->start;
	if (s->current && s->task) {
		if (s->task->trace == &s->ctx)
			s->task->trace = s->saved;
		s->current = false;
	}
	s->error = err < 0 ? err : 0;
	const aw_error *e = err < 0 ? aw_error_current() : NULL;
	s->error_msg = e && e->code == err ? e->msg : NULL;
	span_record(s, dur);
	s->error_msg = NULL;
}

static int span_enter(aw_mgr *m)
{
	aw_span *s = AW_CONTAINER_OF(m, aw_span, mgr);
	aw_span_begin(s, s->name, AW_SPAN_INTERNAL, NULL, true);
	return 0;
}

static int span_exit(aw_mgr *m, int err)
{
	aw_span_end(AW_CONTAINER_OF(m, aw_span, mgr), err);
	return err;
}

static void span_describe(aw_mgr *m, char *buf, size_t len)
{
	aw_span *s = AW_CONTAINER_OF(m, aw_span, mgr);
	char tid[33], sid[17];
	aw_trace_hex(s->ctx.trace_id, 16, tid);
	aw_trace_hex(s->ctx.span_id, 8, sid);
	snprintf(buf, len, "%s trace %s span %s", s->name, tid, sid);
}

static const aw_mgr_ops span_ops = { "span", span_enter, span_exit, span_describe };

aw_mgr *aw_span_init(aw_span *s, const char *name)
{
	memset(s, 0, sizeof *s);
	s->mgr.ops = &span_ops;
	s->name = name;
	return &s->mgr;
}
