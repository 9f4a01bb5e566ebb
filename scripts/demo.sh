#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Build build/ (same configuration as scripts/test.sh) and run, in order, every
# example named in examples/demo.list (one name per line; blank lines and
# '#' comments ignored), then the HTTP and PostgreSQL example servers
# (hello_server; users_api against a private cluster, see demo_users_api).
# Fails if the build or any example fails.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build

ensure_packages || { echo "package installation failed" >&2; exit 1; }
CC=gcc setup_build build --werror || { echo "BUILD FAILED: build" >&2; exit 1; }

mapfile -t names < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' examples/demo.list)
failed=()
for name in "${names[@]}"; do
    echo
    echo "===== example: $name ====="
    if [[ ! -x build/examples/$name ]]; then
        echo "FAIL $name: build/examples/$name not found"
        failed+=("$name")
        continue
    fi
    build/examples/"$name" </dev/null
    rc=$?
    if ((rc != 0)); then
        echo "FAIL $name: exit status $rc"
        failed+=("$name")
    fi
done

# The seed's web service, for real: start examples/hello_server on a free
# port, ask it with curl, then stop it with SIGINT (graceful shutdown).
demo_server() {
    local port pid out
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo
    echo "===== example: hello_server (port $port) ====="
    build/examples/hello_server --port "$port" &
    pid=$!
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
    echo "\$ curl -i http://127.0.0.1:$port/"
    out=$(curl -s -i "http://127.0.0.1:$port/")
    echo "$out"
    kill -INT "$pid"
    wait "$pid" || { echo "FAIL hello_server: exit status $?"; return 1; }
    [[ $out == *'{"message":"Hello, World!"}'* ]] || { echo "FAIL hello_server: unexpected answer"; return 1; }
}
demo_server || failed+=(hello_server)

# The PostgreSQL layer's web service: examples/users_api against a private
# cluster (scripts/pg_cluster.sh, in build-pg/demo; or the caller's
# DATABASE_URL). Creates and fills the users and products tables, starts the
# server on a free port, asks GET /users and GET /products with curl, stops it
# with SIGINT, then stops and removes the cluster. Until the example exists
# only the database part runs (with a note).
demo_users_api() {
    local dir=build-pg/demo own=0 url port pid out rc=0 path
    echo
    echo "===== example: users_api (PostgreSQL) ====="
    if [[ -n ${DATABASE_URL-} ]]; then
        url=$DATABASE_URL
        echo "(using the caller's DATABASE_URL)"
    else
        bash scripts/pg_cluster.sh start "$dir" >/dev/null ||
            { echo "FAIL users_api: the private PostgreSQL cluster did not start"; return 1; }
        own=1
        trap 'bash scripts/pg_cluster.sh stop build-pg/demo 2>/dev/null' EXIT   # also on ^C
        url=$(source "$dir/env" && echo "$DATABASE_URL")
        echo "(private PostgreSQL cluster: DATABASE_URL=$url)"
    fi

    # The tables and their sample rows (only into empty tables: a caller's
    # database is left as it is otherwise).
    if ! psql "$url" -X -q -v ON_ERROR_STOP=1 <<'SQL'; then
CREATE TABLE IF NOT EXISTS users (
    id serial PRIMARY KEY,
    name text,
    email text,
    created_at timestamptz DEFAULT now()
);
INSERT INTO users (name, email)
SELECT * FROM (VALUES ('Ada Lovelace', 'ada@example.com'),
                      ('Alan Turing', 'alan@example.com'),
                      ('Grace Hopper', 'grace@example.com')) AS v
WHERE NOT EXISTS (SELECT 1 FROM users);
CREATE TABLE IF NOT EXISTS products (
    id serial PRIMARY KEY,
    name text,
    price numeric(10,2)
);
INSERT INTO products (name, price)
SELECT * FROM (VALUES ('Keyboard', 49.90), ('Mouse', 19.99), ('Monitor', 189.00)) AS v
WHERE NOT EXISTS (SELECT 1 FROM products);
SQL
        echo "FAIL users_api: creating the tables failed"
        ((own)) && bash scripts/pg_cluster.sh stop "$dir" 2>/dev/null
        trap - EXIT
        return 1
    fi
    echo "\$ psql \"\$DATABASE_URL\" -c 'SELECT * FROM users'"
    psql "$url" -X -c 'SELECT * FROM users ORDER BY id'

    if [[ ! -x build/examples/users_api ]]; then
        echo "note: build/examples/users_api is not built yet; the HTTP part of this demo is skipped"
    else
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        echo "\$ DATABASE_URL=... build/examples/users_api --port $port"
        DATABASE_URL=$url build/examples/users_api --port "$port" </dev/null &
        pid=$!
        for _ in $(seq 100); do
            curl -s -o /dev/null "http://127.0.0.1:$port/users" && break
            sleep 0.1
        done
        for path in /users /products; do
            echo "\$ curl -i http://127.0.0.1:$port$path"
            out=$(curl -s -i "http://127.0.0.1:$port$path")
            echo "$out"
            echo
            [[ $out == "HTTP/1.1 200"* ]] || { echo "FAIL users_api: GET $path did not answer 200"; rc=1; }
            case $path in
                /users) [[ $out == *'Ada Lovelace'* && $out == *'grace@example.com'* ]] ;;
                /products) [[ $out == *'Keyboard'* && $out == *'Monitor'* ]] ;;
            esac || { echo "FAIL users_api: GET $path: the sample rows are not in the answer"; rc=1; }
        done
        kill -INT "$pid"
        wait "$pid" || { echo "FAIL users_api: exit status $?"; rc=1; }
    fi

    if ((own)); then
        bash scripts/pg_cluster.sh stop "$dir" 2>/dev/null
        trap - EXIT
    fi
    return "$rc"
}
demo_users_api || failed+=(users_api)

echo
if ((${#failed[@]})); then
    echo "demo FAILED: ${failed[*]}"
    exit 1
fi
echo "demo OK"
