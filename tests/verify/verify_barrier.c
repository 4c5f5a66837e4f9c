/*
 * verify_barrier.c -- the cyclic barrier under every interleaving within the
 * preemption bound, in SC and x86-TSO modes.
 *
 * Theorems: no party leaves generation g before every party expected at g
 * has arrived; the completion fn runs exactly once per generation, on that
 * generation's leader (exactly one per generation), before any party of
 * the generation is released; every waiting party is woken (the lost-wakeup
 * detector fails the run otherwise); the generation counter ends at the
 * number of completed generations. arrive_and_drop counts as an arrival
 * and shrinks later generations. A cancelled wait racing with the last
 * arrival ends in one of the documented outcomes (WITHDRAW: passed with
 * AP_OK, or withdrawn and re-arrived; BREAK: everybody AP_OK, or the
 * barrier broken and everybody AP_CANCELED), and a cancelled future is
 * never woken after its cancel returned.
 *
 * The counters below are plain ints: the "threads" are coroutines on one
 * OS thread, and test code has no scheduling points.
 */
#include "vf.h"
#include "asyncpat/barrier.h"

#define NGEN 2

typedef struct bst {
    ap_barrier b;
    int parties;        /* at init */
    int expected[NGEN]; /* parties generation g waits for */
    int arrivals[NGEN]; /* incremented just before a party arrives at g */
    int exits[NGEN];    /* parties that returned AP_OK from g */
    int waited[NGEN];   /* of them, the non-leaders (they read the release) */
    int leaders[NGEN];  /* AP_OK waits with is_leader, or completing drops */
    int leader_by[NGEN];
    int fn_runs;
    int fn_by[NGEN];
    _Atomic int fn_point; /* a scheduling point inside fn */
    uint32_t last_gen;  /* invariant: the generation never goes back */
    /* cancel scenarios */
    int f0_status;      /* status of thread 0's first (cancelled) future */
    bool f0_undid, f0_ready_first, f0_cancel_done;
    int f0_wakes;
    int t1_status;
    /* Futures live here, one per (thread, use), never on a coroutine's
     * stack: in TSO mode a thread's buffered relaxed store to its waiter
     * node (a relaxed IDLE store of waitlist.h) can flush after the frame is gone and
     * land on whatever plain data reuses that stack slot (vf.h does not
     * buffer plain stores), which real x86 would order FIFO. */
    ap_barrier_wait_fut fut[VF_MAX_THREADS][NGEN + 1];
} bst;

/* scenario parameters */
static int bar_parties;
static ap_barrier_policy bar_policy;
static int bar_mode; /* which thread body */
enum { MODE_WAIT, MODE_DROP0, MODE_DROP1, MODE_CANCEL };

static void bar_fn(void *ctx)
{
    bst *s = ctx;
    int g = s->fn_runs;
    VF_CHECK(g < NGEN, "fn ran %d times", g + 1);
    VF_CHECK(s->arrivals[g] == s->expected[g], "fn of generation %d ran after %d of %d arrivals",
             g, s->arrivals[g], s->expected[g]);
    /* a scheduling point inside fn: others may run while the leader is in
     * it, and must not be released before it returns */
    (void)AP_ATOMIC_LOAD(&s->fn_point, memory_order_relaxed);
    VF_CHECK(s->exits[g] == 0, "fn of generation %d ran after %d parties were released", g,
             s->exits[g]);
    s->fn_runs++;
    s->fn_by[g] = vf_self();
}

static void *bar_setup(void)
{
    bst *s = aligned_alloc(AP_CACHELINE, (sizeof(bst) + AP_CACHELINE - 1) / AP_CACHELINE *
                                             AP_CACHELINE);
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    s->parties = bar_parties;
    for (int g = 0; g < NGEN; g++) {
        s->expected[g] = bar_parties;
        s->fn_by[g] = s->leader_by[g] = -1;
    }
    if (bar_mode == MODE_DROP0) /* thread n-1 drops at generation 0 */
        s->expected[1] = bar_parties - 1;
    VF_CHECK(ap_barrier_init(&s->b, (uint32_t)bar_parties, bar_policy, bar_fn, s) == AP_OK);
    s->f0_status = s->t1_status = -1;
    return s;
}

static void bar_teardown(void *p)
{
    bst *s = p;
    ap_barrier_fini(&s->b);
    free(s);
}

/* One wait at generation g through a future; checks what a released party
 * may assume. */
static void bar_wait_gen(bst *s, int id, int g, int use)
{
    ap_barrier_wait_fut *f = &s->fut[id][use];
    s->arrivals[g]++;
    ap_barrier_wait_fut_init(f, &s->b);
    vf_wait(&f->base);
    VF_CHECK(ap_barrier_wait_status(f) == AP_OK, "T%d gen %d: status %d", id, g,
             ap_barrier_wait_status(f));
    VF_CHECK(s->arrivals[g] == s->expected[g], "T%d left generation %d after %d of %d arrivals",
             id, g, s->arrivals[g], s->expected[g]);
    VF_CHECK(s->fn_runs == g + 1, "T%d released from generation %d with fn run %d times", id, g,
             s->fn_runs);
    s->exits[g]++;
    s->waited[g] += !f->is_leader;
    if (f->is_leader) {
        s->leaders[g]++;
        s->leader_by[g] = id;
        VF_CHECK(s->fn_by[g] == id, "leader T%d of gen %d, but fn ran on T%d", id, g,
                 s->fn_by[g]);
    }
}

static void bar_drop_gen(bst *s, int id, int g)
{
    bool leader = false;
    s->arrivals[g]++;
    VF_CHECK(ap_barrier_arrive_and_drop(&s->b, &leader) == AP_OK);
    if (leader) {
        s->leaders[g]++;
        s->leader_by[g] = id;
        /* >=: a dropped party is not needed for generation g + 1, which
         * may complete before the drop returns */
        VF_CHECK(s->fn_runs >= g + 1, "a completing drop returned with fn run %d times",
                 s->fn_runs);
        VF_CHECK(s->fn_by[g] == id);
    }
}

/* ---- the cancel race: thread 0 polls once, then cancels ---- */

static void f0_wake(void *ctx)
{
    bst *s = ctx;
    VF_CHECK(!s->f0_cancel_done, "a cancelled future was woken after its cancel returned");
    VF_CHECK(!s->f0_ready_first, "a future was woken after its poll returned READY");
    s->f0_wakes++;
}

static void bar_cancel_t0(bst *s)
{
    ap_barrier_wait_fut *f = &s->fut[0][0];
    s->arrivals[0]++;
    ap_barrier_wait_fut_init(f, &s->b);
    ap_cx cx = {{f0_wake, s}, vf_now(), UINT64_MAX};
    if (ap_barrier_wait_poll(f, &cx) == AP_READY) {
        /* we arrived last and led, or the last arrival completed the
         * generation between our arrival and our re-check */
        VF_CHECK(ap_barrier_wait_status(f) == AP_OK);
        s->f0_ready_first = true;
    } else {
        ap_barrier_wait_cancel(f);
        s->f0_cancel_done = true;
        ap_barrier_wait_cancel(f); /* idempotent */
    }
    ap_status st = ap_barrier_wait_status(f);
    s->f0_status = st;
    s->f0_undid = f->undid;
    if (st == AP_OK) {
        /* passed: our generation completed (before or during the cancel) */
        VF_CHECK(!f->undid);
        VF_CHECK(s->arrivals[0] == s->expected[0]);
        VF_CHECK(s->fn_runs == 1, "T0 passed with fn run %d times", s->fn_runs);
        s->exits[0]++;
        s->waited[0] += !f->is_leader;
        if (f->is_leader) {
            s->leaders[0]++;
            s->leader_by[0] = 0;
        }
        return;
    }
    VF_CHECK(st == AP_CANCELED, "T0 cancel: status %d", st);
    VF_CHECK(f->undid, "WITHDRAW/BREAK cancel reported CANCELED without undoing anything");
    if (bar_policy == AP_BARRIER_POLICY_BREAK) {
        VF_CHECK(ap_barrier_is_broken(&s->b));
        return; /* the arrival is gone with the break */
    }
    /* WITHDRAW: our arrival was taken back; arrive again, the generation
     * then completes */
    s->arrivals[0]--;
    bar_wait_gen(s, 0, 0, 1);
}

static void bar_cancel_other(bst *s, int id)
{
    ap_barrier_wait_fut *f = &s->fut[id][0];
    s->arrivals[0]++;
    ap_barrier_wait_fut_init(f, &s->b);
    vf_wait(&f->base);
    ap_status st = ap_barrier_wait_status(f);
    if (id == 1)
        s->t1_status = st;
    if (st == AP_CANCELED) {
        VF_CHECK(bar_policy == AP_BARRIER_POLICY_BREAK, "T%d canceled under WITHDRAW", id);
        VF_CHECK(ap_barrier_is_broken(&s->b));
        VF_CHECK(s->fn_runs == 0);
        return;
    }
    VF_CHECK(st == AP_OK, "T%d: status %d", id, st);
    VF_CHECK(s->arrivals[0] == s->expected[0], "T%d left after %d of %d arrivals", id,
             s->arrivals[0], s->expected[0]);
    VF_CHECK(s->fn_runs == 1);
    s->exits[0]++;
    s->waited[0] += !f->is_leader;
    if (f->is_leader) {
        s->leaders[0]++;
        s->leader_by[0] = id;
        VF_CHECK(s->fn_by[0] == id);
    }
}

static void bar_thread(void *p, int id)
{
    bst *s = p;
    int last = bar_parties - 1;
    switch (bar_mode) {
    case MODE_WAIT:
        for (int g = 0; g < NGEN; g++)
            bar_wait_gen(s, id, g, g);
        break;
    case MODE_DROP0: /* the last thread drops at once (arrives at gen 0) */
        if (id == last) {
            bar_drop_gen(s, id, 0);
        } else {
            for (int g = 0; g < NGEN; g++)
                bar_wait_gen(s, id, g, g);
        }
        break;
    case MODE_DROP1: /* the last thread waits at gen 0, then drops at gen 1 */
        bar_wait_gen(s, id, 0, 0);
        if (id == last)
            bar_drop_gen(s, id, 1);
        else
            bar_wait_gen(s, id, 1, 1);
        break;
    case MODE_CANCEL:
        if (id == 0)
            bar_cancel_t0(s);
        else
            bar_cancel_other(s, id);
        break;
    }
}

static void bar_invariant(void *p)
{
    bst *s = p;
    uint64_t w = atomic_load_explicit(&s->b.state, memory_order_relaxed);
    uint32_t gen = ap__bar_gen(w);
    VF_CHECK(gen >= s->last_gen, "generation went back from %u to %u", s->last_gen, gen);
    s->last_gen = gen;
    VF_CHECK(ap__bar_arrived(w) <= ap__bar_parties(w), "arrived %u > parties %u",
             ap__bar_arrived(w), ap__bar_parties(w));
    /* the leader runs fn, then stores the next generation */
    VF_CHECK((int)gen == s->fn_runs || (int)gen + 1 == s->fn_runs,
             "generation %u with fn run %d times", gen, s->fn_runs);
    /* a waiter left g only after the leader's release reached memory (the
     * leader itself may run ahead of its own store buffer in TSO) */
    for (int g = 0; g < NGEN; g++)
        VF_CHECK(s->waited[g] == 0 || gen > (uint32_t)g,
                 "a waiter left generation %d while the word says generation %u", g, gen);
}

static void bar_check(void *p)
{
    bst *s = p;
    if (bar_mode == MODE_CANCEL) {
        bool broken = ap_barrier_is_broken(&s->b);
        VF_CHECK(s->f0_status == AP_OK || s->f0_status == AP_CANCELED || s->f0_undid);
        if (bar_policy == AP_BARRIER_POLICY_BREAK && s->f0_undid) {
            VF_CHECK(broken, "T0 undid under BREAK but the barrier is not broken");
            VF_CHECK(s->fn_runs == 0 && ap_barrier_generation(&s->b) == 0);
            VF_CHECK(s->t1_status == AP_CANCELED, "T1 got %d from a broken barrier",
                     s->t1_status);
            VF_CHECK(ap_barrier_arrived(&s->b) == 0, "a break keeps arrivals");
            return;
        }
        VF_CHECK(!broken);
        VF_CHECK(s->fn_runs == 1, "fn ran %d times", s->fn_runs);
        VF_CHECK(ap_barrier_generation(&s->b) == 1);
        VF_CHECK(s->exits[0] == s->parties);
        VF_CHECK(s->leaders[0] == 1 && s->leader_by[0] == s->fn_by[0]);
        VF_CHECK(ap_barrier_arrived(&s->b) == 0);
        return;
    }
    VF_CHECK(s->fn_runs == NGEN, "fn ran %d times", s->fn_runs);
    VF_CHECK(ap_barrier_generation(&s->b) == NGEN, "generation %u", ap_barrier_generation(&s->b));
    VF_CHECK(ap_barrier_arrived(&s->b) == 0);
    VF_CHECK(!ap_barrier_is_broken(&s->b));
    int dropped = bar_mode == MODE_WAIT ? 0 : 1;
    VF_CHECK(ap_barrier_parties(&s->b) == (uint32_t)(s->parties - dropped));
    for (int g = 0; g < NGEN; g++) {
        VF_CHECK(s->leaders[g] == 1, "generation %d had %d leaders", g, s->leaders[g]);
        VF_CHECK(s->leader_by[g] == s->fn_by[g], "gen %d: leader T%d, fn on T%d", g,
                 s->leader_by[g], s->fn_by[g]);
        VF_CHECK(s->arrivals[g] == s->expected[g]);
    }
}

static unsigned long run(const char *name, int nthreads, int bound, bool tso, int mode,
                         int parties, ap_barrier_policy policy)
{
    vf_scenario sc = {.name = name, .nthreads = nthreads, .tso = tso, .bound = bound,
                      .setup = bar_setup, .thread = bar_thread, .invariant = bar_invariant,
                      .check = bar_check, .teardown = bar_teardown};
    bar_mode = mode, bar_parties = parties, bar_policy = policy;
    return vf_explore(&sc);
}

int main(void)
{
    unsigned long total = 0;
    /* 2 and 3 parties, 2 generations each, fn on the leader */
    total += run("barrier_2t_2gen", 2, 3, false, MODE_WAIT, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_2t_2gen_tso", 2, 3, true, MODE_WAIT, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_3t_2gen", 3, 2, false, MODE_WAIT, 3, AP_BARRIER_POLICY_BREAK);
    /* arrive_and_drop: at generation 0 (2 parties; 3 parties), at generation 1 */
    total += run("barrier_2t_drop_gen0", 2, 3, false, MODE_DROP0, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_2t_drop_gen0_tso", 2, 3, true, MODE_DROP0, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_3t_drop_gen0", 3, 2, false, MODE_DROP0, 3, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_3t_drop_gen1", 3, 2, false, MODE_DROP1, 3, AP_BARRIER_POLICY_WITHDRAW);
    /* a cancelled wait racing with the last arrival */
    total += run("barrier_2t_withdraw_race", 2, 3, false, MODE_CANCEL, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_2t_withdraw_race_tso", 2, 3, true, MODE_CANCEL, 2, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_3t_withdraw_race", 3, 2, false, MODE_CANCEL, 3, AP_BARRIER_POLICY_WITHDRAW);
    total += run("barrier_2t_break_race", 2, 3, false, MODE_CANCEL, 2, AP_BARRIER_POLICY_BREAK);
    total += run("barrier_2t_break_race_tso", 2, 3, true, MODE_CANCEL, 2, AP_BARRIER_POLICY_BREAK);
    total += run("barrier_3t_break_race", 3, 2, false, MODE_CANCEL, 3, AP_BARRIER_POLICY_BREAK);
    printf("verify_barrier: %lu executions\n", total);
    return 0;
}
