/*
 * asyncpat/status.h -- the one status enum of the library, one meaning each
 *
 * 0 is success, so `if (st)` tests for failure. New values are only ever
 * appended. Every header uses each value with the meaning below and no
 * other; a header's ERRORS line says which of them it can return.
 *
 *   status         meaning (the same in every header)            what to do
 *   AP_OK          done
 *   AP_FULL        no room for the item now (queue, ring,        retry later, or wait
 *                  batch, buffer); the item stays with you       with a push future
 *   AP_EMPTY       nothing to take now: no item, object,         retry later, or wait
 *                  permit or token (or others queued first)      with a future
 *   AP_AGAIN       a peer is between two steps of the same       retry at once (or
 *                  slot (claimed, not yet published); never      poll again); it ends
 *                  "pending" and never "empty"                   by itself
 *   AP_CLOSED      closed, stopped or drained to the end; an     stop using it
 *                  item you offered stays with you
 *   AP_CANCELED    the operation was cancelled (by you)
 *   AP_REJECTED    refused by a policy decision: breaker open,   back off; do not
 *                  budget spent, a drop or shed policy, a        spin on it
 *                  request that cannot be honoured in time
 *   AP_TIMEDOUT    a deadline you gave passed first
 *   AP_DROPPED     an item was dropped by an overflow policy     it was handed back
 *                  and handed back to you or counted             or counted: look
 *   AP_NOMEM       the allocator returned NULL
 *   AP_INVAL       bad configuration, argument or buffer;        fix the call
 *                  nothing was changed
 *   AP_NOT_READY   not yet: a future that has not completed,     poll it / start it
 *                  an object not started
 *   AP_EXHAUSTED   every allowed attempt failed (retry): the     see last_error and
 *                  last error is beside it                       app_error
 *                  (one attempt: a pipeline stage, a connpool open)
 *   AP_FILTERED    a stage chose to drop the item (pipeline      nothing: counted
 *                  filter); not an error
 *
 * Application errors (your function's own codes) never travel inside an
 * ap_status: the patterns that run your code (retry, pipeline stages,
 * connpool factories, the composed call of resilience.h) carry them in an
 * `int app_error` beside the status.
 */
#ifndef ASYNCPAT_STATUS_H
#define ASYNCPAT_STATUS_H

#include "config.h"

typedef enum ap_status {
    AP_OK = 0,
    AP_FULL,      /* no room now; the item stays with the caller              */
    AP_EMPTY,     /* nothing to take now (item, object, permit, token)        */
    AP_AGAIN,     /* a peer is mid-operation on the same slot; retry at once  */
    AP_CLOSED,    /* closed / stopped; an offered item stays with the caller  */
    AP_CANCELED,  /* the operation was cancelled                              */
    AP_REJECTED,  /* refused by policy (breaker open, budget spent, shed)     */
    AP_TIMEDOUT,  /* a deadline passed first                                  */
    AP_DROPPED,   /* an item was dropped by policy and handed back/counted    */
    AP_NOMEM,     /* the allocator returned NULL                              */
    AP_INVAL,     /* bad configuration, argument or buffer; nothing changed   */
    AP_NOT_READY, /* not yet: future pending, object not started              */
    AP_EXHAUSTED, /* every allowed attempt failed; last error beside it       */
    AP_FILTERED   /* a stage chose to drop the item; counted, not an error    */
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
    case AP_NOT_READY: return "not ready";
    case AP_EXHAUSTED: return "exhausted";
    case AP_FILTERED: return "filtered";
    }
    return "unknown status";
}

#endif /* ASYNCPAT_STATUS_H */
