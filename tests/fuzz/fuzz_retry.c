/* tests/fuzz/fuzz_retry.c -- libFuzzer harness for asyncpat/retry.h
 *
 * Input: a retry desc with any values (invalid and extreme ones included),
 * a budget desc, an rng seed, a delay sequence, and a retry future over
 * scripted attempt futures on a fake clock, checked against:
 *   - ap_retry_state_init / ap_retry_fut_init / ap_retry_budget_init:
 *     AP_INVAL exactly for the documented bad descs, and then the object
 *     is untouched (pattern compare); AP_OK resolves the defaults
 *   - ap_retry_next_delay: never above cap_ns, never below the policy's
 *     floor (FIXED == b, EXPONENTIAL == e_k, FULL in [0, e_k], EQUAL in
 *     [e_k - e_k/2, e_k], DECORRELATED in [b, min(c, floor(d*m/1000))]),
 *     with e_k from an independent 128-bit model; hints within
 *     [min(hint, hint_cap), hint_cap]
 *   - the retry future, against a model fed the same rng and budget
 *     decisions: attempts <= max_attempts, no attempt starts at or after
 *     the deadline nor before the backoff's start, status AP_NOT_READY
 *     exactly while running (and never after), stop/status/last_error/
 *     app_error as the model says (the status table of status.h:
 *     AP_EXHAUSTED for attempts or budget spent, the error itself when
 *     permanent, AP_TIMEDOUT for the deadline; an AP_NOT_READY error is
 *     always retried), cx->deadline lowered to the next start and the
 *     deadline, every
 *     started attempt completed or cancelled exactly once; with
 *     op.canceled set (half the inputs), every started attempt reported
 *     exactly once, by result() or by canceled() (after its own cancel,
 *     with the cutting poll's now, or the last poll's for a cancel);
 *     status AP_TIMEDOUT only when the deadline ended the retry or the
 *     op's own AP_TIMEDOUT was permanent; app_error is the last completed
 *     attempt's (result() finds 0 in *app_error on entry)
 */
#include "asyncpat/retry.h"
#include "fuzz_common.h"

static ap_status errs[] = {AP_OK, AP_AGAIN, AP_TIMEDOUT, AP_FULL, AP_REJECTED,
                           AP_INVAL, AP_CLOSED, AP_CANCELED, AP_EMPTY, AP_NOMEM};

static uint32_t pred_mask;
static bool fz_pred(ap_status err, void *ctx)
{
    (void)ctx;
    return (pred_mask >> (unsigned)err) & 1;
}

static void decode_desc(fz *f, ap_retry_desc *d, int sane)
{
    memset(d, 0, sizeof *d);
    if (sane) {
        d->max_attempts = fz_u8(f) % 12;
        d->backoff = (ap_retry_backoff)(fz_u8(f) % 6);
        d->initial_ns = fz_u16(f);
        d->cap_ns = (fz_u8(f) & 1) ? fz_u32(f) % 1000000 : 0;
        d->multiplier_permille = (fz_u8(f) & 1) ? 1000 + fz_u16(f) : 0;
        d->hint_cap_ns = (fz_u8(f) & 1) ? fz_u32(f) % 1000000 : 0;
        d->hint_jitter_permille = (fz_u8(f) & 1) ? fz_u16(f) % 1100 : 0;
    } else {
        d->max_attempts = fz_val32(f);
        d->backoff = (ap_retry_backoff)(fz_u8(f) % 8);
        d->initial_ns = fz_val(f);
        d->cap_ns = fz_val(f);
        d->multiplier_permille = fz_val32(f);
        d->hint_cap_ns = fz_val(f);
        d->hint_jitter_permille = fz_val32(f);
    }
    if (fz_u8(f) & 1) {
        d->retryable = fz_pred;
        pred_mask = fz_u16(f);
    }
}

static int desc_bad(const ap_retry_desc *in, ap_retry_desc *r)
{
    ap_retry_desc d = *in;
    if (d.backoff == 0) d.backoff = AP_RETRY_BACKOFF_FULL_JITTER;
    if (d.initial_ns == 0) d.initial_ns = 100 * AP_NS_PER_MS;
    if (d.cap_ns == 0) d.cap_ns = 30 * AP_NS_PER_SEC;
    if (d.multiplier_permille == 0)
        d.multiplier_permille = d.backoff == AP_RETRY_BACKOFF_DECORRELATED_JITTER ? 3000 : 2000;
    if (d.hint_cap_ns == 0) d.hint_cap_ns = d.cap_ns;
    *r = d;
    return d.max_attempts == 0 || (unsigned)d.backoff > AP_RETRY_BACKOFF_DECORRELATED_JITTER ||
           d.multiplier_permille < 1000 || d.initial_ns > d.cap_ns || d.hint_jitter_permille > 1000;
}

static uint64_t mul_pm(uint64_t x, uint64_t m)
{
    unsigned __int128 v = (unsigned __int128)x * m / 1000;
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static int needs_rng(const ap_retry_desc *d)
{
    return d->backoff == AP_RETRY_BACKOFF_FULL_JITTER || d->backoff == AP_RETRY_BACKOFF_EQUAL_JITTER ||
           d->backoff == AP_RETRY_BACKOFF_DECORRELATED_JITTER || d->hint_jitter_permille != 0;
}

/* A delay sequence against the model. */
static void check_delays(fz *f, const ap_retry_desc *desc)
{
    ap_retry_state st;
    ap_retry_desc r;
    int bad = desc_bad(desc, &r);
    fz_fill(&st, sizeof st);
    ap_status s = ap_retry_state_init(&st, desc);
    if (bad) {
        FZ_CHECK(s == AP_INVAL);
        FZ_CHECK(fz_untouched(&st, sizeof st));
        return;
    }
    FZ_CHECK(s == AP_OK);
    FZ_CHECK(memcmp(&st.desc, &r, sizeof r) == 0);
    ap_retry_desc rr = ap_retry_desc_resolved(desc);
    FZ_CHECK(memcmp(&rr, &r, sizeof r) == 0);
    ap_rng rng;
    ap_rng_seed(&rng, fz_u64(f));
    uint64_t b = r.initial_ns, c = r.cap_ns, m = r.multiplier_permille;
    uint64_t e = b, prev = b;
    int n = fz_u8(f) % 70;
    for (int k = 0; k < n; k++) {
        uint64_t hint = (fz_u8(f) & 3) == 0 ? fz_val(f) : 0;
        uint64_t dly;
        if (hint) {
            dly = ap_retry_next_delay_hint(&st, &rng, hint);
            FZ_CHECK(dly <= r.hint_cap_ns);
            FZ_CHECK(dly >= (hint < r.hint_cap_ns ? hint : r.hint_cap_ns));
            if (r.hint_jitter_permille == 0) FZ_CHECK(dly == (hint < r.hint_cap_ns ? hint : r.hint_cap_ns));
            /* the policy's sequence advanced as if used: resync the model
             * from the state (its delay is not visible) */
            if (r.backoff == AP_RETRY_BACKOFF_DECORRELATED_JITTER) {
                FZ_CHECK(st.cur >= b && st.cur <= c);
                FZ_CHECK(st.cur <= (mul_pm(prev, m) < c ? mul_pm(prev, m) : c));
                prev = st.cur;
            } else if (r.backoff != AP_RETRY_BACKOFF_FIXED) {
                uint64_t ne = mul_pm(e, m);
                e = ne < c ? ne : c;
                FZ_CHECK(st.cur == e);
            }
        } else {
            dly = ap_retry_next_delay(&st, &rng);
            FZ_CHECK(dly <= c);
            switch (r.backoff) {
            case AP_RETRY_BACKOFF_FIXED: FZ_CHECK(dly == b); break;
            case AP_RETRY_BACKOFF_EXPONENTIAL: FZ_CHECK(dly == e); break;
            case AP_RETRY_BACKOFF_FULL_JITTER: FZ_CHECK(dly <= e); break;
            case AP_RETRY_BACKOFF_EQUAL_JITTER: FZ_CHECK(dly >= e - e / 2 && dly <= e); break;
            default: {
                uint64_t hi = mul_pm(prev, m);
                FZ_CHECK(dly >= (b < c ? b : c));
                FZ_CHECK(dly <= (hi < c ? hi : c));
                prev = dly;
                break;
            }
            }
            if (r.backoff != AP_RETRY_BACKOFF_DECORRELATED_JITTER && r.backoff != AP_RETRY_BACKOFF_FIXED) {
                uint64_t ne = mul_pm(e, m);
                e = ne < c ? ne : c;
            }
        }
        FZ_CHECK(st.retries == (uint32_t)(k + 1));
    }
}

static void check_budget_init(fz *f)
{
    ap_retry_budget_desc d = {fz_val32(f), fz_val32(f), fz_val(f)};
    uint32_t ratio = d.ratio_permille == 0 ? 200 : d.ratio_permille == AP_RETRY_BUDGET_ZERO ? 0 : d.ratio_permille;
    uint64_t win = d.window_ns == 0 ? 10 * AP_NS_PER_SEC : d.window_ns;
    int bad = ratio > 1000000u || win < AP_RETRY_BUDGET_SLOTS || win > 3600 * AP_NS_PER_SEC;
    ap_retry_budget b;
    fz_fill(&b, sizeof b);
    ap_status s = ap_retry_budget_init(&b, &d);
    if (bad) {
        FZ_CHECK(s == AP_INVAL);
        FZ_CHECK(fz_untouched(&b, sizeof b));
    } else {
        FZ_CHECK(s == AP_OK);
        ap_retry_budget_stats z;
        ap_retry_budget_stats_get(&b, &z);
        FZ_CHECK(z.requests == 0 && z.retries == 0 && z.denied == 0);
    }
}

/* ---- scripted attempts ---- */
typedef struct attempt {
    ap_future base;
    int polls_left; /* PENDING this many times, then READY */
    ap_status err;
    int app; /* the application error result() reports */
    uint64_t hint;
    int done, canceled;
} attempt;

static struct {
    fz *f;
    attempt a;
    int live; /* started, neither READY nor cancelled */
    uint32_t started;
    uint64_t last_start;
    uint64_t deadline;
    uint64_t *nowp;
    uint64_t min_start; /* the model's next start */
    uint64_t poll_now;  /* cx->now of the last poll */
    uint32_t reports;   /* result() and canceled() calls */
} S;

/* the model, fed from the attempt callbacks (one poll may run several
 * attempts when delays are 0) */
static ap_retry_desc M_r;
static ap_retry_state M_st;
static ap_rng M_rng;
static ap_retry_budget M_budget;
static int M_use_budget;
static ap_status exp_status, exp_last;
static ap_retry_stop exp_stop;
static int exp_app;

/* the model's predicate, written out: "not yet" is always retried */
static int model_retryable(ap_status err)
{
    if (err == AP_NOT_READY) return 1;
    if (M_r.retryable) return fz_pred(err, NULL);
    return err != AP_INVAL && err != AP_CANCELED && err != AP_CLOSED;
}

static void model_outcome(ap_status err, int app, uint64_t hint, uint64_t now)
{
    exp_app = app;
    if (err == AP_OK) { exp_stop = AP_RETRY_STOP_SUCCEEDED; exp_status = AP_OK; exp_last = AP_OK; return; }
    exp_last = err;
    FZ_CHECK(ap_retry_is_retryable(&M_r, err) == (bool)model_retryable(err));
    if (!model_retryable(err)) { exp_stop = AP_RETRY_STOP_PERMANENT; exp_status = err; }
    else if (S.started >= M_r.max_attempts) { exp_stop = AP_RETRY_STOP_EXHAUSTED; exp_status = AP_EXHAUSTED; }
    else {
        uint64_t d = hint ? ap_retry_next_delay_hint(&M_st, &M_rng, hint) : ap_retry_next_delay(&M_st, &M_rng);
        uint64_t at = ap_deadline_after(now, d);
        if (at >= S.deadline) { exp_stop = AP_RETRY_STOP_DEADLINE; exp_status = AP_TIMEDOUT; }
        else if (M_use_budget && !ap_retry_budget_try_withdraw(&M_budget, now)) {
            exp_stop = AP_RETRY_STOP_BUDGET; exp_status = AP_EXHAUSTED;
        } else S.min_start = at;
    }
}

static ap_poll att_poll(ap_future *self, ap_cx *cx)
{
    (void)cx;
    attempt *a = (attempt *)(void *)self;
    FZ_CHECK(!a->done && !a->canceled);
    if (a->polls_left > 0) { a->polls_left--; return AP_PENDING; }
    a->done = 1;
    S.live = 0;
    return AP_READY;
}
static void att_cancel(ap_future *self)
{
    attempt *a = (attempt *)(void *)self;
    FZ_CHECK(!a->canceled);
    a->canceled = 1;
    if (!a->done) S.live = 0;
}
static ap_future *att_start(void *ctx, void *storage, uint32_t k, uint64_t now)
{
    (void)ctx;
    FZ_CHECK(storage == &S.a);
    FZ_CHECK(!S.live);
    FZ_CHECK(k == S.started);
    FZ_CHECK(now == *S.nowp);
    FZ_CHECK(now < S.deadline);     /* never at or after the deadline */
    FZ_CHECK(now >= S.min_start);   /* never before the backoff ends */
    FZ_CHECK(exp_stop == AP_RETRY_STOP_RUNNING);
    if (k == 0 && M_use_budget) ap_retry_budget_deposit(&M_budget, now);
    S.started++;
    S.last_start = now;
    attempt *a = &S.a;
    memset(a, 0, sizeof *a);
    a->base.poll = att_poll;
    a->base.cancel = att_cancel;
    a->polls_left = fz_u8(S.f) % 4;
    /* one byte for both (the corpus decodes as before): the error, the
     * table's "not yet" and "exhausted" (a nested retry's) at the top,
     * and the application error */
    uint8_t eb = fz_u8(S.f);
    a->err = eb >= 253 ? AP_EXHAUSTED : eb >= 250 ? AP_NOT_READY
                                                  : errs[eb % (sizeof errs / sizeof errs[0])];
    a->app = eb / 10;
    a->hint = (fz_u8(S.f) & 7) == 0 ? fz_val(S.f) % 5000000 : 0;
    S.live = 1;
    return &a->base;
}
static ap_status att_result(void *ctx, ap_future *fut, int *app, uint64_t *hint)
{
    (void)ctx;
    attempt *a = (attempt *)(void *)fut;
    FZ_CHECK(a == &S.a && a->done && !a->canceled);
    FZ_CHECK(*hint == 0);
    FZ_CHECK(*app == 0);
    *hint = a->hint;
    *app = a->app;
    FZ_CHECK(exp_stop == AP_RETRY_STOP_RUNNING);
    S.reports++;
    model_outcome(a->err, a->app, a->hint, *S.nowp);
    return a->err;
}
static void att_canceled(void *ctx, ap_future *fut, uint64_t now)
{
    (void)ctx;
    attempt *a = (attempt *)(void *)fut;
    FZ_CHECK(a == &S.a && a->canceled && !a->done); /* after its own cancel */
    FZ_CHECK(now == S.poll_now);
    S.reports++;
    FZ_CHECK(S.reports == S.started); /* once per attempt */
}

static void check_future(fz *f)
{
    ap_retry_desc desc;
    decode_desc(f, &desc, 1);
    ap_retry_desc r;
    int bad = desc_bad(&desc, &r);
    ap_rng rng;
    uint64_t seed = fz_u64(f);
    ap_rng_seed(&rng, seed);
    ap_rng_seed(&M_rng, seed);
    int use_budget = fz_u8(f) & 1;
    M_use_budget = use_budget;
    ap_retry_budget budget;
    ap_retry_budget_desc bd = {fz_u8(f) % 4 == 0 ? AP_RETRY_BUDGET_ZERO : fz_u16(f),
                               fz_u8(f) % 2 ? AP_RETRY_BUDGET_ZERO : fz_u8(f) % 4,
                               1000 + fz_u32(f) % 100000000};
    FZ_CHECK(ap_retry_budget_init(&budget, &bd) == AP_OK);
    FZ_CHECK(ap_retry_budget_init(&M_budget, &bd) == AP_OK);
    uint64_t now = fz_u16(f);
    uint64_t deadline = (fz_u8(f) & 3) ? now + fz_u32(f) % 10000000 : AP_DEADLINE_NONE;
    int hook = (int)(seed >> 63); /* no input byte of its own: the corpus decodes as before */
    ap_retry_op op = {.start = att_start, .result = att_result, .storage = &S.a,
                      .canceled = hook ? att_canceled : NULL};
    ap_retry_fut fut;
    fz_fill(&fut, sizeof fut);
    ap_rng *rp = (needs_rng(&r) || (fz_u8(f) & 1)) ? &rng : NULL;
    ap_status s = ap_retry_fut_init(&fut, &desc, rp, use_budget ? &budget : NULL, &op, deadline);
    if (bad) {
        FZ_CHECK(s == AP_INVAL);
        FZ_CHECK(fz_untouched(&fut, sizeof fut));
        return;
    }
    FZ_CHECK(s == AP_OK);
    FZ_CHECK(ap_retry_fut_status(&fut) == AP_NOT_READY);
    FZ_CHECK(ap_retry_fut_result(&fut).app_error == 0);
    memset(&S, 0, sizeof S);
    S.f = f; S.deadline = deadline; S.nowp = &now; S.min_start = 0;
    M_r = r;
    FZ_CHECK(ap_retry_state_init(&M_st, &desc) == AP_OK);
    exp_status = AP_NOT_READY; exp_last = AP_OK; exp_stop = AP_RETRY_STOP_RUNNING; exp_app = 0;
    int finished = 0;

    for (int steps = 0; steps < 512 && !finished; steps++) {
        uint8_t o = fz_u8(f);
        if (!fz_more(f) && (o == 0)) o = 1;
        if ((o & 15) == 15) { /* cancel */
            int was_live = S.live;
            ap_retry_fut_cancel(&fut);
            if (was_live) FZ_CHECK(S.a.canceled && !S.live);
            exp_status = AP_CANCELED; exp_stop = AP_RETRY_STOP_CANCELED;
            finished = 1;
        } else {
            ap_cx cx = {{NULL, NULL}, now, AP_DEADLINE_NONE};
            uint32_t started_before = S.started;
            S.poll_now = now;
            ap_poll p = ap_retry_fut_poll(&fut, &cx);
            ap_retry_result res = ap_retry_fut_result(&fut);
            FZ_CHECK(res.attempts == S.started);
            FZ_CHECK(res.attempts <= r.max_attempts);
            FZ_CHECK((res.status == AP_NOT_READY) == (res.stop == AP_RETRY_STOP_RUNNING));
            FZ_CHECK(res.app_error == exp_app);
            FZ_CHECK((p == AP_PENDING) == (res.stop == AP_RETRY_STOP_RUNNING));
            (void)started_before;
            if (p == AP_PENDING) {
                FZ_CHECK(cx.deadline <= deadline);
                if (!S.live) { /* backing off: woken at the next start */
                    FZ_CHECK(S.min_start > now);
                    FZ_CHECK(cx.deadline <= S.min_start);
                }
            }
            if (p == AP_READY) {
                finished = 1;
                if (exp_stop == AP_RETRY_STOP_RUNNING) {
                    /* only the deadline ends a retry without an outcome */
                    FZ_CHECK(now >= deadline);
                    exp_stop = AP_RETRY_STOP_DEADLINE; exp_status = AP_TIMEDOUT;
                    if (S.started == 0 || S.a.canceled) exp_last = AP_TIMEDOUT;
                }
                FZ_CHECK(!S.live); /* the attempt in flight was cancelled */
                FZ_CHECK(res.stop == exp_stop);
                FZ_CHECK(res.status == exp_status);
                FZ_CHECK(res.last_error == exp_last);
            } else {
                FZ_CHECK(res.stop == AP_RETRY_STOP_RUNNING && exp_stop == AP_RETRY_STOP_RUNNING);
                /* advance the fake clock: a little, to the wake time, or a jump */
                uint8_t t = fz_u8(f);
                if ((t & 3) == 0 && cx.deadline != AP_DEADLINE_NONE && cx.deadline > now) now = cx.deadline;
                else if ((t & 3) == 1) now = ap_deadline_after(now, fz_val(f) % 20000000);
                else now = ap_deadline_after(now, t);
            }
        }
        FZ_CHECK(ap_retry_fut_status(&fut) == exp_status || !finished);
    }
    if (!finished) {
        ap_retry_fut_cancel(&fut);
        exp_status = AP_CANCELED; exp_stop = AP_RETRY_STOP_CANCELED;
    }
    FZ_CHECK(!S.live);
    ap_retry_result res = ap_retry_fut_result(&fut);
    FZ_CHECK(res.status == exp_status && res.stop == exp_stop);
    FZ_CHECK(res.app_error == exp_app);
    FZ_CHECK(res.status != AP_NOT_READY);
    /* AP_TIMEDOUT: the deadline, or the op's own AP_TIMEDOUT as permanent */
    FZ_CHECK((res.status == AP_TIMEDOUT) == (res.stop == AP_RETRY_STOP_DEADLINE) ||
             (res.stop == AP_RETRY_STOP_PERMANENT && res.last_error == AP_TIMEDOUT));
    /* AP_EXHAUSTED: exactly attempts or budget spent (or the op's own, permanent) */
    FZ_CHECK((res.status == AP_EXHAUSTED) ==
                 (res.stop == AP_RETRY_STOP_EXHAUSTED || res.stop == AP_RETRY_STOP_BUDGET) ||
             (res.stop == AP_RETRY_STOP_PERMANENT && res.last_error == AP_EXHAUSTED));
    if (hook)
        FZ_CHECK(S.reports == S.started); /* every started attempt reported once */
    /* idempotent cancel and poll after completion */
    ap_retry_fut_cancel(&fut);
    ap_cx cx = {{NULL, NULL}, now, AP_DEADLINE_NONE};
    FZ_CHECK(ap_retry_fut_poll(&fut, &cx) == AP_READY);
    if (hook)
        FZ_CHECK(S.reports == S.started);
    res = ap_retry_fut_result(&fut);
    FZ_CHECK(res.status == exp_status && res.stop == exp_stop);
    if (use_budget) {
        ap_retry_budget_stats a, b;
        ap_retry_budget_stats_get(&budget, &a);
        ap_retry_budget_stats_get(&M_budget, &b);
        FZ_CHECK(memcmp(&a, &b, sizeof a) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    ap_retry_desc d;
    decode_desc(&f, &d, fz_u8(&f) & 1);
    check_delays(&f, &d);
    check_budget_init(&f);
    check_future(&f);
    return 0;
}
