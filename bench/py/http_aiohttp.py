# SPDX-License-Identifier: MIT
"""The hello route on aiohttp's own server with uvloop, for bench/http_bench.sh.

    /usr/bin/python3 bench/py/http_aiohttp.py --port N

GET / answers {"message":"Hello, World!"}; one process, no access log.
"""
import argparse
import functools
import json

import uvloop
from aiohttp import web


compact = functools.partial(json.dumps, separators=(",", ":"))  # the same bytes as the others


async def root(request):
    return web.json_response({"message": "Hello, World!"}, dumps=compact)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    uvloop.install()
    app = web.Application()
    app.router.add_get("/", root)
    print(f"aiohttp: web.run_app (loop uvloop) on 127.0.0.1:{args.port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
