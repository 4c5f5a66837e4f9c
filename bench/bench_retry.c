/*
 * bench/bench_retry.c -- retry delays and the cost of ap_timeout
 *
 * Scenarios:
 *   retry_next_delay_1t  one thread: ns per ap_retry_next_delay, for each
 *                        policy (fixed, exponential, full, equal and
 *                        decorrelated jitter; b = 1 ms, c = 1 s, x2), the
 *                        state restarted every 16 delays (a restart is one
 *                        struct copy). Baseline: the textbook floating-point
 *                        full jitter (double multiply, uniform double in
 *                        [0, 1) from the same xoshiro256**, scaled).
 *   timeout_poll_1t      one thread: ns per "init + poll" of a future that
 *                        is ready at once: bare, vs wrapped in ap_timeout
 *                        (ap_timeout_init + ap_timeout_poll, which checks
 *                        the deadline before and after the inner poll).
 *
 * Self-checks: every delay lies within its policy's bounds (<= cap, >= the
 * policy's minimum) and the sum of the delays is consumed; every poll is
 * READY, the inner future ran exactly once per iteration and the timeout's
 * status is AP_OK. Any mismatch exits 2.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_retry.c -pthread
 * Run:   ./bench_retry [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "bench.h"

#define B_NS AP_NS_PER_MS
#define C_NS AP_NS_PER_SEC

static volatile uint64_t sink;

/* ---- retry_next_delay_1t ---- */

typedef struct delay_ctx {
    ap_retry_backoff policy;
} delay_ctx;

static uint64_t delay_ap(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    delay_ctx *dc = ctx;
    ap_retry_state st0, st = {0};
    if (ap_retry_state_init(&st0, &(ap_retry_desc){.max_attempts = 17, .backoff = dc->policy,
                                                   .initial_ns = B_NS, .cap_ns = C_NS}) != AP_OK)
        bench_fail("ap_retry_state_init");
    ap_rng rng;
    ap_rng_seed(&rng, 12345);
    uint64_t lo = dc->policy == AP_RETRY_BACKOFF_FULL_JITTER ? 0
                  : dc->policy == AP_RETRY_BACKOFF_EQUAL_JITTER ? B_NS / 2
                                                                : B_NS;
    uint64_t t0 = bench_now_ns(), t1, i = 0, sum = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            if ((i & 15) == 0)
                st = st0;
            uint64_t d = ap_retry_next_delay(&st, &rng);
            bad += d > C_NS || d < lo;
            sum += d;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || sum == 0)
        bench_fail("retry delay policy %d: %llu delays out of bounds", (int)dc->policy,
                   (unsigned long long)bad);
    sink = sum;
    *iters = i;
    return t1 - t0;
}

/* the baseline: textbook full jitter in double precision */
static uint64_t delay_float(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    ap_rng rng;
    ap_rng_seed(&rng, 12345);
    double e = 0;
    uint64_t t0 = bench_now_ns(), t1, i = 0, sum = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            if ((i & 15) == 0)
                e = (double)B_NS;
            double u = (double)(ap_rng_next_u64(&rng) >> 11) * 0x1p-53;
            uint64_t d = (uint64_t)(e * u);
            e = e * 2 < (double)C_NS ? e * 2 : (double)C_NS;
            bad += d > C_NS;
            sum += d;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || sum == 0)
        bench_fail("float full jitter out of bounds");
    sink = sum;
    *iters = i;
    return t1 - t0;
}

/* ---- timeout_poll_1t ---- */

typedef struct ready_fut {
    ap_future base;
    uint64_t polls;
} ready_fut;

static ap_poll ready_poll(ap_future *f, ap_cx *cx)
{
    (void)cx;
    ((ready_fut *)(void *)f)->polls++;
    return AP_READY;
}

static void ready_init(ready_fut *r)
{
    r->base.poll = ready_poll;
    r->base.cancel = NULL;
}

#define BARRIER() __asm__ __volatile__("" ::: "memory")

static uint64_t poll_bare(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    ready_fut r = {{NULL, NULL}, 0};
    ap_cx cx = {AP_WAKER_NONE, 1000, AP_DEADLINE_NONE};
    ap_future *volatile fp = &r.base; /* the driver sees an opaque future */
    uint64_t t0 = bench_now_ns(), t1, i = 0, notready = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            ready_init(&r);
            ap_future *f = fp;
            notready += f->poll(f, &cx) != AP_READY;
            BARRIER();
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (notready || r.polls != i)
        bench_fail("bare poll: %llu not ready, %llu polls for %llu iterations",
                   (unsigned long long)notready, (unsigned long long)r.polls,
                   (unsigned long long)i);
    *iters = i;
    return t1 - t0;
}

static uint64_t poll_timeout(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    ready_fut r = {{NULL, NULL}, 0};
    ap_timeout t;
    ap_cx cx = {AP_WAKER_NONE, 1000, AP_DEADLINE_NONE};
    ap_future *volatile tp = &t.base;
    uint64_t t0 = bench_now_ns(), t1, i = 0, notready = 0, notok = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            ready_init(&r);
            ap_timeout_init_after(&t, &r.base, cx.now, 50 * AP_NS_PER_MS);
            ap_future *f = tp;
            notready += f->poll(f, &cx) != AP_READY;
            notok += ap_timeout_status(&t) != AP_OK;
            BARRIER();
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (notready || notok || r.polls != i)
        bench_fail("timeout poll: %llu not ready, %llu not ok, %llu polls for %llu iterations",
                   (unsigned long long)notready, (unsigned long long)notok,
                   (unsigned long long)r.polls, (unsigned long long)i);
    *iters = i;
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_retry");

    static bench_scenario s_delay = {
        "retry_next_delay_1t",
        "one thread: ap_retry_next_delay per policy (b 1 ms, c 1 s, x2, restart every 16)",
        BENCH_TIME, "ns_per_delay", "ns", 1, 60, {{0}}, 0, 0};
    static bench_scenario s_to = {
        "timeout_poll_1t", "one thread: init + poll of a ready future, bare vs in ap_timeout",
        BENCH_TIME, "ns_per_poll", "ns", 1, 60, {{0}}, 0, 0};

    static delay_ctx fixed = {AP_RETRY_BACKOFF_FIXED}, expo = {AP_RETRY_BACKOFF_EXPONENTIAL},
                     full = {AP_RETRY_BACKOFF_FULL_JITTER}, equal = {AP_RETRY_BACKOFF_EQUAL_JITTER},
                     decor = {AP_RETRY_BACKOFF_DECORRELATED_JITTER};
    bench_add(&s_delay, "fixed", "AP_RETRY_BACKOFF_FIXED", delay_ap, &fixed);
    bench_add(&s_delay, "exponential", "integer x2, capped", delay_ap, &expo);
    bench_add(&s_delay, "full_jitter", "uniform[0, e_k], unbiased", delay_ap, &full);
    bench_add(&s_delay, "equal_jitter", "e/2 + uniform[0, e/2]", delay_ap, &equal);
    bench_add(&s_delay, "decorrelated", "min(c, uniform[b, 3 d])", delay_ap, &decor);
    bench_add(&s_delay, "float_full_jitter", "baseline: double e*2, e*u (biased, FP)",
              delay_float, NULL);

    bench_add(&s_to, "bare", "poll the ready future directly", poll_bare, NULL);
    bench_add(&s_to, "ap_timeout", "ap_timeout_init_after + poll around it", poll_timeout, NULL);

    bench_run_scenario(&cfg, &s_delay);
    bench_ratio(&cfg, &s_delay, "full_jitter", "float_full_jitter", 0);
    bench_ratio(&cfg, &s_delay, "exponential", "float_full_jitter", 0);
    bench_ratio(&cfg, &s_delay, "decorrelated", "float_full_jitter", 0);

    bench_run_scenario(&cfg, &s_to);
    bench_ratio(&cfg, &s_to, "ap_timeout", "bare", 0);
    if (s_to.ran) {
        const bench_impl *a = bench_find(&s_to, "ap_timeout"), *b = bench_find(&s_to, "bare");
        printf("   ap_timeout overhead: %.2f ns per poll (median difference)\n",
               a->st.median - b->st.median);
        if (cfg.tsv)
            fprintf(cfg.tsv, "timeout_poll_1t.overhead\tns_per_poll\t%.3f\tns\n",
                    a->st.median - b->st.median);
    }

    int missed = bench_summary();
    (void)missed;
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
