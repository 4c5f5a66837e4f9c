/* tests/fuzz/fuzz_window.c -- libFuzzer harness for asyncpat/window.h
 *
 * Input: a desc (kind, size, slide, gap, lateness: any values, extremes near
 * AP_WINDOW_TS_MAX included) and a buffer size, for the AP_INVAL paths; then
 * a valid operator (tumbling, hopping with size = r * slide + delta, r 1..6,
 * or session; durations from 1 to AP_WINDOW_TS_MAX, lateness 0 .. TS_MAX as
 * long as the slots fit 512) and a sequence of adds (out-of-order timestamps
 * around the newest event, the watermark and the extremes, values with
 * INT64 extremes, some > AP_WINDOW_TS_MAX) and explicit advances (below,
 * at and above the watermark, AP_WINDOW_FLUSH), checked after every step
 * against a brute-force model:
 *   - ap_window_slots equals ceil((w + L) / s) + 1, 0 exactly for the descs
 *     init refuses; init is AP_INVAL exactly then or when the buffer is
 *     too small, and *win is untouched; create: AP_INVAL / AP_NOMEM (1 MiB
 *     allocator) / AP_OK, nothing leaked
 *   - add: AP_INVAL for ts > TS_MAX (nothing changes); AP_REJECTED exactly
 *     when a window of the event has end <= W (session: ts < W), counted in
 *     ap_window_late, nothing else changes; else AP_OK
 *   - the watermark is max(maxts - L, every advance), INT64_MIN before any
 *   - the windows emitted by each call are exactly the model's windows (the
 *     brute-force set of windows of the accepted events; sessions: runs of
 *     accepted, unemitted events with gaps < g) whose end <= W, each once,
 *     in increasing order of end, with end <= ap_window_watermark inside the
 *     callback, and each aggregate (count, exact 128-bit sum, min, max)
 *     equal to a brute-force recount of the accepted events in [start, end)
 *   - advance returns the number emitted; accepted / late / emitted counters
 *     and held (= the model's open windows) exact; held <= held_max <=
 *     ap_window_slots, held_max the most held after any add
 *   - after the final flush nothing is held
 */
#include "asyncpat/window.h"
#include "fuzz_common.h"

typedef __int128 i128;
#define TSMAX ((int64_t)AP_WINDOW_TS_MAX)
#define NSL 512
#define MAXEV 256
#define MAXOPEN 4096
#define MAXREC 4096

static ap__window_slot wbuf[NSL];

typedef struct magg { uint64_t count; i128 sum; int64_t min, max; } magg;
typedef struct mres { int64_t start, end; magg agg; } mres;

/* ---- the model ---- */
static int m_kind;
static int64_t m_w, m_s, m_L;
static int64_t ev_t[MAXEV], ev_v[MAXEV];
static int ev_open[MAXEV]; /* session: not yet emitted */
static int nev;
static int64_t openk[MAXOPEN]; /* hopping: windows (index k) not yet emitted */
static int nopen;
static int m_has_wm;
static int64_t m_W, m_maxts;
static int m_has_ev;
static uint64_t m_acc, m_late, m_emitted;
static size_t m_held_max;
static mres expd[MAXREC];
static int nexp;

/* ---- what the callback saw ---- */
static const ap_window *cur;
static ap_window_result rec[MAXREC];
static int nrec;
static void on_emit(void *ctx, const ap_window_result *r)
{
    FZ_CHECK(ctx == (void *)&nrec);
    FZ_CHECK(r->end <= ap_window_watermark(cur));
    FZ_CHECK(r->agg.count > 0);
    FZ_CHECK(nrec < MAXREC);
    rec[nrec++] = *r;
}

static i128 fl(i128 a, i128 b) { i128 q = a / b; return (a % b != 0 && a < 0) ? q - 1 : q; }

static magg brute(i128 start, i128 end, int only_open)
{
    magg m = {0, 0, 0, 0};
    for (int i = 0; i < nev; i++) {
        if (only_open && !ev_open[i]) continue;
        if (ev_t[i] < start || ev_t[i] >= end) continue;
        int64_t v = ev_v[i];
        if (m.count == 0 || v < m.min) m.min = v;
        if (m.count == 0 || v > m.max) m.max = v;
        m.count++;
        m.sum += v;
    }
    return m;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* session runs of open events: sorted indices into ord[], returns count */
static int ord[MAXEV];
static int cmp_ev(const void *a, const void *b)
{
    int64_t x = ev_t[*(const int *)a], y = ev_t[*(const int *)b];
    return x < y ? -1 : x > y;
}
static int sess_sorted(void)
{
    int n = 0;
    for (int i = 0; i < nev; i++)
        if (ev_open[i]) ord[n++] = i;
    qsort(ord, (size_t)n, sizeof *ord, cmp_ev);
    return n;
}
static size_t model_held(void)
{
    if (m_kind != AP_WINDOW_KIND_SESSION) return (size_t)nopen;
    int n = sess_sorted();
    size_t runs = 0;
    for (int x = 0; x < n; x++)
        if (x == 0 || ev_t[ord[x]] - ev_t[ord[x - 1]] >= m_w) runs++;
    return runs;
}

/* the windows due at the model's W, in order; removed from the model */
static void model_due(void)
{
    nexp = 0;
    if (!m_has_wm) return;
    if (m_kind != AP_WINDOW_KIND_SESSION) {
        qsort(openk, (size_t)nopen, sizeof *openk, cmp_i64);
        int keep = 0;
        for (int x = 0; x < nopen; x++) {
            i128 st = (i128)openk[x] * m_s, en = st + m_w;
            if (en <= m_W) {
                FZ_CHECK(nexp < MAXREC);
                expd[nexp++] = (mres){(int64_t)st, (int64_t)en, brute(st, en, 0)};
            } else {
                openk[keep++] = openk[x];
            }
        }
        nopen = keep;
    } else {
        int n = sess_sorted();
        for (int x = 0; x < n;) {
            int y = x + 1;
            while (y < n && ev_t[ord[y]] - ev_t[ord[y - 1]] < m_w) y++;
            int64_t first = ev_t[ord[x]], last = ev_t[ord[y - 1]];
            if ((i128)last + m_w <= m_W) {
                FZ_CHECK(nexp < MAXREC);
                expd[nexp++] = (mres){first, last + m_w, brute(first, (i128)last + 1, 1)};
                for (int z = x; z < y; z++) ev_open[ord[z]] = 0;
            }
            x = y;
        }
    }
    m_emitted += (uint64_t)nexp;
}

static void check_emitted(void)
{
    if (nrec != nexp) fprintf(stderr, "emitted %d, model %d\n", nrec, nexp);
    FZ_CHECK(nrec == nexp);
    for (int i = 0; i < nrec; i++) {
        const ap_window_result *r = &rec[i];
        const mres *e = &expd[i];
        if (r->start != e->start || r->end != e->end)
            fprintf(stderr, "window %d: [%lld,%lld) model [%lld,%lld)\n", i,
                    (long long)r->start, (long long)r->end, (long long)e->start, (long long)e->end);
        FZ_CHECK(r->start == e->start && r->end == e->end);
        FZ_CHECK(r->agg.count == e->agg.count);
        i128 sum = (i128)(((unsigned __int128)(uint64_t)r->agg.sum_hi << 64) | r->agg.sum_lo);
        FZ_CHECK(sum == e->agg.sum);
        FZ_CHECK(r->agg.min == e->agg.min && r->agg.max == e->agg.max);
    }
    nrec = 0;
}

static void check_state(const ap_window *win, uint64_t slots)
{
    FZ_CHECK(ap_window_watermark(win) == (m_has_wm ? m_W : INT64_MIN));
    FZ_CHECK(ap_window_accepted(win) == m_acc);
    FZ_CHECK(ap_window_late(win) == m_late);
    FZ_CHECK(ap_window_emitted(win) == m_emitted);
    size_t h = model_held();
    FZ_CHECK(ap_window_held(win) == h);
    FZ_CHECK(h <= slots);
    FZ_CHECK(ap_window_held_max(win) == m_held_max);
    FZ_CHECK(m_held_max <= slots);
}

static uint64_t fz_dur(fz *f)
{
    uint8_t k = fz_u8(f);
    switch (k & 7) {
    case 0: return 0;
    case 1: case 2: return fz_u8(f);
    case 3: return AP_WINDOW_TS_MAX - 2 + fz_u8(f) % 4;
    case 4: return fz_u16(f);
    default: return fz_val(f);
    }
}

/* model of ap_window_slots: 0 for a desc init refuses */
static unsigned __int128 model_slots(const ap_window_desc *d, uint64_t *rs)
{
    uint64_t w, s, L = d->lateness_ns;
    *rs = d->slide_ns;
    if (d->kind == AP_WINDOW_KIND_TUMBLING || (d->kind == AP_WINDOW_KIND_HOPPING && d->slide_ns == 0))
        if (d->slide_ns == 0) *rs = d->size_ns;
    if (L > AP_WINDOW_TS_MAX) return 0;
    if (d->kind == AP_WINDOW_KIND_TUMBLING || d->kind == AP_WINDOW_KIND_HOPPING) {
        w = d->size_ns, s = *rs;
        if (w == 0 || s == 0 || s > w || w > AP_WINDOW_TS_MAX) return 0;
        if (d->kind == AP_WINDOW_KIND_TUMBLING && s != w) return 0;
    } else if (d->kind == AP_WINDOW_KIND_SESSION) {
        w = s = d->gap_ns;
        if (w == 0 || w > AP_WINDOW_TS_MAX) return 0;
    } else {
        return 0;
    }
    return ((unsigned __int128)w + L + s - 1) / s + 1;
}

static void check_inval(fz *f)
{
    uint8_t k = fz_u8(f);
    ap_window_desc d;
    memset(&d, 0, sizeof d);
    d.kind = (ap_window_kind)(k < 0xF0 ? k % 3 : k);
    d.size_ns = fz_dur(f);
    d.slide_ns = (k & 0x80) ? d.size_ns : fz_dur(f);
    d.gap_ns = fz_dur(f);
    d.lateness_ns = (k & 0x40) ? 0 : fz_dur(f);
    uint64_t rs;
    unsigned __int128 n = model_slots(&d, &rs);
    FZ_CHECK(ap_window_slots(&d) == (uint64_t)n);
    ap_window_desc r = ap_window_desc_resolved(&d);
    FZ_CHECK(r.kind == d.kind && r.size_ns == d.size_ns && r.gap_ns == d.gap_ns &&
             r.lateness_ns == d.lateness_ns);
    if (d.kind == AP_WINDOW_KIND_TUMBLING || d.kind == AP_WINDOW_KIND_HOPPING) FZ_CHECK(r.slide_ns == rs);
    /* init with a buffer of decoded size (never beyond wbuf) */
    size_t bytes;
    uint8_t b = fz_u8(f);
    if (n && n <= NSL && (b & 3) == 0) bytes = AP_WINDOW_BYTES(n);
    else if (n && n <= NSL + 1 && (b & 3) == 1) bytes = AP_WINDOW_BYTES(n) - 1 - b % 64;
    else bytes = fz_size(f) % (sizeof wbuf + 1);
    int bad = n == 0 || n > SIZE_MAX / sizeof(ap__window_slot) ||
              (unsigned __int128)bytes < n * sizeof(ap__window_slot);
    ap_window win;
    fz_fill(&win, sizeof win);
    ap_status st = ap_window_init(&win, wbuf, bytes, &d);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&win, sizeof win));
    } else {
        FZ_CHECK(st == AP_OK);
        FZ_CHECK(ap_window_held(&win) == 0 && ap_window_watermark(&win) == INT64_MIN);
        ap_window_fini(&win);
    }
    /* create */
    ap_window *o;
    fz_fill(&o, sizeof o);
    int before = allocs;
    st = ap_window_create(&o, &d, &fz_allocator);
    size_t hdr = (sizeof(ap_window) + 15) / 16 * 16;
    if (n == 0 || n > SIZE_MAX / sizeof(ap__window_slot) ||
        n * sizeof(ap__window_slot) + hdr > SIZE_MAX) {
        FZ_CHECK(st == AP_INVAL && allocs == before);
    } else if (n * sizeof(ap__window_slot) + hdr > ((size_t)1 << 20)) {
        FZ_CHECK(st == AP_NOMEM);
    } else {
        FZ_CHECK(st == AP_OK);
    }
    if (st == AP_OK) {
        FZ_CHECK(ap_window_held(o) == 0 && ap_window_accepted(o) == 0);
        ap_window_destroy(o);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(fz_untouched(&o, sizeof o));
        allocs = before;
    }
}

static int64_t clamp_ts(i128 t)
{
    return t < 0 ? 0 : t > TSMAX ? TSMAX : (int64_t)t;
}

static uint64_t fz_ts(fz *f)
{
    uint8_t k = fz_u8(f);
    i128 unit = m_s / 4 + 1;
    i128 base = m_has_ev ? m_maxts : 0;
    switch (k & 7) {
    case 0: return (uint64_t)clamp_ts(base + (i128)(fz_u8(f) % 12) * unit);
    case 1: return (uint64_t)clamp_ts(base - (i128)(fz_u8(f)) * unit);
    case 2: return (uint64_t)clamp_ts(base + (int8_t)fz_u8(f));
    case 3: return fz_val(f) % (AP_WINDOW_TS_MAX + 1);
    case 4: return AP_WINDOW_TS_MAX - fz_u8(f) % 4 + ((k & 0x80) ? fz_u8(f) % 3 : 0);
    case 5: return (uint64_t)clamp_ts(m_has_wm ? (i128)m_W + (int8_t)fz_u8(f) : fz_u8(f));
    case 6: return (k & 0x40) ? fz_val(f) : fz_u8(f);
    default: return (uint64_t)clamp_ts(base + (i128)(int8_t)fz_u8(f) * unit + (int8_t)fz_u8(f));
    }
}

static int64_t fz_value(fz *f)
{
    uint8_t k = fz_u8(f);
    switch (k & 3) {
    case 0: return INT64_MAX - (k >> 2);
    case 1: return INT64_MIN + (k >> 2);
    case 2: return (int8_t)fz_u8(f);
    default: return (int64_t)fz_val(f);
    }
}

static uint64_t fz_wm(fz *f)
{
    uint8_t k = fz_u8(f);
    i128 unit = m_s / 4 + 1;
    i128 W = m_has_wm ? m_W : 0;
    switch (k & 7) {
    case 0: return AP_WINDOW_FLUSH;
    case 1: return AP_WINDOW_TS_MAX + fz_u8(f) % 3;
    case 2: return fz_val(f);
    case 3: { i128 x = W + (i128)(fz_u8(f) % 8) * unit; return x < 0 ? 0 : (uint64_t)x; }
    case 4: { i128 x = W - fz_u8(f); return x < 0 ? 0 : (uint64_t)x; }
    default: { i128 x = (m_has_ev ? m_maxts : 0) + (i128)(int8_t)fz_u8(f) * unit;
               return x < 0 ? 0 : (uint64_t)x; }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);

    /* a valid operator */
    uint8_t c = fz_u8(&f);
    ap_window_desc d;
    memset(&d, 0, sizeof d);
    d.kind = (ap_window_kind)(c % 3);
    uint64_t s;
    switch ((c >> 2) & 3) {
    case 0: s = 1 + fz_u8(&f); break;
    case 1: s = 1 + fz_u16(&f); break;
    case 2: s = 1 + fz_val(&f) % AP_WINDOW_TS_MAX; break;
    default: s = AP_WINDOW_TS_MAX - fz_u8(&f); break;
    }
    if (d.kind == AP_WINDOW_KIND_HOPPING) {
        uint64_t r = 1 + fz_u8(&f) % 6;
        if (s > AP_WINDOW_TS_MAX / r) s = AP_WINDOW_TS_MAX / r;
        uint64_t w = s * r;
        if (c & 0x10) {
            uint64_t delta = fz_val(&f) % s;
            if (delta > AP_WINDOW_TS_MAX - w) delta = AP_WINDOW_TS_MAX - w;
            w += delta;
        }
        d.size_ns = w;
        d.slide_ns = (w == s && (c & 0x20)) ? 0 : s;
    } else if (d.kind == AP_WINDOW_KIND_TUMBLING) {
        d.size_ns = s;
        d.slide_ns = (c & 0x20) ? s : 0;
    } else {
        d.gap_ns = s;
    }
    switch ((c >> 6) & 3) {
    case 0: d.lateness_ns = 0; break;
    case 1: d.lateness_ns = fz_u8(&f); break;
    case 2: {
        unsigned __int128 L = (unsigned __int128)s * (fz_u8(&f) % 5) + fz_u8(&f);
        d.lateness_ns = L > AP_WINDOW_TS_MAX ? AP_WINDOW_TS_MAX : (uint64_t)L;
        break;
    }
    default: d.lateness_ns = AP_WINDOW_TS_MAX - fz_u8(&f) % 2; break;
    }
    uint64_t slots = ap_window_slots(&d);
    if (slots > NSL) {
        d.lateness_ns = 0;
        slots = ap_window_slots(&d);
    }
    FZ_CHECK(slots >= 2 && slots <= NSL);
    ap_window win;
    FZ_CHECK(ap_window_init(&win, wbuf, AP_WINDOW_BYTES(slots), &d) == AP_OK);
    cur = &win;
    m_kind = (int)d.kind;
    m_s = (int64_t)s;
    m_w = (int64_t)(d.kind == AP_WINDOW_KIND_SESSION ? d.gap_ns : d.size_ns);
    m_L = (int64_t)d.lateness_ns;
    nev = nopen = nrec = 0;
    m_has_wm = m_has_ev = 0;
    m_W = m_maxts = 0;
    m_acc = m_late = m_emitted = 0;
    m_held_max = 0;

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        if (op % 8 < 6) { /* add */
            uint64_t ts = fz_ts(&f);
            int64_t v = fz_value(&f);
            if (ts <= AP_WINDOW_TS_MAX && nev == MAXEV) continue; /* model full */
            ap_status st = ap_window_add(&win, ts, v, on_emit, &nrec);
            nexp = 0;
            if (ts > AP_WINDOW_TS_MAX) {
                FZ_CHECK(st == AP_INVAL);
            } else {
                int64_t t = (int64_t)ts;
                int late;
                if (m_kind == AP_WINDOW_KIND_SESSION) {
                    late = m_has_wm && t < m_W;
                } else { /* the earliest end among t's windows */
                    i128 klo = fl((i128)t - m_w, m_s) + 1;
                    late = m_has_wm && klo * m_s + m_w <= m_W;
                }
                if (late) {
                    FZ_CHECK(st == AP_REJECTED);
                    m_late++;
                } else {
                    FZ_CHECK(st == AP_OK);
                    if (!m_has_ev || t > m_maxts) m_maxts = t;
                    m_has_ev = 1;
                    if (!m_has_wm || m_maxts - m_L > m_W) m_W = m_maxts - m_L;
                    m_has_wm = 1;
                    model_due();
                    ev_t[nev] = t;
                    ev_v[nev] = v;
                    ev_open[nev] = 1;
                    nev++;
                    if (m_kind != AP_WINDOW_KIND_SESSION) {
                        i128 klo = fl((i128)t - m_w, m_s) + 1, khi = fl(t, m_s);
                        for (i128 k = klo; k <= khi; k++) {
                            FZ_CHECK(k * m_s + m_w > m_W); /* not late */
                            int found = 0;
                            for (int x = 0; x < nopen; x++)
                                if (openk[x] == (int64_t)k) found = 1;
                            if (!found) {
                                FZ_CHECK(nopen < MAXOPEN);
                                openk[nopen++] = (int64_t)k;
                            }
                        }
                    }
                    m_acc++;
                    size_t h = model_held();
                    if (h > m_held_max) m_held_max = h;
                }
            }
            check_emitted();
        } else { /* advance */
            uint64_t wm = fz_wm(&f);
            size_t n = ap_window_advance(&win, wm, on_emit, &nrec);
            int64_t Wn = wm > AP_WINDOW_TS_MAX ? INT64_MAX : (int64_t)wm;
            if (!m_has_wm || Wn > m_W) m_W = Wn;
            m_has_wm = 1;
            model_due();
            FZ_CHECK(n == (size_t)nexp);
            check_emitted();
        }
        check_state(&win, slots);
    }
    /* end of stream */
    size_t n = ap_window_advance(&win, AP_WINDOW_FLUSH, on_emit, &nrec);
    m_W = INT64_MAX;
    m_has_wm = 1;
    model_due();
    FZ_CHECK(n == (size_t)nexp);
    check_emitted();
    check_state(&win, slots);
    FZ_CHECK(ap_window_held(&win) == 0);
    ap_window_fini(&win);
    return 0;
}
