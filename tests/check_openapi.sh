#!/bin/bash
# SPDX-License-Identifier: MIT
# The OpenAPI document of examples/orders_api checked from outside: the
# example runs on a free port and tests/openapi_roundtrip.py validates
# GET /openapi.json as OpenAPI 3.1 (openapi-spec-validator), checks the
# docs page, and sends, for every operation, a request built from the
# document alone (2xx, answer valid against its response schema) and one
# with a value past a declared bound (422 at that value's location).
# Usage: check_openapi.sh BUILD_DIR
set -uo pipefail
build=${1:?usage: check_openapi.sh BUILD_DIR}
here=$(cd "$(dirname "$0")" && pwd)
api=$build/examples/orders_api
fails=0
fail() { echo "FAIL $*"; echo "0 passed, 1 failed"; exit 1; }

[[ -x $api ]] || fail "no $api (configure with -Dexamples=true)"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$api" --port "$port" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for ((i = 0; i < 200; i++)); do
    curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$port/openapi.json" && break
    sleep 0.05
done
python3 "$here/openapi_roundtrip.py" "http://127.0.0.1:$port" || fails=1
kill -TERM $pid
wait $pid
rc=$?
if ((rc != 0)); then
    echo "FAIL orders_api exited with $rc after SIGTERM:"
    cat "$log"
    exit 1
fi
exit $fails
