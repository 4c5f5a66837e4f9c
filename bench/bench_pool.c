/*
 * bench/bench_pool.c -- the object pool against the naive mutex+condvar pool
 *
 * Scenarios:
 *   pool_pair_1t     one thread: take an idle object without blocking, put
 *                    it back; ns per pair. ap_pool_try_get + ap_pool_put vs
 *                    a naive pool (one mutex and one condvar around a free
 *                    list: lock, pop, unlock; lock, push, signal, unlock).
 *   pool_handoff_2t  two threads share a pool of ONE object and take turns
 *                    with it: each gets it (blocking), and if the object's
 *                    turn counter says it is this thread's turn, bumps the
 *                    counter; then puts it back. A put that finds the other
 *                    thread queued hands the object straight to it
 *                    (ap_pool); the naive pool makes it free and signals,
 *                    and the putter may barge back in before the woken
 *                    thread runs. Either pool lets a get take an idle
 *                    object when nobody is queued, so some gets find it is
 *                    not their turn (wasted gets, printed with
 *                    BENCH_POOL_VERBOSE=1). ns per turn (the work the
 *                    program wants done), wasted gets included.
 *
 * Self-checks: every status; the pair loop checks the pool is whole at the
 * end; the hand-off checks that the turn counter equals the sum of the
 * turns both threads counted (a plain field ordered only by the pool, so a
 * missing happens-before edge shows as a wrong count), and that the object
 * is idle at the end. Any mismatch exits 2.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_pool.c -pthread
 * Run:   ./bench_pool [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "asyncpat/pool.h"
#include "bench.h"

#include <pthread.h>

#define NOBJ 4
#define POISON UINT64_MAX

typedef struct bobj {
    uint64_t turn;
    char pad[56];
} bobj;

/* ---- the naive peer: a free list under one mutex + condvar ---- */
typedef struct naive_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    void *free[NOBJ];
    size_t nfree;
} naive_pool;

static void naive_init(naive_pool *p, bobj *objs, size_t n)
{
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->nfree = 0;
    for (size_t i = n; i-- > 0;)
        p->free[p->nfree++] = &objs[i];
}
static void naive_fini(naive_pool *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}
static void *naive_try_get(naive_pool *p)
{
    pthread_mutex_lock(&p->mu);
    void *o = p->nfree ? p->free[--p->nfree] : NULL;
    pthread_mutex_unlock(&p->mu);
    return o;
}
static void *naive_get_wait(naive_pool *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    void *o = p->free[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return o;
}
static void naive_put(naive_pool *p, void *o)
{
    pthread_mutex_lock(&p->mu);
    p->free[p->nfree++] = o;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ============================ pair, 1 thread ============================ */

static uint64_t pair_ap(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    static ap_pool p;
    static bobj objs[NOBJ];
    static _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(NOBJ)];
    if (ap_pool_init(&p, st, sizeof st, objs, sizeof objs, NOBJ, sizeof(bobj)) != AP_OK)
        bench_fail("ap_pool_init");
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            void *o = NULL;
            bad += ap_pool_try_get(&p, &o) != AP_OK;
            bad += ap_pool_put(&p, o) != AP_OK;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || ap_pool_idle(&p) != NOBJ)
        bench_fail("ap_pool pair: %llu failed ops, idle %zu", (unsigned long long)bad,
                   ap_pool_idle(&p));
    ap_pool_fini(&p);
    *iters = i;
    return t1 - t0;
}

static uint64_t pair_naive(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    static bobj objs[NOBJ];
    naive_pool p;
    naive_init(&p, objs, NOBJ);
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            void *o = naive_try_get(&p);
            bad += o == NULL;
            naive_put(&p, o);
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || p.nfree != NOBJ)
        bench_fail("naive pool pair: %llu failed ops, free %zu", (unsigned long long)bad,
                   p.nfree);
    naive_fini(&p);
    *iters = i;
    return t1 - t0;
}

/* ========================= hand-off, 2 threads ========================= */

typedef struct ho_ctx {
    bool naive;
    bench_gate gate;
    ap_pool ap;
    naive_pool np;
    _Alignas(64) bobj obj[1];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(1)];
    uint64_t turns[2], wasted[2]; /* per thread, private */
} ho_ctx;

static bobj *ho_get(ho_ctx *c)
{
    if (c->naive)
        return naive_get_wait(&c->np);
    void *o = NULL;
    ap_status st = ap_pool_get_wait(&c->ap, &o, AP_DEADLINE_NONE);
    if (st != AP_OK)
        bench_fail("ap_pool_get_wait: %s", ap_status_str(st));
    return o;
}

static void ho_put(ho_ctx *c, bobj *o)
{
    if (c->naive) {
        naive_put(&c->np, o);
        return;
    }
    ap_status st = ap_pool_put(&c->ap, o);
    if (st != AP_OK)
        bench_fail("ap_pool_put: %s", ap_status_str(st));
}

/* One turn-taking loop; returns when it sees POISON (echo) or when the
 * budget is spent on its own turn (main, which then poisons). */
static void ho_loop(ho_ctx *c, int me, uint64_t t0, uint64_t budget_ns, uint64_t *t1)
{
    for (uint64_t k = 0;; k++) {
        bobj *o = ho_get(c);
        if (o->turn == POISON) {
            ho_put(c, o);
            return;
        }
        if (o->turn % 2 == (uint64_t)me) {
            if (me == 0 && (k & 63) == 0 && (*t1 = bench_now_ns()) - t0 >= budget_ns) {
                o->turn = POISON;
                ho_put(c, o);
                return;
            }
            o->turn++;
            c->turns[me]++;
        } else {
            c->wasted[me]++;
        }
        ho_put(c, o);
    }
}

static void *ho_echo(void *arg)
{
    ho_ctx *c = (ho_ctx *)arg;
    bench_pin(1);
    bench_gate_wait(&c->gate);
    uint64_t unused = 0;
    ho_loop(c, 1, 0, 0, &unused);
    return NULL;
}

static uint64_t ho_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    bool naive = ctx != NULL;
    ho_ctx *c = (ho_ctx *)aligned_alloc(64, (sizeof(ho_ctx) + 63) & ~(size_t)63);
    if (c == NULL)
        bench_fail("out of memory");
    memset(c, 0, sizeof *c);
    c->naive = naive;
    bench_gate_init(&c->gate);
    if (naive)
        naive_init(&c->np, c->obj, 1);
    else if (ap_pool_init(&c->ap, c->st, sizeof c->st, c->obj, sizeof c->obj, 1,
                          sizeof(bobj)) != AP_OK)
        bench_fail("ap_pool_init");
    pthread_t th;
    if (pthread_create(&th, NULL, ho_echo, c))
        bench_fail("pthread_create");
    bench_pin(0);
    uint64_t t0 = bench_gate_open(&c->gate, 1), t1 = t0;
    ho_loop(c, 0, t0, budget_ns, &t1);
    pthread_join(th, NULL);
    uint64_t turns = c->turns[0] + c->turns[1];
    if (c->obj[0].turn != POISON)
        bench_fail("hand-off: the object was not poisoned");
    if (turns == 0 || c->turns[0] < c->turns[1] || c->turns[0] > c->turns[1] + 1)
        bench_fail("hand-off: turns %llu / %llu do not alternate",
                   (unsigned long long)c->turns[0], (unsigned long long)c->turns[1]);
    if (naive) {
        if (c->np.nfree != 1)
            bench_fail("naive hand-off: %zu objects free at the end", c->np.nfree);
        naive_fini(&c->np);
    } else {
        if (ap_pool_idle(&c->ap) != 1)
            bench_fail("ap_pool hand-off: %zu objects idle at the end", ap_pool_idle(&c->ap));
        ap_pool_fini(&c->ap);
    }
    if (getenv("BENCH_POOL_VERBOSE"))
        printf("      %s: %llu turns, %llu wasted gets\n", naive ? "mutex_condvar" : "ap_pool",
               (unsigned long long)turns, (unsigned long long)(c->wasted[0] + c->wasted[1]));
    free(c);
    *iters = turns;
    return t1 - t0;
}

/* ============================== main ============================== */

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_pool");

    static bench_scenario s_pair = {
        "pool_pair_1t", "one thread: non-blocking get of an idle object, then put (4 objects)",
        BENCH_TIME, "ns_per_pair", "ns", 1, 100, {{0}}, 0, 0};
    static bench_scenario s_ho = {
        "pool_handoff_2t", "2 threads take turns with the one object of a pool; blocking "
                           "gets; ns per turn (wasted gets on the naive pool included)",
        BENCH_TIME, "ns_per_turn", "ns", 1, 300, {{0}}, 0, 0};
    const char *naive_note = "naive baseline: free list under a mutex + condvar";

    bench_add(&s_pair, "ap_pool", "ap_pool_try_get + ap_pool_put", pair_ap, NULL);
    bench_add(&s_pair, "mutex_condvar", naive_note, pair_naive, NULL);

    bench_add(&s_ho, "ap_pool", "ap_pool_get_wait (future + ap_block_on) + ap_pool_put",
              ho_run, NULL);
    bench_add(&s_ho, "mutex_condvar", naive_note, ho_run, (void *)1);

    bench_run_scenario(&cfg, &s_pair);
    bench_ratio(&cfg, &s_pair, "ap_pool", "mutex_condvar", 0);

    bench_run_scenario(&cfg, &s_ho);
    bench_ratio(&cfg, &s_ho, "ap_pool", "mutex_condvar", 0);

    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
