/*
 * bench/bench_barrier.c -- the reusable barrier against its peers
 *
 * Scenario:
 *   barrier_2t  two threads meet at one barrier round after round; ns per
 *               round (both threads through one generation). ap_barrier_wait
 *               (CAS arrival, bounded spin, then park through a future +
 *               ap_block_on) vs ck_barrier_centralized (Concurrency Kit's
 *               sense-reversing centralized barrier: fetch-and-add, then an
 *               unbounded spin) vs pthread_barrier_wait.
 *
 * The ck peer is ck's own algorithm (src/ck_barrier_centralized.c) over
 * ck_pr.h, compiled here: ck_barrier_centralized() lives in libck, and
 * bench/run.sh links no library (ck_ring is header-only). Built when
 * bench/run.sh finds ck (-DHAVE_CK), otherwise that row is left out.
 *
 * Stop: thread 0 decides the last round one round ahead (see bar_ctx.last).
 * Self-checks: before each round a thread writes the round number into its
 * own plain slot; after the barrier it reads the other thread's slot, which
 * must say this round or the next (a barrier that let a thread through
 * early, or a missing happens-before edge, shows as a wrong value). Both
 * threads must count the same number of rounds. Any mismatch exits 2.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_barrier.c -pthread [-DHAVE_CK]
 * Run:   ./bench_barrier [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "bench.h"

#include <pthread.h>

#if defined(HAVE_CK)
#include <ck_pr.h>
/* ck_barrier_centralized, as in ck's src/ck_barrier_centralized.c. */
typedef struct ck_bar {
    unsigned int value;
    unsigned int sense;
} ck_bar;

static inline void ck_bar_wait(ck_bar *barrier, unsigned int *my_sense, unsigned int n)
{
    unsigned int sense = *my_sense = ~*my_sense;
    unsigned int value = ck_pr_faa_uint(&barrier->value, 1);
    if (value == n - 1) {
        ck_pr_store_uint(&barrier->value, 0);
        ck_pr_fence_memory();
        ck_pr_store_uint(&barrier->sense, sense);
        return;
    }
    ck_pr_fence_atomic_load();
    while (sense != ck_pr_load_uint(&barrier->sense))
        ck_pr_stall();
    ck_pr_fence_acquire();
}
#endif

enum { IMPL_AP, IMPL_CK, IMPL_PTHREAD };

typedef struct bar_ctx {
    int impl;
    bench_gate gate;
    _Alignas(64) ap_barrier ab;
#if defined(HAVE_CK)
    _Alignas(64) ck_bar cb;
#endif
    _Alignas(64) pthread_barrier_t pb;
    _Alignas(64) uint64_t slot[2][8]; /* plain, one line each: ordered by the barrier */
    /* the last round, once thread 0 has decided it (0: not yet). Thread 0
     * stores it before the wait of round k - 1; the barrier makes it
     * visible to the other thread by round k. Relaxed: the other thread may
     * read it early, while thread 0 is a round ahead. */
    _Alignas(64) _Atomic uint64_t last;
    uint64_t rounds[2], bad[2];
} bar_ctx;

static inline void bar_wait(bar_ctx *c, unsigned *sense)
{
    switch (c->impl) {
    case IMPL_AP: {
        ap_status st = ap_barrier_wait(&c->ab, AP_DEADLINE_NONE);
        if (st != AP_OK)
            bench_fail("ap_barrier_wait: %s", ap_status_str(st));
        break;
    }
#if defined(HAVE_CK)
    case IMPL_CK:
        ck_bar_wait(&c->cb, sense, 2);
        break;
#endif
    default: {
        int rc = pthread_barrier_wait(&c->pb);
        if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD)
            bench_fail("pthread_barrier_wait: %d", rc);
    }
    }
    (void)sense;
}

/* Both threads: rounds until the last one thread 0 chose (bar_ctx.last;
 * the barrier orders its plain write before the other's read after it). */
static void bar_loop(bar_ctx *c, int me, uint64_t t0, uint64_t budget_ns, uint64_t *t1)
{
    unsigned sense = 0;
    uint64_t i = 0, bad = 0;
    for (;;) {
        i++;
        c->slot[me][0] = i;
        if (me == 0 && (i & 255u) == 0 &&
            atomic_load_explicit(&c->last, memory_order_relaxed) == 0 &&
            bench_now_ns() - t0 >= budget_ns)
            atomic_store_explicit(&c->last, i + 1, memory_order_relaxed);
        bar_wait(c, &sense);
        /* the other thread may be one round ahead already */
        uint64_t other = c->slot[!me][0];
        bad += other != i && other != i + 1;
        if (i == atomic_load_explicit(&c->last, memory_order_relaxed))
            break;
    }
    if (me == 0)
        *t1 = bench_now_ns();
    c->rounds[me] = i;
    c->bad[me] = bad;
}

static uint64_t g_budget;
static void *bar_other(void *arg)
{
    bar_ctx *c = (bar_ctx *)arg;
    bench_pin(1);
    bench_gate_wait(&c->gate);
    uint64_t dummy = 0;
    bar_loop(c, 1, 0, g_budget, &dummy);
    return NULL;
}

static uint64_t bar_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    int impl = (int)(intptr_t)ctx;
    bar_ctx *c = (bar_ctx *)aligned_alloc(64, (sizeof(bar_ctx) + 63) & ~(size_t)63);
    if (c == NULL)
        bench_fail("out of memory");
    memset(c, 0, sizeof *c);
    c->impl = impl;
    if (ap_barrier_init(&c->ab, 2, AP_BARRIER_POLICY_BREAK, NULL, NULL) != AP_OK)
        bench_fail("ap_barrier_init");
    if (pthread_barrier_init(&c->pb, NULL, 2) != 0)
        bench_fail("pthread_barrier_init");
    bench_gate_init(&c->gate);
    g_budget = budget_ns;
    pthread_t th;
    if (pthread_create(&th, NULL, bar_other, c))
        bench_fail("pthread_create");
    bench_pin(0);
    uint64_t t0 = bench_gate_open(&c->gate, 1), t1 = t0;
    bar_loop(c, 0, t0, budget_ns, &t1);
    pthread_join(th, NULL);
    if (c->rounds[0] != c->rounds[1] || c->bad[0] || c->bad[1])
        bench_fail("barrier_2t impl %d: rounds %llu vs %llu, %llu + %llu bad slot values", impl,
                   (unsigned long long)c->rounds[0], (unsigned long long)c->rounds[1],
                   (unsigned long long)c->bad[0], (unsigned long long)c->bad[1]);
    if (impl == IMPL_AP && (ap_barrier_arrived(&c->ab) != 0 ||
                            ap_barrier_generation(&c->ab) != (uint32_t)(c->rounds[0] & 0x7FFFFF)))
        bench_fail("ap_barrier: generation %u after %llu rounds",
                   ap_barrier_generation(&c->ab), (unsigned long long)c->rounds[0]);
    ap_barrier_fini(&c->ab);
    pthread_barrier_destroy(&c->pb);
    *iters = c->rounds[0];
    free(c);
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_barrier");
    static bench_scenario s = {
        "barrier_2t", "2 threads meet at one barrier, round after round",
        BENCH_TIME, "ns_per_round", "ns", 1, 200, {{0}}, 0, 0};
    bench_add(&s, "ap_barrier", "ap_barrier_wait (spin, then future + ap_block_on)", bar_run,
              (void *)(intptr_t)IMPL_AP);
#if defined(HAVE_CK)
    bench_add(&s, "ck_centralized", "ck_barrier_centralized (ck's algorithm over ck_pr.h)",
              bar_run, (void *)(intptr_t)IMPL_CK);
#endif
    bench_add(&s, "pthread_barrier", "pthread_barrier_wait", bar_run,
              (void *)(intptr_t)IMPL_PTHREAD);
    bench_run_scenario(&cfg, &s);
    /* target: no slower than 1.5x ck, i.e. speedup >= 1/1.5 */
    bench_ratio(&cfg, &s, "ap_barrier", "ck_centralized", 1.0 / 1.5);
    bench_ratio(&cfg, &s, "ap_barrier", "pthread_barrier", 20);
    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
