/*
 * tests/test_circuit_breaker.c -- the circuit breaker on a fake clock
 *
 * Time is a plain uint64_t. A table drives every (state x event) transition;
 * a random walk of 1e5 events per configuration is compared step by step
 * with the reference model below (single-threaded, written for clarity:
 * the COUNT window is a plain array, the TIME window a list of entries).
 */
/* a hook for hand-interleaving: at the yield_at-th yield, run yield_fn once */
#include <stddef.h>
struct ap_breaker;
static struct ap_breaker *yield_b;
static void (*yield_fn)(void);
static int yield_at, yield_n;
static void test_yield(void)
{
    if (yield_fn && ++yield_n == yield_at) {
        void (*fn)(void) = yield_fn;
        yield_fn = NULL;
        fn();
    }
}
#define AP_TEST_YIELD() test_yield()
#include "asyncpat/circuit_breaker.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static ap_breaker_stats breaker_stats_of(ap_breaker *x)
{
    ap_breaker_stats s;
    ap_breaker_stats_get(x, &s);
    return s;
}

#define SEC AP_NS_PER_SEC
#define MS AP_NS_PER_MS
#define CL AP_BREAKER_STATE_CLOSED
#define OP AP_BREAKER_STATE_OPEN
#define HO AP_BREAKER_STATE_HALF_OPEN
#define FO AP_BREAKER_STATE_FORCED_OPEN
#define DI AP_BREAKER_STATE_DISABLED
#define OK_ AP_BREAKER_OUTCOME_SUCCESS
#define FAIL_ AP_BREAKER_OUTCOME_FAILURE
#define IGN_ AP_BREAKER_OUTCOME_IGNORED
#define CAN_ AP_BREAKER_OUTCOME_CANCELED

/* ---- callback log ---- */
typedef struct ev_log {
    unsigned n;
    struct { ap_breaker_state from, to; uint64_t gen; } e[64];
} ev_log;

static void log_cb(void *ctx, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    ev_log *l = (ev_log *)ctx;
    if (l->n < 64) {
        l->e[l->n].from = from;
        l->e[l->n].to = to;
        l->e[l->n].gen = gen;
    }
    l->n++;
}

typedef struct fixture {
    ap_breaker b;
    _Alignas(8) unsigned char buf[AP_BREAKER_BYTES(AP_BREAKER_MAX_WINDOW, 64)];
    ev_log log;
} fixture;

static fixture *fx_new(ap_breaker_desc d)
{
    fixture *f = calloc(1, sizeof *f);
    EXPECT(f);
    d.on_change = log_cb;
    d.ctx = &f->log;
    EXPECT_EQ(ap_breaker_init(&f->b, f->buf, sizeof f->buf, &d), AP_OK);
    return f;
}

static ap_breaker_state raw_state(ap_breaker *b)
{
    return (ap_breaker_state)(atomic_load(&b->state) & 7u);
}

static ap_breaker_permit must_allow(ap_breaker *b, uint64_t now)
{
    ap_breaker_permit p;
    uint64_t ra = 0;
    ap_status st = ap_breaker_allow(b, now, &p, &ra);
    EXPECT_EQ(st, AP_OK, "allow at %llu: %s", (unsigned long long)now, ap_status_str(st));
    return p;
}

static void call(ap_breaker *b, uint64_t now, ap_breaker_outcome o, uint64_t dur)
{
    ap_breaker_permit p = must_allow(b, now);
    EXPECT_EQ(ap_breaker_record(b, &p, o, dur, now), AP_OK);
}

/* small config: window 4, min 4, 50 %, open 1 s, 2 probes, lease 100 ms */
static ap_breaker_desc small(void)
{
    return (ap_breaker_desc){.window_size = 4, .min_calls = 4, .open_ns = SEC,
                             .half_open_probes = 2, .probe_lease_ns = 100 * MS,
                             .slow_call_ns = 10 * MS};
}

/* bring f to state s at time ~0; returns the time reached */
static uint64_t goto_state(fixture *f, ap_breaker_state s)
{
    switch (s) {
    case CL: return 0;
    case OP:
        for (int i = 0; i < 4; i++)
            call(&f->b, 0, FAIL_, 0);
        EXPECT_EQ(raw_state(&f->b), OP);
        return 0;
    case HO:
        goto_state(f, OP);
        EXPECT_EQ(ap_breaker_state_at(&f->b, SEC), HO);
        return SEC;
    case FO: ap_breaker_force_open(&f->b); return 0;
    case DI: ap_breaker_disable(&f->b); return 0;
    }
    return 0;
}

/* ---- table: state x event -> next state ---- */
enum { E_ALLOW_EARLY, E_ALLOW_LATE, E_FAILS, E_SUCCESSES, E_SLOWS, E_LEASE, E_FORCE, E_DISABLE,
       E_RESET, E_IGNORED, E_NEVENTS };
static const char *const ev_name[] = {"allow-early", "allow-late", "failures", "successes",
                                      "slow", "lease-expiry", "force", "disable", "reset",
                                      "ignored"};

static void apply_event(fixture *f, int e, uint64_t t)
{
    ap_breaker *b = &f->b;
    ap_breaker_permit p;
    uint64_t ra;
    switch (e) {
    case E_ALLOW_EARLY: if (ap_breaker_allow(b, t + 1, &p, &ra)) {} break;
    case E_ALLOW_LATE: if (ap_breaker_allow(b, t + 10 * SEC, &p, &ra)) {} break;
    case E_FAILS:
    case E_SUCCESSES:
    case E_SLOWS:
    case E_IGNORED:
        for (int i = 0; i < 4; i++) {
            if (ap_breaker_allow(b, t, &p, &ra) != AP_OK)
                break;
            ap_breaker_outcome o = e == E_FAILS ? FAIL_ : e == E_IGNORED ? IGN_ : OK_;
            EXPECT_EQ(ap_breaker_record(b, &p, o, e == E_SLOWS ? 10 * MS : 0, t), AP_OK);
        }
        break;
    case E_LEASE:
        if (ap_breaker_allow(b, t, &p, &ra) == AP_OK)
            EXPECT_EQ(ap_breaker_record(b, &p, OK_, 0, t + 100 * MS), AP_OK);
        break;
    case E_FORCE: ap_breaker_force_open(b); break;
    case E_DISABLE: ap_breaker_disable(b); break;
    case E_RESET: ap_breaker_reset(b); break;
    }
}

static const ap_breaker_state next_tab[5][E_NEVENTS] = {
    /*          early late fails succ slow lease force disable reset ignored */
    [CL] = {CL, CL, OP, CL, OP, CL, FO, DI, CL, CL},
    [OP] = {OP, HO, OP, OP, OP, OP, FO, DI, CL, OP},
    [HO] = {HO, HO, OP, CL, OP, OP, FO, DI, CL, HO},
    [FO] = {FO, FO, FO, FO, FO, FO, FO, DI, CL, FO},
    [DI] = {DI, DI, DI, DI, DI, DI, FO, DI, CL, DI},
};

Test(circuit_breaker, table_every_transition)
{
    static const char *const sn[] = {"CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"};
    for (int s = 0; s < 5; s++)
        for (int e = 0; e < E_NEVENTS; e++) {
            fixture *f = fx_new(small());
            uint64_t t = goto_state(f, (ap_breaker_state)s);
            uint64_t g0 = ap_breaker_generation(&f->b);
            unsigned n0 = f->log.n;
            apply_event(f, e, t);
            ap_breaker_state got = raw_state(&f->b);
            EXPECT_EQ(got, next_tab[s][e], "%s x %s -> %s, want %s", sn[s], ev_name[e],
                         sn[got], sn[next_tab[s][e]]);
            /* each transition: one generation and one callback with (from, to) */
            uint64_t dg = ap_breaker_generation(&f->b) - g0;
            EXPECT_EQ(f->log.n - n0, dg, "%s x %s", sn[s], ev_name[e]);
            EXPECT_EQ(breaker_stats_of(&f->b).transitions, ap_breaker_generation(&f->b) - 1);
            if (dg) {
                EXPECT_EQ(f->log.e[n0].from, (ap_breaker_state)s);
                EXPECT_EQ(f->log.e[f->log.n - 1].to, got);
                EXPECT_EQ(f->log.e[f->log.n - 1].gen, ap_breaker_generation(&f->b));
                for (unsigned i = n0 + 1; i < f->log.n; i++)
                    EXPECT_EQ(f->log.e[i].from, f->log.e[i - 1].to);
            }
            free(f);
        }
}

/* ---- configuration ---- */

Test(circuit_breaker, desc_resolved_defaults)
{
    ap_breaker_desc d = ap_breaker_desc_resolved(&(ap_breaker_desc){0});
    EXPECT_EQ(d.window, AP_BREAKER_WINDOW_COUNT);
    EXPECT_EQ(d.window_size, 100);
    EXPECT_EQ(d.min_calls, 100);
    EXPECT_EQ(d.failure_rate_pct, 50);
    EXPECT_EQ(d.slow_rate_pct, 100);
    EXPECT_EQ(d.slow_call_ns, 60 * SEC);
    EXPECT_EQ(d.consecutive_failures, 0);
    EXPECT_EQ(d.open_ns, 60 * SEC);
    EXPECT_EQ(d.open_multiplier_pct, 100);
    EXPECT_EQ(d.open_max_ns, 960 * SEC);
    EXPECT_EQ(d.half_open_probes, 10);
    EXPECT_EQ(d.probe_lease_ns, 60 * SEC);
    EXPECT_EQ(d.window_ns, 10 * SEC);
    EXPECT_EQ(d.buckets, 10);
    d = ap_breaker_desc_resolved(&(ap_breaker_desc){.window_size = 20});
    EXPECT_EQ(d.min_calls, 20);
    d = ap_breaker_desc_resolved(&(ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME});
    EXPECT_EQ(d.min_calls, 100);
    EXPECT_EQ(ap_breaker_bytes(&(ap_breaker_desc){0}), 100 * 8 + 10 * 8);
}

Test(circuit_breaker, inval_changes_nothing)
{
    static const ap_breaker_desc bad[] = {
        {.failure_rate_pct = 101},
        {.slow_rate_pct = 200},
        {.window_size = AP_BREAKER_MAX_WINDOW + 1},
        {.window_size = 10, .min_calls = 11},
        {.half_open_probes = AP_BREAKER_MAX_PROBES + 1},
        {.open_multiplier_pct = 99},
        {.open_multiplier_pct = 10001},
        {.open_ns = 10, .open_max_ns = 9},
        {.window = AP_BREAKER_WINDOW_TIME, .window_ns = 10, .buckets = 11},
        {.window = AP_BREAKER_WINDOW_TIME, .window_ns = 10, .buckets = 3},
        {.window = AP_BREAKER_WINDOW_TIME, .window_ns = 1 << 20, .buckets = 8192},
        {.window = (ap_breaker_window)7},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ap_breaker b, before;
        memset(&b, 0xa5, sizeof b);
        before = b;
        unsigned char buf[4096], bufb[4096];
        memset(buf, 0x5a, sizeof buf);
        memcpy(bufb, buf, sizeof buf);
        EXPECT_EQ(ap_breaker_init(&b, buf, sizeof buf, &bad[i]), AP_INVAL, "case %zu", i);
        EXPECT_EQ(memcmp(&b, &before, sizeof b), 0, "case %zu touched *b", i);
        EXPECT_EQ(memcmp(buf, bufb, sizeof buf), 0, "case %zu touched buf", i);
        EXPECT_EQ(ap_breaker_bytes(&bad[i]), 0, "case %zu", i);
#ifndef AP_NO_MALLOC
        ap_breaker *pb = (ap_breaker *)(void *)&before;
        EXPECT_EQ(ap_breaker_create(&pb, &bad[i], NULL), AP_INVAL);
        EXPECT_EQ(pb, (ap_breaker *)(void *)&before);
#endif
    }
    /* too small or misaligned buffer, no desc: see
     * bad_buffers_and_arguments_are_inval_and_change_nothing */
    ap_breaker b;
    _Alignas(8) unsigned char buf[1024];
    EXPECT_EQ(ap_breaker_init(&b, buf, 100 * 8 + 10 * 8, &(ap_breaker_desc){0}), AP_OK);
    /* a bad outcome changes nothing */
    ap_breaker_permit p = must_allow(&b, 0);
    ap_breaker_stats s0;
    ap_breaker_stats_get(&b, &s0);
    EXPECT_EQ(ap_breaker_record(&b, &p, (ap_breaker_outcome)4, 0, 0), AP_INVAL);
    EXPECT_NE(p.gen, 0u, "an AP_INVAL record consumed the permit");
    ap_breaker_stats s1;
    ap_breaker_stats_get(&b, &s1);
    EXPECT_EQ(memcmp(&s0, &s1, sizeof s0), 0);
    ap_breaker_fini(&b);
}

Test(circuit_breaker, create_destroy)
{
    ap_breaker *b = NULL;
    EXPECT_EQ(ap_breaker_create(&b, &(ap_breaker_desc){.window_size = 5}, NULL), AP_OK);
    for (int i = 0; i < 5; i++)
        call(b, 0, FAIL_, 0);
    EXPECT_EQ(ap_breaker_state_at(b, 0), OP);
    ap_breaker_destroy(b);
}

/* ---- specific behaviours ---- */

Test(circuit_breaker, min_calls_and_threshold_exact)
{
    /* 10 calls window, min 5, 40 %: trips on the record that reaches it */
    fixture *f = fx_new((ap_breaker_desc){.window_size = 10, .min_calls = 5,
                                          .failure_rate_pct = 40});
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, OK_, 0);
    call(&f->b, 0, OK_, 0); /* 2/4 = 50 % but below min_calls */
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, IGN_, 0); /* ignored: not a call of the window */
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, OK_, 0); /* 2/5 = 40 % >= 40 %: trip */
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
    /* the window slides: old failures leave it */
    f = fx_new((ap_breaker_desc){.window_size = 4, .min_calls = 4, .failure_rate_pct = 75});
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    for (int i = 0; i < 20; i++)
        call(&f->b, 0, OK_, 0);
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), CL); /* 2/4 */
    call(&f->b, 0, FAIL_, 0);           /* 3/4 */
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
}

Test(circuit_breaker, slow_call_trip)
{
    fixture *f = fx_new((ap_breaker_desc){.window_size = 4, .slow_rate_pct = 50,
                                          .slow_call_ns = 100 * MS});
    call(&f->b, 0, OK_, 99 * MS);  /* not slow */
    call(&f->b, 0, OK_, 100 * MS); /* slow (>=) */
    call(&f->b, 0, OK_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, OK_, 5 * SEC); /* 2/4 slow */
    EXPECT_EQ(raw_state(&f->b), OP);
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.slow, 2);
    EXPECT_EQ(s.successes, 4);
    EXPECT_EQ(s.failures, 0);
    free(f);
}

/* A record of a fast success into a full window of fast successes writes
 * nothing (the window stays as it is); everything else still goes through
 * the ring, so an old failure or slow call is evicted exactly window_size
 * records later and a new one counts. */
Test(circuit_breaker, full_success_window_shortcut)
{
    fixture *f = fx_new((ap_breaker_desc){.window_size = 10, .slow_call_ns = 10 * MS,
                                          .slow_rate_pct = 20, .consecutive_failures = 3});
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, OK_, 10 * MS); /* slow */
    for (int i = 0; i < 8; i++)
        call(&f->b, 0, OK_, 0);
    /* window F S* S S S S S S S S: 1 failure, 1 slow, full */
    uint64_t ep = AP__BREAKER_EPOCH(UINT64_C(1));
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32 | UINT64_C(1) << 16 | 1u);
    uint64_t cur = atomic_load(&f->b.cursor);
    call(&f->b, 0, OK_, 0); /* evicts the failure */
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32 | 1u);
    call(&f->b, 0, OK_, 0); /* evicts the slow call */
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32);
    EXPECT_EQ(atomic_load(&f->b.cursor), cur + 2);
    /* now the shortcut: nothing moves */
    for (int i = 0; i < 25; i++)
        call(&f->b, 0, OK_, 0);
    EXPECT_EQ(atomic_load(&f->b.cursor), cur + 2);
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32);
    /* a slow call still counts: 1/10 slow < 20 % */
    call(&f->b, 0, OK_, 20 * MS);
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32 | 1u);
    EXPECT_EQ(atomic_load(&f->b.cursor), cur + 3);
    /* the run of failures is still reset by a shortcut success */
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    for (int i = 0; i < 10; i++) /* evicts the slow call and both failures */
        call(&f->b, 0, OK_, 0);
    EXPECT_EQ(atomic_load(&f->b.agg), ep | UINT64_C(10) << 32);
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, OK_, 0); /* through the ring (a failure is in the window) */
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), CL); /* 3/10 failures, run 1 */
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.allowed, 54);
    EXPECT_EQ(s.successes, 48);
    EXPECT_EQ(s.failures, 6);
    EXPECT_EQ(s.slow, 2);
    EXPECT_EQ(s.calls, 54);
    /* 4 failures out of the last 10 do not trip (50 %); the 5th does */
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, OK_, 0);
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
}

Test(circuit_breaker, consecutive_failures_trip)
{
    fixture *f = fx_new((ap_breaker_desc){.window_size = 100, .consecutive_failures = 3});
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, OK_, 0); /* breaks the run */
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 0, IGN_, 0); /* does not break it */
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
    /* the same on the TIME window */
    f = fx_new((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .consecutive_failures = 2});
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 5, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
}

Test(circuit_breaker, time_window_bucket_expiry_exact)
{
    /* 4 buckets of 250 ms over 1 s; min 2; 60 % */
    fixture *f = fx_new((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = SEC,
                                          .buckets = 4, .min_calls = 2,
                                          .failure_rate_pct = 60});
    call(&f->b, 100 * MS, FAIL_, 0); /* bucket 0: counts until 1000 ms exclusive */
    for (int i = 0; i < 3; i++)
        call(&f->b, 300 * MS, OK_, 0); /* bucket 1 */
    /* at 999 ms: 1 failure of 4 + this success -> 1/5 */
    call(&f->b, 999 * MS, OK_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    /* at exactly 1000 ms bucket 0 has expired: window = 3 + 1 + this one */
    call(&f->b, 1000 * MS, FAIL_, 0); /* 1/5 -> closed */
    EXPECT_EQ(raw_state(&f->b), CL);
    /* at 1250 ms bucket 1 (3 successes) expires: bucket 3 (1 ok) + bucket 4 (1 fail) + fail */
    call(&f->b, 1250 * MS, FAIL_, 0); /* 2/3 >= 60 % */
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);

    /* one bucket width earlier it would not have expired */
    f = fx_new((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = SEC,
                                 .buckets = 4, .min_calls = 2, .failure_rate_pct = 100});
    call(&f->b, 0, FAIL_, 0);
    call(&f->b, 999 * MS, OK_, 0); /* 1/2 */
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 1000 * MS, FAIL_, 0); /* bucket 0 gone: ok + fail = 1/2 */
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 1749 * MS, FAIL_, 0); /* buckets 3..6: ok, fail, fail: 2/3 */
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 1750 * MS, FAIL_, 0); /* bucket 3 expires exactly now: 3/3 */
    EXPECT_EQ(raw_state(&f->b), OP);
    free(f);
}

Test(circuit_breaker, half_open_probes_and_close)
{
    fixture *f = fx_new(small());
    goto_state(f, OP);
    ap_breaker_permit p, q, r;
    uint64_t ra = 0;
    EXPECT_EQ(ap_breaker_allow(&f->b, SEC - 1, &p, &ra), AP_REJECTED);
    EXPECT_EQ(ra, SEC);
    p = must_allow(&f->b, SEC);
    q = must_allow(&f->b, SEC + 10);
    EXPECT_EQ(p.gen, q.gen);
    EXPECT_NE(p.probe, q.probe);
    EXPECT_EQ(ap_breaker_allow(&f->b, SEC + 20, &r, &ra), AP_REJECTED);
    EXPECT_EQ(ra, SEC + 100 * MS); /* p's lease */
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, SEC + 30), AP_OK);
    EXPECT_EQ(raw_state(&f->b), HO);
    /* K = 2 admitted in this period: no more admissions */
    EXPECT_EQ(ap_breaker_allow(&f->b, SEC + 35, &r, &ra), AP_REJECTED);
    EXPECT_EQ(ra, SEC + 10 + 100 * MS); /* q's lease */
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, SEC + 60), AP_OK);
    EXPECT_EQ(raw_state(&f->b), CL);
    free(f);
}

/* Regression: an IGNORED probe frees its slot but not its admission: at
 * most K probes per half-open period. A period whose K probes all report
 * without a failure but with fewer than K successes is inconclusive and
 * starts a new half-open period (HALF_OPEN -> HALF_OPEN, new generation)
 * with a fresh batch of K; the successes of the old period do not carry. */
Test(circuit_breaker, half_open_ignored_probes_bounded)
{
    fixture *f = fx_new(small()); /* K = 2 */
    goto_state(f, OP);
    ap_breaker_permit p, q, r;
    uint64_t ra = 0;
    p = must_allow(&f->b, SEC);
    uint64_t g = p.gen;
    EXPECT_EQ(ap_breaker_record(&f->b, &p, IGN_, 0, SEC + 1), AP_OK);
    q = must_allow(&f->b, SEC + 2); /* admission 2 of 2 */
    EXPECT_EQ(q.gen, g);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, IGN_, 0, SEC + 3), AP_OK);
    /* all K reported, none failed, 0 < K successes: a new half-open period */
    EXPECT_EQ(raw_state(&f->b), HO);
    EXPECT_EQ(ap_breaker_generation(&f->b), g + 1);
    EXPECT_EQ(f->log.e[f->log.n - 1].from, HO);
    EXPECT_EQ(f->log.e[f->log.n - 1].to, HO);
    /* in-period bound with one probe still in flight */
    p = must_allow(&f->b, SEC + 4);
    q = must_allow(&f->b, SEC + 5);
    EXPECT_EQ(p.gen, g + 1);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, IGN_, 0, SEC + 6), AP_OK);
    EXPECT_EQ(ap_breaker_allow(&f->b, SEC + 7, &r, &ra), AP_REJECTED,
                 "a third probe admitted in one period with K = 2");
    EXPECT_EQ(ra, SEC + 4 + 100 * MS); /* p's lease */
    /* one success of 2 + one ignored: inconclusive again, fresh period */
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, SEC + 8), AP_OK);
    EXPECT_EQ(raw_state(&f->b), HO);
    EXPECT_EQ(ap_breaker_generation(&f->b), g + 2);
    /* K successes in one period close it */
    p = must_allow(&f->b, SEC + 9);
    q = must_allow(&f->b, SEC + 9);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, SEC + 10), AP_OK);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, SEC + 10), AP_OK);
    EXPECT_EQ(raw_state(&f->b), CL);
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.allowed, s.successes + s.failures + s.ignored + s.canceled + s.stale);
    free(f);
}

/* Regression (cb_ign): K = 1, five allow + IGNORED pairs: one admission per
 * half-open period, each period ends inconclusive. */
Test(circuit_breaker, half_open_k1_ignored_one_per_period)
{
    ap_breaker_desc d = {.window_size = 2, .min_calls = 2, .open_ns = 10, .half_open_probes = 1};
    fixture *f = fx_new(d);
    for (int i = 0; i < 2; i++)
        call(&f->b, 0, FAIL_, 1);
    EXPECT_EQ(raw_state(&f->b), OP);
    uint64_t last = 0;
    for (int i = 0; i < 5; i++) {
        ap_breaker_permit p, r;
        uint64_t ra;
        p = must_allow(&f->b, 20);
        EXPECT_GT(p.gen, last, "two probes admitted in generation %llu", (unsigned long long)p.gen);
        last = p.gen;
        EXPECT_EQ(ap_breaker_allow(&f->b, 20, &r, &ra), AP_REJECTED);
        EXPECT_EQ(ap_breaker_record(&f->b, &p, IGN_, 1, 20), AP_OK);
    }
    EXPECT_EQ(raw_state(&f->b), HO);
    free(f);
}

/* Regression: a COUNT-window record of generation 1 that stalls inside
 * its lock-free steps while the breaker resets to generation 2 must not
 * disturb generation 2's window. It used to take a ring slot after the
 * reset and evict a gen-2 failure without subtracting it: a phantom
 * failure for good. Hand-interleaved on one thread: the AP_TEST_YIELD hook
 * runs the reset and gen 2's records at the n-th yield of the late record. */
static uint64_t agg_calls(ap_breaker *b) { return AP__BREAKER_F16(atomic_load(&b->agg), 32); }
static uint64_t agg_fails(ap_breaker *b) { return AP__BREAKER_F16(atomic_load(&b->agg), 16); }

static void late_record_interleave(void)
{
    ap_breaker *b = yield_b;
    ap_breaker_reset(b); /* generation 2 */
    call(b, 0, FAIL_, 0);
    call(b, 0, OK_, 0);
    call(b, 0, OK_, 0);
    call(b, 0, OK_, 0);
}

Test(circuit_breaker, count_window_late_record_changes_no_newer_window)
{
    ap_breaker_desc d = {.window_size = 4, .min_calls = 4, .failure_rate_pct = 40};
    for (int at = 1; at <= 4; at++) {
        fixture *f = fx_new(d);
        ap_breaker_permit p1 = must_allow(&f->b, 0); /* generation 1 */
        yield_b = &f->b;
        yield_at = at;
        yield_n = 0;
        yield_fn = late_record_interleave;
        EXPECT_EQ(ap_breaker_record(&f->b, &p1, OK_, 0, 0), AP_OK);
        yield_fn = NULL;
        EXPECT_GE(yield_n, at, "yield %d not reached", at);
        EXPECT_EQ(ap_breaker_generation(&f->b), 2);
        /* generation 2's window is exactly F S S S, in the ring too */
        EXPECT_EQ(agg_calls(&f->b), 4, "yield %d: window calls", at);
        EXPECT_EQ(agg_fails(&f->b), 1, "yield %d: window failures", at);
        for (unsigned i = 0; i < 4; i++)
            EXPECT_EQ((uint32_t)(atomic_load(&f->b.slots[i]) >> 3), 2u,
                         "yield %d: slot %u lost its gen-2 entry", at, i);
        /* 4 more successes push the failure out; then one failure is 25 % */
        for (int i = 0; i < 4; i++)
            call(&f->b, 0, OK_, 0);
        EXPECT_EQ(agg_calls(&f->b), 4, "yield %d", at);
        EXPECT_EQ(agg_fails(&f->b), 0, "yield %d: phantom failure", at);
        call(&f->b, 0, FAIL_, 0);
        EXPECT_EQ(raw_state(&f->b), CL, "yield %d: tripped on a phantom failure", at);
        ap_breaker_stats s;
        ap_breaker_stats_get(&f->b, &s);
        EXPECT_EQ(s.allowed, s.successes + s.failures + s.ignored + s.canceled + s.stale);
        /* stalled before its add: stale; after it: a success of gen 1 */
        EXPECT_EQ(s.stale, at == 1 ? 1u : 0u, "yield %d", at);
        free(f);
    }
}

/* The TIME window's CLOSED record is lock-free too. Same hand-interleaving
 * as above: a record of generation 1 at 300 ms (bucket 1, whose key still
 * reads epoch 0, so it resets the bucket) stalls at its n-th yield while
 * the breaker resets to generation 2 and records F S S there. Yields: 1
 * after the state check, 2 after the clamp, 3 after flagging the bucket
 * for reset, 4 after the add. */
static uint64_t bkt_calls(ap_breaker *b, unsigned i) { return AP__BREAKER_C_CALLS(atomic_load(&b->bkt[i].cnt)); }
static uint64_t bkt_fails(ap_breaker *b, unsigned i) { return AP__BREAKER_C_FAILS(atomic_load(&b->bkt[i].cnt)); }

static void late_time_record_interleave(void)
{
    ap_breaker *b = yield_b;
    ap_breaker_reset(b); /* generation 2 */
    call(b, 300 * MS, FAIL_, 0);
    call(b, 300 * MS, OK_, 0);
    call(b, 300 * MS, OK_, 0);
}

Test(circuit_breaker, time_window_late_record_changes_no_newer_window, .timeout = 60)
{
    ap_breaker_desc d = {.window = AP_BREAKER_WINDOW_TIME, .window_ns = SEC, .buckets = 4,
                         .min_calls = 4, .failure_rate_pct = 50};
    for (int at = 1; at <= 4; at++) {
        fixture *f = fx_new(d);
        ap_breaker_permit p1 = must_allow(&f->b, 300 * MS); /* generation 1 */
        yield_b = &f->b;
        yield_at = at;
        yield_n = 0;
        yield_fn = late_time_record_interleave;
        EXPECT_EQ(ap_breaker_record(&f->b, &p1, FAIL_, 0, 300 * MS), AP_OK);
        yield_fn = NULL;
        EXPECT_GE(yield_n, at, "yield %d not reached", at);
        EXPECT_EQ(ap_breaker_generation(&f->b), 2);
        /* generation 2's window is exactly F S S, all in bucket 1 */
        uint64_t key = atomic_load(&f->b.bkt[1].key);
        EXPECT_EQ(key, AP__BREAKER_EPOCH(UINT64_C(2)) | 1u, "yield %d: key %#llx", at,
                     (unsigned long long)key);
        EXPECT_EQ(bkt_calls(&f->b, 1), 3, "yield %d: window calls", at);
        EXPECT_EQ(bkt_fails(&f->b, 1), 1, "yield %d: window failures", at);
        for (unsigned i = 0; i < 4; i++)
            if (i != 1)
                EXPECT_EQ(bkt_calls(&f->b, i), 0, "yield %d: bucket %u", at, i);
        /* one success more: 1/4 < 50 %; a phantom failure would trip */
        call(&f->b, 300 * MS, OK_, 0);
        EXPECT_EQ(raw_state(&f->b), CL, "yield %d: tripped on a phantom failure", at);
        ap_breaker_stats s;
        ap_breaker_stats_get(&f->b, &s);
        EXPECT_EQ(s.allowed, s.successes + s.failures + s.ignored + s.canceled + s.stale);
        /* stalled before its add: stale; after it: a failure of gen 1 */
        EXPECT_EQ(s.stale, at <= 3 ? 1u : 0u, "yield %d", at);
        free(f);
    }
}

/* A record clamped to epoch 0 stalls (after the clamp, yield 2) while a
 * record at 1000 ms moves bucket 0 to epoch 4. The late record must not
 * add to epoch 4's counts under epoch 0's name nor vanish: it clamps again
 * and lands in the newest bucket, exactly as the locked record taken
 * after the other one would (model: k = max(now / w, newest)). */
static void newer_epoch_interleave(void) { call(yield_b, 1000 * MS, FAIL_, 0); }

Test(circuit_breaker, time_window_late_record_reclamps_to_newest)
{
    fixture *f = fx_new((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = SEC,
                                          .buckets = 4, .min_calls = 3,
                                          .failure_rate_pct = 100});
    ap_breaker_permit p1 = must_allow(&f->b, 100 * MS);
    yield_b = &f->b;
    yield_at = 2;
    yield_n = 0;
    yield_fn = newer_epoch_interleave;
    EXPECT_EQ(ap_breaker_record(&f->b, &p1, FAIL_, 0, 100 * MS), AP_OK);
    yield_fn = NULL;
    EXPECT_EQ(atomic_load(&f->b.bkt[0].key), AP__BREAKER_EPOCH(UINT64_C(1)) | 4u);
    EXPECT_EQ(bkt_calls(&f->b, 0), 2);
    EXPECT_EQ(bkt_fails(&f->b, 0), 2);
    EXPECT_EQ(atomic_load(&f->b.tnew), AP__BREAKER_EPOCH(UINT64_C(1)) | 4u);
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, FAIL_, 0); /* clamped to epoch 4 too: 3/3 */
    EXPECT_EQ(raw_state(&f->b), OP);
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.failures, 3);
    EXPECT_EQ(s.stale, 0);
    free(f);
}

/* CLOSED allow + record with the TIME window take no lock: a thread
 * completes them while this thread holds the breaker's lock. Bounded wait,
 * so a regression fails instead of hanging. */
typedef struct lockfree_arg {
    ap_breaker *b;
    _Atomic int done;
} lockfree_arg;

static void *lockfree_worker(void *p)
{
    lockfree_arg *a = (lockfree_arg *)p;
    for (int i = 0; i < 64; i++) {
        uint64_t now = (uint64_t)i * 100 * MS; /* crosses buckets: resets them */
        ap_breaker_permit pm;
        if (ap_breaker_allow(a->b, now, &pm, NULL) != AP_OK)
            return NULL;
        ap_breaker_outcome o = i % 3 == 0 ? FAIL_ : i % 7 == 0 ? IGN_ : OK_;
        if (ap_breaker_record(a->b, &pm, o, i % 5 == 0 ? SEC : 0, now) != AP_OK)
            return NULL;
    }
    atomic_store(&a->done, 1);
    return NULL;
}

Test(circuit_breaker, time_window_closed_path_takes_no_lock, .timeout = 60)
{
    fixture *f = fx_new((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = SEC,
                                          .buckets = 4, .min_calls = 1000,
                                          .slow_call_ns = SEC});
    lockfree_arg a = {.b = &f->b};
    atomic_init(&a.done, 0);
    ap__lock_acquire(&f->b.lock);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, lockfree_worker, &a), 0);
    for (int i = 0; i < 5000 && !atomic_load(&a.done); i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL); /* up to 5 s */
    int done = atomic_load(&a.done);
    ap__lock_release(&f->b.lock);
    pthread_join(th, NULL);
    EXPECT(done, "CLOSED TIME-window allow/record blocked on the breaker's lock");
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.allowed, 64);
    EXPECT_EQ(s.successes + s.failures + s.ignored + s.canceled, 64);
    EXPECT_EQ(s.stale, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    free(f);
}

/* ---- the reference model ---- */

typedef struct model {
    ap_breaker_desc d;
    ap_breaker_state st;
    uint64_t gen, open_until, cur_open;
    uint64_t admit[64];
    uint32_t inflight, succ, admitted; /* admitted: probes of this half-open period */
    uint8_t win[64]; /* COUNT: the window, oldest first: bit0 fail, bit1 slow */
    uint32_t wlen;
    struct { uint64_t k; uint8_t v; } *tw; /* TIME: entries of this CLOSED period */
    size_t twn, twcap;
    uint64_t newest, run;
    ap_breaker_stats s;
    ev_log log;
} model;

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static void m_set(model *m, ap_breaker_state to, uint64_t now)
{
    ap_breaker_state from = m->st;
    m->gen++;
    if (to == OP) {
        if (from == HO) {
            uint64_t c = m->cur_open;
            c = c > UINT64_MAX / m->d.open_multiplier_pct ? UINT64_MAX
                                                          : c * m->d.open_multiplier_pct / 100;
            m->cur_open = c < m->d.open_max_ns ? c : m->d.open_max_ns;
        } else {
            m->cur_open = m->d.open_ns;
        }
        m->open_until = now > UINT64_MAX - m->cur_open ? UINT64_MAX : now + m->cur_open;
    } else if (to == HO) {
        m->inflight = m->succ = m->admitted = 0;
        for (int i = 0; i < 64; i++)
            m->admit[i] = UINT64_MAX;
    } else if (to == CL) {
        m->wlen = 0;
        m->twn = 0;
        m->newest = 0;
        m->run = 0;
        m->cur_open = m->d.open_ns;
    }
    m->st = to;
    m->s.transitions++;
    log_cb(&m->log, from, to, m->gen);
}

static void m_advance(model *m, uint64_t now)
{
    for (;;) {
        if (m->st == OP && now >= m->open_until) {
            m_set(m, HO, now);
            continue;
        }
        if (m->st == HO)
            for (uint32_t i = 0; i < m->d.half_open_probes; i++)
                if (m->admit[i] != UINT64_MAX && now >= sat_add(m->admit[i], m->d.probe_lease_ns)) {
                    m->s.lease_expired++;
                    m_set(m, OP, now);
                    break;
                }
        return;
    }
}

static ap_status m_allow(model *m, uint64_t now, ap_breaker_permit *p, uint64_t *ra)
{
    m_advance(m, now);
    switch (m->st) {
    case CL:
    case DI:
        p->gen = m->gen;
        p->probe = 0;
        m->s.allowed++;
        return AP_OK;
    case OP: *ra = m->open_until; break;
    case FO: *ra = AP_DEADLINE_NONE; break;
    case HO:
        if (m->admitted < m->d.half_open_probes) {
            uint32_t i = 0;
            while (m->admit[i] != UINT64_MAX)
                i++;
            m->admit[i] = now;
            m->inflight++;
            m->admitted++;
            p->gen = m->gen;
            p->probe = i + 1;
            m->s.allowed++;
            return AP_OK;
        }
        *ra = UINT64_MAX;
        for (uint32_t i = 0; i < m->d.half_open_probes; i++)
            if (m->admit[i] != UINT64_MAX && sat_add(m->admit[i], m->d.probe_lease_ns) < *ra)
                *ra = sat_add(m->admit[i], m->d.probe_lease_ns);
        break;
    }
    m->s.rejected++;
    return AP_REJECTED;
}

static bool m_rates(const model *m, uint64_t calls, uint64_t fails, uint64_t slows)
{
    return calls > 0 && calls >= m->d.min_calls &&
           (fails * 100 >= m->d.failure_rate_pct * calls ||
            slows * 100 >= m->d.slow_rate_pct * calls);
}

static void m_record(model *m, ap_breaker_permit p, ap_breaker_outcome o, uint64_t dur, uint64_t now)
{
    bool slow = dur >= m->d.slow_call_ns, fail = o == FAIL_;
    if (p.gen == m->gen)
        m_advance(m, now);
    if (p.gen != m->gen) {
        m->s.stale++;
        return;
    }
    if (o == OK_) m->s.successes++;
    if (o == FAIL_) m->s.failures++;
    if (o == IGN_) m->s.ignored++;
    if (o == CAN_) m->s.canceled++;
    if (slow && (o == OK_ || o == FAIL_)) m->s.slow++;
    m->s.calls++;
    if (m->st == DI)
        return;
    if (m->st == HO) {
        m->admit[p.probe - 1] = UINT64_MAX;
        m->inflight--;
        if (fail || (slow && o == OK_))
            m_set(m, OP, now);
        else if (o == OK_ && ++m->succ >= m->d.half_open_probes)
            m_set(m, CL, now);
        else if (m->inflight == 0 && m->admitted == m->d.half_open_probes)
            m_set(m, HO, now); /* inconclusive (IGNORED/CANCELED probes): a fresh period */
        return;
    }
    /* CLOSED */
    if (o == IGN_ || o == CAN_)
        return;
    uint8_t v = (uint8_t)(fail | slow << 1);
    uint64_t calls = 0, fails = 0, slows = 0;
    if (m->d.window == AP_BREAKER_WINDOW_COUNT) {
        if (m->wlen == m->d.window_size) {
            memmove(m->win, m->win + 1, m->wlen - 1);
            m->wlen--;
        }
        m->win[m->wlen++] = v;
        for (uint32_t i = 0; i < m->wlen; i++) {
            calls++;
            fails += m->win[i] & 1;
            slows += m->win[i] >> 1;
        }
    } else {
        uint64_t w = m->d.window_ns / m->d.buckets, k = now / w;
        if (k < m->newest)
            k = m->newest;
        m->newest = k;
        if (m->twn == m->twcap) {
            m->twcap = m->twcap ? 2 * m->twcap : 64;
            m->tw = realloc(m->tw, m->twcap * sizeof *m->tw);
        }
        m->tw[m->twn].k = k;
        m->tw[m->twn++].v = v;
        size_t j = 0;
        for (size_t i = 0; i < m->twn; i++) {
            if (m->tw[i].k + m->d.buckets <= k)
                continue; /* expired for good */
            m->tw[j++] = m->tw[i];
            calls++;
            fails += m->tw[i].v & 1;
            slows += m->tw[i].v >> 1;
        }
        m->twn = j;
    }
    if (fail)
        m->run++;
    else
        m->run = 0;
    if (m_rates(m, calls, fails, slows) ||
        (m->d.consecutive_failures && m->run >= m->d.consecutive_failures))
        m_set(m, OP, now);
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void random_walk(ap_breaker_desc d, uint64_t seed, int steps)
{
    fixture *f = fx_new(d);
    model m;
    memset(&m, 0, sizeof m);
    m.d = ap_breaker_desc_resolved(&d);
    m.gen = 1;
    m.cur_open = m.d.open_ns;
    for (int i = 0; i < 64; i++)
        m.admit[i] = UINT64_MAX;
    ap_breaker_permit out[32];
    int nout = 0;
    uint64_t now = 1000, s = seed;
    for (int step = 0; step < steps; step++) {
        uint64_t r = rnd(&s) % 1000;
        if (r < 150) {
            uint64_t x = rnd(&s);
            now += (x & 7) == 0 ? x % (3 * m.d.open_ns) : x % (m.d.slow_call_ns / 4 + 1);
        } else if (r < 550) {
            ap_breaker_permit p = {0, 0}, q = {0, 0};
            uint64_t ra = 7, rb = 7;
            ap_status a = ap_breaker_allow(&f->b, now, &p, &ra);
            ap_status b = m_allow(&m, now, &q, &rb);
            EXPECT_EQ(a, b, "step %d: allow %d vs model %d", step, a, b);
            if (a == AP_OK) {
                EXPECT_EQ(p.gen, q.gen, "step %d", step);
                EXPECT_EQ(p.probe, q.probe, "step %d", step);
                if (nout < 32)
                    out[nout++] = p;
            } else {
                EXPECT_EQ(ra, rb, "step %d: retry_at", step);
            }
        } else if (r < 990) {
            if (nout == 0)
                continue;
            int i = (int)(rnd(&s) % (uint64_t)nout);
            ap_breaker_permit p = out[i];
            out[i] = out[--nout];
            uint64_t x = rnd(&s);
            ap_breaker_outcome o = (x & 15) < 6 ? FAIL_ : (x & 15) < 7 ? IGN_
                                                     : (x & 15) < 8 ? CAN_ : OK_;
            uint64_t dur = (x >> 8) % (m.d.slow_call_ns + m.d.slow_call_ns / 2);
            ap_breaker_permit q = p;
            EXPECT_EQ(ap_breaker_record(&f->b, &p, o, dur, now), AP_OK);
            m_record(&m, q, o, dur, now);
            EXPECT_EQ(p.gen, 0u, "step %d: the record did not consume the permit", step);
            if ((x >> 60) == 0) /* now and then: the same permit again changes nothing */
                EXPECT_EQ(ap_breaker_record(&f->b, &p, o, dur, now), AP_INVAL, "step %d", step);
        } else if (r < 993) {
            ap_breaker_force_open(&f->b);
            if (m.st != FO) m_set(&m, FO, 0);
        } else if (r < 996) {
            ap_breaker_disable(&f->b);
            if (m.st != DI) m_set(&m, DI, 0);
        } else {
            ap_breaker_reset(&f->b);
            m_set(&m, CL, 0);
        }
        EXPECT_EQ(raw_state(&f->b), m.st, "step %d: state %d vs model %d", step,
                     raw_state(&f->b), m.st);
        EXPECT_EQ(ap_breaker_generation(&f->b), m.gen, "step %d", step);
        ap_breaker_stats st;
        ap_breaker_stats_get(&f->b, &st);
        EXPECT_EQ(memcmp(&st, &m.s, sizeof st), 0, "step %d: stats differ", step);
        EXPECT_EQ(f->log.n, m.log.n, "step %d: callbacks", step);
    }
    for (unsigned i = 0; i < m.log.n && i < 64; i++) {
        EXPECT_EQ(f->log.e[i].from, m.log.e[i].from);
        EXPECT_EQ(f->log.e[i].to, m.log.e[i].to);
        EXPECT_EQ(f->log.e[i].gen, m.log.e[i].gen);
    }
    EXPECT_GT(m.s.transitions, 100, "the walk should visit many states");
    free(m.tw);
    free(f);
}

Test(circuit_breaker, probe_lease_expiry_reopens)
{
    fixture *f = fx_new(small());
    goto_state(f, OP);
    ap_breaker_permit p = must_allow(&f->b, SEC); /* lease until SEC + 100 ms */
    EXPECT_EQ(ap_breaker_state_at(&f->b, SEC + 100 * MS - 1), HO);
    EXPECT_EQ(ap_breaker_state_at(&f->b, SEC + 100 * MS), OP);
    EXPECT_EQ(breaker_stats_of(&f->b).lease_expired, 1);
    /* the late report is stale and changes nothing */
    uint64_t g = ap_breaker_generation(&f->b);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, SEC + 200 * MS), AP_OK);
    EXPECT_EQ(ap_breaker_generation(&f->b), g);
    EXPECT_EQ(breaker_stats_of(&f->b).stale, 1);
    /* re-opened for open_ns (multiplier 100: no growth) from the expiry */
    uint64_t ra;
    EXPECT_EQ(ap_breaker_allow(&f->b, SEC + 100 * MS + SEC - 1, &p, &ra), AP_REJECTED);
    EXPECT_EQ(ra, 2 * SEC + 100 * MS);
    free(f);
}

Test(circuit_breaker, growing_open_duration)
{
    ap_breaker_desc d = small();
    d.open_multiplier_pct = 200;
    d.open_max_ns = 5 * SEC;
    fixture *f = fx_new(d);
    goto_state(f, OP);
    uint64_t t = 0, want[] = {SEC, 2 * SEC, 4 * SEC, 5 * SEC, 5 * SEC};
    for (int i = 0; i < 5; i++) {
        ap_breaker_permit p;
        uint64_t ra;
        EXPECT_EQ(ap_breaker_allow(&f->b, t, &p, &ra), AP_REJECTED);
        EXPECT_EQ(ra - t, want[i], "trip %d: open for %llu", i,
                     (unsigned long long)(ra - t));
        t = ra;
        p = must_allow(&f->b, t); /* half-open probe fails: re-open, longer */
        EXPECT_EQ(ap_breaker_record(&f->b, &p, FAIL_, 0, t), AP_OK);
    }
    /* closing starts over */
    ap_breaker_permit p;
    uint64_t ra;
    EXPECT_EQ(ap_breaker_allow(&f->b, t, &p, &ra), AP_REJECTED);
    t = ra;
    for (int i = 0; i < 2; i++) {
        p = must_allow(&f->b, t);
        EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, t), AP_OK);
    }
    EXPECT_EQ(raw_state(&f->b), CL);
    for (int i = 0; i < 4; i++)
        call(&f->b, t, FAIL_, 0);
    EXPECT_EQ(ap_breaker_allow(&f->b, t, &p, &ra), AP_REJECTED);
    EXPECT_EQ(ra - t, SEC);
    free(f);
}

Test(circuit_breaker, late_outcomes_change_nothing)
{
    fixture *f = fx_new(small());
    ap_breaker_permit old[4];
    for (int i = 0; i < 4; i++)
        old[i] = must_allow(&f->b, 0);
    ap_breaker_reset(&f->b); /* new generation */
    ap_breaker save;
    memcpy(&save, &f->b, sizeof save);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_breaker_record(&f->b, &old[i], FAIL_, SEC, 0), AP_OK);
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.stale, 4);
    EXPECT_EQ(s.failures, 0);
    /* nothing but the stale counters moved */
    EXPECT_EQ(atomic_load(&f->b.state), atomic_load(&save.state));
    EXPECT_EQ(atomic_load(&f->b.agg), atomic_load(&save.agg));
    EXPECT_EQ(atomic_load(&f->b.consec), atomic_load(&save.consec));
    EXPECT_EQ(atomic_load(&f->b.cursor), atomic_load(&save.cursor));
    for (int i = 0; i < 4; i++)
        call(&f->b, 0, OK_, 0);
    EXPECT_EQ(raw_state(&f->b), CL);
    free(f);
}

Test(circuit_breaker, callback_once_per_transition)
{
    fixture *f = fx_new(small());
    goto_state(f, HO);       /* CL->OP, OP->HO */
    ap_breaker_force_open(&f->b); /* HO->FO */
    ap_breaker_force_open(&f->b); /* no-op */
    ap_breaker_disable(&f->b);    /* FO->DI */
    ap_breaker_reset(&f->b);      /* DI->CL */
    static const ap_breaker_state want[][2] = {{CL, OP}, {OP, HO}, {HO, FO}, {FO, DI}, {DI, CL}};
    EXPECT_EQ(f->log.n, 5);
    for (unsigned i = 0; i < 5; i++) {
        EXPECT_EQ(f->log.e[i].from, want[i][0], "event %u", i);
        EXPECT_EQ(f->log.e[i].to, want[i][1], "event %u", i);
        EXPECT_EQ(f->log.e[i].gen, i + 2);
    }
    free(f);
}

Test(circuit_breaker, random_walk_count_window, .timeout = 60)
{
    random_walk((ap_breaker_desc){.window_size = 8, .min_calls = 5, .failure_rate_pct = 60,
                                  .slow_rate_pct = 70, .slow_call_ns = 10 * MS,
                                  .open_ns = 50 * MS, .open_multiplier_pct = 150,
                                  .open_max_ns = 300 * MS, .half_open_probes = 3,
                                  .probe_lease_ns = 20 * MS},
                0x1234567, 100000);
    random_walk((ap_breaker_desc){.window_size = 20, .min_calls = 3, .consecutive_failures = 4,
                                  .slow_call_ns = 5 * MS, .open_ns = 10 * MS,
                                  .half_open_probes = 1, .probe_lease_ns = 3 * MS},
                0xfeedbeef, 100000);
}

Test(circuit_breaker, random_walk_time_window, .timeout = 60)
{
    random_walk((ap_breaker_desc){.window = AP_BREAKER_WINDOW_TIME, .window_ns = 40 * MS,
                                  .buckets = 4, .min_calls = 6, .failure_rate_pct = 55,
                                  .slow_rate_pct = 80, .slow_call_ns = 10 * MS,
                                  .open_ns = 30 * MS, .open_multiplier_pct = 200,
                                  .open_max_ns = 200 * MS, .half_open_probes = 4,
                                  .probe_lease_ns = 15 * MS, .consecutive_failures = 5},
                0xabcdef12345, 100000);
}

/* Found by fuzz_circuit_breaker: a probe admitted at now == UINT64_MAX was
 * stamped with the free-slot marker, so its lease never expired and its own
 * record tripped an assertion. */
/* issue #11: the buffer comes with its size and follows the object; NULL,
 * short or misaligned (or no desc) is AP_INVAL and neither the breaker nor
 * the buffer changes; exactly ap_breaker_bytes works and the excess is untouched */
Test(circuit_breaker, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    static uint64_t words[AP_BREAKER_BYTES(100, 10) / 8 + 2];
    unsigned char *bf = (unsigned char *)words;
    const ap_breaker_desc cnt = {0}; /* the defaults: COUNT, window 100, 10 probes */
    const ap_breaker_desc tim = {.window = AP_BREAKER_WINDOW_TIME, .window_ns = 1000,
                                 .buckets = 10, .half_open_probes = 3};
    const size_t need = ap_breaker_bytes(&cnt), tneed = ap_breaker_bytes(&tim);
    _Static_assert(AP_BREAKER_BYTES(3, 2) == 3 * 32 + 2 * 8 && AP_BREAKER_ALIGN == 8,
                   "constant expressions");
    static char as_array_size[AP_BREAKER_ALIGN];
    EXPECT_EQ(sizeof as_array_size, 8);
    EXPECT(need != 0 && need <= AP_BREAKER_BYTES(100, 10) && tneed != 0 &&
              tneed <= AP_BREAKER_BYTES(10, 3));
    struct { void *buf; size_t bytes; const ap_breaker_desc *d; const char *what; } cases[] = {
        {NULL, sizeof words, &cnt, "NULL buffer"},
        {bf, need - 1, &cnt, "one byte short"},
        {bf, need - 8, &cnt, "one slot short"},
        {bf, 0, &cnt, "zero bytes"},
        {bf + 1, sizeof words - 1, &cnt, "misaligned by 1"},
        {bf + 4, sizeof words - 4, &cnt, "misaligned by 4"},
        {bf, tneed - 1, &tim, "TIME, one byte short"},
        {bf + 4, sizeof words - 4, &tim, "TIME, misaligned by 4"},
        {bf, sizeof words, NULL, "desc NULL"},
        {bf, sizeof words, &(ap_breaker_desc){.failure_rate_pct = 101}, "bad desc"},
    };
    static unsigned char b_before[sizeof words];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_breaker b, before;
        memset(&b, 0xA5, sizeof b);
        memcpy(&before, &b, sizeof b);
        memset(bf, 0xC3, sizeof words);
        memcpy(b_before, bf, sizeof words);
        EXPECT_EQ(ap_breaker_init(&b, cases[i].buf, cases[i].bytes, cases[i].d), AP_INVAL, "%s",
                     cases[i].what);
        EXPECT(memcmp(&before, &b, sizeof b) == 0, "%s: the breaker changed", cases[i].what);
        EXPECT(memcmp(b_before, bf, sizeof words) == 0, "%s: the buffer changed",
                  cases[i].what);
    }
    const ap_breaker_desc *ok[] = {&cnt, &tim};
    for (int k = 0; k < 2; k++) {
        ap_breaker b;
        size_t n = ap_breaker_bytes(ok[k]);
        memset(bf, 0xC3, sizeof words);
        EXPECT_EQ(ap_breaker_init(&b, bf, n, ok[k]), AP_OK);
        for (uint64_t t = 1; t < 300; t++) {
            ap_breaker_permit p;
            uint64_t ra;
            if (ap_breaker_allow(&b, t, &p, &ra) == AP_OK)
                EXPECT_EQ(ap_breaker_record(&b, &p, AP_BREAKER_OUTCOME_FAILURE, 0, t), AP_OK);
        }
        for (size_t i = n; i < sizeof words; i++)
            EXPECT_EQ(bf[i], 0xC3, "desc %d: byte %zu past the buffer written", k, i);
        ap_breaker_fini(&b);
    }
}

Test(circuit_breaker, probe_admitted_at_the_end_of_time_holds_its_slot)
{
    static _Alignas(8) unsigned char buf[AP_BREAKER_BYTES(1, 1)];
    ap_breaker b;
    ap_breaker_desc d = {.window_size = 1, .min_calls = 1, .open_ns = 10,
                         .half_open_probes = 1, .probe_lease_ns = 5};
    EXPECT_EQ(ap_breaker_init(&b, buf, sizeof buf, &d), AP_OK);
    ap_breaker_permit p, q;
    uint64_t ra;
    EXPECT_EQ(ap_breaker_allow(&b, 0, &p, &ra), AP_OK);
    EXPECT_EQ(ap_breaker_record(&b, &p, AP_BREAKER_OUTCOME_FAILURE, 0, 0), AP_OK);
    EXPECT_EQ(ap_breaker_state_at(&b, 1), AP_BREAKER_STATE_OPEN);
    EXPECT_EQ(ap_breaker_allow(&b, UINT64_MAX, &p, &ra), AP_OK);
    EXPECT_EQ(p.probe, 1u);
    EXPECT_EQ(b.inflight, 1u);
    /* the slot is taken: K = 1 admits nobody else in this period */
    EXPECT_NE(ap_breaker_allow(&b, UINT64_MAX, &q, &ra), AP_OK, "a second probe got the slot");
    ap_status st = ap_breaker_record(&b, &p, AP_BREAKER_OUTCOME_SUCCESS, 0, UINT64_MAX);
    EXPECT(st == AP_OK || st == AP_REJECTED || st == AP_INVAL, "record: %d", st);
}

/* Regression (issue #11, 2): one permit recorded four times as a failure
 * gave four AP_OK and opened the breaker (window 4, min 4, 50 %). The
 * record consumes the permit: the second record is AP_INVAL and changes
 * nothing. */
Test(circuit_breaker, permit_recorded_twice_is_inval)
{
    fixture *f = fx_new(small());
    ap_breaker_permit p = must_allow(&f->b, 0);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, FAIL_, 0, 0), AP_OK);
    ap_breaker_stats s0;
    ap_breaker_stats_get(&f->b, &s0);
    for (int i = 2; i <= 4; i++)
        EXPECT_EQ(ap_breaker_record(&f->b, &p, FAIL_, 0, 0), AP_INVAL,
                     "record %d of one permit was accepted", i);
    ap_breaker_stats s1;
    ap_breaker_stats_get(&f->b, &s1);
    EXPECT_EQ(memcmp(&s0, &s1, sizeof s0), 0, "a second record changed the stats");
    EXPECT_EQ(s1.failures, 1);
    EXPECT_EQ(raw_state(&f->b), CL, "one permit opened the breaker");
    EXPECT_EQ(ap_breaker_generation(&f->b), 1);
    /* a permit never admitted (zero) is refused too */
    ap_breaker_permit z = {0, 0};
    EXPECT_EQ(ap_breaker_record(&f->b, &z, OK_, 0, 0), AP_INVAL);
    /* stale: counted once */
    ap_breaker_permit q = must_allow(&f->b, 0);
    ap_breaker_reset(&f->b);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, 0), AP_OK);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, 0), AP_INVAL);
    EXPECT_EQ(breaker_stats_of(&f->b).stale, 1);
    /* DISABLED */
    ap_breaker_disable(&f->b);
    q = must_allow(&f->b, 0);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, 0), AP_OK);
    EXPECT_EQ(ap_breaker_record(&f->b, &q, OK_, 0, 0), AP_INVAL);
    EXPECT_EQ(breaker_stats_of(&f->b).successes, 1);
    free(f);

    /* HALF_OPEN: the permit itself, and a copy of a reported probe (its
     * slot is free: detected), change nothing */
    f = fx_new(small()); /* K = 2 */
    uint64_t t = goto_state(f, HO);
    p = must_allow(&f->b, t);
    ap_breaker_permit copy = p;
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, t), AP_OK);
    uint64_t g = ap_breaker_generation(&f->b);
    ap_breaker_stats_get(&f->b, &s0);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, FAIL_, 0, t), AP_INVAL);
    EXPECT_EQ(ap_breaker_record(&f->b, &copy, FAIL_, 0, t), AP_INVAL, "a copy re-opened it");
    ap_breaker_stats_get(&f->b, &s1);
    EXPECT_EQ(memcmp(&s0, &s1, sizeof s0), 0);
    EXPECT_EQ(raw_state(&f->b), HO);
    EXPECT_EQ(ap_breaker_generation(&f->b), g);
    EXPECT_EQ(copy.gen, g, "AP_INVAL wrote to the permit");
    free(f);
}

/* Issue #11, 1: a CANCELED probe (the call was abandoned: e.g. a retry
 * deadline cut it) frees its slot at once, is no failure and does not
 * re-open; it counts as IGNORED does, in its own counter. */
Test(circuit_breaker, canceled_probe_frees_its_slot_and_is_no_failure)
{
    ap_breaker_desc d = small();
    d.half_open_probes = 1;
    fixture *f = fx_new(d);
    uint64_t t = goto_state(f, HO);
    ap_breaker_permit p = must_allow(&f->b, t), r;
    uint64_t ra;
    EXPECT_EQ(ap_breaker_allow(&f->b, t, &r, &ra), AP_REJECTED, "K = 1: slot taken");
    uint64_t g = p.gen;
    ap_breaker_stats s0;
    ap_breaker_stats_get(&f->b, &s0);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, CAN_, 5 * SEC, t + 1), AP_OK);
    /* K = 1 admitted, reported without an outcome: a fresh half-open period */
    EXPECT_EQ(raw_state(&f->b), HO);
    EXPECT_EQ(ap_breaker_generation(&f->b), g + 1);
    p = must_allow(&f->b, t + 1); /* the slot is free at once */
    ap_breaker_stats s;
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.canceled, 1);
    EXPECT_EQ(s.failures, s0.failures, "CANCELED counted as a failure");
    EXPECT_EQ(s.ignored, 0);
    EXPECT_EQ(s.slow, s0.slow, "a CANCELED record is never slow");
    EXPECT_EQ(s.lease_expired, 0);
    EXPECT_EQ(s.calls, s.successes + s.failures + s.ignored + s.canceled);
    EXPECT_EQ(ap_breaker_record(&f->b, &p, OK_, 0, t + 2), AP_OK);
    EXPECT_EQ(raw_state(&f->b), CL);
    ap_breaker_stats_get(&f->b, &s);
    EXPECT_EQ(s.allowed, s.successes + s.failures + s.ignored + s.canceled + s.stale);
    free(f);

    /* CLOSED: no window, no rate, and the failure run is not reset */
    f = fx_new((ap_breaker_desc){.window_size = 10, .min_calls = 10, .consecutive_failures = 2});
    call(&f->b, 0, FAIL_, 0);
    for (int i = 0; i < 20; i++)
        call(&f->b, 0, CAN_, 0);
    EXPECT_EQ(agg_calls(&f->b), 1, "CANCELED entered the window");
    EXPECT_EQ(raw_state(&f->b), CL);
    call(&f->b, 0, FAIL_, 0);
    EXPECT_EQ(raw_state(&f->b), OP, "CANCELED reset the failure run");
    free(f);
}

/* Mutation gap (issue #11, 4): the re-open duration grows by
 * floor(d * pct / 100) exactly, also when d is not a multiple of 100
 * (d / 100 * pct or a rounded-up product would differ). */
Test(circuit_breaker, reopen_duration_exact_when_not_a_multiple_of_100)
{
    ap_breaker_desc d = {.window_size = 1, .min_calls = 1, .open_ns = 101,
                         .open_multiplier_pct = 150, .open_max_ns = 10000,
                         .half_open_probes = 1, .probe_lease_ns = SEC};
    fixture *f = fx_new(d);
    call(&f->b, 0, FAIL_, 0);
    /* 101, floor(151.5) = 151, floor(226.5) = 226, 339, floor(508.5) = 508 */
    uint64_t t = 0, want[] = {101, 151, 226, 339, 508};
    for (int i = 0; i < 5; i++) {
        ap_breaker_permit p;
        uint64_t ra = 0;
        EXPECT_EQ(ap_breaker_allow(&f->b, t + want[i] - 1, &p, &ra), AP_REJECTED, "open %d", i);
        EXPECT_EQ(ra, t + want[i], "open %d: for %llu ns, want %llu", i,
                     (unsigned long long)(ra - t), (unsigned long long)want[i]);
        t += want[i];
        p = must_allow(&f->b, t); /* exactly at the end: half-open */
        EXPECT_EQ(ap_breaker_record(&f->b, &p, FAIL_, 0, t), AP_OK); /* re-open */
        EXPECT_EQ(raw_state(&f->b), OP);
    }
    free(f);
}
