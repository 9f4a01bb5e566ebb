/* SPDX-License-Identifier: MIT */
/* Tests: rate-limited logging per message site (src/core/log.c). A fake
 * burst: many messages from one site in a tight loop, into a memory
 * stream, lines counted. */
#include "harness.h"

#include "awith/core.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

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
