/*
 * tests/test_connpool.c -- the connection pool: lazy open up to max_size,
 * validate, lifetime / idle expiry on a fake clock, broken returns, FIFO
 * checkout futures, cancel, close, and the theorem with threads
 */
#include "asyncpat/connpool.h"
#include "test_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

/* ---- a fake factory ---- */

typedef struct conn {
    uint32_t id;    /* 1, 2, ... in open order; 0 when closed */
    uint32_t bad;   /* validate refuses it */
    int open;       /* 1 between open and close */
    int payload;
} conn;

typedef struct factory {
    atomic_int opens, opened, closed, live, high, violations;
    atomic_int fail_next;     /* the next N opens fail with fail_st */
    ap_status fail_st;
    int fail_app;             /* ... and write this app_error */
    atomic_int app_nonzero;   /* opens that found *app_error != 0 on entry */
    atomic_int validates;
    atomic_uint next_id;
    int max;                  /* for the live <= max check inside open */
} factory;

static ap_status f_open(void *ctx, void *c, int *app_error)
{
    factory *f = ctx;
    conn *k = c;
    atomic_fetch_add(&f->opens, 1);
    if (*app_error != 0)
        atomic_fetch_add(&f->app_nonzero, 1); /* must be 0 on entry */
    if (atomic_load(&f->fail_next) > 0) {
        atomic_fetch_sub(&f->fail_next, 1);
        *app_error = f->fail_app;
        return f->fail_st;
    }
    *app_error = 99; /* a success's app_error is never reported */
    if (k->open)
        atomic_fetch_add(&f->violations, 1); /* slot reused while open */
    k->open = 1;
    k->bad = 0;
    k->payload = 0;
    k->id = atomic_fetch_add(&f->next_id, 1) + 1;
    atomic_fetch_add(&f->opened, 1);
    int live = atomic_fetch_add(&f->live, 1) + 1;
    if (f->max && live > f->max)
        atomic_fetch_add(&f->violations, 1);
    int hi = atomic_load(&f->high);
    while (live > hi && !atomic_compare_exchange_weak(&f->high, &hi, live)) {
    }
    return AP_OK;
}

static void f_close(void *ctx, void *c)
{
    factory *f = ctx;
    conn *k = c;
    if (k->open != 1)
        atomic_fetch_add(&f->violations, 1); /* closed twice, or never opened */
    k->open = 0;
    k->id = 0;
    atomic_fetch_add(&f->closed, 1);
    atomic_fetch_sub(&f->live, 1);
}

static bool f_validate(void *ctx, void *c)
{
    factory *f = ctx;
    atomic_fetch_add(&f->validates, 1);
    return !((conn *)c)->bad;
}

#define MAXC 4

typedef struct fixture {
    ap_connpool p;
    factory f;
    _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(MAXC, sizeof(conn))];
} fixture;

static void fx_init(fixture *fx, size_t max, uint64_t lifetime, uint64_t idle, bool validate)
{
    memset(fx, 0, sizeof *fx);
    fx->f.max = (int)max;
    ap_connpool_desc d = {.max_size = max, .conn_size = sizeof(conn),
                          .max_lifetime_ns = lifetime, .idle_timeout_ns = idle};
    ap_connpool_ops ops = {f_open, f_close, validate ? f_validate : NULL, &fx->f};
    EXPECT_EQ(ap_connpool_init(&fx->p, fx->buf, sizeof fx->buf, &d, &ops), AP_OK);
}

static ap_connpool_stats stats(fixture *fx)
{
    ap_connpool_stats s;
    ap_connpool_stats_get(&fx->p, &s);
    EXPECT_EQ(s.opened - s.closed, s.live, "opened - closed != live");
    EXPECT_LE(s.live, s.max_size);
    EXPECT_EQ((int)s.live, atomic_load(&fx->f.live), "pool and factory disagree on live");
    return s;
}

/* fini, then: every opened connection closed exactly once */
static void fx_fini(fixture *fx)
{
    ap_connpool_fini(&fx->p);
    EXPECT_EQ(atomic_load(&fx->f.opened), atomic_load(&fx->f.closed));
    EXPECT_EQ(atomic_load(&fx->f.live), 0);
    EXPECT_EQ(atomic_load(&fx->f.violations), 0);
    EXPECT_EQ(atomic_load(&fx->f.app_nonzero), 0, "*app_error is 0 on entry");
}

static conn *co(fixture *fx, uint64_t now)
{
    void *c = NULL;
    EXPECT_EQ(ap_connpool_try_checkout(&fx->p, &c, now, NULL), AP_OK);
    EXPECT_NOT_NULL(c);
    return c;
}

/* wakers */
/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

static ap_poll poll_at(ap_connpool_checkout_fut *f, tw *t, uint64_t now)
{
    ap_cx cx = {{tw_wake, t}, now, AP_DEADLINE_NONE};
    return ap_connpool_checkout_poll(f, &cx);
}

/* ---- configuration ---- */

Test(connpool, init_bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    static _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(4, sizeof(conn)) + 16];
    factory f = {0};
    ap_connpool p, before;
    memset(&p, 0xa5, sizeof p);
    memcpy(&before, &p, sizeof p);
    memset(buf, 0x5a, sizeof buf);
    ap_connpool_desc d = {.max_size = 4, .conn_size = sizeof(conn)};
    ap_connpool_ops ops = {f_open, f_close, NULL, &f};
    size_t need = AP_CONNPOOL_BYTES(4, sizeof(conn));
    ap_connpool_desc bad;
    ap_connpool_ops bops;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, NULL, &ops), AP_INVAL, "desc NULL");
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &d, NULL), AP_INVAL, "ops NULL");
    EXPECT_EQ(ap_connpool_init(&p, NULL, need, &d, &ops), AP_INVAL, "buf NULL");
    EXPECT_EQ(ap_connpool_init(&p, buf, need - 1, &d, &ops), AP_INVAL, "buf too small");
    EXPECT_EQ(ap_connpool_init(&p, buf + 1, need, &d, &ops), AP_INVAL, "misaligned");
    EXPECT_EQ(ap_connpool_init(&p, buf + AP_CONNPOOL_ALIGN / 2, sizeof buf - AP_CONNPOOL_ALIGN / 2,
                               &d, &ops),
              AP_INVAL, "misaligned by half");
    EXPECT_EQ(ap_connpool_init(&p, buf, 0, &d, &ops), AP_INVAL, "zero bytes");
    /* the slots' uint64_t times: 8, or 4 on i386 */
    _Static_assert(AP_CONNPOOL_ALIGN == _Alignof(uint64_t) &&
                       AP_CONNPOOL_BYTES(4, 12) == 48 + 4 * sizeof(ap__connpool_slot),
                   "constant expressions");
    static char as_array_size[AP_CONNPOOL_ALIGN];
    EXPECT_EQ(sizeof as_array_size, _Alignof(uint64_t));
    bad = d, bad.max_size = 0;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &bad, &ops), AP_INVAL, "max 0");
    bad = d, bad.max_size = AP_CONNPOOL_MAX + 1;
    EXPECT_EQ(ap_connpool_init(&p, buf, SIZE_MAX, &bad, &ops), AP_INVAL, "max too big");
    bad = d, bad.conn_size = 0;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &bad, &ops), AP_INVAL, "conn_size 0");
    bad = d, bad.conn_size = SIZE_MAX / 2;
    EXPECT_EQ(ap_connpool_init(&p, buf, SIZE_MAX, &bad, &ops), AP_INVAL, "sizes overflow");
    bad = d, bad.min_idle = 5;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &bad, &ops), AP_INVAL, "min_idle > max");
    bops = ops, bops.open = NULL;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &d, &bops), AP_INVAL, "open NULL");
    bops = ops, bops.close = NULL;
    EXPECT_EQ(ap_connpool_init(&p, buf, need, &d, &bops), AP_INVAL, "close NULL");
    EXPECT_EQ(memcmp(&p, &before, sizeof p), 0, "init wrote on AP_INVAL");
    for (size_t i = 0; i < sizeof buf; i++)
        EXPECT_EQ(buf[i], 0x5a, "init wrote the buffer on AP_INVAL");
    EXPECT_EQ(atomic_load(&f.opens), 0, "init must open nothing");

    EXPECT_EQ(ap_connpool_init(&p, buf, need, &d, &ops), AP_OK);
    ap_connpool_stats s;
    ap_connpool_stats_get(&p, &s);
    EXPECT_EQ(s.max_size, 4);
    EXPECT_EQ(s.live + s.idle + s.opened + s.closed + s.waiters + s.opening, 0);
    EXPECT_NOT(ap_connpool_is_closed(&p));
    ap_connpool_fini(&p);
    EXPECT_EQ(atomic_load(&f.opens), 0);
}

/* ---- growth, reuse, bad returns ---- */

Test(connpool, lazy_growth_to_max_then_empty_and_reuse_without_opening)
{
    static fixture fx;
    fx_init(&fx, 3, 0, 0, false);
    conn *a = co(&fx, 1), *b = co(&fx, 1);
    EXPECT_EQ(atomic_load(&fx.f.opened), 2, "opens are lazy: one per checkout");
    conn *c = co(&fx, 1);
    EXPECT(a != b && b != c && a != c);
    EXPECT_EQ(stats(&fx).live, 3);
    void *x = (void *)0x1;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, 1, NULL), AP_EMPTY, "at max with all in use");
    EXPECT(x == (void *)0x1, "out-param touched on failure");
    EXPECT_EQ(atomic_load(&fx.f.opens), 3);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 2), AP_OK);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.idle, 1);
    EXPECT_EQ(s.in_use, 2);
    conn *again = co(&fx, 3);
    EXPECT(again == b, "an idle connection is reused");
    EXPECT_EQ(atomic_load(&fx.f.opens), 3, "no open while one is idle");
    /* LIFO: the most recently returned goes first */
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 4), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, c, false, 5), AP_OK);
    EXPECT(co(&fx, 6) == c);
    EXPECT(co(&fx, 6) == a);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 7), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 7), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, c, false, 7), AP_OK);
    s = stats(&fx);
    EXPECT_EQ(s.idle, 3);
    EXPECT_EQ(s.opened, 3);
    EXPECT_EQ(s.closed, 0);
    fx_fini(&fx);
    EXPECT_EQ(atomic_load(&fx.f.closed), 3, "fini closes idle connections");
}

Test(connpool, bad_arguments_are_inval_and_change_nothing)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 0, false);
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, NULL, 0, NULL), AP_INVAL);
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, NULL, AP_DEADLINE_NONE, NULL), AP_INVAL);
    conn *a = co(&fx, 0);
    ap_connpool_stats s0 = stats(&fx);
    conn other;
    EXPECT_EQ(ap_connpool_return(&fx.p, &other, false, 0), AP_INVAL, "foreign");
    EXPECT_EQ(ap_connpool_return(&fx.p, (char *)a + 1, false, 0), AP_INVAL, "misaligned");
    EXPECT_EQ(ap_connpool_return(&fx.p, (char *)fx.buf + 2 * sizeof(conn), false, 0), AP_INVAL,
              "past the slots");
    EXPECT_EQ(ap_connpool_return(&fx.p, (conn *)(void *)fx.buf + 1, false, 0), AP_INVAL,
              "a slot never lent");
    EXPECT_EQ(ap_connpool_return(&fx.p, NULL, false, 0), AP_INVAL, "NULL");
    ap_connpool_stats s1 = stats(&fx);
    EXPECT_EQ(memcmp(&s0, &s1, sizeof s0), 0, "a refused return changed the pool");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    s0 = stats(&fx);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_INVAL, "double return");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 0), AP_INVAL, "double broken return");
    s1 = stats(&fx);
    EXPECT_EQ(memcmp(&s0, &s1, sizeof s0), 0, "a double return changed the pool");
    EXPECT_EQ(a->open, 1);
    fx_fini(&fx);
}

/* ---- factory failures ---- */

Test(connpool, failed_open_is_reported_frees_the_slot_and_is_not_retried)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    void *c = (void *)0x1;
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_NOMEM;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c, 0, NULL), AP_EXHAUSTED);
    EXPECT(c == (void *)0x1);
    EXPECT_EQ(atomic_load(&fx.f.opens), 1, "never retried silently");
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.open_failures, 1);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.opening, 0, "the reservation is freed");
    /* whatever the factory says, the caller gets AP_EXHAUSTED (never the
     * pool's own AP_EMPTY / AP_CLOSED / AP_INVAL / AP_NOT_READY, never
     * AP_REJECTED: a failed open is not a policy refusal), and the
     * factory's own status beside it */
    static const ap_status odd[] = {AP_EMPTY, AP_AGAIN, AP_CLOSED, AP_INVAL, AP_TIMEDOUT,
                                    AP_CANCELED, AP_FULL, AP_DROPPED, AP_NOT_READY,
                                    AP_EXHAUSTED, AP_FILTERED, AP_REJECTED, (ap_status)77};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        atomic_store(&fx.f.fail_next, 1);
        fx.f.fail_st = odd[i];
        ap_connpool_fail why = {AP_OK, -1, false};
        EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c, 0, &why), AP_EXHAUSTED, "factory said %s",
                  ap_status_str(odd[i]));
        EXPECT_EQ(why.error, odd[i]);
        EXPECT_EQ(why.app_error, 0, "the factory set none");
    }
    EXPECT_EQ(stats(&fx).open_failures, 1 + sizeof odd / sizeof odd[0]);
    /* the slot was never lost: max 1 still opens */
    conn *k = co(&fx, 0);
    EXPECT_EQ(k->open, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, k, false, 0), AP_OK);
    fx_fini(&fx);
}

Test(connpool, failed_open_of_a_future_passes_the_slot_to_the_next)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    EXPECT_EQ(poll_at(&f1, &t1, 0), AP_PENDING);
    EXPECT_EQ(poll_at(&f2, &t2, 0), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 1), AP_OK); /* broken: slot freed */
    EXPECT_EQ(calls(&t1), 1, "the freed slot goes to the oldest future");
    EXPECT_EQ(calls(&t2), 0, "no thundering herd");
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_NOMEM;
    fx.f.fail_app = 12;
    EXPECT_EQ(poll_at(&f1, &t1, 2), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_EXHAUSTED, "reported to the waiter");
    EXPECT_EQ(ap_connpool_checkout_failure(&f1).error, AP_NOMEM);
    EXPECT_EQ(ap_connpool_checkout_failure(&f1).app_error, 12);
    EXPECT_NULL(o1);
    EXPECT_EQ(calls(&t2), 1, "the failed open's slot is offered to the next future");
    EXPECT_EQ(poll_at(&f2, &t2, 3), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_OK);
    EXPECT_EQ(ap_connpool_checkout_failure(&f2).error, AP_OK, "nothing beside AP_OK");
    EXPECT_EQ(ap_connpool_checkout_failure(&f2).app_error, 0);
    EXPECT_EQ(((conn *)o2)->open, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, false, 4), AP_OK);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.open_failures, 1);
    EXPECT_EQ(s.broken, 1);
    EXPECT_EQ(s.waiters, 0);
    fx_fini(&fx);
}

/* Regression (issue #11): a factory's app error reaches the checkout
 * caller, beside AP_EXHAUSTED, by every path that opens: try_checkout,
 * a checkout future (first poll and after queuing), checkout_wait, fill,
 * and the stats; @fail is untouched on any other status. */
Test(connpool, factory_app_error_reaches_the_checkout_caller, .timeout = TEST_TIMEOUT_S)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.last_open_error, AP_OK, "no failure yet");
    EXPECT_EQ(s.last_app_error, 0);
    void *c = (void *)0x1;
    /* try_checkout */
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_TIMEDOUT; /* the factory's own connect timeout */
    fx.f.fail_app = 110;        /* ETIMEDOUT, say */
    ap_connpool_fail why = {AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c, 0, &why), AP_EXHAUSTED);
    EXPECT_EQ(why.error, AP_TIMEDOUT);
    EXPECT_EQ(why.app_error, 110);
    EXPECT(c == (void *)0x1, "*conn untouched");
    s = stats(&fx);
    EXPECT_EQ(s.last_open_error, AP_TIMEDOUT);
    EXPECT_EQ(s.last_app_error, 110);
    /* a future's first poll */
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_REJECTED;
    fx.f.fail_app = 503;
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(ap_connpool_checkout_failure(&f).error, AP_OK, "nothing while pending");
    EXPECT_EQ(poll_at(&f, &t, 1), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_EXHAUSTED);
    EXPECT_EQ(ap_connpool_checkout_failure(&f).error, AP_REJECTED);
    EXPECT_EQ(ap_connpool_checkout_failure(&f).app_error, 503);
    EXPECT_NULL(o);
    /* a queued future granted the slot of a broken return */
    conn *a = co(&fx, 2);
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(poll_at(&f, &t, 2), AP_PENDING);
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_CLOSED; /* the server hung up: not the pool's AP_CLOSED */
    fx.f.fail_app = -104;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 3), AP_OK);
    EXPECT_EQ(poll_at(&f, &t, 4), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_EXHAUSTED);
    EXPECT_EQ(ap_connpool_checkout_failure(&f).error, AP_CLOSED);
    EXPECT_EQ(ap_connpool_checkout_failure(&f).app_error, -104, "negative codes too");
    EXPECT(!ap_connpool_is_closed(&fx.p));
    /* checkout_wait */
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_INVAL;
    fx.f.fail_app = 7;
    why = (ap_connpool_fail){AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &c, AP_DEADLINE_NONE, &why), AP_EXHAUSTED);
    EXPECT_EQ(why.error, AP_INVAL);
    EXPECT_EQ(why.app_error, 7);
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &c, AP_DEADLINE_NONE, NULL), AP_OK, "NULL @fail");
    /* @fail untouched on success and on the pool's own statuses */
    why = (ap_connpool_fail){AP_FULL, 42, false};
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &o, 5, &why), AP_EMPTY);
    EXPECT_EQ(why.error, AP_FULL);
    EXPECT_EQ(why.app_error, 42);
    EXPECT_EQ(ap_connpool_return(&fx.p, c, false, 5), AP_OK);
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c, 5, &why), AP_OK);
    EXPECT_EQ(why.error, AP_FULL);
    EXPECT_EQ(why.app_error, 42);
    EXPECT_EQ(ap_connpool_return(&fx.p, c, true, 6), AP_OK);
    s = stats(&fx);
    EXPECT_EQ(s.last_open_error, AP_INVAL, "stats: the last failure, not a later success");
    EXPECT_EQ(s.last_app_error, 7);
    EXPECT_EQ(s.open_failures, 4);
    fx_fini(&fx);
    /* fill */
    static fixture fx2;
    memset(&fx2, 0, sizeof fx2);
    fx2.f.max = 2;
    ap_connpool_desc d = {.max_size = 2, .conn_size = sizeof(conn), .min_idle = 2};
    ap_connpool_ops ops = {f_open, f_close, NULL, &fx2.f};
    EXPECT_EQ(ap_connpool_init(&fx2.p, fx2.buf, sizeof fx2.buf, &d, &ops), AP_OK);
    atomic_store(&fx2.f.fail_next, 1);
    fx2.f.fail_st = AP_NOMEM;
    fx2.f.fail_app = 12;
    why = (ap_connpool_fail){AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_fill(&fx2.p, 0, &why), AP_EXHAUSTED);
    EXPECT_EQ(why.error, AP_NOMEM);
    EXPECT_EQ(why.app_error, 12);
    why = (ap_connpool_fail){AP_FULL, 42, false};
    EXPECT_EQ(ap_connpool_fill(&fx2.p, 0, &why), AP_OK);
    EXPECT_EQ(why.error, AP_FULL, "untouched on AP_OK");
    EXPECT_EQ(why.app_error, 42);
    fx_fini(&fx2);
}

/* ---- validate ---- */

Test(connpool, validate_failures_close_and_move_on)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 0, true);
    conn *a = co(&fx, 0), *b = co(&fx, 0);
    EXPECT_EQ(atomic_load(&fx.f.validates), 0, "fresh connections are not validated");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 0), AP_OK);
    b->bad = 1; /* b is on top */
    conn *c = co(&fx, 0);
    EXPECT(c == a, "the bad one was skipped");
    EXPECT_EQ(atomic_load(&fx.f.validates), 2);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.validate_failures, 1);
    EXPECT_EQ(s.closed, 1);
    EXPECT_EQ(s.live, 1);
    EXPECT_EQ(b->open, 0, "refused connection closed");
    /* all idle ones bad: a fresh one is opened in the freed slot */
    EXPECT_EQ(ap_connpool_return(&fx.p, c, false, 0), AP_OK);
    c->bad = 1;
    int opens = atomic_load(&fx.f.opens);
    conn *d = co(&fx, 0);
    EXPECT_EQ(d->open, 1);
    EXPECT_EQ(d->bad, 0);
    EXPECT_EQ(atomic_load(&fx.f.opens), opens + 1);
    s = stats(&fx);
    EXPECT_EQ(s.validate_failures, 2);
    EXPECT_EQ(s.live, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, d, false, 0), AP_OK);
    fx_fini(&fx);
}

Test(connpool, validate_failure_after_hand_off_reopens_for_the_waiter)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, true);
    conn *a = co(&fx, 0);
    uint32_t old = a->id;
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_PENDING);
    a->bad = 1;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 1), AP_OK);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(poll_at(&f, &t, 2), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT(o == a, "same slot");
    EXPECT_NE(((conn *)o)->id, old, "a fresh connection, not the refused one");
    EXPECT_EQ(stats(&fx).validate_failures, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, o, false, 3), AP_OK);
    fx_fini(&fx);
}

/* ---- broken returns ---- */

Test(connpool, broken_return_closes_and_frees_the_slot)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 0, false);
    conn *a = co(&fx, 0);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 0), AP_OK);
    EXPECT_EQ(a->open, 0);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.broken, 1);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.idle, 0);
    conn *b = co(&fx, 0), *c = co(&fx, 0);
    EXPECT_EQ(atomic_load(&fx.f.opened), 3, "slot reusable: two more opened");
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 0), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, c, false, 0), AP_OK);
    fx_fini(&fx);
}

/* ---- expiry on a fake clock ---- */

Test(connpool, lifetime_expiry_is_exact)
{
    static fixture fx;
    fx_init(&fx, 1, 100, 0, false);
    conn *a = co(&fx, 1000);
    uint32_t id = a->id;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 1099), AP_OK);
    EXPECT_EQ(stats(&fx).idle, 1, "at 1099 it is 99 ns old: kept");
    a = co(&fx, 1099);
    EXPECT_EQ(a->id, id, "reused at 1099");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 1100), AP_OK);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.expired, 1, "at exactly 1000 + 100 it is retired on return");
    EXPECT_EQ(s.live, 0);
    /* expiry on checkout: an idle one at exactly its lifetime is not lent */
    a = co(&fx, 2000);
    id = a->id;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 2050), AP_OK);
    a = co(&fx, 2100);
    EXPECT_NE(a->id, id, "expired at checkout: replaced");
    EXPECT_EQ(stats(&fx).expired, 2);
    /* a clock that reads earlier than the stamp is not expiry */
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 5), AP_OK);
    EXPECT_EQ(stats(&fx).idle, 1);
    EXPECT_EQ(ap_connpool_evict(&fx.p, 2199), 0);
    EXPECT_EQ(ap_connpool_evict(&fx.p, 2200), 1, "evict at exactly the lifetime");
    EXPECT_EQ(stats(&fx).live, 0);
    fx_fini(&fx);
}

Test(connpool, idle_timeout_is_exact)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 50, false);
    conn *a = co(&fx, 0);
    uint32_t id = a->id;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 10), AP_OK);
    a = co(&fx, 59);
    EXPECT_EQ(a->id, id, "idle 49 ns: reused");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 60), AP_OK);
    EXPECT_EQ(stats(&fx).expired, 0, "idle timeout does not apply to a held connection");
    a = co(&fx, 110);
    EXPECT_NE(a->id, id, "idle exactly 50 ns: closed, a new one opened");
    EXPECT_EQ(stats(&fx).expired, 1);
    conn *b = co(&fx, 110);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 200), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 220), AP_OK);
    EXPECT_EQ(ap_connpool_evict(&fx.p, 249), 0);
    EXPECT_EQ(ap_connpool_evict(&fx.p, 250), 1, "a idle 50 ns");
    EXPECT_EQ(stats(&fx).idle, 1);
    EXPECT_EQ(ap_connpool_evict(&fx.p, 270), 1, "b idle 50 ns");
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.expired, 3);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.opening, 0);
    fx_fini(&fx);
}

Test(connpool, expired_hand_off_is_replaced_for_the_waiter)
{
    static fixture fx;
    fx_init(&fx, 1, 100, 0, false);
    conn *a = co(&fx, 0);
    uint32_t id = a->id;
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 99), AP_OK); /* handed over */
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(poll_at(&f, &t, 100), AP_READY); /* but expired when the future sees it */
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_NE(((conn *)o)->id, id, "never hands out an expired connection");
    EXPECT_EQ(stats(&fx).expired, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, o, false, 101), AP_OK);
    fx_fini(&fx);
}

/* ---- futures ---- */

Test(connpool, return_hands_connections_to_queued_futures_in_fifo_order)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    enum { NF = 4 };
    void *o[NF] = {0};
    ap_connpool_checkout_fut f[NF];
    tw t[NF] = {0}; /* id 0, no log: counting only */
    for (int i = 0; i < NF; i++) {
        atomic_init(&t[i].calls, 0);
        ap_connpool_checkout_fut_init(&f[i], &fx.p, &o[i]);
        EXPECT_EQ(poll_at(&f[i], &t[i], 0), AP_PENDING);
    }
    EXPECT_EQ(stats(&fx).waiters, NF);
    void *x = NULL;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, 0, NULL), AP_EMPTY, "try never overtakes a future");
    conn *held = a;
    for (int i = 0; i < NF; i++) {
        EXPECT_EQ(ap_connpool_return(&fx.p, held, false, 1), AP_OK);
        for (int j = 0; j < NF; j++)
            EXPECT_EQ(calls(&t[j]), j == i ? 1 : j < i, "return %d woke future %d", i, j);
        EXPECT_EQ(poll_at(&f[i], &t[i], 2), AP_READY);
        EXPECT_EQ(ap_connpool_checkout_status(&f[i]), AP_OK);
        EXPECT(o[i] == a, "the returned connection itself");
        held = o[i];
    }
    EXPECT_EQ(atomic_load(&fx.f.opened), 1, "hand-off opens nothing");
    EXPECT_EQ(ap_connpool_return(&fx.p, held, false, 3), AP_OK);
    EXPECT_EQ(stats(&fx).waiters, 0);
    fx_fini(&fx);
}

Test(connpool, first_poll_checks_out_at_once_and_futures_open_lazily)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 0, false);
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_NOT_READY);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(atomic_load(&fx.f.opened), 1);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_READY, "READY stays READY");
    ap_connpool_checkout_cancel(&f); /* after completion: no-op */
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, o, false, 0), AP_OK);
    fx_fini(&fx);
}

Test(connpool, cancel_after_grant_passes_the_connection_on)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    EXPECT_EQ(poll_at(&f1, &t1, 0), AP_PENDING);
    EXPECT_EQ(poll_at(&f2, &t2, 0), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 1), AP_OK);
    EXPECT_EQ(calls(&t1), 1);
    EXPECT_EQ(calls(&t2), 0);
    ap_connpool_checkout_cancel(&f1);
    ap_connpool_checkout_cancel(&f1); /* idempotent */
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_CANCELED);
    EXPECT_EQ(poll_at(&f1, &t1, 1), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_CANCELED);
    EXPECT_NULL(o1);
    EXPECT_EQ(calls(&t2), 1, "the grant passed to the next future");
    EXPECT_EQ(calls(&t1), 1, "no wake after cancel");
    EXPECT_EQ(poll_at(&f2, &t2, 2), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_OK);
    EXPECT(o2 == a);
    /* a granted slot (after a broken return) passes on as well */
    void *o3 = NULL, *o4 = NULL;
    ap_connpool_checkout_fut f3, f4;
    tw t3 = {0}, t4 = {0};
    ap_connpool_checkout_fut_init(&f3, &fx.p, &o3);
    ap_connpool_checkout_fut_init(&f4, &fx.p, &o4);
    EXPECT_EQ(poll_at(&f3, &t3, 2), AP_PENDING);
    EXPECT_EQ(poll_at(&f4, &t4, 2), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, true, 3), AP_OK);
    EXPECT_EQ(calls(&t3), 1);
    ap_connpool_checkout_cancel(&f3);
    EXPECT_EQ(calls(&t4), 1);
    EXPECT_EQ(stats(&fx).opening, 1, "the slot is reserved for f4");
    EXPECT_EQ(poll_at(&f4, &t4, 4), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f4), AP_OK);
    EXPECT_EQ(((conn *)o4)->open, 1);
    /* cancel with nobody behind: the connection goes back to idle */
    ap_connpool_checkout_fut f5;
    void *o5 = NULL;
    tw t5 = {0};
    ap_connpool_checkout_fut_init(&f5, &fx.p, &o5);
    EXPECT_EQ(poll_at(&f5, &t5, 4), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, o4, false, 5), AP_OK);
    ap_connpool_checkout_cancel(&f5);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.idle, 1);
    EXPECT_EQ(s.waiters, 0);
    EXPECT_EQ(s.in_use, 0);
    EXPECT(co(&fx, 6) == o4);
    EXPECT_EQ(ap_connpool_return(&fx.p, o4, false, 6), AP_OK);
    fx_fini(&fx);
}

Test(connpool, cancel_before_poll_and_when_queued_without_grant)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    ap_connpool_checkout_cancel(&f);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_CANCELED);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_READY);
    EXPECT_EQ(atomic_load(&fx.f.opens), 0);
    conn *a = co(&fx, 0);
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_PENDING);
    ap_connpool_checkout_cancel(&f);
    EXPECT_EQ(stats(&fx).waiters, 0);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    EXPECT_EQ(calls(&t), 0, "no wake for a cancelled future");
    EXPECT_EQ(stats(&fx).idle, 1);
    fx_fini(&fx);
}

/* ---- close ---- */

Test(connpool, close_closes_idle_fails_waiters_and_closes_lent_on_return)
{
    static fixture fx;
    fx_init(&fx, 2, 0, 0, false);
    conn *a = co(&fx, 0), *b = co(&fx, 0);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 0), AP_OK);
    conn *c = co(&fx, 0); /* b again */
    EXPECT(c == b);
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    EXPECT_EQ(poll_at(&f1, &t1, 0), AP_PENDING);
    EXPECT_EQ(poll_at(&f2, &t2, 0), AP_PENDING);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 1), AP_OK); /* granted to f1 */
    ap_connpool_close(&fx.p);
    ap_connpool_close(&fx.p); /* idempotent */
    EXPECT(ap_connpool_is_closed(&fx.p));
    EXPECT_EQ(calls(&t2), 1, "close wakes the queue");
    EXPECT_EQ(poll_at(&f1, &t1, 2), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_OK, "granted before close: keeps it");
    EXPECT_EQ(poll_at(&f2, &t2, 2), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_CLOSED);
    EXPECT_NULL(o2);
    void *x = NULL;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, 3, NULL), AP_CLOSED);
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &x, AP_DEADLINE_NONE, NULL), AP_CLOSED);
    EXPECT_EQ(ap_connpool_fill(&fx.p, 3, NULL), AP_CLOSED);
    EXPECT_EQ(a->open, 1, "lent connections stay open until returned");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 4), AP_OK);
    EXPECT_EQ(a->open, 0, "closed on return after close");
    EXPECT_EQ(ap_connpool_return(&fx.p, o1, false, 4), AP_OK);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.opened, s.closed);
    EXPECT_EQ(s.expired + s.broken, 0, "closing is neither expiry nor breakage");
    fx_fini(&fx);
}

Test(connpool, close_with_idle_connections_closes_them_at_once)
{
    static fixture fx;
    fx_init(&fx, 3, 0, 0, false);
    conn *a = co(&fx, 0), *b = co(&fx, 0);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 0), AP_OK);
    ap_connpool_close(&fx.p);
    EXPECT_EQ(atomic_load(&fx.f.closed), 2);
    EXPECT_EQ(stats(&fx).live, 0);
    fx_fini(&fx);
}

/* ---- fill / min_idle ---- */

Test(connpool, fill_opens_up_to_min_idle)
{
    static fixture fx;
    memset(&fx, 0, sizeof fx);
    ap_connpool_desc d = {.max_size = 3, .conn_size = sizeof(conn), .min_idle = 2};
    ap_connpool_ops ops = {f_open, f_close, NULL, &fx.f};
    EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_OK);
    EXPECT_EQ(ap_connpool_fill(&fx.p, 0, NULL), AP_OK);
    EXPECT_EQ(stats(&fx).idle, 2);
    EXPECT_EQ(ap_connpool_fill(&fx.p, 0, NULL), AP_OK);
    EXPECT_EQ(atomic_load(&fx.f.opened), 2, "already at min_idle: nothing opened");
    conn *a = co(&fx, 0), *b = co(&fx, 0);
    atomic_store(&fx.f.fail_next, 1);
    fx.f.fail_st = AP_NOMEM;
    EXPECT_EQ(ap_connpool_fill(&fx.p, 0, NULL), AP_EXHAUSTED, "the factory's failure is reported");
    EXPECT_EQ(ap_connpool_fill(&fx.p, 0, NULL), AP_OK);
    EXPECT_EQ(stats(&fx).live, 3, "capped by max_size");
    EXPECT_EQ(stats(&fx).idle, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, b, false, 0), AP_OK);
    fx_fini(&fx);
}

/* ---- blocking wait ---- */

Test(connpool, wait_times_out_and_takes_nothing, .timeout = TEST_TIMEOUT_S)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    void *x = (void *)0x1;
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &x, ap_now_ns() + AP_NS_PER_MS, NULL), AP_TIMEDOUT);
    EXPECT(x == (void *)0x1);
    EXPECT_EQ(stats(&fx).waiters, 0);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    fx_fini(&fx);
}

typedef struct waiter_arg {
    fixture *fx;
    void *got;
    ap_status st;
} waiter_arg;

static void *wait_main(void *arg)
{
    waiter_arg *w = arg;
    w->st = ap_connpool_checkout_wait(&w->fx->p, &w->got, AP_DEADLINE_NONE, NULL);
    return NULL;
}

Test(connpool, parked_thread_gets_a_fresh_connection_after_a_broken_return,
     .timeout = TEST_TIMEOUT_S)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    waiter_arg w = {&fx, NULL, AP_NOT_READY};
    pthread_t t;
    EXPECT_EQ(pthread_create(&t, NULL, wait_main, &w), 0);
    while (stats(&fx).waiters == 0)
        ms_sleep(1);
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, ap_now_ns()), AP_OK);
    pthread_join(t, NULL);
    EXPECT_EQ(w.st, AP_OK, "no waiter stuck while capacity exists");
    EXPECT_EQ(((conn *)w.got)->open, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, w.got, false, ap_now_ns()), AP_OK);
    EXPECT_EQ(atomic_load(&fx.f.opened), 2);
    fx_fini(&fx);
}

/* ---- the theorem, with threads ---- */

#define THREADS 8
#define TH_MAX 3

typedef struct theorem {
    fixture fx;
    atomic_int holders[TH_MAX];
    atomic_int violations, samples_bad, stop;
    int iters;
    long plain[TH_MAX]; /* written only by the slot's holder */
} theorem;

typedef struct tharg {
    theorem *th;
    unsigned id;
} tharg;

static void *theorem_main(void *arg)
{
    tharg *a = arg;
    theorem *th = a->th;
    ap_connpool *p = &th->fx.p;
    uint64_t rng = 0x9E3779B97F4A7C15u * (a->id + 1);
    for (int i = 0; i < th->iters; i++) {
        rng_next(&rng);
        void *v = NULL;
        ap_status st;
        ap_connpool_fail why = {AP_OK, 0, false};
        if ((rng & 0x700) == 0)
            atomic_store(&th->fx.f.fail_next, 1); /* the next open somewhere fails */
        if (rng & 0x100) {
            st = ap_connpool_checkout_wait(p, &v, AP_DEADLINE_NONE, &why);
        } else {
            unsigned spins = 0;
            while ((st = ap_connpool_try_checkout(p, &v, ap_now_ns(), &why)) == AP_EMPTY)
                ap__backoff(&spins);
        }
        if (st == AP_EXHAUSTED) { /* the factory failed: reported, nothing held */
            if (why.error != AP_REJECTED || why.app_error != 503)
                atomic_fetch_add(&th->violations, 1); /* not its status and app_error */
            continue;
        }
        if (st != AP_OK) {
            atomic_fetch_add(&th->violations, 1);
            return NULL;
        }
        size_t k = (size_t)((conn *)v - (conn *)(void *)th->fx.buf);
        if (k >= TH_MAX || atomic_fetch_add_explicit(&th->holders[k], 1, memory_order_relaxed))
            atomic_fetch_add(&th->violations, 1); /* two holders */
        if (((conn *)v)->open != 1)
            atomic_fetch_add(&th->violations, 1); /* lent a closed connection */
        th->plain[k]++;
        if (i < 10)
            ms_sleep(1);
        else if (rng & 0x200)
            sched_yield();
        atomic_fetch_sub_explicit(&th->holders[k], 1, memory_order_relaxed);
        if (ap_connpool_return(p, v, (rng & 0x3000) == 0, ap_now_ns()) != AP_OK)
            atomic_fetch_add(&th->violations, 1);
    }
    return NULL;
}

static void *sampler_main(void *arg)
{
    theorem *th = arg;
    while (!atomic_load(&th->stop)) {
        ap_connpool_stats s;
        ap_connpool_stats_get(&th->fx.p, &s);
        if (s.opened - s.closed != s.live || s.live > TH_MAX || s.live + s.opening > TH_MAX ||
            atomic_load(&th->fx.f.live) > TH_MAX)
            atomic_fetch_add(&th->samples_bad, 1);
        sched_yield();
    }
    return NULL;
}

Test(connpool, theorem_live_at_most_max_one_holder_opened_equals_closed,
     .timeout = TEST_TIMEOUT_S)
{
    static theorem th;
    memset(&th, 0, sizeof th);
    fx_init(&th.fx, TH_MAX, 2 * AP_NS_PER_MS, 500 * AP_NS_PER_US, true);
    th.fx.f.fail_st = AP_REJECTED;
    th.fx.f.fail_app = 503;
    th.iters = 2000;
    pthread_t t[THREADS], s;
    tharg a[THREADS];
    EXPECT_EQ(pthread_create(&s, NULL, sampler_main, &th), 0);
    for (unsigned i = 0; i < THREADS; i++) {
        a[i] = (tharg){&th, i};
        EXPECT_EQ(pthread_create(&t[i], NULL, theorem_main, &a[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    atomic_store(&th.stop, 1);
    pthread_join(s, NULL);
    EXPECT_EQ(atomic_load(&th.violations), 0, "two holders, a closed lend, or a failed op");
    EXPECT_EQ(atomic_load(&th.samples_bad), 0, "live > max or opened - closed != live");
    EXPECT_EQ(atomic_load(&th.fx.f.violations), 0, "factory: live > max or double close");
    EXPECT_LE(atomic_load(&th.fx.f.high), TH_MAX);
    ap_connpool_stats st = stats(&th.fx);
    EXPECT_EQ(st.in_use, 0);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_GT(st.broken, 0);
    EXPECT_GT(st.open_failures, 0);
    fx_fini(&th.fx);
    EXPECT_GT(atomic_load(&th.fx.f.opened), TH_MAX, "connections were retired and reopened");
}

/* ---- preconditions ---- */

Test(connpool, use_after_fini_asserts, .signal = SIGABRT)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    ap_connpool_fini(&fx.p);
    void *c;
    ap_status st = ap_connpool_try_checkout(&fx.p, &c, 0, NULL);
    cr_log_error("returned %s", ap_status_str(st));
}

Test(connpool, fini_with_a_lent_connection_asserts, .signal = SIGABRT)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    (void)co(&fx, 0);
    ap_connpool_fini(&fx.p);
}

Test(connpool, future_without_out_pointer_asserts, .signal = SIGABRT)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    ap_connpool_checkout_fut f;
    ap_connpool_checkout_fut_init(&f, &fx.p, NULL);
}

/* Review find: an open that a close overtakes (the close lands while the
 * factory runs, which cannot be stopped once called) must not lend or keep
 * the connection: it is closed at once and the future gets AP_CLOSED. */
static ap_connpool *racing_pool;
static ap_status open_then_close_pool(void *ctx, void *c, int *app_error)
{
    ap_status st = f_open(ctx, c, app_error);
    ap_connpool_close(racing_pool); /* "another thread" closes meanwhile */
    return st;
}

Test(connpool, an_open_overtaken_by_close_is_closed_not_lent)
{
    static fixture fx;
    fx_init(&fx, 1, 0, 0, false);
    conn *a = co(&fx, 0);
    ap_connpool_checkout_fut f;
    void *got = NULL;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &got);
    EXPECT_EQ(poll_at(&f, &t, 0), AP_PENDING);
    racing_pool = &fx.p;
    fx.p.ops.open = open_then_close_pool;            /* the next open races a close */
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 0), AP_OK); /* broken: slot granted to f */
    EXPECT_EQ(poll_at(&f, &t, 0), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_CLOSED, "a connection opened after close was lent");
    EXPECT_NULL(got);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.live, 0, "the connection opened after close was kept");
    EXPECT_EQ(atomic_load(&fx.f.opened), 2);
    EXPECT_EQ(atomic_load(&fx.f.closed), 2);
    fx_fini(&fx);
}

/* ---- the pool's clock (desc.clock) reaches ap_connpool_checkout_wait ---- */

Test(connpool, checkout_wait_runs_on_the_desc_clock, .timeout = TEST_TIMEOUT_S)
{
    /* a fake clock at 2^62 ns; connections idle for 60 s are retired */
    const uint64_t t0 = UINT64_C(1) << 62, sec = AP_NS_PER_SEC;
    static fixture fx;
    memset(&fx, 0, sizeof fx);
    fx.f.max = 1;
    test_clock c = {t0, 0, 0};
    ap_connpool_desc d = {.max_size = 1, .conn_size = sizeof(conn), .idle_timeout_ns = 60 * sec,
                          .clock = {test_clock_now, &c}};
    ap_connpool_ops ops = {f_open, f_close, NULL, &fx.f};
    EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_OK);
    conn *a = co(&fx, t0);
    uint32_t id = a->id;
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, t0), AP_OK); /* idle since t0 */
    atomic_store(&c.t, t0 + 60 * sec); /* by the caller's clock: idle-expired */

    /* Regression: before desc.clock, checkout_wait drove its future with
     * ap_block_on_until on ap_now_ns(), and the expiry check took that
     * clock's now, far before the idle stamp t0 (~2^62): "not expired", so
     * it lent the connection the caller's clock says is expired. */
    void *got = NULL;
    ap_connpool_checkout_fut f;
    ap_connpool_checkout_fut_init(&f, &fx.p, &got);
    EXPECT_EQ(ap_block_on_until(&f.base, ap_now_ns() + sec), AP_OK);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_EQ(((conn *)got)->id, id, "the real clock lent the expired connection");
    EXPECT_EQ(ap_connpool_return(&fx.p, got, false, t0), AP_OK); /* idle since t0 again */

    /* on the pool's clock: expired at the wait's first poll, replaced */
    got = NULL;
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &got, AP_DEADLINE_NONE, NULL), AP_OK);
    EXPECT_NE(((conn *)got)->id, id, "an expired connection was lent");
    EXPECT_EQ(stats(&fx).expired, 1);

    /* the deadline is on the pool's clock: the only connection is lent,
     * the wait gives up when the fake clock (a second per read) passes it */
    atomic_store(&c.step, sec);
    uint64_t dl = atomic_load(&c.t) + 10 * sec, r0 = ap_now_ns();
    void *x = NULL;
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &x, dl, NULL), AP_TIMEDOUT);
    uint64_t last = atomic_load(&c.t) - sec; /* the check that timed out */
    EXPECT_GE(last, dl);
    EXPECT_LT(last, dl + 2 * sec);
    EXPECT_NULL(x);
    EXPECT_LT(ap_now_ns() - r0, 5 * sec, "10 fake seconds took too long in real time");
    EXPECT_EQ(ap_connpool_return(&fx.p, got, false, atomic_load(&c.t)), AP_OK);
    fx_fini(&fx);
}

/* ---- the asynchronous open (desc.open_async) and the connect timeout ----
 * A scripted factory: an open completes at its `need`-th poll (with
 * fail_st, if set, instead of a connection); every pending poll calls the
 * waker it was given (the "socket became ready" of a real factory, on the
 * polling thread: a spurious-wake-safe stand-in), and the test counts
 * those calls to see whose waker the factory got. ctx is the afactory,
 * whose first member is the factory of f_close. */

typedef struct afactory {
    factory f;
    int need;             /* polls until an open completes (>= 1) */
    ap_status start_st;   /* start returns this (AP_OK: started) */
    ap_status fail_st;    /* the completing poll's result (AP_OK: a connection) */
    int started, aborted, polls, in_flight, in_flight_high;
    int bad_abort;        /* aborts of something not in flight */
    uint64_t start_now;   /* the now of the last start */
} afactory;

static ap_status a_start(void *ctx, void *c, uint64_t now, int *app_error)
{
    afactory *a = ctx;
    conn *k = c;
    if (*app_error != 0)
        atomic_fetch_add(&a->f.app_nonzero, 1);
    if (a->start_st != AP_OK) {
        *app_error = 5;
        return a->start_st;
    }
    if (k->open || k->payload)
        atomic_fetch_add(&a->f.violations, 1); /* slot busy */
    k->payload = 1; /* in flight; `bad` counts its polls */
    k->bad = 0;
    a->started++;
    a->start_now = now;
    a->in_flight++;
    if (a->in_flight + atomic_load(&a->f.live) > a->f.max)
        atomic_fetch_add(&a->f.violations, 1); /* opens in flight count too */
    if (a->in_flight > a->in_flight_high)
        a->in_flight_high = a->in_flight;
    return AP_OK;
}

static ap_poll a_poll(void *ctx, void *c, ap_cx *cx, ap_status *result, int *app_error)
{
    afactory *a = ctx;
    conn *k = c;
    a->polls++;
    if (k->payload != 1)
        atomic_fetch_add(&a->f.violations, 1); /* polled when not in flight */
    if ((int)++k->bad < a->need) {
        ap_waker_wake(cx->waker); /* "ready again": whoever drives us re-polls */
        return AP_PENDING;
    }
    k->payload = 0;
    k->bad = 0;
    a->in_flight--;
    if (a->fail_st != AP_OK) {
        *app_error = 7;
        *result = a->fail_st;
        return AP_READY;
    }
    int dummy = 0;
    ap_status st = f_open(&a->f, c, &dummy); /* the connection exists: counted */
    *result = st;
    return AP_READY;
}

static void a_abort(void *ctx, void *c)
{
    afactory *a = ctx;
    conn *k = c;
    if (k->payload != 1 || k->open)
        a->bad_abort++;
    k->payload = 0;
    k->bad = 0;
    a->aborted++;
    a->in_flight--;
}

static const ap_connpool_open_async a_ops = {a_start, a_poll, a_abort};

typedef struct afixture {
    ap_connpool p;
    afactory a;
    _Alignas(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(MAXC, sizeof(conn))];
} afixture;

static void afx_init(afixture *fx, size_t max, int need, uint64_t timeout, test_clock *clock)
{
    memset(fx, 0, sizeof *fx);
    fx->a.f.max = (int)max;
    fx->a.need = need;
    ap_connpool_desc d = {.max_size = max, .conn_size = sizeof(conn),
                          .connect_timeout_ns = timeout, .open_async = &a_ops};
    if (clock)
        d.clock = (ap_clock){test_clock_now, clock};
    ap_connpool_ops ops = {NULL, f_close, NULL, &fx->a}; /* no synchronous open */
    EXPECT_EQ(ap_connpool_init(&fx->p, fx->buf, sizeof fx->buf, &d, &ops), AP_OK);
}

static ap_connpool_stats astats(afixture *fx)
{
    ap_connpool_stats s;
    ap_connpool_stats_get(&fx->p, &s);
    EXPECT_EQ(s.opened - s.closed, s.live, "opened - closed != live");
    EXPECT_LE(s.live, s.max_size);
    EXPECT_EQ((int)s.live, atomic_load(&fx->a.f.live), "pool and factory disagree on live");
    EXPECT_LE((size_t)fx->a.in_flight, s.opening, "an open in flight holds a reserved slot");
    return s;
}

/* fini, then: every opened connection closed once, every start that did
 * not complete aborted once, nothing in flight */
static void afx_fini(afixture *fx)
{
    ap_connpool_fini(&fx->p);
    EXPECT_EQ(atomic_load(&fx->a.f.opened), atomic_load(&fx->a.f.closed));
    EXPECT_EQ(atomic_load(&fx->a.f.live), 0);
    EXPECT_EQ(atomic_load(&fx->a.f.violations), 0);
    EXPECT_EQ(atomic_load(&fx->a.f.app_nonzero), 0, "*app_error is 0 at start");
    EXPECT_EQ(fx->a.in_flight, 0, "an open left in flight");
    EXPECT_EQ(fx->a.bad_abort, 0, "aborted something not in flight");
}

static ap_poll apoll(ap_connpool_checkout_fut *f, tw *t, uint64_t now, uint64_t *deadline)
{
    ap_cx cx = {{tw_wake, t}, now, AP_DEADLINE_NONE};
    ap_poll r = ap_connpool_checkout_poll(f, &cx);
    if (deadline)
        *deadline = cx.deadline;
    return r;
}

Test(connpool, async_open_init_rules)
{
    static afixture fx;
    ap_connpool_desc d = {.max_size = 2, .conn_size = sizeof(conn)};
    ap_connpool_ops ops = {NULL, f_close, NULL, &fx.a};
    memset(&fx.p, 0xa5, sizeof fx.p);
    EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_INVAL,
              "no open at all");
    ap_connpool_open_async half[3] = {{a_start, a_poll, NULL}, {a_start, NULL, a_abort},
                                      {NULL, a_poll, a_abort}};
    for (int i = 0; i < 3; i++) {
        d.open_async = &half[i];
        EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_INVAL,
                  "async open %d lacks a function", i);
    }
    EXPECT_EQ(((unsigned char *)&fx.p)[0], 0xa5, "AP_INVAL changed the pool");
    afx_init(&fx, 2, 1, 0, NULL); /* all three, no sync open: fine */
    afx_fini(&fx);
}

Test(connpool, async_open_completes_after_k_polls_driven_by_the_checkout_future)
{
    static afixture fx;
    afx_init(&fx, 2, 3, 0, NULL);
    void *got = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &got);
    EXPECT_EQ(apoll(&f, &t, 10, NULL), AP_PENDING, "poll 1 of 3");
    EXPECT_EQ(fx.a.started, 1);
    EXPECT_EQ(fx.a.start_now, 10, "the open starts at the poll's cx.now");
    EXPECT_EQ(calls(&t), 1, "the factory got the checkout's waker");
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_NOT_READY);
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.opening, 1, "the slot is reserved while the open is in flight");
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.waiters, 0, "an open in flight is not queued");
    EXPECT_EQ(apoll(&f, &t, 11, NULL), AP_PENDING, "poll 2 of 3");
    EXPECT_EQ(apoll(&f, &t, 12, NULL), AP_READY, "poll 3 of 3");
    EXPECT_EQ(fx.a.polls, 3);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_NOT_NULL(got);
    EXPECT_EQ(((conn *)got)->open, 1);
    EXPECT_EQ(apoll(&f, &t, 13, NULL), AP_READY, "done stays done");
    EXPECT_EQ(fx.a.polls, 3, "a done future polls nothing");
    s = astats(&fx);
    EXPECT_EQ(s.opened, 1);
    EXPECT_EQ(s.opening, 0);
    EXPECT_EQ(s.in_use, 1);
    /* the blocking paths drive it to its end on this thread */
    void *c2 = NULL;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c2, 20, NULL), AP_OK);
    EXPECT_EQ(fx.a.polls, 6, "try_checkout polled it to completion");
    EXPECT_EQ(ap_connpool_return(&fx.p, c2, true, 21), AP_OK);
    void *c3 = NULL;
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &c3, AP_DEADLINE_NONE, NULL), AP_OK);
    EXPECT_EQ(fx.a.polls, 9, "checkout_wait polled it to completion");
    EXPECT_EQ(ap_connpool_return(&fx.p, c3, false, 22), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, got, false, 22), AP_OK);
    ap_connpool_close(&fx.p);
    EXPECT_EQ(fx.a.aborted, 0);
    s = astats(&fx);
    EXPECT_EQ(s.opened, 3, "three opens, one each");
    afx_fini(&fx);
}

Test(connpool, async_open_times_out_exactly_at_the_deadline_and_frees_the_slot)
{
    static afixture fx;
    afx_init(&fx, 1, 1000000, 100, NULL); /* never completes; timeout 100 ns */
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    uint64_t dl = 0;
    EXPECT_EQ(apoll(&f1, &t1, 1000, &dl), AP_PENDING);
    EXPECT_EQ(dl, 1100, "a pending open asks to be polled by its connect deadline");
    EXPECT_EQ(apoll(&f2, &t2, 1000, NULL), AP_PENDING, "max 1: f2 queues");
    EXPECT_EQ(astats(&fx).waiters, 1);
    EXPECT_EQ(apoll(&f1, &t1, 1099, &dl), AP_PENDING, "one ns before the deadline: pending");
    EXPECT_EQ(dl, 1100);
    EXPECT_EQ(fx.a.aborted, 0);
    EXPECT_EQ(calls(&t2), 0);
    int polls = fx.a.polls;
    EXPECT_EQ(apoll(&f1, &t1, 1100, NULL), AP_READY, "at the deadline: timed out");
    EXPECT_EQ(fx.a.polls, polls, "the factory is not polled at or after the deadline");
    EXPECT_EQ(fx.a.aborted, 1, "the half-open connection was aborted");
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_EXHAUSTED);
    ap_connpool_fail why = ap_connpool_checkout_failure(&f1);
    EXPECT_EQ(why.error, AP_TIMEDOUT);
    EXPECT(why.open_timeout, "the failure says: connect timeout");
    EXPECT_EQ(why.app_error, 0);
    EXPECT_NULL(o1);
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.open_timeouts, 1);
    EXPECT_EQ(s.open_failures, 1, "a timeout is a failed open");
    EXPECT_EQ(s.last_open_error, AP_TIMEDOUT);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(calls(&t2), 1, "the freed slot went to the queued future");
    /* f2 opens in the slot; this one completes */
    fx.a.need = 2;
    EXPECT_EQ(apoll(&f2, &t2, 2000, &dl), AP_PENDING);
    EXPECT_EQ(dl, 2100, "its own deadline, from its own start");
    EXPECT_EQ(apoll(&f2, &t2, 2099, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_OK);
    EXPECT_EQ(ap_connpool_checkout_failure(&f2).open_timeout, false);
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, false, 2100), AP_OK);
    s = astats(&fx);
    EXPECT_EQ(s.open_timeouts, 1);
    EXPECT_EQ(s.opening, 0);
    /* the blocking paths time out too (the pool's clock: ap_now_ns; the
     * open starts at the `now` passed, then is polled on that clock) */
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &o2, 0, NULL), AP_OK, "the idle one");
    fx.a.need = 1000000000;
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, true, 2200), AP_OK);
    void *x = NULL;
    why = (ap_connpool_fail){AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, ap_now_ns(), &why), AP_EXHAUSTED);
    EXPECT(why.error == AP_TIMEDOUT && why.open_timeout);
    why = (ap_connpool_fail){AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &x, AP_DEADLINE_NONE, &why), AP_EXHAUSTED);
    EXPECT(why.error == AP_TIMEDOUT && why.open_timeout);
    EXPECT_EQ(ap_connpool_fill(&fx.p, ap_now_ns(), &why), AP_OK, "min_idle 0: nothing to fill");
    EXPECT_NULL(x);
    s = astats(&fx);
    EXPECT_EQ(s.open_timeouts, 3);
    EXPECT_EQ(fx.a.aborted, 3);
    EXPECT_EQ(s.opening, 0, "every timed-out slot was freed");
    afx_fini(&fx);
}

Test(connpool, cancel_during_open_aborts_it_and_passes_the_slot_on)
{
    static afixture fx;
    afx_init(&fx, 1, 1000000, 0, NULL); /* no connect timeout */
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    uint64_t dl = 0;
    EXPECT_EQ(apoll(&f1, &t1, 0, &dl), AP_PENDING);
    EXPECT_EQ(dl, AP_DEADLINE_NONE, "no connect timeout: no deadline of the pool's");
    EXPECT_EQ(apoll(&f2, &t2, 0, NULL), AP_PENDING);
    ap_connpool_checkout_cancel(&f1);
    EXPECT_EQ(fx.a.aborted, 1, "the open in flight was aborted");
    EXPECT_EQ(fx.a.in_flight, 0);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_CANCELED);
    ap_connpool_checkout_cancel(&f1); /* idempotent */
    EXPECT_EQ(fx.a.aborted, 1);
    EXPECT_EQ(apoll(&f1, &t1, 1, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_CANCELED);
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.open_failures, 0, "a cancel is not a failed open");
    EXPECT_EQ(s.open_timeouts, 0);
    EXPECT_EQ(calls(&t2), 1, "the slot went to the next future");
    fx.a.need = 1;
    EXPECT_EQ(apoll(&f2, &t2, 2, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_OK);
    EXPECT_NULL(o1);
    /* cancelled in flight with nobody queued: the slot is free again */
    ap_connpool_checkout_fut f3;
    void *o3 = NULL;
    tw t3 = {0};
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, true, 3), AP_OK);
    fx.a.need = 1000000;
    ap_connpool_checkout_fut_init(&f3, &fx.p, &o3);
    EXPECT_EQ(apoll(&f3, &t3, 4, NULL), AP_PENDING);
    ap_connpool_checkout_cancel(&f3);
    s = astats(&fx);
    EXPECT_EQ(s.opening, 0);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(fx.a.aborted, 2);
    /* checkout_wait's own deadline cancels its open in flight (a fake
     * clock, a second per read) */
    afx_fini(&fx);
    static test_clock c;
    c = (test_clock){1000, 0, 0};
    afx_init(&fx, 1, 1000000, 0, &c);
    atomic_store(&c.step, AP_NS_PER_SEC);
    void *x = NULL;
    EXPECT_EQ(ap_connpool_checkout_wait(&fx.p, &x, 1000 + 5 * AP_NS_PER_SEC, NULL), AP_TIMEDOUT);
    EXPECT_NULL(x);
    EXPECT_EQ(fx.a.aborted, 1, "the wait's timeout aborted the open");
    s = astats(&fx);
    EXPECT_EQ(s.open_timeouts, 0, "the wait's deadline is not a connect timeout");
    EXPECT_EQ(s.opening, 0);
    afx_fini(&fx);
}

Test(connpool, failed_async_open_frees_the_slot_for_the_next_waiter)
{
    static afixture fx;
    afx_init(&fx, 1, 2, 0, NULL);
    void *o1 = NULL, *o2 = NULL;
    ap_connpool_checkout_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    ap_connpool_checkout_fut_init(&f2, &fx.p, &o2);
    fx.a.fail_st = AP_NOMEM; /* the completing poll fails */
    EXPECT_EQ(apoll(&f1, &t1, 0, NULL), AP_PENDING);
    EXPECT_EQ(apoll(&f2, &t2, 0, NULL), AP_PENDING);
    EXPECT_EQ(apoll(&f1, &t1, 1, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_EXHAUSTED);
    ap_connpool_fail why = ap_connpool_checkout_failure(&f1);
    EXPECT_EQ(why.error, AP_NOMEM);
    EXPECT_EQ(why.app_error, 7);
    EXPECT_EQ(why.open_timeout, false);
    EXPECT_EQ(fx.a.aborted, 0, "a failed open is not aborted");
    EXPECT_EQ(calls(&t2), 1, "the failed open's slot went to the next future");
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.open_failures, 1);
    EXPECT_EQ(s.open_timeouts, 0);
    EXPECT_EQ(s.last_open_error, AP_NOMEM);
    EXPECT_EQ(s.last_app_error, 7);
    fx.a.fail_st = AP_OK;
    EXPECT_EQ(apoll(&f2, &t2, 2, NULL), AP_PENDING);
    EXPECT_EQ(apoll(&f2, &t2, 3, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f2), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, o2, true, 4), AP_OK);
    /* start itself fails: reported at once, nothing to abort */
    fx.a.start_st = AP_CLOSED;
    void *x = NULL;
    why = (ap_connpool_fail){AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, 5, &why), AP_EXHAUSTED);
    EXPECT(why.error == AP_CLOSED && why.app_error == 5 && !why.open_timeout);
    ap_connpool_checkout_fut f3;
    ap_connpool_checkout_fut_init(&f3, &fx.p, &x);
    EXPECT_EQ(apoll(&f3, &t1, 6, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f3), AP_EXHAUSTED);
    EXPECT_EQ(ap_connpool_checkout_failure(&f3).app_error, 5);
    EXPECT_NULL(x);
    s = astats(&fx);
    EXPECT_EQ(s.open_failures, 3);
    EXPECT_EQ(s.opening, 0);
    EXPECT_EQ(fx.a.aborted, 0);
    afx_fini(&fx);
}

Test(connpool, close_during_async_open_aborts_it)
{
    static afixture fx;
    afx_init(&fx, 2, 3, 0, NULL);
    void *o1 = NULL;
    ap_connpool_checkout_fut f1;
    tw t1 = {0};
    ap_connpool_checkout_fut_init(&f1, &fx.p, &o1);
    EXPECT_EQ(apoll(&f1, &t1, 0, NULL), AP_PENDING);
    ap_connpool_close(&fx.p);
    EXPECT_EQ(apoll(&f1, &t1, 1, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f1), AP_CLOSED);
    EXPECT_EQ(fx.a.aborted, 1);
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.open_failures, 0, "aborted by close: not a failure");
    EXPECT_EQ(s.opening, 0);
    EXPECT_NULL(o1);
    afx_fini(&fx);
}

Test(connpool, async_fill_and_validate_failure_reopen)
{
    static afixture fx;
    afx_init(&fx, 2, 2, 0, NULL);
    fx.p.min_idle = 2;
    fx.p.ops.validate = f_validate; /* ctx: the afactory, its factory first */
    EXPECT_EQ(ap_connpool_fill(&fx.p, 0, NULL), AP_OK);
    EXPECT_EQ(astats(&fx).idle, 2);
    EXPECT_EQ(fx.a.polls, 4, "fill drove both opens to their end");
    /* both idle ones refused by validate: closed, then a fresh open in
     * the kept slot, started by the future and driven by its polls */
    void *c1 = NULL, *c2 = NULL;
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c1, 1, NULL), AP_OK);
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &c2, 1, NULL), AP_OK);
    ((conn *)c1)->bad = ((conn *)c2)->bad = 1;
    EXPECT_EQ(ap_connpool_return(&fx.p, c1, false, 2), AP_OK);
    EXPECT_EQ(ap_connpool_return(&fx.p, c2, false, 2), AP_OK);
    void *o = NULL;
    ap_connpool_checkout_fut f;
    tw t = {0};
    ap_connpool_checkout_fut_init(&f, &fx.p, &o);
    EXPECT_EQ(apoll(&f, &t, 3, NULL), AP_PENDING);
    ap_connpool_stats s = astats(&fx);
    EXPECT_EQ(s.validate_failures, 2);
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.opening, 1, "the slot is kept for the open");
    EXPECT_EQ(fx.a.started, 3);
    EXPECT_EQ(apoll(&f, &t, 4, NULL), AP_READY);
    EXPECT_EQ(ap_connpool_checkout_status(&f), AP_OK);
    EXPECT_EQ(((conn *)o)->open, 1);
    EXPECT_EQ(ap_connpool_return(&fx.p, o, false, 5), AP_OK);
    afx_fini(&fx);
}

/* The synchronous open under connect_timeout_ns: timed on desc.clock from
 * before to after the call; one that took the timeout or longer fails
 * (a connection it made is closed: counted opened and closed). */
static test_clock *slow_clock;
static uint64_t slow_ns;
static ap_status slow_open(void *ctx, void *c, int *app_error)
{
    atomic_fetch_add(&slow_clock->t, slow_ns); /* the open took slow_ns */
    return f_open(ctx, c, app_error);
}

Test(connpool, sync_open_connect_timeout_is_measured_on_the_desc_clock)
{
    static fixture fx;
    static test_clock c;
    c = (test_clock){5000, 0, 0};
    memset(&fx, 0, sizeof fx);
    fx.f.max = 1;
    slow_clock = &c;
    ap_connpool_desc d = {.max_size = 1, .conn_size = sizeof(conn), .connect_timeout_ns = 100,
                          .clock = {test_clock_now, &c}};
    ap_connpool_ops ops = {slow_open, f_close, NULL, &fx.f};
    EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_OK);
    slow_ns = 99;
    conn *a = co(&fx, 0);
    EXPECT_EQ(a->open, 1, "99 ns: in time");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, true, 0), AP_OK);
    slow_ns = 100;
    void *x = NULL;
    ap_connpool_fail why = {AP_OK, 0, false};
    EXPECT_EQ(ap_connpool_try_checkout(&fx.p, &x, 0, &why), AP_EXHAUSTED, "100 ns: too late");
    EXPECT(why.error == AP_TIMEDOUT && why.open_timeout);
    EXPECT_NULL(x);
    ap_connpool_stats s = stats(&fx);
    EXPECT_EQ(s.open_timeouts, 1);
    EXPECT_EQ(s.opened, 2, "the late connection was made");
    EXPECT_EQ(s.closed, 2, "... and closed at once");
    EXPECT_EQ(s.live, 0);
    EXPECT_EQ(s.opening, 0);
    fx_fini(&fx);

    /* without a connect timeout the sync path reads no clock (unchanged) */
    c = (test_clock){5000, 0, 0};
    memset(&fx, 0, sizeof fx);
    fx.f.max = 1;
    d.connect_timeout_ns = 0;
    EXPECT_EQ(ap_connpool_init(&fx.p, fx.buf, sizeof fx.buf, &d, &ops), AP_OK);
    slow_ns = 1000000;
    a = co(&fx, 0);
    EXPECT_EQ(atomic_load(&c.reads), 0, "the pool read the clock");
    EXPECT_EQ(ap_connpool_return(&fx.p, a, false, 0), AP_OK);
    EXPECT_EQ(stats(&fx).open_timeouts, 0);
    fx_fini(&fx);
}
