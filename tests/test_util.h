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
 * EXPECT_EQ/NE/LT/LE/GT/GE evaluate each operand exactly once and compare
 * values, not bit patterns: a negative signed operand is below every
 * unsigned one (-1 < 0u holds, -1 == UINT64_MAX does not), a floating
 * operand is compared as long double (never truncated; NaN fails all but
 * NE), pointers compare by address. EXPECT/EXPECT_NOT take a condition,
 * EXPECT_NULL/NOT_NULL a pointer, EXPECT_STR_EQ/NE two strings (NULL only
 * equals NULL), EXPECT_FAIL fails outright. Messages are optional
 * printf-style string literals. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { CK_TRUE, CK_EQ, CK_NE, CK_LT, CK_LE, CK_GT, CK_GE };

/* One operand, by kind: 'i' signed integer, 'u' unsigned integer (and
 * bool), 'f' floating, 'p' pointer (address in u). */
typedef struct ck_val {
    char kind;
    intmax_t i;
    uintmax_t u;
    long double f;
} ck_val;

TU_UNUSED static ck_val ck_vi(intmax_t v) { return (ck_val){'i', v, (uintmax_t)v, (long double)v}; }
TU_UNUSED static ck_val ck_vu(uintmax_t v) { return (ck_val){'u', 0, v, (long double)v}; }
TU_UNUSED static ck_val ck_vf(long double v) { return (ck_val){'f', 0, 0, v}; }
TU_UNUSED static ck_val ck_vp(const volatile void *v)
{
    return (ck_val){'p', 0, (uintmax_t)(uintptr_t)v, 0};
}

/* The operand is evaluated once, in the call; _Generic's controlling
 * expression is not evaluated. */
#define CK_V(x) \
    _Generic((x), \
        _Bool: ck_vu, char: ck_vi, signed char: ck_vi, unsigned char: ck_vu, \
        short: ck_vi, unsigned short: ck_vu, int: ck_vi, unsigned int: ck_vu, \
        long: ck_vi, unsigned long: ck_vu, long long: ck_vi, unsigned long long: ck_vu, \
        float: ck_vf, double: ck_vf, long double: ck_vf, default: ck_vp)(x)

/* -1, 0, 1, or 2 when unordered (a NaN). */
TU_UNUSED static int ck_cmp(ck_val a, ck_val b)
{
    if (a.kind == 'f' || b.kind == 'f') {
        if (a.f != a.f || b.f != b.f)
            return 2;
        return a.f < b.f ? -1 : a.f > b.f;
    }
    bool an = a.kind == 'i' && a.i < 0, bn = b.kind == 'i' && b.i < 0;
    if (an && bn)
        return a.i < b.i ? -1 : a.i > b.i;
    if (an || bn)
        return an ? -1 : 1;
    return a.u < b.u ? -1 : a.u > b.u;
}

TU_UNUSED static void ck_show(char *buf, size_t n, ck_val v)
{
    if (v.kind == 'i')
        snprintf(buf, n, "%jd", v.i);
    else if (v.kind == 'u')
        snprintf(buf, n, "%ju", v.u);
    else if (v.kind == 'f')
        snprintf(buf, n, "%.21Lg", v.f);
    else
        snprintf(buf, n, "0x%jx", v.u);
}

TU_UNUSED static void ck_fail_(const char *file, int line, const char *what, const char *fmt,
                               va_list ap)
{
    char note[256], msg[768];
    vsnprintf(note, sizeof note, fmt, ap);
    snprintf(msg, sizeof msg, "%s%s%s", what, *note ? " -- " : "", note);
    struct criterion_assert_stats st = {.message = msg, .passed = false,
                                        .line = (unsigned)line, .file = file};
    criterion_send_assert(&st);
    criterion_abort_test();
}

TU_UNUSED static void ck_(const char *file, int line, const char *expr, int op, ck_val a,
                          ck_val b, const char *fmt, ...)
{
    int c = op == CK_TRUE ? 0 : ck_cmp(a, b);
    bool ok = op == CK_TRUE ? a.u != 0
            : op == CK_EQ   ? c == 0
            : op == CK_NE   ? c != 0
            : op == CK_LT   ? c == -1
            : op == CK_LE   ? c == -1 || c == 0
            : op == CK_GT   ? c == 1
                            : c == 1 || c == 0;
    if (ok)
        return;
    char what[384], sa[48], sb[48];
    if (op == CK_TRUE) {
        snprintf(what, sizeof what, "%s", expr);
    } else {
        ck_show(sa, sizeof sa, a);
        ck_show(sb, sizeof sb, b);
        snprintf(what, sizeof what, "%s, got %s and %s", expr, sa, sb);
    }
    va_list ap;
    va_start(ap, fmt);
    ck_fail_(file, line, what, fmt, ap);
    va_end(ap);
}

TU_UNUSED static void ck_str_(const char *file, int line, const char *expr, bool want_eq,
                              const char *a, const char *b, const char *fmt, ...)
{
    bool eq = (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
    if (eq == want_eq)
        return;
    char what[640];
    snprintf(what, sizeof what, "%s, got \"%.200s\" and \"%.200s\"", expr, a ? a : "(null)",
             b ? b : "(null)");
    va_list ap;
    va_start(ap, fmt);
    ck_fail_(file, line, what, fmt, ap);
    va_end(ap);
}

#define CK_CMP(op, sym, a, b, ...) \
    ck_(__FILE__, __LINE__, #a " " sym " " #b, op, CK_V(a), CK_V(b), "" __VA_ARGS__)
#define EXPECT_EQ(a, b, ...) CK_CMP(CK_EQ, "==", a, b, __VA_ARGS__)
#define EXPECT_NE(a, b, ...) CK_CMP(CK_NE, "!=", a, b, __VA_ARGS__)
#define EXPECT_LT(a, b, ...) CK_CMP(CK_LT, "<", a, b, __VA_ARGS__)
#define EXPECT_LE(a, b, ...) CK_CMP(CK_LE, "<=", a, b, __VA_ARGS__)
#define EXPECT_GT(a, b, ...) CK_CMP(CK_GT, ">", a, b, __VA_ARGS__)
#define EXPECT_GE(a, b, ...) CK_CMP(CK_GE, ">=", a, b, __VA_ARGS__)
#define EXPECT(c, ...) \
    ck_(__FILE__, __LINE__, #c, CK_TRUE, ck_vu(!!(c)), ck_vu(0), "" __VA_ARGS__)
#define EXPECT_NOT(c, ...) \
    ck_(__FILE__, __LINE__, "!(" #c ")", CK_TRUE, ck_vu(!(c)), ck_vu(0), "" __VA_ARGS__)
#define EXPECT_NULL(p, ...) EXPECT((p) == NULL, __VA_ARGS__)
#define EXPECT_NOT_NULL(p, ...) EXPECT((p) != NULL, __VA_ARGS__)
#define EXPECT_STR_EQ(a, b, ...) \
    ck_str_(__FILE__, __LINE__, #a " == " #b, true, (a), (b), "" __VA_ARGS__)
#define EXPECT_STR_NE(a, b, ...) \
    ck_str_(__FILE__, __LINE__, #a " != " #b, false, (a), (b), "" __VA_ARGS__)
#define EXPECT_FAIL(...) \
    ck_(__FILE__, __LINE__, "EXPECT_FAIL", CK_TRUE, ck_vu(0), ck_vu(0), "" __VA_ARGS__)

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
