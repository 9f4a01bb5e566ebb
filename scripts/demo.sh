#!/usr/bin/env bash
# Build build/ (same configuration as scripts/test.sh) and run, in order, every
# example named in examples/demo.list (one name per line; blank lines and
# '#' comments ignored). Fails if the build or any example fails.
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

echo
if ((${#failed[@]})); then
    echo "demo FAILED: ${failed[*]}"
    exit 1
fi
echo "demo OK"
