/*
 * tests/test_window.c -- event-time windows (tumbling, hopping, session)
 * under a watermark, checked with exact fake timestamps against brute force
 */
#include "asyncpat/window.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#include "test_util.h"

#define N_EVENTS 100000

/* ---- a recording emit callback that checks order and timing ---- */

typedef struct rec {
    const ap_window *win;
    ap_window_result *r;
    size_t n, cap;
    int64_t last_end;
} rec;

static void rec_emit(void *ctx, const ap_window_result *r)
{
    rec *c = ctx;
    EXPECT(r->end <= ap_window_watermark(c->win), "emitted before the watermark passed its end");
    EXPECT(c->n == 0 || r->end > c->last_end, "emitted out of order or twice");
    EXPECT(r->agg.count > 0, "empty windows are not emitted");
    c->last_end = r->end;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->r = realloc(c->r, c->cap * sizeof *c->r);
        EXPECT_NOT_NULL(c->r);
    }
    c->r[c->n++] = *r;
}

static void agg_eq(const ap_agg *a, const ap_agg *b, int64_t end)
{
    EXPECT(a->count == b->count && a->sum_hi == b->sum_hi && a->sum_lo == b->sum_lo &&
               a->min == b->min && a->max == b->max,
           "aggregate of the window ending at %jd", (intmax_t)end);
}

static uint64_t buf[1 << 12];

/* ---- configuration ---- */

Test(window, desc_defaults_and_slots)
{
    ap_window_desc d = ap_window_desc_resolved(&(ap_window_desc){.size_ns = 10});
    EXPECT(d.kind == AP_WINDOW_KIND_TUMBLING && d.slide_ns == 10 && d.lateness_ns == 0);
    d = ap_window_desc_resolved(&(ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10});
    EXPECT_EQ(d.slide_ns, 10);
    EXPECT_EQ(ap_window_slots(&(ap_window_desc){.size_ns = 10}), 2);
    EXPECT_EQ(ap_window_slots(&(ap_window_desc){.size_ns = 10, .lateness_ns = 25}), 5);
    EXPECT_EQ(ap_window_slots(&(ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10,
                                               .slide_ns = 3, .lateness_ns = 1}), 5);
    EXPECT_EQ(ap_window_slots(&(ap_window_desc){.kind = AP_WINDOW_KIND_SESSION, .gap_ns = 4,
                                               .lateness_ns = 9}), 5);
    _Static_assert(AP_WINDOW_SLOTS(10, 3, 1) == 5, "constant expression");
}

Test(window, init_rejects_bad_config)
{
    ap_window w;
    memset(&w, 0x5a, sizeof w);
    ap_window before = w;
    const ap_window_desc bad[] = {
        {.size_ns = 0},
        {.size_ns = 10, .slide_ns = 5},                              /* tumbling slide != size */
        {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 11},   /* gaps: events in no window */
        {.kind = AP_WINDOW_KIND_SESSION},                                  /* gap 0 */
        {.kind = (ap_window_kind)9, .size_ns = 10},
        {.size_ns = AP_WINDOW_TS_MAX + 1},
        {.size_ns = 10, .lateness_ns = AP_WINDOW_TS_MAX + 1},
        {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = AP_WINDOW_TS_MAX, .slide_ns = 1}, /* too many slots */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &bad[i]), AP_INVAL, "desc %zu", i);
    ap_window_desc ok = {.size_ns = 10, .lateness_ns = 25}; /* 5 slots */
    EXPECT_EQ(ap_window_init(&w, buf, AP_WINDOW_BYTES(5) - 1, &ok), AP_INVAL, "buffer too small");
    EXPECT(memcmp(&w, &before, sizeof w) == 0, "untouched");
    EXPECT_EQ(ap_window_init(&w, buf, AP_WINDOW_BYTES(5), &ok), AP_OK);
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_add(&w, AP_WINDOW_TS_MAX + 1, 1, rec_emit, &c), AP_INVAL);
    EXPECT(ap_window_accepted(&w) == 0 && ap_window_late(&w) == 0, "nothing changed");
    EXPECT_EQ(ap_window_watermark(&w), INT64_MIN);
}

/* Caller memory comes with its size (issue #11): a NULL, misaligned or too
 * small buffer, or a bad desc, is AP_INVAL, and neither the operator's
 * bytes nor the buffer's change. Before, a NULL or misaligned buffer
 * tripped AP_ASSERT (abort), and a NULL desc too. */
Test(window, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { SLOTS = 5 }; /* {.size_ns = 10, .lateness_ns = 25} */
    static _Alignas(AP_WINDOW_ALIGN) unsigned char wb[AP_WINDOW_BYTES(SLOTS) + 2 * AP_WINDOW_ALIGN];
    _Static_assert(AP_WINDOW_ALIGN >= _Alignof(int64_t) && AP_WINDOW_BYTES(SLOTS) > 0, "constant expressions");
    const ap_window_desc good = {.size_ns = 10, .lateness_ns = 25};
    EXPECT_EQ(ap_window_slots(&good), SLOTS);
    struct {
        void *buf;
        size_t bytes;
        const ap_window_desc *desc;
        const char *what;
    } cases[] = {
        {NULL, sizeof wb, &good, "NULL buffer"},
        {wb + 1, sizeof wb - 1, &good, "misaligned by 1"},
        {wb + AP_WINDOW_ALIGN / 2, sizeof wb - AP_WINDOW_ALIGN / 2, &good, "misaligned by half"},
        {wb, AP_WINDOW_BYTES(SLOTS) - 1, &good, "one byte short"},
        {wb, 0, &good, "zero bytes"},
        {wb, sizeof wb, NULL, "NULL desc"},
        {wb, sizeof wb, &(ap_window_desc){.size_ns = 0}, "size 0"},
        {wb, sizeof wb, &(ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 11},
         "slide > size"},
        {wb, SIZE_MAX, &(ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = AP_WINDOW_TS_MAX,
                                         .slide_ns = 1}, "bytes overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_window w;
        unsigned char w_before[sizeof w], buf_before[sizeof wb];
        memset(&w, 0x5A, sizeof w);
        memset(wb, 0xC3, sizeof wb);
        memcpy(w_before, &w, sizeof w);
        memcpy(buf_before, wb, sizeof wb);
        EXPECT_EQ(ap_window_init(&w, cases[i].buf, cases[i].bytes, cases[i].desc), AP_INVAL, "%s",
                  cases[i].what);
        EXPECT(memcmp(w_before, &w, sizeof w) == 0, "%s: the operator changed", cases[i].what);
        EXPECT(memcmp(buf_before, wb, sizeof wb) == 0, "%s: the buffer changed", cases[i].what);
    }
#ifndef AP_NO_MALLOC
    ap_window *wp = (ap_window *)(void *)wb;
    EXPECT_EQ(ap_window_create(&wp, NULL, NULL), AP_INVAL);
    EXPECT(wp == (ap_window *)(void *)wb);
#endif
    /* exactly enough works; more is fine and the excess is not touched */
    ap_window w;
    memset(wb, 0xC3, sizeof wb);
    EXPECT_EQ(ap_window_init(&w, wb, AP_WINDOW_BYTES(SLOTS), &good), AP_OK);
    rec c = {.win = &w};
    for (uint64_t t = 0; t < 200; t += 3)
        EXPECT_EQ(ap_window_add(&w, t, 1, rec_emit, &c), AP_OK);
    ap_window_advance(&w, AP_WINDOW_FLUSH, rec_emit, &c);
    for (size_t i = AP_WINDOW_BYTES(SLOTS); i < sizeof wb; i++)
        EXPECT_EQ(wb[i], 0xC3, "byte %zu past the buffer written", i);
    free(c.r);
    EXPECT_EQ(ap_window_init(&w, wb, sizeof wb, &good), AP_OK, "more is fine");
}

/* The header's USAGE block, verbatim between the markers (a test keeps it
 * compiling warning-free under -Wall -Wextra -Werror). */
static int usage_late;
static uint64_t usage_count;
static void count_late(void) { usage_late++; }
static void on_window(void *ctx, const ap_window_result *r) { (void)ctx; usage_count += r->agg.count; }

Test(window, usage_block_compiles_and_runs)
{
    struct { uint64_t ts; int64_t value; } ev = {.ts = 5000000000u, .value = 7};
    void *ctx = NULL;
    /* USAGE begin */
    // 1 s windows every 250 ms, events up to 2 s late are still counted
    ap_window_desc d = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 1000000000,
                        .slide_ns = 250000000, .lateness_ns = 2000000000};
    static AP_ALIGNAS(AP_WINDOW_ALIGN) unsigned char buf[AP_WINDOW_BYTES(
        AP_WINDOW_SLOTS(1000000000, 250000000, 2000000000))];
    ap_window w;
    if (ap_window_init(&w, buf, sizeof buf, &d) != AP_OK) abort();
    if (ap_window_add(&w, ev.ts, ev.value, on_window, ctx) == AP_REJECTED)
        count_late();
    ap_window_advance(&w, AP_WINDOW_FLUSH, on_window, ctx); // end of stream
    /* USAGE pause */
    EXPECT_EQ(usage_count, 4, "four hopping windows hold the event");
    /* USAGE resume */
    // fed by 4 workers (worker i adds its own events, windows merge by
    // start under the minimum of their watermarks; on_window runs on any
    // of them, one window at a time); 64 >= ap_window_slots(&d) windows each
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pbuf[AP_WINDOW_PAR_BYTES(4, 64)];
    static ap_window_par par;
    if (ap_window_par_init(&par, pbuf, sizeof pbuf, &d, 4, 64) != AP_OK) abort();
    /* USAGE pause */
    for (size_t i = 0; i < 4; i++) { /* worker i, one event each, in turn */
        ev.ts = 5000000000u + i * 100000000u;
        EXPECT_EQ(usage_count, 4, "nothing before every worker has a watermark");
        /* USAGE resume */
    // on worker i:
    if (ap_window_par_add(&par, i, ev.ts, ev.value, on_window, ctx) == AP_REJECTED)
        count_late();   // AP_FULL: i is 64 windows ahead of the slowest worker
    ap_window_par_advance(&par, i, AP_WINDOW_FLUSH, on_window, ctx); // i is done
    /* USAGE pause */
    }
    /* USAGE resume */
    /* USAGE end */
    EXPECT_EQ(usage_late, 0);
    EXPECT_EQ(usage_count, 4 + 4 * 4, "each worker's event in four windows");
    EXPECT_EQ(ap_window_par_accepted(&par), 4);
    ap_window_par_fini(&par);
}

/* ---- deterministic walk-throughs ---- */

Test(window, tumbling_by_hand)
{
    ap_window w;
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &(ap_window_desc){.size_ns = 10}), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 1, 5, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 9, -3, rec_emit, &c), AP_OK);
    EXPECT_EQ(c.n, 0, "W = 9 < 10: [0,10) still open");
    EXPECT_EQ(ap_window_add(&w, 10, 7, rec_emit, &c), AP_OK);
    EXPECT_EQ(c.n, 1, "W = 10 closes [0,10) exactly at its end");
    EXPECT(c.r[0].start == 0 && c.r[0].end == 10 && c.r[0].agg.count == 2 &&
           c.r[0].agg.min == -3 && c.r[0].agg.max == 5);
    EXPECT_EQ(ap_window_add(&w, 9, 1, rec_emit, &c), AP_REJECTED, "its window was emitted");
    EXPECT_EQ(ap_window_late(&w), 1);
    EXPECT_EQ(ap_window_add(&w, 35, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(c.n, 2, "[10,20) closed; [20,30) had no events");
    EXPECT_EQ(ap_window_advance(&w, 39, rec_emit, &c), 0, "39 < 40");
    EXPECT_EQ(ap_window_advance(&w, AP_WINDOW_FLUSH, rec_emit, &c), 1);
    EXPECT(c.r[2].start == 30 && c.r[2].end == 40);
    EXPECT_EQ(ap_window_add(&w, 1000, 1, rec_emit, &c), AP_REJECTED, "after a flush all is late");
    EXPECT(ap_window_accepted(&w) == 4 && ap_window_late(&w) == 2 && ap_window_emitted(&w) == 3);
    free(c.r);
}

Test(window, lateness_keeps_windows_open)
{
    ap_window w;
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &(ap_window_desc){.size_ns = 10, .lateness_ns = 5}), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 14, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 2, 1, rec_emit, &c), AP_OK, "W = 9: [0,10) still open");
    EXPECT_EQ(ap_window_add(&w, 15, 1, rec_emit, &c), AP_OK);
    EXPECT(c.n == 1 && c.r[0].end == 10 && c.r[0].agg.count == 1);
    EXPECT_EQ(ap_window_add(&w, 3, 1, rec_emit, &c), AP_REJECTED);
    free(c.r);
}

Test(window, hopping_by_hand_negative_starts)
{
    ap_window w;
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &(ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10,
                                                   .slide_ns = 5}), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 3, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_advance(&w, AP_WINDOW_FLUSH, rec_emit, &c), 2);
    EXPECT(c.r[0].start == -5 && c.r[0].end == 5 && c.r[1].start == 0 && c.r[1].end == 10);
    free(c.r);
}

Test(window, session_by_hand_merges)
{
    ap_window w;
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &(ap_window_desc){.kind = AP_WINDOW_KIND_SESSION, .gap_ns = 10,
                                                   .lateness_ns = 100}), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 0, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 30, 2, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_held(&w), 2);
    EXPECT_EQ(ap_window_add(&w, 15, 3, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_held(&w), 3, "15 touches neither [0,10) nor [30,40)");
    EXPECT_EQ(ap_window_add(&w, 22, 4, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_held(&w), 2, "22 bridges [15,25) and [30,40)");
    EXPECT_EQ(ap_window_advance(&w, 40, rec_emit, &c), 2);
    EXPECT(c.r[0].start == 0 && c.r[0].end == 10 && c.r[0].agg.count == 1);
    EXPECT(c.r[1].start == 15 && c.r[1].end == 40 && c.r[1].agg.count == 3 &&
           c.r[1].agg.min == 2 && c.r[1].agg.max == 4);
    EXPECT_EQ(ap_window_add(&w, 39, 1, rec_emit, &c), AP_REJECTED, "ts < W");
    free(c.r);
}

/* ---- random runs against brute force ---- */

typedef struct ev { int64_t ts, v; } ev;

static int ev_cmp(const void *a, const void *b)
{
    const ev *x = a, *y = b;
    return x->ts < y->ts ? -1 : x->ts > y->ts;
}

/* Feeds N_EVENTS events, out of order by up to ~1.5 * L (so some are late),
 * with occasional idle jumps and explicit watermarks; returns the accepted
 * events in *acc. */
static size_t feed(ap_window *w, rec *c, uint64_t seed, uint64_t step, uint64_t lateness,
                   ev *acc)
{
    uint64_t now = 0;
    size_t n_acc = 0, late = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        uint64_t r = rng_next(&seed);
        now += r % step + ((r >> 20) % 1000 == 0 ? 50 * step : 0);
        uint64_t back = rng_next(&seed) % (lateness + lateness / 2 + step);
        uint64_t ts = back > now ? 0 : now - back;
        int64_t v = (int64_t)(rng_next(&seed) % 2001) - 1000;
        int64_t wm_before = ap_window_watermark(w);
        ap_status st = ap_window_add(w, ts, v, rec_emit, c);
        EXPECT(st == AP_OK || st == AP_REJECTED);
        if (st == AP_OK) {
            acc[n_acc++] = (ev){(int64_t)ts, v};
        } else {
            late++;
            EXPECT((int64_t)ts < wm_before, "only an event behind the watermark is late");
        }
        EXPECT_LE(ap_window_held(w), ap_window_slots(&w->desc), "memory bound");
        if ((r >> 40) % 5000 == 0)
            (void)ap_window_advance(w, now > lateness ? now - lateness / 2 : 0, rec_emit, c);
    }
    EXPECT_EQ(ap_window_accepted(w) + ap_window_late(w), (uint64_t)N_EVENTS, "conserved");
    EXPECT_EQ(ap_window_late(w), late);
    EXPECT_GT(late, 0, "the run exercised late events");
    (void)ap_window_advance(w, AP_WINDOW_FLUSH, rec_emit, c);
    EXPECT_EQ(ap_window_held(w), 0, "a flush emits everything");
    EXPECT_LE(ap_window_held_max(w), ap_window_slots(&w->desc));
    return n_acc;
}

static void hopping_run(uint64_t size, uint64_t slide, uint64_t lateness, uint64_t seed)
{
    static ev acc[N_EVENTS];
    ap_window_desc d = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = size, .slide_ns = slide,
                        .lateness_ns = lateness};
    ap_window w;
    rec c = {.win = &w};
    EXPECT_LE(AP_WINDOW_BYTES(ap_window_slots(&d)), sizeof buf);
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &d), AP_OK);
    size_t n = feed(&w, &c, seed, size / 4 + 1, lateness, acc);
    /* brute force: every window [k*s, k*s + w) with its events */
    int64_t s = (int64_t)slide, wl = (int64_t)size, maxk = 0;
    for (size_t i = 0; i < n; i++)
        maxk = acc[i].ts / s > maxk ? acc[i].ts / s : maxk;
    int64_t kmin = -(wl / s) - 1, nk = maxk - kmin + 1;
    ap_agg *exp = calloc((size_t)nk, sizeof *exp);
    uint64_t memberships = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned in = 0;
        int64_t k0 = (acc[i].ts - wl) / s - 1; /* a little before the first window */
        for (int64_t k = k0 < kmin ? kmin : k0; k <= maxk; k++)
            if (k * s <= acc[i].ts && acc[i].ts < k * s + wl) {
                ap_agg_add(&exp[k - kmin], acc[i].v);
                in++;
            } else if (k * s > acc[i].ts) {
                break;
            }
        if (size % slide == 0)
            EXPECT_EQ(in, size / slide, "exactly w/s windows");
        else
            EXPECT(in == size / slide || in == size / slide + 1);
        memberships += in;
    }
    size_t j = 0;
    uint64_t emitted_members = 0;
    for (int64_t k = kmin; k <= maxk; k++) {
        if (exp[k - kmin].count == 0)
            continue;
        EXPECT_LT(j, c.n, "window k=%jd never emitted", (intmax_t)k);
        EXPECT(c.r[j].start == k * s && c.r[j].end == k * s + wl, "window %zu", j);
        agg_eq(&c.r[j].agg, &exp[k - kmin], c.r[j].end);
        emitted_members += c.r[j].agg.count;
        j++;
    }
    EXPECT_EQ(j, c.n, "no extra windows");
    EXPECT_EQ(emitted_members, memberships);
    free(exp);
    free(c.r);
}

Test(window, tumbling_random_matches_brute_force, .timeout = TEST_TIMEOUT_S)
{
    hopping_run(100, 100, 0, 0x77001);
    hopping_run(100, 100, 250, 0x77002);
}

Test(window, hopping_random_matches_brute_force, .timeout = TEST_TIMEOUT_S)
{
    hopping_run(100, 25, 130, 0x77003); /* each event in exactly 4 windows */
    hopping_run(100, 30, 70, 0x77004);  /* 3 or 4 windows */
}

Test(window, session_random_matches_brute_force, .timeout = TEST_TIMEOUT_S)
{
    static ev acc[N_EVENTS];
    const int64_t gap = 40;
    ap_window_desc d = {.kind = AP_WINDOW_KIND_SESSION, .gap_ns = (uint64_t)gap, .lateness_ns = 200};
    ap_window w;
    rec c = {.win = &w};
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf, &d), AP_OK);
    size_t n = feed(&w, &c, 0x77005, 60, 200, acc);
    qsort(acc, n, sizeof acc[0], ev_cmp);
    size_t j = 0, i = 0;
    while (i < n) {
        ap_agg a = {0};
        int64_t first = acc[i].ts, last = acc[i].ts;
        while (i < n && acc[i].ts < last + gap) { /* [ts, ts+g) overlaps [first, last+g) */
            last = acc[i].ts;
            ap_agg_add(&a, acc[i++].v);
        }
        EXPECT_LT(j, c.n);
        EXPECT(c.r[j].start == first && c.r[j].end == last + gap, "session %zu", j);
        agg_eq(&c.r[j].agg, &a, c.r[j].end);
        j++;
    }
    EXPECT_EQ(j, c.n, "no extra sessions");
    EXPECT_GT(c.n, 100);
    free(c.r);
}

Test(window, memory_bound_is_tight_enough)
{
    /* a far jump with large lateness: held stays within ceil((w+L)/s)+1 */
    ap_window w;
    rec c = {.win = &w};
    ap_window_desc d = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 2,
                        .lateness_ns = 7};
    EXPECT_EQ(ap_window_init(&w, buf, AP_WINDOW_BYTES(ap_window_slots(&d)), &d), AP_OK);
    for (uint64_t t = 0; t < 2000; t++) {
        EXPECT_EQ(ap_window_add(&w, t, 1, rec_emit, &c), AP_OK);
        if (t >= 7)
            EXPECT_EQ(ap_window_add(&w, t - 7, 1, rec_emit, &c), AP_OK, "exactly L late");
        EXPECT_LE(ap_window_held(&w), ap_window_slots(&d));
    }
    EXPECT_EQ(ap_window_add(&w, 1000000, 1, rec_emit, &c), AP_OK);
    EXPECT_LE(ap_window_held_max(&w), ap_window_slots(&d));
    EXPECT_EQ(ap_window_held_max(&w), ap_window_slots(&d) - 1, "ceil((w+L)/s) is reached");
    free(c.r);
}

#ifndef AP_NO_MALLOC
Test(window, create_destroy)
{
    counting cn = {0};
    ap_allocator al = {cnt_alloc, cnt_free, &cn};
    ap_window *w = NULL;
    EXPECT_EQ(ap_window_create(&w, &(ap_window_desc){.size_ns = 0}, &al), AP_INVAL);
    EXPECT_EQ(cn.allocs, 0);
    cn.fail = true;
    EXPECT_EQ(ap_window_create(&w, &(ap_window_desc){.size_ns = 5}, &al), AP_NOMEM);
    cn.fail = false;
    EXPECT_EQ(ap_window_create(&w, &(ap_window_desc){.size_ns = 5}, &al), AP_OK);
    rec c = {.win = w};
    EXPECT_EQ(ap_window_add(w, 3, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_advance(w, AP_WINDOW_FLUSH, rec_emit, &c), 1);
    ap_window_destroy(w);
    EXPECT(cn.frees == 1 && cn.freed_size == cn.size);
    ap_window_destroy(NULL);
    free(c.r);
}
#endif

/* ---- issue #14: one window fed by several workers (ap_window_par) ---- */

typedef struct prec { /* the merged output (the emit runs under the closing lock) */
    ap_window_result r[4096];
    size_t n;
} prec;

static void prec_emit(void *ctx, const ap_window_result *r)
{
    prec *c = ctx;
    if (c->n < 4096)
        c->r[c->n] = *r;
    c->n++;
}

static bool same_output(const ap_window_result *a, size_t na, const ap_window_result *b,
                        size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (a[i].start != b[i].start || a[i].end != b[i].end ||
            a[i].agg.count != b[i].agg.count || a[i].agg.sum_lo != b[i].agg.sum_lo ||
            a[i].agg.sum_hi != b[i].agg.sum_hi || a[i].agg.min != b[i].agg.min ||
            a[i].agg.max != b[i].agg.max)
            return false;
    return true;
}

Test(window, par_by_hand_min_watermark_and_merge)
{
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pb[AP_WINDOW_PAR_BYTES(2, 4)];
    ap_window_par p;
    ap_window_desc d = {.size_ns = 10};
    static prec c;
    c.n = 0;
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &d, 2, 4), AP_OK);
    EXPECT_EQ(ap_window_par_add(&p, 0, 1, 5, prec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_par_add(&p, 0, 25, 1, prec_emit, &c), AP_OK);
    EXPECT_EQ(c.n, 0, "worker 1 has no watermark: nothing is closed");
    EXPECT_EQ(ap_window_par_watermark(&p), INT64_MIN);
    EXPECT_EQ(ap_window_par_add(&p, 1, 3, -2, prec_emit, &c), AP_OK);
    EXPECT_EQ(c.n, 0, "G = min(25, 3) = 3 < 10");
    EXPECT_EQ(ap_window_par_add(&p, 1, 12, 7, prec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_par_watermark(&p), 12);
    EXPECT_EQ(c.n, 1, "G = 12 closes [0,10): the two workers' partials merged");
    EXPECT(c.r[0].start == 0 && c.r[0].end == 10 && c.r[0].agg.count == 2 &&
           c.r[0].agg.min == -2 && c.r[0].agg.max == 5);
    EXPECT_EQ(ap_window_par_add(&p, 0, 9, 1, prec_emit, &c), AP_REJECTED, "[0,10) was emitted");
    EXPECT_EQ(ap_window_par_add(&p, 1, 19, 4, prec_emit, &c), AP_OK, "[10,20) is open");
    EXPECT_EQ(ap_window_par_advance(&p, 1, AP_WINDOW_FLUSH, prec_emit, &c), 1,
              "G = 25 (worker 0) closes [10,20)");
    EXPECT(c.r[1].start == 10 && c.r[1].agg.count == 2 && c.r[1].agg.max == 7);
    EXPECT_EQ(ap_window_par_advance(&p, 0, AP_WINDOW_FLUSH, prec_emit, &c), 1);
    EXPECT(c.r[2].start == 20 && c.r[2].agg.count == 1);
    EXPECT(ap_window_par_accepted(&p) == 5 && ap_window_par_late(&p) == 1 &&
           ap_window_par_emitted(&p) == 3);
    ap_window_par_fini(&p);
}

/* promptness: after every add, exactly the windows with an event whose end
 * G has passed are out (none early, none held back to a later close), for
 * tumbling and hopping windows, 2 workers with random in-order streams */
Test(window, par_emits_each_window_as_soon_as_g_passes_its_end)
{
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pb[AP_WINDOW_PAR_BYTES(2, 16)];
    static prec c;
    const ap_window_desc descs[2] = {
        {.size_ns = 10},
        {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 5}};
    for (int v = 0; v < 2; v++) {
        const int64_t w = 10, sl = v == 0 ? 10 : 5;
        ap_window_par p;
        c.n = 0;
        EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &descs[v], 2, 16), AP_OK);
        static bool has[512]; /* window index -> holds an event */
        memset(has, 0, sizeof has);
        int64_t ts[2] = {0, 0};
        bool seen[2] = {false, false};
        uint64_t rng = 0x9e3779b97f4a7c15u + (uint64_t)v;
        for (int step = 0; step < 300; step++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            size_t wk = (size_t)(rng & 1u);
            if (ts[wk] > ts[1 - wk] + 30)
                wk = 1 - wk; /* bounded skew: the leader's windows fit its 16 slots */
            ts[wk] += (int64_t)((rng >> 8) % 9u); /* in order per worker */
            EXPECT_EQ(ap_window_par_add(&p, wk, (uint64_t)ts[wk], 1, prec_emit, &c), AP_OK);
            seen[wk] = true;
            int64_t d = ts[wk] - w; /* floor((t - w) / s) + 1 .. t / s */
            for (int64_t k = (d >= 0 ? d / sl : -((-d + sl - 1) / sl)) + 1; k <= ts[wk] / sl; k++)
                if (k >= 0)
                    has[k] = true;
            int64_t g = !(seen[0] && seen[1]) ? INT64_MIN : (ts[0] < ts[1] ? ts[0] : ts[1]);
            size_t want = 0;
            for (int64_t k = 0; k < 512; k++)
                if (has[k] && g != INT64_MIN && k * sl + w <= g)
                    want++;
            EXPECT_EQ(c.n, want, "variant %d step %d: G %lld", v, step, (long long)g);
            if (c.n != want)
                break;
        }
        ap_window_par_fini(&p);
    }
}

Test(window, par_bad_input_is_inval_and_changes_nothing_full_is_refused_whole)
{
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pb[AP_WINDOW_PAR_BYTES(2, 4) + 64];
    ap_window_par p, q;
    ap_window_desc d = {.size_ns = 10};
    memset(pb, 0xC3, sizeof pb);
    memset(&q, 0x5A, sizeof q);
    memcpy(&p, &q, sizeof p);
    ap_window_desc sess = {.kind = AP_WINDOW_KIND_SESSION, .gap_ns = 10};
    ap_window_desc hop0 = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 11};
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, NULL, 2, 4), AP_INVAL);
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &sess, 2, 4), AP_INVAL, "no sessions");
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &hop0, 2, 4), AP_INVAL);
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &d, 0, 4), AP_INVAL, "no workers");
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &d, 2, 1), AP_INVAL, "slots < 2");
    EXPECT_EQ(ap_window_par_init(&p, NULL, sizeof pb, &d, 2, 4), AP_INVAL);
    EXPECT_EQ(ap_window_par_init(&p, pb + 1, sizeof pb - 1, &d, 2, 4), AP_INVAL, "misaligned");
    EXPECT_EQ(ap_window_par_init(&p, pb, AP_WINDOW_PAR_BYTES(2, 4) - 1, &d, 2, 4), AP_INVAL);
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &d, SIZE_MAX / 2, 4), AP_INVAL, "overflow");
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &d, 2, SIZE_MAX / 2), AP_INVAL, "overflow");
    EXPECT_EQ(memcmp(&p, &q, sizeof p), 0, "*par untouched");
    size_t written = 0;
    for (size_t i = 0; i < sizeof pb; i++)
        written += pb[i] != 0xC3;
    EXPECT_EQ(written, 0, "bytes of the buffer written by a refused init");
    EXPECT_EQ(ap_window_par_init(&p, pb, AP_WINDOW_PAR_BYTES(2, 4), &d, 2, 4), AP_OK);
    for (size_t i = AP_WINDOW_PAR_BYTES(2, 4); i < sizeof pb; i++)
        EXPECT_EQ(pb[i], 0xC3, "byte %zu past the buffer written", i);
    static prec c;
    c.n = 0;
    EXPECT_EQ(ap_window_par_add(&p, 2, 1, 1, prec_emit, &c), AP_INVAL, "worker 2 of 2");
    EXPECT_EQ(ap_window_par_add(&p, 0, AP_WINDOW_TS_MAX + 1, 1, prec_emit, &c), AP_INVAL);
    EXPECT_EQ(ap_window_par_advance(&p, 7, 100, prec_emit, &c), 0);
    EXPECT_EQ(ap_window_par_accepted(&p), 0);
    /* worker 1 is silent: worker 0 fills its 4 slots, then is refused */
    for (uint64_t t = 0; t < 40; t += 10)
        EXPECT_EQ(ap_window_par_add(&p, 0, t, 1, prec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_par_add(&p, 0, 40, 1, prec_emit, &c), AP_FULL, "4 windows ahead");
    EXPECT_EQ(ap_window_par_accepted(&p), 4, "the refused add added nothing");
    EXPECT_EQ(ap_window_par_advance(&p, 1, 25, prec_emit, &c), 2, "G = 25: two closed");
    EXPECT_EQ(ap_window_par_add(&p, 0, 40, 1, prec_emit, &c), AP_OK, "room again");
    EXPECT_EQ(ap_window_par_advance(&p, 1, AP_WINDOW_FLUSH, prec_emit, &c), 2,
              "G = 40 (worker 0's max ts): [20,30), [30,40) close");
    EXPECT_EQ(ap_window_par_advance(&p, 0, AP_WINDOW_FLUSH, prec_emit, &c), 1);
    EXPECT_EQ(c.n, 5);
    for (size_t i = 0; i < c.n; i++)
        EXPECT(c.r[i].start == (int64_t)(10 * i) && c.r[i].agg.count == 1);
    ap_window_par_fini(&p);
}

/* The theorem: events with bounded disorder (all accepted by one ap_window
 * in their global order), each given to a random worker, the workers
 * interleaved at random (one thread; the TSan stress and the scheduler run
 * them in parallel): the merged output equals the single-threaded one. */
#define PT_N 3000
#define PT_W 4
typedef struct pt_ev { uint64_t ts; int64_t v; } pt_ev;

static uint64_t pt_rng(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static int par_theorem_run(uint64_t seed, const ap_window_desc *d, size_t workers, int mode)
{
    static pt_ev ev[PT_N];
    static size_t q[PT_W][PT_N], qn[PT_W], qi[PT_W];
    static prec one, many;
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pb[AP_WINDOW_PAR_BYTES(PT_W, 256)];
    uint64_t rng = seed | 1, t = 1000;
    for (size_t i = 0; i < PT_N; i++) { /* disorder < lateness: none late */
        t += pt_rng(&rng) % 7;
        ev[i].ts = t - pt_rng(&rng) % (d->lateness_ns + 1);
        ev[i].v = (int64_t)(pt_rng(&rng) % 2001) - 1000;
    }
    ap_window w;
    one.n = many.n = 0;
    if (ap_window_init(&w, buf, sizeof buf, d) != AP_OK)
        return 1;
    for (size_t i = 0; i < PT_N; i++)
        if (ap_window_add(&w, ev[i].ts, ev[i].v, prec_emit, &one) != AP_OK)
            return 2; /* the precondition: the single-threaded window accepts all */
    ap_window_advance(&w, AP_WINDOW_FLUSH, prec_emit, &one);
    ap_window_fini(&w);
    ap_window_par p;
    size_t slots = (size_t)ap_window_slots(d) + (mode ? 0 : 4);
    if (ap_window_par_init(&p, pb, sizeof pb, d, workers, slots) != AP_OK)
        return 3;
    memset(qn, 0, sizeof qn);
    memset(qi, 0, sizeof qi);
    for (size_t i = 0; i < PT_N; i++) {
        size_t k = (size_t)(pt_rng(&rng) % workers);
        q[k][qn[k]++] = i;
    }
    size_t left = workers;
    for (size_t k = 0; k < workers; k++)
        if (qn[k] == 0) { /* an idle worker says so */
            ap_window_par_advance(&p, k, AP_WINDOW_FLUSH, prec_emit, &many);
            left--;
        }
    unsigned stuck = 0;
    while (left > 0) {
        size_t k = (size_t)(pt_rng(&rng) % workers);
        if (qi[k] == qn[k])
            continue;
        pt_ev *e = &ev[q[k][qi[k]]];
        ap_status st = ap_window_par_add(&p, k, e->ts, e->v, prec_emit, &many);
        if (st == AP_FULL) { /* ahead of the slowest: another worker runs */
            if (++stuck > 100000)
                return 4;
            continue;
        }
        if (st != AP_OK)
            return 5;
        stuck = 0;
        if (++qi[k] == qn[k]) {
            ap_window_par_advance(&p, k, AP_WINDOW_FLUSH, prec_emit, &many);
            left--;
        }
    }
    int r = 0;
    if (ap_window_par_accepted(&p) != PT_N || ap_window_par_late(&p) != 0)
        r = 6;
    else if (one.n > 4096 || !same_output(one.r, one.n, many.r, many.n))
        r = 7;
    ap_window_par_fini(&p);
    return r;
}

Test(window, par_theorem_merged_equals_single_threaded, .timeout = TEST_TIMEOUT_S)
{
    ap_window_desc ds[] = {
        {.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 100, .lateness_ns = 30},
        {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 100, .slide_ns = 25, .lateness_ns = 50},
        {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 90, .slide_ns = 40, .lateness_ns = 0},
        {.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 7, .lateness_ns = 200},
    };
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++)
        for (size_t workers = 1; workers <= PT_W; workers++)
            for (uint64_t seed = 1; seed <= 6; seed++)
                EXPECT_EQ(par_theorem_run(seed * 0x9E3779B97F4A7C15u + i, &ds[i], workers,
                                          (int)(seed % 2)),
                          0, "desc %zu, %zu workers, seed %llu", i, workers,
                          (unsigned long long)seed);
}

/* ---- stats (issue #14): exact counts over a known sequence ---- */

static void win_stats_eq(const ap_window *w, uint64_t accepted, uint64_t late, uint64_t emitted,
                         uint64_t held, uint64_t held_max, const char *step)
{
    ap_window_stats s;
    ap_window_stats_get(w, &s);
    EXPECT(s.accepted == accepted && s.late == late && s.emitted == emitted && s.held == held &&
               s.held_max == held_max,
           "%s: accepted %ju late %ju emitted %ju held %ju held_max %ju", step,
           (uintmax_t)s.accepted, (uintmax_t)s.late, (uintmax_t)s.emitted, (uintmax_t)s.held,
           (uintmax_t)s.held_max);
    /* the old getters read the same fields */
    EXPECT(s.accepted == ap_window_accepted(w) && s.late == ap_window_late(w) &&
           s.emitted == ap_window_emitted(w) && s.held == ap_window_held(w) &&
           s.held_max == ap_window_held_max(w));
}

Test(window, stats_get_counts_exactly)
{
    ap_window w;
    rec c = {.win = &w};
    /* tumbling 10 ns, 20 ns lateness: W = max ts - 20 */
    EXPECT_EQ(ap_window_init(&w, buf, sizeof buf,
                             &(ap_window_desc){.size_ns = 10, .lateness_ns = 20}), AP_OK);
    win_stats_eq(&w, 0, 0, 0, 0, 0, "init");
    EXPECT_EQ(ap_window_add(&w, 1, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 12, 1, rec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_add(&w, 25, 1, rec_emit, &c), AP_OK);
    win_stats_eq(&w, 3, 0, 0, 3, 3, "three windows, W = 5");
    EXPECT_EQ(ap_window_add(&w, 3, 1, rec_emit, &c), AP_OK, "[0,10) is open at W = 5");
    win_stats_eq(&w, 4, 0, 0, 3, 3, "a fourth event in a held window");
    EXPECT_EQ(ap_window_advance(&w, 20, rec_emit, &c), 2);
    win_stats_eq(&w, 4, 0, 2, 1, 3, "W = 20 closes two");
    EXPECT_EQ(ap_window_add(&w, 15, 1, rec_emit, &c), AP_REJECTED);
    win_stats_eq(&w, 4, 1, 2, 1, 3, "late");
    EXPECT_EQ(ap_window_advance(&w, AP_WINDOW_FLUSH, rec_emit, &c), 1);
    win_stats_eq(&w, 4, 1, 3, 0, 3, "flushed");
    EXPECT_EQ(c.n, 3);
    ap_window_fini(&w);
    free(c.r);
}

static void par_stats_eq(ap_window_par *p, uint64_t accepted, uint64_t late, uint64_t full,
                         uint64_t emitted, uint64_t held, const char *step)
{
    ap_window_par_stats s;
    ap_window_par_stats_get(p, &s);
    EXPECT(s.accepted == accepted && s.late == late && s.full == full && s.emitted == emitted &&
               s.held == held,
           "%s: accepted %ju late %ju full %ju emitted %ju held %ju", step,
           (uintmax_t)s.accepted, (uintmax_t)s.late, (uintmax_t)s.full, (uintmax_t)s.emitted,
           (uintmax_t)s.held);
    EXPECT(s.accepted == ap_window_par_accepted(p) && s.late == ap_window_par_late(p) &&
           s.emitted == ap_window_par_emitted(p));
}

Test(window, par_stats_get_counts_exactly)
{
    static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pb[AP_WINDOW_PAR_BYTES(2, 4)];
    ap_window_par p;
    static prec c;
    c.n = 0;
    EXPECT_EQ(ap_window_par_init(&p, pb, sizeof pb, &(ap_window_desc){.size_ns = 10}, 2, 4), AP_OK);
    par_stats_eq(&p, 0, 0, 0, 0, 0, "init");
    for (uint64_t t = 0; t < 40; t += 10)
        EXPECT_EQ(ap_window_par_add(&p, 0, t, 1, prec_emit, &c), AP_OK);
    EXPECT_EQ(ap_window_par_add(&p, 0, 40, 1, prec_emit, &c), AP_FULL);
    par_stats_eq(&p, 4, 0, 1, 0, 4, "worker 0 full");
    EXPECT_EQ(ap_window_par_add(&p, 1, 5, 1, prec_emit, &c), AP_OK);
    par_stats_eq(&p, 5, 0, 1, 0, 5, "G = 5");
    EXPECT_EQ(ap_window_par_advance(&p, 1, 25, prec_emit, &c), 2);
    par_stats_eq(&p, 5, 0, 1, 2, 2, "G = 25 closes two");
    EXPECT_EQ(ap_window_par_add(&p, 1, 3, 1, prec_emit, &c), AP_REJECTED);
    par_stats_eq(&p, 5, 1, 1, 2, 2, "late");
    EXPECT_EQ(ap_window_par_add(&p, 0, 40, 1, prec_emit, &c), AP_OK);
    par_stats_eq(&p, 6, 1, 1, 2, 3, "room again");
    EXPECT_EQ(ap_window_par_advance(&p, 1, AP_WINDOW_FLUSH, prec_emit, &c), 2);
    EXPECT_EQ(ap_window_par_advance(&p, 0, AP_WINDOW_FLUSH, prec_emit, &c), 1);
    par_stats_eq(&p, 6, 1, 1, 5, 0, "flushed");
    EXPECT_EQ(c.n, 5);
    ap_window_par_fini(&p);
}
