/*
 * tests/stress/stress_barrier.c -- ThreadSanitizer stress of the reusable
 * barrier: blocking waits, futures (ap_block_on and hand-polled), timed
 * waits that withdraw, and parties that drop out
 *
 * Each of n workers (4-8 threads on however many cores) takes part in
 * rounds_i generations (equal, or random per party with drops), then
 * leaves with arrive_and_drop.
 * Before each arrival it bumps a shared arrival counter (relaxed) and writes
 * the round number into its own plain slot. Checked:
 *   - in the completion function (leader, everybody arrived, nobody yet
 *     released): the arrival counter equals exactly the sum of the parties
 *     of generations 1..k, and every party's plain slot says k (a missing
 *     arrival->leader edge is a TSan report);
 *   - after a wait of generation k returns AP_OK: cum[k] <= counter <=
 *     cum[k+1] (nobody passed generation k before all arrived, and nobody
 *     got past k+1), and the plain `fn_gen` written by fn says k (the
 *     leader->waiter edge);
 *   - exactly one leader per generation (leaders == fn runs == generations);
 *   - with timeouts (WITHDRAW), a timed-out wait is retried and the barrier
 *     never gets stuck (the watchdog catches a hang).
 * Counters are relaxed atomics so every edge TSan sees comes from the barrier.
 */
#include "stress.h"

#define MAXW 8
#define MAXR 200000

enum { M_WAIT, M_BLOCK_ON, M_HAND, M_TIMED, M_KINDS };

typedef struct bar_run {
    ap_barrier b;
    unsigned n;
    unsigned rounds[MAXW];
    bool timeouts;
    uint32_t gens;          /* generations that will complete */
    unsigned long *cum;     /* cum[k]: arrivals in generations 1..k */
    _Atomic unsigned long arrivals, fn_runs, leaders, timedout, by_mode[M_KINDS];
    unsigned long slot[MAXW]; /* plain: party i's last arrival round */
    unsigned long fn_gen;     /* plain: written by fn */
    pthread_barrier_t start;
} bar_run;

typedef struct bar_worker {
    bar_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} bar_worker;

static void bar_fn(void *ctx)
{
    bar_run *r = ctx;
    unsigned long k = STRESS_LOAD(&r->fn_runs) + 1;
    CHECK(k <= r->gens, "generation %lu completed, only %u expected", k, r->gens);
    unsigned long a = STRESS_LOAD(&r->arrivals);
    CHECK(a == r->cum[k], "fn of generation %lu: %lu arrivals, expected exactly %lu", k, a,
          r->cum[k]);
    for (unsigned i = 0; i < r->n; i++)
        if (r->rounds[i] >= k || r->rounds[i] + 1 == k) /* waits in k, or drops in k */
            CHECK(r->slot[i] == k, "fn of generation %lu: party %u's slot says %lu", k, i,
                  r->slot[i]);
    r->fn_gen = k;
    STRESS_ADD(&r->fn_runs, 1);
}

static ap_status bar_wait_once(bar_worker *w, bool *leader)
{
    bar_run *r = w->r;
    unsigned m = stress_below(&w->rng, r->timeouts ? M_KINDS : M_TIMED);
    STRESS_ADD(&r->by_mode[m], 1);
    ap_barrier_wait_fut f;
    ap_status st;
    switch (m) {
    case M_WAIT:
        return ap_barrier_wait_leader(&r->b, AP_DEADLINE_NONE, leader);
    case M_BLOCK_ON:
        ap_barrier_wait_fut_init(&f, &r->b);
        ap_block_on(&f.base);
        *leader = f.is_leader;
        return ap_barrier_wait_status(&f);
    case M_HAND: {
        stress_flag_waker fw;
        atomic_init(&fw.flag, 0u);
        ap_cx cx = {{stress_flag_wake, &fw}, 0, AP_DEADLINE_NONE};
        ap_barrier_wait_fut_init(&f, &r->b);
        unsigned fails = 0;
        while (ap_barrier_wait_poll(&f, &cx) == AP_PENDING) {
            while (!STRESS_LOAD(&fw.flag))
                stress_backoff(&fails, &w->rng);
            STRESS_STORE(&fw.flag, 0u);
        }
        *leader = f.is_leader;
        return ap_barrier_wait_status(&f);
    }
    default: /* M_TIMED: withdraw on timeout, then arrive again */
        for (;;) {
            st = ap_barrier_wait_leader(&r->b, ap_now_ns() + stress_below(&w->rng, 50000),
                                        leader);
            if (st != AP_TIMEDOUT)
                return st;
            STRESS_ADD(&r->timedout, 1);
        }
    }
}

static void *bar_main(void *arg)
{
    bar_worker *w = arg;
    bar_run *r = w->r;
    pthread_barrier_wait(&r->start);
    unsigned mine = r->rounds[w->id];
    for (unsigned long k = 1; k <= mine; k++) {
        r->slot[w->id] = k;
        STRESS_ADD(&r->arrivals, 1);
        stress_jitter(&w->rng);
        bool leader = false;
        ap_status st = bar_wait_once(w, &leader);
        CHECK(st == AP_OK, "party %u, generation %lu: %s", w->id, k, ap_status_str(st));
        if (leader)
            STRESS_ADD(&r->leaders, 1);
        unsigned long a = STRESS_LOAD(&r->arrivals);
        CHECK(a >= r->cum[k] && a <= r->cum[k + 1],
              "party %u after generation %lu: %lu arrivals, expected %lu..%lu", w->id, k, a,
              r->cum[k], r->cum[k + 1]);
        CHECK(r->fn_gen == k, "party %u after generation %lu: fn_gen %lu", w->id, k,
              r->fn_gen);
    }
    {   /* everybody leaves at the end: an arrival at generation mine + 1 */
        r->slot[w->id] = mine + 1ul;
        STRESS_ADD(&r->arrivals, 1);
        bool leader = false;
        CHECK(ap_barrier_arrive_and_drop(&r->b, &leader) == AP_OK, "drop failed");
        if (leader)
            STRESS_ADD(&r->leaders, 1);
    }
    return NULL;
}

static bar_run *g_run;
static void bar_diag(void *arg)
{
    bar_run *r = arg;
    fprintf(stderr, "    generation %u, arrived %u/%u, fn runs %lu, arrivals %lu\n",
            ap_barrier_generation(&r->b), ap_barrier_arrived(&r->b), ap_barrier_parties(&r->b),
            STRESS_LOAD(&r->fn_runs), STRESS_LOAD(&r->arrivals));
}

static void scenario(unsigned n, size_t base_rounds, bool drops, bool timeouts)
{
    if (!stress_begin("n=%u%s%s", n, drops ? " drops" : "", timeouts ? " timeouts" : ""))
        return;
    bar_run *r = calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    g_run = r;
    r->n = n;
    r->timeouts = timeouts;
    stress_rng rng;
    stress_rng_init(&rng, stress_g.seed, 77);
    size_t rounds = stress_iters(base_rounds, 50);
    if (rounds > MAXR)
        rounds = MAXR;
    unsigned maxr = 0;
    for (unsigned i = 0; i < n; i++) {
        r->rounds[i] = drops ? (unsigned)(rounds / 2 + stress_below(&rng, (uint32_t)rounds / 2))
                             : (unsigned)rounds;
        if (r->rounds[i] > maxr)
            maxr = r->rounds[i];
    }
    /* Generation k: parties with rounds >= k wait in it, parties with
     * rounds == k - 1 drop in it. Every generation 1..maxr completes; a
     * generation of drops alone completes nothing. */
    r->gens = maxr;
    r->cum = calloc(maxr + 2u, sizeof *r->cum);
    CHECK(r->cum != NULL, "out of memory");
    for (unsigned long k = 1; k <= maxr + 1u; k++) {
        unsigned long parts = 0;
        for (unsigned i = 0; i < n; i++)
            parts += (r->rounds[i] >= k) + (r->rounds[i] + 1ul == k);
        r->cum[k] = r->cum[k - 1] + parts;
    }
    CHECK(ap_barrier_init(&r->b, n, AP_BARRIER_POLICY_WITHDRAW, bar_fn, r) == AP_OK, "init");
    pthread_barrier_init(&r->start, NULL, n);
    bar_worker w[MAXW];
    stress_diag(bar_diag, r);
    for (unsigned i = 0; i < n; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_spawn(&w[i].thread, bar_main, &w[i]);
    }
    for (unsigned i = 0; i < n; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);
    CHECK(STRESS_LOAD(&r->fn_runs) == r->gens, "fn ran %lu times for %u generations",
          STRESS_LOAD(&r->fn_runs), r->gens);
    CHECK(STRESS_LOAD(&r->leaders) == r->gens, "%lu leaders for %u generations",
          STRESS_LOAD(&r->leaders), r->gens);
    CHECK(ap_barrier_parties(&r->b) == 0 && ap_barrier_arrived(&r->b) == 0,
          "barrier left with %u/%u", ap_barrier_arrived(&r->b), ap_barrier_parties(&r->b));
    CHECK(!ap_waitlist_has_waiters(&r->b.wl), "waiters left");
    stress_end("%u gens; wait %lu block_on %lu hand %lu timed %lu (%lu timeouts)", r->gens,
               STRESS_LOAD(&r->by_mode[M_WAIT]), STRESS_LOAD(&r->by_mode[M_BLOCK_ON]),
               STRESS_LOAD(&r->by_mode[M_HAND]), STRESS_LOAD(&r->by_mode[M_TIMED]),
               STRESS_LOAD(&r->timedout));
    pthread_barrier_destroy(&r->start);
    ap_barrier_fini(&r->b);
    free(r->cum);
    free(r);
    g_run = NULL;
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_barrier");
    scenario(4, 30000, false, false);
    scenario(8, 10000, false, false);
    scenario(6, 15000, true, false);
    scenario(4, 12000, false, true);
    scenario(5, 8000, true, true);
    return stress_finish();
}
