// SPDX-License-Identifier: MIT
/* Tests: the tracing context in core (src/core/trace.c): W3C traceparent
 * parsing and formatting, tracestate limits, spans as managers, the
 * context a spawned task inherits, and what the sink receives. */
#include "harness.h"

#include "awith/core.h"
#include "awith/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TP_VALID "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s)
{
	aw_trace t;
	return aw_trace_parse(&t, s, strlen(s));
}

AW_TEST(traceparent_of_version_00_is_parsed_and_formatted_back_unchanged)
{
	aw_trace t;
	CHECK_EQ(aw_trace_parse(&t, TP_VALID, strlen(TP_VALID)), 0);
	CHECK_EQ(t.trace_id[0], 0x4b);
	CHECK_EQ(t.span_id[7], 0xb7);
	CHECK_EQ(t.flags, 1);
	char out[AW_TRACEPARENT_LEN + 1];
	CHECK_EQ(aw_trace_format(&t, out), AW_TRACEPARENT_LEN);
	CHECK(strcmp(out, TP_VALID) == 0);
}

/* Every invalid form the W3C spec names (3.2.2 and 4.3) is refused, so
 * the server starts a new trace instead. */
AW_TEST(traceparent_malformed_forms_are_refused)
{
	static const char *const bad[] = {
		"",
		"00",
		/* all-zero trace id, all-zero parent id */
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		/* uppercase hex */
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
		/* not hex */
		"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
		/* wrong lengths */
		"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		/* version 00 with anything after the flags */
		TP_VALID "-extra",
		TP_VALID " ",
		/* version ff is invalid, a version not hex too */
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		/* wrong separators */
		"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		/* a later version must be followed by '-' or end after 55 */
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		if (parse(bad[i]) != -EINVAL) {
			aw_test_fail(__FILE__, __LINE__, "accepted: '%s'", bad[i]);
			return;
		}
	}
	CHECK(aw_error_current() == NULL);   /* not an error: nothing raised */
}

AW_TEST(traceparent_of_a_later_version_is_read_by_its_first_fields)
{
	aw_trace t;
	const char *v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-adds";
	CHECK_EQ(aw_trace_parse(&t, v, strlen(v)), 0);
	CHECK_EQ(t.flags, 9);
	char out[AW_TRACEPARENT_LEN + 1];
	aw_trace_format(&t, out);
	/* Sent on as version 00 with only the flag version 00 knows. */
	CHECK(strcmp(out, TP_VALID) == 0);
	const char *exact = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
	CHECK_EQ(aw_trace_parse(&t, exact, strlen(exact)), 0);
}

static size_t clean(const char *in, char *out, size_t outlen)
{
	return aw_tracestate_clean(in, strlen(in), out, outlen);
}

AW_TEST(tracestate_keeps_valid_members_and_drops_malformed_lists)
{
	char out[AW_TRACESTATE_MAX + 1];
	CHECK_EQ(clean("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE", out, sizeof out), 39);
	CHECK(strcmp(out, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") == 0);
	CHECK(clean(" \t a=1 ,, b@sys=2\t", out, sizeof out) > 0);
	CHECK(strcmp(out, "a=1,b@sys=2") == 0);
	/* malformed: the whole value goes */
	CHECK_EQ(clean("a=1,B=2", out, sizeof out), 0);            /* uppercase key */
	CHECK_EQ(clean("a=1,b", out, sizeof out), 0);              /* no '=' */
	CHECK_EQ(clean("a=1,a=2", out, sizeof out), 0);            /* duplicate key */
	CHECK_EQ(clean("a=", out, sizeof out), 0);                 /* empty value */
	CHECK_EQ(clean("a=x=y", out, sizeof out), 0);              /* '=' in the value */
	CHECK_EQ(clean("1a=1", out, sizeof out), 0);               /* simple key starts with a digit */
	CHECK_EQ(clean("t@1sys=1", out, sizeof out), 0);           /* system id starts with a digit */
	CHECK_EQ(out[0], 0);
	/* 32 members are kept, 33 are too many */
	char many[33 * 8] = "";
	for (int i = 0; i < 32; i++)
		sprintf(many + strlen(many), "%sk%d=v", i ? "," : "", i);
	CHECK(clean(many, out, sizeof out) == strlen(many));
	strcat(many, ",k32=v");
	CHECK_EQ(clean(many, out, sizeof out), 0);
}

AW_TEST(tracestate_over_512_characters_drops_long_members_first_then_from_the_end)
{
	char in[2048], out[AW_TRACESTATE_MAX + 1];
	char big[200];
	memset(big, 'x', 150);
	big[150] = 0;
	/* a=<150>, then twelve members of 41 chars = 150+2 + 12*42 = 656 */
	snprintf(in, sizeof in, "a=%s", big);
	for (int i = 0; i < 12; i++)
		snprintf(in + strlen(in), sizeof in - strlen(in), ",m%02d=%037d", i, i);
	size_t n = clean(in, out, sizeof out);
	CHECK(n <= AW_TRACESTATE_MAX);
	CHECK(strstr(out, "a=") == NULL);         /* the long one went first */
	CHECK(strncmp(out, "m00=", 4) == 0);      /* then fits: 12*41+11 = 503 */
	CHECK(strstr(out, "m11=") != NULL);
	/* without long members, the last ones go */
	in[0] = 0;
	for (int i = 0; i < 20; i++)
		snprintf(in + strlen(in), sizeof in - strlen(in), "%sm%02d=%037d", i ? "," : "", i, i);
	n = clean(in, out, sizeof out);
	CHECK(n <= AW_TRACESTATE_MAX);
	CHECK(strstr(out, "m00=") != NULL);
	CHECK(strstr(out, "m11=") != NULL);
	CHECK(strstr(out, "m12=") == NULL);
}

/* ---- spans -------------------------------------------------------------------- */

typedef struct rec {
	char name[32];
	aw_trace ctx;
	uint8_t parent[8];
	aw_time duration;
	int error, status, kind;
	char msg[64];
} rec;

static rec recs[16];
static int nrecs;

static void sink(const aw_span *s, aw_time duration, void *arg)
{
	(void)arg;
	if (nrecs == 16)
		return;
	rec *r = &recs[nrecs++];
	snprintf(r->name, sizeof r->name, "%s", s->name);
	r->ctx = s->ctx;
	memcpy(r->parent, s->parent_id, 8);
	r->duration = duration;
	r->error = s->error;
	r->status = s->status;
	r->kind = s->kind;
	snprintf(r->msg, sizeof r->msg, "%s", s->error_msg ? s->error_msg : "");
}

static int nested_main(void *arg)
{
	(void)arg;
	if (aw_trace_current() != NULL)
		return -100;
	aw_span outer, inner;
	AW_WITH(aw_span_init(&outer, "outer")) {
		if (aw_trace_current() != &outer.ctx)
			return -101;
		AW_WITH(aw_span_init(&inner, "inner")) {
			if (aw_trace_current() != &inner.ctx)
				return -102;
			if (aw_sleep(AW_MS(20)) < 0)
				return -103;
		}
		if (aw_trace_current() != &outer.ctx)
			return -104;
	}
	return aw_trace_current() == NULL ? 0 : -105;
}

AW_TEST(span_block_makes_a_child_current_and_records_it_with_its_duration)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	CHECK_EQ(aw_run(nested_main, NULL), 0);
	CHECK_EQ(nrecs, 2);
	rec *in = &recs[0], *out = &recs[1];
	CHECK(strcmp(in->name, "inner") == 0);
	CHECK(strcmp(out->name, "outer") == 0);
	CHECK(memcmp(in->ctx.trace_id, out->ctx.trace_id, 16) == 0);   /* one trace */
	CHECK(memcmp(in->parent, out->ctx.span_id, 8) == 0);           /* inner's parent is outer */
	CHECK(memcmp(in->ctx.span_id, out->ctx.span_id, 8) != 0);
	static const uint8_t zero[8];
	CHECK(memcmp(out->parent, zero, 8) == 0);                      /* outer is a root */
	CHECK(in->duration >= AW_MS(20));
	CHECK(out->duration >= in->duration);
	CHECK_EQ(in->error, 0);
}

static int failing_main(void *arg)
{
	(void)arg;
	aw_span s;
	AW_WITH(aw_span_init(&s, "load")) {
		return aw_raise(-ENOENT, "no such user 42");
	}
	return 0;
}

AW_TEST(span_records_the_error_its_block_is_left_with_and_lets_it_go_on)
{
	nrecs = 0;
	aw_span_sink_set(sink, NULL);
	CHECK_EQ(aw_run(failing_main, NULL), -ENOENT);
	CHECK_EQ(nrecs, 1);
	CHECK_EQ(recs[0].error, -ENOENT);
	CHECK(strstr(recs[0].msg, "no such user 42") != NULL);
}

typedef struct seen {
	bool has;
	aw_trace ctx;
	char state[64];
} seen;

static int child_fn(void *arg)
{
	seen *s = arg;
	const aw_trace *t = aw_trace_current();
	s->has = t != NULL;
	if (t) {
		s->ctx = *t;
		snprintf(s->state, sizeof s->state, "%s", t->tracestate ? t->tracestate : "");
	}
	return 0;
}

static int spawn_main(void *arg)
{
	seen *got = arg;
	aw_task *t;
	/* outside any trace: none */
	if (aw_spawn(&t, child_fn, &got[0], "plain") < 0 || aw_task_join(t) < 0)
		return -1;
	aw_trace remote;
	if (aw_trace_parse(&remote, TP_VALID, strlen(TP_VALID)) < 0)
		return -2;
	char state[] = "congo=t61rcWkgMzE";
	remote.tracestate = state;
	aw_span s;
	aw_span_begin(&s, "parent", AW_SPAN_SERVER, &remote, true);
	/* spawned now, run after the span has ended: its copy still holds */
	int rc = aw_spawn(&t, child_fn, &got[1], "traced");
	got[2].ctx = s.ctx;
	aw_span_end(&s, 0);
	memset(state, 'X', sizeof state - 1);
	if (rc < 0 || aw_task_join(t) < 0)
		return -3;
	return 0;
}

AW_TEST(spawned_task_inherits_a_copy_of_the_spawners_trace_context)
{
	seen got[3];
	memset(got, 0, sizeof got);
	aw_span_sink_set(NULL, NULL);
	CHECK_EQ(aw_run(spawn_main, got), 0);
	CHECK(!got[0].has);
	CHECK(got[1].has);
	CHECK(memcmp(got[1].ctx.trace_id, got[2].ctx.trace_id, 16) == 0);
	CHECK(memcmp(got[1].ctx.span_id, got[2].ctx.span_id, 8) == 0);   /* child of the span current then */
	CHECK(strcmp(got[1].state, "congo=t61rcWkgMzE") == 0);
}

static int logged_main(void *arg)
{
	(void)arg;
	aw_trace remote;
	if (aw_trace_parse(&remote, TP_VALID, strlen(TP_VALID)) < 0)
		return -1;
	aw_span s;
	aw_span_begin(&s, "GET /users/{id}", AW_SPAN_SERVER, &remote, true);
	aw_span_set_status(&s, 404);
	int rc = aw_raise(-ENOENT, "no \"user\" 42");
	aw_span_end(&s, rc);
	aw_error_clear();
	AW_WITH(aw_span_init(&s, "root")) {}
	return 0;
}

/* With no sink of the program's, spans are log records (awith/log.h) at
 * debug level: one logfmt line each, with every field. */
AW_TEST(span_without_a_sink_is_a_log_record_with_every_field)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	aw_span_sink_set(NULL, NULL);
	aw_log_output_set(out);
	aw_log_format_set(AW_LOG_LOGFMT);
	aw_log_level_set(AW_LOG_INFO);
	CHECK_EQ(aw_run(logged_main, NULL), 0);   /* below the level: nothing */
	fflush(out);
	CHECK_EQ(len, 0);
	aw_log_level_set(AW_LOG_DEBUG);
	CHECK_EQ(aw_run(logged_main, NULL), 0);
	fclose(out);
	aw_log_output_set(NULL);
	char *second = strchr(buf, '\n');
	CHECK(second != NULL);
	*second++ = 0;
	CHECK(strstr(buf, "level=debug") != NULL);
	CHECK(strstr(buf, " msg=span span=\"GET /users/{id}\" kind=server trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=") != NULL);
	CHECK(strstr(buf, " parent_id=00f067aa0ba902b7 sampled=true start=20") != NULL);
	CHECK(strstr(buf, " duration_ms=") != NULL);
	CHECK(strstr(buf, " status=404 error_code=-2 error=\"no \\\"user\\\" 42\"") != NULL);
	CHECK(strstr(second, "span=root kind=internal") != NULL);
	CHECK(strstr(second, "parent_id") == NULL);   /* a root span */
	CHECK(strstr(second, "status=") == NULL);
	CHECK(strstr(second, "error") == NULL);
	/* a level of its own: at info the same spans show at the default level */
	buf[0] = 0;
	free(buf);
	buf = NULL;
	out = open_memstream(&buf, &len);
	aw_log_output_set(out);
	aw_log_level_set(AW_LOG_INFO);
	aw_span_log_level_set(AW_LOG_INFO);
	CHECK_EQ(aw_run(logged_main, NULL), 0);
	aw_span_log_level_set(0);   /* off */
	CHECK_EQ(aw_run(logged_main, NULL), 0);
	fclose(out);
	aw_log_output_set(NULL);
	int lines = 0;
	for (char *p = buf; (p = strchr(p, '\n')); p++)
		lines++;
	CHECK_EQ(lines, 2);
	CHECK(strstr(buf, "level=info") != NULL);
	free(buf);
}

AW_TEST(new_ids_are_random_and_never_zero)
{
	aw_trace a, b;
	aw_trace_new(&a);
	aw_trace_new(&b);
	CHECK(memcmp(a.trace_id, b.trace_id, 16) != 0);
	CHECK(memcmp(a.span_id, b.span_id, 8) != 0);
	CHECK_EQ(a.flags, AW_TRACE_SAMPLED);
	static const uint8_t zero[16];
	for (int i = 0; i < 1000; i++) {
		uint8_t id[8];
		aw_trace_span_id_new(id);
		CHECK(memcmp(id, zero, 8) != 0);
	}
}

/* Worker processes fork from one parent: the generator's state must not
 * be shared, or two workers would hand out the same ids. */
AW_TEST(forked_child_makes_different_ids_than_its_parent)
{
	uint8_t before[8], mine[8], theirs[8];
	aw_trace_span_id_new(before);   /* seeded before the fork */
	int p[2];
	CHECK_EQ(pipe(p), 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		uint8_t id[8];
		aw_trace_span_id_new(id);
		ssize_t w = write(p[1], id, sizeof id);
		_exit(w == (ssize_t)sizeof id ? 0 : 1);
	}
	aw_trace_span_id_new(mine);
	CHECK_EQ(read(p[0], theirs, sizeof theirs), (ssize_t)sizeof theirs);
	int status;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	close(p[0]);
	close(p[1]);
	CHECK(memcmp(mine, theirs, 8) != 0);
	CHECK(memcmp(before, theirs, 8) != 0);
}
