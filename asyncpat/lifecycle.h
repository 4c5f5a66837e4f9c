/*
 * asyncpat/lifecycle.h -- service lifecycle: start, run, drain, stop
 *
 * PATTERN
 *   The state machine of a component that starts, serves operations and
 *   stops (Guava's Service, a server's graceful shutdown), with the gate
 *   that makes "stop" safe: every operation brackets itself with
 *   ap_life_enter / ap_life_leave, and once a stop is requested no enter
 *   succeeds, so the in-flight count can only fall. A drain future
 *   completes when it reaches zero; then nothing runs and nothing can
 *   start, and the owner tears down and calls ap_life_terminated.
 *
 *     NEW --start--> STARTING --started(ok)--> RUNNING --stop--> STOPPING
 *      |                |  \--started(!ok)--> FAILED     (drain to 0) |
 *      |                \--stop--> STOPPING (started() then: CLOSED)  |
 *      \--stop--> TERMINATED <------------------ terminated ---------/
 *     fail: any state not yet TERMINATED/FAILED --> FAILED
 *
 *   The library does no starting or stopping itself (no runtime): the
 *   owner does the work between the calls; the lifecycle makes the state
 *   and the drain exact and lets anybody wait for them. State and
 *   in-flight count share one atomic word (count << 4, a bit saying a start
 *   is in progress, and the state), so enter
 *   and leave are one CAS / one fetch_sub, and "enter succeeded" and
 *   "stop was requested" are ordered by that word.
 *
 * USAGE (open_sockets, serve, close_sockets and deadline are the caller's)
 *   static ap_life life = AP_LIFE_INITIALIZER;
 *   // owner: start, then report whether starting worked
 *   if (ap_life_start(&life) != AP_OK || ap_life_started(&life, open_sockets()) != AP_OK)
 *       abort();
 *   // each worker, per request: refused unless RUNNING
 *   if (ap_life_enter(&life) == AP_OK) { serve(); ap_life_leave(&life); }
 *   // stop: refuse new entries, wait for those inside, then end
 *   if (ap_life_stop(&life) != AP_OK) return; // a stop or a failure came first
 *   if (ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, deadline) == AP_OK) {
 *       close_sockets();
 *       if (ap_life_terminated(&life) != AP_OK) abort();
 *   }
 *
 * GUARANTEES (invariants the tests check)
 *   - transitions follow the diagram only; a call that does not apply in
 *     the current state changes nothing and says why (see ERRORS)
 *   - no enter succeeds after the stop (or fail) that moved the state out
 *     of RUNNING: an enter is linearized at its CAS on the word
 *   - the drain future completes only when the state refuses enters, the
 *     in-flight count is 0 and no start is in progress (a stop during the
 *     start waits for ap_life_started): from then on nothing is inside and
 *     nothing can come in (quiescence is final); ap_life_terminated
 *     succeeds only then
 *   - no lost wakeup: every waiter sees the state it waits for, or the
 *     state that makes it unreachable (AP_CLOSED)
 *
 * CONCURRENCY    start/started/stop/terminated/fail  enter/leave  wait futures  state
 *   any of them              yes                          yes          yes          yes
 *   leave only by a caller whose enter returned AP_OK. A future is polled
 *   and cancelled by one thread at a time (future.h).
 *   Progress: enter, leave and the transitions are lock-free (a CAS loop
 *   that retries only when another thread changed the word); a transition
 *   or a leave that finds waiters, and a waiting future, take the waiter
 *   list's short lock.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   O(1) per call; wakes: O(waiters) per state change
 * MEMORY       the ap_life struct only (caller memory); nothing allocates
 * ERRORS       start: AP_INVAL (already started), AP_CLOSED (stopped or
 *                failed first)
 *              started: AP_CLOSED (a stop or failure came during the
 *                start, ok or not: the state stays; undo the start, then
 *                after a stop call ap_life_terminated), AP_INVAL (no start
 *                in progress)
 *              stop: AP_CLOSED (already stopping, terminated or failed:
 *                nothing changed)
 *              terminated: AP_NOT_READY (operations still inside), AP_INVAL
 *                (no stop requested)
 *              fail: AP_CLOSED (already terminated or failed)
 *              enter: AP_NOT_READY (not running yet), AP_CLOSED (stopping,
 *                terminated or failed)
 *              wait futures: AP_NOT_READY while pending, then AP_OK,
 *                AP_CLOSED (the event can no longer
 *                happen), AP_CANCELED, AP_INVAL (unknown event)
 *              leave without an enter trips AP_ASSERT
 * WAKE ORDER   every waiter is woken at each state change and when the
 *              drain reaches zero; each re-checks its own event
 * CONFIG       AP_ASSERT, AP_TEST_YIELD
 * SEE ALSO     waitlist.h (the ladder), tests/test_lifecycle.c,
 *              tests/stress/stress_lifecycle.c, tests/verify/verify_lifecycle.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_LIFECYCLE_H
#define ASYNCPAT_LIFECYCLE_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** ap_life_state - the states; the numbers are stable */
typedef enum ap_life_state {
    AP_LIFE_STATE_NEW = 0,
    AP_LIFE_STATE_STARTING = 1,
    AP_LIFE_STATE_RUNNING = 2,
    AP_LIFE_STATE_STOPPING = 3,
    AP_LIFE_STATE_TERMINATED = 4,
    AP_LIFE_STATE_FAILED = 5
} ap_life_state;

/** ap_life_event - what a wait future waits for */
typedef enum ap_life_event {
    AP_LIFE_EVENT_RUNS = 1,      /* RUNNING (AP_CLOSED if it stopped or failed first) */
    AP_LIFE_EVENT_DRAINED = 2,   /* enters refused and nobody inside (STOPPING or FAILED
                              with 0 in flight, or TERMINATED) */
    AP_LIFE_EVENT_TERMINATES = 3 /* TERMINATED (AP_CLOSED if it failed) */
} ap_life_event;

typedef struct ap_life {
    AP_ATOMIC_T(uint64_t) word; /* in-flight << 4 | START_PENDING << 3 | ap_life_state */
    ap_waitlist wl;
} ap_life;

#define AP_LIFE_INITIALIZER {0, AP_WAITLIST_INITIALIZER}

/** a future waiting for an ap_life_event (an ap_waitop underneath) */
typedef struct ap_life_wait_fut {
    ap_future base; /* the future (every future type has .base) */
    ap_waitop op;
} ap_life_wait_fut;

/** ap_life_init - a NEW lifecycle with nobody inside (same as the initializer) */
AP_API void ap_life_init(ap_life *l);

/** ap_life_fini - end of life; frees nothing. Nobody may be inside and no
 *  future may be waiting (AP_ASSERT in every build); any later call but
 *  ap_life_init trips AP_ASSERT */
AP_API void ap_life_fini(ap_life *l);

/** ap_life_state_of - the current state (a snapshot) */
AP_API ap_life_state ap_life_state_of(ap_life *l);
/** ap_life_in_flight - operations inside now (a snapshot) */
AP_API size_t ap_life_in_flight(ap_life *l);

/**
 * ap_life_stats - counters (ap_life_stats_get; a relaxed snapshot, exact at
 * quiescence). state and in_flight are read off the one word (one load, so
 * they agree with each other); the rest is the waiting side's, written only
 * when a wait future queues or ap_life_wait parks. enter and leave count
 * nothing more than before.
 */
typedef struct ap_life_stats {
    uint64_t state;     /* the ap_life_state now */
    uint64_t in_flight; /* operations inside now (successful enters not yet left) */
    uint64_t starting;  /* 1 while a start is in progress (ap_life_start .. _started) */
    uint64_t waiters;   /* wait futures queued now */
    uint64_t waits;     /* times a wait queued (a future or ap_life_wait) */
    uint64_t wait_ns;   /* ns parked in ap_life_wait (ap_now_ns; only callers
                         * that parked) */
} ap_life_stats;
/** ap_life_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_life_stats_get(ap_life *l, ap_life_stats *out);

/** ap_life_start - NEW -> STARTING: the caller now starts the component */
AP_API AP_NODISCARD ap_status ap_life_start(ap_life *l);
/**
 * ap_life_started - the start of ap_life_start ends: STARTING -> RUNNING
 * (@ok) or FAILED (!@ok). Returns AP_CLOSED if a stop or a failure came
 * during the start, whatever @ok (the state stays; undo the start, then,
 * after a stop, call ap_life_terminated: the drain waited for this call),
 * AP_INVAL if no start is in progress (nothing changed).
 */
AP_API AP_NODISCARD ap_status ap_life_started(ap_life *l, bool ok);
/**
 * ap_life_stop - request a stop: RUNNING or STARTING -> STOPPING, NEW ->
 * TERMINATED. From here no enter succeeds. AP_CLOSED: a stop or a failure
 * came first (nothing changed). Idempotent.
 */
AP_API AP_NODISCARD ap_status ap_life_stop(ap_life *l);
/** ap_life_terminated - STOPPING with nobody inside -> TERMINATED */
AP_API AP_NODISCARD ap_status ap_life_terminated(ap_life *l);
/** ap_life_fail - any state but TERMINATED/FAILED -> FAILED (enters refused) */
AP_API AP_NODISCARD ap_status ap_life_fail(ap_life *l);

/**
 * ap_life_enter - an operation begins: AP_OK only while RUNNING; the
 * caller must then call ap_life_leave exactly once
 */
AP_API AP_NODISCARD ap_status ap_life_enter(ap_life *l);
/** ap_life_leave - the operation of a successful enter ends */
AP_API void ap_life_leave(ap_life *l);

/** wait futures: init, poll, cancel, status (AP_NOT_READY while pending) */
AP_API void ap_life_wait_fut_init(ap_life_wait_fut *f, ap_life *l, ap_life_event ev);
AP_API ap_poll ap_life_wait_poll(ap_life_wait_fut *f, ap_cx *cx);
AP_API void ap_life_wait_cancel(ap_life_wait_fut *f);
AP_API AP_NODISCARD ap_status ap_life_wait_status(const ap_life_wait_fut *f);
/** ap_life_wait - block this thread; AP_OK, AP_CLOSED, AP_INVAL or AP_TIMEDOUT.
 *  @deadline_ns is on ap_now_ns()'s clock: the lifecycle takes no `now`
 *  anywhere, so it has no clock of its own (time.h, CLOCKS); to wait on
 *  another, drive a wait future with ap_block_on_until_clock. */
AP_API AP_NODISCARD ap_status ap_life_wait(ap_life *l, ap_life_event ev,
                                           ap_deadline deadline_ns);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Every change of the word is a seq_cst RMW, so the word's modification
 *   order is the lifecycle's history: whatever the starter did before
 *   ap_life_started(ok) happens-before every successful enter; whatever an
 *   operation did before its leave happens-before the drain future's
 *   completion (and ap_life_terminated). Waking follows THE LADDER of
 *   waitlist.h: a change is a seq_cst RMW, then a seq_cst look for waiters;
 *   a waiter registers, then re-reads the word (seq_cst).
 */

#define AP__LIFE_STATE(w) ((ap_life_state)((w) & 7u))
#define AP__LIFE_SP ((uint64_t)8)   /* a start is in progress: start() .. started() */
#define AP__LIFE_ONE ((uint64_t)16) /* one operation in flight */

AP_API void ap_life_init(ap_life *l)
{
    AP_ASSERT(l != NULL);
    AP_ATOMIC_INIT(&l->word, (uint64_t)AP_LIFE_STATE_NEW);
    ap_waitlist_init(&l->wl);
}

#define AP__LIFE_DEAD 7u /* the state field after fini */

AP_API void ap_life_fini(ap_life *l)
{
    AP_ASSERT(l != NULL);
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_relaxed);
    AP_ASSERT(AP__LIFE_STATE(w) != AP__LIFE_DEAD); /* fini twice */
    AP_ASSERT(w / AP__LIFE_ONE == 0);              /* an operation still inside */
    AP_ASSERT(!ap_waitlist_has_waiters(&l->wl));   /* a future still waiting */
    AP_ATOMIC_STORE(&l->word, (uint64_t)AP__LIFE_DEAD, memory_order_relaxed);
}

AP_API ap_life_state ap_life_state_of(ap_life *l)
{
    AP_ASSERT(l != NULL);
    /* relaxed: a snapshot for display and tests */
    return AP__LIFE_STATE(AP_ATOMIC_LOAD(&l->word, memory_order_relaxed));
}

AP_API size_t ap_life_in_flight(ap_life *l)
{
    AP_ASSERT(l != NULL);
    return (size_t)(AP_ATOMIC_LOAD(&l->word, memory_order_relaxed) / AP__LIFE_ONE);
}

AP_API void ap_life_stats_get(ap_life *l, ap_life_stats *out)
{
    ap_waitlist_stats ws;
    AP_ASSERT(l != NULL && out != NULL);
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->state = (uint64_t)AP__LIFE_STATE(w);
    out->in_flight = w / AP__LIFE_ONE;
    out->starting = (w & AP__LIFE_SP) != 0;
    ap_waitlist_stats_get(&l->wl, &ws);
    out->waiters = ws.waiters;
    out->waits = ws.waits;
    out->wait_ns = ws.wait_ns;
}

/* The waking side of the ladder, after a seq_cst change of the word. */
AP_API void ap__life_wake(ap_life *l)
{
    AP_TEST_YIELD(); /* changed, waiters not yet looked for */
    if (ap_waitlist_has_waiters(&l->wl))
        (void)ap_waitlist_wake_all(&l->wl);
}

/* Nobody inside and no start in progress: what a drain waits for. */
#define AP__LIFE_IDLE(w) (((w) & ~(uint64_t)7) == 0)

/*
 * Move the state from one of @from (a bit set of states) to @to, keeping the
 * count and the start-pending bit, or-ing in @set; with @need_idle only
 * when AP__LIFE_IDLE. Returns whether it moved; *seen is the word it found.
 */
AP_API bool ap__life_move(ap_life *l, unsigned from, ap_life_state to, bool need_idle,
                          uint64_t set, uint64_t *seen)
{
    /* relaxed: only a guess for the CAS, which re-validates it */
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_relaxed);
    for (;;) {
        *seen = w;
        if (!(from & (1u << AP__LIFE_STATE(w))) || (need_idle && !AP__LIFE_IDLE(w)))
            return false;
        /* seq_cst: the lifecycle's history, and the waking side's SC
         * operation of the ladder; relaxed on failure: we only re-read */
        if (AP_ATOMIC_CAS_WEAK(&l->word, &w, (w & ~(uint64_t)7) | (uint64_t)to | set,
                               memory_order_seq_cst, memory_order_relaxed)) {
            ap__life_wake(l);
            return true;
        }
    }
}

#define AP__LIFE_BIT(s) (1u << (s))

AP_API ap_status ap_life_start(ap_life *l)
{
    AP_ASSERT(l != NULL);
    uint64_t w;
    if (ap__life_move(l, AP__LIFE_BIT(AP_LIFE_STATE_NEW), AP_LIFE_STATE_STARTING, false, AP__LIFE_SP, &w))
        return AP_OK;
    ap_life_state s = AP__LIFE_STATE(w);
    return s == AP_LIFE_STATE_STARTING || s == AP_LIFE_STATE_RUNNING ? AP_INVAL : AP_CLOSED;
}

AP_API ap_status ap_life_started(ap_life *l, bool ok)
{
    AP_ASSERT(l != NULL);
    /* relaxed: a guess for the CAS */
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_relaxed);
    for (;;) {
        if (!(w & AP__LIFE_SP))
            return AP_INVAL; /* no start in progress: changes nothing */
        /* the start ends: clear the pending bit; from STARTING also move
         * on. A stop or a failure that came during the start keeps its
         * state, and its drain has waited for this call. */
        uint64_t nw = w & ~AP__LIFE_SP;
        bool starting = AP__LIFE_STATE(w) == AP_LIFE_STATE_STARTING;
        if (starting)
            nw = (nw & ~(uint64_t)7) | (uint64_t)(ok ? AP_LIFE_STATE_RUNNING : AP_LIFE_STATE_FAILED);
        /* seq_cst: as every change of the word (see ap__life_move) */
        if (AP_ATOMIC_CAS_WEAK(&l->word, &w, nw, memory_order_seq_cst, memory_order_relaxed)) {
            ap__life_wake(l);
            return starting ? AP_OK : AP_CLOSED;
        }
    }
}

AP_API ap_status ap_life_stop(ap_life *l)
{
    AP_ASSERT(l != NULL);
    uint64_t w;
    /* NEW has nothing to drain: straight to TERMINATED. One CAS decides
     * each case, and the states only move forward, so at most two tries. */
    if (ap__life_move(l, AP__LIFE_BIT(AP_LIFE_STATE_NEW), AP_LIFE_STATE_TERMINATED, false, 0, &w))
        return AP_OK;
    if (ap__life_move(l, AP__LIFE_BIT(AP_LIFE_STATE_STARTING) | AP__LIFE_BIT(AP_LIFE_STATE_RUNNING),
                      AP_LIFE_STATE_STOPPING, false, 0, &w))
        return AP_OK;
    return AP_CLOSED; /* a stop or a failure came first */
}

AP_API ap_status ap_life_terminated(ap_life *l)
{
    AP_ASSERT(l != NULL);
    uint64_t w;
    if (ap__life_move(l, AP__LIFE_BIT(AP_LIFE_STATE_STOPPING), AP_LIFE_STATE_TERMINATED, true, 0, &w))
        return AP_OK;
    return AP__LIFE_STATE(w) == AP_LIFE_STATE_STOPPING ? AP_NOT_READY : AP_INVAL;
}

AP_API ap_status ap_life_fail(ap_life *l)
{
    AP_ASSERT(l != NULL);
    uint64_t w;
    unsigned from = AP__LIFE_BIT(AP_LIFE_STATE_NEW) | AP__LIFE_BIT(AP_LIFE_STATE_STARTING) |
                    AP__LIFE_BIT(AP_LIFE_STATE_RUNNING) | AP__LIFE_BIT(AP_LIFE_STATE_STOPPING);
    return ap__life_move(l, from, AP_LIFE_STATE_FAILED, false, 0, &w) ? AP_OK : AP_CLOSED;
}

AP_API ap_status ap_life_enter(ap_life *l)
{
    AP_ASSERT(l != NULL);
    /* relaxed: a guess for the CAS */
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_relaxed);
    for (;;) {
        ap_life_state s = AP__LIFE_STATE(w);
        if (s != AP_LIFE_STATE_RUNNING) {
            AP_ASSERT((unsigned)s != AP__LIFE_DEAD); /* enter after fini */
            return s < AP_LIFE_STATE_RUNNING ? AP_NOT_READY : AP_CLOSED;
        }
        AP_ASSERT(w <= UINT64_MAX - AP__LIFE_ONE);
        AP_TEST_YIELD(); /* RUNNING seen, not yet counted: a stop may land */
        /* seq_cst: ordered against the stop's CAS in the word's history
         * (an enter after it fails); acquire for what the starter did */
        if (AP_ATOMIC_CAS_WEAK(&l->word, &w, w + AP__LIFE_ONE, memory_order_seq_cst,
                               memory_order_relaxed))
            return AP_OK;
    }
}

AP_API void ap_life_leave(ap_life *l)
{
    AP_ASSERT(l != NULL);
    /* seq_cst: release of the operation's effects to whoever sees the
     * drain, and the waking side's SC operation of the ladder */
    uint64_t w = AP_ATOMIC_FETCH_SUB(&l->word, AP__LIFE_ONE, memory_order_seq_cst);
    AP_ASSERT(w >= AP__LIFE_ONE); /* a leave without an enter */
    ap_life_state s = AP__LIFE_STATE(w);
    if (w < 2 * AP__LIFE_ONE && (s == AP_LIFE_STATE_STOPPING || s == AP_LIFE_STATE_FAILED))
        ap__life_wake(l); /* the last one out of a draining lifecycle */
}

/* The waitop's non-blocking attempt: AP_EMPTY = not yet (register). */
AP_API ap_status ap__life_check(void *obj, void *arg)
{
    ap_life *l = (ap_life *)obj;
    /* seq_cst: the waiting side's re-check of the ladder */
    uint64_t w = AP_ATOMIC_LOAD(&l->word, memory_order_seq_cst);
    ap_life_state s = AP__LIFE_STATE(w);
    bool idle = AP__LIFE_IDLE(w);
    switch ((ap_life_event)(uintptr_t)arg) {
    case AP_LIFE_EVENT_RUNS:
        if (s == AP_LIFE_STATE_RUNNING)
            return AP_OK;
        return s < AP_LIFE_STATE_RUNNING ? AP_EMPTY : AP_CLOSED;
    case AP_LIFE_EVENT_DRAINED:
        if (s == AP_LIFE_STATE_TERMINATED || ((s == AP_LIFE_STATE_STOPPING || s == AP_LIFE_STATE_FAILED) && idle))
            return AP_OK;
        return AP_EMPTY;
    case AP_LIFE_EVENT_TERMINATES:
        if (s == AP_LIFE_STATE_TERMINATED)
            return AP_OK;
        return s == AP_LIFE_STATE_FAILED ? AP_CLOSED : AP_EMPTY;
    }
    return AP_INVAL;
}

AP__FUTURE_VTABLE(ap__life_wait, ap_life_wait_fut, ap_life_wait_poll, ap_life_wait_cancel)

AP_API void ap_life_wait_fut_init(ap_life_wait_fut *f, ap_life *l, ap_life_event ev)
{
    AP_ASSERT(f != NULL && l != NULL);
    ap_waitop_init(&f->op, &l->wl, ap__life_check, l, (void *)(uintptr_t)ev);
    f->base.poll = ap__life_wait_poll_v;
    f->base.cancel = ap__life_wait_cancel_v;
}

AP_API ap_poll ap_life_wait_poll(ap_life_wait_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_life_wait_cancel(ap_life_wait_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP_API ap_status ap_life_wait_status(const ap_life_wait_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_life_wait(ap_life *l, ap_life_event ev, ap_deadline deadline_ns)
{
    ap_life_wait_fut f;
    /* the future's first poll, done here: only a caller that parks reads
     * the clock (for wait_ns) */
    AP_ASSERT(l != NULL);
    ap_status st = ap__life_check(l, (void *)(uintptr_t)ev);
    if (st != AP_EMPTY)
        return st;
    ap_life_wait_fut_init(&f, l, ev);
    uint64_t t0 = ap_now_ns();
    st = ap_waitop_wait(&f.op, deadline_ns);
    ap__waitlist_waited(&l->wl, ap_now_ns() - t0);
    return st;
}

#endif /* ASYNCPAT_LIFECYCLE_H */
