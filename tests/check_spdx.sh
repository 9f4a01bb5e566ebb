#!/bin/bash
# SPDX-License-Identifier: MIT
# Every source file of the project (C, C++, assembly, headers, shell and
# meson files under include/, src/, tests/, examples/, bench/, scripts/)
# carries an SPDX line naming the licence in meson.build and LICENSE, so a
# file copied out of the tree (an example, a header) still says what it is.
# Usage: check_spdx.sh SOURCE_ROOT
set -uo pipefail
root=${1:?usage: check_spdx.sh SOURCE_ROOT}
cd "$root" || exit 1
license=$(sed -n "s/^ *license: *'\([^']*\)'.*/\1/p" meson.build | head -1)
failed=0 n=0
if [[ -z "$license" ]]; then
    echo "FAIL spdx: no license: in meson.build"
    exit 1
fi
if ! grep -q "^$license License" LICENSE 2>/dev/null; then
    echo "FAIL spdx: LICENSE does not start with \"$license License\""
    failed=1
fi
while IFS= read -r -d '' f; do
    n=$((n + 1))
    # Within the first 3 lines (a shebang may come first).
    if ! head -n 3 "$f" | grep -q "SPDX-License-Identifier: $license\b"; then
        echo "missing or wrong SPDX line: $f"
        failed=1
    fi
done < <(git ls-files -z -- 'include/*.h' 'src/*.c' 'src/*.h' 'src/*.S' 'tests/*.c' 'tests/*.cpp' \
    'tests/*.h' 'tests/*.sh' 'examples/*.c' 'examples/*.h' 'bench/*.c' 'bench/*.sh' 'bench/*.py' 'scripts/*.sh' \
    2>/dev/null)
if ((n == 0)); then
    echo "FAIL spdx: no source files found (not a git checkout?)"
    exit 1
fi
if ((failed)); then
    echo "FAIL every_source_file_names_its_licence_in_an_spdx_line ($n files checked)"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "ok every_source_file_names_its_licence_in_an_spdx_line ($n files checked)"
echo "1 passed, 0 failed"
