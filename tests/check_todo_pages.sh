#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/todo_api's pages in a real browser: the service runs against the
# PostgreSQL cluster in DATABASE_URL with two todos in it; Debian's headless
# chromium loads the front page (served by aw_app_static from
# examples/todo_api/static/), runs its JavaScript, and the rendered DOM must
# list both todos, the done one struck through (its fetch of GET /todos
# worked); then /docs (aw_app_openapi's page) must show the operations of
# the OpenAPI document made from the routes' declarations.
#
#   tests/check_todo_pages.sh EXAMPLES_DIR
#
# Without DATABASE_URL (or without chromium) it skips (exit 77) unless
# AW_PG_REQUIRED is set, as the pg tests do.
set -uo pipefail
examples=${1:?usage: check_todo_pages.sh EXAMPLES_DIR}
app=$examples/todo_api
passed=0 failed=0

skip() {
    if [[ -n ${AW_PG_REQUIRED-} ]]; then
        echo "FAIL setup: $1"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "SKIP: $1"
    echo "0 passed, 0 failed"
    exit 77
}
[[ -n ${DATABASE_URL-} ]] || skip "DATABASE_URL is not set (scripts/pg_cluster.sh starts a private cluster)"
chromium=$(command -v chromium || command -v chromium-browser) || skip "no chromium (apt-get install chromium)"
[[ -x $app ]] || skip "$app is not built (-Dexamples=true)"

ok() { echo "ok $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

work=$(mktemp -d /tmp/aw-todo-pages-XXXXXX)
pid=
cleanup() {
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS todos" \
    >/dev/null 2>&1 || skip "psql cannot reach DATABASE_URL"
"$app" --port "$port" >"$work/server.log" 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "$base/todos" && break
    sleep 0.1
done
curl -s -X POST -d '{"title": "buy <milk> & bread"}' "$base/todos" >/dev/null
curl -s -X POST -d '{"title": "write the report", "done": true}' "$base/todos" >/dev/null

browse() { # URL -> the DOM after the scripts ran
    timeout -k 5 90 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$work/profile" --virtual-time-budget=5000 --dump-dom "$1" 2>>"$work/chromium.log"
}

# todo_front_page_in_chromium_lists_the_todos_from_the_api
browse "$base/" >"$work/front.html"
if grep -q '<span>buy &lt;milk&gt; &amp; bread</span>' "$work/front.html" &&
    grep -q '<li class="done">.*<span>write the report</span>' "$work/front.html"; then
    ok todo_front_page_in_chromium_lists_the_todos_from_the_api
else
    fail todo_front_page_in_chromium_lists_the_todos_from_the_api \
        "the rendered page lacks the todos ($(wc -c <"$work/front.html") bytes of DOM; chromium: $(tail -n 3 "$work/chromium.log"))"
fi

# todo_docs_page_in_chromium_shows_the_openapi_operations
browse "$base/docs" >"$work/docs.html"
if grep -q 'todo_api 1.0.0' "$work/docs.html" && grep -q 'List todos' "$work/docs.html" &&
    grep -q '/todos/{id}' "$work/docs.html" && grep -q 'Delete a todo' "$work/docs.html"; then
    ok todo_docs_page_in_chromium_shows_the_openapi_operations
else
    fail todo_docs_page_in_chromium_shows_the_openapi_operations \
        "the rendered page lacks the operations ($(wc -c <"$work/docs.html") bytes of DOM)"
fi

echo "$passed passed, $failed failed"
((failed == 0))
