/* SPDX-License-Identifier: MIT */
/* Helpers for the PostgreSQL tests: the server comes from DATABASE_URL
 * (scripts/test.sh starts a private cluster and sets it; see
 * scripts/pg_cluster.sh for the roles). Each pg test program declares
 * AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED"): without a server it
 * skips as a whole (exit 77, saying why), except under scripts/test.sh,
 * which sets AW_PG_REQUIRED=1 so that a missing server fails; a test never
 * passes by skipping. */
#ifndef AW_TEST_PG_UTIL_H
#define AW_TEST_PG_UTIL_H

#include "harness.h"

#include "awith/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Checks for task functions (returning int): record and return -1. */
#define PCHECK(cond)                                                              \
	do {                                                                      \
		if (!(cond)) {                                                    \
			aw_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);     \
			return -1;                                                \
		}                                                                 \
	} while (0)

/* The message of the last error PCHECK_RC expected and handled. */
static __thread char pg_expected_msg[1024];

/* expr must return `want` (a code); on a mismatch print both code names and
 * the error in flight. An expected failure is checked and the test goes on:
 * that is handling it (the error rule), so an error raised by expr itself
 * is caught here — its message stays readable through pg_error_mentions. */
#define PCHECK_RC(expr, want)                                                     \
	do {                                                                      \
		const aw_error *b_ = aw_error_current();                          \
		uint64_t before_ = b_ ? b_->serial : 0;                           \
		long long got_ = (long long)(expr), want_ = (long long)(want);    \
		if (got_ != want_) {                                              \
			const aw_error *e_ = aw_error_current();                  \
			aw_test_fail(__FILE__, __LINE__, "%s: got %s, want %s (%s)", #expr, \
				     aw_test_code_name((int)got_), aw_test_code_name((int)want_), \
				     e_ ? e_->msg : "no error in flight");        \
			return -1;                                                \
		}                                                                 \
		const aw_error *e_ = aw_error_current();                          \
		if (want_ < 0 && e_ && e_->serial > before_) {                    \
			snprintf(pg_expected_msg, sizeof pg_expected_msg, "%s",   \
				 e_ && e_->code == (int)want_ ? e_->msg : "");    \
			(void)aw_catch((int)got_, (int)want_);                    \
		}                                                                 \
	} while (0)

#define PCHECK_STR(a, b)                                                          \
	do {                                                                      \
		if (!aw_test_check_str(__FILE__, __LINE__, #a, #b, (a), (b)))     \
			return -1;                                                \
	} while (0)

/* The error in flight mentions `part`. */
/* aw_pg_exec's result for checks: the error, or the affected-row count. */
static inline long long pg_exec_rows(aw_pg_conn *c, const char *sql, int nparams, const char *const *params)
{
	uint64_t rows;
	int rc = aw_pg_exec(c, &rows, sql, nparams, params);
	return rc < 0 ? rc : (long long)rows;
}

static inline bool pg_error_mentions(const char *part)
{
	const aw_error *e = aw_error_current();
	if (!e)
		return strstr(pg_expected_msg, part) != NULL;
	return e->msg && strstr(e->msg, part) != NULL;
}

/* DATABASE_URL, or a recorded failure and NULL. */
static inline const char *pg_url_or_fail(const char *file, int line, const char *var)
{
	const char *u = getenv(var);
	if (!u || !*u)
		aw_test_fail(file, line, "%s is not set: run the tests through scripts/test.sh "
			     "(it starts a private PostgreSQL cluster) or point it at a server", var);
	return u && *u ? u : NULL;
}
#define PG_URL() pg_url_or_fail(__FILE__, __LINE__, "DATABASE_URL")
#define PG_URL_SUPER() pg_url_or_fail(__FILE__, __LINE__, "DATABASE_URL_SUPER")

/* Run fn(arg) as the main task of a loop; the test fails if it returned
 * non-zero. */
#define PG_RUN(fn, arg)                                                           \
	do {                                                                      \
		int rc_ = aw_run((fn), (arg));                                    \
		if (rc_ != 0 && !aw_test_failed())                                \
			aw_test_fail(__FILE__, __LINE__, "%s returned %s", #fn, aw_test_code_name(rc_)); \
	} while (0)

/* A URL like DATABASE_URL with user, password or database replaced (NULL:
 * keep). The result is malloc'd. */
char *pg_url_with(const char *url, const char *user, const char *password, const char *db);

#endif
