#!/bin/bash
# SPDX-License-Identifier: MIT
# The public API as a compiler sees it (issue 11), run by meson test:
#   1. every public header compiles, alone and together, as C with
#      -std=gnu11 and -std=c11 (gcc, clang) and as C++17 (g++, clang++), with
#      -Wall -Wextra -Werror;
#   2. ignoring a waiting call's result (`aw_sleep(AW_MS(1));` as a bare
#      statement, through the same-named location-recording macro) fails to
#      compile under -Wall -Werror with gcc and clang, and the same calls
#      with their results used compile.
# Usage: check_api.sh SOURCE_ROOT. A missing compiler is a failure, not a
# skip (scripts/test.sh installs gcc, g++ and clang).
set -u
root=${1:?usage: check_api.sh SOURCE_ROOT}
inc="$root/include"
dir="$root/tests/api"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass=0

ok()   { pass=$((pass + 1)); echo "ok   $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; [ -s "$tmp/log" ] && sed 's/^/     /' "$tmp/log" | head -20; }

for tool in gcc clang g++ clang++; do
	command -v "$tool" >/dev/null || { echo "FAIL $tool is not installed"; exit 1; }
done

# 1. Headers.
for cc in gcc clang; do
	for std in gnu11 c11; do
		for order in "" -DAW_REVERSE; do
			if $cc -std=$std -Wall -Wextra -Werror $order -I"$inc" -c "$dir/all_headers.c" -o "$tmp/h.o" >"$tmp/log" 2>&1; then
				ok "headers: $cc -std=$std $order"
			else
				fail "headers: $cc -std=$std $order"
			fi
		done
	done
	for h in version core log ext io http schema client pg metrics; do
		printf '#include <awith/%s.h>\n' "$h" >"$tmp/one.c"
		if $cc -std=c11 -Wall -Wextra -Werror -I"$inc" -c "$tmp/one.c" -o "$tmp/one.o" >"$tmp/log" 2>&1; then
			ok "header alone: awith/$h.h ($cc -std=c11)"
		else
			fail "header alone: awith/$h.h ($cc -std=c11)"
		fi
	done
done
for cxx in g++ clang++; do
	for order in "" -DAW_REVERSE; do
		if $cxx -x c++ -std=c++17 -Wall -Wextra -Werror $order -I"$inc" -c "$dir/all_headers.c" -o "$tmp/h.o" >"$tmp/log" 2>&1; then
			ok "headers: $cxx -std=c++17 $order"
		else
			fail "headers: $cxx -std=c++17 $order"
		fi
	done
done

# 2. warn_unused_result through the wrapper macros.
for cc in gcc clang; do
	if $cc -std=gnu11 -Wall -Werror -DCASE=0 -I"$inc" -c "$dir/must_use.c" -o "$tmp/m.o" >"$tmp/log" 2>&1; then
		ok "must_use: $cc: results used compile"
	else
		fail "must_use: $cc: results used compile"
	fi
	for case in 1 2 3 4 5 6 7 8 9; do
		if $cc -std=gnu11 -Wall -Werror -DCASE=$case -I"$inc" -c "$dir/must_use.c" -o "$tmp/m.o" >"$tmp/log" 2>&1; then
			: >"$tmp/log"
			fail "must_use: $cc: case $case (an ignored result) compiled"
		elif grep -q 'unused-result' "$tmp/log"; then
			ok "must_use: $cc: case $case (an ignored result) is refused"
		else
			fail "must_use: $cc: case $case failed for another reason than an ignored result"
		fi
	done
done

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
