/*
 * bench/cache_cost.c -- where a cache operation's cycles go, at a given size
 * (issue #15, "cost flat in size"). Not part of `make bench` (its name
 * does not start with bench_): a driver for valgrind and for quick timing.
 *
 *   cache_cost IMPL N OPS        fill a cache of capacity N with N keys,
 *                                then OPS operations of the cache_size_*
 *                                bench rows (uniform keys of the N, 90%
 *                                get / 10% put); prints ns/op (one thread)
 *     IMPL: ap16 (ap_cache, 16 shards), ap1 (1 shard), lru (mutex LRU),
 *           ap16t (ap_cache, 16 shards, timed: expire_after_write 1 h,
 *           get_at/put_ttl on a counter clock, so nothing expires but
 *           every get tests its deadlines and every put files one)
 *   cache_cost chase BYTES OPS   dependent loads over a random cyclic
 *                                permutation of BYTES/64 cache lines:
 *                                ns per load = the memory latency at that
 *                                footprint (L1, L2, L3, DRAM + TLB)
 *
 * Per-op instruction and miss counts: run twice under valgrind with OPS
 * and 2*OPS and divide the difference by OPS (the fill cancels out):
 *   valgrind --tool=cachegrind --cache-sim=yes ./cache_cost ap16 1000000 1000000
 *   valgrind --tool=cachegrind --cache-sim=yes ./cache_cost ap16 1000000 2000000
 * (sh bench/cache_cost.sh does this for every size and prints the table).
 *
 * Build: cc -std=gnu11 -O2 -I. -Ibench bench/cache_cost.c -o cache_cost -pthread
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include "asyncpat.h"
#include "asyncpat/cache.h"
#include "peers/mutex_lru.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t key_of(uint64_t rank) { return rank * UINT64_C(0x9E3779B97F4A7C15) >> 1; }
static uint64_t val_of(uint64_t key) { return key * 3 + 1; }

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int chase(size_t bytes, uint64_t ops)
{
    size_t n = bytes / 64;
    if (n < 2)
        n = 2;
    size_t *perm = (size_t *)malloc(n * sizeof *perm);
    uint64_t *mem = (uint64_t *)aligned_alloc(64, n * 64);
    if (!perm || !mem)
        return 1;
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    uint64_t s = 0x9E3779B97F4A7C15u;
    for (size_t i = n - 1; i > 0; i--) { /* Sattolo: one cycle through all lines */
        size_t j = (size_t)(xs(&s) % i);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        mem[perm[i] * 8] = perm[(i + 1) % n] * 8;
    free(perm);
    uint64_t p = 0;
    for (size_t i = 0; i < n; i++) /* warm (and fault in) every line */
        p = mem[p];
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++)
        p = mem[p];
    uint64_t t1 = now_ns();
    printf("chase %zu bytes: %.2f ns/load (p=%llu)\n", n * 64, (double)(t1 - t0) / (double)ops,
           (unsigned long long)p);
    free(mem);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ap16|ap16t|ap1|lru|chase N|BYTES OPS\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)strtoull(argv[2], NULL, 10);
    uint64_t ops = strtoull(argv[3], NULL, 10);
    if (strcmp(argv[1], "chase") == 0)
        return chase(n, ops);
    int lru = strcmp(argv[1], "lru") == 0, timed = strcmp(argv[1], "ap16t") == 0;
    uint64_t now = AP_NS_PER_SEC; /* timed: one ns per operation */
    ap_cache *c = NULL;
    mutex_lru l;
    if (lru) {
        if (mutex_lru_init(&l, n) != 0)
            return 1;
    } else {
        ap_cache_desc d = {.capacity = n, .shards = strcmp(argv[1], "ap1") == 0 ? 1 : 16,
                           .value_size = sizeof(uint64_t),
                           .expire_after_write = timed ? 3600 * AP_NS_PER_SEC : 0};
        if (ap_cache_create(&c, &d, NULL) != AP_OK)
            return 1;
    }
    for (uint64_t r = 0; r < n; r++) {
        uint64_t k = key_of(r), v = val_of(k);
        if (lru)
            (void)mutex_lru_put(&l, k, v);
        else if (timed ? ap_cache_put_ttl(c, k, &v, now++, 0, NULL) != AP_OK : (ap_cache_put(c, k, &v, NULL), 0))
            return 1;
    }
    uint64_t s = 0x2545F4914F6CDD1Du, bad = 0, misses = 0;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t k = key_of(xs(&s) % n), v;
        if (xs(&s) % 10 == 0) {
            v = val_of(k);
            if (lru)
                (void)mutex_lru_put(&l, k, v);
            else if (timed ? ap_cache_put_ttl(c, k, &v, now++, 0, NULL) != AP_OK
                           : (ap_cache_put(c, k, &v, NULL), 0))
                return 1;
        } else if (lru     ? mutex_lru_get(&l, k, &v)
                   : timed ? ap_cache_get_at(c, k, &v, now++) == AP_OK
                           : ap_cache_get(c, k, &v) == AP_OK) {
            bad += v != val_of(k);
        } else {
            misses++;
        }
    }
    uint64_t t1 = now_ns();
    printf("%s n=%zu ops=%llu: %.2f ns/op, %llu misses, %llu bad\n", argv[1], n,
           (unsigned long long)ops, (double)(t1 - t0) / (double)ops, (unsigned long long)misses,
           (unsigned long long)bad);
    if (lru)
        mutex_lru_fini(&l);
    else
        ap_cache_destroy(c);
    return bad != 0;
}
