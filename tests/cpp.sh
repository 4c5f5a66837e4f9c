#!/bin/sh
# tests/cpp.sh -- asyncpat used from C++ (issue #12)
#   1. compile: asyncpat.h, alone and inside extern "C", and every program in
#      tests/cpp/ with g++ and clang++ in -std=c++17, c++20 and c++2b,
#      -Wall -Wextra -Wpedantic -Werror (6 modes)
#   2. layout: every asyncpat record's size, alignment and named-field
#      offsets as gcc and as clang lay them out in C11, static_asserted by
#      tests/cpp/layout_check.cpp in the 6 C++ modes; plus a negative control
#      (a C side built with another AP_CACHELINE must fail the asserts)
#   3. run: each family program (and the mixed C/C++ program) built -O2 with
#      g++ -std=c++17 and clang++ -std=c++20, run
#   4. TSan: the same programs with -fsanitize=thread -DAP_TEST_YIELD_RANDOM,
#      g++ -std=c++20 and clang++ -std=c++17 (halt_on_error: a report fails)
# One line per failure, then "cpp: N passed, N failed"; exits non-zero on any
# failure. CPP_SCALE multiplies iteration counts (default 1).
set -u
cd "$(dirname "$0")/.." || exit 1
out=build/cpp
mkdir -p "$out"
pass=0 fail=0
ok() { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | head -n 8; }
STRICT="-Wall -Wextra -Wpedantic -Werror"
FAMILIES="queues concurrency errors resources streams coordination performance"
MODES="g++:c++17 g++:c++20 g++:c++2b clang++:c++17 clang++:c++20 clang++:c++2b"
for cxx in g++ clang++ gcc clang; do
    command -v $cxx >/dev/null 2>&1 || { bad "$cxx not found"; }
done

# ---- 1. compile checks ----
printf 'extern "C" {\n#include "asyncpat.h"\n}\nint ap_cpp_probe;\n' > "$out/extern_c.cpp"
for m in $MODES; do
    cxx=${m%%:*} std=${m#*:}
    for src in "$out/extern_c.cpp" tests/cpp/*.cpp; do
        case $src in */layout_check.cpp) continue ;; esac
        if o=$($cxx -std=$std $STRICT -I. -Itests/cpp -fsyntax-only "$src" 2>&1); then ok
        else bad "compile $src with $cxx -std=$std" "$o"; fi
    done
done

# ---- 2. layout: C (gcc, clang) vs C++ (6 modes) ----
# the records: every struct/union tag defined in asyncpat/, laid out by clang
grep -ohE '^(typedef )?(struct|union) (ap_[A-Za-z0-9_]+) \{' asyncpat/*.h |
    awk '{print $(NF-1) " " $(NF-2)}' | sort -u |
    awk 'BEGIN { print "#include \"asyncpat.h\""; print "int ap__layout_probe[] = {" }
         { print "    (int)sizeof(" $2 " " $1 ")," } END { print "    0};" }' > "$out/probe.c"
if clang -std=c11 -I. -fsyntax-only -Xclang -fdump-record-layouts "$out/probe.c" > "$out/dump.txt" 2>"$out/dump.err"; then
    awk '
    /^\*\*\* Dumping/ { rec = ""; hdr = 1; next }
    hdr && /\| / {
        hdr = 0; name = $0; sub(/^[^|]*\| /, "", name)
        bare = name; sub(/^(struct|union) /, "", bare)
        if (bare ~ /^ap_[A-Za-z0-9_]*$/ && !(name in seen)) { rec = name; seen[name] = 1; print "T " rec }
        else rec = ""
        next
    }
    rec != "" && /^ +[0-9]+ \|   [^ ]/ {
        line = $0; sub(/^[^|]*\|   /, "", line); n = split(line, a, " "); f = a[n]
        if (f ~ /^[A-Za-z_][A-Za-z0-9_]*$/) print "F " rec "|" f
    }' "$out/dump.txt" > "$out/fields.txt"
    records=$(grep -c '^T' "$out/fields.txt"); fields=$(grep -c '^F' "$out/fields.txt")
    { echo '#include "asyncpat.h"'; echo '#include <stdio.h>'; echo 'int main(void) {'
      awk '/^T / { t = substr($0, 3)
                   printf "    printf(\"AP_LAYOUT_SIZE(%s, %%zu, %%zu)\\n\", sizeof(%s), (size_t)_Alignof(%s));\n", t, t, t }
           /^F / { s = substr($0, 3); split(s, a, "|")
                   printf "    printf(\"AP_LAYOUT_FIELD(%s, %s, %%zu)\\n\", offsetof(%s, %s));\n", a[1], a[2], a[1], a[2] }' "$out/fields.txt"
      echo '    return 0;'; echo '}'; } > "$out/layout_gen.c"
    if [ "$records" -ge 50 ] && [ "$fields" -ge 200 ]; then ok
    else bad "layout: only $records records / $fields fields found in clang's dump"; fi
    for cc in gcc clang; do
        if o=$($cc -std=c11 $STRICT -I. "$out/layout_gen.c" -o "$out/layout_gen_$cc" 2>&1) &&
           "$out/layout_gen_$cc" > "$out/layout_$cc.h"; then ok
        else bad "layout generator with $cc" "$o"; continue; fi
        for m in $MODES; do
            cxx=${m%%:*} std=${m#*:}
            if o=$($cxx -std=$std $STRICT -I. -DAP_LAYOUT_FILE="\"$out/layout_$cc.h\"" \
                   -fsyntax-only tests/cpp/layout_check.cpp 2>&1); then ok
            else bad "layout: C ($cc) vs C++ ($cxx -std=$std)" "$o"; fi
        done
    done
    # negative control: a C side with another cache line size must not pass
    if gcc -std=c11 -I. -DAP_CACHELINE=128 "$out/layout_gen.c" -o "$out/layout_gen_neg" 2>/dev/null &&
       "$out/layout_gen_neg" > "$out/layout_neg.h" &&
       ! g++ -std=c++17 -I. -DAP_LAYOUT_FILE="\"$out/layout_neg.h\"" -fsyntax-only \
           tests/cpp/layout_check.cpp >/dev/null 2>&1; then ok
    else bad "layout negative control: a mismatched C layout was not caught"; fi
else
    bad "layout: clang could not dump the record layouts" "$(cat "$out/dump.err")"
fi

# ---- 3. run, 4. TSan ----
build_run() { # name cxx std extra-flags...
    name=$1 cxx=$2 std=$3; shift 3
    case $cxx in g++) cc=gcc ;; *) cc=clang ;; esac
    exe="$out/$name-$cxx-$std$(echo "$*" | grep -q sanitize && echo -tsan)"
    if [ "$name" = mixed ]; then
        o=$($cc -std=c11 $STRICT -O2 -g -pthread "$@" -I. -Itests/cpp -c tests/cpp/mixed_c.c -o "$exe-c.o" 2>&1) &&
        o=$($cxx -std=$std $STRICT -O2 -g "$@" -I. -Itests/cpp tests/cpp/mixed.cpp "$exe-c.o" -o "$exe" -pthread 2>&1)
    else
        o=$($cxx -std=$std $STRICT -O2 -g "$@" -I. -Itests/cpp "tests/cpp/$name.cpp" -o "$exe" -pthread 2>&1)
    fi || { bad "build $name with $cxx -std=$std $*" "$o"; return; }
    if o=$(TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}" timeout 300 "$exe" 2>&1); then
        ok; echo "$o" | tail -n 1 | sed "s/^/  [$cxx -std=$std${*:+ $*}] /"
    else
        bad "run $name ($cxx -std=$std $*), exit $?" "$(echo "$o" | tail -n 20)"
    fi
}
for name in $FAMILIES mixed; do
    build_run $name g++ c++17
    build_run $name clang++ c++20
    build_run $name g++ c++20 -fsanitize=thread -DAP_TEST_YIELD_RANDOM
    build_run $name clang++ c++17 -fsanitize=thread -DAP_TEST_YIELD_RANDOM
done
echo "cpp: $pass passed, $fail failed"
[ $fail -eq 0 ]
