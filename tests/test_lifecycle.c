/*
 * tests/test_lifecycle.c -- the service lifecycle: states, gate, drain, waits
 */
#include "asyncpat/lifecycle.h"
#include "test_util.h"

#include <pthread.h>
#include <stdatomic.h>

/* Every test has a timeout, and every wait a deadline well inside it, so a
 * lost wake fails the test with a message instead of hanging the suite. */
TestSuite(lifecycle, .timeout = TEST_TIMEOUT_S);
#define LC_WAIT_NS (10 * AP_NS_PER_SEC)
static ap_deadline lc_deadline(void) { return ap_now_ns() + LC_WAIT_NS; }

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

/* ---- the state machine, call by call ---- */

Test(lifecycle, initializer_and_init_agree)
{
    ap_life a = AP_LIFE_INITIALIZER, b;
    memset(&b, 0x5a, sizeof b);
    ap_life_init(&b);
    EXPECT_EQ(ap_life_state_of(&a), AP_LIFE_STATE_NEW);
    EXPECT_EQ(ap_life_state_of(&b), AP_LIFE_STATE_NEW);
    EXPECT_EQ(ap_life_in_flight(&b), 0);
    EXPECT_EQ(ap_life_enter(&b), AP_NOT_READY, "enter before running");
}

Test(lifecycle, full_run_start_serve_stop_drain_terminate)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STARTING);
    EXPECT_EQ(ap_life_enter(&l), AP_NOT_READY, "not running yet");
    EXPECT_EQ(ap_life_started(&l, true), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_RUNNING);
    EXPECT_EQ(ap_life_enter(&l), AP_OK);
    EXPECT_EQ(ap_life_enter(&l), AP_OK);
    EXPECT_EQ(ap_life_in_flight(&l), 2);
    EXPECT_EQ(ap_life_terminated(&l), AP_INVAL, "no stop requested");
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING);
    EXPECT_EQ(ap_life_enter(&l), AP_CLOSED, "an enter after the stop");
    EXPECT_EQ(ap_life_in_flight(&l), 2, "a refused enter counted");
    EXPECT_EQ(ap_life_terminated(&l), AP_NOT_READY, "two still inside");
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING);
    ap_life_leave(&l);
    EXPECT_EQ(ap_life_terminated(&l), AP_NOT_READY, "one still inside");
    ap_life_leave(&l);
    EXPECT_EQ(ap_life_in_flight(&l), 0);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_TERMINATED);
    EXPECT_EQ(ap_life_terminated(&l), AP_INVAL);
    EXPECT_EQ(ap_life_stop(&l), AP_CLOSED, "stop after terminated changes nothing");
    EXPECT_EQ(ap_life_fail(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_start(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_TERMINATED);
}

Test(lifecycle, calls_that_do_not_apply_change_nothing)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_started(&l, true), AP_INVAL, "started before start");
    EXPECT_EQ(ap_life_terminated(&l), AP_INVAL);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_NEW);
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_start(&l), AP_INVAL, "double start");
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STARTING);
    EXPECT_EQ(ap_life_started(&l, true), AP_OK);
    EXPECT_EQ(ap_life_start(&l), AP_INVAL, "start while running");
    EXPECT_EQ(ap_life_started(&l, true), AP_INVAL, "started twice");
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_RUNNING);
}

Test(lifecycle, stop_of_a_new_lifecycle_terminates_at_once)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_TERMINATED);
    EXPECT_EQ(ap_life_start(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_DRAINED, 0), AP_OK);
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_TERMINATES, 0), AP_OK);
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_RUNS, 0), AP_CLOSED);
}

Test(lifecycle, stop_during_start_makes_started_report_closed)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING);
    EXPECT_EQ(ap_life_started(&l, true), AP_CLOSED, "the starter must undo its start");
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING, "started(ok) revived a stopped life");
    EXPECT_EQ(ap_life_enter(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
}

Test(lifecycle, stop_during_a_start_that_fails_stays_stopping)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_started(&l, false), AP_CLOSED);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK, "the documented way out");
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_TERMINATES, 0), AP_OK);
}

/* found by fuzz_lifecycle: a started() after the stop of a running life is
 * not the "stop came during the start" case; it must change nothing */
Test(lifecycle, started_after_a_stop_of_a_running_life_is_inval_and_changes_nothing)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_started(&l, true), AP_OK);
    EXPECT_EQ(ap_life_enter(&l), AP_OK);
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_started(&l, true), AP_INVAL);
    EXPECT_EQ(ap_life_started(&l, false), AP_INVAL);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_STOPPING, "a stray started(false) failed the life");
    EXPECT_EQ(ap_life_in_flight(&l), 1);
    ap_life_leave(&l);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
}

Test(lifecycle, failed_start_and_fail_while_running)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_started(&l, false), AP_OK);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_FAILED);
    EXPECT_EQ(ap_life_enter(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_stop(&l), AP_CLOSED);
    EXPECT_EQ(ap_life_fail(&l), AP_CLOSED);

    ap_life m = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&m), AP_OK);
    EXPECT_EQ(ap_life_started(&m, true), AP_OK);
    EXPECT_EQ(ap_life_enter(&m), AP_OK);
    EXPECT_EQ(ap_life_fail(&m), AP_OK);
    EXPECT_EQ(ap_life_enter(&m), AP_CLOSED, "enter after a failure");
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_life_wait_fut f;
    ap_life_wait_fut_init(&f, &m, AP_LIFE_EVENT_DRAINED);
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_PENDING, "drained with one inside");
    ap_life_leave(&m);
    EXPECT_EQ(atomic_load(&t.calls), 1, "the last leave did not wake the drain");
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&f), AP_OK);
}

/* ---- the waits ---- */

Test(lifecycle, wait_futures_complete_on_their_event_only)
{
    ap_life l = AP_LIFE_INITIALIZER;
    tw tr = {0}, td = {0}, tt = {0};
    ap_cx cr = cx_of(&tr), cd = cx_of(&td), ct = cx_of(&tt);
    ap_life_wait_fut fr, fd, ft;
    ap_life_wait_fut_init(&fr, &l, AP_LIFE_EVENT_RUNS);
    ap_life_wait_fut_init(&fd, &l, AP_LIFE_EVENT_DRAINED);
    ap_life_wait_fut_init(&ft, &l, AP_LIFE_EVENT_TERMINATES);
    EXPECT_EQ(ap_life_wait_poll(&fr, &cr), AP_PENDING);
    EXPECT_EQ(ap_life_wait_poll(&fd, &cd), AP_PENDING);
    EXPECT_EQ(ap_life_wait_poll(&ft, &ct), AP_PENDING);
    /* regression (issue #11): pending is AP_NOT_READY (was AP_AGAIN) */
    EXPECT_EQ(ap_life_wait_status(&fr), AP_NOT_READY);
    EXPECT_EQ(ap_life_wait_status(&ft), AP_NOT_READY);
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(atomic_load(&tr.calls), 1, "every waiter is woken at each change");
    EXPECT_EQ(ap_life_wait_poll(&fr, &cr), AP_PENDING, "RUNS completed while STARTING");
    EXPECT_EQ(ap_life_started(&l, true), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&fr, &cr), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&fr), AP_OK);
    EXPECT_EQ(ap_life_enter(&l), AP_OK);
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&fd, &cd), AP_PENDING, "drained with one inside");
    int before = atomic_load(&td.calls);
    ap_life_leave(&l);
    EXPECT_GT(atomic_load(&td.calls), before, "the drain was not woken by the last leave");
    EXPECT_EQ(ap_life_wait_poll(&fd, &cd), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&fd), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&ft, &ct), AP_PENDING);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&ft, &ct), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&ft), AP_OK);
    EXPECT_NOT(ap_waitlist_has_waiters(&l.wl), "a completed wait left a waiter linked");
}

Test(lifecycle, waits_that_can_no_longer_happen_are_closed)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_life_wait_fut f;
    ap_life_wait_fut_init(&f, &l, AP_LIFE_EVENT_RUNS);
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_life_started(&l, false), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&f), AP_CLOSED, "RUNS after a failed start");
    /* at once: a failed start can never terminate (not AP_TIMEDOUT) */
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_TERMINATES, lc_deadline()), AP_CLOSED);
    EXPECT_EQ(ap_life_wait(&l, (ap_life_event)9, 0), AP_INVAL, "unknown event");
}

Test(lifecycle, cancelled_wait_is_final_and_unlinked)
{
    ap_life l = AP_LIFE_INITIALIZER;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_life_wait_fut f;
    ap_life_wait_fut_init(&f, &l, AP_LIFE_EVENT_RUNS);
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_PENDING);
    ap_life_wait_cancel(&f);
    ap_life_wait_cancel(&f);
    EXPECT_EQ(ap_life_wait_status(&f), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&l.wl));
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(atomic_load(&t.calls), 0, "a cancelled wait was woken");
}

Test(lifecycle, timed_wait_times_out_and_leaves_nothing_linked)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_RUNS, ap_now_ns() + 2 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_NOT(ap_waitlist_has_waiters(&l.wl));
}

/* ---- theorem: no operation runs after the drain, nothing is left inside ---- */

#define WORKERS 3

typedef struct shared {
    ap_life life;
    atomic_int inside;      /* operations between enter and leave */
    atomic_int after_drain; /* enters that succeeded after the drain completed */
    atomic_bool drained;
    atomic_long served;
    ap_deadline give_up; /* set before the workers start */
} shared;

static void *worker(void *arg)
{
    shared *s = arg;
    for (;;) {
        ap_status st = ap_life_enter(&s->life);
        if (st == AP_NOT_READY) {
            if (ap_now_ns() > s->give_up)
                return NULL; /* the test fails on its own deadline */
            sched_yield();
            continue;
        }
        if (st != AP_OK)
            return NULL;
        if (atomic_load(&s->drained))
            atomic_fetch_add(&s->after_drain, 1);
        atomic_fetch_add(&s->inside, 1);
        atomic_fetch_add(&s->served, 1);
        atomic_fetch_sub(&s->inside, 1);
        ap_life_leave(&s->life);
    }
}

Test(lifecycle, theorem_drain_is_final_across_threads, .timeout = TEST_TIMEOUT_S)
{
    for (int round = 0; round < 20; round++) {
        shared s = {.life = AP_LIFE_INITIALIZER, .give_up = lc_deadline()};
        pthread_t th[WORKERS];
        for (int i = 0; i < WORKERS; i++)
            pthread_create(&th[i], NULL, worker, &s);
        EXPECT_EQ(ap_life_start(&s.life), AP_OK);
        EXPECT_EQ(ap_life_started(&s.life, true), AP_OK);
        while (atomic_load(&s.served) < 200 * (round + 1) && ap_now_ns() < s.give_up)
            sched_yield();
        EXPECT_GE(atomic_load(&s.served), 200 * (round + 1), "round %d: workers stalled", round);
        EXPECT_EQ(ap_life_stop(&s.life), AP_OK);
        EXPECT_EQ(ap_life_wait(&s.life, AP_LIFE_EVENT_DRAINED, s.give_up), AP_OK);
        atomic_store(&s.drained, true);
        EXPECT_EQ(atomic_load(&s.inside), 0, "an operation still inside after the drain");
        EXPECT_EQ(ap_life_in_flight(&s.life), 0);
        EXPECT_EQ(ap_life_terminated(&s.life), AP_OK);
        for (int i = 0; i < WORKERS; i++)
            pthread_join(th[i], NULL);
        EXPECT_EQ(atomic_load(&s.after_drain), 0, "an enter succeeded after the drain");
    }
}

/* Review find: a stop during the start must not let the drain (and
 * terminated) finish while the start is still running; started() then says
 * AP_CLOSED so the starter undoes its start. Same for a failure. */
Test(lifecycle, a_stop_during_the_start_drains_only_after_started)
{
    ap_life l = AP_LIFE_INITIALIZER;
    tw t = {0};
    ap_cx cx = cx_of(&t);
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    ap_life_wait_fut f;
    ap_life_wait_fut_init(&f, &l, AP_LIFE_EVENT_DRAINED);
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_PENDING, "drained while the start still runs");
    EXPECT_EQ(ap_life_terminated(&l), AP_NOT_READY, "terminated while the start still runs");
    EXPECT_EQ(ap_life_started(&l, true), AP_CLOSED, "the starter must learn to undo its start");
    EXPECT_GE(atomic_load(&t.calls), 1, "the drain was not woken when the start ended");
    EXPECT_EQ(ap_life_wait_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_life_wait_status(&f), AP_OK);
    EXPECT_EQ(ap_life_started(&l, true), AP_INVAL, "a second started()");
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
}

Test(lifecycle, a_failure_during_the_start_makes_started_closed)
{
    ap_life l = AP_LIFE_INITIALIZER;
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    EXPECT_EQ(ap_life_fail(&l), AP_OK);
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_DRAINED, 0), AP_TIMEDOUT, "drained while the start runs");
    EXPECT_EQ(ap_life_started(&l, true), AP_CLOSED);
    EXPECT_EQ(ap_life_state_of(&l), AP_LIFE_STATE_FAILED);
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_DRAINED, 0), AP_OK);
}

/* ---- stats (issue #14): exact counts over a known sequence ---- */

static void life_stats_eq(ap_life *l, uint64_t state, uint64_t in_flight, uint64_t starting,
                          uint64_t waiters, uint64_t waits, const char *step)
{
    ap_life_stats s;
    ap_life_stats_get(l, &s);
    EXPECT(s.state == state && s.in_flight == in_flight && s.starting == starting &&
               s.waiters == waiters && s.waits == waits,
           "%s: state %ju in_flight %ju starting %ju waiters %ju waits %ju", step,
           (uintmax_t)s.state, (uintmax_t)s.in_flight, (uintmax_t)s.starting,
           (uintmax_t)s.waiters, (uintmax_t)s.waits);
}

Test(lifecycle, stats_get_counts_exactly)
{
    ap_life l;
    memset(&l, 0x5a, sizeof l);
    ap_life_init(&l);
    ap_life_stats s;
    ap_life_stats_get(&l, &s);
    EXPECT_EQ(s.wait_ns, 0, "init zeroes wait_ns");
    life_stats_eq(&l, AP_LIFE_STATE_NEW, 0, 0, 0, 0, "init");
    EXPECT_EQ(ap_life_start(&l), AP_OK);
    life_stats_eq(&l, AP_LIFE_STATE_STARTING, 0, 1, 0, 0, "start");
    tw t = {0};
    ap_cx cx = cx_of(&t);
    ap_life_wait_fut fr, fd;
    ap_life_wait_fut_init(&fr, &l, AP_LIFE_EVENT_RUNS);
    ap_life_wait_fut_init(&fd, &l, AP_LIFE_EVENT_DRAINED);
    EXPECT_EQ(ap_life_wait_poll(&fr, &cx), AP_PENDING);
    EXPECT_EQ(ap_life_wait_poll(&fd, &cx), AP_PENDING);
    life_stats_eq(&l, AP_LIFE_STATE_STARTING, 0, 1, 2, 2, "two queued");
    ap_life_wait_cancel(&fd);
    life_stats_eq(&l, AP_LIFE_STATE_STARTING, 0, 1, 1, 2, "one cancelled");
    EXPECT_EQ(ap_life_started(&l, true), AP_OK);
    EXPECT_EQ(ap_life_wait_poll(&fr, &cx), AP_READY);
    life_stats_eq(&l, AP_LIFE_STATE_RUNNING, 0, 0, 0, 2, "running");
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_life_enter(&l), AP_OK);
    ap_life_leave(&l);
    life_stats_eq(&l, AP_LIFE_STATE_RUNNING, 2, 0, 0, 2, "3 enters, 1 leave");
    EXPECT_EQ(ap_life_stop(&l), AP_OK);
    /* a wait that completes at once queues nothing and parks for nothing */
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_RUNS, lc_deadline()), AP_CLOSED);
    life_stats_eq(&l, AP_LIFE_STATE_STOPPING, 2, 0, 0, 2, "stopping");
    ap_life_stats_get(&l, &s);
    EXPECT_EQ(s.wait_ns, 0, "nobody parked yet");
    /* a wait that parks: one more queued, parked time counted */
    EXPECT_EQ(ap_life_wait(&l, AP_LIFE_EVENT_DRAINED, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    life_stats_eq(&l, AP_LIFE_STATE_STOPPING, 2, 0, 0, 3, "timed out");
    ap_life_stats_get(&l, &s);
    EXPECT_GT(s.wait_ns, 0, "the parked wait counted no time");
    ap_life_leave(&l);
    ap_life_leave(&l);
    EXPECT_EQ(ap_life_terminated(&l), AP_OK);
    life_stats_eq(&l, AP_LIFE_STATE_TERMINATED, 0, 0, 0, 3, "terminated");
    ap_life_fini(&l);
}
