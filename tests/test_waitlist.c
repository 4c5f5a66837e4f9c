/*
 * tests/test_waitlist.c -- the intrusive FIFO waiter list and ap_waitop
 */
#include "asyncpat/waitlist.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

/* ---- wakers that count and log: tw, wake_log (test_util.h) ---- */

static ap_waker waker_of(tw *t) { return (ap_waker){tw_wake, t}; }


/* ---- initialisation ---- */

Test(waitlist, zero_initialised_list_and_waiter_are_valid)
{
    static ap_waitlist zl; /* static storage: all zero */
    ap_waitlist ml;
    ap_waiter zw, mw;
    memset(&ml, 0, sizeof ml);
    memset(&zw, 0, sizeof zw);
    memset(&mw, 0, sizeof mw);
    ap_waitlist *lists[] = {&zl, &ml};
    for (int i = 0; i < 2; i++) {
        ap_waitlist *wl = lists[i];
        EXPECT_NOT(ap_waitlist_has_waiters(wl));
        EXPECT_EQ(ap_waitlist_wake(wl, 1), 0);
        EXPECT_EQ(ap_waitlist_wake_all(wl), 0);
        EXPECT_NOT(ap_waitlist_cancel(wl, &zw), "an idle zero waiter reports a wake");
        tw a = {0}, b = {0};
        ap_waitlist_register(wl, &zw, waker_of(&a));
        ap_waitlist_register(wl, &mw, waker_of(&b));
        EXPECT(ap_waitlist_has_waiters(wl));
        EXPECT_EQ(ap_waitlist_wake_all(wl), 2);
        EXPECT_EQ(calls(&a), 1);
        EXPECT_EQ(calls(&b), 1);
        EXPECT(ap_waitlist_cancel(wl, &zw));
        EXPECT(ap_waitlist_cancel(wl, &mw));
    }
}

Test(waitlist, initializers_and_init_functions)
{
    ap_waitlist a = AP_WAITLIST_INITIALIZER, b;
    ap_waiter wa = AP_WAITER_INITIALIZER, wb;
    memset(&b, 0x5a, sizeof b); /* garbage, then init */
    memset(&wb, 0x5a, sizeof wb);
    ap_waitlist_init(&b);
    ap_waiter_init(&wb);
    EXPECT_NOT(ap_waitlist_has_waiters(&a));
    EXPECT_NOT(ap_waitlist_has_waiters(&b));
    EXPECT_NULL(b.head);
    EXPECT_NULL(b.tail);
    EXPECT_NULL(wb.waker.wake);
    tw t = {0};
    ap_waitlist_register(&a, &wa, waker_of(&t));
    ap_waitlist_register(&b, &wb, waker_of(&t));
    EXPECT_EQ(ap_waitlist_wake(&a, 1), 1);
    EXPECT_EQ(ap_waitlist_wake(&b, 1), 1);
    EXPECT_EQ(calls(&t), 2);
}

/* ---- register / wake ---- */

Test(waitlist, register_then_wake_one)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w = AP_WAITER_INITIALIZER;
    tw t = {0};
    ap_waitlist_register(&wl, &w, waker_of(&t));
    EXPECT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(calls(&t), 0, "register must not wake");
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 0, "a waiter is woken once per registration");
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 0);
    EXPECT_EQ(calls(&t), 1);
    EXPECT(ap_waitlist_cancel(&wl, &w), "cancel after a wake reports it");
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w), "and only once");
}

Test(waitlist, wake_zero_wakes_nobody)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w = AP_WAITER_INITIALIZER;
    tw t = {0};
    ap_waitlist_register(&wl, &w, waker_of(&t));
    EXPECT_EQ(ap_waitlist_wake(&wl, 0), 0);
    EXPECT_EQ(calls(&t), 0);
    EXPECT(ap_waitlist_has_waiters(&wl));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w));
}

Test(waitlist, fifo_order_three_waiters)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w[3] = {AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER};
    wake_log log = {{0}, 0};
    tw t[3] = {{0, 1, &log}, {0, 2, &log}, {0, 3, &log}};
    for (int i = 0; i < 3; i++)
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
        EXPECT_EQ(log.n, i + 1);
        EXPECT_EQ(log.order[i], i + 1, "wake %d went to waiter %d", i, log.order[i]);
        for (int j = 0; j < 3; j++)
            EXPECT_EQ(calls(&t[j]), j <= i ? 1 : 0);
    }
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    for (int i = 0; i < 3; i++)
        EXPECT(ap_waitlist_cancel(&wl, &w[i]));
}

Test(waitlist, wake_n_takes_from_head)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w[4] = {AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER,
                      AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER};
    wake_log log = {{0}, 0};
    tw t[4] = {{0, 1, &log}, {0, 2, &log}, {0, 3, &log}, {0, 4, &log}};
    for (int i = 0; i < 4; i++)
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    EXPECT_EQ(ap_waitlist_wake(&wl, 2), 2);
    EXPECT_EQ(log.n, 2);
    EXPECT_EQ(log.order[0], 1);
    EXPECT_EQ(log.order[1], 2);
    EXPECT_EQ(ap_waitlist_wake(&wl, 10), 2, "wake(n) returns how many it woke");
    EXPECT_EQ(log.n, 4);
    EXPECT_EQ(log.order[2], 3);
    EXPECT_EQ(log.order[3], 4);
}

Test(waitlist, wake_all_fifo_each_once)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    enum { N = 5 };
    ap_waiter w[N];
    tw t[N];
    wake_log log = {{0}, 0};
    for (int i = 0; i < N; i++) {
        ap_waiter_init(&w[i]);
        atomic_init(&t[i].calls, 0);
        t[i].id = i;
        t[i].log = &log;
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    }
    EXPECT_EQ(ap_waitlist_wake_all(&wl), N);
    EXPECT_EQ(log.n, N);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(log.order[i], i);
        EXPECT_EQ(calls(&t[i]), 1);
    }
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 0);
}

Test(waitlist, register_after_wake_goes_to_tail)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter a = AP_WAITER_INITIALIZER, b = AP_WAITER_INITIALIZER;
    wake_log log = {{0}, 0};
    tw ta = {0, 1, &log}, tb = {0, 2, &log};
    ap_waitlist_register(&wl, &a, waker_of(&ta));
    ap_waitlist_register(&wl, &b, waker_of(&tb));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1); /* a */
    ap_waitlist_register(&wl, &a, waker_of(&ta)); /* a again: behind b */
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(log.n, 3);
    EXPECT_EQ(log.order[0], 1);
    EXPECT_EQ(log.order[1], 2);
    EXPECT_EQ(log.order[2], 1);
    EXPECT_EQ(calls(&ta), 2);
    EXPECT_EQ(calls(&tb), 1);
}

Test(waitlist, reregister_updates_waker_without_duplicating)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w = AP_WAITER_INITIALIZER, other = AP_WAITER_INITIALIZER;
    wake_log log = {{0}, 0};
    tw a = {0, 1, &log}, b = {0, 2, &log}, o = {0, 3, &log};
    ap_waitlist_register(&wl, &w, waker_of(&a));
    ap_waitlist_register(&wl, &other, waker_of(&o));
    ap_waitlist_register(&wl, &w, waker_of(&b)); /* still linked: only the waker changes */
    EXPECT_EQ(atomic_load(&wl.count), 2, "re-register linked the waiter twice");
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&a), 0, "the replaced waker was called");
    EXPECT_EQ(calls(&b), 1);
    EXPECT_EQ(log.order[0], 2, "re-register must keep the waiter's place in line");
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 1);
    EXPECT_EQ(calls(&o), 1);
    EXPECT_EQ(calls(&b), 1);
}

/* ---- wakers run outside the list lock ---- */

typedef struct lock_probe {
    ap_waitlist *wl;
    int calls;
    int under_lock; /* calls made while the list lock was held */
} lock_probe;

static void probe_wake(void *ctx)
{
    lock_probe *p = ctx;
    p->calls++;
    if (atomic_load(&p->wl->lock.held) != 0)
        p->under_lock++;
}

Test(waitlist, wakers_are_called_outside_the_lock)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w[3] = {AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER};
    lock_probe p = {&wl, 0, 0};
    for (int i = 0; i < 3; i++)
        ap_waitlist_register(&wl, &w[i], (ap_waker){probe_wake, &p});
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 2);
    EXPECT_EQ(p.calls, 3);
    EXPECT_EQ(p.under_lock, 0, "a waker ran under the list lock");
    EXPECT_EQ(atomic_load(&wl.lock.held), 0u, "the lock was left held");
}

/* ---- grant-style wake ---- */

typedef struct request {
    int want;
    int granted;
    ap_waiter node; /* not first: AP_CONTAINER_OF must do real work */
    tw waker;
} request;

typedef struct pool {
    int permits;
    int grant_calls;
    ap_waitlist *wl;
    int grants_with_waker_called; /* grant saw its waiter already woken */
} pool;

static bool grant_permits(ap_waiter *w, void *ctx)
{
    pool *p = ctx;
    request *r = AP_CONTAINER_OF(w, request, node);
    p->grant_calls++;
    if (calls(&r->waker) != 0)
        p->grants_with_waker_called++;
    if (p->permits < r->want)
        return false;
    p->permits -= r->want;
    r->granted += r->want;
    return true;
}

Test(waitlist, wake_if_grants_in_fifo_order_and_stops_at_the_first_refusal)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    request r[4] = {{.want = 2}, {.want = 2}, {.want = 3}, {.want = 1}};
    for (int i = 0; i < 4; i++) {
        ap_waiter_init(&r[i].node);
        atomic_init(&r[i].waker.calls, 0);
        ap_waitlist_register(&wl, &r[i].node, waker_of(&r[i].waker));
    }
    pool p = {5, 0, &wl, 0};
    EXPECT_EQ(ap_waitlist_wake_if(&wl, grant_permits, &p), 2);
    EXPECT_EQ(p.permits, 1);
    EXPECT_EQ(r[0].granted, 2);
    EXPECT_EQ(r[1].granted, 2);
    EXPECT_EQ(r[2].granted, 0);
    EXPECT_EQ(r[3].granted, 0, "a small request overtook a large one at the head");
    EXPECT_EQ(calls(&r[0].waker), 1);
    EXPECT_EQ(calls(&r[1].waker), 1);
    EXPECT_EQ(calls(&r[2].waker), 0);
    EXPECT_EQ(calls(&r[3].waker), 0);
    EXPECT_EQ(p.grants_with_waker_called, 0, "woken before being granted");
    EXPECT_EQ(atomic_load(&wl.count), 2);
    p.permits += 3;
    EXPECT_EQ(ap_waitlist_wake_if(&wl, grant_permits, &p), 2);
    EXPECT_EQ(r[2].granted, 3);
    EXPECT_EQ(r[3].granted, 1);
    EXPECT_EQ(p.permits, 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(calls(&r[i].waker), 1);
        EXPECT(ap_waitlist_cancel(&wl, &r[i].node), "a granted waiter must see cancel() == true");
    }
}

Test(waitlist, wake_if_on_empty_list_and_refused_head)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    pool p = {100, 0, &wl, 0};
    EXPECT_EQ(ap_waitlist_wake_if(&wl, grant_permits, &p), 0);
    EXPECT_EQ(p.grant_calls, 0, "grant called on an empty list");
    request r = {.want = 5};
    ap_waiter_init(&r.node);
    atomic_init(&r.waker.calls, 0);
    ap_waitlist_register(&wl, &r.node, waker_of(&r.waker));
    p.permits = 4;
    EXPECT_EQ(ap_waitlist_wake_if(&wl, grant_permits, &p), 0);
    EXPECT_EQ(p.grant_calls, 1);
    EXPECT_EQ(calls(&r.waker), 0);
    EXPECT(ap_waitlist_has_waiters(&wl), "a refused waiter was unlinked");
    EXPECT_NOT(ap_waitlist_cancel(&wl, &r.node), "never granted: cancel has nothing to give back");
    EXPECT_EQ(p.permits, 4);
}

/* ---- cancel ---- */

Test(waitlist, cancel_linked_is_silent_and_idempotent)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w = AP_WAITER_INITIALIZER;
    tw t = {0};
    ap_waitlist_register(&wl, &w, waker_of(&t));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w), "not woken yet");
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w));
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 0);
    EXPECT_EQ(calls(&t), 0, "a wake reached a cancelled waiter");
    EXPECT_NULL(wl.head);
    EXPECT_NULL(wl.tail);
}

static void check_cancel_position(int victim)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w[3] = {AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER};
    wake_log log = {{0}, 0};
    tw t[3] = {{0, 0, &log}, {0, 1, &log}, {0, 2, &log}};
    for (int i = 0; i < 3; i++)
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w[victim]));
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 2);
    EXPECT_EQ(calls(&t[victim]), 0);
    int k = 0;
    for (int i = 0; i < 3; i++)
        if (i != victim)
            EXPECT_EQ(log.order[k++], i, "cancel of %d broke the order", victim);
    /* the list is whole again: register all three, wake all three */
    log.n = 0;
    for (int i = 0; i < 3; i++) {
        (void)ap_waitlist_cancel(&wl, &w[i]);
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    }
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 3);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(log.order[i], i);
}

Test(waitlist, cancel_head_middle_tail)
{
    check_cancel_position(0);
    check_cancel_position(1);
    check_cancel_position(2);
}

Test(waitlist, cancel_all_then_reuse)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w[3] = {AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER, AP_WAITER_INITIALIZER};
    tw t[3] = {{0}, {0}, {0}};
    for (int i = 0; i < 3; i++)
        ap_waitlist_register(&wl, &w[i], waker_of(&t[i]));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w[1]));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w[0]));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w[2]));
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_NULL(wl.head);
    EXPECT_NULL(wl.tail);
    ap_waitlist_register(&wl, &w[2], waker_of(&t[2]));
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 1);
    EXPECT_EQ(calls(&t[0]) + calls(&t[1]), 0);
    EXPECT_EQ(calls(&t[2]), 1);
}

Test(waitlist, cancel_after_wake_reports_true_once)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter w = AP_WAITER_INITIALIZER;
    tw t = {0};
    ap_waitlist_register(&wl, &w, waker_of(&t));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT(ap_waitlist_cancel(&wl, &w));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &w));
    /* idle again: it can be registered and woken anew */
    ap_waitlist_register(&wl, &w, waker_of(&t));
    EXPECT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&t), 2);
}

Test(waitlist, cancel_pass_hands_wake_to_next)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    ap_waiter a = AP_WAITER_INITIALIZER, b = AP_WAITER_INITIALIZER, c = AP_WAITER_INITIALIZER;
    tw ta = {0}, tb = {0}, tc = {0};
    ap_waitlist_register(&wl, &a, waker_of(&ta));
    ap_waitlist_register(&wl, &b, waker_of(&tb));
    ap_waitlist_register(&wl, &c, waker_of(&tc));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(calls(&tb), 0);
    ap_waitlist_cancel_pass(&wl, &a); /* a got the wake, then gave up: b gets it */
    EXPECT_EQ(calls(&tb), 1);
    EXPECT_EQ(calls(&tc), 0, "only one wake is passed on");
    ap_waitlist_cancel_pass(&wl, &c); /* c was never woken: nothing to pass */
    EXPECT_EQ(calls(&tb), 1);
    EXPECT_EQ(calls(&tc), 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    ap_waitlist_cancel_pass(&wl, &a); /* idempotent */
    EXPECT_EQ(calls(&tb), 1);
}

/* ---- cross-thread: cancel waits out a wake in progress ---- */

typedef struct slow_waker {
    atomic_int entered, finished;
} slow_waker;

static void slow_wake(void *ctx)
{
    slow_waker *s = ctx;
    atomic_store(&s->entered, 1);
    ms_sleep(30);
    atomic_store(&s->finished, 1);
}

static ap_waitlist slow_wl;

static void *wake_one_thread(void *arg)
{
    (void)arg;
    (void)ap_waitlist_wake(&slow_wl, 1);
    return NULL;
}

Test(waitlist, cancel_waits_for_wake_in_progress, .timeout = TEST_TIMEOUT_S)
{
    ap_waiter w = AP_WAITER_INITIALIZER;
    slow_waker s;
    atomic_init(&s.entered, 0);
    atomic_init(&s.finished, 0);
    ap_waitlist_register(&slow_wl, &w, (ap_waker){slow_wake, &s});
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, wake_one_thread, NULL), 0);
    while (!atomic_load(&s.entered))
        sched_yield();
    EXPECT(ap_waitlist_cancel(&slow_wl, &w), "the wake in progress is the caller's");
    EXPECT_EQ(atomic_load(&s.finished), 1,
              "cancel returned while the waker was still running");
    pthread_join(th, NULL);
}

Test(waitlist, reregister_waits_for_wake_in_progress, .timeout = TEST_TIMEOUT_S)
{
    ap_waiter w = AP_WAITER_INITIALIZER;
    slow_waker s;
    atomic_init(&s.entered, 0);
    atomic_init(&s.finished, 0);
    ap_waitlist_register(&slow_wl, &w, (ap_waker){slow_wake, &s});
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, wake_one_thread, NULL), 0);
    while (!atomic_load(&s.entered))
        sched_yield();
    tw t = {0};
    ap_waitlist_register(&slow_wl, &w, waker_of(&t)); /* new waker while old runs */
    EXPECT_EQ(atomic_load(&s.finished), 1, "register overwrote a waker in use");
    pthread_join(th, NULL);
    EXPECT_EQ(ap_waitlist_wake(&slow_wl, 1), 1);
    EXPECT_EQ(calls(&t), 1);
}

/* many threads wake while the owner registers and cancels: nothing is
 * woken after its cancel returned, and the list stays consistent */
typedef struct churn_waker {
    atomic_int live; /* 1 while registered, set to 0 after cancel returns */
    atomic_int bad;  /* wakes seen while not live */
    atomic_int wakes;
} churn_waker;

static void churn_wake(void *ctx)
{
    churn_waker *c = ctx;
    if (!atomic_load(&c->live))
        atomic_fetch_add(&c->bad, 1);
    atomic_fetch_add(&c->wakes, 1);
}

static ap_waitlist churn_wl;
static atomic_int churn_stop;

static void *churn_waker_thread(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !atomic_load(&churn_stop); i++) {
        if (i & 1)
            (void)ap_waitlist_wake(&churn_wl, 1);
        else
            (void)ap_waitlist_wake_all(&churn_wl);
        sched_yield(); /* two cores: leave the owner room to run */
    }
    return NULL;
}

Test(waitlist, concurrent_wake_and_cancel, .timeout = TEST_TIMEOUT_S)
{
    enum { OWNERS = 3, ROUNDS = 3000 };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, churn_waker_thread, NULL), 0);
    ap_waiter w[OWNERS];
    churn_waker c[OWNERS];
    for (int i = 0; i < OWNERS; i++) {
        ap_waiter_init(&w[i]);
        atomic_init(&c[i].live, 0);
        atomic_init(&c[i].bad, 0);
        atomic_init(&c[i].wakes, 0);
    }
    /* run until the wakers have met registered waiters often enough, so
     * a loaded machine that starts them late still tests the race */
    int met = 0;
    for (int r = 0; r < ROUNDS || met < 200; r++) {
        int i = r % OWNERS;
        if (i == 0) {
            met = 0;
            for (int k = 0; k < OWNERS; k++)
                met += atomic_load(&c[k].wakes);
        }
        atomic_store(&c[i].live, 1);
        ap_waitlist_register(&churn_wl, &w[i], (ap_waker){churn_wake, &c[i]});
        if (r & 1)
            sched_yield();
        (void)ap_waitlist_cancel(&churn_wl, &w[i]);
        atomic_store(&c[i].live, 0);
    }
    atomic_store(&churn_stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int wakes = 0;
    for (int i = 0; i < OWNERS; i++) {
        EXPECT_EQ(atomic_load(&c[i].bad), 0, "waiter %d woken after its cancel", i);
        wakes += atomic_load(&c[i].wakes);
    }
    EXPECT_GE(wakes, 200, "the wakers rarely met a registered waiter");
    EXPECT_NOT(ap_waitlist_has_waiters(&churn_wl));
    EXPECT_NULL(churn_wl.head);
    EXPECT_NULL(churn_wl.tail);
}

/* ---- ap_waitop_poll: register, then re-check ---- */

typedef struct script {
    ap_status answers[4];
    int calls;
    ap_waitlist *wl;
    bool linked_at_call[4]; /* was a waiter linked when try_op ran? */
} script;

static ap_status scripted_op(void *obj, void *arg)
{
    script *s = obj;
    (void)arg;
    int i = s->calls < 4 ? s->calls : 3;
    s->linked_at_call[i] = ap_waitlist_has_waiters(s->wl);
    s->calls++;
    return s->answers[i];
}

Test(waitlist, waitop_rechecks_after_registering)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    tw t = {0};
    ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
    script s = {{AP_EMPTY, AP_OK, AP_OK, AP_OK}, 0, &wl, {0}};
    ap_waitop op;
    ap_waitop_init(&op, &wl, scripted_op, &s, NULL);
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    EXPECT_EQ(s.calls, 2, "no re-check after registering");
    EXPECT_NOT(s.linked_at_call[0]);
    EXPECT(s.linked_at_call[1], "the re-check ran before the waiter was linked");
    EXPECT_EQ(ap_waitop_status(&op), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl), "a completed poll left its waiter linked");
    EXPECT_EQ(calls(&t), 0);
}

Test(waitlist, waitop_pending_stays_registered)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    tw t = {0};
    ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
    script s = {{AP_FULL, AP_FULL, AP_OK, AP_OK}, 0, &wl, {0}};
    ap_waitop op;
    ap_waitop_init(&op, &wl, scripted_op, &s, NULL);
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_PENDING);
    EXPECT_EQ(ap_waitop_status(&op), AP_NOT_READY, "a result while pending");
    EXPECT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    EXPECT_EQ(ap_waitop_status(&op), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_NOT(ap_waitlist_cancel(&wl, &op.waiter), "the consumed wake is reported again");
}

Test(waitlist, waitop_again_is_never_left_hanging)
{
    /* AP_AGAIN promises no wake from anyone: each pending poll must either
     * call the waker itself or lower cx->deadline to a near instant */
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    tw t = {0};
    script s = {{AP_AGAIN, AP_AGAIN, AP_AGAIN, AP_AGAIN}, 0, &wl, {0}};
    ap_waitop op;
    ap_waitop_init(&op, &wl, scripted_op, &s, NULL);
    uint64_t now = 1000 * AP_NS_PER_SEC;
    for (int i = 0; i < 40; i++) {
        ap_cx cx = {waker_of(&t), now, AP_DEADLINE_NONE};
        int before = calls(&t);
        EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_PENDING);
        bool woke = calls(&t) > before;
        EXPECT(woke || cx.deadline <= now + 10 * AP_NS_PER_MS,
               "poll %d: AP_AGAIN returned pending with no wake and no near deadline", i);
        EXPECT_GE(cx.deadline, now, "poll %d: deadline in the past of cx->now", i);
        now += AP_NS_PER_US;
    }
    s.answers[3] = AP_OK;
    ap_cx cx = {waker_of(&t), now, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    EXPECT_EQ(ap_waitop_status(&op), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
}

Test(waitlist, waitop_other_status_completes)
{
    ap_status outcomes[] = {AP_CLOSED, AP_INVAL, AP_OK};
    for (int i = 0; i < 3; i++) {
        ap_waitlist wl = AP_WAITLIST_INITIALIZER;
        tw t = {0};
        ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
        script s = {{AP_EMPTY, outcomes[i], AP_OK, AP_OK}, 0, &wl, {0}};
        ap_waitop op;
        ap_waitop_init(&op, &wl, scripted_op, &s, NULL);
        EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
        EXPECT_EQ(ap_waitop_status(&op), outcomes[i]);
        EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    }
}

/* ---- ap_waitop ---- */

typedef struct counter_obj {
    int avail; /* items available */
    int calls;
    ap_status when_none;
} counter_obj;

static ap_status take_one(void *obj, void *arg)
{
    counter_obj *c = obj;
    c->calls++;
    if (c->avail == 0)
        return c->when_none;
    c->avail--;
    *(int *)arg += 1;
    return AP_OK;
}

Test(waitlist, waitop_lifecycle_pending_wake_ready)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {0, 0, AP_EMPTY};
    int got = 0;
    ap_waitop op;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    EXPECT_EQ(ap_waitop_status(&op), AP_NOT_READY);
    EXPECT((void *)&op.base == (void *)&op, "ap_future must be the first member");
    tw t = {0};
    ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
    EXPECT_EQ(op.base.poll(&op.base, &cx), AP_PENDING);
    EXPECT_EQ(ap_waitop_status(&op), AP_NOT_READY);
    c.avail = 1;
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    EXPECT_EQ(ap_waitop_status(&op), AP_OK);
    EXPECT_EQ(got, 1);
    int before = c.calls;
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY, "a completed op stays ready");
    EXPECT_EQ(c.calls, before, "a completed op ran its operation again");
    EXPECT_EQ(got, 1);
}

Test(waitlist, waitop_cancel_idempotent_and_final)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {0, 0, AP_FULL};
    int got = 0;
    ap_waitop op;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    tw t = {0};
    ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_PENDING);
    op.base.cancel(&op.base);
    EXPECT_EQ(ap_waitop_status(&op), AP_CANCELED);
    ap_waitop_cancel(&op);
    ap_future_cancel(&op.base);
    EXPECT_EQ(ap_waitop_status(&op), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
    EXPECT_EQ(ap_waitlist_wake_all(&wl), 0);
    EXPECT_EQ(calls(&t), 0);
    c.avail = 1;
    int before = c.calls;
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    EXPECT_EQ(ap_waitop_status(&op), AP_CANCELED);
    EXPECT_EQ(c.calls, before, "a cancelled op ran its operation");
    EXPECT_EQ(c.avail, 1);
}

Test(waitlist, waitop_cancel_after_completion_keeps_result)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {1, 0, AP_EMPTY};
    int got = 0;
    ap_waitop op;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    tw t = {0};
    ap_cx cx = {waker_of(&t), 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_waitop_poll(&op, &cx), AP_READY);
    ap_waitop_cancel(&op);
    ap_waitop_cancel(&op);
    EXPECT_EQ(ap_waitop_status(&op), AP_OK);
    EXPECT_EQ(got, 1);
}

Test(waitlist, waitop_cancel_of_woken_op_passes_wake)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {0, 0, AP_EMPTY};
    int got1 = 0, got2 = 0;
    ap_waitop a, b;
    ap_waitop_init(&a, &wl, take_one, &c, &got1);
    ap_waitop_init(&b, &wl, take_one, &c, &got2);
    tw ta = {0}, tb = {0};
    ap_cx cxa = {waker_of(&ta), 0, AP_DEADLINE_NONE};
    ap_cx cxb = {waker_of(&tb), 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_waitop_poll(&a, &cxa), AP_PENDING);
    EXPECT_EQ(ap_waitop_poll(&b, &cxb), AP_PENDING);
    c.avail = 1;
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(calls(&tb), 0);
    ap_waitop_cancel(&a);
    EXPECT_EQ(calls(&tb), 1, "the wake of a cancelled op was lost");
    EXPECT_EQ(ap_waitop_poll(&b, &cxb), AP_READY);
    EXPECT_EQ(ap_waitop_status(&b), AP_OK);
    EXPECT_EQ(got1 + got2, 1);
    EXPECT_EQ(got2, 1);
}

Test(waitlist, waitop_wait_times_out_and_cancels)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {0, 0, AP_EMPTY};
    int got = 0;
    ap_waitop op;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    EXPECT_EQ(ap_waitop_wait(&op, 0), AP_TIMEDOUT);
    EXPECT_EQ(ap_waitop_status(&op), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl), "timed-out op left a waiter linked");
    EXPECT_EQ(got, 0);

    uint64_t deadline = ap_now_ns() + 5 * AP_NS_PER_MS;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    EXPECT_EQ(ap_waitop_wait(&op, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline, "timed out before the deadline");
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
}

Test(waitlist, waitop_wait_returns_operation_result)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    counter_obj c = {0, 0, AP_CLOSED};
    int got = 0;
    ap_waitop op;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    EXPECT_EQ(ap_waitop_wait(&op, AP_DEADLINE_NONE), AP_CLOSED);
    c.when_none = AP_EMPTY;
    c.avail = 1;
    ap_waitop_init(&op, &wl, take_one, &c, &got);
    EXPECT_EQ(ap_waitop_wait(&op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(got, 1);
}

/* A waitop parked in ap_block_on, woken by another thread. */
typedef struct shared_counter {
    atomic_int avail;
} shared_counter;

static ap_status take_shared(void *obj, void *arg)
{
    shared_counter *s = obj;
    int v = atomic_load(&s->avail);
    while (v > 0)
        if (atomic_compare_exchange_weak(&s->avail, &v, v - 1)) {
            *(int *)arg += 1;
            return AP_OK;
        }
    return AP_EMPTY;
}

static ap_waitlist xt_wl;
static shared_counter xt_obj;

static void *xt_producer(void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++) {
        if (i % 50 == 0)
            ms_sleep(1);
        atomic_fetch_add(&xt_obj.avail, 1); /* publish (seq_cst) ... */
        (void)ap_waitlist_wake(&xt_wl, 1); /* ... then wake */
    }
    return NULL;
}

Test(waitlist, waitop_wait_woken_across_threads_no_lost_wake, .timeout = TEST_TIMEOUT_S)
{
    int n = 2000, got = 0;
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, xt_producer, &n), 0);
    for (int i = 0; i < n; i++) {
        ap_waitop op;
        ap_waitop_init(&op, &xt_wl, take_shared, &xt_obj, &got);
        EXPECT_EQ(ap_waitop_wait(&op, AP_DEADLINE_NONE), AP_OK);
    }
    pthread_join(th, NULL);
    EXPECT_EQ(got, n);
    EXPECT_EQ(atomic_load(&xt_obj.avail), 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&xt_wl));
}

/* The stolen wake (found by tests/verify, mpmc_2p1c_cap1): op A is linked
 * at the head with B behind it. A is re-polled and its try_op succeeds;
 * meanwhile (simulated inside try_op) another thread frees a second slot
 * and wakes one waiter: A, the head, which no longer needs it. A must pass
 * that wake on to B, or B sleeps through a free slot. */
typedef struct steal_obj {
    ap_waitlist *wl;
    int avail;
    bool wake_inside;
} steal_obj;

static ap_status take_and_race(void *obj, void *arg)
{
    steal_obj *s = obj;
    (void)arg;
    if (s->avail == 0)
        return AP_FULL;
    s->avail--;
    if (s->wake_inside) { /* "another thread" frees a slot right now */
        s->wake_inside = false;
        s->avail++;
        (void)ap_waitlist_wake(s->wl, 1);
    }
    return AP_OK;
}

Test(waitlist, waitop_passes_on_a_wake_it_did_not_use)
{
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    steal_obj s = {&wl, 0, false};
    tw ta = {0}, tb = {0};
    ap_cx cxa = {waker_of(&ta), 0, AP_DEADLINE_NONE}, cxb = {waker_of(&tb), 0, AP_DEADLINE_NONE};
    ap_waitop a, b;
    ap_waitop_init(&a, &wl, take_and_race, &s, NULL);
    ap_waitop_init(&b, &wl, take_and_race, &s, NULL);
    EXPECT_EQ(ap_waitop_poll(&a, &cxa), AP_PENDING);
    EXPECT_EQ(ap_waitop_poll(&b, &cxb), AP_PENDING);
    s.avail = 1;            /* A finds a slot on its own (a spurious re-poll) */
    s.wake_inside = true;   /* and a second one frees up while it takes it */
    EXPECT_EQ(ap_waitop_poll(&a, &cxa), AP_READY);
    EXPECT_EQ(ap_waitop_status(&a), AP_OK);
    EXPECT_EQ(calls(&tb), 1, "the wake A did not use was not passed on to B");
    EXPECT_EQ(ap_waitop_poll(&b, &cxb), AP_READY);
    EXPECT_EQ(ap_waitop_status(&b), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&wl));
}

Test(waitlist, waitop_consumes_a_wake_that_came_before_its_poll)
{
    /* the usual case costs no extra wake: A woken, then re-polled, succeeds */
    ap_waitlist wl = AP_WAITLIST_INITIALIZER;
    steal_obj s = {&wl, 0, false};
    tw ta = {0}, tb = {0};
    ap_cx cxa = {waker_of(&ta), 0, AP_DEADLINE_NONE}, cxb = {waker_of(&tb), 0, AP_DEADLINE_NONE};
    ap_waitop a, b;
    ap_waitop_init(&a, &wl, take_and_race, &s, NULL);
    ap_waitop_init(&b, &wl, take_and_race, &s, NULL);
    EXPECT_EQ(ap_waitop_poll(&a, &cxa), AP_PENDING);
    EXPECT_EQ(ap_waitop_poll(&b, &cxb), AP_PENDING);
    s.avail = 1;
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(ap_waitop_poll(&a, &cxa), AP_READY);
    EXPECT_EQ(calls(&tb), 0, "a spurious wake for B");
    ap_waitop_cancel(&b);
}

/* ---- ap_grant: the grant queue ----
 * A toy primitive: a count of units; a request asks for n units at once.
 * Single-threaded: the tests drive every step themselves. */

typedef struct toy {
    ap_waitlist wl;
    size_t avail;
    bool closed;
    bool refuse_pass; /* can_serve says no */
    int grants, gives, can_calls;
    bool granted_under_lock; /* every grant ran with the list lock held */
} toy;

typedef struct toy_req {
    ap_grant g;
    size_t n, got;
    int id;
} toy_req;

static bool toy_grant(void *obj, ap_grant *g, void *ctx)
{
    toy *t = (toy *)obj;
    toy_req *r = AP_CONTAINER_OF(g, toy_req, g);
    (void)ctx;
    if (atomic_load(&t->wl.lock.held) == 0)
        t->granted_under_lock = false;
    if (t->closed || t->avail < r->n)
        return false;
    t->avail -= r->n;
    r->got = r->n;
    t->grants++;
    return true;
}

static bool toy_can_serve(void *obj, void *ctx)
{
    toy *t = (toy *)obj;
    (void)ctx;
    t->can_calls++;
    return !t->refuse_pass;
}

static bool toy_closed(void *obj) { return ((toy *)obj)->closed; }

static const ap_grant_ops toy_ops_v;

static void toy_give_back(void *obj, ap_grant *g)
{
    toy *t = (toy *)obj;
    toy_req *r = AP_CONTAINER_OF(g, toy_req, g);
    t->avail += r->got;
    r->got = 0;
    t->gives++;
    (void)ap_grant_serve(&t->wl, &toy_ops_v, t, NULL); /* pass it on */
}

static const ap_grant_ops toy_ops_v = {toy_grant, toy_can_serve, toy_closed, toy_give_back};

static void toy_init(toy *t, size_t avail)
{
    memset(t, 0, sizeof *t);
    ap_waitlist_init(&t->wl);
    t->avail = avail;
    t->granted_under_lock = true;
}

/* release n units: what a primitive's release does (serve if anyone waits) */
static size_t toy_release(toy *t, size_t n)
{
    t->avail += n;
    return ap_waitlist_has_waiters(&t->wl) ? ap_grant_serve(&t->wl, &toy_ops_v, t, NULL) : 0;
}

static ap_status toy_poll(toy *t, toy_req *r, tw *w)
{
    ap_cx cx = cx_of(w);
    return ap_grant_poll(&t->wl, &toy_ops_v, t, &r->g, &cx);
}

static void toy_req_init(toy_req *r, size_t n, int id)
{
    ap_grant_init(&r->g);
    r->n = n;
    r->got = 0;
    r->id = id;
}

Test(waitlist, grant_serves_fifo_without_barging)
{
    toy t;
    toy_init(&t, 0);
    wake_log log = {{0}, 0};
    tw wa = {0, 1, &log}, wb = {0, 2, &log}, wc = {0, 3, &log};
    toy_req a, b, c;
    toy_req_init(&a, 2, 1);
    toy_req_init(&b, 1, 2);
    toy_req_init(&c, 1, 3);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_NOT_READY);
    EXPECT_EQ(toy_poll(&t, &c, &wc), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 1), 0, "one unit: the head needs two, nobody behind it goes first");
    EXPECT_EQ(b.got, 0, "B barged past A");
    EXPECT_EQ(t.avail, 1);
    EXPECT_EQ(toy_release(&t, 2), 2, "three units: A (2) then B (1)");
    EXPECT_EQ(a.got, 2);
    EXPECT_EQ(b.got, 1);
    EXPECT_EQ(c.got, 0);
    EXPECT_EQ(log.n, 2);
    EXPECT_EQ(log.order[0], 1);
    EXPECT_EQ(log.order[1], 2);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_OK);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_OK);
    EXPECT_EQ(toy_poll(&t, &c, &wc), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 1), 1);
    EXPECT_EQ(toy_poll(&t, &c, &wc), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl));
    EXPECT(t.granted_under_lock, "a grant ran without the list lock");
}

Test(waitlist, grant_wakes_after_unlock)
{
    toy t;
    toy_init(&t, 0);
    lock_probe pa = {&t.wl, 0, 0}, pb = {&t.wl, 0, 0};
    toy_req a, b;
    toy_req_init(&a, 1, 1);
    toy_req_init(&b, 1, 2);
    ap_cx cxa = {{probe_wake, &pa}, 0, AP_DEADLINE_NONE};
    ap_cx cxb = {{probe_wake, &pb}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_grant_poll(&t.wl, &toy_ops_v, &t, &a.g, &cxa), AP_NOT_READY);
    EXPECT_EQ(ap_grant_poll(&t.wl, &toy_ops_v, &t, &b.g, &cxb), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 2), 2);
    EXPECT_EQ(pa.calls, 1);
    EXPECT_EQ(pb.calls, 1);
    EXPECT_EQ(pa.under_lock + pb.under_lock, 0, "a waker ran under the list lock");
    EXPECT_EQ(ap_grant_poll(&t.wl, &toy_ops_v, &t, &a.g, &cxa), AP_OK);
    EXPECT_EQ(ap_grant_poll(&t.wl, &toy_ops_v, &t, &b.g, &cxb), AP_OK);
}

Test(waitlist, grant_cancel_after_grant_passes_it_on)
{
    toy t;
    toy_init(&t, 0);
    tw wa = {0}, wb = {0};
    toy_req a, b;
    toy_req_init(&a, 1, 1);
    toy_req_init(&b, 1, 2);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 1), 1);
    EXPECT_EQ(a.got, 1);
    EXPECT_EQ(calls(&wa), 1);
    ap_grant_cancel(&t.wl, &toy_ops_v, &t, &a.g); /* granted, then cancelled */
    EXPECT_EQ(t.gives, 1, "the grant was not given back");
    EXPECT_EQ(a.got, 0);
    EXPECT_EQ(b.got, 1, "the grant given back did not pass on to B");
    EXPECT_EQ(calls(&wb), 1);
    EXPECT_EQ(t.avail, 0);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl));
}

Test(waitlist, grant_cancel_of_a_blocking_head_serves_those_behind)
{
    toy t;
    toy_init(&t, 1);
    tw wa = {0}, wb = {0};
    toy_req a, b;
    toy_req_init(&a, 3, 1);
    toy_req_init(&b, 1, 2);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY, "3 of 1");
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_NOT_READY, "B queues behind A although 1 is free");
    EXPECT_EQ(b.got, 0);
    ap_grant_cancel(&t.wl, &toy_ops_v, &t, &a.g);
    EXPECT_EQ(t.gives, 0, "a request never granted gave something back");
    EXPECT_EQ(b.got, 1, "A's cancel left B waiting with a unit free");
    EXPECT_EQ(calls(&wb), 1);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_OK);
}

Test(waitlist, grant_poll_rechecks_after_registering)
{
    /* units that appeared with nobody queued (a release that saw no
     * waiter) are taken by the poll's own pass: the waiting side of the
     * ladder */
    toy t;
    toy_init(&t, 0);
    tw wa = {0};
    toy_req a;
    toy_req_init(&a, 1, 1);
    t.avail = 1; /* released before a's registration, waking nobody */
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_OK, "the poll did not re-check after registering");
    EXPECT_EQ(a.got, 1);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl), "a granted request stayed linked");
}

Test(waitlist, grant_close_and_grant_before_close)
{
    toy t;
    toy_init(&t, 0);
    tw wa = {0}, wb = {0};
    toy_req a, b;
    toy_req_init(&a, 1, 1);
    toy_req_init(&b, 1, 2);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 1), 1); /* A granted */
    t.closed = true;
    EXPECT_EQ(ap_waitlist_wake_all(&t.wl), 1, "only B is still linked");
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_OK, "a grant made before close completes AP_OK");
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_CLOSED);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl));
}

Test(waitlist, grant_relinked_request_is_not_granted_twice)
{
    /* A granted request that raced back into the list (its owner
     * re-registered before seeing the grant) is woken again, not given a
     * second grant, and does not stop the pass: B behind it is served. */
    toy t;
    toy_init(&t, 0);
    tw wa = {0}, wb = {0};
    toy_req a, b;
    toy_req_init(&a, 1, 1);
    toy_req_init(&b, 1, 2);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY);
    EXPECT_EQ(toy_release(&t, 1), 1);
    EXPECT_EQ(t.grants, 1);
    ap_waitlist_register(&t.wl, &a.g.waiter, waker_of(&wa)); /* the race */
    t.avail = 1; /* one more unit, for B */
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_OK, "B's pass stopped at A, or A took B's unit");
    EXPECT_EQ(t.grants, 2, "A was granted twice");
    EXPECT_EQ(a.got, 1);
    EXPECT_EQ(b.got, 1);
    EXPECT_EQ(calls(&wa), 2, "A (linked again) was not woken again");
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_OK);
    EXPECT_EQ(t.avail, 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl));
}

Test(waitlist, grant_can_serve_skips_the_pass)
{
    toy t;
    toy_init(&t, 0);
    tw wa = {0};
    toy_req a;
    toy_req_init(&a, 1, 1);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_NOT_READY);
    t.refuse_pass = true;
    int before = t.can_calls;
    EXPECT_EQ(toy_release(&t, 1), 0, "the pass ran although can_serve said no");
    EXPECT_EQ(t.can_calls, before + 1);
    EXPECT_EQ(a.got, 0);
    t.refuse_pass = false;
    ap_grant_dispatch(&t.wl, &toy_ops_v, &t);
    EXPECT_EQ(a.got, 1);
    EXPECT_EQ(toy_poll(&t, &a, &wa), AP_OK);
}

Test(waitlist, grant_cancel_of_a_request_never_queued_does_nothing)
{
    toy t;
    toy_init(&t, 0);
    tw wb = {0};
    toy_req a, b;
    toy_req_init(&a, 1, 1);
    toy_req_init(&b, 1, 2);
    EXPECT_EQ(toy_poll(&t, &b, &wb), AP_NOT_READY);
    t.avail = 1; /* B could be served, but a never-queued cancel runs no pass */
    ap_grant_cancel(&t.wl, &toy_ops_v, &t, &a.g);
    EXPECT_EQ(t.gives, 0);
    EXPECT_EQ(t.can_calls, 1, "a cancel of a request that never queued ran a pass");
    EXPECT_EQ(b.got, 0);
    ap_grant_cancel(&t.wl, &toy_ops_v, &t, &b.g);
    EXPECT_NOT(ap_waitlist_has_waiters(&t.wl));
}
