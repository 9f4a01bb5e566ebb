# SPDX-License-Identifier: MIT
"""The six TechEmpower test types on uvicorn + FastAPI + asyncpg (uvloop),
for bench/tfb.sh: the Python peer of examples/tfb, written as TechEmpower's
own FastAPI entry is (asyncpg pool, prepared statements, one worker).

    DATABASE_URL=postgresql://... /usr/bin/python3 bench/py/tfb_fastapi.py --port N [--pool N]
"""
import argparse
import contextlib
import inspect
import os
import random
from html import escape
from operator import itemgetter

import asyncpg
import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse, JSONResponse

READ_ROW = "SELECT id, randomnumber FROM world WHERE id = $1"
WRITE_ROWS = "UPDATE world SET randomnumber = $2 WHERE id = $1"
FORTUNES = "SELECT id, message FROM fortune"
POOL = 4


def clamp(queries):
    try:
        n = int(queries)
    except (TypeError, ValueError):
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=POOL, max_size=POOL)
    try:
        yield
    finally:
        await app.state.pool.close()


if "lifespan" in inspect.signature(FastAPI.__init__).parameters:
    app = FastAPI(lifespan=lifespan)
else:  # Debian 12's FastAPI 0.92: Starlette takes the same manager as an attribute
    app = FastAPI()
    app.router.lifespan_context = lifespan


def headers():
    return {"Server": "fastapi"}


@app.get("/json")
async def json_serialization():
    return JSONResponse({"message": "Hello, World!"}, headers=headers())


@app.get("/plaintext")
async def plaintext():
    return PlainTextResponse(b"Hello, World!", headers=headers())


@app.get("/db")
async def single_query():
    i = random.randint(1, 10000)
    async with app.state.pool.acquire() as conn:
        n = await conn.fetchval(READ_ROW, i, column=1)
    return JSONResponse({"id": i, "randomNumber": n}, headers=headers())


@app.get("/queries")
async def multiple_queries(queries: str = None):
    ids = [random.randint(1, 10000) for _ in range(clamp(queries))]
    worlds = []
    async with app.state.pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            worlds.append({"id": i, "randomNumber": await stmt.fetchval(i, column=1)})
    return JSONResponse(worlds, headers=headers())


@app.get("/updates")
async def updates(queries: str = None):
    ids = sorted(random.randint(1, 10000) for _ in range(clamp(queries)))
    updates = [(i, random.randint(1, 10000)) for i in ids]
    worlds = [{"id": i, "randomNumber": n} for i, n in updates]
    async with app.state.pool.acquire() as conn:
        stmt = await conn.prepare(READ_ROW)
        for i in ids:
            await stmt.fetchval(i, column=1)
        await conn.executemany(WRITE_ROWS, updates)
    return JSONResponse(worlds, headers=headers())


@app.get("/fortunes")
async def fortunes():
    async with app.state.pool.acquire() as conn:
        rows = await conn.fetch(FORTUNES)
    rows = [(r[0], r[1]) for r in rows]
    rows.append((0, "Additional fortune added at request time."))
    rows.sort(key=itemgetter(1))
    body = ["<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
            "<tr><th>id</th><th>message</th></tr>"]
    for i, m in rows:
        body.append(f"<tr><td>{i}</td><td>{escape(m)}</td></tr>")
    body.append("</table></body></html>")
    return HTMLResponse("".join(body), headers=headers())


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--pool", type=int, default=POOL)
    args = ap.parse_args()
    POOL = args.pool
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    print(f"tfb fastapi: uvicorn (uvloop, {http}) on 127.0.0.1:{args.port}, pool {POOL}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http=http,
                access_log=False, log_level="warning")
