/*
 * verify_breaker_win.c -- the circuit breaker's lock-free CLOSED windows
 * (COUNT and TIME), its consecutive-failure run and the window clear, under
 * every interleaving within the preemption bound: SC, x86-TSO and (the
 * *_tso scenarios) the C11 mode of vf.h. verify_breaker.c covers the
 * half-open probes and a COUNT window without eviction; this file covers
 * the paths it does not run: the COUNT window's eviction (subtract, step 4
 * of ap__breaker_count_record), the consecutive-failure word
 * (ap__breaker_consec), a window clear (ap__breaker_clear_window, here by
 * ap_breaker_reset on a thread) racing records of the generation it ends,
 * and the TIME window's record, bucket move and help
 * (ap__breaker_time_record, ap__breaker_bucket_help) with a fake clock that
 * a thread advances.
 *
 * Scenarios (each a plain-SC one and a *_tso one; C11 runs the *_tso):
 *   bwin_count_evict    COUNT window 2, 2 threads x 2 records (F S / S S),
 *                       consecutive_failures 3: every record after the
 *                       second evicts one, the subtracts race the adds.
 *   bwin_count_reset    COUNT window 2, consecutive_failures 2. Set-up
 *                       records S, F (run 1) and takes two permits of
 *                       generation 1; T0 reports them (F: it would trip
 *                       generation 1, then S) while T1 resets the breaker
 *                       (a clear) and then records F, F in the new
 *                       generation: that generation must trip exactly at
 *                       T1's second failure, whatever T0's late records do.
 *   bwin_time           TIME window, 2 buckets of 100 ns; T0 records at
 *                       50 ns (S, F), T1 at 150 ns (S) and 250 ns (F): the
 *                       move of bucket 0 from epoch 0 to 2 races T0's adds
 *                       (T0 helps a move it finds half done).
 *   bwin_time_reset     TIME window as above, consecutive_failures 2.
 *                       T0 reports two permits of generation 1 (150 ns F,
 *                       250 ns S) while T1 resets, then records F at 150 ns
 *                       and F at 250 ns: the new window must hold exactly
 *                       T1's outcomes, and trip at the second.
 *   bwin_count_publish  T0 resets while T1 records F (set-up left S, F in
 *   bwin_time_publish   generation 1's window): a permit of the new
 *                       generation is counted in its window, never stale
 *                       (T1 reads the clear only through the state word's
 *                       release store: mutant BREAKER_STATE_RELAXED is
 *                       seen by the C11 mode only).
 *   bwin_count_reset3   3 threads (bound one less): T0 resets while T1 and
 *   bwin_time_reset3    T2 each record a failure, with permits of either
 *                       generation (an allow after a trip is rejected).
 *
 * Theorems checked:
 *   - after every step: a window (agg of the COUNT window, each clean bucket
 *     of the TIME window) tagged with generation g counts at most the
 *     records of g's permits started so far (so never one from an older
 *     window: nothing is counted in two windows), failures <= calls; a
 *     COUNT window being cleared (tagged with the generation not yet
 *     published) is empty;
 *   - a trip (CLOSED -> OPEN of generation g) happens only once the
 *     threshold is crossed: at least 2 failures of g started (the
 *     consecutive run and the rate both need 2 here), and, where a thread
 *     records 2 failures in a row as the only records of a generation, the
 *     trip has happened when its second record returns (exactly there);
 *     at the end, the current window's generation tripped if all its
 *     records (>= 2) are failures, and did not if it has fewer failures
 *     than any threshold;
 *   - at the end: the current window equals a sequential one: COUNT: agg ==
 *     the sum of the ring's entries tagged g and holds min(n, window)
 *     outcomes of g's n records; TIME: tnew and every bucket (key epoch,
 *     calls, failures) equal those of the single-threaded window fed g's
 *     records in some order that keeps each thread's order; stats are
 *     conserved (allowed == successes + failures + stale == permits
 *     reported, rejected == rejections, successes and failures at most
 *     those reported), a generation's own records after its clear are
 *     never stale (stale <= records of older permits; none without a
 *     reset); the callback ran once per transition and the log chains.
 *
 * The counters are plain ints: the "threads" are coroutines on one OS
 * thread, and test code has no scheduling points.
 */
#include "vf.h"
#include "asyncpat/circuit_breaker.h"

#define MAXGEN 8
#define MAXOPS 3
#define BW 100 /* TIME: bucket width, ns */
#define NB 2   /* TIME: buckets */
#define BUFN 4 /* window / buckets at most */
#define NT 3   /* threads at most */

enum { S = AP_BREAKER_OUTCOME_SUCCESS, F = AP_BREAKER_OUTCOME_FAILURE };

/* one operation of a thread: 'r' allow and record (out, now), 'p' report
 * set-up permit #pre (out, now), 'x' ap_breaker_reset */
typedef struct wop {
    char kind;
    int out;
    uint64_t now;
    int pre;
} wop;

typedef struct wcfg {
    const char *name;
    ap_breaker_window win;
    uint32_t consec; /* consecutive_failures */
    int nsetup;      /* set-up: allow + record these at gen 1 */
    wop setup[2];
    int npre;        /* set-up: permits of gen 1 taken for 'p' ops */
    int nthreads;    /* 0: 2 */
    int nops[NT];
    wop ops[NT][MAXOPS];
    bool must_trip; /* T1's reset opens a generation T1's F, F must trip */
} wcfg;

static const wcfg *cfg;

typedef struct wst {
    ap_breaker b;
    uint64_t buf[AP_BREAKER_BYTES(BUFN, 1) / sizeof(uint64_t)];
    /* transition log, by the new generation (from the callback) */
    bool ev_seen[MAXGEN];
    int ev_from[MAXGEN], ev_to[MAXGEN], ev_tid[MAXGEN];
    int nev;
    int started[MAXGEN], fstarted[MAXGEN]; /* records started, by permit gen */
    int n_allow, n_rej, n_rec, n_fail;
    ap_breaker_permit pre[2];
    /* records of each thread, in program order: gen, outcome, now */
    int nrec[NT];
    uint64_t rgen[NT][MAXOPS], rnow[NT][MAXOPS];
    int rout[NT][MAXOPS];
    uint64_t reset_gen; /* the generation the reset opened (0: none) */
    int reset_tid;      /* the thread that reset */
} wst;

static void w_log(void *ctx, ap_breaker_state from, ap_breaker_state to, uint64_t gen)
{
    wst *s = ctx;
    VF_CHECK(gen >= 2 && gen < MAXGEN, "generation %llu", (unsigned long long)gen);
    VF_CHECK(!s->ev_seen[gen], "the callback of generation %llu ran twice",
             (unsigned long long)gen);
    s->ev_seen[gen] = true;
    s->ev_from[gen] = (int)from;
    s->ev_to[gen] = (int)to;
    s->ev_tid[gen] = vf_self();
    s->nev++;
    if (from == AP_BREAKER_STATE_CLOSED && to == AP_BREAKER_STATE_OPEN)
        /* no trip before the threshold: 2 failures of that generation */
        VF_CHECK(s->fstarted[gen - 1] >= 2,
                 "generation %llu tripped with %d failures of it started",
                 (unsigned long long)(gen - 1), s->fstarted[gen - 1]);
}

static void *w_setup(void)
{
    size_t sz = (sizeof(wst) + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    wst *s = aligned_alloc(AP_CACHELINE, sz);
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    ap_breaker_desc d = {.window = cfg->win,
                         .window_size = 2,
                         .window_ns = NB * BW,
                         .buckets = NB,
                         /* COUNT: both entries failures trip (rate 100 %);
                          * TIME: the rates never trip (min_calls 100) */
                         .min_calls = cfg->win == AP_BREAKER_WINDOW_COUNT ? 2 : 100,
                         .failure_rate_pct = 100,
                         .consecutive_failures = cfg->consec,
                         .open_ns = 1000000,
                         .half_open_probes = 1,
                         .on_change = w_log,
                         .ctx = s};
    VF_CHECK(ap_breaker_bytes(&d) <= sizeof s->buf);
    VF_CHECK(ap_breaker_init(&s->b, s->buf, sizeof s->buf, &d) == AP_OK);
    /* no scheduling points outside the threads */
    for (int i = 0; i < cfg->nsetup; i++) {
        ap_breaker_permit p;
        VF_CHECK(ap_breaker_allow(&s->b, cfg->setup[i].now, &p, NULL) == AP_OK && p.gen == 1);
        s->n_allow++;
        s->started[1]++, s->n_rec++;
        if (cfg->setup[i].out == F)
            s->fstarted[1]++, s->n_fail++;
        VF_CHECK(ap_breaker_record(&s->b, &p, (ap_breaker_outcome)cfg->setup[i].out, 0,
                                   cfg->setup[i].now) == AP_OK);
    }
    for (int i = 0; i < cfg->npre; i++) {
        VF_CHECK(ap_breaker_allow(&s->b, 0, &s->pre[i], NULL) == AP_OK && s->pre[i].gen == 1);
        s->n_allow++;
    }
    VF_CHECK(ap_breaker_generation(&s->b) == 1);
    return s;
}

static void w_teardown(void *p)
{
    wst *s = p;
    ap_breaker_fini(&s->b);
    free(s);
}

static void w_record(wst *s, int id, ap_breaker_permit *pm, int out, uint64_t now)
{
    uint64_t g = pm->gen;
    VF_CHECK(g >= 1 && g < MAXGEN && s->nrec[id] < MAXOPS);
    s->started[g]++, s->n_rec++;
    if (out == F)
        s->fstarted[g]++, s->n_fail++;
    int k = s->nrec[id]++;
    s->rgen[id][k] = g, s->rnow[id][k] = now, s->rout[id][k] = out;
    VF_CHECK(ap_breaker_record(&s->b, pm, (ap_breaker_outcome)out, 0, now) == AP_OK);
    VF_CHECK(pm->gen == 0, "the record did not consume the permit");
}

static void w_thread(void *p, int id)
{
    wst *s = p;
    for (int i = 0; i < cfg->nops[id]; i++) {
        const wop *o = &cfg->ops[id][i];
        if (o->kind == 'x') {
            ap_breaker_reset(&s->b);
            /* the generation it opened: the callback logged it (plain data) */
            for (int g = MAXGEN - 1; g >= 2; g--)
                if (s->ev_seen[g] && s->ev_tid[g] == id &&
                    s->ev_to[g] == AP_BREAKER_STATE_CLOSED) {
                    s->reset_gen = (uint64_t)g;
                    s->reset_tid = id;
                    break;
                }
            VF_CHECK(s->reset_gen >= 2, "no callback for the reset");
        } else if (o->kind == 'p') {
            w_record(s, id, &s->pre[o->pre], o->out, o->now);
        } else {
            ap_breaker_permit pm;
            ap_status r = ap_breaker_allow(&s->b, o->now, &pm, NULL);
            if (r == AP_REJECTED) {
                /* OPEN: a trip came first (3 threads: the set-up's window
                 * and another thread's failure). After its own reset
                 * nothing but its own records can trip the generation. */
                VF_CHECK(!(s->reset_gen && s->reset_tid == id),
                         "T%d rejected after its own reset", id);
                s->n_rej++;
                continue;
            }
            VF_CHECK(r == AP_OK, "allow: %d", (int)r);
            s->n_allow++;
            /* its own reset happens-before its allow (another thread's
             * allow may read an older state word) */
            if (s->reset_gen && s->reset_tid == id)
                VF_CHECK(pm.gen == s->reset_gen, "T%d: a permit of gen %llu after its reset opened %llu",
                         id, (unsigned long long)pm.gen, (unsigned long long)s->reset_gen);
            w_record(s, id, &pm, o->out, o->now);
        }
    }
    if (cfg->must_trip && id == 1) {
        /* T1's two failures are the only records of reset_gen: the trip
         * is done by its second record, before that record returns */
        uint64_t g = s->reset_gen;
        VF_CHECK(g >= 2 && g + 1 < MAXGEN && s->ev_seen[g + 1] &&
                     s->ev_to[g + 1] == AP_BREAKER_STATE_OPEN && s->ev_tid[g + 1] == 1,
                 "generation %llu (2 failures) not tripped when T1's second record returned",
                 (unsigned long long)g);
    }
}

/* the generation whose 16-bit epoch tag is @tag, among those so far */
static int w_gen_of(uint64_t tag, int cur)
{
    for (int g = 1; g <= cur + 1 && g < MAXGEN; g++)
        if (AP__BREAKER_EPOCH((uint64_t)g) == tag)
            return g;
    return -1;
}

static void w_invariant(void *p)
{
    wst *s = p;
    int cur = (int)(atomic_load_explicit(&s->b.state, memory_order_relaxed) >> 3);
    VF_CHECK(cur >= 1 && cur < MAXGEN);
    if (cfg->win == AP_BREAKER_WINDOW_COUNT) {
        uint64_t a = atomic_load_explicit(&s->b.agg, memory_order_relaxed);
        int g = w_gen_of(a & AP__BREAKER_EPOCH_MASK, cur);
        uint64_t calls = AP__BREAKER_F16(a, 32), fails = AP__BREAKER_F16(a, 16);
        VF_CHECK(g >= 1, "agg %llx: an unknown epoch", (unsigned long long)a);
        /* (calls may exceed the window by the adds not yet evicted) */
        VF_CHECK(fails <= calls && AP__BREAKER_F16(a, 0) == 0,
                 "agg: %llu failures of %llu calls", (unsigned long long)fails,
                 (unsigned long long)calls);
        VF_CHECK(calls <= (uint64_t)s->started[g] && fails <= (uint64_t)s->fstarted[g],
                 "the window of gen %d counts %llu calls (%llu failures), %d (%d) started", g,
                 (unsigned long long)calls, (unsigned long long)fails, s->started[g],
                 s->fstarted[g]);
    } else {
        for (int i = 0; i < NB; i++) {
            uint64_t key = atomic_load_explicit(&s->b.bkt[i].key, memory_order_relaxed);
            uint64_t c = atomic_load_explicit(&s->b.bkt[i].cnt, memory_order_relaxed);
            int g = w_gen_of(key & AP__BREAKER_EPOCH_MASK, cur);
            VF_CHECK(g >= 1, "bucket %d key %llx: an unknown generation", i,
                     (unsigned long long)key);
            VF_CHECK(AP__BREAKER_C_FAILS(c) <= AP__BREAKER_C_CALLS(c) && AP__BREAKER_C_SLOW(c) == 0,
                     "bucket %d: %llu failures of %llu calls", i,
                     (unsigned long long)AP__BREAKER_C_FAILS(c),
                     (unsigned long long)AP__BREAKER_C_CALLS(c));
            /* a clean bucket of a published generation counts only its
             * own records (while the clear of cur + 1 runs, its keys are
             * written before its counts are emptied: not yet published) */
            if (!(key & AP__BREAKER_KFLAG) && g <= cur)
                VF_CHECK(AP__BREAKER_C_CALLS(c) <= (uint64_t)s->started[g] &&
                             AP__BREAKER_C_FAILS(c) <= (uint64_t)s->fstarted[g],
                         "bucket %d of gen %d counts %llu calls (%llu failures), %d (%d) started",
                         i, g, (unsigned long long)AP__BREAKER_C_CALLS(c),
                         (unsigned long long)AP__BREAKER_C_FAILS(c), s->started[g],
                         s->fstarted[g]);
        }
    }
}

/* ---- the single-threaded TIME window, for the final check ---- */

typedef struct mwin {
    uint64_t newest;
    uint64_t ep[NB];
    uint64_t calls[NB], fails[NB];
} mwin;

static void m_record(mwin *m, uint64_t now, bool fail)
{
    uint64_t k = now / BW;
    if (k < m->newest)
        k = m->newest; /* an older now counts in the newest bucket */
    m->newest = k;
    int i = (int)(k % NB);
    if (m->ep[i] != k) { /* the bucket moves on: its old epoch expired */
        m->ep[i] = k;
        m->calls[i] = m->fails[i] = 0;
    }
    m->calls[i]++;
    m->fails[i] += fail;
}

/* the records of gen g, per thread in program order */
typedef struct mseq {
    int nt, n[NT];
    uint64_t now[NT][MAXOPS];
    bool fail[NT][MAXOPS];
} mseq;

/* Is @want the window after g's records in some order that keeps each
 * thread's order? (at[t]: records of thread t taken so far) */
static bool m_some_order(const mseq *q, mwin m, int *at, const mwin *want)
{
    bool all = true;
    for (int t = 0; t < q->nt; t++) {
        if (at[t] == q->n[t])
            continue;
        all = false;
        mwin x = m;
        m_record(&x, q->now[t][at[t]], q->fail[t][at[t]]);
        at[t]++;
        bool ok = m_some_order(q, x, at, want);
        at[t]--;
        if (ok)
            return true;
    }
    return all && memcmp(&m, want, sizeof m) == 0;
}

static void w_check(void *p)
{
    wst *s = p;
    const int nth = cfg->nthreads ? cfg->nthreads : 2;
    int G = (int)ap_breaker_generation(&s->b);
    ap_breaker_stats st;
    ap_breaker_stats_get(&s->b, &st);
    VF_CHECK(G >= 1 && G < MAXGEN);
    /* the callback ran exactly once per transition, and the log chains */
    VF_CHECK(s->nev == G - 1 && st.transitions == (uint64_t)(G - 1), "%d callbacks for %d transitions",
             s->nev, G - 1);
    for (int g = 2; g <= G; g++) {
        VF_CHECK(s->ev_seen[g], "no callback for generation %d", g);
        int prev = g == 2 ? AP_BREAKER_STATE_CLOSED : s->ev_to[g - 1];
        VF_CHECK(s->ev_from[g] == prev, "gen %d: from %d, but gen %d was %d", g, s->ev_from[g],
                 g - 1, prev);
        VF_CHECK((s->ev_from[g] == AP_BREAKER_STATE_CLOSED && s->ev_to[g] == AP_BREAKER_STATE_OPEN) ||
                     s->ev_to[g] == AP_BREAKER_STATE_CLOSED,
                 "gen %d: %d -> %d", g, s->ev_from[g], s->ev_to[g]);
    }
    /* conservation: every record counted once, as an outcome or stale */
    VF_CHECK(st.allowed == (uint64_t)s->n_allow && st.rejected == (uint64_t)s->n_rej &&
             st.ignored == 0 &&
             st.canceled == 0 && st.slow == 0);
    VF_CHECK(s->n_rec == s->n_allow, "every permit is reported exactly once");
    VF_CHECK(st.allowed == st.successes + st.failures + st.stale,
             "allowed %llu != %llu + %llu + %llu stale", (unsigned long long)st.allowed,
             (unsigned long long)st.successes, (unsigned long long)st.failures,
             (unsigned long long)st.stale);
    VF_CHECK(st.failures <= (uint64_t)s->n_fail &&
                 st.successes <= (uint64_t)(s->n_rec - s->n_fail),
             "stats: %llu failures, %llu successes of %d, %d recorded",
             (unsigned long long)st.failures, (unsigned long long)st.successes, s->n_fail,
             s->n_rec - s->n_fail);
    /* the generation of the window now: the last CLOSED one */
    int W = G;
    while (W > 1 && s->ev_to[W] != AP_BREAKER_STATE_CLOSED)
        W--;
    /* records of W's permits: W's window was never cleared under them */
    int nW = 0, fW = 0;
    mseq q;
    memset(&q, 0, sizeof q);
    q.nt = nth;
    for (int t = 0; t < nth; t++)
        for (int k = 0; k < s->nrec[t]; k++)
            if (s->rgen[t][k] == (uint64_t)W) {
                q.now[t][q.n[t]] = s->rnow[t][k];
                q.fail[t][q.n[t]++] = s->rout[t][k] == F;
                nW++;
                fW += s->rout[t][k] == F;
            }
    if (W == 1) /* the set-up's records are gen 1's too */
        for (int i = 0; i < cfg->nsetup; i++)
            nW++, fW += cfg->setup[i].out == F;
    if (s->reset_gen) {
        VF_CHECK(W == (int)s->reset_gen, "the window is gen %d's, T1's reset opened %llu", W,
                 (unsigned long long)s->reset_gen);
        /* only the records before the reset can be stale */
        int old = 0;
        for (int t = 0; t < nth; t++)
            for (int k = 0; k < s->nrec[t]; k++)
                old += s->rgen[t][k] < (uint64_t)W;
        VF_CHECK(st.stale <= (uint64_t)old, "%llu stale of %d older records",
                 (unsigned long long)st.stale, old);
    } else {
        VF_CHECK(st.stale == 0, "%llu stale records with no transition",
                 (unsigned long long)st.stale);
    }
    /* W trips iff its records cross a threshold: the consecutive run
     * (consec), or (COUNT, window 2, rate 100 %) two failures in the
     * window. All of W's records failures, at least 2 (and consec <= 2 or
     * the COUNT rate): it must trip; fewer failures than any threshold
     * allows: it must not; otherwise it depends on the order. */
    bool count_rate = cfg->win == AP_BREAKER_WINDOW_COUNT;
    bool must = cfg->must_trip || (fW == nW && fW >= 2 && (count_rate || cfg->consec == 2));
    bool may = (count_rate && fW >= 2) || (cfg->consec && fW >= (int)cfg->consec);
    if (must)
        VF_CHECK(G == W + 1 && s->ev_to[G] == AP_BREAKER_STATE_OPEN,
                 "generation %d with %d failures of %d records did not trip (final gen %d)", W,
                 fW, nW, G);
    else if (!may)
        VF_CHECK(G == W, "generation %d tripped with %d failures of %d records", W, fW, nW);
    else
        VF_CHECK(G == W || (G == W + 1 && s->ev_to[G] == AP_BREAKER_STATE_OPEN));
    if (cfg->win == AP_BREAKER_WINDOW_COUNT) {
        uint64_t a = atomic_load_explicit(&s->b.agg, memory_order_relaxed);
        uint64_t calls = 0, fails = 0;
        for (int i = 0; i < 2; i++) {
            uint64_t e = atomic_load_explicit(&s->b.slots[i], memory_order_relaxed);
            if ((e & 1u) && (uint32_t)(e >> 3) == (uint32_t)W)
                calls++, fails += (e >> 1) & 1u;
        }
        uint64_t want = AP__BREAKER_EPOCH((uint64_t)W) | calls << 32 | fails << 16;
        VF_CHECK(a == want, "agg %llx, the ring of gen %d says %llx", (unsigned long long)a, W,
                 (unsigned long long)want);
        VF_CHECK(calls == (uint64_t)(nW < 2 ? nW : 2) && fails <= (uint64_t)fW,
                 "the window of gen %d holds %llu calls (%llu failures) of %d (%d)", W,
                 (unsigned long long)calls, (unsigned long long)fails, nW, fW);
    } else {
        VF_CHECK(cfg->nsetup == 0 || W > 1);
        mwin want;
        memset(&want, 0, sizeof want);
        uint64_t t = atomic_load_explicit(&s->b.tnew, memory_order_relaxed);
        VF_CHECK((t & AP__BREAKER_EPOCH_MASK) == AP__BREAKER_EPOCH((uint64_t)W), "tnew %llx",
                 (unsigned long long)t);
        want.newest = t & AP__BREAKER_EP_MASK;
        for (int i = 0; i < NB; i++) {
            uint64_t key = atomic_load_explicit(&s->b.bkt[i].key, memory_order_relaxed);
            uint64_t c = atomic_load_explicit(&s->b.bkt[i].cnt, memory_order_relaxed);
            VF_CHECK((key & (AP__BREAKER_EPOCH_MASK | AP__BREAKER_KFLAG)) ==
                         AP__BREAKER_EPOCH((uint64_t)W),
                     "bucket %d key %llx at the end (gen %d)", i, (unsigned long long)key, W);
            want.ep[i] = key & AP__BREAKER_EP_MASK;
            want.calls[i] = AP__BREAKER_C_CALLS(c);
            want.fails[i] = AP__BREAKER_C_FAILS(c);
        }
        mwin m0;
        memset(&m0, 0, sizeof m0);
        int at[NT] = {0};
        VF_CHECK(m_some_order(&q, m0, at, &want),
                 "gen %d's TIME window (newest %llu; bucket 0: epoch %llu %llu/%llu, bucket 1: "
                 "epoch %llu %llu/%llu) is no single-threaded order of its %d records",
                 W, (unsigned long long)want.newest, (unsigned long long)want.ep[0],
                 (unsigned long long)want.fails[0], (unsigned long long)want.calls[0],
                 (unsigned long long)want.ep[1], (unsigned long long)want.fails[1],
                 (unsigned long long)want.calls[1], nW);
    }
}

static unsigned long run(const wcfg *c, bool tso, int bound)
{
    char name[64];
    snprintf(name, sizeof name, "%s%s", c->name, tso ? "_tso" : "");
    vf_scenario sc = {.name = name, .nthreads = c->nthreads ? c->nthreads : 2, .tso = tso, .bound = bound,
                      .setup = w_setup, .thread = w_thread, .invariant = w_invariant,
                      .check = w_check, .teardown = w_teardown};
    cfg = c;
    return vf_explore(&sc);
}

static const wcfg count_evict = {
    .name = "bwin_count_evict", .win = AP_BREAKER_WINDOW_COUNT, .consec = 3,
    .nops = {2, 2},
    .ops = {{{'r', F, 0, 0}, {'r', S, 0, 0}}, {{'r', S, 0, 0}, {'r', S, 0, 0}}}};

static const wcfg count_reset = {
    .name = "bwin_count_reset", .win = AP_BREAKER_WINDOW_COUNT, .consec = 2,
    .nsetup = 2, .setup = {{'r', S, 0, 0}, {'r', F, 0, 0}}, .npre = 2,
    .nops = {2, 3},
    .ops = {{{'p', F, 0, 0}, {'p', S, 0, 1}}, {{'x', 0, 0, 0}, {'r', F, 0, 0}, {'r', F, 0, 0}}},
    .must_trip = true};

static const wcfg time_move = {
    .name = "bwin_time", .win = AP_BREAKER_WINDOW_TIME, .consec = 3,
    .nops = {2, 2},
    .ops = {{{'r', S, 50, 0}, {'r', F, 50, 0}}, {{'r', S, 150, 0}, {'r', F, 250, 0}}}};

static const wcfg time_reset = {
    .name = "bwin_time_reset", .win = AP_BREAKER_WINDOW_TIME, .consec = 2,
    .npre = 2,
    .nops = {2, 3},
    .ops = {{{'p', F, 150, 0}, {'p', S, 250, 1}},
            {{'x', 0, 0, 0}, {'r', F, 150, 0}, {'r', F, 250, 0}}},
    .must_trip = true};

static const wcfg count_publish = {
    .name = "bwin_count_publish", .win = AP_BREAKER_WINDOW_COUNT, .consec = 2,
    .nsetup = 2, .setup = {{'r', S, 0, 0}, {'r', F, 0, 0}},
    .nops = {1, 1},
    .ops = {{{'x', 0, 0, 0}}, {{'r', F, 0, 0}}}};

static const wcfg time_publish = {
    .name = "bwin_time_publish", .win = AP_BREAKER_WINDOW_TIME, .consec = 2,
    .nsetup = 2, .setup = {{'r', S, 50, 0}, {'r', F, 50, 0}},
    .nops = {1, 1},
    .ops = {{{'x', 0, 0, 0}}, {{'r', F, 150, 0}}}};

/* preemption bounds (C11 mode: one less, vf.h). Default: SC+TSO 375k
 * executions, C11 64k, about 1 s each. VF_LONG (which also gives the C11
 * mode 2 stale reads and the scenario's whole bound): one more for the
 * COUNT window's 2-thread scenarios, the others as they are: C11 11.8M
 * executions in about 100 s (one more for TIME too: well over 5 min). */
#define BWIN_BOUND 3
#ifdef VF_LONG
#define BWIN_BOUND_COUNT 4
#else
#define BWIN_BOUND_COUNT 3
#endif

/* three threads: T0 resets while T1 and T2 record failures at 150 and
 * 250 ns (each permit of the old generation or of the new one) and set-up
 * left a success and a failure in generation 1's window */
static const wcfg time_reset3 = {
    .name = "bwin_time_reset3", .win = AP_BREAKER_WINDOW_TIME, .consec = 2, .nthreads = 3,
    .nsetup = 2, .setup = {{'r', S, 50, 0}, {'r', F, 50, 0}},
    .nops = {1, 1, 1},
    .ops = {{{'x', 0, 0, 0}}, {{'r', F, 150, 0}}, {{'r', F, 250, 0}}}};

static const wcfg count_reset3 = {
    .name = "bwin_count_reset3", .win = AP_BREAKER_WINDOW_COUNT, .consec = 2, .nthreads = 3,
    .nsetup = 2, .setup = {{'r', S, 0, 0}, {'r', S, 0, 0}},
    .nops = {1, 1, 1},
    .ops = {{{'x', 0, 0, 0}}, {{'r', F, 0, 0}}, {{'r', F, 0, 0}}}};

int main(void)
{
    unsigned long total = 0;
    const wcfg *all[] = {&count_evict, &count_reset, &count_publish,
                         &time_move,   &time_reset,  &time_publish};
    for (unsigned i = 0; i < sizeof all / sizeof *all; i++)
        for (int tso = 0; tso <= 1; tso++)
            total += run(all[i], tso,
                         all[i]->win == AP_BREAKER_WINDOW_COUNT ? BWIN_BOUND_COUNT : BWIN_BOUND);
    const wcfg *three[] = {&count_reset3, &time_reset3};
    for (unsigned i = 0; i < sizeof three / sizeof *three; i++)
        for (int tso = 0; tso <= 1; tso++)
            total += run(three[i], tso, BWIN_BOUND - 1);
    printf("verify_breaker_win: %lu executions\n", total);
    return 0;
}
