/*
 * tests/test_split.c -- routing to k mpmc outputs: hash, round-robin,
 * broadcast; try and future forms
 */
#include "asyncpat/split.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>

#include "test_util.h"

#define K 5
#define CAP 64

static size_t qbuf[K][AP_MPMC_BYTES(CAP, sizeof(uint64_t)) / sizeof(size_t)];
static ap_mpmc qs[K];
static ap_mpmc *outs[K];

static void setup_k(size_t cap)
{
    for (size_t i = 0; i < K; i++) {
        EXPECT(ap_mpmc_init(&qs[i], qbuf[i], sizeof qbuf[i], cap, sizeof(uint64_t)) == AP_OK);
        outs[i] = &qs[i];
    }
}

static size_t drain(size_t i, uint64_t *got, size_t max)
{
    size_t n = 0;
    uint64_t v;
    while (ap_mpmc_try_pop(&qs[i], &v) == AP_OK) {
        if (got && n < max)
            got[n] = v;
        n++;
    }
    return n;
}

Test(split, init_rejects_bad_config)
{
    ap_split s;
    memset(&s, 0x77, sizeof s);
    ap_split before = s;
    setup_k(CAP);
    static size_t other_buf[AP_MPMC_BYTES(4, 3) / sizeof(size_t) + 1];
    ap_mpmc other;
    EXPECT(ap_mpmc_init(&other, other_buf, sizeof other_buf, 4, 3) == AP_OK);
    ap_mpmc *mixed[2] = {&qs[0], &other}, *with_null[2] = {&qs[0], NULL};
    EXPECT_EQ(ap_split_init(&s, outs, AP_SPLIT_BYTES(0), AP_SPLIT_MODE_HASH), AP_INVAL);
    EXPECT_EQ(ap_split_init(&s, mixed, AP_SPLIT_BYTES(2), AP_SPLIT_MODE_HASH), AP_INVAL);
    EXPECT_EQ(ap_split_init(&s, with_null, AP_SPLIT_BYTES(2), AP_SPLIT_MODE_HASH), AP_INVAL);
    EXPECT_EQ(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), (ap_split_mode)9), AP_INVAL);
    EXPECT(memcmp(&s, &before, sizeof s) == 0, "untouched");
}

/* Caller memory comes with its size (issue #11): the output array is
 * passed with its size in bytes; NULL, misaligned, 0 bytes, a size that is
 * not a whole number of pointers, or bad configuration is AP_INVAL and
 * changes neither the splitter nor the array. Before, the count was a
 * separate argument a caller could get wrong (k larger than the array was
 * read past its end). */
Test(split, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    setup_k(CAP);
    static _Alignas(AP_SPLIT_ALIGN) unsigned char ab[AP_SPLIT_BYTES(K) + 2 * AP_SPLIT_ALIGN];
    _Static_assert(AP_SPLIT_BYTES(4) == 4 * sizeof(ap_mpmc *), "constant expression");
    struct {
        size_t off, bytes;
        int null, mode;
        const char *what;
    } cases[] = {
        {0, AP_SPLIT_BYTES(K), 1, AP_SPLIT_MODE_HASH, "NULL array"},
        {1, AP_SPLIT_BYTES(K), 0, AP_SPLIT_MODE_HASH, "misaligned by 1"},
        {AP_SPLIT_ALIGN / 2, AP_SPLIT_BYTES(K), 0, AP_SPLIT_MODE_HASH, "misaligned by half"},
        {0, AP_SPLIT_BYTES(K) - 1, 0, AP_SPLIT_MODE_HASH, "one byte short"},
        {0, 0, 0, AP_SPLIT_MODE_HASH, "zero bytes"},
        {0, AP_SPLIT_BYTES(K), 0, 9, "unknown mode"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(ab, 0, sizeof ab);
        memcpy(ab + cases[i].off, outs, AP_SPLIT_BYTES(K));
        ap_split s;
        unsigned char s_before[sizeof s], ab_before[sizeof ab];
        memset(&s, 0x5A, sizeof s);
        memcpy(s_before, &s, sizeof s);
        memcpy(ab_before, ab, sizeof ab);
        ap_mpmc *const *arr = cases[i].null ? NULL : (ap_mpmc *const *)(void *)(ab + cases[i].off);
        EXPECT_EQ(ap_split_init(&s, arr, cases[i].bytes, (ap_split_mode)cases[i].mode), AP_INVAL,
                  "%s", cases[i].what);
        EXPECT(memcmp(s_before, &s, sizeof s) == 0, "%s: the splitter changed", cases[i].what);
        EXPECT(memcmp(ab_before, ab, sizeof ab) == 0, "%s: the array changed", cases[i].what);
    }
    ap_split s;
    EXPECT_EQ(ap_split_init(&s, outs, sizeof outs, AP_SPLIT_MODE_ROUND_ROBIN), AP_OK, "sizeof the array");
    EXPECT_EQ(s.k, K);
    ap_split_fini(&s);
}

Test(split, hash_same_key_same_output_counts_conserved)
{
    ap_split s;
    setup_k(8); /* 40 items a round into 5 queues of 8: some are full */
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_HASH) == AP_OK);
    uint64_t seed = 0xabc, pushed = 0, full = 0, per[K] = {0};
    static uint64_t got[CAP];
    for (int round = 0; round < 2000; round++) {
        for (int j = 0; j < 40; j++) {
            uint64_t key = rng_next(&seed) % 300;
            size_t o = ap_split_route(&s, key);
            EXPECT_LT(o, K);
            EXPECT_EQ(o, ap_split_route(&s, key), "pure");
            size_t before[K];
            for (size_t i = 0; i < K; i++)
                before[i] = ap_mpmc_len(&qs[i]);
            ap_status st = ap_split_try_push(&s, key, &key);
            for (size_t i = 0; i < K; i++)
                EXPECT_EQ(ap_mpmc_len(&qs[i]), before[i] + (st == AP_OK && i == o),
                          "only the key's output changes, and only on AP_OK");
            if (st == AP_OK)
                pushed++;
            else
                EXPECT_EQ(st, AP_FULL), full++;
        }
        for (size_t i = 0; i < K; i++) {
            size_t n = drain(i, got, CAP);
            per[i] += n;
            for (size_t x = 0; x < n; x++)
                EXPECT_EQ(ap_split_route(&s, got[x]), i, "key %ju in output %zu", got[x], i);
        }
    }
    EXPECT_EQ(per[0] + per[1] + per[2] + per[3] + per[4], pushed, "conserved");
    for (size_t i = 0; i < K; i++)
        EXPECT_GT(per[i], pushed / K / 2, "spread over every output");
    EXPECT_GT(full, 0, "full outputs were exercised");
}

Test(split, hash_spread_is_even)
{
    ap_split s;
    setup_k(CAP);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_HASH) == AP_OK);
    size_t cnt[K] = {0};
    for (uint64_t key = 0; key < 100000; key++)
        cnt[ap_split_route(&s, key)]++;
    for (size_t i = 0; i < K; i++)
        EXPECT(cnt[i] > 19000 && cnt[i] < 21000, "output %zu got %zu of 100000", i, cnt[i]);
}

Test(split, round_robin_exact_and_full_does_not_skip)
{
    ap_split s;
    setup_k(2);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_ROUND_ROBIN) == AP_OK);
    for (uint64_t i = 0; i < 2 * K; i++)
        EXPECT_EQ(ap_split_try_push(&s, 0, &i), AP_OK);
    uint64_t x = 99;
    EXPECT_EQ(ap_split_try_push(&s, 0, &x), AP_FULL, "output 0 is full");
    EXPECT_EQ(ap_split_try_push(&s, 0, &x), AP_FULL, "the cursor did not move on");
    uint64_t got[2];
    for (size_t i = 0; i < K; i++) {
        EXPECT_EQ(drain(i, got, 2), 2);
        EXPECT(got[0] == i && got[1] == i + K, "item j went to output j %% k");
    }
    EXPECT_EQ(ap_split_try_push(&s, 0, &x), AP_OK);
    EXPECT_EQ(ap_mpmc_len(&qs[0]), 1, "it resumed at output 0");
}

Test(split, broadcast_all_or_nothing_and_resumable)
{
    ap_split s;
    setup_k(2);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_BROADCAST) == AP_OK);
    uint64_t a = 1, b = 2, c = 3;
    size_t next = 0;
    EXPECT(ap_split_try_broadcast(&s, &a, &next) == AP_OK && next == K);
    /* fill output 3 behind the splitter's back */
    EXPECT_EQ(ap_mpmc_try_push(&qs[3], &c), AP_OK);
    next = 0;
    EXPECT(ap_split_try_broadcast(&s, &b, &next) == AP_FULL && next == 0, "pre-check: nothing pushed");
    for (size_t i = 0; i < K; i++)
        EXPECT_EQ(ap_mpmc_len(&qs[i]), 1 + (i == 3));
    /* a partial broadcast: output 3 fills only after the pre-check passed,
     * simulated by starting with the cursor at 1 (outputs [0,1) have it) */
    EXPECT_EQ(ap_mpmc_try_push(&qs[0], &b), AP_OK);
    next = 1;
    EXPECT(ap_split_try_broadcast(&s, &b, &next) == AP_FULL && next == 3);
    uint64_t v;
    EXPECT_EQ(ap_mpmc_try_pop(&qs[3], &v), AP_OK);
    EXPECT(ap_split_try_broadcast(&s, &b, &next) == AP_OK && next == K, "resumed");
    for (size_t i = 0; i < K; i++) {
        uint64_t got[3];
        size_t n = drain(i, got, 3);
        EXPECT_EQ(n, i == 3 ? 2 : 2);
        EXPECT_EQ(got[n - 1], 2, "each output has b exactly once, last");
    }
    ap_mpmc_close(&qs[2]);
    next = 0;
    EXPECT(ap_split_try_broadcast(&s, &c, &next) == AP_CLOSED && next == 2);
    ++next; /* step over the closed output */
    EXPECT(ap_split_try_broadcast(&s, &c, &next) == AP_OK && next == K);
}

/* ---- futures ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

Test(split, push_future_waits_for_room)
{
    ap_split s;
    setup_k(1);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_HASH) == AP_OK);
    uint64_t key = 7, o = ap_split_route(&s, key), v;
    EXPECT_EQ(ap_split_try_push(&s, key, &key), AP_OK);
    tw t = {0};
    ap_cx cx = {{tw_wake, &t}, 0, AP_DEADLINE_NONE};
    ap_split_push_fut f;
    ap_split_push_fut_init(&f, &s, key, &key);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_split_push_status(&f), AP_NOT_READY);
    EXPECT_EQ(ap_mpmc_try_pop(&qs[o], &v), AP_OK);
    EXPECT_GE(t.calls, 1, "a pop woke the waiting push");
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_READY);
    EXPECT(ap_split_push_status(&f) == AP_OK && ap_split_push_progress(&f) == 1);
    EXPECT_EQ(ap_mpmc_len(&qs[o]), 1);
    ap_split_push_cancel(&f); /* after completion: a no-op */
    EXPECT_EQ(ap_split_push_status(&f), AP_OK);
}

Test(split, broadcast_future_progress_and_cancel)
{
    ap_split s;
    setup_k(1);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(K), AP_SPLIT_MODE_BROADCAST) == AP_OK);
    uint64_t x = 5, v;
    EXPECT_EQ(ap_mpmc_try_push(&qs[2], &x), AP_OK); /* output 2 full */
    tw t = {0};
    ap_cx cx = {{tw_wake, &t}, 0, AP_DEADLINE_NONE};
    ap_split_push_fut f;
    ap_split_push_fut_init(&f, &s, 0, &x);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_split_push_progress(&f), 2, "outputs 0 and 1 have it");
    EXPECT_EQ(ap_mpmc_try_pop(&qs[2], &v), AP_OK);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_READY);
    EXPECT(ap_split_push_status(&f) == AP_OK && ap_split_push_progress(&f) == K);
    for (size_t i = 0; i < K; i++)
        EXPECT_EQ(drain(i, NULL, 0), 1);
    /* cancel half-way: progress says exactly who has it */
    EXPECT_EQ(ap_mpmc_try_push(&qs[1], &x), AP_OK);
    ap_split_push_fut_init(&f, &s, 0, &x);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    ap_split_push_cancel(&f);
    ap_split_push_cancel(&f);
    EXPECT(ap_split_push_status(&f) == AP_CANCELED && ap_split_push_progress(&f) == 1);
    EXPECT_EQ(ap_mpmc_len(&qs[0]), 1);
    EXPECT_EQ(ap_mpmc_len(&qs[1]), 1, "only the item pushed by hand");
    EXPECT_EQ(ap_mpmc_len(&qs[2]), 0);
}

Test(split, push_wait_times_out_and_reports_closed, .timeout = TEST_TIMEOUT_S)
{
    ap_split s;
    setup_k(1);
    EXPECT(ap_split_init(&s, outs, AP_SPLIT_BYTES(1), AP_SPLIT_MODE_ROUND_ROBIN) == AP_OK);
    uint64_t x = 1;
    EXPECT_EQ(ap_split_push_wait(&s, 0, &x, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_split_push_wait(&s, 0, &x, ap_now_ns() + 2 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_EQ(ap_mpmc_len(&qs[0]), 1, "a timed-out wait pushed nothing");
    ap_mpmc_close(&qs[0]);
    EXPECT_EQ(ap_split_push_wait(&s, 0, &x, AP_DEADLINE_NONE), AP_CLOSED);
}

static ap_split g_split;
static void *popper(void *arg)
{
    (void)arg;
    ms_sleep(20);
    uint64_t v;
    while (ap_mpmc_try_pop(&qs[0], &v) != AP_OK)
        ms_sleep(1);
    return NULL;
}

Test(split, push_wait_blocks_until_a_pop, .timeout = TEST_TIMEOUT_S)
{
    setup_k(1);
    EXPECT(ap_split_init(&g_split, outs, AP_SPLIT_BYTES(1), AP_SPLIT_MODE_HASH) == AP_OK);
    uint64_t x = 1;
    EXPECT_EQ(ap_split_try_push(&g_split, 3, &x), AP_OK);
    pthread_t th;
    EXPECT(pthread_create(&th, NULL, popper, NULL) == 0);
    EXPECT_EQ(ap_split_push_wait(&g_split, 3, &x, AP_DEADLINE_NONE), AP_OK);
    pthread_join(th, NULL);
    EXPECT_EQ(ap_mpmc_len(&qs[0]), 1);
}


