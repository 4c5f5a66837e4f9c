/* tests/fuzz/fuzz_circuit_breaker.c -- libFuzzer harness for asyncpat/circuit_breaker.h
 *
 * Input: a desc of arbitrary field values (every invalid one must give
 * AP_INVAL from ap_breaker_init and ap_breaker_create and 0 from ap_breaker_bytes, with
 * *b, the buffer, *out and the allocator untouched), then a valid small
 * desc (COUNT or TIME window, defaults included) and a single-threaded
 * sequence of allow / record (success, failure, ignored, canceled, slow or
 * fast, or an unknown outcome; each record followed by a second record of
 * the same permit) / time advances (also backwards and huge) /
 * ap_breaker_state_at / force_open / disable / reset, with up to 64 permits held
 * and reported in any order, checked step by step against a sequential
 * model of the state machine (the one of tests/test_circuit_breaker.c,
 * rewritten for clarity: the COUNT window a plain array, the TIME window a
 * list of (epoch, outcome) entries; the epoch clamp at 2^47 - 1 included):
 *   - allow's status, the permit (generation, probe slot) and retry_at;
 *     *permit untouched on AP_REJECTED
 *   - no permit while OPEN before open_until (retry_at == open_until),
 *     none while FORCED_OPEN (retry_at AP_DEADLINE_NONE); a permit's
 *     generation is always a CLOSED, DISABLED or HALF_OPEN generation
 *   - HALF_OPEN: at most K probes leased (and admitted) per generation;
 *     K successes close, a failure or slow success re-opens with the open
 *     duration grown by open_multiplier_pct up to open_max_ns, a K-batch
 *     with IGNORED or CANCELED probes and no failure starts a new
 *     half-open period,
 *     an unreported probe past its lease re-opens (lease_expired)
 *   - CLOSED: trips exactly when min_calls outcomes are in the window and
 *     a rate reaches its threshold, or consecutive_failures in a row
 *   - state, generation, every stats counter, and the callback log (from,
 *     to, gen) equal the model after every step; an unknown outcome is
 *     AP_INVAL and changes nothing; a record consumes its permit (gen 0)
 *     and a second record of it is AP_INVAL and changes nothing
 *   - conservation: once every permit is reported,
 *     allowed == successes + failures + ignored + canceled + stale
 */
#include "asyncpat/circuit_breaker.h"
#include "fuzz_common.h"

#define CL AP_BREAKER_STATE_CLOSED
#define OP AP_BREAKER_STATE_OPEN
#define HO AP_BREAKER_STATE_HALF_OPEN
#define FO AP_BREAKER_STATE_FORCED_OPEN
#define DI AP_BREAKER_STATE_DISABLED
#define OK_ AP_BREAKER_OUTCOME_SUCCESS
#define FAIL_ AP_BREAKER_OUTCOME_FAILURE
#define IGN_ AP_BREAKER_OUTCOME_IGNORED
#define CAN_ AP_BREAKER_OUTCOME_CANCELED

#define MAXK 16
#define MAXW 128
#define MAXSTEPS 2048
#define NPERMIT 64
#define EPMAX ((UINT64_C(1) << 47) - 1)

typedef struct evlog {
    unsigned n;
    struct { ap_breaker_state from, to; uint64_t gen; } e[4 * MAXSTEPS + 64];
} evlog;
static evlog hlog, mlog; /* the breaker's callbacks, the model's */

static void log_ev(evlog *l, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    FZ_CHECK(l->n < sizeof l->e / sizeof l->e[0]);
    l->e[l->n].from = from;
    l->e[l->n].to = to;
    l->e[l->n].gen = gen;
    l->n++;
}
static ap_breaker *cur_b;
static void on_change(void *ctx, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    FZ_CHECK(ctx == (void *)&hlog);
    /* never under the breaker's lock */
    FZ_CHECK(cur_b && AP_ATOMIC_LOAD(&cur_b->lock.held, memory_order_relaxed) == 0);
    log_ev(&hlog, from, to, gen);
}

/* ---- the model ---- */
typedef struct model {
    ap_breaker_desc d; /* resolved */
    ap_breaker_state st;
    uint64_t gen, open_until, cur_open;
    uint64_t admit[MAXK];   /* admit time of a leased probe slot */
    unsigned char used[MAXK]; /* slot leased: a flag of its own, so that an
                               * admit time of UINT64_MAX is a time too */
    uint32_t inflight, succ, admitted;
    uint8_t win[MAXW]; /* COUNT: oldest first; bit0 fail, bit1 slow */
    uint32_t wlen;
    struct { uint64_t k; uint8_t v; } tw[MAXSTEPS + 8]; /* TIME: this CLOSED period */
    size_t twn;
    uint64_t newest, run;
    ap_breaker_stats s;
} model;
static model M;

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static void m_set(ap_breaker_state to, uint64_t now)
{
    ap_breaker_state from = M.st;
    M.gen++;
    if (to == OP) {
        if (from == HO) {
            uint64_t c = M.cur_open, m = M.d.open_multiplier_pct;
            c = c > UINT64_MAX / m ? UINT64_MAX : c * m / 100;
            M.cur_open = c < M.d.open_max_ns ? c : M.d.open_max_ns;
        } else {
            M.cur_open = M.d.open_ns;
        }
        M.open_until = sat_add(now, M.cur_open);
    } else if (to == HO) {
        M.inflight = M.succ = M.admitted = 0;
        memset(M.used, 0, sizeof M.used);
    } else if (to == CL) {
        M.wlen = 0;
        M.twn = 0;
        M.newest = 0;
        M.run = 0;
        M.cur_open = M.d.open_ns;
    }
    M.st = to;
    M.s.transitions++;
    log_ev(&mlog, from, to, M.gen);
}

static void m_advance(uint64_t now)
{
    for (;;) {
        if (M.st == OP && now >= M.open_until) {
            m_set(HO, now);
            continue;
        }
        if (M.st == HO)
            for (uint32_t i = 0; i < M.d.half_open_probes; i++)
                if (M.used[i] && now >= sat_add(M.admit[i], M.d.probe_lease_ns)) {
                    M.s.lease_expired++;
                    m_set(OP, now);
                    break;
                }
        return;
    }
}

static ap_status m_allow(uint64_t now, ap_breaker_permit *p, uint64_t *ra)
{
    /* OPEN before open_until and FORCED_OPEN reject without advancing */
    if (!(M.st == OP && now < M.open_until) && M.st != FO) m_advance(now);
    switch (M.st) {
    case CL:
    case DI:
        p->gen = M.gen;
        p->probe = 0;
        M.s.allowed++;
        return AP_OK;
    case OP: *ra = M.open_until; break;
    case FO: *ra = AP_DEADLINE_NONE; break;
    case HO:
        if (M.admitted < M.d.half_open_probes) {
            uint32_t i = 0;
            while (M.used[i]) i++;
            M.used[i] = 1;
            M.admit[i] = now;
            M.inflight++;
            M.admitted++;
            p->gen = M.gen;
            p->probe = i + 1;
            M.s.allowed++;
            return AP_OK;
        }
        *ra = UINT64_MAX;
        for (uint32_t i = 0; i < M.d.half_open_probes; i++)
            if (M.used[i] && sat_add(M.admit[i], M.d.probe_lease_ns) < *ra)
                *ra = sat_add(M.admit[i], M.d.probe_lease_ns);
        break;
    }
    M.s.rejected++;
    return AP_REJECTED;
}

static int m_rates(uint64_t calls, uint64_t fails, uint64_t slows)
{
    return calls > 0 && calls >= M.d.min_calls &&
           (fails * 100 >= (uint64_t)M.d.failure_rate_pct * calls ||
            slows * 100 >= (uint64_t)M.d.slow_rate_pct * calls);
}

static void m_record(ap_breaker_permit p, ap_breaker_outcome o, uint64_t dur, uint64_t now)
{
    int slow = dur >= M.d.slow_call_ns, fail = o == FAIL_;
    /* outside HALF_OPEN nothing is advanced by a record (CLOSED and
     * DISABLED are lock-free; OPEN and FORCED_OPEN hold no permits) */
    if (p.gen == M.gen && M.st == HO) m_advance(now);
    if (p.gen != M.gen) {
        M.s.stale++;
        return;
    }
    if (o == OK_) M.s.successes++;
    if (o == FAIL_) M.s.failures++;
    if (o == IGN_) M.s.ignored++;
    if (o == CAN_) M.s.canceled++;
    if (slow && (o == OK_ || o == FAIL_)) M.s.slow++;
    M.s.calls++;
    if (M.st == DI) return;
    if (M.st == HO) {
        FZ_CHECK(p.probe >= 1 && p.probe <= M.d.half_open_probes);
        FZ_CHECK(M.used[p.probe - 1]);
        M.used[p.probe - 1] = 0;
        M.inflight--;
        if (fail || (slow && o == OK_)) m_set(OP, now);
        else if (o == OK_ && ++M.succ >= M.d.half_open_probes) m_set(CL, now);
        else if (M.inflight == 0 && M.admitted == M.d.half_open_probes) m_set(HO, now);
        return;
    }
    FZ_CHECK(M.st == CL);
    if (o == IGN_ || o == CAN_) return;
    uint8_t v = (uint8_t)(fail | slow << 1);
    uint64_t calls = 0, fails = 0, slows = 0;
    if (M.d.window == AP_BREAKER_WINDOW_COUNT) {
        if (M.wlen == M.d.window_size) {
            memmove(M.win, M.win + 1, M.wlen - 1);
            M.wlen--;
        }
        M.win[M.wlen++] = v;
        for (uint32_t i = 0; i < M.wlen; i++) {
            calls++;
            fails += M.win[i] & 1;
            slows += M.win[i] >> 1;
        }
    } else {
        uint64_t w = M.d.window_ns / M.d.buckets, k = now / w;
        if (k > EPMAX) k = EPMAX; /* documented: later epochs count as the last */
        if (k < M.newest) k = M.newest;
        M.newest = k;
        M.tw[M.twn].k = k;
        M.tw[M.twn++].v = v;
        size_t j = 0;
        for (size_t i = 0; i < M.twn; i++) {
            if (M.tw[i].k + M.d.buckets <= k) continue; /* expired */
            M.tw[j++] = M.tw[i];
            calls++;
            fails += M.tw[i].v & 1;
            slows += M.tw[i].v >> 1;
        }
        M.twn = j;
    }
    if (fail) M.run++;
    else M.run = 0;
    if (m_rates(calls, fails, slows) ||
        (M.d.consecutive_failures && M.run >= M.d.consecutive_failures))
        m_set(OP, now);
}

/* ---- desc validity, written from the documentation ---- */
static int desc_bad(const ap_breaker_desc *in)
{
    ap_breaker_desc d = *in;
    if (d.window != AP_BREAKER_WINDOW_COUNT && d.window != AP_BREAKER_WINDOW_TIME) return 1;
    uint32_t ws = d.window_size ? d.window_size : 100;
    uint64_t wns = d.window_ns ? d.window_ns : 10 * AP_NS_PER_SEC;
    uint32_t nb = d.buckets ? d.buckets : 10;
    uint32_t minc = d.min_calls ? d.min_calls : (d.window == AP_BREAKER_WINDOW_COUNT ? ws : 100);
    uint64_t open = d.open_ns ? d.open_ns : 60 * AP_NS_PER_SEC;
    uint32_t mult = d.open_multiplier_pct ? d.open_multiplier_pct : 100;
    uint64_t omax = d.open_max_ns ? d.open_max_ns : (open > UINT64_MAX / 16 ? UINT64_MAX : 16 * open);
    uint32_t k = d.half_open_probes ? d.half_open_probes : 10;
    if (d.failure_rate_pct > 100 || d.slow_rate_pct > 100) return 1;
    if (k > AP_BREAKER_MAX_PROBES || mult < 100 || mult > 10000 || omax < open) return 1;
    if (d.window == AP_BREAKER_WINDOW_COUNT)
        return ws > AP_BREAKER_MAX_WINDOW || minc > ws;
    return nb > AP_BREAKER_MAX_BUCKETS || nb > wns || wns % nb != 0;
}

static _Alignas(64) unsigned char bigbuf[AP_BREAKER_BYTES(AP_BREAKER_MAX_WINDOW, AP_BREAKER_MAX_PROBES) + 64];

static void check_inval(fz *f)
{
    ap_breaker_desc d;
    memset(&d, 0, sizeof d);
    uint8_t w = fz_u8(f);
    d.window = (ap_breaker_window)(w < 0xF0 ? w & 1 : w);
    uint16_t mask = fz_u16(f); /* which fields get a value (else 0: default) */
    if (mask & 1) d.window_size = fz_val32(f);
    if (mask & 2) d.window_ns = fz_val(f);
    if (mask & 4) d.buckets = fz_val32(f);
    if (mask & 8) d.min_calls = fz_val32(f);
    if (mask & 16) d.failure_rate_pct = (mask & 0x8000) ? fz_val32(f) : fz_u8(f);
    if (mask & 32) d.slow_rate_pct = (mask & 0x8000) ? fz_val32(f) : fz_u8(f);
    if (mask & 64) d.slow_call_ns = fz_val(f);
    if (mask & 128) d.consecutive_failures = fz_val32(f);
    if (mask & 256) d.open_ns = fz_val(f);
    if (mask & 512) d.open_multiplier_pct = (mask & 0x4000) ? fz_val32(f) : fz_u16(f);
    if (mask & 1024) d.open_max_ns = fz_val(f);
    if (mask & 2048) d.half_open_probes = fz_val32(f);
    if (mask & 4096) d.probe_lease_ns = fz_val(f);
    int bad = desc_bad(&d);
    size_t need = ap_breaker_bytes(&d);
    FZ_CHECK((need == 0) == (bad != 0));
    FZ_CHECK(need <= sizeof bigbuf - 64);
    ap_breaker b;
    fz_fill(&b, sizeof b);
    if (bad) {
        fz_fill(bigbuf, 4096);
        FZ_CHECK(ap_breaker_init(&b, bigbuf, sizeof bigbuf, &d) == AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b));
        FZ_CHECK(fz_untouched(bigbuf, 4096));
    } else {
        /* too small, misaligned or NULL buffers: AP_INVAL, untouched */
        fz_fill(bigbuf, need + 16);
        FZ_CHECK(ap_breaker_init(&b, bigbuf, need - 1, &d) == AP_INVAL);
        FZ_CHECK(ap_breaker_init(&b, bigbuf + 4, need + 8, &d) == AP_INVAL);
        FZ_CHECK(ap_breaker_init(&b, NULL, need, &d) == AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b));
        FZ_CHECK(fz_untouched(bigbuf, need + 16));
        FZ_CHECK(ap_breaker_init(&b, bigbuf, need, &d) == AP_OK);
        FZ_CHECK(ap_breaker_state_at(&b, 0) == CL && ap_breaker_generation(&b) == 1);
        ap_breaker_fini(&b);
    }
    ap_breaker *p;
    fz_fill(&p, sizeof p);
    int before = allocs;
    ap_status st = ap_breaker_create(&p, &d, &fz_allocator);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&p, sizeof p));
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_OK); /* at most ~140 KiB: under the 1 MiB cap */
        FZ_CHECK(ap_breaker_generation(p) == 1);
        ap_breaker_destroy(p);
        FZ_CHECK(allocs == before);
    }
}

static uint64_t pick_time(fz *f, uint64_t now)
{
    uint8_t k = fz_u8(f);
    switch (k & 7) {
    case 0: case 1: return sat_add(now, fz_u8(f));
    case 2: return sat_add(now, fz_u16(f));
    case 3: return sat_add(now, M.cur_open); /* exactly to the end of an open period */
    case 4: return sat_add(now, M.d.probe_lease_ns - (k >> 7));
    case 5: return sat_add(now, (uint64_t)fz_u8(f) * (M.d.window_ns / M.d.buckets));
    case 6: return (k & 0x80) ? fz_val(f) : sat_add(now, fz_u32(f));
    default: return now > 0 && (k & 8) ? now - 1 - fz_u8(f) % now : now;
    }
}

static ap_breaker_state raw_state(ap_breaker *b)
{
    return (ap_breaker_state)(AP_ATOMIC_LOAD(&b->state, memory_order_relaxed) & 7u);
}

static void check_all(ap_breaker *b, const ap_breaker_permit *perm, int nperm)
{
    FZ_CHECK(raw_state(b) == M.st);
    FZ_CHECK(ap_breaker_generation(b) == M.gen);
    ap_breaker_stats s;
    ap_breaker_stats_get(b, &s);
    FZ_CHECK(memcmp(&s, &M.s, sizeof s) == 0);
    FZ_CHECK(hlog.n == mlog.n);
    FZ_CHECK(memcmp(hlog.e, mlog.e, hlog.n * sizeof hlog.e[0]) == 0);
    FZ_CHECK(s.transitions == hlog.n);
    /* HALF_OPEN: at most K probes of this generation leased */
    if (M.st == HO) {
        int k = 0;
        for (int i = 0; i < nperm; i++) k += perm[i].gen == M.gen;
        FZ_CHECK(k <= (int)M.d.half_open_probes);
        FZ_CHECK((uint32_t)k == M.inflight && b->inflight == M.inflight);
        FZ_CHECK(M.admitted <= M.d.half_open_probes && b->admitted == M.admitted);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);

    /* a valid small configuration (zero fields: the defaults) */
    ap_breaker_desc d;
    memset(&d, 0, sizeof d);
    uint8_t c = fz_u8(&f), c2 = fz_u8(&f);
    if (c & 1) {
        d.window = AP_BREAKER_WINDOW_TIME;
        d.buckets = (c & 2) ? 0 : 1 + fz_u8(&f) % 16;
        /* the default span (10 s) only where the buckets divide it */
        int dflt = (c & 4) && (10 * AP_NS_PER_SEC) % (d.buckets ? d.buckets : 10) == 0;
        d.window_ns = dflt ? 0 : (uint64_t)(d.buckets ? d.buckets : 10) * (1 + fz_u16(&f) % 1000);
        d.min_calls = (c & 8) ? 0 : fz_u8(&f) % 24;
    } else {
        d.window_size = (c & 2) ? 0 : 1 + fz_u8(&f) % 64;
        uint32_t ws = d.window_size ? d.window_size : 100;
        d.min_calls = (c & 8) ? 0 : fz_u8(&f) % (ws + 1);
    }
    d.failure_rate_pct = (c & 16) ? 0 : fz_u8(&f) % 101;
    d.slow_rate_pct = (c & 32) ? 0 : fz_u8(&f) % 101;
    d.slow_call_ns = (c & 64) ? 0 : 1 + fz_u16(&f) % 2000;
    d.consecutive_failures = (c & 128) ? 0 : fz_u8(&f) % 7;
    d.open_ns = (c2 & 1) ? 0 : 1 + fz_u16(&f);
    d.open_multiplier_pct = (c2 & 2) ? 0 : 100 + fz_u16(&f) % 9901;
    if (!(c2 & 4)) {
        uint64_t o = d.open_ns ? d.open_ns : 60 * AP_NS_PER_SEC;
        d.open_max_ns = (c2 & 8) ? UINT64_MAX - fz_u8(&f) : o + fz_u32(&f);
    }
    d.half_open_probes = (c2 & 16) ? 0 : 1 + fz_u8(&f) % MAXK;
    d.probe_lease_ns = (c2 & 32) ? 0 : 1 + fz_u16(&f);
    d.on_change = on_change;
    d.ctx = &hlog;
    FZ_CHECK(!desc_bad(&d));
    static ap_breaker b;
    cur_b = &b;
    size_t need = ap_breaker_bytes(&d);
    FZ_CHECK(need > 0 && need <= sizeof bigbuf);
    FZ_CHECK(ap_breaker_init(&b, bigbuf, need, &d) == AP_OK);

    memset(&M, 0, sizeof M);
    M.d = ap_breaker_desc_resolved(&d);
    M.st = CL;
    M.gen = 1;
    M.cur_open = M.d.open_ns;
    hlog.n = mlog.n = 0;
    FZ_CHECK(M.d.half_open_probes <= MAXK && M.d.window_size <= MAXW);

    ap_breaker_permit perm[NPERMIT];
    int nperm = 0;
    uint64_t now = (c2 & 64) ? fz_val(&f) : fz_u16(&f);
    for (int steps = 0; fz_more(&f) && steps < MAXSTEPS; steps++) {
        uint8_t op = fz_u8(&f);
        switch (op % 8) {
        case 0: /* time passes */
            now = pick_time(&f, now);
            break;
        case 1: case 2: { /* allow */
            if (nperm == NPERMIT) break;
            ap_breaker_permit p, q = {0, 0};
            fz_fill(&p, sizeof p);
            uint64_t ra = 7, rb = 7;
            ap_breaker_state before = M.st;
            uint64_t until = M.open_until;
            ap_status a = ap_breaker_allow(&b, now, &p, (op & 8) ? NULL : &ra);
            ap_status e = m_allow(now, &q, &rb);
            FZ_CHECK(a == e);
            if (before == OP && now < until) FZ_CHECK(a == AP_REJECTED && rb == until);
            if (before == FO) FZ_CHECK(a == AP_REJECTED && rb == AP_DEADLINE_NONE);
            if (a == AP_OK) {
                FZ_CHECK(p.gen == q.gen && p.probe == q.probe);
                /* admitted only in a CLOSED, DISABLED or HALF_OPEN generation */
                FZ_CHECK(M.st == CL || M.st == DI || M.st == HO);
                FZ_CHECK((p.probe != 0) == (M.st == HO));
                perm[nperm++] = p;
            } else {
                FZ_CHECK(fz_untouched(&p, sizeof p));
                if (!(op & 8)) FZ_CHECK(ra == rb);
                else FZ_CHECK(ra == 7);
            }
            break;
        }
        case 3: case 4: { /* record one permit */
            if (nperm == 0) break;
            int i = fz_u8(&f) % nperm;
            uint8_t x = fz_u8(&f);
            ap_breaker_outcome o = (x & 3) == 3 ? ((x & 4) ? ((x & 0x20) ? CAN_ : IGN_) : OK_)
                                   : (x & 1) ? FAIL_ : OK_;
            uint64_t dur;
            switch ((x >> 3) & 3) {
            case 0: dur = 0; break;
            case 1: dur = M.d.slow_call_ns - (x >> 7); break; /* the slow threshold */
            case 2: dur = fz_u16(&f); break;
            default: dur = fz_val(&f); break;
            }
            if ((x & 0xE0) == 0xE0) {
                /* an unknown outcome: AP_INVAL, nothing changed */
                ap_breaker_stats s0;
                ap_breaker_stats_get(&b, &s0);
                ap_breaker_state s0st = raw_state(&b);
                FZ_CHECK(ap_breaker_record(&b, &perm[i], (ap_breaker_outcome)(4 + (x & 3)), dur, now) ==
                         AP_INVAL);
                ap_breaker_stats s1;
                ap_breaker_stats_get(&b, &s1);
                FZ_CHECK(memcmp(&s0, &s1, sizeof s0) == 0 && raw_state(&b) == s0st);
                break;
            }
            ap_breaker_permit p = perm[i], q = p; /* q: the model's copy (the record consumes p) */
            perm[i] = perm[--nperm];
            FZ_CHECK(ap_breaker_record(&b, &p, o, dur, now) == AP_OK);
            m_record(q, o, dur, now);
            FZ_CHECK(p.gen == 0); /* consumed */
            {   /* reported twice: AP_INVAL, nothing changed */
                ap_breaker_stats s0;
                ap_breaker_stats_get(&b, &s0);
                ap_breaker_state s0st = raw_state(&b);
                FZ_CHECK(ap_breaker_record(&b, &p, o, dur, now) == AP_INVAL);
                ap_breaker_stats s1;
                ap_breaker_stats_get(&b, &s1);
                FZ_CHECK(memcmp(&s0, &s1, sizeof s0) == 0 && raw_state(&b) == s0st);
            }
            break;
        }
        case 5: { /* state at now */
            ap_breaker_state s = ap_breaker_state_at(&b, now);
            if (M.st == OP || M.st == HO) m_advance(now);
            FZ_CHECK(s == M.st);
            break;
        }
        case 6: /* time passes a little, then allow-record a whole call */
            now = sat_add(now, op >> 3);
            if (nperm < NPERMIT) {
                ap_breaker_permit p, q;
                uint64_t ra, rb;
                ap_status a = ap_breaker_allow(&b, now, &p, &ra);
                FZ_CHECK(a == m_allow(now, &q, &rb));
                if (a == AP_OK) {
                    ap_breaker_outcome o = (op & 0x40) ? FAIL_ : OK_;
                    uint64_t dur = (op & 0x80) ? M.d.slow_call_ns : 0;
                    FZ_CHECK(ap_breaker_record(&b, &p, o, dur, now) == AP_OK);
                    m_record(q, o, dur, now);
                }
            }
            break;
        default: /* manual controls, rarely */
            switch ((op >> 3) & 15) {
            case 0:
                ap_breaker_force_open(&b);
                if (M.st != FO) m_set(FO, 0);
                break;
            case 1:
                ap_breaker_disable(&b);
                if (M.st != DI) m_set(DI, 0);
                break;
            case 2:
                ap_breaker_reset(&b);
                m_set(CL, 0);
                break;
            default:
                break;
            }
            break;
        }
        check_all(&b, perm, nperm);
    }
    /* report everything still held; then the counters are conserved */
    while (nperm) {
        ap_breaker_permit p = perm[--nperm], q = p;
        ap_breaker_outcome o = (nperm & 1) ? IGN_ : CAN_;
        FZ_CHECK(ap_breaker_record(&b, &p, o, 0, now) == AP_OK);
        m_record(q, o, 0, now);
        check_all(&b, perm, nperm);
    }
    ap_breaker_stats s;
    ap_breaker_stats_get(&b, &s);
    FZ_CHECK(s.allowed == s.successes + s.failures + s.ignored + s.canceled + s.stale);
    FZ_CHECK(s.calls == s.successes + s.failures + s.ignored + s.canceled);
    ap_breaker_fini(&b);
    return 0;
}
