/*
 * tests/test_aggregate.c -- incremental and sliding-window aggregates,
 * checked against brute-force recomputation on seeded random sequences
 */
#include "asyncpat/aggregate.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define N_RANDOM 100000

#include "wide128.h" /* the brute force's exact arithmetic (also on i386) */

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
    w128 sum = w128_u64(0);
    int64_t mn = INT64_MAX, mx = INT64_MIN;
    for (size_t i = lo; i < hi; i++) {
        sum = w128_add(sum, w128_i64(v[i]));
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    uint64_t n = hi - lo;
    EXPECT_EQ(ap_agg_count(a), n);
    int64_t s, q, m;
    uint64_t r;
    bool fits = w128_fits_i64(sum);
    ap_status st = ap_agg_sum(a, &s);
    EXPECT_EQ(st, fits ? AP_OK : AP_INVAL);
    if (fits)
        EXPECT(s == (int64_t)sum.lo);
    EXPECT(ap_agg_sum_sat(a) == (fits ? (int64_t)sum.lo : w128_neg(sum) ? INT64_MIN : INT64_MAX));
    if (n == 0) {
        EXPECT_EQ(ap_agg_mean(a, &q, &r), AP_EMPTY);
        EXPECT_EQ(ap_agg_min(a, &m), AP_EMPTY);
        return;
    }
    uint64_t fr;
    w128 fq = w128_sdivmod_floor(sum, n, &fr); /* floor: fr in [0, n) */
    EXPECT_EQ(ap_agg_mean(a, &q, &r), AP_OK);
    EXPECT(q == (int64_t)fq.lo && r == fr, "mean of %ju values", (uintmax_t)n);
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
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, 0, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, 10, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, 0}), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, 10, &(ap_agg_slide_desc){(ap_agg_slide_kind)7, 5}), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, SIZE_MAX, SIZE_MAX / 8, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}), AP_INVAL);
    EXPECT(memcmp(&s, &before, sizeof s) == 0, "untouched");
}

/* Caller memory comes with its size: NULL, misaligned or too small is
 * AP_INVAL, and neither the object's bytes nor the buffer's change. */
Test(aggregate, slide_init_bad_buffers_are_inval_and_change_nothing)
{
    enum { CAP = 16 };
    static _Alignas(AP_AGG_SLIDE_ALIGN) unsigned char buf[AP_AGG_SLIDE_BYTES(CAP) + 2 * AP_AGG_SLIDE_ALIGN];
    _Static_assert(AP_AGG_SLIDE_BYTES(CAP) == CAP * 32, "constant expression");
    struct {
        ap_agg_slide_kind kind;
        uint64_t period;
        size_t capacity;
        void *buf;
        size_t bytes;
        const char *what;
    } cases[] = {
        {AP_AGG_SLIDE_KIND_COUNT, 0, CAP, NULL, sizeof buf, "NULL buffer"},
        {AP_AGG_SLIDE_KIND_TIME, 10, CAP, NULL, sizeof buf, "NULL buffer (TIME)"},
        {AP_AGG_SLIDE_KIND_COUNT, 0, CAP, buf + 1, sizeof buf - 1, "misaligned by 1"},
        {AP_AGG_SLIDE_KIND_COUNT, 0, CAP, buf + AP_AGG_SLIDE_ALIGN / 2, sizeof buf - AP_AGG_SLIDE_ALIGN / 2,
         "misaligned by half"},
        {AP_AGG_SLIDE_KIND_COUNT, 0, CAP, buf, AP_AGG_SLIDE_BYTES(CAP) - 1, "one byte short"},
        {AP_AGG_SLIDE_KIND_TIME, 10, CAP, buf, 0, "zero bytes"},
        {AP_AGG_SLIDE_KIND_COUNT, 0, SIZE_MAX / 32 + 1, buf, SIZE_MAX, "bytes overflow"},
        {AP_AGG_SLIDE_KIND_COUNT, 0, 0, buf, sizeof buf, "capacity 0"},
        {AP_AGG_SLIDE_KIND_TIME, 0, CAP, buf, sizeof buf, "period 0"},
        {(ap_agg_slide_kind)2, 10, CAP, buf, sizeof buf, "unknown kind"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_agg_slide s;
        unsigned char s_before[sizeof s], buf_before[sizeof buf];
        memset(&s, 0x5A, sizeof s);
        memset(buf, 0xC3, sizeof buf);
        memcpy(s_before, &s, sizeof s);
        memcpy(buf_before, buf, sizeof buf);
        EXPECT_EQ(ap_agg_slide_init(&s, cases[i].buf, cases[i].bytes, cases[i].capacity, &(ap_agg_slide_desc){cases[i].kind, cases[i].period}),
                  AP_INVAL, "%s", cases[i].what);
        EXPECT(memcmp(s_before, &s, sizeof s) == 0, "%s: the object changed", cases[i].what);
        EXPECT(memcmp(buf_before, buf, sizeof buf) == 0, "%s: the buffer changed", cases[i].what);
    }
    /* exactly enough works; more is fine and the excess is not touched */
    ap_agg_slide s;
    memset(buf, 0xC3, sizeof buf);
    EXPECT_EQ(ap_agg_slide_init(&s, buf, AP_AGG_SLIDE_BYTES(CAP), CAP, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}), AP_OK);
    for (int i = 0; i < 3 * CAP; i++)
        EXPECT_EQ(ap_agg_slide_push(&s, (uint64_t)i, i), AP_OK);
    for (size_t i = AP_AGG_SLIDE_BYTES(CAP); i < sizeof buf; i++)
        EXPECT_EQ(buf[i], 0xC3, "byte %zu past the buffer written", i);
    ap_agg a;
    ap_agg_slide_read(&s, &a);
    EXPECT(a.count == CAP && a.min == 2 * CAP && a.max == 3 * CAP - 1);
    EXPECT_EQ(ap_agg_slide_init(&s, buf, sizeof buf, CAP, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, 5}), AP_OK, "more is fine");
}

/* Regression (issue #11): a push behind an advance. The advance to 115
 * evicted ts 100 (100 <= 115 - 10); a push at ts 105 was accepted, and its
 * window (95, 105] then counted 1 value where it holds 2 (100 and 105).
 * Now time only moves forward: the push is AP_INVAL and changes nothing. */
Test(aggregate, slide_time_push_behind_an_advance_is_inval)
{
    static _Alignas(AP_AGG_SLIDE_ALIGN) unsigned char buf[AP_AGG_SLIDE_BYTES(4)];
    ap_agg_slide s;
    EXPECT_EQ(ap_agg_slide_init(&s, buf, sizeof buf, 4, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, 10}), AP_OK);
    EXPECT_EQ(ap_agg_slide_push(&s, 100, 1), AP_OK);
    EXPECT_EQ(ap_agg_slide_advance(&s, 115), 1, "ts 100 leaves (100 <= 115 - 10)");
    ap_agg_slide before = s;
    unsigned char buf_before[sizeof buf];
    memcpy(buf_before, buf, sizeof buf);
    ap_status st = ap_agg_slide_push(&s, 105, 2);
    ap_agg a;
    ap_agg_slide_read(&s, &a);
    /* whatever it answers, the window it reports must be right */
    if (st == AP_OK)
        EXPECT_EQ(a.count, 2, "accepted ts 105: its window (95, 105] holds 100 and 105");
    EXPECT_EQ(st, AP_INVAL, "a push behind the last advance");
    EXPECT(memcmp(&before, &s, sizeof s) == 0 && memcmp(buf_before, buf, sizeof buf) == 0,
           "AP_INVAL changed something");
    EXPECT_EQ(a.count, 0, "the window (105, 115] is empty");
    EXPECT_EQ(ap_agg_slide_push(&s, 115, 3), AP_OK, "at the advance's time: fine");
    ap_agg_slide_read(&s, &a);
    EXPECT(a.count == 1 && a.min == 3);
    /* an advance before the latest time is a no-op, and moves nothing */
    EXPECT_EQ(ap_agg_slide_advance(&s, 50), 0);
    EXPECT_EQ(ap_agg_slide_push(&s, 114, 4), AP_INVAL);
    /* an advance below the period evicts nothing but still moves time */
    ap_agg_slide t;
    EXPECT_EQ(ap_agg_slide_init(&t, buf, sizeof buf, 4, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, 1000}), AP_OK);
    EXPECT_EQ(ap_agg_slide_push(&t, 10, 1), AP_OK);
    EXPECT_EQ(ap_agg_slide_advance(&t, 500), 0);
    EXPECT_EQ(ap_agg_slide_push(&t, 400, 2), AP_INVAL);
    EXPECT_EQ(ap_agg_slide_push(&t, 500, 2), AP_OK);
}

static void slide_count_run(size_t n, uint64_t seed, bool monotone)
{
    static int64_t v[N_RANDOM];
    ap_agg_slide s;
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, n, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}), AP_OK);
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
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, 1000, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, period}),
              AP_OK);
    size_t lo = 0, refused = 0, advanced = 0;
    /* values, with advances interleaved (time passing without values, also
     * past whole windows), and pushes behind the latest time that must be
     * refused: the window is (latest - period, latest] after every step */
    for (size_t i = 0; i < N_RANDOM;) {
        uint64_t r = rng_next(&seed) % 100;
        if (r < 8) {
            uint64_t to = now + (r == 0 ? period + rng_next(&seed) % period : rng_next(&seed) % 60);
            size_t was = lo;
            while (lo < i && to >= period && ts[lo] <= to - period)
                lo++;
            EXPECT_EQ(ap_agg_slide_advance(&s, to), lo - was, "advance to %llu", (unsigned long long)to);
            now = to;
            advanced++;
        } else if (r < 10 && now > 0) {
            ap_agg_slide before = s;
            EXPECT_EQ(ap_agg_slide_push(&s, now - 1 - rng_next(&seed) % now, 7), AP_INVAL);
            EXPECT(memcmp(&before, &s, sizeof s) == 0, "a refused push changed the window");
            refused++;
        } else {
            now += rng_next(&seed) % 25; /* repeats allowed; about 80 values per window */
            ts[i] = now;
            v[i] = rand_value(&seed);
            EXPECT_EQ(ap_agg_slide_push(&s, now, v[i]), AP_OK);
            i++;
            while (now >= period && ts[lo] <= now - period)
                lo++;
        }
        EXPECT_EQ(ap_agg_slide_len(&s), i - lo);
        ap_agg a;
        ap_agg_slide_read(&s, &a);
        check_against(&a, v, lo, i);
    }
    EXPECT(refused > 0 && advanced > 0);
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
    EXPECT_EQ(ap_agg_slide_init(&s, slide_buf, sizeof slide_buf, 2, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_TIME, 100}), AP_OK);
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
    EXPECT_EQ(ap_agg_slide_create(&s, 0, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}, &al), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    c.fail = true;
    EXPECT_EQ(ap_agg_slide_create(&s, 10, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}, &al), AP_NOMEM);
    EXPECT_NULL(s);
    c.fail = false;
    EXPECT_EQ(ap_agg_slide_create(&s, 10, &(ap_agg_slide_desc){AP_AGG_SLIDE_KIND_COUNT, 0}, &al), AP_OK);
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

/* The header's USAGE block, verbatim between the markers (a test keeps it
 * compiling warning-free under -Wall -Wextra -Werror). */
Test(aggregate, usage_block_compiles_and_runs)
{
    const int64_t v[] = {5, -3, 10};
    size_t n = 3;
    uint64_t now = 1;
    int64_t latency = 42;
    /* USAGE begin */
    ap_agg a = {0};
    for (size_t i = 0; i < n; i++) ap_agg_add(&a, v[i]);
    int64_t q, s; uint64_t r;
    if (ap_agg_mean(&a, &q, &r) == AP_OK) printf("mean %lld + %llu/n\n",
                                                 (long long)q, (unsigned long long)r);
    if (ap_agg_sum(&a, &s) == AP_INVAL) puts("exact sum beyond int64");

    // the last 1000 values
    static AP_ALIGNAS(AP_AGG_SLIDE_ALIGN) unsigned char buf[AP_AGG_SLIDE_BYTES(1000)];
    static ap_agg_slide sl;
    if (ap_agg_slide_init(&sl, buf, sizeof buf, 1000, NULL)) abort(); // zero desc: COUNT
    if (ap_agg_slide_push(&sl, now, latency) != AP_OK) abort(); // COUNT never refuses
    ap_agg w; int64_t lo;
    ap_agg_slide_read(&sl, &w);
    if (ap_agg_min(&w, &lo) == AP_OK) printf("min %lld\n", (long long)lo);
    /* USAGE end */
    EXPECT(q == 4 && r == 0 && s == 12 && lo == 42);
}
