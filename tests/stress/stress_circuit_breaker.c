/*
 * tests/stress/stress_circuit_breaker.c -- ThreadSanitizer stress of the
 * circuit breaker: 8 threads allow + record on a shared fake clock
 *
 * The fake clock is a relaxed atomic that the workers advance themselves
 * (0-2 ns per call), so the breaker cycles CLOSED -> OPEN -> HALF_OPEN ->
 * ... many times per run; 30 % of the outcomes fail (2 % in the last
 * scenario), 5 % are ignored, 3 % canceled. Checked:
 *   - never more than K probes in flight in one half-open period: a test
 *     counter per generation, raised after allow and lowered before record;
 *     never more than K probes admitted in one half-open period (IGNORED
 *     and CANCELED outcomes included); every record consumes its permit
 *   - no call admitted while OPEN or FORCED_OPEN: the state-change callback
 *     logs the state of every generation; after the join, every generation
 *     a permit carried must be CLOSED / DISABLED (probe 0) or HALF_OPEN
 *     (probe != 0)
 *   - conservation: allowed == successes + failures + ignored + canceled + stale,
 *     transitions == generation - 1 == callbacks
 * Scenarios: COUNT window (lock-free CLOSED path), TIME window (lock-free
 * CLOSED path too), TIME and COUNT windows with a thread that forces open /
 * disables / resets meanwhile, and
 * COUNT window with rare failures (the full-of-successes shortcut races
 * the ring); a COUNT run that ends CLOSED also checks the window aggregate,
 * a TIME run that ends CLOSED every bucket (no reset left half done, no
 * epoch past the newest, failures and slow calls <= calls).
 */
#include "stress.h"
#include "asyncpat/circuit_breaker.h"

#define WORKERS 8
#define MAXGEN (1u << 16)

typedef struct cb_run {
    ap_breaker *b;
    ap_breaker_desc desc;
    size_t iters;
    bool manual;
    uint32_t fail_pct; /* outcomes that fail, % (then 5 % ignored) */
    pthread_barrier_t start;
    _Atomic uint64_t clock;
    _Atomic int gen_state[MAXGEN];   /* set by the callback, relaxed */
    _Atomic uint32_t probes[MAXGEN]; /* probes in flight per generation, relaxed */
    _Atomic uint32_t admitted[MAXGEN]; /* probes admitted per generation, relaxed */
    _Atomic uint32_t callbacks;
    _Atomic uint32_t stop;
} cb_run;

typedef struct cb_worker {
    cb_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
    uint8_t *seen; /* [MAXGEN]: 1 = plain permit, 2 = probe */
} cb_worker;

static void on_change(void *ctx, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    cb_run *r = (cb_run *)ctx;
    (void)from;
    CHECK(gen < MAXGEN, "generation %" PRIu64 " beyond the test's table", gen);
    STRESS_STORE(&r->gen_state[gen], (int)to);
    STRESS_ADD(&r->callbacks, 1u);
}

static void *worker(void *arg)
{
    cb_worker *w = (cb_worker *)arg;
    cb_run *r = w->r;
    uint32_t k = r->desc.half_open_probes;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->iters; i++) {
        uint64_t now = STRESS_ADD(&r->clock, stress_below(&w->rng, 3));
        ap_breaker_permit p;
        uint64_t ra;
        if (ap_breaker_allow(r->b, now, &p, &ra) != AP_OK) {
            CHECK(ra > now, "rejected at %" PRIu64 " with retry_at %" PRIu64, now, ra);
            stress_jitter(&w->rng);
            continue;
        }
        CHECK(p.gen < MAXGEN, "generation %" PRIu64 " beyond the test's table", p.gen);
        if (p.probe) {
            uint32_t nadm = STRESS_ADD(&r->admitted[p.gen], 1u);
            CHECK(nadm < k, "%u probes admitted in generation %" PRIu64 " (K = %u)", nadm + 1,
                  p.gen, k);
            uint32_t before = STRESS_ADD(&r->probes[p.gen], 1u);
            CHECK(before < k, "%u probes in flight in generation %" PRIu64 " (K = %u)",
                  before + 1, p.gen, k);
        }
        w->seen[p.gen] |= p.probe ? 2 : 1;
        stress_jitter(&w->rng);
        uint32_t x = stress_below(&w->rng, 100);
        ap_breaker_outcome o = x < r->fail_pct       ? AP_BREAKER_OUTCOME_FAILURE
                               : x < r->fail_pct + 5 ? AP_BREAKER_OUTCOME_IGNORED
                               : x < r->fail_pct + 8 ? AP_BREAKER_OUTCOME_CANCELED
                                        : AP_BREAKER_OUTCOME_SUCCESS;
        uint64_t dur = stress_below(&w->rng, 20);
        now = STRESS_ADD(&r->clock, stress_below(&w->rng, 3));
        if (p.probe)
            (void)STRESS_ADD(&r->probes[p.gen], (uint32_t)-1);
        ap_status st = ap_breaker_record(r->b, &p, o, dur, now);
        CHECK(st == AP_OK, "record: %s", ap_status_str(st));
        CHECK(p.gen == 0, "the record did not consume the permit");
    }
    return NULL;
}

static void *manual(void *arg)
{
    cb_worker *w = (cb_worker *)arg;
    cb_run *r = w->r;
    pthread_barrier_wait(&r->start);
    while (!STRESS_LOAD(&r->stop)) {
        uint32_t x = stress_below(&w->rng, 3);
        if (x == 0)
            ap_breaker_force_open(r->b);
        else if (x == 1)
            ap_breaker_disable(r->b);
        else
            ap_breaker_reset(r->b);
        stress_sleep_us(200 + stress_below(&w->rng, 300));
    }
    return NULL;
}

static void run_scenario(const char *name, ap_breaker_desc d, bool with_manual,
                         uint32_t fail_pct)
{
    if (!stress_begin("%s", name))
        return;
    cb_run *r = calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    d.on_change = on_change;
    d.ctx = r;
    r->desc = ap_breaker_desc_resolved(&d);
    r->iters = (size_t)(100000 * stress_g.scale);
    r->manual = with_manual;
    r->fail_pct = fail_pct;
    CHECK(ap_breaker_create(&r->b, &d, NULL) == AP_OK, "create");
    pthread_barrier_init(&r->start, NULL, WORKERS + (with_manual ? 2 : 1));
    cb_worker w[WORKERS + 1];
    for (unsigned i = 0; i < WORKERS + 1; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_g.seed, i + 1);
        w[i].seen = calloc(MAXGEN, 1);
        CHECK(w[i].seen != NULL, "out of memory");
    }
    for (unsigned i = 0; i < WORKERS; i++)
        stress_spawn(&w[i].thread, worker, &w[i]);
    if (with_manual)
        stress_spawn(&w[WORKERS].thread, manual, &w[WORKERS]);
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < WORKERS; i++)
        stress_join(w[i].thread);
    STRESS_STORE(&r->stop, 1u);
    if (with_manual)
        stress_join(w[WORKERS].thread);

    ap_breaker_stats s;
    ap_breaker_stats_get(r->b, &s);
    uint64_t gen = ap_breaker_generation(r->b);
    CHECK(s.allowed == s.successes + s.failures + s.ignored + s.canceled + s.stale,
          "allowed %" PRIu64 " != successes %" PRIu64 " + failures %" PRIu64
          " + ignored %" PRIu64 " + canceled %" PRIu64 " + stale %" PRIu64,
          s.allowed, s.successes, s.failures, s.ignored, s.canceled, s.stale);
    CHECK(s.allowed + s.rejected == (uint64_t)WORKERS * r->iters, "allow calls lost");
    CHECK(s.transitions == gen - 1, "transitions %" PRIu64 ", generation %" PRIu64,
          s.transitions, gen);
    CHECK(STRESS_LOAD(&r->callbacks) == s.transitions, "callbacks %u, transitions %" PRIu64,
          STRESS_LOAD(&r->callbacks), s.transitions);
    uint64_t probe_gens = 0;
    for (unsigned i = 0; i < WORKERS; i++)
        for (uint64_t g = 1; g < MAXGEN; g++) {
            if (!w[i].seen[g])
                continue;
            int st = g == 1 ? AP_BREAKER_STATE_CLOSED : STRESS_LOAD(&r->gen_state[g]);
            if (w[i].seen[g] & 2) {
                CHECK(st == AP_BREAKER_STATE_HALF_OPEN,
                      "probe permit of generation %" PRIu64 " in state %d", g, st);
                probe_gens++;
            }
            if (w[i].seen[g] & 1)
                CHECK(st == AP_BREAKER_STATE_CLOSED || st == AP_BREAKER_STATE_DISABLED,
                      "permit of generation %" PRIu64 " admitted in state %d", g, st);
        }
    if (r->desc.window == AP_BREAKER_WINDOW_COUNT && 
        (atomic_load(&r->b->state) & 7u) == AP_BREAKER_STATE_CLOSED) {
        /* every record is done: the window of the last generation holds
         * at most window_size outcomes, failures and slow calls among them */
        uint64_t a = atomic_load(&r->b->agg);
        CHECK(AP__BREAKER_F16(a, 32) <= r->desc.window_size && AP__BREAKER_F16(a, 16) <= AP__BREAKER_F16(a, 32) &&
                  AP__BREAKER_F16(a, 0) <= AP__BREAKER_F16(a, 32),
              "window aggregate %#" PRIx64, a);
    }
    if (r->desc.window == AP_BREAKER_WINDOW_TIME &&
        (atomic_load(&r->b->state) & 7u) == AP_BREAKER_STATE_CLOSED) {
        /* every record is done: no bucket is left mid-reset, no bucket's
         * epoch is past the newest, failures and slow calls <= calls */
        uint64_t G = AP__BREAKER_EPOCH(gen), t = atomic_load(&r->b->tnew);
        CHECK((t & AP__BREAKER_EPOCH_MASK) == G, "tnew %#" PRIx64 " not of generation %" PRIu64, t,
              gen);
        for (uint32_t i = 0; i < r->desc.buckets; i++) {
            uint64_t key = atomic_load(&r->b->bkt[i].key), c = atomic_load(&r->b->bkt[i].cnt);
            CHECK((key & (AP__BREAKER_EPOCH_MASK | AP__BREAKER_KFLAG)) == G &&
                      (key & AP__BREAKER_EP_MASK) <= (t & AP__BREAKER_EP_MASK),
                  "bucket %u key %#" PRIx64 " (tnew %#" PRIx64 ")", i, key, t);
            CHECK(AP__BREAKER_C_FAILS(c) <= AP__BREAKER_C_CALLS(c) && AP__BREAKER_C_SLOW(c) <= AP__BREAKER_C_CALLS(c),
                  "bucket %u counts %#" PRIx64, i, c);
        }
    }
    CHECK(probe_gens > 0 && s.transitions > 10, "the run did not cycle (%" PRIu64
          " transitions)", s.transitions);
    char extra[160];
    snprintf(extra, sizeof extra,
             "%" PRIu64 " transitions, %" PRIu64 " allowed, %" PRIu64 " rejected, %" PRIu64
             " stale, %" PRIu64 " leases expired",
             s.transitions, s.allowed, s.rejected, s.stale, s.lease_expired);
    for (unsigned i = 0; i < WORKERS + 1; i++)
        free(w[i].seen);
    pthread_barrier_destroy(&r->start);
    ap_breaker_destroy(r->b);
    free(r);
    stress_end("%s", extra);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_circuit_breaker");
    run_scenario("count window, K=3",
                 (ap_breaker_desc){.window_size = 16, .min_calls = 8, .open_ns = 500,
                                   .open_multiplier_pct = 150, .open_max_ns = 4000,
                                   .half_open_probes = 3, .probe_lease_ns = 400,
                                   .slow_call_ns = 19, .slow_rate_pct = 30},
                 false, 30);
    run_scenario("time window, K=5",
                 (ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = 400,
                                   .buckets = 8, .min_calls = 10, .open_ns = 500,
                                   .half_open_probes = 5, .probe_lease_ns = 300,
                                   .consecutive_failures = 6},
                 false, 30);
    /* the lock-free TIME window against resets to a new generation;
     * 25 ns buckets, so buckets are moved to newer epochs all the time */
    run_scenario("time window + force/disable/reset, K=2",
                 (ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = 100,
                                   .buckets = 4, .min_calls = 20, .failure_rate_pct = 40,
                                   .slow_call_ns = 15, .slow_rate_pct = 60, .open_ns = 500,
                                   .half_open_probes = 2, .probe_lease_ns = 200},
                 true, 30);
    run_scenario("count window + force/disable/reset, K=2",
                 (ap_breaker_desc){.window_size = 32, .min_calls = 10, .open_ns = 500,
                                   .half_open_probes = 2, .probe_lease_ns = 200},
                 true, 30);
    /* rare failures and no slow calls: the window is often full of
     * successes, so records take the shortcut that writes nothing while
     * others go through the ring */
    run_scenario("count window, 2 % failures, K=2",
                 (ap_breaker_desc){.window_size = 16, .failure_rate_pct = 12, .open_ns = 500,
                                   .half_open_probes = 2, .probe_lease_ns = 400,
                                   .slow_call_ns = 1000, .consecutive_failures = 2},
                 false, 2);
    return stress_finish();
}
