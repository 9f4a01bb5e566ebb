/* SPDX-License-Identifier: MIT */
/* Minimal test harness for awith.
 *
 *   #include "harness.h"
 *   AW_TEST(adds_up) { CHECK_EQ(1 + 1, 2); }
 *
 * Contract:
 *  - AW_TEST(name) defines `static void name(void)` and registers it (via a
 *    constructor) to run in order of definition. harness.c provides main().
 *  - Each test runs in its own forked child with a timeout (AW_TEST_TIMEOUT
 *    seconds, default 30). A crash, hang, failed check or leaked fd fails that
 *    test only.
 *  - A failing CHECK* records "file:line: expr" (plus both values) and executes
 *    `return;` — so use them in void functions (the test body or void helpers).
 *    Elsewhere, call aw_test_fail() and return your own way.
 *  - argv[1], if given, runs only the tests whose name contains it.
 *  - Output: "ok <name>" / "FAIL <name>: <reason>" per test, then exactly one
 *    line "<P> passed, <F> failed"; exit status 1 if any failed, 77 if the
 *    program skipped (AW_TEST_REQUIRE_ENV below).
 */
#ifndef AW_TEST_HARNESS_H
#define AW_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef void (*aw_test_fn)(void);

void aw_test_register(const char *name, aw_test_fn fn, const char *file, int line);

/* A test program that needs something from the environment (a server's
 * URL): AW_TEST_REQUIRE_ENV("DATABASE_URL", "AW_PG_REQUIRED") at file
 * scope. When `var` is unset or empty, the program runs no test: it prints
 * "SKIP: <why>" and "0 passed, 0 failed" and exits with 77 (meson's "skipped"),
 * unless `strict` is set to a non-empty value (scripts/test.sh, which
 * always provides the server), where the tests run and fail. */
void aw_test_require_env(const char *var, const char *strict);
#define AW_TEST_REQUIRE_ENV(var, strict)                                      \
    __attribute__((constructor)) static void aw_test_require_env_(void)       \
    {                                                                         \
        aw_test_require_env((var), (strict));                                 \
    }

/* Record a failure for the running test (first one wins as the reason). */
void aw_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True once the running test has recorded a failure. */
bool aw_test_failed(void);

#define AW_TEST(name)                                                         \
    static void name(void);                                                   \
    __attribute__((constructor)) static void aw_test_reg_##name(void)         \
    {                                                                         \
        aw_test_register(#name, name, __FILE__, __LINE__);                    \
    }                                                                         \
    static void name(void)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            aw_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);             \
            return;                                                           \
        }                                                                     \
    } while (0)

/* Integer comparisons: both sides are converted to long long once. */
#define AW_CHECK_CMP_(a, op, b, macro)                                        \
    do {                                                                      \
        long long aw_a_ = (long long)(a), aw_b_ = (long long)(b);             \
        if (!(aw_a_ op aw_b_)) {                                              \
            aw_test_fail(__FILE__, __LINE__, macro "(%s, %s): %lld vs %lld",  \
                         #a, #b, aw_a_, aw_b_);                               \
            return;                                                           \
        }                                                                     \
    } while (0)

#define CHECK_EQ(a, b) AW_CHECK_CMP_(a, ==, b, "CHECK_EQ")
#define CHECK_NE(a, b) AW_CHECK_CMP_(a, !=, b, "CHECK_NE")
#define CHECK_LT(a, b) AW_CHECK_CMP_(a, <, b, "CHECK_LT")
#define CHECK_LE(a, b) AW_CHECK_CMP_(a, <=, b, "CHECK_LE")
#define CHECK_GT(a, b) AW_CHECK_CMP_(a, >, b, "CHECK_GT")
#define CHECK_GE(a, b) AW_CHECK_CMP_(a, >=, b, "CHECK_GE")

/* String equality (strcmp); NULL equals only NULL. Prints both on failure. */
bool aw_test_check_str(const char *file, int line, const char *ea,
                       const char *eb, const char *a, const char *b);

#define CHECK_STR(a, b)                                                       \
    do {                                                                      \
        if (!aw_test_check_str(__FILE__, __LINE__, #a, #b, (a), (b)))         \
            return;                                                           \
    } while (0)

/* ---- helpers for the tests' own bookkeeping -------------------------------- */

/* An event log: aw_evlog_add appends one printf-formatted token, separated
 * from the previous one by a space, so a whole scenario can be checked with
 * one CHECK_STR(log.s, "enter a exit a(0)"). A zeroed aw_evlog is empty;
 * output past the buffer is cut off. */
typedef struct aw_evlog {
    char s[4096];
    size_t n;
} aw_evlog;

void aw_evlog_add(aw_evlog *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Empty the log again. */
void aw_evlog_reset(aw_evlog *l);

/* A short name for a code as the library returns it: "0", the errno name for
 * a negated errno code (-EIO -> "EIO"), the awith name for a negated AW_E*
 * code (-AW_ECLOSED -> "ECLOSED", -AW_EGEN_NOYIELD -> "NOYIELD"), and the
 * number itself for anything else (in a per-thread buffer that the next such
 * call reuses). */
const char *aw_test_code_name(int code);


/* Non-returning checks, for code that must go on after a failure (inside a
 * task, where returning early would skip the rest of the scenario): they
 * record the failure and continue. */
#define EXPECT(cond)                                                          \
	do {                                                                  \
		if (!(cond))                                                  \
			aw_test_fail(__FILE__, __LINE__, "EXPECT(%s)", #cond); \
	} while (0)
#define EXPECT_EQ(a, b)                                                       \
	do {                                                                  \
		long long a_ = (long long)(a), b_ = (long long)(b);           \
		if (a_ != b_)                                                 \
			aw_test_fail(__FILE__, __LINE__, "EXPECT_EQ(%s, %s): %lld vs %lld", \
				     #a, #b, a_, b_);                         \
	} while (0)

#define EXPECT_STR_EQ(a, b)                                                   \
	do {                                                                  \
		const char *a_ = (a), *b_ = (b);                              \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                        \
			aw_test_fail(__FILE__, __LINE__, "EXPECT_STR_EQ(%s, %s): \"%s\" vs \"%s\"", \
				     #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
	} while (0)

#endif
