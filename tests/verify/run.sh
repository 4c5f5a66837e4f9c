#!/bin/sh
# tests/verify/run.sh -- the deterministic scheduler's programs (verify_*.c)
#   sh tests/verify/run.sh           build each with gcc -O2 and run every
#                                    scenario (SC and x86-TSO, full search
#                                    within each scenario's preemption bound)
# One line per scenario ("ok ..." or "FAIL ..." with a replayable schedule),
# then "verify: N passed, N failed". Exits non-zero on any failure.
# Environment: VF_ONLY=<substring> runs only matching scenarios;
#   VF_REPLAY='<scenario>:<choices>' re-runs one failing schedule with its
#   whole trace (the line a failure prints).
set -u
cd "$(dirname "$0")/../.." || exit 1
CC=${VERIFY_CC:-gcc}
out=build/verify
mkdir -p "$out"
pass=0 fail=0
t0=$(date +%s)
for src in tests/verify/verify_*.c; do
    name=$(basename "$src" .c)
    bin="$out/$name"
    if ! $CC -std=gnu11 -Wall -Wextra -Werror -g -O2 -I. "$src" -o "$bin"; then
        echo "FAIL $name (build)"; fail=$((fail + 1)); continue
    fi
    s=$(date +%s)
    "$bin" >"$bin.log" 2>&1; rc=$?
    grep -E '^(ok|FAIL) ' "$bin.log" | sed 's/^/   /'
    p=$(grep -c '^ok ' "$bin.log")
    pass=$((pass + p))
    if [ $rc -ne 0 ]; then
        fail=$((fail + 1))
        grep -v -E '^(ok|FAIL) ' "$bin.log" | head -n 60
    fi
    echo "   $name: $p scenarios ok, rc=$rc ($(( $(date +%s) - s ))s)"
done
echo "verify: $pass passed, $fail failed ($(( $(date +%s) - t0 ))s)"
[ "$fail" -eq 0 ]
