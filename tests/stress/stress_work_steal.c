/*
 * tests/stress/stress_work_steal.c -- ThreadSanitizer stress of the
 * Chase-Lev deque (ap_ws_try_push/try_pop/try_steal/steal_half)
 *
 * Scenarios (one owner, 2-4 thieves; tasks pushed in increasing order)
 *   small   the owner keeps the deque at 0-2 tasks (it pops down to a random
 *           0..2 after every push), so nearly every pop races the thieves
 *           for the last task: the shape that exposes a missing fence in
 *           take. Capacity 4 and 2; positions starting at 0 and just below
 *           SIZE_MAX (ap__ws_init_at), so they wrap mid-run.
 *   full    the owner pushes until AP_FULL and pops only now and then, so
 *           the deque stays full and pushes reuse slots thieves just
 *           freed. Capacity 1, 8 and 64.
 *   half    thieves use ap_ws_steal_half into their own deque and then pop
 *           (or lose to other thieves stealing from them) what they moved.
 * Checked: every task executed exactly once (a counter per task), none
 * invented; each task's payload (plain memory the owner wrote before the
 * push) is intact when it runs, and TSan checks that the push
 * happens-before the execution; a thief's steals return strictly
 * increasing tasks; the owner's pops between two pushes return strictly
 * decreasing tasks; AP_FULL never dropped a task. The stats
 * (ap_ws_stats_get) at the end equal what the threads saw: pushes == n,
 * full == the owner's AP_FULLs, pops == the owner's pops, steals == the
 * rest, steal_aborts == the thieves' AP_AGAINs (half: at least those,
 * steal_half swallows a later lost race); each thief's own deque:
 * pushes == pops + steals.
 */
#include "stress.h"

#define MAX_THIEVES 4

typedef struct task {
    uint64_t id;    /* plain memory: written by the owner before the push */
    uint64_t check; /* stress_check_word(id) */
} task;

typedef enum { MODE_SMALL, MODE_FULL, MODE_HALF } ws_mode;

typedef struct ws_run {
    ap_ws d;
    ap_ws own[MAX_THIEVES];
    ws_mode mode;
    unsigned thieves;
    size_t cap, n;
    task *tasks;
    _Atomic uint8_t *executed;
    _Atomic size_t count;
    _Atomic bool done; /* relaxed: the owner emptied its deque */
    _Atomic uint64_t lost_races, full;
    pthread_barrier_t start;
} ws_run;

typedef struct ws_thief {
    ws_run *r;
    unsigned id;
    uint64_t seed;
    pthread_t thread;
} ws_thief;

static void execute(ws_run *r, void *p, const char *who, unsigned id)
{
    task *t = (task *)p;
    CHECK(t >= r->tasks && t < r->tasks + r->n, "%s %u: invented task %p", who, id, p);
    size_t i = (size_t)(t - r->tasks);
    CHECK(t->id == i && t->check == stress_check_word(i),
          "%s %u: corrupt task %zu: id %" PRIu64 " check %#" PRIx64, who, id, i, t->id,
          t->check);
    uint8_t before = atomic_fetch_add_explicit(&r->executed[i], 1, memory_order_relaxed);
    CHECK(before == 0, "%s %u: task %zu executed twice", who, id, i);
    STRESS_ADD(&r->count, 1);
}

static size_t idx(ws_run *r, void *p)
{
    return (size_t)((task *)p - r->tasks);
}

static void *thief_main(void *arg)
{
    ws_thief *w = (ws_thief *)arg;
    ws_run *r = w->r;
    stress_rng rng;
    unsigned fails = 0;
    uint64_t lost = 0;
    size_t last = SIZE_MAX; /* highest task seen from the owner's deque */
    stress_rng_init(&rng, w->seed, w->id);
    pthread_barrier_wait(&r->start);
    for (;;) {
        bool done = STRESS_LOAD(&r->done);
        void *x;
        ap_status st;
        if (r->mode == MODE_HALF) {
            size_t moved = 0;
            ap_ws *mine = &r->own[w->id];
            st = ap_ws_steal_half(&r->d, mine, &moved);
            if (st == AP_OK) {
                CHECK(moved >= 1 && moved <= r->cap, "thief %u: moved %zu", w->id, moved);
                /* pop what we moved: newest first; another thief may steal
                 * some of it from our deque meanwhile */
                size_t prev = SIZE_MAX, hi = 0;
                while (ap_ws_try_pop(mine, &x) == AP_OK) {
                    size_t i = idx(r, x);
                    CHECK(prev == SIZE_MAX || i < prev,
                          "thief %u: batch not LIFO in its deque: %zu after %zu", w->id, i,
                          prev);
                    CHECK(last == SIZE_MAX || i > last,
                          "thief %u: steal_half went backwards: %zu after %zu", w->id, i,
                          last);
                    prev = i;
                    if (i > hi)
                        hi = i;
                    execute(r, x, "thief", w->id);
                    stress_jitter(&rng);
                }
                if (hi > 0 || prev != SIZE_MAX)
                    last = hi;
                fails = 0;
                continue;
            }
            /* help: steal from another thief's deque */
            unsigned other = stress_below(&rng, r->thieves);
            if (other != w->id && ap_ws_try_steal(&r->own[other], &x) == AP_OK) {
                execute(r, x, "thief", w->id);
                fails = 0;
                continue;
            }
        } else {
            st = ap_ws_try_steal(&r->d, &x);
            if (st == AP_OK) {
                size_t i = idx(r, x);
                CHECK(last == SIZE_MAX || i > last,
                      "thief %u: steals not FIFO: task %zu after %zu", w->id, i, last);
                last = i;
                execute(r, x, "thief", w->id);
                fails = 0;
                stress_jitter(&rng);
                continue;
            }
        }
        CHECK(st == AP_EMPTY || st == AP_AGAIN || st == AP_FULL, "thief %u: steal returned %s",
              w->id, ap_status_str(st));
        if (st == AP_AGAIN)
            lost++;
        if (st == AP_EMPTY && done) {
            /* our own deque may still hold tasks another thief left */
            bool left = false;
            for (unsigned k = 0; r->mode == MODE_HALF && k < r->thieves; k++)
                left |= ap_ws_len(&r->own[k]) != 0;
            if (!left)
                break;
        }
        stress_backoff(&fails, &rng);
    }
    STRESS_ADD(&r->lost_races, lost);
    return NULL;
}

static void ws_diag(void *arg)
{
    ws_run *r = (ws_run *)arg;
    fprintf(stderr, "    executed %zu of %zu tasks; done %d; deque len %zu top %#zx bottom %#zx\n",
            STRESS_LOAD(&r->count), r->n, (int)STRESS_LOAD(&r->done), ap_ws_len(&r->d),
            (size_t)atomic_load(&r->d.top), (size_t)atomic_load(&r->d.bottom));
}

static void owner_pop(ws_run *r, size_t *last_pop, uint64_t *pops)
{
    void *x;
    if (ap_ws_try_pop(&r->d, &x) == AP_OK) {
        ++*pops;
        size_t i = idx(r, x);
        CHECK(*last_pop == SIZE_MAX || i < *last_pop,
              "owner: pops not LIFO: task %zu after %zu", i, *last_pop);
        *last_pop = i;
        execute(r, x, "owner", 0);
    }
}

static void run_ws(ws_mode mode, unsigned thieves, size_t cap, bool wrap, size_t n)
{
    static const char *names[] = {"small", "full", "half"};
    if (!stress_begin("ws %s thieves=%u cap=%zu%s", names[mode], thieves, cap,
                      wrap ? " wrap" : ""))
        return;
    ws_run *r = (ws_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    void *buf = malloc(AP_WS_BYTES(cap));
    void *own_buf[MAX_THIEVES] = {0};
    r->tasks = (task *)calloc(n, sizeof *r->tasks);
    r->executed = (_Atomic uint8_t *)calloc(n, sizeof *r->executed);
    CHECK(buf && r->tasks && r->executed, "out of memory");
    r->mode = mode;
    r->thieves = thieves;
    r->cap = cap;
    r->n = n;
    CHECK(ap__ws_init_at(&r->d, buf, AP_WS_BYTES(cap), cap, wrap ? SIZE_MAX - n / 2 : 0) == AP_OK, "init");
    for (unsigned i = 0; i < thieves; i++) {
        own_buf[i] = malloc(AP_WS_BYTES(cap));
        CHECK(own_buf[i] && ap_ws_init(&r->own[i], own_buf[i], AP_WS_BYTES(cap), cap) == AP_OK, "init own");
    }
    pthread_barrier_init(&r->start, NULL, thieves + 1);
    stress_diag(ws_diag, r);
    ws_thief w[MAX_THIEVES];
    for (unsigned i = 0; i < thieves; i++) {
        w[i] = (ws_thief){r, i, stress_thread_seed(i), 0};
        stress_spawn(&w[i].thread, thief_main, &w[i]);
    }
    stress_rng rng;
    stress_rng_init(&rng, stress_thread_seed(100), 100);
    pthread_barrier_wait(&r->start);
    size_t last_pop = SIZE_MAX;
    unsigned fails = 0;
    uint64_t full = 0, pops = 0;
    for (size_t i = 0; i < n; i++) {
        r->tasks[i].id = i; /* plain writes, published by the push */
        r->tasks[i].check = stress_check_word(i);
        for (;;) {
            ap_status st = ap_ws_try_push(&r->d, &r->tasks[i]);
            if (st == AP_OK)
                break;
            CHECK(st == AP_FULL, "owner: push returned %s", ap_status_str(st));
            CHECK(ap_ws_len(&r->d) <= cap, "len above capacity");
            full++;
            /* the task stays with us; make room now and then */
            if (stress_below(&rng, 4) == 0)
                owner_pop(r, &last_pop, &pops);
            else
                stress_backoff(&fails, &rng);
        }
        fails = 0;
        last_pop = SIZE_MAX; /* LIFO is checked between two pushes */
        if (mode == MODE_SMALL) {
            size_t keep = stress_below(&rng, 3);
            while (ap_ws_len(&r->d) > keep) {
                size_t before = STRESS_LOAD(&r->count);
                owner_pop(r, &last_pop, &pops);
                (void)before;
            }
        } else if (mode == MODE_HALF && stress_below(&rng, 8) == 0) {
            owner_pop(r, &last_pop, &pops);
        }
        stress_jitter(&rng);
    }
    void *x;
    while (ap_ws_try_pop(&r->d, &x) == AP_OK) {
        size_t i = idx(r, x);
        CHECK(last_pop == SIZE_MAX || i < last_pop, "owner: drain not LIFO");
        last_pop = i;
        pops++;
        execute(r, x, "owner", 0);
    }
    STRESS_STORE(&r->done, true);
    for (unsigned i = 0; i < thieves; i++)
        stress_join(w[i].thread);
    CHECK(STRESS_LOAD(&r->count) == n, "executed %zu of %zu tasks", STRESS_LOAD(&r->count), n);
    for (size_t i = 0; i < n; i++)
        CHECK(atomic_load_explicit(&r->executed[i], memory_order_relaxed) == 1,
              "task %zu executed %u times", i,
              (unsigned)atomic_load_explicit(&r->executed[i], memory_order_relaxed));
    CHECK(ap_ws_len(&r->d) == 0, "deque not empty at the end");
    ap_ws_stats ss;
    ap_ws_stats_get(&r->d, &ss);
    uint64_t lost_all = STRESS_LOAD(&r->lost_races);
    CHECK(ss.pushes == n && ss.full == full && ss.pops == pops && ss.steals == n - pops,
          "stats: pushes %" PRIu64 " full %" PRIu64 " pops %" PRIu64 " steals %" PRIu64
          ", the threads saw %zu, %" PRIu64 ", %" PRIu64 ", %" PRIu64,
          ss.pushes, ss.full, ss.pops, ss.steals, n, full, pops, (uint64_t)n - pops);
    CHECK(mode == MODE_HALF ? ss.steal_aborts >= lost_all : ss.steal_aborts == lost_all,
          "stats: steal_aborts %" PRIu64 ", the thieves lost %" PRIu64, ss.steal_aborts,
          lost_all);
    for (unsigned i = 0; i < thieves; i++) {
        ap_ws_stats_get(&r->own[i], &ss);
        CHECK(ss.pushes == ss.pops + ss.steals && ss.full == 0,
              "stats of thief %u's deque: pushes %" PRIu64 " != pops %" PRIu64
              " + steals %" PRIu64, i, ss.pushes, ss.pops, ss.steals);
    }
    stress_end("%zu tasks, %" PRIu64 " lost races, %" PRIu64 " full pushes", n,
               STRESS_LOAD(&r->lost_races), full);
    pthread_barrier_destroy(&r->start);
    for (unsigned i = 0; i < thieves; i++)
        free(own_buf[i]);
    free((void *)r->executed);
    free(r->tasks);
    free(buf);
    free(r);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_work_steal");
    for (unsigned k = 2; k <= 4; k++)
        run_ws(MODE_SMALL, k, k == 4 ? 2 : 4, k == 3, stress_iters(150000, 100));
    run_ws(MODE_FULL, 2, 1, false, stress_iters(60000, 100));
    run_ws(MODE_FULL, 3, 8, true, stress_iters(150000, 100));
    run_ws(MODE_FULL, 4, 64, false, stress_iters(150000, 100));
    run_ws(MODE_HALF, 2, 64, false, stress_iters(150000, 100));
    run_ws(MODE_HALF, 4, 16, true, stress_iters(150000, 100));
    return stress_finish();
}
