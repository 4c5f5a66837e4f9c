/*
 * tests/test_token_bucket.c -- the token bucket (GCRA on the emission grid)
 *
 * Everything runs on a fake clock (plain uint64_t nanoseconds), so every
 * bound is checked exactly: V(t) = floor(n * t / period) is computed here
 * with tests/wide128.h (unsigned __int128, or 32-bit limbs on i386),
 * independently of the header's arithmetic.
 */
#include "asyncpat/token_bucket.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SEC AP_NS_PER_SEC
#define MS AP_NS_PER_MS

#include "wide128.h"

/* floor(n * t / period): tokens minted by t, the reference */
static uint64_t minted(uint64_t n, uint64_t period, uint64_t t)
{
    uint64_t q;
    (void)w128_muldiv(n, t, period, &q); /* (the low 64 bits if it does not fit) */
    return q;
}


static ap_tb make(uint64_t n, uint64_t period, uint64_t burst)
{
    ap_tb tb;
    ap_status st = ap_tb_init(&tb, &(ap_tb_desc){.n = n, .period_ns = period, .burst = burst});
    EXPECT_EQ(st, AP_OK, "init %llu/%llu burst %llu", (unsigned long long)n,
                 (unsigned long long)period, (unsigned long long)burst);
    return tb;
}
#define MAKE(name, n, period, burst) \
    ap_tb name;                      \
    do { ap_tb tmp_ = make(n, period, burst); memcpy(&name, &tmp_, sizeof name); } while (0)

/* ---- configuration ---- */

Test(token_bucket, desc_resolved_defaults)
{
    ap_tb_desc d = ap_tb_desc_resolved(&(ap_tb_desc){.n = 5, .burst = 2});
    EXPECT_EQ(d.n, 5);
    EXPECT_EQ(d.period_ns, SEC);
    EXPECT_EQ(d.burst, 2);
    d = ap_tb_desc_resolved(&(ap_tb_desc){.n = 1, .period_ns = 7, .burst = 9});
    EXPECT_EQ(d.period_ns, 7);
    EXPECT_EQ(d.burst, 9);
    MAKE(tb, 5, 0, 2);
    EXPECT_EQ(tb.desc.period_ns, SEC);
}

Test(token_bucket, inval_config_changes_nothing)
{
    const ap_tb_desc bad[] = {
        {.n = 0, .period_ns = SEC, .burst = 1},        /* zero rate */
        {.n = 1, .period_ns = SEC, .burst = 0},        /* zero burst */
        {.n = 0, .period_ns = 0, .burst = 0},          /* all zero */
        {.n = SEC + 1, .period_ns = SEC, .burst = 1},  /* > 1 token per ns */
        {.n = 2, .period_ns = 1, .burst = 1},
        {.n = 1, .period_ns = 1, .burst = UINT64_MAX}, /* burst past C's range */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ap_tb tb;
        memset(&tb, 0xA5, sizeof tb);
        unsigned char before[sizeof tb];
        memcpy(before, &tb, sizeof tb);
        EXPECT_EQ(ap_tb_init(&tb, &bad[i]), AP_INVAL, "case %zu", i);
        EXPECT_EQ(memcmp(before, &tb, sizeof tb), 0, "case %zu changed *tb", i);
        ap_tb_keyed kt;
        uint64_t buf[8];
        EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 4, &bad[i]), AP_INVAL, "keyed case %zu", i);
    }
    EXPECT_EQ(ap_tb_init(&(ap_tb){0}, NULL), AP_INVAL);
    /* the extremes that are valid */
    MAKE(a, SEC, SEC, 1);
    MAKE(b, 1, UINT64_MAX, UINT64_MAX - 1);
    (void)a;
    (void)b;
}

Test(token_bucket, request_larger_than_burst_is_inval)
{
    MAKE(tb, 10, SEC, 4);
    uint64_t r = 12345;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 5, 0, &r), AP_INVAL);
    EXPECT_EQ(r, 12345, "out-param untouched");
    EXPECT_EQ(ap_tb_available(&tb, 0), 4, "nothing taken");
    ap_tb_reservation res = {77, 77, 77};
    EXPECT_EQ(ap_tb_reserve(&tb, 5, 0, &res), AP_INVAL);
    EXPECT_EQ(res.tokens, 77);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 4, 0, &r), AP_OK);
}

Test(token_bucket, zero_tokens_is_ok_and_changes_nothing)
{
    MAKE(tb, 10, SEC, 2);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 2, 0, NULL), AP_OK);
    EXPECT_EQ(ap_tb_available(&tb, 0), 0);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 0, 0, NULL), AP_OK, "n = 0 on an empty bucket");
    EXPECT_EQ(ap_tb_available(&tb, 0), 0);
    ap_tb_reservation res;
    EXPECT_EQ(ap_tb_reserve(&tb, 0, 5, &res), AP_OK);
    EXPECT_EQ(res.tokens, 0);
    EXPECT_EQ(res.ready_at, 5);
    EXPECT_EQ(ap_tb_available(&tb, 100 * MS), 1);
}

Test(token_bucket, fresh_bucket_is_full_at_time_zero)
{
    MAKE(tb, 1, SEC, 3);
    EXPECT_EQ(ap_tb_available(&tb, 0), 3);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, NULL), AP_OK);
    uint64_t r = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, &r), AP_EMPTY);
    EXPECT_EQ(r, SEC);
}

/* ---- exactness ---- */

Test(token_bucket, sub_second_refill_is_exact)
{
    MAKE(tb, 10, SEC, 1);
    uint64_t r = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 99999999, &r), AP_EMPTY, "not at 99.999 ms");
    EXPECT_EQ(r, 100 * MS, "retry_at is exactly 100 ms");
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 100 * MS, &r), AP_OK, "back at exactly 100 ms");
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 199999999, &r), AP_EMPTY);
    EXPECT_EQ(r, 200 * MS);
    /* a non-integer interval: 3/s mints at ceil(k * 1e9 / 3) */
    MAKE(t3, 3, SEC, 1);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 333333333, &r), AP_EMPTY);
    EXPECT_EQ(r, 333333334);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 333333334, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 666666666, &r), AP_EMPTY);
    EXPECT_EQ(r, 666666667);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 666666667, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&t3, 1, 999999999, &r), AP_EMPTY);
    EXPECT_EQ(r, SEC, "three tokens a second, exactly");
}

/* A greedy caller that jumps straight to retry_at. */
static uint64_t greedy_jump(ap_tb *tb, uint64_t m, uint64_t t_end, uint64_t *tries)
{
    uint64_t now = 0, got = 0;
    *tries = 0;
    while (now <= t_end) {
        uint64_t r = 0;
        ++*tries;
        if (ap_tb_try_acquire(tb, m, now, &r) == AP_OK) {
            got += m;
        } else {
            EXPECT_GT(r, now, "retry_at must be in the future");
            now = r;
        }
    }
    return got;
}

Test(token_bucket, simulated_hour_at_1000_per_s_is_exact)
{
    MAKE(tb, 1000, SEC, 10);
    uint64_t tries;
    uint64_t got = greedy_jump(&tb, 1, 3600 * SEC, &tries);
    EXPECT_EQ(got, 3600u * 1000u + 10u, "got %llu", (unsigned long long)got);
    /* the same hour polled every 250 us instead */
    MAKE(t2, 1000, SEC, 10);
    uint64_t g2 = 0;
    for (uint64_t t = 0; t <= 3600 * SEC; t += 250 * AP_NS_PER_US)
        while (ap_tb_try_acquire(&t2, 1, t, NULL) == AP_OK)
            g2++;
    EXPECT_EQ(g2, 3600u * 1000u + 10u);
    /* and a rate whose interval is not an integer: 7 per 3 s */
    MAKE(t3, 7, 3 * SEC, 4);
    EXPECT_EQ(greedy_jump(&t3, 1, 3600 * SEC, &tries), 3600u * 7u / 3u + 4u);
}

/*
 * Random walk: at every step admitted <= burst + V(t_max), and, while time
 * only moves forward, the bucket agrees exactly with a naive token counter
 * refilled by V(t) - V(t_prev) and capped at burst; retry_at is exact.
 */
static void random_walk(uint64_t n, uint64_t period, uint64_t burst, uint64_t step_max,
                        int steps, bool backwards, uint64_t seed)
{
    MAKE(tb, n, period, burst);
    uint64_t s = seed | 1, t = 0, t_max = 0, admitted = 0;
    uint64_t model = burst, t_prev = 0; /* monotone-time model */
    bool monotone = true;
    for (int i = 0; i < steps; i++) {
        uint64_t x = rng_next(&s);
        if (backwards && x % 16 == 0 && t > 0) {
            t -= rng_next(&s) % (t + 1);
            monotone = false;
        } else {
            t += (x >> 8) % (step_max + 1);
        }
        if (t > t_max)
            t_max = t;
        uint64_t m = 1 + rng_next(&s) % (burst < 4 ? burst : 4);
        if (monotone) {
            uint64_t add = minted(n, period, t) - minted(n, period, t_prev);
            model = model + add > burst ? burst : model + add;
            t_prev = t;
            EXPECT_EQ(ap_tb_available(&tb, t), model, "step %d: available", i);
        }
        uint64_t r = 0;
        ap_status st = ap_tb_try_acquire(&tb, m, t, &r);
        if (st == AP_OK) {
            admitted += m;
            if (monotone) {
                EXPECT_GE(model, m, "step %d: admitted beyond the model", i);
                model -= m;
            }
        } else {
            EXPECT_EQ(st, AP_EMPTY);
            EXPECT_GT(r, t);
            if (monotone) {
                EXPECT_LT(model, m, "step %d: rejected with tokens", i);
                EXPECT_GE(ap_tb_available(&tb, r), m, "retry_at too early");
                EXPECT_LT(ap_tb_available(&tb, r - 1), m, "retry_at too late");
            }
        }
        EXPECT_LE(admitted, burst + minted(n, period, t_max),
                      "step %d: admitted %llu > burst + rate*t at t=%llu", i,
                      (unsigned long long)admitted, (unsigned long long)t_max);
    }
}

Test(token_bucket, bound_holds_at_every_step_of_a_random_walk)
{
    random_walk(1000, SEC, 10, 3 * MS, 200000, false, 1);
    random_walk(10, SEC, 1, 300 * MS, 50000, false, 2);
    random_walk(3, SEC, 2, 900 * MS, 50000, false, 3);
    random_walk(7, 3 * SEC, 5, 2 * SEC, 50000, false, 4);
    random_walk(999999937, SEC, 1000, 5000, 100000, false, 5); /* prime n: n' ~ 1e9 */
    random_walk(SEC, SEC, 100, 300, 100000, false, 6);         /* 1e9/s */
    random_walk(1000, SEC, 10, 3 * MS, 100000, true, 7);       /* with backwards time */
    random_walk(3, SEC, 2, 900 * MS, 50000, true, 8);
}

Test(token_bucket, greedy_caller_reaches_rate_after_burst)
{
    const uint64_t cfg[][3] = {{3, SEC, 5}, {1000, SEC, 1}, {7, 3 * SEC, 2}, {10, SEC, 10}};
    for (size_t c = 0; c < 4; c++) {
        MAKE(tb, cfg[c][0], cfg[c][1], cfg[c][2]);
        uint64_t got = 0;
        for (uint64_t t = 0; t <= 100 * SEC; t += MS) {
            while (ap_tb_try_acquire(&tb, 1, t, NULL) == AP_OK)
                got++;
            uint64_t bound = cfg[c][2] + minted(cfg[c][0], cfg[c][1], t);
            EXPECT_EQ(got, bound, "cfg %zu t=%llu: greedy got %llu, bound %llu", c,
                         (unsigned long long)t, (unsigned long long)got,
                         (unsigned long long)bound);
        }
    }
}

Test(token_bucket, backwards_time_mints_nothing)
{
    MAKE(tb, 10, SEC, 3);
    uint64_t r;
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 10 * SEC, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 10 * SEC, &r), AP_EMPTY);
    for (uint64_t t = 0; t < 10 * SEC; t += 7 * MS) {
        EXPECT_EQ(ap_tb_try_acquire(&tb, 1, t, &r), AP_EMPTY, "t=%llu",
                     (unsigned long long)t);
        EXPECT_EQ(ap_tb_available(&tb, t), 0);
    }
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 10 * SEC + 99 * MS, &r), AP_EMPTY);
    EXPECT_EQ(r, 10 * SEC + 100 * MS, "as if time had never gone back");
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 10 * SEC + 100 * MS, &r), AP_OK);
    /* a full bucket seen at a later time, then an earlier one: still burst */
    MAKE(t2, 10, SEC, 3);
    EXPECT_EQ(ap_tb_available(&t2, 100 * SEC), 3);
    EXPECT_EQ(ap_tb_try_acquire(&t2, 3, 100 * SEC, &r), AP_OK);
    EXPECT_EQ(ap_tb_available(&t2, 50 * SEC), 0);
    EXPECT_EQ(ap_tb_try_acquire(&t2, 1, 50 * SEC, &r), AP_EMPTY);
    EXPECT_EQ(r, 100 * SEC + 100 * MS);
}

Test(token_bucket, extreme_rates_periods_and_bursts)
{
    uint64_t r;
    /* 1e9/s at the far end of the clock */
    MAKE(g, SEC, SEC, 1000000);
    uint64_t t0 = UINT64_MAX - 10 * SEC;
    EXPECT_EQ(ap_tb_try_acquire(&g, 1000000, t0, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&g, 1, t0, &r), AP_EMPTY);
    EXPECT_EQ(r, t0 + 1);
    EXPECT_EQ(ap_tb_try_acquire(&g, 1000, t0 + 1000, &r), AP_OK);
    EXPECT_EQ(ap_tb_available(&g, UINT64_MAX), 1000000);
    /* one token per three days, far in the future */
    const uint64_t day = 86400 * SEC;
    MAKE(d, 1, 3 * day, 2);
    uint64_t t1 = (uint64_t)1 << 62;
    EXPECT_EQ(ap_tb_try_acquire(&d, 2, t1, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&d, 1, t1, &r), AP_EMPTY);
    EXPECT_EQ(r, (t1 / (3 * day) + 1) * 3 * day);
    EXPECT_EQ(ap_tb_try_acquire(&d, 1, r, &r), AP_OK);
    /* 7 per 5 days: n' = 7, period ~4.3e14 */
    MAKE(d7, 7, 5 * day, 3);
    EXPECT_EQ(ap_tb_try_acquire(&d7, 3, t1, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&d7, 1, t1, &r), AP_EMPTY);
    EXPECT_EQ(minted(7, 5 * day, r), minted(7, 5 * day, t1) + 1);
    EXPECT_EQ(minted(7, 5 * day, r - 1), minted(7, 5 * day, t1));
    /* retry_at beyond the clock saturates */
    MAKE(y, 1, 365 * day, 1);
    EXPECT_EQ(ap_tb_try_acquire(&y, 1, UINT64_MAX - day, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&y, 1, UINT64_MAX - day, &r), AP_REJECTED);
    EXPECT_EQ(r, AP_DEADLINE_NONE);
    /* huge bursts */
    MAKE(b, 1000, SEC, UINT64_MAX - 1);
    EXPECT_EQ(ap_tb_available(&b, 0), UINT64_MAX - 1);
    EXPECT_EQ(ap_tb_try_acquire(&b, UINT64_MAX - 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&b, 1, 0, &r), AP_REJECTED);
    EXPECT_EQ(r, AP_DEADLINE_NONE, "that debt is never repaid within the clock");
    EXPECT_EQ(ap_tb_try_acquire(&b, 1, UINT64_MAX, &r), AP_REJECTED);
    MAKE(b2, 1000, SEC, (uint64_t)1 << 62);
    EXPECT_EQ(ap_tb_try_acquire(&b2, (uint64_t)1 << 62, UINT64_MAX, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&b2, (uint64_t)1 << 62, UINT64_MAX, &r), AP_REJECTED);
    /* a reservation backlog that would overflow C is refused */
    MAKE(o, 1, UINT64_MAX, UINT64_MAX - 1);
    ap_tb_reservation res;
    EXPECT_EQ(ap_tb_reserve(&o, UINT64_MAX - 1, 0, &res), AP_OK);
    EXPECT_EQ(ap_tb_reserve(&o, 1, 0, &res), AP_REJECTED);
}

Test(token_bucket, portable_128_bit_arithmetic_matches_int128)
{
    uint64_t s = 42;
    for (int i = 0; i < 200000; i++) {
        uint64_t a = rng_next(&s), b = rng_next(&s), d = rng_next(&s);
        switch (i % 4) {
        case 1: a >>= rng_next(&s) % 64; break;
        case 2: b >>= rng_next(&s) % 64; d >>= rng_next(&s) % 64; break;
        case 3: d = (d >> (rng_next(&s) % 64)); a = UINT64_MAX; break;
        }
        if (d == 0)
            d = 1;
        uint64_t hi, lo;
        ap__mul_64x64(a, b, &hi, &lo);
        w128 p = w128_mul64(a, b);
        EXPECT(hi == p.hi && lo == p.lo);
        uint64_t prem;
        w128 pq = w128_divmod64(p, d, &prem);
        if (hi < d) {
            uint64_t rem, q = ap__div_128_64(hi, lo, d, &rem);
            EXPECT(pq.hi == 0 && q == pq.lo && rem == prem, "div %d", i);
        }
        uint64_t out;
        bool ok = ap__tb_muldiv(a, b, d, 1, &out);
        w128 want = w128_add(pq, w128_u64(prem != 0)); /* rounded up */
        EXPECT_EQ(ok, w128_fits_u64(want));
        if (ok)
            EXPECT(out == want.lo);
    }
}

/* ---- reservations ---- */

Test(token_bucket, reserve_tells_exact_ready_time)
{
    MAKE(tb, 10, SEC, 2);
    ap_tb_reservation a, b, c;
    EXPECT_EQ(ap_tb_reserve(&tb, 2, 0, &a), AP_OK);
    EXPECT_EQ(a.ready_at, 0);
    EXPECT_EQ(a.tokens, 2);
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &b), AP_OK);
    EXPECT_EQ(b.ready_at, 100 * MS);
    EXPECT_EQ(ap_tb_reserve(&tb, 2, 50 * MS, &c), AP_OK);
    EXPECT_EQ(c.ready_at, 300 * MS);
    uint64_t r;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 300 * MS, &r), AP_EMPTY, "queued behind c");
    EXPECT_EQ(r, 400 * MS);
}

Test(token_bucket, cancel_returns_exactly_its_tokens)
{
    MAKE(tb, 10, SEC, 5);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 5, 0, NULL), AP_OK);
    uint64_t before = ap_tb_available(&tb, 250 * MS); /* 2 */
    EXPECT_EQ(before, 2);
    ap_tb_reservation res;
    EXPECT_EQ(ap_tb_reserve(&tb, 4, 250 * MS, &res), AP_OK);
    EXPECT_EQ(res.ready_at, 400 * MS);
    EXPECT_EQ(ap_tb_available(&tb, 250 * MS), 0);
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &res, 250 * MS), 4);
    EXPECT_EQ(ap_tb_available(&tb, 250 * MS), before, "exactly its tokens back");
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &res, 250 * MS), 0, "idempotent");
    EXPECT_EQ(ap_tb_available(&tb, 250 * MS), before);
    /* a reservation that is due counts as used */
    EXPECT_EQ(ap_tb_reserve(&tb, 4, 250 * MS, &res), AP_OK);
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &res, 400 * MS), 0);
    EXPECT_EQ(ap_tb_available(&tb, 400 * MS), 0);
    /* returned tokens never overfill the bucket */
    MAKE(t2, 10, SEC, 3);
    EXPECT_EQ(ap_tb_reserve(&t2, 3, 0, &res), AP_OK);
    ap_tb_reservation late;
    EXPECT_EQ(ap_tb_reserve(&t2, 2, 0, &late), AP_OK);
    EXPECT_EQ(late.ready_at, 200 * MS);
    EXPECT_EQ(ap_tb_cancel_reservation(&t2, &late, 150 * MS), 2);
    EXPECT_EQ(ap_tb_available(&t2, 150 * MS), 1);
    EXPECT_EQ(ap_tb_available(&t2, 10 * SEC), 3);
}

Test(token_bucket, cancel_with_later_reservations_keeps_their_times)
{
    MAKE(tb, 10, SEC, 1);
    ap_tb_reservation r1, r2, r3, r4;
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &r1), AP_OK);
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &r2), AP_OK);
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &r3), AP_OK);
    EXPECT_EQ(r2.ready_at, 100 * MS);
    EXPECT_EQ(r3.ready_at, 200 * MS);
    /* r3 is queued behind r2's token: cancelling r2 forfeits it (handing
     * it out again would let r1, r3 and a new one be due by 200 ms) */
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &r2, 10 * MS), 0);
    EXPECT_EQ(r2.tokens, 0, "cancelled all the same");
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &r2, 10 * MS), 0, "idempotent");
    EXPECT_EQ(r3.ready_at, 200 * MS, "a later reservation does not move");
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 10 * MS, &r4), AP_OK);
    EXPECT_EQ(r4.ready_at, 300 * MS, "the forfeited token is not handed out again");
    /* cancels in reverse order give everything back, down to the forfeit */
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &r4, 10 * MS), 1);
    EXPECT_EQ(ap_tb_cancel_reservation(&tb, &r3, 10 * MS), 1);
    ap_tb_reservation r5;
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 10 * MS, &r5), AP_OK);
    EXPECT_EQ(r5.ready_at, 200 * MS, "r2's slot stays forfeited, r3's came back");
}

/* Cancels in reverse order of reserving restore the bucket exactly. */
Test(token_bucket, lifo_cancels_give_everything_back)
{
    MAKE(tb, 3, SEC, 4);
    ap_tb_reservation r[6];
    EXPECT_EQ(ap_tb_try_acquire(&tb, 4, 0, NULL), AP_OK);
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(ap_tb_reserve(&tb, 1 + (uint64_t)i % 4, 5 * MS, &r[i]), AP_OK);
        EXPECT_GT(r[i].ready_at, 5 * MS);
    }
    for (int i = 5; i >= 0; i--)
        EXPECT_EQ(ap_tb_cancel_reservation(&tb, &r[i], 5 * MS), 1 + (uint64_t)i % 4, "r[%d]", i);
    uint64_t at = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 5 * MS, &at), AP_EMPTY);
    EXPECT_EQ(at, 333333334, "as after the try_acquire alone: next token at ceil(1 s / 3)");
    ap_tb_reservation again;
    EXPECT_EQ(ap_tb_reserve(&tb, 1, 5 * MS, &again), AP_OK);
    EXPECT_EQ(again.ready_at, r[0].ready_at);
}

/* ---- the window bound, by brute force ---- */

/* Tokens that became usable at one instant: an admission (at its request
 * time), a reservation or a completed future (at its ready_at). */
typedef struct grant {
    uint64_t at, tokens;
} grant;

static int grant_cmp(const void *a, const void *b)
{
    uint64_t x = ((const grant *)a)->at, y = ((const grant *)b)->at;
    return x < y ? -1 : x > y;
}

/*
 * Every window (s, t]: the tokens usable in it are at most
 * burst + V(t) - V(s) (for s before time 0, burst + V(t)). The count only
 * changes at usable instants and V is monotone, so for the grants in
 * [a, b] the tightest window is (a - 1, b]: checking every pair of usable
 * instants a <= b checks every window.
 */
static void check_all_windows(grant *g, size_t k, uint64_t n, uint64_t per, uint64_t burst,
                              const char *what)
{
    qsort(g, k, sizeof *g, grant_cmp);
    for (size_t i = 0; i < k; i++) {
        if (i > 0 && g[i].at == g[i - 1].at)
            continue; /* a starts at the first grant of its instant */
        uint64_t a = g[i].at, va = a == 0 ? 0 : minted(n, per, a - 1);
        w128 sum = w128_u64(0);
        for (size_t j = i; j < k; j++) {
            sum = w128_add(sum, w128_u64(g[j].tokens));
            if (j + 1 < k && g[j + 1].at == g[j].at)
                continue; /* b ends after the last grant of its instant */
            w128 bound = w128_sub(w128_add(w128_u64(burst), w128_u64(minted(n, per, g[j].at))),
                                  w128_u64(a == 0 ? 0 : va));
            EXPECT(w128_cmp(sum, bound) <= 0,
                      "%s: %llu tokens usable in (%llu, %llu], bound %llu", what,
                      (unsigned long long)sum.lo, (unsigned long long)(a == 0 ? 0 : a - 1),
                      (unsigned long long)g[j].at, (unsigned long long)bound.lo);
        }
    }
}

/* Regression (issue #11): at now = UINT64_MAX the ready instant of the 2nd
 * token lies past 2^64 - 1 ns; it was saturated to UINT64_MAX = now, so
 * every reservation and every future was due at once (100 of 100), where
 * burst + V(UINT64_MAX) = 1 + 3 = 4 is the bound. */
Test(token_bucket, bound_holds_at_now_uint64_max)
{
    const uint64_t P = (uint64_t)1 << 62;
    const uint64_t bound = 1 + minted(1, P, UINT64_MAX);
    EXPECT_EQ(bound, 4);
    /* futures */
    MAKE(tb, 1, P, 1);
    static ap_tb_acquire_fut f[100];
    uint64_t ok = 0;
    for (int i = 0; i < 100; i++) {
        ap_tb_acquire_fut_init(&f[i], &tb, 1, AP_DEADLINE_NONE);
        ap_cx cx = {AP_WAKER_NONE, UINT64_MAX, AP_DEADLINE_NONE};
        EXPECT_EQ(ap_tb_acquire_poll(&f[i], &cx), AP_READY, "future %d", i);
        ap_status st = ap_tb_acquire_status(&f[i]);
        EXPECT(st == AP_OK || st == AP_REJECTED, "future %d: %s", i, ap_status_str(st));
        ok += st == AP_OK;
    }
    EXPECT_LE(ok, bound, "%llu futures admitted at UINT64_MAX", (unsigned long long)ok);
    EXPECT_GE(ok, 1);
    /* reservations */
    MAKE(tb2, 1, P, 1);
    ok = 0;
    for (int i = 0; i < 100; i++) {
        ap_tb_reservation r = {7, 7, 7};
        ap_status st = ap_tb_reserve(&tb2, 1, UINT64_MAX, &r);
        if (st == AP_OK) {
            ok += r.tokens;
            EXPECT_EQ(r.ready_at, UINT64_MAX);
        } else {
            EXPECT_EQ(st, AP_REJECTED, "reservation %d: %s", i, ap_status_str(st));
            EXPECT(r.tokens == 7 && r.ready_at == 7 && r.end == 7, "*res untouched");
        }
    }
    EXPECT_LE(ok, bound, "%llu tokens reserved due at UINT64_MAX", (unsigned long long)ok);
    uint64_t at = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb2, 1, UINT64_MAX, &at), AP_REJECTED, "as before");
    EXPECT_EQ(at, AP_DEADLINE_NONE);
}

/* The same near the top of the clock for rates with n' > 1 (the 128-bit
 * path) and n' = 1, against the brute-force window check: reservations
 * and futures at instants close to UINT64_MAX are either refused or
 * usable within the bound. */
Test(token_bucket, bound_holds_near_the_end_of_the_clock)
{
    const uint64_t cfgs[][3] = {
        {1, (uint64_t)1 << 62, 1}, {3, ((uint64_t)1 << 62) + 1, 2}, {7, UINT64_MAX / 5, 3},
        {1000, SEC, 5}, {1, UINT64_MAX, 1},
    };
    enum { K = 300 };
    static grant g[K];
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        uint64_t n = cfgs[c][0], per = cfgs[c][1], burst = cfgs[c][2], s = 5 + c;
        MAKE(tb, n, per, burst);
        size_t k = 0;
        for (int i = 0; i < K; i++) {
            uint64_t now = UINT64_MAX - rng_next(&s) % 4, m = 1 + rng_next(&s) % burst;
            if (i % 2) {
                ap_tb_reservation r;
                ap_status st = ap_tb_reserve(&tb, m, now, &r);
                EXPECT(st == AP_OK || st == AP_REJECTED);
                if (st == AP_OK) {
                    EXPECT_GE(r.ready_at, now);
                    g[k++] = (grant){r.ready_at, m};
                }
            } else {
                ap_tb_acquire_fut f;
                ap_tb_acquire_fut_init(&f, &tb, m, AP_DEADLINE_NONE);
                ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
                if (ap_tb_acquire_poll(&f, &cx) == AP_PENDING) {
                    EXPECT_LT(cx.deadline, AP_DEADLINE_NONE);
                    cx.now = cx.deadline;
                    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
                    EXPECT_EQ(ap_tb_acquire_status(&f), AP_OK);
                    g[k++] = (grant){f.res.ready_at, m};
                } else if (ap_tb_acquire_status(&f) == AP_OK) {
                    g[k++] = (grant){now, m};
                } else {
                    EXPECT_EQ(ap_tb_acquire_status(&f), AP_REJECTED);
                }
            }
        }
        check_all_windows(g, k, n, per, burst, "end of clock");
    }
}

/* Regression (issue #11), the exact scenario: n = 1, period 100, burst 1;
 * at t = 0 reserve 11 single tokens (ready at 0, 100, ..., 1000); five
 * times cancel every live one with 0 < ready_at < 1000 and reserve as many
 * again. The old cancel handed every cancelled slot out again, so six
 * reservations came due at exactly t = 1000, where a window (s, 1000]
 * holds at most burst + V(1000) - V(s) = 2 (s in [900, 1000)). */
Test(token_bucket, cancel_and_rereserve_keeps_the_window_bound)
{
    enum { MAXR = 11 * 6 };
    MAKE(tb, 1, 100, 1);
    static ap_tb_reservation r[MAXR];
    static bool live[MAXR];
    size_t k = 0;
    for (int i = 0; i < 11; i++) {
        EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &r[k]), AP_OK);
        EXPECT_EQ(r[k].ready_at, 100 * (uint64_t)i);
        live[k++] = true;
    }
    for (int round = 0; round < 5; round++) {
        size_t again = 0, end = k;
        for (size_t j = 0; j < end; j++) {
            if (live[j] && r[j].ready_at > 0 && r[j].ready_at < 1000) {
                uint64_t back = ap_tb_cancel_reservation(&tb, &r[j], 0);
                EXPECT(back == 0 || back == 1);
                live[j] = false;
                again++;
            }
        }
        for (size_t j = 0; j < again; j++) {
            EXPECT_LT(k, (size_t)MAXR);
            EXPECT_EQ(ap_tb_reserve(&tb, 1, 0, &r[k]), AP_OK);
            live[k++] = true;
        }
    }
    uint64_t at_1000 = 0;
    grant g[MAXR];
    size_t ng = 0;
    for (size_t j = 0; j < k; j++) {
        if (!live[j])
            continue;
        at_1000 += r[j].ready_at == 1000;
        g[ng++] = (grant){r[j].ready_at, r[j].tokens};
    }
    EXPECT_LE(at_1000, 2, "%llu live reservations ready at exactly t = 1000",
                  (unsigned long long)at_1000);
    check_all_windows(g, ng, 1, 100, 1, "issue #11 scenario");
}

/* Random reserves, cancels (of reservations and of futures), try_acquires
 * and acquire futures on a fake clock that sometimes steps back: every
 * window (s, t] over the tokens not cancelled is checked by brute force. */
Test(token_bucket, window_bound_holds_with_random_reservations_and_cancels)
{
    enum { N = 3000, NF = 8 };
    static ap_tb_reservation res[N];
    static bool live[N];
    static grant g[N + N];
    const uint64_t cfgs[][3] = {{10, SEC, 3}, {3, SEC, 2}, {1000, SEC, 20}, {1, 100, 1},
                                {7, 1000, 4}};
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        uint64_t n = cfgs[c][0], per = cfgs[c][1], burst = cfgs[c][2];
        MAKE(tb, n, per, burst);
        ap_tb_acquire_fut fut[NF];
        bool fut_on[NF] = {false};
        uint64_t s = 99 + c, t = 0, gaps = 2 * per / n, given_back = 0;
        size_t k = 0, ng = 0;
        long last = -1; /* the reservation that committed last, if nothing came after */
        for (int i = 0; i < N; i++) {
            t += rng_next(&s) % gaps;
            uint64_t now = (rng_next(&s) % 20 == 0 && t > gaps) ? t - rng_next(&s) % gaps : t;
            uint64_t x = rng_next(&s) % 20;
            if (x < 9 || k == 0) {
                uint64_t m = 1 + rng_next(&s) % burst;
                EXPECT_EQ(ap_tb_reserve(&tb, m, now, &res[k]), AP_OK);
                EXPECT_GE(res[k].ready_at, now);
                last = (long)k;
                live[k++] = true;
            } else if (x < 14) {
                /* half of them the newest reservation (LIFO), else any */
                size_t j = rng_next(&s) % 2 ? k - 1 : (size_t)(rng_next(&s) % k);
                bool due = !(now < res[j].ready_at);
                uint64_t m = res[j].tokens, back = ap_tb_cancel_reservation(&tb, &res[j], now);
                EXPECT(back == 0 || back == m);
                if (live[j] && !due && (long)j == last)
                    EXPECT_EQ(back, m, "the latest reservation gives all back");
                if (!live[j] || due)
                    EXPECT_EQ(back, 0);
                if (live[j] && !due) {
                    live[j] = false;
                    EXPECT_EQ(res[j].tokens, 0);
                }
                given_back += back;
                last = -1;
            } else if (x < 16) {
                if (ap_tb_try_acquire(&tb, 1, now, NULL) == AP_OK) {
                    g[ng++] = (grant){now, 1};
                    last = -1;
                }
            } else if (x < 18) {
                size_t j = (size_t)(rng_next(&s) % NF);
                if (!fut_on[j]) {
                    ap_tb_acquire_fut_init(&fut[j], &tb, 1 + rng_next(&s) % burst,
                                           now + rng_next(&s) % (4 * gaps));
                    fut_on[j] = true;
                    last = -1;
                }
            } else {
                size_t j = (size_t)(rng_next(&s) % NF);
                if (fut_on[j]) {
                    ap_tb_acquire_cancel(&fut[j]);
                    fut_on[j] = false;
                    last = -1;
                }
            }
            for (size_t j = 0; j < NF; j++) {
                if (!fut_on[j])
                    continue;
                ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
                if (ap_tb_acquire_poll(&fut[j], &cx) == AP_READY) {
                    ap_status st = ap_tb_acquire_status(&fut[j]);
                    EXPECT(st == AP_OK || st == AP_TIMEDOUT, "%s", ap_status_str(st));
                    if (st == AP_OK)
                        g[ng++] = (grant){fut[j].res.ready_at, fut[j].n};
                    fut_on[j] = false;
                }
            }
        }
        for (size_t j = 0; j < k; j++)
            if (live[j])
                g[ng++] = (grant){res[j].ready_at, res[j].tokens};
        EXPECT_GT(given_back, 0, "cfg %zu: some cancels should give back", c);
        check_all_windows(g, ng, n, per, burst, "random");
    }
}

/* ---- the acquire future ---- */

static ap_cx cx_at(uint64_t now) { return (ap_cx){AP_WAKER_NONE, now, AP_DEADLINE_NONE}; }

Test(token_bucket, future_waits_by_lowering_the_deadline)
{
    MAKE(tb, 10, SEC, 1);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, NULL), AP_OK);
    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, &tb, 1, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_NOT_READY);
    ap_cx cx = cx_at(30 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 100 * MS);
    cx = cx_at(60 * MS);
    cx.deadline = 70 * MS; /* an earlier deadline from someone else stays */
    EXPECT_EQ(f.base.poll(&f.base, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 70 * MS);
    cx = cx_at(100 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_tb_available(&tb, 150 * MS), 0, "the future took the token");
    ap_tb_acquire_cancel(&f); /* after completion: no-op */
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_tb_available(&tb, 150 * MS), 0);
}

Test(token_bucket, future_cancel_returns_tokens_and_is_idempotent)
{
    MAKE(tb, 10, SEC, 2);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 2, 0, NULL), AP_OK);
    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, &tb, 2, AP_DEADLINE_NONE);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 200 * MS);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 0);
    ap_future_cancel(&f.base);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 2, "both tokens back");
    ap_tb_acquire_cancel(&f);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 2);
    cx = cx_at(300 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_CANCELED);
    /* cancel before the first poll */
    ap_tb_acquire_fut g;
    ap_tb_acquire_fut_init(&g, &tb, 1, AP_DEADLINE_NONE);
    ap_tb_acquire_cancel(&g);
    EXPECT_EQ(ap_tb_acquire_status(&g), AP_CANCELED);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 2);
}

Test(token_bucket, future_deadline_and_inval)
{
    MAKE(tb, 10, SEC, 1);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, NULL), AP_OK);
    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, &tb, 1, 99 * MS);
    ap_cx cx = cx_at(0);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_TIMEDOUT);
    EXPECT_EQ(cx.deadline, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_available(&tb, 100 * MS), 1, "a timed-out future took nothing");
    ap_tb_acquire_fut_init(&f, &tb, 1, 100 * MS);
    cx = cx_at(0);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_PENDING, "ready exactly at the deadline");
    ap_tb_acquire_fut_init(&f, &tb, 2, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_INVAL);
    /* due now with a deadline already past: ok */
    MAKE(t2, 10, SEC, 1);
    ap_tb_acquire_fut_init(&f, &t2, 1, 0);
    cx = cx_at(5 * SEC);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_OK);
}

Test(token_bucket, acquire_wait_on_the_real_clock, .timeout = TEST_TIMEOUT_S)
{
    MAKE(tb, 1000, SEC, 1); /* one token per ms */
    uint64_t t0 = ap_now_ns();
    for (int i = 0; i < 20; i++)
        EXPECT_EQ(ap_tb_acquire_wait(&tb, 1, AP_DEADLINE_NONE), AP_OK);
    uint64_t el = ap_now_ns() - t0;
    EXPECT_GE(el, 18 * MS, "20 tokens at 1000/s from a 1-token bucket took %llu ns",
                  (unsigned long long)el);
    /* a deadline it cannot meet: AP_TIMEDOUT at once, nothing taken */
    MAKE(slow, 1, 3600 * SEC, 1);
    EXPECT_EQ(ap_tb_acquire_wait(&slow, 1, AP_DEADLINE_NONE), AP_OK);
    t0 = ap_now_ns();
    EXPECT_EQ(ap_tb_acquire_wait(&slow, 1, t0 + 10 * MS), AP_TIMEDOUT);
    EXPECT_LT(ap_now_ns() - t0, 5 * SEC);
    EXPECT_EQ(ap_tb_acquire_wait(&slow, 2, AP_DEADLINE_NONE), AP_INVAL);
}

/* ---- the bucket's clock (desc.clock) reaches ap_tb_acquire_wait ----
 * (test_clock: test_util.h) */
static ap_tb make_clocked(uint64_t n, uint64_t period, uint64_t burst, test_clock *c)
{
    ap_tb tb;
    EXPECT_EQ(ap_tb_init(&tb, &(ap_tb_desc){.n = n, .period_ns = period, .burst = burst,
                                               .clock = {test_clock_now, c}}),
                 AP_OK);
    return tb;
}

Test(token_bucket, acquire_wait_runs_on_the_desc_clock, .timeout = TEST_TIMEOUT_S)
{
    /* one token an hour, on a fake clock at 2^62 ns that moves a minute
     * per read: the wait must end when the FAKE clock reaches the token's
     * instant, in a few ms of real time */
    const uint64_t t0 = UINT64_C(1) << 62, step = 60 * SEC, hour = 3600 * SEC;
    test_clock c = {t0, step, 0};
    ap_tb tb = make_clocked(1, hour, 1, &c);
    EXPECT_EQ(tb.desc.clock.now, test_clock_now, "the clock is kept in the resolved desc");
    uint64_t now = atomic_load(&c.t), ready = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, now, NULL), AP_OK); /* the caller's now */
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, now, &ready), AP_EMPTY);
    EXPECT(ready > now && ready <= now + hour);
    uint64_t r0 = ap_now_ns();
    /* a fake deadline before the token's instant: AP_TIMEDOUT at once
     * (one reading of the fake clock), nothing taken */
    EXPECT_EQ(ap_tb_acquire_wait(&tb, 1, ready - 1), AP_TIMEDOUT);
    EXPECT_EQ(atomic_load(&c.reads), 1);
    uint64_t again = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, now, &again), AP_EMPTY);
    EXPECT_EQ(again, ready, "the timed-out wait took nothing");
    /* a fake deadline exactly at it: AP_OK once the fake clock gets there */
    EXPECT_EQ(ap_tb_acquire_wait(&tb, 1, ready), AP_OK);
    uint64_t last = atomic_load(&c.t) - step; /* cx.now of the completing poll */
    EXPECT(last >= ready && last < ready + 2 * step, "done at fake %llu, ready %llu",
              (unsigned long long)last, (unsigned long long)ready);
    EXPECT_EQ(ap_tb_available(&tb, ready), 0, "the wait took the token");
    uint64_t real = ap_now_ns() - r0;
    EXPECT_LT(real, 5 * SEC, "an hour of fake time took %llu real ns", (unsigned long long)real);

    /* Regression: before desc.clock, ap_tb_acquire_wait drove the same
     * future with ap_block_on, on ap_now_ns(). The bucket's instants are
     * ~2^62 ns (146 years) ahead of that clock, so the old helper would
     * have blocked for ever; bounded here by a real deadline, it times
     * out although the fake clock is already past the token's instant. */
    test_clock c2 = {t0, step, 0};
    ap_tb old = make_clocked(1, hour, 1, &c2);
    EXPECT_EQ(ap_tb_try_acquire(&old, 1, t0, NULL), AP_OK);
    atomic_store(&c2.t, t0 + 2 * hour); /* the bucket's time: token due */
    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, &old, 1, t0 + 3 * hour);
    EXPECT_EQ(ap_block_on_until(&f.base, ap_now_ns() + 20 * MS), AP_TIMEDOUT);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_tb_acquire_wait(&old, 1, t0 + 3 * hour), AP_OK, "on its own clock: at once");
    EXPECT_EQ(atomic_load(&c2.reads), 1);
}

typedef struct tb_mover {
    test_clock *c;
    uint64_t to;
    _Atomic uint64_t moved_real; /* ap_now_ns() once the clock reached `to` */
} tb_mover;

static void *tb_move_clock(void *arg)
{
    tb_mover *m = arg;
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    atomic_store(&m->c->t, m->to - 1); /* not yet */
    nanosleep(&d, NULL);
    atomic_store(&m->c->t, m->to);
    atomic_store(&m->moved_real, ap_now_ns());
    return NULL;
}

Test(token_bucket, acquire_wait_follows_a_clock_moved_by_another_thread,
     .timeout = TEST_TIMEOUT_S)
{
    /* 1/s, fake clock standing at 0 until another thread moves it */
    test_clock c = {0, 0, 0};
    ap_tb tb = make_clocked(1, SEC, 1, &c);
    uint64_t ready = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, NULL), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, &ready), AP_EMPTY);
    EXPECT_EQ(ready, SEC);
    tb_mover m = {&c, ready, 0};
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, tb_move_clock, &m), 0);
    EXPECT_EQ(ap_tb_acquire_wait(&tb, 1, AP_DEADLINE_NONE), AP_OK);
    uint64_t done = ap_now_ns();
    EXPECT_GE(atomic_load(&c.t), ready, "returned before the fake clock reached the token");
    pthread_join(th, NULL);
    uint64_t moved = atomic_load(&m.moved_real);
    EXPECT_LT(done > moved ? done - moved : 0, 2 * SEC, "noticed the move late");
    EXPECT_EQ(ap_tb_available(&tb, ready), 0);

    /* Regression: the old helper read ap_now_ns() (seconds since boot):
     * by that clock this 1/s bucket, driven at fake 0, is long full, so
     * it admitted at once a token the bucket's own timeline (still at 0)
     * has not minted. */
    if (ap_now_ns() > 2 * SEC) {
        test_clock c2 = {0, 0, 0};
        ap_tb old = make_clocked(1, SEC, 1, &c2);
        EXPECT_EQ(ap_tb_try_acquire(&old, 1, 0, NULL), AP_OK);
        ap_tb_acquire_fut f;
        ap_tb_acquire_fut_init(&f, &old, 1, AP_DEADLINE_NONE);
        EXPECT_EQ(ap_block_on_until(&f.base, ap_now_ns() + SEC), AP_OK);
        EXPECT_EQ(ap_tb_acquire_status(&f), AP_OK, "the real clock let it through");
        EXPECT_EQ(atomic_load(&c2.t), 0, "at fake 0, with the token due at fake 1 s");
    }
}

Test(token_bucket, use_after_fini_asserts, .signal = SIGABRT)
{
    MAKE(tb, 10, SEC, 1);
    ap_tb_fini(&tb);
    ap_status st = ap_tb_try_acquire(&tb, 1, 0, NULL);
    (void)st;
}

/* ---- keyed ---- */

Test(token_bucket, keyed_buckets_are_independent_and_exact)
{
    ap_tb_keyed kt;
    static uint64_t buf[AP_TB_KEYED_BYTES(64) / sizeof(uint64_t)];
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 64, &(ap_tb_desc){.n = 10, .burst = 2}), AP_OK);
    EXPECT_EQ(ap_tb_keyed_capacity(&kt), 64);
    /* every key must behave exactly like its own ap_tb */
    enum { KEYS = 20 };
    ap_tb ref[KEYS];
    for (int k = 0; k < KEYS; k++) {
        ap_tb tmp = make(10, SEC, 2);
        memcpy(&ref[k], &tmp, sizeof tmp);
    }
    uint64_t s = 5, t = 0;
    for (int i = 0; i < 100000; i++) {
        t += rng_next(&s) % (3 * MS);
        int k = (int)(rng_next(&s) % KEYS);
        uint64_t m = 1 + rng_next(&s) % 2, r1 = 0, r2 = 0;
        ap_status a = ap_tb_keyed_try_acquire(&kt, (uint64_t)k * 1000003u, m, t, &r1);
        ap_status b = ap_tb_try_acquire(&ref[k], m, t, &r2);
        EXPECT_EQ(a, b, "step %d key %d", i, k);
        if (a == AP_EMPTY)
            EXPECT_EQ(r1, r2);
        EXPECT_LE(ap_tb_keyed_len(&kt), KEYS);
    }
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 1, 3, t, NULL), AP_INVAL);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 1, 0, t, NULL), AP_OK);
    ap_tb_keyed_fini(&kt);
}

Test(token_bucket, keyed_full_of_active_keys_is_ap_full_and_changes_nothing)
{
    ap_tb_keyed kt;
    static uint64_t buf[AP_TB_KEYED_BYTES(4) / sizeof(uint64_t)];
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 4, &(ap_tb_desc){.n = 1, .burst = 2}), AP_OK);
    uint64_t r;
    for (uint64_t k = 1; k <= 4; k++)
        EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, k, 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_keyed_len(&kt), 4);
    unsigned char before[sizeof buf];
    memcpy(before, buf, sizeof buf);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 5, 1, 0, &r), AP_FULL);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 6, 1, 500 * MS, &r), AP_FULL);
    EXPECT_EQ(memcmp(before, buf, sizeof buf), 0, "AP_FULL changed the table");
    /* the active keys keep their exact state: one token left each */
    for (uint64_t k = 1; k <= 4; k++) {
        EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, k, 1, 0, &r), AP_OK);
        EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, k, 1, 0, &r), AP_EMPTY);
        EXPECT_EQ(r, SEC);
    }
    /* at 1 s each key got one token back but is not full: still AP_FULL */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 5, 1, SEC, &r), AP_FULL);
    /* at 2 s they are full again = fresh: a new key takes a slot */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 5, 2, 2 * SEC, &r), AP_OK);
    EXPECT_LE(ap_tb_keyed_len(&kt), 4);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 5, 1, 2 * SEC, &r), AP_EMPTY,
                 "key 5 is tracked, drained");
    ap_tb_keyed_fini(&kt);
}

Test(token_bucket, keyed_table_stays_bounded_without_pruning)
{
    ap_tb_keyed *kt;
    EXPECT_EQ(ap_tb_keyed_create(&kt, 16, &(ap_tb_desc){.n = 100, .burst = 5}, NULL), AP_OK);
    uint64_t s = 11, t = 0, full = 0;
    /* a million distinct keys, one request each, at 100 us apart: a key is
     * full again 10 ms after its request, so about 100 are "active" at a
     * time... too many for 16 slots: go slower, 1 ms apart -> ~10 active */
    for (uint64_t i = 0; i < 1000000; i++) {
        t += MS;
        uint64_t key = rng_next(&s);
        ap_status st = ap_tb_keyed_try_acquire(kt, key, 1, t, NULL);
        if (st == AP_FULL)
            full++;
        else
            EXPECT_EQ(st, AP_OK);
        EXPECT_LE(ap_tb_keyed_len(kt), 16);
    }
    EXPECT_EQ(full, 0, "only ~10 keys are ever active at once");
    /* 17 keys active at one instant: the 17th is refused */
    t += 10 * SEC;
    for (uint64_t k = 0; k < 16; k++)
        EXPECT_EQ(ap_tb_keyed_try_acquire(kt, 1000 + k, 5, t, NULL), AP_OK);
    EXPECT_EQ(ap_tb_keyed_try_acquire(kt, 2000, 1, t, NULL), AP_FULL);
    ap_tb_keyed_destroy(kt);
    EXPECT_EQ(ap_tb_keyed_create(&kt, 0, &(ap_tb_desc){.n = 1, .burst = 1}, NULL), AP_INVAL);
}

/* Dense churn: keys whose homes collide, dropped and re-added while the
 * table is nearly full; every tracked key must keep its exact state. */
Test(token_bucket, keyed_churn_with_backward_shift_deletion)
{
    enum { CAP = 8, KEYS = 40 };
    ap_tb_keyed kt;
    static uint64_t buf[AP_TB_KEYED_BYTES(CAP) / sizeof(uint64_t)];
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, CAP, &(ap_tb_desc){.n = 10, .burst = 1}), AP_OK);
    ap_tb ref[KEYS];
    for (int k = 0; k < KEYS; k++) {
        ap_tb tmp = make(10, SEC, 1);
        memcpy(&ref[k], &tmp, sizeof tmp);
    }
    uint64_t s = 77, t = 0, fulls = 0;
    for (int i = 0; i < 200000; i++) {
        t += rng_next(&s) % (30 * MS);
        int k = (int)(rng_next(&s) % KEYS);
        uint64_t r1 = 0, r2 = 0;
        ap_status a = ap_tb_keyed_try_acquire(&kt, (uint64_t)k, 1, t, &r1);
        /* active keys at t in the reference */
        int active = 0;
        for (int j = 0; j < KEYS; j++)
            active += ap_tb_available(&ref[j], t) < 1;
        if (a == AP_FULL) {
            fulls++;
            EXPECT_EQ(ap_tb_available(&ref[k], t), 1, "a tracked key got AP_FULL");
            EXPECT_GE(active, CAP, "AP_FULL with only %d active keys", active);
            continue;
        }
        ap_status b = ap_tb_try_acquire(&ref[k], 1, t, &r2);
        EXPECT_EQ(a, b, "step %d key %d", i, k);
        if (a == AP_EMPTY)
            EXPECT_EQ(r1, r2);
    }
    EXPECT_GT(fulls, 0, "the scenario should reach a full table");
}

/* Regression (review): the backward-shift delete can wrap round a full table
 * and move an entry behind the probe; every key must stay reachable from its
 * home, keys must be unique, and each key must behave exactly like its own
 * ap_tb (random small tables with wrapping chains and many stale keys). */
Test(token_bucket, keyed_probe_chains_stay_reachable)
{
    uint64_t rs = 88172645463325252ull;
#define RND() (rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17, rs)
    enum { NK = 40 };
    for (int trial = 0; trial < 300; trial++) {
        size_t cap = 1 + RND() % 12;
        uint64_t burst = 1 + RND() % 4, n = 1 + RND() % 3, per = n * (1 + RND() % 50);
        ap_tb_desc d = {.n = n, .period_ns = per, .burst = burst};
        ap_tb_keyed_slot buf[16];
        ap_tb_keyed kt;
        EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, cap, &d), AP_OK);
        ap_tb ref[NK];
        for (int k = 0; k < NK; k++)
            EXPECT_EQ(ap_tb_init(&ref[k], &d), AP_OK);
        uint64_t now = 0;
        int nkeys = 2 + (int)(RND() % (NK - 2));
        for (int op = 0; op < 800; op++) {
            now += RND() % (per / n + 1);
            int ki = (int)(RND() % (uint64_t)nkeys);
            uint64_t key = (uint64_t)ki * 0x10001u, m = 1 + RND() % burst, r1 = 0, r2 = 0;
            ap_status s = ap_tb_keyed_try_acquire(&kt, key, m, now, &r1);
            if (s != AP_FULL) {
                ap_status r = ap_tb_try_acquire(&ref[ki], m, now, &r2);
                EXPECT_EQ(s, r, "trial %d op %d: keyed %d vs own bucket %d", trial, op, s, r);
                if (s == AP_EMPTY)
                    EXPECT_EQ(r1, r2);
            }
            size_t used = 0;
            for (size_t i = 0; i < cap; i++) {
                if (buf[i].tat == UINT64_MAX)
                    continue;
                used++;
                for (size_t j = ap__tb_keyed_home(&kt, buf[i].key); j != i; j = (j + 1) % cap)
                    EXPECT_NE(buf[j].tat, UINT64_MAX,
                                  "trial %d op %d: slot %zu unreachable from its home", trial, op, i);
                for (size_t j = i + 1; j < cap; j++)
                    EXPECT(buf[j].tat == UINT64_MAX || buf[j].key != buf[i].key,
                              "trial %d op %d: key twice in the table", trial, op);
            }
            EXPECT_EQ(used, ap_tb_keyed_len(&kt));
        }
    }
#undef RND
}

/* Regression (review): callers whose clocks lag one another must not
 * re-mint a dropped key's tokens (a new key starts full at the latest time
 * seen, not fuller). */
Test(token_bucket, keyed_lagging_clock_mints_nothing)
{
    ap_tb_desc d = {.n = 1, .period_ns = AP_NS_PER_SEC, .burst = 1};
    ap_tb_keyed_slot buf[2];
    ap_tb_keyed kt;
    ap_tb single;
    uint64_t r;
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 2, &d), AP_OK);
    EXPECT_EQ(ap_tb_init(&single, &d), AP_OK);
    uint64_t A = 1, B = 2; /* B shares A's home slot, so its probe meets A */
    while (ap__tb_keyed_home(&kt, B) != ap__tb_keyed_home(&kt, A))
        B++;
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, A, 1, 10 * AP_NS_PER_SEC, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&single, 1, 10 * AP_NS_PER_SEC, &r), AP_OK);
    /* at 11 s another key takes A's (refilled) slot */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, B, 1, 11 * AP_NS_PER_SEC, &r), AP_OK);
    /* a caller whose clock says 10.5 s: A's own bucket would refuse */
    ap_status s = ap_tb_keyed_try_acquire(&kt, A, 1, 10 * AP_NS_PER_SEC + AP_NS_PER_SEC / 2, &r);
    EXPECT_EQ(ap_tb_try_acquire(&single, 1, 10 * AP_NS_PER_SEC + AP_NS_PER_SEC / 2, &r),
                 AP_EMPTY);
    EXPECT_NE(s, AP_OK, "a lagging clock re-minted a dropped key's token");
}

/* Caller memory comes with its size: a NULL, misaligned or too small
 * buffer, a zero or overflowing capacity and a bad desc are AP_INVAL, and
 * neither the limiter's bytes nor the buffer's change. */
Test(token_bucket, keyed_init_bad_buffers_are_inval_and_change_nothing)
{
    enum { CAP = 8 };
    static _Alignas(AP_TB_KEYED_ALIGN) unsigned char buf[AP_TB_KEYED_BYTES(CAP) + 2 * AP_TB_KEYED_ALIGN];
    _Static_assert(AP_TB_KEYED_BYTES(CAP) == CAP * sizeof(ap_tb_keyed_slot), "constant");
    const ap_tb_desc good = {.n = 10, .burst = 2}, bad = {.n = 0, .burst = 2};
    struct {
        const ap_tb_desc *desc;
        size_t capacity;
        void *buf;
        size_t bytes;
        const char *what;
    } cases[] = {
        {&good, CAP, NULL, sizeof buf, "NULL buffer"},
        {&good, CAP, buf + 1, sizeof buf - 1, "misaligned by 1"},
        {&good, CAP, buf + AP_TB_KEYED_ALIGN / 2, sizeof buf - AP_TB_KEYED_ALIGN / 2, "misaligned by half"},
        {&good, CAP, buf, AP_TB_KEYED_BYTES(CAP) - 1, "one byte short"},
        {&good, CAP, buf, 0, "zero bytes"},
        {&good, 0, buf, sizeof buf, "capacity 0"},
        {&good, SIZE_MAX / sizeof(ap_tb_keyed_slot) + 1, buf, SIZE_MAX, "bytes overflow"},
        {&good, SIZE_MAX, buf, SIZE_MAX, "capacity SIZE_MAX"},
        {&bad, CAP, buf, sizeof buf, "bad desc"},
        {NULL, CAP, buf, sizeof buf, "NULL desc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_tb_keyed kt;
        unsigned char kt_before[sizeof kt], buf_before[sizeof buf];
        memset(&kt, 0x5A, sizeof kt);
        memset(buf, 0xC3, sizeof buf);
        memcpy(kt_before, &kt, sizeof kt);
        memcpy(buf_before, buf, sizeof buf);
        EXPECT_EQ(ap_tb_keyed_init(&kt, cases[i].buf, cases[i].bytes, cases[i].capacity, cases[i].desc),
                     AP_INVAL, "%s", cases[i].what);
        EXPECT_EQ(memcmp(kt_before, &kt, sizeof kt), 0, "%s: the limiter changed", cases[i].what);
        EXPECT_EQ(memcmp(buf_before, buf, sizeof buf), 0, "%s: the buffer changed", cases[i].what);
    }
    /* exactly enough is fine; an excess is not touched */
    ap_tb_keyed kt;
    memset(buf, 0xC3, sizeof buf);
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, AP_TB_KEYED_BYTES(CAP), CAP, &good), AP_OK);
    EXPECT_EQ(ap_tb_keyed_capacity(&kt), CAP);
    for (size_t i = AP_TB_KEYED_BYTES(CAP); i < sizeof buf; i++)
        EXPECT_EQ(buf[i], 0xC3, "byte %zu past the table written", i);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 1, 2, 0, NULL), AP_OK);
    ap_tb_keyed_fini(&kt);
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, CAP, &good), AP_OK, "more is fine");
    ap_tb_keyed_fini(&kt);
}

/* The header's USAGE block, verbatim between the markers (a test keeps it
 * compiling warning-free under -Wall -Wextra -Werror). */
static int usage_served, usage_refused;
static void serve(void) { usage_served++; }
static void reply_429_until(uint64_t t) { (void)t; usage_refused++; }

Test(token_bucket, usage_block_compiles_and_runs)
{
    /* USAGE begin */
    ap_tb tb;   // 100 requests per second, bursts of up to 20
    if (ap_tb_init(&tb, &(ap_tb_desc){.n = 100, .period_ns = AP_NS_PER_SEC,
                                      .burst = 20}) != AP_OK) abort();
    uint64_t retry_at = 0;
    if (ap_tb_try_acquire(&tb, 1, ap_now_ns(), &retry_at) == AP_OK) serve();
    else reply_429_until(retry_at);
    // or wait (parks this thread, never sleeps in a loop):
    if (ap_tb_acquire_wait(&tb, 1, ap_now_ns() + 50 * AP_NS_PER_MS) == AP_OK) serve();

    // one bucket per client, at most 1024 clients tracked at once
    static AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned char table[AP_TB_KEYED_BYTES(1024)];
    static ap_tb_keyed per_client;
    if (ap_tb_keyed_init(&per_client, table, sizeof table, 1024,
                         &(ap_tb_desc){.n = 10, .burst = 5}) != AP_OK) abort();
    uint64_t client_id = 42;
    if (ap_tb_keyed_try_acquire(&per_client, client_id, 1, ap_now_ns(), &retry_at) == AP_OK)
        serve();
    /* USAGE end */
    EXPECT_EQ(usage_served, 3);
    EXPECT_EQ(usage_refused, 0);
}

/* ---- the status table (issue #11) ---- */

/* regression: no tokens now is AP_EMPTY (was AP_REJECTED), with retry_at
 * still set, for the single and the keyed bucket; a pending acquire
 * future is AP_NOT_READY (was AP_AGAIN); AP_REJECTED stays for a request
 * that can never be honoured within the clock */
Test(token_bucket, status_table_empty_with_retry_at)
{
    MAKE(tb, 10, SEC, 1);
    uint64_t r = 0;
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 30 * MS, &r), AP_EMPTY);
    EXPECT_EQ(r, 100 * MS, "retry_at is still set");
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, r, NULL), AP_OK);

    _Alignas(AP_TB_KEYED_ALIGN) static unsigned char buf[AP_TB_KEYED_BYTES(4)];
    ap_tb_keyed kt;
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 4, &(ap_tb_desc){.n = 10, .period_ns = SEC, .burst = 1}),
                 AP_OK);
    r = 0;
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 7, 1, 0, &r), AP_OK);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, 7, 1, 30 * MS, &r), AP_EMPTY);
    EXPECT_EQ(r, 100 * MS);
    ap_tb_keyed_fini(&kt);

    MAKE(y, 1, 365ull * 24 * 3600 * SEC, 1); /* the next token is past 2^64 - 1 ns */
    EXPECT_EQ(ap_tb_try_acquire(&y, 1, UINT64_MAX - SEC, &r), AP_OK);
    EXPECT_EQ(ap_tb_try_acquire(&y, 1, UINT64_MAX - SEC, &r), AP_REJECTED, "never");
    EXPECT_EQ(r, AP_DEADLINE_NONE);

    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, &tb, 1, AP_DEADLINE_NONE);
    ap_cx cx = cx_at(r = 100 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_NOT_READY, "pending");
    ap_tb_acquire_cancel(&f);
    EXPECT_EQ(ap_tb_acquire_status(&f), AP_CANCELED);
}
