/* tests/fuzz/fuzz_prefetch.c -- libFuzzer harness for asyncpat/prefetch.h
 *
 * Input: 1..8 sets of init arguments (any depth and slot_size, NULL desc / start / buf,
 * misaligned buffers, sizes that overflow, for the AP_INVAL paths), then a
 * prefetcher of depth 1..8, slot_size 1..48, stride (default, small,
 * negative, huge) and fixed_stride, over a fake loader whose futures
 * complete when the input says (or at once, from an 8-bit plan over the
 * start calls) and which refuses keys (a residue class, or every key from
 * an "end of file" on: start returns NULL), then a single-threaded
 * sequence of gets (the held key again, the next in the stream, a few
 * strides ahead or back, a jump, or any key) through get futures polled by
 * hand with a counting waker and cancelled (before the first poll, while
 * waiting, after completion), and load completions, checked after every
 * step against a sequential model of the header (the ring's per-slot state
 * and key, the held slot and key, the stride, the counters):
 *   - init: AP_INVAL exactly as ERRORS says; then *pf and the buffer are
 *     untouched; a valid init writes nothing past AP_PREFETCH_BYTES and
 *     resolves stride 0 to 1
 *   - the ring: a get of the held key is served again (a hit), of the next
 *     key refills the held slot with the key depth strides ahead, anything
 *     else resets (stride = k - previous key unless fixed_stride) and
 *     starts k, k+s, ..., k+(depth-1)s; key arithmetic wraps
 *   - a get that completes AP_OK hands out the slot whose load of exactly
 *     that key polled READY (the loader's record and the slot's bytes say
 *     so); AP_REJECTED only for keys the loader refuses, slot_out untouched
 *   - counters: hits / waits / misses / resets exactly as the model, and
 *     gets == hits + waits + misses, started == completed + cancelled +
 *     loading, completed == used + wasted + ready, loading + ready <= depth
 *   - the load ledger: start() never gets a slot whose load is in flight,
 *     a load is never polled after READY or after its cancel, and never
 *     cancelled after READY or twice; loads ahead are kicked once with no
 *     waker; only the load the active get waits on ever holds its waker,
 *     and completing it wakes the get exactly once; start() sees the get's
 *     cx->now; after fini every started load is READY or cancelled
 */
#include "asyncpat/prefetch.h"
#include "fuzz_common.h"

#define MAXD 8
#define MAXS 48
#define MAXL 20000

/* ---- the fake loader ---- */
enum { L_PENDING = 1, L_READY, L_CANCELLED };
typedef struct lrec {
    uint64_t key;
    size_t slot;
    int fin;      /* L_* */
    int done;     /* the data is there: the next poll is READY */
    ap_waker waker;
    int polls;
} lrec;
static lrec ld[MAXL + 1];
static int nld;
typedef struct lfut { ap_future base; int id; } lfut;
static lfut lf[MAXD];
static int slot_load[MAXD]; /* id of the load last started in slot j, 0 if none */
static unsigned char *ring_base;
static size_t r_ssize, r_depth;
static uint64_t cur_now;
static uint64_t l_calls; /* start() calls, refused ones too */
static uint8_t iplan;    /* loads ready at once, by start() call number */
static uint64_t rmod, rrem, reof;
static int inflight;
static int l_ctx;

static int refused(uint64_t key)
{
    return (rmod && key % rmod == rrem) || key >= reof;
}

static ap_poll l_poll(ap_future *f, ap_cx *cx)
{
    lrec *r = &ld[((lfut *)(void *)f)->id];
    FZ_CHECK(r->fin == L_PENDING); /* never polled after READY or cancel */
    r->polls++;
    r->waker = cx->waker;
    if (!r->done) return AP_PENDING;
    r->fin = L_READY;
    r->waker = AP_WAKER_NONE;
    inflight--;
    return AP_READY;
}
static void l_cancel(ap_future *f)
{
    lrec *r = &ld[((lfut *)(void *)f)->id];
    FZ_CHECK(r->fin == L_PENDING); /* never after READY, never twice */
    r->fin = L_CANCELLED;
    r->waker = AP_WAKER_NONE;
    inflight--;
}
static ap_future *l_start(void *ctx, uint64_t key, void *slot, uint64_t now)
{
    FZ_CHECK(ctx == &l_ctx);
    FZ_CHECK(now == cur_now);
    uintptr_t d = (uintptr_t)slot - (uintptr_t)ring_base;
    FZ_CHECK(d % r_ssize == 0 && d / r_ssize < r_depth);
    size_t j = (size_t)(d / r_ssize);
    if (slot_load[j]) FZ_CHECK(ld[slot_load[j]].fin != L_PENDING);
    uint64_t call = l_calls++;
    if (refused(key)) return NULL;
    FZ_CHECK(nld < MAXL);
    int id = ++nld;
    ld[id] = (lrec){key, j, L_PENDING, (iplan >> (call % 8)) & 1, AP_WAKER_NONE, 0};
    slot_load[j] = id;
    memset(slot, (int)(key & 0xff), r_ssize);
    lf[j].base.poll = l_poll;
    lf[j].base.cancel = l_cancel;
    lf[j].id = id;
    inflight++;
    FZ_CHECK(inflight <= (int)r_depth);
    return &lf[j].base;
}

/* ---- the AP_INVAL paths ---- */

static void check_inval(fz *f)
{
    static _Alignas(64) unsigned char buf[1024 + 16];
    uint8_t k = fz_u8(f);
    ap_prefetch_desc d;
    memset(&d, 0, sizeof d);
    d.start = l_start;
    d.ctx = &l_ctx;
    d.depth = (k & 1) ? fz_size(f) : (size_t)(fz_u8(f) % 12);
    d.slot_size = (k & 2) ? fz_size(f) : (size_t)(fz_u8(f) % 60);
    d.stride = (int64_t)fz_val(f);
    d.fixed_stride = (k & 4) != 0;
    uint8_t how = fz_u8(f);
    unsigned char *b = buf;
    const ap_prefetch_desc *dp = &d;
    switch (how & 7) {
    case 1: b = NULL; break;
    case 2: b = buf + 1 + (how >> 4) % 7; break;
    case 3: dp = NULL; break;
    case 4: d.start = NULL; break;
    default: break;
    }
    const size_t rs = sizeof(struct ap__prefetch_rec), al = _Alignof(struct ap__prefetch_rec);
    unsigned __int128 body = (unsigned __int128)d.depth * d.slot_size;
    unsigned __int128 off = (body + al - 1) / al * al;
    unsigned __int128 need = off + (unsigned __int128)d.depth * rs;
    /* the bytes we say the buffer has: what is left of it, or (how & 8)
     * one byte less than needed when that fits */
    size_t give = b == NULL ? sizeof buf : sizeof buf - (size_t)(b - buf);
    if ((how & 8) && need > 0 && need <= give)
        give = (size_t)need - 1;
    int bad = dp == NULL || b == NULL || d.start == NULL || d.depth == 0 || d.slot_size == 0 ||
              (uintptr_t)b % al != 0 || body > SIZE_MAX ||
              (unsigned __int128)d.depth * rs > SIZE_MAX || off > SIZE_MAX || need > SIZE_MAX ||
              need > give; /* too small: AP_INVAL, not an overflow */
    ap_prefetch pf;
    fz_fill(&pf, sizeof pf);
    fz_fill(buf, sizeof buf);
    ap_status st = ap_prefetch_init(&pf, b, give, dp);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&pf, sizeof pf));
        FZ_CHECK(fz_untouched(buf, sizeof buf));
        return;
    }
    FZ_CHECK(st == AP_OK);
    FZ_CHECK((size_t)need == AP_PREFETCH_BYTES(d.depth, d.slot_size));
    FZ_CHECK(fz_untouched(buf, (size_t)body));
    FZ_CHECK(fz_untouched(buf + (size_t)need, sizeof buf - (size_t)need));
    FZ_CHECK(ap_prefetch_stride(&pf) == (d.stride ? d.stride : 1));
    ap_prefetch_stats s;
    ap_prefetch_stats_get(&pf, &s);
    FZ_CHECK(s.gets == 0 && s.started == 0 && s.loading == 0 && s.resets == 0);
    FZ_CHECK(ap_prefetch_slot(&pf, d.depth - 1) == buf + (d.depth - 1) * d.slot_size);
    ap_prefetch_fini(&pf);
}

/* ---- the model (the header's rules, restated) ---- */
enum { M_EMPTY, M_LOADING, M_READY };
typedef struct mrec { int state; uint64_t key; int used; int id; } mrec;
static mrec mr[MAXD];
static size_t m_cur, m_d;
static uint64_t m_cur_key, m_stride;
static int m_streaming, m_fixed;
static ap_prefetch_stats ms;
static uint64_t m_calls;

static void m_completed(mrec *r)
{
    r->state = M_READY;
    ms.loading--;
    ms.ready++;
    ms.completed++;
}
static void m_start(size_t i, uint64_t key, int kick)
{
    mrec *r = &mr[i];
    FZ_CHECK(r->state != M_LOADING);
    r->state = M_EMPTY;
    r->used = 0;
    r->key = key;
    m_calls++;
    if (refused(key)) return;
    r->state = M_LOADING;
    r->id = slot_load[i]; /* the loader's record of this start */
    FZ_CHECK(ld[r->id].key == key && ld[r->id].slot == i);
    ms.started++;
    ms.loading++;
    /* kicked: polled once with no waker (the get may poll it after) */
    if (kick) {
        FZ_CHECK(ld[r->id].polls >= 1);
        if (ld[r->id].done) m_completed(r);
    } else {
        FZ_CHECK(ld[r->id].polls <= 1);
    }
}
static void m_release(size_t i)
{
    mrec *r = &mr[i];
    if (r->state == M_LOADING) {
        FZ_CHECK(ld[r->id].fin == L_CANCELLED);
        ms.cancelled++;
        ms.loading--;
    } else if (r->state == M_READY && !r->used) {
        ms.wasted++;
        ms.ready--;
    }
    r->state = M_EMPTY;
    r->used = 0;
}
static void m_release_all(void)
{
    for (size_t i = 0; i < m_d; i++) m_release(i);
    m_streaming = 0;
}
static void m_begin(uint64_t key)
{
    ms.gets++;
    if (m_streaming && key == m_cur_key) {
        if (mr[m_cur].state == M_EMPTY) {
            ms.misses++;
            m_start(m_cur, key, 0);
        } else if (mr[m_cur].state == M_READY) {
            ms.hits++;
        } else {
            FZ_CHECK(0); /* the held slot is never left loading */
        }
        return;
    }
    if (m_streaming && key == m_cur_key + m_stride) {
        m_release(m_cur);
        m_start(m_cur, m_cur_key + (uint64_t)m_d * m_stride, 1);
        m_cur = (m_cur + 1) % m_d;
        m_cur_key = key;
        if (mr[m_cur].state == M_READY) ms.hits++;
        else if (mr[m_cur].state == M_EMPTY) { ms.misses++; m_start(m_cur, key, 0); }
        return;
    }
    if (m_streaming && !m_fixed) m_stride = key - m_cur_key;
    m_release_all();
    ms.resets++;
    ms.misses++;
    m_streaming = 1;
    m_cur = 0;
    m_cur_key = key;
    m_start(0, key, 0);
    for (size_t i = 1; i < m_d; i++) m_start(i, key + (uint64_t)i * m_stride, 1);
}

static int wakes, expwakes;
static void fz_wake(void *ctx) { FZ_CHECK(ctx == &wakes); wakes++; }

static ap_prefetch pf;
static _Alignas(64) unsigned char ring[AP_PREFETCH_BYTES(MAXD, MAXS) + 64];
static size_t r_need;

static void check_state(void)
{
    ap_prefetch_stats s;
    ap_prefetch_stats_get(&pf, &s);
    FZ_CHECK(s.gets == ms.gets && s.hits == ms.hits && s.waits == ms.waits);
    FZ_CHECK(s.misses == ms.misses && s.resets == ms.resets && s.started == ms.started);
    FZ_CHECK(s.completed == ms.completed && s.cancelled == ms.cancelled);
    FZ_CHECK(s.used == ms.used && s.wasted == ms.wasted);
    FZ_CHECK(s.loading == ms.loading && s.ready == ms.ready);
    FZ_CHECK(s.gets == s.hits + s.waits + s.misses);
    FZ_CHECK(s.started == s.completed + s.cancelled + s.loading);
    FZ_CHECK(s.completed == s.used + s.wasted + s.ready);
    FZ_CHECK(s.loading + s.ready <= m_d);
    FZ_CHECK((int)s.loading == inflight);
    FZ_CHECK(ap_prefetch_stride(&pf) == (int64_t)m_stride);
    FZ_CHECK(pf.streaming == (m_streaming != 0));
    if (m_streaming) FZ_CHECK(pf.cur == m_cur && pf.cur_key == m_cur_key);
    for (size_t i = 0; i < m_d; i++) {
        FZ_CHECK(pf.recs[i].state == (uint32_t)mr[i].state);
        if (mr[i].state != M_EMPTY) FZ_CHECK(pf.recs[i].key == mr[i].key);
        if (mr[i].state == M_LOADING) FZ_CHECK(ld[mr[i].id].fin == L_PENDING);
        if (mr[i].state == M_READY) FZ_CHECK(ld[mr[i].id].fin == L_READY);
        FZ_CHECK((pf.recs[i].used != 0) == (mr[i].state == M_READY && mr[i].used));
    }
    FZ_CHECK(l_calls == m_calls);
    FZ_CHECK(wakes == expwakes);
    FZ_CHECK(fz_untouched(ring + r_need, sizeof ring - r_need));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    for (int k = 1 + fz_u8(&f) % 8; k > 0; k--) check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_d = 1 + (size_t)(c % MAXD);
    r_ssize = 1 + (size_t)(fz_u8(&f) % MAXS);
    uint8_t sb = fz_u8(&f);
    static const int64_t strides[8] = {0, 1, 2, -1, -3, 7, INT64_MAX, INT64_MIN};
    int64_t stride = (sb & 0x80) ? (int64_t)fz_val(&f) : strides[sb & 7];
    m_fixed = (sb & 0x40) != 0;
    iplan = fz_u8(&f);
    uint8_t rb = fz_u8(&f);
    rmod = (rb & 7) < 2 ? 0 : (rb & 7) + 1;
    rrem = rmod ? (rb >> 3) % rmod : 0;
    reof = (rb & 0x80) ? fz_val(&f) : UINT64_MAX;
    if (reof == 0) reof = UINT64_MAX;
    cur_now = fz_val(&f);

    r_depth = m_d;
    ring_base = ring;
    r_need = AP_PREFETCH_BYTES(m_d, r_ssize);
    fz_fill(ring, sizeof ring);
    memset(slot_load, 0, sizeof slot_load);
    nld = 0;
    l_calls = m_calls = 0;
    inflight = 0;
    ap_prefetch_desc d = {.start = l_start, .ctx = &l_ctx, .depth = m_d, .slot_size = r_ssize,
                          .stride = stride, .fixed_stride = m_fixed != 0};
    FZ_CHECK(ap_prefetch_init(&pf, ring, sizeof ring, &d) == AP_OK);
    memset(mr, 0, sizeof mr);
    memset(&ms, 0, sizeof ms);
    m_cur = 0;
    m_cur_key = 0;
    m_stride = stride ? (uint64_t)stride : 1;
    m_streaming = 0;
    wakes = expwakes = 0;

    ap_prefetch_get_fut g;
    void *out = NULL;
    void *const SENT = (void *)(uintptr_t)0xdeadbeef;
    int active = 0, begun = 0, gdone = 0;
    uint64_t gkey = 0;
    ap_cx cx = {{fz_wake, &wakes}, 0, UINT64_MAX};

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        switch (op % 6) {
        case 0: case 1: { /* a new get (if none active), then poll it */
            if (!active) {
                uint8_t ks = fz_u8(&f);
                switch (ks % 8) {
                case 0: case 1: case 2: gkey = m_cur_key + m_stride; break;
                case 3: gkey = m_cur_key; break;
                case 4: gkey = m_cur_key + m_stride * (uint64_t)(int64_t)((int8_t)(ks & 0xf8) / 8); break;
                case 5: gkey = m_cur_key + (uint64_t)(int64_t)(int8_t)fz_u8(&f); break;
                case 6: gkey = fz_u8(&f); break;
                default: gkey = fz_val(&f); break;
                }
                out = SENT;
                ap_prefetch_get_fut_init(&g, &pf, gkey, &out);
                FZ_CHECK(ap_prefetch_get_status(&g) == AP_NOT_READY);
                active = 1;
                begun = 0;
                gdone = 0;
                if (op & 0x80) break; /* initialised, not yet polled */
            }
            /* fall through: poll */
        }
        /* fall through */
        case 2: { /* poll the active get */
            if (!active) break;
            uint8_t tk = fz_u8(&f);
            cur_now += tk & 0x0f;
            cx.now = cur_now;
            cx.deadline = UINT64_MAX;
            ap_poll r = ap_prefetch_get_poll(&g, &cx);
            ap_status st = ap_prefetch_get_status(&g);
            uint64_t h = ms.hits, mi = ms.misses;
            int first = !begun;
            if (first) { begun = 1; m_begin(gkey); }
            mrec *cr = &mr[m_cur];
            int pending = 0;
            if (cr->state == M_LOADING) {
                lrec *L = &ld[cr->id];
                int rd = L->done;
                FZ_CHECK(L->fin == (rd ? L_READY : L_PENDING));
                if (rd) m_completed(cr);
                else {
                    FZ_CHECK(L->fin == L_PENDING && L->waker.wake == fz_wake);
                }
                if (first && ms.misses == mi && ms.hits == h) {
                    if (rd) ms.hits++;
                    else ms.waits++;
                }
                pending = !rd;
            }
            if (pending) {
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY && out == SENT);
                break;
            }
            FZ_CHECK(r == AP_READY);
            active = 0;
            gdone = 1;
            if (cr->state == M_EMPTY) {
                FZ_CHECK(st == AP_REJECTED && out == SENT);
                FZ_CHECK(refused(gkey));
            } else {
                FZ_CHECK(st == AP_OK);
                if (!cr->used) { cr->used = 1; ms.used++; ms.ready--; }
                FZ_CHECK(out == ring + m_cur * r_ssize);
                /* the slot holds a READY load of exactly this key */
                lrec *L = &ld[slot_load[m_cur]];
                FZ_CHECK(L->key == gkey && L->fin == L_READY && L->slot == m_cur);
                for (size_t b = 0; b < r_ssize; b++)
                    FZ_CHECK(((unsigned char *)out)[b] == (gkey & 0xff));
            }
            /* done: more polls and a cancel change nothing */
            FZ_CHECK(ap_prefetch_get_poll(&g, &cx) == AP_READY);
            ap_prefetch_get_cancel(&g);
            FZ_CHECK(ap_prefetch_get_status(&g) == st);
            break;
        }
        case 3: { /* complete a load (in slot j, or all), waking its waiter */
            uint8_t j8 = fz_u8(&f);
            for (size_t j = 0; j < m_d; j++) {
                if (!(j8 & 0x80) && j != j8 % m_d) continue;
                int id = slot_load[j];
                if (!id || ld[id].fin != L_PENDING || ld[id].done) continue;
                ld[id].done = 1;
                if (ld[id].waker.wake) {
                    /* only the load the active get waits on has a waker */
                    FZ_CHECK(active && begun && m_cur == j && mr[j].state == M_LOADING);
                    expwakes++;
                    ap_waker_wake(ld[id].waker);
                }
            }
            break;
        }
        case 4: /* cancel the active get (or a finished one) */
            if (active) {
                ap_prefetch_get_cancel(&g);
                FZ_CHECK(ap_prefetch_get_status(&g) == AP_CANCELED && out == SENT);
                if (begun) m_release(m_cur);
                active = 0;
                ap_prefetch_get_cancel(&g);
                FZ_CHECK(ap_prefetch_get_status(&g) == AP_CANCELED);
                FZ_CHECK(ap_prefetch_get_poll(&g, &cx) == AP_READY);
            } else if (gdone && (op & 0x80)) {
                ap_status before = ap_prefetch_get_status(&g);
                ap_prefetch_get_cancel(&g);
                FZ_CHECK(ap_prefetch_get_status(&g) == before);
            }
            break;
        default: /* the plans change */
            iplan = fz_u8(&f);
            break;
        }
        check_state();
    }
    if (active) {
        ap_prefetch_get_cancel(&g);
        if (begun) m_release(m_cur);
        check_state();
    }
    ap_prefetch_fini(&pf);
    m_release_all();
    check_state();
    FZ_CHECK(ms.loading == 0 && ms.ready == 0 && inflight == 0);
    for (int id = 1; id <= nld; id++) FZ_CHECK(ld[id].fin == L_READY || ld[id].fin == L_CANCELLED);
    /* the slots hold only what the loader wrote */
    return 0;
}
