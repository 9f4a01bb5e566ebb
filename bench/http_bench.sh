#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTP hello-world over loopback: awith's examples/hello_server against
# nginx-light serving the same JSON as a static file, h2o (the same file),
# FastAPI on uvicorn with uvloop, and aiohttp with uvloop, measured with wrk
# in one run on this machine.
#
#   bash bench/http_bench.sh            # 3 rounds of 5 s per server (~2 min)
#   bash bench/http_bench.sh --quick    # 1 round of 2 s per server
#   bash bench/http_bench.sh --metrics  # only hello_server with metrics off
#                                       # and on (--metrics /metrics), 5
#                                       # rounds, interleaved, then the
#                                       # instructions per request of each
#                                       # under callgrind (load-independent)
#   bash bench/http_bench.sh --middleware # the same for hello_server without
#                                       # and with the middleware stack
#                                       # (--middleware: request id +
#                                       # Server-Timing + gzip)
#   bash bench/http_bench.sh --backends # only hello_server on the epoll and
#                                       # the io_uring loop backend
#                                       # (AWITH_BACKEND), GET / and GET /
#                                       # pipelined 16 deep (wrk -s
#                                       # bench/tfb_pipeline.lua), 5 rounds,
#                                       # interleaved; target: io_uring
#                                       # <= 0.75x epoll's CPU per request;
#                                       # also io_uring with its sends made
#                                       # by send(2) (AWITH_URING_SEND=0)
#   bash bench/http_bench.sh --accept   # only hello_server, a new connection
#                                       # per request (wrk -H 'Connection:
#                                       # close'): epoll, io_uring with its
#                                       # multishot accept, and io_uring
#                                       # with readiness + accept4
#                                       # (AWITH_URING_ACCEPT=0), 5 rounds,
#                                       # interleaved: CPU per connection
#   bash bench/http_bench.sh --recv     # only hello_server on io_uring with
#                                       # its two receive modes
#                                       # (AWITH_URING_RECV=single: one
#                                       # IORING_OP_RECV per wait;
#                                       # =multishot: a multishot receive
#                                       # into the loop's provided buffer
#                                       # ring), GET / and pipelined 16 deep,
#                                       # 7 rounds, interleaved; prints the
#                                       # multishot ÷ single ratios of server
#                                       # CPU per request (median of the
#                                       # per-round ratios) and the server's
#                                       # RSS with RECV_IDLE (default 2000)
#                                       # idle keep-alive connections
#   LWAN_SRC=/path/to/lwan bash bench/http_bench.sh --lwan
#                                       # only hello_server on epoll and on
#                                       # io_uring against lwan, 5 rounds,
#                                       # interleaved (--lwan --quick: 1
#                                       # round of 2 s); target: io_uring
#                                       # below lwan's CPU per request
#
# lwan (an optional peer): lwan is not packaged in Debian and a fresh
# machine has no internet, so lwan is measured only where its source or a
# built peer is given, by environment variables:
#   LWAN_SRC=DIR    an lwan source tree (a checkout or `git archive` of
#                   github.com/lpereira/lwan); the script builds it with
#                   Debian's cmake and zlib, lwan's own release build
#                   (-DCMAKE_BUILD_TYPE=Release), in LWAN_BUILD (default
#                   build-bench/lwan), then compiles bench/lwan_hello.c
#                   against its liblwan.a with the compile and link line of
#                   lwan's own hello sample, giving LWAN_BUILD/lwan_hello;
#                   a later run reuses both builds when they are current;
#   LWAN_BIN=FILE   an lwan_hello already built that way (takes the port as
#                   its one argument); used as is, LWAN_SRC not needed.
# With either, lwan joins the default run and --backends; without, those
# runs are as before and --lwan exits 2. bench/lwan_hello.c answers GET /
# with the same 27-byte JSON from a handler (lwan's own hello sample's way),
# one worker thread, keep-alive, pinned to CPU 0 like every server.
#
# Steps:
#   1. installs missing Debian packages (scripts/test.sh's list plus wrk,
#      nginx-light, h2o, python3-fastapi, python3-uvicorn, python3-aiohttp,
#      python3-uvloop, python3-httptools);
#   2. configures and builds the release build in build-bench/ (as
#      bench/echo_bench.sh does, examples on: hello_server is one);
#   3. for each round, for each server in turn: start it on a free port on
#      127.0.0.1 with one worker, check that GET / answers
#      {"message":"Hello, World!"}, warm up 1 s, run wrk (keep-alive, 1
#      thread, 64 connections, --latency, bounded by -d) and stop it;
#   4. prints requests/s, p99 latency and the server's CPU time per request
#      (user + system of the server's processes, from /proc around the wrk
#      run) per server, each the median over the rounds, with awith's ratios,
#      and the targets: >= 1.0x nginx requests/s with p99 no worse than
#      nginx's, >= 8x uvicorn+FastAPI; the table is also written as markdown
#      to build-bench/http_bench.md. "awith, metrics on" is the same server
#      with aw_app_metrics on (every request counted by route, method and
#      status and timed into the histogram; nobody scrapes during the run):
#      the target is <= 3 % fewer requests/s than with metrics off.
#      "awith, middleware stack" is hello_server --middleware (request id,
#      Server-Timing, gzip wrap every request; the 27-byte body stays
#      under gzip's minimum): the table shows what the stack costs per
#      request (server CPU µs/request, with vs without).
#
# On a machine with 2 or more cores the server under test is pinned to CPU 0
# and wrk to CPU 1 (taskset), so each has a core of its own; the markdown
# says so. When wrk's core is the bottleneck (a fast server leaves its own
# core partly idle), requests/s understates the server: the CPU per request
# column is the server's own cost either way. Only 127.0.0.1 is used.
#
# Exit status: 0 when every server ran (targets met or not), 1 if the build,
# a server or a wrk run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(wrk nginx-light h2o python3-fastapi python3-uvicorn python3-aiohttp python3-uvloop python3-httptools)

PY=/usr/bin/python3      # Debian's interpreter: the one the python3-* packages are for
BUILD=build-bench
CONNS=64
rounds=3 seconds=5 metrics_only=0 backends_only=0 lwan_only=0 accept_only=0 recv_only=0 variant=awith_metrics
for arg in "$@"; do
    case $arg in
        --quick) rounds=1 seconds=2 ;;
        --metrics) metrics_only=1 rounds=5 variant=awith_metrics ;;
        --middleware) metrics_only=1 rounds=5 variant=awith_mw ;;
        --backends) backends_only=1 rounds=5 ;;
        --lwan) lwan_only=1 rounds=5 ;;
        --accept) accept_only=1 rounds=5 ;;
        --recv) recv_only=1 rounds=${RECV_ROUNDS:-7} ;;
        -h | --help) sed -n '2,72p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench/http_bench.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

# lwan: needs cmake to build from LWAN_SRC (a bench-only dependency, so not
# in scripts/test.sh's list); --lwan without it cannot run.
[[ -n ${LWAN_SRC:-} && -z ${LWAN_BIN:-} ]] && PACKAGES+=(cmake)
if ((lwan_only)) && [[ -z ${LWAN_SRC:-}${LWAN_BIN:-} ]]; then
    echo "bench/http_bench.sh: --lwan needs LWAN_SRC (an lwan source tree) or LWAN_BIN (try --help)" >&2
    exit 2
fi

# lwan_build: set LWAN to the lwan peer to run: LWAN_BIN as given, or
# bench/lwan_hello.c built from LWAN_SRC (see the header) in LWAN_BUILD:
# lwan's release build (its `hello` sample target, which builds liblwan.a),
# then our file compiled with the hello sample's own flags (flags.make) and
# linked with its own link line (link.txt), so it is built exactly as lwan
# builds its samples. A step whose output is newer than its input is not
# redone. LWAN stays empty when neither variable is set. Returns 1 (with
# the log's tail) when the build fails.
LWAN=
lwan_build() {
    if [[ -n ${LWAN_BIN:-} ]]; then
        [[ -x $LWAN_BIN ]] || { echo "LWAN_BIN=$LWAN_BIN is not an executable" >&2; return 1; }
        LWAN=$(realpath "$LWAN_BIN")
        return 0
    fi
    [[ -n ${LWAN_SRC:-} ]] || return 0
    local src out sample compile link
    src=$(realpath "$LWAN_SRC")
    [[ -f $src/CMakeLists.txt && -f $src/src/lib/lwan.h ]] ||
        { echo "LWAN_SRC=$LWAN_SRC is not an lwan source tree" >&2; return 1; }
    out=$(realpath -m "${LWAN_BUILD:-$BUILD/lwan}")
    sample=$out/src/samples/hello/CMakeFiles/hello.dir
    mkdir -p "$out"
    echo "== build lwan from $src (release) in $out"
    if [[ ! -f $out/CMakeCache.txt ]]; then
        cmake -S "$src" -B "$out" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 ||
            { tail -n 20 "$out/cmake.log"; return 1; }
    fi
    make -C "$out" -j"$(nproc)" hello >"$out/make.log" 2>&1 || { tail -n 20 "$out/make.log"; return 1; }
    if [[ ! $out/lwan_hello -nt bench/lwan_hello.c || ! $out/lwan_hello -nt $out/src/lib/liblwan.a ]]; then
        compile="cc $(sed -n 's/^C_\(DEFINES\|INCLUDES\|FLAGS\) = //p' "$sample/flags.make" | tr '\n' ' ')"
        compile+=" -c $(pwd)/bench/lwan_hello.c -o $out/lwan_hello.o"
        link=$(<"$sample/link.txt")
        link=${link/CMakeFiles\/hello.dir\/main.c.o -o hello /$out/lwan_hello.o -o $out/lwan_hello }
        [[ $link == *"-o $out/lwan_hello "* ]] ||
            { echo "lwan's hello link line has an unexpected form: $sample/link.txt" >&2; return 1; }
        # The link line names liblwan.a relative to the sample's directory.
        (cd "$out/src/samples/hello" && eval "$compile" && eval "$link") >"$out/lwan_hello.log" 2>&1 ||
            { tail -n 20 "$out/lwan_hello.log"; return 1; }
    fi
    LWAN=$out/lwan_hello
}

bench_build
lwan_build || { echo "LWAN BUILD FAILED" >&2; exit 1; }
bench_results http-results
bench_hello_www
bench_pin pin_server pin_wrk "server on CPU 0, wrk on CPU 1 (taskset)"

# The static-file peer's config, written for the port (sets CMD).
nginx_conf() { # PORT DIR
    bench_nginx_conf "$2" <<EOF
  keepalive_timeout 65;
  open_file_cache max=16;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$1;
    root $WWW;
    location = / { default_type application/json; try_files /index.json =404; }
  }
EOF
}

# awith runs on each loop backend (aw_config.backend, AWITH_BACKEND); the
# "_pipe" names are the same servers under wrk's pipelining script.
SERVERS=(awith awith_uring awith_metrics awith_mw nginx h2o fastapi aiohttp)
((metrics_only)) && SERVERS=(awith "$variant")
((backends_only)) && SERVERS=(awith awith_uring awith_usend0 awith_pipe awith_uring_pipe awith_usend0_pipe)
((lwan_only)) && SERVERS=(awith awith_uring)
((accept_only)) && SERVERS=(awith_close awith_uring_close awith_acc0_close)
((recv_only)) && SERVERS=(awith_rsingle awith_rmulti awith_rsingle_pipe awith_rmulti_pipe)
[[ -n $LWAN ]] && ((!metrics_only && !accept_only && !recv_only)) && SERVERS+=(lwan)
declare -A LABEL=(
    [awith]="awith (examples/hello_server)"
    [awith_uring]="awith on io_uring"
    [awith_pipe]="awith, pipelined 16"
    [awith_uring_pipe]="awith on io_uring, pipelined 16"
    [awith_usend0]="awith on io_uring, send(2)"
    [awith_usend0_pipe]="awith on io_uring, send(2), pipelined"
    [awith_rsingle]="io_uring, single RECV"
    [awith_rmulti]="io_uring, multishot+buffer ring"
    [awith_rsingle_pipe]="io_uring, single RECV, pipelined"
    [awith_rmulti_pipe]="io_uring, multishot, pipelined"
    [awith_metrics]="awith, metrics on"
    [awith_mw]="awith, middleware stack"
    [nginx]="nginx-light (static file)"
    [h2o]="h2o (static file)"
    [fastapi]="uvicorn+FastAPI (uvloop)"
    [aiohttp]="aiohttp (uvloop)"
    [lwan]="lwan (bench/lwan_hello.c)"
    [awith_close]="epoll, Connection: close"
    [awith_uring_close]="io_uring multishot accept, close"
    [awith_acc0_close]="io_uring accept4, close"
)

server_cmd() { # NAME PORT DIR -> sets CMD
    local name=$1 port=$2 dir=$3
    case $name in
        awith_close) CMD=(env AWITH_BACKEND=epoll "$BUILD/examples/hello_server" --port "$port") ;;
        awith_uring_close) CMD=(env AWITH_BACKEND=uring "$BUILD/examples/hello_server" --port "$port") ;;
        awith_acc0_close) CMD=(env AWITH_BACKEND=uring AWITH_URING_ACCEPT=0 "$BUILD/examples/hello_server" --port "$port") ;;
        awith | awith_pipe) CMD=(env AWITH_BACKEND=epoll "$BUILD/examples/hello_server" --port "$port") ;;
        awith_uring | awith_uring_pipe) CMD=(env AWITH_BACKEND=uring "$BUILD/examples/hello_server" --port "$port") ;;
        awith_usend0 | awith_usend0_pipe) CMD=(env AWITH_BACKEND=uring AWITH_URING_SEND=0 "$BUILD/examples/hello_server" --port "$port") ;;
        awith_rsingle | awith_rsingle_pipe) CMD=(env AWITH_BACKEND=uring AWITH_URING_RECV=single "$BUILD/examples/hello_server" --port "$port") ;;
        awith_rmulti | awith_rmulti_pipe) CMD=(env AWITH_BACKEND=uring AWITH_URING_RECV=multishot "$BUILD/examples/hello_server" --port "$port") ;;
        awith_metrics) CMD=(env AWITH_BACKEND=epoll "$BUILD/examples/hello_server" --port "$port" --metrics /metrics) ;;
        awith_mw) CMD=(env AWITH_BACKEND=epoll "$BUILD/examples/hello_server" --port "$port" --middleware) ;;
        nginx) nginx_conf "$port" "$dir" ;;
        h2o) bench_h2o_conf "$dir" "$port" "http1-upgrade-to-http2: OFF" ;;
        fastapi) CMD=("$PY" bench/py/http_fastapi.py --port "$port") ;;
        aiohttp) CMD=("$PY" bench/py/http_aiohttp.py --port "$port") ;;
        lwan) CMD=("$LWAN" "$port") ;;
    esac
}

failed=()
# run NAME ROUND: start, check, warm up, measure, stop.
run() {
    local name=$1 round=$2 dir="$results/$1" port pid
    bench_start "$name" "$dir"
    if ! bench_until bench_answers "http://127.0.0.1:$port/" "$BODY"; then
        bench_server_failed "$pid" "$dir/server.log" "$name: no (or a wrong) answer on port $port"
        failed+=("$name")
        return 1
    fi
    local args=(-t1 -c"$CONNS" "http://127.0.0.1:$port/")
    [[ $name == *_pipe ]] && args=(-t1 -c"$CONNS" -s bench/tfb_pipeline.lua "http://127.0.0.1:$port/" -- 16)
    [[ $name == *_close ]] && args=(-t1 -c"$CONNS" -H "Connection: close" "http://127.0.0.1:$port/")
    bench_wrk_warmup "${args[@]}"
    if ! bench_wrk_measure "$pid" "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" "${args[@]}"; then
        echo "== $name: wrk failed"
        failed+=("$name")
    fi
    bench_stop "$pid"
    bench_wrk_report "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" "$(printf '%-32s' "${LABEL[$name]}")"
}

echo "== $rounds round(s) of ${seconds} s per server, wrk -t1 -c$CONNS, $pinned"
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    for name in "${SERVERS[@]}"; do
        run "$name" "$r"
    done
done

"$PY" - "$results" "$rounds" "$seconds" "$CONNS" "$pinned" "$(nproc)" "${SERVERS[@]}" <<'EOF'
import statistics, sys
sys.path.insert(0, "bench")
from wrk_runs import wrk_medians, wrk_run
results, rounds, seconds, conns, pinned, ncpu = sys.argv[1:7]
servers = sys.argv[7:]
labels = {"awith": "awith (examples/hello_server)", "awith_uring": "awith on io_uring",
          "awith_pipe": "awith, pipelined 16", "awith_uring_pipe": "awith on io_uring, pipelined 16",
          "awith_usend0": "awith on io_uring, send(2)", "awith_usend0_pipe": "awith on io_uring, send(2), pipelined",
          "awith_metrics": "awith, metrics on", "awith_mw": "awith, middleware stack", "nginx": "nginx-light (static file)",
          "h2o": "h2o (static file)", "fastapi": "uvicorn+FastAPI (uvloop)", "aiohttp": "aiohttp (uvloop)",
          "lwan": "lwan (bench/lwan_hello.c)", "awith_close": "epoll, Connection: close",
          "awith_uring_close": "io_uring multishot accept, close", "awith_acc0_close": "io_uring accept4, close",
          "awith_rsingle": "io_uring, single RECV", "awith_rmulti": "io_uring, multishot+buffer ring",
          "awith_rsingle_pipe": "io_uring, single RECV, pipelined", "awith_rmulti_pipe": "io_uring, multishot, pipelined"}

data, cpu = {}, {}
for s in servers:
    rps, p99, cpu[s] = wrk_medians(wrk_run(f"{results}/{s}/wrk-{r}.txt", f"{results}/{s}/cpu-{r}.txt")
                                   for r in range(1, int(rounds) + 1))
    data[s] = (rps, p99)

a_rps, a_p99 = data.get("awith", data.get("awith_close", (None, None)))   # --accept: epoll is the reference
rows = ["| server | requests/s | p99 latency | server CPU per request | awith ÷ server (requests/s) | server p99 ÷ awith p99 |",
        "|---|---:|---:|---:|---:|---:|"]
for s in servers:
    rps, p99 = data[s]
    if rps is None:
        rows.append(f"| {labels[s]} | failed | | | | |")
        continue
    ratio = f"{a_rps / rps:.2f}×" if a_rps else "?"
    pr = f"{p99 / a_p99:.2f}×" if a_p99 else "?"
    c = f"{cpu[s]:.1f} µs" if cpu[s] else "?"
    rows.append(f"| {labels[s]} | {rps:,.0f} | {p99:.2f} ms | {c} | {ratio if s not in ('awith', 'awith_close') else '1.00×'} | {pr if s not in ('awith', 'awith_close') else '1.00×'} |")

def target(name, ok, text):
    return f"- {text}: **{'met' if ok else 'missed'}**"

targets = []
n, f = data.get("nginx", (None, None)), data.get("fastapi", (None, None))
if a_rps and n[0]:
    targets.append(target("nginx", a_rps >= n[0], f"≥ 1.0× nginx requests/s ({a_rps / n[0]:.2f}×)"))
    targets.append(target("nginx p99", a_p99 <= n[1], f"p99 no worse than nginx's ({a_p99:.2f} ms vs {n[1]:.2f} ms)"))
if a_rps and f[0]:
    targets.append(target("fastapi", a_rps >= 8 * f[0], f"≥ 8× uvicorn+FastAPI requests/s ({a_rps / f[0]:.1f}×)"))
m = data.get("awith_metrics", (None, None))
if a_rps and m[0]:
    loss = (1 - m[0] / a_rps) * 100
    targets.append(target("metrics", loss <= 3, f"metrics on costs ≤ 3 % requests/s (on vs off: "
                          f"{-loss:+.1f} % requests/s, {m[0]:,.0f} vs {a_rps:,.0f}; p99 {m[1]:.2f} ms vs {a_p99:.2f} ms)"))
    if cpu.get("awith_metrics") and cpu.get("awith"):
        targets.append(f"- CPU per request, metrics on vs off: {cpu['awith_metrics']:.2f} µs vs {cpu['awith']:.2f} µs")
w = data.get("awith_mw", (None, None))
if a_rps and w[0]:
    line = (f"- middleware stack (request id + Server-Timing + gzip) on vs off: "
            f"{(w[0] / a_rps - 1) * 100:+.1f} % requests/s ({w[0]:,.0f} vs {a_rps:,.0f}), p99 {w[1]:.2f} ms vs {a_p99:.2f} ms")
    if cpu.get("awith_mw") and cpu.get("awith"):
        line += (f"; server CPU per request {cpu['awith_mw']:.2f} µs vs {cpu['awith']:.2f} µs: "
                 f"the stack costs {cpu['awith_mw'] - cpu['awith']:+.2f} µs/request")
    targets.append(line)
# The loop backends: io_uring against epoll, same server, same load.
for ep, ur, what in (("awith", "awith_uring", "GET /"), ("awith_pipe", "awith_uring_pipe", "GET / pipelined 16 deep")):
    if cpu.get(ep) and cpu.get(ur):
        r = cpu[ur] / cpu[ep]
        targets.append(target("uring", r <= 0.75, f"io_uring ≤ 0.75× epoll's server CPU per request on {what} "
                              f"({cpu[ur]:.2f} µs vs {cpu[ep]:.2f} µs: {r:.2f}×; requests/s "
                              f"{data[ur][0]:,.0f} vs {data[ep][0]:,.0f})"))
# What the io_uring sends gave: the same backend with every send a send(2)
# (AWITH_URING_SEND=0, the backend as it was before them).
for old, ur, what in (("awith_usend0", "awith_uring", "GET /"), ("awith_usend0_pipe", "awith_uring_pipe", "pipelined")):
    if cpu.get(old) and cpu.get(ur) and cpu.get("awith" if what == "GET /" else "awith_pipe"):
        ep = cpu["awith" if what == "GET /" else "awith_pipe"]
        targets.append(f"- {what}: io_uring with send(2) {cpu[old]:.2f} µs ({cpu[old] / ep:.2f}× epoll) → "
                       f"with IORING_OP_SEND {cpu[ur]:.2f} µs ({cpu[ur] / ep:.2f}× epoll)")
# The two receive modes (--recv): multishot ÷ single per round (the rounds
# interleave, so each ratio compares runs made under the same load), then
# the median of those ratios beside the ratio of the medians.
for single, multi, what in (("awith_rsingle", "awith_rmulti", "GET /"), ("awith_rsingle_pipe", "awith_rmulti_pipe", "GET / pipelined 16 deep")):
    if cpu.get(single) and cpu.get(multi):
        per = []
        for r in range(1, int(rounds) + 1):
            a = wrk_medians([wrk_run(f"{results}/{single}/wrk-{r}.txt", f"{results}/{single}/cpu-{r}.txt")])
            b = wrk_medians([wrk_run(f"{results}/{multi}/wrk-{r}.txt", f"{results}/{multi}/cpu-{r}.txt")])
            if a[2] and b[2]:
                per.append((b[2] / a[2], b[0] / a[0]))
        cr = statistics.median(p[0] for p in per) if per else float("nan")
        rr = statistics.median(p[1] for p in per) if per else float("nan")
        targets.append(f"- {what}: multishot+buffer ring ÷ single RECV, server CPU per request "
                       f"{cpu[multi]:.2f} µs vs {cpu[single]:.2f} µs (ratio of medians {cpu[multi] / cpu[single]:.3f}×; "
                       f"median of {len(per)} per-round ratios {cr:.3f}×, range "
                       f"{min(p[0] for p in per):.3f}–{max(p[0] for p in per):.3f}); requests/s "
                       f"{data[multi][0]:,.0f} vs {data[single][0]:,.0f} (per-round median {rr:.3f}×)")
# lwan (when given): the same GET / from a C handler; issue 18's target is
# io_uring below lwan's server CPU per request.
if cpu.get("lwan"):
    lw = cpu["lwan"]
    for s, what in (("awith", "awith on epoll"), ("awith_uring", "awith on io_uring")):
        if cpu.get(s):
            targets.append(f"- {what} vs lwan: server CPU per request {cpu[s]:.2f} µs vs {lw:.2f} µs "
                           f"({cpu[s] / lw:.2f}×), requests/s {data[s][0]:,.0f} vs {data['lwan'][0]:,.0f} "
                           f"({data[s][0] / data['lwan'][0]:.2f}×), p99 {data[s][1]:.2f} ms vs {data['lwan'][1]:.2f} ms")
    if cpu.get("awith_uring"):
        targets.append(target("lwan", cpu["awith_uring"] < lw, f"io_uring below lwan's CPU per request on GET / "
                              f"({cpu['awith_uring']:.2f} µs vs {lw:.2f} µs: {cpu['awith_uring'] / lw:.2f}×)"))
# A connection per request: what the multishot accept saves per connection.
if cpu.get("awith_close"):
    ep = cpu["awith_close"]
    for s in ("awith_uring_close", "awith_acc0_close"):
        if cpu.get(s):
            targets.append(f"- {labels[s]}: server CPU per connection {cpu[s]:.2f} µs vs epoll {ep:.2f} µs "
                           f"({cpu[s] / ep:.2f}×), connections/s {data[s][0]:,.0f} vs {data['awith_close'][0]:,.0f}")
notes = []
for s in servers:
    if s not in ("awith", "awith_metrics", "awith_mw") and cpu.get(s) and cpu.get("awith"):
        notes.append(f"- CPU per request: {labels[s]} {cpu[s]:.1f} µs = {cpu[s] / cpu['awith']:.1f}× awith's")
if notes:
    targets += ["", "Server CPU time per request (what each costs whatever bounds requests/s):", ""] + notes

md = ["# HTTP hello world: awith vs nginx, h2o, uvicorn+FastAPI, aiohttp" + (", lwan" if "lwan" in servers else ""), "",
      f"GET / answering `{{\"message\":\"Hello, World!\"}}` over 127.0.0.1, keep-alive, one worker each; "
      f"wrk -t1 -c{conns}, {seconds} s per run after a 1 s warm-up, median of {rounds} round(s), "
      f"servers taking turns; nproc {ncpu}, {pinned}.", "", *rows, "", "Targets:", "", *targets, ""]
open(f"{results}/../http_bench.md", "w").write("\n".join(md))
print()
print("\n".join(rows))
print()
print("\n".join(targets))
print(f"\n(written to build-bench/http_bench.md)")
EOF

# --recv: the server's resident memory with RECV_IDLE idle keep-alive
# connections (each made one request and stays open), in each receive
# mode: VmRSS before the connections and with them, per connection.
if ((recv_only)); then
    idle=${RECV_IDLE:-2000}
    echo
    echo "== RSS with $idle idle keep-alive connections"
    for name in awith_rsingle awith_rmulti; do
        dir="$results/$name"
        bench_start "$name" "$dir"
        bench_until bench_answers "http://127.0.0.1:$port/" "$BODY" || { failed+=("$name"); bench_stop "$pid"; continue; }
        before=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        "$PY" - "$port" "$idle" "$pid" >"$dir/rss.txt" <<'PYEOF'
import resource, socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
conns = []
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    conns.append(c)
for c in conns:
    got = b""
    while b"Hello" not in got:
        got += c.recv(4096)
time.sleep(0.5)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
print(rss)
for c in conns:
    c.close()
PYEOF
        after=$(head -1 "$dir/rss.txt")
        bench_stop "$pid"
        printf '   %-32s VmRSS %s KiB idle, %s KiB with %s connections: %s B per connection\n' "${LABEL[$name]}" \
            "$before" "$after" "$idle" "$(awk -v a="$before" -v b="$after" -v n="$idle" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')" |
            tee -a "$results/../http_bench.md"
    done
fi

# --metrics: user-space instructions per request with metrics off and on,
# counted by callgrind (the same whatever else the machine runs): the
# server under valgrind, 300 requests to warm up, counters zeroed, 2000
# keep-alive requests from one curl, counters dumped.
if ((metrics_only)) && command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
    echo
    echo "== instructions per request (callgrind, 2000 keep-alive requests after 300 to warm up)"
    declare -A IR
    for v in awith "$variant"; do
        dir="$results/$v"
        port=$(bench_free_port)
        server_cmd "$v" "$port" "$dir"
        valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" "${CMD[@]}" >"$dir/callgrind.log" 2>&1 &
        pid=$!
        ok=0
        for ((i = 0; i < 300; i++)); do
            curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/" && { ok=1; break; }
            sleep 0.1
        done
        if ((ok)); then
            urls=()
            for ((i = 0; i < 300; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$port/"); done
            curl -s "${urls[@]}"
            callgrind_control -z "$pid" >/dev/null
            urls=()
            for ((i = 0; i < 2000; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$port/"); done
            curl -s "${urls[@]}"
            callgrind_control -d "$pid" >/dev/null
            IR[$v]=$(awk '/^summary:/ {print $2}' "$dir"/callgrind.*.1 2>/dev/null | head -1)
        fi
        bench_stop "$pid"
        printf '   %-32s %s instructions per request\n' "${LABEL[$v]}" \
            "$(awk -v t="${IR[$v]:-0}" 'BEGIN { if (t > 0) printf "%.0f", t / 2000; else print "?" }')"
    done
    if [[ -n ${IR[awith]:-} && -n ${IR[$variant]:-} ]]; then
        line=$(awk -v a="${IR[awith]}" -v b="${IR[$variant]}" -v what="${LABEL[$variant]}" \
            'BEGIN { printf "- instructions per request (callgrind), %s: %.0f off, %.0f on (%+.1f %%)", what, a / 2000, b / 2000, (b / a - 1) * 100 }')
        echo "$line"
        echo "$line" >>"$results/../http_bench.md"
    fi
fi

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
