/*
 * asyncpat/future.h -- poll-based futures, wakers, and ap_block_on
 *
 * PATTERN
 *   An operation that may have to wait is a future: a struct in caller
 *   memory that embeds ap_future as its first member and carries its own
 *   result. The caller polls it; a poll either completes it (AP_READY) or
 *   registers the waker from ap_cx and returns AP_PENDING. There is no
 *   runtime: any event loop, thread or ap_block_on() can drive futures.
 *
 * USAGE
 *   ap_mpmc_pop_fut f;                       // any future in caller memory
 *   ap_mpmc_pop_fut_init(&f, q, &item);
 *   if (ap_block_on_until(&f.base, ap_now_ns() + AP_NS_PER_SEC) == AP_OK)
 *       st = ap_mpmc_pop_status(&f);         // AP_OK or AP_CLOSED
 *
 * GUARANTEES
 *   - ap_block_on never returns before the future is READY;
 *     ap_block_on_until returns AP_TIMEDOUT only once ap_now_ns() has
 *     reached the deadline (ap_block_on_until_clock: once @clock has), and
 *     then the future has been cancelled.
 *   - Every poll's cx.now is read from the clock just before that poll.
 *   - It polls again after every wake and no later than the earliest
 *     cx.deadline a poll asked for (timers are honoured without a wake).
 *
 * THE WAKER CONTRACT (every *_poll in asyncpat keeps it)
 *   1. Register, then re-check. A poll that returns AP_PENDING has
 *      registered cx->waker and then re-checked its condition; the waker is
 *      called at least once after the awaited state may have changed.
 *      Spurious wakes are allowed; lost wakes are bugs. The waking side
 *      publishes its state first and looks for waiters second (the ladder
 *      in waitlist.h).
 *   2. Time. A future that waits for time lowers cx->deadline to the
 *      instant it must be polled again; it reads the time only from
 *      cx->now. Nothing in asyncpat reads a clock behind the caller's back.
 *      A driver must re-poll by the lowered deadline even without a wake:
 *      the queues also use it to re-poll while a peer thread is between
 *      claiming and publishing a slot (AP_AGAIN), which no wake announces.
 *   3. Wake outside locks. Wakers are called after every internal lock is
 *      released, from whichever thread made progress. A waker must be
 *      cheap and must not block; it may be called concurrently with a poll.
 *   4. One poller at a time. A future is polled (and cancelled) by one
 *      thread at a time; a later poll may pass a different waker, which
 *      replaces the earlier one.
 *   5. Cancel. Every future that can register a waker has a cancel
 *      (also reachable as ap_future.cancel). Cancel is idempotent and safe
 *      at any time, also after completion. After cancel or AP_READY returns,
 *      the waker it was given is never called again (a wake already in
 *      progress is waited for), so its memory may be reused.
 *   6. Nothing is lost. An item or permit already granted to a waiter that
 *      cancels is passed on to the next waiter or returned, never dropped.
 *
 * BLOCKING
 *   ap_block_on(f) drives one future on the calling thread: poll, then park
 *   (a futex on Linux, a condition variable elsewhere or with
 *   AP_BLOCK_ON_CONDVAR) until the waker runs or cx.deadline passes. It
 *   starts no thread, allocates nothing and keeps no state beyond its frame.
 *
 * CLOCKS
 *   ap_block_on_until_clock(f, deadline, clock) is the general form: cx.now
 *   is read from @clock (an ap_clock, time.h) before every poll, and the
 *   deadline and every cx.deadline a poll lowers are instants on @clock.
 *   ap_block_on_until(f, d) is ap_block_on_until_clock(f, d, NULL): the
 *   clock is ap_now_ns() and the park is exactly as long as the time left.
 *   With another clock the parker still sleeps in real time: after a poll
 *   it reads @clock again (t) and, if the earliest of deadline and
 *   cx.deadline (w) is later than t, parks for min(w - t,
 *   AP_CLOCK_PARK_MAX_NS) real nanoseconds (1 ms), or until woken; then it
 *   polls again with cx.now read afresh. If w is AP_DEADLINE_NONE it
 *   parks until woken, on any clock. So a fake clock moved by another
 *   thread (or by its own reads) is noticed within about a millisecond of
 *   real time, a fake clock that is never moved never times out, and a
 *   timed wait on a clock that runs at real speed polls once per ms.
 *   The *_wait helpers of objects whose desc has an ap_clock use this.
 *
 * EVENT LOOPS (no runtime: the loop is yours; examples/epoll_server.c,
 *   examples/uv_mpmc.c, examples/uring_mpmc.c)
 *   A loop drives a future in three steps: ap_cx_reset(&cx, now) (the
 *   time, and no deadline yet), poll, then wait for a wake (the waker
 *   writes an eventfd, uv_async_send, ...) or until cx.deadline, whichever
 *   comes first. Futures polled in the same turn may share the cx: each
 *   only lowers cx.deadline, so after the turn it is their earliest. A
 *   future not polled in a turn keeps the deadline its last poll left: keep
 *   it beside the future and wait until the earliest of them all
 *   (ap_time_min). The helpers own no thread, clock or I/O.
 *   Timer resolution: round a deadline UP, never down, when converting it
 *   to a coarser timer. A millisecond timeout rounded down (50 us -> 0 ms)
 *   makes the loop wake before the deadline, re-poll, get the same deadline
 *   and spin until it passes; ap_deadline_to_ms_timeout rounds up (and
 *   says -1 for none). A timerfd (TFD_TIMER_ABSTIME on CLOCK_MONOTONIC, the
 *   clock of ap_now_ns) or io_uring's timeout take the deadline exactly, in
 *   ns; libuv's uv_timer_start takes ms: round up the same way.
 *
 * CONCURRENCY  ap_block_on runs on the calling thread; the waker it passes
 *   may be called from any thread, any number of times.
 * ORDERING     whatever the waking thread did before calling the waker
 *   happens-before the next poll (release exchange in the waker, acquire
 *   exchange before each poll).
 * PROGRESS     before sleeping, the parker watches its word for 16 pause
 *   instructions, then yields the CPU up to 16 times (a hand-off between
 *   running threads rarely needs a futex round trip), then sleeps.
 * COMPLEXITY   one poll per wake or deadline; O(1) per park.
 * ERRORS       AP_TIMEDOUT from ap_block_on_until(_clock).
 * CONFIG       AP_BLOCK_ON_CONDVAR; AP_CLOCK_PARK_MAX_NS (time.h, a constant)
 *              bounds one park under a clock other than ap_now_ns. The
 *              parker's 16 pauses and 16 yields are fixed, not AP_SPIN_LIMIT.
 * SEE ALSO     waitlist.h (how primitives keep the contract), examples/mpmc_future.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_FUTURE_H
#define ASYNCPAT_FUTURE_H

#include "core.h"
#include "time.h"
#include <limits.h>

#if defined(__linux__) && !defined(AP_BLOCK_ON_CONDVAR)
#define AP__PARK_FUTEX 1
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <pthread.h>
#if defined(__APPLE__) /* no pthread_condattr_setclock: time out on the wall clock */
#define AP__PARK_CLOCK CLOCK_REALTIME
#else
#define AP__PARK_CLOCK AP__CLOCK_MONOTONIC
#define AP__PARK_SETCLOCK 1
#if defined(__linux__) && !defined(__cplusplus) /* strict ISO C hides it: see time.h */
int pthread_condattr_setclock(pthread_condattr_t *attr, int clock_id);
#endif
#endif
#endif

typedef enum ap_poll { AP_PENDING = 0, AP_READY = 1 } ap_poll;

typedef struct ap_waker {
    void (*wake)(void *ctx); /* NULL: nobody to wake */
    void *ctx;
} ap_waker;

#define AP_WAKER_NONE (AP__LIT(ap_waker){NULL, NULL})

typedef struct ap_cx {
    ap_waker waker;    /* called when progress may be possible */
    uint64_t now;      /* the caller's current time, ns */
    uint64_t deadline; /* in/out: lowered by a future that must be re-polled by then */
} ap_cx;

typedef struct ap_future {
    ap_poll (*poll)(struct ap_future *self, ap_cx *cx);
    void (*cancel)(struct ap_future *self); /* NULL if it never registers */
} ap_future;

/** ap_waker_wake - call a waker if it has a function */
AP_API void ap_waker_wake(ap_waker w)
{
    if (w.wake)
        w.wake(w.ctx);
}

/** ap_cx_wake_at - ask to be polled again no later than t */
AP_API void ap_cx_wake_at(ap_cx *cx, uint64_t t)
{
    if (t < cx->deadline)
        cx->deadline = t;
}

/**
 * ap_cx_reset - start a poll turn of an event loop: cx->now = @now,
 *               cx->deadline = AP_DEADLINE_NONE; the waker is kept
 * Call it before every poll (or every turn that polls several futures with
 * one cx): a deadline left over from the previous turn has passed, and a
 * driver that waits for it polls in a busy loop. See EVENT LOOPS above.
 */
AP_API void ap_cx_reset(ap_cx *cx, uint64_t now)
{
    cx->now = now;
    cx->deadline = AP_DEADLINE_NONE;
}

/**
 * ap_deadline_to_ms_timeout - the timeout argument of poll(2) or
 *                             epoll_wait(2) that waits until @deadline
 * @deadline: an instant on the clock of @now; AP_DEADLINE_NONE: no timer
 * @now:      the current time (ns)
 *
 * Returns -1 (wait without a timer) for AP_DEADLINE_NONE, 0 when @deadline
 * has been reached, else the nanoseconds left rounded UP to whole
 * milliseconds (1 ns left is 1 ms, never 0), at most INT_MAX (a wait of
 * more than 24.8 days then takes several turns). Never early: a loop that
 * sleeps this long finds the deadline passed when it re-polls, so it never
 * spins on a timer shorter than its resolution.
 */
AP_API int ap_deadline_to_ms_timeout(ap_deadline deadline, uint64_t now)
{
    if (deadline == AP_DEADLINE_NONE)
        return -1;
    if (deadline <= now)
        return 0;
    uint64_t left = deadline - now;
    uint64_t ms = left / AP_NS_PER_MS + (left % AP_NS_PER_MS != 0);
    return ms > (uint64_t)INT_MAX ? INT_MAX : (int)ms;
}

/** ap_future_cancel - cancel through the vtable; no-op if it has no cancel */
AP_API void ap_future_cancel(ap_future *f)
{
    if (f->cancel)
        f->cancel(f);
}

/**
 * ap_block_on_until - drive a future on this thread until it is ready or
 *                     deadline_ns (on ap_now_ns's clock) passes
 * @f:           the future; polled only from this thread while this runs
 * @deadline_ns: AP_DEADLINE_NONE to wait as long as it takes
 *
 * Returns AP_OK when the future completed (its result is in the future), or
 * AP_TIMEDOUT when the deadline passed first; the future has then been
 * cancelled through f->cancel, so it holds no reference to this frame.
 */
AP_API AP_NODISCARD ap_status ap_block_on_until(ap_future *f, ap_deadline deadline_ns);

/**
 * ap_block_on_until_clock - ap_block_on_until on the clock @clock
 * @deadline: an instant on @clock (AP_DEADLINE_NONE: no limit)
 * @clock:    where cx.now and the deadline checks come from; NULL or a zero
 *            ap_clock: ap_now_ns() (then exactly ap_block_on_until)
 *
 * Returns AP_OK or AP_TIMEDOUT (the future cancelled) as ap_block_on_until.
 * Under a clock other than ap_now_ns() each park lasts at most
 * AP_CLOCK_PARK_MAX_NS of real time (see CLOCKS above).
 */
AP_API AP_NODISCARD ap_status ap_block_on_until_clock(ap_future *f, ap_deadline deadline,
                                                      const ap_clock *clock);

/** ap_block_on - ap_block_on_until with no deadline */
AP_API void ap_block_on(ap_future *f);

/*
 * AP__FUTURE_VTABLE - the two ap_future entry points of a future type
 * @fut_t whose first member is its ap_future: name##_poll_v and
 * name##_cancel_v, forwarding to @poll_fn and @cancel_fn (which the header
 * declares). Its fut_init stores them in base.poll and base.cancel.
 * Forwarding only (no logic), as the *_DEFINE generators; no semicolon
 * after it.
 */
#define AP__FUTURE_VTABLE(name, fut_t, poll_fn, cancel_fn)                                 \
    AP_API ap_poll name##_poll_v(ap_future *f, ap_cx *cx)                                  \
    {                                                                                      \
        return poll_fn((fut_t *)(void *)f, cx);                                            \
    }                                                                                      \
    AP_API void name##_cancel_v(ap_future *f) { cancel_fn((fut_t *)(void *)f); }

/* ---- implementation ---- */

typedef struct ap__parker {
    /* 0: idle, 1: notified, 2: parked (futex word) */
    AP_ATOMIC_T(uint32_t) state;
#ifndef AP__PARK_FUTEX
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
} ap__parker;

AP_API void ap__parker_wake(void *ctx)
{
    ap__parker *p = (ap__parker *)ctx;
#ifdef AP__PARK_FUTEX
    /* release: pairs with the acquire exchange in ap_block_on_until; what
     * the waking thread published before waking is visible to the re-poll. */
    if (AP_ATOMIC_EXCHANGE(&p->state, 1u, memory_order_release) == 2u)
        syscall(SYS_futex, &p->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    AP_ATOMIC_STORE(&p->state, 1u, memory_order_release);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
#endif
}

/* ns as a struct timespec. A 32-bit time_t (i386, arm32) holds 68 years of
 * seconds: more would wrap, perhaps to a negative time the kernel refuses
 * at once (a sleeping loop would spin), so the seconds stop at INT32_MAX;
 * every caller sleeps, and there a shorter sleep is a spurious return. */
AP_FORCE_INLINE struct timespec ap__timespec_from_ns(uint64_t ns)
{
    struct timespec ts;
    uint64_t sec = ns / AP_NS_PER_SEC;
    if (sizeof(time_t) < sizeof(uint64_t) && sec > (uint64_t)INT32_MAX)
        sec = (uint64_t)INT32_MAX;
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)(ns % AP_NS_PER_SEC);
    return ts;
}

/* Sleep until notified or `ns` nanoseconds pass; spurious returns allowed. */
AP_API void ap__parker_park(ap__parker *p, uint64_t ns)
{
    /* A wake often follows within microseconds (a hand-off between two
     * running threads): watch the word briefly, then give the CPU away a
     * few times (if the thread that will wake us shares this CPU, it runs
     * now), and only then pay for a futex sleep and wake. */
    for (unsigned i = 0; i < 16u; i++) {
        if (AP_ATOMIC_LOAD(&p->state, memory_order_relaxed) != 0)
            return;
        AP_CPU_RELAX();
    }
    for (unsigned i = 0; i < 16u; i++) {
        sched_yield();
        if (AP_ATOMIC_LOAD(&p->state, memory_order_relaxed) != 0)
            return;
    }
    AP_TEST_YIELD(); /* between checking and parking */
#ifdef AP__PARK_FUTEX
    uint32_t idle = 0;
    /* acquire: a notification seen on failure pairs with the waker's
     * release (the caller re-polls after this returns). */
    if (!AP_ATOMIC_CAS_STRONG(&p->state, &idle, 2u, memory_order_acquire,
                              memory_order_acquire))
        return; /* notified meanwhile */
    struct timespec ts, *tsp = NULL;
    if (ns != AP_DEADLINE_NONE) {
        ts = ap__timespec_from_ns(ns);
        tsp = &ts;
    }
    /* Sleeps only while the word still says "parked" (checked atomically
     * by the kernel), so a wake between the CAS and here is not lost. */
    syscall(SYS_futex, &p->state, FUTEX_WAIT_PRIVATE, 2u, tsp, NULL, 0);
#else
    pthread_mutex_lock(&p->mu);
    if (AP_ATOMIC_LOAD(&p->state, memory_order_relaxed) == 0) {
        if (ns == AP_DEADLINE_NONE) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else {
            struct timespec ts;
            clock_gettime(AP__PARK_CLOCK, &ts);
            uint64_t abs = ap_deadline_after((uint64_t)ts.tv_sec * AP_NS_PER_SEC +
                                           (uint64_t)ts.tv_nsec, ns);
            ts = ap__timespec_from_ns(abs);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
#endif
}

AP_API ap_status ap_block_on_until_clock(ap_future *f, ap_deadline deadline_ns,
                                         const ap_clock *clock)
{
    /* NULL for the default clock: the real clock's park is not capped. */
    if (ap_clock_is_default(clock))
        clock = NULL;
    ap__parker p;
    AP_ATOMIC_INIT(&p.state, 0u);
#ifndef AP__PARK_FUTEX
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
#ifdef AP__PARK_SETCLOCK
    err |= pthread_condattr_setclock(&attr, AP__PARK_CLOCK);
#endif
    err |= pthread_mutex_init(&p.mu, NULL);
    err |= pthread_cond_init(&p.cv, &attr);
    pthread_condattr_destroy(&attr);
    AP_ASSERT(err == 0);
    (void)err;
#endif
    ap_cx cx;
    cx.waker.wake = ap__parker_wake;
    cx.waker.ctx = &p;
    ap_status st;
    for (;;) {
        /* Consume any notification before polling: the poll re-checks
         * everything, and a wake during the poll stays visible below.
         * acquire: pairs with the release in ap__parker_wake. */
        (void)AP_ATOMIC_EXCHANGE(&p.state, 0u, memory_order_acquire);
        cx.now = ap_clock_now(clock);
        cx.deadline = deadline_ns;
        if (f->poll(f, &cx) == AP_READY) {
            st = AP_OK;
            break;
        }
        uint64_t now = ap_clock_now(clock);
        if (now >= deadline_ns) {
            ap_future_cancel(f);
            st = AP_TIMEDOUT;
            break;
        }
        uint64_t wake_at = ap_time_min(cx.deadline, deadline_ns);
        if (wake_at > now) {
            uint64_t ns = wake_at == AP_DEADLINE_NONE ? AP_DEADLINE_NONE : wake_at - now;
            /* another clock's ns are slept as real ns, at most a bounded
             * slice at a time, so a clock moved meanwhile is re-read */
            if (clock != NULL && ns != AP_DEADLINE_NONE && ns > AP_CLOCK_PARK_MAX_NS)
                ns = AP_CLOCK_PARK_MAX_NS;
            ap__parker_park(&p, ns);
        }
    }
#ifndef AP__PARK_FUTEX
    pthread_cond_destroy(&p.cv);
    pthread_mutex_destroy(&p.mu);
#endif
    return st;
}

AP_API ap_status ap_block_on_until(ap_future *f, ap_deadline deadline_ns)
{
    return ap_block_on_until_clock(f, deadline_ns, NULL);
}

AP_API void ap_block_on(ap_future *f)
{
    /* (void) does not silence gcc's warn_unused_result */
    ap_status st = ap_block_on_until(f, AP_DEADLINE_NONE);
    AP_ASSERT(st == AP_OK);
    (void)st;
}

#endif /* ASYNCPAT_FUTURE_H */
