/*
 * tests/test_lifetime.c -- one end-of-life contract for every header (#17)
 *
 *   - fini ends a live object; it frees nothing the caller owns;
 *   - destroy (objects from create) works whether or not fini ran first:
 *     it runs fini only if the object is still live, then frees;
 *   - use after fini is a programmer error and is detected: a second fini,
 *     or an operation on a finished object, trips AP_ASSERT (abort) instead
 *     of touching stale memory. Slow paths check in every build; lock-free
 *     fast paths check under AP_DEBUG (this file defines it).
 *
 * Each type gets: fini_then_destroy where it has create (no abort; ASan
 * checks the free), double_fini (SIGABRT), op_after_fini (SIGABRT) and
 * op_live, the control that the same operation on a live object does not
 * abort (so the abort comes from the fini, not from the arguments).
 */
#define AP_DEBUG 1
#include "asyncpat.h"
#include <criterion/criterion.h>
#include "test_util.h"
#include <signal.h>

#define ALIGNED(n) AP_ALIGNAS(64) unsigned char

/* ---- objects from create: fini, then destroy ---- */

Test(lifetime, spsc_fini_then_destroy)
{
    ap_spsc *q;
    EXPECT_EQ(ap_spsc_create(&q, 8, sizeof(int), NULL), AP_OK);
    ap_spsc_fini(q);
    ap_spsc_destroy(q);
}
Test(lifetime, mpmc_fini_then_destroy)
{
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 8, sizeof(int), NULL), AP_OK);
    ap_mpmc_fini(q);
    ap_mpmc_destroy(q);
}
Test(lifetime, pool_fini_then_destroy)
{
    ap_pool *p;
    EXPECT_EQ(ap_pool_create(&p, 4, 16, NULL), AP_OK);
    ap_pool_fini(p);
    ap_pool_destroy(p);
}
Test(lifetime, bp_fini_then_destroy)
{
    ap_bp *bp;
    ap_bp_desc d = {.capacity = 8, .elem_size = sizeof(int)};
    EXPECT_EQ(ap_bp_create(&bp, &d, NULL), AP_OK);
    ap_bp_fini(bp);
    ap_bp_destroy(bp);
}
Test(lifetime, cache_fini_then_destroy)
{
    ap_cache *c;
    ap_cache_desc d = {.capacity = 16, .shards = 1, .value_size = 8};
    EXPECT_EQ(ap_cache_create(&c, &d, NULL), AP_OK);
    ap_cache_fini(c);
    ap_cache_destroy(c);
}
Test(lifetime, breaker_fini_then_destroy)
{
    ap_breaker *b;
    ap_breaker_desc d = {0};
    EXPECT_EQ(ap_breaker_create(&b, &d, NULL), AP_OK);
    ap_breaker_fini(b);
    ap_breaker_destroy(b);
}
Test(lifetime, pubsub_fini_then_destroy)
{
    ap_pubsub *ps;
    EXPECT_EQ(ap_pubsub_create(&ps, 8, sizeof(int), AP_PUBSUB_POLICY_OVERWRITE, NULL), AP_OK);
    ap_pubsub_fini(ps);
    ap_pubsub_destroy(ps);
}
Test(lifetime, ws_fini_then_destroy)
{
    ap_ws *d;
    EXPECT_EQ(ap_ws_create(&d, 8, NULL), AP_OK);
    ap_ws_fini(d);
    ap_ws_destroy(d);
}
Test(lifetime, window_fini_then_destroy)
{
    ap_window *w;
    ap_window_desc d = {.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 10};
    EXPECT_EQ(ap_window_create(&w, &d, NULL), AP_OK);
    ap_window_fini(w);
    ap_window_destroy(w);
}
Test(lifetime, agg_slide_fini_then_destroy)
{
    ap_agg_slide *s;
    EXPECT_EQ(ap_agg_slide_create(&s, 4, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}, NULL), AP_OK);
    ap_agg_slide_fini(s);
    ap_agg_slide_destroy(s);
}
Test(lifetime, tb_keyed_fini_then_destroy)
{
    ap_tb_keyed *kt;
    ap_tb_desc d = {.n = 1, .period_ns = 1000, .burst = 1};
    EXPECT_EQ(ap_tb_keyed_create(&kt, 8, &d, NULL), AP_OK);
    ap_tb_keyed_fini(kt);
    ap_tb_keyed_destroy(kt);
}

/* ---- use after fini: a second fini, and an operation, abort ---- */

#define AFTER_FINI(name, setup, fini, op)                                             \
    Test(lifetime, name##_double_fini, .signal = SIGABRT)                             \
    {                                                                                 \
        setup;                                                                        \
        fini;                                                                         \
        fini;                                                                         \
    }                                                                                 \
    Test(lifetime, name##_op_after_fini, .signal = SIGABRT)                           \
    {                                                                                 \
        setup;                                                                        \
        fini;                                                                         \
        ap_status st_ = (op); (void)st_;                                                                   \
    }                                                                                 \
    /* the control: the same operation on the live object does not abort */          \
    Test(lifetime, name##_op_live)                                                    \
    {                                                                                 \
        setup;                                                                        \
        ap_status st_ = (op); (void)st_;                                                                   \
    }

static int one = 1;
static const ap_tb_desc tb_d = {.n = 1, .period_ns = 1000, .burst = 1};
static const ap_bp_desc bp_d = {.capacity = 8, .elem_size = sizeof(int)};
static const ap_cache_desc cache_d = {.capacity = 16, .shards = 1, .value_size = 8};
static const ap_window_desc win_d = {.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 10};
static const ap_batch_desc batch_d = {.elem_size = sizeof(int), .max_size = 4};
static void emit_none(void *ctx, const ap_window_result *r) { (void)ctx, (void)r; }

AFTER_FINI(spsc, ap_spsc *q; EXPECT_EQ(ap_spsc_create(&q, 8, sizeof(int), NULL), AP_OK),
           ap_spsc_fini(q), ap_spsc_try_push(q, &one))
AFTER_FINI(mpmc, ap_mpmc *q; EXPECT_EQ(ap_mpmc_create(&q, 8, sizeof(int), NULL), AP_OK),
           ap_mpmc_fini(q), ap_mpmc_try_push(q, &one))
AFTER_FINI(sem, ap_sem s; EXPECT_EQ(ap_sem_init(&s, 2), AP_OK), ap_sem_fini(&s),
           ap_sem_try_acquire(&s, 1))
AFTER_FINI(tb, ap_tb tb; EXPECT_EQ(ap_tb_init(&tb, &tb_d), AP_OK), ap_tb_fini(&tb),
           ap_tb_try_acquire(&tb, 1, 0, NULL))
AFTER_FINI(tb_keyed, ap_tb_keyed *kt; EXPECT_EQ(ap_tb_keyed_create(&kt, 8, &tb_d, NULL), AP_OK), ap_tb_keyed_fini(kt),
           ap_tb_keyed_try_acquire(kt, 7, 1, 0, NULL))
AFTER_FINI(pool, ap_pool *p; void *obj; EXPECT_EQ(ap_pool_create(&p, 4, 16, NULL), AP_OK),
           ap_pool_fini(p), ap_pool_try_get(p, &obj))
AFTER_FINI(bp, ap_bp *bp; EXPECT_EQ(ap_bp_create(&bp, &bp_d, NULL), AP_OK), ap_bp_fini(bp),
           ap_bp_push(bp, &one, 0, NULL, NULL))
AFTER_FINI(cache, ap_cache *c; uint64_t v = 1;
           EXPECT_EQ(ap_cache_create(&c, &cache_d, NULL), AP_OK), ap_cache_fini(c),
           ap_cache_get(c, 1, &v))
AFTER_FINI(breaker, ap_breaker *b; ap_breaker_permit pm; ap_breaker_desc d; memset(&d, 0, sizeof d);
           EXPECT_EQ(ap_breaker_create(&b, &d, NULL), AP_OK), ap_breaker_fini(b),
           ap_breaker_allow(b, 0, &pm, NULL))
AFTER_FINI(pubsub, ap_pubsub *ps;
           EXPECT_EQ(ap_pubsub_create(&ps, 8, sizeof(int), AP_PUBSUB_POLICY_OVERWRITE, NULL),
                        AP_OK),
           ap_pubsub_fini(ps), ap_pubsub_try_publish(ps, &one))
AFTER_FINI(ws, ap_ws *d; EXPECT_EQ(ap_ws_create(&d, 8, NULL), AP_OK), ap_ws_fini(d),
           ap_ws_try_push(d, &one))
AFTER_FINI(window, ap_window *w;
           EXPECT_EQ(ap_window_create(&w, &win_d, NULL), AP_OK), ap_window_fini(w),
           ap_window_add(w, 1, 1, emit_none, NULL))
AFTER_FINI(agg_slide, ap_agg_slide *s;
           EXPECT_EQ(ap_agg_slide_create(&s, 4, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}, NULL), AP_OK),
           ap_agg_slide_fini(s), ap_agg_slide_push(s, 1, 1))
AFTER_FINI(barrier, ap_barrier b; bool leader;
           EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK),
           ap_barrier_fini(&b), ap_barrier_arrive_and_drop(&b, &leader))
AFTER_FINI(batch, ap_batch b; ALIGNED(64) buf[64]; bool due;
           EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &batch_d), AP_OK), ap_batch_fini(&b),
           ap_batch_add(&b, &one, 0, &due))
AFTER_FINI(life, ap_life l; ap_life_init(&l), ap_life_fini(&l), ap_life_enter(&l))
AFTER_FINI(split, ap_split s; ap_mpmc q; ap_mpmc *outs[1] = {&q};
           ALIGNED(64) qbuf[AP_MPMC_BYTES(4, sizeof(int))];
           EXPECT_EQ(ap_mpmc_init(&q, qbuf, sizeof qbuf, 4, sizeof(int)), AP_OK);
           EXPECT_EQ(ap_split_init(&s, outs, sizeof outs, AP_SPLIT_MODE_HASH), AP_OK),
           ap_split_fini(&s), ap_split_try_push(&s, 1, &one))
AFTER_FINI(ws_injector, ap_ws_injector inj; ALIGNED(64) ibuf[AP_WS_INJECTOR_BYTES(4)];
           EXPECT_EQ(ap_ws_injector_init(&inj, ibuf, sizeof ibuf, 4), AP_OK),
           ap_ws_injector_fini(&inj), ap_ws_injector_try_push(&inj, &one))
