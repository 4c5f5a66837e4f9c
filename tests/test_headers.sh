#!/bin/sh
# Every header compiles on its own, strict, with gcc and clang; also each
# with AP_NO_MALLOC and the condition-variable parker. Prints one line per
# failure and "headers: N passed, N failed"; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || { echo "headers: $cc not found"; fail=$((fail+1)); continue; }
    for h in asyncpat.h asyncpat/*.h; do
        for defs in "" "-DAP_NO_MALLOC" "-DAP_BLOCK_ON_CONDVAR"; do
            if out=$(printf '#include "%s"\nint ap_header_probe;\n' "$h" |
                     $cc -std=c11 -Wall -Wextra -Wpedantic -Werror $defs -I. -fsyntax-only -x c - 2>&1); then
                pass=$((pass+1))
            else
                fail=$((fail+1)); echo "FAIL: $h alone with $cc $defs"; echo "$out" | head -n 5
            fi
        done
    done
done
echo "headers: $pass passed, $fail failed"
[ $fail -eq 0 ]
