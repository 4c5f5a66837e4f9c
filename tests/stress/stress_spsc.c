/*
 * tests/stress/stress_spsc.c -- ThreadSanitizer stress of the SPSC ring's
 * non-blocking operations, single and batched
 *
 * Scenarios (one producer thread, one consumer thread)
 *   fifo        capacity in {1, 2, 3, 64, 4096} x positions starting at 0 or
 *               just below the top of the position space (ap__spsc_init_at;
 *               the positions wrap mid-run, checked) x {try_push, try_push_n}
 *               x {try_pop, try_pop_n} with random batch sizes, also larger
 *               than the capacity. The producer pushes its whole range, then
 *               closes; the consumer pops until AP_CLOSED.
 *   close-race  the main thread closes at a random moment while the
 *               producer pushes; exactly the prefix pushed with AP_OK comes
 *               out, in order.
 *   typed       some of the above through AP_SPSC_DEFINE's wrappers (a
 *               constant element size, the single-element copy path).
 * Checked: global FIFO (the consumer sees seq 0, 1, 2, ... with no gap and
 * no repeat), element integrity, per-item ledger, batch counts (1 <= done <=
 * n on AP_OK, 0 otherwise, output beyond done untouched), AP_CLOSED after
 * drain on both sides. TSan checks the slot copies against the ring's
 * release/acquire pairs.
 */
#include "stress.h"

#define MAX_BATCH 256

/* the typed wrapper: the same algorithm with a constant element size */
AP_SPSC_DEFINE(stress_sq, stress_elem)

typedef struct spsc_run {
    ap_spsc q;
    size_t capacity, total;
    bool batch_push, batch_pop, close_race;
    bool typed; /* use the AP_SPSC_DEFINE wrapper */
    stress_ledger ledger;
    pthread_barrier_t start;
    uint64_t seed;
    _Atomic uint64_t push_full, pop_empty, partial_push, partial_pop;
    _Atomic size_t next_expected;
} spsc_run;

static size_t batch_size(stress_rng *rng, size_t capacity)
{
    size_t hi = 2 * capacity + 2;
    if (hi > MAX_BATCH)
        hi = MAX_BATCH;
    /* mostly small, sometimes up to the maximum */
    if (stress_below(rng, 4) != 0 && hi > 8)
        hi = 8;
    return 1 + stress_below(rng, (uint32_t)hi);
}

static void *producer_main(void *arg)
{
    spsc_run *r = (spsc_run *)arg;
    stress_rng rng;
    stress_elem batch[MAX_BATCH];
    uint64_t full = 0, partial = 0;
    unsigned fails = 0;
    stress_rng_init(&rng, r->seed, 1);
    pthread_barrier_wait(&r->start);
    size_t seq = 0;
    while (seq < r->total) {
        size_t n = r->batch_push ? batch_size(&rng, r->capacity) : 1;
        if (n > r->total - seq)
            n = r->total - seq;
        for (size_t i = 0; i < n; i++)
            batch[i] = stress_make(0, seq + i);
        size_t done = 12345;
        ap_status st;
        if (r->batch_push) {
            st = r->typed ? stress_sq_try_push_n((stress_sq *)(void *)&r->q, batch, n, &done)
                          : ap_spsc_try_push_n(&r->q, batch, n, &done);
            CHECK(st == AP_OK ? (done >= 1 && done <= n) : done == 0,
                  "try_push_n(%zu) returned %s with done=%zu", n, ap_status_str(st), done);
        } else {
            st = r->typed ? stress_sq_try_push((stress_sq *)(void *)&r->q, &batch[0])
                          : ap_spsc_try_push(&r->q, &batch[0]);
            done = st == AP_OK;
        }
        if (st == AP_OK) {
            for (size_t i = 0; i < done; i++)
                stress_ledger_pushed(&r->ledger, batch[i].item);
            partial += done < n;
            seq += done;
            fails = 0;
            stress_jitter(&rng);
            continue;
        }
        if (st == AP_CLOSED) {
            CHECK(r->close_race, "push returned AP_CLOSED before close");
            break;
        }
        CHECK(st == AP_FULL, "push returned %s", ap_status_str(st));
        full++;
        stress_backoff(&fails, &rng);
    }
    if (!r->close_race)
        ap_spsc_close(&r->q); /* the producer side closes: no push can race it */
    STRESS_ADD(&r->push_full, full);
    STRESS_ADD(&r->partial_push, partial);
    return NULL;
}

static void *consumer_main(void *arg)
{
    spsc_run *r = (spsc_run *)arg;
    stress_rng rng;
    stress_elem out[MAX_BATCH + 1];
    uint64_t empty = 0, partial = 0;
    unsigned fails = 0;
    size_t expect = 0;
    stress_rng_init(&rng, r->seed, 2);
    pthread_barrier_wait(&r->start);
    for (;;) {
        size_t n = r->batch_pop ? batch_size(&rng, r->capacity) : 1;
        for (size_t i = 0; i <= n; i++)
            out[i].item = STRESS_NONE;
        size_t done = 12345;
        ap_status st;
        if (r->batch_pop) {
            st = r->typed ? stress_sq_try_pop_n((stress_sq *)(void *)&r->q, out, n, &done)
                          : ap_spsc_try_pop_n(&r->q, out, n, &done);
            CHECK(st == AP_OK ? (done >= 1 && done <= n) : done == 0,
                  "try_pop_n(%zu) returned %s with done=%zu", n, ap_status_str(st), done);
        } else {
            st = r->typed ? stress_sq_try_pop((stress_sq *)(void *)&r->q, out)
                          : ap_spsc_try_pop(&r->q, out);
            done = st == AP_OK;
        }
        for (size_t i = done; i <= n; i++)
            CHECK(out[i].item == STRESS_NONE,
                  "pop of %zu returned %s, done=%zu, but wrote output slot %zu", n,
                  ap_status_str(st), done, i);
        if (st == AP_OK) {
            for (size_t i = 0; i < done; i++) {
                CHECK(out[i].item == STRESS_ITEM(0, expect),
                      "FIFO broken: expected seq %zu, got item %#" PRIx64
                      " (element %zu of a batch of %zu)",
                      expect, out[i].item, i, done);
                stress_ledger_take(&r->ledger, NULL, &out[i], 0);
                expect++;
            }
            STRESS_STORE(&r->next_expected, expect);
            partial += done < n;
            fails = 0;
            stress_jitter(&rng);
            continue;
        }
        if (st == AP_CLOSED)
            break;
        CHECK(st == AP_EMPTY, "pop returned %s", ap_status_str(st));
        empty++;
        stress_backoff(&fails, &rng);
    }
    STRESS_ADD(&r->pop_empty, empty);
    STRESS_ADD(&r->partial_pop, partial);
    return NULL;
}

static void spsc_diag(void *arg)
{
    spsc_run *r = (spsc_run *)arg;
    fprintf(stderr,
            "    capacity %zu: consumer expects seq %zu of %zu; len %zu, closed %d\n"
            "    tail %#zx head %#zx\n",
            r->capacity, STRESS_LOAD(&r->next_expected), r->total, ap_spsc_len(&r->q),
            (int)ap_spsc_is_closed(&r->q), (size_t)atomic_load(&r->q.tail),
            (size_t)atomic_load(&r->q.head));
}

static void run_spsc(size_t capacity, bool wrap, bool batch_push, bool batch_pop,
                     bool close_race, bool typed, size_t total)
{
    spsc_run *r = (spsc_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("spsc %s cap=%zu push%s pop%s%s%s",
                      close_race ? "close-race" : "fifo", capacity, batch_push ? "_n" : "",
                      batch_pop ? "_n" : "", wrap ? " wrap" : "", typed ? " typed" : "")) {
        free(r);
        return;
    }
    r->capacity = capacity;
    r->total = total;
    r->batch_push = batch_push;
    r->batch_pop = batch_pop;
    r->close_race = close_race;
    r->typed = typed;
    r->seed = stress_thread_seed(0);
    stress_ledger_init(&r->ledger, 1, total);
    /* Positions live modulo 2^63 (the top bit of tail is CLOSED): start
     * half the run below the top so they wrap mid-run. */
    size_t start = wrap ? SIZE_MAX - total / 2 : 0;
    void *buf = malloc(AP_SPSC_BYTES(capacity, sizeof(stress_elem)));
    CHECK(buf != NULL, "out of memory");
    ap_status st = ap__spsc_init_at(&r->q, buf, AP_SPSC_BYTES(capacity, sizeof(stress_elem)), capacity, sizeof(stress_elem), start);
    CHECK(st == AP_OK, "ap__spsc_init_at: %s", ap_status_str(st));
    CHECK(ap_spsc_capacity(&r->q) == capacity, "capacity %zu", ap_spsc_capacity(&r->q));

    pthread_t prod, cons;
    pthread_barrier_init(&r->start, NULL, 3);
    stress_diag(spsc_diag, r);
    stress_spawn(&prod, producer_main, r);
    stress_spawn(&cons, consumer_main, r);
    pthread_barrier_wait(&r->start);
    if (close_race) {
        stress_rng rng;
        stress_rng_init(&rng, r->seed, 3);
        size_t when = stress_below(&rng, (uint32_t)total);
        while (STRESS_LOAD(&r->next_expected) < when && STRESS_LOAD(&r->next_expected) < total)
            stress_sleep_us(50);
        ap_spsc_close(&r->q);
    }
    stress_join(prod);
    stress_join(cons);

    stress_elem e = {STRESS_NONE, 0}, x = stress_make(0, 0);
    st = ap_spsc_try_pop(&r->q, &e);
    CHECK(st == AP_CLOSED && e.item == STRESS_NONE, "try_pop after drain: %s",
          ap_status_str(st));
    st = ap_spsc_try_push(&r->q, &x);
    CHECK(st == AP_CLOSED, "try_push after close: %s", ap_status_str(st));
    CHECK(ap_spsc_len(&r->q) == 0, "len after drain: %zu", ap_spsc_len(&r->q));
    stress_ledger_verify(&r->ledger, !close_race);
    size_t received = STRESS_LOAD(&r->ledger.received);
    if (wrap && !close_race) {
        size_t head = atomic_load(&r->q.head);
        CHECK(head < start, "positions did not wrap: start %#zx, head %#zx", start, head);
    }
    pthread_barrier_destroy(&r->start);
    stress_end("items=%zu full=%" PRIu64 " empty=%" PRIu64 " partial push/pop=%" PRIu64
               "/%" PRIu64,
               received, STRESS_LOAD(&r->push_full), STRESS_LOAD(&r->pop_empty),
               STRESS_LOAD(&r->partial_push), STRESS_LOAD(&r->partial_pop));
    ap_spsc_fini(&r->q);
    free(buf);
    stress_ledger_free(&r->ledger);
    free(r);
}

int main(int argc, char **argv)
{
    static const size_t caps[] = {1, 2, 3, 64, 4096};
    stress_init(argc, argv, "stress_spsc");
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (int mode = 0; mode < 4; mode++)
            for (int wrap = 0; wrap < 2; wrap++) {
                /* tiny rings cost a FULL/EMPTY round trip per item */
                size_t total = stress_iters(caps[c] <= 3 ? 16000 : 30000, 50);
                if (total < 3 * caps[c])
                    total = 3 * caps[c];
                run_spsc(caps[c], wrap, mode & 1, mode & 2, false, false, total);
            }
    for (size_t c = 0; c < 3; c++)
        for (int mode = 0; mode < 4; mode += 3)
            run_spsc(c == 0 ? 1 : c == 1 ? 3 : 64, true, mode & 1, mode & 2, true, false,
                     stress_iters(30000, 50));
    /* the typed wrappers (constant element size, single-element fast copy) */
    for (size_t c = 0; c < 3; c++)
        for (int mode = 0; mode < 4; mode += 3)
            run_spsc(c == 0 ? 1 : c == 1 ? 3 : 4096, true, mode & 1, mode & 2, false, true,
                     stress_iters(30000, 50) > 3 * 4096 ? stress_iters(30000, 50) : 3 * 4096);
    return stress_finish();
}
