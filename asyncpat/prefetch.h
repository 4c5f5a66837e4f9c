/*
 * asyncpat/prefetch.h -- read-ahead over a keyed loader
 *
 * PATTERN
 *   The pattern behind OS readahead and database prefetchers: while the
 *   consumer works on key k, the loads of the keys it will ask for next
 *   (k + s, k + 2s, ... along a stride s) are already in flight, so a load
 *   of latency L is hidden behind the consumer's own work.
 *
 *   The caller supplies a loader: start(ctx, key, slot, now) begins a load
 *   of `key` into `slot` (slot_size bytes of the prefetcher's ring) and
 *   returns a future that completes when the slot holds the data (typically
 *   the future lives in the slot itself), or NULL to refuse the key (past
 *   the end of a file, say). The load must make progress once started
 *   (I/O submitted to a device does): loads ahead of the consumer are polled
 *   once when started, with no waker (so a lazy future gets going, and one
 *   that is ready at once is seen as ready), and then only when the
 *   consumer asks for their key; then they are polled with the get
 *   future's waker and cx, so their wakes reach the get future and the
 *   deadlines they lower (cx->deadline) reach its driver. The library never
 *   allocates: the ring (depth slots and their records) is caller memory.
 *
 *   The ring holds `depth` slots: the one the consumer holds (its last get;
 *   valid until its next get or fini) and depth - 1 loads ahead of it. A get
 *   of key k is, in this order:
 *     held     k is the key of the held slot (and it was loaded): served
 *              again, a hit, nothing changes
 *     next     k == held + s: the held slot is released and refilled with
 *              held + depth*s (the load starts now), the next slot becomes
 *              the held one, and the get waits on its load if needed
 *     reset    anything else (or the first get): every load in flight is
 *              cancelled (ap_future_cancel, once each), loaded but unused
 *              slots are dropped (counted `wasted`), the stride becomes
 *              k - (previous held key) unless desc.fixed_stride (the
 *              first stream uses desc.stride), and k, k+s, ...,
 *              k+(depth-1)s are started in the depth slots
 *   Key arithmetic wraps modulo 2^64 (a negative stride walks backwards).
 *   Each get counts exactly one of: hit (its load was complete when asked),
 *   wait (in flight when asked: the get waited), miss (not prefetched: a
 *   reset, or a slot whose load had been refused or cancelled).
 *
 * USAGE (pages of a file, 8 ahead)
 *   struct page { my_read_fut f; char data[4096]; };   // the future in the slot
 *   static ap_future *start(void *ctx, uint64_t key, void *slot, uint64_t now)
 *   {   struct page *p = slot; (void)now;
 *       if (key >= npages) return NULL;                  // past EOF: refuse
 *       my_read_start(&p->f, ctx, key * 4096, p->data); return &p->f.base; }
 *   static AP_ALIGNAS(struct page) unsigned char ring[AP_PREFETCH_BYTES(8, sizeof(struct page))];
 *   ap_prefetch pf;   // (struct page is aligned at least to AP_PREFETCH_ALIGN)
 *   if (ap_prefetch_init(&pf, ring, sizeof ring, &(ap_prefetch_desc){.start = start,
 *           .ctx = fd, .depth = 8, .slot_size = sizeof(struct page)})) abort();
 *   void *slot;
 *   for (uint64_t k = 0; ap_prefetch_get_wait(&pf, k, &slot, AP_DEADLINE_NONE) == AP_OK; k++)
 *       consume((struct page *)slot);   // valid until the next get
 *   ap_prefetch_fini(&pf);              // cancels the loads still in flight
 *
 * GUARANTEES (invariants the tests check)
 *   - at most depth loads are in flight or loaded at any time, one per
 *     slot; a slot is never handed to start() while its previous load is
 *     in flight
 *   - every started load is finished exactly once: polled until READY
 *     (never polled again) or cancelled once (never after READY), also
 *     across resets, get cancels and fini. At quiescence
 *       started = completed + cancelled + (loads in flight),
 *       completed = used + wasted + (loaded, unused, in the ring),
 *     and after fini the parenthesised terms are 0
 *   - gets = hits + waits + misses (each get that began counts once)
 *   - init with a bad desc returns AP_INVAL and changes nothing
 *
 * THEOREM (sequential scan, exact; tests/test_prefetch.c checks it on a fake
 *   clock with loads that complete exactly L ns after they start)
 *   The consumer asks for key k at r_k, gets it at g_k = r_k + w_k and asks
 *   for k+1 at r_{k+1} = g_k + c. Key k's load starts at r_{k-d+1} (when
 *   the slot of key k-d is released; keys 0..d-1 all start at r_0), so
 *       r_{k+1} = max(r_k, r_{k-d+1} + L) + c,
 *   a max-plus recurrence whose cycle of d gets costs max(d*c, L + c). With
 *   W = max(0, L - (d-1)*c), by induction on k:
 *       w_0 = L (a miss),   w_k = W if d divides k, else 0   (k >= 1),
 *       r_k = r_0 + L + k*c + floor((k-1)/d) * W              (k >= 1).
 *   So d >= ceil(L/c) + 1, i.e. (d-1)*c >= L, makes every get after the
 *   first a hit (at the boundary the load completes exactly when asked);
 *   a smaller d waits W once per d gets: W/d per item on average, and
 *   throughput is one item per max(c, (L + c)/d). No prefetching (d = 1,
 *   or a naive loader) waits L per item.
 *
 * CONCURRENCY   single consumer: init, gets (futures, get_wait), stats
 *   and fini are called by one thread at a time, and a get future must be
 *   completed or cancelled before the next get begins (asserted). Load
 *   futures' wakers may run on any thread: they call the get's own waker
 *   and touch no prefetcher state. Progress: no locks, no atomics; a get
 *   poll is O(1) start/poll calls, a reset O(depth).
 * ORDERING      none of its own: whatever a load future guarantees between
 *   its completion and its READY poll is what the consumer gets.
 * WAKE ORDER    one waiter at most (single consumer).
 * COMPLEXITY    get: O(1) amortized (one start, one or more polls of one
 *   load); reset and fini: O(depth). Memory AP_PREFETCH_BYTES(depth,
 *   slot_size), nothing else.
 * MEMORY        init: a caller buffer and its size in bytes: at least
 *   AP_PREFETCH_BYTES(depth, slot_size), aligned to AP_PREFETCH_ALIGN (the
 *   ring's records; checked) and for the caller's slot type (not checked:
 *   declare it AP_ALIGNAS(AP_PREFETCH_ALIGN) and AP_ALIGNAS(the slot struct),
 *   or AP_ALIGNAS(max_align_t)). Slot i is at buf + i * slot_size. Nothing
 *   allocates.
 * ERRORS        init: AP_INVAL (desc or buf NULL, start NULL, depth or
 *   slot_size 0, a size that overflows, buf misaligned or too small),
 *   nothing changed (neither *pf nor the buffer).
 *   Get: AP_NOT_READY (a get future still pending), AP_OK, AP_REJECTED
 *   (the loader refused the key), AP_CANCELED,
 *   AP_TIMEDOUT (get_wait). NULL object pointers and a second concurrent
 *   get trip AP_ASSERT.
 * CONFIG        AP_ASSERT
 * SEE ALSO      future.h (the waker contract), fanout.h (another future made
 *   of futures), cache.h, tests/test_prefetch.c (no benchmark yet)
 * STABILITY     experimental (0.x)
 */
#ifndef ASYNCPAT_PREFETCH_H
#define ASYNCPAT_PREFETCH_H

#include "core.h"
#include "future.h"
#include "time.h"

/**
 * ap_prefetch_start_fn - begin loading @key into @slot
 * @ctx:    desc.ctx
 * @slot:   slot_size bytes of the ring, free for this load
 * @now_ns: the consumer's clock (cx->now of the get that starts it)
 * Returns the load's future (caller memory, e.g. inside @slot), or NULL to
 * refuse the key; then nothing was started. Runs on the consumer's thread.
 */
typedef ap_future *(*ap_prefetch_start_fn)(void *ctx, uint64_t key, void *slot,
                                           uint64_t now_ns);

typedef struct ap_prefetch_desc {
    ap_prefetch_start_fn start; /* the loader (required: NULL is AP_INVAL) */
    void *ctx;                  /* passed to start */
    size_t depth;               /* slots: the held one + depth-1 ahead (required, >= 1) */
    size_t slot_size;           /* bytes per slot (required, >= 1) */
    int64_t stride;             /* the first stream's stride (default 0: 1) */
    bool fixed_stride;          /* keep desc.stride on resets (default false:
                                   a reset takes k - previous key) */
    ap_clock clock;             /* the clock of ap_prefetch_get_wait, its
                                   deadline and the now its loads start at
                                   (zero: ap_now_ns) */
} ap_prefetch_desc;

/* per-slot record (internal; lives in the ring buffer after the slots) */
struct ap__prefetch_rec {
    ap_future *fut; /* the load, while LOADING */
    uint64_t key;
    uint32_t state; /* AP__PF_EMPTY / LOADING / READY */
    bool used;      /* READY and served to the consumer */
};

/** AP_PREFETCH_BYTES - bytes of a ring of @depth slots of @slot_size (constant expression) */
#define AP_PREFETCH_BYTES(depth, slot_size)                                            \
    (((size_t)(depth) * (size_t)(slot_size) + AP_ALIGNOF(struct ap__prefetch_rec) - 1) / \
         AP_ALIGNOF(struct ap__prefetch_rec) * AP_ALIGNOF(struct ap__prefetch_rec) +       \
     (size_t)(depth) * sizeof(struct ap__prefetch_rec))

/** AP_PREFETCH_ALIGN - the alignment ap_prefetch_init checks of its buffer
 *  (constant expression; the slots also need their own type's) */
#define AP_PREFETCH_ALIGN AP_ALIGNOF(struct ap__prefetch_rec)

/** counters (exact: single consumer) */
typedef struct ap_prefetch_stats {
    uint64_t gets;      /* gets that began */
    uint64_t hits;      /* ... their load was complete when asked */
    uint64_t waits;     /* ... in flight when asked (the get waited) */
    uint64_t misses;    /* ... not prefetched (reset, refused or cancelled slot) */
    uint64_t resets;    /* streams started (the first get is one) */
    uint64_t started;   /* loads started (start() returned a future) */
    uint64_t completed; /* loads that polled READY */
    uint64_t cancelled; /* loads cancelled in flight */
    uint64_t used;      /* completed loads served to the consumer */
    uint64_t wasted;    /* completed loads dropped unused (reset, fini) */
    size_t loading;     /* loads in flight now */
    size_t ready;       /* completed loads in the ring not yet served */
} ap_prefetch_stats;

/** ap_prefetch - a read-ahead ring; set up with ap_prefetch_init (a zero one is not valid) */
typedef struct ap_prefetch {
    ap_prefetch_desc desc; /* as resolved */
    unsigned char *slots;
    struct ap__prefetch_rec *recs;
    uint64_t stride;   /* as an unsigned step: key arithmetic wraps */
    size_t cur;        /* index of the held (or being got) slot */
    uint64_t cur_key;
    bool streaming;    /* cur / cur_key valid */
    struct ap_prefetch_get_fut *active; /* the get in progress, if any */
    ap_prefetch_stats st;
} ap_prefetch;

/** a get future (caller memory); see ap_prefetch_get_fut_init */
typedef struct ap_prefetch_get_fut {
    ap_future base; /* first: (ap_future *)f is the future */
    ap_prefetch *pf;
    uint64_t key;
    void **slot_out;
    ap_status status; /* AP_NOT_READY while pending */
    bool begun;
} ap_prefetch_get_fut;

/**
 * ap_prefetch_desc_resolved - the desc with defaults filled in
 * Returns a copy in which stride 0 became 1.
 */
AP_API ap_prefetch_desc ap_prefetch_desc_resolved(const ap_prefetch_desc *d);

/**
 * ap_prefetch_init - set up an empty prefetcher (nothing is loaded until
 *                    the first get)
 * @buf:   at least AP_PREFETCH_BYTES(depth, slot_size) bytes of caller
 *         memory, aligned to AP_PREFETCH_ALIGN and for the slot type
 * @bytes: the size of @buf (more than needed is fine; the excess is not
 *         touched)
 * @d:     the configuration; read now, not kept
 *
 * Returns AP_OK or AP_INVAL (see ERRORS); on AP_INVAL neither *pf nor @buf
 * is touched.
 */
AP_API AP_NODISCARD ap_status ap_prefetch_init(ap_prefetch *pf, void *buf, size_t bytes,
                                               const ap_prefetch_desc *d);

/**
 * ap_prefetch_fini - cancel every load in flight, drop the loaded ones
 * (counted wasted); frees nothing. No get may be in progress (asserted).
 * The counters stay readable; the prefetcher may be init'ed again.
 */
AP_API void ap_prefetch_fini(ap_prefetch *pf);

/** ap_prefetch_stats_get - the counters */
AP_API void ap_prefetch_stats_get(const ap_prefetch *pf, ap_prefetch_stats *out);

/** ap_prefetch_stride - the current stream's stride (as a signed step) */
AP_API int64_t ap_prefetch_stride(const ap_prefetch *pf);

/**
 * ap_prefetch_slot - slot @i of the ring (0 <= i < depth), for callers that
 * set up per-slot state before the first get
 */
AP_API void *ap_prefetch_slot(const ap_prefetch *pf, size_t i);

/**
 * ap_prefetch_get_fut_init / _poll / _cancel / _status - a future that gets
 * @key: it completes with *@slot_out = the slot holding the key's load
 * (valid until the next get or fini). The stream moves (refill or reset) at
 * its first poll; later polls poll the key's load with this cx. Result:
 * AP_NOT_READY while pending, then AP_OK, AP_REJECTED (the loader refused the
 * key; *slot_out untouched) or AP_CANCELED. Cancelling a pending get
 * cancels the load it waits on (a later get of that key starts it again).
 * Cancel is idempotent, also after completion.
 */
AP_API void ap_prefetch_get_fut_init(ap_prefetch_get_fut *f, ap_prefetch *pf, uint64_t key,
                                     void **slot_out);
AP_API ap_poll ap_prefetch_get_poll(ap_prefetch_get_fut *f, ap_cx *cx);
AP_API void ap_prefetch_get_cancel(ap_prefetch_get_fut *f);
AP_API AP_NODISCARD ap_status ap_prefetch_get_status(const ap_prefetch_get_fut *f);

/**
 * ap_prefetch_get_wait - get @key, blocking this thread (ap_block_on_until_clock,
 * on desc.clock) until its load completes or @deadline_ns passes.
 * Returns AP_OK (*slot_out set), AP_REJECTED or AP_TIMEDOUT (the get was
 * cancelled, and with it the key's load).
 */
AP_API AP_NODISCARD ap_status ap_prefetch_get_wait(ap_prefetch *pf, uint64_t key,
                                                   void **slot_out, ap_deadline deadline_ns);

/* ---- implementation ---- */

enum { AP__PF_EMPTY = 0, AP__PF_LOADING, AP__PF_READY };

AP_API ap_prefetch_desc ap_prefetch_desc_resolved(const ap_prefetch_desc *d)
{
    ap_prefetch_desc r = *d;
    if (r.stride == 0)
        r.stride = 1;
    return r;
}

AP_API ap_status ap_prefetch_init(ap_prefetch *pf, void *buf, size_t bytes,
                                  const ap_prefetch_desc *d)
{
    AP_ASSERT(pf != NULL);
    if (d == NULL || buf == NULL || d->start == NULL || d->depth == 0 || d->slot_size == 0)
        return AP_INVAL;
    size_t align = AP_ALIGNOF(struct ap__prefetch_rec);
    if ((uintptr_t)buf % align != 0 || d->depth > SIZE_MAX / d->slot_size ||
        d->depth > SIZE_MAX / sizeof(struct ap__prefetch_rec))
        return AP_INVAL;
    size_t off = ap__align_up(d->depth * d->slot_size, align);
    if (off == 0 || off > SIZE_MAX - d->depth * sizeof(struct ap__prefetch_rec) ||
        bytes < off + d->depth * sizeof(struct ap__prefetch_rec))
        return AP_INVAL;
    /* the whole buffer must fit below the top of the address space */
    if (off + d->depth * sizeof(struct ap__prefetch_rec) > UINTPTR_MAX - (uintptr_t)buf)
        return AP_INVAL;
    memset(pf, 0, sizeof *pf);
    pf->desc = ap_prefetch_desc_resolved(d);
    pf->slots = (unsigned char *)buf;
    pf->recs = (struct ap__prefetch_rec *)(void *)(pf->slots + off);
    for (size_t i = 0; i < d->depth; i++) {
        pf->recs[i].fut = NULL;
        pf->recs[i].key = 0;
        pf->recs[i].state = AP__PF_EMPTY;
        pf->recs[i].used = false;
    }
    pf->stride = (uint64_t)pf->desc.stride;
    return AP_OK;
}

AP_API void *ap_prefetch_slot(const ap_prefetch *pf, size_t i)
{
    AP_ASSERT(pf != NULL && i < pf->desc.depth);
    return pf->slots + i * pf->desc.slot_size;
}

AP_API void ap_prefetch_stats_get(const ap_prefetch *pf, ap_prefetch_stats *out)
{
    AP_ASSERT(pf != NULL && out != NULL);
    *out = pf->st;
}

AP_API int64_t ap_prefetch_stride(const ap_prefetch *pf)
{
    AP_ASSERT(pf != NULL);
    /* two's complement back to signed without implementation-defined casts */
    return pf->stride <= (uint64_t)INT64_MAX ? (int64_t)pf->stride
                                             : -(int64_t)(~pf->stride) - 1;
}

/* A load polled READY: record it. */
AP_API void ap__pf_completed(ap_prefetch *pf, struct ap__prefetch_rec *r)
{
    r->state = AP__PF_READY;
    r->fut = NULL;
    pf->st.loading--;
    pf->st.ready++;
    pf->st.completed++;
}

/* Start the load of `key` in slot i (which holds nothing in flight). A load
 * ahead is kicked: polled once with no waker (its deadline is dropped: it
 * has no get future to wake yet). */
AP_API void ap__pf_start(ap_prefetch *pf, size_t i, uint64_t key, uint64_t now, bool kick)
{
    struct ap__prefetch_rec *r = &pf->recs[i];
    AP_ASSERT(r->state != AP__PF_LOADING);
    r->state = AP__PF_EMPTY;
    r->used = false;
    r->key = key;
    ap_future *f = pf->desc.start(pf->desc.ctx, key, ap_prefetch_slot(pf, i), now);
    if (f == NULL)
        return; /* refused: stays EMPTY */
    AP_ASSERT(f->poll != NULL);
    r->fut = f;
    r->state = AP__PF_LOADING;
    pf->st.started++;
    pf->st.loading++;
    if (kick) {
        ap_cx k = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
        if (f->poll(f, &k) == AP_READY)
            ap__pf_completed(pf, r);
    }
}

/* Release slot i: cancel its load if in flight, drop it if loaded and unused. */
AP_API void ap__pf_release(ap_prefetch *pf, size_t i)
{
    struct ap__prefetch_rec *r = &pf->recs[i];
    if (r->state == AP__PF_LOADING) {
        ap_future_cancel(r->fut);
        pf->st.cancelled++;
        pf->st.loading--;
    } else if (r->state == AP__PF_READY && !r->used) {
        pf->st.wasted++;
        pf->st.ready--;
    }
    r->state = AP__PF_EMPTY;
    r->fut = NULL;
    r->used = false;
}

AP_API void ap__pf_release_all(ap_prefetch *pf)
{
    for (size_t i = 0; i < pf->desc.depth; i++)
        ap__pf_release(pf, i);
    pf->streaming = false;
}

AP_API void ap_prefetch_fini(ap_prefetch *pf)
{
    AP_ASSERT(pf != NULL && pf->slots != NULL && pf->active == NULL); /* live: fini once */
    ap__pf_release_all(pf);
    pf->slots = NULL; /* a later call trips AP_ASSERT */
}

AP__FUTURE_VTABLE(ap__pf_get, ap_prefetch_get_fut, ap_prefetch_get_poll,
                  ap_prefetch_get_cancel)

AP_API void ap_prefetch_get_fut_init(ap_prefetch_get_fut *f, ap_prefetch *pf, uint64_t key,
                                     void **slot_out)
{
    AP_ASSERT(f != NULL && pf != NULL && pf->slots != NULL && slot_out != NULL);
    f->base.poll = ap__pf_get_poll_v;
    f->base.cancel = ap__pf_get_cancel_v;
    f->pf = pf;
    f->key = key;
    f->slot_out = slot_out;
    f->status = AP_NOT_READY;
    f->begun = false;
}

/* The get's first poll: move the stream (held / next / reset) and count a
 * hit or a miss where that is known now; a LOADING key's hit or wait is
 * decided by the first poll of its load. */
AP_API void ap__pf_begin(ap_prefetch *pf, uint64_t key, uint64_t now)
{
    size_t d = pf->desc.depth;
    pf->st.gets++;
    struct ap__prefetch_rec *cur = &pf->recs[pf->cur];
    if (pf->streaming && key == pf->cur_key) {
        /* the held key again: served again, or retried after a refusal or
         * a cancelled get (then started now: a miss) */
        if (cur->state == AP__PF_EMPTY) {
            pf->st.misses++;
            ap__pf_start(pf, pf->cur, key, now, false);
        } else if (cur->state == AP__PF_READY) {
            pf->st.hits++;
        }
        /* LOADING cannot be: only a cancelled get leaves the held slot
         * unfinished, and its cancel cancels that load */
        return;
    }
    if (pf->streaming && key == pf->cur_key + pf->stride) {
        /* next in the stream: refill the held slot with the key depth
         * strides ahead of it, then move on */
        ap__pf_release(pf, pf->cur);
        ap__pf_start(pf, pf->cur, pf->cur_key + (uint64_t)d * pf->stride, now, true);
        pf->cur = (pf->cur + 1) % d;
        pf->cur_key = key;
        cur = &pf->recs[pf->cur];
        if (cur->state == AP__PF_READY) {
            pf->st.hits++;
        } else if (cur->state == AP__PF_EMPTY) {
            pf->st.misses++; /* refused earlier: try again */
            ap__pf_start(pf, pf->cur, key, now, false);
        } /* LOADING: hit or wait, decided by the first poll */
        return;
    }
    /* reset: a new stream at key */
    if (pf->streaming && !pf->desc.fixed_stride)
        pf->stride = key - pf->cur_key; /* != 0: key != cur_key here */
    ap__pf_release_all(pf);
    pf->st.resets++;
    pf->st.misses++;
    pf->streaming = true;
    pf->cur = 0;
    pf->cur_key = key;
    ap__pf_start(pf, 0, key, now, false);
    for (size_t i = 1; i < d; i++)
        ap__pf_start(pf, i, key + (uint64_t)i * pf->stride, now, true);
}

AP_API ap_poll ap_prefetch_get_poll(ap_prefetch_get_fut *f, ap_cx *cx)
{
    AP_ASSERT(f != NULL && cx != NULL);
    if (f->status != AP_NOT_READY)
        return AP_READY; /* completed or cancelled earlier */
    ap_prefetch *pf = f->pf;
    bool first = !f->begun;
    uint64_t misses = pf->st.misses, hits = pf->st.hits;
    if (first) {
        AP_ASSERT(pf->active == NULL); /* single consumer: one get at a time */
        f->begun = true;
        pf->active = f;
        ap__pf_begin(pf, f->key, cx->now);
    }
    AP_ASSERT(pf->active == f);
    struct ap__prefetch_rec *r = &pf->recs[pf->cur];
    if (r->state == AP__PF_LOADING) {
        /* the key's load, polled with this get's waker and cx: its wake
         * reaches the get's driver, its deadline lowers cx->deadline */
        ap_poll p = r->fut->poll(r->fut, cx);
        if (p == AP_READY)
            ap__pf_completed(pf, r);
        if (first && pf->st.misses == misses && pf->st.hits == hits) {
            if (p == AP_READY)
                pf->st.hits++;
            else
                pf->st.waits++;
        }
        if (p == AP_PENDING)
            return AP_PENDING;
    }
    pf->active = NULL;
    if (r->state == AP__PF_EMPTY) {
        f->status = AP_REJECTED;
        return AP_READY;
    }
    if (!r->used) {
        r->used = true;
        pf->st.used++;
        pf->st.ready--;
    }
    *f->slot_out = ap_prefetch_slot(pf, pf->cur);
    f->status = AP_OK;
    return AP_READY;
}

AP_API void ap_prefetch_get_cancel(ap_prefetch_get_fut *f)
{
    AP_ASSERT(f != NULL);
    if (f->status != AP_NOT_READY)
        return;
    f->status = AP_CANCELED;
    if (!f->begun)
        return;
    ap_prefetch *pf = f->pf;
    AP_ASSERT(pf->active == f);
    pf->active = NULL;
    ap__pf_release(pf, pf->cur); /* cancels the load it waited on */
}

AP_API ap_status ap_prefetch_get_status(const ap_prefetch_get_fut *f)
{
    return f->status;
}

AP_API ap_status ap_prefetch_get_wait(ap_prefetch *pf, uint64_t key, void **slot_out,
                                      ap_deadline deadline_ns)
{
    ap_prefetch_get_fut f;
    ap_prefetch_get_fut_init(&f, pf, key, slot_out);
    if (ap_block_on_until_clock(&f.base, deadline_ns, &pf->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.status;
}

#endif /* ASYNCPAT_PREFETCH_H */
