/*
 * tests/stress/stress_pool.c -- ThreadSanitizer stress of the object pool:
 * try_get, get futures, deadlines, cancels, close, with an ownership ledger
 *
 * Workers (8 threads) loop: pick one way to get an object:
 *   try       ap_pool_try_get in a loop with stress_backoff (EMPTY, AGAIN)
 *   wait      ap_pool_get_wait(pool, &obj, AP_DEADLINE_NONE)
 *   deadline  ap_pool_get_wait, or a future driven by ap_block_on_until,
 *             with a deadline 0-200 us away, so futures are cancelled while
 *             puts race with them (an object granted to a cancelled future
 *             must be passed on); on AP_TIMEDOUT the worker moves on
 *   cancel    a hand-polled future with a relaxed-flag waker: poll, wait a
 *             little for a wake, then cancel (twice) unless woken; a
 *             cancelled future must then poll READY with AP_CANCELED
 * then holds the object briefly and puts it back (AP_OK); now and then it
 * also puts a misaligned and a foreign pointer (must be AP_INVAL).
 * The ledger, per object: a relaxed holder count that must go 0 -> 1 on
 * every get (an object is never lent twice at once), and plain fields
 * owner/uses written by the holder only (TSan reports a race if the pool
 * fails to order one holder before the next; the test's own counters are
 * relaxed and add no edges). The reset hook counts accepted puts and
 * checks the object is not held. At the end: every object idle, the idle
 * stack holds each exactly once, sum of uses == successful gets == resets,
 * no waiter queued, every way made progress, high-water <= n, and n
 * try_gets succeed, the next is AP_EMPTY, and a second put of each is
 * AP_INVAL.
 * Scenarios: n in {1, 3, 8}, and close-midstream (every worker ends with
 * AP_CLOSED; objects held at the close still come back).
 */
#include "stress.h"
#include "asyncpat/pool.h"

#define WORKERS 8
#define MAX_OBJS 8

enum { M_TRY, M_WAIT, M_DEADLINE, M_CANCEL, M_KINDS };
static const char *const mode_name[] = {"try", "wait", "deadline", "cancel"};

typedef struct pobj {
    _Atomic int holders; /* ledger, relaxed */
    unsigned owner;      /* plain: written by the holder */
    size_t uses;         /* plain: written by the holder */
    char pad[40];
} pobj;

typedef struct pool_run {
    ap_pool pool;
    pobj objs[MAX_OBJS];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(MAX_OBJS)];
    size_t n;
    size_t iters;
    bool close_midstream;
    pthread_barrier_t start;
    _Atomic long held, high;
    _Atomic size_t ops; /* successful gets, relaxed */
    _Atomic size_t by_mode[M_KINDS], timeouts, cancels, closed_seen, double_puts, resets;
} pool_run;

typedef struct pool_worker {
    pool_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} pool_worker;

static void on_reset(void *o, void *user)
{
    pool_run *r = (pool_run *)user;
    CHECK(STRESS_LOAD(&((pobj *)o)->holders) == 0, "reset of an object somebody holds");
    STRESS_ADD(&r->resets, 1);
}

static ap_status get_obj(pool_worker *w, int mode, void **out)
{
    pool_run *r = w->r;
    switch (mode) {
    case M_TRY: {
        unsigned fails = 0;
        for (;;) {
            ap_status st = ap_pool_try_get(&r->pool, out);
            if (st != AP_EMPTY)
                return st;
            stress_backoff(&fails, &w->rng);
        }
    }
    case M_WAIT:
        return ap_pool_get_wait(&r->pool, out, AP_DEADLINE_NONE);
    case M_DEADLINE: {
        uint64_t dl = ap_deadline_after(ap_now_ns(), (uint64_t)stress_below(&w->rng, 200) * AP_NS_PER_US);
        if (stress_below(&w->rng, 2))
            return ap_pool_get_wait(&r->pool, out, dl);
        ap_pool_get_fut f;
        ap_pool_get_fut_init(&f, &r->pool, out);
        if (ap_block_on_until(&f.base, dl) == AP_TIMEDOUT) {
            CHECK(ap_pool_get_status(&f) == AP_CANCELED, "timed-out future has status %s",
                  ap_status_str(ap_pool_get_status(&f)));
            return AP_TIMEDOUT;
        }
        return ap_pool_get_status(&f);
    }
    case M_CANCEL: {
        ap_pool_get_fut f;
        ap_pool_get_fut_init(&f, &r->pool, out);
        if (stress_poll_or_cancel(&f.base, &w->rng))
            return ap_pool_get_status(&f);
        CHECK(ap_pool_get_status(&f) == AP_CANCELED, "cancelled future has status %s",
              ap_status_str(ap_pool_get_status(&f)));
        return AP_CANCELED;
    }
    }
    return AP_INVAL;
}

static void *worker_main(void *arg)
{
    pool_worker *w = (pool_worker *)arg;
    pool_run *r = w->r;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; r->close_midstream || i < r->iters; i++) {
        int mode = (int)stress_below(&w->rng, M_KINDS);
        void *v = NULL;
        ap_status st = get_obj(w, mode, &v);
        if (st == AP_CLOSED) {
            CHECK(r->close_midstream, "worker %u: AP_CLOSED before close (%s)", w->id,
                  mode_name[mode]);
            CHECK(v == NULL, "worker %u: out written on AP_CLOSED", w->id);
            STRESS_ADD(&r->closed_seen, 1);
            break;
        }
        if (st == AP_TIMEDOUT || st == AP_CANCELED) {
            CHECK(v == NULL, "worker %u: out written on %s", w->id, ap_status_str(st));
            STRESS_ADD(st == AP_TIMEDOUT ? &r->timeouts : &r->cancels, 1);
            continue;
        }
        CHECK(st == AP_OK, "worker %u: %s get: %s", w->id, mode_name[mode], ap_status_str(st));
        size_t k;
        CHECK(ap_pool_index(&r->pool, v, &k) == AP_OK && k < r->n,
              "worker %u: got a pointer that is not an object", w->id);
        pobj *o = &r->objs[k];
        int before = STRESS_ADD(&o->holders, 1);
        CHECK(before == 0, "worker %u: object %zu lent while %d others hold it", w->id, k,
              before);
        o->owner = w->id; /* plain: only the pool orders holders */
        o->uses++;
        long now = STRESS_ADD(&r->held, 1) + 1;
        CHECK(now <= (long)r->n, "worker %u: %ld objects held, n = %zu", w->id, now, r->n);
        long hi = STRESS_LOAD(&r->high);
        while (now > hi && !atomic_compare_exchange_weak_explicit(
                               &r->high, &hi, now, memory_order_relaxed, memory_order_relaxed)) {
        }
        STRESS_ADD(&r->ops, 1);
        STRESS_ADD(&r->by_mode[mode], 1);
        stress_jitter(&w->rng);
        CHECK(o->owner == w->id, "worker %u: object %zu taken over by %u", w->id, k, o->owner);
        STRESS_ADD(&r->held, -1);
        STRESS_ADD(&o->holders, -1);
        st = ap_pool_put(&r->pool, v);
        CHECK(st == AP_OK, "worker %u: put of object %zu: %s", w->id, k, ap_status_str(st));
        if (stress_below(&w->rng, 32) == 0) {
            /* Bad puts racing with everything else: always AP_INVAL. (A
             * true double put is checked at quiescence: under way, the
             * object may already be lent again, and a stale put of a lent
             * object is indistinguishable from a good one.) */
            CHECK(ap_pool_put(&r->pool, (char *)v + 1) == AP_INVAL, "misaligned put accepted");
            CHECK(ap_pool_put(&r->pool, &r->objs[MAX_OBJS - 1] + 1) == AP_INVAL,
                  "foreign put accepted");
            STRESS_ADD(&r->double_puts, 1);
        }
    }
    return NULL;
}

static void pool_diag(void *arg)
{
    pool_run *r = (pool_run *)arg;
    fprintf(stderr, "    n=%zu: ops %zu, held %ld, idle %zu, queued waiters %zu, closed %d\n",
            r->n, STRESS_LOAD(&r->ops), STRESS_LOAD(&r->held), ap_pool_idle(&r->pool),
            (size_t)atomic_load(&r->pool.wl.count), (int)ap_pool_is_closed(&r->pool));
}

/* At quiescence: the idle stack holds every object exactly once. */
static void check_stack(pool_run *r)
{
    uint64_t h = atomic_load(&r->pool.head);
    uint32_t top = (uint32_t)(h & 0xffffffffu);
    int seen[MAX_OBJS] = {0};
    size_t k = 0;
    while (top != 0) {
        CHECK(top <= r->n, "idle link %u out of range", top);
        CHECK(seen[top - 1]++ == 0, "object %u twice on the idle stack", top - 1);
        k++;
        top = atomic_load(&r->pool.state[top - 1]);
    }
    CHECK(k == r->n, "%zu of %zu objects on the idle stack", k, r->n);
}

static void run_pool(size_t n, size_t iters, bool close_midstream)
{
    pool_run *r = (pool_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("pool %s n=%zu", close_midstream ? "close-midstream" : "mix", n)) {
        free(r);
        return;
    }
    ap_status st = ap_pool_init(&r->pool, r->st, sizeof r->st, r->objs, sizeof r->objs, n,
                                sizeof(pobj));
    CHECK(st == AP_OK, "ap_pool_init: %s", ap_status_str(st));
    ap_pool_set_reset(&r->pool, on_reset, r);
    r->n = n;
    r->iters = iters;
    r->close_midstream = close_midstream;
    pthread_barrier_init(&r->start, NULL, WORKERS + 1);
    stress_diag(pool_diag, r);
    pool_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_spawn(&w[i].thread, worker_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    if (close_midstream) {
        stress_rng rng;
        stress_rng_init(&rng, stress_thread_seed(99), 0);
        size_t when = 200 + stress_below(&rng, (uint32_t)iters);
        while (STRESS_LOAD(&r->ops) < when)
            stress_sleep_us(100);
        ap_pool_close(&r->pool);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);

    CHECK(STRESS_LOAD(&r->held) == 0, "held %ld at the end", STRESS_LOAD(&r->held));
    CHECK(ap_pool_idle(&r->pool) == n, "objects not conserved: idle %zu, n %zu",
          ap_pool_idle(&r->pool), n);
    CHECK(ap_pool_in_use(&r->pool) == 0, "in_use %zu at the end", ap_pool_in_use(&r->pool));
    check_stack(r);
    CHECK(atomic_load(&r->pool.wl.count) == 0, "%zu waiters left queued",
          (size_t)atomic_load(&r->pool.wl.count));
    CHECK(STRESS_LOAD(&r->high) <= (long)n, "high-water %ld > n", STRESS_LOAD(&r->high));
    size_t uses = 0;
    for (size_t k = 0; k < n; k++)
        uses += r->objs[k].uses;
    CHECK(uses == STRESS_LOAD(&r->ops), "ledger: %zu uses, %zu gets", uses,
          STRESS_LOAD(&r->ops));
    CHECK(STRESS_LOAD(&r->resets) == STRESS_LOAD(&r->ops), "%zu resets for %zu puts",
          STRESS_LOAD(&r->resets), STRESS_LOAD(&r->ops));
    void *v = NULL;
    if (close_midstream) {
        CHECK(STRESS_LOAD(&r->closed_seen) == WORKERS, "%zu of %d workers saw AP_CLOSED",
              STRESS_LOAD(&r->closed_seen), WORKERS);
        CHECK(ap_pool_try_get(&r->pool, &v) == AP_CLOSED, "try after close");
    } else {
        for (int m = 0; m < M_KINDS; m++)
            CHECK(STRESS_LOAD(&r->by_mode[m]) > 0, "no get by %s", mode_name[m]);
        void *all[MAX_OBJS];
        for (size_t k = 0; k < n; k++) {
            st = ap_pool_try_get(&r->pool, &all[k]);
            CHECK(st == AP_OK, "try_get %zu of %zu at quiescence: %s", k, n, ap_status_str(st));
        }
        CHECK(ap_pool_try_get(&r->pool, &v) == AP_EMPTY, "more than n objects");
        for (size_t k = 0; k < n; k++) {
            CHECK(ap_pool_put(&r->pool, all[k]) == AP_OK, "put at quiescence");
            CHECK(ap_pool_put(&r->pool, all[k]) == AP_INVAL, "double put accepted");
        }
    }
    pthread_barrier_destroy(&r->start);
    stress_end("gets=%zu high=%ld try=%zu wait=%zu deadline=%zu cancel=%zu timeouts=%zu "
               "cancels=%zu bad_puts=%zu",
               STRESS_LOAD(&r->ops), STRESS_LOAD(&r->high), STRESS_LOAD(&r->by_mode[M_TRY]),
               STRESS_LOAD(&r->by_mode[M_WAIT]), STRESS_LOAD(&r->by_mode[M_DEADLINE]),
               STRESS_LOAD(&r->by_mode[M_CANCEL]), STRESS_LOAD(&r->timeouts),
               STRESS_LOAD(&r->cancels), STRESS_LOAD(&r->double_puts));
    ap_pool_fini(&r->pool);
    free(r);
}

int main(int argc, char **argv)
{
    static const size_t ns[] = {1, 3, 8};
    stress_init(argc, argv, "stress_pool");
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        run_pool(ns[i], stress_iters(12000, 50), false);
    run_pool(4, stress_iters(6000, 50), true);
    return stress_finish();
}
