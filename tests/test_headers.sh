#!/bin/sh
# Every header compiles on its own, strict, with gcc and clang; also each
# with AP_NO_MALLOC and the condition-variable parker; and, as C++, every
# header alone with g++ and clang++ in -std=c++17, c++20 and c++2b. Prints one line per
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
# Strict C after system headers (the reading order asyncpat once forbade):
# asyncpat defines no feature macro, so nothing may depend on coming first;
# -pthread too (it defines _REENTRANT, which makes glibc show part of POSIX).
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || continue
    for defs in "" "-DAP_BLOCK_ON_CONDVAR" "-pthread" "-pthread -DAP_BLOCK_ON_CONDVAR"; do
        if out=$(printf '#include <stdio.h>\n#include <time.h>\n#include <pthread.h>\n#include <unistd.h>\n#include "asyncpat.h"\nint ap_header_probe;\n' |
                 $cc -std=c11 -Wall -Wextra -Wpedantic -Werror $defs -I. -fsyntax-only -x c - 2>&1); then
            pass=$((pass+1))
        else
            fail=$((fail+1)); echo "FAIL: asyncpat.h after system headers with $cc -std=c11 $defs"; echo "$out" | head -n 5
        fi
    done
done

# C++: every header alone in C++17, C++20 and C++2b (C++23) with g++ and
# clang++, strict; the umbrella header also with the two variants above.
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || { echo "headers: $cxx not found"; fail=$((fail+1)); continue; }
    for std in c++17 c++20 c++2b; do
        for h in asyncpat.h asyncpat/*.h; do
            for defs in "" "-DAP_NO_MALLOC" "-DAP_BLOCK_ON_CONDVAR"; do
                [ -n "$defs" ] && [ "$h" != asyncpat.h ] && continue
                if out=$(printf '#include "%s"\nint ap_header_probe;\n' "$h" |
                         $cxx -std=$std -Wall -Wextra -Wpedantic -Werror $defs -I. -fsyntax-only -x c++ - 2>&1); then
                    pass=$((pass+1))
                else
                    fail=$((fail+1)); echo "FAIL: $h alone with $cxx -std=$std $defs"; echo "$out" | head -n 5
                fi
            done
        done
    done
done
echo "headers: $pass passed, $fail failed"
[ $fail -eq 0 ]
