/*
 * asyncpat/spsc.h -- bounded single-producer / single-consumer ring
 *
 * PATTERN
 *   A ring of `capacity` fixed-size elements between exactly one producer
 *   thread and one consumer thread. Positions run freely (modulo 2^64); the
 *   producer keeps a private copy of the consumer's position and the
 *   consumer one of the producer's, so the shared index lines move between
 *   cores only when the cached view says full (or empty): the
 *   rigtorp/Lamport ring with cached indices. Batch push_n/pop_n move many
 *   elements with one publication.
 *
 * USAGE
 *   static unsigned char buf[AP_SPSC_BYTES(1024, sizeof(int))];
 *   ap_spsc q;
 *   if (ap_spsc_init(&q, buf, sizeof buf, 1024, sizeof(int)) != AP_OK) abort();
 *   int x = 42;                      // producer thread
 *   while (ap_spsc_try_push(&q, &x) == AP_FULL) {}
 *   int y;                           // consumer thread
 *   if (ap_spsc_try_pop(&q, &y) == AP_OK) use(y);
 *
 * GUARANTEES (invariants the tests check)
 *   - holds at most `capacity` elements, exactly as asked. Storage is
 *     rounded up to a power of two slots (AP_SPSC_BYTES), all of which are
 *     used in turn as positions advance; never more than `capacity` at once
 *   - FIFO: elements leave in the order they were pushed; each pushed with
 *     AP_OK is popped exactly once while the ring lives
 *   - after ap_spsc_close: pushes return AP_CLOSED and leave the element
 *     with the caller; pops drain what is left, then return AP_CLOSED;
 *     every waiting future is woken
 *
 * CONCURRENCY        push side       pop side        close  len    fini
 *   push side         no (1 thread)   yes             yes    yes    no
 *   pop side          yes             no (1 thread)   yes    yes    no
 *   "push side" = try_push, try_push_n, push futures; "pop side" likewise.
 *   Progress: try_* never block and have no loop: a bounded number of
 *   steps, plus, only when the other side has a parked future, the
 *   waitlist's short internal lock to wake it (waitlist.h).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * CLOSE        no RMW on the fast path; how close and a push agree: after
 *              the API (below "---- implementation ----")
 *
 * COMPLEXITY   O(1) per element; push_n/pop_n: one publication per batch.
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_SPSC_BYTES(capacity, elem_size) (else AP_INVAL: a short
 *              buffer is never written past); elements are copied with
 *              memcpy, so any alignment works (AP_SPSC_ALIGN is 1);
 *              create: one allocation via ap_allocator.
 * ERRORS       AP_FULL, AP_EMPTY, AP_CLOSED; AP_INVAL for capacity 0,
 *              elem_size 0, sizes that overflow, a buffer that is NULL or
 *              too small (nothing changed). Out-parameters are untouched
 *              on failure.
 * WAKE ORDER   FIFO among waiting futures (at most one per side in use).
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC
 * SEE ALSO     mpmc.h, examples/producer_consumer.c, bench/bench_queue.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_SPSC_H
#define ASYNCPAT_SPSC_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_SPSC_BYTES - buffer bytes for ap_spsc_init (constant expression) */
#define AP_SPSC_BYTES(capacity, elem_size) \
    (AP__POW2_CEIL(capacity) * (size_t)(elem_size))
/** AP_SPSC_ALIGN - the alignment ap_spsc_init needs of its buffer: none
 *  (1; elements are copied with memcpy) */
#define AP_SPSC_ALIGN ((size_t)1)

typedef struct ap_spsc {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) tail; /* producer's position */
    AP__GAP(0);
    AP_ALIGNAS(AP_CACHELINE) size_t head_cache;   /* producer-private view of head */
    AP_ATOMIC_T(uint32_t) pushing;                   /* a push is past its closed check */
    AP__GAP(1);
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) head; /* consumer's position */
    AP__GAP(2);
    AP_ALIGNAS(AP_CACHELINE) size_t tail_cache;   /* consumer-private view of tail */
    AP__GAP(3);
    AP_ALIGNAS(AP_CACHELINE) unsigned char *buf;  /* read-only after init from here */
    size_t mask;      /* slots - 1 */
    size_t capacity;  /* what the user asked for */
    size_t elem_size;
    size_t start;    /* both positions at init (the stats count from it) */
    AP_ATOMIC_T(uint32_t) closed;   /* AP__SPSC_OPEN / _CLOSING / _CLOSED */
    const ap_allocator *alloc; /* set by create */
    ap_waitlist not_empty;     /* consumers waiting for an element */
    ap_waitlist not_full;      /* producers waiting for room */
} ap_spsc;

AP_STATIC_ASSERT(offsetof(ap_spsc, head) - offsetof(ap_spsc, tail) >= 2 * AP_CACHELINE &&
                   offsetof(ap_spsc, head_cache) - offsetof(ap_spsc, tail) >= 2 * AP_CACHELINE,
               "ap_spsc: hot fields of the two sides two lines apart (AP__GAP)");

/**
 * ap_spsc_stats - counters (ap_spsc_stats_get; a relaxed snapshot, exact at
 * quiescence). pushed and popped are read off the positions, so the push
 * and pop paths count nothing; the rest is the waiting side's, written
 * only when a caller queues or parks. Counts are modulo 2^w for a w-bit
 * size_t (never reached with 64 bits).
 */
typedef struct ap_spsc_stats {
    uint64_t pushed;       /* elements pushed since init */
    uint64_t popped;       /* elements popped since init (pushed - popped = len) */
    uint64_t push_waiters; /* push futures queued now */
    uint64_t pop_waiters;  /* pop futures queued now */
    uint64_t push_waits;   /* times a pusher queued (a future or _wait) */
    uint64_t pop_waits;    /* times a popper queued */
    uint64_t wait_ns;      /* ns parked in ap_spsc_push_wait / _pop_wait
                            * (ap_now_ns; only callers that parked) */
} ap_spsc_stats;

/* push / pop futures: see ap_waitop in waitlist.h */
typedef struct ap_spsc_push_fut { ap_future base; ap_waitop op; } ap_spsc_push_fut;
typedef struct ap_spsc_pop_fut { ap_future base; ap_waitop op; } ap_spsc_pop_fut;

/**
 * ap_spsc_init - set up a ring in caller memory
 * @q:         ring to initialise
 * @buf:       at least AP_SPSC_BYTES(capacity, elem_size) bytes, owned by
 *             the caller
 * @bytes:     the size of @buf (more than needed is fine; the excess is not
 *             touched)
 * @capacity:  elements it holds (>= 1)
 * @elem_size: bytes per element (>= 1)
 *
 * Returns AP_OK, or AP_INVAL (capacity or elem_size 0, a buffer size that
 * overflows size_t, @buf NULL, @bytes too small); on AP_INVAL neither *q
 * nor @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_spsc_init(ap_spsc *q, void *buf, size_t bytes, size_t capacity,
                                           size_t elem_size);

/** ap_spsc_fini - end of life; frees nothing (the buffer is the caller's); a
 *  future still waiting on the ring trips AP_ASSERT (every build) */
AP_API void ap_spsc_fini(ap_spsc *q);

#ifndef AP_NO_MALLOC
/**
 * ap_spsc_create - allocate and initialise a ring (one allocation)
 * @out:   receives the ring; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 *
 * Returns AP_OK, AP_INVAL (as ap_spsc_init; nothing allocated) or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_spsc_create(ap_spsc **out, size_t capacity,
                                             size_t elem_size,
                                             const ap_allocator *alloc);
/** ap_spsc_destroy - free a ring from ap_spsc_create; elements left are dropped */
AP_API void ap_spsc_destroy(ap_spsc *q);
#endif

/**
 * ap_spsc_try_push - append one element if there is room
 * @elem: elem_size bytes, copied in; the caller keeps ownership on failure
 *
 * Returns AP_OK, AP_FULL or AP_CLOSED. Producer thread only. Never blocks
 * and has no loop: a bounded number of steps, except that a push that
 * finds a pop future parked takes the waitlist's short internal lock to
 * wake it (waitlist.h), so it is not wait-free then.
 */
AP_API AP_NODISCARD ap_status ap_spsc_try_push(ap_spsc *q, const void *elem);

/**
 * ap_spsc_try_pop - take the oldest element
 * @out: receives elem_size bytes; untouched unless AP_OK
 *
 * Returns AP_OK, AP_EMPTY, or AP_CLOSED once closed and drained.
 * Consumer thread only. Never blocks and has no loop; as try_push, a pop
 * that finds a push future parked takes the waitlist's lock to wake it.
 */
AP_API AP_NODISCARD ap_status ap_spsc_try_pop(ap_spsc *q, void *out);

/**
 * ap_spsc_try_push_n - append up to @n elements with one publication
 * @elems: n * elem_size contiguous bytes
 * @done:  receives how many were pushed (elements [0, *done) were taken)
 *
 * Returns AP_OK if at least one was pushed, else AP_FULL or AP_CLOSED
 * (*done = 0). n = 0 returns AP_OK with *done = 0.
 */
AP_API AP_NODISCARD ap_status ap_spsc_try_push_n(ap_spsc *q, const void *elems,
                                                 size_t n, size_t *done);

/**
 * ap_spsc_try_pop_n - take up to @n elements with one publication
 * @out:  room for n * elem_size bytes
 * @done: receives how many were popped
 *
 * Returns AP_OK if at least one was popped, else AP_EMPTY or AP_CLOSED.
 */
AP_API AP_NODISCARD ap_status ap_spsc_try_pop_n(ap_spsc *q, void *out, size_t n,
                                                size_t *done);

/**
 * ap_spsc_close - refuse further pushes; wake every waiting future
 * Any thread; idempotent. Elements already in the ring stay poppable.
 * Progress: blocking, unlike the rest of the ring: close (and a second,
 * concurrent close) waits, spinning then yielding, for a push that is past
 * its closed check to publish (a bounded copy). So never call it from a
 * signal handler that may have interrupted the producer mid-push, and a
 * real-time closer must not starve the producer's CPU.
 */
AP_API void ap_spsc_close(ap_spsc *q);

/** ap_spsc_is_closed - whether a close has completed: after true, every push
 *  that landed is visible, so "is_closed, then try_pop says AP_EMPTY" means
 *  drained; while a close is still waiting out a push it says false */
AP_API bool ap_spsc_is_closed(ap_spsc *q);

/** ap_spsc_len - elements held; a racy snapshot unless both sides are quiet */
AP_API size_t ap_spsc_len(ap_spsc *q);

/** ap_spsc_capacity - the capacity given at init */
AP_API size_t ap_spsc_capacity(const ap_spsc *q);
/** ap_spsc_stats_get - the counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_spsc_stats_get(ap_spsc *q, ap_spsc_stats *out);

/**
 * ap_spsc_push_fut_init / ap_spsc_push_poll / ap_spsc_push_cancel
 * A future that pushes @elem as soon as there is room (woken by a pop, not
 * by polling). Result via ap_spsc_push_status: AP_OK, or AP_CLOSED (the element
 * stays with the caller), or AP_CANCELED. @elem must stay valid until the
 * future completes or is cancelled. Producer thread only.
 */
AP_API void ap_spsc_push_fut_init(ap_spsc_push_fut *f, ap_spsc *q, const void *elem);
AP_API ap_poll ap_spsc_push_poll(ap_spsc_push_fut *f, ap_cx *cx);
AP_API void ap_spsc_push_cancel(ap_spsc_push_fut *f);
/** result of a push future: AP_NOT_READY while pending, then AP_OK/AP_CLOSED/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_spsc_push_status(const ap_spsc_push_fut *f);

/**
 * ap_spsc_pop_fut_init / ap_spsc_pop_poll / ap_spsc_pop_cancel
 * A future that pops into @out as soon as an element arrives. Result via
 * ap_spsc_pop_status: AP_OK, AP_CLOSED (closed and drained) or AP_CANCELED; a
 * cancelled pop has taken nothing. Consumer thread only.
 */
AP_API void ap_spsc_pop_fut_init(ap_spsc_pop_fut *f, ap_spsc *q, void *out);
AP_API ap_poll ap_spsc_pop_poll(ap_spsc_pop_fut *f, ap_cx *cx);
AP_API void ap_spsc_pop_cancel(ap_spsc_pop_fut *f);
/** result of a pop future: AP_NOT_READY while pending, then AP_OK/AP_CLOSED/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_spsc_pop_status(const ap_spsc_pop_fut *f);

/**
 * ap_spsc_push_wait / ap_spsc_pop_wait - block this thread (ap_block_on)
 * until done, closed, or deadline_ns (AP_DEADLINE_NONE: no limit) passes.
 * Returns AP_OK, AP_CLOSED or AP_TIMEDOUT.
 */
AP_API AP_NODISCARD ap_status ap_spsc_push_wait(ap_spsc *q, const void *elem,
                                                ap_deadline deadline_ns);
AP_API AP_NODISCARD ap_status ap_spsc_pop_wait(ap_spsc *q, void *out,
                                               ap_deadline deadline_ns);

/**
 * AP_SPSC_DEFINE(name, T) - typed wrapper: name, name_init, name_try_push,
 * name_try_pop, name_try_push_n, name_try_pop_n, name_fini, name_close,
 * name_capacity, name_len,
 * name_push_wait, name_pop_wait. The element size is the constant
 * sizeof(T), so copies compile to plain moves.
 */
#define AP_SPSC_DEFINE(name, T)                                                    \
    typedef struct name { ap_spsc q; } name;                                       \
    AP__TYPED AP_NODISCARD ap_status name##_init(name *self, void *buf, size_t bytes,              \
                                                              size_t capacity)      \
    { return ap_spsc_init(&self->q, buf, bytes, capacity, sizeof(T)); }            \
    AP__TYPED_INLINE AP_NODISCARD ap_status name##_try_push(name *self, const T *elem)                \
    { return ap__spsc_push_n(&self->q, elem, 1, NULL, sizeof(T)); }                \
    AP__TYPED_INLINE AP_NODISCARD ap_status name##_try_pop(name *self, T *out)                    \
    { return ap__spsc_pop_n(&self->q, out, 1, NULL, sizeof(T)); }                  \
    AP__TYPED AP_NODISCARD ap_status name##_try_push_n(name *self, const T *elems,                 \
                                                    size_t n, size_t *done)        \
    { return ap__spsc_push_n(&self->q, elems, n, done, sizeof(T)); }               \
    AP__TYPED AP_NODISCARD ap_status name##_try_pop_n(name *self, T *out, size_t n,                \
                                                   size_t *done)                   \
    { return ap__spsc_pop_n(&self->q, out, n, done, sizeof(T)); }                  \
    AP__TYPED void name##_fini(name *self) { ap_spsc_fini(&self->q); }                             \
    AP__TYPED void name##_close(name *self) { ap_spsc_close(&self->q); }                           \
    AP__TYPED size_t name##_capacity(const name *self) { return ap_spsc_capacity(&self->q); }              \
    AP__TYPED size_t name##_len(name *self) { return ap_spsc_len(&self->q); }                      \
    AP__TYPED AP_NODISCARD ap_status name##_push_wait(name *self, const T *elem,                   \
                                                   ap_deadline deadline_ns)           \
    { return ap_spsc_push_wait(&self->q, elem, deadline_ns); }                     \
    AP__TYPED AP_NODISCARD ap_status name##_pop_wait(name *self, T *out,                           \
                                                  ap_deadline deadline_ns)            \
    { return ap_spsc_pop_wait(&self->q, out, deadline_ns); }

/* ---- implementation ---- */

/*
 * ORDERING
 *   A push returning AP_OK happens-before the pop that returns its element
 *   (the tail store is a release, the consumer's load of tail an acquire);
 *   a pop happens-before the push that reuses its slot (head store /
 *   producer's load of head). Neither side does an RMW or a fence: the
 *   waitlist ladder's cost is on the waiting side (waitlist.h, THE
 *   LADDER; the seq_cst fallback there applies here too).
 *
 * CLOSE (no RMW on the fast path)
 *   close sets `closed` to CLOSING, runs the waiting side's HEAVY barrier,
 *   waits while the producer's `pushing` flag is up, then sets CLOSED and
 *   wakes everyone. A push raises `pushing`, LIGHT barrier, reads `closed`,
 *   and only then writes and publishes. The two store-then-load halves are
 *   THE LADDER again: either close sees the flag up (and waits for that
 *   push to publish) or the push sees CLOSING (and returns AP_CLOSED). So
 *   once close returns, no push lands; a pop that finds the ring empty
 *   says AP_CLOSED only after reading CLOSED and re-reading tail, which
 *   then includes every push that landed. close waits (spin, then yield)
 *   only for a push already past its check: a bounded copy.
 */

/* Positions are modulo 2^64. */
#define AP__SPSC_POS SIZE_MAX /* (a mask kept for the arithmetic's sake) */
enum { AP__SPSC_OPEN = 0, AP__SPSC_CLOSING = 1, AP__SPSC_CLOSED = 2 };
#define AP__SPSC_POS_LIMIT (SIZE_MAX >> 3) /* largest capacity accepted */

/* Test hook: start both positions at @start (to exercise wrap-around). */
AP_API AP_NODISCARD ap_status ap__spsc_init_at(ap_spsc *q, void *buf, size_t bytes,
                                               size_t capacity, size_t elem_size, size_t start)
{
    size_t slots = capacity <= AP__SPSC_POS_LIMIT ? ap__pow2_ceil(capacity) : 0;
    size_t need;
    AP_ASSERT(q != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: a buffer too small for the capacity was accepted and overrun) */
    if (capacity == 0 || elem_size == 0 || slots == 0 ||
        !ap__size_muladd(slots, elem_size, 0, &need) || buf == NULL || bytes < need)
        return AP_INVAL;
    start &= AP__SPSC_POS;
    AP_ATOMIC_INIT(&q->tail, start);
    AP_ATOMIC_INIT(&q->head, start);
    q->start = start;
    AP_ATOMIC_INIT(&q->pushing, 0u);
    AP_ATOMIC_INIT(&q->closed, (uint32_t)AP__SPSC_OPEN);
    q->head_cache = start;
    q->tail_cache = start;
    q->buf = (unsigned char *)buf;
    q->mask = slots - 1;
    q->capacity = capacity;
    q->elem_size = elem_size;
    q->alloc = NULL;
    ap_waitlist_init(&q->not_empty);
    ap_waitlist_init(&q->not_full);
    return AP_OK;
}

AP_API ap_status ap_spsc_init(ap_spsc *q, void *buf, size_t bytes, size_t capacity,
                              size_t elem_size)
{
    return ap__spsc_init_at(q, buf, bytes, capacity, elem_size, 0);
}

AP_API void ap_spsc_fini(ap_spsc *q)
{
    AP_ASSERT(q != NULL && q->buf != NULL); /* live: fini once */
    /* a parked future would read freed memory later: one load each, in
     * every build (programmer error: cancel or complete futures first) */
    AP_ASSERT(!ap_waitlist_has_waiters(&q->not_empty));
    AP_ASSERT(!ap_waitlist_has_waiters(&q->not_full));
    q->buf = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_spsc_create(ap_spsc **out, size_t capacity, size_t elem_size,
                                const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t slots = capacity <= AP__SPSC_POS_LIMIT ? ap__pow2_ceil(capacity) : 0;
    size_t hdr = ap__align_up(sizeof(ap_spsc), AP_CACHELINE), total;
    AP_ASSERT(out != NULL);
    if (a == NULL || capacity == 0 || elem_size == 0 || slots == 0 ||
        !ap__size_muladd(slots, elem_size, hdr, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_spsc *q = (ap_spsc *)(void *)mem;
    ap_status st = ap_spsc_init(q, mem + hdr, total - hdr, capacity, elem_size);
    AP_ASSERT(st == AP_OK);
    (void)st;
    q->alloc = a;
    *out = q;
    return AP_OK;
}

AP_API void ap_spsc_destroy(ap_spsc *q)
{
    if (q == NULL)
        return;
    AP_ASSERT(q->alloc != NULL); /* only rings from ap_spsc_create */
    const ap_allocator *a = q->alloc;
    size_t total = ap__align_up(sizeof(ap_spsc), AP_CACHELINE) + (q->mask + 1) * q->elem_size;
    if (q->buf != NULL) /* fini may have run already */
        ap_spsc_fini(q);
    a->free(q, total, a->user);
}
#endif

/* Copy n elements between a linear buffer and the ring starting at pos,
 * in at most two pieces (the ring may wrap). */
AP_FORCE_INLINE void ap__spsc_copy_in(ap_spsc *q, size_t pos, const unsigned char *src,
                                      size_t n, size_t sz)
{
    size_t i = pos & q->mask, first = q->mask + 1 - i;
    if (n == 1) { /* the single-element case: a constant-size copy when sz is */
        memcpy(q->buf + i * sz, src, sz);
        return;
    }
    if (first > n)
        first = n;
    memcpy(q->buf + i * sz, src, first * sz);
    if (n > first)
        memcpy(q->buf, src + first * sz, (n - first) * sz);
}

AP_FORCE_INLINE void ap__spsc_copy_out(ap_spsc *q, size_t pos, unsigned char *dst,
                                       size_t n, size_t sz)
{
    size_t i = pos & q->mask, first = q->mask + 1 - i;
    if (n == 1) { /* the single-element case: a constant-size copy when sz is */
        memcpy(dst, q->buf + i * sz, sz);
        return;
    }
    if (first > n)
        first = n;
    memcpy(dst, q->buf + i * sz, first * sz);
    if (n > first)
        memcpy(dst + first * sz, q->buf, (n - first) * sz);
}

/* The one push algorithm; try_push, try_push_n and the typed wrappers call
 * it (sz is a constant in the typed case). done may be NULL when n == 1. */
AP_FORCE_INLINE ap_status ap__spsc_push_n(ap_spsc *q, const void *elems, size_t n,
                                          size_t *done, size_t sz)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
#ifdef AP_DEBUG /* the typed wrappers pass sizeof(T), the others elem_size */
    AP_ASSERT(sz == q->elem_size);
#endif
    if (done)
        *done = 0;
    if (n == 0)
        return AP_OK;
    /* The push half of CLOSE: raise the flag, LIGHT, read closed. Relaxed
     * with the barrier; seq_cst in the fallback (AP__PUB_MO/AP__CHECK_MO). */
    AP_ATOMIC_STORE(&q->pushing, 1u, AP__ASYM ? memory_order_relaxed : AP__PUB_MO);
    ap__waitlist_fence_fast(&q->not_empty);
    if (AP_UNLIKELY(AP_ATOMIC_LOAD(&q->closed, AP__ASYM ? memory_order_relaxed
                                                         : AP__CHECK_MO) != AP__SPSC_OPEN)) {
        AP_ATOMIC_STORE(&q->pushing, 0u, memory_order_release);
        return AP_CLOSED;
    }
    size_t t = AP_ATOMIC_LOAD(&q->tail, memory_order_relaxed); /* we are the writer */
    size_t room = q->capacity - ((t - q->head_cache) & AP__SPSC_POS);
    if (AP_UNLIKELY(room < n)) {
        /* acquire: pairs with the head store in ap__spsc_pop_n, so the
         * consumer's copy-out is done before we reuse those slots; also
         * the not_full ladder's re-check (AP__CHECK_MO). */
        q->head_cache = AP_ATOMIC_LOAD(&q->head, AP__CHECK_MO);
        room = q->capacity - ((t - q->head_cache) & AP__SPSC_POS);
        if (room == 0) {
            AP_ATOMIC_STORE(&q->pushing, 0u, memory_order_release);
            return AP_FULL;
        }
        if (n > room)
            n = room;
    }
    ap__spsc_copy_in(q, t, (const unsigned char *)elems, n, sz);
    AP_TEST_YIELD(); /* between writing the slots and publishing them */
    /* release: publishes the slots to the consumer (its acquire load of
     * tail); the waking side's store of the not_empty ladder. */
    AP_ATOMIC_STORE(&q->tail, (t + n) & AP__SPSC_POS, AP__PUB_MO);
    /* release: pairs with close's acquire load of the flag; the tail store
     * above is then visible to close's final read. */
    AP_ATOMIC_STORE(&q->pushing, 0u, memory_order_release);
    if (done)
        *done = n;
    if (AP_UNLIKELY(ap_waitlist_parked(&q->not_empty)))
        ap__waitlist_wake_cold(&q->not_empty, 1);
    return AP_OK;
}

AP_FORCE_INLINE ap_status ap__spsc_pop_n(ap_spsc *q, void *out, size_t n,
                                         size_t *done, size_t sz)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
#ifdef AP_DEBUG /* the typed wrappers pass sizeof(T), the others elem_size */
    AP_ASSERT(sz == q->elem_size);
#endif
    if (done)
        *done = 0;
    if (n == 0)
        return AP_OK;
    size_t h = AP_ATOMIC_LOAD(&q->head, memory_order_relaxed); /* we are the writer */
    size_t avail = (q->tail_cache - h) & AP__SPSC_POS;
    if (AP_UNLIKELY(avail < n)) {
        /* acquire: pairs with the tail store in ap__spsc_push_n, making the
         * slots' bytes visible; the not_empty ladder's re-check. */
        q->tail_cache = AP_ATOMIC_LOAD(&q->tail, AP__CHECK_MO);
        avail = (q->tail_cache - h) & AP__SPSC_POS;
        if (avail == 0) {
            /* acquire: pairs with close's release store of CLOSED, which
             * close made after every push that landed had published; so
             * the tail read after it holds them all. */
            if (AP_LIKELY(AP_ATOMIC_LOAD(&q->closed, memory_order_acquire) !=
                          AP__SPSC_CLOSED))
                return AP_EMPTY; /* open, or a close still settling */
            q->tail_cache = AP_ATOMIC_LOAD(&q->tail, memory_order_acquire);
            avail = (q->tail_cache - h) & AP__SPSC_POS;
            if (avail == 0)
                return AP_CLOSED;
        }
        if (n > avail)
            n = avail;
    }
    ap__spsc_copy_out(q, h, (unsigned char *)out, n, sz);
    AP_TEST_YIELD(); /* between reading the slots and freeing them */
    /* release: frees the slots only after we copied them out; the waking
     * store of the not_full ladder. */
    AP_ATOMIC_STORE(&q->head, (h + n) & AP__SPSC_POS, AP__PUB_MO);
    if (done)
        *done = n;
    if (AP_UNLIKELY(ap_waitlist_parked(&q->not_full)))
        ap__waitlist_wake_cold(&q->not_full, 1);
    return AP_OK;
}

AP_API ap_status ap_spsc_try_push(ap_spsc *q, const void *elem)
{
    return ap__spsc_push_n(q, elem, 1, NULL, q->elem_size);
}

AP_API ap_status ap_spsc_try_pop(ap_spsc *q, void *out)
{
    return ap__spsc_pop_n(q, out, 1, NULL, q->elem_size);
}

AP_API ap_status ap_spsc_try_push_n(ap_spsc *q, const void *elems, size_t n, size_t *done)
{
    AP_ASSERT(done != NULL);
    return ap__spsc_push_n(q, elems, n, done, q->elem_size);
}

AP_API ap_status ap_spsc_try_pop_n(ap_spsc *q, void *out, size_t n, size_t *done)
{
    AP_ASSERT(done != NULL);
    return ap__spsc_pop_n(q, out, n, done, q->elem_size);
}

AP_API void ap_spsc_close(ap_spsc *q)
{
    AP_ASSERT(q != NULL && q->buf != NULL);
    uint32_t open = AP__SPSC_OPEN;
    unsigned spins = 0;
    /* The first close drives it; a concurrent one waits until it is done,
     * so every close returns with the promise kept. */
    if (AP_ATOMIC_CAS_STRONG(&q->closed, &open, (uint32_t)AP__SPSC_CLOSING,
                             memory_order_seq_cst, memory_order_acquire)) {
        /* The close half of the handshake (CLOSE above): HEAVY orders the
         * CLOSING store before the flag load below, or makes the push's
         * flag store visible to it. */
        ap__waitlist_fence_slow(&q->not_empty);
        /* acquire: pairs with the push's release store of 0; its tail
         * store is then visible to every reader of CLOSED. */
        while (AP_ATOMIC_LOAD(&q->pushing, AP__ASYM ? memory_order_acquire
                                                     : memory_order_seq_cst) != 0)
            ap__backoff(&spins); /* a push is copying in: bounded */
        /* release: pairs with the acquire in ap__spsc_pop_n. */
        AP_ATOMIC_STORE(&q->closed, (uint32_t)AP__SPSC_CLOSED, AP__PUB_MO);
        ap__waitlist_fence_fast(&q->not_empty); /* the waking side's barrier */
        (void)ap_waitlist_wake_all(&q->not_empty);
        (void)ap_waitlist_wake_all(&q->not_full);
        return;
    }
    while (AP_ATOMIC_LOAD(&q->closed, memory_order_acquire) != AP__SPSC_CLOSED)
        ap__backoff(&spins);
}

AP_API bool ap_spsc_is_closed(ap_spsc *q)
{
    /* acquire: pairs with close's release store of CLOSED, so every push
     * that landed is visible after a true answer (an empty pop then means
     * drained). CLOSING is not closed yet: a push past its check may still
     * land (found by review: "is_closed, then an empty pop" lost it). */
    return AP_ATOMIC_LOAD(&q->closed, memory_order_acquire) == AP__SPSC_CLOSED;
}

AP_API size_t ap_spsc_len(ap_spsc *q)
{
    size_t h = AP_ATOMIC_LOAD(&q->head, memory_order_relaxed);
    size_t t = AP_ATOMIC_LOAD(&q->tail, memory_order_relaxed);
    size_t n = (t - h) & AP__SPSC_POS;
    return n > q->capacity ? q->capacity : n; /* racy reads may cross */
}

AP_API size_t ap_spsc_capacity(const ap_spsc *q)
{
    return q->capacity;
}

AP_API void ap_spsc_stats_get(ap_spsc *q, ap_spsc_stats *out)
{
    ap_waitlist_stats a, b;
    AP_ASSERT(q != NULL && out != NULL);
    /* relaxed: a snapshot; each position is read once */
    out->pushed = (uint64_t)((AP_ATOMIC_LOAD(&q->tail, memory_order_relaxed) - q->start) & AP__SPSC_POS);
    out->popped = (uint64_t)((AP_ATOMIC_LOAD(&q->head, memory_order_relaxed) - q->start) & AP__SPSC_POS);
    ap_waitlist_stats_get(&q->not_full, &a);
    ap_waitlist_stats_get(&q->not_empty, &b);
    out->push_waiters = a.waiters;
    out->pop_waiters = b.waiters;
    out->push_waits = a.waits;
    out->pop_waits = b.waits;
    out->wait_ns = a.wait_ns + b.wait_ns;
}

/* Note: the push future's "FULL" while closed cannot happen: a closed ring
 * answers AP_CLOSED, which completes the future. */
AP_API ap_status ap__spsc_try_push_v(void *q, void *elem)
{
    return ap_spsc_try_push((ap_spsc *)q, elem);
}

AP_API ap_status ap__spsc_try_pop_v(void *q, void *out)
{
    return ap_spsc_try_pop((ap_spsc *)q, out);
}

AP__WAITOP_FUTURE(ap_spsc_push, ap_spsc_push_fut, ap_spsc, not_full, ap__spsc_try_push_v,
                  const void *)
AP__WAITOP_FUTURE(ap_spsc_pop, ap_spsc_pop_fut, ap_spsc, not_empty, ap__spsc_try_pop_v, void *)

#endif /* ASYNCPAT_SPSC_H */
