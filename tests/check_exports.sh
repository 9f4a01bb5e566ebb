#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The libraries' boundary: every symbol each libawith-<layer>.so exports is
# declared in a public header (include/awith/*.h). Anything else exported
# (an internal aw__ function, llhttp_*) fails, naming it and its library.
# In a fault-injection build the counting wrappers of src/common/alloc.h are
# exported from libawith-core on purpose: --also names that header.
#
#   tests/check_exports.sh INCLUDE_DIR [--also HEADER] LIB.so...
set -uo pipefail
inc=$1
shift
headers=("$inc"/awith/*.h)
if [[ ${1-} == --also ]]; then
    headers+=("$2")
    shift 2
fi
(($#)) || { echo "usage: check_exports.sh INCLUDE_DIR [--also HEADER] LIB.so..."; echo "0 passed, 1 failed"; exit 1; }
pass=0 fail=0
for so in "$@"; do
    lib=$(basename "$so")
    syms=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
    if [[ -z $syms ]]; then
        echo "FAIL $lib: no exported symbols"
        fail=$((fail + 1))
        continue
    fi
    bad=0 n=0
    for s in $syms; do
        case $s in _init | _fini | __bss_start | _edata | _end) continue ;; esac
        n=$((n + 1))
        if ! grep -qw -- "$s" "${headers[@]}"; then
            echo "     $lib exports $s, which no public header declares"
            bad=$((bad + 1))
        fi
    done
    if ((bad)); then
        echo "FAIL $lib: $bad of $n exported symbols are in no public header"
        fail=$((fail + 1))
    else
        echo "ok   every_symbol_exported_by_${lib%%.so*}_is_declared_in_a_public_header ($n symbols)"
        pass=$((pass + 1))
    fi
done
echo "$pass passed, $fail failed"
((fail == 0))
