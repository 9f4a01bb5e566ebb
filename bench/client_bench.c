/* SPDX-License-Identifier: MIT */
/*
 * HTTP client throughput: C tasks share one aw_client_session and each
 * sends GET requests back to back over keep-alive for a fixed time (the
 * load half of bench/client_bench.sh; the same loop as
 * bench/py/client_aiohttp.py).
 *
 *     client_bench URL [CONCURRENCY=50] [SECONDS=5] [EXPECT_BODY]
 *
 * Runs a 1 s warm-up, then counts responses for SECONDS. A response counts
 * if its status is 200 (and its body is EXPECT_BODY, when given); anything
 * else is an error. Prints one line:
 *     requests N seconds S rps R errors E
 * Exit status 1 if any request failed.
 */
#include <awith/client.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench {
	aw_client_session s;
	const char *url, *expect;
	int conc;
	aw_time until;
	bool counting;
	long long count, errors;
	char first_error[256];
} bench;

static int worker(void *arg)
{
	bench *b = arg;
	while (aw_now() < b->until) {
		aw_client_response r;
		bool ok = false;
		AW_WITH(aw_client_get_init(&r, &b->s, b->url)) {
			ok = aw_client_response_status(&r) == 200 &&
			     (!b->expect || strcmp(aw_client_response_text(&r), b->expect) == 0);
		}
		if (aw_error_pending()) {
			if (!b->errors && aw_error_current())
				snprintf(b->first_error, sizeof b->first_error, "%s", aw_error_current()->msg);
			aw_error_clear();
			ok = false;
		}
		if (!b->counting)
			continue;
		if (ok)
			b->count++;
		else
			b->errors++;
	}
	return 0;
}

static int run(bench *b, aw_time dur)
{
	b->until = aw_deadline_after(dur);
	aw_group g;
	AW_WITH(aw_group_init(&g)) {
		for (int i = 0; i < b->conc; i++)
			if (aw_group_spawn(&g, worker, b, "get") < 0)
				break;
	}
	return aw_error_pending();
}

typedef struct args {
	bench *b;
	double seconds;
	double elapsed;
} args;

static int bench_main(void *arg)
{
	args *a = arg;
	bench *b = a->b;
	AW_WITH(aw_client_session_init(&b->s, &(aw_client_opts){ .timeout = AW_SEC(10) })) {
		b->counting = false;
		if (run(b, AW_SEC(1)) < 0)
			break;
		b->counting = true;
		aw_time t0 = aw_now();
		if (run(b, (aw_time)(a->seconds * 1e9)) < 0)
			break;
		a->elapsed = (double)(aw_now() - t0) / 1e9;
	}
	return aw_error_pending();
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: client_bench URL [CONCURRENCY=50] [SECONDS=5] [EXPECT_BODY]\n");
		return 2;
	}
	static bench b;
	b.url = argv[1];
	b.conc = argc > 2 ? atoi(argv[2]) : 50;
	b.expect = argc > 4 ? argv[4] : NULL;
	args a = { .b = &b, .seconds = argc > 3 ? atof(argv[3]) : 5 };
	if (b.conc < 1 || a.seconds <= 0) {
		fprintf(stderr, "client_bench: bad concurrency or duration\n");
		return 2;
	}
	int rc = aw_run(bench_main, &a);
	if (rc < 0) {
		fprintf(stderr, "client_bench: %s\n", aw_strerror(rc));
		return 1;
	}
	printf("requests %lld seconds %.3f rps %.1f errors %lld\n", b.count, a.elapsed,
	       a.elapsed > 0 ? (double)b.count / a.elapsed : 0.0, b.errors);
	if (b.errors)
		fprintf(stderr, "client_bench: first error: %s\n", b.first_error);
	return b.errors ? 1 : 0;
}
