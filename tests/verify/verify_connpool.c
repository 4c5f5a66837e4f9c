/*
 * verify_connpool.c -- the connection pool's checkout hand-off under every
 * interleaving within the preemption bound (SC and x86-TSO).
 *
 * Theorems: opened - closed == live <= max at every step; each connection
 * has at most one holder; a broken return frees its slot for a waiter that
 * then opens a fresh one; every waiter completes (lost-wakeup detector);
 * at the end every opened connection is closed exactly once by fini.
 * The async scenarios (connpool_async_*) open through desc.open_async: an
 * open takes two polls of the checkout future, and thread 1 cancels its
 * first checkout after one poll, so an open in flight meets a return, a
 * queued waiter and a cancel (which aborts it): opens in flight plus live
 * connections never exceed max, every start ends exactly once (completed
 * or aborted), every connection opened is closed exactly once.
 */
#include "vf.h"
#include "asyncpat/connpool.h"

typedef struct conn {
    int id;
    int holders;
} conn;

typedef struct cpst {
    ap_connpool p;
    _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(2, sizeof(conn))];
    int opened, closed, next_id, broken_id;
    int started, aborted, inflight; /* the async factory's */
    size_t max;
} cpst;

static ap_status cp_open(void *ctx, void *c, int *app_error)
{
    cpst *s = ctx;
    VF_CHECK(*app_error == 0, "*app_error %d on entry", *app_error);
    s->opened++;
    VF_CHECK((size_t)(s->opened - s->closed) <= s->max, "%d live of %zu", s->opened - s->closed,
             s->max);
    *(conn *)c = (conn){++s->next_id, 0};
    return AP_OK;
}

static void cp_close(void *ctx, void *c)
{
    cpst *s = ctx;
    VF_CHECK(((conn *)c)->holders == 0, "closing a held connection");
    ((conn *)c)->id = -1;
    s->closed++;
}

/* the asynchronous factory: start, then ready at the second poll (the
 * first asks to be re-polled by waking the checkout's waker) */
static ap_status cpa_start(void *ctx, void *c, uint64_t now, int *app_error)
{
    cpst *s = ctx;
    (void)now;
    VF_CHECK(*app_error == 0, "*app_error %d at start", *app_error);
    s->started++;
    s->inflight++;
    VF_CHECK((size_t)(s->opened - s->closed + s->inflight) <= s->max,
             "%d live + %d opening of %zu", s->opened - s->closed, s->inflight, s->max);
    *(conn *)c = (conn){0, 0}; /* id 0: in flight */
    return AP_OK;
}

static ap_poll cpa_poll(void *ctx, void *c, ap_cx *cx, ap_status *result, int *app_error)
{
    cpst *s = ctx;
    conn *k = c;
    (void)app_error;
    VF_CHECK(k->id <= 0, "polling an open connection");
    if (k->id == 0) {
        k->id = -2; /* one poll seen */
        ap_waker_wake(cx->waker);
        return AP_PENDING;
    }
    s->inflight--;
    s->opened++;
    *k = (conn){++s->next_id, 0};
    *result = AP_OK;
    return AP_READY;
}

static void cpa_abort(void *ctx, void *c)
{
    cpst *s = ctx;
    VF_CHECK(((conn *)c)->id <= 0, "aborting an open connection");
    ((conn *)c)->id = -1;
    s->aborted++;
    s->inflight--;
}

static const ap_connpool_open_async cpa_ops = {cpa_start, cpa_poll, cpa_abort};

static size_t cp_max;
static int cp_rounds;
static bool cp_async;
static unsigned long cp_aborts; /* executions in which an open was aborted */

static void *cp_setup(void)
{
    cpst *s = calloc(1, sizeof *s);
    s->max = cp_max;
    ap_connpool_ops ops = {cp_async ? NULL : cp_open, cp_close, NULL, s};
    VF_CHECK(ap_connpool_init(&s->p, s->buf, sizeof s->buf,
                              &(ap_connpool_desc){.max_size = cp_max, .conn_size = sizeof(conn),
                                                  .open_async = cp_async ? &cpa_ops : NULL},
                              &ops) == AP_OK);
    return s;
}

static void cp_thread(void *p, int id)
{
    cpst *s = p;
    for (int r = 0; r < cp_rounds; r++) {
        void *c = NULL;
        ap_connpool_checkout_fut f;
        if (cp_async && id == 1 && r == 0) {
            /* one poll (it may start an open, or queue), then cancel: an
             * open in flight is aborted, a queued one leaves, a grant is
             * passed on; nothing is lost either way */
            ap_connpool_checkout_fut_init(&f, &s->p, &c);
            if (vf_poll(&f.base) == AP_PENDING) {
                vf_yield();
                ap_connpool_checkout_cancel(&f);
            }
            if (ap_connpool_checkout_status(&f) == AP_OK)
                VF_CHECK(ap_connpool_return(&s->p, c, false, vf_now()) == AP_OK);
            c = NULL;
        }
        ap_connpool_checkout_fut_init(&f, &s->p, &c);
        vf_wait(&f.base);
        VF_CHECK(ap_connpool_checkout_status(&f) == AP_OK);
        conn *k = c;
        VF_CHECK(k->id > 0 && k->id != s->broken_id, "lent a closed or broken connection");
        VF_CHECK(++k->holders == 1, "connection %d has %d holders", k->id, k->holders);
        vf_yield(); /* in use */
        k->holders--;
        if (id == 0 && r == 0)
            s->broken_id = k->id;
        /* thread 0 reports its first connection broken: its slot must
         * reach a waiter, who opens a fresh one */
        VF_CHECK(ap_connpool_return(&s->p, c, id == 0 && r == 0, vf_now()) == AP_OK);
    }
}

static void cp_invariant(void *p)
{
    cpst *s = p;
    VF_CHECK(s->opened - s->closed >= 0 && (size_t)(s->opened - s->closed) <= s->max);
    VF_CHECK(s->inflight >= 0 && (size_t)(s->opened - s->closed + s->inflight) <= s->max,
             "%d live + %d opening of %zu", s->opened - s->closed, s->inflight, s->max);
}

static void cp_check(void *p)
{
    cpst *s = p;
    ap_connpool_fini(&s->p);
    VF_CHECK(s->opened == s->closed, "opened %d, closed %d", s->opened, s->closed);
    cp_aborts += s->aborted > 0;
    VF_CHECK(s->inflight == 0 && (!cp_async || s->started == s->opened + s->aborted),
             "started %d = opened %d + aborted %d, %d in flight", s->started, s->opened,
             s->aborted, s->inflight);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = cp_setup, .thread = cp_thread,
                          .invariant = cp_invariant, .check = cp_check, .teardown = free};
        cp_max = 1, cp_rounds = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "connpool_max1_2threads_tso" : "connpool_max1_2threads";
        total += vf_explore(&sc);
        cp_max = 1, cp_rounds = 1;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "connpool_max1_3threads_tso" : "connpool_max1_3threads";
        total += vf_explore(&sc);
        cp_max = 2, cp_rounds = 1;
        sc.name = tso ? "connpool_max2_3threads_tso" : "connpool_max2_3threads";
        total += vf_explore(&sc);
        cp_async = true;
        cp_aborts = 0;
        cp_max = 1, cp_rounds = 2;
        sc.nthreads = 2, sc.bound = 2;
        sc.name = tso ? "connpool_async_max1_2threads_tso" : "connpool_async_max1_2threads";
        unsigned long ran = vf_explore(&sc);
        total += ran;
        cp_max = 2, cp_rounds = 1;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "connpool_async_max2_2threads_tso" : "connpool_async_max2_2threads";
        total += vf_explore(&sc);
        cp_async = false;
        /* the scenarios reach what they are for: a cancel during an open */
        if (ran != 0 && cp_aborts == 0) {
            printf("FAIL %s: no execution aborted an open in flight\n", sc.name);
            return 1;
        }
    }
    printf("verify_connpool: %lu executions\n", total);
    return 0;
}
