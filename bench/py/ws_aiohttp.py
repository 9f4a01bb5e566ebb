# SPDX-License-Identifier: MIT
"""WebSocket echo on aiohttp (Debian's python3-aiohttp), uvloop when
installed: the peer of bench/ws_echo.c in bench/ws_bench.sh.

    python3 bench/py/ws_aiohttp.py --port N
"""
import argparse

from aiohttp import web

try:
    import uvloop
except ImportError:  # plain asyncio
    uvloop = None


async def echo(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == web.WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == web.WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    if uvloop:
        uvloop.install()
    app = web.Application()
    app.router.add_get("/echo", echo)
    app.router.add_get("/", lambda r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
