#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The chaos suite (docs/scale.md): on the topology of scripts/cluster.sh
# (haproxy, three scale_app instances with two workers each, pgbouncer, a
# primary and a streaming replica), with wrk sending through haproxy and a
# prober timing single requests (a fresh connection every 20 ms, 10 s
# timeout, so a hang shows as a hang), each case asserts its bound:
#
#   throughput_1_2_3_instances   wrk on GET /pid with 1, 2, 3 instances in
#                                haproxy (the others disabled); 0 failed
#   rolling_restart              SIGUSR2 to each instance in turn (a new
#                                generation takes its sockets over); 0 failed
#   kill_9_one_instance          kill -9 of an instance's supervisor and
#                                workers; failed <= connections in flight,
#                                haproxy stops routing to it within 2 s
#   read_pool_on_the_standby_with_its_lag (first, in pgbouncer_restart):
#                                /db/stats: the read pool is on the standby,
#                                its replay lag reported
#   pgbouncer_restart            pgbouncer stopped for 1 s and started (the
#                                read path, GET /db/read): every failure a
#                                503 (none over 5 s), reads again within 3 s
#                                of its start
#   failover                     the primary stopped, the replica promoted
#                                (GET /db/write): writes again within 5 s of
#                                the promotion, every failure a 503 (none
#                                over 5 s), the pools discarded connections
#
# Usage: scripts/chaos.sh [CASE...]   (default: all, in this order)
# Brings a fresh cluster up in build-chaos (scripts/cluster.sh up) and takes
# it down at the end. Prints "ok NAME ..." / "FAIL NAME ..." per case with
# the measured numbers, and "N passed, M failed" last; the numbers also go to
# build-chaos-out/results.md (markdown table rows for docs/scale.md). About 2
# minutes. Needs haproxy, pgbouncer, wrk, PostgreSQL (installed by
# cluster.sh up via apt-get when missing).
set -uo pipefail
# Debian's python3 when there is one (a python3 shim on PATH can take seconds per start)
PY=$([[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CHAOS_DIR:-$ROOT/build-chaos}
OUTDIR=${CHAOS_OUT:-$ROOT/build-chaos-out}   # kept: results.md, up.log
mkdir -p "$OUTDIR"
RESULTS=$OUTDIR/results.md
CLUSTER=$ROOT/scripts/cluster.sh
pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; }
row()  { local IFS='|'; local a=("$@"); echo "| ${a[*]} |" | sed 's/|/ | /g; s/^ | /| /; s/ | $/ |/' >>"$RESULTS"; }

now() { date +%s.%N; }

cleanup() {
    [[ -n ${PROBER-} ]] && kill "$PROBER" 2>/dev/null
    [[ -n ${WRK-} ]] && kill "$WRK" 2>/dev/null
    bash "$CLUSTER" down "$DIR" >/dev/null 2>&1
}
trap cleanup EXIT

command -v wrk >/dev/null || {
    # shellcheck source=scripts/test.sh
    source "$ROOT/scripts/test.sh"
    # shellcheck disable=SC2034
    PACKAGES=(wrk haproxy pgbouncer)
    ensure_packages >&2 || { echo "FAIL installing wrk"; echo "0 passed, 1 failed"; exit 1; }
}

echo "== cluster up ($DIR)"
if ! bash "$CLUSTER" up "$DIR" >"$OUTDIR/up.log" 2>&1; then
    cat "$OUTDIR/up.log"
    echo "FAIL cluster up"
    echo "0 passed, 1 failed"
    exit 1
fi
set -a
# shellcheck disable=SC1091
source "$DIR/env"
set +a
read -r -a PORTS <<<"$APP_PORTS"
BASE=http://127.0.0.1:$HAP_PORT
: >"$RESULTS"

# ---- tools ------------------------------------------------------------------

PROBER_PY=$DIR/prober.py
cat >"$PROBER_PY" <<'PY'
# prober.py PORT PATH OUT: GET PATH on a fresh connection every 20 ms until
# SIGTERM; one line per request to OUT: start_time latency status
# (status -1: no answer / connection failed).
import http.client, signal, sys, time
port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
with open(out, "w") as f:
    while not stop:
        t = time.time()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            st = r.status
            c.close()
        except Exception:
            st = -1
        f.write("%.3f %.3f %d\n" % (t, time.time() - t, st))
        f.flush()
        time.sleep(0.02)
PY

prober_start() { # PATH
    PROBE_OUT=$DIR/probe.$RANDOM
    "$PY" "$PROBER_PY" "$HAP_PORT" "$1" "$PROBE_OUT" &
    PROBER=$!
}
prober_stop() {
    kill -TERM "$PROBER" 2>/dev/null
    wait "$PROBER" 2>/dev/null
    PROBER=
}
# prober_report EVENT_TIME: "total failed non503 max_latency recovered_after"
# recovered_after: seconds from EVENT_TIME to the first 200 after the last
# failure (-1: none failed after it; 99: never recovered).
prober_report() {
    "$PY" - "$PROBE_OUT" "$1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
ev = float(sys.argv[2])
rows = [(float(t), float(d), int(s)) for t, d, s in rows]
failed = [r for r in rows if r[2] != 200]
non503 = [r for r in failed if r[2] != 503]
maxlat = max((r[1] for r in rows), default=0)
rec = -1.0
if failed:
    last = max(r[0] for r in failed)
    ok_after = [r[0] + r[1] for r in rows if r[2] == 200 and r[0] > last]
    rec = (min(ok_after) - ev) if ok_after else 99.0
print(len(rows), len(failed), len(non503), "%.2f" % maxlat, "%.2f" % rec)
PY
}

# wrk_run SECONDS PATH CONNS: prints "requests failed rps"; failed = non-2xx
# + socket errors (connect, read, write, timeout).
wrk_start() { # SECONDS PATH CONNS
    WRK_OUT=$DIR/wrk.$RANDOM
    wrk -t 2 -c "$3" -d "$1"s --timeout 5s "$BASE$2" >"$WRK_OUT" 2>&1 &
    WRK=$!
}
wrk_wait() { # (in this shell, not in a $(...) subshell: wrk is our child)
    wait "$WRK"
    WRK=
}
wrk_result() {
    "$PY" - "$WRK_OUT" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
req = re.search(r"(\d+) requests in", t)
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
print(req.group(1) if req else 0, failed, rps.group(1) if rps else 0)
PY
}

app_pid() { head -n 1 "$DIR/app$1.pid" 2>/dev/null; }

haproxy_state() { # app name -> UP / DOWN ...
    curl -s --max-time 1 "http://127.0.0.1:$HAP_STATS_PORT/stats;csv" | awk -F, -v s="$1" '$1=="awith" && $2==s {print $18}'
}

wait_all_up() { # every instance UP in haproxy (its health checks), up to 10 s
    local i n
    for ((i = 0; i < 100; i++)); do
        n=$(curl -s --max-time 1 "http://127.0.0.1:$HAP_STATS_PORT/stats;csv" |
            awk -F, '$1=="awith" && $2 ~ /^app/ && $18 ~ /^UP/' | wc -l)
        ((n == INSTANCES)) && return 0
        sleep 0.1
    done
    echo "   (not all instances UP in haproxy after 10 s)"
    return 1
}

# ---- the cases ----------------------------------------------------------------

case_throughput_1_2_3_instances() {
    local n i out req failed rps all_ok=1 line=""
    for n in 1 2 3; do
        for ((i = 0; i < INSTANCES; i++)); do
            if ((i < n)); then
                bash "$CLUSTER" haproxy-cmd "enable server awith/app$i" "$DIR" >/dev/null
            else
                bash "$CLUSTER" haproxy-cmd "disable server awith/app$i" "$DIR" >/dev/null
            fi
        done
        sleep 0.5
        wrk_start 5 /pid 32
        wrk_wait
        read -r req failed rps < <(wrk_result)
        line+="$n: $rps req/s ($failed failed); "
        row "throughput, $n instance(s) x $WORKERS workers (GET /pid, 32 connections, 5 s)" "$rps req/s" "$failed failed of $req"
        ((failed == 0 && req > 0)) || all_ok=0
    done
    for ((i = 0; i < INSTANCES; i++)); do
        bash "$CLUSTER" haproxy-cmd "enable server awith/app$i" "$DIR" >/dev/null
    done
    wait_all_up
    if ((all_ok)); then ok "throughput_1_2_3_instances: $line"; else fail "throughput_1_2_3_instances: $line"; fi
}

case_rolling_restart() {
    local i old new t req failed rps bad=0
    wrk_start 14 /pid 16
    sleep 1
    t=$(now)
    for ((i = 0; i < INSTANCES; i++)); do
        old=$(app_pid "$i")
        kill -USR2 "$old"
        for ((k = 0; k < 200; k++)); do
            new=$(app_pid "$i")
            [[ -n $new && $new != "$old" ]] && ! kill -0 "$old" 2>/dev/null && break
            sleep 0.05
        done
        [[ $new != "$old" ]] || bad=1
        sleep 1
    done
    local took
    took=$("$PY" -c "print('%.1f' % ($(now) - $t))")
    wrk_wait
        read -r req failed rps < <(wrk_result)
    row "rolling restart of $INSTANCES instances (SIGUSR2, wrk 16 connections)" "$failed failed of $req" "all restarted in ${took} s"
    if ((bad == 0 && failed == 0)); then
        ok "rolling_restart: $req requests, $failed failed, all $INSTANCES restarted in ${took} s"
    else
        fail "rolling_restart: $req requests, $failed failed (bound 0), restarted: $((1 - bad))"
    fi
}

case_kill_9_one_instance() {
    local victim=1 pid t down_at=-1 req failed rps conns=16
    wrk_start 8 /pid $conns
    sleep 2
    pid=$(app_pid $victim)
    t=$(now)
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid"
    for ((k = 0; k < 100; k++)); do
        if [[ $(haproxy_state app$victim) == DOWN* ]]; then
            down_at=$("$PY" -c "print('%.2f' % ($(now) - $t))")
            break
        fi
        sleep 0.05
    done
    wrk_wait
        read -r req failed rps < <(wrk_result)
    bash "$CLUSTER" app-start $victim "$DIR" >/dev/null 2>&1
    wait_all_up
    row "kill -9 of one instance (wrk $conns connections)" "$failed failed of $req (bound: <= $conns in flight)" "haproxy stopped routing to it after ${down_at} s"
    if ((failed <= conns)) && [[ $down_at != -1 ]] && "$PY" -c "import sys; sys.exit(0 if $down_at <= 2 else 1)"; then
        ok "kill_9_one_instance: $failed failed of $req (<= $conns in flight), marked DOWN after ${down_at} s"
    else
        fail "kill_9_one_instance: $failed failed of $req (bound $conns), marked DOWN after ${down_at} s (bound 2 s)"
    fi
}

case_pgbouncer_restart() {
    local t total failed non503 maxlat rec stats
    # the read pool reaches the standby through pgbouncer, its lag in the stats
    stats=$(curl -s --max-time 3 "$BASE/db/stats")
    if [[ $stats == *'"ro":{'*'"standby":1,"replica_lag_ms":'* ]]; then
        ok "read_pool_on_the_standby_with_its_lag: $stats"
    else
        fail "read_pool_on_the_standby_with_its_lag: $stats"
    fi
    prober_start /db/read
    sleep 1
    bash "$CLUSTER" pgbouncer stop "$DIR"
    sleep 1
    bash "$CLUSTER" pgbouncer start "$DIR"
    t=$(now)
    sleep 4
    prober_stop
    read -r total failed non503 maxlat rec < <(prober_report "$t")
    row "pgbouncer stopped 1 s and restarted (GET /db/read)" "$failed of $total failed ($non503 not 503), slowest ${maxlat} s" "reads again ${rec} s after its start"
    if ((non503 == 0)) && "$PY" -c "import sys; sys.exit(0 if $maxlat <= 5 and $rec <= 3 else 1)"; then
        ok "pgbouncer_restart: $failed of $total failed, all 503, slowest ${maxlat} s, reads again ${rec} s after the start"
    else
        fail "pgbouncer_restart: $failed of $total failed, $non503 not 503, slowest ${maxlat} s (bound 5), recovered ${rec} s (bound 3)"
    fi
}

case_failover() {
    local t0 t total failed non503 maxlat rec wreq wfailed wrps stats
    prober_start /db/write
    wrk_start 12 /db/write 8
    sleep 2
    t0=$(now)
    bash "$CLUSTER" failover "$DIR"
    t=$(now)
    sleep 8
    prober_stop
    wrk_wait
    read -r wreq wfailed wrps < <(wrk_result)
    read -r total failed non503 maxlat rec < <(prober_report "$t")
    local stopped
    stopped=$("$PY" -c "print('%.2f' % ($t - $t0))")
    stats=$(curl -s --max-time 3 "$BASE/db/stats")
    row "failover: primary stopped, replica promoted (GET /db/write)" "prober: $failed of $total failed ($non503 not 503), slowest ${maxlat} s; wrk: $wfailed of $wreq failed" "writes again ${rec} s after the promotion (stop + promote took ${stopped} s)"
    if ((non503 == 0)) && "$PY" -c "import sys; sys.exit(0 if $maxlat <= 5 and 0 <= $rec <= 5 else 1)" &&
        [[ $stats == *'"rw":{'*'"standby":0'* ]]; then
        ok "failover: writes again ${rec} s after the promotion (stop + promote ${stopped} s), $failed of $total failed, all 503, slowest ${maxlat} s; $stats"
    else
        fail "failover: recovered ${rec} s (bound 5), $non503 not 503, slowest ${maxlat} s (bound 5); stats $stats"
    fi
}

cases=("$@")
((${#cases[@]})) || cases=(throughput_1_2_3_instances rolling_restart kill_9_one_instance pgbouncer_restart failover)
echo "| case | result | timing |" >>"$RESULTS"
echo "|---|---|---|" >>"$RESULTS"
for c in "${cases[@]}"; do
    echo "-- $c ($(date +%T))"
    "case_$c"
done
bash "$CLUSTER" status "$DIR" || true
echo "$pass passed, $fails failed"
((fails == 0))
