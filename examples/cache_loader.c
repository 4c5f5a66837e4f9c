/*
 * examples/cache_loader.c -- a read-through cache with a TTL in front of a
 *                            slow backend (ap_cache get_or_load)
 *
 * The backend sleeps 1-2 ms per load and counts its calls per key; one key
 * (FAIL_KEY) always fails. Four threads ask for keys 0..KEYS-1 with Zipf
 * (s = 1) skew for RUN_MS through one ap_cache: expire_after_write = TTL,
 * negative_ttl_ns = NEG_TTL, misses loaded by ap_cache_get_or_load_wait
 * (single flight), and main calls ap_cache_maintain every 5 ms. Checked,
 * exactly (exit 1 on any failure):
 *   - the backend never sees two loads of one key at once (single flight)
 *   - every get returns its key's value from a load that had not expired
 *     when the get began, and never one older than the newest load of the
 *     key finished before it began (value = key, load generation, time)
 *   - FAIL_KEY: every get gets the backend's error, and no backend call
 *     starts within NEG_TTL of the failure before it (on ap_now_ns)
 *   - stats: hits + misses == gets, loads == backend calls, loads + joins
 *     + negative hits <= misses, inserts - evictions - expirations == len
 *   - TTL later with no traffic, one maintain reclaims every entry
 * Then, on a fake clock: three waiters of one failing load all get its
 * error; the failure answers a miss with no load at once (before those
 * waiters have read it) and at t + NEG_TTL - 1 ns, and loads again at
 * t + NEG_TTL; a loaded entry is a hit 1 ns before its TTL ends and a
 * miss at its end.
 */
#include "asyncpat.h" /* first: under -std=c11 it enables POSIX (nanosleep) */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { KEYS = 2048, CAP = 256, THREADS = 4, FAIL_KEY = 7, RUN_MS = 400 };
#define TTL (100 * AP_NS_PER_MS)    /* expire_after_write */
#define NEG_TTL (20 * AP_NS_PER_MS) /* a failed load is remembered this long */

typedef struct item { uint64_t key, gen, loaded_at; } item; /* the cached value */

static _Atomic uint64_t calls[KEYS], done_gen[KEYS], fail_done_at, bad;
static _Atomic int inflight[KEYS];
static double zipf_cdf[KEYS];
static uint64_t stop_at;
static ap_cache cache;
static AP_ALIGNAS(AP_CACHE_ALIGN) unsigned char mem[AP_CACHE_BYTES(CAP, 1, sizeof(item))];

static void fail(const char *what, uint64_t key)
{
    fprintf(stderr, "FAIL: %s (key %" PRIu64 ")\n", what, key);
    atomic_fetch_add(&bad, 1);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / AP_NS_PER_SEC), (long)(ns % AP_NS_PER_SEC)};
    nanosleep(&ts, NULL);
}

/* the slow backend: value (key, generation); FAIL_KEY is down */
static ap_status backend_fetch(uint64_t key, item *v)
{
    if (atomic_fetch_add(&inflight[key], 1) != 0)
        fail("two backend loads of one key at once", key);
    uint64_t failed_at = atomic_load(&fail_done_at);
    if (key == FAIL_KEY && failed_at != 0 && ap_now_ns() < failed_at + NEG_TTL)
        fail("a backend call within the negative TTL", key);
    v->key = key;
    v->gen = atomic_fetch_add(&calls[key], 1) + 1;
    sleep_ns(AP_NS_PER_MS + key % 2 * AP_NS_PER_MS);
    atomic_fetch_sub(&inflight[key], 1);
    return key == FAIL_KEY ? AP_REJECTED : AP_OK;
}

static void load(void *ctx, ap_cache *c, uint64_t key) /* once per miss burst */
{
    (void)ctx;
    item v;
    ap_status st = backend_fetch(key, &v); /* ~1-2 ms; AP_OK or its error */
    v.loaded_at = ap_now_ns();
    if (st != AP_OK) /* before the completion: the next load of key starts after it */
        atomic_store(&fail_done_at, v.loaded_at);
    if (ap_cache_load_complete(c, key, st, &v, v.loaded_at) != AP_OK) abort(); /* wakes every waiter */
    for (uint64_t g = atomic_load(&done_gen[key]); st == AP_OK && g < v.gen;)
        atomic_compare_exchange_weak(&done_gen[key], &g, v.gen); /* newest load finished */
}

static uint64_t zipf_key(uint64_t *r)
{
    *r ^= *r >> 12, *r ^= *r << 25, *r ^= *r >> 27; /* xorshift64* */
    double u = (double)((*r * 2685821657736338717u) >> 11) / 9007199254740992.0;
    size_t lo = 0, hi = KEYS - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (zipf_cdf[mid] <= u) lo = mid + 1; else hi = mid;
    }
    return lo;
}

typedef struct worker_arg { uint64_t gets, seed; } worker_arg;

static void *worker(void *arg)
{
    uint64_t *gets = &((worker_arg *)arg)->gets, r = ((worker_arg *)arg)->seed;
    while (ap_now_ns() < stop_at) {
        uint64_t key = zipf_key(&r), g0 = atomic_load(&done_gen[key]), t0 = ap_now_ns();
        item v;
        ap_status st = ap_cache_get_or_load_wait(&cache, key, &v, (ap_cache_loader){load, NULL}, AP_DEADLINE_NONE);
        ++*gets;
        if (key == FAIL_KEY) {
            if (st != AP_REJECTED) fail("the failing key did not get the backend's error", key);
        } else if (st != AP_OK || v.key != key || v.gen < g0 || v.gen > atomic_load(&calls[key])) {
            fail("a get did not return its key's newest loaded value", key);
        } else if (v.loaded_at + TTL <= t0 && v.gen == g0) { /* g0's load was done before t0: */
            /* so this was a hit at a now >= t0, past the entry's deadline */
            fail("a get returned a value whose TTL had ended", key); /* hard expiry */
        }
    }
    return NULL;
}

static uint64_t fake_ns;
static uint64_t fake_now(void *ctx) { (void)ctx; return fake_ns; }
static void count_load(void *ctx, ap_cache *c, uint64_t key) { (void)c, (void)key; ++*(int *)ctx; }

/* on a fake clock: the exact edges of the negative TTL and of the TTL */
static int exact_edges(void)
{
    static AP_ALIGNAS(AP_CACHE_ALIGN) unsigned char m2[AP_CACHE_BYTES(16, 1, sizeof(item))];
    ap_cache n;
    ap_cache_desc d = {.capacity = 16, .value_size = sizeof(item), .expire_after_write = TTL,
                       .negative_ttl_ns = NEG_TTL, .clock = {fake_now, NULL}};
    int started = 0, ok = 1;
    ap_cache_loader async_load = {count_load, &started}; /* completes later, by hand */
    ap_cache_load_fut f[4];
    item v[4], got, val = {FAIL_KEY, 1, 0};
    ap_cx cx = {AP_WAKER_NONE, fake_ns = 1000, AP_DEADLINE_NONE};
    if (ap_cache_init(&n, m2, sizeof m2, &d) != AP_OK) return 0;
    for (int i = 0; i < 3; i++) { /* three misses: one load, two joins */
        ap_cache_get_or_load(&f[i], &n, FAIL_KEY, &v[i], async_load);
        ok &= ap_cache_load_poll(&f[i], &cx) == AP_PENDING;
    }
    uint64_t t = fake_ns += 500; /* the load fails at t */
    ok &= started == 1 && ap_cache_load_complete(&n, FAIL_KEY, AP_REJECTED, NULL, t) == AP_OK;
    cx.now = t; /* a miss before the waiters have read the error: remembered already */
    ap_cache_get_or_load(&f[3], &n, FAIL_KEY, &v[3], async_load);
    if (!(ok &= ap_cache_load_poll(&f[3], &cx) == AP_READY && ap_cache_load_status(&f[3]) == AP_REJECTED))
        return 0; /* (it started a second load: stop here) */
    for (int i = 0; i < 3; i++)
        ok &= ap_cache_load_poll(&f[i], &cx) == AP_READY && ap_cache_load_status(&f[i]) == AP_REJECTED;
    cx.now = fake_ns = t + NEG_TTL - 1; /* remembered: the error, no load */
    ap_cache_get_or_load(&f[3], &n, FAIL_KEY, &v[3], async_load);
    ok &= ap_cache_load_poll(&f[3], &cx) == AP_READY && ap_cache_load_status(&f[3]) == AP_REJECTED;
    cx.now = fake_ns = t + NEG_TTL; /* forgotten: a load */
    ap_cache_get_or_load(&f[3], &n, FAIL_KEY, &v[3], async_load);
    ok &= ap_cache_load_poll(&f[3], &cx) == AP_PENDING && started == 2;
    val.loaded_at = fake_ns;
    ok &= ap_cache_load_complete(&n, FAIL_KEY, AP_OK, &val, fake_ns) == AP_OK;
    ok &= ap_cache_load_poll(&f[3], &cx) == AP_READY && ap_cache_load_status(&f[3]) == AP_OK && v[3].gen == 1;
    fake_ns = val.loaded_at + TTL - 1;
    ok &= ap_cache_get(&n, FAIL_KEY, &got) == AP_OK && got.loaded_at == val.loaded_at;
    fake_ns = val.loaded_at + TTL;
    ok &= ap_cache_get(&n, FAIL_KEY, &got) == AP_EMPTY;
    ap_cache_stats s;
    ap_cache_stats_get(&n, &s);
    ok &= s.loads == 2 && s.load_joins == 2 && s.load_failures == 1 && s.negative_hits == 2;
    ok &= ap_cache_maintain(&n, fake_ns) == 1 && ap_cache_len(&n) == 0;
    ap_cache_fini(&n);
    return ok;
}

int main(void)
{
    worker_arg w[THREADS];
    uint64_t total = 0, backend = 0, reclaimed = 0;
    double sum = 0; /* Zipf, s = 1: P(key k) = (1 / (k + 1)) / H(KEYS) */
    for (size_t k = 0; k < KEYS; k++)
        zipf_cdf[k] = sum += 1.0 / (double)(k + 1);
    for (size_t k = 0; k < KEYS; k++)
        zipf_cdf[k] /= sum;
    ap_cache_desc d = {.capacity = CAP, .value_size = sizeof(item),
                       .expire_after_write = TTL, .negative_ttl_ns = NEG_TTL};
    if (ap_cache_init(&cache, mem, sizeof mem, &d) != AP_OK) return 1;
    pthread_t th[THREADS];
    uint64_t t_start = ap_now_ns();
    stop_at = t_start + RUN_MS * AP_NS_PER_MS;
    for (int i = 0; i < THREADS; i++)
        if ((w[i] = (worker_arg){0, 0x9E3779B97F4A7C15u * (uint64_t)(i + 1)}, pthread_create(&th[i], NULL, worker, &w[i])))
            return 1;
    while (ap_now_ns() < stop_at) {
        sleep_ns(5 * AP_NS_PER_MS);
        reclaimed += ap_cache_maintain(&cache, ap_now_ns()); /* now and then: no thread of ours */
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    uint64_t t_end = ap_now_ns();
    for (int i = 0; i < THREADS; i++) total += w[i].gets;
    for (size_t k = 0; k < KEYS; k++) backend += atomic_load(&calls[k]);
    ap_cache_stats s;
    ap_cache_stats_get(&cache, &s);
    size_t held = ap_cache_len(&cache);
    printf("gets %" PRIu64 " (%.0f/s), hits %" PRIu64 ", misses %" PRIu64 ", loads %" PRIu64
           ", joins %" PRIu64 ", backend calls %" PRIu64 "\n", total,
           (double)total * 1e9 / (double)(t_end - t_start), s.hits, s.misses, s.loads,
           s.load_joins, backend);
    printf("failing key: backend calls %" PRIu64 ", failures %" PRIu64 ", negative hits %" PRIu64 "\n",
           atomic_load(&calls[FAIL_KEY]), s.load_failures, s.negative_hits);
    printf("held %zu, inserts %" PRIu64 ", evictions %" PRIu64 ", expirations %" PRIu64 "\n", held,
           s.inserts, s.evictions, s.expirations);
    if (s.hits + s.misses != total || s.loads != backend || s.load_failures != calls[FAIL_KEY] ||
        s.loads + s.load_joins + s.negative_hits > s.misses || s.expirations != reclaimed ||
        s.inserts - s.evictions - s.removes - s.expirations != held)
        fail("stats do not balance", 0);
    while (ap_now_ns() < t_end + TTL) sleep_ns(AP_NS_PER_MS); /* every entry's TTL ends */
    size_t gone = ap_cache_maintain(&cache, ap_now_ns());
    ap_cache_stats_get(&cache, &s);
    printf("after the TTL: maintain reclaimed %zu of %zu, len %zu, expirations %" PRIu64 "\n", gone,
           held, ap_cache_len(&cache), s.expirations);
    if (gone != held || ap_cache_len(&cache) != 0 || s.expirations != reclaimed + gone)
        fail("maintain did not reclaim exactly the expired entries", 0);
    ap_cache_fini(&cache);
    if (!exact_edges()) fail("fake clock: negative TTL or TTL edge not exact", FAIL_KEY);
    if (atomic_load(&bad)) return 1;
    puts("single flight, TTL, negative TTL and stats exact");
    return 0;
}
