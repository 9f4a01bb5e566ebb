# SPDX-License-Identifier: MIT
"""Where a server's CPU goes per request, from a `perf record -g -e cpu-clock`
of it under load (bench/tfb.sh --profile): every sample is put in one class
and the classes are scaled to the server's measured CPU time per request.

    python3 bench/perf_split.py PERF_DATA US_PER_REQUEST [PERF_STAT_FILE REQUESTS]

prints one JSON object: {"samples": N, "us": {class: µs per request},
"hot": [[share %, symbol (dso)], ...] (the 12 hottest leaf symbols),
"stat": {event: count per request}} (stat only with a perf stat file).
bench/tfb.sh reads it for its profile table; it is not a test.

The classes (CLASSES below, in the table's order):
- kernel, split by what the kernel was doing, read from the sample's call
  chain: the first frame from the leaf up that names a known part decides
  (tcp_/ip_/skb/sock... = the network stack; io_uring's io_ and epoll's ep_
  functions = the event interface; entry/exit of a system call; the
  scheduler; memory). Frames that only say "interrupts were off here" are
  skipped: cpu-clock is an hrtimer and cannot fire while interrupts are
  disabled, so samples taken during such a section land on the frame that
  enables them again (pvm_irq_enable, *_irqrestore, __local_bh_enable_ip)
  and belong to its caller;
- the server's own code: the executable (awith is linked in statically:
  examples/tfb) or Kore and its module, or, for the Python peers, the
  interpreter (python3.11: the framework and the app run as its bytecode);
- its libraries, each named: libc, jansson, libpq, OpenSSL (the database
  connection), liburing; uvloop (with libuv), asyncpg, the HTTP parser
  extensions (httptools, aiohttp's), other Python extension modules.
"""
import json
import re
import subprocess
import sys
from collections import Counter

CLASSES = ["kernel: network stack", "kernel: io_uring / epoll", "kernel: syscall entry/exit",
           "kernel: scheduler, wakeups", "kernel: memory", "kernel: other",
           "own code", "libc", "jansson", "libpq", "OpenSSL", "liburing", "uvloop + libuv",
           "asyncpg", "HTTP parser ext.", "other Python ext.", "other"]

# Frames that only mark the end of an interrupts-off (or bh-off) section.
TRANSPARENT = re.compile(r"^(pvm_irq_enable|__raw_callee_save_pvm\w*|pvm_\w*|_raw_spin_unlock_irq\w*|"
                         r"_raw_spin_unlock_bh|__local_bh_enable_ip|local_bh_enable|do_softirq\w*|"
                         r"handle_softirqs|__do_softirq|irq_exit\w*|asm_\w+|sysvec_\w+|"
                         r"_raw_spin_lock\w*|_raw_spin_unlock|\[unknown\])$")
KERNEL_PARTS = [
    ("kernel: network stack", re.compile(
        r"^(__?)?(tcp|ip|ipv4|inet|sock|sk|skb|kfree_skb|consume_skb|napi|net|netif|dev|loopback|bbr|"
        r"lock_sock|release_sock|__release_sock|copy_skb|skb_copy|__skb|raw|udp|neigh|eth|validate_xmit|"
        r"sch|qdisc|fq|tcp4|__tcp|__inet|__sk|__sock|__ip|__netif|__napi|__dev|__sys_sendto|__sys_recvfrom|"
        r"__sys_sendmsg|__sys_recvmsg|___sys_sendmsg|___sys_recvmsg|sendmsg|recvmsg|process_backlog|"
        r"__x64_sys_(sendto|recvfrom|sendmsg|recvmsg|read|write|writev|readv|accept4?|shutdown|close)|"
        r"ksys_(read|write)|vfs_(read|write)|new_sync_(read|write)|do_iter_\w+|_copy_(to|from)_iter|"
        r"simple_copy_to_iter|__check_object_size)")),
    ("kernel: io_uring / epoll", re.compile(
        r"^(__?)?(io_|io_uring|__io_|ep_|do_epoll|__x64_sys_epoll|__do_sys_io_uring|epoll|"
        r"__x64_sys_io_uring|tctx_|task_work|fget|fput|__fget|__fput|eventfd|wake_up_poll|"
        r"__wake_up|__wake_up_common|__wake_up_sync_key|poll_|pollwake|llist_)")),
    ("kernel: scheduler, wakeups", re.compile(
        r"^(__?)?(schedule|__schedule|try_to_wake_up|ttwu|wake_up_process|pick_next|enqueue|dequeue|"
        r"update_|finish_task_switch|context_switch|switch_mm|__switch_to|psi_|sched_|select_task_rq|"
        r"set_next|put_prev|check_preempt|resched|hrtimer|tick_|rcu_|native_sched|pvclock|kvm_clock|"
        r"ktime_|read_tsc|clockevents|lapic|cpuidle|do_idle|default_idle|smp_call|"
        r"__smp_call|flush_smp|generic_smp)")),
    ("kernel: memory", re.compile(
        r"^(__?)?(kmem_|kmalloc|__kmalloc|kfree|slab|__slab|___slab|page_|__page|alloc_pages|"
        r"__alloc_pages|free_pages|free_unref|get_page|put_page|folio|__folio|mem_cgroup|__mem_cgroup|"
        r"memcg|obj_cgroup|refill_obj|mod_memcg|handle_mm_fault|do_user_addr_fault|exc_page_fault|"
        r"do_anonymous|__handle_mm|clear_page|memset|memcpy|__memcpy|__memset|rep_movs)")),
    ("kernel: syscall entry/exit", re.compile(
        r"^(__?)?(entry_SYSCALL|do_syscall|syscall_|x64_sys_call|exit_to_user|__x64_sys|"
        r"irqentry|syscall_exit|arch_exit|fpregs|restore_fpregs|switch_fpu|__rseq|rseq)")),
]


def lib_class(dso, exe_own):
    d = dso.rsplit("/", 1)[-1]
    if dso == "[kernel.kallsyms]" or d.startswith("[kernel"):
        return None
    if dso in exe_own or d in exe_own:
        return "own code"
    if d.startswith("python3") or d.startswith("libpython3"):
        return "own code"
    if d.startswith("libc.so") or d.startswith("ld-linux") or d == "[vdso]" or d.startswith("libm.so"):
        return "libc"
    if "jansson" in d:
        return "jansson"
    if d.startswith("libpq"):
        return "libpq"
    if d.startswith("libssl") or d.startswith("libcrypto"):
        return "OpenSSL"
    if d.startswith("liburing"):
        return "liburing"
    if "uvloop" in dso or d.startswith("libuv") or (d.startswith("loop.cpython")):
        return "uvloop + libuv"
    if "asyncpg" in dso:
        return "asyncpg"
    if "httptools" in dso or d.startswith("libhttp_parser") or "_http_parser" in d or "llhttp" in d \
            or (d.startswith("parser.cpython")):
        return "HTTP parser ext."
    if ".cpython-" in d or "python3" in dso:
        return "other Python ext."
    if "kore" in d:
        return "own code"
    return "other"


def kernel_class(frames):
    """frames: the kernel symbols of one sample, leaf first."""
    for sym in frames:
        if TRANSPARENT.match(sym):
            continue
        for name, rx in KERNEL_PARTS:
            if rx.match(sym):
                return name
    return "kernel: other"


def samples(perf_data):
    out = subprocess.run(["perf", "script", "-i", perf_data, "-F", "ip,sym,dso"], capture_output=True,
                         text=True, errors="replace").stdout
    frame = re.compile(r"^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")
    cur = []
    for line in out.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur = []
            continue
        m = frame.match(line)
        if m:
            cur.append((m[1], m[2]))
    if cur:
        yield cur


def split(perf_data, exe_own):
    n = 0
    counts = Counter()
    leaves = Counter()
    for chain in samples(perf_data):
        n += 1
        sym, dso = chain[0]
        leaves[f"{sym} ({dso.rsplit('/', 1)[-1]})"] += 1
        c = lib_class(dso, exe_own)
        if c is None:
            c = kernel_class([s for s, d in chain if d == "[kernel.kallsyms]"])
        counts[c] += 1
    return n, counts, leaves


def stat(path, requests):
    out = {}
    try:
        for line in open(path):
            m = re.match(r"\s*([\d,]+)\s+([\w:-]+)", line)
            if m and requests:
                out[m[2]] = int(m[1].replace(",", "")) / requests
    except OSError:
        pass
    return out


def main():
    perf_data, us = sys.argv[1], float(sys.argv[2])
    stat_file = sys.argv[3] if len(sys.argv) > 3 else None
    requests = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    exe_own = set(sys.argv[5].split(",")) if len(sys.argv) > 5 and sys.argv[5] else set()
    n, counts, leaves = split(perf_data, exe_own)
    res = {"samples": n, "us": {c: us * counts[c] / n if n else 0.0 for c in CLASSES},
           "hot": [[100.0 * k / n, s] for s, k in leaves.most_common(12)] if n else []}
    if stat_file:
        res["stat"] = stat(stat_file, requests)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
