/*
 * tests/test_pipeline.c -- stages connected by bounded queues
 *
 * Unit tests of every API path and bad input, then THE THROUGHPUT THEOREM
 * (THEOREMS.md: "pipeline | steady-state throughput = 1 / max_i S_i; FIFO
 * end to end"), checked by a discrete-event simulation on a fake clock over
 * the REAL ap_pipeline (its mpmc queues, workers, try_take / try_emit), as
 * tests/test_pc_latency.c does for one queue.
 *
 * THE MODEL
 *   Integer fake nanoseconds; no threads. Stage i has one worker and a
 *   deterministic service time S_i. A worker "in service" is a worker
 *   holding its output (ap_pipeline_try_take popped the element and ran
 *   fn at the start of service); at the end of service the simulation calls
 *   ap_pipeline_try_emit, and if the output queue is full the worker stays
 *   blocked, holding, and retries whenever anything changes (blocking after
 *   service). The source is saturated (it pushes whenever the input has
 *   room), the sink pops whatever reaches the output at once. Within one
 *   instant everything runs to a fixpoint.
 *
 * THE THEOREM (asserted for every item, exact integers)
 *   With every buffer >= 1, item n (in input order) leaves at exactly
 *       sum_i S_i + n * max_i S_i,
 *   so the completion rate is exactly 1 / max_i S_i. Why: the first stage
 *   b with S_b = max S never starves after its first item (the stages
 *   before it are at least as fast, and with a saturated source their
 *   n-th output is ready by sum_{i<b} S_i + n * S_b), and it never blocks
 *   for long (the stages after it are at least as fast, so each is free
 *   again by the time b's next output arrives), so b starts item n at
 *   sum_{i<b} S_i + n * S_b and the rest of the line adds sum_{i>=b} S_i.
 *   Also checked per run: FIFO (the k-th output is input k), every item
 *   out exactly once with every stage's transform applied in order (a
 *   payload trail), every queue within its capacity, the counters'
 *   identities, and that close drains the line to AP_CLOSED.
 *
 * NEGATIVE CONTROLS: the same checker must flag (a) a line driven without
 * overlap (one stage in service at a time: rate 1 / sum S), (b) a stage
 * that filters some items out (FIFO identity), and (c) a stage that swaps
 * neighbours (order).
 */
#include "asyncpat/pipeline.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

TestSuite(pipeline, .timeout = TEST_TIMEOUT_S);

/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

typedef struct item {
    uint64_t id;
    uint64_t trail; /* each stage i folds (i + 1) in: proves every stage ran, in order */
} item;

static uint64_t trail_after(uint64_t id, size_t stages)
{
    uint64_t t = id;
    for (size_t i = 0; i < stages; i++)
        t = t * 31u + (i + 1);
    return t;
}

/* the stage function: ctx carries the stage index */
static ap_status fold(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    const item *a = in;
    item *b = out;
    b->id = a->id;
    b->trail = a->trail * 31u + ((uintptr_t)ctx + 1);
    return AP_OK;
}

/* filters odd ids, fails ids divisible by 5 (with AP_REJECTED and its own
 * code -(id + 1) beside it), else folds */
static ap_status picky(void *ctx, const void *in, void *out, int *app_error)
{
    const item *a = in;
    if (*app_error != 0)
        return AP_CANCELED; /* *app_error must be 0 on entry */
    if (a->id % 5 == 0) {
        *app_error = -(int)a->id - 1;
        return AP_REJECTED;
    }
    if (a->id % 2 == 1)
        return AP_FILTERED;
    return fold(ctx, in, out, app_error);
}

#define MAXK 8
#define MAXCAP 64
typedef struct line {
    ap_pipeline p;
    ap_pipeline_stage st[MAXK];
    ap_pipeline_stage_desc sd[MAXK];
    _Alignas(AP_CACHELINE) unsigned char qin[AP_MPMC_BYTES(MAXCAP, sizeof(item))];
    _Alignas(AP_CACHELINE) unsigned char q[MAXK][AP_MPMC_BYTES(MAXCAP, sizeof(item))];
    ap_pipeline_worker w[MAXK][4];
    item in[MAXK][4], out[MAXK][4];
    size_t k;
} line;

/* k stages of `fold` (or @fn), input capacity cin, stage capacities cap[] */
static ap_status line_init(line *l, size_t k, size_t cin, const size_t *cap, ap_pipeline_fn fn,
                           unsigned workers)
{
    memset(l->sd, 0, sizeof l->sd);
    l->k = k;
    for (size_t i = 0; i < k; i++)
        l->sd[i] = (ap_pipeline_stage_desc){fn ? fn : fold, (void *)(uintptr_t)i, sizeof(item),
                                            cap[i], l->q[i], sizeof l->q[i], workers};
    ap_pipeline_desc d = {sizeof(item), cin, l->qin, sizeof l->qin, l->sd, k};
    return ap_pipeline_init(&l->p, l->st, sizeof l->st, &d);
}

static line *line_new(size_t k, size_t cin, const size_t *cap, ap_pipeline_fn fn,
                      unsigned workers)
{
    line *l = aligned_alloc(AP_CACHELINE, ap__align_up(sizeof(line), AP_CACHELINE));
    EXPECT(l != NULL);
    EXPECT_EQ(line_init(l, k, cin, cap, fn, workers), AP_OK);
    for (size_t i = 0; i < k; i++)
        for (unsigned j = 0; j < (workers ? workers : 1); j++)
            EXPECT_EQ(ap_pipeline_worker_init(&l->w[i][j], &l->in[i][j], sizeof(item),
                                              &l->out[i][j], sizeof(item), &l->p, i),
                      AP_OK);
    return l;
}

static void line_free(line *l)
{
    ap_pipeline_fini(&l->p);
    free(l);
}

static const size_t caps4[MAXK] = {4, 4, 4, 4, 4, 4, 4, 4};
static const size_t caps1[MAXK] = {1, 1, 1, 1, 1, 1, 1, 1};

/* ---- init and bad input ---- */

Test(pipeline, init_rejects_bad_desc_and_changes_nothing)
{
    static line l; /* static: the buffers are large */
    const size_t qb = sizeof l.q[0];
    ap_pipeline_stage_desc good = {fold, NULL, sizeof(item), 4, l.q[0], qb, 1};
    struct {
        const char *what;
        size_t in_size, in_cap;
        bool in_buf;
        ap_pipeline_stage_desc sd;
        size_t nstages;
        bool null_desc, null_stages;
    } bad[] = {
        {"nstages 0", sizeof(item), 4, true, good, 0, false, false},
        {"in_size 0", 0, 4, true, good, 1, false, false},
        {"in_capacity 0", sizeof(item), 0, true, good, 1, false, false},
        {"in_buf NULL", sizeof(item), 4, false, good, 1, false, false},
        {"fn NULL", sizeof(item), 4, true, {NULL, NULL, sizeof(item), 4, l.q[0], qb, 1}, 1, false, false},
        {"out_size 0", sizeof(item), 4, true, {fold, NULL, 0, 4, l.q[0], qb, 1}, 1, false, false},
        {"capacity 0", sizeof(item), 4, true, {fold, NULL, sizeof(item), 0, l.q[0], qb, 1}, 1, false, false},
        {"buf NULL", sizeof(item), 4, true, {fold, NULL, sizeof(item), 4, NULL, qb, 1}, 1, false, false},
        {"buf misaligned", sizeof(item), 4, true, {fold, NULL, sizeof(item), 4, (unsigned char *)l.q[1] + 1, qb - 1, 1}, 1, false, false},
        {"buf one byte short", sizeof(item), 4, true, {fold, NULL, sizeof(item), 4, l.q[1], AP_MPMC_BYTES(4, sizeof(item)) - 1, 1}, 1, false, false},
        {"buf 0 bytes", sizeof(item), 4, true, {fold, NULL, sizeof(item), 4, l.q[1], 0, 1}, 1, false, false},
        {"buf one slot short", sizeof(item), 4, true, {fold, NULL, sizeof(item), 4, l.q[1], AP_MPMC_BYTES(3, sizeof(item)), 1}, 1, false, false},
        {"capacity overflows", sizeof(item), 4, true, {fold, NULL, sizeof(item), SIZE_MAX / 2, l.q[0], SIZE_MAX, 1}, 1, false, false},
        {"out_size overflows", sizeof(item), 4, true, {fold, NULL, SIZE_MAX, 4, l.q[0], SIZE_MAX, 1}, 1, false, false},
        {"in_size overflows", SIZE_MAX - 3, 4, true, good, 1, false, false},
        {"desc NULL", sizeof(item), 4, true, good, 1, true, false},
        {"stages NULL", sizeof(item), 4, true, good, 1, false, true},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        /* the bad stage comes last, after a good one, when nstages allows */
        ap_pipeline_stage_desc sds[2] = {good, bad[c].sd};
        size_t n = bad[c].nstages ? 2 : 0;
        if (bad[c].sd.fn == fold && bad[c].sd.out_size == sizeof(item) && bad[c].sd.capacity == 4 &&
            bad[c].sd.buf == l.q[0])
            sds[1].buf = l.q[1];
        ap_pipeline_desc d = {bad[c].in_size, bad[c].in_cap, bad[c].in_buf ? l.qin : NULL,
                              sizeof l.qin, sds, n};
        memset(&l.p, 0xA5, sizeof l.p);
        memset(l.st, 0x5A, sizeof l.st);
        memset(l.q, 0x3C, sizeof l.q);
        memset(l.qin, 0x3C, sizeof l.qin);
        ap_status st = ap_pipeline_init(&l.p, bad[c].null_stages ? NULL : l.st, sizeof l.st,
                                        bad[c].null_desc ? NULL : &d);
        EXPECT_EQ(st, AP_INVAL, "%s", bad[c].what);
        const unsigned char *pb = (const unsigned char *)&l.p, *sb = (const unsigned char *)l.st;
        for (size_t i = 0; i < sizeof l.p; i++)
            EXPECT_EQ(pb[i], 0xA5, "%s: pipeline byte %zu written", bad[c].what, i);
        for (size_t i = 0; i < sizeof l.st; i++)
            EXPECT_EQ(sb[i], 0x5A, "%s: stage byte %zu written", bad[c].what, i);
        for (size_t i = 0; i < sizeof l.qin; i++)
            EXPECT_EQ(l.qin[i], 0x3C, "%s: input buffer written", bad[c].what);
        for (size_t i = 0; i < sizeof l.q; i++)
            EXPECT_EQ(l.q[i / qb][i % qb], 0x3C, "%s: a stage buffer written", bad[c].what);
    }
    /* NULL stages array with zero stages is still invalid */
    ap_pipeline_desc d0 = {sizeof(item), 4, l.qin, sizeof l.qin, NULL, 1};
    EXPECT_EQ(ap_pipeline_init(&l.p, l.st, sizeof l.st, &d0), AP_INVAL);
}

/* Caller memory comes with its size (issue #11): the stage records and the
 * input buffer NULL, too small or misaligned are AP_INVAL, and nothing is
 * written: not the pipeline, the records, or any queue buffer. */
Test(pipeline, bad_memory_is_inval_and_changes_nothing)
{
    static line l;
    _Static_assert(AP_PIPELINE_STAGES_BYTES(3) == 3 * sizeof(ap_pipeline_stage) &&
                       AP_PIPELINE_STAGES_ALIGN == _Alignof(ap_pipeline_stage),
                   "constant expressions");
    static char as_array_size[AP_PIPELINE_STAGES_BYTES(2) + AP_PIPELINE_STAGES_ALIGN];
    EXPECT_EQ(sizeof as_array_size, 2 * sizeof(ap_pipeline_stage) + _Alignof(ap_pipeline_stage));
    enum { K = 3 };
    const size_t need_in = AP_MPMC_BYTES(4, sizeof(item));
    unsigned char *st_bytes = (unsigned char *)l.st;
    struct {
        const char *what;
        void *stages;
        size_t stages_bytes;
        void *in_buf;
        size_t in_bytes;
    } bad[] = {
        {"records one byte short", l.st, AP_PIPELINE_STAGES_BYTES(K) - 1, l.qin, sizeof l.qin},
        {"records one stage short", l.st, AP_PIPELINE_STAGES_BYTES(K - 1), l.qin, sizeof l.qin},
        {"records 0 bytes", l.st, 0, l.qin, sizeof l.qin},
        {"records misaligned by 8", st_bytes + 8, sizeof l.st - 8, l.qin, sizeof l.qin},
        {"records misaligned by half", st_bytes + AP_PIPELINE_STAGES_ALIGN / 2,
         sizeof l.st - AP_PIPELINE_STAGES_ALIGN / 2, l.qin, sizeof l.qin},
        {"in_buf one byte short", l.st, sizeof l.st, l.qin, need_in - 1},
        {"in_buf 0 bytes", l.st, sizeof l.st, l.qin, 0},
        {"in_buf misaligned", l.st, sizeof l.st, l.qin + 1, sizeof l.qin - 1},
        {"in_buf NULL", l.st, sizeof l.st, NULL, sizeof l.qin},
    };
    static unsigned char p_before[sizeof l.p], st_before[sizeof l.st], qin_before[sizeof l.qin],
        q_before[sizeof l.q];
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        for (size_t i = 0; i < K; i++)
            l.sd[i] = (ap_pipeline_stage_desc){fold, NULL, sizeof(item), 4, l.q[i], sizeof l.q[i], 1};
        ap_pipeline_desc d = {sizeof(item), 4, bad[c].in_buf, bad[c].in_bytes, l.sd, K};
        memset(&l.p, 0xA5, sizeof l.p);
        memset(l.st, 0x5A, sizeof l.st);
        memset(l.q, 0x3C, sizeof l.q);
        memset(l.qin, 0xC3, sizeof l.qin);
        memcpy(p_before, &l.p, sizeof l.p);
        memcpy(st_before, l.st, sizeof l.st);
        memcpy(qin_before, l.qin, sizeof l.qin);
        memcpy(q_before, l.q, sizeof l.q);
        EXPECT_EQ(ap_pipeline_init(&l.p, bad[c].stages, bad[c].stages_bytes, &d), AP_INVAL, "%s",
                  bad[c].what);
        EXPECT(memcmp(p_before, &l.p, sizeof l.p) == 0, "%s: the pipeline changed", bad[c].what);
        EXPECT(memcmp(st_before, l.st, sizeof l.st) == 0, "%s: the records changed", bad[c].what);
        EXPECT(memcmp(qin_before, l.qin, sizeof l.qin) == 0, "%s: the input buffer changed",
               bad[c].what);
        EXPECT(memcmp(q_before, l.q, sizeof l.q) == 0, "%s: a stage buffer changed", bad[c].what);
    }
    /* exactly enough of everything works, and nothing past it is written */
    for (size_t i = 0; i < K; i++)
        l.sd[i] = (ap_pipeline_stage_desc){fold, (void *)(uintptr_t)i, sizeof(item), 4, l.q[i],
                                           AP_MPMC_BYTES(4, sizeof(item)), 1};
    ap_pipeline_desc d = {sizeof(item), 4, l.qin, need_in, l.sd, K};
    memset(l.st, 0x5A, sizeof l.st);
    memset(l.q, 0x3C, sizeof l.q);
    memset(l.qin, 0xC3, sizeof l.qin);
    EXPECT_EQ(ap_pipeline_init(&l.p, l.st, AP_PIPELINE_STAGES_BYTES(K), &d), AP_OK);
    for (size_t i = need_in; i < sizeof l.qin; i++)
        EXPECT_EQ(l.qin[i], 0xC3, "input byte %zu past its size written", i);
    for (size_t k = 0; k < K; k++)
        for (size_t i = AP_MPMC_BYTES(4, sizeof(item)); i < sizeof l.q[k]; i++)
            EXPECT_EQ(l.q[k][i], 0x3C, "stage %zu byte %zu past its size written", k, i);
    for (size_t i = AP_PIPELINE_STAGES_BYTES(K); i < sizeof l.st; i++)
        EXPECT_EQ(st_bytes[i], 0x5A, "record byte %zu past the size written", i);
    for (size_t i = 0; i < K; i++)
        EXPECT_EQ(ap_pipeline_worker_init(&l.w[i][0], &l.in[i][0], sizeof(item), &l.out[i][0],
                                          sizeof(item), &l.p, i),
                  AP_OK);
    for (uint64_t id = 0; id < 3; id++) {
        item x = {id, id};
        EXPECT_EQ(ap_pipeline_try_push(&l.p, &x), AP_OK);
    }
    for (size_t i = 0; i < K; i++)
        EXPECT_EQ(ap_pipeline_stage_run(&l.w[i][0], 3, NULL), AP_OK);
    for (uint64_t id = 0; id < 3; id++) {
        item y;
        EXPECT_EQ(ap_pipeline_try_pop(&l.p, &y), AP_OK);
        EXPECT_EQ(y.id, id);
        EXPECT_EQ(y.trail, trail_after(id, K));
    }
    ap_pipeline_fini(&l.p);
}

Test(pipeline, init_sets_up_each_stage)
{
    static line l;
    const size_t cap[3] = {1, 2, 3};
    EXPECT_EQ(line_init(&l, 3, 5, cap, NULL, 0), AP_OK);
    EXPECT_EQ(ap_pipeline_nstages(&l.p), 3);
    EXPECT_EQ(ap_mpmc_capacity(&l.p.in), 5);
    for (size_t i = 0; i < 3; i++) {
        ap_pipeline_stats s;
        EXPECT_EQ(ap_pipeline_stats_get(&l.p, i, &s), AP_OK);
        EXPECT_EQ(s.taken + s.emitted + s.filtered + s.failed + s.queued + s.finished, 0);
        EXPECT_EQ(s.workers, 1, "workers 0 means 1");
        EXPECT_EQ(s.last_error, AP_OK);
        EXPECT_EQ(s.last_app_error, 0);
        EXPECT_EQ(ap_mpmc_capacity(&l.st[i].out), cap[i]);
    }
    EXPECT(l.p.out == &l.st[2].out);
    EXPECT_EQ(ap_pipeline_entered(&l.p) + ap_pipeline_left(&l.p), 0);
    ap_pipeline_fini(&l.p);
}

Test(pipeline, stage_sizes_follow_the_chain)
{
    /* stage 0: u32 -> u64, stage 1: u64 -> u8; checks in_size bookkeeping */
    static _Alignas(64) unsigned char qi[AP_MPMC_BYTES(2, 4)], q0[AP_MPMC_BYTES(2, 8)],
        q1[AP_MPMC_BYTES(2, 1)];
    ap_pipeline_stage_desc sd[2] = {{fold, NULL, 8, 2, q0, sizeof q0, 1},
                                    {fold, NULL, 1, 2, q1, sizeof q1, 1}};
    ap_pipeline p;
    ap_pipeline_stage st[2];
    EXPECT_EQ(ap_pipeline_init(&p, st, sizeof st, &(ap_pipeline_desc){4, 2, qi, sizeof qi, sd, 2}),
              AP_OK);
    EXPECT_EQ(st[0].in_size, 4);
    EXPECT_EQ(st[0].out_size, 8);
    EXPECT_EQ(st[1].in_size, 8);
    EXPECT_EQ(st[1].out_size, 1);
    ap_pipeline_fini(&p);
}

Test(pipeline, worker_init_rejects_bad_input)
{
    line *l = line_new(2, 4, caps4, NULL, 2);
    ap_pipeline_worker w;
    item a, b;
    const size_t z = sizeof(item);
    ap_pipeline_worker w_before;
    memset(&w, 0x6B, sizeof w);
    memcpy(&w_before, &w, sizeof w);
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z, &b, z, &l->p, 2), AP_INVAL, "stage out of range");
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z, &b, z, &l->p, SIZE_MAX), AP_INVAL);
    EXPECT_EQ(ap_pipeline_worker_init(&w, NULL, z, &b, z, &l->p, 0), AP_INVAL);
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z, NULL, z, &l->p, 0), AP_INVAL);
    /* scratch smaller than the stage's elements (issue #11) */
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z - 1, &b, z, &l->p, 0), AP_INVAL, "in short");
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z, &b, z - 1, &l->p, 0), AP_INVAL, "out short");
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, 0, &b, 0, &l->p, 1), AP_INVAL, "0 bytes");
    EXPECT(memcmp(&w, &w_before, sizeof w) == 0, "a refused worker_init wrote the worker");
    EXPECT_EQ(ap_pipeline_worker_init(&w, &a, z, &b, z, &l->p, 0), AP_INVAL, "a third worker of 2");
    EXPECT_EQ(atomic_load(&l->st[0].attached), 2, "failed inits attach nothing");
    EXPECT_EQ(atomic_load(&l->st[1].attached), 2);
    ap_pipeline_stats s;
    memset(&s, 0x77, sizeof s);
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 2, &s), AP_INVAL);
    EXPECT_EQ(s.taken, 0x7777777777777777u, "untouched on AP_INVAL");
    line_free(l);
}

/* ---- step calls ---- */

Test(pipeline, take_emit_pop_one_stage)
{
    line *l = line_new(1, 2, caps1, NULL, 1);
    ap_pipeline_worker *w = &l->w[0][0];
    item x = {7, 7}, y = {0, 0};
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_EMPTY);
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_EMPTY);
    EXPECT_EQ(ap_pipeline_try_emit(w), AP_EMPTY, "nothing held");
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_OK);
    x.id = 8, x.trail = 8;
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_OK);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_FULL, "input capacity 2");
    EXPECT_EQ(ap_pipeline_entered(&l->p), 2);
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_OK);
    EXPECT(ap_pipeline_worker_holding(w));
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_FULL, "emit first");
    EXPECT_EQ(ap_pipeline_try_emit(w), AP_OK);
    EXPECT_NOT(ap_pipeline_worker_holding(w));
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_OK);
    EXPECT_EQ(ap_pipeline_try_emit(w), AP_FULL, "output capacity 1: held");
    EXPECT(ap_pipeline_worker_holding(w));
    ap_pipeline_stats s;
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &s), AP_OK);
    EXPECT_EQ(s.taken, 2);
    EXPECT_EQ(s.emitted, 1);
    EXPECT_EQ(s.queued, 1);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(y.id, 7);
    EXPECT_EQ(y.trail, trail_after(7, 1));
    EXPECT_EQ(ap_pipeline_try_emit(w), AP_OK);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(y.id, 8);
    EXPECT_EQ(ap_pipeline_left(&l->p), 2);
    /* close: drained at once */
    ap_pipeline_close(&l->p);
    ap_pipeline_close(&l->p); /* idempotent */
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_CLOSED);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_EMPTY, "stage not finished yet");
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_CLOSED);
    EXPECT(ap_pipeline_worker_finished(w));
    EXPECT_EQ(ap_pipeline_try_take(w, NULL), AP_CLOSED, "stays finished");
    memset(&y, 0xEE, sizeof y);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_CLOSED);
    EXPECT_EQ(y.id, 0xEEEEEEEEEEEEEEEEu, "untouched unless AP_OK");
    EXPECT_EQ(ap_pipeline_entered(&l->p), 2);
    line_free(l);
}

Test(pipeline, filtered_and_failed_are_counted_not_lost)
{
    line *l = line_new(2, 32, caps4, picky, 1);
    for (uint64_t i = 0; i < 20; i++) {
        item x = {i, i};
        EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_OK);
    }
    ap_pipeline_close(&l->p);
    uint64_t out = 0;
    item y;
    size_t done;
    for (int guard = 0; guard < 1000; guard++) {
        ap_status s0 = ap_pipeline_stage_run(&l->w[0][0], 3, &done);
        ap_status s1 = ap_pipeline_stage_run(&l->w[1][0], 3, &done);
        ap_status so;
        while ((so = ap_pipeline_try_pop(&l->p, &y)) == AP_OK) {
            EXPECT_EQ(y.id % 2, 0);
            EXPECT_NE(y.id % 5, 0);
            EXPECT_EQ(y.trail, trail_after(y.id, 2));
            out++;
        }
        if (so == AP_CLOSED) {
            EXPECT_EQ(s0, AP_CLOSED);
            EXPECT_EQ(s1, AP_CLOSED);
            break;
        }
    }
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_CLOSED);
    ap_pipeline_stats a, b;
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &a), AP_OK);
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 1, &b), AP_OK);
    /* ids 0..19: %5==0 fail (4), else odd filtered (8), else pass (8) */
    EXPECT_EQ(a.taken, 20);
    EXPECT_EQ(a.failed, 4);
    EXPECT_EQ(a.filtered, 8);
    EXPECT_EQ(a.emitted, 8);
    EXPECT_EQ(a.last_error, AP_REJECTED);
    EXPECT_EQ(a.last_app_error, -16, "id 15, the last failure, beside its status");
    EXPECT_EQ(b.taken, 8);
    EXPECT_EQ(b.emitted, 8);
    EXPECT_EQ(b.filtered + b.failed, 0);
    EXPECT_EQ(out, 8);
    EXPECT_EQ(a.finished, 1);
    EXPECT_EQ(b.finished, 1);
    /* the end-to-end identity */
    EXPECT_EQ(ap_pipeline_entered(&l->p),
              ap_pipeline_left(&l->p) + a.filtered + a.failed + b.filtered + b.failed);
    line_free(l);
}

/* regression (issue #11): a filtered element is AP_FILTERED and counted in
 * filtered; a failed one is AP_EXHAUSTED (not AP_DROPPED: no overflow
 * policy dropped it) and counted in failed */
Test(pipeline, try_take_returns_filtered_for_filter_and_exhausted_for_failure)
{
    line *l = line_new(1, 4, caps4, picky, 1);
    item x = {3, 3};
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_OK);
    x.id = 10;
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &x), AP_OK);
    ap_pipeline_stats st;
    ap_pipeline_fail why = {AP_FULL, 42};
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], &why), AP_FILTERED, "filtered");
    EXPECT_EQ(why.error, AP_FULL, "@fail untouched by a filter");
    EXPECT_EQ(why.app_error, 42);
    EXPECT_NOT(ap_pipeline_worker_holding(&l->w[0][0]));
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &st), AP_OK);
    EXPECT_EQ(st.filtered, 1);
    EXPECT_EQ(st.failed, 0);
    EXPECT_EQ(st.last_error, AP_OK, "a filter is not an error");
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], NULL), AP_EXHAUSTED, "failed (NULL @fail)");
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &st), AP_OK);
    EXPECT_EQ(st.filtered, 1);
    EXPECT_EQ(st.failed, 1);
    EXPECT_EQ(st.last_error, AP_REJECTED);
    EXPECT_EQ(st.last_app_error, -11);
    EXPECT_EQ(st.taken, 2);
    line_free(l);
}

/* a stage that reports its own error codes: ids below 100 pass; id 100 + s
 * fails with status s (any ap_status, also try_take's own AP_EMPTY and
 * AP_CLOSED, and one out of range) and app_error 1000 + s */
static ap_status coded(void *ctx, const void *in, void *out, int *app_error)
{
    const item *a = in;
    if (*app_error != 0)
        return AP_CANCELED; /* must be 0 on entry, for every element */
    if (a->id >= 100) {
        *app_error = 1000 + (int)(a->id - 100);
        return (ap_status)(a->id - 100);
    }
    *app_error = 7; /* ignored: only a failure's app_error is reported */
    return fold(ctx, in, out, app_error);
}

/* regression (issue #11): a stage's app error reaches the caller beside the
 * status: try_take returns AP_EXHAUSTED, whatever fn returned, with fn's
 * status and app_error in @fail; stats keep the last pair; run futures and
 * stage_run go on past failures and leave the pair in the stats. */
Test(pipeline, stage_app_error_reaches_the_caller_beside_the_status)
{
    line *l = line_new(1, 16, caps4, coded, 1);
    ap_pipeline_worker *w = &l->w[0][0];
    static const ap_status odd[] = {AP_REJECTED, AP_EMPTY, AP_CLOSED, AP_FULL, AP_AGAIN,
                                    AP_NOT_READY, AP_DROPPED, AP_EXHAUSTED, AP_INVAL,
                                    AP_TIMEDOUT, (ap_status)40};
    size_t n = sizeof odd / sizeof odd[0];
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){100 + (uint64_t)odd[i], 0}), AP_OK);
        ap_pipeline_fail why = {AP_OK, 0};
        EXPECT_EQ(ap_pipeline_try_take(w, &why), AP_EXHAUSTED, "fn said %s",
                  ap_status_str(odd[i]));
        EXPECT_EQ(why.error, odd[i]);
        EXPECT_EQ(why.app_error, 1000 + (int)odd[i]);
        EXPECT_NOT(ap_pipeline_worker_holding(w));
        EXPECT_NOT(ap_pipeline_worker_finished(w), "fn's AP_CLOSED is not the input's");
        ap_pipeline_stats st;
        EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &st), AP_OK);
        EXPECT_EQ(st.failed, i + 1);
        EXPECT_EQ(st.last_error, odd[i]);
        EXPECT_EQ(st.last_app_error, 1000 + (int)odd[i]);
    }
    /* a success after a failure: @fail untouched, stats keep the failure */
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){1, 1}), AP_OK);
    ap_pipeline_fail why = {AP_FULL, 42};
    EXPECT_EQ(ap_pipeline_try_take(w, &why), AP_OK);
    EXPECT_EQ(why.error, AP_FULL);
    EXPECT_EQ(why.app_error, 42);
    EXPECT_EQ(ap_pipeline_try_emit(w), AP_OK);
    /* stage_run does not stop at a failure */
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){100 + AP_NOMEM, 0}), AP_OK);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){2, 2}), AP_OK);
    size_t done = 0;
    EXPECT_EQ(ap_pipeline_stage_run(w, 2, &done), AP_OK);
    EXPECT_EQ(done, 2);
    ap_pipeline_stats st;
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &st), AP_OK);
    EXPECT_EQ(st.last_error, AP_NOMEM);
    EXPECT_EQ(st.last_app_error, 1000 + AP_NOMEM);
    /* a run future: goes on to the end; the pair is in the stats */
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){100 + AP_CANCELED, 0}), AP_OK);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){3, 3}), AP_OK);
    ap_pipeline_close(&l->p);
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, w, 0);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_pipeline_run_status(&f), AP_OK, "a failed element does not fail the run");
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &st), AP_OK);
    EXPECT_EQ(st.failed, n + 2);
    EXPECT_EQ(st.emitted, 3);
    EXPECT_EQ(st.last_error, AP_CANCELED);
    EXPECT_EQ(st.last_app_error, 1000 + AP_CANCELED);
    item y;
    size_t got = 0;
    while (ap_pipeline_try_pop(&l->p, &y) == AP_OK)
        got++;
    EXPECT_EQ(got, 3);
    EXPECT_EQ(ap_pipeline_entered(&l->p), ap_pipeline_left(&l->p) + st.failed);
    line_free(l);
}

Test(pipeline, stage_run_counts_and_stops)
{
    line *l = line_new(1, 8, caps4, NULL, 1);
    ap_pipeline_worker *w = &l->w[0][0];
    for (uint64_t i = 0; i < 8; i++)
        EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){i, i}), AP_OK);
    size_t done = 99;
    EXPECT_EQ(ap_pipeline_stage_run(w, 0, &done), AP_OK, "0: only emit what is held");
    EXPECT_EQ(done, 0);
    EXPECT_EQ(ap_pipeline_stage_run(w, 3, &done), AP_OK);
    EXPECT_EQ(done, 3);
    EXPECT_EQ(ap_pipeline_stage_run(w, 10, &done), AP_FULL, "output holds 4");
    EXPECT_EQ(done, 2, "took 2 more: one queued, one held");
    EXPECT(ap_pipeline_worker_holding(w));
    EXPECT_EQ(ap_pipeline_stage_run(w, 0, NULL), AP_FULL, "still full, still held");
    item y;
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(y.id, 0);
    EXPECT_EQ(ap_pipeline_stage_run(w, 0, &done), AP_OK, "the held one goes");
    EXPECT_EQ(done, 0);
    EXPECT_NOT(ap_pipeline_worker_holding(w));
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(ap_pipeline_stage_run(w, 10, &done), AP_EMPTY);
    EXPECT_EQ(done, 3);
    ap_pipeline_close(&l->p);
    EXPECT_EQ(ap_pipeline_stage_run(w, 10, &done), AP_CLOSED);
    EXPECT_EQ(done, 0);
    EXPECT(ap_pipeline_worker_finished(w));
    line_free(l);
}

Test(pipeline, close_propagates_only_after_every_worker_of_a_stage)
{
    line *l = line_new(2, 8, caps4, NULL, 2);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){1, 1}), AP_OK);
    ap_pipeline_close(&l->p);
    /* worker 0 of stage 0 takes the element; worker 1 finds it drained */
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], NULL), AP_OK);
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][1], NULL), AP_CLOSED);
    EXPECT_NOT(ap_mpmc_is_closed(&l->st[0].out), "worker 0 still holds an element");
    EXPECT_EQ(ap_pipeline_try_emit(&l->w[0][0]), AP_OK);
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], NULL), AP_CLOSED);
    EXPECT(ap_mpmc_is_closed(&l->st[0].out), "the last finisher closed it");
    EXPECT_NOT(ap_mpmc_is_closed(&l->st[1].out));
    EXPECT_EQ(ap_pipeline_try_take(&l->w[1][1], NULL), AP_OK);
    EXPECT_EQ(ap_pipeline_try_take(&l->w[1][0], NULL), AP_CLOSED);
    EXPECT_EQ(ap_pipeline_try_emit(&l->w[1][1]), AP_OK);
    item y;
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(y.trail, trail_after(1, 2));
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_EMPTY, "stage 1 not finished");
    EXPECT_EQ(ap_pipeline_try_take(&l->w[1][1], NULL), AP_CLOSED);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_CLOSED);
    line_free(l);
}

/* ---- futures ---- */

Test(pipeline, push_and_pop_futures_wait_and_count)
{
    line *l = line_new(1, 1, caps1, NULL, 1);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    item a = {1, 1}, b = {2, 2}, y = {0, 0};
    ap_pipeline_pop_fut pf;
    ap_pipeline_pop_fut_init(&pf, &l->p, &y);
    EXPECT_EQ(ap_pipeline_pop_poll(&pf, &cx), AP_PENDING);
    EXPECT_EQ(ap_pipeline_pop_status(&pf), AP_NOT_READY);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &a), AP_OK);
    ap_pipeline_push_fut f;
    ap_pipeline_push_fut_init(&f, &l->p, &b);
    EXPECT_EQ(ap_pipeline_push_poll(&f, &cx), AP_PENDING, "input full");
    int before = calls(&t);
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], NULL), AP_OK); /* frees the input slot */
    EXPECT_GT(calls(&t), before, "the push future was woken");
    EXPECT_EQ(ap_pipeline_push_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_pipeline_push_status(&f), AP_OK);
    EXPECT_EQ(ap_pipeline_entered(&l->p), 2, "futures count too");
    before = calls(&t);
    EXPECT_EQ(ap_pipeline_try_emit(&l->w[0][0]), AP_OK);
    EXPECT_GT(calls(&t), before, "the pop future was woken");
    EXPECT_EQ(ap_pipeline_pop_poll(&pf, &cx), AP_READY);
    EXPECT_EQ(ap_pipeline_pop_status(&pf), AP_OK);
    EXPECT_EQ(y.id, 1);
    EXPECT_EQ(ap_pipeline_left(&l->p), 1);
    /* cancel: idempotent, takes nothing */
    ap_pipeline_pop_fut_init(&pf, &l->p, &y);
    EXPECT_EQ(ap_pipeline_pop_poll(&pf, &cx), AP_PENDING);
    ap_pipeline_pop_cancel(&pf);
    ap_pipeline_pop_cancel(&pf);
    EXPECT_EQ(ap_pipeline_pop_status(&pf), AP_CANCELED);
    ap_pipeline_push_fut_init(&f, &l->p, &b);
    EXPECT_EQ(ap_pipeline_push_poll(&f, &cx), AP_PENDING);
    ap_pipeline_push_cancel(&f);
    EXPECT_EQ(ap_pipeline_push_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_pipeline_entered(&l->p), 2);
    /* wait forms with a deadline already passed */
    EXPECT_EQ(ap_pipeline_push_wait(&l->p, &b, 0), AP_TIMEDOUT);
    line_free(l);
}

/* poll every run future round-robin, as one event loop would */
static size_t drive_runs(ap_pipeline_run_fut *f, size_t n, ap_cx *cx, size_t max_rounds)
{
    size_t rounds = 0;
    for (; rounds < max_rounds; rounds++) {
        size_t ready = 0;
        for (size_t i = 0; i < n; i++)
            ready += ap_pipeline_run_poll(&f[i], cx) == AP_READY;
        if (ready == n)
            break;
    }
    return rounds;
}

Test(pipeline, run_futures_drain_a_line_in_one_loop)
{
    line *l = line_new(3, 4, caps1, NULL, 1);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_pipeline_run_fut f[3];
    for (size_t i = 0; i < 3; i++)
        ap_pipeline_run_fut_init(&f[i], &l->w[i][0], 2);
    uint64_t next = 0, got = 0;
    item y;
    for (int round = 0; round < 10000 && got < 100; round++) {
        while (next < 100 && ap_pipeline_try_push(&l->p, &(item){next, next}) == AP_OK)
            next++;
        for (size_t i = 0; i < 3; i++)
            EXPECT_EQ(ap_pipeline_run_poll(&f[i], &cx), AP_PENDING);
        while (ap_pipeline_try_pop(&l->p, &y) == AP_OK) {
            EXPECT_EQ(y.id, got, "FIFO");
            EXPECT_EQ(y.trail, trail_after(got, 3));
            got++;
        }
    }
    EXPECT_EQ(got, 100);
    ap_pipeline_close(&l->p);
    EXPECT_LT(drive_runs(f, 3, &cx, 100), 100);
    for (size_t i = 0; i < 3; i++) {
        EXPECT_EQ(ap_pipeline_run_status(&f[i]), AP_OK);
        EXPECT(ap_pipeline_worker_finished(&l->w[i][0]));
        EXPECT_EQ(ap_pipeline_run_poll(&f[i], &cx), AP_READY, "stays ready");
    }
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_CLOSED);
    line_free(l);
}

Test(pipeline, run_future_budget_yields_with_a_wake)
{
    line *l = line_new(1, 16, (const size_t[]){16}, NULL, 1);
    for (uint64_t i = 0; i < 10; i++)
        EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){i, i}), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &l->w[0][0], 4);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(calls(&t), 1, "woke itself: more work is there");
    ap_pipeline_stats s;
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &s), AP_OK);
    EXPECT_EQ(s.taken, 4);
    EXPECT_EQ(s.emitted, 4);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_PENDING); /* 8 + 2, then empty */
    EXPECT_EQ(ap_pipeline_stats_get(&l->p, 0, &s), AP_OK);
    EXPECT_EQ(s.taken, 10);
    EXPECT_EQ(calls(&t), 2, "the third poll waits on the input, no self-wake");
    /* close wakes the waiting run future */
    ap_pipeline_close(&l->p);
    EXPECT_EQ(calls(&t), 3);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_pipeline_run_status(&f), AP_OK);
    /* budget 0 means the default */
    ap_pipeline_run_fut g;
    ap_pipeline_run_fut_init(&g, &l->w[0][0], 0);
    EXPECT_EQ(g.budget, 64);
    line_free(l);
}

Test(pipeline, run_future_cancel_keeps_the_held_element)
{
    line *l = line_new(1, 4, caps1, NULL, 1);
    for (uint64_t i = 0; i < 2; i++)
        EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){i, i}), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &l->w[0][0], 0);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_PENDING, "blocked on the full output");
    EXPECT(ap_pipeline_worker_holding(&l->w[0][0]));
    ap_pipeline_run_cancel(&f);
    ap_pipeline_run_cancel(&f);
    EXPECT_EQ(ap_pipeline_run_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_READY);
    int before = calls(&t);
    item y;
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(calls(&t), before, "no wake after cancel");
    EXPECT(ap_pipeline_worker_holding(&l->w[0][0]), "still held");
    /* a new run future resumes and finishes */
    ap_pipeline_close(&l->p);
    ap_pipeline_run_fut_init(&f, &l->w[0][0], 0);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_pipeline_run_status(&f), AP_OK);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_OK);
    EXPECT_EQ(y.id, 1);
    EXPECT_EQ(ap_pipeline_try_pop(&l->p, &y), AP_CLOSED);
    /* cancel of a pending pop takes nothing */
    line_free(l);
    l = line_new(1, 4, caps1, NULL, 1);
    ap_pipeline_run_fut_init(&f, &l->w[0][0], 0);
    EXPECT_EQ(ap_pipeline_run_poll(&f, &cx), AP_PENDING, "empty input");
    ap_pipeline_run_cancel(&f);
    EXPECT_EQ(ap_pipeline_try_push(&l->p, &(item){5, 5}), AP_OK);
    EXPECT_EQ(ap_pipeline_try_take(&l->w[0][0], NULL), AP_OK, "still in the input");
    line_free(l);
}

/* threads: one per stage worker (ap_block_on), a producer, a consumer */
typedef struct th_arg {
    line *l;
    size_t stage, worker;
    uint64_t n;
    uint64_t got;
    bool fifo_ok;
} th_arg;

static void *th_worker(void *arg)
{
    th_arg *a = arg;
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &a->l->w[a->stage][a->worker], 8);
    ap_block_on(&f.base);
    return NULL;
}

static void *th_producer(void *arg)
{
    th_arg *a = arg;
    for (uint64_t i = 0; i < a->n; i++)
        if (ap_pipeline_push_wait(&a->l->p, &(item){i, i}, AP_DEADLINE_NONE) != AP_OK)
            return NULL;
    ap_pipeline_close(&a->l->p);
    return NULL;
}

Test(pipeline, threads_one_worker_per_stage_keep_fifo)
{
    line *l = line_new(4, 2, (const size_t[]){1, 2, 1, 3}, NULL, 1);
    pthread_t th[5];
    th_arg wa[4], pa = {l, 0, 0, 5000, 0, true};
    for (size_t i = 0; i < 4; i++) {
        wa[i] = (th_arg){l, i, 0, 0, 0, true};
        EXPECT(pthread_create(&th[i], NULL, th_worker, &wa[i]) == 0);
    }
    EXPECT(pthread_create(&th[4], NULL, th_producer, &pa) == 0);
    item y;
    uint64_t got = 0;
    ap_status st;
    while ((st = ap_pipeline_pop_wait(&l->p, &y, AP_DEADLINE_NONE)) == AP_OK) {
        if (y.id != got || y.trail != trail_after(got, 4))
            break;
        got++;
    }
    EXPECT_EQ(st, AP_CLOSED);
    EXPECT_EQ(got, 5000);
    for (size_t i = 0; i < 5; i++)
        pthread_join(th[i], NULL);
    line_free(l);
}

/* ---- the throughput theorem: discrete-event simulation ---- */

#define SIM_N 400
#define SIM_NONE UINT64_MAX

enum sim_fault { F_NONE, F_SERIAL, F_FILTER, F_SWAP };

typedef struct sim_res {
    uint64_t done_t[SIM_N]; /* completion time of the k-th output */
    uint64_t done_id[SIM_N];
    size_t completed;
    size_t bad_trail, over_cap, stuck, bad_status, identity;
} sim_res;

/* F_SWAP: a first stage that swaps the labels of neighbours (2n <-> 2n+1),
 * which the checker cannot tell from a reorder. */
static ap_status swapper(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    const item *a = in;
    ((item *)out)->id = a->id ^ 1u;
    ((item *)out)->trail = a->trail * 31u + 1u;
    return AP_OK;
}

static ap_status filter97(void *ctx, const void *in, void *out, int *app_error)
{
    if (((const item *)in)->id == 97)
        return AP_FILTERED;
    return fold(ctx, in, out, app_error);
}

static void simulate(size_t k, const uint64_t *S, size_t cin, const size_t *cap,
                     enum sim_fault fault, sim_res *r)
{
    line *l = aligned_alloc(AP_CACHELINE, ap__align_up(sizeof(line), AP_CACHELINE));
    EXPECT(l != NULL);
    EXPECT_EQ(line_init(l, k, cin, cap, NULL, 1), AP_OK);
    if (fault == F_FILTER)
        l->st[k - 1].fn = filter97;
    if (fault == F_SWAP) {
        l->st[0].fn = swapper;
    }
    for (size_t i = 0; i < k; i++)
        EXPECT_EQ(ap_pipeline_worker_init(&l->w[i][0], &l->in[i][0], sizeof(item), &l->out[i][0],
                                          sizeof(item), &l->p, i),
                  AP_OK);
    memset(r, 0, sizeof *r);
    uint64_t busy_until[MAXK] = {0};
    bool serving[MAXK] = {false};
    uint64_t t = 0, next = 0;
    bool closed = false;
    for (;;) {
        bool progress;
        do {
            progress = false;
            while (next < SIM_N) {
                ap_status st = ap_pipeline_try_push(&l->p, &(item){next, next});
                if (st != AP_OK) {
                    r->bad_status += st != AP_FULL;
                    break;
                }
                next++;
                progress = true;
            }
            if (next == SIM_N && !closed) {
                ap_pipeline_close(&l->p); /* after the last item: drain */
                closed = true;
            }
            for (size_t i = 0; i < k; i++) {
                ap_pipeline_worker *w = &l->w[i][0];
                if (serving[i] && busy_until[i] <= t) {
                    ap_status st = ap_pipeline_try_emit(w);
                    if (st == AP_OK) {
                        serving[i] = false;
                        progress = true;
                    } else {
                        r->bad_status += st != AP_FULL;
                    }
                }
                bool others_busy = false;
                for (size_t j = 0; j < k; j++)
                    others_busy |= j != i && serving[j] && busy_until[j] > t;
                if (!serving[i] && !(fault == F_SERIAL && others_busy)) {
                    ap_status st = ap_pipeline_try_take(w, NULL);
                    if (st == AP_OK) {
                        serving[i] = true;
                        busy_until[i] = t + S[i];
                        progress = true;
                    } else if (st == AP_FILTERED || st == AP_EXHAUSTED) {
                        progress = true;
                    } else {
                        r->bad_status += st != AP_EMPTY && st != AP_CLOSED;
                    }
                }
                if (ap_mpmc_len(&l->st[i].out) > cap[i])
                    r->over_cap++;
            }
            if (ap_mpmc_len(&l->p.in) > cin)
                r->over_cap++;
            item y;
            ap_status st;
            while ((st = ap_pipeline_try_pop(&l->p, &y)) == AP_OK) {
                if (r->completed < SIM_N) {
                    r->done_t[r->completed] = t;
                    r->done_id[r->completed] = y.id;
                }
                r->completed++;
                r->bad_trail += y.trail != trail_after(y.id, k) && fault != F_SWAP;
                progress = true;
            }
            if (st == AP_CLOSED)
                goto drained;
        } while (progress);
        uint64_t t_next = SIM_NONE;
        for (size_t i = 0; i < k; i++)
            if (serving[i] && busy_until[i] > t && busy_until[i] < t_next)
                t_next = busy_until[i];
        if (t_next == SIM_NONE) {
            r->stuck++;
            break;
        }
        t = t_next;
    }
drained:;
    /* the counters' identity after drain */
    uint64_t lost = 0;
    for (size_t i = 0; i < k; i++) {
        ap_pipeline_stats s;
        EXPECT_EQ(ap_pipeline_stats_get(&l->p, i, &s), AP_OK);
        lost += s.filtered + s.failed;
        if (s.taken != s.emitted + s.filtered + s.failed)
            r->identity++;
    }
    if (ap_pipeline_entered(&l->p) != ap_pipeline_left(&l->p) + lost ||
        ap_pipeline_entered(&l->p) != SIM_N)
        r->identity++;
    ap_pipeline_fini(&l->p);
    free(l);
}

/* The checker: NULL if the run satisfies the theorem, else what broke. */
static const char *theorem_check(size_t k, const uint64_t *S, const sim_res *r, char *why,
                                 size_t whylen)
{
    uint64_t sum = 0, max = 0;
    for (size_t i = 0; i < k; i++) {
        sum += S[i];
        max = S[i] > max ? S[i] : max;
    }
    if (r->stuck || r->bad_status || r->over_cap || r->bad_trail || r->identity) {
        snprintf(why, whylen, "stuck %zu bad-status %zu over-cap %zu bad-trail %zu identity %zu",
                 r->stuck, r->bad_status, r->over_cap, r->bad_trail, r->identity);
        return why;
    }
    if (r->completed != SIM_N) {
        snprintf(why, whylen, "%zu of %d items came out", r->completed, SIM_N);
        return why;
    }
    for (size_t n = 0; n < SIM_N; n++) {
        if (r->done_id[n] != n) {
            snprintf(why, whylen, "output %zu is item %llu (not FIFO)", n,
                     (unsigned long long)r->done_id[n]);
            return why;
        }
        if (r->done_t[n] != sum + n * max) {
            snprintf(why, whylen, "item %zu left at %llu, theorem says %llu", n,
                     (unsigned long long)r->done_t[n], (unsigned long long)(sum + n * max));
            return why;
        }
    }
    /* the rate over the second half, stated as the theorem is */
    uint64_t span = r->done_t[SIM_N - 1] - r->done_t[SIM_N / 2];
    if (span != (uint64_t)(SIM_N - 1 - SIM_N / 2) * max) {
        snprintf(why, whylen, "rate: %llu ns for %d items", (unsigned long long)span,
                 SIM_N - 1 - SIM_N / 2);
        return why;
    }
    return NULL;
}

typedef struct sim_cfg { size_t k; uint64_t S[MAXK]; } sim_cfg;
static const sim_cfg sim_cfgs[] = {
    {1, {4}},
    {2, {1, 7}},
    {2, {7, 1}},
    {3, {3, 5, 2}},
    {3, {5, 5, 5}},
    {4, {1, 1, 1, 1}},
    {4, {6, 1, 6, 1}},
    {5, {2, 3, 5, 7, 11}},
    {5, {11, 7, 5, 3, 2}},
    {5, {2, 9, 2, 9, 3}},
    {6, {1, 2, 13, 1, 13, 4}},
    {8, {3, 1, 4, 1, 5, 9, 2, 6}},
};

Test(pipeline, theorem_throughput_is_the_slowest_stage_exactly)
{
    static sim_res r;
    static const size_t uni[] = {1, 2, 3, 8};
    char why[160];
    size_t runs = 0;
    for (size_t c = 0; c < sizeof sim_cfgs / sizeof sim_cfgs[0]; c++) {
        const sim_cfg *cf = &sim_cfgs[c];
        /* uniform buffers, including 1, and the input buffer likewise */
        for (size_t u = 0; u < sizeof uni / sizeof uni[0]; u++) {
            size_t cap[MAXK];
            for (size_t i = 0; i < MAXK; i++)
                cap[i] = uni[u];
            simulate(cf->k, cf->S, uni[u], cap, F_NONE, &r);
            const char *bad = theorem_check(cf->k, cf->S, &r, why, sizeof why);
            EXPECT_NULL(bad, "config %zu, buffers %zu: %s", c, uni[u], bad ? bad : "");
            runs++;
        }
        /* mixed buffers: 1 before the bottleneck, larger elsewhere */
        size_t cap[MAXK];
        for (size_t i = 0; i < MAXK; i++)
            cap[i] = 1 + (i * 5) % 7;
        simulate(cf->k, cf->S, 1, cap, F_NONE, &r);
        const char *bad = theorem_check(cf->k, cf->S, &r, why, sizeof why);
        EXPECT_NULL(bad, "config %zu, mixed buffers: %s", c, bad ? bad : "");
        runs++;
    }
    EXPECT_EQ(runs, 12 * 5);
}

Test(pipeline, theorem_negative_controls_are_flagged)
{
    static sim_res r;
    char why[160];
    const size_t cap[MAXK] = {2, 2, 2, 2, 2, 2, 2, 2};
    size_t flagged = 0, tried = 0;
    for (size_t c = 0; c < sizeof sim_cfgs / sizeof sim_cfgs[0]; c++) {
        const sim_cfg *cf = &sim_cfgs[c];
        if (cf->k < 2)
            continue;
        /* (a) no overlap between stages: rate 1 / sum S */
        simulate(cf->k, cf->S, 2, cap, F_SERIAL, &r);
        const char *bad = theorem_check(cf->k, cf->S, &r, why, sizeof why);
        EXPECT_NOT_NULL(bad, "serial driver not flagged, config %zu", c);
        flagged += bad != NULL;
        tried++;
        if (bad && c == 3)
            cr_log_info("serial control: %s", bad);
    }
    /* (b) an item filtered out, (c) neighbours swapped */
    simulate(3, sim_cfgs[3].S, 2, cap, F_FILTER, &r);
    const char *bad = theorem_check(3, sim_cfgs[3].S, &r, why, sizeof why);
    EXPECT_NOT_NULL(bad, "filtering stage not flagged");
    cr_log_info("filter control: %s", bad ? bad : "(none)");
    simulate(3, sim_cfgs[3].S, 2, cap, F_SWAP, &r);
    bad = theorem_check(3, sim_cfgs[3].S, &r, why, sizeof why);
    EXPECT_NOT_NULL(bad, "reordering stage not flagged");
    cr_log_info("swap control: %s", bad ? bad : "(none)");
    EXPECT_EQ(flagged, tried);
}

/* ---- preconditions ---- */

Test(pipeline, push_after_fini_asserts, .signal = SIGABRT)
{
    line *l = line_new(1, 2, caps1, NULL, 1);
    ap_pipeline_fini(&l->p);
    ap_status st = ap_pipeline_try_push(&l->p, &(item){0, 0});
    cr_log_error("try_push after fini returned %d", (int)st);
}
