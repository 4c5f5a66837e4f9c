#!/bin/sh
# tests/fuzz/run.sh -- build the libFuzzer harnesses and run them
#   sh tests/fuzz/run.sh [corpus]  replay each harness over its committed
#                                  corpus only (deterministic, -runs=0 style)
#   sh tests/fuzz/run.sh fuzz      fuzz each harness for FUZZ_TIME seconds
#                                  (default 30), starting from its corpus
# Needs clang with libFuzzer (-fsanitize=fuzzer). Prints
# "fuzz: N passed, N failed" and exits non-zero on any failure.
set -u
mode=${1:-corpus}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
CC=${FUZZ_CC:-clang}
FUZZ_TIME=${FUZZ_TIME:-30}
out=build/fuzz
mkdir -p "$out"
case $mode in corpus|fuzz) ;; *) echo "usage: $0 [corpus|fuzz]" >&2; exit 2 ;; esac
if ! echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n){(void)d;(void)n;return 0;}' \
    > "$out/probe.c" || ! $CC -fsanitize=fuzzer "$out/probe.c" -o "$out/probe" 2>/dev/null; then
    echo "fuzz: $CC has no libFuzzer (-fsanitize=fuzzer); install clang (apt-get install clang)" >&2
    exit 1
fi
pass=0 fail=0
for src in tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    short=${name#fuzz_}
    bin="$out/$name"
    if ! $CC -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I. "$src" -o "$bin"; then
        echo "FAIL $name (build)"; fail=$((fail + 1)); continue
    fi
    corpus=tests/fuzz/corpus/$short
    mkdir -p "$corpus"
    log="$out/$name.log"
    if [ "$mode" = fuzz ]; then
        work="$out/work/$short"; mkdir -p "$work"
        "$bin" -max_total_time="$FUZZ_TIME" -artifact_prefix="$out/$name-" \
            "$work" "$corpus" >"$log" 2>&1
    else
        "$bin" -runs=0 -artifact_prefix="$out/$name-" "$corpus" >"$log" 2>&1
    fi
    if [ $? -eq 0 ]; then
        echo "ok   $name ($(ls "$corpus" | wc -l) inputs)"; pass=$((pass + 1))
    else
        echo "FAIL $name (see $log)"; tail -n 20 "$log"; fail=$((fail + 1))
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
