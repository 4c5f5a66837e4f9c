/*
 * asyncpat/mpmc.h -- bounded multi-producer / multi-consumer FIFO
 *
 * PATTERN
 *   Dmitry Vyukov's bounded MPMC queue: every slot carries a stamp (a
 *   sequence number). A producer holding ticket t may fill slot t's index
 *   when stamp == t and publishes stamp = t + 1; a consumer may drain it
 *   when stamp == t + 1 and frees it with stamp = t + one lap. Tickets are
 *   claimed with a CAS on tail (producers) or head (consumers), so the two
 *   sides only meet on the slots, and head and tail sit on their own cache
 *   lines. Positions are encoded as lap | index with a lap of
 *   2 * pow2_ceil(capacity + 1), as crossbeam's ArrayQueue does, so any
 *   capacity >= 1 is honoured exactly (Vyukov's original needs a power of
 *   two >= 2). The bit below the lap in tail is the CLOSED flag: once set,
 *   no producer can claim a ticket.
 *
 * USAGE
 *   ap_mpmc *q;
 *   if (ap_mpmc_create(&q, 1024, sizeof(struct job), NULL) != AP_OK) abort();
 *   struct job j = {0};
 *   if (ap_mpmc_push_wait(q, &j, AP_DEADLINE_NONE) != AP_OK) abort();  // any thread
 *   while (ap_mpmc_pop_wait(q, &j, AP_DEADLINE_NONE) == AP_OK) run(&j);
 *   ap_mpmc_destroy(q);   // after ap_mpmc_close and draining
 *
 * GUARANTEES (invariants the tests check)
 *   - holds at most `capacity` elements, exactly as asked
 *   - an element pushed with AP_OK is popped exactly once while the queue
 *     lives; elements from one producer leave in the order it pushed them
 *   - linearizable emptiness: try_pop answers AP_EMPTY only if at one
 *     instant during the call every claimed push had been popped
 *   - after close: pushes return AP_CLOSED (element stays with the caller);
 *     pops drain what is left, then return AP_CLOSED; every future wakes
 *
 * CONCURRENCY          try_push  try_pop  close  len   fini
 *   try_push / futures   yes       yes     yes    yes   no
 *   try_pop / futures    yes       yes     yes    yes   no
 *   Progress: try_* never block (a push or pop that finds a future parked
 *   on the other side takes the waitlist's short lock to wake it). A
 *   producer preempted between claiming and
 *   publishing its slot makes a consumer at that slot spin AP_SPIN_LIMIT
 *   times and then answer AP_AGAIN ("an element is in flight: retry"),
 *   never a false AP_EMPTY; symmetrically for a producer facing a slot a
 *   consumer is still copying out. So the queue is not lock-free in the
 *   strict sense (a stalled thread can hold up the one slot it claimed).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   O(1) per op (a CAS retry only when another thread won);
 *              memory = capacity * AP_MPMC_STRIDE(elem) bytes + the header.
 * LIMITS       capacity <= SIZE_MAX >> 4. Tickets are size_t and wrap: a
 *              push (pop) stalled between its load and its CAS of the tail
 *              (head) while others complete a multiple of the ticket period,
 *              2^(w-2) to 2^(w-1) pushes for a w-bit size_t, could be fooled:
 *              never in practice with 64 bits, over 2^30 operations during
 *              one stall with 32 (i386).
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_MPMC_BYTES(capacity, elem_size), aligned to AP_MPMC_ALIGN
 *              (the slot stamps are size_t); else AP_INVAL, and a short
 *              buffer is never written past; create: one allocation.
 * ERRORS       AP_FULL, AP_EMPTY, AP_AGAIN (a peer is between claiming and
 *              publishing the slot: retry at once), AP_CLOSED; AP_NOT_READY
 *              as a pending future's status; AP_INVAL for
 *              capacity 0, elem_size 0, sizes that overflow, a buffer that
 *              is NULL, too small or misaligned (nothing changed).
 *              Out-params are untouched on failure.
 * WAKE ORDER   FIFO among waiting futures; each push wakes one popper and
 *              each pop one pusher; a woken future that cancels passes the
 *              wake on.
 * CONFIG       AP_CACHELINE, AP_SPIN_LIMIT, AP_ASSERT, AP_NO_MALLOC
 * SEE ALSO     spsc.h, examples/producer_consumer.c, examples/mpmc_future.c,
 *              bench/bench_queue.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_MPMC_H
#define ASYNCPAT_MPMC_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_MPMC_STRIDE - bytes per slot: a size_t stamp, then the element */
#define AP_MPMC_STRIDE(elem_size)                                            \
    (((size_t)(elem_size) + sizeof(size_t) + sizeof(size_t) - 1) /           \
     sizeof(size_t) * sizeof(size_t))
/** AP_MPMC_BYTES - buffer bytes for ap_mpmc_init (constant expression) */
#define AP_MPMC_BYTES(capacity, elem_size) \
    ((size_t)(capacity) * AP_MPMC_STRIDE(elem_size))
/** AP_MPMC_ALIGN - the alignment ap_mpmc_init needs of its buffer: each
 *  slot starts with an atomic size_t stamp (constant expression) */
#define AP_MPMC_ALIGN ((size_t)AP_ALIGNOF(size_t))

typedef struct ap_mpmc {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) tail; /* next push ticket | CLOSED */
    AP__GAP(0);
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) head; /* next pop ticket */
    AP__GAP(1);
    AP_ALIGNAS(AP_CACHELINE) unsigned char *buf;  /* read-only after init from here */
    size_t capacity;
    size_t mark;     /* CLOSED bit = pow2_ceil(capacity + 1); index mask = mark - 1 */
    size_t one_lap;  /* 2 * mark */
    size_t stride;
    size_t elem_size;
    size_t start;    /* both positions at init (the stats count from it) */
    const ap_allocator *alloc; /* set by create */
    ap_waitlist not_empty;     /* poppers */
    ap_waitlist not_full;      /* pushers */
} ap_mpmc;

AP_STATIC_ASSERT(offsetof(ap_mpmc, head) - offsetof(ap_mpmc, tail) >= 2 * AP_CACHELINE,
               "ap_mpmc: head and tail two lines apart (AP__GAP)");

/**
 * ap_mpmc_stats - counters (ap_mpmc_stats_get; a relaxed snapshot, exact at
 * quiescence). pushed and popped are read off the positions, so the push
 * and pop paths count nothing; the rest is the waiting side's, written
 * only when a caller queues or parks. Counts are modulo 2^w for a w-bit
 * size_t (never reached with 64 bits).
 */
typedef struct ap_mpmc_stats {
    uint64_t pushed;       /* elements pushed since init */
    uint64_t popped;       /* elements popped since init (pushed - popped = len) */
    uint64_t push_waiters; /* push futures queued now */
    uint64_t pop_waiters;  /* pop futures queued now */
    uint64_t push_waits;   /* times a pusher queued (a future or _wait) */
    uint64_t pop_waits;    /* times a popper queued */
    uint64_t wait_ns;      /* ns parked in ap_mpmc_push_wait / _pop_wait
                            * (ap_now_ns; only callers that parked) */
} ap_mpmc_stats;

typedef struct ap_mpmc_push_fut { ap_future base; ap_waitop op; } ap_mpmc_push_fut;
typedef struct ap_mpmc_pop_fut { ap_future base; ap_waitop op; } ap_mpmc_pop_fut;

/**
 * ap_mpmc_init - set up a queue in caller memory
 * @q:         queue to initialise
 * @buf:       at least AP_MPMC_BYTES(capacity, elem_size) bytes aligned to
 *             AP_MPMC_ALIGN, owned by the caller
 * @bytes:     the size of @buf (more than needed is fine; the excess is not
 *             touched)
 * @capacity:  elements it holds (>= 1), exactly
 * @elem_size: bytes per element (>= 1)
 *
 * Returns AP_OK or AP_INVAL (capacity or elem_size 0, sizes that overflow,
 * @buf NULL, misaligned or @bytes too small); on AP_INVAL neither *q nor
 * @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_mpmc_init(ap_mpmc *q, void *buf, size_t bytes,
                                           size_t capacity, size_t elem_size);
/** ap_mpmc_fini - end of life; frees nothing; a future still waiting on the
 *  queue trips AP_ASSERT (every build) */
AP_API void ap_mpmc_fini(ap_mpmc *q);

#ifndef AP_NO_MALLOC
/**
 * ap_mpmc_create - allocate and initialise a queue (one allocation)
 * @out:   receives the queue; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 *
 * Returns AP_OK, AP_INVAL (nothing allocated) or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_mpmc_create(ap_mpmc **out, size_t capacity,
                                             size_t elem_size,
                                             const ap_allocator *alloc);
/** ap_mpmc_destroy - free a queue from ap_mpmc_create; elements left are dropped */
AP_API void ap_mpmc_destroy(ap_mpmc *q);
#endif

/**
 * ap_mpmc_try_push - enqueue one element if a slot is free
 * @elem: elem_size bytes, copied in; the caller keeps ownership on failure
 *
 * Returns AP_OK, AP_FULL, AP_AGAIN (the next slot is still being copied out
 * by a consumer) or AP_CLOSED. Concurrency: any thread.
 * Ordering: release on success; pairs with the acquire in ap_mpmc_try_pop.
 */
AP_API AP_NODISCARD ap_status ap_mpmc_try_push(ap_mpmc *q, const void *elem);

/**
 * ap_mpmc_try_pop - dequeue the oldest element
 * @out: receives elem_size bytes; untouched unless AP_OK
 *
 * Returns AP_OK, AP_EMPTY, AP_AGAIN (the next element is still being copied
 * in by a producer), or AP_CLOSED once closed and drained.
 */
AP_API AP_NODISCARD ap_status ap_mpmc_try_pop(ap_mpmc *q, void *out);

/** ap_mpmc_close - refuse further pushes, wake every future; idempotent */
AP_API void ap_mpmc_close(ap_mpmc *q);
/** ap_mpmc_is_closed - whether ap_mpmc_close has been called */
AP_API bool ap_mpmc_is_closed(ap_mpmc *q);
/** ap_mpmc_len - elements held (racy snapshot) */
AP_API size_t ap_mpmc_len(ap_mpmc *q);
/** ap_mpmc_capacity - the capacity given at init */
AP_API size_t ap_mpmc_capacity(const ap_mpmc *q);
/** ap_mpmc_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_mpmc_stats_get(ap_mpmc *q, ap_mpmc_stats *out);

/**
 * ap_mpmc_push_fut_init / _poll / _cancel: a future that pushes @elem when
 * a slot frees up (woken by a pop). Result via ap_mpmc_push_status: AP_OK,
 * AP_CLOSED (element stays with the caller) or AP_CANCELED. @elem must stay
 * valid until the future completes or is cancelled.
 */
AP_API void ap_mpmc_push_fut_init(ap_mpmc_push_fut *f, ap_mpmc *q, const void *elem);
AP_API ap_poll ap_mpmc_push_poll(ap_mpmc_push_fut *f, ap_cx *cx);
AP_API void ap_mpmc_push_cancel(ap_mpmc_push_fut *f);
/** result of a push future: AP_NOT_READY while pending, then AP_OK/AP_CLOSED/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_mpmc_push_status(const ap_mpmc_push_fut *f);

/**
 * ap_mpmc_pop_fut_init / _poll / _cancel: a future that pops into @out when
 * an element arrives (woken by a push). Result (ap_mpmc_pop_status): AP_OK, AP_CLOSED (closed
 * and drained) or AP_CANCELED; a cancelled pop took nothing, and a wake it
 * had received goes to the next waiting pop.
 */
AP_API void ap_mpmc_pop_fut_init(ap_mpmc_pop_fut *f, ap_mpmc *q, void *out);
AP_API ap_poll ap_mpmc_pop_poll(ap_mpmc_pop_fut *f, ap_cx *cx);
AP_API void ap_mpmc_pop_cancel(ap_mpmc_pop_fut *f);
/** result of a pop future: AP_NOT_READY while pending, then AP_OK/AP_CLOSED/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_mpmc_pop_status(const ap_mpmc_pop_fut *f);

/**
 * ap_mpmc_push_wait / ap_mpmc_pop_wait - block this thread until done,
 * closed or deadline_ns passes. Returns AP_OK, AP_CLOSED or AP_TIMEDOUT.
 */
AP_API AP_NODISCARD ap_status ap_mpmc_push_wait(ap_mpmc *q, const void *elem,
                                                ap_deadline deadline_ns);
AP_API AP_NODISCARD ap_status ap_mpmc_pop_wait(ap_mpmc *q, void *out,
                                               ap_deadline deadline_ns);

/**
 * AP_MPMC_DEFINE(name, T) - typed wrapper: name, name_init, name_try_push,
 * name_try_pop, name_fini, name_close, name_capacity, name_len,
 * name_push_wait, name_pop_wait, with
 * the element size the constant sizeof(T).
 */
#define AP_MPMC_DEFINE(name, T)                                                    \
    typedef struct name { ap_mpmc q; } name;                                       \
    AP__TYPED AP_NODISCARD ap_status name##_init(name *self, void *buf, size_t bytes,              \
                                                              size_t capacity)      \
    { return ap_mpmc_init(&self->q, buf, bytes, capacity, sizeof(T)); }            \
    AP__TYPED_INLINE AP_NODISCARD ap_status name##_try_push(name *self, const T *elem)                \
    { return ap__mpmc_push(&self->q, elem, sizeof(T)); }                           \
    AP__TYPED_INLINE AP_NODISCARD ap_status name##_try_pop(name *self, T *out)                    \
    { return ap__mpmc_pop(&self->q, out, sizeof(T)); }                             \
    AP__TYPED void name##_fini(name *self) { ap_mpmc_fini(&self->q); }                             \
    AP__TYPED void name##_close(name *self) { ap_mpmc_close(&self->q); }                           \
    AP__TYPED size_t name##_capacity(const name *self) { return ap_mpmc_capacity(&self->q); }              \
    AP__TYPED size_t name##_len(name *self) { return ap_mpmc_len(&self->q); }                      \
    AP__TYPED AP_NODISCARD ap_status name##_push_wait(name *self, const T *elem,                   \
                                                   ap_deadline deadline_ns)           \
    { return ap_mpmc_push_wait(&self->q, elem, deadline_ns); }                     \
    AP__TYPED AP_NODISCARD ap_status name##_pop_wait(name *self, T *out,                           \
                                                  ap_deadline deadline_ns)            \
    { return ap_mpmc_pop_wait(&self->q, out, deadline_ns); }

/* ---- implementation ---- */

/*
 * ORDERING
 *   A try_push returning AP_OK happens-before the try_pop that returns its
 *   element (release store of the stamp / acquire load). A pop
 *   happens-before the push that reuses the slot. The head/tail CASes only
 *   claim tickets (relaxed); the waitlist ladder's cost is on the waiting
 *   side (waitlist.h, THE LADDER): with nobody parked an operation is its
 *   claim CAS, its stamp store and one relaxed load of the waiter count.
 *   In the fallback ladder the CASes are seq_cst (its SC operation).
 *   len() is a racy snapshot with no ordering.
 */

#define AP__MPMC_CAP_LIMIT (SIZE_MAX >> 4) /* leaves room for laps and mark */

AP_FORCE_INLINE AP_ATOMIC_T(size_t) *ap__mpmc_stamp(ap_mpmc *q, size_t index)
{
    return (AP_ATOMIC_T(size_t) *)(void *)(q->buf + index * q->stride);
}

AP_FORCE_INLINE unsigned char *ap__mpmc_data(ap_mpmc *q, size_t index)
{
    return q->buf + index * q->stride + sizeof(size_t);
}

/* The ticket after pos: next index, or index 0 of the next lap. */
AP_FORCE_INLINE size_t ap__mpmc_next(const ap_mpmc *q, size_t pos)
{
    size_t index = pos & (q->mark - 1);
    return index + 1 < q->capacity ? pos + 1 : (pos & ~(q->one_lap - 1)) + q->one_lap;
}

/* Test hook: start at lap @lap_start (rounded down to a lap), to exercise
 * wrap-around of the position counters. */
AP_API AP_NODISCARD ap_status ap__mpmc_init_at(ap_mpmc *q, void *buf, size_t bytes,
                                               size_t capacity, size_t elem_size,
                                               size_t lap_start)
{
    size_t stride = AP_MPMC_STRIDE(elem_size), need;
    AP_ASSERT(q != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: a buffer too small for the capacity was accepted and overrun;
     * a NULL or misaligned one tripped AP_ASSERT) */
    if (capacity == 0 || elem_size == 0 || capacity > AP__MPMC_CAP_LIMIT ||
        elem_size > SIZE_MAX / 2 || !ap__size_muladd(capacity, stride, 0, &need) ||
        buf == NULL || (uintptr_t)buf % AP_MPMC_ALIGN != 0 || bytes < need)
        return AP_INVAL;
    q->buf = (unsigned char *)buf;
    q->capacity = capacity;
    q->mark = ap__pow2_ceil(capacity + 1);
    q->one_lap = q->mark * 2;
    q->stride = stride;
    q->elem_size = elem_size;
    q->alloc = NULL;
    size_t start = lap_start & ~(q->one_lap - 1);
    for (size_t i = 0; i < capacity; i++)
        AP_ATOMIC_INIT(ap__mpmc_stamp(q, i), start + i);
    AP_ATOMIC_INIT(&q->tail, start);
    AP_ATOMIC_INIT(&q->head, start);
    q->start = start;
    ap_waitlist_init(&q->not_empty);
    ap_waitlist_init(&q->not_full);
    return AP_OK;
}

AP_API ap_status ap_mpmc_init(ap_mpmc *q, void *buf, size_t bytes, size_t capacity,
                              size_t elem_size)
{
    return ap__mpmc_init_at(q, buf, bytes, capacity, elem_size, 0);
}

AP_API void ap_mpmc_fini(ap_mpmc *q)
{
    AP_ASSERT(q != NULL && q->buf != NULL); /* live: fini once */
    /* a parked future would read freed memory later: one load each, in
     * every build (programmer error: cancel or complete futures first) */
    AP_ASSERT(!ap_waitlist_has_waiters(&q->not_empty));
    AP_ASSERT(!ap_waitlist_has_waiters(&q->not_full));
    q->buf = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_mpmc_create(ap_mpmc **out, size_t capacity, size_t elem_size,
                                const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_mpmc), AP_CACHELINE), total;
    AP_ASSERT(out != NULL);
    if (a == NULL || capacity == 0 || elem_size == 0 || capacity > AP__MPMC_CAP_LIMIT ||
        elem_size > SIZE_MAX / 2 ||
        !ap__size_muladd(capacity, AP_MPMC_STRIDE(elem_size), hdr, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_mpmc *q = (ap_mpmc *)(void *)mem;
    ap_status st = ap_mpmc_init(q, mem + hdr, total - hdr, capacity, elem_size);
    AP_ASSERT(st == AP_OK);
    (void)st;
    q->alloc = a;
    *out = q;
    return AP_OK;
}

AP_API void ap_mpmc_destroy(ap_mpmc *q)
{
    if (q == NULL)
        return;
    AP_ASSERT(q->alloc != NULL); /* only queues from ap_mpmc_create */
    const ap_allocator *a = q->alloc;
    size_t total = ap__align_up(sizeof(ap_mpmc), AP_CACHELINE) + q->capacity * q->stride;
    if (q->buf != NULL) /* fini may have run already */
        ap_mpmc_fini(q);
    a->free(q, total, a->user);
}
#endif

/* The one push algorithm (sz is a constant in the typed wrappers). */
AP_FORCE_INLINE ap_status ap__mpmc_push(ap_mpmc *q, const void *elem, size_t sz)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
#ifdef AP_DEBUG /* the typed wrappers pass sizeof(T), the others elem_size */
    AP_ASSERT(sz == q->elem_size);
#endif
    unsigned spins = 0;
    /* AP__CHECK_MO: a re-checking push future must see close's fetch_or
     * (the ladder, waitlist.h); acquire with the asymmetric barrier. */
    size_t tail = AP_ATOMIC_LOAD(&q->tail, AP__CHECK_MO);
    for (;;) {
        if (AP_UNLIKELY(tail & q->mark))
            return AP_CLOSED;
        size_t index = tail & (q->mark - 1);
        /* AP_MPMC_STRIDE(sz) == q->stride, a constant in the typed case */
        unsigned char *slot = q->buf + index * AP_MPMC_STRIDE(sz);
        AP_ATOMIC_T(size_t) *stamp_p = (AP_ATOMIC_T(size_t) *)(void *)slot;
        /* acquire: pairs with the release that freed this slot in
         * ap__mpmc_pop; that consumer's copy-out is done before we write. */
        size_t stamp = AP_ATOMIC_LOAD(stamp_p, memory_order_acquire);
        if (stamp == tail) {
            /* relaxed: the claim orders nothing (the stamps carry the
             * data, Vyukov); seq_cst in the fallback ladder, where it is
             * the waking side's SC operation (waitlist.h). */
            if (AP_ATOMIC_CAS_WEAK(&q->tail, &tail, ap__mpmc_next(q, tail),
                                   AP__ASYM ? memory_order_relaxed : memory_order_seq_cst,
                                   memory_order_relaxed)) {
                AP_TEST_YIELD(); /* between claiming and publishing */
                memcpy(slot + sizeof(size_t), elem, sz);
                /* release: pairs with the acquire in ap__mpmc_pop; the
                 * element's bytes are visible before the slot reads full. */
                AP_ATOMIC_STORE(stamp_p, tail + 1, memory_order_release);
                /* the publishing store above, then the ladder's check */
                if (AP_UNLIKELY(ap_waitlist_parked(&q->not_empty)))
                    ap__waitlist_wake_cold(&q->not_empty, 1);
                return AP_OK;
            }
        } else {
            /* The slot is not free for this ticket. If tail moved, our
             * view was stale (another producer progressed): retry. */
            size_t now_tail = AP_ATOMIC_LOAD(&q->tail, AP__CHECK_MO);
            if (now_tail != tail) {
                tail = now_tail;
                continue;
            }
            /* Otherwise the slot holds an element of the previous lap, or
             * a peer is mid-way through it. Full iff head is a lap behind.
             * AP__CHECK_MO: the ladder's re-check for not_full waiters. */
            size_t head = AP_ATOMIC_LOAD(&q->head, AP__CHECK_MO);
            if (head + q->one_lap == tail)
                return AP_FULL;
            if (spins >= AP_SPIN_LIMIT)
                return AP_AGAIN;
            ap__backoff(&spins);
        }
    }
}

AP_FORCE_INLINE ap_status ap__mpmc_pop(ap_mpmc *q, void *out, size_t sz)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
#ifdef AP_DEBUG /* the typed wrappers pass sizeof(T), the others elem_size */
    AP_ASSERT(sz == q->elem_size);
#endif
    unsigned spins = 0;
    size_t head = AP_ATOMIC_LOAD(&q->head, memory_order_relaxed);
    for (;;) {
        size_t index = head & (q->mark - 1);
        /* AP_MPMC_STRIDE(sz) == q->stride, a constant in the typed case */
        unsigned char *slot = q->buf + index * AP_MPMC_STRIDE(sz);
        AP_ATOMIC_T(size_t) *stamp_p = (AP_ATOMIC_T(size_t) *)(void *)slot;
        /* acquire: pairs with the release in ap__mpmc_push (element bytes). */
        size_t stamp = AP_ATOMIC_LOAD(stamp_p, memory_order_acquire);
        if (stamp == head + 1) {
            /* relaxed with the asymmetric barrier (as in push); the SC
             * operation of the not_full ladder in the fallback. */
            if (AP_ATOMIC_CAS_WEAK(&q->head, &head, ap__mpmc_next(q, head),
                                   AP__ASYM ? memory_order_relaxed : memory_order_seq_cst,
                                   memory_order_relaxed)) {
                AP_TEST_YIELD(); /* between claiming and freeing */
                memcpy(out, slot + sizeof(size_t), sz);
                /* release: our copy-out happens-before the next writer. */
                AP_ATOMIC_STORE(stamp_p, head + q->one_lap, memory_order_release);
                if (AP_UNLIKELY(ap_waitlist_parked(&q->not_full)))
                    ap__waitlist_wake_cold(&q->not_full, 1);
                return AP_OK;
            }
        } else {
            /* No element for this ticket yet. If head moved, our view was
             * stale (another consumer progressed): retry. */
            size_t now_head = AP_ATOMIC_LOAD(&q->head, memory_order_relaxed);
            if (now_head != head) {
                head = now_head;
                continue;
            }
            /* Empty iff no push has claimed this ticket; otherwise a
             * producer is copying in (or the slot's previous consumer is
             * still copying out). AP__CHECK_MO: the ladder's re-check for
             * not_empty waiters. */
            size_t tail = AP_ATOMIC_LOAD(&q->tail, AP__CHECK_MO);
            if ((tail & ~q->mark) == head)
                return (tail & q->mark) ? AP_CLOSED : AP_EMPTY;
            if (spins >= AP_SPIN_LIMIT)
                return AP_AGAIN;
            ap__backoff(&spins);
        }
    }
}

AP_API ap_status ap_mpmc_try_push(ap_mpmc *q, const void *elem)
{
    return ap__mpmc_push(q, elem, q->elem_size);
}

AP_API ap_status ap_mpmc_try_pop(ap_mpmc *q, void *out)
{
    return ap__mpmc_pop(q, out, q->elem_size);
}

AP_API void ap_mpmc_close(ap_mpmc *q)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
    /* seq_cst: ordered before the waitlist scans below (the ladder). */
    (void)AP_ATOMIC_FETCH_OR(&q->tail, q->mark, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&q->not_empty);
    (void)ap_waitlist_wake_all(&q->not_full);
}

AP_API bool ap_mpmc_is_closed(ap_mpmc *q)
{
    return (AP_ATOMIC_LOAD(&q->tail, memory_order_acquire) & q->mark) != 0;
}

/* Number of tickets from a to b (a <= b in ticket order). */
AP_API size_t ap__mpmc_distance(const ap_mpmc *q, size_t a, size_t b)
{
    size_t laps = ((b & ~(q->one_lap - 1)) - (a & ~(q->one_lap - 1))) / q->one_lap;
    return laps * q->capacity + (b & (q->mark - 1)) - (a & (q->mark - 1));
}

AP_API size_t ap_mpmc_len(ap_mpmc *q)
{
    size_t n = 0;
    for (unsigned tries = 0; tries < AP_SPIN_LIMIT; tries++) {
        size_t tail = AP_ATOMIC_LOAD(&q->tail, memory_order_seq_cst) & ~q->mark;
        size_t head = AP_ATOMIC_LOAD(&q->head, memory_order_seq_cst);
        n = ap__mpmc_distance(q, head, tail);
        /* If tail did not move, (head, tail) was a consistent pair. */
        if ((AP_ATOMIC_LOAD(&q->tail, memory_order_seq_cst) & ~q->mark) == tail)
            break;
        AP_CPU_RELAX();
    }
    return n > q->capacity ? 0 : n; /* head overtook a stale tail */
}

AP_API size_t ap_mpmc_capacity(const ap_mpmc *q)
{
    return q->capacity;
}

AP_API void ap_mpmc_stats_get(ap_mpmc *q, ap_mpmc_stats *out)
{
    ap_waitlist_stats a, b;
    AP_ASSERT(q != NULL && out != NULL);
    /* relaxed: a snapshot; each position is read once */
    out->pushed = (uint64_t)(ap__mpmc_distance(q, q->start, AP_ATOMIC_LOAD(&q->tail, memory_order_relaxed) & ~q->mark));
    out->popped = (uint64_t)(ap__mpmc_distance(q, q->start, AP_ATOMIC_LOAD(&q->head, memory_order_relaxed)));
    ap_waitlist_stats_get(&q->not_full, &a);
    ap_waitlist_stats_get(&q->not_empty, &b);
    out->push_waiters = a.waiters;
    out->pop_waiters = b.waiters;
    out->push_waits = a.waits;
    out->pop_waits = b.waits;
    out->wait_ns = a.wait_ns + b.wait_ns;
}

AP_API ap_status ap__mpmc_try_push_v(void *q, void *elem)
{
    return ap_mpmc_try_push((ap_mpmc *)q, elem);
}

AP_API ap_status ap__mpmc_try_pop_v(void *q, void *out)
{
    return ap_mpmc_try_pop((ap_mpmc *)q, out);
}

AP__WAITOP_FUTURE(ap_mpmc_push, ap_mpmc_push_fut, ap_mpmc, not_full, ap__mpmc_try_push_v,
                  const void *)
AP__WAITOP_FUTURE(ap_mpmc_pop, ap_mpmc_pop_fut, ap_mpmc, not_empty, ap__mpmc_try_pop_v, void *)

#endif /* ASYNCPAT_MPMC_H */
