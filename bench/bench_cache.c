/*
 * bench/bench_cache.c -- the sharded SIEVE cache against a naive
 * mutex + doubly-linked-list LRU (bench/peers/mutex_lru.h)
 *
 * Scenarios (Mops/s, higher is better; uint64_t keys, 8-byte values):
 *   cache_get_hit_1t / _2t   8192 keys, all resident in a cache of 16384;
 *                            uniformly random gets, every one a hit.
 *   cache_mixed_zipf_1t/_2t  Zipf(0.99) over 200000 keys, capacity 16384;
 *                            90% get, 10% put (the put is of the drawn
 *                            key; a get miss is just a miss).
 *   cache_size_1k/100k/1m_1t/_2t   cost against size (issue #15): N keys
 *                            all resident in a cache of capacity N (1000,
 *                            100000, 1000000), uniformly random keys, 90%
 *                            get / 10% put (all hits and updates with 1
 *                            shard; 16 shards of N/16 each hold a little
 *                            less, the keys being spread unevenly): a flat
 *                            cost says O(1); what grows is cache misses
 *                            of the CPU, not work. After these rows a
 *                            table gives each implementation's ns/op at
 *                            the three sizes and the 1M/1k ratio (target
 *                            <= 2x); bench/cache_cost.sh counts the
 *                            instructions and simulated cache misses per
 *                            operation behind them (valgrind).
 * Implementations:
 *   ap_cache_s16   ap_cache with 16 shards (gets take no lock)
 *   ap_cache_s1    ap_cache with 1 shard (exact SIEVE; gets still lock-free,
 *                  puts serialise on one ap__lock)
 *   mutex_lru      one pthread mutex, hash chains, move-to-front on a hit
 * Each thread walks the same precomputed trace from its own offset.
 *
 * Self-checks (exit 2 on mismatch): every value a get returns is the one
 * put for its key (value = key * 3 + 1); every get in the hit scenarios
 * hits; at the end each cache's own hit + miss counters equal the gets the
 * threads made, and len <= capacity.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_cache.c -pthread
 * Run:   ./bench_cache [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "asyncpat/cache.h"
#include "bench.h"
#include "peers/mutex_lru.h"

#include <pthread.h>

#define CAP 16384
#define HIT_KEYS 8192
#define ZIPF_KEYS 200000
#define TRACE_LEN (1u << 20)
#define CHUNK 1024
#define MAXT 2

enum { IMPL_AP16, IMPL_AP1, IMPL_LRU, IMPLS };
enum { SC_HIT, SC_MIXED, SC_S1K, SC_S100K, SC_S1M, NSC };
static const size_t sc_cap[NSC] = {CAP, CAP, 1000, 100000, 1000000};

/* trace entries: key in the low 63 bits, top bit = put */
#define PUT_BIT (UINT64_C(1) << 63)
static uint64_t hit_trace[TRACE_LEN], mixed_trace[TRACE_LEN];
static uint64_t size_trace[3][TRACE_LEN]; /* SC_S1K.. */
static const uint64_t *trace_of(int sc)
{
    return sc == SC_HIT ? hit_trace : sc == SC_MIXED ? mixed_trace : size_trace[sc - SC_S1K];
}

static uint64_t key_of(uint64_t rank) { return rank * UINT64_C(0x9E3779B97F4A7C15) >> 1; }
static uint64_t val_of(uint64_t key) { return key * 3 + 1; }

typedef struct impl_state {
    ap_cache *ap;   /* IMPL_AP16, IMPL_AP1 */
    mutex_lru lru;  /* IMPL_LRU */
    _Atomic uint64_t gets;
} impl_state;

static impl_state states[NSC][IMPLS]; /* [scenario][impl] */

typedef struct run_ctx {
    int scenario, impl, threads;
} run_ctx;

typedef struct thread_arg {
    const run_ctx *rc;
    impl_state *st;
    bench_gate *gate;
    _Atomic int *stop;
    size_t offset;
    uint64_t ops, gets, bad, misses;
} thread_arg;

static void *worker(void *p)
{
    thread_arg *a = (thread_arg *)p;
    const uint64_t *tr = trace_of(a->rc->scenario);
    size_t i = a->offset;
    uint64_t ops = 0, gets = 0, bad = 0, misses = 0;
    bench_pin((int)(a->offset / (TRACE_LEN / MAXT)));
    bench_gate_wait(a->gate);
    while (!atomic_load_explicit(a->stop, memory_order_relaxed)) {
        switch (a->rc->impl) {
        case IMPL_AP16:
        case IMPL_AP1: {
            ap_cache *c = a->st->ap;
            for (int n = 0; n < CHUNK; n++, i = (i + 1) & (TRACE_LEN - 1)) {
                uint64_t e = tr[i], k = e & ~PUT_BIT, v;
                if (e & PUT_BIT) {
                    v = val_of(k);
                    ap_cache_put(c, k, &v, NULL);
                } else {
                    gets++;
                    if (ap_cache_get(c, k, &v) == AP_OK)
                        bad += v != val_of(k);
                    else
                        misses++;
                }
            }
            break;
        }
        case IMPL_LRU: {
            mutex_lru *l = &a->st->lru;
            for (int n = 0; n < CHUNK; n++, i = (i + 1) & (TRACE_LEN - 1)) {
                uint64_t e = tr[i], k = e & ~PUT_BIT, v;
                if (e & PUT_BIT) {
                    (void)mutex_lru_put(l, k, val_of(k));
                } else {
                    gets++;
                    if (mutex_lru_get(l, k, &v))
                        bad += v != val_of(k);
                    else
                        misses++;
                }
            }
            break;
        }
        }
        ops += CHUNK;
    }
    a->ops = ops;
    a->gets = gets;
    a->bad = bad;
    a->misses = misses;
    return NULL;
}

static uint64_t run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const run_ctx *rc = (const run_ctx *)ctx;
    impl_state *st = &states[rc->scenario][rc->impl];
    bench_gate gate;
    _Atomic int stop;
    pthread_t th[MAXT];
    thread_arg a[MAXT];
    bench_gate_init(&gate);
    atomic_init(&stop, 0);
    for (int t = 0; t < rc->threads; t++) {
        a[t] = (thread_arg){rc, st, &gate, &stop, (size_t)t * (TRACE_LEN / MAXT), 0, 0, 0, 0};
        if (pthread_create(&th[t], NULL, worker, &a[t]))
            bench_fail("pthread_create");
    }
    uint64_t t0 = bench_gate_open(&gate, rc->threads);
    bench_sleep_ns(budget_ns);
    atomic_store_explicit(&stop, 1, memory_order_relaxed);
    uint64_t ops = 0;
    for (int t = 0; t < rc->threads; t++) {
        pthread_join(th[t], NULL);
        ops += a[t].ops;
        atomic_fetch_add_explicit(&st->gets, a[t].gets, memory_order_relaxed);
        if (a[t].bad)
            bench_fail("impl %d: %llu wrong values or failed puts", rc->impl,
                       (unsigned long long)a[t].bad);
        if (rc->scenario == SC_HIT && a[t].misses)
            bench_fail("impl %d: %llu misses in the all-hit scenario", rc->impl,
                       (unsigned long long)a[t].misses);
    }
    uint64_t t1 = bench_now_ns();
    *iters = ops;
    return t1 - t0;
}

/* x^-alpha for x >= 1, without libm (run.sh links none). */
static double zipf_weight(double x, double alpha)
{
    const double ln2 = 0.69314718055994530942;
    int k = 0;
    while (x > 1.5) {
        x /= 2;
        k++;
    }
    double t = (x - 1) / (x + 1), t2 = t * t, term = t, ln = 0;
    for (int n = 0; n < 40; n++, term *= t2)
        ln += term / (2 * n + 1);
    double y = -alpha * (2 * ln + k * ln2);
    int j = (int)(y / ln2) - 1;
    double r = y - j * ln2, e = 1, f = 1;
    for (int n = 1; n < 30; n++)
        e += (f *= r / n);
    for (; j < 0; j++)
        e /= 2;
    return e;
}

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void make_traces(void)
{
    static double cdf[ZIPF_KEYS];
    double sum = 0;
    for (int i = 0; i < ZIPF_KEYS; i++)
        cdf[i] = (sum += zipf_weight(i + 1.0, 0.99));
    uint64_t s = 0x2545F4914F6CDD1Du;
    for (size_t i = 0; i < TRACE_LEN; i++) {
        hit_trace[i] = key_of(xs(&s) % HIT_KEYS);
        double u = (double)(xs(&s) >> 11) / 9007199254740992.0 * sum;
        size_t lo = 0, hi = ZIPF_KEYS - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        mixed_trace[i] = key_of(lo) | (xs(&s) % 10 == 0 ? PUT_BIT : 0);
        for (int z = 0; z < 3; z++)
            size_trace[z][i] = key_of(xs(&s) % sc_cap[SC_S1K + z]) | (xs(&s) % 10 == 0 ? PUT_BIT : 0);
    }
}

static void setup(int sc)
{
    for (int im = 0; im < IMPLS; im++) {
        impl_state *st = &states[sc][im];
        atomic_init(&st->gets, 0);
        if (im == IMPL_LRU) {
            if (mutex_lru_init(&st->lru, sc_cap[sc]) != 0)
                bench_fail("mutex_lru_init");
        } else {
            ap_cache_desc d = {.capacity = sc_cap[sc], .shards = im == IMPL_AP16 ? 16 : 1,
                               .value_size = sizeof(uint64_t)};
            if (ap_cache_create(&st->ap, &d, NULL) != AP_OK)
                bench_fail("ap_cache_create");
        }
        if (sc != SC_MIXED)
            for (uint64_t r = 0; r < (sc == SC_HIT ? HIT_KEYS : sc_cap[sc]); r++) {
                uint64_t k = key_of(r), v = val_of(k);
                if (im == IMPL_LRU)
                    (void)mutex_lru_put(&st->lru, k, v);
                else
                    ap_cache_put(st->ap, k, &v, NULL);
            }
    }
}

static void teardown(int sc, bool ran)
{
    for (int im = 0; im < IMPLS; im++) {
        impl_state *st = &states[sc][im];
        uint64_t gets = atomic_load(&st->gets);
        if (im == IMPL_LRU) {
            if (ran && st->lru.hits + st->lru.misses != gets)
                bench_fail("mutex_lru: hits + misses %llu != gets %llu",
                           (unsigned long long)(st->lru.hits + st->lru.misses),
                           (unsigned long long)gets);
            mutex_lru_fini(&st->lru);
        } else {
            ap_cache_stats s;
            ap_cache_stats_get(st->ap, &s);
            if (ran && s.hits + s.misses != gets)
                bench_fail("ap_cache: hits + misses %llu != gets %llu",
                           (unsigned long long)(s.hits + s.misses), (unsigned long long)gets);
            if (ap_cache_len(st->ap) > sc_cap[sc])
                bench_fail("ap_cache: len %zu > capacity", ap_cache_len(st->ap));
            if (ran && sc == SC_MIXED)
                printf("   %s: hit ratio %.3f\n", im == IMPL_AP16 ? "ap_cache_s16" : "ap_cache_s1",
                       (double)s.hits / (double)(gets ? gets : 1));
            ap_cache_destroy(st->ap);
        }
        if (ran && sc == SC_MIXED && im == IMPL_LRU)
            printf("   mutex_lru: hit ratio %.3f\n",
                   (double)st->lru.hits / (double)(gets ? gets : 1));
    }
}

/* Issue #15's "cost flat in size": ns/op of each implementation at 1k,
 * 100k and 1M entries, and the 1M/1k ratio (target <= 2; reported, never
 * asserted). ns/op = threads * 1000 / Mops/s (each thread's own time per
 * operation). Printed only: the medians it derives from are in the TSV. */
static void size_ratios( bench_scenario sc[NSC][MAXT], const bool *ran,
                        const char *const *names)
{
    if (!ran[SC_S1K] || !ran[SC_S1M])
        return;
    printf("\ncache_size cost against size (issue #15: 1M within 2x of 1k), ns/op per thread, medians\n");
    printf("   %-14s %3s %9s %9s %9s %8s\n", "impl", "thr", "1k", "100k", "1M", "1M/1k");
    for (int t = 0; t < MAXT; t++)
        for (int im = 0; im < IMPLS; im++) {
            double ns[3];
            for (int z = 0; z < 3; z++) {
                const bench_impl *b = ran[SC_S1K + z] ? bench_find(&sc[SC_S1K + z][t], names[im]) : NULL;
                ns[z] = b && b->st.median > 0 ? (t + 1) * 1000.0 / b->st.median : 0;
            }
            if (ns[0] <= 0 || ns[2] <= 0)
                continue;
            printf("   %-14s %3d %9.1f %9.1f %9.1f %7.2fx%s\n", names[im], t + 1, ns[0], ns[1], ns[2],
                   ns[2] / ns[0], ns[2] / ns[0] <= 2 ? "" : "  (target 2x missed)");
        }
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_cache");
    static bench_scenario sc[NSC][MAXT]; /* [scenario][threads - 1] */
    static run_ctx ctx[NSC][MAXT][IMPLS];
    static const char *const names[IMPLS] = {"ap_cache_s16", "ap_cache_s1", "mutex_lru"};
    static const char *const notes[IMPLS] = {
        "16 shards, SIEVE, lock-free gets", "1 shard (exact SIEVE), lock-free gets",
        "naive baseline: one mutex, hash chains, move-to-front LRU"};
    static const char *const sname[NSC][MAXT] = {{"cache_get_hit_1t", "cache_get_hit_2t"},
                                                 {"cache_mixed_zipf_1t", "cache_mixed_zipf_2t"},
                                                 {"cache_size_1k_1t", "cache_size_1k_2t"},
                                                 {"cache_size_100k_1t", "cache_size_100k_2t"},
                                                 {"cache_size_1m_1t", "cache_size_1m_2t"}};
    static const char *const what[NSC] = {
        "8192 resident keys, capacity 16384, uniform random gets (all hits), 8-byte values",
        "Zipf(0.99) over 200000 keys, capacity 16384, 90% get / 10% put, 8-byte values",
        "1000 resident keys, capacity 1000, uniform, 90% get (hits) / 10% put (updates)",
        "100000 resident keys, capacity 100000, uniform, 90% get (hits) / 10% put (updates)",
        "1000000 resident keys, capacity 1000000, uniform, 90% get (hits) / 10% put (updates)"};
    bool ran[NSC] = {false};
    make_traces();
    for (int s = 0; s < NSC; s++) {
        bool any = false;
        for (int t = 0; t < MAXT; t++) {
            bench_scenario *x = &sc[s][t];
            x->name = sname[s][t];
            x->what = what[s];
            x->kind = BENCH_RATE;
            x->metric = "throughput";
            x->unit = "Mops/s";
            x->ops_per_iter = 1;
            x->target_ms = 200;
            any |= bench_selected(&cfg, x->name) != 0;
        }
        if (!any)
            continue;
        setup(s);
        for (int t = 0; t < MAXT; t++) {
            bench_scenario *x = &sc[s][t];
            for (int im = 0; im < IMPLS; im++) {
                ctx[s][t][im] = (run_ctx){s, im, t + 1};
                bench_add(x, names[im], notes[im], run, &ctx[s][t][im]);
            }
            bench_run_scenario(&cfg, x);
            bench_ratio(&cfg, x, "ap_cache_s16", "mutex_lru", s >= SC_S1K ? 0 : t == 0 ? 1 : 2);
            bench_ratio(&cfg, x, "ap_cache_s1", "mutex_lru", 0);
        }
        teardown(s, true);
        ran[s] = true;
    }
    size_ratios(sc, ran, names);
    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
