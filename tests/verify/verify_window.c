/*
 * verify_window.c -- ap_window_par (issue #14): one window fed by two or
 * three workers, under every interleaving within the preemption bound, SC
 * and x86-TSO (and C11 for the _tso scenarios).
 *
 *   merged == single   the windows emitted (start, end, count, sum, min,
 *                      max) equal those of one ap_window fed the same
 *                      events in their global order, whatever the
 *                      interleaving of the workers: none missing, none
 *                      twice, no event lost or counted twice
 *   order              windows are emitted in increasing order of start
 *   watermark          a window is emitted only once the global watermark
 *                      (the minimum over workers) has passed its end
 *
 * The events (ts, value) are given per worker; each worker's list is a
 * subsequence of the global order (sorted by ts here, lateness 0), so the
 * single-threaded window accepts all of them, and so must the parallel one.
 *
 * Scenarios:
 *   window_par_tumbling   size 10; T0 adds ts 1, 12, T1 adds 5, 15; each
 *                         flushes its worker when done
 *   window_par_hopping    size 10, slide 5; T0 adds 3, 14, T1 adds 8, 11
 *   window_par_3w         size 10; T0 adds 2, T1 adds 7, 13, T2 adds 18
 *   window_par_late       size 10, lateness 0; T0 adds 15, then 3 (late
 *                         once T1's 12 has raised G past 10, else on
 *                         time), T1 adds 5, 12. Here the single-threaded
 *                         window's verdict depends on the order, so the
 *                         check is brute force over the events each add
 *                         accepted: every accepted event is in its window
 *                         exactly once (accepted + late = offered; each
 *                         emitted count equals the accepted events in it):
 *                         an add that read G before its worker's lock would
 *                         land in a window already emitted
 */
#include "vf.h"
#include "asyncpat/window.h"

#define VW_MAXW 3
#define VW_MAXE 4
#define VW_SLOTS 4

typedef struct wst {
    ap_window_par par;
    AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char buf[AP_WINDOW_PAR_BYTES(VW_MAXW, VW_SLOTS)];
    ap_window_result out[16];
    int nout;
    bool accepted[VW_MAXW][VW_MAXE];
} wst;

static ap_window_desc w_desc;
static int w_nw;
static uint64_t w_ts[VW_MAXW][VW_MAXE];
static int w_n[VW_MAXW];
static bool w_late; /* events may be late: brute-force check */

static void *w_setup(void)
{
    wst *s = aligned_alloc(AP_WINDOW_PAR_ALIGN, sizeof *s); /* buf: cache-line aligned */
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    VF_CHECK(ap_window_par_init(&s->par, s->buf, sizeof s->buf, &w_desc, (size_t)w_nw,
                                VW_SLOTS) == AP_OK);
    return s;
}

static void w_teardown(void *p) { free(p); }

static void w_emit(void *ctx, const ap_window_result *r)
{
    wst *s = ctx;
    VF_CHECK(s->nout < 16);
    /* the published G (internal: the getter also counts raises not yet
     * published), which must pass a window's end before it is emitted */
    VF_CHECK(r->end <= AP_ATOMIC_LOAD(&s->par.gwm, memory_order_relaxed),
             "window [%lld,%lld) before G passed it",
             (long long)r->start, (long long)r->end);
    VF_CHECK(s->nout == 0 || r->start > s->out[s->nout - 1].start,
             "window [%lld,%lld) out of order or twice", (long long)r->start, (long long)r->end);
    s->out[s->nout++] = *r;
}

static void w_thread(void *p, int id)
{
    wst *s = p;
    for (int i = 0; i < w_n[id]; i++) {
        uint64_t ts = w_ts[id][i];
        ap_status st = ap_window_par_add(&s->par, (size_t)id, ts, (int64_t)ts * 10 + id, w_emit, s);
        VF_CHECK(st == AP_OK || (w_late && st == AP_REJECTED), "worker %d, ts %llu: %d", id,
                 (unsigned long long)ts, st);
        s->accepted[id][i] = st == AP_OK;
    }
    ap_window_par_advance(&s->par, (size_t)id, AP_WINDOW_FLUSH, w_emit, s);
}

typedef struct one_out {
    ap_window_result r[16];
    int n;
} one_out;

static void one_emit(void *ctx, const ap_window_result *r)
{
    one_out *o = ctx;
    if (o->n < 16)
        o->r[o->n] = *r;
    o->n++;
}

static void w_check_brute(wst *s)
{
    /* tumbling: window k = [k*w, k*w + w) */
    int64_t w = (int64_t)w_desc.size_ns;
    uint64_t acc = 0, late = 0, emitted = 0;
    for (int t = 0; t < w_nw; t++)
        for (int i = 0; i < w_n[t]; i++)
            acc += s->accepted[t][i], late += !s->accepted[t][i];
    VF_CHECK(ap_window_par_accepted(&s->par) == acc && ap_window_par_late(&s->par) == late);
    for (int j = 0; j < s->nout; j++) {
        uint64_t in = 0;
        for (int t = 0; t < w_nw; t++)
            for (int i = 0; i < w_n[t]; i++)
                in += s->accepted[t][i] && (int64_t)w_ts[t][i] >= s->out[j].start &&
                      (int64_t)w_ts[t][i] < s->out[j].end;
        VF_CHECK(s->out[j].end - s->out[j].start == w && s->out[j].agg.count == in,
                 "window [%lld,%lld): count %llu, %llu accepted events in it",
                 (long long)s->out[j].start, (long long)s->out[j].end,
                 (unsigned long long)s->out[j].agg.count, (unsigned long long)in);
        emitted += in;
    }
    VF_CHECK(emitted == acc, "%llu of %llu accepted events emitted", (unsigned long long)emitted,
             (unsigned long long)acc);
    ap_window_par_fini(&s->par);
}

static void w_check(void *p)
{
    wst *s = p;
    if (w_late) {
        w_check_brute(s);
        return;
    }
    /* the single-threaded window on the same events in global (ts) order */
    uint64_t all[VW_MAXW * VW_MAXE];
    int64_t val[VW_MAXW * VW_MAXE];
    int n = 0;
    for (int w = 0; w < w_nw; w++)
        for (int i = 0; i < w_n[w]; i++)
            all[n] = w_ts[w][i], val[n] = (int64_t)w_ts[w][i] * 10 + w, n++;
    for (int i = 1; i < n; i++) /* insertion sort by ts */
        for (int j = i; j > 0 && all[j] < all[j - 1]; j--) {
            uint64_t t = all[j];
            all[j] = all[j - 1], all[j - 1] = t;
            int64_t v = val[j];
            val[j] = val[j - 1], val[j - 1] = v;
        }
    static uint64_t wb[256];
    ap_window one;
    one_out o = {.n = 0};
    VF_CHECK(ap_window_init(&one, wb, sizeof wb, &w_desc) == AP_OK);
    for (int i = 0; i < n; i++)
        VF_CHECK(ap_window_add(&one, all[i], val[i], one_emit, &o) == AP_OK);
    ap_window_advance(&one, AP_WINDOW_FLUSH, one_emit, &o);
    VF_CHECK(s->nout == o.n, "%d windows emitted, the single-threaded window emits %d", s->nout,
             o.n);
    for (int i = 0; i < o.n; i++) {
        const ap_window_result *a = &s->out[i], *b = &o.r[i];
        VF_CHECK(a->start == b->start && a->end == b->end && a->agg.count == b->agg.count &&
                     a->agg.sum_lo == b->agg.sum_lo && a->agg.sum_hi == b->agg.sum_hi &&
                     a->agg.min == b->agg.min && a->agg.max == b->agg.max,
                 "window %d [%lld,%lld): count %llu, single-threaded [%lld,%lld) count %llu", i,
                 (long long)a->start, (long long)a->end, (unsigned long long)a->agg.count,
                 (long long)b->start, (long long)b->end, (unsigned long long)b->agg.count);
    }
    VF_CHECK(ap_window_par_accepted(&s->par) == (uint64_t)n && ap_window_par_late(&s->par) == 0);
    ap_window_par_fini(&s->par);
}

static void set_events(int nw, const uint64_t *t0, int n0, const uint64_t *t1, int n1,
                       const uint64_t *t2, int n2)
{
    w_nw = nw;
    w_n[0] = n0, w_n[1] = n1, w_n[2] = n2;
    for (int i = 0; i < n0; i++) w_ts[0][i] = t0[i];
    for (int i = 0; i < n1; i++) w_ts[1][i] = t1[i];
    for (int i = 0; i < n2; i++) w_ts[2][i] = t2[i];
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = w_setup, .thread = w_thread, .check = w_check,
                          .teardown = w_teardown};
        w_desc = (ap_window_desc){.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 10};
        set_events(2, (const uint64_t[]){1, 12}, 2, (const uint64_t[]){5, 15}, 2, NULL, 0);
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "window_par_tumbling_tso" : "window_par_tumbling";
        total += vf_explore(&sc);

        w_desc = (ap_window_desc){.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 10, .slide_ns = 5};
        set_events(2, (const uint64_t[]){3, 14}, 2, (const uint64_t[]){8, 11}, 2, NULL, 0);
        sc.name = tso ? "window_par_hopping_tso" : "window_par_hopping";
        total += vf_explore(&sc);

        w_desc = (ap_window_desc){.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 10};
        set_events(3, (const uint64_t[]){2}, 1, (const uint64_t[]){7, 13}, 2,
                   (const uint64_t[]){18}, 1);
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "window_par_3w_tso" : "window_par_3w";
        total += vf_explore(&sc);

        w_desc = (ap_window_desc){.kind = AP_WINDOW_KIND_TUMBLING, .size_ns = 10};
        set_events(2, (const uint64_t[]){15, 3}, 2, (const uint64_t[]){5, 12}, 2, NULL, 0);
        w_late = true;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "window_par_late_tso" : "window_par_late";
        total += vf_explore(&sc);
        w_late = false;
    }
    printf("verify_window: %lu executions\n", total);
    return 0;
}
