#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The reference pages, as a user gets them (issue 13): `meson install` into
# a temporary DESTDIR, then
#   1. every symbol the installed libawith*.so export has a page that
#      `man -w` finds (its group page or a link to it);
#   2. so does every public macro of include/awith/*.h (every #define not
#      starting with AW__/aw__/_, include guards aside) -- read from the
#      headers here, not from the generator, so a name the generator misses
#      fails;
#   3. a name nobody declared has no page (the lookup can fail);
#   4. every page that is not a link renders without a warning (man
#      --warnings, groff -ww);
#   5. every public function and macro declaration has a contract comment
#      (gen_man.py --check): one added without a word fails here;
#   6. `man aw_with` and `man aw_pg_pool` show their pages.
#
#   tests/check_man.sh BUILD_DIR SOURCE_ROOT PREFIX MANDIR LIBDIR
# (an extra argument, scripts/test.sh's AW_TEST_FILTER, is ignored).
set -uo pipefail
build=${1:?usage: check_man.sh BUILD_DIR SOURCE_ROOT PREFIX MANDIR LIBDIR}
root=$2 prefix=$3 mandir=$4 libdir=$5
[[ $mandir == /* ]] || mandir=$prefix/$mandir
[[ $libdir == /* ]] || libdir=$prefix/$libdir

pass=0 fails=0
ok()   { pass=$((pass + 1)); echo "ok   $*"; }
fail() { fails=$((fails + 1)); echo "FAIL $*"; }
finish() {
    echo "$pass passed, $fails failed"
    ((fails == 0))
    exit
}

for tool in man groff nm python3 meson; do
    command -v "$tool" >/dev/null || { fail "$tool is not installed (man-db, groff-base, binutils)"; finish; }
done

dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
if ! meson install -C "$build" --destdir "$dest" --no-rebuild >"$dest.log" 2>&1; then
    fail "meson install --destdir failed:"
    sed 's/^/     /' "$dest.log" | tail -20
    rm -f "$dest.log"
    finish
fi
rm -f "$dest.log"
man_root=$dest$mandir
lib_root=$dest$libdir
[[ -d $man_root/man3 ]] || { fail "no man3 directory installed under $man_root"; finish; }

# missing_pages NAME...: print the names without a page. A page is there
# under the name's exact file name (man's lookup ignores case: AW_WITH must
# not be satisfied by aw_with.3 alone), and man, searching the installed
# tree only, finds one page per name (one run of man for all of them).
missing_pages() {
    local name found
    for name; do
        [[ -f $man_root/man3/$name.3 ]] || echo "$name"
    done
    found=$(MANPATH=$man_root man -w "$@" 2>/dev/null | grep -c "^$man_root/")
    if ((found != $#)); then
        for name; do
            MANPATH=$man_root man -w "$name" 2>/dev/null | grep -q "^$man_root/" || echo "$name"
        done
    fi
}

# 1. Exported symbols.
libs=$(find "$lib_root" -maxdepth 1 -name 'libawith*.so*' -type f 2>/dev/null)
if [[ -z $libs ]]; then
    fail "no libawith*.so installed under $lib_root"
else
    syms=() internal=0
    for s in $(nm -D --defined-only $libs | awk 'NF >= 3 {print $3}' | sed 's/@.*//' | sort -u); do
        case $s in
        _init | _fini | __bss_start | _edata | _end) continue ;;
        # Internal names the public macros and inline functions reach
        # (AW_WITH calls aw__with_begin): declared in the headers, which
        # say "do not call directly"; documented with those macros, no
        # page of their own. check_exports proves they are declared.
        aw__* | AW__*) internal=$((internal + 1)); continue ;;
        esac
        syms+=("$s")
    done
    missing=$(missing_pages "${syms[@]}" | sort -u | tr '\n' ' ')
    if [[ -n $missing ]]; then
        fail "every_exported_symbol_has_a_man_page: no page for $missing"
    else
        ok "every_exported_symbol_has_a_man_page (${#syms[@]} symbols of $(echo $libs | wc -w) libraries; $internal aw__ internals exempt)"
    fi
fi

# 2. Public macros, read from the headers with the preprocessor's eye: a
# #define at the start of a line; the include guard is the #define right
# after the #ifndef of the same name.
macros=$(awk '
    /^[ \t]*#[ \t]*ifndef[ \t]/ { guard = $2; next }
    /^[ \t]*#[ \t]*define[ \t]/ {
        name = $0
        sub(/^[ \t]*#[ \t]*define[ \t]+/, "", name)
        sub(/[^A-Za-z0-9_].*$/, "", name)
        if (!(name == guard && name ~ /_H$/) && name !~ /^(aw__|AW__|_)/) print name
        guard = ""
        next
    }
    NF { guard = "" }' "$root"/include/awith/*.h | sort -u)
n=$(wc -w <<<"$macros")
missing=$(missing_pages $macros | sort -u | tr '\n' ' ')
if ((n == 0)); then
    fail "every_public_macro_has_a_man_page: no macros found in $root/include/awith"
elif [[ -n $missing ]]; then
    fail "every_public_macro_has_a_man_page: no page for $missing"
else
    ok "every_public_macro_has_a_man_page ($n macros)"
fi

# 3. The lookup can fail.
if [[ -z $(missing_pages aw_no_such_function) ]] || MANPATH=$man_root man -w aw_no_such_function >/dev/null 2>&1; then
    fail "an_undeclared_name_has_no_page: aw_no_such_function has one"
else
    ok "an_undeclared_name_has_no_page"
fi

# 4. Rendering. Link pages (.so) are checked by the lookups above. groff
# with every warning on, one run over all pages; man-db's own pipeline
# (preconv, tbl, groff at 80 columns: about half a second a page on a busy
# machine) over the header pages, awith(7) and the two the issue names.
pages=$(grep -L '^\.so ' "$man_root"/man3/*.3 "$man_root"/man7/*.7)
n=$(wc -w <<<"$pages")
w=$(groff -man -ww -z -Tutf8 $pages 2>&1
    cd "$man_root" && MANWIDTH=80 MANPATH=$man_root man --warnings=all -l \
        man3/awith-*.3 man7/awith.7 man3/aw_with.3 man3/aw_pg_pool.3 2>&1 >/dev/null)
if ((n == 0)); then
    fail "the_pages_render_without_warnings: no pages"
elif [[ -n $w ]]; then
    fail "the_pages_render_without_warnings:"
    echo "$w" | head -10 | sed 's/^/     /'
else
    ok "the_pages_render_without_warnings ($n pages)"
fi
links=0 broken=()
while read -r f t; do
    links=$((links + 1))
    [[ -f $man_root/$t ]] || broken+=("${f##*/} -> $t")
done < <(awk 'FNR == 1 && $1 == ".so" { print FILENAME, $2 }' "$man_root"/man3/*.3)
if ((links == 0)); then
    fail "every_link_page_names_an_installed_page: no link pages"
elif ((${#broken[@]})); then
    fail "every_link_page_names_an_installed_page: ${broken[*]}"
else
    ok "every_link_page_names_an_installed_page ($links links)"
fi

# 5. Every public function and macro declaration says what it does.
if out=$(python3 "$root/man/gen_man.py" --check "$root/include" 2>&1); then
    ok "every_public_declaration_has_a_contract_comment"
else
    fail "every_public_declaration_has_a_contract_comment:"
    echo "$out" | sed 's/^/     /'
fi

# 6. The pages the issue names, as a user types them.
for name in aw_with aw_pg_pool aw_pg_pool_acquire AW_WITH AW_TIMEOUT; do
    text=$(MANPATH=$man_root MANWIDTH=80 man "$name" 2>/dev/null)
    if grep -qw -- "$name" <<<"$(sed -n '/^NAME/,/^SYNOPSIS/p' <<<"$text")"; then
        ok "man_${name}_shows_its_page"
    else
        fail "man_${name}_shows_its_page: its NAME section does not list $name"
    fi
done
if MANPATH=$man_root MANWIDTH=80 man 7 awith 2>/dev/null | grep -q 'aw_pg_pool(3)'; then
    ok "man_7_awith_lists_the_groups"
else
    fail "man_7_awith_lists_the_groups"
fi
finish
