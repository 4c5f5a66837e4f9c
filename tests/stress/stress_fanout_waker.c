/*
 * tests/stress/stress_fanout_waker.c -- ThreadSanitizer test of one edge of
 * ap_fanout: a poll that replaces the set's waker returns only after every
 * call of the old waker that had started has returned, and that call
 * happens-before the poll's return (fanout.h GUARANTEES, "the set's
 * waker"; ORDERING, "Set waker").
 *
 * The edge is the acquire load in ap__fanout_set_waker's wait, which pairs
 * with the release decrement of calling[] after each waker call. It is the
 * only edge from the end of a waker call to the poll's return: the lock
 * and the ready stack order only what a waker thread did *before* it read
 * the waker. So this program makes sure nothing else supplies it:
 *   - the old waker's context has plain (non-atomic) fields that its call
 *     writes after it read the waker (it is still inside the call);
 *   - the driver reads and resets those plain fields right after the poll
 *     that replaced the waker returns, and reuses the context later;
 *   - the firer threads (which call the child wakers, and so the set's
 *     waker) get edges only *from* the driver (its release of `go`), never
 *     give one back: every test-side flag they raise is relaxed, and between
 *     a call and the driver's reset they do no release that it acquires.
 * With the acquire weakened to relaxed the driver's plain read races with
 * the call's plain write and TSan reports it in the first round; a wait
 * removed altogether also trips the relaxed `in_call` check below.
 *
 * One child per firer; a child never completes (its wakes are spurious,
 * which future.h allows) and is cancelled at the end. Per round the driver
 * alternates between two waker contexts and either waits for the current
 * waker to be called before the next poll (the firer then always calls the
 * waker that the next poll replaces) or polls again at once (the firer's
 * call races with the replacement and may read either waker).
 * Scenarios: wait/race mix with 1 and 2 firers.
 */
#include "stress.h"

#define FW_MAX_FIRERS 2

/* The set's waker context. Plain fields are what a driver would keep in
 * memory it reuses or frees once the waker is replaced. */
typedef struct fw_waker {
    _Atomic uint32_t flag;    /* relaxed: creates no edge */
    _Atomic uint32_t in_call; /* relaxed: calls in progress */
    _Atomic uint32_t retired; /* relaxed: replaced; must not be called */
    unsigned calls[FW_MAX_FIRERS]; /* plain: written inside the call */
    unsigned tail[FW_MAX_FIRERS];  /* plain: written last in the call */
} fw_waker;

static _Thread_local unsigned t_firer;      /* firer id, in the waker */
static _Thread_local stress_rng *t_rng;     /* the firer's rng */

static void fw_wake(void *ctx)
{
    fw_waker *w = ctx;
    atomic_fetch_add_explicit(&w->in_call, 1u, memory_order_relaxed);
    CHECK(STRESS_LOAD(&w->retired) == 0, "a replaced waker was called (firer %u)", t_firer);
    w->calls[t_firer]++; /* plain */
    STRESS_STORE(&w->flag, 1u);
    /* Stay in the call a while now and then, so the replacing poll finds
     * it in progress and has to wait. */
    uint32_t x = stress_below(t_rng, 8);
    if (x == 0)
        sched_yield();
    else if (x < 3)
        for (uint32_t i = stress_below(t_rng, 256); i; i--)
            AP_CPU_RELAX();
    w->tail[t_firer] = w->calls[t_firer]; /* plain, the call's last write */
    atomic_fetch_sub_explicit(&w->in_call, 1u, memory_order_relaxed);
}

/* A child that is always pending; it keeps the waker of its first poll
 * (a fanout child's waker never changes) for its firer. */
typedef struct fw_child {
    ap_future base;
    ap_waker waker; /* written at the first poll, before the firer starts */
    int polls, cancels; /* driver only */
} fw_child;

static ap_poll fw_child_poll(ap_future *f, ap_cx *cx)
{
    fw_child *c = (fw_child *)(void *)f;
    CHECK(c->cancels == 0, "child polled after cancel");
    if (c->polls++ == 0)
        c->waker = cx->waker;
    else
        CHECK(c->waker.wake == cx->waker.wake && c->waker.ctx == cx->waker.ctx,
              "a child's waker changed");
    return AP_PENDING;
}

static void fw_child_cancel(ap_future *f)
{
    ((fw_child *)(void *)f)->cancels++;
}

#define FW_STOP UINT64_MAX

typedef struct fw_firer {
    fw_child *child;
    _Atomic uint64_t *go;
    _Atomic uint64_t fires; /* relaxed */
    unsigned id;
    stress_rng rng;
    pthread_t th;
} fw_firer;

static void *fw_firer_main(void *arg)
{
    fw_firer *f = arg;
    t_firer = f->id;
    t_rng = &f->rng;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        unsigned fails = 0;
        /* acquire: the driver's edge to us (the child's waker, the reset
         * waker fields); we never give one back. */
        while ((g = atomic_load_explicit(f->go, memory_order_acquire)) == seen)
            stress_backoff(&fails, &f->rng);
        if (g == FW_STOP)
            return NULL;
        seen = g;
        stress_jitter(&f->rng);
        ap_waker_wake(f->child->waker); /* the child wake: may call the set's waker */
        STRESS_ADD(&f->fires, 1);
    }
}

static void fw_reset(fw_waker *w)
{
    STRESS_STORE(&w->flag, 0u);
    for (unsigned t = 0; t < FW_MAX_FIRERS; t++)
        w->calls[t] = w->tail[t] = 0;
}

static void scenario(unsigned firers, size_t rounds)
{
    if (!stress_begin("replace T=%u rounds=%zu", firers, rounds))
        return;
    fw_child kids[FW_MAX_FIRERS];
    ap_future *kidp[FW_MAX_FIRERS];
    ap_fanout_child recs[FW_MAX_FIRERS];
    fw_firer fs[FW_MAX_FIRERS];
    /* on the heap: clang's TSan skips accesses to stack objects it thinks
     * do not escape, which hid the race from it */
    fw_waker *w = calloc(2, sizeof *w);
    CHECK(w != NULL, "oom");
    _Atomic uint64_t go;
    atomic_init(&go, 0);
    for (unsigned i = 0; i < 2; i++) {
        atomic_init(&w[i].flag, 0u);
        atomic_init(&w[i].in_call, 0u);
        atomic_init(&w[i].retired, 0u);
        fw_reset(&w[i]);
    }
    for (unsigned t = 0; t < firers; t++) {
        memset(&kids[t], 0, sizeof kids[t]);
        kids[t].base.poll = fw_child_poll;
        kids[t].base.cancel = fw_child_cancel;
        kidp[t] = &kids[t].base;
    }
    ap_fanout set;
    ap_fanout_desc d = {.children = kidp, .n = firers, .limit = firers,
                        .policy = AP_FANOUT_POLICY_ALL};
    CHECK(ap_fanout_init(&set, recs, sizeof recs, &d) == AP_OK, "init");
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(100), 3);
    for (unsigned t = 0; t < firers; t++) {
        fs[t].child = &kids[t];
        fs[t].go = &go;
        atomic_init(&fs[t].fires, 0);
        fs[t].id = t;
        stress_rng_init(&fs[t].rng, stress_thread_seed(t), 11);
        stress_spawn(&fs[t].th, fw_firer_main, &fs[t]); /* they wait for go */
    }

    unsigned k = 0;
    uint64_t total_calls = 0, waited = 0, in_progress = 0;
    for (uint64_t r = 1; r <= rounds; r++) {
        k ^= 1u;
        fw_waker *cur = &w[k], *old = &w[k ^ 1u];
        STRESS_STORE(&cur->retired, 0u);
        ap_cx cx = {{fw_wake, cur}, 0, AP_DEADLINE_NONE};
        bool busy = STRESS_LOAD(&old->in_call) != 0; /* a hint, for the report */
        CHECK(ap_fanout_poll(&set, &cx) == AP_PENDING, "the set finished");
        /* The poll replaced `old`: every call of it has returned and
         * happens-before this point; none starts from now on. */
        STRESS_STORE(&old->retired, 1u);
        CHECK(STRESS_LOAD(&old->in_call) == 0, "round %" PRIu64 ": old waker still in a call",
              r);
        for (unsigned t = 0; t < firers; t++) {
            /* plain reads of what the old waker's calls wrote: a TSan race
             * unless those calls happen-before the poll's return */
            CHECK(old->tail[t] == old->calls[t], "round %" PRIu64 ": call of firer %u cut short",
                  r, t);
            total_calls += old->calls[t];
        }
        in_progress += busy;
        fw_reset(old); /* reuse: plain writes */
        if (r == 1)
            for (unsigned t = 0; t < firers; t++)
                CHECK(kids[t].polls == 1, "child %u not started", t);
        /* release: the firers read the children's wakers, and the reset
         * fields of the waker they may call next, after this. */
        atomic_store_explicit(&go, r, memory_order_release);
        if (stress_below(&rng, 2)) {
            /* wait until `cur` was called: the next poll replaces a waker
             * that has been (and may still be) in a call */
            unsigned fails = 0;
            while (STRESS_LOAD(&cur->flag) == 0)
                stress_backoff(&fails, &rng);
            waited++;
        } else {
            stress_jitter(&rng);
        }
    }
    atomic_store_explicit(&go, FW_STOP, memory_order_release);
    uint64_t fires = 0;
    for (unsigned t = 0; t < firers; t++) {
        stress_join(fs[t].th);
        fires += STRESS_LOAD(&fs[t].fires);
    }
    /* the last waker's calls (joined: no race) */
    for (unsigned t = 0; t < firers; t++)
        total_calls += w[k].calls[t];
    ap_fanout_cancel(&set);
    CHECK(ap_fanout_status(&set) == AP_CANCELED, "status %d", (int)ap_fanout_status(&set));
    for (unsigned t = 0; t < firers; t++) {
        CHECK(kids[t].cancels == 1, "child %u cancelled %d times", t, kids[t].cancels);
        CHECK(ap_fanout_child_status(&set, t) == AP_CANCELED, "child %u status", t);
    }
    CHECK(total_calls <= fires, "%" PRIu64 " set-waker calls for %" PRIu64 " child wakes",
          total_calls, fires);
    CHECK(total_calls >= waited, "%" PRIu64 " calls, %" PRIu64 " waited for", total_calls,
          waited);
    free(w);
    stress_end("%" PRIu64 " wakes, %" PRIu64 " set-waker calls, %" PRIu64
               " waited rounds, %" PRIu64 " replaced mid-call",
               fires, total_calls, waited, in_progress);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_fanout_waker");
    size_t rounds = stress_iters(20000, 200);
    scenario(1, rounds);
    scenario(2, rounds);
    return stress_finish();
}
