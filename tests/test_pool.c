/*
 * tests/test_pool.c -- the object pool whose gets wait (FIFO) instead of failing
 */
#include "asyncpat/pool.h"
#include "test_util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */

static ap_poll poll1(ap_pool_get_fut *f, tw *t)
{
    ap_cx cx = {{tw_wake, t}, 0, AP_DEADLINE_NONE};
    return ap_pool_get_poll(f, &cx);
}

static size_t waiters(ap_pool *p) { return atomic_load(&p->wl.count); }

#define NOBJ 4
typedef struct obj {
    int id;
    int payload;
} obj;

/* a pool over NOBJ objs, id = index */
typedef struct fixture {
    ap_pool p;
    obj o[NOBJ];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(NOBJ)];
} fixture;

static void fx_init(fixture *fx, size_t n)
{
    memset(fx, 0, sizeof *fx);
    for (int i = 0; i < NOBJ; i++)
        fx->o[i].id = i;
    EXPECT_EQ(ap_pool_init(&fx->p, fx->st, sizeof fx->st, fx->o, sizeof fx->o, n, sizeof(obj)),
              AP_OK);
}

static obj *get_ok(ap_pool *p)
{
    void *v = NULL;
    EXPECT_EQ(ap_pool_try_get(p, &v), AP_OK);
    EXPECT_NOT_NULL(v);
    return v;
}

/* At quiescence: walk the idle stack; every idle object is on it exactly
 * once, and the number on it is idle(). */
static size_t walk_idle(ap_pool *p)
{
    uint64_t h = atomic_load(&p->head);
    uint32_t top = (uint32_t)(h & 0xffffffffu);
    unsigned char seen[64] = {0};
    size_t k = 0;
    while (top != 0) {
        EXPECT_LE(top, p->n, "link out of range");
        EXPECT_EQ(seen[top - 1], 0, "object %u twice on the idle stack", top - 1);
        seen[top - 1] = 1;
        k++;
        top = atomic_load(&p->state[top - 1]);
    }
    EXPECT_EQ(k, ap_pool_idle(p), "stack length vs idle()");
    return k;
}

/* ---- configuration ---- */

Test(pool, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { N = 4 };
    static obj o[N + 1];
    static uint32_t words[N + 2];
    unsigned char *st = (unsigned char *)words, *ob = (unsigned char *)o;
    const size_t sneed = AP_POOL_STATE_BYTES(N), oneed = AP_POOL_OBJS_BYTES(N, sizeof(obj));
    _Static_assert(AP_POOL_STATE_BYTES(N) == N * 4 && AP_POOL_OBJS_BYTES(N, 8) == N * 8 &&
                       AP_POOL_STATE_ALIGN == _Alignof(uint32_t),
                   "constant expressions");
    static char as_array_size[AP_POOL_STATE_ALIGN];
    EXPECT_EQ(sizeof as_array_size, _Alignof(uint32_t));
    struct {
        void *st; size_t sb; void *ob; size_t obb; size_t n, sz; const char *what;
    } cases[] = {
        {NULL, sizeof words, ob, sizeof o, N, sizeof(obj), "state NULL"},
        {st, sizeof words, NULL, sizeof o, N, sizeof(obj), "objs NULL"},
        {st, sneed - 1, ob, sizeof o, N, sizeof(obj), "state one byte short"},
        {st, sneed - 4, ob, sizeof o, N, sizeof(obj), "state one word short"},
        {st, 0, ob, sizeof o, N, sizeof(obj), "state zero bytes"},
        {st, sizeof words, ob, oneed - 1, N, sizeof(obj), "objs one byte short"},
        {st, sizeof words, ob, oneed - sizeof(obj), N, sizeof(obj), "objs one object short"},
        {st, sizeof words, ob, 0, N, sizeof(obj), "objs zero bytes"},
        {st + 1, sizeof words - 1, ob, sizeof o, N, sizeof(obj), "state misaligned by 1"},
        {st + 2, sizeof words - 2, ob, sizeof o, N, sizeof(obj), "state misaligned by 2"},
        {st, sizeof words, ob, sizeof o, 0, sizeof(obj), "n 0"},
        {st, SIZE_MAX, ob, SIZE_MAX, AP_POOL_MAX + 1, 1, "n above AP_POOL_MAX"},
        {st, sizeof words, ob, sizeof o, N, 0, "obj_size 0"},
        {st, sizeof words, ob, SIZE_MAX, N, SIZE_MAX / 2, "objs bytes overflow"},
        {st, sizeof words, (void *)(UINTPTR_MAX - 8), SIZE_MAX, 1, 16, "array wraps"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_pool p;
        static unsigned char p_before[sizeof(ap_pool)], s_before[sizeof words],
            o_before[sizeof o];
        memset(&p, 0xA5, sizeof p);
        memset(st, 0x5A, sizeof words);
        memset(ob, 0xC3, sizeof o);
        memcpy(p_before, &p, sizeof p);
        memcpy(s_before, st, sizeof words);
        memcpy(o_before, ob, sizeof o);
        EXPECT_EQ(ap_pool_init(&p, cases[i].st, cases[i].sb, cases[i].ob, cases[i].obb,
                               cases[i].n, cases[i].sz),
                  AP_INVAL, "%s", cases[i].what);
        EXPECT(memcmp(p_before, &p, sizeof p) == 0, "%s: the pool changed", cases[i].what);
        EXPECT(memcmp(s_before, st, sizeof words) == 0, "%s: the state changed", cases[i].what);
        EXPECT(memcmp(o_before, ob, sizeof o) == 0, "%s: the objects changed", cases[i].what);
    }
    /* exactly enough works; the excess of either buffer is not touched */
    ap_pool p;
    memset(st, 0x5A, sizeof words);
    memset(ob, 0xC3, sizeof o);
    EXPECT_EQ(ap_pool_init(&p, st, sneed, ob, oneed, N, sizeof(obj)), AP_OK);
    EXPECT_EQ(ap_pool_capacity(&p), N);
    EXPECT_EQ(ap_pool_idle(&p), N);
    EXPECT_EQ(ap_pool_in_use(&p), 0);
    EXPECT_NOT(ap_pool_is_closed(&p));
    void *v[N];
    for (int k = 0; k < N; k++) {
        EXPECT_EQ(ap_pool_try_get(&p, &v[k]), AP_OK);
        EXPECT((unsigned char *)v[k] >= ob && (unsigned char *)v[k] < ob + oneed);
    }
    for (int k = 0; k < N; k++)
        EXPECT_EQ(ap_pool_put(&p, v[k]), AP_OK);
    for (size_t i = sneed; i < sizeof words; i++)
        EXPECT_EQ(st[i], 0x5A, "state byte %zu past the buffer written", i);
    for (size_t i = 0; i < sizeof o; i++)
        EXPECT_EQ(ob[i], 0xC3, "object byte %zu written (the pool never touches them)", i);
    ap_pool_fini(&p);
}

/* Regression (issue #11): ap_pool_init(p, state, objs, n, obj_size) took no
 * sizes, so the two buffers passed in swapped order were AP_OK whenever the
 * object array happened to be 4-byte aligned: init wrote its state words
 * into the objects, and the pool lent slices of its own state buffer (the
 * first put then overwrote that state). With each buffer's size checked
 * against its own requirement, a swap of buffers of different sizes is
 * AP_INVAL and touches neither. */
Test(pool, swapped_state_and_objects_are_inval)
{
    enum { N = 4 };
    typedef struct big { uint64_t a, b; } big; /* 16 bytes: objs 64, state 16 */
    static big objs[N];
    static _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(N)];
    _Static_assert(sizeof objs != sizeof st, "the swap must change the sizes");
    memset(objs, 0xC3, sizeof objs);
    memset(st, 0x5A, sizeof st);
    static unsigned char o_before[sizeof objs], s_before[sizeof st];
    memcpy(o_before, objs, sizeof objs);
    memcpy(s_before, st, sizeof st);
    ap_pool p, p_before;
    memset(&p, 0xA5, sizeof p);
    memcpy(&p_before, &p, sizeof p);
    EXPECT_EQ(ap_pool_init(&p, objs, sizeof objs, st, sizeof st, N, sizeof(big)), AP_INVAL,
              "state and objects swapped");
    EXPECT(memcmp(&p_before, &p, sizeof p) == 0, "the pool changed");
    EXPECT(memcmp(o_before, objs, sizeof objs) == 0, "the objects were written");
    EXPECT(memcmp(s_before, st, sizeof st) == 0, "the state buffer was written");
    /* in the right order it is a pool over the objects */
    EXPECT_EQ(ap_pool_init(&p, st, sizeof st, objs, sizeof objs, N, sizeof(big)), AP_OK);
    void *v = NULL;
    EXPECT_EQ(ap_pool_try_get(&p, &v), AP_OK);
    EXPECT(v == (void *)&objs[0]);
    EXPECT_EQ(ap_pool_put(&p, v), AP_OK);
    EXPECT(memcmp(o_before, objs, sizeof objs) == 0, "the objects were written");
    ap_pool_fini(&p);
}

Test(pool, create_and_destroy_use_the_allocator)
{
    counting c = {0};
    ap_allocator a = {cnt_alloc, cnt_free, &c};
    ap_pool *p = (ap_pool *)(uintptr_t)1;
    EXPECT_EQ(ap_pool_create(&p, 0, 8, &a), AP_INVAL);
    EXPECT_EQ(ap_pool_create(&p, 4, 0, &a), AP_INVAL);
    EXPECT_EQ(ap_pool_create(&p, AP_POOL_MAX + 1, 8, &a), AP_INVAL);
    EXPECT_EQ(ap_pool_create(&p, AP_POOL_MAX, SIZE_MAX / 4, &a), AP_INVAL, "overflow");
    EXPECT_EQ(ap_pool_create(&p, 4, 8, &(ap_allocator){cnt_alloc, NULL, &c}), AP_INVAL);
    EXPECT_EQ(c.allocs, 0, "allocated on AP_INVAL");
    c.fail = true;
    EXPECT_EQ(ap_pool_create(&p, 4, 8, &a), AP_NOMEM);
    EXPECT_EQ(p, (ap_pool *)(uintptr_t)1, "out written on failure");
    c.fail = false;
    EXPECT_EQ(c.allocs, 1);
    EXPECT_EQ(c.frees, 0);
    EXPECT_EQ(ap_pool_create(&p, 5, 24, &a), AP_OK);
    EXPECT_EQ(c.allocs, 2);
    EXPECT_EQ(c.align, AP_CACHELINE);
    EXPECT_EQ((uintptr_t)ap_pool_obj(p, 0) % AP_CACHELINE, 0, "objects start on a line");
    for (size_t i = 0; i < 5; i++) {
        unsigned char *b = ap_pool_obj(p, i);
        for (int k = 0; k < 24; k++)
            EXPECT_EQ(b[k], 0, "object %zu not zeroed", i);
        EXPECT((unsigned char *)ap_pool_obj(p, i) + 24 <= (unsigned char *)c.ptr + c.size);
    }
    void *v[5];
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(ap_pool_try_get(p, &v[i]), AP_OK);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(ap_pool_put(p, v[i]), AP_OK);
    ap_pool_destroy(p);
    EXPECT_EQ(c.frees, 1);
    EXPECT_EQ(c.freed_ptr, c.ptr);
    EXPECT_EQ(c.freed_size, c.size);
    ap_pool_destroy(NULL);
    /* the default allocator */
    EXPECT_EQ(ap_pool_create(&p, 3, 100, NULL), AP_OK);
    EXPECT_EQ(ap_pool_idle(p), 3);
    ap_pool_destroy(p);
}

Test(pool, fini_then_destroy_frees_once)
{
    counting c = {0};
    ap_allocator a = {cnt_alloc, cnt_free, &c};
    ap_pool *p = NULL;
    EXPECT_EQ(ap_pool_create(&p, 3, 40, &a), AP_OK);
    void *v;
    EXPECT_EQ(ap_pool_try_get(p, &v), AP_OK);
    EXPECT_EQ(ap_pool_put(p, v), AP_OK);
    ap_pool_fini(p); /* then destroy: must not fini again, must free it all */
    ap_pool_destroy(p);
    EXPECT_EQ(c.frees, 1);
    EXPECT_EQ(c.freed_ptr, c.ptr);
    EXPECT_EQ(c.freed_size, c.size);
}

/* ---- try_get / put ---- */

Test(pool, gets_lend_in_index_order_then_empty_and_puts_are_lifo)
{
    fixture fx;
    fx_init(&fx, NOBJ);
    for (int i = 0; i < NOBJ; i++) {
        obj *o = get_ok(&fx.p);
        EXPECT_EQ(o, &fx.o[i]);
        EXPECT_EQ(ap_pool_in_use(&fx.p), (size_t)i + 1);
    }
    void *v = (void *)(uintptr_t)7;
    EXPECT_EQ(ap_pool_try_get(&fx.p, &v), AP_EMPTY);
    EXPECT_EQ(v, (void *)(uintptr_t)7, "out written on AP_EMPTY");
    EXPECT_EQ(ap_pool_idle(&fx.p), 0);
    EXPECT_EQ(ap_pool_put(&fx.p, &fx.o[2]), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, &fx.o[0]), AP_OK);
    EXPECT_EQ(ap_pool_idle(&fx.p), 2);
    EXPECT_EQ(get_ok(&fx.p), &fx.o[0], "the last one put is lent first");
    EXPECT_EQ(get_ok(&fx.p), &fx.o[2]);
    for (int i = 0; i < NOBJ; i++)
        EXPECT_EQ(ap_pool_put(&fx.p, &fx.o[i]), AP_OK);
    EXPECT_EQ(walk_idle(&fx.p), NOBJ);
    EXPECT_EQ(ap_pool_try_get(&fx.p, NULL), AP_INVAL);
    EXPECT_EQ(ap_pool_idle(&fx.p), NOBJ, "a NULL out took something");
    ap_pool_fini(&fx.p);
}

Test(pool, bad_puts_are_inval_and_change_nothing)
{
    fixture fx;
    static obj foreign;
    fx_init(&fx, 3); /* o[3] is outside this pool */
    obj *a = get_ok(&fx.p), *b = get_ok(&fx.p);
    EXPECT_EQ(a, &fx.o[0]);
    EXPECT_EQ(b, &fx.o[1]);
    void *bad[] = {NULL, &foreign, &fx.o[3], (char *)&fx.o[0] + 1, (char *)&fx.o[1] - 4,
                   (char *)&fx.o[0] - sizeof(obj), &fx.o[2] /* idle: never lent */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT_EQ(ap_pool_put(&fx.p, bad[i]), AP_INVAL, "bad put %zu", i);
        EXPECT_EQ(ap_pool_idle(&fx.p), 1, "bad put %zu changed the pool", i);
        EXPECT_EQ(walk_idle(&fx.p), 1);
    }
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_INVAL, "double put");
    EXPECT_EQ(ap_pool_idle(&fx.p), 2);
    EXPECT_EQ(walk_idle(&fx.p), 2, "a double put linked the object twice");
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_OK);
    EXPECT_EQ(walk_idle(&fx.p), 3);
    /* index / obj */
    size_t i = 99;
    EXPECT_EQ(ap_pool_index(&fx.p, &fx.o[2], &i), AP_OK);
    EXPECT_EQ(i, 2);
    EXPECT_EQ(ap_pool_obj(&fx.p, 1), &fx.o[1]);
    i = 99;
    EXPECT_EQ(ap_pool_index(&fx.p, &fx.o[3], &i), AP_INVAL);
    EXPECT_EQ(ap_pool_index(&fx.p, (char *)&fx.o[1] + 2, &i), AP_INVAL);
    EXPECT_EQ(ap_pool_index(&fx.p, &fx.o[1], NULL), AP_INVAL);
    EXPECT_EQ(i, 99, "index written on AP_INVAL");
    ap_pool_fini(&fx.p);
}

Test(pool, object_size_not_a_power_of_two)
{
    static unsigned char arr[5 * 12];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(5)];
    ap_pool p;
    EXPECT_EQ(ap_pool_init(&p, st, sizeof st, arr, sizeof arr, 5, 12), AP_OK);
    void *v[5];
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(ap_pool_try_get(&p, &v[i]), AP_OK);
        EXPECT_EQ(v[i], arr + 12 * i);
    }
    EXPECT_EQ(ap_pool_put(&p, arr + 6), AP_INVAL, "inside an object");
    EXPECT_EQ(ap_pool_put(&p, arr + 60), AP_INVAL, "one past the end");
    for (int i = 4; i >= 0; i--)
        EXPECT_EQ(ap_pool_put(&p, v[i]), AP_OK);
    EXPECT_EQ(walk_idle(&p), 5);
    ap_pool_fini(&p);
}

/* ---- futures: FIFO, direct hand-off ---- */

Test(pool, put_hands_objects_to_queued_futures_in_fifo_order)
{
    fixture fx;
    fx_init(&fx, 2);
    obj *a = get_ok(&fx.p), *b = get_ok(&fx.p);
    wake_log log = {0};
    tw t[4];
    ap_pool_get_fut f[4];
    void *out[4] = {0};
    for (int i = 0; i < 4; i++) {
        t[i] = (tw){0, i, &log};
        ap_pool_get_fut_init(&f[i], &fx.p, &out[i]);
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_PENDING, "future %d", i);
        EXPECT_EQ(ap_pool_get_status(&f[i]), AP_NOT_READY);
    }
    EXPECT_EQ(waiters(&fx.p), 4);
    /* re-polling a waiting future does not jump the queue */
    EXPECT_EQ(poll1(&f[2], &t[2]), AP_PENDING);
    EXPECT_EQ(waiters(&fx.p), 4, "re-poll registered twice");
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_OK);
    EXPECT_EQ(atomic_load(&log.n), 1);
    EXPECT_EQ(log.order[0], 0, "not the oldest future");
    EXPECT_EQ(ap_pool_idle(&fx.p), 0, "a put with waiters made the object idle");
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_INVAL, "a put of a granted object");
    EXPECT_EQ(poll1(&f[0], &t[0]), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f[0]), AP_OK);
    EXPECT_EQ(out[0], b, "not handed over directly");
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(log.order[1], 1);
    /* while futures wait, try_get and a fresh future never barge */
    EXPECT_EQ(ap_pool_put(&fx.p, out[0]), AP_OK);
    EXPECT_EQ(log.order[2], 2);
    void *v = NULL;
    EXPECT_EQ(ap_pool_try_get(&fx.p, &v), AP_EMPTY, "barged past the queue");
    tw tl = {0, 9, &log};
    void *lout = NULL;
    ap_pool_get_fut late;
    ap_pool_get_fut_init(&late, &fx.p, &lout);
    EXPECT_EQ(poll1(&late, &tl), AP_PENDING);
    for (int i = 1; i <= 2; i++) {
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_READY);
        EXPECT_EQ(ap_pool_get_status(&f[i]), AP_OK);
    }
    EXPECT_EQ(ap_pool_put(&fx.p, out[1]), AP_OK);
    EXPECT_EQ(log.order[3], 3);
    EXPECT_EQ(ap_pool_put(&fx.p, out[2]), AP_OK);
    EXPECT_EQ(log.order[4], 9, "the late future was not last");
    EXPECT_EQ(poll1(&f[3], &t[3]), AP_READY);
    EXPECT_EQ(poll1(&late, &tl), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&late), AP_OK);
    EXPECT_NE(out[3], lout);
    EXPECT_EQ(ap_pool_put(&fx.p, out[3]), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, lout), AP_OK);
    EXPECT_EQ(walk_idle(&fx.p), 2, "objects not conserved");
    EXPECT_EQ(waiters(&fx.p), 0);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(calls(&t[i]), 1, "future %d woken %d times", i, calls(&t[i]));
    ap_pool_fini(&fx.p);
}

Test(pool, first_poll_takes_an_idle_object_at_once)
{
    fixture fx;
    fx_init(&fx, 1);
    tw t = {0};
    void *out = NULL;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, &out);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f), AP_OK);
    EXPECT_EQ(out, &fx.o[0]);
    EXPECT_EQ(poll1(&f, &t), AP_READY, "a completed future polls READY again");
    EXPECT_EQ(waiters(&fx.p), 0);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(ap_pool_put(&fx.p, out), AP_OK);
    ap_pool_fini(&fx.p);
}

/* ---- cancellation ---- */

Test(pool, cancel_after_grant_passes_the_object_on)
{
    fixture fx;
    fx_init(&fx, 1);
    obj *a = get_ok(&fx.p);
    tw ta = {0}, tb = {0};
    void *oa = NULL, *ob = NULL;
    ap_pool_get_fut fa, fb;
    ap_pool_get_fut_init(&fa, &fx.p, &oa);
    ap_pool_get_fut_init(&fb, &fx.p, &ob);
    EXPECT_EQ(poll1(&fa, &ta), AP_PENDING);
    EXPECT_EQ(poll1(&fb, &tb), AP_PENDING);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(calls(&ta), 1);
    EXPECT_EQ(calls(&tb), 0);
    /* fa cancels before it saw its grant: the object goes on to fb */
    ap_pool_get_cancel(&fa);
    EXPECT_EQ(ap_pool_get_status(&fa), AP_CANCELED);
    EXPECT_NULL(oa, "a cancelled future wrote its out-pointer");
    EXPECT_EQ(calls(&tb), 1, "the cancelled grant was not passed on");
    ap_pool_get_cancel(&fa); /* idempotent */
    EXPECT_EQ(poll1(&fa, &ta), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&fa), AP_CANCELED);
    EXPECT_EQ(poll1(&fb, &tb), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&fb), AP_OK);
    EXPECT_EQ(ob, a);
    /* with nobody behind it, a cancelled grant goes back to idle */
    void *oc = NULL;
    tw tc = {0};
    ap_pool_get_fut fc;
    ap_pool_get_fut_init(&fc, &fx.p, &oc);
    EXPECT_EQ(poll1(&fc, &tc), AP_PENDING);
    EXPECT_EQ(ap_pool_put(&fx.p, ob), AP_OK);
    EXPECT_EQ(calls(&tc), 1);
    EXPECT_EQ(ap_pool_idle(&fx.p), 0);
    ap_pool_get_cancel(&fc);
    EXPECT_EQ(ap_pool_idle(&fx.p), 1, "a cancelled grant was lost");
    EXPECT_EQ(walk_idle(&fx.p), 1);
    EXPECT_EQ(waiters(&fx.p), 0);
    EXPECT_EQ(calls(&ta), 1);
    ap_pool_fini(&fx.p);
}

Test(pool, cancel_is_idempotent_and_no_wake_after_it)
{
    fixture fx;
    fx_init(&fx, 1);
    obj *a = get_ok(&fx.p);
    tw t = {0};
    void *out = NULL;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, &out);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    ap_pool_get_cancel(&f);
    ap_pool_get_cancel(&f);
    ap_future_cancel(&f.base); /* through the vtable too */
    EXPECT_EQ(waiters(&fx.p), 0);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    ap_pool_close(&fx.p);
    EXPECT_EQ(calls(&t), 0, "a cancelled waiter was woken");
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_pool_idle(&fx.p), 1);
    ap_pool_fini(&fx.p);
}

Test(pool, cancel_before_first_poll_and_after_completion)
{
    fixture fx;
    fx_init(&fx, 1);
    tw t = {0};
    void *out = NULL;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, &out);
    ap_pool_get_cancel(&f);
    EXPECT_EQ(ap_pool_get_status(&f), AP_CANCELED);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_pool_idle(&fx.p), 1, "a never-polled future took an object");
    ap_pool_get_fut_init(&f, &fx.p, &out);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f), AP_OK);
    ap_pool_get_cancel(&f); /* after completion: the caller keeps the object */
    EXPECT_EQ(ap_pool_get_status(&f), AP_OK);
    EXPECT_EQ(ap_pool_idle(&fx.p), 0);
    EXPECT_EQ(ap_pool_put(&fx.p, out), AP_OK);
    ap_pool_fini(&fx.p);
}

Test(pool, repoll_with_new_waker_replaces_old)
{
    fixture fx;
    fx_init(&fx, 1);
    obj *a = get_ok(&fx.p);
    tw ta = {0}, tb = {0};
    void *out = NULL;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, &out);
    EXPECT_EQ(poll1(&f, &ta), AP_PENDING);
    EXPECT_EQ(poll1(&f, &tb), AP_PENDING);
    EXPECT_EQ(waiters(&fx.p), 1);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(calls(&ta), 0, "the replaced waker was called");
    EXPECT_EQ(calls(&tb), 1);
    EXPECT_EQ(poll1(&f, &tb), AP_READY);
    EXPECT_EQ(out, a);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    ap_pool_fini(&fx.p);
}

/* ---- close ---- */

Test(pool, close_wakes_all_with_closed_and_puts_still_collect)
{
    fixture fx;
    fx_init(&fx, 2);
    obj *a = get_ok(&fx.p), *b = get_ok(&fx.p);
    tw t[3] = {{0}, {0}, {0}};
    void *out[3] = {0};
    ap_pool_get_fut f[3];
    for (int i = 0; i < 3; i++) {
        ap_pool_get_fut_init(&f[i], &fx.p, &out[i]);
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_PENDING);
    }
    /* f[0] is granted before the close: it completes AP_OK */
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    ap_pool_close(&fx.p);
    ap_pool_close(&fx.p); /* idempotent */
    EXPECT(ap_pool_is_closed(&fx.p));
    EXPECT_EQ(waiters(&fx.p), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(calls(&t[i]), 1, "future %d", i);
    EXPECT_EQ(poll1(&f[0], &t[0]), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f[0]), AP_OK, "granted before close");
    EXPECT_EQ(out[0], a);
    for (int i = 1; i < 3; i++) {
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_READY);
        EXPECT_EQ(ap_pool_get_status(&f[i]), AP_CLOSED);
        EXPECT_NULL(out[i]);
    }
    void *v = NULL;
    EXPECT_EQ(ap_pool_try_get(&fx.p, &v), AP_CLOSED);
    EXPECT_EQ(ap_pool_get_wait(&fx.p, &v, AP_DEADLINE_NONE), AP_CLOSED);
    ap_pool_get_fut g;
    ap_pool_get_fut_init(&g, &fx.p, &v);
    EXPECT_EQ(poll1(&g, &t[0]), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&g), AP_CLOSED);
    EXPECT_NULL(v);
    /* puts still work, so the owner collects every object */
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_INVAL, "double put after close");
    EXPECT_EQ(ap_pool_idle(&fx.p), 2);
    EXPECT_EQ(walk_idle(&fx.p), 2);
    ap_pool_fini(&fx.p);
}

/* ---- the reset hook ---- */

typedef struct reset_log {
    int calls;
    void *last;
} reset_log;

static void reset_obj(void *o, void *user)
{
    reset_log *r = user;
    r->calls++;
    r->last = o;
    ((obj *)o)->payload = -1; /* "clean" */
}

Test(pool, reset_hook_runs_once_per_accepted_put_before_handing_on)
{
    fixture fx;
    reset_log r = {0};
    fx_init(&fx, 1);
    ap_pool_set_reset(&fx.p, reset_obj, &r);
    obj *a = get_ok(&fx.p);
    a->payload = 42;
    EXPECT_EQ(r.calls, 0, "reset on get");
    tw t = {0}, t2 = {0};
    void *out = NULL, *out2 = NULL;
    ap_pool_get_fut f, f2;
    ap_pool_get_fut_init(&f, &fx.p, &out);
    ap_pool_get_fut_init(&f2, &fx.p, &out2);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    EXPECT_EQ(poll1(&f2, &t2), AP_PENDING);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(r.calls, 1);
    EXPECT_EQ(r.last, a);
    /* f is cancelled after its grant: passing it to f2 resets nothing */
    ap_pool_get_cancel(&f);
    EXPECT_EQ(r.calls, 1, "reset ran for a cancelled grant");
    EXPECT_EQ(poll1(&f2, &t2), AP_READY);
    EXPECT_EQ(out2, a);
    EXPECT_EQ(((obj *)out2)->payload, -1, "the waiter got an object that was not reset");
    EXPECT_EQ(ap_pool_put(&fx.p, NULL), AP_INVAL);
    EXPECT_EQ(ap_pool_put(&fx.p, &fx.o[1]), AP_INVAL);
    EXPECT_EQ(r.calls, 1, "reset ran for a refused put");
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_INVAL);
    EXPECT_EQ(r.calls, 2);
    ap_pool_set_reset(&fx.p, NULL, NULL);
    a = get_ok(&fx.p);
    a->payload = 7;
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(r.calls, 2);
    EXPECT_EQ(fx.o[0].payload, 7);
    ap_pool_fini(&fx.p);
}

/* ---- blocking waits ---- */

Test(pool, wait_times_out_and_takes_nothing, .timeout = TEST_TIMEOUT_S)
{
    fixture fx;
    fx_init(&fx, 1);
    void *v = NULL;
    EXPECT_EQ(ap_pool_get_wait(&fx.p, &v, AP_DEADLINE_NONE), AP_OK, "idle: at once");
    void *w = (void *)(uintptr_t)3;
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_pool_get_wait(&fx.p, &w, t0 + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns() - t0, 20 * AP_NS_PER_MS);
    EXPECT_EQ(w, (void *)(uintptr_t)3, "out written on timeout");
    EXPECT_EQ(waiters(&fx.p), 0, "a timed-out wait left its waiter linked");
    EXPECT_EQ(ap_pool_get_wait(&fx.p, &w, 0), AP_TIMEDOUT, "a past deadline");
    EXPECT_EQ(ap_pool_get_wait(&fx.p, NULL, AP_DEADLINE_NONE), AP_INVAL);
    EXPECT_EQ(ap_pool_put(&fx.p, v), AP_OK);
    EXPECT_EQ(ap_pool_idle(&fx.p), 1);
    ap_pool_fini(&fx.p);
}

typedef struct waitarg {
    ap_pool *p;
    int id;
    ap_status st;
    void *got;
    wake_log *done; /* completion order */
} waitarg;

static void *wait_main(void *arg)
{
    waitarg *w = arg;
    w->st = ap_pool_get_wait(w->p, &w->got, AP_DEADLINE_NONE);
    int k = atomic_fetch_add(&w->done->n, 1);
    w->done->order[k] = w->id;
    return NULL;
}

static void wait_for_waiters(ap_pool *p, size_t n)
{
    for (int i = 0; i < 5000 && waiters(p) < n; i++)
        ms_sleep(1);
    EXPECT_EQ(waiters(p), n);
}

Test(pool, parked_threads_served_in_order_by_puts, .timeout = TEST_TIMEOUT_S)
{
    fixture fx;
    fx_init(&fx, 1);
    obj *a = get_ok(&fx.p);
    wake_log done = {0};
    pthread_t th[3];
    waitarg w[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (waitarg){&fx.p, i, AP_NOT_READY, NULL, &done};
        EXPECT_EQ(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
        wait_for_waiters(&fx.p, (size_t)i + 1); /* queue in a known order */
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
        for (int k = 0; k < 5000 && atomic_load(&done.n) <= i; k++)
            ms_sleep(1);
        EXPECT_EQ(atomic_load(&done.n), i + 1);
        EXPECT_EQ(done.order[i], i, "served out of order");
        EXPECT_EQ(w[i].st, AP_OK);
        EXPECT_EQ(w[i].got, a);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(ap_pool_idle(&fx.p), 1);
    ap_pool_fini(&fx.p);
}

Test(pool, parked_threads_all_woken_by_close, .timeout = TEST_TIMEOUT_S)
{
    fixture fx;
    fx_init(&fx, 2);
    obj *a = get_ok(&fx.p), *b = get_ok(&fx.p);
    wake_log done = {0};
    pthread_t th[4];
    waitarg w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (waitarg){&fx.p, i, AP_NOT_READY, NULL, &done};
        EXPECT_EQ(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
    }
    wait_for_waiters(&fx.p, 4);
    ap_pool_close(&fx.p);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(w[i].st, AP_CLOSED);
        EXPECT_NULL(w[i].got);
    }
    EXPECT_EQ(ap_pool_put(&fx.p, a), AP_OK);
    EXPECT_EQ(ap_pool_put(&fx.p, b), AP_OK);
    EXPECT_EQ(ap_pool_idle(&fx.p), 2);
    ap_pool_fini(&fx.p);
}

/* ---- the theorem: one holder per object, high-water n, conserved ---- */

#define THREADS 8
#define TH_OBJS 4

typedef struct theorem {
    ap_pool p;
    obj o[TH_OBJS];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(TH_OBJS)];
    atomic_int holders[TH_OBJS]; /* per object */
    atomic_int held, high, violations;
    int iters;
    long plain[TH_OBJS]; /* written only by the object's holder */
} theorem;

typedef struct tharg {
    theorem *th;
    unsigned id;
} tharg;

static void *theorem_main(void *arg)
{
    tharg *a = arg;
    theorem *th = a->th;
    uint64_t rng = 0x9E3779B97F4A7C15u * (a->id + 1);
    for (int i = 0; i < th->iters; i++) {
        rng_next(&rng);
        void *v = NULL;
        ap_status st;
        if (rng & 0x100) {
            st = ap_pool_get_wait(&th->p, &v, AP_DEADLINE_NONE);
        } else {
            unsigned spins = 0;
            while ((st = ap_pool_try_get(&th->p, &v)) == AP_EMPTY)
                ap__backoff(&spins);
        }
        size_t k;
        if (st != AP_OK || ap_pool_index(&th->p, v, &k) != AP_OK) {
            atomic_fetch_add(&th->violations, 1);
            return NULL;
        }
        if (atomic_fetch_add_explicit(&th->holders[k], 1, memory_order_relaxed) != 0)
            atomic_fetch_add(&th->violations, 1); /* two holders of one object */
        int now = atomic_fetch_add_explicit(&th->held, 1, memory_order_relaxed) + 1;
        if (now > TH_OBJS)
            atomic_fetch_add(&th->violations, 1);
        int hi = atomic_load_explicit(&th->high, memory_order_relaxed);
        while (now > hi && !atomic_compare_exchange_weak_explicit(
                               &th->high, &hi, now, memory_order_relaxed, memory_order_relaxed)) {
        }
        th->plain[k]++; /* exclusive: the pool must order these */
        ((obj *)v)->payload++;
        if (i < 20)
            ms_sleep(1); /* hold long enough for the others to pile up */
        else if (rng & 0x200)
            sched_yield();
        atomic_fetch_sub_explicit(&th->held, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&th->holders[k], 1, memory_order_relaxed);
        if (ap_pool_put(&th->p, v) != AP_OK)
            atomic_fetch_add(&th->violations, 1);
    }
    return NULL;
}

Test(pool, theorem_one_holder_per_object_high_water_n_conserved, .timeout = TEST_TIMEOUT_S)
{
    static theorem th;
    memset(&th, 0, sizeof th);
    EXPECT_EQ(ap_pool_init(&th.p, th.st, sizeof th.st, th.o, sizeof th.o, TH_OBJS, sizeof(obj)),
              AP_OK);
    th.iters = 3000;
    pthread_t t[THREADS];
    tharg a[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        a[i] = (tharg){&th, i};
        EXPECT_EQ(pthread_create(&t[i], NULL, theorem_main, &a[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    EXPECT_EQ(atomic_load(&th.violations), 0, "an object had two holders, or an op failed");
    EXPECT_LE(atomic_load(&th.high), TH_OBJS);
    EXPECT_EQ(atomic_load(&th.high), TH_OBJS, "high-water %d < n: over-serialised",
              atomic_load(&th.high));
    long total = 0;
    for (int k = 0; k < TH_OBJS; k++) {
        EXPECT_EQ(th.plain[k], th.o[k].payload);
        total += th.plain[k];
    }
    EXPECT_EQ(total, (long)THREADS * th.iters, "a get was lost or duplicated");
    EXPECT_EQ(ap_pool_idle(&th.p), TH_OBJS, "objects not conserved");
    EXPECT_EQ(walk_idle(&th.p), TH_OBJS);
    EXPECT_EQ(waiters(&th.p), 0);
    ap_pool_fini(&th.p);
}

/* ---- preconditions ---- */

Test(pool, use_after_fini_asserts, .signal = SIGABRT)
{
    fixture fx;
    fx_init(&fx, 1);
    ap_pool_fini(&fx.p);
    void *v;
    ap_status st = ap_pool_try_get(&fx.p, &v);
    cr_log_error("returned %s", ap_status_str(st));
}

Test(pool, put_after_fini_asserts, .signal = SIGABRT)
{
    fixture fx;
    fx_init(&fx, 1);
    ap_pool_fini(&fx.p);
    ap_status st = ap_pool_put(&fx.p, &fx.o[0]);
    cr_log_error("returned %s", ap_status_str(st));
}

/* Every build, not only AP_DEBUG: a queued future at end of life would be
 * woken (or granted) into memory the caller is about to reuse. */
Test(pool, fini_with_a_queued_future_asserts, .signal = SIGABRT)
{
    fixture fx;
    fx_init(&fx, 1);
    (void)get_ok(&fx.p);
    tw t = {0};
    void *v;
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, &v);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    ap_pool_fini(&fx.p);
}

Test(pool, null_pool_asserts, .signal = SIGABRT)
{
    static obj o[1];
    _Alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(1)];
    ap_status s = ap_pool_init(NULL, st, sizeof st, o, sizeof o, 1, sizeof(obj));
    cr_log_error("returned %s", ap_status_str(s));
}

Test(pool, zero_struct_is_not_a_pool, .signal = SIGABRT)
{
    static ap_pool z; /* n 0: use before init */
    void *v;
    ap_status st = ap_pool_try_get(&z, &v);
    cr_log_error("returned %s", ap_status_str(st));
}

Test(pool, future_without_out_pointer_asserts, .signal = SIGABRT)
{
    fixture fx;
    fx_init(&fx, 1);
    ap_pool_get_fut f;
    ap_pool_get_fut_init(&f, &fx.p, NULL);
}
