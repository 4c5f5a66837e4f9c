/* tests/fuzz/fuzz_window_par.c -- libFuzzer harness for ap_window_par
 * (asyncpat/window.h, issue #14): one tumbling or hopping window fed by
 * 1..4 workers, driven from one thread in any order the input picks.
 *
 * Input: the kind, slide (1 .. 2^16, or near AP_WINDOW_TS_MAX), size = r *
 * slide (+ delta), lateness, the number of workers and of extra slots; then
 * a sequence of adds (a worker, a timestamp around the newest event or the
 * global watermark, or anywhere up to past AP_WINDOW_TS_MAX, a value with
 * INT64 extremes), advances of one worker (below, at and above its
 * watermark, AP_WINDOW_FLUSH) and bad calls (a worker index out of range);
 * at the end every worker is flushed. Checked after every step against a
 * sequential model:
 *   - init: AP_INVAL for SESSION, 0 workers, slots below ap_window_slots,
 *     a buffer one byte short, NULL or misaligned; *par and the buffer
 *     untouched
 *   - add: AP_INVAL for a bad worker or ts > TS_MAX (nothing changes);
 *     AP_REJECTED exactly when a window of the event ends at or before the
 *     global watermark G (late: counted); else, as ap_window, the event
 *     raises its worker's watermark to ts - L and what that closes is
 *     emitted first; then AP_FULL exactly when one of its windows' slot
 *     (k mod slots) in its worker holds another window (nothing added);
 *     else AP_OK
 *   - G = the minimum over workers' watermarks (INT64_MIN while one has
 *     none), never lower than before; advance returns what it emitted
 *   - each call emits exactly the model's due windows (held by any worker,
 *     end <= G), each once, in increasing order, end <= G inside the
 *     callback, with each aggregate (count, exact sum, min, max) equal to a
 *     brute-force recount of the accepted events in [start, end): the
 *     merge of the workers' partials is exact
 *   - accepted / late / emitted counters exact; after the final flush
 *     nothing is held
 */
#include "asyncpat/window.h"
#include "fuzz_common.h"

typedef __int128 i128;
#define TSMAX ((int64_t)AP_WINDOW_TS_MAX)
#define MAXW 4
#define MAXSL 24
#define MAXEV 512
#define MAXREC 1024

static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pbuf[AP_WINDOW_PAR_BYTES(MAXW, MAXSL) + 64];

/* the model */
static int64_t m_w, m_s, m_L;
static int m_nw;
static size_t m_nsl;
static int64_t m_wm[MAXW], m_max[MAXW];
static int m_hasev[MAXW];
static int64_t m_G;
static int64_t held[MAXW][MAXSL]; /* window indexes each worker holds */
static int nheld[MAXW];
static int64_t ev_t[MAXEV], ev_v[MAXEV];
static int nev;
static uint64_t m_acc, m_late, m_emitted;
static int64_t exp_k[MAXREC];
static int nexp;

/* what the callback saw */
static ap_window_result rec[MAXREC];
static int nrec;
static ap_window_par *cur;

static void on_emit(void *ctx, const ap_window_result *r)
{
    (void)ctx;
    FZ_CHECK(r->end <= AP_ATOMIC_LOAD(&cur->gwm, memory_order_relaxed)); /* published G */
    FZ_CHECK(nrec < MAXREC);
    rec[nrec++] = *r;
}

static int64_t fl(i128 a, i128 b) /* floor(a / b), b > 0 */
{
    i128 q = a / b;
    if (a % b != 0 && a < 0) q--;
    return (int64_t)q;
}

static int64_t slot_of(int64_t k)
{
    int64_t n = (int64_t)m_nsl, i = k % n;
    return i < 0 ? i + n : i;
}

/* the model's close: G = min over workers; emit the held windows now due */
static void model_close(void)
{
    int64_t g = INT64_MAX;
    for (int i = 0; i < m_nw; i++)
        if (m_wm[i] < g) g = m_wm[i];
    if (g <= m_G) return;
    m_G = g;
    int64_t due = g == INT64_MAX ? INT64_MAX : fl((i128)g - m_w, m_s);
    for (;;) {
        int any = 0;
        int64_t k = 0;
        for (int i = 0; i < m_nw; i++)
            for (int j = 0; j < nheld[i]; j++)
                if (held[i][j] <= due && (!any || held[i][j] < k)) k = held[i][j], any = 1;
        if (!any) break;
        for (int i = 0; i < m_nw; i++)
            for (int j = 0; j < nheld[i]; j++)
                if (held[i][j] == k) held[i][j--] = held[i][--nheld[i]];
        FZ_CHECK(nexp < MAXREC);
        exp_k[nexp++] = k;
        m_emitted++;
    }
}

static void check_emitted(void)
{
    FZ_CHECK(nrec == nexp);
    for (int x = 0; x < nrec; x++) {
        int64_t k = exp_k[x];
        FZ_CHECK(rec[x].start == k * m_s && rec[x].end == k * m_s + m_w);
        uint64_t count = 0;
        i128 sum = 0;
        int64_t mn = 0, mx = 0;
        for (int e = 0; e < nev; e++)
            if (ev_t[e] >= rec[x].start && ev_t[e] < rec[x].end) {
                if (count == 0 || ev_v[e] < mn) mn = ev_v[e];
                if (count == 0 || ev_v[e] > mx) mx = ev_v[e];
                count++;
                sum += ev_v[e];
            }
        FZ_CHECK(count > 0 && rec[x].agg.count == count);
        FZ_CHECK(rec[x].agg.min == mn && rec[x].agg.max == mx);
        i128 got = (i128)rec[x].agg.sum_hi * ((i128)1 << 64) + (i128)rec[x].agg.sum_lo;
        FZ_CHECK(got == sum);
    }
    nrec = nexp = 0;
}

static void check_state(ap_window_par *p)
{
    FZ_CHECK(ap_window_par_watermark(p) == m_G);
    FZ_CHECK(ap_window_par_accepted(p) == m_acc && ap_window_par_late(p) == m_late &&
             ap_window_par_emitted(p) == m_emitted);
    for (int i = 0; i < m_nw; i++)
        FZ_CHECK(p->workers[i].held == (size_t)nheld[i]);
}

static void check_inval(fz *f, const ap_window_desc *good, size_t slots)
{
    ap_window_par p, q;
    memset(&q, 0xA5, sizeof q);
    memcpy(&p, &q, sizeof p);
    uint8_t k = fz_u8(f);
    ap_window_desc d = *good;
    size_t nw = 1 + (size_t)(k >> 6), sl = slots, bytes = AP_WINDOW_PAR_BYTES(nw, slots);
    unsigned char *buf = pbuf;
    switch (k & 7) {
    case 0: d.kind = AP_WINDOW_KIND_SESSION; d.gap_ns = d.size_ns; break;
    case 1: nw = 0; break;
    case 2: sl = (size_t)ap_window_slots(good) - 1; break;
    case 3: bytes--; break;
    case 4: buf = NULL; break;
    case 5: buf = pbuf + 8; break;
    case 6: d.slide_ns = d.size_ns + 1 + fz_u8(f); d.kind = AP_WINDOW_KIND_HOPPING; break;
    default: nw = SIZE_MAX / 64 + fz_u8(f); break;
    }
    memset(pbuf, 0x3C, sizeof pbuf);
    FZ_CHECK(ap_window_par_init(&p, buf, bytes, &d, nw, sl) == AP_INVAL);
    FZ_CHECK(memcmp(&p, &q, sizeof p) == 0);
    for (size_t i = 0; i < sizeof pbuf; i++) FZ_CHECK(pbuf[i] == 0x3C);
}

static uint64_t pick_ts(fz *f, int worker)
{
    uint8_t sel = fz_u8(f);
    int64_t base = m_hasev[worker] ? m_max[worker] : 0;
    switch (sel & 7) {
    case 0: case 1: case 2: { /* around the worker's newest */
        i128 t = (i128)base + (int8_t)fz_u8(f) * (i128)(1 + (sel >> 3)) * (m_s > 64 ? m_s / 8 : 1);
        return t < 0 ? 0 : t > TSMAX ? (uint64_t)TSMAX : (uint64_t)t;
    }
    case 3: { /* around G */
        i128 t = (m_G == INT64_MIN || m_G == INT64_MAX ? base : m_G) + (int8_t)fz_u8(f);
        return t < 0 ? 0 : t > TSMAX ? (uint64_t)TSMAX : (uint64_t)t;
    }
    case 4: return fz_u16(f);
    case 5: return (uint64_t)TSMAX - fz_u8(f);
    case 6: return (uint64_t)TSMAX + 1 + fz_u8(f); /* AP_INVAL */
    default: return fz_val(f) & ((uint64_t)TSMAX | ((uint64_t)1 << 62));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    uint8_t c = fz_u8(&f);
    ap_window_desc d;
    memset(&d, 0, sizeof d);
    d.kind = (c & 1) ? AP_WINDOW_KIND_HOPPING : AP_WINDOW_KIND_TUMBLING;
    uint64_t s;
    switch ((c >> 1) & 3) {
    case 0: s = 1 + fz_u8(&f) % 32; break;
    case 1: s = 1 + fz_u8(&f); break;
    case 2: s = 1 + fz_u16(&f); break;
    default: s = (uint64_t)TSMAX / 8 - fz_u8(&f); break;
    }
    uint64_t r = d.kind == AP_WINDOW_KIND_HOPPING ? 1 + fz_u8(&f) % 4 : 1;
    uint64_t w = s * r;
    if (d.kind == AP_WINDOW_KIND_HOPPING && (c & 8)) w += fz_u8(&f) % s;
    d.size_ns = w;
    d.slide_ns = s;
    d.lateness_ns = (c & 16) ? (uint64_t)(fz_u8(&f) % 3) * s + fz_u8(&f) % s : 0;
    uint64_t need = ap_window_slots(&d);
    FZ_CHECK(need >= 2 && need <= MAXSL - 4);
    m_nw = 1 + (c >> 5) % MAXW;
    m_nsl = (size_t)need + fz_u8(&f) % 4;
    check_inval(&f, &d, m_nsl);

    ap_window_par par;
    FZ_CHECK(ap_window_par_init(&par, pbuf, AP_WINDOW_PAR_BYTES(m_nw, m_nsl), &d, (size_t)m_nw,
                                m_nsl) == AP_OK);
    cur = &par;
    m_w = (int64_t)w, m_s = (int64_t)s, m_L = (int64_t)d.lateness_ns;
    for (int i = 0; i < MAXW; i++) {
        m_wm[i] = INT64_MIN;
        m_hasev[i] = 0;
        nheld[i] = 0;
    }
    m_G = INT64_MIN;
    nev = nrec = nexp = 0;
    m_acc = m_late = m_emitted = 0;

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        int wk = (op >> 2) % m_nw;
        if (op % 8 < 5) { /* add */
            uint64_t ts = pick_ts(&f, wk);
            int64_t v = (op & 0x80) ? (int64_t)fz_u64(&f) : (int64_t)(int8_t)fz_u8(&f);
            if (ts <= (uint64_t)TSMAX && nev == MAXEV) continue; /* the model is full */
            ap_status st = ap_window_par_add(&par, (size_t)wk, ts, v, on_emit, NULL);
            if (ts > (uint64_t)TSMAX) {
                FZ_CHECK(st == AP_INVAL);
            } else {
                int64_t t = (int64_t)ts;
                int64_t klo = fl((i128)t - m_w, m_s) + 1, khi = fl(t, m_s);
                if ((i128)klo * m_s + m_w <= m_G) {
                    FZ_CHECK(st == AP_REJECTED);
                    m_late++;
                } else {
                    if (!m_hasev[wk] || t > m_max[wk]) {
                        m_max[wk] = t;
                        m_hasev[wk] = 1;
                        if (t - m_L > m_wm[wk]) {
                            m_wm[wk] = t - m_L;
                            model_close();
                        }
                    }
                    int full = 0;
                    for (int64_t k = klo; k <= khi; k++)
                        for (int j = 0; j < nheld[wk]; j++)
                            if (held[wk][j] != k && slot_of(held[wk][j]) == slot_of(k)) full = 1;
                    if (full) {
                        FZ_CHECK(st == AP_FULL);
                    } else {
                        FZ_CHECK(st == AP_OK);
                        for (int64_t k = klo; k <= khi; k++) {
                            FZ_CHECK((i128)k * m_s + m_w > m_G); /* not late */
                            int found = 0;
                            for (int j = 0; j < nheld[wk]; j++) found |= held[wk][j] == k;
                            if (!found) {
                                FZ_CHECK(nheld[wk] < (int)m_nsl);
                                held[wk][nheld[wk]++] = k;
                            }
                        }
                        ev_t[nev] = t, ev_v[nev] = v, nev++;
                        m_acc++;
                    }
                }
            }
        } else if (op % 8 < 7) { /* advance one worker */
            uint64_t wm;
            switch (op >> 5) {
            case 0: wm = AP_WINDOW_FLUSH; break;
            case 1: wm = fz_val(&f); break;
            default: {
                i128 t = (i128)(m_wm[wk] == INT64_MIN ? 0 : m_wm[wk]) + (int8_t)fz_u8(&f);
                wm = t < 0 ? 0 : (uint64_t)t;
            }
            }
            size_t n = ap_window_par_advance(&par, (size_t)wk, wm, on_emit, NULL);
            int64_t W = wm > (uint64_t)TSMAX ? INT64_MAX : (int64_t)wm;
            if (W > m_wm[wk]) m_wm[wk] = W;
            model_close();
            FZ_CHECK(n == (size_t)nexp);
        } else { /* bad calls change nothing */
            FZ_CHECK(ap_window_par_add(&par, (size_t)m_nw + (op >> 3), 1, 1, on_emit, NULL) ==
                     AP_INVAL);
            FZ_CHECK(ap_window_par_advance(&par, (size_t)m_nw + (op >> 3), AP_WINDOW_FLUSH,
                                           on_emit, NULL) == 0);
        }
        check_emitted();
        check_state(&par);
    }
    for (int i = 0; i < m_nw; i++) { /* end of stream: every worker */
        size_t n = ap_window_par_advance(&par, (size_t)i, AP_WINDOW_FLUSH, on_emit, NULL);
        m_wm[i] = INT64_MAX;
        model_close();
        FZ_CHECK(n == (size_t)nexp);
        check_emitted();
        check_state(&par);
    }
    for (int i = 0; i < m_nw; i++) FZ_CHECK(nheld[i] == 0 && par.workers[i].held == 0);
    ap_window_par_fini(&par);
    return 0;
}
