/*
 * asyncpat/work_steal.h -- work-stealing deque (Chase-Lev) and an injector
 *
 * PATTERN
 *   One deque per worker thread. Its owner pushes and pops tasks at the
 *   bottom (LIFO: the task it just forked is hot in its cache); idle
 *   workers, the thieves, steal from the top (FIFO: the oldest task, which
 *   in divide-and-conquer code is the biggest piece of work). The deque is
 *   the Chase-Lev deque in the C11 form of Le, Pop, Cohen and Zappa
 *   Nardelli, "Correct and Efficient Work-Stealing for Weak Memory Models"
 *   (PPoPP 2013), with a fixed capacity: there is no resize, so a thief can
 *   never read a buffer that was freed (no reclamation hazard), and a full
 *   deque answers AP_FULL (the task stays with the caller, who typically
 *   runs it inline). Slots hold one pointer (a task) each and are
 *   AP_ATOMIC_T(void *) accessed with relaxed loads and stores, so a thief that
 *   reads a slot the owner is overwriting has no data race in C11 terms
 *   (it then loses the CAS on top and discards what it read).
 *
 *   The injector (ap_ws_injector) is an ap_mpmc of task pointers, for work
 *   submitted from threads that own no deque; workers poll it when their
 *   own deque is empty, before stealing.
 *
 * USAGE
 *   // one per worker thread, in caller memory
 *   static AP_ALIGNAS(AP_WS_ALIGN) unsigned char mem[AP_WS_BYTES(1024)];
 *   ap_ws dq;
 *   if (ap_ws_init(&dq, mem, sizeof mem, 1024) != AP_OK) abort();
 *   if (ap_ws_try_push(&dq, task) != AP_OK) run(task);        // owner
 *   void *t;
 *   while (ap_ws_try_pop(&dq, &t) == AP_OK) run(t);           // owner
 *   if (ap_ws_try_steal(&other, &t) == AP_OK) run(t);         // any thread
 *
 * GUARANTEES (invariants the tests check)
 *   - holds at most `capacity` tasks; capacity is a power of two >= 1 (else
 *     AP_INVAL); a push to a full deque returns AP_FULL and drops nothing
 *   - every task pushed with AP_OK is returned exactly once, by one
 *     ap_ws_try_pop, ap_ws_try_steal or ap_ws_steal_half (never lost while
 *     the deque lives, never duplicated)
 *   - the owner pops in LIFO order; thieves steal in FIFO order: with tasks
 *     pushed in increasing order, each thief sees increasing tasks, and the
 *     owner sees decreasing tasks between two of its pushes
 *   - pop and steal on an empty deque answer AP_EMPTY; a steal that lost a
 *     race (with another thief or with the owner for the last task)
 *     answers AP_AGAIN and took nothing
 *   - steal_half moves ceil(n/2) of the n tasks it saw (at most the room in
 *     the thief's own deque), oldest first, each one claimed by its own CAS
 *     on top exactly as ap_ws_try_steal claims it: a batch is therefore not
 *     atomic (the owner or other thieves may take tasks between two claims,
 *     and the batch then stops short), but every task still moves exactly
 *     once. A single CAS over k tasks would be wrong here: Chase-Lev's owner
 *     only synchronises with thieves on top for the *last* task, so it
 *     could pop a task inside a range a thief claimed in one step.
 *
 * CONCURRENCY        try_push  try_pop  try_steal  steal_half  len   fini
 *   owner: try_push     -        -        yes        yes       yes    no
 *   owner: try_pop      -        -        yes        yes       yes    no
 *   try_steal          yes      yes       yes        yes       yes    no
 *   steal_half(v, d)   yes      yes       yes        yes       yes    no
 *   try_push and try_pop run only on the owner thread (one thread at a time;
 *   ownership may move between threads with a happens-before edge between
 *   them). Any thread may steal. steal_half(victim, dst) must run on dst's
 *   owner thread (it pushes into dst), and victim != dst.
 *   Progress: push is wait-free; pop is wait-free (one CAS, for the last
 *   task only); try_steal is lock-free (one CAS; failing it means another
 *   operation succeeded); steal_half makes at most ceil(n/2) steal attempts.
 *   The injector has ap_mpmc's progress (see mpmc.h).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   try_push, try_pop, try_steal: O(1); steal_half: O(k) for the
 *              k tasks moved; memory = capacity pointers + 4 cache lines.
 * LIMITS       positions are size_t and wrap: a steal stalled between its
 *              load and its CAS of top while exactly a multiple of
 *              2^w (w = size_t bits) tasks are taken could take one twice:
 *              never with 64 bits, 2^32 takes during one stall with 32.
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_WS_BYTES(capacity), aligned to AP_WS_ALIGN; create: one
 *              allocation through ap_allocator. The injector:
 *              ap_ws_injector_init on at least AP_WS_INJECTOR_BYTES(n) bytes
 *              aligned to AP_WS_INJECTOR_ALIGN, with their size. A buffer
 *              that is NULL, too small or misaligned is AP_INVAL with
 *              nothing written. Nothing else allocates.
 * ERRORS       AP_FULL, AP_EMPTY, AP_AGAIN (a steal lost the race for the
 *              top slot to a peer taking it: retry at once; the injector:
 *              as ap_mpmc), AP_CLOSED (injector); AP_NOT_READY as a pending
 *              injector future's status (ap_mpmc's); AP_INVAL for a capacity that is
 *              0, not a power of two, or above AP_WS_CAPACITY_MAX (never
 *              rounded), or a bad buffer (nothing changed). Out-params
 *              are untouched unless AP_OK. A NULL or finished deque, or
 *              victim == dst, trips AP_ASSERT.
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_ATOMIC_*, AP_TEST_YIELD
 * SEE ALSO     mpmc.h (the injector), examples/fork_join.c,
 *              tests/test_work_steal.c, tests/stress/stress_work_steal.c,
 *              bench/bench_work_steal.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_WORK_STEAL_H
#define ASYNCPAT_WORK_STEAL_H

#include "core.h"
#include "mpmc.h"

/** AP_WS_BYTES - buffer bytes for ap_ws_init (constant expression) */
#define AP_WS_BYTES(capacity) ((size_t)(capacity) * sizeof(AP_ATOMIC_T(void *)))
/** AP_WS_ALIGN - the alignment ap_ws_init needs of its buffer (constant
 *  expression) */
#define AP_WS_ALIGN ((size_t)AP_ALIGNOF(AP_ATOMIC_T(void *)))
/** AP_WS_CAPACITY_MAX - the largest capacity (a power of two) */
#define AP_WS_CAPACITY_MAX (((size_t)1 << (sizeof(size_t) * 8 - 2)) / sizeof(void *))

/*
 * A work-stealing deque of task pointers. Not valid zero-initialised: use
 * ap_ws_init or ap_ws_create.
 */
typedef struct ap_ws {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) top; /* next task to steal; CAS by thieves */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) bottom; /* next free slot; written by the owner */
    /* the owner's counters (ap_ws_stats_get), one writer (the owner), so a
     * relaxed load and store each, no RMW; on bottom's line, which every
     * push and pop writes anyway. pushes and steals are not counted: they
     * are read off bottom and top (see ap_ws_stats). */
    AP_ATOMIC_T(size_t) st_pops_below; /* pops that lowered bottom (not the last task) */
    AP_ATOMIC_T(size_t) st_pops_last;  /* last-task pops that won the CAS on top */
    AP_ATOMIC_T(size_t) st_full;       /* pushes refused with AP_FULL */
    /* the thieves' counter, on its own line: written only by a steal that
     * lost its CAS (the contended path), so a successful steal counts nothing */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(size_t) st_steal_aborts;
    /* read-only after init from here */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(void *) *buf;
    size_t mask; /* capacity - 1 */
    size_t start; /* both positions at init (the stats count from it) */
    const ap_allocator *alloc; /* set by create */
} ap_ws;

AP_STATIC_ASSERT(offsetof(ap_ws, bottom) - offsetof(ap_ws, top) >= AP_CACHELINE,
               "ap_ws: top and bottom must not share a cache line");
AP_STATIC_ASSERT(offsetof(ap_ws, st_steal_aborts) - offsetof(ap_ws, bottom) >= AP_CACHELINE &&
                 offsetof(ap_ws, buf) - offsetof(ap_ws, st_steal_aborts) >= AP_CACHELINE,
               "ap_ws: the thieves' counter has a cache line of its own");

/**
 * ap_ws_stats - what a deque did (ap_ws_stats_get). The fast paths pay
 * almost nothing: pushes and steals are read off the positions (bottom
 * and top) and the owner's pop counts, so try_push and a successful
 * try_steal write no counter; try_pop writes one owner-only counter (a
 * relaxed load and store on bottom's line, no RMW); only the refused or
 * lost paths count anything else.
 * Snapshot rules: read on the owner thread between its own calls, every
 * field is exact (steals as of the moment top was read). From any other
 * thread it is a racy snapshot: each field is read once, relaxed, and a
 * pop in flight can put pushes, pops or steals off by one. At quiescence
 * (no call running) pushes == pops + steals + ap_ws_len(d).
 * Counts are modulo 2^w for a w-bit size_t (never reached with 64 bits).
 * A task moved by ap_ws_steal_half counts as a steal of the victim and a
 * push of the destination.
 */
typedef struct ap_ws_stats {
    uint64_t pushes;       /* tasks pushed with AP_OK (owner) */
    uint64_t pops;         /* tasks popped with AP_OK (owner) */
    uint64_t steals;       /* tasks taken by ap_ws_try_steal / ap_ws_steal_half */
    uint64_t full;         /* pushes refused with AP_FULL */
    uint64_t steal_aborts; /* steals that lost the CAS on top (AP_AGAIN):
                            * contention between thieves, or with the owner
                            * for the last task */
} ap_ws_stats;

/**
 * ap_ws_init - set up a deque in caller memory
 * @buf:      at least AP_WS_BYTES(capacity) bytes aligned to AP_WS_ALIGN
 * @bytes:    the size of @buf (the excess is not touched)
 * @capacity: tasks it holds: a power of two, 1 <= capacity <= AP_WS_CAPACITY_MAX
 *
 * Returns AP_OK or AP_INVAL (capacity 0, not a power of two, too big; @buf
 * NULL, misaligned or @bytes too small); on AP_INVAL *d and @buf are
 * untouched. The calling thread becomes the owner (or hand the deque to
 * its owner through any happens-before edge).
 */
AP_API AP_NODISCARD ap_status ap_ws_init(ap_ws *d, void *buf, size_t bytes, size_t capacity);
/** ap_ws_fini - end of life (no other thread may use it); frees nothing */
AP_API void ap_ws_fini(ap_ws *d);

#ifndef AP_NO_MALLOC
/**
 * ap_ws_create - allocate and initialise a deque (one allocation)
 * @out:   receives the deque; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 *
 * Returns AP_OK, AP_INVAL (nothing allocated) or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_ws_create(ap_ws **out, size_t capacity,
                                           const ap_allocator *alloc);
/** ap_ws_destroy - free a deque from ap_ws_create; tasks left are dropped */
AP_API void ap_ws_destroy(ap_ws *d);
#endif

/**
 * ap_ws_try_push - owner: push a task at the bottom
 * @task: any pointer value (NULL too); the deque stores the pointer only
 *
 * Returns AP_OK or AP_FULL (the task stays with the caller). Owner thread
 * only. Wait-free. Ordering: everything the owner did before the push
 * happens-before the ap_ws_try_steal that takes @task.
 */
AP_API AP_NODISCARD ap_status ap_ws_try_push(ap_ws *d, void *task);

/**
 * ap_ws_try_pop - owner: pop the newest task (LIFO)
 * @out: receives the task; untouched unless AP_OK
 *
 * Returns AP_OK or AP_EMPTY (also when a thief won the last task). Owner
 * thread only. Wait-free: one seq_cst fence, and one CAS on top only when
 * a single task is left.
 */
AP_API AP_NODISCARD ap_status ap_ws_try_pop(ap_ws *d, void **out);

/**
 * ap_ws_try_steal - any thread: take the oldest task (FIFO)
 * @out: receives the task; untouched unless AP_OK
 *
 * Returns AP_OK, AP_EMPTY, or AP_AGAIN (lost the race for it to the owner
 * or another thief: nothing taken, try again or elsewhere). Lock-free.
 * Ordering: the push of the task happens-before this return.
 */
AP_API AP_NODISCARD ap_status ap_ws_try_steal(ap_ws *d, void **out);

/**
 * ap_ws_steal_half - move about half of @victim's tasks into @dst
 * @victim: any deque but @dst
 * @dst:    the calling thread's own deque
 * @moved:  receives how many tasks moved (>= 1); untouched unless AP_OK
 *
 * Takes ceil(n/2) of the n tasks seen in @victim, capped by the free room
 * in @dst, oldest first, one CAS per task (see GUARANTEES); they land in
 * @dst in the order taken, so the owner of @dst pops the newest of them
 * first. Returns AP_OK (some moved; fewer than planned if the owner or
 * other thieves took the rest meanwhile), AP_EMPTY, AP_AGAIN (lost the
 * first race, nothing moved) or AP_FULL (@dst has no room, nothing moved).
 */
AP_API AP_NODISCARD ap_status ap_ws_steal_half(ap_ws *victim, ap_ws *dst, size_t *moved);

/**
 * ap_ws_stats_get - the deque's counters into *@out (see ap_ws_stats for
 * which reads are exact and which are racy snapshots)
 * Concurrency: any thread, concurrently with anything but fini.
 * Wait-free; it writes nothing shared.
 */
AP_API void ap_ws_stats_get(ap_ws *d, ap_ws_stats *out);

/** ap_ws_len - tasks held (relaxed snapshot; exact on the owner thread with no thieves) */
AP_API size_t ap_ws_len(ap_ws *d);
/** ap_ws_capacity - the capacity given at init */
AP_API size_t ap_ws_capacity(const ap_ws *d);

/*
 * The injector: a bounded MPMC FIFO of task pointers (an ap_mpmc with
 * elem_size sizeof(void *)), for tasks submitted from outside the workers.
 * Any thread may push and pop; ap_mpmc's guarantees, ordering and close
 * semantics apply (a push happens-before the pop that returns the task).
 * The ap_mpmc is the member `q`, for its futures and blocking waits.
 */
typedef struct ap_ws_injector {
    ap_mpmc q;
} ap_ws_injector;

/** AP_WS_INJECTOR_BYTES - buffer bytes for ap_ws_injector_init (constant expression) */
#define AP_WS_INJECTOR_BYTES(capacity) AP_MPMC_BYTES(capacity, sizeof(void *))
/** AP_WS_INJECTOR_ALIGN - the alignment ap_ws_injector_init needs of its
 *  buffer (constant expression) */
#define AP_WS_INJECTOR_ALIGN AP_MPMC_ALIGN

/**
 * ap_ws_injector_init - set up an injector of @capacity (>= 1, exact) tasks
 * @buf:   at least AP_WS_INJECTOR_BYTES(capacity) bytes aligned to
 *         AP_WS_INJECTOR_ALIGN
 * @bytes: the size of @buf (the excess is not touched)
 * Returns AP_OK or AP_INVAL (capacity 0 or too big; @buf NULL, misaligned
 * or @bytes too small: *inj and @buf untouched).
 */
AP_API AP_NODISCARD ap_status ap_ws_injector_init(ap_ws_injector *inj, void *buf, size_t bytes,
                                                  size_t capacity);
/** ap_ws_injector_fini - end of life; frees nothing */
AP_API void ap_ws_injector_fini(ap_ws_injector *inj);
/** ap_ws_injector_try_push - submit a task: AP_OK, AP_FULL, AP_AGAIN or AP_CLOSED */
AP_API AP_NODISCARD ap_status ap_ws_injector_try_push(ap_ws_injector *inj, void *task);
/** ap_ws_injector_try_pop - oldest task: AP_OK, AP_EMPTY, AP_AGAIN or AP_CLOSED (drained) */
AP_API AP_NODISCARD ap_status ap_ws_injector_try_pop(ap_ws_injector *inj, void **out);
/** ap_ws_injector_close - refuse further submissions; what is queued still drains */
AP_API void ap_ws_injector_close(ap_ws_injector *inj);
/** ap_ws_injector_len - tasks queued (racy snapshot) */
AP_API size_t ap_ws_injector_len(ap_ws_injector *inj);
/** ap_ws_injector_stats_get - the injector's ap_mpmc_stats (pushed, popped,
 *  waiters, waits, wait_ns of its futures and _wait calls; relaxed snapshot) */
AP_API void ap_ws_injector_stats_get(ap_ws_injector *inj, ap_mpmc_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Following Le et al. (Fig. 1 of the paper, minus resize):
 *     push  : slot store relaxed; RELEASE FENCE; bottom store relaxed.
 *             top is read with acquire.
 *     pop   : bottom = b - 1 (relaxed store); SEQ_CST FENCE; top load
 *             (relaxed); last task: CAS top t -> t + 1, seq_cst.
 *     steal : top load acquire; SEQ_CST FENCE; bottom load acquire; slot
 *             load relaxed; CAS top t -> t + 1, seq_cst.
 *   Happens-before: a push happens-before the steal that takes its task
 *   (the release fence before the bottom store synchronises with the
 *   thief's acquire load of bottom, C11 7.17.4p2 -- also when the thief
 *   reads a later bottom written by the owner's pop, which a release store
 *   of bottom alone would not guarantee). So whatever the owner wrote into
 *   a task before pushing it is visible to the thief that runs it. A
 *   successful steal happens-before the push that reuses its slot (the
 *   seq_cst CAS is a release; push reads top with acquire), so the owner
 *   never overwrites a slot before its thief read it.
 *   The two seq_cst fences are the Dekker pair that decides the race for
 *   the last task: pop stores bottom then reads top, steal reads top then
 *   bottom; with the fences ordered in S, either pop reads the thief's
 *   new top, or the thief reads the lowered bottom (and sees an empty
 *   deque), or both go to the CAS on top, which only one wins.
 *   UNDER THREADSANITIZER (detected by __SANITIZE_THREAD__ or
 *   __has_feature(thread_sanitizer)) the fences are gone, because TSan does
 *   not model fences (it would miss their happens-before edges and report
 *   false races on task payloads; gcc also rejects atomic_thread_fence
 *   under -fsanitize=thread with -Werror=tsan). Instead every access to top
 *   and bottom, except the owner reading its own bottom, is a seq_cst
 *   operation. That is the original Chase-Lev algorithm, proved correct by
 *   Chase and Lev (SPAA 2005) under sequential consistency: all the racing
 *   accesses are in one total order S consistent with program order, so
 *   their proof applies as is; and each release fence + relaxed store pair
 *   becomes a seq_cst (so release) store of the same location, each
 *   acquire load a seq_cst (so acquire) load, so the push -> steal and
 *   steal -> push edges above hold too and TSan sees them. The normal build
 *   keeps the paper's cheaper fences (on x86 push and steal then need no
 *   locked instruction besides the thief's CAS; pop needs one mfence).
 *   len() is a relaxed snapshot with no ordering.
 */

/*
 * The orders of the top/bottom accesses that the fences order in the
 * paper's form; under TSan they become seq_cst and the fences go (see
 * ORDERING in the header comment).
 */
#ifdef AP__TSAN
#define AP__WS_MO_RELAXED_SC memory_order_seq_cst /* relaxed beside a fence */
#define AP__WS_MO_ACQUIRE_SC memory_order_seq_cst /* acquire beside a fence */
#define AP__WS_FENCE_SEQ_CST() ((void)0)
#define AP__WS_FENCE_RELEASE() ((void)0)
#else
#define AP__WS_MO_RELAXED_SC memory_order_relaxed
#define AP__WS_MO_ACQUIRE_SC memory_order_acquire
#define AP__WS_FENCE_SEQ_CST() AP_ATOMIC_FENCE(memory_order_seq_cst)
#define AP__WS_FENCE_RELEASE() AP_ATOMIC_FENCE(memory_order_release)
#endif

/* Signed distance b - t of two positions that are less than 2^(bits-1) apart
 * (positions wrap around size_t; differences never exceed the capacity + 1). */
AP_FORCE_INLINE ptrdiff_t ap__ws_diff(size_t b, size_t t)
{
    size_t d = b - t;
    return d > SIZE_MAX / 2 ? -(ptrdiff_t)(SIZE_MAX - d) - 1 : (ptrdiff_t)d;
}

AP_FORCE_INLINE bool ap__ws_capacity_ok(size_t capacity)
{
    return capacity != 0 && (capacity & (capacity - 1)) == 0 &&
           capacity <= AP_WS_CAPACITY_MAX;
}

/* One more on an owner-only counter: the owner is its one writer, so a
 * relaxed load and a relaxed store (no RMW; on x86 an add to memory).
 * relaxed: a statistics counter, single writer; readers take a snapshot. */
AP_FORCE_INLINE void ap__ws_owner_count(AP_ATOMIC_T(size_t) *c)
{
    /* relaxed: statistics counter, only the owner writes it */
    AP_ATOMIC_STORE(c, AP_ATOMIC_LOAD(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* Test hook: start both positions at @start, to exercise their wrap-around. */
AP_API AP_NODISCARD ap_status ap__ws_init_at(ap_ws *d, void *buf, size_t bytes,
                                             size_t capacity, size_t start)
{
    AP_ASSERT(d != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: a short buffer was overrun; NULL or misaligned tripped AP_ASSERT).
     * capacity <= AP_WS_CAPACITY_MAX, so AP_WS_BYTES(capacity) fits. */
    if (!ap__ws_capacity_ok(capacity) || buf == NULL ||
        (uintptr_t)buf % AP_WS_ALIGN != 0 || bytes < AP_WS_BYTES(capacity))
        return AP_INVAL;
    d->buf = (AP_ATOMIC_T(void *) *)buf;
    d->mask = capacity - 1;
    d->start = start;
    d->alloc = NULL;
    AP_ATOMIC_INIT(&d->st_pops_below, 0);
    AP_ATOMIC_INIT(&d->st_pops_last, 0);
    AP_ATOMIC_INIT(&d->st_full, 0);
    AP_ATOMIC_INIT(&d->st_steal_aborts, 0);
    for (size_t i = 0; i < capacity; i++)
        AP_ATOMIC_INIT(&d->buf[i], NULL);
    AP_ATOMIC_INIT(&d->top, start);
    AP_ATOMIC_INIT(&d->bottom, start);
    return AP_OK;
}

AP_API ap_status ap_ws_init(ap_ws *d, void *buf, size_t bytes, size_t capacity)
{
    return ap__ws_init_at(d, buf, bytes, capacity, 0);
}

AP_API void ap_ws_fini(ap_ws *d)
{
    AP_ASSERT(d != NULL && d->buf != NULL); /* live: fini once */
    d->buf = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_ws_create(ap_ws **out, size_t capacity, const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_ws), AP_CACHELINE);
    AP_ASSERT(out != NULL);
    if (a == NULL || !ap__ws_capacity_ok(capacity))
        return AP_INVAL;
    unsigned char *mem =
        (unsigned char *)a->alloc(hdr + AP_WS_BYTES(capacity), AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_ws *d = (ap_ws *)(void *)mem;
    ap_status st = ap_ws_init(d, mem + hdr, AP_WS_BYTES(capacity), capacity);
    AP_ASSERT(st == AP_OK);
    (void)st;
    d->alloc = a;
    *out = d;
    return AP_OK;
}

AP_API void ap_ws_destroy(ap_ws *d)
{
    if (d == NULL)
        return;
    AP_ASSERT(d->alloc != NULL); /* only deques from ap_ws_create */
    const ap_allocator *a = d->alloc;
    size_t total = ap__align_up(sizeof(ap_ws), AP_CACHELINE) + AP_WS_BYTES(d->mask + 1);
    if (d->buf != NULL) /* fini may have run already */
        ap_ws_fini(d);
    a->free(d, total, a->user);
}
#endif

AP_API ap_status ap_ws_try_push(ap_ws *d, void *task)
{
    AP_ASSERT(d != NULL && d->buf != NULL);
    /* relaxed: only the owner writes bottom. */
    size_t b = AP_ATOMIC_LOAD(&d->bottom, memory_order_relaxed);
    /* acquire: pairs with the seq_cst (release) CAS of the thief that took
     * the task in the slot we are about to reuse; its read of the slot
     * happens-before our store. (seq_cst under TSan.) */
    size_t t = AP_ATOMIC_LOAD(&d->top, AP__WS_MO_ACQUIRE_SC);
    if (AP_UNLIKELY(ap__ws_diff(b, t) > (ptrdiff_t)d->mask)) {
        ap__ws_owner_count(&d->st_full);
        return AP_FULL;
    }
    /* relaxed: published by the fence and the bottom store below. */
    AP_ATOMIC_STORE(&d->buf[b & d->mask], task, memory_order_relaxed);
    AP_TEST_YIELD(); /* slot written, not yet published */
    /* release fence: with the bottom store below (or any later one by this
     * owner) it synchronises with a thief's acquire load of bottom, so the
     * slot and the task's contents are visible to the thief that takes it. */
    AP__WS_FENCE_RELEASE();
    /* relaxed: ordered by the fence (seq_cst under TSan, a release store). */
    AP_ATOMIC_STORE(&d->bottom, b + 1, AP__WS_MO_RELAXED_SC);
    return AP_OK;
}

AP_API ap_status ap_ws_try_pop(ap_ws *d, void **out)
{
    AP_ASSERT(d != NULL && d->buf != NULL);
    size_t b = AP_ATOMIC_LOAD(&d->bottom, memory_order_relaxed) - 1;
    /* relaxed store, then the seq_cst fence: the owner's half of the
     * Dekker pair with ap_ws_try_steal (store bottom, then load top). */
    AP_ATOMIC_STORE(&d->bottom, b, AP__WS_MO_RELAXED_SC);
    AP__WS_FENCE_SEQ_CST();
    AP_TEST_YIELD(); /* bottom lowered, top not read: the race window */
    /* relaxed: ordered after the bottom store by the fence. */
    size_t t = AP_ATOMIC_LOAD(&d->top, AP__WS_MO_RELAXED_SC);
    ptrdiff_t n = ap__ws_diff(b, t); /* tasks left besides the one at b */
    if (n < 0) {
        /* empty: restore bottom (relaxed: thieves compare it with top only). */
        AP_ATOMIC_STORE(&d->bottom, b + 1, AP__WS_MO_RELAXED_SC);
        return AP_EMPTY;
    }
    /* relaxed: our own store (or, for the last task, a value we only keep
     * if the CAS below wins). */
    void *task = AP_ATOMIC_LOAD(&d->buf[b & d->mask], memory_order_relaxed);
    if (n > 0) {
        *out = task; /* more than one task: no thief can reach slot b */
        ap__ws_owner_count(&d->st_pops_below);
        return AP_OK;
    }
    /* The last task: race the thieves for it with a CAS on top. seq_cst: it
     * is ordered in S with the thieves' fences and CASes (the paper's
     * choice); relaxed on failure, we only learn that a thief won. */
    bool won = AP_ATOMIC_CAS_STRONG(&d->top, &t, t + 1, memory_order_seq_cst,
                                    memory_order_relaxed);
    /* relaxed: the deque is empty now; top == b + 1 either way. */
    AP_ATOMIC_STORE(&d->bottom, b + 1, AP__WS_MO_RELAXED_SC);
    if (!won)
        return AP_EMPTY;
    ap__ws_owner_count(&d->st_pops_last);
    *out = task;
    return AP_OK;
}

AP_API ap_status ap_ws_try_steal(ap_ws *d, void **out)
{
    AP_ASSERT(d != NULL && d->buf != NULL);
    /* acquire: pairs with the seq_cst CAS of the previous thief, whose
     * claim is then visible before we look at the slot. */
    size_t t = AP_ATOMIC_LOAD(&d->top, AP__WS_MO_ACQUIRE_SC);
    /* seq_cst fence: the thief's half of the Dekker pair with
     * ap_ws_try_pop (load top, then load bottom). */
    AP__WS_FENCE_SEQ_CST();
    /* acquire: with the owner's release fence before its bottom store,
     * the push of every slot below bottom happens-before what follows. */
    size_t b = AP_ATOMIC_LOAD(&d->bottom, AP__WS_MO_ACQUIRE_SC);
    if (ap__ws_diff(b, t) <= 0)
        return AP_EMPTY;
    /* relaxed: the slot is atomic, so reading it while the owner reuses it
     * is no data race; in that case the CAS below fails and we discard it. */
    void *task = AP_ATOMIC_LOAD(&d->buf[t & d->mask], memory_order_relaxed);
    AP_TEST_YIELD(); /* task read, not yet claimed */
    /* seq_cst: ordered in S with the owner's fence and last-task CAS, and a
     * release for the push that reuses this slot; relaxed on failure. */
    if (!AP_ATOMIC_CAS_STRONG(&d->top, &t, t + 1, memory_order_seq_cst,
                              memory_order_relaxed)) {
        /* relaxed: statistics counter (the thieves' line); only a lost
         * race pays for it, a successful steal is read off top */
        (void)AP_ATOMIC_FETCH_ADD(&d->st_steal_aborts, 1, memory_order_relaxed);
        return AP_AGAIN;
    }
    *out = task;
    return AP_OK;
}

AP_API ap_status ap_ws_steal_half(ap_ws *victim, ap_ws *dst, size_t *moved)
{
    AP_ASSERT(victim != NULL && dst != NULL && victim != dst);
    AP_ASSERT(victim->buf != NULL && dst->buf != NULL);
    /* The size estimate: the same loads as ap_ws_try_steal (the claims
     * below redo them, so these only size the batch). */
    size_t t = AP_ATOMIC_LOAD(&victim->top, AP__WS_MO_ACQUIRE_SC);
    AP__WS_FENCE_SEQ_CST();
    size_t b = AP_ATOMIC_LOAD(&victim->bottom, AP__WS_MO_ACQUIRE_SC);
    ptrdiff_t n = ap__ws_diff(b, t);
    if (n <= 0)
        return AP_EMPTY;
    /* Room in dst: we are its owner, so its bottom is exact and its top can
     * only grow (thieves): the room can only grow while we fill it, and
     * the pushes below cannot fail. */
    size_t room = dst->mask + 1 - ap_ws_len(dst);
    size_t want = ((size_t)n + 1) / 2;
    if (want > room)
        want = room;
    if (want == 0)
        return AP_FULL;
    size_t done = 0;
    ap_status st = AP_OK;
    while (done < want) {
        void *task;
        st = ap_ws_try_steal(victim, &task);
        if (st != AP_OK)
            break;
        ap_status pst = ap_ws_try_push(dst, task);
        AP_ASSERT(pst == AP_OK); /* room was reserved above */
        (void)pst;
        done++;
    }
    if (done == 0)
        return st;
    *moved = done;
    return AP_OK;
}

AP_API size_t ap_ws_len(ap_ws *d)
{
    AP_ASSERT(d != NULL);
    /* relaxed: a snapshot. Read top first: top only grows, so a later
     * bottom cannot make the count spuriously large by more than a push. */
    size_t t = AP_ATOMIC_LOAD(&d->top, memory_order_relaxed);
    size_t b = AP_ATOMIC_LOAD(&d->bottom, memory_order_relaxed);
    ptrdiff_t n = ap__ws_diff(b, t);
    if (n < 0)
        return 0;
    return (size_t)n > d->mask + 1 ? d->mask + 1 : (size_t)n;
}

AP_API size_t ap_ws_capacity(const ap_ws *d)
{
    return d->mask + 1;
}

AP_API void ap_ws_stats_get(ap_ws *d, ap_ws_stats *out)
{
    AP_ASSERT(d != NULL && d->buf != NULL && out != NULL);
    /* relaxed: a statistics snapshot, each word read once. The pop
     * counters first, then the positions: pushes = (bottom - start) +
     * pops that lowered bottom; steals = (top - start) - last-task pops
     * (the owner's CAS wins move top too). */
    size_t below = AP_ATOMIC_LOAD(&d->st_pops_below, memory_order_relaxed);
    size_t last = AP_ATOMIC_LOAD(&d->st_pops_last, memory_order_relaxed);
    size_t b = AP_ATOMIC_LOAD(&d->bottom, memory_order_relaxed);
    size_t t = AP_ATOMIC_LOAD(&d->top, memory_order_relaxed);
    out->pushes = (uint64_t)(size_t)(b - d->start + below);
    out->pops = (uint64_t)(size_t)(below + last);
    out->steals = (uint64_t)(size_t)(t - d->start - last);
    out->full = (uint64_t)AP_ATOMIC_LOAD(&d->st_full, memory_order_relaxed);
    out->steal_aborts = (uint64_t)AP_ATOMIC_LOAD(&d->st_steal_aborts, memory_order_relaxed);
}

AP_API ap_status ap_ws_injector_init(ap_ws_injector *inj, void *buf, size_t bytes,
                                     size_t capacity)
{
    AP_ASSERT(inj != NULL);
    /* ap_mpmc_init checks the buffer and its size */
    return ap_mpmc_init(&inj->q, buf, bytes, capacity, sizeof(void *));
}

AP_API void ap_ws_injector_fini(ap_ws_injector *inj)
{
    ap_mpmc_fini(&inj->q);
}

AP_API ap_status ap_ws_injector_try_push(ap_ws_injector *inj, void *task)
{
    return ap__mpmc_push(&inj->q, &task, sizeof(void *));
}

AP_API ap_status ap_ws_injector_try_pop(ap_ws_injector *inj, void **out)
{
    return ap__mpmc_pop(&inj->q, out, sizeof(void *));
}

AP_API void ap_ws_injector_close(ap_ws_injector *inj)
{
    ap_mpmc_close(&inj->q);
}

AP_API size_t ap_ws_injector_len(ap_ws_injector *inj)
{
    return ap_mpmc_len(&inj->q);
}

AP_API void ap_ws_injector_stats_get(ap_ws_injector *inj, ap_mpmc_stats *out)
{
    ap_mpmc_stats_get(&inj->q, out);
}

#endif /* ASYNCPAT_WORK_STEAL_H */
