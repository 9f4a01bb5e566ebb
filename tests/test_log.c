/* SPDX-License-Identifier: MIT */
/* Tests: rate-limited logging per message site (src/core/log.c). A fake
 * burst: many messages from one site in a tight loop, into a memory
 * stream, lines counted. */
#include "harness.h"

#include "awith/core.h"
#include "awith/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int count_lines(const char *s, const char *containing)
{
	int n = 0;
	for (const char *p = s; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (!containing || memmem(p, len, containing, strlen(containing)))
			n++;
		p = nl ? nl + 1 : NULL;
	}
	return n;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* The same site called in a loop: one record. */
static bool log_from_one_site(FILE *out, int i)
{
	return aw_log_ratelimited(out, NULL, "request %d failed: database unavailable", i);
}

AW_TEST(log_site_prints_a_burst_then_reports_how_many_it_suppressed)
{
	aw_log_limit_set(3, AW_MS(300));
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	CHECK(out);
	int printed = 0;
	for (int i = 0; i < 10000; i++)
		printed += log_from_one_site(out, i);
	CHECK_EQ(printed, 3);
	sleep_ms(350);
	CHECK(log_from_one_site(out, 10000));
	fclose(out);
	CHECK_EQ(count_lines(buf, NULL), 5);
	CHECK_EQ(count_lines(buf, "database unavailable"), 4);
	CHECK(strstr(buf, "request 0 failed") && strstr(buf, "request 2 failed") && !strstr(buf, "request 3 failed"));
	CHECK(strstr(buf, "awith: 9997 similar messages suppressed (") != NULL);
	CHECK(strstr(buf, "test_log.c:") != NULL);
	/* The count comes right before the next printed message. */
	CHECK(strstr(buf, "suppressed (") < strstr(buf, "request 10000 failed"));
	free(buf);
}

AW_TEST(log_sites_are_limited_separately)
{
	aw_log_limit_set(2, AW_SEC(60));
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	CHECK(out);
	for (int i = 0; i < 100; i++) {
		aw_log_ratelimited(out, NULL, "site A %d", i);
		aw_log_ratelimited(out, NULL, "site B %d", i);
	}
	fclose(out);
	CHECK_EQ(count_lines(buf, "site A"), 2);
	CHECK_EQ(count_lines(buf, "site B"), 2);
	free(buf);
}

AW_TEST(log_limit_zero_prints_everything_and_errors_come_with_their_cause)
{
	aw_log_limit_set(0, AW_SEC(1));
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	CHECK(out);
	(void)!aw_raise(-ECONNREFUSED, "cannot connect");
	for (int i = 0; i < 50; i++)
		CHECK(aw_log_ratelimited(out, aw_error_current(), "line %d", i));
	aw_error_clear();
	fclose(out);
	CHECK_EQ(count_lines(buf, "line "), 50);
	CHECK_EQ(count_lines(buf, "cannot connect"), 50);
	free(buf);
}

AW_TEST(log_allow_hands_the_suppressed_count_to_callers_with_their_own_format)
{
	aw_log_limit_set(1, AW_MS(100));
	aw_log_site *s = AW_LOG_SITE;
	uint64_t dropped = 99;
	CHECK(aw_log_allow(s, &dropped));
	CHECK_EQ(dropped, 0);
	for (int i = 0; i < 41; i++)
		CHECK(!aw_log_allow(s, &dropped));
	sleep_ms(150);
	CHECK(aw_log_allow(s, &dropped));
	CHECK_EQ(dropped, 41);
	CHECK(!aw_log_allow(s, NULL));
	CHECK(aw_log_allow(NULL, &dropped));
}

AW_TEST(log_flush_reports_counts_still_pending)
{
	aw_log_limit_set(2, AW_SEC(60));
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	CHECK(out);
	for (int i = 0; i < 30; i++)
		aw_log_ratelimited(out, NULL, "flood %d", i);
	aw_log_flush(out);
	aw_log_flush(out);   /* reported once */
	fclose(out);
	CHECK_EQ(count_lines(buf, "flood"), 2);
	CHECK_EQ(count_lines(buf, "awith: 28 similar messages suppressed ("), 1);
	CHECK(strstr(buf, "test_log.c:") != NULL);
	CHECK_EQ(count_lines(buf, "suppressed"), 1);
	free(buf);
}

/* ======================================================================== */
/* Structured records (awith/log.h). A capturing sink keeps every line and
 * record; lines are compared exactly with the time value replaced by T. */

typedef struct capture {
	char lines[64][1024];
	aw_log_level levels[64];
	char channel[64][16];
	char fields[64][512];   /* "key=value;" from aw_log_field_text */
	int n;
} capture;

static void capture_sink(void *ud, const aw_log_record *rec, const char *line, size_t len)
{
	capture *c = ud;
	if (c->n >= 64)
		return;
	int i = c->n++;
	snprintf(c->lines[i], sizeof c->lines[i], "%.*s", (int)len, line);
	c->levels[i] = rec->level;
	snprintf(c->channel[i], sizeof c->channel[i], "%s", rec->channel ? rec->channel : "");
	size_t o = 0;
	for (size_t k = 0; k < rec->nfields && o < sizeof c->fields[i]; k++) {
		char v[256];
		aw_log_field_text(&rec->fields[k], v, sizeof v);
		o += (size_t)snprintf(c->fields[i] + o, sizeof c->fields[i] - o, "%s=%s;", rec->fields[k].key, v);
	}
}

/* The line with the time value (RFC 3339, 24 chars) replaced by "T";
 * checks the time's shape too. */
static const char *untimed(const char *line)
{
	static char out[1024];
	const char *t = strstr(line, "20");
	if (!t || strlen(t) < 24 || t[4] != '-' || t[10] != 'T' || t[19] != '.' || t[23] != 'Z')
		return line;
	snprintf(out, sizeof out, "%.*sT%s", (int)(t - line), line, t + 24);
	return out;
}

static capture cap;

static void capture_on(aw_log_format f)
{
	memset(&cap, 0, sizeof cap);
	aw_log_format_set(f);
	aw_log_sink_set(capture_sink, &cap);
}

AW_TEST(log_levels_below_the_minimum_are_dropped_and_not_counted)
{
	capture_on(AW_LOG_LOGFMT);
	aw_log_limit_set(2, AW_SEC(60));
	CHECK_EQ(aw_log_level_get(), AW_LOG_INFO);
	CHECK(!aw_log(AW_LOG_DEBUG, "hidden"));
	CHECK(!aw_log_enabled(AW_LOG_DEBUG));
	CHECK(aw_log(AW_LOG_INFO, "shown"));
	aw_log_level_set(AW_LOG_ERROR);
	for (int i = 0; i < 5; i++)
		CHECK(!aw_log(AW_LOG_WARN, "warn %d", i));
	CHECK(aw_log(AW_LOG_ERROR, "boom"));
	aw_log_level_set(AW_LOG_DEBUG);
	CHECK(aw_log(AW_LOG_DEBUG, "now shown"));
	CHECK_EQ(cap.n, 3);
	CHECK_STR(untimed(cap.lines[0]), "time=T level=info msg=shown\n");
	CHECK_STR(untimed(cap.lines[1]), "time=T level=error msg=boom\n");
	CHECK_STR(untimed(cap.lines[2]), "time=T level=debug msg=\"now shown\"\n");
	CHECK_EQ(cap.levels[1], AW_LOG_ERROR);
}

static const char nasty[] = "say \"hi\"\nback\\slash\ttab\x01 bell\x7f caf\xc3\xa9 bad\xff\xc0\xaf end";

AW_TEST(log_json_escapes_quotes_newlines_control_bytes_and_non_utf8)
{
	capture_on(AW_LOG_JSON);
	CHECK(aw_log_kv(AW_LOG_WARN, nasty, AW_KV_STR("route", "/users/{id}"), AW_KV_INT("status", -503),
			AW_KV_BOOL("cached", true), AW_KV_FLOAT("ratio", 0.25), AW_KV_STR("none", NULL),
			AW_KV_STRN("slice", "abcdef", 3)));
	CHECK_EQ(cap.n, 1);
	CHECK_STR(untimed(cap.lines[0]),
		  "{\"time\":\"T\",\"level\":\"warn\",\"msg\":\"say \\\"hi\\\"\\nback\\\\slash\\ttab\\u0001 "
		  "bell\\u007f caf\xc3\xa9 bad\\ufffd\\ufffd\\ufffd end\",\"route\":\"/users/{id}\",\"status\":-503,"
		  "\"cached\":true,\"ratio\":0.25,\"none\":null,\"slice\":\"abc\"}\n");
}

AW_TEST(log_logfmt_quotes_only_what_needs_it_and_escapes_the_rest)
{
	capture_on(AW_LOG_LOGFMT);
	CHECK(aw_log_kv(AW_LOG_INFO, nasty, AW_KV_STR("plain", "a/b:c"), AW_KV_STR("eq", "a=b"), AW_KV_STR("empty", ""),
			AW_KV_STR("utf8", "caf\xc3\xa9"), AW_KV_INT("n", 42)));
	CHECK_STR(untimed(cap.lines[0]),
		  "time=T level=info msg=\"say \\\"hi\\\"\\nback\\\\slash\\ttab\\x01 bell\\x7f caf\xc3\xa9 "
		  "bad\\xff\\xc0\\xaf end\" plain=a/b:c eq=\"a=b\" empty=\"\" utf8=caf\xc3\xa9 n=42\n");
}

AW_TEST(log_text_is_one_human_line_with_fields_after_the_message)
{
	capture_on(AW_LOG_TEXT);
	CHECK(aw_log_kv(AW_LOG_WARN, "two\nlines", AW_KV_STR("table", "users"), AW_KV_INT("ms", 812)));
	CHECK(aw_log(AW_LOG_ERROR, "plain %d", 7));
	CHECK_STR(untimed(cap.lines[0]), "T WARN  two\\nlines table=users ms=812\n");
	CHECK_STR(untimed(cap.lines[1]), "T ERROR plain 7\n");
}

static int fail_deep(void)
{
	return aw_raise(-ECONNREFUSED, "connect 10.0.0.5:5432");
}

/* A manager whose exit replaces the body's error: the body's error
 * becomes the new one's cause. */
static int noop_enter(aw_mgr *m)
{
	(void)m;
	return 0;
}

static int chain_of_two(aw_mgr *m, int err)
{
	(void)m, (void)err;
	return aw_raise(-AW_ETOOLONG, "query \"users\" failed");
}

static const aw_mgr_ops replacing_ops = { "replacing", noop_enter, chain_of_two, NULL };

static int make_chain(void *arg)
{
	aw_mgr m = { &replacing_ops };
	int rc = 0;
	AW_WITH(&m) {
		rc = fail_deep();
	}
	(void)rc;
	aw_error **out = arg;
	*out = aw_error_take();
	return 0;
}

AW_TEST(log_error_carries_code_message_location_and_cause_chain_as_fields)
{
	capture_on(AW_LOG_JSON);
	aw_error *e = NULL;
	CHECK_EQ(aw_run(make_chain, &e), 0);
	CHECK(e && e->cause && e->code == -AW_ETOOLONG);
	CHECK(aw_log_error(AW_LOG_ERROR, e, "GET /users failed"));
	char want[1024];
	snprintf(want, sizeof want,
		 "{\"time\":\"T\",\"level\":\"error\",\"msg\":\"GET /users failed\",\"error_code\":%d,"
		 "\"error\":\"query \\\"users\\\" failed\",\"error_at\":\"%s:%d:chain_of_two\","
		 "\"error_causes\":[{\"code\":%d,\"message\":\"connect 10.0.0.5:5432\",\"at\":\"%s:%d:fail_deep\"}]}\n",
		 -AW_ETOOLONG, e->loc->file, e->loc->line, -ECONNREFUSED, e->cause->loc->file, e->cause->loc->line);
	CHECK_STR(untimed(cap.lines[0]), want);
	/* logfmt: the chain as one quoted string. */
	aw_log_format_set(AW_LOG_LOGFMT);
	CHECK(aw_log_error(AW_LOG_ERROR, e, "again"));
	snprintf(want, sizeof want,
		 "time=T level=error msg=again error_code=%d error=\"query \\\"users\\\" failed\" "
		 "error_at=%s:%d:chain_of_two error_causes=\"connect 10.0.0.5:5432 (%d) at %s:%d:fail_deep\"\n",
		 -AW_ETOOLONG, e->loc->file, e->loc->line, -ECONNREFUSED, e->cause->loc->file, e->cause->loc->line);
	CHECK_STR(untimed(cap.lines[1]), want);
	/* text: the chain follows in aw_error_print's form. */
	aw_log_format_set(AW_LOG_TEXT);
	CHECK(aw_log_error(AW_LOG_ERROR, e, "third"));
	CHECK(strstr(cap.lines[2], "ERROR third\nquery \"users\" failed (") != NULL);
	CHECK(strstr(cap.lines[2], "during handling of:\nconnect 10.0.0.5:5432 (") != NULL);
	aw_error_free(e);
}

/* ---- context fields per task ---- */

static int ctx_other(void *arg)
{
	(void)arg;
	EXPECT(aw_log_context_get("request_id") == NULL);
	aw_log(AW_LOG_INFO, "from other");
	return 0;
}

static int ctx_worker(void *arg)
{
	const char *id = arg;
	EXPECT_EQ(aw_log_context_set("request_id", id), 0);
	EXPECT_EQ(aw_log_context_set("user", "ann \"a\""), 0);
	EXPECT_EQ(aw_yield(), 0);   /* the other tasks run in between */
	aw_log(AW_LOG_INFO, "from %s", id);
	EXPECT_EQ(aw_log_context_set("user", NULL), 0);
	aw_log(AW_LOG_INFO, "without user");
	return 0;
}

static int ctx_main(void *arg)
{
	(void)arg;
	aw_task *a, *b, *o;
	EXPECT_EQ(aw_spawn(&a, ctx_worker, "r-1", "req-a"), 0);
	EXPECT_EQ(aw_spawn(&b, ctx_worker, "r-2", "req-b"), 0);
	EXPECT_EQ(aw_spawn(&o, ctx_other, NULL, "other"), 0);
	EXPECT_EQ(aw_task_join(a), 0);
	EXPECT_EQ(aw_task_join(b), 0);
	EXPECT_EQ(aw_task_join(o), 0);
	EXPECT(aw_log_context_get("request_id") == NULL);
	return 0;
}

AW_TEST(log_context_fields_stay_with_their_task_and_end_with_it)
{
	capture_on(AW_LOG_LOGFMT);
	CHECK_EQ(aw_run(ctx_main, NULL), 0);
	CHECK_EQ(cap.n, 5);
	int seen = 0;
	for (int i = 0; i < cap.n; i++) {
		const char *l = untimed(cap.lines[i]);
		if (strstr(l, "msg=\"from other\"")) {
			CHECK(strstr(l, "request_id") == NULL);
			CHECK(strstr(l, " task=other task_id=") != NULL);
			seen |= 1;
		} else if (strstr(l, "msg=\"from r-1\"")) {
			CHECK(strstr(l, " task=req-a task_id=") != NULL);
			CHECK(strstr(l, "msg=\"from r-1\" request_id=r-1 user=\"ann \\\"a\\\"\"\n") != NULL);
			seen |= 2;
		} else if (strstr(l, "msg=\"from r-2\"")) {
			CHECK(strstr(l, "msg=\"from r-2\" request_id=r-2 user=") != NULL);
			seen |= 4;
		} else {
			CHECK(strstr(l, "msg=\"without user\" request_id=r-") != NULL);
			CHECK(strstr(l, "user=") == NULL);
		}
	}
	CHECK_EQ(seen, 7);
}

AW_TEST(log_context_outside_tasks_belongs_to_the_thread_and_rejects_bad_keys)
{
	capture_on(AW_LOG_JSON);
	CHECK_EQ(aw_log_context_set("job", "nightly"), 0);
	CHECK_EQ(aw_log_context_set("bad key", "x"), -EINVAL);
	CHECK(strstr(aw_error_current()->msg, "bad key") != NULL);
	aw_error_clear();
	CHECK_EQ(aw_log_context_set("", "x"), -EINVAL);
	aw_error_clear();
	aw_log(AW_LOG_INFO, "hello");
	CHECK_STR(untimed(cap.lines[0]), "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"hello\",\"job\":\"nightly\"}\n");
	CHECK_EQ(aw_log_context_set("job", NULL), 0);
	aw_log(AW_LOG_INFO, "bye");
	CHECK_STR(untimed(cap.lines[1]), "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"bye\"}\n");
}

/* ---- sinks ---- */

AW_TEST(log_callback_sink_gets_the_level_line_and_every_field)
{
	capture_on(AW_LOG_JSON);
	aw_log_sink_fn fn;
	void *ud;
	aw_log_sink_get(&fn, &ud);
	CHECK(fn == capture_sink && ud == &cap);
	CHECK(aw_log_kv(AW_LOG_WARN, "disk low", AW_KV_STR("path", "/var"), AW_KV_FLOAT("free", 0.5)));
	CHECK_EQ(cap.levels[0], AW_LOG_WARN);
	CHECK_STR(cap.channel[0], "");
	const char *f = cap.fields[0];
	CHECK(strncmp(f, "time=20", 7) == 0);
	CHECK(strstr(f, ";level=warn;msg=disk low;path=/var;free=0.5;") != NULL);
	/* NULL restores the default: the output FILE. */
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	aw_log_sink_set(NULL, NULL);
	aw_log_output_set(out);
	CHECK(aw_log(AW_LOG_INFO, "to the file"));
	aw_log_output_set(NULL);
	fclose(out);
	CHECK_EQ(cap.n, 1);
	CHECK_STR(untimed(buf), "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"to the file\"}\n");
	free(buf);
}

static void logging_sink(void *ud, const aw_log_record *rec, const char *line, size_t len)
{
	(void)rec, (void)line, (void)len;
	int *calls = ud;
	(*calls)++;
	/* A sink that logs: dropped, not a deadlock nor a recursion. */
	if (aw_log(AW_LOG_ERROR, "from inside the sink"))
		(*calls) += 100;
}

AW_TEST(log_a_sink_that_logs_is_not_reentered)
{
	int calls = 0;
	aw_log_sink_set(logging_sink, &calls);
	CHECK(aw_log(AW_LOG_INFO, "one"));
	CHECK_EQ(calls, 1);
}

AW_TEST(log_emit_writes_a_preformatted_line_on_its_channel_to_its_own_file)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	aw_log_format_set(AW_LOG_TEXT);
	aw_log_record r = { .level = AW_LOG_INFO, .channel = "access", .msg = "GET /" };
	aw_log_emit_opts o = { .line = "127.0.0.1 - - \"GET / HTTP/1.1\" 200 5", .out = out };
	CHECK(aw_log_emit(NULL, &r, &o));
	aw_log_field f[] = { AW_KV_INT("status", 200) };
	r.fields = f;
	r.nfields = 1;
	o = (aw_log_emit_opts){ .format = AW_LOG_JSON, .out = out };
	CHECK(aw_log_emit(NULL, &r, &o));
	fclose(out);
	CHECK_STR(untimed(strchr(buf, '\n') + 1), "{\"time\":\"T\",\"level\":\"info\",\"msg\":\"GET /\",\"status\":200}\n");
	CHECK(strncmp(buf, "127.0.0.1 - - \"GET / HTTP/1.1\" 200 5\n{", 38) == 0);
	free(buf);
	capture_on(AW_LOG_TEXT);
	CHECK(aw_log_emit(NULL, &r, NULL));
	CHECK_STR(cap.channel[0], "access");
}

/* ---- the environment ---- */

AW_TEST(log_format_and_level_come_from_the_environment_unless_the_program_sets_them)
{
	setenv("AWITH_LOG_FORMAT", "JSON", 1);
	setenv("AWITH_LOG_LEVEL", "warning", 1);
	aw_log_sink_set(capture_sink, &cap);
	memset(&cap, 0, sizeof cap);
	CHECK_EQ(aw_log_format_get(), AW_LOG_JSON);
	CHECK_EQ(aw_log_level_get(), AW_LOG_WARN);
	CHECK(!aw_log(AW_LOG_INFO, "info"));
	CHECK(aw_log(AW_LOG_WARN, "warn"));
	CHECK_STR(untimed(cap.lines[0]), "{\"time\":\"T\",\"level\":\"warn\",\"msg\":\"warn\"}\n");
	aw_log_format_set(AW_LOG_LOGFMT);
	CHECK_EQ(aw_log_format_get(), AW_LOG_LOGFMT);
	aw_log_format f;
	CHECK_EQ(aw_log_format_parse("xml", &f), -EINVAL);
	CHECK(strstr(aw_error_current()->msg, "'xml'") != NULL);
	aw_error_clear();
	aw_log_level l;
	CHECK_EQ(aw_log_level_parse("Debug", &l), 0);
	CHECK_EQ(l, AW_LOG_DEBUG);
}

AW_TEST(log_a_bad_environment_value_is_reported_and_the_default_kept)
{
	setenv("AWITH_LOG_FORMAT", "xml", 1);
	char *buf = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&buf, &len);
	FILE *saved = stderr;
	stderr = err;
	aw_log_format f = aw_log_format_get();
	stderr = saved;
	fclose(err);
	CHECK_EQ(f, AW_LOG_TEXT);
	CHECK(strstr(buf, "AWITH_LOG_FORMAT=xml: not one of text, json, logfmt") != NULL);
	free(buf);
}

/* ---- rate limiting ---- */

static bool flood_site(int i)
{
	return aw_log_kv(AW_LOG_ERROR, "database unavailable", AW_KV_INT("i", i));
}

AW_TEST(log_every_site_is_rate_limited_and_the_next_record_says_how_many_were_dropped)
{
	capture_on(AW_LOG_JSON);
	aw_log_limit_set(2, AW_MS(200));
	int printed = 0;
	for (int i = 0; i < 1000; i++)
		printed += flood_site(i);
	CHECK_EQ(printed, 2);
	CHECK(aw_log(AW_LOG_ERROR, "another site"));   /* its own budget */
	sleep_ms(250);
	CHECK(flood_site(1000));
	CHECK_EQ(cap.n, 4);
	CHECK(strstr(cap.lines[3], "\"i\":1000,\"suppressed\":998}\n") != NULL);
	CHECK(strstr(cap.lines[1], "suppressed") == NULL);
	/* text: the count as its own line first, as aw_log_ratelimited. */
	aw_log_format_set(AW_LOG_TEXT);
	sleep_ms(250);
	for (int i = 0; i < 10; i++)
		flood_site(i);
	sleep_ms(250);
	CHECK(flood_site(7));
	CHECK_EQ(cap.n, 7);
	CHECK(strncmp(cap.lines[6], "awith: 8 similar messages suppressed (", 38) == 0);
	CHECK(strstr(cap.lines[6], "test_log.c:") != NULL);
	CHECK(strstr(cap.lines[6], ")\n20") != NULL);
	CHECK(strstr(cap.lines[6], " ERROR database unavailable i=7\n") != NULL);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD 500

static void *thread_logger(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_THREAD; i++)
		aw_log_kv(AW_LOG_INFO, "tick", AW_KV_INT("thread", id), AW_KV_INT("i", i),
			  AW_KV_STR("pad", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
	return NULL;
}

AW_TEST(log_lines_from_several_threads_never_interleave)
{
	int fds[2];
	CHECK_EQ(pipe(fds), 0);
	FILE *tmp = tmpfile();
	CHECK(tmp);
	close(fds[0]);
	close(fds[1]);
	aw_log_limit_set(0, AW_SEC(1));
	aw_log_format_set(AW_LOG_JSON);
	aw_log_output_set(tmp);
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, thread_logger, (void *)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	aw_log_output_set(NULL);
	rewind(tmp);
	char line[1024];
	int n = 0;
	while (fgets(line, sizeof line, tmp)) {
		CHECK(line[0] == '{');
		CHECK(strstr(line, "\"msg\":\"tick\",\"thread\":") != NULL);
		CHECK(strcmp(line + strlen(line) - 3, "x\"}\n") == 0 || strstr(line, "xx\"}\n") != NULL);
		n++;
	}
	fclose(tmp);
	CHECK_EQ(n, THREADS * PER_THREAD);
}

AW_TEST(log_flush_in_json_is_a_record_with_the_site_and_the_count)
{
	capture_on(AW_LOG_JSON);
	aw_log_limit_set(1, AW_SEC(60));
	for (int i = 0; i < 6; i++)
		flood_site(i);
	aw_log_flush(NULL);
	aw_log_flush(NULL);   /* reported once */
	CHECK_EQ(cap.n, 2);
	CHECK(strstr(cap.lines[1], "\"level\":\"warn\",\"msg\":\"similar messages suppressed\",\"site\":\"") != NULL);
	CHECK(strstr(cap.lines[1], "test_log.c:") != NULL);
	CHECK(strstr(cap.lines[1], "\"suppressed\":5}\n") != NULL);
}

AW_TEST(log_context_holds_sixteen_keys_and_a_removed_one_makes_room)
{
	capture_on(AW_LOG_LOGFMT);
	char k[16];
	for (int i = 0; i < 16; i++) {
		snprintf(k, sizeof k, "k%d", i);
		CHECK_EQ(aw_log_context_set(k, "v"), 0);
	}
	CHECK_EQ(aw_log_context_set("k16", "v"), -EINVAL);
	CHECK(strstr(aw_error_current()->msg, "already 16 fields") != NULL);
	aw_error_clear();
	CHECK_EQ(aw_log_context_set("k3", NULL), 0);
	CHECK(aw_log_context_get("k3") == NULL);
	CHECK_EQ(aw_log_context_set("k16", "a longer value than before, past the first buffer"), 0);
	CHECK_EQ(aw_log_context_set("k16", "short"), 0);   /* in place */
	CHECK_STR(aw_log_context_get("k16"), "short");
	aw_log(AW_LOG_INFO, "m");
	CHECK(strstr(cap.lines[0], " k2=v k4=v ") != NULL);
	CHECK(strstr(cap.lines[0], " k15=v k16=short\n") != NULL);
	for (int i = 0; i < 17; i++) {
		snprintf(k, sizeof k, "k%d", i);
		CHECK_EQ(aw_log_context_set(k, NULL), 0);
	}
}
