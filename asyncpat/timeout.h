/*
 * asyncpat/timeout.h -- bound any future by a deadline
 *
 * PATTERN
 *   ap_timeout wraps an ap_future with an absolute ap_deadline. Polling it
 *   polls the inner future until that completes or the deadline passes;
 *   then the inner future is cancelled (so it holds no waiter, permit or
 *   item anywhere) and the timeout completes with AP_TIMEDOUT. Timeouts
 *   nest and compose with every other future: retry(timeout(op)),
 *   timeout(ap_mpmc_pop_fut), ... One ap_deadline value passed down a
 *   chain means the same instant at every level.
 *
 * USAGE
 *   ap_mpmc_pop_fut pop;  ap_timeout t;
 *   ap_mpmc_pop_fut_init(&pop, q, &item);
 *   ap_timeout_init(&t, &pop.base, ap_deadline_after(now, 50 * AP_NS_PER_MS));
 *   ap_block_on(&t.base);
 *   if (ap_timeout_status(&t) == AP_OK) st = ap_mpmc_pop_status(&pop);
 *
 * GUARANTEES (invariants the tests check)
 *   - the deadline is checked before polling the inner future: once
 *     cx->now >= deadline the inner one is never polled again, whatever it
 *     would answer (an inner future that is always ready to be re-polled
 *     cannot keep the timeout alive);
 *   - and after: a PENDING inner future makes the timeout lower
 *     cx->deadline to its deadline, so the driver re-polls it by then even
 *     if the inner future never calls its waker;
 *   - on AP_TIMEDOUT (and on ap_timeout_cancel) the inner future has been
 *     cancelled exactly once; it is never cancelled after it completed;
 *   - the inner future's own result stays in the inner future; the timeout
 *     only says whether it completed (AP_OK) or not.
 *
 * CONCURRENCY  like any future: polled and cancelled by one thread at a
 *              time; wakes come through the inner future's registration.
 * ORDERING     none of its own (no atomics); the inner future's apply.
 * COMPLEXITY   O(1) per poll on top of the inner poll. MEMORY: caller's.
 * ERRORS       status: AP_NOT_READY while pending, then AP_OK (inner
 *              completed), AP_TIMEDOUT, AP_CANCELED.
 * SEE ALSO     future.h (contract), time.h (ap_deadline), retry.h
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_TIMEOUT_H
#define ASYNCPAT_TIMEOUT_H

#include "core.h"
#include "future.h"
#include "time.h"

typedef struct ap_timeout {
    ap_future base;       /* first: (ap_future *)t is the future */
    ap_future *inner;
    ap_deadline deadline;
    ap_status status;     /* AP_NOT_READY while pending */
} ap_timeout;

/**
 * ap_timeout_init - wrap @inner with an absolute deadline
 * @inner:    any future; owned by the caller, must outlive the timeout
 * @deadline: on the clock the driver passes in cx->now
 */
AP_API void ap_timeout_init(ap_timeout *t, ap_future *inner, ap_deadline deadline);

/** ap_timeout_init_after - the same with deadline = now + dur_ns (saturating) */
AP_API void ap_timeout_init_after(ap_timeout *t, ap_future *inner, uint64_t now,
                                  uint64_t dur_ns);

/**
 * ap_timeout_poll - poll the inner future unless the deadline has passed
 * Returns AP_READY when the inner one completed (status AP_OK) or the
 * deadline passed (AP_TIMEDOUT, inner cancelled); else AP_PENDING with
 * cx->deadline lowered to the timeout's deadline.
 */
AP_API ap_poll ap_timeout_poll(ap_timeout *t, ap_cx *cx);

/** ap_timeout_cancel - cancel the inner future if still pending; idempotent */
AP_API void ap_timeout_cancel(ap_timeout *t);

/** ap_timeout_status - AP_NOT_READY while pending, then AP_OK/AP_TIMEDOUT/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_timeout_status(const ap_timeout *t);

/** ap_timeout_remaining - ns left at @now (0 once passed) */
AP_API uint64_t ap_timeout_remaining(const ap_timeout *t, uint64_t now);

/* ---- implementation ---- */

AP__FUTURE_VTABLE(ap__timeout, ap_timeout, ap_timeout_poll, ap_timeout_cancel)

AP_API void ap_timeout_init(ap_timeout *t, ap_future *inner, ap_deadline deadline)
{
    AP_ASSERT(t != NULL && inner != NULL && inner->poll != NULL);
    t->base.poll = ap__timeout_poll_v;
    t->base.cancel = ap__timeout_cancel_v;
    t->inner = inner;
    t->deadline = deadline;
    t->status = AP_NOT_READY;
}

AP_API void ap_timeout_init_after(ap_timeout *t, ap_future *inner, uint64_t now,
                                  uint64_t dur_ns)
{
    ap_timeout_init(t, inner, ap_deadline_after(now, dur_ns));
}

AP_API ap_poll ap_timeout_poll(ap_timeout *t, ap_cx *cx)
{
    AP_ASSERT(t != NULL && cx != NULL);
    if (t->status != AP_NOT_READY)
        return AP_READY;
    if (ap_deadline_passed(t->deadline, cx->now)) { /* before */
        ap_future_cancel(t->inner);
        t->status = AP_TIMEDOUT;
        return AP_READY;
    }
    if (t->inner->poll(t->inner, cx) == AP_READY) {
        t->status = AP_OK;
        return AP_READY;
    }
    ap_cx_wake_at(cx, t->deadline); /* after: re-polled by the deadline */
    return AP_PENDING;
}

AP_API void ap_timeout_cancel(ap_timeout *t)
{
    AP_ASSERT(t != NULL);
    if (t->status != AP_NOT_READY)
        return;
    ap_future_cancel(t->inner);
    t->status = AP_CANCELED;
}

AP_API ap_status ap_timeout_status(const ap_timeout *t)
{
    return t->status;
}

AP_API uint64_t ap_timeout_remaining(const ap_timeout *t, uint64_t now)
{
    return ap_deadline_remaining(t->deadline, now);
}

#endif /* ASYNCPAT_TIMEOUT_H */
