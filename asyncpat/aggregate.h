/*
 * asyncpat/aggregate.h -- incremental aggregates (count, sum, min, max,
 *                         mean) and sliding-window aggregates
 *
 * PATTERN
 *   ap_agg folds int64_t values into count, sum, min and max, O(1) per
 *   value, and merges two aggregates in O(1) (so partial results from
 *   shards, windows or panes combine). The sum is kept exactly in 128 bits
 *   (two's complement, two words), so it never overflows for up to
 *   2^64 - 1 values; reading it as an int64_t reports overflow instead of
 *   wrapping. The mean is exact: floor(sum / count) plus the remainder.
 *   window.h keeps one ap_agg per window.
 *
 *   ap_agg_slide aggregates the last N values (AP_AGG_SLIDE_KIND_COUNT) or the
 *   values of the last T ns (AP_AGG_SLIDE_KIND_TIME: timestamps in
 *   (latest - T, latest], where latest is the newest time the window has
 *   seen: the greatest timestamp pushed or time advanced to). Time only
 *   moves forward: a push with a timestamp before latest, also one behind
 *   an ap_agg_slide_advance, is refused with AP_INVAL and changes nothing
 *   (the advance may already have evicted values that such a push's window
 *   would hold, so accepting it would report a wrong window). Count and sum are invertible, so an evicted
 *   value is subtracted (O(1)). Min and max are not: each keeps a
 *   monotonic deque (the "ascending minima" algorithm): a new value pops
 *   every worse value from the back, then is pushed; an evicted value
 *   leaves the front if it is still there. Every value is pushed once and
 *   popped at most once per deque, so each deque does at most 2 element
 *   operations per value, amortized O(1); the front is the answer. The
 *   naive design rescans the window on every eviction (O(N) per value).
 *
 * USAGE (v, n, now and latency are the caller's)
 *   ap_agg a = {0};
 *   for (size_t i = 0; i < n; i++) ap_agg_add(&a, v[i]);
 *   int64_t q, s; uint64_t r;
 *   if (ap_agg_mean(&a, &q, &r) == AP_OK) printf("mean %lld + %llu/n\n",
 *                                                (long long)q, (unsigned long long)r);
 *   if (ap_agg_sum(&a, &s) == AP_INVAL) puts("exact sum beyond int64");
 *
 *   // the last 1000 values
 *   static AP_ALIGNAS(AP_AGG_SLIDE_ALIGN) unsigned char buf[AP_AGG_SLIDE_BYTES(1000)];
 *   static ap_agg_slide sl;
 *   if (ap_agg_slide_init(&sl, buf, sizeof buf, 1000, NULL)) abort(); // zero desc: COUNT
 *   if (ap_agg_slide_push(&sl, now, latency) != AP_OK) abort(); // COUNT never refuses
 *   ap_agg w; int64_t lo;
 *   ap_agg_slide_read(&sl, &w);
 *   if (ap_agg_min(&w, &lo) == AP_OK) printf("min %lld\n", (long long)lo);
 *
 * GUARANTEES (invariants the tests check)
 *   - ap_agg after any sequence of adds and merges equals a brute-force
 *     recomputation over the same values (count, exact sum, min, max,
 *     floor mean and remainder), checked on 1e5 seeded random values
 *   - ap_agg_slide after every push and every advance equals a
 *     brute-force recomputation over the values its window holds (the
 *     last N; or those with timestamp > latest - T)
 *   - ap_agg_slide_ops(s, i) <= 2 * values pushed for each deque i
 *     (counted element pushes + pops; the O(1) amortized bound, asserted)
 *   - overflow is reported: ap_agg_sum answers AP_INVAL when the exact sum
 *     does not fit an int64_t (out untouched); ap_agg_sum_sat saturates;
 *     the mean and the sliding sum are always exact
 *   - AP_INVAL changes nothing (the object's bytes and the buffer are
 *     untouched): a zero capacity or period, a buffer that is NULL,
 *     misaligned or smaller than AP_AGG_SLIDE_BYTES(capacity), a TIME
 *     timestamp before latest, a merge whose count would overflow
 *
 * CONCURRENCY
 *   None: an ap_agg or ap_agg_slide belongs to one thread at a time (the
 *   caller serialises). Merge two per-thread aggregates to combine.
 *
 * COMPLEXITY   ap_agg: O(1) add, merge and read; 40 bytes.
 *              ap_agg_slide: O(1) amortized push (worst case O(N) for one
 *              push that evicts N values); O(1) read.
 * MEMORY       ap_agg lives anywhere (a zero ap_agg is a valid empty
 *              aggregate). ap_agg_slide_init takes a caller buffer and its
 *              size in bytes: at least AP_AGG_SLIDE_BYTES(capacity),
 *              aligned to AP_AGG_SLIDE_ALIGN (else AP_INVAL);
 *              ap_agg_slide_create allocates once. Nothing else allocates.
 * ERRORS       AP_EMPTY (min/max/mean of nothing), AP_FULL (time window:
 *              capacity values inside T already; nothing changed),
 *              AP_INVAL (see above); out-params untouched on failure.
 * CONFIG       AP_ASSERT, AP_NO_MALLOC
 * SEE ALSO     window.h (per-window aggregates)
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_AGGREGATE_H
#define ASYNCPAT_AGGREGATE_H

#include "core.h"

/** ap_agg - count, exact sum, min, max of int64_t values; zero = empty */
typedef struct ap_agg {
    uint64_t count;
    uint64_t sum_lo; /* the sum is sum_hi * 2^64 + sum_lo (128-bit two's complement) */
    int64_t sum_hi;
    int64_t min, max; /* meaningful when count > 0 */
} ap_agg;

/** ap_agg_slide_kind - what the sliding window holds */
typedef enum ap_agg_slide_kind {
    AP_AGG_SLIDE_KIND_COUNT = 0, /* the last `capacity` values */
    AP_AGG_SLIDE_KIND_TIME = 1   /* values with timestamp in (newest - period, newest] */
} ap_agg_slide_kind;

/** ap_agg_slide_desc - a sliding aggregate's settings; zero is the last
 *  `capacity` values (AP_AGG_SLIDE_KIND_COUNT) */
typedef struct ap_agg_slide_desc {
    ap_agg_slide_kind kind; /* default COUNT */
    uint64_t period_ns;     /* AP_AGG_SLIDE_KIND_TIME: the window, > 0; COUNT: ignored */
} ap_agg_slide_desc;

/* One held value; min/max deques hold value sequence numbers. */
typedef struct ap__agg_entry {
    uint64_t ts;
    int64_t value;
} ap__agg_entry;

/** AP_AGG_SLIDE_BYTES - least buffer bytes for ap_agg_slide_init (constant
 *  expression): per value an entry and a slot in each of the two deques.
 *  The caller keeps capacity below SIZE_MAX / 32 so it does not wrap; init
 *  checks that itself. */
#define AP_AGG_SLIDE_BYTES(capacity) \
    ((size_t)(capacity) * (sizeof(ap__agg_entry) + 2 * sizeof(uint64_t)))
/** AP_AGG_SLIDE_ALIGN - the alignment ap_agg_slide_init needs of its buffer
 *  (constant expression) */
#define AP_AGG_SLIDE_ALIGN AP_ALIGNOF(ap__agg_entry)

/* A ring of sequence numbers used as a deque. */
typedef struct ap__agg_deque {
    uint64_t *seq;
    size_t head, len;
    uint64_t ops; /* element pushes + pops, for the amortized bound */
} ap__agg_deque;

/** ap_agg_slide - a sliding-window aggregate; set up with ap_agg_slide_init */
typedef struct ap_agg_slide {
    ap__agg_entry *ring;
    size_t capacity;
    ap_agg_slide_kind kind;
    uint64_t period_ns;        /* AP_AGG_SLIDE_KIND_TIME only */
    uint64_t first, next;      /* sequence numbers held: [first, next) */
    uint64_t pushed;           /* values pushed with AP_OK */
    uint64_t newest_ts;        /* latest: the greatest timestamp pushed or
                                * (TIME) time advanced to; 0 at first */
    ap_agg sum;                /* count and exact sum of the held values */
    ap__agg_deque dq[2];       /* [0]: min (ascending), [1]: max (descending) */
    const ap_allocator *alloc; /* set by create */
} ap_agg_slide;

/** ap_agg_add - fold one value in; O(1). Asserts count < 2^64 - 1. */
AP_API void ap_agg_add(ap_agg *a, int64_t value);
/**
 * ap_agg_merge - fold aggregate @b into @a; O(1)
 * Returns AP_OK, or AP_INVAL when the count would overflow (*a unchanged).
 */
AP_API AP_NODISCARD ap_status ap_agg_merge(ap_agg *a, const ap_agg *b);
/** ap_agg_count - values folded in */
AP_API uint64_t ap_agg_count(const ap_agg *a);
/**
 * ap_agg_sum - the exact sum as an int64_t
 * Returns AP_OK, or AP_INVAL when it does not fit (*out untouched; use
 * ap_agg_sum_sat or the mean). The empty sum is 0.
 */
AP_API AP_NODISCARD ap_status ap_agg_sum(const ap_agg *a, int64_t *out);
/** ap_agg_sum_sat - the sum clamped to [INT64_MIN, INT64_MAX] */
AP_API int64_t ap_agg_sum_sat(const ap_agg *a);
/** ap_agg_min / ap_agg_max - AP_OK, or AP_EMPTY for no values (*out untouched) */
AP_API AP_NODISCARD ap_status ap_agg_min(const ap_agg *a, int64_t *out);
AP_API AP_NODISCARD ap_status ap_agg_max(const ap_agg *a, int64_t *out);
/**
 * ap_agg_mean - the exact mean: sum = *quot * count + *rem, 0 <= *rem < count
 * (floor division, also for negative sums; always fits, min <= quot <= max)
 * Returns AP_OK, or AP_EMPTY for no values (outs untouched).
 */
AP_API AP_NODISCARD ap_status ap_agg_mean(const ap_agg *a, int64_t *quot, uint64_t *rem);

/**
 * ap_agg_slide_init - set up an empty sliding aggregate in caller memory
 * @s:         the aggregate
 * @buf:       at least AP_AGG_SLIDE_BYTES(capacity) bytes, aligned to
 *             AP_AGG_SLIDE_ALIGN; the aggregate owns it until fini
 * @bytes:     the size of @buf in bytes (any excess is not touched)
 * @capacity:  values held at most (>= 1)
 * @desc:      kind AP_AGG_SLIDE_KIND_COUNT (window = the last @capacity
 *             values; the zero desc) or AP_AGG_SLIDE_KIND_TIME (window = the
 *             last desc->period_ns ns, period > 0; at most @capacity values
 *             inside it); NULL is the zero desc
 *
 * Returns AP_OK or AP_INVAL: capacity 0, unknown kind, period 0 for TIME,
 * a capacity whose bytes overflow size_t, @buf NULL or misaligned, @bytes
 * too small. On AP_INVAL neither *s nor @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_agg_slide_init(ap_agg_slide *s, void *buf, size_t bytes,
                                                size_t capacity, const ap_agg_slide_desc *desc);
/** ap_agg_slide_fini - end of life; frees nothing */
AP_API void ap_agg_slide_fini(ap_agg_slide *s);
#ifndef AP_NO_MALLOC
/** ap_agg_slide_create - ap_agg_slide_init in one allocation; AP_OK, AP_INVAL, AP_NOMEM */
AP_API AP_NODISCARD ap_status ap_agg_slide_create(ap_agg_slide **out, size_t capacity,
                                                  const ap_agg_slide_desc *desc,
                                                  const ap_allocator *alloc);
/** ap_agg_slide_destroy - free one from ap_agg_slide_create; NULL is a no-op */
AP_API void ap_agg_slide_destroy(ap_agg_slide *s);
#endif
/**
 * ap_agg_slide_push - add a value at time @ts, evicting what left the window
 * @ts: COUNT: recorded only; TIME: >= latest (the newest timestamp pushed
 *      and the latest time given to ap_agg_slide_advance)
 *
 * Returns AP_OK; AP_INVAL for a TIME timestamp before latest, also one
 * behind an advance (nothing changed: the advance may have evicted values
 * that ts's window would hold); AP_FULL when a TIME window already holds
 * @capacity values newer than ts - period (nothing changed: size capacity
 * for the peak rate). A COUNT window never refuses: the oldest value leaves.
 */
AP_API AP_NODISCARD ap_status ap_agg_slide_push(ap_agg_slide *s, uint64_t ts, int64_t value);
/**
 * ap_agg_slide_advance - TIME: time moved on to @now without values: latest
 * becomes @now and values with timestamp <= @now - period are evicted; a
 * later push must have ts >= @now. A @now before latest is a no-op.
 * Returns the number evicted. COUNT: no-op, returns 0.
 */
AP_API size_t ap_agg_slide_advance(ap_agg_slide *s, uint64_t now);
/** ap_agg_slide_read - the window's aggregate (count, exact sum, min, max) */
AP_API void ap_agg_slide_read(const ap_agg_slide *s, ap_agg *out);
/** ap_agg_slide_len - values in the window */
AP_API size_t ap_agg_slide_len(const ap_agg_slide *s);
/** ap_agg_slide_ops - element operations (pushes + pops) of deque @which
 *  (0: min, 1: max) so far; <= 2 * values pushed */
AP_API uint64_t ap_agg_slide_ops(const ap_agg_slide *s, unsigned which);

/* ---- implementation ---- */

/* (hi, lo) += v, 128-bit two's complement */
AP_FORCE_INLINE void ap__agg_add128(int64_t *hi, uint64_t *lo, int64_t v)
{
    uint64_t old = *lo;
    *lo = old + (uint64_t)v;
    /* carry out of the low word, plus the sign extension of v */
    uint64_t h = (uint64_t)*hi + (uint64_t)(*lo < old) + (v < 0 ? UINT64_MAX : 0);
    *hi = (int64_t)h; /* modular in two's complement; fits by the count bound */
}

/* (hi, lo) -= v */
AP_FORCE_INLINE void ap__agg_sub128(int64_t *hi, uint64_t *lo, int64_t v)
{
    uint64_t old = *lo;
    *lo = old - (uint64_t)v;
    uint64_t h = (uint64_t)*hi - (uint64_t)(*lo > old) - (v < 0 ? UINT64_MAX : 0);
    *hi = (int64_t)h;
}

/* Conversion of a uint64_t holding a two's-complement bit pattern, without
 * implementation-defined behaviour. */
AP_FORCE_INLINE int64_t ap__agg_i64(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(UINT64_MAX - u) - 1;
}

AP_API void ap_agg_add(ap_agg *a, int64_t value)
{
    AP_ASSERT(a != NULL && a->count < UINT64_MAX);
    if (a->count == 0 || value < a->min)
        a->min = value;
    if (a->count == 0 || value > a->max)
        a->max = value;
    a->count++;
    ap__agg_add128(&a->sum_hi, &a->sum_lo, value);
}

AP_API ap_status ap_agg_merge(ap_agg *a, const ap_agg *b)
{
    AP_ASSERT(a != NULL && b != NULL);
    if (b->count == 0)
        return AP_OK;
    if (a->count > UINT64_MAX - b->count)
        return AP_INVAL;
    if (a->count == 0 || b->min < a->min)
        a->min = b->min;
    if (a->count == 0 || b->max > a->max)
        a->max = b->max;
    a->count += b->count;
    uint64_t old = a->sum_lo;
    a->sum_lo = old + b->sum_lo;
    a->sum_hi = ap__agg_i64((uint64_t)a->sum_hi + (uint64_t)b->sum_hi +
                            (uint64_t)(a->sum_lo < old));
    return AP_OK;
}

AP_API uint64_t ap_agg_count(const ap_agg *a)
{
    return a->count;
}

AP_API ap_status ap_agg_sum(const ap_agg *a, int64_t *out)
{
    /* fits iff the high word is the sign extension of the low word */
    bool neg = a->sum_lo > (uint64_t)INT64_MAX;
    if (a->sum_hi != (neg ? -1 : 0))
        return AP_INVAL;
    *out = ap__agg_i64(a->sum_lo);
    return AP_OK;
}

AP_API int64_t ap_agg_sum_sat(const ap_agg *a)
{
    int64_t s;
    if (ap_agg_sum(a, &s) == AP_OK)
        return s;
    return a->sum_hi < 0 ? INT64_MIN : INT64_MAX;
}

AP_API ap_status ap_agg_min(const ap_agg *a, int64_t *out)
{
    if (a->count == 0)
        return AP_EMPTY;
    *out = a->min;
    return AP_OK;
}

AP_API ap_status ap_agg_max(const ap_agg *a, int64_t *out)
{
    if (a->count == 0)
        return AP_EMPTY;
    *out = a->max;
    return AP_OK;
}

AP_API ap_status ap_agg_mean(const ap_agg *a, int64_t *quot, uint64_t *rem)
{
    if (a->count == 0)
        return AP_EMPTY;
    /* |sum| as an unsigned 128-bit (mh, ml), then binary long division by
     * count (core.h). |sum| <= count * 2^63, so mh < count: the quotient
     * fits 64 bits. */
    bool neg = a->sum_hi < 0;
    uint64_t mh = (uint64_t)a->sum_hi, ml = a->sum_lo;
    if (neg) { /* negate: ~x + 1 */
        ml = ~ml + 1;
        mh = ~mh + (ml == 0);
    }
    uint64_t d = a->count, r;
    AP_ASSERT(mh < d);
    uint64_t q = ap__div_128_64(mh, ml, d, &r);
    /* |sum| = q * d + r; floor for a negative sum: -(q + 1), d - r */
    if (!neg) {
        *quot = (int64_t)q;
        *rem = r;
    } else if (r == 0) {
        *quot = ap__agg_i64(0 - q);
        *rem = 0;
    } else {
        *quot = ap__agg_i64(0 - (q + 1));
        *rem = d - r;
    }
    return AP_OK;
}

/* ---- sliding window ---- */

AP_FORCE_INLINE int64_t ap__agg_slide_value(const ap_agg_slide *s, uint64_t seq)
{
    return s->ring[seq % s->capacity].value;
}

AP_FORCE_INLINE uint64_t ap__agg_dq_at(const ap_agg_slide *s, const ap__agg_deque *d, size_t i)
{
    return d->seq[(d->head + i) % s->capacity];
}

/* worse(which, old, new): old can never again be the answer once new is in */
AP_FORCE_INLINE bool ap__agg_worse(unsigned which, int64_t old, int64_t nw)
{
    return which == 0 ? old >= nw : old <= nw;
}

/* The configuration checks of init and create: false for AP_INVAL; else
 * *need = AP_AGG_SLIDE_BYTES(capacity), computed without overflow. */
AP_API bool ap__agg_slide_config_ok(ap_agg_slide_kind kind, uint64_t period_ns,
                                    size_t capacity, size_t *need)
{
    return capacity != 0 && (kind == AP_AGG_SLIDE_KIND_COUNT || kind == AP_AGG_SLIDE_KIND_TIME) &&
           !(kind == AP_AGG_SLIDE_KIND_TIME && period_ns == 0) &&
           ap__size_muladd(capacity, sizeof(ap__agg_entry) + 2 * sizeof(uint64_t), 0, need);
}

AP_API ap_status ap_agg_slide_init(ap_agg_slide *s, void *buf, size_t bytes,
                                   size_t capacity, const ap_agg_slide_desc *desc)
{
    AP_ASSERT(s != NULL);
    ap_agg_slide_kind kind = desc ? desc->kind : AP_AGG_SLIDE_KIND_COUNT;
    uint64_t period_ns = desc ? desc->period_ns : 0;
    size_t need;
    /* every check before the first write: AP_INVAL touches nothing */
    if (!ap__agg_slide_config_ok(kind, period_ns, capacity, &need) || bytes < need ||
        buf == NULL || (uintptr_t)buf % AP_AGG_SLIDE_ALIGN != 0)
        return AP_INVAL;
    memset(s, 0, sizeof *s);
    s->ring = (ap__agg_entry *)buf;
    s->dq[0].seq = (uint64_t *)(void *)(s->ring + capacity);
    s->dq[1].seq = s->dq[0].seq + capacity;
    s->capacity = capacity;
    s->kind = kind;
    s->period_ns = kind == AP_AGG_SLIDE_KIND_TIME ? period_ns : 0;
    return AP_OK;
}

AP_API void ap_agg_slide_fini(ap_agg_slide *s)
{
    AP_ASSERT(s != NULL && s->ring != NULL); /* live: fini once */
    s->ring = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_agg_slide_create(ap_agg_slide **out, size_t capacity,
                                     const ap_agg_slide_desc *desc, const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    ap_agg_slide_kind kind = desc ? desc->kind : AP_AGG_SLIDE_KIND_COUNT;
    uint64_t period_ns = desc ? desc->period_ns : 0;
    size_t hdr = ap__align_up(sizeof(ap_agg_slide), 16), total, need;
    AP_ASSERT(out != NULL);
    if (a == NULL || capacity > SIZE_MAX / 64 ||
        !ap__agg_slide_config_ok(kind, period_ns, capacity, &need) || need > SIZE_MAX - hdr)
        return AP_INVAL;
    total = hdr + need;
    unsigned char *mem = (unsigned char *)a->alloc(total, 16, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_agg_slide *s = (ap_agg_slide *)(void *)mem;
    ap_status st = ap_agg_slide_init(s, mem + hdr, need, capacity, desc);
    AP_ASSERT(st == AP_OK);
    (void)st;
    s->alloc = a;
    *out = s;
    return AP_OK;
}

AP_API void ap_agg_slide_destroy(ap_agg_slide *s)
{
    if (s == NULL)
        return;
    AP_ASSERT(s->alloc != NULL); /* only from ap_agg_slide_create */
    const ap_allocator *a = s->alloc;
    size_t total = ap__align_up(sizeof(ap_agg_slide), 16) +
                   s->capacity * (sizeof(ap__agg_entry) + 2 * sizeof(uint64_t));
    if (s->ring != NULL) /* fini may have run already */
        ap_agg_slide_fini(s);
    a->free(s, total, a->user);
}
#endif

/* Drop the oldest held value: out of the sum, and off each deque's front
 * if it is still there. */
AP_API void ap__agg_slide_evict(ap_agg_slide *s)
{
    uint64_t seq = s->first++;
    ap__agg_sub128(&s->sum.sum_hi, &s->sum.sum_lo, ap__agg_slide_value(s, seq));
    s->sum.count--;
    for (unsigned w = 0; w < 2; w++) {
        ap__agg_deque *d = &s->dq[w];
        if (d->len > 0 && ap__agg_dq_at(s, d, 0) == seq) {
            d->head = (d->head + 1) % s->capacity;
            d->len--;
            d->ops++;
        }
    }
}

AP_API size_t ap_agg_slide_advance(ap_agg_slide *s, uint64_t now)
{
    AP_ASSERT(s != NULL && s->ring != NULL);
    size_t n = 0;
    if (s->kind != AP_AGG_SLIDE_KIND_TIME || now <= s->newest_ts)
        return 0; /* COUNT, or no time passed: nothing leaves */
    s->newest_ts = now; /* later pushes may not go behind this */
    if (now < s->period_ns)
        return 0; /* nothing can be older than now - period < 0 */
    uint64_t cut = now - s->period_ns; /* evict ts <= cut */
    while (s->first != s->next && s->ring[s->first % s->capacity].ts <= cut) {
        ap__agg_slide_evict(s);
        n++;
    }
    return n;
}

AP_API ap_status ap_agg_slide_push(ap_agg_slide *s, uint64_t ts, int64_t value)
{
    AP_ASSERT(s != NULL && s->ring != NULL);
    size_t held = (size_t)(s->next - s->first);
    if (s->kind == AP_AGG_SLIDE_KIND_TIME) {
        if (ts < s->newest_ts) /* behind a push or an advance (0 at first) */
            return AP_INVAL;
        /* would the window still be full after evicting? check first:
         * nothing changes on AP_FULL */
        if (held == s->capacity && !(ts >= s->period_ns &&
                                     s->ring[s->first % s->capacity].ts <= ts - s->period_ns))
            return AP_FULL;
        (void)ap_agg_slide_advance(s, ts);
    } else if (held == s->capacity) {
        ap__agg_slide_evict(s);
    }
    uint64_t seq = s->next++;
    s->ring[seq % s->capacity] = AP__LIT(ap__agg_entry){ts, value};
    s->sum.count++;
    ap__agg_add128(&s->sum.sum_hi, &s->sum.sum_lo, value);
    for (unsigned w = 0; w < 2; w++) {
        ap__agg_deque *d = &s->dq[w];
        while (d->len > 0 &&
               ap__agg_worse(w, ap__agg_slide_value(s, ap__agg_dq_at(s, d, d->len - 1)), value)) {
            d->len--;
            d->ops++;
        }
        d->seq[(d->head + d->len) % s->capacity] = seq;
        d->len++;
        d->ops++;
    }
    s->pushed++;
    s->newest_ts = ts;
    return AP_OK;
}

AP_API void ap_agg_slide_read(const ap_agg_slide *s, ap_agg *out)
{
    AP_ASSERT(s != NULL && s->ring != NULL && out != NULL);
    *out = s->sum;
    if (s->sum.count > 0) {
        out->min = ap__agg_slide_value(s, ap__agg_dq_at(s, &s->dq[0], 0));
        out->max = ap__agg_slide_value(s, ap__agg_dq_at(s, &s->dq[1], 0));
    }
}

AP_API size_t ap_agg_slide_len(const ap_agg_slide *s)
{
    return (size_t)(s->next - s->first);
}

AP_API uint64_t ap_agg_slide_ops(const ap_agg_slide *s, unsigned which)
{
    AP_ASSERT(which < 2);
    return s->dq[which].ops;
}

#endif /* ASYNCPAT_AGGREGATE_H */
