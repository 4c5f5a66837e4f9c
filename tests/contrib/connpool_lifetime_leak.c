/*
 * tests/contrib/connpool_lifetime_leak.c -- connpool's jittered lifetime and
 * leak detection (issue #13 item 4), on a fake clock, no server needed.
 * Built twice by tests/servers.sh: with -DAP_DEBUG (call sites reported)
 * and without (file NULL, line 0). Prints "connpool_lifetime_leak: ok".
 */
#include "asyncpat/connpool.h"

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

enum { N = 64 };
static int opens, closes;
static ap_status t_open(void *ctx, void *c, int *e)
{
    (void)ctx, (void)e;
    *(int *)c = ++opens;
    return AP_OK;
}
static void t_close(void *ctx, void *c)
{
    (void)ctx, (void)c;
    closes++;
}
static AP_ALIGNAS(max_align_t) unsigned char buf[AP_CONNPOOL_BYTES(N, sizeof(int))];

/* the reference: splitmix64 as published (Steele, Lea, Flood 2014) */
static uint64_t sm_state;
static uint64_t sm_next(void)
{
    uint64_t z = (sm_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Open N connections at t = 0, return them idle, then evict just before
 * and at each expected expiry: exactly the expected ones close. Returns
 * the number of distinct expiry instants. */
static size_t jitter_run(uint64_t life, unsigned pct, uint64_t seed)
{
    ap_connpool cp;
    ap_connpool_desc d = {.max_size = N, .conn_size = sizeof(int), .max_lifetime_ns = life,
                          .lifetime_jitter_pct = pct, .jitter_seed = seed};
    ap_connpool_ops ops = {t_open, t_close, NULL, NULL};
    CHECK(ap_connpool_init(&cp, buf, sizeof buf, &d, &ops) == AP_OK);
    void *c[N];
    opens = closes = 0;
    for (int i = 0; i < N; i++)
        CHECK(ap_connpool_try_checkout(&cp, &c[i], 0, NULL) == AP_OK);
    for (int i = 0; i < N; i++)
        CHECK(ap_connpool_return(&cp, c[i], false, 0) == AP_OK);
    uint64_t cutmax = life / 100 * pct + life % 100 * pct / 100, L[N];
    if (cutmax >= life)
        cutmax = life - 1;
    sm_state = seed;
    for (int i = 0; i < N; i++)
        L[i] = life - (cutmax ? sm_next() % (cutmax + 1) : 0);
    qsort(L, N, sizeof L[0], cmp_u64);
    size_t distinct = 0, gone = 0;
    for (int i = 0; i < N; i++) {
        if (i > 0 && L[i] == L[i - 1])
            continue;
        distinct++;
        CHECK(L[i] >= life - cutmax && L[i] <= life && L[i] >= 1);
        CHECK(ap_connpool_evict(&cp, L[i] - 1) == 0); /* none early */
        size_t due = 0;
        for (int j = i; j < N && L[j] == L[i]; j++)
            due++;
        CHECK(ap_connpool_evict(&cp, L[i]) == due); /* exactly these, at L */
        gone += due;
    }
    CHECK(gone == N && closes == N && opens == N);
    ap_connpool_fini(&cp);
    return distinct;
}

struct seen {
    int calls;
    ap_connpool_leak last;
};
static void on_leak(void *ctx, const ap_connpool_leak *l)
{
    struct seen *s = ctx;
    s->calls++;
    s->last = *l;
}

int main(void)
{
    /* jitter: spread, exact against the reference, seed-determined */
    CHECK(jitter_run(1000000, 0, 1) == 1);         /* no jitter: all at once */
    size_t a = jitter_run(1000000, 20, 42);
    CHECK(a >= N / 2);                             /* spread over many instants */
    CHECK(jitter_run(1000000, 20, 42) == a);       /* same seed, same schedule */
    CHECK(jitter_run(1000000, 100, 7) >= N / 2);   /* up to 100%: still >= 1 ns */
    CHECK(jitter_run(3, 100, 9) <= 3);             /* tiny lifetimes stay in [1, 3] */

    /* bad input: AP_INVAL, nothing written */
    ap_connpool cp;
    ap_connpool_ops ops = {t_open, t_close, NULL, NULL};
    ap_connpool_desc bad = {.max_size = 2, .conn_size = sizeof(int), .max_lifetime_ns = 10,
                            .lifetime_jitter_pct = 101};
    CHECK(ap_connpool_init(&cp, buf, sizeof buf, &bad, &ops) == AP_INVAL);
    bad.lifetime_jitter_pct = 5;
    bad.max_lifetime_ns = 0;
    CHECK(ap_connpool_init(&cp, buf, sizeof buf, &bad, &ops) == AP_INVAL);
    bad.lifetime_jitter_pct = 0;
    bad.leak_threshold_ns = 5;
    CHECK(ap_connpool_init(&cp, buf, sizeof buf, &bad, &ops) == AP_INVAL);

    /* leak detection: once per lending, at the threshold, with the site */
    struct seen s = {0};
    ap_connpool_desc d = {.max_size = 2, .conn_size = sizeof(int), .leak_threshold_ns = 100,
                          .on_leak = on_leak, .leak_ctx = &s};
    CHECK(ap_connpool_init(&cp, buf, sizeof buf, &d, &ops) == AP_OK);
    void *c1, *c2;
    int site_line = __LINE__ + 1;
    CHECK(AP_CONNPOOL_TRY_CHECKOUT(&cp, &c1, 0, NULL) == AP_OK);
    CHECK(ap_connpool_try_checkout(&cp, &c2, 50, NULL) == AP_OK); /* no site */
    CHECK(ap_connpool_leak_check(&cp, 99) == 0 && s.calls == 0);
    CHECK(ap_connpool_leak_check(&cp, 100) == 1 && s.calls == 1);
    CHECK(s.last.conn == c1 && s.last.lent_ns == 0 && s.last.held_ns == 100);
#ifdef AP_DEBUG
    CHECK(s.last.file != NULL && s.last.line == site_line);
#else
    CHECK(s.last.file == NULL && s.last.line == 0);
    (void)site_line;
#endif
    CHECK(ap_connpool_leak_check(&cp, 149) == 0);              /* c1 reported once */
    CHECK(ap_connpool_leak_check(&cp, 150) == 1 && s.last.conn == c2 && s.last.file == NULL);
    CHECK(ap_connpool_return(&cp, c1, false, 300) == AP_OK);
    CHECK(ap_connpool_leak_check(&cp, 1000) == 0);             /* c2 already, c1 idle */
    void *c3;
    CHECK(ap_connpool_try_checkout(&cp, &c3, 1000, NULL) == AP_OK && c3 == c1);
    CHECK(ap_connpool_leak_check(&cp, 1099) == 0);             /* a new lending */
    CHECK(ap_connpool_leak_check(&cp, 1100) == 1 && s.last.conn == c1 &&
          s.last.lent_ns == 1000 && s.last.file == NULL);
    ap_connpool_stats st;
    ap_connpool_stats_get(&cp, &st);
    CHECK(st.leaks == 3 && s.calls == 3);
    CHECK(ap_connpool_return(&cp, c2, false, 2000) == AP_OK);
    CHECK(ap_connpool_return(&cp, c3, false, 2000) == AP_OK);
    ap_connpool_fini(&cp);
    printf("connpool_lifetime_leak: ok (jitter spread over %zu instants of %d)\n", a, N);
    return 0;
}
