/*
 * examples/pg_pool.c -- a connection pool (asyncpat/connpool.h) of real
 * PostgreSQL connections (libpq), surviving a server crash.
 *
 *   pg_pool <conninfo> <kill-command> <start-command>
 *
 * Six threads share at most four connections for 2.4 s, each taking one
 * (waiting in FIFO order when all are lent), running one statement, giving
 * it back. The factory opens asynchronously (desc.open_async: PQconnectStart,
 * then PQconnectPoll from the pool's open future whenever PQsocket is ready,
 * so no thread blocks in a connect) with the pool's connect timeout of 2 s
 * (desc.connect_timeout_ns; first checked against a black-holed socket),
 * runs `SELECT 1` on every lend (validate), and the pool retires connections after a jittered lifetime
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
#define CONNECT_TIMEOUT_NS 2000000000u /* the pool's connect timeout: 2 s */
#include "pool_crash.h" /* the threads, the crash, the checks */

static void quiet(void *arg, const char *message)
{
    (void)arg, (void)message;
}

/* The asynchronous open: PQconnectStart, then PQconnectPoll whenever the
 * socket is ready the way the last call asked (the pool's open future polls
 * us; pool_crash.h checks readiness). The pool aborts it at its connect
 * timeout (2 s); abort is PQfinish. */
static bool crash_connect_start(struct conn *rc, const char *conninfo, int *app_error)
{
    rc->c = PQconnectStart(conninfo);
    if (rc->c == NULL || PQstatus(rc->c) == CONNECTION_BAD) {
        *app_error = ECONNREFUSED;
        if (rc->c)
            PQfinish(rc->c);
        rc->c = NULL;
        return false;
    }
    rc->wait_fd = PQsocket(rc->c); /* libpq: wait until writable first */
    rc->wait_events = POLLOUT;
    return true;
}

static int crash_connect_step(struct conn *rc, int *app_error)
{
    PostgresPollingStatusType ps = PQconnectPoll(rc->c);
    if (ps == PGRES_POLLING_OK) {
        PQsetNoticeProcessor(rc->c, quiet, NULL); /* the crash's WARNING is expected */
        return 1;
    }
    if (ps == PGRES_POLLING_FAILED) {
        *app_error = ECONNREFUSED;
        PQfinish(rc->c);
        rc->c = NULL;
        return -1;
    }
    rc->wait_fd = PQsocket(rc->c); /* it may change between calls */
    rc->wait_events = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    return 0;
}

static void crash_connect_abort(struct conn *rc)
{
    PQfinish(rc->c); /* a half-open connection: closes its socket */
    rc->c = NULL;
}

/* a "server" that queues the connection and never answers the startup
 * packet: libpq's socket <dir>/.s.PGSQL.<port> */
static void crash_blackhole(const char *dir, char *path, size_t path_n, char *target,
                            size_t target_n)
{
    snprintf(path, path_n, "%s/.s.PGSQL.5999", dir);
    snprintf(target, target_n, "host=%s port=5999 dbname=postgres user=postgres", dir);
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
