/*
 * tests/test_stats.c -- the stats getters of issue #14 ("every pattern
 * reports what it is doing"): ap_<p>_stats_get(obj, &out) for the waitlist,
 * mpmc, spsc, sem, tb (acquire futures), pool, barrier, ws (work-stealing
 * deque and injector), split and tb_keyed. Each getter is checked
 * with exact values after a deterministic sequence, and for consistency at
 * quiescence after a concurrent run (sums balance).
 */
/* a hook at the headers' AP_TEST_YIELD points (before they are included):
 * the work-stealing tests run one deque call inside another's race window */
static void (*yield_hook)(void);
#define AP_TEST_YIELD() (yield_hook != NULL ? yield_hook() : (void)0)

#include "asyncpat/barrier.h"
#include "asyncpat/mpmc.h"
#include "asyncpat/pool.h"
#include "asyncpat/semaphore.h"
#include "asyncpat/spsc.h"
#include "asyncpat/split.h"
#include "asyncpat/token_bucket.h"
#include "asyncpat/work_steal.h"
#include <criterion/criterion.h>
#include "test_util.h"
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#define MS (1000u * 1000u)

static ap_cx cx_now(uint64_t now)
{
    ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
    return cx;
}

/* ---- waitlist ---- */

Test(stats, waitlist_counts_fresh_links_only)
{
    ap_waitlist wl;
    ap_waiter a, b;
    ap_waitlist_stats s;
    ap_waitlist_init(&wl);
    ap_waiter_init(&a);
    ap_waiter_init(&b);
    ap_waitlist_stats_get(&wl, &s);
    EXPECT(s.waiters == 0 && s.waits == 0 && s.wait_ns == 0);
    ap_waitlist_register(&wl, &a, AP_WAKER_NONE);
    ap_waitlist_register(&wl, &a, AP_WAKER_NONE); /* re-register: not a new wait */
    ap_waitlist_register(&wl, &b, AP_WAKER_NONE);
    ap_waitlist_stats_get(&wl, &s);
    EXPECT_EQ(s.waiters, 2);
    EXPECT_EQ(s.waits, 2);
    EXPECT_EQ(ap_waitlist_wake(&wl, 1), 1);
    ap_waitlist_cancel(&wl, &b);
    ap_waitlist_stats_get(&wl, &s);
    EXPECT_EQ(s.waiters, 0);
    EXPECT_EQ(s.waits, 2);
    EXPECT_EQ(s.wait_ns, 0);
    ap_waitlist wl2 = AP_WAITLIST_INITIALIZER; /* the static form counts too */
    ap_waitlist_register(&wl2, &a, AP_WAKER_NONE);
    ap_waitlist_stats_get(&wl2, &s);
    EXPECT(s.waiters == 1 && s.waits == 1);
    ap_waitlist_cancel(&wl2, &a);
}

/* ---- mpmc ---- */

static void mpmc_expect(ap_mpmc *q, uint64_t pushed, uint64_t popped, uint64_t pushw,
                        uint64_t popw, uint64_t push_waits, uint64_t pop_waits)
{
    ap_mpmc_stats s;
    ap_mpmc_stats_get(q, &s);
    EXPECT_EQ(s.pushed, pushed);
    EXPECT_EQ(s.popped, popped);
    EXPECT_EQ(s.push_waiters, pushw);
    EXPECT_EQ(s.pop_waiters, popw);
    EXPECT_EQ(s.push_waits, push_waits);
    EXPECT_EQ(s.pop_waits, pop_waits);
}

static void mpmc_sequence(size_t lap_start)
{
    AP_ALIGNAS(8) unsigned char buf[AP_MPMC_BYTES(4, sizeof(int))];
    ap_mpmc q;
    int v = 0, out = 0;
    EXPECT_EQ(ap__mpmc_init_at(&q, buf, sizeof buf, 4, sizeof(int), lap_start), AP_OK);
    mpmc_expect(&q, 0, 0, 0, 0, 0, 0);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_FULL); /* refused: not pushed */
    EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_OK);
    mpmc_expect(&q, 4, 1, 0, 0, 0, 0);
    /* 13 more through the ring: the positions wrap (lap_start near the top) */
    for (int i = 0; i < 13; i++) {
        EXPECT_EQ(ap_mpmc_try_push(&q, &i), AP_OK);
        EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_OK);
    }
    mpmc_expect(&q, 17, 14, 0, 0, 0, 0);
    EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_OK); /* full again */
    mpmc_expect(&q, 18, 14, 0, 0, 0, 0);
    /* a push future queues on the full ring, then a pop lets it through */
    ap_mpmc_push_fut pf;
    ap_cx cx = cx_now(0);
    ap_mpmc_push_fut_init(&pf, &q, &v);
    EXPECT_EQ(ap_mpmc_push_poll(&pf, &cx), AP_PENDING);
    EXPECT_EQ(ap_mpmc_push_poll(&pf, &cx), AP_PENDING); /* still one wait */
    mpmc_expect(&q, 18, 14, 1, 0, 1, 0);
    EXPECT_EQ(ap_mpmc_try_pop(&q, &out), AP_OK);
    EXPECT_EQ(ap_mpmc_push_poll(&pf, &cx), AP_READY);
    mpmc_expect(&q, 19, 15, 0, 0, 1, 0);
    /* drain, then a pop_wait that times out: one wait, parked >= 2 ms */
    while (ap_mpmc_try_pop(&q, &out) == AP_OK) {
    }
    mpmc_expect(&q, 19, 19, 0, 0, 1, 0);
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, t0 + 2 * MS), AP_TIMEDOUT);
    ap_mpmc_stats s;
    ap_mpmc_stats_get(&q, &s);
    EXPECT_EQ(s.pop_waits, 1);
    EXPECT_EQ(s.pop_waiters, 0);
    EXPECT_GE(s.wait_ns, MS); /* the deadline is 2 ms after t0; the helper's own t0 is later */
    EXPECT_LE(s.wait_ns, ap_now_ns() - t0);
    /* a pop_wait that finds an element parks not at all and counts nothing */
    EXPECT_EQ(ap_mpmc_try_push(&q, &v), AP_OK);
    EXPECT_EQ(ap_mpmc_pop_wait(&q, &out, AP_DEADLINE_NONE), AP_OK);
    ap_mpmc_stats s2;
    ap_mpmc_stats_get(&q, &s2);
    EXPECT_EQ(s2.pop_waits, 1);
    EXPECT_EQ(s2.wait_ns, s.wait_ns);
    EXPECT_EQ(s2.pushed, 20);
    EXPECT_EQ(s2.popped, 20);
}

Test(stats, mpmc_exact) { mpmc_sequence(0); }
Test(stats, mpmc_exact_across_wrap) { mpmc_sequence(SIZE_MAX - 40); }

/* ---- spsc ---- */

static void spsc_sequence(size_t start)
{
    unsigned char buf[AP_SPSC_BYTES(4, sizeof(int))];
    ap_spsc q;
    int v = 7, out = 0;
    ap_spsc_stats s;
    EXPECT_EQ(ap__spsc_init_at(&q, buf, sizeof buf, 4, sizeof(int), start), AP_OK);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(ap_spsc_try_push(&q, &i), AP_OK);
    EXPECT_EQ(ap_spsc_try_push(&q, &v), AP_FULL);
    for (int i = 0; i < 10; i++) {
        EXPECT_EQ(ap_spsc_try_pop(&q, &out), AP_OK);
        EXPECT_EQ(ap_spsc_try_push(&q, &i), AP_OK);
    }
    ap_spsc_stats_get(&q, &s);
    EXPECT_EQ(s.pushed, 14);
    EXPECT_EQ(s.popped, 10);
    EXPECT_EQ(s.pushed - s.popped, ap_spsc_len(&q));
    ap_spsc_push_fut pf;
    ap_cx cx = cx_now(0);
    ap_spsc_push_fut_init(&pf, &q, &v);
    EXPECT_EQ(ap_spsc_push_poll(&pf, &cx), AP_PENDING);
    ap_spsc_stats_get(&q, &s);
    EXPECT_EQ(s.push_waiters, 1);
    EXPECT_EQ(s.push_waits, 1);
    EXPECT_EQ(s.pop_waits, 0);
    ap_spsc_push_cancel(&pf);
    ap_spsc_stats_get(&q, &s);
    EXPECT_EQ(s.push_waiters, 0);
    EXPECT_EQ(s.push_waits, 1);
    EXPECT_EQ(s.pushed, 14);
}

Test(stats, spsc_exact) { spsc_sequence(0); }
Test(stats, spsc_exact_across_wrap) { spsc_sequence(SIZE_MAX - 5); }

/* ---- sem ---- */

Test(stats, sem_exact)
{
    ap_sem s;
    ap_sem_stats st;
    EXPECT_EQ(ap_sem_init_max(&s, 2, 5), AP_OK);
    ap_sem_stats_get(&s, &st);
    EXPECT(st.available == 2 && st.max == 5 && st.waiters == 0 && st.waits == 0 &&
              st.wait_ns == 0);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_EMPTY); /* refused: not a wait */
    ap_sem_acquire_fut a, b;
    ap_cx cx = cx_now(0);
    ap_sem_acquire_fut_init(&a, &s, 1);
    ap_sem_acquire_fut_init(&b, &s, 2);
    EXPECT_EQ(ap_sem_acquire_poll(&a, &cx), AP_PENDING);
    EXPECT_EQ(ap_sem_acquire_poll(&b, &cx), AP_PENDING);
    EXPECT_EQ(ap_sem_acquire_poll(&a, &cx), AP_PENDING);
    ap_sem_stats_get(&s, &st);
    EXPECT_EQ(st.available, 0);
    EXPECT_EQ(st.waiters, 2);
    EXPECT_EQ(st.waits, 2);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK); /* granted to a */
    EXPECT_EQ(ap_sem_acquire_poll(&a, &cx), AP_READY);
    ap_sem_acquire_cancel(&b);
    ap_sem_stats_get(&s, &st);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_EQ(st.waits, 2);
    EXPECT_EQ(st.available, 0);
    /* an acquire_wait that times out parks for its deadline */
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_sem_acquire_wait(&s, 1, t0 + 2 * MS), AP_TIMEDOUT);
    uint64_t t1 = ap_now_ns();
    ap_sem_stats_get(&s, &st);
    EXPECT_EQ(st.waits, 3);
    EXPECT_GE(st.wait_ns, MS);
    EXPECT_LE(st.wait_ns, t1 - t0);
    /* one that finds permits neither queues nor reads the clock */
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    uint64_t ns = st.wait_ns;
    EXPECT_EQ(ap_sem_acquire_wait(&s, 1, AP_DEADLINE_NONE), AP_OK);
    ap_sem_stats_get(&s, &st);
    EXPECT(st.waits == 3 && st.wait_ns == ns && st.available == 2);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    ap_sem_fini(&s);
}

/* ---- tb (acquire futures, on a hand-driven clock) ---- */

Test(stats, tb_exact)
{
    ap_tb tb;
    ap_tb_desc d;
    ap_tb_stats st;
    memset(&d, 0, sizeof d);
    d.n = 10;                   /* 10 tokens per second: one per 100 ms */
    d.period_ns = 1000u * MS;
    d.burst = 2;
    EXPECT_EQ(ap_tb_init(&tb, &d), AP_OK);
    ap_tb_acquire_fut f[4];
    const uint64_t T0 = 1000u * MS; /* not 0: wait_ns is ready_at - now */
    ap_cx cx = cx_now(T0);
    /* two from the burst, at once */
    for (int i = 0; i < 2; i++) {
        ap_tb_acquire_fut_init(&f[i], &tb, 1, AP_DEADLINE_NONE);
        EXPECT_EQ(ap_tb_acquire_poll(&f[i], &cx), AP_READY);
        EXPECT_EQ(ap_tb_acquire_status(&f[i]), AP_OK);
    }
    /* the third waits 100 ms for its token */
    ap_tb_acquire_fut_init(&f[2], &tb, 1, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_acquire_poll(&f[2], &cx), AP_PENDING);
    ap_tb_stats_get(&tb, &st);
    EXPECT(st.offered == 3 && st.admitted == 2 && st.rejected == 0 && st.canceled == 0);
    EXPECT_EQ(st.waits, 1);
    EXPECT_EQ(st.wait_ns, 100 * MS);
    /* the fourth would need 200 ms but may wait only 150: rejected */
    ap_tb_acquire_fut_init(&f[3], &tb, 1, T0 + 150 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f[3], &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&f[3]), AP_TIMEDOUT);
    /* n > burst: AP_INVAL, rejected too */
    ap_tb_acquire_fut g;
    ap_tb_acquire_fut_init(&g, &tb, 3, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_acquire_poll(&g, &cx), AP_READY);
    EXPECT_EQ(ap_tb_acquire_status(&g), AP_INVAL);
    /* a future cancelled after its reservation */
    ap_tb_acquire_fut h;
    ap_tb_acquire_fut_init(&h, &tb, 1, AP_DEADLINE_NONE);
    EXPECT_EQ(ap_tb_acquire_poll(&h, &cx), AP_PENDING); /* due at 200 ms */
    ap_tb_acquire_cancel(&h);
    ap_tb_acquire_cancel(&h); /* idempotent: counted once */
    /* one never polled and cancelled is not an offer */
    ap_tb_acquire_fut_init(&g, &tb, 1, AP_DEADLINE_NONE);
    ap_tb_acquire_cancel(&g);
    cx = cx_now(T0 + 100 * MS);
    EXPECT_EQ(ap_tb_acquire_poll(&f[2], &cx), AP_READY);
    ap_tb_stats_get(&tb, &st);
    EXPECT_EQ(st.offered, 6);
    EXPECT_EQ(st.admitted, 3);
    EXPECT_EQ(st.rejected, 2);
    EXPECT_EQ(st.canceled, 1);
    EXPECT_EQ(st.offered, st.admitted + st.rejected + st.canceled);
    EXPECT_EQ(st.waits, 2);
    EXPECT_EQ(st.wait_ns, 300 * MS); /* 100 ms (third) + 200 ms (cancelled) */
    /* try_acquire counts nothing */
    EXPECT_EQ(ap_tb_try_acquire(&tb, 1, 10000u * MS, NULL), AP_OK);
    ap_tb_stats st2;
    ap_tb_stats_get(&tb, &st2);
    EXPECT_EQ(memcmp(&st, &st2, sizeof st), 0);
}

/* ---- pool ---- */

Test(stats, pool_exact)
{
    ap_pool p;
    AP_ALIGNAS(8) unsigned char objs[3 * 16];
    AP_ATOMIC_T(uint32_t) state[3];
    ap_pool_stats st;
    void *o[3], *x = NULL;
    EXPECT_EQ(ap_pool_init(&p, state, sizeof state, objs, sizeof objs, 3, 16), AP_OK);
    ap_pool_stats_get(&p, &st);
    EXPECT(st.capacity == 3 && st.idle == 3 && st.in_use == 0 && st.waits == 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_pool_try_get(&p, &o[i]), AP_OK);
    EXPECT_EQ(ap_pool_try_get(&p, &x), AP_EMPTY);
    ap_pool_get_fut f;
    ap_cx cx = cx_now(0);
    ap_pool_get_fut_init(&f, &p, &x);
    EXPECT_EQ(ap_pool_get_poll(&f, &cx), AP_PENDING);
    ap_pool_stats_get(&p, &st);
    EXPECT(st.idle == 0 && st.in_use == 3 && st.waiters == 1 && st.waits == 1);
    EXPECT_EQ(ap_pool_put(&p, o[0]), AP_OK); /* granted to f */
    EXPECT_EQ(ap_pool_get_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_pool_get_status(&f), AP_OK);
    ap_pool_stats_get(&p, &st);
    EXPECT(st.idle == 0 && st.in_use == 3 && st.waiters == 0 && st.waits == 1);
    uint64_t t0 = ap_now_ns();
    void *y = NULL;
    EXPECT_EQ(ap_pool_get_wait(&p, &y, t0 + 2 * MS), AP_TIMEDOUT);
    uint64_t t1 = ap_now_ns();
    ap_pool_stats_get(&p, &st);
    EXPECT_EQ(st.waits, 2);
    EXPECT_GE(st.wait_ns, MS);
    EXPECT_LE(st.wait_ns, t1 - t0);
    EXPECT_EQ(ap_pool_put(&p, x), AP_OK);
    EXPECT_EQ(ap_pool_put(&p, o[1]), AP_OK);
    EXPECT_EQ(ap_pool_put(&p, o[2]), AP_OK);
    ap_pool_stats_get(&p, &st);
    EXPECT(st.idle == 3 && st.in_use == 0 && st.waiters == 0);
    /* a get_wait that finds an idle object neither queues nor parks */
    uint64_t ns = st.wait_ns;
    EXPECT_EQ(ap_pool_get_wait(&p, &y, AP_DEADLINE_NONE), AP_OK);
    ap_pool_stats_get(&p, &st);
    EXPECT(st.waits == 2 && st.wait_ns == ns && st.in_use == 1);
    EXPECT_EQ(ap_pool_put(&p, y), AP_OK);
    ap_pool_fini(&p);
}

/* ---- barrier ---- */

Test(stats, barrier_exact)
{
    ap_barrier b;
    ap_barrier_stats st;
    EXPECT_EQ(ap_barrier_init(&b, 2, AP_BARRIER_POLICY_WITHDRAW, NULL, NULL), AP_OK);
    ap_barrier_stats_get(&b, &st);
    EXPECT(st.parties == 2 && st.arrived == 0 && st.generation == 0 && st.broken == 0 &&
              st.waiters == 0 && st.waits == 0 && st.wait_ns == 0);
    ap_barrier_wait_fut f;
    ap_cx cx = cx_now(0);
    ap_barrier_wait_fut_init(&f, &b);
    EXPECT_EQ(ap_barrier_wait_poll(&f, &cx), AP_PENDING);
    ap_barrier_stats_get(&b, &st);
    EXPECT(st.arrived == 1 && st.waiters == 1 && st.waits == 1);
    bool leader = false;
    EXPECT_EQ(ap_barrier_wait_leader(&b, AP_DEADLINE_NONE, &leader), AP_OK);
    EXPECT(leader); /* the last arrival: it never parks */
    EXPECT_EQ(ap_barrier_wait_poll(&f, &cx), AP_READY);
    ap_barrier_stats_get(&b, &st);
    EXPECT(st.arrived == 0 && st.generation == 1 && st.waiters == 0 && st.waits == 1 &&
              st.wait_ns == 0);
    /* alone in a generation of 2: spins, parks, times out (withdrawn) */
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_barrier_wait(&b, t0 + 2 * MS), AP_TIMEDOUT);
    uint64_t t1 = ap_now_ns();
    ap_barrier_stats_get(&b, &st);
    EXPECT(st.arrived == 0 && st.generation == 1 && st.waiters == 0 && st.waits == 2);
    EXPECT_GE(st.wait_ns, MS);
    EXPECT_LE(st.wait_ns, t1 - t0);
    ap_barrier_fini(&b);
}

/* ---- work stealing ---- */

static void ws_expect(ap_ws *d, uint64_t pushes, uint64_t pops, uint64_t steals, uint64_t full,
                      uint64_t aborts)
{
    ap_ws_stats s;
    ap_ws_stats_get(d, &s);
    EXPECT_EQ(s.pushes, pushes);
    EXPECT_EQ(s.pops, pops);
    EXPECT_EQ(s.steals, steals);
    EXPECT_EQ(s.full, full);
    EXPECT_EQ(s.steal_aborts, aborts);
    EXPECT_EQ(s.pushes, s.pops + s.steals + ap_ws_len(d)); /* conservation */
}

/* run once, inside the next AP_TEST_YIELD: another call on ws_hooked */
static ap_ws *ws_hooked;
static ap_status ws_hook_st;
static void ws_steal_inside(void)
{
    void *t;
    yield_hook = NULL; /* the nested call's own yield points do nothing */
    ws_hook_st = ap_ws_try_steal(ws_hooked, &t);
}
static void ws_pop_inside(void)
{
    void *t;
    yield_hook = NULL;
    ws_hook_st = ap_ws_try_pop(ws_hooked, &t);
}

static void ws_sequence(size_t start)
{
    AP_ALIGNAS(AP_WS_ALIGN) unsigned char buf[AP_WS_BYTES(4)];
    ap_ws d;
    void *t = NULL;
    EXPECT_EQ(ap__ws_init_at(&d, buf, sizeof buf, 4, start), AP_OK);
    ws_expect(&d, 0, 0, 0, 0, 0);
    for (uintptr_t i = 1; i <= 4; i++)
        EXPECT_EQ(ap_ws_try_push(&d, (void *)i), AP_OK);
    EXPECT_EQ(ap_ws_try_push(&d, NULL), AP_FULL);
    EXPECT_EQ(ap_ws_try_push(&d, NULL), AP_FULL);
    ws_expect(&d, 4, 0, 0, 2, 0);
    EXPECT_EQ(ap_ws_try_pop(&d, &t), AP_OK); /* 4: lowers bottom */
    EXPECT_EQ(ap_ws_try_steal(&d, &t), AP_OK); /* 1 */
    ws_expect(&d, 4, 1, 1, 2, 0);
    /* a steal that loses its CAS: another steal takes task 2 inside its
     * window (task read, not yet claimed) */
    ws_hooked = &d;
    yield_hook = ws_steal_inside;
    EXPECT_EQ(ap_ws_try_steal(&d, &t), AP_AGAIN);
    EXPECT_EQ(ws_hook_st, AP_OK);
    ws_expect(&d, 4, 1, 2, 2, 1);
    /* the last task, popped: the CAS path */
    EXPECT_EQ(ap_ws_try_pop(&d, &t), AP_OK);
    EXPECT_EQ((uintptr_t)t, 3);
    EXPECT_EQ(ap_ws_try_pop(&d, &t), AP_EMPTY);   /* counts nothing */
    EXPECT_EQ(ap_ws_try_steal(&d, &t), AP_EMPTY); /* counts nothing */
    ws_expect(&d, 4, 2, 2, 2, 1);
    /* the last-task race: the owner's pop runs inside a steal's window and
     * wins; the steal aborts */
    EXPECT_EQ(ap_ws_try_push(&d, (void *)5), AP_OK);
    yield_hook = ws_pop_inside;
    EXPECT_EQ(ap_ws_try_steal(&d, &t), AP_AGAIN);
    EXPECT_EQ(ws_hook_st, AP_OK);
    ws_expect(&d, 5, 3, 2, 2, 2);
    /* 13 more through the ring: the positions wrap (start near the top) */
    for (uintptr_t i = 0; i < 13; i++) {
        EXPECT_EQ(ap_ws_try_push(&d, (void *)i), AP_OK);
        EXPECT_EQ(ap_ws_try_push(&d, (void *)i), AP_OK);
        EXPECT_EQ(ap_ws_try_steal(&d, &t), AP_OK);
        EXPECT_EQ(ap_ws_try_pop(&d, &t), AP_OK);
    }
    ws_expect(&d, 31, 16, 15, 2, 2);
    ap_ws_fini(&d);
}

Test(stats, ws_exact) { ws_sequence(0); }
Test(stats, ws_exact_across_wrap) { ws_sequence(SIZE_MAX - 6); }

Test(stats, ws_steal_half_and_injector)
{
    AP_ALIGNAS(AP_WS_ALIGN) unsigned char vb[AP_WS_BYTES(8)], db[AP_WS_BYTES(2)];
    ap_ws v, dst;
    size_t moved = 0;
    EXPECT_EQ(ap_ws_init(&v, vb, sizeof vb, 8), AP_OK);
    EXPECT_EQ(ap_ws_init(&dst, db, sizeof db, 2), AP_OK);
    for (uintptr_t i = 1; i <= 5; i++)
        EXPECT_EQ(ap_ws_try_push(&v, (void *)i), AP_OK);
    EXPECT_EQ(ap_ws_steal_half(&v, &dst, &moved), AP_OK); /* ceil(5/2) = 3, room 2 */
    EXPECT_EQ(moved, 2);
    ws_expect(&v, 5, 0, 2, 0, 0);
    ws_expect(&dst, 2, 0, 0, 0, 0);
    EXPECT_EQ(ap_ws_steal_half(&v, &dst, &moved), AP_FULL); /* no try_push: not counted */
    ws_expect(&dst, 2, 0, 0, 0, 0);
    /* the injector reports its ap_mpmc's counters */
    AP_ALIGNAS(AP_WS_INJECTOR_ALIGN) unsigned char ib[AP_WS_INJECTOR_BYTES(4)];
    ap_ws_injector inj;
    ap_mpmc_stats ms;
    void *t;
    EXPECT_EQ(ap_ws_injector_init(&inj, ib, sizeof ib, 4), AP_OK);
    for (uintptr_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_ws_injector_try_push(&inj, (void *)i), AP_OK);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &t), AP_OK);
    ap_ws_injector_stats_get(&inj, &ms);
    EXPECT(ms.pushed == 3 && ms.popped == 1 && ms.push_waits == 0 && ms.pop_waits == 0);
    ap_ws_injector_fini(&inj);
    ap_ws_fini(&v);
    ap_ws_fini(&dst);
}

/* one owner pushing and popping, WT thieves stealing: every counter equals
 * the sum of the outcomes the threads saw */
#define WT 3
#define WN 100000

typedef struct wsrun {
    ap_ws *d;
    atomic_int done, ready;
    atomic_ulong steals, aborts, sum;
} wsrun;

static void *ws_thief(void *arg)
{
    wsrun *r = arg;
    unsigned long ok = 0, again = 0, sum = 0;
    atomic_fetch_add(&r->ready, 1);
    for (;;) {
        void *t;
        ap_status st = ap_ws_try_steal(r->d, &t);
        if (st == AP_OK) {
            ok++;
            sum += (uintptr_t)t;
        } else if (st == AP_AGAIN) {
            again++;
        } else if (atomic_load(&r->done)) {
            break; /* AP_EMPTY after the owner finished: nothing left to take */
        } else {
            sched_yield(); /* empty: give the owner the core */
        }
    }
    atomic_fetch_add(&r->steals, ok);
    atomic_fetch_add(&r->aborts, again);
    atomic_fetch_add(&r->sum, sum);
    return NULL;
}

Test(stats, ws_concurrent_identity, .timeout = TEST_TIMEOUT_S)
{
    static AP_ALIGNAS(AP_WS_ALIGN) unsigned char buf[AP_WS_BYTES(64)];
    ap_ws d;
    wsrun r;
    memset(&r, 0, sizeof r);
    EXPECT_EQ(ap_ws_init(&d, buf, sizeof buf, 64), AP_OK);
    r.d = &d;
    pthread_t th[WT];
    for (int i = 0; i < WT; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, ws_thief, &r), 0);
    unsigned long pushed = 0, full = 0, popped = 0, sum = 0, all = 0;
    while (atomic_load(&r.ready) < WT) /* every thief running first */
        sched_yield();
    for (uintptr_t i = 1; i <= WN; i++) {
        if (ap_ws_try_push(&d, (void *)i) == AP_OK) {
            pushed++;
            all += i;
        } else {
            full++;
        }
        void *t;
        if (i % 4 == 0 && ap_ws_try_pop(&d, &t) == AP_OK) {
            popped++;
            sum += (uintptr_t)t;
        }
        if (i % 128 == 0)
            sched_yield(); /* two cores, four threads: let the thieves in */
    }
    atomic_store(&r.done, 1);
    for (int i = 0; i < WT; i++)
        pthread_join(th[i], NULL);
    void *t;
    while (ap_ws_try_pop(&d, &t) == AP_OK) {
        popped++;
        sum += (uintptr_t)t;
    }
    ap_ws_stats s;
    ap_ws_stats_get(&d, &s);
    EXPECT_EQ(s.pushes, pushed);
    EXPECT_EQ(s.full, full);
    EXPECT_EQ(s.pops, popped);
    EXPECT_EQ(s.steals, atomic_load(&r.steals));
    EXPECT_EQ(s.steal_aborts, atomic_load(&r.aborts));
    EXPECT_EQ(s.pushes, s.pops + s.steals);
    EXPECT_EQ(sum + atomic_load(&r.sum), all); /* every task once */
    cr_log_info("ws: pushes %" PRIu64 " pops %" PRIu64 " steals %" PRIu64 " full %" PRIu64
                " steal_aborts %" PRIu64, s.pushes, s.pops, s.steals, s.full, s.steal_aborts);
    ap_ws_fini(&d);
}

/* ---- split ---- */

static void out_expect(ap_split *sp, size_t i, uint64_t routed, uint64_t refused, uint64_t closed)
{
    ap_split_out_stats o;
    EXPECT_EQ(ap_split_out_stats_get(sp, i, &o), AP_OK);
    EXPECT_EQ(o.routed, routed);
    EXPECT_EQ(o.refused, refused);
    EXPECT_EQ(o.closed, closed);
}

static void split_expect(ap_split *sp, uint64_t routed, uint64_t refused, uint64_t closed,
                         uint64_t waiters, uint64_t waits)
{
    ap_split_stats s;
    ap_split_stats_get(sp, &s);
    EXPECT_EQ(s.routed, routed);
    EXPECT_EQ(s.refused, refused);
    EXPECT_EQ(s.closed, closed);
    EXPECT_EQ(s.waiters, waiters);
    EXPECT_EQ(s.waits, waits);
}

Test(stats, split_exact)
{
    AP_ALIGNAS(8) unsigned char qb[2][AP_MPMC_BYTES(2, sizeof(int))];
    ap_mpmc q[2];
    ap_mpmc *outs[2] = {&q[0], &q[1]};
    ap_split sp;
    AP_ALIGNAS(AP_SPLIT_STATS_ALIGN) unsigned char cb[AP_SPLIT_STATS_BYTES(2)];
    ap_split_out_stats o;
    int v = 1, out = 0;
    for (int i = 0; i < 2; i++)
        EXPECT_EQ(ap_mpmc_init(&q[i], qb[i], sizeof qb[i], 2, sizeof(int)), AP_OK);
    EXPECT_EQ(ap_split_init(&sp, outs, sizeof outs, AP_SPLIT_MODE_ROUND_ROBIN), AP_OK);
    /* no counter array yet: pushes count nothing, per-output is AP_INVAL */
    EXPECT_EQ(ap_split_try_push(&sp, 0, &v), AP_OK);
    EXPECT_EQ(ap_split_out_stats_get(&sp, 0, &o), AP_INVAL);
    split_expect(&sp, 0, 0, 0, 0, 0);
    /* a bad array: AP_INVAL, nothing changed */
    EXPECT_EQ(ap_split_stats_init(&sp, NULL, sizeof cb), AP_INVAL);
    EXPECT_EQ(ap_split_stats_init(&sp, cb, sizeof cb - 1), AP_INVAL);
    EXPECT_EQ(ap_split_stats_init(&sp, cb + 1, sizeof cb - 1), AP_INVAL);
    EXPECT_EQ(ap_split_out_stats_get(&sp, 0, &o), AP_INVAL);
    EXPECT_EQ(ap_split_stats_init(&sp, cb, sizeof cb), AP_OK);
    EXPECT_EQ(ap_split_out_stats_get(&sp, 2, &o), AP_INVAL); /* no output 2 */
    /* round robin: output 1 (the cursor moved once), then 0, 1 */
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_split_try_push(&sp, 0, &v), AP_OK);
    out_expect(&sp, 0, 1, 0, 0);
    out_expect(&sp, 1, 2, 0, 0);
    /* both full now (2 + 2): refused on output 0, twice */
    EXPECT_EQ(ap_split_try_push(&sp, 0, &v), AP_FULL);
    EXPECT_EQ(ap_split_try_push(&sp, 0, &v), AP_FULL);
    out_expect(&sp, 0, 1, 2, 0);
    split_expect(&sp, 3, 2, 0, 0, 0);
    /* a push future on full output 0 waits (one wait however often polled),
     * then a pop lets it in */
    ap_split_push_fut f;
    ap_cx cx = cx_now(0);
    ap_split_push_fut_init(&f, &sp, 0, &v); /* output 0: the cursor's next */
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    split_expect(&sp, 3, 2, 0, 1, 1);
    EXPECT_EQ(ap_mpmc_try_pop(&q[0], &out), AP_OK);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_READY);
    EXPECT_EQ(ap_split_push_status(&f), AP_OK);
    out_expect(&sp, 0, 2, 2, 0);
    split_expect(&sp, 4, 2, 0, 0, 1);
    /* a future on full output 1, cancelled: the wait ends, nothing routed */
    ap_split_push_fut_init(&f, &sp, 0, &v);
    EXPECT_EQ(ap_split_push_poll(&f, &cx), AP_PENDING);
    split_expect(&sp, 4, 2, 0, 1, 2);
    ap_split_push_cancel(&f);
    ap_split_push_cancel(&f);
    split_expect(&sp, 4, 2, 0, 0, 2);
    /* push_wait that times out: parks, wait_ns >= 1 ms */
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_split_push_wait(&sp, 0, &v, t0 + 2 * MS), AP_TIMEDOUT);
    uint64_t t1 = ap_now_ns();
    ap_split_stats st;
    ap_split_stats_get(&sp, &st);
    EXPECT_EQ(st.waits, 3);
    EXPECT_EQ(st.waiters, 0);
    EXPECT_GE(st.wait_ns, MS);
    EXPECT_LE(st.wait_ns, t1 - t0);
    /* one that finds room neither waits nor reads the clock */
    EXPECT_EQ(ap_mpmc_try_pop(&q[0], &out), AP_OK);
    EXPECT_EQ(ap_mpmc_try_pop(&q[1], &out), AP_OK);
    uint64_t ns = st.wait_ns;
    EXPECT_EQ(ap_split_push_wait(&sp, 0, &v, AP_DEADLINE_NONE), AP_OK);
    ap_split_stats_get(&sp, &st);
    EXPECT(st.waits == 3 && st.wait_ns == ns && st.routed == 5);
    /* closed: counted on the output that answered */
    ap_mpmc_close(&q[1]);
    while (ap_split_try_push(&sp, 0, &v) != AP_CLOSED) {
    }
    EXPECT_EQ(ap_split_out_stats_get(&sp, 1, &o), AP_OK);
    EXPECT_EQ(o.closed, 1);
    ap_split_fini(&sp);

    /* broadcast: copies per output; the room check refuses on the first
     * full output; a closed output counts where it answered */
    AP_ALIGNAS(8) unsigned char rb[2][AP_MPMC_BYTES(2, sizeof(int))];
    for (int i = 0; i < 2; i++)
        EXPECT_EQ(ap_mpmc_init(&q[i], rb[i], sizeof rb[i], 2, sizeof(int)), AP_OK);
    EXPECT_EQ(ap_split_init(&sp, outs, sizeof outs, AP_SPLIT_MODE_BROADCAST), AP_OK);
    EXPECT_EQ(ap_split_stats_init(&sp, cb, sizeof cb), AP_OK); /* zeroes it again */
    size_t next = 0;
    EXPECT_EQ(ap_split_try_broadcast(&sp, &v, &next), AP_OK);
    EXPECT_EQ(ap_mpmc_try_push(&q[1], &v), AP_OK); /* output 1 full (not via the split) */
    next = 0;
    EXPECT_EQ(ap_split_try_broadcast(&sp, &v, &next), AP_FULL);
    out_expect(&sp, 0, 1, 0, 0);
    out_expect(&sp, 1, 1, 1, 0);
    ap_mpmc_close(&q[1]);
    EXPECT_EQ(ap_mpmc_try_pop(&q[1], &out), AP_OK); /* room, but closed */
    next = 0;
    EXPECT_EQ(ap_split_try_broadcast(&sp, &v, &next), AP_CLOSED);
    EXPECT_EQ(next, 1);
    out_expect(&sp, 0, 2, 0, 0);
    out_expect(&sp, 1, 1, 1, 1);
    split_expect(&sp, 3, 1, 1, 0, 0);
    ap_split_fini(&sp);
}

/* ST producers hash random keys into 4 outputs, one consumer each:
 * per output, routed == the producers' AP_OK count for it == popped */
#define ST 2
#define SN 50000

typedef struct srun {
    ap_split *sp;
    ap_mpmc *q[4];
    atomic_ulong ok[4], refused[4], popped[4];
    atomic_int producers_left;
} srun;

static void *split_producer(void *arg)
{
    srun *r = arg;
    unsigned long ok[4] = {0}, refused[4] = {0};
    uint64_t x = (uint64_t)(uintptr_t)&ok | 1;
    for (int i = 0; i < SN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t o = ap_split_route(r->sp, x);
        uint64_t v = x;
        ap_status st = ap_split_try_push(r->sp, x, &v);
        if (st == AP_OK) {
            ok[o]++;
        } else if (st == AP_FULL || st == AP_AGAIN) {
            refused[o]++;
            if (ap_split_push_wait(r->sp, x, &v, AP_DEADLINE_NONE) == AP_OK)
                ok[o]++; /* routed by the future, not refused */
        } else {
            EXPECT_EQ(st, AP_OK);
        }
    }
    for (int i = 0; i < 4; i++) {
        atomic_fetch_add(&r->ok[i], ok[i]);
        atomic_fetch_add(&r->refused[i], refused[i]);
    }
    if (atomic_fetch_sub(&r->producers_left, 1) == 1)
        for (int i = 0; i < 4; i++)
            ap_mpmc_close(r->q[i]);
    return NULL;
}

typedef struct sconsumer { srun *r; int i; } sconsumer;

static void *split_consumer(void *arg)
{
    sconsumer *c = arg;
    uint64_t v;
    unsigned long n = 0;
    while (ap_mpmc_pop_wait(c->r->q[c->i], &v, AP_DEADLINE_NONE) == AP_OK)
        n++;
    atomic_fetch_add(&c->r->popped[c->i], n);
    return NULL;
}

Test(stats, split_concurrent_identity, .timeout = TEST_TIMEOUT_S)
{
    static AP_ALIGNAS(8) unsigned char qb[4][AP_MPMC_BYTES(8, sizeof(uint64_t))];
    static AP_ALIGNAS(AP_SPLIT_STATS_ALIGN) unsigned char cb[AP_SPLIT_STATS_BYTES(4)];
    ap_mpmc q[4];
    ap_mpmc *outs[4];
    ap_split sp;
    srun r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(ap_mpmc_init(&q[i], qb[i], sizeof qb[i], 8, sizeof(uint64_t)), AP_OK);
        outs[i] = r.q[i] = &q[i];
    }
    EXPECT_EQ(ap_split_init(&sp, outs, sizeof outs, AP_SPLIT_MODE_HASH), AP_OK);
    EXPECT_EQ(ap_split_stats_init(&sp, cb, sizeof cb), AP_OK);
    r.sp = &sp;
    atomic_store(&r.producers_left, ST);
    pthread_t p[ST], c[4];
    sconsumer cs[4];
    for (int i = 0; i < 4; i++) {
        cs[i].r = &r;
        cs[i].i = i;
        EXPECT_EQ(pthread_create(&c[i], NULL, split_consumer, &cs[i]), 0);
    }
    for (int i = 0; i < ST; i++)
        EXPECT_EQ(pthread_create(&p[i], NULL, split_producer, &r), 0);
    for (int i = 0; i < ST; i++)
        pthread_join(p[i], NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(c[i], NULL);
    uint64_t routed = 0;
    for (int i = 0; i < 4; i++) {
        ap_split_out_stats o;
        EXPECT_EQ(ap_split_out_stats_get(&sp, (size_t)i, &o), AP_OK);
        EXPECT_EQ(o.routed, atomic_load(&r.ok[i]));
        EXPECT_EQ(o.routed, atomic_load(&r.popped[i]));
        EXPECT_EQ(o.refused, atomic_load(&r.refused[i]));
        EXPECT_EQ(o.closed, 0);
        routed += o.routed;
    }
    EXPECT_EQ(routed, (uint64_t)ST * SN);
    ap_split_stats s;
    ap_split_stats_get(&sp, &s);
    EXPECT_EQ(s.routed, routed);
    EXPECT_EQ(s.waiters, 0);
    EXPECT_LE(s.waits, s.refused); /* only a refused push went on to wait */
    cr_log_info("split: routed %" PRIu64 " refused %" PRIu64 " waits %" PRIu64
                " wait_ns %" PRIu64, s.routed, s.refused, s.waits, s.wait_ns);
    ap_split_fini(&sp);
}

/* ---- tb_keyed (the keyed limiter) ---- */

static void kt_expect(ap_tb_keyed *kt, uint64_t admitted, uint64_t rejected, uint64_t full,
                      uint64_t keys, uint64_t inserted, uint64_t evicted, uint64_t probes)
{
    ap_tb_keyed_stats s;
    ap_tb_keyed_stats_get(kt, &s);
    EXPECT_EQ(s.admitted, admitted);
    EXPECT_EQ(s.rejected, rejected);
    EXPECT_EQ(s.full, full);
    EXPECT_EQ(s.keys, keys);
    EXPECT_EQ(s.inserted, inserted);
    EXPECT_EQ(s.evicted, evicted);
    EXPECT_EQ(s.probes, probes);
    EXPECT_EQ(s.keys, ap_tb_keyed_len(kt));
    EXPECT_EQ(s.keys, s.inserted - s.evicted);
}

Test(stats, tb_keyed_exact)
{
    AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned char buf[AP_TB_KEYED_BYTES(2)];
    ap_tb_keyed kt;
    ap_tb_desc d;
    memset(&d, 0, sizeof d);
    d.n = 10; /* one token per 100 ms, a burst of 2 */
    d.period_ns = 1000u * MS;
    d.burst = 2;
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 2, &d), AP_OK);
    kt_expect(&kt, 0, 0, 0, 0, 0, 0, 0);
    /* three keys with one home slot: each lookup past the first steps over
     * the keys already there */
    uint64_t a = 1, b = 2, c;
    while (ap__tb_keyed_home(&kt, b) != ap__tb_keyed_home(&kt, a))
        b++;
    c = b + 1;
    while (ap__tb_keyed_home(&kt, c) != ap__tb_keyed_home(&kt, a))
        c++;
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, a, 1, 0, NULL), AP_OK); /* inserted at home */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, a, 2, 0, NULL), AP_EMPTY); /* 1 token left */
    kt_expect(&kt, 1, 1, 0, 1, 1, 0, 0);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, b, 1, 0, NULL), AP_OK); /* one step over a */
    kt_expect(&kt, 2, 1, 0, 2, 2, 0, 1);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, c, 1, 0, NULL), AP_FULL); /* over a and b */
    kt_expect(&kt, 2, 1, 1, 2, 2, 0, 3);
    /* answered before the lock: not counted */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, c, 0, 0, NULL), AP_OK);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, c, 3, 0, NULL), AP_INVAL);
    kt_expect(&kt, 2, 1, 1, 2, 2, 0, 3);
    /* at 1 s both buckets are full again: c's lookup drops a, b (shifted
     * back to the home slot) and takes the home slot itself */
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, c, 1, 1000u * MS, NULL), AP_OK);
    kt_expect(&kt, 3, 1, 1, 1, 3, 2, 3);
    ap_tb_keyed_fini(&kt);

    /* AP_REJECTED (ready only past the clock's range) counts as rejected */
    AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned char buf1[AP_TB_KEYED_BYTES(1)];
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf1, sizeof buf1, 1, &d), AP_OK);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, a, 2, UINT64_MAX - 1, NULL), AP_OK);
    EXPECT_EQ(ap_tb_keyed_try_acquire(&kt, a, 1, UINT64_MAX - 1, NULL), AP_REJECTED);
    kt_expect(&kt, 1, 1, 0, 1, 1, 0, 0);
    ap_tb_keyed_fini(&kt);
}

/* KT threads on KK keys over a table of 16 slots, on one shared clock
 * that each call moves on: every counter equals the sum of the outcomes
 * the threads saw */
#define KT 4
#define KN 50000
#define KK 64

typedef struct ktrun {
    ap_tb_keyed *kt;
    atomic_ullong clock;
    atomic_ulong ok, refused, full;
} ktrun;

static void *kt_worker(void *arg)
{
    ktrun *r = arg;
    unsigned long ok = 0, refused = 0, full = 0;
    uint64_t x = (uint64_t)(uintptr_t)&ok; /* a per-thread xorshift seed */
    for (int i = 0; i < KN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t now = atomic_fetch_add(&r->clock, 500000); /* 0.5 ms per call */
        ap_status st = ap_tb_keyed_try_acquire(r->kt, x % KK, 1 + (x >> 32) % 2, now, NULL);
        if (st == AP_OK)
            ok++;
        else if (st == AP_EMPTY || st == AP_REJECTED)
            refused++;
        else if (st == AP_FULL)
            full++;
        else
            EXPECT_EQ(st, AP_OK); /* nothing else can come back */
    }
    atomic_fetch_add(&r->ok, ok);
    atomic_fetch_add(&r->refused, refused);
    atomic_fetch_add(&r->full, full);
    return NULL;
}

Test(stats, tb_keyed_concurrent_identity, .timeout = TEST_TIMEOUT_S)
{
    static AP_ALIGNAS(AP_TB_KEYED_ALIGN) unsigned char buf[AP_TB_KEYED_BYTES(16)];
    ap_tb_keyed kt;
    ap_tb_desc d;
    memset(&d, 0, sizeof d);
    d.n = 100; /* per key: one token per 10 ms, a burst of 3 */
    d.period_ns = 1000u * MS;
    d.burst = 3;
    EXPECT_EQ(ap_tb_keyed_init(&kt, buf, sizeof buf, 16, &d), AP_OK);
    ktrun r;
    memset(&r, 0, sizeof r);
    r.kt = &kt;
    pthread_t th[KT];
    for (int i = 0; i < KT; i++)
        EXPECT_EQ(pthread_create(&th[i], NULL, kt_worker, &r), 0);
    for (int i = 0; i < KT; i++)
        pthread_join(th[i], NULL);
    ap_tb_keyed_stats s;
    ap_tb_keyed_stats_get(&kt, &s);
    EXPECT_EQ(s.admitted, atomic_load(&r.ok));
    EXPECT_EQ(s.rejected, atomic_load(&r.refused));
    EXPECT_EQ(s.full, atomic_load(&r.full));
    EXPECT_EQ(s.admitted + s.rejected + s.full, (uint64_t)KT * KN);
    EXPECT_EQ(s.keys, s.inserted - s.evicted);
    EXPECT_EQ(s.keys, ap_tb_keyed_len(&kt));
    cr_log_info("tb_keyed: admitted %" PRIu64 " rejected %" PRIu64 " full %" PRIu64
                " keys %" PRIu64 " inserted %" PRIu64 " evicted %" PRIu64 " probes %" PRIu64,
                s.admitted, s.rejected, s.full, s.keys, s.inserted, s.evicted, s.probes);
    ap_tb_keyed_fini(&kt);
}

/* ---- consistency under concurrency: sums balance at quiescence ---- */

#define CT 4
#define CN 20000

typedef struct crun {
    ap_mpmc *q;
    ap_sem *sem;
    ap_tb *tb;
    atomic_ulong tb_calls, tb_ok, tb_late;
    atomic_ulong popped_sum;
} crun;

static void *producer(void *arg)
{
    crun *r = arg;
    for (unsigned long i = 1; i <= CN; i++)
        EXPECT_EQ(ap_mpmc_push_wait(r->q, &i, AP_DEADLINE_NONE), AP_OK);
    return NULL;
}

static void *consumer(void *arg)
{
    crun *r = arg;
    unsigned long v, sum = 0;
    while (ap_mpmc_pop_wait(r->q, &v, AP_DEADLINE_NONE) == AP_OK) {
        sum += v;
        /* the semaphore: one permit around a little work */
        EXPECT_EQ(ap_sem_acquire_wait(r->sem, 1, AP_DEADLINE_NONE), AP_OK);
        if ((v & 63) == 0) {
            /* the bucket: a wait of at most 1 ms */
            ap_status st = ap_tb_acquire_wait(r->tb, 1, ap_now_ns() + MS);
            atomic_fetch_add(&r->tb_calls, 1);
            if (st == AP_OK)
                atomic_fetch_add(&r->tb_ok, 1);
            else
                atomic_fetch_add(&r->tb_late, 1);
        }
        EXPECT_EQ(ap_sem_release(r->sem, 1), AP_OK);
    }
    atomic_fetch_add(&r->popped_sum, sum);
    return NULL;
}

Test(stats, concurrent_sums_balance, .timeout = TEST_TIMEOUT_S)
{
    AP_ALIGNAS(8) static unsigned char buf[AP_MPMC_BYTES(8, sizeof(unsigned long))];
    ap_mpmc q;
    ap_sem sem;
    ap_tb tb;
    ap_tb_desc d;
    memset(&d, 0, sizeof d);
    d.n = 20000; /* one token per 50 us, a burst of 4 */
    d.period_ns = 1000u * MS;
    d.burst = 4;
    EXPECT_EQ(ap_mpmc_init(&q, buf, sizeof buf, 8, sizeof(unsigned long)), AP_OK);
    EXPECT_EQ(ap_sem_init(&sem, 1), AP_OK);
    EXPECT_EQ(ap_tb_init(&tb, &d), AP_OK);
    crun r;
    memset(&r, 0, sizeof r);
    r.q = &q;
    r.sem = &sem;
    r.tb = &tb;
    pthread_t p[CT], c[CT];
    for (int i = 0; i < CT; i++) {
        EXPECT_EQ(pthread_create(&p[i], NULL, producer, &r), 0);
        EXPECT_EQ(pthread_create(&c[i], NULL, consumer, &r), 0);
    }
    for (int i = 0; i < CT; i++)
        pthread_join(p[i], NULL);
    ap_mpmc_close(&q);
    for (int i = 0; i < CT; i++)
        pthread_join(c[i], NULL);
    ap_mpmc_stats ms;
    ap_mpmc_stats_get(&q, &ms);
    EXPECT_EQ(ms.pushed, (uint64_t)CT * CN);
    EXPECT_EQ(ms.popped, ms.pushed);
    EXPECT_EQ(atomic_load(&r.popped_sum), (unsigned long)CT * CN * (CN + 1) / 2);
    EXPECT(ms.push_waiters == 0 && ms.pop_waiters == 0);
    ap_sem_stats ss;
    ap_sem_stats_get(&sem, &ss);
    EXPECT(ss.available == 1 && ss.waiters == 0);
    ap_tb_stats ts;
    ap_tb_stats_get(&tb, &ts);
    EXPECT_EQ(ts.offered, atomic_load(&r.tb_calls));
    EXPECT_EQ(ts.admitted, atomic_load(&r.tb_ok));
    EXPECT_EQ(ts.rejected, atomic_load(&r.tb_late));
    EXPECT_EQ(ts.canceled, 0);
    EXPECT_EQ(ts.offered, ts.admitted + ts.rejected + ts.canceled);
    cr_log_info("mpmc push_waits %" PRIu64 " pop_waits %" PRIu64 " wait_ns %" PRIu64
                "; sem waits %" PRIu64 " wait_ns %" PRIu64 "; tb waits %" PRIu64,
                ms.push_waits, ms.pop_waits, ms.wait_ns, ss.waits, ss.wait_ns, ts.waits);
    ap_sem_fini(&sem);
    ap_mpmc_fini(&q);
}
