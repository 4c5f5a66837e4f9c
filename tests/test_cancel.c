/*
 * tests/test_cancel.c -- cancellation trees, callbacks, futures, races,
 * task trackers and the two-phase shutdown
 */
#include "asyncpat/cancel.h"
#include "test_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

TestSuite(cancel, .timeout = TEST_TIMEOUT_S);
#define CN_WAIT_NS (10 * AP_NS_PER_SEC)

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

static void count_cb(void *ctx) { atomic_fetch_add((atomic_int *)ctx, 1); }

/* ---- the tree ---- */

Test(cancel, parent_cancels_every_descendant_child_leaves_parent_alone)
{
    ap_cancel root, a, b, a1, a2, a1x;
    ap_cancel_init(&root);
    ap_cancel_init_child(&a, &root);
    ap_cancel_init_child(&b, &root);
    ap_cancel_init_child(&a1, &a);
    ap_cancel_init_child(&a2, &a);
    ap_cancel_init_child(&a1x, &a1);
    ap_cancel_cancel(&a1);
    EXPECT(ap_cancel_is_cancelled(&a1));
    EXPECT(ap_cancel_is_cancelled(&a1x), "a1's child goes with it");
    EXPECT_NOT(ap_cancel_is_cancelled(&a), "a child's cancel leaves its parent alone");
    EXPECT_NOT(ap_cancel_is_cancelled(&a2), "and its sibling");
    EXPECT_NOT(ap_cancel_is_cancelled(&root));
    ap_cancel_cancel(&root);
    ap_cancel *all[] = {&root, &a, &b, &a1, &a2, &a1x};
    for (size_t i = 0; i < 6; i++)
        EXPECT(ap_cancel_is_cancelled(all[i]), "token %zu after the root's cancel", i);
    EXPECT_NULL(root.child, "the cancelled tree is consumed");
    EXPECT_NULL(a.parent);
    ap_cancel_cancel(&root); /* idempotent */
    for (size_t i = 6; i-- > 0;)
        ap_cancel_fini(all[i]);
}

Test(cancel, child_of_a_cancelled_parent_is_born_cancelled)
{
    ap_cancel root, late, later;
    ap_cancel_init(&root);
    ap_cancel_cancel(&root);
    ap_cancel_init_child(&late, &root);
    EXPECT(ap_cancel_is_cancelled(&late));
    EXPECT_NULL(late.parent, "born cancelled, not linked");
    EXPECT_NULL(root.child);
    ap_cancel_init_child(&later, &late);
    EXPECT(ap_cancel_is_cancelled(&later));
    ap_cancel_fini(&later);
    ap_cancel_fini(&late);
    ap_cancel_fini(&root);
}

Test(cancel, fini_moves_children_up_to_the_parent)
{
    ap_cancel root, mid, leaf, other;
    ap_cancel_init(&root);
    ap_cancel_init_child(&mid, &root);
    ap_cancel_init_child(&leaf, &mid);
    ap_cancel_init_child(&other, &root);
    ap_cancel_fini(&mid); /* leaf must stay cancellable with root */
    EXPECT(leaf.parent == &root);
    EXPECT_NOT(ap_cancel_is_cancelled(&leaf));
    ap_cancel_fini(&other);
    ap_cancel_cancel(&root);
    EXPECT(ap_cancel_is_cancelled(&leaf), "the grandchild was re-parented");
    ap_cancel_fini(&leaf);
    ap_cancel_fini(&root);
}

Test(cancel, fini_of_a_root_makes_its_children_roots)
{
    ap_cancel root, c1, c2;
    ap_cancel_init(&root);
    ap_cancel_init_child(&c1, &root);
    ap_cancel_init_child(&c2, &root);
    ap_cancel_fini(&root);
    EXPECT_NULL(c1.parent);
    EXPECT_NULL(c2.parent);
    ap_cancel_cancel(&c1);
    EXPECT_NOT(ap_cancel_is_cancelled(&c2), "former siblings are independent roots now");
    ap_cancel_fini(&c1);
    ap_cancel_fini(&c2);
}

Test(cancel, use_after_fini_trips_the_assertion, .signal = SIGABRT)
{
    ap_cancel t;
    ap_cancel_init(&t);
    ap_cancel_fini(&t);
    (void)ap_cancel_is_cancelled(&t);
}

Test(cancel, fini_with_a_registered_callback_trips_the_assertion, .signal = SIGABRT)
{
    ap_cancel t;
    ap_cancel_cb cb;
    atomic_int n = 0;
    ap_cancel_init(&t);
    ap_cancel_on(&t, &cb, count_cb, &n);
    ap_cancel_fini(&t);
}

/* ---- callbacks ---- */

Test(cancel, callbacks_run_exactly_once)
{
    ap_cancel root, child;
    ap_cancel_cb c1, c2, c3, c4;
    atomic_int n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    ap_cancel_init(&root);
    ap_cancel_init_child(&child, &root);
    ap_cancel_on(&root, &c1, count_cb, &n1);
    ap_cancel_on(&child, &c2, count_cb, &n2);
    ap_cancel_on(&child, &c3, count_cb, &n3);
    EXPECT_EQ(ap_cancel_off(&child, &c3), AP_OK, "taken off before the cancel");
    EXPECT_EQ(n1 + n2 + n3, 0);
    ap_cancel_cancel(&root);
    EXPECT_EQ(n1, 1);
    EXPECT_EQ(n2, 1, "a descendant's callback runs with the ancestor's cancel");
    EXPECT_EQ(n3, 0, "never after off returned AP_OK");
    ap_cancel_cancel(&child);
    ap_cancel_cancel(&root);
    EXPECT_EQ(n1 + n2, 2, "a second cancel runs nothing again");
    ap_cancel_on(&child, &c4, count_cb, &n4);
    EXPECT_EQ(n4, 1, "on() of a cancelled token runs at once");
    EXPECT_EQ(ap_cancel_off(&root, &c1), AP_CANCELED);
    EXPECT_EQ(ap_cancel_off(&root, &c1), AP_CANCELED, "a second off says the same");
    EXPECT_EQ(ap_cancel_off(&child, &c2), AP_CANCELED);
    EXPECT_EQ(ap_cancel_off(&child, &c4), AP_CANCELED);
    EXPECT_EQ(ap_cancel_off(&child, &c3), AP_OK, "off is idempotent");
    ap_cancel_fini(&child);
    ap_cancel_fini(&root);
}

/* ---- the cancelled future ---- */

Test(cancel, future_completes_at_the_cancel_and_is_woken_once)
{
    ap_cancel root, child;
    ap_cancel_init(&root);
    ap_cancel_init_child(&child, &root);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_cancel_fut f, g;
    ap_cancel_fut_init(&f, &child);
    ap_cancel_fut_init(&g, &child);
    EXPECT_EQ(ap_cancel_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_cancel_fut_status(&f), AP_NOT_READY);
    tw w2 = {0};
    ap_cx cx2 = cx_of(&w2);
    EXPECT_EQ(ap_cancel_poll(&g, &cx2), AP_PENDING);
    ap_cancel_fut_cancel(&g);
    ap_cancel_fut_cancel(&g); /* idempotent */
    EXPECT_EQ(ap_cancel_fut_status(&g), AP_CANCELED);
    EXPECT_EQ(calls(&w), 0);
    ap_cancel_cancel(&root);
    EXPECT_EQ(calls(&w), 1, "the waiter below the cancelled root is woken");
    EXPECT_EQ(calls(&w2), 0, "no wake after the future's cancel");
    EXPECT_EQ(ap_cancel_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_cancel_fut_status(&f), AP_OK);
    ap_cancel_cancel(&child);
    EXPECT_EQ(calls(&w), 1, "exactly once");
    EXPECT_EQ(ap_cancel_wait(&child, ap_now_ns()), AP_OK, "already cancelled: no wait");
    ap_cancel_fini(&child);
    ap_cancel_fini(&root);
}

Test(cancel, wait_times_out_on_a_live_token)
{
    ap_cancel t;
    ap_cancel_init(&t);
    EXPECT_EQ(ap_cancel_wait(&t, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    ap_cancel_fini(&t);
}

static void *cancel_later(void *p)
{
    ms_sleep(20);
    ap_cancel_cancel((ap_cancel *)p);
    return NULL;
}

Test(cancel, a_blocked_waiter_below_is_woken_by_another_thread)
{
    ap_cancel root, child, grandchild;
    ap_cancel_init(&root);
    ap_cancel_init_child(&child, &root);
    ap_cancel_init_child(&grandchild, &child);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, cancel_later, &root), 0);
    EXPECT_EQ(ap_cancel_wait(&grandchild, ap_now_ns() + CN_WAIT_NS), AP_OK);
    pthread_join(th, NULL);
    ap_cancel_fini(&grandchild);
    ap_cancel_fini(&child);
    ap_cancel_fini(&root);
}

/* ---- racing a future against a token ---- */

typedef struct fake_fut {
    ap_future base;
    int polls, cancels, ready;
} fake_fut;

static ap_poll fake_poll(ap_future *f, ap_cx *cx)
{
    (void)cx;
    fake_fut *x = (fake_fut *)f;
    x->polls++;
    return x->ready ? AP_READY : AP_PENDING;
}
static void fake_cancel(ap_future *f) { ((fake_fut *)f)->cancels++; }
static void fake_init(fake_fut *x)
{
    memset(x, 0, sizeof *x);
    x->base.poll = fake_poll;
    x->base.cancel = fake_cancel;
}

Test(cancel, race_inner_completes_first)
{
    ap_cancel t;
    ap_cancel_init(&t);
    fake_fut in;
    fake_init(&in);
    ap_cancel_race r;
    ap_cancel_race_init(&r, &in.base, &t);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_PENDING);
    in.ready = 1;
    EXPECT_EQ(r.base.poll(&r.base, &cx), AP_READY);
    EXPECT_EQ(ap_cancel_race_status(&r), AP_OK);
    EXPECT_EQ(in.cancels, 0, "never cancelled after it completed");
    ap_cancel_cancel(&t);
    EXPECT_EQ(calls(&w), 0, "the race left the token's list when it completed");
    ap_cancel_race_cancel(&r);
    EXPECT_EQ(in.cancels, 0);
    EXPECT_EQ(ap_cancel_race_status(&r), AP_OK);
    ap_cancel_fini(&t);
}

Test(cancel, race_token_fires_first_cancels_inner_once)
{
    ap_cancel root, t;
    ap_cancel_init(&root);
    ap_cancel_init_child(&t, &root);
    fake_fut in;
    fake_init(&in);
    ap_cancel_race r;
    ap_cancel_race_init(&r, &in.base, &t);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_PENDING);
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_PENDING);
    ap_cancel_cancel(&root);
    EXPECT_EQ(calls(&w), 1, "the token's cancel wakes the race");
    in.ready = 1; /* would complete now, but the token came first */
    int polls = in.polls;
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_READY);
    EXPECT_EQ(ap_cancel_race_status(&r), AP_CANCELED);
    EXPECT_EQ(in.polls, polls, "a fired token wins: inner not polled again");
    EXPECT_EQ(in.cancels, 1);
    ap_cancel_race_cancel(&r);
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_READY);
    EXPECT_EQ(in.cancels, 1, "exactly once");
    ap_cancel_fini(&t);
    ap_cancel_fini(&root);
}

Test(cancel, race_cancelled_by_its_owner)
{
    ap_cancel t;
    ap_cancel_init(&t);
    fake_fut in;
    fake_init(&in);
    ap_cancel_race r;
    ap_cancel_race_init(&r, &in.base, &t);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    EXPECT_EQ(ap_cancel_race_poll(&r, &cx), AP_PENDING);
    ap_cancel_race_cancel(&r);
    EXPECT_EQ(ap_cancel_race_status(&r), AP_CANCELED);
    EXPECT_EQ(in.cancels, 1);
    ap_cancel_cancel(&t);
    EXPECT_EQ(calls(&w), 0, "no wake after the race's cancel");
    ap_cancel_fini(&t); /* asserts nothing is left registered */
}

Test(cancel, race_any_pattern_future_blocked_then_cancelled_from_another_thread)
{
    ap_cancel root, t;
    ap_tracker tr = AP_TRACKER_INITIALIZER; /* never closed: its wait never completes */
    ap_cancel_init(&root);
    ap_cancel_init_child(&t, &root);
    ap_tracker_wait_fut inner;
    ap_tracker_wait_fut_init(&inner, &tr);
    ap_cancel_race r;
    ap_cancel_race_init(&r, (ap_future *)&inner, &t);
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, cancel_later, &root), 0);
    EXPECT_EQ(ap_block_on_until(&r.base, ap_now_ns() + CN_WAIT_NS), AP_OK);
    pthread_join(th, NULL);
    EXPECT_EQ(ap_cancel_race_status(&r), AP_CANCELED);
    EXPECT_EQ(ap_tracker_wait_status(&inner), AP_CANCELED, "the inner future was cancelled");
    EXPECT_NOT(ap_waitlist_has_waiters(&tr.wl), "and left the tracker's list");
    ap_tracker_fini(&tr);
    ap_cancel_fini(&t);
    ap_cancel_fini(&root);
}

Test(cancel, shutdown_of_a_lifecycle_forced_then_drained)
{
    ap_life life = AP_LIFE_INITIALIZER;
    ap_cancel tok;
    ap_cancel_init(&tok);
    EXPECT_EQ(ap_life_start(&life), AP_OK);
    EXPECT_EQ(ap_life_started(&life, true), AP_OK);
    EXPECT_EQ(ap_life_enter(&life), AP_OK);
    ap_shutdown s;
    EXPECT_EQ(ap_shutdown_init(&s, &life, NULL, &tok, 10, 20), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    cx.now = 5;
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT_NOT(ap_cancel_is_cancelled(&tok));
    ap_cx_reset(&cx, 12);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT(ap_cancel_is_cancelled(&tok) && ap_shutdown_forced(&s));
    ap_life_leave(&life); /* the operation saw the token and left */
    EXPECT_GE(calls(&w), 1, "the drain wakes the shutdown");
    ap_cx_reset(&cx, 13);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_shutdown_status(&s), AP_OK);
    ap_shutdown_cancel(&s); /* after completion: changes nothing */
    EXPECT_EQ(ap_shutdown_status(&s), AP_OK);
    EXPECT_EQ(ap_life_terminated(&life), AP_OK);
    ap_cancel_fini(&tok);
}

Test(cancel, shutdown_cancelled_by_its_owner_leaves_no_waiter)
{
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    ap_tracker_add(&tr);
    ap_shutdown s;
    EXPECT_EQ(ap_shutdown_init(&s, NULL, &tr, NULL, 10, 20), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT(ap_waitlist_has_waiters(&tr.wl));
    ap_shutdown_cancel(&s);
    EXPECT_EQ(ap_shutdown_status(&s), AP_CANCELED);
    EXPECT_NOT(ap_waitlist_has_waiters(&tr.wl));
    ap_tracker_done(&tr);
    EXPECT_EQ(calls(&w), 0, "no wake after the cancel");
    ap_tracker_fini(&tr);
}

/* ---- tracker ---- */

Test(cancel, tracker_wait_completes_when_closed_and_empty)
{
    ap_tracker tr = AP_TRACKER_INITIALIZER, t2;
    ap_tracker_init(&t2);
    ap_tracker_add(&tr);
    ap_tracker_add(&tr);
    EXPECT_EQ(ap_tracker_len(&tr), 2);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_tracker_wait_fut f;
    ap_tracker_wait_fut_init(&f, &tr);
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_PENDING);
    ap_tracker_done(&tr);
    ap_tracker_done(&tr);
    EXPECT_EQ(calls(&w), 0, "empty but open: nothing to wake for");
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_PENDING, "open: not done");
    ap_tracker_add(&tr);
    ap_tracker_close(&tr);
    EXPECT(ap_tracker_is_closed(&tr));
    EXPECT_EQ(calls(&w), 0, "closed with one left");
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_PENDING);
    ap_tracker_done(&tr);
    EXPECT_EQ(calls(&w), 1, "the last one out wakes the waiter");
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_tracker_wait_status(&f), AP_OK);
    /* close while empty wakes too; reopen makes waits wait again */
    ap_tracker_wait_fut g;
    ap_tracker_wait_fut_init(&g, &t2);
    tw w2 = {0};
    ap_cx cx2 = cx_of(&w2);
    EXPECT_EQ(ap_tracker_wait_poll(&g, &cx2), AP_PENDING);
    ap_tracker_close(&t2);
    EXPECT_EQ(calls(&w2), 1);
    ap_tracker_reopen(&t2);
    EXPECT_EQ(ap_tracker_wait_poll(&g, &cx2), AP_PENDING, "reopened before the re-poll");
    ap_tracker_wait_cancel(&g);
    EXPECT_EQ(ap_tracker_wait_status(&g), AP_CANCELED);
    EXPECT_EQ(ap_tracker_wait(&t2, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    ap_tracker_close(&t2);
    EXPECT_EQ(ap_tracker_wait(&t2, ap_now_ns() + CN_WAIT_NS), AP_OK);
    ap_tracker_fini(&tr);
    ap_tracker_fini(&t2);
}

Test(cancel, tracker_done_without_add_trips_the_assertion, .signal = SIGABRT)
{
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    ap_tracker_done(&tr);
}

/* ---- two-phase shutdown (a fake clock: cx.now by hand) ---- */

Test(cancel, shutdown_init_refuses_bad_arguments)
{
    ap_shutdown s;
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    memset(&s, 0x5a, sizeof s);
    EXPECT_EQ(ap_shutdown_init(&s, NULL, NULL, NULL, 1, 2), AP_INVAL);
    EXPECT_EQ(ap_shutdown_init(&s, NULL, &tr, NULL, 5, 4), AP_INVAL, "hard before grace");
    EXPECT_EQ(s.phase, 0x5a5a5a5au, "nothing changed");
    EXPECT_NOT(ap_tracker_is_closed(&tr));
}

Test(cancel, shutdown_graceful_when_everything_drains_in_time)
{
    ap_life life = AP_LIFE_INITIALIZER;
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    ap_cancel tok;
    ap_cancel_init(&tok);
    EXPECT_EQ(ap_life_start(&life), AP_OK);
    EXPECT_EQ(ap_life_started(&life, true), AP_OK);
    EXPECT_EQ(ap_life_enter(&life), AP_OK);
    ap_tracker_add(&tr);
    ap_shutdown s;
    EXPECT_EQ(ap_shutdown_init(&s, &life, &tr, &tok, 100, 200), AP_OK);
    EXPECT_EQ(ap_life_state_of(&life), AP_LIFE_STATE_RUNNING, "nothing before the first poll");
    tw w = {0};
    ap_cx cx = cx_of(&w);
    cx.now = 10;
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 100, "re-poll by the grace deadline");
    EXPECT_EQ(ap_life_state_of(&life), AP_LIFE_STATE_STOPPING);
    EXPECT(ap_tracker_is_closed(&tr));
    EXPECT_EQ(ap_life_enter(&life), AP_CLOSED, "no new work");
    ap_tracker_done(&tr);
    EXPECT_GE(calls(&w), 1);
    ap_cx_reset(&cx, 50);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING, "the lifecycle still has one inside");
    ap_life_leave(&life);
    ap_cx_reset(&cx, 60);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_shutdown_status(&s), AP_OK);
    EXPECT_NOT(ap_shutdown_forced(&s));
    EXPECT_NOT(ap_cancel_is_cancelled(&tok), "graceful: the token was left alone");
    EXPECT_EQ(ap_life_terminated(&life), AP_OK);
    ap_cancel_fini(&tok);
}

Test(cancel, shutdown_forces_at_the_grace_deadline_then_completes)
{
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    ap_cancel root, task;
    ap_cancel_init(&root);
    ap_cancel_init_child(&task, &root);
    ap_tracker_add(&tr);
    ap_shutdown s;
    EXPECT_EQ(ap_shutdown_init(&s, NULL, &tr, &root, 100, 200), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    cx.now = 0;
    EXPECT_EQ(s.base.poll(&s.base, &cx), AP_PENDING);
    ap_cx_reset(&cx, 99);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT_NOT(ap_cancel_is_cancelled(&task), "not before the grace deadline");
    ap_cx_reset(&cx, 100);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT(ap_cancel_is_cancelled(&task), "forced: the task's token is cancelled");
    EXPECT(ap_shutdown_forced(&s));
    EXPECT_EQ(cx.deadline, 200, "re-poll by the hard deadline");
    ap_tracker_done(&tr); /* the task saw its token and left */
    ap_cx_reset(&cx, 150);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_shutdown_status(&s), AP_OK);
    ap_cancel_fini(&task);
    ap_cancel_fini(&root);
}

Test(cancel, shutdown_times_out_at_the_hard_deadline)
{
    ap_tracker tr = AP_TRACKER_INITIALIZER;
    ap_cancel root;
    ap_cancel_init(&root);
    ap_tracker_add(&tr); /* a task that ignores its token */
    ap_shutdown s;
    EXPECT_EQ(ap_shutdown_init(&s, NULL, &tr, &root, 100, 200), AP_OK);
    tw w = {0};
    ap_cx cx = cx_of(&w);
    cx.now = 150;
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_PENDING);
    EXPECT(ap_shutdown_forced(&s));
    ap_cx_reset(&cx, 200);
    EXPECT_EQ(ap_shutdown_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_shutdown_status(&s), AP_TIMEDOUT);
    EXPECT(!ap_waitlist_has_waiters(&tr.wl), "the inner wait was cancelled");
    ap_tracker_done(&tr);
    ap_tracker_fini(&tr);
    ap_cancel_fini(&root);
}

/* ---- threads: cancel while children come and go ---- */

#define RT_N 64
typedef struct rt_shared {
    ap_cancel root;
    atomic_int cancelled_done; /* the root's cancel returned */
    atomic_int escaped;        /* a child made after that, not cancelled */
    atomic_int cbs;
} rt_shared;

static void *rt_churn(void *p)
{
    rt_shared *s = (rt_shared *)p;
    for (int i = 0; i < 2000; i++) {
        ap_cancel c, g;
        ap_cancel_cb cb;
        ap_cancel_init_child(&c, &s->root);
        ap_cancel_init_child(&g, &c);
        ap_cancel_on(&g, &cb, count_cb, &s->cbs);
        int after = atomic_load(&s->cancelled_done);
        if (after && !ap_cancel_is_cancelled(&g))
            atomic_fetch_add(&s->escaped, 1);
        if (ap_cancel_off(&g, &cb) == AP_OK)
            atomic_fetch_add(&s->cbs, 1); /* counted once either way */
        if (i & 1) {
            ap_cancel_fini(&c); /* g moves up to the root */
            ap_cancel_fini(&g);
        } else {
            ap_cancel_fini(&g);
            ap_cancel_fini(&c);
        }
    }
    return NULL;
}

Test(cancel, cancel_during_churn_lets_no_child_escape)
{
    for (int round = 0; round < 20; round++) {
        rt_shared s;
        ap_cancel_init(&s.root);
        atomic_init(&s.cancelled_done, 0);
        atomic_init(&s.escaped, 0);
        atomic_init(&s.cbs, 0);
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            EXPECT_EQ(pthread_create(&th[i], NULL, rt_churn, &s), 0);
        ms_sleep(round % 3);
        ap_cancel_cancel(&s.root);
        atomic_store(&s.cancelled_done, 1);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        EXPECT_EQ(atomic_load(&s.escaped), 0, "a token made after the cancel was live");
        EXPECT_EQ(atomic_load(&s.cbs), 2 * 2000, "every callback counted exactly once");
        EXPECT_NULL(s.root.child);
        ap_cancel_fini(&s.root);
    }
}

/* ---- USAGE ---- */

static int served_cancelled;
static void serve(ap_cancel *req) { served_cancelled += ap_cancel_is_cancelled(req); }

Test(cancel, usage)
{
    /* USAGE begin */
    static ap_cancel root;           // per server; one child per request
    static ap_tracker tasks = AP_TRACKER_INITIALIZER;
    ap_cancel_init(&root);
    // a request handler: its own token, a child of the server's
    ap_cancel req;
    ap_cancel_init_child(&req, &root);     // born cancelled if root already is
    ap_tracker_add(&tasks);
    serve(&req);                           // polls ap_cancel_is_cancelled(&req),
                                           // or races its futures with ap_cancel_race
    ap_tracker_done(&tasks);
    ap_cancel_fini(&req);                  // detach: safe while root is being cancelled
    // shutdown: graceful for 5 s, then cancel what remains, give up after 10 s
    ap_shutdown sd;
    uint64_t now = ap_now_ns();
    if (ap_shutdown_init(&sd, NULL, &tasks, &root, now + 5 * AP_NS_PER_SEC,
                         now + 10 * AP_NS_PER_SEC) != AP_OK) abort();
    ap_block_on(&sd.base);
    if (ap_shutdown_status(&sd) == AP_OK && ap_shutdown_forced(&sd))
        puts("some tasks had to be cancelled");
    /* USAGE end */
    EXPECT_EQ(served_cancelled, 0);
    EXPECT_EQ(ap_shutdown_status(&sd), AP_OK);
    EXPECT_NOT(ap_shutdown_forced(&sd), "nothing was running: graceful");
    EXPECT(ap_tracker_is_closed(&tasks));
    ap_cancel_fini(&root);
}

/* ---- tracker stats (issue #14): exact counts over a known sequence ---- */

static void tracker_stats_eq(ap_tracker *t, uint64_t running, uint64_t closed, uint64_t waiters,
                             uint64_t waits, const char *step)
{
    ap_tracker_stats s;
    ap_tracker_stats_get(t, &s);
    EXPECT(s.running == running && s.closed == closed && s.waiters == waiters && s.waits == waits,
           "%s: running %ju closed %ju waiters %ju waits %ju", step, (uintmax_t)s.running,
           (uintmax_t)s.closed, (uintmax_t)s.waiters, (uintmax_t)s.waits);
}

Test(cancel, tracker_stats_get_counts_exactly)
{
    ap_tracker tr;
    memset(&tr, 0x5a, sizeof tr); /* init must zero every counter */
    ap_tracker_init(&tr);
    ap_tracker_stats s;
    ap_tracker_stats_get(&tr, &s);
    EXPECT_EQ(s.wait_ns, 0, "init zeroes wait_ns");
    tracker_stats_eq(&tr, 0, 0, 0, 0, "init");
    for (int i = 0; i < 3; i++)
        ap_tracker_add(&tr);
    ap_tracker_done(&tr);
    tracker_stats_eq(&tr, 2, 0, 0, 0, "3 adds, 1 done");
    tw w = {0};
    ap_cx cx = cx_of(&w);
    ap_tracker_wait_fut f;
    ap_tracker_wait_fut_init(&f, &tr);
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_PENDING);
    tracker_stats_eq(&tr, 2, 0, 1, 1, "one queued");
    ap_tracker_close(&tr);
    tracker_stats_eq(&tr, 2, 1, 1, 1, "closed");
    ap_tracker_done(&tr);
    ap_tracker_done(&tr);
    EXPECT_EQ(ap_tracker_wait_poll(&f, &cx), AP_READY);
    tracker_stats_eq(&tr, 0, 1, 0, 1, "drained");
    /* a wait that completes at once queues nothing and parks for nothing */
    EXPECT_EQ(ap_tracker_wait(&tr, ap_now_ns() + AP_NS_PER_SEC), AP_OK);
    tracker_stats_eq(&tr, 0, 1, 0, 1, "wait at once");
    ap_tracker_stats_get(&tr, &s);
    EXPECT_EQ(s.wait_ns, 0, "nobody parked yet");
    ap_tracker_reopen(&tr);
    EXPECT_EQ(ap_tracker_wait(&tr, ap_now_ns() + AP_NS_PER_MS), AP_TIMEDOUT);
    tracker_stats_eq(&tr, 0, 0, 0, 2, "timed out");
    ap_tracker_stats_get(&tr, &s);
    EXPECT_GT(s.wait_ns, 0, "the parked wait counted no time");
    ap_tracker_fini(&tr);
}
