/*
 * asyncpat/time.h -- the monotonic clock for callers, and deadline arithmetic
 *
 * The library never reads a clock on its own: time enters as a `now_ns`
 * argument or as ap_cx.now. ap_now_ns() is here for callers, and for the
 * caller-side blocking helpers (ap_block_on, the *_wait functions,
 * ap_retry_call), which read the clock their object names (an ap_clock,
 * below; ap_now_ns() by default). Times are uint64_t
 * nanoseconds on a monotonic clock; AP_DEADLINE_NONE means "never".
 * All arithmetic here saturates instead of wrapping.
 *
 * DEADLINES
 *   An ap_deadline is an absolute instant on that clock, so one value can be
 *   handed down through retry, timeout and every waiting operation
 *   (ap_mpmc_pop_wait, ap_sem_acquire_wait, ...) and mean the same instant
 *   everywhere; ap_deadline_remaining(d, now) gives what is left of it.
 *
 * CLOCKS (ap_clock)
 *   An object that takes the caller's `now` in some functions and also has
 *   blocking *_wait helpers (token bucket, batch, connection pool; and
 *   ap_retry_call) names the clock in its desc: an ap_clock field `clock`.
 *   Its *_wait helpers read that clock (through ap_block_on_until_clock,
 *   future.h), and their deadlines are instants on it, so the `now` values
 *   the caller passes and the waits mean the same time scale. A zero
 *   ap_clock (the default of every desc) is ap_now_ns(). A fake clock in
 *   the desc therefore reaches the waiting helpers too, not only the
 *   functions that take `now`.
 *   A blocking helper under a clock other than ap_now_ns() still sleeps in
 *   real time: it takes the clock's nanoseconds as real ones but parks at
 *   most AP_CLOCK_PARK_MAX_NS (1 ms) at a time and then reads the clock
 *   again (so a fake clock advanced by another thread, or by its own
 *   reads, is followed within about a millisecond of real time, and a
 *   clock that runs at real speed costs one extra poll per millisecond of
 *   a timed wait). A wait with no timer at all (no deadline, nothing
 *   lowered cx->deadline) parks until woken, whatever the clock.
 *   Objects whose functions never take a `now` (semaphore, object pool,
 *   lifecycle, barrier, pipeline, split, ...) have no clock field: their
 *   *_wait deadlines are on ap_now_ns()'s clock; to wait on another clock,
 *   drive their future with ap_block_on_until_clock.
 */
#ifndef ASYNCPAT_TIME_H
#define ASYNCPAT_TIME_H

#include "config.h"
#include <time.h>

/*
 * POSIX names under strict ISO C. With -std=c11 and no feature-test macro,
 * glibc hides clock_gettime, CLOCK_MONOTONIC and nanosleep (and syscall and
 * pthread_condattr_setclock, used by future.h and waitlist.h). asyncpat
 * defines no feature macro (reserved identifiers); on Linux, in C, it
 * declares what it uses itself, with the Linux ABI of glibc and musl
 * (clockid_t is int, CLOCK_MONOTONIC is 1). These declarations are
 * compatible with the system's, whichever header comes first, so asyncpat
 * may be included before or after any system header. The monotonic clock
 * is the only clock: ap_now_ns and every timed wait need it. Elsewhere
 * (another OS under strict ISO C) the POSIX names must be visible: compile
 * with -D_POSIX_C_SOURCE=200809L, or -std=gnu11.
 */
#if defined(CLOCK_MONOTONIC)
#define AP__CLOCK_MONOTONIC CLOCK_MONOTONIC
#elif defined(__linux__) && !defined(__cplusplus)
#define AP__CLOCK_MONOTONIC 1 /* CLOCK_MONOTONIC in <linux/time.h> */
#define AP__POSIX_DECLS 1
int clock_gettime(int clock_id, struct timespec *ts);
int nanosleep(const struct timespec *req, struct timespec *rem);
#else
#error "asyncpat needs POSIX clock_gettime(CLOCK_MONOTONIC), hidden by strict ISO C here: compile with -D_POSIX_C_SOURCE=200809L (or -std=gnu11)"
#endif
#if defined(__linux__) && !defined(__cplusplus)
long syscall(long number, ...); /* <unistd.h> shows it only with _DEFAULT_SOURCE */
#endif

#define AP_NS_PER_US UINT64_C(1000)
#define AP_NS_PER_MS UINT64_C(1000000)
#define AP_NS_PER_SEC UINT64_C(1000000000)
#define AP_DEADLINE_NONE UINT64_MAX

/** ap_deadline - an absolute instant (ns); AP_DEADLINE_NONE = never */
typedef uint64_t ap_deadline;

/** ap_now_ns - CLOCK_MONOTONIC in nanoseconds */
AP_API uint64_t ap_now_ns(void)
{
    struct timespec ts;
    clock_gettime(AP__CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/**
 * ap_clock - a clock: now(ctx) returns nanoseconds, never decreasing
 * @now: NULL means ap_now_ns() (so a zero ap_clock is the monotonic clock)
 * @ctx: passed to now; the caller keeps it alive while the clock is in use
 *
 * now may be called from any thread that waits on the clock, concurrently;
 * it must be thread-safe and must not block. A fake clock for tests is a
 * counter (advanced by the test, or by now itself on every read).
 */
typedef struct ap_clock {
    uint64_t (*now)(void *ctx);
    void *ctx;
} ap_clock;

/** AP_CLOCK_PARK_MAX_NS - the longest a blocking helper parks at a time
 *  when it waits on a clock other than ap_now_ns() (see CLOCKS) */
#define AP_CLOCK_PARK_MAX_NS AP_NS_PER_MS

/** ap_clock_is_default - whether @c is ap_now_ns() (NULL or now NULL) */
AP_API bool ap_clock_is_default(const ap_clock *c)
{
    return c == NULL || c->now == NULL;
}

/** ap_clock_now - the time on @c; ap_now_ns() for NULL or a zero ap_clock */
AP_API uint64_t ap_clock_now(const ap_clock *c)
{
    return ap_clock_is_default(c) ? ap_now_ns() : c->now(c->ctx);
}

/** ap_deadline_after - the deadline @dur_ns after @now, saturating at
 *  AP_DEADLINE_NONE (the one "now + duration" of the library) */
AP_API ap_deadline ap_deadline_after(uint64_t now, uint64_t dur)
{
    return dur > UINT64_MAX - now ? AP_DEADLINE_NONE : now + dur;
}

/** ap_time_until - how long from now to deadline, 0 if it has passed */
AP_API uint64_t ap_time_until(uint64_t deadline, uint64_t now)
{
    return deadline > now ? deadline - now : 0;
}

/** ap_time_min - the earlier of two deadlines */
AP_API uint64_t ap_time_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/** ap_deadline_remaining - ns left until @d at @now; 0 once it passed,
 *  AP_DEADLINE_NONE for a deadline that never comes */
AP_API uint64_t ap_deadline_remaining(ap_deadline d, uint64_t now)
{
    return d == AP_DEADLINE_NONE ? AP_DEADLINE_NONE : ap_time_until(d, now);
}

/** ap_deadline_passed - whether @d has been reached at @now */
AP_API bool ap_deadline_passed(ap_deadline d, uint64_t now)
{
    return now >= d;
}

#endif /* ASYNCPAT_TIME_H */
