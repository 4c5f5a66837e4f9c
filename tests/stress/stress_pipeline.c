/*
 * tests/stress/stress_pipeline.c -- ThreadSanitizer stress of the pipeline
 * (asyncpat/pipeline.h) with real threads driving its stages
 *
 * Scenarios
 *   fifo        one producer, one worker per stage, one consumer; k in
 *               {1, 3, 5} stages, capacities in {1, 2, 64}. Workers are
 *               threads that either ap_block_on a run future or loop over
 *               ap_pipeline_stage_run with a random max_items (both kinds
 *               in one line); the producer uses try_push or push_wait, the
 *               consumer try_pop or pop_wait. Checked: the k-th output is
 *               the k-th input (FIFO end to end), each stage's transform ran
 *               once, in stage order (a payload trail).
 *   multi       2 producers, 2-3 workers per stage, 2 consumers, a stage
 *               that filters (AP_FILTERED) and one that fails (AP_REJECTED
 *               or AP_TIMEDOUT by the item's parity, with its own
 *               app_error beside: 0x10000 | the item's low bits, so the
 *               stats' last pair must agree on the parity: never torn)
 *               a known subset of items. Checked: every item comes out
 *               exactly once iff it passes every filter, never invented,
 *               trail intact; with several workers order is not promised.
 *   close-race  the producers push until AP_CLOSED while the main thread
 *               closes at a random moment: what was pushed with AP_OK comes
 *               out (or is counted filtered/failed), nothing else.
 * After every run: the consumers saw AP_CLOSED (close propagated through
 * every stage, so the drain completed); every worker finished holding
 * nothing; per stage taken == emitted + filtered + failed; end to end
 * entered == left + filtered + failed; stage counters agree with the
 * items the checker expected to be dropped. Test code adds no
 * happens-before edges between pipeline users (relaxed counters only), so
 * TSan sees the element copies ordered by the queues alone.
 */
#include "stress.h"
#include "asyncpat/pipeline.h"

#define PL_MAXK 5
#define PL_MAXW 3

typedef struct pl_elem {
    uint64_t item;  /* STRESS_ITEM(producer, seq) */
    uint64_t trail; /* folded by every stage */
} pl_elem;

typedef struct pl_run pl_run;

typedef struct pl_worker {
    pl_run *r;
    unsigned stage, idx, id;
    bool use_future;
    uint64_t seed;
    pthread_t thread;
    ap_pipeline_worker w;
    pl_elem in, out;
} pl_worker;

struct pl_run {
    ap_pipeline p;
    ap_pipeline_stage st[PL_MAXK];
    ap_pipeline_stage_desc sd[PL_MAXK];
    unsigned ctx[PL_MAXK]; /* stage index, for the fn */
    void *bufs[PL_MAXK + 1];
    unsigned k, producers, consumers, workers;
    size_t capacity, per_producer;
    bool filters, close_race;
    pl_worker *w;
    _Atomic uint8_t *seen;    /* per item: times received */
    _Atomic uint8_t *pushed;  /* per item: pushed with AP_OK */
    _Atomic uint64_t received, expected_filtered, expected_failed;
    pthread_barrier_t start;
};

/* stage 1 filters (when enabled), stage 2 (or the last) fails */
static bool pl_filtered_at(const pl_run *r, unsigned stage, uint64_t item)
{
    uint64_t h = stress_mix64(item);
    return r->filters && stage == 1 % r->k && h % 7 == 3;
}

static bool pl_failed_at(const pl_run *r, unsigned stage, uint64_t item)
{
    uint64_t h = stress_mix64(item);
    return r->filters && stage == 2 % r->k && h % 11 == 5;
}

static uint64_t pl_trail(uint64_t item, unsigned k)
{
    uint64_t t = item;
    for (unsigned i = 0; i < k; i++)
        t = t * 31u + i + 1;
    return t;
}

static pl_run *pl_cur; /* the stage fn's view of the run (set before threads start) */

static ap_status pl_fn(void *ctx, const void *in, void *out, int *app_error)
{
    CHECK(*app_error == 0, "*app_error %d on entry", *app_error);
    unsigned stage = *(const unsigned *)ctx;
    const pl_elem *a = (const pl_elem *)in;
    pl_elem *b = (pl_elem *)out;
    if (pl_filtered_at(pl_cur, stage, a->item))
        return AP_FILTERED;
    if (pl_failed_at(pl_cur, stage, a->item)) {
        *app_error = 0x10000 | (int)(a->item & 0x3fff);
        return (a->item & 1) ? AP_REJECTED : AP_TIMEDOUT;
    }
    b->item = a->item;
    b->trail = a->trail * 31u + stage + 1;
    return AP_OK;
}

static size_t pl_index(const pl_run *r, uint64_t item)
{
    return (size_t)STRESS_ITEM_PRODUCER(item) * r->per_producer + (size_t)STRESS_ITEM_SEQ(item);
}

static void *pl_worker_main(void *arg)
{
    pl_worker *pw = (pl_worker *)arg;
    pl_run *r = pw->r;
    stress_rng rng;
    stress_rng_init(&rng, pw->seed, 500 + pw->id);
    pthread_barrier_wait(&r->start);
    if (pw->use_future) {
        ap_pipeline_run_fut f;
        ap_pipeline_run_fut_init(&f, &pw->w, 1 + stress_below(&rng, 16));
        ap_block_on(&f.base);
        CHECK(ap_pipeline_run_status(&f) == AP_OK, "worker %u/%u: run future %s", pw->stage,
              pw->idx, ap_status_str(ap_pipeline_run_status(&f)));
    } else {
        unsigned fails = 0;
        for (;;) {
            size_t done = 0;
            ap_status st = ap_pipeline_stage_run(&pw->w, 1 + stress_below(&rng, 8), &done);
            if (st == AP_CLOSED)
                break;
            CHECK(st == AP_OK || st == AP_EMPTY || st == AP_FULL || st == AP_AGAIN,
                  "worker %u/%u: stage_run %s", pw->stage, pw->idx, ap_status_str(st));
            if (st == AP_OK || done > 0) {
                fails = 0;
                stress_jitter(&rng);
            } else {
                stress_backoff(&fails, &rng);
            }
        }
    }
    CHECK(ap_pipeline_worker_finished(&pw->w) && !ap_pipeline_worker_holding(&pw->w),
          "worker %u/%u ended holding an element", pw->stage, pw->idx);
    return NULL;
}

static void *pl_producer_main(void *arg)
{
    pl_worker *pw = (pl_worker *)arg;
    pl_run *r = pw->r;
    stress_rng rng;
    unsigned fails = 0;
    stress_rng_init(&rng, pw->seed, pw->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_producer; seq++) {
        pl_elem e = {STRESS_ITEM(pw->idx, seq), STRESS_ITEM(pw->idx, seq)};
        ap_status st;
        if (pw->use_future) {
            st = ap_pipeline_push_wait(&r->p, &e, AP_DEADLINE_NONE);
        } else {
            while ((st = ap_pipeline_try_push(&r->p, &e)) == AP_FULL || st == AP_AGAIN)
                stress_backoff(&fails, &rng);
            fails = 0;
        }
        if (st == AP_CLOSED) {
            CHECK(r->close_race, "producer %u: AP_CLOSED before close", pw->idx);
            break;
        }
        CHECK(st == AP_OK, "producer %u: push %s", pw->idx, ap_status_str(st));
        STRESS_STORE(&r->pushed[pl_index(r, e.item)], 1u);
        stress_jitter(&rng);
    }
    return NULL;
}

static void *pl_consumer_main(void *arg)
{
    pl_worker *pw = (pl_worker *)arg;
    pl_run *r = pw->r;
    stress_rng rng;
    unsigned fails = 0;
    uint64_t next = 0; /* fifo: the next item expected (one producer) */
    bool fifo = r->producers == 1 && r->consumers == 1 && r->workers == 1 && !r->filters;
    stress_rng_init(&rng, pw->seed, 2000 + pw->id);
    pthread_barrier_wait(&r->start);
    for (;;) {
        pl_elem e = {STRESS_NONE, 0};
        ap_status st = pw->use_future ? ap_pipeline_pop_wait(&r->p, &e, AP_DEADLINE_NONE)
                                      : ap_pipeline_try_pop(&r->p, &e);
        if (st == AP_CLOSED)
            break;
        if (st == AP_EMPTY || st == AP_AGAIN) {
            CHECK(!pw->use_future, "consumer %u: pop_wait %s", pw->idx, ap_status_str(st));
            stress_backoff(&fails, &rng);
            continue;
        }
        CHECK(st == AP_OK, "consumer %u: pop %s", pw->idx, ap_status_str(st));
        fails = 0;
        size_t p = (size_t)STRESS_ITEM_PRODUCER(e.item), s = (size_t)STRESS_ITEM_SEQ(e.item);
        CHECK(p < r->producers && s < r->per_producer, "consumer %u: invented item %#" PRIx64,
              pw->idx, e.item);
        CHECK(e.trail == pl_trail(e.item, r->k), "item %#" PRIx64 ": trail %#" PRIx64
              ", want %#" PRIx64 " (a stage skipped, repeated or reordered)",
              e.item, e.trail, pl_trail(e.item, r->k));
        if (fifo) {
            CHECK(e.item == STRESS_ITEM(0, next), "FIFO: got item %#" PRIx64 ", want %#" PRIx64,
                  e.item, STRESS_ITEM(0, next));
            next++;
        }
        uint8_t was = atomic_fetch_add_explicit(&r->seen[pl_index(r, e.item)], 1u,
                                                memory_order_relaxed);
        CHECK(was == 0, "item %#" PRIx64 " received twice", e.item);
        STRESS_ADD(&r->received, 1u);
        stress_jitter(&rng);
    }
    return NULL;
}

static void pl_diag(void *arg)
{
    pl_run *r = (pl_run *)arg;
    fprintf(stderr, "    k=%u cap=%zu workers=%u: entered %" PRIu64 " left %" PRIu64
            " received %" PRIu64 "; input len %zu closed %d\n",
            r->k, r->capacity, r->workers, ap_pipeline_entered(&r->p), ap_pipeline_left(&r->p),
            STRESS_LOAD(&r->received), ap_mpmc_len(&r->p.in), (int)ap_mpmc_is_closed(&r->p.in));
    for (unsigned i = 0; i < r->k; i++) {
        ap_pipeline_stats s;
        if (ap_pipeline_stats_get(&r->p, i, &s) != AP_OK)
            continue;
        fprintf(stderr, "    stage %u: taken %" PRIu64 " emitted %" PRIu64 " filtered %" PRIu64
                " failed %" PRIu64 " queued %zu finished %u/%u closed %d\n",
                i, s.taken, s.emitted, s.filtered, s.failed, s.queued, s.finished, s.workers,
                (int)ap_mpmc_is_closed(&r->st[i].out));
    }
}

static void run_pipeline(unsigned k, unsigned producers, unsigned workers, unsigned consumers,
                         size_t capacity, bool filters, bool close_race, size_t total)
{
    if (!stress_begin("pipeline %s k=%u %ux%ux%u cap=%zu%s",
                      close_race ? "close-race" : workers > 1 || producers > 1 ? "multi" : "fifo",
                      k, producers, workers, consumers, capacity, filters ? " filters" : ""))
        return;
    pl_run *r = (pl_run *)aligned_alloc(64, ap__align_up(sizeof *r, 64));
    CHECK(r != NULL, "out of memory");
    memset((void *)r, 0, sizeof *r);
    r->k = k;
    r->producers = producers;
    r->consumers = consumers;
    r->workers = workers;
    r->capacity = capacity;
    r->filters = filters;
    r->close_race = close_race;
    r->per_producer = (total + producers - 1) / producers;
    size_t nitems = r->per_producer * producers;
    r->seen = (_Atomic uint8_t *)calloc(nitems, 1);
    r->pushed = (_Atomic uint8_t *)calloc(nitems, 1);
    CHECK(r->seen && r->pushed, "out of memory");
    size_t bytes = ap__align_up(AP_MPMC_BYTES(capacity, sizeof(pl_elem)), 64);
    for (unsigned i = 0; i <= k; i++) {
        r->bufs[i] = aligned_alloc(64, bytes);
        CHECK(r->bufs[i] != NULL, "out of memory");
    }
    for (unsigned i = 0; i < k; i++) {
        r->ctx[i] = i;
        r->sd[i] = (ap_pipeline_stage_desc){pl_fn, &r->ctx[i], sizeof(pl_elem), capacity,
                                            r->bufs[i + 1], bytes, workers};
    }
    ap_pipeline_desc d = {sizeof(pl_elem), capacity, r->bufs[0], bytes, r->sd, k};
    ap_status st = ap_pipeline_init(&r->p, r->st, sizeof r->st, &d);
    CHECK(st == AP_OK, "ap_pipeline_init: %s", ap_status_str(st));
    pl_cur = r;

    unsigned nw = k * workers, n = producers + nw + consumers;
    r->w = (pl_worker *)calloc(n, sizeof *r->w);
    CHECK(r->w != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, n + 1);
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(777), 0);
    for (unsigned i = 0; i < n; i++) {
        pl_worker *pw = &r->w[i];
        pw->r = r;
        pw->id = i;
        pw->seed = stress_thread_seed(i);
        pw->use_future = stress_below(&rng, 2) != 0;
        if (i < producers) {
            pw->idx = i;
        } else if (i < producers + nw) {
            pw->stage = (i - producers) / workers;
            pw->idx = (i - producers) % workers;
            if (workers == 1 && k > 1) /* both kinds of driver in one line */
                pw->use_future = (pw->stage % 2) == (unsigned)stress_below(&rng, 2);
            st = ap_pipeline_worker_init(&pw->w, &pw->in, sizeof pw->in, &pw->out, sizeof pw->out,
                                         &r->p, pw->stage);
            CHECK(st == AP_OK, "worker_init: %s", ap_status_str(st));
        } else {
            pw->idx = i - producers - nw;
        }
    }
    stress_diag(pl_diag, r);
    for (unsigned i = 0; i < n; i++)
        stress_spawn(&r->w[i].thread,
                     i < producers ? pl_producer_main
                     : i < producers + nw ? pl_worker_main : pl_consumer_main,
                     &r->w[i]);
    pthread_barrier_wait(&r->start);
    if (close_race) {
        size_t when = stress_below(&rng, (uint32_t)(nitems / 2));
        while (ap_pipeline_entered(&r->p) < when)
            stress_sleep_us(50);
    } else {
        for (unsigned i = 0; i < producers; i++)
            stress_join(r->w[i].thread);
    }
    ap_pipeline_close(&r->p);
    for (unsigned i = close_race ? 0 : producers; i < n; i++)
        stress_join(r->w[i].thread);
    stress_diag(NULL, NULL);

    /* account for every item */
    uint64_t want_filtered = 0, want_failed = 0, pushed = 0, received = 0;
    for (size_t idx = 0; idx < nitems; idx++) {
        uint64_t item = STRESS_ITEM(idx / r->per_producer, idx % r->per_producer);
        bool in = STRESS_LOAD(&r->pushed[idx]) != 0;
        CHECK(in || close_race, "item %#" PRIx64 " never pushed", item);
        bool dropped = false;
        for (unsigned s = 0; s < k && in && !dropped; s++) {
            if (pl_filtered_at(r, s, item))
                want_filtered++, dropped = true;
            else if (pl_failed_at(r, s, item))
                want_failed++, dropped = true;
        }
        unsigned seen = STRESS_LOAD(&r->seen[idx]);
        CHECK(seen == (in && !dropped ? 1u : 0u),
              "item %#" PRIx64 ": received %u times, pushed %d, dropped by a stage %d", item,
              seen, (int)in, (int)dropped);
        pushed += in;
        received += seen;
    }
    uint64_t filtered = 0, failed = 0;
    for (unsigned i = 0; i < k; i++) {
        ap_pipeline_stats s;
        CHECK(ap_pipeline_stats_get(&r->p, i, &s) == AP_OK, "stats");
        CHECK(s.taken == s.emitted + s.filtered + s.failed,
              "stage %u: taken %" PRIu64 " != emitted %" PRIu64 " + filtered %" PRIu64
              " + failed %" PRIu64, i, s.taken, s.emitted, s.filtered, s.failed);
        CHECK(s.finished == workers && s.queued == 0, "stage %u: finished %u/%u, queued %zu", i,
              s.finished, workers, s.queued);
        CHECK(s.failed == 0 ? s.last_error == AP_OK && s.last_app_error == 0
                            : (s.last_app_error & 0x10000) &&
                                  (s.last_error == AP_REJECTED) == (s.last_app_error & 1),
              "stage %u: last failure %s / %#x", i, ap_status_str(s.last_error),
              (unsigned)s.last_app_error);
        filtered += s.filtered;
        failed += s.failed;
    }
    CHECK(filtered == want_filtered && failed == want_failed,
          "filtered %" PRIu64 " (want %" PRIu64 "), failed %" PRIu64 " (want %" PRIu64 ")",
          filtered, want_filtered, failed, want_failed);
    CHECK(ap_pipeline_entered(&r->p) == pushed, "entered %" PRIu64 ", pushed %" PRIu64,
          ap_pipeline_entered(&r->p), pushed);
    CHECK(ap_pipeline_left(&r->p) == received && received + filtered + failed == pushed,
          "left %" PRIu64 " received %" PRIu64 " filtered %" PRIu64 " failed %" PRIu64
          " pushed %" PRIu64, ap_pipeline_left(&r->p), received, filtered, failed, pushed);
    pl_elem e;
    CHECK(ap_pipeline_try_pop(&r->p, &e) == AP_CLOSED, "try_pop after drain");
    CHECK(ap_pipeline_try_push(&r->p, &e) == AP_CLOSED, "try_push after close");
    pthread_barrier_destroy(&r->start);
    stress_end("pushed=%" PRIu64 " out=%" PRIu64 " filtered=%" PRIu64 " failed=%" PRIu64, pushed,
               received, filtered, failed);
    ap_pipeline_fini(&r->p);
    for (unsigned i = 0; i <= k; i++)
        free(r->bufs[i]);
    free(r->w);
    free((void *)r->seen);
    free((void *)r->pushed);
    free(r);
}

int main(int argc, char **argv)
{
    static const unsigned ks[] = {1, 3, 5};
    static const size_t caps[] = {1, 2, 64};
    stress_init(argc, argv, "stress_pipeline");
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            run_pipeline(ks[i], 1, 1, 1, caps[c], false, false,
                         stress_iters(caps[c] <= 2 ? 5000 : 8000, 50));
    run_pipeline(3, 2, 2, 2, 1, true, false, stress_iters(6000, 50));
    run_pipeline(3, 2, 3, 2, 64, true, false, stress_iters(10000, 50));
    run_pipeline(5, 1, 2, 1, 2, false, false, stress_iters(4000, 50));
    run_pipeline(3, 2, 2, 2, 2, true, true, stress_iters(10000, 100));
    run_pipeline(1, 2, 1, 1, 1, false, true, stress_iters(10000, 100));
    return stress_finish();
}
