# SPDX-License-Identifier: MIT
"""GET /users from PostgreSQL on uvicorn + FastAPI + asyncpg (uvloop), for
bench/pg_bench.sh: the Python peer of awith's examples/users_api.

    DATABASE_URL=postgresql://... /usr/bin/python3 bench/py/users_fastapi_asyncpg.py --port N

The lifespan opens an asyncpg pool of 8 connections (closed on shutdown);
GET /users answers every row of `users` as a JSON list of objects
{"id", "name", "email", "created_at"} with created_at in ISO 8601 (FastAPI's
own encoding of the datetime). One worker, no access log; uvicorn uses
httptools when Debian's python3-httptools is installed, else h11.
"""
import argparse
import contextlib
import inspect
import os

import asyncpg
import uvicorn
from fastapi import FastAPI, Request

POOL_SIZE = 8


@contextlib.asynccontextmanager
async def lifespan(app):
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"],
                                               min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        yield
    finally:
        await app.state.pool.close()


# FastAPI takes lifespan= from 0.93 on; Debian 12 has 0.92, whose Starlette
# router takes the same context manager as an attribute.
if "lifespan" in inspect.signature(FastAPI.__init__).parameters:
    app = FastAPI(lifespan=lifespan)
else:
    app = FastAPI()
    app.router.lifespan_context = lifespan


@app.get("/users")
async def users(request: Request):
    rows = await request.app.state.pool.fetch("SELECT * FROM users")
    return [dict(r) for r in rows]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    print(f"fastapi+asyncpg: uvicorn (loop uvloop, http {http}) on 127.0.0.1:{args.port}, "
          f"pool {POOL_SIZE}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http=http,
                access_log=False, log_level="warning")
