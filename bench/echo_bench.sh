#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Echo throughput over loopback: awith's examples/echo_server against a
# hand-written epoll server (bench/epoll_echo.c) and Python asyncio streams on
# uvloop (bench/py/echo_uvloop.py), measured in one run on this machine.
#
#   bash bench/echo_bench.sh             # 5 rounds of 3 s per case (~2 min)
#   bash bench/echo_bench.sh --quick     # 1 run of 1 s per case
#   bash bench/echo_bench.sh --perf      # also: perf record the awith server
#                                        # (each backend) under the
#                                        # 64-connection load
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list plus
#      python3-uvloop);
#   2. configures and builds the release build in build-bench/ as bench/run.sh
#      does, with the examples on (echo_server is one);
#   3. starts the four servers (awith's echo_server on each loop backend), each on its own free port on 127.0.0.1
#      (port 0; each prints "listening on 127.0.0.1:PORT");
#   4. runs build-bench/bench/echo_load (plain C + epoll, no awith) against
#      each: C connections, each doing ping-pong with 64-byte messages (write
#      one, read the echo, repeat), C = 1 and 64; the servers take turns in
#      each round; each cell is the median of the rounds;
#   5. stops the servers (SIGTERM; awith's must exit 0 and say "echo server
#      stopped");
#   6. prints the table, also written as markdown to build-bench/echo_bench.md:
#      connections | awith msgs/s | epoll msgs/s | uvloop msgs/s |
#      awith÷epoll | awith÷uvloop | targets (≥ 0.9× epoll, ≥ 5× uvloop)
#      and a second one: each server's CPU time per message (user + system,
#      from /proc/PID/stat around each load run), which shows what a server
#      costs even when the load generator is what bounds msgs/s.
#
# Nothing is pinned to a core. On a 2-core machine the load generator and the
# server under test each have one core to themselves (the idle servers sleep
# in epoll_wait), so a result can be bounded by the load generator as well as
# by the server: the markdown says how many cores there were.
#
# Exit status: 0 when every program ran (targets met or not), 1 if the build,
# a server or a load run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(python3-uvloop)

PY=/usr/bin/python3      # Debian's interpreter: the one python3-uvloop is for
BUILD=build-bench
SIZE=64
CONNS=(1 64)
rounds=5 seconds=3 perf=0
for arg in "$@"; do
    case $arg in
        --quick) rounds=1 seconds=1 ;;
        --perf) perf=1 ;;
        -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/echo_bench.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

bench_build

results=$BUILD/echo-results
rm -rf "$results"
mkdir -p "$results"
LOAD=$BUILD/bench/echo_load

declare -A PID PORT
# awith runs twice: on the epoll loop backend and on io_uring (AWITH_BACKEND).
SIDES=(awith uring epoll uvloop)
cmd_awith=(env AWITH_BACKEND=epoll "$BUILD/examples/echo_server" --port 0)
cmd_uring=(env AWITH_BACKEND=uring "$BUILD/examples/echo_server" --port 0)
cmd_epoll=("$BUILD/bench/epoll_echo" --port 0)
cmd_uvloop=("$PY" bench/py/echo_uvloop.py --port 0 --loop uvloop)

stop_all() {
    local side
    for side in "${SIDES[@]}"; do
        [[ -n ${PID[$side]:-} ]] && kill -TERM "${PID[$side]}" 2>/dev/null
    done
}
trap stop_all EXIT

# start SIDE: run the server in the background, wait for its port.
start() {
    local side=$1 cmd_name="cmd_$1[@]" i port
    "${!cmd_name}" >"$results/$side.out" 2>"$results/$side.err" &
    PID[$side]=$!
    for ((i = 0; i < 200; i++)); do
        port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$results/$side.out")
        if [[ -n $port ]]; then
            PORT[$side]=$port
            echo "== $side: pid ${PID[$side]}, port $port"
            return 0
        fi
        kill -0 "${PID[$side]}" 2>/dev/null || break
        sleep 0.05
    done
    echo "== $side did not start:" >&2
    cat "$results/$side.out" "$results/$side.err" >&2
    return 1
}

# Others may share the machine: record how busy it was when we started.
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

failed=()
for side in "${SIDES[@]}"; do
    start "$side" || failed+=("$side")
done
((${#failed[@]} == 0)) || { echo "bench FAILED: could not start ${failed[*]}" >&2; exit 1; }

CLK_TCK=$(getconf CLK_TCK)

# load SIDE CONNS: one measurement. Appends msgs/s to $results/SIDE-CONNS.txt
# and the server's CPU time per message (µs, warm-up included on both sides
# of the division) to $results/SIDE-CONNS.cpu.
load() {
    local side=$1 conns=$2 line rate total before after cpu
    before=$(bench_cpu_ticks "${PID[$side]}")
    line=$("$LOAD" --port "${PORT[$side]}" --conns "$conns" --seconds "$seconds" --size "$SIZE" --warmup 0.5 \
        2>>"$results/load.err")
    after=$(bench_cpu_ticks "${PID[$side]}")
    rate=$(sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p' <<<"$line")
    total=$(sed -n 's/.*total_msgs=\([0-9]*\).*/\1/p' <<<"$line")
    if [[ -z $rate || -z $total ]] || ((total == 0)); then
        echo "   $side, $conns connection(s): FAILED (see $results/load.err)"
        failed+=("$side/$conns")
        return 1
    fi
    cpu=$(awk -v d=$((after - before)) -v hz="$CLK_TCK" -v n="$total" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    printf '   %-6s %2d connection(s): %9d msgs/s, server CPU %6s µs/msg\n' "$side" "$conns" "$rate" "$cpu"
    echo "$rate" >>"$results/$side-$conns.txt"
    echo "$cpu" >>"$results/$side-$conns.cpu"
}

for conns in "${CONNS[@]}"; do
    for ((r = 1; r <= rounds; r++)); do
        echo "== $conns connection(s), round $r of $rounds"
        for side in "${SIDES[@]}"; do
            load "$side" "$conns"
        done
    done
done

if ((perf)); then
    if command -v perf >/dev/null; then
        for side in awith uring; do
            echo "== perf: awith echo_server ($side) under ${CONNS[-1]} connections"
            perf record -q -g -o "$results/perf-$side.data" -p "${PID[$side]}" -- sleep "$((seconds + 1))" \
                >/dev/null 2>"$results/perf.err" &
            perf_pid=$!
            sleep 0.2
            "$LOAD" --port "${PORT[$side]}" --conns "${CONNS[-1]}" --seconds "$seconds" --size "$SIZE" >/dev/null
            wait "$perf_pid"
            {
                echo "-- $side, by object (kernel = syscalls and the TCP stack; libc = syscall stubs)"
                perf report -i "$results/perf-$side.data" --no-children --sort dso --stdio 2>/dev/null |
                    grep -E '^ +[0-9.]+%' | head -n 6
                echo "-- $side, by function"
                perf report -i "$results/perf-$side.data" --no-children --sort symbol --stdio 2>/dev/null |
                    grep -E '^ +[0-9.]+%' | head -n 25
            } | tee "$results/perf-$side.txt"
        done
    else
        echo "== perf: not installed (Debian package linux-perf)"
    fi
fi

# Stop the servers. awith's must stop cleanly: exit 0, "echo server stopped".
trap - EXIT
for side in "${SIDES[@]}"; do
    kill -TERM "${PID[$side]}" 2>/dev/null
done
for side in awith uring; do
    wait "${PID[$side]}"
    awith_rc=$?
    if ((awith_rc != 0)) || ! grep -qx 'echo server stopped' "$results/$side.out"; then
        echo "== awith echo_server ($side) did not stop cleanly (exit status $awith_rc):"
        cat "$results/$side.out" "$results/$side.err"
        failed+=("$side-shutdown")
    elif [[ -s $results/$side.err ]]; then
        echo "== awith echo_server ($side) wrote to stderr:"
        cat "$results/$side.err"
    fi
done
for side in epoll uvloop; do wait "${PID[$side]}" 2>/dev/null; done

cpu=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
machine=(
    "nproc: $(nproc) (nothing pinned: the load generator and the server under test each get a core)"
    "CPU: ${cpu:-unknown}"
    "kernel: $(uname -srm)"
    "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    "compiler: $(gcc --version | head -n 1) (meson buildtype=release)"
    "python: $("$PY" --version 2>&1), uvloop $("$PY" -c 'import uvloop; print(uvloop.__version__)' 2>/dev/null || echo '?')"
    "load average: $loadavg_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end (1, 5, 15 min)"
    "method: ${SIZE}-byte ping-pong per connection, ${seconds} s per run after 0.5 s warm-up, median of ${rounds} round(s), servers interleaved"
)

echo
"$PY" - "$results" "$BUILD/echo_bench.md" "${CONNS[*]}" "${machine[@]}" <<'EOF'
import statistics
import sys

results, md_path, conns_list, machine = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
EPOLL_TARGET, UVLOOP_TARGET = 0.9, 5.0
URING_TARGET = 1.2   # awith on io_uring against the hand-written epoll server, 64 connections


def median(side, conns, ext="txt"):
    try:
        with open(f"{results}/{side}-{conns}.{ext}") as f:
            values = [float(v) for v in f.read().split()]
    except OSError:
        return None
    return statistics.median(values) if values else None


def rate(v):
    return "failed" if v is None else f"{v:,.0f}"


def ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def fmt(r):
    return "—" if r is None else f"{r:.2f}×"


met = missed = 0
rows = []
for conns in conns_list:
    a, e, u = (median(s, conns) for s in ("awith", "epoll", "uvloop"))
    re_, ru = ratio(a, e), ratio(a, u)
    verdicts = []
    for r, goal, name in ((re_, EPOLL_TARGET, "epoll"), (ru, UVLOOP_TARGET, "uvloop")):
        if r is None:
            verdicts.append(f"≥ {goal:g}× {name}: missed (no result)")
            missed += 1
        else:
            ok = r >= goal
            met += ok
            missed += not ok
            verdicts.append(f"≥ {goal:g}× {name}: {'met' if ok else 'missed'}")
    g = median("uring", conns)
    rg = ratio(g, e)
    if conns == "64":
        if rg is None:
            verdicts.append(f"io_uring ≥ {URING_TARGET:g}× epoll: missed (no result)")
            missed += 1
        else:
            ok = rg >= URING_TARGET
            met += ok
            missed += not ok
            verdicts.append(f"io_uring ≥ {URING_TARGET:g}× epoll: {'met' if ok else 'missed'}")
    rows.append([conns, rate(a), rate(g), rate(e), rate(u), fmt(re_), fmt(rg), fmt(ru), "; ".join(verdicts)])

head = ["connections", "awith msgs/s", "awith io_uring msgs/s", "epoll msgs/s", "uvloop msgs/s", "awith÷epoll",
        "awith io_uring÷epoll", "awith÷uvloop",
        "targets (≥ 0.9× epoll, ≥ 5× uvloop; io_uring ≥ 1.2× epoll at 64)"]
right = [True, True, True, True, True, True, True, True, False]


def table(head, rows, right):
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if rt else c.ljust(w) for c, w, rt in zip(r, widths, right)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if rt else ("-" * (w + 2)) for w, rt in zip(widths, right)) + "|"
    return [line(head), sep] + [line(r) for r in rows]


# Server CPU per message: what each server costs, whether or not the load
# generator (one core of its own) is what bounds msgs/s.
cpu_rows = []
for conns in conns_list:
    a, g, e, u = (median(s, conns, "cpu") for s in ("awith", "uring", "epoll", "uvloop"))
    cpu_rows.append([conns] + ["—" if v is None else f"{v:.2f}" for v in (a, g, e, u)]
                    + [fmt(ratio(a, e)), fmt(ratio(g, e)), fmt(ratio(g, a)), fmt(ratio(u, a))])
cpu_head = ["connections", "awith µs/msg", "awith io_uring µs/msg", "epoll µs/msg", "uvloop µs/msg", "awith÷epoll",
            "awith io_uring÷epoll", "awith io_uring÷awith", "uvloop÷awith"]

text = "\n".join(
    ["## awith echo throughput over loopback", ""]
    + [f"- {m}" for m in machine]
    + ["",
       "Servers: awith = examples/echo_server (a task per connection in a task group, "
       "aw_stream_read/aw_stream_write) on the epoll loop backend; awith io_uring = the same "
       "program with AWITH_BACKEND=uring; epoll = bench/epoll_echo.c (hand-written, edge-triggered, "
       "one thread); uvloop = bench/py/echo_uvloop.py (asyncio.start_server streams on uvloop). "
       "Load: bench/echo_load.c (plain epoll, one thread). Messages per second = round trips "
       "completed, all connections together.",
       ""]
    + table(head, rows, right)
    + ["", f"Targets: {met} met, {missed} missed.", "",
       "Server CPU time per message (user + system, all threads, from /proc/PID/stat; "
       "lower is better; awith÷epoll above 1 means awith costs more):", ""]
    + table(cpu_head, cpu_rows, [True] * 9))
print(text)
with open(md_path, "w") as f:
    f.write(text + "\n")
print(f"\n(written to {md_path})")
EOF

if ((${#failed[@]})); then
    echo "bench FAILED: ${failed[*]}"
    exit 1
fi
