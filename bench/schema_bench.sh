#!/bin/bash
# SPDX-License-Identifier: MIT
# What a declared shape costs per request (bench/schema_bench.c): wrk posts
# the same 5-item order to POST /declared (validated by the library, answered
# by aw_http_model) and POST /by_hand (the same checks written with jansson,
# answered with aw_jw_* calls), then GET /plain (the server's own cost); the
# ratios are printed side by side. Not a test.
# Usage: bench/schema_bench.sh [BUILD_DIR] [SECONDS]   (default build, 5)
set -euo pipefail
build=${1:-build}
secs=${2:-5}
bin=$build/bench/schema_bench
[[ -x $bin ]] || { echo "no $bin (meson configure -Dbench=true; ninja)"; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --port "$port" 2>/dev/null &
pid=$!
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.3
cat >"$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer":"Ann Example","prio":"high","items":[{"sku":"A-1","qty":2},{"sku":"B-22","qty":1},{"sku":"C-333","qty":7},{"sku":"D-4","qty":1000},{"sku":"E-55","qty":3}]}'
LUA
run() { # path [script]
    local args=(-t1 -c16 -d"${secs}s")
    [[ -n ${2-} ]] && args+=(-s "$2")
    wrk "${args[@]}" "http://127.0.0.1:$port$1" | awk '/Requests\/sec/ {print $2}'
}
# Interleaved rounds, the median of each: the machine may be shared.
rounds=${ROUNDS:-3}
ds=() hs=() ps=()
for ((r = 0; r < rounds; r++)); do
    ds+=("$(run /declared "$tmp/post.lua")")
    hs+=("$(run /by_hand "$tmp/post.lua")")
    ps+=("$(run /plain)")
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
d=$(med "${ds[@]}") h=$(med "${hs[@]}") p=$(med "${ps[@]}")
printf '%-34s %12s   (median of %d rounds of %ss)\n' "route" "requests/s" "$rounds" "$secs"
printf '%-34s %12.0f\n' "POST /declared (aw_app_route_spec)" "$d" "POST /by_hand (jansson + aw_jw)" "$h" "GET /plain" "$p"
python3 -c "d,h,p=$d,$h,$p; print('declared / by hand: %.2fx; per request: %+.2f us declared vs by hand' % (d/h, (1e6/d - 1e6/h)))"
