/*
 * asyncpat/fanout.h -- fan-out / fan-in: a join set over child futures
 *
 * PATTERN
 *   Scatter-gather. The caller hands an ap_fanout n child futures (an
 *   array of ap_future *) and n child records (an array of ap_fanout_child
 *   in caller memory); the set is itself a future that completes when the
 *   children are done. At most `limit` children are in flight: the first
 *   `limit` are admitted at the first poll, and each later one is admitted
 *   as soon as an earlier one finishes, in input order; an admitted child
 *   is polled for the first time within the same poll of the set.
 *
 *   Each child is polled with its own waker, whose context is its record.
 *   That waker pushes the record onto the set's ready stack and then calls
 *   the set's own waker (the one from the latest poll of the set). A poll
 *   of the set takes the whole ready stack and polls only those children,
 *   plus newly started ones and children whose timer (a cx->deadline they
 *   lowered) has passed. So one wake costs O(1) child polls, where a join
 *   that polls every child on every wake does O(n) and O(n^2) in all (the
 *   join_all problem of futures-rs, issue 1603; FuturesUnordered's
 *   ready-to-run queue is the fix this follows). A poll runs three passes
 *   in this order: start (the first poll, and successors of children that
 *   finish), timers, then one pass over the ready stack, taken once. A
 *   child that wakes itself during its start poll or a timer poll has
 *   pushed itself onto the stack before it is taken, so the ready-stack
 *   pass of the same set poll polls it again. As in FuturesUnordered after
 *   its issue 2526, a child woken during the ready-stack pass (after the
 *   take) is polled at the next poll, not in a loop inside this one: one
 *   poll of the set polls a child at most three times (start or timer,
 *   then ready stack; at most twice with wakes only), so it does a bounded
 *   amount of work even if a child keeps waking itself.
 *
 *   Results. A child's status is read, right after it polls READY, by the
 *   caller's result callback `result(ctx, index, f)` (NULL: every completed
 *   child counts as AP_OK); it runs on the polling thread, under no lock.
 *   Any answer but AP_OK is a failure. AP_NOT_READY means "still pending"
 *   (status.h), so a callback that answers AP_NOT_READY for a completed child
 *   (e.g. it read a status that was never set) is a failure recorded as
 *   AP_TIMEDOUT (the child finished without a result): no child status
 *   and no set status is ever AP_NOT_READY once done. Completion is tracked
 *   apart from the status values, so no answer can keep the set pending.
 *   Input order: ap_fanout_child_status(s, i) for every input i (AP_NOT_READY
 *   while pending, AP_CANCELED if cancelled or never started). Completion
 *   order: if desc.order is given (n slots), order[k] is the index of the
 *   k-th child to complete; ap_fanout_completed() says how many are there.
 *
 *   Error policy (a child "fails" when result() is not AP_OK):
 *   FIRST   the first failure ends the set with that status: the siblings
 *           in flight are cancelled (once each), the ones not yet started
 *           are never started (never polled), and all of them count as
 *           cancelled (status AP_CANCELED).
 *   ALL     every child runs; the set's status is the first failure in
 *           completion order (AP_OK if none); ap_fanout_failed() counts them.
 *   IGNORE  every child runs; the set's status is AP_OK; failures are still
 *           counted and each child's own status is kept.
 *
 * USAGE (q holds void * elements, out is void *out[100], st an ap_status)
 *   ap_mpmc_pop_fut pops[100]; ap_future *kids[100]; ap_fanout_child recs[100];
 *   for (size_t i = 0; i < 100; i++) {
 *       ap_mpmc_pop_fut_init(&pops[i], q, &out[i]);
 *       kids[i] = &pops[i].base;
 *   }
 *   ap_fanout set;
 *   if (ap_fanout_init(&set, recs, sizeof recs, &(ap_fanout_desc){
 *           .children = kids, .n = 100, .limit = 8,
 *           .policy = AP_FANOUT_POLICY_FIRST, .result = pop_result }) != AP_OK)
 *       abort();
 *   ap_block_on(&set.base);                 // or poll it from an event loop
 *   st = ap_fanout_status(&set);            // AP_OK or the first error
 *   // with: static ap_status pop_result(void *ctx, size_t i, ap_future *f)
 *   //       { (void)ctx; (void)i; return ap_mpmc_pop_status((ap_mpmc_pop_fut *)f); }
 *
 * GUARANTEES (invariants the tests check)
 *   - at most `limit` children are in flight (admitted, not yet finished);
 *     limit 0 is AP_INVAL and changes nothing; limit > n means n
 *   - every child that is started is finished exactly once: it polls READY
 *     once (and is never polled again) or is cancelled once (never after
 *     it completed); children never admitted are never polled or
 *     cancelled (under FIRST, a child admitted in the poll that saw the
 *     failure may be cancelled before its first poll: future.h allows it)
 *   - child polls: one when it starts, then per poll of the set at most one
 *     because its deadline had passed (timer pass) and at most one because
 *     it was woken before that poll's ready-stack pass took the stack (a
 *     wake during its own start or timer poll counts: it is polled again
 *     in the same set poll). Wakes between two takes coalesce into one
 *     child poll. With wakes only, a child is polled at most
 *     1 + (number of times it was woken) times.
 *   - a set of k children that each complete D ns after they start (a
 *     timer child) finishes at exactly ceil(k / limit) * D on the driver's
 *     clock: a finished child's successor starts in the same poll
 *   - cancel (ap_fanout_cancel, or ap_future.cancel) cancels every child in
 *     flight and marks the rest cancelled; afterwards, and after the set
 *     polled READY, no child waker runs or will run (each child's cancel or
 *     READY guarantees that, future.h rule 5), so the set, the records and
 *     the set's waker may be reused or freed
 *   - the set's waker: a poll that passes a different waker (fn, ctx) than
 *     the previous poll replaces it, and before that poll returns every call
 *     of the previous waker that had started has returned; none starts
 *     later. So a driver's waker is never called after the set has moved on.
 *   - a zero-child set is READY at the first poll with AP_OK
 *
 * CONCURRENCY
 *   The set is polled and cancelled by one thread at a time (future.h rule
 *   4); the accessors read owner state and belong to that thread too (or
 *   to any thread after the set completed, given a happens-before edge).
 *   Child wakers may run on any thread, any number of times, concurrently
 *   with a poll or cancel of the set. What they touch: the record's
 *   `queued` flag and `next` link, the set's ready stack, and the set's
 *   waker slot (a small lock, core.h). Everything else is owner-only.
 *   Progress: a child wake is lock-free up to the short waker-slot lock
 *   (held for a copy of two words) plus the set's own waker call.
 *   Stated exception: a poll that replaces the set's waker (a different
 *   fn or ctx than the previous poll) spin-waits, with no bound of its
 *   own, for the calls of the old waker already in progress. It never
 *   waits for calls that start later (they see the new waker), so the
 *   wait lasts as long as the longest old-waker call in progress: short,
 *   since the waker contract (future.h) says a waker call is short and
 *   never blocks. A waker that blocks breaks that contract and stalls
 *   such a poll for as long as it blocks. A poll with the same waker as
 *   the previous one never waits.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   a wake: O(1). A poll of the set: O(1 + w + s + t) child
 *              polls for w woken records, s children started and t timers
 *              passed; when a timer has passed it also walks the in-flight
 *              list, O(limit) checks. A whole set whose children are woken
 *              once each: 2n child polls. cancel: O(limit + n).
 * MEMORY       caller memory only: the ap_fanout, n ap_fanout_child
 *              records (passed with their size in bytes: at least
 *              AP_FANOUT_BYTES(n), aligned to AP_FANOUT_ALIGN), the child
 *              futures, and an optional order array of n size_t. Nothing
 *              allocates.
 * ERRORS       init: AP_INVAL (desc NULL, limit 0, a policy out of range,
 *              n > 0 with the records or children NULL, records misaligned
 *              or too small, a NULL child or child poll), nothing changed.
 *              Set status: AP_NOT_READY while pending, then AP_OK, the first
 *              failure (FIRST, ALL) or AP_CANCELED, never AP_NOT_READY (a
 *              result of AP_NOT_READY is recorded as AP_TIMEDOUT). A NULL set
 *              pointer trips AP_ASSERT.
 * WAKE ORDER   the set polls the children woken since its last poll in the
 *              order their wakes reached it (FIFO). Children are admitted
 *              in input order, but a successor admitted when a child
 *              finishes is polled first (it goes on top of the work stack):
 *              with limit 2, children 0, 1, 2 may first be polled 0, 2, 1.
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_SPIN_LIMIT, AP_TEST_YIELD
 * SEE ALSO     future.h (the waker contract), timeout.h and retry.h (other
 *              futures made of futures), tests/test_fanout.c,
 *              tests/stress/stress_fanout.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_FANOUT_H
#define ASYNCPAT_FANOUT_H

#include "core.h"
#include "future.h"
#include "time.h"

/** ap_fanout_policy - what a child's failure does to the set */
typedef enum ap_fanout_policy {
    AP_FANOUT_POLICY_FIRST = 0, /* first failure cancels the rest (default) */
    AP_FANOUT_POLICY_ALL,       /* run everything, report the first failure */
    AP_FANOUT_POLICY_IGNORE     /* run everything, the set says AP_OK */
} ap_fanout_policy;

/**
 * ap_fanout_result_fn - read a completed child's status
 * @ctx:   desc.result_ctx
 * @index: the child's input index
 * @f:     the child future, which has just polled READY
 * Runs on the thread polling the set, under no lock. AP_OK is success.
 */
typedef ap_status (*ap_fanout_result_fn)(void *ctx, size_t index, ap_future *f);

/* One record per child, in caller memory (an array of n). Opaque: set up by
 * ap_fanout_init; read through the accessors. */
typedef struct ap_fanout_child {
    struct ap_fanout_child *next; /* ready-stack link: written by the waker
                                    * that set `queued`, read by the poller */
    AP_ATOMIC_T(uint32_t) queued;       /* 1 from a wake until the poller takes it */
    struct ap_fanout *set;        /* fixed at init */
    /* owner-only (the thread polling the set) from here */
    struct ap_fanout_child *run_prev, *run_next; /* in-flight list */
    struct ap_fanout_child *work_next;           /* to poll in this poll */
    uint64_t deadline; /* the child's last requested re-poll time */
    size_t index;
    ap_status status;  /* AP_NOT_READY until done */
    uint32_t state;    /* AP__FANOUT_* */
} ap_fanout_child;

/** AP_FANOUT_BYTES - least bytes of the records for @n children (constant
 *  expression; an array ap_fanout_child recs[n] has them) */
#define AP_FANOUT_BYTES(n) ((size_t)(n) * sizeof(ap_fanout_child))
/** AP_FANOUT_ALIGN - the alignment ap_fanout_init needs of the records */
#define AP_FANOUT_ALIGN AP_ALIGNOF(ap_fanout_child)

/** ap_fanout_desc - configuration for ap_fanout_init */
typedef struct ap_fanout_desc {
    ap_future **children;       /* n child futures (caller memory) */
    size_t n;                   /* number of children; 0: READY at once */
    size_t limit;               /* max in flight; 0 is AP_INVAL (no default) */
    ap_fanout_policy policy;    /* default (0): AP_FANOUT_POLICY_FIRST */
    ap_fanout_result_fn result; /* default NULL: every completed child is AP_OK */
    void *result_ctx;           /* passed to result */
    size_t *order;              /* optional, n slots: indices in completion order */
} ap_fanout_desc;

/* A join set. Not valid zero-initialised: use ap_fanout_init. */
typedef struct ap_fanout {
    ap_future base; /* first: (ap_future *)s is the future */
    /* shared with child wakers */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(ap_fanout_child *) ready; /* Treiber stack */
    ap__lock lock;              /* guards waker and epoch */
    ap_waker waker;             /* the set's waker, from the latest poll */
    uint32_t epoch;             /* which calling[] counts new waker calls */
    AP_ATOMIC_T(uint32_t) calling[2]; /* waker calls in progress, per epoch */
    /* owner-only */
    AP_ALIGNAS(AP_CACHELINE) ap_future **children;
    ap_fanout_child *recs;
    size_t n, limit;
    ap_fanout_policy policy;
    ap_fanout_result_fn result;
    void *result_ctx;
    size_t *order;
    size_t next_start;  /* first child not yet started */
    size_t running, completed, failed, canceled;
    ap_fanout_child *run_head; /* in-flight list */
    ap_fanout_child *work;     /* started, to poll before this poll returns */
    uint64_t next_timer;        /* earliest in-flight child deadline (may be early) */
    ap_waker owner_waker;       /* owner's copy of `waker` */
    ap_status first_error;
    ap_status status;           /* AP_NOT_READY while pending (never after done) */
    bool started;
    bool done;                  /* completed or cancelled: the only "done" test */
} ap_fanout;

/**
 * ap_fanout_init - set up a join set over caller-owned children
 * @s:     the set (caller memory)
 * @recs:  at least desc->n records (caller memory, AP_FANOUT_ALIGN-aligned),
 *         owned by the set until it is done; may be NULL when n is 0
 * @bytes: the size of @recs in bytes: at least AP_FANOUT_BYTES(desc->n)
 *         (sizeof recs for an array; records past n are not touched)
 * @desc:  children, n, limit, policy, result callback, order array; read
 *         now, not kept (the arrays it points to are kept)
 *
 * Returns AP_OK, or AP_INVAL (desc NULL, limit 0, policy out of range;
 * n > 0 with @recs or children NULL, @recs misaligned, @bytes too small, a
 * NULL child or child poll) with *s and @recs untouched. The children are
 * not polled until the set is.
 */
AP_API AP_NODISCARD ap_status ap_fanout_init(ap_fanout *s, ap_fanout_child *recs, size_t bytes,
                                             const ap_fanout_desc *desc);

/**
 * ap_fanout_poll - start, poll and collect children
 * Returns AP_READY when every child finished (or, under FIRST, one failed
 * and the rest were cancelled); ap_fanout_status() then holds the outcome.
 * AP_PENDING otherwise, with cx->waker kept and cx->deadline lowered to the
 * earliest deadline an in-flight child asked for.
 * Concurrency: one poller at a time; child wakers may run meanwhile.
 */
AP_API ap_poll ap_fanout_poll(ap_fanout *s, ap_cx *cx);

/**
 * ap_fanout_cancel - cancel every child in flight; the rest never start
 * Idempotent, and a no-op once the set completed. Afterwards no child
 * waker touches the set; status AP_CANCELED.
 */
AP_API void ap_fanout_cancel(ap_fanout *s);

/** ap_fanout_status - AP_NOT_READY while pending; then AP_OK, a failure or
 *  AP_CANCELED (never AP_NOT_READY: see PATTERN, Results) */
AP_API AP_NODISCARD ap_status ap_fanout_status(const ap_fanout *s);

/**
 * ap_fanout_child_status - input-order result of child @index
 * AP_NOT_READY while not finished; the result callback's answer once it
 * completed (AP_TIMEDOUT if that answer was AP_NOT_READY); AP_CANCELED if it
 * was cancelled or will never start.
 */
AP_API AP_NODISCARD ap_status ap_fanout_child_status(const ap_fanout *s, size_t index);

/** ap_fanout_completed - children that polled READY (= entries in desc.order) */
AP_API size_t ap_fanout_completed(const ap_fanout *s);
/** ap_fanout_failed - completed children whose result was not AP_OK */
AP_API size_t ap_fanout_failed(const ap_fanout *s);
/** ap_fanout_canceled - children cancelled in flight or never started */
AP_API size_t ap_fanout_canceled(const ap_fanout *s);
/** ap_fanout_in_flight - children started and not finished */
AP_API size_t ap_fanout_in_flight(const ap_fanout *s);

/**
 * ap_fanout_stats - counters (ap_fanout_stats_get). The set's counts are
 * owner-only fields the poll keeps anyway (ap_fanout_completed and the
 * rest read the same ones), so call it on the polling thread (or when no
 * poll runs): the snapshot is then exact. A finished child is in exactly
 * one of completed and canceled: children = pending + in_flight +
 * completed + canceled.
 */
typedef struct ap_fanout_stats {
    uint64_t children;  /* desc.n */
    uint64_t pending;   /* children not started yet (and not cancelled) */
    uint64_t in_flight; /* started and not finished */
    uint64_t completed; /* polled READY (failed ones included) */
    uint64_t failed;    /* completed with a result other than AP_OK */
    uint64_t canceled;  /* cancelled in flight or never started */
} ap_fanout_stats;
/** ap_fanout_stats_get - the counters into *@out (the poller's thread) */
AP_API void ap_fanout_stats_get(const ap_fanout *s, ap_fanout_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Ready stack: a Treiber stack used as the Linux kernel's llist (any
 *   number of pushers, one consumer that takes the whole stack with one
 *   exchange, so there is no ABA). Push: link `next`, then CAS the head
 *   with release; take: exchange with acquire, so every pushed record's
 *   `next` is visible to the consumer.
 *   Lost wakes: a child waker does   publish (the child's own state)
 *                                    x = exchange(queued, 1)  [acq_rel]
 *                                    if x == 0: push; wake the set
 *   and the poll does, per record taken from the stack,
 *                                    exchange(queued, 0)      [acq_rel]
 *                                    poll the child
 *   Both are read-modify-writes of one variable, so they are totally
 *   ordered: either the waker's exchange comes first and the poller's reads
 *   its 1 (release -> acquire: the child's published state happens-before
 *   the child poll), or the poller's comes first and the waker reads 0 and
 *   pushes again and wakes the set. A waker that reads 1 needs to do
 *   nothing: whoever wrote the 1 has pushed (or is pushing) the record and
 *   wakes the set after it.
 *   Set waker: wakers copy it under the lock and count themselves in
 *   `calling[epoch]` (under the same lock); a poll that replaces it flips
 *   the epoch under the lock and then waits (acquire load, pairing with
 *   the release decrement after each call) until the old epoch's count is
 *   0. A waker that read the old waker had pushed its record before, so
 *   that record is in the stack this poll takes (the count's release /
 *   acquire and the push's release / take's acquire order it); a waker that
 *   reads the new one wakes the new driver. No wake is lost across the
 *   change, and none reaches the old waker after the poll returns.
 */

enum {
    AP__FANOUT_IDLE = 0, /* not started */
    AP__FANOUT_RUNNING,
    AP__FANOUT_DONE,
    AP__FANOUT_CANCELED
};

AP__FUTURE_VTABLE(ap__fanout, ap_fanout, ap_fanout_poll, ap_fanout_cancel)

AP_API ap_status ap_fanout_init(ap_fanout *s, ap_fanout_child *recs, size_t bytes,
                                const ap_fanout_desc *desc)
{
    AP_ASSERT(s != NULL);
    /* every check before the first write: AP_INVAL touches nothing */
    if (desc == NULL || desc->limit == 0 ||
        (unsigned)desc->policy > (unsigned)AP_FANOUT_POLICY_IGNORE)
        return AP_INVAL;
    if (desc->n != 0) {
        if (recs == NULL || desc->children == NULL ||
            (uintptr_t)recs % AP_FANOUT_ALIGN != 0 ||
            desc->n > SIZE_MAX / sizeof(ap_fanout_child) || bytes < AP_FANOUT_BYTES(desc->n))
            return AP_INVAL;
        for (size_t i = 0; i < desc->n; i++)
            if (desc->children[i] == NULL || desc->children[i]->poll == NULL)
                return AP_INVAL;
    }
    s->base.poll = ap__fanout_poll_v;
    s->base.cancel = ap__fanout_cancel_v;
    AP_ATOMIC_INIT(&s->ready, (ap_fanout_child *)NULL);
    AP_ATOMIC_INIT(&s->lock.held, 0u);
    s->waker = AP_WAKER_NONE;
    s->epoch = 0;
    AP_ATOMIC_INIT(&s->calling[0], 0u);
    AP_ATOMIC_INIT(&s->calling[1], 0u);
    s->children = desc->children;
    s->recs = recs;
    s->n = desc->n;
    s->limit = desc->limit;
    s->policy = desc->policy;
    s->result = desc->result;
    s->result_ctx = desc->result_ctx;
    s->order = desc->order;
    s->next_start = 0;
    s->running = s->completed = s->failed = s->canceled = 0;
    s->run_head = NULL;
    s->work = NULL;
    s->next_timer = AP_DEADLINE_NONE;
    s->owner_waker = AP_WAKER_NONE;
    s->first_error = AP_OK;
    s->status = AP_NOT_READY;
    s->started = false;
    s->done = false;
    for (size_t i = 0; i < desc->n; i++) {
        ap_fanout_child *c = &recs[i];
        c->next = NULL;
        AP_ATOMIC_INIT(&c->queued, 0u);
        c->set = s;
        c->run_prev = c->run_next = c->work_next = NULL;
        c->deadline = AP_DEADLINE_NONE;
        c->index = i;
        c->status = AP_NOT_READY;
        c->state = AP__FANOUT_IDLE;
    }
    return AP_OK;
}

/* Any thread: call the set's current waker, counted in its epoch so that a
 * poll replacing it can wait for this call to end. */
AP_API void ap__fanout_wake_set(ap_fanout *s)
{
    ap__lock_acquire(&s->lock);
    ap_waker w = s->waker;
    uint32_t e = s->epoch;
    /* relaxed: the lock orders it before a replacing poll's wait. */
    AP_ATOMIC_FETCH_ADD(&s->calling[e], 1u, memory_order_relaxed);
    ap__lock_release(&s->lock);
    AP_TEST_YIELD(); /* a poll may replace the waker right here */
    ap_waker_wake(w);
    /* release: pairs with the acquire wait in ap__fanout_set_waker; this
     * call's last use of the old waker happens-before that poll returns. */
    AP_ATOMIC_FETCH_SUB(&s->calling[e], 1u, memory_order_release);
}

/* Any thread: the waker each child is polled with (ctx = its record). */
AP_API void ap__fanout_child_wake(void *ctx)
{
    ap_fanout_child *c = (ap_fanout_child *)ctx;
    ap_fanout *s = c->set;
    /* acq_rel: release publishes what the waking thread did before this
     * wake to the poller's exchange of queued (see ORDERING); acquire makes
     * the poller's read of c->next happen-before our rewrite of it. */
    if (AP_ATOMIC_EXCHANGE(&c->queued, 1u, memory_order_acq_rel) != 0)
        return; /* already queued: whoever queued it wakes the set */
    ap_fanout_child *head = AP_ATOMIC_LOAD(&s->ready, memory_order_relaxed);
    do {
        c->next = head;
        /* release: the link (and queued) is visible to the taker's acquire
         * exchange. Failure relaxed: we only retry with the new head. */
    } while (!AP_ATOMIC_CAS_WEAK(&s->ready, &head, c, memory_order_release,
                                 memory_order_relaxed));
    AP_TEST_YIELD(); /* pushed, set not yet woken */
    ap__fanout_wake_set(s);
}

/* Owner: adopt the poll's waker; if it changed, wait out calls of the old. */
AP_API void ap__fanout_set_waker(ap_fanout *s, ap_waker w)
{
    if (w.wake == s->owner_waker.wake && w.ctx == s->owner_waker.ctx)
        return;
    s->owner_waker = w;
    ap__lock_acquire(&s->lock);
    s->waker = w;
    uint32_t old = s->epoch;
    s->epoch = old ^ 1u;
    ap__lock_release(&s->lock);
    /* Unbounded by design (the stated exception in CONCURRENCY): only the
     * old waker's calls already in progress are counted, and each is a
     * waker call, which the contract says is short and never blocks. */
    unsigned spins = 0;
    /* acquire: pairs with the release decrement in ap__fanout_wake_set. */
    while (AP_ATOMIC_LOAD(&s->calling[old], memory_order_acquire) != 0)
        ap__backoff(&spins);
}

AP_API void ap__fanout_run_unlink(ap_fanout *s, ap_fanout_child *c)
{
    if (c->run_prev)
        c->run_prev->run_next = c->run_next;
    else
        s->run_head = c->run_next;
    if (c->run_next)
        c->run_next->run_prev = c->run_prev;
    c->run_prev = c->run_next = NULL;
    s->running--;
}

/* Owner: start the next child in input order (polled later in this poll). */
AP_API void ap__fanout_start_next(ap_fanout *s)
{
    ap_fanout_child *c = &s->recs[s->next_start++];
    c->state = AP__FANOUT_RUNNING;
    c->run_prev = NULL;
    c->run_next = s->run_head;
    if (s->run_head)
        s->run_head->run_prev = c;
    s->run_head = c;
    s->running++;
    c->work_next = s->work;
    s->work = c;
}

/* Owner: cancel everything in flight, never start the rest. */
AP_API void ap__fanout_stop(ap_fanout *s)
{
    while (s->run_head) {
        ap_fanout_child *c = s->run_head;
        ap__fanout_run_unlink(s, c);
        c->state = AP__FANOUT_CANCELED;
        c->status = AP_CANCELED;
        s->canceled++;
        /* After this returns the child never calls its waker (future.h
         * rule 5): nothing will touch @c or the set on its behalf. */
        ap_future_cancel(s->children[c->index]);
    }
    while (s->next_start < s->n) {
        ap_fanout_child *c = &s->recs[s->next_start++];
        c->state = AP__FANOUT_CANCELED;
        c->status = AP_CANCELED;
        s->canceled++;
    }
    s->work = NULL;
}

/* Owner: a child polled READY. */
AP_API void ap__fanout_finish(ap_fanout *s, ap_fanout_child *c)
{
    ap__fanout_run_unlink(s, c);
    c->state = AP__FANOUT_DONE;
    ap_status st = s->result ? s->result(s->result_ctx, c->index, s->children[c->index])
                             : AP_OK;
    if (st == AP_NOT_READY)
        st = AP_TIMEDOUT; /* a failure; AP_NOT_READY would read as "pending" */
    c->status = st;
    if (s->order)
        s->order[s->completed] = c->index;
    s->completed++;
    if (st != AP_OK) {
        s->failed++;
        if (s->first_error == AP_OK)
            s->first_error = st;
        if (s->policy == AP_FANOUT_POLICY_FIRST) {
            ap__fanout_stop(s);
            s->status = st;
            s->done = true;
            return;
        }
    }
    if (s->next_start < s->n)
        ap__fanout_start_next(s);
}

/* Owner: poll one child if it is still in flight. */
AP_API void ap__fanout_poll_child(ap_fanout *s, ap_fanout_child *c, ap_cx *cx)
{
    if (c->state != AP__FANOUT_RUNNING)
        return; /* finished earlier in this poll, or a stale stack entry */
    ap_cx ccx;
    ccx.waker.wake = ap__fanout_child_wake;
    ccx.waker.ctx = c;
    ccx.now = cx->now;
    ccx.deadline = AP_DEADLINE_NONE;
    ap_future *f = s->children[c->index];
    if (f->poll(f, &ccx) == AP_READY) {
        ap__fanout_finish(s, c);
        return;
    }
    c->deadline = ccx.deadline;
    if (ccx.deadline < s->next_timer)
        s->next_timer = ccx.deadline;
}

/* Owner: poll what was started, until nothing new starts. */
AP_API void ap__fanout_drain_work(ap_fanout *s, ap_cx *cx)
{
    while (s->work && !s->done) {
        ap_fanout_child *c = s->work;
        s->work = c->work_next;
        c->work_next = NULL;
        ap__fanout_poll_child(s, c, cx);
    }
}

AP_API ap_poll ap_fanout_poll(ap_fanout *s, ap_cx *cx)
{
    AP_ASSERT(s != NULL && cx != NULL);
    if (s->done)
        return AP_READY;
    ap__fanout_set_waker(s, cx->waker);
    if (!s->started) {
        s->started = true;
        size_t first = s->limit < s->n ? s->limit : s->n;
        for (size_t i = 0; i < first; i++)
            ap__fanout_start_next(s);
        /* start_next pushes onto a LIFO: reverse so they run in input order */
        ap_fanout_child *rev = NULL;
        while (s->work) {
            ap_fanout_child *c = s->work;
            s->work = c->work_next;
            c->work_next = rev;
            rev = c;
        }
        s->work = rev;
        ap__fanout_drain_work(s, cx);
    }
    /* Timers: poll the in-flight children whose deadline has passed. The
     * earliest deadline is recomputed here; between scans it may be stale
     * (too early), which costs one walk and no child poll. */
    if (!s->done && cx->now >= s->next_timer) {
        s->next_timer = AP_DEADLINE_NONE;
        for (ap_fanout_child *c = s->run_head, *nx; c && !s->done; c = nx) {
            nx = c->run_next; /* @c may finish and leave the list */
            if (c->deadline <= cx->now)
                ap__fanout_poll_child(s, c, cx);
            else if (c->deadline < s->next_timer)
                s->next_timer = c->deadline;
        }
        ap__fanout_drain_work(s, cx);
    }
    if (!s->done) {
        /* acquire: pairs with the pushers' release CAS (their links). */
        ap_fanout_child *top = AP_ATOMIC_EXCHANGE(&s->ready, (ap_fanout_child *)NULL,
                                                   memory_order_acquire);
        ap_fanout_child *fifo = NULL; /* reverse: oldest wake first */
        while (top) {
            ap_fanout_child *nx = top->next;
            top->next = fifo;
            fifo = top;
            top = nx;
        }
        while (fifo && !s->done) {
            ap_fanout_child *c = fifo;
            fifo = c->next; /* read before queued = 0 lets a waker relink @c */
            /* acq_rel: see ORDERING; a wake from here on pushes @c again. */
            (void)AP_ATOMIC_EXCHANGE(&c->queued, 0u, memory_order_acq_rel);
            AP_TEST_YIELD(); /* a waker may re-queue @c before its poll */
            ap__fanout_poll_child(s, c, cx);
            ap__fanout_drain_work(s, cx);
        }
        /* Records left in `fifo` when FIRST stopped the set are finished;
         * no waker will touch them again. */
    }
    if (!s->done && s->running == 0 && s->next_start >= s->n) {
        s->status = s->policy == AP_FANOUT_POLICY_IGNORE ? AP_OK : s->first_error;
        s->done = true;
    }
    if (s->done)
        return AP_READY;
    ap_cx_wake_at(cx, s->next_timer);
    return AP_PENDING;
}

AP_API void ap_fanout_cancel(ap_fanout *s)
{
    AP_ASSERT(s != NULL);
    if (s->done)
        return;
    ap__fanout_stop(s);
    s->status = AP_CANCELED;
    s->done = true;
}

AP_API ap_status ap_fanout_status(const ap_fanout *s)
{
    return s->status;
}

AP_API ap_status ap_fanout_child_status(const ap_fanout *s, size_t index)
{
    AP_ASSERT(index < s->n);
    return s->recs[index].status;
}

AP_API size_t ap_fanout_completed(const ap_fanout *s)
{
    return s->completed;
}

AP_API size_t ap_fanout_failed(const ap_fanout *s)
{
    return s->failed;
}

AP_API size_t ap_fanout_canceled(const ap_fanout *s)
{
    return s->canceled;
}

AP_API size_t ap_fanout_in_flight(const ap_fanout *s)
{
    return s->running;
}

AP_API void ap_fanout_stats_get(const ap_fanout *s, ap_fanout_stats *out)
{
    AP_ASSERT(s != NULL && out != NULL);
    out->children = (uint64_t)s->n;
    out->pending = (uint64_t)(s->n - s->next_start);
    out->in_flight = (uint64_t)s->running;
    out->completed = (uint64_t)s->completed;
    out->failed = (uint64_t)s->failed;
    out->canceled = (uint64_t)s->canceled;
}

#endif /* ASYNCPAT_FANOUT_H */
