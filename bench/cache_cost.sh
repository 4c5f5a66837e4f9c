#!/bin/sh
# bench/cache_cost.sh -- instructions and simulated cache misses per
# operation of the cache_size_* bench rows (issue #15), from cachegrind.
#
#   sh bench/cache_cost.sh [IMPLS] [SIZES]    (needs valgrind; not in `make bench`)
#   defaults: IMPLS="ap16 ap16t ap1 lru", SIZES="1000 100000 1000000"
#
# For each implementation and size it runs bench/cache_cost.c under
# `valgrind --tool=cachegrind --cache-sim=yes` with OPS and 2*OPS operations
# (90% get / 10% put, uniform keys, after a fill of N keys) and prints
# (counts at 2*OPS - counts at OPS) / OPS, so the fill cancels out:
#   Ir/op     instructions per operation
#   D1/op     simulated L1 data misses (reads + writes) per operation
#   LL/op     simulated last-level misses (reads + writes) per operation
# The simulated caches are this machine's (D1 32 KiB 8-way, LL 32 MiB
# 16-way, 64-byte lines) unless CG_CACHES overrides them. Cachegrind
# simulates no TLB and no prefetcher: LL/op is the number of lines that
# must come from memory, not their latency (cache_cost chase measures that).
set -eu
cd "$(dirname "$0")/.." || exit 1
IMPLS=${1:-"ap16 ap16t ap1 lru"}
SIZES=${2:-"1000 100000 1000000"}
OPS=${OPS:-200000}
CG_CACHES=${CG_CACHES:-"--I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64"}
B=build/bench
mkdir -p "$B"
${CC:-cc} -std=gnu11 ${CFLAGS:--O2} -I. -Ibench bench/cache_cost.c -o "$B/cache_cost" -pthread
# summary: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
counts() { # counts IMPL N OPS -> "Ir D1 LL"
    out="$B/cg.$1.$2.$3"
    # shellcheck disable=SC2086
    valgrind --tool=cachegrind --cache-sim=yes $CG_CACHES --cachegrind-out-file="$out" \
        "$B/cache_cost" "$1" "$2" "$3" >/dev/null 2>&1
    awk '/^summary:/ { print $2, $6 + $9, $7 + $10 }' "$out"
    rm -f "$out"
}
printf '%-6s %9s %9s %8s %8s\n' impl N Ir/op D1/op LL/op
for impl in $IMPLS; do
    for n in $SIZES; do
        a=$(counts "$impl" "$n" "$OPS")
        b=$(counts "$impl" "$n" $((2 * OPS)))
        echo "$impl $n $a $b" | awk -v ops="$OPS" \
            '{ printf "%-6s %9d %9.1f %8.3f %8.3f\n", $1, $2, ($6-$3)/ops, ($7-$4)/ops, ($8-$5)/ops }'
    done
done
