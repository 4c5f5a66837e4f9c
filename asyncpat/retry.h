/*
 * asyncpat/retry.h -- retry with backoff, jitter, deadline, predicate,
 *                     server hints and a shared retry budget
 *
 * PATTERN
 *   An operation that may fail transiently is tried again after a delay
 *   that grows (exponential backoff) and is randomised (jitter) so that
 *   many clients that failed together do not come back together. The
 *   policies are the ones of AWS's "Exponential Backoff And Jitter"
 *   (Brooker, 2015), with b = initial_ns, c = cap_ns, m = multiplier and
 *   k = 0, 1, 2, ... the retry index:
 *
 *     FIXED                d_k = b
 *     EXPONENTIAL          d_k = e_k,  e_0 = b, e_{k+1} = min(c, floor(e_k*m))
 *     FULL_JITTER          d_k = uniform[0, e_k]                 (the default)
 *     EQUAL_JITTER         d_k = e_k - floor(e_k/2) + uniform[0, floor(e_k/2)]
 *     DECORRELATED_JITTER  d_k = min(c, uniform[b, floor(d_{k-1}*m)]), d_{-1} = b
 *                          (m defaults to 3 here, as in the article)
 *
 *   All arithmetic is integer: m is given in per-mille (2000 = x2) and
 *   floor(e*m/1000) is computed exactly (no floating point, so no drift and
 *   the same sequence on every platform for the same seed). Randomness
 *   comes from a caller-owned, seedable ap_rng (xoshiro256** seeded through
 *   splitmix64); ap_rng_below(n) is unbiased (rejection sampling).
 *
 *   A retry budget (ap_retry_budget, after Finagle's RetryBudget and
 *   Envoy's retry budgets) is shared by many callers: in any window of
 *   window_ns it allows retries up to ratio x (first attempts seen in the
 *   window) + min_per_sec x window, so a failing dependency cannot be
 *   flooded by a retry storm (at most 1 + ratio times the normal load).
 *
 *   ap_retry_fut drives a user operation given as a factory of attempt
 *   futures; it waits its backoff by lowering cx->deadline (it never
 *   sleeps). ap_retry_call is a blocking helper for a plain callback.
 *
 * USAGE
 *   ap_rng rng;  ap_rng_seed(&rng, 42);
 *   ap_retry_budget budget;   // 20 % of requests + 10 retries/s over 10 s
 *   if (ap_retry_budget_init(&budget, &(ap_retry_budget_desc){0})) abort();
 *   ap_retry_desc d = {.max_attempts = 5, .initial_ns = 10 * AP_NS_PER_MS,
 *                      .cap_ns = AP_NS_PER_SEC};       // full jitter
 *   ap_retry_result r;
 *   ap_status st = ap_retry_call(&d, &rng, &budget, call_server, srv,
 *                                ap_deadline_after(ap_now_ns(), 2 * AP_NS_PER_SEC), &r);
 *   // st: AP_OK; AP_EXHAUSTED (r.last_error, r.app_error: why the last
 *   // attempt failed); a permanent error; AP_TIMEDOUT (the deadline)
 *   // call_server: ap_status call_server(void *srv, int *app_error), which
 *   // sets *app_error = e.g. the HTTP status and returns AP_OK or an error
 *
 *   // per attempt, behind a breaker: take the permit in start(), report it
 *   // in result() and, for an attempt cut by the deadline, in canceled()
 *   ap_retry_op op = {.start = att_start, .result = att_result,
 *                     .canceled = att_canceled, .ctx = br, .storage = &att};
 *
 * GUARANTEES (invariants the tests check)
 *   - the cap holds after jitter: every delay is <= cap_ns (a server hint:
 *     <= hint_cap_ns); FULL >= 0, EQUAL >= ceil(e_k/2), DECORRELATED >= b
 *     (or c if smaller is impossible: b <= c is required)
 *   - at most max_attempts attempts (counting the first); with a scripted
 *     operation whose first k attempts fail, the retry succeeds iff
 *     k < max_attempts, after exactly min(k+1, max_attempts) attempts
 *   - status: AP_NOT_READY exactly while running (stop AP_RETRY_STOP_RUNNING,
 *     also during a backoff), never once finished; then exactly one of
 *       AP_OK          an attempt succeeded (stop SUCCEEDED)
 *       AP_EXHAUSTED   attempts kept failing with a retryable error: every
 *                      allowed attempt was used (stop EXHAUSTED), or the
 *                      retry budget refused the next one (stop BUDGET); the
 *                      last error is in last_error, the op's own code in
 *                      app_error -- deadline or not, never AP_TIMEDOUT
 *       the error      a permanent one (the predicate said "not
 *                      retryable"), as the op reported it (stop PERMANENT)
 *       AP_TIMEDOUT    the overall deadline (stop DEADLINE)
 *       AP_CANCELED    ap_retry_fut_cancel (stop CANCELED)
 *   - deadline: no attempt starts at or after the overall deadline; a retry
 *     whose start (now + delay) would not be before it is not scheduled and
 *     the result is AP_TIMEDOUT with the last error in last_error. The
 *     retry future also bounds the attempt in flight: once cx->now reaches
 *     the deadline the attempt is cancelled and the result is AP_TIMEDOUT.
 *     A retry whose next start would land exactly on the deadline stops
 *     with AP_RETRY_STOP_DEADLINE in the poll that saw the failure, and asks
 *     the budget for nothing
 *   - every attempt that started ends with exactly one report to the op:
 *     result() once it completed, or canceled() (if set) once it was
 *     cancelled, by the overall deadline or by ap_retry_fut_cancel -- so a
 *     permit an attempt took (a breaker's, a semaphore's) is always given
 *     back exactly once
 *   - the retry never makes up an AP_TIMEDOUT status: it is the overall
 *     deadline (stop AP_RETRY_STOP_DEADLINE), or an AP_TIMEDOUT error of the op
 *     (e.g. a per-attempt timeout) that the predicate calls permanent.
 *     Attempts that kept failing with a retryable error (an AP_TIMEDOUT one
 *     included) until max_attempts end AP_EXHAUSTED, deadline or not; with
 *     no deadline the status is never AP_TIMEDOUT but for that permanent
 *     case
 *   - a permanent error (the predicate says "not retryable") stops at once
 *     with that error; a budget refusal stops with AP_EXHAUSTED and is
 *     counted (ap_retry_budget_stats().denied); an error of AP_NOT_READY
 *     ("not yet") is always retryable, so a final status is never
 *     AP_NOT_READY
 *   - application errors travel beside the status, never inside it: the
 *     op's result() (or ap_retry_call's fn) writes its own code to
 *     *app_error (0 on entry), and app_error keeps the last completed
 *     attempt's (0 if none completed; an attempt cut by the deadline or a
 *     cancel leaves it as it was)
 *   - with independent attempts that succeed with probability p, the
 *     success probability is 1-(1-p)^n and the mean attempt count
 *     (1-(1-p)^n)/p (checked statistically over 1e5 seeded trials)
 *   - cancel (ap_retry_fut_cancel) cancels the attempt in flight, so no
 *     waiter stays registered anywhere; idempotent, safe after completion
 *   - bad configuration returns AP_INVAL and changes nothing
 *
 * CONCURRENCY          state/fut/rng (one object)   budget
 *   any function              one thread at a time      any thread
 *   Progress: ap_rng, ap_retry_state and ap_retry_fut have no shared state
 *   (one user at a time, like every future: future.h rule 4). The budget
 *   serialises on one tiny spinlock (ap__lock, core.h) held for O(SLOTS)
 *   plain arithmetic; no user code and no waker runs under it. It is not
 *   lock-free: a retry decision is rare next to the attempt it precedes.
 *
 * ORDERING
 *   The budget's lock gives acquire/release between its callers; no other
 *   atomics here. The retry future adds no ordering of its own: the attempt
 *   future's apply.
 *
 * TIME
 *   Time is read only from cx->now (the future) and now_ns arguments (the
 *   budget). ap_retry_call is a caller-side helper like ap_block_on: it
 *   reads the desc's clock (desc.clock; ap_now_ns() by default) and sleeps
 *   with nanosleep() between attempts on the calling thread until that
 *   clock reaches the next attempt's start; the budget's now_ns and the
 *   overall deadline are on that clock. Under a clock other than
 *   ap_now_ns() it sleeps the clock's nanoseconds as real ones, at most
 *   AP_CLOCK_PARK_MAX_NS (1 ms) at a time, then reads the clock again (a
 *   fake clock moved by another thread or by its own reads is followed; a
 *   fake clock nobody moves keeps it sleeping in 1 ms slices). The future
 *   ignores desc.clock: its driver supplies cx->now (for the same effect
 *   drive it with ap_block_on_until_clock). ap_retry_call cannot
 *   interrupt a running callback, so the overall deadline bounds when
 *   attempts start, not how long one runs.
 *
 * COMPLEXITY   delays, predicate, decisions: O(1) (ap_rng_below expects
 *              < 2 draws). Budget: O(AP_RETRY_BUDGET_SLOTS) under the lock.
 *              Memory (LP64): ap_retry_state 96 B, ap_retry_fut 224 B, budget
 *              312 B, all caller-owned. Nothing allocates.
 * ERRORS       AP_INVAL (bad desc: max_attempts 0, multiplier < 1000 per
 *              mille, initial > cap, hint jitter > 1000 per mille, unknown
 *              backoff; budget: window < SLOTS ns or > 1 hour, ratio >
 *              1000x). Results (the status table of status.h):
 *              AP_NOT_READY while running, then AP_OK; AP_EXHAUSTED
 *              (retryable errors until max_attempts, or a budget refusal:
 *              last_error and app_error beside it, stop says which); the
 *              permanent error itself; AP_TIMEDOUT (the overall deadline
 *              only, unless the op's own AP_TIMEDOUT was permanent);
 *              AP_CANCELED. Attempt errors are any ap_status the op
 *              returns; the op's own error code goes to app_error.
 * CONFIG       AP_ASSERT, AP_SPIN_LIMIT; AP_RETRY_BUDGET_SLOTS (default 10).
 * SEE ALSO     timeout.h (per-attempt timeouts: retry(timeout(op))),
 *              tests/test_retry.c, bench/bench_retry.c
 * STABILITY    experimental (0.x): names and defaults may change before 1.0
 */
#ifndef ASYNCPAT_RETRY_H
#define ASYNCPAT_RETRY_H

#include "core.h"
#include "future.h"
#include "time.h"

#ifndef AP_RETRY_BUDGET_SLOTS
#define AP_RETRY_BUDGET_SLOTS 10
#endif

/* ---- ap_rng ---- */

/** ap_rng - xoshiro256** state (caller-owned; seed with ap_rng_seed) */
typedef struct ap_rng {
    uint64_t s[4];
} ap_rng;

/** ap_rng_seed - seed from one 64-bit value (splitmix64 expands it) */
AP_API void ap_rng_seed(ap_rng *rng, uint64_t seed);
/** ap_rng_next_u64 - the next 64 uniformly random bits */
AP_API uint64_t ap_rng_next_u64(ap_rng *rng);
/**
 * ap_rng_below - a uniform integer in [0, n), without modulo bias
 * @n: > 0 (asserted)
 * Rejection sampling: draws below 2^64 mod n are discarded, so every
 * residue has the same number of preimages. Expected draws < 2.
 */
AP_API uint64_t ap_rng_below(ap_rng *rng, uint64_t n);
/** ap_rng_between - a uniform integer in [lo, hi] (inclusive; lo <= hi) */
AP_API uint64_t ap_rng_between(ap_rng *rng, uint64_t lo, uint64_t hi);

/* ---- backoff ---- */

/** ap_retry_backoff - the delay policy (0: full jitter, AWS's recommendation) */
typedef enum ap_retry_backoff {
    AP_RETRY_BACKOFF_DEFAULT = 0, /* = AP_RETRY_BACKOFF_FULL_JITTER */
    AP_RETRY_BACKOFF_FIXED,
    AP_RETRY_BACKOFF_EXPONENTIAL,
    AP_RETRY_BACKOFF_FULL_JITTER,
    AP_RETRY_BACKOFF_EQUAL_JITTER,
    AP_RETRY_BACKOFF_DECORRELATED_JITTER
} ap_retry_backoff;

/** ap_retry_pred_fn - true when @err is worth retrying (transient); never
 *  asked about AP_NOT_READY, which is always retried */
typedef bool (*ap_retry_pred_fn)(ap_status err, void *ctx);

/** ap_retry_desc - configuration; a zero field means its default */
typedef struct ap_retry_desc {
    uint32_t max_attempts;        /* counting the first (required: 0 is AP_INVAL) */
    ap_retry_backoff backoff;     /* 0: FULL_JITTER */
    uint64_t initial_ns;          /* b, the first delay (0: 100 ms) */
    uint64_t cap_ns;              /* c, the largest delay (0: 30 s); b > c is AP_INVAL */
    uint32_t multiplier_permille; /* m (0: 2000, or 3000 for DECORRELATED); < 1000 AP_INVAL */
    ap_retry_pred_fn retryable;   /* NULL: all errors but AP_INVAL, AP_CANCELED, AP_CLOSED
                                     (AP_NOT_READY: always retryable) */
    void *retryable_ctx;
    uint64_t hint_cap_ns;         /* largest honoured server hint (0: cap_ns) */
    uint32_t hint_jitter_permille; /* hint + uniform[0, hint*j/1000] (0: none); > 1000 AP_INVAL */
    ap_clock clock;               /* ap_retry_call's clock: its sleeps, its
                                     deadline, the budget's now (zero:
                                     ap_now_ns); the future ignores it */
} ap_retry_desc;

/** ap_retry_state - one delay sequence (caller memory; ap_retry_state_init) */
typedef struct ap_retry_state {
    ap_retry_desc desc; /* resolved */
    uint64_t cur;       /* e_k (EXPONENTIAL, *_JITTER) or d_{k-1} (DECORRELATED) */
    uint32_t retries;   /* delays handed out so far */
} ap_retry_state;

/* ---- budget ---- */

/** AP_RETRY_BUDGET_ZERO - an explicit 0 for a budget field whose 0 means default */
#define AP_RETRY_BUDGET_ZERO UINT32_MAX

/** ap_retry_budget_desc - configuration; a zero field means its default */
typedef struct ap_retry_budget_desc {
    uint32_t ratio_permille; /* retries per 1000 first attempts (0: 200 = 20 %; at most 1000000) */
    uint32_t min_per_sec;    /* a floor of retries per second of window (0: 10) */
    uint64_t window_ns;      /* how long a request counts (0: 10 s; SLOTS ns .. 1 h) */
} ap_retry_budget_desc;

typedef struct ap__retry_budget_slot {
    uint64_t epoch; /* now / slot_ns of the counts; UINT64_MAX: empty */
    uint64_t requests, retries;
} ap__retry_budget_slot;

/** ap_retry_budget_stats - counters since init (a consistent snapshot) */
typedef struct ap_retry_budget_stats {
    uint64_t requests; /* first attempts deposited */
    uint64_t retries;  /* retries allowed */
    uint64_t denied;   /* retries refused */
} ap_retry_budget_stats;

/** ap_retry_budget - shared by any number of callers and threads */
typedef struct ap_retry_budget {
    ap__lock lock;
    uint64_t slot_ns;
    uint64_t reserve; /* min_per_sec * window, in retries */
    uint32_t ratio_permille;
    ap_retry_budget_stats stats;
    ap__retry_budget_slot slots[AP_RETRY_BUDGET_SLOTS];
    ap_retry_budget_desc desc; /* resolved (ZERO fields as 0) */
} ap_retry_budget;

/* ---- results and the future ---- */

/** ap_retry_stop - why a retry ended */
typedef enum ap_retry_stop {
    AP_RETRY_STOP_RUNNING = 0, /* not finished */
    AP_RETRY_STOP_SUCCEEDED,   /* an attempt returned AP_OK */
    AP_RETRY_STOP_PERMANENT,   /* the predicate said the error is not retryable */
    AP_RETRY_STOP_EXHAUSTED,   /* max_attempts attempts failed (status AP_EXHAUSTED) */
    AP_RETRY_STOP_DEADLINE,    /* the next attempt could not start before the deadline */
    AP_RETRY_STOP_BUDGET,      /* the retry budget refused the retry (status AP_EXHAUSTED) */
    AP_RETRY_STOP_CANCELED     /* ap_retry_fut_cancel */
} ap_retry_stop;

/** ap_retry_result - the outcome of a retry */
typedef struct ap_retry_result {
    ap_status status;     /* AP_NOT_READY exactly while running (stop ==
                           * AP_RETRY_STOP_RUNNING); once stopped: AP_OK,
                           * AP_EXHAUSTED (stop EXHAUSTED or BUDGET), the
                           * permanent error, AP_TIMEDOUT (deadline),
                           * AP_CANCELED; never AP_NOT_READY */
    ap_status last_error; /* of the last attempt, as the op reported it;
                           * AP_OK if it succeeded, or if it was cancelled
                           * before any attempt ran; AP_TIMEDOUT for one cut
                           * off by the deadline, or when the deadline had
                           * passed before the first attempt */
    uint32_t attempts;    /* attempts started */
    ap_retry_stop stop;   /* AP_RETRY_STOP_RUNNING until finished: the completion test */
    int app_error;        /* the op's own error code, as the last completed
                           * attempt's result() (or fn) set it; 0 if none
                           * completed or it set none */
} ap_retry_result;

/**
 * ap_retry_op - the user operation, as a factory of attempt futures
 * @start:    initialise attempt @attempt (0-based) in @storage and return
 *            its future (never NULL); @now is the attempt's start time. The
 *            previous attempt has completed or been cancelled before, so
 *            one storage can be reused.
 * @result:   the completed attempt's status for the retry (AP_OK =
 *            success; else the error the predicate judges); may set
 *            *app_error to the application's own error code (an HTTP
 *            status, an errno; 0 on entry) and *retry_after_ns to a server
 *            hint (0 on entry: no hint)
 * @ctx, @storage: passed through; the caller owns both
 * @canceled: optional (NULL: none): called once for a started attempt that
 *            is cancelled instead of completing -- cut by the overall
 *            deadline, or by ap_retry_fut_cancel -- after the attempt
 *            future's own cancel, and instead of @result. @now is the
 *            cx->now of the poll that cut it (deadline), or of the last
 *            poll (ap_retry_fut_cancel). Every started attempt gets exactly
 *            one call of @result or @canceled: the place to give back what
 *            @start took, e.g. ap_breaker_record(..., AP_BREAKER_OUTCOME_CANCELED,
 *            ...) for a breaker permit. It must not poll or cancel the
 *            retry future.
 * Use designated initializers: fields may be added at the end.
 */
typedef struct ap_retry_op {
    ap_future *(*start)(void *ctx, void *storage, uint32_t attempt, uint64_t now);
    ap_status (*result)(void *ctx, ap_future *attempt, int *app_error,
                        uint64_t *retry_after_ns);
    void *ctx;
    void *storage;
    void (*canceled)(void *ctx, ap_future *attempt, uint64_t now);
} ap_retry_op;

/** ap_retry_fut - a future that runs op until success or a limit */
typedef struct ap_retry_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_retry_state backoff;
    ap_rng *rng;
    ap_retry_budget *budget;
    ap_retry_op op;
    ap_deadline deadline;
    ap_future *attempt; /* in flight, or NULL */
    uint64_t next_at;   /* backoff: start of the next attempt */
    uint64_t last_now;  /* cx->now of the last poll (for op.canceled) */
    int phase;          /* 0 start, 1 running, 2 backoff, 3 done */
    ap_retry_result res;
} ap_retry_fut;

/**
 * ap_retry_desc_resolved - the desc with defaults filled in
 * Returns a copy in which zero fields got their defaults; max_attempts
 * has none and stays as given.
 */
AP_API ap_retry_desc ap_retry_desc_resolved(const ap_retry_desc *desc);

/**
 * ap_retry_state_init - start a delay sequence
 * Returns AP_OK or AP_INVAL (see ERRORS); on AP_INVAL *st is untouched.
 */
AP_API AP_NODISCARD ap_status ap_retry_state_init(ap_retry_state *st, const ap_retry_desc *desc);

/**
 * ap_retry_next_delay - the delay before the next retry, and advance
 * @rng: needed by the jitter policies (asserted); may be NULL otherwise
 * Returns d_k (see PATTERN), always <= cap_ns.
 */
AP_API uint64_t ap_retry_next_delay(ap_retry_state *st, ap_rng *rng);

/**
 * ap_retry_next_delay_hint - the delay when the server said "retry after"
 * @hint_ns: the server's hint (> 0)
 * Returns min(hint_cap_ns, hint + uniform[0, hint*hint_jitter/1000]): the
 * hint replaces the policy's delay for this retry (jitter only adds, so a
 * hint below the cap is never undercut). The policy's sequence still
 * advances, as if its delay had been used.
 */
AP_API uint64_t ap_retry_next_delay_hint(ap_retry_state *st, ap_rng *rng, uint64_t hint_ns);

/**
 * ap_retry_is_retryable - what the desc's predicate (or the default) says
 * Returns true for AP_NOT_READY without asking the predicate ("not yet" is
 * transient by definition, and a final status is never AP_NOT_READY).
 */
AP_API bool ap_retry_is_retryable(const ap_retry_desc *desc, ap_status err);

/**
 * ap_retry_budget_init - an empty budget
 * Returns AP_OK or AP_INVAL (window < AP_RETRY_BUDGET_SLOTS ns or > 1 h,
 * ratio > 1000000 per mille); on AP_INVAL
 * *b is untouched. Fields equal to AP_RETRY_BUDGET_ZERO mean 0.
 * Deposits expire at slot granularity: a request counts for between
 * window*(SLOTS-1)/SLOTS and window.
 */
AP_API AP_NODISCARD ap_status ap_retry_budget_init(ap_retry_budget *b,
                                                   const ap_retry_budget_desc *desc);

/** ap_retry_budget_deposit - count one request (a first attempt) at @now_ns
 *  Concurrency: any thread. */
AP_API void ap_retry_budget_deposit(ap_retry_budget *b, uint64_t now_ns);

/**
 * ap_retry_budget_try_withdraw - ask for one retry at @now_ns
 * Returns true (and counts it) when the retries in the window stay within
 * floor(requests_in_window*ratio/1000) + reserve; else false, counted as
 * denied. Concurrency: any thread. Callers with slightly different clocks
 * are tolerated: counts land in the slot of their own now (approximate).
 */
AP_API bool ap_retry_budget_try_withdraw(ap_retry_budget *b, uint64_t now_ns);

/** ap_retry_budget_stats_get - counters since init */
AP_API void ap_retry_budget_stats_get(ap_retry_budget *b, ap_retry_budget_stats *out);

/**
 * ap_retry_fut_init - set up a retry future
 * @desc:     policy and limits (copied)
 * @rng:      for jitter (asserted non-NULL when the policy or hint jitter
 *            needs it); caller-owned, used only while polled
 * @budget:   shared budget, or NULL for none; deposited at the first
 *            attempt, withdrawn before each retry
 * @op:       the operation (copied)
 * @deadline: overall deadline on cx->now's clock (AP_DEADLINE_NONE: none)
 *
 * Returns AP_OK or AP_INVAL (bad desc; *f untouched). Nothing runs before
 * the first poll.
 */
AP_API AP_NODISCARD ap_status ap_retry_fut_init(ap_retry_fut *f, const ap_retry_desc *desc,
                                                ap_rng *rng, ap_retry_budget *budget,
                                                const ap_retry_op *op, ap_deadline deadline);

/**
 * ap_retry_fut_poll - advance: start, poll or retry attempts
 * Returns AP_READY when finished (see ap_retry_fut_result); else
 * AP_PENDING with either the attempt's waker registered or cx->deadline
 * lowered to the next attempt's start (and always to the overall deadline).
 */
AP_API ap_poll ap_retry_fut_poll(ap_retry_fut *f, ap_cx *cx);

/** ap_retry_fut_cancel - cancel the attempt in flight (then op.canceled,
 *  if set, reports it), finish with AP_CANCELED; idempotent, a no-op after
 *  completion */
AP_API void ap_retry_fut_cancel(ap_retry_fut *f);

/** ap_retry_fut_result - the outcome (status AP_NOT_READY and stop
 *  AP_RETRY_STOP_RUNNING while running; last_error and app_error then hold the
 *  last completed attempt's so far) */
AP_API ap_retry_result ap_retry_fut_result(const ap_retry_fut *f);

/** ap_retry_fut_status - the outcome's status: AP_NOT_READY exactly while
 *  running (also during backoff), never after it finished */
AP_API AP_NODISCARD ap_status ap_retry_fut_status(const ap_retry_fut *f);

/**
 * ap_retry_call - call fn(ctx, &app_error) until it returns AP_OK or a
 *                 limit is hit
 * @fn:       one attempt: returns AP_OK or an error for the predicate, and
 *            may set *app_error (0 on entry) to its own error code
 * @deadline: overall, on desc->clock (ap_now_ns() by default); no call
 *            starts at or after it
 * @out:      the full result (app_error: the last call's), or NULL
 *
 * Blocks the calling thread: sleeps with nanosleep() between attempts
 * until desc->clock reaches the next start (a clock other than ap_now_ns()
 * is re-read at least every AP_CLOCK_PARK_MAX_NS of real time; see TIME).
 * Returns the result's status (see ERRORS: AP_OK, AP_EXHAUSTED, the
 * permanent error, AP_TIMEDOUT; never AP_NOT_READY), or AP_INVAL (bad
 * desc; fn never called, *out untouched).
 */
AP_API AP_NODISCARD ap_status ap_retry_call(const ap_retry_desc *desc, ap_rng *rng,
                                            ap_retry_budget *budget,
                                            ap_status (*fn)(void *ctx, int *app_error),
                                            void *ctx, ap_deadline deadline,
                                            ap_retry_result *out);

/* ---- implementation ---- */

AP_API void ap_rng_seed(ap_rng *rng, uint64_t seed)
{
    AP_ASSERT(rng != NULL);
    /* splitmix64 is a bijection of its counter, so the four words are
     * never all zero (xoshiro's one forbidden state). */
    for (int i = 0; i < 4; i++)
        rng->s[i] = ap__splitmix64(&seed);
}

AP_API uint64_t ap__rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

AP_API uint64_t ap_rng_next_u64(ap_rng *rng)
{
    /* xoshiro256** 1.0 (Blackman and Vigna, 2018) */
    uint64_t *s = rng->s;
    uint64_t r = ap__rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ap__rotl64(s[3], 45);
    return r;
}

AP_API uint64_t ap_rng_below(ap_rng *rng, uint64_t n)
{
    AP_ASSERT(rng != NULL && n > 0);
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n */
    for (;;) {
        uint64_t r = ap_rng_next_u64(rng);
        if (r >= threshold) /* [threshold, 2^64) holds a multiple of n values */
            return r % n;
    }
}

AP_API uint64_t ap_rng_between(ap_rng *rng, uint64_t lo, uint64_t hi)
{
    AP_ASSERT(lo <= hi);
    if (hi - lo == UINT64_MAX)
        return ap_rng_next_u64(rng);
    return lo + ap_rng_below(rng, hi - lo + 1);
}

/* floor(x * permille / 1000), exact, saturating at UINT64_MAX. */
AP_API uint64_t ap__retry_mul_permille(uint64_t x, uint64_t permille)
{
    if (x <= UINT64_MAX / 4294967295u) /* fast path: x*m fits (m < 2^32); /1000 by a constant */
        return x * permille / 1000;
    uint64_t q = x / 1000, r = x % 1000;
    uint64_t low = r * permille / 1000; /* r < 1000, permille < 2^32: no overflow */
    if (permille != 0 && q > (UINT64_MAX - low) / permille)
        return UINT64_MAX;
    /* x*m/1000 = q*m + r*m/1000, and the floor of the sum is q*m + floor(r*m/1000) */
    return q * permille + low;
}

AP_API bool ap__retry_default_pred(ap_status err)
{
    return err != AP_INVAL && err != AP_CANCELED && err != AP_CLOSED;
}

AP_API ap_retry_desc ap_retry_desc_resolved(const ap_retry_desc *desc)
{
    AP_ASSERT(desc != NULL);
    ap_retry_desc d = *desc;
    if (d.backoff == AP_RETRY_BACKOFF_DEFAULT)
        d.backoff = AP_RETRY_BACKOFF_FULL_JITTER;
    if (d.initial_ns == 0)
        d.initial_ns = 100 * AP_NS_PER_MS;
    if (d.cap_ns == 0)
        d.cap_ns = 30 * AP_NS_PER_SEC;
    if (d.multiplier_permille == 0)
        d.multiplier_permille = d.backoff == AP_RETRY_BACKOFF_DECORRELATED_JITTER ? 3000 : 2000;
    if (d.hint_cap_ns == 0)
        d.hint_cap_ns = d.cap_ns;
    return d;
}

AP_API bool ap__retry_needs_rng(const ap_retry_desc *d)
{
    return d->backoff == AP_RETRY_BACKOFF_FULL_JITTER ||
           d->backoff == AP_RETRY_BACKOFF_EQUAL_JITTER ||
           d->backoff == AP_RETRY_BACKOFF_DECORRELATED_JITTER ||
           d->hint_jitter_permille != 0;
}

AP_API ap_status ap_retry_state_init(ap_retry_state *st, const ap_retry_desc *desc)
{
    AP_ASSERT(st != NULL && desc != NULL);
    ap_retry_desc d = ap_retry_desc_resolved(desc);
    if (d.max_attempts == 0 || d.backoff > AP_RETRY_BACKOFF_DECORRELATED_JITTER ||
        d.multiplier_permille < 1000 || d.initial_ns > d.cap_ns ||
        d.hint_jitter_permille > 1000)
        return AP_INVAL;
    st->desc = d;
    st->cur = d.initial_ns;
    st->retries = 0;
    return AP_OK;
}

AP_API uint64_t ap_retry_next_delay(ap_retry_state *st, ap_rng *rng)
{
    AP_ASSERT(st != NULL);
    const ap_retry_desc *d = &st->desc;
    uint64_t e = st->cur, delay;
    switch (d->backoff) {
    case AP_RETRY_BACKOFF_FIXED:
        delay = d->initial_ns;
        break;
    case AP_RETRY_BACKOFF_DECORRELATED_JITTER: {
        AP_ASSERT(rng != NULL);
        /* e is d_{k-1} >= b and m >= 1, so the range is never empty */
        uint64_t hi = ap__retry_mul_permille(e, d->multiplier_permille);
        delay = ap_rng_between(rng, d->initial_ns, hi);
        if (delay > d->cap_ns)
            delay = d->cap_ns; /* cap after jitter */
        st->cur = delay;
        break;
    }
    default: { /* EXPONENTIAL and the two jitters draw around e_k <= cap */
        uint64_t next = ap__retry_mul_permille(e, d->multiplier_permille);
        st->cur = next < d->cap_ns ? next : d->cap_ns;
        if (d->backoff == AP_RETRY_BACKOFF_EXPONENTIAL) {
            delay = e;
        } else if (d->backoff == AP_RETRY_BACKOFF_FULL_JITTER) {
            AP_ASSERT(rng != NULL);
            delay = ap_rng_between(rng, 0, e);
        } else { /* EQUAL_JITTER */
            AP_ASSERT(rng != NULL);
            delay = (e - e / 2) + ap_rng_between(rng, 0, e / 2);
        }
        break;
    }
    }
    st->retries++;
    return delay;
}

AP_API uint64_t ap_retry_next_delay_hint(ap_retry_state *st, ap_rng *rng, uint64_t hint_ns)
{
    (void)ap_retry_next_delay(st, rng); /* keep the policy's sequence */
    const ap_retry_desc *d = &st->desc;
    uint64_t delay = hint_ns;
    if (d->hint_jitter_permille != 0) {
        AP_ASSERT(rng != NULL);
        uint64_t j = ap__retry_mul_permille(hint_ns, d->hint_jitter_permille);
        delay = ap_deadline_after(hint_ns, ap_rng_between(rng, 0, j));
    }
    return delay < d->hint_cap_ns ? delay : d->hint_cap_ns; /* cap after jitter */
}

AP_API bool ap_retry_is_retryable(const ap_retry_desc *desc, ap_status err)
{
    if (err == AP_NOT_READY)
        return true; /* "not yet": never a final status */
    if (desc->retryable)
        return desc->retryable(err, desc->retryable_ctx);
    return ap__retry_default_pred(err);
}

/* -- budget -- */

AP_API ap_status ap_retry_budget_init(ap_retry_budget *b, const ap_retry_budget_desc *desc)
{
    AP_ASSERT(b != NULL && desc != NULL);
    ap_retry_budget_desc d = *desc;
    if (d.ratio_permille == 0)
        d.ratio_permille = 200;
    else if (d.ratio_permille == AP_RETRY_BUDGET_ZERO)
        d.ratio_permille = 0;
    if (d.min_per_sec == 0)
        d.min_per_sec = 10;
    else if (d.min_per_sec == AP_RETRY_BUDGET_ZERO)
        d.min_per_sec = 0;
    if (d.window_ns == 0)
        d.window_ns = 10 * AP_NS_PER_SEC;
    if (d.ratio_permille > 1000000u || d.window_ns < AP_RETRY_BUDGET_SLOTS ||
        d.window_ns > 3600 * AP_NS_PER_SEC)
        return AP_INVAL;
    /* window <= 3600 s and min_per_sec < 2^32: the product fits in 64 bits */
    uint64_t reserve = d.window_ns / AP_NS_PER_SEC * d.min_per_sec +
                       d.window_ns % AP_NS_PER_SEC * d.min_per_sec / AP_NS_PER_SEC;
    AP_ATOMIC_INIT(&b->lock.held, 0u);
    b->slot_ns = d.window_ns / AP_RETRY_BUDGET_SLOTS;
    b->reserve = reserve;
    b->ratio_permille = d.ratio_permille;
    b->stats = AP__LIT(ap_retry_budget_stats){0, 0, 0};
    for (int i = 0; i < AP_RETRY_BUDGET_SLOTS; i++)
        b->slots[i] = AP__LIT(ap__retry_budget_slot){UINT64_MAX, 0, 0};
    b->desc = d;
    return AP_OK;
}

/* The slot for now's epoch, emptied if it holds an older epoch. Under lock. */
AP_API ap__retry_budget_slot *ap__retry_budget_slot_at(ap_retry_budget *b, uint64_t epoch)
{
    ap__retry_budget_slot *s = &b->slots[epoch % AP_RETRY_BUDGET_SLOTS];
    if (s->epoch == UINT64_MAX || s->epoch < epoch)
        *s = AP__LIT(ap__retry_budget_slot){epoch, 0, 0};
    /* s->epoch > epoch: this caller's clock lags a whole window behind
     * another's; it adds to the newer slot (approximate, never unbounded). */
    return s;
}

AP_API void ap_retry_budget_deposit(ap_retry_budget *b, uint64_t now_ns)
{
    AP_ASSERT(b != NULL);
    ap__lock_acquire(&b->lock);
    ap__retry_budget_slot_at(b, now_ns / b->slot_ns)->requests++;
    b->stats.requests++;
    ap__lock_release(&b->lock);
}

AP_API bool ap_retry_budget_try_withdraw(ap_retry_budget *b, uint64_t now_ns)
{
    AP_ASSERT(b != NULL);
    uint64_t epoch = now_ns / b->slot_ns;
    ap__lock_acquire(&b->lock);
    uint64_t req = 0, ret = 0;
    for (int i = 0; i < AP_RETRY_BUDGET_SLOTS; i++) {
        const ap__retry_budget_slot *s = &b->slots[i];
        /* in the window: epoch - SLOTS < s->epoch (also a newer one) */
        if (s->epoch != UINT64_MAX && s->epoch + AP_RETRY_BUDGET_SLOTS > epoch) {
            req += s->requests;
            ret += s->retries;
        }
    }
    uint64_t allowed = ap_deadline_after(ap__retry_mul_permille(req, b->ratio_permille), b->reserve);
    bool ok = ret < allowed;
    if (ok) {
        ap__retry_budget_slot_at(b, epoch)->retries++;
        b->stats.retries++;
    } else {
        b->stats.denied++;
    }
    ap__lock_release(&b->lock);
    return ok;
}

AP_API void ap_retry_budget_stats_get(ap_retry_budget *b, ap_retry_budget_stats *out)
{
    AP_ASSERT(b != NULL && out != NULL);
    ap__lock_acquire(&b->lock);
    ap_retry_budget_stats s = b->stats;
    ap__lock_release(&b->lock);
    *out = s;
}

/* -- the decision shared by the future and ap_retry_call -- */

/* Stop with @st as the final status (the only place where res->status
 * leaves AP_NOT_READY). Never AP_NOT_READY: that error is always retried. */
AP_API void ap__retry_stop_with(ap_retry_result *res, ap_retry_stop stop, ap_status st)
{
    AP_ASSERT(stop != AP_RETRY_STOP_RUNNING && st != AP_NOT_READY);
    res->status = st;
    res->stop = stop;
}

/* Attempt failed with err at now: schedule the next one (true, *next_at;
 * res->status stays AP_NOT_READY) or fill res and stop (false). */
AP_API bool ap__retry_after_failure(ap_retry_state *bo, ap_rng *rng, ap_retry_budget *budget,
                                    ap_deadline deadline, ap_retry_result *res, ap_status err,
                                    uint64_t hint_ns, uint64_t now, uint64_t *next_at)
{
    res->last_error = err;
    if (!ap_retry_is_retryable(&bo->desc, err)) {
        ap__retry_stop_with(res, AP_RETRY_STOP_PERMANENT, err);
        return false;
    }
    if (res->attempts >= bo->desc.max_attempts) {
        ap__retry_stop_with(res, AP_RETRY_STOP_EXHAUSTED, AP_EXHAUSTED);
        return false;
    }
    uint64_t delay = hint_ns ? ap_retry_next_delay_hint(bo, rng, hint_ns)
                             : ap_retry_next_delay(bo, rng);
    uint64_t at = ap_deadline_after(now, delay);
    if (ap_deadline_passed(deadline, at)) { /* could not start before it */
        ap__retry_stop_with(res, AP_RETRY_STOP_DEADLINE, AP_TIMEDOUT);
        return false;
    }
    if (budget && !ap_retry_budget_try_withdraw(budget, now)) {
        ap__retry_stop_with(res, AP_RETRY_STOP_BUDGET, AP_EXHAUSTED);
        return false;
    }
    *next_at = at;
    return true;
}

AP_API void ap__retry_result_start(ap_retry_result *res)
{
    *res = AP__LIT(ap_retry_result){AP_NOT_READY, AP_OK, 0, AP_RETRY_STOP_RUNNING, 0};
}

/* -- the future -- */

enum { AP__RETRY_START, AP__RETRY_RUNNING, AP__RETRY_BACKOFF, AP__RETRY_DONE };

AP__FUTURE_VTABLE(ap__retry_fut, ap_retry_fut, ap_retry_fut_poll, ap_retry_fut_cancel)

AP_API ap_status ap_retry_fut_init(ap_retry_fut *f, const ap_retry_desc *desc, ap_rng *rng,
                                   ap_retry_budget *budget, const ap_retry_op *op,
                                   ap_deadline deadline)
{
    AP_ASSERT(f != NULL && op != NULL && op->start != NULL && op->result != NULL);
    ap_retry_state st;
    if (ap_retry_state_init(&st, desc) != AP_OK)
        return AP_INVAL;
    AP_ASSERT(rng != NULL || !ap__retry_needs_rng(&st.desc));
    f->base.poll = ap__retry_fut_poll_v;
    f->base.cancel = ap__retry_fut_cancel_v;
    f->backoff = st;
    f->rng = rng;
    f->budget = budget;
    f->op = *op;
    f->deadline = deadline;
    f->attempt = NULL;
    f->next_at = 0;
    f->last_now = 0;
    f->phase = AP__RETRY_START;
    ap__retry_result_start(&f->res);
    return AP_OK;
}

/* Cancel the attempt in flight and report it to the op (once). */
AP_API void ap__retry_fut_cancel_attempt(ap_retry_fut *f, uint64_t now)
{
    ap_future *a = f->attempt;
    f->attempt = NULL;
    ap_future_cancel(a);
    if (f->op.canceled)
        f->op.canceled(f->op.ctx, a, now);
}

AP_API void ap__retry_fut_finish_deadline(ap_retry_fut *f)
{
    ap__retry_stop_with(&f->res, AP_RETRY_STOP_DEADLINE, AP_TIMEDOUT);
    f->phase = AP__RETRY_DONE;
}

AP_API ap_poll ap_retry_fut_poll(ap_retry_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    uint64_t now = cx->now;
    if (f->phase != AP__RETRY_DONE)
        f->last_now = now;
    for (;;) {
        switch (f->phase) {
        case AP__RETRY_START:
            if (ap_deadline_passed(f->deadline, now)) { /* never start at/after it */
                if (f->res.attempts == 0)
                    f->res.last_error = AP_TIMEDOUT;
                ap__retry_fut_finish_deadline(f);
                return AP_READY;
            }
            if (f->res.attempts == 0 && f->budget)
                ap_retry_budget_deposit(f->budget, now);
            f->attempt = f->op.start(f->op.ctx, f->op.storage, f->res.attempts, now);
            AP_ASSERT(f->attempt != NULL && f->attempt->poll != NULL);
            f->res.attempts++;
            f->phase = AP__RETRY_RUNNING;
            break;
        case AP__RETRY_RUNNING: {
            if (ap_deadline_passed(f->deadline, now)) { /* bound the attempt too */
                f->res.last_error = AP_TIMEDOUT;
                ap__retry_fut_finish_deadline(f);
                ap__retry_fut_cancel_attempt(f, now); /* finished: the hook sees it done */
                return AP_READY;
            }
            if (f->attempt->poll(f->attempt, cx) == AP_PENDING) {
                ap_cx_wake_at(cx, f->deadline);
                return AP_PENDING;
            }
            uint64_t hint = 0;
            int app = 0;
            ap_status err = f->op.result(f->op.ctx, f->attempt, &app, &hint);
            f->attempt = NULL;
            f->res.app_error = app;
            if (err == AP_OK) {
                f->res.last_error = AP_OK;
                ap__retry_stop_with(&f->res, AP_RETRY_STOP_SUCCEEDED, AP_OK);
                f->phase = AP__RETRY_DONE;
                return AP_READY;
            }
            if (!ap__retry_after_failure(&f->backoff, f->rng, f->budget, f->deadline, &f->res,
                                         err, hint, now, &f->next_at)) {
                f->phase = AP__RETRY_DONE;
                return AP_READY;
            }
            f->phase = AP__RETRY_BACKOFF;
            break;
        }
        case AP__RETRY_BACKOFF:
            if (now < f->next_at) { /* wait for time only: no waker registered */
                ap_cx_wake_at(cx, f->next_at);
                return AP_PENDING;
            }
            f->phase = AP__RETRY_START;
            break;
        default:
            return AP_READY;
        }
    }
}

AP_API void ap_retry_fut_cancel(ap_retry_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->phase == AP__RETRY_DONE)
        return;
    /* finished first: a canceled() hook that looks at the future sees it done */
    ap__retry_stop_with(&f->res, AP_RETRY_STOP_CANCELED, AP_CANCELED);
    int phase = f->phase;
    f->phase = AP__RETRY_DONE;
    if (phase == AP__RETRY_RUNNING)
        ap__retry_fut_cancel_attempt(f, f->last_now);
}

AP_API ap_retry_result ap_retry_fut_result(const ap_retry_fut *f)
{
    return f->res;
}

AP_API ap_status ap_retry_fut_status(const ap_retry_fut *f)
{
    return f->res.status;
}

/* -- the blocking helper -- */

/* Sleep until @clock reaches t. Another clock's ns are slept as real ns,
 * a bounded slice at a time, so a clock moved meanwhile is re-read. */
AP_API void ap__retry_sleep_until(uint64_t t, const ap_clock *clock)
{
    uint64_t now;
    bool slice = !ap_clock_is_default(clock);
    while ((now = ap_clock_now(clock)) < t) {
        uint64_t ns = t - now;
        if (slice && ns > AP_CLOCK_PARK_MAX_NS)
            ns = AP_CLOCK_PARK_MAX_NS;
        struct timespec ts = ap__timespec_from_ns(ns); /* (32-bit time_t: capped) */
        (void)nanosleep(&ts, NULL); /* EINTR or early: the loop re-checks */
    }
}

AP_API ap_status ap_retry_call(const ap_retry_desc *desc, ap_rng *rng, ap_retry_budget *budget,
                               ap_status (*fn)(void *ctx, int *app_error), void *ctx,
                               ap_deadline deadline, ap_retry_result *out)
{
    AP_ASSERT(fn != NULL);
    ap_retry_state bo;
    if (ap_retry_state_init(&bo, desc) != AP_OK)
        return AP_INVAL;
    AP_ASSERT(rng != NULL || !ap__retry_needs_rng(&bo.desc));
    ap_retry_result res;
    ap__retry_result_start(&res);
    for (;;) {
        uint64_t now = ap_clock_now(&bo.desc.clock);
        if (ap_deadline_passed(deadline, now)) {
            if (res.attempts == 0)
                res.last_error = AP_TIMEDOUT;
            ap__retry_stop_with(&res, AP_RETRY_STOP_DEADLINE, AP_TIMEDOUT);
            break;
        }
        if (res.attempts == 0 && budget)
            ap_retry_budget_deposit(budget, now);
        res.attempts++;
        int app = 0;
        ap_status err = fn(ctx, &app);
        res.app_error = app;
        if (err == AP_OK) {
            res.last_error = AP_OK;
            ap__retry_stop_with(&res, AP_RETRY_STOP_SUCCEEDED, AP_OK);
            break;
        }
        uint64_t next_at;
        if (!ap__retry_after_failure(&bo, rng, budget, deadline, &res, err, 0,
                                     ap_clock_now(&bo.desc.clock), &next_at))
            break;
        ap__retry_sleep_until(next_at, &bo.desc.clock);
    }
    if (out)
        *out = res;
    return res.status;
}

#endif /* ASYNCPAT_RETRY_H */
