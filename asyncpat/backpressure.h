/*
 * asyncpat/backpressure.h -- bounded buffer with an overload policy and
 *                            high/low watermarks
 *
 * PATTERN
 *   A bounded FIFO between producers and consumers that decides what
 *   happens when producers are faster than consumers. It is built from the
 *   library's parts, not a copy of them: the buffer is an ap_mpmc (mpmc.h),
 *   THROTTLE pacing is an ap_tb (token_bucket.h), and every wait is an
 *   ap_waitop on an ap_waitlist (waitlist.h). On top of them it keeps one
 *   atomic word, the level:
 *
 *     level = count << 2 | CLOSED << 1 | HIGH
 *
 *   `count` is the number of slots reserved by producers and not yet given
 *   back by a completed pop (buffered elements plus pushes in flight); a
 *   producer reserves a slot with one CAS on the level before it copies
 *   into the mpmc, and a consumer gives it back with one CAS after its
 *   mpmc pop. HIGH is the watermark state, updated by the same CASes:
 *
 *     a reservation that makes count reach high_watermark sets HIGH;
 *     a give-back that makes count fall to low_watermark clears HIGH
 *       (hysteresis: between the two marks the state does not change)
 *       and wakes every "below the low watermark" future.
 *
 *   Strategies (fixed at init), what ap_bp_push does when count == capacity:
 *     AP_BP_STRATEGY_BLOCK        refuse with AP_FULL; a push future (ap_bp_push_fut,
 *                        ap_bp_push_wait) waits for space and is woken by the
 *                        pop that frees a slot: no sleep, no spin
 *     AP_BP_STRATEGY_DROP_NEWEST  refuse with AP_DROPPED; the element stays with the
 *                        caller (counted in dropped_newest)
 *     AP_BP_STRATEGY_DROP_OLDEST  evict the oldest buffered element into *evicted_out,
 *                        then accept the new one; AP_DROPPED (counted in
 *                        dropped_oldest)
 *     AP_BP_STRATEGY_THROTTLE     while the state is HIGH every push must take one
 *                        token from the bucket at now_ns, else AP_REJECTED
 *                        and *retry_at (counted in throttled); while LOW,
 *                        pushes are free. A full buffer still answers AP_FULL
 *
 * USAGE
 *   ap_bp *bp;   // 1024 jobs; drop the oldest when consumers fall behind
 *   if (ap_bp_create(&bp, &(ap_bp_desc){.capacity = 1024, .elem_size = sizeof(job),
 *                                       .strategy = AP_BP_STRATEGY_DROP_OLDEST}, NULL)) abort();
 *   job old;
 *   if (ap_bp_push(bp, &j, ap_now_ns(), &old, NULL) == AP_DROPPED) fail_job(&old);
 *   while (ap_bp_pop_wait(bp, &j, AP_DEADLINE_NONE) == AP_OK) run(&j);  // consumer
 *   // a producer that wants the buffer to drain first:
 *   if (ap_bp_level(bp) == AP_BP_LEVEL_STATE_HIGH && ap_bp_low_wait(bp, AP_DEADLINE_NONE) != AP_OK)
 *       return;                       // AP_CLOSED: stop producing
 *
 * GUARANTEES (invariants the tests check)
 *   - nothing is lost: every element pushed with AP_OK or AP_DROPPED
 *     (DROP_OLDEST) is popped exactly once or handed back exactly once as
 *     evicted; elements of one producer leave in its push order
 *   - counters (ap_bp_stats_get), at quiescence:
 *       offered  == accepted + dropped_newest + throttled + full + closed
 *                   + canceled
 *       accepted == popped + dropped_oldest + ap_bp_len()
 *     `offered` counts every ap_bp_push call and every push future once
 *     (at its completion or cancel; a push_wait that times out is canceled);
 *     `full` counts AP_FULL answers of ap_bp_push; `waits` counts push
 *     futures that returned AP_PENDING at least once. The fast path counts
 *     nothing of its own: `popped` is the mpmc's pops since init (its head
 *     ticket, which the pop's claim CAS moves anyway) less dropped_oldest
 *     (where size_t is narrower than 64 bits, a relaxed add per pop
 *     instead, so it cannot wrap early); `accepted` is derived as popped +
 *     dropped_oldest + the slots reserved now, and `offered` as the sum of
 *     its outcomes above; every other counter is bumped where its outcome
 *     happens (all slow or refusing paths). So the second identity holds
 *     by construction and the first says that every refusal is counted
 *     once; conservation itself is checked on the elements (tests, fuzz).
 *     On 64-bit, popped is exact up to 2^64 / (2 * pow2_ceil(capacity+1))
 *     * capacity pops (the mpmc's ticket space; over 2^55 for any size)
 *   - evictions take exactly the oldest element, in FIFO order
 *   - watermark transitions are exact in the level's modification order:
 *     LOW->HIGH at the push that makes count == high, HIGH->LOW at the
 *     give-back that makes count == low, never in between
 *   - a low-watermark future pending while HIGH is woken by the pop that
 *     clears HIGH (and by close), not before
 *   - close: later pushes (all forms, all strategies) answer AP_CLOSED and
 *     keep their element; pushes that reserved before close still land;
 *     pops drain, then answer AP_CLOSED; every waiting future wakes
 *   - bad configuration is AP_INVAL and changes nothing
 *
 * STATUS OF ap_bp_push (exactly one outcome per call, each counted)
 *   AP_OK        accepted; nothing evicted
 *   AP_DROPPED   one element was dropped by policy and is in the caller's
 *                hands: DROP_NEWEST: @elem itself, NOT enqueued;
 *                DROP_OLDEST: @elem WAS enqueued and *evicted_out holds the
 *                evicted oldest element. No other strategy returns it.
 *   AP_FULL      BLOCK or THROTTLE: no room; @elem stays with the caller
 *   AP_REJECTED  THROTTLE: paced out; *retry_at (if not NULL) is the earliest
 *                instant a token is available; @elem stays with the caller
 *   AP_CLOSED    closed; @elem stays with the caller
 *   Out-parameters are written only where a status says so.
 *
 * CONCURRENCY      push  try_pop  futures  close  len/level/stats  fini
 *   any of them     yes    yes      yes     yes        yes          no
 *   A future is polled and cancelled by one thread at a time (future.h).
 *   Progress: BLOCK, DROP_NEWEST and THROTTLE pushes and all pops are the
 *   mpmc's operations plus one CAS loop on the level (retrying only when
 *   another thread changed it), and the bucket's lock-free CAS for
 *   THROTTLE. A reserved push whose mpmc slot is still being copied out by
 *   a consumer waits for that consumer (a bounded window, as in mpmc.h).
 *   DROP_OLDEST producers serialise on a small internal lock (ap__lock) so
 *   that an eviction and the push it makes room for cannot be split by
 *   another producer; close takes that lock briefly too. No lock is held
 *   while a waker runs.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   push/try_pop: O(1) plus CAS retries under contention;
 *              close: O(waiters); memory = sizeof(ap_bp) +
 *              AP_BP_BYTES(capacity, elem_size).
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_BP_BYTES(capacity, elem_size), aligned to AP_BP_ALIGN; else
 *              AP_INVAL with nothing written; create: one allocation.
 *              Futures live in caller memory. Nothing else allocates.
 * ERRORS       AP_OK, AP_DROPPED, AP_FULL, AP_REJECTED, AP_CLOSED from push;
 *              AP_EMPTY, AP_AGAIN, AP_CLOSED from try_pop; AP_TIMEDOUT from
 *              the _wait forms; AP_NOT_READY (pending) and AP_CANCELED as
 *              a future's status;
 *              AP_INVAL for bad configuration (capacity or elem_size 0, an
 *              unknown strategy, high > capacity, low >= high, a bad
 *              throttle desc for THROTTLE; a buffer that is NULL, too
 *              small or misaligned), nothing changed; AP_NOMEM.
 * WAKE ORDER   push futures FIFO, one per freed slot; a woken push future
 *              that cancels passes the wake on. Pop futures as mpmc.h.
 *              Low-watermark futures: all at once, at the crossing.
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_TEST_YIELD
 * SEE ALSO     mpmc.h, token_bucket.h, waitlist.h, tests/test_backpressure.c,
 *              bench/bench_backpressure.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_BACKPRESSURE_H
#define ASYNCPAT_BACKPRESSURE_H

#include "core.h"
#include "future.h"
#include "waitlist.h"
#include "mpmc.h"
#include "token_bucket.h"

/** ap_bp_strategy - what a push does when the buffer is at capacity */
typedef enum ap_bp_strategy {
    AP_BP_STRATEGY_BLOCK = 0,    /* AP_FULL; push futures wait for a pop (the default) */
    AP_BP_STRATEGY_DROP_NEWEST,  /* AP_DROPPED: the new element is refused */
    AP_BP_STRATEGY_DROP_OLDEST,  /* AP_DROPPED: the oldest is evicted to *evicted_out */
    AP_BP_STRATEGY_THROTTLE      /* above the high watermark, paced by a token bucket */
} ap_bp_strategy;

/** ap_bp_level_state - the watermark state */
typedef enum ap_bp_level_state { AP_BP_LEVEL_STATE_LOW = 0, AP_BP_LEVEL_STATE_HIGH = 1 } ap_bp_level_state;

/** ap_bp_desc - configuration; a zero field means its default */
typedef struct ap_bp_desc {
    size_t capacity;         /* elements held at most (required, >= 1) */
    size_t elem_size;        /* bytes per element (required, >= 1) */
    ap_bp_strategy strategy; /* default AP_BP_STRATEGY_BLOCK */
    size_t high_watermark;   /* default capacity; must be <= capacity */
    size_t low_watermark;    /* default high_watermark / 2; must be < high
                              * (0 means the default, so an explicit low of
                              * 0 is available only as the default of high 1) */
    ap_tb_desc throttle;     /* THROTTLE only (n, period_ns, burst as in
                              * token_bucket.h); ignored otherwise */
    ap_clock clock;          /* the clock of the *_wait helpers and their
                              * deadlines (zero: ap_now_ns); pass ap_bp_push
                              * a now on the same clock (issue #11: a push
                              * on the caller's clock and a wait on another
                              * must not be mixed silently) */
} ap_bp_desc;

/** ap_bp_stats - counter snapshot (see GUARANTEES for the identities) */
typedef struct ap_bp_stats {
    uint64_t offered, accepted, dropped_newest, dropped_oldest, throttled;
    uint64_t full, closed, canceled, waits, popped;
} ap_bp_stats;

/** AP_BP_BYTES - buffer bytes for ap_bp_init (constant expression) */
#define AP_BP_BYTES(capacity, elem_size) AP_MPMC_BYTES(capacity, elem_size)
/** AP_BP_ALIGN - the alignment ap_bp_init needs of its buffer (constant
 *  expression) */
#define AP_BP_ALIGN AP_MPMC_ALIGN

/* level word */
#define AP__BP_HIGH ((size_t)1)
#define AP__BP_CLOSED ((size_t)2)
#define AP__BP_ONE ((size_t)4)

/* A backpressure buffer (caller memory; set up with ap_bp_init). */
typedef struct ap_bp {
    ap_mpmc q; /* the buffer: the elements and the pop futures' waitlist */
    /* written by every push and pop */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) level; /* count << 2 | CLOSED | HIGH */
    ap__lock prod_lock;                          /* DROP_OLDEST producers, close */
    /* producer-side counters of the refusing and slow paths (relaxed
     * statistics; offered and accepted are derived, ap_bp_stats_get) */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) dropped_newest, dropped_oldest, throttled,
        full, closed, canceled, waits;
    /* consumer-side counter, on its own line (narrow size_t only: see
     * GUARANTEES); q_start is the mpmc's first head ticket */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) popped;
    size_t q_start;
    /* read-mostly from here */
    AP_ALIGNAS(AP_CACHELINE) size_t capacity; /* 0 after fini */
    size_t high, low;
    ap_bp_strategy strategy;
    const ap_allocator *alloc; /* set by create */
    ap_bp_desc desc;           /* as resolved at init */
    ap_waitlist not_full;      /* BLOCK push futures; woken by give-backs */
    ap_waitlist below_low;     /* low-watermark futures; woken at the crossing */
    AP_ATOMIC_T(uint64_t) crossings; /* HIGH -> LOW transitions so far */
    ap_tb tb;                  /* THROTTLE's bucket */
} ap_bp;

/*
 * A push future (BLOCK). Status: AP_NOT_READY while pending, then AP_OK
 * (accepted), AP_CLOSED (the element stays with the caller), AP_CANCELED,
 * or AP_INVAL at once for a strategy other than BLOCK (those never wait).
 */
typedef struct ap_bp_push_fut {
    ap_future base; /* the future (every future type has .base) */
    ap_waitop op;
    ap_bp *bp;
    bool waited;  /* returned AP_PENDING once (counted in waits) */
    bool counted; /* its outcome is in the counters */
} ap_bp_push_fut;

/* A pop future. Status: AP_NOT_READY, then AP_OK, AP_CLOSED (closed and
 * drained) or AP_CANCELED. */
typedef struct ap_bp_pop_fut { ap_future base; ap_waitop op; } ap_bp_pop_fut;

/* A "below the low watermark" future. Status: AP_NOT_READY, then AP_OK (the
 * state was LOW when it completed), AP_CLOSED or AP_CANCELED. */
typedef struct ap_bp_low_fut {
    ap_future base; /* the future (every future type has .base) */
    ap_waitop op;
    uint64_t since; /* crossings when the future was initialised */
} ap_bp_low_fut;

/**
 * ap_bp_desc_resolved - the desc with defaults filled in
 * Returns a copy in which high 0 became capacity and low 0 became high / 2
 * (strategy 0 is already BLOCK). Nothing is validated.
 */
AP_API ap_bp_desc ap_bp_desc_resolved(const ap_bp_desc *desc);

/**
 * ap_bp_init - set up a buffer in caller memory
 * @bp:   caller memory (cache-line aligned: an ap_bp object)
 * @buf:   at least AP_BP_BYTES(capacity, elem_size) bytes aligned to
 *         AP_BP_ALIGN, owned by the caller until fini
 * @bytes: the size of @buf (the excess is not touched)
 * @desc:  the configuration
 *
 * Returns AP_OK, or AP_INVAL (desc NULL, capacity or elem_size 0 or
 * overflowing, an unknown strategy, high > capacity, low >= high, for
 * THROTTLE a throttle desc that ap_tb_init refuses, or @buf NULL,
 * misaligned or @bytes too small); on AP_INVAL *bp and @buf are untouched.
 * The level starts LOW.
 */
AP_API AP_NODISCARD ap_status ap_bp_init(ap_bp *bp, void *buf, size_t bytes,
                                         const ap_bp_desc *desc);
/** ap_bp_fini - end of life; frees nothing. A future still waiting (push,
 *  pop or low) trips AP_ASSERT in every build (one load per list); so does
 *  a second fini. A created buffer may be finished and then destroyed. */
AP_API void ap_bp_fini(ap_bp *bp);

#ifndef AP_NO_MALLOC
/**
 * ap_bp_create - allocate and initialise a buffer (one allocation)
 * @out:   receives it; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 * Returns AP_OK, AP_INVAL (as ap_bp_init; nothing allocated) or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_bp_create(ap_bp **out, const ap_bp_desc *desc,
                                           const ap_allocator *alloc);
/** ap_bp_destroy - fini (unless already finished) and free a buffer from
 *  ap_bp_create; NULL is a no-op */
AP_API void ap_bp_destroy(ap_bp *bp);
#endif

/**
 * ap_bp_push - offer one element; the strategy decides (see STATUS above)
 * @elem:        elem_size bytes, copied in on AP_OK / AP_DROPPED(DROP_OLDEST)
 * @now_ns:      the caller's monotonic time (used by THROTTLE only)
 * @evicted_out: DROP_OLDEST: elem_size bytes that receive the evicted
 *               element on AP_DROPPED (required for DROP_OLDEST; may be
 *               NULL otherwise); untouched on every other status
 * @retry_at:    THROTTLE: on AP_REJECTED the earliest instant a token is
 *               available; may be NULL; untouched otherwise
 *
 * Returns AP_OK, AP_DROPPED, AP_FULL, AP_REJECTED or AP_CLOSED.
 * Concurrency: any thread. Never waits, except for the bounded window of a
 * consumer still copying out the slot it reserved (see CONCURRENCY).
 */
AP_API AP_NODISCARD ap_status ap_bp_push(ap_bp *bp, const void *elem, uint64_t now_ns,
                                         void *evicted_out, uint64_t *retry_at);

/**
 * ap_bp_try_pop - take the oldest element
 * @out: receives elem_size bytes; untouched unless AP_OK
 * Returns AP_OK, AP_EMPTY, AP_AGAIN (an element is still being copied in:
 * retry) or AP_CLOSED once closed and drained. A pop that brings the count
 * down to the low watermark while HIGH switches the state to LOW and wakes
 * the low-watermark futures; every pop wakes one waiting push future.
 */
AP_API AP_NODISCARD ap_status ap_bp_try_pop(ap_bp *bp, void *out);

/**
 * ap_bp_push_fut_init / _poll / _cancel / _status: BLOCK's waiting push.
 * @elem must stay valid until the future completes or is cancelled. The
 * future is woken by the pop that frees a slot. Result as ap_bp_push_fut.
 */
AP_API void ap_bp_push_fut_init(ap_bp_push_fut *f, ap_bp *bp, const void *elem);
AP_API ap_poll ap_bp_push_poll(ap_bp_push_fut *f, ap_cx *cx);
AP_API void ap_bp_push_cancel(ap_bp_push_fut *f);
AP_API AP_NODISCARD ap_status ap_bp_push_status(const ap_bp_push_fut *f);
/** ap_bp_push_wait - block until accepted; AP_OK, AP_CLOSED, AP_TIMEDOUT or
 *  AP_INVAL (not BLOCK) */
AP_API AP_NODISCARD ap_status ap_bp_push_wait(ap_bp *bp, const void *elem,
                                              ap_deadline deadline_ns);

/** ap_bp_pop_fut_init / _poll / _cancel / _status: a waiting pop (as mpmc.h) */
AP_API void ap_bp_pop_fut_init(ap_bp_pop_fut *f, ap_bp *bp, void *out);
AP_API ap_poll ap_bp_pop_poll(ap_bp_pop_fut *f, ap_cx *cx);
AP_API void ap_bp_pop_cancel(ap_bp_pop_fut *f);
AP_API AP_NODISCARD ap_status ap_bp_pop_status(const ap_bp_pop_fut *f);
/** ap_bp_pop_wait - block until an element; AP_OK, AP_CLOSED or AP_TIMEDOUT */
AP_API AP_NODISCARD ap_status ap_bp_pop_wait(ap_bp *bp, void *out, ap_deadline deadline_ns);

/**
 * ap_bp_low_fut_init / _poll / _cancel / _status: completes with AP_OK as
 * soon as the state is LOW at a poll, or once the level has crossed from
 * HIGH to LOW since _init (edge-triggered: a flip back to HIGH before the
 * poll does not lose the event); woken by the pop that makes the crossing;
 * AP_CLOSED once closed.
 */
AP_API void ap_bp_low_fut_init(ap_bp_low_fut *f, ap_bp *bp);
AP_API ap_poll ap_bp_low_poll(ap_bp_low_fut *f, ap_cx *cx);
AP_API void ap_bp_low_cancel(ap_bp_low_fut *f);
AP_API AP_NODISCARD ap_status ap_bp_low_status(const ap_bp_low_fut *f);
/** ap_bp_low_wait - block until LOW; AP_OK, AP_CLOSED or AP_TIMEDOUT */
AP_API AP_NODISCARD ap_status ap_bp_low_wait(ap_bp *bp, ap_deadline deadline_ns);

/** ap_bp_close - refuse further pushes, wake every future; pops drain; idempotent */
AP_API void ap_bp_close(ap_bp *bp);
/** ap_bp_is_closed - whether ap_bp_close has been called */
AP_API bool ap_bp_is_closed(ap_bp *bp);
/** ap_bp_len - reserved slots: buffered elements plus pushes in flight (snapshot) */
AP_API size_t ap_bp_len(ap_bp *bp);
/** ap_bp_capacity - the capacity given at init */
AP_API size_t ap_bp_capacity(const ap_bp *bp);
/** ap_bp_level - the watermark state (snapshot) */
AP_API ap_bp_level_state ap_bp_level(ap_bp *bp);
/** ap_bp_stats_get - the counters (relaxed snapshot; exact at quiescence) */
AP_API void ap_bp_stats_get(ap_bp *bp, ap_bp_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Elements: the mpmc's edges (a push happens-before the pop, or the
 *   eviction, that returns its element).
 *   Level: (1) Counting: a reservation happens-before the mpmc push, which
 *   happens-before the pop that precedes the give-back, so in the level's
 *   modification order every give-back follows its reservation and count
 *   never underflows. A give-back CAS is a release and a reservation's
 *   load and CAS are acquire: a reservation that reads a give-back also
 *   sees that consumer's mpmc head CAS and stamp store, so a reserved push
 *   never finds the mpmc FULL. (2) Wakes (THE LADDER of waitlist.h; the
 *   waiter pays): a waiting push future registers on not_full (count++,
 *   HEAVY barrier) and then re-reads the level (AP__CHECK_MO); a
 *   consumer's give-back CAS (AP__PUB_MO) is followed by
 *   ap_waitlist_parked (LIGHT + a relaxed count load). Either the
 *   consumer sees the waiter or HEAVY makes the give-back visible to the
 *   re-check. In the fallback ladder (TSan, non-Linux,
 *   AP_NO_ASYM_BARRIER) the CAS, the increment and both loads are seq_cst
 *   and fall in one total order S. Low-watermark futures: the crossing
 *   give-back then bumps `crossings` with a seq_cst RMW before wake_all's
 *   seq_cst count load; the low future registers and re-reads the level
 *   and `crossings` (seq_cst): those two seq_cst pairs are ordered in S
 *   in either ladder (crossings are rare; no fast path pays). Pop futures
 *   wait on the mpmc's own not_empty list and its ladder; "closed and
 *   drained" is the level (CLOSED, count 0), re-checked with an
 *   AP__CHECK_MO load after the mpmc pop said EMPTY; the give-back that
 *   produces it checks ap_waitlist_parked on that list after its CAS, and
 *   close's fetch_or (seq_cst, rare) precedes its wake_alls' seq_cst
 *   loads. The mpmc itself is never closed, so a push that reserved before
 *   close always lands. The bucket is all relaxed (it publishes nothing),
 *   and THROTTLE consults it only while HIGH. Counters are relaxed
 *   statistics: exact once the threads that updated them are joined, a
 *   racy snapshot before.
 *   With nobody parked a push + pop pair costs the mpmc's pair (two claim
 *   CASes, two stamp stores) plus one acquire CAS and one release CAS on
 *   the level: no fence, no seq_cst, no counter. Pointer-sized elements
 *   are copied with a constant size (inlined, no memcpy call).
 */

#define AP__BP_CNT(p, by) ((void)AP_ATOMIC_FETCH_ADD((p), (uint64_t)(by), memory_order_relaxed))

AP_API ap_bp_desc ap_bp_desc_resolved(const ap_bp_desc *desc)
{
    ap_bp_desc d = *desc;
    if (d.high_watermark == 0)
        d.high_watermark = d.capacity;
    if (d.low_watermark == 0)
        d.low_watermark = d.high_watermark / 2;
    return d;
}

AP_API ap_status ap_bp_init(ap_bp *bp, void *buf, size_t bytes, const ap_bp_desc *desc)
{
    AP_ASSERT(bp != NULL);
    if (desc == NULL)
        return AP_INVAL;
    ap_bp_desc d = ap_bp_desc_resolved(desc);
    if (d.capacity == 0 || d.elem_size == 0 || (unsigned)d.strategy > AP_BP_STRATEGY_THROTTLE ||
        d.high_watermark > d.capacity || d.low_watermark >= d.high_watermark)
        return AP_INVAL;
    if (d.strategy == AP_BP_STRATEGY_THROTTLE) {
        ap_tb probe; /* validate before anything is written */
        if (ap_tb_init(&probe, &d.throttle) != AP_OK)
            return AP_INVAL;
    }
    /* ap_mpmc_init checks the buffer (NULL, misaligned, short) and leaves
     * q and buf untouched when it refuses; nothing is written before. */
    if (ap_mpmc_init(&bp->q, buf, bytes, d.capacity, d.elem_size) != AP_OK)
        return AP_INVAL;
    if (d.strategy == AP_BP_STRATEGY_THROTTLE) {
        ap_status st = ap_tb_init(&bp->tb, &d.throttle);
        AP_ASSERT(st == AP_OK);
        (void)st;
    } else {
        memset((void *)&bp->tb, 0, sizeof bp->tb);
    }
    AP_ATOMIC_INIT(&bp->level, (size_t)0);
    AP_ATOMIC_INIT(&bp->prod_lock.held, 0u);
    AP_ATOMIC_INIT(&bp->dropped_newest, 0u);
    AP_ATOMIC_INIT(&bp->dropped_oldest, 0u);
    AP_ATOMIC_INIT(&bp->throttled, 0u);
    AP_ATOMIC_INIT(&bp->full, 0u);
    AP_ATOMIC_INIT(&bp->closed, 0u);
    AP_ATOMIC_INIT(&bp->canceled, 0u);
    AP_ATOMIC_INIT(&bp->waits, 0u);
    AP_ATOMIC_INIT(&bp->popped, 0u);
    bp->q_start = AP_ATOMIC_LOAD(&bp->q.head, memory_order_relaxed);
    bp->capacity = d.capacity;
    bp->high = d.high_watermark;
    bp->low = d.low_watermark;
    bp->strategy = d.strategy;
    bp->alloc = NULL;
    bp->desc = d;
    ap_waitlist_init(&bp->not_full);
    ap_waitlist_init(&bp->below_low);
    AP_ATOMIC_INIT(&bp->crossings, 0u);
    return AP_OK;
}

AP_API void ap_bp_fini(ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    /* Every build: a future still queued would be woken into freed memory
     * (pop futures wait on the mpmc's list). */
    AP_ASSERT(!ap_waitlist_has_waiters(&bp->not_full));
    AP_ASSERT(!ap_waitlist_has_waiters(&bp->below_low));
    AP_ASSERT(!ap_waitlist_has_waiters(&bp->q.not_empty));
    ap_mpmc_fini(&bp->q);
    if (bp->strategy == AP_BP_STRATEGY_THROTTLE)
        ap_tb_fini(&bp->tb);
    bp->capacity = 0; /* a later call trips AP_ASSERT */
}

#ifndef AP_NO_MALLOC
AP_API size_t ap__bp_header_bytes(void)
{
    return ap__align_up(sizeof(ap_bp), AP_CACHELINE);
}

AP_API ap_status ap_bp_create(ap_bp **out, const ap_bp_desc *desc, const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t total;
    AP_ASSERT(out != NULL);
    if (a == NULL || desc == NULL || desc->capacity == 0 || desc->elem_size == 0 ||
        desc->elem_size > SIZE_MAX / 2 ||
        !ap__size_muladd(desc->capacity, AP_MPMC_STRIDE(desc->elem_size),
                         ap__bp_header_bytes(), &total))
        return AP_INVAL;
    /* Validate on a scratch object first, so AP_INVAL allocates nothing. */
    {
        ap_bp_desc d = ap_bp_desc_resolved(desc);
        if ((unsigned)d.strategy > AP_BP_STRATEGY_THROTTLE || d.high_watermark > d.capacity ||
            d.low_watermark >= d.high_watermark)
            return AP_INVAL;
        ap_tb probe;
        if (d.strategy == AP_BP_STRATEGY_THROTTLE && ap_tb_init(&probe, &d.throttle) != AP_OK)
            return AP_INVAL;
    }
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_bp *bp = (ap_bp *)(void *)mem;
    ap_status st = ap_bp_init(bp, mem + ap__bp_header_bytes(), total - ap__bp_header_bytes(),
                              desc);
    if (st != AP_OK) { /* e.g. a capacity the mpmc cannot index */
        a->free(mem, total, a->user);
        return st;
    }
    bp->alloc = a;
    *out = bp;
    return AP_OK;
}

AP_API void ap_bp_destroy(ap_bp *bp)
{
    if (bp == NULL)
        return;
    AP_ASSERT(bp->alloc != NULL); /* only buffers from ap_bp_create */
    const ap_allocator *a = bp->alloc;
    /* desc keeps the capacity after fini (which zeroes bp->capacity) */
    size_t total = ap__bp_header_bytes() + bp->desc.capacity * AP_MPMC_STRIDE(bp->desc.elem_size);
    if (bp->capacity != 0)
        ap_bp_fini(bp);
    a->free(bp, total, a->user);
}
#endif

/*
 * Reserve one slot: count + 1, setting HIGH when it reaches high.
 * Returns AP_OK (*was = the level before), AP_FULL or AP_CLOSED.
 */
AP_FORCE_INLINE ap_status ap__bp_reserve(ap_bp *bp, size_t *was)
{
    /* AP__CHECK_MO (acquire; seq_cst in the fallback): the re-check of a
     * registered push future (THE LADDER), and acquire: pairs with the
     * release give-back CAS it reads (ORDERING (1)). */
    size_t lv = AP_ATOMIC_LOAD(&bp->level, AP__CHECK_MO);
    for (;;) {
        if (AP_UNLIKELY(lv & AP__BP_CLOSED))
            return AP_CLOSED;
        size_t count = lv >> 2;
        if (count >= bp->capacity)
            return AP_FULL;
        size_t next = lv + AP__BP_ONE;
        if (count + 1 >= bp->high)
            next |= AP__BP_HIGH;
        /* AP__CHECK_MO (acquire; seq_cst in the fallback): pairs with the
         * release give-back it reads (ORDERING (1)); on failure lv is the
         * newer word, decided again (a re-check, so the same order). A
         * reservation publishes nothing: the mpmc push does. */
        if (AP_ATOMIC_CAS_WEAK(&bp->level, &lv, next, AP__CHECK_MO, AP__CHECK_MO)) {
            *was = lv;
            return AP_OK;
        }
    }
}

/*
 * Give one slot back (after a pop, an eviction or a refused reservation):
 * count - 1, clearing HIGH when it falls to low. Wakes nobody: returns the
 * level before and stores the level after in *after, for ap__bp_wake.
 */
AP_FORCE_INLINE size_t ap__bp_give_back_nowake(ap_bp *bp, size_t *after)
{
    size_t lv = AP_ATOMIC_LOAD(&bp->level, memory_order_relaxed), next;
    for (;;) {
        AP_ASSERT((lv >> 2) != 0);
        next = lv - AP__BP_ONE;
        if ((next & AP__BP_HIGH) && (next >> 2) <= bp->low)
            next &= ~AP__BP_HIGH;
        /* AP__PUB_MO (release; seq_cst in the fallback): pairs with the
         * acquire of the reservation that reads it (ORDERING (1)), and the
         * waking side's publishing write of THE LADDER, before the
         * ap_waitlist_parked checks of ap__bp_wake; relaxed on failure (we
         * only recompute from the newer word). */
        if (AP_ATOMIC_CAS_WEAK(&bp->level, &lv, next, AP__PUB_MO, memory_order_relaxed))
            break;
    }
    *after = next;
    return lv;
}

/* The wakes a give-back from @before to @after owes (no lock held). */
AP_FORCE_INLINE void ap__bp_wake(ap_bp *bp, size_t before, size_t after)
{
    AP_TEST_YIELD(); /* published, not yet woken */
    if (AP_UNLIKELY((before & AP__BP_HIGH) && !(after & AP__BP_HIGH))) {
        /* crossed low. seq_cst: counted before wake_all's SC look at the
         * waiters (THE LADDER), so a low future that re-checks after
         * registering sees this crossing even if HIGH is back already. */
        (void)AP_ATOMIC_FETCH_ADD(&bp->crossings, 1u, memory_order_seq_cst);
        (void)ap_waitlist_wake_all(&bp->below_low);
    }
    /* the publishing give-back CAS, then the ladder's checks */
    if (AP_UNLIKELY(ap_waitlist_parked(&bp->not_full)))
        (void)ap_waitlist_wake(&bp->not_full, 1); /* a slot is free */
    if (AP_UNLIKELY((after & AP__BP_CLOSED) && (after >> 2) == 0 &&
                    ap_waitlist_parked(&bp->q.not_empty)))
        (void)ap_waitlist_wake_all(&bp->q.not_empty); /* closed and drained */
}

AP_FORCE_INLINE void ap__bp_give_back(ap_bp *bp)
{
    size_t after, before = ap__bp_give_back_nowake(bp, &after);
    ap__bp_wake(bp, before, after);
}

/* The mpmc's push and pop; a pointer-sized element is copied with a
 * constant size, so the copy inlines (a runtime size calls memcpy). */
AP_FORCE_INLINE ap_status ap__bp_mpmc_push(ap_bp *bp, const void *elem)
{
    if (AP_LIKELY(bp->q.elem_size == sizeof(void *)))
        return ap__mpmc_push(&bp->q, elem, sizeof(void *));
    return ap_mpmc_try_push(&bp->q, elem);
}

AP_FORCE_INLINE ap_status ap__bp_mpmc_pop(ap_bp *bp, void *out)
{
    if (AP_LIKELY(bp->q.elem_size == sizeof(void *)))
        return ap__mpmc_pop(&bp->q, out, sizeof(void *));
    return ap_mpmc_try_pop(&bp->q, out);
}

/*
 * Copy a reserved element into the mpmc. The mpmc is never closed (close
 * lives in the level), and a reserved push never sees FULL (ORDERING (1));
 * AP_AGAIN means the slot's previous consumer is still copying out, a
 * window that thread closes on its own: wait it out.
 */
AP_FORCE_INLINE void ap__bp_enqueue(ap_bp *bp, const void *elem)
{
    unsigned spins = 0;
    AP_TEST_YIELD(); /* reserved, not yet in the mpmc */
    for (;;) {
        ap_status st = ap__bp_mpmc_push(bp, elem);
        if (AP_LIKELY(st == AP_OK))
            return;
        AP_ASSERT(st == AP_AGAIN);
        ap__backoff(&spins);
    }
}

/* reserve + enqueue, no counting: BLOCK's try step (also the push future's). */
AP_FORCE_INLINE ap_status ap__bp_push_block(ap_bp *bp, const void *elem)
{
    size_t was;
    ap_status st = ap__bp_reserve(bp, &was);
    if (st != AP_OK)
        return st;
    ap__bp_enqueue(bp, elem);
    return AP_OK;
}

/*
 * DROP_OLDEST's reservation, run under prod_lock (so CLOSED, which close
 * sets under the same lock, cannot appear after an eviction, and no other
 * producer can take the slot an eviction frees). Evicts at most once.
 * Returns AP_OK (reserved; *evicted says whether *evicted_out was filled,
 * *before and *after of the eviction's give-back for ap__bp_wake) or AP_CLOSED.
 */
AP_API ap_status ap__bp_reserve_evicting(ap_bp *bp, void *evicted_out, bool *evicted,
                                         size_t *before, size_t *after)
{
    unsigned spins = 0;
    size_t was;
    *evicted = false;
    for (;;) {
        ap_status st = ap__bp_reserve(bp, &was);
        if (st == AP_OK)
            return AP_OK;
        if (st == AP_CLOSED) {
            AP_ASSERT(!*evicted);
            return AP_CLOSED;
        }
        /* AP_FULL: evict the oldest. Once evicted, only a consumer between
         * its pop and its give-back can hold the count at capacity; an
         * AP_EMPTY / AP_AGAIN pop means consumers (or a producer's copy-in
         * after its reservation) are mid-operation: wait them out. */
        if (!*evicted && ap_mpmc_try_pop(&bp->q, evicted_out) == AP_OK) {
            AP_TEST_YIELD(); /* evicted, slot not yet given back */
            *before = ap__bp_give_back_nowake(bp, after);
            *evicted = true;
            continue;
        }
        ap__backoff(&spins);
    }
}

AP_API ap_status ap_bp_push(ap_bp *bp, const void *elem, uint64_t now_ns, void *evicted_out,
                            uint64_t *retry_at)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0 && elem != NULL);
    ap_status st;
    switch (bp->strategy) {
    case AP_BP_STRATEGY_BLOCK:
        st = ap__bp_push_block(bp, elem);
        break;
    case AP_BP_STRATEGY_DROP_NEWEST:
        st = ap__bp_push_block(bp, elem);
        if (st == AP_FULL) {
            AP__BP_CNT(&bp->dropped_newest, 1);
            return AP_DROPPED;
        }
        break;
    case AP_BP_STRATEGY_DROP_OLDEST: {
        AP_ASSERT(evicted_out != NULL);
        bool evicted;
        size_t before = 0, after = 0;
        ap__lock_acquire(&bp->prod_lock);
        st = ap__bp_reserve_evicting(bp, evicted_out, &evicted, &before, &after);
        ap__lock_release(&bp->prod_lock);
        if (evicted)
            ap__bp_wake(bp, before, after); /* outside the lock */
        if (st == AP_OK)
            ap__bp_enqueue(bp, elem);
        if (evicted) {
            AP__BP_CNT(&bp->dropped_oldest, 1);
            return AP_DROPPED;
        }
        break;
    }
    default: { /* AP_BP_STRATEGY_THROTTLE */
        size_t was;
        st = ap__bp_reserve(bp, &was);
        if (st != AP_OK)
            break;
        if (was & AP__BP_HIGH) {
            /* writes *retry_at only when it refuses (n = 1 <= burst) */
            if (ap_tb_try_acquire(&bp->tb, 1, now_ns, retry_at) != AP_OK) {
                ap__bp_give_back(bp); /* the reservation; not an element */
                AP__BP_CNT(&bp->throttled, 1);
                return AP_REJECTED;
            }
        }
        ap__bp_enqueue(bp, elem);
        break;
    }
    }
    /* AP_OK counts nothing here: accepted is derived (GUARANTEES) */
    if (AP_UNLIKELY(st != AP_OK))
        AP__BP_CNT(st == AP_FULL ? &bp->full : &bp->closed, 1);
    return st;
}

AP_API ap_status ap_bp_try_pop(ap_bp *bp, void *out)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    ap_status st = ap__bp_mpmc_pop(bp, out);
    if (st == AP_OK) {
        AP_TEST_YIELD(); /* popped, slot not yet given back */
        ap__bp_give_back(bp);
#if SIZE_MAX < UINT64_MAX
        AP__BP_CNT(&bp->popped, 1); /* else derived from the mpmc head */
#endif
    } else if (st == AP_EMPTY) {
        /* AP__CHECK_MO (acquire; seq_cst in the fallback): the re-check of
         * a pop future after registering on q.not_empty (THE LADDER with
         * the give-back's parked check, or close's seq_cst fetch_or);
         * closed with no slot reserved means drained for good (no
         * reservation can start after CLOSED). */
        size_t lv = AP_ATOMIC_LOAD(&bp->level, AP__CHECK_MO);
        if ((lv & AP__BP_CLOSED) && (lv >> 2) == 0)
            st = AP_CLOSED;
    }
    return st;
}

/* ---- futures ---- */

AP_API ap_status ap__bp_push_try_v(void *bp, void *elem)
{
    return ap__bp_push_block((ap_bp *)bp, elem);
}

/* Count a push future's outcome once. */
AP_API void ap__bp_push_count(ap_bp_push_fut *f)
{
    if (f->counted || f->op.status == AP_NOT_READY)
        return;
    f->counted = true;
    ap_bp *bp = f->bp;
    switch (f->op.status) {
    case AP_OK: break; /* accepted is derived (GUARANTEES) */
    case AP_CLOSED: AP__BP_CNT(&bp->closed, 1); break;
    default: AP__BP_CNT(&bp->canceled, 1); break;
    }
}

AP__FUTURE_VTABLE(ap__bp_push, ap_bp_push_fut, ap_bp_push_poll, ap_bp_push_cancel)

AP_API void ap_bp_push_fut_init(ap_bp_push_fut *f, ap_bp *bp, const void *elem)
{
    AP_ASSERT(f != NULL && bp != NULL && bp->capacity != 0 && elem != NULL);
    ap_waitop_init(&f->op, &bp->not_full, ap__bp_push_try_v, bp, (void *)(uintptr_t)elem);
    f->base.poll = ap__bp_push_poll_v;
    f->base.cancel = ap__bp_push_cancel_v;
    f->bp = bp;
    f->waited = false;
    f->counted = false;
    if (bp->strategy != AP_BP_STRATEGY_BLOCK) {
        f->op.status = AP_INVAL; /* ready at the first poll; not an offer */
        f->counted = true;
    }
}

AP_API ap_poll ap_bp_push_poll(ap_bp_push_fut *f, ap_cx *cx)
{
    ap_poll r = ap_waitop_poll(&f->op, cx);
    if (r == AP_PENDING) {
        if (!f->waited) {
            f->waited = true;
            AP__BP_CNT(&f->bp->waits, 1);
        }
    } else {
        ap__bp_push_count(f);
    }
    return r;
}

AP_API void ap_bp_push_cancel(ap_bp_push_fut *f)
{
    ap_waitop_cancel(&f->op);
    ap__bp_push_count(f);
}

AP_API ap_status ap_bp_push_status(const ap_bp_push_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_bp_push_wait(ap_bp *bp, const void *elem, ap_deadline deadline_ns)
{
    ap_bp_push_fut f;
    ap_bp_push_fut_init(&f, bp, elem);
    if (ap_block_on_until_clock(&f.base, deadline_ns, &bp->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.op.status;
}

AP_API ap_status ap__bp_try_pop_v(void *bp, void *out)
{
    return ap_bp_try_pop((ap_bp *)bp, out);
}

/* The pop future: ap_waitop on the mpmc's not_empty list (its pushes wake
 * it after publishing); its wait reads the bp's clock. */
#define AP__BP_CLOCK(bp) ((const ap_clock *)&(bp)->desc.clock)
AP__WAITOP_FUTURE_CLOCK(ap_bp_pop, ap_bp_pop_fut, ap_bp, q.not_empty, ap__bp_try_pop_v, void *,
                        AP__BP_CLOCK)

/* The low future's condition: AP_CLOSED, AP_OK (LOW now, or a HIGH -> LOW
 * crossing since the future began: edge-triggered, so a flip back to HIGH
 * before the poll does not lose the event) or AP_FULL (wait). */
AP_API ap_status ap__bp_low_check_v(void *obj, void *arg)
{
    ap_bp *bp = (ap_bp *)obj;
    /* seq_cst: the re-check of THE LADDER after registering on below_low. */
    size_t lv = AP_ATOMIC_LOAD(&bp->level, memory_order_seq_cst);
    if (lv & AP__BP_CLOSED)
        return AP_CLOSED;
    if (!(lv & AP__BP_HIGH))
        return AP_OK;
    /* seq_cst: pairs with the crossing count in ap__bp_wake (THE LADDER). */
    return AP_ATOMIC_LOAD(&bp->crossings, memory_order_seq_cst) != *(const uint64_t *)arg
               ? AP_OK : AP_FULL;
}

AP__FUTURE_VTABLE(ap__bp_low, ap_bp_low_fut, ap_bp_low_poll, ap_bp_low_cancel)

AP_API void ap_bp_low_fut_init(ap_bp_low_fut *f, ap_bp *bp)
{
    AP_ASSERT(f != NULL && bp != NULL && bp->capacity != 0);
    f->since = AP_ATOMIC_LOAD(&bp->crossings, memory_order_seq_cst);
    ap_waitop_init(&f->op, &bp->below_low, ap__bp_low_check_v, bp, &f->since);
    f->base.poll = ap__bp_low_poll_v;
    f->base.cancel = ap__bp_low_cancel_v;
}

AP_API ap_poll ap_bp_low_poll(ap_bp_low_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_bp_low_cancel(ap_bp_low_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP_API ap_status ap_bp_low_status(const ap_bp_low_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_bp_low_wait(ap_bp *bp, ap_deadline deadline_ns)
{
    ap_bp_low_fut f;
    ap_bp_low_fut_init(&f, bp);
    if (ap_block_on_until_clock(&f.base, deadline_ns, &bp->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.op.status;
}

/* ---- the rest ---- */

AP_API void ap_bp_close(ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    /* Under prod_lock, so a DROP_OLDEST push never sees CLOSED after it
     * evicted (ap__bp_push_drop_oldest). */
    ap__lock_acquire(&bp->prod_lock);
    /* seq_cst: THE LADDER's write, before the wake_all scans below. */
    (void)AP_ATOMIC_FETCH_OR(&bp->level, AP__BP_CLOSED, memory_order_seq_cst);
    ap__lock_release(&bp->prod_lock);
    /* The mpmc itself is never closed: reservations made before CLOSED
     * must still land (a DROP_OLDEST push that evicted must accept). Pops
     * report AP_CLOSED once the level says closed with count 0. */
    (void)ap_waitlist_wake_all(&bp->q.not_empty);
    (void)ap_waitlist_wake_all(&bp->not_full);
    (void)ap_waitlist_wake_all(&bp->below_low);
}

AP_API bool ap_bp_is_closed(ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    /* acquire: what the closing thread did before close is visible. */
    return (AP_ATOMIC_LOAD(&bp->level, memory_order_acquire) & AP__BP_CLOSED) != 0;
}

AP_API size_t ap_bp_len(ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    return AP_ATOMIC_LOAD(&bp->level, memory_order_relaxed) >> 2;
}

AP_API size_t ap_bp_capacity(const ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    return bp->capacity;
}

AP_API ap_bp_level_state ap_bp_level(ap_bp *bp)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0);
    return (AP_ATOMIC_LOAD(&bp->level, memory_order_relaxed) & AP__BP_HIGH) ? AP_BP_LEVEL_STATE_HIGH
                                                                             : AP_BP_LEVEL_STATE_LOW;
}

AP_API void ap_bp_stats_get(ap_bp *bp, ap_bp_stats *out)
{
    AP_ASSERT(bp != NULL && bp->capacity != 0 && out != NULL);
    ap_bp_stats s;
#define AP__BP_GET(f) s.f = AP_ATOMIC_LOAD(&bp->f, memory_order_relaxed)
    AP__BP_GET(dropped_newest);
    AP__BP_GET(dropped_oldest);
    AP__BP_GET(throttled);
    AP__BP_GET(full);
    AP__BP_GET(closed);
    AP__BP_GET(canceled);
    AP__BP_GET(waits);
#if SIZE_MAX < UINT64_MAX
    AP__BP_GET(popped);
#else
    /* relaxed: a snapshot, like the counters. Every mpmc pop is an
     * ap_bp_try_pop or an eviction (the mpmc is ours alone). */
    s.popped = (uint64_t)ap__mpmc_distance(&bp->q, bp->q_start,
                                           AP_ATOMIC_LOAD(&bp->q.head, memory_order_relaxed)) -
               s.dropped_oldest;
#endif
#undef AP__BP_GET
    /* Derived (GUARANTEES): each element reserved and not refused is
     * popped, evicted or still reserved; each offer has one outcome. */
    s.accepted = s.popped + s.dropped_oldest +
                 (AP_ATOMIC_LOAD(&bp->level, memory_order_relaxed) >> 2);
    s.offered = s.accepted + s.dropped_newest + s.throttled + s.full + s.closed + s.canceled;
    *out = s;
}

#endif /* ASYNCPAT_BACKPRESSURE_H */
