/*
 * asyncpat/batch.h -- accumulate items, flush a batch on size OR age
 *
 * PATTERN
 *   A batcher collects items into one batch in caller memory and declares
 *   the batch due when EITHER it holds max_size items OR they weigh
 *   max_bytes (a weigher, like Kafka's batch.size) OR its oldest item
 *   has waited max_delay ns, on the caller's clock (now_ns arguments and
 *   cx->now; the library reads no clock, except that the blocking
 *   ap_batch_take_wait reads the clock named in the desc, desc.clock,
 *   ap_now_ns() by default: the one the caller's now_ns must come from
 *   when it uses both). A batcher that flushes only on
 *   size has unbounded latency under light load; one that sleeps or polls
 *   on a timer burns a thread or wakes for nothing. Here the instant the
 *   current batch must be flushed is a value, ap_batch_deadline(), which a
 *   loop arms as its timer, and the take future lowers cx->deadline to it,
 *   so a driver (ap_block_on, an epoll loop) wakes exactly then.
 *
 *   Typical uses: group writes into one syscall or one transaction, group
 *   requests into one RPC. The taker ships the batch; adders never wait:
 *
 *     producer:  switch (ap_batch_add(b, &item, now, &due)) {
 *                case AP_OK:   if (due) ship_if_taken(b, now); break;
 *                case AP_FULL: ship_if_taken(b, now); retry; // caller runs
 *                }
 *     timer/loop: at ap_batch_deadline(b): ap_batch_take(b, out, now, &n)
 *     or one taker thread: ap_batch_take_wait / a take future per batch
 *
 *   An item's producer may hear its batch's outcome (Kafka's per-record
 *   callback / future): ap_batch_add_done links a completion record in
 *   caller memory (a future, or a callback); the consumer takes the batch
 *   with its id (ap_batch_take_tracked, a take future's ap_batch_take_id),
 *   ships it, then reports ap_batch_complete(b, id, status); every record
 *   of that batch resolves once with that status.
 *
 * USAGE (one loop owns the batcher and a timer; write_batch returns an
 *        ap_status, acked(ctx, done, status) tells a record's producer)
 *   static struct rec buf[64], out[64];
 *   static ap_batch b;
 *   static void ship(void) {                  // on a due add and on the timer
 *       size_t n;
 *       uint64_t id;                          // the batch's outcome goes to its records
 *       while (ap_batch_take_tracked(&b, out, now(), &n, &id) == AP_OK)
 *           if (ap_batch_complete(&b, id, write_batch(out, n)) != AP_OK) abort();
 *       arm_timer(ap_batch_deadline(&b));     // AP_DEADLINE_NONE: disarm
 *   }
 *   static void on_record(const struct rec *r, ap_batch_done *done) {  // done: kept
 *       bool due;                                               // until acked runs
 *       ap_batch_done_init(done, acked, NULL);
 *       ap_status st = ap_batch_add_done(&b, r, now(), &due, done);
 *       if (st == AP_FULL) {   // r does not fit in 16 KiB: that batch is due now
 *           ship();
 *           st = ap_batch_add_done(&b, r, now(), &due, done);  // an empty batch takes it
 *       }
 *       if (st != AP_OK) return;
 *       if (due) ship();
 *       else arm_timer(ap_batch_deadline(&b));  // a batch's first item sets it
 *   }
 *   static void on_timer(void) { ship(); }
 *   // at start-up: 64 records or 16 KiB (rec_bytes weighs one) or 2 ms
 *   if (ap_batch_init(&b, buf, sizeof buf, &(ap_batch_desc){.elem_size = sizeof(struct rec),
 *                     .max_size = 64, .max_delay_ns = 2 * AP_NS_PER_MS,
 *                     .max_bytes = 16384, .weigh = rec_bytes}) != AP_OK)
 *       abort();
 *
 * GUARANTEES (invariants the tests check, with a fake clock)
 *   - latency: an item added at a is in a due batch by a + max_delay at
 *     the latest (its batch's deadline is oldest + max_delay <= a +
 *     max_delay), so a taker that takes at ap_batch_deadline() ships every
 *     item within max_delay of its arrival; the bound is tight
 *   - never early: before its deadline a batch with fewer than max_size
 *     items is not due (take answers AP_EMPTY), so batches are as large
 *     as the delay allows
 *   - a batch never exceeds max_size items; an add to a full batch is
 *     refused with AP_FULL (the item stays with the caller)
 *   - weight (max_bytes != 0): a batch of two or more items never weighs
 *     more than max_bytes; an add that would pass it is refused with
 *     AP_FULL and seals the batch (due now), so the caller's take, then
 *     retry, puts the item in the next batch
 *   - completion: each record passed to an add that returned AP_OK is
 *     resolved exactly once: with the status given to ap_batch_complete
 *     for the batch its item was taken in (AP_OK for an untracked take),
 *     never before that batch is taken and completed; or with AP_CANCELED
 *     by ap_batch_done_cancel before that. A record's callback runs, and
 *     its future's waker is woken, after its status is final
 *   - every added item is in exactly one batch, and batches hold items in
 *     the order of their adds (the lock's order), oldest batch first
 *   - close: adds are refused with AP_CLOSED; what is held becomes due at
 *     once, and takes drain it, then answer AP_CLOSED: nothing is lost
 *
 * DUE (exact, integer ns)
 *   The batch is due at `now` iff it is non-empty and
 *       len == max_size  or  closed  or  now >= oldest + max_delay
 *       or  weight >= max_bytes > 0  or  sealed (an add did not fit)
 *   where oldest is the smallest now_ns passed to the adds of its items
 *   (the minimum, not the first: clocks of different threads may be
 *   slightly apart, and the bound must hold for every item's own arrival).
 *   oldest + max_delay saturates at AP_DEADLINE_NONE.
 *
 * CONCURRENCY   every operation may run on any thread, concurrently with
 *   any other but init/fini: a short internal lock (core.h's ap__lock)
 *   guards the batch. Progress: blocking in the strict sense (a preempted
 *   lock holder delays the others); critical sections are O(1), except
 *   take/flush, which copy the batch out (O(len * elem_size) bytes).
 *   No user code and no waker runs under the lock.
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 * WAKE ORDER    FIFO among take futures. An add that brings a new
 *   deadline (the batch was empty, or the item's clock is behind the
 *   oldest) wakes every take future, so each re-arms its timer (waking one
 *   would strand the others if that one cancelled); an add that makes the
 *   batch full wakes one; close wakes all. A woken future that cancels
 *   passes the wake on (cancel_pass).
 * COMPLEXITY    add, deadline, is_due: O(1); take: O(len * elem_size);
 *   complete: O(1) per record when batches are completed in take order,
 *   else O(records of older pending batches) per record; done_cancel:
 *   O(pending records).
 * MEMORY        init: a caller buffer and its size in bytes: at least
 *   AP_BATCH_BYTES(max_size, elem_size), any alignment (AP_BATCH_ALIGN is
 *   1: items are copied bytewise); else AP_INVAL with nothing written;
 *   takes copy into a caller buffer of the same size. Completion records
 *   (ap_batch_done) are caller memory, linked while pending. Nothing
 *   allocates.
 * ERRORS        AP_INVAL (bad desc: NULL, elem_size or max_size 0, sizes
 *   that overflow; a buffer NULL or too small; a completion record NULL or
 *   still pending; complete of an id never taken, or with AP_NOT_READY;
 *   nothing changed), AP_FULL,
 *   AP_EMPTY, AP_CLOSED; AP_NOT_READY as a pending take future's status.
 *   Out-params are untouched unless AP_OK. A NULL object pointer, or a NULL buffer
 *   given to take, asserts.
 * CONFIG        AP_ASSERT, AP_SPIN_LIMIT
 * SEE ALSO      token_bucket.h (same clock convention), tests/test_batch.c
 * STABILITY     experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_BATCH_H
#define ASYNCPAT_BATCH_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_BATCH_BYTES - bytes of a batch buffer (constant expression) */
#define AP_BATCH_BYTES(max_size, elem_size) ((size_t)(max_size) * (size_t)(elem_size))
/** AP_BATCH_ALIGN - the alignment ap_batch_init needs of its buffer: 1, the
 *  items are copied bytewise (constant expression) */
#define AP_BATCH_ALIGN ((size_t)1)
/** the default max_delay_ns: 1 ms */
#define AP_BATCH_DEFAULT_DELAY_NS AP_NS_PER_MS

typedef struct ap_batch_desc {
    size_t elem_size;      /* bytes per item (required: 0 is AP_INVAL) */
    size_t max_size;       /* items per batch = the buffer's capacity
                              (required: 0 is AP_INVAL) */
    uint64_t max_delay_ns; /* longest an item waits before its batch is due
                              (default: 1 ms) */
    ap_clock clock;        /* the clock of ap_batch_take_wait and its
                              deadline, i.e. of the now_ns the caller
                              passes (default, zero: ap_now_ns) */
    size_t max_bytes;      /* the batch is due once its items weigh >=
                              max_bytes, and an add that would pass it is
                              AP_FULL (a lone item heavier than that still
                              makes a batch of one); 0: no byte limit */
    size_t (*weigh)(const void *elem, void *ctx); /* an item's weight in
                              bytes, called outside the lock (default,
                              NULL: elem_size) */
    void *weigh_ctx;       /* passed to weigh */
} ap_batch_desc;

struct ap_batch_done;
/** ap_batch_done_fn - an item's completion callback: runs once, on the
 *  thread that completes its batch, outside the lock, with the batch's
 *  status; @d is the caller's again (free to reuse) when it runs */
typedef void (*ap_batch_done_fn)(void *ctx, struct ap_batch_done *d, ap_status status);

/** ap_batch - one batcher; set up with ap_batch_init (a zero one is not valid) */
typedef struct ap_batch {
    ap__lock lock;
    /* guarded by lock: */
    size_t len;
    uint64_t oldest; /* smallest add time in the batch (valid if len > 0) */
    bool closed;
    bool sealed;     /* an add did not fit under max_bytes: due now */
    size_t bytes;    /* the batch's weight (see desc.max_bytes) */
    uint64_t added, batches, by_size, by_time, by_close, by_flush, by_bytes, completed;
    struct ap_batch_done *cur_head, *cur_tail; /* records of the current batch */
    struct ap_batch_done *fly_head, *fly_tail; /* records of taken batches, by id */
    /* read-only after init: */
    unsigned char *buf;
    size_t elem_size, max_size;
    uint64_t max_delay;
    ap_batch_desc desc; /* as resolved */
    ap_waitlist ready;  /* take futures */
} ap_batch;

/** counters (a consistent snapshot, taken under the lock) */
typedef struct ap_batch_stats {
    uint64_t added;   /* items accepted by ap_batch_add */
    uint64_t batches; /* batches taken (take, flush, futures) */
    uint64_t by_size; /* ... of which were due by size */
    uint64_t by_time; /* ... due by age */
    uint64_t by_close; /* ... due because the batcher was closed */
    uint64_t by_flush; /* ... taken early by ap_batch_flush */
    uint64_t by_bytes; /* ... due by weight (desc.max_bytes) */
    uint64_t completed; /* completion records resolved (complete, untracked
                           takes, cancel) */
    size_t len;       /* items held now */
    size_t bytes;     /* their weight */
} ap_batch_stats;

/**
 * ap_batch_done - one item's completion, in caller memory: a future
 * (ready once the item's batch is completed, its result the status given
 * to ap_batch_complete) and/or a callback. Set up with ap_batch_done_init,
 * hand to ap_batch_add_done; it belongs to the batcher from that add's
 * AP_OK until its status is final (ap_batch_done_status != AP_NOT_READY)
 * or its callback runs.
 */
typedef struct ap_batch_done {
    ap_future base; /* first: (ap_future *)d is the future */
    struct ap_batch_done *next; /* guarded by b->lock while linked */
    ap_batch *b;
    uint64_t batch_id; /* 0 in the current batch; the taken batch's id */
    ap_batch_done_fn fn;
    void *ctx;
    ap_waker waker;              /* guarded by b->lock */
    AP_ATOMIC_T(uint32_t) linked; /* 1 from add to resolution */
    AP_ATOMIC_T(int) status;     /* an ap_status; AP_NOT_READY until final */
} ap_batch_done;

typedef struct ap_batch_take_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_batch *b;
    void *out;
    size_t n;
    ap_waiter waiter;
    ap_status status;
    uint64_t id; /* the taken batch's id (AP_OK) */
} ap_batch_take_fut;

/**
 * ap_batch_desc_resolved - the desc with defaults filled in
 * Returns a copy in which max_delay_ns 0 became AP_BATCH_DEFAULT_DELAY_NS.
 */
AP_API ap_batch_desc ap_batch_desc_resolved(const ap_batch_desc *d);

/**
 * ap_batch_init - set up an empty batcher
 * @buf:   at least AP_BATCH_BYTES(max_size, elem_size) bytes of caller
 *         memory (any alignment), kept until fini
 * @bytes: the size of @buf (the excess is not touched)
 * @d:     the configuration (copied)
 *
 * Returns AP_OK, or AP_INVAL (d NULL, elem_size or max_size 0,
 * max_size * elem_size overflows, @buf NULL or @bytes too small); on
 * AP_INVAL *b and @buf are untouched.
 */
AP_API AP_NODISCARD ap_status ap_batch_init(ap_batch *b, void *buf, size_t bytes,
                                            const ap_batch_desc *d);
/** ap_batch_fini - end of life; frees nothing; items still held are dropped.
 *  Asserts (every build) that no take future is parked and no completion
 *  record is pending: complete every taken batch, and flush-and-complete or
 *  cancel the records of what is held, first. */
AP_API void ap_batch_fini(ap_batch *b);

/**
 * ap_batch_add - append one item to the current batch
 * @elem:   elem_size bytes, copied in
 * @now_ns: the caller's clock
 * @due:    if not NULL and AP_OK: whether the batch is due now (take it)
 *
 * Returns AP_OK, AP_FULL (the batch holds max_size items and waits for a
 * take: take it yourself, then retry) or AP_CLOSED; on failure the item
 * stays with the caller and *due is untouched.
 * Concurrency: any thread. Ordering: the lock's release; pairs with take.
 */
AP_API AP_NODISCARD ap_status ap_batch_add(ap_batch *b, const void *elem, uint64_t now_ns,
                                           bool *due);

/**
 * ap_batch_done_init - set up a completion record (caller memory)
 * @fn:  NULL (use the record as a future: ap_batch_done_poll, ap_block_on)
 *       or a callback run once with the batch's status
 * Its status is AP_NOT_READY until it is resolved.
 */
AP_API void ap_batch_done_init(ap_batch_done *d, ap_batch_done_fn fn, void *ctx);
/**
 * ap_batch_add_done - ap_batch_add, with a completion for this item
 * @done: an initialised record that is not pending (never added, or
 *        resolved): resolved exactly once, with the status its batch's
 *        consumer passes to ap_batch_complete, never before that batch
 *        is taken and completed
 *
 * Returns as ap_batch_add, or AP_INVAL (@done NULL or still pending;
 * nothing changed). On any failure @done is untouched and not pending.
 */
AP_API AP_NODISCARD ap_status ap_batch_add_done(ap_batch *b, const void *elem, uint64_t now_ns,
                                                bool *due, ap_batch_done *done);
/**
 * ap_batch_complete - report the outcome of a taken batch: resolve every
 * pending record of its items with @status (any status but AP_NOT_READY,
 * e.g. AP_OK, or the application's failure as AP_REJECTED / AP_CLOSED),
 * each once, running callbacks and wakers outside the lock.
 * @batch_id: from ap_batch_take_tracked / ap_batch_flush_tracked /
 *            ap_batch_take_id. Completing it again finds nothing (AP_OK).
 * Returns AP_OK, or AP_INVAL (@batch_id never taken, @status
 * AP_NOT_READY; nothing changed).
 */
AP_API AP_NODISCARD ap_status ap_batch_complete(ap_batch *b, uint64_t batch_id,
                                                ap_status status);
/** ap_batch_done_poll - the record as a future: AP_READY once resolved */
AP_API ap_poll ap_batch_done_poll(ap_batch_done *d, ap_cx *cx);
/**
 * ap_batch_done_cancel - stop waiting: the item still ships, but the
 * record leaves the batcher (status AP_CANCELED) unless already resolved;
 * free to reuse when this returns
 */
AP_API void ap_batch_done_cancel(ap_batch_done *d);
/** ap_batch_done_status - AP_NOT_READY while pending, then the batch's status
 *  (or AP_CANCELED); acquire: a final status makes the record reusable */
AP_API ap_status ap_batch_done_status(const ap_batch_done *d);

/**
 * ap_batch_deadline - the instant the current batch must be flushed
 * Returns AP_DEADLINE_NONE when empty, 0 when it is due whatever the time
 * (full, or closed), else oldest + max_delay. A snapshot: an add may move
 * it earlier (from AP_DEADLINE_NONE) at any moment.
 */
AP_API ap_deadline ap_batch_deadline(ap_batch *b);
/** ap_batch_is_due - whether a take at @now_ns would return a batch */
AP_API bool ap_batch_is_due(ap_batch *b, uint64_t now_ns);

/**
 * ap_batch_take - take the current batch if it is due at @now_ns
 * @out: AP_BATCH_BYTES(max_size, elem_size) bytes
 * @n:   receives the number of items copied to @out (1..max_size)
 *
 * Returns AP_OK, AP_EMPTY (no batch due: empty, or not yet due) or
 * AP_CLOSED (closed and empty). @out and *n are untouched unless AP_OK.
 */
AP_API AP_NODISCARD ap_status ap_batch_take(ap_batch *b, void *out, uint64_t now_ns,
                                            size_t *n);
/**
 * ap_batch_flush - take whatever is held now, due or not (shutdown, a
 * caller that must ship now). Returns AP_OK, AP_EMPTY or AP_CLOSED (closed
 * and empty); out-params as ap_batch_take.
 */
AP_API AP_NODISCARD ap_status ap_batch_flush(ap_batch *b, void *out, size_t *n);
/**
 * ap_batch_take_tracked / ap_batch_flush_tracked - take / flush, and give
 * the taken batch's id (1, 2, ... in take order) in *batch_id: its items'
 * completion records stay pending until ap_batch_complete(b, *batch_id, st).
 * The untracked forms (take, flush, take_wait) complete the batch
 * themselves, with AP_OK, as they take it.
 */
AP_API AP_NODISCARD ap_status ap_batch_take_tracked(ap_batch *b, void *out, uint64_t now_ns,
                                                    size_t *n, uint64_t *batch_id);
AP_API AP_NODISCARD ap_status ap_batch_flush_tracked(ap_batch *b, void *out, size_t *n,
                                                     uint64_t *batch_id);
/** ap_batch_close - refuse adds; what is held becomes due; wake every take future */
AP_API void ap_batch_close(ap_batch *b);
/** ap_batch_len - items held now (under the lock; stale once returned) */
AP_API size_t ap_batch_len(ap_batch *b);
/** ap_batch_stats_get - the counters into *@out, as one snapshot (under the lock) */
AP_API void ap_batch_stats_get(ap_batch *b, ap_batch_stats *out);

/**
 * ap_batch_take_fut_init / _poll / _cancel / _status / _count - a future that
 * completes with the next due batch in @out: it reads the time from cx->now
 * and lowers cx->deadline to the batch's deadline, and an add that makes
 * the batch non-empty (or its deadline earlier) or full wakes it. Result: AP_OK (ap_batch_take_count
 * items in @out), AP_CLOSED (closed and drained) or AP_CANCELED (took
 * nothing).
 */
AP_API void ap_batch_take_fut_init(ap_batch_take_fut *f, ap_batch *b, void *out);
AP_API ap_poll ap_batch_take_poll(ap_batch_take_fut *f, ap_cx *cx);
AP_API void ap_batch_take_cancel(ap_batch_take_fut *f);
/** result: AP_NOT_READY while pending, then AP_OK / AP_CLOSED / AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_batch_take_status(const ap_batch_take_fut *f);
/** items in the batch of a take future that completed with AP_OK, else 0 */
AP_API size_t ap_batch_take_count(const ap_batch_take_fut *f);
/** the id of the batch a take future completed with AP_OK, else 0: a take
 *  future is tracked (complete the batch with ap_batch_complete) */
AP_API uint64_t ap_batch_take_id(const ap_batch_take_fut *f);
/**
 * ap_batch_take_wait - block this thread until a batch is due, closed and
 * drained, or deadline_ns passes, on the batcher's clock (desc.clock;
 * ap_now_ns() by default): the take future is driven by
 * ap_block_on_until_clock, so a batch is due by age when that clock
 * reaches oldest + max_delay (oldest: the now_ns of the adds, which must
 * be on the same clock), and deadline_ns is an instant on it. Under a
 * fake clock it parks at most AP_CLOCK_PARK_MAX_NS of real time between
 * readings (future.h, CLOCKS).
 * Returns AP_OK (*n items in @out), AP_CLOSED or AP_TIMEDOUT.
 */
AP_API AP_NODISCARD ap_status ap_batch_take_wait(ap_batch *b, void *out, size_t *n,
                                                 ap_deadline deadline_ns);

/**
 * AP_BATCH_DEFINE(name, T) - typed wrapper: name, name_init(self, buf,
 * bytes, max_size, max_delay_ns), name_add, name_take, name_flush, name_deadline,
 * name_close, name_fini, with the element size sizeof(T). name_init uses
 * the default clock (ap_now_ns); for another, init self->b with
 * ap_batch_init and a desc naming it.
 */
#define AP_BATCH_DEFINE(name, T)                                                      \
    typedef struct name { ap_batch b; } name;                                       \
    AP__TYPED AP_NODISCARD ap_status name##_init(                                     \
        name *self, T *buf, size_t bytes, size_t max_size, uint64_t max_delay_ns)     \
    {                                                                                 \
        ap_batch_desc d = {.elem_size = sizeof(T), .max_size = max_size,              \
                           .max_delay_ns = max_delay_ns};                             \
        return ap_batch_init(&self->b, buf, bytes, &d);                               \
    }                                                                                 \
    AP__TYPED AP_NODISCARD ap_status name##_add(name *self, const T *elem,              \
                                                             uint64_t now_ns, bool *due) \
    { return ap_batch_add(&self->b, elem, now_ns, due); }                             \
    AP__TYPED AP_NODISCARD ap_status name##_take(name *self, T *out,                  \
                                                              uint64_t now_ns, size_t *n) \
    { return ap_batch_take(&self->b, out, now_ns, n); }                               \
    AP__TYPED AP_NODISCARD ap_status name##_flush(name *self, T *out, size_t *n)              \
    { return ap_batch_flush(&self->b, out, n); }                                      \
    AP__TYPED ap_deadline name##_deadline(name *self)                                 \
    { return ap_batch_deadline(&self->b); }                                           \
    AP__TYPED void name##_close(name *self) { ap_batch_close(&self->b); }              \
    AP__TYPED void name##_fini(name *self) { ap_batch_fini(&self->b); }

/* ---- implementation ---- */

/*
 * ORDERING      an add happens-before the take that returns its item (the
 *   lock's release/acquire). Wakes follow the waitlist ladder (waitlist.h),
 *   with the lock as the ordering mechanism: an adder changes the batch
 *   under the lock, releases it, then looks for waiters (a relaxed load of
 *   the waiter count: no fence, no seq_cst); a take future registers
 *   (count++), then re-checks under the lock. If its re-check's lock
 *   acquisition follows the adder's release it sees the item; otherwise its
 *   registration happens-before the adder's look (through the lock), which
 *   then reads the new count by coherence. The lock is the ordering
 *   mechanism in either ladder of waitlist.h, so the fallback needs
 *   nothing stronger.
 *   Completion: ap_batch_complete publishes a record's status with a
 *   release store under the lock, before running its callback and waker;
 *   a status read (acquire) that sees it, and the callback, happen after
 *   everything the completer did before ap_batch_complete. A poll stores
 *   its waker under the same lock and re-reads the status there: either
 *   the completer copies the waker, or the poll sees the status.
 */

AP_API ap_batch_desc ap_batch_desc_resolved(const ap_batch_desc *d)
{
    ap_batch_desc r = *d;
    if (r.max_delay_ns == 0)
        r.max_delay_ns = AP_BATCH_DEFAULT_DELAY_NS;
    return r;
}

AP_API ap_status ap_batch_init(ap_batch *b, void *buf, size_t bytes, const ap_batch_desc *d)
{
    size_t need;
    AP_ASSERT(b != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: a short buffer was overrun by adds; a NULL one tripped AP_ASSERT) */
    if (d == NULL || d->elem_size == 0 || d->max_size == 0 ||
        !ap__size_muladd(d->max_size, d->elem_size, 0, &need) || buf == NULL ||
        (uintptr_t)buf % AP_BATCH_ALIGN != 0 || bytes < need)
        return AP_INVAL;
    ap_batch_desc r = ap_batch_desc_resolved(d);
    AP_ATOMIC_INIT(&b->lock.held, 0u);
    b->len = 0;
    b->bytes = 0;
    b->sealed = false;
    b->oldest = 0;
    b->closed = false;
    b->added = b->batches = b->by_size = b->by_time = b->by_close = b->by_flush = 0;
    b->by_bytes = b->completed = 0;
    b->cur_head = b->cur_tail = b->fly_head = b->fly_tail = NULL;
    b->buf = (unsigned char *)buf;
    b->elem_size = r.elem_size;
    b->max_size = r.max_size;
    b->max_delay = r.max_delay_ns;
    b->desc = r;
    ap_waitlist_init(&b->ready);
    return AP_OK;
}

AP_API void ap_batch_fini(ap_batch *b)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    /* Every build: a parked take future would be woken into freed memory. */
    AP_ASSERT(!ap_waitlist_has_waiters(&b->ready));
    /* ... and a pending completion would never resolve: complete every
     * taken batch (items still held are dropped with their records only
     * if those were cancelled) */
    AP_ASSERT(b->cur_head == NULL && b->fly_head == NULL);
    b->buf = NULL;
}

/* Under the lock: the instant the batch is due (see DUE). */
AP_API ap_deadline ap__batch_deadline_locked(const ap_batch *b)
{
    if (b->len == 0)
        return AP_DEADLINE_NONE;
    if (b->len == b->max_size || b->closed || b->sealed ||
        (b->desc.max_bytes != 0 && b->bytes >= b->desc.max_bytes))
        return 0;
    return ap_deadline_after(b->oldest, b->max_delay);
}

/* The one add; @done NULL: no completion record. */
AP_API ap_status ap__batch_add(ap_batch *b, const void *elem, uint64_t now_ns, bool *due,
                               ap_batch_done *done)
{
    AP_ASSERT(b != NULL && b->buf != NULL && elem != NULL);
    size_t max_bytes = b->desc.max_bytes, wgt = b->elem_size;
    if (b->desc.weigh != NULL) /* user code: outside the lock */
        wgt = b->desc.weigh(elem, b->desc.weigh_ctx);
    if (done != NULL) {
        uint32_t idle = 0; /* claim the record: a pending one is AP_INVAL */
        if (!AP_ATOMIC_CAS_STRONG(&done->linked, &idle, 1u, memory_order_acquire,
                                  memory_order_relaxed))
            return AP_INVAL;
    }
    ap__lock_acquire(&b->lock);
    if (b->closed || b->len == b->max_size ||
        (max_bytes != 0 && b->len > 0 &&
         (b->bytes >= max_bytes || wgt > max_bytes - b->bytes))) {
        ap_status st = b->closed ? AP_CLOSED : AP_FULL;
        /* an item that does not fit under max_bytes seals the batch: it is
         * due now (as Kafka closes a batch the next record does not fit) */
        bool seal = !b->closed && b->len < b->max_size && !b->sealed;
        if (seal)
            b->sealed = true;
        ap__lock_release(&b->lock);
        if (done != NULL) /* relaxed: nothing is published (never linked) */
            AP_ATOMIC_STORE(&done->linked, 0u, memory_order_relaxed);
        /* relaxed: ordered by the lock, as the wakes below (see ORDERING) */
        if (seal && AP_ATOMIC_LOAD(&b->ready.count, memory_order_relaxed) != 0)
            (void)ap_waitlist_wake(&b->ready, 1);
        return st;
    }
    memcpy(b->buf + b->len * b->elem_size, elem, b->elem_size);
    if (b->len == 0)
        b->bytes = 0;
    b->bytes = wgt > SIZE_MAX - b->bytes ? SIZE_MAX : b->bytes + wgt;
    if (done != NULL) { /* the record joins the current batch */
        done->b = b;
        done->batch_id = 0;
        done->next = NULL;
        done->waker = AP_WAKER_NONE;
        AP_ATOMIC_STORE(&done->status, (int)AP_NOT_READY, memory_order_relaxed);
        if (b->cur_tail != NULL)
            b->cur_tail->next = done;
        else
            b->cur_head = done;
        b->cur_tail = done;
    }
    /* the first item brings a deadline, and an item from a clock that is
     * behind brings an earlier one: every parked future must learn it (one
     * woken future that then cancels would strand the others) */
    bool new_deadline = b->len == 0 || now_ns < b->oldest;
    if (new_deadline)
        b->oldest = now_ns;
    b->len++;
    b->added++;
    bool full = b->len == b->max_size || /* due by size or weight: one taker */
                (max_bytes != 0 && b->bytes >= max_bytes);
    bool is_due = now_ns >= ap__batch_deadline_locked(b);
    ap__lock_release(&b->lock);
    /* after the release: the waking side of the ladder (see ORDERING).
     * relaxed: the lock orders a registration that came first before us. */
    if ((new_deadline || full) &&
        AP_ATOMIC_LOAD(&b->ready.count, memory_order_relaxed) != 0) {
        if (new_deadline)
            (void)ap_waitlist_wake_all(&b->ready);
        else
            (void)ap_waitlist_wake(&b->ready, 1);
    }
    if (due)
        *due = is_due;
    return AP_OK;
}

AP_API ap_status ap_batch_add(ap_batch *b, const void *elem, uint64_t now_ns, bool *due)
{
    return ap__batch_add(b, elem, now_ns, due, NULL);
}

AP_API ap_status ap_batch_add_done(ap_batch *b, const void *elem, uint64_t now_ns, bool *due,
                                   ap_batch_done *done)
{
    if (done == NULL)
        return AP_INVAL;
    return ap__batch_add(b, elem, now_ns, due, done);
}

AP__FUTURE_VTABLE(ap__batch_done, ap_batch_done, ap_batch_done_poll, ap_batch_done_cancel)

AP_API void ap_batch_done_init(ap_batch_done *d, ap_batch_done_fn fn, void *ctx)
{
    AP_ASSERT(d != NULL);
    d->base.poll = ap__batch_done_poll_v;
    d->base.cancel = ap__batch_done_cancel_v;
    d->next = NULL;
    d->b = NULL;
    d->batch_id = 0;
    d->fn = fn;
    d->ctx = ctx;
    d->waker = AP_WAKER_NONE;
    AP_ATOMIC_INIT(&d->linked, 0u);
    AP_ATOMIC_INIT(&d->status, (int)AP_NOT_READY);
}

/* Under the lock: unlink @d from the list (*head, *tail); whether it was there. */
AP_API bool ap__batch_unlink(ap_batch_done **head, ap_batch_done **tail, ap_batch_done *d)
{
    ap_batch_done *prev = NULL, *x = *head;
    while (x != NULL && x != d)
        prev = x, x = x->next;
    if (x == NULL)
        return false;
    if (prev != NULL)
        prev->next = d->next;
    else
        *head = d->next;
    if (*tail == d)
        *tail = prev;
    d->next = NULL;
    return true;
}

/* Under the lock: publish @d's final status; d is the caller's once the
 * release store is seen (linked first: a reuse sees it idle). */
AP_API void ap__batch_resolve_locked(ap_batch *b, ap_batch_done *d, ap_status st)
{
    AP_ATOMIC_STORE(&d->linked, 0u, memory_order_relaxed);
    AP_ATOMIC_STORE(&d->status, (int)st, memory_order_release);
    b->completed++;
}

/* records resolved per lock hold by ap_batch_complete */
#define AP__BATCH_RUN 16

AP_API ap_status ap__batch_complete(ap_batch *b, uint64_t batch_id, ap_status status)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    if (status == AP_NOT_READY)
        return AP_INVAL;
    ap__lock_acquire(&b->lock);
    if (batch_id == 0 || batch_id > b->batches) {
        ap__lock_release(&b->lock);
        return AP_INVAL;
    }
    for (;;) {
        /* the taken records are in id order: skip older batches' */
        ap_batch_done *prev = NULL, *d = b->fly_head;
        while (d != NULL && d->batch_id < batch_id)
            prev = d, d = d->next;
        /* resolve up to AP__BATCH_RUN records of this batch per lock hold,
         * keeping copies of what their callbacks and wakers need: a record
         * may be reused once resolved, and no user code runs under the
         * lock */
        struct {
            ap_batch_done_fn fn;
            void *ctx;
            ap_batch_done *d;
            ap_waker w;
        } run[AP__BATCH_RUN];
        size_t n = 0;
        while (n < AP__BATCH_RUN && d != NULL && d->batch_id == batch_id) {
            ap_batch_done *next = d->next;
            if (prev != NULL)
                prev->next = next;
            else
                b->fly_head = next;
            if (b->fly_tail == d)
                b->fly_tail = prev;
            d->next = NULL;
            run[n].fn = d->fn;
            run[n].ctx = d->ctx;
            run[n].d = d;
            run[n].w = d->waker;
            n++;
            ap__batch_resolve_locked(b, d, status);
            d = next;
        }
        ap__lock_release(&b->lock);
        for (size_t i = 0; i < n; i++) { /* in add order */
            if (run[i].fn != NULL)
                run[i].fn(run[i].ctx, run[i].d, status);
            ap_waker_wake(run[i].w);
        }
        if (n < AP__BATCH_RUN)
            return AP_OK; /* the batch's run ended under the lock */
        ap__lock_acquire(&b->lock);
    }
}

AP_API ap_status ap_batch_complete(ap_batch *b, uint64_t batch_id, ap_status status)
{
    return ap__batch_complete(b, batch_id, status);
}

AP_API ap_poll ap_batch_done_poll(ap_batch_done *d, ap_cx *cx)
{
    AP_ASSERT(d != NULL && cx != NULL);
    if (AP_ATOMIC_LOAD(&d->status, memory_order_acquire) != (int)AP_NOT_READY)
        return AP_READY;
    AP_ASSERT(d->b != NULL); /* added (a pending record) */
    ap_batch *b = d->b;
    /* the waker is stored under the lock that ap_batch_complete resolves
     * under: either it sees our waker, or we see its status */
    ap__lock_acquire(&b->lock);
    bool done = AP_ATOMIC_LOAD(&d->status, memory_order_acquire) != (int)AP_NOT_READY;
    if (!done)
        d->waker = cx->waker;
    ap__lock_release(&b->lock);
    return done ? AP_READY : AP_PENDING;
}

AP_API void ap_batch_done_cancel(ap_batch_done *d)
{
    AP_ASSERT(d != NULL);
    if (AP_ATOMIC_LOAD(&d->status, memory_order_acquire) != (int)AP_NOT_READY)
        return;
    ap_batch *b = d->b;
    if (b == NULL) { /* never added */
        AP_ATOMIC_STORE(&d->status, (int)AP_CANCELED, memory_order_release);
        return;
    }
    ap__lock_acquire(&b->lock);
    /* relaxed: under the lock, which every resolution holds */
    if (AP_ATOMIC_LOAD(&d->status, memory_order_relaxed) == (int)AP_NOT_READY &&
        (ap__batch_unlink(&b->cur_head, &b->cur_tail, d) ||
         ap__batch_unlink(&b->fly_head, &b->fly_tail, d)))
        ap__batch_resolve_locked(b, d, AP_CANCELED);
    ap__lock_release(&b->lock);
}

AP_API ap_status ap_batch_done_status(const ap_batch_done *d)
{
    return (ap_status)AP_ATOMIC_LOAD(&d->status, memory_order_acquire);
}

AP_API ap_deadline ap_batch_deadline(ap_batch *b)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    ap__lock_acquire(&b->lock);
    ap_deadline d = ap__batch_deadline_locked(b);
    ap__lock_release(&b->lock);
    return d;
}

AP_API bool ap_batch_is_due(ap_batch *b, uint64_t now_ns)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    ap__lock_acquire(&b->lock);
    bool is_due = b->len > 0 && now_ns >= ap__batch_deadline_locked(b);
    ap__lock_release(&b->lock);
    return is_due;
}

/* The one take: if @force or the batch is due at @now_ns, move it to @out.
 * *deadline (if not NULL) receives the deadline when nothing was taken. */
AP_API ap_status ap__batch_take(ap_batch *b, void *out, uint64_t now_ns, bool force,
                                size_t *n, ap_deadline *deadline, uint64_t *id)
{
    AP_ASSERT(b != NULL && b->buf != NULL && out != NULL && n != NULL);
    ap__lock_acquire(&b->lock);
    ap_deadline d = ap__batch_deadline_locked(b);
    if (b->len == 0 || (!force && now_ns < d)) {
        ap_status st = b->len == 0 && b->closed ? AP_CLOSED : AP_EMPTY;
        ap__lock_release(&b->lock);
        if (deadline)
            *deadline = d;
        return st;
    }
    size_t len = b->len;
    memcpy(out, b->buf, len * b->elem_size);
    b->len = 0;
    b->batches++;
    if (b->cur_head != NULL) { /* its records fly with the batch's id */
        for (ap_batch_done *d = b->cur_head; d != NULL; d = d->next)
            d->batch_id = b->batches;
        if (b->fly_tail != NULL)
            b->fly_tail->next = b->cur_head;
        else
            b->fly_head = b->cur_head;
        b->fly_tail = b->cur_tail;
        b->cur_head = b->cur_tail = NULL;
    }
    if (len == b->max_size)
        b->by_size++;
    else if (b->sealed || (b->desc.max_bytes != 0 && b->bytes >= b->desc.max_bytes))
        b->by_bytes++;
    else if (b->closed)
        b->by_close++;
    else if (now_ns >= d)
        b->by_time++;
    else
        b->by_flush++;
    b->bytes = 0;
    b->sealed = false;
    uint64_t taken = b->batches;
    ap__lock_release(&b->lock);
    *n = len;
    if (id != NULL)
        *id = taken;
    return AP_OK;
}

/* An untracked take completes its batch at once, with AP_OK. */
AP_API ap_status ap__batch_take_untracked(ap_batch *b, void *out, uint64_t now_ns, bool force,
                                          size_t *n)
{
    uint64_t id = 0;
    ap_status st = ap__batch_take(b, out, now_ns, force, n, NULL, &id);
    if (st == AP_OK)
        (void)ap__batch_complete(b, id, AP_OK);
    return st;
}

AP_API ap_status ap_batch_take(ap_batch *b, void *out, uint64_t now_ns, size_t *n)
{
    return ap__batch_take_untracked(b, out, now_ns, false, n);
}

AP_API ap_status ap_batch_flush(ap_batch *b, void *out, size_t *n)
{
    /* forced: counted by_flush, unless full or closed (counted as such
     * first); now 0 never meets an age deadline, which is never 0 */
    return ap__batch_take_untracked(b, out, 0, true, n);
}

AP_API ap_status ap_batch_take_tracked(ap_batch *b, void *out, uint64_t now_ns, size_t *n,
                                       uint64_t *batch_id)
{
    AP_ASSERT(batch_id != NULL);
    return ap__batch_take(b, out, now_ns, false, n, NULL, batch_id);
}

AP_API ap_status ap_batch_flush_tracked(ap_batch *b, void *out, size_t *n, uint64_t *batch_id)
{
    AP_ASSERT(batch_id != NULL);
    return ap__batch_take(b, out, 0, true, n, NULL, batch_id);
}

AP_API void ap_batch_close(ap_batch *b)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    ap__lock_acquire(&b->lock);
    b->closed = true;
    ap__lock_release(&b->lock);
    if (ap_waitlist_has_waiters(&b->ready))
        (void)ap_waitlist_wake_all(&b->ready);
}

AP_API size_t ap_batch_len(ap_batch *b)
{
    AP_ASSERT(b != NULL && b->buf != NULL);
    ap__lock_acquire(&b->lock);
    size_t len = b->len;
    ap__lock_release(&b->lock);
    return len;
}

AP_API void ap_batch_stats_get(ap_batch *b, ap_batch_stats *out)
{
    AP_ASSERT(b != NULL && b->buf != NULL && out != NULL);
    ap_batch_stats s;
    ap__lock_acquire(&b->lock);
    s.added = b->added;
    s.batches = b->batches;
    s.by_size = b->by_size;
    s.by_time = b->by_time;
    s.by_close = b->by_close;
    s.by_flush = b->by_flush;
    s.by_bytes = b->by_bytes;
    s.completed = b->completed;
    s.len = b->len;
    s.bytes = b->len ? b->bytes : 0;
    ap__lock_release(&b->lock);
    *out = s;
}

AP__FUTURE_VTABLE(ap__batch_take, ap_batch_take_fut, ap_batch_take_poll, ap_batch_take_cancel)

AP_API void ap_batch_take_fut_init(ap_batch_take_fut *f, ap_batch *b, void *out)
{
    AP_ASSERT(f != NULL && b != NULL && out != NULL);
    f->base.poll = ap__batch_take_poll_v;
    f->base.cancel = ap__batch_take_cancel_v;
    f->b = b;
    f->out = out;
    f->n = 0;
    f->id = 0;
    ap_waiter_init(&f->waiter);
    f->status = AP_NOT_READY;
}

AP_API ap_poll ap_batch_take_poll(ap_batch_take_fut *f, ap_cx *cx)
{
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_deadline d = AP_DEADLINE_NONE;
    size_t n = 0;
    uint64_t id = 0;
    ap_status st = ap__batch_take(f->b, f->out, cx->now, false, &n, &d, &id);
    if (st == AP_EMPTY) {
        /* register, then re-check under the lock (the ladder) */
        ap_waitlist_register_cx(&f->b->ready, &f->waiter, cx);
        AP_TEST_YIELD(); /* between registering and re-checking */
        st = ap__batch_take(f->b, f->out, cx->now, false, &n, &d, &id);
    }
    if (st == AP_EMPTY) {
        ap_cx_wake_at(cx, d); /* the age deadline, if the batch has items */
        return AP_PENDING;
    }
    /* Done: a wake that reached us and that we did not use goes on. */
    ap_waitlist_cancel_pass(&f->b->ready, &f->waiter);
    f->n = st == AP_OK ? n : 0;
    f->id = st == AP_OK ? id : 0;
    f->status = st;
    return AP_READY;
}

AP_API void ap_batch_take_cancel(ap_batch_take_fut *f)
{
    ap_waitlist_cancel_pass(&f->b->ready, &f->waiter);
    if (f->status == AP_NOT_READY)
        f->status = AP_CANCELED;
}

AP_API ap_status ap_batch_take_status(const ap_batch_take_fut *f)
{
    return f->status;
}

AP_API size_t ap_batch_take_count(const ap_batch_take_fut *f)
{
    return f->status == AP_OK ? f->n : 0;
}

AP_API uint64_t ap_batch_take_id(const ap_batch_take_fut *f)
{
    return f->status == AP_OK ? f->id : 0;
}

AP_API ap_status ap_batch_take_wait(ap_batch *b, void *out, size_t *n,
                                    ap_deadline deadline_ns)
{
    AP_ASSERT(n != NULL);
    ap_batch_take_fut f;
    ap_batch_take_fut_init(&f, b, out);
    if (ap_block_on_until_clock(&f.base, deadline_ns, &b->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    if (f.status == AP_OK) {
        *n = f.n;
        (void)ap__batch_complete(b, f.id, AP_OK); /* untracked */
    }
    return f.status;
}

#endif /* ASYNCPAT_BATCH_H */
