#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP client throughput over loopback: awith's aw_client_session
# (bench/client_bench.c) against aiohttp's ClientSession on uvloop
# (bench/py/client_aiohttp.py) and wrk, each with 50 concurrent requests
# over keep-alive, against nginx-light serving a small JSON file, in one
# run on this machine.
#
#   bash bench/client_bench.sh            # 3 rounds of 5 s per client (~1 min)
#   bash bench/client_bench.sh --quick    # 1 round of 2 s per client
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list plus wrk,
#      nginx-light, python3-aiohttp, python3-uvloop);
#   2. configures and builds the release build in build-bench/ (as the
#      other benches do);
#   3. starts nginx-light as the current user on a free port of 127.0.0.1
#      with a private config in a temp dir (one worker, no access log,
#      keep-alive without a request limit) serving
#      {"message":"Hello, World!"} at GET /;
#   4. for each round, each client in turn: awith (50 tasks, one session),
#      aiohttp (50 tasks, one ClientSession with a 50-connection
#      TCPConnector; Debian's /usr/bin/python3, not pyenv's), wrk -t1 -c50
#      (the practical limit: a C load generator that parses nothing it does
#      not need). Each runs a 1 s warm-up (wrk: a separate 1 s run), then
#      counts for the round's seconds; awith and aiohttp check every body;
#   5. prints requests/s per client (median over the rounds) and the ratios
#      awith/aiohttp and awith/wrk with the targets (>= 5x aiohttp, >= 0.5x
#      wrk); also written as markdown to build-bench/client_bench.md.
#
# On a machine with 2 or more cores nginx is pinned to CPU 0 and the client
# under test to CPU 1 (taskset). Only 127.0.0.1 is used.
#
# Exit status: 0 when every client ran (targets met or not), 1 if the build,
# nginx or a client failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(wrk nginx-light python3-aiohttp python3-uvloop)

PY=/usr/bin/python3      # Debian's interpreter: the one the python3-* packages are for
BUILD=build-bench
CONC=50
rounds=3 seconds=5
bench_quick_args 2,9 "$@"

bench_build
bench_results client-results
bench_hello_www
declare -a pin_server pin_client   # set by bench_pin
bench_pin pin_server pin_client "nginx on CPU 0, the client on CPU 1 (taskset)"

PORT=$(bench_free_port)
ngx=$results/nginx
mkdir -p "$ngx"
bench_nginx_conf "$ngx" "master_process off;" <<NGX
  keepalive_timeout 65;
  client_body_temp_path $ngx/tmp-body;
  proxy_temp_path $ngx/tmp-proxy;
  fastcgi_temp_path $ngx/tmp-fastcgi;
  uwsgi_temp_path $ngx/tmp-uwsgi;
  scgi_temp_path $ngx/tmp-scgi;
  server {
    listen 127.0.0.1:$PORT;
    root $results/www;
    location = / { default_type application/json; try_files /index.json =404; }
  }
NGX
"${pin_server[@]}" "${CMD[@]}" >"$ngx/out.log" 2>&1 &
NGX_PID=$!
trap 'bench_stop "$NGX_PID"' EXIT
URL=http://127.0.0.1:$PORT/
if ! bench_until bench_answers "$URL" "$BODY"; then
    echo "== nginx did not answer on port $PORT:" >&2
    cat "$ngx/nginx-error.log" "$ngx/out.log" >&2
    exit 1
fi
echo "== nginx-light on 127.0.0.1:$PORT (pid $NGX_PID); $rounds round(s) of ${seconds} s per client, concurrency $CONC, $pinned"
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)

CLIENTS=(awith aiohttp wrk)
declare -A LABEL=(
    [awith]="awith aw_client_session (libcurl multi)"
    [aiohttp]="aiohttp ClientSession (uvloop)"
    [wrk]="wrk -t1 -c$CONC"
)

failed=()
# measure NAME ROUND: one run; requests/s into $results/NAME-ROUND.txt.
measure() {
    local name=$1 round=$2 out="$results/$1-$2.out" rps
    case $name in
        awith) "${pin_client[@]}" "$BUILD/bench/client_bench" "$URL" "$CONC" "$seconds" "$BODY" >"$out" 2>&1 ;;
        aiohttp) "${pin_client[@]}" "$PY" bench/py/client_aiohttp.py "$URL" "$CONC" "$seconds" "$BODY" >"$out" 2>&1 ;;
        wrk)
            "${pin_client[@]}" wrk -t1 -c"$CONC" -d1s "$URL" >/dev/null 2>&1
            "${pin_client[@]}" wrk -t1 -c"$CONC" -d"${seconds}s" "$URL" >"$out" 2>&1
            ;;
    esac
    local rc=$?
    if [[ $name == wrk ]]; then
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        grep -qE 'Non-2xx|Socket errors' "$out" && rc=1
    else
        rps=$(awk '/^requests / {print $6}' "$out")
    fi
    if ((rc != 0)) || [[ -z $rps ]]; then
        echo "== $name failed (round $round):"
        cat "$out"
        failed+=("$name")
        return 1
    fi
    echo "$rps" >"$results/$name-$round.txt"
    printf '   %-40s %12s req/s\n' "${LABEL[$name]}" "$rps"
}

for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    for name in "${CLIENTS[@]}"; do
        measure "$name" "$r"
    done
done
bench_stop "$NGX_PID"
trap - EXIT

"$PY" - "$results" "$rounds" "$seconds" "$CONC" "$pinned" "$(nproc)" "$loadavg_start" <<'PYEOF'
import statistics, sys
results, rounds, seconds, conc, pinned, ncpu, load = sys.argv[1:8]
labels = {"awith": "awith aw_client_session (libcurl multi)", "aiohttp": "aiohttp ClientSession (uvloop)",
          "wrk": f"wrk -t1 -c{conc}"}
med = {}
for name in labels:
    vals = []
    for r in range(1, int(rounds) + 1):
        try:
            vals.append(float(open(f"{results}/{name}-{r}.txt").read()))
        except (OSError, ValueError):
            pass
    med[name] = statistics.median(vals) if vals else None
a = med["awith"]
rows = ["| client | requests/s | awith ÷ client |", "|---|---:|---:|"]
for name, label in labels.items():
    v = med[name]
    if v is None:
        rows.append(f"| {label} | failed | |")
    else:
        rows.append(f"| {label} | {v:,.0f} | {'1.00×' if name == 'awith' else (f'{a / v:.2f}×' if a else '?')} |")
targets = []
if a and med["aiohttp"]:
    x = a / med["aiohttp"]
    targets.append(f"- awith/aiohttp = {x:.2f}× (target ≥ 5×): **{'met' if x >= 5 else 'missed'}**")
if a and med["wrk"]:
    x = a / med["wrk"]
    targets.append(f"- awith/wrk = {x:.2f}× (target ≥ 0.5×): **{'met' if x >= 0.5 else 'missed'}**")
md = ["# HTTP client: awith vs aiohttp vs wrk", "",
      f"GET / of nginx-light serving `{{\"message\":\"Hello, World!\"}}` (static file) over 127.0.0.1, keep-alive, "
      f"{conc} concurrent requests; {seconds} s per run after a 1 s warm-up, median of {rounds} round(s), clients "
      f"taking turns; nproc {ncpu}, {pinned}; load average at start {load}.", "", *rows, "", "Targets:", "",
      *targets, ""]
open(f"{results}/../client_bench.md", "w").write("\n".join(md))
print()
print("\n".join(rows))
print()
print("\n".join(targets))
print("\n(written to build-bench/client_bench.md)")
PYEOF

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
