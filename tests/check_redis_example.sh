#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# examples/redis_client.c from outside (issue 13): a third-party C library
# with its own sockets (hiredis, async API) wrapped as awith managers on the
# installed headers alone, talking to a real redis-server started here.
#
#   check_redis_example.sh installed BUILD_DIR SOURCE_ROOT CC SANITIZE
#       `meson install --destdir` BUILD_DIR into a temporary directory,
#       build the example OUT OF TREE with only
#       `cc ... $(pkg-config --cflags --libs awith-core) $(pkg-config ... hiredis)`
#       (awith.pc before the per-layer modules), check it saw only the
#       installed headers and library, and run it;
#   check_redis_example.sh built EXE [TESTS]
#       run the in-tree build of the example (examples/meson.build; the
#       sanitizer build runs it under ASan/UBSan with leak checks), and the
#       test program TESTS (tests/test_redis_example.c: the wrapper's edge
#       cases) against the same server.
#
# Each run: a private redis-server on a unix socket and a TCP port in a
# temporary directory (--save '' --appendonly no), killed on exit; the
# program's output is asserted line by line. Skips (77) only when
# redis-server or hiredis is missing (scripts/test.sh installs both:
# redis-server, libhiredis-dev).
set -u
mode=${1:?usage: check_redis_example.sh installed BUILD SRC CC SANITIZE | built EXE}
tmp=$(mktemp -d)
redis_pid=
cleanup() {
	if [[ -n $redis_pid ]]; then
		kill -CONT "$redis_pid" 2>/dev/null   # a test stops it for a moment
		kill "$redis_pid" 2>/dev/null
		wait "$redis_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok   $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; [[ -s $tmp/log ]] && sed 's/^/     /' "$tmp/log" | head -30; }
finish() { echo "$pass passed, $fails failed"; exit $((fails ? 1 : 0)); }
skip() { echo "SKIP: $*"; echo "0 passed, 0 failed"; exit 77; }

command -v redis-server >/dev/null || skip "redis-server is not installed (Debian: apt-get install redis-server)"

# ---- the program under test ---------------------------------------------
if [[ $mode == installed ]]; then
	build=${2:?} src=${3:?} cc=${4:-cc} sanitize=${5:-none}
	pkg-config --exists hiredis || skip "hiredis is not installed (Debian: apt-get install libhiredis-dev)"
	dest=$tmp/dest
	if meson install -C "$build" --no-rebuild --quiet --destdir "$dest" >"$tmp/log" 2>&1; then
		ok "meson_install_into_a_destdir"
	else
		fail "meson_install_into_a_destdir"
		finish
	fi
	# The per-layer module if the build has it, else the whole library.
	pc=$(find "$dest" -name awith-core.pc | head -n 1)
	[[ -n $pc ]] || pc=$(find "$dest" -name awith.pc | head -n 1)
	[[ -n $pc ]] || { : >"$tmp/log"; fail "installed_pkg_config_file_found (no awith-core.pc or awith.pc under $dest)"; finish; }
	module=$(basename "$pc" .pc)
	# A destdir install keeps the configured prefix inside the files; point
	# pkg-config's ${prefix} at where the tree really is. One call per
	# prefix: hiredis keeps its own (/usr), so it gets a call of its own.
	prefix=$(pkg-config --variable=prefix "$pc")
	aw_flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$dest$prefix" \
		--cflags --libs "$module")
	libdir=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --define-variable=prefix="$dest$prefix" \
		--variable=libdir "$module")
	hi_flags=$(pkg-config --cflags --libs hiredis)
	san=()
	[[ $sanitize != none && -n $sanitize ]] && san=(-fsanitize="$sanitize")
	exe=$tmp/redis_client
	# shellcheck disable=SC2086 # the flags are words
	if "$cc" -Wall -Wextra -Werror "${san[@]}" "$src/examples/redis_client.c" -o "$exe" \
		$aw_flags $hi_flags >"$tmp/log" 2>&1; then
		ok "redis_example_builds_out_of_tree_with_pkg_config_${module//-/_}_and_hiredis"
	else
		fail "redis_example_builds_out_of_tree_with_pkg_config_${module//-/_}_and_hiredis: $cc ... $aw_flags $hi_flags"
		finish
	fi
	# Which awith headers the compiler read, and which library the program
	# loads: the installed ones, never the source tree's.
	# shellcheck disable=SC2086
	"$cc" -M "$src/examples/redis_client.c" $aw_flags $hi_flags 2>"$tmp/log" | tr ' \\' '\n\n' |
		grep '/awith/' | sort -u >"$tmp/headers"
	if [[ -s $tmp/headers ]] && ! grep -qv "^$dest/" "$tmp/headers"; then
		ok "redis_example_sees_only_the_installed_headers"
	else
		cp "$tmp/headers" "$tmp/log"
		fail "redis_example_sees_only_the_installed_headers"
	fi
	export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	if ldd "$exe" 2>"$tmp/log" | grep -E 'libawith[^ ]*\.so' | grep -q " => $dest/"; then
		ok "redis_example_loads_the_installed_libawith"
	else
		ldd "$exe" >"$tmp/log" 2>&1
		fail "redis_example_loads_the_installed_libawith"
	fi
elif [[ $mode == built ]]; then
	exe=${2:?} tests=${3:-}
else
	echo "usage: check_redis_example.sh installed BUILD SRC CC SANITIZE | built EXE"
	exit 2
fi

# ---- a private redis-server ---------------------------------------------
sock=$tmp/redis.sock
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$sock" --save '' --appendonly no \
	--dir "$tmp" --daemonize no >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
	[[ -S $sock ]] && break
	sleep 0.05
done
[[ -S $sock ]] || { cp "$tmp/redis.log" "$tmp/log"; fail "redis_server_starts"; finish; }

# ---- runs ---------------------------------------------------------------
# expect NAME PATTERN...: every PATTERN (a fixed line) is in $tmp/out.
expect() {
	local name=$1 p missing=0
	shift
	for p in "$@"; do
		grep -qxF -- "$p" "$tmp/out" || { missing=1; echo "missing line: $p" >>"$tmp/log.missing"; }
	done
	if ((missing)); then
		{ cat "$tmp/log.missing"; echo "--- output:"; cat "$tmp/out"; } >"$tmp/log"
		rm -f "$tmp/log.missing"
		fail "$name"
	else
		ok "$name"
	fi
}

run() {   # run ADDRESS: the program's stdout in out, stderr in err
	timeout -k 5 30 "$exe" "$@" >"$tmp/out" 2>"$tmp/err"
}

run "unix://$sock"
rc=$?
cp "$tmp/err" "$tmp/log"
((rc == 0)) && ok "redis_example_exits_0_over_a_unix_socket" || fail "redis_example_exits_0_over_a_unix_socket (exit $rc)"
expect "redis_example_commands_wait_for_their_replies" \
	"connected to unix:$sock" \
	"SET greeting -> OK" \
	"GET greeting -> hello from awith" \
	"INCR counter -> (integer) 1" \
	"INCR counter -> (integer) 2"
expect "redis_example_error_reply_is_its_own_code_with_the_servers_text" \
	"INCR greeting -> -REDIS_EREPLY: redis: INCR: ERR value is not an integer or out of range"
expect "redis_example_pubsub_iterator_gets_every_message_then_unsubscribes" \
	"subscriber: message 1 on awith:example:news: item 1" \
	"subscriber: message 5 on awith:example:news: item 5" \
	"publisher: 5 messages published, 5 delivered" \
	"subscriber: after UNSUBSCRIBE the connection takes commands again: PING -> PONG" \
	"subscriber got 5 of 5 messages"
expect "redis_example_timeout_ends_a_blocked_command_and_closes_its_connection" \
	"BLPOP awith:example:jobs 0 under AW_TIMEOUT(100 ms) -> -ETIMEDOUT (Connection timed out) after >= 100 ms" \
	"the timed-out connection is closed: PING -> -REDIS_ECLOSED" \
	"LLEN jobs (the abandoned BLPOP took nothing) -> (integer) 1" \
	"done"

REDIS_URL="redis://127.0.0.1:$port" run
rc=$?
cp "$tmp/err" "$tmp/log"
((rc == 0)) && ok "redis_example_exits_0_over_tcp_from_REDIS_URL" || fail "redis_example_exits_0_over_tcp_from_REDIS_URL (exit $rc)"
expect "redis_example_runs_the_same_over_tcp" "connected to 127.0.0.1:$port" "subscriber got 5 of 5 messages" "done"

run "unix://$tmp/no-such.sock"
rc=$?
if ((rc == 1)) && grep -q "redis: cannot connect to unix:$tmp/no-such.sock: No such file or directory (cannot connect to the redis server" "$tmp/err"; then
	ok "redis_example_reports_a_failed_connect_with_its_own_code"
else
	{ echo "exit $rc"; cat "$tmp/err"; } >"$tmp/log"
	fail "redis_example_reports_a_failed_connect_with_its_own_code"
fi

port2=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run "127.0.0.1:$port2"
rc=$?
if ((rc == 1)) && grep -q "redis: cannot connect to 127.0.0.1:$port2: Connection refused" "$tmp/err"; then
	ok "redis_example_reports_a_refused_connection"
else
	{ echo "exit $rc"; cat "$tmp/err"; } >"$tmp/log"
	fail "redis_example_reports_a_refused_connection"
fi

# The wrapper's edge cases (harness program: its own ok/FAIL lines).
if [[ -n ${tests-} ]]; then
	AW_REDIS_SOCKET=$sock AW_REDIS_PID=$redis_pid AW_REDIS_REQUIRED=1 "$tests" </dev/null >"$tmp/tests.out" 2>&1
	rc=$?
	sed 's/^/  /' "$tmp/tests.out"
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/tests.out" | tail -n 1)
	if [[ -n $summary ]]; then
		read -r p _ f _ <<<"$summary"
		pass=$((pass + p)) fails=$((fails + f))
		((f == 0 && rc != 0)) && { : >"$tmp/log"; fail "test_redis_example: exit status $rc after all tests passed"; }
	else
		: >"$tmp/log"
		fail "test_redis_example: no summary line (exit status $rc)"
	fi
fi

finish
