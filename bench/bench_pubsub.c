/*
 * bench/bench_pubsub.c -- asyncpat/pubsub.h (broadcast channel)
 *
 * Scenarios
 *   pubsub_1p1s  1 publisher thread -> 1 subscriber thread
 *   pubsub_1p2s  1 publisher thread -> 2 subscriber threads
 *   Messages are uint64_t sequence numbers, ring capacity 1024. The metric
 *   is messages published per second with every subscriber receiving every
 *   message (lossless: so that both sides do the same work, the
 *   publisher of the ap_pubsub run keeps itself within the ring, Disruptor
 *   style: subscribers post their progress every 64 messages and the
 *   publisher re-reads it only when it gets near a lap ahead; an
 *   AP_DROPPED would fail the bench). Subscribers poll with
 *   ap_sub_try_recv and the suite's retry policy (bench_backoff).
 *   Peer: the naive broadcast, a shared ring under one pthread mutex with
 *   a cursor per subscriber; the publisher waits on a condvar while the
 *   slowest cursor is a lap behind, subscribers wait on a condvar (woken by
 *   broadcast) while they are caught up.
 *
 * Self-check: each subscriber receives 0, 1, 2, ... exactly, with no drop,
 * and as many messages as were published; otherwise the bench exits 2.
 */
#include "asyncpat.h"
#include "bench.h"

#include <pthread.h>

#define CAPACITY 1024
#define MAX_SUBS 4
#define PROGRESS_EVERY 64

typedef struct progress {
    _Alignas(64) _Atomic uint64_t done; /* messages received, posted every 64 */
} progress;

typedef struct ps_shared {
    int nsubs;
    bench_gate gate;
    _Alignas(64) _Atomic int stop;
    /* ap_pubsub */
    ap_pubsub *ps;
    progress prog[MAX_SUBS];
    /* naive */
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint64_t *ring;
    uint64_t head, cursor[MAX_SUBS];
    int sub_waiters, pub_waiting, closed;
} ps_shared;

typedef struct ps_thread {
    ps_shared *sh;
    int id;
    pthread_t th;
    uint64_t published, received, bad, end_ns;
} ps_thread;

/* ---- asyncpat ---- */

static void *ap_publisher(void *arg)
{
    ps_thread *t = arg;
    ps_shared *sh = t->sh;
    uint64_t i = 0, min_done = 0;
    bench_pin(0);
    bench_gate_wait(&sh->gate);
    for (;; i++) {
        if ((i & 255) == 0 && atomic_load_explicit(&sh->stop, memory_order_relaxed))
            break;
        /* stay within the ring: lossless, like the peer */
        unsigned gf = 0;
        while (i - min_done >= CAPACITY - 2 * PROGRESS_EVERY) {
            uint64_t m = UINT64_MAX;
            for (int s = 0; s < sh->nsubs; s++) {
                uint64_t d = atomic_load_explicit(&sh->prog[s].done, memory_order_acquire);
                m = d < m ? d : m;
            }
            min_done = m;
            if (i - min_done >= CAPACITY - 2 * PROGRESS_EVERY)
                bench_backoff(&gf);
        }
        unsigned f = 0;
        ap_status st;
        while ((st = ap_pubsub_try_publish(sh->ps, &i)) == AP_AGAIN)
            bench_backoff(&f);
        if (st != AP_OK)
            bench_fail("ap_pubsub_try_publish: %s", ap_status_str(st));
    }
    t->published = i;
    ap_pubsub_close(sh->ps);
    return NULL;
}

static void *ap_subscriber(void *arg)
{
    ps_thread *t = arg;
    ps_shared *sh = t->sh;
    ap_sub sub = {0};
    uint64_t next = 0, bad = 0;
    ap_pubsub_subscribe(sh->ps, &sub); /* before the gate: sees message 0 */
    bench_pin(t->id + 1);
    bench_gate_wait(&sh->gate);
    for (;;) {
        uint64_t v;
        unsigned f = 0;
        ap_status st;
        while ((st = ap_sub_try_recv(&sub, &v, NULL)) == AP_EMPTY || st == AP_AGAIN)
            bench_backoff(&f);
        if (st == AP_CLOSED)
            break;
        if (AP_UNLIKELY(st != AP_OK)) {
            bench_fail("subscriber %d: %s (lost %llu)", t->id, ap_status_str(st),
                       (unsigned long long)ap_sub_last_dropped(&sub));
        }
        bad += v != next;
        next++;
        if ((next & (PROGRESS_EVERY - 1)) == 0)
            atomic_store_explicit(&sh->prog[t->id].done, next, memory_order_release);
    }
    t->end_ns = bench_now_ns();
    t->received = next;
    t->bad = bad;
    ap_pubsub_unsubscribe(sh->ps, &sub);
    return NULL;
}

/* ---- naive: mutex + condvar broadcast ring ---- */

static uint64_t naive_min_cursor(ps_shared *sh)
{
    uint64_t m = UINT64_MAX;
    for (int s = 0; s < sh->nsubs; s++)
        m = sh->cursor[s] < m ? sh->cursor[s] : m;
    return m;
}

static void *naive_publisher(void *arg)
{
    ps_thread *t = arg;
    ps_shared *sh = t->sh;
    uint64_t i = 0;
    bench_pin(0);
    bench_gate_wait(&sh->gate);
    for (;; i++) {
        if ((i & 255) == 0 && atomic_load_explicit(&sh->stop, memory_order_relaxed))
            break;
        pthread_mutex_lock(&sh->mu);
        while (sh->head - naive_min_cursor(sh) >= CAPACITY) {
            sh->pub_waiting = 1;
            pthread_cond_wait(&sh->not_full, &sh->mu);
        }
        sh->ring[sh->head % CAPACITY] = i;
        sh->head++;
        if (sh->sub_waiters)
            pthread_cond_broadcast(&sh->not_empty);
        pthread_mutex_unlock(&sh->mu);
    }
    pthread_mutex_lock(&sh->mu);
    sh->closed = 1;
    pthread_cond_broadcast(&sh->not_empty);
    pthread_mutex_unlock(&sh->mu);
    t->published = i;
    return NULL;
}

static void *naive_subscriber(void *arg)
{
    ps_thread *t = arg;
    ps_shared *sh = t->sh;
    uint64_t next = 0, bad = 0;
    bench_pin(t->id + 1);
    bench_gate_wait(&sh->gate);
    for (;;) {
        pthread_mutex_lock(&sh->mu);
        while (sh->cursor[t->id] == sh->head && !sh->closed) {
            sh->sub_waiters++;
            pthread_cond_wait(&sh->not_empty, &sh->mu);
            sh->sub_waiters--;
        }
        if (sh->cursor[t->id] == sh->head) { /* closed and drained */
            pthread_mutex_unlock(&sh->mu);
            break;
        }
        uint64_t v = sh->ring[sh->cursor[t->id] % CAPACITY];
        sh->cursor[t->id]++;
        if (sh->pub_waiting) {
            sh->pub_waiting = 0;
            pthread_cond_signal(&sh->not_full);
        }
        pthread_mutex_unlock(&sh->mu);
        bad += v != next;
        next++;
    }
    t->end_ns = bench_now_ns();
    t->received = next;
    t->bad = bad;
    return NULL;
}

/* ---- one run ---- */

typedef struct ps_case {
    int nsubs;
    int naive;
} ps_case;

static uint64_t ps_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const ps_case *c = ctx;
    ps_shared *sh = aligned_alloc(64, ap__align_up(sizeof *sh, 64));
    if (sh == NULL)
        bench_fail("out of memory");
    memset(sh, 0, sizeof *sh);
    sh->nsubs = c->nsubs;
    bench_gate_init(&sh->gate);
    atomic_init(&sh->stop, 0);
    for (int s = 0; s < MAX_SUBS; s++)
        atomic_init(&sh->prog[s].done, 0);
    if (c->naive) {
        sh->ring = calloc(CAPACITY, sizeof *sh->ring);
        if (sh->ring == NULL)
            bench_fail("out of memory");
        pthread_mutex_init(&sh->mu, NULL);
        pthread_cond_init(&sh->not_empty, NULL);
        pthread_cond_init(&sh->not_full, NULL);
    } else if (ap_pubsub_create(&sh->ps, CAPACITY, sizeof(uint64_t), AP_PUBSUB_POLICY_OVERWRITE,
                                NULL) != AP_OK) {
        bench_fail("ap_pubsub_create");
    }
    ps_thread th[1 + MAX_SUBS];
    memset(th, 0, sizeof th);
    int n = 1 + c->nsubs;
    for (int i = 0; i < n; i++) {
        th[i].sh = sh;
        th[i].id = i - 1;
        void *(*fn)(void *) = i == 0 ? (c->naive ? naive_publisher : ap_publisher)
                                     : (c->naive ? naive_subscriber : ap_subscriber);
        if (pthread_create(&th[i].th, NULL, fn, &th[i]))
            bench_fail("pthread_create");
    }
    uint64_t t0 = bench_gate_open(&sh->gate, n), t1 = t0;
    bench_sleep_ns(budget_ns);
    atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
    for (int i = 0; i < n; i++)
        pthread_join(th[i].th, NULL);
    for (int i = 1; i < n; i++) {
        if (th[i].received != th[0].published || th[i].bad)
            bench_fail("%s 1p%ds: subscriber %d received %llu of %llu, %llu out of order",
                       c->naive ? "mutex_condvar" : "ap_pubsub", c->nsubs, i - 1,
                       (unsigned long long)th[i].received,
                       (unsigned long long)th[0].published, (unsigned long long)th[i].bad);
        if (th[i].end_ns > t1)
            t1 = th[i].end_ns;
    }
    if (c->naive) {
        pthread_cond_destroy(&sh->not_full);
        pthread_cond_destroy(&sh->not_empty);
        pthread_mutex_destroy(&sh->mu);
        free(sh->ring);
    } else {
        ap_pubsub_destroy(sh->ps);
    }
    *iters = th[0].published;
    free(sh);
    return t1 - t0;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_pubsub");
    static bench_scenario s1 = {
        "pubsub_1p1s", "1 publisher -> 1 subscriber thread, capacity 1024, uint64_t, lossless",
        BENCH_RATE, "throughput", "Mops/s", 1, 400, {{0}}, 0, 0};
    static bench_scenario s2 = {
        "pubsub_1p2s", "1 publisher -> 2 subscriber threads, capacity 1024, uint64_t, lossless",
        BENCH_RATE, "throughput", "Mops/s", 1, 400, {{0}}, 0, 0};
    static const ps_case ap1 = {1, 0}, nv1 = {1, 1}, ap2 = {2, 0}, nv2 = {2, 1};
    bench_add(&s1, "ap_pubsub", "try_publish / try_recv + backoff", ps_run, (void *)&ap1);
    bench_add(&s1, "mutex_condvar", "naive: ring + cursors under one mutex", ps_run,
              (void *)&nv1);
    bench_add(&s2, "ap_pubsub", "try_publish / try_recv + backoff", ps_run, (void *)&ap2);
    bench_add(&s2, "mutex_condvar", "naive: ring + cursors under one mutex", ps_run,
              (void *)&nv2);
    bench_run_scenario(&cfg, &s1);
    bench_ratio(&cfg, &s1, "ap_pubsub", "mutex_condvar", 0);
    bench_run_scenario(&cfg, &s2);
    bench_ratio(&cfg, &s2, "ap_pubsub", "mutex_condvar", 0);
    (void)bench_summary();
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
