/*
 * bench/bench_work_steal.c -- the Chase-Lev deque against a mutex deque
 *
 * Scenarios:
 *   ws_pair_1t         one thread: push one task, pop it; ns per push+pop
 *                      pair. ap_ws_try_push + ap_ws_try_pop vs the same on a
 *                      pthread_mutex-protected array deque.
 *   ws_pair_1t_backlog the same above 8 tasks that stay in the deque, so
 *                      the pop is never the last task (no CAS on top).
 *   ws_owner_thief_2t  two threads: the owner pushes tasks in bursts of 32
 *                      and pops them back (LIFO) while one thief steals from
 *                      the top (FIFO); tasks completed per second (Mops/s,
 *                      owner pops + thief steals).
 *
 * Self-checks: every status is checked; in ws_owner_thief_2t every task
 * value 1..N must come back exactly once (count and sum of values across
 * both threads, and a per-value bitmap), and the thief must see increasing
 * values. Any mismatch exits 2.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_work_steal.c -pthread
 * Run:   ./bench_work_steal [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "bench.h"

#include <pthread.h>

#define CAP 256u
#define BURST 32u
#define T(i) ((void *)(uintptr_t)(i))
#define U(p) ((uintptr_t)(p))

/* ---- the baseline: a mutex-protected array deque, same contract ---- */
typedef struct mdeque {
    pthread_mutex_t mu;
    size_t top, bottom;
    void *buf[CAP];
} mdeque;

static void md_init(mdeque *d)
{
    pthread_mutex_init(&d->mu, NULL);
    d->top = d->bottom = 0;
}
static ap_status md_push(mdeque *d, void *x)
{
    pthread_mutex_lock(&d->mu);
    ap_status st = AP_FULL;
    if (d->bottom - d->top < CAP) {
        d->buf[d->bottom++ % CAP] = x;
        st = AP_OK;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}
static ap_status md_pop(mdeque *d, void **x)
{
    pthread_mutex_lock(&d->mu);
    ap_status st = AP_EMPTY;
    if (d->bottom != d->top) {
        *x = d->buf[--d->bottom % CAP];
        st = AP_OK;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}
static ap_status md_steal(mdeque *d, void **x)
{
    pthread_mutex_lock(&d->mu);
    ap_status st = AP_EMPTY;
    if (d->bottom != d->top) {
        *x = d->buf[d->top++ % CAP];
        st = AP_OK;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

/* One deque of either kind. */
typedef struct dq {
    int is_ap;
    ap_ws ws;
    _Alignas(64) unsigned char mem[AP_WS_BYTES(CAP)];
    mdeque md;
} dq;

static dq dq_ap = {.is_ap = 1}, dq_md = {.is_ap = 0};
static dq dq_ap_b = {.is_ap = 1}, dq_md_b = {.is_ap = 0}; /* with a backlog */

static void dq_init(dq *d)
{
    if (d->is_ap) {
        if (ap_ws_init(&d->ws, d->mem, sizeof d->mem, CAP) != AP_OK)
            bench_fail("ap_ws_init");
    } else {
        md_init(&d->md);
    }
}

/* The operations are written out per kind so each loop is inlined. */
#define DQ_PUSH(d, x) ((d)->is_ap ? ap_ws_try_push(&(d)->ws, (x)) : md_push(&(d)->md, (x)))
#define DQ_POP(d, x) ((d)->is_ap ? ap_ws_try_pop(&(d)->ws, (x)) : md_pop(&(d)->md, (x)))
#define DQ_STEAL(d, x) ((d)->is_ap ? ap_ws_try_steal(&(d)->ws, (x)) : md_steal(&(d)->md, (x)))

/* ---- ws_pair_1t ---- */

static uint64_t pair_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    dq *d = (dq *)ctx;
    dq_init(d);
    /* backlog variant: 8 tasks stay below, so the pop is never the last
     * task (no CAS on top: the busy-worker case) */
    unsigned backlog = (d == &dq_ap_b || d == &dq_md_b) ? 8 : 0;
    for (unsigned k = 0; k < backlog; k++)
        if (DQ_PUSH(d, T(UINT32_MAX)) != AP_OK)
            bench_fail("backlog push");
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            void *x = NULL;
            bad += DQ_PUSH(d, T(i + 1)) != AP_OK;
            bad += DQ_POP(d, &x) != AP_OK;
            bad += U(x) != i + 1;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    void *x;
    for (unsigned k = 0; k < backlog; k++)
        bad += DQ_POP(d, &x) != AP_OK || U(x) != UINT32_MAX;
    if (bad || DQ_POP(d, &x) != AP_EMPTY)
        bench_fail("pair %s: %llu failed ops or wrong values", d->is_ap ? "ap_ws" : "mutex",
                   (unsigned long long)bad);
    *iters = i;
    return t1 - t0;
}

/* ---- ws_owner_thief_2t ---- */

typedef struct ot_run {
    dq *d;
    bench_gate gate;
    _Atomic int done;
    uint64_t thief_count, thief_sum, thief_bad;
    unsigned char *seen; /* per value; the owner's and the thief's marks */
    uint64_t n_max;
} ot_run;

static void *thief_main(void *arg)
{
    ot_run *r = (ot_run *)arg;
    dq *d = r->d;
    uint64_t count = 0, sum = 0, bad = 0;
    uintptr_t last = 0;
    unsigned fails = 0;
    bench_pin(1);
    bench_gate_wait(&r->gate);
    for (;;) {
        int done = atomic_load_explicit(&r->done, memory_order_acquire);
        void *x;
        ap_status st = DQ_STEAL(d, &x);
        if (st == AP_OK) {
            uintptr_t v = U(x);
            bad += v <= last || v > r->n_max || r->seen[v - 1]++ != 0;
            last = v;
            count++;
            sum += v;
            fails = 0;
            continue;
        }
        if (st == AP_EMPTY && done)
            break;
        if (st == AP_EMPTY)
            bench_backoff(&fails);
    }
    r->thief_count = count;
    r->thief_sum = sum;
    r->thief_bad = bad;
    return NULL;
}

static uint64_t ot_run_fn(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    static ot_run r;
    r.d = (dq *)ctx;
    dq_init(r.d);
    bench_gate_init(&r.gate);
    atomic_init(&r.done, 0);
    /* one byte per task value; the owner stops early (a short run, still
     * checked) if it would pass 500 M tasks/s; calloc touches no page */
    r.n_max = budget_ns / 2 + BURST * 64 * 4;
    r.seen = (unsigned char *)calloc(r.n_max, 1);
    if (r.seen == NULL)
        bench_fail("out of memory");
    pthread_t th;
    if (pthread_create(&th, NULL, thief_main, &r) != 0)
        bench_fail("pthread_create");
    bench_pin(0);
    uint64_t t0 = bench_gate_open(&r.gate, 1), t1;
    uint64_t next = 1, count = 0, sum = 0, bad = 0;
    do {
        for (unsigned round = 0; round < 64; round++) {
            for (unsigned k = 0; k < BURST && next <= r.n_max; k++) {
                if (DQ_PUSH(r.d, T(next)) != AP_OK)
                    break; /* full: the thief fell behind; pop first */
                next++;
            }
            void *x;
            while (DQ_POP(r.d, &x) == AP_OK) {
                uintptr_t v = U(x);
                bad += v >= next || r.seen[v - 1]++ != 0;
                count++;
                sum += v;
            }
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns && next <= r.n_max - BURST * 64);
    atomic_store_explicit(&r.done, 1, memory_order_release);
    pthread_join(th, NULL);
    uint64_t n = next - 1, total = count + r.thief_count;
    /* n (n + 1) / 2 without overflow for n < 2^32 */
    uint64_t want_sum = n % 2 ? (n + 1) / 2 * n : n / 2 * (n + 1);
    if (bad || r.thief_bad || total != n || sum + r.thief_sum != want_sum)
        bench_fail("owner_thief %s: pushed %llu, owner %llu + thief %llu, bad %llu/%llu",
                   r.d->is_ap ? "ap_ws" : "mutex", (unsigned long long)n,
                   (unsigned long long)count, (unsigned long long)r.thief_count,
                   (unsigned long long)bad, (unsigned long long)r.thief_bad);
    for (uint64_t v = 0; v < n; v++)
        if (r.seen[v] != 1)
            bench_fail("owner_thief: task %llu seen %u times", (unsigned long long)v + 1,
                       (unsigned)r.seen[v]);
    free(r.seen);
    *iters = total;
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_work_steal");

    static bench_scenario s_pair = {
        "ws_pair_1t", "one thread: push one task pointer, pop it (capacity 256)",
        BENCH_TIME, "ns_per_pair", "ns", 1, 100, {{0}}, 0, 0};
    static bench_scenario s_pairb = {
        "ws_pair_1t_backlog", "one thread: push one task, pop it, above 8 tasks that stay "
                              "(the pop is never the last task)",
        BENCH_TIME, "ns_per_pair", "ns", 1, 100, {{0}}, 0, 0};
    static bench_scenario s_ot = {
        "ws_owner_thief_2t",
        "owner pushes bursts of 32 tasks and pops them back, one thief steals "
        "(capacity 256); tasks completed per second",
        BENCH_RATE, "throughput", "Mops/s", 1, 300, {{0}}, 0, 0};
    const char *md_note = "baseline: pthread_mutex + array deque";

    bench_add(&s_pair, "ap_ws", "ap_ws_try_push + ap_ws_try_pop", pair_run, &dq_ap);
    bench_add(&s_pair, "mutex_deque", md_note, pair_run, &dq_md);
    bench_add(&s_pairb, "ap_ws", "ap_ws_try_push + ap_ws_try_pop", pair_run, &dq_ap_b);
    bench_add(&s_pairb, "mutex_deque", md_note, pair_run, &dq_md_b);
    bench_add(&s_ot, "ap_ws", "Chase-Lev (Le et al. 2013 C11 form)", ot_run_fn, &dq_ap);
    bench_add(&s_ot, "mutex_deque", md_note, ot_run_fn, &dq_md);

    bench_run_scenario(&cfg, &s_pair);
    bench_ratio(&cfg, &s_pair, "ap_ws", "mutex_deque", 10);
    bench_run_scenario(&cfg, &s_pairb);
    bench_ratio(&cfg, &s_pairb, "ap_ws", "mutex_deque", 0);
    bench_run_scenario(&cfg, &s_ot);
    bench_ratio(&cfg, &s_ot, "ap_ws", "mutex_deque", 10);

    int missed = bench_summary();
    if (cfg.tsv)
        fclose(cfg.tsv);
    (void)missed; /* timings are reported, never asserted */
    return 0;
}
