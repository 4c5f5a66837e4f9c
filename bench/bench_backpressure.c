/*
 * bench/bench_backpressure.c -- asyncpat/backpressure.h
 *
 * Scenario
 *   bp_push_pop_1t  one thread: ap_bp_push of one uint64_t, then
 *                   ap_bp_try_pop of one, on a buffer of 64 that holds 32
 *                   throughout (between the watermarks: high 48, low 16), so
 *                   every strategy runs its accepting path; ns per pair.
 *                   One row per strategy, against the naive mutex+condvar
 *                   bounded queue (bench/peers/mutex_queue.h) doing the same.
 *
 * Self-check: every pop returns the value pushed 32 pairs earlier (FIFO,
 * nothing lost or invented), every push is accepted, and the counters say
 * offered == accepted == pushes and popped == pops.
 */
#include "asyncpat.h"
#include "bench.h"
#include "peers/mutex_queue.h"

#define BP_CAP 64
#define BP_FILL 32

typedef struct bp_ctx { ap_bp_strategy strategy; } bp_ctx;

static uint64_t pair_bp(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const bp_ctx *c = ctx;
    ap_bp *bp;
    ap_bp_desc d = {.capacity = BP_CAP, .elem_size = sizeof(uint64_t), .strategy = c->strategy,
                    .high_watermark = 48, .low_watermark = 16,
                    .throttle = {.n = 1000, .period_ns = 1000000000u, .burst = 10}};
    if (ap_bp_create(&bp, &d, NULL) != AP_OK)
        bench_fail("ap_bp_create");
    uint64_t next_in = 0, next_out = 0, bad = 0, ev, out = 0;
    for (; next_in < BP_FILL; next_in++)
        bad += ap_bp_push(bp, &next_in, 0, &ev, NULL) != AP_OK;
    uint64_t t0 = bench_now_ns(), t1, i = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            bad += ap_bp_push(bp, &next_in, t0, &ev, NULL) != AP_OK;
            next_in++;
            bad += ap_bp_try_pop(bp, &out) != AP_OK;
            bad += out != next_out;
            next_out++;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    if (bad || s.offered != next_in || s.accepted != next_in || s.popped != next_out ||
        ap_bp_len(bp) != BP_FILL || ap_bp_level(bp) != AP_BP_LEVEL_STATE_LOW)
        bench_fail("bp_push_pop_1t (strategy %d): %llu bad ops, offered %llu accepted %llu "
                   "popped %llu len %zu",
                   (int)c->strategy, (unsigned long long)bad, (unsigned long long)s.offered,
                   (unsigned long long)s.accepted, (unsigned long long)s.popped, ap_bp_len(bp));
    ap_bp_destroy(bp);
    *iters = i;
    return t1 - t0;
}

/* The floor: the bare ap_mpmc the buffer is built on (no level, no
 * waiting support of its own beyond the mpmc's), same fill, same loop. */
static uint64_t pair_mpmc(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    ap_mpmc *q;
    if (ap_mpmc_create(&q, BP_CAP, sizeof(uint64_t), NULL) != AP_OK)
        bench_fail("ap_mpmc_create");
    uint64_t next_in = 0, next_out = 0, bad = 0, out = 0;
    for (; next_in < BP_FILL; next_in++)
        bad += ap_mpmc_try_push(q, &next_in) != AP_OK;
    uint64_t t0 = bench_now_ns(), t1, i = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            bad += ap_mpmc_try_push(q, &next_in) != AP_OK;
            next_in++;
            bad += ap_mpmc_try_pop(q, &out) != AP_OK;
            bad += out != next_out;
            next_out++;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || ap_mpmc_len(q) != BP_FILL)
        bench_fail("bp_push_pop_1t (bare mpmc): %llu bad ops", (unsigned long long)bad);
    ap_mpmc_destroy(q);
    *iters = i;
    return t1 - t0;
}

static uint64_t pair_naive(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    mutex_queue q;
    if (mutex_queue_init(&q, BP_CAP) != 0)
        bench_fail("mutex_queue_init");
    uint64_t next_in = 0, next_out = 0, bad = 0;
    for (; next_in < BP_FILL; next_in++)
        mutex_queue_push(&q, next_in);
    uint64_t t0 = bench_now_ns(), t1, i = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            mutex_queue_push(&q, next_in++);
            bad += mutex_queue_pop(&q) != next_out++;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || q.count != BP_FILL)
        bench_fail("mutex_queue pair: %llu bad values, count %zu", (unsigned long long)bad,
                   q.count);
    mutex_queue_fini(&q);
    *iters = i;
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_backpressure");

    static bench_scenario s_pair = {
        "bp_push_pop_1t",
        "one thread: push one uint64_t, pop one; capacity 64 holding 32 (high 48, low 16)",
        BENCH_TIME, "ns_per_pair", "ns", 1, 100, {{0}}, 0, 0};
    static const bp_ctx block = {AP_BP_STRATEGY_BLOCK}, newest = {AP_BP_STRATEGY_DROP_NEWEST},
                        oldest = {AP_BP_STRATEGY_DROP_OLDEST}, throttle = {AP_BP_STRATEGY_THROTTLE};
    bench_add(&s_pair, "ap_bp_block", "AP_BP_STRATEGY_BLOCK: ap_bp_push + ap_bp_try_pop", pair_bp,
              (void *)&block);
    bench_add(&s_pair, "ap_bp_drop_newest", "AP_BP_STRATEGY_DROP_NEWEST", pair_bp, (void *)&newest);
    bench_add(&s_pair, "ap_bp_drop_oldest", "AP_BP_STRATEGY_DROP_OLDEST (producer lock)", pair_bp,
              (void *)&oldest);
    bench_add(&s_pair, "ap_bp_throttle", "AP_BP_STRATEGY_THROTTLE (LOW: no token)", pair_bp,
              (void *)&throttle);
    bench_add(&s_pair, "ap_mpmc", "the floor: bare ap_mpmc try_push + try_pop (no level)",
              pair_mpmc, NULL);
    bench_add(&s_pair, "mutex_condvar", "naive baseline: mutex + condvar bounded queue",
              pair_naive, NULL);

    bench_run_scenario(&cfg, &s_pair);
    bench_ratio(&cfg, &s_pair, "ap_bp_block", "mutex_condvar", 0);
    bench_ratio(&cfg, &s_pair, "ap_bp_drop_newest", "mutex_condvar", 0);
    bench_ratio(&cfg, &s_pair, "ap_bp_drop_oldest", "mutex_condvar", 0);
    bench_ratio(&cfg, &s_pair, "ap_bp_throttle", "mutex_condvar", 0);
    bench_ratio(&cfg, &s_pair, "ap_bp_block", "ap_mpmc", 0);

    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
