/*
 * tests/stress/stress_batch.c -- ThreadSanitizer stress of the batcher
 * (asyncpat/batch.h): producers add on the real clock while takers wait
 * with take futures (ap_batch_take_wait) and producers that meet a full
 * batch take it themselves (caller runs)
 *
 * Scenarios: producers (each now and then quiet for up to two delays, so
 * batches also come due by age) x takers in {1x1, 4x1, 4x2, 8x3}, max_size in
 * {1, 3, 16}, max_delay in {20 us, 1 ms}; the main thread closes after the
 * producers are done, and the takers drain.
 * Checked: every item is received exactly once, never invented; inside a
 * batch each producer's items are in its add order; no batch exceeds
 * max_size; a batch smaller than max_size that was not drained by close
 * was taken no earlier than its oldest item's add time + max_delay (on the
 * same monotonic clock: "never early"); the counters add up (added ==
 * items, batches == by_size + by_time + by_close + by_flush). TSan checks
 * that the items' bytes are ordered by the batcher's lock alone.
 */
#include "stress.h"
#include "asyncpat/batch.h"

#define BS_MAX 16

typedef struct bs_elem {
    uint64_t item;   /* STRESS_ITEM(producer, seq) */
    uint64_t add_ns; /* the now_ns passed to ap_batch_add */
} bs_elem;

typedef struct bs_run {
    ap_batch b;
    bs_elem buf[BS_MAX];
    unsigned producers, takers;
    size_t max_size, per_producer;
    uint64_t delay;
    _Atomic uint8_t *seen;
    _Atomic uint64_t received, batches_seen, caller_runs;
    _Atomic bool closed_by_main; /* relaxed: set before close, read after a take */
    pthread_barrier_t start;
} bs_run;

typedef struct bs_thread {
    bs_run *r;
    unsigned id;
    uint64_t seed;
    pthread_t thread;
} bs_thread;

static void bs_record(bs_run *r, const bs_elem *out, size_t n, uint64_t taken_ns, bool may_be_short)
{
    CHECK(n >= 1 && n <= r->max_size, "batch of %zu items (max_size %zu)", n, r->max_size);
    uint64_t last[8] = {0}, oldest = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t p = (size_t)STRESS_ITEM_PRODUCER(out[i].item);
        size_t s = (size_t)STRESS_ITEM_SEQ(out[i].item);
        CHECK(p < r->producers && s < r->per_producer, "invented item %#" PRIx64, out[i].item);
        CHECK(s + 1 > last[p], "producer %zu: seq %zu after %" PRIu64 " inside one batch", p, s,
              last[p] - 1);
        last[p] = s + 1;
        uint8_t was = atomic_fetch_add_explicit(&r->seen[p * r->per_producer + s], 1u,
                                                memory_order_relaxed);
        CHECK(was == 0, "item %#" PRIx64 " received twice", out[i].item);
        if (out[i].add_ns < oldest)
            oldest = out[i].add_ns;
    }
    /* never early: a short batch was due by age (unless close drained it) */
    if (n < r->max_size && !may_be_short)
        CHECK(taken_ns >= oldest + r->delay,
              "a batch of %zu < %zu taken %" PRIu64 " ns after its oldest item (delay %" PRIu64 ")",
              n, r->max_size, taken_ns - oldest, r->delay);
    STRESS_ADD(&r->received, n);
    STRESS_ADD(&r->batches_seen, 1u);
}

static void *bs_producer_main(void *arg)
{
    bs_thread *t = (bs_thread *)arg;
    bs_run *r = t->r;
    stress_rng rng;
    bs_elem out[BS_MAX];
    stress_rng_init(&rng, t->seed, t->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_producer; seq++) {
        bs_elem e = {STRESS_ITEM(t->id, seq), 0};
        ap_status st;
        for (;;) {
            e.add_ns = ap_now_ns();
            st = ap_batch_add(&r->b, &e, e.add_ns, NULL);
            if (st != AP_FULL)
                break;
            size_t n;
            /* caller runs: a full batch is due whatever the time */
            if (ap_batch_take(&r->b, out, ap_now_ns(), &n) == AP_OK) {
                bs_record(r, out, n, ap_now_ns(), false);
                STRESS_ADD(&r->caller_runs, 1u);
            }
        }
        CHECK(st == AP_OK, "producer %u: add %s", t->id, ap_status_str(st));
        stress_jitter(&rng);
        if (stress_below(&rng, 48) == 0) /* go quiet for up to 2 delays: age flushes */
            stress_sleep_us(stress_below(&rng, (uint32_t)(2 * r->delay / AP_NS_PER_US) + 1));
    }
    return NULL;
}

static void *bs_taker_main(void *arg)
{
    bs_thread *t = (bs_thread *)arg;
    bs_run *r = t->r;
    bs_elem out[BS_MAX];
    size_t n;
    pthread_barrier_wait(&r->start);
    ap_status st;
    while ((st = ap_batch_take_wait(&r->b, out, &n, AP_DEADLINE_NONE)) == AP_OK)
        bs_record(r, out, n, ap_now_ns(), STRESS_LOAD(&r->closed_by_main));
    CHECK(st == AP_CLOSED, "taker %u: %s", t->id, ap_status_str(st));
    return NULL;
}

static void bs_diag(void *arg)
{
    bs_run *r = (bs_run *)arg;
    ap_batch_stats s = ap_batch_stats_get(&r->b);
    fprintf(stderr, "    received %" PRIu64 " of %zu; added %" PRIu64 " batches %" PRIu64
            " len %zu\n", STRESS_LOAD(&r->received), r->producers * r->per_producer, s.added,
            s.batches, s.len);
}

static void run_batch(unsigned producers, unsigned takers, size_t max_size, uint64_t delay,
                      size_t total)
{
    if (!stress_begin("batch %ux%u max=%zu delay=%" PRIu64 "us", producers, takers, max_size,
                      delay / AP_NS_PER_US))
        return;
    bs_run *r = (bs_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    r->producers = producers;
    r->takers = takers;
    r->max_size = max_size;
    r->delay = delay;
    r->per_producer = (total + producers - 1) / producers;
    r->seen = (_Atomic uint8_t *)calloc(r->per_producer * producers, 1);
    CHECK(r->seen != NULL, "out of memory");
    ap_batch_desc d = {.elem_size = sizeof(bs_elem), .max_size = max_size, .max_delay_ns = delay};
    ap_status st = ap_batch_init(&r->b, r->buf, sizeof r->buf, &d);
    CHECK(st == AP_OK, "ap_batch_init: %s", ap_status_str(st));
    unsigned n = producers + takers;
    bs_thread *t = (bs_thread *)calloc(n, sizeof *t);
    CHECK(t != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, n + 1);
    stress_diag(bs_diag, r);
    for (unsigned i = 0; i < n; i++) {
        t[i].r = r;
        t[i].id = i < producers ? i : i - producers;
        t[i].seed = stress_thread_seed(i);
        stress_spawn(&t[i].thread, i < producers ? bs_producer_main : bs_taker_main, &t[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < producers; i++)
        stress_join(t[i].thread);
    STRESS_STORE(&r->closed_by_main, true);
    ap_batch_close(&r->b);
    for (unsigned i = producers; i < n; i++)
        stress_join(t[i].thread);
    stress_diag(NULL, NULL);
    size_t items = r->per_producer * producers;
    for (size_t i = 0; i < items; i++)
        CHECK(STRESS_LOAD(&r->seen[i]) == 1, "item %zu received %u times", i,
              (unsigned)STRESS_LOAD(&r->seen[i]));
    ap_batch_stats s = ap_batch_stats_get(&r->b);
    CHECK(s.added == items && s.len == 0, "added %" PRIu64 " len %zu", s.added, s.len);
    CHECK(s.batches == STRESS_LOAD(&r->batches_seen) &&
              s.batches == s.by_size + s.by_time + s.by_close + s.by_flush,
          "batches %" PRIu64 " seen %" PRIu64, s.batches, STRESS_LOAD(&r->batches_seen));
    bs_elem e = {0, 0};
    CHECK(ap_batch_add(&r->b, &e, 0, NULL) == AP_CLOSED, "add after close");
    pthread_barrier_destroy(&r->start);
    stress_end("items=%zu batches=%" PRIu64 " by-size=%" PRIu64 " by-time=%" PRIu64
               " caller-runs=%" PRIu64, items, s.batches, s.by_size, s.by_time,
               STRESS_LOAD(&r->caller_runs));
    ap_batch_fini(&r->b);
    free(t);
    free((void *)r->seen);
    free(r);
}

int main(int argc, char **argv)
{
    static const unsigned shapes[][2] = {{1, 1}, {4, 1}, {4, 2}, {8, 3}};
    static const size_t maxes[] = {1, 3, 16};
    static const uint64_t delays[] = {20 * AP_NS_PER_US, AP_NS_PER_MS};
    stress_init(argc, argv, "stress_batch");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t m = 0; m < sizeof maxes / sizeof maxes[0]; m++)
            for (size_t d = 0; d < sizeof delays / sizeof delays[0]; d++)
                run_batch(shapes[s][0], shapes[s][1], maxes[m], delays[d],
                          stress_iters(4000, 50));
    return stress_finish();
}
