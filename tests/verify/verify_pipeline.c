/*
 * verify_pipeline.c -- the pipeline (stages over ap_mpmc queues, driven by
 * run futures) under every interleaving within the preemption bound, SC
 * and x86-TSO.
 *
 *   exactly once  every item pushed comes out of the last stage exactly
 *                 once, transformed by every stage (nothing lost, nothing
 *                 duplicated)
 *   FIFO          one producer, one worker per stage, one consumer: items
 *                 leave in the order they entered
 *   close drains  the consumer's pop answers AP_CLOSED only after every
 *                 item came out; every worker's run future completes AP_OK
 *                 (close propagates stage by stage behind the last item)
 *   no lost wake  every push, pop and run future completes (vf_wait parks
 *                 until its waker runs: a lost wakeup is reported as such)
 *
 * Every queue has capacity 1, so pushes wait on full queues and workers
 * hold outputs under backpressure. Scenarios:
 *   pipe_2st_4thr     T0 pushes the items then closes, T1 and T2 each run
 *                     one stage's run future, T3 pops until AP_CLOSED
 *   pipe_2st_3thr     T0 pushes, closes, then pops until AP_CLOSED (the
 *                     three queues and two held outputs hold every item);
 *                     T1, T2 run the stages
 *   pipe_1st_2thr     one stage: T0 pushes, closes, pops inline; T1 runs
 *                     the stage (budget 1: the run future also yields by
 *                     waking itself between items)
 */
#include "vf.h"
#include "asyncpat/pipeline.h"

#define VPL_MAXI 4

typedef struct plst {
    ap_pipeline p;
    ap_pipeline_stage st[2];
    _Alignas(64) unsigned char qin[AP_MPMC_BYTES(1, sizeof(int))];
    _Alignas(64) unsigned char q0[AP_MPMC_BYTES(1, sizeof(int))];
    _Alignas(64) unsigned char q1[AP_MPMC_BYTES(1, sizeof(int))];
    ap_pipeline_worker w[2];
    int win[2], wout[2];  /* the workers' scratch */
    int got[VPL_MAXI];    /* consumer: values in pop order */
    int ngot;
    int closed_seen;      /* consumer saw AP_CLOSED */
    int pushed;           /* producer: pushes that completed AP_OK */
    int run_ok[2];        /* worker finished with AP_OK */
} plst;

static int pl_stages, pl_items, pl_budget;

/* stage 0 doubles, stage 1 adds 1: the output shows every stage ran once */
static ap_status st_double(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    *(int *)out = *(const int *)in * 2;
    return AP_OK;
}

static ap_status st_inc(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    *(int *)out = *(const int *)in + 1;
    return AP_OK;
}

static int expected(int i)
{
    int v = 10 + i;
    v *= 2;
    if (pl_stages == 2)
        v += 1;
    return v;
}

static void *pl_setup(void)
{
    /* aligned: the stage records are over-aligned (AP_PIPELINE_STAGES_ALIGN),
     * which calloc does not promise; init refuses misaligned records */
    plst *s = aligned_alloc(_Alignof(plst), ap__align_up(sizeof *s, _Alignof(plst)));
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    ap_pipeline_stage_desc sd[2] = {
        {.fn = st_double, .out_size = sizeof(int), .capacity = 1, .buf = s->q0, .bytes = sizeof s->q0},
        {.fn = st_inc, .out_size = sizeof(int), .capacity = 1, .buf = s->q1, .bytes = sizeof s->q1}};
    ap_pipeline_desc d = {sizeof(int), 1, s->qin, sizeof s->qin, sd, (size_t)pl_stages};
    VF_CHECK(ap_pipeline_init(&s->p, s->st, sizeof s->st, &d) == AP_OK);
    for (int k = 0; k < pl_stages; k++)
        VF_CHECK(ap_pipeline_worker_init(&s->w[k], &s->win[k], sizeof s->win[k], &s->wout[k],
                                         sizeof s->wout[k], &s->p, (size_t)k) == AP_OK);
    return s;
}

static void pl_teardown(void *p) { free(p); }

static void produce(plst *s)
{
    for (int i = 0; i < pl_items; i++) {
        int v = 10 + i;
        ap_pipeline_push_fut f;
        ap_pipeline_push_fut_init(&f, &s->p, &v);
        vf_wait(&f.op.base);
        VF_CHECK(ap_pipeline_push_status(&f) == AP_OK, "push %d: %d", i,
                 ap_pipeline_push_status(&f));
        s->pushed++;
    }
    ap_pipeline_close(&s->p);
}

static void consume(plst *s)
{
    for (;;) {
        int v = -1;
        ap_pipeline_pop_fut f;
        ap_pipeline_pop_fut_init(&f, &s->p, &v);
        vf_wait(&f.op.base);
        ap_status st = ap_pipeline_pop_status(&f);
        if (st == AP_CLOSED) {
            VF_CHECK(s->ngot == pl_items, "AP_CLOSED after %d of %d items: close overtook an item",
                     s->ngot, pl_items);
            s->closed_seen = 1;
            /* closed stays closed */
            VF_CHECK(ap_pipeline_try_pop(&s->p, &v) == AP_CLOSED);
            return;
        }
        VF_CHECK(st == AP_OK, "pop: %d", st);
        VF_CHECK(s->ngot < pl_items, "more items out than in (%d)", v);
        s->got[s->ngot++] = v;
    }
}

static void run_worker(plst *s, int k)
{
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &s->w[k], (size_t)pl_budget);
    vf_wait(&f.base);
    VF_CHECK(ap_pipeline_run_status(&f) == AP_OK, "worker %d: %d", k, ap_pipeline_run_status(&f));
    VF_CHECK(ap_pipeline_worker_finished(&s->w[k]));
    VF_CHECK(!ap_pipeline_worker_holding(&s->w[k]));
    s->run_ok[k] = 1;
}

/* 4 threads: producer, a worker per stage, consumer */
static void pl_thread4(void *p, int id)
{
    plst *s = p;
    if (id == 0)
        produce(s);
    else if (id == 3)
        consume(s);
    else
        run_worker(s, id - 1);
}

/* 3 or 2 threads: T0 produces then consumes, T1.. run the stages */
static void pl_thread_inline(void *p, int id)
{
    plst *s = p;
    if (id == 0) {
        produce(s);
        consume(s);
    } else {
        run_worker(s, id - 1);
    }
}

static void pl_invariant(void *p)
{
    plst *s = p;
    VF_CHECK(ap_mpmc_len(&s->p.in) <= 1);
    for (int k = 0; k < pl_stages; k++)
        VF_CHECK(ap_mpmc_len(&s->st[k].out) <= 1);
    /* entered/left are relaxed statistics counted after the queue op, so
     * left may run ahead of entered for a moment: bound each by the items */
    VF_CHECK(ap_pipeline_entered(&s->p) <= (uint64_t)pl_items);
    VF_CHECK(ap_pipeline_left(&s->p) <= (uint64_t)pl_items);
}

static void pl_check(void *p)
{
    plst *s = p;
    VF_CHECK(s->pushed == pl_items);
    VF_CHECK(s->closed_seen);
    VF_CHECK(s->ngot == pl_items, "%d of %d items came out", s->ngot, pl_items);
    for (int i = 0; i < pl_items; i++)
        VF_CHECK(s->got[i] == expected(i), "item %d is %d, want %d: lost, duplicated or reordered",
                 i, s->got[i], expected(i));
    VF_CHECK(ap_pipeline_entered(&s->p) == (uint64_t)pl_items);
    VF_CHECK(ap_pipeline_left(&s->p) == (uint64_t)pl_items);
    for (int k = 0; k < pl_stages; k++) {
        ap_pipeline_stats ps;
        VF_CHECK(s->run_ok[k]);
        VF_CHECK(ap_pipeline_stats_get(&s->p, (size_t)k, &ps) == AP_OK);
        VF_CHECK(ps.taken == (uint64_t)pl_items && ps.emitted == (uint64_t)pl_items,
                 "stage %d: taken %llu emitted %llu", k, (unsigned long long)ps.taken,
                 (unsigned long long)ps.emitted);
        VF_CHECK(ps.filtered == 0 && ps.failed == 0 && ps.queued == 0 && ps.finished == 1);
        VF_CHECK(ap_mpmc_is_closed(&s->st[k].out), "stage %d output not closed", k);
        VF_CHECK(!ap_waitlist_has_waiters(&s->st[k].out.not_empty));
        VF_CHECK(!ap_waitlist_has_waiters(&s->st[k].out.not_full));
    }
    VF_CHECK(!ap_waitlist_has_waiters(&s->p.in.not_empty));
    VF_CHECK(!ap_waitlist_has_waiters(&s->p.in.not_full));
    ap_pipeline_fini(&s->p);
}

/*
 * The search is costly here (every queue operation is a waitlist ladder of
 * a dozen atomics, so an execution is 150-400 steps): the default set runs
 * in about 10 s. Build with -DVF_LONG for the larger ones (measured, SC):
 * pipe_2st_3thr_1item bound 2 ~104k executions; pipe_2st_4thr_1item
 * bound 2 ~881k (~30 s); pipe_2st_4thr_2items bound 1 ~175k (~16 s);
 * pipe_1st_2thr_2items bound 3 ~495k (~14 s).
 */
typedef struct pl_cfg {
    const char *name;
    int stages, items, nthreads, bound, budget, sc_only;
} pl_cfg;

static const pl_cfg pl_cfgs[] = {
    {"pipe_1st_2thr_2items", 1, 2, 2, 2, 1, 0},
    {"pipe_1st_2thr_1item_b3", 1, 1, 2, 3, 0, 1},
    {"pipe_2st_3thr_2items_b1", 2, 2, 3, 1, 0, 0},
    {"pipe_2st_4thr_1item_b1", 2, 1, 4, 1, 0, 0},
#ifdef VF_LONG
    {"pipe_1st_2thr_2items_b3", 1, 2, 2, 3, 1, 0},
    {"pipe_2st_3thr_1item", 2, 1, 3, 2, 0, 0},
    {"pipe_2st_3thr_2items", 2, 2, 3, 2, 0, 0},
    {"pipe_2st_4thr_1item", 2, 1, 4, 2, 0, 0},
    {"pipe_2st_4thr_2items_b1", 2, 2, 4, 1, 0, 0},
#endif
};

int main(void)
{
    unsigned long total = 0;
    char name[64];
    for (int tso = 0; tso <= 1; tso++)
        for (size_t i = 0; i < sizeof pl_cfgs / sizeof pl_cfgs[0]; i++) {
            const pl_cfg *c = &pl_cfgs[i];
            if (tso && c->sc_only)
                continue;
            vf_scenario sc = {.tso = tso, .setup = pl_setup, .invariant = pl_invariant,
                              .check = pl_check, .teardown = pl_teardown};
            pl_stages = c->stages, pl_items = c->items, pl_budget = c->budget;
            sc.nthreads = c->nthreads, sc.bound = c->bound;
            sc.thread = c->nthreads == 4 ? pl_thread4 : pl_thread_inline;
            snprintf(name, sizeof name, "%s%s", c->name, tso ? "_tso" : "");
            sc.name = name;
            total += vf_explore(&sc);
        }
    printf("verify_pipeline: %lu executions\n", total);
    return 0;
}
