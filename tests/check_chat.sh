#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/chat against Debian's python3-aiohttp WebSocket client: several
# clients in the room get every message (in each sender's order), a client
# that stops reading is dropped (closed) while the others get everything at
# full speed, the subprotocol-free handshake and the page itself.
#
#   tests/check_chat.sh EXAMPLES_DIR
#
# Skips (77) without python3-aiohttp or the example.
set -uo pipefail
examples=${1:?usage: check_chat.sh EXAMPLES_DIR}
app=$examples/chat

skip() {
    echo "SKIP: $1"
    echo "0 passed, 0 failed"
    exit 77
}
[[ -x $app ]] || skip "$app is not built (-Dexamples=true)"
py=
for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import aiohttp' 2>/dev/null; then py=$p; break; fi
done
[[ -n $py ]] || skip "no python3-aiohttp (apt-get install python3-aiohttp)"

work=$(mktemp -d)
server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$app" --port "$port" >"$work/chat.log" 2>&1 &
server=$!
for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/stats" && break
    sleep 0.1
done

out=$("$py" - "$port" "$server" <<'EOF'
import asyncio, json, os, signal, sys, time
import aiohttp

port = int(sys.argv[1])
base = "http://127.0.0.1:%d" % port
passed = failed = 0

def ok(name):
    global passed
    passed += 1
    print("ok", name, flush=True)

def fail(name, why):
    global failed
    failed += 1
    print("FAIL %s: %s" % (name, why), flush=True)

async def stats(s):
    async with s.get(base + "/stats") as r:
        return json.loads(await r.text())

async def wait_clients(s, n):
    for _ in range(100):
        if (await stats(s))["clients"] == n:
            return
        await asyncio.sleep(0.05)

async def chat_broadcasts_every_message_to_every_client(s):
    names = ["c%d" % i for i in range(6)]
    socks = [await s.ws_connect(base + "/ws?name=" + n) for n in names]
    await wait_clients(s, len(names))
    per = 30
    want = {n: ["%s: m%d" % (n, k) for k in range(per)] for n in names}

    async def reader(ws):
        got = {n: [] for n in names}
        total = 0
        while total < per * len(names):
            m = await ws.receive(timeout=10)
            assert m.type == aiohttp.WSMsgType.TEXT, m
            who = m.data.split(":", 1)[0]
            if who in got:
                got[who].append(m.data)
                total += 1
        return got

    readers = [asyncio.create_task(reader(ws)) for ws in socks]

    async def writer(ws, n):
        for k in range(per):
            await ws.send_str("m%d" % k)

    await asyncio.gather(*(writer(ws, n) for ws, n in zip(socks, names)))
    results = await asyncio.gather(*readers)
    for i, got in enumerate(results):
        for n in names:
            if got[n] != want[n]:
                raise AssertionError("client %d: from %s got %r" % (i, n, got[n][:5]))
    for ws in socks:
        await ws.close()
        assert ws.close_code == 1000, ws.close_code
    await wait_clients(s, 0)

async def chat_drops_a_slow_client_and_the_others_get_everything(s):
    before = (await stats(s))["dropped"]
    # The slow one: aiohttp stops reading its socket once 64 KiB wait in
    # its queue, and we never call receive() until the end.
    slow = await s.ws_connect(base + "/ws?name=slow", max_msg_size=0)
    fast = await s.ws_connect(base + "/ws?name=fast", max_msg_size=0)
    talk = await s.ws_connect(base + "/ws?name=talk", max_msg_size=0)
    await wait_clients(s, 3)
    n, size = 800, 32 * 1024
    payload = "x" * (size - 16)
    got = 0

    async def fast_reader():
        nonlocal got
        while got < n:
            m = await fast.receive(timeout=20)
            assert m.type == aiohttp.WSMsgType.TEXT, m
            if m.data.startswith("talk: "):
                got += 1

    async def talk_drain():   # the talker gets its own messages too
        while True:
            m = await talk.receive()
            if m.type != aiohttp.WSMsgType.TEXT:
                return

    r = asyncio.create_task(fast_reader())
    d = asyncio.create_task(talk_drain())
    t0 = time.monotonic()
    for k in range(n):
        # Paced by the fast reader (at most 64 messages ahead: this
        # process is one loop, and the server's queue per client holds
        # 256), the slow client not at all.
        while k - got > 64:
            await asyncio.sleep(0.001)
        await talk.send_str("%06d %s" % (k, payload))
    await asyncio.wait_for(r, 30)
    took = time.monotonic() - t0
    assert got == n, got
    st = await stats(s)
    assert st["dropped"] == before + 1, st
    # The slow client's socket has ended: a close frame (1008) if it could
    # still be sent, else a reset; it never gets all the messages.
    seen = 0
    end = None
    while True:
        m = await slow.receive(timeout=10)
        if m.type == aiohttp.WSMsgType.TEXT:
            seen += 1
            continue
        end = m
        break
    assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), end
    if end.type == aiohttp.WSMsgType.CLOSE:
        assert end.data == 1008, end
    assert seen < n, seen
    print("  %d x %d KiB to the fast client in %.2f s; the slow one got %d, then %s %s"
          % (n, size // 1024, took, seen, end.type.name, end.data), flush=True)
    await fast.close()
    await talk.close()
    await d
    await slow.close()

async def chat_serves_its_page(s):
    async with s.get(base + "/") as r:
        body = await r.text()
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html"), r.status
        assert "new WebSocket(" in body

async def chat_refuses_binary_with_1003(s):
    ws = await s.ws_connect(base + "/ws")
    await ws.send_bytes(b"\x00\x01")
    while True:
        m = await ws.receive(timeout=5)
        if m.type != aiohttp.WSMsgType.TEXT:
            break
    assert m.type == aiohttp.WSMsgType.CLOSE and m.data == 1003, m
    await ws.close()

async def chat_shutdown_closes_every_socket_with_1001(s):
    socks = [await s.ws_connect(base + "/ws?name=s%d" % i) for i in range(3)]
    await wait_clients(s, 3)
    os.kill(int(sys.argv[2]), signal.SIGTERM)
    for ws in socks:
        while True:
            m = await ws.receive(timeout=10)
            if m.type != aiohttp.WSMsgType.TEXT:
                break
        assert m.type == aiohttp.WSMsgType.CLOSE and m.data == 1001, m
        await ws.close()

async def main():
    async with aiohttp.ClientSession() as s:
        for t in (chat_serves_its_page, chat_broadcasts_every_message_to_every_client,
                  chat_refuses_binary_with_1003, chat_drops_a_slow_client_and_the_others_get_everything,
                  chat_shutdown_closes_every_socket_with_1001):   # the last one stops the server
            try:
                await asyncio.wait_for(t(s), 60)
                ok(t.__name__)
            except Exception as e:
                fail(t.__name__, repr(e))

asyncio.run(main())
print("result %d %d" % (passed, failed))
EOF
)
printf '%s\n' "$out" | grep -v '^result '
read -r _ passed failed <<<"$(printf '%s\n' "$out" | grep '^result ')"
passed=${passed:-0} failed=${failed:-1}
# chat_exits_cleanly_after_the_drain: SIGTERM with sockets open, status 0
# (under ASan: no leak either)
rc=1
for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$server" 2>/dev/null; then
        wait "$server"
        rc=$?
        break
    fi
    sleep 0.1
done
server=
if [[ $rc -eq 0 ]]; then
    echo "ok chat_exits_cleanly_after_the_drain"
    passed=$((passed + 1))
else
    echo "FAIL chat_exits_cleanly_after_the_drain: exit status $rc"
    failed=$((failed + 1))
fi
if ((failed)); then
    echo "--- chat log"
    cat "$work/chat.log"
fi
echo "$passed passed, $failed failed"
((failed == 0))
