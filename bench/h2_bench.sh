#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP/2 hello world over loopback (h2c with prior knowledge): awith's
# examples/hello_server against nginx-light (`listen ... http2`, the same
# JSON as a static file) and h2o (the same file), measured with h2load
# (Debian's nghttp2-client) in one run on this machine.
#
#   bash bench/h2_bench.sh            # 3 rounds of 5 s per server
#   bash bench/h2_bench.sh --quick    # 1 round of 2 s per server
#
# Each round, each server in turn: start it on a free port of 127.0.0.1
# with one worker, check that an HTTP/2 GET / answers
# {"message":"Hello, World!"}, run h2load -c 50 -m 10 (50 connections, 10
# streams in flight on each) for the duration after a 1 s warm-up, stop it.
# Prints requests/s, h2load's mean and max time per request, and the
# server's CPU time per request (user + system of its processes, from /proc
# around the run), each the median over the rounds, with awith's ratios;
# the table also goes to build-bench/h2_bench.md. With 2 or more cores the
# server is pinned to CPU 0 and h2load to CPU 1 (taskset).
#
# Exit status: 0 when every server ran, 1 if the build, a server or a run
# failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(nghttp2-client nginx-light h2o)

PY=/usr/bin/python3
BUILD=build-bench
rounds=3 seconds=5
bench_quick_args 2,20 "$@"

bench_build
bench_results h2-results
bench_hello_www
declare -a pin_server pin_client   # set by bench_pin
bench_pin pin_server pin_client "server on CPU 0, h2load on CPU 1 (taskset)"

nginx_conf() { # PORT DIR (sets CMD)
    bench_nginx_conf "$2" <<EOF
  http2_max_requests 1000000;
  http2_max_concurrent_streams 128;
  open_file_cache max=16;
  server {
    listen 127.0.0.1:$1 http2;
    root $WWW;
    location = / { default_type application/json; try_files /index.json =404; }
  }
EOF
}

SERVERS=(awith nginx h2o)
declare -A LABEL=([awith]="awith (examples/hello_server)" [nginx]="nginx-light 1.22 (http2, static file)"
    [h2o]="h2o 2.2 (static file)")

server_cmd() { # NAME PORT DIR -> CMD
    case $1 in
        awith) CMD=("$BUILD/examples/hello_server" --port "$2") ;;
        nginx) nginx_conf "$2" "$3" ;;
        h2o) bench_h2o_conf "$3" "$2" ;;
    esac
}

failed=()
run() { # NAME ROUND
    local name=$1 round=$2 dir="$results/$1" port pid
    bench_start "$name" "$dir"
    if ! bench_until bench_answers "http://127.0.0.1:$port/" "$BODY" --http2-prior-knowledge; then
        bench_server_failed "$pid" "$dir/server.log" "$name: no (or a wrong) HTTP/2 answer on port $port"
        failed+=("$name")
        return 1
    fi
    "${pin_client[@]}" h2load -c 50 -m 10 -D 1 "http://127.0.0.1:$port/" >/dev/null 2>&1
    if ! bench_measure "$dir/cpu-$round.txt" "$pid" "${pin_client[@]}" h2load -c 50 -m 10 -D "$seconds" \
        "http://127.0.0.1:$port/" >"$dir/h2load-$round.txt" 2>&1; then
        echo "== $name: h2load failed"
        failed+=("$name")
    fi
    bench_stop "$pid"
    local rps ok
    rps=$(awk '/^finished in/ {print $4}' "$dir/h2load-$round.txt")
    ok=$(awk '/^requests:/ {print $8, $9, $10, $11}' "$dir/h2load-$round.txt")
    printf '   %-40s %12s req/s   %s\n' "${LABEL[$name]}" "${rps:-?}" "$ok"
}

echo "== $rounds round(s) of ${seconds} s per server, h2load -c 50 -m 10, $pinned"
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    for name in "${SERVERS[@]}"; do
        run "$name" "$r"
    done
done

"$PY" - "$results" "$rounds" "$seconds" "$pinned" "$(nproc)" "${SERVERS[@]}" <<'EOF'
import re, statistics, sys
sys.path.insert(0, "bench")
from wrk_runs import ms
results, rounds, seconds, pinned, ncpu = sys.argv[1:6]
servers = sys.argv[6:]
labels = {"awith": "awith (examples/hello_server)", "nginx": "nginx-light 1.22 (http2, static file)",
          "h2o": "h2o 2.2 (static file)"}
data = {}
for s in servers:
    rps, mean, mx, us = [], [], [], []
    for r in range(1, int(rounds) + 1):
        try:
            text = open(f"{results}/{s}/h2load-{r}.txt").read()
        except OSError:
            continue
        a = re.search(r"^finished in .*?, ([\d.]+) req/s", text, re.M)
        n = re.search(r"^requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text, re.M)
        t = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
        if not (a and n and t) or int(n[2]) == 0:
            continue
        rps.append(float(a[1])); mx.append(ms(t[2])); mean.append(ms(t[3]))
        try:
            ticks, hz = open(f"{results}/{s}/cpu-{r}.txt").read().split()
            us.append(int(ticks) / int(hz) * 1e6 / int(n[2]))
        except (OSError, ValueError):
            pass
    med = lambda v: statistics.median(v) if v else None
    data[s] = (med(rps), med(mean), med(mx), med(us))
a = data.get("awith", (None,) * 4)
rows = ["| server | requests/s | mean time per request | max | server CPU per request | awith ÷ server (requests/s) | server CPU ÷ awith CPU |",
        "|---|---:|---:|---:|---:|---:|---:|"]
for s in servers:
    rps, mean, mx, us = data[s]
    if rps is None:
        rows.append(f"| {labels[s]} | failed | | | | | |"); continue
    ratio = f"{a[0] / rps:.2f}×" if a[0] else "?"
    cr = f"{us / a[3]:.2f}×" if us and a[3] else "?"
    rows.append(f"| {labels[s]} | {rps:,.0f} | {mean:.2f} ms | {mx:.1f} ms | {us:.1f} µs | {ratio} | {cr} |" if us else
                f"| {labels[s]} | {rps:,.0f} | {mean:.2f} ms | {mx:.1f} ms | ? | {ratio} | ? |")
md = ["# HTTP/2 hello world (h2c prior knowledge): awith vs nginx and h2o", "",
      f"GET / answering `{{\"message\":\"Hello, World!\"}}` over 127.0.0.1, one worker each; h2load -c 50 -m 10, "
      f"{seconds} s per run after a 1 s warm-up, median of {rounds} round(s), servers taking turns; nproc {ncpu}, {pinned}.",
      "", *rows, ""]
n = data.get("nginx", (None,) * 4)
if a[0] and n[0]:
    md.append(f"- target ≥ 1.0× nginx requests/s: **{'met' if a[0] >= n[0] else 'missed'}** ({a[0] / n[0]:.2f}×)")
open(f"{results}/../h2_bench.md", "w").write("\n".join(md) + "\n")
print(); print("\n".join(md[4:]))
print("\n(written to build-bench/h2_bench.md)")
EOF
((${#failed[@]} == 0)) || { echo "failed: ${failed[*]}"; exit 1; }
