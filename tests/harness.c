/* SPDX-License-Identifier: MIT */
/* Test harness runner: see harness.h for the contract. */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The awith codes for aw_test_code_name. Not every executable that uses the
 * harness builds against awith (the example tests run the example programs
 * only); there, the function names errno codes alone. */
#if __has_include(<awith/core.h>)
#include <awith/core.h>
#define AW_TEST_HAVE_CORE 1
#endif
/* The io and pg codes, when the test links those layers (tests/meson.build
 * defines AW_TEST_IO, AW_TEST_PG): including their headers makes a program
 * link their libraries. */
#if AW_TEST_IO
#include <awith/io.h>
#endif
#if AW_TEST_PG
#include <awith/pg.h>
#endif

#define AW_MAX_TESTS 1024

struct aw_test {
    const char *name;
    aw_test_fn fn;
    const char *file;
    int line;
};

static struct aw_test registry[AW_MAX_TESTS];
static int n_tests;

/* Shared with the forked child (MAP_SHARED, no fd): the first failure reason. */
struct aw_shared {
    int failed;
    int finished; /* the test function returned (vs. exit() from inside it) */
    char reason[1024];
};
static struct aw_shared *shared;

void aw_test_register(const char *name, aw_test_fn fn, const char *file, int line)
{
    if (n_tests == AW_MAX_TESTS) {
        fprintf(stderr, "harness: more than %d tests\n", AW_MAX_TESTS);
        abort();
    }
    registry[n_tests++] = (struct aw_test){ name, fn, file, line };
}

void aw_test_fail(const char *file, int line, const char *fmt, ...)
{
    char msg[sizeof shared->reason];
    int n = snprintf(msg, sizeof msg, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg)
        vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);

    if (!shared) { /* called outside a test run */
        fprintf(stderr, "%s\n", msg);
        return;
    }
    if (shared->failed) { /* keep the first reason; show the rest */
        fprintf(stderr, "  also: %s\n", msg);
        return;
    }
    shared->failed = 1;
    memcpy(shared->reason, msg, sizeof msg);
}

bool aw_test_failed(void)
{
    return shared && shared->failed;
}

bool aw_test_check_str(const char *file, int line, const char *ea,
                       const char *eb, const char *a, const char *b)
{
    if (a == b || (a && b && strcmp(a, b) == 0))
        return true;
    aw_test_fail(file, line, "CHECK_STR(%s, %s): %s%s%s vs %s%s%s", ea, eb,
                 a ? "\"" : "", a ? a : "NULL", a ? "\"" : "",
                 b ? "\"" : "", b ? b : "NULL", b ? "\"" : "");
    return false;
}

void aw_evlog_add(aw_evlog *l, const char *fmt, ...)
{
    if (l->n && l->n < sizeof l->s - 1)
        l->s[l->n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(l->s + l->n, sizeof l->s - l->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        l->n += (size_t)k < sizeof l->s - l->n ? (size_t)k : sizeof l->s - l->n - 1;
}

void aw_evlog_reset(aw_evlog *l)
{
    l->n = 0;
    l->s[0] = '\0';
}

const char *aw_test_code_name(int code)
{
    if (code == 0)
        return "0";
#ifdef AW_TEST_HAVE_CORE
    static const char *const aw_names[AW_ELAST - AW_EBASE] = {
        [AW_ENOTASK - AW_EBASE] = "ENOTASK",
        [AW_EGEN_NOYIELD - AW_EBASE] = "NOYIELD",
        [AW_EGEN_YIELDTWICE - AW_EBASE] = "YIELDTWICE",
        [AW_ECLOSED - AW_EBASE] = "ECLOSED",
        [AW_EGROUP - AW_EBASE] = "EGROUP",
        [AW_EBUSY_WAIT - AW_EBASE] = "EBUSY_WAIT",
        [AW_EEXIT - AW_EBASE] = "EEXIT",
        [AW_EEOF - AW_EBASE] = "EEOF",
        [AW_ETOOLONG - AW_EBASE] = "ETOOLONG",
    };
    if (code < -AW_EBASE && code > -AW_ELAST && aw_names[-code - AW_EBASE])
        return aw_names[-code - AW_EBASE];
    switch (-code) {   /* the io and pg ranges (their headers declare them) */
#if AW_TEST_IO
    case AW_ETLS: return "ETLS";
    case AW_ETLS_VERIFY: return "ETLS_VERIFY";
    case AW_EDNS: return "EDNS";
#endif
#if AW_TEST_PG
    case AW_EPG: return "EPG";
    case AW_EPG_AUTH: return "EPG_AUTH";
    case AW_EPG_NODB: return "EPG_NODB";
    case AW_EPG_TOO_MANY: return "EPG_TOO_MANY";
    case AW_EPG_NULL: return "EPG_NULL";
    case AW_EPG_TYPE: return "EPG_TYPE";
#endif
    default: break;
    }
#endif
    if (code < 0 && code != INT_MIN) {
        const char *name = strerrorname_np(-code); /* glibc >= 2.32; NULL if unknown */
        if (name)
            return name;
    }
    static _Thread_local char buf[16];
    snprintf(buf, sizeof buf, "%d", code);
    return buf;
}

/* Open fds of this process (the directory's own fd is counted each time, so
 * it cancels out); -1 when /proc is unavailable. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Child side: run one test, report through `shared` and the exit code
 * (0 pass, 1 check failed, 2 fd leak). exit(), not _exit(), so stdio is
 * flushed and LeakSanitizer's at-exit check still runs (it overrides the
 * status when it finds leaks). */
static void run_child(const struct aw_test *t)
{
    int before = count_fds();
    t->fn();
    shared->finished = 1;
    int code = 0;
    if (shared->failed) {
        code = 1;
    } else {
        int after = count_fds();
        if (before >= 0 && after > before) {
            snprintf(shared->reason, sizeof shared->reason,
                     "fd leak: %d before, %d after", before, after);
            shared->failed = 1;
            code = 2;
        }
    }
    exit(code);
}

/* Parent side: fork, wait up to `timeout` seconds, describe the outcome in
 * `why` (empty on pass). Returns true on pass. */
static bool run_one(const struct aw_test *t, double timeout, char *why, size_t len)
{
    memset(shared, 0, sizeof *shared);
    why[0] = '\0';
    fflush(stdout);
    fflush(stderr);

    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, len, "fork: %s", strerror(errno));
        return false;
    }
    if (pid == 0)
        run_child(t);

    int status = 0;
    bool timed_out = false;
    double deadline = now_s() + timeout;
    long delay_ns = 1000000; /* poll 1ms, backing off to 50ms */
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, len, "waitpid: %s", strerror(errno));
            return false;
        }
        if (now_s() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            timed_out = true;
            break;
        }
        struct timespec ts = { 0, delay_ns };
        nanosleep(&ts, NULL);
        if (delay_ns < 50000000)
            delay_ns *= 2;
    }

    if (timed_out)
        snprintf(why, len, "timeout after %gs", timeout);
    else if (WIFSIGNALED(status))
        snprintf(why, len, "killed by signal %d (%s)%s%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), shared->failed ? "; " : "",
                 shared->failed ? shared->reason : "");
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && shared->finished)
        return true;
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        snprintf(why, len, "exit(0) called before the test returned");
    else if (shared->failed && WEXITSTATUS(status) <= 2)
        snprintf(why, len, "%s", shared->reason);
    else
        snprintf(why, len, "exited with status %d%s%s", WEXITSTATUS(status),
                 shared->failed ? "; " : "", shared->failed ? shared->reason : "");
    return false;
}

/* Registration order can depend on the compiler; restore definition order
 * (per file, by line; files in first-registered order). Stable insertion sort. */
static void sort_registry(void)
{
    int rank[AW_MAX_TESTS];
    for (int i = 0; i < n_tests; i++) {
        rank[i] = i;
        for (int j = 0; j < i; j++)
            if (strcmp(registry[j].file, registry[i].file) == 0) {
                rank[i] = rank[j];
                break;
            }
    }
    for (int i = 1; i < n_tests; i++) {
        struct aw_test t = registry[i];
        int r = rank[i], j = i - 1;
        while (j >= 0 && (rank[j] > r || (rank[j] == r && registry[j].line > t.line))) {
            registry[j + 1] = registry[j];
            rank[j + 1] = rank[j];
            j--;
        }
        registry[j + 1] = t;
        rank[j + 1] = r;
    }
}

/* AW_TEST_REQUIRE_ENV: the first unmet requirement, or NULL. */
static const char *required_var, *required_strict;

void aw_test_require_env(const char *var, const char *strict)
{
    const char *v = getenv(var);
    if ((!v || !*v) && !required_var) {
        required_var = var;
        required_strict = strict;
    }
}

int main(int argc, char **argv)
{
    if (required_var) {
        const char *strict = required_strict ? getenv(required_strict) : NULL;
        if (!strict || !*strict) {
            printf("SKIP: %s is not set, so these tests have nothing to run against "
                   "(scripts/test.sh provides it; set %s=1 to fail instead of skipping)\n",
                   required_var, required_strict ? required_strict : "it");
            printf("0 passed, 0 failed\n");
            return 77;
        }
    }
    const char *filter = argc > 1 ? argv[1] : NULL;
    double timeout = 30;
    const char *env = getenv("AW_TEST_TIMEOUT");
    if (env && *env) {
        char *end;
        double v = strtod(env, &end);
        if (*end == '\0' && v > 0)
            timeout = v;
        else
            fprintf(stderr, "harness: ignoring bad AW_TEST_TIMEOUT=%s\n", env);
    }

    shared = mmap(NULL, sizeof *shared, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        perror("harness: mmap");
        return 1;
    }

    sort_registry();
    int passed = 0, failed = 0;
    char why[sizeof shared->reason + 128];
    for (int i = 0; i < n_tests; i++) {
        const struct aw_test *t = &registry[i];
        if (filter && !strstr(t->name, filter))
            continue;
        if (run_one(t, timeout, why, sizeof why)) {
            passed++;
            printf("ok %s\n", t->name);
        } else {
            failed++;
            printf("FAIL %s: %s\n", t->name, why);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    munmap(shared, sizeof *shared);
    return failed ? 1 : 0;
}
