/*
 * tests/wide128.h -- exact 128-bit arithmetic for the tests' reference
 * models (brute-force sums, n * t / period), on every target: with unsigned
 * __int128 where the compiler has it (x86_64, aarch64), and by 32-bit limbs
 * where it does not (i386, arm32: see tests/cross.sh). Both forms are always
 * compiled (w128n_* and w128p_*); w128_* is the native one when there is
 * one, and test_core.c checks the portable one against it. Written apart
 * from core.h's ap__mul_64x64/ap__div_128_64, which the tests check.
 * A w128 is a 128-bit two's complement value; w128_scmp reads it signed.
 */
#ifndef ASYNCPAT_TESTS_WIDE128_H
#define ASYNCPAT_TESTS_WIDE128_H

#include <stdbool.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define W128_UNUSED __attribute__((unused))
#else
#define W128_UNUSED
#endif

typedef struct w128 {
    uint64_t hi, lo;
} w128;

static W128_UNUSED w128 w128_u64(uint64_t x) { return (w128){0, x}; }
static W128_UNUSED w128 w128_i64(int64_t x) { return (w128){x < 0 ? UINT64_MAX : 0, (uint64_t)x}; }
static W128_UNUSED bool w128_fits_u64(w128 a) { return a.hi == 0; }
static W128_UNUSED bool w128_fits_i64(w128 a)
{
    return a.hi == ((a.lo >> 63) ? UINT64_MAX : 0);
}
static W128_UNUSED bool w128_neg(w128 a) { return (a.hi >> 63) != 0; }
/* unsigned comparison: -1, 0, 1 */
static W128_UNUSED int w128_cmp(w128 a, w128 b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    return a.lo < b.lo ? -1 : a.lo > b.lo;
}
/* signed comparison: -1, 0, 1 */
static W128_UNUSED int w128_scmp(w128 a, w128 b)
{
    if (w128_neg(a) != w128_neg(b))
        return w128_neg(a) ? -1 : 1;
    return w128_cmp(a, b);
}

/* ---- portable: 32-bit limbs ---- */

static W128_UNUSED w128 w128p_add(w128 a, w128 b)
{
    w128 r = {a.hi + b.hi, a.lo + b.lo};
    r.hi += r.lo < a.lo;
    return r;
}
static W128_UNUSED w128 w128p_sub(w128 a, w128 b)
{
    w128 r = {a.hi - b.hi - (a.lo < b.lo), a.lo - b.lo};
    return r;
}
static W128_UNUSED w128 w128p_mul64(uint64_t a, uint64_t b)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10; /* < 3 * 2^32 */
    w128 r = {p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), (mid << 32) | (uint32_t)p00};
    return r;
}
/* unsigned a / d (d != 0), bit by bit; *rem = a % d */
static W128_UNUSED w128 w128p_divmod64(w128 a, uint64_t d, uint64_t *rem)
{
    w128 q = {0, 0};
    uint64_t r = 0;
    for (int i = 127; i >= 0; i--) {
        uint64_t bit = i >= 64 ? (a.hi >> (i - 64)) & 1 : (a.lo >> i) & 1;
        bool carry = (r >> 63) != 0; /* r * 2 + bit needs 65 bits */
        r = (r << 1) | bit;
        if (carry || r >= d) {
            r -= d;
            if (i >= 64)
                q.hi |= (uint64_t)1 << (i - 64);
            else
                q.lo |= (uint64_t)1 << i;
        }
    }
    *rem = r;
    return q;
}

/* ---- native ---- */

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 w128_native;
static W128_UNUSED w128_native w128n_to(w128 a) { return (w128_native)a.hi << 64 | a.lo; }
static W128_UNUSED w128 w128n_from(w128_native x) { return (w128){(uint64_t)(x >> 64), (uint64_t)x}; }
static W128_UNUSED w128 w128n_add(w128 a, w128 b) { return w128n_from(w128n_to(a) + w128n_to(b)); }
static W128_UNUSED w128 w128n_sub(w128 a, w128 b) { return w128n_from(w128n_to(a) - w128n_to(b)); }
static W128_UNUSED w128 w128n_mul64(uint64_t a, uint64_t b) { return w128n_from((w128_native)a * b); }
static W128_UNUSED w128 w128n_divmod64(w128 a, uint64_t d, uint64_t *rem)
{
    *rem = (uint64_t)(w128n_to(a) % d);
    return w128n_from(w128n_to(a) / d);
}
#define w128_add w128n_add
#define w128_sub w128n_sub
#define w128_mul64 w128n_mul64
#define w128_divmod64 w128n_divmod64
#else
#define w128_add w128p_add
#define w128_sub w128p_sub
#define w128_mul64 w128p_mul64
#define w128_divmod64 w128p_divmod64
#endif

/* floor(a * b / d) (d != 0), and whether it fits 64 bits */
static W128_UNUSED bool w128_muldiv(uint64_t a, uint64_t b, uint64_t d, uint64_t *q)
{
    uint64_t r;
    w128 x = w128_divmod64(w128_mul64(a, b), d, &r);
    *q = x.lo;
    return x.hi == 0;
}

/* signed a / d rounded toward minus infinity, remainder in [0, d) */
static W128_UNUSED w128 w128_sdivmod_floor(w128 a, uint64_t d, uint64_t *rem)
{
    if (!w128_neg(a))
        return w128_divmod64(a, d, rem);
    uint64_t r;
    w128 q = w128_divmod64(w128_sub(w128_u64(0), a), d, &r); /* |a| = q d + r */
    q = w128_sub(w128_u64(0), q);                              /* a = -q d - r */
    if (r != 0) {
        q = w128_sub(q, w128_u64(1));
        r = d - r;
    }
    *rem = r;
    return q;
}

#endif
