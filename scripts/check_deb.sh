#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The Debian packages, end to end, as a user gets them:
#   1. build libawith0, libawith-dev and awith-examples from a scratch copy of
#      this tree with `dpkg-buildpackage -us -uc -b` (the tree stays clean:
#      dpkg-buildpackage writes its .debs into the copy's parent directory);
#   2. lintian on the result: any error or warning not overridden fails;
#   3. `dpkg -i` the three packages;
#   4. copy two example sources out of the installed awith-examples package
#      into an empty directory and build them there with the compiler and
#      `pkg-config` only (a core-only one with awith-core when that module
#      exists, and the HTTP hello world with awith), then run them;
#   5. run an example binary the package installed;
#   6. `dpkg --purge` the packages and check nothing of them is left.
# The packages are purged on every way out (failure, ^C), so the machine is
# left as it was. Needs root (dpkg -i); otherwise it skips (exit 77) with a
# message. Refuses to run if an awith package is already installed.
#
#   bash scripts/check_deb.sh
#
# Output is the test harness's: "ok NAME" / "FAIL NAME: why" per step and a
# last line "<N> passed, <N> failed" (scripts/test.sh tallies it). 65 s on
# an idle 2-core machine (the package build about 25 s of CPU, lintian 10 s);
# several minutes when other builds share the cores.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
TREE=$PWD

PKGS=(libawith0 libawith-dev awith-examples)
PASSED=0
FAILED=0
INSTALLED=0
TMP=

ok() { echo "ok $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1"; FAILED=$((FAILED + 1)); }

summary() {
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
}

# dpkg_locked ARGS...: dpkg, retried while another dpkg or apt holds the
# lock (a shared machine, or unattended upgrades), for up to two minutes.
dpkg_locked() {
    local out rc i
    for ((i = 0; i < 60; i++)); do
        out=$(dpkg "$@" 2>&1)
        rc=$?
        if ((rc != 0)) && grep -qi 'lock' <<<"$out"; then
            sleep 2
            continue
        fi
        echo "$out"
        return $rc
    done
    echo "$out"
    return $rc
}

cleanup() {
    if ((INSTALLED)); then
        INSTALLED=0
        echo "== removing the packages: ${PKGS[*]}"
        dpkg_locked --purge "${PKGS[@]}" >/dev/null ||
            echo "WARNING: dpkg --purge ${PKGS[*]} failed: remove them by hand"
    fi
    [[ -z $TMP ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ((EUID != 0)); then
    echo "SKIP: scripts/check_deb.sh installs packages with dpkg -i: run it as root"
    echo "0 passed, 0 failed"
    exit 77
fi

missing=()
for tool in dpkg-buildpackage dh lintian pkg-config cc curl python3; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    fail "tools_present: not found: ${missing[*]} (scripts/test.sh installs debhelper, dpkg-dev, lintian, fakeroot, curl)"
    summary
    exit 1
fi

for p in "${PKGS[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed'; then
        fail "no_awith_package_installed_before: $p is already installed; remove it first (dpkg --purge ${PKGS[*]}): this check installs and removes its own"
        summary
        exit 1
    fi
done

TMP=$(mktemp -d /tmp/awith-deb.XXXXXX)
chmod 755 "$TMP"
SRC=$TMP/awith

# 1. Build in a scratch copy: the tracked and the new (not ignored) files of
# the tree, so uncommitted work is packaged but no build directory is.
mkdir "$SRC"
if git -C "$TREE" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$TREE" ls-files -z -co --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - -cf - | tar -xf - -C "$SRC"
else
    tar --exclude='./build*' -cf - . | tar -xf - -C "$SRC"
fi
echo "== dpkg-buildpackage -us -uc -b (in $SRC; log in $TMP/build.log)"
start=$SECONDS
if (cd "$SRC" && DEB_BUILD_OPTIONS="nocheck noddebs parallel=2" \
    dpkg-buildpackage -us -uc -b) >"$TMP/build.log" 2>&1; then
    ok "deb_packages_build_with_dpkg_buildpackage ($((SECONDS - start)) s)"
else
    tail -n 40 "$TMP/build.log"
    fail "deb_packages_build_with_dpkg_buildpackage: dpkg-buildpackage failed (log above)"
    summary
    exit 1
fi
debs=()
for p in "${PKGS[@]}"; do
    f=$(ls "$TMP/${p}_"*.deb 2>/dev/null | head -n 1)
    [[ -n $f ]] && debs+=("$f")
done
if ((${#debs[@]} != ${#PKGS[@]})); then
    fail "deb_packages_build_with_dpkg_buildpackage: expected ${PKGS[*]}, got: $(cd "$TMP" && ls ./*.deb)"
    summary
    exit 1
fi

# 2. lintian: errors and warnings fail (overrides in debian/*.lintian-overrides
# say why each one is there); info and pedantic tags are shown only.
echo "== lintian"
out=$(lintian --allow-root --display-info --pedantic --fail-on error,warning "$TMP"/*.changes 2>&1)
rc=$?
[[ -z $out ]] || echo "$out"
if ((rc == 0)); then
    ok lintian_reports_no_error_or_warning
else
    fail "lintian_reports_no_error_or_warning: $(grep -cE '^[EW]: ' <<<"$out") error/warning tag(s) above"
fi

# 3. Install.
echo "== dpkg -i ${debs[*]##*/}"
INSTALLED=1
if out=$(dpkg_locked -i "${debs[@]}"); then
    ok packages_install_with_dpkg
else
    echo "$out"
    fail "packages_install_with_dpkg: dpkg -i failed (above)"
    summary
    exit 1
fi

# What the -dev package must hold: headers, a pkg-config module, the static
# library; and the reference manual pages once the tree has them.
dev_files=$(dpkg -L libawith-dev)
bad=()
grep -q '^/usr/include/awith/core\.h$' <<<"$dev_files" || bad+=("awith/core.h")
grep -q '/pkgconfig/awith\.pc$' <<<"$dev_files" || bad+=("awith.pc")
grep -q '/libawith[^/]*\.a$' <<<"$dev_files" || bad+=("a static library")
# The build installed man pages (meson install, staged in debian/tmp):
# libawith-dev must ship them (debian/rules), and man must find them.
if [[ -d $SRC/debian/tmp/usr/share/man ]]; then
    if ! grep -q '^/usr/share/man/man3/' <<<"$dev_files"; then
        bad+=("man pages in /usr/share/man/man3")
    elif command -v man >/dev/null; then
        for page in aw_with aw_pg_pool; do
            man -w "$page" >/dev/null 2>&1 || bad+=("a page man finds for $page")
        done
    fi
fi
npages=$(grep -c '^/usr/share/man/man[0-9]/.' <<<"$dev_files")
if ((${#bad[@]})); then
    fail "dev_package_has_headers_pkgconfig_static_library_and_man_pages: missing ${bad[*]}"
else
    ok "dev_package_has_headers_pkgconfig_static_library_and_man_pages ($npages man pages)"
fi

# 4. Two examples built outside the tree, from the installed sources, with
# pkg-config only: no -I into the tree, no PKG_CONFIG_PATH.
OUT=$TMP/out
mkdir "$OUT"
EXDOC=/usr/share/doc/awith-examples/examples
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR CPATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH

# The example sources as installed; where dpkg was told not to install
# documentation (path-exclude=/usr/share/doc/*, as in slim container images)
# the same files from the awith-examples package itself.
if [[ ! -d $EXDOC ]]; then
    echo "== $EXDOC not installed (dpkg path-exclude?): taking the sources from the .deb"
    mkdir "$TMP/exdeb"
    dpkg-deb -x "${debs[2]}" "$TMP/exdeb"
    EXDOC=$TMP/exdeb$EXDOC
fi

# build_example NAME MODULE: cc -Wall -Wextra -Werror NAME.c with MODULE's
# flags, in $OUT; prints the command.
build_example() {
    local name=$1 module=$2 src
    src=$EXDOC/$name.c
    [[ -f $src ]] || src=$EXDOC/$name.c.gz
    if [[ $src == *.gz ]]; then zcat "$src" >"$OUT/$name.c"; else cp "$src" "$OUT/$name.c"; fi
    echo "\$ cc -Wall -Wextra -Werror -o $name $name.c \$(pkg-config --cflags --libs $module)"
    # shellcheck disable=SC2046 # pkg-config's flags are words
    (cd "$OUT" && cc -Wall -Wextra -Werror -o "$name" "$name.c" $(pkg-config --cflags --libs "$module"))
}

core_module=awith
pkg-config --exists awith-core && core_module=awith-core
if build_example async_logger "$core_module"; then
    got=$("$OUT/async_logger" </dev/null 2>&1)
    want=$'Async Enter\nInside block\nAsync Exit'
    if [[ $got == "$want" ]]; then
        ok "core_example_builds_out_of_tree_with_pkg_config_and_runs ($core_module)"
    else
        fail "core_example_builds_out_of_tree_with_pkg_config_and_runs: async_logger printed: $got"
    fi
    # Every libawith* it loads is a file of the installed libawith0.
    bad=() libs=()
    while read -r lib; do
        lib=$(readlink -f "$lib")
        libs+=("$lib")
        dpkg -S "$lib" 2>/dev/null | grep -q '^libawith0[:]' || bad+=("$lib")
    done < <(ldd "$OUT/async_logger" | grep -o '/[^ ]*libawith[^ ]*')
    # A core-only program built with awith-core loads no third-party library.
    if [[ $core_module == awith-core ]]; then
        for lib in libpq libcurl libjansson libssl libcrypto; do
            ldd "$OUT/async_logger" | grep -q "$lib" && bad+=("$lib (a core-only program)")
        done
    fi
    if ((${#libs[@]} && ${#bad[@]} == 0)); then
        ok "out_of_tree_program_links_the_installed_shared_library (${libs[*]})"
    else
        fail "out_of_tree_program_links_the_installed_shared_library: not from libawith0: ${bad[*]:-no libawith at all}"
    fi
else
    fail "core_example_builds_out_of_tree_with_pkg_config_and_runs: the build failed"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_hello_server BINARY: start it on a free port, GET / with curl, stop it
# with SIGINT; succeeds when the answer is the JSON hello and the server
# exits 0.
run_hello_server() {
    local bin=$1 port pid body rc
    port=$(free_port)
    "$bin" --port "$port" </dev/null >"$TMP/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.05
    done
    body=$(curl -s --max-time 5 "http://127.0.0.1:$port/")
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    if [[ $body != '{"message":"Hello, World!"}' || $rc != 0 ]]; then
        echo "answer: $body; exit status $rc; server output:"
        cat "$TMP/server.log"
        return 1
    fi
}

if build_example hello_server awith; then
    if run_hello_server "$OUT/hello_server"; then
        ok "http_example_builds_out_of_tree_with_pkg_config_and_serves (awith)"
    else
        fail "http_example_builds_out_of_tree_with_pkg_config_and_serves: see above"
    fi
else
    fail "http_example_builds_out_of_tree_with_pkg_config_and_serves: the build failed"
fi

# 5. An example binary as the awith-examples package installed it.
EXBIN=/usr/libexec/awith/examples
if [[ -x $EXBIN/nesting ]] && "$EXBIN/nesting" </dev/null >"$TMP/nesting.log" 2>&1 &&
    [[ -x $EXBIN/hello_server ]] && run_hello_server "$EXBIN/hello_server" &&
    ldd "$EXBIN/hello_server" | grep -q 'libawith[^ ]* => /'; then
    ok "installed_example_programs_run ($EXBIN/nesting, $EXBIN/hello_server)"
else
    cat "$TMP/nesting.log" 2>/dev/null
    fail "installed_example_programs_run: $EXBIN/nesting or hello_server missing, failed, or not linked to the shared library"
fi

# 6. Remove, and check nothing is left.
echo "== dpkg --purge ${PKGS[*]}"
if out=$(dpkg_locked --purge "${PKGS[@]}"); then
    INSTALLED=0
    left=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed' && left+=("$p")
    done
    [[ -e /usr/include/awith ]] && left+=(/usr/include/awith)
    pkg-config --exists awith && left+=("pkg-config module awith")
    [[ -e $EXBIN ]] && left+=("$EXBIN")
    if ((${#left[@]})); then
        fail "packages_purge_leaving_nothing: still there: ${left[*]}"
    else
        ok packages_purge_leaving_nothing
    fi
else
    echo "$out"
    fail "packages_purge_leaving_nothing: dpkg --purge failed (above)"
fi

summary
