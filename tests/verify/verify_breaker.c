/*
 * verify_breaker.c -- the circuit breaker under every interleaving within
 * the preemption bound, in SC and x86-TSO modes.
 *
 * HALF_OPEN probes (3 threads, K = 1 and K = 2): the breaker is tripped in
 * set-up at T0 (OPEN until T0 + OPEN_NS); thread 0 first asks one ns before
 * the open time is over, then every thread asks at or after it, and reports
 * the outcome of an admitted call (success, failure that re-opens,
 * ignored, or canceled: as ignored). Theorems: at most K probes admitted per half-open period (so at
 * most K held at once), no call admitted in an OPEN generation, and no
 * half-open period entered before the open time is over; every permit is
 * reported once and the stats are conserved (allowed = successes +
 * failures + ignored + canceled + stale; allowed + rejected = calls to allow); the
 * callback runs exactly once per transition; every transition out of a
 * half-open period is the one its recorded outcomes call for (K successes
 * -> CLOSED, a failure -> OPEN, K reported with an ignored or canceled
 * one and no failure -> a new HALF_OPEN period; a canceled probe never
 * re-opens), and a period still half-open at the
 * end has seen none of these.
 *
 * CLOSED, COUNT window (2 threads, 2 calls each; window 4, 50 %,
 * min_calls 4): the lock-free record path trips to OPEN exactly when the
 * 4th outcome lands if 2 of the 4 are failures (never before: the state
 * word turns OPEN only once all 4 records have started), and never with
 * 1 failure of 4.
 *
 * CLOSE VS RECORD (2 threads; K = 1, consecutive_failures 3): set-up
 * leaves half-open generation 3 with its probe admitted; thread 0 reports
 * the probe's success (CLOSED, generation 4: the window is cleared under
 * the lock, then published by the state word's release store) while thread
 * 1 asks until admitted and reports a failure. Its permit is of generation
 * 4, the current one, so the failure counts (never stale) and the window
 * of 4 holds exactly it: aggregate 1 call 1 failure, one ring entry, a
 * failure run of 1. In C11 mode this is the state word's publication: a
 * recorder that admitted itself lock-free on (CLOSED, 4) must see the
 * cleared agg, cursor and consec (mutant BREAKER_STATE_RELAXED: a stale
 * read of one of them drops the outcome as stale, or counts it in agg but
 * never in the ring, or loses the failure run).
 *
 * The counters below are plain ints: the "threads" are coroutines on one
 * OS thread, and test code has no scheduling points.
 */
#include "vf.h"
#include "asyncpat/circuit_breaker.h"

#define T0_NS UINT64_C(1000000) /* set-up trips the breaker here */
#define OPEN_NS UINT64_C(1000)
#define T_OPEN (T0_NS + OPEN_NS) /* the first open time is over here */
#define LEASE_NS UINT64_C(1000000000) /* never expires in these scenarios */
#define WIN 4
#define MAXK 2
#define MAXGEN 16
#define MAXPERM 8

enum { S = AP_BREAKER_OUTCOME_SUCCESS, F = AP_BREAKER_OUTCOME_FAILURE,
       I = AP_BREAKER_OUTCOME_IGNORED, C = AP_BREAKER_OUTCOME_CANCELED };

typedef struct cst {
    ap_breaker b;
    uint64_t buf[AP_BREAKER_BYTES(WIN, MAXK) / sizeof(uint64_t)];
    int K;
    /* transition log, by the new generation (from the callback) */
    bool ev_seen[MAXGEN];
    int ev_from[MAXGEN], ev_to[MAXGEN];
    uint64_t ev_now[MAXGEN];
    int nev;
    uint64_t cur_now[VF_MAX_THREADS], setup_now;
    /* permits, tallied by their generation */
    int adm_half[MAXGEN], held_half[MAXGEN], adm_closed[MAXGEN];
    int rec[4][MAXGEN]; /* [outcome][gen]: records started */
    int perm_gen[MAXPERM], perm_probe[MAXPERM], nperm;
    int n_allow, n_ok, n_rej, n_rec;
    int rec_fail_started; /* CLOSED scenario: failures whose record started */
    ap_breaker_stats base; /* stats after set-up */
    ap_breaker_permit probe; /* close_vs_record: admitted in set-up */
    int cr_gen;              /* close_vs_record: the caller's permit */
} cst;

/* scenario parameters */
static int cb_K;
static uint32_t cb_consec; /* consecutive_failures of the next breaker (0: off) */
static int ho_out[VF_MAX_THREADS]; /* HALF_OPEN: each thread's outcome */
static int cl_out[VF_MAX_THREADS][2]; /* CLOSED: two outcomes per thread */
static int cl_fails;                  /* failures among them */

static void cb_log(void *ctx, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    cst *s = ctx;
    int self = vf_self();
    VF_CHECK(gen >= 2 && gen < MAXGEN, "generation %llu", (unsigned long long)gen);
    VF_CHECK(!s->ev_seen[gen], "the callback of generation %llu ran twice",
             (unsigned long long)gen);
    s->ev_seen[gen] = true;
    s->ev_from[gen] = (int)from;
    s->ev_to[gen] = (int)to;
    s->ev_now[gen] = self >= 0 ? s->cur_now[self] : s->setup_now;
    s->nev++;
}

static cst *cb_new(uint32_t min_calls)
{
    size_t sz = (sizeof(cst) + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    cst *s = aligned_alloc(AP_CACHELINE, sz);
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    ap_breaker_desc d = {.window = AP_BREAKER_WINDOW_COUNT,
                         .window_size = WIN,
                         .min_calls = min_calls,
                         .failure_rate_pct = 50,
                         .open_ns = OPEN_NS,
                         .half_open_probes = (uint32_t)cb_K,
                         .consecutive_failures = cb_consec,
                         .probe_lease_ns = LEASE_NS,
                         .on_change = cb_log,
                         .ctx = s};
    VF_CHECK(ap_breaker_bytes(&d) <= sizeof s->buf);
    VF_CHECK(ap_breaker_init(&s->b, s->buf, sizeof s->buf, &d) == AP_OK);
    s->K = cb_K;
    s->setup_now = T0_NS;
    return s;
}

static void cb_teardown(void *p)
{
    cst *s = p;
    ap_breaker_fini(&s->b);
    free(s);
}

/* allow at @now; on AP_OK tallies the permit. */
static ap_status cb_allow(cst *s, int id, uint64_t now, ap_breaker_permit *p)
{
    uint64_t ra = 0;
    s->cur_now[id] = now;
    ap_status r = ap_breaker_allow(&s->b, now, p, &ra);
    s->n_allow++;
    if (r == AP_REJECTED) {
        s->n_rej++;
        VF_CHECK(ra > now, "T%d rejected at %llu with retry_at %llu", id,
                 (unsigned long long)now, (unsigned long long)ra);
        return r;
    }
    VF_CHECK(r == AP_OK, "allow: %d", r);
    VF_CHECK(p->gen >= 1 && p->gen < MAXGEN && s->nperm < MAXPERM);
    int g = (int)p->gen;
    s->n_ok++;
    s->perm_gen[s->nperm] = g;
    s->perm_probe[s->nperm++] = (int)p->probe;
    if (p->probe) {
        VF_CHECK(p->probe <= (uint32_t)s->K, "probe slot %u", p->probe);
        s->adm_half[g]++;
        s->held_half[g]++;
        VF_CHECK(s->adm_half[g] <= s->K, "%d probes admitted in half-open generation %d (K = %d)",
                 s->adm_half[g], g, s->K);
        VF_CHECK(s->held_half[g] <= s->K, "%d probes held in half-open generation %d (K = %d)",
                 s->held_half[g], g, s->K);
    } else {
        s->adm_closed[g]++;
    }
    return r;
}

static void cb_record(cst *s, int id, ap_breaker_permit *p, int o, uint64_t now)
{
    const ap_breaker_permit q = *p; /* the record consumes *p */
    s->cur_now[id] = now;
    s->rec[o][q.gen]++;
    s->n_rec++;
    if (o == F)
        s->rec_fail_started++;
    VF_CHECK(ap_breaker_record(&s->b, p, (ap_breaker_outcome)o, 0, now) == AP_OK);
    VF_CHECK(p->gen == 0, "the record did not consume the permit");
    if (q.probe)
        s->held_half[q.gen]--;
}

/* ---- HALF_OPEN probes ---- */

static void *ho_setup(void)
{
    cst *s = cb_new(WIN);
    ap_breaker_permit p[WIN];
    /* trip: WIN failures at T0 (no scheduling points outside the threads) */
    for (int i = 0; i < WIN; i++)
        VF_CHECK(ap_breaker_allow(&s->b, T0_NS, &p[i], NULL) == AP_OK);
    for (int i = 0; i < WIN; i++)
        VF_CHECK(ap_breaker_record(&s->b, &p[i], AP_BREAKER_OUTCOME_FAILURE, 0, T0_NS) == AP_OK);
    VF_CHECK(ap_breaker_state_at(&s->b, T0_NS) == AP_BREAKER_STATE_OPEN);
    VF_CHECK(ap_breaker_generation(&s->b) == 2);
    ap_breaker_stats_get(&s->b, &s->base);
    return s;
}

static void ho_thread(void *p, int id)
{
    cst *s = p;
    /* thread 0 first asks 1 ns before the open time is over */
    for (int attempt = id == 0 ? 0 : 1; attempt < 2; attempt++) {
        uint64_t now = attempt == 0 ? T_OPEN - 1 : T_OPEN + (uint64_t)id;
        ap_breaker_permit pm;
        if (cb_allow(s, id, now, &pm) != AP_OK)
            continue;
        cb_record(s, id, &pm, ho_out[id], now);
        return;
    }
}

static void ho_invariant(void *p)
{
    cst *s = p;
    uint64_t w = atomic_load_explicit(&s->b.state, memory_order_relaxed);
    if ((w & 7u) == AP_BREAKER_STATE_HALF_OPEN) {
        /* the lock's fields, read between two scheduling points */
        VF_CHECK(s->b.inflight <= (uint32_t)s->K && s->b.admitted <= (uint32_t)s->K &&
                     s->b.inflight <= s->b.admitted,
                 "HALF_OPEN with inflight %u admitted %u (K = %d)", s->b.inflight,
                 s->b.admitted, s->K);
    }
    for (int g = 0; g < MAXGEN; g++)
        VF_CHECK(s->adm_half[g] <= s->K);
}

/* The state a generation was entered in (gen 1: the initial CLOSED). */
static int gen_state(const cst *s, int g)
{
    return g == 1 ? AP_BREAKER_STATE_CLOSED : s->ev_to[g];
}

/* Checks common to both scenario kinds, once every permit is reported. */
static void cb_check_common(cst *s, int G)
{
    ap_breaker_stats st;
    ap_breaker_stats_get(&s->b, &st);
    VF_CHECK(G >= 1 && G < MAXGEN);
    /* the callback ran exactly once per transition, and the log chains */
    VF_CHECK(s->nev == G - 1, "%d callbacks for %d transitions", s->nev, G - 1);
    VF_CHECK(st.transitions == (uint64_t)(G - 1));
    for (int g = 2; g <= G; g++) {
        VF_CHECK(s->ev_seen[g], "no callback for generation %d", g);
        VF_CHECK(s->ev_from[g] == gen_state(s, g - 1), "gen %d: from %d, but gen %d was %d", g,
                 s->ev_from[g], g - 1, gen_state(s, g - 1));
        if (s->ev_to[g] == AP_BREAKER_STATE_HALF_OPEN && s->ev_from[g] == AP_BREAKER_STATE_OPEN)
            VF_CHECK(s->ev_now[g] >= s->ev_now[g - 1] + OPEN_NS,
                     "half-open at %llu, but the open time of gen %d ends at %llu",
                     (unsigned long long)s->ev_now[g], g - 1,
                     (unsigned long long)(s->ev_now[g - 1] + OPEN_NS));
    }
    /* the state machine ends where the log says (now 0: no due transition) */
    VF_CHECK((int)ap_breaker_state_at(&s->b, 0) == gen_state(s, G), "final state %d, the log says %d",
             (int)ap_breaker_state_at(&s->b, 0), gen_state(s, G));
    /* no call admitted while OPEN: each permit's generation is CLOSED or
     * HALF_OPEN, and its probe slot says which */
    for (int i = 0; i < s->nperm; i++) {
        int g = s->perm_gen[i], gs = gen_state(s, g);
        VF_CHECK(g <= G);
        VF_CHECK(gs == AP_BREAKER_STATE_CLOSED || gs == AP_BREAKER_STATE_HALF_OPEN,
                 "a permit of generation %d, which is state %d", g, gs);
        VF_CHECK((s->perm_probe[i] != 0) == (gs == AP_BREAKER_STATE_HALF_OPEN),
                 "permit of gen %d (state %d) has probe %d", g, gs, s->perm_probe[i]);
    }
    /* conservation */
    VF_CHECK(st.allowed == s->base.allowed + (uint64_t)s->n_ok);
    VF_CHECK(st.rejected == s->base.rejected + (uint64_t)s->n_rej);
    VF_CHECK(s->n_ok + s->n_rej == s->n_allow && s->n_rec == s->n_ok,
             "every permit is reported exactly once");
    VF_CHECK(st.allowed == st.successes + st.failures + st.ignored + st.canceled + st.stale,
             "allowed %llu != %llu + %llu + %llu + %llu canceled + %llu stale",
             (unsigned long long)st.allowed, (unsigned long long)st.successes,
             (unsigned long long)st.failures, (unsigned long long)st.ignored,
             (unsigned long long)st.canceled, (unsigned long long)st.stale);
    VF_CHECK(st.calls == st.successes + st.failures + st.ignored + st.canceled);
    VF_CHECK(st.lease_expired == 0 && st.slow == 0);
}

static void ho_check(void *p)
{
    cst *s = p;
    int G = (int)ap_breaker_generation(&s->b), K = s->K;
    cb_check_common(s, G);
    for (int g = 2; g <= G; g++) {
        int gs = gen_state(s, g);
        int next = g < G ? s->ev_to[g + 1] : -1;
        if (gs == AP_BREAKER_STATE_HALF_OPEN) {
            /* CANCELED counts exactly as IGNORED */
            int su = s->rec[S][g], fa = s->rec[F][g], ig = s->rec[I][g] + s->rec[C][g];
            VF_CHECK(s->adm_half[g] == su + fa + ig && s->adm_half[g] <= K);
            if (next == AP_BREAKER_STATE_CLOSED)
                VF_CHECK(su == K && fa == 0, "gen %d closed with %d successes, %d failures", g,
                         su, fa);
            else if (next == AP_BREAKER_STATE_OPEN)
                VF_CHECK(fa >= 1, "gen %d re-opened with no failure", g);
            else if (next == AP_BREAKER_STATE_HALF_OPEN)
                VF_CHECK(s->adm_half[g] == K && fa == 0 && su < K && ig >= 1,
                         "gen %d restarted half-open: %d admitted, %d S %d F %d I", g,
                         s->adm_half[g], su, fa, ig);
            else { /* still half-open at the end, every permit reported */
                VF_CHECK(next == -1, "HALF_OPEN -> %d", next);
                VF_CHECK(fa == 0 && su < K && s->adm_half[g] < K,
                         "gen %d still half-open with %d admitted, %d S %d F %d I", g,
                         s->adm_half[g], su, fa, ig);
                VF_CHECK(s->b.inflight == 0 && s->b.admitted == (uint32_t)s->adm_half[g] &&
                         s->b.succ == (uint32_t)su);
            }
        } else if (gs == AP_BREAKER_STATE_CLOSED) {
            /* fewer than min_calls outcomes: a CLOSED period never trips here */
            VF_CHECK(next == -1, "CLOSED gen %d -> %d", g, next);
        } else {
            VF_CHECK(gs == AP_BREAKER_STATE_OPEN);
            VF_CHECK(next == -1 || next == AP_BREAKER_STATE_HALF_OPEN);
            VF_CHECK(s->adm_half[g] == 0 && s->adm_closed[g] == 0);
        }
    }
    /* all successes: the breaker must close */
    bool all_s = true;
    for (int t = 0; t < 3; t++)
        all_s = all_s && ho_out[t] == S;
    if (all_s)
        VF_CHECK(gen_state(s, G) == AP_BREAKER_STATE_CLOSED, "all successes, final state %d",
                 gen_state(s, G));
}

/* ---- CLOSED: the lock-free COUNT window ---- */

static void *cl_setup(void)
{
    cst *s = cb_new(WIN);
    ap_breaker_stats_get(&s->b, &s->base);
    return s;
}

static void cl_thread(void *p, int id)
{
    cst *s = p;
    for (int i = 0; i < 2; i++) {
        ap_breaker_permit pm;
        /* the breaker trips only once all 4 records started, after every allow */
        VF_CHECK(cb_allow(s, id, T0_NS, &pm) == AP_OK, "T%d rejected in CLOSED", id);
        VF_CHECK(pm.gen == 1 && pm.probe == 0);
        cb_record(s, id, &pm, cl_out[id][i], T0_NS);
    }
}

static void cl_invariant(void *p)
{
    cst *s = p;
    uint64_t w = atomic_load_explicit(&s->b.state, memory_order_relaxed);
    if (w != (UINT64_C(1) << 3 | AP_BREAKER_STATE_CLOSED)) {
        VF_CHECK(cl_fails >= 2, "tripped with %d failures of 4", cl_fails);
        VF_CHECK(w == (UINT64_C(2) << 3 | AP_BREAKER_STATE_OPEN), "state word %llx",
                 (unsigned long long)w);
        VF_CHECK(s->n_rec == 2 * 2 && s->rec_fail_started == cl_fails,
                 "tripped after %d records started (%d failures)", s->n_rec,
                 s->rec_fail_started);
    }
    uint64_t a = atomic_load_explicit(&s->b.agg, memory_order_relaxed);
    VF_CHECK(AP__BREAKER_F16(a, 16) <= AP__BREAKER_F16(a, 32) && AP__BREAKER_F16(a, 32) <= WIN,
             "window aggregate: %llu failures of %llu calls",
             (unsigned long long)AP__BREAKER_F16(a, 16), (unsigned long long)AP__BREAKER_F16(a, 32));
}

static void cl_check(void *p)
{
    cst *s = p;
    int G = (int)ap_breaker_generation(&s->b);
    ap_breaker_stats st;
    ap_breaker_stats_get(&s->b, &st);
    cb_check_common(s, G);
    VF_CHECK(st.stale == 0 && st.successes == (uint64_t)(4 - cl_fails) &&
             st.failures == (uint64_t)cl_fails && st.rejected == 0);
    if (cl_fails >= 2) {
        VF_CHECK(G == 2 && s->ev_to[2] == AP_BREAKER_STATE_OPEN,
                 "%d failures of 4: not tripped (generation %d)", cl_fails, G);
        VF_CHECK(s->ev_now[2] == T0_NS);
        VF_CHECK(atomic_load_explicit(&s->b.open_until, memory_order_relaxed) == T0_NS + OPEN_NS);
    } else {
        VF_CHECK(G == 1, "%d failure of 4 tripped it", cl_fails);
        uint64_t a = atomic_load_explicit(&s->b.agg, memory_order_relaxed);
        VF_CHECK(AP__BREAKER_F16(a, 32) == 4 && AP__BREAKER_F16(a, 16) == (uint64_t)cl_fails,
                 "window: %llu failures of %llu calls", (unsigned long long)AP__BREAKER_F16(a, 16),
                 (unsigned long long)AP__BREAKER_F16(a, 32));
    }
}

static unsigned long run_ho(const char *name, int K, int o0, int o1, int o2)
{
    vf_scenario sc = {.name = name, .nthreads = 3, .tso = false, .c11 = true, .bound = 2,
                      .setup = ho_setup, .thread = ho_thread, .invariant = ho_invariant,
                      .check = ho_check, .teardown = cb_teardown};
    cb_K = K;
    ho_out[0] = o0, ho_out[1] = o1, ho_out[2] = o2;
    return vf_explore(&sc);
}

static unsigned long run_cl(const char *name, bool tso, int a0, int a1, int b0, int b1)
{
    vf_scenario sc = {.name = name, .nthreads = 2, .tso = tso, .bound = 3,
                      .setup = cl_setup, .thread = cl_thread, .invariant = cl_invariant,
                      .check = cl_check, .teardown = cb_teardown};
    cb_K = 1;
    cl_out[0][0] = a0, cl_out[0][1] = a1, cl_out[1][0] = b0, cl_out[1][1] = b1;
    cl_fails = (a0 == F) + (a1 == F) + (b0 == F) + (b1 == F);
    return vf_explore(&sc);
}

/* ---- a probe closes the breaker while a caller records lock-free ---- */

static void *cr_setup(void)
{
    cst *s = cb_new(WIN);
    ap_breaker_permit p[WIN];
    for (int i = 0; i < WIN; i++)
        VF_CHECK(ap_breaker_allow(&s->b, T0_NS, &p[i], NULL) == AP_OK);
    for (int i = 0; i < WIN; i++)
        VF_CHECK(ap_breaker_record(&s->b, &p[i], AP_BREAKER_OUTCOME_FAILURE, 0, T0_NS) == AP_OK);
    /* the probe of half-open generation 3, admitted in set-up */
    VF_CHECK(ap_breaker_allow(&s->b, T_OPEN, &s->probe, NULL) == AP_OK);
    VF_CHECK(s->probe.gen == 3 && s->probe.probe == 1);
    ap_breaker_stats_get(&s->b, &s->base);
    return s;
}

static void cr_thread(void *p, int id)
{
    cst *s = p;
    if (id == 0) { /* the probe succeeds: CLOSED, generation 4, window cleared */
        VF_CHECK(ap_breaker_record(&s->b, &s->probe, AP_BREAKER_OUTCOME_SUCCESS, 0, T_OPEN) == AP_OK);
        return;
    }
    /* a caller asks until admitted (rejected while half-open: K = 1 is
     * taken), then reports a failure into the CLOSED window of gen 4 */
    ap_breaker_permit pm;
    while (ap_breaker_allow(&s->b, T_OPEN, &pm, NULL) != AP_OK) {
        s->n_rej++;
        vf_yield();
    }
    s->cr_gen = (int)pm.gen;
    VF_CHECK(ap_breaker_record(&s->b, &pm, AP_BREAKER_OUTCOME_FAILURE, 0, T_OPEN) == AP_OK);
}

static void cr_check(void *p)
{
    cst *s = p;
    ap_breaker_stats st;
    ap_breaker_stats_get(&s->b, &st);
    VF_CHECK(ap_breaker_generation(&s->b) == 4 && s->cr_gen == 4 &&
             ap_breaker_state_at(&s->b, 0) == AP_BREAKER_STATE_CLOSED);
    /* the failure was admitted in gen 4 and gen 4 is current: it counts */
    VF_CHECK(st.stale == s->base.stale && st.failures == s->base.failures + 1 &&
                 st.successes == s->base.successes + 1,
             "a record of the current generation counted as stale (%llu stale, %llu failures)",
             (unsigned long long)(st.stale - s->base.stale),
             (unsigned long long)(st.failures - s->base.failures));
    /* the window of gen 4 holds exactly that failure: aggregate, ring, run */
    uint64_t a = atomic_load_explicit(&s->b.agg, memory_order_relaxed);
    VF_CHECK(a == (AP__BREAKER_EPOCH(4) | UINT64_C(1) << 32 | UINT64_C(1) << 16),
             "window aggregate %llx: not one failure of gen 4", (unsigned long long)a);
    int held = 0;
    for (int i = 0; i < WIN; i++) {
        uint64_t e = atomic_load_explicit(&s->b.slots[i], memory_order_relaxed);
        held += (e & 1u) && (uint32_t)(e >> 3) == 4u;
    }
    VF_CHECK(held == 1, "%d ring entries of gen 4 for 1 counted call", held);
    uint64_t c = atomic_load_explicit(&s->b.consec, memory_order_relaxed);
    VF_CHECK(c == (AP__BREAKER_EPOCH(4) | 1u), "failure run %llx", (unsigned long long)c);
}

static unsigned long run_cr(const char *name, bool tso)
{
    vf_scenario sc = {.name = name, .nthreads = 2, .tso = tso, .bound = 3,
                      .setup = cr_setup, .thread = cr_thread, .check = cr_check,
                      .teardown = cb_teardown};
    cb_K = 1;
    cb_consec = 3;
    unsigned long n = vf_explore(&sc);
    cb_consec = 0;
    return n;
}

int main(void)
{
    unsigned long total = 0;
    /* HALF_OPEN: K = 1 and K = 2, 3 threads */
    total += run_ho("breaker_ho_k1_ign_succ_fail", 1, I, S, F);
    total += run_ho("breaker_ho_k2_succ_succ_fail", 2, S, S, F);
    total += run_ho("breaker_ho_k2_ign_succ_succ", 2, I, S, S);
    total += run_ho("breaker_ho_k2_all_succ", 2, S, S, S);
    total += run_ho("breaker_ho_k1_can_succ_fail", 1, C, S, F);
    total += run_ho("breaker_ho_k2_can_succ_succ", 2, C, S, S);
    /* CLOSED, COUNT window: 2 threads x 2 calls */
    for (int tso = 0; tso <= 1; tso++) {
        total += run_cl(tso ? "breaker_closed_2of4_tso" : "breaker_closed_2of4", tso, F, S, S, F);
        total += run_cl(tso ? "breaker_closed_1of4_tso" : "breaker_closed_1of4", tso, S, F, S, S);
    }
    /* a probe closes the breaker (window cleared) while a caller records */
    total += run_cr("breaker_close_vs_record", false);
    total += run_cr("breaker_close_vs_record_tso", true);
    printf("verify_breaker: %lu executions\n", total);
    return 0;
}
