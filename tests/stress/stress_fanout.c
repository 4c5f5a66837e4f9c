/*
 * tests/stress/stress_fanout.c -- ThreadSanitizer stress of ap_fanout:
 * child wakers firing from 2-4 threads while the set is polled
 *
 * Children are probe futures built on the library's own ap_waitlist: a
 * probe is READY once its atomic `fired` flag is set; a firer thread sets
 * it (seq_cst) and wakes the probe's waitlist, and now and then wakes a
 * random probe without firing it (a spurious wake) or wakes one twice.
 * Firer threads each own every T-th child and fire it once it is in
 * flight (has registered its waker), so wakes race with the set's polls,
 * with child starts, completions and cancels; once the set is done they
 * fire the rest at once, racing with its teardown.
 * Scenarios:
 *   block_on  T firers x limit L, ap_block_on drives the set, policy ALL
 *   first     one child fails: FIRST cancels the siblings in flight; the
 *             rest never start (also with a result of AP_NOT_READY, recorded
 *             as AP_TIMEDOUT: the set must still finish)
 *   all_again ALL with one result of AP_NOT_READY: the set finishes, AP_TIMEDOUT
 *   swap      a hand-driven loop that alternates between two wakers at
 *             every poll: an old waker must never be called after the poll
 *             that replaced it returned (and no wake is lost across a swap);
 *             its flags are atomics, so the happens-before edge from an old
 *             waker's call to that poll's return is checked apart, in
 *             stress_fanout_waker.c
 *   cancel    the set is cancelled midway while the firers keep going
 *   mpmc      mpmc pop futures as children, fed by producer threads
 * Checked: every started child finishes exactly once (READY once, or
 * cancelled once), none is polled after it finished, never-started ones are
 * never polled, at most L in flight, the completion order is a
 * permutation. After the set is done the test overwrites the set and the
 * records while the firers still run: if any child waker touched them
 * afterwards, TSan reports the race (and the garbage would crash it).
 */
#include "stress.h"

typedef struct sprobe {
    ap_future base;
    ap_waitlist wl;
    ap_waiter w;
    _Atomic uint32_t fired;
    /* poller only */
    int polls, readies, cancels, after_done;
    bool done;
    bool fail;
} sprobe;

typedef struct srun {
    size_t n, limit;
    unsigned firers;
    sprobe *p;
    ap_future **kids;
    ap_fanout_child *recs;
    size_t *order;
    ap_fanout set;
    size_t in_flight, high; /* poller only */
    _Atomic size_t fired_count;
    _Atomic uint32_t stop; /* the set is done: fire without waiting */
} srun;

static srun *g_run; /* for the poll hook: the poller thread only */
/* what the failing child's result callback answers (poller thread only);
 * AP_NOT_READY is recorded as AP_TIMEDOUT and must not leave the set pending */
static ap_status g_fail_result = AP_REJECTED;

static ap_status fail_recorded(void)
{
    return g_fail_result == AP_NOT_READY ? AP_TIMEDOUT : g_fail_result;
}

static ap_poll sprobe_poll(ap_future *f, ap_cx *cx)
{
    sprobe *p = (sprobe *)(void *)f;
    if (p->done)
        p->after_done++;
    if (p->polls++ == 0 && g_run) {
        if (++g_run->in_flight > g_run->high)
            g_run->high = g_run->in_flight;
    }
    bool ready = AP_ATOMIC_LOAD(&p->fired, memory_order_seq_cst) != 0;
    if (!ready) {
        ap_waitlist_register(&p->wl, &p->w, cx->waker);
        AP_TEST_YIELD();
        ready = AP_ATOMIC_LOAD(&p->fired, memory_order_seq_cst) != 0;
    }
    if (!ready)
        return AP_PENDING;
    (void)ap_waitlist_cancel(&p->wl, &p->w); /* waits out a wake in progress */
    p->readies++;
    p->done = true;
    if (g_run)
        g_run->in_flight--;
    return AP_READY;
}

static void sprobe_cancel(ap_future *f)
{
    sprobe *p = (sprobe *)(void *)f;
    (void)ap_waitlist_cancel(&p->wl, &p->w);
    p->cancels++;
    p->done = true;
    if (g_run)
        g_run->in_flight--;
}

static ap_status sprobe_result(void *ctx, size_t index, ap_future *f)
{
    (void)ctx;
    (void)index;
    return ((sprobe *)(void *)f)->fail ? g_fail_result : AP_OK;
}

/* firer side */
static void sprobe_fire(sprobe *p)
{
    AP_ATOMIC_STORE(&p->fired, 1u, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&p->wl);
}

typedef struct firer {
    srun *r;
    unsigned id;
    pthread_t th;
    stress_rng rng;
} firer;

static void *firer_main(void *arg)
{
    firer *f = arg;
    srun *r = f->r;
    /* Own children in input order (the order the set starts them), each
     * fired once it has registered its waker, i.e. while it is in flight,
     * so wakes race with the set's polls. Input order cannot deadlock: the
     * earliest unfired child is the next one of its firer, and it starts
     * once everything before it has finished. Once the driver says the set
     * is done (`stop`), the rest are fired at once: those wakes must not
     * reach the set any more. */
    for (size_t i = f->id; i < r->n; i += r->firers) {
        sprobe *p = &r->p[i];
        unsigned fails = 0;
        while (!ap_waitlist_has_waiters(&p->wl) && !STRESS_LOAD(&r->stop))
            stress_backoff(&fails, &f->rng);
        sprobe_fire(p);
        STRESS_ADD(&r->fired_count, 1);
        uint32_t x = stress_below(&f->rng, 8);
        if (x == 0) /* spurious: a random child, maybe in flight */
            (void)ap_waitlist_wake_all(&r->p[stress_below(&f->rng, (uint32_t)r->n)].wl);
        else if (x == 1) /* twice */
            (void)ap_waitlist_wake_all(&p->wl);
        stress_jitter(&f->rng);
    }
    return NULL;
}

static void srun_init(srun *r, size_t n, size_t limit, unsigned firers,
                      ap_fanout_policy pol, size_t fail_at)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    r->limit = limit;
    r->firers = firers;
    r->p = calloc(n, sizeof *r->p);
    r->kids = calloc(n, sizeof *r->kids);
    r->recs = calloc(n, sizeof *r->recs);
    r->order = calloc(n, sizeof *r->order);
    CHECK(r->p && r->kids && r->recs && r->order, "oom");
    for (size_t i = 0; i < n; i++) {
        r->p[i].base.poll = sprobe_poll;
        r->p[i].base.cancel = sprobe_cancel;
        ap_waitlist_init(&r->p[i].wl);
        ap_waiter_init(&r->p[i].w);
        AP_ATOMIC_INIT(&r->p[i].fired, 0u);
        r->p[i].fail = i == fail_at;
        r->kids[i] = &r->p[i].base;
    }
    ap_fanout_desc d = {.children = r->kids, .n = n, .limit = limit, .policy = pol,
                        .result = sprobe_result, .order = r->order};
    CHECK(ap_fanout_init(&r->set, r->recs, n * sizeof *r->recs, &d) == AP_OK, "init");
    g_run = r;
}

static void srun_start(srun *r, firer *fs)
{
    for (unsigned t = 0; t < r->firers; t++) {
        fs[t].r = r;
        fs[t].id = t;
        stress_rng_init(&fs[t].rng, stress_thread_seed(t), 77);
        stress_spawn(&fs[t].th, firer_main, &fs[t]);
    }
}

/* After the set is done: poison it while the firers run, then join and
 * check every child. */
static void srun_finish(srun *r, firer *fs, bool all_done)
{
    size_t completed = ap_fanout_completed(&r->set);
    size_t canceled = ap_fanout_canceled(&r->set);
    ap_status st = ap_fanout_status(&r->set);
    size_t *order = r->order;
    char *seen = calloc(r->n, 1);
    for (size_t k = 0; k < completed; k++) {
        CHECK(order[k] < r->n && !seen[order[k]], "order not a permutation at %zu", k);
        seen[order[k]] = 1;
    }
    STRESS_STORE(&r->stop, 1u);
    ap_status *child = calloc(r->n, sizeof *child);
    for (size_t i = 0; i < r->n; i++)
        child[i] = ap_fanout_child_status(&r->set, i);
    memset(&r->set, 0xA5, sizeof r->set);
    memset(r->recs, 0xA5, r->n * sizeof *r->recs);
    for (unsigned t = 0; t < r->firers; t++)
        stress_join(fs[t].th);
    g_run = NULL;
    CHECK(r->high <= r->limit, "in flight %zu > limit %zu", r->high, r->limit);
    CHECK(r->in_flight == 0, "%zu still in flight", r->in_flight);
    size_t readies = 0, cancels = 0, never = 0;
    for (size_t i = 0; i < r->n; i++) {
        sprobe *p = &r->p[i];
        CHECK(p->after_done == 0, "child %zu polled after it finished", i);
        CHECK(p->readies + p->cancels <= 1, "child %zu finished %d+%d times", i,
              p->readies, p->cancels);
        CHECK(p->polls > 0 || (p->readies == 0 && p->cancels == 0), "child %zu", i);
        CHECK(p->polls == 0 || p->readies + p->cancels == 1, "child %zu leaked", i);
        CHECK(!ap_waitlist_has_waiters(&p->wl), "child %zu left a waiter", i);
        CHECK(p->readies == (int)seen[i], "child %zu: order vs readies", i);
        if (p->readies)
            CHECK(child[i] == (p->fail ? fail_recorded() : AP_OK), "child %zu status %d", i,
                  (int)child[i]);
        else
            CHECK(child[i] == AP_CANCELED, "child %zu status %d", i, (int)child[i]);
        readies += (size_t)p->readies;
        cancels += (size_t)p->cancels;
        never += p->polls == 0;
    }
    CHECK(readies == completed, "readies %zu completed %zu", readies, completed);
    CHECK(cancels + never == canceled, "canceled %zu+%zu vs %zu", cancels, never, canceled);
    CHECK(st != AP_NOT_READY, "a finished set says AP_NOT_READY");
    if (all_done)
        CHECK(st == AP_OK && completed == r->n, "status %d completed %zu", (int)st, completed);
    free(seen);
    free(child);
    free(r->p);
    free(r->kids);
    free(r->recs);
    free(r->order);
}

static void scenario_block_on(unsigned firers, size_t limit, size_t n)
{
    if (!stress_begin("block_on T=%u L=%zu n=%zu", firers, limit, n))
        return;
    srun r;
    firer fs[4];
    srun_init(&r, n, limit, firers, AP_FANOUT_POLICY_ALL, SIZE_MAX);
    srun_start(&r, fs);
    ap_block_on(&r.set.base);
    srun_finish(&r, fs, true);
    stress_end("high %zu", limit < n ? limit : n);
}

static void scenario_first(unsigned firers, size_t limit, size_t n, stress_rng *rng,
                           ap_status fail_result)
{
    if (!stress_begin("first T=%u L=%zu n=%zu fail=%s", firers, limit, n,
                      ap_status_str(fail_result)))
        return;
    g_fail_result = fail_result;
    srun r;
    firer fs[4];
    size_t fail_at = stress_below(rng, (uint32_t)n);
    srun_init(&r, n, limit, firers, AP_FANOUT_POLICY_FIRST, fail_at);
    srun_start(&r, fs);
    ap_block_on(&r.set.base);
    CHECK(ap_fanout_status(&r.set) == fail_recorded(), "status %d",
          (int)ap_fanout_status(&r.set));
    CHECK(ap_fanout_failed(&r.set) == 1, "failed %zu", ap_fanout_failed(&r.set));
    size_t done = ap_fanout_completed(&r.set), canc = ap_fanout_canceled(&r.set);
    CHECK(done + canc == n, "completed %zu + canceled %zu != %zu", done, canc, n);
    srun_finish(&r, fs, false);
    g_fail_result = AP_REJECTED;
    stress_end("failed child %zu: %zu completed, %zu canceled", fail_at, done, canc);
}

/* ALL with one child answering AP_NOT_READY: every child runs, the set ends
 * (it used to stay pending forever) with AP_TIMEDOUT. */
static void scenario_all_again(unsigned firers, size_t limit, size_t n, stress_rng *rng)
{
    if (!stress_begin("all_again T=%u L=%zu n=%zu", firers, limit, n))
        return;
    srun r;
    firer fs[4];
    size_t fail_at = stress_below(rng, (uint32_t)n);
    g_fail_result = AP_NOT_READY;
    srun_init(&r, n, limit, firers, AP_FANOUT_POLICY_ALL, fail_at);
    srun_start(&r, fs);
    ap_block_on(&r.set.base);
    CHECK(ap_fanout_status(&r.set) == AP_TIMEDOUT, "status %d",
          (int)ap_fanout_status(&r.set));
    CHECK(ap_fanout_failed(&r.set) == 1 && ap_fanout_completed(&r.set) == n, "failed %zu",
          ap_fanout_failed(&r.set));
    srun_finish(&r, fs, false);
    g_fail_result = AP_REJECTED;
    stress_end("failed child %zu", fail_at);
}

/* swap: two wakers, alternated at every poll */
typedef struct swaker {
    _Atomic uint32_t flag;
    _Atomic uint32_t retired;
    _Atomic size_t calls;
} swaker;

static void swaker_wake(void *ctx)
{
    swaker *w = ctx;
    CHECK(STRESS_LOAD(&w->retired) == 0, "a replaced waker was called");
    STRESS_ADD(&w->calls, 1);
    /* release: the driver's acquire exchange; test-side only, the set's
     * state needs none of it (its own take is acquire). */
    atomic_store_explicit(&w->flag, 1u, memory_order_release);
}

static void scenario_swap(unsigned firers, size_t limit, size_t n, bool cancel_midway)
{
    if (!stress_begin("%s T=%u L=%zu n=%zu", cancel_midway ? "cancel" : "swap", firers,
                      limit, n))
        return;
    srun r;
    firer fs[4];
    swaker w[2];
    for (int i = 0; i < 2; i++) {
        atomic_init(&w[i].flag, 0u);
        atomic_init(&w[i].retired, 0u);
        atomic_init(&w[i].calls, 0u);
    }
    srun_init(&r, n, limit, firers, AP_FANOUT_POLICY_ALL, SIZE_MAX);
    srun_start(&r, fs);
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(99), 5);
    unsigned k = 0;
    size_t polls = 0;
    bool canceled = false;
    for (;;) {
        k ^= 1u;
        STRESS_STORE(&w[k].retired, 0u);
        atomic_store_explicit(&w[k].flag, 0u, memory_order_relaxed);
        ap_cx cx = {{swaker_wake, &w[k]}, 0, AP_DEADLINE_NONE};
        ap_poll res = ap_fanout_poll(&r.set, &cx);
        polls++;
        /* every call of the other waker has returned; none may start */
        STRESS_STORE(&w[k ^ 1u].retired, 1u);
        if (res == AP_READY)
            break;
        if (cancel_midway && ap_fanout_completed(&r.set) >= n / 2) {
            ap_fanout_cancel(&r.set);
            canceled = true;
            break;
        }
        unsigned fails = 0;
        while (atomic_exchange_explicit(&w[k].flag, 0u, memory_order_acquire) == 0)
            stress_backoff(&fails, &rng);
        stress_jitter(&rng);
    }
    STRESS_STORE(&w[k].retired, 1u); /* the set is done: no waker call at all */
    CHECK(!cancel_midway || canceled || ap_fanout_status(&r.set) == AP_OK, "status");
    srun_finish(&r, fs, !cancel_midway);
    stress_end("%zu polls, wakes %zu+%zu", polls, STRESS_LOAD(&w[0].calls),
               STRESS_LOAD(&w[1].calls));
}

/* mpmc pop children fed by producer threads */
typedef struct mprod {
    ap_mpmc *q;
    uint64_t from, count;
    pthread_t th;
} mprod;

static void *mprod_main(void *arg)
{
    mprod *m = arg;
    for (uint64_t i = 0; i < m->count; i++) {
        uint64_t v = m->from + i;
        CHECK(ap_mpmc_push_wait(m->q, &v, AP_DEADLINE_NONE) == AP_OK, "push");
    }
    return NULL;
}

static ap_status pop_result(void *ctx, size_t index, ap_future *f)
{
    (void)ctx;
    (void)index;
    return ap_mpmc_pop_status((ap_mpmc_pop_fut *)(void *)f);
}

static void scenario_mpmc(unsigned producers, size_t limit, size_t per)
{
    size_t n = producers * per;
    if (!stress_begin("mpmc P=%u L=%zu n=%zu", producers, limit, n))
        return;
    ap_mpmc *q;
    CHECK(ap_mpmc_create(&q, 16, sizeof(uint64_t), NULL) == AP_OK, "create");
    ap_mpmc_pop_fut *pops = calloc(n, sizeof *pops);
    uint64_t *out = calloc(n, sizeof *out);
    ap_future **kids = calloc(n, sizeof *kids);
    ap_fanout_child *recs = calloc(n, sizeof *recs);
    CHECK(pops && out && kids && recs, "oom");
    for (size_t i = 0; i < n; i++) {
        ap_mpmc_pop_fut_init(&pops[i], q, &out[i]);
        kids[i] = &pops[i].base;
    }
    ap_fanout s;
    ap_fanout_desc d = {.children = kids, .n = n, .limit = limit, .result = pop_result};
    CHECK(ap_fanout_init(&s, recs, n * sizeof *recs, &d) == AP_OK, "init");
    mprod m[4];
    for (unsigned t = 0; t < producers; t++) {
        m[t].q = q;
        m[t].from = (uint64_t)t * per;
        m[t].count = per;
        stress_spawn(&m[t].th, mprod_main, &m[t]);
    }
    ap_block_on(&s.base);
    for (unsigned t = 0; t < producers; t++)
        stress_join(m[t].th);
    CHECK(ap_fanout_status(&s) == AP_OK, "status %d", (int)ap_fanout_status(&s));
    char *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        CHECK(out[i] < n && !seen[out[i]], "item %" PRIu64 " lost or doubled", out[i]);
        seen[out[i]] = 1;
    }
    CHECK(!ap_waitlist_has_waiters(&q->not_empty), "waiter left");
    free(seen);
    free(pops);
    free(out);
    free(kids);
    free(recs);
    ap_mpmc_destroy(q);
    stress_end(" ");
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_fanout");
    size_t n = stress_iters(5000, 200);
    stress_rng rng;
    stress_rng_init(&rng, stress_g.seed, 1);
    static const size_t limits[] = {1, 8, 64};
    for (unsigned t = 2; t <= 4; t += 2)
        for (size_t li = 0; li < 3; li++)
            scenario_block_on(t, limits[li], n);
    for (unsigned i = 0; i < 3; i++)
        scenario_first(3, 8, n, &rng, AP_REJECTED);
    scenario_first(3, 8, n, &rng, AP_NOT_READY);
    scenario_all_again(3, 8, n, &rng);
    scenario_swap(3, 8, n, false);
    scenario_swap(2, 64, n, false);
    scenario_swap(3, 16, n, true);
    scenario_mpmc(3, 32, n / 3);
    return stress_finish();
}
