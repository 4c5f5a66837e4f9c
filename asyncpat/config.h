/*
 * asyncpat/config.h -- every override macro, with its default, in one place
 *
 * Define any of these before the first asyncpat include to override it.
 *
 *   macro               default                         purpose
 *   AP_API              static inline                   linkage of every public function
 *   AP_FORCE_INLINE     always_inline where supported   hot internals only
 *   AP_ASSERT(c)        print + abort(), even under     preconditions (programmer errors)
 *                       NDEBUG
 *   AP_DEBUG            undefined                       extra checks; never changes layout
 *   AP_CACHELINE        64                              alignment of hot fields (CHANGES LAYOUT:
 *                                                       must be equal in every TU sharing an object)
 *   AP_CPU_RELAX()      pause / yield instruction       spin-wait hint
 *   AP_SPIN_LIMIT       64                              bound of every spin before giving up/parking
 *   AP_WAIT_CONFIRM_NS  50000                           a fresh wait pays membarrier only after this
 *                                                       long (waitlist.h, ap_waitlist_register_cx)
 *   AP_LIKELY/UNLIKELY  __builtin_expect or (x)         branch hints
 *   AP_NODISCARD        warn_unused_result or empty     on every ap_status function
 *   AP_NO_MALLOC        undefined                       removes create/destroy and the default
 *                                                       allocator (nothing can allocate)
 *   AP_ATOMIC_*         C11 atomic_*_explicit           every atomic access of the library goes
 *                                                       through these, so a verification build can
 *                                                       route them through a deterministic scheduler
 *   AP_TEST_YIELD()     nothing                         scheduling noise at interesting points;
 *                                                       -DAP_TEST_YIELD_RANDOM makes it a random
 *                                                       short spin or sched_yield (tests only)
 *   AP_NO_ASYM_BARRIER  undefined                       waiting support uses the portable seq_cst
 *                                                       ladder on the fast paths instead of the
 *                                                       asymmetric barrier (waitlist.h); implied
 *                                                       by ThreadSanitizer and by non-Linux
 *   AP_BARRIER_LIGHT()  compiler-only fence             the asymmetric barrier's halves
 *   AP_BARRIER_HEAVY()  membarrier(PRIVATE_EXPEDITED)   (waitlist.h); a verification build
 *   AP_BARRIER_REGISTER() membarrier registration       overrides the three together
 *   AP_BLOCK_ON_CONDVAR undefined                       ap_block_on parks on a condition variable
 *                                                       instead of a Linux futex
 *
 * The AP_ATOMIC_* set must be overridden all together or not at all; a
 * partial set stops the build with #error.
 */
#ifndef ASYNCPAT_CONFIG_H
#define ASYNCPAT_CONFIG_H

/*
 * POSIX visibility: asyncpat defines no feature-test macro (_DEFAULT_SOURCE
 * and friends are reserved to the implementation and the user, and come too
 * late once a system header was read). Under strict ISO C (-std=c11) on
 * Linux it declares the few POSIX functions glibc then hides itself, so it
 * may be included before or after any system header; see time.h.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
/* ---- C and C++: one spelling for types and attributes ----
 *
 * The headers spell atomic types, alignment, static assertions and thread
 * storage through these macros, never through the C11 keywords, so the
 * same text compiles as C11 and as C++17/20/23:
 *
 *   macro               C11                   C++ before 23         C++23 with <stdatomic.h>
 *   AP_ATOMIC_T(T)      _Atomic(T)            std::atomic<T>        _Atomic(T) (= std::atomic<T>)
 *   AP_ALIGNAS(n)       _Alignas(n)           alignas(n)            alignas(n)
 *   AP_ALIGNOF(T)       _Alignof(T)           alignof(T)            alignof(T)
 *   AP_STATIC_ASSERT    _Static_assert        static_assert         static_assert
 *   AP_THREAD_LOCAL     _Thread_local         thread_local          thread_local
 *   AP__LIT(T){...}     (T){...}              T{...}                T{...}     (private)
 *   AP__ZERO            {0}                   {}                    {}         (private)
 *   AP_ATOMIC_*         atomic_*_explicit     std::atomic_*_explicit atomic_*_explicit
 *
 * C++ guarantees:
 *  - same memory orders: every operation passes the order the C build
 *    passes (std::memory_order_x for memory_order_x); the memory_order
 *    names the headers use are brought into the global namespace with
 *    using-declarations (exactly the ones C++23 <stdatomic.h> declares);
 *    AP_ATOMIC_INIT is a relaxed store in C++ (atomic_init is deprecated
 *    there and absent from C++23 <stdatomic.h>);
 *  - same layout: std::atomic<T> has the size and alignment of _Atomic(T)
 *    for every T the headers use (asserted below and, field by field for
 *    every public struct, by tests/cpp/layout_check.cpp), so one object can
 *    be shared by C and C++ translation units built with the same AP_* macros;
 *  - no exceptions: nothing throws (the std::atomic free functions are
 *    noexcept; allocation goes through the C allocator hooks);
 *  - linkage: every function is AP_API (static inline) and the headers are
 *    not wrapped in extern "C": they define no external symbols, so the
 *    types and functions can appear in a user's extern "C" API as they are,
 *    and including them inside an extern "C" block is harmless too.
 */
#ifdef __cplusplus
#if __cplusplus > 202002L && defined(__has_include)
#if __has_include(<stdatomic.h>)
#define AP__CXX_STDATOMIC 1
#endif
#endif
extern "C++" { /* also when included inside a user's extern "C" block */
#ifdef AP__CXX_STDATOMIC
#include <stdatomic.h>
#define AP_ATOMIC_T(T) _Atomic(T)
#define AP__STD
#else
#include <atomic>
#define AP_ATOMIC_T(T) std::atomic<T>
#define AP__STD std::
using std::memory_order;
using std::memory_order_relaxed;
using std::memory_order_consume;
using std::memory_order_acquire;
using std::memory_order_release;
using std::memory_order_acq_rel;
using std::memory_order_seq_cst;
using std::atomic_signal_fence;
#endif
}
#define AP_ALIGNAS(n) alignas(n)
#define AP_ALIGNOF(T) alignof(T)
#define AP_STATIC_ASSERT(c, msg) static_assert(c, msg)
#define AP_THREAD_LOCAL thread_local
#define AP__LIT(T) T /* T{...}: C++ has no compound literals */
#define AP__ZERO {}   /* zero-initializer without missing-field warnings */
#else
#include <stdatomic.h>
#define AP_ATOMIC_T(T) _Atomic(T)
#define AP_ALIGNAS(n) _Alignas(n)
#define AP_ALIGNOF(T) _Alignof(T)
#define AP_STATIC_ASSERT(c, msg) _Static_assert(c, msg)
#define AP_THREAD_LOCAL _Thread_local
#define AP__LIT(T) (T) /* (T){...}: a compound literal */
#define AP__ZERO {0}
#endif

#ifndef AP_API
#define AP_API static inline
#endif

#ifndef AP_FORCE_INLINE
#if defined(__GNUC__) || defined(__clang__)
#define AP_FORCE_INLINE static inline __attribute__((always_inline))
#else
#define AP_FORCE_INLINE AP_API
#endif
#endif

#ifndef AP_ASSERT
/* Always checked, also under NDEBUG (the stb lesson: a silent default
 * assert turns a programmer error into memory corruption). */
#include <stdio.h>
#include <stdlib.h>
#if defined(__GNUC__) || defined(__clang__)
/* out of line and cold: an assertion on a fast path costs a compare */
__attribute__((noinline, cold, noreturn, unused))
static void ap__assert_fail(const char *expr, const char *file, int line)
#else
static inline void ap__assert_fail(const char *expr, const char *file, int line)
#endif
{
    fprintf(stderr, "asyncpat: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
#define AP_ASSERT(c) ((c) ? (void)0 : ap__assert_fail(#c, __FILE__, __LINE__))
#endif

#ifndef AP_CACHELINE
#define AP_CACHELINE 64
#endif

#ifndef AP_CPU_RELAX
#if defined(__x86_64__) || defined(__i386__)
#define AP_CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define AP_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define AP_CPU_RELAX() ((void)0)
#endif
#endif

/* How long a freshly registered future waits before it pays the waiting
 * side's HEAVY barrier (waitlist.h, ap_waitlist_register_cx): a wake that
 * comes sooner costs no membarrier; one the waking side missed costs at
 * most this much latency. */
#ifndef AP_WAIT_CONFIRM_NS
#define AP_WAIT_CONFIRM_NS 50000u
#endif

#ifndef AP_SPIN_LIMIT
#define AP_SPIN_LIMIT 64
#endif

#ifndef AP_LIKELY
#if defined(__GNUC__) || defined(__clang__)
#define AP_LIKELY(x) __builtin_expect(!!(x), 1)
#define AP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define AP_LIKELY(x) (x)
#define AP_UNLIKELY(x) (x)
#endif
#endif

/* AP__COLD: an out-of-line, rarely taken helper (the waking side's slow
 * path), so the fast paths that call it stay small enough to inline. */
#if defined(__GNUC__) || defined(__clang__)
#define AP__COLD static __attribute__((noinline, unused))
#else
#define AP__COLD AP_API
#endif

/* On functions stamped out by the *_DEFINE generators: a user rarely
 * calls all of them, and clang warns about unused static functions in .c files. */
#ifndef AP_MAYBE_UNUSED
#if defined(__GNUC__) || defined(__clang__)
#define AP_MAYBE_UNUSED __attribute__((unused))
#else
#define AP_MAYBE_UNUSED
#endif
#endif

#ifndef AP_NODISCARD
#if defined(__GNUC__) || defined(__clang__)
#define AP_NODISCARD __attribute__((warn_unused_result))
#else
#define AP_NODISCARD
#endif
#endif

/* ---- atomics: one indirection so a verification build can take over ---- */

#if defined(AP_ATOMIC_LOAD) || defined(AP_ATOMIC_STORE) ||             \
    defined(AP_ATOMIC_EXCHANGE) || defined(AP_ATOMIC_CAS_WEAK) ||      \
    defined(AP_ATOMIC_CAS_STRONG) || defined(AP_ATOMIC_FETCH_ADD) ||   \
    defined(AP_ATOMIC_FETCH_SUB) || defined(AP_ATOMIC_FETCH_OR) ||     \
    defined(AP_ATOMIC_FETCH_AND) || defined(AP_ATOMIC_FENCE) ||        \
    defined(AP_ATOMIC_INIT)
#if !(defined(AP_ATOMIC_LOAD) && defined(AP_ATOMIC_STORE) &&           \
      defined(AP_ATOMIC_EXCHANGE) && defined(AP_ATOMIC_CAS_WEAK) &&    \
      defined(AP_ATOMIC_CAS_STRONG) && defined(AP_ATOMIC_FETCH_ADD) && \
      defined(AP_ATOMIC_FETCH_SUB) && defined(AP_ATOMIC_FETCH_OR) &&   \
      defined(AP_ATOMIC_FETCH_AND) && defined(AP_ATOMIC_FENCE) &&      \
      defined(AP_ATOMIC_INIT))
#error "asyncpat: override all AP_ATOMIC_* macros together, or none"
#endif
#elif defined(__cplusplus)
/* the same calls, in namespace std before C++23; a relaxed store for init */
#define AP_ATOMIC_INIT(p, v) AP__STD atomic_store_explicit((p), (v), AP__STD memory_order_relaxed)
#define AP_ATOMIC_LOAD(p, mo) AP__STD atomic_load_explicit((p), (mo))
#define AP_ATOMIC_STORE(p, v, mo) AP__STD atomic_store_explicit((p), (v), (mo))
#define AP_ATOMIC_EXCHANGE(p, v, mo) AP__STD atomic_exchange_explicit((p), (v), (mo))
#define AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail) \
    AP__STD atomic_compare_exchange_weak_explicit((p), (expp), (v), (mo_ok), (mo_fail))
#define AP_ATOMIC_CAS_STRONG(p, expp, v, mo_ok, mo_fail) \
    AP__STD atomic_compare_exchange_strong_explicit((p), (expp), (v), (mo_ok), (mo_fail))
#define AP_ATOMIC_FETCH_ADD(p, v, mo) AP__STD atomic_fetch_add_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_SUB(p, v, mo) AP__STD atomic_fetch_sub_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_OR(p, v, mo) AP__STD atomic_fetch_or_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_AND(p, v, mo) AP__STD atomic_fetch_and_explicit((p), (v), (mo))
#define AP_ATOMIC_FENCE(mo) AP__STD atomic_thread_fence(mo)
#else
#define AP_ATOMIC_INIT(p, v) atomic_init((p), (v))
#define AP_ATOMIC_LOAD(p, mo) atomic_load_explicit((p), (mo))
#define AP_ATOMIC_STORE(p, v, mo) atomic_store_explicit((p), (v), (mo))
#define AP_ATOMIC_EXCHANGE(p, v, mo) atomic_exchange_explicit((p), (v), (mo))
#define AP_ATOMIC_CAS_WEAK(p, expp, v, mo_ok, mo_fail) \
    atomic_compare_exchange_weak_explicit((p), (expp), (v), (mo_ok), (mo_fail))
#define AP_ATOMIC_CAS_STRONG(p, expp, v, mo_ok, mo_fail) \
    atomic_compare_exchange_strong_explicit((p), (expp), (v), (mo_ok), (mo_fail))
#define AP_ATOMIC_FETCH_ADD(p, v, mo) atomic_fetch_add_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_SUB(p, v, mo) atomic_fetch_sub_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_OR(p, v, mo) atomic_fetch_or_explicit((p), (v), (mo))
#define AP_ATOMIC_FETCH_AND(p, v, mo) atomic_fetch_and_explicit((p), (v), (mo))
#define AP_ATOMIC_FENCE(mo) atomic_thread_fence(mo)
#endif

/* The 64-bit atomics (pool head, pubsub stamps, breaker words, ...) must be
 * lock-free: on 32-bit x86 that is cmpxchg8b, from the i586 on. Without it
 * gcc and clang call libatomic's lock-based __atomic_*_8, and the lock-free
 * progress every header states would be false. */
#if defined(__GCC_ATOMIC_LLONG_LOCK_FREE) && __GCC_ATOMIC_LLONG_LOCK_FREE < 2
#error "asyncpat/config.h: 64-bit atomics are not lock-free on this target (on i386: no cmpxchg8b before -march=i586; build with -march=i586 or later)"
#endif

/* std::atomic<T> must be laid out as _Atomic(T) for a struct to have one
 * layout in C and C++: true on gcc and clang for these lock-free sizes. */
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(uint64_t)) == 8 && AP_ALIGNOF(AP_ATOMIC_T(uint64_t)) == 8,
                 "atomic uint64_t is 8 bytes, 8-aligned");
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(uint32_t)) == 4 && AP_ALIGNOF(AP_ATOMIC_T(uint32_t)) == 4,
                 "atomic uint32_t is 4 bytes, 4-aligned");
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(uint8_t)) == 1, "atomic uint8_t is 1 byte");
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(size_t)) == sizeof(size_t) &&
                     AP_ALIGNOF(AP_ATOMIC_T(size_t)) == AP_ALIGNOF(size_t),
                 "atomic size_t is laid out as size_t");
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(void *)) == sizeof(void *) &&
                     AP_ALIGNOF(AP_ATOMIC_T(void *)) == AP_ALIGNOF(void *),
                 "atomic pointers are laid out as pointers");
AP_STATIC_ASSERT(sizeof(AP_ATOMIC_T(unsigned)) == sizeof(unsigned) &&
                     AP_ALIGNOF(AP_ATOMIC_T(unsigned)) == AP_ALIGNOF(unsigned),
                 "atomic unsigned is laid out as unsigned");

/* ---- ThreadSanitizer builds ----
 * AP__TSAN is defined when compiling under ThreadSanitizer (gcc or clang).
 * TSan does not model fences (and gcc rejects them with -Werror=tsan), so
 * the headers whose orderings rest on fences (work_steal.h, and the seqlock
 * orders in core.h) trade them for stronger orders on the accesses there. */
#if defined(__SANITIZE_THREAD__)
#define AP__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define AP__TSAN 1
#endif
#endif

/* ---- test scheduling noise ---- */

#ifndef AP_TEST_YIELD
#ifdef AP_TEST_YIELD_RANDOM
#include <sched.h>
/* Tests only: a per-thread xorshift decides between nothing, a short spin
 * and a sched_yield, so stress runs visit the windows between claiming and
 * publishing, or between checking and parking. */
static inline void ap__test_yield(void)
{
    static AP_THREAD_LOCAL uint32_t s;
    if (s == 0)
        s = (uint32_t)(uintptr_t)&s | 1u;
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    if ((s & 15u) == 0)
        sched_yield();
    else if ((s & 3u) == 0)
        for (uint32_t i = (s >> 8) & 63u; i; i--)
            AP_CPU_RELAX();
}
#define AP_TEST_YIELD() ap__test_yield()
#else
#define AP_TEST_YIELD() ((void)0)
#endif
#endif

#endif /* ASYNCPAT_CONFIG_H */
