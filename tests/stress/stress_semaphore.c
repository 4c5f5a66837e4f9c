/*
 * tests/stress/stress_semaphore.c -- ThreadSanitizer stress of the fair
 * counting semaphore: try_acquire, acquire futures, deadlines, cancel, close
 *
 * Workers (8 threads on however many cores; 2 on the CI machine) loop:
 * pick a size k in 1..n (mostly small, sometimes n), then one way to get k
 * permits:
 *   try       ap_sem_try_acquire in a loop with stress_backoff
 *   wait      ap_sem_acquire_wait(sem, k, AP_DEADLINE_NONE)
 *   deadline  ap_sem_acquire_wait with a deadline 0-200 us away, so that
 *             futures are cancelled by ap_block_on_until while releases
 *             race with them (a grant that lands on a cancelled future must
 *             be passed on); on AP_TIMEDOUT the worker moves on
 *   cancel    a hand-polled future with a relaxed-flag waker: poll, wait a
 *             little for a wake, then cancel (twice) unless woken; a
 *             cancelled future must then poll READY with AP_CANCELED
 * then holds the permits briefly and releases them (release must say AP_OK).
 * Checked: the test's own count of held permits (relaxed atomics: they add
 * no ordering, so any edge TSan sees comes from the semaphore) never
 * exceeds n; a plain variable written only by holders of all n permits is
 * race-free under TSan (a semaphore of n taken whole is a lock); at the end
 * available() == n, no waiter is queued, and every way made progress.
 * Scenarios: n in {1, 3, 8}, and close-midstream (close while everybody is
 * busy: every worker ends with AP_CLOSED, what was held still comes back).
 */
#include "stress.h"

#define WORKERS 8

enum { M_TRY, M_WAIT, M_DEADLINE, M_CANCEL, M_KINDS };
static const char *const mode_name[] = {"try", "wait", "deadline", "cancel"};

typedef struct sem_run {
    ap_sem sem;
    size_t n;
    size_t iters;
    bool close_midstream;
    pthread_barrier_t start;
    _Atomic long active; /* permits held by workers, relaxed */
    _Atomic long high;
    _Atomic size_t ops;  /* acquisitions, relaxed */
    _Atomic size_t by_mode[M_KINDS], timeouts, cancels, closed_seen;
    long exclusive; /* plain: written only while holding all n permits */
} sem_run;

typedef struct sem_worker {
    sem_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} sem_worker;

/* One acquisition of k permits in @mode. AP_OK: held. AP_TIMEDOUT /
 * AP_CANCELED: nothing held. AP_CLOSED: closed. */
static ap_status get_permits(sem_worker *w, int mode, size_t k)
{
    sem_run *r = w->r;
    switch (mode) {
    case M_TRY: {
        unsigned fails = 0;
        for (;;) {
            ap_status st = ap_sem_try_acquire(&r->sem, k);
            if (st != AP_EMPTY)
                return st;
            stress_backoff(&fails, &w->rng);
        }
    }
    case M_WAIT:
        return ap_sem_acquire_wait(&r->sem, k, AP_DEADLINE_NONE);
    case M_DEADLINE: {
        uint64_t dl = ap_deadline_after(ap_now_ns(), (uint64_t)stress_below(&w->rng, 200) * AP_NS_PER_US);
        if (stress_below(&w->rng, 2))
            return ap_sem_acquire_wait(&r->sem, k, dl);
        ap_sem_acquire_fut f;
        ap_sem_acquire_fut_init(&f, &r->sem, k);
        ap_status st = ap_block_on_until(&f.base, dl);
        if (st == AP_TIMEDOUT) {
            CHECK(ap_sem_acquire_status(&f) == AP_CANCELED, "timed-out future has status %s",
                  ap_status_str(ap_sem_acquire_status(&f)));
            return AP_TIMEDOUT;
        }
        return ap_sem_acquire_status(&f);
    }
    case M_CANCEL: {
        ap_sem_acquire_fut f;
        ap_sem_acquire_fut_init(&f, &r->sem, k);
        if (stress_poll_or_cancel(&f.base, &w->rng))
            return ap_sem_acquire_status(&f);
        CHECK(ap_sem_acquire_status(&f) == AP_CANCELED, "cancelled future has status %s",
              ap_status_str(ap_sem_acquire_status(&f)));
        return AP_CANCELED;
    }
    }
    return AP_INVAL;
}

static void *worker_main(void *arg)
{
    sem_worker *w = (sem_worker *)arg;
    sem_run *r = w->r;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; r->close_midstream || i < r->iters; i++) {
        uint32_t pick = stress_below(&w->rng, 16);
        size_t k = pick == 0 ? r->n : 1 + stress_below(&w->rng, (uint32_t)(r->n < 2 ? 1 : r->n / 2));
        int mode = (int)stress_below(&w->rng, M_KINDS);
        ap_status st = get_permits(w, mode, k);
        if (st == AP_CLOSED) {
            CHECK(r->close_midstream, "worker %u: AP_CLOSED before close (%s)", w->id,
                  mode_name[mode]);
            STRESS_ADD(&r->closed_seen, 1);
            break;
        }
        if (st == AP_TIMEDOUT || st == AP_CANCELED) {
            STRESS_ADD(st == AP_TIMEDOUT ? &r->timeouts : &r->cancels, 1);
            continue;
        }
        CHECK(st == AP_OK, "worker %u: %s acquire of %zu: %s", w->id, mode_name[mode], k,
              ap_status_str(st));
        long now = STRESS_ADD(&r->active, (long)k) + (long)k;
        CHECK(now <= (long)r->n, "worker %u: %ld permits held, n = %zu", w->id, now, r->n);
        long hi = STRESS_LOAD(&r->high);
        while (now > hi && !atomic_compare_exchange_weak_explicit(
                               &r->high, &hi, now, memory_order_relaxed, memory_order_relaxed)) {
        }
        if (k == r->n)
            r->exclusive++; /* only the semaphore orders these writes */
        stress_jitter(&w->rng);
        STRESS_ADD(&r->active, -(long)k);
        STRESS_ADD(&r->ops, 1);
        STRESS_ADD(&r->by_mode[mode], 1);
        st = ap_sem_release(&r->sem, k);
        CHECK(st == AP_OK, "worker %u: release(%zu): %s", w->id, k, ap_status_str(st));
    }
    return NULL;
}

static void sem_diag(void *arg)
{
    sem_run *r = (sem_run *)arg;
    fprintf(stderr,
            "    n=%zu: ops %zu, active %ld, available %zu, queued waiters %zu, closed %d\n",
            r->n, STRESS_LOAD(&r->ops), STRESS_LOAD(&r->active), ap_sem_available(&r->sem),
            (size_t)atomic_load(&r->sem.wl.count), (int)ap_sem_is_closed(&r->sem));
}

static void run_sem(size_t n, size_t iters, bool close_midstream)
{
    sem_run *r = (sem_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    if (!stress_begin("semaphore %s n=%zu", close_midstream ? "close-midstream" : "mix", n)) {
        free(r);
        return;
    }
    ap_status st = ap_sem_init(&r->sem, n);
    CHECK(st == AP_OK, "ap_sem_init: %s", ap_status_str(st));
    r->n = n;
    r->iters = iters;
    r->close_midstream = close_midstream;
    pthread_barrier_init(&r->start, NULL, WORKERS + 1);
    stress_diag(sem_diag, r);
    sem_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_spawn(&w[i].thread, worker_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    if (close_midstream) {
        stress_rng rng;
        stress_rng_init(&rng, stress_thread_seed(99), 0);
        size_t when = 200 + stress_below(&rng, (uint32_t)iters);
        while (STRESS_LOAD(&r->ops) < when)
            stress_sleep_us(100);
        ap_sem_close(&r->sem);
    }
    for (unsigned i = 0; i < WORKERS; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);

    CHECK(STRESS_LOAD(&r->active) == 0, "active %ld at the end", STRESS_LOAD(&r->active));
    CHECK(ap_sem_available(&r->sem) == n, "permits not conserved: available %zu, n %zu",
          ap_sem_available(&r->sem), n);
    CHECK(atomic_load(&r->sem.wl.count) == 0, "%zu waiters left queued",
          (size_t)atomic_load(&r->sem.wl.count));
    CHECK(STRESS_LOAD(&r->high) <= (long)n, "high-water %ld > n", STRESS_LOAD(&r->high));
    if (close_midstream) {
        CHECK(STRESS_LOAD(&r->closed_seen) == WORKERS, "%zu of %d workers saw AP_CLOSED",
              STRESS_LOAD(&r->closed_seen), WORKERS);
        CHECK(ap_sem_try_acquire(&r->sem, 1) == AP_CLOSED, "try after close");
    } else {
        for (int m = 0; m < M_KINDS; m++)
            CHECK(STRESS_LOAD(&r->by_mode[m]) > 0, "no acquisition by %s", mode_name[m]);
        st = ap_sem_try_acquire(&r->sem, n);
        CHECK(st == AP_OK, "try_acquire(n) at quiescence: %s", ap_status_str(st));
        st = ap_sem_release(&r->sem, n);
        CHECK(st == AP_OK, "release(n): %s", ap_status_str(st));
    }
    pthread_barrier_destroy(&r->start);
    stress_end("ops=%zu high=%ld try=%zu wait=%zu deadline=%zu cancel=%zu timeouts=%zu "
               "cancels=%zu",
               STRESS_LOAD(&r->ops), STRESS_LOAD(&r->high), STRESS_LOAD(&r->by_mode[M_TRY]),
               STRESS_LOAD(&r->by_mode[M_WAIT]), STRESS_LOAD(&r->by_mode[M_DEADLINE]),
               STRESS_LOAD(&r->by_mode[M_CANCEL]), STRESS_LOAD(&r->timeouts),
               STRESS_LOAD(&r->cancels));
    ap_sem_fini(&r->sem);
    free(r);
}

int main(int argc, char **argv)
{
    static const size_t ns[] = {1, 3, 8};
    stress_init(argc, argv, "stress_semaphore");
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        run_sem(ns[i], stress_iters(12000, 50), false);
    run_sem(4, stress_iters(6000, 50), true);
    return stress_finish();
}
