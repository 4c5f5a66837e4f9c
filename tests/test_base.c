/*
 * tests/test_base.c -- every future type exposes its ap_future the same way:
 * as the member `base`, first, so `&f.base` is what ap_block_on, timeout.h,
 * fanout.h and any loop take (#17). The queue futures, built on ap_waitop,
 * once needed a cast (`(ap_future *)&f`); now their `base` forwards to the
 * typed poll and cancel.
 *
 * The static assertions name every public future type; the run-time tests
 * drive the ap_waitop-based ones only through `base` and check they behave
 * as their typed poll does.
 */
#include "asyncpat/spsc.h"
#include "asyncpat/mpmc.h"
#include "asyncpat/pipeline.h"
#include "asyncpat/pubsub.h"
#include "asyncpat/backpressure.h"
#include "asyncpat/semaphore.h"
#include "asyncpat/token_bucket.h"
#include "asyncpat/pool.h"
#include "asyncpat/connpool.h"
#include "asyncpat/barrier.h"
#include "asyncpat/batch.h"
#include "asyncpat/prefetch.h"
#include "asyncpat/split.h"
#include "asyncpat/retry.h"
#include "asyncpat/resilience.h"
#include "asyncpat/timeout.h"
#include "asyncpat/fanout.h"
#include "asyncpat/lifecycle.h"
#include "asyncpat/cancel.h"
#include "asyncpat/topic.h"
#include "test_util.h"
#include <criterion/criterion.h>
#include <stddef.h>

#define BASE_FIRST(T)                                                                 \
    AP_STATIC_ASSERT(offsetof(T, base) == 0, #T ": base is the first member");       \
    AP_STATIC_ASSERT(sizeof(((T *)0)->base) == sizeof(ap_future), #T ": base is an ap_future")

BASE_FIRST(ap_spsc_push_fut);
BASE_FIRST(ap_spsc_pop_fut);
BASE_FIRST(ap_mpmc_push_fut);
BASE_FIRST(ap_mpmc_pop_fut);
BASE_FIRST(ap_pipeline_push_fut);
BASE_FIRST(ap_pipeline_pop_fut);
BASE_FIRST(ap_pipeline_run_fut);
BASE_FIRST(ap_sub_recv_fut);
BASE_FIRST(ap_bp_push_fut);
BASE_FIRST(ap_bp_pop_fut);
BASE_FIRST(ap_bp_low_fut);
BASE_FIRST(ap_sem_acquire_fut);
BASE_FIRST(ap_tb_acquire_fut);
BASE_FIRST(ap_pool_get_fut);
BASE_FIRST(ap_connpool_checkout_fut);
BASE_FIRST(ap_barrier_wait_fut);
BASE_FIRST(ap_batch_take_fut);
BASE_FIRST(ap_batch_done);
BASE_FIRST(ap_prefetch_get_fut);
BASE_FIRST(ap_split_push_fut);
BASE_FIRST(ap_retry_fut);
BASE_FIRST(ap_resil_fut);
BASE_FIRST(ap_timeout);
BASE_FIRST(ap_fanout);
BASE_FIRST(ap_life_wait_fut);
BASE_FIRST(ap_cancel_fut);
BASE_FIRST(ap_tracker_wait_fut);
BASE_FIRST(ap_cancel_race);
BASE_FIRST(ap_shutdown);
BASE_FIRST(ap_topic_pub_fut);
BASE_FIRST(ap_topic_recv_fut);

static ap_cx cx_now(tw *w) { return cx_of(w); }

Test(base, mpmc_pop_and_push_through_base)
{
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 1, sizeof(int), NULL), AP_OK);
    tw w = {0};
    ap_cx cx = cx_now(&w);
    int in = 7, out = 0;
    ap_mpmc_pop_fut pf;
    ap_mpmc_pop_fut_init(&pf, q, &out);
    ap_future *g = &pf.base;
    EXPECT_EQ(g->poll(g, &cx), AP_PENDING, "empty: pending through base");
    ap_mpmc_push_fut qf;
    ap_mpmc_push_fut_init(&qf, q, &in);
    ap_future *h = &qf.base;
    EXPECT_EQ(h->poll(h, &cx), AP_READY);
    EXPECT_EQ(ap_mpmc_push_status(&qf), AP_OK);
    EXPECT_GE(w.calls, 1, "the parked pop was woken");
    EXPECT_EQ(g->poll(g, &cx), AP_READY);
    EXPECT_EQ(ap_mpmc_pop_status(&pf), AP_OK);
    EXPECT_EQ(out, 7);
    /* cancel through base: a pending push on a full queue leaves it alone */
    EXPECT_EQ(ap_mpmc_try_push(q, &in), AP_OK);
    ap_mpmc_push_fut_init(&qf, q, &in);
    EXPECT_EQ(h->poll(h, &cx), AP_PENDING);
    h->cancel(h);
    EXPECT_EQ(ap_mpmc_push_status(&qf), AP_CANCELED);
    EXPECT_EQ(ap_mpmc_len(q), 1);
    ap_mpmc_destroy(q);
}

Test(base, spsc_pop_through_block_on)
{
    ap_spsc *q;
    EXPECT_EQ(ap_spsc_create(&q, 2, sizeof(int), NULL), AP_OK);
    int in = 5, out = 0;
    EXPECT_EQ(ap_spsc_try_push(q, &in), AP_OK);
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, q, &out);
    EXPECT_EQ(ap_block_on_until(&f.base, ap_now_ns() + AP_NS_PER_SEC), AP_OK);
    EXPECT_EQ(ap_spsc_pop_status(&f), AP_OK);
    EXPECT_EQ(out, 5);
    ap_spsc_destroy(q);
}

Test(base, bp_futures_through_base)
{
    ap_bp *bp;
    ap_bp_desc d = {.capacity = 1, .elem_size = sizeof(int)};
    EXPECT_EQ(ap_bp_create(&bp, &d, NULL), AP_OK);
    tw w = {0};
    ap_cx cx = cx_now(&w);
    int in = 3, out = 0;
    ap_bp_push_fut pf;
    ap_bp_push_fut_init(&pf, bp, &in);
    EXPECT_EQ(pf.base.poll(&pf.base, &cx), AP_READY);
    EXPECT_EQ(ap_bp_push_status(&pf), AP_OK);
    ap_bp_low_fut lf;
    ap_bp_low_fut_init(&lf, bp);
    ap_poll lp = lf.base.poll(&lf.base, &cx);
    EXPECT_EQ(lp, ap_bp_low_poll(&lf, &cx), "base and the typed poll agree");
    if (lp == AP_PENDING)
        lf.base.cancel(&lf.base);
    ap_bp_pop_fut of;
    ap_bp_pop_fut_init(&of, bp, &out);
    EXPECT_EQ(of.base.poll(&of.base, &cx), AP_READY);
    EXPECT_EQ(ap_bp_pop_status(&of), AP_OK);
    EXPECT_EQ(out, 3);
    ap_bp_destroy(bp);
}
