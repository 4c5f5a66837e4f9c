/* tests/fuzz/fuzz_barrier.c -- libFuzzer harness for asyncpat/barrier.h
 *
 * Input: a party count and a policy (any values, for the AP_INVAL paths),
 * then a valid barrier (1..9 parties, or a large count now and then; either
 * policy; with or without a completion function) and a single-threaded
 * sequence of wait-future polls and cancels (up to 8 futures, polled by
 * hand with a counting waker), arrive_and_drop, reset, and blocking waits
 * that cannot block (the last arrival, or a past deadline), checked against
 * a sequential model of the barrier (generation, parties, arrived, broken):
 *   - init: AP_INVAL exactly for parties 0 or > AP_BARRIER_PARTIES_MAX or an
 *     unknown policy, and then *b untouched
 *   - the generation advances by exactly 1 when the last expected party
 *     arrives (or a drop completes it), by 2 on reset, never otherwise
 *   - fn runs exactly once per completed generation, inside the leader's
 *     arrival, and the leader is told so (is_leader) and nobody else
 *   - every waiter of a generation completes with the right status: AP_OK
 *     when it completed, AP_CANCELED when broken or reset under it;
 *     AP_INVAL when every party dropped; no waiter completes early (a poll
 *     answers AP_PENDING until its generation is decided)
 *   - each pending waiter is woken exactly once, when its generation is
 *     decided, and never after (the waker counts)
 *   - cancel: WITHDRAW takes the arrival back (arrived - 1), BREAK breaks
 *     the barrier and completes every other waiter AP_CANCELED; a cancel
 *     after the generation was decided keeps the decided status
 *   - parties(), arrived(), generation(), is_broken() equal the model
 */
#include "asyncpat/barrier.h"
#include "fuzz_common.h"

#define NF 8

static int wakes[NF];
static void fz_wake(void *ctx) { wakes[(int)(intptr_t)ctx]++; }
static int fn_calls, in_arrival; /* fn must run inside an arrival we made */
static void fz_fn(void *ctx)
{
    FZ_CHECK(ctx == (void *)&fn_calls);
    FZ_CHECK(in_arrival);
    fn_calls++;
}

/* the model */
typedef struct mfut {
    int live;       /* initialised, not READY / cancelled */
    int arrived;    /* first poll done, pending */
    uint32_t gen;   /* generation it arrived in */
    ap_status dec;  /* AP_NOT_READY until its generation is decided */
    int registered; /* a waker is linked (pending poll since the last wake) */
    int expwakes;
} mfut;
static mfut mf[NF];
static uint32_t m_gen, m_parties, m_arrived, m_completions;
static int m_broken, m_fn;

/* decide every pending waiter: a completion (AP_OK), break or reset */
static void m_decide(ap_status st)
{
    for (int i = 0; i < NF; i++)
        if (mf[i].live && mf[i].arrived && mf[i].dec == AP_NOT_READY) {
            mf[i].dec = st;
            if (mf[i].registered) {
                mf[i].expwakes++;
                mf[i].registered = 0;
            }
        }
}

static void m_complete(void)
{
    m_completions++;
    m_gen++;
    m_arrived = 0;
    m_decide(AP_OK);
}

/* model arrival (not a drop): returns the status and sets *leader */
static ap_status m_arrive(int *leader)
{
    *leader = 0;
    if (m_parties == 0) return AP_INVAL;
    if (m_broken) return AP_CANCELED;
    m_arrived++;
    if (m_arrived == m_parties) {
        *leader = 1;
        m_complete();
    }
    return AP_OK;
}

static int pending_count(void)
{
    int k = 0;
    for (int i = 0; i < NF; i++) k += mf[i].live && mf[i].arrived && mf[i].dec == AP_NOT_READY;
    return k;
}

/* The use rule: a party arrives once per generation, and a party whose
 * future was decided but not yet collected is still inside that wait (it
 * cannot arrive again: "while a party waits in generation g, at most one
 * completion can happen" relies on it). So an arrival (or a drop) needs a
 * free party: arrived + occupied + 1 <= parties. Arrivals that do not
 * arrive (no party left, broken) are always allowed. */
static int can_arrive(void)
{
    if (m_parties == 0 || m_broken) return 1;
    int occ = 0;
    for (int i = 0; i < NF; i++) occ += mf[i].live && mf[i].arrived && mf[i].dec != AP_NOT_READY;
    return m_arrived + (uint32_t)occ + 1 <= m_parties;
}

static void check_state(ap_barrier *b, ap_barrier_wait_fut *fut)
{
    FZ_CHECK(ap_barrier_generation(b) == (m_gen & 0x7FFFFF));
    FZ_CHECK(ap_barrier_parties(b) == m_parties);
    FZ_CHECK(ap_barrier_arrived(b) == m_arrived);
    FZ_CHECK(ap_barrier_is_broken(b) == (m_broken != 0));
    FZ_CHECK(fn_calls == (m_fn ? (int)m_completions : 0));
    FZ_CHECK(m_arrived == (uint32_t)pending_count() || m_broken);
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == mf[i].expwakes);
        if (mf[i].live) FZ_CHECK(ap_barrier_wait_status(&fut[i]) == AP_NOT_READY);
    }
    /* a decided waiter has been woken if it was registered, and a waiter
     * still registered is undecided */
    for (int i = 0; i < NF; i++)
        if (mf[i].live && mf[i].registered) FZ_CHECK(mf[i].dec == AP_NOT_READY);
}

static void check_inval(fz *f)
{
    uint32_t p = fz_val32(f);
    uint8_t pol = fz_u8(f);
    ap_barrier_policy policy = (ap_barrier_policy)(pol < 0xF0 ? pol & 1 : pol);
    int bad = p == 0 || p > AP_BARRIER_PARTIES_MAX ||
              (policy != AP_BARRIER_POLICY_WITHDRAW && policy != AP_BARRIER_POLICY_BREAK);
    ap_barrier b;
    fz_fill(&b, sizeof b);
    ap_status st = ap_barrier_init(&b, p, policy, NULL, NULL);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b));
    } else {
        FZ_CHECK(st == AP_OK);
        FZ_CHECK(ap_barrier_parties(&b) == p && ap_barrier_arrived(&b) == 0);
        FZ_CHECK(ap_barrier_generation(&b) == 0 && !ap_barrier_is_broken(&b));
        ap_barrier_fini(&b);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    uint32_t parties = (c & 0xC0) == 0xC0 ? 1 + fz_val32(&f) % AP_BARRIER_PARTIES_MAX
                                          : 1 + (c & 7);
    ap_barrier_policy policy = (c & 8) ? AP_BARRIER_POLICY_BREAK : AP_BARRIER_POLICY_WITHDRAW;
    m_fn = (c & 16) != 0;
    ap_barrier b;
    FZ_CHECK(ap_barrier_init(&b, parties, policy, m_fn ? fz_fn : NULL, &fn_calls) == AP_OK);
    memset(mf, 0, sizeof mf);
    memset(wakes, 0, sizeof wakes);
    m_gen = 0; m_parties = parties; m_arrived = 0; m_completions = 0; m_broken = 0;
    fn_calls = 0;
    ap_barrier_wait_fut fut[NF];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        switch (op % 8) {
        case 0: case 1: case 2: { /* init (if free) + poll */
            if (!mf[i].live) {
                ap_barrier_wait_fut_init(&fut[i], &b);
                mf[i] = (mfut){1, 0, 0, AP_NOT_READY, 0, mf[i].expwakes};
                FZ_CHECK(ap_barrier_wait_status(&fut[i]) == AP_NOT_READY);
                if ((op & 0x0F) == 0x0A) break; /* init only: cancel before arriving */
            }
            int first = !mf[i].arrived;
            if (first && !can_arrive()) break;
            uint32_t g0 = m_gen;
            in_arrival = first;
            ap_poll r = ap_barrier_wait_poll(&fut[i], &cx[i]);
            in_arrival = 0;
            ap_status st = ap_barrier_wait_status(&fut[i]);
            if (first) {
                int leader;
                ap_status e = m_arrive(&leader);
                if (e != AP_OK || leader) {
                    FZ_CHECK(r == AP_READY && st == e);
                    FZ_CHECK(fut[i].is_leader == (leader != 0));
                    mf[i].live = 0;
                } else {
                    FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
                    mf[i].arrived = 1;
                    mf[i].gen = g0;
                    mf[i].registered = 1;
                }
            } else if (mf[i].dec != AP_NOT_READY) {
                FZ_CHECK(r == AP_READY && st == mf[i].dec);
                if (st == AP_OK) FZ_CHECK(!fut[i].is_leader);
                mf[i].live = 0;
            } else {
                /* not decided: no early completion */
                FZ_CHECK(r == AP_PENDING && st == AP_NOT_READY);
                mf[i].registered = 1;
            }
            break;
        }
        case 3: case 4: /* cancel */
            if (mf[i].live) {
                ap_barrier_wait_cancel(&fut[i]);
                ap_status st = ap_barrier_wait_status(&fut[i]);
                if (!mf[i].arrived) {
                    FZ_CHECK(st == AP_CANCELED);
                } else if (mf[i].dec != AP_NOT_READY) {
                    FZ_CHECK(st == mf[i].dec); /* decided: kept */
                } else {
                    FZ_CHECK(st == AP_CANCELED);
                    FZ_CHECK(fut[i].undid);
                    mf[i].live = 0; /* before m_decide: not one of the others */
                    if (policy == AP_BARRIER_POLICY_WITHDRAW) {
                        m_arrived--;
                    } else {
                        m_broken = 1;
                        m_arrived = 0;
                        m_decide(AP_CANCELED);
                    }
                }
                mf[i].live = 0;
                mf[i].registered = 0;
                /* idempotent, and READY from now on */
                ap_barrier_wait_cancel(&fut[i]);
                FZ_CHECK(ap_barrier_wait_status(&fut[i]) == st);
                FZ_CHECK(ap_barrier_wait_poll(&fut[i], &cx[i]) == AP_READY);
            }
            break;
        case 5: { /* arrive_and_drop */
            if (!can_arrive()) break;
            if (!(op & 0x80) && m_parties <= (uint32_t)pending_count() + 1 && !(op & 8))
                break; /* keep some parties around, mostly */
            bool leader = true;
            in_arrival = 1;
            ap_status st = ap_barrier_arrive_and_drop(&b, &leader);
            in_arrival = 0;
            if (m_parties == 0) {
                FZ_CHECK(st == AP_INVAL && !leader);
            } else {
                FZ_CHECK(st == AP_OK);
                m_parties--;
                int l = !m_broken && m_parties != 0 && m_arrived == m_parties;
                FZ_CHECK(leader == (l != 0));
                if (l) m_complete();
            }
            break;
        }
        case 6: /* reset */
            if ((op & 0x88) == 0x88 || m_broken) {
                ap_barrier_reset(&b);
                m_gen += 2;
                m_arrived = 0;
                m_broken = 0;
                m_decide(AP_CANCELED);
            }
            break;
        default: { /* a blocking wait that cannot block: deadline in the past */
            if (!can_arrive()) break;
            bool leader = true;
            int l;
            uint32_t a0 = m_arrived;
            in_arrival = 1;
            ap_status st = ap_barrier_wait_leader(&b, 0, &leader);
            in_arrival = 0;
            ap_status e = m_arrive(&l);
            if (e != AP_OK || l) {
                FZ_CHECK(st == e && leader == (l != 0));
            } else {
                /* timed out: withdrawn, or the barrier broken */
                FZ_CHECK(st == AP_TIMEDOUT && !leader);
                if (policy == AP_BARRIER_POLICY_WITHDRAW) {
                    m_arrived = a0;
                } else {
                    m_broken = 1;
                    m_arrived = 0;
                    m_decide(AP_CANCELED);
                }
            }
            break;
        }
        }
        check_state(&b, fut);
    }
    /* cancel what is left */
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_barrier_wait_cancel(&fut[i]);
        ap_status st = ap_barrier_wait_status(&fut[i]);
        if (!mf[i].arrived) FZ_CHECK(st == AP_CANCELED);
        else if (mf[i].dec != AP_NOT_READY) FZ_CHECK(st == mf[i].dec);
        else {
            FZ_CHECK(st == AP_CANCELED);
            mf[i].live = 0;
            if (policy == AP_BARRIER_POLICY_WITHDRAW) m_arrived--;
            else { m_broken = 1; m_arrived = 0; m_decide(AP_CANCELED); }
        }
        mf[i].live = 0;
        mf[i].registered = 0;
        check_state(&b, fut);
    }
    FZ_CHECK(!ap_waitlist_has_waiters(&b.wl));
    ap_barrier_fini(&b);
    return 0;
}
