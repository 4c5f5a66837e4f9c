/*
 * tests/test_resilience.c -- the composed call: limiter -> bulkhead ->
 *                            breaker -> timeout(attempt), inside a retry
 *
 * Everything runs on a fake clock: a driver sets cx.now, polls, and when
 * every call is pending jumps now to the earliest cx.deadline. Attempts are
 * scripted futures that count their own polls, completions and cancels
 * (the ledger the library is checked against). The random-fault test runs
 * thousands of seeded scenarios (AP_TEST_SEED) of several calls sharing one
 * bucket, one semaphore and one breaker, with attempts that succeed, fail,
 * hang or return application errors, random cancels and deadlines, and
 * checks the theorem of resilience.h at the end of each: every bulkhead
 * permit back, the breaker conserved with no half-open probe slot held
 * (and a fresh allow admitted once the open time is over), tokens taken ==
 * attempts the limiter admitted, every started attempt completed or
 * cancelled exactly once.
 */
#include "asyncpat/resilience.h"
#include "test_util.h"

static ap_breaker_stats breaker_stats_of(ap_breaker *x)
{
    ap_breaker_stats s;
    ap_breaker_stats_get(x, &s);
    return s;
}

static ap_resil_stats resil_stats_of(const ap_resil_fut *x)
{
    ap_resil_stats s;
    ap_resil_stats_get(x, &s);
    return s;
}

static ap_retry_budget_stats retry_budget_stats_of(ap_retry_budget *x)
{
    ap_retry_budget_stats s;
    ap_retry_budget_stats_get(x, &s);
    return s;
}

#define MS AP_NS_PER_MS
#define LEASE_NS (UINT64_C(1) << 50) /* probe leases never expire here */

/* ---- scripted attempts ---- */

enum { K_OK, K_FAIL, K_PERM, K_HANG };

typedef struct ledger {
    int starts, completions, cancels, bad; /* bad: polled after done, double cancel */
    int results;                           /* result hook calls */
} ledger;

typedef struct tatt {
    ap_future base;
    int kind;
    uint64_t done_at;
    bool done, cancelled;
    ledger *L;
} tatt;

static ap_poll tatt_poll(ap_future *f, ap_cx *cx)
{
    tatt *a = (tatt *)(void *)f;
    if (a->done || a->cancelled) {
        a->L->bad++;
        return AP_READY;
    }
    if (a->kind != K_HANG && cx->now >= a->done_at) {
        a->done = true;
        a->L->completions++;
        return AP_READY;
    }
    if (a->kind != K_HANG)
        ap_cx_wake_at(cx, a->done_at);
    return AP_PENDING;
}

static void tatt_cancel(ap_future *f)
{
    tatt *a = (tatt *)(void *)f;
    if (a->done || a->cancelled) {
        a->L->bad++;
        return;
    }
    a->cancelled = true;
    a->L->cancels++;
}

/* One call's script: the kind and duration of each attempt. */
typedef struct script {
    int kind[8];
    uint64_t dur[8];
    tatt att;
    ledger *L;
    uint32_t last_index;
} script;

static ap_future *s_start(void *ctx, uint32_t k, uint64_t now)
{
    script *s = ctx;
    s->L->starts++;
    s->last_index = k;
    s->att = (tatt){{tatt_poll, tatt_cancel}, s->kind[k & 7], now + s->dur[k & 7], false, false,
                    s->L};
    return &s->att.base;
}

static ap_status s_result(void *ctx, ap_future *f, int *app, uint64_t *hint)
{
    script *s = ctx;
    tatt *a = (tatt *)(void *)f;
    (void)hint;
    s->L->results++;
    if (a != &s->att || !a->done)
        s->L->bad++;
    switch (a->kind) {
    case K_OK: *app = 200; return AP_OK;
    case K_FAIL: *app = 503; return AP_REJECTED; /* the server shed it */
    default: *app = 404; return AP_EMPTY; /* not retryable (the predicate below) */
    }
}

static bool pred(ap_status err, void *ctx)
{
    (void)ctx;
    return err == AP_TIMEDOUT || err == AP_REJECTED;
}

/* Drive one call alone to completion; returns the final now. */
static uint64_t drive(ap_resil_fut *f, uint64_t now)
{
    for (int i = 0; i < 10000; i++) {
        ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
        if (ap_resil_fut_poll(f, &cx) == AP_READY)
            return now;
        EXPECT_NE(cx.deadline, AP_DEADLINE_NONE, "pending with nothing to wait for");
        EXPECT_GT(cx.deadline, now, "asks for a re-poll in the past");
        now = cx.deadline;
    }
    EXPECT(0, "did not finish");
    return now;
}

static ap_breaker *new_breaker(uint32_t K, uint64_t open_ns)
{
    ap_breaker *b;
    ap_breaker_desc d = {.window_size = 4, .min_calls = 2, .failure_rate_pct = 50,
                         .open_ns = open_ns, .half_open_probes = K, .probe_lease_ns = LEASE_NS};
    EXPECT_EQ(ap_breaker_create(&b, &d, NULL), AP_OK);
    return b;
}

static void trip(ap_breaker *b, uint64_t now)
{
    for (int i = 0; i < 4; i++) {
        ap_breaker_permit p;
        if (ap_breaker_allow(b, now, &p, NULL) != AP_OK)
            break;
        EXPECT_EQ(ap_breaker_record(b, &p, AP_BREAKER_OUTCOME_FAILURE, 0, now), AP_OK);
    }
    EXPECT_EQ(ap_breaker_state_at(b, now), AP_BREAKER_STATE_OPEN);
}

static void conserved(ap_breaker *b)
{
    ap_breaker_stats st;
    ap_breaker_stats_get(b, &st);
    EXPECT_EQ(st.allowed, st.successes + st.failures + st.ignored + st.canceled + st.stale);
}

/* ---- configuration ---- */

Test(resilience, init_rejects_bad_config_and_touches_nothing)
{
    ledger L = {0};
    script s = {.L = &L};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_tb tb;
    ap_sem sem;
    EXPECT_EQ(ap_tb_init(&tb, &(ap_tb_desc){.n = 1, .burst = 2}), AP_OK);
    EXPECT_EQ(ap_sem_init(&sem, 2), AP_OK);
    ap_retry_desc bad_retry = {.max_attempts = 0};
    ap_resil_desc bad[] = {
        {.limiter = &tb, .limiter_tokens = 3},          /* > burst */
        {.limiter_tokens = 1},                          /* no limiter */
        {.limiter_wait_ns = 1},
        {.bulkhead = &sem, .bulkhead_permits = 3},      /* > max */
        {.bulkhead_wait_ns = 5},                        /* no bulkhead */
        {.bulkhead_permits = 1},
        {.classify_ctx = &L},                           /* no breaker */
        {.retry = &bad_retry},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ap_resil_fut f;
        memset(&f, 0xA5, sizeof f);
        EXPECT_EQ(ap_resil_fut_init(&f, &bad[i], &op, AP_DEADLINE_NONE), AP_INVAL, "desc %zu", i);
        const unsigned char *p = (const unsigned char *)&f;
        for (size_t j = 0; j < sizeof f; j++)
            if (p[j] != 0xA5) {
                EXPECT(0, "desc %zu: byte %zu touched", i, j);
                break;
            }
    }
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &(ap_resil_desc){0}, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_NOT_READY);
    EXPECT_EQ(L.starts, 0, "nothing runs before the first poll");
    drive(&f, 0);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_OK, "no layers: the attempt alone");
    EXPECT_EQ(L.starts, 1);
    EXPECT_EQ(ap_resil_fut_result(&f).app_error, 200);
}

/* ---- the order of the layers ---- */

Test(resilience, layers_in_order_and_what_a_refusal_keeps)
{
    ledger L = {0};
    script s = {.L = &L};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_tb tb; /* 2 tokens, no refill within the test */
    ap_sem sem;
    EXPECT_EQ(ap_tb_init(&tb, &(ap_tb_desc){.n = 1, .period_ns = UINT64_C(1) << 62, .burst = 2}),
              AP_OK);
    EXPECT_EQ(ap_sem_init(&sem, 1), AP_OK);
    ap_breaker *br = new_breaker(1, 100 * MS);
    ap_resil_desc d = {.limiter = &tb, .bulkhead = &sem, .breaker = br};
    ap_resil_fut f;

    /* breaker OPEN: a token is spent, the permit comes back, nothing starts */
    trip(br, 0);
    ap_breaker_stats b0;
    ap_breaker_stats_get(br, &b0);
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 10 * MS);
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_REJECTED, "a refusal stays AP_REJECTED, not AP_EXHAUSTED");
    EXPECT_EQ(r.rejected_by, AP_RESIL_LAYER_BREAKER);
    EXPECT_EQ(r.last_error, AP_REJECTED);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED);
    EXPECT_EQ(r.ran, 0);
    EXPECT_EQ(L.starts, 0);
    EXPECT_EQ(ap_tb_available(&tb, 10 * MS), 1, "the token is consumed");
    EXPECT_EQ(ap_sem_available(&sem), 1, "the permit is back");
    EXPECT_EQ(breaker_stats_of(br).allowed, b0.allowed);
    EXPECT_EQ(resil_stats_of(&f).tokens, 1);
    EXPECT_EQ(resil_stats_of(&f).permits, 1);
    EXPECT_EQ(resil_stats_of(&f).breaker_permits, 0);

    /* bulkhead full: a token is spent, the breaker is not asked */
    ap_breaker_reset(br);
    EXPECT_EQ(ap_sem_try_acquire(&sem, 1), AP_OK);
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 20 * MS);
    r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_REJECTED);
    EXPECT_EQ(r.rejected_by, AP_RESIL_LAYER_BULKHEAD);
    EXPECT_EQ(ap_tb_available(&tb, 20 * MS), 0);
    EXPECT_EQ(breaker_stats_of(br).allowed, b0.allowed, "breaker not asked");
    EXPECT_EQ(ap_sem_release(&sem, 1), AP_OK);

    /* limiter empty: nothing else is asked */
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 30 * MS);
    r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_REJECTED);
    EXPECT_EQ(r.rejected_by, AP_RESIL_LAYER_LIMITER);
    EXPECT_EQ(ap_sem_available(&sem), 1);
    EXPECT_EQ(resil_stats_of(&f).permits, 0);
    EXPECT_EQ(L.starts, 0);
    conserved(br);
    ap_breaker_destroy(br);
}

/* ---- results: app error beside the status; timeout -> FAILURE; classify ---- */

static ap_breaker_outcome ignore_404(void *ctx, ap_status st, int app)
{
    (void)ctx;
    if (app == 404)
        return AP_BREAKER_OUTCOME_IGNORED;
    return st == AP_OK ? AP_BREAKER_OUTCOME_SUCCESS : AP_BREAKER_OUTCOME_FAILURE;
}

Test(resilience, app_error_travels_out_and_timeouts_are_failures)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_FAIL, K_HANG, K_PERM}, .dur = {5 * MS, 0, 5 * MS}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_breaker *br; /* 2 failures of 2 would trip new_breaker(): use a wide window */
    EXPECT_EQ(ap_breaker_create(&br, &(ap_breaker_desc){.window_size = 20}, NULL), AP_OK);
    ap_rng rng;
    ap_rng_seed(&rng, 1);
    ap_retry_desc rd = {.max_attempts = 5, .initial_ns = 1 * MS, .cap_ns = 2 * MS,
                        .retryable = pred};
    ap_resil_desc d = {.breaker = br, .classify = ignore_404, .attempt_timeout_ns = 20 * MS,
                       .retry = &rd, .rng = &rng};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 0);
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_EMPTY, "the permanent error, as the op reported it");
    EXPECT_EQ(r.app_error, 404, "and the application's error beside it");
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(r.ran, 3);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_PERMANENT);
    ap_resil_stats st;
    ap_resil_stats_get(&f, &st);
    EXPECT_EQ(st.rejected[AP_RESIL_LAYER_TIMEOUT], 1);
    ap_breaker_stats bs;
    ap_breaker_stats_get(br, &bs);
    EXPECT_EQ(bs.failures, 2, "the 503 and the timeout");
    EXPECT_EQ(bs.ignored, 1, "the 404, as classified");
    EXPECT_EQ(L.starts, 3);
    EXPECT_EQ(L.completions, 2);
    EXPECT_EQ(L.cancels, 1, "the timeout cancelled the hung attempt once");
    EXPECT_EQ(L.results, 2, "no result hook for the timed-out attempt");
    EXPECT_EQ(L.bad, 0);
    conserved(br);
    ap_breaker_destroy(br);
}

/* ---- the breaker's retry_at is a hint: the retry waits for the open time ---- */

Test(resilience, breaker_refusal_hints_the_retry)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_OK, K_OK, K_OK}, .dur = {1 * MS, 1 * MS, 1 * MS}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_breaker *br = new_breaker(1, 50 * MS);
    trip(br, 0);
    ap_retry_desc rd = {.max_attempts = 2, .backoff = AP_RETRY_BACKOFF_FIXED,
                        .initial_ns = 1 * MS, .cap_ns = 100 * MS};
    ap_resil_desc d = {.breaker = br, .retry = &rd};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    uint64_t end = drive(&f, 10 * MS);
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_OK);
    EXPECT_EQ(r.attempts, 2);
    EXPECT_EQ(r.ran, 1);
    EXPECT_EQ(end, 51 * MS, "retried at the end of the open time (50 ms), then 1 ms");
    EXPECT_EQ(ap_breaker_state_at(br, end), AP_BREAKER_STATE_CLOSED, "the probe closed it");
    conserved(br);
    ap_breaker_destroy(br);
}

/* ---- deadline in HALF_OPEN: the probe is recorded CANCELED, its slot free ---- */

Test(resilience, deadline_cut_probe_is_canceled_not_leaked)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_HANG}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_sem sem;
    EXPECT_EQ(ap_sem_init(&sem, 1), AP_OK);
    ap_breaker *br = new_breaker(1, 10 * MS);
    trip(br, 0);
    ap_resil_desc d = {.bulkhead = &sem, .breaker = br};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, 30 * MS), AP_OK);
    drive(&f, 20 * MS); /* half-open at 10 ms: this call is the probe */
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_TIMEDOUT);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_DEADLINE);
    EXPECT_EQ(L.cancels, 1);
    EXPECT_EQ(ap_sem_available(&sem), 1);
    ap_breaker_stats bs;
    ap_breaker_stats_get(br, &bs);
    EXPECT_EQ(bs.canceled, 1);
    EXPECT_EQ(resil_stats_of(&f).breaker_canceled, 1);
    EXPECT_EQ(ap_breaker_state_at(br, 30 * MS), AP_BREAKER_STATE_HALF_OPEN);
    ap_breaker_permit p;
    EXPECT_EQ(ap_breaker_allow(br, 30 * MS, &p, NULL), AP_OK, "the probe slot is free again");
    EXPECT_EQ(ap_breaker_record(br, &p, AP_BREAKER_OUTCOME_SUCCESS, 0, 30 * MS), AP_OK);
    conserved(br);
    ap_breaker_destroy(br);
}

/* ---- the bulkhead wait: woken by a release, cancel passes a grant on ---- */

static void flag_wake(void *ctx) { ++*(int *)ctx; }

Test(resilience, bulkhead_wait_wakes_and_cancel_releases_everything)
{
    ledger L = {0};
    script s1 = {.L = &L, .kind = {K_HANG}}, s2 = {.L = &L, .kind = {K_OK}, .dur = {1 * MS}};
    ap_resil_op op1 = {.start = s_start, .result = s_result, .ctx = &s1};
    ap_resil_op op2 = {.start = s_start, .result = s_result, .ctx = &s2};
    ap_sem sem;
    EXPECT_EQ(ap_sem_init(&sem, 1), AP_OK);
    ap_breaker *br = new_breaker(1, 10 * MS);
    ap_resil_desc d = {.bulkhead = &sem, .bulkhead_wait_ns = AP_DEADLINE_NONE, .breaker = br};
    ap_resil_fut f1, f2;
    EXPECT_EQ(ap_resil_fut_init(&f1, &d, &op1, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_resil_fut_init(&f2, &d, &op2, AP_DEADLINE_NONE), AP_OK);
    int w1 = 0, w2 = 0;
    ap_cx c1 = {{flag_wake, &w1}, 0, AP_DEADLINE_NONE}, c2 = {{flag_wake, &w2}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_resil_fut_poll(&f1, &c1), AP_PENDING, "holds the permit, hangs");
    EXPECT_EQ(ap_resil_fut_poll(&f2, &c2), AP_PENDING, "queued on the bulkhead");
    /* at most the waitlist's confirm re-poll (ap_waitlist_register_cx) */
    EXPECT(c2.deadline == AP_DEADLINE_NONE || c2.deadline == AP_WAIT_CONFIRM_NS,
           "waits for a wake, not for time (deadline %llu)", (unsigned long long)c2.deadline);
    EXPECT_EQ(w2, 0);
    ap_resil_fut_cancel(&f1); /* records CANCELED, releases: grants f2 */
    EXPECT_EQ(ap_resil_fut_status(&f1), AP_CANCELED);
    EXPECT_EQ(w2, 1, "the release woke the waiter");
    ap_resil_fut_cancel(&f1); /* idempotent */
    c2.now = 2 * MS;
    EXPECT_EQ(ap_resil_fut_poll(&f2, &c2), AP_PENDING, "granted; its attempt runs");
    c2.now = 3 * MS;
    EXPECT_EQ(ap_resil_fut_poll(&f2, &c2), AP_READY);
    EXPECT_EQ(ap_resil_fut_status(&f2), AP_OK);
    EXPECT_EQ(ap_sem_available(&sem), 1);
    EXPECT_EQ(L.starts, 2);
    EXPECT_EQ(L.cancels, 1);
    EXPECT_EQ(L.bad, 0);
    ap_breaker_stats bs;
    ap_breaker_stats_get(br, &bs);
    EXPECT_EQ(bs.canceled, 1);
    EXPECT_EQ(bs.successes, 1);
    conserved(br);

    /* a waiter cancelled while queued: unregistered, never woken again */
    EXPECT_EQ(ap_resil_fut_init(&f1, &d, &op1, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_resil_fut_init(&f2, &d, &op2, AP_DEADLINE_NONE), AP_OK);
    w1 = w2 = 0;
    c1.now = c2.now = 10 * MS;
    EXPECT_EQ(ap_resil_fut_poll(&f1, &c1), AP_PENDING);
    EXPECT_EQ(ap_resil_fut_poll(&f2, &c2), AP_PENDING);
    ap_resil_fut_cancel(&f2);
    EXPECT(!ap_waitlist_has_waiters(&sem.wl), "the waiter left the list");
    ap_resil_fut_cancel(&f1);
    EXPECT_EQ(w2, 0, "no wake for a cancelled waiter");
    EXPECT_EQ(ap_sem_available(&sem), 1);
    EXPECT_EQ(resil_stats_of(&f2).permits, 0);
    conserved(br);
    ap_breaker_destroy(br);
}

/* bulkhead wait with a limit: refused when it passes, nothing held */
Test(resilience, bulkhead_wait_gives_up_at_its_limit)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_OK}, .dur = {1 * MS}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_sem sem;
    EXPECT_EQ(ap_sem_init(&sem, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&sem, 1), AP_OK);
    ap_resil_desc d = {.bulkhead = &sem, .bulkhead_wait_ns = 5 * MS};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    uint64_t end = drive(&f, 0);
    EXPECT_EQ(end, 5 * MS);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_REJECTED);
    EXPECT_EQ(ap_resil_fut_result(&f).rejected_by, AP_RESIL_LAYER_BULKHEAD);
    EXPECT(!ap_waitlist_has_waiters(&sem.wl));
    EXPECT_EQ(ap_sem_release(&sem, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&sem), 1);
    ap_sem_close(&sem);
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 10 * MS);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_CLOSED, "a closed bulkhead is permanent");
    EXPECT_EQ(L.starts, 0);
}

/* ---- the limiter wait: proceeds at the ready instant; cancel gives back ---- */

Test(resilience, limiter_wait_and_cancel)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_OK, K_OK}, .dur = {0, 0}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_tb tb; /* 10/s, burst 1 */
    EXPECT_EQ(ap_tb_init(&tb, &(ap_tb_desc){.n = 10, .burst = 1}), AP_OK);
    ap_resil_desc d = {.limiter = &tb, .limiter_wait_ns = 500 * MS};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(drive(&f, 0), 0);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_OK);
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(drive(&f, 0), 100 * MS, "waited for the next token");
    EXPECT_EQ(resil_stats_of(&f).tokens_waited, 1);
    /* a wait cancelled before the tokens are due gives them back */
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    ap_cx cx = {AP_WAKER_NONE, 100 * MS, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_resil_fut_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 200 * MS);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 0);
    ap_resil_fut_cancel(&f);
    EXPECT_EQ(ap_tb_available(&tb, 200 * MS), 1, "the reserved token is back");
    EXPECT_EQ(resil_stats_of(&f).tokens, 0);
    /* a wait that cannot be served in time is refused at once */
    ap_resil_desc d2 = {.limiter = &tb, .limiter_wait_ns = 50 * MS};
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 200 * MS, NULL), AP_OK);
    EXPECT_EQ(ap_resil_fut_init(&f, &d2, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(drive(&f, 200 * MS), 200 * MS);
    EXPECT_EQ(ap_resil_fut_result(&f).rejected_by, AP_RESIL_LAYER_LIMITER);
    EXPECT_EQ(L.starts, 2);
}

/* ---- issue #11: the status table ---- */

/* Regression: while running (an attempt in flight, a layer wait, a backoff)
 * the status is AP_NOT_READY; attempts that kept failing with a retryable
 * error and no deadline end AP_EXHAUSTED with the last error beside it,
 * never AP_TIMEDOUT -- also when the last failure was the per-attempt
 * timeout; app_error is the last one a result hook gave. */
Test(resilience, status_not_ready_while_running_then_exhausted)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_FAIL, K_FAIL, K_HANG}, .dur = {5 * MS, 5 * MS, 0}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    ap_retry_desc rd = {.max_attempts = 3, .backoff = AP_RETRY_BACKOFF_FIXED,
                        .initial_ns = 10 * MS, .cap_ns = 10 * MS, .retryable = pred};
    ap_resil_desc d = {.attempt_timeout_ns = 20 * MS, .retry = &rd};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_resil_fut_status(&f), AP_NOT_READY);
    uint64_t now = 0;
    int polls = 0, backoffs = 0;
    for (;;) {
        ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
        ap_poll p = ap_resil_fut_poll(&f, &cx);
        ap_resil_result r = ap_resil_fut_result(&f);
        EXPECT_EQ(r.status, ap_resil_fut_status(&f));
        if (p == AP_READY)
            break;
        EXPECT_EQ(r.status, AP_NOT_READY, "pending at %llu: %s", (unsigned long long)now,
                  ap_status_str(r.status));
        EXPECT_EQ(r.stop, AP_RETRY_STOP_RUNNING);
        backoffs += f.retry.attempt == NULL;
        if (r.attempts == 2 && f.retry.attempt == NULL)
            EXPECT_EQ(r.app_error, 503, "in the backoff: the last attempt's");
        now = cx.deadline;
        EXPECT_LT(++polls, 100);
    }
    EXPECT_EQ(backoffs, 2, "both backoffs observed");
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED);
    EXPECT_NE(r.status, AP_TIMEDOUT, "no deadline, yet \"%s\"", ap_status_str(r.status));
    EXPECT_EQ(r.status, AP_EXHAUSTED);
    EXPECT_EQ(r.last_error, AP_TIMEDOUT, "the per-attempt timeout, beside it");
    EXPECT_EQ(r.rejected_by, AP_RESIL_LAYER_TIMEOUT);
    EXPECT_EQ(r.app_error, 503, "the last attempt whose result hook ran");
    EXPECT_EQ(ap_retry_fut_result(&f.retry).app_error, 503, "carried by the retry");
    EXPECT_EQ(r.attempts, 3);
    EXPECT_EQ(L.results, 2);

    /* every attempt failing on its own: AP_EXHAUSTED, last error and 503 */
    memset(&L, 0, sizeof L);
    s = (script){.L = &L, .kind = {K_FAIL, K_FAIL, K_FAIL}, .dur = {1 * MS, 1 * MS, 1 * MS}};
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 0);
    r = ap_resil_fut_result(&f);
    EXPECT(r.status == AP_EXHAUSTED && r.last_error == AP_REJECTED && r.app_error == 503 &&
               r.rejected_by == AP_RESIL_LAYER_NONE && r.stop == AP_RETRY_STOP_EXHAUSTED,
           "%s / %s / %d / %d", ap_status_str(r.status), ap_status_str(r.last_error),
           r.app_error, r.rejected_by);
}

/* A layer's refusal on the last attempt is AP_REJECTED (rejected_by), with
 * the app_error of the last attempt that ran; a budget refusal after an
 * attempt's own failure is AP_EXHAUSTED. */
Test(resilience, last_refusal_is_rejected_budget_is_exhausted)
{
    ledger L = {0};
    script s = {.L = &L, .kind = {K_FAIL, K_OK}, .dur = {1 * MS, 1 * MS}};
    ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &s};
    /* a breaker that one failure trips, open for longer than the test */
    ap_breaker *br;
    EXPECT_EQ(ap_breaker_create(&br, &(ap_breaker_desc){.window_size = 1, .min_calls = 1,
                                                    .open_ns = AP_NS_PER_SEC},
                           NULL),
              AP_OK);
    ap_retry_desc rd = {.max_attempts = 2, .backoff = AP_RETRY_BACKOFF_FIXED,
                        .initial_ns = 1 * MS, .cap_ns = 1 * MS, .hint_cap_ns = 1 * MS,
                        .retryable = pred};
    ap_resil_desc d = {.breaker = br, .retry = &rd};
    ap_resil_fut f;
    EXPECT_EQ(ap_resil_fut_init(&f, &d, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 0);
    ap_resil_result r = ap_resil_fut_result(&f);
    EXPECT_EQ(r.status, AP_REJECTED, "%s", ap_status_str(r.status));
    EXPECT_EQ(r.rejected_by, AP_RESIL_LAYER_BREAKER);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED);
    EXPECT_EQ(r.attempts, 2);
    EXPECT_EQ(r.ran, 1);
    EXPECT_EQ(r.app_error, 503, "the attempt that ran");
    conserved(br);
    ap_breaker_destroy(br);

    /* a budget with nothing to give: the first failure ends it */
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                           .ratio_permille = AP_RETRY_BUDGET_ZERO,
                                           .min_per_sec = AP_RETRY_BUDGET_ZERO}),
              AP_OK);
    memset(&L, 0, sizeof L);
    s = (script){.L = &L, .kind = {K_FAIL, K_OK}, .dur = {1 * MS, 1 * MS}};
    ap_resil_desc d2 = {.retry = &rd, .budget = &b};
    EXPECT_EQ(ap_resil_fut_init(&f, &d2, &op, AP_DEADLINE_NONE), AP_OK);
    drive(&f, 0);
    r = ap_resil_fut_result(&f);
    EXPECT(r.status == AP_EXHAUSTED && r.stop == AP_RETRY_STOP_BUDGET &&
               r.last_error == AP_REJECTED && r.app_error == 503 && r.attempts == 1,
           "%s stop %d", ap_status_str(r.status), r.stop);
    EXPECT_EQ(retry_budget_stats_of(&b).denied, 1);
}

/* ---- the theorem: thousands of random scenarios ---- */

#define NCALLS 4

typedef struct rcall {
    ap_resil_fut f;
    script s;
    ap_resil_desc d;
    ap_retry_desc rd;
    ap_rng rng;
    int woken;
    uint64_t next, cancel_at;
    bool done, cancelled;
} rcall;

static uint64_t pick(ap_rng *r, uint64_t n) { return ap_rng_below(r, n); }

/* Coverage over all scenarios: the test fails if a fault never happened. */
static struct {
    uint64_t canceled_records, timeouts, cancels, lim_rej, bulk_rej, cb_rej, waited_tokens;
    uint64_t half_open_end, deadline_stops, app_errors;
} cov;

static void one_scenario(uint64_t seed)
{
    ap_rng R;
    ap_rng_seed(&R, seed);
    ledger L = {0};
    static rcall c[NCALLS];
    memset(c, 0, sizeof c);
    int ncalls = 1 + (int)pick(&R, NCALLS);
    bool use_tb = pick(&R, 3) != 0, use_sem = pick(&R, 4) != 0, use_cb = pick(&R, 4) != 0;
    ap_tb tb;
    uint64_t burst = 3 + pick(&R, 30), ntok = 1 + pick(&R, 2);
    /* no refill within a scenario: tokens taken = burst - available */
    EXPECT_EQ(ap_tb_init(&tb, &(ap_tb_desc){.n = 1, .period_ns = UINT64_C(1) << 62,
                                           .burst = burst}), AP_OK);
    ap_sem sem;
    size_t permits = 1 + (size_t)pick(&R, 3);
    EXPECT_EQ(ap_sem_init(&sem, permits), AP_OK);
    uint32_t K = 1 + (uint32_t)pick(&R, 2);
    uint64_t open_ns = (1 + pick(&R, 30)) * MS;
    ap_breaker *br = new_breaker(K, open_ns);
    if (pick(&R, 3) == 0)
        trip(br, 0);
    uint64_t now = 0;
    for (int i = 0; i < ncalls; i++) {
        rcall *k = &c[i];
        for (int j = 0; j < 8; j++) {
            uint64_t x = pick(&R, 10);
            k->s.kind[j] = x < 4 ? K_OK : x < 7 ? K_FAIL : x < 8 ? K_PERM : K_HANG;
            k->s.dur[j] = pick(&R, 40) * MS;
        }
        k->s.L = &L;
        ap_rng_seed(&k->rng, seed * 31 + (uint64_t)i);
        k->rd = (ap_retry_desc){.max_attempts = 1 + (uint32_t)pick(&R, 4),
                                .initial_ns = 1 * MS, .cap_ns = 20 * MS, .retryable = pred};
        ap_resil_desc d = {.retry = &k->rd, .rng = &k->rng};
        if (use_tb) {
            d.limiter = &tb;
            d.limiter_tokens = ntok;
            d.limiter_wait_ns = pick(&R, 2) ? 0 : 1 + pick(&R, 10) * MS;
        }
        if (use_sem) {
            d.bulkhead = &sem;
            d.bulkhead_permits = 1 + (size_t)pick(&R, permits);
            uint64_t w = pick(&R, 3);
            d.bulkhead_wait_ns = w == 0 ? 0 : w == 1 ? (1 + pick(&R, 30)) * MS : AP_DEADLINE_NONE;
        }
        if (use_cb) {
            d.breaker = br;
            if (pick(&R, 2))
                d.classify = ignore_404;
        }
        if (pick(&R, 2))
            d.attempt_timeout_ns = (1 + pick(&R, 30)) * MS;
        ap_deadline dl = pick(&R, 2) ? AP_DEADLINE_NONE : (5 + pick(&R, 150)) * MS;
        k->d = d;
        ap_resil_op op = {.start = s_start, .result = s_result, .ctx = &k->s};
        EXPECT_EQ(ap_resil_fut_init(&k->f, &k->d, &op, dl), AP_OK);
        k->cancel_at = pick(&R, 3) == 0 ? pick(&R, 100) * MS : AP_DEADLINE_NONE;
        k->next = 0;
    }
    for (int iter = 0;; iter++) {
        EXPECT_LT(iter, 100000, "seed %llu: no end", (unsigned long long)seed);
        int pending = 0;
        bool polled = false;
        for (int i = 0; i < ncalls; i++) {
            rcall *k = &c[i];
            if (k->done)
                continue;
            if (k->cancel_at <= now) {
                ap_resil_fut_cancel(&k->f);
                ap_resil_fut_cancel(&k->f); /* idempotent */
                EXPECT_EQ(ap_resil_fut_status(&k->f), AP_CANCELED);
                k->done = k->cancelled = true;
                continue;
            }
            if (k->woken || k->next <= now) {
                k->woken = 0;
                ap_cx cx = {{flag_wake, &k->woken}, now, AP_DEADLINE_NONE};
                polled = true;
                if (ap_resil_fut_poll(&k->f, &cx) == AP_READY) {
                    k->done = true;
                    continue;
                }
                k->next = cx.deadline;
                EXPECT_GT(k->next, now, "seed %llu", (unsigned long long)seed);
            }
            pending++;
        }
        if (!pending)
            break;
        if (polled)
            continue;
        bool woken = false;
        uint64_t t = AP_DEADLINE_NONE;
        for (int i = 0; i < ncalls; i++)
            if (!c[i].done) {
                woken = woken || c[i].woken;
                t = ap_time_min(t, ap_time_min(c[i].next, c[i].cancel_at));
            }
        if (woken)
            continue;
        if (t == AP_DEADLINE_NONE) {
            /* stuck by design (a hang with no timeout or deadline, or
             * waiters behind it): cancel one at random */
            int live[NCALLS], n = 0;
            for (int i = 0; i < ncalls; i++)
                if (!c[i].done)
                    live[n++] = i;
            c[live[pick(&R, (uint64_t)n)]].cancel_at = now;
            continue;
        }
        now = t;
    }

    /* ---- the ledger ---- */
    EXPECT_EQ(L.bad, 0, "seed %llu: an attempt polled after it ended or cancelled twice",
              (unsigned long long)seed);
    EXPECT_EQ(L.completions + L.cancels, L.starts,
              "seed %llu: every started attempt completed or was cancelled, once",
              (unsigned long long)seed);
    uint64_t tokens = 0, breaker_permits = 0, breaker_canceled = 0, timeouts = 0, ran = 0;
    uint64_t attempts = 0, lim_rejected = 0, waited = 0;
    for (int i = 0; i < ncalls; i++) {
        ap_resil_result r = ap_resil_fut_result(&c[i].f);
        ap_resil_stats st;
        ap_resil_stats_get(&c[i].f, &st);
        EXPECT_NE(r.status, AP_NOT_READY);
        EXPECT_NE(r.stop, AP_RETRY_STOP_RUNNING);
        /* the status table (resilience.h ERRORS) */
        bool refused = r.last_error == AP_REJECTED &&
                       (r.rejected_by == AP_RESIL_LAYER_LIMITER ||
                        r.rejected_by == AP_RESIL_LAYER_BULKHEAD ||
                        r.rejected_by == AP_RESIL_LAYER_BREAKER);
        switch (r.stop) {
        case AP_RETRY_STOP_SUCCEEDED: EXPECT_EQ(r.status, AP_OK); break;
        case AP_RETRY_STOP_PERMANENT: EXPECT_EQ(r.status, r.last_error); break;
        case AP_RETRY_STOP_EXHAUSTED:
        case AP_RETRY_STOP_BUDGET:
            EXPECT_EQ(r.status, refused ? AP_REJECTED : AP_EXHAUSTED, "seed %llu",
                      (unsigned long long)seed);
            break;
        case AP_RETRY_STOP_DEADLINE: EXPECT_EQ(r.status, AP_TIMEDOUT); break;
        default: EXPECT_EQ(r.status, AP_CANCELED); break;
        }
        if (r.status == AP_TIMEDOUT)
            EXPECT_EQ(r.stop, AP_RETRY_STOP_DEADLINE, "AP_TIMEDOUT without the deadline");
        if (c[i].d.breaker == NULL)
            EXPECT_NE(r.rejected_by, AP_RESIL_LAYER_BREAKER);
        EXPECT_LE(r.ran, r.attempts);
        if (c[i].cancelled)
            EXPECT_EQ(r.status, AP_CANCELED);
        tokens += st.tokens;
        waited += st.tokens_waited;
        breaker_permits += st.breaker_permits;
        breaker_canceled += st.breaker_canceled;
        timeouts += st.rejected[AP_RESIL_LAYER_TIMEOUT];
        lim_rejected += st.rejected[AP_RESIL_LAYER_LIMITER];
        ran += r.ran;
        attempts += r.attempts;
    }
    EXPECT_EQ(ran, (uint64_t)L.starts);
    EXPECT_EQ(L.results, L.completions,
              "seed %llu: one result per attempt that completed in time",
              (unsigned long long)seed);
    /* bulkhead: every permit back, nobody queued */
    EXPECT_EQ(ap_sem_available(&sem), permits, "seed %llu: bulkhead permits leaked",
              (unsigned long long)seed);
    EXPECT(!ap_waitlist_has_waiters(&sem.wl), "seed %llu: a waiter left queued",
           (unsigned long long)seed);
    /* limiter: tokens taken (from the bucket itself) == tokens the calls
     * took == tokens per admitted attempt; every attempt was admitted or
     * refused by it (it is polled at least once) */
    uint64_t taken = burst - ap_tb_available(&tb, now);
    EXPECT_EQ(taken, tokens, "seed %llu", (unsigned long long)seed);
    if (use_tb) {
        EXPECT_EQ(tokens % ntok, 0);
        EXPECT_EQ(tokens / ntok + lim_rejected, attempts,
                  "seed %llu: attempts != admitted + refused by the limiter",
                  (unsigned long long)seed);
    }
    /* breaker: conservation, one record per permit, CANCELED exactly for
     * the attempts cut by deadline or cancel */
    for (int i = 0; i < ncalls; i++) {
        ap_resil_stats st;
        ap_resil_stats_get(&c[i].f, &st);
        ap_resil_result r = ap_resil_fut_result(&c[i].f);
        cov.bulk_rej += st.rejected[AP_RESIL_LAYER_BULKHEAD];
        cov.cb_rej += st.rejected[AP_RESIL_LAYER_BREAKER];
        cov.cancels += c[i].cancelled;
        cov.deadline_stops += r.stop == AP_RETRY_STOP_DEADLINE;
        cov.app_errors += r.app_error == 404;
    }
    cov.canceled_records += breaker_canceled;
    cov.timeouts += timeouts;
    cov.lim_rej += lim_rejected;
    cov.waited_tokens += waited;
    ap_breaker_stats bs;
    ap_breaker_stats_get(br, &bs);
    if (use_cb) {
        EXPECT_EQ(breaker_permits, ran, "seed %llu: a breaker permit per started attempt",
                  (unsigned long long)seed);
        EXPECT_EQ(L.cancels - (int)timeouts, (int)breaker_canceled,
                  "seed %llu: CANCELED records != attempts cut by deadline/cancel",
                  (unsigned long long)seed);
    }
    EXPECT_EQ(bs.allowed, bs.successes + bs.failures + bs.ignored + bs.canceled + bs.stale,
              "seed %llu: breaker not conserved", (unsigned long long)seed);
    EXPECT_LE(bs.canceled, breaker_canceled);
    /* no half-open probe slot held by a finished call */
    ap_breaker_state s = ap_breaker_state_at(br, now);
    cov.half_open_end += s == AP_BREAKER_STATE_HALF_OPEN;
    if (s == AP_BREAKER_STATE_HALF_OPEN)
        EXPECT_EQ(br->inflight, 0, "seed %llu: a probe slot leaked", (unsigned long long)seed);
    uint64_t later = now + 64 * open_ns; /* past any open time, long before a lease */
    ap_breaker_permit p;
    EXPECT_EQ(ap_breaker_allow(br, later, &p, NULL), AP_OK,
              "seed %llu: a fresh call is refused (state %d) once the open time is over",
              (unsigned long long)seed, (int)ap_breaker_state_at(br, later));
    ap_breaker_destroy(br);
}

Test(resilience, random_faults_keep_the_ledger, .timeout = TEST_TIMEOUT_S)
{
    const char *e = getenv("AP_TEST_SEED");
    uint64_t base = e ? strtoull(e, NULL, 10) : 12345;
    for (uint64_t i = 0; i < 4000; i++)
        one_scenario(base * 100003 + i);
    EXPECT_GT(cov.canceled_records, 0);
    EXPECT_GT(cov.timeouts, 0);
    EXPECT_GT(cov.cancels, 0);
    EXPECT_GT(cov.lim_rej, 0);
    EXPECT_GT(cov.bulk_rej, 0);
    EXPECT_GT(cov.cb_rej, 0);
    EXPECT_GT(cov.waited_tokens, 0);
    EXPECT_GT(cov.half_open_end, 0);
    EXPECT_GT(cov.deadline_stops, 0);
    EXPECT_GT(cov.app_errors, 0);
    if (getenv("RESIL_COVERAGE"))
        fprintf(stderr, "canceled %llu timeouts %llu cancels %llu lim %llu bulk %llu cb %llu "
                "waited %llu half-open %llu deadline %llu app %llu\n",
                (unsigned long long)cov.canceled_records, (unsigned long long)cov.timeouts,
                (unsigned long long)cov.cancels, (unsigned long long)cov.lim_rej,
                (unsigned long long)cov.bulk_rej, (unsigned long long)cov.cb_rej,
                (unsigned long long)cov.waited_tokens, (unsigned long long)cov.half_open_end,
                (unsigned long long)cov.deadline_stops, (unsigned long long)cov.app_errors);
}

