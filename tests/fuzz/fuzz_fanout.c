/* tests/fuzz/fuzz_fanout.c -- libFuzzer harness for asyncpat/fanout.h
 *
 * Input: a desc (child count 0..16, limit 0 / small / huge, policy FIRST,
 * ALL, IGNORE or out of range, with or without a result callback and an
 * order array), then a single-threaded sequence of: set polls (at a
 * decoded time, with one of two counting set wakers or none), set cancels,
 * and hand-controlled children: each is told by the input when to become
 * READY and with what result (AP_OK, failures, AP_NOT_READY), whether to wake
 * itself inside its next poll, and which timer (cx->deadline) to ask for;
 * the input also calls the wakers the children were polled with. Checked
 * against a sequential model of the join set (start pass in input order
 * with finished children's successors started and polled at once, timer
 * pass over the in-flight children, newest started first, ready pass in
 * wake order (FIFO), wakes during the ready pass left for the next poll):
 *   - init: AP_INVAL exactly for limit 0 or a policy out of range, and then
 *     the set and the records untouched
 *   - the exact sequence of child polls and child cancels of every set
 *     poll and cancel, and the set's waker calls (which waker, how often)
 *   - never more than min(limit, n) children in flight (polled and not
 *     finished); children start in input order; a child is never polled
 *     after READY or cancel, never cancelled unless in flight, never
 *     polled or cancelled if never started, polled at most 3 times per
 *     set poll
 *   - the result callback is called once per completed child, right after
 *     its READY, with its index and future
 *   - the set's status (AP_OK / first failure in completion order / AP_OK
 *     under IGNORE / AP_CANCELED; a result of AP_NOT_READY reads AP_TIMEDOUT),
 *     each child's status, completed, failed, canceled, in_flight and the
 *     completion order array equal the model after every step
 *   - a PENDING set poll lowers cx->deadline to at most the earliest
 *     timer of an in-flight child
 */
#include "asyncpat/fanout.h"
#include "fuzz_common.h"

#define NK 16

enum { M_IDLE, M_RUN, M_DONE, M_CANC };

typedef struct kid {
    ap_future base;
    size_t idx;
    /* behaviour, set by the input */
    int ready, self_wake;
    ap_status result;
    uint64_t want; /* the deadline it asks for on a PENDING poll */
    /* observed */
    int started, done, polls_now, results;
    ap_waker waker; /* from its latest poll */
} kid;

static kid kids[NK];
static size_t n_kids, lim_eff;
static int plog[1024], plen;  /* child polls, in order, of the current op */
static int clog_[NK], clen;   /* child cancels */
static int result_expect = -1; /* the kid whose READY we just returned */
static int has_result;

static ap_poll kid_poll(ap_future *f, ap_cx *cx)
{
    kid *k = (kid *)(void *)f;
    FZ_CHECK(!k->done); /* never polled after READY or cancel */
    if (has_result) FZ_CHECK(result_expect == -1); /* the last READY's result was read */
    if (!k->started) {
        /* within the limit. (No input-order check of first polls here: a
         * finished child's successor is polled at once, before earlier
         * admitted siblings get their first poll; admission is in input
         * order, which the model's poll log checks.) */
        size_t inflight = 0;
        for (size_t j = 0; j < n_kids; j++) inflight += kids[j].started && !kids[j].done;
        FZ_CHECK(inflight + 1 <= lim_eff);
        k->started = 1;
    }
    FZ_CHECK(plen < 1024);
    plog[plen++] = (int)k->idx;
    k->polls_now++;
    FZ_CHECK(k->polls_now <= 3);
    FZ_CHECK(cx->deadline == AP_DEADLINE_NONE);
    if (k->ready) {
        k->done = 1;
        k->waker = AP_WAKER_NONE;
        result_expect = (int)k->idx;
        return AP_READY;
    }
    k->waker = cx->waker;
    if (k->self_wake) {
        k->self_wake = 0;
        ap_waker_wake(cx->waker);
    }
    ap_cx_wake_at(cx, k->want);
    return AP_PENDING;
}

static void kid_cancel(ap_future *f)
{
    kid *k = (kid *)(void *)f;
    /* once, never after READY. The code cancels every admitted child,
     * also one admitted in this set poll and not yet polled (FIRST stops
     * the set before the drain reaches it): future.h allows a cancel
     * before the first poll; the model's cancel log checks exactly which
     * children are cancelled. */
    FZ_CHECK(!k->done);
    if (has_result) FZ_CHECK(result_expect == -1);
    k->done = 1;
    k->waker = AP_WAKER_NONE;
    FZ_CHECK(clen < NK);
    clog_[clen++] = (int)k->idx;
}

static ap_status kid_result(void *ctx, size_t index, ap_future *f)
{
    FZ_CHECK(ctx == (void *)kids);
    FZ_CHECK(index < n_kids && f == &kids[index].base);
    FZ_CHECK(result_expect == (int)index); /* right after its READY */
    result_expect = -1;
    kids[index].results++;
    FZ_CHECK(kids[index].results == 1);
    return kids[index].result;
}

static int set_wakes[2];
static void set_wake(void *ctx) { set_wakes[(int)(intptr_t)ctx]++; }

/* ---- the model ---- */
typedef struct mkid {
    int state, started, queued, ready, self_wake;
    ap_status result, status;
    uint64_t want, deadline;
} mkid;
static struct {
    mkid k[NK];
    size_t n, limit, next_start, completed, failed, canceled;
    ap_fanout_policy policy;
    int has_result;
    int run[NK], nrun;     /* in-flight list, newest started first */
    int work[NK * 2], nwork; /* stack, top at the end */
    int fifo[NK], nfifo;   /* woken, in wake order */
    size_t order[NK];
    ap_status first_error, status;
    int started, done, waker; /* waker: -1 none, 0/1 the counting ones */
    int wakes[2];
    int plog[1024], plen, clog_[NK], clen;
} M;

static void m_wake(int i)
{
    if (M.k[i].queued) return;
    M.k[i].queued = 1;
    M.fifo[M.nfifo++] = i;
    if (M.waker >= 0) M.wakes[M.waker]++;
}

static void m_unlink(int i)
{
    int j = 0;
    for (int r = 0; r < M.nrun; r++)
        if (M.run[r] != i) M.run[j++] = M.run[r];
    FZ_CHECK(j == M.nrun - 1);
    M.nrun = j;
}

static void m_start_next(void)
{
    int i = (int)M.next_start++;
    M.k[i].state = M_RUN;
    M.k[i].started = 1;
    memmove(M.run + 1, M.run, (size_t)M.nrun * sizeof M.run[0]);
    M.run[0] = i;
    M.nrun++;
    M.work[M.nwork++] = i;
}

static void m_stop(void)
{
    while (M.nrun) {
        int i = M.run[0];
        m_unlink(i);
        M.k[i].state = M_CANC;
        M.k[i].status = AP_CANCELED;
        M.canceled++;
        M.clog_[M.clen++] = i;
    }
    while (M.next_start < M.n) {
        int i = (int)M.next_start++;
        M.k[i].state = M_CANC;
        M.k[i].status = AP_CANCELED;
        M.canceled++;
    }
    M.nwork = 0;
}

static void m_finish(int i)
{
    m_unlink(i);
    M.k[i].state = M_DONE;
    ap_status st = M.has_result ? M.k[i].result : AP_OK;
    if (st == AP_NOT_READY) st = AP_TIMEDOUT;
    M.k[i].status = st;
    M.order[M.completed++] = (size_t)i;
    if (st != AP_OK) {
        M.failed++;
        if (M.first_error == AP_OK) M.first_error = st;
        if (M.policy == AP_FANOUT_POLICY_FIRST) {
            m_stop();
            M.status = st;
            M.done = 1;
            return;
        }
    }
    if (M.next_start < M.n) m_start_next();
}

static void m_poll_child(int i)
{
    mkid *c = &M.k[i];
    if (c->state != M_RUN) return;
    M.plog[M.plen++] = i;
    if (c->ready) {
        m_finish(i);
        return;
    }
    if (c->self_wake) {
        c->self_wake = 0;
        m_wake(i);
    }
    c->deadline = c->want;
}

static void m_drain(void)
{
    while (M.nwork && !M.done) m_poll_child(M.work[--M.nwork]);
}

static ap_poll m_poll(uint64_t now, int waker)
{
    if (M.done) return AP_READY;
    M.waker = waker;
    if (!M.started) {
        M.started = 1;
        size_t first = M.limit < M.n ? M.limit : M.n;
        for (size_t j = 0; j < first; j++) m_start_next();
        /* input order: the first child on top of the stack */
        for (int a = 0, b = M.nwork - 1; a < b; a++, b--) {
            int t = M.work[a];
            M.work[a] = M.work[b];
            M.work[b] = t;
        }
        m_drain();
    }
    /* timers: every in-flight child whose deadline passed, newest first
     * (the ones started during the pass are not visited) */
    if (!M.done) {
        int snap[NK], ns = M.nrun;
        memcpy(snap, M.run, sizeof snap);
        for (int r = 0; r < ns && !M.done; r++)
            if (M.k[snap[r]].state == M_RUN && M.k[snap[r]].deadline <= now)
                m_poll_child(snap[r]);
        m_drain();
    }
    if (!M.done) {
        int taken[NK], nt = M.nfifo;
        memcpy(taken, M.fifo, sizeof taken);
        M.nfifo = 0;
        for (int t = 0; t < nt && !M.done; t++) {
            M.k[taken[t]].queued = 0;
            m_poll_child(taken[t]);
            m_drain();
        }
    }
    if (!M.done && M.nrun == 0 && M.next_start >= M.n) {
        M.status = M.policy == AP_FANOUT_POLICY_IGNORE ? AP_OK : M.first_error;
        M.done = 1;
    }
    return M.done ? AP_READY : AP_PENDING;
}

static ap_status pick_result(fz *f)
{
    static const ap_status r[] = {AP_OK, AP_OK, AP_OK, AP_NOT_READY, AP_CLOSED, AP_TIMEDOUT,
                                  AP_CANCELED, AP_INVAL};
    return r[fz_u8(f) & 7];
}

static void check_all(ap_fanout *s, const size_t *order)
{
    FZ_CHECK(plen == M.plen && memcmp(plog, M.plog, (size_t)plen * sizeof plog[0]) == 0);
    FZ_CHECK(clen == M.clen && memcmp(clog_, M.clog_, (size_t)clen * sizeof clog_[0]) == 0);
    FZ_CHECK(set_wakes[0] == M.wakes[0] && set_wakes[1] == M.wakes[1]);
    FZ_CHECK(ap_fanout_status(s) == (M.done ? M.status : AP_NOT_READY));
    FZ_CHECK(ap_fanout_completed(s) == M.completed);
    FZ_CHECK(ap_fanout_failed(s) == M.failed);
    FZ_CHECK(ap_fanout_canceled(s) == M.canceled);
    FZ_CHECK(ap_fanout_in_flight(s) == (size_t)M.nrun);
    FZ_CHECK(M.completed + M.canceled + (size_t)M.nrun + (M.n - M.next_start) == M.n);
    size_t inflight = 0;
    for (size_t i = 0; i < M.n; i++) {
        ap_status cs = ap_fanout_child_status(s, i);
        FZ_CHECK(cs == (M.k[i].state == M_DONE || M.k[i].state == M_CANC ? M.k[i].status : AP_NOT_READY));
        FZ_CHECK(cs != AP_NOT_READY || !M.done);
        /* started = polled at least once: every started child is polled in
         * the poll that starts it (or cancelled, if FIRST stopped first) */
        if (M.k[i].started && M.k[i].state != M_CANC) FZ_CHECK(kids[i].started);
        if (!M.k[i].started) FZ_CHECK(!kids[i].started);
        if (M.k[i].state == M_RUN) FZ_CHECK(kids[i].started && !kids[i].done);
        if (M.k[i].state == M_DONE) FZ_CHECK(kids[i].started && kids[i].done);
        if (M.k[i].state == M_CANC) FZ_CHECK(kids[i].done == M.k[i].started);
        if (!M.k[i].started) FZ_CHECK(!kids[i].done);
        inflight += kids[i].started && !kids[i].done;
    }
    FZ_CHECK(inflight == (size_t)M.nrun && inflight <= lim_eff);
    if (order) FZ_CHECK(memcmp(order, M.order, M.completed * sizeof order[0]) == 0);
    if (M.done) FZ_CHECK(M.nrun == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    uint8_t c = fz_u8(&f);
    size_t n = fz_u8(&f) % (NK + 1);
    size_t limit;
    switch (c & 3) {
    case 0: limit = (c & 4) ? 0 : 1; break;
    case 1: limit = 1 + fz_u8(&f) % (NK + 2); break;
    case 2: limit = fz_size(&f); break;
    default: limit = 1 + (c >> 4) % 4; break;
    }
    uint8_t pb = fz_u8(&f);
    ap_fanout_policy policy = (ap_fanout_policy)(pb < 0xF0 ? pb % 3 : pb);
    static ap_future *children[NK];
    static ap_fanout_child recs[NK];
    static size_t order[NK];
    memset(kids, 0, sizeof kids);
    for (size_t i = 0; i < NK; i++) {
        kids[i].base.poll = kid_poll;
        kids[i].base.cancel = kid_cancel;
        kids[i].idx = i;
        kids[i].result = AP_OK;
        kids[i].want = AP_DEADLINE_NONE;
        children[i] = &kids[i].base;
    }
    has_result = (c & 8) != 0;
    int has_order = (c & 64) == 0;
    ap_fanout_desc d = {children, n, limit, policy, has_result ? kid_result : NULL,
                        (void *)kids, has_order ? order : NULL};
    static ap_fanout s;
    fz_fill(&s, sizeof s);
    fz_fill(recs, sizeof recs);
    fz_fill(order, sizeof order);
    /* the records' size in bytes: all of them, or (c & 128) one byte short */
    size_t rbytes = (c & 128) && n > 0 ? AP_FANOUT_BYTES(n) - 1 : sizeof recs;
    ap_status st = ap_fanout_init(&s, recs, rbytes, &d);
    if (limit == 0 || (unsigned)policy > (unsigned)AP_FANOUT_POLICY_IGNORE ||
        rbytes < AP_FANOUT_BYTES(n)) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&s, sizeof s) && fz_untouched(recs, sizeof recs));
        FZ_CHECK(fz_untouched(order, sizeof order));
        return 0;
    }
    FZ_CHECK(st == AP_OK);
    n_kids = n;
    lim_eff = limit < n ? limit : n;
    memset(&M, 0, sizeof M);
    M.n = n; M.limit = limit; M.policy = policy; M.has_result = has_result;
    M.first_error = AP_OK; M.status = AP_NOT_READY; M.waker = -1;
    for (size_t i = 0; i < NK; i++) {
        M.k[i].result = AP_OK;
        M.k[i].status = AP_NOT_READY;
        M.k[i].want = M.k[i].deadline = AP_DEADLINE_NONE;
    }
    set_wakes[0] = set_wakes[1] = 0;
    uint64_t now = fz_u8(&f);

    for (int steps = 0; fz_more(&f) && steps < 1024; steps++) {
        uint8_t op = fz_u8(&f);
        int i = n ? (int)((op >> 3) % n) : 0;
        plen = clen = 0;
        M.plen = M.clen = 0;
        switch (op & 7) {
        case 0: case 1: { /* poll the set */
            int w = (op & 0x40) ? ((op & 0x80) ? -1 : 1) : 0;
            ap_cx cx = {w < 0 ? AP_WAKER_NONE : (ap_waker){set_wake, (void *)(intptr_t)w}, now,
                        (op & 1) ? AP_DEADLINE_NONE : now + 1000000};
            uint64_t dl0 = cx.deadline;
            for (size_t j = 0; j < n; j++) kids[j].polls_now = 0;
            ap_poll r = ap_fanout_poll(&s, &cx);
            FZ_CHECK(result_expect == -1 || !has_result);
            result_expect = -1;
            ap_poll e = m_poll(now, w);
            FZ_CHECK(r == e);
            if (r == AP_PENDING) {
                uint64_t lo = dl0;
                for (int k = 0; k < M.nrun; k++)
                    if (M.k[M.run[k]].deadline < lo) lo = M.k[M.run[k]].deadline;
                FZ_CHECK(cx.deadline <= lo);
            } else {
                FZ_CHECK(cx.deadline <= dl0);
            }
            break;
        }
        case 2: /* time passes */
            now += (op & 0x80) ? fz_u16(&f) : fz_u8(&f);
            break;
        case 3: /* a child becomes ready with a result */
            if (n) {
                kids[i].ready = M.k[i].ready = 1;
                kids[i].result = M.k[i].result = pick_result(&f);
            }
            break;
        case 4: /* call a child's waker (as its event source would) */
            if (n && kids[i].started && !kids[i].done && kids[i].waker.wake) {
                ap_waker_wake(kids[i].waker);
                m_wake(i);
            }
            break;
        case 5: /* a child wakes itself inside its next poll / asks for a timer */
            if (n) {
                if (op & 0x80) {
                    kids[i].self_wake = M.k[i].self_wake = 1;
                } else {
                    uint8_t t = fz_u8(&f);
                    uint64_t want = t == 0xFF ? AP_DEADLINE_NONE : now + (t & 0x7F) - ((t & 0x80) ? 64 : 0);
                    kids[i].want = M.k[i].want = want;
                }
            }
            break;
        case 6: /* ready + wake in one go (the common event) */
            if (n && kids[i].started && !kids[i].done && kids[i].waker.wake) {
                kids[i].ready = M.k[i].ready = 1;
                kids[i].result = M.k[i].result = (op & 0x80) ? pick_result(&f) : AP_OK;
                ap_waker_wake(kids[i].waker);
                m_wake(i);
            }
            break;
        default: /* cancel the set (rarely) */
            if ((op & 0xC0) == 0xC0) {
                ap_fanout_cancel(&s);
                if (!M.done) {
                    m_stop();
                    M.status = AP_CANCELED;
                    M.done = 1;
                }
                ap_fanout_cancel(&s); /* idempotent */
                ap_cx cx = {{set_wake, (void *)(intptr_t)0}, now, AP_DEADLINE_NONE};
                FZ_CHECK(ap_fanout_poll(&s, &cx) == AP_READY);
            }
            break;
        }
        check_all(&s, has_order ? order : NULL);
    }
    /* finish: cancel; then nothing is in flight and no child waker is held */
    plen = clen = 0;
    M.plen = M.clen = 0;
    ap_fanout_cancel(&s);
    if (!M.done) {
        m_stop();
        M.status = AP_CANCELED;
        M.done = 1;
    }
    check_all(&s, has_order ? order : NULL);
    for (size_t j = 0; j < n; j++) {
        FZ_CHECK(kids[j].results == (M.k[j].state == M_DONE && has_result));
        FZ_CHECK(!kids[j].started || kids[j].done);
    }
    return 0;
}
