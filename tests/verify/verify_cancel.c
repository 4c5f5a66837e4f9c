/*
 * verify_cancel.c -- cancellation trees and trackers under every
 * interleaving within the preemption bound (SC and x86-TSO; the *_tso
 * scenarios also in the C11 mode).
 *
 * Theorems: once ap_cancel_cancel(x) has returned, x and every token below
 * it observe cancelled, including a child made concurrently (born
 * cancelled) and while another thread detaches (fini) a descendant or
 * cancels the same subtree; a callback runs exactly once unless taken off
 * first; a waiter below a cancelled token is always woken (lost-wakeup
 * detector), also a future raced against it (ap_cancel_race: the inner
 * future cancelled); a tracker's wait completes only when it is closed and empty,
 * after every task's effects (C11 race detector), and is always woken.
 */
#include "vf.h"
#include "asyncpat/cancel.h"

/* ---- a cancel vs a child being made and a grandchild detaching ---- */

typedef struct tst {
    ap_cancel r, c, g, g2;
    ap_cancel_cb cb;
    int cbs;          /* the callback on c ran */
    AP_ATOMIC_T(int) done; /* thread 0's cancel(r) returned (release/acquire:
                            * "after" means happens-after in C11 mode) */
    bool g_fini;      /* g's fini began (thread 2): no longer a descendant */
    bool g2_made, g2_fini;
} tst;

static void count_cb(void *p) { ((tst *)p)->cbs++; }

static void *t_setup(void)
{
    tst *s = calloc(1, sizeof *s);
    ap_cancel_init(&s->r);
    ap_cancel_init_child(&s->c, &s->r);
    ap_cancel_init_child(&s->g, &s->c);
    ap_cancel_on(&s->c, &s->cb, count_cb, s);
    return s;
}

static void t_thread(void *p, int id)
{
    tst *s = p;
    if (id == 0) {
        ap_cancel_cancel(&s->r);
        AP_ATOMIC_STORE(&s->done, 1, memory_order_release);
        VF_CHECK(ap_cancel_is_cancelled(&s->c) && ap_cancel_is_cancelled(&s->r));
    } else if (id == 1) {
        bool before = AP_ATOMIC_LOAD(&s->done, memory_order_acquire);
        ap_cancel_init_child(&s->g2, &s->c);
        s->g2_made = true;
        /* checked here, by its owner (under TSO a born-cancelled flag may
         * still sit in this thread's store buffer, ordered before the
         * parent's lock release: what any other thread sees first) */
        VF_CHECK(!before || ap_cancel_is_cancelled(&s->g2), "born live after the cancel");
        vf_yield(); /* g2 lives a while */
        if (AP_ATOMIC_LOAD(&s->done, memory_order_acquire))
            VF_CHECK(ap_cancel_is_cancelled(&s->g2), "a child made under the tree is live after the cancel");
        s->g2_fini = true; /* from here its owner no longer looks at it */
        ap_cancel_fini(&s->g2);
    } else {
        s->g_fini = true; /* its owner no longer looks at it */
        ap_cancel_fini(&s->g); /* its end of life, during the parent's cancel */
    }
}

static void t_invariant(void *p)
{
    tst *s = p;
    if (!AP_ATOMIC_LOAD(&s->done, memory_order_relaxed))
        return;
    VF_CHECK(ap_cancel_is_cancelled(&s->r) && ap_cancel_is_cancelled(&s->c));
    if (!s->g_fini)
        VF_CHECK(ap_cancel_is_cancelled(&s->g), "a grandchild escaped the cancel");
    /* g2: checked by its owner (thread 1) */
}

static void t_check(void *p)
{
    tst *s = p;
    VF_CHECK(s->cbs == 1, "the callback ran %d times", s->cbs);
    VF_CHECK(ap_cancel_off(&s->c, &s->cb) == AP_CANCELED);
    VF_CHECK(s->r.child == NULL && s->c.child == NULL, "the cancelled tree is consumed");
    ap_cancel_fini(&s->c);
    ap_cancel_fini(&s->r);
}

/* ---- two cancels of one subtree and a waiter below ---- */

typedef struct wst {
    ap_cancel r, c, g;
    bool done0, done2;
} wst;

static void *w_setup(void)
{
    wst *s = calloc(1, sizeof *s);
    ap_cancel_init(&s->r);
    ap_cancel_init_child(&s->c, &s->r);
    ap_cancel_init_child(&s->g, &s->c);
    return s;
}

static void w_thread(void *p, int id)
{
    wst *s = p;
    if (id == 0) {
        ap_cancel_cancel(&s->c);
        s->done0 = true;
    } else if (id == 1) {
        ap_cancel_fut f;
        ap_cancel_fut_init(&f, &s->g);
        vf_wait((ap_future *)&f); /* parks: the detector finds a lost wake */
        VF_CHECK(ap_cancel_fut_status(&f) == AP_OK);
    } else {
        ap_cancel_cancel(&s->r);
        s->done2 = true;
    }
}

static void w_invariant(void *p)
{
    wst *s = p;
    if (s->done0 || s->done2)
        VF_CHECK(ap_cancel_is_cancelled(&s->c) && ap_cancel_is_cancelled(&s->g),
                 "a cancel returned with its subtree not yet cancelled");
    if (s->done2)
        VF_CHECK(ap_cancel_is_cancelled(&s->r));
}

static void w_check(void *p)
{
    wst *s = p;
    ap_cancel_fini(&s->g);
    ap_cancel_fini(&s->c);
    ap_cancel_fini(&s->r);
}

/* ---- a callback registered while the cancel runs ---- */

typedef struct cst {
    ap_cancel r, c;
    ap_cancel_cb cb;
    int cbs;
    ap_status off;
    AP_ATOMIC_T(int) cancelled; /* thread 1's cancel returned */
    bool seen;                  /* thread 0 saw that before its off */
} cst;

static void ccount(void *p) { ((cst *)p)->cbs++; }

static void *c_setup(void)
{
    cst *s = calloc(1, sizeof *s);
    ap_cancel_init(&s->r);
    ap_cancel_init_child(&s->c, &s->r);
    return s;
}

static void c_thread(void *p, int id)
{
    cst *s = p;
    if (id == 0) {
        ap_cancel_on(&s->c, &s->cb, ccount, s);
        vf_yield();
        s->seen = AP_ATOMIC_LOAD(&s->cancelled, memory_order_acquire);
        s->off = ap_cancel_off(&s->c, &s->cb);
    } else {
        ap_cancel_cancel(&s->r);
        AP_ATOMIC_STORE(&s->cancelled, 1, memory_order_release);
    }
}

static void c_check(void *p)
{
    cst *s = p;
    if (s->seen) /* cancelled before the off began: it must have run */
        VF_CHECK(s->off == AP_CANCELED, "off after a finished cancel said %d", s->off);
    if (s->off == AP_OK)
        VF_CHECK(s->cbs == 0, "ran after off returned AP_OK");
    else
        VF_CHECK(s->off == AP_CANCELED && s->cbs == 1, "off %d, ran %d times", s->off, s->cbs);
    ap_cancel_fini(&s->c);
    ap_cancel_fini(&s->r);
}

/* ---- a future raced against a token that another thread cancels ---- */

typedef struct rst {
    ap_cancel r, t, other; /* t below r; other is never cancelled */
    ap_cancel_fut inner;   /* waits on other: never completes by itself */
    ap_cancel_race race;
} rst;

static void *r_setup(void)
{
    rst *s = calloc(1, sizeof *s);
    ap_cancel_init(&s->r);
    ap_cancel_init_child(&s->t, &s->r);
    ap_cancel_init(&s->other);
    ap_cancel_fut_init(&s->inner, &s->other);
    ap_cancel_race_init(&s->race, (ap_future *)&s->inner, &s->t);
    return s;
}

static void r_thread(void *p, int id)
{
    rst *s = p;
    if (id == 0) {
        vf_wait(&s->race.base); /* parks: a lost wake is a failure */
        VF_CHECK(ap_cancel_race_status(&s->race) == AP_CANCELED);
        VF_CHECK(ap_cancel_fut_status(&s->inner) == AP_CANCELED, "inner not cancelled");
    } else {
        ap_cancel_cancel(&s->r);
    }
}

static void r_check(void *p)
{
    rst *s = p;
    VF_CHECK(!ap_waitlist_has_waiters(&s->other.wl), "inner left registered");
    ap_cancel_fini(&s->t); /* asserts the race left t's list */
    ap_cancel_fini(&s->r);
    ap_cancel_fini(&s->other);
}

/* ---- a tracker: two tasks, a closer that waits ---- */

typedef struct kst {
    ap_tracker t;
    int work[2]; /* written by task i before its done (C11: race-checked) */
    int left;    /* tasks not yet finished */
} kst;

static void *k_setup(void)
{
    kst *s = calloc(1, sizeof *s);
    ap_tracker_init(&s->t);
    ap_tracker_add(&s->t);
    ap_tracker_add(&s->t);
    s->left = 2;
    return s;
}

static void k_thread(void *p, int id)
{
    kst *s = p;
    if (id < 2) {
        VF_DATA_WRITE(&s->work[id], sizeof s->work[id]);
        s->work[id] = 1;
        s->left--;
        ap_tracker_done(&s->t);
        return;
    }
    ap_tracker_close(&s->t);
    ap_tracker_wait_fut f;
    ap_tracker_wait_fut_init(&f, &s->t);
    vf_wait((ap_future *)&f);
    VF_CHECK(ap_tracker_wait_status(&f) == AP_OK);
    VF_CHECK(s->left == 0, "the wait completed with %d tasks running", s->left);
    VF_DATA_READ(s->work, sizeof s->work);
    VF_CHECK(s->work[0] == 1 && s->work[1] == 1);
}

static void k_check(void *p)
{
    kst *s = p;
    VF_CHECK(ap_tracker_len(&s->t) == 0);
    ap_tracker_fini(&s->t);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 3, .bound = 2, .tso = tso, .setup = t_setup,
                          .thread = t_thread, .invariant = t_invariant, .check = t_check,
                          .teardown = free};
        sc.name = tso ? "cancel_vs_child_and_fini_tso" : "cancel_vs_child_and_fini";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 3, .bound = 2, .tso = tso, .setup = w_setup,
                          .thread = w_thread, .invariant = w_invariant, .check = w_check,
                          .teardown = free};
        sc.name = tso ? "cancel_two_cancels_waiter_tso" : "cancel_two_cancels_waiter";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .bound = 3, .tso = tso, .setup = c_setup,
                          .thread = c_thread, .check = c_check, .teardown = free};
        sc.name = tso ? "cancel_callback_vs_cancel_tso" : "cancel_callback_vs_cancel";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .bound = 3, .tso = tso, .setup = r_setup,
                          .thread = r_thread, .check = r_check, .teardown = free};
        sc.name = tso ? "cancel_race_vs_cancel_tso" : "cancel_race_vs_cancel";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 3, .bound = 2, .tso = tso, .setup = k_setup,
                          .thread = k_thread, .check = k_check, .teardown = free};
        sc.name = tso ? "tracker_2tasks_closer_tso" : "tracker_2tasks_closer";
        total += vf_explore(&sc);
    }
    printf("verify_cancel: %lu executions\n", total);
    return 0;
}
