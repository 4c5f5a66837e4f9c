/* tests/test_timeout.c -- ap_timeout and ap_deadline, on a fake clock */
#include "asyncpat.h"
#include <criterion/criterion.h>
#include "test_util.h"
#include <signal.h>

/* An inner future scripted by the test: ready after `ready_after` polls
 * (0 = never); counts polls and cancels; optionally lowers cx->deadline. */
typedef struct probe {
    ap_future base;
    int polls, cancels, ready_after;
    uint64_t want_at; /* lowered into cx->deadline when nonzero */
} probe;

static ap_poll probe_poll(ap_future *f, ap_cx *cx)
{
    probe *p = (probe *)(void *)f;
    p->polls++;
    if (p->want_at)
        ap_cx_wake_at(cx, p->want_at);
    return (p->ready_after && p->polls >= p->ready_after) ? AP_READY : AP_PENDING;
}

static void probe_cancel(ap_future *f) { ((probe *)(void *)f)->cancels++; }

static probe make_probe(int ready_after)
{
    probe p = {{probe_poll, probe_cancel}, 0, 0, ready_after, 0};
    return p;
}

static ap_cx cx_at(uint64_t now)
{
    ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
    return cx;
}

Test(timeout, ready_inner_completes_ok)
{
    probe p = make_probe(1);
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 1000);
    ap_cx cx = cx_at(10);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&t), AP_OK);
    EXPECT_EQ(p.polls, 1);
    ap_timeout_cancel(&t); /* after completion: must not cancel the inner */
    EXPECT_EQ(p.cancels, 0);
    EXPECT_EQ(ap_timeout_status(&t), AP_OK);
}

Test(timeout, pending_inner_lowers_deadline_then_times_out_exactly)
{
    probe p = make_probe(0);
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 1000);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 1000, "after-check: re-poll by the deadline");
    cx = cx_at(999);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(p.polls, 2);
    cx = cx_at(1000);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&t), AP_TIMEDOUT);
    EXPECT_EQ(p.polls, 2, "before-check: the inner is not polled at the deadline");
    EXPECT_EQ(p.cancels, 1);
    cx = cx_at(5000);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    ap_timeout_cancel(&t);
    EXPECT_EQ(p.cancels, 1, "cancelled exactly once");
    EXPECT_EQ(p.polls, 2);
}

Test(timeout, inner_earlier_deadline_is_kept)
{
    probe p = make_probe(0);
    p.want_at = 300;
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 1000);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 300);
    p.want_at = 5000; /* later than ours: ours wins */
    cx = cx_at(300);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 1000);
}

Test(timeout, expired_at_first_poll_never_polls_inner)
{
    probe p = make_probe(1);
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 50);
    ap_cx cx = cx_at(50);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&t), AP_TIMEDOUT);
    EXPECT_EQ(p.polls, 0);
    EXPECT_EQ(p.cancels, 1);
}

Test(timeout, cancel_is_idempotent_and_cancels_inner_once)
{
    probe p = make_probe(0);
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 100);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    ap_timeout_cancel(&t);
    ap_timeout_cancel(&t);
    ap_future_cancel(&t.base);
    EXPECT_EQ(p.cancels, 1);
    EXPECT_EQ(ap_timeout_status(&t), AP_CANCELED);
    cx = cx_at(1);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(p.polls, 1, "a cancelled timeout does not poll again");
}

Test(timeout, nested_outer_fires_first_and_cancels_all)
{
    probe p = make_probe(0);
    ap_timeout inner, outer;
    ap_timeout_init(&inner, &p.base, 2000);
    ap_timeout_init(&outer, &inner.base, 700);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&outer, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 700, "the earlier of the two deadlines");
    cx = cx_at(700);
    EXPECT_EQ(ap_timeout_poll(&outer, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&outer), AP_TIMEDOUT);
    EXPECT_EQ(ap_timeout_status(&inner), AP_CANCELED);
    EXPECT_EQ(p.cancels, 1);
}

Test(timeout, wrapped_queue_pop_leaves_no_waiter)
{
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 4, sizeof(int), NULL), AP_OK);
    int v = -1;
    ap_mpmc_pop_fut pop;
    ap_mpmc_pop_fut_init(&pop, q, &v);
    ap_timeout t;
    ap_timeout_init(&t, &pop.base, 100);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT(ap_waitlist_has_waiters(&q->not_empty), "the pop registered");
    cx = cx_at(100);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&t), AP_TIMEDOUT);
    EXPECT_EQ(ap_mpmc_pop_status(&pop), AP_CANCELED);
    EXPECT(!ap_waitlist_has_waiters(&q->not_empty), "cancelled: no waiter left");
    /* and the queue still works: an item pushed now is not lost */
    int x = 7;
    EXPECT_EQ(ap_mpmc_try_push(q, &x), AP_OK);
    EXPECT_EQ(ap_mpmc_try_pop(q, &v), AP_OK);
    EXPECT_EQ(v, 7);
    ap_mpmc_destroy(q);
}

Test(timeout, wrapped_queue_pop_completes_in_time)
{
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 4, sizeof(int), NULL), AP_OK);
    int v = -1, x = 42;
    ap_mpmc_pop_fut pop;
    ap_mpmc_pop_fut_init(&pop, q, &v);
    ap_timeout t;
    ap_timeout_init_after(&t, &pop.base, 0, 100);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(ap_mpmc_try_push(q, &x), AP_OK);
    cx = cx_at(99);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_READY);
    EXPECT_EQ(ap_timeout_status(&t), AP_OK);
    EXPECT_EQ(ap_mpmc_pop_status(&pop), AP_OK);
    EXPECT_EQ(v, 42);
    ap_mpmc_destroy(q);
}

Test(timeout, block_on_real_clock, .timeout = 10)
{
    probe p = make_probe(0);
    ap_timeout t;
    uint64_t start = ap_now_ns();
    ap_timeout_init_after(&t, &p.base, start, 20 * AP_NS_PER_MS);
    ap_block_on(&t.base); /* parks until the deadline: the inner never wakes */
    uint64_t took = ap_now_ns() - start;
    EXPECT_EQ(ap_timeout_status(&t), AP_TIMEDOUT);
    EXPECT_GE(took, 20 * AP_NS_PER_MS);
    EXPECT_LT(p.polls, 100, "waited by deadline, not by spinning (%d polls)", p.polls);
    EXPECT_EQ(p.cancels, 1);
}

Test(timeout, deadline_helpers)
{
    EXPECT_EQ(ap_deadline_after(10, 5), 15);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX - 1, 5), AP_DEADLINE_NONE);
    EXPECT_EQ(ap_deadline_remaining(15, 10), 5);
    EXPECT_EQ(ap_deadline_remaining(15, 20), 0);
    EXPECT_EQ(ap_deadline_remaining(AP_DEADLINE_NONE, 20), AP_DEADLINE_NONE);
    EXPECT(ap_deadline_passed(15, 15));
    EXPECT(!ap_deadline_passed(15, 14));
    ap_timeout t;
    probe p = make_probe(0);
    ap_timeout_init_after(&t, &p.base, UINT64_MAX - 3, 100);
    EXPECT_EQ(t.deadline, AP_DEADLINE_NONE, "saturates instead of wrapping");
    EXPECT_EQ(ap_timeout_remaining(&t, 0), AP_DEADLINE_NONE);
}

Test(timeout, init_with_null_inner_asserts, .signal = SIGABRT)
{
    ap_timeout t;
    ap_timeout_init(&t, NULL, 10);
}

/* regression (issue #11, the status table): a timeout still pending is
 * AP_NOT_READY (was AP_AGAIN), before and after a pending poll */
Test(timeout, pending_status_is_not_ready)
{
    probe p = make_probe(3);
    ap_timeout t;
    ap_timeout_init(&t, &p.base, 1000);
    EXPECT_EQ(ap_timeout_status(&t), AP_NOT_READY);
    ap_cx cx = cx_at(10);
    EXPECT_EQ(ap_timeout_poll(&t, &cx), AP_PENDING);
    EXPECT_EQ(ap_timeout_status(&t), AP_NOT_READY);
    ap_timeout_cancel(&t);
    EXPECT_EQ(ap_timeout_status(&t), AP_CANCELED);
}
