/*
 * tests/test_mpmc.c -- the bounded multi-producer / multi-consumer queue
 */
#include "asyncpat/mpmc.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_util.h"

/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

/* the result of a push or pop future, through its accessor */
#define fut_status(f)                                   \
    _Generic(&(f), ap_mpmc_push_fut *: ap_mpmc_push_status, \
             ap_mpmc_pop_fut *: ap_mpmc_pop_status)(&(f))




#define COUNTING_ALLOCATOR(c) ((ap_allocator){cnt_alloc, cnt_free, &(c)})
#define U32 sizeof(uint32_t)

static size_t big_buf[AP_MPMC_BYTES(64, sizeof(uint64_t)) / sizeof(size_t)];

AP_MPMC_DEFINE(int_mq, int)
static unsigned char q_before_typed[sizeof(int_mq)];

/* ---- configuration ---- */

Test(mpmc, bytes_macros_are_constant)
{
    _Static_assert(AP_MPMC_STRIDE(1) == 2 * sizeof(size_t), "stamp + 1 byte, padded");
    _Static_assert(AP_MPMC_STRIDE(sizeof(size_t)) == 2 * sizeof(size_t), "stamp + word");
    _Static_assert(AP_MPMC_BYTES(3, 4) == 3 * AP_MPMC_STRIDE(4), "exact capacity");
    static unsigned char as_array_size[AP_MPMC_BYTES(5, 3)];
    EXPECT_EQ(sizeof as_array_size, 5 * AP_MPMC_STRIDE(3));
    for (size_t e = 1; e <= 200; e++) {
        size_t s = AP_MPMC_STRIDE(e);
        EXPECT(s >= e + sizeof(size_t) && s % sizeof(size_t) == 0 &&
               s - sizeof(size_t) < e + sizeof(size_t),
               "stride(%zu) = %zu", e, s);
    }
}

typedef struct bad_cfg { size_t cap, elem; } bad_cfg;

static const bad_cfg mpmc_bad[] = {
    {0, 4},
    {0, 0},
    {4, 0},
    {SIZE_MAX, 1},                      /* huge capacity */
    {SIZE_MAX / 2 + 1, 8},
    {(SIZE_MAX >> 4) + 1, 1},           /* no room left for laps */
    {(size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4)}, /* capacity * stride overflows */
    {(size_t)1 << (sizeof(size_t) * 8 - 5), 64}, /* 1 << 59 on 64-bit */
    {1, SIZE_MAX},                      /* the stride itself overflows */
    {1, SIZE_MAX - 7},
    {3, SIZE_MAX / 2 - 100},
};
#define N_BAD (sizeof mpmc_bad / sizeof mpmc_bad[0])

Test(mpmc, init_bad_config_is_inval_and_changes_nothing)
{
    for (size_t i = 0; i < N_BAD; i++) {
        ap_mpmc q, before;
        memset(&q, 0xa5, sizeof q);
        memcpy(&before, &q, sizeof q);
        size_t buf_before[8], buf_copy[8];
        memset(buf_before, 0x3c, sizeof buf_before);
        memcpy(buf_copy, buf_before, sizeof buf_copy);
        EXPECT_EQ(ap_mpmc_init(&q, buf_before, sizeof buf_before, mpmc_bad[i].cap, mpmc_bad[i].elem), AP_INVAL,
                  "init(%zu, %zu) accepted", mpmc_bad[i].cap, mpmc_bad[i].elem);
        EXPECT_EQ(memcmp(&q, &before, sizeof q), 0, "init(%zu, %zu) wrote to q on AP_INVAL",
                  mpmc_bad[i].cap, mpmc_bad[i].elem);
        EXPECT_EQ(memcmp(buf_before, buf_copy, sizeof buf_copy), 0,
                  "init wrote to the buffer on AP_INVAL");
        EXPECT_EQ(ap__mpmc_init_at(&q, buf_before, sizeof buf_before, mpmc_bad[i].cap, mpmc_bad[i].elem, SIZE_MAX),
                  AP_INVAL);
        EXPECT_EQ(memcmp(&q, &before, sizeof q), 0);
    }
}

/* Caller memory comes with its size (issue #11): a buffer that is NULL,
 * misaligned (these two tripped AP_ASSERT) or too small, and bad arguments,
 * are AP_INVAL, and neither the queue nor the buffer changes. */
Test(mpmc, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { CAP = 5, ES = 4 };
    static size_t words[AP_MPMC_BYTES(CAP, ES) / sizeof(size_t) + 2];
    unsigned char *b = (unsigned char *)words;
    const size_t need = AP_MPMC_BYTES(CAP, ES);
    _Static_assert(AP_MPMC_BYTES(CAP, ES) == CAP * 2 * sizeof(size_t) &&
                       AP_MPMC_ALIGN == _Alignof(size_t),
                   "constant expressions");
    static char as_array_size[AP_MPMC_ALIGN];
    EXPECT_EQ(sizeof as_array_size, _Alignof(size_t));
    struct { void *buf; size_t bytes, cap, es; const char *what; } cases[] = {
        {NULL, sizeof words, CAP, ES, "NULL buffer"},
        {b, need - 1, CAP, ES, "one byte short"},
        {b, need - AP_MPMC_STRIDE(ES), CAP, ES, "one slot short"},
        {b, 0, CAP, ES, "zero bytes"},
        {b + 1, sizeof words - 1, CAP, ES, "misaligned by 1"},
        {b + AP_MPMC_ALIGN / 2, sizeof words - AP_MPMC_ALIGN / 2, CAP, ES, "misaligned by half"},
        {b, sizeof words, 0, ES, "capacity 0"},
        {b, sizeof words, CAP, 0, "elem_size 0"},
        {b, SIZE_MAX, SIZE_MAX / 16, 64, "bytes overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_mpmc q;
        static unsigned char q_before[sizeof(ap_mpmc)], b_before[sizeof words];
        memset(&q, 0x5A, sizeof q);
        memset(b, 0xC3, sizeof words);
        memcpy(q_before, &q, sizeof q);
        memcpy(b_before, b, sizeof words);
        EXPECT_EQ(ap_mpmc_init(&q, cases[i].buf, cases[i].bytes, cases[i].cap, cases[i].es),
                  AP_INVAL, "%s", cases[i].what);
        EXPECT(memcmp(q_before, &q, sizeof q) == 0, "%s: the queue changed", cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof words) == 0, "%s: the buffer changed", cases[i].what);
        EXPECT_EQ(ap__mpmc_init_at(&q, cases[i].buf, cases[i].bytes, cases[i].cap, cases[i].es,
                                   SIZE_MAX),
                  AP_INVAL, "init_at: %s", cases[i].what);
        EXPECT(memcmp(q_before, &q, sizeof q) == 0, "init_at, %s: the queue changed",
               cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof words) == 0, "init_at, %s: the buffer changed",
               cases[i].what);
    }
    /* typed init checks the same */
    int_mq tq;
    memset(&tq, 0x5A, sizeof tq);
    memcpy(q_before_typed, &tq, sizeof tq);
    EXPECT_EQ(int_mq_init(&tq, b, AP_MPMC_BYTES(CAP, sizeof(int)) - 1, CAP), AP_INVAL);
    EXPECT_EQ(int_mq_init(&tq, b + 1, sizeof words - 1, CAP), AP_INVAL);
    EXPECT_EQ(int_mq_init(&tq, NULL, sizeof words, CAP), AP_INVAL);
    EXPECT(memcmp(q_before_typed, &tq, sizeof tq) == 0, "typed init changed the queue");
    /* exactly enough works; the excess is not touched */
    ap_mpmc q;
    memset(b, 0xC3, sizeof words);
    EXPECT_EQ(ap_mpmc_init(&q, b, need, CAP, ES), AP_OK);
    for (uint32_t k = 0; k < 3 * CAP; k++) {
        uint32_t x = k, y = 0;
        EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
        EXPECT_EQ(ap_mpmc_try_pop(&q, &y), AP_OK);
        EXPECT_EQ(y, k);
    }
    for (size_t i = need; i < sizeof words; i++)
        EXPECT_EQ(b[i], 0xC3, "byte %zu past the buffer written", i);
    EXPECT_EQ(int_mq_init(&tq, b, AP_MPMC_BYTES(CAP, sizeof(int)), CAP), AP_OK);
    int v = 7, w = 0;
    EXPECT_EQ(int_mq_try_push(&tq, &v), AP_OK);
    EXPECT_EQ(int_mq_try_pop(&tq, &w), AP_OK);
    EXPECT_EQ(w, 7);
}

/* Regression (issue #11): an 8-byte buffer for capacity 64 was AP_OK and
 * init's stamp loop ran past it (ASan: heap-buffer-overflow in
 * ap__mpmc_init_at). Now the size comes along and it is AP_INVAL. */
Test(mpmc, small_buffer_for_capacity_is_inval_not_an_overflow)
{
    size_t *small = malloc(8);
    EXPECT(small != NULL);
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, small, 8, 64, sizeof(uint64_t)), AP_INVAL);
    EXPECT_EQ(ap__mpmc_init_at(&q, small, 8, 64, sizeof(uint64_t), SIZE_MAX), AP_INVAL);
    free(small);
}

Test(mpmc, create_bad_config_is_inval_and_allocates_nothing)
{
    for (size_t i = 0; i < N_BAD; i++) {
        counting c = {0};
        ap_allocator a = COUNTING_ALLOCATOR(c);
        ap_mpmc *sentinel = (ap_mpmc *)(uintptr_t)0x1234, *q = sentinel;
        EXPECT_EQ(ap_mpmc_create(&q, mpmc_bad[i].cap, mpmc_bad[i].elem, &a), AP_INVAL,
                  "create(%zu, %zu) not AP_INVAL", mpmc_bad[i].cap, mpmc_bad[i].elem);
        EXPECT_EQ(c.allocs, 0, "create(%zu, %zu) called the allocator",
                  mpmc_bad[i].cap, mpmc_bad[i].elem);
        EXPECT(q == sentinel, "out written on failure");
        EXPECT_EQ(ap_mpmc_create(&q, mpmc_bad[i].cap, mpmc_bad[i].elem, NULL), AP_INVAL);
        EXPECT(q == sentinel);
    }
}

Test(mpmc, create_with_incomplete_allocator_is_inval)
{
    counting c = {0};
    ap_allocator no_free = {cnt_alloc, NULL, &c};
    ap_allocator no_alloc = {NULL, cnt_free, &c};
    ap_mpmc *sentinel = (ap_mpmc *)(uintptr_t)0x1234, *q = sentinel;
    EXPECT_EQ(ap_mpmc_create(&q, 4, 4, &no_free), AP_INVAL);
    EXPECT_EQ(ap_mpmc_create(&q, 4, 4, &no_alloc), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    EXPECT(q == sentinel);
}

Test(mpmc, create_nomem_when_allocator_fails)
{
    counting c = {0};
    c.fail = true;
    ap_allocator a = COUNTING_ALLOCATOR(c);
    ap_mpmc *sentinel = (ap_mpmc *)(uintptr_t)0x1234, *q = sentinel;
    EXPECT_EQ(ap_mpmc_create(&q, 16, 8, &a), AP_NOMEM);
    EXPECT_EQ(c.allocs, 1);
    EXPECT_EQ(c.frees, 0);
    EXPECT(q == sentinel, "out written on AP_NOMEM");
}

Test(mpmc, create_destroy_one_allocation_sizes_match)
{
    const size_t caps[] = {1, 3, 4, 64, 1000};
    const size_t elems[] = {1, 8, 17};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            size_t cap = caps[i], el = elems[j];
            counting c = {0};
            ap_allocator a = COUNTING_ALLOCATOR(c);
            ap_mpmc *q = NULL;
            EXPECT_EQ(ap_mpmc_create(&q, cap, el, &a), AP_OK);
            EXPECT_EQ(c.allocs, 1);
            EXPECT(c.user_seen == &c);
            EXPECT((void *)q == c.ptr);
            EXPECT(c.align >= _Alignof(ap_mpmc) && (c.align & (c.align - 1)) == 0);
            EXPECT_GE(c.size, sizeof(ap_mpmc) + AP_MPMC_BYTES(cap, el));
            EXPECT_EQ(ap_mpmc_capacity(q), cap);
            unsigned char *e = malloc(el), *o = malloc(el);
            for (int lap = 0; lap < 2; lap++) {
                for (size_t k = 0; k < cap; k++) {
                    memset(e, (int)(k + 1), el);
                    EXPECT_EQ(ap_mpmc_try_push(q, e), AP_OK);
                }
                EXPECT_EQ(ap_mpmc_try_push(q, e), AP_FULL);
                for (size_t k = 0; k < cap; k++) {
                    EXPECT_EQ(ap_mpmc_try_pop(q, o), AP_OK);
                    EXPECT_EQ(o[el - 1], (unsigned char)(k + 1));
                }
            }
            free(e);
            free(o);
            ap_mpmc_destroy(q);
            EXPECT_EQ(c.frees, 1);
            EXPECT(c.freed_ptr == c.ptr);
            EXPECT_EQ(c.freed_size, c.size, "destroy freed %zu bytes, create took %zu",
                      c.freed_size, c.size);
        }
}

Test(mpmc, create_default_allocator_and_destroy_null)
{
    ap_mpmc *q = NULL;
    EXPECT_EQ(ap_mpmc_create(&q, 5, sizeof(uint64_t), NULL), AP_OK);
    EXPECT_NOT_NULL(q);
    EXPECT_EQ((uintptr_t)q % _Alignof(ap_mpmc), 0);
    uint64_t x = 42, y = 0;
    EXPECT_EQ(ap_mpmc_try_push(q, &x), AP_OK);
    EXPECT_EQ(ap_mpmc_try_pop(q, &y), AP_OK);
    EXPECT_EQ(y, 42);
    ap_mpmc_destroy(q);
    ap_mpmc_destroy(NULL);
}

static void check_holds_exactly(ap_mpmc *q, size_t cap)
{
    EXPECT_EQ(ap_mpmc_capacity(q), cap);
    uint32_t v = 0;
    for (size_t i = 0; i < cap; i++, v++)
        EXPECT_EQ(ap_mpmc_try_push(q, &v), AP_OK, "capacity %zu refused element %zu", cap, i);
    EXPECT_EQ(ap_mpmc_len(q), cap);
    EXPECT_EQ(ap_mpmc_try_push(q, &v), AP_FULL, "capacity %zu took %zu", cap, cap + 1);
    EXPECT_EQ(ap_mpmc_len(q), cap);
}

Test(mpmc, capacity_is_honoured_exactly)
{
    const size_t caps[] = {1, 2, 3, 5, 6, 7, 9, 33, 63, 65, 100};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        ap_mpmc *q;
        EXPECT_EQ(ap_mpmc_create(&q, caps[i], U32, NULL), AP_OK);
        check_holds_exactly(q, caps[i]);
        ap_mpmc_destroy(q);
        /* exactly AP_MPMC_BYTES: ASan catches any slot beyond it */
        void *buf = malloc(AP_MPMC_BYTES(caps[i], U32));
        ap_mpmc r;
        EXPECT_EQ(ap_mpmc_init(&r, buf, AP_MPMC_BYTES(caps[i], U32), caps[i], U32), AP_OK);
        check_holds_exactly(&r, caps[i]);
        ap_mpmc_fini(&r);
        free(buf);
    }
}

/* ---- capacity sweep ---- */

static size_t lap_of(const ap_mpmc *q, size_t lap_start)
{
    return lap_start & ~(q->one_lap - 1);
}

static void fill_drain_laps(size_t cap, size_t lap_start)
{
    ap_mpmc q;
    EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, cap, U32, lap_start), AP_OK);
    size_t start = lap_of(&q, lap_start);
    uint32_t in = 1, out = 1;
    for (int lap = 0; lap < 3; lap++) {
        for (size_t i = 0; i < cap; i++) {
            EXPECT_EQ(ap_mpmc_len(&q), i);
            EXPECT_EQ(ap_mpmc_try_push(&q, &in), AP_OK, "cap %zu start %zx lap %d", cap, start, lap);
            in++;
        }
        EXPECT_EQ(ap_mpmc_len(&q), cap);
        uint32_t extra = 0xdeadbeef;
        EXPECT_EQ(ap_mpmc_try_push(&q, &extra), AP_FULL, "cap %zu start %zx: over-full", cap, start);
        EXPECT_EQ(extra, 0xdeadbeef);
        EXPECT_EQ(ap_mpmc_len(&q), cap);
        for (size_t i = 0; i < cap; i++) {
            uint32_t v = 0;
            EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
            EXPECT_EQ(v, out, "cap %zu start %zx: popped %u, expected %u", cap, start, v, out);
            out++;
            EXPECT_EQ(ap_mpmc_len(&q), cap - i - 1);
        }
        uint32_t sentinel = 0xabababab;
        EXPECT_EQ(ap_mpmc_try_pop(&q, &sentinel), AP_EMPTY);
        EXPECT_EQ(sentinel, 0xabababab, "out written on AP_EMPTY");
        for (size_t i = 0; i < (cap + 1) / 2; i++) {
            EXPECT_EQ(ap_mpmc_try_push(&q, &in), AP_OK);
            in++;
            uint32_t v;
            EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
            EXPECT_EQ(v, out);
            out++;
        }
    }
    size_t tail = atomic_load(&q.tail);
    if (start > SIZE_MAX - 2 * q.one_lap)
        EXPECT_LT(tail, start, "cap %zu start %zx: the positions never wrapped", cap, start);
}

Test(mpmc, capacity_sweep_fill_drain_wrap)
{
    for (size_t cap = 1; cap <= 64; cap++) {
        const size_t starts[] = {0, SIZE_MAX, SIZE_MAX / 2, 12345};
        for (size_t s = 0; s < 4; s++)
            fill_drain_laps(cap, starts[s]);
        /* the last lap before the counter wraps */
        ap_mpmc probe;
        EXPECT_EQ(ap_mpmc_init(&probe, big_buf, sizeof big_buf, cap, U32), AP_OK);
        fill_drain_laps(cap, SIZE_MAX - probe.one_lap);
    }
}

Test(mpmc, init_at_starts_near_the_end)
{
    /* guards the sweep above: the hook really puts the counters near 2^64 */
    ap_mpmc q;
    EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, 5, U32, SIZE_MAX), AP_OK);
    EXPECT_GE(atomic_load(&q.tail), SIZE_MAX - 2 * q.one_lap);
    EXPECT_EQ(atomic_load(&q.head), atomic_load(&q.tail));
    EXPECT_EQ(ap_mpmc_len(&q), 0);
}

static void model_run(size_t cap, size_t lap_start, uint64_t seed)
{
    ap_mpmc q;
    EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, cap, U32, lap_start), AP_OK);
    uint32_t in = 0, out = 0;
    size_t steps = 30 * cap + 200, phase = 2 * cap + 3;
    for (size_t step = 0; step < steps; step++) {
        uint64_t r = rng_next(&seed);
        bool push_heavy = (step / phase) % 2 == 0;
        bool push = (r % 4) != 0 ? push_heavy : !push_heavy;
        size_t len = in - out;
        if (push) {
            ap_status st = ap_mpmc_try_push(&q, &in);
            EXPECT_EQ(st, len == cap ? AP_FULL : AP_OK, "cap %zu step %zu", cap, step);
            if (st == AP_OK)
                in++;
        } else {
            uint32_t v = 0xffffffffu;
            ap_status st = ap_mpmc_try_pop(&q, &v);
            EXPECT_EQ(st, len == 0 ? AP_EMPTY : AP_OK, "cap %zu step %zu", cap, step);
            if (st == AP_OK) {
                EXPECT_EQ(v, out, "cap %zu step %zu: FIFO broken", cap, step);
                out++;
            } else {
                EXPECT_EQ(v, 0xffffffffu);
            }
        }
        EXPECT_EQ(ap_mpmc_len(&q), (size_t)(in - out), "cap %zu step %zu: len", cap, step);
    }
    EXPECT_GT(in, 2 * cap);
}

Test(mpmc, capacity_sweep_random_interleave_against_model)
{
    for (size_t cap = 1; cap <= 64; cap++) {
        model_run(cap, 0, 0x9e3779b97f4a7c15u ^ cap);
        model_run(cap, SIZE_MAX, 0x2545f4914f6cdd1du ^ cap);
    }
}

/* ---- element sizes ---- */

static void fill_pattern(unsigned char *e, size_t sz, uint32_t k)
{
    for (size_t j = 0; j < sz; j++)
        e[j] = (unsigned char)(k * 31u + j * 7u + sz + 1);
}

Test(mpmc, odd_element_sizes_round_trip_byte_exact)
{
    const size_t sizes[] = {1, 3, 17, 100};
    const size_t caps[] = {1, 3, 8};
    enum { CANARY = 16 };
    for (size_t si = 0; si < 4; si++)
        for (size_t ci = 0; ci < 3; ci++) {
            size_t sz = sizes[si], cap = caps[ci];
            void *buf = malloc(AP_MPMC_BYTES(cap, sz));
            unsigned char *e = malloc(sz), *o = malloc(sz + CANARY), *want = malloc(sz);
            ap_mpmc q;
            EXPECT_EQ(ap__mpmc_init_at(&q, buf, AP_MPMC_BYTES(cap, sz), cap, sz, SIZE_MAX), AP_OK);
            uint32_t in = 0, out = 0;
            for (int lap = 0; lap < 4; lap++) {
                for (size_t k = 0; k < cap; k++) {
                    fill_pattern(e, sz, in++);
                    EXPECT_EQ(ap_mpmc_try_push(&q, e), AP_OK);
                }
                EXPECT_EQ(ap_mpmc_try_push(&q, e), AP_FULL);
                for (size_t k = 0; k < cap; k++) {
                    memset(o, 0xcc, sz + CANARY);
                    EXPECT_EQ(ap_mpmc_try_pop(&q, o), AP_OK);
                    fill_pattern(want, sz, out++);
                    EXPECT_EQ(memcmp(o, want, sz), 0, "size %zu cap %zu: bytes differ", sz, cap);
                    for (size_t j = sz; j < sz + CANARY; j++)
                        EXPECT_EQ(o[j], 0xcc, "size %zu: pop wrote past the element", sz);
                }
            }
            free(buf);
            free(e);
            free(o);
            free(want);
        }
}

/* ---- an element in flight: AP_AGAIN, never a false EMPTY or FULL ---- */

Test(mpmc, claimed_unpublished_push_reads_again_not_empty)
{
    ap_mpmc q;
    EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, 4, U32, SIZE_MAX), AP_OK);
    size_t t = atomic_load(&q.tail);
    /* a producer claims ticket t and is preempted before publishing */
    atomic_store(&q.tail, ap__mpmc_next(&q, t));
    uint32_t out = 0x5555;
    EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_AGAIN, "a claimed push read as EMPTY");
    EXPECT_EQ(out, 0x5555);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_PENDING);
    EXPECT_GE(calls(&w), 1, "pending on AP_AGAIN without asking for a re-poll");
    /* close meanwhile: the in-flight element is still delivered */
    ap_mpmc_close(&q);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_AGAIN, "closed with an element in flight");
    uint32_t v = 0xc0ffee;
    memcpy(ap__mpmc_data(&q, t & (q.mark - 1)), &v, sizeof v);
    atomic_store(ap__mpmc_stamp(&q, t & (q.mark - 1)), t + 1); /* publish */
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 0xc0ffee);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_CLOSED);
}

Test(mpmc, claimed_unfreed_pop_reads_again_not_full)
{
    ap_mpmc q;
    EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, 3, U32, SIZE_MAX), AP_OK);
    for (uint32_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
    size_t h = atomic_load(&q.head);
    size_t idx = h & (q.mark - 1);
    uint32_t first;
    memcpy(&first, ap__mpmc_data(&q, idx), sizeof first);
    EXPECT_EQ(first, 1);
    /* a consumer claims ticket h and is preempted before freeing the slot */
    atomic_store(&q.head, ap__mpmc_next(&q, h));
    uint32_t x = 4;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_AGAIN, "a claimed pop read as FULL");
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_mpmc_push_fut f;
    ap_mpmc_push_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_mpmc_push_poll(&f, &cx), AP_PENDING);
    EXPECT_GE(calls(&w), 1, "pending on AP_AGAIN without asking for a re-poll");
    atomic_store(ap__mpmc_stamp(&q, idx), h + q.one_lap); /* free it */
    EXPECT_EQ(ap_mpmc_push_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    uint32_t v;
    for (uint32_t i = 2; i <= 4; i++) {
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, i);
    }
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_EMPTY);
}

/* ---- close ---- */

Test(mpmc, close_rejects_pushes_and_drains)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, sizeof(uint64_t)), AP_OK);
    for (uint64_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
    EXPECT_NOT(ap_mpmc_is_closed(&q));
    ap_mpmc_close(&q);
    EXPECT(ap_mpmc_is_closed(&q));
    EXPECT_EQ(ap_mpmc_len(&q), 3, "len must ignore the closed flag");
    uint64_t x = 0x1122334455667788u;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_CLOSED);
    EXPECT_EQ(x, 0x1122334455667788u);
    EXPECT_EQ(ap_mpmc_len(&q), 3);
    ap_mpmc_close(&q);
    EXPECT(ap_mpmc_is_closed(&q));
    for (uint64_t i = 1; i <= 3; i++) {
        uint64_t v = 0;
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, i);
    }
    uint64_t v = 99;
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_CLOSED);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_CLOSED);
    EXPECT_EQ(v, 99);
    EXPECT_EQ(ap_mpmc_len(&q), 0);
}

Test(mpmc, close_empty_and_full)
{
    for (size_t cap = 1; cap <= 9; cap++) {
        ap_mpmc q;
        EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, cap, U32, cap % 2 ? SIZE_MAX : 0), AP_OK);
        ap_mpmc_close(&q);
        uint32_t v = 7;
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_CLOSED, "cap %zu: closed+empty", cap);
        EXPECT_EQ(v, 7);
        EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_CLOSED);

        EXPECT_EQ(ap__mpmc_init_at(&q, big_buf, sizeof big_buf, cap, U32, cap % 2 ? 0 : SIZE_MAX), AP_OK);
        for (uint32_t i = 0; i < cap; i++)
            EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
        ap_mpmc_close(&q);
        EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_CLOSED, "cap %zu: closed+full", cap);
        EXPECT_EQ(ap_mpmc_len(&q), cap);
        for (uint32_t i = 0; i < cap; i++) {
            EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
            EXPECT_EQ(v, i);
        }
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_CLOSED);
    }
}

Test(mpmc, close_wakes_every_pop_future)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    enum { N = 3 };
    tw t[N] = {{0}, {0}, {0}};
    uint32_t out[N] = {111, 222, 333};
    ap_mpmc_pop_fut f[N];
    for (int i = 0; i < N; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_mpmc_pop_fut_init(&f[i], &q, &out[i]);
        EXPECT_EQ(ap_mpmc_pop_poll(&f[i], &cx), AP_PENDING);
    }
    ap_mpmc_close(&q);
    for (int i = 0; i < N; i++) {
        EXPECT_GE(calls(&t[i]), 1, "close did not wake pop future %d", i);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_mpmc_pop_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(fut_status(f[i]), AP_CLOSED);
    }
    EXPECT_EQ(out[0], 111);
    EXPECT_EQ(out[2], 333);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
}

Test(mpmc, close_wakes_every_push_future)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 2, U32), AP_OK);
    uint32_t a = 1, b = 2, pend[3] = {30, 40, 50};
    EXPECT_EQ(ap_mpmc_try_push(&q, &a), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(&q, &b), AP_OK);
    tw t[3] = {{0}, {0}, {0}};
    ap_mpmc_push_fut f[3];
    for (int i = 0; i < 3; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_mpmc_push_fut_init(&f[i], &q, &pend[i]);
        EXPECT_EQ(ap_mpmc_push_poll(&f[i], &cx), AP_PENDING);
    }
    ap_mpmc_close(&q);
    for (int i = 0; i < 3; i++) {
        EXPECT_GE(calls(&t[i]), 1, "close did not wake push future %d", i);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_mpmc_push_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(fut_status(f[i]), AP_CLOSED);
    }
    uint32_t v;
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_CLOSED);
}

/* ---- the future contract ---- */

Test(mpmc, pop_future_pending_then_woken_by_push)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0;
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(fut_status(f), AP_NOT_READY, "pending (issue #11: was AP_AGAIN)");
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(atomic_load(&q.not_empty.count), 1, "re-poll registered twice");
    uint32_t x = 4242;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
    EXPECT_GE(calls(&t), 1, "push did not wake the pending pop");
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 4242);
    EXPECT_EQ(ap_mpmc_len(&q), 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
}

Test(mpmc, push_future_on_full_woken_by_pop)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 3, U32), AP_OK);
    for (uint32_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t x = 4;
    ap_mpmc_push_fut f;
    ap_mpmc_push_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_mpmc_push_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(fut_status(f), AP_NOT_READY, "pending (issue #11: was AP_AGAIN)");
    EXPECT_EQ(calls(&t), 0);
    uint32_t v;
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_GE(calls(&t), 1, "pop did not wake the pending push");
    EXPECT_EQ(ap_mpmc_push_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    for (uint32_t i = 2; i <= 4; i++) {
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, i);
    }
}

Test(mpmc, pop_waiters_woken_in_fifo_order)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw t[3] = {{0}, {0}, {0}};
    uint32_t out[3] = {0, 0, 0};
    ap_mpmc_pop_fut f[3];
    for (int i = 0; i < 3; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_mpmc_pop_fut_init(&f[i], &q, &out[i]);
        EXPECT_EQ(ap_mpmc_pop_poll(&f[i], &cx), AP_PENDING);
    }
    for (int i = 0; i < 3; i++) {
        uint32_t x = 10 + (uint32_t)i;
        EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
        for (int j = 0; j < 3; j++)
            EXPECT_EQ(calls(&t[j]), j <= i ? 1 : 0,
                      "after push %d waiter %d has %d wakes", i, j, calls(&t[j]));
    }
    for (int i = 0; i < 3; i++) {
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_mpmc_pop_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(out[i], 10u + (uint32_t)i);
    }
}

Test(mpmc, push_waiters_woken_in_fifo_order)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 2, U32), AP_OK);
    uint32_t a = 1, b = 2, pend[3] = {10, 11, 12}, v;
    EXPECT_EQ(ap_mpmc_try_push(&q, &a), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(&q, &b), AP_OK);
    tw t[3] = {{0}, {0}, {0}};
    ap_mpmc_push_fut f[3];
    for (int i = 0; i < 3; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_mpmc_push_fut_init(&f[i], &q, &pend[i]);
        EXPECT_EQ(ap_mpmc_push_poll(&f[i], &cx), AP_PENDING);
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
        for (int j = 0; j < 3; j++)
            EXPECT_EQ(calls(&t[j]), j <= i ? 1 : 0, "after pop %d waiter %d", i, j);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_mpmc_push_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(fut_status(f[i]), AP_OK);
    }
    const uint32_t rest[] = {11, 12};
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, rest[i]);
    }
}

Test(mpmc, cancel_is_idempotent_and_no_wake_after_it)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 1, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0;
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_PENDING);
    ap_mpmc_pop_cancel(&f);
    ap_mpmc_pop_cancel(&f);
    EXPECT_EQ(fut_status(f), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
    uint32_t x = 77;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&t), 0, "a cancelled waiter was woken");
    EXPECT_EQ(out, 0);
    /* push side: the queue (capacity 1) is full now */
    uint32_t y = 88;
    ap_mpmc_push_fut pf;
    ap_mpmc_push_fut_init(&pf, &q, &y);
    EXPECT_EQ(ap_mpmc_push_poll(&pf, &cx), AP_PENDING);
    ap_mpmc_push_cancel(&pf);
    ap_mpmc_push_cancel(&pf);
    EXPECT_EQ(fut_status(pf), AP_CANCELED);
    uint32_t v = 0;
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 77);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_EMPTY, "a cancelled push put its element in");
}

Test(mpmc, cancel_after_completion_changes_nothing)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t x = 3, out = 0;
    ap_mpmc_push_fut pf;
    ap_mpmc_push_fut_init(&pf, &q, &x);
    EXPECT_EQ(ap_mpmc_push_poll(&pf, &cx), AP_READY);
    ap_mpmc_push_cancel(&pf);
    ap_mpmc_push_cancel(&pf);
    EXPECT_EQ(fut_status(pf), AP_OK);
    EXPECT_EQ(ap_mpmc_len(&q), 1);
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_READY);
    ap_mpmc_pop_cancel(&f);
    ap_mpmc_pop_cancel(&f);
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 3);
    EXPECT_EQ(ap_mpmc_len(&q), 0);
}

Test(mpmc, cancelled_pop_passes_its_wake_and_loses_no_item)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw ta = {0}, tb = {0};
    ap_cx ca = cx_of(&ta), cb = cx_of(&tb);
    uint32_t oa = 0, ob = 0;
    ap_mpmc_pop_fut a, b;
    ap_mpmc_pop_fut_init(&a, &q, &oa);
    ap_mpmc_pop_fut_init(&b, &q, &ob);
    EXPECT_EQ(ap_mpmc_pop_poll(&a, &ca), AP_PENDING);
    EXPECT_EQ(ap_mpmc_pop_poll(&b, &cb), AP_PENDING);
    uint32_t x = 55;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&ta), 1, "the first waiter is woken first");
    EXPECT_EQ(calls(&tb), 0);
    ap_mpmc_pop_cancel(&a);
    EXPECT_EQ(fut_status(a), AP_CANCELED);
    EXPECT_EQ(oa, 0);
    EXPECT_EQ(calls(&tb), 1, "the cancelled waiter's wake was not passed on");
    EXPECT_EQ(ap_mpmc_pop_poll(&b, &cb), AP_READY);
    EXPECT_EQ(fut_status(b), AP_OK);
    EXPECT_EQ(ob, 55);
    EXPECT_EQ(ap_mpmc_len(&q), 0, "items are conserved: 1 pushed, 1 popped");
}

Test(mpmc, cancelled_push_passes_its_wake)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 1, U32), AP_OK);
    uint32_t first = 1, pa = 2, pb = 3, v;
    EXPECT_EQ(ap_mpmc_try_push(&q, &first), AP_OK);
    tw ta = {0}, tb = {0};
    ap_cx ca = cx_of(&ta), cb = cx_of(&tb);
    ap_mpmc_push_fut a, b;
    ap_mpmc_push_fut_init(&a, &q, &pa);
    ap_mpmc_push_fut_init(&b, &q, &pb);
    EXPECT_EQ(ap_mpmc_push_poll(&a, &ca), AP_PENDING);
    EXPECT_EQ(ap_mpmc_push_poll(&b, &cb), AP_PENDING);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(calls(&tb), 0);
    ap_mpmc_push_cancel(&a);
    EXPECT_EQ(calls(&tb), 1, "the freed slot's wake was not passed on");
    EXPECT_EQ(ap_mpmc_push_poll(&b, &cb), AP_READY);
    EXPECT_EQ(fut_status(b), AP_OK);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &v), AP_EMPTY);
}

Test(mpmc, repoll_with_new_waker_replaces_old)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw a = {0}, b = {0};
    ap_cx ca = cx_of(&a), cb = cx_of(&b);
    uint32_t out = 0;
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &ca), AP_PENDING);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cb), AP_PENDING);
    uint32_t x = 1;
    EXPECT_EQ(ap_mpmc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&a), 0, "the replaced waker was called");
    EXPECT_GE(calls(&b), 1);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cb), AP_READY);
    EXPECT_EQ(out, 1);
}

Test(mpmc, wait_times_out_and_leaves_nothing_behind, .timeout = TEST_TIMEOUT_S)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 1, U32), AP_OK);
    uint32_t out = 5;
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, 0), AP_TIMEDOUT);
    uint64_t deadline = ap_now_ns() + 5 * AP_NS_PER_MS;
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline);
    EXPECT_EQ(out, 5);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
    uint32_t x = 1, y = 2;
    EXPECT_EQ(ap_mpmc_push_wait(&q, &x, 0), AP_OK);
    EXPECT_EQ(ap_mpmc_push_wait(&q, &y, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_full));
    EXPECT_EQ(ap_mpmc_len(&q), 1);
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, 0), AP_OK);
    EXPECT_EQ(out, 1);
    ap_mpmc_close(&q);
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(ap_mpmc_push_wait(&q, &x, AP_DEADLINE_NONE), AP_CLOSED);
}

/* ---- across threads ---- */

static ap_mpmc xq;
static size_t xq_buf[AP_MPMC_BYTES(16, sizeof(uint64_t)) / sizeof(size_t)];
/* helpers record results; the test's own thread asserts */
static ap_status helper_status[8];
static uint64_t helper_value[8];

static void *pop_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    helper_status[i] = ap_mpmc_pop_wait(&xq, &helper_value[i], AP_DEADLINE_NONE);
    return NULL;
}

static void *pop_later(void *arg)
{
    ms_sleep(5);
    helper_status[0] = ap_mpmc_try_pop(&xq, arg);
    return NULL;
}

static void wait_for_waiters(ap_waitlist *wl, size_t n)
{
    while (atomic_load(&wl->count) < n)
        ms_sleep(1);
}

Test(mpmc, pop_wait_rides_out_a_stalled_producer, .timeout = TEST_TIMEOUT_S)
{
    /* A producer claims a ticket and stalls; it publishes 20 ms later
     * without waking anyone (its wake would come after the store). The
     * parked consumer must not sleep forever on AP_AGAIN. */
    EXPECT_EQ(ap_mpmc_init(&xq, xq_buf, sizeof xq_buf, 4, sizeof(uint64_t)), AP_OK);
    size_t t = atomic_load(&xq.tail);
    atomic_store(&xq.tail, ap__mpmc_next(&xq, t));
    helper_value[0] = 0;
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, pop_waiter, (void *)(intptr_t)0), 0);
    ms_sleep(20);
    uint64_t v = 0x5eed;
    memcpy(ap__mpmc_data(&xq, t & (xq.mark - 1)), &v, sizeof v);
    atomic_store(ap__mpmc_stamp(&xq, t & (xq.mark - 1)), t + 1);
    pthread_join(th, NULL);
    EXPECT_EQ(helper_status[0], AP_OK);
    EXPECT_EQ(helper_value[0], 0x5eed);
}

Test(mpmc, parked_consumers_each_get_one_push, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 3 };
    EXPECT_EQ(ap_mpmc_init(&xq, xq_buf, sizeof xq_buf, 8, sizeof(uint64_t)), AP_OK);
    pthread_t th[N];
    for (int i = 0; i < N; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, pop_waiter, (void *)(intptr_t)i), 0);
    wait_for_waiters(&xq.not_empty, N); /* all three parked */
    for (uint64_t v = 1; v <= N; v++) {
        EXPECT_EQ(ap_mpmc_try_push(&xq, &v), AP_OK);
        ms_sleep(1);
    }
    unsigned seen = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(helper_status[i], AP_OK);
        EXPECT(helper_value[i] >= 1 && helper_value[i] <= N);
        EXPECT_NOT(seen & (1u << helper_value[i]), "item %lu popped twice",
                   (unsigned long)helper_value[i]);
        seen |= 1u << helper_value[i];
    }
    EXPECT_EQ(ap_mpmc_len(&xq), 0);
}

Test(mpmc, parked_consumers_all_woken_by_close, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 4 };
    EXPECT_EQ(ap_mpmc_init(&xq, xq_buf, sizeof xq_buf, 8, sizeof(uint64_t)), AP_OK);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        helper_value[i] = 0xabc;
        EXPECT_EQ(pthread_create(&th[i], NULL, pop_waiter, (void *)(intptr_t)i), 0);
    }
    wait_for_waiters(&xq.not_empty, N);
    ap_mpmc_close(&xq);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(helper_status[i], AP_CLOSED);
        EXPECT_EQ(helper_value[i], 0xabc);
    }
}

Test(mpmc, push_wait_woken_by_pop_from_another_thread, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap_mpmc_init(&xq, xq_buf, sizeof xq_buf, 1, sizeof(uint64_t)), AP_OK);
    uint64_t a = 1, b = 2, got = 0;
    EXPECT_EQ(ap_mpmc_try_push(&xq, &a), AP_OK);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, pop_later, &got), 0);
    EXPECT_EQ(ap_mpmc_push_wait(&xq, &b, AP_DEADLINE_NONE), AP_OK);
    pthread_join(th, NULL);
    EXPECT_EQ(helper_status[0], AP_OK);
    EXPECT_EQ(got, 1);
    uint64_t v;
    EXPECT_EQ(ap_mpmc_try_pop(&xq, &v), AP_OK);
    EXPECT_EQ(v, 2);
}

/* 2 producers x 2 consumers through a small queue, with futures on both
 * sides: every item exactly once, per-producer order kept per consumer */
enum { PRODUCERS = 2, CONSUMERS = 2, PER_PRODUCER = 6000 };
static atomic_uchar seen_count[PRODUCERS][PER_PRODUCER];
static atomic_int order_errors, status_errors;

static void *mp_producer(void *arg)
{
    uint64_t p = (uint64_t)(uintptr_t)arg;
    for (uint64_t s = 0; s < PER_PRODUCER; s++) {
        uint64_t item = p << 40 | s;
        ap_status st;
        if (s % 2)
            st = ap_mpmc_push_wait(&xq, &item, AP_DEADLINE_NONE);
        else
            while ((st = ap_mpmc_try_push(&xq, &item)) == AP_FULL || st == AP_AGAIN)
                sched_yield();
        if (st != AP_OK)
            atomic_fetch_add(&status_errors, 1);
    }
    return NULL;
}

static void *mp_consumer(void *arg)
{
    (void)arg;
    int64_t last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++)
        last[p] = -1;
    for (;;) {
        uint64_t item;
        ap_status st = ap_mpmc_pop_wait(&xq, &item, AP_DEADLINE_NONE);
        if (st == AP_CLOSED)
            break;
        if (st != AP_OK) {
            atomic_fetch_add(&status_errors, 1);
            break;
        }
        uint64_t p = item >> 40, s = item & ((UINT64_C(1) << 40) - 1);
        if (p >= PRODUCERS || s >= PER_PRODUCER) {
            atomic_fetch_add(&status_errors, 1);
            continue;
        }
        if ((int64_t)s <= last[p])
            atomic_fetch_add(&order_errors, 1);
        last[p] = (int64_t)s;
        atomic_fetch_add(&seen_count[p][s], 1);
    }
    return NULL;
}

Test(mpmc, two_by_two_every_item_exactly_once, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap__mpmc_init_at(&xq, xq_buf, sizeof xq_buf, 3, sizeof(uint64_t), SIZE_MAX), AP_OK);
    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++)
        EXPECT_EQ(pthread_create(&ct[i], NULL, mp_consumer, NULL), 0);
    for (int i = 0; i < PRODUCERS; i++)
        EXPECT_EQ(pthread_create(&pt[i], NULL, mp_producer, (void *)(uintptr_t)i), 0);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    ap_mpmc_close(&xq);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(ct[i], NULL);
    EXPECT_EQ(atomic_load(&status_errors), 0);
    EXPECT_EQ(atomic_load(&order_errors), 0, "per-producer FIFO broken");
    for (int p = 0; p < PRODUCERS; p++)
        for (int s = 0; s < PER_PRODUCER; s++)
            EXPECT_EQ(atomic_load(&seen_count[p][s]), 1, "item (%d, %d) seen %d times", p, s,
                      (int)atomic_load(&seen_count[p][s]));
    EXPECT_EQ(ap_mpmc_len(&xq), 0);
}

/* ---- preconditions trip AP_ASSERT ---- */

/* #11: finalizing with a parked future is detected in every build (it was
 * checked only under AP_DEBUG). */
Test(mpmc, fini_with_a_parked_future_asserts, .signal = SIGABRT)
{
    ap_mpmc q;
    uint32_t x = 0;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_mpmc_pop_poll(&f, &cx), AP_PENDING);
    ap_mpmc_fini(&q);
    cr_log_error("fini with a parked pop future returned");
}

Test(mpmc, try_push_after_fini_asserts, .signal = SIGABRT)
{
    ap_mpmc q;
    uint32_t x = 1;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    ap_mpmc_fini(&q);
    ap_status st = ap_mpmc_try_push(&q, &x);
    cr_log_error("try_push after fini returned %d", (int)st);
}

Test(mpmc, try_pop_after_fini_asserts, .signal = SIGABRT)
{
    ap_mpmc q;
    uint32_t x = 1;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    ap_mpmc_fini(&q);
    ap_status st = ap_mpmc_try_pop(&q, &x);
    cr_log_error("try_pop after fini returned %d", (int)st);
}

Test(mpmc, close_after_fini_asserts, .signal = SIGABRT)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    ap_mpmc_fini(&q);
    ap_mpmc_close(&q);
}

Test(mpmc, destroy_of_an_init_queue_asserts, .signal = SIGABRT)
{
    ap_mpmc q;
    EXPECT_EQ(ap_mpmc_init(&q, big_buf, sizeof big_buf, 4, U32), AP_OK);
    ap_mpmc_destroy(&q);
}

Test(mpmc, create_without_out_asserts, .signal = SIGABRT)
{
    ap_status st = ap_mpmc_create(NULL, 4, 4, NULL);
    cr_log_error("returned %d", (int)st);
}

/* DESIGN.md: "Programmer errors (a NULL object, use after fini) trip
 * AP_ASSERT"; AP_INVAL is for bad configuration data. */
Test(mpmc, init_of_null_queue_asserts, .signal = SIGABRT)
{
    ap_status st = ap_mpmc_init(NULL, big_buf, sizeof big_buf, 4, U32);
    cr_log_error("ap_mpmc_init(NULL, ...) returned %d instead of asserting", (int)st);
}
