/* SPDX-License-Identifier: MIT */
/* Runs the libFuzzer harness (tests/fuzz_http.c) briefly over the
 * committed corpus: every corpus input first, then new ones for a bounded
 * number of runs. New inputs and crash artifacts go to a temp dir, never
 * into the corpus. Built only where the fuzzer is (clang, build-asan). */
#include "harness.h"
#include "http_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[512];
			snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

AW_TEST(fuzz_http_corpus)
{
	char tmp[] = "/tmp/aw-fuzz-http-XXXXXX";
	CHECK(mkdtemp(tmp) != NULL);
	char prefix[64];
	snprintf(prefix, sizeof prefix, "-artifact_prefix=%s/", tmp);
	const char *argv[] = { AW_FUZZ_HTTP, "-runs=20000", "-max_total_time=15", "-max_len=4096", "-timeout=10",
			       "-print_final_stats=1", prefix, tmp, AW_FUZZ_CORPUS, NULL };
	proc p;
	CHECK_EQ(proc_start(&p, argv), 0);
	int rc = proc_wait(&p, 0);
	if (rc != 0)
		fprintf(stderr, "%s\n", p.err);
	CHECK_EQ(rc, 0);
	CHECK(strstr(p.err, "Done ") != NULL);
	rm_rf(tmp);
}
