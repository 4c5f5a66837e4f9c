/*
 * bench/bench_pipeline.c -- asyncpat/pipeline.h and asyncpat/batch.h
 *
 * Scenarios
 *   pipeline_3stage_5t  a producer thread, three stage threads, the
 *                       consumer (the timing thread): uint64_t items, each
 *                       stage adds 1, every queue holds 64. ap_pipeline with
 *                       one run future per stage driven by ap_block_on,
 *                       against the naive design: four mutex+condvar bounded
 *                       queues (bench/peers/mutex_queue.h) chained by three
 *                       threads that pop, apply, push. Mops/s end to end.
 *   batch_handoff_2t    a producer thread hands uint64_t items to a
 *                       consumer thread: through an ap_batch (max_size
 *                       64, max_delay 100 us; the consumer waits with
 *                       ap_batch_take_wait) against one mutex+condvar queue
 *                       hand-off per item. Mops/s.
 *   batch_completion_2t the same producer -> consumer, each item with a
 *                       completion: the producer adds with
 *                       ap_batch_add_done (a ring of 256 records, a record
 *                       reused once its status is final), the consumer
 *                       takes with a take future (ap_batch_take_id) and
 *                       reports ap_batch_complete(id, AP_OK), which runs
 *                       each record's callback; vs the same loop with
 *                       ap_batch_add and no records (the batch_handoff_2t
 *                       shape, tracked take + complete as well), so the
 *                       ratio is what completions cost. Mops/s.
 *
 * Self-check: every item comes out exactly once, in order, with each
 * stage's +1 applied (FIFO end to end), and the counters add up; with
 * completions, every record resolves once, with AP_OK, in add order, and
 * the batcher's completed counter equals the items.
 */
#include "asyncpat/pipeline.h"
#include "asyncpat/batch.h"
#include "bench.h"
#include "peers/mutex_queue.h"

#include <pthread.h>

#define PL_CAP 64
#define PL_K 3

static ap_status add1(void *ctx, const void *in, void *out, int *app_error)
{
    (void)app_error;
    (void)ctx;
    *(uint64_t *)out = *(const uint64_t *)in + 1;
    return AP_OK;
}

typedef struct pl_bench {
    ap_pipeline p;
    ap_pipeline_stage st[PL_K];
    ap_pipeline_worker w[PL_K];
    uint64_t in[PL_K], out[PL_K];
    _Alignas(64) unsigned char q[PL_K + 1][AP_MPMC_BYTES(PL_CAP, sizeof(uint64_t))];
    uint64_t budget_ns;
    uint64_t pushed;
} pl_bench;

static void *pl_stage_main(void *arg)
{
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, (ap_pipeline_worker *)arg, 0);
    ap_block_on(&f.base);
    return NULL;
}

static void *pl_producer_main(void *arg)
{
    pl_bench *b = arg;
    uint64_t t0 = bench_now_ns(), i = 0;
    do {
        for (uint64_t end = i + 1024; i < end; i++)
            if (ap_pipeline_push_wait(&b->p, &i, AP_DEADLINE_NONE) != AP_OK)
                bench_fail("pipeline push_wait");
    } while (bench_now_ns() - t0 < b->budget_ns);
    b->pushed = i;
    ap_pipeline_close(&b->p);
    return NULL;
}

static uint64_t run_pipeline(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    pl_bench *b = aligned_alloc(64, ap__align_up(sizeof *b, 64));
    if (b == NULL)
        bench_fail("out of memory");
    ap_pipeline_stage_desc sd[PL_K];
    for (int i = 0; i < PL_K; i++)
        sd[i] = (ap_pipeline_stage_desc){add1, NULL, sizeof(uint64_t), PL_CAP, b->q[i + 1],
                                         sizeof b->q[i + 1], 1};
    ap_pipeline_desc d = {sizeof(uint64_t), PL_CAP, b->q[0], sizeof b->q[0], sd, PL_K};
    if (ap_pipeline_init(&b->p, b->st, sizeof b->st, &d) != AP_OK)
        bench_fail("ap_pipeline_init");
    for (int i = 0; i < PL_K; i++)
        if (ap_pipeline_worker_init(&b->w[i], &b->in[i], sizeof b->in[i], &b->out[i],
                                    sizeof b->out[i], &b->p, (size_t)i) != AP_OK)
            bench_fail("ap_pipeline_worker_init");
    b->budget_ns = budget_ns;
    pthread_t th[PL_K + 1];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < PL_K; i++)
        pthread_create(&th[i], NULL, pl_stage_main, &b->w[i]);
    pthread_create(&th[PL_K], NULL, pl_producer_main, b);
    uint64_t v, next = 0, bad = 0;
    while (ap_pipeline_pop_wait(&b->p, &v, AP_DEADLINE_NONE) == AP_OK)
        bad += v != next++ + PL_K;
    uint64_t t1 = bench_now_ns();
    for (int i = 0; i <= PL_K; i++)
        pthread_join(th[i], NULL);
    if (bad || next != b->pushed || ap_pipeline_entered(&b->p) != next ||
        ap_pipeline_left(&b->p) != next)
        bench_fail("pipeline: %llu bad, %llu out of %llu", (unsigned long long)bad,
                   (unsigned long long)next, (unsigned long long)b->pushed);
    ap_pipeline_fini(&b->p);
    free(b);
    *iters = next;
    return t1 - t0;
}

typedef struct mq_bench {
    mutex_queue q[PL_K + 1];
    uint64_t budget_ns, pushed;
} mq_bench;

typedef struct mq_stage { mq_bench *b; int i; } mq_stage;
#define MQ_END UINT64_MAX

static void *mq_stage_main(void *arg)
{
    mq_stage *s = arg;
    for (;;) {
        uint64_t v = mutex_queue_pop(&s->b->q[s->i]);
        if (v == MQ_END) {
            mutex_queue_push(&s->b->q[s->i + 1], MQ_END);
            return NULL;
        }
        mutex_queue_push(&s->b->q[s->i + 1], v + 1);
    }
}

static void *mq_producer_main(void *arg)
{
    mq_bench *b = arg;
    uint64_t t0 = bench_now_ns(), i = 0;
    do {
        for (uint64_t end = i + 1024; i < end; i++)
            mutex_queue_push(&b->q[0], i);
    } while (bench_now_ns() - t0 < b->budget_ns);
    b->pushed = i;
    mutex_queue_push(&b->q[0], MQ_END);
    return NULL;
}

static uint64_t run_mutex_chain(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    mq_bench b;
    for (int i = 0; i <= PL_K; i++)
        if (mutex_queue_init(&b.q[i], PL_CAP) != 0)
            bench_fail("mutex_queue_init");
    b.budget_ns = budget_ns;
    pthread_t th[PL_K + 1];
    mq_stage st[PL_K];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < PL_K; i++) {
        st[i] = (mq_stage){&b, i};
        pthread_create(&th[i], NULL, mq_stage_main, &st[i]);
    }
    pthread_create(&th[PL_K], NULL, mq_producer_main, &b);
    uint64_t v, next = 0, bad = 0;
    while ((v = mutex_queue_pop(&b.q[PL_K])) != MQ_END)
        bad += v != next++ + PL_K;
    uint64_t t1 = bench_now_ns();
    for (int i = 0; i <= PL_K; i++)
        pthread_join(th[i], NULL);
    if (bad || next != b.pushed)
        bench_fail("mutex chain: %llu bad, %llu of %llu", (unsigned long long)bad,
                   (unsigned long long)next, (unsigned long long)b.pushed);
    for (int i = 0; i <= PL_K; i++)
        mutex_queue_fini(&b.q[i]);
    *iters = next;
    return t1 - t0;
}

/* ---- batch hand-off ---- */

#define BT_MAX 64
typedef struct bt_bench {
    ap_batch b;
    uint64_t buf[BT_MAX];
    uint64_t budget_ns, pushed;
} bt_bench;

static void *bt_producer_main(void *arg)
{
    bt_bench *t = arg;
    uint64_t t0 = bench_now_ns(), i = 0;
    unsigned fails = 0;
    do {
        /* ap_now_ns once per 1024 adds: the same clock as the consumer's
         * take future, read coarsely (ages are at most ~1024 adds stale) */
        uint64_t now = ap_now_ns();
        for (uint64_t end = i + 1024; i < end; i++) {
            ap_status st;
            while ((st = ap_batch_add(&t->b, &i, now, NULL)) == AP_FULL)
                bench_backoff(&fails); /* the consumer is behind */
            if (st != AP_OK)
                bench_fail("ap_batch_add: %s", ap_status_str(st));
            fails = 0;
        }
    } while (bench_now_ns() - t0 < t->budget_ns);
    t->pushed = i;
    ap_batch_close(&t->b);
    return NULL;
}

static uint64_t run_batch(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    bt_bench *t = malloc(sizeof *t);
    if (t == NULL)
        bench_fail("out of memory");
    ap_batch_desc d = {.elem_size = sizeof(uint64_t), .max_size = BT_MAX,
                       .max_delay_ns = 100 * AP_NS_PER_US};
    if (ap_batch_init(&t->b, t->buf, sizeof t->buf, &d) != AP_OK)
        bench_fail("ap_batch_init");
    t->budget_ns = budget_ns;
    pthread_t th;
    uint64_t t0 = bench_now_ns();
    pthread_create(&th, NULL, bt_producer_main, t);
    uint64_t out[BT_MAX], next = 0, bad = 0;
    size_t n;
    while (ap_batch_take_wait(&t->b, out, &n, AP_DEADLINE_NONE) == AP_OK)
        for (size_t j = 0; j < n; j++)
            bad += out[j] != next++;
    uint64_t t1 = bench_now_ns();
    pthread_join(th, NULL);
    ap_batch_stats s;
    ap_batch_stats_get(&t->b, &s);
    if (bad || next != t->pushed || s.added != next)
        bench_fail("batch: %llu bad, %llu of %llu", (unsigned long long)bad,
                   (unsigned long long)next, (unsigned long long)t->pushed);
    ap_batch_fini(&t->b);
    free(t);
    *iters = next;
    return t1 - t0;
}

/* ---- batch completions ---- */

#define BC_RECS 256 /* completion records in flight at most (4 batches) */
typedef struct bc_bench {
    ap_batch b;
    uint64_t buf[BT_MAX];
    ap_batch_done rec[BC_RECS];
    int with_done;
    uint64_t budget_ns, pushed;
    uint64_t resolved, bad_cb; /* written by the callbacks (consumer thread) */
} bc_bench;

static void bc_done_cb(void *ctx, ap_batch_done *d, ap_status status)
{
    bc_bench *t = ctx;
    /* records resolve in add order: record i % BC_RECS for the i-th item */
    t->bad_cb += status != AP_OK || d != &t->rec[t->resolved % BC_RECS];
    t->resolved++;
}

static void *bc_producer_main(void *arg)
{
    bc_bench *t = arg;
    uint64_t t0 = bench_now_ns(), i = 0;
    unsigned fails = 0;
    do {
        uint64_t now = ap_now_ns(); /* as run_batch: once per 1024 adds */
        for (uint64_t end = i + 1024; i < end; i++) {
            ap_status st;
            if (t->with_done) {
                ap_batch_done *d = &t->rec[i % BC_RECS];
                /* reuse a record once its batch completed it */
                while (i >= BC_RECS && ap_batch_done_status(d) == AP_NOT_READY)
                    bench_backoff(&fails);
                fails = 0;
                while ((st = ap_batch_add_done(&t->b, &i, now, NULL, d)) == AP_FULL)
                    bench_backoff(&fails);
            } else {
                while ((st = ap_batch_add(&t->b, &i, now, NULL)) == AP_FULL)
                    bench_backoff(&fails);
            }
            if (st != AP_OK)
                bench_fail("ap_batch_add%s: %s", t->with_done ? "_done" : "",
                           ap_status_str(st));
            fails = 0;
        }
    } while (bench_now_ns() - t0 < t->budget_ns);
    t->pushed = i;
    ap_batch_close(&t->b);
    return NULL;
}

static uint64_t run_batch_completion(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    bc_bench *t = malloc(sizeof *t);
    if (t == NULL)
        bench_fail("out of memory");
    memset(t, 0, sizeof *t);
    t->with_done = ctx != NULL;
    ap_batch_desc d = {.elem_size = sizeof(uint64_t), .max_size = BT_MAX,
                       .max_delay_ns = 100 * AP_NS_PER_US};
    if (ap_batch_init(&t->b, t->buf, sizeof t->buf, &d) != AP_OK)
        bench_fail("ap_batch_init");
    for (int i = 0; i < BC_RECS; i++)
        ap_batch_done_init(&t->rec[i], bc_done_cb, t);
    t->budget_ns = budget_ns;
    pthread_t th;
    uint64_t t0 = bench_now_ns();
    pthread_create(&th, NULL, bc_producer_main, t);
    uint64_t out[BT_MAX], next = 0, bad = 0;
    for (;;) { /* a tracked take: ship the batch, then report its outcome */
        ap_batch_take_fut f;
        ap_batch_take_fut_init(&f, &t->b, out);
        ap_block_on(&f.base);
        if (ap_batch_take_status(&f) != AP_OK)
            break;
        size_t n = ap_batch_take_count(&f);
        for (size_t j = 0; j < n; j++)
            bad += out[j] != next++;
        if (ap_batch_complete(&t->b, ap_batch_take_id(&f), AP_OK) != AP_OK)
            bench_fail("ap_batch_complete");
    }
    uint64_t t1 = bench_now_ns();
    pthread_join(th, NULL);
    ap_batch_stats s;
    ap_batch_stats_get(&t->b, &s);
    uint64_t want = t->with_done ? next : 0;
    if (bad || next != t->pushed || s.added != next || t->resolved != want || t->bad_cb ||
        s.completed != want)
        bench_fail("batch_completion: %llu bad, %llu of %llu, %llu resolved (%llu out of "
                   "order or not AP_OK), %llu completed, %llu expected",
                   (unsigned long long)bad, (unsigned long long)next,
                   (unsigned long long)t->pushed, (unsigned long long)t->resolved,
                   (unsigned long long)t->bad_cb, (unsigned long long)s.completed,
                   (unsigned long long)want);
    ap_batch_fini(&t->b);
    free(t);
    *iters = next;
    return t1 - t0;
}

typedef struct mh_bench { mutex_queue q; uint64_t budget_ns, pushed; } mh_bench;

static void *mh_producer_main(void *arg)
{
    mh_bench *m = arg;
    uint64_t t0 = bench_now_ns(), i = 0;
    do {
        for (uint64_t end = i + 1024; i < end; i++)
            mutex_queue_push(&m->q, i);
    } while (bench_now_ns() - t0 < m->budget_ns);
    m->pushed = i;
    mutex_queue_push(&m->q, MQ_END);
    return NULL;
}

static uint64_t run_mutex_handoff(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    mh_bench m;
    if (mutex_queue_init(&m.q, BT_MAX) != 0)
        bench_fail("mutex_queue_init");
    m.budget_ns = budget_ns;
    pthread_t th;
    uint64_t t0 = bench_now_ns();
    pthread_create(&th, NULL, mh_producer_main, &m);
    uint64_t v, next = 0, bad = 0;
    while ((v = mutex_queue_pop(&m.q)) != MQ_END)
        bad += v != next++;
    uint64_t t1 = bench_now_ns();
    pthread_join(th, NULL);
    if (bad || next != m.pushed)
        bench_fail("mutex hand-off: %llu bad", (unsigned long long)bad);
    mutex_queue_fini(&m.q);
    *iters = next;
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_pipeline");

    static bench_scenario s_pl = {
        "pipeline_3stage_5t",
        "producer + 3 stage threads + consumer, uint64_t, +1 per stage, queues of 64",
        BENCH_RATE, "throughput", "Mops/s", 1, 200, {{0}}, 0, 0};
    bench_add(&s_pl, "ap_pipeline", "run future per stage, ap_block_on", run_pipeline, NULL);
    bench_add(&s_pl, "mutex_condvar", "naive: 4 mutex+condvar queues, 3 pop/apply/push threads",
              run_mutex_chain, NULL);
    if (bench_selected(&cfg, s_pl.name)) {
        bench_run_scenario(&cfg, &s_pl);
        bench_ratio(&cfg, &s_pl, "ap_pipeline", "mutex_condvar", 0);
    }

    static bench_scenario s_bt = {
        "batch_handoff_2t",
        "producer -> consumer, uint64_t: batches of 64 (100 us linger) vs per-item queue",
        BENCH_RATE, "throughput", "Mops/s", 1, 200, {{0}}, 0, 0};
    bench_add(&s_bt, "ap_batch", "ap_batch_add / ap_batch_take_wait, max_size 64", run_batch,
              NULL);
    bench_add(&s_bt, "mutex_condvar", "naive: one mutex+condvar queue hand-off per item",
              run_mutex_handoff, NULL);
    if (bench_selected(&cfg, s_bt.name)) {
        bench_run_scenario(&cfg, &s_bt);
        bench_ratio(&cfg, &s_bt, "ap_batch", "mutex_condvar", 0);
    }

    static bench_scenario s_bc = {
        "batch_completion_2t",
        "producer -> consumer, uint64_t, batches of 64: a completion per item vs none",
        BENCH_RATE, "throughput", "Mops/s", 1, 200, {{0}}, 0, 0};
    bench_add(&s_bc, "ap_batch_done", "ap_batch_add_done + tracked take + ap_batch_complete",
              run_batch_completion, (void *)1);
    bench_add(&s_bc, "ap_batch", "ap_batch_add + tracked take + ap_batch_complete, no records",
              run_batch_completion, NULL);
    if (bench_selected(&cfg, s_bc.name)) {
        bench_run_scenario(&cfg, &s_bc);
        /* a record costs the producer a status load and a CAS, and the
         * consumer one lock hold and a callback per item at complete: about
         * what the add itself costs, so at least half the throughput (0.5) */
        bench_ratio(&cfg, &s_bc, "ap_batch_done", "ap_batch", 0.5);
    }

    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
