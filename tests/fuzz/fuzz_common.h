/* tests/fuzz/fuzz_common.h -- input decoding and checks shared by the harnesses */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz { const uint8_t *p; size_t n; } fz;

static inline int fz_more(const fz *f) { return f->n > 0; }
static inline uint8_t fz_u8(fz *f)
{
    if (!f->n) return 0;
    f->n--;
    return *f->p++;
}
static inline uint64_t fz_bytes(fz *f, int k)
{
    uint64_t v = 0;
    for (int i = 0; i < k; i++) v = v << 8 | fz_u8(f);
    return v;
}
static inline uint16_t fz_u16(fz *f) { return (uint16_t)fz_bytes(f, 2); }
static inline uint32_t fz_u32(fz *f) { return (uint32_t)fz_bytes(f, 4); }
static inline uint64_t fz_u64(fz *f) { return fz_bytes(f, 8); }

/* A 64-bit value biased towards the interesting ones: 0, 1, small,
 * powers of two and their neighbours, the maxima, and plain random. */
static inline uint64_t fz_val(fz *f)
{
    uint8_t sel = fz_u8(f);
    switch (sel & 7) {
    case 0: return 0;
    case 1: return fz_u8(f);
    case 2: return fz_u16(f);
    case 3: return UINT64_MAX - fz_u8(f);
    case 4: { unsigned sh = fz_u8(f) & 63; return ((uint64_t)1 << sh) + (uint64_t)(int8_t)fz_u8(f); }
    case 5: return (UINT64_MAX >> (fz_u8(f) & 63)) - (fz_u8(f) & 3);
    case 6: return fz_u32(f);
    default: return fz_u64(f);
    }
}
static inline size_t fz_size(fz *f) { return (size_t)fz_val(f); }
static inline uint32_t fz_val32(fz *f)
{
    uint64_t v = fz_val(f);
    return (fz_u8(f) & 1) ? (uint32_t)v : (uint32_t)(v >> 32 | v);
}

#define FZ_CHECK(c)                                                              \
    do {                                                                         \
        if (!(c)) {                                                              \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
            abort();                                                             \
        }                                                                        \
    } while (0)

/* Fill an object with a pattern; fz_same says whether it is still there. */
#define FZ_PAT 0xA5
static inline void fz_fill(void *p, size_t n) { memset(p, FZ_PAT, n); }
static inline int fz_untouched(const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != FZ_PAT) return 0;
    return 1;
}

/* A counting allocator for create/destroy: refuses more than 1 MiB, and
 * `allocs` (outstanding blocks) must be back to its old value after destroy,
 * or unchanged after an AP_INVAL. */
#include "asyncpat/core.h"
static int allocs;
static inline void *fz_alloc(size_t size, size_t align, void *user)
{
    (void)user;
    allocs++;
    if (size > ((size_t)1 << 20)) return NULL;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static inline void fz_free(void *p, size_t size, void *user) { (void)size; (void)user; allocs--; free(p); }
static const ap_allocator fz_allocator = {fz_alloc, fz_free, NULL};

#endif
