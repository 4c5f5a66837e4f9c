/*
 * examples/redis_pool.c -- a connection pool (asyncpat/connpool.h) of real
 * Redis connections (hiredis), surviving a server crash.
 *
 *   redis_pool <unix-socket> <kill-command> <start-command>
 *
 * Six threads share at most four connections for 2.4 s, each taking one
 * (waiting in FIFO order when all are lent), sending INCR, giving it back.
 * The factory connects without blocking past a connect timeout (hiredis's
 * non-blocking connect, polled for at most 200 ms), PINGs on every lend
 * (validate), and the pool retires connections after a jittered lifetime
 * (400 ms less up to 25%, seeded) and reports a connection held too long
 * (leak detection, with the checkout's file:line: AP_DEBUG is on here).
 * At 0.6 s the program runs <kill-command> (the server dies: every
 * connection breaks), at 1.2 s <start-command> (a new server on the same
 * socket). It checks, and exits 1 otherwise:
 *   - no broken connection is ever lent: a connection opened before a kill
 *     that finished before the checkout began must have failed validate
 *   - at most max_size connections exist at every instant (the factory
 *     counts opens minus closes at every open)
 *   - connections are replaced once the server is back (INCRs succeed
 *     after the restart on connections opened after it)
 *   - every connection opened is closed exactly once (opens == closes,
 *     and the pool's own counters agree)
 *   - the one deliberate leak is reported once, with its call site
 * Build: make examples-servers (needs libhiredis-dev); test: redis_pool.test.
 */
#define _GNU_SOURCE
#define AP_DEBUG 1 /* leak reports carry the checkout's file:line */
#include "asyncpat/connpool.h"

#include <hiredis/hiredis.h>

#define CRASH_NAME "redis_pool"
#define CRASH_TARGET "<unix-socket>"
#define CRASH_QUERIES "INCR"
#define CRASH_HANDLE redisContext
#include "pool_crash.h" /* the threads, the crash, the checks */

static bool crash_connect(struct conn *rc, const char *sock, int *app_error)
{
    struct timeval tv = {0, 200000}; /* connect timeout: 200 ms */
    rc->c = redisConnectUnixWithTimeout(sock, tv);
    if (rc->c == NULL || rc->c->err) {
        *app_error = rc->c ? rc->c->err : -1;
        if (rc->c)
            redisFree(rc->c);
        return false;
    }
    redisSetTimeout(rc->c, tv); /* and every command's */
    return true;
}

static void crash_disconnect(struct conn *rc)
{
    redisFree(rc->c);
}

static bool crash_ping(struct conn *rc)
{
    redisReply *r = rc->c->err ? NULL : (redisReply *)redisCommand(rc->c, "PING");
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool crash_query(struct conn *rc)
{
    redisReply *r = (redisReply *)redisCommand(rc->c, "INCR hits");
    bool ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    return ok;
}

static ap_status crash_checkout_leaky(void **c, ap_connpool_fail *why)
{
    leak_line = __LINE__ + 1;
    return AP_CONNPOOL_CHECKOUT_WAIT(&pool, c, ap_now_ns() + 300000000u, why);
}
