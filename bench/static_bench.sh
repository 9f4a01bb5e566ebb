#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Static files over loopback: awith's examples/static_server (aw_app_static)
# against nginx-light serving the same directory, a 4 KiB and a 1 MiB file,
# measured with wrk in one run on this machine.
#
#   bash bench/static_bench.sh            # 3 rounds of 5 s per server and file
#   bash bench/static_bench.sh --quick    # 1 round of 2 s
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list plus wrk and
#      nginx-light);
#   2. configures and builds the release build in build-bench/ (as
#      bench/http_bench.sh does; static_server is an example);
#   3. writes small.bin (4 KiB) and large.bin (1 MiB) of random bytes into
#      a directory both servers serve from its root;
#   4. for each round, for each file, for each server in turn: start it on
#      a free port on 127.0.0.1 with one worker, check the file arrives
#      whole (curl, cmp), warm up 1 s, run wrk (keep-alive, 1 thread, 64
#      connections, --latency) and stop it;
#   5. prints requests/s, p99 latency, transfer rate and the server's CPU
#      time per request (user + system from /proc around the wrk run) per
#      server and file, each the median over the rounds, with awith ÷ nginx
#      ratios; the table is also written as markdown to
#      build-bench/static_bench.md.
#
# nginx runs as a static site usually does: sendfile on, tcp_nopush on,
# access log off, no open_file_cache (awith opens the file per request
# too: every request sees the file as it is now). Both send the ETag and
# Last-Modified. On a machine with 2 or more cores the server is pinned to
# CPU 0 and wrk to CPU 1 (taskset). Only 127.0.0.1 is used.
#
# Exit status: 0 when every run worked, 1 if the build, a server or a wrk
# run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(wrk nginx-light)

PY=/usr/bin/python3
BUILD=build-bench
CONNS=64
rounds=3 seconds=5
bench_quick_args 2,9 "$@"

bench_build
bench_results static-results
mkdir -p "$results/www"
WWW=$(cd "$results/www" && pwd)
head -c 4096 /dev/urandom >"$WWW/small.bin"
head -c 1048576 /dev/urandom >"$WWW/large.bin"
FILES=(small.bin large.bin)
declare -A FLABEL=([small.bin]="4 KiB" [large.bin]="1 MiB")

bench_pin pin_server pin_wrk "server on CPU 0, wrk on CPU 1 (taskset)"

nginx_conf() { # PORT DIR (sets CMD)
    bench_nginx_conf "$2" <<EOF
  keepalive_timeout 65;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$1;
    root $WWW;
  }
EOF
}

SERVERS=(awith nginx)
declare -A LABEL=([awith]="awith (examples/static_server)" [nginx]="nginx-light")

server_cmd() { # NAME PORT DIR -> sets CMD
    case $1 in
        awith) CMD=("$BUILD/examples/static_server" --dir "$WWW" --port "$2") ;;
        nginx) nginx_conf "$2" "$3" ;;
    esac
}

arrives_whole() { # PORT FILE
    curl -s --max-time 2 -o "$results/check.bin" "http://127.0.0.1:$1/$2" 2>/dev/null &&
        cmp -s "$results/check.bin" "$WWW/$2"
}

failed=()
run() { # NAME FILE ROUND
    local name=$1 file=$2 round=$3 dir="$results/$1-$2" port pid
    bench_start "$name" "$dir"
    if ! bench_until arrives_whole "$port" "$file"; then
        bench_server_failed "$pid" "$dir/server.log" "$name: $file did not arrive whole on port $port"
        failed+=("$name/$file")
        return 1
    fi
    local url="http://127.0.0.1:$port/$file"
    bench_wrk_warmup -t1 -c"$CONNS" "$url"
    if ! bench_wrk_measure "$pid" "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" -t1 -c"$CONNS" "$url"; then
        echo "== $name $file: wrk failed"
        failed+=("$name/$file")
    fi
    bench_stop "$pid"
    bench_wrk_report "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" "$(printf '%-6s %-32s' "${FLABEL[$file]}" "${LABEL[$name]}")"
}

echo "== $rounds round(s) of ${seconds} s per server and file, wrk -t1 -c$CONNS, $pinned"
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    for file in "${FILES[@]}"; do
        for name in "${SERVERS[@]}"; do
            run "$name" "$file" "$r"
        done
    done
done

"$PY" - "$results" "$rounds" "$seconds" "$CONNS" "$pinned" "$(nproc)" <<'EOF'
import re, statistics, sys
sys.path.insert(0, "bench")
from wrk_runs import wrk_medians, wrk_run
results, rounds, seconds, conns, pinned, ncpu = sys.argv[1:7]
files = [("small.bin", "4 KiB"), ("large.bin", "1 MiB")]
servers = [("awith", "awith (examples/static_server)"), ("nginx", "nginx-light")]

def mbps(v):
    m = re.match(r"([\d.]+)(B|KB|MB|GB)$", v)
    return float(m[1]) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0}[m[2]] if m else None

data = {}
for f, _ in files:
    for s, _ in servers:
        runs = [wrk_run(f"{results}/{s}-{f}/wrk-{r}.txt", f"{results}/{s}-{f}/cpu-{r}.txt")
                for r in range(1, int(rounds) + 1)]
        tr = []
        for run in runs:
            t = re.search(r"^Transfer/sec:\s+(\S+)", run.text, re.M) if run else None
            if t and mbps(t[1]) is not None:
                tr.append(mbps(t[1]))
        data[f, s] = (*wrk_medians(runs), statistics.median(tr) if tr else None)

rows = ["| file | server | requests/s | p99 latency | MiB/s | server CPU per request | awith ÷ nginx (requests/s) | awith ÷ nginx (CPU per request) |",
        "|---|---|---:|---:|---:|---:|---:|---:|"]
for f, fl in files:
    a = data[f, "awith"]
    for s, sl in servers:
        rps, p99, us, tr = data[f, s]
        if rps is None:
            rows.append(f"| {fl} | {sl} | failed | | | | | |")
            continue
        ratio = cratio = ""
        if s == "nginx" and a[0]:
            ratio = f"{a[0] / rps:.2f}×"
            if a[2] and us:
                cratio = f"{a[2] / us:.2f}×"
        c = f"{us:.1f} µs" if us else "?"
        t = f"{tr:,.0f}" if tr else "?"
        rows.append(f"| {fl} | {sl} | {rps:,.0f} | {p99:.2f} ms | {t} | {c} | {ratio} | {cratio} |")

md = ["# Static files: awith vs nginx", "",
      f"GET of a 4 KiB and a 1 MiB file over 127.0.0.1, keep-alive, one worker each; wrk -t1 -c{conns}, "
      f"{seconds} s per run after a 1 s warm-up, median of {rounds} round(s), servers taking turns; "
      f"nproc {ncpu}, {pinned}.", "", *rows, ""]
open(f"{results}/../static_bench.md", "w").write("\n".join(md))
print()
print("\n".join(rows))
print("\n(written to build-bench/static_bench.md)")
EOF

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
