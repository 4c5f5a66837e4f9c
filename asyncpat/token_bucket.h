/*
 * asyncpat/token_bucket.h -- rate limiter: an exact integer token bucket
 *                            (GCRA on the emission grid), single and keyed
 *
 * PATTERN
 *   A bucket admits `n` tokens per `period_ns` and holds at most `burst`.
 *   It is the Generic Cell Rate Algorithm (GCRA, ITU-T I.371; the algorithm
 *   of the Rust crate governor) with its theoretical arrival time (TAT)
 *   counted in emission intervals T = period/n instead of nanoseconds:
 *
 *     V(t)  = floor(t * n / period)   emission instants passed by time t
 *     state = C                       the TAT in units of T (one uint64_t)
 *     acquire m at t:  base = max(C, V(t));  admit iff base + m <= V(t) + burst;
 *                      then C = base + m      (one CAS)
 *
 *   Counting in T makes the TAT an integer for ANY rational rate (e.g.
 *   3/s, where T = 333333333.33 ns), so nothing is rounded and nothing
 *   drifts: no floating point, no refill thread, no whole-second steps.
 *   Equivalently: token k (k >= 1) is minted at the instant
 *   ceil(k * period / n) ns of the caller's clock, and a full bucket stops
 *   collecting. The one difference from GCRA in nanoseconds: a request that
 *   finds the bucket full is stamped with the last emission instant at or
 *   before t (floor), not with t itself, so after an idle spell the next
 *   token comes back at the next instant of the grid, up to T early.
 *
 * USAGE (serve() and reply_429_until() are the caller's)
 *   ap_tb tb;   // 100 requests per second, bursts of up to 20
 *   if (ap_tb_init(&tb, &(ap_tb_desc){.n = 100, .period_ns = AP_NS_PER_SEC,
 *                                     .burst = 20}) != AP_OK) abort();
 *   uint64_t retry_at = 0;
 *   if (ap_tb_try_acquire(&tb, 1, ap_now_ns(), &retry_at) == AP_OK) serve();
 *   else reply_429_until(retry_at);
 *   // or wait (parks this thread, never sleeps in a loop):
 *   if (ap_tb_acquire_wait(&tb, 1, ap_now_ns() + 50 * AP_NS_PER_MS) == AP_OK) serve();
 *
 *   // one bucket per client, at most 1024 clients tracked at once
 *   static AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned char table[AP_TB_KEYED_BYTES(1024)];
 *   static ap_tb_keyed per_client;
 *   if (ap_tb_keyed_init(&per_client, table, sizeof table, 1024,
 *                        &(ap_tb_desc){.n = 10, .burst = 5}) != AP_OK) abort();
 *   uint64_t client_id = 42;
 *   if (ap_tb_keyed_try_acquire(&per_client, client_id, 1, ap_now_ns(), &retry_at) == AP_OK)
 *       serve();
 *
 * GUARANTEES (invariants the tests check)
 *   - exact bound: tokens admitted at times <= t (acquires, and
 *     reservations whose ready_at <= t, not counting cancelled ones) are at
 *     most burst + floor(n * t / period), at every t, also t = 2^64 - 1;
 *     in any window (s, t] at most burst + V(t) - V(s) <= burst +
 *     ceil(n * (t - s) / period), whatever was cancelled meanwhile (proof
 *     above ap__tb_give_back)
 *   - liveness: a greedy caller gets exactly that many (>= rate*t - 1 past
 *     the burst); a refused request gets the exact earliest instant it
 *     would be admitted (retry_at); at 10/s a token spent at t = 0 is back
 *     at exactly 100 ms, not at 99.999 ms
 *   - time going backwards mints nothing: V is monotone and C is only
 *     raised by admissions, so a `now` earlier than a previous one sees
 *     the same or fewer tokens
 *   - a cancelled reservation gives back all its tokens when no later
 *     admission or reservation has been stacked on it (the bucket's state
 *     still ends where it ended; so cancels in reverse order of reserving
 *     give everything back), and none otherwise: tokens that a later
 *     request was already queued behind are forfeited, never handed out
 *     twice (see ap_tb_cancel_reservation; the rule of Go's
 *     x/time/rate Reservation.Cancel, without its partial refund, which
 *     could break the window bound)
 *   - a ready instant is never saturated: a reservation or wait whose
 *     tokens would be ready only past 2^64 - 1 ns is refused (AP_REJECTED)
 *     and takes nothing
 *   - n > burst is AP_INVAL (it could never succeed); n = 0 is AP_OK and
 *     changes nothing
 *   - keyed: at most `capacity` keys are tracked; a key whose bucket is
 *     full again (C <= V(now), indistinguishable from a fresh bucket) is
 *     dropped and its slot reused without the caller pruning; when every
 *     slot holds an active key a new key gets AP_FULL and nothing changes
 *     (an active key is never evicted, a new key is never silently
 *     admitted)
 *
 * CONCURRENCY          try_acquire  reserve  cancel_res  available  fini
 *   ap_tb  (single)        yes        yes       yes         yes      no
 *   ap_tb_keyed            yes (all keyed calls, any thread)          no
 *   Progress: ap_tb is lock-free: every call is one relaxed load and a CAS
 *   loop that retries only when another thread's CAS succeeded.
 *   ap_tb_keyed serialises on one small spinlock (ap__lock, core.h) held
 *   for O(1) expected work (a probe plus the same arithmetic); a hot key
 *   that needs lock-free speed belongs in its own ap_tb.
 *   An acquire future is polled by one thread at a time (future.h rule 4).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * ARITHMETIC (exactness and overflow)
 *   n and period are divided by their gcd at init. V(t) = floor(t*n/period)
 *   and the inverse ceil(k*period/n) are computed exactly with a 64x64->128
 *   multiply and a 128/64 division: unsigned __int128 where the compiler has
 *   it (behind a feature test), else a portable C11 long division that the
 *   tests compare with the former. With n' = 1 (T an integer number of ns,
 *   e.g. 1000/s, 10/s, 1e9/s, 86400 per day) V(t) is one 64-bit division,
 *   and usually none (see ap__tb_base). Rates are limited to one
 *   token per nanosecond (n <= period, i.e. 1e9/s): then V(t) <= t never
 *   overflows; above that, count in larger units (KiB, not bytes).
 *   Every sum is checked: a reservation that would push C past 2^64 - 2 is
 *   refused, and so is one whose ready instant lies beyond the clock's
 *   range (past 2^64 - 1 ns) or at 2^64 - 1 itself while now is earlier
 *   (AP_DEADLINE_NONE means "never"); only try_acquire's retry_at
 *   saturates to AP_DEADLINE_NONE, meaning "not within the clock's range".
 *   Nothing wraps, so UBSan stays clean.
 *
 * COMPLEXITY   ap_tb: O(1) per call (a CAS retry only when another thread
 *              won); 128 bytes (LP64): the first cache line holds all the
 *              fast path touches (C, the reduced rate, burst), the
 *              second the resolved desc (with its clock).
 *              ap_tb_keyed: O(1) expected per call under the lock (linear
 *              probing; stale entries are removed by backward shift as the
 *              probe meets them), O(capacity) worst case; 16 bytes per slot.
 * MEMORY       ap_tb lives in caller memory. ap_tb_keyed_init takes a caller
 *              buffer and its size in bytes: at least
 *              AP_TB_KEYED_BYTES(capacity), aligned to AP_TB_KEYED_ALIGN
 *              (else AP_INVAL); ap_tb_keyed_create allocates once. Nothing
 *              else allocates.
 * ERRORS       AP_EMPTY (try_acquire: not enough tokens now; see
 *              retry_at), AP_REJECTED (never within the clock's range: a
 *              try_acquire, reservation or wait that could not be honoured
 *              before 2^64 - 1 ns), AP_FULL (keyed table
 *              full of active keys), AP_TIMEDOUT (a wait that cannot be
 *              served by its deadline; nothing was taken), AP_NOT_READY (an
 *              acquire future still pending), AP_CANCELED,
 *              AP_NOMEM; AP_INVAL for n = 0, burst = 0, n > period (more
 *              than one token per ns), capacity 0, a keyed buffer that is
 *              NULL, misaligned or too small, a request of more than burst
 *              tokens.
 *              AP_INVAL changes nothing; out-params are untouched on failure
 *              unless a function says otherwise.
 * WAKE ORDER   the acquire future waits for time only: it reserves its
 *              tokens at its first poll (so waiters are served in the order
 *              of their first poll) and lowers cx->deadline to the ready
 *              instant; it registers no waker, so cancel is O(1).
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_SPIN_LIMIT;
 *              AP_TB_NO_INT128 forces the portable 128-bit arithmetic.
 * SEE ALSO     examples/rate_limit.c, bench/bench_token_bucket.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_TOKEN_BUCKET_H
#define ASYNCPAT_TOKEN_BUCKET_H

#include "core.h"
#include "time.h"
#include "future.h"

/** ap_tb_desc - configuration; a zero field means its default */
typedef struct ap_tb_desc {
    uint64_t n;         /* tokens per period (required: 0 is AP_INVAL) */
    uint64_t period_ns; /* the period (default: 1 s); n <= period_ns */
    uint64_t burst;     /* bucket capacity, tokens (required: 0 is AP_INVAL) */
    ap_clock clock;     /* the clock of ap_tb_acquire_wait and its deadline,
                           i.e. of the now_ns the caller passes (default,
                           zero: ap_now_ns); ap_tb_keyed has no waits and
                           ignores it */
} ap_tb_desc;

/** ap_tb - one bucket; set up with ap_tb_init (a zero ap_tb is not valid) */
typedef struct ap_tb {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) tat; /* C: the TAT, in emission intervals */
    uint64_t n;      /* tokens per period, divided by gcd(n, period) */
    uint64_t p;      /* period in ns, divided by the same gcd */
    uint64_t burst;
    ap_tb_desc desc; /* as resolved at init (second cache line: read only
                        by ap_tb_acquire_wait and callers) */
    /* counters of the acquire futures (ap_tb_stats_get), on their own line
     * so that try_acquire's line is not touched by them */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) st_offered;
    AP_ATOMIC_T(uint64_t) st_admitted;
    AP_ATOMIC_T(uint64_t) st_rejected;
    AP_ATOMIC_T(uint64_t) st_canceled;
    AP_ATOMIC_T(uint64_t) st_waits;
    AP_ATOMIC_T(uint64_t) st_wait_ns;
} ap_tb;

AP_STATIC_ASSERT(offsetof(ap_tb, st_offered) - offsetof(ap_tb, tat) >= AP_CACHELINE,
                 "ap_tb: the counters are off the TAT's cache line");

/**
 * ap_tb_stats - counters of the acquire futures (ap_tb_acquire_poll and
 * ap_tb_acquire_wait; a relaxed snapshot, exact at quiescence:
 * offered == admitted + rejected + canceled once no future is pending).
 * ap_tb_try_acquire and ap_tb_reserve, the lock-free fast paths, count
 * nothing: a caller of those has the answer in its hand.
 */
typedef struct ap_tb_stats {
    uint64_t offered;  /* futures polled at least once */
    uint64_t admitted; /* completed AP_OK (tokens taken) */
    uint64_t rejected; /* completed AP_REJECTED, AP_TIMEDOUT or AP_INVAL (nothing taken) */
    uint64_t canceled; /* cancelled after their first poll */
    uint64_t waits;    /* reservations that had to wait for their tokens */
    uint64_t wait_ns;  /* sum of those waits (ready_at - now at the reservation),
                        * on the bucket's clock */
} ap_tb_stats;

/** ap_tb_reservation - what ap_tb_reserve committed (caller memory) */
typedef struct ap_tb_reservation {
    uint64_t tokens;   /* reserved tokens; 0 once cancelled */
    uint64_t ready_at; /* the caller may proceed at this instant (ns) */
    uint64_t end;      /* private: the bucket state C this reservation
                        * committed (ap_tb_cancel_reservation compares it) */
} ap_tb_reservation;

/** ap_tb_acquire_fut - a future that takes n tokens when they are due */
typedef struct ap_tb_acquire_fut {
    ap_future base; /* first member: &f.base works */
    ap_tb *tb;
    uint64_t n;
    uint64_t deadline; /* latest acceptable ready instant */
    ap_tb_reservation res;
    int state;         /* 0 not started, 1 reserved, 2 done */
    ap_status status;  /* AP_NOT_READY until done */
} ap_tb_acquire_fut;

/* One keyed slot: the key and its bucket state; tat == UINT64_MAX: empty. */
typedef struct ap_tb_keyed_slot {
    uint64_t key;
    uint64_t tat;
} ap_tb_keyed_slot;

/** AP_TB_KEYED_BYTES - least buffer bytes for ap_tb_keyed_init of @capacity
 *  keys (constant expression; the caller keeps capacity below
 *  SIZE_MAX / 16 so it does not wrap, which init checks itself) */
#define AP_TB_KEYED_BYTES(capacity) ((size_t)(capacity) * sizeof(ap_tb_keyed_slot))
/** AP_TB_KEYED_ALIGN - the alignment ap_tb_keyed_init needs of its buffer
 *  (constant expression; e.g. static AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned
 *  char buf[AP_TB_KEYED_BYTES(64)]) */
#define AP_TB_KEYED_ALIGN AP_ALIGNOF(ap_tb_keyed_slot)

/** ap_tb_keyed - one bucket per 64-bit key, in a bounded table */
typedef struct ap_tb_keyed {
    ap__lock lock;
    ap_tb cfg;              /* the shared configuration (its tat is unused) */
    ap_tb_keyed_slot *slots;
    size_t capacity;
    size_t used;            /* slots holding a key (under lock) */
    uint64_t max_now;       /* latest now_ns seen (under lock) */
    const ap_allocator *alloc; /* set by create */
    /* counters (ap_tb_keyed_stats_get): plain words written under the
     * lock that every call takes anyway, beside used and max_now (one
     * line the lock holder already writes): no atomic, no extra line */
    uint64_t st_admitted, st_rejected, st_full, st_inserted, st_evicted, st_probes;
} ap_tb_keyed;

/**
 * ap_tb_keyed_stats - what a keyed limiter did (ap_tb_keyed_stats_get). The
 * limiter serialises every call on its lock, so the counters are plain
 * words updated under that lock (a few adds per call, no atomic RMW) and
 * the getter, which takes the lock too, returns an exact and consistent
 * snapshot: inserted - evicted == keys at every instant. Calls answered
 * before the lock (n == 0: AP_OK; n > burst: AP_INVAL) count nothing.
 */
typedef struct ap_tb_keyed_stats {
    uint64_t admitted; /* calls that took their tokens (AP_OK, n >= 1) */
    uint64_t rejected; /* calls the key's bucket refused (AP_EMPTY or AP_REJECTED) */
    uint64_t full;     /* calls refused for want of a slot (AP_FULL: every slot
                        * held an active key) */
    uint64_t keys;     /* keys tracked now (as ap_tb_keyed_len) */
    uint64_t inserted; /* keys added to the table (a new key's first call) */
    uint64_t evicted;  /* keys dropped because their bucket was full again */
    uint64_t probes;   /* slots of other keys stepped over while looking a
                        * key up (collisions; 0 when every key sits at its
                        * home slot) */
} ap_tb_keyed_stats;

/**
 * ap_tb_desc_resolved - the desc with defaults filled in
 * Returns a copy in which period_ns 0 became AP_NS_PER_SEC; n and burst
 * have no default and stay as given.
 */
AP_API ap_tb_desc ap_tb_desc_resolved(const ap_tb_desc *desc);

/**
 * ap_tb_init - set up a full bucket
 * @tb:   caller memory
 * @desc: n tokens per period_ns, at most burst held
 *
 * Returns AP_OK, or AP_INVAL (n 0, burst 0, n > period_ns); on AP_INVAL
 * *tb is untouched. A new bucket holds `burst` tokens at every time >= 0.
 */
AP_API AP_NODISCARD ap_status ap_tb_init(ap_tb *tb, const ap_tb_desc *desc);
/** ap_tb_fini - end of life; frees nothing */
AP_API void ap_tb_fini(ap_tb *tb);
/** ap_tb_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_tb_stats_get(ap_tb *tb, ap_tb_stats *out);

/**
 * ap_tb_try_acquire - take n tokens now, all or nothing
 * @n:        tokens (0..burst)
 * @now_ns:   the caller's monotonic time
 * @retry_at: on AP_EMPTY, the earliest instant (> now_ns) at which the
 *            same request would succeed if nobody else takes tokens; on
 *            AP_REJECTED, AP_DEADLINE_NONE; may be NULL
 *
 * Returns AP_OK, AP_EMPTY (not enough tokens now: retry at *retry_at),
 * AP_REJECTED (the tokens would be ready only past 2^64 - 1 ns: never
 * within the clock's range), or AP_INVAL (n > burst: it could never
 * succeed). n = 0 returns AP_OK and changes nothing.
 * Concurrency: any thread; lock-free. On failure *tb is unchanged.
 */
AP_API AP_NODISCARD ap_status ap_tb_try_acquire(ap_tb *tb, uint64_t n, uint64_t now_ns,
                                                uint64_t *retry_at);

/**
 * ap_tb_available - tokens a try_acquire at now_ns would find (snapshot)
 */
AP_API uint64_t ap_tb_available(ap_tb *tb, uint64_t now_ns);

/**
 * ap_tb_reserve - commit n tokens now and learn when they may be used
 * @res: receives tokens = n and ready_at: now_ns if they are available
 *       now, else the instant they will be (the tokens are already taken:
 *       later requests queue behind them)
 *
 * Returns AP_OK, AP_INVAL (n > burst), or AP_REJECTED (nothing taken,
 * *res untouched: a backlog so long that the state would overflow, or a
 * ready instant past 2^64 - 1 ns, or at 2^64 - 1 while now_ns is earlier).
 * ready_at is exact, never saturated: tokens reserved at now_ns =
 * UINT64_MAX are at most burst + V(UINT64_MAX) like at every other
 * instant. n = 0 gives an empty reservation ready now.
 */
AP_API AP_NODISCARD ap_status ap_tb_reserve(ap_tb *tb, uint64_t n, uint64_t now_ns,
                                            ap_tb_reservation *res);

/**
 * ap_tb_cancel_reservation - give back a reservation that is not yet due
 * @res: from ap_tb_reserve on this bucket
 *
 * If now_ns < res->ready_at the reservation is cancelled (res->tokens
 * becomes 0) and its tokens go back to the bucket if, and only if, no
 * later admission or reservation has been stacked on them: the bucket's
 * state C still equals the one this reservation committed (res->end). Then
 * C drops back to what it was before it (all res->tokens are given back,
 * and that number is returned); else nothing is given back and 0 is
 * returned (the tokens are forfeited: a later request already queued
 * behind them, and handing them out again could put more than burst +
 * V(t) - V(s) tokens in a window (s, t]). Cancelling in reverse order of
 * reserving gives every token back. If now_ns >= res->ready_at the
 * reservation counts as used: nothing changes and 0 is returned.
 * Idempotent. Later reservations keep their ready_at (nothing that was
 * promised moves). The bounds in GUARANTEES hold at every instant,
 * counting every reservation that was not cancelled (proof above
 * ap__tb_give_back). Lock-free: one load and, for the tail, a CAS.
 */
AP_API uint64_t ap_tb_cancel_reservation(ap_tb *tb, ap_tb_reservation *res, uint64_t now_ns);

/**
 * ap_tb_acquire_fut_init / ap_tb_acquire_poll / ap_tb_acquire_cancel:
 * a future that takes n tokens, waiting for time (never sleeping itself).
 * @deadline_ns: the latest instant the caller will wait for
 *               (AP_DEADLINE_NONE: no limit)
 *
 * The first poll reserves the tokens if they will be ready by deadline_ns
 * (then, until ready, each poll lowers cx->deadline to the ready instant
 * and returns AP_PENDING), or completes at once with AP_TIMEDOUT and takes
 * nothing. It reads the time only from cx->now. Cancel before completion
 * gives the reserved tokens back under the rule of ap_tb_cancel_reservation
 * (all of them when nothing was stacked on them, else none; even past the
 * ready instant: the caller was never told to proceed); it is idempotent
 * and a no-op after completion.
 * Result (ap_tb_acquire_status): AP_NOT_READY while pending, then AP_OK,
 * AP_TIMEDOUT, AP_REJECTED (ready never within the clock's range, as in
 * ap_tb_reserve; nothing taken), AP_INVAL (n > burst) or AP_CANCELED.
 */
AP_API void ap_tb_acquire_fut_init(ap_tb_acquire_fut *f, ap_tb *tb, uint64_t n,
                                   ap_deadline deadline_ns);
AP_API ap_poll ap_tb_acquire_poll(ap_tb_acquire_fut *f, ap_cx *cx);
AP_API void ap_tb_acquire_cancel(ap_tb_acquire_fut *f);
AP_API AP_NODISCARD ap_status ap_tb_acquire_status(const ap_tb_acquire_fut *f);

/**
 * ap_tb_acquire_wait - block this thread until n tokens are taken, on the
 * bucket's clock (desc.clock; ap_now_ns() by default): the future is driven
 * by ap_block_on_until_clock, so it reserves at that clock's now, returns
 * AP_OK once that clock reaches the ready instant, and deadline_ns is an
 * instant on that clock too (the same scale as the now_ns the caller
 * passes to the other functions). Returns AP_OK, AP_TIMEDOUT at once if
 * they cannot be ready by deadline_ns (nothing taken), AP_REJECTED (as the
 * future), or AP_INVAL. Under a fake clock it parks at most
 * AP_CLOCK_PARK_MAX_NS of real time between readings (future.h, CLOCKS).
 */
AP_API AP_NODISCARD ap_status ap_tb_acquire_wait(ap_tb *tb, uint64_t n, ap_deadline deadline_ns);

/**
 * ap_tb_keyed_init - a keyed limiter in caller memory
 * @kt:       the limiter
 * @buf:      at least AP_TB_KEYED_BYTES(capacity) bytes, aligned to
 *            AP_TB_KEYED_ALIGN; the limiter owns it until fini
 * @bytes:    the size of @buf in bytes (more than needed is fine; the
 *            excess is not touched)
 * @desc:     every key's bucket configuration (as ap_tb_init)
 * @capacity: keys tracked at once (>= 1)
 *
 * Every key gets its own bucket with the configuration @desc. Returns
 * AP_OK or AP_INVAL: bad desc (as ap_tb_init), capacity 0 or so large that
 * its bytes overflow size_t, @buf NULL or misaligned, @bytes too small. On
 * AP_INVAL neither *kt nor @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_tb_keyed_init(ap_tb_keyed *kt, void *buf, size_t bytes,
                                               size_t capacity, const ap_tb_desc *desc);
/** ap_tb_keyed_fini - end of life; frees nothing */
AP_API void ap_tb_keyed_fini(ap_tb_keyed *kt);
#ifndef AP_NO_MALLOC
/**
 * ap_tb_keyed_create - allocate and initialise a keyed limiter (one allocation)
 * Returns AP_OK, AP_INVAL (nothing allocated) or AP_NOMEM; *out untouched on failure.
 */
AP_API AP_NODISCARD ap_status ap_tb_keyed_create(ap_tb_keyed **out, size_t capacity,
                                                 const ap_tb_desc *desc, const ap_allocator *alloc);
/** ap_tb_keyed_destroy - free a limiter from ap_tb_keyed_create */
AP_API void ap_tb_keyed_destroy(ap_tb_keyed *kt);
#endif

/**
 * ap_tb_keyed_try_acquire - ap_tb_try_acquire on @key's bucket
 *
 * Returns AP_OK, AP_EMPTY or AP_REJECTED (*retry_at as in ap_tb_try_acquire), AP_INVAL
 * (n > burst), or AP_FULL: @key is not tracked and every slot holds a key
 * whose bucket is not full at now_ns; nothing changed (a slot frees as
 * soon as one of those buckets has refilled). n = 0 returns AP_OK and
 * inserts nothing. Concurrency: any thread (serialised on the table lock).
 */
AP_API AP_NODISCARD ap_status ap_tb_keyed_try_acquire(ap_tb_keyed *kt, uint64_t key,
                                                      uint64_t n, uint64_t now_ns,
                                                      uint64_t *retry_at);
/** ap_tb_keyed_len - keys currently tracked (snapshot; includes refilled ones not yet dropped) */
AP_API size_t ap_tb_keyed_len(ap_tb_keyed *kt);
/** ap_tb_keyed_capacity - the capacity given at init */
AP_API size_t ap_tb_keyed_capacity(const ap_tb_keyed *kt);
/**
 * ap_tb_keyed_stats_get - the limiter's counters into *@out (exact: taken
 * under the table lock; see ap_tb_keyed_stats)
 * Concurrency: any thread, concurrently with anything but fini.
 */
AP_API void ap_tb_keyed_stats_get(ap_tb_keyed *kt, ap_tb_keyed_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Every atomic access of ap_tb is relaxed. The bucket publishes no memory
 *   to anyone: the bound needs only that each admission is one atomic
 *   read-modify-write of the single word C, and all RMWs of one location
 *   form one modification order whatever their memory order, so no token
 *   is handed out twice. Callers must not use an admission as a
 *   happens-before edge. ap_tb_keyed's lock orders its table (acquire /
 *   release inside ap__lock).
 */

#define AP__TB_EMPTY UINT64_MAX     /* keyed slot marker; C never reaches it */
#define AP__TB_C_MAX (UINT64_MAX - 1)

/* ---- exact 64x64 -> 128 and 128 / 64 ---- */

/* Portable forms: ap__mul_64x64 and ap__div_128_64 (core.h). */
#if defined(__SIZEOF_INT128__) && !defined(AP_TB_NO_INT128)
#define AP__TB_HAVE_INT128 1
__extension__ typedef unsigned __int128 ap__tb_u128;
#endif

/*
 * floor(a * b / d) (up = 0) or ceil(a * b / d) (up = 1), d > 0.
 * Returns false when the result does not fit in 64 bits.
 */
AP_API bool ap__tb_muldiv(uint64_t a, uint64_t b, uint64_t d, int up, uint64_t *out)
{
#ifdef AP__TB_HAVE_INT128
    ap__tb_u128 p = (ap__tb_u128)a * b;
    ap__tb_u128 q = p / d;
    if (up && q * d != p)
        q++;
    if (q > UINT64_MAX)
        return false;
    *out = (uint64_t)q;
    return true;
#else
    uint64_t hi, lo, rem, q;
    ap__mul_64x64(a, b, &hi, &lo);
    if (hi >= d)
        return false;
    q = ap__div_128_64(hi, lo, d, &rem);
    if (up && rem != 0) {
        if (q == UINT64_MAX)
            return false;
        q++;
    }
    *out = q;
    return true;
#endif
}

AP_API uint64_t ap__tb_gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* V(t): emission instants passed by t, floor(t * n / p) <= t (n <= p). */
AP_FORCE_INLINE uint64_t ap__tb_slots(const ap_tb *tb, uint64_t t)
{
    if (tb->n == 1)
        return t / tb->p;
    uint64_t v = 0;
    bool ok = ap__tb_muldiv(t, tb->n, tb->p, 0, &v);
    AP_ASSERT(ok); /* n <= p: cannot overflow */
    (void)ok;
    return v;
}

/* The instant emission slot k is passed: min t with V(t) >= k, that is
 * ceil(k * p / n). Returns false when that instant lies beyond 2^64 - 1 ns
 * (*t untouched): it is never reached, and must not be confused with the
 * instant UINT64_MAX itself (issue #11: saturating it there let a
 * reservation at now = UINT64_MAX be "due now" without limit). */
AP_FORCE_INLINE bool ap__tb_time_of(const ap_tb *tb, uint64_t k, uint64_t *t)
{
    if (tb->n == 1) {
        if (k > UINT64_MAX / tb->p)
            return false;
        *t = k * tb->p;
        return true;
    }
    return ap__tb_muldiv(k, tb->p, tb->n, 1, t);
}

/*
 * base = max(c, V(now)). With n' = 1 the common cases need no division:
 * c*p > now means V(now) < c (the bucket owes tokens, base = c); else
 * V(now) = c + (now - c*p) / p, and a caller arriving about once per T
 * finds that quotient 0 or 1.
 */
AP_FORCE_INLINE uint64_t ap__tb_base(const ap_tb *tb, uint64_t c, uint64_t now,
                                     uint64_t *v_out)
{
    if (tb->n == 1 && c <= UINT64_MAX / tb->p) {
        uint64_t tc = c * tb->p;
        if (tc > now) {
            *v_out = now / tb->p; /* only needed by callers that report */
            return c;
        }
        uint64_t d = now - tc, v;
        if (d < tb->p)
            v = c;
        else if (d - tb->p < tb->p)
            v = c + 1;
        else
            v = c + d / tb->p;
        *v_out = v;
        return v;
    }
    uint64_t v = ap__tb_slots(tb, now);
    *v_out = v;
    return c > v ? c : v;
}

/*
 * Decide m tokens (m <= burst) against state c at now.
 *   returns 1 (admitted now) or 0 (not yet), with *next = base + m and
 *   *when = the instant base + m is admissible (now if admitted; exact,
 *   never saturated);
 *   returns -1 when base + m would overflow C, or when the instant it would
 *   be admissible lies beyond 2^64 - 1 ns (never admissible).
 * Admissible iff base + m <= V(now) + burst, written without overflow as
 * (base - v) + m <= burst.
 */
AP_FORCE_INLINE int ap__tb_decide(const ap_tb *tb, uint64_t c, uint64_t m, uint64_t now,
                                  uint64_t *next, uint64_t *when)
{
    uint64_t v, base;
    if (tb->n == 1 && c <= UINT64_MAX / tb->p && c * tb->p > now) {
        /* owing: base = c > V(now); admissible iff V(now) >= c + m - burst,
         * i.e. now >= (c + m - burst) * p: no division on this path */
        base = c;
        if (base > AP__TB_C_MAX - m)
            return -1;
        *next = base + m;
        if (base + m <= tb->burst) {
            *when = now;
            return 1;
        }
        uint64_t k = base + m - tb->burst, t;
        if (!ap__tb_time_of(tb, k, &t)) /* k <= c and c * p fits: not taken */
            return -1;
        *when = t <= now ? now : t;
        return t <= now;
    }
    base = ap__tb_base(tb, c, now, &v);
    if (base > AP__TB_C_MAX - m)
        return -1;
    *next = base + m;
    if (base - v <= tb->burst - m) {
        *when = now;
        return 1;
    }
    /* base - v > burst - m >= 0, so base > burst - m: k >= 1 and k > v,
     * so the instant is > now (V is monotone and V(now) = v < k) */
    if (!ap__tb_time_of(tb, base - (tb->burst - m), when))
        return -1;
    return 0;
}

AP_API ap_tb_desc ap_tb_desc_resolved(const ap_tb_desc *desc)
{
    ap_tb_desc d = *desc;
    if (d.period_ns == 0)
        d.period_ns = AP_NS_PER_SEC;
    return d;
}

/* Validate and reduce a desc into tb's configuration fields. */
AP_API ap_status ap__tb_config(ap_tb *cfg, const ap_tb_desc *desc)
{
    if (desc == NULL)
        return AP_INVAL;
    ap_tb_desc d = ap_tb_desc_resolved(desc);
    if (d.n == 0 || d.burst == 0 || d.n > d.period_ns || d.burst > AP__TB_C_MAX)
        return AP_INVAL;
    uint64_t g = ap__tb_gcd(d.n, d.period_ns);
    cfg->n = d.n / g;
    cfg->p = d.period_ns / g;
    cfg->burst = d.burst;
    cfg->desc = d;
    return AP_OK;
}

AP_API ap_status ap_tb_init(ap_tb *tb, const ap_tb_desc *desc)
{
    AP_ASSERT(tb != NULL);
    ap_tb cfg;
    ap_status st = ap__tb_config(&cfg, desc);
    if (st != AP_OK)
        return st;
    tb->n = cfg.n;
    tb->p = cfg.p;
    tb->burst = cfg.burst;
    tb->desc = cfg.desc;
    AP_ATOMIC_INIT(&tb->tat, 0u); /* C = 0 <= V(t) for all t: full */
    AP_ATOMIC_INIT(&tb->st_offered, 0u);
    AP_ATOMIC_INIT(&tb->st_admitted, 0u);
    AP_ATOMIC_INIT(&tb->st_rejected, 0u);
    AP_ATOMIC_INIT(&tb->st_canceled, 0u);
    AP_ATOMIC_INIT(&tb->st_waits, 0u);
    AP_ATOMIC_INIT(&tb->st_wait_ns, 0u);
    return AP_OK;
}

AP_API void ap_tb_stats_get(ap_tb *tb, ap_tb_stats *out)
{
    AP_ASSERT(tb != NULL && tb->p != 0 && out != NULL);
    /* Outcomes first (acquire: pairs with the release increments of
     * ap__tb_count, whose release sequences carry every earlier offer),
     * then offered: a snapshot taken while futures run never shows more
     * outcomes than offers. */
    out->admitted = AP_ATOMIC_LOAD(&tb->st_admitted, memory_order_acquire);
    out->rejected = AP_ATOMIC_LOAD(&tb->st_rejected, memory_order_acquire);
    out->canceled = AP_ATOMIC_LOAD(&tb->st_canceled, memory_order_acquire);
    out->waits = AP_ATOMIC_LOAD(&tb->st_waits, memory_order_relaxed);
    out->wait_ns = AP_ATOMIC_LOAD(&tb->st_wait_ns, memory_order_relaxed);
    out->offered = AP_ATOMIC_LOAD(&tb->st_offered, memory_order_acquire);
}

/* one count on the futures' counter line (see ap_tb_stats). release: a
 * future's offer is counted before its outcome, so a reader whose acquire
 * load sees the outcome sees the offer too (ap_tb_stats_get) */
AP_API void ap__tb_count(AP_ATOMIC_T(uint64_t) *c, uint64_t v)
{
    (void)AP_ATOMIC_FETCH_ADD(c, v, memory_order_release);
}

AP_API void ap_tb_fini(ap_tb *tb)
{
    AP_ASSERT(tb != NULL && tb->p != 0); /* live: fini once */
    tb->p = 0; /* a later call trips AP_ASSERT */
}

AP_API ap_status ap_tb_try_acquire(ap_tb *tb, uint64_t n, uint64_t now_ns, uint64_t *retry_at)
{
    AP_ASSERT(tb != NULL && tb->p != 0);
    if (AP_UNLIKELY(n > tb->burst))
        return AP_INVAL;
    if (AP_UNLIKELY(n == 0))
        return AP_OK;
    /* relaxed: the bucket publishes no memory (see ORDERING). */
    uint64_t c = AP_ATOMIC_LOAD(&tb->tat, memory_order_relaxed);
    for (;;) {
        uint64_t next, when;
        int r = ap__tb_decide(tb, c, n, now_ns, &next, &when);
        if (AP_UNLIKELY(r <= 0)) {
            if (retry_at)
                *retry_at = r < 0 ? AP_DEADLINE_NONE : when;
            return r < 0 ? AP_REJECTED : AP_EMPTY; /* never / not now */
        }
        /* relaxed: atomicity alone keeps the count (one modification
         * order of tat); on failure c is reloaded and we decide again. */
        if (AP_ATOMIC_CAS_WEAK(&tb->tat, &c, next, memory_order_relaxed,
                               memory_order_relaxed))
            return AP_OK;
        AP_TEST_YIELD();
    }
}

AP_API uint64_t ap_tb_available(ap_tb *tb, uint64_t now_ns)
{
    AP_ASSERT(tb != NULL && tb->p != 0);
    uint64_t c = AP_ATOMIC_LOAD(&tb->tat, memory_order_relaxed), v;
    uint64_t base = ap__tb_base(tb, c, now_ns, &v);
    return base - v >= tb->burst ? 0 : tb->burst - (base - v);
}

AP_API ap_status ap__tb_reserve_until(ap_tb *tb, uint64_t n, uint64_t now_ns,
                                      uint64_t latest, ap_tb_reservation *res)
{
    AP_ASSERT(tb != NULL && tb->p != 0 && res != NULL);
    if (n > tb->burst)
        return AP_INVAL;
    if (n == 0) {
        res->tokens = 0;
        res->ready_at = now_ns;
        res->end = 0;
        return AP_OK;
    }
    uint64_t c = AP_ATOMIC_LOAD(&tb->tat, memory_order_relaxed);
    for (;;) {
        uint64_t next, when;
        int r = ap__tb_decide(tb, c, n, now_ns, &next, &when);
        if (r < 0)
            return AP_REJECTED; /* the backlog would overflow C, or the ready
                                 * instant is past 2^64 - 1: runtime, not config */
        if (when == AP_DEADLINE_NONE && when > now_ns)
            return AP_REJECTED; /* ready at the instant that also means "never"
                                 * (no deadline could wait for it): never commit */
        if (when > latest && when > now_ns) /* due now is never too late */
            return AP_TIMEDOUT;
        /* relaxed: as in ap_tb_try_acquire */
        if (AP_ATOMIC_CAS_WEAK(&tb->tat, &c, next, memory_order_relaxed,
                               memory_order_relaxed)) {
            res->tokens = n;
            res->ready_at = when;
            res->end = next;
            return AP_OK;
        }
        AP_TEST_YIELD();
    }
}

AP_API ap_status ap_tb_reserve(ap_tb *tb, uint64_t n, uint64_t now_ns, ap_tb_reservation *res)
{
    return ap__tb_reserve_until(tb, n, now_ns, AP_DEADLINE_NONE, res);
}

/*
 * Give back a reservation's m tokens if it is still the bucket's tail:
 * C == end (the C it committed) becomes end - m (its base). Returns the
 * tokens given back: m, or 0 when C != end (a later admission or
 * reservation has been stacked on it; the tokens are forfeited).
 *
 * Why the window bound survives (proof of GUARANTEES). Call an admission
 * or reservation live unless it was cancelled; give each its interval
 * [b, e) of emission slots, b = max(C, V(t0)) at its request time t0 and
 * e = b + m (the C it committed). Two invariants:
 *   (I1) every live interval has e <= C;
 *   (I2) live intervals are pairwise disjoint.
 * A new request has b >= C >= every live e: (I1), (I2) hold, and its e is
 * the new C. A cancel that gives back happens only when C == e_i; every
 * other live j then has e_j <= e_i and, being disjoint and non-empty,
 * e_j <= b_i: so C = b_i keeps (I1). A cancel that forfeits changes no C
 * and removes an interval: both hold. Now a live interval whose tokens
 * become usable at r in (s, t]: usable means e <= V(r) + burst <= V(t) +
 * burst; and b >= V(s), because either r = t0 > s and b >= V(t0) >= V(s),
 * or r = ceil((e - burst) * p / n) > s, the least instant with V(r) >=
 * e - burst, so V(s) < e - burst <= e - m = b. Hence every such interval
 * lies in [V(s), V(t) + burst); being disjoint, their tokens total at most
 * burst + V(t) - V(s). With s before time 0 (V = 0) that is the bound
 * burst + V(t) on everything usable by t.
 * C never rises past a committed e and only drops to a b >= 0: no wrap.
 */
AP_API uint64_t ap__tb_give_back(ap_tb *tb, uint64_t end, uint64_t m)
{
    uint64_t c = AP_ATOMIC_LOAD(&tb->tat, memory_order_relaxed);
    while (c == end) {
        AP_ASSERT(end >= m); /* e = b + m */
        /* relaxed: as in ap_tb_try_acquire; a failed CAS reloads c, and a
         * request stacked meanwhile makes c != end: nothing given back */
        if (AP_ATOMIC_CAS_WEAK(&tb->tat, &c, end - m, memory_order_relaxed,
                               memory_order_relaxed))
            return m;
    }
    return 0;
}

AP_API uint64_t ap_tb_cancel_reservation(ap_tb *tb, ap_tb_reservation *res, uint64_t now_ns)
{
    AP_ASSERT(tb != NULL && tb->p != 0 && res != NULL);
    uint64_t m = res->tokens;
    if (m == 0 || now_ns >= res->ready_at)
        return 0;
    res->tokens = 0;
    return ap__tb_give_back(tb, res->end, m);
}

/* ---- acquire future ---- */

AP__FUTURE_VTABLE(ap__tb_acquire, ap_tb_acquire_fut, ap_tb_acquire_poll, ap_tb_acquire_cancel)

AP_API void ap_tb_acquire_fut_init(ap_tb_acquire_fut *f, ap_tb *tb, uint64_t n,
                                   ap_deadline deadline_ns)
{
    AP_ASSERT(f != NULL && tb != NULL);
    f->base.poll = ap__tb_acquire_poll_v;
    f->base.cancel = ap__tb_acquire_cancel_v;
    f->tb = tb;
    f->n = n;
    f->deadline = deadline_ns;
    f->res.tokens = 0;
    f->res.ready_at = 0;
    f->res.end = 0;
    f->state = 0;
    f->status = AP_NOT_READY;
}

AP_API ap_poll ap_tb_acquire_poll(ap_tb_acquire_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->state == 2)
        return AP_READY;
    if (f->state == 0) {
        ap__tb_count(&f->tb->st_offered, 1u);
        ap_status st = ap__tb_reserve_until(f->tb, f->n, cx->now, f->deadline, &f->res);
        if (st != AP_OK) {
            f->status = st; /* AP_INVAL, AP_TIMEDOUT or AP_REJECTED: nothing taken */
            f->state = 2;
            ap__tb_count(&f->tb->st_rejected, 1u);
            return AP_READY;
        }
        f->state = 1;
        if (f->res.ready_at > cx->now) {
            ap__tb_count(&f->tb->st_waits, 1u);
            ap__tb_count(&f->tb->st_wait_ns, f->res.ready_at - cx->now);
        }
    }
    if (cx->now >= f->res.ready_at) {
        f->status = AP_OK;
        f->state = 2;
        ap__tb_count(&f->tb->st_admitted, 1u);
        return AP_READY;
    }
    ap_cx_wake_at(cx, f->res.ready_at); /* waits for time only: no waker */
    return AP_PENDING;
}

AP_API void ap_tb_acquire_cancel(ap_tb_acquire_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->state == 1 && f->res.tokens != 0) /* never told to proceed */
        (void)ap__tb_give_back(f->tb, f->res.end, f->res.tokens);
    if (f->state == 1)
        ap__tb_count(&f->tb->st_canceled, 1u); /* offered, never completed */
    if (f->state != 2) {
        f->res.tokens = 0;
        f->status = AP_CANCELED;
        f->state = 2;
    }
}

AP_API ap_status ap_tb_acquire_status(const ap_tb_acquire_fut *f)
{
    return f->status;
}

AP_API ap_status ap_tb_acquire_wait(ap_tb *tb, uint64_t n, ap_deadline deadline_ns)
{
    ap_tb_acquire_fut f;
    ap_tb_acquire_fut_init(&f, tb, n, deadline_ns);
    /* No outer deadline: the future never reserves past deadline_ns, so
     * it completes by then (or at once with AP_TIMEDOUT). */
    ap_status st = ap_block_on_until_clock(&f.base, AP_DEADLINE_NONE, &tb->desc.clock);
    AP_ASSERT(st == AP_OK);
    (void)st;
    return f.status;
}

/* ---- keyed ---- */

#define AP__TB_KEYED_CAP_LIMIT (SIZE_MAX / sizeof(ap_tb_keyed_slot))

AP_API ap_status ap_tb_keyed_init(ap_tb_keyed *kt, void *buf, size_t bytes,
                                  size_t capacity, const ap_tb_desc *desc)
{
    AP_ASSERT(kt != NULL);
    ap_tb cfg;
    /* every check before the first write: AP_INVAL touches nothing */
    if (capacity == 0 || capacity > AP__TB_KEYED_CAP_LIMIT ||
        bytes < capacity * sizeof(ap_tb_keyed_slot) || buf == NULL ||
        (uintptr_t)buf % AP_TB_KEYED_ALIGN != 0 || ap__tb_config(&cfg, desc) != AP_OK)
        return AP_INVAL;
    kt->cfg.n = cfg.n;
    kt->cfg.p = cfg.p;
    kt->cfg.burst = cfg.burst;
    kt->cfg.desc = cfg.desc;
    AP_ATOMIC_INIT(&kt->cfg.tat, 0u);
    kt->slots = (ap_tb_keyed_slot *)buf;
    for (size_t i = 0; i < capacity; i++) {
        kt->slots[i].key = 0;
        kt->slots[i].tat = AP__TB_EMPTY;
    }
    kt->capacity = capacity;
    kt->used = 0;
    kt->max_now = 0;
    kt->alloc = NULL;
    kt->st_admitted = kt->st_rejected = kt->st_full = 0;
    kt->st_inserted = kt->st_evicted = kt->st_probes = 0;
    AP_ATOMIC_INIT(&kt->lock.held, 0u);
    return AP_OK;
}

AP_API void ap_tb_keyed_fini(ap_tb_keyed *kt)
{
    AP_ASSERT(kt != NULL && kt->slots != NULL); /* live: fini once */
    kt->slots = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_tb_keyed_create(ap_tb_keyed **out, size_t capacity,
                                    const ap_tb_desc *desc, const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_tb_keyed), AP_CACHELINE), total;
    ap_tb cfg;
    AP_ASSERT(out != NULL);
    if (a == NULL || capacity == 0 || capacity > AP__TB_KEYED_CAP_LIMIT ||
        ap__tb_config(&cfg, desc) != AP_OK ||
        !ap__size_muladd(capacity, sizeof(ap_tb_keyed_slot), hdr, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_tb_keyed *kt = (ap_tb_keyed *)(void *)mem;
    ap_status st = ap_tb_keyed_init(kt, mem + hdr, total - hdr, capacity, desc);
    AP_ASSERT(st == AP_OK);
    (void)st;
    kt->alloc = a;
    *out = kt;
    return AP_OK;
}

AP_API void ap_tb_keyed_destroy(ap_tb_keyed *kt)
{
    if (kt == NULL)
        return;
    AP_ASSERT(kt->alloc != NULL); /* only limiters from ap_tb_keyed_create */
    const ap_allocator *a = kt->alloc;
    size_t total = ap__align_up(sizeof(ap_tb_keyed), AP_CACHELINE) +
                   kt->capacity * sizeof(ap_tb_keyed_slot);
    if (kt->slots != NULL) /* fini may have run already */
        ap_tb_keyed_fini(kt);
    a->free(kt, total, a->user);
}
#endif

AP_API size_t ap__tb_keyed_home(const ap_tb_keyed *kt, uint64_t key)
{
    /* splitmix64: adjacent keys spread over the table */
    return (size_t)(ap__mix64(key) % (uint64_t)kt->capacity);
}

/* ap__probe_delete's callbacks over the keyed table (under its lock). */
AP_FORCE_INLINE size_t ap__tb_keyed_probe_home(void *t, size_t j)
{
    ap_tb_keyed *kt = (ap_tb_keyed *)t;
    return kt->slots[j].tat == AP__TB_EMPTY ? SIZE_MAX : ap__tb_keyed_home(kt, kt->slots[j].key);
}

AP_FORCE_INLINE void ap__tb_keyed_probe_move(void *t, size_t to, size_t from)
{
    ap_tb_keyed *kt = (ap_tb_keyed *)t;
    kt->slots[to] = kt->slots[from];
    kt->slots[from].tat = AP__TB_EMPTY;
}

/* Remove the entry at i by backward shift (ap__probe_delete): later
 * entries of the cluster move back so every key stays reachable from its
 * home without crossing an empty slot. Caller holds the lock. */
AP_API void ap__tb_keyed_delete(ap_tb_keyed *kt, size_t i)
{
    kt->slots[i].tat = AP__TB_EMPTY;
    kt->used--;
    kt->st_evicted++;
    ap__probe_delete(kt, kt->capacity, i, ap__tb_keyed_probe_home, ap__tb_keyed_probe_move);
}

AP_API ap_status ap_tb_keyed_try_acquire(ap_tb_keyed *kt, uint64_t key, uint64_t n,
                                         uint64_t now_ns, uint64_t *retry_at)
{
    AP_ASSERT(kt != NULL && kt->slots != NULL);
    const ap_tb *cfg = &kt->cfg;
    if (n > cfg->burst)
        return AP_INVAL;
    if (n == 0)
        return AP_OK;
    ap_status st;
    ap__lock_acquire(&kt->lock);
    /* Callers read their clocks before taking the lock, so now_ns may lag
     * one another. Keys are dropped as "full again" only by the latest
     * time seen, and a new key starts full AT that time (tat = V(max_now)),
     * never fuller: a lagging caller cannot re-mint a dropped key's tokens. */
    if (now_ns > kt->max_now)
        kt->max_now = now_ns;
    uint64_t v_max;
    (void)ap__tb_base(cfg, 0, kt->max_now, &v_max);
    size_t cap = kt->capacity, i = ap__tb_keyed_home(kt, key), seen = 0;
    uint64_t probes = 0; /* other keys stepped over (the stats) */
    ap_tb_keyed_slot *s = NULL;
    while (seen < cap) {
        ap_tb_keyed_slot *x = &kt->slots[i];
        if (x->tat == AP__TB_EMPTY) {
            s = x; /* key absent: insert here */
            s->key = key;
            /* a fresh bucket (full at max_now). Real states never exceed
             * AP__TB_EMPTY - 1 (the empty marker), so the clamp keeps the
             * slot occupied and is still no fuller than any dropped key. */
            s->tat = v_max < AP__TB_EMPTY ? v_max : AP__TB_EMPTY - 1;
            kt->used++;
            kt->st_inserted++;
            break;
        }
        if (x->key == key) {
            s = x;
            break;
        }
        if (x->tat <= v_max) {
            /* another key, full again at max_now: indistinguishable from
             * a fresh bucket; drop it. The backward-shift delete may move
             * entries anywhere along the (wrapping) chain, also behind us,
             * so probe again from the key's home. Terminates: every delete
             * lowers `used`. */
            ap__tb_keyed_delete(kt, i);
            i = ap__tb_keyed_home(kt, key);
            seen = 0;
            continue;
        }
        i = i + 1 == cap ? 0 : i + 1;
        seen++;
        probes++;
    }
    kt->st_probes += probes;
    if (s == NULL) {
        st = AP_FULL; /* every slot holds an active key: nothing changed */
        kt->st_full++;
    } else {
        uint64_t next, when;
        int r = ap__tb_decide(cfg, s->tat, n, now_ns, &next, &when);
        if (r > 0) {
            s->tat = next;
            st = AP_OK;
            kt->st_admitted++;
        } else {
            if (retry_at)
                *retry_at = r < 0 ? AP_DEADLINE_NONE : when;
            st = r < 0 ? AP_REJECTED : AP_EMPTY; /* never / not now */
            kt->st_rejected++;
        }
    }
    ap__lock_release(&kt->lock);
    return st;
}

AP_API size_t ap_tb_keyed_len(ap_tb_keyed *kt)
{
    ap__lock_acquire(&kt->lock);
    size_t n = kt->used;
    ap__lock_release(&kt->lock);
    return n;
}

AP_API size_t ap_tb_keyed_capacity(const ap_tb_keyed *kt)
{
    return kt->capacity;
}

AP_API void ap_tb_keyed_stats_get(ap_tb_keyed *kt, ap_tb_keyed_stats *out)
{
    AP_ASSERT(kt != NULL && kt->slots != NULL && out != NULL);
    ap__lock_acquire(&kt->lock); /* one consistent snapshot */
    out->admitted = kt->st_admitted;
    out->rejected = kt->st_rejected;
    out->full = kt->st_full;
    out->keys = kt->used;
    out->inserted = kt->st_inserted;
    out->evicted = kt->st_evicted;
    out->probes = kt->st_probes;
    ap__lock_release(&kt->lock);
}

#endif /* ASYNCPAT_TOKEN_BUCKET_H */
