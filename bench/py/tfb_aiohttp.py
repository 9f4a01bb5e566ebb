# SPDX-License-Identifier: MIT
"""The six TechEmpower test types on aiohttp + asyncpg (uvloop), for
bench/tfb.sh: the other Python peer of examples/tfb, written as
TechEmpower's own aiohttp entry is (asyncpg pool, prepared statements).

    DATABASE_URL=postgresql://... /usr/bin/python3 bench/py/tfb_aiohttp.py --port N [--pool N]
"""
import argparse
import json
import os
import random
from html import escape
from operator import itemgetter

import asyncpg
import uvloop
from aiohttp import web

READ_ROW = "SELECT id, randomnumber FROM world WHERE id = $1"
WRITE_ROWS = "UPDATE world SET randomnumber = $2 WHERE id = $1"
FORTUNES = "SELECT id, message FROM fortune"
HEADERS = {"Server": "aiohttp"}


def clamp(request):
    try:
        n = int(request.query.get("queries", "1"))
    except ValueError:
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


def as_json(value):
    return web.Response(body=json.dumps(value, separators=(",", ":")).encode(),
                        content_type="application/json", headers=HEADERS)


async def json_serialization(request):
    return as_json({"message": "Hello, World!"})


async def plaintext(request):
    return web.Response(body=b"Hello, World!", content_type="text/plain", headers=HEADERS)


async def single_query(request):
    i = random.randint(1, 10000)
    async with request.app["pool"].acquire() as conn:
        n = await conn.fetchval(READ_ROW, i, column=1)
    return as_json({"id": i, "randomNumber": n})


async def multiple_queries(request):
    ids = [random.randint(1, 10000) for _ in range(clamp(request))]
    worlds = []
    async with request.app["pool"].acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            worlds.append({"id": i, "randomNumber": await stmt.fetchval(i, column=1)})
    return as_json(worlds)


async def updates(request):
    ids = sorted(random.randint(1, 10000) for _ in range(clamp(request)))
    pairs = [(i, random.randint(1, 10000)) for i in ids]
    async with request.app["pool"].acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            await stmt.fetchval(i, column=1)
        await conn.executemany(WRITE_ROWS, pairs)
    return as_json([{"id": i, "randomNumber": n} for i, n in pairs])


async def fortunes(request):
    async with request.app["pool"].acquire() as conn:
        rows = [(r[0], r[1]) for r in await conn.fetch(FORTUNES)]
    rows.append((0, "Additional fortune added at request time."))
    rows.sort(key=itemgetter(1))
    body = ["<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>"]
    body += [f"<tr><td>{i}</td><td>{escape(m)}</td></tr>" for i, m in rows]
    body.append("</table></body></html>")
    return web.Response(text="".join(body), content_type="text/html", charset="utf-8", headers=HEADERS)


def make_app(pool_size):
    async def open_pool(app):
        app["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=pool_size, max_size=pool_size)

    async def close_pool(app):
        await app["pool"].close()

    app = web.Application()
    app.on_startup.append(open_pool)
    app.on_cleanup.append(close_pool)
    app.router.add_get("/json", json_serialization)
    app.router.add_get("/plaintext", plaintext)
    app.router.add_get("/db", single_query)
    app.router.add_get("/queries", multiple_queries)
    app.router.add_get("/updates", updates)
    app.router.add_get("/fortunes", fortunes)
    return app


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--pool", type=int, default=4)
    args = ap.parse_args()
    uvloop.install()
    print(f"tfb aiohttp (uvloop) on 127.0.0.1:{args.port}, pool {args.pool}", flush=True)
    web.run_app(make_app(args.pool), host="127.0.0.1", port=args.port, access_log=None, print=None)
