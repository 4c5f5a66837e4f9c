/*
 * examples/pg_pool.c -- a connection pool (asyncpat/connpool.h) of real
 * PostgreSQL connections (libpq), surviving a server crash.
 *
 *   pg_pool <conninfo> <kill-command> <start-command>
 *
 * Six threads share at most four connections for 2.4 s, each taking one
 * (waiting in FIFO order when all are lent), running one statement, giving
 * it back. The factory connects without blocking past a connect timeout
 * (PQconnectStart + PQconnectPoll, polled for at most 2 s), runs
 * `SELECT 1` on every lend (validate), and the pool retires connections after a jittered lifetime
 * (400 ms less up to 25%, seeded) and reports a connection held too long
 * (leak detection, with the checkout's file:line: AP_DEBUG is on here).
 * At 0.6 s the program runs <kill-command> (the server dies: every
 * connection breaks), at 1.2 s <start-command> (`pg_ctl start -w` on the same
 * data directory). It checks, and exits 1 otherwise:
 *   - no broken connection is ever lent: a connection opened before a kill
 *     that finished before the checkout began must have failed validate
 *   - at most max_size connections exist at every instant (the factory
 *     counts opens minus closes at every open)
 *   - connections are replaced once the server is back (queries succeed
 *     after the restart on connections opened after it)
 *   - every connection opened is closed exactly once (opens == closes,
 *     and the pool's own counters agree)
 *   - the one deliberate leak is reported once, with its call site
 * Build: make examples-servers (needs libpq-dev); test: pg_pool.test.
 */
#define _GNU_SOURCE
#define AP_DEBUG 1 /* leak reports carry the checkout's file:line */
#include "asyncpat/connpool.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>

#define CRASH_NAME "pg_pool"
#define CRASH_TARGET "<conninfo>"
#define CRASH_QUERIES "queries"
#define CRASH_HANDLE PGconn
#include "pool_crash.h" /* the threads, the crash, the checks */

static void quiet(void *arg, const char *message)
{
    (void)arg, (void)message;
}

static bool crash_connect(struct conn *rc, const char *conninfo, int *app_error)
{
    /* non-blocking connect: PQconnectPoll says which way to wait; we wait
     * at most until the connect deadline (2 s) */
    uint64_t deadline = ap_now_ns() + 2000000000u;
    rc->c = PQconnectStart(conninfo);
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    while (rc->c != NULL && PQstatus(rc->c) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
           ps != PGRES_POLLING_FAILED) {
        uint64_t now = ap_now_ns();
        if (now >= deadline) {
            ps = PGRES_POLLING_FAILED;
            *app_error = ETIMEDOUT;
            break;
        }
        struct pollfd pfd = {PQsocket(rc->c), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        if (poll(&pfd, 1, (int)((deadline - now) / 1000000u) + 1) < 0 && errno != EINTR) {
            ps = PGRES_POLLING_FAILED;
            break;
        }
        ps = PQconnectPoll(rc->c);
    }
    if (rc->c == NULL || PQstatus(rc->c) != CONNECTION_OK) {
        if (*app_error == 0)
            *app_error = ECONNREFUSED;
        if (rc->c)
            PQfinish(rc->c);
        return false;
    }
    PQsetNoticeProcessor(rc->c, quiet, NULL); /* the crash's WARNING is expected */
    return true;
}

static void crash_disconnect(struct conn *rc)
{
    PQfinish(rc->c);
}

static bool crash_ping(struct conn *rc)
{
    PGresult *r = PQexec(rc->c, "SELECT 1");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

static bool crash_query(struct conn *rc)
{
    PGresult *r = PQexec(rc->c, "SELECT count(*) FROM pg_stat_activity");
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok;
}

static ap_status crash_checkout_leaky(void **c, ap_connpool_fail *why)
{
    leak_line = __LINE__ + 1;
    return AP_CONNPOOL_CHECKOUT_WAIT(&pool, c, ap_now_ns() + 300000000u, why);
}
