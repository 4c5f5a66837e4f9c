/*
 * asyncpat/pool.h -- fixed object pool whose gets wait (FIFO) instead of failing
 *
 * PATTERN
 *   A fixed set of n objects of obj_size bytes, contiguous in caller memory,
 *   lent out one at a time. The naive pool answers "none left" and leaves
 *   the caller to poll or sleep; this one also offers a get future (and
 *   ap_pool_get_wait) that queues in FIFO order, and a put hands the object
 *   DIRECTLY to the oldest queued getter. Idle objects sit on a Treiber
 *   stack of indices (LIFO, so the most recently used, cache-warm object is
 *   lent next) whose head word is tag << 33 | CLOSED << 32 | top, where top
 *   is index + 1 (0: nothing idle) and the tag counts successful head CASes
 *   (the classic ABA counter, as in IBM's System/370 free list). Each object
 *   has one 32-bit state word in the caller's state buffer: while idle, the
 *   link to the next idle object; otherwise HELD (a caller has it), GRANTED
 *   (handed to a queued future that has not yet seen it) or MOVING (being
 *   put). The uncontended paths are lock-free: a get is one CAS on the head
 *   plus a store to the state word, a put one CAS on the state word (which
 *   is what refuses a double put) plus one CAS on the head. Queued futures
 *   sit in an ap_waitlist; objects reach them only under the list lock
 *   through ap_waitlist_wake_if, from the head of the queue, exactly as the
 *   semaphore grants permits (semaphore.h): a put with futures queued gives
 *   its object to the head future without touching the stack, and any pass
 *   that finds objects on the stack while futures are queued moves them to
 *   the futures, head first.
 *
 * USAGE
 *   static struct conn conns[8];
 *   static AP_ALIGNAS(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(8)];
 *   ap_pool pool;
 *   if (ap_pool_init(&pool, st, sizeof st, conns, sizeof conns, 8, sizeof conns[0]) != AP_OK)
 *       abort();
 *   void *c;
 *   if (ap_pool_get_wait(&pool, &c, ap_now_ns() + AP_NS_PER_SEC) == AP_OK) {
 *       use((struct conn *)c);
 *       if (ap_pool_put(&pool, c) != AP_OK) abort();
 *   }
 *   // in an event loop: ap_pool_get_fut f; ap_pool_get_fut_init(&f, &pool, &c);
 *   // ap_pool_get_poll(&f, &cx) until AP_READY, then ap_pool_get_status(&f)
 *
 * GUARANTEES (invariants the tests check)
 *   - exclusive: each object is held by at most one holder at a time; an
 *     object is lent only after the put that returned it (a get that
 *     returns AP_OK, or a future that completes AP_OK, owns the object
 *     until it puts it back)
 *   - conservation: idle + held + granted-in-flight == n at quiescence;
 *     nothing is lost or duplicated, also when futures are cancelled after
 *     an object was granted to them (the object goes on to the next queued
 *     future, or back to the idle stack)
 *   - FIFO fairness: queued futures are served strictly in queue order;
 *     try_get and a future's first poll answer AP_EMPTY whenever they find
 *     a future queued, so they never overtake one (a try_get racing with a
 *     registration may still linearize before it)
 *   - no lost wakeup: a put (or a cancelled grant passed on) that finds a
 *     future queued serves it; a future that queues re-checks the idle
 *     stack after registering (THE LADDER, waitlist.h)
 *   - a put of a pointer that is not one of this pool's objects (outside
 *     the array, or not at an object boundary), of an idle object (a
 *     double put), or of an object granted to a future that has not yet
 *     completed, returns AP_INVAL and changes nothing. The state word
 *     cannot tell two holders apart over time: a stale put of an object
 *     that has since been lent to somebody else is accepted (as in every
 *     pool without generation-tagged handles); don't keep pointers after
 *     a put.
 *   - close: every queued future completes with AP_CLOSED, every later get
 *     (try, future, wait) answers AP_CLOSED; a future granted an object
 *     before the close completes AP_OK and holds it. Puts still work after
 *     close, so the owner can collect every object (idle() reaches n).
 *   - reset hook: run once per accepted put, by the putting thread, before
 *     the object becomes visible to anyone else and outside every lock;
 *     never on a refused put, never for an object passed on by a cancel.
 *
 * CONCURRENCY      try_get  put  close  futures  idle/in_use  index  fini
 *   any of them      yes    yes   yes     yes        yes        yes    no
 *   set_reset: before the pool is shared (not concurrently with put).
 *   A future is polled and cancelled by one thread at a time (future.h).
 *   Progress: try_get, put (no future queued), idle, in_use and index are
 *   lock-free (a CAS loop retries only when another thread changed the
 *   head). A put that finds futures queued, a future that queues, cancel
 *   and close take the waiter list's short internal lock. The reset hook
 *   is user code and runs with no lock held.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   try_get, put without futures queued, index: O(1) (a CAS
 *              loop); put with futures queued: O(k) for the k futures it
 *              serves; future register/cancel: O(1); close: O(waiters);
 *              idle, in_use: O(n) (a scan of the state words; for
 *              monitoring and tests, not for a hot path).
 * MEMORY       init: two caller buffers, each with its size in bytes: a
 *              state buffer of at least AP_POOL_STATE_BYTES(n) bytes aligned
 *              to AP_POOL_STATE_ALIGN, and the objects, at least
 *              AP_POOL_OBJS_BYTES(n, obj_size) bytes (any alignment: the
 *              pool never reads them); else AP_INVAL with nothing written
 *              (so two buffers of different sizes passed in swapped order
 *              are refused); create: one allocation (header, objects
 *              zeroed, states). A future embeds its waiter node. Nothing
 *              else allocates.
 * ERRORS       AP_EMPTY (nothing idle, or futures queued: waiting with a
 *              future would be served first), AP_CLOSED,
 *              AP_INVAL (bad init arguments or buffers: nothing changed; a
 *              NULL out-pointer; a put of a
 *              foreign, idle or granted object: nothing changed),
 *              AP_TIMEDOUT (ap_pool_get_wait), AP_NOMEM (create);
 *              AP_NOT_READY (pending) and AP_CANCELED as a future's
 *              status. A NULL or finished (fini) pool trips AP_ASSERT. Out-params are
 *              untouched unless AP_OK.
 * WAKE ORDER   FIFO; a put wakes the future it hands its object to (and
 *              at most a spurious wake of one already granted);
 *              a granted future that cancels passes the object to the next
 *              queued future (or back to the idle stack).
 * LIMITS       n <= AP_POOL_MAX. The ABA tag has 31 bits: a get preempted
 *              between its load and its CAS of the head while other
 *              threads complete exactly a multiple of 2^31 head updates
 *              could be fooled (the usual bound of tagged Treiber stacks).
 *              The head is a 64-bit atomic, lock-free inline on every
 *              target config.h accepts (i386 from the i586: cmpxchg8b);
 *              no -latomic (tests/cross.sh builds i386 and aarch64).
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_TEST_YIELD
 * SEE ALSO     semaphore.h (the same grant scheme for permits), waitlist.h
 *              (the ladder), future.h (the waker contract),
 *              tests/test_pool.c, bench/bench_pool.c
 * STABILITY    experimental (0.x)
 */
#ifndef ASYNCPAT_POOL_H
#define ASYNCPAT_POOL_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

#include <string.h>

/** AP_POOL_MAX - the most objects a pool can lend */
#define AP_POOL_MAX ((size_t)0x7fffffff)

/** AP_POOL_STATE_BYTES - state buffer bytes for ap_pool_init: one 32-bit
 *  word per object (constant expression) */
#define AP_POOL_STATE_BYTES(n) ((size_t)(n) * sizeof(uint32_t))
/** AP_POOL_STATE_ALIGN - the alignment ap_pool_init needs of its state
 *  buffer (constant expression) */
#define AP_POOL_STATE_ALIGN ((size_t)AP_ALIGNOF(uint32_t))
/** AP_POOL_OBJS_BYTES - object array bytes for ap_pool_init: n objects of
 *  obj_size bytes back to back (constant expression; any alignment) */
#define AP_POOL_OBJS_BYTES(n, obj_size) ((size_t)(n) * (size_t)(obj_size))

/*
 * A pool. Not valid zero-initialised (it has no objects): use ap_pool_init
 * or ap_pool_create.
 */
typedef struct ap_pool {
    /* tag << 33 | CLOSED << 32 | (index + 1 of the top idle object, or 0);
     * written by every get and put */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) head;
    /* read-only after init from here (but the waitlist) */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint32_t) *state; /* per object; see AP__POOL_* */
    unsigned char *objs;
    size_t n;            /* 0 after fini */
    size_t obj_size;
    unsigned shift;      /* log2(obj_size) if a power of two, else AP__POOL_NO_SHIFT */
    void (*reset)(void *obj, void *user);
    void *user;
    const ap_allocator *alloc; /* set by create */
    size_t bytes;              /* set by create: the allocation's size */
    ap_waitlist wl;            /* queued get futures */
} ap_pool;

AP_STATIC_ASSERT(offsetof(ap_pool, state) - offsetof(ap_pool, head) >= AP_CACHELINE,
               "ap_pool: the head must have its own cache line");

/**
 * ap_pool_stats - counters (ap_pool_stats_get; a racy snapshot, exact at
 * quiescence, where idle + in_use == capacity). Only the waiting side
 * counts: try_get and put, the lock-free paths, write nothing more.
 */
typedef struct ap_pool_stats {
    uint64_t capacity; /* n */
    uint64_t idle;     /* objects idle now (O(n) scan, as ap_pool_idle) */
    uint64_t in_use;   /* capacity - idle */
    uint64_t waiters;  /* get futures queued now */
    uint64_t waits;    /* times a get queued (a future or _wait) */
    uint64_t wait_ns;  /* ns parked in ap_pool_get_wait (ap_now_ns; only
                        * callers that parked) */
} ap_pool_stats;
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(uint32_t)) == sizeof(uint32_t),
               "ap_pool: AP_POOL_STATE_BYTES assumes 4-byte atomic state words");

/*
 * A get future (caller memory). status is AP_NOT_READY while pending, then
 * AP_OK (*out holds an object the caller now owns), AP_CLOSED or
 * AP_CANCELED.
 */
typedef struct ap_pool_get_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_pool *pool;
    void **out;
    ap_grant grant;           /* the queued request (waitlist.h) */
    size_t index;             /* the granted object; written before grant.granted */
    ap_status status;
} ap_pool_get_fut;

/**
 * ap_pool_init - a pool lending the @n objects at @objs
 * @state:       at least AP_POOL_STATE_BYTES(n) bytes aligned to
 *               AP_POOL_STATE_ALIGN; the pool's own bookkeeping (one word
 *               per object); caller memory, kept until fini
 * @state_bytes: the size of @state (the excess is not touched)
 * @objs:        n objects of @obj_size bytes each, back to back; their
 *               content is the caller's (the pool never reads or writes it)
 * @objs_bytes:  the size of @objs: at least AP_POOL_OBJS_BYTES(n, obj_size)
 * @n:           1 ..= AP_POOL_MAX
 * @obj_size:    bytes from one object to the next (>= 1)
 *
 * Every object starts idle; gets lend them in index order until the first
 * put. Returns AP_OK, or AP_INVAL (n 0 or above AP_POOL_MAX, obj_size 0,
 * state or objs NULL, state misaligned, a size too small, sizes that
 * overflow, or the array would wrap the address space); on AP_INVAL *p and
 * both buffers are untouched.
 */
AP_API AP_NODISCARD ap_status ap_pool_init(ap_pool *p, void *state, size_t state_bytes,
                                           void *objs, size_t objs_bytes, size_t n,
                                           size_t obj_size);

/** ap_pool_fini - end of life; frees nothing. A future still queued trips
 *  AP_ASSERT in every build (one load); so does a second fini. A created
 *  pool may be finished and then destroyed (destroy does not fini again). */
AP_API void ap_pool_fini(ap_pool *p);

#ifndef AP_NO_MALLOC
/**
 * ap_pool_create - allocate a pool with @n zeroed objects of @obj_size bytes
 * @out:   receives the pool; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 *
 * One allocation: the header, the objects (starting on a cache line; reach
 * them with ap_pool_obj to initialise them before sharing the pool) and the
 * state words. Returns AP_OK, AP_INVAL (as ap_pool_init; nothing allocated)
 * or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_pool_create(ap_pool **out, size_t n, size_t obj_size,
                                             const ap_allocator *alloc);
/** ap_pool_destroy - fini (unless already finished) and free a pool from
 *  ap_pool_create (NULL: no-op) */
AP_API void ap_pool_destroy(ap_pool *p);
#endif

/**
 * ap_pool_set_reset - run @reset(obj, @user) on every accepted put
 *
 * The hook runs on the putting thread, before the object is idle or handed
 * to a waiter, with no lock held; it must not call back into this pool's
 * put for the same object. NULL removes it. Call before sharing the pool.
 */
AP_API void ap_pool_set_reset(ap_pool *p, void (*reset)(void *obj, void *user), void *user);

/**
 * ap_pool_try_get - take an idle object now
 * @obj: receives the object; untouched unless AP_OK
 *
 * Returns AP_OK (the caller owns *obj until it puts it back), AP_EMPTY
 * (nothing idle, or futures are queued: taking an object would overtake
 * them; wait with a future instead), AP_CLOSED, or AP_INVAL
 * (@obj NULL).
 * Concurrency: any thread. Progress: lock-free; never blocks or registers.
 * Ordering:    acquire on success; pairs with the release CAS of the put
 *              that returned the object.
 * On failure:  nothing changed.
 */
AP_API AP_NODISCARD ap_status ap_pool_try_get(ap_pool *p, void **obj);

/**
 * ap_pool_put - give an object back; hand it to the oldest queued future
 * @obj: an object of this pool that the caller holds
 *
 * Runs the reset hook, then gives @obj to the head of the queue when
 * futures wait, else makes it idle. Returns AP_OK, or AP_INVAL (@obj is not
 * one of this pool's objects, is idle already, or is granted to a future)
 * and then nothing changed. Works after close.
 * Concurrency: any thread. Progress: lock-free without queued futures;
 * with them, one pass under the list lock (wakers called after it).
 * Ordering:    release (seq_cst in the fallback ladder): a release
 *              operation for the next holder, and the putting side of the
 *              ladder (waitlist.h).
 */
AP_API AP_NODISCARD ap_status ap_pool_put(ap_pool *p, void *obj);

/** ap_pool_close - fail every queued and later get with AP_CLOSED; idempotent */
AP_API void ap_pool_close(ap_pool *p);
/** ap_pool_is_closed - whether ap_pool_close has been called */
AP_API bool ap_pool_is_closed(ap_pool *p);
/** ap_pool_capacity - the number of objects, n */
AP_API size_t ap_pool_capacity(const ap_pool *p);
/**
 * ap_pool_idle - objects idle now (racy snapshot; O(n) scan). At quiescence
 * idle + in_use == n, and idle == n once every object was put back.
 */
AP_API size_t ap_pool_idle(ap_pool *p);
/**
 * ap_pool_in_use - objects not idle now: held by callers, granted to
 * futures that have not completed yet, or being put (racy snapshot; O(n))
 */
AP_API size_t ap_pool_in_use(ap_pool *p);
/** ap_pool_stats_get - the counters into *@out (snapshot; any thread; O(n)) */
AP_API void ap_pool_stats_get(ap_pool *p, ap_pool_stats *out);
/** ap_pool_obj - the address of object @index (< n), held or not */
AP_API void *ap_pool_obj(const ap_pool *p, size_t index);
/**
 * ap_pool_index - the index of @obj in this pool
 * Returns AP_OK, or AP_INVAL (not at an object boundary of this pool's
 * array; *index untouched). Says nothing about whether @obj is held.
 */
AP_API AP_NODISCARD ap_status ap_pool_index(const ap_pool *p, const void *obj, size_t *index);

/**
 * ap_pool_get_fut_init / _poll / _cancel / _status: a future for one
 * object, stored to *@out on AP_OK. The first poll takes one at once when
 * it can (as try_get); otherwise it queues (FIFO) and is woken by the put
 * that hands it an object. Result: AP_OK (the caller owns *out), AP_CLOSED
 * or AP_CANCELED; *out is untouched unless AP_OK. Cancel is idempotent and
 * safe at any time; an object granted to a future that is cancelled before
 * it completed goes on to the next queued future or back to the idle
 * stack (the reset hook does not run again). After cancel or READY the
 * waker is never called again. @out NULL trips AP_ASSERT.
 */
AP_API void ap_pool_get_fut_init(ap_pool_get_fut *f, ap_pool *p, void **out);
AP_API ap_poll ap_pool_get_poll(ap_pool_get_fut *f, ap_cx *cx);
AP_API void ap_pool_get_cancel(ap_pool_get_fut *f);
/** ap_pool_get_status - AP_NOT_READY while pending, then the result */
AP_API AP_NODISCARD ap_status ap_pool_get_status(const ap_pool_get_fut *f);

/**
 * ap_pool_get_wait - block this thread until an object is ours, the pool
 * is closed, or @deadline_ns (ap_now_ns clock) passes. The pool takes no
 * `now` anywhere, so it has no clock of its own (time.h, CLOCKS): its
 * deadlines are on ap_now_ns()'s clock; to wait on another, drive a get
 * future with ap_block_on_until_clock.
 * @obj: receives the object; untouched unless AP_OK
 *
 * Returns AP_OK, AP_CLOSED, AP_INVAL (@obj NULL) or AP_TIMEDOUT (nothing
 * taken; an object granted in a race with the timeout was passed on).
 */
AP_API AP_NODISCARD ap_status ap_pool_get_wait(ap_pool *p, void **obj, ap_deadline deadline_ns);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Happens-before: a put's head CAS is a release operation (AP__PUB_MO:
 *   release, seq_cst in the fallback ladder) and a get's head load and CAS
 *   are acquire; every write of the head is a
 *   read-modify-write, so the release sequence reaches every later get: a
 *   put of X happens-before the get that lends X next. So whatever the
 *   previous holder (and the reset hook) wrote to X is visible to the next
 *   holder, and the idle link read by a get is the one its pusher stored.
 *   A future learns of a grant by an acquire load of its `granted` flag,
 *   stored with release under the list lock by the granting thread, which
 *   is either the putter itself (direct hand-off) or a thread that popped
 *   X with acquire; either way the putter's writes are ordered before the
 *   new holder's reads. The claim CAS on an object's state word (HELD ->
 *   MOVING) is relaxed: it only decides which of two racing puts of one
 *   object wins, and publishes nothing.
 *   Lost wakeups (THE LADDER of waitlist.h; the waiter pays):
 *     waiting side (poll)                    putting side (put, cancel)
 *     ap_waitlist_register: count++,         push: head CAS (AP__PUB_MO)
 *       then HEAVY barrier                   ap_waitlist_parked: LIGHT +
 *     re-check: load of the head               relaxed load of count
 *       (AP__CHECK_MO); if objects idle:     if parked: grant pass (wake_if)
 *       grant pass
 *   Either the putter's count load sees the new waiter (and runs the grant
 *   pass itself), or HEAVY makes the push visible to the waiter's re-check,
 *   which then sees the object (THE LADDER; in the seq_cst fallback the
 *   CAS, the increment and both loads fall in one total order S). A try_get
 *   that takes the object first owes a put, which runs the same check.
 *   Before pushing, a put looks at the count once more (relaxed) to hand
 *   its object straight to a queued future: a shortcut that orders
 *   nothing; the check after the push is the ladder's. With nobody parked
 *   a try_get + put pair is the head CAS each (acquire, release), the
 *   claim CAS on the state word, relaxed loads of the count and no fence.
 *   Close is a seq_cst fetch_or on the head followed by wake_all: a queued
 *   future either sees CLOSED in its re-check or is woken by close.
 *   idle() and in_use() are relaxed snapshots with no ordering.
 */

/* state words: 0 ..= n is an idle object's link (index + 1 of the next
 * idle object, 0 at the bottom); the rest mark objects out of the stack */
#define AP__POOL_HELD UINT32_C(0xffffffff)    /* lent to a caller */
#define AP__POOL_GRANTED UINT32_C(0xfffffffe) /* handed to a queued future */
#define AP__POOL_MOVING UINT32_C(0xfffffffd)  /* being put */
#define AP__POOL_TOP UINT64_C(0xffffffff)     /* head: index + 1 of the top */
#define AP__POOL_CLOSED (UINT64_C(1) << 32)
#define AP__POOL_TAG (UINT64_C(1) << 33)      /* head: one step of the ABA tag */
#define AP__POOL_NO_SHIFT 64u

AP_API ap_status ap_pool_init(ap_pool *p, void *state, size_t state_bytes, void *objs,
                              size_t objs_bytes, size_t n, size_t obj_size)
{
    size_t objs_need;
    AP_ASSERT(p != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: without sizes, state and objs passed in swapped order were
     * accepted and init wrote its state words into the object array) */
    if (n == 0 || n > AP_POOL_MAX || obj_size == 0 || state == NULL || objs == NULL ||
        (uintptr_t)state % AP_POOL_STATE_ALIGN != 0 ||
        state_bytes / sizeof(uint32_t) < n ||
        !ap__size_muladd(n, obj_size, 0, &objs_need) || objs_bytes < objs_need ||
        n > (UINTPTR_MAX - (uintptr_t)objs) / obj_size)
        return AP_INVAL;
    p->state = (AP_ATOMIC_T(uint32_t) *)state;
    p->objs = (unsigned char *)objs;
    p->n = n;
    p->obj_size = obj_size;
    p->shift = AP__POOL_NO_SHIFT;
    if ((obj_size & (obj_size - 1)) == 0) {
        unsigned s = 0;
        while (((size_t)1 << s) != obj_size)
            s++;
        p->shift = s;
    }
    p->reset = NULL;
    p->user = NULL;
    p->alloc = NULL;
    p->bytes = 0;
    /* the stack, top to bottom: 0, 1, ..., n - 1 */
    for (size_t i = 0; i < n; i++)
        AP_ATOMIC_INIT(&p->state[i], i + 1 < n ? (uint32_t)(i + 2) : 0u);
    AP_ATOMIC_INIT(&p->head, (uint64_t)1);
    ap_waitlist_init(&p->wl);
    return AP_OK;
}

AP_API void ap_pool_fini(ap_pool *p)
{
    AP_ASSERT(p != NULL && p->n != 0);
    /* Every build: a future still queued would be woken into freed memory. */
    AP_ASSERT(!ap_waitlist_has_waiters(&p->wl));
    p->n = 0;
}

#ifndef AP_NO_MALLOC
/* Bytes of a created pool: header and objects rounded to cache lines. */
AP_API bool ap__pool_layout(size_t n, size_t obj_size, size_t *objs_at, size_t *state_at,
                            size_t *total)
{
    size_t hdr = ap__align_up(sizeof(ap_pool), AP_CACHELINE), body, st;
    if (n == 0 || n > AP_POOL_MAX || obj_size == 0 || !ap__size_muladd(n, obj_size, 0, &body))
        return false;
    st = ap__align_up(body, AP_CACHELINE);
    if (st == 0 || hdr > SIZE_MAX - st || !ap__size_muladd(n, sizeof(uint32_t), hdr + st, total))
        return false;
    *objs_at = hdr;
    *state_at = hdr + st;
    return true;
}

AP_API ap_status ap_pool_create(ap_pool **out, size_t n, size_t obj_size,
                                const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t objs_at, state_at, total;
    AP_ASSERT(out != NULL);
    if (a == NULL || !ap__pool_layout(n, obj_size, &objs_at, &state_at, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    memset(mem + objs_at, 0, state_at - objs_at);
    ap_pool *p = (ap_pool *)(void *)mem;
    ap_status st = ap_pool_init(p, mem + state_at, total - state_at, mem + objs_at,
                                state_at - objs_at, n, obj_size);
    if (st != AP_OK) { /* only if the block sits at the very end of memory */
        a->free(mem, total, a->user);
        return st;
    }
    p->alloc = a;
    p->bytes = total;
    *out = p;
    return AP_OK;
}

AP_API void ap_pool_destroy(ap_pool *p)
{
    if (p == NULL)
        return;
    AP_ASSERT(p->alloc != NULL); /* only pools from ap_pool_create */
    const ap_allocator *a = p->alloc;
    size_t total = p->bytes; /* kept by fini, which zeroes n */
    if (p->n != 0)
        ap_pool_fini(p);
    a->free(p, total, a->user);
}
#endif

AP_API void ap_pool_set_reset(ap_pool *p, void (*reset)(void *obj, void *user), void *user)
{
    AP_ASSERT(p != NULL && p->n != 0);
    p->reset = reset;
    p->user = user;
}

AP_API size_t ap_pool_capacity(const ap_pool *p)
{
    AP_ASSERT(p != NULL);
    return p->n;
}

AP_API void *ap_pool_obj(const ap_pool *p, size_t index)
{
    AP_ASSERT(p != NULL && p->n != 0 && index < p->n);
    return p->objs + index * p->obj_size;
}

AP_FORCE_INLINE bool ap__pool_index(const ap_pool *p, const void *obj, size_t *index)
{
    /* unsigned arithmetic on addresses: anything below objs wraps high;
     * n * obj_size fits (checked at init) */
    uintptr_t off = (uintptr_t)obj - (uintptr_t)p->objs;
    if (off >= (uintptr_t)p->n * p->obj_size)
        return false;
    if (AP_LIKELY(p->shift != AP__POOL_NO_SHIFT)) {
        if (off & (p->obj_size - 1))
            return false;
        *index = (size_t)(off >> p->shift);
    } else {
        if (off % p->obj_size != 0)
            return false;
        *index = (size_t)(off / p->obj_size);
    }
    return true;
}

AP_API ap_status ap_pool_index(const ap_pool *p, const void *obj, size_t *index)
{
    AP_ASSERT(p != NULL && p->n != 0);
    size_t i;
    if (index == NULL || !ap__pool_index(p, obj, &i))
        return AP_INVAL;
    *index = i;
    return AP_OK;
}

/* Pop the top idle object, starting from the head value @h (loaded with
 * acquire or stronger). AP_OK with *index (its state word still holds the
 * stale link: the caller marks it), AP_EMPTY or AP_CLOSED. */
AP_FORCE_INLINE ap_status ap__pool_pop(ap_pool *p, uint64_t h, size_t *index)
{
    for (;;) {
        if (AP_UNLIKELY(h & AP__POOL_CLOSED))
            return AP_CLOSED;
        uint32_t top = (uint32_t)(h & AP__POOL_TOP);
        if (top == 0)
            return AP_EMPTY;
        /* relaxed: the acquire that read @h synchronised with the push that
         * made `top` the top, and that push stored this link before its
         * CAS. If the object has been popped since, the link may be stale
         * or not a link at all, but then the head has changed (the tag
         * moved) and the CAS below fails. */
        uint32_t next = AP_ATOMIC_LOAD(&p->state[top - 1], memory_order_relaxed);
        AP_TEST_YIELD(); /* another get may pop `top` here: the tag saves us */
        /* acquire: pairs with the release CAS of the put that pushed `top`
         * (release sequence of head): the previous holder's writes to the
         * object happen-before ours. Acquire on failure too: the new head
         * value is used to read a state word on the next round. */
        if (AP_ATOMIC_CAS_WEAK(&p->head, &h, ((h & ~AP__POOL_TOP) + AP__POOL_TAG) | next,
                               memory_order_acquire, memory_order_acquire)) {
            *index = (size_t)top - 1;
            return AP_OK;
        }
    }
}

/* Push object @i (state MOVING or GRANTED, owned by the caller) onto the
 * idle stack; also after close. */
AP_FORCE_INLINE void ap__pool_push(ap_pool *p, size_t i)
{
    uint64_t h = AP_ATOMIC_LOAD(&p->head, memory_order_relaxed);
    for (;;) {
        /* relaxed: published by the CAS below (release). */
        AP_ATOMIC_STORE(&p->state[i], (uint32_t)(h & AP__POOL_TOP), memory_order_relaxed);
        AP_TEST_YIELD(); /* linked, not yet on the stack */
        /* AP__PUB_MO (release; seq_cst in the fallback ladder): a release
         * operation (the object's content and its link go to the next
         * getter, pairs with the acquire in ap__pool_pop) and the putting
         * side's publishing write of THE LADDER, before the
         * ap_waitlist_parked check that follows. Relaxed on failure: we
         * only re-link to the new top. */
        if (AP_ATOMIC_CAS_WEAK(&p->head, &h, ((h & ~AP__POOL_TOP) + AP__POOL_TAG) | (i + 1),
                               AP__PUB_MO, memory_order_relaxed))
            return;
    }
}

/* The ctx of a grant pass run by a put: the object in hand. */
typedef struct ap__pool_grant_ctx {
    size_t in_hand; /* index + 1 of the object being put, 0 when none */
} ap__pool_grant_ctx;

/* ap_grant_ops.grant, run UNDER the list lock for the head request: give
 * it the object in hand (@ctx), else one from the idle stack. */
AP_API bool ap__pool_grant(void *obj, ap_grant *g, void *ctx)
{
    ap__pool_grant_ctx *c = (ap__pool_grant_ctx *)ctx;
    ap_pool *p = (ap_pool *)obj;
    ap_pool_get_fut *f = AP_CONTAINER_OF(g, ap_pool_get_fut, grant);
    size_t i;
    if (c != NULL && c->in_hand != 0) {
        /* seq_cst: against close's fetch_or; after close nobody is granted
         * (the object goes to the idle stack instead). */
        if (AP_ATOMIC_LOAD(&p->head, memory_order_seq_cst) & AP__POOL_CLOSED)
            return false;
        i = c->in_hand - 1;
        c->in_hand = 0;
    } else if (ap__pool_pop(p, AP_ATOMIC_LOAD(&p->head, memory_order_acquire), &i) != AP_OK) {
        return false; /* nothing idle, or closed: strict FIFO, stop here */
    }
    /* relaxed: the future's owner reads it after ap_grant's release store
     * of `granted` (which carries the putter's writes, directly or
     * through our acquiring pop). */
    AP_ATOMIC_STORE(&p->state[i], AP__POOL_GRANTED, memory_order_relaxed);
    f->index = i;
    return true;
}

/* ap_grant_ops.can_serve: an object in hand serves the head; else an empty
 * or closed stack can serve nobody, so the lock is skipped then.
 * AP__CHECK_MO: for a waiter this head load is its re-check of THE LADDER
 * (after register's count++ and barrier); acquire is what the data needs. */
AP_API bool ap__pool_can_serve(void *obj, void *ctx)
{
    if (ctx != NULL && ((ap__pool_grant_ctx *)ctx)->in_hand != 0)
        return true;
    uint64_t h = AP_ATOMIC_LOAD(&((ap_pool *)obj)->head, AP__CHECK_MO);
    return (h & AP__POOL_TOP) != 0 && !(h & AP__POOL_CLOSED);
}

/* ap_grant_ops.closed; seq_cst: the ladder's re-check against close's
 * fetch_or. */
AP_API bool ap__pool_closed(void *obj)
{
    return (AP_ATOMIC_LOAD(&((ap_pool *)obj)->head, memory_order_seq_cst) & AP__POOL_CLOSED) != 0;
}

AP_API void ap__pool_release(ap_pool *p, size_t i);

/* ap_grant_ops.give_back: an object granted to a cancelled future goes on
 * (no reset: it was never lent). */
AP_API void ap__pool_give_back(void *obj, ap_grant *g)
{
    ap__pool_release((ap_pool *)obj, AP_CONTAINER_OF(g, ap_pool_get_fut, grant)->index);
}

AP_API const ap_grant_ops *ap__pool_ops(void)
{
    static const ap_grant_ops ops = {ap__pool_grant, ap__pool_can_serve, ap__pool_closed,
                                     ap__pool_give_back};
    return &ops;
}

/* Object @i is ours (MOVING, or GRANTED to a cancelled future): hand it to
 * the head future if any wait, else make it idle and serve anyone who
 * queued meanwhile. */
AP_API void ap__pool_release(ap_pool *p, size_t i)
{
    /* relaxed: a shortcut (hand the object over without touching the
     * stack), not the ladder's check, which follows the push below. */
    if (AP_UNLIKELY(AP_ATOMIC_LOAD(&p->wl.count, memory_order_relaxed) != 0)) {
        ap__pool_grant_ctx c = {i + 1};
        (void)ap_grant_serve(&p->wl, ap__pool_ops(), p, &c);
        if (c.in_hand == 0)
            return; /* handed over directly */
    }
    ap__pool_push(p, i);
    AP_TEST_YIELD(); /* idle again, waiters not yet looked for */
    /* the publishing CAS in ap__pool_push, then the ladder's check */
    if (AP_UNLIKELY(ap_waitlist_parked(&p->wl)))
        (void)ap_grant_serve(&p->wl, ap__pool_ops(), p, NULL);
}

AP_API ap_status ap_pool_try_get(ap_pool *p, void **obj)
{
    AP_ASSERT(p != NULL && p->n != 0);
    if (AP_UNLIKELY(obj == NULL))
        return AP_INVAL;
    /* acquire: see ap__pool_pop (the link we read must be the pusher's). */
    uint64_t h = AP_ATOMIC_LOAD(&p->head, memory_order_acquire);
    if (AP_UNLIKELY(h & AP__POOL_CLOSED))
        return AP_CLOSED;
    /* Fairness: queued futures come first. relaxed: it orders nothing (a
     * registration racing with us may linearize after us anyway,
     * GUARANTEES); a plain load on every machine. */
    if (AP_UNLIKELY(AP_ATOMIC_LOAD(&p->wl.count, memory_order_relaxed) != 0))
        return AP_EMPTY;
    size_t i;
    ap_status st = ap__pool_pop(p, h, &i);
    if (st != AP_OK)
        return st;
    /* relaxed: only this thread (and whoever it hands the object to, with
     * its own synchronisation) reads it, in ap_pool_put's claim. */
    AP_ATOMIC_STORE(&p->state[i], AP__POOL_HELD, memory_order_relaxed);
    *obj = p->objs + i * p->obj_size;
    return AP_OK;
}

AP_API ap_status ap_pool_put(ap_pool *p, void *obj)
{
    AP_ASSERT(p != NULL && p->n != 0);
    size_t i;
    if (AP_UNLIKELY(!ap__pool_index(p, obj, &i)))
        return AP_INVAL;
    uint32_t held = AP__POOL_HELD;
    /* relaxed: the claim only decides which of two racing puts of one
     * object wins (the loser gets AP_INVAL); the push or grant below
     * publishes. Strong: a spurious failure would be a false AP_INVAL. */
    if (AP_UNLIKELY(!AP_ATOMIC_CAS_STRONG(&p->state[i], &held, AP__POOL_MOVING,
                                          memory_order_relaxed, memory_order_relaxed)))
        return AP_INVAL; /* idle (double put), granted, or being put */
    if (p->reset)
        p->reset(obj, p->user); /* still ours alone: nobody can reach it */
    ap__pool_release(p, i);
    return AP_OK;
}

AP_API void ap_pool_close(ap_pool *p)
{
    AP_ASSERT(p != NULL && p->n != 0);
    /* seq_cst: the ladder's SC write, before wake_all's SC load of count. */
    (void)AP_ATOMIC_FETCH_OR(&p->head, AP__POOL_CLOSED, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&p->wl);
}

AP_API bool ap_pool_is_closed(ap_pool *p)
{
    AP_ASSERT(p != NULL && p->n != 0);
    /* acquire: what the closer did before close is visible to a caller
     * that sees it closed. */
    return (AP_ATOMIC_LOAD(&p->head, memory_order_acquire) & AP__POOL_CLOSED) != 0;
}

AP_API size_t ap_pool_idle(ap_pool *p)
{
    AP_ASSERT(p != NULL && p->n != 0);
    size_t idle = 0;
    for (size_t i = 0; i < p->n; i++)
        idle += AP_ATOMIC_LOAD(&p->state[i], memory_order_relaxed) <= AP_POOL_MAX;
    return idle;
}

AP_API size_t ap_pool_in_use(ap_pool *p)
{
    return p->n - ap_pool_idle(p);
}

AP_API void ap_pool_stats_get(ap_pool *p, ap_pool_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(p != NULL && p->n != 0 && out != NULL);
    ap_waitlist_stats_get(&p->wl, &w);
    out->capacity = p->n;
    out->idle = ap_pool_idle(p);
    out->in_use = out->capacity - out->idle;
    out->waiters = w.waiters;
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

/* ---- the get future ---- */

AP__FUTURE_VTABLE(ap__pool, ap_pool_get_fut, ap_pool_get_poll, ap_pool_get_cancel)

AP_API void ap_pool_get_fut_init(ap_pool_get_fut *f, ap_pool *p, void **out)
{
    AP_ASSERT(f != NULL && p != NULL && p->n != 0 && out != NULL);
    f->base.poll = ap__pool_poll_v;
    f->base.cancel = ap__pool_cancel_v;
    f->pool = p;
    f->out = out;
    ap_grant_init(&f->grant);
    f->index = 0;
    f->status = AP_NOT_READY;
}

AP_API ap_poll ap_pool_get_poll(ap_pool_get_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_pool *p = f->pool;
    AP_ASSERT(p->n != 0);
    if (!f->grant.queued) {
        void *obj;
        ap_status st = ap_pool_try_get(p, &obj);
        if (st == AP_OK || st == AP_CLOSED) {
            if (st == AP_OK)
                *f->out = obj;
            f->status = st;
            return AP_READY;
        }
        /* AP_EMPTY (none idle, or others queued): queue behind */
    }
    ap_status st = ap_grant_poll(&p->wl, ap__pool_ops(), p, &f->grant, cx);
    if (st == AP_NOT_READY)
        return AP_PENDING;
    if (st == AP_OK) {
        /* The grant is ours: GRANTED -> HELD (relaxed: a racing put of the
         * object saw GRANTED (AP_INVAL) or sees HELD, like any stale put),
         * and the object goes to *out. */
        AP_ATOMIC_STORE(&p->state[f->index], AP__POOL_HELD, memory_order_relaxed);
        *f->out = p->objs + f->index * p->obj_size;
    }
    f->status = st;
    return AP_READY;
}

AP_API void ap_pool_get_cancel(ap_pool_get_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->status != AP_NOT_READY)
        return; /* completed or cancelled: nothing to undo (idempotent) */
    /* a granted object goes on to the next future, or back to the stack */
    ap_grant_cancel(&f->pool->wl, ap__pool_ops(), f->pool, &f->grant);
    f->status = AP_CANCELED;
}

AP_API ap_status ap_pool_get_status(const ap_pool_get_fut *f)
{
    return f->status;
}

AP_API ap_status ap_pool_get_wait(ap_pool *p, void **obj, ap_deadline deadline_ns)
{
    AP_ASSERT(p != NULL && p->n != 0);
    if (obj == NULL)
        return AP_INVAL;
    ap_pool_get_fut f;
    /* the future's first attempt, done here: only a caller that parks
     * reads the clock (for wait_ns) */
    ap_status st = ap_pool_try_get(p, obj);
    if (st != AP_EMPTY && st != AP_AGAIN)
        return st;
    ap_pool_get_fut_init(&f, p, obj);
    uint64_t t0 = ap_now_ns();
    st = ap_block_on_until(&f.base, deadline_ns);
    ap__waitlist_waited(&p->wl, ap_now_ns() - t0);
    if (st == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.status;
}

#endif /* ASYNCPAT_POOL_H */
