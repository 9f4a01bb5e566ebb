/* SPDX-License-Identifier: MIT */
/*
 * awith/log.h — structured logs: levels, text / JSON lines / logfmt,
 * per-task context fields, a callback sink, per-site rate limiting.
 *
 * Part of the core layer (libc only: no dependency on journald or any
 * logging library; a sink callback routes records elsewhere, see
 * examples/journald_sink.c). docs/observability.md, "Logs", shows the
 * output of each format and the field names.
 *
 *     aw_log(AW_LOG_INFO, "listening on port %d", port);
 *     aw_log_kv(AW_LOG_WARN, "slow query", AW_KV_STR("table", "users"), AW_KV_INT("ms", 812));
 *     aw_log_error(AW_LOG_ERROR, aw_error_current(), "GET /users failed");
 *
 * A record is: time (RFC 3339, UTC, milliseconds), level, the running
 * task's name and id, the message, the task's context fields (e.g. the
 * http server's request_id), the call's own fields, and for aw_log_error
 * the error's code, message, location and cause chain. It is formatted as
 * one line in the process-wide format and handed to the sink: by default
 * written to stderr (aw_log_output_set) in one write.
 *
 * Formats (aw_log_format_set, or AWITH_LOG_FORMAT=text|json|logfmt in the
 * environment when the program sets none):
 *
 *   text    2026-12-06T06:12:12.345Z WARN  [main#1] slow query table=users ms=812
 *           (the human form; an error's chain follows on indented lines,
 *           as aw_error_print writes it)
 *   json    {"time":"2026-12-06T06:12:12.345Z","level":"warn","task":"main","task_id":1,
 *            "msg":"slow query","table":"users","ms":812}
 *   logfmt  time=2026-12-06T06:12:12.345Z level=warn task=main task_id=1 msg="slow query" table=users ms=812
 *
 * json and logfmt records are exactly one line: control characters and
 * newlines in any value are escaped. JSON strings are valid UTF-8 (bytes
 * that are not UTF-8 become U+FFFD); logfmt and text write such bytes as
 * \xNN.
 *
 * Every aw_log* call site is rate-limited like aw_log_ratelimited (core.h,
 * "Rate-limited logging": the same aw_log_site and aw_log_limit_set; 10
 * per 5 s by default): the site's next record after drops carries
 * "suppressed":N (json, logfmt) or is preceded by "awith: N similar
 * messages suppressed (file:line)" (text). Records below the level
 * (aw_log_level_set, AWITH_LOG_LEVEL) are dropped before the limit and
 * are not counted.
 *
 * Thread-safe: settings, the sink and the output are process-wide; one
 * lock is held around each sink call, so a sink is never called twice at
 * once and lines from loops on several threads never interleave.
 */
#ifndef AWITH_LOG_H
#define AWITH_LOG_H

#include "awith/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/* ------------------------------------------------------------------------ */
/* Levels and formats                                                       */

typedef enum aw_log_level {
	AW_LOG_DEBUG = 10,
	AW_LOG_INFO = 20,
	AW_LOG_WARN = 30,
	AW_LOG_ERROR = 40,
} aw_log_level;

typedef enum aw_log_format {
	AW_LOG_TEXT = 1, /* human: time LEVEL [task#id] msg key=value ... */
	AW_LOG_JSON,     /* one JSON object per line */
	AW_LOG_LOGFMT,   /* key=value pairs, one record per line */
} aw_log_format;

/* Records below `min` are dropped (not counted by the rate limit).
 * Default AW_LOG_INFO, or AWITH_LOG_LEVEL=debug|info|warn|error. A call
 * overrides the environment. */
void aw_log_level_set(aw_log_level min);
aw_log_level aw_log_level_get(void);
/* Whether a record at `level` would be written (to skip building
 * expensive fields). */
bool aw_log_enabled(aw_log_level level);

/* The line format. Default AW_LOG_TEXT, or AWITH_LOG_FORMAT=text|json|
 * logfmt. A call overrides the environment. */
void aw_log_format_set(aw_log_format f);
aw_log_format aw_log_format_get(void);

/* Names to values for configuration ("debug", "info", "warn" or
 * "warning", "error"; "text", "json", "logfmt"; case-insensitive).
 * Returns 0 and sets *out, or -EINVAL (raised, naming the bad value and
 * the accepted ones). */
int aw_log_level_parse(const char *name, aw_log_level *out) AW_MUST_USE;
int aw_log_format_parse(const char *name, aw_log_format *out) AW_MUST_USE;
/* "debug", "info", "warn", "error" (other values: "level-N"). */
const char *aw_log_level_name(aw_log_level level);

/* ------------------------------------------------------------------------ */
/* Fields                                                                   */

typedef enum aw_log_field_type {
	AW_LOG_FIELD_STR,     /* v.s: p (NULL: null) and len (SIZE_MAX: strlen) */
	AW_LOG_FIELD_INT,     /* v.i */
	AW_LOG_FIELD_FLOAT,   /* v.f, written with %.6g (non-finite: null) */
	AW_LOG_FIELD_BOOL,    /* v.b */
	AW_LOG_FIELD_CAUSES,  /* v.e: an error's cause chain, from v.e on
	                         (json: an array of {"code","message","at"};
	                         logfmt, text: "message (code) at file:line:func
	                         <- ..."). Made by aw_log_error. */
} aw_log_field_type;

typedef struct aw_log_field {
	const char *key;       /* not escaped: use [A-Za-z0-9_.] */
	aw_log_field_type type;
	union {
		struct {
			const char *p;
			size_t len;
		} s;
		int64_t i;
		double f;
		bool b;
		const aw_error *e;
	} v;
} aw_log_field;

/* Field constructors for aw_log_kv and for building arrays. Values are
 * only borrowed for the call. */
#define AW_KV_STR(k, str) ((aw_log_field){ .key = (k), .type = AW_LOG_FIELD_STR, .v.s = { (str), SIZE_MAX } })
#define AW_KV_STRN(k, str, n) ((aw_log_field){ .key = (k), .type = AW_LOG_FIELD_STR, .v.s = { (str), (n) } })
#define AW_KV_INT(k, x) ((aw_log_field){ .key = (k), .type = AW_LOG_FIELD_INT, .v.i = (int64_t)(x) })
#define AW_KV_FLOAT(k, x) ((aw_log_field){ .key = (k), .type = AW_LOG_FIELD_FLOAT, .v.f = (double)(x) })
#define AW_KV_BOOL(k, x) ((aw_log_field){ .key = (k), .type = AW_LOG_FIELD_BOOL, .v.b = (x) })

/* A field's value as plain text, NUL-terminated and truncated to fit
 * `size` (strings unquoted and unescaped; ints and floats as in logfmt;
 * causes as in logfmt): for sinks that hand values to another API, as
 * journald's FIELD=value. Returns the length it would need (snprintf's
 * rule). */
size_t aw_log_field_text(const aw_log_field *f, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Writing records                                                          */

/* Standard field names, in the order records carry them:
 *   time, level, task, task_id (absent outside a task), msg,
 *   the task's context fields (aw_log_context_set), the call's fields,
 *   error_code (negative int), error (message), error_at
 *   ("file:line:function"), error_causes (AW_LOG_FIELD_CAUSES, absent when
 *   there is no cause), suppressed (only after drops).
 * A call's field with a standard name does not replace it: both are
 * written (do not do that). */

/* Log `fmt` at `level` (printf-formatted; the message is truncated at
 * 4 KiB). Returns true if the record was written, false when below the
 * level or dropped by the site's rate limit. */
#define aw_log(level, ...) aw_log_at(AW_LOG_SITE, (level), NULL, NULL, 0, __VA_ARGS__)

/* The same, with error e's code, message, location and cause chain as
 * fields (e NULL: none; in text format the chain follows as indented
 * lines). Does not handle e: the caller still decides (aw_error_clear). */
#define aw_log_error(level, e, ...) aw_log_at(AW_LOG_SITE, (level), (e), NULL, 0, __VA_ARGS__)

/* A fixed message (not a format) with fields:
 *     aw_log_kv(AW_LOG_INFO, "user created", AW_KV_INT("id", id), AW_KV_STR("name", name));
 * At least one field. */
#define aw_log_kv(level, msg, ...)                                                                  \
	aw_log_at(AW_LOG_SITE, (level), NULL, (const aw_log_field[]){ __VA_ARGS__ },                 \
		  sizeof((const aw_log_field[]){ __VA_ARGS__ }) / sizeof(aw_log_field), "%s", (msg))

/* What the macros call: everything explicit. site NULL: not limited. */
bool aw_log_at(aw_log_site *site, aw_log_level level, const aw_error *e, const aw_log_field *fields,
	       size_t nfields, const char *fmt, ...) AW_PRINTF(6, 7);

/* ------------------------------------------------------------------------ */
/* Context fields bound to the running task                                 */

/* Set field `key` to `value` (both copied; value NULL removes the key) on
 * the running task: every record the task writes from now on carries it,
 * until it is removed or the task ends (then it is freed). Outside a
 * task, the fields belong to the calling thread and are carried by
 * records written outside tasks. Records of other tasks never carry it;
 * a spawned task does not inherit it. The http server sets request_id
 * per request (docs/http.md, "Request ids"). Returns 0, -EINVAL (empty
 * key) or -ENOMEM (raised). At most 16 fields per task. */
int aw_log_context_set(const char *key, const char *value) AW_MUST_USE;
/* The running task's (or thread's) value for `key`, or NULL. Valid
 * until the key is set again or removed. */
const char *aw_log_context_get(const char *key);

/* ------------------------------------------------------------------------ */
/* Where records go                                                         */

/* A record as the sink sees it. Everything is borrowed for the call. */
typedef struct aw_log_record {
	aw_log_level level;
	const char *channel;          /* NULL: the program's log; "access": an
	                                 access-log record (the http server);
	                                 other layers may add names ("span") */
	const char *msg;
	const aw_loc *loc;            /* the call site, or NULL */
	const aw_error *error;        /* aw_log_error's error, or NULL */
	int64_t time;                 /* CLOCK_REALTIME, ns since the epoch */
	const char *task;             /* NULL outside a task */
	uint64_t task_id;
	uint64_t suppressed;          /* drops at this site before this record */
	const aw_log_field *fields;   /* every field, in output order, the
	                                 standard ones (time, level, ...) too */
	size_t nfields;
} aw_log_record;

/* A sink receives each record and its formatted line (in the configured
 * format, or the access-log format; len bytes, ending in '\n'; text lines
 * may hold several lines when an error chain follows). Called with the
 * log lock held: never twice at once, so it needs no lock of its own; it
 * must not log (a nested aw_log* call from a sink is dropped) and should
 * not block for long. May be called on any thread running a loop, and
 * outside loops. */
typedef void (*aw_log_sink_fn)(void *ud, const aw_log_record *rec, const char *line, size_t len);

/* Route every record to fn(ud, ...). fn NULL restores the default: write
 * the line to the output (aw_log_output_set) and flush it — except records
 * of channel "access", left to stdio's buffering (whoever owns that FILE
 * flushes it; aw_app_serve does when it returns). aw_log_sink_get returns the
 * current one (fn NULL: the default), so a sink can forward to it. */
void aw_log_sink_set(aw_log_sink_fn fn, void *ud);
void aw_log_sink_get(aw_log_sink_fn *fn, void **ud);
/* The default sink's destination: default stderr; NULL restores it. */
void aw_log_output_set(FILE *out);

/* For layers writing their own record kinds (the http access log, spans):
 * rate-limit at `site` (NULL: not limited), add time, level, task,
 * context fields and the standard fields, and hand the record to the
 * sink. Of *rec only level, channel, msg, loc, error, fields and nfields
 * are read (fields: the caller's own); the rest is filled in. The level
 * filter applies unless opts->unfiltered. opts may be NULL. Returns true if the record was handed
 * to the sink. */
typedef struct aw_log_emit_opts {
	aw_log_format format;   /* 0: the configured one; else the line is
	                           formatted in this one (the access log in
	                           JSON while the program logs text) */
	const char *line;       /* replaces the formatted line (no '\n':
	                           added), e.g. the access log's combined
	                           format; NULL: formatted */
	FILE *out;              /* where the default sink writes this record
	                           (aw_app_access_log's FILE); NULL: the
	                           output */
	bool unfiltered;        /* written whatever the level (the access
	                           log, switched on by its own call) */
} aw_log_emit_opts;
bool aw_log_emit(aw_log_site *site, const aw_log_record *rec, const aw_log_emit_opts *opts);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* AWITH_LOG_H */
