/*
 * verify_pool.c -- the object pool under every interleaving within the
 * preemption bound (SC and x86-TSO)
 *
 *   exclusive    no object is held by two threads at once (checked after
 *                every step by the invariant, from the test's own holder
 *                counts)
 *   conserved    at the end every object is idle, the idle stack holds
 *                each exactly once, nobody is queued; also when a future
 *                that was granted an object cancels (the object goes on)
 *   no lost wake every thread that waits completes (vf_wait parks until
 *                its waker runs: a lost wakeup is a deadlock the scheduler
 *                reports)
 *
 * Each thread gets one object (thread 0 with try_get when it can, the
 * others with a future), holds it across a yield, and puts it back;
 * in the cancel scenarios thread 2 polls its future once and cancels it
 * if it is still pending.
 */
#include "vf.h"
#include "asyncpat/pool.h"

#define VP_MAX 2

typedef struct pst {
    ap_pool pool;
    int objs[VP_MAX];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(VP_MAX)];
    int holders[VP_MAX]; /* plain: one OS thread */
    int done;
} pst;

static int pool_n, pool_threads;

static void *pool_setup(void)
{
    pst *s = calloc(1, sizeof *s);
    VF_CHECK(ap_pool_init(&s->pool, s->st, sizeof s->st, s->objs, sizeof s->objs,
                          (size_t)pool_n, sizeof(int)) == AP_OK);
    return s;
}

static void pool_teardown(void *p) { free(p); }

static void hold(pst *s, void *v)
{
    size_t k;
    VF_CHECK(ap_pool_index(&s->pool, v, &k) == AP_OK, "not an object");
    s->holders[k]++;
    vf_yield(); /* others run while we hold */
    s->holders[k]--;
    VF_CHECK(ap_pool_put(&s->pool, v) == AP_OK);
}

static void pool_thread(void *p, int id)
{
    pst *s = p;
    void *v = NULL;
    if (id == 0 && ap_pool_try_get(&s->pool, &v) == AP_OK) {
        hold(s, v);
        s->done++;
        return;
    }
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &s->pool, &v);
    vf_wait(&f.base);
    VF_CHECK(ap_pool_get_status(&f) == AP_OK, "status %d", ap_pool_get_status(&f));
    hold(s, v);
    s->done++;
}

/* thread 2 polls once and cancels if pending: a grant that reached it in
 * between must go on to the others (or back to idle) */
static void pool_cancel_thread(void *p, int id)
{
    pst *s = p;
    if (id != 2) {
        pool_thread(p, id);
        return;
    }
    void *v = NULL;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &s->pool, &v);
    if (vf_poll(&f.base) == AP_READY) {
        VF_CHECK(ap_pool_get_status(&f) == AP_OK);
        hold(s, v);
    } else {
        ap_pool_get_cancel(&f);
        VF_CHECK(ap_pool_get_status(&f) == AP_CANCELED);
        VF_CHECK(v == NULL, "a cancelled future wrote its out-pointer");
    }
    s->done++;
}

static void pool_invariant(void *p)
{
    pst *s = p;
    for (int k = 0; k < pool_n; k++)
        VF_CHECK(s->holders[k] <= 1, "object %d held by %d threads", k, s->holders[k]);
}

static void pool_check(void *p)
{
    pst *s = p;
    VF_CHECK(s->done == pool_threads, "%d of %d threads done", s->done, pool_threads);
    for (int k = 0; k < pool_n; k++)
        VF_CHECK(s->holders[k] == 0);
    VF_CHECK(ap_pool_idle(&s->pool) == (size_t)pool_n, "idle %zu of %d", ap_pool_idle(&s->pool),
             pool_n);
    VF_CHECK(!ap_waitlist_has_waiters(&s->pool.wl), "a waiter left queued");
    /* the idle stack holds each object once */
    uint64_t h = atomic_load(&s->pool.head);
    uint32_t top = (uint32_t)(h & 0xffffffffu);
    int seen[VP_MAX] = {0}, k = 0;
    while (top != 0) {
        VF_CHECK(top <= (uint32_t)pool_n && seen[top - 1]++ == 0, "idle stack corrupt");
        k++;
        top = atomic_load(&s->pool.state[top - 1]);
    }
    VF_CHECK(k == pool_n, "%d of %d objects on the idle stack", k, pool_n);
}

int main(void)
{
    unsigned long total = 0;
    for (int tso = 0; tso <= 1; tso++) {
        vf_scenario sc = {.tso = tso, .setup = pool_setup, .thread = pool_thread,
                          .invariant = pool_invariant, .check = pool_check,
                          .teardown = pool_teardown};
        pool_n = 1, pool_threads = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "pool_1obj_2threads_tso" : "pool_1obj_2threads";
        total += vf_explore(&sc);
        pool_n = 1, pool_threads = 3;
        sc.nthreads = 3, sc.bound = 2;
        sc.name = tso ? "pool_1obj_3threads_tso" : "pool_1obj_3threads";
        total += vf_explore(&sc);
        sc.thread = pool_cancel_thread;
        sc.name = tso ? "pool_1obj_cancel_tso" : "pool_1obj_cancel";
        total += vf_explore(&sc);
        pool_n = 2;
        sc.name = tso ? "pool_2objs_cancel_tso" : "pool_2objs_cancel";
        total += vf_explore(&sc);
        sc.thread = pool_thread;
        sc.name = tso ? "pool_2objs_3threads_tso" : "pool_2objs_3threads";
        total += vf_explore(&sc);
        pool_n = 2, pool_threads = 2;
        sc.nthreads = 2, sc.bound = 3;
        sc.name = tso ? "pool_2objs_2threads_tso" : "pool_2objs_2threads";
        total += vf_explore(&sc);
    }
    printf("verify_pool: %lu executions\n", total);
    return 0;
}
