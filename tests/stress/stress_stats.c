/*
 * tests/stress/stress_stats.c -- ThreadSanitizer stress of the stats
 * getters of issue #14 (standalone: see stress.h)
 *
 * Scenario mix cap={1,8}: 3 producers push through ap_tb acquire futures
 * (some with a short deadline: rejected) into an ap_mpmc (push_wait, or a
 * push future polled until ready); 3 consumers pop (pop_wait), borrow an
 * ap_pool object (get_wait) and an ap_sem permit (acquire_wait, now and
 * then with a deadline that passes: a timeout) around a little work; one
 * observer snapshots every getter all along. Checks:
 *   - while running, every counter the observer sees is monotone, and the
 *     tb snapshot never shows more outcomes than offers;
 *   - at quiescence the sums balance: mpmc pushed == popped == tb admitted
 *     == items received, and the popped ids add up; tb offered == admitted
 *     + rejected + canceled == offers made; no waiter anywhere; the
 *     semaphore's permits and the pool's objects are all back.
 */
#include "stress.h"

#define PRODUCERS 3
#define CONSUMERS 3

typedef struct st_run {
    ap_mpmc q;
    ap_sem sem;
    ap_pool pool;
    ap_tb tb;
    size_t per_producer;
    _Atomic uint64_t offers, admitted_seen, received, id_sum, pushed_ids, timeouts;
    _Atomic int done;
} st_run;

typedef struct st_worker {
    st_run *r;
    unsigned id;
    stress_rng rng;
} st_worker;

static void *st_producer(void *arg)
{
    st_worker *w = arg;
    st_run *r = w->r;
    for (size_t i = 0; i < r->per_producer; i++) {
        uint64_t v = ((uint64_t)w->id << 32) | i;
        bool patient = stress_below(&w->rng, 4) != 0;
        STRESS_ADD(&r->offers, 1);
        ap_status st = ap_tb_acquire_wait(&r->tb, 1, ap_now_ns() + (patient ? 2000000u : 1000u));
        if (st != AP_OK) {
            CHECK(st == AP_TIMEDOUT, "tb acquire_wait: %d", (int)st);
            continue;
        }
        STRESS_ADD(&r->admitted_seen, 1);
        STRESS_ADD(&r->pushed_ids, v);
        if (stress_below(&w->rng, 2)) {
            CHECK(ap_mpmc_push_wait(&r->q, &v, AP_DEADLINE_NONE) == AP_OK, "push_wait");
        } else {
            ap_mpmc_push_fut f;
            ap_mpmc_push_fut_init(&f, &r->q, &v);
            CHECK(ap_block_on_until(&f.base, AP_DEADLINE_NONE) == AP_OK, "block_on");
            CHECK(ap_mpmc_push_status(&f) == AP_OK, "push future");
        }
        stress_jitter(&w->rng);
    }
    return NULL;
}

static void *st_consumer(void *arg)
{
    st_worker *w = arg;
    st_run *r = w->r;
    uint64_t v;
    while (ap_mpmc_pop_wait(&r->q, &v, AP_DEADLINE_NONE) == AP_OK) {
        STRESS_ADD(&r->received, 1);
        STRESS_ADD(&r->id_sum, v);
        void *obj;
        CHECK(ap_pool_get_wait(&r->pool, &obj, AP_DEADLINE_NONE) == AP_OK, "pool get_wait");
        ap_status st;
        while ((st = ap_sem_acquire_wait(&r->sem, 1,
                                         stress_below(&w->rng, 8) ? AP_DEADLINE_NONE
                                                                  : ap_now_ns() + 2000u)) != AP_OK) {
            CHECK(st == AP_TIMEDOUT, "sem acquire_wait: %d", (int)st);
            STRESS_ADD(&r->timeouts, 1);
        }
        stress_jitter(&w->rng);
        CHECK(ap_sem_release(&r->sem, 1) == AP_OK, "sem release");
        CHECK(ap_pool_put(&r->pool, obj) == AP_OK, "pool put");
    }
    return NULL;
}

#define MONO(prev, cur, field, what)                                                       \
    CHECK((cur).field >= (prev).field, "%s.%s went down: %" PRIu64 " -> %" PRIu64, what, \
          #field, (uint64_t)(prev).field, (uint64_t)(cur).field)

static void *st_observer(void *arg)
{
    st_run *r = arg;
    ap_mpmc_stats q0, q1;
    ap_sem_stats s0, s1;
    ap_pool_stats p0, p1;
    ap_tb_stats t0, t1;
    memset(&q0, 0, sizeof q0);
    memset(&s0, 0, sizeof s0);
    memset(&p0, 0, sizeof p0);
    memset(&t0, 0, sizeof t0);
    while (!STRESS_LOAD(&r->done)) {
        ap_mpmc_stats_get(&r->q, &q1);
        ap_sem_stats_get(&r->sem, &s1);
        ap_pool_stats_get(&r->pool, &p1);
        ap_tb_stats_get(&r->tb, &t1);
        MONO(q0, q1, pushed, "mpmc");
        MONO(q0, q1, popped, "mpmc");
        MONO(q0, q1, push_waits, "mpmc");
        MONO(q0, q1, pop_waits, "mpmc");
        MONO(q0, q1, wait_ns, "mpmc");
        MONO(s0, s1, waits, "sem");
        MONO(s0, s1, wait_ns, "sem");
        MONO(p0, p1, waits, "pool");
        MONO(p0, p1, wait_ns, "pool");
        MONO(t0, t1, offered, "tb");
        MONO(t0, t1, admitted, "tb");
        MONO(t0, t1, rejected, "tb");
        MONO(t0, t1, waits, "tb");
        MONO(t0, t1, wait_ns, "tb");
        CHECK(t1.offered >= t1.admitted + t1.rejected + t1.canceled,
              "tb snapshot: offered %" PRIu64 " < outcomes %" PRIu64, t1.offered,
              t1.admitted + t1.rejected + t1.canceled);
        CHECK(s1.available <= s1.max && p1.idle <= p1.capacity, "sem/pool bounds");
        q0 = q1, s0 = s1, p0 = p1, t0 = t1;
        sched_yield();
    }
    return NULL;
}

static void run_mix(size_t cap, size_t per_producer)
{
    if (!stress_begin("mix cap=%zu per_producer=%zu", cap, per_producer))
        return;
    static st_run r;
    static _Alignas(8) unsigned char qbuf[AP_MPMC_BYTES(8, sizeof(uint64_t))];
    static _Alignas(AP_POOL_STATE_ALIGN) unsigned char pst[AP_POOL_STATE_BYTES(2)];
    static unsigned char pobj[2 * 64];
    memset(&r, 0, sizeof r);
    r.per_producer = per_producer;
    ap_tb_desc d;
    memset(&d, 0, sizeof d);
    d.n = 20000; /* one token per 50 us, a burst of 4 */
    d.period_ns = AP_NS_PER_SEC;
    d.burst = 4;
    CHECK(ap_mpmc_init(&r.q, qbuf, sizeof qbuf, cap, sizeof(uint64_t)) == AP_OK, "mpmc init");
    CHECK(ap_sem_init(&r.sem, 1) == AP_OK, "sem init");
    CHECK(ap_pool_init(&r.pool, pst, sizeof pst, pobj, sizeof pobj, 2, 64) == AP_OK, "pool init");
    CHECK(ap_tb_init(&r.tb, &d) == AP_OK, "tb init");
    st_worker w[PRODUCERS + CONSUMERS];
    pthread_t t[PRODUCERS + CONSUMERS], obs;
    stress_spawn(&obs, st_observer, &r);
    for (unsigned i = 0; i < PRODUCERS + CONSUMERS; i++) {
        w[i].r = &r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), cap);
        stress_spawn(&t[i], i < PRODUCERS ? st_producer : st_consumer, &w[i]);
    }
    for (unsigned i = 0; i < PRODUCERS; i++)
        stress_join(t[i]);
    ap_mpmc_close(&r.q);
    for (unsigned i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++)
        stress_join(t[i]);
    STRESS_STORE(&r.done, 1);
    stress_join(obs);
    ap_mpmc_stats q;
    ap_sem_stats s;
    ap_pool_stats p;
    ap_tb_stats tb;
    ap_mpmc_stats_get(&r.q, &q);
    ap_sem_stats_get(&r.sem, &s);
    ap_pool_stats_get(&r.pool, &p);
    ap_tb_stats_get(&r.tb, &tb);
    uint64_t admitted = STRESS_LOAD(&r.admitted_seen);
    CHECK(tb.offered == STRESS_LOAD(&r.offers), "tb offered %" PRIu64 ", offers %" PRIu64,
          tb.offered, (uint64_t)STRESS_LOAD(&r.offers));
    CHECK(tb.offered == tb.admitted + tb.rejected + tb.canceled, "tb sums");
    CHECK(tb.admitted == admitted && tb.canceled == 0, "tb admitted %" PRIu64 " vs %" PRIu64,
          tb.admitted, admitted);
    CHECK(q.pushed == admitted && q.popped == q.pushed, "mpmc pushed %" PRIu64 " popped %" PRIu64
          " admitted %" PRIu64, q.pushed, q.popped, admitted);
    CHECK(STRESS_LOAD(&r.received) == q.popped, "received");
    CHECK(STRESS_LOAD(&r.id_sum) == STRESS_LOAD(&r.pushed_ids), "id sums");
    CHECK(q.push_waiters == 0 && q.pop_waiters == 0 && s.waiters == 0 && p.waiters == 0,
          "waiters left");
    CHECK(s.available == s.max && p.idle == p.capacity && p.in_use == 0, "resources back");
    CHECK(s.waits >= STRESS_LOAD(&r.timeouts), "sem: %" PRIu64 " timeouts but %" PRIu64 " waits",
          (uint64_t)STRESS_LOAD(&r.timeouts), s.waits);
    ap_sem_fini(&r.sem);
    ap_pool_fini(&r.pool);
    ap_mpmc_fini(&r.q);
    stress_end("offered %" PRIu64 " admitted %" PRIu64 " rejected %" PRIu64
               "; waits mpmc %" PRIu64 "/%" PRIu64 " sem %" PRIu64 " pool %" PRIu64
               " tb %" PRIu64 "; sem timeouts %" PRIu64,
               tb.offered, tb.admitted, tb.rejected, q.push_waits, q.pop_waits, s.waits,
               p.waits, tb.waits, (uint64_t)STRESS_LOAD(&r.timeouts));
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_stats");
    run_mix(1, stress_iters(3000, 50));
    run_mix(8, stress_iters(3000, 50));
    return stress_finish();
}
