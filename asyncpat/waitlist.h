/*
 * asyncpat/waitlist.h -- intrusive FIFO list of waiting futures
 *
 * PATTERN
 *   Every primitive that can make a future wait keeps one ap_waitlist per
 *   condition ("not empty", "not full", ...). A waiting future embeds an
 *   ap_waiter (caller memory; nothing allocates) and links it with its
 *   waker; the side that makes progress wakes waiters from the head.
 *
 * USAGE (inside a primitive; the queues do exactly this through ap_waitop)
 *   static ap_poll my_poll(my_fut *f, ap_cx *cx) {            // the waiting side
 *       if (my_try(f->q) == AP_EMPTY) {
 *           ap_waitlist_register_cx(&f->q->wl, &f->w, cx);    // may lower cx->deadline
 *           if (my_try(f->q) == AP_EMPTY) return AP_PENDING;  // re-check after linking
 *       }
 *       ap_waitlist_cancel_pass(&f->q->wl, &f->w);  // done: if woken, wake the next
 *       return AP_READY;
 *   }
 *   static void my_put(my_q *q) {                              // the waking side
 *       // publish with an AP__PUB_MO RMW (release; seq_cst in the fallbacks), then look
 *       atomic_fetch_add_explicit(&q->items, 1, AP__PUB_MO);
 *       if (ap_waitlist_parked(&q->wl)) ap_waitlist_wake(&q->wl, 1);
 *   }
 *
 * GUARANTEES
 *   - FIFO: waiters are woken in registration order.
 *   - Wakers are called after the list lock is released, never under it.
 *   - ap_waitlist_cancel is O(1) and idempotent. When it returns, no wake
 *     call for that waiter is in progress or will start, so the waiter and
 *     whatever its waker points to may be reused. It reports whether the
 *     waiter had been woken, so the primitive can pass the wake on.
 *   - A zero ap_waitlist is a valid empty list; a zero ap_waiter is idle.
 *
 * THE LADDER   why a wake cannot be lost: after the API (below
 *              "---- implementation ----")
 *
 * WAITER STATES (owner = the thread polling the future)
 *   IDLE --register(owner)--> LINKED --wake--> NOTIFYING --wake returned--> NOTIFIED
 *   LINKED --cancel(owner)--> IDLE;  NOTIFYING/NOTIFIED --cancel/register--> IDLE
 *   (the owner waits out NOTIFYING: a wake call in progress still uses the
 *   node's waker, so the node must not be reused until it ends)
 *
 * CONCURRENCY   any thread may wake; register/cancel only by the waiter's owner.
 * PROGRESS      register/cancel/wake take a short internal lock (core.h:
 *               spin, then sched_yield); cancel of a node whose wake is in
 *               progress waits for that waker call to return.
 * COMPLEXITY    register, cancel: O(1); wake(n): O(n); has_waiters: one load.
 * MEMORY        caller-owned nodes; nothing allocates.
 * SEE ALSO      future.h (the contract), spsc.h and mpmc.h (users of ap_waitop)
 * STABILITY     experimental (0.x)
 */
#ifndef ASYNCPAT_WAITLIST_H
#define ASYNCPAT_WAITLIST_H

#include "core.h"
#include "future.h"

/* AP__HAVE_HEAVY: this build can run the waiting side's HEAVY barrier
 * (membarrier on Linux, or a verification build's override). The waiting
 * side honours a list's asym flag whenever it can, also in a translation
 * unit that does not use the asymmetric ladder itself (TSan, or
 * -DAP_NO_ASYM_BARRIER): units built both ways may share one object.
 * AP__ASYM: this unit's waking side uses LIGHT (see THE LADDER). */
#if defined(AP_BARRIER_HEAVY)
#define AP__HAVE_HEAVY 1
#elif defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#if defined(SYS_membarrier)
#define AP__HAVE_HEAVY 1
#endif
#endif
#ifndef AP__HAVE_HEAVY
#define AP__HAVE_HEAVY 0
#endif
#if AP__HAVE_HEAVY && !defined(AP_NO_ASYM_BARRIER) && !defined(AP__TSAN)
#define AP__ASYM 1
#else
#define AP__ASYM 0
#endif

/* AP__PUB_MO: the order of a waking side's publishing store or RMW.
 * Release is what the data needs; the fallback ladder needs seq_cst. */
#if AP__ASYM
#define AP__PUB_MO memory_order_release
#define AP__CHECK_MO memory_order_acquire
#else
#define AP__PUB_MO memory_order_seq_cst
#define AP__CHECK_MO memory_order_seq_cst
#endif
/* AP__CHECK_MO: the order of a load that a waiting side's re-check makes
 * of what the waking side publishes (acquire is what the data needs). */

#if AP__HAVE_HEAVY && !defined(AP_BARRIER_HEAVY)
#if defined(AP_BARRIER_LIGHT) || defined(AP_BARRIER_REGISTER)
#error "asyncpat: override AP_BARRIER_LIGHT, AP_BARRIER_HEAVY and AP_BARRIER_REGISTER together"
#endif
/* membarrier(2) commands (linux/membarrier.h; numbers are ABI). */
#define AP__MEMBARRIER_PRIVATE_EXPEDITED (1 << 3)
#define AP__MEMBARRIER_REGISTER_PRIVATE_EXPEDITED (1 << 4)
/* Idempotent per process (a syscall per call: ap_waitlist_init makes it);
 * true once this process may use HEAVY. */
AP_API bool ap__membarrier_register(void)
{
    return syscall(SYS_membarrier, AP__MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}
AP_API void ap__membarrier(void)
{
    /* Cannot fail once registered (the list's flag says we are); if it
     * ever did (a seccomp filter installed later), a wake could be lost,
     * so stop whatever AP_ASSERT is defined to. */
    long rc = syscall(SYS_membarrier, AP__MEMBARRIER_PRIVATE_EXPEDITED, 0, 0);
    AP_ASSERT(rc == 0);
#if defined(__GNUC__) || defined(__clang__)
    if (rc != 0)
        __builtin_trap(); /* also when AP_ASSERT is defined to nothing */
#endif
    (void)rc;
}
#define AP_BARRIER_LIGHT() atomic_signal_fence(memory_order_seq_cst)
#define AP_BARRIER_HEAVY() ap__membarrier()
#define AP_BARRIER_REGISTER() ap__membarrier_register()
#endif

enum {
    AP__WAITER_IDLE = 0,
    AP__WAITER_LINKED,
    AP__WAITER_NOTIFYING,
    AP__WAITER_NOTIFIED
};

typedef struct ap_waiter {
    struct ap_waiter *next, *prev; /* guarded by the list lock */
    ap_waker waker;                /* written by owner under the lock */
    AP_ATOMIC_T(uint32_t) state;        /* AP__WAITER_* */
    uint32_t unconfirmed;          /* owner only: linked, HEAVY still owed */
} ap_waiter;

typedef struct ap_waitlist {
    ap__lock lock;
    AP_ATOMIC_T(size_t) count; /* linked waiters; read without the lock */
    ap_waiter *head, *tail;
    uint32_t asym;        /* set by init: 1 = HEAVY is available (THE LADDER) */
    /* statistics (ap_waitlist_stats_get), written on the slow path only:
     * waits under the lock at each fresh link, wait_ns by the blocking
     * _wait helpers after they parked; read relaxed, without the lock */
    AP_ATOMIC_T(uint64_t) waits;   /* fresh links: times a caller queued */
    AP_ATOMIC_T(uint64_t) wait_ns; /* time parked in the _wait helpers */
} ap_waitlist;

/* A list from the initializer works; ap_waitlist_init makes its waking
 * side cheaper where membarrier is available (THE LADDER, fallbacks). */
#define AP_WAITLIST_INITIALIZER {{0}, 0, NULL, NULL, 0, 0, 0}
#define AP_WAITER_INITIALIZER {NULL, NULL, {NULL, NULL}, 0, 0}

/** ap_waitlist_init - an empty list; registers the process for the
 *  asymmetric barrier where it can (one syscall) */
AP_API void ap_waitlist_init(ap_waitlist *wl);
/** ap_waiter_init - an idle waiter (same as zero-initialised) */
AP_API void ap_waiter_init(ap_waiter *w);

/** ap_waitlist_stats - the waiting side's counters of one list (snapshot) */
typedef struct ap_waitlist_stats {
    uint64_t waiters; /* linked now */
    uint64_t waits;   /* fresh links since init: how often a caller queued */
    uint64_t wait_ns; /* ns parked in the blocking _wait helpers (their clock) */
} ap_waitlist_stats;
/** ap_waitlist_stats_get - relaxed snapshot of @wl's counters into *@out */
AP_API void ap_waitlist_stats_get(ap_waitlist *wl, ap_waitlist_stats *out);
/** ap__waitlist_waited - add @ns of parking to @wl's wait_ns (slow path) */
AP_API void ap__waitlist_waited(ap_waitlist *wl, uint64_t ns);

/**
 * ap_waitlist_register - link @w at the tail (or update its waker if linked)
 * Concurrency: by @w's owner only. Ordering: on a fresh link, count++ then
 * HEAVY (or a seq_cst fence), so a re-check after it pairs with the waking
 * side (see THE LADDER); a node already linked needs nothing more.
 */
AP_API void ap_waitlist_register(ap_waitlist *wl, ap_waiter *w, ap_waker waker);

/**
 * ap_waitlist_register_cx - what a future's poll calls: link @w with
 *                           cx->waker, deferring the waiting side's HEAVY
 * A fresh link on a list using the asymmetric barrier runs no HEAVY yet:
 * it lowers cx->deadline to cx->now + AP_WAIT_CONFIRM_NS ("unconfirmed").
 * Most waits end before that (the waker saw the count and woke us: a
 * hand-off pays no membarrier). A poll that finds @w still linked and
 * unconfirmed runs HEAVY then, before the caller's re-check, and sets no
 * deadline: only a confirmed waiter may wait without one. So a wake that
 * the LIGHT side missed costs at most AP_WAIT_CONFIRM_NS of latency, and
 * is never lost as long as the driver honours cx->deadline (the future
 * contract). Lists without the flag do their barrier at once.
 * Concurrency: by @w's owner only.
 */
AP_API void ap_waitlist_register_cx(ap_waitlist *wl, ap_waiter *w, ap_cx *cx);

/**
 * ap_waitlist_cancel - unlink @w if linked; wait out a wake in progress
 * Returns true if @w had been woken (its wake is then the caller's to pass
 * on), false if it was idle or still waiting. Idempotent.
 */
AP_API bool ap_waitlist_cancel(ap_waitlist *wl, ap_waiter *w);

/** ap_waitlist_wake - wake up to @n waiters from the head; returns how many */
AP_API size_t ap_waitlist_wake(ap_waitlist *wl, size_t n);

/**
 * ap_waitlist_wake_if - grant-style wake: from the head, take each waiter
 *                       for which @grant returns true; stop at the first
 *                       for which it returns false (strict FIFO: a large
 *                       request at the head is not overtaken)
 * @grant: library code run UNDER the list lock (never user code): it
 *         transfers whatever the waiter gets (permits, an item) into the
 *         waiter's own future state, then returns true
 *
 * Returns how many were taken; their wakers are called after the lock is
 * released. A granted waiter that then cancels sees ap_waitlist_cancel
 * return true and must give back what it was granted.
 */
AP_API size_t ap_waitlist_wake_if(ap_waitlist *wl, bool (*grant)(ap_waiter *w, void *ctx),
                                  void *ctx);

/** ap_waitlist_wake_all - wake every linked waiter; returns how many */
AP_API size_t ap_waitlist_wake_all(ap_waitlist *wl);

/** ap_waitlist_has_waiters - seq_cst snapshot of whether any waiter is linked */
AP_API bool ap_waitlist_has_waiters(ap_waitlist *wl);

/**
 * ap_waitlist_parked - the waking side's check, after publishing with an
 *                      AP__PUB_MO store or RMW: true if a waiter may be
 *                      parked (then call ap_waitlist_wake)
 * Costs a compiler barrier and one relaxed load where the asymmetric
 * barrier is in use (THE LADDER); a seq_cst fence or load elsewhere.
 */
AP_FORCE_INLINE bool ap_waitlist_parked(ap_waitlist *wl);

/**
 * ap__waitlist_fence_fast / ap__waitlist_fence_slow - the two halves of
 * the barrier, for a primitive's own store-then-load handshakes (spsc
 * close): fast = LIGHT, slow = HEAVY, chosen by the list's asym flag (a
 * seq_cst fence each when it is 0). With AP__ASYM 0 the fast half is a
 * no-op and the accesses around it must be seq_cst themselves
 * (AP__PUB_MO); the slow half still follows the flag.
 */
AP_FORCE_INLINE void ap__waitlist_fence_fast(const ap_waitlist *wl);
AP_API void ap__waitlist_fence_slow(const ap_waitlist *wl);

/** ap_waitlist_cancel_pass - cancel @w; if it had been woken, wake the next */
AP_API void ap_waitlist_cancel_pass(ap_waitlist *wl, ap_waiter *w);

/*
 * ap_waitop -- a ready-made future for "retry this non-blocking operation
 * until it stops saying FULL/EMPTY": what queue push/pop futures are. The
 * queue headers wrap it in their own typed future structs.
 *
 * status: AP_NOT_READY while pending; then the operation's result, or
 * AP_CANCELED after a cancel that came first. try_op answers AP_FULL or
 * AP_EMPTY for "wait for a wake", AP_AGAIN for "a peer is between two
 * steps of the same slot: poll again soon"; anything else completes the
 * operation with that status (try_op must not answer AP_NOT_READY).
 */
typedef struct ap_waitop {
    ap_future base; /* first: (ap_future *)op is the future */
    ap_waitlist *wl;
    ap_status (*try_op)(void *obj, void *arg);
    void *obj, *arg;
    ap_waiter waiter;
    ap_status status;
    uint32_t agains; /* consecutive AP_AGAIN answers, for the back-off */
} ap_waitop;

/** ap_waitop_init - prepare a wait operation (allocates nothing) */
AP_API void ap_waitop_init(ap_waitop *op, ap_waitlist *wl,
                           ap_status (*try_op)(void *obj, void *arg),
                           void *obj, void *arg);
/** ap_waitop_poll - poll; once AP_READY, op->status holds the result */
AP_API ap_poll ap_waitop_poll(ap_waitop *op, ap_cx *cx);
/** ap_waitop_status - AP_NOT_READY while pending, then the result (or AP_CANCELED) */
AP_API AP_NODISCARD ap_status ap_waitop_status(const ap_waitop *op);
/** ap_waitop_cancel - deregister, passing on a wake it had received; idempotent */
AP_API void ap_waitop_cancel(ap_waitop *op);
/**
 * ap_waitop_wait - drive it with ap_block_on_until
 * Returns the operation's result, or AP_TIMEDOUT (the op is then cancelled).
 */
AP_API AP_NODISCARD ap_status ap_waitop_wait(ap_waitop *op, ap_deadline deadline_ns);

/*
 * AP__WAITOP_FUTURE - the forwarders of a future built on ap_waitop, for a
 * primitive with a waitlist member @list and a non-blocking @try_v:
 * pfx##_fut_init, pfx##_poll, pfx##_cancel, pfx##_status and pfx##_wait.
 * Forwarding only (no logic), as the *_DEFINE generators; the primitive's
 * header declares and documents each function. AP__WAITOP_FUTURE_CLOCK
 * is the same for a primitive whose waits read a clock of its own:
 * @clock_of(q) is a const ap_clock * (pfx##_wait then drives the future
 * with ap_block_on_until_clock); AP__WAITOP_NO_CLOCK gives ap_now_ns's.
 */
#define AP__WAITOP_NO_CLOCK(q) ((const ap_clock *)NULL)
#define AP__WAITOP_FUTURE(pfx, fut_t, obj_t, list, try_v, arg_t)                        \
    AP__WAITOP_FUTURE_CLOCK(pfx, fut_t, obj_t, list, try_v, arg_t, AP__WAITOP_NO_CLOCK)
#define AP__WAITOP_FUTURE_CLOCK(pfx, fut_t, obj_t, list, try_v, arg_t, clock_of)        \
    AP_API ap_poll pfx##_poll(fut_t *f, ap_cx *cx) { return ap_waitop_poll(&f->op, cx); } \
    AP_API void pfx##_cancel(fut_t *f) { ap_waitop_cancel(&f->op); }                    \
    AP_API ap_status pfx##_status(const fut_t *f) { return ap_waitop_status(&f->op); }  \
    AP__FUTURE_VTABLE(pfx, fut_t, pfx##_poll, pfx##_cancel)                              \
    AP_API void pfx##_fut_init(fut_t *f, obj_t *q, arg_t arg)                           \
    {                                                                                    \
        AP_ASSERT(f != NULL && q != NULL);                                               \
        ap_waitop_init(&f->op, &q->list, try_v, q, (void *)(uintptr_t)arg);              \
        f->base.poll = pfx##_poll_v;                                                     \
        f->base.cancel = pfx##_cancel_v;                                                 \
    }                                                                                    \
    AP_API ap_status pfx##_wait(obj_t *q, arg_t arg, ap_deadline deadline_ns)           \
    {                                                                                    \
        fut_t f;                                                                         \
        /* one attempt first: only a caller that parks reads the clock */               \
        ap_status st0 = try_v(q, (void *)(uintptr_t)arg);                                \
        if (st0 != AP_FULL && st0 != AP_EMPTY && st0 != AP_AGAIN)                        \
            return st0;                                                                  \
        pfx##_fut_init(&f, q, arg);                                                      \
        uint64_t t0 = ap_clock_now(clock_of(q));                                         \
        ap_status tst = ap_block_on_until_clock(&f.op.base, deadline_ns, clock_of(q));   \
        ap__waitlist_waited(&q->list, ap_clock_now(clock_of(q)) - t0);                   \
        if (tst == AP_TIMEDOUT)                                                          \
            return AP_TIMEDOUT;                                                          \
        return f.op.status;                                                              \
    }

/*
 * ap_grant -- a queued request served by a grant: what a semaphore acquire,
 * a pool get and a connpool checkout future are. The primitive keeps an
 * ap_waitlist of requests; whoever makes something available (a release, a
 * put, a return, a cancel that gives a grant back) runs a grant pass: under
 * the list lock it hands what the head request needs to it (the primitive's
 * @grant callback), then the next, and stops at the first it cannot serve
 * (strict FIFO: nobody behind the head goes first, no barging). Wakers run
 * after the lock is released. The request's owner finds the grant at its
 * next poll; a request cancelled after its grant gives it back (@give_back),
 * which passes it to the next request.
 *
 * The waiting side of THE LADDER is ap_grant_poll's: it registers, then
 * runs a grant pass itself (the re-check), so a release that saw no waiter
 * is served by the waiter. The primitive's fast path (try_acquire, try_get)
 * returns AP_EMPTY while the list's count is non-zero, so it never
 * overtakes a queued request; its first poll tries that fast path and
 * queues only on AP_EMPTY.
 *
 * @grant, @can_serve, @closed and @give_back are library code of the
 * primitive (never user code). Concurrency: poll and cancel by the
 * request's owner; serve and dispatch by any thread.
 */
typedef struct ap_grant {
    ap_waiter waiter;
    AP_ATOMIC_T(uint32_t) granted; /* set (release) by the grant pass, under the list lock */
    uint32_t queued;               /* owner only: registered at least once */
} ap_grant;

typedef struct ap_grant_ops {
    /* UNDER the list lock, for the head request, not yet granted: move what
     * @g asks for from @obj into @g's future (an acquire operation on
     * @obj), then return true; false: nothing for it (the pass stops).
     * @ctx: what ap_grant_serve was given (NULL from dispatch). */
    bool (*grant)(void *obj, ap_grant *g, void *ctx);
    /* Without a lock: could a pass serve anybody (NULL: always try)? Its
     * load of @obj's state is the waiter's re-check of THE LADDER: use
     * AP__CHECK_MO (acquire; seq_cst in the fallback ladder). */
    bool (*can_serve)(void *obj, void *ctx);
    /* closed? A seq_cst load: the re-check against close, which stores
     * seq_cst and then wakes every request. */
    bool (*closed)(void *obj);
    /* @g was granted but cancelled before it completed: put what it holds
     * back into @obj and serve the next request (pass it on). */
    void (*give_back)(void *obj, ap_grant *g);
} ap_grant_ops;

/** ap_grant_init - a request not yet queued (allocates nothing) */
AP_API void ap_grant_init(ap_grant *g);

/**
 * ap_grant_serve - a grant pass: serve requests from the head, FIFO
 * Skipped when ops->can_serve says nobody can be served. Returns how many
 * were granted (or woken again: a granted request that re-registered).
 */
AP_API size_t ap_grant_serve(ap_waitlist *wl, const ap_grant_ops *ops, void *obj, void *ctx);

/** ap_grant_dispatch - ap_grant_serve(ctx NULL) if a request is queued
 *  (a seq_cst count load: for slow paths) */
AP_API void ap_grant_dispatch(ap_waitlist *wl, const ap_grant_ops *ops, void *obj);

/**
 * ap_grant_poll - the queued part of a request's poll
 * The primitive's poll calls it after its first attempt said AP_EMPTY, and
 * on every later poll. Returns AP_OK (@g was granted: it is off the list,
 * no wake for it is in progress, and the primitive completes the request
 * with what the grant moved), AP_CLOSED (closed before a grant), or
 * AP_NOT_READY (registered with cx->waker: return AP_PENDING).
 */
AP_API AP_NODISCARD ap_status ap_grant_poll(ap_waitlist *wl, const ap_grant_ops *ops,
                                            void *obj, ap_grant *g, ap_cx *cx);

/**
 * ap_grant_cancel - take a pending request off the list: a grant it had
 * goes back through ops->give_back (and on to the next request); with
 * none, the requests behind it are served (it may have held them up)
 * Call at most once, and only while the request is pending; a request
 * that never queued is left alone.
 */
AP_API void ap_grant_cancel(ap_waitlist *wl, const ap_grant_ops *ops, void *obj, ap_grant *g);

/* ---- implementation ---- */

/*
 * THE LADDER (why a wake cannot be lost)
 *   Both sides are a store followed by a load of what the other side
 *   stores (Dekker): the waker publishes state, then looks for waiters;
 *   the waiter links itself (count++), then re-checks the state. Without
 *   ordering, each load may miss the other's store and the waiter sleeps
 *   through the progress it waits for. Waiting is paid by the waiter:
 *
 *     waiting side (poll, slow)             waking side (push, release, ...)
 *     ap_waitlist_register:                 publish state: release store/RMW
 *       count++            (RMW)            ap_waitlist_parked:
 *       HEAVY barrier                         LIGHT barrier (compiler only)
 *     re-check the condition                  count, relaxed load: 0 -> done
 *     if still unmet: return AP_PENDING       else ap_waitlist_wake
 *
 *   HEAVY is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): before it
 *   returns, every thread of the process that is running has executed a
 *   full memory barrier (an IPI), and every other thread will pass one (a
 *   context switch) before it next runs. LIGHT only stops the compiler
 *   from moving the count load above the publishing store. Take any waker
 *   W and the waiter R. W's barrier point B (the IPI or the switch) falls
 *   in W's program order somewhere: if before W's count load, then the
 *   full barrier at B orders R's count++ (done before HEAVY started)
 *   before that load, so W sees count != 0 and wakes R; if after W's count
 *   load, then W's publishing store, which precedes the load in program
 *   order and is not reordered with it by the compiler (LIGHT), precedes
 *   B, so it is visible when HEAVY returns and R's re-check sees it. The
 *   argument is folly's asymmetricHeavyBarrier / asymmetricLightBarrier
 *   and liburcu's membarrier flavour (smp_mb_master / barrier()). So the
 *   fast path with nobody parked is its own release store plus one
 *   relaxed load: what a queue without waiting support costs.
 *
 *   Only a fresh link pays HEAVY: a node still LINKED (re-registered with
 *   a new waker, or re-polled after AP_AGAIN) had its barrier after its
 *   increment, the count stays non-zero while it is linked, so every later
 *   re-check of its owner is ordered too (tests/verify/verify_close.c,
 *   *_linked_repoll).
 *
 *   What HEAVY costs, and whom: one membarrier syscall (about 0.5-2 us
 *   on a 2-vCPU VM, several us when the other CPUs are busy), which sends
 *   an interrupt to every CPU currently running a thread of this process;
 *   recent kernels serialise expedited membarriers process-wide. Futures
 *   therefore defer it (ap_waitlist_register_cx): a fresh link asks to be
 *   re-polled AP_WAIT_CONFIRM_NS later instead, and only a waiter still
 *   linked then pays HEAVY (and re-checks) before it may wait without a
 *   deadline. A wake normally comes first (the waker saw the count), so a
 *   hand-off pays no membarrier; a wake the LIGHT side missed is late by at
 *   most AP_WAIT_CONFIRM_NS, never lost. A long wait pays one HEAVY and one
 *   extra poll. (ap_waitlist_register, for callers without a cx, pays
 *   HEAVY at once.)
 *   It covers threads of this process only (not a queue in memory shared
 *   with another process). ap_waitlist_init makes the registration
 *   syscall each time (idempotent; no global state is kept).
 *
 *   Fallbacks, each correct by itself:
 *   - membarrier registration refused at init (kernel before 4.14,
 *     seccomp returning an error, another OS): the list's asym flag is 0,
 *     LIGHT becomes a seq_cst fence and HEAVY a seq_cst fence (C11
 *     7.17.4: two SC fences order a store before them with a load after
 *     the other). Correct, slower: two fences per spsc push.
 *   - a list made with AP_WAITLIST_INITIALIZER or zero bytes, not by
 *     ap_waitlist_init, behaves the same way (flag 0).
 *   - ThreadSanitizer (TSan models neither fences nor membarrier), non-
 *     Linux builds, or -DAP_NO_ASYM_BARRIER (AP__ASYM 0): the waking side
 *     publishes with a seq_cst operation (AP__PUB_MO) and loads the count
 *     seq_cst; with the waiter's seq_cst increment they fall in one total
 *     order S: if the waker's load misses the increment, it precedes it in
 *     S, so the publication does too, and the waiter's seq_cst re-check
 *     sees it. (mpmc's seq_cst operation is its claim CAS, not the stamp
 *     store: a re-check that sees the claim without the stamp answers
 *     AP_AGAIN, and ap_waitop_poll then re-polls itself.)
 *   - Units built both ways may share one object: the waiting side always
 *     follows the list's flag (HEAVY when it is set, in any unit that can
 *     run it), so a waker using LIGHT is always paired with HEAVY.
 *   The verification scheduler (tests/verify/vf.h) models LIGHT as a
 *   scheduling point that drains nothing and HEAVY as one that drains
 *   every thread's store buffer at one instant (TSO mode; exact for two
 *   threads, an approximation beyond).
 */

AP_API void ap_waitlist_init(ap_waitlist *wl)
{
    AP_ATOMIC_INIT(&wl->lock.held, 0u);
    AP_ATOMIC_INIT(&wl->count, 0u);
    AP_ATOMIC_INIT(&wl->waits, 0u);
    AP_ATOMIC_INIT(&wl->wait_ns, 0u);
    wl->head = wl->tail = NULL;
#if AP__ASYM
    wl->asym = AP_BARRIER_REGISTER() ? 1u : 0u;
#else
    wl->asym = 0;
#endif
}

AP_API void ap_waitlist_stats_get(ap_waitlist *wl, ap_waitlist_stats *out)
{
    AP_ASSERT(wl != NULL && out != NULL);
    out->waiters = AP_ATOMIC_LOAD(&wl->count, memory_order_relaxed);
    out->waits = AP_ATOMIC_LOAD(&wl->waits, memory_order_relaxed);
    out->wait_ns = AP_ATOMIC_LOAD(&wl->wait_ns, memory_order_relaxed);
}

AP_API void ap__waitlist_waited(ap_waitlist *wl, uint64_t ns)
{
    /* relaxed: a counter; several parked callers may add at once */
    (void)AP_ATOMIC_FETCH_ADD(&wl->wait_ns, ns, memory_order_relaxed);
}

AP_FORCE_INLINE void ap__waitlist_fence_fast(const ap_waitlist *wl)
{
#if AP__ASYM
    if (AP_LIKELY(wl->asym))
        AP_BARRIER_LIGHT();
    else
        AP_ATOMIC_FENCE(memory_order_seq_cst);
#else
    (void)wl;
#endif
}

AP_API void ap__waitlist_fence_slow(const ap_waitlist *wl)
{
    /* The list's flag decides, not this unit's mode: a unit built with
     * AP__ASYM 0 still pays HEAVY on a list whose wakers may use LIGHT. */
#if AP__HAVE_HEAVY
    if (AP_LIKELY(wl->asym)) {
        AP_BARRIER_HEAVY();
        return;
    }
#endif
#if !defined(AP__TSAN) /* TSan rejects fences (gcc -Wtsan); its seq_cst
                         * operations order the ladder there */
    AP_ATOMIC_FENCE(memory_order_seq_cst);
#endif
    (void)wl;
}

AP_FORCE_INLINE bool ap_waitlist_parked(ap_waitlist *wl)
{
    ap__waitlist_fence_fast(wl);
    /* relaxed with the barrier (THE LADDER); seq_cst in the fallback */
    return AP_ATOMIC_LOAD(&wl->count, AP__ASYM ? memory_order_relaxed
                                               : memory_order_seq_cst) != 0;
}

AP_API void ap_waiter_init(ap_waiter *w)
{
    w->next = w->prev = NULL;
    w->waker = AP_WAKER_NONE;
    AP_ATOMIC_INIT(&w->state, (uint32_t)AP__WAITER_IDLE);
    w->unconfirmed = 0;
}

/* Owner side: if a waker has taken @w, wait until its wake call returned,
 * then make @w idle. Returns true if it had been woken. */
AP_API bool ap__waiter_settle(ap_waiter *w)
{
    unsigned spins = 0;
    uint32_t s;
    /* acquire: pairs with the release store of NOTIFIED in
     * ap__waitlist_wake_taken; the waker's last use of @w happens-before
     * our reuse of it. */
    while ((s = AP_ATOMIC_LOAD(&w->state, memory_order_acquire)) ==
           AP__WAITER_NOTIFYING) {
        /* The waker is inside a wake call, often a futex syscall; if it
         * shares our CPU, only yielding lets it finish. */
        if (++spins < 8)
            AP_CPU_RELAX();
        else
            sched_yield();
    }
    if (s == AP__WAITER_NOTIFIED) {
        AP_ATOMIC_STORE(&w->state, (uint32_t)AP__WAITER_IDLE, memory_order_relaxed);
        return true;
    }
    return false;
}

/* Link @w (or update its waker); true if this was a fresh link. */
AP_API bool ap__waitlist_link(ap_waitlist *wl, ap_waiter *w, ap_waker waker)
{
    uint32_t s;
    for (;;) {
        (void)ap__waiter_settle(w);
        AP_TEST_YIELD(); /* a waker may take @w right here */
        ap__lock_acquire(&wl->lock);
        s = AP_ATOMIC_LOAD(&w->state, memory_order_relaxed);
        if (s == AP__WAITER_IDLE || s == AP__WAITER_LINKED)
            break;
        /* A waker took @w between the settle and the lock and may still
         * be using it: let it finish first. (The caller re-checks its
         * condition after registering, so the consumed wake is not lost.) */
        ap__lock_release(&wl->lock);
    }
    w->waker = waker;
    if (s == AP__WAITER_IDLE) {
        w->next = NULL;
        w->prev = wl->tail;
        if (wl->tail)
            wl->tail->next = w;
        else
            wl->head = w;
        wl->tail = w;
        AP_ATOMIC_STORE(&w->state, (uint32_t)AP__WAITER_LINKED, memory_order_relaxed);
        /* seq_cst: the waiting side's half of THE LADDER. */
        AP_ATOMIC_FETCH_ADD(&wl->count, 1u, memory_order_seq_cst);
        /* statistics, relaxed: the lock makes us its only writer, so a
         * load and a store (no RMW); readers take a snapshot */
        AP_ATOMIC_STORE(&wl->waits, AP_ATOMIC_LOAD(&wl->waits, memory_order_relaxed) + 1u,
                        memory_order_relaxed);
    }
    ap__lock_release(&wl->lock);
    return s == AP__WAITER_IDLE;
}

AP_API void ap_waitlist_register(ap_waitlist *wl, ap_waiter *w, ap_waker waker)
{
    bool fresh = ap__waitlist_link(wl, w, waker);
    /* The waiting side's barrier (THE LADDER): HEAVY orders the increment
     * before every waker's count load or makes the waker's publication
     * visible to the caller's re-check. In the fallbacks a seq_cst fence
     * (C11 7.17.3: a load after an SC fence that follows the count RMW in
     * S sees every SC write that precedes the fence). Slow path only, and
     * only for a fresh link: a node still LINKED had its barrier after its
     * increment, which orders every later re-check of its owner as well
     * (the count stays non-zero while it is linked). */
    if (fresh || w->unconfirmed) {
        ap__waitlist_fence_slow(wl);
        w->unconfirmed = 0;
    }
}

AP_API void ap_waitlist_register_cx(ap_waitlist *wl, ap_waiter *w, ap_cx *cx)
{
    bool fresh = ap__waitlist_link(wl, w, cx->waker);
    if (fresh && wl->asym) {
        /* HEAVY deferred: re-poll us by then (see the doc above) */
        w->unconfirmed = 1;
        ap_cx_wake_at(cx, ap_deadline_after(cx->now, AP_WAIT_CONFIRM_NS));
    } else if (fresh || w->unconfirmed) {
        /* a fresh link without the flag (fence now), or a re-poll of an
         * unconfirmed link: HEAVY before the caller's re-check */
        ap__waitlist_fence_slow(wl);
        w->unconfirmed = 0;
    }
}

/* Under the lock: unlink a LINKED waiter. */
AP_API void ap__waitlist_unlink(ap_waitlist *wl, ap_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        wl->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        wl->tail = w->prev;
    w->next = w->prev = NULL;
    AP_ATOMIC_FETCH_SUB(&wl->count, 1u, memory_order_relaxed);
}

AP_API bool ap_waitlist_cancel(ap_waitlist *wl, ap_waiter *w)
{
    /* Only the owner moves IDLE -> LINKED, so IDLE seen here is stable. */
    if (AP_ATOMIC_LOAD(&w->state, memory_order_acquire) == AP__WAITER_IDLE)
        return false;
    ap__lock_acquire(&wl->lock);
    bool linked = AP_ATOMIC_LOAD(&w->state, memory_order_relaxed) == AP__WAITER_LINKED;
    if (linked) {
        ap__waitlist_unlink(wl, w);
        AP_ATOMIC_STORE(&w->state, (uint32_t)AP__WAITER_IDLE, memory_order_relaxed);
    }
    ap__lock_release(&wl->lock);
    return linked ? false : ap__waiter_settle(w);
}

/* Under the lock: take up to n waiters from the head onto a private chain
 * (through ->next), marking them NOTIFYING. */
AP_API ap_waiter *ap__waitlist_take(ap_waitlist *wl, size_t n, size_t *taken)
{
    ap_waiter *first = NULL, *last = NULL;
    size_t k = 0;
    while (k < n && wl->head) {
        ap_waiter *w = wl->head;
        ap__waitlist_unlink(wl, w);
        AP_ATOMIC_STORE(&w->state, (uint32_t)AP__WAITER_NOTIFYING, memory_order_relaxed);
        if (last)
            last->next = w;
        else
            first = w;
        last = w;
        k++;
    }
    *taken = k;
    return first;
}

/* Outside the lock: call each taken waiter's waker, then release the node. */
AP_API void ap__waitlist_wake_taken(ap_waiter *w)
{
    while (w) {
        ap_waiter *next = w->next;
        ap_waker k = w->waker;
        w->next = NULL;
        ap_waker_wake(k);
        /* release: pairs with the acquire in ap__waiter_settle; after this
         * store we never touch @w again. */
        AP_ATOMIC_STORE(&w->state, (uint32_t)AP__WAITER_NOTIFIED, memory_order_release);
        w = next;
    }
}

AP_API size_t ap_waitlist_wake(ap_waitlist *wl, size_t n)
{
    /* seq_cst: the waking side's half of THE LADDER. */
    if (n == 0 || AP_ATOMIC_LOAD(&wl->count, memory_order_seq_cst) == 0)
        return 0;
    size_t k;
    ap__lock_acquire(&wl->lock);
    ap_waiter *chain = ap__waitlist_take(wl, n, &k);
    ap__lock_release(&wl->lock);
    AP_TEST_YIELD(); /* taken but not yet woken: owners must wait for us */
    ap__waitlist_wake_taken(chain);
    return k;
}

AP_API size_t ap_waitlist_wake_if(ap_waitlist *wl, bool (*grant)(ap_waiter *w, void *ctx),
                                  void *ctx)
{
    ap_waiter *first = NULL, *last = NULL;
    size_t k = 0;
    ap__lock_acquire(&wl->lock);
    while (wl->head && grant(wl->head, ctx)) {
        size_t one;
        ap_waiter *w = ap__waitlist_take(wl, 1, &one);
        if (last)
            last->next = w;
        else
            first = w;
        last = w;
        k++;
    }
    ap__lock_release(&wl->lock);
    AP_TEST_YIELD();
    ap__waitlist_wake_taken(first);
    return k;
}

/* The waking side's slow path, out of line (AP__COLD): a fast path calls
 * it after ap_waitlist_parked said someone may be parked. */
AP__COLD void ap__waitlist_wake_cold(ap_waitlist *wl, size_t n)
{
    (void)ap_waitlist_wake(wl, n);
}

AP_API size_t ap_waitlist_wake_all(ap_waitlist *wl)
{
    return ap_waitlist_wake(wl, SIZE_MAX);
}

AP_API bool ap_waitlist_has_waiters(ap_waitlist *wl)
{
    return AP_ATOMIC_LOAD(&wl->count, memory_order_seq_cst) != 0;
}

AP_API void ap_waitlist_cancel_pass(ap_waitlist *wl, ap_waiter *w)
{
    if (ap_waitlist_cancel(wl, w))
        (void)ap_waitlist_wake(wl, 1);
}

AP__FUTURE_VTABLE(ap__waitop, ap_waitop, ap_waitop_poll, ap_waitop_cancel)

AP_API void ap_waitop_init(ap_waitop *op, ap_waitlist *wl,
                           ap_status (*try_op)(void *obj, void *arg),
                           void *obj, void *arg)
{
    op->base.poll = ap__waitop_poll_v;
    op->base.cancel = ap__waitop_cancel_v;
    op->wl = wl;
    op->try_op = try_op;
    op->obj = obj;
    op->arg = arg;
    ap_waiter_init(&op->waiter);
    op->status = AP_NOT_READY;
    op->agains = 0;
}

AP_API ap_poll ap_waitop_poll(ap_waitop *op, ap_cx *cx)
{
    if (op->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    /* A wake that came before this poll is for the attempt made now. */
    (void)ap__waiter_settle(&op->waiter);
    ap_status st = op->try_op(op->obj, op->arg);
    if (st == AP_FULL || st == AP_EMPTY) {
        ap_waitlist_register_cx(op->wl, &op->waiter, cx);
        AP_TEST_YIELD(); /* between registering and re-checking */
        st = op->try_op(op->obj, op->arg);
    }
    if (st == AP_FULL || st == AP_EMPTY) {
        op->agains = 0;
        return AP_PENDING;
    }
    if (st == AP_AGAIN) {
        /* A peer is between claiming and publishing. Stay registered, so
         * its publication wakes us in the usual case; but the ladder does
         * not cover a peer that already looked for waiters, so also ask
         * to be re-polled: at once a few times, then backing off through
         * cx->deadline (1 us doubling to ~1 ms), so a preempted peer does
         * not turn this waiter into a spinner. */
        ap_waitlist_register_cx(op->wl, &op->waiter, cx);
        if (op->agains < 4) {
            ap_waker_wake(cx->waker);
        } else {
            unsigned shift = op->agains - 4 < 10 ? op->agains - 4 : 10;
            ap_cx_wake_at(cx, ap_deadline_after(cx->now, AP_NS_PER_US << shift));
        }
        op->agains++;
        return AP_PENDING;
    }
    /* Done. A wake that came during this poll may be for progress we did
     * not use (ours came from an earlier one while we were still linked,
     * and the waker took us because we were at the head): pass it on, or
     * the waiter behind us sleeps through a free slot. Found by the
     * scheduler (tests/verify, mpmc_2p1c_cap1). */
    ap_waitlist_cancel_pass(op->wl, &op->waiter);
    AP_ASSERT(st != AP_NOT_READY); /* it would read as "still pending" */
    op->status = st;
    return AP_READY;
}

AP_API ap_status ap_waitop_status(const ap_waitop *op)
{
    return op->status;
}

AP_API void ap_waitop_cancel(ap_waitop *op)
{
    ap_waitlist_cancel_pass(op->wl, &op->waiter);
    if (op->status == AP_NOT_READY)
        op->status = AP_CANCELED;
}

AP_API ap_status ap_waitop_wait(ap_waitop *op, ap_deadline deadline_ns)
{
    if (ap_block_on_until(&op->base, deadline_ns) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return op->status;
}

/* ---- grant queue ---- */

AP_API void ap_grant_init(ap_grant *g)
{
    ap_waiter_init(&g->waiter);
    AP_ATOMIC_INIT(&g->granted, 0u);
    g->queued = 0;
}

typedef struct ap__grant_pass {
    const ap_grant_ops *ops;
    void *obj, *ctx;
} ap__grant_pass;

/* ap_waitlist_wake_if's callback, UNDER the list lock, for the head. */
AP_API bool ap__grant_one(ap_waiter *w, void *pass)
{
    ap__grant_pass *p = (ap__grant_pass *)pass;
    ap_grant *g = AP_CONTAINER_OF(w, ap_grant, waiter);
    /* relaxed: written only under this lock. A granted request that raced
     * its re-registration back into the list must not be granted twice;
     * just wake it again. */
    if (AP_ATOMIC_LOAD(&g->granted, memory_order_relaxed) != 0)
        return true;
    if (!p->ops->grant(p->obj, g, p->ctx))
        return false; /* strict FIFO: nobody behind the head goes first */
    /* release: pairs with the acquire loads in ap__grant_check and
     * ap_grant_cancel; carries what the grant moved (and the edge of the
     * acquire operation that took it) to the request's owner. */
    AP_ATOMIC_STORE(&g->granted, 1u, memory_order_release);
    return true;
}

AP_API size_t ap_grant_serve(ap_waitlist *wl, const ap_grant_ops *ops, void *obj, void *ctx)
{
    /* Nothing to hand out (or closed): skip the lock. */
    if (ops->can_serve != NULL && !ops->can_serve(obj, ctx))
        return 0;
    ap__grant_pass pass = {ops, obj, ctx};
    return ap_waitlist_wake_if(wl, ap__grant_one, &pass);
}

AP_API void ap_grant_dispatch(ap_waitlist *wl, const ap_grant_ops *ops, void *obj)
{
    if (ap_waitlist_has_waiters(wl))
        (void)ap_grant_serve(wl, ops, obj, NULL);
}

/* A queued request: finished (granted, or closed)? Then it is off the
 * list and no wake for it is in progress. AP_OK, AP_CLOSED or
 * AP_NOT_READY. */
AP_API ap_status ap__grant_check(ap_waitlist *wl, const ap_grant_ops *ops, void *obj,
                                 ap_grant *g)
{
    /* acquire: pairs with the release store in ap__grant_one. */
    if (AP_ATOMIC_LOAD(&g->granted, memory_order_acquire) != 0) {
        (void)ap_waitlist_cancel(wl, &g->waiter); /* waits out the wake */
        return AP_OK;
    }
    /* the ladder's re-check against close (ops->closed loads seq_cst) */
    if (ops->closed(obj)) {
        (void)ap_waitlist_cancel(wl, &g->waiter);
        /* Off the list now, so no grant can start; one that came first is
         * visible (its store precedes the lock or the NOTIFIED release that
         * cancel synchronised with). acquire: as above. */
        return AP_ATOMIC_LOAD(&g->granted, memory_order_acquire) != 0 ? AP_OK : AP_CLOSED;
    }
    return AP_NOT_READY;
}

AP_API ap_status ap_grant_poll(ap_waitlist *wl, const ap_grant_ops *ops, void *obj,
                               ap_grant *g, ap_cx *cx)
{
    if (g->queued) {
        ap_status st = ap__grant_check(wl, ops, obj, g);
        if (st != AP_NOT_READY)
            return st;
    }
    g->queued = 1;
    /* Link (or update the waker), then re-check by running a grant pass
     * ourselves: the waiting side of the ladder. A grant that lands between
     * the caller's attempt and this register is caught by the check below. */
    ap_waitlist_register_cx(wl, &g->waiter, cx);
    AP_TEST_YIELD(); /* registered, not yet re-checked */
    ap_grant_dispatch(wl, ops, obj);
    return ap__grant_check(wl, ops, obj, g);
}

AP_API void ap_grant_cancel(ap_waitlist *wl, const ap_grant_ops *ops, void *obj, ap_grant *g)
{
    if (!g->queued)
        return;
    /* After this no grant can reach us and no wake is in progress. */
    (void)ap_waitlist_cancel(wl, &g->waiter);
    /* acquire: pairs with the release store in ap__grant_one. */
    if (AP_ATOMIC_LOAD(&g->granted, memory_order_acquire) != 0)
        ops->give_back(obj, g); /* give back, pass on */
    else
        ap_grant_dispatch(wl, ops, obj); /* we may have held up the requests behind us */
}

#endif /* ASYNCPAT_WAITLIST_H */
