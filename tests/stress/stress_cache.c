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
 * (Loading and ap_cache_kv: their own comments below, run_loads and run_kv.)
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
    ap_cache_stats st;
    ap_cache_stats_get(r->c, &st);
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

    ap_cache_stats s;

    ap_cache_stats_get(r->c, &s);
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

/* ---- loading (issue #15): single flight under threads ----
 * LWAITERS threads get_or_load random keys of a small space (capacity
 * below it: entries are evicted and loaded again), driving the future by
 * hand (stress_poll_or_cancel: some cancel) or with the blocking _wait.
 * The loader only queues a job; LCOMPLETERS threads finish the jobs with
 * ap_cache_load_complete, failing one in 8 with AP_REJECTED. Values are
 * (key, generation = that key's loader call number, check word).
 * Checked: at most one load of a key in flight at any time (the loader
 * finds its key's in-flight count 0: single flight, refreshes included);
 * every load_complete is accepted (each loader call completed once);
 * every AP_OK result is a whole value loaded for its key by a call that
 * had started; every failure is AP_REJECTED; the cache's stats agree
 * (loads == loader calls, load_failures == failed completions); at the
 * end every load slot is free and nobody waits; and the run saw joins
 * (misses that shared a load) and, with refresh, refreshes. */
#define LWAITERS 6
#define LCOMPLETERS 2
#define LKEYS 12
#define LJOBS 4096

typedef struct load_run {
    ap_cache *c;
    size_t iters;
    pthread_mutex_t mu; /* the job queue (test code) */
    uint64_t jobs[LJOBS];
    size_t head, tail;
    _Atomic uint32_t inflight[LKEYS];
    _Atomic uint64_t calls[LKEYS];
    _Atomic uint64_t ncalls, completed, failed, ok, errs, cancelled;
    _Atomic uint32_t waiters_done;
    pthread_barrier_t start;
} load_run;

typedef struct load_worker {
    load_run *r;
    unsigned id;
    stress_rng rng;
    pthread_t thread;
} load_worker;

static void lr_load(void *ctx, ap_cache *c, uint64_t key)
{
    load_run *r = (load_run *)ctx;
    CHECK(c == r->c && key < LKEYS, "loader called with key %" PRIu64, key);
    uint32_t was = atomic_fetch_add(&r->inflight[key], 1u);
    CHECK(was == 0, "single flight: a second load of key %" PRIu64 " while %u in flight", key, was);
    uint64_t gen = atomic_fetch_add(&r->calls[key], 1u) + 1;
    STRESS_ADD(&r->ncalls, 1);
    pthread_mutex_lock(&r->mu);
    CHECK(r->tail - r->head < LJOBS, "job queue overflow");
    r->jobs[r->tail++ % LJOBS] = key << 32 | gen;
    pthread_mutex_unlock(&r->mu);
}

static void *lr_completer(void *arg)
{
    load_worker *w = (load_worker *)arg;
    load_run *r = w->r;
    pthread_barrier_wait(&r->start);
    for (;;) {
        uint64_t job = 0;
        bool have = false;
        pthread_mutex_lock(&r->mu);
        if (r->head != r->tail) {
            job = r->jobs[r->head++ % LJOBS];
            have = true;
        }
        pthread_mutex_unlock(&r->mu);
        if (!have) {
            if (STRESS_LOAD(&r->waiters_done) == LWAITERS)
                return NULL; /* nobody left to start a load */
            stress_jitter(&w->rng);
            continue;
        }
        stress_jitter(&w->rng);
        uint64_t key = job >> 32, gen = job & 0xffffffffu;
        uint64_t v[2] = {key << 32 | gen, stress_mix64(key << 32 | gen)};
        ap_status st = stress_below(&w->rng, 8) ? AP_OK : AP_REJECTED;
        /* out of flight before the slot says DONE (a new load may follow) */
        atomic_fetch_sub(&r->inflight[key], 1u);
        ap_status got = ap_cache_load_complete(r->c, key, st, v, ap_now_ns());
        CHECK(got == AP_OK, "load_complete of key %" PRIu64 ": %s", key, ap_status_str(got));
        STRESS_ADD(&r->completed, 1);
        if (st != AP_OK)
            STRESS_ADD(&r->failed, 1);
    }
}

static void *lr_waiter(void *arg)
{
    load_worker *w = (load_worker *)arg;
    load_run *r = w->r;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->iters; i++) {
        uint64_t key = stress_below(&w->rng, LKEYS), v[2] = {~0ull, ~0ull};
        ap_status st;
        if (stress_below(&w->rng, 2)) {
            ap_cache_load_fut f;
            ap_cache_get_or_load(&f, r->c, key, v, (ap_cache_loader){lr_load, r});
            (void)stress_poll_or_cancel(&f.base, &w->rng);
            st = ap_cache_load_status(&f);
        } else {
            st = ap_cache_get_or_load_wait(r->c, key, v, (ap_cache_loader){lr_load, r},
                                           AP_DEADLINE_NONE);
        }
        if (st == AP_OK) {
            uint64_t k = v[0] >> 32, gen = v[0] & 0xffffffffu;
            CHECK(k == key && v[1] == stress_mix64(v[0]) && gen >= 1 &&
                      gen <= STRESS_LOAD(&r->calls[key]),
                  "key %" PRIu64 " got %016" PRIx64 " %016" PRIx64, key, v[0], v[1]);
            STRESS_ADD(&r->ok, 1);
        } else if (st == AP_CANCELED) {
            CHECK(v[0] == ~0ull, "a cancelled load wrote its out");
            STRESS_ADD(&r->cancelled, 1);
        } else {
            CHECK(st == AP_REJECTED && v[0] == ~0ull, "status %s", ap_status_str(st));
            STRESS_ADD(&r->errs, 1);
        }
        if (stress_below(&w->rng, 16) == 0)
            if (ap_cache_remove(r->c, key, NULL) != AP_OK) { /* absent: fine */ }
    }
    STRESS_ADD(&r->waiters_done, 1);
    return NULL;
}

static void run_loads(size_t shards, size_t cap, size_t max_loads, uint64_t raw, size_t iters)
{
    if (!stress_begin("cache loads shards=%zu capacity=%zu max_loads=%zu refresh_ns=%" PRIu64,
                      shards, cap, max_loads, raw))
        return;
    load_run *r = (load_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    ap_cache_desc d = {.capacity = cap, .shards = shards, .value_size = 16,
                       .max_loads = max_loads, .refresh_after_write = raw};
    ap_status st = ap_cache_create(&r->c, &d, NULL);
    CHECK(st == AP_OK, "ap_cache_create: %s", ap_status_str(st));
    r->iters = iters;
    pthread_mutex_init(&r->mu, NULL);
    for (unsigned k = 0; k < LKEYS; k++) {
        atomic_init(&r->inflight[k], 0u);
        atomic_init(&r->calls[k], 0u);
    }
    pthread_barrier_init(&r->start, NULL, LWAITERS + LCOMPLETERS + 1);
    load_worker w[LWAITERS + LCOMPLETERS];
    for (unsigned i = 0; i < LWAITERS + LCOMPLETERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(100 + i), i);
        stress_spawn(&w[i].thread, i < LWAITERS ? lr_waiter : lr_completer, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < LWAITERS + LCOMPLETERS; i++)
        stress_join(w[i].thread);
    ap_cache_stats s;
    ap_cache_stats_get(r->c, &s);
    uint64_t calls = STRESS_LOAD(&r->ncalls);
    CHECK(STRESS_LOAD(&r->completed) == calls, "%" PRIu64 " loads, %" PRIu64 " completed",
          calls, STRESS_LOAD(&r->completed));
    CHECK(s.loads == calls && s.load_failures == STRESS_LOAD(&r->failed),
          "stats: loads %" PRIu64 " (calls %" PRIu64 "), failures %" PRIu64, s.loads, calls,
          s.load_failures);
    CHECK(STRESS_LOAD(&r->ok) + STRESS_LOAD(&r->errs) + STRESS_LOAD(&r->cancelled) ==
              LWAITERS * iters, "every get_or_load ended");
    for (size_t i = 0; i < r->c->desc.max_loads; i++) {
        ap__cache_load *l = ap__cache_slot(&r->c->fl, (uint32_t)i);
        CHECK(l->state == AP__CACHE_L_FREE && l->refs == 0, "slot %zu: state %u refs %u", i,
              l->state, l->refs);
        CHECK(!ap_waitlist_has_waiters(&l->wl), "slot %zu has waiters", i);
    }
    CHECK(!ap_waitlist_has_waiters(&r->c->fl.lwait), "waiters for a slot left");
    CHECK(s.load_joins > 0 && calls > 0 && (raw == 0 || s.refreshes > 0),
          "the run did not exercise joins (%" PRIu64 ") or refreshes (%" PRIu64 ")",
          s.load_joins, s.refreshes);
    stress_end("get_or_load=%zu loads=%" PRIu64 " joins=%" PRIu64 " refreshes=%" PRIu64
               " failures=%" PRIu64 " cancelled=%" PRIu64,
               LWAITERS * iters, calls, s.load_joins, s.refreshes, s.load_failures,
               STRESS_LOAD(&r->cancelled));
    pthread_barrier_destroy(&r->start);
    pthread_mutex_destroy(&r->mu);
    ap_cache_destroy(r->c);
    free(r);
}

/* ---- ap_cache_kv under threads (issue #15) ----
 * KVWORKERS threads put (malloc'd values, byte-string keys "key-<n>"
 * with weights 1..4), get-and-pin (check the value's magic and key, hold
 * it across a jitter, unpin), remove, on a small key space with a
 * capacity and weight bound below it (evictions all the time). The
 * release callback checks the value is whole and not pinned-then-freed
 * (magic), poisons and frees it (TSan and the magic catch a release
 * while a pinner reads). Checked: every value put is released exactly
 * once (released == puts after destroy; the per-value magic flips once),
 * also when they expire (one run: 30 us after the put, maintain racing),
 * weight and len never exceed the bounds, stats agree. */
#define KVWORKERS 6
#define KVKEYS 48
#define KV_MAGIC UINT64_C(0x6b76a11ce5ca11ed)

typedef struct kv_item {
    _Atomic uint64_t magic; /* KV_MAGIC while held; 0 once released */
    uint64_t id;
    char key[16];
    size_t klen;
} kv_item;

typedef struct kv_run {
    ap_cache_kv *c;
    size_t iters;
    _Atomic uint64_t puts, releases, full, pins;
    pthread_barrier_t start;
} kv_run;

static void kvr_release(void *ctx, ap_cache_key key, void *value, ap_cache_cause cause)
{
    kv_run *r = (kv_run *)ctx;
    kv_item *it = (kv_item *)value;
    CHECK(cause == AP_CACHE_CAUSE_SIZE || cause == AP_CACHE_CAUSE_REPLACED ||
              cause == AP_CACHE_CAUSE_EXPLICIT || cause == AP_CACHE_CAUSE_EXPIRED,
          "cause %d", (int)cause);
    CHECK(key.bytes == it->key && key.len == it->klen, "release: not the entry's key");
    uint64_t m = atomic_exchange(&it->magic, 0);
    CHECK(m == KV_MAGIC, "value %" PRIu64 " released twice (magic %016" PRIx64 ")", it->id, m);
    STRESS_ADD(&r->releases, 1);
    free(it);
}

typedef struct kv_worker {
    kv_run *r;
    unsigned id;
    stress_rng rng;
    pthread_t thread;
} kv_worker;

static void *kvr_main(void *arg)
{
    kv_worker *w = (kv_worker *)arg;
    kv_run *r = w->r;
    pthread_barrier_wait(&r->start);
    for (size_t i = 0; i < r->iters; i++) {
        unsigned k = stress_below(&w->rng, KVKEYS), op = stress_below(&w->rng, 10);
        char kb[16];
        int n = snprintf(kb, sizeof kb, "key-%u", k);
        ap_cache_key key = ap_cache_key_of(kb, (size_t)n);
        if (op < 4) {
            kv_item *it = (kv_item *)malloc(sizeof *it);
            CHECK(it != NULL, "out of memory");
            atomic_init(&it->magic, KV_MAGIC);
            it->id = (uint64_t)w->id << 40 | i;
            memcpy(it->key, kb, (size_t)n + 1);
            it->klen = (size_t)n;
            ap_status st = ap_cache_kv_put(r->c, ap_cache_key_of(it->key, it->klen), it,
                                           1 + stress_below(&w->rng, 4));
            if (st == AP_OK) {
                STRESS_ADD(&r->puts, 1);
            } else {
                CHECK(st == AP_FULL, "put: %s", ap_status_str(st));
                STRESS_ADD(&r->full, 1);
                free(it); /* not taken */
            }
        } else if (op < 9) {
            ap_cache_kv_pin pin;
            if (ap_cache_kv_get(r->c, key, &pin) == AP_OK) {
                kv_item *it = (kv_item *)pin.value;
                CHECK(atomic_load(&it->magic) == KV_MAGIC && it->klen == (size_t)n &&
                          memcmp(it->key, kb, (size_t)n) == 0,
                      "pinned value %" PRIu64 " not whole or not ours", it->id);
                stress_jitter(&w->rng);
                CHECK(atomic_load(&it->magic) == KV_MAGIC, "value released while pinned");
                STRESS_ADD(&r->pins, 1);
                ap_cache_kv_unpin(r->c, &pin);
            }
        } else if (stress_below(&w->rng, 2)) {
            if (ap_cache_kv_remove(r->c, key) != AP_OK) { /* absent: fine */
            }
        } else {
            (void)ap_cache_kv_maintain(r->c, ap_now_ns()); /* timed runs: EXPIRED */
        }
    }
    return NULL;
}

static void run_kv(size_t shards, size_t cap, uint64_t max_weight, uint64_t eaw, size_t iters)
{
    if (!stress_begin("cache_kv shards=%zu capacity=%zu max_weight=%" PRIu64 " expire_ns=%" PRIu64,
                      shards, cap, max_weight, eaw))
        return;
    kv_run *r = (kv_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    ap_cache_kv_desc d = {.capacity = cap, .shards = shards, .max_weight = max_weight,
                          .release = kvr_release, .ctx = r, .expire_after_write = eaw};
    ap_status st = ap_cache_kv_create(&r->c, &d, NULL);
    CHECK(st == AP_OK, "ap_cache_kv_create: %s", ap_status_str(st));
    r->iters = iters;
    pthread_barrier_init(&r->start, NULL, KVWORKERS + 1);
    kv_worker w[KVWORKERS];
    for (unsigned i = 0; i < KVWORKERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(200 + i), i);
        stress_spawn(&w[i].thread, kvr_main, &w[i]);
    }
    pthread_barrier_wait(&r->start);
    for (unsigned i = 0; i < KVWORKERS; i++)
        stress_join(w[i].thread);
    ap_cache_kv_stats s;
    ap_cache_kv_stats_get(r->c, &s);
    CHECK(s.len <= cap && (max_weight == 0 || s.weight <= max_weight), "bounds: len %" PRIu64
          " weight %" PRIu64, s.len, s.weight);
    CHECK(s.inserts == STRESS_LOAD(&r->puts), "inserts %" PRIu64 " puts %" PRIu64, s.inserts,
          STRESS_LOAD(&r->puts));
    CHECK(s.released == STRESS_LOAD(&r->releases), "released %" PRIu64, s.released);
    CHECK(s.evicted > 0 && s.replaced > 0 && s.hits > 0 && (eaw == 0 || s.expired > 0),
          "the run did not exercise the cache (expired %" PRIu64 ")", s.expired);
    uint64_t held = s.len;
    ap_cache_kv_destroy(r->c); /* releases the rest */
    CHECK(STRESS_LOAD(&r->releases) == STRESS_LOAD(&r->puts),
          "releases %" PRIu64 " != puts %" PRIu64 " (exactly once each)",
          STRESS_LOAD(&r->releases), STRESS_LOAD(&r->puts));
    stress_end("puts=%" PRIu64 " pins=%" PRIu64 " full=%" PRIu64 " evicted=%" PRIu64
               " replaced=%" PRIu64 " held_at_end=%" PRIu64,
               STRESS_LOAD(&r->puts), STRESS_LOAD(&r->pins), STRESS_LOAD(&r->full), s.evicted,
               s.replaced, held);
    pthread_barrier_destroy(&r->start);
    free(r);
}

/* ap_cache_kv get_or_load under threads: KVWORKERS waiters get_or_load
 * (half poll once and maybe cancel, half wait) over LKEYS keys, a counting
 * loader queues each load, LCOMPLETERS threads complete them with a fresh
 * item (1 in 8 fails with AP_REJECTED), removes and maintain race them;
 * one run remembers failures (negative TTL), one expires entries after
 * access. Checked: never two loads of a key in flight (loads per key <=
 * misses that found no load in flight: stats.loads == loader calls); every
 * waiter's pin holds a live item of its key; identity accounting: every
 * item a completer made is released exactly once or was refused
 * (AP_FULL) and freed by it. */
typedef struct kvl_run {
    ap_cache_kv *c;
    kv_run kv; /* release accounting (kvr_release) */
    size_t iters;
    pthread_mutex_t mu;
    uint64_t jobs[LJOBS];
    size_t head, tail;
    _Atomic uint32_t inflight[LKEYS];
    _Atomic uint64_t ncalls, made, refused, failed, ok, errs, cancelled;
    _Atomic uint32_t waiters_done;
} kvl_run;

static void kvl_load(void *ctx, ap_cache_kv *c, ap_cache_key key)
{
    kvl_run *r = (kvl_run *)ctx;
    unsigned k = 0;
    CHECK(c == r->c && key.len > 4 && sscanf((const char *)key.bytes, "key-%u", &k) == 1 &&
              k < LKEYS, "loader called with a bad key");
    uint32_t was = atomic_fetch_add(&r->inflight[k], 1u);
    CHECK(was == 0, "single flight: a second kv load of key %u while %u in flight", k, was);
    STRESS_ADD(&r->ncalls, 1);
    pthread_mutex_lock(&r->mu);
    CHECK(r->tail - r->head < LJOBS, "job queue overflow");
    r->jobs[r->tail++ % LJOBS] = k;
    pthread_mutex_unlock(&r->mu);
}

typedef struct kvl_worker {
    kvl_run *r;
    unsigned id;
    stress_rng rng;
    pthread_t thread;
} kvl_worker;

static void *kvl_completer(void *arg)
{
    kvl_worker *w = (kvl_worker *)arg;
    kvl_run *r = w->r;
    pthread_barrier_wait(&r->kv.start);
    for (uint64_t seq = 0;; seq++) {
        uint64_t k = 0;
        bool have = false;
        pthread_mutex_lock(&r->mu);
        if (r->head != r->tail) {
            k = r->jobs[r->head++ % LJOBS];
            have = true;
        }
        pthread_mutex_unlock(&r->mu);
        if (!have) {
            if (STRESS_LOAD(&r->waiters_done) == KVWORKERS)
                return NULL;
            stress_jitter(&w->rng);
            continue;
        }
        stress_jitter(&w->rng);
        kv_item *it = (kv_item *)malloc(sizeof *it);
        CHECK(it != NULL, "out of memory");
        atomic_init(&it->magic, KV_MAGIC);
        it->id = (uint64_t)w->id << 40 | seq;
        it->klen = (size_t)snprintf(it->key, sizeof it->key, "key-%u", (unsigned)k);
        ap_status st = stress_below(&w->rng, 8) ? AP_OK : AP_REJECTED;
        atomic_fetch_sub(&r->inflight[k], 1u); /* out of flight before DONE */
        ap_status got = ap_cache_kv_load_complete(r->c, ap_cache_key_of(it->key, it->klen), st,
                                                  it, 1, ap_now_ns());
        if (st == AP_OK && got == AP_OK) {
            STRESS_ADD(&r->made, 1);
            STRESS_ADD(&r->kv.puts, 1);
        } else {
            CHECK(got == AP_OK || got == AP_FULL, "kv load_complete: %s", ap_status_str(got));
            STRESS_ADD(got == AP_FULL ? &r->refused : &r->failed, 1);
            free(it); /* not taken */
        }
    }
}

static void *kvl_waiter(void *arg)
{
    kvl_worker *w = (kvl_worker *)arg;
    kvl_run *r = w->r;
    pthread_barrier_wait(&r->kv.start);
    for (size_t i = 0; i < r->iters; i++) {
        unsigned k = stress_below(&w->rng, LKEYS);
        char kb[16];
        int n = snprintf(kb, sizeof kb, "key-%u", k);
        ap_cache_key key = ap_cache_key_of(kb, (size_t)n);
        ap_cache_kv_pin pin = {NULL, 0, 0};
        ap_status st;
        if (stress_below(&w->rng, 2)) {
            ap_cache_kv_load_fut f;
            ap_cache_kv_get_or_load(&f, r->c, key, &pin, (ap_cache_kv_loader){kvl_load, r});
            (void)stress_poll_or_cancel(&f.base, &w->rng);
            st = ap_cache_kv_load_status(&f);
        } else {
            st = ap_cache_kv_get_or_load_wait(r->c, key, &pin, (ap_cache_kv_loader){kvl_load, r},
                                              AP_DEADLINE_NONE);
        }
        if (st == AP_OK) {
            kv_item *it = (kv_item *)pin.value;
            CHECK(atomic_load(&it->magic) == KV_MAGIC && it->klen == (size_t)n &&
                      memcmp(it->key, kb, (size_t)n) == 0,
                  "loaded value %" PRIu64 " not live or not of its key", it->id);
            stress_jitter(&w->rng);
            CHECK(atomic_load(&it->magic) == KV_MAGIC, "loaded value released while pinned");
            ap_cache_kv_unpin(r->c, &pin);
            STRESS_ADD(&r->ok, 1);
        } else if (st == AP_CANCELED) {
            CHECK(pin.value == NULL, "a cancelled load wrote its pin");
            STRESS_ADD(&r->cancelled, 1);
        } else {
            CHECK((st == AP_REJECTED || st == AP_FULL) && pin.value == NULL, "status %s",
                  ap_status_str(st));
            STRESS_ADD(&r->errs, 1);
        }
        unsigned op = stress_below(&w->rng, 16);
        if (op == 0) {
            if (ap_cache_kv_remove(r->c, key) != AP_OK) { /* absent: fine */
            }
        } else if (op == 1) {
            (void)ap_cache_kv_maintain(r->c, ap_now_ns());
        }
    }
    STRESS_ADD(&r->waiters_done, 1);
    return NULL;
}

static void run_kv_loads(size_t shards, size_t cap, size_t max_loads, uint64_t eaa,
                         uint64_t neg, size_t iters)
{
    if (!stress_begin("cache_kv loads shards=%zu capacity=%zu max_loads=%zu expire_access_ns=%" PRIu64
                      " negative_ns=%" PRIu64, shards, cap, max_loads, eaa, neg))
        return;
    kvl_run *r = (kvl_run *)calloc(1, sizeof *r);
    CHECK(r != NULL, "out of memory");
    ap_cache_kv_desc d = {.capacity = cap, .shards = shards, .release = kvr_release,
                          .ctx = &r->kv, .expire_after_access = eaa, .max_loads = max_loads,
                          .negative_ttl_ns = neg};
    ap_status st = ap_cache_kv_create(&r->c, &d, NULL);
    CHECK(st == AP_OK, "ap_cache_kv_create: %s", ap_status_str(st));
    r->iters = iters;
    pthread_mutex_init(&r->mu, NULL);
    pthread_barrier_init(&r->kv.start, NULL, KVWORKERS + LCOMPLETERS + 1);
    kvl_worker w[KVWORKERS + LCOMPLETERS];
    for (unsigned i = 0; i < KVWORKERS + LCOMPLETERS; i++) {
        w[i].r = r;
        w[i].id = i;
        stress_rng_init(&w[i].rng, stress_thread_seed(300 + i), i);
        stress_spawn(&w[i].thread, i < KVWORKERS ? kvl_waiter : kvl_completer, &w[i]);
    }
    pthread_barrier_wait(&r->kv.start);
    for (unsigned i = 0; i < KVWORKERS + LCOMPLETERS; i++)
        stress_join(w[i].thread);
    ap_cache_kv_stats s;
    ap_cache_kv_stats_get(r->c, &s);
    uint64_t calls = STRESS_LOAD(&r->ncalls);
    CHECK(s.loads == calls, "loads %" PRIu64 " != loader calls %" PRIu64, s.loads, calls);
    CHECK(calls == STRESS_LOAD(&r->made) + STRESS_LOAD(&r->refused) + STRESS_LOAD(&r->failed),
          "a load was not completed");
    CHECK(STRESS_LOAD(&r->ok) + STRESS_LOAD(&r->errs) + STRESS_LOAD(&r->cancelled) ==
              KVWORKERS * iters, "every get_or_load ended");
    for (uint32_t i = 0; i < r->c->fl.n; i++) {
        ap__cache_load *l = ap__cache_slot(&r->c->fl, i);
        CHECK((l->state == AP__CACHE_L_FREE || l->state == AP__CACHE_L_NEG) && l->refs == 0,
              "slot %u: state %u refs %u", i, l->state, l->refs);
        CHECK(!ap_waitlist_has_waiters(&l->wl), "slot %u has waiters", i);
    }
    CHECK(!ap_waitlist_has_waiters(&r->c->fl.lwait), "waiters for a slot left");
    CHECK(s.load_joins > 0 && calls > 0 && (neg == 0 || s.negative_hits > 0),
          "the run did not exercise joins (%" PRIu64 ") or negative hits (%" PRIu64 ")",
          s.load_joins, s.negative_hits);
    ap_cache_kv_destroy(r->c); /* fails (AP_ASSERT) if a pin was left */
    CHECK(STRESS_LOAD(&r->kv.releases) == STRESS_LOAD(&r->made),
          "releases %" PRIu64 " != items taken %" PRIu64 " (exactly once each)",
          STRESS_LOAD(&r->kv.releases), STRESS_LOAD(&r->made));
    stress_end("loads=%" PRIu64 " joins=%" PRIu64 " ok=%" PRIu64 " errs=%" PRIu64
               " cancelled=%" PRIu64 " negative_hits=%" PRIu64,
               calls, s.load_joins, STRESS_LOAD(&r->ok), STRESS_LOAD(&r->errs),
               STRESS_LOAD(&r->cancelled), s.negative_hits);
    pthread_barrier_destroy(&r->kv.start);
    pthread_mutex_destroy(&r->mu);
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
    size_t nl = stress_iters(3000, 100);
    run_loads(1, 4, 16, 0, nl);
    run_loads(4, 8, 2, 0, nl);              /* slots run out: misses queue for one */
    run_loads(2, 16, 16, 20 * 1000, nl);    /* refresh after 20 us */
    run_kv(1, 16, 0, 0, nl);
    run_kv(1, 24, 30, 0, nl);               /* weight-bound */
    run_kv(4, 32, 40, 0, nl);
    run_kv(2, 32, 60, 30 * 1000, nl);       /* entries expire 30 us after their put */
    run_kv_loads(1, 8, 16, 0, 0, nl);
    run_kv_loads(4, 8, 2, 0, 0, nl);        /* slots run out: misses queue for one */
    run_kv_loads(2, 16, 16, 20 * 1000, 200 * 1000, nl); /* expire 20 us after access; failures remembered 200 us */
    return stress_finish();
}
