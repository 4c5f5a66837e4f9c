/* tests/fuzz/fuzz_pipeline.c -- libFuzzer harness for asyncpat/pipeline.h
 *
 * Input: descs for the AP_INVAL paths (no desc, no stages, 0 stages, a
 * missing fn / size / capacity / buffer, limits and overflowing sizes, late
 * in the list too), bad worker_init and stage_stats arguments, then a
 * pipeline of 1..4 stages (8- or 16-byte elements, queues of capacity 1..4,
 * 1 or 2 workers each) whose stage functions emit, filter or fail each item
 * as the input chooses (per stage: a seed and a mix; failures return
 * assorted statuses, try_take's own AP_EMPTY / AP_CLOSED / AP_FULL among
 * them, and write an app_error, 0 or not, negative or not), and a single-threaded sequence of try_push, try_pop,
 * close, step calls (try_take, try_emit, stage_run with a budget), run
 * futures (one per worker, small budgets) and push / pop futures, all
 * polled and cancelled by hand with a counting waker. Checked against a
 * sequential model (a FIFO per queue, each worker idle / holding an item /
 * done) after every step:
 *   - init: AP_INVAL exactly for the bad descs (and for a queue buffer one
 *     byte short, or more stages than the records' size holds: issue #11),
 *     *p, the stage records and every queue buffer untouched; worker_init /
 *     stage_stats: AP_INVAL for a stage out of range, NULL or short scratch,
 *     one worker too many, nothing changed
 *   - every status of try_take / try_emit / stage_run / try_push / try_pop
 *     and of the futures is the model's; fn sees exactly the element the
 *     model pops, in FIFO order per queue; popped elements are the model's,
 *     byte for byte; with one worker per stage, FIFO end to end
 *   - a failed element is AP_EXHAUSTED from try_take, whatever fn
 *     returned, with fn's status and app_error in @fail (untouched on any
 *     other status); fn always finds *app_error 0 on entry
 *   - counters: per stage taken == emitted + filtered + failed + holding,
 *     last_error / last_app_error the last failure's pair, queued and
 *     finished as the model;
 *     entered == left + filtered + failed + in queues + held, always
 *   - close propagates: the last worker of a stage to finish closes its
 *     output, only after the input is closed and drained and nothing held;
 *     try_pop answers AP_CLOSED only when everything is accounted for
 *   - futures: a run future does what the model's worker does with its
 *     budget, finishes AP_OK after close and drain, and a cancel loses
 *     nothing (a held item stays); no lost wakeup: whenever a queue has an
 *     element (or room, or is closed), some future waiting on it was woken
 *     since its last poll
 *   - at the end, after close and drain: entered == left + filtered +
 *     failed, every stage finished, try_pop AP_CLOSED
 */
#include "asyncpat/pipeline.h"
#include "fuzz_common.h"

#define MAXS 4
#define MAXW 8            /* workers, 1..2 per stage */
#define NF (MAXW + 4)     /* run futures 0..7, push 8..9, pop 10..11 */
#define MAXCAP 4
#define MAXSZ 16
#define QB AP_MPMC_BYTES(MAXCAP, MAXSZ)

/* a counting waker */
static int wakes[NF];
static void fz_wake(void *ctx) { wakes[(int)(intptr_t)ctx]++; }

/* the stage functions: a behaviour per (stage, id) chosen by the input */
typedef struct sctx { size_t stage, in_size, out_size; uint8_t seed, mix; } sctx;
static sctx sc[MAXS];
/* fn's calls, in order; the model consumes them from cpos */
static struct { int stage; uint64_t id; } clog_[4096];
static int clen, cpos;
static const ap_status fails[8] = {AP_INVAL, AP_TIMEDOUT, AP_CLOSED,    AP_FULL,
                                   AP_EMPTY, AP_AGAIN,    AP_EXHAUSTED, AP_DROPPED};

enum { B_EMIT, B_FILTER, B_FAIL };
static int behave(size_t stage, uint64_t id, ap_status *err, int *app)
{
    const sctx *c = &sc[stage];
    uint32_t x = (uint32_t)(id * 0x9E3779B1u) ^ (uint32_t)(c->seed * 0x85EBCA6Bu);
    x ^= x >> 15;
    unsigned a = x % 8;
    *err = fails[(x >> 8) & 7];
    *app = (x >> 11) & 1 ? (int)(x >> 12) - (1 << 19) : 0;
    switch (c->mix & 3) {
    case 0: return B_EMIT;
    case 1: return a == 0 ? B_FILTER : B_EMIT;
    case 2: return a < 2 ? B_FILTER : a < 4 ? B_FAIL : B_EMIT;
    default: return a < 6 ? B_FAIL : B_EMIT;
    }
}
static void elem_bytes(uint64_t id, size_t marker, size_t sz, unsigned char *p)
{
    memcpy(p, &id, 8);
    for (size_t j = 8; j < sz; j++) p[j] = (unsigned char)(marker * 16 + j + (id & 0xf));
}
static ap_status stage_fn(void *ctx, const void *in, void *out, int *app_error)
{
    FZ_CHECK(*app_error == 0);
    sctx *c = (sctx *)ctx;
    uint64_t id;
    memcpy(&id, in, 8);
    unsigned char exp[MAXSZ];
    elem_bytes(id, c->stage, c->in_size, exp); /* stage i's input: marker i */
    FZ_CHECK(memcmp(in, exp, c->in_size) == 0);
    FZ_CHECK(clen < 4096);
    clog_[clen].stage = (int)c->stage;
    clog_[clen++].id = id;
    ap_status err;
    int b = behave(c->stage, id, &err, app_error); /* set also when not failing */
    if (b == B_EMIT) elem_bytes(id, c->stage + 1, c->out_size, (unsigned char *)out);
    return b == B_EMIT ? AP_OK : b == B_FILTER ? AP_FILTERED : err;
}

/* the model */
static size_t m_ns;
static size_t m_cap[MAXS + 1];      /* queue 0: input; queue i+1: stage i's output */
static uint64_t m_q[MAXS + 1][MAXCAP];
static size_t m_len[MAXS + 1];
static int m_closed[MAXS + 1];
static unsigned m_workers[MAXS], m_finished[MAXS];
static uint64_t m_taken[MAXS], m_emitted[MAXS], m_filtered[MAXS], m_failed[MAXS];
static ap_status m_lasterr[MAXS];
static int m_lastapp[MAXS];
static ap_pipeline_fail m_tfail; /* the model's last failed take */
static uint64_t m_entered, m_left, next_id, last_popped;
static uint64_t ent_ord[8192]; /* id -> its place in the input order */
static int all_single;
enum { W_IDLE, W_HOLD, W_DONE };
typedef struct mwk { size_t stage; int state; uint64_t held; } mwk;
static mwk mw[MAXW];
static size_t m_nw;
/* futures: what each waits on (queue, 0 = not_empty / 1 = not_full), live */
static int flive[NF], fwq[NF], fwdir[NF], fseen[NF];

static ap_status mq_push(size_t q, uint64_t id)
{
    if (m_closed[q]) return AP_CLOSED;
    if (m_len[q] == m_cap[q]) return AP_FULL;
    m_q[q][m_len[q]++] = id;
    return AP_OK;
}
static ap_status mq_pop(size_t q, uint64_t *id)
{
    if (!m_len[q]) return m_closed[q] ? AP_CLOSED : AP_EMPTY;
    *id = m_q[q][0];
    memmove(m_q[q], m_q[q] + 1, (m_len[q] - 1) * sizeof m_q[q][0]);
    m_len[q]--;
    return AP_OK;
}
static void m_finish(int w)
{
    size_t s = mw[w].stage;
    mw[w].state = W_DONE;
    if (++m_finished[s] == m_workers[s]) m_closed[s + 1] = 1;
}
/* the model's try_take; checks fn's call */
static ap_status m_take(int w)
{
    if (mw[w].state == W_DONE) return AP_CLOSED;
    if (mw[w].state == W_HOLD) return AP_FULL;
    size_t s = mw[w].stage;
    uint64_t id = 0;
    ap_status st = mq_pop(s, &id);
    if (st == AP_CLOSED) m_finish(w);
    if (st != AP_OK) return st;
    FZ_CHECK(cpos < clen && clog_[cpos].stage == (int)s && clog_[cpos].id == id);
    cpos++;
    m_taken[s]++;
    ap_status err;
    int app;
    int b = behave(s, id, &err, &app);
    if (b == B_EMIT) {
        mw[w].state = W_HOLD;
        mw[w].held = id;
        return AP_OK;
    }
    if (b == B_FILTER) {
        m_filtered[s]++;
        return AP_FILTERED;
    }
    m_failed[s]++;
    m_lasterr[s] = err;
    m_lastapp[s] = app;
    m_tfail = (ap_pipeline_fail){err, app};
    return AP_EXHAUSTED;
}
static ap_status m_emit(int w)
{
    if (mw[w].state != W_HOLD) return AP_EMPTY;
    ap_status st = mq_push(mw[w].stage + 1, mw[w].held);
    FZ_CHECK(st != AP_CLOSED);
    if (st == AP_OK) {
        mw[w].state = W_IDLE;
        m_emitted[mw[w].stage]++;
    }
    return st;
}
static ap_status m_stage_run(int w, size_t max, size_t *done)
{
    size_t n = 0;
    ap_status st = AP_OK;
    for (;;) {
        if (mw[w].state == W_HOLD && (st = m_emit(w)) != AP_OK) break;
        if (n == max) { st = AP_OK; break; }
        st = m_take(w);
        if (st != AP_OK && st != AP_FILTERED && st != AP_EXHAUSTED) break;
        n++;
    }
    *done = n;
    return st;
}
/* the model of a run future's poll: 1 = READY (finished) */
static int m_run_poll(int w, size_t budget, int fi)
{
    size_t n = 0;
    for (;;) {
        if (mw[w].state == W_DONE) return 1;
        if (mw[w].state == W_HOLD) {
            if (m_emit(w) == AP_FULL) { fwq[fi] = (int)mw[w].stage + 1; fwdir[fi] = 1; return 0; }
            continue;
        }
        if (n >= budget) { fwq[fi] = -1; return 0; } /* yields: woke itself */
        ap_status st = m_take(w);
        if (st == AP_EMPTY) { fwq[fi] = (int)mw[w].stage; fwdir[fi] = 0; return 0; }
        if (st == AP_CLOSED) continue;
        n++;
    }
}

static _Alignas(64) unsigned char qbuf[MAXS + 1][QB + 64];
static unsigned char scratch[MAXW][2][MAXSZ];

static void check_inval(fz *f)
{
    ap_pipeline p;
    ap_pipeline_stage st[MAXS];
    ap_pipeline_stage_desc sd[MAXS + 2];
    uint8_t c = fz_u8(f);
    size_t ns = (c & 1) ? fz_size(f) : (size_t)(c >> 1) % (MAXS + 2);
    ap_pipeline_desc d;
    d.in_size = (c & 2) ? fz_size(f) : 8;
    d.in_capacity = (c & 4) ? fz_size(f) : 1 + (c >> 5) % MAXCAP;
    d.in_buf = (c & 8) && (c & 16) ? NULL : qbuf[MAXS];
    d.in_bytes = sizeof qbuf[MAXS];
    d.stages = (c & 0xf8) == 0x10 ? NULL : sd;
    d.nstages = ns;
    int nodesc = (c & 0xf8) == 0x18, nostages = (c & 0xf8) == 0x28;
    unsigned __int128 lim = (unsigned __int128)(SIZE_MAX >> 4);
#define QNEED(cap, es) \
    ((unsigned __int128)(cap) * (sizeof(size_t) + ((unsigned __int128)(es) + sizeof(size_t) - 1) / sizeof(size_t) * sizeof(size_t)))
#define QOK(cap, es, buf, bytes)                                                              \
    ((cap) != 0 && (es) != 0 && (buf) != NULL && (unsigned __int128)(cap) <= lim &&           \
     (es) <= SIZE_MAX / 2 && QNEED(cap, es) <= SIZE_MAX && QNEED(cap, es) <= (bytes))
    /* sometimes one byte short (issue #11) */
    if ((c & 0x18) == 0x08 && QNEED(d.in_capacity, d.in_size) >= 1 &&
        QNEED(d.in_capacity, d.in_size) - 1 <= SIZE_MAX)
        d.in_bytes = (size_t)(QNEED(d.in_capacity, d.in_size) - 1);
    /* more stages than the records hold is AP_INVAL before any desc is read */
    int bad = nodesc || nostages || d.stages == NULL || ns == 0 || ns > MAXS ||
              !QOK(d.in_capacity, d.in_size, d.in_buf, d.in_bytes);
    size_t nd = ns < MAXS + 2 ? ns : MAXS + 2;
    for (size_t i = 0; i < nd; i++) {
        uint8_t k = fz_u8(f);
        sd[i].fn = (k & 7) == 1 ? NULL : stage_fn;
        sd[i].ctx = NULL;
        sd[i].out_size = (k & 7) == 2 ? fz_size(f) : (k & 7) == 3 ? 0 : 8;
        sd[i].capacity = (k & 7) == 4 ? fz_size(f) : (k & 7) == 5 ? 0 : 1 + (k >> 6);
        sd[i].buf = (k & 7) == 6 ? NULL : qbuf[i % MAXS];
        sd[i].bytes = (k & 7) == 7 ? (size_t)QNEED(sd[i].capacity, 8) - 1 : sizeof qbuf[i % MAXS];
        sd[i].workers = k >> 5;
        if (!bad && !(sd[i].fn && QOK(sd[i].capacity, sd[i].out_size, sd[i].buf, sd[i].bytes)))
            bad = 1;
    }
    /* ns > nd only with ns > MAXS: refused on the records' size, the descs
     * past nd are never read */
    fz_fill(&p, sizeof p);
    fz_fill(st, sizeof st);
    fz_fill(qbuf, sizeof qbuf);
    ap_status r = ap_pipeline_init(&p, nostages ? NULL : st, sizeof st, nodesc ? NULL : &d);
    if (bad) {
        FZ_CHECK(r == AP_INVAL);
        FZ_CHECK(fz_untouched(&p, sizeof p));
        FZ_CHECK(fz_untouched(st, sizeof st));
        FZ_CHECK(fz_untouched(qbuf, sizeof qbuf));
        return;
    }
    FZ_CHECK(r == AP_OK && ap_pipeline_nstages(&p) == ns);
    FZ_CHECK(ap_pipeline_entered(&p) == 0 && ap_pipeline_left(&p) == 0);
    for (size_t i = 0; i < ns; i++) {
        ap_pipeline_stats s;
        FZ_CHECK(ap_pipeline_stats_get(&p, i, &s) == AP_OK);
        FZ_CHECK(s.taken == 0 && s.workers == (sd[i].workers ? sd[i].workers : 1u) && s.finished == 0 &&
                 s.queued == 0 && s.last_error == AP_OK && s.last_app_error == 0);
    }
    ap_pipeline_fini(&p);
}

static void check_state(ap_pipeline *p, ap_pipeline_worker *w)
{
    uint64_t lost = 0, queued = 0, held = 0;
    for (size_t s = 0; s < m_ns; s++) {
        ap_pipeline_stats st;
        fz_fill(&st, sizeof st);
        FZ_CHECK(ap_pipeline_stats_get(p, s, &st) == AP_OK);
        uint64_t h = 0;
        for (size_t k = 0; k < m_nw; k++) h += mw[k].stage == s && mw[k].state == W_HOLD;
        FZ_CHECK(st.taken == m_taken[s] && st.emitted == m_emitted[s] && st.filtered == m_filtered[s] &&
                 st.failed == m_failed[s] && st.last_error == m_lasterr[s] &&
                 st.last_app_error == m_lastapp[s]);
        FZ_CHECK(st.taken == st.emitted + st.filtered + st.failed + h);
        FZ_CHECK(st.queued == m_len[s + 1] && st.workers == m_workers[s] && st.finished == m_finished[s]);
        lost += m_filtered[s] + m_failed[s];
        held += h;
    }
    ap_pipeline_stats junk;
    fz_fill(&junk, sizeof junk);
    FZ_CHECK(ap_pipeline_stats_get(p, m_ns, &junk) == AP_INVAL && fz_untouched(&junk, sizeof junk));
    for (size_t q = 0; q <= m_ns; q++) {
        ap_mpmc *mq = q == 0 ? &p->in : &p->stages[q - 1].out;
        FZ_CHECK(ap_mpmc_len(mq) == m_len[q]);
        FZ_CHECK(ap_mpmc_is_closed(mq) == (m_closed[q] != 0));
        queued += m_len[q];
    }
    FZ_CHECK(ap_pipeline_entered(p) == m_entered && ap_pipeline_left(p) == m_left);
    FZ_CHECK(m_entered == m_left + lost + queued + held);
    for (size_t k = 0; k < m_nw; k++) {
        FZ_CHECK(ap_pipeline_worker_holding(&w[k]) == (mw[k].state == W_HOLD));
        FZ_CHECK(ap_pipeline_worker_finished(&w[k]) == (mw[k].state == W_DONE));
    }
    /* no lost wakeup: a queue that can serve its waiters woke one of them */
    for (size_t q = 0; q <= m_ns; q++)
        for (int dir = 0; dir < 2; dir++) {
            int can = m_closed[q] || (dir == 0 ? m_len[q] > 0 : m_len[q] < m_cap[q]);
            if (!can) continue;
            int waiting = 0, woken = 0;
            for (int i = 0; i < NF; i++)
                if (flive[i] && fwq[i] == (int)q && fwdir[i] == dir) {
                    waiting = 1;
                    woken |= wakes[i] > fseen[i];
                }
            if (waiting) FZ_CHECK(woken);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c = fz_u8(&f);
    m_ns = 1 + (size_t)(c & 3);
    ap_pipeline_stage_desc sd[MAXS];
    size_t in_size = (c & 4) ? 16 : 8;
    m_cap[0] = 1 + (size_t)((c >> 3) & 3);
    all_single = 1;
    m_nw = 0;
    for (size_t s = 0; s < m_ns; s++) {
        uint8_t k = fz_u8(&f), seed = fz_u8(&f);
        sc[s] = (sctx){s, s == 0 ? in_size : sc[s - 1].out_size, (k & 1) ? 16 : 8, seed, (uint8_t)(k >> 1)};
        m_cap[s + 1] = 1 + (size_t)((k >> 3) & 3);
        unsigned nw = (k & 0x60) == 0x60 ? 2 : 1;
        if (m_nw + nw > MAXW) nw = 1;
        sd[s] = (ap_pipeline_stage_desc){stage_fn, &sc[s], sc[s].out_size, m_cap[s + 1], qbuf[s + 1],
                                         sizeof qbuf[s + 1], (k & 0x80) || nw == 2 ? nw : 0};
        m_workers[s] = nw;
        for (unsigned t = 0; t < nw; t++) mw[m_nw++] = (mwk){s, W_IDLE, 0};
        if (nw > 1) all_single = 0;
        m_finished[s] = 0;
        m_taken[s] = m_emitted[s] = m_filtered[s] = m_failed[s] = 0;
        m_lasterr[s] = AP_OK;
        m_lastapp[s] = 0;
    }
    ap_pipeline_desc d = {in_size, m_cap[0], qbuf[0], sizeof qbuf[0], sd, m_ns};
    ap_pipeline p;
    ap_pipeline_stage stg[MAXS];
    FZ_CHECK(ap_pipeline_init(&p, stg, sizeof stg, &d) == AP_OK);
    for (size_t q = 0; q <= m_ns; q++) { m_len[q] = 0; m_closed[q] = 0; }
    m_entered = m_left = next_id = 0;
    memset(ent_ord, 0xff, sizeof ent_ord);
    last_popped = 0;
    clen = cpos = 0;
    ap_pipeline_worker w[MAXW];
    for (size_t k = 0; k < m_nw; k++) {
        FZ_CHECK(ap_pipeline_worker_init(&w[k], scratch[k][0], sizeof scratch[k][0], scratch[k][1],
                                         sizeof scratch[k][1], &p, mw[k].stage) == AP_OK);
    }
    /* bad worker_init: out of range, NULL or short scratch, one too many */
    {
        ap_pipeline_worker x;
        unsigned char sx[2][MAXSZ];
        const size_t z = MAXSZ, sh = (size_t)(c >> 6) % m_ns;
        fz_fill(&x, sizeof x);
        FZ_CHECK(ap_pipeline_worker_init(&x, sx[0], z, sx[1], z, &p, m_ns + (c >> 6)) == AP_INVAL);
        FZ_CHECK(ap_pipeline_worker_init(&x, NULL, z, sx[1], z, &p, 0) == AP_INVAL);
        FZ_CHECK(ap_pipeline_worker_init(&x, sx[0], z, NULL, z, &p, 0) == AP_INVAL);
        FZ_CHECK(ap_pipeline_worker_init(&x, sx[0], sc[sh].in_size - 1, sx[1], z, &p, sh) == AP_INVAL);
        FZ_CHECK(ap_pipeline_worker_init(&x, sx[0], z, sx[1], sc[sh].out_size - 1, &p, sh) == AP_INVAL);
        FZ_CHECK(ap_pipeline_worker_init(&x, sx[0], z, sx[1], z, &p, sh) == AP_INVAL);
        FZ_CHECK(fz_untouched(&x, sizeof x));
        for (size_t s = 0; s < m_ns; s++)
            FZ_CHECK(AP_ATOMIC_LOAD(&stg[s].attached, memory_order_relaxed) == m_workers[s]);
    }
    ap_pipeline_run_fut rf[MAXW];
    size_t rbudget[MAXW];
    ap_pipeline_push_fut pf[2];
    ap_pipeline_pop_fut qf[2];
    uint64_t pf_id[2];
    unsigned char pin[2][MAXSZ], pout[2][MAXSZ];
    ap_cx cx[NF];
    for (int i = 0; i < NF; i++) {
        cx[i] = (ap_cx){{fz_wake, (void *)(intptr_t)i}, 0, UINT64_MAX};
        flive[i] = 0;
        wakes[i] = fseen[i] = 0;
    }
    size_t out_size = sc[m_ns - 1].out_size;

#define CHECK_POPPED(buf, id)                                                      \
    do {                                                                           \
        unsigned char e_[MAXSZ];                                                   \
        elem_bytes(id, m_ns, out_size, e_);                                        \
        FZ_CHECK(memcmp(buf, e_, out_size) == 0);                                  \
        FZ_CHECK(id < next_id && ent_ord[id] != UINT64_MAX);                       \
        if (all_single) {                                                          \
            FZ_CHECK(ent_ord[id] >= last_popped);                                  \
            last_popped = ent_ord[id] + 1;                                         \
        }                                                                          \
        ent_ord[id] = UINT64_MAX; /* exactly once */                               \
    } while (0)

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int k = (int)((op >> 4) % m_nw);
        switch (op % 8) {
        case 0: { /* try_push */
            unsigned char e[MAXSZ];
            elem_bytes(next_id, 0, in_size, e);
            ap_status st = ap_pipeline_try_push(&p, e);
            ap_status ex = mq_push(0, next_id);
            FZ_CHECK(st == ex);
            if (ex == AP_OK) { ent_ord[next_id++] = m_entered++; }
            break;
        }
        case 1: { /* try_pop */
            unsigned char o[MAXSZ];
            fz_fill(o, sizeof o);
            uint64_t id = 0;
            ap_status st = ap_pipeline_try_pop(&p, o);
            FZ_CHECK(st == mq_pop(m_ns, &id));
            if (st == AP_OK) { m_left++; CHECK_POPPED(o, id); }
            else FZ_CHECK(fz_untouched(o, sizeof o));
            break;
        }
        case 2: case 3: { /* step calls on a worker without a live run future */
            if (flive[k]) break;
            ap_status st, ex;
            if ((op & 0x08) == 0) {
                ap_pipeline_fail why = {(ap_status)99, 0x5a5a};
                st = ap_pipeline_try_take(&w[k], (op & 0x40) ? NULL : &why);
                ex = m_take(k);
                if (ex == AP_EXHAUSTED && !(op & 0x40))
                    FZ_CHECK(why.error == m_tfail.error && why.app_error == m_tfail.app_error);
                else
                    FZ_CHECK(why.error == (ap_status)99 && why.app_error == 0x5a5a);
            } else if (op & 0x80) {
                st = ap_pipeline_try_emit(&w[k]);
                ex = m_emit(k);
            } else {
                size_t max = fz_u8(&f) % 6, done = 999, edone = 0;
                st = ap_pipeline_stage_run(&w[k], max, (op & 0x40) ? NULL : &done);
                ex = m_stage_run(k, max, &edone);
                if (!(op & 0x40)) FZ_CHECK(done == edone);
            }
            FZ_CHECK(st == ex);
            break;
        }
        case 4: { /* run future: init (if free) + poll */
            if (!flive[k]) {
                rbudget[k] = fz_u8(&f) % 4;
                ap_pipeline_run_fut_init(&rf[k], &w[k], rbudget[k]);
                if (rbudget[k] == 0) rbudget[k] = 64;
                flive[k] = 1;
                FZ_CHECK(ap_pipeline_run_status(&rf[k]) == AP_NOT_READY);
            }
            fseen[k] = wakes[k];
            int yielded_wakes = wakes[k];
            ap_poll r = ap_pipeline_run_poll(&rf[k], &cx[k]);
            int done = m_run_poll(k, rbudget[k], k);
            if (done) {
                FZ_CHECK(r == AP_READY && ap_pipeline_run_status(&rf[k]) == AP_OK);
                flive[k] = 0;
            } else {
                FZ_CHECK(r == AP_PENDING && ap_pipeline_run_status(&rf[k]) == AP_NOT_READY);
                if (fwq[k] == -1) FZ_CHECK(wakes[k] > yielded_wakes); /* asked to run again */
                else fseen[k] = wakes[k];
            }
            break;
        }
        case 5: { /* push / pop futures */
            int j = (op >> 4) & 1, i;
            if (op & 0x40) { /* push */
                i = MAXW + j;
                if (!flive[i]) {
                    pf_id[j] = next_id++; /* reserved */
                    elem_bytes(pf_id[j], 0, in_size, pin[j]);
                    ap_pipeline_push_fut_init(&pf[j], &p, pin[j]);
                    flive[i] = 1;
                }
                fseen[i] = wakes[i];
                ap_poll r = ap_pipeline_push_poll(&pf[j], &cx[i]);
                ap_status ex = mq_push(0, pf_id[j]);
                if (ex == AP_FULL) {
                    FZ_CHECK(r == AP_PENDING && ap_pipeline_push_status(&pf[j]) == AP_NOT_READY);
                    fwq[i] = 0; fwdir[i] = 1;
                    fseen[i] = wakes[i];
                } else {
                    FZ_CHECK(r == AP_READY && ap_pipeline_push_status(&pf[j]) == ex);
                    if (ex == AP_OK) ent_ord[pf_id[j]] = m_entered++;
                    flive[i] = 0;
                }
            } else { /* pop */
                i = MAXW + 2 + j;
                if (!flive[i]) {
                    fz_fill(pout[j], sizeof pout[j]);
                    ap_pipeline_pop_fut_init(&qf[j], &p, pout[j]);
                    flive[i] = 1;
                }
                ap_poll r = ap_pipeline_pop_poll(&qf[j], &cx[i]);
                uint64_t id = 0;
                ap_status ex = mq_pop(m_ns, &id);
                if (ex == AP_EMPTY) {
                    FZ_CHECK(r == AP_PENDING && ap_pipeline_pop_status(&qf[j]) == AP_NOT_READY);
                    FZ_CHECK(fz_untouched(pout[j], sizeof pout[j]));
                    fwq[i] = (int)m_ns; fwdir[i] = 0;
                    fseen[i] = wakes[i];
                } else {
                    FZ_CHECK(r == AP_READY && ap_pipeline_pop_status(&qf[j]) == ex);
                    if (ex == AP_OK) { m_left++; CHECK_POPPED(pout[j], id); }
                    else FZ_CHECK(fz_untouched(pout[j], sizeof pout[j]));
                    flive[i] = 0;
                }
            }
            break;
        }
        case 6: { /* cancel a future */
            int i = (op & 0x80) ? k : MAXW + ((op >> 4) & 3);
            if (!flive[i]) break;
            if (i < MAXW) {
                int before = mw[i].state;
                ap_pipeline_run_cancel(&rf[i]);
                FZ_CHECK(ap_pipeline_run_status(&rf[i]) == AP_CANCELED);
                ap_pipeline_run_cancel(&rf[i]);
                FZ_CHECK(ap_pipeline_run_status(&rf[i]) == AP_CANCELED);
                FZ_CHECK(ap_pipeline_run_poll(&rf[i], &cx[i]) == AP_READY);
                FZ_CHECK(mw[i].state == before); /* loses nothing */
            } else if (i < MAXW + 2) {
                ap_pipeline_push_cancel(&pf[i - MAXW]);
                FZ_CHECK(ap_pipeline_push_status(&pf[i - MAXW]) == AP_CANCELED);
            } else {
                ap_pipeline_pop_cancel(&qf[i - MAXW - 2]);
                FZ_CHECK(ap_pipeline_pop_status(&qf[i - MAXW - 2]) == AP_CANCELED);
                FZ_CHECK(fz_untouched(pout[i - MAXW - 2], sizeof pout[0]));
            }
            flive[i] = 0;
            break;
        }
        default: /* close (rarely) */
            if ((op & 0x80) && (op & 0x08)) {
                ap_pipeline_close(&p);
                m_closed[0] = 1;
            }
            break;
        }
        FZ_CHECK(cpos == clen); /* fn ran exactly as the model */
        cpos = clen = 0;
        check_state(&p, w);
    }
    /* cancel what is left; close; drain with step calls and pops */
    for (int i = 0; i < NF; i++) {
        if (!flive[i]) continue;
        if (i < MAXW) ap_pipeline_run_cancel(&rf[i]);
        else if (i < MAXW + 2) ap_pipeline_push_cancel(&pf[i - MAXW]);
        else ap_pipeline_pop_cancel(&qf[i - MAXW - 2]);
        flive[i] = 0;
    }
    ap_pipeline_close(&p);
    m_closed[0] = 1;
    for (int round = 0; round < 10000; round++) {
        int busy = 0;
        for (size_t k = 0; k < m_nw; k++) {
            size_t done, edone;
            ap_status st = ap_pipeline_stage_run(&w[k], 3, &done);
            FZ_CHECK(st == m_stage_run((int)k, 3, &edone) && done == edone);
            busy |= mw[k].state != W_DONE;
        }
        unsigned char o[MAXSZ];
        uint64_t id;
        ap_status st;
        while ((st = ap_pipeline_try_pop(&p, o)) == AP_OK) {
            FZ_CHECK(mq_pop(m_ns, &id) == AP_OK);
            m_left++;
            CHECK_POPPED(o, id);
        }
        FZ_CHECK(st == mq_pop(m_ns, &id));
        FZ_CHECK(cpos == clen);
        cpos = clen = 0;
        check_state(&p, w);
        if (!busy) { FZ_CHECK(st == AP_CLOSED); break; }
    }
    uint64_t lost = 0;
    for (size_t s = 0; s < m_ns; s++) {
        FZ_CHECK(m_finished[s] == m_workers[s]);
        lost += m_filtered[s] + m_failed[s];
    }
    FZ_CHECK(m_entered == m_left + lost);
    unsigned char o[MAXSZ];
    FZ_CHECK(ap_pipeline_try_pop(&p, o) == AP_CLOSED);
    ap_pipeline_fini(&p);
    return 0;
}
