/*
 * tests/stress/stress_connpool.c -- ThreadSanitizer stress of the connection
 * pool: lazy opens, random factory and validate failures, broken returns,
 * lifetime / idle expiry on the real clock, FIFO futures with deadlines and
 * cancels, evict, close
 *
 * Workers (8 threads) loop: one way to check a connection out:
 *   try       ap_connpool_try_checkout in a loop with stress_backoff
 *   wait      ap_connpool_checkout_wait(pool, AP_DEADLINE_NONE)
 *   deadline  a checkout future driven by ap_block_on_until with a deadline
 *             0-200 us away, so that grants race with timeouts (a grant
 *             that lands on a cancelled future must be passed on)
 *   cancel    a hand-polled future with a relaxed-flag waker: poll, wait a
 *             little for a wake, then cancel (twice) unless woken
 * then use it briefly and return it, broken one time in eight. The factory
 * fails one open in eight (AP_NOMEM with app_error 12, or AP_EMPTY with
 * app_error -11: the caller must get AP_EXHAUSTED with that pair beside
 * it, never the factory's AP_EMPTY as the pool's own), validate refuses one lend in sixteen, and connections live
 * at most 300 us and may idle 100 us, so all retirement paths run. The main
 * thread meanwhile samples the pool's counters and calls evict.
 * Checked (the test's counters are relaxed atomics: any edge TSan sees
 * between a holder and the next comes from the pool):
 *   - the factory never has more than max connections open (checked in
 *     open), and every sample has opened - closed == live <= max
 *   - each slot has at most one holder (per-slot holder count), and a
 *     plain per-slot counter written only by holders is race-free
 *   - a lent connection is open (its plain `open` field, written by
 *     open/close on whatever thread ran them)
 *   - ledger: every connection id is closed exactly once, and after fini
 *     every id ever opened has been closed
 *   - at the end nothing is lent or queued, and every way made progress.
 * Scenarios: max in {1, 3, 8}, and close-midstream (every worker ends with
 * AP_CLOSED; lent connections are closed on return).
 */
#include "stress.h"
#include "asyncpat/connpool.h"

#define WORKERS 8
#define MAXC 8

enum { M_TRY, M_WAIT, M_DEADLINE, M_CANCEL, M_KINDS };
static const char *const mode_name[] = {"try", "wait", "deadline", "cancel"};

typedef struct conn {
    uint64_t id; /* plain: written by open, read by holders and close */
    int open;    /* plain: 1 between open and close */
    long uses;   /* plain: written only by holders */
    int pending; /* plain: 1 while an asynchronous open is in flight */
    int async;   /* plain: 1 while open through the asynchronous factory */
} conn;

typedef struct cp_run {
    ap_connpool pool;
    _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(MAXC, sizeof(conn))];
    size_t max, iters;
    bool close_midstream;
    pthread_barrier_t start;
    _Atomic long alive;            /* factory: open connections */
    _Atomic long in_flight, aborts; /* the asynchronous factory's opens in flight */
    _Atomic long busy; /* async: opens in flight + open, in ONE counter (two
                        * counters read one after the other can count a
                        * completing open twice) */
    _Atomic uint64_t next_id;      /* factory: ids handed out */
    _Atomic uint8_t *closed_ids;   /* ledger: closes per id */
    size_t id_cap;
    _Atomic int holders[MAXC];
    _Atomic size_t ops, by_mode[M_KINDS], timeouts, cancels, closed_seen, open_fail,
        broken, finished;
} cp_run;

typedef struct cp_worker {
    cp_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} cp_worker;

/* The rng of the thread that runs a factory call (the factory is called on
 * whichever thread needs it; each thread brings its own rng). */
static _Thread_local stress_rng *tl_rng;

static ap_status f_open(void *ctx, void *c, int *app_error)
{
    cp_run *r = (cp_run *)ctx;
    conn *k = (conn *)c;
    CHECK(*app_error == 0, "open: *app_error %d on entry", *app_error);
    if (tl_rng && stress_below(tl_rng, 8) == 0) {
        STRESS_ADD(&r->open_fail, 1);
        bool nomem = stress_below(tl_rng, 2);
        *app_error = nomem ? 12 : -11;
        return nomem ? AP_NOMEM : AP_EMPTY;
    }
    CHECK(k->open == 0, "open over an open connection %" PRIu64, k->id);
    long alive = STRESS_ADD(&r->alive, 1) + 1;
    CHECK(alive <= (long)r->max, "factory has %ld connections open, max %zu", alive, r->max);
    k->id = STRESS_ADD(&r->next_id, 1);
    CHECK(k->id < r->id_cap, "id ledger too small");
    k->open = 1;
    return AP_OK;
}

static void f_close(void *ctx, void *c)
{
    cp_run *r = (cp_run *)ctx;
    conn *k = (conn *)c;
    CHECK(k->open == 1, "close of a closed connection %" PRIu64, k->id);
    uint8_t was = atomic_exchange_explicit(&r->closed_ids[k->id], 1, memory_order_relaxed);
    CHECK(was == 0, "connection %" PRIu64 " closed twice", k->id);
    k->open = 0;
    STRESS_ADD(&r->alive, -1);
    if (k->async) { /* before the pool frees the slot */
        k->async = 0;
        STRESS_ADD(&r->busy, -1);
    }
}

/* The asynchronous factory (run_cp's async runs): start fails 1 in 16;
 * each poll completes the open (through f_open) or, 1 in 2, stays pending
 * after waking the checkout's waker; abort (connect timeout, cancel,
 * close) releases it. Opens in flight plus live never exceed max. */
static ap_status a_start(void *ctx, void *c, uint64_t now, int *app_error)
{
    cp_run *r = (cp_run *)ctx;
    conn *k = (conn *)c;
    (void)now;
    CHECK(*app_error == 0, "start: *app_error %d on entry", *app_error);
    if (tl_rng && stress_below(tl_rng, 16) == 0) {
        STRESS_ADD(&r->open_fail, 1);
        *app_error = 111;
        return AP_CLOSED;
    }
    CHECK(k->open == 0 && k->pending == 0, "start over a busy slot %" PRIu64, k->id);
    k->pending = 1;
    STRESS_ADD(&r->in_flight, 1);
    long busy = STRESS_ADD(&r->busy, 1) + 1;
    CHECK(busy <= (long)r->max, "%ld open or opening, max %zu", busy, r->max);
    return AP_OK;
}

static ap_poll a_poll(void *ctx, void *c, ap_cx *cx, ap_status *result, int *app_error)
{
    cp_run *r = (cp_run *)ctx;
    conn *k = (conn *)c;
    CHECK(k->pending == 1, "poll of an open not in flight");
    if (tl_rng && stress_below(tl_rng, 2) == 0) {
        ap_waker_wake(cx->waker);
        return AP_PENDING;
    }
    k->pending = 0;
    STRESS_ADD(&r->in_flight, -1);
    *result = f_open(ctx, c, app_error);
    if (*result == AP_OK)
        k->async = 1; /* busy falls at its close */
    else
        STRESS_ADD(&r->busy, -1);
    return AP_READY;
}

static void a_abort(void *ctx, void *c)
{
    cp_run *r = (cp_run *)ctx;
    conn *k = (conn *)c;
    CHECK(k->pending == 1 && k->open == 0, "abort of an open not in flight");
    k->pending = 0;
    STRESS_ADD(&r->in_flight, -1);
    STRESS_ADD(&r->busy, -1);
    STRESS_ADD(&r->aborts, 1);
}

static const ap_connpool_open_async a_ops = {a_start, a_poll, a_abort};

static bool f_validate(void *ctx, void *c)
{
    (void)ctx;
    CHECK(((conn *)c)->open == 1, "validate of a closed connection");
    return !(tl_rng && stress_below(tl_rng, 16) == 0);
}

static ap_status checkout(cp_worker *w, int mode, void **c, ap_connpool_fail *why)
{
    cp_run *r = w->r;
    switch (mode) {
    case M_TRY: {
        unsigned fails = 0;
        for (;;) {
            ap_status st = ap_connpool_try_checkout(&r->pool, c, ap_now_ns(), why);
            if (st != AP_EMPTY)
                return st;
            stress_backoff(&fails, &w->rng);
        }
    }
    case M_WAIT:
        return ap_connpool_checkout_wait(&r->pool, c, AP_DEADLINE_NONE, why);
    case M_DEADLINE: {
        uint64_t dl = ap_deadline_after(ap_now_ns(), (uint64_t)stress_below(&w->rng, 200) * AP_NS_PER_US);
        if (stress_below(&w->rng, 2))
            return ap_connpool_checkout_wait(&r->pool, c, dl, why);
        ap_connpool_checkout_fut f;
        ap_connpool_checkout_fut_init(&f, &r->pool, c);
        if (ap_block_on_until(&f.base, dl) == AP_TIMEDOUT) {
            CHECK(ap_connpool_checkout_status(&f) == AP_CANCELED, "timed-out future: %s",
                  ap_status_str(ap_connpool_checkout_status(&f)));
            return AP_TIMEDOUT;
        }
        *why = ap_connpool_checkout_failure(&f);
        return ap_connpool_checkout_status(&f);
    }
    case M_CANCEL: {
        ap_connpool_checkout_fut f;
        ap_connpool_checkout_fut_init(&f, &r->pool, c);
        if (stress_poll_or_cancel(&f.base, &w->rng)) {
            *why = ap_connpool_checkout_failure(&f);
            return ap_connpool_checkout_status(&f);
        }
        CHECK(ap_connpool_checkout_status(&f) == AP_CANCELED, "cancelled future has status %s",
              ap_status_str(ap_connpool_checkout_status(&f)));
        return AP_CANCELED;
    }
    }
    return AP_INVAL;
}

static void *worker_main(void *arg)
{
    cp_worker *w = (cp_worker *)arg;
    cp_run *r = w->r;
    tl_rng = &w->rng;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; r->close_midstream || i < r->iters; i++) {
        int mode = (int)stress_below(&w->rng, M_KINDS);
        void *c = NULL;
        ap_connpool_fail why = {AP_OK, 0, false};
        ap_status st = checkout(w, mode, &c, &why);
        if (st == AP_CLOSED) {
            CHECK(r->close_midstream, "worker %u: AP_CLOSED before close (%s)", w->id,
                  mode_name[mode]);
            STRESS_ADD(&r->closed_seen, 1);
            break;
        }
        if (st == AP_TIMEDOUT || st == AP_CANCELED) {
            STRESS_ADD(st == AP_TIMEDOUT ? &r->timeouts : &r->cancels, 1);
            continue;
        }
        if (st == AP_EXHAUSTED) { /* the factory failed: reported, nothing held */
            CHECK((why.error == AP_NOMEM && why.app_error == 12) ||
                      (why.error == AP_EMPTY && why.app_error == -11) ||
                      (why.error == AP_CLOSED && why.app_error == 111) || /* async start */
                      (why.error == AP_TIMEDOUT && why.open_timeout),
                  "worker %u: %s: open failure beside AP_EXHAUSTED is %s / %d", w->id,
                  mode_name[mode], ap_status_str(why.error), why.app_error);
            continue;
        }
        CHECK(st == AP_OK, "worker %u: %s checkout: %s", w->id, mode_name[mode],
              ap_status_str(st));
        conn *k = (conn *)c;
        size_t slot = (size_t)(k - (conn *)(void *)r->buf);
        CHECK(slot < r->max, "worker %u: connection outside the slots", w->id);
        int h = STRESS_ADD(&r->holders[slot], 1);
        CHECK(h == 0, "worker %u: slot %zu has %d other holders", w->id, slot, h);
        CHECK(k->open == 1, "worker %u: lent a closed connection", w->id);
        k->uses++; /* only the pool orders these writes */
        stress_jitter(&w->rng);
        STRESS_ADD(&r->holders[slot], -1);
        STRESS_ADD(&r->ops, 1);
        STRESS_ADD(&r->by_mode[mode], 1);
        bool broken = stress_below(&w->rng, 8) == 0;
        if (broken)
            STRESS_ADD(&r->broken, 1);
        st = ap_connpool_return(&r->pool, c, broken, ap_now_ns());
        CHECK(st == AP_OK, "worker %u: return: %s", w->id, ap_status_str(st));
    }
    STRESS_ADD(&r->finished, 1);
    return NULL;
}

static void cp_diag(void *arg)
{
    cp_run *r = (cp_run *)arg;
    fprintf(stderr, "    max=%zu: ops %zu, alive %ld, finished %zu, queued waiters %zu\n",
            r->max, STRESS_LOAD(&r->ops), STRESS_LOAD(&r->alive), STRESS_LOAD(&r->finished),
            (size_t)atomic_load(&r->pool.wl.count));
}

static void run_cp(size_t max, size_t iters, bool close_midstream, bool async)
{
    cp_run *r = (cp_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("connpool %s max=%zu", close_midstream ? "close-midstream" : "mix", max)) {
        free(r);
        return;
    }
    r->max = max;
    r->iters = iters;
    r->close_midstream = close_midstream;
    r->id_cap = WORKERS * (iters + 64) * 2 + 1024;
    if (close_midstream)
        r->id_cap *= 4;
    r->closed_ids = (_Atomic uint8_t *)calloc(r->id_cap, 1);
    CHECK(r->closed_ids != NULL, "out of memory");
    ap_connpool_desc d = {.max_size = max, .conn_size = sizeof(conn),
                          .max_lifetime_ns = 300 * AP_NS_PER_US,
                          .idle_timeout_ns = 100 * AP_NS_PER_US,
                          .open_async = async ? &a_ops : NULL,
                          .connect_timeout_ns = async ? 20 * AP_NS_PER_US : 0};
    ap_connpool_ops ops = {f_open, f_close, f_validate, r};
    ap_status st = ap_connpool_init(&r->pool, r->buf, sizeof r->buf, &d, &ops);
    CHECK(st == AP_OK, "ap_connpool_init: %s", ap_status_str(st));
    pthread_barrier_init(&r->start, NULL, WORKERS + 1);
    stress_diag(cp_diag, r);
    cp_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_spawn(&w[i].thread, worker_main, &w[i]);
    }
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(99), 0);
    tl_rng = &rng;
    pthread_barrier_wait(&r->start);
    size_t close_at = 200 + stress_below(&rng, (uint32_t)iters);
    size_t samples = 0, evicted = 0;
    bool closed = false;
    while (STRESS_LOAD(&r->finished) < WORKERS) {
        ap_connpool_stats s;
        ap_connpool_stats_get(&r->pool, &s);
        CHECK(s.opened - s.closed == s.live, "opened %" PRIu64 " - closed %" PRIu64
              " != live %zu", s.opened, s.closed, s.live);
        CHECK(s.live <= max && s.live + s.opening <= max, "live %zu + opening %zu > max %zu",
              s.live, s.opening, max);
        samples++;
        evicted += ap_connpool_evict(&r->pool, ap_now_ns());
        if (close_midstream && !closed && STRESS_LOAD(&r->ops) >= close_at) {
            ap_connpool_close(&r->pool);
            closed = true;
        }
        stress_sleep_us(50);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);

    ap_connpool_stats s;
    ap_connpool_stats_get(&r->pool, &s);
    CHECK(s.in_use == 0 && s.opening == 0, "in use %zu, opening %zu at the end", s.in_use,
          s.opening);
    CHECK(s.waiters == 0, "%zu waiters left queued", s.waiters);
    CHECK(s.opened - s.closed == s.live, "counters at the end");
    if (close_midstream) {
        CHECK(STRESS_LOAD(&r->closed_seen) == WORKERS, "%zu of %d workers saw AP_CLOSED",
              STRESS_LOAD(&r->closed_seen), WORKERS);
        CHECK(s.live == 0, "%zu connections open after close and all returns", s.live);
        void *c;
        CHECK(ap_connpool_try_checkout(&r->pool, &c, ap_now_ns(), NULL) == AP_CLOSED,
              "try after close");
    } else {
        for (int m = 0; m < M_KINDS; m++)
            CHECK(STRESS_LOAD(&r->by_mode[m]) > 0, "no checkout by %s", mode_name[m]);
        CHECK(s.broken > 0 && s.open_failures > 0, "broken %" PRIu64 ", open failures %" PRIu64,
              s.broken, s.open_failures);
    }
    ap_connpool_fini(&r->pool);
    tl_rng = NULL;
    uint64_t ids = STRESS_LOAD(&r->next_id);
    for (uint64_t id = 0; id < ids; id++)
        CHECK(atomic_load_explicit(&r->closed_ids[id], memory_order_relaxed) == 1,
              "connection %" PRIu64 " of %" PRIu64 " not closed exactly once", id, ids);
    CHECK(STRESS_LOAD(&r->alive) == 0, "%ld connections open after fini", STRESS_LOAD(&r->alive));
    CHECK(STRESS_LOAD(&r->in_flight) == 0, "%ld opens in flight after fini",
          STRESS_LOAD(&r->in_flight));
    pthread_barrier_destroy(&r->start);
    stress_end("ops=%zu opened=%" PRIu64 " expired=%" PRIu64 " invalid=%" PRIu64
               " broken=%" PRIu64 " openfail=%" PRIu64 " evicted=%zu to=%zu cx=%zu samples=%zu"
               "%s opentimeouts=%" PRIu64 " aborts=%ld",
               STRESS_LOAD(&r->ops), s.opened, s.expired, s.validate_failures, s.broken,
               s.open_failures, evicted, STRESS_LOAD(&r->timeouts), STRESS_LOAD(&r->cancels),
               samples, async ? " async" : "", s.open_timeouts, STRESS_LOAD(&r->aborts));
    free((void *)r->closed_ids);
    free(r);
}

int main(int argc, char **argv)
{
    static const size_t maxes[] = {1, 2, 5};
    stress_init(argc, argv, "stress_connpool");
    for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++)
        run_cp(maxes[i], stress_iters(10000, 50), false, false);
    run_cp(4, stress_iters(4000, 50), true, false);
    /* the asynchronous open (desc.open_async) with a 20 us connect timeout */
    run_cp(2, stress_iters(6000, 50), false, true);
    run_cp(4, stress_iters(3000, 50), true, true);
    return stress_finish();
}
