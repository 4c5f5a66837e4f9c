/*
 * asyncpat/core.h -- shared machinery: allocator, container_of, size
 * arithmetic, the small internal spinlock
 *
 * ALLOCATION
 *   Only functions named `create` allocate, through an ap_allocator passed at
 *   runtime (NULL means the C library's aligned_alloc/free). Under
 *   AP_NO_MALLOC the default is gone and a NULL allocator is AP_INVAL.
 *
 * SPINLOCK
 *   ap__lock guards short internal slow paths (waiter lists). It is a
 *   test-and-test-and-set lock that spins AP_SPIN_LIMIT times, then yields
 *   the CPU with sched_yield() between attempts, so a preempted holder costs
 *   the waiters a context switch, not a burned time slice. No user code and
 *   no waker ever runs under it. A zero ap__lock is unlocked.
 */
#ifndef ASYNCPAT_CORE_H
#define ASYNCPAT_CORE_H

#include "config.h"
#include "status.h"
#include "version.h"
#include <sched.h>
#ifndef AP_NO_MALLOC
#include <stdlib.h>
#endif

/* AP__GAP(n): an empty cache line between hot fields that different threads
 * write. The spatial prefetchers of Intel (since Sandy Bridge) and AMD fetch
 * 128-byte pairs, so fields one line apart still interfere (crossbeam's
 * CachePadded and folly's hardware_destructive_interference_size use 128 on
 * x86-64). A gap line keeps them two lines apart without raising the
 * struct's alignment above AP_CACHELINE. */
#define AP__GAP(n) AP_ALIGNAS(AP_CACHELINE) unsigned char ap__gap##n

/**
 * AP_CONTAINER_OF - the struct that embeds a member, from the member's address
 * Under GNU C the pointer's type is checked against the member's.
 */
#if defined(__cplusplus)
/* C++: the static_cast rejects a pointer of another type (void * passes) */
#define AP_CONTAINER_OF(ptr, type, member)                                               \
    ((type *)(void *)((char *)static_cast<decltype(&((type *)nullptr)->member)>(ptr) - \
                      offsetof(type, member)))
#elif defined(__GNUC__) || defined(__clang__)
#define AP_CONTAINER_OF(ptr, type, member)                                     \
    (__extension__({                                                           \
        AP_STATIC_ASSERT(__builtin_types_compatible_p(__typeof__(*(ptr)),        \
                                                    __typeof__(((type *)0)->member)) || \
                       __builtin_types_compatible_p(__typeof__(*(ptr)), void), \
                       "AP_CONTAINER_OF: pointer does not match member type"); \
        (type *)(void *)((char *)(ptr)-offsetof(type, member));                \
    }))
#else
#define AP_CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))
#endif

/* Smallest power of two >= x, as a constant expression (1 <= x <= 2^63). */
#define AP__SMEAR1(v) ((v) | ((v) >> 1))
#define AP__SMEAR2(v) (AP__SMEAR1(v) | (AP__SMEAR1(v) >> 2))
#define AP__SMEAR4(v) (AP__SMEAR2(v) | (AP__SMEAR2(v) >> 4))
#define AP__SMEAR8(v) (AP__SMEAR4(v) | (AP__SMEAR4(v) >> 8))
#define AP__SMEAR16(v) (AP__SMEAR8(v) | (AP__SMEAR8(v) >> 16))
#define AP__SMEAR32(v) (AP__SMEAR16(v) | (AP__SMEAR16(v) >> 16 >> 16))
#define AP__POW2_CEIL(x) (AP__SMEAR32((size_t)(x)-1) + 1)

/* x rounded up to a multiple of align (a power of two), as a constant
 * expression; it wraps on overflow (sizing macros: ap__align_up checks). */
#define AP__ALIGN_UP(x, align) (((size_t)(x) + ((size_t)(align)-1)) & ~((size_t)(align)-1))

/* The attributes of every function a typed generator (AP_<P>_DEFINE)
 * writes: AP_API linkage, and no warning for the ones a program leaves
 * unused. AP__TYPED_INLINE: the same for the fast-path wrappers that must
 * inline (AP_FORCE_INLINE). */
#define AP__TYPED AP_API AP_MAYBE_UNUSED
#define AP__TYPED_INLINE AP_FORCE_INLINE AP_MAYBE_UNUSED

/* ---- allocator ---- */

typedef struct ap_allocator {
    /* size bytes aligned to align (a power of two); NULL on failure */
    void *(*alloc)(size_t size, size_t align, void *user);
    /* ptr from alloc, with the size it was asked for */
    void (*free)(void *ptr, size_t size, void *user);
    void *user;
} ap_allocator;

/* Round x up to a multiple of align (a power of two); 0 on overflow. */
AP_API size_t ap__align_up(size_t x, size_t align)
{
    if (x > SIZE_MAX - (align - 1))
        return 0;
    return AP__ALIGN_UP(x, align);
}

/* Smallest power of two >= x, for 1 <= x <= SIZE_MAX/2 + 1; 0 if none fits. */
AP_API size_t ap__pow2_ceil(size_t x)
{
    size_t p = 1;
    while (p < x) {
        if (p > SIZE_MAX / 2)
            return 0;
        p <<= 1;
    }
    return p;
}

/* *out = a * b + c, false on overflow. */
AP_API bool ap__size_muladd(size_t a, size_t b, size_t c, size_t *out)
{
    if (b != 0 && a > (SIZE_MAX - c) / b)
        return false;
    *out = a * b + c;
    return true;
}

/* ---- small arithmetic shared by the patterns ---- */

/* splitmix64 (Steele, Lea and Flood, OOPSLA 2014). ap__fmix64 is its
 * finaliser, a bijection of 64-bit words that carries every input bit to
 * every output bit (split.h's routing); ap__mix64 hashes x + the
 * golden-ratio increment, so that 0 does not map to 0 (the key hash of
 * cache.h and token_bucket.h); ap__splitmix64 is the generator's step
 * (retry.h's seed expander, connpool.h's lifetime jitter). */
#define AP__GOLDEN64 UINT64_C(0x9E3779B97F4A7C15)

AP_FORCE_INLINE uint64_t ap__fmix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94D049BB133111EB);
    return x ^ (x >> 31);
}

AP_FORCE_INLINE uint64_t ap__mix64(uint64_t x)
{
    return ap__fmix64(x + AP__GOLDEN64);
}

/* the next output of the splitmix64 generator whose state is *x */
AP_FORCE_INLINE uint64_t ap__splitmix64(uint64_t *x)
{
    *x += AP__GOLDEN64;
    return ap__fmix64(*x);
}

/* *hi:*lo = a * b, the exact 128-bit product (portable: four 32x32
 * products; token_bucket.h uses unsigned __int128 where it has it). */
AP_API void ap__mul_64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *lo = (mid << 32) | (p00 & 0xffffffffu);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* (hi:lo) / d for hi < d (so the quotient fits in 64 bits), the remainder
 * in *rem: binary long division, 64 steps of shift and subtract. */
AP_API uint64_t ap__div_128_64(uint64_t hi, uint64_t lo, uint64_t d, uint64_t *rem)
{
    uint64_t q = 0;
    for (int i = 0; i < 64; i++) {
        uint64_t carry = hi >> 63; /* the shifted remainder is >= 2^64 > d */
        hi = (hi << 1) | (lo >> 63);
        lo <<= 1;
        q <<= 1;
        if (carry || hi >= d) {
            hi -= d; /* mod 2^64, exact: the true difference is < d */
            q |= 1;
        }
    }
    *rem = hi;
    return q;
}

/*
 * ap__probe_delete - backward-shift delete (Knuth, TAOCP 6.4, algorithm R)
 * for a linear-probing table of @cap slots whose slot @i the caller has
 * just emptied: later entries of its cluster move back, so every key stays
 * reachable from its home slot without crossing an empty one.
 * @home(t, j): the home slot of the entry in slot j, SIZE_MAX if j is empty
 * @move(t, to, from): move the entry in slot from to the empty slot to,
 *                     leaving from empty
 * (cache.h's per-shard index, token_bucket.h's keyed table)
 */
AP_FORCE_INLINE void ap__probe_delete(void *t, size_t cap, size_t i,
                                      size_t (*home)(void *t, size_t j),
                                      void (*move)(void *t, size_t to, size_t from))
{
    size_t j = i;
    for (;;) {
        j = j + 1 == cap ? 0 : j + 1;
        size_t h = home(t, j);
        if (h == SIZE_MAX)
            return;
        /* leave j where it is if its home lies cyclically in (i, j] */
        bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (!stays) {
            move(t, i, j);
            i = j;
        }
    }
}

#ifndef AP_NO_MALLOC
AP_API void *ap__default_alloc(size_t size, size_t align, void *user)
{
    (void)user;
    /* C11 aligned_alloc wants size to be a multiple of align. */
    size_t rounded = ap__align_up(size, align);
    return rounded ? aligned_alloc(align, rounded) : NULL;
}

AP_API void ap__default_free(void *ptr, size_t size, void *user)
{
    (void)size;
    (void)user;
    free(ptr);
}
#endif

/* The allocator to use for a create call, or NULL when none is available. */
AP_API const ap_allocator *ap__allocator_or_default(const ap_allocator *a)
{
#ifndef AP_NO_MALLOC
    static const ap_allocator ap__libc_allocator = {ap__default_alloc,
                                                    ap__default_free, NULL};
    if (a == NULL)
        return &ap__libc_allocator;
#endif
    if (a == NULL || a->alloc == NULL || a->free == NULL)
        return NULL;
    return a;
}

/* ---- spinlock for slow paths ---- */

typedef struct ap__lock {
    AP_ATOMIC_T(uint32_t) held;
} ap__lock;

AP_API void ap__lock_acquire(ap__lock *l)
{
    unsigned spins = 0;
    for (;;) {
        /* acquire: pairs with the release in ap__lock_release; the
         * previous holder's critical section happens-before ours. */
        if (AP_ATOMIC_EXCHANGE(&l->held, 1u, memory_order_acquire) == 0)
            return;
        while (AP_ATOMIC_LOAD(&l->held, memory_order_relaxed) != 0) {
            if (++spins < AP_SPIN_LIMIT)
                AP_CPU_RELAX();
            else
                sched_yield();
        }
    }
}

AP_API void ap__lock_release(ap__lock *l)
{
    /* release: publishes the critical section to the next acquirer. */
    AP_ATOMIC_STORE(&l->held, 0u, memory_order_release);
}

/* A bounded wait for a short window that another thread is guaranteed to
 * close (a wake call in progress, a slot being published): spin, then yield. */
AP_API void ap__backoff(unsigned *spins)
{
    if (++*spins < AP_SPIN_LIMIT)
        AP_CPU_RELAX();
    else
        sched_yield();
}

/*
 * Seqlock orders (cache.h, pubsub.h). The normal build is Boehm's (MSPC
 * 2012): relaxed data accesses between a release fence (writer, after making
 * the sequence odd) and an acquire fence (reader, before re-reading the
 * sequence). Under ThreadSanitizer (AP__TSAN) the fences go and every data
 * store inside a write section is a release store, every optimistic data
 * load an acquire load: a reader that reads any store of a section begun
 * after its first sequence load then sees that section's odd sequence (the
 * odd store is sequenced before the release store it read from), so it
 * retries. Strictly stronger, and visible to TSan.
 */
#ifdef AP__TSAN
#define AP__SEQLOCK_MO_STORE memory_order_release /* relaxed beside a fence */
#define AP__SEQLOCK_MO_LOAD memory_order_acquire  /* relaxed beside a fence */
#define AP__SEQLOCK_FENCE_RELEASE() ((void)0)
#define AP__SEQLOCK_FENCE_ACQUIRE() ((void)0)
#else
#define AP__SEQLOCK_MO_STORE memory_order_relaxed
#define AP__SEQLOCK_MO_LOAD memory_order_relaxed
#define AP__SEQLOCK_FENCE_RELEASE() AP_ATOMIC_FENCE(memory_order_release)
#define AP__SEQLOCK_FENCE_ACQUIRE() AP_ATOMIC_FENCE(memory_order_acquire)
#endif

#endif /* ASYNCPAT_CORE_H */
