/*
 * tests/test_util.h -- what the Criterion suites share: one timeout value,
 * a fake clock, a counting waker, cheap check macros, a sleep, a tiny PRNG
 * and a counting allocator. A suite includes it instead of defining its own
 * copy of any of these.
 */
#ifndef ASYNCPAT_TEST_UTIL_H
#define ASYNCPAT_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "asyncpat/core.h"
#include "asyncpat/future.h"

#if defined(__GNUC__) || defined(__clang__)
#define TU_UNUSED __attribute__((unused))
#else
#define TU_UNUSED
#endif

/* Every test with a timeout uses this one value: Criterion 2.4's runner
 * (BoxFort) leaks a timeout record when a test with a shorter timeout
 * starts while one with a longer timeout runs (--jobs 2), and
 * LeakSanitizer then fails the whole binary. */
#define TEST_TIMEOUT_S 30

/* A fake clock for a desc's ap_clock (or ap_block_on_until_clock): each read
 * returns t, then adds step (step 0: only the test or another thread moves
 * it); reads counts the reads. */
typedef struct test_clock {
    _Atomic uint64_t t;
    _Atomic uint64_t step;
    atomic_int reads;
} test_clock;

static TU_UNUSED uint64_t test_clock_now(void *ctx)
{
    test_clock *c = ctx;
    atomic_fetch_add(&c->reads, 1);
    return atomic_fetch_add(&c->t, atomic_load(&c->step));
}

/* ---- a waker that counts ----
 * tw_wake adds one to calls (any thread); with a log, it also appends its
 * id to log->order (the first 32 wakes), so a test can see who was woken in
 * which order. cx_of(t): a cx with t's waker, now 0 and no deadline. */
typedef struct wake_log {
    int order[32];
    atomic_int n;
} wake_log;

typedef struct tw {
    atomic_int calls;
    int id;
    wake_log *log;
} tw;

TU_UNUSED static void tw_wake(void *ctx)
{
    tw *t = (tw *)ctx;
    atomic_fetch_add(&t->calls, 1);
    if (t->log) {
        int k = atomic_fetch_add(&t->log->n, 1);
        if (k < 32)
            t->log->order[k] = t->id;
    }
}
TU_UNUSED static int calls(tw *t) { return atomic_load(&t->calls); }
TU_UNUSED static ap_cx cx_of(tw *t) { return (ap_cx){{tw_wake, t}, 0, AP_DEADLINE_NONE}; }

/* ---- checks ----
 * Criterion's assertion macros cost ~25 ms of ASan compile time each, and
 * this file makes hundreds of checks; so every check is a call to one
 * function, which reports the caller's file and line to Criterion.
 * EXPECT_* compare integers and enums as uintmax_t; pointers go through
 * EXPECT. Messages are optional printf-style string literals. */
#include <stdarg.h>
#include <stdio.h>

enum { CK_TRUE, CK_EQ, CK_NE, CK_LT, CK_LE, CK_GT, CK_GE };

TU_UNUSED static void ck_(const char *file, int line, const char *expr, int op, uintmax_t a,
                uintmax_t b, const char *fmt, ...)
{
    bool ok = op == CK_TRUE ? a != 0
            : op == CK_EQ   ? a == b
            : op == CK_NE   ? a != b
            : op == CK_LT   ? a < b
            : op == CK_LE   ? a <= b
            : op == CK_GT   ? a > b
                            : a >= b;
    if (ok)
        return;
    char note[256], msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note, sizeof note, fmt, ap);
    va_end(ap);
    if (op == CK_TRUE)
        snprintf(msg, sizeof msg, "%s%s%s", expr, *note ? " -- " : "", note);
    else
        snprintf(msg, sizeof msg, "%s, got %ju and %ju%s%s", expr, a, b, *note ? " -- " : "", note);
    struct criterion_assert_stats st = {.message = msg, .passed = false,
                                        .line = (unsigned)line, .file = file};
    criterion_send_assert(&st);
    criterion_abort_test();
}

#define CK_CMP(op, sym, a, b, ...) \
    ck_(__FILE__, __LINE__, #a " " sym " " #b, op, (uintmax_t)(a), (uintmax_t)(b), "" __VA_ARGS__)
#define EXPECT_EQ(a, b, ...) CK_CMP(CK_EQ, "==", a, b, __VA_ARGS__)
#define EXPECT_NE(a, b, ...) CK_CMP(CK_NE, "!=", a, b, __VA_ARGS__)
#define EXPECT_LT(a, b, ...) CK_CMP(CK_LT, "<", a, b, __VA_ARGS__)
#define EXPECT_LE(a, b, ...) CK_CMP(CK_LE, "<=", a, b, __VA_ARGS__)
#define EXPECT_GT(a, b, ...) CK_CMP(CK_GT, ">", a, b, __VA_ARGS__)
#define EXPECT_GE(a, b, ...) CK_CMP(CK_GE, ">=", a, b, __VA_ARGS__)
#define EXPECT(c, ...) ck_(__FILE__, __LINE__, #c, CK_TRUE, (uintmax_t)!!(c), 0, "" __VA_ARGS__)
#define EXPECT_NOT(c, ...) ck_(__FILE__, __LINE__, "!(" #c ")", CK_TRUE, (uintmax_t)!(c), 0, "" __VA_ARGS__)
#define EXPECT_NULL(p, ...) EXPECT((p) == NULL, __VA_ARGS__)
#define EXPECT_NOT_NULL(p, ...) EXPECT((p) != NULL, __VA_ARGS__)

/* ---- shared helpers ---- */

TU_UNUSED static void ms_sleep(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

TU_UNUSED static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* An ap_allocator that counts, remembers sizes, and can be told to fail. */
typedef struct counting {
    int allocs, frees;
    bool fail;
    size_t size, align, freed_size;
    void *ptr, *freed_ptr;
    void *user_seen;
} counting;

TU_UNUSED static void *cnt_alloc(size_t size, size_t align, void *user)
{
    counting *c = user;
    c->allocs++;
    c->size = size;
    c->align = align;
    c->user_seen = user;
    if (c->fail || size > ((size_t)1 << 30))
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) != 0)
        return NULL;
    c->ptr = p;
    return p;
}

TU_UNUSED static void cnt_free(void *p, size_t size, void *user)
{
    counting *c = user;
    c->frees++;
    c->freed_ptr = p;
    c->freed_size = size;
    free(p);
}

#endif /* ASYNCPAT_TEST_UTIL_H */
