#!/bin/sh
# bench/run.sh -- what `make bench` runs: build and run asyncpat's benchmarks.
#
#   make bench                       gcc -O2, every scenario (about 2 minutes)
#   make bench CC=clang CFLAGS=-O3   another compiler / flags
#   BENCH_ONLY=spsc make bench       only scenarios whose name contains "spsc"
#   BENCH_REPS=5 BENCH_MS=100 make bench   fewer / shorter runs (default 15
#                                    runs per implementation, each 400 ms for
#                                    throughput, 100 ms for queue_pair_1t,
#                                    300 ms for handoff_2t)
#   BENCH_PIN=split make bench       pin thread k to CPU k % ncpu ("same": all
#                                    on one CPU; default: no pinning)
#   make bench-publish               copy the last full run(s) into the tracked
#                                    bench/results/ and regenerate README.md's
#                                    table (sh bench/report.sh --publish)
#
# WHERE THE RESULTS GO (all under build/, so a run leaves the checkout clean)
#   build/bench/latest.tsv        a full, unpinned run
#   build/bench/latest-pin.tsv    a full run with BENCH_PIN=split (or any
#                                 value other than "same")
#   build/bench/latest-same.tsv   a full run with BENCH_PIN=same
#   build/bench/partial*.tsv      a BENCH_ONLY run (same suffixes); never
#                                 published
#   `make bench-publish` copies latest.tsv and latest-pin.tsv into the
#   tracked bench/results/ and regenerates the README table from them;
#   nothing else writes there.
#
# Needs only a C compiler. Concurrency Kit (ck_ring) and liburcu (wfcqueue)
# are compared against when their headers are found (scripts/deps.sh bench
# installs them as root on Debian/Ubuntu, or says how); without them those
# rows are left out. The mutex+condvar queue baseline always runs.
#
# HOW TO READ THE RESULTS
#   stdout: one table per scenario: the median, min and max over the runs
#   (each run is ~BENCH_MS long; implementations take turns run by run, so
#   machine noise hits them alike), then ratios "X vs Y = r x", where r > 1
#   means X (asyncpat) is r times faster than Y, measured in this same run,
#   and the issue's target when there is one. Throughput is Mops/s (items
#   moved from producers to consumers per second; higher is better);
#   queue_pair_1t and handoff_2t are ns per operation (lower is better).
#   build/bench/latest.tsv: the same numbers, one per line,
#   `scenario.impl<TAB>metric<TAB>value<TAB>unit`, metric = the median,
#   metric_min / metric_max over the runs, and `subject_vs_peer speedup`
#   lines for the ratios (plus `subject_vs_peer target` lines where the
#   issue sets a target); `#` lines say compiler, flags, AP_CACHELINE, date,
#   nproc, the load average at the start, the knobs and pinning, the
#   duration, and per scenario the threads, capacity and run count. Diff two
#   of them to compare builds.
#   On a busy machine the spread (min..max) is wide: compare ratios from one
#   run rather than absolute numbers from different runs.
#
# The bench checks itself (every item popped exactly once, per-producer
# FIFO order, every value of the pair and hand-off loops) and exits non-zero
# on a mismatch, in which case the results file is left as it was. Missed speed
# targets are reported, never a failure: timings are not asserted.
set -u
cd "$(dirname "$0")/.." || exit 1

sh scripts/deps.sh bench || true

if [ -z "${CC:-}" ]; then
    if command -v gcc >/dev/null 2>&1; then CC=gcc; else CC=cc; fi
fi
CFLAGS=${CFLAGS:--O2}
B=build/bench
mkdir -p "$B"

# Which file this run replaces: a partial (BENCH_ONLY) run never replaces
# a full one, nor a pinned run an unpinned one.
case ${BENCH_PIN:-0} in
0) PIN=none; SUFFIX= ;;
same) PIN=same; SUFFIX=-same ;;
*) PIN=split; SUFFIX=-pin ;;
esac
BASE=latest
[ -n "${BENCH_ONLY:-}" ] && BASE=partial
FINAL="$B/$BASE$SUFFIX.tsv"
KNOBS=
for k in BENCH_REPS BENCH_MS BENCH_ONLY BENCH_PIN; do
    eval "v=\${$k:-}"
    [ -n "$v" ] && KNOBS="$KNOBS $k=$v"
done

STD="-std=gnu11"
probe() { # probe NAME SOURCE: does SOURCE build and link here?
    printf '%s\n' "$2" > "$B/probe_$1.c"
    $CC $STD "$B/probe_$1.c" -o "$B/probe_$1" -pthread >/dev/null 2>&1
    r=$?
    rm -f "$B/probe_$1" "$B/probe_$1.c"
    return $r
}

DEFS=""
PEERS=""
if probe ck '#include <ck_ring.h>
int main(void) { static ck_ring_buffer_t b[4]; ck_ring_t r; void *p = 0;
  ck_ring_init(&r, 4); ck_ring_enqueue_spsc(&r, b, p); ck_ring_dequeue_mpmc(&r, b, &p);
  return sizeof(void *) == 8 ? 0 : 1; }'; then
    DEFS="$DEFS -DHAVE_CK"; PEERS="$PEERS ck_ring"
fi
if probe urcu '#define _LGPL_SOURCE 1
#include <urcu/wfcqueue.h>
int main(void) { struct cds_wfcq_head h; struct cds_wfcq_tail t; cds_wfcq_init(&h, &t);
  return cds_wfcq_empty(&h, &t) ? 0 : 1; }'; then
    DEFS="$DEFS -DHAVE_URCU"; PEERS="$PEERS liburcu"
fi
[ -n "$PEERS" ] || PEERS=" none"

FLAGS="$STD $CFLAGS -Wall -Wextra -I. -Ibench$DEFS"
BINS=""
for src in bench/bench_*.c; do
    bin="$B/$(basename "$src" .c)"
    echo "bench: $CC $FLAGS $src -pthread   (peers:$PEERS)"
    # shellcheck disable=SC2086
    $CC $FLAGS "$src" -o "$bin" -pthread || {
        echo "bench: build of $src failed" >&2
        exit 1
    }
    BINS="$BINS $bin"
done

TMP="$FINAL.tmp"
trap 'rm -f "$TMP"; exit 130' INT TERM HUP
{
    echo "# asyncpat benchmarks: scenario.impl<TAB>metric<TAB>value<TAB>unit; metric = median over the runs, metric_min/metric_max over the runs; *_vs_* speedup > 1 = the first is faster (same run)"
    echo "# date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "# compiler: $($CC --version 2>/dev/null | head -n 1)"
    echo "# flags: $FLAGS -pthread"
    echo "# nproc: $(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
    echo "# cpu: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)"
    echo "# system: $(uname -srm)"
    echo "# loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
    echo "# knobs:${KNOBS:- none (defaults)}"
    echo "# pin: $PIN"
} > "$TMP"

start=$(date +%s)
rc=0
for bin in $BINS; do
    "$bin" "$TMP" || { rc=$?; break; }
done
if [ $rc -ne 0 ]; then
    rm -f "$TMP"
    echo "bench: FAILED (exit $rc): a self-check failed or the bench crashed; $FINAL unchanged" >&2
    exit $rc
fi
secs=$(( $(date +%s) - start ))
echo "# duration: $secs s" >> "$TMP"
mv "$TMP" "$FINAL" || exit 1
sh bench/plot.sh "$FINAL" "${FINAL%.tsv}.svg" || echo "bench: could not draw ${FINAL%.tsv}.svg" >&2
echo
echo "bench: done in $secs s; results in $FINAL, plot in ${FINAL%.tsv}.svg"
case $BASE$SUFFIX in
latest | latest-pin)
    echo "bench: \`make bench-publish\` copies it to bench/results/ and regenerates README.md's table" ;;
esac
