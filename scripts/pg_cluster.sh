#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A private, throw-away PostgreSQL cluster for the tests, the demo and the
# benchmarks: Debian's server binaries (/usr/lib/postgresql/<version>/bin),
# its own data directory, a free TCP port on 127.0.0.1, password logins.
#
#   scripts/pg_cluster.sh start DIR      # (re)create, start; prints the env lines
#   scripts/pg_cluster.sh stop DIR       # stop (fast) and remove everything
#   scripts/pg_cluster.sh restart DIR    # pg_ctl restart -m fast (same port, same data)
#   scripts/pg_cluster.sh down DIR [fast|immediate|smart]  # stop the server, keep the data
#   scripts/pg_cluster.sh up DIR         # start it again after "down" (same port)
#   scripts/pg_cluster.sh status DIR     # exit 0 running, 3 stopped, 4 no cluster
#   scripts/pg_cluster.sh env DIR        # print DIR/env
#   scripts/pg_cluster.sh psql DIR [psql args...]  # psql as the superuser on awith_test
#
# "start" installs Debian's postgresql if it is missing (apt-get), stops and
# removes a stale cluster left in DIR by an earlier run, runs initdb, picks a
# free port (retrying if another process takes it first), starts the server
# with pg_ctl -w, creates the roles and the database awith_test, and writes
# DIR/env (KEY=VALUE lines, shell-quoted; `set -a; source DIR/env; set +a`),
# also printed on stdout (progress goes to stderr):
#
#   DATABASE_URL=postgresql://awith:awith_pw@127.0.0.1:PORT/awith_test
#   DATABASE_URL_SUPER=postgresql://postgres:awith_super_pw@127.0.0.1:PORT/awith_test
#   PGHOST=127.0.0.1  PGPORT=PORT  PGDATABASE=awith_test
#   PGDATA=...        the data directory
#   PG_BINDIR=/usr/lib/postgresql/15/bin
#   AW_PG_SOCKET_DIR=...    Unix socket directory (.s.PGSQL.PORT inside)
#   AW_PG_LOG=...           the server log
#   AW_PG_RUN_AS=postgres   the OS user the server runs as ("" when not root)
#   AW_PG_CLUSTER_DIR=DIR   (absolute)
#   AW_PG_CLUSTER_SCRIPT=.../scripts/pg_cluster.sh (absolute)
#   AW_PG_SSL=1|0           ssl=on with a self-signed certificate (when openssl exists)
#
# Roles (all LOGIN; the test roles are members of awith, so they can use its
# tables). TCP from 127.0.0.1 and the Unix socket use the method shown:
#
#   postgres     / awith_super_pw   superuser              scram-sha-256
#   awith        / awith_pw         owns awith_test, CREATEDB  scram-sha-256
#   awith_md5    / awith_md5_pw     password stored as md5 md5
#   awith_clear  / awith_clear_pw   cleartext password     password
#   awith_trust  (no password)                             trust
#
# A test can take the server away and bring it back (fault tests):
#   "$AW_PG_CLUSTER_SCRIPT" down "$AW_PG_CLUSTER_DIR" [immediate]
#   "$AW_PG_CLUSTER_SCRIPT" up "$AW_PG_CLUSTER_DIR"
#   "$AW_PG_CLUSTER_SCRIPT" restart "$AW_PG_CLUSTER_DIR"
# or run "$PG_BINDIR/pg_ctl" -D "$PGDATA" itself (as $AW_PG_RUN_AS when set:
# runuser -u postgres -- ...).
#
# Where the data lives: initdb refuses to run as root, so as root the server
# runs as the "postgres" system user. The data directory, socket and log live
# in DIR/run when postgres can reach DIR (every parent traversable) and the
# socket path is short enough; otherwise in a fresh /tmp/awith-pg-XXXXXX,
# recorded in DIR/env and removed by "stop". Settings favour speed over
# durability (fsync, synchronous_commit and full_page_writes off): never put
# data you care about in it.
set -uo pipefail

SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
ROOT=$(dirname "$(dirname "$SCRIPT")")

SUPER_USER=postgres SUPER_PASS=awith_super_pw
TEST_USER=awith TEST_PASS=awith_pw
DB=awith_test
MAX_CONNECTIONS=100

say() { echo "pg_cluster: $*" >&2; }
die() { say "$*"; exit 1; }

usage() { sed -n '2,13p' "$SCRIPT" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# as_pg CMD...: run CMD as the server's OS user (from /, which it can read).
as_pg() {
    if [[ -n $RUN_AS ]]; then
        (cd / && runuser -u "$RUN_AS" -- "$@")
    else
        (cd / && "$@")
    fi
}

# start_pg CMD...: as as_pg, but with every fd above 2 closed first: the
# server (which outlives us) must not hold a caller's pipes open, or e.g. a
# test harness reading a test's output would wait for their EOF forever.
start_pg() {
    (
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            ((fd > 2)) && exec {fd}>&-
        done 2>/dev/null
        as_pg "$@"
    )
}

# Newest installed server version's bin dir, e.g. /usr/lib/postgresql/15/bin.
find_bindir() {
    local d best=
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] || continue
        if [[ -z $best ]] || (($(basename "$(dirname "$d")") > $(basename "$(dirname "$best")"))); then
            best=$d
        fi
    done
    [[ -n $best ]] && echo "$best"
}

# Install Debian's postgresql (server, client, pgbench) when initdb is missing.
ensure_postgres() {
    find_bindir >/dev/null && return 0
    # shellcheck source=scripts/test.sh
    source "$ROOT/scripts/test.sh"   # ensure_packages (its main() does not run)
    # shellcheck disable=SC2034  # read by ensure_packages
    PACKAGES=(postgresql postgresql-client)
    ensure_packages >&2 || die "installing postgresql failed"
    find_bindir >/dev/null || die "no /usr/lib/postgresql/*/bin/initdb after installing postgresql"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# load_env DIR: read DIR/env into this shell (no export). Fails if absent.
load_env() {
    [[ -f $1/env ]] || return 1
    # shellcheck disable=SC1091
    source "$1/env"
    RUN_AS=${AW_PG_RUN_AS-}
}

# can_reach DIR: may the server's OS user traverse every parent of DIR?
can_reach() {
    [[ -z $RUN_AS ]] && return 0
    runuser -u "$RUN_AS" -- test -x "$1" -a -r "$1" 2>/dev/null
}

# kill_stale DIR [quiet]: stop and remove whatever an earlier run left in DIR.
kill_stale() {
    local dir=$1 quiet=${2-} pid
    [[ -e $dir ]] || return 0
    if load_env "$dir" 2>/dev/null && [[ -n ${PGDATA-} && -d $PGDATA ]]; then
        [[ -n $quiet ]] || say "removing a stale cluster in $dir (data $PGDATA)"
        as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" stop -m immediate -w -t 20 >/dev/null 2>&1
        # A postmaster whose pg_ctl stop failed: kill it by its pid file.
        if [[ -f $PGDATA/postmaster.pid ]]; then
            pid=$(head -n 1 "$PGDATA/postmaster.pid")
            [[ $pid =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null
        fi
        [[ ${AW_PG_RUN_DIR-} == /tmp/awith-pg-* ]] && rm -rf "$AW_PG_RUN_DIR"
    fi
    rm -rf "$dir"
}

# write_conf: settings appended to postgresql.conf, port set by set_port.
write_conf() {
    cat >>"$PGDATA/postgresql.conf" <<EOF

# ---- scripts/pg_cluster.sh: a private test cluster, speed over durability ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKDIR'
max_connections = $MAX_CONNECTIONS
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
include_if_exists = 'awith_port.conf'
EOF
    # Local (socket) and TCP logins: one method per test role, scram otherwise.
    cat >"$PGDATA/pg_hba.conf" <<EOF
# TYPE  DATABASE USER         ADDRESS        METHOD
local   all      awith_md5                   md5
local   all      awith_clear                 password
local   all      awith_trust                 trust
local   all      all                         scram-sha-256
host    all      awith_md5    127.0.0.1/32   md5
host    all      awith_clear  127.0.0.1/32   password
host    all      awith_trust  127.0.0.1/32   trust
host    all      all          127.0.0.1/32   scram-sha-256
EOF
}

# make_ssl: a self-signed certificate, ssl = on (clients choose sslmode).
make_ssl() {
    AW_PG_SSL=0
    command -v openssl >/dev/null || return 0
    if openssl req -new -x509 -days 3650 -nodes -subj "/CN=127.0.0.1" \
        -newkey rsa:2048 -keyout "$PGDATA/server.key" -out "$PGDATA/server.crt" >/dev/null 2>&1; then
        chmod 600 "$PGDATA/server.key"
        [[ -n $RUN_AS ]] && chown "$RUN_AS:" "$PGDATA/server.key" "$PGDATA/server.crt"
        printf "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n" >>"$PGDATA/postgresql.conf"
        AW_PG_SSL=1
    fi
}

set_port() {
    echo "port = $1" >"$PGDATA/awith_port.conf"
    [[ -n $RUN_AS ]] && chown "$RUN_AS:" "$PGDATA/awith_port.conf"
}

write_env() {
    local dir=$1
    {
        printf 'DATABASE_URL=%q\n' "postgresql://$TEST_USER:$TEST_PASS@127.0.0.1:$PORT/$DB"
        printf 'DATABASE_URL_SUPER=%q\n' "postgresql://$SUPER_USER:$SUPER_PASS@127.0.0.1:$PORT/$DB"
        printf 'PGHOST=%q\n' 127.0.0.1
        printf 'PGPORT=%q\n' "$PORT"
        printf 'PGDATABASE=%q\n' "$DB"
        printf 'PGDATA=%q\n' "$PGDATA"
        printf 'PG_BINDIR=%q\n' "$PG_BINDIR"
        printf 'AW_PG_SOCKET_DIR=%q\n' "$SOCKDIR"
        printf 'AW_PG_LOG=%q\n' "$LOG"
        printf 'AW_PG_RUN_AS=%q\n' "$RUN_AS"
        printf 'AW_PG_RUN_DIR=%q\n' "$RUNDIR"
        printf 'AW_PG_CLUSTER_DIR=%q\n' "$dir"
        printf 'AW_PG_CLUSTER_SCRIPT=%q\n' "$SCRIPT"
        printf 'AW_PG_SSL=%q\n' "$AW_PG_SSL"
    } >"$dir/env.tmp" && mv "$dir/env.tmp" "$dir/env"
}

# pg_start: pg_ctl start -w with the log in $LOG; 0 when accepting connections.
pg_start() {
    start_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 start >/dev/null 2>&1
}

# super_psql ARGS...: psql as the superuser over TCP, quiet, stop on error.
super_psql() {
    PGPASSWORD=$SUPER_PASS "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$PORT" -U "$SUPER_USER" "$@"
}

cmd_start() {
    local dir=$1 attempt
    ensure_postgres
    PG_BINDIR=$(find_bindir)
    RUN_AS=
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 || die "no 'postgres' system user (is Debian's postgresql installed?)"
        RUN_AS=postgres
    fi
    kill_stale "$dir"
    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)

    # The run dir (data, socket, log): DIR/run if the server user can reach it
    # and the socket path fits sun_path (107 bytes), else a /tmp dir.
    RUNDIR=$dir/run
    if ! can_reach "$dir" || ((${#RUNDIR} + 20 > 107)); then
        RUNDIR=$(mktemp -d /tmp/awith-pg-XXXXXX) || die "mktemp failed"
        say "$dir is unreachable for the server user or too long a socket path; data in $RUNDIR"
    fi
    mkdir -p "$RUNDIR" && chmod 755 "$RUNDIR"   # others may reach the socket
    [[ -n $RUN_AS ]] && chown "$RUN_AS:" "$RUNDIR"
    PGDATA=$RUNDIR/data SOCKDIR=$RUNDIR LOG=$RUNDIR/server.log

    # initdb: superuser + password, UTF8, C locale, no fsync of the new files.
    local pwfile=$RUNDIR/pwfile
    printf '%s\n' "$SUPER_PASS" >"$pwfile"
    [[ -n $RUN_AS ]] && chown "$RUN_AS:" "$pwfile"
    if ! as_pg "$PG_BINDIR/initdb" -D "$PGDATA" -U "$SUPER_USER" --pwfile="$pwfile" \
        -E UTF8 --locale=C --auth=scram-sha-256 --no-sync >"$RUNDIR/initdb.log" 2>&1; then
        cat "$RUNDIR/initdb.log" >&2
        die "initdb failed"
    fi
    rm -f "$pwfile"
    write_conf
    make_ssl

    # Start on a free port; if something else grabs it first, try another.
    for attempt in 1 2 3 4 5; do
        PORT=$(free_port)
        set_port "$PORT"
        pg_start && break
        if ((attempt == 5)) || ! grep -q 'could not bind\|already in use' "$LOG" 2>/dev/null; then
            tail -n 20 "$LOG" >&2
            die "the server did not start (log: $LOG)"
        fi
        say "port $PORT taken, retrying"
    done
    write_env "$dir"

    # Roles and the test database.
    if ! super_psql -d postgres >&2 <<EOF; then
CREATE ROLE $TEST_USER LOGIN CREATEDB PASSWORD '$TEST_PASS';
SET password_encryption = 'md5';
CREATE ROLE awith_md5 LOGIN PASSWORD 'awith_md5_pw' IN ROLE $TEST_USER;
RESET password_encryption;
CREATE ROLE awith_clear LOGIN PASSWORD 'awith_clear_pw' IN ROLE $TEST_USER;
CREATE ROLE awith_trust LOGIN IN ROLE $TEST_USER;
CREATE DATABASE $DB OWNER $TEST_USER;
EOF
        die "creating roles / database failed (log: $LOG)"
    fi
    say "running: 127.0.0.1:$PORT, data $PGDATA, log $LOG"
    cat "$dir/env"
}

cmd_stop() {
    local dir=$1
    [[ -e $dir ]] || return 0
    if load_env "$dir"; then
        as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" stop -m fast -w -t 30 >/dev/null 2>&1 ||
            as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" stop -m immediate -w -t 30 >/dev/null 2>&1
    fi
    kill_stale "$dir" quiet   # whatever is left (and the /tmp run dir)
    say "stopped and removed $dir"
}

need_cluster() {
    load_env "$1" || { say "no cluster in $1 (no $1/env)"; exit 4; }
}

case ${1-} in
    start | stop | restart | down | up | status | env | psql) ;;
    *) usage ;;
esac
action=$1
[[ $# -ge 2 ]] || usage
dir=$2
shift 2
case $action in
    start) cmd_start "$dir" ;;
    stop) cmd_stop "$dir" ;;
    restart)
        need_cluster "$dir"
        start_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$AW_PG_LOG" -m fast -w -t 60 restart >/dev/null ||
            die "restart failed (log: $AW_PG_LOG)"
        ;;
    down)
        need_cluster "$dir"
        as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m "${1:-fast}" -w -t 60 stop >/dev/null ||
            die "stop failed (log: $AW_PG_LOG)"
        ;;
    up)
        need_cluster "$dir"
        LOG=$AW_PG_LOG
        pg_start || die "start failed (log: $AW_PG_LOG)"
        ;;
    status)
        need_cluster "$dir"
        if as_pg "$PG_BINDIR/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
            echo "running on 127.0.0.1:$PGPORT (data $PGDATA)"
        else
            echo "stopped (data $PGDATA)"
            exit 3
        fi
        ;;
    env) need_cluster "$dir"; cat "$dir/env" ;;
    psql)
        need_cluster "$dir"
        PORT=$PGPORT
        super_psql -d "$PGDATABASE" "$@"
        ;;
esac
