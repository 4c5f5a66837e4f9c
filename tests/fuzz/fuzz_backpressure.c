/* tests/fuzz/fuzz_backpressure.c -- libFuzzer harness for asyncpat/backpressure.h
 *
 * Input: a configuration (capacity, elem_size, strategy, watermarks and a
 * throttle desc; extreme and invalid values tried on init/create for the
 * AP_INVAL paths) and a single-threaded sequence of push, try_pop, close,
 * and push / pop / low-watermark futures polled and cancelled by hand,
 * checked against a sequential model:
 *   - AP_INVAL init leaves *bp and the buffer untouched; AP_INVAL create
 *     allocates nothing and leaves *out untouched; a valid desc with a
 *     buffer too small (sometimes one byte short of AP_BP_BYTES) is
 *     AP_INVAL too (issue #11)
 *   - each push's status per strategy; evicted_out / retry_at / out written
 *     only where the status says so; @elem never modified
 *   - elements leave in FIFO order; DROP_OLDEST hands back exactly the
 *     oldest; THROTTLE's verdicts and retry_at match a shadow ap_tb fed the
 *     same calls
 *   - the counters match the model and, after every step,
 *       offered  == accepted + dropped_newest + throttled + full + closed + canceled
 *       accepted == popped + dropped_oldest + len
 *   - the watermark state follows the hysteresis model (HIGH when a push
 *     makes count reach high, LOW when a give-back makes it fall to low)
 *   - a low-watermark future completes as the model says (edge-triggered)
 */
#include "asyncpat/backpressure.h"
#include "fuzz_common.h"

#define MAXCAP 64
#define MAXES 24

static int wakes;
static void fz_wake(void *ctx) { (void)ctx; wakes++; }

/* the model */
static unsigned char model[MAXCAP][MAXES];
static size_t mhead, mlen, m_high, m_low, m_cap, m_es;
static int m_hi, m_closed;
static uint64_t m_cross;
static ap_bp_stats ms;
static uint64_t tagc;

static void make_elem(unsigned char *e)
{
    uint64_t t = ++tagc;
    for (size_t i = 0; i < m_es; i++) e[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 31);
}
static void m_reserve(const unsigned char *e)
{
    FZ_CHECK(mlen < m_cap);
    memcpy(model[(mhead + mlen) % MAXCAP], e, m_es);
    mlen++;
    if (mlen >= m_high) m_hi = 1;
}
static void m_giveback(void)
{
    FZ_CHECK(mlen > 0);
    mlen--;
    if (m_hi && mlen <= m_low) { m_hi = 0; m_cross++; }
}
static void m_pop_check(const unsigned char *e)
{
    FZ_CHECK(mlen > 0);
    FZ_CHECK(memcmp(model[mhead], e, m_es) == 0);
    mhead = (mhead + 1) % MAXCAP;
    m_giveback();
}

static void check_inval_paths(fz *f)
{
    ap_bp_desc d;
    memset(&d, 0, sizeof d);
    d.capacity = fz_size(f);
    d.elem_size = fz_size(f);
    d.strategy = (ap_bp_strategy)(fz_u8(f) % 6);
    d.high_watermark = (fz_u8(f) & 1) ? fz_size(f) : 0;
    d.low_watermark = (fz_u8(f) & 1) ? fz_size(f) : 0;
    d.throttle.n = fz_val(f);
    d.throttle.period_ns = fz_val(f);
    d.throttle.burst = fz_val(f);
    ap_bp_desc r = ap_bp_desc_resolved(&d);
    FZ_CHECK(r.high_watermark == (d.high_watermark ? d.high_watermark : d.capacity));
    FZ_CHECK(r.low_watermark == (d.low_watermark ? d.low_watermark : r.high_watermark / 2));
    int bad = r.capacity == 0 || r.elem_size == 0 || (unsigned)r.strategy > AP_BP_STRATEGY_THROTTLE ||
              r.high_watermark > r.capacity || r.low_watermark >= r.high_watermark;
    if (!bad && r.strategy == AP_BP_STRATEGY_THROTTLE) {
        ap_tb probe;
        if (ap_tb_init(&probe, &r.throttle) != AP_OK) bad = 1;
    }
    int mbad = r.capacity > (SIZE_MAX >> 4) || r.elem_size > SIZE_MAX / 2;
    if (!mbad) {
        size_t stride = AP_MPMC_STRIDE(r.elem_size);
        if (stride < r.elem_size || r.capacity > SIZE_MAX / stride) mbad = 1;
    }
    static size_t dummy[8];
    if (bad || mbad || AP_BP_BYTES(r.capacity, r.elem_size) > sizeof dummy) {
        static ap_bp bp;
        fz_fill(&bp, sizeof bp);
        fz_fill(dummy, sizeof dummy);
        ap_status st = ap_bp_init(&bp, dummy, sizeof dummy, &d);
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&bp, sizeof bp));
        FZ_CHECK(fz_untouched(dummy, sizeof dummy));
    }
    ap_bp *out;
    fz_fill(&out, sizeof out);
    int before = allocs;
    ap_status st = ap_bp_create(&out, &d, &fz_allocator);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
    }
    if (st == AP_OK) {
        FZ_CHECK(!bad && !mbad);
        FZ_CHECK(ap_bp_capacity(out) == r.capacity);
        FZ_CHECK(ap_bp_len(out) == 0);
        FZ_CHECK(ap_bp_level(out) == AP_BP_LEVEL_STATE_LOW);
        ap_bp_destroy(out);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_INVAL || st == AP_NOMEM);
        FZ_CHECK(fz_untouched(&out, sizeof out));
        FZ_CHECK(allocs == before + (st == AP_NOMEM)); /* the refused attempt */
        allocs = before;
    }
    ap_status st2 = ap_bp_init(&(ap_bp){0}, NULL, 0, NULL);
    FZ_CHECK(st2 == AP_INVAL);
}

static void check_state(ap_bp *bp)
{
    ap_bp_stats s;
    ap_bp_stats_get(bp, &s);
    size_t len = ap_bp_len(bp);
    FZ_CHECK(len == mlen);
    FZ_CHECK((ap_bp_level(bp) == AP_BP_LEVEL_STATE_HIGH) == (m_hi != 0));
    FZ_CHECK(ap_bp_is_closed(bp) == (m_closed != 0));
    FZ_CHECK(AP_ATOMIC_LOAD(&bp->crossings, memory_order_relaxed) == m_cross);
    FZ_CHECK(s.offered == s.accepted + s.dropped_newest + s.throttled + s.full + s.closed + s.canceled);
    FZ_CHECK(s.accepted == s.popped + s.dropped_oldest + len);
    FZ_CHECK(memcmp(&s, &ms, sizeof s) == 0);
    /* HIGH implies count > low; LOW with count >= high is impossible */
    if (m_hi) FZ_CHECK(mlen > m_low);
    else FZ_CHECK(mlen < m_high);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval_paths(&f);

    ap_bp_desc d;
    memset(&d, 0, sizeof d);
    d.capacity = 1 + fz_u8(&f) % MAXCAP;
    d.elem_size = 1 + fz_u8(&f) % MAXES;
    d.strategy = (ap_bp_strategy)(fz_u8(&f) % 4);
    uint8_t w = fz_u8(&f);
    d.high_watermark = (w & 1) ? 1 + fz_u8(&f) % d.capacity : 0;
    size_t hi = d.high_watermark ? d.high_watermark : d.capacity;
    d.low_watermark = (w & 2) ? fz_u8(&f) % hi : 0;
    d.throttle.n = 1 + fz_u8(&f) % 8;
    d.throttle.period_ns = d.throttle.n + fz_u16(&f);
    d.throttle.burst = 1 + fz_u8(&f) % 8;
    ap_bp_desc r = ap_bp_desc_resolved(&d);
    static _Alignas(64) unsigned char buf[AP_BP_BYTES(MAXCAP, MAXES)];
    static ap_bp bp;
    if ((w & 4) && r.capacity >= 1 && r.elem_size >= 1) { /* one byte short */
        size_t need = AP_BP_BYTES(r.capacity, r.elem_size);
        fz_fill(&bp, sizeof bp);
        fz_fill(buf, need);
        FZ_CHECK(ap_bp_init(&bp, buf, need - 1, &d) == AP_INVAL);
        FZ_CHECK(fz_untouched(&bp, sizeof bp));
        FZ_CHECK(fz_untouched(buf, need));
    }
    if (ap_bp_init(&bp, buf, (w & 8) ? AP_BP_BYTES(r.capacity, r.elem_size) : sizeof buf, &d) !=
        AP_OK) {
        FZ_CHECK(r.low_watermark >= r.high_watermark); /* e.g. explicit low 0 -> default */
        return 0;
    }
    ap_tb shadow;
    if (d.strategy == AP_BP_STRATEGY_THROTTLE) FZ_CHECK(ap_tb_init(&shadow, &r.throttle) == AP_OK);
    m_cap = r.capacity; m_es = r.elem_size; m_high = r.high_watermark; m_low = r.low_watermark;
    mhead = mlen = 0; m_hi = m_closed = 0; m_cross = 0; tagc = 0;
    memset(&ms, 0, sizeof ms);
    uint64_t now = 0;
    size_t es = m_es;
    unsigned char elem[MAXES], copy[MAXES], out[MAXES], pattern[MAXES];
    memset(pattern, 0x5A, sizeof pattern);
    ap_cx cx = {{fz_wake, NULL}, 0, UINT64_MAX};

    ap_bp_push_fut pf; int pf_live = 0, pf_waited = 0; unsigned char pf_elem[MAXES];
    ap_bp_pop_fut of; int of_live = 0; unsigned char of_out[MAXES];
    ap_bp_low_fut lf; int lf_live = 0; uint64_t lf_since = 0;

    for (int steps = 0; fz_more(&f) && steps < 4096; steps++) {
        uint8_t op = fz_u8(&f);
        switch (op % 10) {
        case 0: case 1: case 2: case 3: { /* push */
            now += (op & 0x80) ? fz_val(&f) % 1000000 : fz_u8(&f);
            make_elem(elem);
            memcpy(copy, elem, es);
            unsigned char ev[MAXES];
            memcpy(ev, pattern, es);
            uint64_t ra = 0xA5A5A5A5A5A5A5A5u;
            int useev = d.strategy == AP_BP_STRATEGY_DROP_OLDEST || (op & 0x40);
            ap_status st = ap_bp_push(&bp, elem, now, useev ? ev : NULL, (op & 0x20) ? NULL : &ra);
            FZ_CHECK(memcmp(copy, elem, es) == 0);
            ms.offered++;
            ap_status exp;
            int evicted = 0;
            uint64_t exp_ra = 0xA5A5A5A5A5A5A5A5u;
            if (m_closed) exp = AP_CLOSED;
            else if (mlen < m_cap) {
                exp = AP_OK;
                if (d.strategy == AP_BP_STRATEGY_THROTTLE && m_hi) {
                    uint64_t t = 0xA5A5A5A5A5A5A5A5u;
                    if (ap_tb_try_acquire(&shadow, 1, now, &t) != AP_OK) {
                        exp = AP_REJECTED;
                        if (!(op & 0x20)) exp_ra = t;
                    }
                }
            } else if (d.strategy == AP_BP_STRATEGY_DROP_NEWEST) exp = AP_DROPPED;
            else if (d.strategy == AP_BP_STRATEGY_DROP_OLDEST) { exp = AP_DROPPED; evicted = 1; }
            else exp = AP_FULL;
            FZ_CHECK(st == exp);
            if (evicted) {
                m_pop_check(ev);
                m_reserve(elem);
                ms.dropped_oldest++; ms.accepted++;
            } else {
                if (useev) FZ_CHECK(memcmp(ev, pattern, es) == 0);
                switch (st) {
                case AP_OK: m_reserve(elem); ms.accepted++; break;
                case AP_DROPPED: ms.dropped_newest++; break;
                case AP_FULL: ms.full++; break;
                case AP_REJECTED: ms.throttled++; break;
                default: ms.closed++; break;
                }
            }
            FZ_CHECK(ra == exp_ra);
            break;
        }
        case 4: case 5: case 6: { /* try_pop */
            memcpy(out, pattern, es);
            ap_status st = ap_bp_try_pop(&bp, out);
            if (mlen) {
                FZ_CHECK(st == AP_OK);
                m_pop_check(out);
                ms.popped++;
            } else {
                FZ_CHECK(st == (m_closed ? AP_CLOSED : AP_EMPTY));
                FZ_CHECK(memcmp(out, pattern, es) == 0);
            }
            break;
        }
        case 7:
            if ((op >> 4) == 0) { ap_bp_close(&bp); m_closed = 1; }
            break;
        case 8: /* push future */
            if (!pf_live) {
                make_elem(pf_elem);
                ap_bp_push_fut_init(&pf, &bp, pf_elem);
                pf_live = 1; pf_waited = 0;
            }
            if (op & 0x80) {
                ap_bp_push_cancel(&pf);
                FZ_CHECK(ap_bp_push_status(&pf) == (d.strategy == AP_BP_STRATEGY_BLOCK ? AP_CANCELED : AP_INVAL));
                if (d.strategy == AP_BP_STRATEGY_BLOCK) { ms.offered++; ms.canceled++; }
                pf_live = 0;
            } else {
                ap_poll rr = ap_bp_push_poll(&pf, &cx);
                ap_status st = ap_bp_push_status(&pf);
                if (d.strategy != AP_BP_STRATEGY_BLOCK) {
                    FZ_CHECK(rr == AP_READY && st == AP_INVAL);
                    pf_live = 0;
                } else if (m_closed) {
                    FZ_CHECK(rr == AP_READY && st == AP_CLOSED);
                    ms.offered++; ms.closed++;
                    pf_live = 0;
                } else if (mlen < m_cap) {
                    FZ_CHECK(rr == AP_READY && st == AP_OK);
                    m_reserve(pf_elem);
                    ms.offered++; ms.accepted++;
                    pf_live = 0;
                } else {
                    FZ_CHECK(rr == AP_PENDING && st == AP_NOT_READY);
                    if (!pf_waited) { pf_waited = 1; ms.waits++; }
                }
            }
            break;
        case 9:
            if (op & 0x40) { /* low-watermark future */
                if (!lf_live) {
                    ap_bp_low_fut_init(&lf, &bp);
                    lf_since = m_cross;
                    lf_live = 1;
                }
                if (op & 0x80) {
                    ap_bp_low_cancel(&lf);
                    FZ_CHECK(ap_bp_low_status(&lf) == AP_CANCELED);
                    lf_live = 0;
                } else {
                    ap_poll rr = ap_bp_low_poll(&lf, &cx);
                    ap_status st = ap_bp_low_status(&lf);
                    ap_status e = m_closed ? AP_CLOSED : (!m_hi || m_cross != lf_since) ? AP_OK : AP_NOT_READY;
                    FZ_CHECK(st == e);
                    FZ_CHECK((rr == AP_READY) == (e != AP_NOT_READY));
                    if (rr == AP_READY) lf_live = 0;
                }
                break;
            }
            /* pop future */
            if (!of_live) {
                memcpy(of_out, pattern, es);
                ap_bp_pop_fut_init(&of, &bp, of_out);
                of_live = 1;
            }
            if (op & 0x80) {
                ap_bp_pop_cancel(&of);
                FZ_CHECK(memcmp(of_out, pattern, es) == 0);
                of_live = 0;
            } else {
                ap_poll rr = ap_bp_pop_poll(&of, &cx);
                ap_status st = ap_bp_pop_status(&of);
                if (mlen) {
                    FZ_CHECK(rr == AP_READY && st == AP_OK);
                    m_pop_check(of_out);
                    ms.popped++;
                    of_live = 0;
                } else if (m_closed) {
                    FZ_CHECK(rr == AP_READY && st == AP_CLOSED);
                    FZ_CHECK(memcmp(of_out, pattern, es) == 0);
                    of_live = 0;
                } else {
                    FZ_CHECK(rr == AP_PENDING && st == AP_NOT_READY);
                    FZ_CHECK(memcmp(of_out, pattern, es) == 0);
                }
            }
            break;
        }
        check_state(&bp);
    }
    if (pf_live) {
        ap_bp_push_cancel(&pf);
        if (d.strategy == AP_BP_STRATEGY_BLOCK) { ms.offered++; ms.canceled++; }
    }
    if (of_live) { ap_bp_pop_cancel(&of); FZ_CHECK(memcmp(of_out, pattern, es) == 0); }
    if (lf_live) ap_bp_low_cancel(&lf);
    check_state(&bp);
    /* drain: exactly what the model holds, in order */
    while (mlen) {
        FZ_CHECK(ap_bp_try_pop(&bp, out) == AP_OK);
        m_pop_check(out);
        ms.popped++;
        check_state(&bp);
    }
    FZ_CHECK(ap_bp_try_pop(&bp, out) == (m_closed ? AP_CLOSED : AP_EMPTY));
    FZ_CHECK(!ap_waitlist_has_waiters(&bp.not_full) && !ap_waitlist_has_waiters(&bp.below_low));
    ap_bp_fini(&bp);
    return 0;
}
