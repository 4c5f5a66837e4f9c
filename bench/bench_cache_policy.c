/*
 * bench/bench_cache_policy.c -- miss ratios of eviction policies on
 * generated traces (a simulation: no timing, deterministic, seeded)
 *
 * Policies (capacity C entries, one entry per key):
 *   sieve      asyncpat's ap_cache with 1 shard (exact SIEVE, Zhang et al.,
 *              NSDI 2024), driven through its API: get, put on a miss
 *   sieve_s16  ap_cache with 16 shards (SIEVE per shard of C/16)
 *   lru        least recently used (a list and a hash map)
 *   s3fifo     S3-FIFO (Yang et al., SOSP 2023): a small FIFO of C/10, a
 *              main FIFO with 2-bit frequencies and reinsertion, a ghost
 *              FIFO of main's size; a new key goes to main if its ghost is
 *              there, else to small; small's tail moves to main if it was
 *              hit while in small, else its key goes to the ghost
 *   wtinylfu   W-TinyLFU as in Caffeine (Einziger, Friedman, Manes, 2017):
 *              an LRU window of C/100, a segmented LRU main (probation,
 *              protected = 80% of main), a count-min sketch of 4-bit
 *              counters (4 rows, halved every 10 C accesses); the window's
 *              LRU candidate enters main iff its estimated frequency is
 *              above that of main's victim (probation's LRU). No hill
 *              climbing of the window size, no doorkeeper.
 *   belady     the offline optimum (Belady's MIN with bypass): on a miss
 *              with a full cache, evict the resident (or skip the new key)
 *              whose next use is farthest in the future
 * Traces (1M accesses each; keys are 64-bit hashes of ranks):
 *   zipf06, zipf08, zipf10, zipf12   Zipf(alpha) over 100000 keys
 *   zipf10_scan   Zipf(1.0) with one-hit scans: every 50000 accesses a run
 *                 of 10000 keys never seen before or again (~17% of accesses)
 *   loop          a cyclic loop over 50000 keys (larger than every cache)
 *   shift         Zipf(1.0) over 100000 keys whose popular set moves: the
 *                 ranks are offset by 20000 every 200000 accesses
 * Cache sizes: 0.1%, 1% and 10% of the trace's distinct keys.
 *
 * Output: a table on stdout, and TSV lines
 *   cache_miss_<trace>_<size>.<policy> <TAB> miss_ratio <TAB> <percent> <TAB> %
 * appended to argv[1] when given. BENCH_ONLY filters on "cache_miss".
 * Self-checks (exit 2): belady's misses <= every policy's; the sieve
 * cache's own stats equal the simulation's (hits + misses == accesses);
 * len <= capacity for every policy at the end.
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/bench_cache_policy.c -pthread
 * (no libm: x^-a is computed here)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "asyncpat/cache.h"
#include "bench.h"


#define TRACE_LEN 1000000u
#define ZIPF_KEYS 100000u
#define NPOL 6

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

/* ---- a hash map uint64 -> int32 (linear probing, backward-shift delete) ---- */

typedef struct hm {
    uint64_t *k; /* key + 1; 0 = empty */
    int32_t *v;
    size_t mask;
} hm;

static void hm_init(hm *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap <<= 1;
    m->k = calloc(cap, sizeof *m->k);
    m->v = calloc(cap, sizeof *m->v);
    if (!m->k || !m->v)
        bench_fail("out of memory");
    m->mask = cap - 1;
}
static void hm_free(hm *m) { free(m->k); free(m->v); }
static size_t hm_slot(const hm *m, uint64_t key)
{
    size_t i = (size_t)mix(key) & m->mask;
    while (m->k[i] != 0 && m->k[i] != key + 1)
        i = (i + 1) & m->mask;
    return i;
}
static int32_t hm_get(const hm *m, uint64_t key)
{
    size_t i = hm_slot(m, key);
    return m->k[i] ? m->v[i] : -1;
}
static void hm_put(hm *m, uint64_t key, int32_t v)
{
    size_t i = hm_slot(m, key);
    m->k[i] = key + 1;
    m->v[i] = v;
}
static void hm_del(hm *m, uint64_t key)
{
    size_t i = hm_slot(m, key);
    if (!m->k[i])
        return;
    m->k[i] = 0;
    for (size_t j = (i + 1) & m->mask; m->k[j]; j = (j + 1) & m->mask) {
        size_t home = (size_t)mix(m->k[j] - 1) & m->mask;
        /* move j back to i if home is not in (i, j] cyclically */
        if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
            m->k[i] = m->k[j];
            m->v[i] = m->v[j];
            m->k[j] = 0;
            i = j;
        }
    }
}

/* ---- doubly linked lists over a node pool ---- */

typedef struct node {
    uint64_t key;
    int32_t prev, next; /* toward head (MRU) / tail (LRU) */
    uint8_t list, freq;
} node;

typedef struct dl {
    int32_t head, tail;
    size_t n;
} dl;

static void dl_push_head(node *p, dl *l, int32_t i)
{
    p[i].prev = -1;
    p[i].next = l->head;
    if (l->head >= 0)
        p[l->head].prev = i;
    else
        l->tail = i;
    l->head = i;
    l->n++;
}
static void dl_remove(node *p, dl *l, int32_t i)
{
    if (p[i].prev >= 0)
        p[p[i].prev].next = p[i].next;
    else
        l->head = p[i].next;
    if (p[i].next >= 0)
        p[p[i].next].prev = p[i].prev;
    else
        l->tail = p[i].prev;
    l->n--;
}

/* ---- policies: each returns the number of misses on the trace ---- */

typedef struct trace {
    const char *name;
    uint64_t *keys;
    size_t len, distinct;
    int32_t *next_use; /* for belady: index of the key's next access, or INT32_MAX */
} trace;

static uint64_t run_lru(const trace *t, size_t cap, size_t *len_out)
{
    node *p = calloc(cap, sizeof *p);
    hm m;
    hm_init(&m, cap);
    dl l = {-1, -1, 0};
    int32_t used = 0;
    uint64_t misses = 0;
    for (size_t a = 0; a < t->len; a++) {
        uint64_t k = t->keys[a];
        int32_t i = hm_get(&m, k);
        if (i >= 0) {
            dl_remove(p, &l, i);
            dl_push_head(p, &l, i);
            continue;
        }
        misses++;
        if ((size_t)used < cap) {
            i = used++;
        } else {
            i = l.tail;
            dl_remove(p, &l, i);
            hm_del(&m, p[i].key);
        }
        p[i].key = k;
        hm_put(&m, k, i);
        dl_push_head(p, &l, i);
    }
    *len_out = l.n;
    free(p);
    hm_free(&m);
    return misses;
}

static uint64_t run_sieve(const trace *t, size_t cap, size_t shards, size_t *len_out)
{
    ap_cache *c = NULL;
    ap_cache_desc d = {.capacity = cap, .shards = shards, .value_size = 0};
    if (ap_cache_create(&c, &d, NULL) != AP_OK)
        bench_fail("ap_cache_create(%zu, %zu)", cap, shards);
    uint64_t misses = 0;
    for (size_t a = 0; a < t->len; a++) {
        if (ap_cache_get(c, t->keys[a], NULL) != AP_OK) {
            misses++;
            ap_cache_put(c, t->keys[a], NULL, NULL);
        }
    }
    ap_cache_stats st;
    ap_cache_stats_get(c, &st);
    if (st.misses != misses || st.hits + st.misses != t->len)
        bench_fail("ap_cache stats: hits %llu misses %llu, simulation %llu of %zu",
                   (unsigned long long)st.hits, (unsigned long long)st.misses,
                   (unsigned long long)misses, t->len);
    *len_out = ap_cache_len(c);
    ap_cache_destroy(c);
    return misses;
}

/* S3-FIFO. Rings of keys: small (S), main (M), ghost (G). */
typedef struct ring {
    uint64_t *k;
    size_t cap, head, n; /* pop at head, push at (head + n) */
} ring;
static void ring_init(ring *r, size_t cap)
{
    r->k = malloc((cap + 1) * sizeof *r->k);
    r->cap = cap + 1;
    r->head = r->n = 0;
}
static void ring_push(ring *r, uint64_t k)
{
    if (r->n == r->cap)
        bench_fail("ring overflow");
    r->k[(r->head + r->n++) % r->cap] = k;
}
static uint64_t ring_pop(ring *r)
{
    uint64_t k = r->k[r->head];
    r->head = (r->head + 1) % r->cap;
    r->n--;
    return k;
}

static uint64_t run_s3fifo(const trace *t, size_t cap, size_t *len_out)
{
    size_t scap = cap / 10 ? cap / 10 : 1, mcap = cap > scap ? cap - scap : 1;
    ring S, M, G;
    ring_init(&S, cap + 1);
    ring_init(&M, cap + 1);
    ring_init(&G, mcap + 1);
    hm where; /* resident key -> freq (0..3) | 4 if in M */
    hm ghost; /* ghost key -> its sequence number in G */
    hm_init(&where, cap + 1);
    hm_init(&ghost, mcap + 1);
    uint64_t misses = 0, gseq = 0;
    uint64_t *gs = malloc((mcap + 2) * sizeof *gs); /* seq of each ghost ring slot */
    for (size_t a = 0; a < t->len; a++) {
        uint64_t k = t->keys[a];
        int32_t w = hm_get(&where, k);
        if (w >= 0) {
            if ((w & 3) < 3)
                hm_put(&where, k, w + 1);
            continue;
        }
        misses++;
        while (S.n + M.n >= cap) {
            if (S.n >= scap || M.n == 0) { /* evict from S */
                uint64_t x = ring_pop(&S);
                int32_t xw = hm_get(&where, x);
                if ((xw & 3) >= 1) { /* hit while in S: to M */
                    hm_put(&where, x, 4);
                    ring_push(&M, x);
                } else {
                    hm_del(&where, x);
                    if (G.n == mcap) { /* the ghost FIFO is full: drop its oldest */
                        size_t slot = G.head;
                        uint64_t gk = ring_pop(&G);
                        if ((uint64_t)hm_get(&ghost, gk) == gs[slot] && hm_get(&ghost, gk) >= 0)
                            hm_del(&ghost, gk);
                    }
                    size_t slot = (G.head + G.n) % G.cap;
                    gs[slot] = (uint32_t)++gseq & 0x7fffffff;
                    ring_push(&G, x);
                    hm_put(&ghost, x, (int32_t)gs[slot]);
                }
            } else { /* evict from M: reinsert while its frequency is > 0 */
                uint64_t x = ring_pop(&M);
                int32_t xw = hm_get(&where, x);
                if ((xw & 3) > 0) {
                    hm_put(&where, x, 4 | ((xw & 3) - 1));
                    ring_push(&M, x);
                } else {
                    hm_del(&where, x);
                }
            }
        }
        if (hm_get(&ghost, k) >= 0) { /* seen recently: straight to M */
            hm_del(&ghost, k);
            hm_put(&where, k, 4);
            ring_push(&M, k);
        } else {
            hm_put(&where, k, 0);
            ring_push(&S, k);
        }
    }
    *len_out = S.n + M.n;
    free(S.k); free(M.k); free(G.k); free(gs);
    hm_free(&where); hm_free(&ghost);
    return misses;
}

/* W-TinyLFU. */
typedef struct cms {
    uint8_t *c; /* 4 rows x width counters, 0..15 */
    size_t width, adds, sample;
} cms;
static void cms_init(cms *s, size_t cap)
{
    s->width = 16;
    while (s->width < cap)
        s->width <<= 1;
    s->c = calloc(4 * s->width, 1);
    s->adds = 0;
    s->sample = 10 * cap;
}
static unsigned cms_est(const cms *s, uint64_t k)
{
    unsigned m = 15;
    uint64_t h = mix(k ^ 0x5bd1e995u);
    for (int r = 0; r < 4; r++) {
        unsigned v = s->c[r * s->width + ((h >> (16 * r)) & (s->width - 1))];
        if (v < m)
            m = v;
    }
    return m;
}
static void cms_add(cms *s, uint64_t k)
{
    uint64_t h = mix(k ^ 0x5bd1e995u);
    for (int r = 0; r < 4; r++) {
        uint8_t *x = &s->c[r * s->width + ((h >> (16 * r)) & (s->width - 1))];
        if (*x < 15)
            (*x)++;
    }
    if (++s->adds >= s->sample) { /* aging: halve every counter */
        for (size_t i = 0; i < 4 * s->width; i++)
            s->c[i] >>= 1;
        s->adds /= 2;
    }
}

enum { L_WINDOW = 1, L_PROB, L_PROT };

static uint64_t run_wtinylfu(const trace *t, size_t cap, size_t *len_out)
{
    size_t wcap = cap / 100 ? cap / 100 : 1;
    size_t mcap = cap > wcap ? cap - wcap : 0;
    size_t pcap = mcap * 8 / 10;
    node *p = calloc(cap + 1, sizeof *p);
    int32_t *freel = malloc((cap + 1) * sizeof *freel);
    size_t nfree = 0;
    for (size_t i = cap + 1; i-- > 0;)
        freel[nfree++] = (int32_t)i;
    hm m;
    hm_init(&m, cap + 1);
    dl W = {-1, -1, 0}, P = {-1, -1, 0}, R = {-1, -1, 0};
    cms s;
    cms_init(&s, cap);
    uint64_t misses = 0;
    for (size_t a = 0; a < t->len; a++) {
        uint64_t k = t->keys[a];
        cms_add(&s, k);
        int32_t i = hm_get(&m, k);
        if (i >= 0) {
            if (p[i].list == L_WINDOW) {
                dl_remove(p, &W, i);
                dl_push_head(p, &W, i);
            } else if (p[i].list == L_PROB) {
                dl_remove(p, &P, i);
                p[i].list = L_PROT;
                dl_push_head(p, &R, i);
                if (R.n > pcap) { /* demote protected's LRU */
                    int32_t d = R.tail;
                    dl_remove(p, &R, d);
                    p[d].list = L_PROB;
                    dl_push_head(p, &P, d);
                }
            } else {
                dl_remove(p, &R, i);
                dl_push_head(p, &R, i);
            }
            continue;
        }
        misses++;
        i = freel[--nfree];
        p[i].key = k;
        p[i].list = L_WINDOW;
        hm_put(&m, k, i);
        dl_push_head(p, &W, i);
        if (W.n <= wcap)
            continue;
        int32_t cand = W.tail;
        dl_remove(p, &W, cand);
        if (P.n + R.n < mcap) {
            p[cand].list = L_PROB;
            dl_push_head(p, &P, cand);
            continue;
        }
        int32_t vict = P.n ? P.tail : R.tail;
        if (vict < 0 || cms_est(&s, p[cand].key) > cms_est(&s, p[vict].key)) {
            if (vict >= 0) {
                dl_remove(p, p[vict].list == L_PROB ? &P : &R, vict);
                hm_del(&m, p[vict].key);
                freel[nfree++] = vict;
            }
            p[cand].list = L_PROB;
            dl_push_head(p, &P, cand);
        } else {
            hm_del(&m, p[cand].key);
            freel[nfree++] = cand;
        }
    }
    *len_out = W.n + P.n + R.n;
    free(p); free(freel); free(s.c);
    hm_free(&m);
    return misses;
}

/* Belady's MIN with bypass: a max-heap of (next use, key) with lazy
 * deletion (an entry is current iff the key's recorded next use matches). */
typedef struct hent {
    int32_t next;
    int32_t idx; /* access index whose key it is */
} hent;

static void heap_push(hent *h, size_t *n, hent e)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].next < e.next) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}
static hent heap_pop(hent *h, size_t *n)
{
    hent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].next > h[c].next)
            c++;
        if (h[c].next <= last.next)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static uint64_t run_belady(const trace *t, size_t cap, size_t *len_out)
{
    hm cur; /* resident key -> its next use */
    hm_init(&cur, cap + 1);
    hent *h = malloc((t->len + 1) * sizeof *h);
    size_t hn = 0, used = 0;
    uint64_t misses = 0;
    for (size_t a = 0; a < t->len; a++) {
        uint64_t k = t->keys[a];
        int32_t nx = t->next_use[a];
        if (hm_get(&cur, k) >= 0) {
            hm_put(&cur, k, nx);
            heap_push(h, &hn, (hent){nx, (int32_t)a});
            continue;
        }
        misses++;
        if (nx == INT32_MAX)
            continue; /* never used again: bypass */
        if (used == cap) {
            hent v;
            for (;;) { /* the resident whose next use is farthest */
                v = heap_pop(h, &hn);
                if (hm_get(&cur, t->keys[v.idx]) == v.next)
                    break;
            }
            if (v.next < nx) { /* the new key is farther still: bypass it */
                heap_push(h, &hn, v);
                continue;
            }
            hm_del(&cur, t->keys[v.idx]);
            used--;
        }
        hm_put(&cur, k, nx);
        heap_push(h, &hn, (hent){nx, (int32_t)a});
        used++;
    }
    *len_out = used;
    free(h);
    hm_free(&cur);
    return misses;
}

/* ---- traces ---- */

static uint64_t rng_state = 42;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005u + 1442695040888963407u;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* x^-a for x >= 1 without libm (the bench links with -pthread only):
 * exp(-a ln x), ln by the atanh series, exp by Taylor after halving. */
static double ln_(double x)
{
    double e = 0;
    while (x >= 2) {
        x /= 2;
        e += 1;
    }
    double y = (x - 1) / (x + 1), y2 = y * y, term = y, sum = 0;
    for (int k = 1; k < 60; k += 2, term *= y2)
        sum += term / k;
    return 2 * sum + e * 0.69314718055994530942;
}
static double exp_(double x) /* x <= 0 */
{
    int halvings = 0;
    while (x < -0.5) {
        x /= 2;
        halvings++;
    }
    double sum = 1, term = 1;
    for (int k = 1; k < 30; k++)
        sum += (term *= x / k);
    while (halvings-- > 0)
        sum *= sum;
    return sum;
}
static double pow_neg(double x, double a) { return exp_(-a * ln_(x)); }

/* Zipf(alpha) ranks 0..n-1 by inverting a precomputed CDF. */
typedef struct zipf {
    double *cdf;
    size_t n;
} zipf;
static void zipf_init(zipf *z, size_t n, double alpha)
{
    z->cdf = malloc(n * sizeof *z->cdf);
    z->n = n;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        z->cdf[i] = (s += pow_neg((double)(i + 1), alpha));
    for (size_t i = 0; i < n; i++)
        z->cdf[i] /= s;
}
static size_t zipf_draw(const zipf *z)
{
    double u = urand();
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void finish_trace(trace *t)
{
    hm seen;
    hm_init(&seen, t->len);
    t->next_use = malloc(t->len * sizeof *t->next_use);
    t->distinct = 0;
    for (size_t a = t->len; a-- > 0;) {
        int32_t nx = hm_get(&seen, t->keys[a]);
        if (nx < 0)
            t->distinct++;
        t->next_use[a] = nx < 0 ? INT32_MAX : nx;
        hm_put(&seen, t->keys[a], (int32_t)a);
    }
    hm_free(&seen);
}

static trace make_trace(const char *name, int kind, double alpha)
{
    trace t = {name, malloc(TRACE_LEN * sizeof(uint64_t)), TRACE_LEN, 0, NULL};
    zipf z = {NULL, 0};
    if (kind != 2)
        zipf_init(&z, ZIPF_KEYS, alpha);
    uint64_t fresh = 1ull << 40; /* one-hit keys */
    for (size_t a = 0; a < t.len; a++) {
        switch (kind) {
        case 0: /* zipf */
            t.keys[a] = mix(zipf_draw(&z));
            break;
        case 1: /* zipf with scans */
            if (a % 50000 < 10000 && a >= 50000)
                t.keys[a] = mix(fresh++);
            else
                t.keys[a] = mix(zipf_draw(&z));
            break;
        case 2: /* loop */
            t.keys[a] = mix(a % 50000);
            break;
        default: /* shifting zipf */
            t.keys[a] = mix(zipf_draw(&z) + 20000 * (a / 200000));
            break;
        }
    }
    free(z.cdf);
    finish_trace(&t);
    return t;
}

int main(int argc, char **argv)
{
    bench_config cfg = bench_start(argc, argv, "bench_cache_policy");
    if (cfg.only && !strstr("cache_miss", cfg.only) && !strstr(cfg.only, "cache_miss"))
        return 0;
    static const char *pol[NPOL] = {"sieve", "sieve_s16", "lru", "s3fifo", "wtinylfu", "belady"};
    static const struct { const char *name; int kind; double alpha; } tr[] = {
        {"zipf06", 0, 0.6}, {"zipf08", 0, 0.8}, {"zipf10", 0, 1.0}, {"zipf12", 0, 1.2},
        {"zipf10_scan", 1, 1.0}, {"loop", 2, 0}, {"shift", 3, 1.0},
    };
    static const struct { const char *name; double frac; } sz[] = {
        {"0p1pct", 0.001}, {"1pct", 0.01}, {"10pct", 0.1}};
    uint64_t t0 = bench_now_ns();
    printf("\ncache_miss: miss ratio %% (lower is better) of 1M accesses; cache = %% of distinct keys\n");
    printf("%-12s %-7s %7s", "trace", "size", "cap");
    for (int p = 0; p < NPOL; p++)
        printf(" %9s", pol[p]);
    printf("\n");
    double sum[NPOL] = {0};
    int rows = 0;
    for (size_t i = 0; i < sizeof tr / sizeof tr[0]; i++) {
        rng_state = 42 + i;
        trace t = make_trace(tr[i].name, tr[i].kind, tr[i].alpha);
        for (size_t j = 0; j < sizeof sz / sizeof sz[0]; j++) {
            size_t cap = (size_t)((double)t.distinct * sz[j].frac + 0.5);
            if (cap < 16)
                cap = 16;
            uint64_t miss[NPOL];
            size_t len[NPOL];
            miss[0] = run_sieve(&t, cap, 1, &len[0]);
            miss[1] = run_sieve(&t, cap, 16, &len[1]);
            miss[2] = run_lru(&t, cap, &len[2]);
            miss[3] = run_s3fifo(&t, cap, &len[3]);
            miss[4] = run_wtinylfu(&t, cap, &len[4]);
            miss[5] = run_belady(&t, cap, &len[5]);
            printf("%-12s %-7s %7zu", t.name, sz[j].name, cap);
            for (int p = 0; p < NPOL; p++) {
                if (len[p] > cap)
                    bench_fail("%s holds %zu > capacity %zu", pol[p], len[p], cap);
                if (miss[5] > miss[p])
                    bench_fail("belady (%llu misses) worse than %s (%llu) on %s/%s",
                               (unsigned long long)miss[5], pol[p],
                               (unsigned long long)miss[p], t.name, sz[j].name);
                double r = 100.0 * (double)miss[p] / (double)t.len;
                sum[p] += r;
                printf(" %9.2f", r);
                if (cfg.tsv)
                    fprintf(cfg.tsv, "cache_miss_%s_%s.%s\tmiss_ratio\t%.3f\t%%\n", t.name,
                            sz[j].name, pol[p], r);
            }
            printf("\n");
            rows++;
        }
        free(t.keys);
        free(t.next_use);
    }
    printf("%-12s %-7s %7s", "mean", "", "");
    for (int p = 0; p < NPOL; p++)
        printf(" %9.2f", sum[p] / rows);
    printf("\ncache_miss: %d rows in %.1f s\n", rows, (double)(bench_now_ns() - t0) / 1e9);
    if (cfg.tsv)
        fclose(cfg.tsv);
    return 0;
}
