// SPDX-License-Identifier: MIT
/*
 * Tracing in the pg layer (awith/pg.h, aw_pg_opts.trace_comment): a span
 * per statement sent while the task has a trace context, and, when the
 * connection's options ask for it, the context in the statement's text as
 * a sqlcommenter comment at its end holding
 * traceparent='00-<trace>-<span>-01', where <span> is the statement's own
 * span. The server then shows it in
 * pg_stat_activity, its logs (log_statement, log_min_duration_statement)
 * and auto_explain, next to the request that sent it.
 */
#include "internal.h"

#include <ctype.h>
#include <string.h>

/* "pg SELECT": the statement's first word, as OpenTelemetry names
 * database spans by their operation. */
static void span_name(char *out, size_t len, const char *sql)
{
	const char *p = sql;
	while (*p && (isspace((unsigned char)*p) || *p == '('))
		p++;
	size_t n = 0;
	while (isalpha((unsigned char)p[n]) && n < 16)
		n++;
	if (!n) {
		p = "query";
		n = 5;
	}
	/* Copied by hand: snprintf was two thirds of this function's cost,
	 * paid by every statement of a traced request (bench/tfb.sh
	 * --profile db). len >= 4 (every caller's is 24, and n <= 16). */
	if (n + 4 > len)
		n = len - 4;
	memcpy(out, "pg ", 3);
	for (size_t i = 0; i < n; i++)
		out[3 + i] = (char)toupper((unsigned char)p[i]);
	out[3 + n] = '\0';
}

/* sql with the comment appended: before a final ';' (so the text stays
 * one statement for the extended protocol), after a newline when the last
 * line has a "--" comment that would swallow it. NULL: out of memory. */
static char *with_comment(const char *sql, const aw_trace *t)
{
	char tp[AW_TRACEPARENT_LEN + 1];
	aw_trace_format(t, tp);
	size_t len = strlen(sql), end = len;
	while (end && isspace((unsigned char)sql[end - 1]))
		end--;
	bool semi = end && sql[end - 1] == ';';
	size_t body = semi ? end - 1 : end;
	const char *line = sql + body;
	while (line > sql && line[-1] != '\n')
		line--;
	bool dashes = memmem(line, (size_t)(sql + body - line), "--", 2) != NULL;
	char *out;
	if (aw__asprintf(&out, "%.*s%s/*traceparent='%s'*/%s", (int)body, sql, dashes ? "\n" : " ", tp,
			 semi ? ";" : "") < 0)
		return NULL;
	return out;
}

const char *aw_pg_trace_begin(aw_pg_qtrace *qt, const aw_pg_conn *c, const char *sql)
{
	qt->on = false;
	qt->sql = NULL;
	const aw_trace *cur = aw_trace_current();
	if (!cur || !sql)
		return sql;
	span_name(qt->name, sizeof qt->name, sql);
	aw_span_begin(&qt->span, qt->name, AW_SPAN_CLIENT, cur, false);
	qt->on = true;
	if (c && c->opts.trace_comment) {
		qt->sql = with_comment(sql, &qt->span.ctx);
		if (qt->sql)   /* out of memory: the statement goes without */
			return qt->sql;
	}
	return sql;
}

void aw_pg_trace_end(aw_pg_qtrace *qt, int rc)
{
	if (qt->on) {
		qt->on = false;
		aw_span_end(&qt->span, rc < 0 ? rc : 0);
	}
	free(qt->sql);
	qt->sql = NULL;
}
