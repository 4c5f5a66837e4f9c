/* tests/fuzz/fuzz_token_bucket.c -- libFuzzer harness for asyncpat/token_bucket.h
 *
 * Input: a desc (n, period_ns, burst: any 64-bit values, zero and extreme
 * included) and a sequence of try_acquire / available / reserve /
 * cancel_reservation / keyed try_acquire at decoded times (time may go
 * backwards for the single bucket). Checks:
 *   - init: AP_INVAL exactly for n 0, burst 0, n > period (period 0 = 1 s),
 *     burst > 2^64-2, and then *tb untouched; same for keyed init/create,
 *     and keyed init with a decoded buffer size and misalignment: AP_INVAL
 *     exactly when the buffer is too small or misaligned (or the capacity
 *     0), limiter and buffer untouched
 *   - try_acquire and available equal an exact 128-bit GCRA model
 *     (V(t) = floor(t*n/period); admit iff max(C,V)+m <= V+burst), and
 *     retry_at is exactly the earliest instant the request would succeed
 *     (AP_EMPTY: not now; AP_REJECTED only when that instant is past the
 *     clock, retry_at AP_DEADLINE_NONE)
 *   - reserve equals the model: AP_OK with the exact ready_at, or
 *     AP_REJECTED exactly when C would overflow or the ready instant is
 *     not below 2^64 - 1 (and not now)
 *   - cancel gives back all (C == res.end) or nothing (issue #11)
 *   - the theorem: tokens admitted (acquires, plus reservations not
 *     cancelled whose ready_at <= t) <= burst + floor(n*t/period) at
 *     t = the latest time seen, and at the end of the input in every
 *     window (s, t] <= burst + V(t) - V(s), by brute force
 *   - failures leave the bucket and the out-params untouched
 *   - keyed: per-key model; AP_FULL only when every slot holds another
 *     active key
 */
#include "asyncpat/token_bucket.h"
#include "fuzz_common.h"

typedef unsigned __int128 u128;
static uint64_t M_n, M_p, M_burst;

static uint64_t V(uint64_t t) { return (uint64_t)((u128)t * M_n / M_p); }

/* model try_acquire on state *c; returns 1 admit, 0 reject (*when set) */
static int model_acquire(uint64_t *c, uint64_t m, uint64_t t, uint64_t *when)
{
    uint64_t v = V(t);
    uint64_t base = *c > v ? *c : v;
    if ((u128)base + m > (u128)UINT64_MAX - 1) {
        /* C cannot represent it (ARITHMETIC: sums past 2^64-2 are
         * refused): never within range */
        *when = UINT64_MAX;
        return 0;
    }
    if ((u128)base + m <= (u128)v + M_burst) {
        *c = base + m;
        return 1;
    }
    /* earliest t' with V(t') >= c + m - burst: ceil(k * p / n) */
    u128 k = (u128)*c + m - M_burst;
    u128 tp = (k * M_p + M_n - 1) / M_n;
    *when = tp >= (u128)UINT64_MAX ? UINT64_MAX : (uint64_t)tp;
    return 0;
}

static uint64_t model_available(uint64_t c, uint64_t t)
{
    uint64_t v = V(t), base = c > v ? c : v;
    return base - v >= M_burst ? 0 : M_burst - (base - v);
}

static uint64_t fz_time(fz *f, uint64_t prev)
{
    uint8_t k = fz_u8(f);
    switch (k & 3) {
    case 0: return prev + fz_u8(f);
    case 1: return prev + fz_u32(f);
    case 2: return fz_val(f);
    default: return prev > 0 && (k & 4) ? prev - 1 - fz_u8(f) % prev : prev;
    }
}


#define NRES 32
#define NKEYS 24
#define NGRANT 4096

typedef struct { uint64_t at, tokens; } grant;
static grant G[NGRANT];
static size_t NG;
static grant U[NGRANT]; /* reservations made while res[] was full */
static size_t NU;
static void grant_add(uint64_t at, uint64_t tokens)
{
    if (NG < NGRANT) G[NG++] = (grant){at, tokens};
}
static int grant_cmp(const void *a, const void *b)
{
    uint64_t x = ((const grant *)a)->at, y = ((const grant *)b)->at;
    return x < y ? -1 : x > y;
}
/* every window (s, t]: for the grants in [a, b] the tightest window is
 * (a - 1, b], so all pairs of usable instants cover all windows */
static void check_windows(void)
{
    qsort(G, NG, sizeof *G, grant_cmp);
    for (size_t i = 0; i < NG; i++) {
        if (i > 0 && G[i].at == G[i - 1].at) continue;
        uint64_t a = G[i].at, va = a == 0 ? 0 : V(a - 1);
        u128 sum = 0;
        for (size_t j = i; j < NG; j++) {
            sum += G[j].tokens;
            if (j + 1 < NG && G[j + 1].at == G[j].at) continue;
            FZ_CHECK(sum <= (u128)M_burst + V(G[j].at) - va);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    ap_tb_desc d = {.n = fz_val(&f), .period_ns = fz_val(&f), .burst = fz_val(&f)};
    uint64_t per = d.period_ns ? d.period_ns : 1000000000u;
    int bad = d.n == 0 || d.burst == 0 || d.n > per || d.burst > UINT64_MAX - 1;
    ap_tb tb;
    fz_fill(&tb, sizeof tb);
    ap_status st = ap_tb_init(&tb, &d);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&tb, sizeof tb));
    } else {
        FZ_CHECK(st == AP_OK);
    }
    /* keyed init / create with a decoded capacity (also huge) */
    {
        size_t kcap = fz_size(&f);
        ap_tb_keyed *ko;
        fz_fill(&ko, sizeof ko);
        int before = allocs;
        ap_status ks = ap_tb_keyed_create(&ko, kcap, &d, &fz_allocator);
        if (bad || kcap == 0) {
            FZ_CHECK(ks == AP_INVAL);
            FZ_CHECK(allocs == before);
        }
        if (ks == AP_OK) {
            FZ_CHECK(ap_tb_keyed_capacity(ko) == kcap && ap_tb_keyed_len(ko) == 0);
            ap_tb_keyed_destroy(ko);
            FZ_CHECK(allocs == before);
        } else {
            FZ_CHECK(ks == AP_INVAL || ks == AP_NOMEM);
            FZ_CHECK(fz_untouched(&ko, sizeof ko));
            allocs = before;
        }
    }
    if (bad) return 0;
    M_n = d.n; M_p = per; M_burst = d.burst;

    size_t kcap = 1 + fz_u8(&f) % 16;
    static _Alignas(AP_TB_KEYED_ALIGN) unsigned char kbuf[AP_TB_KEYED_BYTES(16) + 64];
    ap_tb_keyed kt;
    {   /* a decoded buffer size and offset: AP_INVAL exactly when too
         * small or misaligned, and then nothing is touched */
        uint8_t sel = fz_u8(&f);
        size_t off = (sel & 1) ? fz_u8(&f) % 32 : 0;
        size_t kbytes = (sel & 2) ? fz_size(&f) : sizeof kbuf - off;
        if (kbytes > sizeof kbuf - off) kbytes = sizeof kbuf - off;
        fz_fill(&kt, sizeof kt);
        fz_fill(kbuf, sizeof kbuf);
        int kbad = kbytes < AP_TB_KEYED_BYTES(kcap) || off % AP_TB_KEYED_ALIGN != 0;
        st = ap_tb_keyed_init(&kt, (sel & 4) ? NULL : kbuf + off, kbytes, kcap, &d);
        if (kbad || (sel & 4)) {
            FZ_CHECK(st == AP_INVAL);
            FZ_CHECK(fz_untouched(&kt, sizeof kt) && fz_untouched(kbuf, sizeof kbuf));
        } else {
            FZ_CHECK(st == AP_OK);
            FZ_CHECK(fz_untouched(kbuf + off + AP_TB_KEYED_BYTES(kcap),
                                  sizeof kbuf - off - AP_TB_KEYED_BYTES(kcap)));
            ap_tb_keyed_fini(&kt);
        }
    }
    FZ_CHECK(ap_tb_keyed_init(&kt, kbuf, sizeof kbuf, kcap, &d) == AP_OK);
    NG = 0;
    NU = 0;
    uint64_t kc[NKEYS] = {0}; /* model per key (0 == full at any t) */
    uint64_t know = 0;

    uint64_t C = 0, tmax = 0, now = 0;
    u128 admitted = 0;
    ap_tb_reservation res[NRES];
    int nres = 0;

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        now = fz_time(&f, now);
        if (now > tmax) tmax = now;
        uint64_t m;
        switch (op % 6) {
        case 0: case 1: { /* try_acquire */
            m = (op & 0x80) ? fz_val(&f) : fz_u8(&f) % (M_burst < 255 ? M_burst + 2 : 257);
            uint64_t ra = 0xDEADBEEF, when = 0, c2 = C;
            uint64_t tat0 = tb.tat;
            st = ap_tb_try_acquire(&tb, m, now, &ra);
            if (m > M_burst) {
                FZ_CHECK(st == AP_INVAL && ra == 0xDEADBEEF && tb.tat == tat0);
            } else if (m == 0) {
                FZ_CHECK(st == AP_OK && ra == 0xDEADBEEF && tb.tat == tat0);
            } else if (model_acquire(&c2, m, now, &when)) {
                FZ_CHECK(st == AP_OK && ra == 0xDEADBEEF);
                C = c2;
                admitted += m;
                grant_add(now, m);
            } else {
                /* not now: AP_EMPTY; never within the clock: AP_REJECTED */
                FZ_CHECK(st == AP_EMPTY || (st == AP_REJECTED && when == UINT64_MAX));
                FZ_CHECK(tb.tat == tat0);
                if (ra <= now) fprintf(stderr, "n=%llu p=%llu burst=%llu C=%llu m=%llu now=%llu ra=%llu when=%llu\n", (unsigned long long)M_n, (unsigned long long)M_p, (unsigned long long)M_burst, (unsigned long long)C, (unsigned long long)m, (unsigned long long)now, (unsigned long long)ra, (unsigned long long)when);
                FZ_CHECK(ra > now || (ra == UINT64_MAX && when == UINT64_MAX));
                if (ra != when) fprintf(stderr, "n=%llu p=%llu burst=%llu C=%llu m=%llu now=%llu ra=%llu when=%llu\n", (unsigned long long)M_n, (unsigned long long)M_p, (unsigned long long)M_burst, (unsigned long long)C, (unsigned long long)m, (unsigned long long)now, (unsigned long long)ra, (unsigned long long)when);
                FZ_CHECK(ra == when);
            }
            FZ_CHECK(tb.tat == C);
            break;
        }
        case 2: /* available */
            FZ_CHECK(ap_tb_available(&tb, now) == model_available(C, now));
            break;
        case 3: { /* reserve */
            m = (op & 0x80) ? fz_val(&f) : fz_u8(&f) % (M_burst < 255 ? M_burst + 2 : 257);
            ap_tb_reservation r;
            fz_fill(&r, sizeof r);
            uint64_t c2 = C, when;
            int now_ok = m <= M_burst && m > 0 && model_acquire(&c2, m, now, &when);
            st = ap_tb_reserve(&tb, m, now, &r);
            /* the model's reservation: base + m, ready when base + m <=
             * V + burst; refused past C's range or when the instant is not
             * representable below AP_DEADLINE_NONE (and not now) */
            if (m > 0 && m <= M_burst) {
                uint64_t v = V(now), base = C > v ? C : v;
                int want_ok = 0;
                uint64_t want_at = now;
                if ((u128)base + m <= (u128)UINT64_MAX - 1) {
                    if ((u128)base + m <= (u128)v + M_burst) {
                        want_ok = 1;
                    } else {
                        u128 k = (u128)base + m - M_burst;
                        u128 tp = (k * M_p + M_n - 1) / M_n;
                        want_ok = tp < (u128)UINT64_MAX;
                        want_at = (uint64_t)tp;
                    }
                }
                FZ_CHECK(st == (want_ok ? AP_OK : AP_REJECTED));
                if (want_ok) FZ_CHECK(r.ready_at == want_at && r.end == base + m);
            }
            if (m > M_burst) {
                FZ_CHECK(st == AP_INVAL && fz_untouched(&r, sizeof r) && tb.tat == C);
            } else if (st == AP_OK) {
                FZ_CHECK(r.tokens == m && r.ready_at >= now);
                if (now_ok) FZ_CHECK(r.ready_at == now && tb.tat == c2);
                if (m) {
                    FZ_CHECK(tb.tat > C || (now_ok && tb.tat == c2));
                    FZ_CHECK(r.ready_at != now || now_ok);
                }
                C = tb.tat;
                if (m && nres < NRES) res[nres++] = r;
                else if (m) { /* untracked: never cancelled, counts from its ready_at */
                    grant_add(r.ready_at, m);
                    if (NU < NGRANT) U[NU++] = (grant){r.ready_at, m};
                }
            } else if (st == AP_REJECTED && now_ok && now == UINT64_MAX) {
                /* known: at now_ns == UINT64_MAX (== AP_DEADLINE_NONE) a
                 * reserve that is due now is refused as "ready beyond the
                 * clock's range" while try_acquire admits it (reported) */
                FZ_CHECK(tb.tat == C && fz_untouched(&r, sizeof r));
            } else {
                if (now_ok) fprintf(stderr, "reserve: n=%llu p=%llu burst=%llu C=%llu m=%llu now=%llu st=%d\n", (unsigned long long)M_n, (unsigned long long)M_p, (unsigned long long)M_burst, (unsigned long long)C, (unsigned long long)m, (unsigned long long)now, (int)st);
                FZ_CHECK(st == AP_REJECTED && !now_ok && tb.tat == C);
                FZ_CHECK(fz_untouched(&r, sizeof r));
            }
            break;
        }
        case 4: { /* cancel a reservation */
            if (!nres) break;
            int i = fz_u8(&f) % nres;
            ap_tb_reservation r0 = res[i];
            uint64_t got = ap_tb_cancel_reservation(&tb, &res[i], now);
            if (r0.tokens && now < r0.ready_at) {
                /* all back iff nothing was stacked on it (C == its end) */
                int tail = C == r0.end;
                FZ_CHECK(res[i].tokens == 0 && got == (tail ? r0.tokens : 0));
                FZ_CHECK(tb.tat == (tail ? C - r0.tokens : C));
            } else {
                FZ_CHECK(got == 0 && tb.tat == C && res[i].tokens == r0.tokens);
            }
            C = tb.tat;
            FZ_CHECK(ap_tb_cancel_reservation(&tb, &res[i], now) == 0 && tb.tat == C);
            if (res[i].tokens == 0) /* cancelled: it no longer counts */
                res[i] = res[--nres];
            break;
        }
        default: { /* keyed, monotone time */
            if (now < know) now = know;
            know = now;
            int key = fz_u8(&f) % NKEYS;
            m = fz_u8(&f) % (M_burst < 255 ? M_burst + 2 : 257);
            uint64_t ra = 0xDEADBEEF, when = 0, c2 = kc[key];
            uint64_t v = V(now);
            size_t active_others = 0;
            for (int k = 0; k < NKEYS; k++)
                if (k != key && kc[k] > v) active_others++;
            FZ_CHECK(active_others <= kcap);
            st = ap_tb_keyed_try_acquire(&kt, (uint64_t)key * 0x9E3779B97F4A7C15u, m, now, &ra);
            if (m > M_burst) { FZ_CHECK(st == AP_INVAL && ra == 0xDEADBEEF); break; }
            if (m == 0) { FZ_CHECK(st == AP_OK && ra == 0xDEADBEEF); break; }
            if (st == AP_FULL) {
                FZ_CHECK(active_others == kcap && kc[key] <= v && ra == 0xDEADBEEF);
                break;
            }
            if (model_acquire(&c2, m, now, &when)) {
                FZ_CHECK(st == AP_OK && ra == 0xDEADBEEF);
                kc[key] = c2;
            } else {
                if (!((st == AP_EMPTY || st == AP_REJECTED) && ra == when && ra > now)) fprintf(stderr, "keyed: n=%llu p=%llu burst=%llu kc=%llu m=%llu now=%llu st=%d ra=%llu when=%llu\n", (unsigned long long)M_n, (unsigned long long)M_p, (unsigned long long)M_burst, (unsigned long long)kc[key], (unsigned long long)m, (unsigned long long)now, (int)st, (unsigned long long)ra, (unsigned long long)when);
                FZ_CHECK((st == AP_EMPTY || (st == AP_REJECTED && when == UINT64_MAX)) &&
                         ra == when && (ra > now || ra == UINT64_MAX));
            }
            if (ap_tb_keyed_len(&kt) > kcap) fprintf(stderr, "keyed_len=%zu cap=%zu used=%zu n=%llu p=%llu burst=%llu now=%llu st=%d\n", ap_tb_keyed_len(&kt), kcap, kt.used, (unsigned long long)M_n, (unsigned long long)M_p, (unsigned long long)M_burst, (unsigned long long)now, (int)st);
            FZ_CHECK(ap_tb_keyed_len(&kt) <= kcap);
            break;
        }
        }
        /* the theorem at the latest time seen */
        u128 adm = admitted;
        for (int i = 0; i < nres; i++)
            if (res[i].ready_at <= tmax) adm += res[i].tokens;
        for (size_t i = 0; i < NU; i++)
            if (U[i].at <= tmax) adm += U[i].tokens;
        FZ_CHECK(adm <= (u128)M_burst + V(tmax));
    }
    for (int i = 0; i < nres; i++)
        grant_add(res[i].ready_at, res[i].tokens);
    check_windows();
    ap_tb_keyed_fini(&kt);
    ap_tb_fini(&tb);
    return 0;
}
