/*
 * asyncpat/cancel.h -- cancellation trees, task trackers, two-phase shutdown
 *
 * PATTERN
 *   Structured cancellation, as tokio's CancellationToken / TaskTracker and
 *   Go's context give it, in caller memory. An ap_cancel is a token: a root
 *   (ap_cancel_init) or the child of another token (ap_cancel_init_child).
 *   Cancelling a token cancels its whole subtree at once; cancelling a
 *   child leaves its parent and siblings alone. Anything can be tied to a
 *   token: a future that completes when it is cancelled (ap_cancel_fut), a
 *   callback run exactly once at the cancel (ap_cancel_on, Go's AfterFunc),
 *   and ap_cancel_race, which races any ap_future against a token: it
 *   polls the inner future and, when the token fires first, cancels it (as
 *   timeout.h does with a deadline). The tree is intrusive: each token
 *   holds its parent, first child and sibling links, so nothing allocates.
 *
 *   An ap_tracker counts running tasks (add / done); once closed, its wait
 *   future completes when the count is zero (tokio's TaskTracker::wait).
 *   ap_shutdown is the two-phase shutdown on top: stop a lifecycle (gate
 *   closed, no new work), close the tracker, wait until everything drained
 *   or the grace deadline passes; then cancel the token (forced phase) and
 *   wait for what remains until the hard deadline.
 *
 * USAGE (serve and the deadlines are the caller's)
 *   static ap_cancel root;           // per server; one child per request
 *   static ap_tracker tasks = AP_TRACKER_INITIALIZER;
 *   ap_cancel_init(&root);
 *   // a request handler: its own token, a child of the server's
 *   ap_cancel req;
 *   ap_cancel_init_child(&req, &root);     // born cancelled if root already is
 *   ap_tracker_add(&tasks);
 *   serve(&req);                           // polls ap_cancel_is_cancelled(&req),
 *                                          // or races its futures with ap_cancel_race
 *   ap_tracker_done(&tasks);
 *   ap_cancel_fini(&req);                  // detach: safe while root is being cancelled
 *   // shutdown: graceful for 5 s, then cancel what remains, give up after 10 s
 *   ap_shutdown sd;
 *   uint64_t now = ap_now_ns();
 *   if (ap_shutdown_init(&sd, NULL, &tasks, &root, now + 5 * AP_NS_PER_SEC,
 *                        now + 10 * AP_NS_PER_SEC) != AP_OK) abort();
 *   ap_block_on(&sd.base);
 *   if (ap_shutdown_status(&sd) == AP_OK && ap_shutdown_forced(&sd))
 *       puts("some tasks had to be cancelled");
 *
 * GUARANTEES (invariants the tests check)
 *   - when ap_cancel_cancel(t) returns, t and every token that was a
 *     descendant of t when it was called observe cancelled; a child made
 *     under a cancelled token is born cancelled, so no token below t is
 *     uncancelled after it returns (the tree is consumed: a cancelled
 *     token has no children and its former descendants no parent)
 *   - cancelling a token never cancels its parent or siblings; a cancel
 *     is idempotent and may come from any thread
 *   - every waiter tied to a token (future, callback, race) is woken
 *     exactly once by the cancel that cancelled it; a callback runs
 *     exactly once if the token is cancelled before ap_cancel_off, never
 *     after ap_cancel_off returned AP_OK; no lost wakeup (THE LADDER)
 *   - ap_cancel_fini of a child is safe at any moment of a concurrent
 *     cancel of an ancestor: it unlinks it (its own children move up to
 *     its parent, as tokio re-parents) and waits out a wake in progress
 *   - a tracker's wait completes only at an instant where it is closed
 *     and its count is zero, and is woken by the done (or close) that
 *     makes it so; every add is matched by one done (AP_ASSERT)
 *   - ap_shutdown completes AP_OK with ap_shutdown_forced false only if
 *     everything drained before the grace deadline; the token is cancelled
 *     only once that deadline passed with work left; AP_TIMEDOUT only once
 *     the hard deadline passed with work left (the inner waits cancelled)
 *
 * CONCURRENCY   ap_cancel_cancel, is_cancelled, on/off, futures: any thread,
 *   concurrently with anything but the fini of the same token. init_child
 *   under @parent: concurrently with anything but @parent's fini. fini(t):
 *   concurrently with cancels of any token (t's ancestors included), but
 *   not with the fini of t's parent nor an init_child under t. Tracker:
 *   every call from any thread; done only after a matching add.
 *   Progress: is_cancelled is one load; cancel, init_child and fini take
 *   the tokens' short locks (core.h), parent before child, never a waker
 *   under them: a cancel of a subtree of n tokens holds the path's locks
 *   for O(n), then wakes outside every lock. Tracker add/done/close: one
 *   atomic RMW (lock-free), plus the waiter list's lock when a wait waits.
 *
 * ORDERING     what a thread did before cancelling happens-before every
 *              is_cancelled that returns true for the tokens it cancelled,
 *              and before their wakes and callbacks; what a task did before
 *              ap_tracker_done happens-before a wait's completion. Details
 *              after the API (below "---- implementation ----").
 *
 * COMPLEXITY   cancel: O(subtree); init_child: O(1); fini: O(children);
 *              is_cancelled, tracker add/done/close: O(1)
 * MEMORY       tokens, callbacks, futures, trackers: caller memory; nothing
 *              allocates
 * ERRORS       ap_cancel_off: AP_OK (removed: it will never run),
 *                AP_CANCELED (the token was cancelled first: it has run)
 *              ap_cancel_fut status: AP_NOT_READY, then AP_OK (the token is
 *                cancelled) or AP_CANCELED (the future itself was)
 *              ap_cancel_race status: AP_NOT_READY, AP_OK (the inner future
 *                completed; its result is in it), AP_CANCELED (the token
 *                fired first, or the race was cancelled: inner cancelled)
 *              ap_tracker wait: AP_NOT_READY, then AP_OK or AP_CANCELED
 *              ap_shutdown_init: AP_INVAL (no tracker and no lifecycle, or
 *                hard deadline before grace; nothing changed)
 *              ap_shutdown status: AP_NOT_READY, AP_OK, AP_TIMEDOUT,
 *                AP_CANCELED; a done without an add trips AP_ASSERT
 * WAKE ORDER   a cancel wakes every waiter of every token it cancelled,
 *              top-down (pre-order), each token's waiters FIFO
 * CONFIG       AP_ASSERT, AP_TEST_YIELD
 * SEE ALSO     lifecycle.h (the gate), timeout.h, waitlist.h (the ladder),
 *              tests/test_cancel.c, tests/stress/stress_cancel.c,
 *              tests/verify/verify_cancel.c, tests/fuzz/fuzz_cancel.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_CANCEL_H
#define ASYNCPAT_CANCEL_H

#include "core.h"
#include "future.h"
#include "waitlist.h"
#include "lifecycle.h"

/** ap_cancel - a cancellation token; init before use (not zero-valid) */
typedef struct ap_cancel {
    AP_ATOMIC_T(uint32_t) state;  /* 0 live, 1 cancelled, 7 after fini */
    AP_ATOMIC_T(uint32_t) waking; /* 1 while a cancel's wake pass may touch it */
    ap__lock lock;                /* guards the links below */
    struct ap_cancel *parent;     /* NULL: a root, or detached */
    struct ap_cancel *child;      /* first child */
    struct ap_cancel *next, *prev; /* siblings */
    struct ap_cancel *wake_next;  /* a cancel's local list of tokens to wake */
    ap_waitlist wl;               /* futures, callbacks and races waiting */
} ap_cancel;

/** ap_cancel_cb - a callback tied to a token (caller memory) */
typedef struct ap_cancel_cb {
    ap_waiter w;
    uint32_t ran; /* ap_cancel_on saw the token cancelled: fn has run */
} ap_cancel_cb;

/** a future completing when a token is cancelled (an ap_waitop underneath) */
typedef struct ap_cancel_fut {
    ap_future base; /* the future (every future type has .base) */
    ap_waitop op;
} ap_cancel_fut;

/** ap_cancel_race - any future raced against a token */
typedef struct ap_cancel_race {
    ap_future base; /* first: (ap_future *)r is the future */
    ap_future *inner;
    ap_cancel *token;
    ap_waiter w;
    ap_status status; /* AP_NOT_READY while pending */
} ap_cancel_race;

/** ap_tracker - running tasks, and whether more are expected */
typedef struct ap_tracker {
    AP_ATOMIC_T(uint64_t) word; /* count << 1 | closed */
    ap_waitlist wl;
} ap_tracker;

#define AP_TRACKER_INITIALIZER {0, AP_WAITLIST_INITIALIZER}

/** a future completing when a tracker is closed and empty */
typedef struct ap_tracker_wait_fut {
    ap_future base; /* the future (every future type has .base) */
    ap_waitop op;
} ap_tracker_wait_fut;

/** ap_shutdown - the two-phase shutdown future */
typedef struct ap_shutdown {
    ap_future base; /* first: (ap_future *)s is the future */
    ap_life *life;
    ap_tracker *tracker;
    ap_cancel *token;
    ap_deadline grace, hard;
    ap_tracker_wait_fut tw;
    ap_life_wait_fut lw;
    uint32_t phase;  /* 0 not begun, 1 graceful, 2 forced */
    uint32_t forced; /* the token was cancelled by this shutdown */
    uint32_t tdone, ldone;
    ap_status status;
} ap_shutdown;

/** ap_cancel_init - a live root token */
AP_API void ap_cancel_init(ap_cancel *t);
/**
 * ap_cancel_init_child - a token cancelled with @parent (and on its own)
 * Born cancelled (and unlinked) if @parent already is. O(1).
 * Concurrency: concurrently with anything on @parent but its fini.
 */
AP_API void ap_cancel_init_child(ap_cancel *t, ap_cancel *parent);
/**
 * ap_cancel_fini - end of a token's life; frees nothing
 * Unlinks @t from its parent; its children (if any) move to that parent
 * (or become roots). Waits out a concurrent cancel's wake of @t. No
 * future, race or callback may still be registered (AP_ASSERT); any later
 * call on @t but an init trips AP_ASSERT.
 */
AP_API void ap_cancel_fini(ap_cancel *t);
/**
 * ap_cancel_cancel - cancel @t and its whole subtree; idempotent
 * When it returns, every token below @t observes cancelled (also when
 * another thread's cancel got there first). Wakes waiters and runs
 * callbacks on this thread, after releasing every lock.
 */
AP_API void ap_cancel_cancel(ap_cancel *t);
/** ap_cancel_is_cancelled - whether @t is cancelled (one acquire load) */
AP_API bool ap_cancel_is_cancelled(ap_cancel *t);

/**
 * ap_cancel_on - run @fn(@ctx) once when @t is cancelled
 * Runs it at once, on this thread, if @t already is; else on the thread
 * that cancels, outside every lock (like a waker: cheap, must not block,
 * may cancel other tokens). @cb must stay put until ap_cancel_off
 * returned or @t's fini.
 */
AP_API void ap_cancel_on(ap_cancel *t, ap_cancel_cb *cb, void (*fn)(void *ctx), void *ctx);
/**
 * ap_cancel_off - take a callback off; AP_OK: it will never run;
 * AP_CANCELED: the cancel came first and @fn has run (and returned).
 * Idempotent: a second off says the same.
 */
AP_API AP_NODISCARD ap_status ap_cancel_off(ap_cancel *t, ap_cancel_cb *cb);

/** cancelled futures: init, poll, cancel, status (AP_OK once @t is cancelled) */
AP_API void ap_cancel_fut_init(ap_cancel_fut *f, ap_cancel *t);
AP_API ap_poll ap_cancel_poll(ap_cancel_fut *f, ap_cx *cx);
AP_API void ap_cancel_fut_cancel(ap_cancel_fut *f);
AP_API AP_NODISCARD ap_status ap_cancel_fut_status(const ap_cancel_fut *f);
/** ap_cancel_wait - block until @t is cancelled: AP_OK or AP_TIMEDOUT
 *  (@deadline_ns on ap_now_ns()'s clock) */
AP_API AP_NODISCARD ap_status ap_cancel_wait(ap_cancel *t, ap_deadline deadline_ns);

/**
 * ap_cancel_race_init - race @inner against @token
 * Polling it checks the token first (once cancelled, @inner is cancelled
 * and never polled again), then polls @inner, then registers on the token
 * and checks it again. @inner's result stays in @inner.
 */
AP_API void ap_cancel_race_init(ap_cancel_race *r, ap_future *inner, ap_cancel *token);
/** ap_cancel_race_poll - AP_READY once @inner completed or the token fired */
AP_API ap_poll ap_cancel_race_poll(ap_cancel_race *r, ap_cx *cx);
/** ap_cancel_race_cancel - cancel @inner if still pending; idempotent */
AP_API void ap_cancel_race_cancel(ap_cancel_race *r);
/** ap_cancel_race_status - AP_NOT_READY, AP_OK (inner done) or AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_cancel_race_status(const ap_cancel_race *r);

/** ap_tracker_init - open, empty (same as AP_TRACKER_INITIALIZER) */
AP_API void ap_tracker_init(ap_tracker *t);
/** ap_tracker_fini - nothing tracked and no waiter (AP_ASSERT); frees nothing */
AP_API void ap_tracker_fini(ap_tracker *t);
/** ap_tracker_add - a task starts (also after close, as tokio allows: a
 *  wait that already completed is not undone) */
AP_API void ap_tracker_add(ap_tracker *t);
/** ap_tracker_done - the task of one add ends; the last one out of a
 *  closed tracker wakes its waiters */
AP_API void ap_tracker_done(ap_tracker *t);
/** ap_tracker_close - no more tasks expected: waits may complete; idempotent */
AP_API void ap_tracker_close(ap_tracker *t);
/** ap_tracker_reopen - undo a close (waits wait again) */
AP_API void ap_tracker_reopen(ap_tracker *t);
/** ap_tracker_len - tasks running now (a snapshot) */
AP_API size_t ap_tracker_len(ap_tracker *t);
/** ap_tracker_is_closed - whether closed (a snapshot) */
AP_API bool ap_tracker_is_closed(ap_tracker *t);
/**
 * ap_tracker_stats - counters (ap_tracker_stats_get; a relaxed snapshot,
 * exact at quiescence). running and closed are read off the one word (one
 * load); the rest is the waiting side's, written only when a wait future
 * queues or ap_tracker_wait parks. add and done count nothing more than
 * before (totals of adds and dones are not kept: they would cost an RMW).
 */
typedef struct ap_tracker_stats {
    uint64_t running; /* tasks running now (adds not yet done; ap_tracker_len) */
    uint64_t closed;  /* 1 if closed */
    uint64_t waiters; /* wait futures queued now */
    uint64_t waits;   /* times a wait queued (a future or ap_tracker_wait) */
    uint64_t wait_ns; /* ns parked in ap_tracker_wait (ap_now_ns; only callers
                       * that parked) */
} ap_tracker_stats;
/** ap_tracker_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_tracker_stats_get(ap_tracker *t, ap_tracker_stats *out);
/** tracker wait futures: init, poll, cancel, status (AP_OK: closed and empty) */
AP_API void ap_tracker_wait_fut_init(ap_tracker_wait_fut *f, ap_tracker *t);
AP_API ap_poll ap_tracker_wait_poll(ap_tracker_wait_fut *f, ap_cx *cx);
AP_API void ap_tracker_wait_cancel(ap_tracker_wait_fut *f);
AP_API AP_NODISCARD ap_status ap_tracker_wait_status(const ap_tracker_wait_fut *f);
/** ap_tracker_wait - block until closed and empty: AP_OK or AP_TIMEDOUT */
AP_API AP_NODISCARD ap_status ap_tracker_wait(ap_tracker *t, ap_deadline deadline_ns);

/**
 * ap_shutdown_init - a two-phase shutdown of @life, @tracker and @token
 * @life:    stopped at the first poll, then waited for DRAINED (NULL: none)
 * @tracker: closed at the first poll, then waited for empty (NULL: none)
 * @token:   cancelled once @grace passed with work left (NULL: none)
 * @grace, @hard: instants on the driver's clock (cx->now), grace <= hard
 * Returns AP_INVAL if both @life and @tracker are NULL or hard < grace
 * (nothing changed). The future touches nothing until its first poll;
 * after AP_OK the owner tears down and calls ap_life_terminated.
 */
AP_API AP_NODISCARD ap_status ap_shutdown_init(ap_shutdown *s, ap_life *life,
                                               ap_tracker *tracker, ap_cancel *token,
                                               ap_deadline grace, ap_deadline hard);
/** ap_shutdown_poll - AP_READY once drained or the hard deadline passed */
AP_API ap_poll ap_shutdown_poll(ap_shutdown *s, ap_cx *cx);
/** ap_shutdown_cancel - stop waiting (the stop, close and cancel stay) */
AP_API void ap_shutdown_cancel(ap_shutdown *s);
/** ap_shutdown_status - AP_NOT_READY, AP_OK, AP_TIMEDOUT or AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_shutdown_status(const ap_shutdown *s);
/** ap_shutdown_forced - whether the grace deadline passed and the token
 *  was cancelled */
AP_API bool ap_shutdown_forced(const ap_shutdown *s);

/* ---- implementation ---- */

/*
 * ORDERING
 *   The cancelled flag is stored (seq_cst) under the token's lock, once:
 *   a cancel sets it top-down while holding the lock of every token on
 *   the path from the cancelled root to the one it visits, and
 *   ap_cancel_init_child reads the parent's flag under the parent's lock.
 *   So a child is either linked before the parent's cancel locked the
 *   parent (and the cancel, which consumes the child list under that lock,
 *   finds it) or made after it (and sees the flag): none escapes. A cancel
 *   that finds the flag already set holds the lock the first cancel held
 *   for the whole walk of that subtree, so the walk has ended: the subtree
 *   is cancelled when the second cancel returns too.
 *   Waking follows THE LADDER of waitlist.h in its symmetric form: the
 *   flag's seq_cst store, then a seq_cst look for waiters (after every lock
 *   is released); a waiter registers (count++, then a seq_cst fence: the
 *   token's list is made without the asymmetric barrier, so a token costs
 *   no membarrier registration syscall), then re-reads the flag seq_cst.
 *   is_cancelled is an acquire load of the flag: it pairs with the seq_cst
 *   (release) store, so what the canceller did before is visible.
 *   A token in a cancel's wake list has waking = 1 (set under its lock);
 *   the wake pass reads its next link, wakes, then stores waking = 0
 *   (release); fini waits (acquire) for 0 before the memory may go.
 *   Tracker: every change of the word is a seq_cst RMW and the wait's
 *   check a seq_cst load (the symmetric ladder again); done's seq_cst RMW
 *   releases the task's effects to the wait that sees the count reach 0.
 */

#define AP__CANCEL_LIVE 0u
#define AP__CANCEL_DONE 1u
#define AP__CANCEL_DEAD 7u

/* A waiter list in the state of AP_WAITLIST_INITIALIZER: the symmetric
 * ladder (no membarrier registration per token, see ORDERING). */
AP_API void ap__cancel_wl_init(ap_waitlist *wl)
{
    AP_ATOMIC_INIT(&wl->lock.held, 0u);
    AP_ATOMIC_INIT(&wl->count, (size_t)0);
    wl->head = wl->tail = NULL;
    wl->asym = 0;
    AP_ATOMIC_INIT(&wl->waits, (uint64_t)0);
    AP_ATOMIC_INIT(&wl->wait_ns, (uint64_t)0);
}

AP_API void ap__cancel_init(ap_cancel *t, uint32_t state)
{
    AP_ATOMIC_INIT(&t->state, state);
    AP_ATOMIC_INIT(&t->waking, 0u);
    AP_ATOMIC_INIT(&t->lock.held, 0u);
    t->parent = t->child = t->next = t->prev = t->wake_next = NULL;
    ap__cancel_wl_init(&t->wl);
}

AP_API void ap_cancel_init(ap_cancel *t)
{
    AP_ASSERT(t != NULL);
    ap__cancel_init(t, AP__CANCEL_LIVE);
}

AP_API void ap_cancel_init_child(ap_cancel *t, ap_cancel *parent)
{
    AP_ASSERT(t != NULL && parent != NULL && t != parent);
    ap__cancel_init(t, AP__CANCEL_LIVE);
    ap__lock_acquire(&parent->lock);
    uint32_t ps = AP_ATOMIC_LOAD(&parent->state, memory_order_relaxed); /* under the lock */
    AP_ASSERT(ps != AP__CANCEL_DEAD); /* a child of a token after its fini */
    if (ps != AP__CANCEL_LIVE) {
        /* born cancelled, unlinked: the parent's cancel has consumed its
         * subtree, and this one must not be left out of it */
        AP_ATOMIC_STORE(&t->state, AP__CANCEL_DONE, memory_order_relaxed);
    } else {
        t->parent = parent;
        t->next = parent->child;
        if (t->next)
            t->next->prev = t;
        parent->child = t;
    }
    ap__lock_release(&parent->lock);
}

AP_API bool ap_cancel_is_cancelled(ap_cancel *t)
{
    AP_ASSERT(t != NULL);
    /* acquire: pairs with the seq_cst store in ap__cancel_mark */
    uint32_t s = AP_ATOMIC_LOAD(&t->state, memory_order_acquire);
    AP_ASSERT(s != AP__CANCEL_DEAD); /* use after fini */
    return s != AP__CANCEL_LIVE;
}

/* Under @t's lock: @t is live; cancel it and put it on the wake list. */
AP_API void ap__cancel_mark(ap_cancel *t, ap_cancel **wake)
{
    /* seq_cst: the waking side's store of THE LADDER (its look for waiters
     * comes in the wake pass); release for is_cancelled's acquire */
    AP_ATOMIC_STORE(&t->state, AP__CANCEL_DONE, memory_order_seq_cst);
    AP_ATOMIC_STORE(&t->waking, 1u, memory_order_relaxed); /* read by fini under the lock */
    t->wake_next = *wake;
    *wake = t;
}

AP_API void ap_cancel_cancel(ap_cancel *t)
{
    AP_ASSERT(t != NULL);
    ap_cancel *wake = NULL;
    ap__lock_acquire(&t->lock);
    uint32_t s = AP_ATOMIC_LOAD(&t->state, memory_order_relaxed); /* under the lock */
    AP_ASSERT(s != AP__CANCEL_DEAD); /* cancel after fini */
    if (s != AP__CANCEL_LIVE) {
        /* cancelled before: that cancel held this lock for its whole walk
         * of the subtree, so the subtree is cancelled and consumed */
        ap__lock_release(&t->lock);
        return;
    }
    ap__cancel_mark(t, &wake);
    /* Depth-first, without recursion: the path from @t to cur is locked
     * (parent before child) and each node's parent link leads back up. */
    ap_cancel *cur = t;
    for (;;) {
        ap_cancel *c = cur->child;
        if (c != NULL) {
            cur->child = c->next;
            if (c->next)
                c->next->prev = NULL;
            AP_TEST_YIELD(); /* a child's fini may be waiting for cur */
            ap__lock_acquire(&c->lock);
            c->next = c->prev = NULL;
            if (AP_ATOMIC_LOAD(&c->state, memory_order_relaxed) == AP__CANCEL_LIVE) {
                ap__cancel_mark(c, &wake);
                cur = c; /* descend, keeping c locked and its parent link */
                continue;
            }
            /* cancelled on its own before: it has no children left */
            AP_ASSERT(c->child == NULL);
            c->parent = NULL;
            ap__lock_release(&c->lock);
            continue;
        }
        if (cur == t)
            break;
        ap_cancel *up = cur->parent; /* stable: cur is locked */
        cur->parent = NULL;          /* detached: its fini skips the parent */
        ap__lock_release(&cur->lock);
        cur = up;
    }
    ap__lock_release(&t->lock);
    /* the wake pass, outside every lock */
    while (wake != NULL) {
        ap_cancel *n = wake;
        wake = n->wake_next;
        AP_TEST_YIELD(); /* cancelled, waiters not yet looked for */
        if (ap_waitlist_has_waiters(&n->wl)) /* seq_cst: the ladder's look */
            (void)ap_waitlist_wake_all(&n->wl);
        /* release: our last touch of n; pairs with the acquire in fini */
        AP_ATOMIC_STORE(&n->waking, 0u, memory_order_release);
    }
}

AP_API void ap_cancel_fini(ap_cancel *t)
{
    AP_ASSERT(t != NULL);
    ap_cancel *p;
    for (;;) {
        ap__lock_acquire(&t->lock);
        AP_ASSERT(AP_ATOMIC_LOAD(&t->state, memory_order_relaxed) != AP__CANCEL_DEAD);
        p = t->parent;
        ap__lock_release(&t->lock);
        AP_TEST_YIELD(); /* the parent's cancel may detach t right here */
        if (p != NULL)
            ap__lock_acquire(&p->lock); /* parent before child */
        ap__lock_acquire(&t->lock);
        if (t->parent == p)
            break;
        ap__lock_release(&t->lock); /* detached meanwhile: again */
        if (p != NULL)
            ap__lock_release(&p->lock);
    }
    if (p != NULL) { /* unlink from the parent's list */
        if (t->prev)
            t->prev->next = t->next;
        else
            p->child = t->next;
        if (t->next)
            t->next->prev = t->prev;
    }
    /* children move up to the parent (or become roots): a live token has
     * a live parent, so they stay cancellable with it */
    while (t->child != NULL) {
        ap_cancel *c = t->child;
        t->child = c->next;
        ap__lock_acquire(&c->lock);
        c->parent = p;
        c->prev = NULL;
        if (p != NULL) {
            c->next = p->child;
            if (c->next)
                c->next->prev = c;
            p->child = c;
        } else {
            c->next = NULL;
        }
        ap__lock_release(&c->lock);
    }
    t->parent = t->next = t->prev = NULL;
    ap__lock_release(&t->lock);
    if (p != NULL)
        ap__lock_release(&p->lock);
    /* a cancel that marked t may still be waking it: wait it out */
    unsigned spins = 0;
    /* acquire: pairs with the release store of the wake pass */
    while (AP_ATOMIC_LOAD(&t->waking, memory_order_acquire) != 0)
        ap__backoff(&spins);
    AP_ASSERT(!ap_waitlist_has_waiters(&t->wl)); /* a future or callback still registered */
    AP_ATOMIC_STORE(&t->state, AP__CANCEL_DEAD, memory_order_relaxed);
}

AP_API void ap_cancel_on(ap_cancel *t, ap_cancel_cb *cb, void (*fn)(void *ctx), void *ctx)
{
    AP_ASSERT(t != NULL && cb != NULL && fn != NULL);
    ap_waiter_init(&cb->w);
    cb->ran = 0;
    if (ap_cancel_is_cancelled(t)) {
        cb->ran = 1;
        fn(ctx);
        return;
    }
    ap_waker wk;
    wk.wake = fn;
    wk.ctx = ctx;
    ap_waitlist_register(&t->wl, &cb->w, wk); /* count++, then the fence */
    AP_TEST_YIELD(); /* registered, not yet re-checked */
    /* seq_cst: the waiting side's re-check of THE LADDER */
    if (AP_ATOMIC_LOAD(&t->state, memory_order_seq_cst) != AP__CANCEL_LIVE) {
        /* cancelled meanwhile: if its wake pass took us, fn ran there
         * (this cancel consumed that news: keep it for ap_cancel_off) */
        if (!ap_waitlist_cancel(&t->wl, &cb->w))
            fn(ctx);
        cb->ran = 1;
    }
}

AP_API ap_status ap_cancel_off(ap_cancel *t, ap_cancel_cb *cb)
{
    AP_ASSERT(t != NULL && cb != NULL);
    if (cb->ran)
        return AP_CANCELED;
    /* true: the wake pass took it (fn has returned when this returns);
     * that news is consumed here, so keep it: a second off says the same */
    if (ap_waitlist_cancel(&t->wl, &cb->w))
        cb->ran = 1;
    return cb->ran ? AP_CANCELED : AP_OK;
}

/* The waitop's attempt: AP_EMPTY = not yet (register). */
AP_API ap_status ap__cancel_check(void *obj, void *arg)
{
    (void)arg;
    ap_cancel *t = (ap_cancel *)obj;
    /* seq_cst: the waiting side's re-check of the ladder */
    uint32_t s = AP_ATOMIC_LOAD(&t->state, memory_order_seq_cst);
    AP_ASSERT(s != AP__CANCEL_DEAD);
    return s != AP__CANCEL_LIVE ? AP_OK : AP_EMPTY;
}

AP__FUTURE_VTABLE(ap__cancel_fut, ap_cancel_fut, ap_cancel_poll, ap_cancel_fut_cancel)

AP_API void ap_cancel_fut_init(ap_cancel_fut *f, ap_cancel *t)
{
    AP_ASSERT(f != NULL && t != NULL);
    ap_waitop_init(&f->op, &t->wl, ap__cancel_check, t, NULL);
    f->base.poll = ap__cancel_fut_poll_v;
    f->base.cancel = ap__cancel_fut_cancel_v;
}

AP_API ap_poll ap_cancel_poll(ap_cancel_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_cancel_fut_cancel(ap_cancel_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP_API ap_status ap_cancel_fut_status(const ap_cancel_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_cancel_wait(ap_cancel *t, ap_deadline deadline_ns)
{
    ap_cancel_fut f;
    ap_cancel_fut_init(&f, t);
    return ap_waitop_wait(&f.op, deadline_ns);
}

AP__FUTURE_VTABLE(ap__cancel_race, ap_cancel_race, ap_cancel_race_poll, ap_cancel_race_cancel)

AP_API void ap_cancel_race_init(ap_cancel_race *r, ap_future *inner, ap_cancel *token)
{
    AP_ASSERT(r != NULL && inner != NULL && inner->poll != NULL && token != NULL);
    r->base.poll = ap__cancel_race_poll_v;
    r->base.cancel = ap__cancel_race_cancel_v;
    r->inner = inner;
    r->token = token;
    ap_waiter_init(&r->w);
    r->status = AP_NOT_READY;
}

/* The token fired: cancel inner, leave the token's list. */
AP_API ap_poll ap__cancel_race_fired(ap_cancel_race *r)
{
    ap_future_cancel(r->inner);
    (void)ap_waitlist_cancel(&r->token->wl, &r->w);
    r->status = AP_CANCELED;
    return AP_READY;
}

AP_API ap_poll ap_cancel_race_poll(ap_cancel_race *r, ap_cx *cx)
{
    AP_ASSERT(r != NULL && cx != NULL);
    if (r->status != AP_NOT_READY)
        return AP_READY;
    if (ap_cancel_is_cancelled(r->token)) /* before: a fired token wins */
        return ap__cancel_race_fired(r);
    if (r->inner->poll(r->inner, cx) == AP_READY) {
        (void)ap_waitlist_cancel(&r->token->wl, &r->w);
        r->status = AP_OK;
        return AP_READY;
    }
    ap_waitlist_register_cx(&r->token->wl, &r->w, cx);
    AP_TEST_YIELD(); /* registered, not yet re-checked */
    /* seq_cst: the waiting side's re-check of THE LADDER */
    if (AP_ATOMIC_LOAD(&r->token->state, memory_order_seq_cst) != AP__CANCEL_LIVE)
        return ap__cancel_race_fired(r);
    return AP_PENDING;
}

AP_API void ap_cancel_race_cancel(ap_cancel_race *r)
{
    AP_ASSERT(r != NULL);
    if (r->status != AP_NOT_READY)
        return;
    ap_future_cancel(r->inner);
    (void)ap_waitlist_cancel(&r->token->wl, &r->w);
    r->status = AP_CANCELED;
}

AP_API ap_status ap_cancel_race_status(const ap_cancel_race *r)
{
    return r->status;
}

/* ---- tracker ---- */

#define AP__TRACKER_CLOSED ((uint64_t)1)
#define AP__TRACKER_ONE ((uint64_t)2)

AP_API void ap_tracker_init(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    AP_ATOMIC_INIT(&t->word, (uint64_t)0);
    ap__cancel_wl_init(&t->wl);
}

AP_API void ap_tracker_fini(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* relaxed: fini, by the owner once nobody else uses the tracker */
    AP_ASSERT(AP_ATOMIC_LOAD(&t->word, memory_order_relaxed) / AP__TRACKER_ONE == 0);
    AP_ASSERT(!ap_waitlist_has_waiters(&t->wl));
}

AP_API void ap__tracker_wake(ap_tracker *t)
{
    AP_TEST_YIELD(); /* changed, waiters not yet looked for */
    if (ap_waitlist_has_waiters(&t->wl)) /* seq_cst: the ladder's look */
        (void)ap_waitlist_wake_all(&t->wl);
}

AP_API void ap_tracker_add(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* seq_cst: the word's history is the tracker's */
    uint64_t w = AP_ATOMIC_FETCH_ADD(&t->word, AP__TRACKER_ONE, memory_order_seq_cst);
    AP_ASSERT(w <= UINT64_MAX - 2 * AP__TRACKER_ONE); /* overflow */
    (void)w;
}

AP_API void ap_tracker_done(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* seq_cst: releases the task's effects to the wait that sees 0, and
     * the waking side's store of the ladder */
    uint64_t w = AP_ATOMIC_FETCH_SUB(&t->word, AP__TRACKER_ONE, memory_order_seq_cst);
    AP_ASSERT(w >= AP__TRACKER_ONE); /* a done without an add */
    if (w == (AP__TRACKER_ONE | AP__TRACKER_CLOSED))
        ap__tracker_wake(t); /* the last one out of a closed tracker */
}

AP_API void ap_tracker_close(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* seq_cst: as every change of the word */
    uint64_t w = AP_ATOMIC_FETCH_OR(&t->word, AP__TRACKER_CLOSED, memory_order_seq_cst);
    if (w == 0)
        ap__tracker_wake(t); /* closed while empty */
}

AP_API void ap_tracker_reopen(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* seq_cst: as every change of the word */
    (void)AP_ATOMIC_FETCH_AND(&t->word, ~AP__TRACKER_CLOSED, memory_order_seq_cst);
}

AP_API size_t ap_tracker_len(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* relaxed: a snapshot */
    return (size_t)(AP_ATOMIC_LOAD(&t->word, memory_order_relaxed) / AP__TRACKER_ONE);
}

AP_API bool ap_tracker_is_closed(ap_tracker *t)
{
    AP_ASSERT(t != NULL);
    /* relaxed: a snapshot */
    return (AP_ATOMIC_LOAD(&t->word, memory_order_relaxed) & AP__TRACKER_CLOSED) != 0;
}

AP_API void ap_tracker_stats_get(ap_tracker *t, ap_tracker_stats *out)
{
    ap_waitlist_stats ws;
    AP_ASSERT(t != NULL && out != NULL);
    uint64_t w = AP_ATOMIC_LOAD(&t->word, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->running = w / AP__TRACKER_ONE;
    out->closed = w & AP__TRACKER_CLOSED;
    ap_waitlist_stats_get(&t->wl, &ws);
    out->waiters = ws.waiters;
    out->waits = ws.waits;
    out->wait_ns = ws.wait_ns;
}

AP_API ap_status ap__tracker_check(void *obj, void *arg)
{
    (void)arg;
    ap_tracker *t = (ap_tracker *)obj;
    /* seq_cst: the waiting side's re-check of the ladder */
    return AP_ATOMIC_LOAD(&t->word, memory_order_seq_cst) == AP__TRACKER_CLOSED ? AP_OK
                                                                                : AP_EMPTY;
}

AP__FUTURE_VTABLE(ap__tracker_wait, ap_tracker_wait_fut, ap_tracker_wait_poll,
                  ap_tracker_wait_cancel)

AP_API void ap_tracker_wait_fut_init(ap_tracker_wait_fut *f, ap_tracker *t)
{
    AP_ASSERT(f != NULL && t != NULL);
    ap_waitop_init(&f->op, &t->wl, ap__tracker_check, t, NULL);
    f->base.poll = ap__tracker_wait_poll_v;
    f->base.cancel = ap__tracker_wait_cancel_v;
}

AP_API ap_poll ap_tracker_wait_poll(ap_tracker_wait_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_tracker_wait_cancel(ap_tracker_wait_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP_API ap_status ap_tracker_wait_status(const ap_tracker_wait_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_tracker_wait(ap_tracker *t, ap_deadline deadline_ns)
{
    ap_tracker_wait_fut f;
    /* the future's first poll, done here: only a caller that parks reads
     * the clock (for wait_ns) */
    AP_ASSERT(t != NULL);
    if (ap__tracker_check(t, NULL) == AP_OK)
        return AP_OK;
    ap_tracker_wait_fut_init(&f, t);
    uint64_t t0 = ap_now_ns();
    ap_status st = ap_waitop_wait(&f.op, deadline_ns);
    ap__waitlist_waited(&t->wl, ap_now_ns() - t0);
    return st;
}

/* ---- two-phase shutdown ---- */

AP__FUTURE_VTABLE(ap__shutdown, ap_shutdown, ap_shutdown_poll, ap_shutdown_cancel)

AP_API ap_status ap_shutdown_init(ap_shutdown *s, ap_life *life, ap_tracker *tracker,
                                  ap_cancel *token, ap_deadline grace, ap_deadline hard)
{
    AP_ASSERT(s != NULL);
    if ((life == NULL && tracker == NULL) || hard < grace)
        return AP_INVAL;
    s->base.poll = ap__shutdown_poll_v;
    s->base.cancel = ap__shutdown_cancel_v;
    s->life = life;
    s->tracker = tracker;
    s->token = token;
    s->grace = grace;
    s->hard = hard;
    s->phase = 0;
    s->forced = 0;
    s->tdone = tracker == NULL;
    s->ldone = life == NULL;
    if (tracker != NULL)
        ap_tracker_wait_fut_init(&s->tw, tracker);
    if (life != NULL)
        ap_life_wait_fut_init(&s->lw, life, AP_LIFE_EVENT_DRAINED);
    s->status = AP_NOT_READY;
    return AP_OK;
}

/* Poll what is not done yet; true when everything drained. */
AP_API bool ap__shutdown_drained(ap_shutdown *s, ap_cx *cx)
{
    if (!s->tdone && ap_tracker_wait_poll(&s->tw, cx) == AP_READY)
        s->tdone = 1;
    if (!s->ldone && ap_life_wait_poll(&s->lw, cx) == AP_READY)
        s->ldone = 1;
    return s->tdone && s->ldone;
}

AP_API ap_poll ap_shutdown_poll(ap_shutdown *s, ap_cx *cx)
{
    AP_ASSERT(s != NULL && cx != NULL);
    if (s->status != AP_NOT_READY)
        return AP_READY;
    if (s->phase == 0) { /* graceful: refuse new work, expect no more */
        if (s->life != NULL) {
            ap_status st = ap_life_stop(s->life); /* AP_CLOSED: stopped already */
            (void)st;
        }
        if (s->tracker != NULL)
            ap_tracker_close(s->tracker);
        s->phase = 1;
    }
    if (ap__shutdown_drained(s, cx)) {
        s->status = AP_OK;
        return AP_READY;
    }
    if (s->phase == 1 && ap_deadline_passed(s->grace, cx->now)) { /* forced */
        s->phase = 2;
        if (s->token != NULL) {
            ap_cancel_cancel(s->token);
            s->forced = 1;
        }
        if (ap__shutdown_drained(s, cx)) {
            s->status = AP_OK;
            return AP_READY;
        }
    }
    if (ap_deadline_passed(s->hard, cx->now)) {
        ap_shutdown_cancel(s);
        s->status = AP_TIMEDOUT;
        return AP_READY;
    }
    ap_cx_wake_at(cx, s->phase == 1 ? s->grace : s->hard);
    return AP_PENDING;
}

AP_API void ap_shutdown_cancel(ap_shutdown *s)
{
    AP_ASSERT(s != NULL);
    if (s->status != AP_NOT_READY)
        return;
    if (!s->tdone)
        ap_tracker_wait_cancel(&s->tw);
    if (!s->ldone)
        ap_life_wait_cancel(&s->lw);
    s->status = AP_CANCELED;
}

AP_API ap_status ap_shutdown_status(const ap_shutdown *s)
{
    return s->status;
}

AP_API bool ap_shutdown_forced(const ap_shutdown *s)
{
    return s->forced != 0;
}

#endif /* ASYNCPAT_CANCEL_H */
