/* SPDX-License-Identifier: MIT */
/* Tests: name resolution off the loop (src/io/dns.c). */
#include "harness.h"

#include "awith/io.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static bool error_mentions(const char *part)
{
	const aw_error *e = aw_error_current();
	return e && e->msg && strstr(e->msg, part) != NULL;
}

/* Facts about a resolved list. */
typedef struct summary {
	int rc;
	int count;
	bool v4_loopback, v6_loopback, all_stream, port_ok;
} summary;

static void summarize(struct addrinfo *ai, int port, summary *s)
{
	s->all_stream = s->port_ok = true;
	for (; ai; ai = ai->ai_next) {
		s->count++;
		if (ai->ai_socktype != SOCK_STREAM)
			s->all_stream = false;
		if (ai->ai_family == AF_INET) {
			struct sockaddr_in *a = (struct sockaddr_in *)ai->ai_addr;
			if (ntohl(a->sin_addr.s_addr) >> 24 == 127)
				s->v4_loopback = true;
			if (ntohs(a->sin_port) != port)
				s->port_ok = false;
		} else if (ai->ai_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)ai->ai_addr;
			if (IN6_IS_ADDR_LOOPBACK(&a->sin6_addr))
				s->v6_loopback = true;
			if (ntohs(a->sin6_port) != port)
				s->port_ok = false;
		}
	}
}

typedef struct lookup {
	const char *host;
	int port;
	summary s;
} lookup;

static int lookups_main(void *arg)
{
	lookup *l = arg;
	for (; l->host; l++) {
		struct addrinfo *ai = NULL;
		l->s.rc = aw_resolve(l->host, l->port, &ai, aw_deadline_after(AW_SEC(20)));
		summarize(ai, l->port, &l->s);
		if (ai)
			freeaddrinfo(ai);
	}
	return 0;
}

AW_TEST(dns_localhost_and_loopback_literals_resolve_with_the_port)
{
	lookup l[] = { { "localhost", 8080, { 0 } },
		       { "127.0.0.1", 443, { 0 } },
		       { "::1", 80, { 0 } },
		       { "[::1]", 0, { 0 } },
		       { NULL, 0, { 0 } } };
	CHECK_EQ(aw_run(lookups_main, l), 0);
	for (int i = 0; l[i].host; i++) {
		CHECK_EQ(l[i].s.rc, 0);
		CHECK_GE(l[i].s.count, 1);
		CHECK(l[i].s.all_stream);
		CHECK(l[i].s.port_ok);
	}
	CHECK(l[0].s.v4_loopback || l[0].s.v6_loopback);
	CHECK(l[1].s.v4_loopback);
	CHECK_EQ(l[1].s.count, 1);
	CHECK(l[2].s.v6_loopback);
	CHECK(l[3].s.v6_loopback);
}

/* Literals need neither a task nor the thread pool. */
AW_TEST(dns_literal_resolves_outside_any_task)
{
	struct addrinfo *ai = NULL;
	CHECK_EQ(aw_resolve("10.1.2.3", 5432, &ai, AW_NEVER), 0);
	CHECK(ai != NULL);
	summary s = { 0 };
	summarize(ai, 5432, &s);
	freeaddrinfo(ai);
	CHECK_EQ(s.count, 1);
	CHECK(s.port_ok);
	ai = (struct addrinfo *)1;
	CHECK_EQ(aw_resolve("localhost", 80, &ai, AW_NEVER), -AW_ENOTASK);
	CHECK(ai == NULL);
}

static int invalid_main(void *arg)
{
	int *rc = arg;
	struct addrinfo *ai = (struct addrinfo *)1;
	rc[0] = aw_resolve("no-such-host.invalid", 80, &ai, aw_deadline_after(AW_SEC(25)));
	EXPECT(ai == NULL);
	EXPECT(error_mentions("no-such-host.invalid"));
	rc[1] = aw_resolve("", 80, &ai, AW_NEVER);
	rc[2] = aw_resolve("localhost", 70000, &ai, AW_NEVER);
	rc[3] = aw_resolve("localhost", -1, &ai, AW_NEVER);
	aw_error_clear();
	return 0;
}

AW_TEST(dns_unknown_name_is_aw_edns_naming_the_host_and_bad_arguments_are_einval)
{
	int rc[4] = { 1, 1, 1, 1 };
	CHECK_EQ(aw_run(invalid_main, rc), 0);
	CHECK_EQ(rc[0], -AW_EDNS);
	CHECK_EQ(rc[1], -EINVAL);
	CHECK_EQ(rc[2], -EINVAL);
	CHECK_EQ(rc[3], -EINVAL);
}

static int passed_deadline_main(void *arg)
{
	int *rc = arg;
	struct addrinfo *ai = NULL;
	aw_time t0 = aw_now();
	rc[0] = aw_resolve("localhost", 80, &ai, aw_now() - 1);
	rc[1] = (int)((aw_now() - t0) / AW_MS(1));
	EXPECT(ai == NULL);
	EXPECT(error_mentions("resolving localhost timed out"));
	aw_error_clear();
	return 0;
}

AW_TEST(dns_deadline_already_passed_is_etimedout_at_once)
{
	int rc[2] = { 1, -1 };
	CHECK_EQ(aw_run(passed_deadline_main, rc), 0);
	CHECK_EQ(rc[0], -ETIMEDOUT);
	CHECK_LT(rc[1], 200);
}

/* A lookup stuck behind a busy pool: the caller leaves at its deadline, the
 * lookup still runs later, and its result is freed (LeakSanitizer checks)
 * before the loop ends. */
static int hog(void *arg)
{
	(void)arg;
	usleep(300 * 1000);
	return 0;
}

static int hog_task(void *arg)
{
	(void)arg;
	return aw_to_thread(hog, NULL);
}

static int stuck_main(void *arg)
{
	int *rc = arg;
	aw_task *h;
	EXPECT_EQ(aw_spawn(&h, hog_task, NULL, "hog"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);   /* the single pool thread is busy now */
	struct addrinfo *ai = NULL;
	aw_time t0 = aw_now();
	rc[0] = aw_resolve("localhost", 80, &ai, aw_deadline_after(AW_MS(50)));
	rc[1] = (int)((aw_now() - t0) / AW_MS(1));
	EXPECT(ai == NULL);
	EXPECT(error_mentions("resolving localhost timed out"));
	aw_error_clear();
	EXPECT_EQ(aw_task_join(h), 0);
	/* The pool is free again: the same lookup works. */
	rc[2] = aw_resolve("localhost", 80, &ai, aw_deadline_after(AW_SEC(10)));
	if (ai)
		freeaddrinfo(ai);
	return 0;
}

AW_TEST(dns_deadline_returns_without_waiting_for_the_lookup_which_is_freed_later)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 1;
	int rc[3] = { 1, -1, 1 };
	CHECK_EQ(aw_run_config(&cfg, stuck_main, rc), 0);
	CHECK_EQ(rc[0], -ETIMEDOUT);
	CHECK_GE(rc[1], 45);
	CHECK_LT(rc[1], 250);   /* well before the hog (300 ms) lets the lookup run */
	CHECK_EQ(rc[2], 0);
}

static int resolver_task(void *arg)
{
	int *rc = arg;
	struct addrinfo *ai = NULL;
	*rc = aw_resolve("localhost", 80, &ai, AW_NEVER);
	if (ai)
		freeaddrinfo(ai);
	return 0;
}

static int cancel_main(void *arg)
{
	int *rc = arg;
	aw_task *h, *r;
	EXPECT_EQ(aw_spawn(&h, hog_task, NULL, "hog"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(10)), 0);
	EXPECT_EQ(aw_spawn(&r, resolver_task, &rc[0], "resolver"), 0);
	EXPECT_EQ(aw_sleep(AW_MS(20)), 0);
	aw_time t0 = aw_now();
	aw_task_cancel(r);
	EXPECT_EQ(aw_task_join(r), 0);
	rc[1] = (int)((aw_now() - t0) / AW_MS(1));
	EXPECT_EQ(aw_task_join(h), 0);
	return 0;
}

AW_TEST(dns_cancelled_lookup_returns_ecanceled_at_once)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 1;
	int rc[2] = { 1, -1 };
	CHECK_EQ(aw_run_config(&cfg, cancel_main, rc), 0);
	CHECK_EQ(rc[0], -ECANCELED);
	CHECK_LT(rc[1], 200);   /* the lookup would take until the hog ends (~270 ms) */
}

/* Main returns while a lookup it gave up on is still queued: the loop's
 * shutdown cancels the helper, and nothing leaks. */
static int leave_early_main(void *arg)
{
	(void)arg;
	aw_task *h;
	EXPECT_EQ(aw_spawn(&h, hog_task, NULL, "hog"), 0);
	aw_task_detach(h);
	EXPECT_EQ(aw_sleep(AW_MS(5)), 0);
	struct addrinfo *ai = NULL;
	EXPECT_EQ(aw_resolve("localhost", 80, &ai, aw_deadline_after(AW_MS(10))), -ETIMEDOUT);
	aw_error_clear();
	return 0;
}

AW_TEST(dns_loop_shutdown_with_an_abandoned_lookup_leaks_nothing)
{
	aw_config cfg;
	aw_config_default(&cfg);
	cfg.threads = 1;
	CHECK_EQ(aw_run_config(&cfg, leave_early_main, NULL), 0);
}
