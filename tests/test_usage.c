/*
 * tests/test_usage.c -- docs that compile (issue #11)
 *
 * The USAGE block of every header whose own test does not hold it, and the
 * README.md C snippets that are not cut from an example program, each built
 * with -Wall -Wextra -Werror (gcc and clang) and run. tests/docs.sh checks
 * that what lies between the markers is, line for line (whitespace-
 * normalised), the header's block:
 *
 *   USAGE begin ... USAGE end     one header's USAGE block
 *   USAGE pause ... USAGE resume  test scaffolding inside a block (not part
 *                                 of the copy): the function a block's
 *                                 statements need after its file-scope
 *                                 definitions, a helper thread, or the
 *                                 ap_*_close that ends a loop the block
 *                                 leaves to other threads
 *
 * The stubs a block leaves to the caller (use(), run(), struct job, ...)
 * are defined static here, as small as the block allows.
 */
#include "asyncpat.h" /* first: under strict C11 it enables POSIX */

#include <criterion/criterion.h>
#include "test_util.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the caller's stubs shared by several blocks ---- */

static unsigned long used;
static void use_int(int v) { used += (unsigned)v; }
static void use_ptr(const void *p) { used += p != NULL; }
/* use(y) with an int (spsc.h, README) or a pointer (pool.h, pubsub.h) */
#define use(x) _Generic((x), int: use_int, default: use_ptr)(x)

static unsigned long ran;
static void run(void *task) { ran += task != NULL; } /* a job, or a work-stealing task */

/* a future that is ready at its first poll (the caller's I/O, completed) */
typedef struct ready_fut { ap_future base; int value; } ready_fut;
static ap_poll ready_poll(ap_future *f, ap_cx *cx) { (void)f; (void)cx; return AP_READY; }
static ap_future *ready_start(ready_fut *f, int value)
{
    *f = (ready_fut){{ready_poll, NULL}, value};
    return &f->base;
}

/* ---- backpressure.h ---- */

typedef struct job { int id; } job;
static unsigned long failed_jobs;
static void fail_job(job *j) { failed_jobs += j != NULL; }

Test(usage, backpressure)
{
    job j = {1};
    ran = 0;
    /* USAGE begin */
    ap_bp *bp;   // 1024 jobs; drop the oldest when consumers fall behind
    if (ap_bp_create(&bp, &(ap_bp_desc){.capacity = 1024, .elem_size = sizeof(job),
                                        .strategy = AP_BP_STRATEGY_DROP_OLDEST}, NULL)) abort();
    job old;
    if (ap_bp_push(bp, &j, ap_now_ns(), &old, NULL) == AP_DROPPED) fail_job(&old);
    /* USAGE pause */
    ap_bp_close(bp); /* test: no other producer, so the consumer loop drains and ends */
    /* USAGE resume */
    while (ap_bp_pop_wait(bp, &j, AP_DEADLINE_NONE) == AP_OK) run(&j);  // consumer
    // a producer that wants the buffer to drain first:
    if (ap_bp_level(bp) == AP_BP_LEVEL_STATE_HIGH && ap_bp_low_wait(bp, AP_DEADLINE_NONE) != AP_OK)
        return;                       // AP_CLOSED: stop producing
    /* USAGE end */
    EXPECT_EQ(ran, 1);
    EXPECT_EQ(failed_jobs, 0);
    ap_bp_destroy(bp);
}

/* ---- barrier.h ---- */

struct grid { unsigned rounds, swaps; };
static void swap_buffers(void *ctx) { ((struct grid *)ctx)->swaps++; }
static void compute_my_part(struct grid *g) { g->rounds++; }
static ap_barrier *usage_barrier;

/* the other party: three rounds, then it gives up (a wait whose deadline has
 * passed), which under AP_BARRIER_POLICY_BREAK breaks the barrier for the block */
static void *barrier_other(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        if (ap_barrier_wait(usage_barrier, AP_DEADLINE_NONE) != AP_OK) return NULL;
    while (ap_barrier_wait(usage_barrier, ap_now_ns()) == AP_OK)
        sched_yield();
    return NULL;
}

/* USAGE begin */
static void step_done(void *ctx) { swap_buffers(ctx); }   // once per round
/* USAGE pause */
Test(usage, barrier, .timeout = 30)
{
    struct grid grid = {0, 0};
    uint32_t nthreads = 2;
    pthread_t other;
    /* USAGE resume */
    ap_barrier b;
    if (ap_barrier_init(&b, nthreads, AP_BARRIER_POLICY_BREAK, step_done, &grid) != AP_OK) abort();
    /* USAGE pause */
    usage_barrier = &b;
    EXPECT_EQ(pthread_create(&other, NULL, barrier_other, NULL), 0);
    /* USAGE resume */
    // in each of the nthreads workers:
    for (;;) {
        compute_my_part(&grid);
        if (ap_barrier_wait(&b, AP_DEADLINE_NONE) != AP_OK)
            break;                         // broken: somebody gave up
    }
    // in an event loop: ap_barrier_wait_fut f; ap_barrier_wait_fut_init(&f, &b);
    // ap_barrier_wait_poll(&f, &cx) until AP_READY; ap_barrier_wait_status(&f),
    // f.is_leader
    /* USAGE end */
    pthread_join(other, NULL);
    EXPECT(ap_barrier_is_broken(&b));
    EXPECT_GE(grid.swaps, 3, "step_done ran once per completed round");
    ap_barrier_fini(&b);
}

/* ---- circuit_breaker.h ---- */

static int dependency_calls;
static int call_dependency(void) { dependency_calls++; return 0; }
static int fail_fast(uint64_t retry_at) { (void)retry_at; return -1; }

static int breaker_call(void)
{
    /* USAGE begin */
    static ap_breaker *b;   // 50 % of the last 20 calls fail -> open for 5 s
    if (ap_breaker_create(&b, &(ap_breaker_desc){.window_size = 20,
                          .open_ns = 5 * AP_NS_PER_SEC}, NULL)) abort();
    ap_breaker_permit p; uint64_t retry_at, t0 = ap_now_ns();
    if (ap_breaker_allow(b, t0, &p, &retry_at) != AP_OK) return fail_fast(retry_at);
    int rc = call_dependency();
    uint64_t t1 = ap_now_ns();
    if (ap_breaker_record(b, &p, rc ? AP_BREAKER_OUTCOME_FAILURE : AP_BREAKER_OUTCOME_SUCCESS,
                     t1 - t0, t1) != AP_OK)
        abort();   // only a permit reported twice or a bad outcome: a bug
    /* USAGE end */
    ap_breaker_destroy(b);
    return rc;
}

Test(usage, circuit_breaker)
{
    EXPECT_EQ(breaker_call(), 0);
    EXPECT_EQ(dependency_calls, 1);
}

/* ---- connpool.h (the block as it should read: see the report of #11) ---- */

struct db { int fd; };
struct server { int opened, closed; };
static struct server server;
static int dial(void *ctx, void *c) { ((struct server *)ctx)->opened++; ((struct db *)c)->fd = 3; return 0; }
static void hang_up(void *ctx, void *c) { ((struct server *)ctx)->closed++; ((struct db *)c)->fd = -1; }
static bool query(struct db *c) { return c->fd == 3; }
static int logged;
static void log_msg(const char *what, const char *why) { (void)what, (void)why; logged++; }
static void log_code(const char *what, int code) { (void)what, (void)code; logged++; }
/* log_error(status text, strerror(e)) in connpool.h, (status text, int) in pipeline.h */
#define log_error(a, b) _Generic((b), int: log_code, default: log_msg)(a, b)

/* USAGE begin */
static ap_status db_open(void *ctx, void *c, int *app_error) {
    int e = dial(ctx, c);                 // 0, or an errno
    if (e) { *app_error = e; return AP_TIMEDOUT; }  // beside AP_EXHAUSTED
    return AP_OK;
}
static void db_close(void *ctx, void *c) { hang_up(ctx, c); }
/* USAGE pause */
Test(usage, connpool)
{
    /* USAGE resume */
    static AP_ALIGNAS(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(8, sizeof(struct db))];
    ap_connpool cp;
    ap_connpool_desc d = {.max_size = 8, .conn_size = sizeof(struct db),
                          .max_lifetime_ns = 30 * AP_NS_PER_SEC};
    ap_connpool_ops ops = {db_open, db_close, NULL, &server};
    if (ap_connpool_init(&cp, buf, sizeof buf, &d, &ops) != AP_OK) abort();
    void *c; ap_connpool_fail why;
    ap_status st = ap_connpool_checkout_wait(&cp, &c, ap_now_ns() + AP_NS_PER_SEC, &why);
    if (st == AP_OK) {
        bool ok = query((struct db *)c);
        if (ap_connpool_return(&cp, c, !ok, ap_now_ns()) != AP_OK) abort();  // broken: close it
    } else if (st == AP_EXHAUSTED) {                          // dial failed
        log_error(ap_status_str(why.error), strerror(why.app_error));
    }
    ap_connpool_close(&cp);   // at shutdown; once every connection is back:
    ap_connpool_fini(&cp);
    /* USAGE end */
    EXPECT_EQ(st, AP_OK);
    EXPECT_EQ(logged, 0);
    EXPECT_EQ(server.opened, 1);
    EXPECT_EQ(server.closed, 1, "close closed the idle connection");
}

/* ---- fanout.h ---- */

static ap_status pop_result(void *ctx, size_t i, ap_future *f)
{ (void)ctx; (void)i; return ap_mpmc_pop_status((ap_mpmc_pop_fut *)f); }

Test(usage, fanout)
{
    ap_mpmc *q = NULL;
    EXPECT_EQ(ap_mpmc_create(&q, 128, sizeof(void *), NULL), AP_OK);
    void *out[100];
    for (uintptr_t i = 0; i < 100; i++)
        EXPECT_EQ(ap_mpmc_try_push(q, &(void *){(void *)(i + 1)}), AP_OK);
    ap_status st;
    /* USAGE begin */
    ap_mpmc_pop_fut pops[100]; ap_future *kids[100]; ap_fanout_child recs[100];
    for (size_t i = 0; i < 100; i++) {
        ap_mpmc_pop_fut_init(&pops[i], q, &out[i]);
        kids[i] = &pops[i].base;
    }
    ap_fanout set;
    if (ap_fanout_init(&set, recs, sizeof recs, &(ap_fanout_desc){
            .children = kids, .n = 100, .limit = 8,
            .policy = AP_FANOUT_POLICY_FIRST, .result = pop_result }) != AP_OK)
        abort();
    ap_block_on(&set.base);                 // or poll it from an event loop
    st = ap_fanout_status(&set);            // AP_OK or the first error
    // with: static ap_status pop_result(void *ctx, size_t i, ap_future *f)
    //       { (void)ctx; (void)i; return ap_mpmc_pop_status((ap_mpmc_pop_fut *)f); }
    /* USAGE end */
    EXPECT_EQ(st, AP_OK);
    uintptr_t sum = 0;
    for (size_t i = 0; i < 100; i++)
        sum += (uintptr_t)out[i];
    EXPECT_EQ(sum, 5050);
    ap_mpmc_destroy(q);
}

/* ---- future.h, timeout.h ---- */

Test(usage, future)
{
    ap_mpmc *q = NULL;
    int item = 0;
    ap_status st = AP_NOT_READY;
    EXPECT_EQ(ap_mpmc_create(&q, 4, sizeof item, NULL), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(q, &(int){7}), AP_OK);
    /* USAGE begin */
    ap_mpmc_pop_fut f;                       // any future in caller memory
    ap_mpmc_pop_fut_init(&f, q, &item);
    if (ap_block_on_until(&f.base, ap_now_ns() + AP_NS_PER_SEC) == AP_OK)
        st = ap_mpmc_pop_status(&f);         // AP_OK or AP_CLOSED
    /* USAGE end */
    EXPECT_EQ(st, AP_OK);
    EXPECT_EQ(item, 7);
    ap_mpmc_destroy(q);
}

Test(usage, timeout)
{
    ap_mpmc *q = NULL;
    int item = 0;
    ap_status st = AP_NOT_READY;
    uint64_t now = ap_now_ns();
    EXPECT_EQ(ap_mpmc_create(&q, 4, sizeof item, NULL), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(q, &(int){7}), AP_OK);
    /* USAGE begin */
    ap_mpmc_pop_fut pop;  ap_timeout t;
    ap_mpmc_pop_fut_init(&pop, q, &item);
    ap_timeout_init(&t, &pop.base, ap_deadline_after(now, 50 * AP_NS_PER_MS));
    ap_block_on(&t.base);
    if (ap_timeout_status(&t) == AP_OK) st = ap_mpmc_pop_status(&pop);
    /* USAGE end */
    EXPECT_EQ(st, AP_OK);
    EXPECT_EQ(item, 7);
    /* and empty: the timeout fires */
    ap_mpmc_pop_fut_init(&pop, q, &item);
    ap_timeout_init(&t, &pop.base, ap_deadline_after(ap_now_ns(), 5 * AP_NS_PER_MS));
    ap_block_on(&t.base);
    EXPECT_EQ(ap_timeout_status(&t), AP_TIMEDOUT);
    ap_mpmc_destroy(q);
}

/* ---- lifecycle.h ---- */

static int sockets_open, served;
static bool open_sockets(void) { sockets_open = 1; return true; }
static void serve(void) { served++; }
static void close_sockets(void) { sockets_open = 0; }

Test(usage, lifecycle)
{
    ap_deadline deadline = ap_deadline_after(ap_now_ns(), AP_NS_PER_SEC);
    /* USAGE begin */
    static ap_life life = AP_LIFE_INITIALIZER;
    // owner: start, then report whether starting worked
    if (ap_life_start(&life) != AP_OK || ap_life_started(&life, open_sockets()) != AP_OK)
        abort();
    // each worker, per request: refused unless RUNNING
    if (ap_life_enter(&life) == AP_OK) { serve(); ap_life_leave(&life); }
    // stop: refuse new entries, wait for those inside, then end
    if (ap_life_stop(&life) != AP_OK) return; // a stop or a failure came first
    if (ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, deadline) == AP_OK) {
        close_sockets();
        if (ap_life_terminated(&life) != AP_OK) abort();
    }
    /* USAGE end */
    EXPECT_EQ(served, 1, "the worker entered while RUNNING");
    EXPECT_EQ(sockets_open, 0, "drained, then closed");
    EXPECT_EQ(ap_life_state_of(&life), AP_LIFE_STATE_TERMINATED);
    EXPECT_EQ(ap_life_enter(&life), AP_CLOSED, "no entry after the stop");
}

/* ---- mpmc.h (the block as it should read: see the report of #11) ---- */

Test(usage, mpmc)
{
    ran = 0;
    /* USAGE begin */
    ap_mpmc *q;
    if (ap_mpmc_create(&q, 1024, sizeof(struct job), NULL) != AP_OK) abort();
    struct job j = {0};
    if (ap_mpmc_push_wait(q, &j, AP_DEADLINE_NONE) != AP_OK) abort();  // any thread
    /* USAGE pause */
    ap_mpmc_close(q); /* test: no other producer, so the consumer loop drains and ends */
    /* USAGE resume */
    while (ap_mpmc_pop_wait(q, &j, AP_DEADLINE_NONE) == AP_OK) run(&j);
    ap_mpmc_destroy(q);   // after ap_mpmc_close and draining
    /* USAGE end */
    EXPECT_EQ(ran, 1);
}

/* ---- pipeline.h (the block as it should read: see the report of #11) ---- */

typedef struct { int v; } req;
typedef struct { int v; } parsed;
static struct { int v; } resp; /* sizeof(resp) and &resp: a variable of the response type */
static int sent;
static void send(const void *r) { (void)r; sent++; }
static int parse_req(const void *in, void *o) { ((parsed *)o)->v = ((const req *)in)->v + 1; return 0; }
static ap_status handle(void *ctx, const void *in, void *o, int *app_error)
{ (void)ctx, (void)app_error; memcpy(o, &(int){((const parsed *)in)->v * 2}, sizeof(int)); return AP_OK; }

struct stage_thread { pthread_t th; ap_pipeline *p; size_t stage; };
/* one thread per stage: the code of the block's comment */
static void *stage_main(void *arg)
{
    struct stage_thread *s = arg;
    ap_pipeline_worker w; req in; parsed out;
    if (s->stage == 0) {
        if (ap_pipeline_worker_init(&w, &in, sizeof in, &out, sizeof out, s->p, 0) != AP_OK) abort();
    } else {
        if (ap_pipeline_worker_init(&w, &out, sizeof out, &resp, sizeof resp, s->p, 1) != AP_OK)
            abort();
    }
    ap_pipeline_run_fut f; ap_pipeline_run_fut_init(&f, &w, 0);
    ap_block_on(&f.base);        // returns after close + drain
    return NULL;
}

/* USAGE begin */
static ap_status parse(void *ctx, const void *in, void *out, int *app_error) {
    (void)ctx;
    int e = parse_req(in, out);          // your own code: 0 or an error
    if (e) { *app_error = e; return AP_INVAL; }   // fails the element
    return AP_OK;                                 // emits *out
}
/* USAGE pause */
Test(usage, pipeline, .timeout = 30)
{
    req r = {20};
    struct stage_thread th[2];
    /* USAGE resume */
    static AP_ALIGNAS(64) unsigned char qin[AP_MPMC_BYTES(64, sizeof(req))],
                       q0[AP_MPMC_BYTES(64, sizeof(parsed))],
                       q1[AP_MPMC_BYTES(64, sizeof(resp))];
    ap_pipeline_stage_desc sd[2] = {
        {.fn = parse, .out_size = sizeof(parsed), .capacity = 64, .buf = q0, .bytes = sizeof q0},
        {.fn = handle, .out_size = sizeof(resp), .capacity = 64, .buf = q1, .bytes = sizeof q1}};
    ap_pipeline p; ap_pipeline_stage st[2];
    if (ap_pipeline_init(&p, st, sizeof st, &(ap_pipeline_desc){
            .in_size = sizeof(req), .in_capacity = 64, .in_buf = qin,
            .in_bytes = sizeof qin, .stages = sd, .nstages = 2}))
        abort();
    // one thread per stage:  ap_pipeline_worker w; req in; parsed out;
    //   ap_pipeline_worker_init(&w, &in, sizeof in, &out, sizeof out, &p, 0);
    //   ap_pipeline_run_fut f; ap_pipeline_run_fut_init(&f, &w, 0);
    //   ap_block_on(&f.base);        // returns after close + drain
    /* USAGE pause */
    for (size_t i = 0; i < 2; i++) {
        th[i] = (struct stage_thread){.p = &p, .stage = i};
        EXPECT_EQ(pthread_create(&th[i].th, NULL, stage_main, &th[i]), 0);
    }
    /* USAGE resume */
    if (ap_pipeline_push_wait(&p, &r, AP_DEADLINE_NONE) != AP_OK) abort();  // producers
    ap_pipeline_close(&p);                             // no more input
    while (ap_pipeline_pop_wait(&p, &resp, AP_DEADLINE_NONE) == AP_OK) send(&resp);
    ap_pipeline_stats s;                 // failures: s.failed, and the last
    if (ap_pipeline_stats_get(&p, 0, &s) == AP_OK && s.failed)   // one's
        log_error(ap_status_str(s.last_error), s.last_app_error);       // pair
    /* USAGE end */
    for (size_t i = 0; i < 2; i++)
        pthread_join(th[i].th, NULL);
    EXPECT_EQ(sent, 1);
    EXPECT_EQ(resp.v, 42);
    EXPECT_EQ(logged, 0);
    ap_pipeline_fini(&p);
}

/* ---- pool.h ---- */

struct conn { int id; };

Test(usage, pool)
{
    used = 0;
    /* USAGE begin */
    static struct conn conns[8];
    static AP_ALIGNAS(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(8)];
    ap_pool pool;
    if (ap_pool_init(&pool, st, sizeof st, conns, sizeof conns, 8, sizeof conns[0]) != AP_OK)
        abort();
    void *c;
    if (ap_pool_get_wait(&pool, &c, ap_now_ns() + AP_NS_PER_SEC) == AP_OK) {
        use((struct conn *)c);
        if (ap_pool_put(&pool, c) != AP_OK) abort();
    }
    // in an event loop: ap_pool_get_fut f; ap_pool_get_fut_init(&f, &pool, &c);
    // ap_pool_get_poll(&f, &cx) until AP_READY, then ap_pool_get_status(&f)
    /* USAGE end */
    EXPECT_EQ(used, 1);
}

/* ---- prefetch.h ---- */

typedef struct my_read_fut { ap_future base; ready_fut io; } my_read_fut;
static uint64_t npages = 5;
static void my_read_start(my_read_fut *f, void *file, uint64_t off, char *data)
{
    (void)file;
    memset(data, (int)(off / 4096), 4096);
    f->base = *ready_start(&f->io, 0);
}
static uint64_t consumed;
struct page;
static void consume(const struct page *p);

/* USAGE begin */
struct page { my_read_fut f; char data[4096]; };   // the future in the slot
static ap_future *start(void *ctx, uint64_t key, void *slot, uint64_t now)
{   struct page *p = slot; (void)now;
    if (key >= npages) return NULL;                  // past EOF: refuse
    my_read_start(&p->f, ctx, key * 4096, p->data); return &p->f.base; }
/* USAGE pause */
Test(usage, prefetch)
{
    static int the_file;
    void *fd = &the_file; /* the block's ctx: a pointer to the caller's file */
    /* USAGE resume */
    static AP_ALIGNAS(struct page) unsigned char ring[AP_PREFETCH_BYTES(8, sizeof(struct page))];
    ap_prefetch pf;   // (struct page is aligned at least to AP_PREFETCH_ALIGN)
    if (ap_prefetch_init(&pf, ring, sizeof ring, &(ap_prefetch_desc){.start = start,
            .ctx = fd, .depth = 8, .slot_size = sizeof(struct page)})) abort();
    void *slot;
    for (uint64_t k = 0; ap_prefetch_get_wait(&pf, k, &slot, AP_DEADLINE_NONE) == AP_OK; k++)
        consume((struct page *)slot);   // valid until the next get
    ap_prefetch_fini(&pf);              // cancels the loads still in flight
    /* USAGE end */
    EXPECT_EQ(consumed, 0 + 1 + 2 + 3 + 4, "pages 0..4, in order, then EOF");
}
static void consume(const struct page *p) { consumed += (uint64_t)p->data[0]; }

/* ---- pubsub.h (the block as it should read: see the report of #11) ---- */

struct tick { uint64_t seq; };
static uint64_t gaps;
static void note_gap(uint64_t n) { gaps += n; }

Test(usage, pubsub)
{
    used = 0;
    /* USAGE begin */
    static uint64_t ring[AP_PUBSUB_BYTES(64, sizeof(struct tick)) / 8];
    ap_pubsub ch;
    if (ap_pubsub_init(&ch, ring, sizeof ring, 64, sizeof(struct tick), AP_PUBSUB_POLICY_OVERWRITE))
        abort();
    ap_sub sub = {0};                 // each subscriber thread (zero: not subscribed)
    ap_pubsub_subscribe(&ch, &sub);
    struct tick t = {0};              // any publisher thread:
    while (ap_pubsub_try_publish(&ch, &t) == AP_AGAIN) {}   // a lapped writer: retry
    /* USAGE pause */
    ap_pubsub_close(&ch); /* test: no other publisher, so the subscriber drains and ends */
    /* USAGE resume */
    for (;;) {                        // the subscriber:
        ap_status st = ap_sub_recv_wait(&sub, &t, AP_DEADLINE_NONE);
        if (st == AP_OK) use(&t);
        else if (st == AP_DROPPED) note_gap(ap_sub_last_dropped(&sub));
        else break;                   // AP_CLOSED: closed and drained
    }
    ap_pubsub_unsubscribe(&ch, &sub);
    /* USAGE end */
    EXPECT_EQ(used, 1);
    EXPECT_EQ(gaps, 0);
}

/* ---- resilience.h ---- */

struct http_get { const char *url; ready_fut io; int starts; };
static ap_future *start_get(void *ctx, uint32_t attempt, uint64_t now)
{
    struct http_get *g = ctx;
    (void)attempt, (void)now;
    g->starts++;
    return ready_start(&g->io, 200);
}
static ap_status get_result(void *ctx, ap_future *attempt, int *app_error, uint64_t *hint)
{
    (void)ctx, (void)hint;
    *app_error = ((ready_fut *)attempt)->value;
    return AP_OK;
}

Test(usage, resilience, .timeout = 30)
{
    /* USAGE begin */
    static ap_tb tb;  static ap_sem bulk;  static ap_breaker *br;
    if (ap_tb_init(&tb, &(ap_tb_desc){.n = 100, .burst = 10}) ||
        ap_sem_init(&bulk, 8) ||
        ap_breaker_create(&br, &(ap_breaker_desc){.window_size = 20}, NULL)) abort();
    ap_rng rng;  ap_rng_seed(&rng, 42);
    ap_retry_desc rd = {.max_attempts = 3, .initial_ns = 10 * AP_NS_PER_MS};
    ap_resil_desc d = {.limiter = &tb, .bulkhead = &bulk, .breaker = br,
                       .attempt_timeout_ns = 200 * AP_NS_PER_MS,
                       .retry = &rd, .rng = &rng};
    struct http_get req = {.url = "/x"};
    ap_resil_op op = {.start = start_get, .result = get_result, .ctx = &req};
    ap_resil_fut call;
    if (ap_resil_fut_init(&call, &d, &op,
                          ap_deadline_after(ap_now_ns(), AP_NS_PER_SEC))) abort();
    ap_block_on(&call.base);          // or poll it from your event loop
    ap_resil_result r = ap_resil_fut_result(&call);
    // r.status: AP_OK, AP_REJECTED (r.rejected_by), AP_EXHAUSTED
    // (r.last_error), AP_TIMEDOUT, ...; r.app_error: e.g. the last HTTP status
    /* USAGE end */
    EXPECT_EQ(r.status, AP_OK);
    EXPECT_EQ(r.app_error, 200);
    EXPECT_EQ(req.starts, 1);
    ap_breaker_destroy(br);
}

/* ---- retry.h ---- */

static int server_calls;
static ap_status call_server(void *srv, int *app_error)
{
    (void)srv;
    server_calls++;
    *app_error = 200;
    return AP_OK;
}
static ap_future *att_start(void *ctx, void *storage, uint32_t attempt, uint64_t now)
{ (void)ctx, (void)attempt, (void)now; return ready_start(storage, 200); }
static ap_status att_result(void *ctx, ap_future *attempt, int *app_error, uint64_t *hint)
{ (void)ctx, (void)hint; *app_error = ((ready_fut *)attempt)->value; return AP_OK; }
static void att_canceled(void *ctx, ap_future *attempt, uint64_t now)
{ (void)ctx, (void)attempt, (void)now; }

Test(usage, retry, .timeout = 30)
{
    static int the_server;
    void *srv = &the_server;
    ap_breaker *br = NULL;   /* the caller's breaker, taken and reported by att_* */
    ready_fut att;
    /* USAGE begin */
    ap_rng rng;  ap_rng_seed(&rng, 42);
    ap_retry_budget budget;   // 20 % of requests + 10 retries/s over 10 s
    if (ap_retry_budget_init(&budget, &(ap_retry_budget_desc){0})) abort();
    ap_retry_desc d = {.max_attempts = 5, .initial_ns = 10 * AP_NS_PER_MS,
                       .cap_ns = AP_NS_PER_SEC};       // full jitter
    ap_retry_result r;
    ap_status st = ap_retry_call(&d, &rng, &budget, call_server, srv,
                                 ap_deadline_after(ap_now_ns(), 2 * AP_NS_PER_SEC), &r);
    // st: AP_OK; AP_EXHAUSTED (r.last_error, r.app_error: why the last
    // attempt failed); a permanent error; AP_TIMEDOUT (the deadline)
    // call_server: ap_status call_server(void *srv, int *app_error), which
    // sets *app_error = e.g. the HTTP status and returns AP_OK or an error

    // per attempt, behind a breaker: take the permit in start(), report it
    // in result() and, for an attempt cut by the deadline, in canceled()
    ap_retry_op op = {.start = att_start, .result = att_result,
                      .canceled = att_canceled, .ctx = br, .storage = &att};
    /* USAGE end */
    EXPECT_EQ(st, AP_OK, "%s", ap_status_str(st));
    EXPECT_EQ(r.app_error, 200);
    EXPECT_EQ(server_calls, 1);
    EXPECT(op.start == att_start && op.storage == &att);
}

/* ---- semaphore.h ---- */

static int connections_used;
static void use_connection(void) { connections_used++; }

Test(usage, semaphore)
{
    /* USAGE begin */
    static ap_sem conns = AP_SEM_INITIALIZER(8);   // at most 8 connections
    if (ap_sem_acquire_wait(&conns, 1, ap_now_ns() + AP_NS_PER_SEC) == AP_OK) {
        use_connection();
        if (ap_sem_release(&conns, 1) != AP_OK) abort();
    }
    // in an event loop: ap_sem_acquire_fut f; ap_sem_acquire_fut_init(&f, &conns, 3);
    // ap_sem_acquire_poll(&f, &cx) until AP_READY, then ap_sem_acquire_status(&f)
    /* USAGE end */
    EXPECT_EQ(connections_used, 1);
    EXPECT_EQ(ap_sem_available(&conns), 8);
}

/* ---- split.h ---- */

struct ev { uint64_t user_id; char body[8]; };
static int dropped;
static void drop(struct ev *e) { (void)e; dropped++; }

Test(usage, split)
{
    struct ev ev = {.user_id = 42};
    /* USAGE begin */
    ap_mpmc *shard[4];   // each from ap_mpmc_create(&shard[i], 1024, sizeof(struct ev), NULL)
    /* USAGE pause */
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_mpmc_create(&shard[i], 1024, sizeof(struct ev), NULL), AP_OK);
    /* USAGE resume */
    ap_split sp;
    if (ap_split_init(&sp, shard, sizeof shard, AP_SPLIT_MODE_HASH) != AP_OK) abort();
    switch (ap_split_try_push(&sp, ev.user_id, &ev)) {
    case AP_OK: break;                      // in shard[ap_split_route(&sp, ev.user_id)]
    case AP_FULL: case AP_AGAIN:            // still ours: retry, or wait:
        if (ap_split_push_wait(&sp, ev.user_id, &ev, AP_DEADLINE_NONE) != AP_OK) drop(&ev);
        break;
    default: drop(&ev);                     // AP_CLOSED: the item is still ours
    }
    /* USAGE end */
    EXPECT_EQ(dropped, 0);
    EXPECT_EQ(ap_mpmc_len(shard[ap_split_route(&sp, 42)]), 1);
    for (int i = 0; i < 4; i++)
        ap_mpmc_destroy(shard[i]);
}

/* ---- spsc.h ---- */

Test(usage, spsc)
{
    used = 0;
    /* USAGE begin */
    static unsigned char buf[AP_SPSC_BYTES(1024, sizeof(int))];
    ap_spsc q;
    if (ap_spsc_init(&q, buf, sizeof buf, 1024, sizeof(int)) != AP_OK) abort();
    int x = 42;                      // producer thread
    while (ap_spsc_try_push(&q, &x) == AP_FULL) {}
    int y;                           // consumer thread
    if (ap_spsc_try_pop(&q, &y) == AP_OK) use(y);
    /* USAGE end */
    EXPECT_EQ(used, 42);
    ap_spsc_fini(&q);
}

/* ---- waitlist.h ---- */

typedef struct my_q { _Atomic size_t items; ap_waitlist wl; } my_q;
typedef struct my_fut { my_q *q; ap_waiter w; } my_fut;
static ap_status my_try(my_q *q)
{
    size_t n = atomic_load(&q->items);
    while (n > 0)
        if (atomic_compare_exchange_weak(&q->items, &n, n - 1)) return AP_OK;
    return AP_EMPTY;
}

/* USAGE begin */
static ap_poll my_poll(my_fut *f, ap_cx *cx) {            // the waiting side
    if (my_try(f->q) == AP_EMPTY) {
        ap_waitlist_register_cx(&f->q->wl, &f->w, cx);    // may lower cx->deadline
        if (my_try(f->q) == AP_EMPTY) return AP_PENDING;  // re-check after linking
    }
    ap_waitlist_cancel_pass(&f->q->wl, &f->w);  // done: if woken, wake the next
    return AP_READY;
}
static void my_put(my_q *q) {                              // the waking side
    // publish with an AP__PUB_MO RMW (release; seq_cst in the fallbacks), then look
    atomic_fetch_add_explicit(&q->items, 1, AP__PUB_MO);
    if (ap_waitlist_parked(&q->wl)) ap_waitlist_wake(&q->wl, 1);
}
/* USAGE end */

static int wakes;
static void count_wake(void *ctx) { (void)ctx; wakes++; }

Test(usage, waitlist)
{
    my_q q = {0};
    ap_waitlist_init(&q.wl);
    my_fut f = {.q = &q}, g = {.q = &q};
    ap_waiter_init(&f.w);
    ap_waiter_init(&g.w);
    ap_cx cx = {{count_wake, NULL}, 1000, AP_DEADLINE_NONE};
    EXPECT_EQ(my_poll(&f, &cx), AP_PENDING);
    /* with the asymmetric barrier the fresh link is unconfirmed: re-poll by
     * now + AP_WAIT_CONFIRM_NS; without it, the barrier ran at once */
    EXPECT(cx.deadline == AP_DEADLINE_NONE || cx.deadline == 1000 + AP_WAIT_CONFIRM_NS);
    cx.deadline = AP_DEADLINE_NONE;
    EXPECT_EQ(my_poll(&f, &cx), AP_PENDING); /* the confirm re-poll */
    EXPECT_EQ(cx.deadline, AP_DEADLINE_NONE, "a confirmed waiter waits without a deadline");
    EXPECT_EQ(my_poll(&g, &cx), AP_PENDING);
    my_put(&q);
    EXPECT_EQ(wakes, 1, "one put wakes one waiter, the head");
    my_put(&q);
    EXPECT_EQ(wakes, 2);
    /* each was woken by one put, in FIFO order, and finds one item */
    EXPECT_EQ(my_poll(&f, &cx), AP_READY);
    EXPECT_EQ(my_poll(&g, &cx), AP_READY);
    EXPECT_EQ(atomic_load(&q.items), 0);
    EXPECT(!ap_waitlist_has_waiters(&q.wl));
    EXPECT_EQ(wakes, 2, "no wake left to pass on: both were used");
}

/* ---- work_steal.h ---- */

Test(usage, work_steal)
{
    static AP_ALIGNAS(AP_WS_ALIGN) unsigned char other_mem[AP_WS_BYTES(16)];
    ap_ws other;
    EXPECT_EQ(ap_ws_init(&other, other_mem, sizeof other_mem, 16), AP_OK);
    static int a_task, b_task;
    EXPECT_EQ(ap_ws_try_push(&other, &b_task), AP_OK);
    void *task = &a_task;
    ran = 0;
    /* USAGE begin */
    // one per worker thread, in caller memory
    static AP_ALIGNAS(AP_WS_ALIGN) unsigned char mem[AP_WS_BYTES(1024)];
    ap_ws dq;
    if (ap_ws_init(&dq, mem, sizeof mem, 1024) != AP_OK) abort();
    if (ap_ws_try_push(&dq, task) != AP_OK) run(task);        // owner
    void *t;
    while (ap_ws_try_pop(&dq, &t) == AP_OK) run(t);           // owner
    if (ap_ws_try_steal(&other, &t) == AP_OK) run(t);         // any thread
    /* USAGE end */
    EXPECT_EQ(ran, 2);
    ap_ws_fini(&dq);
    ap_ws_fini(&other);
}

/* ==== README.md's C snippets that no example holds line for line ====
 * Each below is the README block's code as a caller's functions, so that it
 * compiles and runs; docs.sh checks that every README line is one of ours. */

/* ---- README.md, Usage: producer/consumer (after examples/producer_consumer.c) ---- */

struct line { char *text; size_t len; }; /* the record the queue copies */
struct line_producer { FILE *f; int err; };
struct line_consumer { unsigned long lines; size_t bytes; };

static ap_mpmc *q;   /* ap_mpmc_create(&q, 64, sizeof(struct line), NULL) */

static void *readme_produce(void *arg)
{
    struct line_producer *p = arg;
    FILE *f = p->f;
    struct line l = {NULL, 0};
    size_t cap = 0;
    ssize_t n;
    /* producer thread: blocks while the queue is full, woken by a pop */
    while ((n = getline(&l.text, &cap, f)) >= 0) {
        l.len = (size_t)n;
        if (ap_mpmc_push_wait(q, &l, AP_DEADLINE_NONE) != AP_OK) { p->err = ECANCELED; break; }
        l.text = NULL, cap = 0; /* the queue owns that line now */
    }
    free(l.text); /* getline's buffer at EOF, or a line the queue refused */
    return NULL;
}

static void *readme_consume(void *arg)
{
    struct line_consumer *c = arg;
    struct line l;
    /* consumer thread: parks on an empty queue, woken by a push or by close */
    while (ap_mpmc_pop_wait(q, &l, AP_DEADLINE_NONE) == AP_OK) { /* AP_CLOSED: drained */
        c->lines++, c->bytes += l.len; /* the README elides: ...count words... */
        free(l.text);
    }
    return NULL;
}

Test(usage, readme_producer_consumer, .timeout = 30)
{
    enum { LINES = 500, NCONS = 3 };
    FILE *file = tmpfile();
    EXPECT_NOT_NULL(file);
    size_t bytes = 0;
    for (int i = 0; i < LINES; i++) {
        int w = fprintf(file, "line %d\n", i);
        EXPECT_GT(w, 0);
        bytes += (size_t)w;
    }
    rewind(file);
    EXPECT_EQ(ap_mpmc_create(&q, 64, sizeof(struct line), NULL), AP_OK);
    struct line_producer prod = {file, 0};
    struct line_consumer cons[NCONS] = {{0, 0}};
    pthread_t pth, cth[NCONS];
    for (int i = 0; i < NCONS; i++)
        EXPECT_EQ(pthread_create(&cth[i], NULL, readme_consume, &cons[i]), 0);
    EXPECT_EQ(pthread_create(&pth, NULL, readme_produce, &prod), 0);
    pthread_join(pth, NULL);
    /* main: after joining the producers */
    ap_mpmc_close(q); /* no more lines: wakes the consumers parked on an empty queue */
    unsigned long lines = 0;
    size_t got = 0;
    for (int i = 0; i < NCONS; i++) {
        pthread_join(cth[i], NULL);
        lines += cons[i].lines, got += cons[i].bytes;
    }
    EXPECT_EQ(prod.err, 0);
    EXPECT_EQ(lines, LINES, "every line popped once");
    EXPECT_EQ(got, bytes);
    ap_mpmc_destroy(q);
    fclose(file);
}

/* ---- README.md, Usage: an mpmc pop future in an event loop ---- */

static atomic_bool woken;
static void set_flag(void *ctx) { atomic_store((atomic_bool *)ctx, true); }
static ap_mpmc *loop_q; /* what "another thread" pushes to */
static int loop_waits;
/* the loop's wait, single-threaded: at the first wait the other side pushes
 * (its push must set the flag through our waker, or this test times out),
 * then it waits for the flag or timeout_ms (-1: none), as an epoll_wait would */
static void wait_until_woken_or(int timeout_ms)
{
    uint64_t until = timeout_ms < 0 ? AP_DEADLINE_NONE
                                    : ap_now_ns() + (uint64_t)timeout_ms * AP_NS_PER_MS;
    if (loop_waits++ == 0) {
        int x = 42;
        EXPECT_EQ(ap_mpmc_try_push(loop_q, &x), AP_OK);
    }
    while (!atomic_exchange(&woken, false) && ap_now_ns() < until)
        sched_yield();
}

Test(usage, readme_mpmc_future, .timeout = 30)
{
    static AP_ALIGNAS(AP_MPMC_ALIGN) unsigned char qbuf[AP_MPMC_BYTES(4, sizeof(int))];
    ap_mpmc q;
    int v = 0;
    EXPECT_EQ(ap_mpmc_init(&q, qbuf, sizeof qbuf, 4, sizeof v), AP_OK);
    loop_q = &q;
    used = 0;
    ap_cx cx = {{set_flag, &woken}, 0, AP_DEADLINE_NONE}; /* waker, now, deadline */
    ap_mpmc_pop_fut f;
    ap_mpmc_pop_fut_init(&f, &q, &v);
    for (ap_cx_reset(&cx, ap_now_ns()); ap_mpmc_pop_poll(&f, &cx) == AP_PENDING; ap_cx_reset(&cx, ap_now_ns()))
        wait_until_woken_or(ap_deadline_to_ms_timeout(cx.deadline, ap_now_ns())); /* epoll_wait's timeout */
    if (ap_mpmc_pop_status(&f) == AP_OK) use(v);
    EXPECT_GE(loop_waits, 1, "the queue was empty: the loop waited");
    EXPECT_EQ(used, 42);
    ap_mpmc_fini(&q);
}

/* ---- README.md, Usage: a pipeline behind a lifecycle (after examples/pipeline.c) ---- */

enum { CAP = 16 };
typedef unsigned long long u64;
static AP_ALIGNAS(64) unsigned char qin[AP_MPMC_BYTES(CAP, sizeof(u64))];
static AP_ALIGNAS(64) unsigned char qs[3][AP_MPMC_BYTES(CAP, sizeof(u64))];
static ap_pipeline pipe_;
static ap_pipeline_stage stages[3];
static ap_life life = AP_LIFE_INITIALIZER;
static ap_status plus_one(void *ctx, const void *in, void *out, int *app_error)
{
    (void)ctx, (void)app_error;
    *(u64 *)out = *(const u64 *)in + 1;
    return AP_OK;
}

static int readme_pipeline_setup(void)
{
    ap_pipeline_stage_desc sd[3];
    for (int i = 0; i < 3; i++)
        sd[i] = (ap_pipeline_stage_desc){.fn = plus_one, .out_size = sizeof(u64),
                                         .capacity = CAP, .buf = qs[i], .bytes = sizeof qs[i]};
    /* setup: every buffer comes with its size */
    ap_pipeline_desc d = {.in_size = sizeof(u64), .in_capacity = CAP, .in_buf = qin,
                          .in_bytes = sizeof qin, .stages = sd, .nstages = 3};
    if (ap_pipeline_init(&pipe_, stages, sizeof stages, &d) != AP_OK) return 1;
    return 0;
}

struct readme_stage { pthread_t th; size_t stage; int rc; ap_status st; };
static int readme_stage_run(size_t stage, ap_status *st_out)
{
    /* each stage thread */
    u64 in, out;
    ap_pipeline_worker worker;
    if (ap_pipeline_worker_init(&worker, &in, sizeof in, &out, sizeof out, &pipe_, stage) != AP_OK) return 1;
    ap_pipeline_run_fut f;
    ap_pipeline_run_fut_init(&f, &worker, 64);
    ap_block_on(&f.base);                  /* until its input is closed and drained */
    *st_out = ap_pipeline_run_status(&f);
    return 0;
}
static void *readme_stage_main(void *arg)
{
    struct readme_stage *s = arg;
    s->rc = readme_stage_run(s->stage, &s->st);
    return NULL;
}

static unsigned readme_pushed;
static void readme_pipeline_produce(u64 v)
{
    ap_status st;
    /* producers */
    if (ap_life_enter(&life) != AP_OK) return;     /* stopping: no new work */
    st = ap_pipeline_push_wait(&pipe_, &v, AP_DEADLINE_NONE);
    ap_life_leave(&life);
    readme_pushed += st == AP_OK;
}

static int readme_pipeline_shutdown(void)
{
    /* shutdown */
    if (ap_life_stop(&life) != AP_OK ||
        ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, AP_DEADLINE_NONE) != AP_OK) /* nobody inside */
        return 1;
    ap_pipeline_close(&pipe_);                     /* drains stage by stage */
    return 0;
}

Test(usage, readme_pipeline, .timeout = 30)
{
    enum { N = 40 };
    EXPECT_EQ(readme_pipeline_setup(), 0);
    EXPECT_EQ(ap_life_start(&life), AP_OK);
    EXPECT_EQ(ap_life_started(&life, true), AP_OK);
    struct readme_stage w[3];
    for (size_t i = 0; i < 3; i++) {
        w[i] = (struct readme_stage){.stage = i, .rc = -1, .st = AP_NOT_READY};
        EXPECT_EQ(pthread_create(&w[i].th, NULL, readme_stage_main, &w[i]), 0);
    }
    for (u64 v = 1; v <= N; v++)
        readme_pipeline_produce(v);
    EXPECT_EQ(readme_pipeline_shutdown(), 0);
    readme_pipeline_produce(N + 1); /* after stop: refused at the gate, not pushed */
    u64 v, sum = 0;
    unsigned popped = 0;
    ap_status st;
    while ((st = ap_pipeline_pop_wait(&pipe_, &v, AP_DEADLINE_NONE)) == AP_OK)
        popped++, sum += v;
    EXPECT_EQ(st, AP_CLOSED, "closed and drained");
    for (size_t i = 0; i < 3; i++) {
        pthread_join(w[i].th, NULL);
        EXPECT_EQ(w[i].rc, 0);
        EXPECT_EQ(w[i].st, AP_OK);
    }
    EXPECT_EQ(readme_pushed, N);
    EXPECT_EQ(popped, N);
    EXPECT_EQ(sum, (u64)N * (N + 1) / 2 + 3 * N, "each element went through three +1 stages");
    EXPECT_EQ(ap_life_terminated(&life), AP_OK);
    ap_pipeline_fini(&pipe_);
}
