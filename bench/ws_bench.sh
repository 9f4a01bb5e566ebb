#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# WebSocket echo over loopback, 100 clients: awith (bench/ws_echo.c, an
# aw_app_ws route) against aiohttp (Debian's python3-aiohttp, with uvloop
# when installed: bench/py/ws_aiohttp.py), in one run on this machine.
# The load is bench/ws_load.c (plain sockets, one epoll loop in C, so the
# client is not the bottleneck): each connection sends a 64-byte masked
# text message and waits for its echo, again and again.
#
#   bash bench/ws_bench.sh            # 3 rounds of 5 s per server
#   bash bench/ws_bench.sh --quick    # 1 round of 2 s per server
#   BUILD=build bash bench/ws_bench.sh  # use an existing build directory
#   DEPTH=8 bash bench/ws_bench.sh      # 8 messages in flight per client
#
# Prints messages/s, p50 and p99 round-trip latency and the server's CPU
# time per message (user + system of the server process, from /proc around
# the measured run), each the median over the rounds, with awith's ratio;
# the target is >= 5x aiohttp's messages/s. The table is also written as
# markdown to $BUILD/ws_bench.md. With 2 or more cores the server is pinned
# to CPU 0 and the load to CPU 1 (taskset).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source bench/lib.sh

PY=/usr/bin/python3      # Debian's interpreter: the one python3-aiohttp is for
BUILD=${BUILD:-build-bench}
CONNS=100 SIZE=64 DEPTH=${DEPTH:-1}
rounds=3 seconds=5
bench_quick_args 2,20 "$@"

if [[ ! -x $BUILD/bench/ws_echo || ! -x $BUILD/bench/ws_load ]]; then
    if [[ ! -d $BUILD ]]; then
        meson setup "$BUILD" --buildtype=release -Dtests=false -Dexamples=false -Dbench=true -Dpg=disabled ||
            { echo "BUILD FAILED: $BUILD" >&2; exit 1; }
    fi
    ninja -C "$BUILD" bench/ws_echo bench/ws_load || { echo "BUILD FAILED: $BUILD" >&2; exit 1; }
fi
"$PY" -c 'import aiohttp' 2>/dev/null || { echo "python3-aiohttp is not installed" >&2; exit 1; }

bench_results ws-results
declare -a pin_server pin_load   # set by bench_pin
bench_pin pin_server pin_load "server on CPU 0, load on CPU 1 (taskset)"

SERVERS=(awith aiohttp)
declare -A LABEL=([awith]="awith (bench/ws_echo)" [aiohttp]="aiohttp ($("$PY" -c 'import uvloop' 2>/dev/null && echo uvloop || echo asyncio))")

failed=()
run() { # NAME ROUND
    local name=$1 round=$2 dir="$results/$1" port pid
    mkdir -p "$dir"
    port=$(bench_free_port)
    case $name in
        awith) "${pin_server[@]}" "$BUILD/bench/ws_echo" --port "$port" >"$dir/server.log" 2>&1 & ;;
        aiohttp) "${pin_server[@]}" "$PY" bench/py/ws_aiohttp.py --port "$port" >"$dir/server.log" 2>&1 & ;;
    esac
    pid=$!
    bench_until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"
    local u0 s0 u1 s1 out
    read -r u0 s0 <<<"$(bench_cpu_split "$pid")"
    # ws_load counts after a 1 s warm-up: take the CPU over the whole run,
    # and the warm-up's share out by the message rate (below).
    if ! out=$("${pin_load[@]}" "$BUILD/bench/ws_load" "$port" "$CONNS" "$seconds" "$SIZE" /echo 1 "$DEPTH"); then
        echo "== $name: load failed: $out"
        failed+=("$name")
    fi
    read -r u1 s1 <<<"$(bench_cpu_split "$pid")"
    bench_stop "$pid"
    echo "$out ticks=$((u1 - u0 + s1 - s0)) sys=$((s1 - s0)) hz=$(getconf CLK_TCK)" >"$dir/round-$round.txt"
    echo "  $name round $round: $out"
}

for ((r = 1; r <= rounds; r++)); do
    for s in "${SERVERS[@]}"; do run "$s" "$r"; done
done

# Medians. CPU per message: the server's CPU over warm-up + measured
# seconds, divided by the messages of that time (rate x (seconds + 1)).
summary() { # NAME -> "rate p50 p99 cpu_us sys_percent"
    "$PY" - "$results/$1" "$seconds" <<'EOF'
import glob, statistics, sys
rows = []
for f in glob.glob(sys.argv[1] + "/round-*.txt"):
    d = dict(kv.split("=") for kv in open(f).read().split())
    rate = float(d["rate"])
    cpu_s = int(d["ticks"]) / int(d["hz"])
    msgs = rate * (float(sys.argv[2]) + 1)
    sys_share = int(d["sys"]) / int(d["ticks"]) * 100 if int(d["ticks"]) else 0
    rows.append((rate, int(d["p50_us"]), int(d["p99_us"]), cpu_s / msgs * 1e6 if msgs else 0, sys_share))
if not rows:
    print("0 0 0 0 0")
else:
    print(" ".join("%g" % statistics.median(c) for c in zip(*rows)))
EOF
}

read -r a_rate a_p50 a_p99 a_cpu a_sys <<<"$(summary awith)"
read -r h_rate h_p50 h_p99 h_cpu h_sys <<<"$(summary aiohttp)"
ratio=$("$PY" -c "print('%.1f' % ($a_rate / $h_rate if $h_rate else 0))")
md=$BUILD/ws_bench.md
{
    echo "WebSocket echo, $CONNS clients, $SIZE-byte text messages, $DEPTH in flight per client;"
    echo "$rounds round(s) of $seconds s, medians; $pinned; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| server | messages/s | p50 | p99 | server CPU per message | of it in the kernel |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '| %s | %.0f | %s us | %s us | %.1f us | %.0f %% |\n' "${LABEL[awith]}" "$a_rate" "$a_p50" "$a_p99" "$a_cpu" "$a_sys"
    printf '| %s | %.0f | %s us | %s us | %.1f us | %.0f %% |\n' "${LABEL[aiohttp]}" "$h_rate" "$h_p50" "$h_p99" "$h_cpu" "$h_sys"
    echo
    echo "awith / aiohttp: ${ratio}x messages/s (target >= 5x)."
} | tee "$md"
((${#failed[@]} == 0)) || { echo "failed: ${failed[*]}"; exit 1; }
exit 0
