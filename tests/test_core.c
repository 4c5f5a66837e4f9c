/*
 * tests/test_core.c -- status.h, version.h, time.h and core.h (allocator,
 * container_of, size arithmetic, the internal spinlock)
 */
#include "asyncpat/core.h"
#include "asyncpat/status.h"
#include "asyncpat/time.h"
#include "asyncpat/version.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wide128.h"

/* Every test with a timeout uses this one value: Criterion 2.4's runner
 * (BoxFort) leaks a timeout record when a test with a shorter timeout
 * starts while one with a longer timeout runs (--jobs 2), and
 * LeakSanitizer then fails the whole binary. */
#define TEST_TIMEOUT_S 30

/* ---- status ---- */

static const ap_status all_status[] = {
    AP_OK,       AP_FULL,     AP_EMPTY,   AP_AGAIN,  AP_CLOSED, AP_CANCELED,
    AP_REJECTED, AP_TIMEDOUT, AP_DROPPED, AP_NOMEM,  AP_INVAL,  AP_NOT_READY,
    AP_EXHAUSTED, AP_FILTERED,
};
#define N_STATUS (sizeof all_status / sizeof all_status[0])

Test(core, status_values_fixed)
{
    /* 0 is success so `if (st)` tests for failure; values are dense and
     * only ever appended. */
    EXPECT_EQ(AP_OK, 0);
    for (size_t i = 0; i < N_STATUS; i++)
        EXPECT_EQ((int)all_status[i], (int)i, "status %zu out of place", i);
}

Test(core, status_str_every_value_distinct_and_named)
{
    const char *unknown = ap_status_str((ap_status)1000);
    EXPECT_NOT_NULL(unknown);
    for (size_t i = 0; i < N_STATUS; i++) {
        const char *s = ap_status_str(all_status[i]);
        EXPECT_NOT_NULL(s, "status %zu has no string", i);
        EXPECT_GT(strlen(s), 0, "status %zu has an empty string", i);
        EXPECT_STR_NE(s, unknown, "status %zu reads as unknown", i);
        for (size_t j = 0; j < i; j++)
            EXPECT_STR_NE(s, ap_status_str(all_status[j]),
                              "statuses %zu and %zu share the string '%s'", j, i, s);
    }
    EXPECT_STR_EQ(ap_status_str(AP_OK), "ok");
    EXPECT_STR_EQ(ap_status_str(AP_FULL), "full");
    EXPECT_STR_EQ(ap_status_str(AP_EMPTY), "empty");
    EXPECT_STR_EQ(ap_status_str(AP_TIMEDOUT), "timed out");
}

Test(core, status_str_out_of_range_not_null)
{
    const int bad[] = {(int)N_STATUS, (int)N_STATUS + 1, 255, 100000, -1, -1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = ap_status_str((ap_status)bad[i]);
        EXPECT_NOT_NULL(s, "ap_status_str(%d) is NULL", bad[i]);
        EXPECT_GT(strlen(s), 0);
        for (size_t j = 0; j < N_STATUS; j++)
            EXPECT_STR_NE(s, ap_status_str(all_status[j]),
                              "out-of-range %d named like a real status", bad[i]);
    }
}

/* ---- version ---- */

#if !defined(AP_VERSION_NUM) || AP_VERSION_NUM < 0
#error "AP_VERSION_NUM must be usable in #if"
#endif

Test(core, version_num_matches_parts)
{
    EXPECT_EQ(AP_VERSION_NUM,
                 AP_VERSION_MAJOR * 1000000 + AP_VERSION_MINOR * 1000 + AP_VERSION_PATCH);
    EXPECT_LT(AP_VERSION_MINOR, 1000);
    EXPECT_LT(AP_VERSION_PATCH, 1000);
}

Test(core, version_string_matches_parts)
{
    char expect[64];
    snprintf(expect, sizeof expect, "%d.%d.%d", AP_VERSION_MAJOR, AP_VERSION_MINOR,
             AP_VERSION_PATCH);
    EXPECT_STR_EQ(AP_VERSION_STRING, expect);
    /* a string literal, so it can be pasted into other literals */
    static const char banner[] = "asyncpat " AP_VERSION_STRING;
    EXPECT_STR_EQ(banner + 9, expect);
    int maj, min, pat;
    EXPECT_EQ(sscanf(AP_VERSION_STRING, "%d.%d.%d", &maj, &min, &pat), 3);
    EXPECT_EQ(maj * 1000000 + min * 1000 + pat, AP_VERSION_NUM);
}

/* ---- time ---- */

Test(core, time_add_saturates)
{
    EXPECT_EQ(ap_deadline_after(0, 0), 0);
    EXPECT_EQ(ap_deadline_after(5, 7), 12);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX - 10, 10), UINT64_MAX);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX - 10, 9), UINT64_MAX - 1);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX - 10, 11), AP_DEADLINE_NONE);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX, 1), AP_DEADLINE_NONE);
    EXPECT_EQ(ap_deadline_after(1, UINT64_MAX), AP_DEADLINE_NONE);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX, UINT64_MAX), AP_DEADLINE_NONE);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX / 2 + 1, UINT64_MAX / 2), UINT64_MAX);
    EXPECT_EQ(ap_deadline_after(UINT64_MAX / 2 + 1, UINT64_MAX / 2 + 1), AP_DEADLINE_NONE);
    EXPECT_EQ(AP_DEADLINE_NONE, UINT64_MAX);
}

Test(core, time_until_and_min)
{
    EXPECT_EQ(ap_time_until(100, 40), 60);
    EXPECT_EQ(ap_time_until(100, 100), 0);
    EXPECT_EQ(ap_time_until(100, 101), 0);
    EXPECT_EQ(ap_time_until(0, UINT64_MAX), 0);
    EXPECT_EQ(ap_time_until(UINT64_MAX, 0), UINT64_MAX);
    EXPECT_EQ(ap_time_until(AP_DEADLINE_NONE, 1), UINT64_MAX - 1);
    EXPECT_EQ(ap_time_min(3, 9), 3);
    EXPECT_EQ(ap_time_min(9, 3), 3);
    EXPECT_EQ(ap_time_min(AP_DEADLINE_NONE, 7), 7);
    EXPECT_EQ(ap_time_min(AP_DEADLINE_NONE, AP_DEADLINE_NONE), AP_DEADLINE_NONE);
}

Test(core, time_units)
{
    EXPECT_EQ(AP_NS_PER_US, 1000u);
    EXPECT_EQ(AP_NS_PER_MS, 1000u * 1000u);
    EXPECT_EQ(AP_NS_PER_SEC, 1000u * 1000u * 1000u);
}

Test(core, now_ns_monotonic_and_tracks_clock)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ref = (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
    uint64_t a = ap_now_ns();
    EXPECT_GE(a, ref, "ap_now_ns is not on CLOCK_MONOTONIC in ns");
    EXPECT_LT(a - ref, 10 * AP_NS_PER_SEC);
    uint64_t prev = a;
    for (int i = 0; i < 1000; i++) {
        uint64_t t = ap_now_ns();
        EXPECT_GE(t, prev);
        prev = t;
    }
    struct timespec d = {0, 2 * 1000 * 1000};
    nanosleep(&d, NULL);
    EXPECT_GE(ap_now_ns() - a, 2 * AP_NS_PER_MS);
}

/* ---- size arithmetic ---- */

Test(core, pow2_ceil_edges)
{
    EXPECT_EQ(ap__pow2_ceil(1), 1);
    EXPECT_EQ(ap__pow2_ceil(2), 2);
    EXPECT_EQ(ap__pow2_ceil(3), 4);
    EXPECT_EQ(ap__pow2_ceil(4), 4);
    EXPECT_EQ(ap__pow2_ceil(5), 8);
    EXPECT_EQ(ap__pow2_ceil(63), 64);
    EXPECT_EQ(ap__pow2_ceil(64), 64);
    EXPECT_EQ(ap__pow2_ceil(65), 128);
    size_t top = SIZE_MAX / 2 + 1; /* the largest power of two */
    EXPECT_EQ(ap__pow2_ceil(top), top);
    EXPECT_EQ(ap__pow2_ceil(top - 1), top);
    EXPECT_EQ(ap__pow2_ceil(top / 2 + 1), top);
    EXPECT_EQ(ap__pow2_ceil(top + 1), 0);
    EXPECT_EQ(ap__pow2_ceil(SIZE_MAX), 0);
    for (size_t x = 1; x <= 4096; x++) {
        size_t p = ap__pow2_ceil(x);
        EXPECT(p >= x && (p & (p - 1)) == 0 && p / 2 < x, "pow2_ceil(%zu) = %zu", x, p);
    }
}

Test(core, align_up_edges)
{
    EXPECT_EQ(ap__align_up(0, 64), 0);
    EXPECT_EQ(ap__align_up(1, 64), 64);
    EXPECT_EQ(ap__align_up(63, 64), 64);
    EXPECT_EQ(ap__align_up(64, 64), 64);
    EXPECT_EQ(ap__align_up(65, 64), 128);
    EXPECT_EQ(ap__align_up(7, 1), 7);
    EXPECT_EQ(ap__align_up(7, 8), 8);
    EXPECT_EQ(ap__align_up(SIZE_MAX, 1), SIZE_MAX);
    EXPECT_EQ(ap__align_up(SIZE_MAX - 63, 64), SIZE_MAX - 63); /* already aligned */
    EXPECT_EQ(ap__align_up(SIZE_MAX - 62, 64), 0);             /* would need 2^64 */
    EXPECT_EQ(ap__align_up(SIZE_MAX - 64, 64), SIZE_MAX - 63);
    EXPECT_EQ(ap__align_up(SIZE_MAX, 64), 0);
    EXPECT_EQ(ap__align_up(SIZE_MAX, 2), 0);
    EXPECT_EQ(ap__align_up(SIZE_MAX - 1, 2), SIZE_MAX - 1);
}

Test(core, size_muladd_edges)
{
    size_t out = 12345;
    EXPECT(ap__size_muladd(3, 4, 5, &out));
    EXPECT_EQ(out, 17);
    EXPECT(ap__size_muladd(0, SIZE_MAX, 9, &out));
    EXPECT_EQ(out, 9);
    EXPECT(ap__size_muladd(SIZE_MAX, 0, 9, &out));
    EXPECT_EQ(out, 9);
    EXPECT(ap__size_muladd(SIZE_MAX, 1, 0, &out));
    EXPECT_EQ(out, SIZE_MAX);
    EXPECT(ap__size_muladd(0, 0, SIZE_MAX, &out));
    EXPECT_EQ(out, SIZE_MAX);
    EXPECT(ap__size_muladd(2, SIZE_MAX / 2, 1, &out)); /* exactly SIZE_MAX */
    EXPECT_EQ(out, SIZE_MAX);
    EXPECT(ap__size_muladd(SIZE_MAX / 2, 2, 1, &out));
    EXPECT_EQ(out, SIZE_MAX);

    out = 777;
    EXPECT_NOT(ap__size_muladd(SIZE_MAX, 1, 1, &out));
    EXPECT_NOT(ap__size_muladd(2, SIZE_MAX / 2, 2, &out));
    EXPECT_NOT(ap__size_muladd(SIZE_MAX / 2 + 1, 2, 0, &out));
    EXPECT_NOT(ap__size_muladd((size_t)1 << (sizeof(size_t) * 4),
                                  (size_t)1 << (sizeof(size_t) * 4), 0, &out));
    EXPECT_NOT(ap__size_muladd(SIZE_MAX, SIZE_MAX, 0, &out));
    EXPECT_NOT(ap__size_muladd(1, 1, SIZE_MAX, &out));
    EXPECT_EQ(out, 777, "out written on overflow");
    EXPECT(ap__size_muladd(1, 1, SIZE_MAX - 1, &out));
    EXPECT_EQ(out, SIZE_MAX);
}

/* ---- container_of ---- */

struct outer {
    char pad[3];
    double d;
    struct inner { int a, b; } in;
    int tail[4];
};

Test(core, container_of_recovers_outer)
{
    struct outer o;
    EXPECT_EQ(AP_CONTAINER_OF(&o.in, struct outer, in), &o);
    EXPECT_EQ(AP_CONTAINER_OF(&o.d, struct outer, d), &o);
    EXPECT_EQ(AP_CONTAINER_OF(&o.pad, struct outer, pad), &o);
    EXPECT_EQ(AP_CONTAINER_OF(&o.tail, struct outer, tail), &o);
    struct inner *ip = &o.in;
    struct outer *op = AP_CONTAINER_OF(ip, struct outer, in);
    op->d = 2.5;
    EXPECT_EQ(o.d, 2.5);
    /* from a void pointer (what a callback's ctx usually is) */
    void *vp = &o.in;
    EXPECT_EQ(AP_CONTAINER_OF(vp, struct outer, in), &o);
    /* an array of containers: each member maps to its own container */
    struct outer arr[3];
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(AP_CONTAINER_OF(&arr[i].in, struct outer, in), &arr[i]);
}

/* ---- allocator ---- */

static void *never_alloc(size_t s, size_t a, void *u) { (void)s; (void)a; (void)u; return NULL; }
static void never_free(void *p, size_t s, void *u) { (void)p; (void)s; (void)u; }

Test(core, allocator_or_default)
{
    const ap_allocator *d = ap__allocator_or_default(NULL);
    EXPECT_NOT_NULL(d);
    EXPECT_NOT_NULL(d->alloc);
    EXPECT_NOT_NULL(d->free);
    ap_allocator full = {never_alloc, never_free, (void *)&full};
    EXPECT_EQ(ap__allocator_or_default(&full), &full);
    ap_allocator no_alloc = {NULL, never_free, NULL};
    ap_allocator no_free = {never_alloc, NULL, NULL};
    EXPECT_NULL(ap__allocator_or_default(&no_alloc));
    EXPECT_NULL(ap__allocator_or_default(&no_free));
}

Test(core, default_allocator_aligns_any_size)
{
    const ap_allocator *d = ap__allocator_or_default(NULL);
    size_t sizes[] = {1, 63, 64, 65, 1000};
    size_t aligns[] = {8, 64, 128, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (size_t j = 0; j < sizeof aligns / sizeof aligns[0]; j++) {
            unsigned char *p = d->alloc(sizes[i], aligns[j], d->user);
            EXPECT_NOT_NULL(p);
            EXPECT_EQ((uintptr_t)p % aligns[j], 0, "size %zu align %zu", sizes[i], aligns[j]);
            memset(p, 0xab, sizes[i]); /* ASan checks the whole size is ours */
            d->free(p, sizes[i], d->user);
        }
}

/* ---- spinlock ---- */

static ap__lock shared_lock;
static long shared_counter;
enum { LOCK_THREADS = 4, LOCK_ITERS = 20000 };

static void *lock_worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < LOCK_ITERS; i++) {
        ap__lock_acquire(&shared_lock);
        long v = shared_counter; /* a non-atomic read-modify-write */
        if ((i & 63) == 0)
            sched_yield(); /* widen the window while holding the lock */
        shared_counter = v + 1;
        ap__lock_release(&shared_lock);
    }
    return NULL;
}

Test(core, spinlock_mutual_exclusion, .timeout = TEST_TIMEOUT_S)
{
    pthread_t th[LOCK_THREADS];
    for (int i = 0; i < LOCK_THREADS; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, lock_worker, NULL), 0);
    for (int i = 0; i < LOCK_THREADS; i++)
        pthread_join(th[i], NULL);
    EXPECT_EQ(shared_counter, (long)LOCK_THREADS * LOCK_ITERS);
    EXPECT_EQ(atomic_load(&shared_lock.held), 0u);
}

Test(core, spinlock_zero_is_unlocked)
{
    ap__lock l;
    memset(&l, 0, sizeof l);
    ap__lock_acquire(&l); /* would spin forever if zero meant held */
    EXPECT_NE(atomic_load(&l.held), 0u);
    ap__lock_release(&l);
    EXPECT_EQ(atomic_load(&l.held), 0u);
    ap__lock_acquire(&l);
    ap__lock_release(&l);
}

Test(core, backoff_counts)
{
    unsigned spins = 0;
    for (unsigned i = 0; i < AP_SPIN_LIMIT + 3; i++)
        ap__backoff(&spins);
    EXPECT_EQ(spins, AP_SPIN_LIMIT + 3);
}

/* ---- shared arithmetic: align-up, hash, 128-bit, backward-shift delete ---- */

/* a constant expression: usable in a static assertion and an array size */
AP_STATIC_ASSERT(AP__ALIGN_UP(13, 8) == 16, "AP__ALIGN_UP is a constant expression");
static char align_sized[AP__ALIGN_UP(1, 64)];

Test(core, align_up_rounds_to_the_next_multiple)
{
    EXPECT_EQ(sizeof align_sized, 64);
    static const size_t aligns[] = {1, 2, 8, 16, 64, 4096};
    for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
        size_t al = aligns[a];
        for (size_t x = 0; x < 3 * 4096; x += 1 + x / 7) {
            size_t want = (x + al - 1) / al * al; /* the division form */
            EXPECT_EQ(AP__ALIGN_UP(x, al), want, "AP__ALIGN_UP(%zu, %zu)", x, al);
            EXPECT_EQ(ap__align_up(x, al), want, "ap__align_up(%zu, %zu)", x, al);
        }
    }
    EXPECT_EQ(ap__align_up(0, 64), 0);
    EXPECT_EQ(ap__align_up(SIZE_MAX - 7, 8), SIZE_MAX - 7, "the largest multiple fits");
    EXPECT_EQ(ap__align_up(SIZE_MAX - 6, 8), 0, "overflow is 0, not a wrapped size");
    EXPECT_EQ(ap__align_up(SIZE_MAX, 64), 0);
    EXPECT_EQ(ap__align_up(SIZE_MAX, 1), SIZE_MAX);
}

Test(core, mix64_is_splitmix64)
{
    /* The first outputs of splitmix64 seeded with 0 (Vigna's reference
     * splitmix64.c): output k is ap__mix64(k * golden). */
    static const uint64_t want[] = {UINT64_C(0xE220A8397B1DCDAF), UINT64_C(0x6E789E6AA1B965F4),
                                    UINT64_C(0x06C45D188009454F), UINT64_C(0xF88BB8A8724C81EC)};
    uint64_t state = 0, gen = 0;
    for (size_t k = 0; k < 4; k++) {
        EXPECT_EQ(ap__mix64(state), want[k], "output %zu", k);
        EXPECT_EQ(ap__splitmix64(&gen), want[k], "generator output %zu", k);
        state += UINT64_C(0x9E3779B97F4A7C15);
        EXPECT_EQ(gen, state, "the generator's state after output %zu", k);
        EXPECT_EQ(ap__fmix64(state), want[k], "the finaliser of state %zu", k + 1);
    }
    EXPECT_EQ(ap__fmix64(0), 0, "the bare finaliser keeps 0 (ap__mix64 does not)");
}

Test(core, mix64_spreads_adjacent_keys)
{
    /* a bijection: 2^16 adjacent keys give 2^16 distinct hashes (sorted
     * check), and their top 4 bits and low 4 bits each fill all 16
     * buckets nearly evenly (what the cache's shard and slot picks need) */
    enum { N = 1 << 16 };
    uint64_t *h = malloc(N * sizeof *h);
    EXPECT_NOT_NULL(h);
    unsigned hi[16] = {0}, lo[16] = {0};
    for (uint64_t k = 0; k < N; k++) {
        h[k] = ap__mix64(k);
        hi[h[k] >> 60]++;
        lo[h[k] & 15]++;
    }
    for (int b = 0; b < 16; b++) {
        EXPECT(hi[b] > N / 16 * 9 / 10 && hi[b] < N / 16 * 11 / 10, "top bucket %d: %u", b, hi[b]);
        EXPECT(lo[b] > N / 16 * 9 / 10 && lo[b] < N / 16 * 11 / 10, "low bucket %d: %u", b, lo[b]);
    }
    /* distinct: insertion-free check through a sort */
    for (size_t gap = N / 2; gap > 0; gap /= 2) /* shell sort, N = 2^16 */
        for (size_t i = gap; i < N; i++)
            for (size_t j = i; j >= gap && h[j - gap] > h[j]; j -= gap) {
                uint64_t t = h[j];
                h[j] = h[j - gap];
                h[j - gap] = t;
            }
    for (size_t i = 1; i < N; i++)
        EXPECT_NE(h[i - 1], h[i], "two keys share a hash");
    free(h);
}

static uint64_t core_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* the reference is wide128.h: unsigned __int128 where there is one, 32-bit
 * limbs on i386 (checked against __int128 by the test after this one) */
Test(core, mul_64x64_and_div_128_64_match_int128)
{
    static const uint64_t edge[] = {0, 1, 2, 3, UINT64_C(0xffffffff), UINT64_C(0x100000000),
                                    UINT64_MAX / 2, UINT64_MAX / 2 + 1, UINT64_MAX - 1, UINT64_MAX};
    enum { NE = sizeof edge / sizeof edge[0] };
    uint64_t s = 0x1234567;
    for (int i = 0; i < 100000 + NE * NE * NE; i++) {
        uint64_t a, b, d;
        if (i < NE * NE * NE) {
            a = edge[i % NE];
            b = edge[i / NE % NE];
            d = edge[i / NE / NE];
        } else {
            a = core_rng(&s) >> (core_rng(&s) % 64);
            b = core_rng(&s) >> (core_rng(&s) % 64);
            d = core_rng(&s) >> (core_rng(&s) % 64);
        }
        uint64_t hi, lo;
        ap__mul_64x64(a, b, &hi, &lo);
        w128 p = w128_mul64(a, b);
        EXPECT(hi == p.hi && lo == p.lo, "mul %d", i);
        if (d != 0 && hi < d) {
            uint64_t rem, q = ap__div_128_64(hi, lo, d, &rem), wrem;
            w128 wq = w128_divmod64(p, d, &wrem);
            EXPECT(wq.hi == 0 && q == wq.lo && rem == wrem, "div %d", i);
        }
    }
    /* the largest dividend a divisor allows: hi = d - 1, lo = all ones */
    uint64_t rem, q = ap__div_128_64(UINT64_MAX - 1, UINT64_MAX, UINT64_MAX, &rem);
    EXPECT_EQ(q, UINT64_MAX);
    EXPECT_EQ(rem, UINT64_MAX - 1);
}

#ifdef __SIZEOF_INT128__
/* wide128.h's 32-bit-limb forms (the tests' reference on i386) against
 * unsigned __int128, where the compiler has it */
Test(core, wide128_portable_matches_int128)
{
    static const uint64_t edge[] = {0, 1, 2, 3, UINT64_C(0xffffffff), UINT64_C(0x100000000),
                                    UINT64_MAX / 2, UINT64_MAX / 2 + 1, UINT64_MAX - 1, UINT64_MAX};
    enum { NE = sizeof edge / sizeof edge[0] };
    uint64_t s = 0x7654321;
    for (int i = 0; i < 100000 + NE * NE * NE * NE; i++) {
        w128 a, b;
        uint64_t d;
        if (i < NE * NE * NE * NE) {
            a = (w128){edge[i % NE], edge[i / NE % NE]};
            b = (w128){edge[i / NE / NE % NE], edge[i / NE / NE / NE]};
        } else {
            a = (w128){core_rng(&s) >> (core_rng(&s) % 64), core_rng(&s) >> (core_rng(&s) % 64)};
            b = (w128){core_rng(&s) >> (core_rng(&s) % 64), core_rng(&s) >> (core_rng(&s) % 64)};
        }
        d = b.lo | (b.lo == 0);
        w128 x = w128p_add(a, b), y = w128n_add(a, b);
        EXPECT(x.hi == y.hi && x.lo == y.lo, "add %d", i);
        x = w128p_sub(a, b), y = w128n_sub(a, b);
        EXPECT(x.hi == y.hi && x.lo == y.lo, "sub %d", i);
        x = w128p_mul64(a.lo, b.hi), y = w128n_mul64(a.lo, b.hi);
        EXPECT(x.hi == y.hi && x.lo == y.lo, "mul %d", i);
        uint64_t rx, ry;
        x = w128p_divmod64(a, d, &rx), y = w128n_divmod64(a, d, &ry);
        EXPECT(x.hi == y.hi && x.lo == y.lo && rx == ry, "div %d", i);
    }
}
#endif

/* A linear-probing table for ap__probe_delete: keys 1.., 0 = empty; the
 * home of a key is key % HOMES (homes pile up: long clusters that wrap). */
#define PT_CAP 11
#define PT_HOMES 5
typedef struct probe_table {
    uint64_t key[PT_CAP];
    unsigned moves;
} probe_table;

static size_t pt_home_of(uint64_t key) { return (size_t)(key % PT_HOMES) * 2 + 5; } /* 5,7,9,11->0,13->2 */

static size_t pt_home(void *t, size_t j)
{
    probe_table *pt = (probe_table *)t;
    return pt->key[j] == 0 ? SIZE_MAX : pt_home_of(pt->key[j]) % PT_CAP;
}

static void pt_move(void *t, size_t to, size_t from)
{
    probe_table *pt = (probe_table *)t;
    EXPECT_EQ(pt->key[to], 0, "moved onto an occupied slot");
    pt->key[to] = pt->key[from];
    pt->key[from] = 0;
    pt->moves++;
}

static size_t pt_find(const probe_table *pt, uint64_t key)
{
    for (size_t n = 0, j = pt_home_of(key) % PT_CAP; n < PT_CAP; n++, j = (j + 1) % PT_CAP) {
        if (pt->key[j] == key)
            return j;
        if (pt->key[j] == 0)
            return SIZE_MAX; /* an empty slot ends the probe */
    }
    return SIZE_MAX;
}

static void pt_insert(probe_table *pt, uint64_t key)
{
    size_t j = pt_home_of(key) % PT_CAP;
    while (pt->key[j] != 0)
        j = (j + 1) % PT_CAP;
    pt->key[j] = key;
}

Test(core, probe_delete_keeps_every_key_reachable)
{
    uint64_t s = 99;
    unsigned moves = 0;
    for (int round = 0; round < 3000; round++) {
        probe_table pt;
        memset(&pt, 0, sizeof pt);
        bool in[64] = {false};
        size_t fill = 1 + core_rng(&s) % (PT_CAP - 1); /* at least one slot stays empty */
        for (size_t n = 0; n < fill;) {
            uint64_t k = 1 + core_rng(&s) % 63;
            if (!in[k]) {
                in[k] = true;
                pt_insert(&pt, k);
                n++;
            }
        }
        /* delete every key in a random order, checking the rest each time */
        for (size_t left = fill; left > 0; left--) {
            uint64_t k;
            do
                k = 1 + core_rng(&s) % 63;
            while (!in[k]);
            size_t i = pt_find(&pt, k);
            EXPECT_NE(i, SIZE_MAX, "round %d: key %llu lost before its delete", round,
                          (unsigned long long)k);
            pt.key[i] = 0; /* the caller empties the slot first */
            in[k] = false;
            ap__probe_delete(&pt, PT_CAP, i, pt_home, pt_move);
            size_t count = 0;
            for (size_t j = 0; j < PT_CAP; j++)
                count += pt.key[j] != 0;
            EXPECT_EQ(count, left - 1, "round %d: a move lost or duplicated a key", round);
            for (uint64_t x = 1; x < 64; x++)
                if (in[x])
                    EXPECT_NE(pt_find(&pt, x), SIZE_MAX,
                                  "round %d: key %llu unreachable after deleting %llu", round,
                                  (unsigned long long)x, (unsigned long long)k);
        }
        moves += pt.moves;
    }
    EXPECT_GT(moves, 1000, "the test never made the delete shift anything");
}

Test(core, probe_delete_leaves_a_key_at_home_in_place)
{
    /* One cluster from slot 7 round the end to slot 1 (homes by
     * pt_home_of: 1, 6 -> 7; 2, 7, 12 -> 9; 3 -> 11 % 11 = 0). Deleting
     * key 1 at slot 7 moves key 6 back into its home and nothing else:
     * each other key's home lies cyclically in (its slot's gap, its slot]. */
    probe_table pt;
    memset(&pt, 0, sizeof pt);
    pt.key[7] = 1;  /* home 7 */
    pt.key[8] = 6;  /* home 7 */
    pt.key[9] = 2;  /* home 9 */
    pt.key[10] = 7; /* home 9 */
    pt.key[0] = 3;  /* home 0 (11 % 11) */
    pt.key[1] = 12; /* home 9: wrapped twice past its home */
    EXPECT_EQ(pt_find(&pt, 12), 1);
    pt.key[7] = 0; /* delete key 1 at its home */
    ap__probe_delete(&pt, PT_CAP, 7, pt_home, pt_move);
    EXPECT_EQ(pt.key[7], 6, "key 6 (home 7) moves back into its home");
    EXPECT_EQ(pt.key[8], 0, "then slot 8 is free");
    EXPECT_EQ(pt.key[9], 2, "key 2 stays at its home");
    EXPECT_EQ(pt.key[10], 7, "key 7 stays: its home 9 lies in (8, 10]");
    EXPECT_EQ(pt.key[0], 3, "key 3 stays at its home 0");
    EXPECT_EQ(pt.key[1], 12, "key 12 (home 9) cannot move into slot 8, before its home");
    for (uint64_t k = 2; k <= 12; k++)
        if (k == 2 || k == 3 || k == 6 || k == 7 || k == 12)
            EXPECT_NE(pt_find(&pt, k), SIZE_MAX, "key %llu lost", (unsigned long long)k);
}
