/*
 * tests/test_pubsub.c -- the broadcast channel (publish-subscribe)
 */
#include "asyncpat/pubsub.h"
#include "asyncpat/topic.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

#define COUNTING_ALLOCATOR(c) ((ap_allocator){cnt_alloc, cnt_free, &(c)})
#define U64 sizeof(uint64_t)
#define OVW AP_PUBSUB_POLICY_OVERWRITE

static uint64_t big_buf[AP_PUBSUB_BYTES(64, 64) / 8];

static void publish_u64(ap_pubsub *ps, uint64_t v)
{
    EXPECT_EQ(ap_pubsub_try_publish(ps, &v), AP_OK, "publish %lu", (unsigned long)v);
}

/* ---- configuration ---- */

Test(pubsub, bytes_macros_are_constant)
{
    _Static_assert(AP_PUBSUB_STRIDE(1) == 16, "stamp + 1 byte, padded to a word");
    _Static_assert(AP_PUBSUB_STRIDE(8) == 16, "stamp + word");
    _Static_assert(AP_PUBSUB_STRIDE(9) == 24, "stamp + two words");
    _Static_assert(AP_PUBSUB_BYTES(3, 4) == 3 * AP_PUBSUB_STRIDE(4), "exact capacity");
    static unsigned char as_array_size[AP_PUBSUB_BYTES(5, 3)];
    EXPECT_EQ(sizeof as_array_size, 5 * 16);
    EXPECT_EQ(ap_status_str(AP_DROPPED)[0], 'd');
}

typedef struct bad_cfg { size_t cap, elem; int policy; } bad_cfg;

static const bad_cfg pubsub_bad[] = {
    {0, 8, 0},
    {0, 0, 0},
    {4, 0, 0},
    {4, 8, 1},                          /* no such policy (BLOCK is not built) */
    {4, 8, -1},
    {SIZE_MAX, 1, 0},                   /* huge capacity */
    {(SIZE_MAX >> 4) + 1, 1, 0},
    {(size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), 0}, /* capacity * stride overflows */
    {1, SIZE_MAX, 0},                   /* the stride itself overflows */
    {1, SIZE_MAX - 7, 0},
    {3, SIZE_MAX / 2 - 100, 0},
};
#define N_BAD (sizeof pubsub_bad / sizeof pubsub_bad[0])

Test(pubsub, init_bad_config_is_inval_and_changes_nothing)
{
    for (size_t i = 0; i < N_BAD; i++) {
        ap_pubsub ps, before;
        memset(&ps, 0xa5, sizeof ps);
        memcpy(&before, &ps, sizeof ps);
        uint64_t buf[8], copy[8];
        memset(buf, 0x3c, sizeof buf);
        memcpy(copy, buf, sizeof buf);
        EXPECT_EQ(ap_pubsub_init(&ps, buf, sizeof buf, pubsub_bad[i].cap, pubsub_bad[i].elem,
                                 (ap_pubsub_policy)pubsub_bad[i].policy),
                  AP_INVAL, "init(%zu, %zu, %d) accepted", pubsub_bad[i].cap,
                  pubsub_bad[i].elem, pubsub_bad[i].policy);
        EXPECT(memcmp(&ps, &before, sizeof ps) == 0, "init %zu changed the channel", i);
        EXPECT(memcmp(buf, copy, sizeof buf) == 0, "init %zu wrote the buffer", i);
    }
}

Test(pubsub, create_bad_config_is_inval_and_allocates_nothing)
{
    for (size_t i = 0; i < N_BAD; i++) {
        counting c = {0};
        ap_allocator a = COUNTING_ALLOCATOR(c);
        ap_pubsub *sentinel = (ap_pubsub *)(uintptr_t)0x1234, *ps = sentinel;
        ap_pubsub_policy pol = (ap_pubsub_policy)pubsub_bad[i].policy;
        EXPECT_EQ(ap_pubsub_create(&ps, pubsub_bad[i].cap, pubsub_bad[i].elem, pol, &a),
                  AP_INVAL);
        EXPECT_EQ(c.allocs, 0, "bad config %zu called the allocator", i);
        EXPECT(ps == sentinel, "out written on failure");
        EXPECT_EQ(ap_pubsub_create(&ps, pubsub_bad[i].cap, pubsub_bad[i].elem, pol, NULL),
                  AP_INVAL);
        EXPECT(ps == sentinel);
    }
}

Test(pubsub, create_with_incomplete_allocator_is_inval)
{
    counting c = {0};
    ap_allocator no_free = {cnt_alloc, NULL, &c};
    ap_allocator no_alloc = {NULL, cnt_free, &c};
    ap_pubsub *sentinel = (ap_pubsub *)(uintptr_t)0x1234, *ps = sentinel;
    EXPECT_EQ(ap_pubsub_create(&ps, 4, 4, OVW, &no_free), AP_INVAL);
    EXPECT_EQ(ap_pubsub_create(&ps, 4, 4, OVW, &no_alloc), AP_INVAL);
    EXPECT_EQ(c.allocs, 0);
    EXPECT(ps == sentinel);
}

Test(pubsub, create_nomem_when_allocator_fails)
{
    counting c = {0};
    c.fail = true;
    ap_allocator a = COUNTING_ALLOCATOR(c);
    ap_pubsub *sentinel = (ap_pubsub *)(uintptr_t)0x1234, *ps = sentinel;
    EXPECT_EQ(ap_pubsub_create(&ps, 16, 8, OVW, &a), AP_NOMEM);
    EXPECT_EQ(c.allocs, 1);
    EXPECT_EQ(c.frees, 0);
    EXPECT(ps == sentinel, "out written on AP_NOMEM");
}

Test(pubsub, create_destroy_one_allocation_sizes_match)
{
    const size_t caps[] = {1, 3, 4, 64, 1000};
    const size_t elems[] = {1, 8, 17};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 3; j++) {
            size_t cap = caps[i], el = elems[j];
            counting c = {0};
            ap_allocator a = COUNTING_ALLOCATOR(c);
            ap_pubsub *ps = NULL;
            EXPECT_EQ(ap_pubsub_create(&ps, cap, el, OVW, &a), AP_OK);
            EXPECT_EQ(c.allocs, 1);
            EXPECT(c.user_seen == &c);
            EXPECT((void *)ps == c.ptr);
            EXPECT(c.align >= _Alignof(ap_pubsub) && (c.align & (c.align - 1)) == 0);
            EXPECT_GE(c.size, sizeof(ap_pubsub) + AP_PUBSUB_BYTES(cap, el));
            EXPECT_EQ(ap_pubsub_capacity(ps), cap);
            unsigned char *e = malloc(el), *o = malloc(el);
            ap_sub sub = {0};
            ap_pubsub_subscribe(ps, &sub);
            for (size_t k = 0; k < cap; k++) {
                memset(e, (int)(k + 1), el);
                EXPECT_EQ(ap_pubsub_try_publish(ps, e), AP_OK);
            }
            for (size_t k = 0; k < cap; k++) {
                EXPECT_EQ(ap_sub_try_recv(&sub, o, NULL), AP_OK);
                EXPECT_EQ(o[el - 1], (unsigned char)(k + 1));
            }
            EXPECT_EQ(ap_sub_try_recv(&sub, o, NULL), AP_EMPTY);
            free(e);
            free(o);
            ap_pubsub_unsubscribe(ps, &sub);
            ap_pubsub_destroy(ps);
            EXPECT_EQ(c.frees, 1);
            EXPECT(c.freed_ptr == c.ptr);
            EXPECT_EQ(c.freed_size, c.size);
        }
}

Test(pubsub, create_default_allocator_and_destroy_null)
{
    ap_pubsub *ps = NULL;
    EXPECT_EQ(ap_pubsub_create(&ps, 5, U64, OVW, NULL), AP_OK);
    EXPECT_NOT_NULL(ps);
    EXPECT_EQ((uintptr_t)ps % _Alignof(ap_pubsub), 0);
    ap_sub sub = {0};
    ap_pubsub_subscribe(ps, &sub);
    uint64_t y = 0;
    publish_u64(ps, 42);
    EXPECT_EQ(ap_sub_try_recv(&sub, &y, NULL), AP_OK);
    EXPECT_EQ(y, 42);
    ap_pubsub_destroy(ps);
    ap_pubsub_destroy(NULL);
}

/* ---- broadcast, order, subscribe ---- */

Test(pubsub, every_subscriber_sees_every_message_in_order)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 8, U64, OVW), AP_OK);
    ap_sub a = {0}, b = {0}, c = {0};
    ap_pubsub_subscribe(&ps, &a);
    ap_pubsub_subscribe(&ps, &b);
    uint64_t v = 77, dropped = 99;
    EXPECT_EQ(ap_sub_try_recv(&a, &v, &dropped), AP_EMPTY);
    EXPECT_EQ(v, 77, "out written on AP_EMPTY");
    EXPECT_EQ(dropped, 99, "dropped written on AP_EMPTY");
    for (uint64_t i = 0; i < 5; i++)
        publish_u64(&ps, 100 + i);
    ap_pubsub_subscribe(&ps, &c); /* late: sees only what comes next */
    EXPECT_EQ(ap_sub_len(&a), 5);
    EXPECT_EQ(ap_sub_len(&c), 0);
    for (uint64_t i = 5; i < 8; i++)
        publish_u64(&ps, 100 + i);
    EXPECT_EQ(ap_pubsub_published(&ps), 8);
    for (uint64_t i = 0; i < 8; i++) {
        EXPECT_EQ(ap_sub_try_recv(&a, &v, NULL), AP_OK);
        EXPECT_EQ(v, 100 + i);
    }
    for (uint64_t i = 0; i < 8; i++) {
        EXPECT_EQ(ap_sub_try_recv(&b, &v, NULL), AP_OK);
        EXPECT_EQ(v, 100 + i);
    }
    for (uint64_t i = 5; i < 8; i++) {
        EXPECT_EQ(ap_sub_try_recv(&c, &v, NULL), AP_OK);
        EXPECT_EQ(v, 100 + i);
    }
    EXPECT_EQ(ap_sub_try_recv(&a, &v, NULL), AP_EMPTY);
    EXPECT_EQ(ap_sub_try_recv(&b, &v, NULL), AP_EMPTY);
    EXPECT_EQ(ap_sub_try_recv(&c, &v, NULL), AP_EMPTY);
    EXPECT_EQ(ap_sub_received(&a), 8);
    EXPECT_EQ(ap_sub_received(&c), 3);
    EXPECT_EQ(ap_sub_lost(&a), 0);
    EXPECT_EQ(ap_sub_last_dropped(&a), 0);
    EXPECT_EQ(ap_sub_len(&a), 0);
}

Test(pubsub, unsubscribe_then_resubscribe_starts_at_the_tail)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    publish_u64(&ps, 1);
    uint64_t v;
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_OK);
    publish_u64(&ps, 2);
    ap_pubsub_unsubscribe(&ps, &s);
    EXPECT_NULL(s.ps);
    publish_u64(&ps, 3);
    ap_pubsub_subscribe(&ps, &s);
    EXPECT_EQ(ap_sub_received(&s), 0, "counters reset");
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_EMPTY, "saw a message from before");
    publish_u64(&ps, 4);
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_OK);
    EXPECT_EQ(v, 4);
}

/* ---- drops: exact counts against a model ---- */

/* One subscriber, capacity cap, n publishes, then drain: the first report
 * must be max(0, n - cap) lost, then the last min(n, cap) in order. */
Test(pubsub, drop_count_is_exact_for_every_capacity_and_backlog)
{
    for (size_t cap = 1; cap <= 9; cap++)
        for (uint64_t n = 0; n <= 3 * cap + 2; n++) {
            ap_pubsub ps;
            EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, cap, U64, OVW), AP_OK);
            ap_sub s = {0};
            ap_pubsub_subscribe(&ps, &s);
            for (uint64_t i = 0; i < n; i++)
                publish_u64(&ps, 1000 + i);
            uint64_t v = 5, d = 0, want_lost = n > cap ? n - cap : 0;
            if (want_lost) {
                EXPECT_EQ(ap_sub_len(&s), n);
                EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_DROPPED, "cap %zu n %lu", cap,
                          (unsigned long)n);
                EXPECT_EQ(d, want_lost, "cap %zu n %lu", cap, (unsigned long)n);
                EXPECT_EQ(v, 5, "out written on AP_DROPPED");
                EXPECT_EQ(ap_sub_last_dropped(&s), want_lost);
            }
            for (uint64_t i = want_lost; i < n; i++) {
                EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_OK);
                EXPECT_EQ(v, 1000 + i);
            }
            EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_EMPTY);
            EXPECT_EQ(ap_sub_received(&s) + ap_sub_lost(&s), n, "conservation");
        }
}

/* Random publishes and receives by three subscribers (capacities 1..7,
 * power of two or not), each checked against its own model cursor. */
Test(pubsub, random_interleave_against_model)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (size_t cap = 1; cap <= 7; cap++) {
        ap_pubsub ps;
        EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, cap, U64, OVW), AP_OK);
        enum { NS = 3 };
        ap_sub s[NS];
        uint64_t model_next[NS], model_lost[NS], model_recv[NS], base[NS];
        memset(s, 0, sizeof s);
        uint64_t published = 0;
        for (int k = 0; k < NS; k++) {
            ap_pubsub_subscribe(&ps, &s[k]);
            model_next[k] = base[k] = 0;
            model_lost[k] = model_recv[k] = 0;
        }
        for (int step = 0; step < 3000; step++) {
            uint64_t r = rng_next(&seed);
            int k = (int)(r % NS);
            if ((r >> 8) % 3 == 0) {
                publish_u64(&ps, published * 3 + 1);
                published++;
            } else if ((r >> 8) % 97 == 1) { /* resubscribe */
                ap_pubsub_unsubscribe(&ps, &s[k]);
                ap_pubsub_subscribe(&ps, &s[k]);
                model_next[k] = base[k] = published;
                model_lost[k] = model_recv[k] = 0;
            } else {
                uint64_t v = 0, d = 0;
                ap_status st = ap_sub_try_recv(&s[k], &v, &d);
                if (model_next[k] == published) {
                    EXPECT_EQ(st, AP_EMPTY);
                } else if (published - model_next[k] > cap) {
                    uint64_t lost = published - cap - model_next[k];
                    EXPECT_EQ(st, AP_DROPPED, "cap %zu step %d", cap, step);
                    EXPECT_EQ(d, lost);
                    model_lost[k] += lost;
                    model_next[k] = published - cap;
                } else {
                    EXPECT_EQ(st, AP_OK);
                    EXPECT_EQ(v, model_next[k] * 3 + 1);
                    model_next[k]++;
                    model_recv[k]++;
                }
                EXPECT_EQ(ap_sub_lost(&s[k]), model_lost[k]);
                EXPECT_EQ(ap_sub_received(&s[k]), model_recv[k]);
                EXPECT_EQ(ap_sub_received(&s[k]) + ap_sub_lost(&s[k]),
                          model_next[k] - base[k]);
            }
        }
    }
}

Test(pubsub, odd_element_sizes_round_trip_byte_exact)
{
    static uint64_t buf[AP_PUBSUB_BYTES(3, 300) / 8];
    unsigned char in[300], out[300];
    const size_t sizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 127, 128, 129, 200, 300};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t el = sizes[i];
        ap_pubsub ps;
        EXPECT_EQ(ap_pubsub_init(&ps, buf, sizeof buf, 3, el, OVW), AP_OK);
        ap_sub s = {0};
        ap_pubsub_subscribe(&ps, &s);
        for (int round = 0; round < 5; round++) {
            for (size_t k = 0; k < el; k++)
                in[k] = (unsigned char)(k * 7 + (size_t)round * 13 + el);
            EXPECT_EQ(ap_pubsub_try_publish(&ps, in), AP_OK);
            memset(out, 0xee, sizeof out);
            EXPECT_EQ(ap_sub_try_recv(&s, out, NULL), AP_OK);
            EXPECT(memcmp(in, out, el) == 0, "size %zu round %d differs", el, round);
            EXPECT_EQ(out[el < 300 ? el : 299], el < 300 ? 0xee : in[299],
                      "wrote past the element");
        }
    }
}

/* ---- in-flight publishers (claimed, not yet complete) ---- */

Test(pubsub, claimed_unpublished_message_reads_again_not_empty)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    /* a publisher claims sequence 0 and is preempted before writing */
    atomic_store(&ps.tail, 1);
    atomic_store(&ap__pubsub_slot(&ps, 0)[0], 1); /* odd: being written */
    uint64_t v = 0x5555;
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_AGAIN, "a claimed message read as EMPTY");
    EXPECT_EQ(v, 0x5555);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &s, &v);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_PENDING);
    EXPECT_GE(calls(&w), 1, "pending on AP_AGAIN without asking for a re-poll");
    /* close meanwhile: the in-flight message is still delivered */
    ap_pubsub_close(&ps);
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_AGAIN, "closed with a message in flight");
    atomic_store(&ap__pubsub_slot(&ps, 0)[1], 0xc0ffee);
    atomic_store(&ap__pubsub_slot(&ps, 0)[0], 2); /* complete */
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_OK);
    EXPECT_EQ(v, 0xc0ffee);
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_CLOSED);
}

Test(pubsub, publisher_a_lap_ahead_of_a_stalled_writer_gets_again)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 2, U64, OVW), AP_OK);
    /* sequence 0 claimed and stalled mid-copy; 1 published */
    atomic_store(&ps.tail, 1);
    atomic_store(&ap__pubsub_slot(&ps, 0)[0], 1);
    publish_u64(&ps, 11);
    uint64_t x = 22;
    EXPECT_EQ(ap_pubsub_try_publish(&ps, &x), AP_AGAIN, "would write a slot being written");
    EXPECT_EQ(ap_pubsub_published(&ps), 2, "AP_AGAIN claimed a sequence");
    atomic_store(&ap__pubsub_slot(&ps, 0)[0], 2); /* the stalled writer finishes */
    EXPECT_EQ(ap_pubsub_try_publish(&ps, &x), AP_OK);
    EXPECT_EQ(ap_pubsub_published(&ps), 3);
}

/* A message overwritten while the reader copies it is never handed out:
 * the reader's stamp re-check sees the new writer's odd stamp. Simulated
 * by a slot whose stamp reads 2r+2, then odd, then 2(r+cap)+2. */
Test(pubsub, overwritten_during_copy_reports_drop_not_torn)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 2, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    for (uint64_t i = 0; i < 5; i++)
        publish_u64(&ps, i);
    /* s is at 0; the ring holds 3 and 4 */
    uint64_t v = 9, d = 0;
    EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_DROPPED);
    EXPECT_EQ(d, 3);
    EXPECT_EQ(v, 9);
    /* a writer claims 5 (slot of 3) and stalls mid-copy: 3 is gone */
    atomic_store(&ps.tail, 6);
    atomic_store(&ap__pubsub_slot(&ps, 5)[0], 2 * 5 + 1);
    EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_DROPPED);
    EXPECT_EQ(d, 1, "lost 3 only");
    EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_OK);
    EXPECT_EQ(v, 4);
    EXPECT_EQ(ap_sub_try_recv(&s, &v, &d), AP_AGAIN);
    EXPECT_EQ(ap_sub_received(&s) + ap_sub_lost(&s), 5);
}

/* ---- close ---- */

Test(pubsub, close_rejects_publishes_and_drains_each_subscriber)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 3, U64, OVW), AP_OK);
    ap_sub fast = {0}, slow = {0};
    ap_pubsub_subscribe(&ps, &fast);
    ap_pubsub_subscribe(&ps, &slow);
    uint64_t v;
    for (uint64_t i = 0; i < 5; i++) {
        publish_u64(&ps, i);
        EXPECT_EQ(ap_sub_try_recv(&fast, &v, NULL), AP_OK);
    }
    publish_u64(&ps, 5);
    EXPECT_NOT(ap_pubsub_is_closed(&ps));
    ap_pubsub_close(&ps);
    ap_pubsub_close(&ps); /* idempotent */
    EXPECT(ap_pubsub_is_closed(&ps));
    uint64_t x = 6;
    EXPECT_EQ(ap_pubsub_try_publish(&ps, &x), AP_CLOSED);
    EXPECT_EQ(ap_pubsub_published(&ps), 6);
    EXPECT_EQ(ap_sub_try_recv(&fast, &v, NULL), AP_OK);
    EXPECT_EQ(v, 5);
    v = 1234;
    EXPECT_EQ(ap_sub_try_recv(&fast, &v, NULL), AP_CLOSED);
    EXPECT_EQ(v, 1234);
    uint64_t d = 0;
    EXPECT_EQ(ap_sub_try_recv(&slow, &v, &d), AP_DROPPED);
    EXPECT_EQ(d, 3);
    for (uint64_t i = 3; i < 6; i++) {
        EXPECT_EQ(ap_sub_try_recv(&slow, &v, NULL), AP_OK);
        EXPECT_EQ(v, i);
    }
    EXPECT_EQ(ap_sub_try_recv(&slow, &v, NULL), AP_CLOSED);
    EXPECT_EQ(ap_sub_try_recv(&slow, &v, NULL), AP_CLOSED);
    ap_sub late = {0};
    ap_pubsub_subscribe(&ps, &late);
    EXPECT_EQ(ap_sub_try_recv(&late, &v, NULL), AP_CLOSED);
}

/* ---- futures ---- */

Test(pubsub, recv_future_pending_then_woken_by_publish)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v = 0;
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &s, &v);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_NOT_READY);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(calls(&w), 0);
    EXPECT(ap_waitlist_has_waiters(&ps.wl));
    publish_u64(&ps, 31);
    EXPECT_EQ(calls(&w), 1, "publish did not wake the parked future");
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_OK);
    EXPECT_EQ(v, 31);
    EXPECT_NOT(ap_waitlist_has_waiters(&ps.wl));
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY, "a completed future stays ready");
}

Test(pubsub, one_publish_wakes_every_parked_subscriber)
{
    enum { N = 4 };
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s[N];
    ap_sub_recv_fut f[N];
    tw w[N];
    uint64_t v[N];
    memset(s, 0, sizeof s);
    memset(w, 0, sizeof w);
    for (int i = 0; i < N; i++) {
        ap_pubsub_subscribe(&ps, &s[i]);
        ap_cx cx = cx_of(&w[i]);
        ap_sub_recv_fut_init(&f[i], &s[i], &v[i]);
        EXPECT_EQ(ap_sub_recv_poll(&f[i], &cx), AP_PENDING);
    }
    publish_u64(&ps, 8);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(calls(&w[i]), 1, "subscriber %d not woken", i);
        ap_cx cx = cx_of(&w[i]);
        EXPECT_EQ(ap_sub_recv_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(ap_sub_recv_status(&f[i]), AP_OK);
        EXPECT_EQ(v[i], 8);
    }
}

Test(pubsub, close_wakes_every_recv_future)
{
    enum { N = 3 };
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s[N];
    ap_sub_recv_fut f[N];
    tw w[N];
    uint64_t v[N];
    memset(s, 0, sizeof s);
    memset(w, 0, sizeof w);
    for (int i = 0; i < N; i++) {
        ap_pubsub_subscribe(&ps, &s[i]);
        ap_cx cx = cx_of(&w[i]);
        v[i] = 0xabc;
        ap_sub_recv_fut_init(&f[i], &s[i], &v[i]);
        EXPECT_EQ(ap_sub_recv_poll(&f[i], &cx), AP_PENDING);
    }
    ap_pubsub_close(&ps);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(calls(&w[i]), 1);
        ap_cx cx = cx_of(&w[i]);
        EXPECT_EQ(ap_sub_recv_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(ap_sub_recv_status(&f[i]), AP_CLOSED);
        EXPECT_EQ(v[i], 0xabc);
    }
    EXPECT_NOT(ap_waitlist_has_waiters(&ps.wl));
}

Test(pubsub, recv_future_reports_drops_with_the_count)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 2, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    for (uint64_t i = 0; i < 7; i++)
        publish_u64(&ps, i);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v = 3;
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &s, &v);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_DROPPED);
    EXPECT_EQ(ap_sub_last_dropped(&s), 5);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(ap_sub_recv_wait(&s, &v, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(v, 5);
    EXPECT_EQ(ap_sub_recv_wait(&s, &v, 0), AP_OK);
    EXPECT_EQ(v, 6);
    EXPECT_EQ(ap_sub_received(&s) + ap_sub_lost(&s), 7);
}

Test(pubsub, cancel_is_idempotent_and_no_wake_after_it)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v = 17;
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &s, &v);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_PENDING);
    ap_sub_recv_cancel(&f);
    ap_sub_recv_cancel(&f);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&ps.wl));
    publish_u64(&ps, 1);
    ap_pubsub_close(&ps);
    EXPECT_EQ(calls(&w), 0, "woken after cancel");
    EXPECT_EQ(v, 17, "a cancelled receive wrote its output");
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_CANCELED);
    /* the message was not consumed by the cancelled future */
    EXPECT_EQ(ap_sub_try_recv(&s, &v, NULL), AP_OK);
    EXPECT_EQ(v, 1);
}

Test(pubsub, cancel_after_completion_changes_nothing)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    publish_u64(&ps, 9);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v = 0;
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &s, &v);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_READY);
    ap_sub_recv_cancel(&f);
    EXPECT_EQ(ap_sub_recv_status(&f), AP_OK);
    EXPECT_EQ(v, 9);
}

Test(pubsub, wait_times_out_and_leaves_nothing_behind, .timeout = TEST_TIMEOUT_S)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 1, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    uint64_t out = 5;
    EXPECT_EQ(ap_sub_recv_wait(&s, &out, 0), AP_TIMEDOUT);
    uint64_t deadline = ap_now_ns() + 5 * AP_NS_PER_MS;
    EXPECT_EQ(ap_sub_recv_wait(&s, &out, deadline), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns(), deadline);
    EXPECT_EQ(out, 5);
    EXPECT_NOT(ap_waitlist_has_waiters(&ps.wl));
    ap_pubsub_close(&ps);
    EXPECT_EQ(ap_sub_recv_wait(&s, &out, AP_DEADLINE_NONE), AP_CLOSED);
}

/* ---- across threads ---- */

static ap_pubsub xps;
static uint64_t xbuf[AP_PUBSUB_BYTES(1024, U64) / 8];
static ap_status helper_status[8];
static uint64_t helper_value[8];
static ap_sub helper_sub[8];

static void *recv_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    helper_status[i] = ap_sub_recv_wait(&helper_sub[i], &helper_value[i], AP_DEADLINE_NONE);
    return NULL;
}

static void wait_for_waiters(ap_waitlist *wl, size_t n)
{
    while (atomic_load(&wl->count) < n)
        ms_sleep(1);
}

Test(pubsub, parked_subscribers_all_get_the_message, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 3 };
    EXPECT_EQ(ap_pubsub_init(&xps, xbuf, sizeof xbuf, 8, U64, OVW), AP_OK);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&helper_sub[i], 0, sizeof helper_sub[i]);
        ap_pubsub_subscribe(&xps, &helper_sub[i]);
        EXPECT_EQ(pthread_create(&th[i], NULL, recv_waiter, (void *)(intptr_t)i), 0);
    }
    wait_for_waiters(&xps.wl, N);
    publish_u64(&xps, 4242);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(helper_status[i], AP_OK);
        EXPECT_EQ(helper_value[i], 4242);
    }
}

Test(pubsub, parked_subscribers_all_woken_by_close, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 4 };
    EXPECT_EQ(ap_pubsub_init(&xps, xbuf, sizeof xbuf, 8, U64, OVW), AP_OK);
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        memset(&helper_sub[i], 0, sizeof helper_sub[i]);
        ap_pubsub_subscribe(&xps, &helper_sub[i]);
        helper_value[i] = 0xabc;
        EXPECT_EQ(pthread_create(&th[i], NULL, recv_waiter, (void *)(intptr_t)i), 0);
    }
    wait_for_waiters(&xps.wl, N);
    ap_pubsub_close(&xps);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(helper_status[i], AP_CLOSED);
        EXPECT_EQ(helper_value[i], 0xabc);
    }
}

/* 2 publishers x 3 subscribers, ring larger than the run: each subscriber
 * gets every message exactly once, each publisher's in order. */
#define MT_PER_PUB 400
static void *mt_publisher(void *arg)
{
    uint64_t id = (uint64_t)(intptr_t)arg;
    for (uint64_t i = 0; i < MT_PER_PUB; i++) {
        uint64_t v = id << 32 | i;
        ap_status st;
        while ((st = ap_pubsub_try_publish(&xps, &v)) == AP_AGAIN)
            sched_yield();
        if (st != AP_OK)
            helper_status[6] = st;
    }
    return NULL;
}

static void *mt_subscriber(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t next[2] = {0, 0};
    for (;;) {
        uint64_t v;
        ap_status st = ap_sub_recv_wait(&helper_sub[i], &v, AP_DEADLINE_NONE);
        if (st == AP_CLOSED)
            break;
        if (st != AP_OK || (v >> 32) > 1 || (v & 0xffffffffu) != next[v >> 32]) {
            helper_status[i] = st == AP_OK ? AP_INVAL : st;
            break;
        }
        next[v >> 32]++;
    }
    helper_value[i] = next[0] + next[1];
    return NULL;
}

Test(pubsub, two_publishers_three_subscribers_everything_once, .timeout = TEST_TIMEOUT_S)
{
    enum { NS = 3 };
    EXPECT_EQ(ap_pubsub_init(&xps, xbuf, sizeof xbuf, 1024, U64, OVW), AP_OK);
    pthread_t sub_th[NS], pub_th[2];
    helper_status[6] = AP_OK;
    for (int i = 0; i < NS; i++) {
        memset(&helper_sub[i], 0, sizeof helper_sub[i]);
        ap_pubsub_subscribe(&xps, &helper_sub[i]);
        helper_status[i] = AP_OK;
        EXPECT_EQ(pthread_create(&sub_th[i], NULL, mt_subscriber, (void *)(intptr_t)i), 0);
    }
    for (int p = 0; p < 2; p++)
        EXPECT_EQ(pthread_create(&pub_th[p], NULL, mt_publisher, (void *)(intptr_t)p), 0);
    for (int p = 0; p < 2; p++)
        pthread_join(pub_th[p], NULL);
    ap_pubsub_close(&xps);
    for (int i = 0; i < NS; i++) {
        pthread_join(sub_th[i], NULL);
        EXPECT_EQ(helper_status[i], AP_OK, "subscriber %d", i);
        EXPECT_EQ(helper_value[i], 2 * MT_PER_PUB, "subscriber %d", i);
        EXPECT_EQ(ap_sub_lost(&helper_sub[i]), 0);
    }
    EXPECT_EQ(helper_status[6], AP_OK);
}

/* ---- typed wrapper ---- */

typedef struct pt { uint16_t a; uint8_t b; } pt; /* 4 bytes with padding */
AP_PUBSUB_DEFINE(pt_chan, pt)

/* issue #11: the buffer comes with its size; NULL, short or misaligned is
 * AP_INVAL (NULL and misaligned tripped AP_ASSERT, a short buffer was
 * overrun) and neither the channel nor the buffer changes */
Test(pubsub, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { CAP = 5, ES = 12 };
    static uint64_t words[AP_PUBSUB_BYTES(CAP, ES) / 8 + 2];
    unsigned char *b = (unsigned char *)words;
    const size_t need = AP_PUBSUB_BYTES(CAP, ES);
    _Static_assert(AP_PUBSUB_BYTES(CAP, ES) == CAP * (8 + 16) && AP_PUBSUB_ALIGN == 8,
                   "constant expressions");
    static char as_array_size[AP_PUBSUB_ALIGN];
    EXPECT_EQ(sizeof as_array_size, 8);
    struct { void *buf; size_t bytes, cap, es; int pol; const char *what; } cases[] = {
        {NULL, sizeof words, CAP, ES, 0, "NULL buffer"},
        {b, need - 1, CAP, ES, 0, "one byte short"},
        {b, need - AP_PUBSUB_STRIDE(ES), CAP, ES, 0, "one slot short"},
        {b, 0, CAP, ES, 0, "zero bytes"},
        {b + 1, sizeof words - 1, CAP, ES, 0, "misaligned by 1"},
        {b + 4, sizeof words - 4, CAP, ES, 0, "misaligned by 4"},
        {b, sizeof words, 0, ES, 0, "capacity 0"},
        {b, sizeof words, CAP, 0, 0, "elem_size 0"},
        {b, sizeof words, CAP, ES, 1, "unknown policy"},
        {b, SIZE_MAX, (size_t)1 << (sizeof(size_t) * 4), (size_t)1 << (sizeof(size_t) * 4), 0,
         "bytes overflow"},
    };
    static unsigned char b_before[sizeof words];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_pubsub ps, before;
        memset(&ps, 0xA5, sizeof ps);
        memcpy(&before, &ps, sizeof ps);
        memset(b, 0xC3, sizeof words);
        memcpy(b_before, b, sizeof words);
        EXPECT_EQ(ap_pubsub_init(&ps, cases[i].buf, cases[i].bytes, cases[i].cap, cases[i].es,
                                 (ap_pubsub_policy)cases[i].pol),
                  AP_INVAL, "%s", cases[i].what);
        EXPECT(memcmp(&before, &ps, sizeof ps) == 0, "%s: the channel changed", cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof words) == 0, "%s: the buffer changed", cases[i].what);
    }
    /* the typed init checks the same */
    pt_chan tc, tc_before;
    memset(&tc, 0xA5, sizeof tc);
    memcpy(&tc_before, &tc, sizeof tc);
    EXPECT_EQ(pt_chan_init(&tc, b, AP_PUBSUB_BYTES(CAP, sizeof(pt)) - 1, CAP), AP_INVAL);
    EXPECT_EQ(pt_chan_init(&tc, b + 1, sizeof words - 1, CAP), AP_INVAL);
    EXPECT_EQ(pt_chan_init(&tc, NULL, sizeof words, CAP), AP_INVAL);
    EXPECT(memcmp(&tc_before, &tc, sizeof tc) == 0, "typed init changed the channel");
    EXPECT(memcmp(b_before, b, sizeof words) == 0, "typed init changed the buffer");
    /* exactly enough works; the excess is not touched */
    ap_pubsub ps;
    memset(b, 0xC3, sizeof words);
    EXPECT_EQ(ap_pubsub_init(&ps, b, need, CAP, ES, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    for (int k = 0; k < 3 * CAP; k++) {
        unsigned char in[ES], out[ES];
        memset(in, k, sizeof in);
        EXPECT_EQ(ap_pubsub_try_publish(&ps, in), AP_OK);
        EXPECT_EQ(ap_sub_try_recv(&s, out, NULL), AP_OK);
        EXPECT(memcmp(in, out, ES) == 0);
    }
    for (size_t i = need; i < sizeof words; i++)
        EXPECT_EQ(b[i], 0xC3, "byte %zu past the buffer written", i);
    ap_pubsub_unsubscribe(&ps, &s);
    ap_pubsub_fini(&ps);
}

Test(pubsub, typed_wrapper_round_trips)
{
    static uint64_t buf[AP_PUBSUB_BYTES(3, sizeof(pt)) / 8];
    pt_chan ch;
    EXPECT_EQ(pt_chan_init(&ch, buf, sizeof buf, 0), AP_INVAL);
    EXPECT_EQ(pt_chan_init(&ch, buf, sizeof buf, 3), AP_OK);
    ap_sub s = {0};
    pt_chan_subscribe(&ch, &s);
    for (uint16_t i = 0; i < 5; i++) {
        pt x = {(uint16_t)(1000 + i), (uint8_t)i};
        EXPECT_EQ(pt_chan_try_publish(&ch, &x), AP_OK);
    }
    pt y = {0, 0};
    uint64_t d = 0;
    EXPECT_EQ(pt_chan_try_recv(&s, &y, &d), AP_DROPPED);
    EXPECT_EQ(d, 2);
    for (uint16_t i = 2; i < 5; i++) {
        EXPECT_EQ(pt_chan_try_recv(&s, &y, &d), AP_OK);
        EXPECT_EQ(y.a, 1000 + i);
        EXPECT_EQ(y.b, i);
    }
    pt_chan_close(&ch);
    EXPECT_EQ(pt_chan_try_recv(&s, &y, &d), AP_CLOSED);
    pt_chan_fini(&ch);
}

/* ---- preconditions ---- */

Test(pubsub, publish_after_fini_asserts, .signal = SIGABRT)
{
    ap_pubsub ps;
    uint64_t x = 1;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_pubsub_fini(&ps);
    ap_status st = ap_pubsub_try_publish(&ps, &x);
    cr_log_error("publish after fini returned %d", (int)st);
}

Test(pubsub, recv_unsubscribed_asserts, .signal = SIGABRT)
{
    ap_sub s = {0};
    uint64_t x;
    ap_status st = ap_sub_try_recv(&s, &x, NULL);
    cr_log_error("recv on a zero ap_sub returned %d", (int)st);
}

Test(pubsub, subscribe_twice_asserts, .signal = SIGABRT)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_sub s = {0};
    ap_pubsub_subscribe(&ps, &s);
    ap_pubsub_subscribe(&ps, &s);
}

Test(pubsub, destroy_of_an_init_channel_asserts, .signal = SIGABRT)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_pubsub_destroy(&ps);
}

Test(pubsub, init_of_null_channel_asserts, .signal = SIGABRT)
{
    ap_status st = ap_pubsub_init(NULL, big_buf, sizeof big_buf, 4, U64, OVW);
    cr_log_error("returned %d", (int)st);
}

/* ==== topics (asyncpat/topic.h) ==== */

struct tick {
    uint64_t id;
    double px;
};
static int usage_used, usage_gaps;
static void use(const char *subject, const struct tick *t)
{
    EXPECT_EQ(strcmp(subject, "md.EURUSD.trade"), 0);
    EXPECT_EQ(t->id, 0);
    usage_used++;
}
static void note_gap(uint64_t n)
{
    (void)n;
    usage_gaps++;
}

Test(topic, usage_block_compiles_and_runs)
{
    /* USAGE begin */
    static uint64_t mem[AP_TOPIC_BYTES(256, sizeof(struct tick), 64) / 8];
    static uint64_t refs[AP_TOPIC_SUB_BYTES(32) / 8];
    ap_topic bus;
    if (ap_topic_init(&bus, mem, sizeof mem, 256, sizeof(struct tick), 64))
        abort();
    static ap_topic_sub sub;          // zero: not subscribed
    if (ap_topic_subscribe(&bus, &sub, "md.*.trade", AP_TOPIC_POLICY_OVERWRITE,
                           refs, sizeof refs, 32))
        abort();                      // AP_INVAL: bad pattern; AP_FULL: no room
    struct tick t = {0};              // any publisher thread:
    while (ap_topic_try_publish(&bus, "md.EURUSD.trade", &t) == AP_FULL) {} // BLOCK: full
    char subject[AP_TOPIC_SUBJECT_MAX + 1];
    /* USAGE pause */
    EXPECT_EQ(ap_topic_try_publish(&bus, "md.EURUSD.quote", &t), AP_OK, "matches nobody");
    ap_topic_close(&bus);
    /* USAGE resume */
    for (;;) {                        // the subscriber:
        ap_status st = ap_topic_sub_recv_wait(&sub, &t, subject, AP_DEADLINE_NONE);
        if (st == AP_OK) use(subject, &t);
        else if (st == AP_DROPPED) note_gap(ap_topic_sub_last_dropped(&sub));
        else break;                   // AP_CLOSED: closed (or disconnected) and drained
    }
    ap_topic_unsubscribe(&bus, &sub);
    /* USAGE end */
    EXPECT_EQ(usage_used, 1);
    EXPECT_EQ(usage_gaps, 0);
    ap_topic_fini(&bus);
}

#define TNODES 64
static uint64_t tmem[AP_TOPIC_BYTES(64, 8, TNODES) / 8];

static void topic_init(ap_topic *t, size_t capacity)
{
    EXPECT_EQ(ap_topic_init(t, tmem, sizeof tmem, capacity, 8, TNODES), AP_OK);
}

/* a sub with its own ring */
typedef struct tsub {
    ap_topic_sub s;
    uint64_t ring[AP_TOPIC_SUB_BYTES(16) / 8];
} tsub;

static ap_status tsub_on(ap_topic *t, tsub *ts, const char *pat, ap_topic_policy pol, size_t depth)
{
    memset(&ts->s, 0, sizeof ts->s);
    return ap_topic_subscribe(t, &ts->s, pat, pol, ts->ring, sizeof ts->ring, depth);
}

static void pub(ap_topic *t, const char *subj, uint64_t v)
{
    EXPECT_EQ(ap_topic_try_publish(t, subj, &v), AP_OK, "publish %s", subj);
}

/* the reference matcher: NATS's rules written the obvious way */
static bool naive_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pe = strchr(pat, '.'), *se = strchr(subj, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return true; /* one or more tokens left: subj is non-empty here */
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || memcmp(pat, subj, pl) != 0))
            return false;
        if (!pe || !se)
            return !pe && !se;
        pat = pe + 1;
        subj = se + 1;
    }
}

Test(topic, matching_follows_nats)
{
    static const char *pats[] = {"a", "a.b", "a.*", "a.>", "*.b", ">", "*", "a.*.c",
                                 "a.b.>", "*.*", "a.b.c", "b.>"};
    static const char *subs[] = {"a", "a.b", "a.c", "a.b.c", "b", "b.b", "a.x.c", "a.b.c.d",
                                 "c.d.e"};
    enum { NP = sizeof pats / sizeof pats[0], NS = sizeof subs / sizeof subs[0] };
    ap_topic t;
    topic_init(&t, 64);
    static tsub ts[NP];
    for (int i = 0; i < NP; i++)
        EXPECT_EQ(tsub_on(&t, &ts[i], pats[i], AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK, "%s", pats[i]);
    for (int k = 0; k < NS; k++)
        pub(&t, subs[k], (uint64_t)k);
    for (int i = 0; i < NP; i++) {
        uint64_t v;
        char subj[AP_TOPIC_SUBJECT_MAX + 1];
        for (int k = 0; k < NS; k++) {
            if (!naive_match(pats[i], subs[k]))
                continue;
            EXPECT_EQ(ap_topic_sub_try_recv(&ts[i].s, &v, subj, NULL), AP_OK, "%s gets %s", pats[i], subs[k]);
            EXPECT_EQ(v, (uint64_t)k, "%s: in publish order", pats[i]);
            EXPECT_EQ(strcmp(subj, subs[k]), 0);
        }
        EXPECT_EQ(ap_topic_sub_try_recv(&ts[i].s, &v, NULL, NULL), AP_EMPTY, "%s got more", pats[i]);
        ap_topic_unsubscribe(&t, &ts[i].s);
    }
    EXPECT_EQ(t.nodes_free, TNODES, "every node back after the last unsubscribe");
    ap_topic_fini(&t);
}

Test(topic, bad_subjects_are_inval_and_change_nothing)
{
    static const char *badpat[] = {"", ".", "a.", ".a", "a..b", "a.>.b", ">.a", "a*", "a.b>",
                                   "a b", "a.\tb", NULL};
    static const char *badsubj[] = {"", "a.*", "*", ">", "a.>", "a..b", "a.", NULL};
    ap_topic t;
    topic_init(&t, 64);
    tsub ok;
    EXPECT_EQ(tsub_on(&t, &ok, "a.>", AP_TOPIC_POLICY_OVERWRITE, 8), AP_OK);
    char longtok[AP_TOPIC_TOKEN_MAX + 2], longsubj[AP_TOPIC_SUBJECT_MAX + 2];
    memset(longtok, 'x', sizeof longtok - 1);
    longtok[sizeof longtok - 1] = '\0';
    for (size_t i = 0; i < sizeof longsubj - 1; i++)
        longsubj[i] = i % 2 ? '.' : 'a'; /* "a.a.a...": index 128 is 'a' */
    longsubj[AP_TOPIC_SUBJECT_MAX + 1] = '\0'; /* 129 bytes, 65 good tokens */
    uint32_t nodes = t.nodes_free;
    for (int i = 0; badpat[i] || i == 0; i++) {
        tsub b;
        EXPECT_EQ(tsub_on(&t, &b, badpat[i], AP_TOPIC_POLICY_OVERWRITE, 8), AP_INVAL, "pattern '%s'", badpat[i]);
        EXPECT_EQ(ap_topic_check(badpat[i], true), AP_INVAL);
    }
    tsub b;
    EXPECT_EQ(tsub_on(&t, &b, longtok, AP_TOPIC_POLICY_OVERWRITE, 8), AP_INVAL, "token too long");
    EXPECT_EQ(tsub_on(&t, &b, longsubj, AP_TOPIC_POLICY_OVERWRITE, 8), AP_INVAL, "subject too long");
    EXPECT_EQ(ap_topic_check(longsubj, true), AP_INVAL, "129 bytes");
    longsubj[AP_TOPIC_SUBJECT_MAX] = '\0'; /* 128 bytes, ends with '.' */
    EXPECT_EQ(ap_topic_check(longsubj, true), AP_INVAL, "trailing dot");
    longsubj[AP_TOPIC_SUBJECT_MAX - 1] = '\0'; /* 127 bytes */
    EXPECT_EQ(ap_topic_check(longsubj, false), AP_OK, "long but within the limit");
    longsubj[AP_TOPIC_SUBJECT_MAX - 1] = 'b';
    EXPECT_EQ(ap_topic_check(longsubj, false), AP_OK, "exactly AP_TOPIC_SUBJECT_MAX bytes");
    EXPECT_EQ(tsub_on(&t, &b, NULL, AP_TOPIC_POLICY_OVERWRITE, 8), AP_INVAL);
    EXPECT_EQ(tsub_on(&t, &b, "a", (ap_topic_policy)7, 8), AP_INVAL, "unknown policy");
    EXPECT_EQ(tsub_on(&t, &b, "a", AP_TOPIC_POLICY_OVERWRITE, 1), AP_INVAL, "depth 1");
    EXPECT_EQ(tsub_on(&t, &b, "a", AP_TOPIC_POLICY_OVERWRITE, 17), AP_INVAL, "ring too small");
    memset(&b.s, 0, sizeof b.s);
    EXPECT_EQ(ap_topic_subscribe(&t, &b.s, "a", AP_TOPIC_POLICY_OVERWRITE,
                                 (char *)b.ring + 4, sizeof b.ring - 8, 2), AP_INVAL, "misaligned");
    EXPECT_EQ(ap_topic_subscribe(&t, &ok.s, "b", AP_TOPIC_POLICY_OVERWRITE, b.ring, sizeof b.ring, 2),
              AP_INVAL, "already subscribed");
    EXPECT_EQ(t.nodes_free, nodes, "a refused subscribe made no node");
    uint64_t v = 1;
    for (int i = 0; badsubj[i]; i++)
        EXPECT_EQ(ap_topic_try_publish(&t, badsubj[i], &v), AP_INVAL, "subject '%s'", badsubj[i]);
    EXPECT_EQ(ap_topic_try_publish(&t, NULL, &v), AP_INVAL);
    EXPECT_EQ(ap_topic_published(&t), 0, "a refused publish published nothing");
    EXPECT_EQ(ap_topic_sub_try_recv(&ok.s, &v, NULL, NULL), AP_EMPTY);
    ap_topic_unsubscribe(&t, &ok.s);
    ap_topic_fini(&t);
}

Test(topic, init_refuses_bad_memory)
{
    ap_topic t;
    memset(&t, 0x5a, sizeof t);
    EXPECT_EQ(ap_topic_init(&t, NULL, sizeof tmem, 64, 8, TNODES), AP_INVAL);
    EXPECT_EQ(ap_topic_init(&t, tmem, sizeof tmem - 8, 64, 8, TNODES), AP_INVAL, "one word short");
    EXPECT_EQ(ap_topic_init(&t, (char *)tmem + 4, sizeof tmem - 8, 4, 8, 4), AP_INVAL, "misaligned");
    EXPECT_EQ(ap_topic_init(&t, tmem, sizeof tmem, 0, 8, TNODES), AP_INVAL);
    EXPECT_EQ(ap_topic_init(&t, tmem, sizeof tmem, 64, 0, TNODES), AP_INVAL);
    EXPECT_EQ(ap_topic_init(&t, tmem, sizeof tmem, 64, 8, 0), AP_INVAL);
    EXPECT_EQ(ap_topic_init(&t, tmem, SIZE_MAX, SIZE_MAX / 8, 8, TNODES), AP_INVAL, "overflow");
    EXPECT_EQ(((unsigned char *)&t)[0], 0x5a, "nothing written");
    EXPECT_EQ(ap_topic_init(&t, tmem, sizeof tmem, 64, 8, TNODES), AP_OK, "exactly AP_TOPIC_BYTES");
    ap_topic_fini(&t);
}

Test(topic, trie_nodes_are_bounded_and_shared)
{
    static uint64_t small[AP_TOPIC_BYTES(8, 8, 3) / 8];
    ap_topic t;
    EXPECT_EQ(ap_topic_init(&t, small, sizeof small, 8, 8, 3), AP_OK);
    tsub a, b, c, d;
    EXPECT_EQ(tsub_on(&t, &a, "x.y", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    EXPECT_EQ(tsub_on(&t, &b, "x.y", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK, "same pattern: no new node");
    EXPECT_EQ(tsub_on(&t, &c, "x.z.w", AP_TOPIC_POLICY_OVERWRITE, 4), AP_FULL, "needs 2 nodes, 1 left");
    EXPECT_EQ(t.nodes_free, 1, "a refused subscribe made no node");
    EXPECT_EQ(tsub_on(&t, &c, "x.*", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    EXPECT_EQ(tsub_on(&t, &d, "q", AP_TOPIC_POLICY_OVERWRITE, 4), AP_FULL);
    ap_topic_unsubscribe(&t, &a.s);
    EXPECT_EQ(t.nodes_free, 0, "x.y still used by b");
    ap_topic_unsubscribe(&t, &b.s);
    EXPECT_EQ(t.nodes_free, 1);
    EXPECT_EQ(tsub_on(&t, &d, "q", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK, "a freed node is reused");
    pub(&t, "x.y", 1);
    pub(&t, "q", 2);
    uint64_t v;
    EXPECT_EQ(ap_topic_sub_try_recv(&c.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 2);
    ap_topic_unsubscribe(&t, &c.s);
    ap_topic_unsubscribe(&t, &d.s);
    EXPECT_EQ(t.nodes_free, 3);
    ap_topic_fini(&t);
}

/* table churn: many siblings, removed in an order that exercises the
 * backward-shift deletion; every survivor stays findable */
Test(topic, churn_keeps_every_pattern_findable)
{
    static uint64_t mem[AP_TOPIC_BYTES(64, 8, 40) / 8];
    static tsub ts[40];
    ap_topic t;
    EXPECT_EQ(ap_topic_init(&t, mem, sizeof mem, 64, 8, 40), AP_OK);
    char name[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(name[i], sizeof name[i], "s%d", i);
        EXPECT_EQ(tsub_on(&t, &ts[i], name[i], AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    }
    EXPECT_EQ(t.nodes_free, 0);
    bool live[40];
    for (int i = 0; i < 40; i++)
        live[i] = true;
    for (int round = 0; round < 40; round++) {
        int k = (round * 17 + 3) % 40;
        if (live[k]) {
            ap_topic_unsubscribe(&t, &ts[k].s);
            live[k] = false;
        }
        for (int i = 0; i < 40; i++) {
            uint64_t v = (uint64_t)i;
            pub(&t, name[i], v);
            if (live[i]) {
                EXPECT_EQ(ap_topic_sub_try_recv(&ts[i].s, &v, NULL, NULL), AP_OK, "%s lost after removing %d", name[i], k);
                EXPECT_EQ(v, (uint64_t)i);
            }
        }
    }
    for (int i = 0; i < 40; i++)
        if (live[i])
            ap_topic_unsubscribe(&t, &ts[i].s);
    EXPECT_EQ(t.nodes_free, 40);
    for (size_t i = 0; i < t.tsize; i++)
        EXPECT_EQ(t.table[i], 0, "table empty again");
    ap_topic_fini(&t);
}

Test(topic, one_copy_per_message_however_many_match)
{
    ap_topic t;
    topic_init(&t, 8);
    static tsub ts[6];
    const char *pats[] = {"a.b", "a.*", "a.>", ">", "*.b", "a.b"};
    for (int i = 0; i < 6; i++)
        EXPECT_EQ(tsub_on(&t, &ts[i], pats[i], AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    pub(&t, "a.b", 42);
    /* every subscription references the same slot */
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(ap_topic_sub_len(&ts[i].s), 1);
        EXPECT_EQ(ts[i].ring[1], 0, "slot index");
        EXPECT_EQ(ts[i].ring[0], 0, "sequence 0");
    }
    EXPECT_EQ(t.next_slot, 1, "one slot used");
    for (int i = 0; i < 6; i++)
        ap_topic_unsubscribe(&t, &ts[i].s);
    ap_topic_fini(&t);
}

Test(topic, overwrite_reports_exact_drops_in_order)
{
    ap_topic t;
    topic_init(&t, 64);
    tsub a;
    EXPECT_EQ(tsub_on(&t, &a, "x", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    for (uint64_t i = 0; i < 10; i++)
        pub(&t, "x", i); /* 0..3 queued, 4..9 counted */
    uint64_t v, n = 0;
    for (uint64_t i = 0; i < 4; i++) {
        EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
        EXPECT_EQ(v, i);
    }
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, &n), AP_DROPPED, "caught up: the count");
    EXPECT_EQ(n, 6);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_EMPTY);
    /* full again; a publish with room puts the marker first */
    for (uint64_t i = 10; i < 16; i++)
        pub(&t, "x", i); /* 10..13 queued, 14, 15 counted */
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 10);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 11);
    pub(&t, "x", 16); /* room 2: marker(2), 16 */
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 12);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 13);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, &n), AP_DROPPED);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 16);
    EXPECT_EQ(ap_topic_sub_received(&a.s) + ap_topic_sub_lost(&a.s), 17);
    ap_topic_unsubscribe(&t, &a.s);
    ap_topic_fini(&t);
}

Test(topic, overwrite_counts_slots_reused_before_read)
{
    ap_topic t;
    topic_init(&t, 4); /* 4 shared slots, a ring of 16 references */
    tsub a, other;
    EXPECT_EQ(tsub_on(&t, &a, "x", AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK);
    EXPECT_EQ(tsub_on(&t, &other, "y", AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK);
    pub(&t, "x", 0);
    pub(&t, "x", 1);
    for (uint64_t i = 0; i < 3; i++)
        pub(&t, "y", 100 + i); /* the ring laps: x's 0 is overwritten, 1 not */
    pub(&t, "x", 2);           /* reuses 1's slot */
    uint64_t v, n = 0;
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, &n), AP_DROPPED);
    EXPECT_EQ(n, 2, "0 and 1 were overwritten");
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_topic_sub_received(&a.s) + ap_topic_sub_lost(&a.s), 3);
    ap_topic_unsubscribe(&t, &a.s);
    ap_topic_unsubscribe(&t, &other.s);
    ap_topic_fini(&t);
}

Test(topic, block_publisher_waits_exactly_while_a_matching_block_sub_is_full)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub blk, ovw;
    EXPECT_EQ(tsub_on(&t, &blk, "a.*", AP_TOPIC_POLICY_BLOCK, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &ovw, ">", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK);
    pub(&t, "a.1", 1);
    pub(&t, "a.2", 2);
    uint64_t v = 3;
    EXPECT_EQ(ap_topic_try_publish(&t, "a.3", &v), AP_FULL, "BLOCK sub full");
    EXPECT_EQ(ap_topic_published(&t), 2, "nothing published");
    EXPECT_EQ(ap_topic_sub_len(&ovw.s), 2, "the OVERWRITE sub got nothing either");
    for (uint64_t i = 0; i < 20; i++)
        pub(&t, "b", i); /* BLOCK does not match: never waits; pins make the ring skip */
    /* a publish future waits, and is woken by the receive that makes room */
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_topic_pub_fut f;
    const uint64_t three = 3;
    ap_topic_publish_fut_init(&f, &t, "a.3", &three);
    EXPECT_EQ(ap_topic_publish_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_topic_sub_try_recv(&blk.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 1, "the pinned slot survived 20 publishes");
    EXPECT_GE(calls(&w), 1, "the receive woke the publisher");
    EXPECT_EQ(ap_topic_publish_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_topic_publish_status(&f), AP_OK);
    EXPECT_EQ(ap_topic_sub_try_recv(&blk.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_topic_sub_try_recv(&blk.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(ap_topic_sub_lost(&blk.s), 0, "BLOCK loses nothing");
    /* a deadline applies */
    pub(&t, "a.4", 4);
    pub(&t, "a.5", 5);
    EXPECT_EQ(ap_topic_publish_wait(&t, "a.6", &v, ap_now_ns() + 2000000), AP_TIMEDOUT);
    EXPECT_EQ(ap_topic_published(&t), 25);
    ap_topic_unsubscribe(&t, &blk.s); /* unpins and wakes */
    EXPECT_EQ(ap_topic_publish_wait(&t, "a.6", &v, AP_DEADLINE_NONE), AP_OK);
    ap_topic_unsubscribe(&t, &ovw.s);
    for (size_t i = 0; i < 8; i++)
        EXPECT_EQ(atomic_load(&ap__topic_slot(&t, i)[1]), 0, "slot %zu unpinned", i);
    ap_topic_fini(&t);
}

Test(topic, pin_budget_stays_below_capacity)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub a, b, c;
    EXPECT_EQ(tsub_on(&t, &a, "a", AP_TOPIC_POLICY_BLOCK, 4), AP_OK);
    EXPECT_EQ(tsub_on(&t, &b, "b", AP_TOPIC_POLICY_DISCONNECT, 4), AP_FULL, "4 + 4 pins == capacity");
    EXPECT_EQ(tsub_on(&t, &b, "b", AP_TOPIC_POLICY_DISCONNECT, 3), AP_OK);
    EXPECT_EQ(tsub_on(&t, &c, "c", AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK, "OVERWRITE pins nothing");
    for (uint64_t i = 0; i < 4; i++)
        pub(&t, "a", i);
    for (uint64_t i = 0; i < 3; i++)
        pub(&t, "b", i);
    for (uint64_t i = 0; i < 30; i++)
        pub(&t, "c", i); /* 7 slots pinned: c cycles through the last one */
    uint64_t v, n;
    /* all 16 queued references name the one free slot: stale but the last,
     * which the 14 that found the ring full overwrote too */
    EXPECT_EQ(ap_topic_sub_try_recv(&c.s, &v, NULL, &n), AP_DROPPED);
    EXPECT_EQ(n, 16);
    EXPECT_EQ(ap_topic_sub_try_recv(&c.s, &v, NULL, &n), AP_DROPPED);
    EXPECT_EQ(n, 14, "then those that found the ring full");
    EXPECT_EQ(ap_topic_sub_try_recv(&c.s, &v, NULL, NULL), AP_EMPTY);
    pub(&t, "c", 30);
    EXPECT_EQ(ap_topic_sub_try_recv(&c.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 30);
    EXPECT_EQ(ap_topic_sub_received(&c.s) + ap_topic_sub_lost(&c.s), 31);
    ap_topic_unsubscribe(&t, &a.s);
    ap_topic_unsubscribe(&t, &b.s);
    ap_topic_unsubscribe(&t, &c.s);
    EXPECT_EQ(t.pinned, 0);
    ap_topic_fini(&t);
}

Test(topic, disconnect_closes_a_laggard_with_its_count)
{
    ap_topic t;
    topic_init(&t, 16);
    tsub d, o;
    EXPECT_EQ(tsub_on(&t, &d, "x.>", AP_TOPIC_POLICY_DISCONNECT, 3), AP_OK);
    EXPECT_EQ(tsub_on(&t, &o, "x.>", AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v;
    ap_topic_recv_fut f;
    ap_topic_recv_fut_init(&f, &d.s, &v, NULL);
    EXPECT_EQ(ap_topic_recv_poll(&f, &cx), AP_PENDING);
    for (uint64_t i = 0; i < 6; i++)
        pub(&t, "x.y", i); /* 0..2 queued, 3 disconnects it, 4, 5 go elsewhere */
    EXPECT_GE(calls(&w), 1);
    EXPECT_EQ(ap_topic_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_topic_recv_status(&f), AP_OK);
    EXPECT_EQ(v, 0);
    EXPECT(ap_topic_sub_is_disconnected(&d.s));
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_CLOSED);
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_CLOSED);
    EXPECT_EQ(ap_topic_sub_received(&d.s), 3);
    EXPECT_EQ(ap_topic_sub_lost(&d.s), 1, "the message that did not fit, counted once");
    EXPECT_EQ(ap_topic_sub_len(&o.s), 6, "the publisher never waited");
    ap_topic_unsubscribe(&t, &d.s);
    EXPECT_EQ(t.pinned, 0);
    EXPECT_EQ(tsub_on(&t, &d, "x.y", AP_TOPIC_POLICY_DISCONNECT, 3), AP_OK, "reusable");
    ap_topic_unsubscribe(&t, &d.s);
    ap_topic_unsubscribe(&t, &o.s);
    ap_topic_fini(&t);
}

Test(topic, close_drains_then_closes_and_wakes_everyone)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub a, b;
    EXPECT_EQ(tsub_on(&t, &a, "a", AP_TOPIC_POLICY_BLOCK, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &b, "b", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK);
    pub(&t, "a", 1);
    pub(&t, "a", 2);
    tw wp = {0}, wr = {0};
    ap_cx cxp = cx_of(&wp), cxr = cx_of(&wr);
    uint64_t v = 3, r;
    ap_topic_pub_fut pf;
    ap_topic_publish_fut_init(&pf, &t, "a", &v);
    EXPECT_EQ(ap_topic_publish_poll(&pf, &cxp), AP_PENDING);
    ap_topic_recv_fut rf;
    ap_topic_recv_fut_init(&rf, &b.s, &r, NULL);
    EXPECT_EQ(ap_topic_recv_poll(&rf, &cxr), AP_PENDING);
    ap_topic_close(&t);
    EXPECT_GE(calls(&wp), 1);
    EXPECT_GE(calls(&wr), 1);
    EXPECT_EQ(ap_topic_publish_poll(&pf, &cxp), AP_READY);
    EXPECT_EQ(ap_topic_publish_status(&pf), AP_CLOSED);
    EXPECT_EQ(ap_topic_recv_poll(&rf, &cxr), AP_READY);
    EXPECT_EQ(ap_topic_recv_status(&rf), AP_CLOSED);
    EXPECT_EQ(ap_topic_try_publish(&t, "a", &v), AP_CLOSED);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &r, NULL, NULL), AP_OK, "drained after close");
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &r, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &r, NULL, NULL), AP_CLOSED);
    EXPECT(ap_topic_is_closed(&t));
    tsub late;
    EXPECT_EQ(tsub_on(&t, &late, "a", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK, "subscribe after close");
    EXPECT_EQ(ap_topic_sub_try_recv(&late.s, &r, NULL, NULL), AP_CLOSED, "and its first receive says so");
    ap_topic_unsubscribe(&t, &late.s);
    ap_topic_unsubscribe(&t, &a.s);
    ap_topic_unsubscribe(&t, &b.s);
    ap_topic_fini(&t);
}

Test(topic, receive_future_wakes_on_a_matching_publish_only)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub a;
    EXPECT_EQ(tsub_on(&t, &a, "a.*", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    uint64_t v = 0;
    char subj[AP_TOPIC_SUBJECT_MAX + 1];
    ap_topic_recv_fut f;
    ap_topic_recv_fut_init(&f, &a.s, &v, subj);
    EXPECT_EQ(ap_topic_recv_poll(&f, &cx), AP_PENDING);
    pub(&t, "b.x", 1);
    pub(&t, "a.x.y", 2);
    EXPECT_EQ(calls(&w), 0, "a non-matching publish wakes nobody");
    pub(&t, "a.z", 3);
    EXPECT_EQ(calls(&w), 1);
    EXPECT_EQ(ap_topic_recv_poll(&f, &cx), AP_READY);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(strcmp(subj, "a.z"), 0);
    ap_topic_unsubscribe(&t, &a.s);
    ap_topic_fini(&t);
}

/* threads: a stalled OVERWRITE subscriber, a live BLOCK one; identity accounting */
typedef struct tthr {
    ap_topic *t;
    tsub *s;
    uint64_t n, got;
} tthr;

static void *topic_block_reader(void *p)
{
    tthr *a = (tthr *)p;
    uint64_t v, want = 0;
    for (;;) {
        ap_status st = ap_topic_sub_recv_wait(&a->s->s, &v, NULL, AP_DEADLINE_NONE);
        if (st == AP_CLOSED)
            break;
        EXPECT_EQ(st, AP_OK);
        EXPECT_EQ(v, want, "BLOCK: every message, in order");
        want++;
    }
    a->got = want;
    return NULL;
}

Test(topic, block_loses_nothing_across_threads, .timeout = TEST_TIMEOUT_S)
{
    ap_topic t;
    topic_init(&t, 16);
    tsub blk, stalled;
    EXPECT_EQ(tsub_on(&t, &blk, "k.*", AP_TOPIC_POLICY_BLOCK, 4), AP_OK);
    EXPECT_EQ(tsub_on(&t, &stalled, "k.>", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
    tthr a = {&t, &blk, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, topic_block_reader, &a);
    enum { N = 20000 };
    for (uint64_t i = 0; i < N; i++)
        EXPECT_EQ(ap_topic_publish_wait(&t, "k.v", &i, AP_DEADLINE_NONE), AP_OK);
    ap_topic_close(&t);
    pthread_join(th, NULL);
    EXPECT_EQ(a.got, N);
    uint64_t v;
    ap_status st;
    while ((st = ap_topic_sub_try_recv(&stalled.s, &v, NULL, NULL)) == AP_OK || st == AP_DROPPED) {}
    EXPECT_EQ(ap_topic_sub_received(&stalled.s) + ap_topic_sub_lost(&stalled.s), N,
              "OVERWRITE: received + lost == published");
    ap_topic_unsubscribe(&t, &blk.s);
    ap_topic_unsubscribe(&t, &stalled.s);
    ap_topic_fini(&t);
}

/* a pruned wildcard node leaves no pointer behind: its node is reused for
 * another pattern, and a publish must not reach that one through the old
 * parent's `*` or `>` */
Test(topic, pruned_wildcard_leaves_no_trace)
{
    ap_topic t;
    topic_init(&t, 16);
    tsub a, star, gt, other, q;
    for (int order = 0; order < 2; order++) {
        EXPECT_EQ(tsub_on(&t, &a, "a", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
        EXPECT_EQ(tsub_on(&t, &star, "a.*", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
        EXPECT_EQ(tsub_on(&t, &gt, "a.>", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
        /* frees "a.*" and "a.>" ("a" stays), in either order */
        ap_topic_unsubscribe(&t, order ? &gt.s : &star.s);
        ap_topic_unsubscribe(&t, order ? &star.s : &gt.s);
        /* the free list hands them out again: "q" gets one, "b" of "b.c" the other */
        EXPECT_EQ(tsub_on(&t, &q, "q", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
        EXPECT_EQ(tsub_on(&t, &other, "b.c", AP_TOPIC_POLICY_OVERWRITE, 4), AP_OK);
        pub(&t, "a.x.c", 1);
        pub(&t, "a.c", 2);
        pub(&t, "a.x", 4);
        uint64_t v = 0;
        EXPECT_EQ(ap_topic_sub_try_recv(&other.s, &v, NULL, NULL), AP_EMPTY, "b.c got %lu", (unsigned long)v);
        EXPECT_EQ(ap_topic_sub_try_recv(&q.s, &v, NULL, NULL), AP_EMPTY, "q got %lu", (unsigned long)v);
        EXPECT_EQ(ap_topic_sub_try_recv(&a.s, &v, NULL, NULL), AP_EMPTY);
        pub(&t, "b.c", 3);
        EXPECT_EQ(ap_topic_sub_try_recv(&other.s, &v, NULL, NULL), AP_OK);
        EXPECT_EQ(v, 3);
        ap_topic_unsubscribe(&t, &a.s);
        ap_topic_unsubscribe(&t, &other.s);
        ap_topic_unsubscribe(&t, &q.s);
        EXPECT_EQ(t.nodes_free, TNODES);
    }
    ap_topic_fini(&t);
}

/* the decoupling theorem, counted: subscribers that never read (OVERWRITE,
 * DISCONNECT) never make a publish answer anything but AP_OK, and their
 * accounting stays exact */
Test(topic, stalled_non_block_subscribers_never_hold_the_publisher)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub o1, o2, d;
    EXPECT_EQ(tsub_on(&t, &o1, "p.*", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &o2, "p.>", AP_TOPIC_POLICY_OVERWRITE, 16), AP_OK);
    EXPECT_EQ(tsub_on(&t, &d, "p.x", AP_TOPIC_POLICY_DISCONNECT, 4), AP_OK);
    enum { N = 10000 };
    for (uint64_t i = 0; i < N; i++)
        pub(&t, i % 3 ? "p.x" : "p.y", i);
    uint64_t v, n, last = 0;
    ap_status st;
    bool any = false;
    while ((st = ap_topic_sub_try_recv(&o2.s, &v, NULL, &n)) == AP_OK || st == AP_DROPPED) {
        if (st == AP_OK) {
            EXPECT(!any || v > last, "in publish order");
            last = v;
            any = true;
        }
    }
    EXPECT_EQ(st, AP_EMPTY);
    EXPECT_EQ(ap_topic_sub_received(&o2.s) + ap_topic_sub_lost(&o2.s), N);
    while ((st = ap_topic_sub_try_recv(&o1.s, &v, NULL, &n)) == AP_OK || st == AP_DROPPED) {}
    EXPECT_EQ(ap_topic_sub_received(&o1.s) + ap_topic_sub_lost(&o1.s), N);
    while ((st = ap_topic_sub_try_recv(&d.s, &v, NULL, NULL)) == AP_OK) {}
    EXPECT_EQ(st, AP_CLOSED);
    EXPECT_EQ(ap_topic_sub_received(&d.s), 4);
    EXPECT_EQ(ap_topic_sub_lost(&d.s), 1);
    EXPECT_EQ(ap_topic_published(&t), N);
    ap_topic_unsubscribe(&t, &o1.s);
    ap_topic_unsubscribe(&t, &o2.s);
    ap_topic_unsubscribe(&t, &d.s);
    ap_topic_fini(&t);
}

/* #17: the topic futures expose their ap_future as `base`, first, and
 * driving it through base is driving the typed poll */
AP_STATIC_ASSERT(offsetof(ap_topic_pub_fut, base) == 0, "ap_topic_pub_fut: base first");
AP_STATIC_ASSERT(offsetof(ap_topic_recv_fut, base) == 0, "ap_topic_recv_fut: base first");

Test(topic, futures_are_driven_through_base)
{
    ap_topic t;
    topic_init(&t, 8);
    tsub blk;
    EXPECT_EQ(tsub_on(&t, &blk, "a", AP_TOPIC_POLICY_BLOCK, 2), AP_OK);
    pub(&t, "a", 1);
    pub(&t, "a", 2);
    tw wp = {0}, wr = {0};
    ap_cx cxp = cx_of(&wp), cxr = cx_of(&wr);
    const uint64_t three = 3;
    ap_topic_pub_fut pf;
    ap_topic_publish_fut_init(&pf, &t, "a", &three);
    EXPECT_EQ(pf.base.poll(&pf.base, &cxp), AP_PENDING, "full: the publish waits");
    uint64_t v = 0;
    ap_topic_recv_fut rf;
    ap_topic_recv_fut_init(&rf, &blk.s, &v, NULL);
    EXPECT_EQ(rf.base.poll(&rf.base, &cxr), AP_READY);
    EXPECT_EQ(ap_topic_recv_status(&rf), AP_OK);
    EXPECT_EQ(v, 1);
    EXPECT_GE(calls(&wp), 1, "the receive woke the publish");
    EXPECT_EQ(pf.base.poll(&pf.base, &cxp), AP_READY);
    EXPECT_EQ(ap_topic_publish_status(&pf), AP_OK);
    EXPECT_EQ(ap_topic_sub_recv_wait(&blk.s, &v, NULL, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(v, 2);
    EXPECT_EQ(ap_topic_sub_try_recv(&blk.s, &v, NULL, NULL), AP_OK);
    EXPECT_EQ(v, 3);
    /* cancel through base: a parked receive took nothing */
    ap_topic_recv_fut_init(&rf, &blk.s, &v, NULL);
    EXPECT_EQ(rf.base.poll(&rf.base, &cxr), AP_PENDING);
    rf.base.cancel(&rf.base);
    EXPECT_EQ(ap_topic_recv_status(&rf), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&blk.s.wl));
    pub(&t, "a", 4);
    EXPECT_EQ(ap_topic_sub_try_recv(&blk.s, &v, NULL, NULL), AP_OK, "the cancelled receive took nothing");
    EXPECT_EQ(v, 4);
    ap_topic_unsubscribe(&t, &blk.s);
    ap_topic_fini(&t);
}

/* ---- stats (issue #14): exact counters after a known single-thread sequence ---- */

Test(pubsub, stats_count_exactly, .timeout = TEST_TIMEOUT_S)
{
    ap_pubsub ps;
    EXPECT_EQ(ap_pubsub_init(&ps, big_buf, sizeof big_buf, 4, U64, OVW), AP_OK);
    ap_pubsub_stats st;
    ap_pubsub_sub_stats ss;
    ap_pubsub_stats_get(&ps, &st);
    EXPECT(st.published == 0 && st.waiters == 0 && st.waits == 0 && st.wait_ns == 0);
    ap_sub a = {0}, b = {0};
    ap_pubsub_subscribe(&ps, &a);
    for (uint64_t i = 0; i < 6; i++)
        publish_u64(&ps, i);
    uint64_t v = 0, n = 0;
    EXPECT_EQ(ap_sub_try_recv(&a, &v, &n), AP_DROPPED);
    EXPECT_EQ(n, 2, "6 published into 4 slots: 2 overwritten");
    for (uint64_t i = 2; i < 6; i++) {
        EXPECT_EQ(ap_sub_try_recv(&a, &v, NULL), AP_OK);
        EXPECT_EQ(v, i);
    }
    /* a second lap: 5 more into 4 slots, 1 lost; dropped is the sum, not the latest */
    for (uint64_t i = 6; i < 11; i++)
        publish_u64(&ps, i);
    EXPECT_EQ(ap_sub_try_recv(&a, &v, &n), AP_DROPPED);
    EXPECT_EQ(n, 1);
    for (uint64_t i = 7; i < 11; i++) {
        EXPECT_EQ(ap_sub_try_recv(&a, &v, NULL), AP_OK);
        EXPECT_EQ(v, i);
    }
    ap_pubsub_sub_stats_get(&a, &ss);
    EXPECT_EQ(ss.received, 8);
    EXPECT_EQ(ss.dropped, 3);
    /* b subscribes at the tail: a receive future parks, is cancelled */
    ap_pubsub_subscribe(&ps, &b);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_sub_recv_fut f;
    ap_sub_recv_fut_init(&f, &b, &v);
    EXPECT_EQ(ap_sub_recv_poll(&f, &cx), AP_PENDING);
    ap_pubsub_stats_get(&ps, &st);
    EXPECT_EQ(st.published, 11);
    EXPECT_EQ(st.waiters, 1);
    EXPECT_EQ(st.waits, 1);
    EXPECT_EQ(st.wait_ns, 0, "a future never parks a thread");
    ap_sub_recv_cancel(&f);
    ap_pubsub_stats_get(&ps, &st);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_EQ(st.waits, 1);
    /* a blocking receive that parks and times out queues once and parks > 0 ns */
    EXPECT_EQ(ap_sub_recv_wait(&b, &v, ap_now_ns() + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    ap_pubsub_stats_get(&ps, &st);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_EQ(st.waits, 2);
    EXPECT_GT(st.wait_ns, 0);
    ap_pubsub_sub_stats_get(&b, &ss);
    EXPECT(ss.received == 0 && ss.dropped == 0);
    /* close leaves published as it was (the CLOSED bit is not a count) */
    ap_pubsub_close(&ps);
    EXPECT_EQ(ap_pubsub_try_publish(&ps, &v), AP_CLOSED);
    ap_pubsub_stats_get(&ps, &st);
    EXPECT_EQ(st.published, 11);
    ap_pubsub_unsubscribe(&ps, &a);
    ap_pubsub_unsubscribe(&ps, &b);
    ap_pubsub_fini(&ps);
}

Test(topic, stats_count_exactly, .timeout = TEST_TIMEOUT_S)
{
    ap_topic t;
    topic_init(&t, 16);
    ap_topic_stats st;
    ap_topic_sub_stats ss;
    ap_topic_stats_get(&t, &st);
    EXPECT(st.published == 0 && st.subscriptions == 0 && st.blocked == 0 && st.dropped == 0 &&
           st.disconnected == 0 && st.waiters == 0 && st.waits == 0 && st.wait_ns == 0);
    static tsub o, d, b, e;
    EXPECT_EQ(tsub_on(&t, &o, "a", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &d, "a", AP_TOPIC_POLICY_DISCONNECT, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &b, "b", AP_TOPIC_POLICY_BLOCK, 2), AP_OK);
    EXPECT_EQ(tsub_on(&t, &e, "c", AP_TOPIC_POLICY_OVERWRITE, 2), AP_OK);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.subscriptions, 4);
    /* three on "a": the third finds both rings full: o drops it, d disconnects */
    pub(&t, "a", 1);
    pub(&t, "a", 2);
    pub(&t, "a", 3);
    EXPECT(ap_topic_sub_is_disconnected(&d.s));
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.published, 3);
    EXPECT_EQ(st.dropped, 1);
    EXPECT_EQ(st.disconnected, 1);
    EXPECT_EQ(st.subscriptions, 3, "a disconnect unlinks");
    EXPECT_EQ(st.blocked, 0);
    /* two on "b" fill the BLOCK ring; the third is refused */
    pub(&t, "b", 4);
    pub(&t, "b", 5);
    uint64_t v = 6;
    EXPECT_EQ(ap_topic_try_publish(&t, "b", &v), AP_FULL);
    /* a publish future parks once, then is cancelled: its poll tries,
     * queues and re-tries (THE LADDER), two more refusals */
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_topic_pub_fut pf;
    ap_topic_publish_fut_init(&pf, &t, "b", &v);
    EXPECT_EQ(ap_topic_publish_poll(&pf, &cx), AP_PENDING);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.published, 5);
    EXPECT_EQ(st.blocked, 3);
    EXPECT_EQ(st.waiters, 1);
    EXPECT_EQ(st.waits, 1);
    EXPECT_EQ(st.wait_ns, 0);
    ap_topic_publish_cancel(&pf);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_EQ(st.waits, 1);
    /* a blocking publish that parks and times out adds parked time */
    EXPECT_EQ(ap_topic_publish_wait(&t, "b", &v, ap_now_ns() + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.published, 5, "nothing published");
    EXPECT_EQ(st.waiters, 0);
    EXPECT_EQ(st.waits, 2);
    EXPECT_GT(st.wait_ns, 0);
    EXPECT_GE(st.blocked, 6, "its first try and its future's two at least");
    /* per subscription: what each received and was told it lost */
    uint64_t n = 0;
    for (uint64_t i = 1; i <= 2; i++) {
        EXPECT_EQ(ap_topic_sub_try_recv(&o.s, &v, NULL, NULL), AP_OK);
        EXPECT_EQ(v, i);
        EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_OK);
        EXPECT_EQ(v, i);
        EXPECT_EQ(ap_topic_sub_try_recv(&b.s, &v, NULL, NULL), AP_OK);
        EXPECT_EQ(v, i + 3);
    }
    EXPECT_EQ(ap_topic_sub_try_recv(&o.s, &v, NULL, &n), AP_DROPPED);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(ap_topic_sub_try_recv(&d.s, &v, NULL, NULL), AP_CLOSED);
    ap_topic_sub_stats_get(&o.s, &ss);
    EXPECT(ss.received == 2 && ss.dropped == 1 && ss.waits == 0 && ss.wait_ns == 0);
    ap_topic_sub_stats_get(&d.s, &ss);
    EXPECT(ss.received == 2 && ss.dropped == 1, "the message that disconnected it is lost");
    ap_topic_sub_stats_get(&b.s, &ss);
    EXPECT(ss.received == 2 && ss.dropped == 0);
    /* e waits on its own list: a future, then a blocking receive that times out */
    ap_topic_recv_fut rf;
    ap_topic_recv_fut_init(&rf, &e.s, &v, NULL);
    EXPECT_EQ(ap_topic_recv_poll(&rf, &cx), AP_PENDING);
    ap_topic_recv_cancel(&rf);
    ap_topic_sub_stats_get(&e.s, &ss);
    EXPECT(ss.waits == 1 && ss.wait_ns == 0);
    EXPECT_EQ(ap_topic_sub_recv_wait(&e.s, &v, NULL, ap_now_ns() + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    ap_topic_sub_stats_get(&e.s, &ss);
    EXPECT_EQ(ss.waits, 2);
    EXPECT_GT(ss.wait_ns, 0);
    EXPECT(ss.received == 0 && ss.dropped == 0);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.waits, 2, "a receive queues on its subscription's list, not the bus's");
    /* unsubscribing the disconnected one does not count it out twice */
    ap_topic_unsubscribe(&t, &d.s);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.subscriptions, 3);
    ap_topic_unsubscribe(&t, &o.s);
    ap_topic_unsubscribe(&t, &b.s);
    ap_topic_unsubscribe(&t, &e.s);
    ap_topic_stats_get(&t, &st);
    EXPECT_EQ(st.subscriptions, 0);
    EXPECT(st.published == 5 && st.dropped == 1 && st.disconnected == 1);
    ap_topic_fini(&t);
}
