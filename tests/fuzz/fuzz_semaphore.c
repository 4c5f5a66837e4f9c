/* tests/fuzz/fuzz_semaphore.c -- libFuzzer harness for asyncpat/semaphore.h
 *
 * Input: a configuration (initial, max: extreme values tried on init and
 * init_max for the AP_INVAL paths) and a single-threaded sequence of
 * try_acquire, release, forget, close and acquire futures (up to 8, polled
 * and cancelled by hand with a counting waker), checked against a
 * sequential model of the semaphore:
 *   - AP_INVAL init leaves *s untouched (nothing in it allocates)
 *   - available() equals the model; it never exceeds max unless a
 *     cancelled granted future forced permits back over it (the one
 *     documented exception), and never through release()
 *   - permits conserved: available == initial - acquired + released
 *     + given back by cancel - forgotten
 *   - queued futures are granted strictly FIFO (the waker log matches the
 *     model's grant order), a release wakes only the futures it satisfies,
 *     try_acquire and a first poll never overtake a queued future
 *   - a cancelled granted future's permits come back and go on to the next
 *   - close: queued futures complete AP_CLOSED (granted ones AP_OK)
 */
#include "asyncpat/semaphore.h"
#include "fuzz_common.h"

#define NF 8

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
typedef struct mfut {
    int live;      /* initialised, not yet READY/cancelled */
    int queued;    /* in the model's FIFO queue (not granted, not closed) */
    int granted;   /* permits taken for it, not yet collected by poll */
    int closedq;   /* was queued when close came */
    size_t n;
    int expwakes;
} mfut;
static mfut mf[NF];
static int q[NF], qlen; /* queue of future indices, FIFO */
static size_t m_avail, m_max;
static int m_closed;
static size_t acq_tot, rel_tot, ret_tot, forg_tot;
static int forced_over; /* a cancelled granted future lifted the count over max */
static int explog[4096], explen;

static void q_remove(int i)
{
    int k = 0;
    for (int j = 0; j < qlen; j++)
        if (q[j] != i) q[k++] = q[j];
    FZ_CHECK(k == qlen - 1);
    qlen = k;
}

static void m_dispatch(void)
{
    if (m_closed) return;
    while (qlen && mf[q[0]].n <= m_avail) {
        int i = q[0];
        m_avail -= mf[i].n;
        acq_tot += mf[i].n;
        mf[i].granted = 1;
        mf[i].queued = 0;
        mf[i].expwakes++;
        if (explen < 4096) explog[explen++] = i;
        q_remove(i);
    }
}

/* the model's try_acquire */
static ap_status m_try(size_t n)
{
    if (n > m_max) return AP_INVAL;
    if (m_closed) return AP_CLOSED;
    if (n == 0) return AP_OK;
    if (qlen) return AP_EMPTY;
    if (m_avail < n) return AP_EMPTY;
    m_avail -= n;
    acq_tot += n;
    return AP_OK;
}

static size_t pick_n(fz *f)
{
    uint8_t s = fz_u8(f);
    if (s & 0x80) return fz_size(f);
    if (s & 0x40) return m_max - (s & 3);
    return s & 7;
}

static void check_inval_paths(fz *f)
{
    size_t initial = fz_size(f), max = fz_size(f);
    ap_sem s;
    fz_fill(&s, sizeof s);
    int bad = max == 0 || max > AP_SEM_PERMITS_MAX || initial > max;
    ap_status st = ap_sem_init_max(&s, initial, max);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&s, sizeof s));
    } else {
        FZ_CHECK(st == AP_OK);
        FZ_CHECK(ap_sem_available(&s) == initial);
        FZ_CHECK(ap_sem_max(&s) == max);
        FZ_CHECK(!ap_sem_is_closed(&s));
        ap_sem_fini(&s);
    }
    fz_fill(&s, sizeof s);
    bad = initial == 0 || initial > AP_SEM_PERMITS_MAX;
    st = ap_sem_init(&s, initial);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&s, sizeof s));
    } else {
        FZ_CHECK(st == AP_OK);
        FZ_CHECK(ap_sem_available(&s) == initial && ap_sem_max(&s) == initial);
        ap_sem_fini(&s);
    }
}

static void check_state(ap_sem *s, size_t initial, ap_sem_acquire_fut *fut)
{
    FZ_CHECK(ap_sem_available(s) == m_avail);
    FZ_CHECK(m_avail == initial - acq_tot + rel_tot + ret_tot - forg_tot);
    if (!forced_over) FZ_CHECK(m_avail <= m_max);
    FZ_CHECK(ap_sem_is_closed(s) == (m_closed != 0));
    FZ_CHECK(ap_sem_max(s) == m_max);
    FZ_CHECK(ap_waitlist_has_waiters(&s->wl) == (qlen > 0));
    /* FIFO grant order: the waker log is the model's grant/close order */
    FZ_CHECK(wlen == explen);
    FZ_CHECK(memcmp(wlog, explog, (size_t)wlen * sizeof wlog[0]) == 0);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == mf[i].expwakes);
        if (mf[i].live) {
            FZ_CHECK(ap_sem_acquire_status(&fut[i]) == AP_NOT_READY);
            FZ_CHECK((AP_ATOMIC_LOAD(&fut[i].grant.granted, memory_order_relaxed) != 0) == (mf[i].granted != 0));
        }
    }
    /* strict FIFO leaves the head unsatisfiable */
    if (qlen && !m_closed) FZ_CHECK(mf[q[0]].n > m_avail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval_paths(&f);

    /* a valid configuration: small, or large (bounded so that forced
     * give-backs of unbalanced use cannot overflow the count word) */
    uint8_t c = fz_u8(&f);
    size_t max, initial;
    if (c & 1) {
        max = fz_size(&f) & (SIZE_MAX >> 5);
        if (max == 0) max = 1;
    } else {
        max = 1 + (c >> 1) % 64;
    }
    initial = fz_size(&f);
    if (initial > max) initial = (c & 2) ? max : initial % (max + 1);
    ap_sem s;
    FZ_CHECK(ap_sem_init_max(&s, initial, max) == AP_OK);
    memset(mf, 0, sizeof mf);
    memset(wakes, 0, sizeof wakes);
    qlen = 0; wlen = explen = 0;
    m_avail = initial; m_max = max; m_closed = 0;
    acq_tot = rel_tot = ret_tot = forg_tot = 0;
    forced_over = 0;
    ap_sem_acquire_fut fut[NF];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: { /* try_acquire */
            size_t n = pick_n(&f);
            ap_status st = ap_sem_try_acquire(&s, n);
            FZ_CHECK(st == m_try(n));
            break;
        }
        case 1: { /* release */
            size_t n = pick_n(&f);
            ap_status st = ap_sem_release(&s, n);
            if (n == 0) FZ_CHECK(st == AP_OK);
            else if (n > m_max || m_avail > m_max - n) FZ_CHECK(st == AP_INVAL);
            else {
                FZ_CHECK(st == AP_OK);
                m_avail += n;
                rel_tot += n;
                m_dispatch();
            }
            break;
        }
        case 2: { /* forget */
            size_t n = pick_n(&f);
            size_t got = ap_sem_forget(&s, n);
            size_t exp = n < m_avail ? n : m_avail;
            FZ_CHECK(got == exp);
            m_avail -= got;
            forg_tot += got;
            break;
        }
        case 3: /* close (rarely) */
            if ((op & 0x80) && (op & 0x08)) {
                ap_sem_close(&s);
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
            }
            break;
        case 4: case 5: { /* init (if free) + poll */
            if (!mf[i].live) {
                size_t n = pick_n(&f);
                ap_sem_acquire_fut_init(&fut[i], &s, n);
                mf[i] = (mfut){1, 0, 0, 0, n, mf[i].expwakes};
                FZ_CHECK(ap_sem_acquire_status(&fut[i]) == AP_NOT_READY);
            }
            ap_poll r = ap_sem_acquire_poll(&fut[i], &cx[i]);
            ap_status st = ap_sem_acquire_status(&fut[i]);
            if (mf[i].granted) {
                FZ_CHECK(r == AP_READY && st == AP_OK);
                mf[i].live = 0;
            } else if (mf[i].closedq) {
                FZ_CHECK(r == AP_READY && st == AP_CLOSED);
                mf[i].live = 0;
            } else if (mf[i].queued) {
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
            } else {
                /* first poll: as try_acquire, else queue (and the head is
                 * unsatisfiable, so the re-check grants nothing) */
                ap_status e = m_try(mf[i].n);
                if (e != AP_EMPTY) {
                    FZ_CHECK(r == AP_READY && st == e);
                    mf[i].live = 0;
                } else {
                    mf[i].queued = 1;
                    q[qlen++] = i;
                    m_dispatch();
                    if (mf[i].granted) { /* cannot happen by the invariant */
                        FZ_CHECK(r == AP_READY && st == AP_OK);
                        mf[i].live = 0;
                        mf[i].granted = 0;
                    } else {
                        FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
                    }
                }
            }
            if (!mf[i].live) mf[i].granted = 0;
            break;
        }
        case 6: /* cancel */
            if (mf[i].live) {
                ap_sem_acquire_cancel(&fut[i]);
                FZ_CHECK(ap_sem_acquire_status(&fut[i]) == AP_CANCELED);
                if (mf[i].granted) {
                    m_avail += mf[i].n;
                    ret_tot += mf[i].n;
                    if (m_avail > m_max) forced_over = 1;
                    m_dispatch();
                } else if (mf[i].queued) {
                    q_remove(i);
                    m_dispatch();
                }
                mf[i].live = mf[i].granted = mf[i].queued = mf[i].closedq = 0;
                /* idempotent */
                ap_sem_acquire_cancel(&fut[i]);
                FZ_CHECK(ap_sem_acquire_status(&fut[i]) == AP_CANCELED);
                FZ_CHECK(ap_sem_acquire_poll(&fut[i], &cx[i]) == AP_READY);
            }
            break;
        default:
            break;
        }
        check_state(&s, initial, fut);
    }
    /* cancel what is left: granted permits come back */
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_sem_acquire_cancel(&fut[i]);
        if (mf[i].granted) {
            m_avail += mf[i].n;
            ret_tot += mf[i].n;
            if (m_avail > m_max) forced_over = 1;
            m_dispatch();
        } else if (mf[i].queued) {
            q_remove(i);
            m_dispatch();
        }
        mf[i].live = mf[i].granted = mf[i].queued = 0;
        check_state(&s, initial, fut);
    }
    FZ_CHECK(!ap_waitlist_has_waiters(&s.wl));
    ap_sem_fini(&s);
    return 0;
}
