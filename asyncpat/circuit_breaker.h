/*
 * asyncpat/circuit_breaker.h -- circuit breaker: sliding-window failure and
 *                               slow-call rates, half-open probes with leases
 *
 * PATTERN
 *   A breaker sits in front of a dependency. CLOSED: calls pass and their
 *   outcomes go into a sliding window; once min_calls outcomes are in the
 *   window and the failure rate (or the slow-call rate: duration >=
 *   slow_call_ns) reaches its threshold, or consecutive_failures failures
 *   arrive in a row, it trips OPEN. OPEN: every call is rejected until the
 *   open duration has passed; then HALF_OPEN admits at most K probes per
 *   half-open period: K successes close it, one failure (or slow call)
 *   re-opens it, for a duration that grows by open_multiplier_pct per
 *   re-open up to open_max_ns. An IGNORED probe frees its slot but not its
 *   admission; a period whose K probes all reported with no failure but
 *   fewer than K successes (some IGNORED) is inconclusive and starts a new
 *   half-open period (HALF_OPEN -> HALF_OPEN: a transition, a new
 *   generation, the callback) with a fresh batch of K: as in resilience4j,
 *   ignored calls neither close nor re-open the breaker, but here they
 *   never lift the bound of K admissions per generation. A CANCELED
 *   outcome (the call was abandoned before it had an outcome: e.g. a retry
 *   deadline cut the attempt) counts exactly as IGNORED everywhere (no
 *   window, no rate, no failure run; in HALF_OPEN it frees the probe slot
 *   but not its admission), and in its own stats counter, `canceled`.
 *   FORCED_OPEN rejects everything and DISABLED admits everything (neither
 *   evaluates anything) until ap_breaker_reset.
 *   The facts follow resilience4j's CircuitBreaker (count- and time-based
 *   windows, minimumNumberOfCalls, rate >= threshold trips); the code does not.
 *
 *   Two steps: ap_breaker_allow(now) hands out an ap_breaker_permit stamped with the
 *   breaker's generation; ap_breaker_record(permit, outcome, duration, now)
 *   reports it, once: the record marks the permit it is given as consumed
 *   (gen = 0), and a second record of it is AP_INVAL and changes nothing.
 *   (A record of a *copy* of a permit already reported is the caller's
 *   error; it is detected only when it is a half-open probe whose slot is
 *   free.) Every transition increments the generation, so an outcome
 *   reported after the breaker moved on is recognised and ignored (counted
 *   as stale). Transitions are computed on access from now_ns: there is no
 *   timer thread and no clock read.
 *
 *   Windows: COUNT: the last window_size non-ignored outcomes of the
 *   current CLOSED period. TIME: buckets of width w = window_ns / buckets;
 *   an outcome recorded at time t lies in bucket k = t / w and counts at
 *   time now while now / w - buckets < k, i.e. it expires exactly at
 *   (k + buckets) * w. A record with a now earlier than the newest bucket
 *   seen is counted in that newest bucket. Windows start empty on every
 *   entry to CLOSED.
 *
 * USAGE
 *   static ap_breaker *b;   // 50 % of the last 20 calls fail -> open for 5 s
 *   if (ap_breaker_create(&b, &(ap_breaker_desc){.window_size = 20,
 *                         .open_ns = 5 * AP_NS_PER_SEC}, NULL)) abort();
 *   ap_breaker_permit p; uint64_t retry_at, t0 = ap_now_ns();
 *   if (ap_breaker_allow(b, t0, &p, &retry_at) != AP_OK) return fail_fast(retry_at);
 *   int rc = call_dependency();
 *   uint64_t t1 = ap_now_ns();
 *   if (ap_breaker_record(b, &p, rc ? AP_BREAKER_OUTCOME_FAILURE : AP_BREAKER_OUTCOME_SUCCESS,
 *                    t1 - t0, t1) != AP_OK)
 *       abort();   // only a permit reported twice or a bad outcome: a bug
 *
 * GUARANTEES (invariants the tests check)
 *   - no call is admitted while OPEN or FORCED_OPEN (a permit's generation
 *     is always a CLOSED, DISABLED or HALF_OPEN generation)
 *   - HALF_OPEN: at most half_open_probes probes in flight, and at most
 *     that many admitted per half-open period (generation), IGNORED ones
 *     included; a probe slot is freed only by the probe's own record or by
 *     the end of the period
 *   - a probe not reported by admit + probe_lease_ns counts as a failure
 *     (lease_expired): the breaker re-opens, so it is never stuck half-open
 *   - an outcome from an older generation changes nothing but the stale
 *     counter
 *   - single-threaded, the breaker equals the reference model in
 *     tests/test_circuit_breaker.c step by step
 *   - a permit is reported at most once: ap_breaker_record of a consumed
 *     permit (or of one never admitted: gen 0) is AP_INVAL and changes
 *     nothing, so one permit can never count as several outcomes
 *   - CANCELED never counts as a failure and never re-opens: in HALF_OPEN
 *     it frees the probe slot at once (as IGNORED does)
 *   - conservation: once every permit is reported,
 *     allowed == successes + failures + ignored + canceled + stale
 *   - the callback runs exactly once per transition, with (from, to, gen),
 *     never under the breaker's lock
 *
 * CONCURRENCY          allow  record  state  stats  force/disable/reset  fini
 *   any call            yes    yes     yes    yes        yes              no
 *   Progress: in CLOSED and DISABLED, allow is one atomic load (wait-free);
 *   record in CLOSED is lock-free with either window and takes no lock
 *   unless it trips the breaker: COUNT: its CAS loops on the aggregate,
 *   the cursor and a slot retry only when another record succeeded; a
 *   fast success (not slow) into a full window with no failure and no
 *   slow call is wait-free and writes only its stat counter (the window it
 *   leaves is the one it found). TIME: its CAS loops on the newest epoch,
 *   a bucket's key and its counts retry only when another record raised
 *   the epoch, moved the bucket to a newer epoch or added to it; a bucket
 *   found mid-reset is helped to finish. IGNORED in CLOSED touches no
 *   window, nor does CANCELED. Everything else (OPEN once the
 *   open time is over, HALF_OPEN, transitions, manual
 *   controls) runs under one small internal lock (ap__lock) held for
 *   O(probes + buckets) work; OPEN rejections before the open time is
 *   over take no lock. Transitions happen only under the lock, after
 *   re-checking the state word, so exactly one thread performs each.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   allow/record O(1) in CLOSED with the COUNT window; O(buckets)
 *              with the TIME window (lock-free, the sum); O(probes) in
 *              HALF_OPEN.
 * MEMORY       ap_breaker_init takes a caller buffer and its size in bytes: at
 *              least ap_breaker_bytes(desc) (<= AP_BREAKER_BYTES(window_size or
 *              buckets, probes)), aligned to AP_BREAKER_ALIGN (8); else AP_INVAL
 *              with nothing written; ap_breaker_create allocates the breaker and
 *              buffer once. Nothing else allocates.
 * ERRORS       AP_REJECTED (retry_at says when it may admit again); AP_INVAL
 *              for a bad desc (see ap_breaker_init), a too-small buffer, a bad
 *              outcome, a permit already reported; AP_NOMEM. AP_INVAL
 *              changes nothing.
 * LIMITS       window_size <= AP_BREAKER_MAX_WINDOW (16384), buckets <= 4096,
 *              half_open_probes <= AP_BREAKER_MAX_PROBES (1024). The COUNT window
 *              tags its aggregate with 16 bits of the generation: a record
 *              stalled between its state check and its add across exactly a
 *              multiple of 65536 transitions could land in a later window;
 *              the TIME window's tnew and keys carry the same 16-bit tag.
 *              TIME: a bucket counts at most 524287 calls and failures
 *              and 262143 slow calls (more saturate: the rates of such a
 *              bucket are then approximate); epochs (now_ns / (window_ns /
 *              buckets)) above 2^47 - 1 count as 2^47 - 1; an add stalled
 *              between its count read and its CAS across exactly a
 *              multiple of 256 resets of its bucket, finding the same
 *              counts, could land in a later epoch (8-bit seq).
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_TEST_YIELD
 * SEE ALSO     tests/test_circuit_breaker.c, bench/bench_circuit_breaker.c
 * STABILITY    experimental (0.x): names and defaults may change before 1.0
 */
#ifndef ASYNCPAT_CIRCUIT_BREAKER_H
#define ASYNCPAT_CIRCUIT_BREAKER_H

#include "core.h"
#include "time.h"

#define AP_BREAKER_MAX_WINDOW 16384u
#define AP_BREAKER_MAX_BUCKETS 4096u
#define AP_BREAKER_MAX_PROBES 1024u
#define AP_BREAKER_STRIPES 8u

/** AP_BREAKER_BYTES - an upper bound of ap_breaker_bytes (constant expression):
 * @n: window_size (COUNT) or buckets (TIME); @probes: half_open_probes */
#define AP_BREAKER_BYTES(n, probes) ((size_t)(n) * 32u + (size_t)(probes) * 8u)
/** AP_BREAKER_ALIGN - the alignment ap_breaker_init needs of its buffer: the window
 *  and the probe slots are 64-bit words (constant expression) */
#define AP_BREAKER_ALIGN ((size_t)8)

/** ap_breaker_state - the states; the numbers are stable */
typedef enum ap_breaker_state {
    AP_BREAKER_STATE_CLOSED = 0,
    AP_BREAKER_STATE_OPEN = 1,
    AP_BREAKER_STATE_HALF_OPEN = 2,
    AP_BREAKER_STATE_FORCED_OPEN = 3,
    AP_BREAKER_STATE_DISABLED = 4
} ap_breaker_state;

/** ap_breaker_outcome - what ap_breaker_record reports */
typedef enum ap_breaker_outcome {
    AP_BREAKER_OUTCOME_SUCCESS = 0,
    AP_BREAKER_OUTCOME_FAILURE = 1,
    AP_BREAKER_OUTCOME_IGNORED = 2, /* releases the permit, counts in no rate */
    AP_BREAKER_OUTCOME_CANCELED = 3 /* the call was abandoned without an outcome
                                       (e.g. cut by a deadline): as IGNORED,
                                       counted in stats.canceled */
} ap_breaker_outcome;

/** ap_breaker_window - sliding window kind */
typedef enum ap_breaker_window {
    AP_BREAKER_WINDOW_COUNT = 0,
    AP_BREAKER_WINDOW_TIME = 1
} ap_breaker_window;

/** ap_breaker_change_fn - state-change callback; runs on the thread that caused
 * the transition, after the breaker's lock is released. Callbacks of
 * different threads may run concurrently and out of order: @gen (the new
 * generation) orders them. */
typedef void (*ap_breaker_change_fn)(void *ctx, ap_breaker_state from, ap_breaker_state to,
                              uint64_t gen);

/** ap_breaker_desc - configuration; a zero field means its default */
typedef struct ap_breaker_desc {
    ap_breaker_window window;       /* COUNT (default) or TIME */
    uint32_t window_size;           /* COUNT: last N calls (default 100; <= 16384) */
    uint64_t window_ns;             /* TIME: span T (default 10 s) */
    uint32_t buckets;               /* TIME: B buckets (default 10; T % B == 0, B <= T) */
    uint32_t min_calls;             /* calls in the window before rates count
                                       (default: window_size for COUNT, 100 for TIME;
                                       COUNT: <= window_size) */
    uint32_t failure_rate_pct;      /* trip at failures >= pct % of calls (default 50; 1..100) */
    uint32_t slow_rate_pct;         /* trip at slow >= pct % of calls (default 100; 1..100) */
    uint64_t slow_call_ns;          /* slow: duration >= this (default 60 s) */
    uint32_t consecutive_failures;  /* trip after this many failures in a row (default: off) */
    uint64_t open_ns;               /* first open duration (default 60 s) */
    uint32_t open_multiplier_pct;   /* each re-open from HALF_OPEN multiplies the duration
                                       (default 100: no growth; 100..10000) */
    uint64_t open_max_ns;           /* cap of the duration (default 16 * open_ns,
                                       saturating; >= open_ns) */
    uint32_t half_open_probes;      /* K (default 10; <= 1024) */
    uint64_t probe_lease_ns;        /* a probe unreported this long fails (default 60 s) */
    ap_breaker_change_fn on_change;        /* optional */
    void *ctx;                      /* passed to on_change */
} ap_breaker_desc;

/** ap_breaker_permit - what ap_breaker_allow hands out; report it once with
 * ap_breaker_record, which consumes it (gen = 0). Do not report copies. */
typedef struct ap_breaker_permit {
    uint64_t gen;   /* the generation it was admitted in; 0: consumed (or never admitted) */
    uint32_t probe; /* 1 + probe slot in HALF_OPEN, else 0 */
} ap_breaker_permit;

/** ap_breaker_stats - counters (snapshot; each is exact once calls stop) */
typedef struct ap_breaker_stats {
    uint64_t allowed, rejected;            /* allow results */
    uint64_t calls;                        /* successes + failures + ignored + canceled */
    uint64_t successes, failures, ignored; /* records of the current generation */
    uint64_t canceled;                     /* records of the current generation */
    uint64_t slow;                         /* of successes + failures: duration >= slow_call_ns */
    uint64_t stale;                        /* records from an older generation */
    uint64_t transitions, lease_expired;
} ap_breaker_stats;

typedef struct ap__breaker_stripe {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) allowed;
    AP_ATOMIC_T(uint64_t) rejected, successes, failures, ignored, canceled, slow, stale;
} ap__breaker_stripe;

typedef struct ap__breaker_bucket {
    AP_ATOMIC_T(uint64_t) key; /* gen16 << 48 | reset flag << 47 | epoch47 */
    AP_ATOMIC_T(uint64_t) cnt; /* seq8 << 56 | calls19 << 37 | failures19 << 18 | slow18 */
} ap__breaker_bucket;

/** ap_breaker - one breaker; set up with ap_breaker_init or ap_breaker_create */
typedef struct ap_breaker {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) state; /* gen << 3 | ap_breaker_state */
    AP_ATOMIC_T(uint64_t) open_until;                   /* while OPEN; written under lock */
    /* COUNT window, all on one line: a record touches each of them */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) agg;   /* epoch16|calls16|failures16|slow16 */
    AP_ATOMIC_T(uint64_t) consec;                       /* epoch16 << 48 | run of failures */
    AP_ATOMIC_T(uint64_t) cursor;                       /* epoch16 << 48 | ring position */
    AP_ATOMIC_T(uint64_t) tnew;                         /* TIME: gen16 << 48 | newest epoch47 */
    /* slow path, under lock */
    AP_ALIGNAS(AP_CACHELINE) ap__lock lock;
    uint64_t cur_open;     /* current open duration */
    uint32_t inflight, succ, admitted; /* HALF_OPEN: this period's probes */
    uint64_t *admit;       /* [probes]: admit time, UINT64_MAX = free */
    ap__breaker_bucket *bkt;    /* TIME: [buckets], lock-free (see ORDERING) */
    uint64_t bkt_w;        /* bucket width, ns */
    AP_ATOMIC_T(uint64_t) *slots; /* COUNT: [window_size], gen32 << 3 | slow << 2 | fail << 1 | 1 */
    AP_ATOMIC_T(uint64_t) transitions, lease_expired;
    ap_breaker_desc desc;  /* resolved */
    const ap_allocator *alloc; /* set by create */
    size_t alloc_size;
    ap__breaker_stripe stripe[AP_BREAKER_STRIPES];
} ap_breaker;

/**
 * ap_breaker_desc_resolved - the desc with every default filled in
 * (no validation: ap_breaker_init validates).
 */
AP_API ap_breaker_desc ap_breaker_desc_resolved(const ap_breaker_desc *desc);

/**
 * ap_breaker_bytes - buffer bytes ap_breaker_init needs for @desc; 0 if @desc is invalid
 */
AP_API size_t ap_breaker_bytes(const ap_breaker_desc *desc);

/**
 * ap_breaker_init - set up a CLOSED breaker, generation 1, in caller memory
 * @buf:   at least ap_breaker_bytes(desc) bytes aligned to AP_BREAKER_ALIGN, owned by
 *         the caller until fini
 * @bytes: the size of @buf (the excess is not touched)
 * @desc:  the configuration (copied, defaults resolved)
 *
 * Returns AP_OK or AP_INVAL: @desc NULL, a rate above 100 %, window_size
 * above 16384, min_calls above window_size (COUNT), buckets above 4096 or above
 * window_ns or not dividing it, probes above 1024, open_multiplier_pct
 * outside 100..10000, open_max_ns below open_ns, an unknown window kind,
 * a NULL, too small or misaligned buffer. On AP_INVAL *b and *buf are
 * untouched.
 * (Zero fields mean their defaults, so a zero window or K = 0 is the default.)
 */
AP_API AP_NODISCARD ap_status ap_breaker_init(ap_breaker *b, void *buf, size_t bytes,
                                         const ap_breaker_desc *desc);
/** ap_breaker_fini - end of life; frees nothing; a second fini or any later
 *  call but init trips AP_ASSERT */
AP_API void ap_breaker_fini(ap_breaker *b);
#ifndef AP_NO_MALLOC
/**
 * ap_breaker_create - allocate (once, through @alloc; NULL: libc) and init
 * Returns AP_OK, AP_INVAL (nothing allocated) or AP_NOMEM; *out untouched on failure.
 */
AP_API AP_NODISCARD ap_status ap_breaker_create(ap_breaker **out, const ap_breaker_desc *desc,
                                           const ap_allocator *alloc);
/** ap_breaker_destroy - fini (unless already finished) and free a breaker
 *  from ap_breaker_create */
AP_API void ap_breaker_destroy(ap_breaker *b);
#endif

/**
 * ap_breaker_allow - may a call go ahead at now_ns?
 * @permit:   on AP_OK, the permit to pass to ap_breaker_record
 * @retry_at: on AP_REJECTED (may be NULL): when the breaker may admit
 *            again: the end of the open time (OPEN), the earliest probe
 *            lease expiry (HALF_OPEN, K admitted this period), AP_DEADLINE_NONE
 *            (FORCED_OPEN)
 *
 * Returns AP_OK or AP_REJECTED. Concurrency: any thread; CLOSED and
 * DISABLED: one acquire load. Ordering: acquire on the state word.
 * On failure *permit is untouched.
 */
AP_API AP_NODISCARD ap_status ap_breaker_allow(ap_breaker *b, uint64_t now_ns, ap_breaker_permit *permit,
                                          uint64_t *retry_at);

/**
 * ap_breaker_record - report the outcome of a permitted call, and consume the permit
 * @permit:      from ap_breaker_allow on this breaker; on AP_OK it is marked
 *               consumed (gen = 0, probe = 0)
 * @outcome:     SUCCESS, FAILURE, IGNORED or CANCELED (see PATTERN)
 * @duration_ns: how long the call took (slow: >= slow_call_ns; SUCCESS and
 *               FAILURE only)
 *
 * Returns AP_OK (counted, possibly as stale) or AP_INVAL: an unknown
 * outcome, a consumed permit (reported already) or one never admitted
 * (gen 0), or a half-open probe whose slot is free (a copy of a permit
 * already reported); on AP_INVAL nothing changed, *permit included. A
 * permit of an older generation changes only the stale counter. In
 * HALF_OPEN, expired probe leases are applied first (so a probe reported
 * at or after its lease is stale). Reporting a copy of a permit that was
 * reported is the caller's error and is not detected in general.
 * Concurrency: any thread, but one record per permit; CLOSED (COUNT or
 * TIME window): lock-free.
 */
AP_API AP_NODISCARD ap_status ap_breaker_record(ap_breaker *b, ap_breaker_permit *permit,
                                           ap_breaker_outcome outcome, uint64_t duration_ns,
                                           uint64_t now_ns);

/** ap_breaker_state_at - the state at now_ns (applies due transitions, fires callbacks) */
AP_API ap_breaker_state ap_breaker_state_at(ap_breaker *b, uint64_t now_ns);
/** ap_breaker_generation - the current generation (snapshot; >= 1, +1 per transition) */
AP_API uint64_t ap_breaker_generation(ap_breaker *b);
/** ap_breaker_stats_get - the counters (snapshot) */
AP_API void ap_breaker_stats_get(ap_breaker *b, ap_breaker_stats *out);

/** ap_breaker_force_open - FORCED_OPEN (reject all) until reset; no-op if already */
AP_API void ap_breaker_force_open(ap_breaker *b);
/** ap_breaker_disable - DISABLED (admit all, evaluate nothing) until reset; no-op if already */
AP_API void ap_breaker_disable(ap_breaker *b);
/** ap_breaker_reset - back to CLOSED with an empty window and a new generation
 * (always a transition, also from CLOSED); the open duration starts over */
AP_API void ap_breaker_reset(ap_breaker *b);

/* ---- implementation ---- */

/*
 * ORDERING
 *   The state word (gen << 3 | state) is only written under the lock, with
 *   a release store, after everything that belongs to the new state (the
 *   cleared window, open_until, the probe table) has been written. Lock-free
 *   readers load it with acquire, so a recorder that sees generation g also
 *   sees the window cleared for g. The COUNT window: each record (1) adds
 *   its outcome to the aggregate word (CAS, only if the word's epoch is the
 *   permit's generation g; the record takes effect here, in g's window, or
 *   is stale if the epoch moved on), (2) takes a position of g's ring
 *   sequence (CAS on the epoch-tagged cursor, which every clear resets to
 *   (g, 0); if its epoch moved on, stop), (3) CASes its g-tagged outcome
 *   into the slot with acq_rel unless the slot holds a newer generation's
 *   tag (then stop), (4) subtracts the evicted outcome if it is tagged g
 *   and the aggregate's epoch is still g. Slot tags never decrease.
 *   Invariant: while the window of g is current, its totals equal the sum
 *   of g's outcomes whose add (1) landed minus those evicted-and-subtracted
 *   by (4); in a quiescent state that is exactly the g-tagged ring entries,
 *   the last min(n, window_size) of g's n outcomes. Why: an entry tagged g
 *   is in the totals from its add (it is written after it) until its
 *   evictor subtracts it; while g is current its evictor is a record of g
 *   (older records refuse the slot, newer ones cannot exist), and that
 *   evictor sees epoch g and subtracts. A record of g evicting an entry of
 *   an older generation subtracts nothing (that entry's add went to a
 *   window that is gone). A late record of an older generation f cannot
 *   touch g's window: its add fails (stale), or its add landed in f's
 *   window and then either (2) finds the cursor past f, or (3) finds a
 *   tag > f and stops, or it writes an f-tagged entry into a slot that g's
 *   sequence has not reached yet -- which g's record at that position
 *   evicts without a subtract, exactly as it would the slot's previous
 *   (older) entry; and its own subtract (4) needs epoch f. Such a record
 *   counts as an outcome of f (it took effect at its add), not as stale.
 *   The acq_rel slot CAS makes the evicted entry's add (1) happen-before
 *   our subtract (4), so in the aggregate's modification order every
 *   subtract follows its add: no field ever underflows and failures <=
 *   calls in every snapshot. Shortcut: if the aggregate (relaxed load, after the
 *   acquire of the state word) reads epoch g, window_size calls, no
 *   failure and no slow call, the ring holds window_size fast successes of
 *   g (each slot's add is counted until its evictor subtracts it), so a
 *   fast success evicting one of them changes nothing; the record takes
 *   effect at that load and skips (1)-(4) (the run of failures is still
 *   reset).
 *   The TIME window (bucket k = epoch = now / w, in slot k % buckets) has a
 *   word tnew = gen16 | newest epoch, and per bucket a key gen16 | reset
 *   flag | epoch and a count word seq8 | calls | failures | slow (one word:
 *   failures <= calls and slow <= calls in every read). Every clear (entry
 *   to CLOSED, g) writes tnew = (g, 0), every key = (g, clean, 0) and bumps
 *   every count word's seq by a CAS (release; before the state word). A
 *   record of g: (1) clamps: k = max(now / w, newest), raising tnew to k by
 *   CAS -- exactly the locked max; a tag other than g: stale, nothing
 *   changed. (2) brings slot k % buckets to epoch k: key epoch < k: CAS the
 *   key to (g, flag, k), then (anyone who sees the flag helps) CAS the
 *   count word to empty with seq + 1, then CAS the flag off (release).
 *   Key epoch > k: the bucket moved on, so newest >= that epoch by now
 *   (the mover raised tnew first, acq_rel): clamp again -- the record then
 *   lands in the newest bucket, as a locked record taken at this moment
 *   would. Key tag other than g: stale. (3) adds: reads the key (acquire,
 *   clean, (g, k)), the count word, the key again (unchanged), and CASes
 *   the count word. The seq makes that CAS fail if any emptying (a reset
 *   of this slot or a clear) came after the count read, so an add lands
 *   only in epoch k's counts of g: either before the slot's next reset
 *   (then it counted until that reset expired it, as epoch k would have
 *   expired anyway, since the slot's next epoch is >= k + buckets) or it
 *   retries. A record of an older generation adds to nothing of g's: its
 *   tags differ, and a count CAS from before the clear fails on seq. From
 *   its add the record has taken effect. (4) sums the buckets whose key is
 *   (g, clean) with an epoch in (K - buckets, K], K = tnew's epoch now,
 *   each read key / counts / same key (else it reads as empty); the sum is
 *   not a snapshot (single-threaded it is the locked sum exactly); if it
 *   (or the failure run) trips, ap__breaker_trip re-checks (CLOSED, g) under
 *   the lock. Counters are relaxed and striped; they order nothing.
 *   The breaker publishes no user memory: do not use a permit as a
 *   happens-before edge.
 */

#define AP__BREAKER_FREE UINT64_MAX
#define AP__BREAKER_EPOCH(g) (((g) & UINT64_C(0xffff)) << 48)
#define AP__BREAKER_EPOCH_MASK (UINT64_C(0xffff) << 48)
#define AP__BREAKER_F16(x, shift) (((x) >> (shift)) & UINT64_C(0xffff))
/* TIME window words */
#define AP__BREAKER_EP_MASK ((UINT64_C(1) << 47) - 1) /* epoch = now / bucket width */
#define AP__BREAKER_KFLAG (UINT64_C(1) << 47)         /* key: reset in progress */
#define AP__BREAKER_SEQ (UINT64_C(0xff) << 56)        /* cnt: reset sequence */
#define AP__BREAKER_MAX19 UINT64_C(0x7ffff)
#define AP__BREAKER_MAX18 UINT64_C(0x3ffff)
#define AP__BREAKER_C_CALLS(c) (((c) >> 37) & AP__BREAKER_MAX19)
#define AP__BREAKER_C_FAILS(c) (((c) >> 18) & AP__BREAKER_MAX19)
#define AP__BREAKER_C_SLOW(c) ((c) & AP__BREAKER_MAX18)
/* an empty count word with the next reset sequence number */
#define AP__BREAKER_C_BUMP(c) ((((c) & AP__BREAKER_SEQ) + (UINT64_C(1) << 56)) & AP__BREAKER_SEQ)

typedef struct ap__breaker_events {
    unsigned n;
    struct { ap_breaker_state from, to; uint64_t gen; } ev[4];
} ap__breaker_events;

AP_API ap_breaker_desc ap_breaker_desc_resolved(const ap_breaker_desc *desc)
{
    ap_breaker_desc d = *desc;
    if (d.window_size == 0) d.window_size = 100;
    if (d.window_ns == 0) d.window_ns = 10 * AP_NS_PER_SEC;
    if (d.buckets == 0) d.buckets = 10;
    if (d.min_calls == 0)
        d.min_calls = d.window == AP_BREAKER_WINDOW_COUNT ? d.window_size : 100;
    if (d.failure_rate_pct == 0) d.failure_rate_pct = 50;
    if (d.slow_rate_pct == 0) d.slow_rate_pct = 100;
    if (d.slow_call_ns == 0) d.slow_call_ns = 60 * AP_NS_PER_SEC;
    if (d.open_ns == 0) d.open_ns = 60 * AP_NS_PER_SEC;
    if (d.open_multiplier_pct == 0) d.open_multiplier_pct = 100;
    if (d.open_max_ns == 0)
        d.open_max_ns = d.open_ns > UINT64_MAX / 16 ? UINT64_MAX : 16 * d.open_ns;
    if (d.half_open_probes == 0) d.half_open_probes = 10;
    if (d.probe_lease_ns == 0) d.probe_lease_ns = 60 * AP_NS_PER_SEC;
    return d;
}

/* Bytes for a resolved desc, 0 if it is invalid. */
AP_API size_t ap__breaker_bytes_resolved(const ap_breaker_desc *d)
{
    if (d->failure_rate_pct > 100 || d->slow_rate_pct > 100 ||
        d->half_open_probes > AP_BREAKER_MAX_PROBES || d->open_multiplier_pct < 100 ||
        d->open_multiplier_pct > 10000 || d->open_max_ns < d->open_ns)
        return 0;
    size_t probes = (size_t)d->half_open_probes * sizeof(uint64_t);
    if (d->window == AP_BREAKER_WINDOW_COUNT) {
        if (d->window_size > AP_BREAKER_MAX_WINDOW || d->min_calls > d->window_size)
            return 0;
        return (size_t)d->window_size * sizeof(uint64_t) + probes;
    }
    if (d->window == AP_BREAKER_WINDOW_TIME) {
        if (d->buckets > AP_BREAKER_MAX_BUCKETS || d->buckets > d->window_ns ||
            d->window_ns % d->buckets != 0)
            return 0;
        return (size_t)d->buckets * sizeof(ap__breaker_bucket) + probes; /* <= AP_BREAKER_BYTES */
    }
    return 0;
}

AP_API size_t ap_breaker_bytes(const ap_breaker_desc *desc)
{
    ap_breaker_desc d = ap_breaker_desc_resolved(desc);
    return ap__breaker_bytes_resolved(&d);
}

/* Clear the window for generation g (under lock, or at init). */
AP_API void ap__breaker_clear_window(ap_breaker *b, uint64_t g)
{
    if (b->desc.window == AP_BREAKER_WINDOW_TIME) {
        const uint64_t G = AP__BREAKER_EPOCH(g);
        /* relaxed: published by the state word's release store; a stale
         * writer's CAS on tnew or a key fails on the generation tag. */
        AP_ATOMIC_STORE(&b->tnew, G, memory_order_relaxed);
        for (uint32_t i = 0; i < b->desc.buckets; i++) {
            ap__breaker_bucket *bk = &b->bkt[i];
            /* key (g, clean, epoch 0) with empty counts: an empty bucket */
            AP_ATOMIC_STORE(&bk->key, G, memory_order_relaxed);
            /* a CAS that bumps the sequence (never a plain store: a stale
             * adder holding any earlier value must fail); release: an
             * adder that reads this value also reads the new key. */
            uint64_t c = AP_ATOMIC_LOAD(&bk->cnt, memory_order_relaxed);
            while (!AP_ATOMIC_CAS_WEAK(&bk->cnt, &c, AP__BREAKER_C_BUMP(c), memory_order_release,
                                       memory_order_relaxed)) {
            }
        }
    }
    /* relaxed: published by the release store of the state word that
     * follows (ap__breaker_set); a recorder of g acquires that word first. */
    AP_ATOMIC_STORE(&b->agg, AP__BREAKER_EPOCH(g), memory_order_relaxed);
    AP_ATOMIC_STORE(&b->consec, AP__BREAKER_EPOCH(g), memory_order_relaxed);
    /* the ring is not cleared: a slot tagged below g reads as empty */
    AP_ATOMIC_STORE(&b->cursor, AP__BREAKER_EPOCH(g), memory_order_relaxed);
}

AP_API AP_NODISCARD ap_status ap_breaker_init(ap_breaker *b, void *buf, size_t bytes,
                                         const ap_breaker_desc *desc)
{
    AP_ASSERT(b != NULL);
    if (desc == NULL)
        return AP_INVAL;
    ap_breaker_desc d = ap_breaker_desc_resolved(desc);
    size_t need = ap__breaker_bytes_resolved(&d);
    /* every check before the first write: AP_INVAL touches nothing */
    if (need == 0 || buf == NULL || bytes < need || (uintptr_t)buf % AP_BREAKER_ALIGN != 0)
        return AP_INVAL;
    memset((void *)b, 0, sizeof *b);
    b->desc = d;
    char *p = (char *)buf;
    if (d.window == AP_BREAKER_WINDOW_COUNT) {
        b->slots = (AP_ATOMIC_T(uint64_t) *)(void *)p;
        for (uint32_t i = 0; i < d.window_size; i++)
            AP_ATOMIC_INIT(&b->slots[i], 0);
        p += (size_t)d.window_size * sizeof(uint64_t);
    } else {
        b->bkt = (ap__breaker_bucket *)(void *)p;
        b->bkt_w = d.window_ns / d.buckets;
        for (uint32_t i = 0; i < d.buckets; i++) {
            AP_ATOMIC_INIT(&b->bkt[i].key, 0);
            AP_ATOMIC_INIT(&b->bkt[i].cnt, 0);
        }
        p += (size_t)d.buckets * sizeof(ap__breaker_bucket);
    }
    b->admit = (uint64_t *)(void *)p;
    for (uint32_t i = 0; i < d.half_open_probes; i++)
        b->admit[i] = AP__BREAKER_FREE;
    AP_ATOMIC_INIT(&b->state, (uint64_t)1 << 3 | AP_BREAKER_STATE_CLOSED);
    AP_ATOMIC_INIT(&b->open_until, 0);
    AP_ATOMIC_INIT(&b->agg, 0);
    AP_ATOMIC_INIT(&b->consec, 0);
    AP_ATOMIC_INIT(&b->cursor, 0);
    AP_ATOMIC_INIT(&b->tnew, 0);
    AP_ATOMIC_INIT(&b->lock.held, 0);
    AP_ATOMIC_INIT(&b->transitions, 0);
    AP_ATOMIC_INIT(&b->lease_expired, 0);
    for (unsigned i = 0; i < AP_BREAKER_STRIPES; i++) {
        ap__breaker_stripe *s = &b->stripe[i];
        AP_ATOMIC_INIT(&s->allowed, 0); AP_ATOMIC_INIT(&s->rejected, 0);
        AP_ATOMIC_INIT(&s->successes, 0); AP_ATOMIC_INIT(&s->failures, 0);
        AP_ATOMIC_INIT(&s->ignored, 0); AP_ATOMIC_INIT(&s->canceled, 0);
        AP_ATOMIC_INIT(&s->slow, 0);
        AP_ATOMIC_INIT(&s->stale, 0);
    }
    b->cur_open = d.open_ns;
    ap__breaker_clear_window(b, 1);
    return AP_OK;
}

/* The state field after fini: no ap_breaker_state has it, so every path
 * that reads the state can tell a finished breaker. */
#define AP__BREAKER_DEAD 7u

AP_API void ap_breaker_fini(ap_breaker *b)
{
    AP_ASSERT(b != NULL);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    AP_ASSERT((s & 7u) != AP__BREAKER_DEAD); /* fini once */
    AP_ATOMIC_STORE(&b->state, (s & ~(uint64_t)7) | AP__BREAKER_DEAD, memory_order_relaxed);
}

#ifndef AP_NO_MALLOC
AP_API AP_NODISCARD ap_status ap_breaker_create(ap_breaker **out, const ap_breaker_desc *desc,
                                           const ap_allocator *alloc)
{
    AP_ASSERT(out != NULL && desc != NULL);
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t need = ap_breaker_bytes(desc), head = ap__align_up(sizeof(ap_breaker), AP_CACHELINE);
    if (a == NULL || need == 0 || head == 0 || need > SIZE_MAX - head)
        return AP_INVAL;
    void *mem = a->alloc(head + need, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_breaker *b = (ap_breaker *)mem;
    if (ap_breaker_init(b, (char *)mem + head, need, desc) != AP_OK) {
        a->free(mem, head + need, a->user);
        return AP_INVAL;
    }
    b->alloc = a;
    b->alloc_size = head + need;
    *out = b;
    return AP_OK;
}

AP_API void ap_breaker_destroy(ap_breaker *b)
{
    if (b == NULL)
        return;
    AP_ASSERT(b->alloc != NULL);
    const ap_allocator *a = b->alloc;
    if ((AP_ATOMIC_LOAD(&b->state, memory_order_relaxed) & 7u) != AP__BREAKER_DEAD)
        ap_breaker_fini(b); /* fini may have run already */
    a->free(b, b->alloc_size, a->user);
}
#endif

/* A counter stripe for the calling thread: a hash of a stack address (no
 * TLS). Only spreads contention; any stripe is correct. */
AP_FORCE_INLINE ap__breaker_stripe *ap__breaker_my_stripe(ap_breaker *b)
{
    char probe;
    uintptr_t x = (uintptr_t)&probe >> 14;
    x *= (uintptr_t)UINT64_C(0x9E3779B97F4A7C15);
    return &b->stripe[(x >> (sizeof(uintptr_t) * 8 - 3)) & (AP_BREAKER_STRIPES - 1)];
}

#define AP__BREAKER_COUNT(b, field) \
    ((void)AP_ATOMIC_FETCH_ADD(&ap__breaker_my_stripe(b)->field, 1u, memory_order_relaxed))

AP_API void ap__breaker_fire(ap_breaker *b, const ap__breaker_events *ev)
{
    if (b->desc.on_change == NULL)
        return;
    for (unsigned i = 0; i < ev->n; i++)
        b->desc.on_change(b->desc.ctx, ev->ev[i].from, ev->ev[i].to, ev->ev[i].gen);
}

/* Transition to @to (under lock). */
AP_API void ap__breaker_set(ap_breaker *b, ap_breaker_state to, uint64_t now, ap__breaker_events *ev)
{
    /* relaxed: the state word is only written under the lock we hold */
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    ap_breaker_state from = (ap_breaker_state)(s & 7u);
    uint64_t g = (s >> 3) + 1;
    switch (to) {
    case AP_BREAKER_STATE_OPEN:
        if (from == AP_BREAKER_STATE_HALF_OPEN) {
            uint64_t m = b->desc.open_multiplier_pct, c = b->cur_open;
            c = c > UINT64_MAX / m ? UINT64_MAX : c * m / 100;
            b->cur_open = c < b->desc.open_max_ns ? c : b->desc.open_max_ns;
        } else {
            b->cur_open = b->desc.open_ns;
        }
        /* relaxed: published by the release store below */
        AP_ATOMIC_STORE(&b->open_until, ap_deadline_after(now, b->cur_open), memory_order_relaxed);
        break;
    case AP_BREAKER_STATE_HALF_OPEN:
        b->inflight = b->succ = b->admitted = 0;
        for (uint32_t i = 0; i < b->desc.half_open_probes; i++)
            b->admit[i] = AP__BREAKER_FREE;
        break;
    case AP_BREAKER_STATE_CLOSED:
        ap__breaker_clear_window(b, g);
        b->cur_open = b->desc.open_ns;
        break;
    default:
        break;
    }
    AP_ATOMIC_FETCH_ADD(&b->transitions, 1u, memory_order_relaxed);
    AP_TEST_YIELD();
    /* release: pairs with the acquire loads of the state word in allow and
     * record; publishes the cleared window and open_until of generation g. */
    AP_ATOMIC_STORE(&b->state, g << 3 | (uint64_t)to, memory_order_release);
    if (ev->n < 4) {
        ev->ev[ev->n].from = from;
        ev->ev[ev->n].to = to;
        ev->ev[ev->n].gen = g;
        ev->n++;
    }
}

/* Apply the transitions due at @now (under lock). */
AP_API void ap__breaker_advance(ap_breaker *b, uint64_t now, ap__breaker_events *ev)
{
    for (;;) {
        uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
        ap_breaker_state st = (ap_breaker_state)(s & 7u);
        if (st == AP_BREAKER_STATE_OPEN &&
            now >= AP_ATOMIC_LOAD(&b->open_until, memory_order_relaxed)) {
            ap__breaker_set(b, AP_BREAKER_STATE_HALF_OPEN, now, ev);
            continue;
        }
        if (st == AP_BREAKER_STATE_HALF_OPEN) {
            for (uint32_t i = 0; i < b->desc.half_open_probes; i++)
                if (b->admit[i] != AP__BREAKER_FREE &&
                    now >= ap_deadline_after(b->admit[i], b->desc.probe_lease_ns)) {
                    AP_ATOMIC_FETCH_ADD(&b->lease_expired, 1u, memory_order_relaxed);
                    ap__breaker_set(b, AP_BREAKER_STATE_OPEN, now, ev);
                    break;
                }
        }
        return;
    }
}

/* Earliest lease expiry of the probes in flight (under lock). */
AP_API uint64_t ap__breaker_next_expiry(const ap_breaker *b)
{
    uint64_t t = AP_DEADLINE_NONE;
    for (uint32_t i = 0; i < b->desc.half_open_probes; i++)
        if (b->admit[i] != AP__BREAKER_FREE)
            t = ap_time_min(t, ap_deadline_after(b->admit[i], b->desc.probe_lease_ns));
    return t;
}

AP_API ap_status ap__breaker_allow_slow(ap_breaker *b, uint64_t now, ap_breaker_permit *permit,
                                   uint64_t *retry_at)
{
    ap__breaker_events ev = AP__ZERO;
    ap_status st = AP_REJECTED;
    uint64_t ra = AP_DEADLINE_NONE;
    ap__lock_acquire(&b->lock);
    ap__breaker_advance(b, now, &ev);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    switch ((ap_breaker_state)(s & 7u)) {
    case AP_BREAKER_STATE_CLOSED:
    case AP_BREAKER_STATE_DISABLED:
        permit->gen = s >> 3;
        permit->probe = 0;
        st = AP_OK;
        break;
    case AP_BREAKER_STATE_OPEN:
        ra = AP_ATOMIC_LOAD(&b->open_until, memory_order_relaxed);
        break;
    case AP_BREAKER_STATE_HALF_OPEN:
        /* at most K admitted per period (an IGNORED probe frees its slot
         * but not its admission); inflight <= admitted < K, so a free
         * slot exists */
        if (b->admitted < b->desc.half_open_probes) {
            uint32_t i = 0;
            while (b->admit[i] != AP__BREAKER_FREE)
                i++;
            /* UINT64_MAX marks a free slot: a probe admitted at that
             * instant is stamped one ns earlier (its lease, saturating at
             * UINT64_MAX, ends at the same time either way). */
            b->admit[i] = now == AP__BREAKER_FREE ? now - 1 : now;
            b->inflight++;
            b->admitted++;
            permit->gen = s >> 3;
            permit->probe = i + 1;
            st = AP_OK;
        } else {
            ra = ap__breaker_next_expiry(b);
        }
        break;
    case AP_BREAKER_STATE_FORCED_OPEN:
        break;
    }
    ap__lock_release(&b->lock);
    if (st == AP_OK)
        AP__BREAKER_COUNT(b, allowed);
    else {
        AP__BREAKER_COUNT(b, rejected);
        if (retry_at)
            *retry_at = ra;
    }
    ap__breaker_fire(b, &ev);
    return st;
}

AP_API AP_NODISCARD ap_status ap_breaker_allow(ap_breaker *b, uint64_t now_ns, ap_breaker_permit *permit,
                                          uint64_t *retry_at)
{
    AP_ASSERT(b != NULL && permit != NULL);
    /* acquire: pairs with the release store in ap__breaker_set (open_until). */
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_acquire);
    ap_breaker_state st = (ap_breaker_state)(s & 7u);
    if (AP_LIKELY(st == AP_BREAKER_STATE_CLOSED || st == AP_BREAKER_STATE_DISABLED)) {
        permit->gen = s >> 3;
        permit->probe = 0;
        AP__BREAKER_COUNT(b, allowed);
        return AP_OK;
    }
    AP_ASSERT((unsigned)st != AP__BREAKER_DEAD); /* use after fini */
    if (st == AP_BREAKER_STATE_OPEN || st == AP_BREAKER_STATE_FORCED_OPEN) {
        /* relaxed: after the acquire above it is the open_until of this
         * OPEN period or of a later one; either rejection is one the
         * breaker gives at some instant of this call. */
        uint64_t until = st == AP_BREAKER_STATE_FORCED_OPEN
                             ? AP_DEADLINE_NONE
                             : AP_ATOMIC_LOAD(&b->open_until, memory_order_relaxed);
        if (now_ns < until) {
            AP__BREAKER_COUNT(b, rejected);
            if (retry_at)
                *retry_at = until;
            return AP_REJECTED;
        }
    }
    return ap__breaker_allow_slow(b, now_ns, permit, retry_at);
}

/* Does this window snapshot trip? */
AP_FORCE_INLINE bool ap__breaker_rates_trip(const ap_breaker_desc *d, uint64_t calls,
                                       uint64_t fails, uint64_t slow)
{
    return calls >= d->min_calls && calls > 0 &&
           (fails * 100 >= (uint64_t)d->failure_rate_pct * calls ||
            slow * 100 >= (uint64_t)d->slow_rate_pct * calls);
}

/* CLOSED -> OPEN if the breaker is still (CLOSED, g). */
AP_API void ap__breaker_trip(ap_breaker *b, uint64_t g, uint64_t now)
{
    ap__breaker_events ev = AP__ZERO;
    ap__lock_acquire(&b->lock);
    if (AP_ATOMIC_LOAD(&b->state, memory_order_relaxed) == (g << 3 | AP_BREAKER_STATE_CLOSED))
        ap__breaker_set(b, AP_BREAKER_STATE_OPEN, now, &ev);
    ap__lock_release(&b->lock);
    ap__breaker_fire(b, &ev);
}

/* Update the consecutive-failure run for generation g; returns the run
 * (0 when the run no longer belongs to g). */
AP_FORCE_INLINE uint64_t ap__breaker_consec(ap_breaker *b, uint64_t g, bool fail)
{
    uint64_t ep = AP__BREAKER_EPOCH(g);
    uint64_t c = AP_ATOMIC_LOAD(&b->consec, memory_order_relaxed);
    for (;;) {
        if ((c & AP__BREAKER_EPOCH_MASK) != ep)
            return 0;
        uint64_t n = fail ? c + 1 : ep;
        if (n == c)
            return 0;
        /* relaxed: a counter; ordered against the window clear by the
         * epoch check (the clear is published by the state word). */
        if (AP_ATOMIC_CAS_WEAK(&b->consec, &c, n, memory_order_relaxed, memory_order_relaxed))
            return n & ~AP__BREAKER_EPOCH_MASK;
    }
}

/* COUNT window record of generation g; false if the window moved on. */
AP_API bool ap__breaker_count_record(ap_breaker *b, uint64_t g, bool fail, bool slow, uint64_t now)
{
    const uint64_t ep = AP__BREAKER_EPOCH(g);
    const uint64_t add = (UINT64_C(1) << 32) | ((uint64_t)fail << 16) | (uint64_t)slow;
    uint64_t a = AP_ATOMIC_LOAD(&b->agg, memory_order_relaxed);
    /* (0) a full window of epoch g with no failure and no slow call holds
     * window_size fast successes of g; one more evicts one of them and
     * leaves the window exactly as it is (every slot alike, so the ring
     * cursor does not matter), and such a window cannot trip. Nothing to
     * write: the record takes effect at this load. */
    if (!fail && !slow && a == (ep | (uint64_t)b->desc.window_size << 32)) {
        if (b->desc.consecutive_failures)
            (void)ap__breaker_consec(b, g, false); /* a load when the run is 0 already */
        return true;
    }
    /* (1) add our outcome to the aggregate of epoch g */
    do {
        if ((a & AP__BREAKER_EPOCH_MASK) != ep)
            return false;
        /* relaxed: the add is ordered before our slot exchange (3) by
         * program order, and that exchange is a release. */
    } while (!AP_ATOMIC_CAS_WEAK(&b->agg, &a, a + add, memory_order_relaxed,
                                 memory_order_relaxed));
    a += add;
    AP_TEST_YIELD();
    /* From here on the record has taken effect (at its add, in the window
     * of g). If that window is gone before the ring write, the write is
     * skipped: the ring then belongs to a newer window, which it must not
     * touch. */
    /* (2) claim a position of g's ring sequence (epoch-tagged cursor, reset
     * to position 0 with every clear), so that a late record of g never
     * takes a position that belongs to a newer window */
    uint64_t cur = AP_ATOMIC_LOAD(&b->cursor, memory_order_relaxed);
    do {
        if ((cur & AP__BREAKER_EPOCH_MASK) != ep)
            return true; /* counted in a window that is gone */
        /* relaxed: only the position matters; slot contents are ordered
         * by the slot CAS (3) */
    } while (!AP_ATOMIC_CAS_WEAK(&b->cursor, &cur, cur + 1u, memory_order_relaxed,
                                 memory_order_relaxed));
    uint64_t idx = (cur & ~AP__BREAKER_EPOCH_MASK) % b->desc.window_size;
    AP_TEST_YIELD();
    const uint32_t tag32 = (uint32_t)g;
    const uint64_t ent = (uint64_t)tag32 << 3 | (uint64_t)slow << 2 | (uint64_t)fail << 1 | 1u;
    /* (3) put our entry into the slot unless the slot holds a newer
     * generation's entry (slot tags never decrease). acq_rel: release
     * publishes our add (1) to whoever evicts this entry; acquire makes
     * the evicted entry's add happen-before our subtract (4), so the
     * subtract follows it in agg's modification order. */
    uint64_t old = AP_ATOMIC_LOAD(&b->slots[idx], memory_order_acquire);
    do {
        if ((old & 1u) && (int32_t)((uint32_t)(old >> 3) - tag32) > 0)
            return true; /* a newer window owns the slot: ours is gone */
    } while (!AP_ATOMIC_CAS_WEAK(&b->slots[idx], &old, ent, memory_order_acq_rel,
                                 memory_order_acquire));
    AP_TEST_YIELD();
    if ((old & 1u) && (uint32_t)(old >> 3) == tag32) {
        /* (4) subtract the evicted outcome of g, if the window is still g's */
        uint64_t sub = (UINT64_C(1) << 32) | ((old >> 1) & 1u) << 16 | ((old >> 2) & 1u);
        a = AP_ATOMIC_LOAD(&b->agg, memory_order_relaxed);
        do {
            if ((a & AP__BREAKER_EPOCH_MASK) != ep)
                return true; /* counted in a window that is gone */
        } while (!AP_ATOMIC_CAS_WEAK(&b->agg, &a, a - sub, memory_order_relaxed,
                                     memory_order_relaxed));
        a -= sub;
    }
    bool trip = ap__breaker_rates_trip(&b->desc, AP__BREAKER_F16(a, 32), AP__BREAKER_F16(a, 16),
                                  AP__BREAKER_F16(a, 0));
    if (b->desc.consecutive_failures) {
        uint64_t run = ap__breaker_consec(b, g, fail);
        trip = trip || run >= b->desc.consecutive_failures;
    }
    if (AP_UNLIKELY(trip))
        ap__breaker_trip(b, g, now);
    return true;
}

/* TIME window: finish the reset of @bk that set key @kf (flag set): empty
 * the counts (bumping the sequence), then clear the flag. Any thread that
 * finds the flag helps; extra bumps are harmless (no add can land while
 * the flag is set). */
AP_API void ap__breaker_bucket_help(ap__breaker_bucket *bk, uint64_t kf)
{
    uint64_t c = AP_ATOMIC_LOAD(&bk->cnt, memory_order_acquire);
    for (;;) {
        /* acquire: an add that c already holds happened after the flag
         * was cleared, so this load then sees the flag cleared */
        if (AP_ATOMIC_LOAD(&bk->key, memory_order_acquire) != kf)
            return; /* finished (or moved on) by someone else */
        if (AP_ATOMIC_CAS_WEAK(&bk->cnt, &c, AP__BREAKER_C_BUMP(c), memory_order_acq_rel,
                               memory_order_acquire))
            break;
    }
    uint64_t x = kf;
    /* release: an adder that sees the key clean sees the emptied counts */
    (void)AP_ATOMIC_CAS_STRONG(&bk->key, &x, kf & ~AP__BREAKER_KFLAG, memory_order_release,
                               memory_order_relaxed);
}

AP_FORCE_INLINE uint64_t ap__breaker_cnt_add(uint64_t c, bool fail, bool slow)
{
    uint64_t n = AP__BREAKER_C_CALLS(c), f = AP__BREAKER_C_FAILS(c), s = AP__BREAKER_C_SLOW(c);
    /* saturating; failures <= calls and slow <= calls still hold */
    n += n < AP__BREAKER_MAX19;
    f += fail && f < AP__BREAKER_MAX19;
    s += slow && s < AP__BREAKER_MAX18;
    return (c & AP__BREAKER_SEQ) | n << 37 | f << 18 | s;
}

/* TIME window record of generation g, lock-free (the state word read
 * (CLOSED, g)). Returns 0: stale (the window of g is gone; nothing
 * changed), 1: counted, 2: counted and the window trips. */
AP_API int ap__breaker_time_record(ap_breaker *b, uint64_t g, bool fail, bool slow, uint64_t now)
{
    const uint64_t G = AP__BREAKER_EPOCH(g);
    const uint32_t nb = b->desc.buckets;
    uint64_t k0 = now / b->bkt_w, k, key;
    if (k0 > AP__BREAKER_EP_MASK)
        k0 = AP__BREAKER_EP_MASK; /* beyond the epoch range: the last epoch */
    ap__breaker_bucket *bk;
    /* acquire: pairs with the acq_rel raise of tnew by the writer that
     * moved a bucket to a newer epoch, so a re-clamp sees that epoch */
    uint64_t t = AP_ATOMIC_LOAD(&b->tnew, memory_order_acquire);
clamp:
    /* (1) clamp: k = max(now / w, newest); raise newest to k */
    for (;;) {
        if ((t & AP__BREAKER_EPOCH_MASK) != G)
            return 0; /* a newer generation's window */
        k = t & AP__BREAKER_EP_MASK;
        if (k0 <= k)
            break;
        if (AP_ATOMIC_CAS_WEAK(&b->tnew, &t, G | k0, memory_order_acq_rel,
                               memory_order_acquire)) {
            k = k0;
            break;
        }
    }
    AP_TEST_YIELD();
    /* (2) bring bucket k % nb to epoch k, (3) add our outcome to it */
    bk = &b->bkt[k % nb];
    key = AP_ATOMIC_LOAD(&bk->key, memory_order_acquire);
    for (;;) {
        if ((key & AP__BREAKER_EPOCH_MASK) != G)
            return 0;
        uint64_t e = key & AP__BREAKER_EP_MASK;
        if (e > k) {
            /* the bucket moved past k (k expired): newest >= e by now;
             * clamp again, as the locked record taken here would */
            t = AP_ATOMIC_LOAD(&b->tnew, memory_order_acquire);
            goto clamp;
        }
        if (key & AP__BREAKER_KFLAG) {
            ap__breaker_bucket_help(bk, key);
            key = AP_ATOMIC_LOAD(&bk->key, memory_order_acquire);
            continue;
        }
        if (e < k) {
            /* move the bucket from epoch e to k: flag, then empty */
            if (AP_ATOMIC_CAS_WEAK(&bk->key, &key, G | AP__BREAKER_KFLAG | k, memory_order_acq_rel,
                                   memory_order_acquire)) {
                key = G | AP__BREAKER_KFLAG | k;
                AP_TEST_YIELD();
            }
            continue;
        }
        /* key (g, clean, k) was read with acquire: the emptying for epoch
         * k is visible. Read the counts, then check the key again: if it
         * is unchanged, c belongs to epoch k, and the CAS below succeeds
         * only if no later emptying (which bumps the sequence) came
         * between. */
        uint64_t c = AP_ATOMIC_LOAD(&bk->cnt, memory_order_acquire);
        uint64_t kb = AP_ATOMIC_LOAD(&bk->key, memory_order_acquire);
        if (kb != key) {
            key = kb;
            continue;
        }
        if (AP_ATOMIC_CAS_STRONG(&bk->cnt, &c, ap__breaker_cnt_add(c, fail, slow),
                                 memory_order_acq_rel, memory_order_relaxed))
            break;
        key = AP_ATOMIC_LOAD(&bk->key, memory_order_acquire);
    }
    AP_TEST_YIELD();
    /* The record took effect at its add, in bucket k of g's window. (4)
     * the rates over the buckets whose epoch lies in (K - nb, K], K the
     * newest epoch now; each bucket read consistently (key, counts, key),
     * the sum not a snapshot. A bucket being reset reads as empty. */
    uint64_t calls = 0, fails = 0, slows = 0;
    uint64_t K = AP_ATOMIC_LOAD(&b->tnew, memory_order_acquire);
    if ((K & AP__BREAKER_EPOCH_MASK) == G) {
        K &= AP__BREAKER_EP_MASK;
        for (uint32_t i = 0; i < nb; i++) {
            const ap__breaker_bucket *x = &b->bkt[i];
            uint64_t ka = AP_ATOMIC_LOAD(&x->key, memory_order_acquire);
            uint64_t e = ka & AP__BREAKER_EP_MASK;
            if ((ka & (AP__BREAKER_EPOCH_MASK | AP__BREAKER_KFLAG)) != G || e > K || e + nb <= K)
                continue;
            uint64_t c = AP_ATOMIC_LOAD(&x->cnt, memory_order_acquire);
            if (AP_ATOMIC_LOAD(&x->key, memory_order_relaxed) != ka)
                continue;
            calls += AP__BREAKER_C_CALLS(c);
            fails += AP__BREAKER_C_FAILS(c);
            slows += AP__BREAKER_C_SLOW(c);
        }
    }
    bool trip = ap__breaker_rates_trip(&b->desc, calls, fails, slows);
    if (b->desc.consecutive_failures) {
        uint64_t run = ap__breaker_consec(b, g, fail);
        trip = trip || run >= b->desc.consecutive_failures;
    }
    return trip ? 2 : 1;
}

AP_API void ap__breaker_count_outcome(ap_breaker *b, ap_breaker_outcome o, bool slow)
{
    if (o == AP_BREAKER_OUTCOME_SUCCESS)
        AP__BREAKER_COUNT(b, successes);
    else if (o == AP_BREAKER_OUTCOME_FAILURE)
        AP__BREAKER_COUNT(b, failures);
    else if (o == AP_BREAKER_OUTCOME_IGNORED)
        AP__BREAKER_COUNT(b, ignored);
    else
        AP__BREAKER_COUNT(b, canceled);
    if (slow && (o == AP_BREAKER_OUTCOME_SUCCESS || o == AP_BREAKER_OUTCOME_FAILURE))
        AP__BREAKER_COUNT(b, slow);
}

/* Returns AP_OK, or AP_INVAL (nothing changed) for a half-open probe
 * whose slot is free: a copy of a permit that was reported already. */
AP_API ap_status ap__breaker_record_slow(ap_breaker *b, const ap_breaker_permit *permit,
                                    ap_breaker_outcome outcome, bool slow, uint64_t now)
{
    ap__breaker_events ev = AP__ZERO;
    bool stale = false;
    ap__lock_acquire(&b->lock);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    if (s == (permit->gen << 3 | AP_BREAKER_STATE_HALF_OPEN) &&
        (permit->probe < 1 || permit->probe > b->desc.half_open_probes ||
         b->admit[permit->probe - 1] == AP__BREAKER_FREE)) {
        ap__lock_release(&b->lock);
        return AP_INVAL; /* checked before advancing: nothing changes */
    }
    ap__breaker_advance(b, now, &ev);
    s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    if ((s >> 3) != permit->gen) {
        stale = true;
    } else {
        switch ((ap_breaker_state)(s & 7u)) {
        case AP_BREAKER_STATE_CLOSED: /* not reached: ap_breaker_record handles CLOSED */
            if ((outcome == AP_BREAKER_OUTCOME_SUCCESS || outcome == AP_BREAKER_OUTCOME_FAILURE) &&
                b->desc.window == AP_BREAKER_WINDOW_TIME) {
                int r = ap__breaker_time_record(b, permit->gen,
                                           outcome == AP_BREAKER_OUTCOME_FAILURE, slow, now);
                stale = r == 0;
                if (r == 2)
                    ap__breaker_set(b, AP_BREAKER_STATE_OPEN, now, &ev);
            }
            break;
        case AP_BREAKER_STATE_HALF_OPEN: {
            AP_ASSERT(permit->probe >= 1 && permit->probe <= b->desc.half_open_probes &&
                      b->admit[permit->probe - 1] != AP__BREAKER_FREE);
            b->admit[permit->probe - 1] = AP__BREAKER_FREE;
            b->inflight--;
            if (outcome == AP_BREAKER_OUTCOME_FAILURE ||
                (slow && outcome == AP_BREAKER_OUTCOME_SUCCESS))
                ap__breaker_set(b, AP_BREAKER_STATE_OPEN, now, &ev);
            else if (outcome == AP_BREAKER_OUTCOME_SUCCESS &&
                     ++b->succ >= b->desc.half_open_probes)
                ap__breaker_set(b, AP_BREAKER_STATE_CLOSED, now, &ev);
            else if (b->inflight == 0 && b->admitted == b->desc.half_open_probes)
                /* all K reported, no failure, < K successes (some IGNORED
                 * or CANCELED): inconclusive; a new half-open period with
                 * a fresh batch */
                ap__breaker_set(b, AP_BREAKER_STATE_HALF_OPEN, now, &ev);
            break;
        }
        default: /* DISABLED is handled lock-free; OPEN/FORCED issue no permits */
            break;
        }
    }
    ap__lock_release(&b->lock);
    if (stale)
        AP__BREAKER_COUNT(b, stale);
    else
        ap__breaker_count_outcome(b, outcome, slow);
    ap__breaker_fire(b, &ev);
    return AP_OK;
}

/* Mark @permit reported: gen 0 is no generation (they start at 1). */
AP_FORCE_INLINE void ap__breaker_consume(ap_breaker_permit *permit)
{
    permit->gen = 0;
    permit->probe = 0;
}

AP_API AP_NODISCARD ap_status ap_breaker_record(ap_breaker *b, ap_breaker_permit *permit,
                                           ap_breaker_outcome outcome, uint64_t duration_ns,
                                           uint64_t now_ns)
{
    AP_ASSERT(b != NULL && permit != NULL);
    if ((unsigned)outcome > (unsigned)AP_BREAKER_OUTCOME_CANCELED || permit->gen == 0)
        return AP_INVAL; /* a bad outcome, or a permit reported already */
    bool slow = duration_ns >= b->desc.slow_call_ns;
    /* acquire: pairs with the release store in ap__breaker_set, so a window
     * cleared for this generation is seen cleared. */
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_acquire);
    if ((s >> 3) != permit->gen) {
        AP__BREAKER_COUNT(b, stale); /* generations only grow: stale for good */
        ap__breaker_consume(permit);
        return AP_OK;
    }
    ap_breaker_state st = (ap_breaker_state)(s & 7u);
    AP_TEST_YIELD();
    if (st == AP_BREAKER_STATE_DISABLED) {
        ap__breaker_count_outcome(b, outcome, slow);
        ap__breaker_consume(permit);
        return AP_OK;
    }
    if (st == AP_BREAKER_STATE_CLOSED) {
        bool fail = outcome == AP_BREAKER_OUTCOME_FAILURE, counted = true;
        if (outcome == AP_BREAKER_OUTCOME_IGNORED || outcome == AP_BREAKER_OUTCOME_CANCELED)
            ; /* touches no window */
        else if (b->desc.window == AP_BREAKER_WINDOW_COUNT)
            counted = ap__breaker_count_record(b, permit->gen, fail, slow, now_ns);
        else {
            int r = ap__breaker_time_record(b, permit->gen, fail, slow, now_ns);
            counted = r != 0;
            if (AP_UNLIKELY(r == 2))
                ap__breaker_trip(b, permit->gen, now_ns);
        }
        if (counted)
            ap__breaker_count_outcome(b, outcome, slow);
        else
            AP__BREAKER_COUNT(b, stale);
        ap__breaker_consume(permit);
        return AP_OK;
    }
    if (ap__breaker_record_slow(b, permit, outcome, slow, now_ns) != AP_OK)
        return AP_INVAL;
    ap__breaker_consume(permit);
    return AP_OK;
}

AP_API ap_breaker_state ap_breaker_state_at(ap_breaker *b, uint64_t now_ns)
{
    AP_ASSERT(b != NULL);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_acquire); /* pairs with ap__breaker_set */
    ap_breaker_state st = (ap_breaker_state)(s & 7u);
    if (st != AP_BREAKER_STATE_OPEN && st != AP_BREAKER_STATE_HALF_OPEN)
        return st;
    ap__breaker_events ev = AP__ZERO;
    ap__lock_acquire(&b->lock);
    ap__breaker_advance(b, now_ns, &ev);
    st = (ap_breaker_state)(AP_ATOMIC_LOAD(&b->state, memory_order_relaxed) & 7u);
    ap__lock_release(&b->lock);
    ap__breaker_fire(b, &ev);
    return st;
}

AP_API uint64_t ap_breaker_generation(ap_breaker *b)
{
    AP_ASSERT(b != NULL);
    return AP_ATOMIC_LOAD(&b->state, memory_order_relaxed) >> 3;
}

AP_API void ap_breaker_stats_get(ap_breaker *b, ap_breaker_stats *out)
{
    AP_ASSERT(b != NULL && out != NULL);
    ap_breaker_stats r;
    memset(&r, 0, sizeof r);
    for (unsigned i = 0; i < AP_BREAKER_STRIPES; i++) {
        ap__breaker_stripe *s = &b->stripe[i];
        r.allowed += AP_ATOMIC_LOAD(&s->allowed, memory_order_relaxed);
        r.rejected += AP_ATOMIC_LOAD(&s->rejected, memory_order_relaxed);
        r.successes += AP_ATOMIC_LOAD(&s->successes, memory_order_relaxed);
        r.failures += AP_ATOMIC_LOAD(&s->failures, memory_order_relaxed);
        r.ignored += AP_ATOMIC_LOAD(&s->ignored, memory_order_relaxed);
        r.canceled += AP_ATOMIC_LOAD(&s->canceled, memory_order_relaxed);
        r.slow += AP_ATOMIC_LOAD(&s->slow, memory_order_relaxed);
        r.stale += AP_ATOMIC_LOAD(&s->stale, memory_order_relaxed);
    }
    r.calls = r.successes + r.failures + r.ignored + r.canceled;
    r.transitions = AP_ATOMIC_LOAD(&b->transitions, memory_order_relaxed);
    r.lease_expired = AP_ATOMIC_LOAD(&b->lease_expired, memory_order_relaxed);
    *out = r;
}

AP_API void ap__breaker_manual(ap_breaker *b, ap_breaker_state to)
{
    AP_ASSERT(b != NULL);
    ap__breaker_events ev = AP__ZERO;
    ap__lock_acquire(&b->lock);
    uint64_t s = AP_ATOMIC_LOAD(&b->state, memory_order_relaxed);
    if (to == AP_BREAKER_STATE_CLOSED || (s & 7u) != (uint64_t)to)
        ap__breaker_set(b, to, 0, &ev);
    ap__lock_release(&b->lock);
    ap__breaker_fire(b, &ev);
}

AP_API void ap_breaker_force_open(ap_breaker *b) { ap__breaker_manual(b, AP_BREAKER_STATE_FORCED_OPEN); }
AP_API void ap_breaker_disable(ap_breaker *b) { ap__breaker_manual(b, AP_BREAKER_STATE_DISABLED); }
AP_API void ap_breaker_reset(ap_breaker *b) { ap__breaker_manual(b, AP_BREAKER_STATE_CLOSED); }

#undef AP__BREAKER_COUNT

#endif /* ASYNCPAT_CIRCUIT_BREAKER_H */
