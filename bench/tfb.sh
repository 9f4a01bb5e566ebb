#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The six TechEmpower Framework Benchmarks test types, side by side in one
# interleaved run: awith's examples/tfb on both loop backends (the same
# binary twice, AWITH_BACKEND=epoll and AWITH_BACKEND=uring) against
# uvicorn+FastAPI+asyncpg and aiohttp+asyncpg (Debian's packages,
# bench/py/tfb_*.py) on every type, and Kore 4.1 (Debian's kore,
# bench/kore/tfb_kore.c) on the three it implements here (json, db,
# plaintext).
#
#   bash bench/tfb.sh                  # 5 s per run, concurrency 4 16 64 256 (~18 min)
#   bash bench/tfb.sh --quick          # 2 s per run, concurrency 4 and 64
#   bash bench/tfb.sh --seconds 10 --conns "16 64 256 512" --rounds 2
#   bash bench/tfb.sh --types "db updates"   # only these types (default: all six:
#                                            # json db queries fortunes updates plaintext)
#   bash bench/tfb.sh --profile json [--conns 64] [--seconds 5]
#                                 # where each server's CPU goes on one type
#                                 # (perf, callgrind): see "Profile" below
#
# awith's two backends: both columns are always run and printed, labelled
# "awith epoll" and "awith io_uring", with the io_uring ÷ epoll ratio per
# type and concurrency (requests/s, and server CPU per request). The
# targets' verdicts and the "awith ÷ server" column use ONE backend for
# every row: the one awith picks by default (AWITH_BACKEND unset = auto),
# never the better of the two per row. Auto takes io_uring exactly when a
# loop forced onto io_uring can start (the same ring setup), so the rule
# is: io_uring when the AWITH_BACKEND=uring server started and answered,
# else epoll; the header of the summary names the one used.
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list plus wrk,
#      kore, gnuplot-nox and the Python peers' packages);
#   2. builds the release build in build-bench/ (examples on) and the Kore
#      module (cc -shared, Kore's own feature flags);
#   3. unless DATABASE_URL is set, starts a private cluster (scripts/
#      pg_cluster.sh start build-pg/tfb-bench; removed at exit) and loads
#      examples/tfb/schema.sql (World: 10,000 rows, Fortune: 12);
#   4. starts every server once, each on its own port with one worker and a
#      pool of 4 connections, and checks each answers every test type it
#      implements;
#   5. for each round, test type and concurrency, runs wrk against each
#      server in turn (1 s warm-up, then -d seconds with --latency; plaintext
#      with bench/tfb_pipeline.lua: 16 requests per write, as the benchmark
#      does); /queries and /updates ask for 20 rows;
#   6. prints, per test type and concurrency, requests/s, p99, the server's
#      CPU time per request (user + system of its processes over the run)
#      and errors (non-2xx answers, socket errors), with awith's ratios (its
#      default backend's, see above) and the targets (>= 10x FastAPI and
#      >= 5x aiohttp on every type, >= Kore on its three), then a table of
#      io_uring ÷ epoll per type and concurrency; written as markdown to
#      build-bench/tfb.md, and a chart of requests/s by concurrency per
#      server (both awith backends as two lines) for each type (gnuplot
#      SVG, build-bench/tfb-<type>.svg).
#
# On 2 or more cores every server is pinned to CPU 0, wrk and PostgreSQL
# (postmaster and backends) to CPU 1 (taskset): the servers take turns, so
# each has CPU 0 to itself while measured. Only 127.0.0.1 is used.
#
# Concurrency 4 is the pool size: Kore 4.1's pgsql layer stalls here once
# more requests than connections wait for the database (seen with
# pgsql_conn_max 4 and 70 alike; with 70 its worker was caught blocked in a
# synchronous PQconnectdb, and its parent restarted it), so its db runs
# above 4 usually get no answer: the table shows them as stalled (fewer answers over the run than one
# round per connection) and the targets leave them out.
# Kore 4.1 also answers pipelined requests slowly (the plaintext type).
#
# Profile (--profile TYPE): instead of the runs above, each server that
# implements TYPE is loaded once by wrk (the first --conns value, default
# 64; --seconds long, after the warm-up) while `perf record -g -e
# cpu-clock` (a software clock: this VM has no hardware counters) samples
# it and `perf stat` counts its system calls, context switches and
# softirqs; bench/perf_split.py puts every sample in a class (the kernel's
# network stack, io_uring/epoll, syscall entry/exit, scheduler, memory;
# the server's own code: awith's executable, Kore, or CPython's
# interpreter; each library: libc, jansson, libpq, OpenSSL, liburing,
# uvloop, asyncpg...) and scales the shares to the server's CPU time per
# request (from /proc, as in the runs). Then awith's handler is counted by
# callgrind on the epoll backend (load-independent: instructions per
# request over 2000 keep-alive requests from one curl after 300 to warm up,
# and the functions that take them), and `perf bench syscall basic` gives
# what one system call costs on this machine. Written as markdown to
# build-bench/tfb-profile-TYPE.md, with the perf data and callgrind output
# under build-bench/tfb-results/. The kernel's share needs root or
# kernel.perf_event_paranoid <= 1 (else perf samples user space only).
#
# Exit status: 0 when every server ran every run, 1 otherwise.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(wrk kore gnuplot-nox procps python3-asyncpg python3-uvloop python3-fastapi python3-uvicorn
           python3-aiohttp python3-httptools)

PY=/usr/bin/python3
BUILD=build-bench
CLUSTER=build-pg/tfb-bench
ROWS_PER_REQUEST=20
rounds=1 seconds=5 conns="4 16 64 256" conns_given=0
profile=
ALL_TESTS=(json db queries fortunes updates plaintext)
types="${ALL_TESTS[*]}"
while (($#)); do
    case $1 in
        --quick) seconds=2 conns="4 64" ;;
        --seconds) seconds=$2; shift ;;
        --rounds) rounds=$2; shift ;;
        --conns) conns=$2; conns_given=1; shift ;;
        --types) types=$2; shift ;;
        --profile) profile=$2; types=$2; shift ;;
        -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/tfb.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
TESTS=()
for t in $types; do
    [[ " ${ALL_TESTS[*]} " == *" $t "* ]] || {
        echo "bench/tfb.sh: --types: unknown test type '$t' (one of: ${ALL_TESTS[*]})" >&2
        exit 2
    }
    TESTS+=("$t")
done
((${#TESTS[@]})) || { echo "bench/tfb.sh: --types: no test type given" >&2; exit 2; }
if [[ -n $profile ]]; then
    ((${#TESTS[@]} == 1)) || { echo "bench/tfb.sh: --profile: one test type" >&2; exit 2; }
    ((conns_given)) || conns=64
    conns=${conns%% *}
    PACKAGES+=(linux-perf valgrind)
fi

bench_build
ninja -C "$BUILD" examples/tfb >/dev/null || { echo "BUILD FAILED: examples/tfb" >&2; exit 1; }

bench_results tfb-results
cc -O2 -shared -fPIC -Wall $(cat /usr/share/kore/features) -I/usr/include/kore bench/kore/tfb_kore.c \
    -o "$results/tfb_kore.so" || { echo "BUILD FAILED: bench/kore/tfb_kore.c" >&2; exit 1; }

# ---- the database -----------------------------------------------------------
pids=()
own_cluster=0
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    # A Kore worker stuck in its synchronous PQconnectdb ignores its parent's
    # stop and the parent waits for it: after 5 s, kill what is left.
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        pkill -KILL -P "$p" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    ((own_cluster)) && bash scripts/pg_cluster.sh stop "$CLUSTER" >/dev/null 2>&1
}
trap cleanup EXIT
[[ -n ${DATABASE_URL:-} ]] || bench_pg_start "$CLUSTER"
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 -c 'SET client_min_messages = warning' \
    -f examples/tfb/schema.sql >/dev/null || { echo "FAILED: loading examples/tfb/schema.sql" >&2; exit 1; }

if bench_pin pin_server pin_wrk "servers on CPU 0, wrk on CPU 1"; then
    bench_pin_postgres && pinned+=", PostgreSQL on CPU 1"
fi

# ---- the servers ------------------------------------------------------------
SERVERS=(awith_epoll awith_uring fastapi aiohttp kore)
declare -A LABEL=([awith_epoll]="awith epoll (examples/tfb)" [awith_uring]="awith io_uring (examples/tfb)" [fastapi]="uvicorn+FastAPI+asyncpg" [aiohttp]="aiohttp+asyncpg"
                  [kore]="Kore 4.1 (C)")
declare -A PORT PID
implements() { # SERVER TEST
    [[ $1 != kore ]] || [[ $2 == json || $2 == db || $2 == plaintext ]]
}
path_of() {
    case $1 in
        queries | updates) echo "/$1?queries=$ROWS_PER_REQUEST" ;;
        *) echo "/$1" ;;
    esac
}

start_server() { # NAME
    local name=$1 port dir="$results/$1"
    mkdir -p "$dir"
    port=$(bench_free_port)
    case $name in
        awith_epoll | awith_uring)
            AWITH_BACKEND=${name#awith_} "${pin_server[@]}" "$BUILD/examples/tfb" --port "$port" --pool 4 \
                >"$dir/server.log" 2>&1 &
            ;;
        fastapi) "${pin_server[@]}" "$PY" bench/py/tfb_fastapi.py --port "$port" --pool 4 >"$dir/server.log" 2>&1 & ;;
        aiohttp) "${pin_server[@]}" "$PY" bench/py/tfb_aiohttp.py --port "$port" --pool 4 >"$dir/server.log" 2>&1 & ;;
        kore)
            cat >"$dir/kore.conf" <<KORE
server notls {
	bind 127.0.0.1 $port
	tls no
}
load $results/tfb_kore.so init
workers 1
worker_max_connections 4096
pgsql_conn_max 4
http_keepalive_time 300
http_request_limit 1000
domain * {
	attach notls
	route /json tfb_json
	route /plaintext tfb_plaintext
	route /db tfb_db
}
KORE
            (cd "$dir" && KORE_TFB_DSN=$DATABASE_URL exec "${pin_server[@]}" kore -c kore.conf -f -n -r) \
                >"$dir/server.log" 2>&1 &
            ;;
    esac
    PID[$name]=$!
    PORT[$name]=$port
    pids+=("$!")
}

# Every type the server implements answers 200 with the right shape.
check_server() { # NAME
    local name=$1 t out
    BENCH_POLL=0.1 bench_until curl -s --max-time 1 -o /dev/null "http://127.0.0.1:${PORT[$name]}/json"
    for t in "${TESTS[@]}"; do
        implements "$name" "$t" || continue
        out=$(curl -s --max-time 5 -w ' %{http_code}' "http://127.0.0.1:${PORT[$name]}$(path_of "$t")")
        case $t in
            json) [[ $out == '{"message":"Hello, World!"} 200' ]] ;;
            plaintext) [[ $out == 'Hello, World! 200' ]] ;;
            db) [[ $out =~ ^\{\"id\":[0-9]+,\"randomNumber\":[0-9]+\}\ 200$ ]] ;;
            queries | updates) [[ $(grep -o '"randomNumber"' <<<"$out" | wc -l) == "$ROWS_PER_REQUEST" && $out == *' 200' ]] ;;
            fortunes) [[ $out == *'Additional fortune added at request time.'* && $out == *'&lt;script&gt;'* && $out == *' 200' ]] ;;
        esac || { echo "== $name: wrong answer to $(path_of "$t"): ${out:0:200}"; return 1; }
    done
}

failed=()
for s in "${SERVERS[@]}"; do
    start_server "$s"
done
for s in "${SERVERS[@]}"; do
    if ! check_server "$s"; then
        tail -n 20 "$results/$s/server.log"
        failed+=("$s")
    fi
done
ok_servers=()
for s in "${SERVERS[@]}"; do [[ " ${failed[*]} " == *" $s "* ]] || ok_servers+=("$s"); done
# The backend awith's verdicts are computed against (see the header).
if [[ " ${ok_servers[*]} " == *" awith_uring "* ]]; then
    reference=awith_uring
else
    reference=awith_epoll
    echo "== awith on io_uring did not start: awith's default here is epoll, the verdicts use it"
fi

# ---- the profile (--profile TYPE) ----------------------------------------------
# profile NAME: one loaded run of the server under perf record and perf
# stat (see the header), its shares put in classes by bench/perf_split.py
# into $results/NAME/profile.json.
profile_server() {
    local name=$1 t=${TESTS[0]} c=$conns dir="$results/$1" url tpids p rec st own
    url="http://127.0.0.1:${PORT[$name]}$(path_of "$t")"
    local lua=()
    [[ $t == plaintext ]] && lua=(-s bench/tfb_pipeline.lua)
    bench_wrk_warmup -t1 -c"$c" "${lua[@]}" "$url" ${lua:+-- 16}
    tpids=${PID[$name]}
    for p in $(pgrep -P "${PID[$name]}"); do tpids+=",$p"; done   # Kore's worker
    # The system calls first, in a run of their own: the tracepoint perf stat
    # needs for them costs the server time on every call.
    perf stat -e raw_syscalls:sys_enter,context-switches,irq:softirq_entry -p "$tpids" \
        -o "$dir/perf-stat.txt" >/dev/null 2>&1 &
    st=$!
    sleep 0.3   # perf attached
    "${pin_wrk[@]}" wrk -d2s -t1 -c"$c" "${lua[@]}" "$url" ${lua:+-- 16} >"$dir/perf-stat.wrk" 2>&1
    kill -INT "$st" 2>/dev/null
    wait "$st" 2>/dev/null
    perf record -q -g -e cpu-clock -F 1999 -p "$tpids" -o "$dir/perf.data" >/dev/null 2>&1 &
    rec=$!
    sleep 0.3
    # wrk's own CPU time (perf stat's task-clock around it) and PostgreSQL's
    # (its backends' ticks): what CPU 1 spends per request.
    local pm pg0=0 pg1=0 wrk_pin=("${pin_wrk[@]}")
    pm=$(bench_postmaster_pid) && pg0=$(bench_cpu_ticks "$pm")
    pin_wrk=("${wrk_pin[@]}" perf stat -x ',' -e task-clock -o "$dir/wrk-cpu.txt")
    bench_wrk_measure "${PID[$name]}" "$dir/profile.wrk" "$dir/profile.cpu" -t1 -c"$c" --timeout 5s "${lua[@]}" \
        "$url" ${lua:+-- 16} || failed+=("$name/profile")
    pin_wrk=("${wrk_pin[@]}")
    [[ -n $pm ]] && pg1=$(bench_cpu_ticks "$pm")
    echo "$((pg1 - pg0)) $(getconf CLK_TCK)" >"$dir/pg.cpu"
    kill -INT "$rec" 2>/dev/null
    wait "$rec" 2>/dev/null
    local ticks hz
    read -r ticks hz <"$dir/profile.cpu"
    bench_wrk_read "$dir/profile.wrk" "$ticks" "$hz"
    case $name in
        awith_*) own=tfb ;;
        kore) own=kore,tfb_kore.so ;;
        *) own= ;;
    esac
    local stat_total
    stat_total=$(awk '/requests in/ {print $1}' "$dir/perf-stat.wrk")
    "$PY" bench/perf_split.py "$dir/perf.data" "${wrk_us/\?/0}" "$dir/perf-stat.txt" "${stat_total:-0}" "$own" \
        >"$dir/profile.json" || failed+=("$name/profile")
    printf '   %-32s %s %-9s c=%-4s %12s req/s  cpu %6s us/req (%s)\n' "${LABEL[$name]}" "$t" "" "$c" \
        "${wrk_rps:-?}" "$wrk_us" "$(tr -d '\n' <"$dir/profile.wrk" | grep -o 'Socket errors[^R]*' || true)"
}

# callgrind_server TYPE: examples/tfb on epoll under callgrind, 300 requests
# of TYPE to warm up, counters zeroed, 2000 keep-alive requests from one
# curl, counters dumped; writes $results/callgrind/{summary,functions}.
callgrind_server() {
    local t=$1 dir="$results/callgrind" port vpid i ok=0 urls=()
    mkdir -p "$dir"
    port=$(bench_free_port)
    AWITH_BACKEND=epoll valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" \
        "$BUILD/examples/tfb" --port "$port" --pool 4 >"$dir/callgrind.log" 2>&1 &
    vpid=$!
    for ((i = 0; i < 300; i++)); do
        curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/json" && { ok=1; break; }
        sleep 0.1
    done
    if ((ok)); then
        for ((i = 0; i < 300; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$port$(path_of "$t")"); done
        curl -s "${urls[@]}"
        callgrind_control -z "$vpid" >/dev/null
        urls=()
        for ((i = 0; i < 2000; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$port$(path_of "$t")"); done
        curl -s "${urls[@]}"
        callgrind_control -d "$vpid" >/dev/null
        local out=("$dir"/callgrind.*.1)
        awk '/^summary:/ {print $2}' "${out[0]}" >"$dir/summary"
        callgrind_annotate --inclusive=no --threshold=100 "${out[0]}" 2>/dev/null |
            awk '/^ *[0-9,]+ .*:/ {n = $1; gsub(",", "", n); sub(/^ *[0-9,]+ +/, ""); print n "\t" $0}' |
            head -40 >"$dir/functions"
    fi
    bench_stop "$vpid"
}

if [[ -n $profile ]]; then
    echo "== profile of ${TESTS[0]} at c=$conns: perf record -g -e cpu-clock per server, ${seconds} s each, $pinned"
    for s in "${ok_servers[@]}"; do
        implements "$s" "${TESTS[0]}" && profile_server "$s"
    done
    syscall_us=$("${pin_server[@]}" perf bench syscall basic 2>/dev/null | awk '/usecs\/op/ {print $1}')
    if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
        echo "== callgrind: examples/tfb on epoll, ${TESTS[0]}, 2000 keep-alive requests"
        callgrind_server "${TESTS[0]}"
    fi
    "$PY" - "$results" "${TESTS[0]}" "$conns" "$seconds" "$pinned" "${syscall_us:-?}" "${ok_servers[@]}" <<'PYEOF'
import json, os, re, sys
sys.path.insert(0, "bench")
from perf_split import CLASSES
from wrk_runs import wrk_run
results, t, c, seconds, pinned, syscall_us = sys.argv[1:7]
servers = sys.argv[7:]
labels = {"awith_epoll": "awith epoll", "awith_uring": "awith io_uring", "fastapi": "uvicorn+FastAPI",
          "aiohttp": "aiohttp", "kore": "Kore 4.1"}
rows = {}
for s in servers:
    try:
        rows[s] = (json.load(open(f"{results}/{s}/profile.json")),
                   wrk_run(f"{results}/{s}/profile.wrk", f"{results}/{s}/profile.cpu"))
    except (OSError, ValueError):
        pass
# A stalled server (fewer answers over the run than one round per
# connection, as in the runs' tables: Kore's pgsql layer above its pool)
# has no per-request numbers; it is named under the table with its
# hottest symbols.
per_conn = 16 if t == "plaintext" else 1
def stalled(s):
    w = rows[s][1]
    return not w or not w.rps or w.rps * float(seconds) < int(c) * per_conn
names = [s for s in servers if s in rows and not stalled(s)]
stalled_names = [s for s in servers if s in rows and stalled(s)]
used = [k for k in CLASSES if any(rows[s][0]["us"].get(k, 0) >= 0.05 for s in names)]
md = [f"# Where the CPU goes: {t}, {c} connections (`bash bench/tfb.sh --profile {t}`)", "",
      f"Each server alone under wrk -t1 -c{c} for {seconds} s, `perf record -g -e cpu-clock -F 1999` on it "
      f"(a software clock: no hardware counters in this VM) and `perf stat` for its system calls; {pinned}. "
      f"Server CPU per request is user + system from /proc over the run; each class is its share of the "
      f"perf samples times that (bench/perf_split.py says what goes where). One system call "
      f"(`perf bench syscall basic`, getppid) costs {syscall_us} µs on this machine.", "",
      "| µs per request | " + " | ".join(labels[s] for s in names) + " |",
      "|---|" + "---:|" * len(names)]
def val(s, f):
    d, w = rows[s]
    return f(d, w)
md.append("| requests/s | " + " | ".join(val(s, lambda d, w: f"{w.rps:,.0f}" if w and w.rps else "?")
                                        for s in names) + " |")
md.append("| **server CPU/request** | " + " | ".join(
    val(s, lambda d, w: f"**{w.us:.1f}**" if w and w.us else "?") for s in names) + " |")
def side(s, what):
    """CPU 1's µs per request: wrk's task-clock, or PostgreSQL's backends."""
    w = rows[s][1]
    m = re.search(r"^\s*(\d+) requests in", w.text, re.M) if w else None
    if not m or int(m[1]) == 0:
        return None
    try:
        if what == "wrk":
            ms = float(open(f"{results}/{s}/wrk-cpu.txt").read().split("task-clock")[0].split()[-1]
                       .rstrip(",").split(",")[0])
            return ms * 1e3 / int(m[1])
        ticks, hz = open(f"{results}/{s}/pg.cpu").read().split()
        return int(ticks) / int(hz) * 1e6 / int(m[1])
    except (OSError, ValueError, IndexError, TypeError):
        return None
kern = [k for k in used if k.startswith("kernel")]
md.append("| **kernel, all** | " + " | ".join(
    val(s, lambda d, w: f"**{sum(d['us'][k] for k in kern):.1f}**") for s in names) + " |")
for k in used:
    label = k if k != "own code" else "own code (awith exe / Kore / CPython interpreter)"
    md.append(f"| {label} | " + " | ".join(val(s, lambda d, w: f"{d['us'][k]:.1f}") for s in names) + " |")
md.append("| **user space, all** | " + " | ".join(
    val(s, lambda d, w: f"**{sum(v for k, v in d['us'].items() if not k.startswith('kernel')):.1f}**")
    for s in names) + " |")
for ev, label in (("raw_syscalls:sys_enter", "system calls / request"), ("context-switches",
                  "context switches / request"), ("irq:softirq_entry", "softirqs / request")):
    md.append(f"| {label} | " + " | ".join(
        val(s, lambda d, w: f"{d.get('stat', {}).get(ev, 0):.2f}") for s in names) + " |")
md.append("| wrk's CPU/request (CPU 1) | " + " | ".join(
    (lambda v: f"{v:.1f}" if v is not None else "?")(side(s, "wrk")) for s in names) + " |")
if t not in ("json", "plaintext"):
    md.append("| PostgreSQL's CPU/request (CPU 1) | " + " | ".join(
        (lambda v: f"{v:.1f}" if v is not None else "?")(side(s, "pg")) for s in names) + " |")
md.append("| perf samples | " + " | ".join(val(s, lambda d, w: str(d["samples"])) for s in names) + " |")
for s in stalled_names:
    w = rows[s][1]
    md += ["", f"{labels[s]} stalled ({w.rps if w and w.rps else 0:,.0f} requests/s: fewer answers than one "
           f"round per connection); its samples: " + ", ".join(f"{h[1]} {h[0]:.1f} %" for h in rows[s][0]["hot"][:4])]
md += ["", "Hottest leaf symbols (share of the server's samples):", ""]
for s in names:
    md.append(f"- {labels[s]}: " + ", ".join(f"{h[1]} {h[0]:.1f} %" for h in rows[s][0]["hot"][:8]))
cg = f"{results}/callgrind"
try:
    total = int(open(f"{cg}/summary").read().split()[0])
    md += ["", f"callgrind, examples/tfb on epoll, `GET {t}` x 2000 keep-alive (one curl): "
           f"**{total / 2000:,.0f} instructions per request** in user space; by function (self):", "",
           "| instructions/request | function |", "|---:|---|"]
    shown = 0
    for line in open(f"{cg}/functions"):
        n, fn = line.rstrip("\n").split("\t", 1)
        # callgrind_annotate 3.19 also lists main and its callers with
        # their inclusive cost: a self cost cannot be half of the total.
        if int(n) > total / 2 or shown == 20:
            continue
        shown += 1
        fn = re.sub(r"^\(\s*[\d.]+%\)\s*", "", fn.strip())
        fn, _, dso = re.sub(r"^\S*:", "", fn).partition(" [")
        if fn.startswith("0x"):   # a stripped library's own function: name the library
            fn += " in " + dso.rstrip("]").rsplit("/", 1)[-1]
        md.append(f"| {int(n) / 2000:,.0f} | `{fn}` |")
except (OSError, ValueError, IndexError):
    pass
out = f"{results}/../tfb-profile-{t}.md"
open(out, "w").write("\n".join(md) + "\n")
print("\n".join(md))
print(f"(written to build-bench/tfb-profile-{t}.md)")
PYEOF
    if ((${#failed[@]})); then
        echo "FAILED: ${failed[*]}"
        exit 1
    fi
    exit 0
fi

# ---- the runs -----------------------------------------------------------------
# measure NAME TEST CONNS ROUND
measure() {
    local name=$1 t=$2 c=$3 r=$4 url out
    url="http://127.0.0.1:${PORT[$name]}$(path_of "$t")"
    out="$results/$name/$t-c$c-r$r"
    local lua=()
    [[ $t == plaintext ]] && lua=(-s bench/tfb_pipeline.lua)
    bench_wrk_warmup -t1 -c"$c" "${lua[@]}" "$url" ${lua:+-- 16}
    if ! bench_wrk_measure "${PID[$name]}" "$out.wrk" "$out.cpu" -t1 -c"$c" --timeout 5s "${lua[@]}" "$url" \
        ${lua:+-- 16}; then
        echo "== $name $t c=$c: wrk failed"
        failed+=("$name/$t/$c")
    fi
    printf '   %-26s %-9s c=%-4s %12s req/s  p99 %-9s %s\n' "${LABEL[$name]}" "$t" "$c" \
        "$(awk '/^Requests\/sec:/ {print $2}' "$out.wrk")" "$(awk '$1 == "99%" {print $2}' "$out.wrk")" \
        "$(awk '/Non-2xx|Socket errors/' "$out.wrk" | tr '\n' ' ')"
}

echo "== $rounds round(s), ${seconds} s per run, concurrency $conns, types ${TESTS[*]}, $pinned"
for ((r = 1; r <= rounds; r++)); do
    for t in "${TESTS[@]}"; do
        for c in $conns; do
            for s in "${ok_servers[@]}"; do
                implements "$s" "$t" && measure "$s" "$t" "$c" "$r"
            done
        done
    done
done

"$PY" - "$results" "$rounds" "$seconds" "$pinned" "$(nproc)" "$conns" "${TESTS[*]}" "$reference" "${SERVERS[@]}" \
    <<'PYEOF'
import os, re, statistics, subprocess, sys
sys.path.insert(0, "bench")
from wrk_runs import wrk_medians, wrk_run
results, rounds, seconds, pinned, ncpu, conns, tests, ref = sys.argv[1:9]
servers = sys.argv[9:]
conns = [int(c) for c in conns.split()]
tests = tests.split()
labels = {"awith_epoll": "awith epoll (examples/tfb)", "awith_uring": "awith io_uring (examples/tfb)",
          "fastapi": "uvicorn+FastAPI+asyncpg", "aiohttp": "aiohttp+asyncpg", "kore": "Kore 4.1 (C)"}
backend = {"awith_epoll": "epoll", "awith_uring": "io_uring"}
kore_tests = {"json", "db", "plaintext"}

def run(s, t, c):
    runs = [wrk_run(f"{results}/{s}/{t}-c{c}-r{r}.wrk", f"{results}/{s}/{t}-c{c}-r{r}.cpu")
            for r in range(1, int(rounds) + 1)]
    errs = 0
    for w in filter(None, runs):
        e = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", w.text)
        se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w.text)
        errs += (int(e[1]) if e else 0) + (sum(map(int, se.groups())) if se else 0)
    rps, p99, cpu = wrk_medians(runs)
    if rps is None:
        return None
    return rps, p99, cpu, errs

md = ["# TechEmpower test types: awith (epoll and io_uring) vs uvicorn+FastAPI, aiohttp, Kore", "",
      f"One worker per server, pool of 4 connections, over 127.0.0.1; wrk -t1, {seconds} s per run after a 1 s "
      f"warm-up, median of {rounds} round(s), servers taking turns; /queries and /updates with 20 rows; plaintext "
      f"pipelined 16 deep (its p99 is not shown: wrk times one request per pipelined write, and its 99% "
      f"often reads 0). nproc {ncpu}, {pinned}. Errors are non-2xx answers plus socket errors. "
      f"awith runs twice, the same binary with AWITH_BACKEND=epoll and AWITH_BACKEND=uring; the "
      f"\"awith ÷ server\" column and the targets use awith on **{backend[ref]}**, its default backend here "
      f"(auto: io_uring when a ring can be set up, else epoll), for every row.", ""]
targets = []
data = {}

# A run is stalled when the server did not answer even one round per
# connection over the whole run (one request each, or one pipelined batch
# of 16 for plaintext): Kore's pgsql layer above its pool, or its slow
# pipelining, where a "ratio" against a handful of answers means nothing.
def stalled(t, c, d):
    per_conn = 16 if t == "plaintext" else 1
    return d[0] * float(seconds) < c * per_conn
for t in tests:
    md += [f"## {t}", "", "| concurrency | server | requests/s | p99 | server CPU/request | errors | awith ÷ server |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for c in conns:
        a = run(ref, t, c)
        for s in servers:
            if s == "kore" and t not in kore_tests:
                continue
            d = run(s, t, c)
            data[(s, t, c)] = d
            if d is None:
                md.append(f"| {c} | {labels[s]} | failed | | | | |")
                continue
            if stalled(t, c, d):
                md.append(f"| {c} | {labels[s]} | {d[0]:,.0f} (stalled: fewer answers than one round per "
                          f"connection) | | | {d[3]} | |")
                continue
            ratio = "1.00× (reference)" if s == ref else (f"{a[0] / d[0]:.2f}×" if a and a[0] else "?")
            cpu = f"{d[2]:.1f} µs" if d[2] else "?"
            p99 = "n/a" if t == "plaintext" else f"{d[1]:.2f} ms"
            md.append(f"| {c} | {labels[s]} | {d[0]:,.0f} | {p99} | {cpu} | {d[3]} | {ratio} |")
    md.append("")
    for s, need in (("fastapi", 10.0), ("aiohttp", 5.0), ("kore", 1.0)):
        if s == "kore" and t not in kore_tests:
            continue
        worst = None
        for c in conns:
            a, d = data.get((ref, t, c)), data.get((s, t, c))
            if a and d and not stalled(t, c, d):
                r = a[0] / d[0]
                worst = r if worst is None else min(worst, r)
        if worst is not None:
            targets.append(f"- {t}: ≥ {need:g}× {labels[s]} at every concurrency (lowest {worst:.2f}×, awith on "
                           f"{backend[ref]}): **{'met' if worst >= need else 'missed'}**")

# awith's two backends against each other: > 1 means io_uring serves more
# requests/s (or spends more CPU per request) than epoll.
def ratio(u, e, i, fmt):
    return f"{u[i] / e[i]:{fmt}}×" if u and e and u[i] and e[i] else "?"
md += ["## awith: io_uring ÷ epoll", "",
       "| type | concurrency | epoll requests/s | io_uring requests/s | io_uring ÷ epoll requests/s "
       "| io_uring ÷ epoll p99 | io_uring ÷ epoll CPU/request |", "|---|---:|---:|---:|---:|---:|---:|"]
for t in tests:
    for c in conns:
        e, u = data.get(("awith_epoll", t, c)), data.get(("awith_uring", t, c))
        rps = lambda d: f"{d[0]:,.0f}" if d else "failed"
        p99 = "n/a" if t == "plaintext" else ratio(u, e, 1, '.2f')
        md.append(f"| {t} | {c} | {rps(e)} | {rps(u)} | {ratio(u, e, 0, '.2f')} | {p99} "
                  f"| {ratio(u, e, 2, '.2f')} |")
md += ["", "## Targets", "", f"Against awith on {backend[ref]} (its default backend here), every row.", ""] \
      + targets + [""]

# A chart per type: requests/s by concurrency, a line per server.
for t in tests:
    dat = f"{results}/tfb-{t}.dat"
    names = [s for s in servers if not (s == "kore" and t not in kore_tests)]
    with open(dat, "w") as f:
        for c in conns:
            f.write(f"{c} " + " ".join(f"{data[(s, t, c)][0]:.0f}" if data.get((s, t, c)) else "NaN"
                                      for s in names) + "\n")
    # noenhanced: the titles are literal (enhanced text makes "_" a subscript: "io_uring").
    plots = ", ".join(f"'{dat}' using 1:{i + 2} with linespoints title '{labels[s]}' noenhanced"
                      for i, s in enumerate(names))
    script = (f"set terminal svg size 640,400 dynamic font 'sans,11'; set output '{results}/../tfb-{t}.svg';"
              f"set title 'TechEmpower {t}: requests/s by concurrency (one worker each)';"
              f"set xlabel 'connections'; set ylabel 'requests/s'; set logscale x 2; set key outside bottom center;"
              f"set grid; set yrange [0:*]; plot {plots}")
    try:
        subprocess.run(["gnuplot", "-e", script], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no chart for {t}: {e})")
open(f"{results}/../tfb.md", "w").write("\n".join(md))
print("\n".join(md))
print("(written to build-bench/tfb.md; charts build-bench/tfb-<type>.svg)")
PYEOF

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
