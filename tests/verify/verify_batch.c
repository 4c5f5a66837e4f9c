/*
 * verify_batch.c -- the batcher's take future against adders, under every
 * interleaving within the preemption bound, SC and x86-TSO, with the fake
 * clock (vf_now / vf_set_now; vf_wait passes vf_now() as cx->now and, when
 * a poll lowers cx->deadline, re-polls after a free switch instead of
 * parking: the timer of a real loop).
 *
 *   exactly once  every added item is in exactly one batch, batches in the
 *                 order of the adds (per producer), none larger than
 *                 max_size, none empty
 *   never early   a batch the take future returns is full, or the batcher
 *                 was closed, or the poll's now >= its oldest add + delay
 *   no lost wake  the take future completes when a batch becomes due by
 *                 size (max_delay = AP_DEADLINE_NONE: no deadline, so the
 *                 consumer parks with a partial batch and only the add that
 *                 fills it can wake it) or by the first item of a batch
 *                 (an empty batcher: the consumer parks)
 *   close drains  after close the consumer takes what is held, then sees
 *                 AP_CLOSED; adds are refused
 *
 * Scenarios:
 *   batch_size_1p      max 2, no age limit; T0 adds 3 items (spinning on
 *                      AP_FULL: adders never wait) then closes; T1 takes
 *   batch_time_1p      max 2, delay 100; T0 adds item 0, moves the clock
 *                      by the delay, adds item 1, moves it again, spins
 *                      until T1 has both (so no close can mask a lost
 *                      wake), then closes; T1 takes
 *   batch_size_2p      max 2, no age limit; T0, T1 add 2 items each; the
 *                      last to finish closes; T2 takes
 *   batch_done         (issue #14) max 2, no age limit; T0 adds 2 items
 *                      with completion records (futures) and waits on each
 *                      (vf_wait: parks); T1 takes with a tracked take
 *                      future and completes the batch with AP_REJECTED.
 *                      Checked: each record resolves once, with AP_REJECTED,
 *                      never before the completion began (no early
 *                      resolution), and T0 is woken (no lost wake: a poll
 *                      that stored its waker outside the completer's lock
 *                      would park forever)
 *   batch_done_2p      the same with T0, T1 adding one item each and T2
 *                      taking
 */
#include "vf.h"
#include "asyncpat/batch.h"

#define VB_MAXI 4
#define VB_DELAY 100

typedef struct bst {
    ap_batch b;
    int buf[VB_MAXI];
    uint64_t add_time[VB_MAXI * 10 + VB_MAXI]; /* by item value */
    int got[2 * VB_MAXI]; /* items in take order */
    int ngot;
    int nbatches;
    int closing; /* set just before ap_batch_close */
    int prod_done;
    int closed_seen;
} bst;

static int b_max, b_items, b_nprod, b_time;

static void *b_setup(void)
{
    bst *s = calloc(1, sizeof *s);
    ap_batch_desc d = {.elem_size = sizeof(int), .max_size = (size_t)b_max,
                       .max_delay_ns = b_time ? (uint64_t)VB_DELAY : (uint64_t)AP_DEADLINE_NONE};
    VF_CHECK(ap_batch_init(&s->b, s->buf, sizeof s->buf, &d) == AP_OK);
    return s;
}

static void b_teardown(void *p) { free(p); }

/* A take future that also records the cx->now of the poll that completed. */
typedef struct tfut {
    ap_future base;
    ap_batch_take_fut inner;
    uint64_t done_now;
} tfut;

static ap_poll tfut_poll(ap_future *f, ap_cx *cx)
{
    tfut *t = (tfut *)(void *)f;
    ap_poll r = ap_batch_take_poll(&t->inner, cx);
    if (r == AP_READY)
        t->done_now = cx->now;
    return r;
}

static void add_item(bst *s, int v)
{
    bool due = false;
    ap_status st;
    uint64_t now = vf_now();
    s->add_time[v] = now;
    /* adders never wait: on AP_FULL the taker must take; spin (free switch) */
    while ((st = ap_batch_add(&s->b, &v, now, &due)) == AP_FULL)
        vf_yield();
    VF_CHECK(st == AP_OK, "add %d: %d", v, st);
}

static void b_close(bst *s)
{
    int v = 99;
    s->closing = 1;
    ap_batch_close(&s->b);
    VF_CHECK(ap_batch_add(&s->b, &v, vf_now(), NULL) == AP_CLOSED);
}

static void consume(bst *s)
{
    for (;;) {
        int out[VB_MAXI];
        tfut f = {.base = {tfut_poll, NULL}};
        ap_batch_take_fut_init(&f.inner, &s->b, out);
        vf_wait(&f.base);
        ap_status st = ap_batch_take_status(&f.inner);
        if (st == AP_CLOSED) {
            VF_CHECK(s->closing, "AP_CLOSED before close");
            VF_CHECK(s->ngot == b_items * b_nprod, "AP_CLOSED after %d of %d items", s->ngot,
                     b_items * b_nprod);
            s->closed_seen = 1;
            return;
        }
        VF_CHECK(st == AP_OK, "take: %d", st);
        size_t n = ap_batch_take_count(&f.inner);
        VF_CHECK(n >= 1 && n <= (size_t)b_max, "batch of %zu (max %d)", n, b_max);
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i < n; i++) {
            VF_CHECK(s->ngot < 2 * VB_MAXI);
            s->got[s->ngot++] = out[i];
            if (s->add_time[out[i]] < oldest)
                oldest = s->add_time[out[i]];
        }
        VF_CHECK(n == (size_t)b_max || s->closing ||
                     (b_time && f.done_now >= oldest + VB_DELAY),
                 "batch of %zu taken early: now %llu, oldest %llu", n,
                 (unsigned long long)f.done_now, (unsigned long long)oldest);
        s->nbatches++;
    }
}

static void b_thread(void *p, int id)
{
    bst *s = p;
    if (id == b_nprod) {
        consume(s);
        return;
    }
    if (b_time) { /* one producer */
        uint64_t t0 = vf_now();
        add_item(s, 0);
        vf_set_now(t0 + VB_DELAY);
        add_item(s, 1);
        vf_set_now(t0 + 2 * VB_DELAY);
        while (s->ngot < b_items) /* close only when all came out */
            vf_yield();
        b_close(s);
        return;
    }
    for (int i = 0; i < b_items; i++)
        add_item(s, id * 10 + i);
    if (++s->prod_done == b_nprod)
        b_close(s);
}

static void b_invariant(void *p)
{
    bst *s = p;
    VF_CHECK(s->b.len <= (size_t)b_max, "batcher holds %zu > %d", s->b.len, b_max);
}

static void b_check(void *p)
{
    bst *s = p;
    VF_CHECK(s->closed_seen);
    VF_CHECK(s->ngot == b_items * b_nprod, "%d of %d items taken", s->ngot, b_items * b_nprod);
    /* every item once, in add order per producer */
    int next[2] = {0, 0};
    for (int i = 0; i < s->ngot; i++) {
        int v = s->got[i], pr = v / 10;
        VF_CHECK(pr < b_nprod && v % 10 == next[pr], "item %d out of order or duplicated", v);
        next[pr]++;
    }
    ap_batch_stats st;
    ap_batch_stats_get(&s->b, &st);
    VF_CHECK(st.added == (uint64_t)(b_items * b_nprod) && st.len == 0);
    VF_CHECK(st.batches == (uint64_t)s->nbatches);
    VF_CHECK(st.by_size + st.by_time + st.by_close + st.by_flush == st.batches);
    if (!b_time)
        VF_CHECK(st.by_time == 0, "a batch due by age with no age limit");
    VF_CHECK(!ap_waitlist_has_waiters(&s->b.ready), "a take future left queued");
    ap_batch_fini(&s->b);
}

/* ---- issue #14: completion records ---- */

typedef struct dst {
    ap_batch b;
    int buf[2];
    ap_batch_done rec[2];
    int completing; /* set just before ap_batch_complete */
    int woken;
} dst;

static int d_nprod;

static void *d_setup(void)
{
    dst *s = calloc(1, sizeof *s);
    ap_batch_desc d = {.elem_size = sizeof(int), .max_size = 2,
                       .max_delay_ns = (uint64_t)AP_DEADLINE_NONE};
    VF_CHECK(ap_batch_init(&s->b, s->buf, sizeof s->buf, &d) == AP_OK);
    return s;
}

static void d_produce(dst *s, int v)
{
    ap_batch_done_init(&s->rec[v], NULL, NULL);
    VF_CHECK(ap_batch_add_done(&s->b, &v, vf_now(), NULL, &s->rec[v]) == AP_OK);
}

static void d_await(dst *s, int v)
{
    vf_wait(&s->rec[v].base);
    VF_CHECK(s->completing, "record %d resolved before its batch was completed", v);
    VF_CHECK(ap_batch_done_status(&s->rec[v]) == AP_REJECTED, "record %d: %d", v,
             ap_batch_done_status(&s->rec[v]));
    s->woken++;
}

static void d_thread(void *p, int id)
{
    dst *s = p;
    if (id == d_nprod) { /* the consumer */
        int out[2];
        ap_batch_take_fut f;
        ap_batch_take_fut_init(&f, &s->b, out);
        vf_wait(&f.base);
        VF_CHECK(ap_batch_take_status(&f) == AP_OK && ap_batch_take_count(&f) == 2);
        VF_CHECK(ap_batch_done_status(&s->rec[0]) == AP_NOT_READY &&
                     ap_batch_done_status(&s->rec[1]) == AP_NOT_READY,
                 "resolved by the take alone");
        s->completing = 1;
        VF_CHECK(ap_batch_complete(&s->b, ap_batch_take_id(&f), AP_REJECTED) == AP_OK);
        return;
    }
    if (d_nprod == 1) {
        d_produce(s, 0);
        d_produce(s, 1);
        d_await(s, 0);
        d_await(s, 1);
    } else {
        d_produce(s, id);
        d_await(s, id);
    }
}

static void d_check(void *p)
{
    dst *s = p;
    VF_CHECK(s->woken == 2, "%d of 2 records woke their waiter", s->woken);
    ap_batch_stats st;
    ap_batch_stats_get(&s->b, &st);
    VF_CHECK(st.completed == 2 && st.batches == 1 && st.len == 0);
    ap_batch_fini(&s->b);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = b_setup, .thread = b_thread,
                          .invariant = b_invariant, .check = b_check, .teardown = b_teardown};
        b_max = 2, b_items = 3, b_nprod = 1, b_time = 0;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "batch_size_1p_tso" : "batch_size_1p";
        total += vf_explore(&sc);

        b_max = 2, b_items = 2, b_nprod = 1, b_time = 1;
        sc.name = tso ? "batch_time_1p_tso" : "batch_time_1p";
        total += vf_explore(&sc);

        b_max = 2, b_items = 2, b_nprod = 2, b_time = 0;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "batch_size_2p_tso" : "batch_size_2p";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = d_setup, .thread = d_thread,
                          .check = d_check, .teardown = b_teardown};
        d_nprod = 1;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "batch_done_tso" : "batch_done";
        total += vf_explore(&sc);
        d_nprod = 2;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "batch_done_2p_tso" : "batch_done_2p";
        total += vf_explore(&sc);
    }
    printf("verify_batch: %lu executions\n", total);
    return 0;
}
