/*
 * tests/test_retry.c -- retry: ap_rng, backoff policies, limits, budget,
 *                       the retry future and its composition with ap_timeout
 *
 * Everything but ap_retry_call runs on a fake clock: the driver below sets
 * cx.now, polls, and when the future is pending jumps now to cx.deadline
 * (or to a scripted event before it). The jitter sequences are checked
 * against a reference model written here (its own xoshiro256** and
 * rejection sampler), independent of the header's code.
 */
#include "asyncpat/retry.h"
#include "asyncpat/circuit_breaker.h"
#include "asyncpat/mpmc.h"
#include "asyncpat/timeout.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <string.h>

#define MS AP_NS_PER_MS

/* No libm (tests/run.sh links none): what the statistics need. */
static double dabs(double x) { return x < 0 ? -x : x; }
static double dsqrt(double x)
{
    if (x <= 0)
        return 0;
    double r = x > 1 ? x : 1;
    for (int i = 0; i < 200; i++)
        r = 0.5 * (r + x / r);
    return r;
}
static double dpow(double b, uint32_t e)
{
    double r = 1;
    while (e--)
        r *= b;
    return r;
}

/* ---- reference rng (independent of the header) ---- */

typedef struct ref_rng { uint64_t s[4]; } ref_rng;

static uint64_t ref_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static void ref_seed(ref_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}

static uint64_t ref_next(ref_rng *r)
{
    uint64_t *s = r->s, out = ref_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t;
    s[3] = ref_rotl(s[3], 45);
    return out;
}

/* uniform in [lo, hi], by rejection below 2^64 mod n */
static uint64_t ref_between(ref_rng *r, uint64_t lo, uint64_t hi)
{
    if (hi - lo == UINT64_MAX)
        return ref_next(r);
    uint64_t n = hi - lo + 1, lim = UINT64_MAX - (UINT64_MAX % n + 1) % n;
    for (;;) { /* accept x <= lim, where lim + 1 is a multiple of n */
        uint64_t x = ref_next(r);
        if (x <= lim)
            return lo + x % n;
    }
}

#include "wide128.h"

static ap_breaker_stats breaker_stats_of(ap_breaker *x)
{
    ap_breaker_stats s;
    ap_breaker_stats_get(x, &s);
    return s;
}

static ap_retry_budget_stats retry_budget_stats_of(ap_retry_budget *x)
{
    ap_retry_budget_stats s;
    ap_retry_budget_stats_get(x, &s);
    return s;
}

static uint64_t ref_mul(uint64_t x, uint64_t permille)
{
    uint64_t q;
    return w128_muldiv(x, permille, 1000, &q) ? q : UINT64_MAX;
}

/* ---- fake-clock driver ---- */

static void noop_wake(void *ctx) { (void)ctx; }

typedef void (*event_fn)(void *ctx, uint64_t now);

/* Drive f to completion from *now; an optional event fires once at ev_at
 * (before the poll at that instant). Returns the polls it took. */
static unsigned drive_ev(ap_future *f, uint64_t *now, uint64_t ev_at, event_fn ev, void *ev_ctx)
{
    for (unsigned polls = 1;; polls++) {
        if (ev && *now >= ev_at) {
            ev(ev_ctx, *now);
            ev = NULL;
        }
        ap_cx cx = {{noop_wake, NULL}, *now, AP_DEADLINE_NONE};
        if (f->poll(f, &cx) == AP_READY)
            return polls;
        EXPECT(cx.deadline != AP_DEADLINE_NONE || ev, "pending with nothing to wait for");
        EXPECT(cx.deadline > *now || ev, "deadline %llu not after now %llu",
                  (unsigned long long)cx.deadline, (unsigned long long)*now);
        uint64_t next = cx.deadline;
        if (ev && ev_at < next)
            next = ev_at;
        *now = next;
        EXPECT(polls < 1000000);
    }
}

static unsigned drive(ap_future *f, uint64_t *now) { return drive_ev(f, now, 0, NULL, NULL); }

/* ---- a scripted operation: attempt k takes dur ns, fails or succeeds ---- */

typedef struct att_fut {
    ap_future base;
    uint64_t ready_at;
    ap_status st;
    int app; /* the application error result() reports */
    int canceled;
} att_fut;

typedef struct script {
    uint32_t fail_first;      /* attempts 0..fail_first-1 fail */
    ap_status fail_st;        /* with this */
    ap_status fail_st_at[16]; /* nonzero: overrides for attempt k */
    uint64_t dur;             /* attempt duration */
    uint64_t hint;            /* server hint reported by each failure */
    int app_base;             /* nonzero: attempt k reports app_error app_base + k */
    ap_rng *succ_rng;         /* non-NULL: succeed with p_permille instead */
    uint32_t p_permille;
    uint64_t starts[64];
    uint32_t n;
    att_fut att;
} script;

static ap_poll att_poll(ap_future *f, ap_cx *cx)
{
    att_fut *a = (att_fut *)(void *)f;
    if (cx->now >= a->ready_at)
        return AP_READY;
    ap_cx_wake_at(cx, a->ready_at);
    return AP_PENDING;
}

static void att_cancel(ap_future *f) { ((att_fut *)(void *)f)->canceled++; }

static ap_future *script_start(void *ctx, void *storage, uint32_t k, uint64_t now)
{
    script *s = ctx;
    att_fut *a = storage;
    EXPECT_EQ(storage, &s->att);
    EXPECT_EQ(k, s->n, "attempt index");
    if (s->n < 64)
        s->starts[s->n] = now;
    s->n++;
    a->base.poll = att_poll;
    a->base.cancel = att_cancel;
    a->ready_at = now + s->dur;
    a->canceled = 0;
    a->app = s->app_base ? s->app_base + (int)k : 0;
    if (s->succ_rng)
        a->st = ap_rng_below(s->succ_rng, 1000) < s->p_permille ? AP_OK : AP_AGAIN;
    else if (k < 16 && s->fail_st_at[k])
        a->st = s->fail_st_at[k];
    else
        a->st = k < s->fail_first ? s->fail_st : AP_OK;
    return &a->base;
}

static ap_status script_result(void *ctx, ap_future *f, int *app, uint64_t *hint)
{
    script *s = ctx;
    att_fut *a = (att_fut *)(void *)f;
    EXPECT_EQ(*app, 0, "app_error is 0 on entry");
    EXPECT_EQ(*hint, 0u, "retry_after_ns is 0 on entry");
    if (a->st != AP_OK)
        *hint = s->hint;
    *app = a->app;
    return a->st;
}

static ap_retry_op script_op(script *s)
{
    return (ap_retry_op){.start = script_start, .result = script_result, .ctx = s,
                         .storage = &s->att};
}

static ap_status never_called(void *arg, int *app)
{
    (void)arg, (void)app;
    EXPECT_FAIL("called");
    return AP_OK;
}

/* ---- ap_rng ---- */

Test(retry, rng_matches_reference_and_known_value)
{
    ap_rng r;
    r.s[0] = 1; r.s[1] = 2; r.s[2] = 3; r.s[3] = 4;
    EXPECT_EQ(ap_rng_next_u64(&r), 11520u); /* rotl(2*5, 7) * 9 */
    for (uint64_t seed = 0; seed < 20; seed++) {
        ap_rng a; ref_rng b;
        ap_rng_seed(&a, seed);
        ref_seed(&b, seed);
        for (int i = 0; i < 1000; i++)
            EXPECT_EQ(ap_rng_next_u64(&a), ref_next(&b), "seed %llu draw %d",
                         (unsigned long long)seed, i);
        for (int i = 0; i < 1000; i++) {
            uint64_t n = (uint64_t)i * 7919u + 1u;
            EXPECT_EQ(ap_rng_between(&a, 5, 5 + n), ref_between(&b, 5, 5 + n));
        }
    }
}

Test(retry, rng_below_is_unbiased_and_in_range)
{
    ap_rng r;
    ap_rng_seed(&r, 7);
    for (int i = 0; i < 1000; i++)
        EXPECT_EQ(ap_rng_below(&r, 1), 0u);
    uint64_t big = (UINT64_C(1) << 63) + 1; /* half the draws are rejected */
    for (int i = 0; i < 10000; i++)
        EXPECT_LT(ap_rng_below(&r, big), big);
    EXPECT_EQ(ap_rng_between(&r, 9, 9), 9u);
    (void)ap_rng_between(&r, 0, UINT64_MAX);
    /* frequencies of below(6) within 5 sigma of N/6 */
    enum { K = 6, N = 600000 };
    uint64_t cnt[K] = {0};
    for (int i = 0; i < N; i++)
        cnt[ap_rng_below(&r, K)]++;
    double sigma = dsqrt(N * (1.0 / K) * (1 - 1.0 / K));
    for (int k = 0; k < K; k++)
        EXPECT_LT(dabs((double)cnt[k] - N / K), 5 * sigma, "bucket %d: %llu", k,
                     (unsigned long long)cnt[k]);
}

/* ---- configuration ---- */

Test(retry, desc_defaults)
{
    ap_retry_desc d = ap_retry_desc_resolved(&(ap_retry_desc){.max_attempts = 3});
    EXPECT_EQ(d.backoff, AP_RETRY_BACKOFF_FULL_JITTER);
    EXPECT_EQ(d.initial_ns, 100 * MS);
    EXPECT_EQ(d.cap_ns, 30 * AP_NS_PER_SEC);
    EXPECT_EQ(d.multiplier_permille, 2000);
    EXPECT_EQ(d.hint_cap_ns, d.cap_ns);
    EXPECT_EQ(d.hint_jitter_permille, 0);
    d = ap_retry_desc_resolved(
        &(ap_retry_desc){.max_attempts = 1, .backoff = AP_RETRY_BACKOFF_DECORRELATED_JITTER});
    EXPECT_EQ(d.multiplier_permille, 3000);
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){0}), AP_OK);
    EXPECT_EQ(b.desc.ratio_permille, 200);
    EXPECT_EQ(b.desc.min_per_sec, 10);
    EXPECT_EQ(b.desc.window_ns, 10 * AP_NS_PER_SEC);
    EXPECT_EQ(b.reserve, 100);
}

Test(retry, inval_config_changes_nothing)
{
    const ap_retry_desc bad[] = {
        {.max_attempts = 0},
        {.max_attempts = 3, .multiplier_permille = 999},
        {.max_attempts = 3, .initial_ns = 2000, .cap_ns = 1000},
        {.max_attempts = 3, .initial_ns = 31 * AP_NS_PER_SEC}, /* > default cap */
        {.max_attempts = 3, .hint_jitter_permille = 1001},
        {.max_attempts = 3, .backoff = (ap_retry_backoff)99},
    };
    ap_rng rng;
    ap_rng_seed(&rng, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ap_retry_state st;
        memset(&st, 0xA5, sizeof st);
        unsigned char before[sizeof st];
        memcpy(before, &st, sizeof st);
        EXPECT_EQ(ap_retry_state_init(&st, &bad[i]), AP_INVAL, "case %zu", i);
        EXPECT_EQ(memcmp(before, &st, sizeof st), 0, "case %zu changed *st", i);

        script s = {0};
        ap_retry_op op = script_op(&s);
        ap_retry_fut f;
        memset(&f, 0x5A, sizeof f);
        unsigned char fb[sizeof f];
        memcpy(fb, &f, sizeof f);
        EXPECT_EQ(ap_retry_fut_init(&f, &bad[i], &rng, NULL, &op, AP_DEADLINE_NONE), AP_INVAL);
        EXPECT_EQ(memcmp(fb, &f, sizeof f), 0, "case %zu changed *f", i);
        EXPECT_EQ(ap_retry_call(&bad[i], &rng, NULL, never_called, NULL, AP_DEADLINE_NONE, NULL),
                     AP_INVAL);
    }
    const ap_retry_budget_desc bbad[] = {
        {.window_ns = AP_RETRY_BUDGET_SLOTS - 1},
        {.window_ns = 3601 * AP_NS_PER_SEC},
        {.ratio_permille = 1000001},
    };
    for (size_t i = 0; i < sizeof bbad / sizeof bbad[0]; i++) {
        ap_retry_budget b;
        memset(&b, 0xA5, sizeof b);
        unsigned char before[sizeof b];
        memcpy(before, &b, sizeof b);
        EXPECT_EQ(ap_retry_budget_init(&b, &bbad[i]), AP_INVAL, "budget case %zu", i);
        EXPECT_EQ(memcmp(before, &b, sizeof b), 0);
    }
}

/* ---- delay sequences ---- */

static ap_retry_state mkstate(ap_retry_desc d)
{
    ap_retry_state st;
    EXPECT_EQ(ap_retry_state_init(&st, &d), AP_OK);
    return st;
}

Test(retry, fixed_and_exponential_exact)
{
    ap_retry_state st = mkstate((ap_retry_desc){.max_attempts = 9,
                                                .backoff = AP_RETRY_BACKOFF_FIXED,
                                                .initial_ns = 250, .cap_ns = 1000});
    for (int i = 0; i < 10; i++)
        EXPECT_EQ(ap_retry_next_delay(&st, NULL), 250u);

    st = mkstate((ap_retry_desc){.max_attempts = 9, .backoff = AP_RETRY_BACKOFF_EXPONENTIAL,
                                 .initial_ns = 100, .cap_ns = 1000});
    const uint64_t x2[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof x2 / sizeof x2[0]; i++)
        EXPECT_EQ(ap_retry_next_delay(&st, NULL), x2[i], "x2 step %zu", i);

    /* x1.5, floored at each step, no floating point */
    st = mkstate((ap_retry_desc){.max_attempts = 9, .backoff = AP_RETRY_BACKOFF_EXPONENTIAL,
                                 .initial_ns = 7, .cap_ns = 50, .multiplier_permille = 1500});
    const uint64_t x15[] = {7, 10, 15, 22, 33, 49, 50, 50};
    for (size_t i = 0; i < sizeof x15 / sizeof x15[0]; i++)
        EXPECT_EQ(ap_retry_next_delay(&st, NULL), x15[i], "x1.5 step %zu", i);

    /* huge values saturate at the cap, never wrap */
    st = mkstate((ap_retry_desc){.max_attempts = 9, .backoff = AP_RETRY_BACKOFF_EXPONENTIAL,
                                 .initial_ns = UINT64_MAX / 3, .cap_ns = UINT64_MAX,
                                 .multiplier_permille = 4000000000u});
    EXPECT_EQ(ap_retry_next_delay(&st, NULL), UINT64_MAX / 3);
    EXPECT_EQ(ap_retry_next_delay(&st, NULL), UINT64_MAX);
    EXPECT_EQ(ap_retry_next_delay(&st, NULL), UINT64_MAX);
    EXPECT_EQ(st.retries, 3);
}

/* The reference model of every jittered policy. */
static uint64_t ref_delay(ap_retry_backoff p, uint64_t b, uint64_t c, uint64_t m, uint64_t *cur,
                          ref_rng *r)
{
    uint64_t e = *cur, d;
    if (p == AP_RETRY_BACKOFF_DECORRELATED_JITTER) {
        d = ref_between(r, b, ref_mul(e, m));
        if (d > c)
            d = c;
        *cur = d;
        return d;
    }
    uint64_t n = ref_mul(e, m);
    *cur = n < c ? n : c;
    if (p == AP_RETRY_BACKOFF_FULL_JITTER)
        return ref_between(r, 0, e);
    return e - e / 2 + ref_between(r, 0, e / 2); /* equal */
}

Test(retry, jitter_exact_sequence_with_fixed_seed)
{
    const ap_retry_backoff pol[] = {AP_RETRY_BACKOFF_FULL_JITTER, AP_RETRY_BACKOFF_EQUAL_JITTER,
                                    AP_RETRY_BACKOFF_DECORRELATED_JITTER,
                                    AP_RETRY_BACKOFF_DEFAULT};
    for (size_t p = 0; p < 4; p++) {
        for (uint64_t seed = 1; seed <= 5; seed++) {
            ap_retry_desc d = {.max_attempts = 50, .backoff = pol[p], .initial_ns = 10 * MS,
                               .cap_ns = 2000 * MS};
            ap_retry_state st = mkstate(d);
            ap_rng rng;
            ref_rng ref;
            ap_rng_seed(&rng, seed);
            ref_seed(&ref, seed);
            ap_retry_backoff rp = pol[p] ? pol[p] : AP_RETRY_BACKOFF_FULL_JITTER;
            uint64_t m = rp == AP_RETRY_BACKOFF_DECORRELATED_JITTER ? 3000 : 2000;
            uint64_t cur = d.initial_ns;
            for (int k = 0; k < 40; k++) {
                uint64_t want = ref_delay(rp, d.initial_ns, d.cap_ns, m, &cur, &ref);
                EXPECT_EQ(ap_retry_next_delay(&st, &rng), want, "policy %zu seed %llu k %d",
                             p, (unsigned long long)seed, k);
            }
        }
    }
    /* and one sequence written out: full jitter, b = 100, c = 1000, seed 42 */
    ap_retry_state st = mkstate((ap_retry_desc){.max_attempts = 9, .initial_ns = 100,
                                                .cap_ns = 1000});
    ap_rng rng;
    ref_rng ref;
    ap_rng_seed(&rng, 42);
    ref_seed(&ref, 42);
    const uint64_t e[] = {100, 200, 400, 800, 1000, 1000};
    for (int k = 0; k < 6; k++) {
        uint64_t d = ap_retry_next_delay(&st, &rng);
        EXPECT_EQ(d, ref_between(&ref, 0, e[k]));
        EXPECT_LE(d, e[k]);
    }
}

Test(retry, jitter_bounds_over_1e5_draws)
{
    const uint64_t b = 3 * MS, c = 1000 * MS;
    const ap_retry_backoff pol[] = {AP_RETRY_BACKOFF_FULL_JITTER, AP_RETRY_BACKOFF_EQUAL_JITTER,
                                    AP_RETRY_BACKOFF_DECORRELATED_JITTER};
    for (size_t p = 0; p < 3; p++) {
        ap_rng rng;
        ap_rng_seed(&rng, 1000 + p);
        ap_retry_state st0 = mkstate((ap_retry_desc){.max_attempts = 20, .backoff = pol[p],
                                                     .initial_ns = b, .cap_ns = c});
        ap_retry_state st = st0;
        uint64_t e = b, lo_seen = UINT64_MAX, hi_seen = 0, viol = 0, at_cap = 0;
        for (int i = 0; i < 100000; i++) {
            if (i % 16 == 0) { /* restart: cover both growth and the capped tail */
                st = st0;
                e = b;
            }
            uint64_t d = ap_retry_next_delay(&st, &rng);
            uint64_t lo = pol[p] == AP_RETRY_BACKOFF_FULL_JITTER    ? 0
                          : pol[p] == AP_RETRY_BACKOFF_EQUAL_JITTER ? e - e / 2
                                                                    : b;
            uint64_t hi = pol[p] == AP_RETRY_BACKOFF_DECORRELATED_JITTER ? c : e;
            viol += d > c || d < lo || d > hi;
            lo_seen = d < lo_seen ? d : lo_seen;
            hi_seen = d > hi_seen ? d : hi_seen;
            at_cap += d == c;
            e = e * 2 < c ? e * 2 : c;
        }
        EXPECT_EQ(viol, 0, "policy %zu: %llu delays out of bounds", p,
                     (unsigned long long)viol);
        EXPECT_LE(hi_seen, c);
        /* the range is actually used */
        EXPECT_GT(hi_seen, c * 9 / 10, "policy %zu max %llu", p, (unsigned long long)hi_seen);
        if (pol[p] == AP_RETRY_BACKOFF_FULL_JITTER)
            EXPECT_LT(lo_seen, b / 10);
        if (pol[p] == AP_RETRY_BACKOFF_DECORRELATED_JITTER)
            EXPECT(lo_seen >= b && lo_seen < 2 * b && at_cap > 0);
    }
}

Test(retry, hint_honoured_capped_and_jittered)
{
    ap_rng rng;
    ap_rng_seed(&rng, 3);
    ap_retry_state st = mkstate((ap_retry_desc){.max_attempts = 9,
                                                .backoff = AP_RETRY_BACKOFF_EXPONENTIAL,
                                                .initial_ns = 10, .cap_ns = 1000,
                                                .hint_cap_ns = 5000});
    EXPECT_EQ(ap_retry_next_delay_hint(&st, NULL, 3000), 3000u); /* above cap_ns: honoured */
    EXPECT_EQ(ap_retry_next_delay_hint(&st, NULL, 9000), 5000u); /* capped */
    EXPECT_EQ(ap_retry_next_delay(&st, NULL), 40u);              /* sequence advanced */
    EXPECT_EQ(ap_retry_next_delay_hint(&st, NULL, UINT64_MAX), 5000u);

    ap_retry_state j0 = mkstate((ap_retry_desc){.max_attempts = 9,
                                                .backoff = AP_RETRY_BACKOFF_FIXED,
                                                .initial_ns = 10, .cap_ns = 100,
                                                .hint_cap_ns = 1150,
                                                .hint_jitter_permille = 200});
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 100000; i++) {
        ap_retry_state j = j0;
        uint64_t d = ap_retry_next_delay_hint(&j, &rng, 1000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    EXPECT_EQ(lo, 1000u, "jitter only adds to the hint");
    EXPECT_EQ(hi, 1150u, "capped after jitter");

    /* through the future: every failure says "retry after 700"; the policy
     * would wait 10; hint cap 500 */
    script s = {.fail_first = 3, .fail_st = AP_AGAIN, .dur = 1, .hint = 700};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 5,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 10, .cap_ns = 10,
                                                    .hint_cap_ns = 500},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(ap_retry_fut_status(&f), AP_OK);
    EXPECT_EQ(s.n, 4);
    const uint64_t want[] = {0, 501, 1002, 1503};
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(s.starts[i], want[i], "attempt %d at %llu", i,
                     (unsigned long long)s.starts[i]);
}

/* ---- limits ---- */

Test(retry, scripted_failures_k_of_n)
{
    for (uint32_t n = 1; n <= 8; n++)
        for (uint32_t k = 0; k <= 10; k++) {
            script s = {.fail_first = k, .fail_st = AP_AGAIN, .dur = 5};
            ap_retry_op op = script_op(&s);
            ap_retry_fut f;
            EXPECT_EQ(ap_retry_fut_init(&f,
                                           &(ap_retry_desc){.max_attempts = n,
                                                            .backoff = AP_RETRY_BACKOFF_FIXED,
                                                            .initial_ns = 100,
                                                            .cap_ns = 100},
                                           NULL, NULL, &op, AP_DEADLINE_NONE),
                         AP_OK);
            uint64_t now = 0;
            drive(&f.base, &now);
            ap_retry_result r = ap_retry_fut_result(&f);
            uint32_t want = k + 1 < n ? k + 1 : n;
            EXPECT_EQ(r.attempts, want, "n %u k %u", n, k);
            EXPECT_EQ(s.n, want);
            /* attempts that kept failing with a retryable error: AP_EXHAUSTED */
            EXPECT_EQ(r.status, k < n ? AP_OK : AP_EXHAUSTED, "n %u k %u", n, k);
            EXPECT_EQ(r.last_error, k < n ? AP_OK : AP_AGAIN);
            EXPECT_EQ(r.stop, k < n ? AP_RETRY_STOP_SUCCEEDED : AP_RETRY_STOP_EXHAUSTED);
            for (uint32_t i = 0; i < s.n; i++) /* each attempt 5 ns, then 100 ns backoff */
                EXPECT_EQ(s.starts[i], i * 105u);
            EXPECT_EQ(now, (uint64_t)(want - 1) * 105 + 5);
            /* done is done: polling again changes nothing */
            ap_cx cx = {{noop_wake, NULL}, now + 1000, AP_DEADLINE_NONE};
            EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_READY);
            EXPECT_EQ(s.n, want);
            ap_retry_fut_cancel(&f);
            EXPECT_EQ(ap_retry_fut_status(&f), r.status);
        }
}

Test(retry, deadline_never_exceeded)
{
    ap_rng cfg, rng;
    ap_rng_seed(&cfg, 99);
    ap_rng_seed(&rng, 100);
    for (int trial = 0; trial < 3000; trial++) {
        uint64_t dur = ap_rng_between(&cfg, 0, 50);
        uint64_t deadline = ap_rng_between(&cfg, 0, 2000);
        uint64_t start = ap_rng_between(&cfg, 0, 100);
        script s = {.fail_first = 1000, .fail_st = AP_AGAIN, .dur = dur};
        ap_retry_op op = script_op(&s);
        ap_retry_fut f;
        ap_retry_desc d = {.max_attempts = 60,
                           .backoff = (ap_retry_backoff)ap_rng_between(&cfg, 1, 5),
                           .initial_ns = ap_rng_between(&cfg, 1, 20), .cap_ns = 300};
        EXPECT_EQ(ap_retry_fut_init(&f, &d, &rng, NULL, &op, deadline), AP_OK);
        uint64_t now = start;
        drive(&f.base, &now);
        ap_retry_result r = ap_retry_fut_result(&f);
        for (uint32_t i = 0; i < s.n && i < 64; i++)
            EXPECT_LT(s.starts[i], deadline, "trial %d: attempt %u at %llu, deadline %llu",
                         trial, i, (unsigned long long)s.starts[i],
                         (unsigned long long)deadline);
        EXPECT_LE(now, deadline > start ? deadline : start, "finished after the deadline");
        if (r.stop == AP_RETRY_STOP_DEADLINE) {
            EXPECT_EQ(r.status, AP_TIMEDOUT);
            EXPECT_EQ(r.last_error, s.n == 0 || s.att.canceled ? AP_TIMEDOUT : AP_AGAIN);
        } else {
            EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED, "trial %d", trial);
            EXPECT_EQ(r.status, AP_EXHAUSTED, "exhausted before the deadline");
            EXPECT_EQ(r.last_error, AP_AGAIN);
            EXPECT_EQ(r.attempts, 60);
        }
        EXPECT_LE(s.att.canceled, 1);
    }
    /* an attempt in flight at the deadline is cancelled there */
    script s = {.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 1000};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f, &(ap_retry_desc){.max_attempts = 3}, &rng, NULL, &op, 400),
                 AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(now, 400u);
    EXPECT_EQ(s.att.canceled, 1);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_TIMEDOUT && r.last_error == AP_TIMEDOUT && r.attempts == 1 &&
              r.stop == AP_RETRY_STOP_DEADLINE);
}

static bool only_again(ap_status err, void *ctx)
{
    ++*(int *)ctx;
    return err == AP_AGAIN;
}

Test(retry, predicate_stops_on_permanent_errors)
{
    int calls = 0;
    script s = {.fail_first = 5, .fail_st = AP_AGAIN, .dur = 1};
    s.fail_st_at[2] = AP_REJECTED; /* permanent for this predicate */
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 10,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 1, .cap_ns = 1,
                                                    .retryable = only_again,
                                                    .retryable_ctx = &calls},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_REJECTED && r.last_error == AP_REJECTED && r.attempts == 3 &&
              r.stop == AP_RETRY_STOP_PERMANENT);
    EXPECT_EQ(calls, 3);
    /* the default predicate: AP_INVAL, AP_CANCELED, AP_CLOSED are permanent */
    ap_retry_desc d = {.max_attempts = 1};
    EXPECT(ap_retry_is_retryable(&d, AP_AGAIN) && ap_retry_is_retryable(&d, AP_TIMEDOUT) &&
              ap_retry_is_retryable(&d, AP_REJECTED));
    EXPECT(!ap_retry_is_retryable(&d, AP_INVAL) && !ap_retry_is_retryable(&d, AP_CANCELED) &&
              !ap_retry_is_retryable(&d, AP_CLOSED));
    /* AP_NOT_READY is "not yet": retryable whatever the predicate says */
    EXPECT(ap_retry_is_retryable(&d, AP_NOT_READY));
    d.retryable = only_again;
    d.retryable_ctx = &calls;
    calls = 0;
    EXPECT(ap_retry_is_retryable(&d, AP_NOT_READY) && calls == 0);
    script s2 = {.fail_first = 5, .fail_st = AP_CLOSED, .dur = 1};
    op = script_op(&s2);
    ap_rng rng;
    ap_rng_seed(&rng, 1);
    EXPECT_EQ(ap_retry_fut_init(&f, &(ap_retry_desc){.max_attempts = 10}, &rng, NULL, &op,
                                   AP_DEADLINE_NONE),
                 AP_OK);
    now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(ap_retry_fut_status(&f), AP_CLOSED);
    EXPECT_EQ(s2.n, 1);
}

/* ---- budget ---- */

Test(retry, budget_caps_retries_and_expires)
{
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = 100,
                                              .min_per_sec = AP_RETRY_BUDGET_ZERO,
                                              .window_ns = 10 * AP_NS_PER_SEC}),
                 AP_OK);
    EXPECT_EQ(b.reserve, 0);
    EXPECT(!ap_retry_budget_try_withdraw(&b, 0), "no requests, no floor: nothing");
    for (int i = 0; i < 1000; i++)
        ap_retry_budget_deposit(&b, (uint64_t)i * MS); /* t in [0, 1 s) */
    int ok = 0;
    for (int i = 0; i < 500; i++)
        ok += ap_retry_budget_try_withdraw(&b, 2 * AP_NS_PER_SEC);
    EXPECT_EQ(ok, 100, "10 %% of 1000 requests");
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT_EQ(st.requests, 1000);
    EXPECT_EQ(st.retries, 100);
    EXPECT_EQ(st.denied, 401);
    /* still in the window at 9.5 s; gone once the whole window passed */
    EXPECT(!ap_retry_budget_try_withdraw(&b, 9500 * MS));
    ap_retry_budget_deposit(&b, 12 * AP_NS_PER_SEC); /* the old deposits and retries expired */
    for (int i = 0; i < 9; i++)
        ap_retry_budget_deposit(&b, 12 * AP_NS_PER_SEC);
    EXPECT(ap_retry_budget_try_withdraw(&b, 12 * AP_NS_PER_SEC));
    EXPECT(!ap_retry_budget_try_withdraw(&b, 12 * AP_NS_PER_SEC));

    /* the floor alone: 3 per second over a 2 s window = 6 */
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = AP_RETRY_BUDGET_ZERO,
                                              .min_per_sec = 3,
                                              .window_ns = 2 * AP_NS_PER_SEC}),
                 AP_OK);
    ok = 0;
    for (int i = 0; i < 20; i++)
        ok += ap_retry_budget_try_withdraw(&b, AP_NS_PER_SEC);
    EXPECT_EQ(ok, 6);
}

Test(retry, budget_stops_a_retry_storm)
{
    enum { C = 200 };
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = 100,
                                              .min_per_sec = AP_RETRY_BUDGET_ZERO}),
                 AP_OK);
    static script s[C];
    static ap_retry_fut f[C];
    memset(s, 0, sizeof s);
    for (int i = 0; i < C; i++) {
        s[i] = (script){.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 10};
        ap_retry_op op = script_op(&s[i]);
        EXPECT_EQ(ap_retry_fut_init(&f[i],
                                       &(ap_retry_desc){.max_attempts = 5,
                                                        .backoff = AP_RETRY_BACKOFF_FIXED,
                                                        .initial_ns = 1 * MS, .cap_ns = 1 * MS},
                                       NULL, &b, &op, AP_DEADLINE_NONE),
                     AP_OK);
    }
    /* every caller starts at once; poll them all at each instant */
    uint64_t now = 0;
    int done = 0;
    while (done < C) {
        uint64_t next = AP_DEADLINE_NONE;
        done = 0;
        for (int i = 0; i < C; i++) {
            ap_cx cx = {{noop_wake, NULL}, now, AP_DEADLINE_NONE};
            if (ap_retry_fut_poll(&f[i], &cx) == AP_READY)
                done++;
            else
                next = cx.deadline < next ? cx.deadline : next;
        }
        if (done < C)
            now = next;
    }
    uint64_t attempts = 0, budget_stops = 0;
    for (int i = 0; i < C; i++) {
        ap_retry_result r = ap_retry_fut_result(&f[i]);
        /* budget refused or attempts used up: AP_EXHAUSTED, the last error beside */
        EXPECT_EQ(r.status, AP_EXHAUSTED, "stop %d", r.stop);
        EXPECT_EQ(r.last_error, AP_AGAIN);
        attempts += r.attempts;
        budget_stops += r.stop == AP_RETRY_STOP_BUDGET;
    }
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT_EQ(st.requests, C);
    EXPECT_EQ(st.retries, C / 10, "10 %% of %d requests", C);
    EXPECT_EQ(attempts, C + C / 10, "without a budget this would be %d", 5 * C);
    EXPECT_EQ(st.denied, budget_stops);
    EXPECT_EQ(budget_stops, C, "the 20 retries went to the first 20 callers; each caller's\n"
                                   "next request for a retry was refused");
}

typedef struct budget_thr {
    ap_retry_budget *b;
    int got;
} budget_thr;

static void *budget_thread(void *arg)
{
    budget_thr *t = arg;
    for (int i = 0; i < 20000; i++) {
        if (i % 4 == 0)
            ap_retry_budget_deposit(t->b, 5);
        t->got += ap_retry_budget_try_withdraw(t->b, 5);
    }
    return NULL;
}

Test(retry, budget_concurrent_never_overdrawn, .timeout = TEST_TIMEOUT_S)
{
    enum { T = 8 };
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = 200, .min_per_sec = 1,
                                              .window_ns = 10 * AP_NS_PER_SEC}),
                 AP_OK);
    pthread_t th[T];
    budget_thr a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (budget_thr){&b, 0};
        EXPECT_EQ(pthread_create(&th[i], NULL, budget_thread, &a[i]), 0);
    }
    int got = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        got += a[i].got;
    }
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT_EQ(st.requests, T * 5000u);
    EXPECT_EQ(st.retries, (uint64_t)got);
    EXPECT_EQ(st.retries + st.denied, T * 20000u);
    EXPECT_LE(st.retries, st.requests / 5 + 10, "overdrawn: %llu",
                  (unsigned long long)st.retries);
    EXPECT_GE(st.retries, st.requests / 5 - T, "underused: %llu",
                  (unsigned long long)st.retries);
}

/* ---- the theorem: P(success) = 1-(1-p)^n, E[attempts] = (1-(1-p)^n)/p ---- */

Test(retry, theorem_success_rate_and_mean_attempts)
{
    const struct { uint32_t p_permille, n; } cases[] = {{500, 3}, {100, 5}, {900, 2}, {300, 1},
                                                        {50, 8}};
    enum { N = 100000 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double p = cases[c].p_permille / 1000.0, q = 1 - p;
        uint32_t n = cases[c].n;
        ap_rng succ;
        ap_rng_seed(&succ, 2024 + c);
        uint64_t ok = 0, att = 0;
        for (int t = 0; t < N; t++) {
            script s = {.succ_rng = &succ, .p_permille = cases[c].p_permille, .dur = 1};
            ap_retry_op op = script_op(&s);
            ap_retry_fut f;
            if (ap_retry_fut_init(&f,
                                  &(ap_retry_desc){.max_attempts = n,
                                                   .backoff = AP_RETRY_BACKOFF_FIXED,
                                                   .initial_ns = 1, .cap_ns = 1},
                                  NULL, NULL, &op, AP_DEADLINE_NONE) != AP_OK)
                EXPECT_FAIL("init");
            uint64_t now = 0;
            for (;;) {
                ap_cx cx = {{noop_wake, NULL}, now, AP_DEADLINE_NONE};
                if (ap_retry_fut_poll(&f, &cx) == AP_READY)
                    break;
                now = cx.deadline;
            }
            ok += ap_retry_fut_status(&f) == AP_OK;
            att += f.res.attempts;
        }
        double ps = 1 - dpow(q, n);
        double sig_s = dsqrt(ps * (1 - ps) / N);
        EXPECT_LT(dabs((double)ok / N - ps), 5 * sig_s + 1e-12,
                     "p %.3f n %u: success %.5f, theory %.5f", p, n, (double)ok / N, ps);
        /* attempts A: P(A >= k) = q^(k-1); E[A] = sum q^(k-1); E[A^2] = sum (2k-1) q^(k-1) */
        double ea = 0, ea2 = 0;
        for (uint32_t k = 1; k <= n; k++) {
            ea += dpow(q, k - 1);
            ea2 += (2.0 * k - 1) * dpow(q, k - 1);
        }
        EXPECT_LT(dabs(ea - ps / p), 1e-9);
        double sig_a = dsqrt((ea2 - ea * ea) / N);
        EXPECT_LT(dabs((double)att / N - ea), 5 * sig_a + 1e-12,
                     "p %.3f n %u: mean attempts %.5f, theory %.5f", p, n, (double)att / N, ea);
    }
}

/* ---- composition: retry(timeout(pop on an mpmc queue)) ---- */

typedef struct pop_attempt {
    ap_mpmc_pop_fut pop;
    ap_timeout t;
    int item;
} pop_attempt;

typedef struct pop_op {
    ap_mpmc *q;
    uint64_t per_attempt; /* 0: no ap_timeout around the pop */
    uint64_t starts[32];
    uint32_t n;
    pop_attempt att;
} pop_op;

static ap_future *pop_start(void *ctx, void *storage, uint32_t k, uint64_t now)
{
    pop_op *o = ctx;
    pop_attempt *a = storage;
    (void)k;
    o->starts[o->n++] = now;
    ap_mpmc_pop_fut_init(&a->pop, o->q, &a->item);
    if (!o->per_attempt)
        return &a->pop.base;
    ap_timeout_init_after(&a->t, &a->pop.base, now, o->per_attempt);
    return &a->t.base;
}

static ap_status pop_result(void *ctx, ap_future *f, int *app, uint64_t *hint)
{
    pop_op *o = ctx;
    (void)hint, (void)app;
    if (o->per_attempt) {
        EXPECT_EQ(f, &o->att.t.base);
        ap_status ts = ap_timeout_status(&o->att.t);
        if (ts != AP_OK)
            return ts;
    }
    return ap_mpmc_pop_status(&o->att.pop);
}

static ap_mpmc *mkq(void)
{
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 4, sizeof(int), NULL), AP_OK);
    return q;
}

static void push_item(void *ctx, uint64_t now)
{
    (void)now;
    int x = 42;
    EXPECT_EQ(ap_mpmc_try_push(ctx, &x), AP_OK);
}

Test(retry, compose_retry_of_timeout_exact_attempt_times)
{
    ap_mpmc *q = mkq();
    const ap_retry_desc d = {.max_attempts = 10, .backoff = AP_RETRY_BACKOFF_FIXED,
                             .initial_ns = 50 * MS, .cap_ns = 50 * MS};
    /* 1. overall deadline 680 ms falls inside attempt 5 (started at 600) */
    pop_op o = {.q = q, .per_attempt = 100 * MS};
    ap_retry_op op = {.start = pop_start, .result = pop_result, .ctx = &o, .storage = &o.att};
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, 680 * MS), AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(now, 680 * MS, "stops exactly at the overall deadline");
    EXPECT_EQ(o.n, 5);
    for (uint32_t i = 0; i < o.n; i++)
        EXPECT_EQ(o.starts[i], i * 150 * MS, "attempt %u at %llu", i,
                     (unsigned long long)o.starts[i]);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_TIMEDOUT && r.last_error == AP_TIMEDOUT && r.attempts == 5 &&
              r.stop == AP_RETRY_STOP_DEADLINE);
    EXPECT_EQ(ap_timeout_status(&o.att.t), AP_CANCELED, "the last attempt was cancelled");
    EXPECT(!ap_waitlist_has_waiters(&q->not_empty));

    /* 2. deadline 560 ms: the retry after the attempt timing out at 550
     * would start at 600 >= 560, so it is not scheduled */
    memset(&o, 0, sizeof o);
    o.q = q;
    o.per_attempt = 100 * MS;
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, 560 * MS), AP_OK);
    now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(now, 550 * MS);
    EXPECT_EQ(o.n, 4);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_TIMEDOUT && r.last_error == AP_TIMEDOUT && r.attempts == 4 &&
              r.stop == AP_RETRY_STOP_DEADLINE);
    EXPECT(!ap_waitlist_has_waiters(&q->not_empty));

    /* 3. an item arrives at 200 ms, during attempt 2 (150..250) */
    memset(&o, 0, sizeof o);
    o.q = q;
    o.per_attempt = 100 * MS;
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, 680 * MS), AP_OK);
    now = 0;
    drive_ev(&f.base, &now, 200 * MS, push_item, q);
    EXPECT_EQ(now, 200 * MS);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_OK && r.attempts == 2 && r.stop == AP_RETRY_STOP_SUCCEEDED);
    EXPECT_EQ(o.att.item, 42);
    EXPECT_EQ(o.starts[1], 150 * MS);
    EXPECT(!ap_waitlist_has_waiters(&q->not_empty));
    ap_mpmc_destroy(q);
}

Test(retry, cancel_cancels_the_attempt_leaving_no_waiter)
{
    ap_mpmc *q = mkq();
    const ap_retry_desc d = {.max_attempts = 5, .backoff = AP_RETRY_BACKOFF_FIXED,
                             .initial_ns = 50 * MS, .cap_ns = 50 * MS};
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        pop_op o = {.q = q, .per_attempt = wrapped ? 100 * MS : 0};
        ap_retry_op op = {.start = pop_start, .result = pop_result, .ctx = &o, .storage = &o.att};
        ap_retry_fut f;
        EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, 10 * AP_NS_PER_SEC), AP_OK);
        ap_cx cx = {{noop_wake, NULL}, 0, AP_DEADLINE_NONE};
        EXPECT_EQ(f.base.poll(&f.base, &cx), AP_PENDING);
        EXPECT(ap_waitlist_has_waiters(&q->not_empty), "the attempt is really waiting");
        /* the retry's own bound, or sooner the pop's confirm re-poll
         * (waitlist.h, ap_waitlist_register_cx) */
        uint64_t bound = wrapped ? 100 * MS : 10 * AP_NS_PER_SEC;
        EXPECT(cx.deadline == bound || cx.deadline == AP_WAIT_CONFIRM_NS,
                  "deadline %llu", (unsigned long long)cx.deadline);
        ap_future_cancel(&f.base);
        EXPECT(!ap_waitlist_has_waiters(&q->not_empty), "cancel left a waiter");
        EXPECT_EQ(ap_retry_fut_status(&f), AP_CANCELED);
        EXPECT_EQ(ap_retry_fut_result(&f).stop, AP_RETRY_STOP_CANCELED);
        EXPECT_EQ(ap_mpmc_pop_status(&o.att.pop), AP_CANCELED);
        if (wrapped)
            EXPECT_EQ(ap_timeout_status(&o.att.t), AP_CANCELED);
        ap_future_cancel(&f.base); /* idempotent */
        EXPECT_EQ(f.base.poll(&f.base, &cx), AP_READY);
        EXPECT_EQ(o.n, 1, "nothing started after cancel");
        /* an item pushed now stays in the queue: nobody took it */
        int x = 1, y = 0;
        EXPECT_EQ(ap_mpmc_try_push(q, &x), AP_OK);
        EXPECT_EQ(ap_mpmc_try_pop(q, &y), AP_OK);
        EXPECT_EQ(y, 1);
    }
    /* cancel during the backoff: no attempt in flight, nothing more starts */
    pop_op o = {.q = q, .per_attempt = 100 * MS};
    ap_retry_op op = {.start = pop_start, .result = pop_result, .ctx = &o, .storage = &o.att};
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, AP_DEADLINE_NONE), AP_OK);
    ap_cx cx = {{noop_wake, NULL}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
    cx = (ap_cx){{noop_wake, NULL}, 100 * MS, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING); /* timed out, backing off */
    EXPECT_EQ(cx.deadline, 150 * MS);
    EXPECT(!ap_waitlist_has_waiters(&q->not_empty));
    ap_retry_fut_cancel(&f);
    EXPECT_EQ(ap_retry_fut_status(&f), AP_CANCELED);
    cx = (ap_cx){{noop_wake, NULL}, 1000 * MS, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_READY);
    EXPECT_EQ(o.n, 1);
    ap_mpmc_destroy(q);
}

/* ---- the blocking helper, on the real clock (tiny delays) ---- */

typedef struct call_ctx {
    int calls, fail_first;
} call_ctx;

static ap_status flaky(void *arg, int *app)
{
    call_ctx *c = arg;
    EXPECT_EQ(*app, 0, "app_error is 0 on entry");
    bool fail = c->calls++ < c->fail_first;
    *app = fail ? 500 + c->calls : 200; /* 501, 502, ... then 200 */
    return fail ? AP_AGAIN : AP_OK;
}

Test(retry, retry_call_blocking_helper, .timeout = TEST_TIMEOUT_S)
{
    ap_rng rng;
    ap_rng_seed(&rng, 5);
    ap_retry_desc d = {.max_attempts = 4, .backoff = AP_RETRY_BACKOFF_EXPONENTIAL,
                       .initial_ns = 1 * MS, .cap_ns = 4 * MS};
    call_ctx c = {0, 2};
    ap_retry_result r;
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_retry_call(&d, &rng, NULL, flaky, &c, AP_DEADLINE_NONE, &r), AP_OK);
    uint64_t el = ap_now_ns() - t0;
    EXPECT_EQ(c.calls, 3);
    EXPECT(r.attempts == 3 && r.stop == AP_RETRY_STOP_SUCCEEDED && r.app_error == 200);
    EXPECT_GE(el, 3 * MS, "slept 1 + 2 ms between the attempts");

    c = (call_ctx){0, 100};
    EXPECT_EQ(ap_retry_call(&d, &rng, NULL, flaky, &c, AP_DEADLINE_NONE, &r), AP_EXHAUSTED);
    EXPECT(c.calls == 4 && r.stop == AP_RETRY_STOP_EXHAUSTED && r.last_error == AP_AGAIN);
    EXPECT_EQ(r.app_error, 504, "the last call's application error");

    /* a deadline that has passed: nothing is called */
    EXPECT_EQ(ap_retry_call(&d, &rng, NULL, never_called, NULL, ap_now_ns() - 1, &r),
                 AP_TIMEDOUT);
    EXPECT(r.attempts == 0 && r.last_error == AP_TIMEDOUT && r.stop == AP_RETRY_STOP_DEADLINE &&
              r.app_error == 0);

    /* a deadline 2.5 ms away: attempts at ~0, ~1 ms, ~3 ms would be over */
    c = (call_ctx){0, 100};
    t0 = ap_now_ns();
    EXPECT_EQ(ap_retry_call(&d, &rng, NULL, flaky, &c, t0 + 2500 * AP_NS_PER_US, &r),
                 AP_TIMEDOUT);
    EXPECT_EQ(r.last_error, AP_AGAIN);
    EXPECT_LE(c.calls, 2);
    EXPECT_LT(ap_now_ns(), t0 + 2500 * AP_NS_PER_US + 50 * MS);

    /* with a budget: deposits once, a refused retry stops AP_EXHAUSTED */
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = AP_RETRY_BUDGET_ZERO,
                                              .min_per_sec = AP_RETRY_BUDGET_ZERO}),
                 AP_OK);
    c = (call_ctx){0, 100};
    EXPECT_EQ(ap_retry_call(&d, &rng, &b, flaky, &c, AP_DEADLINE_NONE, NULL), AP_EXHAUSTED);
    EXPECT_EQ(c.calls, 1);
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT(st.requests == 1 && st.retries == 0 && st.denied == 1);
}

/* ---- ap_retry_call on the desc's clock (desc.clock) ---- */

typedef struct clocked_ctx {
    test_clock *c;
    int calls, fail_first;
    uint64_t at[8]; /* the fake time of each call */
} clocked_ctx;

static ap_status clocked_flaky(void *arg, int *app)
{
    clocked_ctx *x = arg;
    (void)app;
    if (x->calls < 8)
        x->at[x->calls] = atomic_load(&x->c->t);
    return x->calls++ < x->fail_first ? AP_AGAIN : AP_OK;
}

Test(retry, retry_call_sleeps_and_times_out_on_the_desc_clock, .timeout = TEST_TIMEOUT_S)
{
    /* a minute between attempts on a fake clock at 2^62 ns that moves a
     * second per read: the backoff is measured on the FAKE clock (each
     * slice sleeps at most AP_CLOCK_PARK_MAX_NS of real time) */
    const uint64_t t0 = UINT64_C(1) << 62, step = AP_NS_PER_SEC, gap = 60 * AP_NS_PER_SEC;
    test_clock c = {t0, step, 0};
    ap_retry_desc d = {.max_attempts = 5, .backoff = AP_RETRY_BACKOFF_FIXED, .initial_ns = gap,
                       .cap_ns = gap, .clock = {test_clock_now, &c}};
    clocked_ctx x = {&c, 0, 2, {0}};
    ap_retry_result r;
    uint64_t r0 = ap_now_ns();
    EXPECT_EQ(ap_retry_call(&d, NULL, NULL, clocked_flaky, &x, AP_DEADLINE_NONE, &r), AP_OK);
    EXPECT_EQ(x.calls, 3);
    EXPECT(r.attempts == 3 && r.stop == AP_RETRY_STOP_SUCCEEDED);
    for (int i = 1; i < 3; i++) {
        uint64_t g = x.at[i] - x.at[i - 1];
        EXPECT(g >= gap && g <= gap + 3 * step, "gap %d: %llu fake ns", i,
                  (unsigned long long)g);
    }

    /* the deadline is on the fake clock: 90 s after now, the third
     * attempt (at ~120 s) would start past it */
    x = (clocked_ctx){&c, 0, 100, {0}};
    uint64_t dl = atomic_load(&c.t) + 90 * AP_NS_PER_SEC;
    EXPECT_EQ(ap_retry_call(&d, NULL, NULL, clocked_flaky, &x, dl, &r), AP_TIMEDOUT);
    EXPECT(x.calls == 2 && r.attempts == 2 && r.stop == AP_RETRY_STOP_DEADLINE &&
              r.last_error == AP_AGAIN);
    EXPECT_LT(x.at[1], dl);
    uint64_t real = ap_now_ns() - r0;
    EXPECT_LT(real, 5 * AP_NS_PER_SEC, "4 fake minutes took %llu real ns",
                 (unsigned long long)real);

    /* Regression: before desc.clock, ap_retry_call compared the deadline
     * with ap_now_ns() and slept on it. A deadline that has passed on the
     * caller's clock (2^62 - 1 here) is still ~146 years away on that one,
     * so the old helper started attempts (and slept a real minute between
     * them); on the desc's clock nothing is called. */
    EXPECT(!ap_deadline_passed(t0 - 1, ap_now_ns()), "the real clock is before it");
    EXPECT_EQ(ap_retry_call(&d, NULL, NULL, never_called, NULL, t0 - 1, &r), AP_TIMEDOUT);
    EXPECT(r.attempts == 0 && r.stop == AP_RETRY_STOP_DEADLINE);
}

/* ---- regression: status is AP_NOT_READY exactly while running ---- */

/* Review bug 4: during backoff the status showed the last error (e.g.
 * AP_REJECTED) while stop was still RUNNING. Issue #11: "running" is
 * AP_NOT_READY (AP_AGAIN means only "a peer is mid-operation"), and
 * exhausted attempts end AP_EXHAUSTED, whatever the error was. */
static void status_tracks_completion(ap_status err)
{
    script s = {.fail_first = 1000, .fail_st = err, .dur = 5};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 3,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 100, .cap_ns = 100},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    EXPECT_EQ(ap_retry_fut_status(&f), AP_NOT_READY, "before the first poll");
    uint64_t now = 0;
    int polls = 0, backoff_polls = 0;
    for (;;) {
        ap_cx cx = {{noop_wake, NULL}, now, AP_DEADLINE_NONE};
        ap_poll p = ap_retry_fut_poll(&f, &cx);
        ap_retry_result r = ap_retry_fut_result(&f);
        EXPECT_EQ(r.status, ap_retry_fut_status(&f));
        if (p == AP_PENDING) {
            EXPECT_EQ(r.stop, AP_RETRY_STOP_RUNNING);
            EXPECT_EQ(r.status, AP_NOT_READY, "pending (err %s, poll %d): status %s",
                         ap_status_str(err), polls, ap_status_str(r.status));
            backoff_polls += f.attempt == NULL; /* pending in the backoff */
            if (r.attempts > 0 && now >= 5)
                EXPECT_EQ(r.last_error, err, "the last error is in last_error");
            EXPECT_NE(cx.deadline, AP_DEADLINE_NONE);
            now = cx.deadline;
        } else {
            EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED);
            EXPECT_NE(r.status, AP_NOT_READY, "finished (err %s): status is AP_NOT_READY",
                          ap_status_str(err));
            EXPECT_EQ(r.status, AP_EXHAUSTED);
            EXPECT_EQ(r.last_error, err);
            EXPECT_EQ(r.attempts, 3);
            break;
        }
        EXPECT_LT(++polls, 100);
    }
    EXPECT_GE(polls, 4, "attempt / backoff polls were observed");
    EXPECT_GE(backoff_polls, 2, "polls during the backoffs were observed");
}

Test(retry, status_is_not_ready_exactly_while_running_rejected)
{
    status_tracks_completion(AP_REJECTED);
}

Test(retry, status_is_not_ready_exactly_while_running_again)
{
    status_tracks_completion(AP_AGAIN);
}

Test(retry, status_is_not_ready_exactly_while_running_not_ready)
{
    status_tracks_completion(AP_NOT_READY);
}

Test(retry, status_is_not_ready_exactly_while_running_timedout)
{
    status_tracks_completion(AP_TIMEDOUT);
}

static bool again_is_permanent(ap_status err, void *ctx)
{
    (void)ctx;
    return err != AP_AGAIN;
}

static bool nothing_is_retryable(ap_status err, void *ctx)
{
    (void)err, (void)ctx;
    return false;
}

Test(retry, final_statuses_follow_the_status_table)
{
    /* permanent AP_AGAIN (a predicate says so): that error, as reported */
    script s = {.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 1};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 5,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 10, .cap_ns = 10,
                                                    .retryable = again_is_permanent},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_AGAIN && r.last_error == AP_AGAIN && r.attempts == 1 &&
              r.stop == AP_RETRY_STOP_PERMANENT);

    /* AP_NOT_READY is never final: retried even when the predicate says
     * "permanent" to everything, then exhausted */
    s = (script){.fail_first = 1000, .fail_st = AP_NOT_READY, .dur = 1};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 3,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 10, .cap_ns = 10,
                                                    .retryable = nothing_is_retryable},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    now = 0;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_EXHAUSTED && r.last_error == AP_NOT_READY && r.attempts == 3 &&
              r.stop == AP_RETRY_STOP_EXHAUSTED);

    /* budget refusal after AP_AGAIN: AP_EXHAUSTED, the last error beside it */
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){
                                              .ratio_permille = AP_RETRY_BUDGET_ZERO,
                                              .min_per_sec = AP_RETRY_BUDGET_ZERO}),
                 AP_OK);
    s = (script){.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 1};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 5,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 10, .cap_ns = 10},
                                   NULL, &b, &op, AP_DEADLINE_NONE),
                 AP_OK);
    now = 0;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_EXHAUSTED && r.last_error == AP_AGAIN && r.attempts == 1 &&
              r.stop == AP_RETRY_STOP_BUDGET);

    /* the blocking helper, exhausted */
    ap_rng rng;
    ap_rng_seed(&rng, 9);
    call_ctx c = {0, 100};
    EXPECT_EQ(ap_retry_call(&(ap_retry_desc){.max_attempts = 2,
                                                .backoff = AP_RETRY_BACKOFF_FIXED,
                                                .initial_ns = 1000, .cap_ns = 1000},
                               &rng, NULL, flaky, &c, AP_DEADLINE_NONE, &r),
                 AP_EXHAUSTED);
    EXPECT(r.status == AP_EXHAUSTED && r.last_error == AP_AGAIN && r.attempts == 2 &&
              r.stop == AP_RETRY_STOP_EXHAUSTED);
}

/* ---- issue #11 ---- */

/* Regression (issue #11, 3): an op that always returns a retryable error,
 * no deadline: the retry ends AP_EXHAUSTED with last_error = that error,
 * never AP_TIMEDOUT ("timed out" claimed a deadline there was none of) --
 * also when the error is the op's own AP_TIMEDOUT (a per-attempt timeout). */
static ap_status always_err_st;
static ap_status always_err(void *arg, int *app)
{
    ++*(int *)arg;
    *app = 7;
    return always_err_st;
}

Test(retry, exhausted_without_deadline_is_exhausted_not_timed_out)
{
    static const ap_status errs[] = {AP_AGAIN, AP_REJECTED, AP_TIMEDOUT, AP_FULL, AP_EMPTY,
                                     AP_NOMEM, AP_NOT_READY, AP_DROPPED};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        ap_status err = errs[i];
        script s = {.fail_first = 1000, .fail_st = err, .dur = 3};
        ap_retry_op op = script_op(&s);
        ap_retry_fut f;
        EXPECT_EQ(ap_retry_fut_init(&f,
                                       &(ap_retry_desc){.max_attempts = 3,
                                                        .backoff = AP_RETRY_BACKOFF_FIXED,
                                                        .initial_ns = 10, .cap_ns = 10},
                                       NULL, NULL, &op, AP_DEADLINE_NONE),
                     AP_OK);
        uint64_t now = 0;
        drive(&f.base, &now);
        ap_retry_result r = ap_retry_fut_result(&f);
        EXPECT_EQ(r.stop, AP_RETRY_STOP_EXHAUSTED, "err %s", ap_status_str(err));
        EXPECT_NE(r.status, AP_TIMEDOUT, "no deadline, yet the status is \"%s\"",
                      ap_status_str(r.status));
        EXPECT_EQ(r.status, AP_EXHAUSTED, "err %s: status %s", ap_status_str(err),
                     ap_status_str(r.status));
        EXPECT_EQ(r.last_error, err);
        EXPECT_EQ(r.attempts, 3);
        /* the blocking helper says the same */
        int calls = 0;
        always_err_st = err;
        EXPECT_EQ(ap_retry_call(&(ap_retry_desc){.max_attempts = 2,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 1000, .cap_ns = 1000},
                                   NULL, NULL, always_err, &calls, AP_DEADLINE_NONE, &r),
                     AP_EXHAUSTED, "err %s", ap_status_str(err));
        EXPECT(r.stop == AP_RETRY_STOP_EXHAUSTED && r.last_error == err && r.attempts == 2 &&
                  calls == 2 && r.app_error == 7);
    }
}

/* Issue #11: the application's error travels beside the status: the
 * result is the last completed attempt's app_error (0 on entry to each
 * result()); an attempt cut by the deadline or a cancel leaves it. */
Test(retry, app_error_of_the_last_attempt_is_reported)
{
    /* exhausted: attempts report 500, 501, 502 */
    script s = {.fail_first = 1000, .fail_st = AP_REJECTED, .dur = 3, .app_base = 500};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    const ap_retry_desc d = {.max_attempts = 3, .backoff = AP_RETRY_BACKOFF_FIXED,
                             .initial_ns = 10, .cap_ns = 10};
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_retry_fut_result(&f).app_error, 0);
    ap_cx cx = {{noop_wake, NULL}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_retry_fut_result(&f).app_error, 0, "no attempt completed yet");
    cx = (ap_cx){{noop_wake, NULL}, 3, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_NOT_READY && r.app_error == 500, "in the backoff: %s, %d",
              ap_status_str(r.status), r.app_error);
    uint64_t now = cx.deadline;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_EXHAUSTED && r.last_error == AP_REJECTED && r.app_error == 502);

    /* success: its own app_error (the op may set one with AP_OK) */
    s = (script){.fail_first = 2, .fail_st = AP_REJECTED, .dur = 3, .app_base = 200};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, AP_DEADLINE_NONE), AP_OK);
    now = 0;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_OK && r.attempts == 3 && r.app_error == 202);

    /* permanent: the error and its app_error */
    s = (script){.fail_first = 1000, .fail_st = AP_REJECTED, .dur = 3, .app_base = 400};
    s.fail_st_at[1] = AP_CLOSED;
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, AP_DEADLINE_NONE), AP_OK);
    now = 0;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_CLOSED && r.stop == AP_RETRY_STOP_PERMANENT && r.app_error == 401);

    /* the deadline cuts attempt 1 (13..16, deadline 15): attempt 0's stays */
    s = (script){.fail_first = 1000, .fail_st = AP_REJECTED, .dur = 3, .app_base = 600};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, 15), AP_OK);
    now = 0;
    drive(&f.base, &now);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_TIMEDOUT && r.stop == AP_RETRY_STOP_DEADLINE && r.attempts == 2 &&
              r.last_error == AP_TIMEDOUT && r.app_error == 600,
              "%s attempts %u app %d", ap_status_str(r.status), r.attempts, r.app_error);

    /* cancel in flight: likewise */
    s = (script){.fail_first = 1000, .fail_st = AP_REJECTED, .dur = 3, .app_base = 700};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f, &d, NULL, NULL, &op, AP_DEADLINE_NONE), AP_OK);
    uint64_t t = 0;
    for (int i = 0; i < 3; i++) { /* attempt 0 done, backoff done, attempt 1 started */
        cx = (ap_cx){{noop_wake, NULL}, t, AP_DEADLINE_NONE};
        EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
        t = cx.deadline;
    }
    EXPECT_EQ(s.n, 2);
    ap_retry_fut_cancel(&f);
    r = ap_retry_fut_result(&f);
    EXPECT(r.status == AP_CANCELED && r.app_error == 700);
}

/* Mutation gap (issue #11, 4): a retry whose next start lands exactly on
 * the overall deadline stops with AP_RETRY_STOP_DEADLINE in the poll that saw
 * the failure, and asks the budget for nothing (scheduling it and letting
 * the START phase stop it later would charge the budget). */
Test(retry, next_start_exactly_on_the_deadline_stops_in_that_poll)
{
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &(ap_retry_budget_desc){0}), AP_OK);
    script s = {.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 5};
    ap_retry_op op = script_op(&s);
    ap_retry_fut f;
    /* attempt 0 at 0 fails at 5; the retry would start at 5 + 100 = 105 */
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 5,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 100, .cap_ns = 100},
                                   NULL, &b, &op, 105),
                 AP_OK);
    ap_cx cx = {{noop_wake, NULL}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 5u);
    cx = (ap_cx){{noop_wake, NULL}, 5, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_READY,
                 "a retry at exactly the deadline was scheduled");
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_DEADLINE);
    EXPECT_EQ(r.status, AP_TIMEDOUT);
    EXPECT_EQ(r.last_error, AP_AGAIN);
    EXPECT_EQ(r.attempts, 1);
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT_EQ(st.requests, 1);
    EXPECT_EQ(st.retries, 0, "the budget was charged for a retry that never ran");
    EXPECT_EQ(st.denied, 0);
    /* one ns more and it is scheduled (and charged) */
    s = (script){.fail_first = 1000, .fail_st = AP_AGAIN, .dur = 5};
    op = script_op(&s);
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 2,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 100, .cap_ns = 100},
                                   NULL, &b, &op, 106),
                 AP_OK);
    uint64_t now = 0;
    drive(&f.base, &now);
    EXPECT_EQ(s.n, 2);
    EXPECT_EQ(s.starts[1], 105u);
    EXPECT_EQ(retry_budget_stats_of(&b).retries, 1);
}

/* Mutation gap (issue #11, 4): EQUAL_JITTER with an odd e: every delay in
 * [ceil(e/2), e], both ends reached (floor(e/2) + uniform[0, floor(e/2)]
 * gives [2, 4] for e = 5). */
Test(retry, equal_jitter_odd_base_ceil_half_to_e)
{
    ap_rng rng;
    ap_rng_seed(&rng, 7);
    const uint64_t e = 5;
    bool seen[6] = {false};
    for (int i = 0; i < 2000; i++) {
        ap_retry_state st;
        EXPECT_EQ(ap_retry_state_init(&st, &(ap_retry_desc){
                                                  .max_attempts = 2,
                                                  .backoff = AP_RETRY_BACKOFF_EQUAL_JITTER,
                                                  .initial_ns = e, .cap_ns = e}),
                     AP_OK);
        uint64_t d = ap_retry_next_delay(&st, &rng);
        EXPECT(d >= (e + 1) / 2 && d <= e, "delay %llu outside [3, 5]",
                  (unsigned long long)d);
        seen[d] = true;
    }
    EXPECT(seen[3] && seen[4] && seen[5], "not every delay of [3, 5] was drawn");
}

/* Mutation gap (issue #11, 4): the budget's window is exactly window_ns: a
 * deposit at t = 0 counts at window - 1 and no longer at window. */
Test(retry, budget_window_boundary_exact)
{
    const uint64_t W = 10 * AP_NS_PER_SEC;
    ap_retry_budget_desc d = {.ratio_permille = 1000, .min_per_sec = AP_RETRY_BUDGET_ZERO,
                              .window_ns = W};
    ap_retry_budget b;
    EXPECT_EQ(ap_retry_budget_init(&b, &d), AP_OK);
    ap_retry_budget_deposit(&b, 0);
    EXPECT(ap_retry_budget_try_withdraw(&b, W - 1), "the deposit expired early");
    EXPECT_EQ(ap_retry_budget_init(&b, &d), AP_OK);
    ap_retry_budget_deposit(&b, 0);
    EXPECT(!ap_retry_budget_try_withdraw(&b, W),
              "a deposit at 0 still counts at t = window");
    ap_retry_budget_stats st;
    ap_retry_budget_stats_get(&b, &st);
    EXPECT(st.requests == 1 && st.retries == 0 && st.denied == 1);
}

/* Regression (issue #11, 1): breaker inside retry, one permit per attempt
 * (resilience4j's order). The breaker is HALF_OPEN with one probe slot;
 * the attempt that holds it hangs and the retry's deadline cuts it. The
 * cut attempt used to be cancelled without a report, so the probe slot
 * stayed taken for probe_lease_ns and then counted as a failure that
 * re-opened the breaker. Now op.canceled reports it CANCELED: the slot is
 * free at once and the breaker stays half-open. */
typedef struct cb_att {
    ap_future base;
    ap_breaker *br;
    ap_breaker_permit permit;
    ap_status st; /* AP_REJECTED when the breaker refused */
    int results, cancels, hook_cancels;
} cb_att;

static ap_poll cb_att_poll(ap_future *f, ap_cx *cx)
{
    cb_att *a = (cb_att *)(void *)f;
    if (a->st == AP_REJECTED)
        return AP_READY;
    (void)cx; /* the dependency hangs */
    return AP_PENDING;
}

static void cb_att_cancel(ap_future *f) { ((cb_att *)(void *)f)->cancels++; }

static ap_future *cb_att_start(void *ctx, void *storage, uint32_t k, uint64_t now)
{
    (void)ctx, (void)k;
    cb_att *a = storage;
    a->base.poll = cb_att_poll;
    a->base.cancel = cb_att_cancel;
    uint64_t ra;
    a->st = ap_breaker_allow(a->br, now, &a->permit, &ra) == AP_OK ? AP_AGAIN : AP_REJECTED;
    return &a->base;
}

static ap_status cb_att_result(void *ctx, ap_future *f, int *app, uint64_t *hint)
{
    (void)ctx, (void)hint, (void)app;
    cb_att *a = (cb_att *)(void *)f;
    a->results++;
    return a->st; /* only a rejected attempt completes here */
}

static void cb_att_canceled(void *ctx, ap_future *f, uint64_t now)
{
    (void)ctx;
    cb_att *a = (cb_att *)(void *)f;
    a->hook_cancels++;
    EXPECT_EQ(a->cancels, 1, "the hook runs after the attempt's own cancel");
    EXPECT_EQ(ap_breaker_record(a->br, &a->permit, AP_BREAKER_OUTCOME_CANCELED, 0, now), AP_OK);
}

Test(retry, breaker_per_attempt_deadline_cut_frees_the_probe_slot)
{
    static _Alignas(8) unsigned char buf[AP_BREAKER_BYTES(2, 1)];
    ap_breaker br;
    const uint64_t SEC = AP_NS_PER_SEC;
    EXPECT_EQ(ap_breaker_init(&br, buf, sizeof buf,
                            &(ap_breaker_desc){.window_size = 2, .min_calls = 2,
                                               .open_ns = SEC, .half_open_probes = 1,
                                               .probe_lease_ns = 60 * SEC}),
                 AP_OK);
    for (int i = 0; i < 2; i++) { /* trip it */
        ap_breaker_permit p;
        uint64_t ra;
        EXPECT_EQ(ap_breaker_allow(&br, 0, &p, &ra), AP_OK);
        EXPECT_EQ(ap_breaker_record(&br, &p, AP_BREAKER_OUTCOME_FAILURE, 0, 0), AP_OK);
    }
    EXPECT_EQ(ap_breaker_state_at(&br, SEC), AP_BREAKER_STATE_HALF_OPEN);
    uint64_t failures0 = breaker_stats_of(&br).failures;

    cb_att att = {.br = &br};
    ap_retry_op op = {.start = cb_att_start, .result = cb_att_result,
                      .canceled = cb_att_canceled, .ctx = NULL, .storage = &att};
    ap_retry_fut f;
    const uint64_t deadline = SEC + 100 * AP_NS_PER_MS;
    EXPECT_EQ(ap_retry_fut_init(&f,
                                   &(ap_retry_desc){.max_attempts = 3,
                                                    .backoff = AP_RETRY_BACKOFF_FIXED,
                                                    .initial_ns = 10, .cap_ns = 10},
                                   NULL, NULL, &op, deadline),
                 AP_OK);
    uint64_t now = SEC;
    drive(&f.base, &now);
    EXPECT_EQ(now, deadline);
    ap_retry_result r = ap_retry_fut_result(&f);
    EXPECT_EQ(r.stop, AP_RETRY_STOP_DEADLINE);
    EXPECT_EQ(r.attempts, 1);
    EXPECT_EQ(att.cancels, 1);
    EXPECT_EQ(att.results + att.hook_cancels, 1, "the attempt got %d reports",
                 att.results + att.hook_cancels);

    /* the probe slot is free at once, and the breaker did not re-open */
    ap_breaker_permit p;
    uint64_t ra = 0;
    EXPECT_EQ(ap_breaker_allow(&br, deadline, &p, &ra), AP_OK,
                 "the cut attempt's probe slot is still taken (retry_at %llu)",
                 (unsigned long long)ra);
    EXPECT_EQ(ap_breaker_state_at(&br, deadline), AP_BREAKER_STATE_HALF_OPEN);
    ap_breaker_stats st;
    ap_breaker_stats_get(&br, &st);
    EXPECT_EQ(st.failures, failures0, "the cut attempt counted as a failure");
    EXPECT_EQ(st.lease_expired, 0);
    EXPECT_EQ(st.canceled, 1);
    EXPECT_EQ(ap_breaker_record(&br, &p, AP_BREAKER_OUTCOME_SUCCESS, 0, deadline), AP_OK);
    EXPECT_EQ(ap_breaker_state_at(&br, deadline), AP_BREAKER_STATE_CLOSED);
    /* the probe the retry held would have leased its slot until SEC + 60 s:
     * well past; nothing re-opens it */
    EXPECT_EQ(ap_breaker_state_at(&br, SEC + 61 * SEC), AP_BREAKER_STATE_CLOSED);
}

/* ap_retry_fut_cancel of an attempt in flight reports it through
 * op.canceled too, once, with the last poll's now; after completion,
 * cancel reports nothing. */
Test(retry, cancel_reports_the_attempt_in_flight_once)
{
    static _Alignas(8) unsigned char buf[AP_BREAKER_BYTES(2, 1)];
    ap_breaker br;
    EXPECT_EQ(ap_breaker_init(&br, buf, sizeof buf,
                            &(ap_breaker_desc){.window_size = 2, .half_open_probes = 1}),
                 AP_OK);
    cb_att att = {.br = &br};
    ap_retry_op op = {.start = cb_att_start, .result = cb_att_result,
                      .canceled = cb_att_canceled, .storage = &att};
    ap_retry_fut f;
    EXPECT_EQ(ap_retry_fut_init(&f, &(ap_retry_desc){.max_attempts = 3,
                                                        .backoff = AP_RETRY_BACKOFF_FIXED},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    ap_cx cx = {{noop_wake, NULL}, 77, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_retry_fut_poll(&f, &cx), AP_PENDING);
    ap_retry_fut_cancel(&f);
    ap_retry_fut_cancel(&f);
    EXPECT_EQ(att.cancels, 1);
    EXPECT_EQ(att.hook_cancels, 1);
    EXPECT_EQ(ap_retry_fut_status(&f), AP_CANCELED);
    ap_breaker_stats st;
    ap_breaker_stats_get(&br, &st);
    EXPECT(st.allowed == 1 && st.canceled == 1 && st.calls == 1);
    /* cancelled before any attempt (or in backoff): nothing to report */
    cb_att att2 = {.br = &br};
    op.storage = &att2;
    EXPECT_EQ(ap_retry_fut_init(&f, &(ap_retry_desc){.max_attempts = 3,
                                                        .backoff = AP_RETRY_BACKOFF_FIXED},
                                   NULL, NULL, &op, AP_DEADLINE_NONE),
                 AP_OK);
    ap_retry_fut_cancel(&f);
    EXPECT_EQ(att2.hook_cancels + att2.cancels + att2.results, 0);
}
