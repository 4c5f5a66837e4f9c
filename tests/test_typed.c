/*
 * tests/test_typed.c -- every *_DEFINE generator, instantiated with a scalar
 * and with a struct; every generated function is called
 */
#include "asyncpat/mpmc.h"
#include "asyncpat/spsc.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "test_util.h"
#define EXPECT_NOT(c, ...) ck_(__FILE__, __LINE__, "!(" #c ")", CK_TRUE, (uintmax_t)!(c), 0, "" __VA_ARGS__)
#define EXPECT_NULL(p, ...) EXPECT((p) == NULL, __VA_ARGS__)

struct rec {
    uint64_t id;
    char tag[5]; /* odd sizes and padding inside the element */
    int16_t delta;
};

AP_SPSC_DEFINE(int_ring, int)
AP_SPSC_DEFINE(rec_ring, struct rec)
AP_MPMC_DEFINE(int_q, int)
AP_MPMC_DEFINE(rec_q, struct rec)

/* the generated signatures, checked at compile time */
#define CHECK_SIG(fn, type) _Static_assert(_Generic(&fn, type: 1, default: 0), #fn " has the wrong type")
CHECK_SIG(int_ring_init, ap_status (*)(int_ring *, void *, size_t));
CHECK_SIG(int_ring_try_push, ap_status (*)(int_ring *, const int *));
CHECK_SIG(int_ring_try_pop, ap_status (*)(int_ring *, int *));
CHECK_SIG(int_ring_try_push_n, ap_status (*)(int_ring *, const int *, size_t, size_t *));
CHECK_SIG(int_ring_try_pop_n, ap_status (*)(int_ring *, int *, size_t, size_t *));
CHECK_SIG(int_ring_close, void (*)(int_ring *));
CHECK_SIG(int_ring_len, size_t (*)(int_ring *));
CHECK_SIG(int_ring_fini, void (*)(int_ring *));
CHECK_SIG(int_ring_capacity, size_t (*)(const int_ring *));
CHECK_SIG(int_ring_push_wait, ap_status (*)(int_ring *, const int *, uint64_t));
CHECK_SIG(int_ring_pop_wait, ap_status (*)(int_ring *, int *, uint64_t));
CHECK_SIG(rec_ring_try_push, ap_status (*)(rec_ring *, const struct rec *));
CHECK_SIG(rec_ring_try_pop_n, ap_status (*)(rec_ring *, struct rec *, size_t, size_t *));
CHECK_SIG(int_q_init, ap_status (*)(int_q *, void *, size_t));
CHECK_SIG(int_q_try_push, ap_status (*)(int_q *, const int *));
CHECK_SIG(int_q_try_pop, ap_status (*)(int_q *, int *));
CHECK_SIG(int_q_close, void (*)(int_q *));
CHECK_SIG(int_q_len, size_t (*)(int_q *));
CHECK_SIG(int_q_fini, void (*)(int_q *));
CHECK_SIG(int_q_capacity, size_t (*)(const int_q *));
CHECK_SIG(int_q_push_wait, ap_status (*)(int_q *, const int *, uint64_t));
CHECK_SIG(int_q_pop_wait, ap_status (*)(int_q *, int *, uint64_t));
CHECK_SIG(rec_q_try_pop, ap_status (*)(rec_q *, struct rec *));
#undef CHECK_SIG

static struct rec mkrec(uint64_t i)
{
    struct rec r;
    memset(&r, 0, sizeof r);
    r.id = i * 0x100000001u;
    memcpy(r.tag, "abcde", 5);
    r.tag[i % 5] = (char)('A' + i % 26);
    r.delta = (int16_t)(1000 - (int)i);
    return r;
}

static bool rec_eq(struct rec a, struct rec b)
{
    return a.id == b.id && memcmp(a.tag, b.tag, 5) == 0 && a.delta == b.delta;
}

/* ---- SPSC ---- */

Test(typed, spsc_scalar_every_function)
{
    int buf[AP_SPSC_BYTES(3, sizeof(int)) / sizeof(int)];
    int_ring r;
    EXPECT_EQ(int_ring_init(&r, buf, 0), AP_INVAL);
    EXPECT_EQ(int_ring_init(&r, buf, 3), AP_OK);
    EXPECT_EQ(r.q.elem_size, sizeof(int));
    EXPECT_EQ(int_ring_capacity(&r), 3);
    for (int i = 1; i <= 3; i++) {
        EXPECT_EQ(int_ring_try_push(&r, &i), AP_OK);
        EXPECT_EQ(int_ring_len(&r), (size_t)i);
    }
    int x = 4;
    EXPECT_EQ(int_ring_try_push(&r, &x), AP_FULL);
    int v = -1;
    EXPECT_EQ(int_ring_try_pop(&r, &v), AP_OK);
    EXPECT_EQ(v, 1);
    int many[4] = {-5, -6, -7, -8}, out[4] = {0, 0, 0, 0};
    size_t done = 9;
    EXPECT_EQ(int_ring_try_push_n(&r, many, 4, &done), AP_OK);
    EXPECT_EQ(done, 1);
    EXPECT_EQ(int_ring_try_pop_n(&r, out, 4, &done), AP_OK);
    EXPECT_EQ(done, 3);
    EXPECT_EQ(out[0], 2);
    EXPECT_EQ(out[1], 3);
    EXPECT_EQ(out[2], -5);
    EXPECT_EQ(out[3], 0);
    EXPECT_EQ(int_ring_try_pop(&r, &v), AP_EMPTY);
    EXPECT_EQ(int_ring_try_pop_n(&r, out, 2, &done), AP_EMPTY);
    /* exact batches: n elements asked, n moved */
    EXPECT_EQ(int_ring_try_push_n(&r, many, 2, &done), AP_OK);
    EXPECT_EQ(done, 2);
    EXPECT_EQ(int_ring_try_pop_n(&r, out, 2, &done), AP_OK);
    EXPECT_EQ(done, 2);
    EXPECT_EQ(out[0], -5);
    EXPECT_EQ(out[1], -6);
    EXPECT_EQ(int_ring_pop_wait(&r, &v, 0), AP_TIMEDOUT);
    x = 40;
    EXPECT_EQ(int_ring_push_wait(&r, &x, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(int_ring_pop_wait(&r, &v, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(v, 40);
    EXPECT_EQ(int_ring_try_push(&r, &x), AP_OK);
    int_ring_close(&r);
    EXPECT_EQ(int_ring_try_push(&r, &x), AP_CLOSED);
    EXPECT_EQ(int_ring_try_push_n(&r, many, 2, &done), AP_CLOSED);
    EXPECT_EQ(int_ring_push_wait(&r, &x, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(int_ring_len(&r), 1);
    EXPECT_EQ(int_ring_pop_wait(&r, &v, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(int_ring_pop_wait(&r, &v, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(int_ring_try_pop(&r, &v), AP_CLOSED);
    int_ring_fini(&r);
    EXPECT_NULL(r.q.buf, "fini did not end the ring's life");
}

Test(typed, spsc_struct_every_function)
{
    struct rec buf[AP_SPSC_BYTES(5, sizeof(struct rec)) / sizeof(struct rec)];
    rec_ring r;
    EXPECT_EQ(rec_ring_init(&r, buf, 5), AP_OK);
    EXPECT_EQ(r.q.elem_size, sizeof(struct rec));
    EXPECT_EQ(rec_ring_capacity(&r), 5);
    uint64_t in = 0, out_i = 0;
    for (int lap = 0; lap < 4; lap++) {
        for (int i = 0; i < 3; i++) {
            struct rec e = mkrec(in++);
            EXPECT_EQ(rec_ring_try_push(&r, &e), AP_OK);
        }
        struct rec batch[4] = {mkrec(in), mkrec(in + 1), mkrec(in + 2), mkrec(in + 3)};
        size_t done;
        EXPECT_EQ(rec_ring_try_push_n(&r, batch, 4, &done), AP_OK);
        EXPECT_EQ(done, 2, "capacity 5 with 3 held took %zu", done);
        in += done;
        EXPECT_EQ(rec_ring_len(&r), 5);
        struct rec got;
        EXPECT_EQ(rec_ring_try_pop(&r, &got), AP_OK);
        EXPECT(rec_eq(got, mkrec(out_i++)));
        struct rec outs[8];
        EXPECT_EQ(rec_ring_try_pop_n(&r, outs, 2, &done), AP_OK);
        EXPECT_EQ(done, 2);
        EXPECT_EQ(rec_ring_try_pop_n(&r, outs + 2, 8, &done), AP_OK);
        EXPECT_EQ(done, 2);
        done = 4;
        for (size_t k = 0; k < done; k++)
            EXPECT(rec_eq(outs[k], mkrec(out_i++)), "lap %d element %zu", lap, k);
    }
    struct rec e = mkrec(99), got;
    EXPECT_EQ(rec_ring_push_wait(&r, &e, 0), AP_OK);
    EXPECT_EQ(rec_ring_pop_wait(&r, &got, 0), AP_OK);
    EXPECT(rec_eq(got, e));
    rec_ring_close(&r);
    EXPECT_EQ(rec_ring_try_push(&r, &e), AP_CLOSED);
    EXPECT_EQ(rec_ring_pop_wait(&r, &got, AP_DEADLINE_NONE), AP_CLOSED);
    size_t done = 7;
    EXPECT_EQ(rec_ring_try_pop_n(&r, &got, 1, &done), AP_CLOSED);
    EXPECT_EQ(done, 0);
    EXPECT_EQ(rec_ring_len(&r), 0);
    rec_ring_fini(&r);
}

/* typed and generic calls on the same ring agree */
Test(typed, spsc_typed_and_generic_interoperate)
{
    int buf[8];
    int_ring r;
    EXPECT_EQ(int_ring_init(&r, buf, 8), AP_OK);
    int x = 17, v = 0;
    EXPECT_EQ(ap_spsc_try_push(&r.q, &x), AP_OK);
    EXPECT_EQ(int_ring_try_pop(&r, &v), AP_OK);
    EXPECT_EQ(v, 17);
    x = 18;
    EXPECT_EQ(int_ring_try_push(&r, &x), AP_OK);
    EXPECT_EQ(ap_spsc_try_pop(&r.q, &v), AP_OK);
    EXPECT_EQ(v, 18);
}

/* ---- MPMC ---- */

Test(typed, mpmc_scalar_every_function)
{
    size_t buf[AP_MPMC_BYTES(3, sizeof(int)) / sizeof(size_t)];
    int_q q;
    EXPECT_EQ(int_q_init(&q, buf, 0), AP_INVAL);
    EXPECT_EQ(int_q_init(&q, buf, 3), AP_OK);
    EXPECT_EQ(q.q.elem_size, sizeof(int));
    EXPECT_EQ(int_q_capacity(&q), 3);
    for (int i = 1; i <= 3; i++) {
        EXPECT_EQ(int_q_try_push(&q, &i), AP_OK);
        EXPECT_EQ(int_q_len(&q), (size_t)i);
    }
    int x = 4, v = -1;
    EXPECT_EQ(int_q_try_push(&q, &x), AP_FULL);
    EXPECT_EQ(int_q_push_wait(&q, &x, 0), AP_TIMEDOUT);
    for (int i = 1; i <= 3; i++) {
        EXPECT_EQ(int_q_try_pop(&q, &v), AP_OK);
        EXPECT_EQ(v, i);
    }
    EXPECT_EQ(int_q_try_pop(&q, &v), AP_EMPTY);
    EXPECT_EQ(int_q_pop_wait(&q, &v, 0), AP_TIMEDOUT);
    x = 41;
    EXPECT_EQ(int_q_push_wait(&q, &x, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(int_q_pop_wait(&q, &v, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(v, 41);
    EXPECT_EQ(int_q_try_push(&q, &x), AP_OK);
    int_q_close(&q);
    EXPECT_EQ(int_q_try_push(&q, &x), AP_CLOSED);
    EXPECT_EQ(int_q_push_wait(&q, &x, AP_DEADLINE_NONE), AP_CLOSED);
    EXPECT_EQ(int_q_len(&q), 1);
    EXPECT_EQ(int_q_try_pop(&q, &v), AP_OK);
    EXPECT_EQ(int_q_try_pop(&q, &v), AP_CLOSED);
    EXPECT_EQ(int_q_pop_wait(&q, &v, AP_DEADLINE_NONE), AP_CLOSED);
    int_q_fini(&q);
    EXPECT_NULL(q.q.buf, "fini did not end the queue's life");
}

Test(typed, mpmc_struct_every_function)
{
    size_t buf[AP_MPMC_BYTES(5, sizeof(struct rec)) / sizeof(size_t)];
    rec_q q;
    EXPECT_EQ(rec_q_init(&q, buf, 5), AP_OK);
    EXPECT_EQ(q.q.elem_size, sizeof(struct rec));
    EXPECT_EQ(rec_q_capacity(&q), 5);
    uint64_t in = 0, out_i = 0;
    for (int lap = 0; lap < 4; lap++) {
        for (int i = 0; i < 5; i++) {
            struct rec e = mkrec(in++);
            EXPECT_EQ(rec_q_try_push(&q, &e), AP_OK);
        }
        struct rec e = mkrec(1000);
        EXPECT_EQ(rec_q_try_push(&q, &e), AP_FULL);
        EXPECT_EQ(rec_q_len(&q), 5);
        for (int i = 0; i < 5; i++) {
            struct rec got;
            EXPECT_EQ(rec_q_try_pop(&q, &got), AP_OK);
            EXPECT(rec_eq(got, mkrec(out_i++)), "lap %d element %d", lap, i);
        }
    }
    struct rec e = mkrec(7), got;
    EXPECT_EQ(rec_q_push_wait(&q, &e, 0), AP_OK);
    EXPECT_EQ(rec_q_pop_wait(&q, &got, 0), AP_OK);
    EXPECT(rec_eq(got, e));
    rec_q_close(&q);
    EXPECT_EQ(rec_q_try_push(&q, &e), AP_CLOSED);
    EXPECT_EQ(rec_q_try_pop(&q, &got), AP_CLOSED);
    EXPECT_EQ(rec_q_pop_wait(&q, &got, AP_DEADLINE_NONE), AP_CLOSED);
    rec_q_fini(&q);
}

static rec_q shared_q;

static void *typed_pusher(void *arg)
{
    (void)arg;
    struct timespec d = {0, 5 * 1000 * 1000};
    nanosleep(&d, NULL);
    struct rec e = mkrec(321);
    if (rec_q_try_push(&shared_q, &e) != AP_OK)
        return (void *)1;
    return NULL;
}

Test(typed, mpmc_struct_pop_wait_across_threads, .timeout = TEST_TIMEOUT_S)
{
    static size_t buf[AP_MPMC_BYTES(2, sizeof(struct rec)) / sizeof(size_t)];
    EXPECT_EQ(rec_q_init(&shared_q, buf, 2), AP_OK);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, typed_pusher, NULL), 0);
    struct rec got;
    memset(&got, 0, sizeof got);
    EXPECT_EQ(rec_q_pop_wait(&shared_q, &got, AP_DEADLINE_NONE), AP_OK);
    void *rv;
    pthread_join(th, &rv);
    EXPECT_NULL(rv);
    EXPECT(rec_eq(got, mkrec(321)));
}

/* the typed fini really ends the object's life: use after it asserts */
Test(typed, spsc_use_after_typed_fini_asserts, .signal = SIGABRT)
{
    int buf[4], x = 1;
    int_ring r;
    EXPECT_EQ(int_ring_init(&r, buf, 4), AP_OK);
    int_ring_fini(&r);
    ap_status st = int_ring_try_push(&r, &x);
    cr_log_error("try_push after fini returned %d", (int)st);
}

Test(typed, mpmc_use_after_typed_fini_asserts, .signal = SIGABRT)
{
    size_t buf[AP_MPMC_BYTES(4, sizeof(int)) / sizeof(size_t)];
    int x = 1;
    int_q q;
    EXPECT_EQ(int_q_init(&q, buf, 4), AP_OK);
    int_q_fini(&q);
    ap_status st = int_q_try_pop(&q, &x);
    cr_log_error("try_pop after fini returned %d", (int)st);
}
