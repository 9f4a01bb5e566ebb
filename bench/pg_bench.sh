#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# PostgreSQL over loopback: awith's connection pool and its users_api example
# against asyncpg, pgbench, uvicorn+FastAPI+asyncpg and aiohttp+asyncpg,
# measured in one run on this machine against one private server.
#
#   bash bench/pg_bench.sh              # 3 rounds of 5 s per case (~4 min)
#   bash bench/pg_bench.sh --quick      # 1 round of 2 s per case
#   bash bench/pg_bench.sh --seconds 10 --rounds 1
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list, which has
#      postgresql, plus procps, wrk, python3-asyncpg, python3-uvloop, python3-fastapi,
#      python3-uvicorn, python3-aiohttp, python3-httptools);
#   2. configures and builds the release build in build-bench/ as
#      bench/http_bench.sh does; if that fails the awith rows say "n/a" and
#      the peers still run;
#   3. unless DATABASE_URL is set, starts a private cluster
#      (scripts/pg_cluster.sh start build-pg/bench; removed at exit) and
#      creates `users` (id, name, email, created_at) with 20 rows (into the
#      caller's database: only when the table is missing);
#   4. the query `SELECT * FROM users` (20 rows) in a loop, 64 tasks sharing
#      8 connections, for D seconds per round:
#        awith pool            build-bench/bench/pg_pool_bench --url URL
#                              --tasks 64 --conns 8 --seconds D
#        awith pool, pipelined the same with --pipeline
#        asyncpg pool          bench/py/pg_asyncpg_pool.py (uvloop, pool 8)
#        pgbench               pgbench -n -M prepared -c 8 -j 2 -T D -f FILE
#      each program's "queries/s: N" (pgbench's "tps = N") is the result;
#      the client's CPU use (user + system over its run, % of one core) is
#      reported too;
#   5. GET /users over HTTP (every row as JSON), wrk -t1 -c64 --latency for
#      D seconds after a 1 s warm-up, against build-bench/examples/users_api
#      (--port N, DATABASE_URL in its environment), uvicorn+FastAPI+asyncpg
#      (bench/py/users_fastapi_asyncpg.py) and aiohttp+asyncpg
#      (bench/py/users_aiohttp_asyncpg.py), each with a pool of 8; each is
#      checked to answer 200 with all 20 rows first; requests/s, p99 and the
#      server's and PostgreSQL's CPU time per request are reported;
#   6. prints the table (median over rounds) and the ratios awith÷asyncpg,
#      awith÷pgbench, awith pipelined÷pgbench, users_api÷FastAPI,
#      users_api÷aiohttp; also written as markdown to build-bench/pg_bench.md.
#
# Missing awith programs (pg_pool_bench, users_api) give "n/a" rows; the
# peers run anyway. On a machine with 2 or more cores the private server
# (postmaster and every backend) is pinned to CPU 1; the pool clients and the
# HTTP server under test run on CPU 0, wrk on CPU 1 next to PostgreSQL
# (taskset). Only 127.0.0.1 is used.
#
# Exit status: 0 when every peer ran, 1 if the cluster, a peer or a wrk run
# failed (a missing awith program is not a failure; one that fails is).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(procps wrk python3-asyncpg python3-uvloop python3-fastapi python3-uvicorn python3-aiohttp python3-httptools)

PY=/usr/bin/python3      # Debian's interpreter: the one the python3-* packages are for
BUILD=build-bench
CLUSTER=build-pg/bench
TASKS=64 CONNS=8 HTTP_CONNS=64 ROWS=20
QUERY='SELECT * FROM users'
rounds=3 seconds=5
while (($#)); do
    case $1 in
        --quick) rounds=1 seconds=2 ;;
        --seconds) seconds=${2:?}; shift ;;
        --rounds) rounds=${2:?}; shift ;;
        -h | --help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/pg_bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

bench_packages
build_ok=1
bench_setup_build ||
    { echo "== BUILD FAILED: $BUILD; the awith rows will be n/a, the peers still run"; build_ok=0; }

bench_results pg-results
failed=()

# ---- the database ----------------------------------------------------------
own_cluster=0
cleanup() {
    ((own_cluster)) && bash scripts/pg_cluster.sh stop "$CLUSTER" 2>/dev/null
    own_cluster=0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z ${DATABASE_URL-} ]]; then
    echo "== private PostgreSQL cluster in $CLUSTER"
    bench_pg_start "$CLUSTER"
else
    echo "== using the caller's DATABASE_URL"
fi
URL=$DATABASE_URL

# The table: recreated in our own cluster; in the caller's, created (and
# filled) only when missing.
drop=
((own_cluster)) && drop='DROP TABLE IF EXISTS users;'
psql "$URL" -X -q -v ON_ERROR_STOP=1 <<SQL || { echo "FAILED: creating the users table" >&2; exit 1; }
SET client_min_messages = warning;
$drop
CREATE TABLE IF NOT EXISTS users (
    id serial PRIMARY KEY,
    name text,
    email text,
    created_at timestamptz DEFAULT now()
);
INSERT INTO users (name, email)
SELECT 'user ' || i, 'user' || i || '@example.com' FROM generate_series(1, $ROWS) AS i
WHERE NOT EXISTS (SELECT 1 FROM users);
ANALYZE users;
SQL
nrows=$(psql "$URL" -X -A -t -c 'SELECT count(*) FROM users')
echo "== users: $nrows rows; server: $(psql "$URL" -X -A -t -c 'SHOW server_version')"

# ---- pinning ----------------------------------------------------------------
declare -a pin_client pin_wrk   # set by bench_pin
if bench_pin pin_client pin_wrk "clients and HTTP servers on CPU 0, wrk on CPU 1"; then
    if bench_pin_postgres; then
        pinned+=", PostgreSQL on CPU 1"
    else
        pinned+=", PostgreSQL not pinned (the caller's server)"
    fi
fi

# ---- 4. the pool: queries/s -------------------------------------------------
POOL_SIDES=(awith awith_pipe asyncpg pgbench)
declare -A LABEL=(
    [awith]="awith pool (pg_pool_bench)"
    [awith_pipe]="awith pool, pipelined (--pipeline)"
    [asyncpg]="asyncpg pool (uvloop)"
    [pgbench]="pgbench -M prepared -c 8 -j 2"
    [users_api]="awith (examples/users_api)"
    [fastapi]="uvicorn+FastAPI+asyncpg (uvloop)"
    [aiohttp]="aiohttp+asyncpg (uvloop)"
)
printf '%s;\n' "$QUERY" >"$results/pgbench.sql"

pool_cmd() { # NAME -> sets CMD (empty: not available)
    CMD=()
    case $1 in
        awith | awith_pipe)
            [[ $build_ok == 1 && -x $BUILD/bench/pg_pool_bench ]] || return 0
            CMD=("$BUILD/bench/pg_pool_bench" --url "$URL" --tasks "$TASKS" --conns "$CONNS" --seconds "$seconds")
            [[ $1 == awith_pipe ]] && CMD+=(--pipeline)
            ;;
        asyncpg)
            CMD=("$PY" bench/py/pg_asyncpg_pool.py --url "$URL" --tasks "$TASKS" --conns "$CONNS"
                --seconds "$seconds" --query "$QUERY") ;;
        pgbench)
            CMD=(pgbench -n -M prepared -c "$CONNS" -j 2 -T "$seconds" -f "$results/pgbench.sql" "$URL") ;;
    esac
}

# run_pool NAME ROUND: run one client to the end; its output, queries/s and
# CPU (real user sys seconds) go to $results/NAME-ROUND.{txt,qps,cpu}.
run_pool() {
    local name=$1 round=$2 qps
    local out=$results/$name-$round
    pool_cmd "$name"
    if ((${#CMD[@]} == 0)); then
        echo "n/a" >"$out.qps"
        printf '   %-36s %12s\n' "${LABEL[$name]}" "n/a (not built)"
        return 0
    fi
    local TIMEFORMAT='%R %U %S'
    { time "${pin_client[@]}" "${CMD[@]}" >"$out.txt" 2>&1 </dev/null; } 2>"$out.cpu"
    if [[ $name == pgbench ]]; then
        qps=$(awk '/^tps = / {print $3; exit}' "$out.txt")
    else
        qps=$(awk '/^queries\/s:/ {print $2}' "$out.txt" | tail -n 1)
    fi
    if [[ -z $qps ]]; then
        echo "== $name: no result; output:"
        tail -n 20 "$out.txt"
        echo "failed" >"$out.qps"
        failed+=("$name")
        return 1
    fi
    echo "$qps" >"$out.qps"
    local cpu
    cpu=$(awk '{ if ($1 > 0) printf "%.0f", ($2 + $3) / $1 * 100 }' "$out.cpu")
    printf '   %-36s %12.0f queries/s   client CPU %s%%\n' "${LABEL[$name]}" "$qps" "${cpu:-?}"
}

# ---- 5. HTTP: GET /users ----------------------------------------------------
HTTP_SIDES=(users_api fastapi aiohttp)

http_cmd() { # NAME PORT -> sets CMD (empty: not available)
    CMD=()
    case $1 in
        users_api)
            [[ $build_ok == 1 && -x $BUILD/examples/users_api ]] || return 0
            CMD=("$BUILD/examples/users_api" --port "$2") ;;
        fastapi) CMD=("$PY" bench/py/users_fastapi_asyncpg.py --port "$2") ;;
        aiohttp) CMD=("$PY" bench/py/users_aiohttp_asyncpg.py --port "$2") ;;
    esac
}

# users_answer PORT: GET /users answers 200 with every row (the last email).
users_answer() {
    local out
    out=$(curl -s --max-time 2 -w '\n%{http_code}' "http://127.0.0.1:$1/users" 2>/dev/null) &&
        [[ ${out##*$'\n'} == 200 && $out == *"user$ROWS@example.com"* ]]
}

# run_http NAME ROUND: start, check, warm up, measure, stop.
run_http() {
    local name=$1 round=$2 port pid pm
    local out=$results/$name-$round
    port=$(bench_free_port)
    http_cmd "$name" "$port"
    if ((${#CMD[@]} == 0)); then
        echo "n/a" >"$out.rps"
        printf '   %-36s %12s\n' "${LABEL[$name]}" "n/a (not built)"
        return 0
    fi
    DATABASE_URL=$URL "${pin_client[@]}" "${CMD[@]}" >"$out.server.log" 2>&1 </dev/null &
    pid=$!
    if ! bench_until users_answer "$port"; then
        echo "== $name: no (or a wrong) answer to GET /users on port $port; log:"
        tail -n 20 "$out.server.log"
        curl -s -i --max-time 2 "http://127.0.0.1:$port/users" | head -c 600
        echo
        bench_stop "$pid"
        echo "failed" >"$out.rps"
        failed+=("$name")
        return 1
    fi
    bench_wrk_warmup -t1 -c"$HTTP_CONNS" "http://127.0.0.1:$port/users"
    pm=$(bench_postmaster_pid)
    local t0 t1 d0=0 d1=0
    t0=$(bench_cpu_ticks "$pid")
    [[ -n $pm ]] && d0=$(bench_cpu_ticks "$pm")
    if ! "${pin_wrk[@]}" wrk -t1 -c"$HTTP_CONNS" -d"${seconds}s" --latency \
        "http://127.0.0.1:$port/users" >"$out.wrk" 2>&1; then
        echo "== $name: wrk failed"
        failed+=("$name")
    fi
    t1=$(bench_cpu_ticks "$pid")
    [[ -n $pm ]] && d1=$(bench_cpu_ticks "$pm")
    bench_stop "$pid" INT
    local dbus="?"
    bench_wrk_read "$out.wrk" "$((t1 - t0))"
    [[ -n $pm ]] && dbus=$(bench_per_request "$((d1 - d0))" "$(getconf CLK_TCK)" "$wrk_total")
    echo "${wrk_rps:-failed} ${wrk_p99:-?} $wrk_us $dbus" >"$out.rps"
    printf '   %-36s %12s req/s   p99 %-9s server CPU %6s us/req   PostgreSQL CPU %6s us/req %s\n' \
        "${LABEL[$name]}" "${wrk_rps:-?}" "${wrk_p99:-?}" "$wrk_us" "$dbus" "$wrk_errs"
}

echo "== $rounds round(s) of ${seconds} s per case; $pinned"
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r: '$QUERY' ($nrows rows), $TASKS tasks on $CONNS connections"
    for name in "${POOL_SIDES[@]}"; do
        run_pool "$name" "$r"
    done
    echo "== round $r: GET /users, wrk -t1 -c$HTTP_CONNS"
    for name in "${HTTP_SIDES[@]}"; do
        run_http "$name" "$r"
    done
done

# ---- 6. the table ------------------------------------------------------------
"$PY" - "$results" "$rounds" "$seconds" "$pinned" "$(nproc)" "$nrows" <<'EOF'
import re, statistics, sys
sys.path.insert(0, "bench")
from wrk_runs import ms
results, rounds, seconds, pinned, ncpu, nrows = sys.argv[1:7]
rounds = int(rounds)
labels = {
    "awith": "awith pool (pg_pool_bench)",
    "awith_pipe": "awith pool, pipelined",
    "asyncpg": "asyncpg pool (uvloop)",
    "pgbench": "pgbench -M prepared -c 8 -j 2",
    "users_api": "awith (examples/users_api)",
    "fastapi": "uvicorn+FastAPI+asyncpg (uvloop)",
    "aiohttp": "aiohttp+asyncpg (uvloop)",
}


def read(path):
    try:
        return open(path).read().split()
    except OSError:
        return None


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# pool: name -> (queries/s or None, status, client CPU %)
pool = {}
for s in ("awith", "awith_pipe", "asyncpg", "pgbench"):
    qps, cpu, status = [], [], "failed"
    for r in range(1, rounds + 1):
        v = read(f"{results}/{s}-{r}.qps")
        if v and v[0] == "n/a":
            status = "n/a"
            continue
        if v and num(v[0]) is not None:
            qps.append(num(v[0]))
            c = read(f"{results}/{s}-{r}.cpu")
            if c and len(c) >= 3 and num(c[0]):
                cpu.append((float(c[1]) + float(c[2])) / float(c[0]) * 100)
    pool[s] = (med(qps), status, med(cpu))

# http: name -> (req/s, p99 ms, server us/req, postgres us/req) or status
http = {}
for s in ("users_api", "fastapi", "aiohttp"):
    rows, status = [], "failed"
    for r in range(1, rounds + 1):
        v = read(f"{results}/{s}-{r}.rps")
        if v and v[0] == "n/a":
            status = "n/a"
            continue
        if v and len(v) >= 4 and num(v[0]) is not None:
            rows.append((num(v[0]), ms(v[1]), num(v[2]), num(v[3])))
    if rows:
        http[s] = tuple(med([row[i] for row in rows]) for i in range(4))
    else:
        http[s] = status


def fmt(v, spec=",.0f", unit=""):
    return f"{v:{spec}}{unit}" if v is not None else "?"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "n/a"


out = ["# PostgreSQL: awith vs asyncpg, pgbench, FastAPI and aiohttp", "",
       f"PostgreSQL on 127.0.0.1 (private cluster, fsync off), `SELECT * FROM users` ({nrows} rows); "
       f"{seconds} s per run, median of {rounds} round(s); nproc {ncpu}, {pinned}.", "",
       "Client CPU: user + system over the client's whole run (start-up and warm-up included) "
       "÷ its wall time; per query: that ÷ queries/s. A client below 100% is waiting on the server.", "",
       "## Pool: 64 tasks, 8 connections", "",
       "| client | queries/s | client CPU (% of a core) | client CPU per query |",
       "|---|---:|---:|---:|"]
for s, (q, status, cpu) in pool.items():
    if q is None:
        out.append(f"| {labels[s]} | {status} | | |")
        continue
    per = cpu / 100 * 1e6 / q if cpu is not None and q else None
    out.append(f"| {labels[s]} | {fmt(q)} | {fmt(cpu, '.0f', '%')} | {fmt(per, '.1f', ' µs')} |")
out += ["", "## HTTP: GET /users (all rows as JSON), wrk -t1 -c64, pool of 8", "",
        "| server | requests/s | p99 latency | server CPU per request | PostgreSQL CPU per request |",
        "|---|---:|---:|---:|---:|"]
for s, v in http.items():
    if isinstance(v, str):
        out.append(f"| {labels[s]} | {v} | | | |")
    else:
        out.append(f"| {labels[s]} | {fmt(v[0])} | {fmt(v[1], '.2f', ' ms')} | "
                   f"{fmt(v[2], '.1f', ' µs')} | {fmt(v[3], '.1f', ' µs')} |")
h = {s: (v[0] if not isinstance(v, str) else None) for s, v in http.items()}
out += ["", "## Ratios (how many times more per second awith does)", "",
        f"- awith pool ÷ asyncpg pool: {ratio(pool['awith'][0], pool['asyncpg'][0])}",
        f"- awith pool ÷ pgbench: {ratio(pool['awith'][0], pool['pgbench'][0])}",
        f"- awith pool, pipelined ÷ pgbench: {ratio(pool['awith_pipe'][0], pool['pgbench'][0])}",
        f"- users_api ÷ uvicorn+FastAPI+asyncpg: {ratio(h['users_api'], h['fastapi'])}",
        f"- users_api ÷ aiohttp+asyncpg: {ratio(h['users_api'], h['aiohttp'])}", ""]
text = "\n".join(out)
print()
print(text)
open(f"{results}/../pg_bench.md", "w").write(text)
print(f"(written to {results}/../pg_bench.md)".replace(f"/pg-results/..", ""))
EOF

cleanup
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
