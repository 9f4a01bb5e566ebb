#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Modules and linking, as a user outside the tree sees them (issue 13).
# Installs the build into a temporary prefix (meson install --destdir, the
# .pc files relocated there) and, with pkg-config only:
#   - a core-only program (awith-core) needs none of libpq, libcurl,
#     libjansson, libssl, libcrypto or the other awith libraries, and its
#     flags do not mention postgresql; only awith-pg's do; libawith-core
#     itself needs libc and pthread only, plus liburing when the io_uring
#     backend is built in (its Requires.private then says so);
#   - each module's program (tests/modules/<layer>.c) builds with
#     -Wall -Wextra -Werror against its own module and runs;
#   - each library's soname is libawith-<layer>.so.0; every public header
#     is installed; the installed libraries export only what the installed
#     headers declare (check_exports.sh);
#   - static links: each module's program links against the static
#     archives with `pkg-config --static --libs` and runs (core, io and
#     http also fully static, `cc -static`); where a third-party .pc file is
#     broken for --static on this system (Debian's libpq.pc: -lpgcommon
#     -lpgport; libcurl.pc: -lnghttp2 ... whose -dev packages are not
#     installed), the README's documented line (awith archives, that
#     library shared) is tested instead, and said so;
#   - every example builds with the README's line
#     `cc -Wall -Wextra -Werror app.c $(pkg-config --cflags --libs awith)`,
#     fetch_data among them, and echo_server so built stops cleanly on SIGINT.
#
#   tests/check_modules.sh SOURCE_ROOT BUILD_ROOT MODULES
# MODULES: the comma-separated modules the build made (awith-core,...).
# With DATABASE_URL set, the pg program runs a query; without, it proves a
# failed connect. Prints "ok NAME"/"FAIL NAME" and "<P> passed, <F> failed".
set -uo pipefail
src=${1:?usage: check_modules.sh SOURCE_ROOT BUILD_ROOT MODULES}
build=${2:?}
IFS=, read -r -a modules <<<"${3:?}"
cc=${CC_OUTSIDE:-cc}   # the user's compiler; not the sanitizer build's flags

tmp=$(mktemp -d)
trap 'kill "${server_pid:-}" 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok   $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; [[ -s $tmp/log ]] && sed 's/^/     /' "$tmp/log" | head -30; }
note() { echo "     note: $*"; }
has_module() { local m; for m in "${modules[@]}"; do [[ $m == "$1" ]] && return 0; done; return 1; }

# --- install into a temporary prefix -------------------------------------
dest=$tmp/dest
if ! meson install -C "$build" --no-rebuild --destdir "$dest" >"$tmp/log" 2>&1; then
    fail "meson install --destdir"
    echo "$pass passed, $fails failed"
    exit 1
fi
pc=$(find "$dest" -name awith-core.pc -print -quit)
[[ -n $pc ]] || { echo "FAIL no awith-core.pc installed"; echo "0 passed, 1 failed"; exit 1; }
pcdir=$(dirname "$pc")
prefix=$(sed -n 's/^prefix=//p' "$pc")
# relocate PCDIR PREFIX: the .pc files name the prefix they were built
# for; point them at where they are (what moving an install does).
relocate() { sed -i "s|^prefix=.*|prefix=$2|" "$1"/awith*.pc; }
relocate "$pcdir" "$dest$prefix"
export PKG_CONFIG_PATH=$pcdir
libdir=$(pkg-config --variable=libdir awith-core)
run() { LD_LIBRARY_PATH=$libdir timeout 60 "$@"; }
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p'; }

for m in "${modules[@]}" awith; do
    if pkg-config --exists "$m" 2>"$tmp/log"; then
        ok "module_is_installed: $m ($(pkg-config --modversion "$m"))"
    else
        fail "module_is_installed: $m"
    fi
done

# Every public header is installed (each layer installs its own: a header
# added to include/awith/ must be added to its layer's install_headers).
if ((${#modules[@]} == 5)); then
    incdir=$(pkg-config --variable=includedir awith-core)
    missing=$(cd "$src/include/awith" && for h in *.h; do [[ -f $incdir/awith/$h ]] || echo "$h"; done)
    if [[ -z $missing ]]; then
        ok "every_public_header_is_installed: $(cd "$incdir/awith" && echo *.h)"
    else
        echo "$missing" >"$tmp/log"
        fail "every_public_header_is_installed (meson.build install_headers)"
    fi
fi

# --- sonames ------------------------------------------------------------
for m in "${modules[@]}"; do
    so=$libdir/lib$m.so
    soname=$(readelf -d "$so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    if [[ $soname == "lib$m.so.0" && -e $libdir/lib$m.so.0 && -e $libdir/lib$m.a ]]; then
        ok "soname_is_version_0: lib$m.so ($soname, lib$m.a)"
    else
        : >"$tmp/log"
        fail "soname_is_version_0: lib$m.so has soname '$soname'"
    fi
done

# --- the installed boundary ------------------------------------------------
# check_exports.sh on the installed libraries against the installed headers.
# (Not in a fault-injection build, whose libawith-core exports alloc.h's
# wrappers on purpose; check_exports covers that one in the build tree.)
fault_build=$(python3 -c 'import json, sys
print(int(any(o["name"] == "fault_injection" and o["value"] for o in json.load(open(sys.argv[1])))))' \
    "$build/meson-info/intro-buildoptions.json" 2>/dev/null)
if [[ $fault_build != 1 ]]; then
    incdir=$(pkg-config --variable=includedir awith-core)
    if bash "$src/tests/check_exports.sh" "$incdir" "$libdir"/libawith-*.so >"$tmp/log" 2>&1; then
        ok "every_installed_library_exports_only_what_the_installed_headers_declare: $(ls "$libdir" | grep -c '^libawith-.*\.so$') libraries"
    else
        fail "every_installed_library_exports_only_what_the_installed_headers_declare"
    fi
fi

# --- core only: no third-party library ------------------------------------
third_party='libpq|libcurl|libjansson|libssl|libcrypto|libllhttp|libawith-(io|http|client|pg)'
flags=$(pkg-config --cflags --libs awith-core)
if ! grep -qiE 'postgresql|curl|jansson|ssl' <<<"$flags"; then
    ok "core_flags_name_no_third_party_library: $flags"
else
    echo "$flags" >"$tmp/log"
    fail "core_flags_name_no_third_party_library"
fi
core_so_needs=$(needed "$libdir/libawith-core.so" | tr '\n' ' ')
# With the io_uring backend (meson feature io_uring, on when liburing is
# found) the core also needs liburing, and says so in Requires.private;
# without it, libc and pthread only.
core_allowed='libc\.so\.6|libpthread\.so\.0|ld-linux.*'
core_uring=
if pkg-config --print-requires-private awith-core | grep -q '^liburing'; then
    core_allowed+='|liburing\.so\.2'
    core_uring=' (and liburing: the io_uring backend is built in)'
fi
if ! grep -qvE "^($core_allowed)\$" < <(needed "$libdir/libawith-core.so"); then
    ok "libawith_core_needs_only_libc: $core_so_needs$core_uring"
else
    : >"$tmp/log"
    fail "libawith_core_needs_only_libc: $core_so_needs$core_uring"
fi
if $cc -Wall -Wextra -Werror "$src/tests/modules/core.c" $flags -o "$tmp/core" >"$tmp/log" 2>&1; then
    direct=$(needed "$tmp/core" | tr '\n' ' ')
    all=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/core" | awk '{print $1}' | tr '\n' ' ')
    if grep -qE "$third_party" <<<"$direct $all"; then
        : >"$tmp/log"
        fail "core_only_program_pulls_no_third_party_library: needs $direct; loads $all"
    elif ! grep -q 'libawith-core.so.0' <<<"$direct"; then
        : >"$tmp/log"
        fail "core_only_program_pulls_no_third_party_library: libawith-core.so.0 not needed ($direct)"
    elif run "$tmp/core" >"$tmp/log" 2>&1; then
        ok "core_only_program_pulls_no_third_party_library: loads $all"
    else
        fail "core_only_program_pulls_no_third_party_library: it did not run"
    fi
else
    fail "core_only_program_pulls_no_third_party_library: it did not build"
fi

# -I/usr/include/postgresql reaches awith-pg (and awith) users only.
for m in "${modules[@]}"; do
    f=$(pkg-config --cflags "$m")
    if [[ $m == awith-pg ]]; then
        continue
    elif grep -q postgresql <<<"$f"; then
        echo "$f" >"$tmp/log"
        fail "postgresql_flags_reach_only_pg_users: $m has them"
    else
        ok "postgresql_flags_reach_only_pg_users: $m: '$f'"
    fi
done

# --- each module's program with its own module ---------------------------
# lib names each module's program must need, and must not.
declare -A must_not=(
    [awith-core]='libawith-(io|http|client|pg)|libssl|libcurl|libpq|libjansson'
    [awith-io]='libawith-(http|client|pg)|libcurl|libpq|libjansson'
    [awith-http]='libawith-(client|pg)|libcurl|libpq'
    [awith-client]='libawith-(http|pg)|libpq'
    [awith-pg]='libawith-(http|client)|libcurl'
)
for m in "${modules[@]}"; do
    layer=${m#awith-}
    prog=$src/tests/modules/$layer.c
    name="${layer}_program_builds_and_runs_with_its_own_module"
    if ! $cc -Wall -Wextra -Werror "$prog" $(pkg-config --cflags --libs "$m") -o "$tmp/$layer" >"$tmp/log" 2>&1; then
        fail "$name: cc -Wall -Wextra -Werror $layer.c \$(pkg-config --cflags --libs $m) failed"
        continue
    fi
    all=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/$layer" | awk '{print $1}' | tr '\n' ' ')
    if grep -qE "${must_not[$m]}" <<<"$all"; then
        : >"$tmp/log"
        fail "$name: loads more than its layers: $all"
    elif run "$tmp/$layer" >"$tmp/log" 2>&1; then
        ok "$name: $(tail -n 1 "$tmp/log")"
    else
        fail "$name: it did not run"
    fi
done

# --- static links -----------------------------------------------------------
# A copy of the install without the shared libraries: `-lawith-x` can only
# be the archive there.
sdest=$tmp/static
cp -a "$dest" "$sdest"
spcdir=${pcdir/#$dest/$sdest}
relocate "$spcdir" "$sdest$prefix"
slibdir=${libdir/#$dest/$sdest}
rm -f "$slibdir"/libawith-*.so*
spc() { PKG_CONFIG_PATH=$spcdir pkg-config "$@"; }
# Does DEP's own --static line link on this system?
links_static() {
    echo 'int main(void) { return 0; }' >"$tmp/empty.c"
    $cc "$tmp/empty.c" $(pkg-config --static --libs "$1") -o "$tmp/empty" >/dev/null 2>&1
}
declare -A third=([awith-client]=libcurl [awith-pg]=libpq)
for m in "${modules[@]}"; do
    layer=${m#awith-}
    prog=$src/tests/modules/$layer.c
    name="${layer}_links_statically_against_the_archives"
    dep=${third[$m]-}
    if [[ -z $dep ]] || links_static "$dep"; then
        line="\$(pkg-config --cflags --static --libs $m)"
        flags=$(spc --cflags --static --libs "$m")
    else
        # The README's line: awith's archives, that library shared.
        note "$dep's own 'pkg-config --static --libs $dep' does not link here ($(pkg-config --static --libs "$dep" | tr -s ' ')): testing the documented line"
        case $m in
        awith-client) line='$(pkg-config --cflags awith-client) -Wl,-Bstatic -lawith-client -lawith-io -lawith-core -Wl,-Bdynamic $(pkg-config --libs-only-L awith-core) $(pkg-config --libs libcurl jansson openssl) -pthread' ;;
        awith-pg) line='$(pkg-config --cflags awith-pg) -Wl,-Bstatic -lawith-pg -lawith-io -lawith-core -Wl,-Bdynamic $(pkg-config --libs-only-L awith-core) $(pkg-config --libs libpq jansson openssl) -pthread' ;;
        esac
        # The core's archive with the io_uring backend needs liburing too.
        [[ -n $core_uring ]] && line+=' -luring'
        # The same line, against the full install (shared libraries beside
        # the archives: -Wl,-Bstatic is what picks the archives there).
        flags=$(eval "echo $line")
    fi
    if ! $cc -Wall -Wextra -Werror "$prog" $flags -o "$tmp/s-$layer" >"$tmp/log" 2>&1; then
        fail "$name: cc $layer.c $line failed ($flags)"
        continue
    fi
    if needed "$tmp/s-$layer" | grep -q libawith; then
        needed "$tmp/s-$layer" >"$tmp/log"
        fail "$name: still needs a shared libawith"
    elif timeout 60 "$tmp/s-$layer" >"$tmp/log" 2>&1; then
        ok "$name: $line"
    else
        fail "$name: it did not run"
    fi
done
# Fully static (cc -static), where every dependency ships an archive.
for m in awith-core awith-io awith-http; do
    has_module "$m" || continue
    layer=${m#awith-}
    name="${layer}_links_fully_static"
    # glibc warns that getaddrinfo in a static program needs its NSS
    # libraries at run time: a linker warning, not our code's.
    if ! $cc -static -Wall -Wextra -Werror "$src/tests/modules/$layer.c" $(spc --cflags --static --libs "$m") \
        -o "$tmp/f-$layer" >"$tmp/log" 2>&1; then
        fail "$name: cc -static $layer.c \$(pkg-config --cflags --static --libs $m)"
    elif readelf -d "$tmp/f-$layer" | grep -q NEEDED; then
        : >"$tmp/log"
        fail "$name: the program still needs shared libraries"
    elif timeout 60 "$tmp/f-$layer" >"$tmp/log" 2>&1; then
        ok "$name: cc -static \$(pkg-config --cflags --static --libs $m)"
    else
        fail "$name: it did not run"
    fi
done

# --- every example, out of tree, with the README's line -------------------
if ((${#modules[@]} == 5)); then
    # Examples are examples/<name>.c or, with files of their own,
    # examples/<name>/<name>.c (the guide's programs are built by test_guide).
    for ex in "$src"/examples/*.c "$src"/examples/*/*.c; do
        [[ -e $ex && $ex != */examples/guide/* ]] || continue
        name=$(basename "$ex" .c)
        # An example that needs more than awith says how it is built, in a
        # comment: `$(pkg-config --cflags --libs awith hiredis)`.
        mods=$(grep -o -m 1 'pkg-config --cflags --libs [a-z0-9 -]*' "$ex" | sed 's/pkg-config --cflags --libs //')
        mods=${mods:-awith}
        if ! pkg-config --exists $mods 2>/dev/null; then
            note "example $name: skipped, pkg-config $mods is not available here"
            continue
        fi
        if $cc -Wall -Wextra -Werror "$ex" $(pkg-config --cflags --libs $mods) -o "$tmp/ex-$name" >"$tmp/log" 2>&1; then
            ok "example_builds_out_of_tree_with_the_readme_line: $name (pkg-config $mods)"
        else
            fail "example_builds_out_of_tree_with_the_readme_line: $name (pkg-config $mods)"
        fi
    done
    # echo_server, so built, stops on SIGINT with its message and status 0
    # (it used sigabbrev_np, declared only under the tree's -D_GNU_SOURCE).
    if [[ -x $tmp/ex-echo_server ]]; then
        port=$((20000 + RANDOM % 20000))
        LD_LIBRARY_PATH=$libdir "$tmp/ex-echo_server" --port "$port" >"$tmp/echo.out" 2>&1 &
        server_pid=$!
        for _ in $(seq 100); do grep -q listening "$tmp/echo.out" && break; sleep 0.05; done
        kill -INT "$server_pid"
        wait "$server_pid"
        rc=$?
        server_pid=
        cp "$tmp/echo.out" "$tmp/log"
        if ((rc == 0)) && grep -q 'received SIGINT' "$tmp/echo.out"; then
            ok "echo_server_built_out_of_tree_stops_cleanly_on_sigint"
        else
            fail "echo_server_built_out_of_tree_stops_cleanly_on_sigint: exit status $rc"
        fi
    fi
else
    note "not every layer is built: the examples are not built out of tree"
fi

echo "$pass passed, $fails failed"
((fails == 0))
