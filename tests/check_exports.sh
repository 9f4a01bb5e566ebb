#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The library's boundary: every symbol libawith.so exports is declared in a
# public header (include/awith/*.h). Anything else exported (an internal
# aw__ function, llhttp_*) fails, naming it.
#
#   tests/check_exports.sh LIBAWITH_SO INCLUDE_DIR
set -uo pipefail
so=$1 inc=$2
syms=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
[[ -n $syms ]] || { echo "no exported symbols in $so"; echo "0 passed, 1 failed"; exit 1; }
bad=0 n=0
for s in $syms; do
    case $s in _init | _fini | __bss_start | _edata | _end) continue ;; esac
    n=$((n + 1))
    if ! grep -qw -- "$s" "$inc"/awith/*.h; then
        echo "FAIL exported but in no public header: $s"
        bad=$((bad + 1))
    fi
done
echo "$n exported symbols checked against $inc/awith/*.h"
if ((bad)); then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "ok every_exported_symbol_is_declared_in_a_public_header"
echo "1 passed, 0 failed"
