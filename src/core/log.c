/* SPDX-License-Identifier: MIT */
/*
 * Rate-limited logging per message site (awith/core.h, "Rate-limited
 * logging"). A site is a static record at the call site; its counters
 * change under one process-wide lock, since workers of one process may run
 * loops on several threads. The window is fixed (not sliding): `burst`
 * messages from the start of an interval, then none until it ends. Cheap
 * when dropping: a lock, a clock read, two compares.
 */
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>

#define DEFAULT_BURST 10
#define DEFAULT_INTERVAL AW_SEC(5)

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned log_burst = DEFAULT_BURST;
static aw_time log_interval = DEFAULT_INTERVAL;
static aw_log_site *dropping;   /* sites that dropped something, ever */

void aw_log_limit_set(unsigned burst, aw_time interval)
{
	pthread_mutex_lock(&log_lock);
	log_burst = burst;
	log_interval = interval > 0 ? interval : DEFAULT_INTERVAL;
	pthread_mutex_unlock(&log_lock);
}

bool aw_log_allow(aw_log_site *site, uint64_t *suppressed)
{
	if (suppressed)
		*suppressed = 0;
	if (!site)
		return true;
	bool ok;
	pthread_mutex_lock(&log_lock);
	if (log_burst == 0) {
		ok = true;
	} else {
		aw_time now = aw_now();
		if (site->printed == 0 || now - site->window >= log_interval) {
			site->window = now;
			site->printed = 0;
		}
		ok = site->printed < log_burst;
		if (ok) {
			site->printed++;
		} else {
			site->suppressed++;
			if (!site->listed) {
				site->listed = true;
				site->next = dropping;
				dropping = site;
			}
		}
	}
	if (ok) {
		if (suppressed)
			*suppressed = site->suppressed;
		site->suppressed = 0;
	}
	pthread_mutex_unlock(&log_lock);
	return ok;
}

bool aw_log_ratelimited_at(aw_log_site *site, FILE *out, const aw_error *e, const char *fmt, ...)
{
	uint64_t dropped;
	if (!aw_log_allow(site, &dropped))
		return false;
	if (!out)
		out = stderr;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	flockfile(out);
	if (dropped)
		fprintf(out, "awith: %llu similar messages suppressed (%s:%d)\n", (unsigned long long)dropped,
			site ? site->loc.file : "?", site ? site->loc.line : 0);
	fprintf(out, "%s\n", line);
	if (e)
		aw_error_print(out, e);
	fflush(out);
	funlockfile(out);
	return true;
}

static bool flush_one(const aw_loc *loc, uint64_t n, FILE *out);

/* Counts are taken under the lock, then written outside it (through the
 * sink, which takes its own). */
void aw_log_flush(FILE *out)
{
	for (;;) {
		const aw_loc *loc = NULL;
		uint64_t n = 0;
		pthread_mutex_lock(&log_lock);
		for (aw_log_site *s = dropping; s; s = s->next) {
			if (s->suppressed) {
				loc = &s->loc;
				n = s->suppressed;
				s->suppressed = 0;
				break;
			}
		}
		pthread_mutex_unlock(&log_lock);
		if (!loc)
			break;
		flush_one(loc, n, out);
	}
	if (out)
		fflush(out);
}

/* ======================================================================== */
/* Structured records (awith/log.h)                                         */
/*
 * A record is assembled on the caller's stack: the standard fields, the
 * task's context fields, the call's fields, the error's fields, into one
 * array; then formatted into one buffer (a small one on the stack,
 * growing on the heap) and handed to the sink under sink_lock, so a line
 * is one write and a sink is never entered twice at once. Settings are
 * atomics read without a lock; the environment is read once, on first
 * use, and an explicit setter wins over it.
 */
#include "awith/log.h"

#include <math.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>

#define CTX_MAX 16
#define MSG_MAX 4096
#define STACK_FIELDS 32

/* A removed key keeps its buffers (live = false), so a connection task
 * that sets and removes request_id per request allocates once. */
struct aw_log_ctx {
	unsigned n;
	struct {
		char *key, *val;
		size_t cap;   /* bytes at val */
		bool live;
	} kv[CTX_MAX];
};

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static _Atomic int cur_level = AW_LOG_INFO;
static _Atomic int cur_format = AW_LOG_TEXT;
static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static aw_log_sink_fn sink_fn;
static void *sink_ud;
static FILE *sink_out;
static __thread bool in_sink;
static __thread struct aw_log_ctx *thread_ctx;
static pthread_key_t thread_ctx_key;

static void thread_ctx_dtor(void *p)
{
	struct aw_log_ctx *c = p;
	aw__log_context_free(&c);
}

static bool level_from(const char *name, aw_log_level *out);
static bool format_from(const char *name, aw_log_format *out);

/* No raise here: the first record may be logged while the caller's own
 * error is in flight. */
static void read_env(void)
{
	(void)pthread_key_create(&thread_ctx_key, thread_ctx_dtor);
	const char *v = getenv("AWITH_LOG_LEVEL");
	if (v && *v) {
		aw_log_level l;
		if (level_from(v, &l))
			atomic_store(&cur_level, l);
		else
			fprintf(stderr, "awith: AWITH_LOG_LEVEL=%s: not one of debug, info, warn, error; using info\n", v);
	}
	v = getenv("AWITH_LOG_FORMAT");
	if (v && *v) {
		aw_log_format f;
		if (format_from(v, &f))
			atomic_store(&cur_format, f);
		else
			fprintf(stderr, "awith: AWITH_LOG_FORMAT=%s: not one of text, json, logfmt; using text\n", v);
	}
}

static void settings_init(void) { pthread_once(&env_once, read_env); }

void aw_log_level_set(aw_log_level min)
{
	settings_init();
	atomic_store(&cur_level, min);
}

aw_log_level aw_log_level_get(void)
{
	settings_init();
	return (aw_log_level)atomic_load_explicit(&cur_level, memory_order_relaxed);
}

bool aw_log_enabled(aw_log_level level) { return (int)level >= (int)aw_log_level_get(); }

void aw_log_format_set(aw_log_format f)
{
	settings_init();
	if (f >= AW_LOG_TEXT && f <= AW_LOG_LOGFMT)
		atomic_store(&cur_format, f);
}

aw_log_format aw_log_format_get(void)
{
	settings_init();
	return (aw_log_format)atomic_load_explicit(&cur_format, memory_order_relaxed);
}

static bool level_from(const char *name, aw_log_level *out)
{
	static const struct {
		const char *name;
		aw_log_level level;
	} names[] = { { "debug", AW_LOG_DEBUG }, { "info", AW_LOG_INFO },       { "warn", AW_LOG_WARN },
		      { "warning", AW_LOG_WARN }, { "error", AW_LOG_ERROR } };
	for (size_t i = 0; name && i < sizeof names / sizeof names[0]; i++)
		if (strcasecmp(name, names[i].name) == 0) {
			*out = names[i].level;
			return true;
		}
	return false;
}

int aw_log_level_parse(const char *name, aw_log_level *out)
{
	if (level_from(name, out))
		return 0;
	return aw_raise(-EINVAL, "log level '%s': expected debug, info, warn or error", name ? name : "(null)");
}

static bool format_from(const char *name, aw_log_format *out)
{
	static const char *const names[] = { "text", "json", "logfmt" };
	for (int i = 0; name && i < 3; i++)
		if (strcasecmp(name, names[i]) == 0) {
			*out = (aw_log_format)(AW_LOG_TEXT + i);
			return true;
		}
	return false;
}

int aw_log_format_parse(const char *name, aw_log_format *out)
{
	if (format_from(name, out))
		return 0;
	return aw_raise(-EINVAL, "log format '%s': expected text, json or logfmt", name ? name : "(null)");
}

const char *aw_log_level_name(aw_log_level level)
{
	switch (level) {
	case AW_LOG_DEBUG: return "debug";
	case AW_LOG_INFO: return "info";
	case AW_LOG_WARN: return "warn";
	case AW_LOG_ERROR: return "error";
	}
	static __thread char other[24];
	snprintf(other, sizeof other, "level-%d", (int)level);
	return other;
}

/* ---- context fields ----------------------------------------------------- */

void aw__log_context_free(struct aw_log_ctx **ctx)
{
	struct aw_log_ctx *c = *ctx;
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++) {
		free(c->kv[i].key);
		free(c->kv[i].val);
	}
	free(c);
	*ctx = NULL;
}

static struct aw_log_ctx **ctx_slot(void)
{
	aw_task *t = aw_task_current();
	return t ? &t->logctx : &thread_ctx;
}

static bool key_ok(const char *k)
{
	if (!k || !*k)
		return false;
	for (; *k; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') || *k == '_' ||
		      *k == '.'))
			return false;
	return true;
}

int aw_log_context_set(const char *key, const char *value)
{
	if (!key_ok(key))
		return aw_raise(-EINVAL, "log context key '%s': use letters, digits, '_' and '.'", key ? key : "(null)");
	settings_init();
	struct aw_log_ctx **slot = ctx_slot();
	struct aw_log_ctx *c = *slot;
	unsigned i = 0;
	for (; c && i < c->n; i++)
		if (strcmp(c->kv[i].key, key) == 0)
			break;
	if (!value) {
		if (c && i < c->n)
			c->kv[i].live = false;
		return 0;
	}
	size_t len = strlen(value);
	if (c && i < c->n && c->kv[i].cap > len) {
		memcpy(c->kv[i].val, value, len + 1);
		c->kv[i].live = true;
		return 0;
	}
	size_t cap = len + 1 < 32 ? 32 : len + 1;
	char *v = aw__malloc(cap);
	if (!v)
		return aw_raise(-ENOMEM, "log context %s: no memory", key);
	memcpy(v, value, len + 1);
	if (c && i < c->n) {
		free(c->kv[i].val);
		c->kv[i].val = v;
		c->kv[i].cap = cap;
		c->kv[i].live = true;
		return 0;
	}
	if (c && c->n == CTX_MAX) {
		/* Reuse a removed key's slot before refusing. */
		for (i = 0; i < c->n && c->kv[i].live; i++)
			;
		if (i == c->n) {
			free(v);
			return aw_raise(-EINVAL, "log context %s: already %d fields on this task", key, CTX_MAX);
		}
		char *k = aw__strdup(key);
		if (!k) {
			free(v);
			return aw_raise(-ENOMEM, "log context %s: no memory", key);
		}
		free(c->kv[i].key);
		free(c->kv[i].val);
		memmove(&c->kv[i], &c->kv[i + 1], (c->n - i - 1) * sizeof c->kv[0]);
		c->n--;
		c->kv[c->n].key = k;
		c->kv[c->n].val = v;
		c->kv[c->n].cap = cap;
		c->kv[c->n].live = true;
		c->n++;
		return 0;
	}
	if (!c) {
		c = aw__calloc(1, sizeof *c);
		if (!c) {
			free(v);
			return aw_raise(-ENOMEM, "log context %s: no memory", key);
		}
		*slot = c;
		if (slot == &thread_ctx)
			(void)pthread_setspecific(thread_ctx_key, c);
	}
	char *k = aw__strdup(key);
	if (!k) {
		free(v);
		return aw_raise(-ENOMEM, "log context %s: no memory", key);
	}
	c->kv[c->n].key = k;
	c->kv[c->n].val = v;
	c->kv[c->n].cap = cap;
	c->kv[c->n].live = true;
	c->n++;
	return 0;
}

const char *aw_log_context_get(const char *key)
{
	struct aw_log_ctx *c = *ctx_slot();
	for (unsigned i = 0; key && c && i < c->n; i++)
		if (c->kv[i].live && strcmp(c->kv[i].key, key) == 0)
			return c->kv[i].val;
	return NULL;
}

/* ---- the line buffer ---------------------------------------------------- */

typedef struct sbuf {
	char *p;
	size_t len, cap;
	bool heap;
} sbuf;

static bool sb_grow(sbuf *b, size_t need)
{
	if (b->len + need + 1 <= b->cap)
		return true;
	size_t cap = b->cap * 2;
	while (cap < b->len + need + 1)
		cap *= 2;
	char *p = b->heap ? aw__realloc(b->p, cap) : aw__malloc(cap);
	if (!p)
		return false;   /* out of memory: the line is cut short */
	if (!b->heap)
		memcpy(p, b->p, b->len);
	b->p = p;
	b->cap = cap;
	b->heap = true;
	return true;
}

static void sb_put(sbuf *b, const char *s, size_t n)
{
	if (!sb_grow(b, n))
		n = b->cap - b->len - 1;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_ch(sbuf *b, char c) { sb_put(b, &c, 1); }

static void AW_PRINTF(2, 3) sb_printf(sbuf *b, const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The length of the valid UTF-8 sequence at p, or 0 (overlong forms,
 * surrogates and code points past U+10FFFF are not valid). */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
	unsigned c = p[0];
	size_t n;
	unsigned min, cp;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, min = 0x80, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, min = 0x800, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if (left < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void json_str(sbuf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	sb_ch(b, '"');
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		if (c < 0x80) {
			switch (c) {
			case '"': sb_put(b, "\\\"", 2); break;
			case '\\': sb_put(b, "\\\\", 2); break;
			case '\n': sb_put(b, "\\n", 2); break;
			case '\r': sb_put(b, "\\r", 2); break;
			case '\t': sb_put(b, "\\t", 2); break;
			default:
				if (c < 0x20 || c == 0x7f)
					sb_printf(b, "\\u%04x", c);
				else
					sb_ch(b, (char)c);
			}
			i++;
			continue;
		}
		size_t n = utf8_seq(p + i, len - i);
		if (n) {
			sb_put(b, s + i, n);
			i += n;
		} else {
			sb_put(b, "\\ufffd", 6);
			i++;
		}
	}
	sb_ch(b, '"');
}

/* Escape for logfmt and text: quotes and backslashes (when quoted),
 * \n \r \t, other control bytes and bytes that are not UTF-8 as \xNN. */
static void esc_str(sbuf *b, const char *s, size_t len, bool quoted)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		if (c >= 0x80) {
			size_t n = utf8_seq(p + i, len - i);
			if (n) {
				sb_put(b, s + i, n);
				i += n;
			} else {
				sb_printf(b, "\\x%02x", c);
				i++;
			}
			continue;
		}
		if (c == '\n')
			sb_put(b, "\\n", 2);
		else if (c == '\r')
			sb_put(b, "\\r", 2);
		else if (c == '\t')
			sb_put(b, "\\t", 2);
		else if (c < 0x20 || c == 0x7f)
			sb_printf(b, "\\x%02x", c);
		else if (quoted && (c == '"' || c == '\\'))
			sb_ch(b, '\\'), sb_ch(b, (char)c);
		else
			sb_ch(b, (char)c);
		i++;
	}
}

static void logfmt_str(sbuf *b, const char *s, size_t len)
{
	bool quote = len == 0;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len && !quote;) {
		unsigned c = p[i];
		if (c <= ' ' || c == '=' || c == '"' || c == 0x7f || c == '\\') {
			quote = true;
		} else if (c >= 0x80) {
			size_t n = utf8_seq(p + i, len - i);
			if (!n)
				quote = true;
			i += n ? n : 1;
			continue;
		}
		i++;
	}
	if (quote)
		sb_ch(b, '"');
	esc_str(b, s, len, quote);
	if (quote)
		sb_ch(b, '"');
}

static size_t field_len(const aw_log_field *f)
{
	return f->v.s.len == SIZE_MAX ? strlen(f->v.s.p) : f->v.s.len;
}

static void loc_text(sbuf *b, const aw_loc *loc)
{
	if (loc)
		sb_printf(b, "%s:%d:%s", loc->file, loc->line, loc->func ? loc->func : "?");
}

/* The cause chain as one plain string: "msg (code) at file:line:func <- ...". */
static void causes_text(sbuf *b, const aw_error *e)
{
	for (; e; e = e->cause) {
		sb_str(b, e->msg ? e->msg : "");
		sb_printf(b, " (%d)", e->code);
		if (e->loc) {
			sb_str(b, " at ");
			loc_text(b, e->loc);
		}
		if (e->cause)
			sb_str(b, " <- ");
	}
}

static void number(sbuf *b, const aw_log_field *f)
{
	if (f->type == AW_LOG_FIELD_INT)
		sb_printf(b, "%lld", (long long)f->v.i);
	else if (f->type == AW_LOG_FIELD_BOOL)
		sb_str(b, f->v.b ? "true" : "false");
	else if (!isfinite(f->v.f))
		sb_str(b, "null");
	else
		sb_printf(b, "%.6g", f->v.f);
}

static void json_value(sbuf *b, const aw_log_field *f)
{
	switch (f->type) {
	case AW_LOG_FIELD_STR:
		if (!f->v.s.p)
			sb_str(b, "null");
		else
			json_str(b, f->v.s.p, field_len(f));
		break;
	case AW_LOG_FIELD_CAUSES:
		sb_ch(b, '[');
		for (const aw_error *e = f->v.e; e; e = e->cause) {
			sb_printf(b, "{\"code\":%d,\"message\":", e->code);
			json_str(b, e->msg ? e->msg : "", e->msg ? strlen(e->msg) : 0);
			if (e->loc) {
				char at[512];
				snprintf(at, sizeof at, "%s:%d:%s", e->loc->file, e->loc->line,
					 e->loc->func ? e->loc->func : "?");
				sb_str(b, ",\"at\":");
				json_str(b, at, strlen(at));
			}
			sb_ch(b, '}');
			if (e->cause)
				sb_ch(b, ',');
		}
		sb_ch(b, ']');
		break;
	default:
		number(b, f);
	}
}

static void logfmt_value(sbuf *b, const aw_log_field *f)
{
	switch (f->type) {
	case AW_LOG_FIELD_STR:
		if (!f->v.s.p)
			sb_str(b, "null");
		else
			logfmt_str(b, f->v.s.p, field_len(f));
		break;
	case AW_LOG_FIELD_CAUSES: {
		char small[256];
		sbuf t = { small, 0, sizeof small, false };
		small[0] = 0;
		causes_text(&t, f->v.e);
		logfmt_str(b, t.p, t.len);
		if (t.heap)
			free(t.p);
		break;
	}
	default:
		number(b, f);
	}
}

size_t aw_log_field_text(const aw_log_field *f, char *buf, size_t size)
{
	char small[256];
	sbuf t = { small, 0, sizeof small, false };
	small[0] = 0;
	switch (f->type) {
	case AW_LOG_FIELD_STR:
		if (f->v.s.p)
			sb_put(&t, f->v.s.p, field_len(f));
		else
			sb_str(&t, "null");
		break;
	case AW_LOG_FIELD_CAUSES: causes_text(&t, f->v.e); break;
	default: number(&t, f);
	}
	size_t n = t.len;
	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(buf, t.p, c);
		buf[c] = 0;
	}
	if (t.heap)
		free(t.p);
	return n;
}

/* ---- formats ------------------------------------------------------------ */

static void format_json(sbuf *b, const aw_log_field *f, size_t n)
{
	sb_ch(b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_ch(b, ',');
		json_str(b, f[i].key, strlen(f[i].key));
		sb_ch(b, ':');
		json_value(b, &f[i]);
	}
	sb_str(b, "}\n");
}

static void format_logfmt(sbuf *b, const aw_log_field *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_ch(b, ' ');
		sb_str(b, f[i].key);
		sb_ch(b, '=');
		logfmt_value(b, &f[i]);
	}
	sb_ch(b, '\n');
}

static int write_error_chain(sbuf *b, const aw_error *e)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&mem, &len);
	if (!m)
		return -1;
	aw_error_print(m, e);
	fclose(m);
	sb_put(b, mem, len);
	free(mem);
	return 0;
}

/* text: time LEVEL [task#id] msg key=value ...; the error's chain follows
 * on its own lines, as aw_error_print writes it. std: how many of the
 * fields are the standard ones shown in the prefix. */
static void format_text(sbuf *b, const aw_log_record *r, const char *time, const aw_log_field *f, size_t n,
			size_t std)
{
	if (r->suppressed && r->loc)
		sb_printf(b, "awith: %llu similar messages suppressed (%s:%d)\n", (unsigned long long)r->suppressed,
			  r->loc->file, r->loc->line);
	char lv[32];   /* the name of any level (an unknown one is longer) */
	snprintf(lv, sizeof lv, "%-5s", aw_log_level_name(r->level));
	for (char *p = lv; *p; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	sb_printf(b, "%s %s ", time, lv);
	if (r->task) {
		sb_ch(b, '[');
		esc_str(b, r->task, strlen(r->task), false);
		sb_printf(b, "#%llu] ", (unsigned long long)r->task_id);
	}
	esc_str(b, r->msg, strlen(r->msg), false);
	for (size_t i = std; i < n; i++) {
		if (r->error && strncmp(f[i].key, "error", 5) == 0 && (f[i].key[5] == 0 || f[i].key[5] == '_'))
			continue;   /* shown below, in aw_error_print's form */
		if (strcmp(f[i].key, "suppressed") == 0)
			continue;   /* shown above */
		sb_ch(b, ' ');
		sb_str(b, f[i].key);
		sb_ch(b, '=');
		logfmt_value(b, &f[i]);
	}
	sb_ch(b, '\n');
	if (r->error)
		write_error_chain(b, r->error);
}

/* ---- emitting ----------------------------------------------------------- */

static void time_text(char out[64], int64_t ns)
{
	time_t s = (time_t)(ns / 1000000000);
	struct tm tm;
	gmtime_r(&s, &tm);
	snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ns / 1000000 % 1000));
}

static void sink_write(const aw_log_record *rec, const char *line, size_t len, FILE *out)
{
	pthread_mutex_lock(&sink_lock);
	in_sink = true;
	if (sink_fn) {
		sink_fn(sink_ud, rec, line, len);
	} else {
		if (!out)
			out = sink_out ? sink_out : stderr;
		fwrite(line, 1, len, out);
		/* Records reach the file at once; access records ride on stdio's
		 * buffer (a write per buffer, not per request: a flush each cost
		 * a quarter of a hello server's requests/s). */
		if (!rec->channel || strcmp(rec->channel, "access") != 0)
			fflush(out);
	}
	in_sink = false;
	pthread_mutex_unlock(&sink_lock);
}

/* The record passed the level and the site's limit: build and hand it on. */
static bool emit_allowed(const aw_log_record *in, uint64_t dropped, const aw_log_emit_opts *opts)
{
	if (in_sink)
		return false;   /* a sink that logs: dropped, not a deadlock */
	aw_log_record r = *in;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r.time = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	aw_task *t = aw_task_current();
	r.task = t ? aw_task_name(t) : NULL;
	r.task_id = t ? aw_task_id(t) : 0;
	r.suppressed = dropped;
	if (!r.msg)
		r.msg = "";
	struct aw_log_ctx *ctx = *ctx_slot();
	size_t nctx = ctx ? ctx->n : 0;
	size_t max = 5 + nctx + in->nfields + 4 + 1;
	aw_log_field stackf[STACK_FIELDS];
	aw_log_field *f = max <= STACK_FIELDS ? stackf : aw__malloc(max * sizeof *f);
	if (!f) {
		f = stackf;   /* no memory: the call's fields are left out */
		r.nfields = 0;
		nctx = nctx > 16 ? 16 : nctx;
	}
	char time[64], at[512];
	time_text(time, r.time);
	size_t n = 0;
	f[n++] = AW_KV_STR("time", time);
	f[n++] = AW_KV_STR("level", aw_log_level_name(r.level));
	if (r.task) {
		f[n++] = AW_KV_STR("task", r.task);
		f[n++] = AW_KV_INT("task_id", r.task_id);
	}
	f[n++] = AW_KV_STR("msg", r.msg);
	size_t std = n;
	for (size_t i = 0; i < nctx; i++)
		if (ctx->kv[i].live)
			f[n++] = AW_KV_STR(ctx->kv[i].key, ctx->kv[i].val);
	for (size_t i = 0; i < r.nfields; i++)
		f[n++] = r.fields[i];
	if (r.error) {
		const aw_error *e = r.error;
		f[n++] = AW_KV_INT("error_code", e->code);
		f[n++] = AW_KV_STR("error", e->msg ? e->msg : "");
		if (e->loc) {
			snprintf(at, sizeof at, "%s:%d:%s", e->loc->file, e->loc->line, e->loc->func ? e->loc->func : "?");
			f[n++] = AW_KV_STR("error_at", at);
		}
		if (e->cause)
			f[n++] = (aw_log_field){ .key = "error_causes", .type = AW_LOG_FIELD_CAUSES, .v.e = e->cause };
	}
	if (dropped)
		f[n++] = AW_KV_INT("suppressed", dropped);
	r.fields = f;
	r.nfields = n;

	char small[512];
	sbuf b = { small, 0, sizeof small, false };
	small[0] = 0;
	aw_log_format fmt = opts && opts->format ? opts->format : aw_log_format_get();
	if (opts && opts->line) {
		sb_str(&b, opts->line);
		sb_ch(&b, '\n');
	} else if (fmt == AW_LOG_JSON) {
		format_json(&b, f, n);
	} else if (fmt == AW_LOG_LOGFMT) {
		format_logfmt(&b, f, n);
	} else {
		format_text(&b, &r, time, f, n, std);
	}
	if (b.len == 0 || b.p[b.len - 1] != '\n') {
		/* Cut short by a failed allocation: still one line. */
		if (b.len)
			b.p[b.len - 1] = '\n';
		else
			sb_ch(&b, '\n');
	}
	sink_write(&r, b.p, b.len, opts ? opts->out : NULL);
	if (b.heap)
		free(b.p);
	if (f != stackf)
		free(f);
	return true;
}

bool aw_log_emit(aw_log_site *site, const aw_log_record *rec, const aw_log_emit_opts *opts)
{
	if (!rec || (!(opts && opts->unfiltered) && !aw_log_enabled(rec->level)))
		return false;
	uint64_t dropped;
	if (!aw_log_allow(site, &dropped))
		return false;
	aw_log_record r = *rec;
	if (!r.loc && site)
		r.loc = &site->loc;
	return emit_allowed(&r, dropped, opts);
}

bool aw_log_at(aw_log_site *site, aw_log_level level, const aw_error *e, const aw_log_field *fields, size_t nfields,
	       const char *fmt, ...)
{
	if (!aw_log_enabled(level))
		return false;
	uint64_t dropped;
	if (!aw_log_allow(site, &dropped))
		return false;
	char small[256];
	char *msg = small;
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (len >= (int)sizeof small) {
		size_t cap = (size_t)len + 1 > MSG_MAX ? MSG_MAX : (size_t)len + 1;
		char *big = aw__malloc(cap);
		if (big) {
			va_start(ap, fmt);
			vsnprintf(big, cap, fmt, ap);
			va_end(ap);
			msg = big;
		}
	}
	aw_log_record r = {
		.level = level,
		.msg = msg,
		.loc = site ? &site->loc : NULL,
		.error = e,
		.fields = fields,
		.nfields = nfields,
	};
	bool ok = emit_allowed(&r, dropped, NULL);
	if (msg != small)
		free(msg);
	return ok;
}

void aw_log_sink_set(aw_log_sink_fn fn, void *ud)
{
	pthread_mutex_lock(&sink_lock);
	sink_fn = fn;
	sink_ud = fn ? ud : NULL;
	pthread_mutex_unlock(&sink_lock);
}

void aw_log_sink_get(aw_log_sink_fn *fn, void **ud)
{
	pthread_mutex_lock(&sink_lock);
	if (fn)
		*fn = sink_fn;
	if (ud)
		*ud = sink_ud;
	pthread_mutex_unlock(&sink_lock);
}

void aw_log_output_set(FILE *out)
{
	pthread_mutex_lock(&sink_lock);
	sink_out = out;
	pthread_mutex_unlock(&sink_lock);
}

/* One pending count from aw_log_flush: in text the line aw_log_ratelimited
 * writes; in json and logfmt a record with the site and the count. */
static bool flush_one(const aw_loc *loc, uint64_t n, FILE *out)
{
	char line[512], site[400];
	snprintf(site, sizeof site, "%s:%d", loc->file, loc->line);
	snprintf(line, sizeof line, "awith: %llu similar messages suppressed (%s)", (unsigned long long)n, site);
	aw_log_field f[] = { AW_KV_STR("site", site), AW_KV_INT("suppressed", n) };
	aw_log_record r = {
		.level = AW_LOG_WARN, .msg = "similar messages suppressed", .loc = loc, .fields = f, .nfields = 2
	};
	aw_log_emit_opts o = { .line = aw_log_format_get() == AW_LOG_TEXT ? line : NULL, .out = out };
	if (in_sink)
		return false;
	return emit_allowed(&r, 0, &o);
}
