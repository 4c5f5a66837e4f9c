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
    ap_batch_stats s;
    ap_batch_stats_get(&r->b, &s);
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
    ap_batch_stats s;
    ap_batch_stats_get(&r->b, &s);
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

/* ---- issue #14: per-item completions (and the weigher) ----
 * Producers add with a completion record per item (even items: a callback,
 * odd items: a future); every 16 items a producer blocks on the future of
 * an item it added 16 before (ap_block_on: the completion's wake across
 * threads). Takers take with take futures (tracked) and producers that meet
 * AP_FULL take tracked themselves; the consumer writes each item's expected
 * status (sts[id % 4], by the batch id) BEFORE ap_batch_complete. Checked:
 * every record resolves exactly once, with its batch's status, and never
 * before that batch is taken and completed (a callback that finds no
 * expected status yet ran early); under max_bytes no batch of two or more
 * items weighs more than that. */
typedef struct bd_elem {
    uint64_t item;
    uint64_t weight;
} bd_elem;

typedef struct bd_run {
    ap_batch b;
    bd_elem buf[BS_MAX];
    unsigned producers, takers;
    size_t max_size, per_producer, max_bytes;
    ap_batch_done *dones;
    _Atomic int *expect;   /* by item: 1 + the status its batch was completed with; 0 none */
    _Atomic uint32_t *calls; /* by item: callback runs */
    _Atomic int *got;      /* by item: the callback's status */
    _Atomic uint64_t received;
    pthread_barrier_t start;
} bd_run;

static const ap_status bd_sts[4] = {AP_OK, AP_REJECTED, AP_CLOSED, AP_TIMEDOUT};

static size_t bd_weigh(const void *e, void *ctx)
{
    (void)ctx;
    return (size_t)((const bd_elem *)e)->weight;
}

static void bd_cb(void *ctx, ap_batch_done *d, ap_status st)
{
    bd_run *r = (bd_run *)ctx;
    size_t i = (size_t)(d - r->dones);
    CHECK(i < r->per_producer * r->producers && i % 2 == 0, "a callback for record %zu", i);
    int want = STRESS_LOAD(&r->expect[i]) - 1;
    CHECK(want != -1, "record %zu resolved before its batch was completed (batch %" PRIu64 ", %" PRIu64 " taken)", i, d->batch_id, r->b.batches);
    CHECK((int)st == want, "record %zu: %s, its batch was completed with %s", i,
          ap_status_str(st), ap_status_str((ap_status)want));
    STRESS_STORE(&r->got[i], (int)st);
    uint32_t was = atomic_fetch_add_explicit(&r->calls[i], 1u, memory_order_relaxed);
    CHECK(was == 0, "record %zu: callback ran twice", i);
}

static void bd_ship(bd_run *r, const bd_elem *out, size_t n, uint64_t id)
{
    CHECK(n >= 1 && n <= r->max_size && id != 0, "batch %" PRIu64 " of %zu items", id, n);
    ap_status st = bd_sts[id % 4];
    uint64_t w = 0;
    for (size_t k = 0; k < n; k++) {
        size_t p = (size_t)STRESS_ITEM_PRODUCER(out[k].item);
        size_t s = (size_t)STRESS_ITEM_SEQ(out[k].item);
        CHECK(p < r->producers && s < r->per_producer, "invented item %#" PRIx64, out[k].item);
        size_t i = p * r->per_producer + s;
        int old = 0;
        CHECK(atomic_compare_exchange_strong(&r->expect[i], &old, (int)st + 1),
              "item %zu in two batches", i);
        w += out[k].weight;
    }
    if (r->max_bytes != 0 && n > 1)
        CHECK(w <= r->max_bytes, "batch of %zu items weighs %" PRIu64 " > %zu", n, w,
              r->max_bytes);
    STRESS_ADD(&r->received, n);
    ap_status c = ap_batch_complete(&r->b, id, st);
    CHECK(c == AP_OK, "complete %" PRIu64 ": %s", id, ap_status_str(c));
}

static void *bd_producer_main(void *arg)
{
    bs_thread *t = (bs_thread *)arg;
    bd_run *r = (bd_run *)(void *)t->r;
    stress_rng rng;
    bd_elem out[BS_MAX];
    stress_rng_init(&rng, t->seed, t->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_producer; seq++) {
        size_t i = t->id * r->per_producer + seq;
        bd_elem e = {STRESS_ITEM(t->id, seq), 1 + stress_below(&rng, 100)};
        ap_batch_done_init(&r->dones[i], i % 2 == 0 ? bd_cb : NULL, r);
        ap_status st;
        while ((st = ap_batch_add_done(&r->b, &e, ap_now_ns(), NULL, &r->dones[i])) == AP_FULL) {
            size_t n;
            uint64_t id;
            if (ap_batch_take_tracked(&r->b, out, ap_now_ns(), &n, &id) == AP_OK)
                bd_ship(r, out, n, id); /* caller runs */
        }
        CHECK(st == AP_OK, "producer %u: add %s", t->id, ap_status_str(st));
        if (seq >= 16 && seq % 16 == 1) { /* wait for an odd (future) record */
            ap_batch_done *d = &r->dones[i - 16];
            ap_block_on(&d->base);
            int want = STRESS_LOAD(&r->expect[i - 16]) - 1;
            CHECK(want != -1 && (int)ap_batch_done_status(d) == want,
                  "future %zu: %s (want %d)", i - 16, ap_status_str(ap_batch_done_status(d)),
                  want);
        }
        stress_jitter(&rng);
    }
    return NULL;
}

static void *bd_taker_main(void *arg)
{
    bs_thread *t = (bs_thread *)arg;
    bd_run *r = (bd_run *)(void *)t->r;
    bd_elem out[BS_MAX];
    pthread_barrier_wait(&r->start);
    for (;;) {
        ap_batch_take_fut f;
        ap_batch_take_fut_init(&f, &r->b, out);
        ap_block_on(&f.base);
        ap_status st = ap_batch_take_status(&f);
        if (st != AP_OK) {
            CHECK(st == AP_CLOSED, "taker %u: %s", t->id, ap_status_str(st));
            break;
        }
        bd_ship(r, out, ap_batch_take_count(&f), ap_batch_take_id(&f));
    }
    return NULL;
}

static void run_done(unsigned producers, unsigned takers, size_t max_size, size_t max_bytes,
                     size_t total)
{
    if (!stress_begin("batch-done %ux%u max=%zu bytes=%zu", producers, takers, max_size,
                      max_bytes))
        return;
    bd_run *r = (bd_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    r->producers = producers;
    r->takers = takers;
    r->max_size = max_size;
    r->max_bytes = max_bytes;
    r->per_producer = (total + producers - 1) / producers;
    size_t items = r->per_producer * producers;
    r->dones = (ap_batch_done *)calloc(items, sizeof *r->dones);
    r->expect = (_Atomic int *)calloc(items, sizeof *r->expect);
    r->calls = (_Atomic uint32_t *)calloc(items, sizeof *r->calls);
    r->got = (_Atomic int *)calloc(items, sizeof *r->got);
    CHECK(r->dones && r->expect && r->calls && r->got, "out of memory");
    ap_batch_desc d = {.elem_size = sizeof(bd_elem), .max_size = max_size,
                       .max_delay_ns = 50 * AP_NS_PER_US, .max_bytes = max_bytes,
                       .weigh = bd_weigh};
    ap_status st = ap_batch_init(&r->b, r->buf, sizeof r->buf, &d);
    CHECK(st == AP_OK, "ap_batch_init: %s", ap_status_str(st));
    unsigned n = producers + takers;
    bs_thread *t = (bs_thread *)calloc(n, sizeof *t);
    CHECK(t != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, n + 1);
    for (unsigned i = 0; i < n; i++) {
        t[i].r = (bs_run *)(void *)r;
        t[i].id = i < producers ? i : i - producers;
        t[i].seed = stress_thread_seed(i);
        stress_spawn(&t[i].thread, i < producers ? bd_producer_main : bd_taker_main, &t[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < producers; i++)
        stress_join(t[i].thread);
    ap_batch_close(&r->b);
    for (unsigned i = producers; i < n; i++)
        stress_join(t[i].thread);
    CHECK(STRESS_LOAD(&r->received) == items, "received %" PRIu64 " of %zu",
          STRESS_LOAD(&r->received), items);
    for (size_t i = 0; i < items; i++) {
        int want = STRESS_LOAD(&r->expect[i]) - 1;
        CHECK(want != -1, "item %zu never shipped", i);
        CHECK((int)ap_batch_done_status(&r->dones[i]) == want, "record %zu: %s, want %s", i,
              ap_status_str(ap_batch_done_status(&r->dones[i])),
              ap_status_str((ap_status)want));
        if (i % 2 == 0)
            CHECK(STRESS_LOAD(&r->calls[i]) == 1 && STRESS_LOAD(&r->got[i]) == want,
                  "record %zu: %u callbacks", i, (unsigned)STRESS_LOAD(&r->calls[i]));
    }
    ap_batch_stats s;
    ap_batch_stats_get(&r->b, &s);
    CHECK(s.completed == items && s.added == items, "completed %" PRIu64 " of %zu",
          s.completed, items);
    pthread_barrier_destroy(&r->start);
    stress_end("items=%zu batches=%" PRIu64 " by-size=%" PRIu64 " by-bytes=%" PRIu64
               " by-time=%" PRIu64, items, s.batches, s.by_size, s.by_bytes, s.by_time);
    ap_batch_fini(&r->b);
    free(t);
    free(r->dones);
    free((void *)r->expect);
    free((void *)r->calls);
    free((void *)r->got);
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
    static const unsigned dshapes[][2] = {{1, 1}, {4, 1}, {4, 3}};
    static const size_t dbytes[] = {0, 250};
    for (size_t s = 0; s < sizeof dshapes / sizeof dshapes[0]; s++)
        for (size_t m = 1; m < sizeof maxes / sizeof maxes[0]; m++)
            for (size_t w = 0; w < sizeof dbytes / sizeof dbytes[0]; w++)
                run_done(dshapes[s][0], dshapes[s][1], maxes[m], dbytes[w],
                         stress_iters(4000, 50));
    return stress_finish();
}
