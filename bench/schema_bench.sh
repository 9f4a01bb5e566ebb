#!/bin/bash
# SPDX-License-Identifier: MIT
# What a declared shape costs per request (bench/schema_bench.c): wrk posts
# the same 5-item order to POST /declared (validated by the library, answered
# by aw_http_model) and POST /by_hand (the same checks written with jansson,
# answered with aw_jw_* calls), then GET /plain (the server's own cost):
# requests/s and the server's CPU time per request, side by side, with the
# ratio. Not a test.
# Usage: bench/schema_bench.sh [BUILD_DIR] [SECONDS]   (default build, 5)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=${1:-build}
secs=${2:-5}
bin=$build/bench/schema_bench
[[ -x $bin ]] || { echo "no $bin (meson configure -Dbench=true; ninja)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }
port=$(bench_free_port)
"$bin" --port "$port" 2>/dev/null &
pid=$!
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
bench_until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/plain"
cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer":"Ann Example","prio":"high","items":[{"sku":"A-1","qty":2},{"sku":"B-22","qty":1},{"sku":"C-333","qty":7},{"sku":"D-4","qty":1000},{"sku":"E-55","qty":3}]}'
LUA
# The server's CPU time per request (utime + stime from /proc, over all
# requests wrk completed): on a shared machine throughput follows the other
# jobs, CPU time per request much less.
hz=$(getconf CLK_TCK)
run() { # path [script] -> "requests/s us-cpu-per-request"
    local args=(-t1 -c16 -d"${secs}s") t0 t1 out
    [[ -n ${2-} ]] && args+=(-s "$2")
    t0=$(bench_cpu_ticks "$pid")
    out=$(wrk "${args[@]}" "http://127.0.0.1:$port$1")
    t1=$(bench_cpu_ticks "$pid")
    awk -v t="$((t1 - t0))" -v hz="$hz" '/requests in/ {n = $1} /Requests\/sec/ {r = $2}
        END {printf "%.0f %.2f\n", r, t / hz * 1e6 / n}' <<<"$out"
}
# Interleaved rounds, the median of each.
rounds=${ROUNDS:-3}
ds=() hs=() ps=() dc=() hc=() pc=()
for ((r = 0; r < rounds; r++)); do
    read -r a b <<<"$(run /declared "$tmp/post.lua")"; ds+=("$a"); dc+=("$b")
    read -r a b <<<"$(run /by_hand "$tmp/post.lua")"; hs+=("$a"); hc+=("$b")
    read -r a b <<<"$(run /plain)"; ps+=("$a"); pc+=("$b")
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
printf '%-34s %12s %16s   (medians of %d rounds of %ss)\n' "route" "requests/s" "server CPU us/req" "$rounds" "$secs"
printf '%-34s %12.0f %16.2f\n' "POST /declared (aw_app_route_spec)" "$(med "${ds[@]}")" "$(med "${dc[@]}")" \
    "POST /by_hand (jansson + aw_jw)" "$(med "${hs[@]}")" "$(med "${hc[@]}")" \
    "GET /plain" "$(med "${ps[@]}")" "$(med "${pc[@]}")"
d=$(med "${dc[@]}") h=$(med "${hc[@]}") p=$(med "${pc[@]}")
python3 -c "d,h,p=$d,$h,$p; print('server CPU per request: declared / by hand = %.2fx (%+.2f us); validation + model beyond a plain GET: %.2f us' % (d/h, d-h, d-p))"
