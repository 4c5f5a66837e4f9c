/*
 * tests/test_work_steal.c -- the Chase-Lev work-stealing deque and injector
 */
#include "asyncpat/work_steal.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>


#define T(i) ((void *)(uintptr_t)(i))
#define U(p) ((uintptr_t)(p))

static _Alignas(64) unsigned char mem[AP_WS_BYTES(1024)];
static _Alignas(64) unsigned char mem2[AP_WS_BYTES(1024)];

/* ---- configuration ---- */

Test(work_steal, bad_capacity_is_inval_and_changes_nothing)
{
    ap_ws d;
    memset(&d, 0x5a, sizeof d);
    ap_ws copy = d;
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 0), AP_INVAL);
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 3), AP_INVAL);
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 1000), AP_INVAL);
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, AP_WS_CAPACITY_MAX * 2), AP_INVAL);
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, SIZE_MAX), AP_INVAL);
    EXPECT(memcmp(&d, &copy, sizeof d) == 0);
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 1), AP_OK);
    EXPECT_EQ(ap_ws_capacity(&d), 1);
    ap_ws_fini(&d);
#ifndef AP_NO_MALLOC
    ap_ws *p = (ap_ws *)0x1;
    EXPECT_EQ(ap_ws_create(&p, 6, NULL), AP_INVAL);
    EXPECT_EQ(p, (ap_ws *)0x1);
    EXPECT_EQ(ap_ws_create(&p, 64, NULL), AP_OK);
    EXPECT_EQ(ap_ws_capacity(p), 64);
    EXPECT_EQ(ap_ws_try_push(p, T(7)), AP_OK);
    ap_ws_destroy(p);
#endif
}

Test(work_steal, null_deque_asserts, .signal = SIGABRT)
{
    void *x;
    ap_status st = ap_ws_try_pop(NULL, &x);
    EXPECT_FAIL("returned %d", (int)st);
}

Test(work_steal, steal_half_into_itself_asserts, .signal = SIGABRT)
{
    ap_ws d;
    size_t n;
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 8), AP_OK);
    ap_status st = ap_ws_steal_half(&d, &d, &n);
    EXPECT_FAIL("returned %d", (int)st);
}

/* ---- single-thread semantics ---- */

Test(work_steal, empty_pop_and_steal)
{
    ap_ws d;
    void *x = T(99);
    size_t n = 99;
    ap_ws e;
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 4), AP_OK);
    EXPECT_EQ(ap_ws_init(&e, mem2, sizeof mem2, 4), AP_OK);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_EMPTY);
    EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_EMPTY);
    EXPECT_EQ(ap_ws_steal_half(&d, &e, &n), AP_EMPTY);
    EXPECT_EQ(U(x), 99); /* untouched */
    EXPECT_EQ(n, 99);
    EXPECT_EQ(ap_ws_len(&d), 0);
    /* still empty and consistent after failed pops */
    EXPECT_EQ(ap_ws_try_push(&d, T(1)), AP_OK);
    EXPECT_EQ(ap_ws_len(&d), 1);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 1);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_EMPTY);
    EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_EMPTY);
}

Test(work_steal, full_at_capacity_never_drops)
{
    static const size_t caps[] = {1, 2, 8, 1024};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        ap_ws d;
        size_t cap = caps[c];
        void *x;
        EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, cap), AP_OK);
        for (size_t i = 0; i < cap; i++)
            EXPECT_EQ(ap_ws_try_push(&d, T(i + 1)), AP_OK);
        EXPECT_EQ(ap_ws_len(&d), cap);
        EXPECT_EQ(ap_ws_try_push(&d, T(777)), AP_FULL);
        EXPECT_EQ(ap_ws_try_push(&d, T(778)), AP_FULL);
        EXPECT_EQ(ap_ws_len(&d), cap);
        /* a steal frees a slot at the top: one more push fits */
        EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_OK);
        EXPECT_EQ(U(x), 1);
        EXPECT_EQ(ap_ws_try_push(&d, T(cap + 1)), AP_OK);
        EXPECT_EQ(ap_ws_try_push(&d, T(779)), AP_FULL);
        /* everything that was accepted comes out, nothing else */
        for (size_t i = cap + 1; i >= 2; i--) {
            EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
            EXPECT_EQ(U(x), i);
        }
        EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_EMPTY);
        ap_ws_fini(&d);
    }
}

Test(work_steal, owner_lifo_thief_fifo)
{
    ap_ws d;
    void *x;
    EXPECT_EQ(ap_ws_init(&d, mem, sizeof mem, 16), AP_OK);
    for (uintptr_t i = 1; i <= 10; i++)
        EXPECT_EQ(ap_ws_try_push(&d, T(i)), AP_OK);
    for (uintptr_t i = 1; i <= 3; i++) {
        EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_OK);
        EXPECT_EQ(U(x), i);
    }
    for (uintptr_t i = 10; i >= 8; i--) {
        EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
        EXPECT_EQ(U(x), i);
    }
    EXPECT_EQ(ap_ws_len(&d), 4); /* 4 5 6 7 */
    EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 4);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 7);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 6);
    EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_OK); /* the last one, by a thief */
    EXPECT_EQ(U(x), 5);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_EMPTY);
    /* NULL is a task like any other */
    EXPECT_EQ(ap_ws_try_push(&d, NULL), AP_OK);
    x = T(1);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_NULL(x);
}

Test(work_steal, positions_wrap_around_size_max)
{
    ap_ws d;
    void *x;
    uintptr_t next = 0, stolen = 0;
    EXPECT_EQ(ap__ws_init_at(&d, mem, sizeof mem, 8, SIZE_MAX - 20), AP_OK);
    for (int round = 0; round < 20; round++) {
        for (int k = 0; k < 5; k++)
            EXPECT_EQ(ap_ws_try_push(&d, T(++next)), AP_OK);
        EXPECT_EQ(ap_ws_try_steal(&d, &x), AP_OK);
        EXPECT_GT(U(x), stolen);
        stolen = U(x);
        EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
        EXPECT_EQ(U(x), next);
        EXPECT_EQ(ap_ws_len(&d), 3);
        while (ap_ws_try_pop(&d, &x) == AP_OK)
            ;
        EXPECT_EQ(ap_ws_len(&d), 0);
    }
    EXPECT_LT(atomic_load(&d.top), (size_t)200); /* it did wrap */
}

Test(work_steal, steal_half_counts)
{
    ap_ws v, d;
    size_t n = 0;
    void *x;
    EXPECT_EQ(ap_ws_init(&v, mem, sizeof mem, 16), AP_OK);
    EXPECT_EQ(ap_ws_init(&d, mem2, sizeof mem2, 4), AP_OK);
    /* 1 task: ceil(1/2) = 1 */
    EXPECT_EQ(ap_ws_try_push(&v, T(1)), AP_OK);
    EXPECT_EQ(ap_ws_steal_half(&v, &d, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(ap_ws_len(&v), 0);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 1);
    /* 7 tasks: 4 move, oldest first; dst pops the newest of them first */
    for (uintptr_t i = 1; i <= 7; i++)
        EXPECT_EQ(ap_ws_try_push(&v, T(i)), AP_OK);
    EXPECT_EQ(ap_ws_steal_half(&v, &d, &n), AP_OK);
    EXPECT_EQ(n, 4);
    EXPECT_EQ(ap_ws_len(&v), 3);
    EXPECT_EQ(ap_ws_len(&d), 4);
    for (uintptr_t i = 4; i >= 1; i--) {
        EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
        EXPECT_EQ(U(x), i);
    }
    /* 3 left (5 6 7): 2 move; with a dst of room 1 only 1 moves */
    EXPECT_EQ(ap_ws_try_push(&d, T(100)), AP_OK);
    EXPECT_EQ(ap_ws_try_push(&d, T(101)), AP_OK);
    EXPECT_EQ(ap_ws_try_push(&d, T(102)), AP_OK);
    n = 0;
    EXPECT_EQ(ap_ws_steal_half(&v, &d, &n), AP_OK);
    EXPECT_EQ(n, 1);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), 5);
    /* dst full: AP_FULL, nothing moves, n untouched */
    EXPECT_EQ(ap_ws_try_push(&d, T(103)), AP_OK);
    n = 42;
    EXPECT_EQ(ap_ws_steal_half(&v, &d, &n), AP_FULL);
    EXPECT_EQ(n, 42);
    EXPECT_EQ(ap_ws_len(&v), 2);
    /* a big one: 16 -> 8 */
    ap_ws big;
    static _Alignas(64) unsigned char mem3[AP_WS_BYTES(64)];
    EXPECT_EQ(ap_ws_init(&big, mem3, sizeof mem3, 64), AP_OK);
    while (ap_ws_try_pop(&v, &x) == AP_OK)
        ;
    for (uintptr_t i = 1; i <= 16; i++)
        EXPECT_EQ(ap_ws_try_push(&v, T(i)), AP_OK);
    EXPECT_EQ(ap_ws_steal_half(&v, &big, &n), AP_OK);
    EXPECT_EQ(n, 8);
    for (uintptr_t i = 1; i <= 8; i++) { /* thieves of big see them FIFO */
        EXPECT_EQ(ap_ws_try_steal(&big, &x), AP_OK);
        EXPECT_EQ(U(x), i);
    }
    EXPECT_EQ(ap_ws_try_steal(&v, &x), AP_OK);
    EXPECT_EQ(U(x), 9);
}

/* issue #11: the buffers come with their sizes; NULL, short or misaligned
 * is AP_INVAL (NULL and misaligned tripped AP_ASSERT, a short buffer was
 * overrun) and neither the object nor the buffer changes */
Test(work_steal, bad_buffers_and_arguments_are_inval_and_change_nothing)
{
    enum { CAP = 8 };
    static void *words[CAP + 2];
    unsigned char *b = (unsigned char *)words;
    const size_t need = AP_WS_BYTES(CAP);
    _Static_assert(AP_WS_BYTES(CAP) == CAP * sizeof(void *) &&
                       AP_WS_ALIGN == _Alignof(_Atomic(void *)) &&
                       AP_WS_INJECTOR_BYTES(CAP) == AP_MPMC_BYTES(CAP, sizeof(void *)) &&
                       AP_WS_INJECTOR_ALIGN == AP_MPMC_ALIGN,
                   "constant expressions");
    static char as_array_size[AP_WS_ALIGN + AP_WS_INJECTOR_ALIGN];
    EXPECT_EQ(sizeof as_array_size, AP_WS_ALIGN + AP_WS_INJECTOR_ALIGN);
    struct { void *buf; size_t bytes, cap; const char *what; } cases[] = {
        {NULL, sizeof words, CAP, "NULL buffer"},
        {b, need - 1, CAP, "one byte short"},
        {b, need - sizeof(void *), CAP, "one slot short"},
        {b, 0, CAP, "zero bytes"},
        {b + 1, sizeof words - 1, CAP, "misaligned by 1"},
        {b + AP_WS_ALIGN / 2, sizeof words - AP_WS_ALIGN / 2, CAP, "misaligned by half"},
        {b, sizeof words, 0, "capacity 0"},
        {b, sizeof words, 6, "capacity not a power of two"},
        {b, SIZE_MAX, AP_WS_CAPACITY_MAX * 2, "capacity too big"},
    };
    static unsigned char b_before[sizeof words];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ap_ws d, d_before;
        memset(&d, 0x5A, sizeof d);
        memcpy(&d_before, &d, sizeof d);
        memset(b, 0xC3, sizeof words);
        memcpy(b_before, b, sizeof words);
        EXPECT_EQ(ap_ws_init(&d, cases[i].buf, cases[i].bytes, cases[i].cap), AP_INVAL, "%s",
                     cases[i].what);
        EXPECT_EQ(ap__ws_init_at(&d, cases[i].buf, cases[i].bytes, cases[i].cap, SIZE_MAX),
                     AP_INVAL, "init_at: %s", cases[i].what);
        EXPECT(memcmp(&d_before, &d, sizeof d) == 0, "%s: the deque changed", cases[i].what);
        EXPECT(memcmp(b_before, b, sizeof words) == 0, "%s: the buffer changed",
                  cases[i].what);
    }
    /* the injector: its own size (an mpmc of pointers) */
    static size_t iwords[AP_WS_INJECTOR_BYTES(CAP) / sizeof(size_t) + 2];
    unsigned char *ib = (unsigned char *)iwords;
    const size_t ineed = AP_WS_INJECTOR_BYTES(CAP);
    struct { void *buf; size_t bytes, cap; const char *what; } icases[] = {
        {NULL, sizeof iwords, CAP, "NULL buffer"},
        {ib, ineed - 1, CAP, "one byte short"},
        {ib, AP_WS_BYTES(CAP), CAP, "a deque's size (the injector needs more)"},
        {ib, 0, CAP, "zero bytes"},
        {ib + 1, sizeof iwords - 1, CAP, "misaligned by 1"},
        {ib, sizeof iwords, 0, "capacity 0"},
    };
    static unsigned char ib_before[sizeof iwords];
    for (size_t i = 0; i < sizeof icases / sizeof icases[0]; i++) {
        ap_ws_injector inj;
        static unsigned char inj_before[sizeof(ap_ws_injector)];
        memset(&inj, 0x5A, sizeof inj);
        memcpy(inj_before, &inj, sizeof inj);
        memset(ib, 0xC3, sizeof iwords);
        memcpy(ib_before, ib, sizeof iwords);
        EXPECT_EQ(ap_ws_injector_init(&inj, icases[i].buf, icases[i].bytes, icases[i].cap),
                     AP_INVAL, "injector: %s", icases[i].what);
        EXPECT(memcmp(inj_before, &inj, sizeof inj) == 0, "injector, %s: it changed",
                  icases[i].what);
        EXPECT(memcmp(ib_before, ib, sizeof iwords) == 0, "injector, %s: the buffer changed",
                  icases[i].what);
    }
    /* exactly enough works; the excess is not touched */
    ap_ws d;
    void *x = NULL;
    memset(b, 0xC3, sizeof words);
    EXPECT_EQ(ap_ws_init(&d, b, need, CAP), AP_OK);
    for (uintptr_t k = 1; k <= CAP; k++)
        EXPECT_EQ(ap_ws_try_push(&d, T(k)), AP_OK);
    EXPECT_EQ(ap_ws_try_push(&d, T(99)), AP_FULL);
    EXPECT_EQ(ap_ws_try_pop(&d, &x), AP_OK);
    EXPECT_EQ(U(x), CAP);
    for (size_t i = need; i < sizeof words; i++)
        EXPECT_EQ(b[i], 0xC3, "byte %zu past the deque's buffer written", i);
    ap_ws_fini(&d);
    ap_ws_injector inj;
    memset(ib, 0xC3, sizeof iwords);
    EXPECT_EQ(ap_ws_injector_init(&inj, ib, ineed, CAP), AP_OK);
    EXPECT_EQ(ap_ws_injector_try_push(&inj, T(7)), AP_OK);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_OK);
    EXPECT_EQ(U(x), 7);
    for (size_t i = ineed; i < sizeof iwords; i++)
        EXPECT_EQ(ib[i], 0xC3, "byte %zu past the injector's buffer written", i);
    ap_ws_injector_fini(&inj);
}

Test(work_steal, injector)
{
    static _Alignas(64) unsigned char ibuf[AP_WS_INJECTOR_BYTES(3)];
    ap_ws_injector inj;
    void *x = T(5);
    EXPECT_EQ(ap_ws_injector_init(&inj, ibuf, sizeof ibuf, 0), AP_INVAL);
    EXPECT_EQ(ap_ws_injector_init(&inj, ibuf, sizeof ibuf, 3), AP_OK);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_EMPTY);
    EXPECT_EQ(U(x), 5);
    for (uintptr_t i = 1; i <= 3; i++)
        EXPECT_EQ(ap_ws_injector_try_push(&inj, T(i)), AP_OK);
    EXPECT_EQ(ap_ws_injector_try_push(&inj, T(4)), AP_FULL);
    EXPECT_EQ(ap_ws_injector_len(&inj), 3);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_OK);
    EXPECT_EQ(U(x), 1);
    ap_ws_injector_close(&inj);
    EXPECT_EQ(ap_ws_injector_try_push(&inj, T(9)), AP_CLOSED);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_OK);
    EXPECT_EQ(U(x), 2);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_OK);
    EXPECT_EQ(U(x), 3);
    EXPECT_EQ(ap_ws_injector_try_pop(&inj, &x), AP_CLOSED);
    ap_ws_injector_fini(&inj);
}

/* ---- threaded ---- */

#define N_TASKS 200000u
#define MAX_THIEVES 4

typedef struct run {
    ap_ws d;
    ap_ws own[MAX_THIEVES]; /* thieves' deques, for steal_half */
    unsigned thieves;
    bool half;
    size_t cap;
    atomic_bool done;
    _Atomic unsigned char *executed; /* per task: times run */
    _Atomic size_t count;
    atomic_int order_errors;
} run;

typedef struct thief_arg {
    run *r;
    unsigned id;
} thief_arg;

static void execute(run *r, void *task)
{
    uintptr_t v = U(task);
    EXPECT(v >= 1 && v <= N_TASKS);
    atomic_fetch_add_explicit(&r->executed[v - 1], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

static void *thief_main(void *arg)
{
    thief_arg *a = arg;
    run *r = a->r;
    uintptr_t last = 0;
    void *x;
    for (;;) {
        bool done = atomic_load(&r->done);
        if (r->half) {
            size_t n;
            ap_status st = ap_ws_steal_half(&r->d, &r->own[a->id], &n);
            if (st == AP_OK) {
                uintptr_t hi = 0, prev = UINTPTR_MAX;
                while (ap_ws_try_pop(&r->own[a->id], &x) == AP_OK) {
                    if (U(x) >= prev || U(x) <= last)
                        atomic_fetch_add(&r->order_errors, 1);
                    if (U(x) > hi)
                        hi = U(x);
                    prev = U(x);
                    execute(r, x);
                }
                last = hi;
                continue;
            }
            if (st == AP_EMPTY && done)
                break;
        } else {
            ap_status st = ap_ws_try_steal(&r->d, &x);
            if (st == AP_OK) {
                if (U(x) <= last)
                    atomic_fetch_add(&r->order_errors, 1);
                last = U(x);
                execute(r, x);
                continue;
            }
            if (st == AP_EMPTY && done)
                break;
        }
        sched_yield();
    }
    return NULL;
}

static void run_threaded(unsigned thieves, size_t cap, bool half, unsigned keep)
{
    run *r = calloc(1, sizeof *r);
    void *buf = malloc(AP_WS_BYTES(cap));
    void *own_buf[MAX_THIEVES];
    EXPECT(r && buf);
    r->executed = calloc(N_TASKS, 1);
    EXPECT(r->executed);
    EXPECT_EQ(ap_ws_init(&r->d, buf, AP_WS_BYTES(cap), cap), AP_OK);
    for (unsigned i = 0; i < thieves; i++) {
        own_buf[i] = malloc(AP_WS_BYTES(cap));
        EXPECT_EQ(ap_ws_init(&r->own[i], own_buf[i], AP_WS_BYTES(cap), cap), AP_OK);
    }
    r->thieves = thieves;
    r->half = half;
    r->cap = cap;
    pthread_t th[MAX_THIEVES];
    thief_arg ta[MAX_THIEVES];
    for (unsigned i = 0; i < thieves; i++) {
        ta[i] = (thief_arg){r, i};
        EXPECT_EQ(pthread_create(&th[i], NULL, thief_main, &ta[i]), 0);
    }
    /* owner: push 1..N in increasing order, keep at most `keep` tasks */
    uintptr_t next = 1, last_pop = UINTPTR_MAX;
    void *x;
    while (next <= N_TASKS) {
        if (ap_ws_try_push(&r->d, T(next)) == AP_OK) {
            next++;
            last_pop = UINTPTR_MAX;
        }
        while (ap_ws_len(&r->d) > keep && ap_ws_try_pop(&r->d, &x) == AP_OK) {
            EXPECT_LT(U(x), last_pop); /* decreasing between pushes */
            last_pop = U(x);
            execute(r, x);
        }
    }
    while (ap_ws_try_pop(&r->d, &x) == AP_OK) {
        EXPECT_LT(U(x), last_pop);
        last_pop = U(x);
        execute(r, x);
    }
    atomic_store(&r->done, true);
    for (unsigned i = 0; i < thieves; i++)
        pthread_join(th[i], NULL);
    EXPECT_EQ(atomic_load(&r->order_errors), 0);
    EXPECT_EQ(atomic_load(&r->count), N_TASKS);
    for (size_t i = 0; i < N_TASKS; i++)
        EXPECT_EQ(atomic_load(&r->executed[i]), 1, "task %zu ran %u times", i + 1,
                     (unsigned)atomic_load(&r->executed[i]));
    for (unsigned i = 0; i < thieves; i++)
        free(own_buf[i]);
    free((void *)r->executed);
    free(buf);
    free(r);
}

Test(work_steal, threaded_small_deque_2_thieves, .timeout = TEST_TIMEOUT_S)
{
    run_threaded(2, 4, false, 2);
}

Test(work_steal, threaded_small_deque_4_thieves, .timeout = TEST_TIMEOUT_S)
{
    run_threaded(4, 2, false, 1);
}

Test(work_steal, threaded_full_deque_3_thieves, .timeout = TEST_TIMEOUT_S)
{
    run_threaded(3, 64, false, 64);
}

Test(work_steal, threaded_steal_half_3_thieves, .timeout = TEST_TIMEOUT_S)
{
    run_threaded(3, 64, true, 48);
}
