#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# HTTPS hello-world over loopback: awith's examples/hello_server with
# --tls-cert/--tls-key against nginx-light serving the same JSON as a
# static file over TLS, with the same certificate (ECDSA P-256), the same
# protocols (TLS 1.2 and 1.3) and the same TLS 1.2 ciphers (awith's default,
# AW_TLS_SERVER_CIPHERS, written into nginx's ssl_ciphers), measured with
# wrk in one run on this machine.
#
#   bash bench/https_bench.sh            # 3 rounds of 5 s per server and case
#   bash bench/https_bench.sh --quick    # 1 round of 2 s
#
# Two cases:
#   keep-alive  wrk -t1 -c64 over kept connections: one handshake per
#               connection, then record encryption and HTTP per request
#               (what the issue's target is about);
#   handshakes  the same with "Connection: close": a full TLS handshake per
#               request (wrk does not resume sessions), the cost of new
#               clients.
# Steps as bench/http_bench.sh: installs missing packages (wrk, nginx-light),
# builds the release build in build-bench/, makes a CA and a localhost
# certificate with openssl in build-bench/https-results/, then for each
# round, case and server in turn: start it on a free port with one worker,
# check that GET / answers the JSON over https, warm up 1 s, run wrk and
# stop it. Prints requests/s, p99 latency and the server's CPU time per
# request (user + system of its processes, from /proc around the run), the
# medians over the rounds, with awith's ratios; the tables are also written
# as markdown to build-bench/https_bench.md. Targets (keep-alive): >= 1.0x
# nginx requests/s with p99 no worse than nginx's.
#
# On 2 or more cores the server is pinned to CPU 0 and wrk to CPU 1
# (taskset). Exit status: 0 when every run worked (targets met or not), 1
# if the build, a server or a wrk run failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
source scripts/test.sh   # PACKAGES, ensure_packages, setup_build
source bench/lib.sh
PACKAGES+=(wrk nginx-light)

PY=/usr/bin/python3
BUILD=build-bench
CONNS=64
rounds=3 seconds=5
bench_quick_args 2,13 "$@"

bench_build
bench_results https-results
bench_hello_www
mkdir -p "$results/certs"
CERTS=$(cd "$results/certs" && pwd)
(
    set -e
    cd "$CERTS"
    K='genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256'
    openssl $K -out ca.key
    openssl $K -out server.key
    openssl req -x509 -new -key ca.key -subj '/CN=https_bench CA' -days 2 -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl req -new -key server.key -subj '/CN=localhost' -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
        -out server.pem
) >"$results/openssl.log" 2>&1 || { cat "$results/openssl.log"; echo "cannot make the certificate" >&2; exit 1; }

# awith's default TLS 1.2 cipher list, from the header (so both servers
# offer exactly the same).
CIPHERS=$(gcc -E -dM -Iinclude include/awith/io.h 2>/dev/null | sed -n 's/^#define AW_TLS_SERVER_CIPHERS //p' |
    tr -d '"\\ ')
[[ -n $CIPHERS ]] || { echo "cannot read AW_TLS_SERVER_CIPHERS from include/awith/io.h" >&2; exit 1; }

bench_pin pin_server pin_wrk "server on CPU 0, wrk on CPU 1 (taskset)"

nginx_conf() { # PORT DIR (sets CMD)
    bench_nginx_conf "$2" <<EOF
  keepalive_timeout 65;
  open_file_cache max=16;
  sendfile on;
  tcp_nopush on;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers $CIPHERS;
  ssl_prefer_server_ciphers off;
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $CERTS/server.pem;
    ssl_certificate_key $CERTS/server.key;
    root $WWW;
    location = / { default_type application/json; try_files /index.json =404; }
  }
EOF
}

SERVERS=(awith nginx)
CASES=(keepalive handshakes)
declare -A LABEL=([awith]="awith (hello_server --tls-cert)" [nginx]="nginx-light (static file, ssl)")
declare -A CASE_LABEL=([keepalive]="keep-alive" [handshakes]="a handshake per request (Connection: close)")

server_cmd() { # NAME PORT DIR -> sets CMD
    local name=$1 port=$2 dir=$3
    case $name in
        awith) CMD=("$BUILD/examples/hello_server" --port off --tls-port "$port"
                    --tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key") ;;
        nginx) nginx_conf "$port" "$dir" ;;
    esac
}

failed=()
run() { # NAME CASE ROUND
    local name=$1 kase=$2 round=$3 dir="$results/$1-$2" port pid hdr=()
    [[ $kase == handshakes ]] && hdr=(-H "Connection: close")
    bench_start "$name" "$dir"
    if ! bench_until bench_answers "https://localhost:$port/" "$BODY" --cacert "$CERTS/ca.pem"; then
        bench_server_failed "$pid" "$dir/server.log" "$name: no (or a wrong) answer on port $port"
        failed+=("$name-$kase")
        return 1
    fi
    bench_wrk_warmup -t1 -c"$CONNS" "${hdr[@]}" "https://127.0.0.1:$port/"
    if ! bench_wrk_measure "$pid" "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" -t1 -c"$CONNS" "${hdr[@]}" \
        "https://127.0.0.1:$port/"; then
        echo "== $name $kase: wrk failed"
        failed+=("$name-$kase")
    fi
    bench_stop "$pid"
    bench_wrk_report "$dir/wrk-$round.txt" "$dir/cpu-$round.txt" "$(printf '%-12s %-34s' "$kase" "${LABEL[$name]}")"
}

echo "== $rounds round(s) of ${seconds} s per server and case, wrk -t1 -c$CONNS, $pinned"
for ((r = 1; r <= rounds; r++)); do
    echo "== round $r"
    for kase in "${CASES[@]}"; do
        for name in "${SERVERS[@]}"; do
            run "$name" "$kase" "$r"
        done
    done
done

"$PY" - "$results" "$rounds" "$seconds" "$CONNS" "$pinned" "$(nproc)" "$CIPHERS" <<'EOF'
import statistics, sys
sys.path.insert(0, "bench")
from wrk_runs import wrk_medians, wrk_run
results, rounds, seconds, conns, pinned, ncpu, ciphers = sys.argv[1:8]
servers = ["awith", "nginx"]
labels = {"awith": "awith (hello_server --tls-cert)", "nginx": "nginx-light (static file, ssl)"}
cases = [("keepalive", "keep-alive"), ("handshakes", "a full handshake per request (Connection: close)")]

md = ["# HTTPS hello world: awith vs nginx (same certificate, protocols and ciphers)", "",
      f"GET / answering `{{\"message\":\"Hello, World!\"}}` over TLS on 127.0.0.1, ECDSA P-256 certificate, "
      f"TLS 1.2 + 1.3 (wrk negotiates TLS 1.3), TLS 1.2 ciphers `{ciphers}` on both, session "
      f"tickets on both (OpenSSL's and nginx's defaults); one worker each; wrk -t1 -c{conns}, {seconds} s per run after a 1 s warm-up, median of "
      f"{rounds} round(s), servers taking turns; nproc {ncpu}, {pinned}.", ""]
out = []
for case, title in cases:
    data, cpu = {}, {}
    for s in servers:
        rps, p99, cpu[s] = wrk_medians(wrk_run(f"{results}/{s}-{case}/wrk-{r}.txt", f"{results}/{s}-{case}/cpu-{r}.txt")
                                       for r in range(1, int(rounds) + 1))
        data[s] = (rps, p99)
    rows = [f"## {title}", "",
            "| server | requests/s | p99 latency | server CPU per request | awith ÷ server (requests/s) | server p99 ÷ awith p99 | server CPU ÷ awith CPU |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    a_rps, a_p99 = data["awith"]
    for s in servers:
        rps, p99 = data[s]
        if rps is None:
            rows.append(f"| {labels[s]} | failed | | | | | |")
            continue
        c = f"{cpu[s]:.1f} µs" if cpu[s] else "?"
        ratio = f"{a_rps / rps:.2f}×" if a_rps else "?"
        pr = f"{p99 / a_p99:.2f}×" if a_p99 else "?"
        cr = f"{cpu[s] / cpu['awith']:.2f}×" if cpu[s] and cpu.get("awith") else "?"
        if s == "awith":
            ratio = pr = cr = "1.00×"
        rows.append(f"| {labels[s]} | {rps:,.0f} | {p99:.2f} ms | {c} | {ratio} | {pr} | {cr} |")
    n = data["nginx"]
    if case == "keepalive" and a_rps and n[0]:
        rows += ["", f"- ≥ 1.0× nginx requests/s ({a_rps / n[0]:.2f}×): **{'met' if a_rps >= n[0] else 'missed'}**",
                 f"- p99 no worse than nginx's ({a_p99:.2f} ms vs {n[1]:.2f} ms): **{'met' if a_p99 <= n[1] else 'missed'}**"]
    rows.append("")
    out += rows
md += out
open(f"{results}/../https_bench.md", "w").write("\n".join(md))
print()
print("\n".join(out))
print("(written to build-bench/https_bench.md)")
EOF

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
