#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build and run every test twice: gcc (build/) and clang + ASan/UBSan
# (build-asan/). Both with --werror. Each build's test programs run on the
# epoll backend and again on io_uring (AWITH_BACKEND=uring; the ASan build's
# uring pass takes the core, io, http and pg programs). Installs missing Debian packages first
# (needs root or sudo). Build dirs are reused when already configured.
#
#   bash scripts/test.sh                   # everything
#   AW_TEST_FILTER=with bash scripts/test.sh  # only tests whose name contains "with"
#
# Per-test "ok"/"FAIL" lines are printed as they run; the last line is exactly
# "<N> passed, <N> failed" summed over both builds. Exit status is non-zero if
# any test failed or any build failed.
#
# The PostgreSQL tests get a private cluster (see pg_cluster_start below).
#
# scripts/demo.sh sources this file for PACKAGES/ensure_packages/setup_build.
set -uo pipefail

# Debian packages needed to build and test. Later layers append here.
PACKAGES=(meson ninja-build pkg-config gcc g++ clang libclang-rt-14-dev valgrind python3
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
          libssl-dev openssl
          node-llhttp libjansson-dev zlib1g-dev curl
          libcurl4-openssl-dev nginx-light
          postgresql postgresql-client libpq-dev locales
          man-db groff-base binutils
          libhiredis-dev redis-server
          build-essential debhelper dpkg-dev fakeroot lintian
          libsystemd-dev prometheus chromium
          haproxy pgbouncer wrk   # scripts/cluster.sh, scripts/chaos.sh
          python3-aiohttp    # tests/check_chat*.sh, bench/ws_bench.sh: the WebSocket client and peer
          liburing-dev)      # the loop's io_uring backend (meson feature io_uring)

# Install whatever in PACKAGES is not installed yet; no apt-get at all otherwise.
ensure_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    echo "== installing: ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing[@]}"
}

# setup_build DIR [meson setup args...]: configure DIR (reconfigure if it
# already is a meson build dir; wipe it if reconfiguring fails), then build.
setup_build() {
    local dir=$1
    shift
    setup_build_target "$dir" "" "$@"
}

TOTAL_PASSED=0
TOTAL_FAILED=0

TOTAL_SKIPPED=0

# tally NAME RC OUTFILE: add a test binary's "<P> passed, <F> failed" line
# to the totals. A binary that dies without that line counts as one failure.
# Exit status 77 with "0 passed, 0 failed" is a program that skipped (its
# "SKIP: why" line was shown): counted apart, not as a failure. (Here the
# pg tests never skip: AW_PG_REQUIRED=1 makes a missing server fail them.)
tally() {
    local name=$1 rc=$2 out=$3 summary p f
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
    rm -f "$out"
    if ((rc == 77)) && [[ $summary == "0 passed, 0 failed" ]]; then
        echo "SKIP $name"
        TOTAL_SKIPPED=$((TOTAL_SKIPPED + 1))
    elif [[ -n $summary ]]; then
        summary=${summary//[!0-9 ]/}            # "P  F"
        read -r p f <<<"$summary"
        TOTAL_PASSED=$((TOTAL_PASSED + p))
        TOTAL_FAILED=$((TOTAL_FAILED + f))
        if ((f == 0 && rc != 0)); then     # e.g. LSan at harness exit
            echo "FAIL $name: exit status $rc after all tests passed"
            TOTAL_FAILED=$((TOTAL_FAILED + 1))
        fi
    else
        echo "FAIL $name: no summary line (exit status $rc)"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
}

# run_aarch64_core: the core layer's tests built for aarch64 (our own
# context switch in context_aarch64.S) and run under qemu-user. The core
# needs only libc, so a static cross build needs no arm64 libraries.
run_aarch64_core() {
    local dir=build-aarch64 name out rc
    local -a tests
    mapfile -t tests < <(sed -n "/^core_tests = \[/,/^\]/s/^ *'\(test_[a-z_]*\)'.*/\1/p" tests/meson.build)
    mkdir -p "$dir"
    echo "== build $dir (aarch64, static, run under qemu-aarch64)"
    (cd "$dir" && aarch64-linux-gnu-gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
        -I../include -I../src/core -c ../src/core/*.c ../src/common/*.c ../src/core/*.S) || return 1
    for name in "${tests[@]}"; do
        aarch64-linux-gnu-gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE \
            -Iinclude -Isrc/core -Itests "tests/$name.c" tests/harness.c "$dir"/*.o \
            -static -pthread -o "$dir/$name" || return 1
    done
    echo "== test $dir"
    for name in "${tests[@]}"; do
        echo "-- $name (aarch64)"
        out=$(mktemp)
        AW_TEST_TIMEOUT=120 timeout -k 5 600 qemu-aarch64 "$dir/$name" \
            ${AW_TEST_FILTER:+"$AW_TEST_FILTER"} </dev/null 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        tally "$name (aarch64)" "$rc" "$out"
    done
}

# run_fault_alloc DIR: allocation-failure injection (scripts/fault_alloc.sh)
# over its default set of tests; counts as one test (passed: no run
# crashed, leaked, hung or tripped a sanitizer).
run_fault_alloc() {
    local dir=$1 rc
    echo "-- fault_alloc ($dir)"
    bash scripts/fault_alloc.sh "$dir"
    rc=$?
    if ((rc == 0)); then
        TOTAL_PASSED=$((TOTAL_PASSED + 1))
    else
        echo "FAIL fault_alloc: a run with a failed allocation crashed, leaked or hung (see above)"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
    fi
}

# run_chaos: scripts/chaos.sh, the scale-out chaos suite (haproxy, three
# instances, pgbouncer, a primary and a replica; about 2 minutes): counts
# its cases. Not under AW_TEST_FILTER.
run_chaos() {
    local out rc
    echo "== chaos (scripts/chaos.sh)"
    out=$(mktemp)
    timeout -k 10 600 bash scripts/chaos.sh </dev/null 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    tally chaos "$rc" "$out"
}

# run_tsan_threads: the one test that runs several loops on several threads
# of one process (tests/test_loops_threads.c: HTTP server, client and pg pool
# per loop), built with clang's ThreadSanitizer. Only that program is built
# and run, so this stays short (about 30 s to build, 1 s to run).
run_tsan_threads() {
    local dir=build-tsan out rc
    setup_build_target "$dir" tests/test_loops_threads --werror \
        -Db_sanitize=thread -Db_lundef=false -Dexamples=false -Dbench=false || return 1
    echo "== test $dir (ThreadSanitizer)"
    echo "-- test_loops_threads (tsan)"
    out=$(mktemp)
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        timeout -k 5 300 "$dir/tests/test_loops_threads" </dev/null 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    tally "test_loops_threads (tsan)" "$rc" "$out"
}

# setup_build_target DIR TARGET [meson setup args...]: as setup_build, but
# builds only TARGET (everything when TARGET is empty).
setup_build_target() {
    local dir=$1 target=$2
    shift 2
    echo "== configure $dir"
    if [[ -f $dir/meson-private/coredata.dat ]]; then
        meson setup --reconfigure "$dir" "$@" ||
            meson setup --wipe "$dir" "$@" || return 1
    else
        meson setup "$dir" "$@" || return 1
    fi
    if [[ -n $target ]]; then
        echo "== build $dir ($target)"
        ninja -C "$dir" "$target"
    else
        echo "== build $dir"
        ninja -C "$dir"
    fi
}

# run_tests DIR [NAMES [LABEL]]: run each registered test executable of DIR
# directly (so the harness output is shown live), adding its "<P> passed,
# <F> failed" line to the totals. A binary that dies without that line
# counts as one failure. NAMES: an extended regex; only the programs whose
# name matches it run. LABEL: shown after each name (e.g. "io_uring").
run_tests() {
    local dir=$1 names=${2:-.} label=${3:+ ($3)} timeout workdir name out summary rc p f
    local -a line cmd
    echo "== test $dir$label"
    while IFS=$'\t' read -r -a line; do
        timeout=${line[0]} workdir=${line[1]} name=${line[2]} cmd=("${line[@]:3}")
        [[ $name =~ $names ]] || continue
        echo "-- $name$label"
        out=$(mktemp)
        (cd "$workdir" && timeout -k 5 "$timeout" "${cmd[@]}" ${AW_TEST_FILTER:+"$AW_TEST_FILTER"} </dev/null) 2>&1 | tee "$out"
        rc=${PIPESTATUS[0]}
        tally "$name$label" "$rc" "$out"
    done < <(meson introspect "$dir" --tests | python3 -c '
import json, sys
for t in json.load(sys.stdin):  # timeout, workdir, name, [env K=V...] cmd...
    env = ["env"] + [k + "=" + v for k, v in t["env"].items()] if t.get("env") else []
    print("\t".join([str(t.get("timeout") or 120), t.get("workdir") or sys.argv[1],
                     t["name"]] + env + t["cmd"]))
' "$dir")
}

# The PostgreSQL tests (test_pg*) need a server: unless the caller set
# DATABASE_URL, a private cluster (scripts/pg_cluster.sh) is started once in
# build-pg/test, its DATABASE_URL, PGHOST, PGPORT, PGDATA, PG_BINDIR,
# AW_PG_CLUSTER_DIR, AW_PG_CLUSTER_SCRIPT, ... (see scripts/pg_cluster.sh)
# exported to every test binary, and removed at exit (also on ^C).
PG_CLUSTER_DIR=build-pg/test
PG_CLUSTER_OURS=0

pg_cluster_start() {
    # The suite always provides a server: a pg test program must not skip.
    export AW_PG_REQUIRED=1
    if [[ -n ${DATABASE_URL-} ]]; then
        echo "== postgresql: using the caller's DATABASE_URL"
        return 0
    fi
    echo "== postgresql: private cluster in $PG_CLUSTER_DIR"
    PG_CLUSTER_OURS=1
    if ! bash scripts/pg_cluster.sh start "$PG_CLUSTER_DIR" >/dev/null; then
        echo "FAIL postgresql: the private cluster did not start (scripts/pg_cluster.sh start $PG_CLUSTER_DIR); the PostgreSQL tests will fail"
        TOTAL_FAILED=$((TOTAL_FAILED + 1))
        return 1
    fi
    set -a
    # shellcheck disable=SC1091
    source "$PG_CLUSTER_DIR/env"
    set +a
    echo "== postgresql: DATABASE_URL=$DATABASE_URL"
}

# Before each build's tests: a test that took the server down (fault tests)
# and failed to bring it back must not break the next run.
pg_cluster_ensure_up() {
    ((PG_CLUSTER_OURS)) && [[ -f $PG_CLUSTER_DIR/env ]] || return 0
    bash scripts/pg_cluster.sh status "$PG_CLUSTER_DIR" >/dev/null 2>&1 && return 0
    echo "== postgresql: the server was down; starting it again"
    bash scripts/pg_cluster.sh up "$PG_CLUSTER_DIR" ||
        echo "== postgresql: could not start the server again"
}

pg_cluster_stop() {
    ((PG_CLUSTER_OURS)) || return 0
    PG_CLUSTER_OURS=0
    bash scripts/pg_cluster.sh stop "$PG_CLUSTER_DIR" 2>/dev/null
    echo "== postgresql: private cluster stopped"
}

# The Debian packages (scripts/check_deb.sh: build, lintian, dpkg -i, two
# examples built out of tree with pkg-config, purge) are checked in the
# background while the aarch64 tests run under qemu (mostly one core); their
# output is shown after those. Counted as one test program; skipped when
# AW_TEST_FILTER is set (run scripts/check_deb.sh itself for that).
DEB_CHECK_PID=
DEB_CHECK_OUT=

deb_check_start() {
    [[ -z ${AW_TEST_FILTER-} ]] || return 0
    DEB_CHECK_OUT=$(mktemp)
    echo "== Debian packages: scripts/check_deb.sh started in the background"
    timeout -k 10 900 bash scripts/check_deb.sh </dev/null >"$DEB_CHECK_OUT" 2>&1 &
    DEB_CHECK_PID=$!
}

deb_check_finish() {
    [[ -n $DEB_CHECK_PID ]] || return 0
    local rc
    wait "$DEB_CHECK_PID"
    rc=$?
    DEB_CHECK_PID=
    echo "== Debian packages (scripts/check_deb.sh)"
    cat "$DEB_CHECK_OUT"
    tally check_deb "$rc" "$DEB_CHECK_OUT"
}

# On ^C or an early exit: stop it (its own trap purges the packages).
deb_check_stop() {
    [[ -n $DEB_CHECK_PID ]] || return 0
    kill -TERM "$DEB_CHECK_PID" 2>/dev/null
    wait "$DEB_CHECK_PID" 2>/dev/null
    DEB_CHECK_PID=
    rm -f "$DEB_CHECK_OUT"
}

# The loop's two backends (aw_config.backend, AWITH_BACKEND): the default
# passes run on epoll, then the same test programs again on io_uring: every
# test_* program in the gcc build; in the ASan build, the core, io, http and
# pg programs (the layers that touch the loop; the rest of the ASan time is
# the fault injection).
URING_TESTS='^test_'
URING_ASAN_TESTS='^test_(with|error_rule|gen|exitstack|iter|task|scope|group|sync|queue|thread|observe|backend|stream|socket|tls|file|signal|ext|http_server|http_app|http_limits|http_faults|http_workers|ws|pg|pg_pool|pg_tx|pg_outage)$'

main() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
    ensure_packages || { echo "package installation failed" >&2; exit 1; }

    trap 'deb_check_stop; pg_cluster_stop' EXIT
    trap 'exit 130' INT TERM
    pg_cluster_start

    local build_failed=()

    if CC=gcc CXX=g++ setup_build build --werror; then
        pg_cluster_ensure_up
        AWITH_BACKEND=epoll run_tests build
        # The same programs on the io_uring backend (test_backend proves
        # which backend ran): the test programs, not the check_* scripts,
        # which test packaging and install, not the loop.
        pg_cluster_ensure_up
        AWITH_BACKEND=uring run_tests build "$URING_TESTS" io_uring
    else
        build_failed+=(build)
    fi

    # The ASan build also has the fault-injection wrappers (inert unless an
    # AW_FAULT_* variable is set): scripts/fault_alloc.sh then fails the
    # Nth allocation of chosen tests for every N (about 3 minutes).
    if CC=clang CXX=clang++ setup_build build-asan --werror \
        -Db_sanitize=address,undefined -Db_lundef=false -Dfault_injection=true; then
        pg_cluster_ensure_up
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 AWITH_BACKEND=epoll \
            run_tests build-asan
        pg_cluster_ensure_up
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 AWITH_BACKEND=uring \
            run_tests build-asan "$URING_ASAN_TESTS" "io_uring, asan"
        if [[ -z ${AW_TEST_FILTER-} ]]; then
            pg_cluster_ensure_up
            run_fault_alloc build-asan
        fi
    else
        build_failed+=(build-asan)
    fi

    pg_cluster_ensure_up
    CC=clang run_tsan_threads || build_failed+=(build-tsan)

    [[ -n ${AW_TEST_FILTER-} ]] || run_chaos

    deb_check_start
    run_aarch64_core || build_failed+=(build-aarch64)
    deb_check_finish
    pg_cluster_stop   # before the summary: it stays the last line

    ((${#build_failed[@]} == 0)) || echo "BUILD FAILED: ${build_failed[*]}"
    ((TOTAL_SKIPPED == 0)) || echo "$TOTAL_SKIPPED test program(s) skipped"
    echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
    ((${#build_failed[@]} == 0 && TOTAL_FAILED == 0))
}

# Run only when executed, not when sourced (scripts/demo.sh sources it).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
