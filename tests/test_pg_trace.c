// SPDX-License-Identifier: MIT
/* Tests: tracing in the pg layer (src/pg/trace.c) against the real server
 * in DATABASE_URL: the statement text the server sees (pg_stat_activity,
 * read from a second connection while the statement sleeps) carries
 * traceparent as a sqlcommenter comment with the statement's own span id;
 * each statement under a trace is a span; commented statements stay out of
 * the statement cache; a final ';' and a "--" comment keep working. */
#include "pg_util.h"

#include <stdio.h>
#include <string.h>

AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED");

typedef struct rec {
	char name[32], trace[33], span[17], parent[17];
	int error, kind;
	aw_time duration;
} rec;
static rec recs[64];
static int nrecs;

static void sink(const aw_span *s, aw_time duration, void *arg)
{
	(void)arg;
	if (nrecs == 64)
		return;
	rec *r = &recs[nrecs++];
	snprintf(r->name, sizeof r->name, "%s", s->name);
	aw_trace_hex(s->ctx.trace_id, 16, r->trace);
	aw_trace_hex(s->ctx.span_id, 8, r->span);
	aw_trace_hex(s->parent_id, 8, r->parent);
	r->error = s->error;
	r->kind = s->kind;
	r->duration = duration;
}

static const rec *find_rec(const char *name, const char *parent)
{
	for (int i = 0; i < nrecs; i++)
		if (!strcmp(recs[i].name, name) && (!parent || !strcmp(recs[i].parent, parent)))
			return &recs[i];
	return NULL;
}

/* A task that runs `sql` inside a span of its own, on a connection or
 * through a pool. */
typedef struct job {
	aw_pg_conn *c;
	aw_pg_pool *p;
	const char *sql;
	char trace[33], span[17];
	int rc;
} job;

static int job_main(void *arg)
{
	job *j = arg;
	aw_span s;
	AW_WITH(aw_span_init(&s, "request")) {
		aw_trace_hex(s.ctx.trace_id, 16, j->trace);
		aw_trace_hex(s.ctx.span_id, 8, j->span);
		aw_pg_result *r = NULL;
		j->rc = j->c ? aw_pg_query(j->c, &r, j->sql, AW_PG_NOARGS) : aw_pg_pool_query(j->p, &r, j->sql, AW_PG_NOARGS);
		aw_pg_result_free(r);
	}
	return j->rc;
}

/* Run j in a task and read, from `watch`, the text the server shows for
 * it while it sleeps (the statement starts with `prefix`). */
static int run_and_watch(aw_pg_conn *watch, job *j, const char *prefix, char *text, size_t len)
{
	text[0] = 0;
	aw_task *t;
	PCHECK_RC(aw_spawn(&t, job_main, j, "job"), 0);
	char like[128];
	snprintf(like, sizeof like, "%s%%", prefix);
	const char *params[] = { like };
	for (int i = 0; i < 200 && !text[0]; i++) {
		aw_pg_result *r;
		PCHECK_RC(aw_pg_query(watch, &r,
				      "SELECT query FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
				      1, params), 0);
		if (aw_pg_nrows(r) > 0)
			snprintf(text, len, "%s", aw_pg_text(r, 0, 0));
		aw_pg_result_free(r);
		if (!text[0])
			PCHECK_RC(aw_sleep(AW_MS(10)), 0);
	}
	PCHECK_RC(aw_task_join(t), 0);
	return 0;
}

static int comment_main(void *arg)
{
	(void)arg;
	const char *url = PG_URL();
	PCHECK(url);
	aw_pg_opts traced;
	aw_pg_opts_default(&traced);
	traced.trace_comment = true;
	aw_pg_conn *watch, *c, *plain;
	PCHECK_RC(aw_pg_connect(&watch, url, NULL), 0);
	PCHECK_RC(aw_pg_connect(&c, url, &traced), 0);
	PCHECK_RC(aw_pg_connect(&plain, url, NULL), 0);
	char text[512], want[512];

	/* with trace_comment: the comment, with the statement's own span id */
	job j = { .c = c, .sql = "SELECT pg_sleep(0.3)" };
	PCHECK(run_and_watch(watch, &j, "SELECT pg_sleep(0.3)", text, sizeof text) == 0);
	const rec *q = find_rec("pg SELECT", j.span);
	PCHECK(q != NULL);
	PCHECK(strcmp(q->trace, j.trace) == 0);
	PCHECK(q->kind == AW_SPAN_CLIENT);
	PCHECK(q->duration >= AW_MS(300));
	snprintf(want, sizeof want, "SELECT pg_sleep(0.3) /*traceparent='00-%s-%s-01'*/", j.trace, q->span);
	PCHECK_STR(text, want);

	/* without it: the text as written, but still a span */
	nrecs = 0;
	job k = { .c = plain, .sql = "SELECT pg_sleep(0.31)" };
	PCHECK(run_and_watch(watch, &k, "SELECT pg_sleep(0.31)", text, sizeof text) == 0);
	PCHECK_STR(text, "SELECT pg_sleep(0.31)");
	PCHECK(find_rec("pg SELECT", k.span) != NULL);

	/* outside any trace: no comment, no span */
	nrecs = 0;
	aw_pg_result *r;
	PCHECK_RC(aw_pg_query(c, &r, "SELECT 1", AW_PG_NOARGS), 0);
	aw_pg_result_free(r);
	PCHECK(nrecs == 0);
	aw_pg_conn_close(plain);
	aw_pg_conn_close(c);
	aw_pg_conn_close(watch);
	return 0;
}

AW_TEST(pg_statement_text_carries_traceparent_with_its_own_span_id_when_asked)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	PG_RUN(comment_main, NULL);
}

static int pipeline_main(void *arg)
{
	(void)arg;
	const char *url = PG_URL();
	PCHECK(url);
	aw_pg_opts traced;
	aw_pg_opts_default(&traced);
	traced.trace_comment = true;
	aw_pg_conn *watch;
	PCHECK_RC(aw_pg_connect(&watch, url, NULL), 0);
	aw_pg_pool *p;
	aw_pg_pool_opts po = { .dsn = url, .conn = &traced, .max_size = 2, .pipeline = true };
	PCHECK_RC(aw_pg_pool_open(&p, &po), 0);
	char text[512], want[512];
	job j = { .p = p, .sql = "SELECT pg_sleep(0.32)" };
	PCHECK(run_and_watch(watch, &j, "SELECT pg_sleep(0.32)", text, sizeof text) == 0);
	const rec *q = find_rec("pg SELECT", j.span);
	PCHECK(q != NULL);
	snprintf(want, sizeof want, "SELECT pg_sleep(0.32) /*traceparent='00-%s-%s-01'*/", j.trace, q->span);
	PCHECK_STR(text, want);
	PCHECK_RC(aw_pg_pool_close(p), 0);
	aw_pg_conn_close(watch);
	return 0;
}

AW_TEST(pg_pipelined_pool_query_carries_traceparent_too)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	PG_RUN(pipeline_main, NULL);
}

static int cache_main(void *arg)
{
	(void)arg;
	const char *url = PG_URL();
	PCHECK(url);
	aw_pg_opts traced;
	aw_pg_opts_default(&traced);
	traced.trace_comment = true;
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, url, &traced), 0);
	aw_pg_result *r;
	const char *two[] = { "2" };
	aw_span s;
	AW_WITH(aw_span_init(&s, "request")) {
		for (int i = 0; i < 3; i++) {
			PCHECK_RC(aw_pg_query(c, &r, "SELECT $1::int + 1", 1, two), 0);
			PCHECK_STR(aw_pg_text(r, 0, 0), "3");
			aw_pg_result_free(r);
		}
		/* a final ';' and a "--" comment on the last line */
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 4 ;  ", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "4");
		aw_pg_result_free(r);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 5 -- five", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "5");
		aw_pg_result_free(r);
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 6 -- six;", AW_PG_NOARGS), 0);
		PCHECK_STR(aw_pg_text(r, 0, 0), "6");
		aw_pg_result_free(r);
		PCHECK_RC(aw_pg_exec_script(c, "SELECT 1; SELECT 2;"), 0);
		/* a failing statement: its span has the error */
		PCHECK_RC(aw_pg_query(c, &r, "SELECT 1/0", AW_PG_NOARGS), -AW_EPG);
	}
	/* outside the trace: what the statement cache holds has no comment,
	 * and the traced statements never went into it */
	PCHECK_RC(aw_pg_query(c, &r, "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, '/*trace' || 'parent=') > 0",
			      AW_PG_NOARGS), 0);
	PCHECK_STR(aw_pg_text(r, 0, 0), "0");
	aw_pg_result_free(r);
	int spans = 0, failed = 0;
	for (int i = 0; i < nrecs; i++) {
		if (!strncmp(recs[i].name, "pg ", 3))
			spans++;
		if (recs[i].error == -AW_EPG)
			failed++;
	}
	PCHECK(spans == 8);
	PCHECK(failed == 1);
	aw_pg_conn_close(c);
	return 0;
}

AW_TEST(pg_commented_statements_stay_out_of_the_statement_cache_and_keep_semicolons_and_dashes_working)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	PG_RUN(cache_main, NULL);
}

/* A statement's span is named "pg " and its first word in capitals
 * (leading blanks and parentheses skipped, at most 16 letters), or
 * "pg QUERY" when it starts with no word. */
static int names_main(void *arg)
{
	(void)arg;
	aw_pg_conn *c;
	PCHECK_RC(aw_pg_connect(&c, PG_URL(), NULL), 0);
	static const char *const sql[] = {
		"select 1",
		"  (SELECT 2)",
		"\n\twith x as (select 3) select * from x",
		";",
		"abcdefghijklmnopqrstuvwxyz",   /* 26 letters: an error, named by its first 16 */
	};
	static const char *const want[] = { "pg SELECT", "pg SELECT", "pg WITH", "pg QUERY", "pg ABCDEFGHIJKLMNOP" };
	aw_span s;
	AW_WITH(aw_span_init(&s, "request")) {
		for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
			aw_pg_result *r = NULL;
			if (aw_pg_query(c, &r, sql[i], AW_PG_NOARGS) < 0)
				aw_error_clear();   /* ";" and the long word fail: their spans still count */
			aw_pg_result_free(r);
		}
	}
	PCHECK(nrecs == 6);   /* five statements and the request */
	for (size_t i = 0; i < sizeof want / sizeof *want; i++)
		PCHECK_STR(recs[i].name, want[i]);
	aw_pg_conn_close(c);
	return 0;
}

AW_TEST(pg_span_names_are_the_statements_first_word_in_capitals)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	PG_RUN(names_main, NULL);
}
