/* tests/fuzz/fuzz_pool.c -- libFuzzer harness for asyncpat/pool.h
 *
 * Input: init and create arguments (any n and obj_size, NULL, misaligned
 * or near-the-top state and object pointers, for the AP_INVAL paths), then
 * a pool of 1..24 objects of 1..64 bytes (its array at any byte offset,
 * with or without a reset hook) and a single-threaded sequence of try_get,
 * put (of held, idle, granted, foreign and misaligned pointers), get
 * futures (up to 8, polled and cancelled by hand with a counting waker),
 * get_wait with a past deadline, and close, checked against a sequential
 * model (an idle stack, the holders, and a FIFO queue of futures):
 *   - init / create: AP_INVAL exactly for n 0 or > AP_POOL_MAX, obj_size 0,
 *     NULL or misaligned state, NULL objects, a state or object size
 *     smaller than AP_POOL_STATE_BYTES / AP_POOL_OBJS_BYTES (sometimes one
 *     byte short), an object size that overflows, or an array that would
 *     wrap (create: or whose size overflows); then *p (*out) and the state
 *     buffer are untouched and nothing is allocated; create/destroy balance
 *     the allocator and the objects start zeroed
 *   - gets lend the idle stack's top (index order until the first put,
 *     LIFO after), try_get answers AP_EMPTY whenever a future is queued,
 *     AP_EMPTY / AP_CLOSED as the model; out-params untouched unless AP_OK
 *   - a put of a foreign, misaligned, idle (double put) or granted object
 *     returns AP_INVAL and changes nothing (the pool and its state words
 *     compare equal byte for byte, no reset hook ran); try_get(NULL) too
 *   - an accepted put runs the reset hook once (with the object still not
 *     idle), then hands the object directly to the oldest queued future
 *     (its waker runs once), or makes it idle
 *   - futures are served strictly FIFO (the waker log is the model's grant
 *     and close order); a future cancelled after its grant passes the
 *     object on to the next one (or the idle stack) without a reset
 *   - close: queued futures complete AP_CLOSED, granted ones AP_OK, later
 *     gets AP_CLOSED, puts still work
 *   - idle() / in_use() / is_closed() / has_waiters equal the model, and
 *     idle + held + granted == n after every step; the head's top and the
 *     idle links are exactly the model's stack; the pool never writes to
 *     the objects or past its n state words
 */
#include "asyncpat/pool.h"
#include "fuzz_common.h"

#define NF 8
#define MAXN 24
#define MAXSZ 64
#define MARGIN 256

/* a counting waker that logs the order of wakes */
static int wlog[4096], wlen;
static int wakes[NF];
static void fz_wake(void *ctx)
{
    int i = (int)(intptr_t)ctx;
    wakes[i]++;
    if (wlen < 4096) wlog[wlen++] = i;
}

/* the model */
enum { O_IDLE, O_HELD, O_GRANTED };
typedef struct mfut {
    int live;    /* initialised, status still AP_NOT_READY */
    int polled;  /* had its first poll (queued since) */
    int queued;  /* in the model's FIFO queue */
    int granted; /* an object was handed to it, not yet collected */
    int closedq; /* was queued when close came */
    size_t gidx;
    int expwakes;
} mfut;
static mfut mf[NF];
static int q[NF], qlen;
static int ost[MAXN];
static size_t stk[MAXN], sp; /* idle stack, top at stk[sp - 1] */
static size_t m_n, m_size;
static int m_closed;
static int explog[4096], explen;
static int resets, m_resets;
static ap_pool *hook_pool;
static void *hook_expect;
static int hook_user;

static void reset_hook(void *obj, void *user)
{
    FZ_CHECK(user == &hook_user);
    FZ_CHECK(obj == hook_expect);
    /* not yet idle or handed on: nobody else can reach it */
    FZ_CHECK(ap_pool_idle(hook_pool) == sp);
    resets++;
}

static void q_remove(int i)
{
    int k = 0;
    for (int j = 0; j < qlen; j++)
        if (q[j] != i) q[k++] = q[j];
    FZ_CHECK(k == qlen - 1);
    qlen = k;
}

static void m_grant(int i, size_t idx)
{
    mf[i].granted = 1;
    mf[i].queued = 0;
    mf[i].gidx = idx;
    mf[i].expwakes++;
    ost[idx] = O_GRANTED;
    if (explen < 4096) explog[explen++] = i;
    q_remove(i);
}

/* serve queued futures from the idle stack, head first */
static void m_dispatch(void)
{
    while (!m_closed && qlen && sp) m_grant(q[0], stk[--sp]);
}

/* an object in hand (put, or passed on by a cancel) */
static void m_release(size_t idx)
{
    if (qlen && !m_closed) {
        m_grant(q[0], idx);
        return;
    }
    ost[idx] = O_IDLE;
    stk[sp++] = idx;
    m_dispatch();
}

static ap_status m_try(void)
{
    if (m_closed) return AP_CLOSED;
    if (qlen) return AP_EMPTY;
    if (!sp) return AP_EMPTY;
    return AP_OK;
}

/* ---- the AP_INVAL paths ---- */

static void check_inval(fz *f)
{
    static _Alignas(AP_POOL_STATE_ALIGN) unsigned char sbuf[AP_POOL_STATE_BYTES(MAXN) + 8];
    static unsigned char obuf[64];
    uint8_t k = fz_u8(f);
    size_t n = (k & 1) ? fz_size(f) : (size_t)(k >> 1) % (MAXN + 2);
    size_t sz = fz_size(f);
    uint8_t how = fz_u8(f);
    unsigned char *state = sbuf;
    void *objs = obuf;
    if ((how & 7) == 1) state = NULL;
    if ((how & 7) == 2) state = sbuf + 1 + (how >> 6) % 3; /* misaligned */
    if ((how & 7) == 3) objs = NULL;
    if ((how & 7) == 4) objs = (void *)(UINTPTR_MAX - (uintptr_t)fz_u16(f)); /* near the top */
    uintptr_t ob = (uintptr_t)objs;
    /* the sizes: all of sbuf / a huge claim, exactly the need, one byte
     * short of it, or anything (issue #11) */
    uint8_t sizes = fz_u8(f);
    unsigned __int128 sneed = (unsigned __int128)n * 4, oneed = (unsigned __int128)n * sz;
    size_t sbytes = sizeof sbuf, obytes = SIZE_MAX;
    switch (sizes & 3) {
    case 1: sbytes = sneed > SIZE_MAX ? SIZE_MAX : (size_t)sneed; break;
    case 2: sbytes = sneed > SIZE_MAX ? SIZE_MAX : sneed == 0 ? 0 : (size_t)sneed - 1; break;
    case 3: sbytes = fz_size(f); break;
    }
    switch ((sizes >> 2) & 3) {
    case 1: obytes = oneed > SIZE_MAX ? SIZE_MAX : (size_t)oneed; break;
    case 2: obytes = oneed > SIZE_MAX ? SIZE_MAX : oneed == 0 ? 0 : (size_t)oneed - 1; break;
    case 3: obytes = fz_size(f); break;
    }
    int bad = n == 0 || n > AP_POOL_MAX || sz == 0 || state == NULL || objs == NULL ||
              (uintptr_t)state % AP_POOL_STATE_ALIGN != 0 || sbytes / 4 < n ||
              oneed > SIZE_MAX || obytes < oneed ||
              (unsigned __int128)n * sz > (unsigned __int128)(UINTPTR_MAX - ob);
    /* a valid init writes n state words: only try it when they fit */
    if (bad || n <= MAXN) {
        ap_pool p;
        fz_fill(&p, sizeof p);
        fz_fill(sbuf, sizeof sbuf);
        ap_status st = ap_pool_init(&p, state, sbytes, objs, obytes, n, sz);
        if (bad) {
            FZ_CHECK(st == AP_INVAL);
            FZ_CHECK(fz_untouched(&p, sizeof p));
            FZ_CHECK(fz_untouched(sbuf, sizeof sbuf));
        } else {
            FZ_CHECK(st == AP_OK);
            FZ_CHECK(ap_pool_capacity(&p) == n && ap_pool_idle(&p) == n);
            FZ_CHECK(ap_pool_in_use(&p) == 0 && !ap_pool_is_closed(&p));
            FZ_CHECK(fz_untouched(sbuf + AP_POOL_STATE_BYTES(n),
                                  sizeof sbuf - AP_POOL_STATE_BYTES(n)));
            /* index / obj round trip (no object is dereferenced) */
            size_t j = fz_u8(f) % n, ix = 12345;
            void *o = ap_pool_obj(&p, j);
            FZ_CHECK((uintptr_t)o == ob + j * sz);
            FZ_CHECK(ap_pool_index(&p, o, &ix) == AP_OK && ix == j);
            FZ_CHECK(ap_pool_index(&p, o, NULL) == AP_INVAL);
            ix = 12345;
            if (sz > 1) FZ_CHECK(ap_pool_index(&p, (char *)o + 1, &ix) == AP_INVAL && ix == 12345);
            FZ_CHECK(ap_pool_index(&p, (void *)(ob - 1), &ix) == AP_INVAL && ix == 12345);
            /* the first get lends object 0 */
            void *g = NULL;
            FZ_CHECK(ap_pool_try_get(&p, &g) == AP_OK && (uintptr_t)g == ob);
            FZ_CHECK(ap_pool_idle(&p) == n - 1);
            FZ_CHECK(ap_pool_put(&p, g) == AP_OK && ap_pool_idle(&p) == n);
            FZ_CHECK(ap_pool_put(&p, g) == AP_INVAL);
            ap_pool_fini(&p);
        }
    }
    /* create: the layout is header (a cache line multiple), objects rounded
     * to a cache line, then n state words */
    ap_pool *pp;
    fz_fill(&pp, sizeof pp);
    int before = allocs;
    unsigned __int128 body = (unsigned __int128)n * sz;
    unsigned __int128 hdr = ap__align_up(sizeof(ap_pool), AP_CACHELINE);
    unsigned __int128 stb = (body + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    unsigned __int128 total = hdr + stb + (unsigned __int128)n * 4;
    int cbad = n == 0 || n > AP_POOL_MAX || sz == 0 || total > SIZE_MAX;
    ap_status st = ap_pool_create(&pp, n, sz, &fz_allocator);
    if (cbad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
        FZ_CHECK(fz_untouched(&pp, sizeof pp));
    } else if (st == AP_OK) {
        FZ_CHECK(total <= ((size_t)1 << 20));
        FZ_CHECK(ap_pool_capacity(pp) == n && ap_pool_idle(pp) == n);
        unsigned char *o0 = (unsigned char *)ap_pool_obj(pp, 0);
        FZ_CHECK((uintptr_t)o0 % AP_CACHELINE == 0);
        for (size_t b = 0; b < n * sz; b++) FZ_CHECK(o0[b] == 0);
        void *g = NULL;
        FZ_CHECK(ap_pool_try_get(pp, &g) == AP_OK && g == o0);
        FZ_CHECK(ap_pool_put(pp, g) == AP_OK);
        ap_pool_destroy(pp);
        FZ_CHECK(allocs == before);
    } else {
        /* valid but over the allocator's 1 MiB: AP_NOMEM */
        FZ_CHECK(st == AP_NOMEM && total > ((size_t)1 << 20));
        FZ_CHECK(fz_untouched(&pp, sizeof pp));
        allocs = before;
    }
}

/* ---- the sequential run ---- */

static _Alignas(uint32_t) uint32_t sbuf[MAXN + 4];
static _Alignas(8) unsigned char obuf[MARGIN + MAXN * MAXSZ + 8 + MARGIN];

static void check_state(ap_pool *p, ap_pool_get_fut *fut)
{
    size_t held = 0, granted = 0, idle = 0;
    for (size_t i = 0; i < m_n; i++) {
        held += ost[i] == O_HELD;
        granted += ost[i] == O_GRANTED;
        idle += ost[i] == O_IDLE;
    }
    FZ_CHECK(idle == sp && idle + held + granted == m_n);
    FZ_CHECK(ap_pool_idle(p) == sp);
    FZ_CHECK(ap_pool_in_use(p) == m_n - sp);
    FZ_CHECK(ap_pool_capacity(p) == m_n);
    FZ_CHECK(ap_pool_is_closed(p) == (m_closed != 0));
    FZ_CHECK(ap_waitlist_has_waiters(&p->wl) == (qlen > 0));
    /* strict FIFO: a queued future means nothing is idle */
    if (qlen && !m_closed) FZ_CHECK(sp == 0);
    /* the idle stack, exactly */
    uint64_t h = AP_ATOMIC_LOAD(&p->head, memory_order_relaxed);
    FZ_CHECK((h & AP__POOL_TOP) == (sp ? stk[sp - 1] + 1 : 0));
    FZ_CHECK(((h & AP__POOL_CLOSED) != 0) == (m_closed != 0));
    for (size_t k = 0; k < sp; k++)
        FZ_CHECK(AP_ATOMIC_LOAD(&p->state[stk[k]], memory_order_relaxed) ==
                 (k ? (uint32_t)stk[k - 1] + 1 : 0u));
    for (size_t i = 0; i < m_n; i++) {
        uint32_t w = AP_ATOMIC_LOAD(&p->state[i], memory_order_relaxed);
        if (ost[i] == O_HELD) FZ_CHECK(w == AP__POOL_HELD);
        if (ost[i] == O_GRANTED) FZ_CHECK(w == AP__POOL_GRANTED);
    }
    FZ_CHECK(fz_untouched(sbuf + m_n, sizeof sbuf - m_n * sizeof sbuf[0]));
    FZ_CHECK(resets == m_resets);
    FZ_CHECK(wlen == explen);
    FZ_CHECK(memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == mf[i].expwakes);
        if (mf[i].live) {
            FZ_CHECK(ap_pool_get_status(&fut[i]) == AP_NOT_READY);
            FZ_CHECK((AP_ATOMIC_LOAD(&fut[i].grant.granted, memory_order_relaxed) != 0) ==
                     (mf[i].granted != 0));
            if (mf[i].granted) FZ_CHECK(fut[i].index == mf[i].gidx);
        }
    }
}

/* a pointer for put: held, idle, granted, misaligned or foreign */
static unsigned char *pick_ptr(fz *f, unsigned char *objs)
{
    uint8_t s = fz_u8(f);
    size_t j = fz_u8(f) % m_n;
    switch (s % 8) {
    case 0: case 1: case 2: { /* a held object, if any */
        for (size_t k = 0; k < m_n; k++) {
            size_t i = (j + k) % m_n;
            if (ost[i] == O_HELD) return objs + i * m_size;
        }
        return objs + j * m_size;
    }
    case 3: return objs + j * m_size; /* any object: held, idle or granted */
    case 4: return objs + j * m_size + 1 + (s >> 3) % m_size; /* misaligned (or the next) */
    case 5: return objs - 1 - (s >> 3);                     /* below the array */
    case 6: return objs + m_n * m_size + (s >> 3);           /* past the end */
    default: return (unsigned char *)(uintptr_t)((s & 8) ? UINTPTR_MAX - (s >> 4) : (s >> 4));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_n = 1 + (size_t)(c % MAXN);
    uint8_t zs = fz_u8(&f);
    static const size_t sizes[8] = {1, 2, 3, 4, 8, 12, 16, 64};
    m_size = (zs & 0x80) ? 1 + (size_t)(zs % MAXSZ) : sizes[zs & 7];
    size_t off = (zs >> 3) & 7;
    unsigned char *objs = obuf + MARGIN + off;
    fz_fill(obuf, sizeof obuf);
    fz_fill(sbuf, sizeof sbuf);
    ap_pool p;
    if (zs & 0x40) { /* one byte short of either size: AP_INVAL, nothing written */
        fz_fill(&p, sizeof p);
        FZ_CHECK(ap_pool_init(&p, sbuf, AP_POOL_STATE_BYTES(m_n) - 1, objs,
                              AP_POOL_OBJS_BYTES(m_n, m_size), m_n, m_size) == AP_INVAL);
        FZ_CHECK(ap_pool_init(&p, sbuf, AP_POOL_STATE_BYTES(m_n), objs,
                              AP_POOL_OBJS_BYTES(m_n, m_size) - 1, m_n, m_size) == AP_INVAL);
        FZ_CHECK(fz_untouched(&p, sizeof p));
        FZ_CHECK(fz_untouched(sbuf, sizeof sbuf) && fz_untouched(obuf, sizeof obuf));
    }
    FZ_CHECK(ap_pool_init(&p, sbuf, AP_POOL_STATE_BYTES(m_n), objs,
                          AP_POOL_OBJS_BYTES(m_n, m_size), m_n, m_size) == AP_OK);
    hook_pool = &p;
    if (c & 0x80) ap_pool_set_reset(&p, reset_hook, &hook_user);
    memset(mf, 0, sizeof mf);
    memset(wakes, 0, sizeof wakes);
    qlen = 0; wlen = explen = 0;
    m_closed = 0;
    resets = m_resets = 0;
    sp = 0;
    for (size_t i = m_n; i-- > 0;) { stk[sp++] = i; ost[i] = O_IDLE; }
    ap_pool_get_fut fut[NF];
    void *outp[NF];
    ap_cx cx[NF];
    void *const SENT = (void *)(uintptr_t)0xdeadbeef;
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
    static unsigned char snap_p[sizeof(ap_pool)], snap_s[sizeof sbuf];

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: { /* try_get */
            void *o = SENT;
            ap_status st = ap_pool_try_get(&p, &o);
            ap_status e = m_try();
            FZ_CHECK(st == e);
            if (e == AP_OK) {
                size_t idx = stk[--sp];
                FZ_CHECK(o == objs + idx * m_size);
                ost[idx] = O_HELD;
            } else {
                FZ_CHECK(o == SENT);
            }
            break;
        }
        case 1: case 2: { /* put */
            unsigned char *ptr = pick_ptr(&f, objs);
            uintptr_t d = (uintptr_t)ptr - (uintptr_t)objs;
            int inarr = d < m_n * m_size && d % m_size == 0;
            size_t idx = inarr ? d / m_size : 0;
            memcpy(snap_p, &p, sizeof p);
            memcpy(snap_s, sbuf, sizeof sbuf);
            hook_expect = ptr;
            ap_status st = ap_pool_put(&p, ptr);
            if (inarr && ost[idx] == O_HELD) {
                FZ_CHECK(st == AP_OK);
                if (p.reset) m_resets++;
                m_release(idx);
            } else {
                /* foreign, misaligned, idle or granted: nothing changed */
                FZ_CHECK(st == AP_INVAL);
                FZ_CHECK(memcmp(snap_p, &p, sizeof p) == 0);
                FZ_CHECK(memcmp(snap_s, sbuf, sizeof sbuf) == 0);
            }
            break;
        }
        case 3: /* close (rarely), or try_get(NULL) */
            if ((op & 0x80) && (op & 0x08)) {
                ap_pool_close(&p);
                if (!m_closed) {
                    m_closed = 1;
                    for (int j = 0; j < qlen; j++) {
                        mf[q[j]].closedq = 1;
                        mf[q[j]].queued = 0;
                        mf[q[j]].expwakes++;
                        if (explen < 4096) explog[explen++] = q[j];
                    }
                    qlen = 0;
                }
            } else {
                memcpy(snap_p, &p, sizeof p);
                memcpy(snap_s, sbuf, sizeof sbuf);
                FZ_CHECK(ap_pool_try_get(&p, NULL) == AP_INVAL);
                FZ_CHECK(ap_pool_get_wait(&p, NULL, 0) == AP_INVAL);
                FZ_CHECK(memcmp(snap_p, &p, sizeof p) == 0);
                FZ_CHECK(memcmp(snap_s, sbuf, sizeof sbuf) == 0);
            }
            break;
        case 4: case 5: { /* init (if free) + poll */
            if (!mf[i].live) {
                outp[i] = SENT;
                ap_pool_get_fut_init(&fut[i], &p, &outp[i]);
                mf[i] = (mfut){1, 0, 0, 0, 0, 0, mf[i].expwakes};
                FZ_CHECK(ap_pool_get_status(&fut[i]) == AP_NOT_READY);
            }
            ap_poll r = ap_pool_get_poll(&fut[i], &cx[i]);
            ap_status st = ap_pool_get_status(&fut[i]);
            if (!mf[i].polled) {
                mf[i].polled = 1;
                ap_status e = m_try();
                if (e == AP_OK) {
                    size_t idx = stk[--sp];
                    FZ_CHECK(r == AP_READY && st == AP_OK);
                    FZ_CHECK(outp[i] == objs + idx * m_size);
                    ost[idx] = O_HELD;
                    mf[i].live = 0;
                } else if (e == AP_CLOSED) {
                    FZ_CHECK(r == AP_READY && st == AP_CLOSED && outp[i] == SENT);
                    mf[i].live = 0;
                } else {
                    mf[i].queued = 1;
                    q[qlen++] = i;
                    m_dispatch();
                }
            }
            if (!mf[i].live) break;
            if (mf[i].granted) {
                FZ_CHECK(r == AP_READY && st == AP_OK);
                FZ_CHECK(outp[i] == objs + mf[i].gidx * m_size);
                ost[mf[i].gidx] = O_HELD;
                mf[i].live = mf[i].granted = 0;
            } else if (mf[i].closedq) {
                FZ_CHECK(r == AP_READY && st == AP_CLOSED && outp[i] == SENT);
                mf[i].live = mf[i].closedq = 0;
            } else {
                FZ_CHECK(mf[i].queued);
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY && outp[i] == SENT);
            }
            break;
        }
        case 6: /* cancel: before the first poll, queued, granted, or done */
            if (mf[i].live) {
                ap_pool_get_cancel(&fut[i]);
                FZ_CHECK(ap_pool_get_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(outp[i] == SENT);
                if (mf[i].granted) {
                    m_release(mf[i].gidx); /* passed on, no reset */
                } else if (mf[i].queued) {
                    q_remove(i);
                    m_dispatch();
                }
                mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
                ap_pool_get_cancel(&fut[i]); /* idempotent */
                FZ_CHECK(ap_pool_get_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_pool_get_poll(&fut[i], &cx[i]) == AP_READY);
            } else if (op & 0x08) {
                /* a completed or cancelled future: cancel changes nothing */
                ap_status before = ap_pool_get_status(&fut[i]);
                if (before != AP_NOT_READY) {
                    ap_pool_get_cancel(&fut[i]);
                    FZ_CHECK(ap_pool_get_status(&fut[i]) == before);
                }
            }
            break;
        default: { /* get_wait with a past deadline: a get, or nothing */
            void *o = SENT;
            ap_status st = ap_pool_get_wait(&p, &o, 0);
            ap_status e = m_try();
            if (e == AP_OK) {
                size_t idx = stk[--sp];
                FZ_CHECK(st == AP_OK && o == objs + idx * m_size);
                ost[idx] = O_HELD;
            } else {
                FZ_CHECK(st == (e == AP_CLOSED ? AP_CLOSED : AP_TIMEDOUT) && o == SENT);
            }
            break;
        }
        }
        check_state(&p, fut);
    }
    /* cancel what is left, then put every held object back */
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_pool_get_cancel(&fut[i]);
        if (mf[i].granted) m_release(mf[i].gidx);
        else if (mf[i].queued) { q_remove(i); m_dispatch(); }
        mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
        check_state(&p, fut);
    }
    FZ_CHECK(qlen == 0 && !ap_waitlist_has_waiters(&p.wl));
    for (size_t i = 0; i < m_n; i++) {
        if (ost[i] != O_HELD) continue;
        hook_expect = objs + i * m_size;
        FZ_CHECK(ap_pool_put(&p, objs + i * m_size) == AP_OK);
        if (p.reset) m_resets++;
        m_release(i);
        check_state(&p, fut);
    }
    FZ_CHECK(ap_pool_idle(&p) == m_n && sp == m_n);
    /* the pool never touches the objects */
    FZ_CHECK(fz_untouched(obuf, sizeof obuf));
    ap_pool_fini(&p);
    return 0;
}
