/*
 * tests/test_backpressure.c -- bounded buffer with an overload policy
 */
#include "asyncpat/backpressure.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static ap_bp_stats bp_stats_of(ap_bp *x)
{
    ap_bp_stats s;
    ap_bp_stats_get(x, &s);
    return s;
}


/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

#define MAXCAP 64
typedef struct fixture {
    ap_bp bp;
    _Alignas(8) unsigned char buf[AP_BP_BYTES(MAXCAP, sizeof(uint64_t))];
} fixture;

static fixture *mk(size_t cap, ap_bp_strategy s, size_t high, size_t low)
{
    fixture *f = aligned_alloc(AP_CACHELINE, ap__align_up(sizeof *f, AP_CACHELINE));
    EXPECT_NOT_NULL(f);
    ap_bp_desc d = {.capacity = cap, .elem_size = sizeof(uint64_t), .strategy = s,
                    .high_watermark = high, .low_watermark = low,
                    .throttle = {.n = 10, .period_ns = AP_NS_PER_SEC, .burst = 1}};
    EXPECT_EQ(ap_bp_init(&f->bp, f->buf, sizeof f->buf, &d), AP_OK);
    return f;
}

static void rm(fixture *f)
{
    ap_bp_fini(&f->bp);
    free(f);
}

static ap_status push(ap_bp *bp, uint64_t v) { return ap_bp_push(bp, &v, 0, NULL, NULL); }

static uint64_t pop1(ap_bp *bp)
{
    uint64_t v = 0;
    EXPECT_EQ(ap_bp_try_pop(bp, &v), AP_OK);
    return v;
}

/* The two identities of GUARANTEES, at quiescence. */
static void check_identities(ap_bp *bp)
{
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    EXPECT_EQ(s.offered, s.accepted + s.dropped_newest + s.throttled + s.full + s.closed +
                                s.canceled,
                 "offered %llu != outcomes", (unsigned long long)s.offered);
    EXPECT_EQ(s.accepted, s.popped + s.dropped_oldest + ap_bp_len(bp),
                 "accepted %llu popped %llu dropped_oldest %llu len %zu",
                 (unsigned long long)s.accepted, (unsigned long long)s.popped,
                 (unsigned long long)s.dropped_oldest, ap_bp_len(bp));
    EXPECT_EQ(ap_bp_len(bp), ap_mpmc_len(&bp->q));
}

/* ---- configuration ---- */

Test(backpressure, desc_defaults)
{
    ap_bp_desc d = ap_bp_desc_resolved(&(ap_bp_desc){.capacity = 10, .elem_size = 8});
    EXPECT_EQ(d.high_watermark, 10);
    EXPECT_EQ(d.low_watermark, 5);
    EXPECT_EQ(d.strategy, AP_BP_STRATEGY_BLOCK);
    d = ap_bp_desc_resolved(&(ap_bp_desc){.capacity = 10, .elem_size = 8, .high_watermark = 7});
    EXPECT_EQ(d.low_watermark, 3);
    d = ap_bp_desc_resolved(&(ap_bp_desc){.capacity = 1, .elem_size = 8});
    EXPECT_EQ(d.high_watermark, 1);
    EXPECT_EQ(d.low_watermark, 0);
}

Test(backpressure, init_bad_config_is_inval_and_changes_nothing)
{
    static fixture f;
    const ap_bp_desc bad[] = {
        {.capacity = 0, .elem_size = 8},
        {.capacity = 4, .elem_size = 0},
        {.capacity = 4, .elem_size = 8, .strategy = (ap_bp_strategy)9},
        {.capacity = 4, .elem_size = 8, .high_watermark = 5},
        {.capacity = 4, .elem_size = 8, .high_watermark = 3, .low_watermark = 3},
        {.capacity = 4, .elem_size = 8, .high_watermark = 2, .low_watermark = 4},
        {.capacity = SIZE_MAX, .elem_size = 8},
        {.capacity = 4, .elem_size = 8, .strategy = AP_BP_STRATEGY_THROTTLE}, /* no rate */
        {.capacity = 4, .elem_size = 8, .strategy = AP_BP_STRATEGY_THROTTLE,
         .throttle = {.n = 2, .period_ns = 1, .burst = 1}}, /* > 1 per ns */
        {.capacity = 4, .elem_size = 8, .strategy = AP_BP_STRATEGY_THROTTLE,
         .throttle = {.n = 1, .burst = 0}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&f, 0xAB, sizeof f);
        EXPECT_EQ(ap_bp_init(&f.bp, f.buf, sizeof f.buf, &bad[i]), AP_INVAL, "case %zu", i);
        for (size_t k = 0; k < sizeof f; k++)
            if (((unsigned char *)&f)[k] != 0xAB)
                EXPECT_FAIL("case %zu changed byte %zu", i, k);
    }
    EXPECT_EQ(ap_bp_init(&f.bp, f.buf, sizeof f.buf, NULL), AP_INVAL);
    /* the edges that are valid */
    EXPECT_EQ(ap_bp_init(&f.bp, f.buf, sizeof f.buf,
                            &(ap_bp_desc){.capacity = 1, .elem_size = 8}),
                 AP_OK);
    EXPECT_EQ(ap_bp_init(&f.bp, f.buf, sizeof f.buf,
                            &(ap_bp_desc){.capacity = 4, .elem_size = 8, .high_watermark = 4,
                                          .low_watermark = 3}),
                 AP_OK);
    EXPECT_EQ(ap_bp_init(&f.bp, f.buf, sizeof f.buf,
                            &(ap_bp_desc){.capacity = 4, .elem_size = 8,
                                          .strategy = AP_BP_STRATEGY_THROTTLE,
                                          .throttle = {.n = 1, .burst = 1}}),
                 AP_OK);
}

/* issue #11: the buffer comes with its size; NULL, short or misaligned is
 * AP_INVAL and neither the object nor the buffer changes (THROTTLE too:
 * its desc is validated on a scratch bucket) */
Test(backpressure, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { CAP = 5, ES = 8 };
    static size_t words[AP_BP_BYTES(CAP, ES) / sizeof(size_t) + 2];
    unsigned char *b = (unsigned char *)words;
    const size_t need = AP_BP_BYTES(CAP, ES);
    _Static_assert(AP_BP_BYTES(CAP, ES) == AP_MPMC_BYTES(CAP, ES) &&
                       AP_BP_ALIGN == _Alignof(size_t),
                   "constant expressions");
    static char as_array_size[AP_BP_ALIGN];
    EXPECT_EQ(sizeof as_array_size, _Alignof(size_t));
    const ap_bp_desc ok = {.capacity = CAP, .elem_size = ES};
    const ap_bp_desc thr = {.capacity = CAP, .elem_size = ES, .strategy = AP_BP_STRATEGY_THROTTLE,
                            .throttle = {.n = 1, .burst = 1}};
    struct { void *buf; size_t bytes; const ap_bp_desc *d; const char *what; } cases[] = {
        {NULL, sizeof words, &ok, "NULL buffer"},
        {b, need - 1, &ok, "one byte short"},
        {b, need - AP_MPMC_STRIDE(ES), &ok, "one slot short"},
        {b, 0, &ok, "zero bytes"},
        {b + 1, sizeof words - 1, &ok, "misaligned by 1"},
        {b + AP_BP_ALIGN / 2, sizeof words - AP_BP_ALIGN / 2, &ok, "misaligned by half"},
        {b, need - 1, &thr, "THROTTLE, one byte short"},
        {NULL, sizeof words, &thr, "THROTTLE, NULL buffer"},
        {b, sizeof words, NULL, "desc NULL"},
        {b, sizeof words, &(ap_bp_desc){.capacity = 0, .elem_size = ES}, "capacity 0"},
        {b, sizeof words, &(ap_bp_desc){.capacity = CAP, .elem_size = ES, .high_watermark = 6},
         "high above capacity"},
    };
    static fixture f; /* cache-line aligned object */
    static unsigned char o_before[sizeof(ap_bp)], b_before[sizeof words];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&f.bp, 0x5A, sizeof f.bp);
        memset(b, 0xC3, sizeof words);
        memcpy(o_before, &f.bp, sizeof f.bp);
        memcpy(b_before, b, sizeof words);
        EXPECT_EQ(ap_bp_init(&f.bp, cases[i].buf, cases[i].bytes, cases[i].d), AP_INVAL,
                     "%s", cases[i].what);
        EXPECT(memcmp(o_before, &f.bp, sizeof f.bp) == 0, "%s: the object changed",
                  cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof words) == 0, "%s: the buffer changed",
                  cases[i].what);
    }
    /* exactly enough works; the excess is not touched */
    memset(b, 0xC3, sizeof words);
    EXPECT_EQ(ap_bp_init(&f.bp, b, need, &ok), AP_OK);
    for (uint64_t k = 0; k < 3 * CAP; k++) {
        uint64_t x = k, y = 0;
        EXPECT_EQ(ap_bp_push(&f.bp, &x, 0, NULL, NULL), AP_OK);
        EXPECT_EQ(ap_bp_try_pop(&f.bp, &y), AP_OK);
        EXPECT_EQ(y, k);
    }
    for (size_t i = need; i < sizeof words; i++)
        EXPECT_EQ(b[i], 0xC3, "byte %zu past the buffer written", i);
    ap_bp_fini(&f.bp);
}

/* counting, cnt_alloc, cnt_free: test_util.h */

Test(backpressure, create_destroy_and_inval_allocates_nothing)
{
    counting c = {0};
    ap_allocator a = {cnt_alloc, cnt_free, &c};
    ap_bp *bp = (ap_bp *)(uintptr_t)0x1;
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 4, .elem_size = 8,
                                                 .low_watermark = 4}, &a), AP_INVAL);
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 4, .elem_size = 8,
                                                 .strategy = AP_BP_STRATEGY_THROTTLE}, &a), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    EXPECT_EQ(bp, (ap_bp *)(uintptr_t)0x1);
    c.fail = true;
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 4, .elem_size = 8}, &a), AP_NOMEM);
    c.fail = false;
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 5, .elem_size = 8}, &a), AP_OK);
    EXPECT_EQ((uintptr_t)bp % AP_CACHELINE, 0);
    for (uint64_t i = 0; i < 5; i++)
        EXPECT_EQ(push(bp, i), AP_OK);
    EXPECT_EQ(push(bp, 9), AP_FULL);
    EXPECT_EQ(pop1(bp), 0);
    ap_bp_destroy(bp);
    EXPECT_EQ(c.frees, 1);
    ap_bp_destroy(NULL);
}

Test(backpressure, fini_then_destroy_frees_once)
{
    counting c = {0};
    ap_allocator a = {cnt_alloc, cnt_free, &c};
    ap_bp *bp = NULL;
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 5, .elem_size = 8}, &a), AP_OK);
    EXPECT_EQ(push(bp, 1), AP_OK);
    ap_bp_fini(bp); /* then destroy: must not fini again, must free it all */
    ap_bp_destroy(bp);
    EXPECT_EQ(c.frees, 1);
}

/* Every build, not only AP_DEBUG: a waiting future at end of life would be
 * woken into memory the caller is about to reuse. */
Test(backpressure, fini_with_a_waiting_pop_future_asserts, .signal = SIGABRT)
{
    ap_bp *bp = NULL;
    EXPECT_EQ(ap_bp_create(&bp, &(ap_bp_desc){.capacity = 4, .elem_size = 8}, NULL), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint64_t out;
    ap_bp_pop_fut pf;
    ap_bp_pop_fut_init(&pf, bp, &out);
    EXPECT_EQ(ap_bp_pop_poll(&pf, &cx), AP_PENDING);
    ap_bp_fini(bp);
}

Test(backpressure, drop_oldest_without_out_param_asserts, .signal = SIGABRT)
{
    fixture *f = mk(2, AP_BP_STRATEGY_DROP_OLDEST, 0, 0);
    uint64_t v = 1;
    ap_status st = ap_bp_push(&f->bp, &v, 0, NULL, NULL);
    (void)st;
}

/* ---- strategies ---- */

Test(backpressure, block_refuses_when_full_and_keeps_fifo)
{
    fixture *f = mk(4, AP_BP_STRATEGY_BLOCK, 0, 0);
    for (uint64_t i = 1; i <= 4; i++)
        EXPECT_EQ(push(&f->bp, i), AP_OK);
    EXPECT_EQ(push(&f->bp, 5), AP_FULL);
    EXPECT_EQ(ap_bp_len(&f->bp), 4);
    for (uint64_t i = 1; i <= 4; i++)
        EXPECT_EQ(pop1(&f->bp), i);
    uint64_t v = 77;
    EXPECT_EQ(ap_bp_try_pop(&f->bp, &v), AP_EMPTY);
    EXPECT_EQ(v, 77, "out untouched on failure");
    ap_bp_stats s;
    ap_bp_stats_get(&f->bp, &s);
    EXPECT_EQ(s.offered, 5);
    EXPECT_EQ(s.accepted, 4);
    EXPECT_EQ(s.full, 1);
    EXPECT_EQ(s.popped, 4);
    check_identities(&f->bp);
    rm(f);
}

Test(backpressure, drop_newest_refuses_and_counts)
{
    fixture *f = mk(4, AP_BP_STRATEGY_DROP_NEWEST, 0, 0);
    unsigned ok = 0, dropped = 0;
    for (uint64_t i = 1; i <= 10; i++) {
        uint64_t v = i, ev = 99;
        ap_status st = ap_bp_push(&f->bp, &v, 0, &ev, NULL);
        EXPECT(st == AP_OK || st == AP_DROPPED);
        EXPECT_EQ(ev, 99, "DROP_NEWEST never writes evicted_out");
        EXPECT_EQ(v, i, "the element stays with the caller");
        ok += st == AP_OK;
        dropped += st == AP_DROPPED;
        if (i == 7)
            EXPECT_EQ(pop1(&f->bp), 1); /* room for one more: 8 gets in */
    }
    EXPECT_EQ(ok, 5);
    EXPECT_EQ(dropped, 5);
    const uint64_t want[] = {2, 3, 4, 8};
    for (size_t i = 0; i < 4; i++)
        EXPECT_EQ(pop1(&f->bp), want[i]);
    ap_bp_stats s;
    ap_bp_stats_get(&f->bp, &s);
    EXPECT_EQ(s.dropped_newest, 5);
    EXPECT_EQ(s.accepted, 5);
    EXPECT_EQ(s.popped, 5);
    check_identities(&f->bp);
    rm(f);
}

Test(backpressure, drop_oldest_evicts_exactly_the_oldest_in_order)
{
    fixture *f = mk(3, AP_BP_STRATEGY_DROP_OLDEST, 0, 0);
    uint64_t next_evicted = 1;
    for (uint64_t i = 1; i <= 10; i++) {
        uint64_t ev = 0;
        ap_status st = ap_bp_push(&f->bp, &i, 0, &ev, NULL);
        if (i <= 3 || i == 7) {
            EXPECT_EQ(st, AP_OK);
            EXPECT_EQ(ev, 0, "untouched on AP_OK");
        } else {
            EXPECT_EQ(st, AP_DROPPED);
            EXPECT_EQ(ev, next_evicted, "evicted %llu, want %llu", (unsigned long long)ev,
                         (unsigned long long)next_evicted);
            next_evicted++;
        }
        if (i == 6) /* a pop in between: the next push needs no eviction */
            EXPECT_EQ(pop1(&f->bp), 4);
        if (i == 6)
            next_evicted = 5;
    }
    /* 1..3 in; 4,5,6 evict 1,2,3; pop takes 4; 7 fits; 8,9,10 evict 5,6,7 */
    EXPECT_EQ(next_evicted, 8);
    for (uint64_t i = 8; i <= 10; i++)
        EXPECT_EQ(pop1(&f->bp), i);
    ap_bp_stats s;
    ap_bp_stats_get(&f->bp, &s);
    EXPECT_EQ(s.accepted, 10);
    EXPECT_EQ(s.dropped_oldest, 6);
    EXPECT_EQ(s.popped, 4);
    check_identities(&f->bp);
    rm(f);
}

/* Random single-thread workload: the identities hold for every strategy. */
Test(backpressure, conservation_per_strategy)
{
    for (int s = AP_BP_STRATEGY_BLOCK; s <= AP_BP_STRATEGY_THROTTLE; s++) {
        fixture *f = mk(8, (ap_bp_strategy)s, 6, 2);
        uint64_t rng = 0x1234567 + (uint64_t)s, now = 0, seq = 0, expect_pop = 0;
        uint64_t got = 0, evicted = 0;
        for (int i = 0; i < 20000; i++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            now += rng % 50000000u; /* up to 50 ms */
            if (rng % 5 < 3) {
                uint64_t v = seq, ev = UINT64_MAX, at = 0;
                ap_status st = ap_bp_push(&f->bp, &v, now, &ev, &at);
                if (st == AP_OK || st == AP_DROPPED)
                    seq += st == AP_OK || s == AP_BP_STRATEGY_DROP_OLDEST;
                if (st == AP_DROPPED && s == AP_BP_STRATEGY_DROP_OLDEST) {
                    EXPECT_EQ(ev, expect_pop, "evicted the oldest");
                    expect_pop++;
                    evicted++;
                }
                if (st == AP_REJECTED)
                    EXPECT_GT(at, now);
            } else {
                uint64_t v;
                if (ap_bp_try_pop(&f->bp, &v) == AP_OK) {
                    EXPECT_EQ(v, expect_pop, "FIFO");
                    expect_pop++;
                    got++;
                }
            }
        }
        ap_bp_stats st;
        ap_bp_stats_get(&f->bp, &st);
        EXPECT_EQ(st.popped, got);
        EXPECT_EQ(st.dropped_oldest, evicted);
        EXPECT_EQ(st.accepted, seq);
        if (s == AP_BP_STRATEGY_THROTTLE)
            EXPECT_GT(st.throttled, 0);
        if (s == AP_BP_STRATEGY_DROP_NEWEST)
            EXPECT_GT(st.dropped_newest, 0);
        if (s == AP_BP_STRATEGY_DROP_OLDEST)
            EXPECT_GT(st.dropped_oldest, 0);
        check_identities(&f->bp);
        rm(f);
    }
}

/* ---- watermarks ---- */

Test(backpressure, watermark_hysteresis_is_exact)
{
    fixture *f = mk(10, AP_BP_STRATEGY_BLOCK, 8, 3);
    ap_bp *bp = &f->bp;
    uint64_t n = 0;
    /* script: +7 LOW, +1 HIGH, -4 (len 4) HIGH, +2 (6) HIGH, -3 (3) LOW,
     * +4 (7) LOW, +1 (8) HIGH, +2 (10) HIGH, -6 (4) HIGH, -1 (3) LOW */
    const int script[] = {7, 1, -4, 2, -3, 4, 1, 2, -6, -1};
    for (size_t k = 0; k < sizeof script / sizeof script[0]; k++) {
        int d = script[k];
        for (int i = 0; i < (d > 0 ? d : -d); i++) {
            ap_bp_level_state before = ap_bp_level(bp);
            if (d > 0)
                EXPECT_EQ(push(bp, n++), AP_OK);
            else
                (void)pop1(bp);
            size_t len = ap_bp_len(bp);
            ap_bp_level_state want = before;
            if (d > 0 && len == 8)
                want = AP_BP_LEVEL_STATE_HIGH;
            if (d < 0 && len == 3)
                want = AP_BP_LEVEL_STATE_LOW;
            EXPECT_EQ(ap_bp_level(bp), want, "step %zu.%d: len %zu level %d want %d", k, i,
                         len, ap_bp_level(bp), want);
        }
    }
    EXPECT_EQ(ap_bp_len(bp), 3);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_LOW);
    rm(f);
}

Test(backpressure, low_future_is_woken_exactly_at_the_crossing)
{
    fixture *f = mk(8, AP_BP_STRATEGY_BLOCK, 6, 2);
    ap_bp *bp = &f->bp;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_bp_low_fut lf;
    ap_bp_low_fut_init(&lf, bp); /* LOW now: ready at once */
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx), AP_READY);
    EXPECT_EQ(ap_bp_low_status(&lf), AP_OK);
    for (uint64_t i = 0; i < 7; i++)
        EXPECT_EQ(push(bp, i), AP_OK);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_HIGH);
    ap_bp_low_fut_init(&lf, bp);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx), AP_PENDING);
    EXPECT_EQ(ap_bp_low_status(&lf), AP_NOT_READY);
    for (int i = 0; i < 4; i++) { /* 7 -> 3: still HIGH */
        (void)pop1(bp);
        EXPECT_EQ(calls(&t), 0, "woken early at len %zu", ap_bp_len(bp));
    }
    EXPECT_EQ(push(bp, 100), AP_OK); /* 4: pushes never wake it */
    (void)pop1(bp);                     /* 3 */
    EXPECT_EQ(calls(&t), 0);
    (void)pop1(bp); /* 2: the crossing */
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx), AP_READY);
    EXPECT_EQ(ap_bp_low_status(&lf), AP_OK);
    (void)pop1(bp);
    EXPECT_EQ(calls(&t), 1, "no wake after completion");
    /* a cancelled low future gets no wake; cancel is idempotent */
    for (uint64_t i = 0; i < 6; i++)
        EXPECT_EQ(push(bp, i), AP_OK);
    tw t2 = {0};
    ap_cx cx2 = cx_of(&t2);
    ap_bp_low_fut_init(&lf, bp);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx2), AP_PENDING);
    ap_bp_low_cancel(&lf);
    ap_bp_low_cancel(&lf);
    EXPECT_EQ(ap_bp_low_status(&lf), AP_CANCELED);
    while (ap_bp_len(bp))
        (void)pop1(bp);
    EXPECT_EQ(calls(&t2), 0);
    rm(f);
}

/* Edge-triggered: a HIGH -> LOW -> HIGH flip between two polls of a waiting
 * low future still completes it (a level check alone would miss it). */
Test(backpressure, low_future_sees_a_crossing_even_if_high_again)
{
    fixture *f = mk(8, AP_BP_STRATEGY_BLOCK, 6, 2);
    ap_bp *bp = &f->bp;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    for (uint64_t i = 0; i < 6; i++)
        EXPECT_EQ(push(bp, i), AP_OK);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_HIGH);
    ap_bp_low_fut lf;
    ap_bp_low_fut_init(&lf, bp);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx), AP_PENDING);
    while (ap_bp_len(bp) > 2) /* down to low: the crossing */
        (void)pop1(bp);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_LOW);
    EXPECT_EQ(calls(&t), 1);
    for (uint64_t i = 0; i < 4; i++) /* back up to high before the poll */
        EXPECT_EQ(push(bp, 10 + i), AP_OK);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_HIGH);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cx), AP_READY, "the crossing was lost");
    EXPECT_EQ(ap_bp_low_status(&lf), AP_OK);
    /* a future started after that crossing waits for the next one */
    ap_bp_low_fut lf2;
    ap_bp_low_fut_init(&lf2, bp);
    EXPECT_EQ(ap_bp_low_poll(&lf2, &cx), AP_PENDING);
    ap_bp_low_cancel(&lf2);
    while (ap_bp_len(bp))
        (void)pop1(bp);
    rm(f);
}

/* ---- THROTTLE on a fake clock ---- */

Test(backpressure, throttle_paces_only_above_the_high_watermark)
{
    /* 10 per second, burst 1; high 4, low 2 */
    fixture *f = mk(32, AP_BP_STRATEGY_THROTTLE, 4, 2);
    ap_bp *bp = &f->bp;
    const uint64_t ms = AP_NS_PER_MS;
    uint64_t at = 0, v = 0;
    for (int i = 0; i < 4; i++) /* LOW before each: free, at t = 0 */
        EXPECT_EQ(ap_bp_push(bp, &v, 0, NULL, &at), AP_OK);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_HIGH);
    EXPECT_EQ(ap_bp_push(bp, &v, 0, NULL, &at), AP_OK); /* the burst token */
    at = 0;
    EXPECT_EQ(ap_bp_push(bp, &v, 0, NULL, &at), AP_REJECTED);
    EXPECT_EQ(at, 100 * ms);
    EXPECT_EQ(ap_bp_len(bp), 5, "a rejected push leaves nothing reserved");
    EXPECT_EQ(ap_bp_push(bp, &v, 100 * ms - 1, NULL, &at), AP_REJECTED);
    EXPECT_EQ(at, 100 * ms);
    EXPECT_EQ(ap_bp_push(bp, &v, 100 * ms, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_bp_push(bp, &v, 150 * ms, NULL, &at), AP_REJECTED);
    EXPECT_EQ(at, 200 * ms);
    EXPECT_EQ(ap_bp_push(bp, &v, 200 * ms, NULL, &at), AP_OK);
    /* exactly one per 100 ms over a second while HIGH */
    unsigned ok = 0;
    for (uint64_t t = 201 * ms; t <= 1200 * ms; t += ms)
        ok += ap_bp_push(bp, &v, t, NULL, NULL) == AP_OK;
    EXPECT_EQ(ok, 10, "admitted %u", ok);
    EXPECT_EQ(ap_bp_len(bp), 17);
    /* drain to the low watermark: LOW, and pushes are free again */
    while (ap_bp_len(bp) > 2)
        (void)pop1(bp);
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_LOW);
    EXPECT_EQ(ap_bp_push(bp, &v, 1200 * ms, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_bp_push(bp, &v, 1200 * ms, NULL, NULL), AP_OK); /* 4: HIGH */
    EXPECT_EQ(ap_bp_level(bp), AP_BP_LEVEL_STATE_HIGH);
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    EXPECT_EQ(s.throttled, 3 + (1000 - 10));
    check_identities(bp);
    rm(f);
}

Test(backpressure, throttle_full_buffer_is_full_not_paced)
{
    fixture *f = mk(2, AP_BP_STRATEGY_THROTTLE, 2, 1);
    uint64_t v = 0;
    EXPECT_EQ(ap_bp_push(&f->bp, &v, 0, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_bp_push(&f->bp, &v, 0, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_bp_push(&f->bp, &v, 0, NULL, NULL), AP_FULL);
    EXPECT_EQ(bp_stats_of(&f->bp).full, 1);
    EXPECT_EQ(bp_stats_of(&f->bp).throttled, 0);
    check_identities(&f->bp);
    rm(f);
}

/* ---- futures ---- */

Test(backpressure, push_future_waits_for_a_pop)
{
    fixture *f = mk(1, AP_BP_STRATEGY_BLOCK, 0, 0);
    ap_bp *bp = &f->bp;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    EXPECT_EQ(push(bp, 1), AP_OK);
    uint64_t v = 2;
    ap_bp_push_fut pf;
    ap_bp_push_fut_init(&pf, bp, &v);
    EXPECT_EQ(ap_bp_push_poll(&pf, &cx), AP_PENDING);
    EXPECT_EQ(ap_bp_push_poll(&pf, &cx), AP_PENDING); /* re-poll: one wait */
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(pop1(bp), 1);
    EXPECT_EQ(calls(&t), 1, "the pop wakes the push future");
    EXPECT_EQ(ap_bp_push_poll(&pf, &cx), AP_READY);
    EXPECT_EQ(ap_bp_push_status(&pf), AP_OK);
    ap_bp_push_cancel(&pf); /* after completion: no-op */
    EXPECT_EQ(ap_bp_push_status(&pf), AP_OK);
    EXPECT_EQ(pop1(bp), 2);
    EXPECT_EQ(calls(&t), 1, "no wake after completion");
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    EXPECT_EQ(s.waits, 1);
    EXPECT_EQ(s.accepted, 2);
    EXPECT_EQ(s.offered, 2);
    check_identities(bp);
    rm(f);
}

Test(backpressure, push_future_cancel_is_idempotent_and_passes_the_wake)
{
    fixture *f = mk(1, AP_BP_STRATEGY_BLOCK, 0, 0);
    ap_bp *bp = &f->bp;
    tw t1 = {0}, t2 = {0};
    ap_cx c1 = cx_of(&t1), c2 = cx_of(&t2);
    EXPECT_EQ(push(bp, 1), AP_OK);
    uint64_t a = 10, b = 20;
    ap_bp_push_fut f1, f2;
    ap_bp_push_fut_init(&f1, bp, &a);
    ap_bp_push_fut_init(&f2, bp, &b);
    EXPECT_EQ(ap_bp_push_poll(&f1, &c1), AP_PENDING);
    EXPECT_EQ(ap_bp_push_poll(&f2, &c2), AP_PENDING);
    EXPECT_EQ(pop1(bp), 1); /* wakes f1 (FIFO) */
    EXPECT_EQ(calls(&t1), 1);
    EXPECT_EQ(calls(&t2), 0);
    ap_bp_push_cancel(&f1); /* woken, cancels: the wake goes to f2 */
    ap_bp_push_cancel(&f1);
    EXPECT_EQ(ap_bp_push_status(&f1), AP_CANCELED);
    EXPECT_EQ(calls(&t2), 1);
    EXPECT_EQ(ap_bp_push_poll(&f2, &c2), AP_READY);
    EXPECT_EQ(ap_bp_push_status(&f2), AP_OK);
    /* a pending future that cancels gets no later wake */
    ap_bp_push_fut_init(&f1, bp, &a);
    EXPECT_EQ(ap_bp_push_poll(&f1, &c1), AP_PENDING);
    ap_bp_push_cancel(&f1);
    EXPECT_EQ(pop1(bp), 20);
    EXPECT_EQ(calls(&t1), 1);
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    EXPECT_EQ(s.canceled, 2);
    EXPECT_EQ(s.waits, 3);
    check_identities(bp);
    rm(f);
}

Test(backpressure, push_future_is_inval_for_other_strategies)
{
    for (int s = AP_BP_STRATEGY_DROP_NEWEST; s <= AP_BP_STRATEGY_THROTTLE; s++) {
        fixture *f = mk(2, (ap_bp_strategy)s, 0, 0);
        tw t = {0};
        ap_cx cx = cx_of(&t);
        uint64_t v = 1;
        ap_bp_push_fut pf;
        ap_bp_push_fut_init(&pf, &f->bp, &v);
        EXPECT_EQ(ap_bp_push_poll(&pf, &cx), AP_READY);
        EXPECT_EQ(ap_bp_push_status(&pf), AP_INVAL);
        EXPECT_EQ(ap_bp_push_wait(&f->bp, &v, AP_DEADLINE_NONE), AP_INVAL);
        EXPECT_EQ(ap_bp_len(&f->bp), 0);
        EXPECT_EQ(bp_stats_of(&f->bp).offered, 0);
        rm(f);
    }
}

Test(backpressure, pop_future_contract)
{
    fixture *f = mk(4, AP_BP_STRATEGY_DROP_NEWEST, 0, 0);
    ap_bp *bp = &f->bp;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint64_t out = 0;
    ap_bp_pop_fut pf;
    ap_bp_pop_fut_init(&pf, bp, &out);
    EXPECT_EQ(ap_bp_pop_poll(&pf, &cx), AP_PENDING);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(push(bp, 42), AP_OK);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(ap_bp_pop_poll(&pf, &cx), AP_READY);
    EXPECT_EQ(ap_bp_pop_status(&pf), AP_OK);
    EXPECT_EQ(out, 42);
    tw t2 = {0};
    ap_cx cx2 = cx_of(&t2);
    ap_bp_pop_fut_init(&pf, bp, &out);
    EXPECT_EQ(ap_bp_pop_poll(&pf, &cx2), AP_PENDING);
    ap_bp_pop_cancel(&pf);
    ap_bp_pop_cancel(&pf);
    EXPECT_EQ(ap_bp_pop_status(&pf), AP_CANCELED);
    EXPECT_EQ(push(bp, 43), AP_OK);
    EXPECT_EQ(calls(&t2), 0);
    EXPECT_EQ(pop1(bp), 43);
    check_identities(bp);
    rm(f);
}

Test(backpressure, close_wakes_everyone_and_drains)
{
    fixture *f = mk(2, AP_BP_STRATEGY_BLOCK, 2, 1);
    ap_bp *bp = &f->bp;
    tw tp = {0}, tl = {0};
    ap_cx cp = cx_of(&tp), cl = cx_of(&tl);
    EXPECT_EQ(push(bp, 1), AP_OK);
    EXPECT_EQ(push(bp, 2), AP_OK);
    uint64_t v = 3;
    ap_bp_push_fut pf;
    ap_bp_push_fut_init(&pf, bp, &v);
    EXPECT_EQ(ap_bp_push_poll(&pf, &cp), AP_PENDING);
    ap_bp_low_fut lf;
    ap_bp_low_fut_init(&lf, bp);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cl), AP_PENDING);
    ap_bp_close(bp);
    ap_bp_close(bp);
    EXPECT(ap_bp_is_closed(bp));
    EXPECT_EQ(calls(&tp), 1);
    EXPECT_EQ(calls(&tl), 1);
    EXPECT_EQ(ap_bp_push_poll(&pf, &cp), AP_READY);
    EXPECT_EQ(ap_bp_push_status(&pf), AP_CLOSED);
    EXPECT_EQ(ap_bp_low_poll(&lf, &cl), AP_READY);
    EXPECT_EQ(ap_bp_low_status(&lf), AP_CLOSED);
    EXPECT_EQ(push(bp, 4), AP_CLOSED);
    EXPECT_EQ(pop1(bp), 1);
    EXPECT_EQ(pop1(bp), 2);
    uint64_t out = 0;
    EXPECT_EQ(ap_bp_try_pop(bp, &out), AP_CLOSED);
    EXPECT_EQ(ap_bp_pop_wait(bp, &out, AP_DEADLINE_NONE), AP_CLOSED);
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    EXPECT_EQ(s.closed, 2);
    check_identities(bp);
    rm(f);
}

Test(backpressure, close_wakes_a_waiting_pop_and_every_strategy_refuses)
{
    for (int s = AP_BP_STRATEGY_BLOCK; s <= AP_BP_STRATEGY_THROTTLE; s++) {
        fixture *f = mk(2, (ap_bp_strategy)s, 0, 0);
        tw t = {0};
        ap_cx cx = cx_of(&t);
        uint64_t out = 0, v = 5, ev = 0;
        ap_bp_pop_fut pf;
        ap_bp_pop_fut_init(&pf, &f->bp, &out);
        EXPECT_EQ(ap_bp_pop_poll(&pf, &cx), AP_PENDING);
        ap_bp_close(&f->bp);
        EXPECT_EQ(calls(&t), 1);
        EXPECT_EQ(ap_bp_pop_poll(&pf, &cx), AP_READY);
        EXPECT_EQ(ap_bp_pop_status(&pf), AP_CLOSED);
        EXPECT_EQ(ap_bp_push(&f->bp, &v, 0, &ev, NULL), AP_CLOSED);
        EXPECT_EQ(ev, 0);
        check_identities(&f->bp);
        rm(f);
    }
}

/* ---- threads ---- */

typedef struct mt {
    ap_bp *bp;
    unsigned id, n;
    atomic_ullong sum;
} mt;

static void *mt_producer(void *arg)
{
    mt *m = arg;
    for (unsigned i = 0; i < m->n; i++) {
        uint64_t v = (uint64_t)m->id << 32 | i;
        if (ap_bp_push(m->bp, &v, 0, NULL, NULL) != AP_OK)
            EXPECT_EQ(ap_bp_push_wait(m->bp, &v, AP_DEADLINE_NONE), AP_OK);
    }
    return NULL;
}

static void *mt_consumer(void *arg)
{
    mt *m = arg;
    uint64_t v, last[4] = {0, 0, 0, 0};
    bool seen[4] = {0};
    while (ap_bp_pop_wait(m->bp, &v, AP_DEADLINE_NONE) == AP_OK) {
        unsigned p = (unsigned)(v >> 32), s = (unsigned)v;
        EXPECT_LT(p, 4);
        if (seen[p])
            EXPECT_GT(s, last[p], "per-producer FIFO");
        seen[p] = true;
        last[p] = s;
        atomic_fetch_add(&m->sum, 1);
    }
    return NULL;
}

Test(backpressure, block_threads_push_wait_pop_wait, .timeout = TEST_TIMEOUT_S)
{
    fixture *f = mk(4, AP_BP_STRATEGY_BLOCK, 3, 1);
    pthread_t p[4], c[2];
    mt pm[4], cm[2];
    for (unsigned i = 0; i < 2; i++) {
        cm[i] = (mt){.bp = &f->bp};
        atomic_init(&cm[i].sum, 0);
        pthread_create(&c[i], NULL, mt_consumer, &cm[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        pm[i] = (mt){.bp = &f->bp, .id = i, .n = 20000};
        pthread_create(&p[i], NULL, mt_producer, &pm[i]);
    }
    for (unsigned i = 0; i < 4; i++)
        pthread_join(p[i], NULL);
    ap_bp_close(&f->bp);
    for (unsigned i = 0; i < 2; i++)
        pthread_join(c[i], NULL);
    EXPECT_EQ(atomic_load(&cm[0].sum) + atomic_load(&cm[1].sum), 80000);
    ap_bp_stats s;
    ap_bp_stats_get(&f->bp, &s);
    EXPECT_EQ(s.accepted, 80000);
    EXPECT_EQ(s.popped, 80000);
    check_identities(&f->bp);
    rm(f);
}

/* #11: the *_wait helpers wait on the object's clock (desc.clock), the one
 * ap_bp_push's now is on; they used ap_now_ns whatever the caller's clock. */
static uint64_t bp_fake_now(void *ctx) { return *(uint64_t *)ctx += AP_NS_PER_MS; }

Test(backpressure, wait_helpers_use_the_desc_clock, .timeout = TEST_TIMEOUT_S)
{
    fixture *f = aligned_alloc(AP_CACHELINE, ap__align_up(sizeof(fixture), AP_CACHELINE));
    EXPECT_NOT_NULL(f);
    uint64_t fake = 0;
    ap_bp_desc d = {.capacity = 4, .elem_size = sizeof(uint64_t), .strategy = AP_BP_STRATEGY_BLOCK,
                    .clock = {bp_fake_now, &fake}};
    EXPECT_EQ(ap_bp_init(&f->bp, f->buf, sizeof f->buf, &d), AP_OK);
    uint64_t v = 0, t0 = ap_now_ns();
    /* empty: a pop waits until the fake deadline (fake ms 50), which a real
     * clock would call long past, and the clock is what it read */
    EXPECT_EQ(ap_bp_pop_wait(&f->bp, &v, 50 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT(fake >= 50 * AP_NS_PER_MS, "the wait read the fake clock up to its deadline (%llu)",
              (unsigned long long)fake);
    EXPECT(ap_now_ns() - t0 < 5 * AP_NS_PER_SEC, "fake time, not real time");
    EXPECT_EQ(push(&f->bp, 7), AP_OK);
    EXPECT_EQ(ap_bp_pop_wait(&f->bp, &v, fake + AP_NS_PER_MS), AP_OK);
    EXPECT_EQ(v, 7);
    rm(f);
}
