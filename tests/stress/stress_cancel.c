/*
 * tests/stress/stress_cancel.c -- cancellation trees, trackers and the
 * two-phase shutdown under ThreadSanitizer
 *
 * tree: a root R, M shared mid tokens under it (alive all round), and
 *   workers that keep making tokens under a random mid or one of their own
 *   tokens, cancel random mids or their own tokens, and fini their tokens
 *   (a fini moves the children up); a canceller cancels random mids and at
 *   last R, publishing "cancel(x) returned" with a release store; a waiter
 *   blocks on each mid's cancel future in turn (lost wake: the watchdog).
 *   Identity accounting: every token gets one callback (ctx: its own
 *   record); a callback that runs twice fails at once; at the token's fini
 *   ap_cancel_off must say AP_CANCELED iff it ran, and fired + removed ==
 *   registered in the end. The theorem: a worker that sees (acquire) that
 *   cancel(m) returned finds every token it holds below m cancelled, and a
 *   token made after that is born cancelled.
 * tracker: the main thread adds tasks and hands them to workers, closes at
 *   a random point while tasks run, and waits: the wait completes only with
 *   every task done, after each task's plain write (TSan checks the edge).
 * shutdown: workers loop on a child token until it is cancelled;
 *   ap_shutdown with a random grace must force (cancel the root) and then
 *   complete AP_OK once every worker left; with workers that finish by
 *   themselves and a long grace it completes unforced.
 */
#include "stress.h"

#define MAXW 6
#define MIDS 4
#define OWN 24 /* tokens a worker may hold at once */

typedef struct tok_rec {
    ap_cancel t;
    ap_cancel_cb cb;
    _Atomic int fired;
    int mid; /* the mid it sits below */
    bool live;
} tok_rec;

typedef struct tree_run {
    ap_cancel root, mid[MIDS];
    _Atomic int mid_done[MIDS + 1]; /* cancel(mid[i]) returned; [MIDS]: root */
    _Atomic int stop;
    _Atomic unsigned long registered, fired, removed, made, made_live, born_cancelled, checked;
} tree_run;

typedef struct tree_worker {
    tree_run *r;
    pthread_t thread;
    stress_rng rng;
    tok_rec own[OWN];
} tree_worker;

static tree_run *cb_run; /* for the callback's global tally (one run at a time) */

static void tok_fired(void *ctx)
{
    tok_rec *k = ctx;
    CHECK(atomic_fetch_add_explicit(&k->fired, 1, memory_order_relaxed) == 0,
          "a callback ran twice");
    STRESS_ADD(&cb_run->fired, 1);
}

static bool mid_gone(tree_run *r, int m)
{
    /* acquire: "after cancel(m) returned" is happens-after its release */
    return atomic_load_explicit(&r->mid_done[m], memory_order_acquire) ||
           atomic_load_explicit(&r->mid_done[MIDS], memory_order_acquire);
}

/* every mid cancelled (workers cancel mids too): nothing live can grow */
static bool mid_all_gone(tree_run *r)
{
    for (int m = 0; m < MIDS; m++)
        if (!ap_cancel_is_cancelled(&r->mid[m]))
            return false;
    return true;
}

static void tok_fini(tree_run *r, tok_rec *k)
{
    ap_status st = ap_cancel_off(&k->t, &k->cb);
    int f = atomic_load_explicit(&k->fired, memory_order_relaxed);
    if (st == AP_OK) {
        CHECK(f == 0, "off said AP_OK for a callback that ran");
        STRESS_ADD(&r->removed, 1);
    } else {
        CHECK(st == AP_CANCELED && f == 1, "off %d, ran %d times", st, f);
    }
    ap_cancel_fini(&k->t);
    k->live = false;
}

static void *tree_worker_main(void *arg)
{
    tree_worker *w = arg;
    tree_run *r = w->r;
    while (!STRESS_LOAD(&r->stop)) {
        uint32_t op = stress_below(&w->rng, 16);
        tok_rec *k = &w->own[stress_below(&w->rng, OWN)];
        if (!k->live && op < 8) { /* make one: under a mid or an own token */
            tok_rec *p = &w->own[stress_below(&w->rng, OWN)];
            ap_cancel *parent;
            if (p != k && p->live && (op & 1)) {
                parent = &p->t;
                k->mid = p->mid;
            } else {
                k->mid = (int)stress_below(&w->rng, MIDS);
                parent = &r->mid[k->mid];
            }
            bool gone = mid_gone(r, k->mid);
            ap_cancel_init_child(&k->t, parent);
            if (gone)
                CHECK(ap_cancel_is_cancelled(&k->t), "a child made after the cancel was born live");
            atomic_init(&k->fired, 0);
            ap_cancel_on(&k->t, &k->cb, tok_fired, k);
            STRESS_ADD(&r->registered, 1);
            STRESS_ADD(&r->made, 1);
            if (ap_cancel_is_cancelled(&k->t))
                STRESS_ADD(&r->born_cancelled, 1);
            else
                STRESS_ADD(&r->made_live, 1);
            k->live = true;
        } else if (k->live && op < 11) {
            tok_fini(r, k);
        } else if (k->live && op == 11) {
            ap_cancel_cancel(&k->t);
            CHECK(ap_cancel_is_cancelled(&k->t), "cancelled");
        } else if (op == 12) {
            if (stress_below(&w->rng, 16) == 0) /* rarely: a mid's subtree must grow */
                ap_cancel_cancel(&r->mid[stress_below(&w->rng, MIDS)]);
        } else {
            /* the theorem: below a mid whose cancel returned, all cancelled */
            for (int i = 0; i < OWN; i++) {
                if (w->own[i].live && mid_gone(r, w->own[i].mid)) {
                    CHECK(ap_cancel_is_cancelled(&w->own[i].t),
                          "a token below mid %d is live after cancel(mid) returned", w->own[i].mid);
                    STRESS_ADD(&r->checked, 1);
                }
            }
        }
        if ((stress_rand(&w->rng) & 15) == 0)
            stress_jitter(&w->rng);
    }
    for (int i = 0; i < OWN; i++)
        if (w->own[i].live) {
            CHECK(ap_cancel_is_cancelled(&w->own[i].t), "live after the root's cancel");
            tok_fini(r, &w->own[i]);
        }
    return NULL;
}

static void *tree_waiter_main(void *arg)
{
    tree_run *r = arg;
    for (int i = 0; i < MIDS; i++) {
        ap_status st = ap_cancel_wait(&r->mid[i], AP_DEADLINE_NONE);
        CHECK(st == AP_OK, "wait: %d", st);
        CHECK(ap_cancel_is_cancelled(&r->mid[i]), "woken before the cancel");
    }
    return NULL;
}

static void tree_scenario(unsigned n, unsigned rounds)
{
    if (!stress_begin("cancel tree %u workers, %u rounds", n, rounds))
        return;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(99), n);
    unsigned long made = 0, born = 0, checked = 0;
    for (unsigned k = 0; k < rounds; k++) {
        tree_run *r = calloc(1, sizeof *r);
        tree_worker *w = calloc(n, sizeof *w);
        cb_run = r;
        ap_cancel_init(&r->root);
        for (int i = 0; i < MIDS; i++)
            ap_cancel_init_child(&r->mid[i], &r->root);
        pthread_t waiter;
        stress_spawn(&waiter, tree_waiter_main, r);
        for (unsigned i = 0; i < n; i++) {
            w[i].r = r;
            stress_rng_init(&w[i].rng, stress_thread_seed(i), k);
            stress_spawn(&w[i].thread, tree_worker_main, &w[i]);
        }
        /* the canceller: random mids, then the root */
        for (int c = 0; c < MIDS; c++) {
            /* let the tree grow first: a cancel finds live subtrees to walk */
            unsigned long want = STRESS_LOAD(&r->made_live) + 20 + stress_below(&rng, 100);
            while (STRESS_LOAD(&r->made_live) < want && !mid_all_gone(r))
                stress_jitter(&rng);
            int m = (int)stress_below(&rng, MIDS);
            ap_cancel_cancel(&r->mid[m]);
            atomic_store_explicit(&r->mid_done[m], 1, memory_order_release);
        }
        for (uint32_t j = stress_below(&rng, 200); j; j--)
            stress_jitter(&rng);
        ap_cancel_cancel(&r->root);
        atomic_store_explicit(&r->mid_done[MIDS], 1, memory_order_release);
        for (int i = 0; i < MIDS; i++)
            CHECK(ap_cancel_is_cancelled(&r->mid[i]), "mid %d live after the root's cancel", i);
        for (uint32_t j = stress_below(&rng, 8); j; j--)
            stress_jitter(&rng); /* workers keep making (born-cancelled) tokens */
        STRESS_STORE(&r->stop, 1);
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
        stress_join(waiter);
        CHECK(STRESS_LOAD(&r->fired) + STRESS_LOAD(&r->removed) == STRESS_LOAD(&r->registered),
              "callbacks: %lu fired + %lu removed != %lu registered", STRESS_LOAD(&r->fired),
              STRESS_LOAD(&r->removed), STRESS_LOAD(&r->registered));
        for (int i = 0; i < MIDS; i++) {
            CHECK(r->mid[i].child == NULL, "a cancelled mid still has children");
            ap_cancel_fini(&r->mid[i]);
        }
        ap_cancel_fini(&r->root);
        made += STRESS_LOAD(&r->made);
        born += STRESS_LOAD(&r->born_cancelled);
        checked += STRESS_LOAD(&r->checked);
        free(w);
        free(r);
    }
    stress_end("%lu tokens (%lu born cancelled), %lu theorem checks", made, born, checked);
}

/* ---- two cancels of one long chain, and a child made at its end ---- */

#define CHAIN 48

typedef struct chain_run {
    ap_cancel c[CHAIN], extra;
    _Atomic int go, done;
} chain_run;

static void *chain_canceller(void *arg)
{
    chain_run *r = arg;
    while (!STRESS_LOAD(&r->go))
        sched_yield();
    ap_cancel_cancel(&r->c[0]); /* the second one may find the first walking */
    for (int i = 0; i < CHAIN; i++)
        CHECK(ap_cancel_is_cancelled(&r->c[i]), "token %d of the chain live after cancel returned", i);
    atomic_fetch_add_explicit(&r->done, 1, memory_order_release);
    return NULL;
}

static void chain_scenario(unsigned rounds)
{
    if (!stress_begin("cancel chain of %d, 2 cancellers + a child, %u rounds", CHAIN, rounds))
        return;
    unsigned born = 0;
    for (unsigned k = 0; k < rounds; k++) {
        chain_run *r = calloc(1, sizeof *r);
        ap_cancel_init(&r->c[0]);
        for (int i = 1; i < CHAIN; i++)
            ap_cancel_init_child(&r->c[i], &r->c[i - 1]);
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            stress_spawn(&th[i], chain_canceller, r);
        STRESS_STORE(&r->go, 1);
        for (unsigned j = k % 7; j; j--)
            sched_yield();
        bool gone = atomic_load_explicit(&r->done, memory_order_acquire) != 0;
        ap_cancel_init_child(&r->extra, &r->c[CHAIN - 1]);
        if (gone)
            CHECK(ap_cancel_is_cancelled(&r->extra), "born live under a cancelled chain");
        born += ap_cancel_is_cancelled(&r->extra);
        for (int i = 0; i < 2; i++)
            stress_join(th[i]);
        CHECK(ap_cancel_is_cancelled(&r->extra), "the child made during the cancel escaped it");
        ap_cancel_fini(&r->extra);
        for (int i = CHAIN; i-- > 0;) {
            CHECK(r->c[i].child == NULL, "a cancelled token still has children");
            ap_cancel_fini(&r->c[i]);
        }
        free(r);
    }
    stress_end("%u of %u children born cancelled", born, rounds);
}

/* ---- tracker ---- */

typedef struct trk_run {
    ap_tracker t;
    _Atomic unsigned long assigned[MAXW], finished;
    _Atomic int stop;
    unsigned long work[MAXW]; /* plain: written by worker i per task */
} trk_run;

typedef struct trk_worker {
    trk_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} trk_worker;

static void *trk_worker_main(void *arg)
{
    trk_worker *w = arg;
    trk_run *r = w->r;
    unsigned long doneby = 0;
    for (;;) {
        if (doneby < STRESS_LOAD(&r->assigned[w->id])) {
            r->work[w->id]++; /* plain: ordered before the wait by done */
            if ((stress_rand(&w->rng) & 7) == 0)
                stress_jitter(&w->rng);
            doneby++;
            STRESS_ADD(&r->finished, 1);
            ap_tracker_done(&r->t);
        } else if (STRESS_LOAD(&r->stop)) {
            return NULL;
        } else {
            sched_yield();
        }
    }
}

static void trk_scenario(unsigned n, unsigned rounds)
{
    if (!stress_begin("tracker %u workers, %u rounds", n, rounds))
        return;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(98), n);
    unsigned long tasks = 0;
    for (unsigned k = 0; k < rounds; k++) {
        trk_run *r = calloc(1, sizeof *r);
        trk_worker w[MAXW];
        ap_tracker_init(&r->t);
        for (unsigned i = 0; i < n; i++) {
            w[i].r = r;
            w[i].id = i;
            stress_rng_init(&w[i].rng, stress_thread_seed(i), k);
            stress_spawn(&w[i].thread, trk_worker_main, &w[i]);
        }
        unsigned long want = 1 + stress_below(&rng, 64), total = 0;
        for (unsigned long j = 0; j < want; j++) {
            ap_tracker_add(&r->t);
            STRESS_ADD(&r->assigned[stress_below(&rng, n)], 1);
            total++;
            if ((stress_rand(&rng) & 3) == 0)
                stress_jitter(&rng);
        }
        ap_tracker_close(&r->t); /* tasks may still be running */
        ap_status st = ap_tracker_wait(&r->t, AP_DEADLINE_NONE);
        CHECK(st == AP_OK, "wait: %d", st);
        CHECK(STRESS_LOAD(&r->finished) == total, "the wait completed with %lu of %lu done",
              STRESS_LOAD(&r->finished), total);
        CHECK(ap_tracker_len(&r->t) == 0, "len after the wait");
        unsigned long sum = 0;
        for (unsigned i = 0; i < n; i++)
            sum += r->work[i]; /* plain reads: need the done -> wait edge */
        CHECK(sum == total, "work %lu != %lu tasks", sum, total);
        STRESS_STORE(&r->stop, 1);
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
        ap_tracker_fini(&r->t);
        tasks += total;
        free(r);
    }
    stress_end("%lu tasks", tasks);
}

/* ---- two-phase shutdown ---- */

typedef struct sd_run {
    ap_cancel root;
    ap_tracker t;
    unsigned self_stop; /* 0: run until cancelled; else stop after that many turns */
    _Atomic int inside;
} sd_run;

typedef struct sd_worker {
    sd_run *r;
    pthread_t thread;
    stress_rng rng;
} sd_worker;

static void *sd_worker_main(void *arg)
{
    sd_worker *w = arg;
    sd_run *r = w->r;
    ap_cancel mine;
    ap_cancel_init_child(&mine, &r->root);
    for (unsigned turn = 0; !ap_cancel_is_cancelled(&mine); turn++) {
        if (r->self_stop && turn >= r->self_stop)
            break;
        stress_jitter(&w->rng);
    }
    ap_cancel_fini(&mine);
    STRESS_ADD(&r->inside, -1);
    ap_tracker_done(&r->t);
    return NULL;
}

static void sd_scenario(unsigned n, unsigned rounds, bool self_stop)
{
    if (!stress_begin("shutdown %u workers, %u rounds, %s", n, rounds,
                      self_stop ? "workers finish by themselves" : "workers need the cancel"))
        return;
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(97), n);
    unsigned forced = 0;
    for (unsigned k = 0; k < rounds; k++) {
        sd_run *r = calloc(1, sizeof *r);
        sd_worker w[MAXW];
        ap_cancel_init(&r->root);
        ap_tracker_init(&r->t);
        r->self_stop = self_stop ? 1 + stress_below(&rng, 8) : 0;
        for (unsigned i = 0; i < n; i++) {
            w[i].r = r;
            stress_rng_init(&w[i].rng, stress_thread_seed(i), k);
            ap_tracker_add(&r->t);
            STRESS_ADD(&r->inside, 1);
            stress_spawn(&w[i].thread, sd_worker_main, &w[i]);
        }
        uint64_t now = ap_now_ns();
        uint64_t grace = self_stop ? 30 * AP_NS_PER_SEC : stress_below(&rng, 200) * AP_NS_PER_US;
        ap_shutdown s;
        CHECK(ap_shutdown_init(&s, NULL, &r->t, &r->root, now + grace, now + 60 * AP_NS_PER_SEC) ==
                  AP_OK, "init");
        ap_block_on(&s.base);
        CHECK(ap_shutdown_status(&s) == AP_OK, "shutdown: %d", ap_shutdown_status(&s));
        CHECK(STRESS_LOAD(&r->inside) == 0, "completed with %d workers inside",
              STRESS_LOAD(&r->inside));
        if (self_stop)
            CHECK(!ap_shutdown_forced(&s), "forced though everything drained in time");
        else
            CHECK(ap_shutdown_forced(&s) && ap_cancel_is_cancelled(&r->root),
                  "workers that need the cancel drained without it");
        forced += ap_shutdown_forced(&s);
        for (unsigned i = 0; i < n; i++)
            stress_join(w[i].thread);
        ap_tracker_fini(&r->t);
        ap_cancel_fini(&r->root);
        free(r);
    }
    stress_end("%u of %u forced", forced, rounds);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_cancel");
    tree_scenario(2, (unsigned)stress_iters(150, 10));
    tree_scenario(4, (unsigned)stress_iters(100, 10));
    chain_scenario((unsigned)stress_iters(400, 40));
    trk_scenario(2, (unsigned)stress_iters(300, 20));
    trk_scenario(4, (unsigned)stress_iters(200, 20));
    sd_scenario(3, (unsigned)stress_iters(100, 10), false);
    sd_scenario(3, (unsigned)stress_iters(50, 5), true);
    return stress_finish();
}
