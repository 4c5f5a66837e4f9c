#!/bin/sh
# tests/verify/run.sh -- the deterministic scheduler's programs (verify_*.c)
#   sh tests/verify/run.sh           build each with gcc -O2 and run every
#                                    scenario (SC, x86-TSO and C11, full
#                                    search within each scenario's bounds)
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
# Every program runs with the asymmetric barrier of waitlist.h (LIGHT on the
# waking side, HEAVY on the waiting side). The programs in FALLBACK run twice
# more: with registration refused at run time (VF_NO_ASYM=1: seq_cst fences
# on both sides) and built with -DAP_NO_ASYM_BARRIER (the seq_cst ladder of
# TSan and non-Linux builds).
FALLBACK="verify_queue verify_sync verify_close verify_grant verify_cache"
# Every program also runs in the C11 mode (VF_MODE=c11: its *_tso scenarios
# and those marked .c11 under the C11 memory model of vf.h; bounds in vf.h),
# recording the relaxed accesses it ran in build/verify/relaxed.cover for
# tests/relaxed.sh (RELAXED_COVER). VERIFY_C11=0 skips the C11 runs.
: >"$out/relaxed.cover"
runs=""
for src in tests/verify/verify_*.c; do
    name=$(basename "$src" .c)
    runs="$runs $name:$src:"
    [ "${VERIFY_C11:-1}" = 0 ] || runs="$runs $name-c11:$src:VF_MODE=c11"
    case " $FALLBACK " in *" $name "*)
        runs="$runs $name-norm:$src:VF_NO_ASYM=1 $name-noasym:$src:-DAP_NO_ASYM_BARRIER" ;;
    esac
done
for r in $runs; do
    name=${r%%:*}; rest=${r#*:}; src=${rest%%:*}; mode=${rest#*:}
    bin="$out/$name"
    defs=""; envs=""
    case "$mode" in -D*) defs=$mode ;; ?*) envs=$mode ;; esac
    case "$mode" in VF_MODE=c11) envs="$envs VF_COVER=$out/relaxed.cover" ;; esac
    if [ "$mode" = VF_MODE=c11 ] && [ -x "$out/${name%-c11}" ]; then
        cp "$out/${name%-c11}" "$bin" # the same program, run in C11 mode
    # shellcheck disable=SC2086
    elif ! $CC -std=gnu11 -Wall -Wextra -Werror -g -O2 -I. $defs "$src" -o "$bin"; then
        echo "FAIL $name (build)"; fail=$((fail + 1)); continue
    fi
    s=$(date +%s)
    # shellcheck disable=SC2086
    env $envs "$bin" >"$bin.log" 2>&1; rc=$?
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
