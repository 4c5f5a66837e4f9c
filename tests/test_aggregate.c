/*
 * tests/test_aggregate.c -- incremental and sliding-window aggregates,
 * checked against brute-force recomputation on seeded random sequences
 */
#include "asyncpat/aggregate.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "test_util.h"

#define N_RANDOM 100000

typedef __int128 i128; /* the brute force's exact arithmetic (gcc, clang) */

static int64_t rand_value(uint64_t *seed)
{
    uint64_t r = rng_next(seed);
    switch (r % 4) {
    case 0: return (int64_t)(rng_next(seed) % 2001) - 1000;      /* small */
    case 1: return (int64_t)rng_next(seed);                      /* anything */
    case 2: return (r & 8) ? INT64_MAX - (int64_t)(r % 7) : INT64_MIN + (int64_t)(r % 7);
    default: return (int64_t)(rng_next(seed) >> 20) - (INT64_C(1) << 43);
    }
}

/* brute force over v[lo, hi) */
static void check_against(const ap_agg *a, const int64_t *v, size_t lo, size_t hi)
{
    i128 sum = 0;
    int64_t mn = INT64_MAX, mx = INT64_MIN;
    for (size_t i = lo; i < hi; i++) {
        sum += v[i];
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    uint64_t n = hi - lo;
    EXPECT_EQ(ap_agg_count(a), n);
    int64_t s, q, m;
    uint64_t r;
    bool fits = sum >= INT64_MIN && sum <= INT64_MAX;
    ap_status st = ap_agg_sum(a, &s);
    EXPECT_EQ(st, fits ? AP_OK : AP_INVAL);
    if (fits)
        EXPECT(s == (int64_t)sum);
    EXPECT(ap_agg_sum_sat(a) == (fits ? (int64_t)sum : sum < 0 ? INT64_MIN : INT64_MAX));
    if (n == 0) {
        EXPECT_EQ(ap_agg_mean(a, &q, &r), AP_EMPTY);
        EXPECT_EQ(ap_agg_min(a, &m), AP_EMPTY);
        return;
    }
    i128 fq = sum / (i128)n, fr = sum % (i128)n;
    if (fr < 0)
        fq -= 1, fr += (i128)n;
    EXPECT_EQ(ap_agg_mean(a, &q, &r), AP_OK);
    EXPECT(q == (int64_t)fq && r == (uint64_t)fr, "mean of %ju values", (uintmax_t)n);
    EXPECT(ap_agg_min(a, &m) == AP_OK && m == mn);
    EXPECT(ap_agg_max(a, &m) == AP_OK && m == mx);
}

Test(aggregate, zero_is_empty)
{
    ap_agg a = {0};
    int64_t x = 42, q = 7;
    uint64_t r = 9;
    EXPECT_EQ(ap_agg_count(&a), 0);
    EXPECT(ap_agg_sum(&a, &x) == AP_OK && x == 0);
    EXPECT_EQ(ap_agg_min(&a, &x), AP_EMPTY);
    EXPECT_EQ(ap_agg_max(&a, &x), AP_EMPTY);
    EXPECT(ap_agg_mean(&a, &q, &r) == AP_EMPTY && q == 7 && r == 9, "outs untouched");
}

Test(aggregate, exact_mean_floor_and_remainder)
{
    ap_agg a = {0};
    ap_agg_add(&a, -7);
    ap_agg_add(&a, 0);
    int64_t q;
    uint64_t r;
    EXPECT(ap_agg_mean(&a, &q, &r) == AP_OK && q == -4 && r == 1, "-7/2 = -4 rem 1");
    ap_agg b = {0};
    ap_agg_add(&b, INT64_MIN);
    EXPECT(ap_agg_mean(&b, &q, &r) == AP_OK && q == INT64_MIN && r == 0);
}

Test(aggregate, overflow_is_reported_not_wrapped)
{
    ap_agg a = {0};
    ap_agg_add(&a, INT64_MAX);
    ap_agg_add(&a, INT64_MAX);
    int64_t s = 5, q;
    uint64_t r;
    EXPECT(ap_agg_sum(&a, &s) == AP_INVAL && s == 5, "AP_INVAL, out untouched");
    EXPECT(ap_agg_sum_sat(&a) == INT64_MAX);
    EXPECT(ap_agg_mean(&a, &q, &r) == AP_OK && q == INT64_MAX && r == 0, "mean still exact");
    ap_agg_add(&a, -INT64_MAX);
    EXPECT(ap_agg_sum(&a, &s) == AP_OK && s == INT64_MAX, "back in range: exact again");
    ap_agg b = {0};
    for (int i = 0; i < 3; i++)
        ap_agg_add(&b, INT64_MIN);
    EXPECT(ap_agg_sum_sat(&b) == INT64_MIN);
    EXPECT(ap_agg_mean(&b, &q, &r) == AP_OK && q == INT64_MIN && r == 0);
}

Test(aggregate, merge_count_overflow_is_inval)
{
    ap_agg a = {0}, b = {0};
    ap_agg_add(&a, 1);
    ap_agg_add(&b, 2);
    a.count = UINT64_MAX; /* as if 2^64 - 1 values had been added */
    ap_agg before = a;
    EXPECT_EQ(ap_agg_merge(&a, &b), AP_INVAL);
    EXPECT(memcmp(&a, &before, sizeof a) == 0, "unchanged");
}

Test(aggregate, random_adds_match_brute_force)
{
    static int64_t v[N_RANDOM];
    uint64_t seed = 0x5eed0001;
    ap_agg a = {0};
    for (size_t i = 0; i < N_RANDOM; i++) {
        v[i] = rand_value(&seed);
        ap_agg_add(&a, v[i]);
        if (i % 9973 == 0)
            check_against(&a, v, 0, i + 1);
    }
    check_against(&a, v, 0, N_RANDOM);
}

Test(aggregate, merge_of_chunks_equals_one_pass)
{
    static int64_t v[N_RANDOM];
    uint64_t seed = 0x5eed0002;
    ap_agg total = {0}, chunk = {0};
    size_t start = 0;
    for (size_t i = 0; i < N_RANDOM; i++) {
        v[i] = rand_value(&seed);
        ap_agg_add(&chunk, v[i]);
        if (rng_next(&seed) % 97 == 0 || i + 1 == N_RANDOM) {
            ap_agg empty = {0};
            EXPECT_EQ(ap_agg_merge(&chunk, &empty), AP_OK);
            EXPECT_EQ(ap_agg_merge(&total, &chunk), AP_OK);
            check_against(&total, v, 0, i + 1);
            chunk = (ap_agg){0};
            start = i + 1;
        }
    }
    EXPECT_EQ(start, N_RANDOM);
}

/* ---- sliding window ---- */

static uint64_t slide_buf[AP_AGG_SLIDE_BYTES(1000) / sizeof(uint64_t)];

Test(aggregate, slide_init_rejects_bad_config)
{
    ap_agg_slide s;
    memset(&s, 0xab, sizeof s);
    ap_agg_slide before = s;
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_COUNT, 0, slide_buf, 0), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_TIME, 0, slide_buf, 10), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, (ap_agg_slide_kind)7, 5, slide_buf, 10), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_COUNT, 0, slide_buf, SIZE_MAX / 8), AP_INVAL);
    EXPECT(memcmp(&s, &before, sizeof s) == 0, "untouched");
}

static void slide_count_run(size_t n, uint64_t seed, bool monotone)
{
    static int64_t v[N_RANDOM];
    ap_agg_slide s;
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_COUNT, 0, slide_buf, n), AP_OK);
    for (size_t i = 0; i < N_RANDOM; i++) {
        v[i] = monotone ? (int64_t)i * ((seed & 1) ? 1 : -1) : rand_value(&seed);
        EXPECT_EQ(ap_agg_slide_push(&s, i, v[i]), AP_OK);
        size_t lo = i + 1 > n ? i + 1 - n : 0;
        EXPECT_EQ(ap_agg_slide_len(&s), i + 1 - lo);
        if (n <= 64 || i % 101 == 0 || i + 1 == N_RANDOM) {
            ap_agg a;
            ap_agg_slide_read(&s, &a);
            check_against(&a, v, lo, i + 1);
        }
    }
    /* O(1) amortized: each deque pushes each value once, pops it at most once */
    EXPECT_LE(ap_agg_slide_ops(&s, 0), 2 * (uint64_t)N_RANDOM, "min deque, N=%zu", n);
    EXPECT_LE(ap_agg_slide_ops(&s, 1), 2 * (uint64_t)N_RANDOM, "max deque, N=%zu", n);
    ap_agg_slide_fini(&s);
}

Test(aggregate, slide_count_matches_brute_force)
{
    slide_count_run(1, 0x5eed0003, false);
    slide_count_run(7, 0x5eed0004, false);
    slide_count_run(1000, 0x5eed0005, false);
}

Test(aggregate, slide_deque_ops_bounded_on_monotone_input)
{
    slide_count_run(1000, 2, true); /* descending: worst case for the max deque ... */
    slide_count_run(1000, 3, true); /* ... and ascending for the min deque */
}

Test(aggregate, slide_time_matches_brute_force)
{
    static int64_t v[N_RANDOM];
    static uint64_t ts[N_RANDOM];
    const uint64_t period = 1000;
    uint64_t seed = 0x5eed0006, now = 0;
    ap_agg_slide s;
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_TIME, period, slide_buf, 1000), AP_OK);
    size_t lo = 0;
    for (size_t i = 0; i < N_RANDOM; i++) {
        now += rng_next(&seed) % 25; /* repeats allowed; about 80 values per window */
        ts[i] = now;
        v[i] = rand_value(&seed);
        EXPECT_EQ(ap_agg_slide_push(&s, now, v[i]), AP_OK);
        while (now >= period && ts[lo] <= now - period)
            lo++;
        EXPECT_EQ(ap_agg_slide_len(&s), i + 1 - lo);
        ap_agg a;
        ap_agg_slide_read(&s, &a);
        check_against(&a, v, lo, i + 1);
    }
    EXPECT_LE(ap_agg_slide_ops(&s, 0), 2 * (uint64_t)N_RANDOM);
    EXPECT_LE(ap_agg_slide_ops(&s, 1), 2 * (uint64_t)N_RANDOM);
    /* time passes with no values: everything leaves */
    EXPECT_EQ(ap_agg_slide_advance(&s, now + period), N_RANDOM - lo);
    EXPECT_EQ(ap_agg_slide_len(&s), 0);
    ap_agg a;
    ap_agg_slide_read(&s, &a);
    check_against(&a, v, 0, 0);
}

Test(aggregate, slide_time_refusals_change_nothing)
{
    ap_agg_slide s;
    EXPECT_EQ(ap_agg_slide_init(&s, AP_AGG_SLIDE_TIME, 100, slide_buf, 2), AP_OK);
    EXPECT_EQ(ap_agg_slide_push(&s, 50, 1), AP_OK);
    EXPECT_EQ(ap_agg_slide_push(&s, 60, 2), AP_OK);
    EXPECT_EQ(ap_agg_slide_push(&s, 55, 3), AP_INVAL, "older than the newest");
    EXPECT_EQ(ap_agg_slide_push(&s, 149, 3), AP_FULL, "50 and 60 still inside (49, 149]");
    ap_agg a;
    ap_agg_slide_read(&s, &a);
    int64_t sum;
    EXPECT(a.count == 2 && ap_agg_sum(&a, &sum) == AP_OK && sum == 3);
    EXPECT_EQ(ap_agg_slide_push(&s, 150, 3), AP_OK, "50 leaves (50 <= 150 - 100)");
    ap_agg_slide_read(&s, &a);
    EXPECT(a.count == 2 && ap_agg_sum(&a, &sum) == AP_OK && sum == 5 && a.min == 2);
    EXPECT_EQ(ap_agg_slide_advance(&s, 10), 0, "time before the newest: no-op");
    EXPECT_EQ(ap_agg_slide_advance(&s, 250), 2);
    EXPECT_EQ(ap_agg_slide_push(&s, 250, 9), AP_OK, "an empty window still knows the newest");
    EXPECT_EQ(ap_agg_slide_push(&s, 249, 9), AP_INVAL);
}

#ifndef AP_NO_MALLOC
#define COUNTING_ALLOCATOR(c) ((ap_allocator){cnt_alloc, cnt_free, &(c)})
Test(aggregate, slide_create_destroy)
{
    counting c = {0};
    ap_allocator al = COUNTING_ALLOCATOR(c);
    ap_agg_slide *s = NULL;
    EXPECT_EQ(ap_agg_slide_create(&s, AP_AGG_SLIDE_COUNT, 0, 0, &al), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    c.fail = true;
    EXPECT_EQ(ap_agg_slide_create(&s, AP_AGG_SLIDE_COUNT, 0, 10, &al), AP_NOMEM);
    EXPECT_NULL(s);
    c.fail = false;
    EXPECT_EQ(ap_agg_slide_create(&s, AP_AGG_SLIDE_COUNT, 0, 10, &al), AP_OK);
    for (int i = 0; i < 25; i++)
        EXPECT_EQ(ap_agg_slide_push(s, 0, i), AP_OK);
    ap_agg a;
    ap_agg_slide_read(s, &a);
    EXPECT(a.count == 10 && a.min == 15 && a.max == 24);
    ap_agg_slide_destroy(s);
    EXPECT(c.frees == 1 && c.freed_size == c.size);
    ap_agg_slide_destroy(NULL);
}
#endif
