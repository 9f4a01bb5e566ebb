#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A scaled-out awith service on one machine, distinct ports standing in for
# hosts (docs/scale.md):
#
#   scripts/cluster.sh up [DIR]        # build what is missing, start everything
#   scripts/cluster.sh down [DIR]      # stop everything, remove DIR
#   scripts/cluster.sh status [DIR]    # what runs where; exit 0 when all is up
#   scripts/cluster.sh env [DIR]       # the ports and pids (KEY=VALUE lines)
#
# For the chaos suite (scripts/chaos.sh), on a cluster that is up:
#   scripts/cluster.sh app-start N [DIR]       # start instance N again
#   scripts/cluster.sh pgbouncer stop|start [DIR]
#   scripts/cluster.sh failover [DIR]          # stop the primary, promote the replica
#   scripts/cluster.sh haproxy-cmd CMD [DIR]   # e.g. "disable server awith/app2"
#
#   haproxy :HAP_PORT  --roundrobin-->  3 x examples/scale_app (2 workers each)
#     health checks GET /readyz              | writes: DATABASE_URL, libpq
#                                             |   multi-host, read-write
#                                             | reads: READ_DATABASE_URL
#                                             v
#   PostgreSQL primary :PRIMARY_PORT  --streaming-->  replica :REPLICA_PORT
#                                       pgbouncer :PGB_PORT (transaction
#                                       mode) --> replica (the read path)
#
# DIR defaults to build-cluster (under the repository). Everything lives
# there: the primary (scripts/pg_cluster.sh), the replica (pg_basebackup
# -R), pgbouncer's and haproxy's configs, logs and pid files, each app's
# log and pid file (scale_app --pid-file: the serving generation, which
# changes on a graceful restart). `up` installs what it needs (Debian's
# haproxy, pgbouncer, postgresql; apt-get, as scripts/test.sh does) and
# builds the example with meson/ninja into build/ if it is not there.
# As root, PostgreSQL and pgbouncer run as the "postgres" user.
#
# Environment for `up`: APP (default build/examples/scale_app), WORKERS
# (default 2), INSTANCES (default 3).
set -uo pipefail
# Debian's python3 when there is one (a python3 shim on PATH can take seconds per start)
PY=$([[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3)

SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
ROOT=$(dirname "$(dirname "$SCRIPT")")

say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }
usage() { sed -n '3,15p' "$SCRIPT" | sed 's/^# \{0,1\}//' >&2; exit 2; }

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

as_pg() {
    if [[ -n ${RUN_AS-} ]]; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        (cd / && "$@")
    fi
}

# detach CMD...: start CMD in its own session, every fd above 2 closed (the
# caller's pipes must not stay open in a daemon).
detach() {
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && exec {fd}>&-
        done 2>/dev/null
        exec setsid "$@" </dev/null
    )
}

wait_http() { # URL [tries]
    local i
    for ((i = 0; i < ${2:-200}; i++)); do
        curl -sf --max-time 1 -o /dev/null "$1" && return 0
        sleep 0.05
    done
    return 1
}

load() {
    [[ -f $DIR/env ]] || return 1
    set -a
    # shellcheck disable=SC1091
    source "$DIR/env"
    set +a
    RUN_AS=${AW_PG_RUN_AS-}
}

write_env() {
    {
        printf 'CLUSTER_DIR=%q\n' "$DIR"
        printf 'APP=%q\n' "$APP"
        printf 'INSTANCES=%q\n' "$INSTANCES"
        printf 'WORKERS=%q\n' "$WORKERS"
        printf 'HAP_PORT=%q\n' "$HAP_PORT"
        printf 'HAP_STATS_PORT=%q\n' "$HAP_STATS_PORT"
        printf 'APP_PORTS=%q\n' "${APP_PORTS[*]}"
        printf 'PRIMARY_PORT=%q\n' "$PRIMARY_PORT"
        printf 'REPLICA_PORT=%q\n' "$REPLICA_PORT"
        printf 'PGB_PORT=%q\n' "$PGB_PORT"
        printf 'PG_BINDIR=%q\n' "$PG_BINDIR"
        printf 'PRIMARY_DATA=%q\n' "$PRIMARY_DATA"
        printf 'REPLICA_DATA=%q\n' "$REPLICA_DATA"
        printf 'PG_SOCKET_DIR=%q\n' "$PG_SOCKET_DIR"
        printf 'AW_PG_RUN_AS=%q\n' "$RUN_AS"
        printf 'PGB_DIR=%q\n' "$PGB_DIR"
        printf 'DATABASE_URL=%q\n' "$DATABASE_URL"
        printf 'READ_DATABASE_URL=%q\n' "$READ_DATABASE_URL"
        printf 'DATABASE_URL_SUPER=%q\n' "$DATABASE_URL_SUPER"
    } >"$DIR/env.tmp" && mv "$DIR/env.tmp" "$DIR/env"
}

ensure_tools() {
    local need=0 t
    for t in haproxy pgbouncer curl; do
        command -v "$t" >/dev/null || need=1
    done
    if ((need)); then
        # shellcheck source=scripts/test.sh
        source "$ROOT/scripts/test.sh"   # ensure_packages (its main() does not run)
        # shellcheck disable=SC2034  # read by ensure_packages
        PACKAGES=(haproxy pgbouncer curl postgresql postgresql-client wrk)
        ensure_packages >&2 || die "installing haproxy/pgbouncer failed"
    fi
    if [[ ! -x $APP ]]; then
        say "building $APP"
        if [[ ! -f $ROOT/build/build.ninja ]]; then
            (cd "$ROOT" && meson setup build >&2) || die "meson setup failed"
        fi
        ninja -C "$ROOT/build" examples/scale_app >&2 || die "building scale_app failed"
    fi
}

# ---- the pieces -----------------------------------------------------------

start_primary() {
    bash "$ROOT/scripts/pg_cluster.sh" start "$DIR/primary" >/dev/null || die "the primary did not start"
    # shellcheck disable=SC1091
    source "$DIR/primary/env"
    RUN_AS=$AW_PG_RUN_AS PG_BINDIR=$PG_BINDIR PRIMARY_PORT=$PGPORT PRIMARY_DATA=$PGDATA
    PG_SOCKET_DIR=$AW_PG_SOCKET_DIR DATABASE_URL_SUPER=$DATABASE_URL_SUPER
    # Streaming replication from 127.0.0.1 (the private cluster's only
    # address) without a password; before pg_cluster's own lines.
    local hba=$PRIMARY_DATA/pg_hba.conf
    { echo "host replication all 127.0.0.1/32 trust"; cat "$hba"; } >"$hba.new" && cat "$hba.new" >"$hba" && rm -f "$hba.new"
    as_pg "$PG_BINDIR/pg_ctl" -D "$PRIMARY_DATA" reload >/dev/null || die "reload failed"
    PGPASSWORD=awith_pw "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U awith \
        -d awith_test -c "CREATE TABLE IF NOT EXISTS awith_hits (id bigserial PRIMARY KEY, pid int,
                          at timestamptz NOT NULL DEFAULT now())" || die "creating awith_hits failed"
}

start_replica() {
    REPLICA_DATA=$(dirname "$PRIMARY_DATA")/replica
    REPLICA_PORT=$(free_port)
    as_pg rm -rf "$REPLICA_DATA"
    as_pg "$PG_BINDIR/pg_basebackup" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -D "$REPLICA_DATA" \
        -R -X stream -c fast >/dev/null 2>&1 || die "pg_basebackup failed"
    as_pg sh -c "echo 'port = $REPLICA_PORT' >'$REPLICA_DATA/awith_port.conf'"
    as_pg "$PG_BINDIR/pg_ctl" -D "$REPLICA_DATA" -l "$REPLICA_DATA/../replica.log" -w -t 60 start >/dev/null 2>&1 ||
        die "the replica did not start (log: $REPLICA_DATA/../replica.log)"
}

start_pgbouncer() {
    PGB_PORT=$(free_port)
    PGB_DIR=$(dirname "$PRIMARY_DATA")/pgbouncer   # reachable by the postgres user
    as_pg mkdir -p "$PGB_DIR"
    as_pg sh -c "cat >'$PGB_DIR/pgbouncer.ini'" <<EOF
[databases]
awith_test = host=127.0.0.1 port=$REPLICA_PORT dbname=awith_test user=awith password=awith_pw
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 8
max_client_conn = 500
server_reset_query =
server_connect_timeout = 2
query_wait_timeout = 3
ignore_startup_parameters = extra_float_digits,options
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
EOF
    pgbouncer_start
}

pgbouncer_start() {
    as_pg pgbouncer -d "$PGB_DIR/pgbouncer.ini" >/dev/null 2>&1 || die "pgbouncer did not start ($PGB_DIR/pgbouncer.log)"
}

start_app() { # i
    local i=$1
    local port=${APP_PORTS[$i]}
    DATABASE_URL=$DATABASE_URL READ_DATABASE_URL=$READ_DATABASE_URL AWITH_READ_PGBOUNCER=1 \
        detach "$APP" --host 127.0.0.1 --port "$port" --workers "$WORKERS" --drain-delay 1500 \
        --pid-file "$DIR/app$i.pid" >>"$DIR/app$i.log" 2>&1 &
    wait_http "http://127.0.0.1:$port/livez" || die "app $i did not start (log: $DIR/app$i.log)"
}

start_haproxy() {
    local i
    {
        cat <<EOF
global
    maxconn 4096
    pidfile $DIR/haproxy.pid
    stats socket $DIR/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 10s
    timeout http-keep-alive 5s
    # A request that could not reach a server, or got nothing back from an
    # instance that went away, goes to another one (idempotent requests).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-server-close
frontend web
    bind 127.0.0.1:$HAP_PORT
    default_backend awith
backend awith
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fastinter 200ms downinter 300ms fall 2 rise 1 observe layer7 error-limit 5 on-error mark-down
EOF
        for ((i = 0; i < INSTANCES; i++)); do
            echo "    server app$i 127.0.0.1:${APP_PORTS[$i]} check"
        done
        cat <<EOF
listen stats
    bind 127.0.0.1:$HAP_STATS_PORT
    stats enable
    stats uri /stats
EOF
    } >"$DIR/haproxy.cfg"
    haproxy -c -q -f "$DIR/haproxy.cfg" || die "haproxy.cfg is invalid"
    detach haproxy -D -f "$DIR/haproxy.cfg" >>"$DIR/haproxy.log" 2>&1 || die "haproxy did not start"
    wait_http "http://127.0.0.1:$HAP_STATS_PORT/stats" || die "haproxy does not answer"
}

# ---- commands -------------------------------------------------------------

cmd_up() {
    APP=${APP:-$ROOT/build/examples/scale_app}
    INSTANCES=${INSTANCES:-3} WORKERS=${WORKERS:-2}
    ensure_tools
    [[ -e $DIR ]] && cmd_down >/dev/null 2>&1
    mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)
    say "primary"
    start_primary
    say "replica"
    start_replica
    say "pgbouncer"
    start_pgbouncer
    DATABASE_URL="host=127.0.0.1,127.0.0.1 port=$PRIMARY_PORT,$REPLICA_PORT dbname=awith_test user=awith"
    DATABASE_URL+=" password=awith_pw target_session_attrs=read-write connect_timeout=2"
    READ_DATABASE_URL="host=127.0.0.1 port=$PGB_PORT dbname=awith_test user=awith connect_timeout=2"
    HAP_PORT=$(free_port) HAP_STATS_PORT=$(free_port)
    APP_PORTS=()
    local i
    for ((i = 0; i < INSTANCES; i++)); do
        APP_PORTS+=("$(free_port)")
    done
    write_env
    for ((i = 0; i < INSTANCES; i++)); do
        say "app $i on :${APP_PORTS[$i]} ($WORKERS workers)"
        start_app "$i"
    done
    say "haproxy on :$HAP_PORT (stats :$HAP_STATS_PORT/stats)"
    start_haproxy
    wait_http "http://127.0.0.1:$HAP_PORT/db/write" 100 || say "warning: a write through haproxy does not succeed yet"
    cmd_status
}

pid_of() { [[ -f $1 ]] && head -n 1 "$1"; }

cmd_down() {
    load || { rm -rf "$DIR"; return 0; }
    local i p
    p=$(pid_of "$DIR/haproxy.pid") && kill -TERM "$p" 2>/dev/null
    for ((i = 0; i < INSTANCES; i++)); do
        p=$(pid_of "$DIR/app$i.pid") && kill -TERM "$p" 2>/dev/null
    done
    p=$(pid_of "$PGB_DIR/pgbouncer.pid") && kill -TERM "$p" 2>/dev/null
    [[ -d $REPLICA_DATA ]] && as_pg "$PG_BINDIR/pg_ctl" -D "$REPLICA_DATA" stop -m immediate -w -t 30 >/dev/null 2>&1
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for f in "$DIR"/app*.pid; do
            p=$(pid_of "$f") && kill -0 "$p" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    bash "$ROOT/scripts/pg_cluster.sh" stop "$DIR/primary" >/dev/null 2>&1
    rm -rf "$DIR"
    say "down"
}

cmd_status() {
    load || { echo "no cluster in $DIR"; exit 3; }
    local bad=0 i p st
    line() { printf '%-10s %-22s %s\n' "$@"; }
    for ((i = 0; i < INSTANCES; i++)); do
        local port
        port=$(echo "$APP_PORTS" | cut -d' ' -f$((i + 1)))
        p=$(pid_of "$DIR/app$i.pid")
        st=$(curl -s --max-time 2 "http://127.0.0.1:$port/readyz" || echo down)
        [[ $st == *'"ready"'* ]] || bad=1
        line "app$i" "127.0.0.1:$port" "pid ${p:-?} $st"
    done
    if p=$(pid_of "$DIR/haproxy.pid") && kill -0 "$p" 2>/dev/null; then
        local up
        up=$(curl -s --max-time 2 "http://127.0.0.1:$HAP_STATS_PORT/stats;csv" |
            awk -F, '$1=="awith" && $2 ~ /^app/ {printf "%s:%s ", $2, $18}')
        line haproxy "127.0.0.1:$HAP_PORT" "pid $p  $up"
    else
        line haproxy "127.0.0.1:$HAP_PORT" down
        bad=1
    fi
    if p=$(pid_of "$PGB_DIR/pgbouncer.pid") && kill -0 "$p" 2>/dev/null; then
        line pgbouncer "127.0.0.1:$PGB_PORT" "pid $p (transaction mode -> replica)"
    else
        line pgbouncer "127.0.0.1:$PGB_PORT" down
        bad=1
    fi
    local role
    for role in primary replica; do
        local port=$PRIMARY_PORT
        [[ $role == replica ]] && port=$REPLICA_PORT
        st=$(PGPASSWORD=awith_pw PGCONNECT_TIMEOUT=2 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$port" -U awith -d awith_test \
            -c "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END" 2>/dev/null || echo down)
        [[ $st == down ]] && bad=1
        line "$role" "127.0.0.1:$port" "$st"
    done
    return $bad
}

haproxy_cmd() {
    "$PY" - "$DIR/haproxy.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
out = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    out += d
sys.stdout.write(out.decode())
PY
}

cmd=${1-}
case $cmd in
    up | down | status | env) DIR=${2:-$ROOT/build-cluster} ;;
    app-start | pgbouncer | haproxy-cmd) [[ $# -ge 2 ]] || usage; DIR=${3:-$ROOT/build-cluster} ;;
    failover) DIR=${2:-$ROOT/build-cluster} ;;
    *) usage ;;
esac
case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) load || die "no cluster in $DIR"; cat "$DIR/env" ;;
    app-start)
        load || die "no cluster in $DIR"
        read -r -a APP_PORTS <<<"$APP_PORTS"
        start_app "$2"
        ;;
    pgbouncer)
        load || die "no cluster in $DIR"
        case $2 in
            stop) p=$(pid_of "$PGB_DIR/pgbouncer.pid") && kill -TERM "$p" 2>/dev/null
                  for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done ;;
            start) pgbouncer_start ;;
            *) usage ;;
        esac
        ;;
    failover)
        load || die "no cluster in $DIR"
        as_pg "$PG_BINDIR/pg_ctl" -D "$PRIMARY_DATA" stop -m fast -w -t 30 >/dev/null || die "stopping the primary failed"
        as_pg "$PG_BINDIR/pg_ctl" -D "$REPLICA_DATA" promote -w -t 30 >/dev/null || die "promoting the replica failed"
        ;;
    haproxy-cmd) load || die "no cluster in $DIR"; haproxy_cmd "$2" ;;
esac
