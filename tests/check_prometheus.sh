#!/bin/bash
# SPDX-License-Identifier: MIT
# A real Prometheus (Debian's `prometheus`) scrapes examples/hello_server's
# /metrics (aw_app_metrics, turned on with --metrics): the test starts the
# example twice (one process, and 2 worker processes sharing a port),
# starts Prometheus with a private config (scrape_interval 1s, both
# targets) and data directory in a temporary directory, sends N requests
# to each, then asks Prometheus' HTTP API, until it answers or 90 s pass:
#   sum(awith_http_requests_total{job="hello",route="/"})      == N
#   sum(awith_http_requests_total{job="workers",route="/"})    == N
#     (each scrape lands on one worker and answers for both, worker="0|1")
#   up == 1 for both, and the duration histogram's count == N.
# Everything started is killed on exit (trap).
# Usage: check_prometheus.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: check_prometheus.sh BUILD_DIR}
hello=$build/examples/hello_server
N=137
pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; }
finish() { echo "$pass passed, $fails failed"; ((fails == 0)); exit $?; }

for tool in prometheus curl python3; do
    command -v "$tool" >/dev/null || { fail "$tool is not installed (scripts/test.sh installs it)"; finish; }
done
[[ -x $hello ]] || { fail "no $hello (configure with -Dexamples=true)"; finish; }

tmp=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_answer() { # URL
    local i
    for ((i = 0; i < 200; i++)); do
        curl -sf --max-time 1 -o /dev/null "$1" && return 0
        sleep 0.05
    done
    return 1
}

app_port=$(free_port) workers_port=$(free_port) prom_port=$(free_port)
"$hello" --port "$app_port" --metrics /metrics >"$tmp/hello.log" 2>&1 &
pids+=($!)
AWITH_METRICS=/metrics "$hello" --port "$workers_port" --workers 2 >"$tmp/workers.log" 2>&1 &
pids+=($!)
for port in "$app_port" "$workers_port"; do
    if ! wait_answer "http://127.0.0.1:$port/metrics"; then
        fail "the example on port $port does not answer /metrics"
        cat "$tmp"/*.log
        finish
    fi
done

cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: hello
    static_configs:
      - targets: ['127.0.0.1:$app_port']
  - job_name: workers
    static_configs:
      - targets: ['127.0.0.1:$workers_port']
EOF
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$tmp/prometheus.log" 2>&1 &
pids+=($!)

# N requests to each, over keep-alive connections (one curl, N URLs); the
# workers' on fresh connections so that the kernel spreads them.
urls=()
for ((i = 0; i < N; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$app_port/"); done
codes=$(curl -s -w '%{http_code}\n' "${urls[@]}" | grep -c '^200$')
[[ $codes == "$N" ]] && ok "hello_server answered $N requests" || fail "hello_server answered $codes of $N"
codes=0
for ((i = 0; i < N; i++)); do
    c=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$workers_port/") && [[ $c == 200 ]] && codes=$((codes + 1))
done
[[ $codes == "$N" ]] && ok "hello_server --workers 2 answered $N requests" || fail "the workers answered $codes of $N"

# query EXPR -> the instant vector's single value ("" if none yet)
query() {
    curl -s --max-time 2 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1" |
        python3 -c 'import json, sys
try:
    d = json.load(sys.stdin)
    r = d["data"]["result"]
    print(r[0]["value"][1] if d["status"] == "success" and len(r) == 1 else "")
except Exception:
    print("")'
}

# expect NAME EXPR VALUE: poll until EXPR == VALUE (90 s in all).
deadline=$((SECONDS + 90))
expect() {
    local v=""
    while ((SECONDS < deadline)); do
        v=$(query "$2")
        [[ $v == "$3" ]] && { ok "$1 ($2 = $v)"; return 0; }
        sleep 0.5
    done
    fail "$1: $2 is '${v}', expected $3"
    return 1
}

expect prometheus_scrapes_the_example 'up{job="hello"}' 1
expect prometheus_scrapes_the_workers 'up{job="workers"}' 1
expect promql_counts_the_requests_the_test_made 'sum(awith_http_requests_total{job="hello",route="/"})' "$N"
expect promql_counts_the_workers_requests_summed_over_workers \
    'sum(awith_http_requests_total{job="workers",route="/"})' "$N"
expect every_worker_is_reported_with_a_worker_label 'count(awith_tasks_alive{job="workers"})' 2
expect the_duration_histogram_counted_each_request \
    'sum(awith_http_request_duration_seconds_count{job="hello",route="/"})' "$N"
expect the_process_metrics_are_there 'count(process_resident_memory_bytes{job="hello"} > 0)' 1
if ((fails)); then
    echo "--- prometheus log (tail)"
    tail -n 20 "$tmp/prometheus.log"
fi
finish
