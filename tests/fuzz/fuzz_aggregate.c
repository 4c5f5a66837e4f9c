/* tests/fuzz/fuzz_aggregate.c -- libFuzzer harness for asyncpat/aggregate.h
 *
 * Input: a sliding-aggregate configuration (kind, period, capacity: any
 * values, for the AP_INVAL paths), then a valid one (COUNT or TIME, capacity
 * 1..64 or up to 512 now and then, any period > 0) and a sequence of ap_agg
 * adds / merges (self-merge included) / synthetic "n copies of v" aggregates
 * with counts near 2^64, and sliding pushes / advances at decoded times
 * (time may go backwards), checked after every step against brute force:
 *   - init/create: AP_INVAL exactly for capacity 0, an unknown kind, period
 *     0 for TIME, sizes that overflow (create: capacity > SIZE_MAX / 64),
 *     and (init) a NULL, misaligned or too small buffer (decoded size and
 *     offset), and then *s / *out and the buffer untouched and nothing
 *     allocated
 *   - ap_agg after any adds and merges equals a 128-bit model: count, the
 *     exact sum (sum_hi:sum_lo), min, max; ap_agg_sum is AP_OK exactly when
 *     the sum fits an int64_t (else AP_INVAL, out untouched); ap_agg_sum_sat
 *     clamps; ap_agg_mean is the exact floor mean with 0 <= rem < count and
 *     min <= quot <= max; min/max/mean of nothing are AP_EMPTY (outs
 *     untouched); a merge whose count would overflow is AP_INVAL and leaves
 *     the aggregate unchanged
 *   - ap_agg_slide after every push/advance equals a brute-force recount of
 *     the values its window holds (COUNT: the last capacity values; TIME:
 *     timestamps > latest - period, latest = the newest push or advance,
 *     with advance evicting ts <= now - period;
 *     pushes aimed at the eviction boundary of the oldest value +- 1),
 *     len and the evicted count too
 *   - TIME push: AP_INVAL for a timestamp before latest (also behind an
 *     advance: issue #11), AP_FULL when
 *     capacity values remain after eviction; both change nothing (the whole
 *     struct and its buffer compare equal)
 *   - ap_agg_slide_ops(s, i) <= 2 * values pushed, for both deques
 */
#include "asyncpat/aggregate.h"
#include "fuzz_common.h"

typedef __int128 i128;

/* ---- ap_agg model ---- */
typedef struct magg {
    uint64_t count;
    i128 sum;
    int64_t min, max;
} magg;

static i128 agg_sum128(const ap_agg *a)
{
    return (i128)(((unsigned __int128)(uint64_t)a->sum_hi << 64) | a->sum_lo);
}

static void m_add(magg *m, int64_t v)
{
    if (m->count == 0 || v < m->min) m->min = v;
    if (m->count == 0 || v > m->max) m->max = v;
    m->count++;
    m->sum += v;
}

/* floor(a / b), b > 0 */
static i128 floordiv(i128 a, i128 b)
{
    i128 q = a / b;
    if (a % b != 0 && a < 0) q--;
    return q;
}

static void check_agg(const ap_agg *a, const magg *m)
{
    FZ_CHECK(ap_agg_count(a) == m->count);
    FZ_CHECK(agg_sum128(a) == m->sum);
    int64_t o = 0x5A5A, q = 0x5A5A;
    uint64_t r = 0xA5A5;
    if (m->count == 0) {
        FZ_CHECK(ap_agg_min(a, &o) == AP_EMPTY && o == 0x5A5A);
        FZ_CHECK(ap_agg_max(a, &o) == AP_EMPTY && o == 0x5A5A);
        FZ_CHECK(ap_agg_mean(a, &q, &r) == AP_EMPTY && q == 0x5A5A && r == 0xA5A5);
    } else {
        FZ_CHECK(ap_agg_min(a, &o) == AP_OK && o == m->min);
        FZ_CHECK(ap_agg_max(a, &o) == AP_OK && o == m->max);
        FZ_CHECK(ap_agg_mean(a, &q, &r) == AP_OK);
        i128 eq = floordiv(m->sum, (i128)m->count);
        i128 er = m->sum - eq * (i128)m->count;
        FZ_CHECK(er >= 0 && er < (i128)m->count);
        FZ_CHECK((i128)q == eq && (i128)r == er);
        FZ_CHECK(q >= m->min && q <= m->max);
    }
    o = 0x5A5A;
    if (m->sum >= INT64_MIN && m->sum <= INT64_MAX) {
        FZ_CHECK(ap_agg_sum(a, &o) == AP_OK && (i128)o == m->sum);
        FZ_CHECK(ap_agg_sum_sat(a) == o);
    } else {
        FZ_CHECK(ap_agg_sum(a, &o) == AP_INVAL && o == 0x5A5A);
        FZ_CHECK(ap_agg_sum_sat(a) == (m->sum < 0 ? INT64_MIN : INT64_MAX));
    }
}

static int64_t fz_i64(fz *f) { return (int64_t)fz_val(f); }

#define NA 4
#define CAPMAX 512

/* ---- sliding model ---- */
typedef struct ment { uint64_t ts; int64_t v; } ment;
static ment held[CAPMAX + 1];
static size_t nheld;

static void check_slide(const ap_agg_slide *s, uint64_t pushed)
{
    magg m = {0};
    for (size_t i = 0; i < nheld; i++) m_add(&m, held[i].v);
    ap_agg a;
    fz_fill(&a, sizeof a);
    ap_agg_slide_read(s, &a);
    FZ_CHECK(ap_agg_slide_len(s) == nheld);
    FZ_CHECK(a.count == m.count && agg_sum128(&a) == m.sum);
    if (m.count) FZ_CHECK(a.min == m.min && a.max == m.max);
    check_agg(&a, &m);
    for (unsigned w = 0; w < 2; w++) FZ_CHECK(ap_agg_slide_ops(s, w) <= 2 * pushed);
}

static _Alignas(AP_AGG_SLIDE_ALIGN) unsigned char slbuf[AP_AGG_SLIDE_BYTES(CAPMAX)];
static unsigned char slbuf0[AP_AGG_SLIDE_BYTES(CAPMAX)];

static void check_inval(fz *f)
{
    uint8_t k = fz_u8(f);
    ap_agg_slide_kind kind = (ap_agg_slide_kind)(k < 0xF0 ? k & 1 : k);
    uint64_t period = (fz_u8(f) & 3) ? fz_val(f) : 0;
    size_t cap = (fz_u8(f) & 1) ? fz_size(f) : fz_u8(f) % (CAPMAX + 1);
    int bad = cap == 0 || (kind != AP_AGG_SLIDE_KIND_COUNT && kind != AP_AGG_SLIDE_KIND_TIME) ||
              (kind == AP_AGG_SLIDE_KIND_TIME && period == 0) || cap > SIZE_MAX / 32;
    /* the buffer: its size, offset (alignment) and NULL decoded too */
    uint8_t b = fz_u8(f);
    size_t off = (b & 1) ? fz_u8(f) % 32 : 0;
    size_t bytes = (b & 2) ? fz_size(f) : sizeof slbuf - off;
    if (bytes > sizeof slbuf - off) bytes = sizeof slbuf - off;
    unsigned char *buf = (b & 4) && (b & 8) ? NULL : slbuf + off;
    int badbuf = buf == NULL || off % AP_AGG_SLIDE_ALIGN != 0 || cap > SIZE_MAX / 32 ||
                 bytes < AP_AGG_SLIDE_BYTES(cap);
    ap_agg_slide s;
    fz_fill(&s, sizeof s);
    fz_fill(slbuf, sizeof slbuf);
    ap_status ist = ap_agg_slide_init(&s, buf, bytes, cap, &(ap_agg_slide_desc){kind, period});
    if (bad || badbuf) {
        FZ_CHECK(ist == AP_INVAL);
        FZ_CHECK(fz_untouched(&s, sizeof s) && fz_untouched(slbuf, sizeof slbuf));
    } else {
        FZ_CHECK(ist == AP_OK);
        FZ_CHECK(ap_agg_slide_len(&s) == 0);
        FZ_CHECK(fz_untouched(slbuf + off + AP_AGG_SLIDE_BYTES(cap),
                              sizeof slbuf - off - AP_AGG_SLIDE_BYTES(cap)));
        ap_agg_slide_fini(&s);
    }
    ap_agg_slide *o;
    fz_fill(&o, sizeof o);
    int before = allocs;
    ap_status st = ap_agg_slide_create(&o, cap, &(ap_agg_slide_desc){kind, period}, &fz_allocator);
    if (bad || cap > SIZE_MAX / 64) {
        FZ_CHECK(st == AP_INVAL && allocs == before);
    } else if (cap * 32 + 256 > ((size_t)1 << 20)) {
        /* 1 MiB refused by fz_alloc (the header is < 256 bytes) */
        if (cap * 32 > ((size_t)1 << 20)) FZ_CHECK(st == AP_NOMEM);
    } else {
        FZ_CHECK(st == AP_OK);
    }
    if (st == AP_OK) {
        FZ_CHECK(ap_agg_slide_len(o) == 0);
        FZ_CHECK(ap_agg_slide_push(o, 1, -1) == AP_OK && ap_agg_slide_len(o) == 1);
        ap_agg_slide_destroy(o);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_INVAL || st == AP_NOMEM);
        FZ_CHECK(fz_untouched(&o, sizeof o));
        allocs = before;
    }
}

static uint64_t fz_time(fz *f, uint64_t prev)
{
    uint8_t k = fz_u8(f);
    switch (k & 7) {
    case 0: case 1: return prev + fz_u8(f);
    case 2: return prev;
    case 3: return prev + fz_u32(f);
    case 4: return fz_val(f);
    case 5: return UINT64_MAX - fz_u8(f);
    default: return prev > 0 && (k & 8) ? prev - 1 - fz_u8(f) % prev : prev + (k >> 4);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);

    /* a valid sliding aggregate */
    uint8_t c = fz_u8(&f);
    ap_agg_slide_kind kind = (c & 1) ? AP_AGG_SLIDE_KIND_TIME : AP_AGG_SLIDE_KIND_COUNT;
    size_t cap = (c & 0xE0) == 0xE0 ? 1 + fz_u16(&f) % CAPMAX : 1 + (c >> 1) % 16;
    uint64_t period = fz_val(&f);
    if (period == 0) period = 1 + fz_u8(&f);
    ap_agg_slide s;
    FZ_CHECK(ap_agg_slide_init(&s, slbuf, sizeof slbuf, cap, &(ap_agg_slide_desc){kind, period}) == AP_OK);
    nheld = 0;
    uint64_t pushed = 0, latest = 0, now = 0; /* latest: newest push or advance */

    ap_agg a[NA];
    magg m[NA];
    memset(a, 0, sizeof a);
    memset(m, 0, sizeof m);

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        int i = (op >> 4) & (NA - 1), j = (op >> 6) & (NA - 1);
        switch (op % 8) {
        case 0: { /* add */
            int64_t v = fz_i64(&f);
            if (m[i].count == UINT64_MAX) break; /* asserted precondition */
            ap_agg_add(&a[i], v);
            m_add(&m[i], v);
            break;
        }
        case 1: { /* merge j into i (i == j: self) */
            ap_agg a0 = a[i];
            ap_agg b0 = a[j];
            ap_status st = ap_agg_merge(&a[i], &a[j]);
            if (m[j].count == 0) {
                FZ_CHECK(st == AP_OK && memcmp(&a0, &a[i], sizeof a0) == 0);
            } else if (m[i].count > UINT64_MAX - m[j].count) {
                FZ_CHECK(st == AP_INVAL && memcmp(&a0, &a[i], sizeof a0) == 0);
            } else {
                FZ_CHECK(st == AP_OK);
                magg mj = m[j];
                if (m[i].count == 0 || mj.min < m[i].min) m[i].min = mj.min;
                if (m[i].count == 0 || mj.max > m[i].max) m[i].max = mj.max;
                m[i].count += mj.count;
                m[i].sum += mj.sum;
            }
            if (i != j) FZ_CHECK(memcmp(&b0, &a[j], sizeof b0) == 0);
            break;
        }
        case 2: { /* a synthetic aggregate: n copies of v (n near 2^64 too) */
            uint64_t n = fz_val(&f);
            int64_t v = fz_i64(&f);
            if (op & 8) {
                memset(&a[i], 0, sizeof a[i]);
                m[i] = (magg){0};
                break;
            }
            if (n == 0) n = 1;
            m[i] = (magg){n, (i128)n * v, v, v};
            unsigned __int128 u = (unsigned __int128)m[i].sum;
            a[i] = (ap_agg){n, (uint64_t)u, (int64_t)(uint64_t)(u >> 64), v, v};
            break;
        }
        case 3: case 4: case 5: { /* slide push */
            uint64_t ts = fz_time(&f, now);
            if ((op & 0x80) && nheld) { /* the eviction boundary of the oldest */
                unsigned __int128 b = (unsigned __int128)held[0].ts + period;
                b += (op >> 5) & 1;
                b -= b > 0 && (op & 8);
                ts = b > UINT64_MAX ? UINT64_MAX : (uint64_t)b;
            }
            int64_t v = fz_i64(&f);
            memcpy(slbuf0, slbuf, sizeof slbuf);
            ap_agg_slide s0 = s;
            ap_status st = ap_agg_slide_push(&s, ts, v);
            if (kind == AP_AGG_SLIDE_KIND_COUNT) {
                FZ_CHECK(st == AP_OK);
                if (nheld == cap) memmove(held, held + 1, --nheld * sizeof *held);
                held[nheld++] = (ment){ts, v};
            } else if (ts < latest) {
                FZ_CHECK(st == AP_INVAL);
            } else {
                size_t keep = 0;
                for (size_t x = 0; x < nheld; x++) /* ts_x > ts - period */
                    if ((unsigned __int128)held[x].ts + period > ts) keep++;
                if (keep == cap) {
                    FZ_CHECK(st == AP_FULL);
                } else {
                    FZ_CHECK(st == AP_OK);
                    memmove(held, held + (nheld - keep), keep * sizeof *held);
                    nheld = keep;
                    held[nheld++] = (ment){ts, v};
                }
            }
            if (st == AP_OK) {
                pushed++;
                latest = ts;
                now = ts;
            } else {
                FZ_CHECK(memcmp(&s0, &s, sizeof s) == 0);
                FZ_CHECK(memcmp(slbuf0, slbuf, sizeof slbuf) == 0);
            }
            check_slide(&s, pushed);
            break;
        }
        case 6: { /* slide advance */
            uint64_t t = fz_time(&f, now);
            size_t n = ap_agg_slide_advance(&s, t);
            size_t e = 0;
            if (kind == AP_AGG_SLIDE_KIND_TIME && t >= period) {
                while (e < nheld && held[e].ts <= t - period) e++;
                memmove(held, held + e, (nheld - e) * sizeof *held);
                nheld -= e;
            }
            FZ_CHECK(n == e);
            if (kind == AP_AGG_SLIDE_KIND_TIME && t > latest) latest = t;
            if (t > now) now = t;
            check_slide(&s, pushed);
            break;
        }
        default: /* read everything */
            check_slide(&s, pushed);
            break;
        }
        for (int x = 0; x < NA; x++) check_agg(&a[x], &m[x]);
    }
    ap_agg_slide_fini(&s);
    return 0;
}
