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
 *
 *   topic_decouple, topic_nonmatching: asyncpat/topic.h (see below).
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

/* ---- topics (asyncpat/topic.h) ----
 *
 * topic_decouple  1 publisher thread on "md.x.trade", 1 subscriber thread
 *   ("md.*.trade", OVERWRITE, depth 1024) receiving with try_recv +
 *   backoff; impl "none": that is all; impl "stalled": plus one OVERWRITE
 *   subscription on the same pattern that never reads. Metric: messages
 *   published per second. The decoupling theorem: stalled / none >= 0.9.
 * topic_nonmatching  1 thread publishing on "a.b" with one matching
 *   subscription (stalled OVERWRITE); impl "0_other": nothing else;
 *   impl "1000_other": plus 1000 subscriptions that do not match
 *   ("a.<n>", "<n>.b", "a.b.<n>": siblings at every level). The publish
 *   cost should not depend on them: 1000_other / 0_other >= 0.9.
 * Self-check: the live subscriber's received + lost == published; the
 * stalled one's lost == published - its depth.
 */
typedef struct tp_case {
    int stalled;
    int others;
} tp_case;

typedef struct tp_shared {
    ap_topic bus;
    bench_gate gate;
    _Alignas(64) _Atomic int stop;
} tp_shared;

typedef struct tp_sub {
    ap_topic_sub s;
    uint64_t *ring;
} tp_sub;

static void tp_sub_on(ap_topic *bus, tp_sub *ts, const char *pat, size_t depth)
{
    ts->ring = aligned_alloc(64, AP_TOPIC_SUB_BYTES(depth));
    if (ts->ring == NULL)
        bench_fail("out of memory");
    memset(&ts->s, 0, sizeof ts->s);
    ap_status st = ap_topic_subscribe(bus, &ts->s, pat, AP_TOPIC_POLICY_OVERWRITE, ts->ring,
                                      AP_TOPIC_SUB_BYTES(depth), depth);
    if (st != AP_OK)
        bench_fail("ap_topic_subscribe %s: %s", pat, ap_status_str(st));
}

static void tp_sub_off(ap_topic *bus, tp_sub *ts)
{
    ap_topic_unsubscribe(bus, &ts->s);
    free(ts->ring);
}

typedef struct tp_thread {
    tp_shared *sh;
    tp_sub *sub;
    pthread_t th;
    uint64_t published, end_ns;
} tp_thread;

static void *tp_publisher(void *arg)
{
    tp_thread *t = arg;
    uint64_t i = 0;
    bench_pin(0);
    bench_gate_wait(&t->sh->gate);
    for (;; i++) {
        if ((i & 255) == 0 && atomic_load_explicit(&t->sh->stop, memory_order_relaxed))
            break;
        ap_status st = ap_topic_try_publish(&t->sh->bus, "md.x.trade", &i);
        if (st != AP_OK)
            bench_fail("ap_topic_try_publish: %s", ap_status_str(st));
    }
    t->published = i;
    t->end_ns = bench_now_ns();
    ap_topic_close(&t->sh->bus);
    return NULL;
}

static void *tp_subscriber(void *arg)
{
    tp_thread *t = arg;
    bench_pin(1);
    bench_gate_wait(&t->sh->gate);
    for (;;) {
        uint64_t v;
        unsigned f = 0;
        ap_status st;
        while ((st = ap_topic_sub_try_recv(&t->sub->s, &v, NULL, NULL)) == AP_EMPTY)
            bench_backoff(&f);
        if (st == AP_CLOSED)
            break;
    }
    return NULL;
}

static uint64_t tp_decouple_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const tp_case *c = ctx;
    tp_shared *sh = aligned_alloc(64, ap__align_up(sizeof *sh, 64));
    size_t bytes = AP_TOPIC_BYTES(4096, sizeof(uint64_t), 8);
    void *mem = aligned_alloc(64, ap__align_up(bytes, 64));
    if (sh == NULL || mem == NULL)
        bench_fail("out of memory");
    memset(sh, 0, sizeof *sh);
    bench_gate_init(&sh->gate);
    atomic_init(&sh->stop, 0);
    if (ap_topic_init(&sh->bus, mem, bytes, 4096, sizeof(uint64_t), 8) != AP_OK)
        bench_fail("ap_topic_init");
    tp_sub live, stalled;
    tp_sub_on(&sh->bus, &live, "md.*.trade", 1024);
    if (c->stalled)
        tp_sub_on(&sh->bus, &stalled, "md.*.trade", 1024);
    tp_thread pub = {sh, NULL, 0, 0, 0}, sub = {sh, &live, 0, 0, 0};
    if (pthread_create(&pub.th, NULL, tp_publisher, &pub) ||
        pthread_create(&sub.th, NULL, tp_subscriber, &sub))
        bench_fail("pthread_create");
    uint64_t t0 = bench_gate_open(&sh->gate, 2);
    bench_sleep_ns(budget_ns);
    atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
    pthread_join(pub.th, NULL);
    pthread_join(sub.th, NULL);
    if (ap_topic_sub_received(&live.s) + ap_topic_sub_lost(&live.s) != pub.published)
        bench_fail("topic_decouple: live subscriber %llu + %llu != %llu",
                   (unsigned long long)ap_topic_sub_received(&live.s),
                   (unsigned long long)ap_topic_sub_lost(&live.s),
                   (unsigned long long)pub.published);
    if (c->stalled) {
        uint64_t v;
        ap_status st;
        while ((st = ap_topic_sub_try_recv(&stalled.s, &v, NULL, NULL)) == AP_OK ||
               st == AP_DROPPED) {}
        if (ap_topic_sub_received(&stalled.s) + ap_topic_sub_lost(&stalled.s) != pub.published)
            bench_fail("topic_decouple: stalled subscriber miscounted");
        tp_sub_off(&sh->bus, &stalled);
    }
    tp_sub_off(&sh->bus, &live);
    ap_topic_fini(&sh->bus);
    *iters = pub.published;
    uint64_t ns = pub.end_ns - t0;
    free(mem);
    free(sh);
    return ns;
}

static uint64_t tp_nonmatching_run(void *ctx, uint64_t budget_ns, uint64_t *iters)
{
    const tp_case *c = ctx;
    size_t nodes = 4 + 3 * (size_t)c->others;
    size_t bytes = AP_TOPIC_BYTES(1024, sizeof(uint64_t), nodes);
    ap_topic *bus = aligned_alloc(64, ap__align_up(sizeof *bus, 64));
    void *mem = aligned_alloc(64, ap__align_up(bytes, 64));
    tp_sub *subs = calloc((size_t)c->others + 1, sizeof *subs);
    if (bus == NULL || mem == NULL || subs == NULL)
        bench_fail("out of memory");
    if (ap_topic_init(bus, mem, bytes, 1024, sizeof(uint64_t), nodes) != AP_OK)
        bench_fail("ap_topic_init");
    tp_sub_on(bus, &subs[0], "a.b", 64);
    for (int k = 1; k <= c->others; k++) {
        char pat[32];
        int n = k / 3;
        snprintf(pat, sizeof pat, k % 3 == 0 ? "a.%d" : k % 3 == 1 ? "%d.b" : "a.b.%d", n);
        tp_sub_on(bus, &subs[k], pat, 2);
    }
    uint64_t t0 = bench_now_ns(), t1 = t0, i = 0;
    for (;; i++) {
        if ((i & 1023) == 0 && (t1 = bench_now_ns()) - t0 >= budget_ns)
            break;
        if (ap_topic_try_publish(bus, "a.b", &i) != AP_OK)
            bench_fail("ap_topic_try_publish");
    }
    for (int k = 1; k <= c->others; k++)
        if (ap_topic_sub_len(&subs[k].s) != 0)
            bench_fail("topic_nonmatching: a non-matching subscription got a message");
    for (int k = 0; k <= c->others; k++)
        tp_sub_off(bus, &subs[k]);
    ap_topic_fini(bus);
    free(subs);
    free(mem);
    free(bus);
    *iters = i;
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
    static bench_scenario s3 = {
        "topic_decouple", "topic.h: 1 publisher -> 1 OVERWRITE subscriber thread, plus 0 or 1 stalled",
        BENCH_RATE, "throughput", "Mops/s", 1, 400, {{0}}, 0, 0};
    static bench_scenario s4 = {
        "topic_nonmatching", "topic.h: 1 thread publishing to 1 match, 0 or 1000 non-matching subs",
        BENCH_RATE, "throughput", "Mops/s", 1, 400, {{0}}, 0, 0};
    static const tp_case none = {0, 0}, stalled = {1, 0}, o0 = {0, 0}, o1000 = {0, 1000};
    bench_add(&s3, "stalled", "plus one OVERWRITE subscriber that never reads", tp_decouple_run,
              (void *)&stalled);
    bench_add(&s3, "none", "no stalled subscriber", tp_decouple_run, (void *)&none);
    bench_add(&s4, "1000_other", "1000 non-matching subscriptions", tp_nonmatching_run,
              (void *)&o1000);
    bench_add(&s4, "0_other", "no other subscription", tp_nonmatching_run, (void *)&o0);
    bench_run_scenario(&cfg, &s3);
    bench_ratio(&cfg, &s3, "stalled", "none", 0.9);
    bench_run_scenario(&cfg, &s4);
    bench_ratio(&cfg, &s4, "1000_other", "0_other", 0.9);
    (void)bench_summary();
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
