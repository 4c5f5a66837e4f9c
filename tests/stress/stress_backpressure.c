/*
 * tests/stress/stress_backpressure.c -- ThreadSanitizer stress of
 * asyncpat/backpressure.h (standalone: see stress.h)
 *
 * Scenarios
 *   block cap={1,4,64}: 6 producers (try push, then push_wait when FULL;
 *     now and then a low_wait while HIGH) and 2 consumers (pop_wait until
 *     AP_CLOSED). Every item is received exactly once, per-producer FIFO per
 *     consumer; the counters' identities hold at the end.
 *   drop_oldest cap={1,4,16}: 4 producers push everything, 2 consumers pop
 *     concurrently. Every item is either popped or handed back as evicted,
 *     exactly once (one ledger for both), FIFO per receiver.
 *   drop_newest cap=4: items refused stay with their producer; every item
 *     accepted is popped exactly once.
 */
#include "stress.h"

typedef struct bp_run {
    ap_bp *bp;
    stress_ledger ledger;
    unsigned producers;
    size_t per_producer;
    _Atomic uint64_t evicted_seen; /* relaxed */
} bp_run;

typedef struct bp_worker {
    bp_run *r;
    unsigned id;
    stress_rng rng;
    stress_fifo fifo; /* for items this thread receives */
} bp_worker;

static void bp_diag(void *arg)
{
    bp_run *r = arg;
    ap_bp_stats s;
    ap_bp_stats_get(r->bp, &s);
    fprintf(stderr,
            "    len %zu level %d closed %d received %zu\n"
            "    offered %" PRIu64 " accepted %" PRIu64 " popped %" PRIu64
            " dropped_oldest %" PRIu64 " dropped_newest %" PRIu64 " full %" PRIu64
            " waits %" PRIu64 "\n",
            ap_bp_len(r->bp), (int)ap_bp_level(r->bp), (int)ap_bp_is_closed(r->bp),
            (size_t)STRESS_LOAD(&r->ledger.received), s.offered, s.accepted, s.popped,
            s.dropped_oldest, s.dropped_newest, s.full, s.waits);
    (void)stress_ledger_report(&r->ledger, false, 10);
}

static void *bp_consumer(void *arg)
{
    bp_worker *w = arg;
    stress_elem e;
    for (;;) {
        ap_status st;
        if (stress_below(&w->rng, 4) == 0) {
            st = ap_bp_try_pop(w->r->bp, &e);
            if (st == AP_EMPTY || st == AP_AGAIN) {
                st = ap_bp_pop_wait(w->r->bp, &e, AP_DEADLINE_NONE);
            }
        } else {
            st = ap_bp_pop_wait(w->r->bp, &e, AP_DEADLINE_NONE);
        }
        if (st == AP_CLOSED)
            break;
        CHECK(st == AP_OK, "consumer %u: pop returned %s", w->id, ap_status_str(st));
        stress_ledger_take(&w->r->ledger, &w->fifo, &e, w->id);
        stress_jitter(&w->rng);
    }
    return NULL;
}

static void *bp_block_producer(void *arg)
{
    bp_worker *w = arg;
    bp_run *r = w->r;
    for (size_t i = 0; i < r->per_producer; i++) {
        stress_elem e = stress_make(w->id, i);
        ap_status st = ap_bp_push(r->bp, &e, 0, NULL, NULL);
        if (st == AP_FULL) {
            if (stress_below(&w->rng, 16) == 0 && ap_bp_level(r->bp) == AP_BP_LEVEL_STATE_HIGH) {
                ap_status l = ap_bp_low_wait(r->bp, AP_DEADLINE_NONE);
                CHECK(l == AP_OK, "low_wait returned %s", ap_status_str(l));
            }
            st = ap_bp_push_wait(r->bp, &e, AP_DEADLINE_NONE);
        }
        CHECK(st == AP_OK, "producer %u: push returned %s", w->id, ap_status_str(st));
        stress_ledger_pushed(&r->ledger, e.item);
        stress_jitter(&w->rng);
    }
    return NULL;
}

static void *bp_drop_producer(void *arg)
{
    bp_worker *w = arg;
    bp_run *r = w->r;
    bool oldest = r->bp->strategy == AP_BP_STRATEGY_DROP_OLDEST;
    for (size_t i = 0; i < r->per_producer; i++) {
        stress_elem e = stress_make(w->id, i), ev;
        ap_status st = ap_bp_push(r->bp, &e, 0, &ev, NULL);
        CHECK(st == AP_OK || st == AP_DROPPED, "producer %u: push returned %s", w->id,
              ap_status_str(st));
        if (st == AP_OK || oldest)
            stress_ledger_pushed(&r->ledger, e.item);
        if (st == AP_DROPPED && oldest) {
            /* the evicted element comes back to this thread: it is
             * received here, exactly once, like a pop */
            stress_ledger_take(&r->ledger, &w->fifo, &ev, 100 + w->id);
            STRESS_ADD(&r->evicted_seen, 1);
        }
        stress_jitter(&w->rng);
    }
    return NULL;
}

static void run_bp(ap_bp_strategy strategy, size_t cap, unsigned producers, unsigned consumers,
                   size_t per_producer)
{
    static const char *names[] = {"block", "drop_newest", "drop_oldest", "throttle"};
    if (!stress_begin("%s cap=%zu producers=%u consumers=%u items=%zu", names[strategy], cap,
                      producers, consumers, per_producer))
        return;
    bp_run r;
    memset(&r, 0, sizeof r);
    ap_status st = ap_bp_create(&r.bp,
                                &(ap_bp_desc){.capacity = cap,
                                              .elem_size = sizeof(stress_elem),
                                              .strategy = strategy},
                                NULL);
    CHECK(st == AP_OK, "create: %s", ap_status_str(st));
    r.producers = producers;
    r.per_producer = per_producer;
    atomic_init(&r.evicted_seen, 0);
    stress_ledger_init(&r.ledger, producers, per_producer);
    stress_diag(bp_diag, &r);

    unsigned n = producers + consumers;
    bp_worker *w = calloc(n, sizeof *w);
    pthread_t *t = calloc(n, sizeof *t);
    CHECK(w && t, "out of memory");
    for (unsigned i = 0; i < n; i++) {
        w[i].r = &r;
        w[i].id = i < producers ? i : i - producers;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_fifo_init(&w[i].fifo, producers);
    }
    for (unsigned i = 0; i < consumers; i++)
        stress_spawn(&t[producers + i], bp_consumer, &w[producers + i]);
    for (unsigned i = 0; i < producers; i++)
        stress_spawn(&t[i], strategy == AP_BP_STRATEGY_BLOCK ? bp_block_producer : bp_drop_producer,
                     &w[i]);
    for (unsigned i = 0; i < producers; i++)
        stress_join(t[i]);
    ap_bp_close(r.bp);
    for (unsigned i = 0; i < consumers; i++)
        stress_join(t[producers + i]);
    stress_diag(NULL, NULL);

    stress_ledger_verify(&r.ledger, strategy != AP_BP_STRATEGY_DROP_NEWEST);
    ap_bp_stats s;
    ap_bp_stats_get(r.bp, &s);
    size_t total = (size_t)producers * per_producer;
    CHECK(ap_bp_len(r.bp) == 0, "len %zu after drain", ap_bp_len(r.bp));
    CHECK(s.offered == s.accepted + s.dropped_newest + s.throttled + s.full + s.closed +
                           s.canceled,
          "offered identity");
    CHECK(s.accepted == s.popped + s.dropped_oldest, "accepted %" PRIu64 " popped %" PRIu64
          " dropped_oldest %" PRIu64, s.accepted, s.popped, s.dropped_oldest);
    CHECK(s.dropped_oldest == STRESS_LOAD(&r.evicted_seen), "evictions counted %" PRIu64
          " seen %" PRIu64, s.dropped_oldest, (uint64_t)STRESS_LOAD(&r.evicted_seen));
    if (strategy != AP_BP_STRATEGY_DROP_NEWEST)
        CHECK(s.accepted == total, "accepted %" PRIu64 " of %zu", s.accepted, total);
    else
        CHECK(s.accepted + s.dropped_newest == total, "drop_newest: outcomes");
    CHECK(s.closed == 0 && s.canceled == 0, "no close/cancel outcome expected");
    for (unsigned i = 0; i < n; i++)
        stress_fifo_free(&w[i].fifo);
    free(w);
    free(t);
    stress_ledger_free(&r.ledger);
    ap_bp_destroy(r.bp);
    stress_end("waits %" PRIu64 " full %" PRIu64 " evicted %" PRIu64 " dropped %" PRIu64,
               s.waits, s.full, s.dropped_oldest, s.dropped_newest);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_backpressure");
    static const size_t block_caps[] = {1, 4, 64};
    for (size_t i = 0; i < 3; i++)
        run_bp(AP_BP_STRATEGY_BLOCK, block_caps[i], 6, 2, stress_iters(10000, 50));
    static const size_t drop_caps[] = {1, 4, 16};
    for (size_t i = 0; i < 3; i++)
        run_bp(AP_BP_STRATEGY_DROP_OLDEST, drop_caps[i], 4, 2, stress_iters(12000, 50));
    run_bp(AP_BP_STRATEGY_DROP_NEWEST, 4, 4, 2, stress_iters(4000, 50));
    return stress_finish();
}
