/*
 * asyncpat/window.h -- event-time windows: tumbling, hopping (sliding) and
 *                      session, closed by a watermark
 *
 * PATTERN
 *   Timestamped events (ts in ns, a value) are assigned to windows by
 *   their own timestamp, not by arrival:
 *     TUMBLING size w       windows [k*w, k*w + w)
 *     HOPPING  size w,      windows [k*s, k*s + w) for every integer k;
 *              slide s<=w   an event is in every window that contains ts:
 *                           w/s of them when s divides w, else
 *                           floor(w/s) or ceil(w/s). (The first windows
 *                           start before 0: start is an int64_t.)
 *     SESSION  gap g        an event makes [ts, ts + g); sessions that
 *                           overlap merge, so a session is
 *                           [first, last + g) and ends after g ns without
 *                           an event
 *   Each window keeps an ap_agg (aggregate.h: count, exact sum, min, max,
 *   mean) of its events' values. The WATERMARK W is the largest of
 *   (max event time seen - allowed lateness L) and every watermark passed
 *   to ap_window_advance; it never goes down. A window is emitted when
 *   its end <= W, exactly once, in window order (by end; sessions and
 *   hopping windows never tie). Windows without events are not emitted.
 *   An event is LATE when a window it belongs to has end <= W (hopping /
 *   tumbling), or when ts < W (session: it could have touched an emitted
 *   session); a late event is refused with AP_REJECTED and counted
 *   (ap_window_late), never half-applied.
 *
 * USAGE (ev, ctx, count_late and on_window are the caller's:
 *        void on_window(void *ctx, const ap_window_result *r) reads r->agg)
 *   // 1 s windows every 250 ms, events up to 2 s late are still counted
 *   ap_window_desc d = {.kind = AP_WINDOW_KIND_HOPPING, .size_ns = 1000000000,
 *                       .slide_ns = 250000000, .lateness_ns = 2000000000};
 *   static AP_ALIGNAS(AP_WINDOW_ALIGN) unsigned char buf[AP_WINDOW_BYTES(
 *       AP_WINDOW_SLOTS(1000000000, 250000000, 2000000000))];
 *   ap_window w;
 *   if (ap_window_init(&w, buf, sizeof buf, &d) != AP_OK) abort();
 *   if (ap_window_add(&w, ev.ts, ev.value, on_window, ctx) == AP_REJECTED)
 *       count_late();
 *   ap_window_advance(&w, AP_WINDOW_FLUSH, on_window, ctx); // end of stream
 *   // fed by 4 workers (worker i adds its own events, windows merge by
 *   // start under the minimum of their watermarks; on_window runs on any
 *   // of them, one window at a time); 64 >= ap_window_slots(&d) windows each
 *   static AP_ALIGNAS(AP_WINDOW_PAR_ALIGN) unsigned char pbuf[AP_WINDOW_PAR_BYTES(4, 64)];
 *   static ap_window_par par;
 *   if (ap_window_par_init(&par, pbuf, sizeof pbuf, &d, 4, 64) != AP_OK) abort();
 *   // on worker i:
 *   if (ap_window_par_add(&par, i, ev.ts, ev.value, on_window, ctx) == AP_REJECTED)
 *       count_late();   // AP_FULL: i is 64 windows ahead of the slowest worker
 *   ap_window_par_advance(&par, i, AP_WINDOW_FLUSH, on_window, ctx); // i is done
 *
 * GUARANTEES (invariants the tests check, with exact fake timestamps)
 *   - an accepted event is in exactly the windows its timestamp defines
 *     (tumbling: one; hopping with s | w: exactly w/s), and counted once
 *     in each: sum over emitted windows of count = accepted * (w/s)
 *   - every window is emitted exactly once, only once W >= its end (the
 *     emit callback sees ap_window_watermark >= end), in increasing order
 *     of end; after a flush (ap_window_advance with AP_WINDOW_FLUSH) every
 *     accepted event has been emitted in all its windows
 *   - each emitted aggregate equals a brute-force recomputation from the
 *     events (random seeded runs, 1e5 events, with out-of-order arrival)
 *   - offered = accepted + late (+ AP_INVAL refusals, which change nothing)
 *   - several workers (ap_window_par, below): the merged output equals
 *     the single-threaded window's on the same events whenever the
 *     latter accepts them all, for any assignment to workers and any
 *     interleaving; each window emitted once, in order
 *   - bounded memory: at most ap_window_slots(desc) = ceil((w + L) / s) + 1
 *     windows are held at any time (session: w = s = g), asserted on every
 *     change and checked by ap_window_open_max. Why: after an add emits
 *     what is due, a held window has end > W >= maxts - L and start <=
 *     maxts, so its end lies in (maxts - L, maxts + w]; ends are s apart
 *     (sessions: their last events are >= g apart), so at most
 *     ceil((w + L) / s) of them fit. The +1 is slack.
 *
 * CONCURRENCY
 *   ap_window: none, one thread at a time (the caller serialises). The
 *   emit callback runs inside add/advance; it may read the window
 *   (watermark, counters) but must not add to or advance it.
 *   ap_window_par: one thread per worker index, all in parallel; see its
 *   section below the API (CONCURRENCY, ORDERING there).
 *
 * COMPLEXITY   add: O(w/s) for hopping (one ap_agg_add per window), O(slots)
 *              for session (sorted array); plus O(1) per window emitted.
 *              advance: O(slots + windows emitted). Memory: the caller's
 *              buffer of AP_WINDOW_BYTES(slots); no allocation.
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_WINDOW_BYTES(slots) (slots = ap_window_slots(desc), or
 *              the constant expression AP_WINDOW_SLOTS(w, s, L)), aligned
 *              to AP_WINDOW_ALIGN (else AP_INVAL); create: one allocation.
 * TIME         timestamps and watermarks are caller ns on any clock, from 0
 *              to AP_WINDOW_TS_MAX (2^62 - 1, about 146 years), so that
 *              window bounds are exact int64_t arithmetic.
 * ERRORS       AP_REJECTED (late; counted), AP_INVAL (bad or NULL desc; a
 *              buffer that is NULL, misaligned or too small; ts >
 *              AP_WINDOW_TS_MAX; ap_window_par: SESSION, no workers, too
 *              few slots, a worker index out of range; nothing changed),
 *              AP_NOMEM, AP_FULL (ap_window_par: a worker too far ahead).
 * CONFIG       AP_ASSERT, AP_NO_MALLOC
 * SEE ALSO     aggregate.h
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_WINDOW_H
#define ASYNCPAT_WINDOW_H

#include "core.h"
#include "aggregate.h"

/** AP_WINDOW_TS_MAX - the largest timestamp, size, slide, gap or lateness */
#define AP_WINDOW_TS_MAX ((UINT64_C(1) << 62) - 1)
/** AP_WINDOW_FLUSH - a watermark that closes (emits) every window */
#define AP_WINDOW_FLUSH UINT64_MAX

/** ap_window_kind - how events map to windows */
typedef enum ap_window_kind {
    AP_WINDOW_KIND_TUMBLING = 0, /* size_ns; slide_ns must be 0 or size_ns */
    AP_WINDOW_KIND_HOPPING = 1,  /* size_ns, slide_ns (1 <= slide <= size); "sliding" */
    AP_WINDOW_KIND_SESSION = 2   /* gap_ns */
} ap_window_kind;

/** ap_window_desc - configuration; a zero field means its default */
typedef struct ap_window_desc {
    ap_window_kind kind;  /* default: TUMBLING */
    uint64_t size_ns;     /* window length (TUMBLING, HOPPING: required) */
    uint64_t slide_ns;    /* HOPPING: distance between starts (default: size) */
    uint64_t gap_ns;      /* SESSION: inactivity that ends a session (required) */
    uint64_t lateness_ns; /* allowed lateness L behind the newest event (default 0) */
} ap_window_desc;

/** ap_window_result - one emitted window: [start, end) and its aggregate */
typedef struct ap_window_result {
    int64_t start; /* may be < 0 for the first hopping windows */
    int64_t end;
    ap_agg agg;
} ap_window_result;

/** ap_window_emit_fn - receives each closed window, in window order */
typedef void (*ap_window_emit_fn)(void *ctx, const ap_window_result *r);

/* One held window. Hopping: slot k % slots holds window k (start k*s);
 * session: slots[0..n) sorted by start, start = first event, end = last + g. */
typedef struct ap__window_slot {
    int64_t k_or_first; /* hopping: window index; session: first event ts */
    int64_t last;       /* session: last event ts */
    bool used;          /* hopping only */
    ap_agg agg;
} ap__window_slot;

/** AP_WINDOW_SLOTS - ceil((size + lateness) / slide) + 1, a constant
 *  expression (session: pass gap for size and slide) */
#define AP_WINDOW_SLOTS(size_ns, slide_ns, lateness_ns) \
    (((uint64_t)(size_ns) + (uint64_t)(lateness_ns) + (uint64_t)(slide_ns)-1) / (uint64_t)(slide_ns) + 1)
/** AP_WINDOW_BYTES - buffer bytes for @slots held windows (constant expression) */
#define AP_WINDOW_BYTES(slots) ((size_t)(slots) * sizeof(ap__window_slot))
/** AP_WINDOW_ALIGN - the alignment ap_window_init needs of its buffer
 *  (constant expression; e.g. static AP_ALIGNAS(AP_WINDOW_ALIGN) unsigned
 *  char buf[AP_WINDOW_BYTES(8)]) */
#define AP_WINDOW_ALIGN AP_ALIGNOF(ap__window_slot)

/** ap_window - a windowing operator; set up with ap_window_init */
typedef struct ap_window {
    ap_window_desc desc;  /* resolved */
    int64_t w, s, lateness; /* session: w = s = gap */
    ap__window_slot *slots;
    size_t nslots;
    size_t held, held_max;
    int64_t base;         /* hopping: every held k is in [base, base + nslots) */
    int64_t wm;           /* the watermark W; valid when has_wm */
    int64_t max_ts;       /* valid when has_event */
    bool has_wm, has_event;
    uint64_t accepted, late, emitted;
    const ap_allocator *alloc; /* set by create */
} ap_window;

/**
 * ap_window_desc_resolved - the desc with defaults filled in (slide = size
 * for TUMBLING and for a zero HOPPING slide)
 */
AP_API ap_window_desc ap_window_desc_resolved(const ap_window_desc *desc);
/**
 * ap_window_slots - windows the operator may hold: ceil((w + L) / s) + 1
 * Returns 0 for a desc that ap_window_init would refuse.
 */
AP_API uint64_t ap_window_slots(const ap_window_desc *desc);
/**
 * ap_window_init - set up in caller memory
 * @buf:   at least AP_WINDOW_BYTES(ap_window_slots(desc)) bytes, aligned to
 *         AP_WINDOW_ALIGN; the operator owns it until fini
 * @bytes: the size of @buf (more than needed is fine; the excess is not
 *         touched)
 * @desc:  the configuration; read now, not kept
 *
 * Returns AP_OK or AP_INVAL: @desc NULL, unknown kind, size/gap 0, slide 0
 * or > size (events would fall in no window), TUMBLING with slide != size,
 * any duration or lateness > AP_WINDOW_TS_MAX, @buf NULL or misaligned,
 * @bytes too small. On AP_INVAL neither *win nor @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_window_init(ap_window *win, void *buf, size_t bytes,
                                             const ap_window_desc *desc);
/** ap_window_fini - end of life; frees nothing (held windows are not emitted:
 *  flush first) */
AP_API void ap_window_fini(ap_window *win);
#ifndef AP_NO_MALLOC
/** ap_window_create - ap_window_init on one allocation; AP_OK, AP_INVAL, AP_NOMEM */
AP_API AP_NODISCARD ap_status ap_window_create(ap_window **out, const ap_window_desc *desc,
                                               const ap_allocator *alloc);
/** ap_window_destroy - free one from ap_window_create; NULL is a no-op */
AP_API void ap_window_destroy(ap_window *win);
#endif

/**
 * ap_window_add - add one event
 * @ts:    its event time (0..AP_WINDOW_TS_MAX), in any order
 * @emit:  receives every window closed by the watermark this event raises
 *         (max ts - L), before the event is added; not NULL
 *
 * Returns AP_OK (in all its windows), AP_REJECTED (late: counted in
 * ap_window_late, nothing else changed), AP_INVAL (ts out of range).
 */
AP_API AP_NODISCARD ap_status ap_window_add(ap_window *win, uint64_t ts, int64_t value,
                                            ap_window_emit_fn emit, void *ctx);
/**
 * ap_window_advance - raise the watermark to @watermark (for an idle
 * source, or AP_WINDOW_FLUSH at end of stream: any value above
 * AP_WINDOW_TS_MAX closes every window) and emit every window whose end
 * <= W, in order. A lower watermark than the current one is a no-op.
 * Returns the number of windows emitted.
 */
AP_API size_t ap_window_advance(ap_window *win, uint64_t watermark, ap_window_emit_fn emit,
                                void *ctx);
/** ap_window_watermark - W, or INT64_MIN before any event or advance */
AP_API int64_t ap_window_watermark(const ap_window *win);
/** ap_window_held - windows held now; ap_window_held_max - the most ever held
 *  (<= ap_window_slots) */
AP_API size_t ap_window_held(const ap_window *win);
AP_API size_t ap_window_held_max(const ap_window *win);
/** ap_window_accepted / _late / _emitted - events accepted, events refused
 *  as late, windows emitted */
AP_API uint64_t ap_window_accepted(const ap_window *win);
AP_API uint64_t ap_window_late(const ap_window *win);
AP_API uint64_t ap_window_emitted(const ap_window *win);

/**
 * ap_window_stats - counters (ap_window_stats_get). An ap_window is one
 * thread's at a time, so the snapshot is exact; the fields are the ones
 * behind ap_window_accepted / _late / _emitted / _held / _held_max (no
 * counter added to any path).
 */
typedef struct ap_window_stats {
    uint64_t accepted; /* events accepted (in all their windows) */
    uint64_t late;     /* events refused as late (AP_REJECTED) */
    uint64_t emitted;  /* windows emitted */
    uint64_t held;     /* windows held now */
    uint64_t held_max; /* the most windows ever held at once */
} ap_window_stats;
/** ap_window_stats_get - the counters into *@out (the owner's thread) */
AP_API void ap_window_stats_get(const ap_window *win, ap_window_stats *out);

/*
 * ---- ap_window_par: one window fed by several workers (issue #14) ----
 *
 * Each worker (0..workers-1, one thread at a time per worker index) adds
 * its events to its own partial windows (its slots, its lock: workers do
 * not contend on adds) and keeps its own watermark, max ts - L (or what
 * ap_window_par_advance raised it to). The global watermark G is the
 * minimum over workers (Flink's rule for input channels: no output until
 * every worker has one); when an add or advance raises it, the caller's
 * thread closes every window with end <= G: the partials of that window
 * start are merged (ap_agg_merge) across workers and emitted once, in
 * window order. TUMBLING and HOPPING only (a session from one worker may
 * bridge sessions of another: run one ap_window after a keyed shuffle).
 *
 * LATE: an event with a window whose end <= G is refused (AP_REJECTED,
 * counted), so a window is never emitted twice nor missing an accepted
 * event. G <= every worker's watermark <= the single-threaded W after the
 * same events, so the parallel form accepts every event the single-threaded
 * one accepts (in the global arrival order): THEOREM (tests/test_window.c,
 * tests/verify/verify_window.c, tests/stress/stress_window.c): when the
 * single-threaded window accepts every event, the merged output equals its
 * output (the same windows, aggregates and order), for any assignment of
 * the events to workers and any interleaving of the workers.
 * AP_FULL: a worker running more than its slots ahead of the slowest
 * worker's watermark has no slot for a new window; the event is not
 * added (its watermark may have moved to ts - L first, as an add does
 * before adding: retry the same event later; advance idle workers, or
 * give more slots).
 * CONCURRENCY: add / advance on distinct worker indexes run in parallel;
 * the emit callback runs under the closing lock, on the thread whose add
 * or advance raised G, one window at a time; it must not call into the
 * ap_window_par. Readers (watermark, counters) any time; init / fini
 * alone.
 * ORDERING: a worker's slot changes happen under its lock; the closer
 * publishes G before it takes each worker's lock to collect that
 * worker's partial, so an add either lands before the collection (and is
 * merged) or sees the new G (and is late): never lost.
 * MEMORY: AP_WINDOW_PAR_BYTES(workers, slots) bytes aligned to
 * AP_WINDOW_PAR_ALIGN, slots >= ap_window_slots(desc) per worker.
 * COMPLEXITY: add O(w/s) under its worker's lock; a close O(workers *
 * slots) per window emitted.
 */

/* one worker's partial windows (private layout; cache-line apart) */
typedef struct ap__window_par_worker {
    AP_ALIGNAS(AP_CACHELINE) ap__lock lock; /* guards everything below but wm */
    AP_ATOMIC_T(int64_t) wm; /* this worker's watermark (INT64_MIN: none yet) */
    int64_t max_ts;
    bool has_event;
    size_t held;
    uint64_t accepted, late, full;
    ap__window_slot *slots; /* nslots, window k at k % nslots */
} ap__window_par_worker;

/** AP_WINDOW_PAR_BYTES - buffer bytes for @workers workers of @slots held
 *  windows each (constant expression; wraps on overflow: init checks) */
#define AP_WINDOW_PAR_BYTES(workers, slots)                                            \
    (AP__ALIGN_UP((size_t)(workers) * sizeof(ap__window_par_worker),                   \
                  AP_ALIGNOF(ap__window_slot)) +                                       \
     (size_t)(workers) * (size_t)(slots) * sizeof(ap__window_slot))
/** AP_WINDOW_PAR_ALIGN - the alignment ap_window_par_init needs of its buffer */
#define AP_WINDOW_PAR_ALIGN AP_ALIGNOF(ap__window_par_worker)

/** ap_window_par - one tumbling / hopping window fed by several workers */
typedef struct ap_window_par {
    ap_window_desc desc; /* resolved */
    int64_t w, s, lateness;
    size_t nworkers, nslots;
    ap__window_par_worker *workers;
    ap__lock close_lock;        /* one closer at a time: emission order */
    AP_ATOMIC_T(int64_t) gwm;   /* G, published before the windows it closes */
    int64_t base;               /* close_lock: every window k < base is emitted */
    bool has_base;
    AP_ATOMIC_T(int64_t) next_k; /* base once has_base, else INT64_MIN: the
                                  * closer's early exit reads it unlocked */
    AP_ATOMIC_T(uint64_t) emitted;
} ap_window_par;

/**
 * ap_window_par_init - set up in caller memory
 * @buf:     AP_WINDOW_PAR_BYTES(workers, slots) bytes, aligned to
 *           AP_WINDOW_PAR_ALIGN, kept until fini
 * @bytes:   its size
 * @desc:    TUMBLING or HOPPING (as ap_window_init; read now)
 * @workers: how many workers feed it (>= 1)
 * @slots:   held windows per worker, >= ap_window_slots(desc): what a
 *           worker may run ahead of the slowest one
 * Returns AP_OK or AP_INVAL (a desc ap_window_init refuses, SESSION,
 * workers 0, slots too few, @buf NULL, misaligned or too small, sizes that
 * overflow); on AP_INVAL nothing is touched.
 */
AP_API AP_NODISCARD ap_status ap_window_par_init(ap_window_par *par, void *buf, size_t bytes,
                                                 const ap_window_desc *desc, size_t workers,
                                                 size_t slots);
/** ap_window_par_fini - end of life; frees nothing (flush first: held
 *  windows are not emitted) */
AP_API void ap_window_par_fini(ap_window_par *par);
/**
 * ap_window_par_add - worker @worker adds one event
 * Returns AP_OK, AP_REJECTED (late against G: counted), AP_FULL (no slot:
 * this worker runs too far ahead of the slowest; not added, see above) or
 * AP_INVAL (@worker out of range, ts > AP_WINDOW_TS_MAX; nothing changed).
 * If it raises G, closes and emits (see above) before returning.
 */
AP_API AP_NODISCARD ap_status ap_window_par_add(ap_window_par *par, size_t worker, uint64_t ts,
                                                int64_t value, ap_window_emit_fn emit,
                                                void *ctx);
/**
 * ap_window_par_advance - raise worker @worker's watermark (an idle
 * worker; AP_WINDOW_FLUSH: this worker is done, every worker done flushes
 * everything); a lower one is a no-op. Returns the windows this call
 * emitted, or 0 (also for @worker out of range).
 */
AP_API size_t ap_window_par_advance(ap_window_par *par, size_t worker, uint64_t watermark,
                                    ap_window_emit_fn emit, void *ctx);
/** ap_window_par_watermark - G, or INT64_MIN while some worker has none */
AP_API int64_t ap_window_par_watermark(ap_window_par *par);
/** ap_window_par_accepted / _late / _emitted - totals over workers (each a
 *  snapshot under its worker's lock) and windows emitted */
AP_API uint64_t ap_window_par_accepted(ap_window_par *par);
AP_API uint64_t ap_window_par_late(ap_window_par *par);
AP_API uint64_t ap_window_par_emitted(ap_window_par *par);

/**
 * ap_window_par_stats - counters (ap_window_par_stats_get; any thread). The
 * per-worker counters are summed, each worker's read under its lock (as
 * ap_window_par_accepted does), so each worker's part is consistent and
 * the whole is exact at quiescence; emitted is a relaxed load. No counter
 * is added to any path.
 */
typedef struct ap_window_par_stats {
    uint64_t accepted; /* events accepted, over all workers */
    uint64_t late;     /* events refused as late against G (AP_REJECTED) */
    uint64_t full;     /* events refused for want of a slot (AP_FULL) */
    uint64_t emitted;  /* merged windows emitted */
    uint64_t held;     /* partial windows held now, over all workers */
} ap_window_par_stats;
/** ap_window_par_stats_get - the counters into *@out (snapshot; any thread) */
AP_API void ap_window_par_stats_get(ap_window_par *par, ap_window_par_stats *out);

/* ---- implementation ---- */

/* floor(a / b) for b > 0 */
AP_FORCE_INLINE int64_t ap__window_floordiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

AP_API ap_window_desc ap_window_desc_resolved(const ap_window_desc *desc)
{
    ap_window_desc d = *desc;
    if (d.kind == AP_WINDOW_KIND_TUMBLING || (d.kind == AP_WINDOW_KIND_HOPPING && d.slide_ns == 0))
        d.slide_ns = d.slide_ns == 0 ? d.size_ns : d.slide_ns;
    return d;
}

AP_API uint64_t ap_window_slots(const ap_window_desc *desc)
{
    ap_window_desc d = ap_window_desc_resolved(desc);
    uint64_t w, s;
    if (d.lateness_ns > AP_WINDOW_TS_MAX)
        return 0;
    switch (d.kind) {
    case AP_WINDOW_KIND_TUMBLING:
    case AP_WINDOW_KIND_HOPPING:
        w = d.size_ns, s = d.slide_ns;
        if (w == 0 || s == 0 || s > w || w > AP_WINDOW_TS_MAX ||
            (d.kind == AP_WINDOW_KIND_TUMBLING && s != w))
            return 0;
        break;
    case AP_WINDOW_KIND_SESSION:
        w = s = d.gap_ns;
        if (w == 0 || w > AP_WINDOW_TS_MAX)
            return 0;
        break;
    default:
        return 0;
    }
    return AP_WINDOW_SLOTS(w, s, d.lateness_ns); /* <= 2^63 + 1: no overflow */
}

AP_API ap_status ap_window_init(ap_window *win, void *buf, size_t bytes,
                                const ap_window_desc *desc)
{
    AP_ASSERT(win != NULL);
    /* every check before the first write: AP_INVAL touches nothing */
    if (desc == NULL || buf == NULL || (uintptr_t)buf % AP_WINDOW_ALIGN != 0)
        return AP_INVAL;
    uint64_t n = ap_window_slots(desc);
    if (n == 0 || n > SIZE_MAX / sizeof(ap__window_slot) || bytes < AP_WINDOW_BYTES(n))
        return AP_INVAL;
    ap_window_desc d = ap_window_desc_resolved(desc);
    memset(win, 0, sizeof *win);
    win->desc = d;
    win->w = (int64_t)(d.kind == AP_WINDOW_KIND_SESSION ? d.gap_ns : d.size_ns);
    win->s = (int64_t)(d.kind == AP_WINDOW_KIND_SESSION ? d.gap_ns : d.slide_ns);
    win->lateness = (int64_t)d.lateness_ns;
    win->slots = (ap__window_slot *)buf;
    win->nslots = (size_t)n;
    win->wm = INT64_MIN;
    memset(buf, 0, AP_WINDOW_BYTES(n));
    return AP_OK;
}

AP_API void ap_window_fini(ap_window *win)
{
    AP_ASSERT(win != NULL && win->slots != NULL); /* live: fini once */
    win->slots = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_window_create(ap_window **out, const ap_window_desc *desc,
                                  const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_window), 16), total;
    AP_ASSERT(out != NULL);
    uint64_t n = desc == NULL ? 0 : ap_window_slots(desc);
    if (a == NULL || n == 0 || n > SIZE_MAX / sizeof(ap__window_slot) ||
        !ap__size_muladd((size_t)n, sizeof(ap__window_slot), hdr, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, 16, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_window *win = (ap_window *)(void *)mem;
    ap_status st = ap_window_init(win, mem + hdr, total - hdr, desc);
    AP_ASSERT(st == AP_OK);
    (void)st;
    win->alloc = a;
    *out = win;
    return AP_OK;
}

AP_API void ap_window_destroy(ap_window *win)
{
    if (win == NULL)
        return;
    AP_ASSERT(win->alloc != NULL); /* only from ap_window_create */
    const ap_allocator *a = win->alloc;
    size_t total = ap__align_up(sizeof(ap_window), 16) + AP_WINDOW_BYTES(win->nslots);
    if (win->slots != NULL) /* fini may have run already */
        ap_window_fini(win);
    a->free(win, total, a->user);
}
#endif

AP_FORCE_INLINE ap__window_slot *ap__window_hop_slot(ap_window *win, int64_t k)
{
    int64_t n = (int64_t)win->nslots, i = k % n;
    return &win->slots[i < 0 ? i + n : i];
}

/* Emit, in order, every held window whose end <= W. */
AP_API size_t ap__window_emit_due(ap_window *win, ap_window_emit_fn emit, void *ctx)
{
    size_t n = 0;
    if (!win->has_wm || win->held == 0)
        return 0;
    if (win->desc.kind == AP_WINDOW_KIND_SESSION) {
        size_t i = 0;
        while (i < win->held && win->slots[i].last + win->w <= win->wm) {
            ap_window_result r = {win->slots[i].k_or_first, win->slots[i].last + win->w,
                                  win->slots[i].agg};
            emit(ctx, &r);
            i++;
        }
        memmove(win->slots, win->slots + i, (win->held - i) * sizeof(ap__window_slot));
        win->held -= i;
        n = i;
    } else {
        /* window k is due iff k*s + w <= W iff k <= floor((W - w) / s) */
        int64_t due = win->wm == INT64_MAX ? INT64_MAX
                                           : ap__window_floordiv(win->wm - win->w, win->s);
        int64_t k = win->base;
        for (size_t i = 0; i < win->nslots && k <= due && win->held > 0; i++, k++) {
            ap__window_slot *sl = ap__window_hop_slot(win, k);
            if (!sl->used || sl->k_or_first != k)
                continue;
            ap_window_result r = {k * win->s, k * win->s + win->w, sl->agg};
            emit(ctx, &r);
            sl->used = false;
            win->held--;
            n++;
        }
        if (due != INT64_MAX && due + 1 > win->base)
            win->base = due + 1;
    }
    win->emitted += n;
    return n;
}

AP_API void ap__window_raise(ap_window *win, int64_t wm)
{
    if (!win->has_wm || wm > win->wm) {
        win->wm = wm;
        win->has_wm = true;
    }
}

AP_API ap_status ap_window_add(ap_window *win, uint64_t ts, int64_t value,
                               ap_window_emit_fn emit, void *ctx)
{
    AP_ASSERT(win != NULL && win->slots != NULL && emit != NULL);
    if (ts > AP_WINDOW_TS_MAX)
        return AP_INVAL;
    int64_t t = (int64_t)ts;
    bool session = win->desc.kind == AP_WINDOW_KIND_SESSION;
    int64_t k_lo = 0, k_hi = 0;
    if (!session) {
        k_hi = ap__window_floordiv(t, win->s);
        k_lo = ap__window_floordiv(t - win->w, win->s) + 1;
    }
    /* late: a window of this event may already have been emitted */
    if (win->has_wm && (session ? t < win->wm : k_lo * win->s + win->w <= win->wm)) {
        win->late++;
        return AP_REJECTED;
    }
    if (!win->has_event || t > win->max_ts)
        win->max_ts = t;
    win->has_event = true;
    ap__window_raise(win, win->max_ts - win->lateness);
    (void)ap__window_emit_due(win, emit, ctx);
    if (session) {
        /* sessions overlapping [t, t + g): first < t + g and last + g > t;
         * they are contiguous in the sorted array (at most two) */
        size_t i = 0, j;
        while (i < win->held && win->slots[i].last + win->w <= t)
            i++;
        j = i;
        while (j < win->held && win->slots[j].k_or_first < t + win->w)
            j++;
        if (i == j) { /* a new session at i */
            AP_ASSERT(win->held < win->nslots); /* the memory bound */
            memmove(win->slots + i + 1, win->slots + i,
                    (win->held - i) * sizeof(ap__window_slot));
            win->slots[i] = AP__LIT(ap__window_slot){t, t, false, {0, 0, 0, 0, 0}};
            win->held++;
        } else { /* merge [i, j) into i */
            ap__window_slot *m = &win->slots[i];
            for (size_t x = i + 1; x < j; x++) {
                if (win->slots[x].last > m->last)
                    m->last = win->slots[x].last;
                ap_status st = ap_agg_merge(&m->agg, &win->slots[x].agg);
                AP_ASSERT(st == AP_OK);
                (void)st;
            }
            memmove(win->slots + i + 1, win->slots + j,
                    (win->held - j) * sizeof(ap__window_slot));
            win->held -= j - i - 1;
            if (t < m->k_or_first)
                m->k_or_first = t;
            if (t > m->last)
                m->last = t;
        }
        ap_agg_add(&win->slots[i].agg, value);
    } else {
        if (win->held == 0 || k_lo < win->base)
            win->base = k_lo;
        for (int64_t k = k_lo; k <= k_hi; k++) {
            /* the memory bound: every held window within nslots of base */
            AP_ASSERT(k - win->base < (int64_t)win->nslots);
            ap__window_slot *sl = ap__window_hop_slot(win, k);
            if (!sl->used) {
                *sl = AP__LIT(ap__window_slot){k, 0, true, {0, 0, 0, 0, 0}};
                win->held++;
            }
            AP_ASSERT(sl->k_or_first == k);
            ap_agg_add(&sl->agg, value);
        }
    }
    AP_ASSERT(win->held <= win->nslots);
    if (win->held > win->held_max)
        win->held_max = win->held;
    win->accepted++;
    return AP_OK;
}

AP_API size_t ap_window_advance(ap_window *win, uint64_t watermark, ap_window_emit_fn emit,
                                void *ctx)
{
    AP_ASSERT(win != NULL && win->slots != NULL && emit != NULL);
    ap__window_raise(win, watermark > AP_WINDOW_TS_MAX ? INT64_MAX : (int64_t)watermark);
    return ap__window_emit_due(win, emit, ctx);
}

AP_API int64_t ap_window_watermark(const ap_window *win)
{
    return win->has_wm ? win->wm : INT64_MIN;
}

AP_API size_t ap_window_held(const ap_window *win) { return win->held; }
AP_API size_t ap_window_held_max(const ap_window *win) { return win->held_max; }
AP_API uint64_t ap_window_accepted(const ap_window *win) { return win->accepted; }
AP_API uint64_t ap_window_late(const ap_window *win) { return win->late; }
AP_API uint64_t ap_window_emitted(const ap_window *win) { return win->emitted; }

AP_API void ap_window_stats_get(const ap_window *win, ap_window_stats *out)
{
    AP_ASSERT(win != NULL && out != NULL);
    out->accepted = win->accepted;
    out->late = win->late;
    out->emitted = win->emitted;
    out->held = (uint64_t)win->held;
    out->held_max = (uint64_t)win->held_max;
}

AP_API ap_status ap_window_par_init(ap_window_par *par, void *buf, size_t bytes,
                                    const ap_window_desc *desc, size_t workers, size_t slots)
{
    size_t hdr, total;
    AP_ASSERT(par != NULL);
    /* every check before the first write: AP_INVAL touches nothing */
    if (desc == NULL || buf == NULL || (uintptr_t)buf % AP_WINDOW_PAR_ALIGN != 0 ||
        workers == 0 || desc->kind == AP_WINDOW_KIND_SESSION)
        return AP_INVAL;
    uint64_t need = ap_window_slots(desc);
    if (need == 0 || (uint64_t)slots < need ||
        !ap__size_muladd(workers, sizeof(ap__window_par_worker), 0, &hdr))
        return AP_INVAL;
    hdr = ap__align_up(hdr, AP_ALIGNOF(ap__window_slot));
    if (hdr == 0 || !ap__size_muladd(workers, slots, 0, &total) ||
        !ap__size_muladd(total, sizeof(ap__window_slot), hdr, &total) || bytes < total)
        return AP_INVAL;
    ap_window_desc d = ap_window_desc_resolved(desc);
    unsigned char *mem = (unsigned char *)buf;
    memset(buf, 0, total);
    par->desc = d;
    par->w = (int64_t)d.size_ns;
    par->s = (int64_t)d.slide_ns;
    par->lateness = (int64_t)d.lateness_ns;
    par->nworkers = workers;
    par->nslots = slots;
    par->workers = (ap__window_par_worker *)(void *)mem;
    for (size_t i = 0; i < workers; i++) {
        ap__window_par_worker *wk = &par->workers[i];
        AP_ATOMIC_INIT(&wk->lock.held, 0u);
        AP_ATOMIC_INIT(&wk->wm, INT64_MIN);
        wk->slots = (ap__window_slot *)(void *)(mem + hdr) + i * slots;
    }
    AP_ATOMIC_INIT(&par->close_lock.held, 0u);
    AP_ATOMIC_INIT(&par->gwm, INT64_MIN);
    par->base = 0;
    par->has_base = false;
    AP_ATOMIC_INIT(&par->next_k, INT64_MIN);
    AP_ATOMIC_INIT(&par->emitted, (uint64_t)0);
    return AP_OK;
}

AP_API void ap_window_par_fini(ap_window_par *par)
{
    AP_ASSERT(par != NULL && par->workers != NULL); /* live: fini once */
    par->workers = NULL;
}

AP_FORCE_INLINE ap__window_slot *ap__window_par_slot(const ap_window_par *par,
                                                     ap__window_par_worker *wk, int64_t k)
{
    int64_t n = (int64_t)par->nslots, i = k % n;
    return &wk->slots[i < 0 ? i + n : i];
}

/* Close every window with end <= G = min over workers' watermarks, in
 * order, each once; returns how many were emitted. */
/* G now: the minimum of the workers' watermarks (relaxed: each is a
 * monotonic value of one writer; a stale one only makes G smaller) */
AP_API int64_t ap__window_par_min(const ap_window_par *par)
{
    int64_t g = INT64_MAX;
    for (size_t i = 0; i < par->nworkers; i++) {
        int64_t x = AP_ATOMIC_LOAD(&par->workers[i].wm, memory_order_relaxed);
        if (x < g)
            g = x;
    }
    return g;
}

AP_API size_t ap__window_par_close(ap_window_par *par, ap_window_emit_fn emit, void *ctx)
{
    size_t n = 0;
    /* Early exit without close_lock, the common case: nothing new is due,
     * because G's newest due window (index due) is below next_k, so it was
     * emitted. G is then not published: an add's late check against the
     * older published G decides the same, since every window that ends at
     * or before G has index <= due < base and ended at or before the G of
     * the close that emitted it (published before that emission; acquire
     * pairs with the release store of next_k after it). The seq_cst fence
     * orders our worker's watermark store (the raise before this call)
     * before the loads of the others': of two workers raising at once, at
     * least one sees both raises (store buffering; the lock's RMW did
     * this before the exit existed). */
    AP_ATOMIC_FENCE(memory_order_seq_cst);
    int64_t g = ap__window_par_min(par);
    int64_t nk = AP_ATOMIC_LOAD(&par->next_k, memory_order_acquire);
    if (g <= AP_ATOMIC_LOAD(&par->gwm, memory_order_relaxed) || /* relaxed: a guess */
        (nk != INT64_MIN && g != INT64_MAX &&
         ap__window_floordiv(g - par->w, par->s) < nk))
        return 0;
    ap__lock_acquire(&par->close_lock);
    g = ap__window_par_min(par);
    if (g <= AP_ATOMIC_LOAD(&par->gwm, memory_order_relaxed)) {
        ap__lock_release(&par->close_lock);
        return 0;
    }
    /* publish G first: an add under a worker's lock after we collect from
     * that worker sees it (late), one before is collected (see ORDERING) */
    AP_ATOMIC_STORE(&par->gwm, g, memory_order_release);
    int64_t due = g == INT64_MAX ? INT64_MAX : ap__window_floordiv(g - par->w, par->s);
    /* nothing new is due (the common case, a watermark raised within the
     * current window): the last close emitted every window <= due, and an
     * add to one of them since is late (it saw that close's G), so no
     * worker holds one; skip the scan of every worker's slots */
    if (par->has_base && due < par->base) {
        ap__lock_release(&par->close_lock);
        return 0;
    }
    for (;;) {
        /* the smallest held window index <= due, over all workers */
        bool any = false;
        int64_t k = 0;
        for (size_t i = 0; i < par->nworkers; i++) {
            ap__window_par_worker *wk = &par->workers[i];
            ap__lock_acquire(&wk->lock);
            for (size_t j = 0; j < par->nslots && wk->held > 0; j++)
                if (wk->slots[j].used && wk->slots[j].k_or_first <= due &&
                    (!any || wk->slots[j].k_or_first < k))
                    k = wk->slots[j].k_or_first, any = true;
            ap__lock_release(&wk->lock);
        }
        if (!any)
            break;
        ap_window_result r;
        r.start = k * par->s;
        r.end = k * par->s + par->w;
        r.agg = AP__LIT(ap_agg){0, 0, 0, 0, 0};
        for (size_t i = 0; i < par->nworkers; i++) {
            ap__window_par_worker *wk = &par->workers[i];
            ap__lock_acquire(&wk->lock);
            ap__window_slot *sl = ap__window_par_slot(par, wk, k);
            if (sl->used && sl->k_or_first == k) {
                ap_status st = ap_agg_merge(&r.agg, &sl->agg);
                AP_ASSERT(st == AP_OK);
                (void)st;
                sl->used = false;
                wk->held--;
            }
            ap__lock_release(&wk->lock);
        }
        AP_ASSERT(!par->has_base || k >= par->base); /* each window once, in order */
        emit(ctx, &r);
        n++;
        par->base = k + 1;
        par->has_base = true;
    }
    if (n != 0) { /* relaxed: a statistics counter */
        AP_ATOMIC_FETCH_ADD(&par->emitted, (uint64_t)n, memory_order_relaxed);
        /* release: the early exit that reads it sees this close's G */
        AP_ATOMIC_STORE(&par->next_k, par->base, memory_order_release);
    }
    ap__lock_release(&par->close_lock);
    return n;
}

AP_API void ap__window_par_raise(ap__window_par_worker *wk, int64_t wm)
{
    /* only this worker's thread stores it; the closer reads it */
    if (wm > AP_ATOMIC_LOAD(&wk->wm, memory_order_relaxed))
        AP_ATOMIC_STORE(&wk->wm, wm, memory_order_relaxed);
}

AP_API ap_status ap_window_par_add(ap_window_par *par, size_t worker, uint64_t ts,
                                   int64_t value, ap_window_emit_fn emit, void *ctx)
{
    AP_ASSERT(par != NULL && par->workers != NULL && emit != NULL);
    if (worker >= par->nworkers || ts > AP_WINDOW_TS_MAX)
        return AP_INVAL;
    ap__window_par_worker *wk = &par->workers[worker];
    int64_t t = (int64_t)ts;
    int64_t k_hi = ap__window_floordiv(t, par->s);
    int64_t k_lo = ap__window_floordiv(t - par->w, par->s) + 1;
    ap__lock_acquire(&wk->lock);
    /* relaxed: the closer stored G before taking this lock (ORDERING) */
    int64_t g = AP_ATOMIC_LOAD(&par->gwm, memory_order_relaxed);
    if (k_lo * par->s + par->w <= g) {
        wk->late++;
        ap__lock_release(&wk->lock);
        return AP_REJECTED;
    }
    if (!wk->has_event || t > wk->max_ts) {
        /* as ap_window: the event raises the watermark, and what that
         * closes is emitted, before the event is added (so the memory
         * bound is the single-threaded one for the slowest worker); its
         * own windows end after t - L >= G: it cannot become late */
        wk->max_ts = t;
        wk->has_event = true;
        int64_t wm = t - par->lateness;
        if (wm > AP_ATOMIC_LOAD(&wk->wm, memory_order_relaxed)) {
            ap__window_par_raise(wk, wm);
            ap__lock_release(&wk->lock);
            (void)ap__window_par_close(par, emit, ctx);
            ap__lock_acquire(&wk->lock);
        }
    }
    for (int64_t k = k_lo; k <= k_hi; k++) { /* room for all, or nothing */
        ap__window_slot *sl = ap__window_par_slot(par, wk, k);
        if (sl->used && sl->k_or_first != k) {
            wk->full++;
            ap__lock_release(&wk->lock);
            return AP_FULL;
        }
    }
    for (int64_t k = k_lo; k <= k_hi; k++) {
        ap__window_slot *sl = ap__window_par_slot(par, wk, k);
        if (!sl->used) {
            *sl = AP__LIT(ap__window_slot){k, 0, true, {0, 0, 0, 0, 0}};
            wk->held++;
        }
        ap_agg_add(&sl->agg, value);
    }
    wk->accepted++;
    ap__lock_release(&wk->lock);
    return AP_OK;
}

AP_API size_t ap_window_par_advance(ap_window_par *par, size_t worker, uint64_t watermark,
                                    ap_window_emit_fn emit, void *ctx)
{
    AP_ASSERT(par != NULL && par->workers != NULL && emit != NULL);
    if (worker >= par->nworkers)
        return 0;
    ap__window_par_worker *wk = &par->workers[worker];
    ap__lock_acquire(&wk->lock);
    ap__window_par_raise(wk, watermark > AP_WINDOW_TS_MAX ? INT64_MAX : (int64_t)watermark);
    ap__lock_release(&wk->lock);
    return ap__window_par_close(par, emit, ctx);
}

AP_API int64_t ap_window_par_watermark(ap_window_par *par)
{
    /* G now: the published G lags while raises close nothing (the
     * closer's early exit), the workers' minimum does not */
    int64_t pub = AP_ATOMIC_LOAD(&par->gwm, memory_order_acquire);
    int64_t g = ap__window_par_min(par);
    return g > pub ? g : pub;
}

AP_API uint64_t ap_window_par_accepted(ap_window_par *par)
{
    ap_window_par_stats st;
    ap_window_par_stats_get(par, &st);
    return st.accepted;
}

AP_API uint64_t ap_window_par_late(ap_window_par *par)
{
    ap_window_par_stats st;
    ap_window_par_stats_get(par, &st);
    return st.late;
}
AP_API uint64_t ap_window_par_emitted(ap_window_par *par)
{
    return AP_ATOMIC_LOAD(&par->emitted, memory_order_relaxed); /* relaxed: a statistics counter */
}

AP_API void ap_window_par_stats_get(ap_window_par *par, ap_window_par_stats *out)
{
    AP_ASSERT(par != NULL && out != NULL);
    uint64_t accepted = 0, late = 0, full = 0, held = 0;
    for (size_t i = 0; i < par->nworkers; i++) {
        ap__window_par_worker *wk = &par->workers[i];
        ap__lock_acquire(&wk->lock);
        accepted += wk->accepted;
        late += wk->late;
        full += wk->full;
        held += (uint64_t)wk->held;
        ap__lock_release(&wk->lock);
    }
    out->accepted = accepted;
    out->late = late;
    out->full = full;
    out->held = held;
    out->emitted = AP_ATOMIC_LOAD(&par->emitted, memory_order_relaxed); /* relaxed: statistics snapshot */
}

#endif /* ASYNCPAT_WINDOW_H */
