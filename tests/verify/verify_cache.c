/*
 * verify_cache.c -- the cache's lock-free seqlock read against writers,
 * under every interleaving within the preemption bound (SC and x86-TSO).
 *
 * Theorems: a get returns a whole value that was put for its key (never a
 * torn mix of two puts, never another key's value), or a miss; len never
 * exceeds the capacity; every eviction is reported.
 */
#include "vf.h"
#include "asyncpat/cache.h"

typedef struct val {
    uint64_t key, ver, check; /* check = key * 1000 + ver: a torn copy shows */
} val;

typedef struct cst {
    ap_cache c;
    _Alignas(AP_CACHELINE) unsigned char mem[AP_CACHE_BYTES(1, 1, sizeof(val))];
    int evicted;
} cst;

static void *c_setup(void)
{
    cst *s = aligned_alloc(AP_CACHELINE, sizeof(cst));
    memset(s, 0, sizeof *s);
    VF_CHECK(ap_cache_init(&s->c, s->mem, sizeof s->mem,
                           &(ap_cache_desc){.capacity = 1, .shards = 1, .value_size = sizeof(val)}) == AP_OK);
    return s;
}

static void check_val(uint64_t key, const val *v)
{
    VF_CHECK(v->key == key, "get of key %llu returned key %llu's value",
             (unsigned long long)key, (unsigned long long)v->key);
    VF_CHECK(v->check == v->key * 1000 + v->ver, "torn value: key %llu ver %llu check %llu",
             (unsigned long long)v->key, (unsigned long long)v->ver,
             (unsigned long long)v->check);
}

/* T0 updates key 1, then inserts key 2 (evicting key 1); T1 reads both */
static void c_thread(void *p, int id)
{
    cst *s = p;
    if (id == 0) {
        for (uint64_t ver = 1; ver <= 2; ver++) {
            val v = {1, ver, 1000 + ver};
            ap_cache_put(&s->c, 1, &v, NULL);
        }
        val v = {2, 1, 2001}, old = {0, 0, 0};
        ap_cache_victim vic = {.value = &old};
        ap_cache_put(&s->c, 2, &v, &vic);
        VF_CHECK(vic.evicted && vic.key == 1, "capacity 1: key 1 must be evicted");
        check_val(1, &old);
        s->evicted++;
    } else {
        for (int i = 0; i < 2; i++)
            for (uint64_t key = 1; key <= 2; key++) {
                val v;
                ap_status st = ap_cache_get(&s->c, key, &v);
                VF_CHECK(st == AP_OK || st == AP_EMPTY, "get: %d", st);
                if (st == AP_OK)
                    check_val(key, &v);
            }
    }
}

static void c_invariant(void *p)
{
    cst *s = p;
    VF_CHECK(ap_cache_len(&s->c) <= 1);
}

static void c_check(void *p)
{
    cst *s = p;
    val v;
    VF_CHECK(s->evicted == 1);
    VF_CHECK(ap_cache_get(&s->c, 2, &v) == AP_OK);
    check_val(2, &v);
    VF_CHECK(ap_cache_get(&s->c, 1, &v) == AP_EMPTY);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .tso = tso, .bound = 3, .setup = c_setup,
                          .thread = c_thread, .invariant = c_invariant, .check = c_check,
                          .teardown = free};
        sc.name = tso ? "cache_update_evict_vs_get_tso" : "cache_update_evict_vs_get";
        total += vf_explore(&sc);
    }
    printf("verify_cache: %lu executions\n", total);
    return 0;
}
