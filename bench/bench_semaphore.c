/*
 * bench/bench_semaphore.c -- the counting semaphore against its peers
 *
 * Scenarios:
 *   sem_pair_1t     one thread: acquire one permit without blocking, release
 *                   it; ns per pair. ap_sem_try_acquire + ap_sem_release vs
 *                   POSIX sem_trywait + sem_post vs a naive mutex+condvar
 *                   semaphore (lock, count--, unlock; lock, count++, signal,
 *                   unlock).
 *   sem_handoff_2t  ping-pong between two threads over two semaphores that
 *                   start at 0: A releases s0 and waits on s1, B waits on s0
 *                   and releases s1. Every wait finds no permit, so the waiter
 *                   parks (ap_sem_acquire_wait = an acquire future driven by
 *                   ap_block_on; sem_wait; pthread_cond_wait) and is woken by
 *                   the other thread's release; ns per hand-off (2 per round
 *                   trip).
 *
 * Self-checks: pairs check every status and that the count is back where it
 * started; hand-offs carry a sequence number in a plain slot published by
 * the release and read after the acquire (so a missing happens-before edge
 * shows as a wrong value), every value is checked, and both semaphores must
 * be back at 0. Any mismatch exits 2.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_semaphore.c -pthread
 * Run:   ./bench_semaphore [results.tsv]   (TSV lines are appended)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>

#define POISON UINT64_MAX

/* ---- the naive peer: a mutex + condvar counting semaphore ---- */
typedef struct naive_sem {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t count;
} naive_sem;

static void naive_init(naive_sem *s, size_t n)
{
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->count = n;
}
static void naive_fini(naive_sem *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}
static bool naive_try(naive_sem *s)
{
    pthread_mutex_lock(&s->mu);
    bool ok = s->count > 0;
    if (ok)
        s->count--;
    pthread_mutex_unlock(&s->mu);
    return ok;
}
static void naive_wait(naive_sem *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->count == 0)
        pthread_cond_wait(&s->cv, &s->mu);
    s->count--;
    pthread_mutex_unlock(&s->mu);
}
static void naive_post(naive_sem *s)
{
    pthread_mutex_lock(&s->mu);
    s->count++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ============================ pair, 1 thread ============================ */

static uint64_t pair_ap(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    static ap_sem s;
    if (ap_sem_init(&s, 4) != AP_OK)
        bench_fail("ap_sem_init");
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            bad += ap_sem_try_acquire(&s, 1) != AP_OK;
            bad += ap_sem_release(&s, 1) != AP_OK;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || ap_sem_available(&s) != 4)
        bench_fail("ap_sem pair: %llu failed ops, available %zu", (unsigned long long)bad,
                   ap_sem_available(&s));
    ap_sem_fini(&s);
    *iters = i;
    return t1 - t0;
}

static uint64_t pair_posix(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    sem_t s;
    if (sem_init(&s, 0, 4) != 0)
        bench_fail("sem_init: %s", strerror(errno));
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            bad += sem_trywait(&s) != 0;
            bad += sem_post(&s) != 0;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    int v = -1;
    sem_getvalue(&s, &v);
    if (bad || v != 4)
        bench_fail("posix sem pair: %llu failed ops, value %d", (unsigned long long)bad, v);
    sem_destroy(&s);
    *iters = i;
    return t1 - t0;
}

static uint64_t pair_naive(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    (void)ctx;
    naive_sem s;
    naive_init(&s, 4);
    uint64_t t0 = bench_now_ns(), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 4096; i < end; i++) {
            bad += !naive_try(&s);
            naive_post(&s);
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    if (bad || s.count != 4)
        bench_fail("naive sem pair: %llu failed ops, count %zu", (unsigned long long)bad,
                   s.count);
    naive_fini(&s);
    *iters = i;
    return t1 - t0;
}

/* ========================= hand-off, 2 threads ========================= */

typedef struct ho_ctx ho_ctx;
typedef struct ho_ops {
    const char *name;
    void (*init)(ho_ctx *);
    void (*fini)(ho_ctx *); /* checks the final counts */
    void (*post)(ho_ctx *, int dir);
    void (*wait)(ho_ctx *, int dir);
} ho_ops;

struct ho_ctx {
    const ho_ops *ops;
    bench_gate gate;
    ap_sem as[2];
    sem_t ps[2];
    naive_sem ns[2];
    _Alignas(64) uint64_t slot[2][8]; /* one line each; plain: ordered by the semaphore */
};

static void ho_ap_init(ho_ctx *c)
{
    for (int d = 0; d < 2; d++)
        if (ap_sem_init_max(&c->as[d], 0, 1) != AP_OK)
            bench_fail("ap_sem_init_max");
}
static void ho_ap_fini(ho_ctx *c)
{
    for (int d = 0; d < 2; d++) {
        if (ap_sem_available(&c->as[d]) != 0)
            bench_fail("ap_sem hand-off: %zu permits left", ap_sem_available(&c->as[d]));
        ap_sem_fini(&c->as[d]);
    }
}
static void ho_ap_post(ho_ctx *c, int d)
{
    ap_status st = ap_sem_release(&c->as[d], 1);
    if (st != AP_OK)
        bench_fail("ap_sem_release: %s", ap_status_str(st));
}
static void ho_ap_wait(ho_ctx *c, int d)
{
    ap_status st = ap_sem_acquire_wait(&c->as[d], 1, AP_DEADLINE_NONE);
    if (st != AP_OK)
        bench_fail("ap_sem_acquire_wait: %s", ap_status_str(st));
}

static void ho_posix_init(ho_ctx *c)
{
    for (int d = 0; d < 2; d++)
        if (sem_init(&c->ps[d], 0, 0) != 0)
            bench_fail("sem_init: %s", strerror(errno));
}
static void ho_posix_fini(ho_ctx *c)
{
    for (int d = 0; d < 2; d++) {
        int v = -1;
        sem_getvalue(&c->ps[d], &v);
        if (v != 0)
            bench_fail("posix hand-off: value %d left", v);
        sem_destroy(&c->ps[d]);
    }
}
static void ho_posix_post(ho_ctx *c, int d)
{
    if (sem_post(&c->ps[d]) != 0)
        bench_fail("sem_post: %s", strerror(errno));
}
static void ho_posix_wait(ho_ctx *c, int d)
{
    while (sem_wait(&c->ps[d]) != 0)
        if (errno != EINTR)
            bench_fail("sem_wait: %s", strerror(errno));
}

static void ho_naive_init(ho_ctx *c)
{
    for (int d = 0; d < 2; d++)
        naive_init(&c->ns[d], 0);
}
static void ho_naive_fini(ho_ctx *c)
{
    for (int d = 0; d < 2; d++) {
        if (c->ns[d].count != 0)
            bench_fail("naive hand-off: count %zu left", c->ns[d].count);
        naive_fini(&c->ns[d]);
    }
}
static void ho_naive_post(ho_ctx *c, int d) { naive_post(&c->ns[d]); }
static void ho_naive_wait(ho_ctx *c, int d) { naive_wait(&c->ns[d]); }

static const ho_ops ho_ap = {"ap_sem", ho_ap_init, ho_ap_fini, ho_ap_post, ho_ap_wait};
static const ho_ops ho_posix = {"posix_sem", ho_posix_init, ho_posix_fini, ho_posix_post,
                                ho_posix_wait};
static const ho_ops ho_naive = {"mutex_condvar", ho_naive_init, ho_naive_fini, ho_naive_post,
                                ho_naive_wait};

static void *ho_echo(void *arg)
{
    ho_ctx *c = (ho_ctx *)arg;
    bench_pin(1);
    bench_gate_wait(&c->gate);
    for (;;) {
        c->ops->wait(c, 0);
        uint64_t v = c->slot[0][0];
        if (v == POISON)
            break;
        c->slot[1][0] = v;
        c->ops->post(c, 1);
    }
    return NULL;
}

static uint64_t ho_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const ho_ops *ops = (const ho_ops *)ctx;
    ho_ctx *c = (ho_ctx *)aligned_alloc(64, (sizeof(ho_ctx) + 63) & ~(size_t)63);
    if (c == NULL)
        bench_fail("out of memory");
    memset(c, 0, sizeof *c);
    pthread_t th;
    c->ops = ops;
    bench_gate_init(&c->gate);
    ops->init(c);
    if (pthread_create(&th, NULL, ho_echo, c))
        bench_fail("pthread_create");
    bench_pin(0);
    uint64_t t0 = bench_gate_open(&c->gate, 1), t1, i = 0, bad = 0;
    do {
        for (uint64_t end = i + 64; i < end; i++) {
            c->slot[0][0] = i;
            ops->post(c, 0);
            ops->wait(c, 1);
            bad += c->slot[1][0] != i;
        }
    } while ((t1 = bench_now_ns()) - t0 < budget_ns);
    c->slot[0][0] = POISON;
    ops->post(c, 0);
    pthread_join(th, NULL);
    if (bad)
        bench_fail("%s hand-off: %llu values came back wrong", ops->name,
                   (unsigned long long)bad);
    ops->fini(c);
    free(c);
    *iters = i;
    return t1 - t0;
}

/* ============================== main ============================== */

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_semaphore");

    static bench_scenario s_pair = {
        "sem_pair_1t", "one thread: non-blocking acquire of 1 permit, then release (4 permits)",
        BENCH_TIME, "ns_per_pair", "ns", 1, 100, {{0}}, 0, 0};
    static bench_scenario s_ho = {
        "sem_handoff_2t", "2-thread ping-pong over two semaphores starting at 0; the waiter "
                          "is parked, woken by the other thread's release",
        BENCH_TIME, "ns_per_handoff", "ns", 2, 300, {{0}}, 0, 0};
    const char *naive_note = "naive baseline: mutex + condvar counting semaphore";

    bench_add(&s_pair, "ap_sem", "ap_sem_try_acquire + ap_sem_release", pair_ap, NULL);
    bench_add(&s_pair, "posix_sem", "sem_trywait + sem_post", pair_posix, NULL);
    bench_add(&s_pair, "mutex_condvar", naive_note, pair_naive, NULL);

    bench_add(&s_ho, "ap_sem", "ap_sem_acquire_wait (future + ap_block_on) + ap_sem_release",
              ho_run, (void *)&ho_ap);
    bench_add(&s_ho, "posix_sem", "sem_wait + sem_post", ho_run, (void *)&ho_posix);
    bench_add(&s_ho, "mutex_condvar", naive_note, ho_run, (void *)&ho_naive);

    bench_run_scenario(&cfg, &s_pair);
    bench_ratio(&cfg, &s_pair, "ap_sem", "posix_sem", 1);
    bench_ratio(&cfg, &s_pair, "ap_sem", "mutex_condvar", 0);

    bench_run_scenario(&cfg, &s_ho);
    bench_ratio(&cfg, &s_ho, "ap_sem", "posix_sem", 1);
    bench_ratio(&cfg, &s_ho, "ap_sem", "mutex_condvar", 0);

    int missed = bench_summary();
    if (missed)
        printf("   %d target(s) missed (reported, not a failure: timings are never asserted)\n",
               missed);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
