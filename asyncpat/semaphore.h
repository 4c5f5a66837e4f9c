/*
 * asyncpat/semaphore.h -- fair counting semaphore with a ceiling
 *
 * PATTERN
 *   A count of permits. try_acquire(n) takes n permits at once or none;
 *   an acquire future waits for n permits in a FIFO queue; release(n)
 *   gives permits back and hands them to the queue's head. Permits live in
 *   one atomic word (count << 1 | CLOSED), so the uncontended path is one
 *   load of the word, one load of the waiter count and one CAS, no lock.
 *   Waiting futures sit in an ap_waitlist; permits reach them only through
 *   ap_waitlist_wake_if, whose grant callback runs under the list lock and
 *   takes a waiter's whole request from the count in one CAS, strictly
 *   from the head (the design of tokio's batch_semaphore, without its
 *   partial assignment: here the queued head leaves permits in the count
 *   until it can take all of them, which try_acquire cannot touch while
 *   anyone is queued, so the head still cannot starve).
 *
 *   The maximum is a ceiling on the count, as in Win32's CreateSemaphore
 *   (initial, maximum): ap_sem_init(s, n) starts with n permits and a
 *   ceiling of n; ap_sem_init_max(s, initial, max) starts with `initial`
 *   and lets releases raise the count up to `max` (e.g. start at 0 and
 *   release permits as resources appear, or forget some and release them
 *   later to resize).
 *
 * USAGE
 *   static ap_sem conns = AP_SEM_INITIALIZER(8);   // at most 8 connections
 *   if (ap_sem_acquire_wait(&conns, 1, ap_now_ns() + AP_NS_PER_SEC) == AP_OK) {
 *       use_connection();
 *       if (ap_sem_release(&conns, 1) != AP_OK) abort();
 *   }
 *   // in an event loop: ap_sem_acquire_fut f; ap_sem_acquire_fut_init(&f, &conns, 3);
 *   // ap_sem_acquire_poll(&f, &cx) until AP_READY, then ap_sem_acquire_status(&f)
 *
 * GUARANTEES (invariants the tests check)
 *   - all or nothing: an acquire of n takes exactly n permits or none
 *   - with balanced use (a semaphore initialised with n, every caller
 *     releasing only what it acquired): at most n permits are held at any
 *     time (the tests' theorem active(t) <= n), and available() == n again
 *     once everybody has released; nothing is lost or minted, also when
 *     futures are cancelled after they were granted permits
 *   - the count never exceeds max through release(): a release that would
 *     lift it above max returns AP_INVAL and changes nothing (never a
 *     silent clamp). The one exception is a granted future that is
 *     cancelled: its permits always go back (nothing is lost), which can
 *     pass max only if callers released permits they never acquired
 *   - FIFO fairness: queued futures are served strictly in queue order; a
 *     request for n at the head is served before later smaller ones
 *     (no starvation of large requests); try_acquire and a future's first
 *     poll answer AP_EMPTY whenever they find a future queued, so they never
 *     overtake one (a try_acquire racing with a registration may still
 *     linearize before it)
 *   - no thundering herd: a release wakes only the waiters it satisfies
 *   - n > max is AP_INVAL (it could never succeed); n == 0 succeeds at once
 *     (AP_OK, nothing taken, also while futures are queued) unless closed
 *   - close: every queued future completes with AP_CLOSED, every later
 *     acquire (try, future, wait, also n == 0) answers AP_CLOSED; a future
 *     granted before close completes with AP_OK and holds its permits.
 *     release and forget still work after close
 *
 * CONCURRENCY     try_acquire  release  forget  close  futures  available  fini
 *   any of them       yes        yes      yes    yes     yes       yes      no
 *   A future is polled and cancelled by one thread at a time (future.h).
 *   Progress: try_acquire, release(no waiters), forget and available are
 *   lock-free (a CAS loop that retries only when another thread changed
 *   the count). A release that finds waiters, a future that has to queue,
 *   cancel and close take the waiter list's short internal lock.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   try_acquire, release w/o waiters, forget, available: O(1)
 *              (a CAS loop); release with waiters: O(k) for k waiters it
 *              serves; future register/cancel: O(1); close: O(waiters).
 * MEMORY       an ap_sem in caller memory (two cache lines); a future embeds
 *              its waiter node. Nothing allocates.
 * ERRORS       AP_EMPTY (not enough permits, or futures queued: retry or wait
 *              with a future), AP_CLOSED, AP_INVAL (n > max; a release above
 *              max; init with max 0 or above AP_SEM_PERMITS_MAX or
 *              initial > max), AP_TIMEDOUT (ap_sem_acquire_wait);
 *              AP_NOT_READY (a future still pending) and AP_CANCELED as a
 *              future's status. A NULL or
 *              finished (fini) semaphore trips AP_ASSERT.
 * WAKE ORDER   FIFO; a release wakes the futures it grants, from the head,
 *              and stops at the first it cannot satisfy; a granted future
 *              that cancels gives its permits back and they go on to the next.
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_TEST_YIELD
 * SEE ALSO     waitlist.h (the ladder), future.h (the waker contract),
 *              tests/test_semaphore.c, bench/bench_semaphore.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_SEMAPHORE_H
#define ASYNCPAT_SEMAPHORE_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_SEM_PERMITS_MAX - the largest maximum a semaphore can have */
#define AP_SEM_PERMITS_MAX (SIZE_MAX >> 2)

/*
 * A semaphore. Not valid zero-initialised (its max would be 0): use
 * ap_sem_init / ap_sem_init_max or AP_SEM_INITIALIZER(n).
 */
typedef struct ap_sem {
    /* permits << 1 | AP__SEM_CLOSED; written by every acquire/release */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) state;
    /* read-mostly from here: the ceiling and the waiting futures */
    AP_ALIGNAS(AP_CACHELINE) size_t max; /* 0 after fini */
    ap_waitlist wl;
} ap_sem;

AP_STATIC_ASSERT(offsetof(ap_sem, max) - offsetof(ap_sem, state) >= AP_CACHELINE,
               "ap_sem: the count must have its own cache line");

/** AP_SEM_INITIALIZER - static initializer: n permits, ceiling n (n >= 1) */
#define AP_SEM_INITIALIZER(n) {(size_t)(n) << 1, (size_t)(n), AP_WAITLIST_INITIALIZER}

/*
 * An acquire future (caller memory). status is AP_NOT_READY while pending, then
 * AP_OK (the caller now holds n permits), AP_CLOSED, AP_INVAL (n > max) or
 * AP_CANCELED.
 */
typedef struct ap_sem_acquire_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_sem *sem;
    size_t n;
    ap_grant grant; /* the queued request (waitlist.h) */
    ap_status status;
} ap_sem_acquire_fut;

/**
 * ap_sem_stats - counters (ap_sem_stats_get; a relaxed snapshot, exact at
 * quiescence). Only the waiting side counts: try_acquire and release, the
 * lock-free paths, write nothing more than before.
 */
typedef struct ap_sem_stats {
    uint64_t available; /* permits in the count now */
    uint64_t max;       /* the ceiling */
    uint64_t waiters;   /* acquire futures queued now */
    uint64_t waits;     /* times an acquire queued (a future or _wait) */
    uint64_t wait_ns;   /* ns parked in ap_sem_acquire_wait (ap_now_ns;
                         * only callers that parked) */
} ap_sem_stats;

/**
 * ap_sem_init - a semaphore with @permits permits and a ceiling of @permits
 *
 * Returns AP_OK, or AP_INVAL (permits 0 or above AP_SEM_PERMITS_MAX) and
 * then *s is untouched.
 */
AP_API AP_NODISCARD ap_status ap_sem_init(ap_sem *s, size_t permits);

/**
 * ap_sem_init_max - a semaphore with @initial permits and a ceiling of @max
 *
 * Returns AP_OK, or AP_INVAL (max 0, max above AP_SEM_PERMITS_MAX, or
 * initial > max) and then *s is untouched.
 */
AP_API AP_NODISCARD ap_status ap_sem_init_max(ap_sem *s, size_t initial, size_t max);

/** ap_sem_fini - end of life; frees nothing. A future still queued trips
 *  AP_ASSERT in every build (one load); so does a second fini. */
AP_API void ap_sem_fini(ap_sem *s);

/**
 * ap_sem_try_acquire - take @n permits now, all or nothing
 *
 * Returns AP_OK (the caller holds n more permits), AP_EMPTY (fewer than n
 * available, or a future is queued: taking permits would overtake it),
 * AP_CLOSED, or AP_INVAL (n > max). n == 0 returns AP_OK unless closed.
 * Concurrency: any thread. Progress: lock-free; never blocks or registers.
 * Ordering:    acquire on success; pairs with the release in ap_sem_release.
 * On failure:  nothing changed.
 */
AP_API AP_NODISCARD ap_status ap_sem_try_acquire(ap_sem *s, size_t n);

/**
 * ap_sem_release - give back @n permits; wake the queued futures they satisfy
 *
 * Returns AP_OK, or AP_INVAL when the count would exceed max (nothing
 * changed). n == 0 is AP_OK and does nothing. Works after close.
 * Concurrency: any thread. Progress: lock-free without queued futures;
 * with them, one pass under the list lock (wakers called after it).
 * Ordering:    release (seq_cst in the fallback ladder): a release
 *              operation for the next acquirer, and the releasing side of
 *              the ladder (waitlist.h).
 */
AP_API AP_NODISCARD ap_status ap_sem_release(ap_sem *s, size_t n);

/**
 * ap_sem_forget - remove up to @n available permits for good
 *
 * Returns how many were removed (min(n, available)). A later release may
 * add permits back, up to max. Concurrency: any thread; lock-free.
 */
AP_API size_t ap_sem_forget(ap_sem *s, size_t n);

/** ap_sem_close - fail every queued and later acquire with AP_CLOSED; idempotent */
AP_API void ap_sem_close(ap_sem *s);
/** ap_sem_is_closed - whether ap_sem_close has been called */
AP_API bool ap_sem_is_closed(ap_sem *s);
/** ap_sem_available - permits in the count now (racy snapshot) */
AP_API size_t ap_sem_available(ap_sem *s);
/** ap_sem_max - the ceiling given at init */
AP_API size_t ap_sem_max(const ap_sem *s);
/** ap_sem_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_sem_stats_get(ap_sem *s, ap_sem_stats *out);

/**
 * ap_sem_acquire_fut_init / _poll / _cancel / _status: a future for @n
 * permits. The first poll takes them at once when it can (as try_acquire);
 * otherwise it queues (FIFO) and is woken by the release that grants them
 * all. Result: AP_OK (the caller holds n permits), AP_CLOSED, AP_INVAL
 * (n > max) or AP_CANCELED. Cancel is idempotent and safe at any time;
 * permits granted to a future that is cancelled before it completed go
 * back to the semaphore and on to the next waiter. After cancel or READY
 * the waker is never called again.
 */
AP_API void ap_sem_acquire_fut_init(ap_sem_acquire_fut *f, ap_sem *s, size_t n);
AP_API ap_poll ap_sem_acquire_poll(ap_sem_acquire_fut *f, ap_cx *cx);
AP_API void ap_sem_acquire_cancel(ap_sem_acquire_fut *f);
/** ap_sem_acquire_status - AP_NOT_READY while pending, then the result */
AP_API AP_NODISCARD ap_status ap_sem_acquire_status(const ap_sem_acquire_fut *f);

/**
 * ap_sem_acquire_wait - block this thread until @n permits are ours,
 * the semaphore is closed, or @deadline_ns (ap_now_ns clock) passes. The
 * semaphore takes no `now` anywhere, so it has no clock of its own
 * (time.h, CLOCKS): its deadlines are on ap_now_ns()'s clock; to wait on
 * another, drive an acquire future with ap_block_on_until_clock.
 *
 * Returns AP_OK, AP_CLOSED, AP_INVAL (n > max) or AP_TIMEDOUT (nothing
 * taken; a grant that raced with the timeout was passed on).
 */
AP_API AP_NODISCARD ap_status ap_sem_acquire_wait(ap_sem *s, size_t n, ap_deadline deadline_ns);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Happens-before: release's CAS is a release operation (AP__PUB_MO:
 *   release, seq_cst in the fallback ladder); the CAS of try_acquire and
 *   of the grant pass are acquire; read-modify-writes continue release
 *   sequences, so a release(n) happens-before every acquire that later
 *   takes permits from the count. A granted future learns of its grant by
 *   an acquire load of its `granted` flag, stored with release by the
 *   granting thread. So a semaphore of 1 is a lock.
 *   Lost wakeups (THE LADDER of waitlist.h; the waiter pays):
 *     waiting side (poll)                    releasing side (release)
 *     ap_waitlist_register: count++,         CAS on state (AP__PUB_MO)
 *       then HEAVY barrier                   ap_waitlist_parked: LIGHT +
 *     re-check: state load (AP__CHECK_MO),     relaxed load of count
 *       grant pass if permits (under lock)   if parked: grant pass (wake_if)
 *   Either the releaser's count load sees the new waiter (and runs the
 *   grant pass itself), or HEAVY makes the release's CAS visible to the
 *   waiter's re-check, whose own grant pass takes the permits (THE LADDER
 *   gives the argument, and the seq_cst fallback under TSan, non-Linux or
 *   AP_NO_ASYM_BARRIER, where the CAS, the increment and both loads are
 *   seq_cst and fall in one total order S). Either way somebody grants.
 *   With nobody parked a try_acquire + release pair is two CASes (acquire,
 *   release), a relaxed load of the count each and no fence. close is rare
 *   and keeps a seq_cst fetch_or before wake_all's seq_cst count load: in
 *   S with the waiter's seq_cst increment and its seq_cst re-check of
 *   CLOSED, so one of the two sees the other in either ladder. A cancelled waiter that was granted gives
 *   its permits back with the same release path; a cancelled head that was
 *   not granted runs a grant pass, since it may have held up smaller
 *   requests behind it. Wakers are called only after the lock is released.
 *   available() is a relaxed snapshot with no ordering.
 */

#define AP__SEM_CLOSED ((size_t)1)
#define AP__SEM_ONE ((size_t)2) /* one permit in state */

AP_API ap_status ap_sem_init_max(ap_sem *s, size_t initial, size_t max)
{
    AP_ASSERT(s != NULL);
    if (max == 0 || max > AP_SEM_PERMITS_MAX || initial > max)
        return AP_INVAL;
    AP_ATOMIC_INIT(&s->state, initial * AP__SEM_ONE);
    s->max = max;
    ap_waitlist_init(&s->wl);
    return AP_OK;
}

AP_API ap_status ap_sem_init(ap_sem *s, size_t permits)
{
    return ap_sem_init_max(s, permits, permits);
}

AP_API void ap_sem_fini(ap_sem *s)
{
    AP_ASSERT(s != NULL && s->max != 0);
    /* Every build: a future still queued would be woken into freed memory. */
    AP_ASSERT(!ap_waitlist_has_waiters(&s->wl));
    s->max = 0;
}

AP_API ap_status ap_sem_try_acquire(ap_sem *s, size_t n)
{
    AP_ASSERT(s != NULL && s->max != 0);
    if (AP_UNLIKELY(n > s->max))
        return AP_INVAL;
    size_t st = AP_ATOMIC_LOAD(&s->state, memory_order_relaxed);
    for (;;) {
        if (AP_UNLIKELY(st & AP__SEM_CLOSED))
            return AP_CLOSED;
        if (AP_UNLIKELY(n == 0))
            return AP_OK;
        /* Fairness: queued futures come first. relaxed: it orders nothing
         * (a registration racing with us may linearize after us anyway,
         * GUARANTEES); a plain load on every machine. */
        if (AP_UNLIKELY(AP_ATOMIC_LOAD(&s->wl.count, memory_order_relaxed) != 0))
            return AP_EMPTY;
        if (st / AP__SEM_ONE < n)
            return AP_EMPTY;
        AP_TEST_YIELD(); /* a future may queue, or a release land, here */
        /* acquire: pairs with the AP__PUB_MO (release) CAS in ap__sem_add
         * through the release sequence of state: the releasers' writes
         * happen-before our critical section. Relaxed on failure: we only
         * re-read the count. */
        if (AP_ATOMIC_CAS_WEAK(&s->state, &st, st - n * AP__SEM_ONE, memory_order_acquire,
                               memory_order_relaxed))
            return AP_OK;
    }
}

/* ap_grant_ops.grant, run UNDER the list lock for the head request: take
 * its whole request from the count, or nothing. */
AP_API bool ap__sem_grant(void *obj, ap_grant *g, void *ctx)
{
    ap_sem *s = (ap_sem *)obj;
    ap_sem_acquire_fut *f = AP_CONTAINER_OF(g, ap_sem_acquire_fut, grant);
    (void)ctx;
    /* seq_cst: the re-check load of the ladder when the waiter itself runs
     * the pass (after register's count++ and barrier, which would make a
     * relaxed load enough); seq_cst keeps the argument independent of the
     * barrier and costs nothing on this slow path (a plain load on x86). */
    size_t st = AP_ATOMIC_LOAD(&s->state, memory_order_seq_cst);
    for (;;) {
        if ((st & AP__SEM_CLOSED) || st / AP__SEM_ONE < f->n)
            return false; /* strict FIFO: nobody behind the head goes first */
        /* acquire: pairs with the releases that put the permits there;
         * ap_grant's release store of `granted` passes the edge on. */
        if (AP_ATOMIC_CAS_WEAK(&s->state, &st, st - f->n * AP__SEM_ONE, memory_order_acquire,
                               memory_order_relaxed))
            return true;
    }
}

/* ap_grant_ops.can_serve: an empty (or closed) count can satisfy nobody,
 * so the pass and its lock are skipped then. AP__CHECK_MO: for a waiter
 * this load is its re-check of THE LADDER (after register's count++ and
 * barrier; a release that it misses sees the waiter and runs the pass
 * itself); acquire is what the data needs. */
AP_API bool ap__sem_can_serve(void *obj, void *ctx)
{
    size_t st = AP_ATOMIC_LOAD(&((ap_sem *)obj)->state, AP__CHECK_MO);
    (void)ctx;
    return st >= AP__SEM_ONE && !(st & AP__SEM_CLOSED);
}

/* ap_grant_ops.closed; seq_cst: the ladder's re-check against close's
 * fetch_or. */
AP_API bool ap__sem_closed(void *obj)
{
    return (AP_ATOMIC_LOAD(&((ap_sem *)obj)->state, memory_order_seq_cst) & AP__SEM_CLOSED) != 0;
}

AP_API ap_status ap__sem_add(ap_sem *s, size_t n, bool force);

/* ap_grant_ops.give_back: a cancelled future's permits go back to the
 * count, and on to the next waiter (the release path). */
AP_API void ap__sem_give_back(void *obj, ap_grant *g)
{
    (void)ap__sem_add((ap_sem *)obj, AP_CONTAINER_OF(g, ap_sem_acquire_fut, grant)->n, true);
}

AP_API const ap_grant_ops *ap__sem_ops(void)
{
    static const ap_grant_ops ops = {ap__sem_grant, ap__sem_can_serve, ap__sem_closed,
                                     ap__sem_give_back};
    return &ops;
}

/* Add n permits (checked against max unless @force), then serve waiters. */
AP_API ap_status ap__sem_add(ap_sem *s, size_t n, bool force)
{
    size_t st = AP_ATOMIC_LOAD(&s->state, memory_order_relaxed);
    for (;;) {
        size_t have = st / AP__SEM_ONE;
        if (!force && (n > s->max || have > s->max - n))
            return AP_INVAL;
        /* AP__PUB_MO (release; seq_cst in the fallback ladder): a release
         * operation (the permits carry the releaser's writes to the next
         * acquirer, pairs with the acquire CASes of try_acquire and
         * ap__sem_grant) and the releasing side's publishing write of THE
         * LADDER, before ap_waitlist_parked below. Relaxed on failure: we
         * only recompute from the newer word. */
        if (AP_ATOMIC_CAS_WEAK(&s->state, &st, st + n * AP__SEM_ONE, AP__PUB_MO,
                               memory_order_relaxed))
            break;
    }
    AP_TEST_YIELD(); /* permits in the count, waiters not yet served */
    /* the publishing CAS above, then the ladder's check */
    if (AP_UNLIKELY(ap_waitlist_parked(&s->wl)))
        (void)ap_grant_serve(&s->wl, ap__sem_ops(), s, NULL);
    return AP_OK;
}

AP_API ap_status ap_sem_release(ap_sem *s, size_t n)
{
    AP_ASSERT(s != NULL && s->max != 0);
    if (n == 0)
        return AP_OK;
    return ap__sem_add(s, n, false);
}

AP_API size_t ap_sem_forget(ap_sem *s, size_t n)
{
    AP_ASSERT(s != NULL && s->max != 0);
    size_t st = AP_ATOMIC_LOAD(&s->state, memory_order_relaxed), take;
    do {
        size_t have = st / AP__SEM_ONE;
        take = n < have ? n : have;
        if (take == 0)
            return 0;
        /* relaxed: removing permits publishes nothing and wakes nobody;
         * as an RMW it keeps the release sequence of state intact. */
    } while (!AP_ATOMIC_CAS_WEAK(&s->state, &st, st - take * AP__SEM_ONE,
                                 memory_order_relaxed, memory_order_relaxed));
    return take;
}

AP_API void ap_sem_close(ap_sem *s)
{
    AP_ASSERT(s != NULL && s->max != 0);
    /* seq_cst: the ladder's SC write, before wake_all's SC load of count. */
    (void)AP_ATOMIC_FETCH_OR(&s->state, AP__SEM_CLOSED, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&s->wl);
}

AP_API bool ap_sem_is_closed(ap_sem *s)
{
    AP_ASSERT(s != NULL && s->max != 0);
    /* acquire: what the closer did before close is visible to a caller
     * that sees it closed. */
    return (AP_ATOMIC_LOAD(&s->state, memory_order_acquire) & AP__SEM_CLOSED) != 0;
}

AP_API size_t ap_sem_available(ap_sem *s)
{
    AP_ASSERT(s != NULL && s->max != 0);
    return AP_ATOMIC_LOAD(&s->state, memory_order_relaxed) / AP__SEM_ONE;
}

AP_API size_t ap_sem_max(const ap_sem *s)
{
    AP_ASSERT(s != NULL);
    return s->max;
}

AP_API void ap_sem_stats_get(ap_sem *s, ap_sem_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(s != NULL && s->max != 0 && out != NULL);
    ap_waitlist_stats_get(&s->wl, &w);
    /* relaxed: a snapshot (as ap_sem_available) */
    out->available = AP_ATOMIC_LOAD(&s->state, memory_order_relaxed) / AP__SEM_ONE;
    out->max = s->max;
    out->waiters = w.waiters;
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

/* ---- the acquire future ---- */

AP__FUTURE_VTABLE(ap__sem, ap_sem_acquire_fut, ap_sem_acquire_poll, ap_sem_acquire_cancel)

AP_API void ap_sem_acquire_fut_init(ap_sem_acquire_fut *f, ap_sem *s, size_t n)
{
    AP_ASSERT(f != NULL && s != NULL && s->max != 0);
    f->base.poll = ap__sem_poll_v;
    f->base.cancel = ap__sem_cancel_v;
    f->sem = s;
    f->n = n;
    ap_grant_init(&f->grant);
    f->status = AP_NOT_READY;
}

AP_API ap_poll ap_sem_acquire_poll(ap_sem_acquire_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_sem *s = f->sem;
    AP_ASSERT(s->max != 0);
    if (!f->grant.queued) {
        ap_status st = ap_sem_try_acquire(s, f->n);
        if (st != AP_EMPTY) {
            f->status = st;
            return AP_READY;
        }
    }
    /* queue (FIFO) or look at the grant: AP_OK (the permits are ours),
     * AP_CLOSED, or AP_NOT_READY */
    ap_status st = ap_grant_poll(&s->wl, ap__sem_ops(), s, &f->grant, cx);
    if (st == AP_NOT_READY)
        return AP_PENDING;
    f->status = st;
    return AP_READY;
}

AP_API void ap_sem_acquire_cancel(ap_sem_acquire_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->status != AP_NOT_READY)
        return; /* completed or cancelled: nothing to undo (idempotent) */
    /* granted permits go back to the count and on to the next waiter */
    ap_grant_cancel(&f->sem->wl, ap__sem_ops(), f->sem, &f->grant);
    f->status = AP_CANCELED;
}

AP_API ap_status ap_sem_acquire_status(const ap_sem_acquire_fut *f)
{
    return f->status;
}

AP_API ap_status ap_sem_acquire_wait(ap_sem *s, size_t n, ap_deadline deadline_ns)
{
    ap_sem_acquire_fut f;
    /* the future's first poll, done here: only a caller that parks reads
     * the clock (for wait_ns) */
    ap_status st = ap_sem_try_acquire(s, n);
    if (st != AP_EMPTY)
        return st;
    ap_sem_acquire_fut_init(&f, s, n);
    uint64_t t0 = ap_now_ns();
    st = ap_block_on_until(&f.base, deadline_ns);
    ap__waitlist_waited(&s->wl, ap_now_ns() - t0);
    if (st == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.status;
}

#endif /* ASYNCPAT_SEMAPHORE_H */
