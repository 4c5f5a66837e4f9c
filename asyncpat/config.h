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
 *   AP_MUTANT           undefined                       TESTS ONLY: one of the AP_MUTANT_* ids
 *                                                       below plants a known bug (a negative
 *                                                       control; see tests/mutants.sh)
 *
 * The AP_ATOMIC_* set must be overridden all together or not at all; a
 * partial set stops the build with #error.
 */
#ifndef ASYNCPAT_CONFIG_H
#define ASYNCPAT_CONFIG_H

/*
 * POSIX visibility. Under strict ISO C (-std=c11) glibc hides clock_gettime,
 * sched_yield and syscall. If no feature macro was chosen and no system
 * header has been read yet, ask for the default set; time.h checks later
 * that it got what it needs and says what to do if not.
 */
#if defined(__STRICT_ANSI__) && !defined(_POSIX_C_SOURCE) && \
    !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) &&      \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE)
#define _DEFAULT_SOURCE 1
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <stdatomic.h>

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

/* ---- negative controls (tests only) ----
 *
 * -DAP_MUTANT=<id> plants one known bug at one marked point of a header
 * (grep for its name), so tests/mutants.sh can prove that the check named
 * here fails on it. Without AP_MUTANT nothing of this exists. Never define
 * it outside tests/mutants.sh. Numbered from 1; add new ids at the end.
 *   id  name                              header: the bug          caught by
 */
#define AP_MUTANT_MPMC_RELAXED_PUBLISH 1  /* mpmc.h: push publishes the slot stamp
                                             relaxed, not release    TSan stress */
#define AP_MUTANT_WS_TAKE_NO_FENCE 2      /* work_steal.h: try_pop without its
                                             seq_cst fence (non-TSan build only;
                                             TSan drops the fence anyway)
                                                                     scheduler, TSO mode;
                                                                     plain -O2 work-steal
                                                                     stress, repeated (a
                                                                     task run twice) */
#define AP_MUTANT_SEM_LOAD_STORE 3        /* semaphore.h: try_acquire and release
                                             take/add permits with load + store,
                                             not a CAS               scheduler, semaphore
                                                                     stress, spin model */
#define AP_MUTANT_WAITOP_NO_RECHECK 4     /* waitlist.h: ap_waitop_poll does not
                                             re-try after registering
                                                                     lost-wakeup detectors
                                                                     (scheduler,
                                                                     stress_async), spin */
#define AP_MUTANT_SEM_POLL_NO_RECHECK 5   /* semaphore.h: acquire poll does not run
                                             a grant pass after registering
                                                                     scheduler (lost-
                                                                     wakeup detector) */
#define AP_MUTANT_CB_EARLY_PROBE_RELEASE 6 /* circuit_breaker.h: a reported probe
                                             gives back its admission with its slot,
                                             so a period admits > K   breaker stress */
#define AP_MUTANT_TB_NO_BURST_CLAMP 7     /* token_bucket.h: base is C, not
                                             max(C, V(t)): idle time banks tokens
                                             beyond the burst        random-walk theorem
                                                                     test (Criterion) */
#define AP_MUTANT_POOL_NO_RECHECK 8       /* pool.h: a get future registers
                                             without the grant pass that
                                             re-checks the idle stack
                                                                     scheduler (lost-
                                                                     wakeup detector) */
#define AP_MUTANT_CACHE_NO_SEQ_CHECK 9    /* cache.h: a lock-free get trusts its
                                             copy without re-reading the
                                             shard's sequence word  scheduler (torn
                                                                     value) */
#define AP_MUTANT_LIFE_ENTER_LOAD_STORE 10 /* lifecycle.h: enter checks RUNNING,
                                             then counts with a separate add:
                                             an enter lands after a stop
                                                                     scheduler (enter
                                                                     after drain) */
#define AP_MUTANT_CONNPOOL_NO_RECHECK 11 /* connpool.h: a checkout future
                                             registers without the grant pass
                                             that re-checks      scheduler (lost-
                                                                     wakeup detector) */
#define AP_MUTANT_LAST_ 11
#if defined(AP_MUTANT) && (AP_MUTANT < 1 || AP_MUTANT > AP_MUTANT_LAST_)
#error "asyncpat: AP_MUTANT is not one of the AP_MUTANT_* ids in asyncpat/config.h"
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
    static _Thread_local uint32_t s;
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
