# SPDX-License-Identifier: MIT
"""HTTP client throughput with aiohttp's ClientSession on uvloop, for
bench/client_bench.sh: the same loop as bench/client_bench.c.

    /usr/bin/python3 bench/py/client_aiohttp.py URL [CONCURRENCY=50] [SECONDS=5] [EXPECT_BODY]

C tasks share one ClientSession (a TCPConnector with room for C
connections) and each sends GET requests back to back over keep-alive,
reading each body whole. A 1 s warm-up, then SECONDS counted. Prints one
line:  requests N seconds S rps R errors E
"""
import asyncio
import sys
import time

import aiohttp
import uvloop


async def main(url, conc, seconds, expect):
    counts = {"ok": 0, "err": 0, "counting": False, "first": None}
    connector = aiohttp.TCPConnector(limit=conc)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker(until):
            while time.monotonic() < until:
                ok = False
                try:
                    async with session.get(url) as r:
                        body = await r.read()
                        ok = r.status == 200 and (expect is None or body == expect)
                except Exception as e:  # counted, as the C side does
                    counts["first"] = counts["first"] or repr(e)
                if counts["counting"]:
                    counts["ok" if ok else "err"] += 1

        async def run(dur):
            until = time.monotonic() + dur
            await asyncio.gather(*(worker(until) for _ in range(conc)))

        await run(1.0)
        counts["counting"] = True
        t0 = time.monotonic()
        await run(seconds)
        elapsed = time.monotonic() - t0
    print(f"requests {counts['ok']} seconds {elapsed:.3f} rps {counts['ok'] / elapsed:.1f} errors {counts['err']}",
          flush=True)
    if counts["err"]:
        print(f"client_aiohttp: first error: {counts['first']}", file=sys.stderr)
    return 1 if counts["err"] else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    url = sys.argv[1]
    conc = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
    expect = sys.argv[4].encode() if len(sys.argv) > 4 else None
    uvloop.install()
    sys.exit(asyncio.run(main(url, conc, seconds, expect)))
