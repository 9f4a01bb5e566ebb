# SPDX-License-Identifier: MIT
"""GET /users from PostgreSQL on aiohttp's server + asyncpg (uvloop), for
bench/pg_bench.sh: the Python peer of awith's examples/users_api.

    DATABASE_URL=postgresql://... /usr/bin/python3 bench/py/users_aiohttp_asyncpg.py --port N

A cleanup context opens an asyncpg pool of 8 connections (closed on
shutdown); GET /users answers every row of `users` as a JSON list of objects
{"id", "name", "email", "created_at"} with created_at in ISO 8601. One
process, no access log.
"""
import argparse
import functools
import json
import os

import asyncpg
import uvloop
from aiohttp import web

POOL_SIZE = 8


def _default(v):
    return v.isoformat()     # datetime (timestamptz) -> ISO 8601


dumps = functools.partial(json.dumps, separators=(",", ":"), default=_default)


async def pool_ctx(app):
    app["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"],
                                            min_size=POOL_SIZE, max_size=POOL_SIZE)
    yield
    await app["pool"].close()


async def users(request):
    rows = await request.app["pool"].fetch("SELECT * FROM users")
    return web.json_response([dict(r) for r in rows], dumps=dumps)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    uvloop.install()
    app = web.Application()
    app.cleanup_ctx.append(pool_ctx)
    app.router.add_get("/users", users)
    print(f"aiohttp+asyncpg: web.run_app (loop uvloop) on 127.0.0.1:{args.port}, pool {POOL_SIZE}",
          flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
