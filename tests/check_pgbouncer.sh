#!/bin/bash
# SPDX-License-Identifier: MIT
# pgbouncer (Debian's) in transaction mode in front of the test cluster
# (DATABASE_URL, from scripts/pg_cluster.sh): two server connections for
# all clients, so consecutive transactions land on different server
# connections; then tests/test_pg_pgbouncer runs through it with
# PGBOUNCER_URL (transactions, parameters, pipelining; LISTEN and session
# state refused with a clear error). pgbouncer refuses to run as root: as
# root it runs as the "postgres" user, from a temporary directory that
# user owns. Killed on exit (trap).
# Usage: check_pgbouncer.sh BUILD_DIR
set -uo pipefail
# Debian's python3 when there is one (a python3 shim on PATH can take seconds per start)
PY=$([[ -x /usr/bin/python3 ]] && echo /usr/bin/python3 || command -v python3)
build=${1:?usage: check_pgbouncer.sh BUILD_DIR [test name filter]}
shift
test_bin=$build/tests/test_pg_pgbouncer
fail() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }

[[ -n ${DATABASE_URL-} ]] || { echo "SKIP: DATABASE_URL is not set (scripts/test.sh sets it)"; echo "0 passed, 0 failed"; exit 77; }
command -v pgbouncer >/dev/null || fail "pgbouncer is not installed (scripts/test.sh installs it)"
[[ -x $test_bin ]] || fail "no $test_bin"

read -r pg_host pg_port pg_user pg_pass pg_db < <("$PY" - "$DATABASE_URL" <<'PY'
import sys, urllib.parse as u
p = u.urlparse(sys.argv[1])
print(p.hostname or "127.0.0.1", p.port or 5432, p.username or "", p.password or "", p.path.lstrip("/") or "postgres")
PY
)
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d /tmp/aw-pgbouncer-XXXXXX)
run_as=()
if ((EUID == 0)); then
    chown postgres: "$tmp"
    run_as=(runuser -u postgres --)
fi
pid=
cleanup() {
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/pgbouncer.ini" <<INI
[databases]
$pg_db = host=$pg_host port=$pg_port dbname=$pg_db user=$pg_user password=$pg_pass
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = $tmp/pgbouncer.log
pidfile = $tmp/pgbouncer.pid
INI
chmod 644 "$tmp/pgbouncer.ini"
"${run_as[@]}" pgbouncer "$tmp/pgbouncer.ini" 2>/dev/null &
pid=$!
for ((i = 0; i < 100; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
((i < 100)) || { cat "$tmp/pgbouncer.log" 2>/dev/null; fail "pgbouncer did not start"; }

PGBOUNCER_URL="postgresql://$pg_user@127.0.0.1:$port/$pg_db" AW_PG_REQUIRED=1 "$test_bin" "$@"
rc=$?
((rc == 0)) || tail -n 20 "$tmp/pgbouncer.log"
exit $rc
