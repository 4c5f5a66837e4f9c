/*
 * asyncpat/status.h -- the one status enum of the library
 *
 * 0 is success, so `if (st)` tests for failure. Every function that returns
 * ap_status is AP_NODISCARD. New values are only ever appended.
 */
#ifndef ASYNCPAT_STATUS_H
#define ASYNCPAT_STATUS_H

#include "config.h"

typedef enum ap_status {
    AP_OK = 0,
    AP_FULL,     /* no room now: retry, or wait with a push future          */
    AP_EMPTY,    /* nothing now: retry, or wait with a pop future           */
    AP_AGAIN,    /* transient: another thread is mid-operation; retry soon  */
    AP_CLOSED,   /* the object was closed; the item stays with the caller   */
    AP_CANCELED, /* the operation was cancelled                             */
    AP_REJECTED, /* refused by policy (breaker open, bucket empty, ...)     */
    AP_TIMEDOUT, /* a deadline passed first                                 */
    AP_DROPPED,  /* an item was dropped by policy and handed back/counted   */
    AP_NOMEM,    /* the allocator returned NULL                             */
    AP_INVAL     /* bad configuration or argument; nothing was changed      */
} ap_status;

/**
 * ap_status_str - a short English name for a status
 * @s: any value, also out of range
 *
 * Returns a static string, never NULL.
 */
AP_API const char *ap_status_str(ap_status s)
{
    switch (s) {
    case AP_OK:       return "ok";
    case AP_FULL:     return "full";
    case AP_EMPTY:    return "empty";
    case AP_AGAIN:    return "again";
    case AP_CLOSED:   return "closed";
    case AP_CANCELED: return "canceled";
    case AP_REJECTED: return "rejected";
    case AP_TIMEDOUT: return "timed out";
    case AP_DROPPED:  return "dropped";
    case AP_NOMEM:    return "out of memory";
    case AP_INVAL:    return "invalid argument";
    }
    return "unknown status";
}

#endif /* ASYNCPAT_STATUS_H */
