/*
 * asyncpat/resilience.h -- one future that composes a rate limiter, a
 *                          bulkhead, a circuit breaker and a per-attempt
 *                          timeout inside a retry
 *
 * PATTERN
 *   The composition that callers otherwise plumb by hand (about 60 lines
 *   of ap_retry_op hooks): an attempt factory -- the caller's function
 *   that starts one attempt future -- is run as
 *
 *     retry( limiter -> bulkhead -> breaker -> timeout(attempt) )
 *
 *   i.e. per attempt, in this order: take the limiter's tokens (ap_tb),
 *   then the bulkhead's permits (ap_sem), then a breaker permit
 *   (ap_breaker_allow), then start the caller's attempt and run it under the
 *   per-attempt timeout; and all of that inside an ap_retry_fut, with its
 *   backoff, jitter, retry budget and overall deadline. Every layer is
 *   optional: a NULL object (or a zero field) in ap_resil_desc means "not
 *   used". The order is resilience4j's Retry(CircuitBreaker(RateLimiter(
 *   TimeLimiter(Bulkhead(fn))))) rearranged as the decorators' issue #11
 *   asks: the cheap global gate (tokens) first, the local concurrency gate
 *   (bulkhead) next, the breaker only for a call that will really run (so a
 *   half-open probe slot is never held by a call queued behind the
 *   bulkhead), and the timeout around the attempt alone (waiting for a
 *   token or a permit is bounded by its own wait and by the overall
 *   deadline, not by the attempt's timeout).
 *
 *   A refusal by a layer ends that attempt with AP_REJECTED (rejected_by
 *   says which layer); the retry treats it as any other attempt error (its
 *   predicate decides; the default retries AP_REJECTED), and a call whose
 *   last attempt was refused ends AP_REJECTED (not AP_EXHAUSTED: the
 *   policy's refusal is the news). The limiter's and
 *   the breaker's retry_at go to the retry as a server hint, so the next
 *   attempt starts when it may be admitted (capped by the retry desc's
 *   hint_cap_ns, jittered by hint_jitter_permille). A bulkhead that was
 *   closed (ap_sem_close) ends the attempt with AP_CLOSED (permanent by
 *   default).
 *
 *   The attempt's own result comes from the op's result hook as an
 *   ap_status for the library (AP_OK = success; the retry predicate and the
 *   breaker's classifier look at it) and an int application error beside
 *   it (an HTTP status, an errno, a gRPC code): the application error
 *   travels out through the retry's own app_error (ap_retry_op.result) to
 *   ap_resil_result.app_error, never squeezed into an ap_status.
 *
 * USAGE (start_get, get_result and the http_get struct are the caller's)
 *   static ap_tb tb;  static ap_sem bulk;  static ap_breaker *br;
 *   if (ap_tb_init(&tb, &(ap_tb_desc){.n = 100, .burst = 10}) ||
 *       ap_sem_init(&bulk, 8) ||
 *       ap_breaker_create(&br, &(ap_breaker_desc){.window_size = 20}, NULL)) abort();
 *   ap_rng rng;  ap_rng_seed(&rng, 42);
 *   ap_retry_desc rd = {.max_attempts = 3, .initial_ns = 10 * AP_NS_PER_MS};
 *   ap_resil_desc d = {.limiter = &tb, .bulkhead = &bulk, .breaker = br,
 *                      .attempt_timeout_ns = 200 * AP_NS_PER_MS,
 *                      .retry = &rd, .rng = &rng};
 *   struct http_get req = {.url = "/x"};
 *   ap_resil_op op = {.start = start_get, .result = get_result, .ctx = &req};
 *   ap_resil_fut call;
 *   if (ap_resil_fut_init(&call, &d, &op,
 *                         ap_deadline_after(ap_now_ns(), AP_NS_PER_SEC))) abort();
 *   ap_block_on(&call.base);          // or poll it from your event loop
 *   ap_resil_result r = ap_resil_fut_result(&call);
 *   // r.status: AP_OK, AP_REJECTED (r.rejected_by), AP_EXHAUSTED
 *   // (r.last_error), AP_TIMEDOUT, ...; r.app_error: e.g. the last HTTP status
 *
 * GUARANTEES (invariants the tests check)
 *   - ledger: whatever mix of success, failure, per-attempt timeout, layer
 *     refusal, overall deadline and cancel happens, every resource an
 *     attempt took is given back or recorded exactly once:
 *       * bulkhead: each permit taken (or granted to a waiting attempt) is
 *         released exactly once, when the attempt ends in any way
 *         (completion, timeout, breaker refusal, deadline, cancel); a
 *         grant racing with a cancel is passed on by ap_sem (nothing
 *         lost), so ap_sem_available() is back to its start once every
 *         call has ended;
 *       * breaker: each permit ap_breaker_allow handed out is recorded exactly
 *         once: SUCCESS/FAILURE/IGNORED as the classifier says for an
 *         attempt that completed (default: AP_OK is SUCCESS, anything
 *         else -- a per-attempt timeout included -- is FAILURE), and
 *         AP_BREAKER_OUTCOME_CANCELED for an attempt cut by the overall
 *         deadline or by ap_resil_fut_cancel. So allowed == successes +
 *         failures + ignored + canceled + stale holds once calls end, and
 *         no half-open probe slot is ever held by a finished call;
 *       * limiter: tokens are consumed, never given back once the attempt
 *         passed the limiter (also when the bulkhead or breaker then
 *         refuses it, or it fails): a rate limiter limits attempts, and
 *         returning tokens after the fact would break its window bound.
 *         The one exception is a limiter *wait* that is cancelled before
 *         its tokens were due: ap_tb_acquire_cancel gives them back under
 *         its rule (all of them when nothing was stacked on them, else
 *         none). Without a wait, tokens taken == attempts admitted by the
 *         limiter (stats.tokens / limiter_tokens);
 *       * attempt: each attempt future the factory started is polled until
 *         it completes, or cancelled exactly once (by the timeout, the
 *         deadline or a cancel), never both; the result hook runs exactly
 *         once per attempt that completed in time
 *   - the layers run in the order above: no token is taken by an attempt
 *     that does not start, no permit is asked before the tokens are taken,
 *     no breaker permit is asked before the bulkhead admitted, no attempt
 *     starts before all of them admitted it
 *   - every guarantee of ap_retry_fut (at most max_attempts attempts, none
 *     started at or after the overall deadline, the attempt in flight cut
 *     at it, status AP_NOT_READY exactly while running) and of ap_timeout
 *   - the result follows the status table (status.h): AP_NOT_READY while
 *     running; AP_OK; AP_REJECTED when the last attempt was refused by a
 *     layer (rejected_by LIMITER, BULKHEAD or BREAKER) and the retry could
 *     not go on (attempts or budget spent: where the retry alone would say
 *     AP_EXHAUSTED); AP_EXHAUSTED when the attempts kept failing otherwise
 *     (the attempt's own retryable error, or its per-attempt timeout:
 *     last_error AP_TIMEDOUT, rejected_by TIMEOUT), never AP_TIMEDOUT
 *     without an overall deadline; a permanent error as the op (or the
 *     bulkhead: AP_CLOSED) reported it; AP_TIMEDOUT for the overall
 *     deadline; AP_CANCELED. app_error is that of the last attempt whose
 *     result hook ran (0 if none did)
 *   - cancel (ap_resil_fut_cancel) is idempotent and safe at any time,
 *     also after completion; afterwards no waiter of this call is
 *     registered anywhere and nothing is held
 *   - bad configuration returns AP_INVAL and changes nothing
 *
 * CONCURRENCY
 *   An ap_resil_fut is one future: polled and cancelled by one thread at a
 *   time (future.h rule 4). The objects it composes (ap_tb, ap_sem,
 *   ap_breaker, ap_retry_budget) are shared by any number of calls on any
 *   threads, with their own guarantees. The rng (needed by the jittered
 *   backoffs) is used only inside polls: give each thread its own, or
 *   serialise. Progress: a poll is non-blocking; it never spins or sleeps.
 *   It waits only by registering the semaphore's waiter (bulkhead wait),
 *   by the attempt's own registration, or by lowering cx->deadline (a
 *   limiter wait, a backoff, the timeout, the waits' and overall
 *   deadlines). Wakers are called by the composed objects, outside their
 *   locks.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   O(1) per poll on top of the composed objects' own costs
 *              (the breaker's allow/record, the semaphore's CAS or
 *              waiter-list lock) and the attempt's poll.
 * MEMORY       an ap_resil_fut in caller memory (760 bytes on LP64:
 *              the retry future, the limiter and bulkhead futures and the
 *              timeout are embedded). The attempt future lives where the
 *              caller's factory puts it. Nothing allocates.
 * ERRORS       init: AP_INVAL (bad retry desc; limiter_tokens > the
 *              bucket's burst; bulkhead_permits > the semaphore's max; a
 *              wait, a count or a classifier given for a layer that is not
 *              used). Results (ap_resil_result.status): AP_NOT_READY
 *              while running, then AP_OK; AP_REJECTED (the last attempt
 *              was refused by a layer: rejected_by); AP_EXHAUSTED (the
 *              attempts kept failing with a retryable error -- the
 *              attempt's own, or the per-attempt timeout's AP_TIMEDOUT,
 *              rejected_by == AP_RESIL_LAYER_TIMEOUT -- or the retry
 *              budget refused: last_error and app_error beside it);
 *              AP_TIMEDOUT (the overall deadline, see retry.h);
 *              AP_CANCELED; AP_CLOSED (the bulkhead was closed); or the
 *              attempt's own permanent error, with app_error beside it.
 *              The semaphore's "no permit" (AP_EMPTY, or AP_AGAIN from
 *              older semaphore.h) is a refusal, AP_REJECTED.
 * CONFIG       AP_ASSERT
 * SEE ALSO     retry.h, token_bucket.h, semaphore.h, circuit_breaker.h,
 *              timeout.h, examples/resilient_client.c
 * STABILITY    experimental (0.x): names and defaults may change before 1.0
 */
#ifndef ASYNCPAT_RESILIENCE_H
#define ASYNCPAT_RESILIENCE_H

#include "core.h"
#include "future.h"
#include "time.h"
#include "timeout.h"
#include "retry.h"
#include "token_bucket.h"
#include "semaphore.h"
#include "circuit_breaker.h"

/** ap_resil_layer - which layer ended an attempt (the stable numbers) */
typedef enum ap_resil_layer {
    AP_RESIL_LAYER_NONE = 0,     /* the attempt ran (or nothing ran yet) */
    AP_RESIL_LAYER_LIMITER = 1,  /* no tokens (within limiter_wait_ns) */
    AP_RESIL_LAYER_BULKHEAD = 2, /* no permit (within bulkhead_wait_ns), or closed */
    AP_RESIL_LAYER_BREAKER = 3,  /* the breaker refused (OPEN, half-open full) */
    AP_RESIL_LAYER_TIMEOUT = 4   /* the per-attempt timeout cut the attempt */
} ap_resil_layer;

/**
 * ap_resil_classify_fn - the breaker outcome of an attempt that completed
 * @st:        what the result hook returned (AP_TIMEDOUT for an attempt the
 *             per-attempt timeout cut: the result hook did not run)
 * @app_error: the result hook's application error (0 after a timeout)
 * Must return SUCCESS, FAILURE or IGNORED (CANCELED is the library's, for
 * attempts that did not complete; anything else trips AP_ASSERT).
 */
typedef ap_breaker_outcome (*ap_resil_classify_fn)(void *ctx, ap_status st, int app_error);

/** ap_resil_desc - what to compose; a NULL object or zero field: not used */
typedef struct ap_resil_desc {
    ap_tb *limiter;               /* rate limiter (NULL: none) */
    uint64_t limiter_tokens;      /* tokens per attempt (0: 1) */
    uint64_t limiter_wait_ns;     /* longest wait for them (0: none, refuse at once) */
    ap_sem *bulkhead;             /* concurrency limit (NULL: none) */
    size_t bulkhead_permits;      /* permits per attempt (0: 1) */
    uint64_t bulkhead_wait_ns;    /* longest wait for them (0: none, refuse at once;
                                     AP_DEADLINE_NONE: as long as the deadline allows) */
    ap_breaker *breaker;          /* circuit breaker (NULL: none) */
    ap_resil_classify_fn classify; /* NULL: AP_OK is SUCCESS, anything else FAILURE */
    void *classify_ctx;
    uint64_t attempt_timeout_ns;  /* per-attempt timeout (0: none) */
    const ap_retry_desc *retry;   /* copied; NULL: one attempt, no retry */
    ap_rng *rng;                  /* for a jittered retry desc (see retry.h) */
    ap_retry_budget *budget;      /* shared retry budget (NULL: none) */
} ap_resil_desc;

/**
 * ap_resil_op - the caller's operation, as a factory of attempt futures
 * @start:  start attempt @attempt (0-based) at @now and return its future
 *          (never NULL), e.g. in memory @ctx points to. Runs only once the
 *          limiter, the bulkhead and the breaker admitted the attempt. The
 *          previous attempt has completed or been cancelled before.
 * @result: the completed attempt's status for the library (AP_OK =
 *          success; the retry's predicate and the classifier see it) and,
 *          in *app_error (0 on entry), the application's own error; may set
 *          *retry_after_ns (0 on entry) to a server hint. Runs once per
 *          attempt that completed before its timeout. The same contract as
 *          ap_retry_op.result (retry.h), which it is passed through.
 * @ctx:    passed through
 * Use designated initializers: fields may be added at the end.
 */
typedef struct ap_resil_op {
    ap_future *(*start)(void *ctx, uint32_t attempt, uint64_t now);
    ap_status (*result)(void *ctx, ap_future *attempt, int *app_error, uint64_t *retry_after_ns);
    void *ctx;
} ap_resil_op;

/** ap_resil_result - the outcome of a call */
typedef struct ap_resil_result {
    ap_status status;           /* AP_NOT_READY while running; then see ERRORS */
    ap_status last_error;       /* the last attempt's status (see ap_retry_result) */
    int app_error;              /* the application error of the last attempt whose
                                   result hook ran (0 if none did) */
    uint32_t attempts;          /* attempts the retry started (each went through
                                   the layers) */
    uint32_t ran;               /* of them, attempts the factory started */
    ap_retry_stop stop;         /* why the retry ended (AP_RETRY_STOP_RUNNING until then) */
    ap_resil_layer rejected_by; /* what ended the last attempt (NONE: it ran to
                                   completion, or was cut by deadline/cancel) */
} ap_resil_result;

/** ap_resil_stats - this call's ledger (counters since init) */
typedef struct ap_resil_stats {
    uint64_t tokens;            /* tokens taken from the limiter (kept) */
    uint64_t tokens_waited;     /* of them, taken through a limiter wait (wait_ns set) */
    uint64_t permits;           /* bulkhead permits taken (each released) */
    uint64_t breaker_permits;   /* breaker permits taken (each recorded) */
    uint64_t breaker_canceled;  /* of them, recorded CANCELED */
    uint32_t rejected[5];       /* attempts ended by each ap_resil_layer */
} ap_resil_stats;

/* One attempt as the retry sees it: the layers, then the caller's attempt.
 * Private; lives inside ap_resil_fut. */
typedef struct ap__resil_att {
    ap_future base;
    int phase;                  /* AP__RESIL_* */
    uint32_t index;             /* attempt number */
    uint64_t t0;                /* when the caller's attempt started */
    uint64_t wait_until;        /* limiter/bulkhead wait deadline */
    ap_tb_acquire_fut tbf;
    ap_sem_acquire_fut semf;
    bool tb_waiting, sem_waiting, sem_held;
    ap_breaker_permit permit;        /* gen 0: none held */
    ap_future *user;            /* the caller's attempt, once started */
    ap_future *run;             /* user, or &timeout */
    ap_timeout timeout;
    ap_status status;           /* the attempt's result for the retry */
    uint64_t hint;
    int app_error;              /* of the last attempt whose result hook ran: kept
                                   across attempts, handed to the retry */
} ap__resil_att;

/** ap_resil_fut - a composed call (caller memory) */
typedef struct ap_resil_fut {
    ap_future base;             /* first: (ap_future *)f is the future */
    ap_retry_fut retry;
    ap__resil_att att;
    ap_resil_desc desc;         /* resolved */
    ap_resil_op op;
    uint64_t now;               /* cx->now of the poll in progress / the last one */
    ap_resil_result res;
    ap_resil_stats stats;
} ap_resil_fut;

/**
 * ap_resil_fut_init - set up a composed call
 * @desc:     the layers (copied; the objects it points to must outlive the
 *            call)
 * @op:       the attempt factory (copied)
 * @deadline: overall deadline on cx->now's clock (AP_DEADLINE_NONE: none)
 *
 * Returns AP_OK or AP_INVAL (see ERRORS; *f untouched). Nothing runs and
 * nothing is taken before the first poll.
 */
AP_API AP_NODISCARD ap_status ap_resil_fut_init(ap_resil_fut *f, const ap_resil_desc *desc,
                                                const ap_resil_op *op, ap_deadline deadline);

/**
 * ap_resil_fut_poll - advance the call
 * Returns AP_READY when it finished (ap_resil_fut_result), else AP_PENDING
 * with a waker registered (bulkhead wait, the attempt's own) and/or
 * cx->deadline lowered to when it must be polled again.
 */
AP_API ap_poll ap_resil_fut_poll(ap_resil_fut *f, ap_cx *cx);

/** ap_resil_fut_cancel - cancel the attempt in flight (its breaker permit is
 *  recorded CANCELED, its bulkhead permit released, its waits withdrawn),
 *  finish with AP_CANCELED; idempotent, a no-op after completion */
AP_API void ap_resil_fut_cancel(ap_resil_fut *f);

/** ap_resil_fut_result - the outcome (status AP_NOT_READY while running) */
AP_API ap_resil_result ap_resil_fut_result(const ap_resil_fut *f);
/** ap_resil_fut_status - the outcome's status (AP_NOT_READY while running) */
AP_API AP_NODISCARD ap_status ap_resil_fut_status(const ap_resil_fut *f);
/** ap_resil_stats_get - this call's ledger */
AP_API void ap_resil_stats_get(const ap_resil_fut *f, ap_resil_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   No atomics of its own: the composed objects' apply (ap_sem's release
 *   -> acquire edge: what an attempt did before its permit was released
 *   happens-before the next holder's attempt; the breaker and the bucket
 *   publish nothing). Time is read only from cx->now.
 */

enum {
    AP__RESIL_LIMIT,   /* take tokens */
    AP__RESIL_BULK,    /* take bulkhead permits */
    AP__RESIL_BREAKER, /* take a breaker permit, start the attempt */
    AP__RESIL_RUN,     /* the caller's attempt under its timeout */
    AP__RESIL_DONE     /* completed or cancelled: holds nothing */
};

AP_API ap_resil_fut *ap__resil_of(ap__resil_att *a)
{
    return AP_CONTAINER_OF(a, ap_resil_fut, att);
}

/* Release the bulkhead permits if held (exactly once). */
AP_API void ap__resil_release_permits(ap_resil_fut *f, ap__resil_att *a)
{
    if (a->sem_held) {
        a->sem_held = false;
        ap_status rc = ap_sem_release(f->desc.bulkhead, f->desc.bulkhead_permits);
        /* only a release above max fails, which balanced use never does */
        AP_ASSERT(rc == AP_OK);
        (void)rc;
    }
}

/* Record the breaker permit if held (exactly once: the record consumes it). */
AP_API void ap__resil_record(ap_resil_fut *f, ap__resil_att *a, ap_breaker_outcome o,
                             uint64_t now)
{
    if (a->permit.gen == 0)
        return;
    uint64_t dur = now >= a->t0 ? now - a->t0 : 0;
    ap_status rc = ap_breaker_record(f->desc.breaker, &a->permit, o, dur, now);
    /* a fresh, uncopied permit and a checked outcome: never AP_INVAL */
    AP_ASSERT(rc == AP_OK && a->permit.gen == 0);
    (void)rc;
    f->stats.breaker_canceled += o == AP_BREAKER_OUTCOME_CANCELED;
}

/* End the attempt with @st: give back what it holds, count the refusal. */
AP_API ap_poll ap__resil_finish(ap_resil_fut *f, ap__resil_att *a, ap_status st,
                                ap_resil_layer by, uint64_t hint)
{
    ap__resil_release_permits(f, a);
    a->status = st;
    a->hint = hint;
    a->phase = AP__RESIL_DONE;
    f->res.rejected_by = by;
    f->stats.rejected[by] += by != AP_RESIL_LAYER_NONE;
    return AP_READY;
}

/* The attempt ends without an outcome (overall deadline, cancel): cancel
 * whatever it waits on and give back everything it holds. Idempotent. */
AP_API void ap__resil_abort(ap_resil_fut *f, ap__resil_att *a, uint64_t now)
{
    if (a->phase == AP__RESIL_DONE)
        return;
    int phase = a->phase;
    a->phase = AP__RESIL_DONE;
    if (a->tb_waiting) {
        a->tb_waiting = false;
        ap_tb_acquire_cancel(&a->tbf); /* tokens not yet due go back */
    }
    if (a->sem_waiting) {
        a->sem_waiting = false;
        ap_sem_acquire_cancel(&a->semf); /* a raced grant is passed on */
    }
    if (phase == AP__RESIL_RUN)
        ap_future_cancel(a->run); /* the timeout cancels the attempt once */
    ap__resil_record(f, a, AP_BREAKER_OUTCOME_CANCELED, now);
    ap__resil_release_permits(f, a);
    a->status = AP_CANCELED;
    f->res.rejected_by = AP_RESIL_LAYER_NONE;
}

AP_API ap_breaker_outcome ap__resil_classify(const ap_resil_desc *d, ap_status st, int app)
{
    if (!d->classify)
        return st == AP_OK ? AP_BREAKER_OUTCOME_SUCCESS : AP_BREAKER_OUTCOME_FAILURE;
    ap_breaker_outcome o = d->classify(d->classify_ctx, st, app);
    AP_ASSERT(o == AP_BREAKER_OUTCOME_SUCCESS || o == AP_BREAKER_OUTCOME_FAILURE ||
              o == AP_BREAKER_OUTCOME_IGNORED);
    return o;
}

AP_API ap_poll ap__resil_att_poll(ap_future *self, ap_cx *cx)
{
    ap__resil_att *a = (ap__resil_att *)(void *)self;
    ap_resil_fut *f = ap__resil_of(a);
    const ap_resil_desc *d = &f->desc;
    uint64_t now = cx->now;
    for (;;) {
        switch (a->phase) {
        case AP__RESIL_LIMIT: {
            if (!d->limiter) {
                a->phase = AP__RESIL_BULK;
                break;
            }
            ap_status st;
            bool waited = false;
            uint64_t retry_at = 0;
            if (d->limiter_wait_ns == 0) {
                st = ap_tb_try_acquire(d->limiter, d->limiter_tokens, now, &retry_at);
            } else {
                if (!a->tb_waiting) {
                    ap_tb_acquire_fut_init(&a->tbf, d->limiter, d->limiter_tokens,
                                           ap_deadline_after(now, d->limiter_wait_ns));
                    a->tb_waiting = true;
                }
                if (ap_tb_acquire_poll(&a->tbf, cx) == AP_PENDING)
                    return AP_PENDING; /* cx->deadline lowered to the ready instant */
                a->tb_waiting = false;
                st = ap_tb_acquire_status(&a->tbf);
                waited = true;
            }
            if (st == AP_OK) {
                f->stats.tokens += d->limiter_tokens;
                if (waited)
                    f->stats.tokens_waited += d->limiter_tokens;
                a->phase = AP__RESIL_BULK;
                break;
            }
            if (st == AP_INVAL)
                return ap__resil_finish(f, a, AP_INVAL, AP_RESIL_LAYER_LIMITER, 0);
            /* AP_EMPTY (no tokens now) or AP_REJECTED (never), or
             * AP_TIMEDOUT from a wait: not admitted */
            uint64_t hint = retry_at > now && retry_at != AP_DEADLINE_NONE ? retry_at - now : 0;
            return ap__resil_finish(f, a, AP_REJECTED, AP_RESIL_LAYER_LIMITER, hint);
        }
        case AP__RESIL_BULK: {
            if (!d->bulkhead) {
                a->phase = AP__RESIL_BREAKER;
                break;
            }
            ap_status st;
            if (d->bulkhead_wait_ns == 0) {
                st = ap_sem_try_acquire(d->bulkhead, d->bulkhead_permits);
            } else {
                if (!a->sem_waiting) {
                    ap_sem_acquire_fut_init(&a->semf, d->bulkhead, d->bulkhead_permits);
                    a->wait_until = ap_deadline_after(now, d->bulkhead_wait_ns);
                    a->sem_waiting = true;
                }
                if (ap_sem_acquire_poll(&a->semf, cx) == AP_PENDING) {
                    if (!ap_deadline_passed(a->wait_until, now)) {
                        ap_cx_wake_at(cx, a->wait_until);
                        return AP_PENDING; /* waiter registered */
                    }
                    /* gave up: cancel passes on a grant that raced with us */
                    ap_sem_acquire_cancel(&a->semf);
                }
                a->sem_waiting = false;
                st = ap_sem_acquire_status(&a->semf);
                if (st == AP_CANCELED)
                    st = AP_EMPTY; /* our own give-up: not admitted */
            }
            if (st == AP_OK) {
                a->sem_held = true;
                f->stats.permits += d->bulkhead_permits;
                a->phase = AP__RESIL_BREAKER;
                break;
            }
            /* no permit: AP_EMPTY (AP_AGAIN from a semaphore.h older than
             * the status table); AP_CLOSED; AP_INVAL (cannot happen:
             * checked at init) */
            bool none = st == AP_EMPTY || st == AP_AGAIN || st == AP_NOT_READY;
            return ap__resil_finish(f, a, none ? AP_REJECTED : st, AP_RESIL_LAYER_BULKHEAD, 0);
        }
        case AP__RESIL_BREAKER: {
            if (d->breaker) {
                uint64_t retry_at = 0;
                if (ap_breaker_allow(d->breaker, now, &a->permit, &retry_at) != AP_OK) {
                    uint64_t hint =
                        retry_at > now && retry_at != AP_DEADLINE_NONE ? retry_at - now : 0;
                    return ap__resil_finish(f, a, AP_REJECTED, AP_RESIL_LAYER_BREAKER, hint);
                }
                f->stats.breaker_permits++;
            }
            a->t0 = now;
            a->user = f->op.start(f->op.ctx, a->index, now);
            AP_ASSERT(a->user != NULL && a->user->poll != NULL);
            f->res.ran++;
            a->run = a->user;
            if (d->attempt_timeout_ns) {
                ap_timeout_init_after(&a->timeout, a->user, now, d->attempt_timeout_ns);
                a->run = &a->timeout.base;
            }
            a->phase = AP__RESIL_RUN;
            break;
        }
        case AP__RESIL_RUN: {
            if (a->run->poll(a->run, cx) == AP_PENDING)
                return AP_PENDING;
            ap_status st = AP_TIMEDOUT;
            int app = 0;
            uint64_t hint = 0;
            ap_resil_layer by = AP_RESIL_LAYER_TIMEOUT;
            if (!d->attempt_timeout_ns || ap_timeout_status(&a->timeout) == AP_OK) {
                st = f->op.result(f->op.ctx, a->user, &app, &hint);
                by = AP_RESIL_LAYER_NONE;
                a->app_error = app; /* the retry takes it in ap__resil_result */
            }
            ap__resil_record(f, a, ap__resil_classify(d, st, app), now);
            return ap__resil_finish(f, a, st, by, hint);
        }
        default:
            return AP_READY;
        }
    }
}

AP_API void ap__resil_att_cancel(ap_future *self)
{
    ap__resil_att *a = (ap__resil_att *)(void *)self;
    ap_resil_fut *f = ap__resil_of(a);
    ap__resil_abort(f, a, f->now);
}

/* -- the retry's op -- */

AP_API ap_future *ap__resil_start(void *ctx, void *storage, uint32_t attempt, uint64_t now)
{
    ap_resil_fut *f = (ap_resil_fut *)ctx;
    ap__resil_att *a = (ap__resil_att *)storage;
    (void)now;
    a->base.poll = ap__resil_att_poll;
    a->base.cancel = ap__resil_att_cancel;
    a->phase = AP__RESIL_LIMIT;
    a->index = attempt;
    a->t0 = 0;
    a->wait_until = 0;
    a->tb_waiting = a->sem_waiting = a->sem_held = false;
    a->permit = AP__LIT(ap_breaker_permit){0, 0};
    a->user = a->run = NULL;
    a->status = AP_NOT_READY;
    a->hint = 0;
    /* a->app_error stays: the last one a result hook gave */
    f->res.rejected_by = AP_RESIL_LAYER_NONE;
    return &a->base;
}

AP_API ap_status ap__resil_result(void *ctx, ap_future *attempt, int *app_error,
                                  uint64_t *retry_after_ns)
{
    (void)ctx;
    ap__resil_att *a = (ap__resil_att *)(void *)attempt;
    AP_ASSERT(a->phase == AP__RESIL_DONE);
    *app_error = a->app_error;
    *retry_after_ns = a->hint;
    return a->status;
}

/* The retry cut the attempt (deadline or cancel) after cancelling it: the
 * attempt's cancel already gave everything back; this is idempotent. */
AP_API void ap__resil_canceled(void *ctx, ap_future *attempt, uint64_t now)
{
    ap__resil_abort((ap_resil_fut *)ctx, (ap__resil_att *)(void *)attempt, now);
}

AP__FUTURE_VTABLE(ap__resil, ap_resil_fut, ap_resil_fut_poll, ap_resil_fut_cancel)

AP_API ap_status ap_resil_fut_init(ap_resil_fut *f, const ap_resil_desc *desc,
                                   const ap_resil_op *op, ap_deadline deadline)
{
    AP_ASSERT(f != NULL && desc != NULL && op != NULL && op->start != NULL &&
              op->result != NULL);
    ap_resil_desc d = *desc;
    if (d.limiter) {
        if (d.limiter_tokens == 0)
            d.limiter_tokens = 1;
        if (d.limiter_tokens > d.limiter->burst)
            return AP_INVAL;
    } else if (d.limiter_tokens || d.limiter_wait_ns) {
        return AP_INVAL;
    }
    if (d.bulkhead) {
        if (d.bulkhead_permits == 0)
            d.bulkhead_permits = 1;
        if (d.bulkhead_permits > ap_sem_max(d.bulkhead))
            return AP_INVAL;
    } else if (d.bulkhead_permits || d.bulkhead_wait_ns) {
        return AP_INVAL;
    }
    if (!d.breaker && (d.classify || d.classify_ctx))
        return AP_INVAL;
    ap_retry_desc once = AP__ZERO;
    once.max_attempts = 1;
    once.backoff = AP_RETRY_BACKOFF_FIXED;
    const ap_retry_desc *rd = d.retry ? d.retry : &once;
    ap_retry_op rop = AP__ZERO;
    rop.start = ap__resil_start;
    rop.result = ap__resil_result;
    rop.canceled = ap__resil_canceled;
    rop.ctx = f;
    rop.storage = &f->att;
    ap_retry_state probe;
    if (ap_retry_state_init(&probe, rd) != AP_OK) /* before touching *f */
        return AP_INVAL;
    ap_status rc = ap_retry_fut_init(&f->retry, rd, d.rng, d.budget, &rop, deadline);
    AP_ASSERT(rc == AP_OK);
    (void)rc;
    d.retry = NULL; /* copied into the retry future */
    f->base.poll = ap__resil_poll_v;
    f->base.cancel = ap__resil_cancel_v;
    f->att.phase = AP__RESIL_DONE;
    f->att.app_error = 0;
    f->desc = d;
    f->op = *op;
    f->now = 0;
    f->res = AP__LIT(ap_resil_result){AP_NOT_READY, AP_OK, 0, 0, 0, AP_RETRY_STOP_RUNNING,
                               AP_RESIL_LAYER_NONE};
    memset(&f->stats, 0, sizeof f->stats);
    return AP_OK;
}

/* The retry's result, in the call's terms: AP_EXHAUSTED after a last
 * attempt that a layer refused is that refusal, AP_REJECTED. */
AP_API void ap__resil_sync(ap_resil_fut *f)
{
    ap_retry_result r = ap_retry_fut_result(&f->retry);
    ap_resil_layer by = f->res.rejected_by;
    bool refused = r.last_error == AP_REJECTED &&
                   (by == AP_RESIL_LAYER_LIMITER || by == AP_RESIL_LAYER_BULKHEAD ||
                    by == AP_RESIL_LAYER_BREAKER);
    f->res.status = r.status == AP_EXHAUSTED && refused ? AP_REJECTED : r.status;
    f->res.last_error = r.last_error;
    f->res.app_error = r.app_error;
    f->res.attempts = r.attempts;
    f->res.stop = r.stop;
}

AP_API ap_poll ap_resil_fut_poll(ap_resil_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->res.stop != AP_RETRY_STOP_RUNNING)
        return AP_READY;
    f->now = cx->now; /* for an attempt the retry cuts in this poll */
    ap_poll r = ap_retry_fut_poll(&f->retry, cx);
    ap__resil_sync(f);
    return r;
}

AP_API void ap_resil_fut_cancel(ap_resil_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->res.stop != AP_RETRY_STOP_RUNNING)
        return;
    ap_retry_fut_cancel(&f->retry); /* cancels the attempt, which gives all back */
    ap__resil_sync(f);
}

AP_API ap_resil_result ap_resil_fut_result(const ap_resil_fut *f)
{
    return f->res;
}

AP_API ap_status ap_resil_fut_status(const ap_resil_fut *f)
{
    return f->res.status;
}

AP_API void ap_resil_stats_get(const ap_resil_fut *f, ap_resil_stats *out)
{
    AP_ASSERT(out != NULL);
    *out = f->stats;
}

#endif /* ASYNCPAT_RESILIENCE_H */
