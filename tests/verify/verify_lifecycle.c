/*
 * verify_lifecycle.c -- the lifecycle gate under every interleaving within
 * the preemption bound (SC and x86-TSO).
 *
 * Theorems: no enter succeeds after the stop that ended RUNNING; the drain
 * wait completes only when nobody is inside, and from then on nobody can
 * come in; the owner is always woken (lost-wakeup detector); terminated
 * succeeds exactly after the drain.
 */
#include "vf.h"
#include "asyncpat/lifecycle.h"

typedef struct lst {
    ap_life life;
    int inside;   /* operations between a successful enter and its leave */
    bool stopped; /* the owner's stop returned */
    bool drained; /* the owner's drain wait completed */
    int served;
    int config;   /* written by the owner before start (C11: race-checked) */
    int work[3];  /* written by worker i inside (C11: race-checked) */
} lst;

static int workers, ops;

static void *l_setup(void)
{
    lst *s = calloc(1, sizeof *s);
    ap_life_init(&s->life);
    return s;
}

static void l_thread(void *p, int id)
{
    lst *s = p;
    if (id == 0) { /* the owner */
        /* C11 mode: what the owner did before start happens-before every
         * enter that succeeds; what a worker did inside happens-before the
         * drain's completion (the race detector checks both) */
        VF_DATA_WRITE(&s->config, sizeof s->config);
        s->config = 1;
        VF_CHECK(ap_life_start(&s->life) == AP_OK);
        VF_CHECK(ap_life_started(&s->life, true) == AP_OK);
        VF_CHECK(ap_life_stop(&s->life) == AP_OK);
        s->stopped = true;
        ap_life_wait_fut f;
        ap_life_wait_fut_init(&f, &s->life, AP_LIFE_EVENT_DRAINED);
        vf_wait((ap_future *)&f);
        VF_CHECK(ap_life_wait_status(&f) == AP_OK);
        VF_CHECK(s->inside == 0, "drained with %d operations inside", s->inside);
        VF_DATA_READ(s->work, sizeof s->work);
        s->drained = true;
        VF_CHECK(ap_life_terminated(&s->life) == AP_OK);
        return;
    }
    for (int i = 0, tries = 0; i < ops && tries < 6; tries++) {
        ap_status st = ap_life_enter(&s->life);
        if (st == AP_NOT_READY) { /* not running yet */
            vf_yield();
            continue;
        }
        if (st == AP_CLOSED)
            return;
        VF_CHECK(st == AP_OK, "enter: %d", st);
        VF_CHECK(!s->drained, "an enter succeeded after the drain");
        s->inside++;
        VF_DATA_READ(&s->config, sizeof s->config);
        VF_DATA_WRITE(&s->work[id], sizeof s->work[id]);
        s->work[id]++;
        vf_yield(); /* the operation runs */
        s->inside--;
        s->served++;
        ap_life_leave(&s->life);
        i++;
    }
}

static void l_invariant(void *p)
{
    lst *s = p;
    VF_CHECK(!s->drained || s->inside == 0);
    /* the count in the word never goes below the operations we see inside */
    VF_CHECK(ap_life_in_flight(&s->life) >= (size_t)s->inside);
}

static void l_check(void *p)
{
    lst *s = p;
    VF_CHECK(s->drained && s->inside == 0);
    VF_CHECK(ap_life_state_of(&s->life) == AP_LIFE_STATE_TERMINATED);
    VF_CHECK(ap_life_in_flight(&s->life) == 0);
    VF_CHECK(!ap_waitlist_has_waiters(&s->life.wl));
}

/* The owner starts while another thread stops. What the start opens must
 * be closed in the end: by the stopper's teardown after the drain (the
 * life ran), or by the starter itself when started() says the stop came
 * during the start. A drain that completed while the start was still
 * opening (the old bug) let the teardown run first and the late open leak. */
typedef struct sst {
    ap_life life;
    bool kept; /* what the start opened is still open */
    bool drained;
} sst;

static void *s_setup(void)
{
    sst *s = calloc(1, sizeof *s);
    ap_life_init(&s->life);
    return s;
}

static void s_thread(void *p, int id)
{
    sst *s = p;
    if (id == 0) {
        if (ap_life_start(&s->life) != AP_OK)
            return; /* the stop came first: nothing started */
        vf_yield(); /* opening takes a while */
        s->kept = true;
        ap_status st = ap_life_started(&s->life, true);
        VF_CHECK(st == AP_OK || st == AP_CLOSED, "started: %d", st);
        if (st == AP_CLOSED)
            s->kept = false; /* undo the start */
        return;
    }
    VF_CHECK(ap_life_stop(&s->life) == AP_OK);
    ap_life_wait_fut f;
    ap_life_wait_fut_init(&f, &s->life, AP_LIFE_EVENT_DRAINED);
    vf_wait((ap_future *)&f);
    VF_CHECK(ap_life_wait_status(&f) == AP_OK);
    s->drained = true;
    if (ap_life_state_of(&s->life) == AP_LIFE_STATE_STOPPING) {
        VF_CHECK(ap_life_terminated(&s->life) == AP_OK);
        s->kept = false; /* the stopper tears down what ran */
    }
}

static void s_check(void *p)
{
    sst *s = p;
    VF_CHECK(s->drained);
    VF_CHECK(!s->kept, "what the start opened leaked (torn down before it was opened)");
    VF_CHECK(ap_life_state_of(&s->life) == AP_LIFE_STATE_TERMINATED);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = l_setup, .thread = l_thread,
                          .invariant = l_invariant, .check = l_check, .teardown = free};
        workers = 1, ops = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "life_owner_1worker_tso" : "life_owner_1worker";
        total += vf_explore(&sc);
        workers = 2, ops = 1;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "life_owner_2workers_tso" : "life_owner_2workers";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .bound = 3, .tso = tso, .setup = s_setup,
                          .thread = s_thread, .check = s_check, .teardown = free};
        sc.name = tso ? "life_stop_during_start_tso" : "life_stop_during_start";
        total += vf_explore(&sc);
    }
    printf("verify_lifecycle: %lu executions\n", total);
    return 0;
}
