/* tests/fuzz/fuzz_lifecycle.c -- libFuzzer harness for asyncpat/lifecycle.h
 *
 * Input: a single-threaded sequence of start / started(ok) / stop /
 * terminated / fail / enter / leave (leave only while the model has someone
 * inside), wait futures (up to 8, on RUNS, DRAINED, TERMINATES or an unknown
 * event) polled by hand with a counting waker and cancelled, and blocking
 * waits with a past deadline, checked against a sequential model of the
 * state machine in the header comment and of the waiter list:
 *   - init: on filled memory, NEW with nobody inside and no waiters
 *   - every call returns exactly the status its ERRORS line names for the
 *     model's state, moves the state only along the diagram, and leaves
 *     state and in-flight count unchanged otherwise; enter succeeds only
 *     while RUNNING; ap_life_state_of and ap_life_in_flight equal the model
 *   - a wait completes (AP_READY) exactly when its event is decided: RUNS:
 *     AP_OK in RUNNING, AP_CLOSED once past it without; DRAINED: AP_OK in
 *     TERMINATED, or STOPPING / FAILED with nobody inside; TERMINATES:
 *     AP_OK in TERMINATED, AP_CLOSED in FAILED; unknown event: AP_INVAL;
 *     a poll before that is AP_PENDING and registers the waker
 *   - every registered waiter is woken exactly once at each state change
 *     and when the drain reaches zero (the last leave of a STOPPING or
 *     FAILED lifecycle), and never otherwise (the waker counts); a cancel
 *     of a woken, not yet re-polled waiter passes the wake to the head of
 *     the list (ap_waitop); ap_waitlist_has_waiters equals the model
 *   - cancel: AP_CANCELED while pending, the decided status kept after;
 *     idempotent; a poll after it is AP_READY
 *   - ap_life_wait with a past deadline: the decided status, else
 *     AP_TIMEDOUT, with no waiter left behind and no wake lost
 * A start stays in progress from start() to started(): a stop or a
 * failure that lands meanwhile keeps its state, started() then answers
 * AP_CLOSED, and the drain and terminated() wait for that call.
 */
#include "asyncpat/lifecycle.h"
#include "fuzz_common.h"

#define NF 8

static int wakes[NF];
static void fz_wake(void *ctx) { wakes[(int)(intptr_t)ctx]++; }

/* the model */
typedef struct mfut {
    int live;      /* initialised and status AGAIN */
    int ev;
    int linked;    /* in the waiter list */
    int notified;  /* woken, not yet settled by a poll or cancel */
    int expwakes;
    ap_status st;  /* final status once not live */
} mfut;
static mfut mf[NF];
static int list[NF], nlist; /* linked futures, in registration order */
static ap_life_state m_state;
static bool m_sp; /* a start is in progress: start() .. started() */
static uint64_t m_in;

static void m_unlink(int i)
{
    for (int x = 0; x < nlist; x++)
        if (list[x] == i) {
            memmove(list + x, list + x + 1, (size_t)(nlist - x - 1) * sizeof *list);
            nlist--;
            mf[i].linked = 0;
            return;
        }
    FZ_CHECK(0);
}

static void m_wake_one(int i)
{
    m_unlink(i);
    mf[i].notified = 1;
    mf[i].expwakes++;
}

static void m_wake_all(void)
{
    while (nlist) m_wake_one(list[0]);
}

static void m_move(ap_life_state to)
{
    m_state = to;

    m_wake_all();
}

/* what the check of a waiter says now: AP_EMPTY = not yet */
static ap_status m_check(int ev)
{
    ap_life_state s = m_state;
    switch (ev) {
    case AP_LIFE_EVENT_RUNS:
        return s == AP_LIFE_STATE_RUNNING ? AP_OK : s < AP_LIFE_STATE_RUNNING ? AP_EMPTY : AP_CLOSED;
    case AP_LIFE_EVENT_DRAINED:
        return s == AP_LIFE_STATE_TERMINATED ||
                       ((s == AP_LIFE_STATE_STOPPING || s == AP_LIFE_STATE_FAILED) && m_in == 0 && !m_sp)
                   ? AP_OK
                   : AP_EMPTY;
    case AP_LIFE_EVENT_TERMINATES:
        return s == AP_LIFE_STATE_TERMINATED ? AP_OK : s == AP_LIFE_STATE_FAILED ? AP_CLOSED : AP_EMPTY;
    default:
        return AP_INVAL;
    }
}

static void check_state(ap_life *l, ap_life_wait_fut *fut)
{
    FZ_CHECK(ap_life_state_of(l) == m_state);
    FZ_CHECK(ap_life_in_flight(l) == m_in);
    FZ_CHECK(ap_waitlist_has_waiters(&l->wl) == (nlist > 0));
    for (int i = 0; i < NF; i++) {
        FZ_CHECK(wakes[i] == mf[i].expwakes);
        if (mf[i].live) FZ_CHECK(ap_life_wait_status(&fut[i]) == AP_NOT_READY);
        /* no lost wakeup: a waiter still linked has not been decided */
        if (mf[i].linked) FZ_CHECK(m_check(mf[i].ev) == AP_EMPTY);
    }
}

static void m_cancel(int i, ap_life_wait_fut *fut)
{
    if (mf[i].linked) {
        m_unlink(i);
    } else if (mf[i].notified) { /* the wake it had is passed on */
        mf[i].notified = 0;
        if (nlist) m_wake_one(list[0]);
    }
    ap_status st = ap_life_wait_status(&fut[i]);
    if (mf[i].live) {
        FZ_CHECK(st == AP_CANCELED);
        mf[i].live = 0;
        mf[i].st = AP_CANCELED;
    } else {
        FZ_CHECK(st == mf[i].st);
    }
}

static const int evs[4] = {AP_LIFE_EVENT_RUNS, AP_LIFE_EVENT_DRAINED, AP_LIFE_EVENT_TERMINATES, 0};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    ap_life l;
    fz_fill(&l, sizeof l);
    ap_life_init(&l);
    memset(mf, 0, sizeof mf);
    memset(wakes, 0, sizeof wakes);
    nlist = 0;
    m_state = AP_LIFE_STATE_NEW;
    m_sp = false;
    m_in = 0;
    ap_life_wait_fut fut[NF];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) {
        cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
        mf[i].st = AP_NOT_READY;
    }
    check_state(&l, fut);

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NF - 1);
        ap_status st, e;
        switch (op % 12) {
        case 0: /* start */
            st = ap_life_start(&l);
            if (m_state == AP_LIFE_STATE_NEW) {
                e = AP_OK;
                m_sp = true;
                m_move(AP_LIFE_STATE_STARTING);
            } else {
                e = m_state == AP_LIFE_STATE_STARTING || m_state == AP_LIFE_STATE_RUNNING ? AP_INVAL
                                                                               : AP_CLOSED;
            }
            FZ_CHECK(st == e);
            break;
        case 1: { /* started(ok) */
            bool ok = (op & 0x80) == 0;
            st = ap_life_started(&l, ok);
            if (!m_sp) {
                e = AP_INVAL; /* no start in progress */
            } else if (m_state == AP_LIFE_STATE_STARTING) {
                e = AP_OK;
                m_sp = false;
                m_move(ok ? AP_LIFE_STATE_RUNNING : AP_LIFE_STATE_FAILED);
            } else {
                /* a stop or failure came during the start: AP_CLOSED, ok
                 * or not; the state stays, the pending start ends */
                e = AP_CLOSED;
                m_sp = false;
                m_move(m_state); /* the word changed: every waiter is woken */
            }
            FZ_CHECK(st == e);
            break;
        }
        case 2: /* stop */
            st = ap_life_stop(&l);
            if (m_state == AP_LIFE_STATE_NEW) {
                e = AP_OK;
                m_move(AP_LIFE_STATE_TERMINATED);
            } else if (m_state == AP_LIFE_STATE_STARTING || m_state == AP_LIFE_STATE_RUNNING) {
                e = AP_OK;
                m_move(AP_LIFE_STATE_STOPPING);
            } else {
                e = AP_CLOSED;
            }
            FZ_CHECK(st == e);
            break;
        case 3: /* terminated */
            st = ap_life_terminated(&l);
            if (m_state == AP_LIFE_STATE_STOPPING && m_in == 0 && !m_sp) {
                e = AP_OK;
                m_move(AP_LIFE_STATE_TERMINATED);
            } else {
                e = m_state == AP_LIFE_STATE_STOPPING ? AP_NOT_READY : AP_INVAL;
            }
            FZ_CHECK(st == e);
            break;
        case 4: /* fail (rarely: it ends the interesting part) */
            if ((op & 0xC0) != 0xC0) break;
            st = ap_life_fail(&l);
            if (m_state != AP_LIFE_STATE_TERMINATED && m_state != AP_LIFE_STATE_FAILED) {
                e = AP_OK;
                m_move(AP_LIFE_STATE_FAILED);
            } else {
                e = AP_CLOSED;
            }
            FZ_CHECK(st == e);
            break;
        case 5: /* enter */
            st = ap_life_enter(&l);
            if (m_state == AP_LIFE_STATE_RUNNING) {
                e = AP_OK;
                m_in++;
            } else {
                e = m_state < AP_LIFE_STATE_RUNNING ? AP_NOT_READY : AP_CLOSED;
            }
            FZ_CHECK(st == e);
            break;
        case 6: /* leave */
            if (m_in == 0) break;
            ap_life_leave(&l);
            m_in--;
            if (m_in == 0 && (m_state == AP_LIFE_STATE_STOPPING || m_state == AP_LIFE_STATE_FAILED))
                m_wake_all();
            break;
        case 7: case 8: case 9: { /* init (if free) + poll */
            if (!mf[i].live) {
                int ev = evs[(op >> 7) | ((fz_u8(&f) & 1) << 1)];
                if (ev == 0 && (fz_u8(&f) & 1)) ev = 9;
                FZ_CHECK(!mf[i].linked && !mf[i].notified);
                ap_life_wait_fut_init(&fut[i], &l, (ap_life_event)ev);
                mf[i] = (mfut){1, ev, 0, 0, mf[i].expwakes, AP_NOT_READY};
                FZ_CHECK(ap_life_wait_status(&fut[i]) == AP_NOT_READY);
                if ((op & 0x0F) == 0x07) break; /* init only */
            }
            ap_poll r = ap_life_wait_poll(&fut[i], &cx[i]);
            mf[i].notified = 0; /* settled */
            e = m_check(mf[i].ev);
            if (e == AP_EMPTY) {
                FZ_CHECK(r == AP_PENDING && ap_life_wait_status(&fut[i]) == AP_NOT_READY);
                if (!mf[i].linked) {
                    list[nlist++] = i;
                    mf[i].linked = 1;
                }
            } else {
                FZ_CHECK(r == AP_READY && ap_life_wait_status(&fut[i]) == e);
                if (mf[i].linked) m_unlink(i); /* (check_state catches this) */
                mf[i].live = 0;
                mf[i].st = e;
            }
            break;
        }
        case 10: /* cancel (live or not: idempotent) */
            if (!mf[i].live && mf[i].st == AP_NOT_READY) break; /* never initialised */
            ap_life_wait_cancel(&fut[i]);
            m_cancel(i, fut);
            ap_life_wait_cancel(&fut[i]);
            m_cancel(i, fut);
            FZ_CHECK(ap_life_wait_poll(&fut[i], &cx[i]) == AP_READY);
            FZ_CHECK(ap_life_wait_status(&fut[i]) == mf[i].st);
            break;
        default: { /* a blocking wait that cannot block */
            int ev = evs[(op >> 4) & 3];
            if (ev == 0) ev = 7;
            st = ap_life_wait(&l, (ap_life_event)ev, 0);
            e = m_check(ev);
            FZ_CHECK(st == (e == AP_EMPTY ? AP_TIMEDOUT : e));
            break;
        }
        }
        check_state(&l, fut);
    }
    /* cancel what is left */
    for (int i = 0; i < NF; i++) {
        if (!mf[i].live) continue;
        ap_life_wait_cancel(&fut[i]);
        m_cancel(i, fut);
        check_state(&l, fut);
    }
    FZ_CHECK(!ap_waitlist_has_waiters(&l.wl));
    while (m_in) { /* the operations inside end */
        ap_life_leave(&l);
        m_in--;
    }
    FZ_CHECK(ap_life_in_flight(&l) == 0);
    return 0;
}
