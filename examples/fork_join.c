/*
 * examples/fork_join.c -- parallel quicksort on a tiny work-stealing scheduler
 *
 * The scheduler lives here, not in the library (asyncpat has no runtime):
 * NW worker threads, one ap_ws deque each; main submits the root task
 * through an ap_ws_injector. A worker pops its own deque (LIFO), then the
 * injector, then steals half of a random victim's deque; with nothing to
 * do it parks on an ap_sem. A task sorts a range: it partitions, forks the
 * left part (push; run inline when the deque is full) and goes on with the
 * right. The last element placed closes the semaphore, which wakes all.
 * Parking without lost wakeups (Dekker): a parker bumps `sleepers`, then
 * looks for work once more; a forker pushes, then a seq_cst fence, then
 * reads `sleepers` and posts a permit.
 *
 * It prints the result, then where the tasks ran: per worker, the tasks it
 * took from its own deque, from the injector, and right after stealing
 * (with how many steals and how many tasks they moved), and how often it
 * parked. Every task must run exactly once: the tasks taken add up to the
 * forks pushed plus the root (checked; the exit status says so). The split
 * varies run to run: that is the stealing at work.
 */
#include "asyncpat.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NW = 4, DQCAP = 256, N = 1 << 20, CUTOFF = 2048 };
typedef struct { size_t lo, hi; } task; /* sort a[lo, hi) */
static int *a;
static ap_ws dq[NW];
static _Alignas(AP_WS_ALIGN) unsigned char dqmem[NW][AP_WS_BYTES(DQCAP)];
static ap_ws_injector inj;
static _Alignas(AP_WS_INJECTOR_ALIGN) unsigned char injmem[AP_WS_INJECTOR_BYTES(16)];
static ap_sem park;
static _Atomic size_t placed, sleepers; /* elements in final position; parked */
/* what each worker did (only it writes its own entry; main reads after join) */
static struct { size_t own, injected, stolen, steals, moved, parks; } stat[NW];
static _Atomic size_t forked, inlined; /* forks pushed to a deque; run inline */

static int cmp_int(const void *x, const void *y)
{ int p = *(const int *)x, q = *(const int *)y; return (p > q) - (p < q); }

static void wake_one(void)
{
    atomic_thread_fence(memory_order_seq_cst); /* the push before, the load after */
    if (atomic_load(&sleepers) > 0 && ap_sem_available(&park) < NW) {
        ap_status st = ap_sem_release(&park, 1); /* AP_CLOSED/INVAL: a wake is due anyway */
        (void)st;
    }
}

static void finished(size_t n)
{
    if (atomic_fetch_add(&placed, n) + n == N)
        ap_sem_close(&park); /* all sorted: wake every parked worker */
}

static void run(int self, task *t)
{
    size_t lo = t->lo, hi = t->hi;
    while (hi - lo > CUTOFF) {
        int pivot = a[lo + (hi - lo) / 2];
        size_t i = lo, lt = lo, gt = hi; /* 3-way: [<][==][>] */
        while (i < gt) {
            int v = a[i];
            if (v < pivot) { a[i++] = a[lt]; a[lt++] = v; }
            else if (v > pivot) { a[i] = a[--gt]; a[gt] = v; }
            else i++;
        }
        finished(gt - lt);
        size_t left_lo = lo;
        lo = gt; /* go on with [gt, hi); fork [left_lo, lt) */
        if (lt == left_lo) continue; /* nothing below the pivot */
        task *left = malloc(sizeof *left);
        if (left == NULL) abort();
        *left = (task){left_lo, lt};
        if (ap_ws_try_push(&dq[self], left) == AP_OK) { atomic_fetch_add(&forked, 1); wake_one(); }
        else { atomic_fetch_add(&inlined, 1); run(self, left); } /* full: run the fork inline */
    }
    qsort(a + lo, hi - lo, sizeof *a, cmp_int);
    finished(hi - lo);
    free(t);
}

static task *find_work(int self, unsigned *seed)
{
    void *t;
    size_t moved;
    if (ap_ws_try_pop(&dq[self], &t) == AP_OK) { stat[self].own++; return t; }
    if (ap_ws_injector_try_pop(&inj, &t) == AP_OK) { stat[self].injected++; return t; }
    for (int k = 0; k < 2 * NW; k++) {
        int v = (int)((*seed = *seed * 1103515245u + 12345u) >> 16) % NW;
        if (v != self && ap_ws_steal_half(&dq[v], &dq[self], &moved) == AP_OK) {
            stat[self].steals++, stat[self].moved += moved;
            if (ap_ws_try_pop(&dq[self], &t) == AP_OK) { stat[self].stolen++; return t; }
        }
    }
    return NULL;
}

static void *worker(void *arg)
{
    int self = (int)(size_t)arg;
    unsigned seed = (unsigned)self * 7919u + 1u;
    while (!ap_sem_is_closed(&park)) {
        task *t = find_work(self, &seed);
        if (t == NULL) {
            atomic_fetch_add(&sleepers, 1); /* then look once more */
            if ((t = find_work(self, &seed)) == NULL) {
                stat[self].parks++;
                ap_status st = ap_sem_acquire_wait(&park, 1, AP_DEADLINE_NONE);
                (void)st; /* AP_OK (woken) or AP_CLOSED (all done) */
            }
            atomic_fetch_sub(&sleepers, 1);
        }
        if (t) run(self, t);
    }
    return NULL;
}

int main(void)
{
    int *ref = malloc(N * sizeof *ref);
    a = malloc(N * sizeof *a);
    if (!a || !ref) return 1;
    uint64_t x = 12345;
    for (size_t i = 0; i < N; i++) /* LCG: many duplicates too */
        a[i] = ref[i] = (int)((x = x * 6364136223846793005u + 1442695040888963407u) >> 44);
    if (ap_ws_injector_init(&inj, injmem, sizeof injmem, 16) || ap_sem_init_max(&park, 0, NW)) return 1;
    for (int w = 0; w < NW; w++) if (ap_ws_init(&dq[w], dqmem[w], sizeof dqmem[w], DQCAP)) return 1;
    pthread_t th[NW];
    for (int w = 0; w < NW; w++) pthread_create(&th[w], NULL, worker, (void *)(size_t)w);
    task *root = malloc(sizeof *root); /* submitted from outside: the injector */
    if (root == NULL || (*root = (task){0, N}, ap_ws_injector_try_push(&inj, root))) return 1;
    wake_one();
    for (int w = 0; w < NW; w++) pthread_join(th[w], NULL);
    qsort(ref, N, sizeof *ref, cmp_int);
    int ok = memcmp(a, ref, N * sizeof *a) == 0 && atomic_load(&placed) == N;
    printf("%s %d ints with %d workers\n", ok ? "sorted" : "MISMATCH:", N, NW);
    size_t took = 0;
    for (int w = 0; w < NW; w++) {
        size_t n = stat[w].own + stat[w].injected + stat[w].stolen;
        printf("worker %d: %zu tasks (%zu own deque, %zu injector, %zu after a steal); "
               "%zu steals moved %zu tasks; parked %zu times\n", w, n, stat[w].own,
               stat[w].injected, stat[w].stolen, stat[w].steals, stat[w].moved, stat[w].parks);
        took += n;
    }
    size_t pushed = atomic_load(&forked) + 1; /* the root went through the injector */
    printf("tasks: %zu pushed (root + forks), %zu taken, %zu forks run inline (deque full): %s\n",
           pushed, took, atomic_load(&inlined), took == pushed ? "each ran once" : "MISMATCH");
    ok = ok && took == pushed;
    free(a); free(ref);
    return ok ? 0 : 1;
}
