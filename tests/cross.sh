#!/bin/sh
# Other platforms: the unit tests (tests/test_*.c) and the stress programs
# (tests/stress/*.c) built for and run on
#   aarch64  unsigned char, 64-bit; run under qemu-aarch64 (qemu-user)
#   i386     32-bit size_t and pointers, 64-bit atomics through cmpxchg8b;
#            run natively when the kernel runs i386 binaries, else qemu-i386
# No Criterion library exists for these targets, so the unit tests are built
# against tests/cross/criterion/criterion.h, a small stand-in that forks one
# child per test as Criterion does (its summary line is Criterion's). The
# stress programs are built without ThreadSanitizer (none for these targets).
# qemu-user on an x86 host runs guest threads as host threads in the host's
# (TSO) memory order: the aarch64 run checks the ABI (unsigned char,
# alignment, syscalls under emulation), not weak memory ordering.
#
# Compilers, first found: aarch64-linux-gnu-gcc, else clang
# --target=aarch64-linux-gnu with the Debian cross sysroot; i686-linux-gnu-gcc,
# else gcc -m32 (gcc-multilib), else clang --target=i686-linux-gnu. Debian's
# gcc-multilib conflicts with every gcc-*-linux-gnu cross compiler, so
# `scripts/deps.sh cross` installs the route that keeps gcc-multilib.
#
# Environment: CROSS_TARGETS (default "aarch64 i386"), STRESS_SCALE (default
# 0.2 under qemu, 0.5 native), CROSS_JOBS (default 2), AP_TEST_SEED.
# Prints one line per target and per failure, and ends with
#   cross: N passed, N failed      (a unit test, a stress program, a failed build: 1 each)
# or, with no cross toolchain here,
#   cross: skipped (<what is missing>; install with: <command>)   and exits 0.
set -u
cd "$(dirname "$0")/.."
B=build/cross
PASS=0; FAIL=0
: "${CROSS_TARGETS:=aarch64 i386}"
: "${CROSS_JOBS:=2}"
: "${AP_TEST_SEED:=$(date +%s)}"; export AP_TEST_SEED
CFLAGS_COMMON="-std=gnu11 -Wall -Wextra -Werror -g -O1 -I."

probe_src=$(mktemp /tmp/ap_cross_probe.XXXXXX)
probe_bin=$probe_src.bin
trap 'rm -f "$probe_src" "$probe_bin"' EXIT
cat >"$probe_src" <<'EOF'
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
static _Atomic uint64_t x;
static void *run(void *p) { atomic_fetch_add(&x, 1); return p; }
int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, run, NULL) || pthread_join(t, NULL)) return 1;
    printf("%zu %d %llu\n", sizeof(void *), (char)-1 < 0, (unsigned long long)atomic_load(&x));
    return 0;
}
EOF

# try_cc "CC..." RUN...: the compiler builds the probe and the runner runs it
try_cc() {
    cc=$1; shift
    $cc -std=gnu11 -x c "$probe_src" -o "$probe_bin" -pthread >/dev/null 2>&1 &&
        "$@" "$probe_bin" >/dev/null 2>&1
}

# pick TARGET: sets CC_T, RUN_T (a prefix, possibly empty), DESC_T, XFLAGS;
# returns 1 when this machine cannot build and run for TARGET
pick() {
    CC_T=""; RUN_T=""
    case "$1" in
    aarch64)
        q="qemu-aarch64 -L /usr/aarch64-linux-gnu"
        command -v qemu-aarch64 >/dev/null 2>&1 || return 1
        for cc in aarch64-linux-gnu-gcc "clang --target=aarch64-linux-gnu"; do
            command -v ${cc%% *} >/dev/null 2>&1 || continue
            if try_cc "$cc" $q; then CC_T=$cc; RUN_T=$q; break; fi
        done ;;
    i386)
        for cc in i686-linux-gnu-gcc "gcc -m32" "clang --target=i686-linux-gnu"; do
            command -v ${cc%% *} >/dev/null 2>&1 || continue
            if try_cc "$cc" env; then CC_T=$cc; RUN_T=""; break; fi
            if command -v qemu-i386 >/dev/null 2>&1 && try_cc "$cc" qemu-i386 -L /usr/i686-linux-gnu; then
                CC_T=$cc; RUN_T="qemu-i386 -L /usr/i686-linux-gnu"; break
            fi
        done ;;
    *) echo "cross: unknown target $1" >&2; return 1 ;;
    esac
    [ -n "$CC_T" ] || return 1
    if [ -n "$RUN_T" ]; then DESC_T="$CC_T, ${RUN_T%% *}"; else DESC_T="$CC_T, native"; fi
    # gcc notes the GCC 11 change to _Atomic uint64_t's alignment on i386
    # (about old binaries), and its maybe-uninitialized analysis does not see
    # that test_util.h's failed checks end the test. The test files are kept
    # warning-free by gcc (stage asan), not by clang, which (only a route to
    # aarch64 here) also flags variables that one expansion of a test macro
    # leaves unused and constants only sizeof reads.
    # On i386 gcc also flags test_util.h's EXPECT_EQ of two pointers, which
    # it widens to uintmax_t (the same way for both: equality holds).
    case "$CC_T" in
    *-m32*|*i686*) XFLAGS="-Wno-psabi -Wno-maybe-uninitialized -Wno-pointer-to-int-cast" ;;
    *gcc*) XFLAGS="-Wno-psabi -Wno-maybe-uninitialized" ;;
    *) XFLAGS="-Wno-unused-variable -Wno-unneeded-internal-declaration" ;;
    esac
    return 0
}

run_target() {
    t=$1
    dir=$B/$t
    rm -rf "$dir"; mkdir -p "$dir/unit" "$dir/stress"
    if [ -n "$RUN_T" ]; then scale=${STRESS_SCALE:-0.2}; tscale=4; else scale=${STRESS_SCALE:-0.5}; tscale=2; fi
    start=$(date +%s)
    # the builds, CROSS_JOBS at a time (the compiler is the slow part)
    { for src in tests/test_*.c; do echo "unit $src"; done
      for src in tests/stress/*.c; do echo "stress $src"; done; } >"$dir/list"
    CC_T=$CC_T FLAGS="$CFLAGS_COMMON $XFLAGS" DIR=$dir xargs -P "$CROSS_JOBS" -L 1 sh -c '
        kind=$0; src=$1; name=$(basename "$src" .c); bin=$DIR/$kind/$name
        inc=""; [ "$kind" = unit ] && inc="-isystem tests/cross" # a system header, as Criterion is
        nice $CC_T $FLAGS $inc "$src" -o "$bin" -pthread >"$bin.build.log" 2>&1 || rm -f "$bin"
    ' <"$dir/list"
    up=0; uf=0; sp=0; sf=0
    # (the lists built above, not a new glob: a file added meanwhile waits)
    for src in $(sed -n 's/^unit //p' "$dir/list"); do
        name=$(basename "$src" .c); bin=$dir/unit/$name
        if [ ! -x "$bin" ]; then
            echo "FAIL: $t build $src"; head -n 15 "$bin.build.log"; uf=$((uf + 1)); continue
        fi
        CR_SHIM_TIMEOUT_SCALE=$tscale $RUN_T "$bin" --jobs "$CROSS_JOBS" >"$bin.log" 2>&1
        brc=$?
        syn=$(grep 'Synthesis:' "$bin.log" | tail -n 1)
        p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        n=$(echo "$syn" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
        if [ -z "$n" ]; then
            echo "FAIL: $t $name produced no summary (rc=$brc)"; tail -n 15 "$bin.log"; uf=$((uf + 1)); continue
        fi
        f=$((n - p)); [ $brc -ne 0 ] && [ $f -eq 0 ] && f=1
        up=$((up + p)); uf=$((uf + f))
        if [ $f -ne 0 ]; then
            echo "FAIL: $t $name: $(echo "$syn" | sed 's/.*Synthesis: //')"
            grep -E '^\[(FAIL|----)\]' "$bin.log" | head -n 20
        fi
    done
    for src in $(sed -n 's/^stress //p' "$dir/list"); do
        name=$(basename "$src" .c); bin=$dir/stress/$name
        if [ ! -x "$bin" ]; then
            echo "FAIL: $t build $src"; head -n 15 "$bin.build.log"; sf=$((sf + 1)); continue
        fi
        if STRESS_SCALE=$scale $RUN_T "$bin" >"$bin.log" 2>&1; then
            sp=$((sp + 1))
        else
            echo "FAIL: $t $name, AP_TEST_SEED=$AP_TEST_SEED STRESS_SCALE=$scale"; tail -n 20 "$bin.log"
            sf=$((sf + 1))
        fi
    done
    # THE LADDER's registration fallback (tests/cross/membarrier_fallback.c):
    # membarrier refused by a seccomp filter (where seccomp works: not under
    # qemu-user), and the registration hook failing (everywhere)
    mp=0; mf=0; mnote=""
    for v in seccomp regfail; do
        bin=$dir/membarrier_$v
        d=""; [ $v = regfail ] && d=-DMBF_REGISTER_FAILS
        if ! $CC_T $CFLAGS_COMMON $XFLAGS $d tests/cross/membarrier_fallback.c -o "$bin" -pthread \
                >"$bin.build.log" 2>&1; then
            echo "FAIL: $t build membarrier_fallback.c $d"; head -n 15 "$bin.build.log"; mf=$((mf + 1)); continue
        fi
        [ $v = seccomp ] && mnote="membarrier registration: $($RUN_T "$bin" probe 2>&1)"
        $RUN_T "$bin" block >"$bin.log" 2>&1
        case $? in
        0) mp=$((mp + 1)) ;;
        77) mnote="$mnote, seccomp fallback not testable here" ;;
        *) echo "FAIL: $t membarrier fallback ($v)"; tail -n 5 "$bin.log"; mf=$((mf + 1)) ;;
        esac
    done
    # i386 before the i586 has no cmpxchg8b: config.h must refuse to build
    # (its 64-bit atomics would be libatomic's locks), naming why
    if [ "$t" = i386 ]; then
        if printf '#include "asyncpat.h"\nint x;\n' | $CC_T -march=i386 -std=c11 -I. -fsyntax-only -x c - 2>&1 |
                grep -q 'config.h.*64-bit atomics are not lock-free'; then
            mp=$((mp + 1))
        else
            echo "FAIL: $t -march=i386 (no cmpxchg8b) is not refused by config.h"; mf=$((mf + 1))
        fi
    fi
    printf '   %-8s %s: unit tests %d passed, %d failed; stress programs %d passed, %d failed (STRESS_SCALE=%s); fallback ladder and compile-time refusals %d passed, %d failed (%s); %ss\n' \
        "$t" "$DESC_T" $up $uf $sp $sf "$scale" $mp $mf "$mnote" $(( $(date +%s) - start ))
    PASS=$((PASS + up + sp + mp)); FAIL=$((FAIL + uf + sf + mf))
}

ran=0; missing=""
for t in $CROSS_TARGETS; do
    if pick "$t"; then
        run_target "$t"; ran=$((ran + 1))
    else
        missing="$missing $t"
    fi
done

if [ -n "$missing" ]; then
    pk=$(sh scripts/deps.sh cross-missing 2>/dev/null)
    how="install with: sudo apt-get install${pk:- (see scripts/deps.sh cross)}"
    if [ $ran -eq 0 ]; then
        echo "cross: skipped (no working toolchain for:$missing; $how)"
        exit 0
    fi
    echo "   skipped:$missing (no working toolchain; $how)"
fi
echo "cross: $PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
