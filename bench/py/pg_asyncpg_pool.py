# SPDX-License-Identifier: MIT
"""The PostgreSQL pool benchmark's asyncpg side, for bench/pg_bench.sh.

    /usr/bin/python3 bench/py/pg_asyncpg_pool.py [--url URL] [--tasks 64]
        [--conns 8] [--seconds 5] [--query 'SELECT * FROM users']

An asyncpg pool (min = max = --conns) on uvloop; --tasks tasks each run the
query in a loop (pool.fetch: acquire, run the prepared statement, fetch every
row, release) for --seconds after a 1 s warm-up. Prints, like awith's
build-bench/bench/pg_pool_bench:

    queries/s: N

URL defaults to $DATABASE_URL.
"""
import argparse
import asyncio
import os
import time

import asyncpg
import uvloop


async def main(args):
    pool = await asyncpg.create_pool(args.url, min_size=args.conns, max_size=args.conns)
    count = 0
    measuring = False
    stop_at = 0.0

    async def worker():
        nonlocal count
        while True:
            await pool.fetch(args.query)
            if measuring:
                if time.monotonic() >= stop_at:
                    return
                count += 1

    async with pool:
        rows = await pool.fetch(args.query)
        print(f"asyncpg {asyncpg.__version__} pool {args.conns} conns, {args.tasks} tasks, uvloop; "
              f"{args.query!r} -> {len(rows)} rows", flush=True)
        stop_at = time.monotonic() + 1.0 + args.seconds  # bounds the warm-up too
        tasks = [asyncio.create_task(worker()) for _ in range(args.tasks)]
        await asyncio.sleep(1.0)                         # warm-up
        count, measuring, t0 = 0, True, time.monotonic()
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - t0
    print(f"queries: {count} in {elapsed:.2f} s")
    print(f"queries/s: {count / elapsed:.0f}", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--query", default="SELECT * FROM users")
    args = ap.parse_args()
    if not args.url:
        ap.error("no --url and no DATABASE_URL in the environment")
    uvloop.install()
    asyncio.run(main(args))
