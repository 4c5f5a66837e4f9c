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

/* ---- single flight (issue #15) ----
 * T0 and T1 get_or_load key 5 and wait; T2 plays the loader's far side:
 * it completes every load the loader was asked to start (with `fail`'s
 * status), until both waiters are done. Theorems, in every interleaving:
 * the loader runs exactly once when loads succeed (the second miss joins
 * the load in flight, or finds the value it put); every load started is
 * completed and every waiter gets the value or the error; a waiter that
 * cancels (T0 in the cancel scenario) leaves the load running for the
 * other; afterwards every load slot is free with no reference, nobody is
 * left on a waitlist, and a failed load is not cached. */
typedef struct lst {
    ap_cache c;
    _Alignas(AP_CACHELINE) unsigned char mem[AP_CACHE_BYTES(4, 1, 8)];
    int calls, completed, done;
    ap_status fail;   /* AP_OK: loads succeed */
    int cancel;       /* T0 polls once and cancels */
    ap_status got[2];
} lst;

static lst *cur_l;

static void l_load(void *ctx, ap_cache *c, uint64_t key)
{
    lst *s = ctx;
    (void)c;
    VF_CHECK(key == 5);
    s->calls++;
}

static void *l_setup_with(ap_status fail, int cancel)
{
    lst *s = aligned_alloc(AP_CACHELINE, sizeof(lst));
    memset(s, 0, sizeof *s);
    s->fail = fail;
    s->cancel = cancel;
    VF_CHECK(ap_cache_init(&s->c, s->mem, sizeof s->mem,
                           &(ap_cache_desc){.capacity = 4, .shards = 1, .value_size = 8}) == AP_OK);
    cur_l = s;
    return s;
}
static void *l_setup_ok(void) { return l_setup_with(AP_OK, 0); }
static void *l_setup_fail(void) { return l_setup_with(AP_REJECTED, 0); }
static void *l_setup_cancel(void) { return l_setup_with(AP_OK, 1); }

static void l_thread(void *p, int id)
{
    lst *s = p;
    if (id == 2) {
        while (s->done < 2) {
            if (s->calls > s->completed) {
                uint64_t v = 77;
                VF_CHECK(ap_cache_load_complete(&s->c, 5, s->fail, &v, 0) == AP_OK);
                s->completed++;
            } else {
                vf_yield();
            }
        }
        return;
    }
    uint64_t v = 1;
    ap_cache_load_fut f;
    ap_cache_get_or_load(&f, &s->c, 5, &v, (ap_cache_loader){l_load, s});
    if (id == 0 && s->cancel) {
        if (vf_poll(&f.base) == AP_PENDING) {
            ap_cache_load_cancel(&f);
            VF_CHECK(ap_cache_load_status(&f) == AP_CANCELED);
            VF_CHECK(v == 1, "a cancelled waiter's out was written");
        }
    } else {
        vf_wait(&f.base);
    }
    ap_status st = ap_cache_load_status(&f);
    s->got[id] = st;
    if (st == AP_OK)
        VF_CHECK(v == 77, "waiter %d got %llu", id, (unsigned long long)v);
    else if (st != AP_CANCELED)
        VF_CHECK(st == s->fail && v == 1, "waiter %d: status %d", id, st);
    s->done++;
}

static void l_check(void *p)
{
    lst *s = p;
    VF_CHECK(s->completed == s->calls);
    if (s->fail == AP_OK)
        VF_CHECK(s->calls == 1, "%d loads for one key", s->calls);
    else
        VF_CHECK(s->calls >= 1 && s->calls <= 2);
    ap_cache_stats st;
    ap_cache_stats_get(&s->c, &st);
    VF_CHECK(st.loads == (uint64_t)s->calls);
    for (size_t i = 0; i < s->c.desc.max_loads; i++) {
        ap__cache_load *l = ap__cache_slot(&s->c.fl, (uint32_t)i);
        VF_CHECK(l->state == AP__CACHE_L_FREE && l->refs == 0, "slot %zu: state %u refs %u", i,
                 l->state, l->refs);
        VF_CHECK(!ap_waitlist_has_waiters(&l->wl));
    }
    VF_CHECK(!ap_waitlist_has_waiters(&s->c.fl.lwait));
    VF_CHECK(ap_cache_get(&s->c, 5, NULL) == (s->fail == AP_OK ? AP_OK : AP_EMPTY));
    if (!s->cancel)
        VF_CHECK(s->got[0] == s->fail && s->got[1] == s->fail);
    else
        VF_CHECK(s->got[1] == AP_OK && (s->got[0] == AP_OK || s->got[0] == AP_CANCELED));
}

/* ---- ap_cache_kv: pointer values retired only after the last pin ----
 * T0 pins key "k", reads its value's bytes twice (a release in between
 * would show as freed = 1, or, in the C11 mode, as a data race on the
 * bytes), unpins. T1 replaces "k" (its old value is REPLACED) and then
 * removes it (EXPLICIT). Theorems, in every interleaving: no value is
 * released while pinned, each of the two values is released exactly
 * once, by the end, with its cause; nothing is left pinned. */
typedef struct kvv {
    int id, freed, releases;
    ap_cache_cause cause;
    uint64_t bytes; /* what a reader reads */
} kvv;

typedef struct kst {
    ap_cache_kv c;
    _Alignas(AP_CACHELINE) unsigned char mem[16384];
    kvv v[2];
    char key[2];
    int bad;
} kst;

static void k_release(void *ctx, ap_cache_key key, void *value, ap_cache_cause cause)
{
    kst *s = ctx;
    kvv *v = value;
    (void)key;
    VF_CHECK(v->freed == 0, "value %d released twice", v->id);
    VF_DATA_WRITE(&v->bytes, sizeof v->bytes); /* "free": a write a pinner must never race */
    v->bytes = 0xdead;
    v->freed = 1;
    v->releases++;
    v->cause = cause;
    (void)s;
}

static void *k_setup(void)
{
    kst *s = aligned_alloc(AP_CACHELINE, sizeof(kst));
    memset(s, 0, sizeof *s);
    s->key[0] = 'k';
    s->key[1] = 'k';
    for (int i = 0; i < 2; i++) {
        s->v[i].id = i;
        s->v[i].bytes = 1000 + (uint64_t)i;
    }
    size_t need = 0;
    ap_cache_kv_desc d = {.capacity = 2, .shards = 1, .release = k_release, .ctx = s};
    VF_CHECK(ap_cache_kv_bytes(&d, &need) == AP_OK && need <= sizeof s->mem);
    VF_CHECK(ap_cache_kv_init(&s->c, s->mem, sizeof s->mem, &d) == AP_OK);
    VF_CHECK(ap_cache_kv_put(&s->c, ap_cache_key_of(&s->key[0], 1), &s->v[0], 1) == AP_OK);
    return s;
}

static void k_thread(void *p, int id)
{
    kst *s = p;
    if (id == 0) {
        ap_cache_kv_pin pin;
        if (ap_cache_kv_get(&s->c, ap_cache_key_of(&s->key[0], 1), &pin) == AP_OK) {
            kvv *v = pin.value;
            VF_DATA_READ(&v->bytes, sizeof v->bytes);
            uint64_t b1 = v->bytes;
            vf_yield(); /* others run while we hold the pin */
            VF_DATA_READ(&v->bytes, sizeof v->bytes);
            uint64_t b2 = v->bytes;
            VF_CHECK(!v->freed && b1 == 1000 + (uint64_t)v->id && b2 == b1,
                     "value %d released while pinned", v->id);
            ap_cache_kv_unpin(&s->c, &pin);
        }
    } else {
        VF_CHECK(ap_cache_kv_put(&s->c, ap_cache_key_of(&s->key[1], 1), &s->v[1], 1) == AP_OK);
        VF_CHECK(ap_cache_kv_remove(&s->c, ap_cache_key_of(&s->key[0], 1)) == AP_OK);
    }
}

static void k_check(void *p)
{
    kst *s = p;
    VF_CHECK(s->v[0].releases == 1 && s->v[0].cause == AP_CACHE_CAUSE_REPLACED,
             "value 0: %d releases, cause %d", s->v[0].releases, s->v[0].cause);
    VF_CHECK(s->v[1].releases == 1 && s->v[1].cause == AP_CACHE_CAUSE_EXPLICIT,
             "value 1: %d releases, cause %d", s->v[1].releases, s->v[1].cause);
    ap_cache_kv_stats st;
    ap_cache_kv_stats_get(&s->c, &st);
    VF_CHECK(st.len == 0 && st.weight == 0 && st.released == 2);
    ap_cache_kv_fini(&s->c);
}

/* ---- ap_cache_kv: an expiry racing a pinned reader ----
 * The entry "k" (put at 0, expire_after_write 100) is pinned by T0 at 50,
 * whose reads of the value's bytes straddle a yield. T1 runs maintain at
 * 100 and gets "k" at 100 (before or after the maintain). Theorems, in
 * every interleaving: T1's get at the deadline misses (hard expiry), the
 * value is released exactly once, with cause EXPIRED, never while T0's
 * pin is held (the C11 mode's race detector watches the bytes). */
static void *e_setup(void)
{
    kst *s = aligned_alloc(AP_CACHELINE, sizeof(kst));
    memset(s, 0, sizeof *s);
    s->key[0] = 'k';
    s->v[0].bytes = 1000;
    size_t need = 0;
    ap_cache_kv_desc d = {.capacity = 2, .shards = 1, .release = k_release, .ctx = s,
                          .expire_after_write = 100, .max_loads = 1, .max_key_len = 8};
    VF_CHECK(ap_cache_kv_bytes(&d, &need) == AP_OK && need <= sizeof s->mem);
    VF_CHECK(ap_cache_kv_init(&s->c, s->mem, sizeof s->mem, &d) == AP_OK);
    VF_CHECK(ap_cache_kv_put_ttl(&s->c, ap_cache_key_of(&s->key[0], 1), &s->v[0], 1, 0, 0) ==
             AP_OK);
    return s;
}

static void e_thread(void *p, int id)
{
    kst *s = p;
    ap_cache_kv_pin pin;
    if (id == 0) {
        /* (a miss when T1's maintain ran first: reclaimed already) */
        if (ap_cache_kv_get_at(&s->c, ap_cache_key_of(&s->key[0], 1), &pin, 50) != AP_OK)
            return;
        kvv *v = pin.value;
        VF_DATA_READ(&v->bytes, sizeof v->bytes);
        uint64_t b1 = v->bytes;
        vf_yield();
        VF_DATA_READ(&v->bytes, sizeof v->bytes);
        VF_CHECK(!v->freed && b1 == 1000 && v->bytes == b1, "released while pinned");
        ap_cache_kv_unpin(&s->c, &pin);
    } else {
        if (ap_cache_kv_get_at(&s->c, ap_cache_key_of(&s->key[0], 1), &pin, 100) == AP_OK) {
            s->bad++; /* an expired entry returned */
            ap_cache_kv_unpin(&s->c, &pin);
        }
        VF_CHECK(ap_cache_kv_maintain(&s->c, 100) == 1);
        VF_CHECK(ap_cache_kv_get_at(&s->c, ap_cache_key_of(&s->key[0], 1), &pin, 100) ==
                 AP_EMPTY);
    }
}

static void e_check(void *p)
{
    kst *s = p;
    VF_CHECK(s->bad == 0, "a get at the deadline returned the expired entry");
    VF_CHECK(s->v[0].releases == 1 && s->v[0].cause == AP_CACHE_CAUSE_EXPIRED,
             "%d releases, cause %d", s->v[0].releases, s->v[0].cause);
    ap_cache_kv_stats st;
    ap_cache_kv_stats_get(&s->c, &st);
    VF_CHECK(st.len == 0 && st.weight == 0 && st.expired == 1);
    ap_cache_kv_fini(&s->c);
}

/* ---- ap_cache_kv: single flight ----
 * T0 and T1 get_or_load "k" (each from its own key buffer), T2 completes
 * every load the loader was asked for (with a durable key). Theorems, in
 * every interleaving: one load (the second miss finds the load in flight,
 * or finds the value); both waiters get a pin of the loaded value, read
 * it while pinned and unpin; in the cancel scenario T0 polls once and
 * cancels, leaving the load to T1 (a pin taken for it is dropped); at the
 * end every slot is free, nobody waits, and fini releases the value once. */
typedef struct kl {
    kst k;
    int calls, completed, done, cancel;
    char keys[2][2];
} kl;

static void kl_load(void *ctx, ap_cache_kv *c, ap_cache_key key)
{
    kl *s = ctx;
    (void)c;
    VF_CHECK(key.len == 1 && *(const char *)key.bytes == 'k');
    s->calls++;
}

static void *kl_setup_with(int cancel)
{
    kl *s = aligned_alloc(AP_CACHELINE, sizeof(kl));
    memset(s, 0, sizeof *s);
    s->cancel = cancel;
    s->k.key[0] = 'k';
    s->k.v[0].bytes = 1000;
    s->keys[0][0] = s->keys[1][0] = 'k';
    size_t need = 0;
    ap_cache_kv_desc d = {.capacity = 2, .shards = 1, .release = k_release, .ctx = &s->k,
                          .max_loads = 2, .max_key_len = 8};
    VF_CHECK(ap_cache_kv_bytes(&d, &need) == AP_OK && need <= sizeof s->k.mem);
    VF_CHECK(ap_cache_kv_init(&s->k.c, s->k.mem, sizeof s->k.mem, &d) == AP_OK);
    return s;
}
static void *kl_setup(void) { return kl_setup_with(0); }
static void *kl_setup_cancel(void) { return kl_setup_with(1); }

static void kl_thread(void *p, int id)
{
    kl *s = p;
    if (id == 2) {
        while (s->done < 2) {
            if (s->calls > s->completed) {
                VF_CHECK(ap_cache_kv_load_complete(&s->k.c, ap_cache_key_of(&s->k.key[0], 1), AP_OK,
                                                   &s->k.v[0], 1, 0) == AP_OK);
                s->completed++;
            } else {
                vf_yield();
            }
        }
        return;
    }
    ap_cache_kv_pin pin = {NULL, 0, 0};
    ap_cache_kv_load_fut f;
    ap_cache_kv_get_or_load(&f, &s->k.c, ap_cache_key_of(s->keys[id], 1), &pin,
                            (ap_cache_kv_loader){kl_load, s});
    if (id == 0 && s->cancel) {
        if (vf_poll(&f.base) == AP_PENDING) {
            ap_cache_kv_load_cancel(&f);
            VF_CHECK(ap_cache_kv_load_status(&f) == AP_CANCELED && pin.value == NULL);
        }
    } else {
        vf_wait(&f.base);
    }
    if (ap_cache_kv_load_status(&f) == AP_OK) {
        kvv *v = pin.value;
        VF_CHECK(v == &s->k.v[0]);
        VF_DATA_READ(&v->bytes, sizeof v->bytes);
        VF_CHECK(!v->freed && v->bytes == 1000, "released while pinned");
        ap_cache_kv_unpin(&s->k.c, &pin);
    } else {
        VF_CHECK(ap_cache_kv_load_status(&f) == AP_CANCELED);
    }
    s->done++;
}

static void kl_check(void *p)
{
    kl *s = p;
    VF_CHECK(s->calls == 1 && s->completed == 1, "%d loads for one key", s->calls);
    ap_cache_kv_stats st;
    ap_cache_kv_stats_get(&s->k.c, &st);
    VF_CHECK(st.loads == 1 && st.len == 1);
    for (uint32_t i = 0; i < s->k.c.fl.n; i++) {
        ap__cache_load *l = ap__cache_slot(&s->k.c.fl, i);
        VF_CHECK(l->state == AP__CACHE_L_FREE && l->refs == 0);
        VF_CHECK(!ap_waitlist_has_waiters(&l->wl));
    }
    VF_CHECK(!ap_waitlist_has_waiters(&s->k.c.fl.lwait));
    VF_CHECK(s->k.v[0].releases == 0, "released while cached");
    ap_cache_kv_fini(&s->k.c); /* fails (AP_ASSERT) if a pin was left */
    VF_CHECK(s->k.v[0].releases == 1 && s->k.v[0].cause == AP_CACHE_CAUSE_EXPLICIT);
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
    static const struct {
        const char *name;
        void *(*setup)(void);
    } ls[] = {{"cache_single_flight", l_setup_ok},
              {"cache_single_flight_failure", l_setup_fail},
              {"cache_single_flight_cancel", l_setup_cancel}};
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
        vf_scenario sc = {.nthreads = 3, .bound = 2, .setup = ls[i].setup, .thread = l_thread,
                          .check = l_check, .teardown = free};
        sc.name = ls[i].name;
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .tso = tso, .bound = 3, .setup = k_setup,
                          .thread = k_thread, .check = k_check, .teardown = free};
        sc.name = tso ? "cache_kv_retire_after_unpin_tso" : "cache_kv_retire_after_unpin";
        total += vf_explore(&sc);
    }
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.nthreads = 2, .tso = tso, .bound = 3, .setup = e_setup,
                          .thread = e_thread, .check = e_check, .teardown = free};
        sc.name = tso ? "cache_kv_expire_vs_pinned_tso" : "cache_kv_expire_vs_pinned";
        total += vf_explore(&sc);
    }
    static const struct {
        const char *name;
        void *(*setup)(void);
    } kls[] = {{"cache_kv_single_flight", kl_setup}, {"cache_kv_single_flight_cancel", kl_setup_cancel}};
    for (size_t i = 0; i < sizeof kls / sizeof kls[0]; i++) {
        vf_scenario sc = {.nthreads = 3, .bound = 2, .setup = kls[i].setup, .thread = kl_thread,
                          .check = kl_check, .teardown = free};
        sc.name = kls[i].name;
        total += vf_explore(&sc);
    }
    printf("verify_cache: %lu executions\n", total);
    return 0;
}
