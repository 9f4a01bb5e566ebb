# SPDX-License-Identifier: MIT
"""What the bench/*.sh summaries share: reading one measured wrk run.

The scripts' Python summaries run from the repository's root and import it
with sys.path.insert(0, "bench"); bench/lib.sh writes the files it reads
(bench_wrk_measure: wrk's output and the server's CPU "TICKS HZ").
"""
import re
import statistics
from collections import namedtuple

# rps: requests/s, p99: ms (both None when wrk printed no result);
# us: the server's CPU time per request in µs (None without the CPU file
# or a completed request); text: wrk's whole output.
WrkRun = namedtuple("WrkRun", "rps p99 us text")


def ms(v):
    """A latency as wrk prints it ("812.00us", "1.20ms", "2.00s") in ms;
    None when v is not one."""
    m = re.match(r"([\d.]+)(us|ms|s)$", v or "")
    return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]] if m else None


def wrk_run(wrk_file, cpu_file):
    """The WrkRun of wrk's --latency output in wrk_file and the "TICKS HZ"
    of the server's CPU use in cpu_file; None when wrk_file is missing."""
    try:
        text = open(wrk_file).read()
    except OSError:
        return None
    a = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    b = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    n = re.search(r"^\s*(\d+) requests in", text, re.M)
    rps = p99 = us = None
    if a and b and ms(b[1]) is not None:
        rps, p99 = float(a[1]), ms(b[1])
    try:
        ticks, hz = open(cpu_file).read().split()
        if n and int(n[1]) > 0:
            us = int(ticks) / int(hz) * 1e6 / int(n[1])
    except (OSError, ValueError):
        pass
    return WrkRun(rps, p99, us, text)


def wrk_medians(runs):
    """(requests/s, p99 ms, server CPU µs per request): the medians over
    the WrkRuns in runs (None entries, runs without a result, left out);
    each None when no run had one."""
    def med(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None
    runs = [r for r in runs if r is not None]
    return med(r.rps for r in runs), med(r.p99 for r in runs), med(r.us for r in runs)
