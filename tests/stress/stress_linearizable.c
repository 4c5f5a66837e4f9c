/*
 * tests/stress/stress_linearizable.c -- the MPMC linearizability witness
 *
 * N threads share a queue of capacity exactly N. Each thread repeatedly
 * pushes one item, then pops one. Between its push and its pop every thread
 * owns one element in the queue at most, so in any linearizable execution:
 *   - a push never finds the queue full (the others hold at most N - 1), and
 *   - a pop never finds it empty (this thread's own push is in there, or an
 *     element that replaced it in FIFO order).
 * So try_push must never answer AP_FULL and try_pop never AP_EMPTY. AP_AGAIN
 * is the documented "a peer is between claiming and publishing: retry"; it
 * is retried, counted and reported, never treated as FULL/EMPTY.
 *
 * Run for N in {1, 2, 3, 4, 8, 16} (more threads than cores), positions from 0
 * and a few laps below SIZE_MAX (they wrap mid-run), with per-item identity
 * accounting and per-producer FIFO per consumer, as in stress_mpmc.
 */
#include "stress.h"

typedef struct lin_run {
    ap_mpmc q;
    unsigned threads;
    size_t rounds;
    stress_ledger ledger;
    pthread_barrier_t start;
    _Atomic uint64_t push_again, pop_again, max_again_streak;
    _Atomic size_t rounds_done;
} lin_run;

typedef struct lin_worker {
    lin_run *r;
    unsigned id;
    uint64_t seed;
    pthread_t thread;
} lin_worker;

static void *lin_main(void *arg)
{
    lin_worker *w = (lin_worker *)arg;
    lin_run *r = w->r;
    stress_rng rng;
    stress_fifo fifo;
    uint64_t push_again = 0, pop_again = 0, streak_max = 0;
    stress_rng_init(&rng, w->seed, w->id);
    stress_fifo_init(&fifo, r->threads);
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->rounds; i++) {
        stress_elem e = stress_make(w->id, i);
        unsigned fails = 0;
        uint64_t streak = 0;
        for (;;) {
            ap_status st = ap_mpmc_try_push(&r->q, &e);
            if (st == AP_OK)
                break;
            CHECK(st == AP_AGAIN,
                  "thread %u round %zu: try_push returned %s on a queue of capacity %u "
                  "shared by %u threads that each hold at most one element",
                  w->id, i, ap_status_str(st), r->threads, r->threads);
            push_again++;
            streak++;
            stress_backoff(&fails, &rng);
        }
        stress_ledger_pushed(&r->ledger, e.item);
        if (streak > streak_max)
            streak_max = streak;
        stress_jitter(&rng);
        fails = 0;
        streak = 0;
        for (;;) {
            stress_elem out = {STRESS_NONE, 0};
            ap_status st = ap_mpmc_try_pop(&r->q, &out);
            if (st == AP_OK) {
                stress_ledger_take(&r->ledger, &fifo, &out, w->id);
                break;
            }
            CHECK(st == AP_AGAIN,
                  "thread %u round %zu: try_pop returned %s right after this thread's own "
                  "push completed (not linearizable)",
                  w->id, i, ap_status_str(st));
            CHECK(out.item == STRESS_NONE, "try_pop returned AP_AGAIN but wrote the output");
            pop_again++;
            streak++;
            stress_backoff(&fails, &rng);
        }
        if (streak > streak_max)
            streak_max = streak;
        STRESS_ADD(&r->rounds_done, 1);
        stress_jitter(&rng);
    }
    stress_fifo_free(&fifo);
    STRESS_ADD(&r->push_again, push_again);
    STRESS_ADD(&r->pop_again, pop_again);
    uint64_t m = STRESS_LOAD(&r->max_again_streak);
    while (streak_max > m &&
           !atomic_compare_exchange_weak_explicit(&r->max_again_streak, &m, streak_max,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
    return NULL;
}

static void lin_diag(void *arg)
{
    lin_run *r = (lin_run *)arg;
    fprintf(stderr, "    %u threads: %zu of %zu rounds done; len %zu; tail %#zx head %#zx\n",
            r->threads, STRESS_LOAD(&r->rounds_done), (size_t)r->threads * r->rounds,
            ap_mpmc_len(&r->q), (size_t)atomic_load(&r->q.tail),
            (size_t)atomic_load(&r->q.head));
}

static void run_lin(unsigned threads, bool wrap, size_t rounds)
{
    lin_run *r = (lin_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("witness threads=cap=%u%s", threads, wrap ? " wrap" : "")) {
        free(r);
        return;
    }
    r->threads = threads;
    r->rounds = rounds;
    stress_ledger_init(&r->ledger, threads, rounds);
    size_t capacity = threads;
    size_t laps = (rounds * threads) / capacity;
    size_t start = wrap ? (size_t)0 - (laps / 2 + 1) * stress_mpmc_one_lap(capacity) : 0;
    void *buf = aligned_alloc(64, ap__align_up(AP_MPMC_BYTES(capacity, sizeof(stress_elem)), 64));
    CHECK(buf != NULL, "out of memory");
    ap_status st = ap__mpmc_init_at(&r->q, buf, AP_MPMC_BYTES(capacity, sizeof(stress_elem)), capacity, sizeof(stress_elem), start);
    CHECK(st == AP_OK, "ap__mpmc_init_at: %s", ap_status_str(st));

    lin_worker *w = (lin_worker *)calloc(threads, sizeof *w);
    CHECK(w != NULL, "out of memory");
    pthread_barrier_init(&r->start, NULL, threads + 1);
    stress_diag(lin_diag, r);
    for (unsigned i = 0; i < threads; i++) {
        w[i].r = r;
        w[i].id = i;
        w[i].seed = stress_thread_seed(i);
        stress_spawn(&w[i].thread, lin_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < threads; i++)
        stress_join(w[i].thread);

    CHECK(ap_mpmc_len(&r->q) == 0, "len at the end: %zu", ap_mpmc_len(&r->q));
    stress_elem e = {STRESS_NONE, 0};
    st = ap_mpmc_try_pop(&r->q, &e);
    CHECK(st == AP_EMPTY, "try_pop at the end: %s", ap_status_str(st));
    stress_ledger_verify(&r->ledger, true);
    if (wrap) {
        size_t head = atomic_load(&r->q.head);
        CHECK(head < start, "positions did not wrap: start %#zx, head %#zx", start, head);
    }
    pthread_barrier_destroy(&r->start);
    stress_end("rounds=%zu push-again=%" PRIu64 " pop-again=%" PRIu64
               " longest-again-streak=%" PRIu64,
               (size_t)threads * rounds, STRESS_LOAD(&r->push_again),
               STRESS_LOAD(&r->pop_again), STRESS_LOAD(&r->max_again_streak));
    ap_mpmc_fini(&r->q);
    free(buf);
    free(w);
    stress_ledger_free(&r->ledger);
    free(r);
}

int main(int argc, char **argv)
{
    static const unsigned threads[] = {1, 2, 3, 4, 8, 16};
    stress_init(argc, argv, "stress_linearizable");
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++)
        for (int wrap = 0; wrap < 2; wrap++)
            run_lin(threads[t], wrap, stress_iters(threads[t] > 8 ? 4000 : threads[t] > 4 ? 10000 : 20000, 20));
    return stress_finish();
}
