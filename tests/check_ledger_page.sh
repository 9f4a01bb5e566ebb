#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The live ledger page (aw_app_debug_page) in a real browser: examples/users_api
# runs with the page on (AWITH_DEBUG_PAGE=1) against the PostgreSQL cluster in
# DATABASE_URL; a request to GET /slow holds a pooled connection and a
# transaction open (SELECT pg_sleep) while Debian's headless chromium loads
# /debug/awith, runs its JavaScript, and the rendered DOM must show the task
# ("GET /slow"), the transaction, and the file:line of the block that opened
# it (examples/users_api.c). The JSON says the same. Then the access rules:
# a non-loopback peer gets 404, a token is required when set, and the page
# is off unless asked for.
#
#   tests/check_ledger_page.sh EXAMPLES_DIR SOURCE_ROOT
#
# Without DATABASE_URL (or without chromium) it skips (exit 77) unless
# AW_PG_REQUIRED is set, as the pg tests do. AW_LEDGER_SCREENSHOT=FILE keeps
# the screenshot there (docs/img/ledger-page.png is made this way:
# AW_LEDGER_SCREENSHOT=docs/img/ledger-page.png).
set -uo pipefail
examples=${1:?usage: check_ledger_page.sh EXAMPLES_DIR SOURCE_ROOT}
root=${2:?usage: check_ledger_page.sh EXAMPLES_DIR SOURCE_ROOT}
app=$examples/users_api
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

work=$(mktemp -d)
pids=()
declare -A started
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME PORT HOST [env...]: users_api in the background; waits until it
# answers (GET /users), sets $last_pid.
start() {
    local name=$1 port=$2 host=$3
    shift 3
    env "$@" "$app" --port "$port" --host "$host" --pool 2 >"$work/$name.log" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
    started[$name]=$last_pid
    local i
    for ((i = 0; i < 100; i++)); do
        curl -s -o /dev/null "http://127.0.0.1:$port/users" && return 0
        kill -0 "$last_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "users_api ($name) did not start:"
    cat "$work/$name.log"
    return 1
}

status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# Chromium with a private profile, no first-run noise, JavaScript run for
# up to $budget ms of page time (the page polls every second).
budget=6000
browse() {
    timeout -k 5 90 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --no-first-run --user-data-dir="$work/profile" --virtual-time-budget="$budget" "$@" 2>>"$work/chromium.log"
}

# The line of the block in users_api.c that opens the transaction: the page
# must show exactly this one.
tx_line=$(grep -n 'AW_WITH(aw_pg_tx_init(&tx, a.conn' "$root/examples/users_api.c" | cut -d: -f1 | head -1)
[[ -n $tx_line ]] || { echo "FAIL setup: no transaction block in examples/users_api.c"; echo "0 passed, 1 failed"; exit 1; }

# Listen on every address, so a non-loopback one can reach it too.
port=$(free_port)
start page "$port" 0.0.0.0 AWITH_DEBUG_PAGE=1 || { echo "0 passed, 1 failed"; exit 1; }
server=$last_pid
base=http://127.0.0.1:$port

# A slow step first (the page lists it), then the transaction held open.
curl -s -o /dev/null "$base/busy?ms=250"
curl -s -o "$work/slow.out" "$base/slow?seconds=60" &
slow=$!
pids+=("$slow")
for ((i = 0; i < 100; i++)); do
    curl -s "$base/debug/awith/ledger.json" >"$work/ledger.json"
    grep -q '"pg transaction"' "$work/ledger.json" && break
    sleep 0.1
done

# ledger_json_shows_the_slow_request_its_transaction_and_line
if python3 - "$work/ledger.json" "$tx_line" "$server" <<'EOF'; then
import json, sys
d = json.load(open(sys.argv[1]))
line, pid = int(sys.argv[2]), int(sys.argv[3])
for k in ("app", "pid", "served_by", "loop", "tasks", "orphans", "events", "gauges"):
    assert k in d, "no %s in %s" % (k, list(d))
assert d["app"] == "users_api" and d["pid"] == pid, (d["app"], d["pid"], pid)
for k in ("tasks", "running", "ready", "waiting", "manual", "switches", "slow_steps", "thread_jobs"):
    assert isinstance(d["loop"][k], int), k
assert d["loop"]["tasks"] == len(d["tasks"]), (d["loop"]["tasks"], len(d["tasks"]))
slow = [t for t in d["tasks"] if t["name"] == "GET /slow"]
assert len(slow) == 1, [t["name"] for t in d["tasks"]]
t = slow[0]
assert t["state"] == "waiting" and t["waiting_ms"] > 0 and t["where"]["file"] and t["where"]["line"] > 0, t
tx = [h for h in t["holds"] if h["what"] == "pg transaction"]
assert tx, t["holds"]
at = tx[0]["at"]
assert at["file"].endswith("examples/users_api.c") and at["line"] == line and at["func"] == "slow_report", at
assert tx[0]["age_ms"] > 0 and tx[0]["manual"] is False and "transaction on backend" in tx[0]["detail"], tx[0]
conn = [h for h in t["holds"] if h["what"] == "pg pool connection"]
assert conn and conn[0]["at"]["line"] == line - 1, t["holds"]
# The page's own request: running, and named after its request.
me = [x for x in d["tasks"] if x["state"] == "running"]
assert len(me) == 1 and me[0]["name"] == "GET /debug/awith/ledger.json" == d["served_by"], me
# The slow step of GET /busy?ms=250, and the pool's gauges.
ev = [e for e in d["events"] if e["kind"] == "slow step" and e["task"] == "GET /busy"]
assert ev and ev[0]["duration_ms"] >= 100, d["events"]
pools = [g for g in d["gauges"] if g["source"] == "pg pool"]
assert len(pools) == 1 and pools[0]["values"]["in_use"] >= 1 and pools[0]["values"]["size"] >= 1, d["gauges"]
EOF
    ok ledger_json_shows_the_slow_request_its_transaction_and_line
else
    fail ledger_json_shows_the_slow_request_its_transaction_and_line "$(head -c 600 "$work/ledger.json")"
fi

# ledger_page_in_chromium_shows_the_task_the_transaction_and_its_line
browse --dump-dom "$base/debug/awith" >"$work/dom.html"
missing=()
for want in "GET /slow" "pg transaction" "pg pool connection" "users_api.c:$tx_line" "slow_report()" \
    "worker pid <b>$server</b>" "GET /busy</b> ran"; do
    grep -qF -- "$want" "$work/dom.html" || missing+=("$want")
done
if ((${#missing[@]} == 0)); then
    ok ledger_page_in_chromium_shows_the_task_the_transaction_and_its_line
else
    fail ledger_page_in_chromium_shows_the_task_the_transaction_and_its_line \
        "the rendered page lacks: ${missing[*]} ($(wc -c <"$work/dom.html") bytes of DOM; chromium: $(tail -n 3 "$work/chromium.log"))"
fi

# debug_events_stream_the_ledger_every_second: GET /debug/awith/events is
# text/event-stream, one "data: <ledger.json>" event a second.
curl -s -N --max-time 2.6 -D "$work/events.head" -o "$work/events.out" "$base/debug/awith/events"
if grep -qi "^content-type: text/event-stream" "$work/events.head" && python3 - "$work/events.out" <<'EOF2'; then
import json, sys
events = [l[6:] for l in open(sys.argv[1]).read().split("\n") if l.startswith("data: ")]
assert 2 <= len(events) <= 4, len(events)
for e in events:
    d = json.loads(e)
    assert d["served_by"] == "GET /debug/awith/events" and any(t["name"] == "GET /slow" for t in d["tasks"]), d
EOF2
    ok debug_events_stream_the_ledger_every_second
else
    fail debug_events_stream_the_ledger_every_second "$(head -c 300 "$work/events.out")"
fi

# ledger_page_is_one_self_contained_file: the page as served is the file in
# the tree, with a policy that lets it load nothing from anywhere else.
curl -s -D "$work/page.head" -o "$work/page.html" "$base/debug/awith"
if cmp -s "$work/page.html" "$root/src/http/debug_page.html" &&
    grep -qi "^content-security-policy: default-src 'none'" "$work/page.head" &&
    grep -qi "^cache-control: no-store" "$work/page.head" &&
    ! grep -qiE '(src|href)=|@import|url\(' "$work/page.html"; then
    ok ledger_page_is_one_self_contained_file
else
    fail ledger_page_is_one_self_contained_file "$(head -n 12 "$work/page.head" | tr '\r\n' '  ')"
fi

# ledger_page_screenshot_is_made_by_headless_chromium
shot=${AW_LEDGER_SCREENSHOT:-$work/ledger-page.png}
rm -f "$shot"
budget=15000 browse --window-size=1280,800 --screenshot="$shot" "$base/debug/awith" >/dev/null
if [[ -s $shot ]] && [[ $(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; then
    ok ledger_page_screenshot_is_made_by_headless_chromium
else
    fail ledger_page_screenshot_is_made_by_headless_chromium "no PNG at $shot"
fi

# debug_page_answers_loopback_and_rejects_a_non_loopback_peer: the same
# server, reached through one of this machine's other addresses (the peer is
# then that address, not loopback).
addr=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | grep -v '^127\.' | head -1)
if [[ -z $addr ]]; then
    echo "(no non-loopback IPv4 address here: only the loopback half is checked)"
fi
codes="loopback page $(status "$base/debug/awith") json $(status "$base/debug/awith/ledger.json")"
want="loopback page 200 json 200"
if [[ -n $addr ]]; then
    codes+=" other page $(status --interface "$addr" "http://$addr:$port/debug/awith")"
    codes+=" json $(status --interface "$addr" "http://$addr:$port/debug/awith/ledger.json")"
    codes+=" other $(status --interface "$addr" "http://$addr:$port/busy?ms=0")"
    want+=" other page 404 json 404 other 200"
fi
if [[ $codes == "$want" ]]; then
    ok debug_page_answers_loopback_and_rejects_a_non_loopback_peer
else
    fail debug_page_answers_loopback_and_rejects_a_non_loopback_peer "got '$codes', want '$want'"
fi
kill "$slow" 2>/dev/null

# debug_page_requires_the_token_when_set
tport=$(free_port)
if start token "$tport" 127.0.0.1 AWITH_DEBUG_PAGE=1 AWITH_DEBUG_TOKEN=s3cret-t0ken; then
    tb=http://127.0.0.1:$tport/debug/awith
    codes="none $(status "$tb") $(status "$tb/ledger.json") $(status --max-time 2 "$tb/events")"
    codes+=" wrong $(status -H 'Authorization: Bearer nope' "$tb/ledger.json") $(status "$tb/ledger.json?token=s3cret-t0keN")"
    codes+=" bearer $(status -H 'Authorization: Bearer s3cret-t0ken' "$tb/ledger.json")"
    codes+=" query $(status "$tb?token=s3cret-t0ken") $(status "$tb/ledger.json?token=s3cret-t0ken")"
    want="none 401 401 401 wrong 401 401 bearer 200 query 200 200"
    # The page passes its ?token= on to the JSON: in chromium it fills in.
    browse --dump-dom "$tb?token=s3cret-t0ken" >"$work/dom-token.html"
    if [[ $codes == "$want" ]] && grep -qF "worker pid <b>$last_pid</b>" "$work/dom-token.html"; then
        ok debug_page_requires_the_token_when_set
    else
        fail debug_page_requires_the_token_when_set "got '$codes', want '$want' (page rendered: $(grep -c 'worker pid' "$work/dom-token.html"))"
    fi
else
    fail debug_page_requires_the_token_when_set "the server did not start"
fi

# debug_page_is_off_by_default
oport=$(free_port)
if start off "$oport" 127.0.0.1; then
    codes="$(status "http://127.0.0.1:$oport/debug/awith") $(status "http://127.0.0.1:$oport/debug/awith/ledger.json") $(status "http://127.0.0.1:$oport/debug/awith/events")"
    if [[ $codes == "404 404 404" ]]; then
        ok debug_page_is_off_by_default
    else
        fail debug_page_is_off_by_default "got $codes, want 404 404 404"
    fi
else
    fail debug_page_is_off_by_default "the server did not start"
fi

# debug_page_servers_stop_cleanly: SIGTERM drains each server (the slow
# request was cancelled above); exit status 0 and no sanitizer report in its
# log (in the ASan build, leaks of the page's code would show here).
bad=()
for name in page token off; do
    pid=${started[$name]-}
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if ((rc != 0)) || grep -q "Sanitizer" "$work/$name.log"; then
        bad+=("$name: exit $rc $(grep -m1 Sanitizer "$work/$name.log")")
    fi
done
if ((${#bad[@]} == 0)); then
    ok debug_page_servers_stop_cleanly
else
    fail debug_page_servers_stop_cleanly "${bad[*]}"
fi

echo "$passed passed, $failed failed"
((failed == 0))
