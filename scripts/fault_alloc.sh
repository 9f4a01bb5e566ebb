#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Allocation-failure injection over chosen tests, SQLite style.
#
#   bash scripts/fault_alloc.sh BUILD_DIR [PROGRAM[:FILTER] ...]
#
# BUILD_DIR must be configured with -Dfault_injection=true (scripts/test.sh
# runs this on build-asan, so every run is also checked by ASan, LSan and
# UBSan). For each test of each program (all its tests, or those whose name
# contains FILTER) it
#   1. runs the test alone with AW_FAULT_COUNT=1 to learn how many
#      allocations it makes (C; the library's own: src/core/alloc.h),
#   2. reruns it with AW_FAULT_ALLOC_FAIL=N for every N in 1..C, or an even
#      spread of AW_FAULT_MAX_N (default 40) values of N when C is larger,
#   3. checks every run: no crash, no sanitizer report (ASan, LSan, UBSan),
#      no hang (AW_TEST_TIMEOUT), the harness's summary line present. The
#      test itself may fail: a failed allocation is expected to fail it, as
#      a clean error. A failed run whose output does not show ENOMEM ("out of
#      memory", "Cannot allocate memory", -12, ENOMEM) is run again with
#      AW_FAULT_STACK=1 to see where the allocation failed: in an error's
#      message (src/core/error.c: the error keeps its code, with a generic
#      message, so a test checking the message fails) it is counted as such;
#      otherwise it is listed as "other" for a human to look at (it does not
#      fail the runner).
# Prints one line per test and a summary; exit status 1 if any run crashed,
# leaked, hung or reported a sanitizer error. The default program list is
# what scripts/test.sh runs (about 3 minutes on 2 cores under ASan); the pg
# tests are included only when DATABASE_URL is set.
set -uo pipefail

dir=${1:?usage: scripts/fault_alloc.sh BUILD_DIR [PROGRAM[:FILTER] ...]}
shift
if (($# == 0)); then
    # Chosen for the allocation paths they take (blocks, errors and their
    # causes, tasks, groups, scopes, exit stacks, sync, queues, the thread
    # pool, streams, sockets, files, DNS, the HTTP app, PostgreSQL), kept
    # small enough for CI: 32 tests, 515 runs, 186 s measured.
    set -- test_with:exit_replacing test_with:exit_wait test_task:task_error \
        test_task:main_return test_task:deadlock test_group:failing_child_cancels \
        test_group:two_failing test_scope:grace_deadline test_exitstack:exitstack_10000_entries \
        test_exitstack:chain_of_three test_sync:lock_handed_over test_sync:semaphore_bounds \
        test_queue:close_wakes test_thread:more_jobs test_thread:to_thread_returns \
        test_stream:writer_waits test_stream:read_exact test_socket:tcp_connect_by_host_name \
        test_socket:connection_refused test_file:file_read_all_limits test_dns:dns_unknown_name \
        test_http_app
    if [[ -n ${DATABASE_URL-} ]]; then
        set -- "$@" test_pg:pg_query_parameters test_pg:pg_query_error test_pg:pg_statement_cache_reuses test_pg:pg_connect_bad_dsn
    else
        echo "fault_alloc: DATABASE_URL is not set: the pg tests are left out"
    fi
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export AW_TEST_TIMEOUT=${AW_TEST_TIMEOUT:-30}

exec python3 - "$dir" "$@" <<'EOF'
import os, re, subprocess, sys, time

build, progs = sys.argv[1], sys.argv[2:]
max_n = int(os.environ.get("AW_FAULT_MAX_N", "40"))
keep = os.environ.get("AW_FAULT_KEEP")   # a directory: keep bad runs' output there
COUNT_RE = re.compile(r"^awith-fault: (\d+) allocations", re.M)
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed$", re.M)
BAD_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|killed by signal|timeout after|"
                    r"exited with status (?![12]\b)|ThreadSanitizer|stack overflow")
ENOMEM_RE = re.compile(r"ENOMEM|out of memory|Cannot allocate memory|-12\b|[Oo]ut of memory")

# Leaks of the test programs' own memory when a failed check returns early
# (open_memstream logs): not the library's.
supp = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"aw_fault_lsan.{os.getpid()}.supp")
with open(supp, "w") as f:
    f.write("leak:_IO_mem_finish\nleak:open_memstream\n")
os.environ["LSAN_OPTIONS"] = f"suppressions={supp}:print_suppressions=0"

def run(prog, name, env_extra):
    env = dict(os.environ, **env_extra)
    try:
        p = subprocess.run([prog, name], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=int(env["AW_TEST_TIMEOUT"]) + 30)
        return p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return -999, (e.stdout or b"").decode(errors="replace") + "\nfault_alloc: timeout after the harness's own\n"
    except OSError as e:
        return -998, f"fault_alloc: cannot run {prog}: {e}\n"

# Where the failed allocation was: an error's own message (error.c) means
# the error kept its code with a generic message, and a test that checks
# the message fails; anything else is listed for a human.
MSG_SITE_RE = re.compile(r"in (error_vnew|aw_raise|aw_error_new|aw__error_hold) ")

def failed_in_error_message(prog, name, n):
    rc, out = run(prog, name, {"AW_FAULT_ALLOC_FAIL": str(n), "AW_FAULT_STACK": "1"})
    frames = out.split("fails (ENOMEM)", 1)[-1].split("\n\n", 1)[0]
    first = re.findall(r"#\d+ 0x[0-9a-f]+ in (\S+)", frames)
    # frames: __sanitizer_print_stack_trace, alloc_fails, aw__x, then the caller
    callers = [f for f in first if not f.startswith(("__sanitizer", "alloc_fails", "aw__malloc", "aw__calloc",
                                                     "aw__realloc", "aw__strdup", "aw__strndup", "aw__vasprintf",
                                                     "aw__asprintf", "aw__fault"))]
    return bool(callers) and callers[0] in ("error_vnew", "aw_raise", "aw_error_new")

def spread(c):
    if c <= max_n:
        return list(range(1, c + 1))
    # the first allocations (setup paths) and an even spread over the rest
    ns = set(range(1, 11))
    step = (c - 10) / (max_n - 10)
    ns.update(int(10 + step * i) + 1 for i in range(max_n - 10))
    return sorted(n for n in ns if 1 <= n <= c)

t0 = time.time()
total = bad = other = runs = 0
for spec in progs:
    prog_name, _, filt = spec.partition(":")
    prog = os.path.join(build, "tests", prog_name)
    if not os.access(prog, os.X_OK):
        print(f"FAIL fault_alloc {prog_name}: {prog} is not built"); bad += 1; continue
    rc, out = run(prog, filt, {"AW_FAULT_COUNT": "1"})
    # "awith-fault: C" lines come before the harness's "ok NAME"/"FAIL NAME".
    tests, cur = [], 0
    for line in out.splitlines():
        m = COUNT_RE.match(line)
        if m:
            cur = max(cur, int(m.group(1)))
            continue
        m = re.match(r"^(ok|FAIL) (\S+)", line)
        if m:
            tests.append((m.group(2), cur, m.group(1) == "ok"))
            cur = 0
    for name, count, passed_clean in tests:
        if not passed_clean:
            print(f"skip {prog_name} {name}: fails without any injected fault")
            continue
        if count == 0:
            continue
        res = {"pass": 0, "enomem": 0, "msg": 0, "other": [], "bad": []}
        for n in spread(count):
            rc, out = run(prog, name, {"AW_FAULT_ALLOC_FAIL": str(n)})
            runs += 1
            s = SUMMARY_RE.findall(out)
            if BAD_RE.search(out) or not s or rc not in (0, 1):
                res["bad"].append(n)
                if keep:
                    os.makedirs(keep, exist_ok=True)
                    with open(os.path.join(keep, f"{prog_name}.{name}.{n}.log"), "w") as f:
                        f.write(out)
            elif int(s[-1][1]) == 0:
                res["pass"] += 1
            elif ENOMEM_RE.search(re.sub(r"^awith-fault: .*$", "", out, flags=re.M)):
                res["enomem"] += 1
            elif failed_in_error_message(prog, name, n):
                res["msg"] += 1
            else:
                res["other"].append(n)
                if keep:
                    os.makedirs(keep, exist_ok=True)
                    with open(os.path.join(keep, f"{prog_name}.{name}.{n}.other.log"), "w") as f:
                        f.write(out)
        total += 1
        bad += len(res["bad"])
        other += len(res["other"])
        status = "FAIL" if res["bad"] else "ok"
        print(f"{status} fault_alloc {prog_name} {name}: {count} allocations, "
              f"{len(spread(count))} runs: {res['pass']} absorbed, {res['enomem']} failed with ENOMEM, "
              f"{res['msg']} with an error message that could not be allocated"
              + (f", other failures at N={res['other']}" if res["other"] else "")
              + (f", CRASH/LEAK/HANG at N={res['bad']}" if res["bad"] else ""), flush=True)
print(f"fault_alloc: {total} tests, {runs} runs in {time.time() - t0:.0f} s: "
      f"{bad} crashed/leaked/hung, {other} failed without a visible ENOMEM")
os.unlink(supp)
sys.exit(1 if bad else 0)
EOF
