#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/chat in a real browser: Debian's headless chromium loads the
# example's page, whose JavaScript opens a WebSocket to /ws and sends a
# message (?say=...); a second client (python3-aiohttp) in the room answers
# it; the DOM chromium dumps must show both messages as the page received
# them, and the aiohttp client must have seen the browser's.
#
#   tests/check_chat_browser.sh EXAMPLES_DIR
#
# Skips (77) without chromium, python3-aiohttp or the example.
set -uo pipefail
examples=${1:?usage: check_chat_browser.sh EXAMPLES_DIR}
app=$examples/chat

skip() {
    echo "SKIP: $1"
    echo "0 passed, 0 failed"
    exit 77
}
[[ -x $app ]] || skip "$app is not built (-Dexamples=true)"
chromium=$(command -v chromium || command -v chromium-browser) || skip "no chromium (apt-get install chromium)"
py=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import aiohttp' 2>/dev/null; then py=$p; break; fi
done
[[ -n $py ]] || skip "no python3-aiohttp (apt-get install python3-aiohttp)"

passed=0 failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

work=$(mktemp -d)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$app" --port "$port" >"$work/chat.log" 2>&1 &
pids+=($!)
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/stats" && break
    sleep 0.1
done

# bob: in the room before the browser comes; answers the browser's message.
"$py" - "$port" >"$work/bob.txt" 2>&1 <<'EOF' &
import asyncio, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect("http://127.0.0.1:%s/ws?name=bob" % sys.argv[1])
        print("connected", flush=True)
        async for m in ws:
            print(m.data, flush=True)
            if m.data == "web: hello from chromium":
                await ws.send_str("hi browser, bob here")

asyncio.run(main())
EOF
pids+=($!)
for ((i = 0; i < 100; i++)); do
    grep -q '^connected' "$work/bob.txt" 2>/dev/null && break
    sleep 0.1
done

# The page runs for up to 5 s of page time; with ?expect=3 it keeps a
# request in flight until its three lines (joined, its own, bob's) are
# there, so the dump comes after them.
timeout -k 5 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$work/profile" --virtual-time-budget=5000 --dump-dom \
    "http://127.0.0.1:$port/?name=web&say=hello%20from%20chromium&expect=3" >"$work/dom.html" 2>"$work/chromium.log"

# page_connects_and_shows_what_the_room_said
if grep -q '<p id="state">connected</p>' "$work/dom.html" &&
    grep -q '<li>web: hello from chromium</li>' "$work/dom.html" &&
    grep -q '<li>bob: hi browser, bob here</li>' "$work/dom.html"; then
    ok page_connects_and_shows_what_the_room_said
else
    fail page_connects_and_shows_what_the_room_said "the DOM: $(grep -o '<p id="state">[^<]*</p>\|<li>[^<]*</li>' "$work/dom.html" | tr '\n' ' ')"
fi

# aiohttp_client_received_the_browsers_message
if grep -qx 'web: hello from chromium' "$work/bob.txt" && grep -qx '\* web joined' "$work/bob.txt"; then
    ok aiohttp_client_received_the_browsers_message
else
    fail aiohttp_client_received_the_browsers_message "bob saw: $(tr '\n' '|' <"$work/bob.txt")"
fi

# the browser's socket was closed when chromium ended: the room says so
for ((i = 0; i < 50; i++)); do
    grep -qx '\* web left' "$work/bob.txt" && break
    sleep 0.1
done
if grep -qx '\* web left' "$work/bob.txt"; then
    ok browser_leaving_ends_its_socket
else
    fail browser_leaving_ends_its_socket "bob saw: $(tr '\n' '|' <"$work/bob.txt")"
fi

if ((failed)); then
    echo "--- chat log"
    cat "$work/chat.log"
    echo "--- chromium log (tail)"
    tail -n 20 "$work/chromium.log"
fi
echo "$passed passed, $failed failed"
((failed == 0))
