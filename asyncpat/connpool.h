/*
 * asyncpat/connpool.h -- connection pool: lazy open up to max_size, validate,
 * retire on lifetime / idle timeout / broken, FIFO checkout futures
 *
 * PATTERN
 *   Unlike the fixed object pool (pool.h), whose objects all exist from
 *   init, a connection pool creates its connections lazily through a user
 *   factory, checks them before lending them, and retires them. The caller
 *   gives a vtable { open, close, validate } and max_size slots of
 *   conn_size bytes in its own memory; slot i holds connection i while one
 *   is open there. A checkout lends an idle connection (the most recently
 *   returned first, so surplus ones age out through the idle timeout), or,
 *   when none is idle and fewer than max_size slots are in use, reserves a
 *   free slot and opens a new connection in it on the calling thread. At
 *   max_size with everything lent, try_checkout says AP_EMPTY and a
 *   checkout future queues (FIFO). A return either makes the connection
 *   idle, or closes it (the caller said `broken`, its lifetime is over, or
 *   the pool is closed) and frees its slot; then it serves the head of the
 *   queue: an idle connection goes to the oldest future, and a freed slot
 *   goes to it as the right to open a fresh connection (so a broken return
 *   never leaves a future stuck while capacity exists).
 *
 *   open, validate and close are plain calls made by the thread that runs
 *   the pool operation (try_checkout, the future's poll, return, evict,
 *   fill, close, fini), never under a lock. A factory that must wait (a
 *   TCP/TLS handshake, PQconnectStart/PQconnectPoll) may instead open
 *   asynchronously (ASYNC OPEN below): the open is then a future that the
 *   checkout future drives from its own poll, so the caller's event loop
 *   drives it, with no thread of ours. desc.connect_timeout_ns bounds
 *   every open, synchronous or not.
 *
 *   Time is the caller's: every operation that may retire a connection
 *   takes `now` (ns, any monotonic clock the caller uses consistently; a
 *   future uses cx->now). The pool reads no clock, except the blocking
 *   ap_connpool_checkout_wait, which reads desc.clock (ap_now_ns() by
 *   default: name your clock there), and, reading that same clock, a
 *   synchronous open timed against connect_timeout_ns and an asynchronous
 *   open driven by a blocking operation (ASYNC OPEN). A connection opened at t is over
 *   its lifetime at any now >= t + its lifetime (max_lifetime_ns, less a
 *   random cut of up to lifetime_jitter_pct percent if the desc asks for
 *   jitter, so at the latest t + max_lifetime_ns); one that
 *   became idle at u is over its idle timeout at any now >= u +
 *   idle_timeout_ns. Such a connection is closed, never lent, when a
 *   checkout (or a future completing) finds it, when it is returned (the
 *   lifetime), or by ap_connpool_evict(now). A `now` earlier than the
 *   stamp counts as not expired.
 *
 * USAGE
 *   static ap_status db_open(void *ctx, void *c, int *app_error) {
 *       int e = dial(ctx, c);                 // 0, or an errno
 *       if (e) { *app_error = e; return AP_TIMEDOUT; }  // beside AP_EXHAUSTED
 *       return AP_OK;
 *   }
 *   static void db_close(void *ctx, void *c) { hang_up(ctx, c); }
 *   static AP_ALIGNAS(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(8, sizeof(struct db))];
 *   ap_connpool cp;
 *   ap_connpool_desc d = {.max_size = 8, .conn_size = sizeof(struct db),
 *                         .max_lifetime_ns = 30 * AP_NS_PER_SEC};
 *   ap_connpool_ops ops = {db_open, db_close, NULL, &server};
 *   if (ap_connpool_init(&cp, buf, sizeof buf, &d, &ops) != AP_OK) abort();
 *   void *c; ap_connpool_fail why;
 *   ap_status st = ap_connpool_checkout_wait(&cp, &c, ap_now_ns() + AP_NS_PER_SEC, &why);
 *   if (st == AP_OK) {
 *       bool ok = query((struct db *)c);
 *       if (ap_connpool_return(&cp, c, !ok, ap_now_ns()) != AP_OK) abort();  // broken: close it
 *   } else if (st == AP_EXHAUSTED) {                          // dial failed
 *       log_error(ap_status_str(why.error), strerror(why.app_error));
 *   }
 *   ap_connpool_close(&cp);   // at shutdown; once every connection is back:
 *   ap_connpool_fini(&cp);
 *
 * GUARANTEES (invariants the tests check)
 *   - bounded: opened - closed == live <= max_size at every instant; a
 *     slot is reserved before open is called and freed only after close
 *     returned, so the factory never has more than max_size connections
 *     open, also counting opens and closes in flight
 *   - exclusive: each connection is lent to at most one holder at a time;
 *     a return is accepted only from HELD, so a double or foreign return is
 *     AP_INVAL and changes nothing
 *   - closed exactly once: every connection open() created is passed to
 *     close() exactly once, at the latest by ap_connpool_close (idle ones at
 *     once, lent ones when returned) or ap_connpool_fini (idle ones)
 *   - never lent expired or invalid: a connection over its lifetime or
 *     idle timeout at the operation's `now`, or refused by validate, is
 *     closed instead of lent (validate runs on every lend of an existing
 *     connection, never on a freshly opened one)
 *   - failed opens are reported, never retried silently: the slot is freed
 *     (and offered to the next queued future), the counter open_failures
 *     grows, and the caller gets AP_EXHAUSTED with the factory's status
 *     and app_error beside it (see FACTORY FAILURES)
 *   - FIFO fairness and no thundering herd: queued futures are served
 *     strictly in queue order, one per returned connection or freed slot;
 *     try_checkout and a future's first poll answer AP_EMPTY when futures
 *     are queued, so they never overtake one (a try racing with a
 *     registration may still linearize before it, as in pool.h)
 *   - no lost wakeup, nobody stuck while capacity exists: every path that
 *     makes a connection idle or frees a slot (return, broken return,
 *     failed open, validate failure, expiry, cancel of a granted future,
 *     evict) then serves the queue; a queuing future re-checks after
 *     registering (THE LADDER, waitlist.h)
 *   - cancel after a grant loses nothing: a granted connection goes back
 *     to idle and on to the next future, a granted slot on to the next
 *     future (or back to free); a future cancelled while its asynchronous
 *     open is in flight aborts that open (abort, never close) and passes
 *     the slot on the same way
 *   - connect timeout: an open not done at its start + connect_timeout_ns
 *     (async: a poll with cx.now >= that deadline aborts it, one ns before
 *     it is still polled; sync: timed on desc.clock from before to after
 *     the call, a connection it made late is closed) frees its slot for
 *     the next queued future, grows open_timeouts (and open_failures), and
 *     its caller gets AP_EXHAUSTED beside {AP_TIMEDOUT, open_timeout}
 *   - every asynchronous start that returned AP_OK ends exactly once: its
 *     poll returns AP_READY, or the pool calls abort (timeout, cancel,
 *     close); opens in flight hold reserved slots, so opens in flight plus
 *     live connections never exceed max_size
 *   - close: idle connections are closed at once, queued futures complete
 *     with AP_CLOSED, later checkouts answer AP_CLOSED, lent connections are
 *     closed when returned. A future granted a connection before close
 *     completes AP_OK with it; one granted only a slot completes AP_CLOSED.
 *     Nothing opened after close is ever lent or kept: an open racing a
 *     close (it cannot be stopped once called) is closed at once and its
 *     caller gets AP_CLOSED (ap_connpool_fill says AP_CLOSED too).
 *
 * FACTORY FAILURES AND APPLICATION ERRORS
 *   open(ctx, conn, &app_error) may write its own error code to *app_error
 *   (0 on entry: an errno, a server's reply code) and returns AP_OK or any
 *   failure status. A failed open is one attempt of your code that failed,
 *   not a policy refusal, so the caller gets the status table's
 *   AP_EXHAUSTED ("every allowed attempt failed; the error beside it": the
 *   pool makes one open per checkout and never retries it), whatever the
 *   factory returned, and never that status itself (AP_EMPTY, AP_CLOSED,
 *   AP_INVAL, AP_NOT_READY or AP_TIMEDOUT from a factory would read as the
 *   pool's own answers). Beside it, an ap_connpool_fail holds the factory's
 *   status (`error`, as open returned it) and `app_error`:
 *     - try_checkout, checkout_wait and fill fill their @fail (may be NULL)
 *       when they return AP_EXHAUSTED, and leave it untouched otherwise;
 *     - a checkout future keeps it: ap_connpool_checkout_failure(f);
 *     - the stats keep the last failed open's pair (last_open_error,
 *       last_app_error), whoever called it.
 *   validate and close cannot fail: validate's false is the pool's cue to
 *   close a connection (counted in validate_failures), not an error.
 *
 * ASYNC OPEN (desc.open_async: start, poll, abort; ap_connpool_open_async)
 *   The open of a reserved slot is then a future: start(now) begins it,
 *   poll(cx) drives it (register cx->waker with your I/O watcher, or lower
 *   cx->deadline, before AP_PENDING), abort releases it half-open. Who
 *   drives it: a checkout future that gets a slot (first poll, grant, or a
 *   refused idle connection) starts the open and polls it from its own
 *   polls, with its cx (the loop's waker and time); the future stays
 *   pending meanwhile and the slot reserved (stats.opening). The blocking
 *   operations (try_checkout, checkout_wait, fill) drive it to its end on
 *   the calling thread, polling and parking on desc.clock (the open starts
 *   at the `now` passed; with no connect timeout an open that never ends
 *   blocks them, as a synchronous open that hangs would). The open's
 *   deadline is start's now + connect_timeout_ns; the pool checks it
 *   before each poll of the factory and lowers cx->deadline to it, so a
 *   driver re-polls in time. After close an open in flight is aborted at
 *   its next poll (AP_CLOSED, not a failure). Cancel during the open
 *   aborts it (the in-flight open is not handed over: the next future
 *   starts its own). Nothing opened by an aborted start is ever passed to
 *   close().
 *   For example (examples/pg_pool.c: PQconnectStart / PQconnectPoll):
 *     static const ap_connpool_open_async pg = {pg_start, pg_poll, pg_abort};
 *     ap_connpool_desc d = {.max_size = 8, .conn_size = sizeof(struct db),
 *                           .open_async = &pg,     // ops.open may be NULL
 *                           .connect_timeout_ns = 2 * AP_NS_PER_SEC};
 *     // a checkout past 2 s: AP_EXHAUSTED, why.error AP_TIMEDOUT, why.open_timeout
 *
 * CONCURRENCY   try_checkout return evict fill close stats futures  fini
 *   any of them      yes       yes   yes   yes  yes   yes    yes     no
 *   A future is polled and cancelled by one thread at a time (future.h).
 *   Progress: blocking, honestly. Every operation takes the pool's short
 *   internal lock (ap__lock: spin AP_SPIN_LIMIT times, then sched_yield)
 *   for O(1) bookkeeping (evict, close, fini, fill: O(max_size)); a thread
 *   preempted while holding it delays the others. The lock is never held
 *   while user code (open, validate, close) or a waker runs, so a slow
 *   factory delays only its own caller. A queued future's grant is made
 *   under the waiter list's lock, which takes the pool lock inside it
 *   (that is the only nesting: the pool lock is never held while the list
 *   lock is taken).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   try_checkout, return, future register/cancel: O(1) plus the
 *              user calls; evict, close, fill, fini: O(max_size); a grant
 *              pass: O(k) for the k futures it serves.
 * MEMORY       init: one caller buffer and its size in bytes: at least
 *              AP_CONNPOOL_BYTES(max, conn_size), aligned to
 *              AP_CONNPOOL_ALIGN (else AP_INVAL with nothing written)
 *              and, unchecked (the caller's duty), for the connection
 *              type:
 *              the connection slots first (slot i at buf + i * conn_size),
 *              then the pool's per-slot bookkeeping. A future embeds its
 *              waiter node. Nothing allocates (no create in v1).
 * ERRORS       AP_EMPTY (at max_size and nothing idle, or futures queued),
 *              AP_INVAL also for an open_async lacking a function, or no
 *              open at all;
 *              AP_NOT_READY (a checkout future still pending), AP_CLOSED,
 *              AP_INVAL (bad init arguments, a NULL
 *              out-pointer, a return of a foreign / idle / unlent pointer:
 *              nothing changed), AP_TIMEDOUT (ap_connpool_checkout_wait),
 *              AP_CANCELED (a cancelled future), AP_EXHAUSTED (the
 *              factory's open failed: its status and app_error beside it
 *              in the ap_connpool_fail, see FACTORY FAILURES; or ran past
 *              connect_timeout_ns: {AP_TIMEDOUT, open_timeout}). The pool
 *              never returns AP_REJECTED. A NULL or finished pool trips
 *              AP_ASSERT, as does fini with connections still lent.
 *              Out-params are untouched unless AP_OK (@fail: unless
 *              AP_EXHAUSTED).
 * WAKE ORDER   FIFO; each return / freed slot wakes the one future it
 *              serves; a granted future that cancels passes its grant on.
 * LIMITS       max_size <= AP_CONNPOOL_MAX.
 * CONFIG       AP_ASSERT, AP_SPIN_LIMIT, AP_TEST_YIELD
 * SEE ALSO     pool.h (fixed objects, lock-free fast path), semaphore.h
 *              (the grant scheme), waitlist.h (the ladder), future.h,
 *              tests/test_connpool.c, tests/stress/stress_connpool.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_CONNPOOL_H
#define ASYNCPAT_CONNPOOL_H

#include "core.h"
#include "future.h"
#include "time.h"
#include "waitlist.h"

#include <string.h>

/** AP_CONNPOOL_MAX - the largest max_size */
#define AP_CONNPOOL_MAX ((size_t)0x7fffffff)

/* Per-slot bookkeeping (private; in the caller's buffer after the slots).
 * Every field is guarded by the pool lock. */
typedef struct ap__connpool_slot {
    uint64_t created_ns; /* caller's clock when open succeeded */
    uint64_t idle_ns;    /* caller's clock when it last became idle */
    uint64_t lifetime_ns; /* this connection's lifetime: max_lifetime less its jitter */
    uint64_t lent_ns;    /* caller's clock when it was last lent */
    const char *site_file; /* the lending checkout's call site (NULL: not given) */
    int site_line;
    uint32_t leak_seen;  /* this lending was reported by ap_connpool_leak_check */
    uint32_t state;      /* AP__CONNPOOL_* */
    uint32_t next;       /* idle / free stack link: index + 1, 0 at the end */
} ap__connpool_slot;

/**
 * AP_CONNPOOL_BYTES - buffer bytes for ap_connpool_init (constant expression):
 * max connection slots of conn_size bytes, then the bookkeeping
 */
#define AP_CONNPOOL_BYTES(max, conn_size)                                             \
    (AP__ALIGN_UP((size_t)(max) * (size_t)(conn_size), AP_ALIGNOF(ap__connpool_slot)) + \
     (size_t)(max) * sizeof(ap__connpool_slot))
/** AP_CONNPOOL_ALIGN - the alignment ap_connpool_init needs of its buffer
 *  (the bookkeeping's; the connection type may need more) (constant
 *  expression) */
#define AP_CONNPOOL_ALIGN ((size_t)AP_ALIGNOF(ap__connpool_slot))

/*
 * The factory. open and close are required, validate is optional (NULL:
 * every idle connection is good). All three run on the thread of the pool
 * operation that needs them, with no pool lock held; they must not call
 * back into this pool. ctx is passed to each.
 */
typedef struct ap_connpool_ops {
    /* set up *conn (conn_size bytes of slot memory); AP_OK, or a failure
     * status (the slot is then freed and the caller gets AP_EXHAUSTED with
     * this status and *app_error beside it); *app_error is 0 on entry, set
     * it to your own error code (read only on failure) */
    ap_status (*open)(void *ctx, void *conn, int *app_error);
    /* tear down a connection open() set up; called exactly once for each */
    void (*close)(void *ctx, void *conn);
    /* still usable? false: the pool closes it instead of lending it */
    bool (*validate)(void *ctx, void *conn);
    void *ctx;
} ap_connpool_ops;

/*
 * The asynchronous open (optional; named by desc.open_async, see ASYNC
 * OPEN): all three functions are required. When given, every open goes
 * through them and ops.open may be NULL. Each gets ops.ctx; like the
 * others they run with no pool lock held and must not call back into the
 * pool.
 */
typedef struct ap_connpool_open_async {
    /* begin opening *conn at @now (the caller's clock); AP_OK: in flight,
     * poll follows; else a failure status as open's (nothing to abort).
     * *app_error is 0 on entry and kept across the polls. */
    ap_status (*start)(void *ctx, void *conn, uint64_t now, int *app_error);
    /* drive it: a future's poll (future.h) on the checkout's cx. AP_PENDING
     * after registering cx->waker with whatever will call it, or lowering
     * cx->deadline to be polled again by then; AP_READY with *result AP_OK
     * (the connection is open: close() will get it) or a failure status */
    ap_poll (*poll)(void *ctx, void *conn, ap_cx *cx, ap_status *result, int *app_error);
    /* release an open that started and will never be polled to READY (the
     * connect timeout, a cancelled checkout, close); called at most once
     * per start, never for an open that reached READY, never with close() */
    void (*abort)(void *ctx, void *conn);
} ap_connpool_open_async;

/** ap_connpool_fail - a failed open's report, beside AP_EXHAUSTED */
typedef struct ap_connpool_fail {
    ap_status error; /* what open returned (not AP_OK); AP_TIMEDOUT if open_timeout */
    int app_error;   /* what open wrote to *app_error (0: nothing) */
    bool open_timeout; /* the pool's connect_timeout_ns ran out: the open was
                          aborted (or, synchronous, took too long: a
                          connection it made was closed) */
} ap_connpool_fail;

/** ap_connpool_leak - what ap_connpool_leak_check reports of a connection
 *  held longer than desc.leak_threshold_ns */
typedef struct ap_connpool_leak {
    void *conn;        /* the connection (identity only: its holder may have
                          returned it by the time the callback runs) */
    uint64_t lent_ns;  /* the `now` of the checkout that lent it */
    uint64_t held_ns;  /* now - lent_ns at the check */
    const char *file;  /* the checkout's call site (AP_CONNPOOL_TRY_CHECKOUT /
                          AP_CONNPOOL_CHECKOUT_WAIT under AP_DEBUG), else NULL */
    int line;          /* its line, else 0 */
} ap_connpool_leak;

/* Configuration; a zero field means its default. */
typedef struct ap_connpool_desc {
    size_t max_size;          /* most connections open at once, 1 ..= AP_CONNPOOL_MAX (required) */
    size_t conn_size;         /* bytes per connection slot, >= 1 (required) */
    size_t min_idle;          /* target of ap_connpool_fill, <= max_size (default 0) */
    uint64_t max_lifetime_ns; /* retire connections this old (default 0: never) */
    uint64_t idle_timeout_ns; /* retire connections idle this long (default 0: never) */
    ap_clock clock;           /* the clock of ap_connpool_checkout_wait (its deadline and
                                 the `now` of its expiry checks), i.e. of the now the
                                 caller passes (default, zero: ap_now_ns) */
    /* Jittered lifetime (HikariCP): each connection's lifetime is
     * max_lifetime_ns less a random cut of up to lifetime_jitter_pct percent
     * of it (0 ..= 100, default 0; needs max_lifetime_ns), drawn at its open
     * from a splitmix64 sequence seeded with jitter_seed: the caller's
     * randomness, deterministic for a given seed and order of opens. So
     * connections opened together do not all expire together. */
    unsigned lifetime_jitter_pct;
    uint64_t jitter_seed;
    /* Leak detection: ap_connpool_leak_check(now) reports, once per lending,
     * each connection lent for at least leak_threshold_ns (default 0: off;
     * when set, on_leak is required) by calling on_leak(leak_ctx, &leak) with no
     * lock held. */
    uint64_t leak_threshold_ns;
    void (*on_leak)(void *leak_ctx, const ap_connpool_leak *leak);
    void *leak_ctx;
    /* Connect timeout (default 0: none): an open not done by
     * connect_timeout_ns after it began fails (AP_EXHAUSTED beside
     * {AP_TIMEDOUT, open_timeout}), counted in open_timeouts; see ASYNC OPEN. */
    uint64_t connect_timeout_ns;
    /* The asynchronous open (default NULL: ops.open, synchronous); copied */
    const ap_connpool_open_async *open_async;
} ap_connpool_desc;

/* A consistent snapshot (taken under the lock) of the pool's counters. */
typedef struct ap_connpool_stats {
    size_t max_size;
    size_t live;     /* open connections: opened - closed */
    size_t idle;     /* open and idle */
    size_t in_use;   /* open and not idle: lent, granted, being checked/closed */
    size_t opening;  /* slots reserved for an open in flight or granted */
    size_t waiters;  /* queued checkout futures */
    uint64_t opened, closed;       /* successful opens; close calls */
    uint64_t open_failures;        /* opens that failed (open_timeouts included) */
    uint64_t open_timeouts;        /* of which: over connect_timeout_ns */
    uint64_t validate_failures;    /* connections validate refused */
    uint64_t expired;              /* closed for lifetime / idle timeout */
    uint64_t broken;               /* returned broken */
    uint64_t leaks;                /* lendings reported by ap_connpool_leak_check */
    ap_status last_open_error;     /* the last failed open's status (AP_OK: none) */
    int last_app_error;            /* its app_error (0: none, or no failure) */
} ap_connpool_stats;

/* A connection pool. Not valid zero-initialised: use ap_connpool_init. */
typedef struct ap_connpool {
    ap__lock lock;               /* guards everything up to wl */
    unsigned char *conns;        /* slot i at conns + i * conn_size */
    ap__connpool_slot *slots;
    size_t max;                  /* 0 after fini */
    size_t conn_size;
    size_t min_idle;
    uint64_t max_lifetime_ns, idle_timeout_ns;
    uint64_t jitter_max;         /* largest lifetime cut (0: no jitter) */
    uint64_t jitter_state;       /* splitmix64 state, seeded from desc.jitter_seed */
    uint64_t leak_threshold_ns;
    uint64_t connect_timeout_ns; /* 0: none */
    void (*on_leak)(void *, const ap_connpool_leak *);
    void *leak_ctx;
    ap_clock clock;              /* desc.clock: checkout_wait's clock */
    ap_connpool_ops ops;
    ap_connpool_open_async aopen; /* desc.open_async, or all NULL */
    uint32_t idle_top, free_top; /* stacks: index + 1, 0 when empty */
    size_t reserved;             /* slots not FREE */
    ap_connpool_stats n;         /* live, idle, opened, ... (not waiters) */
    AP_ATOMIC_T(uint32_t) closed;     /* written under the lock; read also without */
    ap_waitlist wl;              /* queued checkout futures */
} ap_connpool;

/* An open in flight (private): the asynchronous factory's open of a
 * reserved slot, as a future with the connect timeout. A checkout future
 * embeds one; the blocking paths keep one on their stack. */
typedef struct ap__connpool_open_fut {
    ap_future base;
    ap_connpool *pool;
    uint32_t slot;
    uint32_t end;       /* how it ended: AP__CONNPOOL_END_* */
    ap_status status;   /* AP_NOT_READY in flight, then the factory's result */
    int app_error;
    uint64_t deadline;  /* AP_DEADLINE_NONE: no connect timeout */
} ap__connpool_open_fut;

/*
 * A checkout future (caller memory). status is AP_NOT_READY while pending,
 * then AP_OK (*out holds a connection the caller must return), AP_CLOSED,
 * AP_CANCELED or AP_EXHAUSTED (the open failed: `fail` says how).
 */
typedef struct ap_connpool_checkout_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_connpool *pool;
    void **out;
    ap_grant grant;           /* the queued request (waitlist.h) */
    uint32_t slot;            /* the granted slot; written before grant.granted */
    bool fresh;               /* granted a free slot (open one) rather than a connection */
    bool opening;             /* an asynchronous open in `open` is in flight */
    ap_status status;
    ap_connpool_fail fail;    /* {AP_OK, 0, false} unless status is AP_EXHAUSTED */
    ap__connpool_open_fut open; /* the open this future drives (async factory) */
} ap_connpool_checkout_fut;

/**
 * ap_connpool_init - a pool over the caller's buffer; nothing is opened yet
 * @buf:      at least AP_CONNPOOL_BYTES(desc->max_size, desc->conn_size)
 *            bytes, aligned to AP_CONNPOOL_ALIGN and for the connection
 *            type; kept until fini
 * @buf_size: its size (checked)
 * @desc:     configuration (copied)
 * @ops:      the factory (copied); open and close required
 *
 * Returns AP_OK, or AP_INVAL (desc, ops, buf NULL; max_size 0 or above
 * AP_CONNPOOL_MAX; conn_size 0; min_idle > max_size; close NULL; open
 * NULL without desc.open_async, or an open_async lacking a function;
 * buf misaligned or smaller than needed; sizes overflow). On AP_INVAL *p
 * and the buffer are untouched.
 */
AP_API AP_NODISCARD ap_status ap_connpool_init(ap_connpool *p, void *buf, size_t buf_size,
                                               const ap_connpool_desc *desc,
                                               const ap_connpool_ops *ops);

/**
 * ap_connpool_fini - close every idle connection, end of life
 *
 * Nothing may be lent, granted or queued (AP_ASSERT). Calls close for each
 * idle connection on this thread. Frees nothing.
 */
AP_API void ap_connpool_fini(ap_connpool *p);

/**
 * ap_connpool_try_checkout - lend a connection now, opening one if allowed
 * @conn: receives the connection; untouched unless AP_OK
 * @now:  caller's clock, for expiry (and the new connection's stamps)
 * @fail: NULL, or receives the factory's status and app_error when its
 *        open failed (AP_EXHAUSTED); untouched otherwise
 *
 * Takes the most recently returned idle connection; closes it instead if
 * it is expired or validate refuses it and tries the next; with nothing
 * idle and a slot free, opens a new connection on this thread.
 * Returns AP_OK (the caller holds *conn until it returns it), AP_EMPTY
 * (max_size open and none idle, or futures queued), AP_CLOSED,
 * AP_INVAL (@conn NULL), or AP_EXHAUSTED (open failed: *@fail).
 * Concurrency: any thread. Progress: blocking (short lock), plus the user
 *              calls made outside it.
 * Ordering:    acquire through the lock: the last holder's writes are visible.
 */
AP_API AP_NODISCARD ap_status ap_connpool_try_checkout(ap_connpool *p, void **conn,
                                                       uint64_t now, ap_connpool_fail *fail);

/**
 * ap_connpool_return - give a lent connection back
 * @conn:   a connection of this pool that the caller holds
 * @broken: true: close it and free its slot instead of reusing it
 * @now:    caller's clock: its idle stamp; a connection over its lifetime
 *          is closed
 *
 * After close, the connection is closed too. Then serves the oldest queued
 * future (the idle connection, or the freed slot to open a fresh one).
 * Returns AP_OK, or AP_INVAL (@conn is not a lent connection of this pool:
 * foreign, misaligned, idle, granted) and then nothing changed.
 * Concurrency: any thread. Progress: blocking (short lock); close() and
 * wakers run outside it.
 */
AP_API AP_NODISCARD ap_status ap_connpool_return(ap_connpool *p, void *conn, bool broken,
                                                 uint64_t now);

/**
 * ap_connpool_evict - close every idle connection that is expired at @now
 * Returns how many were closed. Frees their slots for queued futures.
 */
AP_API size_t ap_connpool_evict(ap_connpool *p, uint64_t now);

/**
 * ap_connpool_fill - open connections on this thread until min_idle are idle
 * (or max_size are open, or futures are queued: they take the capacity)
 *
 * Returns AP_OK, AP_CLOSED, or AP_EXHAUSTED at the first failed open (what
 * opened before it stays open; @fail, if not NULL, receives its status and
 * app_error, and is untouched otherwise).
 */
AP_API AP_NODISCARD ap_status ap_connpool_fill(ap_connpool *p, uint64_t now,
                                               ap_connpool_fail *fail);

/**
 * ap_connpool_close - close idle connections, fail queued and later
 * checkouts with AP_CLOSED; lent connections are closed when returned.
 * Idempotent.
 */
AP_API void ap_connpool_close(ap_connpool *p);
/** ap_connpool_is_closed - whether ap_connpool_close has been called */
AP_API bool ap_connpool_is_closed(ap_connpool *p);
/** ap_connpool_stats - a consistent snapshot of the counters into *@out */
AP_API void ap_connpool_stats_get(ap_connpool *p, ap_connpool_stats *out);

/**
 * ap_connpool_checkout_fut_init / _poll / _cancel / _status: a future for
 * one connection, stored to *@out on AP_OK. The first poll behaves as
 * try_checkout with cx->now; when that says AP_EMPTY the
 * future queues (FIFO) and is woken by the return or freed slot that
 * serves it. The poll that completes it runs, on the polling thread,
 * whatever the grant needs: expiry check (cx->now) and validate for a
 * connection, open for a slot (or after refusing a bad connection); an
 * asynchronous open is started there and polled by this and the later
 * polls (ASYNC OPEN), which stay AP_PENDING until it ends. Result:
 * AP_OK, AP_CLOSED, AP_CANCELED or AP_EXHAUSTED (the open failed:
 * ap_connpool_checkout_failure); *out untouched unless AP_OK. Cancel is
 * idempotent and safe at any time; a grant made to a future that is
 * cancelled before completing passes to the next queued future. After
 * cancel or READY the waker is never called again.
 */
AP_API void ap_connpool_checkout_fut_init(ap_connpool_checkout_fut *f, ap_connpool *p,
                                          void **out);
AP_API ap_poll ap_connpool_checkout_poll(ap_connpool_checkout_fut *f, ap_cx *cx);
AP_API void ap_connpool_checkout_cancel(ap_connpool_checkout_fut *f);
/** ap_connpool_checkout_status - AP_NOT_READY while pending, then the result */
AP_API AP_NODISCARD ap_status ap_connpool_checkout_status(const ap_connpool_checkout_fut *f);
/** ap_connpool_checkout_failure - beside a result of AP_EXHAUSTED: the
 *  failed open's status and app_error; {AP_OK, 0} for any other result */
AP_API ap_connpool_fail ap_connpool_checkout_failure(const ap_connpool_checkout_fut *f);

/**
 * ap_connpool_checkout_wait - block this thread until a connection is ours,
 * the pool is closed, an open fails, or @deadline_ns passes, on the pool's
 * clock (desc.clock; ap_now_ns() by default, through
 * ap_block_on_until_clock): the deadline and the `now` of its expiry
 * checks are read from it
 * @fail: NULL, or receives the failed open's status and app_error
 *        (AP_EXHAUSTED); untouched otherwise
 * Returns as the future, or AP_INVAL (@conn NULL), or AP_TIMEDOUT (nothing
 * taken; a grant racing the timeout was passed on). AP_TIMEDOUT is only
 * ever @deadline_ns: a factory's own timeout is AP_EXHAUSTED with
 * fail->error AP_TIMEDOUT.
 */
AP_API AP_NODISCARD ap_status ap_connpool_checkout_wait(ap_connpool *p, void **conn,
                                                        ap_deadline deadline_ns,
                                                        ap_connpool_fail *fail);

/**
 * ap_connpool_try_checkout_at / ap_connpool_checkout_wait_at - the same,
 * and on AP_OK the connection remembers @file and @line (the checkout's
 * call site) for ap_connpool_leak_check's report. Callers normally use the
 * macros AP_CONNPOOL_TRY_CHECKOUT / AP_CONNPOOL_CHECKOUT_WAIT, which pass
 * __FILE__ and __LINE__ under AP_DEBUG and NULL, 0 otherwise (the layout is
 * the same either way).
 */
AP_API AP_NODISCARD ap_status ap_connpool_try_checkout_at(ap_connpool *p, void **conn,
                                                          uint64_t now, ap_connpool_fail *fail,
                                                          const char *file, int line);
AP_API AP_NODISCARD ap_status ap_connpool_checkout_wait_at(ap_connpool *p, void **conn,
                                                           ap_deadline deadline_ns,
                                                           ap_connpool_fail *fail,
                                                           const char *file, int line);
#ifdef AP_DEBUG
#define AP_CONNPOOL_TRY_CHECKOUT(pool, conn, now, fail)                                     \
    ap_connpool_try_checkout_at((pool), (conn), (now), (fail), __FILE__, __LINE__)
#define AP_CONNPOOL_CHECKOUT_WAIT(pool, conn, deadline, fail)                               \
    ap_connpool_checkout_wait_at((pool), (conn), (deadline), (fail), __FILE__, __LINE__)
#else
#define AP_CONNPOOL_TRY_CHECKOUT(pool, conn, now, fail)                                     \
    ap_connpool_try_checkout_at((pool), (conn), (now), (fail), NULL, 0)
#define AP_CONNPOOL_CHECKOUT_WAIT(pool, conn, deadline, fail)                               \
    ap_connpool_checkout_wait_at((pool), (conn), (deadline), (fail), NULL, 0)
#endif

/**
 * ap_connpool_leak_check - report connections lent for at least
 * desc.leak_threshold_ns at @now: desc.on_leak is called once per such
 * lending (a connection returned and lent again is a new lending), on this
 * thread, with no lock held. Returns how many were reported now (0 when
 * leak detection is off). The pool reads no clock: call it from your
 * housekeeping, e.g. beside ap_connpool_evict. O(max_size).
 */
AP_API size_t ap_connpool_leak_check(ap_connpool *p, uint64_t now);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Happens-before: every hand-over passes through the pool lock (release
 *   by the returner, acquire by the next lender), and a queued future
 *   learns of its grant by an acquire load of `granted`, stored with
 *   release after the grant's critical section. So what a holder (or open)
 *   wrote to a connection is visible to its next holder, and to close.
 *   Lost wakeups (THE LADDER of waitlist.h): the returning side changes
 *   the slots under the pool lock, then loads the waiter count (relaxed:
 *   no fence, no seq_cst on the return path); the waiting side increments
 *   the count before its re-check, which takes the pool lock. The lock
 *   orders the two critical sections: if the returner's comes first, the
 *   waiter's re-check sees the idle connection or free slot; if the
 *   waiter's comes first, its increment happens-before the returner's
 *   count load (through the lock), which then sees it by coherence and
 *   runs the grant pass. So the lock, not a barrier, is the mechanism, in
 *   either ladder (asymmetric or the seq_cst fallback). Close stores `closed` (seq_cst) under the lock, then
 *   wakes everybody; a future's done-check loads it with seq_cst after its
 *   seq_cst increment, so one of the two sees the other.
 */

enum {
    AP__CONNPOOL_FREE = 0, /* no connection, on the free stack */
    AP__CONNPOOL_OPENING,  /* reserved: an open in flight, or granted to a future */
    AP__CONNPOOL_IDLE,     /* open, on the idle stack */
    AP__CONNPOOL_HELD,     /* lent to a caller */
    AP__CONNPOOL_GRANTED,  /* handed to a queued future that has not completed */
    AP__CONNPOOL_CHECKING, /* taken for lending: expiry / validate in progress */
    AP__CONNPOOL_CLOSING   /* close() in progress (still counted live) */
};

/* How an open ended (ap__connpool_open_fut.end). */
enum {
    AP__CONNPOOL_END_DONE = 0, /* the factory answered: status is its result */
    AP__CONNPOOL_END_TIMEOUT,  /* connect_timeout_ns ran out (aborted, or sync and late) */
    AP__CONNPOOL_END_CLOSED,   /* the pool closed while it was in flight: aborted */
    AP__CONNPOOL_END_CANCELED  /* its checkout was cancelled: aborted */
};

AP_API ap_status ap_connpool_init(ap_connpool *p, void *buf, size_t buf_size,
                                  const ap_connpool_desc *desc, const ap_connpool_ops *ops)
{
    AP_ASSERT(p != NULL);
    size_t body, need;
    if (desc == NULL || ops == NULL || buf == NULL || ops->close == NULL)
        return AP_INVAL;
    /* an asynchronous open has all three; without one, open is required */
    const ap_connpool_open_async *ao = desc->open_async;
    if (ao != NULL ? ao->start == NULL || ao->poll == NULL || ao->abort == NULL
                   : ops->open == NULL)
        return AP_INVAL;
    if (desc->max_size == 0 || desc->max_size > AP_CONNPOOL_MAX || desc->conn_size == 0 ||
        desc->min_idle > desc->max_size ||
        desc->lifetime_jitter_pct > 100 ||
        (desc->lifetime_jitter_pct != 0 && desc->max_lifetime_ns == 0) ||
        (desc->leak_threshold_ns != 0 && desc->on_leak == NULL) ||
        (uintptr_t)buf % AP_CONNPOOL_ALIGN != 0 ||
        !ap__size_muladd(desc->max_size, desc->conn_size, 0, &body))
        return AP_INVAL;
    body = ap__align_up(body, AP_ALIGNOF(ap__connpool_slot));
    if (body == 0 ||
        !ap__size_muladd(desc->max_size, sizeof(ap__connpool_slot), body, &need) ||
        buf_size < need || need - 1 > UINTPTR_MAX - (uintptr_t)buf)
        return AP_INVAL;
    p->conns = (unsigned char *)buf;
    p->slots = (ap__connpool_slot *)(void *)((unsigned char *)buf + body);
    p->max = desc->max_size;
    p->conn_size = desc->conn_size;
    p->min_idle = desc->min_idle;
    p->max_lifetime_ns = desc->max_lifetime_ns;
    p->idle_timeout_ns = desc->idle_timeout_ns;
    /* the largest cut: floor(max_lifetime * pct / 100), without overflow,
     * kept below max_lifetime so every lifetime is at least 1 ns */
    p->jitter_max = desc->max_lifetime_ns / 100 * desc->lifetime_jitter_pct +
                    desc->max_lifetime_ns % 100 * desc->lifetime_jitter_pct / 100;
    if (p->jitter_max >= p->max_lifetime_ns && p->max_lifetime_ns != 0)
        p->jitter_max = p->max_lifetime_ns - 1;
    p->jitter_state = desc->jitter_seed;
    p->leak_threshold_ns = desc->leak_threshold_ns;
    p->connect_timeout_ns = desc->connect_timeout_ns;
    p->on_leak = desc->on_leak;
    p->leak_ctx = desc->leak_ctx;
    p->clock = desc->clock;
    p->ops = *ops;
    if (ao != NULL) {
        p->aopen = *ao;
    } else {
        p->aopen.start = NULL;
        p->aopen.poll = NULL;
        p->aopen.abort = NULL;
    }
    for (size_t i = 0; i < p->max; i++) {
        p->slots[i].created_ns = p->slots[i].idle_ns = 0;
        p->slots[i].lifetime_ns = p->slots[i].lent_ns = 0;
        p->slots[i].site_file = NULL;
        p->slots[i].site_line = 0;
        p->slots[i].leak_seen = 0;
        p->slots[i].state = AP__CONNPOOL_FREE;
        p->slots[i].next = i + 1 < p->max ? (uint32_t)(i + 2) : 0u;
    }
    p->idle_top = 0;
    p->free_top = 1; /* slot 0 first */
    p->reserved = 0;
    memset(&p->n, 0, sizeof p->n);
    p->n.max_size = p->max;
    AP_ATOMIC_INIT(&p->lock.held, 0u);
    AP_ATOMIC_INIT(&p->closed, 0u);
    ap_waitlist_init(&p->wl);
    return AP_OK;
}

/* ---- bookkeeping, all under the pool lock ---- */

AP_FORCE_INLINE void *ap__connpool_conn(const ap_connpool *p, size_t i)
{
    return p->conns + i * p->conn_size;
}

AP_FORCE_INLINE bool ap__connpool_closed(ap_connpool *p)
{
    /* relaxed: callers hold the lock, under which close stored it. */
    return AP_ATOMIC_LOAD(&p->closed, memory_order_relaxed) != 0;
}

/* Pop the top of a stack (idle or free); index + 1, or 0 when empty. */
AP_FORCE_INLINE uint32_t ap__connpool_pop(ap_connpool *p, uint32_t *top)
{
    uint32_t t = *top;
    if (t != 0)
        *top = p->slots[t - 1].next;
    return t;
}

AP_FORCE_INLINE void ap__connpool_push(ap_connpool *p, uint32_t *top, size_t i, uint32_t state)
{
    p->slots[i].state = state;
    p->slots[i].next = *top;
    *top = (uint32_t)(i + 1);
}

/* Slot i (reserved) becomes free again. */
AP_FORCE_INLINE void ap__connpool_unreserve(ap_connpool *p, size_t i)
{
    ap__connpool_push(p, &p->free_top, i, AP__CONNPOOL_FREE);
    p->reserved--;
}

/* Take an idle connection (-> @state), else reserve a free slot
 * (-> OPENING). index + 1 and *fresh, or 0 when neither exists. */
AP_FORCE_INLINE uint32_t ap__connpool_take(ap_connpool *p, uint32_t state, bool *fresh)
{
    uint32_t t = ap__connpool_pop(p, &p->idle_top);
    if (t != 0) {
        p->n.idle--;
        p->slots[t - 1].state = state;
        *fresh = false;
        return t;
    }
    t = ap__connpool_pop(p, &p->free_top);
    if (t != 0) {
        p->slots[t - 1].state = AP__CONNPOOL_OPENING;
        p->reserved++;
        *fresh = true;
    }
    return t;
}

AP_FORCE_INLINE bool ap__connpool_over_lifetime(const ap_connpool *p, size_t i, uint64_t now)
{
    const ap__connpool_slot *s = &p->slots[i];
    return p->max_lifetime_ns != 0 && now >= s->created_ns &&
           now - s->created_ns >= s->lifetime_ns;
}

/* A new lending of slot i at now (its call site comes later, if given). */
AP_FORCE_INLINE void ap__connpool_lent(ap_connpool *p, size_t i, uint64_t now)
{
    p->slots[i].lent_ns = now;
    p->slots[i].site_file = NULL;
    p->slots[i].site_line = 0;
    p->slots[i].leak_seen = 0;
}

/* The lifetime of a connection opened now: max_lifetime less a cut drawn
 * uniformly from [0, jitter_max] (splitmix64; the modulo bias is below
 * jitter_max / 2^64). */
AP_FORCE_INLINE uint64_t ap__connpool_lifetime(ap_connpool *p)
{
    if (p->jitter_max == 0)
        return p->max_lifetime_ns;
    uint64_t z = ap__splitmix64(&p->jitter_state);
    uint64_t cut = z % (p->jitter_max + 1); /* jitter_max < max_lifetime: no wrap */
    return p->max_lifetime_ns - cut;
}

AP_FORCE_INLINE bool ap__connpool_expired(const ap_connpool *p, size_t i, uint64_t now)
{
    const ap__connpool_slot *s = &p->slots[i];
    return ap__connpool_over_lifetime(p, i, now) ||
           (p->idle_timeout_ns != 0 && now >= s->idle_ns &&
            now - s->idle_ns >= p->idle_timeout_ns);
}

/* Idle connections that are expired at @now (all of them if @all) leave
 * the idle stack as CLOSING, chained through `next`; index + 1 of the
 * chain's first, 0 if none. */
AP_API uint32_t ap__connpool_unidle(ap_connpool *p, uint64_t now, bool all, size_t *count)
{
    uint32_t chain = 0, *link = &p->idle_top;
    size_t k = 0;
    while (*link != 0) {
        size_t i = *link - 1;
        if (all || ap__connpool_expired(p, i, now)) {
            *link = p->slots[i].next;
            p->n.idle--;
            ap__connpool_push(p, &chain, i, AP__CONNPOOL_CLOSING);
            k++;
        } else {
            link = &p->slots[i].next;
        }
    }
    *count = k;
    return chain;
}

/* ---- serving queued futures ---- */

/* ap_grant_ops.grant, run UNDER the list lock for the head request (the
 * pool lock nests inside): give it an idle connection, else a free slot;
 * stop (strict FIFO) when there is neither. */
AP_API bool ap__connpool_grant(void *obj, ap_grant *g, void *ctx)
{
    ap_connpool *p = (ap_connpool *)obj;
    ap_connpool_checkout_fut *f = AP_CONTAINER_OF(g, ap_connpool_checkout_fut, grant);
    bool fresh = false;
    uint32_t t = 0;
    (void)ctx;
    ap__lock_acquire(&p->lock);
    if (!ap__connpool_closed(p))
        t = ap__connpool_take(p, AP__CONNPOOL_GRANTED, &fresh);
    ap__lock_release(&p->lock);
    if (t == 0)
        return false;
    f->slot = t - 1;
    f->fresh = fresh;
    /* ap_grant's release store of `granted` orders our critical section
     * (and through its lock, the returner's writes to the connection)
     * before the future's reads. */
    return true;
}

/* ap_grant_ops.closed; seq_cst: the ladder's re-check against close's
 * store. */
AP_API bool ap__connpool_closed_sc(void *obj)
{
    return AP_ATOMIC_LOAD(&((ap_connpool *)obj)->closed, memory_order_seq_cst) != 0;
}

AP_API void ap__connpool_give_back(void *obj, ap_grant *g);

AP_API const ap_grant_ops *ap__connpool_ops(void)
{
    /* no can_serve: the slots are read under the pool lock, in the grant */
    static const ap_grant_ops ops = {ap__connpool_grant, NULL, ap__connpool_closed_sc,
                                     ap__connpool_give_back};
    return &ops;
}

/* Serve queued futures. Callers changed the slots under the lock before.
 * relaxed: the ladder's count load; the pool lock orders a registration
 * that came first before it (ORDERING). */
AP_API void ap__connpool_dispatch(ap_connpool *p)
{
    if (AP_UNLIKELY(AP_ATOMIC_LOAD(&p->wl.count, memory_order_relaxed) != 0))
        (void)ap_grant_serve(&p->wl, ap__connpool_ops(), p, NULL);
}

/* ---- user calls, made with no lock held ---- */

/* Close the CLOSING connections chained from @chain; free their slots.
 * @expired: count them as expired. Does not dispatch. */
AP_API void ap__connpool_retire(ap_connpool *p, uint32_t chain, bool expired)
{
    while (chain != 0) {
        size_t i = chain - 1;
        /* plain read: a CLOSING slot is ours alone; `next` was written
         * under the lock we have since released */
        chain = p->slots[i].next;
        p->ops.close(p->ops.ctx, ap__connpool_conn(p, i));
        ap__lock_acquire(&p->lock);
        p->n.closed++;
        p->n.live--;
        if (expired)
            p->n.expired++;
        ap__connpool_unreserve(p, i);
        ap__lock_release(&p->lock);
    }
}

/* The open of reserved slot @i ended (@end, AP__CONNPOOL_END_*; @st the
 * factory's result when END_DONE or a late sync TIMEOUT). AP_OK: a
 * connection counted live, in @state. Else the slot is freed and the queue
 * served: AP_CLOSED (the pool closed meanwhile: nothing is kept), or
 * AP_EXHAUSTED with the factory's status and app_error (or {AP_TIMEDOUT,
 * open_timeout}) in *fail (if not NULL). A cancelled open is the
 * canceller's business (ap_connpool_checkout_cancel), never seen here. */
AP_API ap_status ap__connpool_open_end(ap_connpool *p, size_t i, uint64_t now, uint32_t state,
                                       ap_status st, int app_error, uint32_t end,
                                       ap_connpool_fail *fail)
{
    uint32_t chain = 0;
    bool timed_out = end == AP__CONNPOOL_END_TIMEOUT, kept = false;
    ap__lock_acquire(&p->lock);
    if (st == AP_OK) { /* END_DONE, or a synchronous open that returned late */
        p->n.opened++;
        p->n.live++;
        p->slots[i].created_ns = p->slots[i].idle_ns = now;
        p->slots[i].lifetime_ns = ap__connpool_lifetime(p);
        ap__connpool_lent(p, i, now);
        /* too late (timed out: not kept), or a close came while we opened
         * (never lend it; fill keeps its own check): close it at once */
        if (timed_out || (state == AP__CONNPOOL_HELD && ap__connpool_closed(p))) {
            ap__connpool_push(p, &chain, i, AP__CONNPOOL_CLOSING);
        } else {
            p->slots[i].state = state;
            kept = true;
        }
    } else {
        ap__connpool_unreserve(p, i); /* failed, or aborted: nothing to close */
    }
    if (!kept && end != AP__CONNPOOL_END_CLOSED && (st != AP_OK || timed_out)) {
        p->n.open_failures++;
        p->n.last_open_error = timed_out ? AP_TIMEDOUT : st;
        p->n.last_app_error = app_error;
        if (timed_out)
            p->n.open_timeouts++;
    }
    ap__lock_release(&p->lock);
    if (chain != 0)
        ap__connpool_retire(p, chain, false);
    if (kept)
        return AP_OK;
    if (st == AP_OK && !timed_out)
        return AP_CLOSED; /* overtaken by close: the queue is failed by close */
    ap__connpool_dispatch(p); /* the slot may serve a queued future */
    if (end == AP__CONNPOOL_END_CLOSED)
        return AP_CLOSED;
    if (fail) {
        fail->error = timed_out ? AP_TIMEDOUT : st;
        fail->app_error = app_error;
        fail->open_timeout = timed_out;
    }
    return AP_EXHAUSTED;
}

/* The open future's poll: the pool's checks first (closed: abort; at or
 * past the deadline: abort, timed out), then the factory's open_poll,
 * which gets the caller's cx; pending, it is polled again by the
 * deadline at the latest. */
AP_API ap_poll ap__connpool_open_poll(ap__connpool_open_fut *o, ap_cx *cx)
{
    if (o->status != AP_NOT_READY)
        return AP_READY;
    ap_connpool *p = o->pool;
    void *c = ap__connpool_conn(p, o->slot);
    uint32_t end = AP__CONNPOOL_END_DONE;
    /* acquire: an early look only; what happens after is decided under
     * the lock (ap__connpool_open_end) */
    if (AP_ATOMIC_LOAD(&p->closed, memory_order_acquire) != 0)
        end = AP__CONNPOOL_END_CLOSED;
    else if (cx->now >= o->deadline)
        end = AP__CONNPOOL_END_TIMEOUT; /* at the deadline exactly: too late */
    if (end != AP__CONNPOOL_END_DONE) {
        p->aopen.abort(p->ops.ctx, c);
        o->end = end;
        o->status = end == AP__CONNPOOL_END_CLOSED ? AP_CLOSED : AP_TIMEDOUT;
        return AP_READY;
    }
    ap_status r = AP_NOT_READY;
    if (p->aopen.poll(p->ops.ctx, c, cx, &r, &o->app_error) == AP_PENDING) {
        ap_cx_wake_at(cx, o->deadline); /* AP_DEADLINE_NONE: no change */
        return AP_PENDING;
    }
    o->status = r == AP_NOT_READY ? AP_EMPTY : r; /* "ready, not ready": a failure */
    return AP_READY;
}

/* Abort an open in flight (its checkout was cancelled); the slot stays
 * reserved for the caller to free. Idempotent. */
AP_API void ap__connpool_open_cancel(ap__connpool_open_fut *o)
{
    if (o->status != AP_NOT_READY)
        return;
    ap_connpool *p = o->pool;
    p->aopen.abort(p->ops.ctx, ap__connpool_conn(p, o->slot));
    o->end = AP__CONNPOOL_END_CANCELED;
    o->status = AP_CANCELED;
}

AP__FUTURE_VTABLE(ap__connpool_open, ap__connpool_open_fut, ap__connpool_open_poll,
                  ap__connpool_open_cancel)

/* Start the asynchronous open of reserved slot @i at @now into *o. AP_OK:
 * in flight; else the factory's failure status (o->app_error beside it),
 * and nothing to abort. */
AP_API ap_status ap__connpool_open_begin(ap_connpool *p, size_t i, uint64_t now,
                                         ap__connpool_open_fut *o)
{
    o->base.poll = ap__connpool_open_poll_v;
    o->base.cancel = ap__connpool_open_cancel_v;
    o->pool = p;
    o->slot = (uint32_t)i;
    o->end = AP__CONNPOOL_END_DONE;
    o->app_error = 0;
    o->deadline = p->connect_timeout_ns != 0 ? ap_deadline_after(now, p->connect_timeout_ns)
                                              : AP_DEADLINE_NONE;
    AP_TEST_YIELD(); /* slot reserved, open not yet started */
    ap_status st = p->aopen.start(p->ops.ctx, ap__connpool_conn(p, i), now, &o->app_error);
    o->status = st == AP_OK ? AP_NOT_READY : st;
    return st;
}

/* Open a connection in reserved slot @i on this thread: the synchronous
 * open (timed on desc.clock when connect_timeout_ns is set), or the
 * asynchronous one driven to its end here (poll, park on desc.clock).
 * Then ap__connpool_open_end. */
AP_API ap_status ap__connpool_open(ap_connpool *p, size_t i, uint64_t now, uint32_t state,
                                   ap_connpool_fail *fail)
{
    int app_error = 0;
    ap_status st;
    uint32_t end = AP__CONNPOOL_END_DONE;
    if (p->aopen.poll != NULL) {
        ap__connpool_open_fut o;
        st = ap__connpool_open_begin(p, i, now, &o);
        if (st == AP_OK) {
            /* no deadline of ours: the open's own (connect_timeout) ends it */
            ap_status w = ap_block_on_until_clock(&o.base, AP_DEADLINE_NONE, &p->clock);
            AP_ASSERT(w == AP_OK); /* no deadline: it ends only READY */
            (void)w;
            st = o.status;
            end = o.end;
        }
        app_error = o.app_error;
    } else {
        uint64_t t0 = p->connect_timeout_ns != 0 ? ap_clock_now(&p->clock) : 0;
        AP_TEST_YIELD(); /* slot reserved, open not yet called */
        st = p->ops.open(p->ops.ctx, ap__connpool_conn(p, i), &app_error);
        if (p->connect_timeout_ns != 0) { /* measured from before to after the call */
            uint64_t t1 = ap_clock_now(&p->clock);
            if (t1 >= t0 && t1 - t0 >= p->connect_timeout_ns)
                end = AP__CONNPOOL_END_TIMEOUT;
        }
    }
    return ap__connpool_open_end(p, i, now, state, st, app_error, end, fail);
}

/* Lend what slot @i holds (a connection taken for us, or a reservation
 * when @fresh): check expiry and validate, closing what fails and moving
 * on to the next idle connection or opening one in the slot. Bounded: each
 * round but the last closes a connection, and at most max_size exist.
 * @o: NULL, or where a checkout future keeps an asynchronous open: the
 * open is then started there and AP_NOT_READY returned (in flight; the
 * future drives it), instead of being driven to its end on this thread. */
AP_API ap_status ap__connpool_lend(ap_connpool *p, size_t i, bool fresh, uint64_t now,
                                   void **out, ap_connpool_fail *fail, ap__connpool_open_fut *o)
{
    for (;;) {
        if (fresh && o != NULL && p->aopen.poll != NULL) {
            ap_status st = ap__connpool_open_begin(p, i, now, o);
            if (st == AP_OK)
                return AP_NOT_READY;
            return ap__connpool_open_end(p, i, now, AP__CONNPOOL_HELD, st, o->app_error,
                                         AP__CONNPOOL_END_DONE, fail);
        }
        if (fresh) {
            ap_status st = ap__connpool_open(p, i, now, AP__CONNPOOL_HELD, fail);
            if (st == AP_OK)
                *out = ap__connpool_conn(p, i);
            return st;
        }
        void *c = ap__connpool_conn(p, i);
        /* The stamps were written under the lock before the connection was
         * taken for us (we hold it now, or the grant's release/acquire
         * edge carried them): race-free to read here. */
        bool expired = ap__connpool_expired(p, i, now);
        if (!expired && (p->ops.validate == NULL || p->ops.validate(p->ops.ctx, c))) {
            ap__lock_acquire(&p->lock);
            p->slots[i].state = AP__CONNPOOL_HELD;
            ap__connpool_lent(p, i, now);
            ap__lock_release(&p->lock);
            *out = c;
            return AP_OK;
        }
        AP_TEST_YIELD(); /* refused, not yet closed */
        p->ops.close(p->ops.ctx, c);
        bool free_slot;
        ap__lock_acquire(&p->lock);
        p->n.closed++;
        p->n.live--;
        if (expired)
            p->n.expired++;
        else
            p->n.validate_failures++;
        if (ap__connpool_closed(p)) {
            ap__connpool_unreserve(p, i);
            ap__lock_release(&p->lock);
            ap__connpool_dispatch(p);
            return AP_CLOSED; /* nothing is opened after close */
        }
        uint32_t t = ap__connpool_pop(p, &p->idle_top);
        free_slot = t != 0;
        if (free_slot) { /* another idle one: try it, give the slot back */
            p->n.idle--;
            p->slots[t - 1].state = AP__CONNPOOL_CHECKING;
            ap__connpool_unreserve(p, i);
            i = t - 1;
        } else { /* keep the slot: open a fresh connection in it */
            p->slots[i].state = AP__CONNPOOL_OPENING;
            fresh = true;
        }
        ap__lock_release(&p->lock);
        if (free_slot)
            ap__connpool_dispatch(p);
    }
}

/* ---- public operations ---- */

AP_API void ap_connpool_fini(ap_connpool *p)
{
    AP_ASSERT(p != NULL && p->max != 0);
    size_t k;
    ap__lock_acquire(&p->lock);
    /* nothing lent, granted or in flight; nobody queued */
    AP_ASSERT(p->reserved == p->n.idle && !ap_waitlist_has_waiters(&p->wl));
    uint32_t chain = ap__connpool_unidle(p, 0, true, &k);
    ap__lock_release(&p->lock);
    ap__connpool_retire(p, chain, false);
    p->max = 0;
}

/* try_checkout, and a checkout future's first poll (@o: its open). */
AP_API ap_status ap__connpool_try_lend(ap_connpool *p, void **conn, uint64_t now,
                                       ap_connpool_fail *fail, ap__connpool_open_fut *o)
{
    bool fresh = false;
    uint32_t t = 0;
    ap_status st = AP_OK;
    ap__lock_acquire(&p->lock);
    if (ap__connpool_closed(p))
        st = AP_CLOSED;
    /* fairness: queued futures first (relaxed: orders nothing) */
    else if (AP_ATOMIC_LOAD(&p->wl.count, memory_order_relaxed) != 0)
        st = AP_EMPTY;
    else if ((t = ap__connpool_take(p, AP__CONNPOOL_CHECKING, &fresh)) == 0)
        st = AP_EMPTY;
    ap__lock_release(&p->lock);
    if (st != AP_OK)
        return st;
    return ap__connpool_lend(p, t - 1, fresh, now, conn, fail, o);
}

AP_API ap_status ap_connpool_try_checkout(ap_connpool *p, void **conn, uint64_t now,
                                          ap_connpool_fail *fail)
{
    AP_ASSERT(p != NULL && p->max != 0);
    if (AP_UNLIKELY(conn == NULL))
        return AP_INVAL;
    return ap__connpool_try_lend(p, conn, now, fail, NULL);
}

AP_API ap_status ap_connpool_return(ap_connpool *p, void *conn, bool broken, uint64_t now)
{
    AP_ASSERT(p != NULL && p->max != 0);
    /* unsigned arithmetic on addresses: anything below conns wraps high;
     * max * conn_size fits (checked at init) */
    uintptr_t off = (uintptr_t)conn - (uintptr_t)p->conns;
    if (AP_UNLIKELY(off >= (uintptr_t)p->max * p->conn_size || off % p->conn_size != 0))
        return AP_INVAL;
    size_t i = (size_t)(off / p->conn_size);
    uint32_t chain = 0;
    bool expired = false;
    ap__lock_acquire(&p->lock);
    if (AP_UNLIKELY(p->slots[i].state != AP__CONNPOOL_HELD)) {
        ap__lock_release(&p->lock);
        return AP_INVAL; /* idle (double return), granted, or never lent */
    }
    if (broken || ap__connpool_closed(p) || ap__connpool_over_lifetime(p, i, now)) {
        expired = !broken && !ap__connpool_closed(p);
        if (broken)
            p->n.broken++;
        ap__connpool_push(p, &chain, i, AP__CONNPOOL_CLOSING);
    } else {
        p->slots[i].idle_ns = now;
        ap__connpool_push(p, &p->idle_top, i, AP__CONNPOOL_IDLE);
        p->n.idle++;
    }
    ap__lock_release(&p->lock);
    AP_TEST_YIELD(); /* idle (or closing), waiters not yet looked for */
    ap__connpool_retire(p, chain, expired);
    ap__connpool_dispatch(p);
    return AP_OK;
}

AP_API size_t ap_connpool_evict(ap_connpool *p, uint64_t now)
{
    AP_ASSERT(p != NULL && p->max != 0);
    size_t k;
    ap__lock_acquire(&p->lock);
    uint32_t chain = ap__connpool_unidle(p, now, false, &k);
    ap__lock_release(&p->lock);
    ap__connpool_retire(p, chain, true);
    if (k != 0)
        ap__connpool_dispatch(p);
    return k;
}

AP_API ap_status ap_connpool_fill(ap_connpool *p, uint64_t now, ap_connpool_fail *fail)
{
    AP_ASSERT(p != NULL && p->max != 0);
    for (size_t round = 0; round < p->max; round++) {
        uint32_t t = 0;
        ap_status st = AP_OK;
        ap__lock_acquire(&p->lock);
        if (ap__connpool_closed(p))
            st = AP_CLOSED;
        else if (p->n.idle < p->min_idle && !ap_waitlist_has_waiters(&p->wl) &&
                 (t = ap__connpool_pop(p, &p->free_top)) != 0) {
            p->slots[t - 1].state = AP__CONNPOOL_OPENING;
            p->reserved++;
        }
        ap__lock_release(&p->lock);
        if (t == 0)
            return st; /* enough idle, full, queued futures, or closed */
        size_t i = t - 1;
        st = ap__connpool_open(p, i, now, AP__CONNPOOL_CHECKING, fail);
        if (st != AP_OK)
            return st;
        uint32_t chain = 0;
        ap__lock_acquire(&p->lock);
        if (ap__connpool_closed(p)) {
            ap__connpool_push(p, &chain, i, AP__CONNPOOL_CLOSING);
        } else {
            ap__connpool_push(p, &p->idle_top, i, AP__CONNPOOL_IDLE);
            p->n.idle++;
        }
        ap__lock_release(&p->lock);
        if (chain != 0) {
            ap__connpool_retire(p, chain, false);
            return AP_CLOSED;
        }
        ap__connpool_dispatch(p); /* somebody may have queued meanwhile */
    }
    return AP_OK;
}

AP_API void ap_connpool_close(ap_connpool *p)
{
    AP_ASSERT(p != NULL && p->max != 0);
    size_t k;
    ap__lock_acquire(&p->lock);
    /* seq_cst: the ladder's write against a future's seq_cst done-check;
     * stored under the lock, so every locked path sees it too. */
    AP_ATOMIC_STORE(&p->closed, 1u, memory_order_seq_cst);
    uint32_t chain = ap__connpool_unidle(p, 0, true, &k);
    ap__lock_release(&p->lock);
    (void)ap_waitlist_wake_all(&p->wl);
    ap__connpool_retire(p, chain, false);
}

AP_API bool ap_connpool_is_closed(ap_connpool *p)
{
    AP_ASSERT(p != NULL && p->max != 0);
    /* acquire: what the closer did before close is visible to a caller
     * that sees it closed. */
    return AP_ATOMIC_LOAD(&p->closed, memory_order_acquire) != 0;
}

AP_API void ap_connpool_stats_get(ap_connpool *p, ap_connpool_stats *out)
{
    AP_ASSERT(p != NULL && p->max != 0 && out != NULL);
    ap__lock_acquire(&p->lock);
    *out = p->n;
    out->in_use = p->n.live - p->n.idle;
    out->opening = p->reserved - p->n.live;
    out->waiters = AP_ATOMIC_LOAD(&p->wl.count, memory_order_relaxed);
    ap__lock_release(&p->lock);
}

/* ---- the checkout future ---- */

AP__FUTURE_VTABLE(ap__connpool, ap_connpool_checkout_fut, ap_connpool_checkout_poll,
                  ap_connpool_checkout_cancel)

AP_API void ap_connpool_checkout_fut_init(ap_connpool_checkout_fut *f, ap_connpool *p,
                                          void **out)
{
    AP_ASSERT(f != NULL && p != NULL && p->max != 0 && out != NULL);
    f->base.poll = ap__connpool_poll_v;
    f->base.cancel = ap__connpool_cancel_v;
    f->pool = p;
    f->out = out;
    ap_grant_init(&f->grant);
    f->slot = 0;
    f->fresh = false;
    f->opening = false;
    f->status = AP_NOT_READY;
    f->fail.error = AP_OK;
    f->fail.app_error = 0;
    f->fail.open_timeout = false;
}

/* The grant is ours (off the list, no wake in progress): lend it.
 * AP_NOT_READY: an asynchronous open is in flight in f->open. */
AP_API ap_status ap__connpool_fut_complete(ap_connpool_checkout_fut *f, uint64_t now)
{
    ap_connpool *p = f->pool;
    void *c;
    if (f->fresh && AP_ATOMIC_LOAD(&p->closed, memory_order_seq_cst) != 0) {
        /* seq_cst: as in ap__connpool_closed_sc. A slot granted before close opens
         * nothing after it. */
        ap__lock_acquire(&p->lock);
        ap__connpool_unreserve(p, f->slot);
        ap__lock_release(&p->lock);
        return AP_CLOSED;
    }
    if (!f->fresh) {
        ap__lock_acquire(&p->lock);
        p->slots[f->slot].state = AP__CONNPOOL_CHECKING;
        ap__lock_release(&p->lock);
    }
    ap_status st = ap__connpool_lend(p, f->slot, f->fresh, now, &c, &f->fail, &f->open);
    if (st == AP_OK)
        *f->out = c;
    return st;
}

/* Drive the open in flight; on its end, book it (ap__connpool_open_end). */
AP_API ap_poll ap__connpool_fut_drive(ap_connpool_checkout_fut *f, ap_cx *cx)
{
    ap__connpool_open_fut *o = &f->open;
    if (ap__connpool_open_poll(o, cx) == AP_PENDING)
        return AP_PENDING;
    f->opening = false;
    ap_status st = ap__connpool_open_end(f->pool, o->slot, cx->now, AP__CONNPOOL_HELD, o->status,
                                         o->app_error, o->end, &f->fail);
    if (st == AP_OK)
        *f->out = ap__connpool_conn(f->pool, o->slot);
    f->status = st;
    return AP_READY;
}

AP_API ap_poll ap_connpool_checkout_poll(ap_connpool_checkout_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_connpool *p = f->pool;
    AP_ASSERT(p->max != 0);
    if (f->opening)
        return ap__connpool_fut_drive(f, cx); /* our open is in flight */
    ap_status st;
    if (!f->grant.queued) {
        void *c;
        st = ap__connpool_try_lend(p, &c, cx->now, &f->fail, &f->open);
        if (st == AP_OK)
            *f->out = c;
        if (st != AP_EMPTY)
            goto lent;
        /* queue behind the others */
    }
    st = ap_grant_poll(&p->wl, ap__connpool_ops(), p, &f->grant, cx);
    if (st == AP_NOT_READY)
        return AP_PENDING;
    if (st == AP_OK)
        st = ap__connpool_fut_complete(f, cx->now); /* the grant is ours: lend it */
lent:
    if (st == AP_NOT_READY) { /* an asynchronous open started: drive it now */
        f->opening = true;
        return ap__connpool_fut_drive(f, cx);
    }
    f->status = st;
    return AP_READY;
}

/* ap_grant_ops.give_back: a grant made to a cancelled future goes back
 * (a reserved slot to the free stack, a connection to the idle stack, or
 * closed after close), then on to the next future. */
AP_API void ap__connpool_give_back(void *obj, ap_grant *g)
{
    ap_connpool *p = (ap_connpool *)obj;
    ap_connpool_checkout_fut *f = AP_CONTAINER_OF(g, ap_connpool_checkout_fut, grant);
    uint32_t chain = 0;
    size_t i = f->slot;
    ap__lock_acquire(&p->lock);
    if (f->fresh) {
        ap__connpool_unreserve(p, i);
    } else if (ap__connpool_closed(p)) {
        ap__connpool_push(p, &chain, i, AP__CONNPOOL_CLOSING);
    } else { /* back on top: never lent, so its idle stamp stands */
        ap__connpool_push(p, &p->idle_top, i, AP__CONNPOOL_IDLE);
        p->n.idle++;
    }
    ap__lock_release(&p->lock);
    ap__connpool_retire(p, chain, false);
    ap__connpool_dispatch(p); /* pass the grant on */
}

AP_API void ap_connpool_checkout_cancel(ap_connpool_checkout_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->status != AP_NOT_READY)
        return; /* completed or cancelled: nothing to undo (idempotent) */
    ap_connpool *p = f->pool;
    if (f->opening) {
        /* our open is in flight: abort it, free its slot, pass it on (the
         * next future opens its own); nothing was opened, nothing closes */
        f->opening = false;
        ap__connpool_open_cancel(&f->open);
        ap__lock_acquire(&p->lock);
        ap__connpool_unreserve(p, f->open.slot);
        ap__lock_release(&p->lock);
        ap__connpool_dispatch(p);
    } else {
        /* a grant goes back and on; without one, whoever is behind us is served */
        ap_grant_cancel(&p->wl, ap__connpool_ops(), p, &f->grant);
    }
    f->status = AP_CANCELED;
}

AP_API ap_status ap_connpool_checkout_status(const ap_connpool_checkout_fut *f)
{
    return f->status;
}

AP_API ap_connpool_fail ap_connpool_checkout_failure(const ap_connpool_checkout_fut *f)
{
    return f->fail;
}

AP_API ap_status ap_connpool_checkout_wait(ap_connpool *p, void **conn, ap_deadline deadline_ns,
                                           ap_connpool_fail *fail)
{
    AP_ASSERT(p != NULL && p->max != 0);
    if (conn == NULL)
        return AP_INVAL;
    ap_connpool_checkout_fut f;
    ap_connpool_checkout_fut_init(&f, p, conn);
    if (ap_block_on_until_clock(&f.base, deadline_ns, &p->clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    if (f.status == AP_EXHAUSTED && fail)
        *fail = f.fail;
    return f.status;
}

/* ---- call sites and leak detection ---- */

/* Record the call site of the lending that gave the caller @conn. */
AP_API void ap__connpool_site(ap_connpool *p, void *conn, const char *file, int line)
{
    size_t i = (size_t)(((unsigned char *)conn - p->conns) / p->conn_size);
    ap__lock_acquire(&p->lock);
    if (p->slots[i].state == AP__CONNPOOL_HELD) {
        p->slots[i].site_file = file;
        p->slots[i].site_line = line;
    }
    ap__lock_release(&p->lock);
}

AP_API ap_status ap_connpool_try_checkout_at(ap_connpool *p, void **conn, uint64_t now,
                                             ap_connpool_fail *fail, const char *file, int line)
{
    ap_status st = ap_connpool_try_checkout(p, conn, now, fail);
    if (st == AP_OK && file != NULL)
        ap__connpool_site(p, *conn, file, line);
    return st;
}

AP_API ap_status ap_connpool_checkout_wait_at(ap_connpool *p, void **conn,
                                              ap_deadline deadline_ns, ap_connpool_fail *fail,
                                              const char *file, int line)
{
    ap_status st = ap_connpool_checkout_wait(p, conn, deadline_ns, fail);
    if (st == AP_OK && file != NULL)
        ap__connpool_site(p, *conn, file, line);
    return st;
}

AP_API size_t ap_connpool_leak_check(ap_connpool *p, uint64_t now)
{
    AP_ASSERT(p != NULL && p->max != 0);
    size_t k = 0;
    if (p->leak_threshold_ns == 0)
        return 0;
    for (size_t i = 0; i < p->max; i++) {
        ap_connpool_leak leak;
        bool found = false;
        ap__lock_acquire(&p->lock);
        ap__connpool_slot *s = &p->slots[i];
        if (s->state == AP__CONNPOOL_HELD && !s->leak_seen && now >= s->lent_ns &&
            now - s->lent_ns >= p->leak_threshold_ns) {
            s->leak_seen = 1;
            p->n.leaks++;
            leak.conn = ap__connpool_conn(p, i);
            leak.lent_ns = s->lent_ns;
            leak.held_ns = now - s->lent_ns;
            leak.file = s->site_file;
            leak.line = s->site_line;
            found = true;
        }
        ap__lock_release(&p->lock);
        if (found) { /* outside the lock: the callback may log, or call stats_get */
            p->on_leak(p->leak_ctx, &leak);
            k++;
        }
    }
    return k;
}

#endif /* ASYNCPAT_CONNPOOL_H */
