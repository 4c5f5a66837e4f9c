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
 *   - bounded memory: at most ap_window_slots(desc) = ceil((w + L) / s) + 1
 *     windows are held at any time (session: w = s = g), asserted on every
 *     change and checked by ap_window_open_max. Why: after an add emits
 *     what is due, a held window has end > W >= maxts - L and start <=
 *     maxts, so its end lies in (maxts - L, maxts + w]; ends are s apart
 *     (sessions: their last events are >= g apart), so at most
 *     ceil((w + L) / s) of them fit. The +1 is slack.
 *
 * CONCURRENCY
 *   None: one thread at a time (the caller serialises). The emit callback
 *   runs inside add/advance; it may read the window (watermark, counters)
 *   but must not add to or advance it.
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
 *              AP_WINDOW_TS_MAX; nothing changed), AP_NOMEM.
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

#endif /* ASYNCPAT_WINDOW_H */
