/*
 * tests/test_prefetch.c -- read-ahead over a keyed loader
 *
 * Fake loader: each load is a future placed in its slot; a timed load
 * completes exactly L ns after start on the fake clock (it lowers
 * cx->deadline to that instant, which is how the driver below learns when
 * to poll again), a manual one when the test says so (then it calls the
 * waker it was last polled with). Every load keeps a ledger record that
 * flags any poll after READY or cancel, any cancel after READY or twice,
 * any start into a slot whose load is still in flight, and more than depth
 * loads in flight.
 *
 * THE THEOREM (THEOREMS.md: "prefetch"), exact on the fake clock: for a
 * sequential scan, consumer time c per item, load time L, depth d and
 * W = max(0, L - (d-1)c): get 0 waits L (a miss), get k >= 1 waits W if d
 * divides k, else 0; so (d-1)c >= L (d >= ceil(L/c) + 1) makes every get
 * after the first a hit. The same simulation runs a naive loader (start,
 * wait, consume) as the sanity row: L per item.
 */
#include "asyncpat/prefetch.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "test_util.h"

static ap_prefetch_stats prefetch_stats_of(const ap_prefetch *x)
{
    ap_prefetch_stats s;
    ap_prefetch_stats_get(x, &s);
    return s;
}

enum { LD_LOADING, LD_READY, LD_CANCELLED };
#define MAXLOADS 8192

typedef struct fload {
    ap_future base;
    struct env *env;
    int id;
} fload;

typedef struct slot {
    fload f;
    uint64_t key; /* "the data": written at start, checked when served */
} slot;

typedef struct ldrec {
    uint64_t key, start, ready_at;
    slot *slot;
    int state;
    bool manual, done;
    ap_waker waker;
    int polls;
} ldrec;

typedef struct env {
    uint64_t now, L;
    uint64_t refuse_from; /* keys >= this are refused (0: none) */
    bool manual;          /* new loads complete only when told */
    uint64_t rng;         /* nonzero: L is random per load in [0, L] */
    size_t depth;
    int n;
    int violations;
    ldrec ld[MAXLOADS];
} env;

static int in_flight(env *e)
{
    int k = 0;
    for (int i = 0; i < e->n; i++)
        k += e->ld[i].state == LD_LOADING;
    return k;
}

static ap_poll fl_poll(ap_future *f, ap_cx *cx)
{
    fload *fl = (fload *)(void *)f;
    ldrec *r = &fl->env->ld[fl->id];
    r->polls++;
    if (r->state != LD_LOADING) {
        fl->env->violations++; /* polled after READY or cancel */
        return AP_READY;
    }
    bool ready = r->manual ? r->done : cx->now >= r->ready_at;
    if (ready) {
        r->state = LD_READY;
        return AP_READY;
    }
    r->waker = cx->waker;
    if (!r->manual)
        ap_cx_wake_at(cx, r->ready_at);
    return AP_PENDING;
}

static void fl_cancel(ap_future *f)
{
    fload *fl = (fload *)(void *)f;
    ldrec *r = &fl->env->ld[fl->id];
    if (r->state != LD_LOADING)
        fl->env->violations++; /* cancel after READY, or twice */
    r->state = LD_CANCELLED;
    r->waker = AP_WAKER_NONE;
}

static ap_future *fl_start(void *ctx, uint64_t key, void *slotp, uint64_t now)
{
    env *e = ctx;
    if (e->refuse_from && key >= e->refuse_from)
        return NULL;
    slot *s = slotp;
    for (int i = 0; i < e->n; i++)
        if (e->ld[i].slot == s && e->ld[i].state == LD_LOADING)
            e->violations++; /* slot reused while its load is in flight */
    EXPECT(e->n < MAXLOADS);
    int id = e->n++;
    ldrec *r = &e->ld[id];
    uint64_t L = e->rng ? rng_next(&e->rng) % (e->L + 1) : e->L;
    *r = (ldrec){.key = key, .start = now, .ready_at = now + L, .slot = s,
                 .state = LD_LOADING, .manual = e->manual};
    s->f.base.poll = fl_poll;
    s->f.base.cancel = fl_cancel;
    s->f.env = e;
    s->f.id = id;
    s->key = key;
    if (in_flight(e) > (int)e->depth)
        e->violations++; /* memory bound */
    return &s->f.base;
}

/* Complete manual load `id` and call the waker it was last polled with. */
static void fl_finish(env *e, int id)
{
    e->ld[id].done = true;
    ap_waker_wake(e->ld[id].waker);
}

static void count_wake(void *ctx) { (*(int *)ctx)++; }

static env *env_new(uint64_t L, size_t depth)
{
    env *e = calloc(1, sizeof *e);
    EXPECT(e != NULL);
    e->L = L;
    e->depth = depth;
    return e;
}

#define MAXD 64
static _Alignas(slot) unsigned char ring[AP_PREFETCH_BYTES(MAXD, sizeof(slot))];

static void pf_init(ap_prefetch *pf, env *e, size_t depth, int64_t stride, bool fixed)
{
    EXPECT(depth <= MAXD);
    EXPECT_EQ(ap_prefetch_init(pf, ring, sizeof ring,
                               &(ap_prefetch_desc){.start = fl_start, .ctx = e,
                                                   .depth = depth, .slot_size = sizeof(slot),
                                                   .stride = stride, .fixed_stride = fixed}),
              AP_OK);
}

/* One get driven on the fake clock: poll; when pending, jump to the
 * deadline the load asked for. Returns the ns waited. */
static uint64_t drive_get(env *e, ap_prefetch *pf, uint64_t key, ap_status *st, slot **out)
{
    ap_prefetch_get_fut g;
    void *sp = NULL;
    ap_prefetch_get_fut_init(&g, pf, key, &sp);
    uint64_t t0 = e->now;
    int wakes = 0;
    for (int guard = 0;; guard++) {
        ap_cx cx = {{count_wake, &wakes}, e->now, AP_DEADLINE_NONE};
        if (ap_prefetch_get_poll(&g, &cx) == AP_READY)
            break;
        EXPECT_NE(cx.deadline, AP_DEADLINE_NONE, "a timed load passes its deadline up");
        EXPECT_GT(cx.deadline, e->now);
        EXPECT_LT(guard, 4);
        e->now = cx.deadline;
    }
    *st = ap_prefetch_get_status(&g);
    *out = sp;
    if (*st == AP_OK)
        EXPECT_EQ((*out)->key, key, "the slot holds the key's data");
    return e->now - t0;
}

/* After fini: every load finished exactly once; counters add up. */
static void check_ledger(env *e, ap_prefetch *pf)
{
    ap_prefetch_stats s;
    ap_prefetch_stats_get(pf, &s);
    uint64_t ready = 0, cancelled = 0;
    for (int i = 0; i < e->n; i++) {
        EXPECT_NE(e->ld[i].state, LD_LOADING, "load %d left in flight", i);
        ready += e->ld[i].state == LD_READY;
        cancelled += e->ld[i].state == LD_CANCELLED;
    }
    EXPECT_EQ(e->violations, 0);
    EXPECT_EQ(s.started, (uint64_t)e->n);
    EXPECT_EQ(s.completed, ready);
    EXPECT_EQ(s.cancelled, cancelled);
    EXPECT_EQ(s.started, s.completed + s.cancelled);
    EXPECT_EQ(s.completed, s.used + s.wasted);
    EXPECT_EQ(s.loading, 0);
    EXPECT_EQ(s.ready, 0);
    EXPECT_EQ(s.gets, s.hits + s.waits + s.misses);
}

TestSuite(prefetch, .timeout = TEST_TIMEOUT_S);

Test(prefetch, bytes_is_a_constant_and_desc_defaults)
{
    static unsigned char b[AP_PREFETCH_BYTES(3, 10)];
    EXPECT_GE(sizeof b, 3 * 10 + 3 * sizeof(struct ap__prefetch_rec));
    ap_prefetch_desc r = ap_prefetch_desc_resolved(&(ap_prefetch_desc){.depth = 2});
    EXPECT_EQ(r.stride, 1);
    EXPECT_EQ(r.depth, 2);
    r = ap_prefetch_desc_resolved(&(ap_prefetch_desc){.stride = -3});
    EXPECT_EQ(r.stride, -3);
}

Test(prefetch, bad_input_is_inval_and_changes_nothing)
{
    ap_prefetch pf, before;
    memset(&pf, 0xab, sizeof pf);
    before = pf;
    ap_prefetch_desc ok = {.start = fl_start, .ctx = NULL, .depth = 4, .slot_size = sizeof(slot)};
    ap_prefetch_desc bad[6];
    for (int i = 0; i < 6; i++)
        bad[i] = ok;
    bad[0].start = NULL;
    bad[1].depth = 0;
    bad[2].slot_size = 0;
    bad[3].depth = SIZE_MAX / 2, bad[3].slot_size = 4;       /* depth*size overflows */
    bad[4].depth = SIZE_MAX / 16, bad[4].slot_size = 1;      /* records overflow */
    bad[5].depth = SIZE_MAX / 32, bad[5].slot_size = 16;     /* slots + records overflow */
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(ap_prefetch_init(&pf, ring, sizeof ring, &bad[i]), AP_INVAL, "case %d", i);
        EXPECT(memcmp(&pf, &before, sizeof pf) == 0, "case %d", i);
    }
    EXPECT_EQ(ap_prefetch_init(&pf, ring, sizeof ring, NULL), AP_INVAL);
    EXPECT_EQ(ap_prefetch_init(&pf, NULL, sizeof ring, &ok), AP_INVAL);
    EXPECT_EQ(ap_prefetch_init(&pf, ring + 1, sizeof ring - 1, &ok), AP_INVAL); /* misaligned */
    /* a buffer whose ring would wrap past the top of the address space
     * (found by fuzz_prefetch); never dereferenced on AP_INVAL */
    void *top = (void *)(UINTPTR_MAX - (UINTPTR_MAX % _Alignof(max_align_t)) - 64);
    EXPECT_EQ(ap_prefetch_init(&pf, top, AP_PREFETCH_BYTES(4, sizeof(slot)), &ok), AP_INVAL, "a wrapping buffer");
    EXPECT(memcmp(&pf, &before, sizeof pf) == 0);
    EXPECT_EQ(ap_prefetch_init(&pf, ring, sizeof ring, &ok), AP_OK);
    ap_prefetch_fini(&pf);
}

/* Caller memory comes with its size (issue #11): NULL, misaligned, too
 * small (the old init took no size and wrote past a short buffer) or a bad
 * desc is AP_INVAL, and neither *pf nor the buffer changes. */
Test(prefetch, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { D = 4 };
    static _Alignas(slot) _Alignas(AP_PREFETCH_ALIGN) unsigned char rb[AP_PREFETCH_BYTES(D, sizeof(slot)) +
                                                                      2 * AP_PREFETCH_ALIGN];
    _Static_assert(AP_PREFETCH_ALIGN == _Alignof(void *), "constant expression");
    const size_t need = AP_PREFETCH_BYTES(D, sizeof(slot));
    const ap_prefetch_desc good = {.start = fl_start, .depth = D, .slot_size = sizeof(slot)};
    struct {
        void *buf;
        size_t bytes;
        const ap_prefetch_desc *d;
        const char *what;
    } cases[] = {
        {NULL, sizeof rb, &good, "NULL buffer"},
        {rb + 1, sizeof rb - 1, &good, "misaligned by 1"},
        {rb + AP_PREFETCH_ALIGN / 2, sizeof rb - AP_PREFETCH_ALIGN / 2, &good, "misaligned by half"},
        {rb, need - 1, &good, "one byte short"},
        {rb, 0, &good, "zero bytes"},
        {rb, sizeof rb, NULL, "NULL desc"},
        {rb, sizeof rb, &(ap_prefetch_desc){.depth = D, .slot_size = 8}, "no start"},
        {rb, sizeof rb, &(ap_prefetch_desc){.start = fl_start, .slot_size = 8}, "depth 0"},
        {rb, SIZE_MAX, &(ap_prefetch_desc){.start = fl_start, .depth = SIZE_MAX / 2, .slot_size = 4},
         "bytes overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_prefetch pf;
        unsigned char pf_before[sizeof pf], buf_before[sizeof rb];
        memset(&pf, 0x5A, sizeof pf);
        memset(rb, 0xC3, sizeof rb);
        memcpy(pf_before, &pf, sizeof pf);
        memcpy(buf_before, rb, sizeof rb);
        EXPECT_EQ(ap_prefetch_init(&pf, cases[i].buf, cases[i].bytes, cases[i].d), AP_INVAL, "%s",
                  cases[i].what);
        EXPECT(memcmp(pf_before, &pf, sizeof pf) == 0, "%s: *pf changed", cases[i].what);
        EXPECT(memcmp(buf_before, rb, sizeof rb) == 0, "%s: the buffer changed", cases[i].what);
    }
    /* exactly enough works; the excess of a bigger buffer is not touched */
    ap_prefetch pf;
    memset(rb, 0xC3, sizeof rb);
    EXPECT_EQ(ap_prefetch_init(&pf, rb, need, &good), AP_OK);
    for (size_t i = need; i < sizeof rb; i++)
        EXPECT_EQ(rb[i], 0xC3, "byte %zu past the buffer written", i);
    ap_prefetch_fini(&pf);
    EXPECT_EQ(ap_prefetch_init(&pf, rb, sizeof rb, &good), AP_OK, "more is fine");
    ap_prefetch_fini(&pf);
}

/* THE THEOREM, exactly, with the naive loader as the sanity row. */
Test(prefetch, theorem_sequential_scan_waits_exactly)
{
    static const struct { uint64_t L, c; size_t d; } cases[] = {
        {100, 10, 11}, /* boundary: (d-1)c == L, all hits */
        {100, 10, 10}, /* one short: W = 10 */
        {100, 10, 12}, {100, 10, 1}, {100, 10, 2}, {100, 30, 4}, {100, 30, 5},
        {64, 16, 5},   /* boundary */
        {65, 16, 5},   /* W = 1 */
        {7, 3, 3}, {1000, 1, 8}, {100, 0, 4}, {0, 5, 3}, {0, 0, 1}, {5000, 100, 64},
        {12345, 77, 9}, {1, 1, 2}, {2, 1, 2},
    };
    const int n = 120;
    bool print = getenv("PREFETCH_TABLE") != NULL;
    if (print)
        printf("%6s %5s %3s | %8s %6s %6s %6s | %10s %10s %8s\n", "L", "c", "d", "W", "hits",
               "waits", "misses", "prefetch", "naive", "speedup");
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        uint64_t L = cases[ci].L, c = cases[ci].c;
        size_t d = cases[ci].d;
        uint64_t W = L > (uint64_t)(d - 1) * c ? L - (uint64_t)(d - 1) * c : 0;
        env *e = env_new(L, d);
        e->now = 1000;
        ap_prefetch pf;
        pf_init(&pf, e, d, 0, false);
        uint64_t r0 = e->now, waits_total = 0;
        for (int k = 0; k < n; k++) {
            uint64_t expect = k == 0 ? L : (k % (int)d == 0 ? W : 0);
            uint64_t rk_expect = k == 0 ? r0 : r0 + L + (uint64_t)k * c + (uint64_t)((k - 1) / (int)d) * W;
            EXPECT_EQ(e->now, rk_expect, "r_%d, L=%ju c=%ju d=%zu", k, (uintmax_t)L, (uintmax_t)c, d);
            ap_status st;
            slot *s;
            uint64_t w = drive_get(e, &pf, (uint64_t)k, &st, &s);
            EXPECT_EQ(st, AP_OK);
            EXPECT_EQ(w, expect, "w_%d, L=%ju c=%ju d=%zu", k, (uintmax_t)L, (uintmax_t)c, d);
            waits_total += w;
            EXPECT_LE(in_flight(e), (int)d);
            e->now += c; /* consume */
        }
        ap_prefetch_stats s;
        ap_prefetch_stats_get(&pf, &s);
        uint64_t nwait = W > 0 ? (uint64_t)(n - 1) / d : 0;
        EXPECT_EQ(s.misses, 1);
        EXPECT_EQ(s.waits, nwait, "L=%ju c=%ju d=%zu", (uintmax_t)L, (uintmax_t)c, d);
        EXPECT_EQ(s.hits, (uint64_t)n - 1 - nwait);
        EXPECT_EQ(s.resets, 1);
        EXPECT_EQ(waits_total, L + nwait * W);
        if ((uint64_t)(d - 1) * c >= L)
            EXPECT_EQ(s.hits, (uint64_t)n - 1, "d >= ceil(L/c)+1: every get after the first hits");
        uint64_t t_pf = e->now - r0;
        ap_prefetch_fini(&pf);
        check_ledger(e, &pf);
        EXPECT_EQ(s.started, (uint64_t)n + d - 1, "n gets + the d-1 ahead at the end");

        /* naive: start the load when asked, wait for it, consume */
        env *nv = env_new(L, 1);
        nv->now = 1000;
        slot one;
        for (int k = 0; k < n; k++) {
            ap_future *f = fl_start(nv, (uint64_t)k, &one, nv->now);
            for (;;) {
                ap_cx cx = {AP_WAKER_NONE, nv->now, AP_DEADLINE_NONE};
                if (f->poll(f, &cx) == AP_READY)
                    break;
                nv->now = cx.deadline;
            }
            nv->now += c;
        }
        uint64_t t_naive = nv->now - 1000;
        EXPECT_EQ(t_naive, (uint64_t)n * (L + c));
        EXPECT_LE(t_pf, t_naive);
        if (d == 1)
            EXPECT_EQ(t_pf, t_naive, "depth 1 is the naive loader");
        if (print)
            printf("%6ju %5ju %3zu | %8ju %6ju %6ju %6ju | %10ju %10ju %7.2fx\n", (uintmax_t)L,
                   (uintmax_t)c, d, (uintmax_t)W, (uintmax_t)s.hits, (uintmax_t)s.waits,
                   (uintmax_t)s.misses, (uintmax_t)t_pf, (uintmax_t)t_naive,
                   t_pf ? (double)t_naive / (double)t_pf : 1.0);
        free(nv);
        free(e);
    }
}

Test(prefetch, stride_is_detected_from_the_last_two_gets)
{
    env *e = env_new(100, 4);
    ap_prefetch pf;
    pf_init(&pf, e, 4, 0, false);
    ap_status st;
    slot *s;
    drive_get(e, &pf, 10, &st, &s); /* loads 10, 11, 12, 13 */
    EXPECT_EQ(st, AP_OK);
    EXPECT_EQ(ap_prefetch_stride(&pf), 1);
    EXPECT_EQ(e->n, 4);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(e->ld[i].key, 10 + (uint64_t)i);
    drive_get(e, &pf, 13, &st, &s); /* reset: stride 3; 11..13 cancelled */
    EXPECT_EQ(ap_prefetch_stride(&pf), 3);
    ap_prefetch_stats x;
    ap_prefetch_stats_get(&pf, &x);
    EXPECT_EQ(x.resets, 2);
    EXPECT_EQ(x.cancelled, 3);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(e->ld[4 + i].key, 13 + 3 * (uint64_t)i);
    e->now += 1000; /* everything ahead is loaded */
    for (uint64_t k = 16; k <= 31; k += 3) {
        drive_get(e, &pf, k, &st, &s);
        EXPECT_EQ(st, AP_OK);
        e->now += 1000;
    }
    ap_prefetch_stats_get(&pf, &x);
    EXPECT_EQ(x.hits, 6);
    drive_get(e, &pf, 21, &st, &s); /* backwards: stride 21 - 31 = -10 */
    EXPECT_EQ(ap_prefetch_stride(&pf), -10);
    EXPECT_EQ(e->ld[e->n - 1].key, (uint64_t)21 - 30, "21, 11, 1, -9 (wraps modulo 2^64)");
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    free(e);
}

Test(prefetch, fixed_stride_is_kept_on_reset)
{
    env *e = env_new(10, 3);
    ap_prefetch pf;
    pf_init(&pf, e, 3, 2, true);
    ap_status st;
    slot *s;
    drive_get(e, &pf, 0, &st, &s);
    drive_get(e, &pf, 5, &st, &s);
    EXPECT_EQ(ap_prefetch_stride(&pf), 2);
    EXPECT_EQ(e->ld[e->n - 1].key, 9);
    drive_get(e, &pf, 7, &st, &s);
    EXPECT_EQ(prefetch_stats_of(&pf).resets, 2);
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    free(e);
}

Test(prefetch, held_key_again_is_a_hit_with_no_load)
{
    env *e = env_new(50, 3);
    ap_prefetch pf;
    pf_init(&pf, e, 3, 0, false);
    ap_status st;
    slot *a, *b;
    drive_get(e, &pf, 7, &st, &a);
    int n = e->n;
    EXPECT_EQ(drive_get(e, &pf, 7, &st, &b), 0);
    EXPECT_EQ(st, AP_OK);
    EXPECT(a == b);
    EXPECT_EQ(e->n, n);
    ap_prefetch_stats x;
    ap_prefetch_stats_get(&pf, &x);
    EXPECT_EQ(x.hits, 1);
    EXPECT_EQ(x.used, 1);
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    free(e);
}

Test(prefetch, refused_keys_are_not_started_and_get_rejected)
{
    env *e = env_new(20, 4);
    e->refuse_from = 6; /* a 6-page file */
    ap_prefetch pf;
    pf_init(&pf, e, 4, 0, false);
    ap_status st;
    slot *s;
    for (uint64_t k = 0; k < 6; k++) {
        drive_get(e, &pf, k, &st, &s);
        EXPECT_EQ(st, AP_OK);
        e->now += 5;
    }
    EXPECT_EQ(e->n, 6, "keys past the end are never started");
    ap_prefetch_get_fut g;
    void *sp = (void *)&g;
    ap_prefetch_get_fut_init(&g, &pf, 6, &sp);
    ap_cx cx = {AP_WAKER_NONE, e->now, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_READY);
    EXPECT_EQ(ap_prefetch_get_status(&g), AP_REJECTED);
    EXPECT(sp == (void *)&g, "slot_out untouched");
    /* asking again retries the loader; still refused */
    drive_get(e, &pf, 6, &st, &s);
    EXPECT_EQ(st, AP_REJECTED);
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    EXPECT_EQ(prefetch_stats_of(&pf).used, 6);
    free(e);
}

Test(prefetch, waker_reaches_the_get_and_cancel_cancels_its_load_once)
{
    env *e = env_new(0, 3);
    e->manual = true;
    ap_prefetch pf;
    pf_init(&pf, e, 3, 0, false);
    int wakes = 0;
    void *sp = NULL;
    ap_prefetch_get_fut g;
    ap_prefetch_get_fut_init(&g, &pf, 0, &sp);
    ap_cx cx = {{count_wake, &wakes}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_PENDING);
    EXPECT_EQ(ap_prefetch_get_status(&g), AP_NOT_READY, "pending (issue #11: was AP_AGAIN)");
    EXPECT_EQ(cx.deadline, AP_DEADLINE_NONE);
    EXPECT(e->ld[0].waker.ctx == &wakes, "the load was polled with the get's waker");
    EXPECT(e->ld[1].waker.wake == NULL, "loads ahead were kicked with no waker");
    ap_prefetch_get_cancel(&g);
    ap_prefetch_get_cancel(&g); /* idempotent */
    EXPECT_EQ(ap_prefetch_get_status(&g), AP_CANCELED);
    EXPECT_EQ(e->ld[0].state, LD_CANCELLED);
    ap_future_cancel(&g.base); /* through the vtable: still nothing */
    EXPECT_EQ(e->violations, 0);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_READY); /* after cancel: done */

    /* the same key again: a miss, a fresh load */
    ap_prefetch_get_fut_init(&g, &pf, 0, &sp);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_PENDING);
    EXPECT_EQ(e->n, 4);
    EXPECT_EQ(e->ld[3].key, 0);
    fl_finish(e, 3);
    EXPECT_EQ(wakes, 1);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_READY);
    EXPECT_EQ(ap_prefetch_get_status(&g), AP_OK);
    EXPECT_EQ(((slot *)sp)->key, 0);
    ap_prefetch_get_cancel(&g); /* after completion: nothing */
    EXPECT_EQ(e->ld[3].state, LD_READY);

    /* key 1 is in flight ahead: a wait, then its wake reaches this get */
    ap_prefetch_get_fut_init(&g, &pf, 1, &sp);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_PENDING);
    fl_finish(e, 1);
    EXPECT_EQ(wakes, 2);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_READY);
    EXPECT_EQ(((slot *)sp)->key, 1);
    /* key 2 completed before it is asked for: a hit, its load not polled again */
    fl_finish(e, 2);
    int polls = e->ld[2].polls;
    ap_prefetch_get_fut_init(&g, &pf, 2, &sp);
    EXPECT_EQ(ap_prefetch_get_poll(&g, &cx), AP_READY);
    EXPECT_EQ(e->ld[2].polls, polls + 1, "polled once more, as the get's load");
    ap_prefetch_stats x;
    ap_prefetch_stats_get(&pf, &x);
    EXPECT_EQ(x.misses, 2);
    EXPECT_EQ(x.waits, 1);
    EXPECT_EQ(x.hits, 1);
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    free(e);
}

/* Random mix of sequential runs, jumps, re-gets, cancels and refusals:
 * the ledger must balance and no load may be finished twice. */
Test(prefetch, random_walk_every_load_finished_exactly_once)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t r = seed * 0x9e3779b97f4a7c15u;
        size_t d = 1 + (size_t)(rng_next(&r) % 9);
        env *e = env_new(1 + rng_next(&r) % 200, d);
        e->rng = seed;
        e->refuse_from = 150 + rng_next(&r) % 100;
        ap_prefetch pf;
        pf_init(&pf, e, d, 0, false);
        uint64_t key = 0;
        for (int op = 0; op < 300 && e->n < MAXLOADS - 2 * MAXD; op++) {
            uint64_t x = rng_next(&r) % 100;
            if (x < 70)
                key += (uint64_t)ap_prefetch_stride(&pf);
            else if (x < 80)
                ; /* the same key */
            else
                key = rng_next(&r) % 300;
            ap_prefetch_get_fut g;
            void *sp = NULL;
            ap_prefetch_get_fut_init(&g, &pf, key, &sp);
            ap_cx cx = {AP_WAKER_NONE, e->now, AP_DEADLINE_NONE};
            ap_poll p = ap_prefetch_get_poll(&g, &cx);
            if (p == AP_PENDING && rng_next(&r) % 4 == 0) {
                ap_prefetch_get_cancel(&g);
            } else {
                while (p == AP_PENDING) {
                    e->now = cx.deadline;
                    cx = (ap_cx){AP_WAKER_NONE, e->now, AP_DEADLINE_NONE};
                    p = ap_prefetch_get_poll(&g, &cx);
                }
                ap_status st = ap_prefetch_get_status(&g);
                EXPECT(st == AP_OK || st == AP_REJECTED);
                EXPECT_EQ(st == AP_REJECTED, key >= e->refuse_from);
                if (st == AP_OK)
                    EXPECT_EQ(((slot *)sp)->key, key);
            }
            EXPECT_LE(in_flight(e), (int)d);
            ap_prefetch_stats s;
            ap_prefetch_stats_get(&pf, &s);
            EXPECT_EQ(s.started, s.completed + s.cancelled + s.loading);
            EXPECT_EQ(s.completed, s.used + s.wasted + s.ready);
            EXPECT_EQ((int)s.loading, in_flight(e));
            e->now += rng_next(&r) % 50;
        }
        ap_prefetch_fini(&pf);
        check_ledger(e, &pf);
        free(e);
    }
}

Test(prefetch, get_wait_blocks_until_loaded_or_times_out)
{
    env *e = env_new(0, 4); /* loads ready at start (L = 0) */
    ap_prefetch pf;
    pf_init(&pf, e, 4, 0, false);
    void *sp = NULL;
    for (uint64_t k = 0; k < 10; k++) {
        EXPECT_EQ(ap_prefetch_get_wait(&pf, k, &sp, AP_DEADLINE_NONE), AP_OK);
        EXPECT_EQ(((slot *)sp)->key, k);
    }
    e->manual = true; /* from now on loads never complete by themselves */
    EXPECT_EQ(ap_prefetch_get_wait(&pf, 100, &sp, ap_now_ns() + 2 * AP_NS_PER_MS),
              AP_TIMEDOUT);
    EXPECT_EQ(e->ld[e->n - 4].key, 100);
    EXPECT_EQ(e->ld[e->n - 4].state, LD_CANCELLED, "the timed-out get cancelled its load");
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    ap_prefetch_stats x;
    ap_prefetch_stats_get(&pf, &x);
    EXPECT_EQ(x.wasted, 3, "10, 11, 12 were loaded ahead of 9, then the jump to 100 dropped them");
    EXPECT_EQ(x.used, 10);
    free(e);
}

Test(prefetch, second_get_while_one_is_pending_asserts, .signal = SIGABRT)
{
    env *e = env_new(0, 2);
    e->manual = true;
    ap_prefetch pf;
    pf_init(&pf, e, 2, 0, false);
    void *sp;
    ap_prefetch_get_fut a, b;
    ap_prefetch_get_fut_init(&a, &pf, 0, &sp);
    ap_prefetch_get_fut_init(&b, &pf, 1, &sp);
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    (void)ap_prefetch_get_poll(&a, &cx);
    (void)ap_prefetch_get_poll(&b, &cx); /* single consumer: aborts */
}

/* #11: get_wait waits on the object's clock (desc.clock), and its loads
 * start at that clock's now; it used ap_now_ns whatever the caller's clock. */
static uint64_t pf_fake_now(void *ctx) { return *(uint64_t *)ctx += AP_NS_PER_MS; }

Test(prefetch, get_wait_uses_the_desc_clock, .timeout = 30)
{
    env *e = env_new(0, 4);
    ap_prefetch pf;
    uint64_t fake = 0;
    EXPECT_EQ(ap_prefetch_init(&pf, ring, sizeof ring,
                               &(ap_prefetch_desc){.start = fl_start, .ctx = e, .depth = 4,
                                                   .slot_size = sizeof(slot),
                                                   .clock = {pf_fake_now, &fake}}),
              AP_OK);
    void *sp = NULL;
    EXPECT_EQ(ap_prefetch_get_wait(&pf, 0, &sp, AP_DEADLINE_NONE), AP_OK);
    EXPECT(e->ld[0].start < AP_NS_PER_SEC,
           "the load started at the fake clock's now (%llu), not the real clock's",
           (unsigned long long)e->ld[0].start);
    e->manual = true; /* loads never complete by themselves */
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_prefetch_get_wait(&pf, 100, &sp, fake + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT(ap_now_ns() - t0 < 5 * AP_NS_PER_SEC, "fake time, not real time");
    ap_prefetch_fini(&pf);
    check_ledger(e, &pf);
    free(e);
}
