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
CHECK_SIG(int_ring_init, ap_status (*)(int_ring *, void *, size_t, size_t));
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
CHECK_SIG(int_q_init, ap_status (*)(int_q *, void *, size_t, size_t));
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
    EXPECT_EQ(int_ring_init(&r, buf, sizeof buf, 0), AP_INVAL);
    EXPECT_EQ(int_ring_init(&r, buf, sizeof buf, 3), AP_OK);
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
    EXPECT_EQ(rec_ring_init(&r, buf, sizeof buf, 5), AP_OK);
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
    EXPECT_EQ(int_ring_init(&r, buf, sizeof buf, 8), AP_OK);
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
    EXPECT_EQ(int_q_init(&q, buf, sizeof buf, 0), AP_INVAL);
    EXPECT_EQ(int_q_init(&q, buf, sizeof buf, 3), AP_OK);
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
    EXPECT_EQ(rec_q_init(&q, buf, sizeof buf, 5), AP_OK);
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
    EXPECT_EQ(rec_q_init(&shared_q, buf, sizeof buf, 2), AP_OK);
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
    EXPECT_EQ(int_ring_init(&r, buf, sizeof buf, 4), AP_OK);
    int_ring_fini(&r);
    ap_status st = int_ring_try_push(&r, &x);
    cr_log_error("try_push after fini returned %d", (int)st);
}

Test(typed, mpmc_use_after_typed_fini_asserts, .signal = SIGABRT)
{
    size_t buf[AP_MPMC_BYTES(4, sizeof(int)) / sizeof(size_t)];
    int x = 1;
    int_q q;
    EXPECT_EQ(int_q_init(&q, buf, sizeof buf, 4), AP_OK);
    int_q_fini(&q);
    ap_status st = int_q_try_pop(&q, &x);
    cr_log_error("try_pop after fini returned %d", (int)st);
}

/* ---- PUBSUB, BATCH, CACHE ---- */

#include "asyncpat/batch.h"
#include "asyncpat/cache.h"
#include "asyncpat/pubsub.h"

AP_PUBSUB_DEFINE(int_ps, int)
AP_PUBSUB_DEFINE(rec_ps, struct rec)
AP_BATCH_DEFINE(int_batch, int)
AP_BATCH_DEFINE(rec_batch, struct rec)
AP_CACHE_DEFINE(int_cache, int)
AP_CACHE_DEFINE(rec_cache, struct rec)

#define CHECK_SIG(fn, type) _Static_assert(_Generic(&fn, type: 1, default: 0), #fn " has the wrong type")
CHECK_SIG(int_ps_init, ap_status (*)(int_ps *, void *, size_t, size_t));
CHECK_SIG(int_ps_fini, void (*)(int_ps *));
CHECK_SIG(int_ps_try_publish, ap_status (*)(int_ps *, const int *));
CHECK_SIG(int_ps_close, void (*)(int_ps *));
CHECK_SIG(int_ps_subscribe, void (*)(int_ps *, ap_sub *));
CHECK_SIG(int_ps_try_recv, ap_status (*)(ap_sub *, int *, uint64_t *));
CHECK_SIG(rec_ps_try_publish, ap_status (*)(rec_ps *, const struct rec *));
CHECK_SIG(rec_ps_try_recv, ap_status (*)(ap_sub *, struct rec *, uint64_t *));
CHECK_SIG(int_batch_init, ap_status (*)(int_batch *, int *, size_t, size_t, uint64_t));
CHECK_SIG(int_batch_add, ap_status (*)(int_batch *, const int *, uint64_t, bool *));
CHECK_SIG(int_batch_take, ap_status (*)(int_batch *, int *, uint64_t, size_t *));
CHECK_SIG(int_batch_flush, ap_status (*)(int_batch *, int *, size_t *));
CHECK_SIG(int_batch_deadline, ap_deadline (*)(int_batch *));
CHECK_SIG(int_batch_close, void (*)(int_batch *));
CHECK_SIG(int_batch_fini, void (*)(int_batch *));
CHECK_SIG(rec_batch_add, ap_status (*)(rec_batch *, const struct rec *, uint64_t, bool *));
CHECK_SIG(rec_batch_take, ap_status (*)(rec_batch *, struct rec *, uint64_t, size_t *));
CHECK_SIG(int_cache_init, ap_status (*)(int_cache *, void *, size_t, size_t, size_t));
CHECK_SIG(int_cache_get, ap_status (*)(int_cache *, uint64_t, int *));
CHECK_SIG(int_cache_put, void (*)(int_cache *, uint64_t, const int *, ap_cache_victim *));
CHECK_SIG(int_cache_remove, ap_status (*)(int_cache *, uint64_t, int *));
CHECK_SIG(int_cache_len, size_t (*)(const int_cache *));
CHECK_SIG(int_cache_fini, void (*)(int_cache *));
CHECK_SIG(rec_cache_get, ap_status (*)(rec_cache *, uint64_t, struct rec *));
CHECK_SIG(rec_cache_put, void (*)(rec_cache *, uint64_t, const struct rec *, ap_cache_victim *));
#undef CHECK_SIG

Test(typed, pubsub_scalar_every_function)
{
    uint64_t buf[AP_PUBSUB_BYTES(2, sizeof(int)) / sizeof(uint64_t)];
    int_ps ps;
    EXPECT_EQ(int_ps_init(&ps, buf, sizeof buf, 0), AP_INVAL);
    EXPECT_EQ(int_ps_init(&ps, buf, sizeof buf - 1, 2), AP_INVAL);
    EXPECT_EQ(int_ps_init(&ps, buf, sizeof buf, 2), AP_OK);
    EXPECT_EQ(ps.ps.elem_size, sizeof(int));
    ap_sub a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int_ps_subscribe(&ps, &a);
    int v = -1;
    uint64_t dropped = 99;
    EXPECT_EQ(int_ps_try_recv(&a, &v, &dropped), AP_EMPTY);
    for (int i = 1; i <= 3; i++)
        EXPECT_EQ(int_ps_try_publish(&ps, &i), AP_OK);
    int_ps_subscribe(&ps, &b); /* sees only what comes next */
    /* a is 3 behind with capacity 2: message 1 was overwritten */
    EXPECT_EQ(int_ps_try_recv(&a, &v, &dropped), AP_DROPPED);
    EXPECT_EQ(dropped, 1);
    EXPECT_EQ(v, -1, "out written on AP_DROPPED");
    EXPECT_EQ(int_ps_try_recv(&a, &v, NULL), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(int_ps_try_recv(&a, &v, NULL), AP_OK);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(int_ps_try_recv(&b, &v, NULL), AP_EMPTY);
    int x = 4;
    EXPECT_EQ(int_ps_try_publish(&ps, &x), AP_OK);
    int_ps_close(&ps);
    EXPECT_EQ(int_ps_try_publish(&ps, &x), AP_CLOSED);
    EXPECT_EQ(int_ps_try_recv(&a, &v, NULL), AP_OK);
    EXPECT_EQ(v, 4);
    EXPECT_EQ(int_ps_try_recv(&b, &v, NULL), AP_OK);
    EXPECT_EQ(v, 4);
    EXPECT_EQ(int_ps_try_recv(&a, &v, NULL), AP_CLOSED);
    EXPECT_EQ(int_ps_try_recv(&b, &v, NULL), AP_CLOSED);
    int_ps_fini(&ps);
    EXPECT_NULL(ps.ps.buf, "fini did not end the channel's life");
}

Test(typed, pubsub_struct_every_function)
{
    uint64_t buf[AP_PUBSUB_BYTES(4, sizeof(struct rec)) / sizeof(uint64_t)];
    rec_ps ps;
    EXPECT_EQ(rec_ps_init(&ps, buf, sizeof buf, 4), AP_OK);
    EXPECT_EQ(ps.ps.elem_size, sizeof(struct rec));
    ap_sub s;
    memset(&s, 0, sizeof s);
    rec_ps_subscribe(&ps, &s);
    for (uint64_t lap = 0; lap < 3; lap++) {
        for (uint64_t i = 0; i < 4; i++) {
            struct rec e = mkrec(lap * 4 + i);
            EXPECT_EQ(rec_ps_try_publish(&ps, &e), AP_OK);
        }
        for (uint64_t i = 0; i < 4; i++) {
            struct rec got;
            EXPECT_EQ(rec_ps_try_recv(&s, &got, NULL), AP_OK);
            EXPECT(rec_eq(got, mkrec(lap * 4 + i)), "lap %d message %d", (int)lap, (int)i);
        }
    }
    struct rec got;
    uint64_t dropped = 0;
    EXPECT_EQ(rec_ps_try_recv(&s, &got, &dropped), AP_EMPTY);
    rec_ps_close(&ps);
    EXPECT_EQ(rec_ps_try_recv(&s, &got, &dropped), AP_CLOSED);
    rec_ps_fini(&ps);
}

Test(typed, batch_scalar_every_function)
{
    int buf[3], out[3];
    int_batch b;
    EXPECT_EQ(int_batch_init(&b, buf, sizeof buf, 0, 100), AP_INVAL);
    EXPECT_EQ(int_batch_init(&b, buf, sizeof buf - 1, 3, 100), AP_INVAL);
    EXPECT_EQ(int_batch_init(&b, buf, sizeof buf, 3, 100), AP_OK);
    EXPECT_EQ(b.b.elem_size, sizeof(int));
    EXPECT_EQ(int_batch_deadline(&b), AP_DEADLINE_NONE);
    bool due = true;
    size_t n = 99;
    int x = 10;
    EXPECT_EQ(int_batch_add(&b, &x, 1000, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(int_batch_deadline(&b), 1100);
    EXPECT_EQ(int_batch_take(&b, out, 1099, &n), AP_EMPTY, "taken early");
    EXPECT_EQ(n, 99);
    x = 11;
    EXPECT_EQ(int_batch_add(&b, &x, 1050, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(int_batch_take(&b, out, 1100, &n), AP_OK, "due by age");
    EXPECT_EQ(n, 2);
    EXPECT_EQ(out[0], 10);
    EXPECT_EQ(out[1], 11);
    for (int i = 0; i < 3; i++) {
        x = 20 + i;
        EXPECT_EQ(int_batch_add(&b, &x, 2000, &due), AP_OK);
    }
    EXPECT(due, "a full batch is due");
    EXPECT_EQ(int_batch_deadline(&b), 0);
    x = 23;
    EXPECT_EQ(int_batch_add(&b, &x, 2000, &due), AP_FULL);
    EXPECT_EQ(int_batch_take(&b, out, 2000, &n), AP_OK);
    EXPECT_EQ(n, 3);
    EXPECT_EQ(out[2], 22);
    EXPECT_EQ(int_batch_flush(&b, out, &n), AP_EMPTY);
    x = 30;
    EXPECT_EQ(int_batch_add(&b, &x, 3000, NULL), AP_OK);
    EXPECT_EQ(int_batch_flush(&b, out, &n), AP_OK, "flush takes what is held");
    EXPECT_EQ(n, 1);
    EXPECT_EQ(out[0], 30);
    x = 31;
    EXPECT_EQ(int_batch_add(&b, &x, 4000, NULL), AP_OK);
    int_batch_close(&b);
    EXPECT_EQ(int_batch_add(&b, &x, 4000, NULL), AP_CLOSED);
    EXPECT_EQ(int_batch_deadline(&b), 0, "closed: due at once");
    EXPECT_EQ(int_batch_take(&b, out, 4000, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(out[0], 31);
    EXPECT_EQ(int_batch_take(&b, out, 4000, &n), AP_CLOSED);
    EXPECT_EQ(int_batch_flush(&b, out, &n), AP_CLOSED);
    int_batch_fini(&b);
    EXPECT_NULL(b.b.buf, "fini did not end the batcher's life");
}

Test(typed, batch_struct_every_function)
{
    struct rec buf[2], out[2];
    rec_batch b;
    EXPECT_EQ(rec_batch_init(&b, buf, sizeof buf, 2, 0), AP_OK);
    EXPECT_EQ(b.b.elem_size, sizeof(struct rec));
    EXPECT_EQ(b.b.max_delay, AP_BATCH_DEFAULT_DELAY_NS, "0 means the default delay");
    uint64_t in = 0, out_i = 0;
    size_t n;
    bool due;
    for (int lap = 0; lap < 3; lap++) {
        for (int i = 0; i < 2; i++) {
            struct rec e = mkrec(in++);
            EXPECT_EQ(rec_batch_add(&b, &e, 5000, &due), AP_OK);
        }
        EXPECT(due);
        EXPECT_EQ(rec_batch_deadline(&b), 0);
        EXPECT_EQ(rec_batch_take(&b, out, 5000, &n), AP_OK);
        EXPECT_EQ(n, 2);
        for (size_t k = 0; k < n; k++)
            EXPECT(rec_eq(out[k], mkrec(out_i++)), "lap %d element %zu", lap, k);
    }
    struct rec e = mkrec(77);
    EXPECT_EQ(rec_batch_add(&b, &e, 6000, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(rec_batch_deadline(&b), 6000 + AP_BATCH_DEFAULT_DELAY_NS);
    EXPECT_EQ(rec_batch_flush(&b, out, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT(rec_eq(out[0], e));
    rec_batch_close(&b);
    EXPECT_EQ(rec_batch_add(&b, &e, 7000, NULL), AP_CLOSED);
    EXPECT_EQ(rec_batch_take(&b, out, 7000, &n), AP_CLOSED);
    rec_batch_fini(&b);
}

Test(typed, cache_scalar_every_function)
{
    static _Alignas(AP_CACHELINE) unsigned char buf[AP_CACHE_BYTES(2, 1, sizeof(int))];
    int_cache c;
    EXPECT_EQ(int_cache_init(&c, buf, sizeof buf, 0, 1), AP_INVAL);
    EXPECT_EQ(int_cache_init(&c, buf, sizeof buf, 2, 1), AP_OK);
    EXPECT_EQ(int_cache_len(&c), 0);
    int v = -1, x = 100;
    EXPECT_EQ(int_cache_get(&c, 1, &v), AP_EMPTY);
    EXPECT_EQ(v, -1);
    int_cache_put(&c, 1, &x, NULL);
    x = 200;
    int_cache_put(&c, 2, &x, NULL);
    EXPECT_EQ(int_cache_len(&c), 2);
    EXPECT_EQ(int_cache_get(&c, 1, &v), AP_OK);
    EXPECT_EQ(v, 100);
    /* full: key 1 was visited, so SIEVE evicts key 2 */
    int victim_val = -1;
    ap_cache_victim vic = {.value = &victim_val};
    x = 300;
    int_cache_put(&c, 3, &x, &vic);
    EXPECT(vic.evicted);
    EXPECT_EQ(vic.key, 2);
    EXPECT_EQ(victim_val, 200);
    EXPECT_EQ(int_cache_len(&c), 2);
    x = 301; /* update: no eviction */
    vic.evicted = true;
    int_cache_put(&c, 3, &x, &vic);
    EXPECT_NOT(vic.evicted);
    EXPECT_EQ(int_cache_get(&c, 3, &v), AP_OK);
    EXPECT_EQ(v, 301);
    EXPECT_EQ(int_cache_remove(&c, 3, &v), AP_OK);
    EXPECT_EQ(v, 301);
    v = -1;
    EXPECT_EQ(int_cache_remove(&c, 3, &v), AP_EMPTY);
    EXPECT_EQ(v, -1);
    EXPECT_EQ(int_cache_get(&c, 3, NULL), AP_EMPTY);
    EXPECT_EQ(int_cache_len(&c), 1);
    int_cache_fini(&c);
    EXPECT_NULL(c.c.shards, "fini did not end the cache's life");
}

Test(typed, cache_struct_every_function)
{
    static _Alignas(AP_CACHELINE) unsigned char buf[AP_CACHE_BYTES(8, 2, sizeof(struct rec))];
    rec_cache c;
    EXPECT_EQ(rec_cache_init(&c, buf, sizeof buf, 8, 2), AP_OK);
    for (uint64_t k = 0; k < 4; k++) {
        struct rec e = mkrec(k);
        rec_cache_put(&c, k, &e, NULL);
    }
    EXPECT_EQ(rec_cache_len(&c), 4);
    for (uint64_t k = 0; k < 4; k++) {
        struct rec got;
        EXPECT_EQ(rec_cache_get(&c, k, &got), AP_OK);
        EXPECT(rec_eq(got, mkrec(k)), "key %d", (int)k);
    }
    struct rec got;
    EXPECT_EQ(rec_cache_remove(&c, 2, &got), AP_OK);
    EXPECT(rec_eq(got, mkrec(2)));
    EXPECT_EQ(rec_cache_get(&c, 2, &got), AP_EMPTY);
    EXPECT_EQ(rec_cache_len(&c), 3);
    rec_cache_fini(&c);
}
