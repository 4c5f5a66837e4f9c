/* tests/test_fanout.c -- ap_fanout: fan-out / fan-in over child futures */
#include "asyncpat.h"
#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* a probe child: READY once the test fired it; keeps its waker so the
 * test can call it (single-threaded tests) */

typedef struct probe {
    ap_future base;
    int polls, cancels, readies;
    int polls_after_done; /* polled after READY or cancel: a bug */
    bool fired, done;
    ap_status result;     /* what the result callback reports */
    ap_waker waker;       /* registered by the last PENDING poll */
    size_t index;
    struct armed *armed;  /* where a PENDING probe lists itself, if set */
} probe;

/* the in-flight probes that have a waker registered */
typedef struct armed {
    probe **v;
    size_t len, high;
} armed;

static long g_polls;

static ap_poll probe_poll(ap_future *f, ap_cx *cx)
{
    probe *p = (probe *)(void *)f;
    g_polls++;
    p->polls++;
    if (p->done)
        p->polls_after_done++;
    if (p->fired) {
        p->readies++;
        p->done = true;
        p->waker = AP_WAKER_NONE;
        return AP_READY;
    }
    if (p->armed && p->waker.wake == NULL) {
        p->armed->v[p->armed->len++] = p;
        if (p->armed->len > p->armed->high)
            p->armed->high = p->armed->len;
    }
    p->waker = cx->waker;
    return AP_PENDING;
}

static void probe_cancel(ap_future *f)
{
    probe *p = (probe *)(void *)f;
    p->cancels++;
    p->done = true;
    p->waker = AP_WAKER_NONE;
}

static ap_status probe_result(void *ctx, size_t index, ap_future *f)
{
    (void)ctx;
    probe *p = (probe *)(void *)f;
    EXPECT_EQ(p->index, index);
    return p->result;
}

typedef struct flagwake {
    int wakes;
} flagwake;

static void flag_wake(void *ctx) { ((flagwake *)ctx)->wakes++; }

/* A set of n probes, with arrays in one heap block for the big tests. */
typedef struct rig {
    size_t n;
    probe *p;
    ap_future **kids;
    ap_fanout_child *recs;
    size_t *order;
    armed arm;
    ap_fanout set;
    flagwake fw;
} rig;

static void rig_init(rig *r, size_t n, size_t limit, ap_fanout_policy pol)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->p = calloc(n, sizeof *r->p);
    r->kids = calloc(n, sizeof *r->kids);
    r->recs = calloc(n, sizeof *r->recs);
    r->order = calloc(n, sizeof *r->order);
    r->arm.v = calloc(n, sizeof *r->arm.v);
    EXPECT(r->p && r->kids && r->recs && r->order && r->arm.v);
    for (size_t i = 0; i < n; i++) {
        r->p[i].base.poll = probe_poll;
        r->p[i].base.cancel = probe_cancel;
        r->p[i].index = i;
        r->p[i].result = AP_OK;
        r->p[i].armed = &r->arm;
        r->kids[i] = &r->p[i].base;
    }
    ap_fanout_desc d = {.children = r->kids, .n = n, .limit = limit, .policy = pol,
                        .result = probe_result, .order = r->order};
    EXPECT_EQ(ap_fanout_init(&r->set, r->recs, d.n * sizeof *r->recs, &d), AP_OK);
}

static void rig_fini(rig *r)
{
    free(r->p);
    free(r->kids);
    free(r->recs);
    free(r->order);
    free(r->arm.v);
}

static ap_poll rig_poll(rig *r)
{
    ap_cx cx = {{flag_wake, &r->fw}, 0, AP_DEADLINE_NONE};
    return ap_fanout_poll(&r->set, &cx);
}

/* take armed[k] out and fire it: the test is the event source */
static probe *fire_armed(rig *r, size_t k)
{
    EXPECT(k < r->arm.len, "no armed child %zu of %zu: the set is pending with nothing "
                              "to wake it", k, r->arm.len);
    probe *p = r->arm.v[k];
    r->arm.v[k] = r->arm.v[--r->arm.len];
    p->fired = true;
    ap_waker w = p->waker;
    ap_waker_wake(w);
    return p;
}

/* Every wait in these tests has a deadline well inside the tests' 30 s
 * timeout, so a lost wake fails with a message instead of hanging. */
#define FO_WAIT_NS (10 * AP_NS_PER_SEC)
static ap_deadline fo_deadline(void) { return ap_now_ns() + FO_WAIT_NS; }

/* ------------------------------------------------------------------ */

Test(fanout, limit_zero_and_bad_policy_are_inval)
{
    ap_future *kids[1] = {NULL};
    ap_fanout_child recs[1];
    ap_fanout s;
    memset(&s, 0x5a, sizeof s);
    ap_fanout_desc d = {.children = kids, .n = 1, .limit = 0};
    EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &d), AP_INVAL);
    d.limit = 1;
    d.policy = (ap_fanout_policy)7;
    EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &d), AP_INVAL);
    unsigned char *b = (unsigned char *)&s;
    for (size_t i = 0; i < sizeof s; i++)
        EXPECT_EQ(b[i], 0x5a, "AP_INVAL changes nothing");
}

Test(fanout, empty_set_is_ready_ok)
{
    ap_fanout s;
    ap_fanout_desc d = {.n = 0, .limit = 4};
    EXPECT_EQ(ap_fanout_init(&s, NULL, 0, &d), AP_OK);
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_fanout_status(&s), AP_OK);
}

Test(fanout, small_set_basic_contract)
{
    rig r;
    rig_init(&r, 5, 2, AP_FANOUT_POLICY_FIRST);
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    EXPECT_EQ(ap_fanout_in_flight(&r.set), 2);
    EXPECT_EQ(r.p[0].polls, 1);
    EXPECT_EQ(r.p[1].polls, 1);
    EXPECT_EQ(r.p[2].polls, 0, "not started beyond the limit");
    /* wake twice before a poll: coalesced into one child poll */
    fire_armed(&r, 1); /* armed = {p0, p1}: fires p1 */
    ap_waker_wake(r.p[1].waker); /* a second wake before the set's poll */
    EXPECT_EQ(r.fw.wakes, 1, "a child wake wakes the set once");
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    EXPECT_EQ(r.p[1].polls, 2);
    EXPECT_EQ(r.p[1].readies, 1);
    EXPECT_EQ(r.p[0].polls, 1, "the un-woken sibling is not polled");
    EXPECT_EQ(r.p[2].polls, 1, "the next child starts as one finishes");
    EXPECT_EQ(ap_fanout_child_status(&r.set, 1), AP_OK);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 0), AP_NOT_READY);
    while (r.arm.len) {
        fire_armed(&r, 0);
        (void)rig_poll(&r);
    }
    EXPECT_EQ(ap_fanout_status(&r.set), AP_OK);
    EXPECT_EQ(rig_poll(&r), AP_READY);
    EXPECT_EQ(ap_fanout_completed(&r.set), 5);
    EXPECT_EQ(r.order[0], 1);
    for (size_t i = 0; i < 5; i++) {
        EXPECT_EQ(r.p[i].readies, 1);
        EXPECT_EQ(r.p[i].cancels, 0);
    }
    ap_fanout_cancel(&r.set); /* after completion: no-op */
    for (size_t i = 0; i < 5; i++)
        EXPECT_EQ(r.p[i].cancels, 0);
    EXPECT_EQ(ap_fanout_status(&r.set), AP_OK);
    rig_fini(&r);
}

/* 10,000 children, limit 64, fired in random order and random batches
 * (several wakes, some doubled, before each poll of the set). */
static void big_random(uint64_t seed, bool spurious)
{
    const size_t n = 10000, L = 64;
    rig r;
    rig_init(&r, n, L, AP_FANOUT_POLICY_ALL);
    size_t *fired = calloc(n, sizeof *fired);
    size_t nf = 0, extra = 0;
    g_polls = 0;
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    EXPECT_EQ(r.arm.len, L);
    ap_poll res = AP_PENDING;
    while (res == AP_PENDING) {
        EXPECT(r.arm.len > 0 && r.arm.len <= L, "armed %zu", r.arm.len);
        size_t batch = 1 + (size_t)(rng_next(&seed) % 8);
        for (size_t b = 0; b < batch && r.arm.len; b++) {
            probe *p = fire_armed(&r, (size_t)(rng_next(&seed) % r.arm.len));
            fired[nf++] = p->index;
            if (rng_next(&seed) % 4 == 0)
                ap_waker_wake(p->waker); /* a second wake: coalesced */
        }
        if (spurious && r.arm.len && rng_next(&seed) % 2 == 0) {
            /* a spurious wake of an un-fired child: one extra child poll */
            ap_waker_wake(r.arm.v[rng_next(&seed) % r.arm.len]->waker);
            extra++;
        }
        EXPECT(ap_fanout_in_flight(&r.set) <= L);
        res = rig_poll(&r);
    }
    EXPECT_EQ(nf, n);
    EXPECT_EQ(ap_fanout_status(&r.set), AP_OK);
    EXPECT_EQ(ap_fanout_completed(&r.set), n);
    EXPECT_EQ(r.arm.high, L, "never more than the limit in flight");
    for (size_t i = 0; i < n; i++) {
        EXPECT_EQ(r.p[i].readies, 1, "child %zu completed exactly once", i);
        EXPECT_EQ(r.p[i].cancels, 0);
        EXPECT_EQ(r.p[i].polls_after_done, 0);
        EXPECT_EQ(ap_fanout_child_status(&r.set, i), AP_OK);
    }
    /* completion order = the order of the wakes (FIFO within a batch) */
    for (size_t k = 0; k < n; k++)
        EXPECT_EQ(r.order[k], fired[k], "order[%zu]", k);
    /* O(children): one poll to start, one per (coalesced) wake */
    EXPECT_EQ((size_t)g_polls, 2 * n + extra, "polls %ld", g_polls);
    EXPECT((size_t)g_polls <= 3 * n);
    free(fired);
    rig_fini(&r);
}

Test(fanout, ten_thousand_children_limit_64_polls_linear) { big_random(0x9e3779b97f4a7c15u, false); }
Test(fanout, ten_thousand_children_with_spurious_wakes) { big_random(12345u, true); }

Test(fanout, first_error_cancels_siblings_and_never_starts_the_rest)
{
    const size_t n = 100, L = 8;
    rig r;
    rig_init(&r, n, L, AP_FANOUT_POLICY_FIRST);
    r.p[10].result = AP_REJECTED;
    r.p[11].result = AP_TIMEDOUT;
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    /* complete children in input order until child 10 has failed */
    size_t i = 0;
    ap_poll res = AP_PENDING;
    while (res == AP_PENDING) {
        size_t k = 0;
        while (k < r.arm.len && r.arm.v[k]->index != i)
            k++;
        fire_armed(&r, k);
        res = rig_poll(&r);
        i++;
    }
    EXPECT_EQ(i, 11);
    EXPECT_EQ(ap_fanout_status(&r.set), AP_REJECTED);
    EXPECT_EQ(ap_fanout_completed(&r.set), 11);
    EXPECT_EQ(ap_fanout_failed(&r.set), 1);
    EXPECT_EQ(ap_fanout_canceled(&r.set), n - 11);
    EXPECT_EQ(ap_fanout_in_flight(&r.set), 0);
    for (size_t j = 0; j < n; j++) {
        if (j < 11) {
            EXPECT_EQ(r.p[j].readies, 1);
            EXPECT_EQ(r.p[j].cancels, 0);
        } else if (j < 11 + L - 1) { /* the siblings in flight */
            EXPECT_EQ(r.p[j].readies, 0);
            EXPECT_EQ(r.p[j].cancels, 1, "sibling %zu cancelled once", j);
            EXPECT_EQ(ap_fanout_child_status(&r.set, j), AP_CANCELED);
        } else {
            EXPECT_EQ(r.p[j].polls, 0, "child %zu never started", j);
            EXPECT_EQ(r.p[j].cancels, 0);
            EXPECT_EQ(ap_fanout_child_status(&r.set, j), AP_CANCELED);
        }
        EXPECT_EQ(r.p[j].polls_after_done, 0);
    }
    EXPECT_EQ(ap_fanout_child_status(&r.set, 10), AP_REJECTED);
    ap_fanout_cancel(&r.set);
    EXPECT_EQ(rig_poll(&r), AP_READY);
    for (size_t j = 11; j < 11 + L - 1; j++)
        EXPECT_EQ(r.p[j].cancels, 1, "still once");
    rig_fini(&r);
}

static void run_all_in_order(rig *r)
{
    ap_poll res = rig_poll(r);
    while (res == AP_PENDING) {
        fire_armed(r, 0);
        res = rig_poll(r);
    }
}

Test(fanout, policy_all_collects_every_error)
{
    rig r;
    rig_init(&r, 50, 4, AP_FANOUT_POLICY_ALL);
    r.p[7].result = AP_REJECTED;
    r.p[30].result = AP_TIMEDOUT;
    r.p[31].result = AP_CLOSED;
    run_all_in_order(&r);
    EXPECT_EQ(ap_fanout_completed(&r.set), 50);
    EXPECT_EQ(ap_fanout_failed(&r.set), 3);
    EXPECT_EQ(ap_fanout_canceled(&r.set), 0);
    /* the first failure in completion order */
    size_t first = 0;
    while (r.p[r.order[first]].result == AP_OK)
        first++;
    EXPECT_EQ(ap_fanout_status(&r.set), r.p[r.order[first]].result);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 7), AP_REJECTED);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 30), AP_TIMEDOUT);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 31), AP_CLOSED);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 8), AP_OK);
    for (size_t j = 0; j < 50; j++)
        EXPECT_EQ(r.p[j].readies + r.p[j].cancels, 1);
    rig_fini(&r);
}

Test(fanout, policy_ignore_runs_everything_and_says_ok)
{
    rig r;
    rig_init(&r, 50, 4, AP_FANOUT_POLICY_IGNORE);
    r.p[0].result = AP_REJECTED;
    r.p[49].result = AP_TIMEDOUT;
    run_all_in_order(&r);
    EXPECT_EQ(ap_fanout_status(&r.set), AP_OK);
    EXPECT_EQ(ap_fanout_completed(&r.set), 50);
    EXPECT_EQ(ap_fanout_failed(&r.set), 2);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 0), AP_REJECTED);
    EXPECT_EQ(ap_fanout_child_status(&r.set, 49), AP_TIMEDOUT);
    rig_fini(&r);
}

Test(fanout, null_result_callback_counts_every_child_ok)
{
    probe p[3];
    ap_future *kids[3];
    ap_fanout_child recs[3];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 3; i++) {
        p[i].base.poll = probe_poll;
        p[i].base.cancel = probe_cancel;
        p[i].fired = true; /* ready at the first poll */
        kids[i] = &p[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = 3, .limit = 1};
    EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &d), AP_OK);
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    /* limit 1, all ready at once: each successor starts in the same poll */
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_fanout_status(&s), AP_OK);
    EXPECT_EQ(ap_fanout_completed(&s), 3);
}

/* ------------------------------------------------------------------ */
/* the theorem: k equal tasks of D ns with limit L take ceil(k/L) * D */

typedef struct timer_probe {
    ap_future base;
    uint64_t start, dur;
    bool started;
    int polls, readies;
} timer_probe;

static ap_poll timer_poll(ap_future *f, ap_cx *cx)
{
    timer_probe *t = (timer_probe *)(void *)f;
    t->polls++;
    if (!t->started) {
        t->started = true;
        t->start = cx->now;
    }
    if (cx->now >= t->start + t->dur) {
        t->readies++;
        return AP_READY;
    }
    ap_cx_wake_at(cx, t->start + t->dur);
    return AP_PENDING;
}

static void theorem(size_t k, size_t L, uint64_t D)
{
    timer_probe *t = calloc(k, sizeof *t);
    ap_future **kids = calloc(k, sizeof *kids);
    ap_fanout_child *recs = calloc(k, sizeof *recs);
    for (size_t i = 0; i < k; i++) {
        t[i].base.poll = timer_poll;
        t[i].dur = D;
        kids[i] = &t[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = k, .limit = L};
    EXPECT_EQ(ap_fanout_init(&s, recs, k * sizeof *recs, &d), AP_OK);
    uint64_t now = 0;
    size_t rounds = 0;
    for (;;) {
        ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
        if (ap_fanout_poll(&s, &cx) == AP_READY)
            break;
        EXPECT(ap_fanout_in_flight(&s) <= L);
        EXPECT_NE(cx.deadline, AP_DEADLINE_NONE, "a timer must be asked for");
        EXPECT_GT(cx.deadline, now);
        now = cx.deadline; /* the driver sleeps exactly until then */
        rounds++;
    }
    size_t want = (k + L - 1) / L;
    EXPECT_EQ(rounds, want, "k=%zu L=%zu: %zu rounds", k, L, rounds);
    EXPECT_EQ(now, want * D, "k=%zu L=%zu: finished at %llu", k, L,
                 (unsigned long long)now);
    for (size_t i = 0; i < k; i++) {
        EXPECT_EQ(t[i].readies, 1);
        EXPECT_EQ(t[i].polls, 2, "started once, polled once at its deadline");
        EXPECT_EQ(t[i].start, (i / L) * D, "child %zu starts in round %zu", i, i / L);
    }
    free(t);
    free(kids);
    free(recs);
}

Test(fanout, theorem_ceil_k_over_l_rounds_on_a_fake_clock)
{
    theorem(1, 1, 1000);
    theorem(10, 1, 1000);
    theorem(10, 3, 777);
    theorem(10, 10, 500);
    theorem(5, 64, 500);
    theorem(1000, 64, 1000000);
    theorem(1024, 64, 3);
}

/* ------------------------------------------------------------------ */
/* mpmc pop futures as children */

static ap_status pop_result(void *ctx, size_t index, ap_future *f)
{
    (void)ctx;
    (void)index;
    return ap_mpmc_pop_status((ap_mpmc_pop_fut *)(void *)f);
}

Test(fanout, cancel_with_mpmc_children_leaves_no_waiter)
{
    enum { N = 16, L = 8 };
    ap_mpmc q;
    static _Alignas(AP_MPMC_ALIGN) unsigned char buf[AP_MPMC_BYTES(32, sizeof(int))];
    EXPECT_EQ(ap_mpmc_init(&q, buf, sizeof buf, 32, sizeof(int)), AP_OK);
    ap_mpmc_pop_fut pops[N];
    int out[N];
    ap_future *kids[N];
    ap_fanout_child recs[N];
    for (int i = 0; i < N; i++) {
        ap_mpmc_pop_fut_init(&pops[i], &q, &out[i]);
        kids[i] = &pops[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = N, .limit = L, .result = pop_result};
    EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &d), AP_OK);
    flagwake fw = {0};
    ap_cx cx = {{flag_wake, &fw}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_PENDING);
    EXPECT(ap_waitlist_has_waiters(&q.not_empty));
    int v = 42;
    EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_OK);
    EXPECT_GE(fw.wakes, 1, "a push wakes the set through its child");
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_PENDING);
    EXPECT_EQ(ap_fanout_completed(&s), 1);
    EXPECT_EQ(ap_fanout_child_status(&s, 0), AP_OK, "FIFO: the first waiter got it");
    EXPECT_EQ(out[0], 42);
    EXPECT_EQ(ap_fanout_in_flight(&s), L);
    ap_fanout_cancel(&s);
    EXPECT_NOT(ap_waitlist_has_waiters(&q.not_empty), "no waiter left behind");
    EXPECT_EQ(ap_fanout_status(&s), AP_CANCELED);
    EXPECT_EQ(ap_fanout_canceled(&s), N - 1);
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY);
    int wakes = fw.wakes;
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_OK);
    EXPECT_EQ(fw.wakes, wakes, "no wake reaches the set after cancel");
    EXPECT_EQ(ap_mpmc_len(&q), 4, "nothing was popped by a cancelled child");
    ap_fanout_cancel(&s); /* idempotent */
    ap_mpmc_fini(&q);
}

/* ------------------------------------------------------------------ */
/* multithreaded: wakers called from other threads while ap_block_on drives */

enum { MT_N = 2000, MT_L = 16, MT_THREADS = 3 };

typedef struct mt_probe {
    ap_future base;
    pthread_mutex_t mu;
    bool fired, done;   /* under mu */
    ap_waker waker;     /* under mu */
    int readies, polls; /* poller only */
} mt_probe;

static ap_poll mt_poll(ap_future *f, ap_cx *cx)
{
    mt_probe *p = (mt_probe *)(void *)f;
    p->polls++;
    pthread_mutex_lock(&p->mu);
    if (p->fired) {
        p->done = true;
        p->waker = AP_WAKER_NONE;
        pthread_mutex_unlock(&p->mu);
        p->readies++;
        return AP_READY;
    }
    p->waker = cx->waker;
    pthread_mutex_unlock(&p->mu);
    return AP_PENDING;
}

static void mt_cancel(ap_future *f)
{
    mt_probe *p = (mt_probe *)(void *)f;
    pthread_mutex_lock(&p->mu);
    p->done = true;
    p->waker = AP_WAKER_NONE;
    pthread_mutex_unlock(&p->mu);
}

/* fire: the wake runs under the probe's mutex, so a poll that sees READY
 * (or a cancel) knows no wake of this probe is in progress (rule 5) */
static void mt_fire(mt_probe *p, bool really)
{
    pthread_mutex_lock(&p->mu);
    if (really)
        p->fired = true;
    ap_waker_wake(p->waker);
    pthread_mutex_unlock(&p->mu);
}

typedef struct mt_arg {
    mt_probe *p;
    unsigned id;
} mt_arg;

static void *mt_firer(void *arg)
{
    mt_arg *a = arg;
    uint64_t seed = 0x1234567u + a->id;
    /* this thread fires every MT_THREADS-th child, in a shuffled order,
     * with spurious wakes of random children in between */
    size_t mine[MT_N / MT_THREADS + 1], m = 0;
    for (size_t i = a->id; i < MT_N; i += MT_THREADS)
        mine[m++] = i;
    for (size_t i = m; i > 1; i--) {
        size_t j = (size_t)(rng_next(&seed) % i);
        size_t t = mine[i - 1];
        mine[i - 1] = mine[j];
        mine[j] = t;
    }
    for (size_t i = 0; i < m; i++) {
        mt_fire(&a->p[mine[i]], true);
        if (rng_next(&seed) % 3 == 0)
            mt_fire(&a->p[rng_next(&seed) % MT_N], false);
        if (rng_next(&seed) % 16 == 0)
            sched_yield();
    }
    return NULL;
}

Test(fanout, wakers_from_other_threads_with_block_on, .timeout = 30)
{
    mt_probe *p = calloc(MT_N, sizeof *p);
    ap_future **kids = calloc(MT_N, sizeof *kids);
    ap_fanout_child *recs = calloc(MT_N, sizeof *recs);
    size_t *order = calloc(MT_N, sizeof *order);
    for (size_t i = 0; i < MT_N; i++) {
        p[i].base.poll = mt_poll;
        p[i].base.cancel = mt_cancel;
        pthread_mutex_init(&p[i].mu, NULL);
        kids[i] = &p[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = MT_N, .limit = MT_L, .order = order};
    EXPECT_EQ(ap_fanout_init(&s, recs, MT_N * sizeof *recs, &d), AP_OK);
    pthread_t th[MT_THREADS];
    mt_arg args[MT_THREADS];
    for (unsigned t = 0; t < MT_THREADS; t++) {
        args[t].p = p;
        args[t].id = t;
        EXPECT_EQ(pthread_create(&th[t], NULL, mt_firer, &args[t]), 0);
    }
    EXPECT_EQ(ap_block_on_until(&s.base, fo_deadline()), AP_OK,
                 "the set did not finish in %d s (a lost wake?)", (int)(FO_WAIT_NS / AP_NS_PER_SEC));
    for (unsigned t = 0; t < MT_THREADS; t++)
        pthread_join(th[t], NULL);
    EXPECT_EQ(ap_fanout_status(&s), AP_OK);
    EXPECT_EQ(ap_fanout_completed(&s), MT_N);
    char *seen = calloc(MT_N, 1);
    long polls = 0;
    for (size_t i = 0; i < MT_N; i++) {
        EXPECT_EQ(p[i].readies, 1, "child %zu completed once", i);
        EXPECT_LT(order[i], (size_t)MT_N);
        EXPECT_EQ(seen[order[i]], 0, "order is a permutation");
        seen[order[i]] = 1;
        polls += p[i].polls;
        pthread_mutex_destroy(&p[i].mu);
    }
    /* 1 poll to start + at most one per wake (MT_N real + ~MT_N/3 spurious) */
    EXPECT_LE(polls, 3L * MT_N, "polls %ld", polls);
    free(seen);
    free(p);
    free(kids);
    free(recs);
    free(order);
}

/* producers on other threads, mpmc pop children, ap_block_on */
typedef struct prod_arg {
    ap_mpmc *q;
    int from, count;
} prod_arg;

static void *producer(void *arg)
{
    prod_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        int v = a->from + i;
        EXPECT_EQ(ap_mpmc_push_wait(a->q, &v, fo_deadline()), AP_OK);
    }
    return NULL;
}

Test(fanout, mpmc_children_fed_by_threads, .timeout = 30)
{
    enum { N = 3000, P = 3 };
    ap_mpmc *q;
    EXPECT_EQ(ap_mpmc_create(&q, 64, sizeof(int), NULL), AP_OK);
    ap_mpmc_pop_fut *pops = calloc(N, sizeof *pops);
    int *out = calloc(N, sizeof *out);
    ap_future **kids = calloc(N, sizeof *kids);
    ap_fanout_child *recs = calloc(N, sizeof *recs);
    for (int i = 0; i < N; i++) {
        ap_mpmc_pop_fut_init(&pops[i], q, &out[i]);
        kids[i] = &pops[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = N, .limit = 32, .result = pop_result};
    EXPECT_EQ(ap_fanout_init(&s, recs, N * sizeof *recs, &d), AP_OK);
    pthread_t th[P];
    prod_arg pa[P];
    for (int t = 0; t < P; t++) {
        pa[t] = (prod_arg){q, t * (N / P), N / P};
        EXPECT_EQ(pthread_create(&th[t], NULL, producer, &pa[t]), 0);
    }
    EXPECT_EQ(ap_block_on_until(&s.base, fo_deadline()), AP_OK,
                 "the set did not finish in %d s (a lost wake?)", (int)(FO_WAIT_NS / AP_NS_PER_SEC));
    for (int t = 0; t < P; t++)
        pthread_join(th[t], NULL);
    EXPECT_EQ(ap_fanout_status(&s), AP_OK);
    char *seen = calloc(N, 1);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(ap_fanout_child_status(&s, (size_t)i), AP_OK);
        EXPECT(out[i] >= 0 && out[i] < N);
        EXPECT_EQ(seen[out[i]], 0, "item %d popped twice", out[i]);
        seen[out[i]] = 1;
    }
    EXPECT_NOT(ap_waitlist_has_waiters(&q->not_empty));
    free(seen);
    free(pops);
    free(out);
    free(kids);
    free(recs);
    ap_mpmc_destroy(q);
}

/* ------------------------------------------------------------------ */
/* regression: a result callback answering AP_NOT_READY must not hang the set
 * (review bug 3: completion was inferred from the pending status, then
 * AP_AGAIN; the status table made "pending" AP_NOT_READY) */

typedef struct imm_child {
    ap_future base;
    int polls;
} imm_child;

static ap_poll imm_poll(ap_future *f, ap_cx *cx)
{
    (void)cx;
    ((imm_child *)(void *)f)->polls++;
    return AP_READY;
}

static ap_status not_ready_for_first(void *ctx, size_t index, ap_future *f)
{
    (void)ctx;
    (void)f;
    return index == 0 ? AP_NOT_READY : AP_OK;
}

Test(fanout, result_not_ready_is_a_failure_and_never_hangs)
{
    for (int pol = AP_FANOUT_POLICY_FIRST; pol <= AP_FANOUT_POLICY_IGNORE; pol++) {
        imm_child k[3];
        ap_future *kids[3];
        ap_fanout_child recs[3];
        size_t order[3];
        for (int i = 0; i < 3; i++) {
            k[i] = (imm_child){{imm_poll, NULL}, 0};
            kids[i] = &k[i].base;
        }
        ap_fanout s;
        EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &(ap_fanout_desc){
                                                  .children = kids, .n = 3, .limit = 1,
                                                  .policy = (ap_fanout_policy)pol,
                                                  .result = not_ready_for_first,
                                                  .order = order}),
                     AP_OK);
        flagwake fw = {0};
        ap_cx cx = {{flag_wake, &fw}, 0, AP_DEADLINE_NONE};
        /* every child is READY at once: the first poll must finish */
        EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY, "policy %d: set stayed pending", pol);
        EXPECT_NE(ap_fanout_status(&s), AP_NOT_READY, "policy %d", pol);
        EXPECT_EQ(ap_fanout_child_status(&s, 0), AP_TIMEDOUT, "policy %d", pol);
        EXPECT_EQ(ap_fanout_failed(&s), 1);
        EXPECT_EQ(ap_fanout_in_flight(&s), 0);
        if (pol == AP_FANOUT_POLICY_FIRST) {
            EXPECT_EQ(ap_fanout_status(&s), AP_TIMEDOUT);
            EXPECT_EQ(ap_fanout_completed(&s), 1);
            EXPECT_EQ(ap_fanout_canceled(&s), 2);
            EXPECT(k[1].polls == 0 && k[2].polls == 0, "never started");
            EXPECT_EQ(ap_fanout_child_status(&s, 1), AP_CANCELED);
        } else {
            EXPECT_EQ(ap_fanout_status(&s), pol == AP_FANOUT_POLICY_ALL ? AP_TIMEDOUT : AP_OK);
            EXPECT_EQ(ap_fanout_completed(&s), 3);
            EXPECT_EQ(ap_fanout_child_status(&s, 2), AP_OK);
        }
        for (int i = 0; i < 3; i++)
            EXPECT_LE(k[i].polls, 1);
        /* done is done: cancel is a no-op, polling again is READY */
        ap_fanout_cancel(&s);
        EXPECT_NE(ap_fanout_status(&s), AP_CANCELED);
        EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY);
    }
}

/* The PATTERN text: a child that wakes itself during its start poll is
 * polled again by the ready-stack pass of the same set poll; one woken
 * during the ready-stack pass waits for the next set poll. */
typedef struct self_waker {
    ap_future base;
    int polls;
} self_waker;

static ap_poll self_wake_poll(ap_future *f, ap_cx *cx)
{
    ((self_waker *)(void *)f)->polls++;
    ap_waker_wake(cx->waker);
    return AP_PENDING;
}

static void self_wake_cancel(ap_future *f) { (void)f; }

Test(fanout, self_waking_child_polls_are_bounded_per_set_poll)
{
    self_waker k = {{self_wake_poll, self_wake_cancel}, 0};
    ap_future *kids[1] = {&k.base};
    ap_fanout_child recs[1];
    ap_fanout s;
    EXPECT_EQ(ap_fanout_init(&s, recs, sizeof recs, &(ap_fanout_desc){.children = kids, .n = 1,
                                                            .limit = 1}),
                 AP_OK);
    flagwake fw = {0};
    ap_cx cx = {{flag_wake, &fw}, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_PENDING);
    EXPECT_EQ(k.polls, 2, "start poll + the ready-stack pass of the same set poll");
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_PENDING);
        EXPECT_EQ(k.polls, 3 + i, "one child poll per later set poll");
    }
    EXPECT_GE(fw.wakes, 6);
    ap_fanout_cancel(&s);
    EXPECT_EQ(ap_fanout_status(&s), AP_CANCELED);
}

/* ------------------------------------------------------------------ */
/* Caller memory comes with its size (issue #11) */

/* NULL, misaligned or too small records, and bad configuration (including a
 * NULL child or a child without poll, which tripped AP_ASSERT after *s was
 * half written) are AP_INVAL; neither the set's bytes nor the records'
 * change. */
Test(fanout, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { N = 2 };
    static _Alignas(AP_FANOUT_ALIGN) unsigned char rb[AP_FANOUT_BYTES(N) + 2 * AP_FANOUT_ALIGN];
    _Static_assert(AP_FANOUT_BYTES(N) == N * sizeof(ap_fanout_child), "constant expression");
    probe p[N];
    memset(p, 0, sizeof p);
    for (size_t i = 0; i < N; i++)
        p[i].base.poll = probe_poll;
    ap_future nopoll = {0};
    ap_future *kids[N] = {&p[0].base, &p[1].base};
    ap_future *kids_null[N] = {&p[0].base, NULL};
    ap_future *kids_nopoll[N] = {&p[0].base, &nopoll};
    const ap_fanout_desc good = {.children = kids, .n = N, .limit = 1};
    struct {
        void *recs;
        size_t bytes;
        const ap_fanout_desc *d;
        const char *what;
    } cases[] = {
        {NULL, sizeof rb, &good, "NULL records"},
        {rb + 1, sizeof rb - 1, &good, "misaligned by 1"},
        {rb + AP_FANOUT_ALIGN / 2, sizeof rb - AP_FANOUT_ALIGN / 2, &good, "misaligned by half"},
        {rb, AP_FANOUT_BYTES(N) - 1, &good, "one byte short"},
        {rb, 0, &good, "zero bytes"},
        {rb, sizeof rb, NULL, "NULL desc"},
        {rb, sizeof rb, &(ap_fanout_desc){.children = kids, .n = N, .limit = 0}, "limit 0"},
        {rb, sizeof rb, &(ap_fanout_desc){.children = kids, .n = N, .limit = 1,
                                          .policy = (ap_fanout_policy)7}, "policy out of range"},
        {rb, sizeof rb, &(ap_fanout_desc){.children = NULL, .n = N, .limit = 1}, "children NULL"},
        {rb, sizeof rb, &(ap_fanout_desc){.children = kids_null, .n = N, .limit = 1}, "a NULL child"},
        {rb, sizeof rb, &(ap_fanout_desc){.children = kids_nopoll, .n = N, .limit = 1},
         "a child without poll"},
        {rb, SIZE_MAX, &(ap_fanout_desc){.children = kids, .n = SIZE_MAX / 8, .limit = 1},
         "bytes overflow"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_fanout s;
        static unsigned char s_before[sizeof(ap_fanout)], rb_before[sizeof rb];
        memset(&s, 0x5A, sizeof s);
        memset(rb, 0xC3, sizeof rb);
        memcpy(s_before, &s, sizeof s);
        memcpy(rb_before, rb, sizeof rb);
        EXPECT_EQ(ap_fanout_init(&s, cases[i].recs, cases[i].bytes, cases[i].d), AP_INVAL, "%s",
                     cases[i].what);
        EXPECT(memcmp(s_before, &s, sizeof s) == 0, "%s: the set changed", cases[i].what);
        EXPECT(memcmp(rb_before, rb, sizeof rb) == 0, "%s: the records changed", cases[i].what);
    }
    /* exactly enough works, and the bytes past the n records are not touched */
    ap_fanout s;
    memset(rb, 0xC3, sizeof rb);
    EXPECT_EQ(ap_fanout_init(&s, (ap_fanout_child *)(void *)rb, AP_FANOUT_BYTES(N), &good), AP_OK);
    for (size_t i = 0; i < N; i++)
        p[i].fired = true;
    ap_cx cx = {AP_WAKER_NONE, 0, AP_DEADLINE_NONE};
    EXPECT_EQ(ap_fanout_poll(&s, &cx), AP_READY);
    EXPECT_EQ(ap_fanout_status(&s), AP_OK);
    for (size_t i = AP_FANOUT_BYTES(N); i < sizeof rb; i++)
        EXPECT_EQ(rb[i], 0xC3, "byte %zu past the records written", i);
    /* n = 0 needs no records */
    EXPECT_EQ(ap_fanout_init(&s, NULL, 0, &(ap_fanout_desc){.limit = 1}), AP_OK);
}


/* ---- stats (issue #14): exact counts over a known sequence ---- */

static void fo_stats_eq(const ap_fanout *s, uint64_t pending, uint64_t in_flight,
                        uint64_t completed, uint64_t failed, uint64_t canceled, const char *step)
{
    ap_fanout_stats st;
    ap_fanout_stats_get(s, &st);
    EXPECT(st.children == 6 && st.pending == pending && st.in_flight == in_flight &&
               st.completed == completed && st.failed == failed && st.canceled == canceled,
           "%s: children %ju pending %ju in_flight %ju completed %ju failed %ju canceled %ju",
           step, (uintmax_t)st.children, (uintmax_t)st.pending, (uintmax_t)st.in_flight,
           (uintmax_t)st.completed, (uintmax_t)st.failed, (uintmax_t)st.canceled);
    EXPECT_EQ(st.children, st.pending + st.in_flight + st.completed + st.canceled, "%s", step);
}

static void fire_index(rig *r, size_t index)
{
    size_t k = 0;
    while (k < r->arm.len && r->arm.v[k]->index != index)
        k++;
    fire_armed(r, k);
}

Test(fanout, stats_get_counts_exactly)
{
    rig r;
    rig_init(&r, 6, 2, AP_FANOUT_POLICY_ALL);
    r.p[1].result = AP_REJECTED;
    fo_stats_eq(&r.set, 6, 0, 0, 0, 0, "init: nothing started");
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    fo_stats_eq(&r.set, 4, 2, 0, 0, 0, "limit 2 started");
    fire_index(&r, 0);
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    fo_stats_eq(&r.set, 3, 2, 1, 0, 0, "one completed, the next started");
    fire_index(&r, 1);
    EXPECT_EQ(rig_poll(&r), AP_PENDING);
    fo_stats_eq(&r.set, 2, 2, 2, 1, 0, "one failed (ALL goes on)");
    ap_fanout_cancel(&r.set);
    fo_stats_eq(&r.set, 0, 0, 2, 1, 4, "cancel: 2 in flight + 2 never started");
    EXPECT_EQ(rig_poll(&r), AP_READY);
    rig_fini(&r);
}
