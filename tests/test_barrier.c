/*
 * tests/test_barrier.c -- the reusable barrier: generations, one leader per
 * generation, completion function, arrive_and_drop, WITHDRAW/BREAK policies,
 * futures contract, bad configuration
 */
#include "asyncpat/barrier.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

static ap_poll poll1(ap_barrier_wait_fut *f, tw *t)
{
    ap_cx cx = {{tw_wake, t}, 0, AP_DEADLINE_NONE};
    return ap_barrier_wait_poll(f, &cx);
}

static ap_deadline in_ms(unsigned ms) { return ap_now_ns() + (uint64_t)ms * AP_NS_PER_MS; }

/* ---- configuration ---- */

Test(barrier, init_bad_config_is_inval, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    memset(&b, 0xAB, sizeof b);
    EXPECT_EQ(ap_barrier_init(&b, 0, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_INVAL);
    EXPECT_EQ(ap_barrier_init(&b, AP_BARRIER_PARTIES_MAX + 1, AP_BARRIER_POLICY_BREAK, NULL, NULL),
                 AP_INVAL);
    EXPECT_EQ(ap_barrier_init(&b, 2, (ap_barrier_policy)7, NULL, NULL), AP_INVAL);
    EXPECT_EQ(((unsigned char *)&b)[0], 0xAB, "a failed init changed the barrier");
    EXPECT_EQ(ap_barrier_init(&b, AP_BARRIER_PARTIES_MAX, AP_BARRIER_POLICY_BREAK, NULL, NULL), AP_OK);
    EXPECT_EQ(ap_barrier_parties(&b), AP_BARRIER_PARTIES_MAX);
    ap_barrier_fini(&b);
}

static void count_fn(void *ctx) { atomic_fetch_add((atomic_int *)ctx, 1); }

/* STYLE.md 10: bad configuration is AP_INVAL and changes nothing -- every
 * byte of the barrier, not just the first (a memset pattern, then memcmp),
 * whatever the completion function and context. */
Test(barrier, init_bad_config_changes_nothing, .timeout = TEST_TIMEOUT_S)
{
    atomic_int hits = 0;
    const struct {
        uint32_t parties;
        ap_barrier_policy policy;
        const char *what;
    } bad[] = {
        {0, AP_BARRIER_POLICY_WITHDRAW, "0 parties, WITHDRAW"},
        {0, AP_BARRIER_POLICY_BREAK, "0 parties, BREAK"},
        {AP_BARRIER_PARTIES_MAX + 1, AP_BARRIER_POLICY_WITHDRAW, "one party too many"},
        {AP_BARRIER_PARTIES_MAX + 1, AP_BARRIER_POLICY_BREAK, "one party too many, BREAK"},
        {UINT32_MAX, AP_BARRIER_POLICY_BREAK, "UINT32_MAX parties"},
        {(uint32_t)1 << 31, AP_BARRIER_POLICY_WITHDRAW, "2^31 parties"},
        {2, (ap_barrier_policy)7, "policy 7"},
        {2, (ap_barrier_policy)-1, "policy -1"},
        {1, (ap_barrier_policy)(AP_BARRIER_POLICY_WITHDRAW + AP_BARRIER_POLICY_BREAK + 1), "policy past the last"},
        {0, (ap_barrier_policy)7, "both bad"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        for (int with_fn = 0; with_fn < 2; with_fn++) {
            ap_barrier b;
            unsigned char before[sizeof b];
            memset(&b, 0xA5 ^ (int)i, sizeof b);
            memcpy(before, &b, sizeof b);
            EXPECT_EQ(ap_barrier_init(&b, bad[i].parties, bad[i].policy,
                                         with_fn ? count_fn : NULL, with_fn ? &hits : NULL),
                         AP_INVAL, "%s accepted", bad[i].what);
            EXPECT(memcmp(before, &b, sizeof b) == 0, "%s: the barrier changed", bad[i].what);
        }
    EXPECT_EQ(atomic_load(&hits), 0, "a refused init called fn");
    /* the same object then takes a good configuration and works */
    ap_barrier b;
    memset(&b, 0xA5, sizeof b);
    EXPECT_EQ(ap_barrier_init(&b, 1, AP_BARRIER_POLICY_WITHDRAW, count_fn, &hits), AP_OK);
    bool leader = false;
    EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
    EXPECT(leader, "the one party leads");
    EXPECT_EQ(atomic_load(&hits), 1);
    ap_barrier_fini(&b);
}

Test(barrier, one_party_is_always_leader, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    atomic_int runs = 0;
    EXPECT_EQ(ap_barrier_init(&b, 1, AP_BARRIER_POLICY_WITHDRAW, count_fn, &runs), AP_OK);
    for (int i = 0; i < 10; i++) {
        bool leader = false;
        EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
        EXPECT(leader);
    }
    EXPECT_EQ(atomic_load(&runs), 10);
    EXPECT_EQ(ap_barrier_generation(&b), 10);
    ap_barrier_fini(&b);
}

/* ---- futures ---- */

Test(barrier, future_wakes_after_pending_and_reports_leader, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    atomic_int runs = 0;
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_WITHDRAW, count_fn, &runs), AP_OK);
    ap_barrier_wait_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_NOT_READY);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING, "a re-poll must not arrive twice");
    EXPECT_EQ(ap_barrier_arrived(&b), 1);
    EXPECT_EQ(calls(&t1), 0);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f2), AP_OK);
    EXPECT(f2.is_leader);
    EXPECT_EQ(atomic_load(&runs), 1);
    EXPECT_GE(calls(&t1), 1, "the waiter was not woken");
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    EXPECT(!f1.is_leader);
    /* cancel after completion: idempotent, changes nothing */
    ap_barrier_wait_cancel(&f1);
    ap_barrier_wait_cancel(&f1);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    EXPECT_EQ(ap_barrier_arrived(&b), 0);
    EXPECT_EQ(ap_barrier_generation(&b), 1);
    ap_barrier_fini(&b);
}

Test(barrier, cancel_before_poll_does_not_arrive, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_BREAK, NULL, NULL), AP_OK);
    ap_barrier_wait_fut f;
    tw t = {0};
    ap_barrier_wait_fut_init(&f, &b);
    ap_future_cancel(&f.base);
    EXPECT_EQ(ap_barrier_wait_status(&f), AP_CANCELED);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_barrier_arrived(&b), 0);
    EXPECT(!ap_barrier_is_broken(&b), "a future that never arrived broke the barrier");
    ap_barrier_fini(&b);
}

Test(barrier, withdraw_cancel_no_wake_after_cancel, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    EXPECT_EQ(ap_barrier_init(&b, 3, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    ap_barrier_wait_fut f1, f2, f3, f4;
    tw t1 = {0}, t2 = {0}, t3 = {0}, t4 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    ap_barrier_wait_cancel(&f1);
    ap_barrier_wait_cancel(&f1); /* idempotent */
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_CANCELED);
    EXPECT_EQ(ap_barrier_arrived(&b), 0, "the arrival was not taken back");
    EXPECT(!ap_barrier_is_broken(&b));
    ap_barrier_wait_fut_init(&f2, &b);
    ap_barrier_wait_fut_init(&f3, &b);
    ap_barrier_wait_fut_init(&f4, &b);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(poll1(&f3, &t3), AP_PENDING);
    EXPECT_EQ(poll1(&f4, &t4), AP_READY);
    EXPECT(f4.is_leader);
    EXPECT_EQ(calls(&t1), 0, "a cancelled future was woken");
    EXPECT_GE(calls(&t2), 1);
    EXPECT_GE(calls(&t3), 1);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(poll1(&f3, &t3), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f2), AP_OK);
    EXPECT_EQ(ap_barrier_wait_status(&f3), AP_OK);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_CANCELED);
    ap_barrier_fini(&b);
}

/* ---- policies ---- */

Test(barrier, withdraw_timed_wait_then_rearrive_completes, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    EXPECT_EQ(ap_barrier_init(&b, 3, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    ap_barrier_wait_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(ap_barrier_wait(&b, in_ms(1)), AP_OK, "the third arrival completes at once");
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    /* generation 1: two arrive, the third times out and withdraws */
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(ap_barrier_wait(&b, in_ms(20)), AP_TIMEDOUT);
    EXPECT_EQ(ap_barrier_arrived(&b), 1, "timed-out arrival not withdrawn");
    EXPECT(!ap_barrier_is_broken(&b));
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING, "others must still wait, not fail");
    /* the withdrawn party comes back: the generation completes */
    bool leader = false;
    EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
    EXPECT(leader);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    EXPECT_EQ(ap_barrier_wait_status(&f2), AP_OK);
    /* generation 2: a timed-out party drops instead: that completes it */
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(ap_barrier_arrived(&b), 2);
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK);
    EXPECT(leader, "the drop that completes a generation leads it");
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    EXPECT_EQ(ap_barrier_parties(&b), 2);
    ap_barrier_fini(&b);
}

Test(barrier, break_policy_breaks_everybody_until_reset, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    atomic_int runs = 0;
    EXPECT_EQ(ap_barrier_init(&b, 4, AP_BARRIER_POLICY_BREAK, count_fn, &runs), AP_OK);
    ap_barrier_wait_fut f1, f2, f3;
    tw t1 = {0}, t2 = {0}, t3 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(ap_barrier_wait(&b, in_ms(20)), AP_TIMEDOUT);
    EXPECT(ap_barrier_is_broken(&b));
    EXPECT_GE(calls(&t1), 1, "a broken barrier must wake its waiters");
    EXPECT_GE(calls(&t2), 1);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_CANCELED);
    EXPECT_EQ(ap_barrier_wait_status(&f2), AP_CANCELED);
    /* later waits fail at once, without arriving */
    EXPECT_EQ(ap_barrier_wait(&b, AP_DEADLINE_NONE), AP_CANCELED);
    ap_barrier_wait_fut_init(&f3, &b);
    EXPECT_EQ(poll1(&f3, &t3), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f3), AP_CANCELED);
    EXPECT_EQ(atomic_load(&runs), 0);
    /* reset recovers */
    ap_barrier_reset(&b);
    EXPECT(!ap_barrier_is_broken(&b));
    EXPECT_EQ(ap_barrier_arrived(&b), 0);
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    ap_barrier_wait_fut_init(&f3, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(poll1(&f3, &t3), AP_PENDING);
    bool leader = false;
    EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
    EXPECT(leader);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(poll1(&f3, &t3), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    EXPECT_EQ(ap_barrier_wait_status(&f2), AP_OK);
    EXPECT_EQ(ap_barrier_wait_status(&f3), AP_OK);
    EXPECT_EQ(atomic_load(&runs), 1);
    ap_barrier_fini(&b);
}

Test(barrier, reset_under_waiters_cancels_them, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    ap_barrier_wait_fut f1, f2;
    tw t1 = {0}, t2 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    ap_barrier_reset(&b);
    EXPECT_GE(calls(&t1), 1);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_CANCELED);
    /* a completed generation followed by a reset is still a completion */
    ap_barrier_wait_fut_init(&f1, &b);
    ap_barrier_wait_fut_init(&f2, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    ap_barrier_reset(&b);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    ap_barrier_fini(&b);
}

Test(barrier, arrive_and_drop, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    atomic_int runs = 0;
    EXPECT_EQ(ap_barrier_init(&b, 3, AP_BARRIER_POLICY_BREAK, count_fn, &runs), AP_OK);
    bool leader = true;
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK);
    EXPECT(!leader);
    EXPECT_EQ(ap_barrier_parties(&b), 2);
    ap_barrier_wait_fut f1;
    tw t1 = {0};
    ap_barrier_wait_fut_init(&f1, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
    EXPECT(leader);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(ap_barrier_wait_status(&f1), AP_OK);
    /* later generations need 2 */
    ap_barrier_wait_fut_init(&f1, &b);
    EXPECT_EQ(poll1(&f1, &t1), AP_PENDING);
    EXPECT_EQ(ap_barrier_arrived(&b), 1);
    EXPECT_EQ(ap_barrier_wait(&b, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(poll1(&f1, &t1), AP_READY);
    EXPECT_EQ(atomic_load(&runs), 2);
    /* drop everybody: a wait is then AP_INVAL, never a hang */
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK);
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK);
    EXPECT(!leader, "nobody waits: no generation to complete");
    EXPECT_EQ(ap_barrier_parties(&b), 0);
    EXPECT_EQ(ap_barrier_wait(&b, AP_DEADLINE_NONE), AP_INVAL);
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, NULL), AP_INVAL);
    EXPECT_EQ(atomic_load(&runs), 2);
    ap_barrier_fini(&b);
}

/* ---- threads: the round invariant, one leader per generation ---- */

typedef struct round_ctx {
    ap_barrier b;
    unsigned n, rounds;
    atomic_ulong arrivals;   /* incremented before each round's first wait */
    atomic_ulong fn_runs;    /* completion function runs */
    atomic_ulong leaders;    /* waits that returned is_leader */
    atomic_ulong bad;
    atomic_uint next_id;
} round_ctx;

static void round_fn(void *ctx)
{
    round_ctx *c = ctx;
    atomic_fetch_add_explicit(&c->fn_runs, 1, memory_order_relaxed);
}

static void *round_worker(void *arg)
{
    round_ctx *c = arg;
    unsigned id = atomic_fetch_add(&c->next_id, 1);
    unsigned long gens = 0;
    for (unsigned long r = 1; r <= c->rounds; r++) {
        atomic_fetch_add_explicit(&c->arrivals, 1, memory_order_relaxed);
        for (int phase = 0; phase < 2; phase++) {
            bool leader = false;
            ap_status st;
            if ((id + r + (unsigned)phase) % 3 == 0) { /* some waits through a future */
                ap_barrier_wait_fut f;
                ap_barrier_wait_fut_init(&f, &c->b);
                ap_block_on(&f.base);
                st = ap_barrier_wait_status(&f);
                leader = f.is_leader;
            } else {
                st = ap_barrier_wait_leader(&c->b, AP_DEADLINE_NONE, &leader);
            }
            gens++;
            if (st != AP_OK)
                atomic_fetch_add(&c->bad, 1);
            if (leader)
                atomic_fetch_add_explicit(&c->leaders, 1, memory_order_relaxed);
            /* fn of this generation ran before we were released */
            if (atomic_load_explicit(&c->fn_runs, memory_order_relaxed) < gens)
                atomic_fetch_add(&c->bad, 1);
            /* after the first wait of round r: exactly n * r arrivals (the
             * second wait keeps anyone from starting round r + 1 early) */
            if (phase == 0 &&
                atomic_load_explicit(&c->arrivals, memory_order_relaxed) != c->n * r)
                atomic_fetch_add(&c->bad, 1);
        }
    }
    return NULL;
}

static void run_rounds(unsigned n, unsigned rounds)
{
    round_ctx *c = calloc(1, sizeof *c);
    EXPECT_NOT_NULL(c);
    c->n = n;
    c->rounds = rounds;
    EXPECT_EQ(ap_barrier_init(&c->b, n, AP_BARRIER_POLICY_WITHDRAW, round_fn, c), AP_OK);
    pthread_t th[16];
    for (unsigned i = 0; i < n; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, round_worker, c), 0);
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    unsigned long gens = 2ul * rounds;
    EXPECT_EQ(atomic_load(&c->bad), 0, "%lu invariant violations", atomic_load(&c->bad));
    EXPECT_EQ(atomic_load(&c->fn_runs), gens);
    EXPECT_EQ(atomic_load(&c->leaders), gens, "not exactly one leader per generation");
    EXPECT_EQ(atomic_load(&c->arrivals), (unsigned long)n * rounds);
    EXPECT_EQ(ap_barrier_generation(&c->b), (uint32_t)gens);
    ap_barrier_fini(&c->b);
    free(c);
}

Test(barrier, rounds_more_threads_than_cores, .timeout = TEST_TIMEOUT_S)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = cores < 1 ? 4 : (unsigned)(cores * 2 + 1);
    if (n > 16)
        n = 16;
    /* about 1e5 waits in all (2 per round per thread) */
    run_rounds(n, 100000u / (2u * n));
}

Test(barrier, rounds_two_threads, .timeout = TEST_TIMEOUT_S)
{
    run_rounds(2, 20000);
}

/* threads that time out while the others complete: WITHDRAW keeps them consistent */
typedef struct tw_ctx {
    ap_barrier b;
    atomic_ulong ok, timedout;
} tw_ctx;

static void *timed_worker(void *arg)
{
    tw_ctx *c = arg;
    for (int i = 0; i < 200; i++) {
        ap_status st;
        /* retry until this party gets through generation after generation */
        while ((st = ap_barrier_wait(&c->b, ap_now_ns() + 20000u)) == AP_TIMEDOUT)
            atomic_fetch_add(&c->timedout, 1);
        if (st == AP_OK)
            atomic_fetch_add(&c->ok, 1);
    }
    return NULL;
}

Test(barrier, withdraw_under_timeouts_never_gets_stuck, .timeout = TEST_TIMEOUT_S)
{
    tw_ctx *c = calloc(1, sizeof *c);
    EXPECT_NOT_NULL(c);
    EXPECT_EQ(ap_barrier_init(&c->b, 3, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, timed_worker, c), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    EXPECT_EQ(atomic_load(&c->ok), 600);
    EXPECT_EQ(ap_barrier_generation(&c->b), 200);
    EXPECT_EQ(ap_barrier_arrived(&c->b), 0);
    ap_barrier_fini(&c->b);
    free(c);
}

/* ---- regressions from review ---- */

/* A break clears the arrivals: dropping every party of a broken barrier
 * never waits for a leader that does not exist. */
Test(barrier, drop_after_break_never_waits, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    ap_barrier_wait_fut f;
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    bool leader = true;
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_BREAK, NULL, NULL), AP_OK);
    ap_barrier_wait_fut_init(&f, &b);
    EXPECT_EQ(ap_barrier_wait_poll(&f, &cx), AP_PENDING); /* arrived: 1 of 2 */
    ap_barrier_wait_cancel(&f);                               /* BREAK */
    EXPECT(ap_barrier_is_broken(&b));
    EXPECT_EQ(ap_barrier_arrived(&b), 0);
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK);
    EXPECT(!leader);
    EXPECT_EQ(ap_barrier_arrive_and_drop(&b, &leader), AP_OK); /* used to spin forever */
    EXPECT(!leader);
    EXPECT_EQ(ap_barrier_parties(&b), 0);
}

/* After >= 2^22 resets during one wait the generation distance wraps; a
 * WITHDRAW cancel must then give up, not borrow into the parties field. */
Test(barrier, wrapped_generation_cancel_keeps_word_sane, .timeout = TEST_TIMEOUT_S)
{
    ap_barrier b;
    ap_barrier_wait_fut f;
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    ap_barrier_wait_fut_init(&f, &b);
    EXPECT_EQ(ap_barrier_wait_poll(&f, &cx), AP_PENDING);
    for (uint32_t i = 0; i < (UINT32_C(1) << 22); i++)
        ap_barrier_reset(&b);
    ap_barrier_wait_cancel(&f);
    EXPECT_EQ(ap_barrier_wait_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_barrier_parties(&b), 2, "parties corrupted");
    EXPECT_EQ(ap_barrier_arrived(&b), 0);
}
