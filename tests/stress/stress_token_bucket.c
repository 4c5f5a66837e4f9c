/*
 * tests/stress/stress_token_bucket.c -- the token bucket under contention
 *
 * Threads share one bucket (or one keyed table) and one fake clock. The
 * clock only moves between phases: main sets it, every thread passes a
 * barrier, hammers the bucket at that instant, and passes the barrier
 * again; then main checks the theorem at that instant:
 *
 *   tokens admitted at times <= t  <=  burst + floor(n * t / period)
 *
 * counting try_acquire successes, reservations whose ready_at <= t that
 * were not cancelled, and acquire futures that completed. Scenarios:
 *   greedy     try_acquire(1) until refused: the count must then EQUAL the
 *              bound (nothing lost, nothing minted twice under races)
 *   mixed      try_acquire of 1..3, reserve + cancel, acquire futures
 *              polled across phases and cancelled; the clock sometimes
 *              goes backwards
 *   keyed      several threads on a few keys of an ap_tb_keyed; the bound
 *              per key; at the end its stats equal what the threads saw
 *              (admitted == their AP_OKs, rejected == their AP_EMPTYs,
 *              full == 0, keys == inserted - evicted == ap_tb_keyed_len)
 * Built and run by tests/run.sh (stage tsan) with gcc and clang.
 */
#include "stress.h"

#define SEC AP_NS_PER_SEC
#define MAXT 8
#define MAXPEND 8
#define KEYS 4

#include "../wide128.h"

static uint64_t minted(uint64_t n, uint64_t period, uint64_t t)
{
    uint64_t q;
    (void)w128_muldiv(n, t, period, &q); /* (the low 64 bits if it does not fit) */
    return q;
}

typedef struct shared {
    ap_tb tb;
    ap_tb_keyed *kt;
    pthread_barrier_t bar;
    _Atomic uint64_t now;   /* the fake clock, set by main between phases */
    _Atomic int stop;
    _Atomic uint64_t admitted;        /* tokens counted so far */
    _Atomic uint64_t given_back;      /* tokens cancels gave back (reported) */
    _Atomic uint64_t per_key[KEYS];
    _Atomic uint64_t keyed_empty; /* AP_EMPTY answers of the keyed table */
    int threads;
    int mode; /* 0 greedy, 1 mixed, 2 keyed */
    uint64_t burst;
} shared;

typedef struct worker {
    shared *sh;
    unsigned id;
    /* read by main only after a barrier */
    ap_tb_reservation pend[MAXPEND];
    int npend;
    ap_tb_acquire_fut fut;
    int fut_live;
    uint64_t fut_n;
} worker;

static void phase_greedy(worker *w, uint64_t now)
{
    shared *sh = w->sh;
    uint64_t got = 0;
    while (ap_tb_try_acquire(&sh->tb, 1, now, NULL) == AP_OK)
        got++;
    STRESS_ADD(&sh->admitted, got);
}

static void phase_mixed(worker *w, uint64_t now, stress_rng *r)
{
    shared *sh = w->sh;
    /* settle reservations from earlier phases */
    for (int i = 0; i < w->npend;) {
        ap_tb_reservation *p = &w->pend[i];
        if (now >= p->ready_at) {
            STRESS_ADD(&sh->admitted, p->tokens);
            *p = w->pend[--w->npend];
        } else if (stress_below(r, 2) == 0) {
            /* all back if nothing was stacked on it since, else none
             * (issue #11); either way it no longer counts */
            uint64_t m = p->tokens, back = ap_tb_cancel_reservation(&sh->tb, p, now);
            CHECK(back == m || back == 0, "cancel gave back %llu of %llu",
                  (unsigned long long)back, (unsigned long long)m);
            CHECK(p->tokens == 0, "a cancelled reservation keeps tokens");
            STRESS_ADD(&sh->given_back, back);
            *p = w->pend[--w->npend];
        } else {
            i++;
        }
    }
    /* the future: poll at this phase's time, sometimes cancel */
    if (!w->fut_live) {
        w->fut_n = 1 + stress_below(r, 2);
        ap_tb_acquire_fut_init(&w->fut, &sh->tb, w->fut_n, AP_DEADLINE_NONE);
        w->fut_live = 1;
    }
    ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
    if (ap_tb_acquire_poll(&w->fut, &cx) == AP_READY) {
        CHECK(ap_tb_acquire_status(&w->fut) == AP_OK, "future: %s",
              ap_status_str(ap_tb_acquire_status(&w->fut)));
        STRESS_ADD(&sh->admitted, w->fut_n);
        w->fut_live = 0;
    } else {
        CHECK(cx.deadline > now && cx.deadline != AP_DEADLINE_NONE, "pending without a deadline");
        if (stress_below(r, 4) == 0) {
            ap_tb_acquire_cancel(&w->fut);
            w->fut_live = 0;
        }
    }
    for (int k = 0; k < 40; k++) {
        uint64_t m = 1 + stress_below(r, 3), at = 0;
        if (stress_below(r, 4) == 0 && w->npend < MAXPEND) {
            ap_tb_reservation res;
            CHECK(ap_tb_reserve(&sh->tb, m, now, &res) == AP_OK, "reserve");
            CHECK(res.ready_at >= now, "ready_at in the past");
            if (res.ready_at <= now)
                STRESS_ADD(&sh->admitted, m);
            else
                w->pend[w->npend++] = res;
        } else {
            ap_status st = ap_tb_try_acquire(&sh->tb, m, now, &at);
            if (st == AP_OK)
                STRESS_ADD(&sh->admitted, m);
            else
                CHECK(st == AP_EMPTY && at > now, "try_acquire: %s", ap_status_str(st));
        }
        stress_jitter(r);
    }
}

static void phase_keyed(worker *w, uint64_t now, stress_rng *r)
{
    shared *sh = w->sh;
    for (int k = 0; k < 60; k++) {
        unsigned key = stress_below(r, KEYS);
        uint64_t at = 0;
        ap_status st = ap_tb_keyed_try_acquire(sh->kt, 0xC0FFEE00u + key, 1, now, &at);
        if (st == AP_OK) {
            STRESS_ADD(&sh->per_key[key], 1);
        } else {
            CHECK(st == AP_EMPTY && at > now, "keyed: %s", ap_status_str(st));
            STRESS_ADD(&sh->keyed_empty, 1);
        }
        stress_jitter(r);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared *sh = w->sh;
    stress_rng r;
    stress_rng_init(&r, stress_thread_seed(w->id), 0);
    for (;;) {
        pthread_barrier_wait(&sh->bar); /* main has set the clock (or stop) */
        if (STRESS_LOAD(&sh->stop))
            break;
        uint64_t now = STRESS_LOAD(&sh->now);
        if (sh->mode == 0)
            phase_greedy(w, now);
        else if (sh->mode == 1)
            phase_mixed(w, now, &r);
        else
            phase_keyed(w, now, &r);
        pthread_barrier_wait(&sh->bar); /* phase done: main checks */
    }
    return NULL;
}

static void scenario(int mode, int threads, uint64_t n, uint64_t period, uint64_t burst,
                     size_t phases)
{
    static const char *names[] = {"greedy", "mixed", "keyed"};
    if (!stress_begin("%s threads=%d rate=%llu/%llu burst=%llu", names[mode], threads,
                      (unsigned long long)n, (unsigned long long)period,
                      (unsigned long long)burst))
        return;
    static shared sh;
    memset(&sh, 0, sizeof sh);
    ap_tb_desc d = {.n = n, .period_ns = period, .burst = burst};
    CHECK(ap_tb_init(&sh.tb, &d) == AP_OK, "init");
    CHECK(ap_tb_keyed_create(&sh.kt, 8, &d, NULL) == AP_OK, "keyed create");
    pthread_barrier_init(&sh.bar, NULL, (unsigned)threads + 1);
    sh.threads = threads;
    sh.mode = mode;
    sh.burst = burst;
    static worker ws[MAXT];
    pthread_t th[MAXT];
    for (int i = 0; i < threads; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].sh = &sh;
        ws[i].id = (unsigned)i;
        stress_spawn(&th[i], worker_main, &ws[i]);
    }
    stress_rng r;
    stress_rng_init(&r, stress_thread_seed(100), 1);
    uint64_t t = 0, t_max = 0, T = period / n; /* about one emission interval */
    for (size_t ph = 0; ph < phases; ph++) {
        if (mode == 0 && ph > 0) /* < burst intervals: the drained bucket never overflows */
            t += stress_below(&r, (uint32_t)burst) * T + stress_below(&r, (uint32_t)T);
        else if (mode == 0)
            t = 0;
        else if (mode == 1 && stress_below(&r, 8) == 0 && t > 0)
            t -= (uint64_t)stress_below(&r, 1000000) % (t + 1); /* backwards */
        else
            t += (uint64_t)stress_below(&r, (uint32_t)(3 * T));
        if (t > t_max)
            t_max = t;
        STRESS_STORE(&sh.now, t);
        pthread_barrier_wait(&sh.bar); /* start the phase */
        pthread_barrier_wait(&sh.bar); /* wait for its end */
        uint64_t bound = burst + minted(n, period, t_max);
        if (mode == 2) {
            for (int k = 0; k < KEYS; k++) {
                uint64_t got = STRESS_LOAD(&sh.per_key[k]);
                CHECK(got <= bound, "phase %zu key %d: %llu admitted > bound %llu", ph, k,
                      (unsigned long long)got, (unsigned long long)bound);
            }
            continue;
        }
        uint64_t got = STRESS_LOAD(&sh.admitted);
        for (int i = 0; i < threads; i++) /* reservations due but not yet settled */
            for (int j = 0; j < ws[i].npend; j++)
                if (ws[i].pend[j].ready_at <= t_max)
                    got += ws[i].pend[j].tokens;
        CHECK(got <= bound, "phase %zu t=%llu: %llu admitted > bound %llu", ph,
              (unsigned long long)t, (unsigned long long)got, (unsigned long long)bound);
        if (mode == 0)
            CHECK(got == bound, "phase %zu: greedy threads got %llu, bound %llu (tokens lost)",
                  ph, (unsigned long long)got, (unsigned long long)bound);
    }
    STRESS_STORE(&sh.stop, 1);
    pthread_barrier_wait(&sh.bar);
    for (int i = 0; i < threads; i++) {
        if (ws[i].fut_live)
            ap_tb_acquire_cancel(&ws[i].fut);
        stress_join(th[i]);
    }
    pthread_barrier_destroy(&sh.bar);
    CHECK(ap_tb_keyed_len(sh.kt) <= KEYS, "keyed table grew");
    uint64_t keyed_ok = 0;
    for (int k = 0; k < KEYS; k++)
        keyed_ok += STRESS_LOAD(&sh.per_key[k]);
    ap_tb_keyed_stats ks;
    ap_tb_keyed_stats_get(sh.kt, &ks);
    CHECK(ks.admitted == keyed_ok && ks.rejected == STRESS_LOAD(&sh.keyed_empty) &&
              ks.full == 0 && ks.keys == ks.inserted - ks.evicted &&
              ks.keys == ap_tb_keyed_len(sh.kt),
          "keyed stats: admitted %llu rejected %llu full %llu keys %llu inserted %llu evicted "
          "%llu; the threads saw %llu admitted, %llu refused",
          (unsigned long long)ks.admitted, (unsigned long long)ks.rejected,
          (unsigned long long)ks.full, (unsigned long long)ks.keys,
          (unsigned long long)ks.inserted, (unsigned long long)ks.evicted,
          (unsigned long long)keyed_ok, (unsigned long long)STRESS_LOAD(&sh.keyed_empty));
    ap_tb_keyed_destroy(sh.kt);
    uint64_t total = STRESS_LOAD(&sh.admitted) + keyed_ok;
    stress_end("admitted %llu by t=%llu ns, %llu given back by cancels", (unsigned long long)total,
               (unsigned long long)t_max, (unsigned long long)STRESS_LOAD(&sh.given_back));
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_token_bucket");
    size_t ph = stress_iters(3000, 20);
    scenario(0, 4, 1000, SEC, 16, ph);
    scenario(0, 3, 3, SEC, 5, ph);
    scenario(1, 4, 1000, SEC, 8, ph);
    scenario(1, 4, 7, 3 * SEC, 4, ph);
    scenario(2, 4, 100, SEC, 3, ph);
    return stress_finish();
}
