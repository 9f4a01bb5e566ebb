# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034,SC2154   # it sets and reads the calling script's variables
# What the bench/*.sh scripts share, sourced by them (not run): their
# options, the release build, a fresh results directory, CPU pinning, a
# private PostgreSQL cluster, a free port, starting a server and waiting
# until it answers, its CPU time from /proc around a measured run, nginx and
# h2o configs, and the warm-up and measured wrk runs with their report line.
# (The Python summaries read the runs with bench/wrk_runs.py.) Each script
# sets PY (the Python interpreter) and BUILD (the build directory) before
# calling these, and `seconds` (the length of a measured run) before
# bench_wrk_measure. Every function says what it sets and returns; the
# measured values are the same as when each script had its own copy.
#
#   cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
#   source bench/lib.sh

# bench_quick_args HELP_LINES ARG...: the options of a bench with no others
# than --quick: --quick sets rounds=1 seconds=2; -h or --help prints lines
# HELP_LINES (a sed range such as 2,13) of the script's header comment and
# exits 0; anything else is an error (exit 2).
bench_quick_args() {
    local help=$1 arg script=${BASH_SOURCE[-1]}
    shift
    for arg in "$@"; do
        case $arg in
            --quick) rounds=1 seconds=2 ;;
            -h | --help) sed -n "${help}p" "$script" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) echo "bench/${script##*/}: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
        esac
    done
}

# bench_packages: install what PACKAGES lists and is missing (scripts/test.sh's
# ensure_packages, sourced by the caller); on failure say so and exit 1.
bench_packages() {
    ensure_packages || { echo "package installation failed" >&2; exit 1; }
}

# bench_setup_build [MESON_OPTION...]: configure (or reconfigure) and build
# the release build in $BUILD with gcc, examples and benchmarks on, tests
# off; the options are appended. Returns setup_build's status, says nothing.
bench_setup_build() {
    CC=gcc setup_build "$BUILD" --buildtype=release -Dtests=false -Dexamples=true -Dbench=true "$@"
}

# bench_build [MESON_OPTION...]: bench_packages, then bench_setup_build; if
# the build fails, say "BUILD FAILED: $BUILD" and exit 1.
bench_build() {
    bench_packages
    bench_setup_build "$@" || { echo "BUILD FAILED: $BUILD" >&2; exit 1; }
}

# bench_results NAME: set `results` to the absolute path of $BUILD/NAME and
# make it a new empty directory (a previous run's files are removed).
bench_results() {
    results=$(pwd)/$BUILD/$1
    rm -rf "$results"
    mkdir -p "$results"
}

# bench_hello_www: the hello-world body every HTTP peer serves. Sets BODY to
# {"message":"Hello, World!"}, writes it to $results/www/index.json and sets
# WWW to that directory's absolute path.
bench_hello_www() {
    BODY='{"message":"Hello, World!"}'
    mkdir -p "$results/www"
    printf '%s' "$BODY" >"$results/www/index.json"
    WWW=$(cd "$results/www" && pwd)
}

# bench_pin CPU0_ARRAY CPU1_ARRAY TEXT: on a machine with 2 or more cores and
# taskset, set the arrays named CPU0_ARRAY and CPU1_ARRAY to the command
# prefixes `taskset -c 0` and `taskset -c 1` and `pinned` to TEXT (what runs
# where, for the output); otherwise both arrays empty and `pinned` "not
# pinned (1 core)". Returns 0 when pinned, 1 when not. Use as
# "${CPU0_ARRAY[@]}" cmd...
bench_pin() {
    local -n bench_pin0_=$1 bench_pin1_=$2
    bench_pin0_=() bench_pin1_=() pinned="not pinned (1 core)"
    if (($(nproc) >= 2)) && command -v taskset >/dev/null; then
        bench_pin0_=(taskset -c 0) bench_pin1_=(taskset -c 1)
        pinned=$3
        return 0
    fi
    return 1
}

# bench_pg_start CLUSTER: start a private PostgreSQL cluster in CLUSTER
# (scripts/pg_cluster.sh; the caller stops it) and export its env
# (DATABASE_URL, PGDATA, ...); sets own_cluster=1. If it does not start, say
# so and exit 1.
bench_pg_start() {
    own_cluster=1
    bash scripts/pg_cluster.sh start "$1" >/dev/null ||
        { echo "FAILED: the private PostgreSQL cluster did not start" >&2; exit 1; }
    set -a
    # shellcheck disable=SC1090
    source "$1/env"
    set +a
}

# bench_postmaster_pid: the postmaster's pid when the cluster is our own
# (own_cluster=1, bench_pg_start) and running; prints nothing, and fails,
# otherwise.
bench_postmaster_pid() {
    ((${own_cluster:-0})) && [[ -f $PGDATA/postmaster.pid ]] && head -n 1 "$PGDATA/postmaster.pid"
}

# bench_pin_postgres: pin our own cluster's postmaster and its processes
# (every thread) to CPU 1; backends forked later inherit it. Returns 1 when
# there is no own cluster to pin.
bench_pin_postgres() {
    local pm p
    pm=$(bench_postmaster_pid) || return 1
    for p in "$pm" $(pgrep -P "$pm"); do
        taskset -a -p -c 1 "$p" >/dev/null 2>&1
    done
    return 0
}

# bench_free_port: print a TCP port of 127.0.0.1 free at the time of asking.
bench_free_port() {
    "${PY:-/usr/bin/python3}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_cpu_split PID: print "USER SYSTEM", the CPU time in clock ticks
# (getconf CLK_TCK a second) the process and its direct children have used
# so far, every thread included (nginx's and Kore's workers are children,
# h2o's threads are in its own count). A process that is gone counts 0.
bench_cpu_split() {
    local p f u=0 s=0
    local -a a
    for p in "$1" $(pgrep -P "$1"); do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }   # the fields after "pid (comm) "
        read -r -a a <<<"$f"
        u=$((u + a[11])) s=$((s + a[12]))   # utime, stime (fields 14, 15)
    done
    echo "$u $s"
}

# bench_cpu_ticks PID: print user + system of bench_cpu_split, one number.
bench_cpu_ticks() {
    local u s
    read -r u s <<<"$(bench_cpu_split "$1")"
    echo $((u + s))
}

# bench_measure CPU_FILE PID CMD...: run CMD (its output goes where the
# caller redirects this call) and write to CPU_FILE "TICKS HZ": the CPU
# ticks PID and its children used while CMD ran, and CLK_TCK. Returns CMD's
# exit status.
bench_measure() {
    local cpu_file=$1 pid=$2 t0 t1 rc
    shift 2
    t0=$(bench_cpu_ticks "$pid")
    "$@"
    rc=$?
    t1=$(bench_cpu_ticks "$pid")
    echo "$((t1 - t0)) $(getconf CLK_TCK)" >"$cpu_file"
    return "$rc"
}

# bench_start NAME DIR: start the server NAME on a free port of 127.0.0.1:
# make DIR, call the script's own `server_cmd NAME PORT DIR` (which sets
# CMD), run CMD in the background under "${pin_server[@]}" with its output
# in DIR/server.log. Sets `port` and `pid` (the caller's locals when it
# declares them).
bench_start() {
    mkdir -p "$2"
    port=$(bench_free_port)
    server_cmd "$1" "$port" "$2"
    "${pin_server[@]}" "${CMD[@]}" >"$2/server.log" 2>&1 &
    pid=$!
}

# bench_stop PID [SIGNAL]: send SIGNAL (default TERM) to the server PID and
# wait for it to exit.
bench_stop() {
    kill -"${2:-TERM}" "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# bench_until CMD...: run CMD every BENCH_POLL seconds (default 0.05) until
# it succeeds, at most 200 times; returns 0 once it has, 1 if it never did.
# For waiting until a server just started answers.
bench_until() {
    local i
    for ((i = 0; i < 200; i++)); do
        "$@" && return 0
        sleep "${BENCH_POLL:-0.05}"
    done
    return 1
}

# bench_answers URL BODY [CURL_OPTION...]: true when GET URL (curl, 1 s at
# most) answers exactly BODY.
bench_answers() {
    local url=$1 body=$2 out
    shift 2
    out=$(curl -s --max-time 1 "$@" "$url" 2>/dev/null) && [[ $out == "$body" ]]
}

# bench_server_failed PID LOG MESSAGE: a server did not answer as it
# should: print "== MESSAGE; log:" and LOG's last 20 lines, stop PID.
bench_server_failed() {
    echo "== $3; log:"
    tail -n 20 "$2"
    bench_stop "$1"
}

# bench_nginx_conf DIR [MAIN_LINE...] <HTTP_LINES: write DIR/nginx.conf: one
# worker in the foreground, its error log and pid file in DIR, the MAIN_LINEs
# in the main context, and an http block with the access log off and
# 1,000,000 requests per keep-alive connection, then the lines read from
# stdin (the caller's own settings and its server block). Sets CMD to the
# command line that runs nginx on it.
bench_nginx_conf() {
    local dir=$1 line
    shift
    {
        echo "worker_processes 1;"
        echo "daemon off;"
        for line in "$@"; do echo "$line"; done
        echo "error_log $dir/nginx-error.log;"
        echo "pid $dir/nginx.pid;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "  access_log off;"
        echo "  keepalive_requests 1000000;"
        cat
        echo "}"
    } >"$dir/nginx.conf"
    CMD=(nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/nginx-error.log")
}

# bench_h2o_conf DIR PORT [TOP_LINE...]: write DIR/h2o.conf: h2o on
# 127.0.0.1:PORT, one thread, as the current user, TOP_LINEs added at the
# top level, serving $WWW/index.json as application/json at every path.
# Sets CMD to the command line that runs h2o on it.
bench_h2o_conf() {
    local dir=$1 port=$2 line
    shift 2
    {
        printf 'listen:\n  host: 127.0.0.1\n  port: %s\nnum-threads: 1\nuser: %s\n' "$port" "$(id -un)"
        for line in "$@"; do echo "$line"; done
        cat <<EOF
file.mime.addtypes:
  application/json: .json
hosts:
  "default":
    paths:
      "/":
        file.file: $WWW/index.json
EOF
    } >"$dir/h2o.conf"
    CMD=(h2o -c "$dir/h2o.conf")
}

# bench_wrk_warmup WRK_ARG...: a 1 s wrk run, output dropped, under
# "${pin_wrk[@]}" (the caller's pinning for wrk, bench_pin).
bench_wrk_warmup() {
    "${pin_wrk[@]}" wrk -d1s "$@" >/dev/null 2>&1
}

# bench_wrk_measure PID WRK_FILE CPU_FILE WRK_ARG...: the measured wrk run:
# $seconds long with --latency, under "${pin_wrk[@]}", its output to
# WRK_FILE, the server PID's CPU use around it to CPU_FILE (bench_measure).
# Returns wrk's exit status.
bench_wrk_measure() {
    local pid=$1 wrk_file=$2 cpu_file=$3
    shift 3
    bench_measure "$cpu_file" "$pid" "${pin_wrk[@]}" wrk -d"${seconds}s" --latency "$@" >"$wrk_file" 2>&1
}

# bench_wrk_read WRK_FILE TICKS [HZ]: read a wrk --latency output. Sets
# wrk_rps (requests/s), wrk_p99 (as wrk prints it), wrk_total (requests
# completed), wrk_errs (wrk's "Non-2xx" and "Socket errors" lines) and
# wrk_us: TICKS of server CPU (at HZ a second, default CLK_TCK) per request
# in µs with one decimal, "?" when no request completed.
bench_wrk_read() {
    local hz=${3:-$(getconf CLK_TCK)}
    wrk_rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
    wrk_p99=$(awk '$1 == "99%" {print $2}' "$1")
    wrk_total=$(awk '/requests in/ {print $1}' "$1")
    wrk_errs=$(awk '/Non-2xx|Socket errors/' "$1")
    wrk_us=$(bench_per_request "$2" "$hz" "$wrk_total")
}

# bench_per_request TICKS HZ REQUESTS: print TICKS at HZ a second divided by
# REQUESTS, in µs with one decimal; "?" when REQUESTS is 0 or empty.
bench_per_request() {
    awk -v t="$1" -v hz="$2" -v n="${3:-0}" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "?" }'
}

# bench_wrk_report WRK_FILE CPU_FILE PREFIX: print a measured run's line:
# "   PREFIX  N req/s   p99 T   cpu U us/req" and wrk's error lines, from
# WRK_FILE and the "TICKS HZ" in CPU_FILE (bench_measure). PREFIX is the
# caller's already padded label(s).
bench_wrk_report() {
    local ticks hz
    read -r ticks hz <"$2"
    bench_wrk_read "$1" "$ticks" "$hz"
    printf '   %s %12s req/s   p99 %-9s cpu %6s us/req %s\n' "$3" "${wrk_rps:-?}" "${wrk_p99:-?}" "$wrk_us" "$wrk_errs"
}
