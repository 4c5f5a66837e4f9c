/*
 * asyncpat/time.h -- the monotonic clock for callers, and deadline arithmetic
 *
 * The library never reads a clock on its own: time enters as a `now_ns`
 * argument or as ap_cx.now. ap_now_ns() is here for callers (and for
 * ap_block_on, which is a caller-side helper). Times are uint64_t
 * nanoseconds on a monotonic clock; AP_DEADLINE_NONE means "never".
 * All arithmetic here saturates instead of wrapping.
 *
 * DEADLINES
 *   An ap_deadline is an absolute instant on that clock, so one value can be
 *   handed down through retry, timeout and every waiting operation
 *   (ap_mpmc_pop_wait, ap_sem_acquire_wait, ...) and mean the same instant
 *   everywhere; ap_deadline_remaining(d, now) gives what is left of it.
 */
#ifndef ASYNCPAT_TIME_H
#define ASYNCPAT_TIME_H

#include "config.h"
#include <time.h>

#if !defined(CLOCK_MONOTONIC)
#error "asyncpat needs POSIX clock_gettime(CLOCK_MONOTONIC): include asyncpat before system headers, or compile with -D_DEFAULT_SOURCE (or -D_POSIX_C_SOURCE=200809L)"
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
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * AP_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/** ap_time_add - now + dur, saturating at AP_DEADLINE_NONE */
AP_API uint64_t ap_time_add(uint64_t now, uint64_t dur)
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

/** ap_deadline_after - the deadline @dur_ns after @now (saturating) */
AP_API ap_deadline ap_deadline_after(uint64_t now, uint64_t dur_ns)
{
    return ap_time_add(now, dur_ns);
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
