/*
 * tests/stress/stress_async.c -- ThreadSanitizer stress of the queues'
 * futures: waiting consumers and producers, wakeups, close, cancellation
 *
 * Consumers wait in one of these ways (kinds are mixed within a scenario):
 *   wait      ap_{mpmc,spsc}_pop_wait(q, &e, AP_DEADLINE_NONE)
 *   fut       ap_{mpmc,spsc}_pop_fut_init + ap_block_on, then the status
 *   poll      a hand-written driver: *_pop_poll with its own waker (a relaxed
 *             flag, so it adds no ordering of its own), spinning/sleeping on
 *             the flag until woken: a lost wake is a hang
 *   deadline  *_pop_wait or fut + ap_block_on_until with a deadline 0-200 us
 *             away, so futures get cancelled while pushes race; on
 *             AP_TIMEDOUT the output must be untouched and a fut's status
 *             AP_CANCELED; retried; with a budget the consumer quits after
 *             that many timeouts (a wake it swallowed would strand an item)
 *   cancel    *_pop_poll, then a short random wait for a wake; if woken,
 *             usually poll again, otherwise (and sometimes even when woken)
 *             *_pop_cancel, twice (idempotent); a cancelled future then
 *             polls READY with AP_CANCELED and has taken nothing
 * Producers: try (try_push + backoff), wait (*_push_wait), fut (push future
 * + ap_block_on), deadline (push_wait / fut + ap_block_on_until with short
 * deadlines, retrying the same element after AP_TIMEDOUT: a timed-out push
 * that did push would show up as a duplicate).
 *
 * Scenarios (MPMC unless marked spsc)
 *   wake-lockstep    one producer pushes an item only after the previous one
 *                    was consumed (plus a pause), so every item must wake a
 *                    parked consumer; an item not consumed within a third of
 *                    the watchdog time is reported as a lost wakeup
 *   wake-burst       bursts of pushes with pauses, consumers park between
 *   blocked-push     capacity 1 or 2, slow consumers: producers park in
 *                    push_wait on the full queue and are woken by pops
 *   cancel-pop       deadline/cancel consumers next to reliable ones
 *   cancel-push      deadline producers on a tiny queue
 *   close-midstream  close while everybody is busy: what was pushed with
 *                    AP_OK comes out exactly once, then every consumer sees
 *                    AP_CLOSED and every producer stops with AP_CLOSED
 *   close-empty      rounds of consumers parked on an empty queue, all woken
 *                    by close with AP_CLOSED (also racing with registration)
 *   close-full       rounds of producers parked on a full queue, all woken by
 *                    close with AP_CLOSED; the queue then drains exactly
 *   handoff-pop/push a woken future that cancels passes its wake on: a
 *                    deterministic two-waiter hand-off per round
 * stress_async_condvar.c builds this same program with AP_BLOCK_ON_CONDVAR
 * (ap_block_on parks on a pthread condition variable instead of a futex).
 *
 * After every scenario but close-midstream the main thread waits until all
 * items were consumed, then (usually after the consumers parked) closes:
 * each consumer that did not quit must return AP_CLOSED. Items are checked
 * one by one (exactly once, intact), per-producer FIFO per consumer.
 */
#ifndef STRESS_ASYNC_NAME
#define STRESS_ASYNC_NAME "stress_async"
#endif
#ifndef STRESS_ASYNC_SHARE /* fraction of the iterations this build runs */
#define STRESS_ASYNC_SHARE 1.0
#endif
#include "stress.h"

#define MAXT 12

typedef enum { C_WAIT, C_FUT, C_POLL, C_DEADLINE, C_CANCEL } ckind;
typedef enum { P_TRY, P_WAIT, P_FUT, P_DEADLINE } pkind;
static const char *const ckind_name[] = {"wait", "fut", "poll", "deadline", "cancel"};
static const char *const pkind_name[] = {"try", "wait", "fut", "deadline"};

enum { PACE_FREE, PACE_LOCKSTEP, PACE_BURST };
enum { CLOSE_AFTER, CLOSE_MIDSTREAM };

/* consumer states, for diagnostics and the final checks */
enum { CS_RUNNING, CS_QUIT, CS_CLOSED };

typedef struct async_cfg {
    bool spsc;
    size_t capacity;
    bool wrap;
    unsigned producers, consumers;
    pkind pk[MAXT];
    ckind ck[MAXT];
    size_t items; /* in all */
    int pace;
    bool slow_consumers;
    unsigned budget; /* timeouts/cancels before a deadline/cancel thread quits; 0: never */
    int close_mode;
} async_cfg;

typedef union pop_fut {
    ap_mpmc_pop_fut m;
    ap_spsc_pop_fut s;
} pop_fut;

typedef union push_fut {
    ap_mpmc_push_fut m;
    ap_spsc_push_fut s;
} push_fut;

typedef struct async_run {
    async_cfg cfg;
    ap_mpmc mq;
    ap_spsc sq;
    void *buf;
    size_t start;
    size_t per_producer;
    stress_ledger ledger;
    pthread_barrier_t barrier;
    _Atomic unsigned cstate[MAXT];
    _Atomic unsigned producers_quit;
    _Atomic uint64_t pop_timeouts, pop_cancels, push_timeouts;
    _Atomic uint64_t stale_wakes; /* calls to a waker a later poll had replaced */
} async_run;

/*
 * The hand-written drivers' waker: it only sets a relaxed flag (so it adds
 * no ordering of its own) and checks that it is still allowed to be called:
 * once a future has returned AP_READY or been cancelled, the waker it was
 * given must never run again (future.h contract 5), so a driver may reuse
 * its memory. Each worker takes wakers round-robin from a ring, so a late
 * call finds its waker retired rather than some live one.
 */
enum { FW_LIVE, FW_REPLACED, FW_RETIRED };

typedef struct flag_waker {
    _Atomic uint32_t flag;
    _Atomic uint32_t state; /* FW_* */
    _Atomic uint64_t *stale_calls;
} flag_waker;

#define WAKER_RING 64

typedef struct async_worker {
    async_run *r;
    unsigned id;
    stress_rng rng;
    pthread_t thread;
    flag_waker wakers[WAKER_RING];
    unsigned next_waker;
} async_worker;

/* ---- one interface over both queues ---- */

static ap_status q_try_push(async_run *r, const stress_elem *e)
{
    return r->cfg.spsc ? ap_spsc_try_push(&r->sq, e) : ap_mpmc_try_push(&r->mq, e);
}

static ap_status q_try_pop(async_run *r, stress_elem *e)
{
    return r->cfg.spsc ? ap_spsc_try_pop(&r->sq, e) : ap_mpmc_try_pop(&r->mq, e);
}

static ap_status q_push_wait(async_run *r, const stress_elem *e, uint64_t dl)
{
    return r->cfg.spsc ? ap_spsc_push_wait(&r->sq, e, dl) : ap_mpmc_push_wait(&r->mq, e, dl);
}

static ap_status q_pop_wait(async_run *r, stress_elem *e, uint64_t dl)
{
    return r->cfg.spsc ? ap_spsc_pop_wait(&r->sq, e, dl) : ap_mpmc_pop_wait(&r->mq, e, dl);
}

static void q_close(async_run *r)
{
    if (r->cfg.spsc)
        ap_spsc_close(&r->sq);
    else
        ap_mpmc_close(&r->mq);
}

static size_t q_len(async_run *r)
{
    return r->cfg.spsc ? ap_spsc_len(&r->sq) : ap_mpmc_len(&r->mq);
}

static bool q_closed(async_run *r)
{
    return r->cfg.spsc ? ap_spsc_is_closed(&r->sq) : ap_mpmc_is_closed(&r->mq);
}

/* linked waiters (a seq_cst snapshot of the list's count) */
static size_t q_waiters(async_run *r, bool pop_side)
{
    ap_waitlist *wl = r->cfg.spsc ? (pop_side ? &r->sq.not_empty : &r->sq.not_full)
                                  : (pop_side ? &r->mq.not_empty : &r->mq.not_full);
    return atomic_load(&wl->count);
}

static ap_waitop *pop_fut_init(async_run *r, pop_fut *f, stress_elem *out)
{
    if (r->cfg.spsc) {
        ap_spsc_pop_fut_init(&f->s, &r->sq, out);
        return &f->s.op;
    }
    ap_mpmc_pop_fut_init(&f->m, &r->mq, out);
    return &f->m.op;
}

static ap_poll pop_fut_poll(async_run *r, pop_fut *f, ap_cx *cx)
{
    return r->cfg.spsc ? ap_spsc_pop_poll(&f->s, cx) : ap_mpmc_pop_poll(&f->m, cx);
}

static void pop_fut_cancel(async_run *r, pop_fut *f)
{
    if (r->cfg.spsc)
        ap_spsc_pop_cancel(&f->s);
    else
        ap_mpmc_pop_cancel(&f->m);
}

static ap_waitop *push_fut_init(async_run *r, push_fut *f, const stress_elem *e)
{
    if (r->cfg.spsc) {
        ap_spsc_push_fut_init(&f->s, &r->sq, e);
        return &f->s.op;
    }
    ap_mpmc_push_fut_init(&f->m, &r->mq, e);
    return &f->m.op;
}

static uint64_t short_deadline(stress_rng *rng)
{
    return ap_deadline_after(ap_now_ns(), (uint64_t)stress_below(rng, 200) * AP_NS_PER_US);
}

/* ---- the hand-written drivers' waker (see flag_waker above) ---- */

static void flag_wake(void *ctx)
{
    flag_waker *fw = (flag_waker *)ctx;
    uint32_t s = STRESS_LOAD(&fw->state);
    CHECK(s != FW_RETIRED,
          "a waker was called after its future returned AP_READY or was cancelled "
          "(future.h contract 5: it must never be called again)");
    if (s == FW_REPLACED)
        STRESS_ADD(fw->stale_calls, 1);
    STRESS_STORE(&fw->flag, 1u);
}

static flag_waker *waker_take(async_worker *w)
{
    flag_waker *fw = &w->wakers[w->next_waker++ % WAKER_RING];
    STRESS_STORE(&fw->flag, 0u);
    STRESS_STORE(&fw->state, FW_LIVE);
    fw->stale_calls = &w->r->stale_wakes;
    return fw;
}

static void waker_retire(flag_waker *fw, uint32_t how)
{
    STRESS_STORE(&fw->state, how);
}

static void worker_init(async_worker *w, async_run *r, unsigned id, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->r = r;
    w->id = id;
    stress_rng_init(&w->rng, seed, id);
    for (unsigned i = 0; i < WAKER_RING; i++) {
        atomic_init(&w->wakers[i].flag, 0u);
        atomic_init(&w->wakers[i].state, FW_RETIRED);
        w->wakers[i].stale_calls = &r->stale_wakes;
    }
}

/* ---- consumers ---- */

/* One pop in this consumer's way. Returns AP_OK, AP_CLOSED, AP_TIMEDOUT
 * (deadline) or AP_CANCELED (cancel). */
static ap_status consume_one(async_worker *w, ckind kind, stress_elem *out)
{
    async_run *r = w->r;
    pop_fut f;
    switch (kind) {
    case C_WAIT:
        return q_pop_wait(r, out, AP_DEADLINE_NONE);
    case C_FUT: {
        ap_waitop *op = pop_fut_init(r, &f, out);
        ap_block_on(&op->base);
        return ap_waitop_status(op);
    }
    case C_POLL: {
        /* Sometimes the next poll passes a different waker, which must
         * replace the earlier one (future.h contract 4). */
        ap_waitop *op = pop_fut_init(r, &f, out);
        flag_waker *fw = waker_take(w), *old = NULL;
        ap_cx cx;
        cx.waker.wake = flag_wake;
        for (;;) {
            /* consume the notification before polling (see ap_block_on) */
            STRESS_STORE(&fw->flag, 0u);
            cx.waker.ctx = fw;
            cx.now = ap_now_ns();
            cx.deadline = AP_DEADLINE_NONE;
            ap_poll p = pop_fut_poll(r, &f, &cx);
            if (old) {
                waker_retire(old, FW_REPLACED);
                old = NULL;
            }
            if (p == AP_READY)
                break;
            /* sleep until woken, or until the deadline the future asked
             * for (it backs off that way while a peer is mid-operation) */
            unsigned fails = 0;
            while (STRESS_LOAD(&fw->flag) == 0 &&
                   (cx.deadline == AP_DEADLINE_NONE || ap_now_ns() < cx.deadline))
                stress_backoff(&fails, &w->rng);
            if (stress_below(&w->rng, 4) == 0) {
                old = fw;
                fw = waker_take(w);
            }
        }
        waker_retire(fw, FW_RETIRED);
        return ap_waitop_status(op);
    }
    case C_DEADLINE: {
        ap_status st;
        if (stress_below(&w->rng, 2)) {
            st = q_pop_wait(r, out, short_deadline(&w->rng));
        } else {
            ap_waitop *op = pop_fut_init(r, &f, out);
            st = ap_block_on_until(&op->base, short_deadline(&w->rng));
            if (st == AP_OK)
                st = ap_waitop_status(op);
            else
                CHECK(ap_waitop_status(op) == AP_CANCELED,
                      "timed-out pop future has status %s",
                      ap_status_str(ap_waitop_status(op)));
        }
        CHECK(st == AP_OK || st == AP_CLOSED || st == AP_TIMEDOUT, "deadline pop: %s",
              ap_status_str(st));
        return st;
    }
    case C_CANCEL: {
        ap_waitop *op = pop_fut_init(r, &f, out);
        flag_waker *fw = waker_take(w);
        ap_cx cx;
        cx.waker.wake = flag_wake;
        cx.waker.ctx = fw;
        for (;;) {
            STRESS_STORE(&fw->flag, 0u);
            cx.now = ap_now_ns();
            cx.deadline = AP_DEADLINE_NONE;
            if (pop_fut_poll(r, &f, &cx) == AP_READY) {
                waker_retire(fw, FW_RETIRED);
                return ap_waitop_status(op);
            }
            /* wait a little for a wake; without one, give up */
            for (uint32_t i = stress_below(&w->rng, 64); i && !STRESS_LOAD(&fw->flag); i--)
                stress_jitter(&w->rng);
            if (STRESS_LOAD(&fw->flag) && stress_below(&w->rng, 2))
                continue; /* woken: poll again, usually */
            pop_fut_cancel(r, &f);
            waker_retire(fw, FW_RETIRED);
            pop_fut_cancel(r, &f); /* idempotent */
            CHECK(ap_waitop_status(op) == AP_CANCELED, "cancelled pop future has status %s",
                  ap_status_str(ap_waitop_status(op)));
            CHECK(pop_fut_poll(r, &f, &cx) == AP_READY && ap_waitop_status(op) == AP_CANCELED,
                  "a cancelled future must poll READY with AP_CANCELED, got %s",
                  ap_status_str(ap_waitop_status(op)));
            return AP_CANCELED;
        }
    }
    }
    return AP_INVAL;
}

static void *consumer_main(void *arg)
{
    async_worker *w = (async_worker *)arg;
    async_run *r = w->r;
    ckind kind = r->cfg.ck[w->id];
    stress_fifo fifo;
    unsigned misses = 0;
    uint64_t timeouts = 0, cancels = 0;
    stress_fifo_init(&fifo, r->cfg.producers);
    pthread_barrier_wait(&r->barrier);
    for (;;) {
        stress_elem e = {STRESS_NONE, 0};
        ap_status st = consume_one(w, kind, &e);
        if (st == AP_OK) {
            stress_ledger_take(&r->ledger, &fifo, &e, w->id);
            if (r->cfg.slow_consumers && stress_below(&w->rng, 4) == 0)
                stress_sleep_us(10 + stress_below(&w->rng, 90));
            else
                stress_jitter(&w->rng);
            continue;
        }
        CHECK(e.item == STRESS_NONE, "consumer %u (%s): pop returned %s but wrote the output",
              w->id, ckind_name[kind], ap_status_str(st));
        if (st == AP_CLOSED) {
            STRESS_STORE(&r->cstate[w->id], CS_CLOSED);
            break;
        }
        CHECK(st == AP_TIMEDOUT || st == AP_CANCELED, "consumer %u (%s): pop returned %s",
              w->id, ckind_name[kind], ap_status_str(st));
        if (st == AP_TIMEDOUT)
            timeouts++;
        else
            cancels++;
        if (r->cfg.budget && ++misses >= r->cfg.budget) {
            STRESS_STORE(&r->cstate[w->id], CS_QUIT);
            break;
        }
    }
    stress_fifo_free(&fifo);
    STRESS_ADD(&r->pop_timeouts, timeouts);
    STRESS_ADD(&r->pop_cancels, cancels);
    return NULL;
}

/* ---- producers ---- */

/* Push one element in this producer's way: AP_OK, AP_CLOSED, or AP_TIMEDOUT
 * when a deadline producer used up its budget (it keeps the element). */
static ap_status produce_one(async_worker *w, pkind kind, const stress_elem *e,
                             unsigned *misses)
{
    async_run *r = w->r;
    push_fut f;
    unsigned fails = 0;
    for (;;) {
        ap_status st;
        switch (kind) {
        case P_TRY:
            st = q_try_push(r, e);
            if (st == AP_FULL || st == AP_AGAIN) {
                stress_backoff(&fails, &w->rng);
                continue;
            }
            return st;
        case P_WAIT:
            return q_push_wait(r, e, AP_DEADLINE_NONE);
        case P_FUT: {
            ap_waitop *op = push_fut_init(r, &f, e);
            ap_block_on(&op->base);
            return ap_waitop_status(op);
        }
        case P_DEADLINE:
            if (stress_below(&w->rng, 2)) {
                st = q_push_wait(r, e, short_deadline(&w->rng));
            } else {
                ap_waitop *op = push_fut_init(r, &f, e);
                st = ap_block_on_until(&op->base, short_deadline(&w->rng));
                if (st == AP_OK)
                    st = ap_waitop_status(op);
                else
                    CHECK(ap_waitop_status(op) == AP_CANCELED,
                          "timed-out push future has status %s",
                          ap_status_str(ap_waitop_status(op)));
            }
            if (st != AP_TIMEDOUT)
                return st;
            STRESS_ADD(&r->push_timeouts, 1);
            if (r->cfg.budget && ++*misses >= r->cfg.budget)
                return AP_TIMEDOUT;
            continue; /* retry the same element */
        }
    }
}

static void *producer_main(void *arg)
{
    async_worker *w = (async_worker *)arg;
    async_run *r = w->r;
    pkind kind = r->cfg.pk[w->id];
    unsigned misses = 0;
    size_t burst = 0;
    pthread_barrier_wait(&r->barrier);
    for (size_t seq = 0; seq < r->per_producer; seq++) {
        stress_elem e = stress_make(w->id, seq);
        ap_status st = produce_one(w, kind, &e, &misses);
        if (st == AP_CLOSED) {
            CHECK(r->cfg.close_mode == CLOSE_MIDSTREAM,
                  "producer %u (%s): push returned AP_CLOSED before close", w->id,
                  pkind_name[kind]);
            break;
        }
        if (st == AP_TIMEDOUT) {
            STRESS_ADD(&r->producers_quit, 1);
            break;
        }
        CHECK(st == AP_OK, "producer %u (%s): push returned %s", w->id, pkind_name[kind],
              ap_status_str(st));
        stress_ledger_pushed(&r->ledger, e.item);
        if (r->cfg.pace == PACE_LOCKSTEP) {
            /* single producer: wait until this item was consumed */
            uint64_t t0 = ap_now_ns(), stall = (uint64_t)stress_g.timeout_s * AP_NS_PER_SEC / 3;
            /* half the time spin, so the next push races with the consumer
             * that is just going back to wait (register vs. re-check) */
            bool spin = stress_below(&w->rng, 2);
            unsigned fails = 0;
            while (STRESS_LOAD(&r->ledger.received) < seq + 1) {
                if (spin && fails < 2000) {
                    fails++;
                    if (fails % 64 == 0)
                        sched_yield();
                    else
                        AP_CPU_RELAX();
                } else {
                    stress_sleep_us(20);
                }
                if (ap_now_ns() - t0 > stall) {
                    fprintf(stderr, "  lockstep: item %zu pushed %" PRIu64
                                    " ms ago and still not consumed\n",
                            seq, (ap_now_ns() - t0) / AP_NS_PER_MS);
                    CHECK(false, "LOST WAKEUP: item seq %zu sits in the queue (len %zu) while "
                                 "%zu consumer(s) are registered waiters",
                          seq, q_len(r), q_waiters(r, true));
                }
            }
            uint32_t pause = stress_below(&w->rng, 8);
            if (pause == 0)
                stress_sleep_us(stress_below(&w->rng, 150));
            else if (pause == 1)
                stress_jitter(&w->rng);
        } else if (r->cfg.pace == PACE_BURST) {
            if (burst == 0)
                burst = 1 + stress_below(&w->rng, (uint32_t)(2 * r->cfg.capacity + 1));
            if (--burst == 0)
                stress_sleep_us(20 + stress_below(&w->rng, 200));
        } else {
            stress_jitter(&w->rng);
        }
    }
    return NULL;
}

/* ---- scenarios ---- */

static void async_diag(void *arg)
{
    async_run *r = (async_run *)arg;
    fprintf(stderr,
            "    %s cap %zu: received %zu of up to %zu; len %zu, closed %d, waiters: pop %zu "
            "push %zu; producers quit %u\n    consumers:",
            r->cfg.spsc ? "spsc" : "mpmc", r->cfg.capacity, STRESS_LOAD(&r->ledger.received),
            (size_t)r->cfg.producers * r->per_producer, q_len(r), (int)q_closed(r),
            q_waiters(r, true), q_waiters(r, false), STRESS_LOAD(&r->producers_quit));
    for (unsigned i = 0; i < r->cfg.consumers; i++) {
        unsigned s = STRESS_LOAD(&r->cstate[i]);
        fprintf(stderr, " %u:%s/%s", i, ckind_name[r->cfg.ck[i]],
                s == CS_RUNNING ? "running" : s == CS_QUIT ? "quit" : "closed");
    }
    fprintf(stderr, "\n");
    (void)stress_ledger_report(&r->ledger, false, 10);
}

static void async_queue_init(async_run *r)
{
    size_t cap = r->cfg.capacity;
    ap_status st;
    if (r->cfg.spsc) {
        r->start = r->cfg.wrap ? SIZE_MAX - r->cfg.items / 2 : 0; /* positions run modulo 2^64 */
        r->buf = malloc(AP_SPSC_BYTES(cap, sizeof(stress_elem)));
        CHECK(r->buf != NULL, "out of memory");
        st = ap__spsc_init_at(&r->sq, r->buf, AP_SPSC_BYTES(cap, sizeof(stress_elem)), cap, sizeof(stress_elem), r->start);
    } else {
        size_t laps = r->cfg.items / cap;
        r->start = r->cfg.wrap ? (size_t)0 - (laps / 2 + 1) * stress_mpmc_one_lap(cap) : 0;
        r->buf = aligned_alloc(64, ap__align_up(AP_MPMC_BYTES(cap, sizeof(stress_elem)), 64));
        CHECK(r->buf != NULL, "out of memory");
        st = ap__mpmc_init_at(&r->mq, r->buf, AP_MPMC_BYTES(cap, sizeof(stress_elem)), cap, sizeof(stress_elem), r->start);
    }
    CHECK(st == AP_OK, "queue init: %s", ap_status_str(st));
}

static void async_queue_fini(async_run *r)
{
    if (r->cfg.spsc)
        ap_spsc_fini(&r->sq);
    else
        ap_mpmc_fini(&r->mq);
    free(r->buf);
    r->buf = NULL;
}

static void describe(const async_cfg *c, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s cap=%zu P=", c->spsc ? "spsc" : "mpmc", c->capacity);
    for (unsigned i = 0; i < c->producers && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? "," : "", pkind_name[c->pk[i]]);
    if (k < n)
        k += (size_t)snprintf(buf + k, n - k, " C=");
    for (unsigned i = 0; i < c->consumers && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? "," : "", ckind_name[c->ck[i]]);
    if (c->wrap && k < n)
        snprintf(buf + k, n - k, " wrap");
}

static void run_async(const char *name, const async_cfg *cfg)
{
    char desc[160];
    async_run *r = (async_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    describe(cfg, desc, sizeof desc);
    if (!stress_begin("%s %s", name, desc)) {
        free(r);
        return;
    }
    r->cfg = *cfg;
    CHECK(cfg->producers <= MAXT && cfg->consumers <= MAXT && cfg->producers > 0 &&
              cfg->consumers > 0,
          "bad scenario");
    CHECK(!cfg->spsc || (cfg->producers == 1 && cfg->consumers == 1), "spsc is 1x1");
    r->per_producer = (cfg->items + cfg->producers - 1) / cfg->producers;
    stress_ledger_init(&r->ledger, cfg->producers, r->per_producer);
    async_queue_init(r);

    unsigned n = cfg->producers + cfg->consumers;
    async_worker *w = (async_worker *)calloc(n, sizeof *w);
    CHECK(w != NULL, "out of memory");
    pthread_barrier_init(&r->barrier, NULL, n + 1);
    for (unsigned c = 0; c < cfg->consumers; c++)
        atomic_init(&r->cstate[c], CS_RUNNING);
    stress_diag(async_diag, r);
    for (unsigned i = 0; i < n; i++) {
        bool prod = i < cfg->producers;
        worker_init(&w[i], r, prod ? i : i - cfg->producers, stress_thread_seed(i));
        stress_spawn(&w[i].thread, prod ? producer_main : consumer_main, &w[i]);
    }
    pthread_barrier_wait(&r->barrier);
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(777), 0);

    if (cfg->close_mode == CLOSE_MIDSTREAM) {
        size_t when = stress_below(&rng, (uint32_t)(cfg->items * 3 / 4));
        while (STRESS_LOAD(&r->ledger.received) < when)
            stress_sleep_us(50);
        q_close(r);
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
    } else {
        for (unsigned i = 0; i < cfg->producers; i++)
            stress_join(w[i].thread);
        size_t pushed = 0;
        for (size_t i = 0; i < (size_t)cfg->producers * r->per_producer; i++)
            pushed += STRESS_LOAD(&r->ledger.pushed[i]);
        /* every item pushed must be consumed before close: close would wake
         * a consumer that missed its wakeup and hide the bug */
        stress_wait_received(&r->ledger, pushed);
        /* mostly let the consumers park first, sometimes close at once */
        if (stress_below(&rng, 4) != 0) {
            for (int i = 0; i < 2000; i++) {
                size_t active = 0;
                for (unsigned c = 0; c < cfg->consumers; c++)
                    active += STRESS_LOAD(&r->cstate[c]) == CS_RUNNING;
                if (q_waiters(r, true) >= active)
                    break;
                stress_sleep_us(100);
            }
        }
        q_close(r);
        for (unsigned i = cfg->producers; i < n; i++)
            stress_join(w[i].thread);
    }

    unsigned quit = 0;
    for (unsigned c = 0; c < cfg->consumers; c++) {
        unsigned s = STRESS_LOAD(&r->cstate[c]);
        CHECK(s == CS_CLOSED || (s == CS_QUIT && cfg->budget),
              "consumer %u (%s) ended in state %u, not AP_CLOSED", c, ckind_name[cfg->ck[c]],
              s);
        quit += s == CS_QUIT;
    }
    CHECK(quit < cfg->consumers, "every consumer quit");
    stress_elem e = {STRESS_NONE, 0};
    ap_status st = q_try_pop(r, &e);
    CHECK(st == AP_CLOSED && e.item == STRESS_NONE, "try_pop after the end: %s",
          ap_status_str(st));
    CHECK(q_waiters(r, true) == 0 && q_waiters(r, false) == 0,
          "waiters left linked: pop %zu push %zu", q_waiters(r, true), q_waiters(r, false));
    stress_ledger_verify(&r->ledger, false);
    size_t received = STRESS_LOAD(&r->ledger.received);
    if (cfg->wrap && cfg->close_mode == CLOSE_AFTER &&
        received == (size_t)cfg->producers * r->per_producer) {
        size_t head = cfg->spsc ? atomic_load(&r->sq.head) : atomic_load(&r->mq.head);
        CHECK(head < r->start, "positions did not wrap: start %#zx head %#zx", r->start, head);
    }
    pthread_barrier_destroy(&r->barrier);
    stress_end("items=%zu pop-timeouts=%" PRIu64 " pop-cancels=%" PRIu64
               " push-timeouts=%" PRIu64 " quit=%u+%u stale-wakes=%" PRIu64,
               received, STRESS_LOAD(&r->pop_timeouts), STRESS_LOAD(&r->pop_cancels),
               STRESS_LOAD(&r->push_timeouts), quit, STRESS_LOAD(&r->producers_quit),
               STRESS_LOAD(&r->stale_wakes));
    async_queue_fini(r);
    free(w);
    stress_ledger_free(&r->ledger);
    free(r);
}

/*
 * close-empty / close-full: rounds of waiters parked on an empty (full)
 * queue, then close. Every waiter must come back with AP_CLOSED; on the full
 * queue, the elements pushed before close must drain exactly.
 */
static void run_close_rounds(bool full, bool spsc, size_t capacity, unsigned waiters,
                             unsigned rounds)
{
    async_run *r = (async_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("close-%s %s cap=%zu waiters=%u rounds=%u",
                      full ? "full" : "empty", spsc ? "spsc" : "mpmc", capacity, waiters,
                      rounds)) {
        free(r);
        return;
    }
    uint64_t parked_at_close = 0, items = 0;
    for (unsigned round = 0; round < rounds; round++) {
        async_cfg *c = &r->cfg;
        memset(c, 0, sizeof *c);
        c->spsc = spsc;
        c->capacity = capacity;
        c->wrap = round & 1;
        c->items = capacity * 4;
        c->close_mode = CLOSE_MIDSTREAM; /* producers may meet AP_CLOSED */
        if (full) {
            c->producers = waiters;
            c->consumers = 1; /* for the ledger; it is the main thread */
            for (unsigned i = 0; i < waiters; i++)
                c->pk[i] = (pkind)(P_WAIT + (i + round) % 3);
        } else {
            c->producers = 1;
            c->consumers = waiters;
            for (unsigned i = 0; i < waiters; i++)
                c->ck[i] = (ckind)((i + round) % 4); /* wait, fut, poll, deadline */
        }
        r->per_producer = full ? capacity + 1 : 1;
        stress_ledger_init(&r->ledger, c->producers, r->per_producer);
        async_queue_init(r);
        unsigned n = waiters;
        async_worker *w = (async_worker *)calloc(n, sizeof *w);
        CHECK(w != NULL, "out of memory");
        pthread_barrier_init(&r->barrier, NULL, n + 1);
        for (unsigned i = 0; i < n; i++)
            atomic_init(&r->cstate[i], CS_RUNNING);
        stress_diag(async_diag, r);
        for (unsigned i = 0; i < n; i++) {
            worker_init(&w[i], r, i, stress_thread_seed(round * 64 + i));
            stress_spawn(&w[i].thread, full ? producer_main : consumer_main, &w[i]);
        }
        pthread_barrier_wait(&r->barrier);
        stress_rng rng;
        stress_rng_init(&rng, stress_thread_seed(round * 64 + 63), 0);
        /* a third of the rounds close at once, racing with registration */
        if (round % 3 != 0) {
            for (int i = 0; i < 3000 && q_waiters(r, !full) < waiters; i++)
                stress_sleep_us(100);
        }
        size_t parked = q_waiters(r, !full);
        parked_at_close += parked;
        q_close(r);
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
        if (full) {
            /* drain on the main thread: exactly what was pushed with AP_OK */
            stress_fifo fifo;
            stress_fifo_init(&fifo, c->producers);
            for (;;) {
                stress_elem e = {STRESS_NONE, 0};
                ap_status st = q_try_pop(r, &e);
                if (st == AP_CLOSED)
                    break;
                CHECK(st == AP_OK, "drain after close: %s", ap_status_str(st));
                stress_ledger_take(&r->ledger, &fifo, &e, 0);
            }
            stress_fifo_free(&fifo);
            /* with every producer parked the queue was full at close */
            size_t drained = STRESS_LOAD(&r->ledger.received);
            CHECK(drained <= capacity && (parked < waiters || drained == capacity),
                  "round %u: a queue of capacity %zu with %zu of %u producers parked on it "
                  "drained %zu elements after close",
                  round, capacity, parked, waiters, drained);
        } else {
            for (unsigned i = 0; i < n; i++)
                CHECK(STRESS_LOAD(&r->cstate[i]) == CS_CLOSED,
                      "round %u: consumer %u (%s) did not end with AP_CLOSED", round, i,
                      ckind_name[c->ck[i]]);
        }
        CHECK(q_waiters(r, true) == 0 && q_waiters(r, false) == 0,
              "round %u: waiters left linked after close", round);
        stress_ledger_verify(&r->ledger, false);
        items += STRESS_LOAD(&r->ledger.received);
        stress_diag(NULL, NULL);
        pthread_barrier_destroy(&r->barrier);
        async_queue_fini(r);
        stress_ledger_free(&r->ledger);
        free(w);
    }
    stress_end("parked-at-close=%" PRIu64 " of %u drained=%" PRIu64, parked_at_close,
               waiters * rounds, items);
    free(r);
}

/*
 * handoff-pop / handoff-push: a woken future that cancels must pass its
 * wake on (future.h contract 6), checked deterministically. Per round:
 * a canceller K registers first, then a reliable waiter R (wait, fut or
 * poll in turn); the main thread makes one unit of progress (a push into
 * the empty queue, or a pop from the full one), which wakes the head of the
 * FIFO: K. K cancels without polling again and leaves. The wake must reach
 * R, which completes; if the hand-off is lost, R sleeps while the item (or
 * the free slot) waits, and that is reported after a stall.
 */
typedef struct handoff_k {
    async_run *r;
    bool push_side;
    _Atomic unsigned done; /* 1: woken and cancelled */
    flag_waker waker;      /* outlives the thread: a late call is caught */
    pthread_t thread;
} handoff_k;

static void *handoff_k_main(void *arg)
{
    handoff_k *k = (handoff_k *)arg;
    async_run *r = k->r;
    flag_waker *fw = &k->waker;
    ap_cx cx;
    pop_fut pf;
    push_fut uf;
    stress_elem out = {STRESS_NONE, 0}, mine = stress_make(1, 0);
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(555), 0);
    cx.waker.wake = flag_wake;
    cx.waker.ctx = fw;
    cx.now = ap_now_ns();
    cx.deadline = AP_DEADLINE_NONE;
    ap_waitop *op = k->push_side ? push_fut_init(r, &uf, &mine) : pop_fut_init(r, &pf, &out);
    ap_poll p = k->push_side ? (r->cfg.spsc ? ap_spsc_push_poll(&uf.s, &cx)
                                            : ap_mpmc_push_poll(&uf.m, &cx))
                             : pop_fut_poll(r, &pf, &cx);
    CHECK(p == AP_PENDING, "handoff: the canceller's first poll completed (%s)",
          ap_status_str(ap_waitop_status(op)));
    unsigned fails = 0;
    while (STRESS_LOAD(&fw->flag) == 0)
        stress_backoff(&fails, &rng);
    /* woken: cancel instead of polling again */
    if (k->push_side) {
        if (r->cfg.spsc)
            ap_spsc_push_cancel(&uf.s);
        else
            ap_mpmc_push_cancel(&uf.m);
    } else {
        pop_fut_cancel(r, &pf);
    }
    waker_retire(fw, FW_RETIRED);
    CHECK(ap_waitop_status(op) == AP_CANCELED && out.item == STRESS_NONE,
          "handoff: cancelled future has status %s", ap_status_str(ap_waitop_status(op)));
    STRESS_STORE(&k->done, 1u);
    return NULL;
}

/* Wait for *flag (relaxed) to become nonzero; a stall is a lost wakeup. */
static void handoff_wait(async_run *r, _Atomic unsigned *flag, const char *what, unsigned round)
{
    uint64_t t0 = ap_now_ns(), stall = (uint64_t)stress_g.timeout_s * AP_NS_PER_SEC / 3;
    while (STRESS_LOAD(flag) == 0) {
        stress_sleep_us(20);
        CHECK(ap_now_ns() - t0 < stall,
              "LOST WAKEUP round %u: %s (waiting %" PRIu64 " ms; queue len %zu, waiters pop %zu "
              "push %zu)",
              round, what, (ap_now_ns() - t0) / AP_NS_PER_MS, q_len(r), q_waiters(r, true),
              q_waiters(r, false));
    }
}

static void wait_waiters(async_run *r, bool pop_side, size_t n, unsigned round)
{
    uint64_t t0 = ap_now_ns(), stall = (uint64_t)stress_g.timeout_s * AP_NS_PER_SEC / 3;
    while (q_waiters(r, pop_side) < n) {
        stress_sleep_us(20);
        CHECK(ap_now_ns() - t0 < stall, "round %u: %zu waiter(s) never registered", round, n);
    }
}

static void run_handoff(bool push_side, unsigned rounds)
{
    async_run *r = (async_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("handoff-%s mpmc cap=1 rounds=%u", push_side ? "push" : "pop", rounds)) {
        free(r);
        return;
    }
    for (unsigned round = 0; round < rounds; round++) {
        async_cfg *c = &r->cfg;
        memset(c, 0, sizeof *c);
        c->capacity = 1;
        c->wrap = round & 1;
        c->items = 8;
        c->close_mode = CLOSE_MIDSTREAM;
        /* producers: 0 = the main thread, 1 = K (push side), 2 = R (push side) */
        c->producers = 3;
        c->consumers = 1;
        c->pk[2] = (pkind)(P_WAIT + round % 2); /* wait, fut */
        c->ck[0] = (ckind)(round % 3);          /* wait, fut, poll */
        r->per_producer = 1;
        stress_ledger_init(&r->ledger, c->producers, r->per_producer);
        async_queue_init(r);
        atomic_init(&r->cstate[0], CS_RUNNING);
        handoff_k k = {.r = r, .push_side = push_side};
        atomic_init(&k.done, 0u);
        atomic_init(&k.waker.flag, 0u);
        atomic_init(&k.waker.state, FW_LIVE);
        k.waker.stale_calls = &r->stale_wakes;
        async_worker rw;
        worker_init(&rw, r, push_side ? 2 : 0, stress_thread_seed(round * 64 + 1));
        pthread_barrier_init(&r->barrier, NULL, 2);
        stress_diag(async_diag, r);
        stress_fifo fifo;
        stress_fifo_init(&fifo, c->producers);
        stress_elem e = stress_make(0, 0);

        if (push_side) {
            /* fill the queue, then park K and then R on it */
            CHECK(q_try_push(r, &e) == AP_OK, "fill");
            stress_ledger_pushed(&r->ledger, e.item);
        }
        stress_spawn(&k.thread, handoff_k_main, &k);
        wait_waiters(r, !push_side, 1, round);
        stress_spawn(&rw.thread, push_side ? producer_main : consumer_main, &rw);
        pthread_barrier_wait(&r->barrier);
        wait_waiters(r, !push_side, 2, round);
        if (push_side) {
            stress_elem out = {STRESS_NONE, 0};
            CHECK(q_try_pop(r, &out) == AP_OK, "pop from the full queue");
            stress_ledger_take(&r->ledger, &fifo, &out, 0);
        } else {
            CHECK(q_try_push(r, &e) == AP_OK, "push into the empty queue");
            stress_ledger_pushed(&r->ledger, e.item);
        }
        handoff_wait(r, &k.done, "the canceller was never woken", round);
        stress_join(k.thread);
        if (push_side) {
            /* R must have been handed the free slot and pushed */
            stress_join(rw.thread);
            stress_elem out = {STRESS_NONE, 0};
            CHECK(q_try_pop(r, &out) == AP_OK, "round %u: R's element is not in the queue",
                  round);
            stress_ledger_take(&r->ledger, &fifo, &out, 0);
            q_close(r);
        } else {
            /* R must have been handed the wake and taken the item */
            uint64_t t0 = ap_now_ns(), stall = (uint64_t)stress_g.timeout_s * AP_NS_PER_SEC / 3;
            while (STRESS_LOAD(&r->ledger.received) < 1) {
                stress_sleep_us(20);
                CHECK(ap_now_ns() - t0 < stall,
                      "LOST WAKEUP round %u: a woken pop future cancelled and its wake was not "
                      "passed on: the item stays in the queue (len %zu) while the %s consumer "
                      "sleeps (pop waiters %zu)",
                      round, q_len(r), ckind_name[c->ck[0]], q_waiters(r, true));
            }
            q_close(r);
            stress_join(rw.thread);
            CHECK(STRESS_LOAD(&r->cstate[0]) == CS_CLOSED, "R did not end with AP_CLOSED");
        }
        stress_fifo_free(&fifo);
        stress_ledger_verify(&r->ledger, false);
        CHECK(STRESS_LOAD(&r->ledger.received) == (push_side ? 2u : 1u), "round %u: count",
              round);
        stress_diag(NULL, NULL);
        pthread_barrier_destroy(&r->barrier);
        async_queue_fini(r);
        stress_ledger_free(&r->ledger);
    }
    stress_end("rounds=%u", rounds);
    free(r);
}

#define P(...) .producers = sizeof((pkind[]){__VA_ARGS__}) / sizeof(pkind), .pk = {__VA_ARGS__}
#define C(...) .consumers = sizeof((ckind[]){__VA_ARGS__}) / sizeof(ckind), .ck = {__VA_ARGS__}

int main(int argc, char **argv)
{
    stress_init(argc, argv, STRESS_ASYNC_NAME);
    const double share = STRESS_ASYNC_SHARE;
    size_t few = stress_iters((size_t)(2000 * share), 20);
    size_t some = stress_iters((size_t)(8000 * share), 50);

    /* MPMC: parked consumers woken by pushes */
    for (int k = 0; k < 3; k++) /* one consumer: no other waiter can cover a lost wake */
        run_async("wake-lockstep", &(async_cfg){.capacity = k + 1, .wrap = k == 1,
                                                .producers = 1, .pk = {(pkind)(k % 2)},
                                                .consumers = 1, .ck = {(ckind)k}, .items = few,
                                                .pace = PACE_LOCKSTEP});
    run_async("wake-lockstep", &(async_cfg){.capacity = 1, P(P_TRY),
                                            C(C_WAIT, C_FUT, C_POLL, C_WAIT), .items = few,
                                            .pace = PACE_LOCKSTEP});
    run_async("wake-lockstep", &(async_cfg){.capacity = 64, .wrap = true, P(P_WAIT),
                                            C(C_POLL, C_FUT, C_WAIT), .items = few,
                                            .pace = PACE_LOCKSTEP});
    run_async("wake-burst", &(async_cfg){.capacity = 2, P(P_TRY, P_WAIT),
                                         C(C_WAIT, C_FUT, C_POLL, C_FUT), .items = some,
                                         .pace = PACE_BURST});
    run_async("wake-burst", &(async_cfg){.capacity = 64, .wrap = true, P(P_FUT, P_TRY, P_WAIT),
                                         C(C_WAIT, C_POLL, C_FUT, C_WAIT, C_FUT), .items = some,
                                         .pace = PACE_BURST});
    /* producers parked on a full queue, woken by pops */
    run_async("blocked-push", &(async_cfg){.capacity = 1, P(P_WAIT, P_FUT, P_WAIT, P_FUT),
                                           C(C_WAIT, C_FUT), .items = some,
                                           .slow_consumers = true});
    run_async("blocked-push", &(async_cfg){.capacity = 2, .wrap = true,
                                           P(P_WAIT, P_WAIT, P_FUT, P_TRY), C(C_POLL),
                                           .items = some, .slow_consumers = true});
    /* cancellation racing with pushes */
    run_async("cancel-pop", &(async_cfg){.capacity = 1, P(P_TRY),
                                         C(C_WAIT, C_DEADLINE, C_CANCEL, C_DEADLINE, C_CANCEL),
                                         .items = few, .pace = PACE_LOCKSTEP, .budget = 40});
    run_async("cancel-pop", &(async_cfg){.capacity = 4, P(P_TRY, P_WAIT),
                                         C(C_FUT, C_DEADLINE, C_CANCEL, C_DEADLINE, C_POLL),
                                         .items = some, .pace = PACE_BURST, .budget = 200});
    run_async("cancel-pop", &(async_cfg){.capacity = 3, .wrap = true, P(P_DEADLINE, P_TRY),
                                         C(C_DEADLINE, C_DEADLINE, C_CANCEL),
                                         .items = some, .pace = PACE_BURST});
    run_async("cancel-push", &(async_cfg){.capacity = 1,
                                          P(P_DEADLINE, P_DEADLINE, P_WAIT, P_DEADLINE),
                                          C(C_WAIT, C_FUT), .items = some,
                                          .slow_consumers = true, .budget = 60});
    run_async("cancel-push", &(async_cfg){.capacity = 2, .wrap = true,
                                          P(P_DEADLINE, P_FUT, P_DEADLINE),
                                          C(C_DEADLINE, C_POLL), .items = some,
                                          .slow_consumers = true});
    /* close while everybody is busy */
    run_async("close-midstream", &(async_cfg){.capacity = 1,
                                              P(P_WAIT, P_DEADLINE, P_TRY, P_FUT),
                                              C(C_WAIT, C_FUT, C_POLL, C_DEADLINE),
                                              .items = some, .close_mode = CLOSE_MIDSTREAM});
    run_async("close-midstream", &(async_cfg){.capacity = 8, .wrap = true,
                                              P(P_WAIT, P_FUT), C(C_CANCEL, C_WAIT, C_POLL),
                                              .items = some, .pace = PACE_BURST,
                                              .close_mode = CLOSE_MIDSTREAM});

    /* SPSC: one producer, one consumer, every waiting style */
    for (int k = 0; k < 4; k++) {
        static const ckind ck[] = {C_WAIT, C_FUT, C_POLL, C_DEADLINE};
        static const pkind pk[] = {P_WAIT, P_TRY, P_FUT, P_DEADLINE};
        run_async("wake-lockstep", &(async_cfg){.spsc = true, .capacity = k == 3 ? 3 : 1,
                                                .wrap = k & 1, .producers = 1, .pk = {pk[k]},
                                                .consumers = 1, .ck = {ck[k]}, .items = few,
                                                .pace = PACE_LOCKSTEP});
        run_async("blocked-push", &(async_cfg){.spsc = true, .capacity = k == 2 ? 1 : 2,
                                               .wrap = !(k & 1), .producers = 1,
                                               .pk = {pk[(k + 1) % 4]}, .consumers = 1,
                                               .ck = {ck[(k + 2) % 4]}, .items = some,
                                               .slow_consumers = true});
    }
    run_async("cancel-both", &(async_cfg){.spsc = true, .capacity = 1, P(P_DEADLINE),
                                          C(C_DEADLINE), .items = some, .pace = PACE_BURST});
    run_async("cancel-both", &(async_cfg){.spsc = true, .capacity = 2, .wrap = true,
                                          P(P_DEADLINE), C(C_CANCEL), .items = some});
    run_async("close-midstream", &(async_cfg){.spsc = true, .capacity = 2, P(P_WAIT),
                                              C(C_POLL), .items = some,
                                              .close_mode = CLOSE_MIDSTREAM});

    /* close wakes every parked waiter */
    unsigned rounds = (unsigned)stress_iters((size_t)(50 * share), 3);
    run_close_rounds(false, false, 4, 8, rounds);
    run_close_rounds(true, false, 1, 6, rounds);
    run_close_rounds(true, false, 2, 6, rounds);
    run_close_rounds(false, true, 2, 1, rounds);
    run_close_rounds(true, true, 1, 1, rounds);

    /* a woken waiter that cancels passes its wake on */
    unsigned hrounds = (unsigned)stress_iters((size_t)(150 * share), 5);
    run_handoff(false, hrounds);
    run_handoff(true, hrounds);
    return stress_finish();
}
