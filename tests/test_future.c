/*
 * tests/test_future.c -- ap_waker, ap_cx, ap_future, ap_block_on(_until)
 *
 * tests/test_future_condvar.c includes this file after defining
 * AP_BLOCK_ON_CONDVAR, so every test here also runs against the
 * condition-variable parker (suite "future_condvar").
 */
/* A deterministic hook into the window between "check for a wake" and
 * "sleep" inside the parker (config.h: AP_TEST_YIELD): a test can make a
 * wake land exactly there. */
#include <stddef.h>
static _Thread_local void (*yield_once)(void *);
static _Thread_local void *yield_arg;
static void test_yield(void)
{
    void (*fn)(void *) = yield_once;
    if (fn) {
        yield_once = NULL;
        fn(yield_arg);
    }
}
#define AP_TEST_YIELD() test_yield()

#include "asyncpat/future.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>


#ifndef FUTURE_SUITE
#define FUTURE_SUITE future
#endif

#if defined(__linux__) && !defined(AP_BLOCK_ON_CONDVAR) && !defined(AP__PARK_FUTEX)
#error "on Linux the default parker should be the futex one"
#endif


/* ---- a counting waker ---- */

typedef struct counter { atomic_int n; void *last_ctx; } counter;

static void count_wake(void *ctx)
{
    counter *c = ctx;
    c->last_ctx = ctx;
    atomic_fetch_add(&c->n, 1);
}

Test(FUTURE_SUITE, waker_wake_calls_function_with_ctx)
{
    counter c = {0, NULL};
    ap_waker w = {count_wake, &c};
    ap_waker_wake(w);
    ap_waker_wake(w);
    EXPECT_EQ(atomic_load(&c.n), 2);
    EXPECT_EQ(c.last_ctx, &c);
}

Test(FUTURE_SUITE, waker_none_is_a_noop)
{
    ap_waker none = AP_WAKER_NONE;
    EXPECT_NULL(none.wake);
    EXPECT_NULL(none.ctx);
    ap_waker_wake(none); /* would crash if it called through NULL */
    ap_waker nofn = {NULL, (void *)&none};
    ap_waker_wake(nofn);
}

Test(FUTURE_SUITE, cx_wake_at_only_lowers)
{
    ap_cx cx = {AP_WAKER_NONE, 100, AP_DEADLINE_NONE};
    ap_cx_wake_at(&cx, 500);
    EXPECT_EQ(cx.deadline, 500);
    ap_cx_wake_at(&cx, 900);
    EXPECT_EQ(cx.deadline, 500, "wake_at raised an earlier deadline");
    ap_cx_wake_at(&cx, 200);
    EXPECT_EQ(cx.deadline, 200);
    ap_cx_wake_at(&cx, 0);
    EXPECT_EQ(cx.deadline, 0);
    ap_cx_wake_at(&cx, AP_DEADLINE_NONE);
    EXPECT_EQ(cx.deadline, 0);
}

/* ---- test futures ---- */

/* scripted: pending `pending_polls` times, then ready. Optionally lowers
 * the deadline to `lower_to` or wakes itself from inside poll. */
typedef struct script_fut {
    ap_future base;
    int pending_polls;
    int polls, cancels;
    bool self_wake;
    bool lower;
    uint64_t lower_to;
    bool saw_waker;
    uint64_t first_now, last_now;
} script_fut;

static ap_poll script_poll(ap_future *f, ap_cx *cx)
{
    script_fut *s = (script_fut *)(void *)f;
    if (s->polls == 0)
        s->first_now = cx->now;
    s->last_now = cx->now;
    s->saw_waker = cx->waker.wake != NULL;
    if (s->polls++ >= s->pending_polls)
        return AP_READY;
    if (s->lower)
        ap_cx_wake_at(cx, s->lower_to);
    if (s->self_wake)
        ap_waker_wake(cx->waker);
    return AP_PENDING;
}

static void script_cancel(ap_future *f)
{
    ((script_fut *)(void *)f)->cancels++;
}

static script_fut script(int pending_polls)
{
    script_fut s = {{script_poll, script_cancel}, pending_polls, 0, 0, false, false, 0, false, 0, 0};
    return s;
}

Test(FUTURE_SUITE, future_cancel_through_vtable)
{
    script_fut s = script(0);
    ap_future_cancel(&s.base);
    EXPECT_EQ(s.cancels, 1);
    s.base.cancel = NULL;
    ap_future_cancel(&s.base); /* no cancel: nothing happens */
    EXPECT_EQ(s.cancels, 1);
}

Test(FUTURE_SUITE, block_on_ready_immediately, .timeout = TEST_TIMEOUT_S)
{
    script_fut s = script(0);
    uint64_t before = ap_now_ns();
    ap_block_on(&s.base);
    uint64_t after = ap_now_ns();
    EXPECT_EQ(s.polls, 1);
    EXPECT_EQ(s.cancels, 0, "a completed future was cancelled");
    EXPECT(s.saw_waker, "ap_block_on polled without a waker");
    EXPECT(s.first_now >= before && s.first_now <= after,
              "cx->now is not the current monotonic time");
}

Test(FUTURE_SUITE, block_on_until_ready_future_wins_over_past_deadline, .timeout = TEST_TIMEOUT_S)
{
    script_fut s = script(0);
    EXPECT_EQ(ap_block_on_until(&s.base, 0), AP_OK);
    EXPECT_EQ(s.polls, 1);
    EXPECT_EQ(s.cancels, 0);
}

Test(FUTURE_SUITE, block_on_until_past_deadline_times_out_and_cancels, .timeout = TEST_TIMEOUT_S)
{
    uint64_t deadlines[] = {0, 1, ap_now_ns() - 1};
    for (int i = 0; i < 3; i++) {
        script_fut s = script(1000000);
        EXPECT_EQ(ap_block_on_until(&s.base, deadlines[i]), AP_TIMEDOUT);
        EXPECT_GE(s.polls, 1);
        EXPECT_LT(s.polls, 5, "a passed deadline should end the wait at once");
        EXPECT_EQ(s.cancels, 1, "a timed-out future must be cancelled exactly once");
    }
}

Test(FUTURE_SUITE, block_on_until_near_deadline_times_out_and_cancels, .timeout = TEST_TIMEOUT_S)
{
    script_fut s = script(1000000);
    uint64_t deadline = ap_now_ns() + 20 * AP_NS_PER_MS;
    EXPECT_EQ(ap_block_on_until(&s.base, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline, "AP_TIMEDOUT before the deadline");
    EXPECT_EQ(s.cancels, 1);
    EXPECT_GE(s.polls, 1);
    /* nothing woke it: a parked driver polls about twice, a busy one
     * thousands of times */
    EXPECT_LT(s.polls, 50, "ap_block_on_until busy-polled (%d polls)", s.polls);
}

Test(FUTURE_SUITE, block_on_until_timeout_without_cancel_fn, .timeout = TEST_TIMEOUT_S)
{
    script_fut s = script(1000000);
    s.base.cancel = NULL;
    EXPECT_EQ(ap_block_on_until(&s.base, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_EQ(s.cancels, 0);
}

/* ready once cx->now >= at; lowers cx->deadline to `at`; never keeps the
 * waker, so only the deadline can bring the re-poll. */
typedef struct time_fut {
    ap_future base;
    uint64_t at;
    int polls, cancels;
    uint64_t ready_now;
} time_fut;

static ap_poll time_poll(ap_future *f, ap_cx *cx)
{
    time_fut *t = (time_fut *)(void *)f;
    t->polls++;
    if (cx->now >= t->at) {
        t->ready_now = cx->now;
        return AP_READY;
    }
    ap_cx_wake_at(cx, t->at);
    return AP_PENDING;
}

static void time_cancel(ap_future *f) { ((time_fut *)(void *)f)->cancels++; }

Test(FUTURE_SUITE, lowered_deadline_repolls_without_wake, .timeout = TEST_TIMEOUT_S)
{
    time_fut t = {{time_poll, time_cancel}, ap_now_ns() + 10 * AP_NS_PER_MS, 0, 0, 0};
    ap_block_on(&t.base);
    EXPECT_GE(t.ready_now, t.at);
    EXPECT_GE(ap_now_ns(), t.at);
    EXPECT_GE(t.polls, 2, "it was pending at first");
    EXPECT_LT(t.polls, 50, "ap_block_on busy-polled instead of sleeping (%d)", t.polls);
    EXPECT_EQ(t.cancels, 0);
}

Test(FUTURE_SUITE, lowered_deadline_earlier_than_block_deadline, .timeout = TEST_TIMEOUT_S)
{
    time_fut t = {{time_poll, time_cancel}, ap_now_ns() + 5 * AP_NS_PER_MS, 0, 0, 0};
    EXPECT_EQ(ap_block_on_until(&t.base, ap_now_ns() + 60 * AP_NS_PER_SEC), AP_OK);
    EXPECT_GE(t.ready_now, t.at);
    EXPECT_EQ(t.cancels, 0);
}

Test(FUTURE_SUITE, block_deadline_earlier_than_lowered_deadline, .timeout = TEST_TIMEOUT_S)
{
    /* the future wants a re-poll in 60 s; the caller gives up after 10 ms
     * (the test's timeout catches a driver that waits for the future) */
    time_fut t = {{time_poll, time_cancel}, ap_now_ns() + 60 * AP_NS_PER_SEC, 0, 0, 0};
    uint64_t deadline = ap_now_ns() + 10 * AP_NS_PER_MS;
    EXPECT_EQ(ap_block_on_until(&t.base, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline);
    EXPECT_EQ(t.cancels, 1);
}

Test(FUTURE_SUITE, deadline_in_the_past_repolls_at_once, .timeout = TEST_TIMEOUT_S)
{
    script_fut s = script(5);
    s.lower = true;
    s.lower_to = 0; /* "poll me again now" */
    ap_block_on(&s.base);
    EXPECT_EQ(s.polls, 6);
    EXPECT_EQ(s.cancels, 0);
}

Test(FUTURE_SUITE, wake_during_poll_is_not_lost, .timeout = TEST_TIMEOUT_S)
{
    /* the waker runs before ap_block_on has parked: the notification must
     * survive until the park, or this hangs */
    script_fut s = script(20);
    s.self_wake = true;
    ap_block_on(&s.base);
    EXPECT_EQ(s.polls, 21);
}

/* woken once early (a spurious wake), then only the deadline brings it */
typedef struct early_wake_fut {
    ap_future base;
    uint64_t at;
    int polls;
} early_wake_fut;

static ap_poll early_wake_poll(ap_future *f, ap_cx *cx)
{
    early_wake_fut *e = (early_wake_fut *)(void *)f;
    if (e->polls++ == 0)
        ap_waker_wake(cx->waker);
    if (cx->now >= e->at)
        return AP_READY;
    ap_cx_wake_at(cx, e->at);
    return AP_PENDING;
}

Test(FUTURE_SUITE, one_wake_does_not_make_the_driver_spin, .timeout = TEST_TIMEOUT_S)
{
    early_wake_fut e = {{early_wake_poll, NULL}, ap_now_ns() + 10 * AP_NS_PER_MS, 0};
    ap_block_on(&e.base);
    EXPECT_GE(ap_now_ns(), e.at);
    EXPECT_GE(e.polls, 2);
    EXPECT_LT(e.polls, 50, "a consumed wake kept the driver polling (%d polls)", e.polls);
}

/* pending once; its wake fires inside the parker, after the last check
 * for a notification and before the sleep */
typedef struct late_wake_fut {
    ap_future base;
    ap_waker waker;
    bool ready;
    int polls;
} late_wake_fut;

static void fire_late(void *arg)
{
    late_wake_fut *l = arg;
    l->ready = true;
    ap_waker_wake(l->waker);
}

static ap_poll late_wake_poll(ap_future *f, ap_cx *cx)
{
    late_wake_fut *l = (late_wake_fut *)(void *)f;
    l->polls++;
    if (l->ready)
        return AP_READY;
    l->waker = cx->waker;
    yield_once = fire_late;
    yield_arg = l;
    return AP_PENDING;
}

Test(FUTURE_SUITE, wake_between_check_and_sleep_is_not_lost, .timeout = TEST_TIMEOUT_S)
{
    late_wake_fut l = {{late_wake_poll, NULL}, AP_WAKER_NONE, false, 0};
    ap_block_on(&l.base); /* hangs (test timeout) if the parker loses it */
    EXPECT(l.ready);
    EXPECT_EQ(l.polls, 2);
    EXPECT_NULL(yield_once, "the parker never reached its check-then-sleep window");
}

/* ---- woken by another thread ---- */

typedef struct flag_fut {
    ap_future base;
    pthread_mutex_t mu; /* the waker is called under it: after READY or
                         * cancel returns, no wake is in progress */
    bool ready;
    ap_waker waker;
    int polls, cancels, wakes;
} flag_fut;

static ap_poll flag_poll(ap_future *f, ap_cx *cx)
{
    flag_fut *g = (flag_fut *)(void *)f;
    pthread_mutex_lock(&g->mu);
    g->polls++;
    bool r = g->ready;
    g->waker = r ? AP_WAKER_NONE : cx->waker;
    pthread_mutex_unlock(&g->mu);
    return r ? AP_READY : AP_PENDING;
}

static void flag_cancel(ap_future *f)
{
    flag_fut *g = (flag_fut *)(void *)f;
    pthread_mutex_lock(&g->mu);
    g->cancels++;
    g->waker = AP_WAKER_NONE;
    pthread_mutex_unlock(&g->mu);
}

static void flag_init(flag_fut *g)
{
    g->base.poll = flag_poll;
    g->base.cancel = flag_cancel;
    pthread_mutex_init(&g->mu, NULL);
    g->ready = false;
    g->waker = AP_WAKER_NONE;
    g->polls = g->cancels = g->wakes = 0;
}

static void flag_set(flag_fut *g)
{
    pthread_mutex_lock(&g->mu);
    g->ready = true;
    if (g->waker.wake) {
        g->wakes++;
        ap_waker_wake(g->waker);
    }
    pthread_mutex_unlock(&g->mu);
}

static void *set_after_ms(void *arg)
{
    ms_sleep(5);
    flag_set(arg);
    return NULL;
}

Test(FUTURE_SUITE, block_on_woken_by_another_thread, .timeout = TEST_TIMEOUT_S)
{
    flag_fut g;
    flag_init(&g);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, set_after_ms, &g), 0);
    ap_block_on(&g.base);
    EXPECT(g.ready);
    pthread_join(th, NULL);
    EXPECT_GE(g.polls, 2, "it should have been pending first");
    EXPECT_EQ(g.wakes, 1, "the setter found no waker registered");
    EXPECT_LT(g.polls, 50, "busy-polled (%d)", g.polls);
    EXPECT_EQ(g.cancels, 0);
    pthread_mutex_destroy(&g.mu);
}

Test(FUTURE_SUITE, block_on_until_woken_before_deadline, .timeout = TEST_TIMEOUT_S)
{
    flag_fut g;
    flag_init(&g);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, set_after_ms, &g), 0);
    EXPECT_EQ(ap_block_on_until(&g.base, ap_now_ns() + 30 * AP_NS_PER_SEC), AP_OK);
    pthread_join(th, NULL);
    EXPECT(g.ready);
    EXPECT_EQ(g.cancels, 0);
    pthread_mutex_destroy(&g.mu);
}

/* A deadline a century away is more seconds than a 32-bit time_t holds
 * (i386, arm32): the park must still sleep (a shorter sleep is a spurious
 * return), not hand the kernel a negative time and spin. */
Test(FUTURE_SUITE, block_on_until_far_deadline_sleeps, .timeout = TEST_TIMEOUT_S)
{
    flag_fut g;
    flag_init(&g);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, set_after_ms, &g), 0);
    uint64_t far = ap_deadline_after(ap_now_ns(), (uint64_t)100 * 365 * 86400 * AP_NS_PER_SEC);
    EXPECT_EQ(ap_block_on_until(&g.base, far), AP_OK);
    pthread_join(th, NULL);
    EXPECT(g.ready);
    EXPECT_LT(g.polls, 50, "busy-polled (%d)", g.polls);
    pthread_mutex_destroy(&g.mu);
}

/* ping-pong: the main thread parks on a fresh future each round, a helper
 * completes it, sometimes before the park and sometimes after */
enum { ROUNDS = 400 };
static _Atomic(flag_fut *) handoff_slot;
static atomic_int handoff_done;

static void *handoff_helper(void *arg)
{
    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        flag_fut *g;
        while ((g = atomic_exchange(&handoff_slot, NULL)) == NULL)
            sched_yield();
        if (r % 10 == 0)
            ms_sleep(1); /* the main thread is parked by now */
        else if (r % 2)
            sched_yield();
        flag_set(g);
        atomic_fetch_add(&handoff_done, 1);
    }
    return NULL;
}

Test(FUTURE_SUITE, block_on_many_handoffs_no_lost_wake, .timeout = TEST_TIMEOUT_S)
{
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, handoff_helper, NULL), 0);
    int woken = 0;
    for (int r = 0; r < ROUNDS; r++) {
        flag_fut g;
        flag_init(&g);
        atomic_store(&handoff_slot, &g);
        ap_block_on(&g.base);
        EXPECT(g.ready, "round %d returned before its future was ready", r);
        /* flag_set ran to completion before g leaves scope */
        pthread_mutex_lock(&g.mu);
        woken += g.wakes;
        pthread_mutex_unlock(&g.mu);
        pthread_mutex_destroy(&g.mu);
    }
    pthread_join(th, NULL);
    EXPECT_EQ(atomic_load(&handoff_done), ROUNDS);
    EXPECT_GT(woken, 0, "no round ever parked: the test did not test parking");
}

/* ---- ap_block_on_until_clock: the clock comes from the caller ----
 * Two fake clocks: a stepping one (each read returns the next multiple of
 * `step`, so time moves only as the driver reads it) and a manual one that
 * another thread moves. Fake instants are far from the real clock's (an
 * hour, 2^62 ns), so a driver that read ap_now_ns() instead would time
 * out or hang, never pass by luck. */
typedef struct fake_clock {
    _Atomic uint64_t t;
    uint64_t step;   /* added by every read (0: a manual clock) */
    atomic_int reads;
} fake_clock;

static uint64_t fake_now(void *ctx)
{
    fake_clock *c = ctx;
    atomic_fetch_add(&c->reads, 1);
    return atomic_fetch_add(&c->t, c->step);
}

Test(FUTURE_SUITE, clock_null_and_zero_are_ap_now_ns, .timeout = TEST_TIMEOUT_S)
{
    ap_clock zero = {NULL, NULL};
    EXPECT(ap_clock_is_default(NULL));
    EXPECT(ap_clock_is_default(&zero));
    uint64_t a = ap_now_ns(), b = ap_clock_now(NULL), c = ap_clock_now(&zero), d = ap_now_ns();
    EXPECT(a <= b && b <= c && c <= d);
    /* same behaviour as ap_block_on_until on the real clock */
    time_fut t = {{time_poll, time_cancel}, ap_now_ns() + 5 * AP_NS_PER_MS, 0, 0, 0};
    EXPECT_EQ(ap_block_on_until_clock(&t.base, ap_now_ns() + 60 * AP_NS_PER_SEC, &zero), AP_OK);
    EXPECT_GE(t.ready_now, t.at);
    EXPECT_LT(t.polls, 50, "busy-polled (%d)", t.polls);
    time_fut u = {{time_poll, time_cancel}, ap_now_ns() + 60 * AP_NS_PER_SEC, 0, 0, 0};
    uint64_t dl = ap_now_ns() + 5 * AP_NS_PER_MS;
    EXPECT_EQ(ap_block_on_until_clock(&u.base, dl, NULL), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), dl);
    EXPECT_EQ(u.cancels, 1);
}

Test(FUTURE_SUITE, clock_timer_fires_when_the_fake_clock_reaches_it, .timeout = TEST_TIMEOUT_S)
{
    /* a timer an hour after 2^62 on a clock that moves a minute per read:
     * about 120 reads, each park at most AP_CLOCK_PARK_MAX_NS of real time */
    const uint64_t t0 = UINT64_C(1) << 62, step = 60 * AP_NS_PER_SEC;
    fake_clock c = {t0, step, 0};
    ap_clock clk = {fake_now, &c};
    time_fut t = {{time_poll, time_cancel}, t0 + 3600 * AP_NS_PER_SEC, 0, 0, 0};
    uint64_t r0 = ap_now_ns();
    EXPECT_EQ(ap_block_on_until_clock(&t.base, AP_DEADLINE_NONE, &clk), AP_OK);
    uint64_t real = ap_now_ns() - r0;
    /* cx.now came from the fake clock: the first reading at or past `at` */
    EXPECT_EQ(t.ready_now, t.at, "ready at fake %llu, timer %llu",
                 (unsigned long long)t.ready_now, (unsigned long long)t.at);
    EXPECT_EQ(t.cancels, 0);
    EXPECT_EQ(t.polls, 31, "two reads per pending poll (30), then the ready one");
    EXPECT_LT(real, 5 * AP_NS_PER_SEC, "an hour of fake time took %llu real ns",
                 (unsigned long long)real);
}

Test(FUTURE_SUITE, clock_deadline_is_on_the_fake_clock, .timeout = TEST_TIMEOUT_S)
{
    const uint64_t t0 = UINT64_C(1) << 62, step = 60 * AP_NS_PER_SEC;
    fake_clock c = {t0, step, 0};
    ap_clock clk = {fake_now, &c};
    /* the timer is after the deadline: AP_TIMEDOUT at the first check
     * (the reading after a poll) at or past the fake deadline, and the
     * future is cancelled; readings are t0 + k * step, the polls take the
     * even k, the checks the odd ones */
    time_fut t = {{time_poll, time_cancel}, t0 + 7200 * AP_NS_PER_SEC, 0, 0, 0};
    uint64_t dl = t0 + 3600 * AP_NS_PER_SEC;
    EXPECT_EQ(ap_block_on_until_clock(&t.base, dl, &clk), AP_TIMEDOUT);
    EXPECT_EQ(t.cancels, 1);
    uint64_t last = atomic_load(&c.t) - step; /* the reading that timed out */
    EXPECT_EQ(last, dl + step, "timed out at fake %llu, deadline %llu",
                 (unsigned long long)last, (unsigned long long)dl);
    EXPECT_EQ(t.polls, 31, "the poll at the deadline itself still ran");
    /* a deadline already passed on the fake clock: one poll, then out,
     * although the real clock is far earlier than 2^62 */
    time_fut u = {{time_poll, time_cancel}, AP_DEADLINE_NONE, 0, 0, 0};
    EXPECT_EQ(ap_block_on_until_clock(&u.base, t0, &clk), AP_TIMEDOUT);
    EXPECT_EQ(u.polls, 1);
    EXPECT_EQ(u.cancels, 1);
    /* regression: the same wait on the real clock (what every helper did
     * before the clock existed) cannot see the fake instant: bounded here
     * by a real deadline, it times out though the fake one had passed */
    time_fut v = {{time_poll, time_cancel}, t0 + 60 * AP_NS_PER_SEC, 0, 0, 0};
    EXPECT_EQ(ap_block_on_until(&v.base, ap_now_ns() + 5 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_EQ(v.cancels, 1);
}

typedef struct clock_mover {
    fake_clock *c;
    uint64_t to;
    _Atomic uint64_t moved_at_real; /* ap_now_ns() right after the move */
} clock_mover;

static void *move_clock_later(void *arg)
{
    clock_mover *m = arg;
    ms_sleep(30);
    atomic_store(&m->c->t, m->to);
    atomic_store(&m->moved_at_real, ap_now_ns());
    return NULL;
}

Test(FUTURE_SUITE, clock_moved_by_another_thread_is_reread_within_a_park, .timeout = TEST_TIMEOUT_S)
{
    /* the timer is an hour of fake time away and the clock stands still
     * until another thread jumps it: the driver must not sleep an hour of
     * real time (the fake ns are slept as real ones, capped per park) */
    fake_clock c = {0, 0, 0};
    ap_clock clk = {fake_now, &c};
    time_fut t = {{time_poll, time_cancel}, 3600 * AP_NS_PER_SEC, 0, 0, 0};
    clock_mover m = {&c, 3600 * AP_NS_PER_SEC, 0};
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, move_clock_later, &m), 0);
    EXPECT_EQ(ap_block_on_until_clock(&t.base, AP_DEADLINE_NONE, &clk), AP_OK);
    uint64_t done = ap_now_ns();
    pthread_join(th, NULL);
    EXPECT_EQ(t.ready_now, t.at);
    uint64_t moved = atomic_load(&m.moved_at_real);
    EXPECT_NE(moved, 0, "returned before the clock moved");
    EXPECT_LT(done - (moved < done ? moved : done), 2 * AP_NS_PER_SEC,
                 "noticed the move %llu ns late", (unsigned long long)(done - moved));
    /* it parked in slices, not in a busy loop: 30 ms of standing still is
     * at most ~30 reads of 1 ms each (generous: sched noise only shortens
     * parks via spurious returns, which are rare) */
    EXPECT_LT(atomic_load(&c.reads), 30000, "busy-polled (%d reads)", atomic_load(&c.reads));
}

Test(FUTURE_SUITE, clock_wait_without_timer_parks_until_woken, .timeout = TEST_TIMEOUT_S)
{
    /* no deadline and no timer: a fake clock changes nothing, the driver
     * parks until the waker runs (no 1 ms slicing) */
    fake_clock c = {0, 0, 0};
    ap_clock clk = {fake_now, &c};
    flag_fut g;
    flag_init(&g);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, set_after_ms, &g), 0);
    EXPECT_EQ(ap_block_on_until_clock(&g.base, AP_DEADLINE_NONE, &clk), AP_OK);
    pthread_join(th, NULL);
    EXPECT(g.ready);
    EXPECT_LT(g.polls, 50, "busy-polled (%d)", g.polls);
    EXPECT_EQ(g.cancels, 0);
    pthread_mutex_destroy(&g.mu);
}
