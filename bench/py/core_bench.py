#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Python side of awith's core micro-benchmark (asyncio or uvloop).

Run it with Debian's interpreter (python3.11 with python3-uvloop 0.17):

    /usr/bin/python3 bench/py/core_bench.py --loop asyncio|uvloop [--quick] [--case NAME]

Output: one line per case, ``<case> <value> <unit>``, where unit is ``ns/op``
(time per operation) or ``B/task`` (resident memory per idle task).  The C side
(awith core) implements the same case names with the same semantics, so the two
outputs can be joined line by line into ratios.

Cases
-----
switch            Context switch.  Two tasks ping-pong: each runs
                  ``await asyncio.sleep(0)`` n times, so they alternate.
                  Value = total time / (number of sleep(0) calls, i.e. 2n):
                  the cost of one task suspending and the other resuming.
with_class        ``async with CM(): pass`` where CM is a class whose
                  ``__aenter__``/``__aexit__`` are ``async def`` returning at
                  once (self / None).  The manager is constructed in the
                  ``async with`` expression, as Python code is written and as a
                  C manager is initialised in the caller's frame.  Per block.
with_gen          ``async with gen(): pass`` where ``gen`` is an
                  ``@contextlib.asynccontextmanager`` that only yields a value.
                  Per block.
exitstack_entry   ``contextlib.AsyncExitStack``: ``enter_async_context(CM())``
                  100 times, then ``aclose()`` (exits run LIFO).  Value = time /
                  number of entries, i.e. one entry plus its exit.
spawn_join        ``t = asyncio.create_task(nop()); await t`` where ``nop``
                  returns immediately.  Per spawn + join.
lock_uncontended  ``async with lock: pass`` on one ``asyncio.Lock()`` that no one
                  else holds.  Per block.
timeout_block     ``async with asyncio.timeout(10): pass``.  Per block (the
                  deadline is armed on entry and disarmed on exit).
rss_idle_100k     Memory per idle task: RSS (``/proc/self/statm``) is read
rss_idle_1m       before spawning N tasks that each wait on one shared
                  ``asyncio.Event`` (never set), and again after the spawner has
                  yielded until every task has started and is suspended.
                  Value = (after - before) / N in bytes, as ``B/task`` (the list
                  that holds the task references, 8 B/task, is included).  Then
                  all tasks are cancelled and awaited.  N = 100,000 / 1,000,000
                  (10,000 / 100,000 with --quick; the names stay the same).
                  Each rss case runs in a fresh subprocess of this script
                  (``--case NAME``) so earlier cases cannot skew its RSS.
                  The cyclic GC is off during these cases: every object is
                  live, so it would free nothing and only add run time.

Method
------
Each timing case runs on a fresh event loop (``asyncio.Runner`` with the chosen
loop factory: the default selector loop for ``asyncio``, ``uvloop.new_event_loop``
for ``uvloop``).  The case is first calibrated (iteration count doubled until a
run takes >= 1/10 of the target; this doubles as a warm-up), then the iteration
count is set for ~0.3 s per run (~0.05 s with --quick), and the case is run 3
times; the reported value is the minimum (best) ns/op of the 3 runs.  Timing
uses ``time.perf_counter_ns()`` inside the loop, around the measured code only.
The garbage collector stays enabled, as in a real program.
"""

import argparse
import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import time

RUNS = 3
TARGET_S = 0.3
QUICK_TARGET_S = 0.05


# --------------------------------------------------------------------------
# Managers used by the cases


class CM:
    """Class-style async context manager that does nothing."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        return None


@contextlib.asynccontextmanager
async def gen_cm():
    """Generator-style async context manager that only yields a value."""
    yield 1


async def nop():
    return None


# --------------------------------------------------------------------------
# Timing cases: each is `async def case(n) -> (elapsed_ns, ops)`.


async def case_switch(n):
    async def pinger():
        for _ in range(n):
            await asyncio.sleep(0)

    t0 = time.perf_counter_ns()
    a = asyncio.create_task(pinger())
    b = asyncio.create_task(pinger())
    await a
    await b
    return time.perf_counter_ns() - t0, 2 * n


async def case_with_class(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with CM():
            pass
    return time.perf_counter_ns() - t0, n


async def case_with_gen(n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with gen_cm():
            pass
    return time.perf_counter_ns() - t0, n


EXITSTACK_DEPTH = 100


async def case_exitstack_entry(n):
    # n counts stacks; each stack has EXITSTACK_DEPTH entries.
    t0 = time.perf_counter_ns()
    for _ in range(n):
        stack = contextlib.AsyncExitStack()
        for _ in range(EXITSTACK_DEPTH):
            await stack.enter_async_context(CM())
        await stack.aclose()
    return time.perf_counter_ns() - t0, n * EXITSTACK_DEPTH


async def case_spawn_join(n):
    create_task = asyncio.create_task
    t0 = time.perf_counter_ns()
    for _ in range(n):
        t = create_task(nop())
        await t
    return time.perf_counter_ns() - t0, n


async def case_lock_uncontended(n):
    lock = asyncio.Lock()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with lock:
            pass
    return time.perf_counter_ns() - t0, n


async def case_timeout_block(n):
    timeout = asyncio.timeout
    t0 = time.perf_counter_ns()
    for _ in range(n):
        async with timeout(10):
            pass
    return time.perf_counter_ns() - t0, n


TIMING_CASES = {
    "switch": case_switch,
    "with_class": case_with_class,
    "with_gen": case_with_gen,
    "exitstack_entry": case_exitstack_entry,
    "spawn_join": case_spawn_join,
    "lock_uncontended": case_lock_uncontended,
    "timeout_block": case_timeout_block,
}


def run_timing(runner, fn, target_s):
    """Calibrate, then return the best ns/op of RUNS runs of ~target_s each."""
    n = 1
    while True:
        elapsed, ops = runner.run(fn(n))
        if elapsed >= target_s * 1e9 / 10 or n >= 1 << 30:
            break
        n *= 2
    n = max(1, int(n * target_s * 1e9 / max(elapsed, 1)))
    best = None
    for _ in range(RUNS):
        elapsed, ops = runner.run(fn(n))
        per_op = elapsed / ops
        best = per_op if best is None else min(best, per_op)
    return best


# --------------------------------------------------------------------------
# Memory cases


RSS_CASES = {"rss_idle_100k": 100_000, "rss_idle_1m": 1_000_000}
RSS_QUICK = {"rss_idle_100k": 10_000, "rss_idle_1m": 100_000}
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


async def case_rss_idle(n):
    event = asyncio.Event()
    started = finished = 0

    async def idle():
        nonlocal started, finished
        started += 1
        try:
            await event.wait()
        finally:
            finished += 1

    # Every object made here stays alive until the end, so the cyclic GC
    # frees nothing; its full passes over ~10^7 objects would only add time.
    gc.collect()
    gc.disable()
    try:
        before = rss_bytes()
        tasks = [asyncio.create_task(idle()) for _ in range(n)]
        while started < n:          # one yield normally suffices
            await asyncio.sleep(0)
        after = rss_bytes()

        for t in tasks:
            t.cancel()
        while finished < n:         # each task runs once more to unwind
            await asyncio.sleep(0)
        assert all(t.cancelled() for t in tasks)
        del tasks
    finally:
        gc.enable()
    return (after - before) / n


def run_rss_in_process(runner, name, quick):
    n = (RSS_QUICK if quick else RSS_CASES)[name]
    return runner.run(case_rss_idle(n))


def run_rss_subprocess(name, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--loop", args.loop,
           "--case", name]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


# --------------------------------------------------------------------------


def loop_factory(kind):
    if kind == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def main():
    all_cases = list(TIMING_CASES) + list(RSS_CASES)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    p.add_argument("--quick", action="store_true",
                   help="shorter runs (~0.05 s) and smaller rss task counts")
    p.add_argument("--case", choices=all_cases, action="append",
                   help="run only this case (repeatable)")
    args = p.parse_args()

    cases = args.case or all_cases
    target_s = QUICK_TARGET_S if args.quick else TARGET_S
    factory = loop_factory(args.loop)
    # A lone case runs in this process (it is fresh); otherwise each rss case
    # gets its own subprocess so its RSS is not disturbed by the other cases.
    alone = len(cases) == 1

    for name in cases:
        if name in RSS_CASES:
            if alone:
                with asyncio.Runner(loop_factory=factory) as runner:
                    value = run_rss_in_process(runner, name, args.quick)
                print(f"{name} {value:.0f} B/task", flush=True)
            else:
                print(run_rss_subprocess(name, args), flush=True)
        else:
            with asyncio.Runner(loop_factory=factory) as runner:
                value = run_timing(runner, TIMING_CASES[name], target_s)
            print(f"{name} {value:.1f} ns/op", flush=True)


if __name__ == "__main__":
    main()
