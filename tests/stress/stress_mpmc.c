/*
 * tests/stress/stress_mpmc.c -- ThreadSanitizer stress of the bounded MPMC
 * queue's non-blocking operations (ap_mpmc_try_push / ap_mpmc_try_pop)
 *
 * Scenarios
 *   matrix      producers x consumers in {1x1, 2x2, 4x4, 8x1, 1x8} (more
 *               threads than this machine's cores), capacity in {1, 2, 3,
 *               64, 4096}, positions starting at 0 and a few laps below
 *               SIZE_MAX (ap__mpmc_init_at) so the counters wrap mid-run
 *               (checked). Producers push their whole range, then the main
 *               thread closes; consumers pop until AP_CLOSED.
 *   close-race  producers push until AP_CLOSED while the main thread closes
 *               at a random moment; what was pushed with AP_OK must come
 *               out, nothing else.
 *   typed       some of the above through AP_MPMC_DEFINE's wrappers (a
 *               constant element size, so other copy code).
 * Checked per item: received exactly as often as pushed with AP_OK (0 or 1),
 * never invented, element bytes intact; per consumer, each producer's
 * sequence numbers strictly increase; after close and drain, try_pop and
 * try_push answer AP_CLOSED and len() is 0. TSan checks that every element
 * copy is ordered by the queue's own release/acquire pairs.
 */
#include "stress.h"

/* the typed wrapper: the same algorithm with a constant element size */
AP_MPMC_DEFINE(stress_mq, stress_elem)

typedef struct mpmc_run {
    ap_mpmc q;
    unsigned producers, consumers;
    size_t capacity, per_producer;
    bool close_race;
    bool typed; /* use the AP_MPMC_DEFINE wrapper */
    stress_ledger ledger;
    pthread_barrier_t start;
    _Atomic uint64_t push_full, push_again, pop_empty, pop_again;
} mpmc_run;

typedef struct mpmc_worker {
    mpmc_run *r;
    unsigned id;
    uint64_t seed;
    pthread_t thread;
} mpmc_worker;

static void *producer_main(void *arg)
{
    mpmc_worker *w = (mpmc_worker *)arg;
    mpmc_run *r = w->r;
    stress_rng rng;
    uint64_t full = 0, again = 0;
    unsigned fails = 0;
    stress_rng_init(&rng, w->seed, w->id);
    pthread_barrier_wait(&r->start);
    for (size_t seq = 0; seq < r->per_producer; seq++) {
        stress_elem e = stress_make(w->id, seq);
        for (;;) {
            ap_status st = r->typed ? stress_mq_try_push((stress_mq *)(void *)&r->q, &e)
                                    : ap_mpmc_try_push(&r->q, &e);
            if (st == AP_OK) {
                stress_ledger_pushed(&r->ledger, e.item);
                break;
            }
            if (st == AP_CLOSED) {
                CHECK(r->close_race, "producer %u: try_push returned AP_CLOSED before close",
                      w->id);
                goto out;
            }
            CHECK(st == AP_FULL || st == AP_AGAIN,
                  "producer %u: try_push returned %s", w->id, ap_status_str(st));
            if (st == AP_FULL)
                full++;
            else
                again++;
            stress_backoff(&fails, &rng);
        }
        fails = 0;
        stress_jitter(&rng);
    }
out:
    STRESS_ADD(&r->push_full, full);
    STRESS_ADD(&r->push_again, again);
    return NULL;
}

static void *consumer_main(void *arg)
{
    mpmc_worker *w = (mpmc_worker *)arg;
    mpmc_run *r = w->r;
    stress_rng rng;
    stress_fifo fifo;
    uint64_t empty = 0, again = 0;
    unsigned fails = 0;
    stress_rng_init(&rng, w->seed, 1000 + w->id);
    stress_fifo_init(&fifo, r->producers);
    pthread_barrier_wait(&r->start);
    for (;;) {
        stress_elem e = {STRESS_NONE, 0};
        ap_status st = r->typed ? stress_mq_try_pop((stress_mq *)(void *)&r->q, &e)
                                : ap_mpmc_try_pop(&r->q, &e);
        if (st == AP_OK) {
            stress_ledger_take(&r->ledger, &fifo, &e, w->id);
            fails = 0;
            stress_jitter(&rng);
            continue;
        }
        CHECK(e.item == STRESS_NONE, "consumer %u: try_pop returned %s but wrote the output",
              w->id, ap_status_str(st));
        if (st == AP_CLOSED)
            break;
        CHECK(st == AP_EMPTY || st == AP_AGAIN, "consumer %u: try_pop returned %s", w->id,
              ap_status_str(st));
        if (st == AP_EMPTY)
            empty++;
        else
            again++;
        stress_backoff(&fails, &rng);
    }
    stress_fifo_free(&fifo);
    STRESS_ADD(&r->pop_empty, empty);
    STRESS_ADD(&r->pop_again, again);
    return NULL;
}

static void mpmc_diag(void *arg)
{
    mpmc_run *r = (mpmc_run *)arg;
    fprintf(stderr,
            "    %ux%u capacity %zu: received %zu of up to %zu items; len %zu, closed %d\n"
            "    tail %#zx head %#zx\n",
            r->producers, r->consumers, r->capacity, STRESS_LOAD(&r->ledger.received),
            (size_t)r->producers * r->per_producer, ap_mpmc_len(&r->q),
            (int)ap_mpmc_is_closed(&r->q), (size_t)atomic_load(&r->q.tail),
            (size_t)atomic_load(&r->q.head));
    (void)stress_ledger_report(&r->ledger, !r->close_race, 10);
}

/*
 * One scenario. @wrap: start the positions about half the run below the
 * top of size_t, so they wrap around zero mid-run.
 */
static void run_mpmc(unsigned producers, unsigned consumers, size_t capacity, bool wrap,
                     bool close_race, bool typed, size_t total)
{
    mpmc_run *r = (mpmc_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("mpmc %s %ux%u cap=%zu%s%s",
                      close_race ? "close-race" : "matrix", producers, consumers, capacity,
                      wrap ? " wrap" : "", typed ? " typed" : "")) {
        free(r);
        return;
    }
    r->producers = producers;
    r->consumers = consumers;
    r->capacity = capacity;
    r->close_race = close_race;
    r->typed = typed;
    r->per_producer = (total + producers - 1) / producers;
    stress_ledger_init(&r->ledger, producers, r->per_producer);

    size_t one_lap = stress_mpmc_one_lap(capacity);
    size_t laps = (r->per_producer * producers) / capacity;
    size_t start = 0;
    if (wrap)
        start = (size_t)0 - (laps / 2 + 1) * one_lap;
    void *buf = aligned_alloc(64, ap__align_up(AP_MPMC_BYTES(capacity, sizeof(stress_elem)), 64));
    CHECK(buf != NULL, "out of memory");
    ap_status st = ap__mpmc_init_at(&r->q, buf, AP_MPMC_BYTES(capacity, sizeof(stress_elem)), capacity, sizeof(stress_elem), start);
    CHECK(st == AP_OK, "ap__mpmc_init_at: %s", ap_status_str(st));
    CHECK(atomic_load(&r->q.head) == start, "start position %#zx not a lap boundary", start);

    unsigned n = producers + consumers;
    mpmc_worker *w = (mpmc_worker *)calloc(n, sizeof *w);
    CHECK(w != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, n + 1);
    stress_diag(mpmc_diag, r);
    for (unsigned i = 0; i < n; i++) {
        w[i].r = r;
        w[i].id = i < producers ? i : i - producers;
        w[i].seed = stress_thread_seed(i);
        stress_spawn(&w[i].thread, i < producers ? producer_main : consumer_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    if (close_race) {
        stress_rng rng;
        stress_rng_init(&rng, stress_thread_seed(999), 0);
        /* close somewhere in the first half of the run */
        size_t when = stress_below(&rng, (uint32_t)(total / 2));
        while (STRESS_LOAD(&r->ledger.received) < when)
            stress_sleep_us(50);
        ap_mpmc_close(&r->q);
    }
    for (unsigned i = 0; i < producers; i++)
        stress_join(w[i].thread);
    ap_mpmc_close(&r->q);
    for (unsigned i = producers; i < n; i++)
        stress_join(w[i].thread);

    /* closed and drained */
    stress_elem e = {STRESS_NONE, 0}, x = stress_make(0, 0);
    st = ap_mpmc_try_pop(&r->q, &e);
    CHECK(st == AP_CLOSED && e.item == STRESS_NONE, "try_pop after drain: %s",
          ap_status_str(st));
    st = ap_mpmc_try_push(&r->q, &x);
    CHECK(st == AP_CLOSED, "try_push after close: %s", ap_status_str(st));
    CHECK(ap_mpmc_len(&r->q) == 0, "len after drain: %zu", ap_mpmc_len(&r->q));
    stress_ledger_verify(&r->ledger, !close_race);
    size_t received = STRESS_LOAD(&r->ledger.received);
    if (wrap && !close_race) {
        size_t head = atomic_load(&r->q.head);
        CHECK(head < start, "positions did not wrap: start %#zx, head %#zx", start, head);
    }
    pthread_barrier_destroy(&r->start);
    stress_end("items=%zu full=%" PRIu64 " push-again=%" PRIu64 " empty=%" PRIu64
               " pop-again=%" PRIu64,
               received, STRESS_LOAD(&r->push_full), STRESS_LOAD(&r->push_again),
               STRESS_LOAD(&r->pop_empty), STRESS_LOAD(&r->pop_again));
    ap_mpmc_fini(&r->q);
    free(buf);
    free(w);
    stress_ledger_free(&r->ledger);
    free(r);
}

int main(int argc, char **argv)
{
    static const unsigned shapes[][2] = {{1, 1}, {2, 2}, {4, 4}, {8, 1}, {1, 8}};
    static const size_t caps[] = {1, 2, 3, 64, 4096};
    stress_init(argc, argv, "stress_mpmc");
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int wrap = 0; wrap < 2; wrap++) {
                /* Tiny capacities with many threads cost a context switch
                 * per item or so: fewer items there, and at least three
                 * laps of the biggest queue. */
                unsigned threads = shapes[s][0] + shapes[s][1];
                size_t total = stress_iters(caps[c] <= 3 && threads > 4 ? 6000 : 12000, 50);
                if (total < 6 * caps[c])
                    total = 6 * caps[c];
                run_mpmc(shapes[s][0], shapes[s][1], caps[c], wrap, false, false, total);
            }
    for (size_t c = 0; c < 2; c++)
        for (unsigned k = 2; k <= 4; k += 2)
            run_mpmc(k, k, c ? 64 : 1, true, true, false, stress_iters(c ? 20000 : 5000, 100));
    /* the typed wrappers (constant element size) */
    run_mpmc(2, 2, 3, true, false, true, stress_iters(20000, 50));
    run_mpmc(4, 4, 64, true, false, true, stress_iters(20000, 50));
    run_mpmc(2, 2, 1, true, true, true, stress_iters(5000, 50));
    return stress_finish();
}
