#!/bin/sh
# The test driver behind `make test` and its stage targets.
#   tests/run.sh all       deps, headers, cpp, docs, shape, benchtable, examples, servers, asan,
#                          verify, relaxed, models, tsan, cross, mutants, fuzz, install, build
#                          (stops at the first failing stage)
#   tests/run.sh STAGE     one stage: deps headers cpp docs shape benchtable examples servers
#                          asan verify relaxed models tsan cross mutants fuzz install build
# Ends with one line "N passed, N failed" (counted per Criterion test, per
# stress program and compiler, per header check, per docs item).
# Environment: AP_TEST_SEED (stress seed; default: time-based, printed),
#              CRITERION_JOBS (default 2), STRESS_SCALE (default 1).
set -u
cd "$(dirname "$0")/.."
B=build
PASS=0; FAIL=0
TESTCFLAGS="-std=gnu11 -Wall -Wextra -Werror -g -I."
: "${AP_TEST_SEED:=$(date +%s)}"; export AP_TEST_SEED
: "${CRITERION_JOBS:=2}"

note() { printf '== %s\n' "$*"; }
ok()   { PASS=$((PASS + ${1:-1})); }
bad()  { FAIL=$((FAIL + ${1:-1})); }

criterion_flags() {
    pkg-config --cflags --libs criterion 2>/dev/null || echo "-lcriterion"
}

stage_deps() {
    note "deps"
    sh scripts/deps.sh cross || true # optional: the cross stage says when it skips
    if sh scripts/deps.sh test; then return 0; fi
    bad; return 1
}

stage_headers() {
    note "headers: each header alone, strict, gcc and clang (C11) and g++/clang++ (c++17/20/2b), also after system headers"
    out=$(sh tests/test_headers.sh); rc=$?
    echo "$out" | grep -v '^headers:' ; echo "$out" | tail -n 1
    p=$(echo "$out" | sed -n 's/^headers: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(echo "$out" | sed -n 's/^headers: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    ok "${p:-0}"; bad "${f:-1}"
    return $rc
}

stage_examples() {
    note "examples: strict build with gcc and clang, then run"
    rc=0
    for cc in gcc clang; do
        if make -s --no-print-directory examples CC=$cc BUILD=$B/$cc >/dev/null; then ok; else bad; rc=1; fi
    done
    for t in examples/*.test; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .test)
        if BIN="$B/gcc/examples/$name" sh "$t"; then ok; else echo "FAIL: example $name"; bad; rc=1; fi
    done
    return $rc
}

stage_asan() {
    note "asan: Criterion suite under AddressSanitizer + UndefinedBehaviorSanitizer"
    mkdir -p $B/asan
    rc=0
    for src in tests/test_*.c; do
        [ -f "$src" ] || continue
        name=$(basename "$src" .c)
        bin=$B/asan/$name
        if ! gcc $TESTCFLAGS -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer "$src" -o "$bin" $(criterion_flags) -pthread; then
            echo "FAIL: build $src"; bad; rc=1; continue
        fi
        log=$B/asan/$name.log
        ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
            "$bin" --jobs "$CRITERION_JOBS" >"$log" 2>&1
        brc=$?
        syn=$(grep 'Synthesis:' "$log" | tail -n 1)
        p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        t=$(echo "$syn" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
        if [ -z "$t" ]; then
            echo "FAIL: $name produced no synthesis (rc=$brc)"; tail -n 20 "$log"; bad; rc=1; continue
        fi
        f=$((t - p))
        [ $brc -ne 0 ] && [ $f -eq 0 ] && f=1
        ok "$p"; bad "$f"
        printf '   %-24s %s\n' "$name" "$(echo "$syn" | sed 's/.*Synthesis: //')"
        if [ $f -ne 0 ]; then grep -E '\[(FAIL|----)\]|ERROR|runtime error' "$log" | head -n 40; rc=1; fi
    done
    return $rc
}

stage_tsan() {
    note "tsan: standalone stress programs under ThreadSanitizer, gcc and clang, AP_TEST_SEED=$AP_TEST_SEED"
    rc=0
    for cc in gcc clang; do
        mkdir -p $B/tsan-$cc
        for src in tests/stress/*.c; do
            [ -f "$src" ] || continue
            name=$(basename "$src" .c)
            bin=$B/tsan-$cc/$name
            if ! $cc $TESTCFLAGS -O1 -fsanitize=thread -DAP_TEST_YIELD_RANDOM "$src" -o "$bin" -pthread; then
                echo "FAIL: build $src with $cc"; bad; rc=1; continue
            fi
            start=$(date +%s)
            if TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$bin" >$bin.log 2>&1; then
                ok; printf '   %-28s %-5s ok (%ss)\n' "$name" "$cc" "$(( $(date +%s) - start ))"
            else
                bad; rc=1
                echo "FAIL: $name ($cc), AP_TEST_SEED=$AP_TEST_SEED"; tail -n 30 $bin.log
            fi
        done
    done
    return $rc
}

# count_line STAGE OUT: add "STAGE: N passed, N failed" from OUT to the tally
count_line() {
    p=$(echo "$2" | sed -n "s/^$1: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p")
    f=$(echo "$2" | sed -n "s/^$1: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p")
    ok "${p:-0}"; bad "${f:-1}"
}

stage_docs() {
    note "docs: header USAGE blocks and README C snippets are held by compiled code (tests/docs.sh)"
    out=$(sh tests/docs.sh); rc=$?
    echo "$out" | sed 's/^/   /'
    count_line docs "$out"
    return $rc
}

stage_verify() {
    note "verify: deterministic scheduler, every interleaving within the preemption bound, SC, x86-TSO and C11 (tests/verify)"
    out=$(sh tests/verify/run.sh 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    count_line verify "$out"
    return $rc
}

stage_models() {
    note "models: Promela protocol models checked with spin, and their mutants (tests/verify/models)"
    out=$(sh tests/verify/models/run.sh 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    count_line models "$out"
    return $rc
}

stage_mutants() {
    note "mutants: every mutant patch (tests/mutants/*.patch) must be caught by its checker (tests/mutants.sh)"
    out=$(sh tests/mutants.sh 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    c=$(echo "$out" | sed -n 's/^mutants: \([0-9]*\) caught, \([0-9]*\) survived.*/\1/p')
    s=$(echo "$out" | sed -n 's/^mutants: \([0-9]*\) caught, \([0-9]*\) survived.*/\2/p')
    ok "${c:-0}"; bad "${s:-1}"
    [ $rc -ne 0 ] && [ "${s:-1}" -eq 0 ] && bad
    return $rc
}

stage_fuzz() {
    note "fuzz: libFuzzer harnesses (clang, ASan+UBSan) replayed over the committed corpus"
    out=$(sh tests/fuzz/run.sh corpus 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    p=$(echo "$out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
    f=$(echo "$out" | sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
    ok "${p:-0}"; bad "${f:-1}"
    [ $rc -eq 0 ] && [ "${f:-1}" = 0 ]
}

stage_install() {
    note "install: make install PREFIX=tmp, pkg-config, and vendoring by copy"
    tmp=$(mktemp -d); rc=0
    printf '#include <asyncpat.h>\nint main(void){ ap_mpmc *q; if (ap_mpmc_create(&q, 4, sizeof(int), 0)) return 1;\n int x = 7, y = 0; if (ap_mpmc_try_push(q, &x) || ap_mpmc_try_pop(q, &y) || y != 7) return 1;\n ap_mpmc_destroy(q); return 0; }\n' > $tmp/use.c
    if make -s --no-print-directory install PREFIX=$tmp/prefix >/dev/null &&
       cflags=$(PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig pkg-config --cflags asyncpat) &&
       libs=$(PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig pkg-config --libs asyncpat) &&
       gcc -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags $tmp/use.c -o $tmp/use $libs -pthread && $tmp/use &&
       make -s --no-print-directory uninstall PREFIX=$tmp/prefix >/dev/null &&
       [ ! -e $tmp/prefix/include/asyncpat.h ]; then
        ok; echo "   install + pkg-config + uninstall ok"
    else
        bad; rc=1; echo "FAIL: install / pkg-config"
    fi
    mkdir -p $tmp/vendor/third_party && cp -r asyncpat.h asyncpat $tmp/vendor/third_party/
    if gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -I$tmp/vendor/third_party $tmp/use.c -o $tmp/use2 -pthread && $tmp/use2; then
        ok; echo "   vendoring by copy ok"
    else
        bad; rc=1; echo "FAIL: vendoring by copy"
    fi
    rm -rf $tmp
    return $rc
}

# stage_script NAME SCRIPT WHAT: a script that ends "NAME: N passed, N failed"
stage_script() {
    note "$1: $3 ($2)"
    out=$(sh "$2" 2>&1); rc=$?
    echo "$out" | sed 's/^/   /'
    count_line "$1" "$out"
    return $rc
}

stage_benchtable() {
    note "benchtable: README.md's bench table is what bench/report.sh makes of bench/results/*.tsv"
    if sh bench/report.sh --check; then ok; return 0; fi
    bad; return 1
}

run() {
    case "$1" in
    deps) stage_deps ;; headers) stage_headers ;; docs) stage_docs ;; examples) stage_examples ;;
    asan) stage_asan ;; tsan) stage_tsan ;; mutants) stage_mutants ;; fuzz) stage_fuzz ;;
    verify) stage_verify ;; models) stage_models ;;
    install) stage_install ;; benchtable) stage_benchtable ;;
    shape) stage_script shape tests/shape.sh "header names, enum values, doc layout" ;;
    relaxed) note "relaxed: every relaxed atomic covered by a C11-mode scenario, tagged or listed (tests/relaxed.sh)"
        out=$(RELAXED_COVER=build/verify/relaxed.cover sh tests/relaxed.sh 2>&1); rc=$?
        echo "$out" | grep -v '^ok' | sed 's/^/   /'
        count_line relaxed "$out"; return $rc ;;
    build) stage_script build tests/build.sh "CMake (add_subdirectory, find_package, FetchContent), meson, pkg-config, single header, C++ consumers" ;;
    cross) note "cross: unit tests + stress on aarch64 (qemu-user) and i386 (-m32), registration fallback (tests/cross.sh)"
        out=$(sh tests/cross.sh 2>&1); rc=$?
        echo "$out" | sed 's/^/   /'
        case "$out" in *"cross: skipped"*) return 0 ;; esac
        count_line cross "$out"; return $rc ;;
    cpp) stage_script cpp tests/cpp.sh "asyncpat from C++ (g++/clang++, c++17/20/2b): compile, C vs C++ layout, one threaded program per family plain and under TSan" ;;
    servers) stage_script servers tests/servers.sh "contrib/ and connpool lifetime/leak against real redis-server" ;;
    *) echo "tests/run.sh: unknown stage $1" >&2; return 2 ;;
    esac
}

status=0
if [ "${1:-all}" = all ]; then
    for s in deps headers cpp docs shape benchtable examples servers asan verify relaxed models tsan cross mutants fuzz install build; do
        run $s || { status=1; echo "stage '$s' failed; stopping"; break; }
    done
else
    [ "$1" = headers ] || [ "$1" = docs ] || [ "$1" = shape ] || [ "$1" = install ] || [ "$1" = benchtable ] || stage_deps || status=1
    [ $status -eq 0 ] && { run "$1" || status=1; }
fi
echo "$PASS passed, $FAIL failed"
exit $status
