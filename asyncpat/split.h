/*
 * asyncpat/split.h -- route items to k output queues: by key (hash
 *                     partitioning), round-robin, or broadcast
 *
 * PATTERN
 *   A splitter over k caller-provided ap_mpmc queues (mpmc.h) with equal
 *   element sizes.
 *     HASH         output = ap_split_route(key): a 64-bit mix of the key
 *                  (splitmix64's finaliser) mapped to [0, k) by multiply-
 *                  shift. A pure function of (key, k): the same key always
 *                  goes to the same output, in every process.
 *     ROUND_ROBIN  output = cursor % k; ap_split_try_push moves the cursor
 *                  on only when its push succeeded, so with try_push from
 *                  one thread the i-th accepted item goes to output i % k
 *                  exactly (a full output makes the item wait, it does not
 *                  skip). A push future takes its output (and moves the
 *                  cursor) at init, so one that is cancelled or closed
 *                  leaves that output skipped. Under concurrency the
 *                  spread stays within a few items of even, not exact.
 *     BROADCAST    every output gets a copy, in output order 0..k-1.
 *   The splitter holds no items: an item is either in the queue(s) it was
 *   routed to or still the caller's.
 *
 * USAGE (ev is the caller's struct ev with a uint64_t user_id; drop() too)
 *   ap_mpmc *shard[4];   // each from ap_mpmc_create(&shard[i], 1024, sizeof(struct ev), NULL)
 *   ap_split sp;
 *   if (ap_split_init(&sp, shard, sizeof shard, AP_SPLIT_MODE_HASH) != AP_OK) abort();
 *   switch (ap_split_try_push(&sp, ev.user_id, &ev)) {
 *   case AP_OK: break;                      // in shard[ap_split_route(&sp, ev.user_id)]
 *   case AP_FULL: case AP_AGAIN:            // still ours: retry, or wait:
 *       if (ap_split_push_wait(&sp, ev.user_id, &ev, AP_DEADLINE_NONE) != AP_OK) drop(&ev);
 *       break;
 *   default: drop(&ev);                     // AP_CLOSED: the item is still ours
 *   }
 *
 * GUARANTEES (invariants the tests check)
 *   - HASH: an item with key x is only ever pushed to ap_split_route(s, x)
 *   - one-output modes: AP_OK means exactly one output got the item; any
 *     other status means no output got it (the item stays the caller's)
 *   - BROADCAST is resumable, not transactional (ap_mpmc has no
 *     reservation): *next counts the outputs that hold the item, always
 *     outputs [0, *next). AP_OK: all k. AP_FULL / AP_AGAIN / AP_CLOSED:
 *     outputs [0, *next) hold it, [*next, k) do not; call again with the
 *     same cursor to deliver the rest (or step over a closed output with
 *     ++*next). So a copy is never pushed twice nor lost unreported. When
 *     *next == 0 the call first checks that every output has room and
 *     answers AP_FULL with nothing pushed if one does not; when one
 *     thread is the only producer of the outputs (a single broadcasting
 *     thread; consumers only make room) that makes a full broadcast
 *     all-or-nothing, and only a transient AP_AGAIN can stop it half-way.
 *     Two threads broadcasting at once can both pass the room check, and
 *     one may then stop half-way on AP_FULL (reported exactly by *next).
 *   - counts are conserved: items accepted = sum of items in the outputs
 *     (plus popped), k times for broadcast (stress test, under TSan)
 *   - the future variants wait for room with ap_mpmc push futures and keep
 *     the same routing; a cancelled one reports how far it got
 *
 * CONCURRENCY          try_push  try_broadcast  futures  route  fini
 *   any thread            yes         yes          yes     yes    no
 *   Progress: as ap_mpmc_try_push (never blocks: bounded spins, then
 *   AP_AGAIN; the waitlist's short lock only to wake a future parked on
 *   that output), plus one relaxed atomic add for ROUND_ROBIN, and one on
 *   the output's own counter line once ap_split_stats_init gave counters
 *   (without them, one predictable branch). A future is
 *   polled by one thread at a time (future.h rule 4). A broadcast cursor
 *   belongs to one caller.
 *
 * ORDERING
 *   Those of ap_mpmc: a push that returns AP_OK happens-before the pop of
 *   its element. The round-robin cursor is relaxed: it only spreads load
 *   and publishes nothing.
 *
 * STATS        ap_split_stats_get (totals; the waiting side: waiters,
 *              waits, wait_ns) and ap_split_out_stats_get (per output:
 *              routed, refused, closed; opt-in, in a caller array given to
 *              ap_split_stats_init). Relaxed snapshots, exact at quiescence.
 * COMPLEXITY   O(1) per item (broadcast: O(k)); the splitter is a few words
 * MEMORY       ap_split_init takes the caller's array of k queue pointers
 *              and its size in bytes, AP_SPLIT_BYTES(k) = k * sizeof(ap_mpmc
 *              *) (sizeof the array; kept, not copied; it must outlive the
 *              splitter); no allocation, so no create/destroy.
 * ERRORS       AP_FULL, AP_AGAIN (a peer is mid-slot: retry at once),
 *              AP_CLOSED from the outputs; AP_NOT_READY as a pending push
 *              future's status; AP_INVAL for
 *              an array that is NULL, misaligned or of 0 bytes or a size
 *              not a multiple of a pointer's, a NULL output, mixed element
 *              sizes, an unknown mode; nothing changed.
 * WAKE ORDER   that of ap_mpmc's not_full waiters (FIFO per output).
 * CONFIG       AP_ASSERT, AP_SPIN_LIMIT
 * SEE ALSO     mpmc.h, work_steal.h
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_SPLIT_H
#define ASYNCPAT_SPLIT_H

#include "core.h"
#include "mpmc.h"

/** ap_split_mode - how an item picks its output(s) */
typedef enum ap_split_mode {
    AP_SPLIT_MODE_HASH = 0,        /* by key: same key, same output */
    AP_SPLIT_MODE_ROUND_ROBIN = 1, /* in turn */
    AP_SPLIT_MODE_BROADCAST = 2    /* to every output */
} ap_split_mode;

/**
 * ap_split_counter - one output's counters, in the caller's array given to
 * ap_split_stats_init (one cache line each, so producers routing to
 * different outputs never share a counter line). Read them with
 * ap_split_out_stats_get.
 */
typedef struct ap_split_counter {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) routed;
    AP_ATOMIC_T(uint64_t) refused;
    AP_ATOMIC_T(uint64_t) closed;
} ap_split_counter;

/** AP_SPLIT_STATS_BYTES - bytes of the counter array for @k outputs (constant expression) */
#define AP_SPLIT_STATS_BYTES(k) ((size_t)(k) * sizeof(ap_split_counter))
/** AP_SPLIT_STATS_ALIGN - the alignment ap_split_stats_init needs of it */
#define AP_SPLIT_STATS_ALIGN AP_ALIGNOF(ap_split_counter)

/** ap_split - a splitter; set up with ap_split_init */
typedef struct ap_split {
    AP_ATOMIC_T(uint64_t) cursor; /* ROUND_ROBIN: accepted items so far (relaxed) */
    ap_mpmc *const *outs;
    size_t k;
    ap_split_mode mode;
    ap_split_counter *ctr; /* per-output counters (ap_split_stats_init), or NULL */
    /* the waiting side's counters (futures and ap_split_push_wait only) */
    AP_ATOMIC_T(uint64_t) st_waiters;
    AP_ATOMIC_T(uint64_t) st_waits;
    AP_ATOMIC_T(uint64_t) st_wait_ns;
} ap_split;

/**
 * ap_split_out_stats - what one output was handed (ap_split_out_stats_get;
 * a relaxed snapshot, exact at quiescence). Counted only once the caller
 * gave the splitter a counter array (ap_split_stats_init): without one
 * the push paths count nothing and cost one predictable branch more.
 * The splitter drops nothing: an item an output refused stays the
 * caller's, so there is no "dropped" count.
 */
typedef struct ap_split_out_stats {
    uint64_t routed;  /* items (broadcast: copies) the output accepted */
    uint64_t refused; /* try_push / try_broadcast answers AP_FULL or AP_AGAIN
                       * from this output (a broadcast's room check counts
                       * the first output without room) */
    uint64_t closed;  /* answers AP_CLOSED from this output (calls and futures) */
} ap_split_out_stats;

/**
 * ap_split_stats - the splitter's totals (ap_split_stats_get; a relaxed
 * snapshot, exact at quiescence): routed, refused and closed are the sums
 * over the outputs (0 without ap_split_stats_init); the waiting side is
 * always counted, by the futures only (slow path): a push future, or
 * ap_split_push_wait, that finds its output full registers and counts one
 * wait per output it waits on.
 */
typedef struct ap_split_stats {
    uint64_t routed;  /* sum of the outputs' routed */
    uint64_t refused; /* sum of the outputs' refused */
    uint64_t closed;  /* sum of the outputs' closed */
    uint64_t waiters; /* push futures waiting for room now */
    uint64_t waits;   /* times a push future waited for an output's room */
    uint64_t wait_ns; /* ns parked in ap_split_push_wait (ap_now_ns's clock;
                       * only callers that parked) */
} ap_split_stats;

/** ap_split_push_fut - a push (or broadcast) that waits for room */
typedef struct ap_split_push_fut {
    ap_future base; /* first member: &f.base works */
    ap_split *s;
    const void *item;
    size_t out;     /* one-output modes: the chosen output */
    size_t next;    /* BROADCAST: outputs [0, next) hold the item */
    bool inner_live; /* inner is initialised for outs[out or next] */
    bool waiting;    /* inner returned AP_PENDING: counted in st_waiters */
    ap_mpmc_push_fut inner;
    ap_status status; /* AP_NOT_READY while pending */
} ap_split_push_fut;

/** AP_SPLIT_BYTES - bytes of an array of @k output pointers (constant expression) */
#define AP_SPLIT_BYTES(k) ((size_t)(k) * sizeof(ap_mpmc *))
/** AP_SPLIT_ALIGN - the alignment ap_split_init needs of the array */
#define AP_SPLIT_ALIGN AP_ALIGNOF(ap_mpmc *)

/**
 * ap_split_init - set up a splitter over the k = bytes / sizeof(ap_mpmc *)
 *                 queues of @outs
 * @outs:  k initialised queues of one element size; the array is kept
 * @bytes: the array's size in bytes, AP_SPLIT_BYTES(k) (sizeof an array)
 * @mode:  HASH, ROUND_ROBIN or BROADCAST
 *
 * Returns AP_OK or AP_INVAL (@outs NULL or misaligned, @bytes 0 or not a
 * multiple of sizeof(ap_mpmc *), a NULL output, element sizes that differ,
 * unknown mode); on AP_INVAL *s is untouched.
 */
AP_API AP_NODISCARD ap_status ap_split_init(ap_split *s, ap_mpmc *const *outs, size_t bytes,
                                            ap_split_mode mode);
/** ap_split_fini - end of life; frees nothing, the queues are the caller's */
AP_API void ap_split_fini(ap_split *s);
/**
 * ap_split_stats_init - count per output into the caller's array
 * @buf:   at least AP_SPLIT_STATS_BYTES(k) bytes aligned to
 *         AP_SPLIT_STATS_ALIGN (k: the splitter's outputs); kept, zeroed
 *         here, it must outlive the splitter
 * @bytes: its size in bytes
 *
 * Returns AP_OK or AP_INVAL (@buf NULL, misaligned or too small; nothing
 * changed). Call it after ap_split_init, before the splitter is shared
 * (not concurrently with any other call on it); calling it again restarts
 * the per-output counts in the new array.
 */
AP_API AP_NODISCARD ap_status ap_split_stats_init(ap_split *s, void *buf, size_t bytes);
/** ap_split_stats_get - the totals into *@out (relaxed snapshot; any thread) */
AP_API void ap_split_stats_get(ap_split *s, ap_split_stats *out);
/**
 * ap_split_out_stats_get - output @i's counters into *@out (relaxed
 * snapshot; any thread). Returns AP_OK, or AP_INVAL (@i >= k, or no
 * ap_split_stats_init: *@out untouched).
 */
AP_API AP_NODISCARD ap_status ap_split_out_stats_get(ap_split *s, size_t i,
                                                     ap_split_out_stats *out);
/** ap_split_route - the output (0..k-1) of @key in HASH mode; pure */
AP_API size_t ap_split_route(const ap_split *s, uint64_t key);
/**
 * ap_split_try_push - route one item (HASH or ROUND_ROBIN mode)
 * @key:  HASH: the partition key; ROUND_ROBIN: ignored
 * @item: elem_size bytes, copied; the caller keeps it on failure
 *
 * Returns AP_OK (in exactly one output), or AP_FULL / AP_AGAIN /
 * AP_CLOSED from the chosen output, which then holds nothing new; no other
 * output was tried. Concurrency: any thread.
 */
AP_API AP_NODISCARD ap_status ap_split_try_push(ap_split *s, uint64_t key, const void *item);
/**
 * ap_split_try_broadcast - push a copy to every output (BROADCAST mode)
 * @next: caller's cursor, 0 for a new item; on return the outputs
 *        [0, *next) hold the item
 *
 * Returns AP_OK (*next == k), or AP_FULL / AP_AGAIN / AP_CLOSED from
 * output *next: see GUARANTEES for how to resume.
 */
AP_API AP_NODISCARD ap_status ap_split_try_broadcast(ap_split *s, const void *item,
                                                     size_t *next);
/**
 * ap_split_push_fut_init / _poll / _cancel / _status - the waiting forms.
 * The output is chosen at init (HASH: by key; ROUND_ROBIN: the cursor
 * advances at init); BROADCAST waits for each output in turn. Result:
 * AP_OK, AP_CLOSED (an output closed: for broadcast, outputs [0, progress)
 * hold the item) or AP_CANCELED. @item must stay valid until done.
 */
AP_API void ap_split_push_fut_init(ap_split_push_fut *f, ap_split *s, uint64_t key,
                                   const void *item);
AP_API ap_poll ap_split_push_poll(ap_split_push_fut *f, ap_cx *cx);
AP_API void ap_split_push_cancel(ap_split_push_fut *f);
/** AP_NOT_READY while pending, then AP_OK / AP_CLOSED / AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_split_push_status(const ap_split_push_fut *f);
/** outputs that hold the item (1 or 0 for one-output modes; 0..k for broadcast),
 *  exact once the future completed or was cancelled */
AP_API size_t ap_split_push_progress(const ap_split_push_fut *f);
/**
 * ap_split_push_wait - block this thread until pushed (all outputs for
 * broadcast), an output closed, or @deadline_ns (on ap_now_ns()'s clock:
 * the split takes no `now` anywhere, so it has no clock of its own; see
 * time.h, CLOCKS). Returns AP_OK, AP_CLOSED
 * or AP_TIMEDOUT (broadcast: some outputs may hold it; use the future to
 * know which).
 */
AP_API AP_NODISCARD ap_status ap_split_push_wait(ap_split *s, uint64_t key, const void *item,
                                                 ap_deadline deadline_ns);

/* ---- implementation ---- */

AP_API ap_status ap_split_init(ap_split *s, ap_mpmc *const *outs, size_t bytes,
                               ap_split_mode mode)
{
    AP_ASSERT(s != NULL);
    size_t k = bytes / sizeof(ap_mpmc *);
    if (k == 0 || bytes % sizeof(ap_mpmc *) != 0 || outs == NULL ||
        (uintptr_t)outs % AP_SPLIT_ALIGN != 0 ||
        (mode != AP_SPLIT_MODE_HASH && mode != AP_SPLIT_MODE_ROUND_ROBIN && mode != AP_SPLIT_MODE_BROADCAST))
        return AP_INVAL;
    for (size_t i = 0; i < k; i++)
        if (outs[i] == NULL || outs[i]->elem_size != outs[0]->elem_size)
            return AP_INVAL;
    AP_ATOMIC_INIT(&s->cursor, 0);
    s->outs = outs;
    s->k = k;
    s->mode = mode;
    s->ctr = NULL;
    AP_ATOMIC_INIT(&s->st_waiters, 0u);
    AP_ATOMIC_INIT(&s->st_waits, 0u);
    AP_ATOMIC_INIT(&s->st_wait_ns, 0u);
    return AP_OK;
}

AP_API ap_status ap_split_stats_init(ap_split *s, void *buf, size_t bytes)
{
    AP_ASSERT(s != NULL && s->outs != NULL);
    if (buf == NULL || (uintptr_t)buf % AP_SPLIT_STATS_ALIGN != 0 ||
        bytes < AP_SPLIT_STATS_BYTES(s->k))
        return AP_INVAL;
    ap_split_counter *c = (ap_split_counter *)buf;
    for (size_t i = 0; i < s->k; i++) {
        AP_ATOMIC_INIT(&c[i].routed, 0u);
        AP_ATOMIC_INIT(&c[i].refused, 0u);
        AP_ATOMIC_INIT(&c[i].closed, 0u);
    }
    s->ctr = c;
    return AP_OK;
}

/* One push outcome on output @i's counters, when the caller gave some.
 * relaxed: statistics counters; they publish nothing. */
AP_API void ap__split_count(ap_split *s, size_t i, ap_status st)
{
    ap_split_counter *c = s->ctr;
    if (AP_LIKELY(c == NULL))
        return;
    /* relaxed: statistics counter (this output's own line) */
    if (st == AP_OK)
        (void)AP_ATOMIC_FETCH_ADD(&c[i].routed, 1, memory_order_relaxed);
    else if (st == AP_CLOSED)
        (void)AP_ATOMIC_FETCH_ADD(&c[i].closed, 1, memory_order_relaxed);
    else /* AP_FULL, AP_AGAIN */
        (void)AP_ATOMIC_FETCH_ADD(&c[i].refused, 1, memory_order_relaxed);
}

AP_API ap_status ap_split_out_stats_get(ap_split *s, size_t i, ap_split_out_stats *out)
{
    AP_ASSERT(s != NULL && s->outs != NULL && out != NULL);
    if (s->ctr == NULL || i >= s->k)
        return AP_INVAL;
    /* relaxed: statistics snapshot */
    out->routed = AP_ATOMIC_LOAD(&s->ctr[i].routed, memory_order_relaxed);
    out->refused = AP_ATOMIC_LOAD(&s->ctr[i].refused, memory_order_relaxed);
    out->closed = AP_ATOMIC_LOAD(&s->ctr[i].closed, memory_order_relaxed);
    return AP_OK;
}

AP_API void ap_split_stats_get(ap_split *s, ap_split_stats *out)
{
    AP_ASSERT(s != NULL && s->outs != NULL && out != NULL);
    out->routed = out->refused = out->closed = 0;
    for (size_t i = 0; s->ctr != NULL && i < s->k; i++) {
        ap_split_out_stats o;
        ap_status st = ap_split_out_stats_get(s, i, &o);
        AP_ASSERT(st == AP_OK);
        (void)st;
        out->routed += o.routed;
        out->refused += o.refused;
        out->closed += o.closed;
    }
    /* relaxed: statistics snapshot */
    out->waiters = AP_ATOMIC_LOAD(&s->st_waiters, memory_order_relaxed);
    out->waits = AP_ATOMIC_LOAD(&s->st_waits, memory_order_relaxed);
    out->wait_ns = AP_ATOMIC_LOAD(&s->st_wait_ns, memory_order_relaxed);
}

AP_API void ap_split_fini(ap_split *s)
{
    AP_ASSERT(s != NULL && s->outs != NULL); /* live: fini once */
    s->outs = NULL;
}

AP_API size_t ap_split_route(const ap_split *s, uint64_t key)
{
    /* splitmix64's finaliser: every key bit reaches the high bits */
    uint64_t x = ap__fmix64(key);
    /* multiply-shift of the high 32 bits onto [0, k): exact and unbiased
     * up to k / 2^32 */
    return (size_t)(((x >> 32) * (uint64_t)s->k) >> 32);
}

/* The output of the next item in a one-output mode. */
AP_API size_t ap__split_pick(ap_split *s, uint64_t key)
{
    if (s->mode == AP_SPLIT_MODE_HASH)
        return ap_split_route(s, key);
    /* relaxed: the cursor only spreads load */
    return (size_t)(AP_ATOMIC_LOAD(&s->cursor, memory_order_relaxed) % s->k);
}

AP_API ap_status ap_split_try_push(ap_split *s, uint64_t key, const void *item)
{
    AP_ASSERT(s != NULL && s->outs != NULL && s->mode != AP_SPLIT_MODE_BROADCAST);
    size_t o = ap__split_pick(s, key);
    ap_status st = ap_mpmc_try_push(s->outs[o], item);
    if (st == AP_OK && s->mode == AP_SPLIT_MODE_ROUND_ROBIN)
        (void)AP_ATOMIC_FETCH_ADD(&s->cursor, 1, memory_order_relaxed);
    ap__split_count(s, o, st);
    return st;
}

AP_API ap_status ap_split_try_broadcast(ap_split *s, const void *item, size_t *next)
{
    AP_ASSERT(s != NULL && s->outs != NULL && s->mode == AP_SPLIT_MODE_BROADCAST);
    AP_ASSERT(next != NULL && *next <= s->k);
    if (*next == 0)
        for (size_t i = 0; i < s->k; i++)
            if (ap_mpmc_len(s->outs[i]) >= ap_mpmc_capacity(s->outs[i])) {
                ap__split_count(s, i, AP_FULL);
                return AP_FULL; /* nothing pushed yet */
            }
    while (*next < s->k) {
        ap_status st = ap_mpmc_try_push(s->outs[*next], item);
        ap__split_count(s, *next, st);
        if (st != AP_OK)
            return st;
        ++*next;
    }
    return AP_OK;
}

AP__FUTURE_VTABLE(ap__split, ap_split_push_fut, ap_split_push_poll, ap_split_push_cancel)

AP_API void ap_split_push_fut_init(ap_split_push_fut *f, ap_split *s, uint64_t key,
                                   const void *item)
{
    AP_ASSERT(f != NULL && s != NULL && s->outs != NULL);
    f->base.poll = ap__split_poll_v;
    f->base.cancel = ap__split_cancel_v;
    f->s = s;
    f->item = item;
    f->next = 0;
    f->inner_live = false;
    f->waiting = false;
    f->status = AP_NOT_READY;
    f->out = 0;
    if (s->mode == AP_SPLIT_MODE_HASH)
        f->out = ap_split_route(s, key);
    else if (s->mode == AP_SPLIT_MODE_ROUND_ROBIN) /* relaxed: spreads load only */
        f->out = (size_t)(AP_ATOMIC_FETCH_ADD(&s->cursor, 1, memory_order_relaxed) % s->k);
}

/* The future stopped waiting on its current output (done or cancelled).
 * relaxed: statistics counter (slow path: only a future that waited) */
AP_API void ap__split_unwait(ap_split_push_fut *f)
{
    if (f->waiting) {
        f->waiting = false;
        (void)AP_ATOMIC_FETCH_SUB(&f->s->st_waiters, 1, memory_order_relaxed);
    }
}

AP_API ap_poll ap_split_push_poll(ap_split_push_fut *f, ap_cx *cx)
{
    bool bcast = f->s->mode == AP_SPLIT_MODE_BROADCAST;
    while (f->status == AP_NOT_READY) {
        size_t o = bcast ? f->next : f->out;
        if (!f->inner_live) {
            ap_mpmc_push_fut_init(&f->inner, f->s->outs[o], f->item);
            f->inner_live = true;
        }
        if (ap_mpmc_push_poll(&f->inner, cx) == AP_PENDING) {
            if (!f->waiting) { /* one wait per output waited on */
                f->waiting = true;
                /* relaxed: statistics counters (slow path) */
                (void)AP_ATOMIC_FETCH_ADD(&f->s->st_waits, 1, memory_order_relaxed);
                (void)AP_ATOMIC_FETCH_ADD(&f->s->st_waiters, 1, memory_order_relaxed);
            }
            return AP_PENDING;
        }
        ap_status st = ap_mpmc_push_status(&f->inner);
        f->inner_live = false;
        ap__split_unwait(f);
        ap__split_count(f->s, o, st);
        if (st != AP_OK) {
            f->status = st;
        } else if (!bcast || ++f->next == f->s->k) {
            if (!bcast)
                f->next = 1;
            f->status = AP_OK;
        }
    }
    return AP_READY;
}

AP_API void ap_split_push_cancel(ap_split_push_fut *f)
{
    if (f->inner_live) {
        ap_mpmc_push_cancel(&f->inner);
        f->inner_live = false;
        ap__split_unwait(f);
        /* a push that completed before the cancel still counts */
        if (ap_mpmc_push_status(&f->inner) == AP_OK) {
            ap__split_count(f->s, f->s->mode == AP_SPLIT_MODE_BROADCAST ? f->next : f->out,
                            AP_OK);
            f->next++;
            if (f->s->mode != AP_SPLIT_MODE_BROADCAST || f->next == f->s->k) {
                f->status = AP_OK;
                return;
            }
        }
    }
    if (f->status == AP_NOT_READY)
        f->status = AP_CANCELED;
}

AP_API ap_status ap_split_push_status(const ap_split_push_fut *f)
{
    return f->status;
}

AP_API size_t ap_split_push_progress(const ap_split_push_fut *f)
{
    return f->next;
}

AP_API ap_status ap_split_push_wait(ap_split *s, uint64_t key, const void *item,
                                    ap_deadline deadline_ns)
{
    ap_split_push_fut f;
    ap_split_push_fut_init(&f, s, key, item);
    /* one poll first, with no waker (ap_block_on_until's first poll
     * replaces it): only a caller that has to park reads the clock */
    ap_cx cx0;
    cx0.waker.wake = NULL;
    cx0.waker.ctx = NULL;
    cx0.now = 0;
    cx0.deadline = AP_DEADLINE_NONE;
    if (ap_split_push_poll(&f, &cx0) == AP_READY)
        return f.status;
    uint64_t t0 = ap_now_ns();
    ap_status tst = ap_block_on_until(&f.base, deadline_ns);
    /* relaxed: statistics counter (slow path: this caller parked) */
    (void)AP_ATOMIC_FETCH_ADD(&s->st_wait_ns, ap_now_ns() - t0, memory_order_relaxed);
    /* on a timeout the future was cancelled; a push that landed meanwhile
     * still counts, so report AP_OK then, not AP_TIMEDOUT */
    if (tst == AP_TIMEDOUT && f.status != AP_OK)
        return AP_TIMEDOUT;
    return f.status;
}

#endif /* ASYNCPAT_SPLIT_H */
