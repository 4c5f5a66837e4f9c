/*
 * tests/stress/stress_lifecycle.c -- the lifecycle gate under ThreadSanitizer
 *
 * Workers bracket "operations" with ap_life_enter/leave while the owner
 * starts, lets them run, stops, waits for the drain (blocking, or a timed
 * wait that is retried) and terminates; many rounds. Checks:
 *   - no enter succeeds after the owner saw the drain complete;
 *   - nobody is inside when the drain completes, and in_flight is 0;
 *   - every operation's plain write (its own slot) happens-before the
 *     owner's read after the drain: TSan reports a race otherwise, since the
 *     test's own counters are relaxed (the edge must come from leave/drain);
 *   - the owner is always woken (the watchdog catches a hang).
 */
#include "stress.h"

#define MAXW 8

typedef struct life_run {
    ap_life life;
    _Atomic int inside, drained;
    _Atomic unsigned long ops, after_drain;
    unsigned long work[MAXW]; /* plain: written by worker i inside an operation */
} life_run;

typedef struct life_worker {
    life_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} life_worker;

static void *life_worker_main(void *arg)
{
    life_worker *w = arg;
    life_run *r = w->r;
    for (;;) {
        ap_status st = ap_life_enter(&r->life);
        if (st == AP_NOT_READY) {
            stress_jitter(&w->rng);
            continue;
        }
        if (st == AP_CLOSED)
            return NULL;
        CHECK(st == AP_OK, "enter: %d", st);
        if (STRESS_LOAD(&r->drained))
            STRESS_ADD(&r->after_drain, 1);
        STRESS_ADD(&r->inside, 1);
        r->work[w->id]++; /* plain: ordered before the owner's read by leave/drain */
        if ((stress_rand(&w->rng) & 7) == 0)
            stress_jitter(&w->rng);
        STRESS_ADD(&r->inside, -1);
        STRESS_ADD(&r->ops, 1);
        ap_life_leave(&r->life);
    }
}

static void scenario(unsigned n, unsigned rounds, bool timed)
{
    if (!stress_begin("lifecycle %u workers, %u rounds%s", n, rounds, timed ? ", timed drain" : ""))
        return;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(99), n);
    unsigned long total = 0;
    for (unsigned k = 0; k < rounds; k++) {
        life_run *r = calloc(1, sizeof *r);
        life_worker w[MAXW];
        ap_life_init(&r->life);
        for (unsigned i = 0; i < n; i++) {
            w[i] = (life_worker){.r = r, .id = i};
            stress_rng_init(&w[i].rng, stress_thread_seed(i), k);
            stress_spawn(&w[i].thread, life_worker_main, &w[i]);
        }
        CHECK(ap_life_start(&r->life) == AP_OK, "start");
        CHECK(ap_life_started(&r->life, true) == AP_OK, "started");
        unsigned long want = 1 + stress_below(&rng, 64);
        while (STRESS_LOAD(&r->ops) < want)
            stress_jitter(&rng);
        CHECK(ap_life_stop(&r->life) == AP_OK, "stop");
        ap_status st;
        if (timed) {
            while ((st = ap_life_wait(&r->life, AP_LIFE_EVENT_DRAINED, ap_now_ns() + 20 * AP_NS_PER_US)) ==
                   AP_TIMEDOUT)
                ;
        } else {
            st = ap_life_wait(&r->life, AP_LIFE_EVENT_DRAINED, AP_DEADLINE_NONE);
        }
        CHECK(st == AP_OK, "drain: %d", st);
        STRESS_STORE(&r->drained, 1);
        CHECK(STRESS_LOAD(&r->inside) == 0, "drained with %d inside", STRESS_LOAD(&r->inside));
        CHECK(ap_life_in_flight(&r->life) == 0, "in_flight after the drain");
        unsigned long sum = 0;
        for (unsigned i = 0; i < n; i++)
            sum += r->work[i]; /* plain reads: need the leave -> drain edge */
        CHECK(ap_life_terminated(&r->life) == AP_OK, "terminated");
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
        CHECK(STRESS_LOAD(&r->after_drain) == 0, "%lu enters after the drain",
              STRESS_LOAD(&r->after_drain));
        CHECK(sum == STRESS_LOAD(&r->ops), "work %lu != ops %lu", sum, STRESS_LOAD(&r->ops));
        total += sum;
        free(r);
    }
    stress_end("%lu operations", total);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_lifecycle");
    scenario(2, (unsigned)stress_iters(300, 20), false);
    scenario(4, (unsigned)stress_iters(200, 20), true);
    scenario(8, (unsigned)stress_iters(100, 10), false);
    return stress_finish();
}
