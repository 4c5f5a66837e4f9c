/*
 * tests/test_spsc.c -- the bounded single-producer / single-consumer ring
 */
#include "asyncpat/spsc.h"

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
    _Generic(&(f), ap_spsc_push_fut *: ap_spsc_push_status, \
             ap_spsc_pop_fut *: ap_spsc_pop_status)(&(f))



/* An allocator that counts, checks and can fail. */

#define COUNTING_ALLOCATOR(c) ((ap_allocator){cnt_alloc, cnt_free, &(c)})

#define POS(x) ((size_t)(x)) /* positions run modulo 2^64 */
#define U32 sizeof(uint32_t)

static unsigned char big_buf[AP_SPSC_BYTES(64, sizeof(uint64_t))];

/* ---- configuration ---- */

Test(spsc, bytes_macro_is_constant_and_rounds_to_pow2)
{
    _Static_assert(AP_SPSC_BYTES(1, 4) == 4, "1 slot");
    _Static_assert(AP_SPSC_BYTES(3, 4) == 16, "3 -> 4 slots");
    _Static_assert(AP_SPSC_BYTES(64, 1) == 64, "64 slots");
    _Static_assert(AP_SPSC_BYTES(65, 2) == 256, "65 -> 128 slots");
    static unsigned char as_array_size[AP_SPSC_BYTES(5, 3)];
    EXPECT_EQ(sizeof as_array_size, 24);
    for (size_t cap = 1; cap <= 5000; cap++)
        EXPECT_EQ(AP_SPSC_BYTES(cap, 7), ap__pow2_ceil(cap) * 7, "cap %zu", cap);
    size_t big = ((size_t)1 << (sizeof(size_t) * 8 - 24)) + 1; /* 1 << 40 on 64-bit */
    EXPECT_EQ(AP_SPSC_BYTES(big, 1), (size_t)1 << (sizeof(size_t) * 8 - 23));
}

typedef struct bad_cfg { size_t cap, elem; } bad_cfg;

static const bad_cfg spsc_bad[] = {
    {0, 4},
    {0, 0},
    {4, 0},
    {SIZE_MAX, 1},                              /* huge capacity */
    {SIZE_MAX / 2 + 1, 1},
    {(SIZE_MAX >> 3) + 1, 1},                   /* beyond the position range */
    {(size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4)}, /* slots * elem overflows */
    {SIZE_MAX >> 3, 8},                         /* 2^61 slots * 8 = 2^64 */
    {((size_t)1 << (sizeof(size_t) * 8 - 4)) + 1, 8}, /* rounds to 2^61 slots (64-bit), * 8 overflows */
    {3, SIZE_MAX / 2},                          /* 4 slots * 2^63 overflows */
};
#define N_BAD (sizeof spsc_bad / sizeof spsc_bad[0])

Test(spsc, init_bad_config_is_inval_and_changes_nothing)
{
    for (size_t i = 0; i < N_BAD; i++) {
        ap_spsc q, before;
        memset(&q, 0xa5, sizeof q);
        memcpy(&before, &q, sizeof q);
        unsigned char buf[64], buf_copy[64];
        memset(buf, 0x3c, sizeof buf);
        memcpy(buf_copy, buf, sizeof buf);
        EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, spsc_bad[i].cap, spsc_bad[i].elem), AP_INVAL,
                  "init(%zu, %zu) accepted", spsc_bad[i].cap, spsc_bad[i].elem);
        EXPECT_EQ(memcmp(&q, &before, sizeof q), 0, "init(%zu, %zu) wrote to q on AP_INVAL",
                  spsc_bad[i].cap, spsc_bad[i].elem);
        EXPECT_EQ(memcmp(buf, buf_copy, sizeof buf), 0, "init wrote to the buffer on AP_INVAL");
        EXPECT_EQ(ap__spsc_init_at(&q, big_buf, sizeof big_buf, spsc_bad[i].cap, spsc_bad[i].elem, SIZE_MAX),
                  AP_INVAL);
        EXPECT_EQ(memcmp(&q, &before, sizeof q), 0);
    }
}

Test(spsc, create_bad_config_is_inval_and_allocates_nothing)
{
    const bad_cfg extra[] = {
        {1, SIZE_MAX - 10}, /* the buffer fits size_t, buffer + header does not */
        {2, SIZE_MAX / 2},
    };
    for (size_t i = 0; i < N_BAD + 2; i++) {
        bad_cfg b = i < N_BAD ? spsc_bad[i] : extra[i - N_BAD];
        counting c = {0};
        ap_allocator a = COUNTING_ALLOCATOR(c);
        ap_spsc *sentinel = (ap_spsc *)(uintptr_t)0x1234, *q = sentinel;
        EXPECT_EQ(ap_spsc_create(&q, b.cap, b.elem, &a), AP_INVAL,
                  "create(%zu, %zu) not AP_INVAL", b.cap, b.elem);
        EXPECT_EQ(c.allocs, 0, "create(%zu, %zu) called the allocator", b.cap, b.elem);
        EXPECT(q == sentinel, "out written on failure");
        q = sentinel;
        EXPECT_EQ(ap_spsc_create(&q, b.cap, b.elem, NULL), AP_INVAL);
        EXPECT(q == sentinel);
    }
}

Test(spsc, create_with_incomplete_allocator_is_inval)
{
    counting c = {0};
    ap_allocator no_free = {cnt_alloc, NULL, &c};
    ap_allocator no_alloc = {NULL, cnt_free, &c};
    ap_spsc *sentinel = (ap_spsc *)(uintptr_t)0x1234, *q = sentinel;
    EXPECT_EQ(ap_spsc_create(&q, 4, 4, &no_free), AP_INVAL);
    EXPECT_EQ(ap_spsc_create(&q, 4, 4, &no_alloc), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    EXPECT(q == sentinel);
}

Test(spsc, create_nomem_when_allocator_fails)
{
    counting c = {0};
    c.fail = true;
    ap_allocator a = COUNTING_ALLOCATOR(c);
    ap_spsc *sentinel = (ap_spsc *)(uintptr_t)0x1234, *q = sentinel;
    EXPECT_EQ(ap_spsc_create(&q, 16, 8, &a), AP_NOMEM);
    EXPECT_EQ(c.allocs, 1);
    EXPECT_EQ(c.frees, 0);
    EXPECT(q == sentinel, "out written on AP_NOMEM");
}

Test(spsc, create_destroy_one_allocation_sizes_match)
{
    const size_t caps[] = {1, 3, 4, 64, 1000};
    const size_t elems[] = {1, 8, 17};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            size_t cap = caps[i], el = elems[j];
            counting c = {0};
            ap_allocator a = COUNTING_ALLOCATOR(c);
            ap_spsc *q = NULL;
            EXPECT_EQ(ap_spsc_create(&q, cap, el, &a), AP_OK);
            EXPECT_EQ(c.allocs, 1);
            EXPECT(c.user_seen == &c, "allocator's user pointer not passed");
            EXPECT((void *)q == c.ptr);
            EXPECT(c.align >= _Alignof(ap_spsc) && (c.align & (c.align - 1)) == 0);
            EXPECT_GE(c.size, sizeof(ap_spsc) + AP_SPSC_BYTES(cap, el));
            EXPECT_EQ(ap_spsc_capacity(q), cap);
            /* use every slot (ASan checks the buffer lies inside the block) */
            unsigned char *e = malloc(el), *o = malloc(el);
            for (int lap = 0; lap < 2; lap++) {
                for (size_t k = 0; k < cap; k++) {
                    memset(e, (int)(k + 1), el);
                    EXPECT_EQ(ap_spsc_try_push(q, e), AP_OK);
                }
                EXPECT_EQ(ap_spsc_try_push(q, e), AP_FULL);
                for (size_t k = 0; k < cap; k++) {
                    EXPECT_EQ(ap_spsc_try_pop(q, o), AP_OK);
                    EXPECT_EQ(o[el - 1], (unsigned char)(k + 1));
                }
            }
            free(e);
            free(o);
            ap_spsc_destroy(q);
            EXPECT_EQ(c.frees, 1);
            EXPECT(c.freed_ptr == c.ptr);
            EXPECT_EQ(c.freed_size, c.size, "destroy freed %zu bytes, create took %zu",
                      c.freed_size, c.size);
        }
}

Test(spsc, create_default_allocator_and_destroy_null)
{
    ap_spsc *q = NULL;
    EXPECT_EQ(ap_spsc_create(&q, 5, sizeof(uint64_t), NULL), AP_OK);
    EXPECT_NOT_NULL(q);
    EXPECT_EQ((uintptr_t)q % _Alignof(ap_spsc), 0);
    uint64_t x = 42, y = 0;
    EXPECT_EQ(ap_spsc_try_push(q, &x), AP_OK);
    EXPECT_EQ(ap_spsc_try_pop(q, &y), AP_OK);
    EXPECT_EQ(y, 42);
    ap_spsc_destroy(q); /* LeakSanitizer checks it was freed */
    ap_spsc_destroy(NULL);
}

static void check_holds_exactly(ap_spsc *q, size_t cap)
{
    EXPECT_EQ(ap_spsc_capacity(q), cap);
    uint32_t v = 0;
    for (size_t i = 0; i < cap; i++, v++)
        EXPECT_EQ(ap_spsc_try_push(q, &v), AP_OK, "capacity %zu refused element %zu", cap, i);
    EXPECT_EQ(ap_spsc_len(q), cap);
    EXPECT_EQ(ap_spsc_try_push(q, &v), AP_FULL, "capacity %zu took %zu", cap, cap + 1);
    EXPECT_EQ(ap_spsc_len(q), cap);
}

Test(spsc, capacity_is_honoured_exactly)
{
    const size_t caps[] = {1, 2, 3, 5, 6, 7, 9, 33, 63, 65, 100};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        ap_spsc *q;
        EXPECT_EQ(ap_spsc_create(&q, caps[i], U32, NULL), AP_OK);
        check_holds_exactly(q, caps[i]);
        ap_spsc_destroy(q);
        unsigned char *buf = malloc(AP_SPSC_BYTES(caps[i], U32));
        ap_spsc r;
        EXPECT_EQ(ap_spsc_init(&r, buf, AP_SPSC_BYTES(caps[i], U32), caps[i], U32), AP_OK);
        check_holds_exactly(&r, caps[i]);
        ap_spsc_fini(&r);
        free(buf);
    }
}

/* ---- capacity sweep ---- */

static size_t sweep_starts(size_t cap, size_t *out)
{
    size_t n = 0;
    out[n++] = 0;
    out[n++] = SIZE_MAX;                 /* the last position */
    out[n++] = SIZE_MAX - 1;
    out[n++] = SIZE_MAX - cap;
    out[n++] = SIZE_MAX - cap / 2;       /* wraps mid-lap */
    out[n++] = (SIZE_MAX >> 1) - cap / 2; /* crosses the old 2^63 limit */
    out[n++] = 12345;
    return n;
}

static void fill_drain_laps(size_t cap, size_t start)
{
    ap_spsc q;
    EXPECT_EQ(ap__spsc_init_at(&q, big_buf, sizeof big_buf, cap, U32, start), AP_OK);
    uint32_t in = 1, out = 1;
    for (int lap = 0; lap < 3; lap++) {
        for (size_t i = 0; i < cap; i++) {
            EXPECT_EQ(ap_spsc_len(&q), i);
            EXPECT_EQ(ap_spsc_try_push(&q, &in), AP_OK, "cap %zu start %zx lap %d", cap, start, lap);
            in++;
        }
        EXPECT_EQ(ap_spsc_len(&q), cap);
        uint32_t extra = 0xdeadbeef;
        EXPECT_EQ(ap_spsc_try_push(&q, &extra), AP_FULL, "cap %zu start %zx: over-full", cap, start);
        EXPECT_EQ(extra, 0xdeadbeef);
        EXPECT_EQ(ap_spsc_len(&q), cap);
        for (size_t i = 0; i < cap; i++) {
            uint32_t v = 0;
            EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
            EXPECT_EQ(v, out, "cap %zu start %zx: popped %u, expected %u", cap, start, v, out);
            out++;
            EXPECT_EQ(ap_spsc_len(&q), cap - i - 1);
        }
        uint32_t sentinel = 0xabababab;
        EXPECT_EQ(ap_spsc_try_pop(&q, &sentinel), AP_EMPTY);
        EXPECT_EQ(sentinel, 0xabababab, "out written on AP_EMPTY");
        /* half lap: shift the start index for the next lap */
        for (size_t i = 0; i < (cap + 1) / 2; i++) {
            EXPECT_EQ(ap_spsc_try_push(&q, &in), AP_OK);
            in++;
            uint32_t v;
            EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
            EXPECT_EQ(v, out);
            out++;
        }
    }
    size_t tail = atomic_load(&q.tail);
    if (POS(start) > POS(SIZE_MAX) - cap)
        EXPECT_LT(tail, POS(start), "cap %zu start %zx: the positions never wrapped", cap, start);
    EXPECT_EQ(POS(tail - POS(start)), in - 1);
}

Test(spsc, capacity_sweep_fill_drain_wrap)
{
    for (size_t cap = 1; cap <= 64; cap++) {
        size_t starts[8], n = sweep_starts(cap, starts);
        for (size_t s = 0; s < n; s++)
            fill_drain_laps(cap, starts[s]);
    }
}

/* A random mix of single and batch operations against a model FIFO. */
static void model_run(size_t cap, size_t start, uint64_t seed)
{
    ap_spsc q;
    EXPECT_EQ(ap__spsc_init_at(&q, big_buf, sizeof big_buf, cap, U32, start), AP_OK);
    uint32_t in = 0, out = 0; /* model: the FIFO holds [out, in) */
    uint32_t batch[80], got[80];
    size_t steps = 40 * cap + 200, phase = 2 * cap + 3;
    for (size_t step = 0; step < steps; step++) {
        uint64_t r = rng_next(&seed);
        bool push_heavy = (step / phase) % 2 == 0;
        bool push = (r % 4) != 0 ? push_heavy : !push_heavy;
        bool batched = (r >> 8) % 3 == 0;
        size_t len = in - out;
        size_t done = 999;
        if (push && !batched) {
            ap_status st = ap_spsc_try_push(&q, &in);
            EXPECT_EQ(st, len == cap ? AP_FULL : AP_OK, "cap %zu step %zu", cap, step);
            if (st == AP_OK)
                in++;
        } else if (push) {
            size_t n = (r >> 16) % (cap + 3), room = cap - len;
            for (size_t k = 0; k < n; k++)
                batch[k] = in + (uint32_t)k;
            ap_status st = ap_spsc_try_push_n(&q, batch, n, &done);
            size_t want = n < room ? n : room;
            EXPECT_EQ(done, want, "cap %zu step %zu: push_n(%zu) with room %zu did %zu",
                      cap, step, n, room, done);
            EXPECT_EQ(st, n == 0 || want > 0 ? AP_OK : AP_FULL);
            in += (uint32_t)done;
        } else if (!batched) {
            uint32_t v = 0xffffffffu;
            ap_status st = ap_spsc_try_pop(&q, &v);
            EXPECT_EQ(st, len == 0 ? AP_EMPTY : AP_OK, "cap %zu step %zu", cap, step);
            if (st == AP_OK) {
                EXPECT_EQ(v, out, "cap %zu step %zu: FIFO broken", cap, step);
                out++;
            } else {
                EXPECT_EQ(v, 0xffffffffu);
            }
        } else {
            size_t n = (r >> 16) % (cap + 3);
            memset(got, 0xee, sizeof got);
            ap_status st = ap_spsc_try_pop_n(&q, got, n, &done);
            size_t want = n < len ? n : len;
            EXPECT_EQ(done, want, "cap %zu step %zu: pop_n(%zu) with len %zu did %zu",
                      cap, step, n, len, done);
            EXPECT_EQ(st, n == 0 || want > 0 ? AP_OK : AP_EMPTY);
            for (size_t k = 0; k < done; k++)
                EXPECT_EQ(got[k], out + (uint32_t)k, "cap %zu step %zu: batch FIFO", cap, step);
            for (size_t k = done; k < n; k++)
                EXPECT_EQ(got[k], 0xeeeeeeeeu, "pop_n wrote past *done");
            out += (uint32_t)done;
        }
        EXPECT_EQ(ap_spsc_len(&q), (size_t)(in - out), "cap %zu step %zu: len", cap, step);
    }
    EXPECT_GT(in, 2 * cap, "the run did too little to test anything");
}

Test(spsc, capacity_sweep_random_interleave_against_model)
{
    for (size_t cap = 1; cap <= 64; cap++) {
        model_run(cap, 0, 0x9e3779b97f4a7c15u ^ cap);
        model_run(cap, SIZE_MAX - 3, 0x2545f4914f6cdd1du ^ cap);
    }
}

/* ---- batches ---- */

Test(spsc, push_n_pop_n_partial_and_physical_wrap)
{
    uint32_t buf[8];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 8, U32), AP_OK);
    uint32_t src[12], dst[12];
    for (uint32_t i = 0; i < 12; i++)
        src[i] = 100 + i;
    size_t done = 77;
    EXPECT_EQ(ap_spsc_try_push_n(&q, src, 5, &done), AP_OK);
    EXPECT_EQ(done, 5);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 3, &done), AP_OK);
    EXPECT_EQ(done, 3);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(dst[i], 100u + (uint32_t)i);
    /* positions 5..10 wrap the end of the 8-slot buffer; only 6 fit */
    EXPECT_EQ(ap_spsc_try_push_n(&q, src + 5, 7, &done), AP_OK);
    EXPECT_EQ(done, 6, "push_n took %zu with room 6", done);
    EXPECT_EQ(ap_spsc_len(&q), 8);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src + 11, 1, &done), AP_FULL);
    EXPECT_EQ(done, 0);
    memset(dst, 0, sizeof dst);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 12, &done), AP_OK);
    EXPECT_EQ(done, 8);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(dst[i], 103u + (uint32_t)i, "dst[%d] = %u", i, dst[i]);
    done = 55;
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 4, &done), AP_EMPTY);
    EXPECT_EQ(done, 0);
}

Test(spsc, push_n_pop_n_zero_and_non_pow2_capacity)
{
    uint32_t buf[8];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 5, U32), AP_OK); /* 8 slots, holds 5 */
    uint32_t src[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dst[8];
    size_t done = 9;
    EXPECT_EQ(ap_spsc_try_push_n(&q, src, 0, &done), AP_OK);
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 0, &done), AP_OK);
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src, 8, &done), AP_OK);
    EXPECT_EQ(done, 5, "capacity 5 took a batch of %zu", done);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src, 0, &done), AP_OK, "n = 0 on a full ring");
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src + 5, 3, &done), AP_FULL);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 2, &done), AP_OK);
    EXPECT_EQ(done, 2);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src + 5, 3, &done), AP_OK);
    EXPECT_EQ(done, 2);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 8, &done), AP_OK);
    EXPECT_EQ(done, 5);
    const uint32_t want[] = {3, 4, 5, 6, 7};
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(dst[i], want[i]);
}

/* ---- element sizes ---- */

static void fill_pattern(unsigned char *e, size_t sz, uint32_t k)
{
    for (size_t j = 0; j < sz; j++)
        e[j] = (unsigned char)(k * 31u + j * 7u + sz + 1);
}

Test(spsc, odd_element_sizes_round_trip_byte_exact)
{
    const size_t sizes[] = {1, 3, 17, 100};
    const size_t caps[] = {1, 3, 8};
    enum { CANARY = 16 };
    for (size_t si = 0; si < 4; si++)
        for (size_t ci = 0; ci < 3; ci++) {
            size_t sz = sizes[si], cap = caps[ci];
            /* exactly the documented size: ASan catches any write past it */
            unsigned char *buf = malloc(AP_SPSC_BYTES(cap, sz));
            unsigned char *e = malloc(sz * cap), *o = malloc(sz * cap + CANARY);
            unsigned char *want = malloc(sz);
            ap_spsc q;
            EXPECT_EQ(ap__spsc_init_at(&q, buf, AP_SPSC_BYTES(cap, sz), cap, sz, SIZE_MAX - 1), AP_OK);
            uint32_t in = 0, out = 0;
            for (int lap = 0; lap < 4; lap++) {
                for (size_t k = 0; k < cap; k++) {
                    fill_pattern(e, sz, in++);
                    EXPECT_EQ(ap_spsc_try_push(&q, e), AP_OK);
                }
                for (size_t k = 0; k < cap; k++) {
                    memset(o, 0xcc, sz + CANARY);
                    EXPECT_EQ(ap_spsc_try_pop(&q, o), AP_OK);
                    fill_pattern(want, sz, out++);
                    EXPECT_EQ(memcmp(o, want, sz), 0, "size %zu cap %zu: bytes differ", sz, cap);
                    for (size_t j = sz; j < sz + CANARY; j++)
                        EXPECT_EQ(o[j], 0xcc, "size %zu: pop wrote past the element", sz);
                }
                /* the same through the batch calls */
                for (size_t k = 0; k < cap; k++)
                    fill_pattern(e + k * sz, sz, in + (uint32_t)k);
                size_t done;
                EXPECT_EQ(ap_spsc_try_push_n(&q, e, cap, &done), AP_OK);
                EXPECT_EQ(done, cap);
                in += (uint32_t)cap;
                memset(o, 0xcc, sz * cap + CANARY);
                EXPECT_EQ(ap_spsc_try_pop_n(&q, o, cap, &done), AP_OK);
                EXPECT_EQ(done, cap);
                for (size_t k = 0; k < cap; k++) {
                    fill_pattern(want, sz, out++);
                    EXPECT_EQ(memcmp(o + k * sz, want, sz), 0, "size %zu: batch bytes", sz);
                }
                for (size_t j = sz * cap; j < sz * cap + CANARY; j++)
                    EXPECT_EQ(o[j], 0xcc);
            }
            free(buf);
            free(e);
            free(o);
            free(want);
        }
}

/* ---- close ---- */

Test(spsc, close_rejects_pushes_and_drains)
{
    uint64_t buf[8];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, sizeof(uint64_t)), AP_OK);
    for (uint64_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_spsc_try_push(&q, &i), AP_OK);
    EXPECT_NOT(ap_spsc_is_closed(&q));
    ap_spsc_close(&q);
    EXPECT(ap_spsc_is_closed(&q));
    EXPECT_EQ(ap_spsc_len(&q), 3, "len must ignore the closed flag");
    uint64_t x = 0x1122334455667788u;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_CLOSED);
    EXPECT_EQ(x, 0x1122334455667788u, "the caller's element was touched");
    uint64_t xs[2] = {5, 6};
    size_t done = 9;
    EXPECT_EQ(ap_spsc_try_push_n(&q, xs, 2, &done), AP_CLOSED);
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_spsc_len(&q), 3);
    ap_spsc_close(&q); /* idempotent */
    EXPECT(ap_spsc_is_closed(&q));
    uint64_t v = 0;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 1);
    uint64_t two[4];
    EXPECT_EQ(ap_spsc_try_pop_n(&q, two, 4, &done), AP_OK);
    EXPECT_EQ(done, 2);
    EXPECT_EQ(two[0], 2);
    EXPECT_EQ(two[1], 3);
    v = 99;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_CLOSED);
    EXPECT_EQ(v, 99);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_CLOSED, "AP_CLOSED is sticky");
    EXPECT_EQ(ap_spsc_try_pop_n(&q, two, 4, &done), AP_CLOSED);
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_spsc_len(&q), 0);
}

Test(spsc, close_empty_and_full)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 2, U32), AP_OK);
    ap_spsc_close(&q);
    uint32_t v = 7;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_CLOSED, "closed and empty is AP_CLOSED, not AP_EMPTY");
    EXPECT_EQ(v, 7);

    EXPECT_EQ(ap__spsc_init_at(&q, buf, sizeof buf, 2, U32, SIZE_MAX), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &v), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &v), AP_OK);
    ap_spsc_close(&q);
    EXPECT_EQ(ap_spsc_try_push(&q, &v), AP_CLOSED, "closed and full is AP_CLOSED, not AP_FULL");
    EXPECT_EQ(ap_spsc_len(&q), 2);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_CLOSED);
}

Test(spsc, close_wakes_every_pop_future)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t[2] = {{0}, {0}};
    uint32_t out[2] = {111, 222};
    ap_spsc_pop_fut f[2];
    for (int i = 0; i < 2; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_spsc_pop_fut_init(&f[i], &q, &out[i]);
        EXPECT_EQ(ap_spsc_pop_poll(&f[i], &cx), AP_PENDING);
    }
    ap_spsc_close(&q);
    for (int i = 0; i < 2; i++) {
        EXPECT_GE(calls(&t[i]), 1, "close did not wake pop future %d", i);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_spsc_pop_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(fut_status(f[i]), AP_CLOSED);
    }
    EXPECT_EQ(out[0], 111);
    EXPECT_EQ(out[1], 222);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
}

Test(spsc, close_wakes_every_push_future)
{
    uint32_t buf[2];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 2, U32), AP_OK);
    uint32_t a = 1, b = 2, pend[2] = {30, 40};
    EXPECT_EQ(ap_spsc_try_push(&q, &a), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &b), AP_OK);
    tw t[2] = {{0}, {0}};
    ap_spsc_push_fut f[2];
    for (int i = 0; i < 2; i++) {
        ap_cx cx = cx_of(&t[i]);
        ap_spsc_push_fut_init(&f[i], &q, &pend[i]);
        EXPECT_EQ(ap_spsc_push_poll(&f[i], &cx), AP_PENDING);
    }
    ap_spsc_close(&q);
    for (int i = 0; i < 2; i++) {
        EXPECT_GE(calls(&t[i]), 1, "close did not wake push future %d", i);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_spsc_push_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(fut_status(f[i]), AP_CLOSED);
    }
    uint32_t v;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_CLOSED, "a push future's element got in after close");
}

Test(spsc, futures_on_a_closed_ring)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    uint32_t x = 5;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    ap_spsc_close(&q);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_spsc_push_fut pf;
    uint32_t y = 6;
    ap_spsc_push_fut_init(&pf, &q, &y);
    EXPECT_EQ(ap_spsc_push_poll(&pf, &cx), AP_READY);
    EXPECT_EQ(fut_status(pf), AP_CLOSED);
    uint32_t out = 0;
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_READY, "a closed ring still drains");
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 5);
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_CLOSED);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(ap_spsc_pop_wait(&q, &out, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(ap_spsc_push_wait(&q, &y, AP_DEADLINE_NONE), AP_CLOSED);
}

/* ---- the future contract ---- */

Test(spsc, pop_future_pending_then_woken_by_push)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0;
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_PENDING, "a spurious re-poll");
    EXPECT_EQ(fut_status(f), AP_NOT_READY, "pending (issue #11: was AP_AGAIN)");
    EXPECT_EQ(calls(&t), 0, "woken with nothing to pop");
    EXPECT_EQ(atomic_load(&q.not_empty.count), 1, "re-poll registered twice");
    uint32_t x = 4242;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_GE(calls(&t), 1, "push did not wake the pending pop");
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 4242);
    EXPECT_EQ(ap_spsc_len(&q), 0);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
}

Test(spsc, pop_future_ready_at_once_never_wakes)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    uint32_t x = 9, out = 0;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_READY);
    EXPECT_EQ(out, 9);
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&t), 0, "a completed future was woken");
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
}

Test(spsc, push_future_on_full_woken_by_pop)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 3, U32), AP_OK);
    for (uint32_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_spsc_try_push(&q, &i), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t x = 4;
    ap_spsc_push_fut f;
    ap_spsc_push_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_spsc_push_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(calls(&t), 0);
    uint32_t v;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_GE(calls(&t), 1, "pop did not wake the pending push");
    EXPECT_EQ(ap_spsc_push_poll(&f, &cx), AP_READY);
    EXPECT_EQ(fut_status(f), AP_OK);
    for (uint32_t i = 2; i <= 4; i++) {
        EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, i);
    }
}

Test(spsc, batches_wake_futures_too)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0, src[4] = {1, 2, 3, 4}, dst[4];
    size_t done;
    ap_spsc_pop_fut pf;
    ap_spsc_pop_fut_init(&pf, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&pf, &cx), AP_PENDING);
    EXPECT_EQ(ap_spsc_try_push_n(&q, src, 4, &done), AP_OK);
    EXPECT_GE(calls(&t), 1, "push_n did not wake the pending pop");
    tw u = {0};
    ap_cx cu = cx_of(&u);
    uint32_t x = 5;
    ap_spsc_push_fut f;
    ap_spsc_push_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_spsc_push_poll(&f, &cu), AP_PENDING);
    EXPECT_EQ(ap_spsc_try_pop_n(&q, dst, 2, &done), AP_OK);
    EXPECT_GE(calls(&u), 1, "pop_n did not wake the pending push");
    EXPECT_EQ(ap_spsc_push_poll(&f, &cu), AP_READY);
    EXPECT_EQ(ap_spsc_pop_poll(&pf, &cx), AP_READY);
    EXPECT_EQ(out, 3);
}

Test(spsc, cancel_is_idempotent_and_no_wake_after_it)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0;
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_PENDING);
    ap_spsc_pop_cancel(&f);
    ap_spsc_pop_cancel(&f);
    EXPECT_EQ(fut_status(f), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty));
    uint32_t x = 77;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&t), 0, "a cancelled waiter was woken");
    EXPECT_EQ(out, 0, "a cancelled pop took the element");
    uint32_t v = 0;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 77);
    /* the push side too */
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    uint32_t y = 88;
    ap_spsc_push_fut pf;
    ap_spsc_push_fut_init(&pf, &q, &y);
    EXPECT_EQ(ap_spsc_push_poll(&pf, &cx), AP_PENDING);
    ap_spsc_push_cancel(&pf);
    ap_spsc_push_cancel(&pf);
    EXPECT_EQ(fut_status(pf), AP_CANCELED);
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(ap_spsc_len(&q), 3, "a cancelled push put its element in");
}

Test(spsc, cancel_after_completion_changes_nothing)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t x = 3, out = 0;
    ap_spsc_push_fut pf;
    ap_spsc_push_fut_init(&pf, &q, &x);
    EXPECT_EQ(ap_spsc_push_poll(&pf, &cx), AP_READY);
    ap_spsc_push_cancel(&pf);
    ap_spsc_push_cancel(&pf);
    EXPECT_EQ(fut_status(pf), AP_OK, "cancel after completion rewrote the result");
    EXPECT_EQ(ap_spsc_len(&q), 1);
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_READY);
    ap_spsc_pop_cancel(&f);
    ap_spsc_pop_cancel(&f);
    EXPECT_EQ(fut_status(f), AP_OK);
    EXPECT_EQ(out, 3);
    EXPECT_EQ(ap_spsc_len(&q), 0);
}

Test(spsc, woken_then_cancelled_pop_loses_no_item)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    uint32_t out = 0;
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_PENDING);
    uint32_t x = 31;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_GE(calls(&t), 1);
    ap_spsc_pop_cancel(&f);
    EXPECT_EQ(fut_status(f), AP_CANCELED);
    EXPECT_EQ(out, 0);
    EXPECT_EQ(ap_spsc_len(&q), 1, "the element went with the cancelled pop");
    uint32_t v = 0;
    EXPECT_EQ(ap_spsc_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(v, 31);
}

Test(spsc, repoll_with_new_waker_replaces_old)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw a = {0}, b = {0};
    ap_cx ca = cx_of(&a), cb = cx_of(&b);
    uint32_t out = 0;
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &out);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &ca), AP_PENDING);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cb), AP_PENDING);
    uint32_t x = 1;
    EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
    EXPECT_EQ(calls(&a), 0, "the replaced waker was called");
    EXPECT_GE(calls(&b), 1);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cb), AP_READY);
}

Test(spsc, wait_times_out_and_leaves_nothing_behind, .timeout = TEST_TIMEOUT_S)
{
    uint32_t buf[2];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 1, U32), AP_OK);
    uint32_t out = 5;
    EXPECT_EQ(ap_spsc_pop_wait(&q, &out, 0), AP_TIMEDOUT);
    uint64_t deadline = ap_now_ns() + 5 * AP_NS_PER_MS;
    EXPECT_EQ(ap_spsc_pop_wait(&q, &out, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline);
    EXPECT_EQ(out, 5);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty), "a timed-out wait stayed registered");
    uint32_t x = 1, y = 2;
    EXPECT_EQ(ap_spsc_push_wait(&q, &x, 0), AP_OK);
    EXPECT_EQ(ap_spsc_push_wait(&q, &y, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_full));
    EXPECT_EQ(ap_spsc_len(&q), 1);
    EXPECT_EQ(ap_spsc_pop_wait(&q, &out, 0), AP_OK);
    EXPECT_EQ(out, 1);
}

/* ---- across threads ---- */

static ap_spsc xq;
static uint32_t xq_buf[8];
/* Criterion's asserts belong to the test's own thread: helpers record
 * what they saw here and the test checks it after joining. */
static ap_status helper_status;
static int helper_errors;

static void *push_later(void *arg)
{
    ms_sleep(5);
    helper_status = ap_spsc_try_push(&xq, arg);
    return NULL;
}

static void *pop_later(void *arg)
{
    ms_sleep(5);
    helper_status = ap_spsc_try_pop(&xq, arg);
    return NULL;
}

static void *close_later(void *arg)
{
    (void)arg;
    ms_sleep(5);
    ap_spsc_close(&xq);
    return NULL;
}

Test(spsc, pop_wait_woken_by_push_from_another_thread, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap_spsc_init(&xq, xq_buf, sizeof xq_buf, 4, U32), AP_OK);
    uint32_t v = 0xfeed, out = 0;
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, push_later, &v), 0);
    EXPECT_EQ(ap_spsc_pop_wait(&xq, &out, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(out, 0xfeed);
    pthread_join(th, NULL);
    EXPECT_EQ(helper_status, AP_OK);
}

Test(spsc, push_wait_woken_by_pop_from_another_thread, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap_spsc_init(&xq, xq_buf, sizeof xq_buf, 1, U32), AP_OK);
    uint32_t a = 1, b = 2, got = 0;
    EXPECT_EQ(ap_spsc_try_push(&xq, &a), AP_OK);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, pop_later, &got), 0);
    EXPECT_EQ(ap_spsc_push_wait(&xq, &b, AP_DEADLINE_NONE), AP_OK);
    pthread_join(th, NULL);
    EXPECT_EQ(helper_status, AP_OK);
    EXPECT_EQ(got, 1);
    uint32_t v;
    EXPECT_EQ(ap_spsc_try_pop(&xq, &v), AP_OK);
    EXPECT_EQ(v, 2);
}

Test(spsc, pop_wait_woken_by_close_from_another_thread, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap_spsc_init(&xq, xq_buf, sizeof xq_buf, 4, U32), AP_OK);
    uint32_t out = 3;
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, close_later, NULL), 0);
    EXPECT_EQ(ap_spsc_pop_wait(&xq, &out, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(out, 3);
    pthread_join(th, NULL);
}

enum { XN = 30000 };

static void *producer_1p1c(void *arg)
{
    (void)arg;
    uint32_t next = 0, batch[16];
    uint64_t seed = 0x1234567;
    while (next < XN) {
        uint64_t r = rng_next(&seed);
        if (r % 3 == 0) {
            if (ap_spsc_push_wait(&xq, &next, AP_DEADLINE_NONE) != AP_OK)
                helper_errors++;
            next++;
        } else {
            size_t n = 1 + (r >> 8) % 16, done;
            if (n > XN - next)
                n = XN - next;
            for (size_t k = 0; k < n; k++)
                batch[k] = next + (uint32_t)k;
            ap_status st = ap_spsc_try_push_n(&xq, batch, n, &done);
            if (!(st == AP_OK || st == AP_FULL) || (st == AP_OK) != (done > 0))
                helper_errors++;
            next += (uint32_t)done;
        }
    }
    ap_spsc_close(&xq);
    return NULL;
}

Test(spsc, one_producer_one_consumer_fifo_across_threads, .timeout = TEST_TIMEOUT_S)
{
    EXPECT_EQ(ap__spsc_init_at(&xq, xq_buf, sizeof xq_buf, 7, U32, SIZE_MAX - 1000), AP_OK);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, producer_1p1c, NULL), 0);
    uint32_t expect = 0, got[16];
    uint64_t seed = 0x7654321;
    for (;;) {
        if (rng_next(&seed) % 2) {
            uint32_t v;
            ap_status st = ap_spsc_pop_wait(&xq, &v, AP_DEADLINE_NONE);
            if (st == AP_CLOSED)
                break;
            EXPECT_EQ(st, AP_OK);
            EXPECT_EQ(v, expect, "FIFO broken across threads: %u, expected %u", v, expect);
            expect++;
        } else {
            size_t done;
            ap_status st = ap_spsc_try_pop_n(&xq, got, 16, &done);
            if (st == AP_CLOSED)
                break;
            for (size_t k = 0; k < done; k++, expect++)
                EXPECT_EQ(got[k], expect, "batch FIFO broken across threads");
        }
    }
    pthread_join(th, NULL);
    EXPECT_EQ(helper_errors, 0, "the producer saw a wrong status");
    EXPECT_EQ(expect, XN, "items lost: got %u of %u", expect, XN);
}

/* ---- preconditions trip AP_ASSERT ---- */

Test(spsc, try_push_after_fini_asserts, .signal = SIGABRT)
{
    uint32_t buf[4], x = 1;
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    ap_spsc_fini(&q);
    ap_status st = ap_spsc_try_push(&q, &x);
    cr_log_error("try_push after fini returned %d", (int)st);
}

Test(spsc, try_pop_after_fini_asserts, .signal = SIGABRT)
{
    uint32_t buf[4], x = 1;
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    ap_spsc_fini(&q);
    ap_status st = ap_spsc_try_pop(&q, &x);
    cr_log_error("try_pop after fini returned %d", (int)st);
}

/* #11: finalizing with a parked future is detected in every build (it was
 * checked only under AP_DEBUG, so the future's node dangled silently). */
Test(spsc, fini_with_a_parked_future_asserts, .signal = SIGABRT)
{
    uint32_t buf[4], x = 0;
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_spsc_pop_fut f;
    ap_spsc_pop_fut_init(&f, &q, &x);
    EXPECT_EQ(ap_spsc_pop_poll(&f, &cx), AP_PENDING);
    ap_spsc_fini(&q);
    cr_log_error("fini with a parked pop future returned");
}

Test(spsc, close_after_fini_asserts, .signal = SIGABRT)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    ap_spsc_fini(&q);
    ap_spsc_close(&q);
}

Test(spsc, try_push_n_without_done_asserts, .signal = SIGABRT)
{
    uint32_t buf[4], x = 1;
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    ap_status st = ap_spsc_try_push_n(&q, &x, 1, NULL);
    cr_log_error("returned %d", (int)st);
}

Test(spsc, destroy_of_an_init_ring_asserts, .signal = SIGABRT)
{
    uint32_t buf[4];
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, buf, sizeof buf, 4, U32), AP_OK);
    ap_spsc_destroy(&q);
}

Test(spsc, create_without_out_asserts, .signal = SIGABRT)
{
    ap_status st = ap_spsc_create(NULL, 4, 4, NULL);
    cr_log_error("returned %d", (int)st);
}

/* Caller memory comes with its size (issue #11): a NULL buffer (it tripped
 * AP_ASSERT), a buffer one byte short, or bad configuration is AP_INVAL,
 * and neither the ring's bytes nor the buffer's change. Elements are
 * memcpy'd, so no alignment is needed (AP_SPSC_ALIGN is 1): an odd
 * address works. */
Test(spsc, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { CAP = 5, ES = 4 }; /* 8 slots */
    static unsigned char b[AP_SPSC_BYTES(CAP, ES) + 16];
    _Static_assert(AP_SPSC_BYTES(CAP, ES) == 32 && AP_SPSC_ALIGN == 1, "constant expressions");
    struct { void *buf; size_t bytes, cap, es; const char *what; } cases[] = {
        {NULL, sizeof b, CAP, ES, "NULL buffer"},
        {b, AP_SPSC_BYTES(CAP, ES) - 1, CAP, ES, "one byte short"},
        {b + 1, AP_SPSC_BYTES(CAP, ES) - 1, CAP, ES, "odd address, one byte short"},
        {b, 0, CAP, ES, "zero bytes"},
        {b, sizeof b, 0, ES, "capacity 0"},
        {b, sizeof b, CAP, 0, "elem_size 0"},
        {b, SIZE_MAX, SIZE_MAX / 16, 64, "bytes overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_spsc q;
        static unsigned char q_before[sizeof(ap_spsc)], b_before[sizeof b];
        memset(&q, 0x5A, sizeof q);
        memset(b, 0xC3, sizeof b);
        memcpy(q_before, &q, sizeof q);
        memcpy(b_before, b, sizeof b);
        EXPECT_EQ(ap_spsc_init(&q, cases[i].buf, cases[i].bytes, cases[i].cap, cases[i].es), AP_INVAL,
                  "%s", cases[i].what);
        EXPECT(memcmp(q_before, &q, sizeof q) == 0, "%s: the ring changed", cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof b) == 0, "%s: the buffer changed", cases[i].what);
    }
    /* exactly enough at an odd address works; the excess is not touched */
    ap_spsc q;
    memset(b, 0xC3, sizeof b);
    EXPECT_EQ(ap_spsc_init(&q, b + 1, AP_SPSC_BYTES(CAP, ES), CAP, ES), AP_OK);
    for (uint32_t k = 0; k < 3 * CAP; k++) {
        uint32_t x = k, y = 0;
        EXPECT_EQ(ap_spsc_try_push(&q, &x), AP_OK);
        EXPECT_EQ(ap_spsc_try_pop(&q, &y), AP_OK);
        EXPECT_EQ(y, k);
    }
    EXPECT_EQ(b[0], 0xC3);
    for (size_t i = 1 + AP_SPSC_BYTES(CAP, ES); i < sizeof b; i++)
        EXPECT_EQ(b[i], 0xC3, "byte %zu past the buffer written", i);
}

/* Regression (issue #11): an 8-byte buffer for capacity 64 was AP_OK and
 * the pushes ran past it. Now the size comes along and it is AP_INVAL. */
Test(spsc, small_buffer_for_capacity_is_inval_not_an_overflow)
{
    unsigned char *small = malloc(8);
    EXPECT(small != NULL);
    ap_spsc q;
    EXPECT_EQ(ap_spsc_init(&q, small, 8, 64, sizeof(uint64_t)), AP_INVAL);
    free(small);
}

/* DESIGN.md: "Programmer errors (a NULL object, use after fini) trip
 * AP_ASSERT"; AP_INVAL is for bad configuration data. */
Test(spsc, init_of_null_ring_asserts, .signal = SIGABRT)
{
    uint32_t buf[4];
    ap_status st = ap_spsc_init(NULL, buf, sizeof buf, 4, U32);
    cr_log_error("ap_spsc_init(NULL, ...) returned %d instead of asserting", (int)st);
}
