/*
 * verify_grant.c -- the grant queue of waitlist.h (ap_grant) under every
 * interleaving within the preemption bound (SC and x86-TSO)
 *
 * The primitive here is the smallest one ap_grant serves: a count of units
 * in one atomic word (units * 2 | CLOSED), a fast path that takes units
 * only while nobody is queued, a release that publishes with an AP__PUB_MO
 * RMW and then runs a grant pass if ap_waitlist_parked says somebody may
 * wait (THE LADDER), and a request future that is ap_grant_poll /
 * ap_grant_cancel and nothing else. semaphore.h, pool.h and connpool.h
 * build on the same calls; their own scenarios are verify_sync.c,
 * verify_pool.c and verify_connpool.c. Claims:
 *
 *   conserved    a unit is held by at most one thread at a time (checked
 *                after every step), and at the end every unit is back in
 *                the count: none lost (a cancelled grant that was not
 *                given back, a grant that close dropped) and none made
 *                (a request granted twice)
 *   no lost wake every request that waits completes (vf_wait parks until
 *                its waker runs: a lost wakeup is a deadlock the scheduler
 *                reports)
 *   cancel       a request that polls once and cancels gives back a grant
 *                that reached it, and it goes on to the others
 *   close        a request completes AP_OK (granted before close: it holds
 *                its unit) or AP_CLOSED; nobody is left queued
 */
#include "vf.h"
#include "asyncpat/waitlist.h"

#define GQ_CLOSED ((size_t)1)
#define GQ_ONE ((size_t)2)

typedef struct gq {
    AP_ATOMIC_T(size_t) state; /* units * GQ_ONE | GQ_CLOSED */
    ap_waitlist wl;
    int held;      /* units held by threads (plain: one OS thread) */
    int done;      /* threads finished */
    int oks;       /* requests that completed AP_OK */
    int total;     /* units at setup */
} gq;

typedef struct gq_fut {
    ap_future base;
    gq *q;
    ap_grant g;
    ap_status status;
} gq_fut;

static const ap_grant_ops *gq_ops(void);

/* ---- the primitive ---- */

static bool gq_grant(void *obj, ap_grant *g, void *ctx)
{
    gq *q = (gq *)obj;
    (void)g, (void)ctx;
    size_t st = AP_ATOMIC_LOAD(&q->state, memory_order_seq_cst);
    for (;;) {
        if ((st & GQ_CLOSED) || st < GQ_ONE)
            return false;
        if (AP_ATOMIC_CAS_WEAK(&q->state, &st, st - GQ_ONE, memory_order_acquire,
                               memory_order_relaxed))
            return true;
    }
}

static bool gq_can_serve(void *obj, void *ctx)
{
    size_t st = AP_ATOMIC_LOAD(&((gq *)obj)->state, AP__CHECK_MO);
    (void)ctx;
    return st >= GQ_ONE && !(st & GQ_CLOSED);
}

static bool gq_closed(void *obj)
{
    return (AP_ATOMIC_LOAD(&((gq *)obj)->state, memory_order_seq_cst) & GQ_CLOSED) != 0;
}

static void gq_release(gq *q)
{
    (void)AP_ATOMIC_FETCH_ADD(&q->state, GQ_ONE, AP__PUB_MO);
    if (ap_waitlist_parked(&q->wl))
        (void)ap_grant_serve(&q->wl, gq_ops(), q, NULL);
}

static void gq_give_back(void *obj, ap_grant *g)
{
    (void)g;
    gq_release((gq *)obj);
}

static const ap_grant_ops *gq_ops(void)
{
    static const ap_grant_ops ops = {gq_grant, gq_can_serve, gq_closed, gq_give_back};
    return &ops;
}

/* the fast path: a unit now, never past a queued request */
static ap_status gq_try(gq *q)
{
    size_t st = AP_ATOMIC_LOAD(&q->state, memory_order_relaxed);
    for (;;) {
        if (st & GQ_CLOSED)
            return AP_CLOSED;
        if (AP_ATOMIC_LOAD(&q->wl.count, memory_order_relaxed) != 0 || st < GQ_ONE)
            return AP_EMPTY;
        if (AP_ATOMIC_CAS_WEAK(&q->state, &st, st - GQ_ONE, memory_order_acquire,
                               memory_order_relaxed))
            return AP_OK;
    }
}

static void gq_close(gq *q)
{
    (void)AP_ATOMIC_FETCH_OR(&q->state, GQ_CLOSED, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&q->wl);
}

static ap_poll gq_poll(ap_future *base, ap_cx *cx)
{
    gq_fut *f = (gq_fut *)(void *)base;
    if (f->status != AP_NOT_READY)
        return AP_READY;
    if (!f->g.queued) {
        ap_status st = gq_try(f->q);
        if (st != AP_EMPTY) {
            f->status = st;
            return AP_READY;
        }
    }
    ap_status st = ap_grant_poll(&f->q->wl, gq_ops(), f->q, &f->g, cx);
    if (st == AP_NOT_READY)
        return AP_PENDING;
    f->status = st;
    return AP_READY;
}

static void gq_cancel(ap_future *base)
{
    gq_fut *f = (gq_fut *)(void *)base;
    if (f->status != AP_NOT_READY)
        return;
    ap_grant_cancel(&f->q->wl, gq_ops(), f->q, &f->g);
    f->status = AP_CANCELED;
}

static void gq_fut_init(gq_fut *f, gq *q)
{
    f->base.poll = gq_poll;
    f->base.cancel = gq_cancel;
    f->q = q;
    ap_grant_init(&f->g);
    f->status = AP_NOT_READY;
}

/* ---- the scenarios ---- */

static int gq_units, gq_threads;

static void *gq_setup(void)
{
    gq *q = calloc(1, sizeof *q);
    AP_ATOMIC_INIT(&q->state, (size_t)gq_units * GQ_ONE);
    ap_waitlist_init(&q->wl);
    q->total = gq_units;
    return q;
}

static void gq_teardown(void *p) { free(p); }

/* hold the unit across a yield, then give it back */
static void gq_hold(gq *q)
{
    q->held++;
    vf_yield();
    q->held--;
    gq_release(q);
}

/* wait for one unit (thread 0 tries the fast path first), hold, release */
static void gq_thread(void *p, int id)
{
    gq *q = p;
    if (id == 0 && gq_try(q) == AP_OK) {
        gq_hold(q);
        q->done++;
        return;
    }
    gq_fut f;
    gq_fut_init(&f, q);
    vf_wait(&f.base);
    VF_CHECK(f.status == AP_OK, "status %d", f.status);
    gq_hold(q);
    q->done++;
}

/* thread 2 polls once and cancels if still pending: a grant that reached
 * it in between must go on */
static void gq_cancel_thread(void *p, int id)
{
    gq *q = p;
    if (id != 2) {
        gq_thread(p, id);
        return;
    }
    gq_fut f;
    gq_fut_init(&f, q);
    if (vf_poll(&f.base) == AP_READY) {
        VF_CHECK(f.status == AP_OK, "status %d", f.status);
        gq_hold(q);
    } else {
        gq_cancel(&f.base);
        VF_CHECK(f.status == AP_CANCELED);
    }
    q->done++;
}

/* thread 2 closes; the others wait: AP_OK (then hold and release) or
 * AP_CLOSED */
static void gq_close_thread(void *p, int id)
{
    gq *q = p;
    if (id == 2) {
        gq_close(q);
        q->done++;
        return;
    }
    gq_fut f;
    gq_fut_init(&f, q);
    vf_wait(&f.base);
    VF_CHECK(f.status == AP_OK || f.status == AP_CLOSED, "status %d", f.status);
    if (f.status == AP_OK) {
        q->oks++;
        gq_hold(q);
    }
    q->done++;
}

static void gq_invariant(void *p)
{
    gq *q = p;
    VF_CHECK(q->held <= q->total, "%d units held of %d", q->held, q->total);
}

static void gq_check(void *p)
{
    gq *q = p;
    size_t st = atomic_load(&q->state);
    VF_CHECK(q->done == gq_threads, "%d of %d threads done", q->done, gq_threads);
    VF_CHECK(q->held == 0);
    VF_CHECK(st / GQ_ONE == (size_t)q->total, "%zu units in the count of %d", st / GQ_ONE,
             q->total);
    VF_CHECK(!ap_waitlist_has_waiters(&q->wl), "a request left queued");
}

static void gq_close_check(void *p)
{
    gq *q = p;
    gq_check(p);
    VF_CHECK(atomic_load(&q->state) & GQ_CLOSED);
    /* the unit passes from hand to hand until close: 0, 1 or 2 AP_OKs, but
     * never two holders at once (gq_invariant) */
    VF_CHECK(q->oks <= gq_threads - 1);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = gq_setup, .thread = gq_thread,
                          .invariant = gq_invariant, .check = gq_check,
                          .teardown = gq_teardown};
        gq_units = 1, gq_threads = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "grant_1unit_2threads_tso" : "grant_1unit_2threads";
        total += vf_explore(&sc);
        gq_threads = 3;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "grant_1unit_3threads_tso" : "grant_1unit_3threads";
        total += vf_explore(&sc);
        sc.thread = gq_cancel_thread;
        sc.name = tso ? "grant_1unit_cancel_tso" : "grant_1unit_cancel";
        total += vf_explore(&sc);
        gq_units = 2;
        sc.name = tso ? "grant_2units_cancel_tso" : "grant_2units_cancel";
        total += vf_explore(&sc);
        gq_units = 1;
        sc.thread = gq_close_thread, sc.check = gq_close_check;
        sc.name = tso ? "grant_1unit_close_tso" : "grant_1unit_close";
        total += vf_explore(&sc);
    }
    printf("verify_grant: %lu executions\n", total);
    return 0;
}
