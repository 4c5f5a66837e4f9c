/* tests/fuzz/fuzz_connpool.c -- libFuzzer harness for asyncpat/connpool.h
 *
 * Input: 1..8 sets of init arguments (any max_size, conn_size, min_idle, buffer size,
 * NULL / misaligned / near-the-top buffers, NULL desc, ops, open or close,
 * for the AP_INVAL paths), then a pool of max_size 1..6 over a fuzz-driven
 * factory (open answers AP_OK or any status, even out of range, from an
 * 8-entry plan, and writes an app_error that depends on the status and the
 * open's number; validate true / false from
 * an 8-bit plan, or no validate at all), lifetime and idle timeouts 0,
 * small or huge, min_idle, and a single-threaded sequence of try_checkout,
 * return (broken or not; of held, idle, granted, free, foreign and
 * misaligned pointers), evict, fill, checkout futures (up to 8, polled and
 * cancelled by hand with a counting waker), close and a fuzz-driven
 * clock (monotone, with some operations given an earlier `now`), checked
 * after every step against a sequential model of the header (idle and free
 * stacks, slot states and stamps, the FIFO queue, the counters):
 *   - init: AP_INVAL exactly as its comment says (also for sizes that
 *     overflow or a buffer that would wrap), then *p and the buffer are
 *     untouched; a valid init writes nothing past AP_CONNPOOL_BYTES
 *   - bounded: the factory never has more than max_size connections open,
 *     live == opened - closed <= max_size after every step
 *   - exclusive: every lend hands out a connection the factory has open
 *     and nobody else holds; a return of anything not HELD (double,
 *     foreign, misaligned, idle, granted, free) is AP_INVAL and changes
 *     nothing (the pool struct and the whole buffer compare equal)
 *   - never lent expired or refused: exact at now == stamp + limit (over),
 *     a now below the stamp counts as not expired; validate runs on every
 *     lend of an existing connection and never on a fresh one
 *   - failed opens are reported as AP_EXHAUSTED whatever the factory said,
 *     with the factory's status and app_error beside it (try_checkout's and
 *     fill's @fail, the future's ap_connpool_checkout_failure; @fail
 *     untouched on any other status; stats' last_open_error and
 *     last_app_error the last failure's), counted, and free their slot;
 *     *app_error is 0 on entry to open
 *   - FIFO hand-off: try_checkout and a first poll say AP_EMPTY while
 *     futures are queued; grants (and close's wakes) follow the queue, the
 *     waker log equals the model's; cancel after a grant passes it on
 *   - close: idle ones closed at once, queued futures AP_CLOSED, a slot
 *     granted before close completes AP_CLOSED, lent ones closed on return
 *   - the factory ledger: every connection open() made is passed to
 *     close() exactly once by the end (fini), its bytes untouched by the pool
 *   - stats (live, idle, in_use, opening, waiters and the counters) and the
 *     internal idle / free stacks and slot states equal the model's
 */
#include "asyncpat/connpool.h"
#include "fuzz_common.h"

#define NF 8
#define MAXM 6
#define MAXC 24
#define MAXID 20000

/* ---- the factory and its ledger ---- */
static unsigned char *fac_base;
static size_t fac_csize, fac_max;
static uint32_t fac_open_id[MAXM]; /* id open in slot i, 0 if none */
static unsigned char fac_closes[MAXID + 1];
static uint32_t fac_serial;
static size_t fac_live, fac_peak;
static uint64_t fac_opens, fac_vals, fac_closes_n;
static ap_status oplan[8];
static uint8_t vplan;
static int fac_ctx;

static size_t fac_idx(void *conn)
{
    uintptr_t d = (uintptr_t)conn - (uintptr_t)fac_base;
    FZ_CHECK(d % fac_csize == 0 && d / fac_csize < fac_max);
    return (size_t)(d / fac_csize);
}
static ap_status plan_open(uint64_t k) { return oplan[k % 8]; }
static bool plan_val(uint64_t k) { return (vplan >> (k % 8)) & 1; }

/* the app_error the factory writes for its k-th open, failing with st */
static int plan_app(uint64_t k, ap_status st)
{
    return (k & 3) == 0 ? 0 : (int)st * 1000 - (int)(k % 97) * ((k & 4) ? -1 : 1);
}

static ap_status fac_open(void *ctx, void *conn, int *app_error)
{
    FZ_CHECK(ctx == &fac_ctx);
    FZ_CHECK(*app_error == 0);
    size_t i = fac_idx(conn);
    FZ_CHECK(fac_open_id[i] == 0);
    uint64_t k = fac_opens++;
    ap_status st = plan_open(k);
    *app_error = plan_app(k, st); /* also on success: never reported then */
    if (st != AP_OK) {
        memset(conn, 0x5c, fac_csize); /* a failed open may scribble */
        return st;
    }
    FZ_CHECK(fac_serial < MAXID);
    uint32_t id = ++fac_serial;
    fac_open_id[i] = id;
    memset(conn, (int)(id & 0xff), fac_csize);
    fac_live++;
    FZ_CHECK(fac_live <= fac_max);
    if (fac_live > fac_peak) fac_peak = fac_live;
    return AP_OK;
}
static void fac_check_bytes(void *conn, size_t i)
{
    const unsigned char *c = (const unsigned char *)conn;
    for (size_t b = 0; b < fac_csize; b++) FZ_CHECK(c[b] == (fac_open_id[i] & 0xff));
}
static void fac_close(void *ctx, void *conn)
{
    FZ_CHECK(ctx == &fac_ctx);
    size_t i = fac_idx(conn);
    uint32_t id = fac_open_id[i];
    FZ_CHECK(id != 0);
    fac_check_bytes(conn, i);
    FZ_CHECK(fac_closes[id] == 0);
    fac_closes[id] = 1;
    fac_open_id[i] = 0;
    fac_live--;
    fac_closes_n++;
}
static bool fac_validate(void *ctx, void *conn)
{
    FZ_CHECK(ctx == &fac_ctx);
    size_t i = fac_idx(conn);
    FZ_CHECK(fac_open_id[i] != 0);
    fac_check_bytes(conn, i);
    return plan_val(fac_vals++);
}

/* ---- the AP_INVAL paths ---- */

static ap_status dummy_open(void *c, void *x, int *e) { (void)c; (void)x; (void)e; return AP_OK; }
static void dummy_close(void *c, void *x) { (void)c; (void)x; }

static void check_inval(fz *f)
{
    static _Alignas(64) unsigned char buf[1024 + 16];
    uint8_t k = fz_u8(f);
    ap_connpool_desc d;
    memset(&d, 0, sizeof d);
    d.max_size = (k & 1) ? fz_size(f) : (size_t)(fz_u8(f) % 10);
    d.conn_size = (k & 2) ? fz_size(f) : (size_t)(fz_u8(f) % 40);
    d.min_idle = (k & 4) ? fz_size(f) : (size_t)(fz_u8(f) % 10);
    d.max_lifetime_ns = fz_val(f);
    d.idle_timeout_ns = fz_val(f);
    size_t bsz = (k & 8) ? fz_size(f) : (size_t)fz_u16(f) % 1100;
    uint8_t how = fz_u8(f);
    unsigned char *b = buf;
    ap_connpool_ops ops = {dummy_open, dummy_close, NULL, NULL};
    const ap_connpool_desc *dp = &d;
    const ap_connpool_ops *op = &ops;
    switch (how & 15) {
    case 1: b = NULL; break;
    case 2: b = buf + 1 + (how >> 4) % 7; break; /* misaligned */
    case 3: b = (unsigned char *)(UINTPTR_MAX - (uintptr_t)fz_u16(f) * 8 - 7); break;
    case 4: dp = NULL; break;
    case 5: op = NULL; break;
    case 6: ops.open = NULL; break;
    case 7: ops.close = NULL; break;
    default: break;
    }
    uintptr_t bu = (uintptr_t)b;
    unsigned __int128 body = (unsigned __int128)d.max_size * d.conn_size;
    unsigned __int128 bodya = (body + 7) / 8 * 8;
    unsigned __int128 need = bodya + (unsigned __int128)d.max_size * sizeof(ap__connpool_slot);
    int bad = dp == NULL || op == NULL || b == NULL || ops.open == NULL || ops.close == NULL ||
              d.max_size == 0 || d.max_size > 0x7fffffff || d.conn_size == 0 ||
              d.min_idle > d.max_size || bu % 8 != 0 || body > SIZE_MAX || bodya > SIZE_MAX ||
              need > SIZE_MAX || bsz < need || need - 1 > (unsigned __int128)(UINTPTR_MAX - bu);
    /* a valid init writes the bookkeeping: only when it fits */
    if (!bad && (b != buf || need > 1024)) return;
    ap_connpool p;
    fz_fill(&p, sizeof p);
    fz_fill(buf, sizeof buf);
    ap_status st = ap_connpool_init(&p, b, bsz, dp, op);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&p, sizeof p));
        FZ_CHECK(fz_untouched(buf, sizeof buf));
        return;
    }
    FZ_CHECK(st == AP_OK);
    FZ_CHECK(fz_untouched(buf, (size_t)body)); /* slots not written */
    FZ_CHECK(fz_untouched(buf + (size_t)need, sizeof buf - (size_t)need));
    ap_connpool_stats s;
    ap_connpool_stats_get(&p, &s);
    FZ_CHECK(s.max_size == d.max_size && s.live == 0 && s.idle == 0 && s.opened == 0);
    FZ_CHECK(!ap_connpool_is_closed(&p));
    void *c = NULL;
    FZ_CHECK(ap_connpool_try_checkout(&p, &c, 0, NULL) == AP_OK && c == buf);
    FZ_CHECK(ap_connpool_return(&p, c, false, 0) == AP_OK);
    FZ_CHECK(ap_connpool_return(&p, c, false, 0) == AP_INVAL);
    ap_connpool_fini(&p);
}

/* ---- the model ---- */
enum { S_FREE, S_IDLE, S_HELD, S_GCONN, S_GSLOT };
static int mst[MAXM];
static uint64_t mcreated[MAXM], midle[MAXM];
static size_t istk[MAXM], isp, fstk[MAXM], fsp; /* tops at [sp - 1] */
static size_t m_max, m_min_idle;
static uint64_t m_life, m_idle_to;
static int m_closed, m_hasval;
static ap_connpool_stats ms;
static uint64_t m_opens, m_vals;
static ap_connpool_fail m_fail; /* the model's last failed open */

typedef struct mfut {
    int live, polled, queued, granted, fresh, closedq;
    size_t gslot;
    int expwakes;
} mfut;
static mfut mf[NF];
static int q[NF], qlen;
static int wlog[4096], wlen, explog[4096], explen;
static int wakes[NF];
static void fz_wake(void *ctx)
{
    int i = (int)(intptr_t)ctx;
    wakes[i]++;
    if (wlen < 4096) wlog[wlen++] = i;
}

static void q_remove(int i)
{
    int k = 0;
    for (int j = 0; j < qlen; j++)
        if (q[j] != i) q[k++] = q[j];
    FZ_CHECK(k == qlen - 1);
    qlen = k;
}

static int m_over_life(size_t i, uint64_t now)
{
    return m_life != 0 && now >= mcreated[i] && now - mcreated[i] >= m_life;
}
static int m_expired(size_t i, uint64_t now)
{
    return m_over_life(i, now) ||
           (m_idle_to != 0 && now >= midle[i] && now - midle[i] >= m_idle_to);
}
static void m_unreserve(size_t i) { mst[i] = S_FREE; fstk[fsp++] = i; }
static void m_close_conn(size_t i) { ms.closed++; ms.live--; (void)i; }

/* take an idle connection (1) or reserve a free slot (2); 0 if neither */
static int m_take(size_t *i)
{
    if (isp) { *i = istk[--isp]; ms.idle--; return 1; }
    if (fsp) { *i = fstk[--fsp]; return 2; }
    return 0;
}

static void m_dispatch(void)
{
    while (qlen && !m_closed) {
        size_t i;
        int t = m_take(&i);
        if (!t) break;
        int h = q[0];
        mf[h].granted = 1;
        mf[h].fresh = t == 2;
        mf[h].gslot = i;
        mf[h].queued = 0;
        mf[h].expwakes++;
        mst[i] = t == 2 ? S_GSLOT : S_GCONN;
        if (explen < 4096) explog[explen++] = h;
        q_remove(h);
    }
}

static ap_status m_open(size_t i, uint64_t now)
{
    uint64_t k = m_opens++;
    ap_status st = plan_open(k);
    if (st == AP_OK) {
        ms.opened++;
        ms.live++;
        mcreated[i] = midle[i] = now;
        return AP_OK;
    }
    ms.open_failures++;
    m_fail = (ap_connpool_fail){st, plan_app(k, st), false};
    ms.last_open_error = m_fail.error;
    ms.last_app_error = m_fail.app_error;
    m_unreserve(i);
    m_dispatch();
    return AP_EXHAUSTED;
}

/* lend slot i (a connection taken, or a reserved slot when fresh) */
static ap_status m_lend(size_t i, int fresh, uint64_t now, size_t *out)
{
    for (;;) {
        if (fresh) {
            ap_status st = m_open(i, now);
            if (st == AP_OK) { mst[i] = S_HELD; *out = i; }
            return st;
        }
        int exp = m_expired(i, now);
        if (!exp && (!m_hasval || plan_val(m_vals++))) {
            mst[i] = S_HELD;
            *out = i;
            return AP_OK;
        }
        m_close_conn(i);
        if (exp) ms.expired++;
        else ms.validate_failures++;
        if (m_closed) {
            m_unreserve(i);
            m_dispatch();
            return AP_CLOSED;
        }
        if (isp) {
            size_t t = istk[--isp];
            ms.idle--;
            m_unreserve(i);
            i = t;
            m_dispatch();
        } else {
            fresh = 1;
        }
    }
}

static ap_status m_try(uint64_t now, size_t *out)
{
    if (m_closed) return AP_CLOSED;
    if (qlen) return AP_EMPTY;
    size_t i;
    int t = m_take(&i);
    if (!t) return AP_EMPTY;
    return m_lend(i, t == 2, now, out);
}

/* unidle (all or expired at now) then retire, as the header orders it */
static size_t m_unidle_retire(uint64_t now, int all, int expired)
{
    size_t rem[MAXM], k = 0, keep[MAXM], kk = 0;
    for (size_t j = isp; j-- > 0;) { /* from the top */
        size_t i = istk[j];
        if (all || m_expired(i, now)) rem[k++] = i;
        else keep[kk++] = i;
    }
    isp = 0;
    for (size_t j = kk; j-- > 0;) istk[isp++] = keep[j];
    ms.idle -= k;
    for (size_t j = k; j-- > 0;) { /* the chain: last removed first */
        m_close_conn(rem[j]);
        if (expired) ms.expired++;
        m_unreserve(rem[j]);
    }
    return k;
}

static ap_connpool p;
static _Alignas(64) unsigned char pbuf[AP_CONNPOOL_BYTES(MAXM, MAXC) + 64];
static size_t m_need;

static void check_state(ap_connpool_checkout_fut *fut)
{
    ap_connpool_stats s;
    ap_connpool_stats_get(&p, &s);
    size_t idle = 0, held = 0, gconn = 0, gslot = 0;
    for (size_t i = 0; i < m_max; i++) {
        idle += mst[i] == S_IDLE;
        held += mst[i] == S_HELD;
        gconn += mst[i] == S_GCONN;
        gslot += mst[i] == S_GSLOT;
    }
    FZ_CHECK(idle == isp && idle == ms.idle);
    FZ_CHECK(ms.live == idle + held + gconn);
    FZ_CHECK(s.max_size == m_max);
    FZ_CHECK(s.live == ms.live && s.idle == ms.idle);
    FZ_CHECK(s.in_use == held + gconn && s.opening == gslot);
    FZ_CHECK(s.waiters == (size_t)qlen);
    FZ_CHECK(s.opened == ms.opened && s.closed == ms.closed);
    FZ_CHECK(s.live == s.opened - s.closed && s.live <= m_max);
    FZ_CHECK(s.open_failures == ms.open_failures);
    FZ_CHECK(s.validate_failures == ms.validate_failures);
    FZ_CHECK(s.expired == ms.expired && s.broken == ms.broken);
    FZ_CHECK(s.last_open_error == ms.last_open_error && s.last_app_error == ms.last_app_error);
    FZ_CHECK(ap_connpool_is_closed(&p) == (m_closed != 0));
    /* the factory agrees */
    FZ_CHECK(fac_live == ms.live && fac_closes_n == ms.closed);
    FZ_CHECK(fac_opens == m_opens && fac_vals == m_vals);
    for (size_t i = 0; i < m_max; i++)
        FZ_CHECK((fac_open_id[i] != 0) == (mst[i] == S_IDLE || mst[i] == S_HELD || mst[i] == S_GCONN));
    /* the stacks and slot states, exactly */
    uint32_t t = p.idle_top;
    for (size_t j = isp; j-- > 0;) {
        FZ_CHECK(t == istk[j] + 1);
        FZ_CHECK(p.slots[istk[j]].state == AP__CONNPOOL_IDLE);
        FZ_CHECK(p.slots[istk[j]].idle_ns == midle[istk[j]]);
        FZ_CHECK(p.slots[istk[j]].created_ns == mcreated[istk[j]]);
        t = p.slots[t - 1].next;
    }
    FZ_CHECK(t == 0);
    t = p.free_top;
    for (size_t j = fsp; j-- > 0;) {
        FZ_CHECK(t == fstk[j] + 1);
        t = p.slots[t - 1].next;
    }
    FZ_CHECK(t == 0);
    for (size_t i = 0; i < m_max; i++) {
        static const uint32_t want[] = {AP__CONNPOOL_FREE, AP__CONNPOOL_IDLE, AP__CONNPOOL_HELD,
                                        AP__CONNPOOL_GRANTED, AP__CONNPOOL_OPENING};
        FZ_CHECK(p.slots[i].state == want[mst[i]]);
    }
    FZ_CHECK(fz_untouched(pbuf + m_need, sizeof pbuf - m_need));
    FZ_CHECK(wlen == explen && memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == mf[i].expwakes);
        if (mf[i].live) {
            FZ_CHECK(ap_connpool_checkout_status(&fut[i]) == AP_NOT_READY);
            FZ_CHECK((AP_ATOMIC_LOAD(&fut[i].grant.granted, memory_order_relaxed) != 0) ==
                     (mf[i].granted != 0));
            if (mf[i].granted) FZ_CHECK(fut[i].slot == mf[i].gslot && fut[i].fresh == (mf[i].fresh != 0));
        }
    }
}

static ap_status pick_status(uint8_t b)
{
    static const ap_status s[8] = {AP_OK, AP_OK, AP_OK, AP_OK, AP_REJECTED, AP_NOMEM, AP_EMPTY, AP_CLOSED};
    return (b & 0x80) ? (ap_status)(b & 0x0f) : s[b & 7];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    for (int k = 1 + fz_u8(&f) % 8; k > 0; k--) check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_max = 1 + (size_t)(c % MAXM);
    fac_csize = 1 + (size_t)(fz_u8(&f) % MAXC);
    m_min_idle = (size_t)(fz_u8(&f) % (m_max + 1));
    static const uint64_t lims[8] = {0, 0, 1, 2, 5, 10, 100, UINT64_MAX};
    uint8_t l = fz_u8(&f);
    m_life = (l & 0x80) ? fz_val(&f) : lims[l & 7];
    m_idle_to = (l & 0x40) ? fz_val(&f) : lims[(l >> 3) & 7];
    for (int j = 0; j < 8; j++) oplan[j] = pick_status(fz_u8(&f));
    vplan = fz_u8(&f);
    m_hasval = (c & 0x40) != 0;
    uint64_t now = (c & 0x80) ? fz_val(&f) : fz_u8(&f);

    fac_base = pbuf;
    fac_max = m_max;
    memset(fac_open_id, 0, sizeof fac_open_id);
    memset(fac_closes, 0, sizeof fac_closes);
    fac_serial = 0;
    fac_live = fac_peak = 0;
    fac_opens = fac_vals = fac_closes_n = 0;
    fz_fill(pbuf, sizeof pbuf);
    m_need = AP_CONNPOOL_BYTES(m_max, fac_csize);
    ap_connpool_desc d = {.max_size = m_max, .conn_size = fac_csize, .min_idle = m_min_idle,
                          .max_lifetime_ns = m_life, .idle_timeout_ns = m_idle_to};
    ap_connpool_ops ops = {fac_open, fac_close, m_hasval ? fac_validate : NULL, &fac_ctx};
    FZ_CHECK(ap_connpool_init(&p, pbuf, m_need, &d, &ops) == AP_OK);

    memset(mst, 0, sizeof mst);
    memset(&ms, 0, sizeof ms);
    ms.max_size = m_max;
    isp = fsp = 0;
    for (size_t i = m_max; i-- > 0;) fstk[fsp++] = i;
    m_closed = 0;
    m_opens = m_vals = 0;
    m_fail = (ap_connpool_fail){AP_OK, 0, false};
    memset(mf, 0, sizeof mf);
    memset(wakes, 0, sizeof wakes);
    qlen = 0;
    wlen = explen = 0;

    ap_connpool_checkout_fut fut[NF];
    void *outp[NF];
    ap_cx cx[NF];
    void *const SENT = (void *)(uintptr_t)0xdeadbeef;
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
    static ap_connpool snap_p;
    static unsigned char snap_b[sizeof pbuf];

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        /* the clock: advance, and sometimes give this op an earlier now */
        uint8_t tk = fz_u8(&f);
        uint64_t dt = (tk & 0x80) ? fz_val(&f) : (uint64_t)(tk & 0x0f);
        now = now > UINT64_MAX - dt ? UINT64_MAX : now + dt;
        uint64_t opnow = (tk & 0x70) == 0x70 ? now - (now < 3 ? now : 3) : now;
        switch (op % 9) {
        case 0: { /* try_checkout */
            void *o = SENT;
            ap_connpool_fail why = {(ap_status)99, 0x5a5a, false};
            ap_status st = ap_connpool_try_checkout(&p, &o, opnow, (op & 0x80) ? NULL : &why);
            size_t idx = 0;
            ap_status e = m_try(opnow, &idx);
            FZ_CHECK(st == e);
            if (e == AP_EXHAUSTED && !(op & 0x80))
                FZ_CHECK(why.error == m_fail.error && why.app_error == m_fail.app_error);
            else
                FZ_CHECK(why.error == (ap_status)99 && why.app_error == 0x5a5a);
            if (e == AP_OK) FZ_CHECK(o == pbuf + idx * fac_csize);
            else FZ_CHECK(o == SENT);
            break;
        }
        case 1: case 2: { /* return */
            uint8_t s = fz_u8(&f);
            size_t j = fz_u8(&f) % m_max;
            unsigned char *ptr;
            switch (s % 8) {
            case 0: case 1: case 2: case 3:
                ptr = pbuf + j * fac_csize;
                for (size_t k2 = 0; k2 < m_max; k2++) {
                    size_t x = (j + k2) % m_max;
                    if (mst[x] == S_HELD) { ptr = pbuf + x * fac_csize; break; }
                }
                break;
            case 4: ptr = pbuf + j * fac_csize; break;
            case 5: ptr = pbuf + j * fac_csize + 1 + (s >> 3) % fac_csize; break;
            case 6: ptr = (s & 8) ? (unsigned char *)((uintptr_t)pbuf - 1 - (s >> 4)) : pbuf + m_max * fac_csize + (s >> 4); break;
            default: ptr = (unsigned char *)(uintptr_t)((s & 8) ? UINTPTR_MAX - (s >> 4) : (s >> 4)); break;
            }
            int broken = (s >> 3) & 1;
            if (s & 0x40) broken = (op >> 7) & 1;
            uintptr_t dd = (uintptr_t)ptr - (uintptr_t)pbuf;
            int inarr = dd < m_max * fac_csize && dd % fac_csize == 0;
            size_t idx = inarr ? dd / fac_csize : 0;
            memcpy(&snap_p, &p, sizeof p);
            memcpy(snap_b, pbuf, sizeof pbuf);
            ap_status st = ap_connpool_return(&p, ptr, broken, opnow);
            if (inarr && mst[idx] == S_HELD) {
                FZ_CHECK(st == AP_OK);
                if (broken || m_closed || m_over_life(idx, opnow)) {
                    int exp = !broken && !m_closed;
                    if (broken) ms.broken++;
                    m_close_conn(idx);
                    if (exp) ms.expired++;
                    m_unreserve(idx);
                } else {
                    midle[idx] = opnow;
                    mst[idx] = S_IDLE;
                    istk[isp++] = idx;
                    ms.idle++;
                }
                m_dispatch();
            } else {
                FZ_CHECK(st == AP_INVAL);
                FZ_CHECK(memcmp(&snap_p, &p, sizeof p) == 0);
                FZ_CHECK(memcmp(snap_b, pbuf, sizeof pbuf) == 0);
            }
            break;
        }
        case 3: { /* evict */
            size_t k = ap_connpool_evict(&p, opnow);
            size_t e = m_unidle_retire(opnow, 0, 1);
            FZ_CHECK(k == e);
            if (e) m_dispatch();
            break;
        }
        case 4: { /* fill, or the plans change, or try_checkout(NULL) */
            if ((op & 0xc0) == 0xc0) {
                oplan[fz_u8(&f) & 7] = pick_status(fz_u8(&f));
                vplan = fz_u8(&f);
                break;
            }
            if ((op & 0xc0) == 0x80) {
                memcpy(&snap_p, &p, sizeof p);
                memcpy(snap_b, pbuf, sizeof pbuf);
                FZ_CHECK(ap_connpool_try_checkout(&p, NULL, opnow, NULL) == AP_INVAL);
                FZ_CHECK(ap_connpool_checkout_wait(&p, NULL, 0, NULL) == AP_INVAL);
                FZ_CHECK(memcmp(&snap_p, &p, sizeof p) == 0);
                FZ_CHECK(memcmp(snap_b, pbuf, sizeof pbuf) == 0);
                break;
            }
            ap_connpool_fail why = {(ap_status)99, 0x5a5a, false};
            ap_status st = ap_connpool_fill(&p, opnow, (op & 0x20) ? NULL : &why);
            ap_status e = AP_OK;
            for (size_t r = 0; r < m_max; r++) {
                if (m_closed) { e = AP_CLOSED; break; }
                if (!(ms.idle < m_min_idle && !qlen && fsp)) { e = AP_OK; break; }
                size_t x = fstk[--fsp];
                mst[x] = S_GSLOT; /* opening */
                e = m_open(x, opnow);
                if (e != AP_OK) break;
                mst[x] = S_IDLE;
                istk[isp++] = x;
                ms.idle++;
                m_dispatch();
            }
            FZ_CHECK(st == e);
            if (e == AP_EXHAUSTED && !(op & 0x20))
                FZ_CHECK(why.error == m_fail.error && why.app_error == m_fail.app_error);
            else
                FZ_CHECK(why.error == (ap_status)99 && why.app_error == 0x5a5a);
            break;
        }
        case 5: case 6: { /* checkout future: init (if free) + poll */
            if (!mf[i].live) {
                outp[i] = SENT;
                ap_connpool_checkout_fut_init(&fut[i], &p, &outp[i]);
                mf[i] = (mfut){1, 0, 0, 0, 0, 0, 0, mf[i].expwakes};
                FZ_CHECK(ap_connpool_checkout_status(&fut[i]) == AP_NOT_READY);
            }
            cx[i].now = opnow;
            ap_poll r = ap_connpool_checkout_poll(&fut[i], &cx[i]);
            ap_status st = ap_connpool_checkout_status(&fut[i]);
            ap_status e = AP_NOT_READY;
            size_t idx = 0;
            int done = 0;
            if (!mf[i].polled) {
                mf[i].polled = 1;
                e = m_try(opnow, &idx);
                if (e != AP_EMPTY) {
                    done = 1;
                } else {
                    mf[i].queued = 1;
                    q[qlen++] = i;
                    m_dispatch();
                    e = AP_NOT_READY;
                }
            } else if (!mf[i].granted && !m_closed) {
                m_dispatch(); /* the re-poll's own grant pass */
            }
            if (!done) {
                if (mf[i].granted) {
                    if (mf[i].fresh && m_closed) {
                        m_unreserve(mf[i].gslot);
                        e = AP_CLOSED;
                    } else {
                        e = m_lend(mf[i].gslot, mf[i].fresh, opnow, &idx);
                    }
                    done = 1;
                } else if (m_closed) {
                    e = AP_CLOSED;
                    done = 1;
                } else {
                    FZ_CHECK(mf[i].queued);
                }
            }
            if (done) {
                FZ_CHECK(r == AP_READY && st == e);
                if (e == AP_OK) FZ_CHECK(outp[i] == pbuf + idx * fac_csize);
                else FZ_CHECK(outp[i] == SENT);
                ap_connpool_fail why = ap_connpool_checkout_failure(&fut[i]);
                if (e == AP_EXHAUSTED)
                    FZ_CHECK(why.error == m_fail.error && why.app_error == m_fail.app_error);
                else
                    FZ_CHECK(why.error == AP_OK && why.app_error == 0);
                mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
            } else {
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY && outp[i] == SENT);
                FZ_CHECK(ap_connpool_checkout_failure(&fut[i]).error == AP_OK);
            }
            break;
        }
        case 7: /* cancel: before the first poll, queued, granted, or done */
            if (mf[i].live) {
                ap_connpool_checkout_cancel(&fut[i]);
                FZ_CHECK(ap_connpool_checkout_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(outp[i] == SENT);
                if (mf[i].polled) {
                    if (mf[i].queued) q_remove(i);
                    if (mf[i].granted) {
                        size_t x = mf[i].gslot;
                        if (mf[i].fresh) {
                            m_unreserve(x);
                        } else if (m_closed) {
                            m_close_conn(x);
                            m_unreserve(x);
                        } else {
                            mst[x] = S_IDLE;
                            istk[isp++] = x;
                            ms.idle++;
                        }
                    }
                    m_dispatch();
                }
                mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
                ap_connpool_checkout_cancel(&fut[i]); /* idempotent */
                FZ_CHECK(ap_connpool_checkout_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_connpool_checkout_poll(&fut[i], &cx[i]) == AP_READY);
            } else if (op & 0x80) {
                ap_status before = ap_connpool_checkout_status(&fut[i]);
                if (before != AP_NOT_READY) {
                    ap_connpool_checkout_cancel(&fut[i]);
                    FZ_CHECK(ap_connpool_checkout_status(&fut[i]) == before);
                }
            }
            break;
        default: /* close (rarely) */
            if (!(op & 0x80)) break;
            ap_connpool_close(&p);
            if (!m_closed) {
                m_closed = 1;
                for (int j = 0; j < qlen; j++) {
                    mf[q[j]].closedq = 1;
                    mf[q[j]].queued = 0;
                    mf[q[j]].expwakes++;
                    if (explen < 4096) explog[explen++] = q[j];
                }
                qlen = 0;
                m_unidle_retire(0, 1, 0);
            }
            break;
        }
        check_state(fut);
    }
    /* cancel what is left, return every held connection, fini */
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_connpool_checkout_cancel(&fut[i]);
        if (mf[i].polled) {
            if (mf[i].queued) q_remove(i);
            if (mf[i].granted) {
                size_t x = mf[i].gslot;
                if (mf[i].fresh) m_unreserve(x);
                else if (m_closed) { m_close_conn(x); m_unreserve(x); }
                else { mst[x] = S_IDLE; istk[isp++] = x; ms.idle++; }
            }
            m_dispatch();
        }
        mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
        check_state(fut);
    }
    FZ_CHECK(qlen == 0);
    for (size_t x = 0; x < m_max; x++) {
        if (mst[x] != S_HELD) continue;
        FZ_CHECK(ap_connpool_return(&p, pbuf + x * fac_csize, true, now) == AP_OK);
        ms.broken++;
        m_close_conn(x);
        m_unreserve(x);
        check_state(fut);
    }
    ap_connpool_fini(&p);
    FZ_CHECK(fac_live == 0);
    for (uint32_t id = 1; id <= fac_serial; id++) FZ_CHECK(fac_closes[id] == 1);
    FZ_CHECK(fac_peak <= m_max);
    FZ_CHECK(fac_closes_n == ms.closed + ms.idle);
    return 0;
}
