/*
 * tests/stress/stress_cache.c -- ThreadSanitizer stress of the sharded SIEVE
 * cache: lock-free (seqlock) gets racing puts, updates, evictions, removes
 *
 * Workers (8 threads) loop over a small key space (a few times the
 * capacity, so evictions are constant) and pick: get into a buffer (55%),
 * get with out = NULL (5%), put (25%, with a victim buffer half the time),
 * remove (10%, with an out buffer half the time), len (5%).
 * Every value put for key k is
 *     w[0] = k, w[1] = ver = (worker << 40 | seq), w[i] = mix(k, ver, i)
 * for every further word, and every value read back (get, victim, remove)
 * must be whole: w[0] is the key it was read for, the mixed words agree
 * (no torn copy of two puts, no other key's value), and seq is below the
 * number of puts the writer had started, read after the get (the get must
 * happen-after the put whose value it returns; the counter is relaxed, so
 * only the cache's own release/acquire can make that hold).
 * Checked as well: len <= capacity at every look; at the end
 * hits + misses == gets, inserts + updates == puts, evictions == victims
 * reported, removes == removes that said AP_OK, and
 * inserts - evictions - removes == len == keys found by a final sweep.
 * Scenarios: (shards, capacity, value words) = (1, 1, 2), (1, 16, 3),
 * (4, 64, 4), (16, 256, 2) and (2, 32, 20) (20 words: the locked read path).
 */
#include "stress.h"
#include "asyncpat/cache.h"

#define WORKERS 8
#define MAXW 20

typedef struct cache_run {
    ap_cache *c;
    size_t cap, words, keys, iters;
    pthread_barrier_t start;
    _Atomic uint64_t started[WORKERS]; /* puts begun per worker, relaxed */
    _Atomic uint64_t gets, puts, victims, removed, ops;
} cache_run;

typedef struct cache_worker {
    cache_run *r;
    unsigned id;
    pthread_t thread;
    stress_rng rng;
} cache_worker;

static uint64_t word_of(uint64_t k, uint64_t ver, size_t i)
{
    return stress_mix64(k * 0x9E3779B97F4A7C15u ^ ver ^ ((uint64_t)i << 56));
}

static void make_value(uint64_t *w, size_t words, uint64_t k, uint64_t ver)
{
    w[0] = k;
    if (words > 1)
        w[1] = ver;
    for (size_t i = 2; i < words; i++)
        w[i] = word_of(k, ver, i);
}

/* A value read back for key k must be one put for k, whole, already begun. */
static void check_value(cache_run *r, const uint64_t *w, uint64_t k, const char *how, unsigned who)
{
    CHECK(w[0] == k, "worker %u: %s of key %" PRIu64 " returned key %" PRIu64 "'s value", who,
          how, k, w[0]);
    if (r->words < 2)
        return;
    uint64_t ver = w[1], wr = ver >> 40, seq = ver & ((UINT64_C(1) << 40) - 1);
    CHECK(wr < WORKERS, "worker %u: %s of key %" PRIu64 ": invented version %#" PRIx64, who, how,
          k, ver);
    for (size_t i = 2; i < r->words; i++)
        CHECK(w[i] == word_of(k, ver, i),
              "worker %u: %s of key %" PRIu64 ": TORN value, word %zu is %#" PRIx64
              " (expected %#" PRIx64 ")",
              who, how, k, i, w[i], word_of(k, ver, i));
    uint64_t begun = STRESS_LOAD(&r->started[wr]);
    CHECK(seq < begun,
          "worker %u: %s of key %" PRIu64 " saw put #%" PRIu64 " of worker %" PRIu64
          " which had begun only %" PRIu64 " (no happens-before from put to get)",
          who, how, k, seq, wr, begun);
}

static void *worker_main(void *arg)
{
    cache_worker *w = (cache_worker *)arg;
    cache_run *r = w->r;
    uint64_t buf[MAXW], vbuf[MAXW], gets = 0, puts = 0, victims = 0, removed = 0, seq = 0;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->iters; i++) {
        uint32_t pick = stress_below(&w->rng, 100);
        uint64_t k = stress_below(&w->rng, (uint32_t)r->keys);
        if (pick < 60) {
            bool want = pick < 55;
            gets++;
            ap_status st = ap_cache_get(r->c, k, want ? buf : NULL);
            CHECK(st == AP_OK || st == AP_EMPTY, "get: %s", ap_status_str(st));
            if (st == AP_OK && want)
                check_value(r, buf, k, "get", w->id);
        } else if (pick < 85) {
            /* count the put as begun before it can be seen (relaxed) */
            STRESS_STORE(&r->started[w->id], seq + 1);
            make_value(buf, r->words, k, (uint64_t)w->id << 40 | seq);
            seq++;
            ap_cache_victim vic = {stress_below(&w->rng, 2) ? vbuf : NULL, 0, false};
            ap_cache_put(r->c, k, buf, &vic); /* cannot fail */
            puts++;
            if (vic.evicted) {
                victims++;
                CHECK(vic.key != k, "put of %" PRIu64 " evicted itself", k);
                if (vic.value)
                    check_value(r, vbuf, vic.key, "victim", w->id);
            }
        } else if (pick < 95) {
            bool want = stress_below(&w->rng, 2);
            ap_status st = ap_cache_remove(r->c, k, want ? buf : NULL);
            CHECK(st == AP_OK || st == AP_EMPTY, "remove: %s", ap_status_str(st));
            if (st == AP_OK) {
                removed++;
                if (want)
                    check_value(r, buf, k, "remove", w->id);
            }
        } else {
            size_t n = ap_cache_len(r->c);
            CHECK(n <= r->cap, "len %zu > capacity %zu", n, r->cap);
        }
        if (stress_below(&w->rng, 64) == 0)
            stress_jitter(&w->rng);
        STRESS_ADD(&r->ops, 1);
    }
    STRESS_ADD(&r->gets, gets);
    STRESS_ADD(&r->puts, puts);
    STRESS_ADD(&r->victims, victims);
    STRESS_ADD(&r->removed, removed);
    return NULL;
}

static void cache_diag(void *arg)
{
    cache_run *r = (cache_run *)arg;
    ap_cache_stats st = ap_cache_stats_get(r->c);
    fprintf(stderr,
            "    ops %" PRIu64 ", len %zu/%zu, hits %" PRIu64 " misses %" PRIu64 " inserts %" PRIu64
            " updates %" PRIu64 " evictions %" PRIu64 " removes %" PRIu64 "\n",
            STRESS_LOAD(&r->ops), ap_cache_len(r->c), r->cap, st.hits, st.misses, st.inserts,
            st.updates, st.evictions, st.removes);
}

static void run_cache(size_t shards, size_t cap, size_t words, size_t iters)
{
    if (!stress_begin("cache shards=%zu capacity=%zu value_words=%zu", shards, cap, words))
        return;
    cache_run *r = (cache_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    ap_status st = ap_cache_create(&r->c, &(ap_cache_desc){.capacity = cap, .shards = shards, .value_size = words * 8}, NULL);
    CHECK(st == AP_OK, "ap_cache_create: %s", ap_status_str(st));
    r->cap = cap;
    r->words = words;
    r->keys = 3 * cap + 2;
    r->iters = iters;
    for (unsigned i = 0; i < WORKERS; i++)
        atomic_init(&r->started[i], 0);
    pthread_barrier_init(&r->start, NULL, WORKERS + 1);
    stress_diag(cache_diag, r);
    cache_worker w[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(i), i);
        stress_spawn(&w[i].thread, worker_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < WORKERS; i++)
        stress_join(w[i].thread);
    stress_diag(NULL, NULL);

    ap_cache_stats s = ap_cache_stats_get(r->c);
    size_t len = ap_cache_len(r->c), found = 0;
    CHECK(len <= cap, "len %zu > capacity %zu", len, cap);
    CHECK(s.hits + s.misses == STRESS_LOAD(&r->gets),
          "hits %" PRIu64 " + misses %" PRIu64 " != gets %" PRIu64, s.hits, s.misses,
          STRESS_LOAD(&r->gets));
    CHECK(s.inserts + s.updates == STRESS_LOAD(&r->puts),
          "inserts %" PRIu64 " + updates %" PRIu64 " != puts %" PRIu64, s.inserts, s.updates,
          STRESS_LOAD(&r->puts));
    CHECK(s.evictions == STRESS_LOAD(&r->victims),
          "evictions %" PRIu64 " != victims reported %" PRIu64, s.evictions,
          STRESS_LOAD(&r->victims));
    CHECK(s.removes == STRESS_LOAD(&r->removed), "removes %" PRIu64 " != %" PRIu64, s.removes,
          STRESS_LOAD(&r->removed));
    CHECK(s.inserts - s.evictions - s.removes == len,
          "inserts - evictions - removes = %" PRIu64 " != len %zu",
          s.inserts - s.evictions - s.removes, len);
    uint64_t buf[MAXW];
    for (uint64_t k = 0; k < r->keys; k++)
        if (ap_cache_get(r->c, k, buf) == AP_OK) {
            found++;
            check_value(r, buf, k, "final get", 99);
        }
    CHECK(found == len, "final sweep found %zu keys, len %zu", found, len);
    CHECK(s.evictions > 0 && s.hits > 0 && s.removes > 0,
          "no evictions/hits/removes: the scenario did not exercise the cache");
    pthread_barrier_destroy(&r->start);
    stress_end("ops=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64 " evictions=%" PRIu64
               " hand_steps=%" PRIu64 " len=%zu",
               STRESS_LOAD(&r->ops), s.hits, s.misses, s.evictions, s.hand_steps, len);
    ap_cache_destroy(r->c);
    free(r);
}

int main(int argc, char **argv)
{
    stress_init(argc, argv, "stress_cache");
    size_t n = stress_iters(20000, 200);
    run_cache(1, 1, 2, n);
    run_cache(1, 16, 3, n);
    run_cache(4, 64, 4, n);
    run_cache(16, 256, 2, n);
    run_cache(2, 32, 20, n);
    return stress_finish();
}
