/*
 * tests/test_batch.c -- accumulate items, flush a batch on size or age
 *
 * Unit tests of every API path on a fake clock, then THE THEOREMS
 * (THEOREMS.md: "batch"), checked by an event-driven simulation of one
 * owner loop on a fake clock (exact integer ns) over the REAL ap_batch:
 *   (1) latency: every item is shipped no later than max_delay after it
 *       was added, and the bound is reached (tight);
 *   (2) never early: a batch of fewer than max_size items is shipped at
 *       exactly its oldest item's arrival + max_delay (not before), except
 *       the final flush;
 *   (3) size: no batch exceeds max_size; a batch is full exactly when size
 *       triggered it;
 *   (4) every item is in exactly one batch, in arrival order.
 * The loop: items arrive at given instants; each is added (on AP_FULL the
 * loop takes the batch and adds again: caller runs); when an add says
 * `due`, it takes at once; a timer armed at ap_batch_deadline() fires and
 * takes. NEGATIVE CONTROLS: the same loop and checker over deliberately
 * wrong batchers must be flagged: size-only (unbounded latency), debounce
 * (the deadline restarts with every item), eager (flushes at half the
 * delay), oversize (lets max_size + 1 in).
 */
#include "asyncpat/batch.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* the counters as a value, for one-line checks */
static ap_batch_stats bstats(ap_batch *b)
{
    ap_batch_stats s;
    ap_batch_stats_get(b, &s);
    return s;
}

TestSuite(batch, .timeout = TEST_TIMEOUT_S);

/* Every wait has a deadline well inside the timeout, so a lost wake fails
 * with a message instead of hanging the suite. */
#define BT_WAIT_NS (10 * AP_NS_PER_SEC)
static ap_deadline bt_deadline(void) { return ap_now_ns() + BT_WAIT_NS; }

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

static ap_batch_desc D(size_t max, uint64_t delay)
{
    return (ap_batch_desc){.elem_size = sizeof(uint64_t), .max_size = max, .max_delay_ns = delay};
}

/* ---- init and bad input ---- */

Test(batch, init_rejects_bad_desc_and_changes_nothing)
{
    uint64_t buf[4];
    ap_batch b;
    ap_batch_desc bad[] = {{.elem_size = 0, .max_size = 4, .max_delay_ns = 10},
                           {.elem_size = 8, .max_size = 0, .max_delay_ns = 10},
                           {.elem_size = SIZE_MAX / 2, .max_size = 4, .max_delay_ns = 10},
                           {.elem_size = 8, .max_size = SIZE_MAX / 4, .max_delay_ns = 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&b, 0xA5, sizeof b);
        EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &bad[i]), AP_INVAL, "desc %zu", i);
        const unsigned char *p = (const unsigned char *)&b;
        for (size_t j = 0; j < sizeof b; j++)
            EXPECT_EQ(p[j], 0xA5, "desc %zu: byte %zu written", i, j);
    }
    memset(&b, 0xA5, sizeof b);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, NULL), AP_INVAL);
    EXPECT_EQ(((unsigned char *)&b)[0], 0xA5);
}

/* issue #11: the buffer comes with its size; NULL or short is AP_INVAL
 * (NULL tripped AP_ASSERT, a short buffer was overrun by adds) and neither
 * the batcher nor the buffer changes */
Test(batch, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { MAX = 5, ES = 12 };
    static unsigned char words[AP_BATCH_BYTES(MAX, ES) + 16];
    unsigned char *bf = words;
    const size_t need = AP_BATCH_BYTES(MAX, ES);
    _Static_assert(AP_BATCH_BYTES(MAX, ES) == MAX * ES && AP_BATCH_ALIGN == 1,
                   "constant expressions");
    static char as_array_size[AP_BATCH_ALIGN];
    EXPECT_EQ(sizeof as_array_size, 1);
    const ap_batch_desc ok = {.elem_size = ES, .max_size = MAX, .max_delay_ns = 10};
    struct { void *buf; size_t bytes; const ap_batch_desc *d; const char *what; } cases[] = {
        {NULL, sizeof words, &ok, "NULL buffer"},
        {bf, need - 1, &ok, "one byte short"},
        {bf, need - ES, &ok, "one item short"},
        {bf, 0, &ok, "zero bytes"},
        {bf, sizeof words, NULL, "desc NULL"},
        {bf, sizeof words, &(ap_batch_desc){.elem_size = 0, .max_size = MAX, .max_delay_ns = 10},
         "elem_size 0"},
        {bf, sizeof words, &(ap_batch_desc){.elem_size = ES, .max_size = 0, .max_delay_ns = 10},
         "max_size 0"},
        {bf, SIZE_MAX,
         &(ap_batch_desc){.elem_size = SIZE_MAX / 2, .max_size = 4, .max_delay_ns = 10},
         "bytes overflow"},
    };
    static unsigned char b_before[sizeof words];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_batch b, before;
        memset(&b, 0xA5, sizeof b);
        memcpy(&before, &b, sizeof b);
        memset(bf, 0xC3, sizeof words);
        memcpy(b_before, bf, sizeof words);
        EXPECT_EQ(ap_batch_init(&b, cases[i].buf, cases[i].bytes, cases[i].d), AP_INVAL, "%s",
                  cases[i].what);
        EXPECT(memcmp(&before, &b, sizeof b) == 0, "%s: the batcher changed", cases[i].what);
        EXPECT(memcmp(b_before, bf, sizeof words) == 0, "%s: the buffer changed",
               cases[i].what);
    }
    /* any alignment and exactly enough works; the excess is not touched */
    ap_batch b;
    unsigned char item[ES], out[MAX * ES];
    size_t n = 0;
    bool due = false;
    memset(bf, 0xC3, sizeof words);
    EXPECT_EQ(ap_batch_init(&b, bf + 1, need, &ok), AP_OK);
    for (int k = 0; k < MAX; k++) {
        memset(item, k + 1, sizeof item);
        EXPECT_EQ(ap_batch_add(&b, item, 0, &due), AP_OK);
    }
    EXPECT(due);
    memset(item, 9, sizeof item);
    EXPECT_EQ(ap_batch_add(&b, item, 0, &due), AP_FULL);
    EXPECT_EQ(bf[0], 0xC3, "byte before the buffer written");
    for (size_t i = 1 + need; i < sizeof words; i++)
        EXPECT_EQ(bf[i], 0xC3, "byte %zu past the buffer written", i);
    EXPECT_EQ(ap_batch_take(&b, out, 0, &n), AP_OK);
    EXPECT_EQ(n, MAX);
    EXPECT_EQ(out[(MAX - 1) * ES], MAX);
    ap_batch_fini(&b);
}

Test(batch, desc_defaults)
{
    ap_batch_desc d = {.elem_size = 8, .max_size = 3, .max_delay_ns = 0};
    ap_batch_desc r = ap_batch_desc_resolved(&d);
    EXPECT_EQ(r.max_delay_ns, AP_BATCH_DEFAULT_DELAY_NS);
    EXPECT_EQ(r.max_delay_ns, AP_NS_PER_MS);
    EXPECT_EQ(r.elem_size, 8);
    EXPECT_EQ(r.max_size, 3);
    uint64_t buf[3];
    ap_batch b;
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT_EQ(b.desc.max_delay_ns, AP_NS_PER_MS);
    bool due;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 5, &due), AP_OK);
    EXPECT_EQ(ap_batch_deadline(&b), 5 + AP_NS_PER_MS);
    ap_batch_fini(&b);
    EXPECT_EQ(AP_BATCH_BYTES(3, 8), 24);
}

/* ---- the paths ---- */

Test(batch, flush_by_size_in_order)
{
    uint64_t buf[4], out[4] = {0};
    ap_batch b;
    ap_batch_desc d = D(4, 1000);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT_EQ(ap_batch_deadline(&b), AP_DEADLINE_NONE, "empty");
    EXPECT_NOT(ap_batch_is_due(&b, UINT64_MAX));
    bool due = true;
    for (uint64_t i = 0; i < 3; i++) {
        EXPECT_EQ(ap_batch_add(&b, &i, 10 + i, &due), AP_OK);
        EXPECT_NOT(due);
        EXPECT_EQ(ap_batch_deadline(&b), 1010);
    }
    size_t n = 77;
    EXPECT_EQ(ap_batch_take(&b, out, 12, &n), AP_EMPTY, "3 of 4, young");
    EXPECT_EQ(n, 77, "untouched");
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 13, &due), AP_OK);
    EXPECT(due, "full");
    EXPECT_EQ(ap_batch_deadline(&b), 0, "due whatever the time");
    EXPECT(ap_batch_is_due(&b, 0));
    EXPECT_EQ(ap_batch_len(&b), 4);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 14, &due), AP_FULL);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 14, NULL), AP_FULL);
    EXPECT_EQ(ap_batch_take(&b, out, 0, &n), AP_OK, "full: due even at time 0");
    EXPECT_EQ(n, 4);
    for (uint64_t i = 0; i < 4; i++)
        EXPECT_EQ(out[i], i);
    EXPECT_EQ(ap_batch_len(&b), 0);
    EXPECT_EQ(ap_batch_take(&b, out, UINT64_MAX, &n), AP_EMPTY);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 14, NULL), AP_OK, "room again");
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    EXPECT_EQ(s.added, 5);
    EXPECT_EQ(s.batches, 1);
    EXPECT_EQ(s.by_size, 1);
    EXPECT_EQ(s.by_time + s.by_close + s.by_flush, 0);
    EXPECT_EQ(s.len, 1);
    ap_batch_fini(&b);
}

Test(batch, flush_by_age_at_the_exact_instant)
{
    uint64_t buf[8], out[8];
    ap_batch b;
    ap_batch_desc d = D(8, 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    bool due;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 10, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 60, &due), AP_OK);
    EXPECT_EQ(ap_batch_deadline(&b), 110, "the oldest item's, not the newest's");
    size_t n = 0;
    EXPECT_NOT(ap_batch_is_due(&b, 109));
    EXPECT_EQ(ap_batch_take(&b, out, 109, &n), AP_EMPTY);
    EXPECT(ap_batch_is_due(&b, 110));
    /* an add that arrives late (its loop was slow) reports due itself */
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 115, &due), AP_OK);
    EXPECT(due);
    EXPECT_EQ(ap_batch_take(&b, out, 110, &n), AP_OK);
    EXPECT_EQ(n, 3);
    EXPECT_EQ(out[0] * 100 + out[1] * 10 + out[2], 123);
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    EXPECT_EQ(s.by_time, 1);
    EXPECT_EQ(s.batches, 1);
    ap_batch_fini(&b);
}

/* The `due` that ap_batch_add reports is `now >= oldest + max_delay`
 * (DUE): false one ns before the deadline, true at exactly the deadline.
 * Checked on its own, with no take or is_due in between, so an off-by-one
 * in add's own comparison (> for >=, or one ns early) fails here. */
Test(batch, add_reports_due_at_exactly_the_deadline_not_one_ns_before)
{
    uint64_t buf[8], out[8];
    ap_batch b;
    ap_batch_desc d = D(8, 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    bool due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 10, &due), AP_OK);
    EXPECT_NOT(due, "a fresh batch of one is not due");
    due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 109, &due), AP_OK);
    EXPECT_NOT(due, "109 < deadline 110: one ns early");
    due = false;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 110, &due), AP_OK);
    EXPECT(due, "110 == deadline 110: due at exactly the deadline");
    size_t n = 0;
    EXPECT_EQ(ap_batch_take(&b, out, 110, &n), AP_OK);
    EXPECT_EQ(n, 3);
    /* again with the deadline moved earlier by an add from a clock that
     * is behind: the boundary follows the minimum (40 + 100 = 140) */
    due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 50, &due), AP_OK);
    EXPECT_NOT(due);
    due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){5}, 40, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(ap_batch_deadline(&b), 140);
    due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){6}, 139, &due), AP_OK);
    EXPECT_NOT(due, "139 < deadline 140");
    due = false;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){7}, 140, &due), AP_OK);
    EXPECT(due, "140 == deadline 140");
    /* max_delay 1: the deadline is the next ns */
    EXPECT_EQ(ap_batch_take(&b, out, 140, &n), AP_OK);
    EXPECT_EQ(n, 4);
    ap_batch_fini(&b);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf,
                            &(ap_batch_desc){.elem_size = sizeof(uint64_t), .max_size = 8,
                                             .max_delay_ns = 1}),
              AP_OK);
    due = true;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 1000, &due), AP_OK);
    EXPECT_NOT(due, "1000 < deadline 1001");
    due = false;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 1001, &due), AP_OK);
    EXPECT(due, "1001 == deadline 1001");
    ap_batch_fini(&b);
}

Test(batch, oldest_is_the_minimum_arrival_under_skewed_clocks)
{
    uint64_t buf[8];
    ap_batch b;
    ap_batch_desc d = D(8, 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 50, NULL), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 40, NULL), AP_OK); /* another thread's clock */
    EXPECT_EQ(ap_batch_deadline(&b), 140, "bounded for the item added 'at 40' too");
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 45, NULL), AP_OK);
    EXPECT_EQ(ap_batch_deadline(&b), 140);
    ap_batch_fini(&b);
}

Test(batch, deadline_saturates)
{
    uint64_t buf[2], out[2];
    ap_batch b;
    ap_batch_desc d = D(2, 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, UINT64_MAX - 10, NULL), AP_OK);
    EXPECT_EQ(ap_batch_deadline(&b), AP_DEADLINE_NONE);
    size_t n;
    EXPECT_EQ(ap_batch_take(&b, out, UINT64_MAX - 1, &n), AP_EMPTY);
    EXPECT_EQ(ap_batch_take(&b, out, UINT64_MAX, &n), AP_OK);
    ap_batch_fini(&b);
}

Test(batch, flush_takes_early_and_close_drains)
{
    uint64_t buf[4], out[4];
    ap_batch b;
    ap_batch_desc d = D(4, 1000);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    size_t n = 9;
    EXPECT_EQ(ap_batch_flush(&b, out, &n), AP_EMPTY);
    EXPECT_EQ(n, 9);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 0, NULL), AP_OK);
    EXPECT_EQ(ap_batch_flush(&b, out, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(out[0], 1);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 0, NULL), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 0, NULL), AP_OK);
    ap_batch_close(&b);
    ap_batch_close(&b); /* idempotent */
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 0, NULL), AP_CLOSED);
    EXPECT_EQ(ap_batch_deadline(&b), 0, "closed: due now");
    EXPECT_EQ(ap_batch_take(&b, out, 0, &n), AP_OK);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(out[0] * 10 + out[1], 23);
    n = 9;
    EXPECT_EQ(ap_batch_take(&b, out, 0, &n), AP_CLOSED);
    EXPECT_EQ(ap_batch_flush(&b, out, &n), AP_CLOSED);
    EXPECT_EQ(n, 9);
    EXPECT_EQ(ap_batch_deadline(&b), AP_DEADLINE_NONE);
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    EXPECT_EQ(s.added, 3);
    EXPECT_EQ(s.by_flush, 1);
    EXPECT_EQ(s.by_close, 1);
    EXPECT_EQ(s.batches, 2);
    ap_batch_fini(&b);
}

Test(batch, max_size_one_and_huge_delay)
{
    uint64_t buf[1], out[1];
    ap_batch b;
    ap_batch_desc d = D(1, UINT64_MAX);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    bool due = false;
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){7}, 3, &due), AP_OK);
    EXPECT(due);
    size_t n;
    EXPECT_EQ(ap_batch_take(&b, out, 3, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){8}, 4, &due), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){9}, 4, &due), AP_FULL);
    ap_batch_fini(&b);
}

/* ---- the take future ---- */

Test(batch, take_future_waits_for_size_or_age)
{
    uint64_t buf[3], out[3];
    ap_batch b;
    ap_batch_desc d = D(3, 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    tw t = {0};
    ap_cx cx = {{tw_wake, &t}, 0, AP_DEADLINE_NONE};
    ap_batch_take_fut f;
    ap_batch_take_fut_init(&f, &b, out);
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    /* empty: no batch timer; at most the waitlist's confirm re-poll
     * (ap_waitlist_register_cx), after which a confirmed waiter sets none */
    EXPECT(cx.deadline == AP_DEADLINE_NONE || cx.deadline == AP_WAIT_CONFIRM_NS,
           "empty: no batch timer (deadline %llu)", (unsigned long long)cx.deadline);
    cx = (ap_cx){{tw_wake, &t}, AP_WAIT_CONFIRM_NS, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, AP_DEADLINE_NONE, "confirmed: waits for a wake, no timer");
    EXPECT_EQ(ap_batch_take_status(&f), AP_NOT_READY);
    EXPECT_EQ(ap_batch_take_count(&f), 0);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, 5, NULL), AP_OK);
    EXPECT_EQ(calls(&t), 1, "the first item brings a deadline: woken");
    cx = (ap_cx){{tw_wake, &t}, 6, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 105, "timer armed through cx->deadline");
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 7, NULL), AP_OK);
    EXPECT_EQ(calls(&t), 1, "a middle item changes nothing");
    cx = (ap_cx){{tw_wake, &t}, 104, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    cx = (ap_cx){{tw_wake, &t}, 105, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_READY, "at the deadline, no wake needed");
    EXPECT_EQ(ap_batch_take_status(&f), AP_OK);
    EXPECT_EQ(ap_batch_take_count(&f), 2);
    EXPECT_EQ(out[0] * 10 + out[1], 12);
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_READY, "stays ready");
    /* by size: the add that fills it wakes */
    ap_batch_take_fut_init(&f, &b, out);
    cx = (ap_cx){{tw_wake, &t}, 200, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, 200, NULL), AP_OK);
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 300);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){4}, 201, NULL), AP_OK);
    int before = calls(&t);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){5}, 202, NULL), AP_OK);
    EXPECT_EQ(calls(&t), before + 1, "full: woken");
    cx.now = 202;
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_batch_take_count(&f), 3);
    /* cancel: idempotent, no wake afterwards, takes nothing */
    ap_batch_take_fut_init(&f, &b, out);
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    ap_batch_take_cancel(&f);
    ap_batch_take_cancel(&f);
    EXPECT_EQ(ap_batch_take_status(&f), AP_CANCELED);
    before = calls(&t);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){6}, 300, NULL), AP_OK);
    EXPECT_EQ(calls(&t), before, "no wake after cancel");
    EXPECT_EQ(ap_batch_len(&b), 1);
    /* close wakes, the future drains, then reports AP_CLOSED */
    ap_batch_take_fut_init(&f, &b, out);
    ap_batch_take_fut g;
    ap_batch_take_fut_init(&g, &b, out);
    cx.now = 301;
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    ap_cx cx2 = {{tw_wake, &t}, 301, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&g, &cx2), AP_PENDING);
    before = calls(&t);
    ap_batch_close(&b);
    EXPECT_EQ(calls(&t), before + 2, "close wakes every take future");
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_batch_take_status(&f), AP_OK);
    EXPECT_EQ(ap_batch_take_count(&f), 1);
    EXPECT_EQ(ap_batch_take_poll(&g, &cx2), AP_READY);
    EXPECT_EQ(ap_batch_take_status(&g), AP_CLOSED);
    EXPECT_EQ(ap_batch_take_count(&g), 0);
    size_t n = 5;
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, bt_deadline()), AP_CLOSED);
    EXPECT_EQ(n, 5, "untouched");
    ap_batch_fini(&b);
}

Test(batch, take_wait_times_out_and_gets_a_batch)
{
    uint64_t buf[2], out[2];
    ap_batch b;
    ap_batch_desc d = D(2, AP_NS_PER_SEC * 100);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    size_t n = 0;
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, ap_now_ns() + 2 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){1}, ap_now_ns(), NULL), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, ap_now_ns(), NULL), AP_OK);
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, bt_deadline()), AP_OK);
    EXPECT_EQ(n, 2);
    /* by age on the real clock */
    ap_batch_desc d2 = D(2, 2 * AP_NS_PER_MS);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d2), AP_OK);
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){3}, t0, NULL), AP_OK);
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, bt_deadline()), AP_OK);
    EXPECT_GE(ap_now_ns(), t0 + 2 * AP_NS_PER_MS, "not before its deadline");
    EXPECT_EQ(n, 1);
    ap_batch_fini(&b);
}

/* ---- the batcher's clock (desc.clock) reaches ap_batch_take_wait ----
 * (test_clock: test_util.h) */
static ap_batch_desc D_clock(size_t max, uint64_t delay, test_clock *c)
{
    return (ap_batch_desc){.elem_size = sizeof(uint64_t), .max_size = max,
                           .max_delay_ns = delay, .clock = {test_clock_now, c}};
}

Test(batch, take_wait_runs_on_the_desc_clock)
{
    /* a fake clock at 2^62 ns moving 1 s per read; a 1 minute linger: the
     * batch is taken when the FAKE clock reaches add + 60 s, within a few
     * ms of real time (the real clock is nowhere near 2^62) */
    const uint64_t t0 = UINT64_C(1) << 62, step = AP_NS_PER_SEC, delay = 60 * AP_NS_PER_SEC;
    test_clock c = {t0, step, 0};
    uint64_t buf[4], out[4];
    ap_batch b;
    ap_batch_desc d = D_clock(4, delay, &c);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT(b.desc.clock.now == test_clock_now, "the clock is kept in the resolved desc");
    uint64_t r0 = ap_now_ns();
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){7}, t0, NULL), AP_OK); /* the caller's now */
    size_t n = 0;
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, AP_DEADLINE_NONE), AP_OK);
    uint64_t last = atomic_load(&c.t) - step; /* cx.now of the completing poll */
    EXPECT_GE(last, t0 + delay, "taken before the fake clock reached its deadline");
    EXPECT_LT(last, t0 + delay + 2 * step, "taken late on the fake clock");
    EXPECT_EQ(n, 1);
    EXPECT_EQ(out[0], 7);
    /* the deadline is an instant on the fake clock too: an item due at
     * add + 60 s, a wait that gives up 10 s (fake) from now */
    uint64_t now = atomic_load(&c.t);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){8}, now, NULL), AP_OK);
    uint64_t dl = now + 10 * AP_NS_PER_SEC;
    n = 99;
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, dl), AP_TIMEDOUT);
    last = atomic_load(&c.t) - step; /* the check that timed out */
    EXPECT_GE(last, dl);
    EXPECT_LT(last, dl + 2 * step);
    EXPECT_EQ(n, 99, "untouched");
    EXPECT_EQ(ap_batch_len(&b), 1, "the item stays");
    uint64_t real = ap_now_ns() - r0;
    EXPECT_LT(real, 5 * AP_NS_PER_SEC, "70 s of fake time took %llu real ns",
              (unsigned long long)real);
    ap_batch_fini(&b);
}

typedef struct bt_mover {
    test_clock *c;
    uint64_t to;
    _Atomic uint64_t moved_real;
} bt_mover;

static void *bt_move_clock(void *arg)
{
    bt_mover *m = arg;
    ms_sleep(20);
    atomic_store(&m->c->t, m->to - 1); /* one ns short: not yet due */
    ms_sleep(20);
    atomic_store(&m->c->t, m->to);
    atomic_store(&m->moved_real, ap_now_ns());
    return NULL;
}

Test(batch, take_wait_follows_a_clock_moved_by_another_thread)
{
    /* fake clock standing at 0; an item added at 0 with a 1 s linger */
    uint64_t buf[4], out[4];
    size_t n = 0;

    /* Regression: before desc.clock, ap_batch_take_wait drove the take
     * future with ap_block_on_until on ap_now_ns() (seconds since boot),
     * by which an item added at fake 0 with a 1 s linger is long due: it
     * shipped the batch at once, though by the caller's own clock (still
     * at 0) the batch was not due. */
    if (ap_now_ns() > 2 * AP_NS_PER_SEC) {
        test_clock c0 = {0, 0, 0};
        ap_batch old;
        ap_batch_desc d0 = D_clock(4, AP_NS_PER_SEC, &c0);
        EXPECT_EQ(ap_batch_init(&old, buf, sizeof buf, &d0), AP_OK);
        EXPECT_EQ(ap_batch_add(&old, &(uint64_t){1}, 0, NULL), AP_OK);
        EXPECT_NOT(ap_batch_is_due(&old, atomic_load(&c0.t)), "not due by the caller's clock");
        ap_batch_take_fut f;
        ap_batch_take_fut_init(&f, &old, out);
        EXPECT_EQ(ap_block_on_until(&f.base, ap_now_ns() + AP_NS_PER_SEC), AP_OK);
        EXPECT_EQ(ap_batch_take_status(&f), AP_OK, "the real clock shipped it early");
        EXPECT_EQ(atomic_load(&c0.t), 0);
        ap_batch_fini(&old);
    }

    test_clock c = {0, 0, 0};
    ap_batch b;
    ap_batch_desc d = D_clock(4, AP_NS_PER_SEC, &c);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    EXPECT_EQ(ap_batch_add(&b, &(uint64_t){2}, 0, NULL), AP_OK);
    bt_mover m = {&c, AP_NS_PER_SEC, 0};
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, bt_move_clock, &m), 0);
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, AP_DEADLINE_NONE), AP_OK);
    uint64_t done = ap_now_ns();
    EXPECT_GE(atomic_load(&c.t), AP_NS_PER_SEC, "taken before the fake clock made it due");
    pthread_join(th, NULL);
    uint64_t moved = atomic_load(&m.moved_real);
    EXPECT_LT(done > moved ? done - moved : 0, 2 * AP_NS_PER_SEC, "noticed the move late");
    EXPECT_EQ(n, 1);
    EXPECT_EQ(out[0], 2);
    ap_batch_fini(&b);
}

/* threads: producers add (and take themselves on AP_FULL), one taker waits */
#define TH_P 4
#define TH_N 3000
typedef struct th_ctx {
    ap_batch b;
    uint64_t buf[8];
    _Atomic uint32_t seen[TH_P * TH_N];
    _Atomic uint64_t items;
    _Atomic uint32_t errors; /* checked on the test thread: no EXPECT_* off it */
    ap_deadline give_up;     /* every wait of the threads ends by then */
} th_ctx;

static void th_record(th_ctx *c, const uint64_t *out, size_t n)
{
    uint64_t last[TH_P] = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t p = out[i] / TH_N, s = out[i] % TH_N + 1;
        if (p >= TH_P || s <= last[p]) { /* invented, or out of order in a batch */
            atomic_fetch_add(&c->errors, 1u);
            continue;
        }
        last[p] = s;
        atomic_fetch_add(&c->seen[out[i]], 1u);
    }
    atomic_fetch_add(&c->items, n);
}

typedef struct th_arg { th_ctx *c; unsigned id; } th_arg;

static void *th_producer(void *arg)
{
    th_arg *a = arg;
    uint64_t out[8];
    for (uint64_t s = 0; s < TH_N; s++) {
        uint64_t v = a->id * TH_N + s;
        ap_status st;
        while ((st = ap_batch_add(&a->c->b, &v, ap_now_ns(), NULL)) == AP_FULL) {
            if (ap_now_ns() > a->c->give_up)
                break; /* counted as an error below: a full batch nobody can take */
            size_t n;
            if (ap_batch_take(&a->c->b, out, ap_now_ns(), &n) == AP_OK)
                th_record(a->c, out, n); /* caller runs */
        }
        if (st != AP_OK)
            atomic_fetch_add(&a->c->errors, 1u);
    }
    return NULL;
}

static void *th_taker(void *arg)
{
    th_ctx *c = arg;
    uint64_t out[8];
    size_t n;
    ap_status st;
    while ((st = ap_batch_take_wait(&c->b, out, &n, c->give_up)) == AP_OK)
        th_record(c, out, n);
    if (st != AP_CLOSED) /* AP_TIMEDOUT: the close (or a batch) never reached us */
        atomic_fetch_add(&c->errors, 1u);
    return NULL;
}

Test(batch, threads_every_item_in_exactly_one_batch, .timeout = TEST_TIMEOUT_S)
{
    th_ctx *c = calloc(1, sizeof *c);
    EXPECT(c != NULL);
    c->give_up = bt_deadline();
    ap_batch_desc d = D(8, 50 * AP_NS_PER_US);
    EXPECT_EQ(ap_batch_init(&c->b, c->buf, sizeof c->buf, &d), AP_OK);
    pthread_t tp[TH_P], tt;
    th_arg a[TH_P];
    EXPECT(pthread_create(&tt, NULL, th_taker, c) == 0);
    for (unsigned i = 0; i < TH_P; i++) {
        a[i] = (th_arg){c, i};
        EXPECT(pthread_create(&tp[i], NULL, th_producer, &a[i]) == 0);
    }
    for (unsigned i = 0; i < TH_P; i++)
        pthread_join(tp[i], NULL);
    ap_batch_close(&c->b);
    pthread_join(tt, NULL);
    EXPECT_EQ(atomic_load(&c->errors), 0);
    EXPECT_EQ(atomic_load(&c->items), TH_P * TH_N);
    for (size_t i = 0; i < TH_P * TH_N; i++)
        EXPECT_EQ(atomic_load(&c->seen[i]), 1, "item %zu", i);
    ap_batch_stats s;
    ap_batch_stats_get(&c->b, &s);
    EXPECT_EQ(s.added, TH_P * TH_N);
    EXPECT_EQ(s.by_size + s.by_time + s.by_close + s.by_flush, s.batches);
    ap_batch_fini(&c->b);
    free(c);
}

/* ---- the theorems: one owner loop on a fake clock ---- */

#define SIM_N 600
#define SIM_MAX 16

/* what the loop sees of a batcher */
typedef struct bq {
    void *self;
    ap_status (*add)(void *self, uint64_t v, uint64_t now, bool *due);
    ap_status (*take)(void *self, uint64_t *out, uint64_t now, size_t *n);
    ap_status (*flush)(void *self, uint64_t *out, size_t *n);
    ap_deadline (*deadline)(void *self);
} bq;

static ap_status real_add(void *s, uint64_t v, uint64_t now, bool *due) { return ap_batch_add(s, &v, now, due); }
static ap_status real_take(void *s, uint64_t *o, uint64_t now, size_t *n) { return ap_batch_take(s, o, now, n); }
static ap_status real_flush(void *s, uint64_t *o, size_t *n) { return ap_batch_flush(s, o, n); }
static ap_deadline real_deadline(void *s) { return ap_batch_deadline(s); }

/* deliberately wrong batchers */
enum mkind { M_SIZE_ONLY, M_DEBOUNCE, M_EAGER, M_OVERSIZE };
typedef struct mb {
    enum mkind kind;
    uint64_t buf[SIM_MAX + 1];
    size_t len, max;
    uint64_t first, last, delay;
} mb;

static ap_deadline mb_deadline(void *s)
{
    mb *m = s;
    if (m->len == 0)
        return AP_DEADLINE_NONE;
    size_t lim = m->kind == M_OVERSIZE ? m->max + 1 : m->max;
    if (m->len >= lim)
        return 0;
    switch (m->kind) {
    case M_SIZE_ONLY: return AP_DEADLINE_NONE;
    case M_DEBOUNCE: return m->last + m->delay;
    case M_EAGER: return m->first + m->delay / 2;
    default: return m->first + m->delay;
    }
}

static ap_status mb_add(void *s, uint64_t v, uint64_t now, bool *due)
{
    mb *m = s;
    size_t lim = m->kind == M_OVERSIZE ? m->max + 1 : m->max;
    if (m->len >= lim)
        return AP_FULL;
    if (m->len == 0)
        m->first = now;
    m->last = now;
    m->buf[m->len++] = v;
    *due = now >= mb_deadline(m);
    return AP_OK;
}

static ap_status mb_flush(void *s, uint64_t *out, size_t *n)
{
    mb *m = s;
    if (m->len == 0)
        return AP_EMPTY;
    memcpy(out, m->buf, m->len * sizeof *out);
    *n = m->len;
    m->len = 0;
    return AP_OK;
}

static ap_status mb_take(void *s, uint64_t *out, uint64_t now, size_t *n)
{
    mb *m = s;
    if (m->len == 0 || now < mb_deadline(m))
        return AP_EMPTY;
    return mb_flush(s, out, n);
}

typedef struct sim_out {
    uint64_t ship_t[SIM_N];  /* when each item (by arrival index) was shipped */
    size_t batch_of[SIM_N];
    size_t seen[SIM_N];
    size_t batches, oversize, order_breaks, late, early, bad;
    uint64_t max_wait;
    size_t at_bound; /* items that waited exactly max_delay */
} sim_out;

/* arrival patterns */
static void arrivals(int pattern, uint64_t delay, uint64_t *a, uint64_t seed)
{
    uint64_t t = 0, rng = seed * 0x9e3779b97f4a7c15u + 1;
    for (size_t i = 0; i < SIM_N; i++) {
        switch (pattern) {
        case 0: t = i * (delay * 3); break;                 /* sparse: one per batch */
        case 1: t = i * (delay / 40 + 1); break;            /* dense: size triggers */
        case 2: t = (i / 5) * (delay * 2); break;           /* bursts of 5, then a gap */
        case 3: t = 0; break;                               /* all at once */
        case 4: t += rng_next(&rng) % (delay / 4 + 1); break; /* random, mixed */
        default: t += rng_next(&rng) % (2 * delay + 1); break; /* random, sparse-ish */
        }
        a[i] = t;
    }
}

/* The owner loop. Events in time order: arrivals, and the timer at the
 * batcher's deadline; at equal instants the timer goes first (a due batch
 * is shipped before a new item joins). After the last arrival: drain with
 * the timer, then flush what is left (not counted as early). */
static void sim_run(const bq *q, const uint64_t *a, size_t max, uint64_t delay, sim_out *o)
{
    memset(o, 0, sizeof *o);
    uint64_t out[SIM_MAX + 2];
    size_t next_ship = 0; /* items are identified by arrival index */
    size_t i = 0;
    uint64_t now = 0;
#define SHIP(n_, final_)                                                                  \
    do {                                                                                  \
        size_t n__ = (n_);                                                                \
        if (n__ > max)                                                                    \
            o->oversize++;                                                                \
        for (size_t j = 0; j < n__; j++) {                                                \
            uint64_t id = out[j];                                                         \
            if (id >= SIM_N) { o->bad++; continue; }                                      \
            if (id != next_ship) o->order_breaks++;                                       \
            next_ship = id + 1;                                                           \
            o->seen[id]++;                                                                \
            o->ship_t[id] = now;                                                          \
            o->batch_of[id] = o->batches;                                                 \
            uint64_t w = now - a[id];                                                     \
            if (w > o->max_wait) o->max_wait = w;                                         \
            if (w > delay) o->late++;                                                     \
            if (w == delay) o->at_bound++;                                                \
        }                                                                                 \
        /* never early: a short batch leaves exactly at oldest + delay */                 \
        if (n__ < max && !(final_) && n__ > 0) {                                          \
            uint64_t oldest = a[out[0]];                                                  \
            for (size_t j = 1; j < n__; j++)                                              \
                if (out[j] < SIM_N && a[out[j]] < oldest) oldest = a[out[j]];             \
            if (now != oldest + delay) o->early++;                                        \
        }                                                                                 \
        o->batches++;                                                                     \
    } while (0)
    for (int guard = 0; guard < 100000; guard++) {
        ap_deadline d = q->deadline(q->self);
        bool timer_first = d != AP_DEADLINE_NONE && (i == SIM_N || d <= a[i]);
        if (i == SIM_N && d == AP_DEADLINE_NONE)
            break;
        if (timer_first) {
            if (d > now)
                now = d;
            size_t n;
            if (q->take(q->self, out, now, &n) == AP_OK)
                SHIP(n, false);
            else
                o->bad++;
            continue;
        }
        now = a[i];
        bool due = false;
        ap_status st = q->add(q->self, i, now, &due);
        if (st == AP_FULL) {
            size_t n;
            if (q->take(q->self, out, now, &n) == AP_OK)
                SHIP(n, false);
            else
                o->bad++;
            st = q->add(q->self, i, now, &due);
        }
        if (st != AP_OK) {
            o->bad++;
            break;
        }
        i++;
        if (due) {
            size_t n;
            if (q->take(q->self, out, now, &n) == AP_OK)
                SHIP(n, false);
            else
                o->bad++;
        }
    }
    size_t n;
    if (q->flush(q->self, out, &n) == AP_OK)
        SHIP(n, true);
#undef SHIP
    for (size_t k = 0; k < SIM_N; k++)
        if (o->seen[k] != 1)
            o->bad++;
}

static size_t sim_violations(const sim_out *o)
{
    return o->oversize + o->order_breaks + o->late + o->early + o->bad;
}

static const size_t sim_max[] = {1, 2, 3, 7, 16};
static const uint64_t sim_delay[] = {40, 1000, 999983};

Test(batch, theorem_latency_size_order_exactly)
{
    static sim_out o;
    static uint64_t a[SIM_N];
    uint64_t buf[SIM_MAX];
    size_t runs = 0, tight = 0;
    for (size_t m = 0; m < sizeof sim_max / sizeof sim_max[0]; m++)
        for (size_t dl = 0; dl < sizeof sim_delay / sizeof sim_delay[0]; dl++)
            for (int pat = 0; pat < 6; pat++) {
                ap_batch b;
                ap_batch_desc d = D(sim_max[m], sim_delay[dl]);
                EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
                bq q = {&b, real_add, real_take, real_flush, real_deadline};
                arrivals(pat, sim_delay[dl], a, m * 31 + dl);
                sim_run(&q, a, sim_max[m], sim_delay[dl], &o);
                EXPECT_EQ(sim_violations(&o), 0,
                          "max %zu delay %llu pattern %d: oversize %zu order %zu late %zu "
                          "early %zu bad %zu",
                          sim_max[m], (unsigned long long)sim_delay[dl], pat, o.oversize,
                          o.order_breaks, o.late, o.early, o.bad);
                EXPECT_LE(o.max_wait, sim_delay[dl]);
                ap_batch_stats s;
                ap_batch_stats_get(&b, &s);
                EXPECT_EQ(s.added, SIM_N);
                EXPECT_EQ(s.batches, o.batches);
                /* sparse arrivals with room in the batch: the bound is reached */
                if (pat == 0 && sim_max[m] > 1) {
                    EXPECT_EQ(o.max_wait, sim_delay[dl], "tight");
                    EXPECT_EQ(o.at_bound, SIM_N);
                }
                tight += o.max_wait == sim_delay[dl];
                runs++;
                ap_batch_fini(&b);
            }
    EXPECT_EQ(runs, 5 * 3 * 6);
    EXPECT_GT(tight, runs / 3);
}

Test(batch, theorem_negative_controls_are_flagged)
{
    static sim_out o;
    static uint64_t a[SIM_N];
    static mb m;
    const uint64_t delay = 1000;
    struct { enum mkind k; int pattern; const char *name; } ctl[] = {
        {M_SIZE_ONLY, 0, "size-only (unbounded latency)"},
        {M_DEBOUNCE, 1, "debounce (deadline restarts per item)"},
        {M_EAGER, 0, "eager (flushes at half the delay)"},
        {M_OVERSIZE, 3, "oversize (max_size + 1)"},
    };
    for (size_t c = 0; c < sizeof ctl / sizeof ctl[0]; c++) {
        memset(&m, 0, sizeof m);
        m.kind = ctl[c].k;
        m.max = 8;
        m.delay = delay;
        bq q = {&m, mb_add, mb_take, mb_flush, mb_deadline};
        arrivals(ctl[c].pattern, delay, a, 7);
        if (ctl[c].k == M_DEBOUNCE) /* a steady trickle faster than the delay */
            for (size_t i = 0; i < SIM_N; i++)
                a[i] = i * (delay / 2);
        sim_run(&q, a, 8, delay, &o);
        EXPECT_GT(sim_violations(&o), 0, "%s not flagged", ctl[c].name);
        cr_log_info("%s: late %zu early %zu oversize %zu order %zu bad %zu, max wait %llu",
                    ctl[c].name, o.late, o.early, o.oversize, o.order_breaks, o.bad,
                    (unsigned long long)o.max_wait);
    }
}

/* ---- typed wrapper and preconditions ---- */

typedef struct trec { uint32_t id; char tag[12]; } rec;
AP_BATCH_DEFINE(recb, rec)

Test(batch, typed_wrapper)
{
    rec buf[3], out[3];
    recb b;
    EXPECT_EQ(recb_init(&b, buf, sizeof buf, 3, 50), AP_OK);
    EXPECT_EQ(recb_init(&b, buf, sizeof buf, 0, 50), AP_INVAL);
    EXPECT_EQ(recb_init(&b, buf, sizeof buf - 1, 3, 50), AP_INVAL);
    EXPECT_EQ(recb_init(&b, NULL, sizeof buf, 3, 50), AP_INVAL);
    EXPECT_EQ(b.b.elem_size, sizeof(rec));
    bool due;
    EXPECT_EQ(recb_add(&b, &(rec){1, "a"}, 10, &due), AP_OK);
    EXPECT_EQ(recb_deadline(&b), 60);
    size_t n;
    EXPECT_EQ(recb_take(&b, out, 59, &n), AP_EMPTY);
    EXPECT_EQ(recb_take(&b, out, 60, &n), AP_OK);
    EXPECT_EQ(out[0].id, 1);
    EXPECT_EQ(recb_add(&b, &(rec){2, "b"}, 70, &due), AP_OK);
    recb_close(&b);
    EXPECT_EQ(recb_flush(&b, out, &n), AP_OK);
    EXPECT_EQ(out[0].tag[0], 'b');
    recb_fini(&b);
}

Test(batch, add_after_fini_asserts, .signal = SIGABRT)
{
    uint64_t buf[2];
    ap_batch b;
    ap_batch_desc d = D(2, 10);
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf, &d), AP_OK);
    ap_batch_fini(&b);
    ap_status st = ap_batch_add(&b, &(uint64_t){1}, 0, NULL);
    cr_log_error("add after fini returned %d", (int)st);
}

/* Review finds: every parked take future must learn a new deadline. */
Test(batch, first_add_wakes_every_take_future_so_a_cancel_strands_nobody)
{
    int buf[8], outa[8], outb[8];
    ap_batch b;
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf,
                            &(ap_batch_desc){.elem_size = sizeof(int), .max_size = 8,
                                             .max_delay_ns = 1000}),
              AP_OK);
    ap_batch_take_fut A, B;
    ap_batch_take_fut_init(&A, &b, outa);
    ap_batch_take_fut_init(&B, &b, outb);
    tw ta = {0}, tb = {0};
    ap_cx ca = {{tw_wake, &ta}, 0, AP_DEADLINE_NONE}, cb = {{tw_wake, &tb}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&A, &ca), AP_PENDING);
    EXPECT_EQ(ap_batch_take_poll(&B, &cb), AP_PENDING);
    int x = 7;
    bool due;
    EXPECT_EQ(ap_batch_add(&b, &x, 10, &due), AP_OK);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(calls(&tb), 1, "B never learns the deadline if A alone is woken and cancels");
    ca.now = 10, ca.deadline = AP_DEADLINE_NONE;
    EXPECT_EQ(ap_batch_take_poll(&A, &ca), AP_PENDING);
    EXPECT_EQ(ca.deadline, 1010);
    ap_batch_take_cancel(&A);
    cb.now = 10, cb.deadline = AP_DEADLINE_NONE;
    EXPECT_EQ(ap_batch_take_poll(&B, &cb), AP_PENDING);
    EXPECT_EQ(cb.deadline, 1010, "B must re-arm at the batch's deadline");
    cb.now = 1010;
    EXPECT_EQ(ap_batch_take_poll(&B, &cb), AP_READY);
    EXPECT_EQ(ap_batch_take_status(&B), AP_OK);
    EXPECT_EQ(ap_batch_take_count(&B), 1);
}

Test(batch, an_add_from_a_clock_behind_wakes_takers_to_an_earlier_deadline)
{
    int buf[8], out[8];
    ap_batch b;
    EXPECT_EQ(ap_batch_init(&b, buf, sizeof buf,
                            &(ap_batch_desc){.elem_size = sizeof(int), .max_size = 8,
                                             .max_delay_ns = 1000}),
              AP_OK);
    int x = 1;
    bool due;
    EXPECT_EQ(ap_batch_add(&b, &x, 100, &due), AP_OK);
    ap_batch_take_fut f;
    ap_batch_take_fut_init(&f, &b, out);
    tw t = {0};
    ap_cx cx = {{tw_wake, &t}, 100, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 1100);
    EXPECT_EQ(ap_batch_add(&b, &x, 50, &due), AP_OK); /* another thread's clock is behind */
    EXPECT_EQ(calls(&t), 1, "the earlier deadline was not announced");
    cx.now = 100, cx.deadline = AP_DEADLINE_NONE;
    EXPECT_EQ(ap_batch_take_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 1050);
    ap_batch_take_cancel(&f);
}

/* ---- issue #14: per-item completion and the weigher ---- */

/* a completion callback that counts its calls and keeps the status */
typedef struct cb_rec {
    ap_batch_done d;
    int calls;
    ap_status st;
} cb_rec;

static void cb_done(void *ctx, ap_batch_done *d, ap_status st)
{
    cb_rec *r = (cb_rec *)ctx;
    if (&r->d != d)
        st = AP_INVAL; /* the wrong record: flagged by the status checks */
    r->calls++;
    r->st = st;
}

Test(batch, completion_waits_for_take_and_complete_and_carries_the_status)
{
    uint64_t buf[4], out[4];
    ap_batch b;
    ap_batch_desc d = D(4, 100);
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    cb_rec r[3];
    for (uint64_t i = 0; i < 3; i++) {
        ap_batch_done_init(&r[i].d, cb_done, &r[i]);
        r[i].calls = 0;
        EXPECT_EQ(ap_batch_add_done(&b, &i, 10, NULL, &r[i].d), AP_OK);
    }
    EXPECT_EQ(ap_batch_done_status(&r[0].d), AP_NOT_READY, "pending while held");
    size_t n = 0;
    uint64_t id = 0;
    EXPECT_EQ(ap_batch_take_tracked(&b, out, 50, &n, &id), AP_EMPTY, "not due");
    EXPECT_EQ(ap_batch_take_tracked(&b, out, 110, &n, &id), AP_OK);
    EXPECT_EQ(n, 3);
    EXPECT_EQ(id, 1, "ids count taken batches from 1");
    for (int i = 0; i < 3; i++) /* taken, not completed: still pending */
        EXPECT(r[i].calls == 0 && ap_batch_done_status(&r[i].d) == AP_NOT_READY);
    /* bad input changes nothing */
    EXPECT_EQ(ap_batch_complete(&b, 0, AP_OK), AP_INVAL);
    EXPECT_EQ(ap_batch_complete(&b, 2, AP_OK), AP_INVAL, "never taken");
    EXPECT_EQ(ap_batch_complete(&b, 1, AP_NOT_READY), AP_INVAL);
    EXPECT_EQ(ap_batch_add_done(&b, &n, 10, NULL, &r[0].d), AP_INVAL, "still pending");
    EXPECT_EQ(ap_batch_add_done(&b, &n, 10, NULL, NULL), AP_INVAL);
    EXPECT_EQ(ap_batch_len(&b), 0, "the refused adds added nothing");
    for (int i = 0; i < 3; i++)
        EXPECT(r[i].calls == 0 && ap_batch_done_status(&r[i].d) == AP_NOT_READY);
    /* the consumer's outcome reaches every record once */
    EXPECT_EQ(ap_batch_complete(&b, 1, AP_REJECTED), AP_OK);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(r[i].calls, 1);
        EXPECT_EQ(r[i].st, AP_REJECTED);
        EXPECT_EQ(ap_batch_done_status(&r[i].d), AP_REJECTED);
    }
    EXPECT_EQ(ap_batch_complete(&b, 1, AP_OK), AP_OK, "again: finds nothing");
    for (int i = 0; i < 3; i++)
        EXPECT(r[i].calls == 1 && r[i].st == AP_REJECTED, "resolved once");
    EXPECT_EQ(bstats(&b).completed, 3);
    /* a resolved record is reusable */
    EXPECT_EQ(ap_batch_add_done(&b, &n, 10, NULL, &r[0].d), AP_OK);
    EXPECT_EQ(ap_batch_flush(&b, out, &n), AP_OK, "an untracked take completes with AP_OK");
    EXPECT(r[0].calls == 2 && r[0].st == AP_OK);
    ap_batch_fini(&b);
}

Test(batch, completion_out_of_order_batches_and_a_future)
{
    uint64_t buf[2], out[2];
    ap_batch b;
    ap_batch_desc d = D(2, 100);
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    ap_batch_done f[4];
    tw t[4] = {0};
    for (uint64_t i = 0; i < 4; i++) {
        ap_batch_done_init(&f[i], NULL, NULL);
        EXPECT_EQ(ap_batch_add_done(&b, &i, 0, NULL, &f[i]), AP_OK);
        ap_cx cx = cx_of(&t[i]);
        EXPECT_EQ(ap_batch_done_poll(&f[i], &cx), AP_PENDING);
        if (i % 2 == 1) { /* full: take it */
            size_t n;
            uint64_t id;
            EXPECT_EQ(ap_batch_take_tracked(&b, out, 0, &n, &id), AP_OK);
            EXPECT_EQ(id, i / 2 + 1);
        }
    }
    EXPECT_EQ(ap_batch_complete(&b, 2, AP_CLOSED), AP_OK); /* the second batch first */
    EXPECT(calls(&t[0]) == 0 && calls(&t[1]) == 0, "batch 1 is not complete");
    EXPECT(calls(&t[2]) == 1 && calls(&t[3]) == 1);
    EXPECT_EQ(ap_batch_done_status(&f[0]), AP_NOT_READY);
    EXPECT_EQ(ap_batch_done_status(&f[2]), AP_CLOSED);
    ap_cx cx = cx_of(&t[2]);
    EXPECT_EQ(ap_batch_done_poll(&f[2], &cx), AP_READY);
    EXPECT_EQ(ap_batch_complete(&b, 1, AP_OK), AP_OK);
    EXPECT(calls(&t[0]) == 1 && calls(&t[1]) == 1);
    ap_block_on(&f[0].base); /* a resolved record is a ready future: returns at once */
    EXPECT_EQ(ap_batch_done_status(&f[1]), AP_OK);
    ap_batch_fini(&b);
}

Test(batch, completion_cancel_leaves_the_batcher_and_the_item_ships)
{
    uint64_t buf[4], out[4];
    ap_batch b;
    ap_batch_desc d = D(4, 100);
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    cb_rec r[3];
    for (uint64_t i = 0; i < 3; i++) {
        ap_batch_done_init(&r[i].d, cb_done, &r[i]);
        r[i].calls = 0;
        EXPECT_EQ(ap_batch_add_done(&b, &i, 0, NULL, &r[i].d), AP_OK);
    }
    ap_batch_done_cancel(&r[1].d); /* from the current batch */
    EXPECT_EQ(ap_batch_done_status(&r[1].d), AP_CANCELED);
    EXPECT_EQ(r[1].calls, 0, "a cancel runs no callback");
    size_t n;
    uint64_t id;
    EXPECT_EQ(ap_batch_flush_tracked(&b, out, &n, &id), AP_OK);
    EXPECT_EQ(n, 3, "the cancelled record's item still ships");
    ap_batch_done_cancel(&r[2].d); /* from a taken batch */
    EXPECT_EQ(ap_batch_complete(&b, id, AP_OK), AP_OK);
    EXPECT(r[0].calls == 1 && r[0].st == AP_OK);
    EXPECT(r[1].calls == 0 && r[2].calls == 0);
    EXPECT_EQ(ap_batch_done_status(&r[2].d), AP_CANCELED);
    ap_batch_done_cancel(&r[0].d); /* resolved: a no-op */
    EXPECT_EQ(ap_batch_done_status(&r[0].d), AP_OK);
    EXPECT_EQ(bstats(&b).completed, 3);
    ap_batch_fini(&b);
}

Test(batch, completion_through_a_take_future_and_take_wait)
{
    uint64_t buf[2], out[2];
    ap_batch b;
    ap_batch_desc d = D(2, 100);
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    ap_batch_done r[2];
    ap_batch_take_fut f;
    ap_batch_take_fut_init(&f, &b, out);
    EXPECT_EQ(ap_batch_take_id(&f), 0);
    for (uint64_t i = 0; i < 2; i++) {
        ap_batch_done_init(&r[i], NULL, NULL);
        EXPECT_EQ(ap_batch_add_done(&b, &i, 0, NULL, &r[i]), AP_OK);
    }
    ap_block_on(&f.base);
    EXPECT_EQ(ap_batch_take_status(&f), AP_OK);
    EXPECT_EQ(ap_batch_take_id(&f), 1);
    EXPECT_EQ(ap_batch_done_status(&r[0]), AP_NOT_READY, "a take future is tracked");
    EXPECT_EQ(ap_batch_complete(&b, ap_batch_take_id(&f), AP_REJECTED), AP_OK);
    EXPECT(ap_batch_done_status(&r[0]) == AP_REJECTED && ap_batch_done_status(&r[1]) == AP_REJECTED);
    for (uint64_t i = 0; i < 2; i++)
        EXPECT_EQ(ap_batch_add_done(&b, &i, 0, NULL, &r[i]), AP_OK);
    size_t n;
    EXPECT_EQ(ap_batch_take_wait(&b, out, &n, bt_deadline()), AP_OK);
    EXPECT_EQ(ap_batch_done_status(&r[1]), AP_OK, "take_wait is untracked: AP_OK");
    ap_batch_fini(&b);
}

static size_t weigh_first(const void *elem, void *ctx)
{
    (void)ctx;
    uint64_t v;
    memcpy(&v, elem, sizeof v);
    return (size_t)v; /* the item's value is its weight */
}

Test(batch, weigher_flushes_on_bytes_and_seals_a_batch_an_item_does_not_fit)
{
    uint64_t buf[8], out[8];
    ap_batch b;
    ap_batch_desc d = D(8, 1000);
    d.max_bytes = 100;
    d.weigh = weigh_first;
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    bool due = true;
    uint64_t w = 60;
    EXPECT_EQ(ap_batch_add(&b, &w, 0, &due), AP_OK);
    EXPECT_NOT(due);
    EXPECT_EQ(ap_batch_deadline(&b), 1000);
    w = 30;
    EXPECT_EQ(ap_batch_add(&b, &w, 0, &due), AP_OK);
    EXPECT_NOT(due, "90 of 100 bytes: not due");
    w = 20;
    EXPECT_EQ(ap_batch_add(&b, &w, 0, &due), AP_FULL, "110 > 100: refused");
    EXPECT_EQ(ap_batch_len(&b), 2, "refused: not added");
    EXPECT_EQ(ap_batch_deadline(&b), 0, "... and the batch is sealed: due now");
    size_t n;
    EXPECT_EQ(ap_batch_take(&b, out, 1, &n), AP_OK);
    EXPECT_EQ(n, 2);
    EXPECT_EQ(ap_batch_add(&b, &w, 2, &due), AP_OK, "the retry opens the next batch");
    EXPECT_NOT(due, "the seal went with the taken batch");
    w = 80;
    EXPECT_EQ(ap_batch_add(&b, &w, 2, &due), AP_OK);
    EXPECT(due, "exactly 100 bytes: due");
    EXPECT_EQ(ap_batch_add(&b, &w, 2, &due), AP_FULL);
    EXPECT_EQ(ap_batch_take(&b, out, 2, &n), AP_OK);
    w = 500; /* heavier than max_bytes alone: a batch of one, due at once */
    EXPECT_EQ(ap_batch_add(&b, &w, 3, &due), AP_OK);
    EXPECT(due);
    EXPECT_EQ(bstats(&b).bytes, 500);
    EXPECT_EQ(ap_batch_take(&b, out, 3, &n), AP_OK);
    EXPECT_EQ(n, 1);
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    EXPECT_EQ(s.by_bytes, 3);
    EXPECT_EQ(s.batches, 3);
    EXPECT_EQ(s.bytes, 0);
    ap_batch_fini(&b);
    /* no weigher: an item weighs elem_size */
    d.weigh = NULL;
    d.max_bytes = 3 * sizeof(uint64_t);
    EXPECT(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_batch_add(&b, &w, 0, &due), AP_OK);
    EXPECT(due, "3 * elem_size bytes");
    EXPECT_EQ(ap_batch_add(&b, &w, 0, &due), AP_FULL);
    ap_batch_fini(&b);
}

/* The theorem, on random runs against a model: every record is resolved
 * exactly once, with the status its batch was completed with, never before
 * that batch is taken and completed; batches never weigh more than
 * max_bytes (two items or more) nor hold more than max_size. */
#define CT_N 4000
typedef struct ct_run {
    cb_rec r[CT_N];
    uint64_t batch_of[CT_N];   /* 0: not taken yet */
    ap_status want[CT_N + 1];  /* by batch id: the status it was completed with */
    bool completed[CT_N + 1];
} ct_run;

static uint64_t ct_rng(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static size_t ct_violations(uint64_t seed)
{
    static ct_run c;
    memset(&c, 0, sizeof c);
    uint64_t buf[48], out[48], rng = seed | 1;
    ap_batch b;
    /* up to 48 items: more records per batch than ap_batch_complete
     * resolves per lock hold (AP__BATCH_RUN) */
    ap_batch_desc d = D(1 + ct_rng(&rng) % 48, 50);
    d.max_bytes = ct_rng(&rng) % 2 ? 0 : 64 + ct_rng(&rng) % 200;
    d.weigh = weigh_first;
    if (ap_batch_init(&b, buf, sizeof buf, &d) != AP_OK)
        return 1;
    static const ap_status sts[] = {AP_OK, AP_REJECTED, AP_CLOSED, AP_TIMEDOUT};
    size_t bad = 0, next = 0;
    uint64_t now = 0, taken = 0, open_ids[CT_N];
    size_t nopen = 0;
    while (next < CT_N || nopen > 0 || ap_batch_len(&b) > 0) {
        now += ct_rng(&rng) % 10;
        unsigned op = (unsigned)(ct_rng(&rng) % 4);
        if (op <= 1 && next < CT_N) {
            uint64_t v = 1 + ct_rng(&rng) % 120; /* value = weight; id by order */
            ap_batch_done_init(&c.r[next].d, cb_done, &c.r[next]);
            /* the item carries its weight; its identity is its add order */
            ap_status st = ap_batch_add_done(&b, &v, now, NULL, &c.r[next].d);
            if (st == AP_OK)
                next++;
        } else if (op == 2 || next == CT_N) {
            size_t n;
            uint64_t id, before = bstats(&b).added - ap_batch_len(&b);
            bool force = next == CT_N;
            ap_status st = force ? ap_batch_flush_tracked(&b, out, &n, &id)
                                 : ap_batch_take_tracked(&b, out, now, &n, &id);
            if (st == AP_OK) {
                bad += id != ++taken;
                size_t w = 0;
                for (size_t i = 0; i < n; i++)
                    w += (size_t)out[i];
                bad += n > d.max_size || (d.max_bytes && n > 1 && w > d.max_bytes);
                for (size_t i = 0; i < n; i++)
                    c.batch_of[before + i] = id;
                open_ids[nopen++] = id;
            }
        }
        if ((op == 3 || next == CT_N) && nopen > 0) { /* complete a random taken batch */
            size_t k = (size_t)(ct_rng(&rng) % nopen);
            uint64_t id = open_ids[k];
            open_ids[k] = open_ids[--nopen];
            ap_status s = sts[ct_rng(&rng) % 4];
            c.want[id] = s;
            c.completed[id] = true;
            bad += ap_batch_complete(&b, id, s) != AP_OK;
        }
        /* every step: a record is resolved iff its batch was completed */
        if (ct_rng(&rng) % 64 == 0 || next == CT_N)
            for (size_t i = 0; i < next; i++) {
                uint64_t id = c.batch_of[i];
                bool done = id != 0 && c.completed[id];
                bad += c.r[i].calls != (done ? 1 : 0);
                bad += done ? c.r[i].st != c.want[id]
                            : ap_batch_done_status(&c.r[i].d) != AP_NOT_READY;
            }
    }
    for (size_t i = 0; i < CT_N; i++)
        bad += c.r[i].calls != 1 || c.batch_of[i] == 0 || c.r[i].st != c.want[c.batch_of[i]];
    ap_batch_stats s;
    ap_batch_stats_get(&b, &s);
    bad += s.completed != CT_N || s.added != CT_N;
    ap_batch_fini(&b);
    return bad;
}

Test(batch, theorem_every_completion_once_with_its_batch_status)
{
    for (uint64_t seed = 1; seed <= 12; seed++)
        EXPECT_EQ(ct_violations(seed * 0x9E3779B97F4A7C15u), 0, "seed %llu",
                  (unsigned long long)seed);
}

/* ---- the header's USAGE block, verbatim between the markers (tests/docs.sh) ---- */

struct rec { uint32_t id; uint32_t size; };
static uint64_t batch_clock;
static size_t batch_shipped, batch_batches, batch_acked[2];
static ap_deadline batch_timer = AP_DEADLINE_NONE;
static uint64_t now(void) { return batch_clock; }
static ap_status write_batch(const struct rec *r, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += r[i].size;
    batch_shipped += n;
    batch_batches++;
    return bytes <= 16384 || n == 1 ? AP_OK : AP_REJECTED; /* a batch over 16 KiB: a bug */
}
static void arm_timer(ap_deadline at) { batch_timer = at; }
static size_t rec_bytes(const void *r, void *ctx) { (void)ctx; return ((const struct rec *)r)->size; }
static void acked(void *ctx, ap_batch_done *done, ap_status st)
{
    (void)ctx, (void)done;
    batch_acked[st == AP_OK]++;
}

/* USAGE begin */
static struct rec buf[64], out[64];
static ap_batch b;
static void ship(void) {                  // on a due add and on the timer
    size_t n;
    uint64_t id;                          // the batch's outcome goes to its records
    while (ap_batch_take_tracked(&b, out, now(), &n, &id) == AP_OK)
        if (ap_batch_complete(&b, id, write_batch(out, n)) != AP_OK) abort();
    arm_timer(ap_batch_deadline(&b));     // AP_DEADLINE_NONE: disarm
}
static void on_record(const struct rec *r, ap_batch_done *done) {  // done: kept
    bool due;                                               // until acked runs
    ap_batch_done_init(done, acked, NULL);
    ap_status st = ap_batch_add_done(&b, r, now(), &due, done);
    if (st == AP_FULL) {   // r does not fit in 16 KiB: that batch is due now
        ship();
        st = ap_batch_add_done(&b, r, now(), &due, done);  // an empty batch takes it
    }
    if (st != AP_OK) return;
    if (due) ship();
    else arm_timer(ap_batch_deadline(&b));  // a batch's first item sets it
}
static void on_timer(void) { ship(); }
// at start-up: 64 records or 16 KiB (rec_bytes weighs one) or 2 ms
/* USAGE pause */
Test(batch, usage)
{
    static ap_batch_done dones[200];
    /* USAGE resume */
    if (ap_batch_init(&b, buf, sizeof buf, &(ap_batch_desc){.elem_size = sizeof(struct rec),
                      .max_size = 64, .max_delay_ns = 2 * AP_NS_PER_MS,
                      .max_bytes = 16384, .weigh = rec_bytes}) != AP_OK)
        abort();
    /* USAGE end */
    batch_clock = 1000;
    for (uint32_t i = 0; i < 64 + 10; i++) { /* small records: the 64th fills a batch */
        on_record(&(struct rec){i, 100}, &dones[i]);
        batch_clock += 10;
    }
    EXPECT_EQ(batch_batches, 1);
    EXPECT_EQ(batch_shipped, 64);
    EXPECT_EQ(batch_acked[1], 64, "each shipped record heard AP_OK once");
    EXPECT_EQ(ap_batch_done_status(&dones[64]), AP_NOT_READY, "held: not acked");
    /* the 65th item (added at 1000 + 64 * 10) armed the timer for its batch */
    EXPECT_EQ(batch_timer, 1000 + 64 * 10 + 2 * AP_NS_PER_MS);
    batch_clock = batch_timer - 1; /* a timer that fires early ships nothing */
    on_timer();
    EXPECT_EQ(batch_shipped, 64);
    batch_clock = batch_timer; /* the timer fires */
    on_timer();
    EXPECT_EQ(batch_shipped, 74);
    EXPECT_EQ(batch_batches, 2);
    EXPECT_EQ(batch_acked[1], 74);
    EXPECT_EQ(batch_timer, AP_DEADLINE_NONE, "empty: the timer is disarmed");
    /* big records: 16 KiB seals a batch before 64 records */
    for (uint32_t i = 0; i < 100; i++)
        on_record(&(struct rec){i, 3000}, &dones[i]); /* 5 fit in 16384 */
    batch_clock += 2 * AP_NS_PER_MS;
    on_timer();
    EXPECT_EQ(batch_shipped, 174);
    EXPECT_EQ(batch_batches, 2 + 20, "100 records of 3000 bytes: 20 batches of 5");
    EXPECT_EQ(batch_acked[1], 174);
    EXPECT_EQ(batch_acked[0], 0, "no batch passed 16 KiB");
    ap_batch_fini(&b);
}
