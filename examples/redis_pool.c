/*
 * examples/redis_pool.c -- a connection pool (asyncpat/connpool.h) of real
 * Redis connections (hiredis), surviving a server crash.
 *
 *   redis_pool <unix-socket> <kill-command> <start-command>
 *
 * Six threads share at most four connections for 2.4 s, each taking one
 * (waiting in FIFO order when all are lent), sending INCR, giving it back.
 * The factory opens asynchronously (desc.open_async: a non-blocking socket
 * connect and a PING answered, a future driven by the pool's checkout, so
 * no thread blocks in a connect; then hiredis takes the socket over) with
 * the pool's connect timeout of 200 ms (desc.connect_timeout_ns; first
 * checked against a black-holed socket), PINGs on every lend
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

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CRASH_NAME "redis_pool"
#define CRASH_TARGET "<unix-socket>"
#define CRASH_QUERIES "INCR"
#define CRASH_HANDLE redisContext
#define CONNECT_TIMEOUT_NS 200000000u /* the pool's connect timeout: 200 ms */
#include "pool_crash.h" /* the threads, the crash, the checks */

/* The asynchronous open, as a small state machine on a raw non-blocking
 * socket (the pool's open future polls it; pool_crash.h checks readiness):
 * connect (phase 0), send PING (1), read +PONG (2); then the socket turns
 * blocking and hiredis takes it over (redisConnectFd) for the commands,
 * with a 200 ms timeout each. The pool aborts it at its connect timeout
 * (200 ms): abort closes the socket. */
static const char ping[] = "*1\r\n$4\r\nPING\r\n";

static bool crash_connect_start(struct conn *rc, const char *sock, int *app_error)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    rc->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (rc->fd < 0) {
        *app_error = errno;
        return false;
    }
    if (connect(rc->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        *app_error = errno; /* ENOENT / ECONNREFUSED: the server is down */
        close(rc->fd);
        rc->fd = -1;
        return false;
    }
    rc->phase = 0;
    rc->wait_fd = rc->fd;
    rc->wait_events = POLLOUT;
    return true;
}

static int connect_fail(struct conn *rc, int *app_error, int e)
{
    *app_error = e ? e : EPROTO;
    close(rc->fd);
    rc->fd = -1;
    return -1;
}

static int crash_connect_step(struct conn *rc, int *app_error)
{
    if (rc->phase == 0) { /* connected? */
        int e = 0;
        socklen_t n = sizeof e;
        if (getsockopt(rc->fd, SOL_SOCKET, SO_ERROR, &e, &n) != 0 || e != 0)
            return connect_fail(rc, app_error, e ? e : errno);
        rc->phase = 1;
    }
    if (rc->phase == 1) { /* 14 bytes into an empty socket buffer: one write */
        if (write(rc->fd, ping, sizeof ping - 1) != (ssize_t)(sizeof ping - 1))
            return connect_fail(rc, app_error, errno);
        rc->phase = 2;
        rc->wait_events = POLLIN;
        return 0;
    }
    ssize_t k = read(rc->fd, rc->rbuf + rc->rlen, sizeof rc->rbuf - 1 - (size_t)rc->rlen);
    if (k < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (k <= 0)
        return connect_fail(rc, app_error, k == 0 ? ECONNRESET : errno);
    rc->rlen += (int)k;
    rc->rbuf[rc->rlen] = 0;
    if (strchr(rc->rbuf, '\n') == NULL)
        return rc->rlen < (int)sizeof rc->rbuf - 1 ? 0 : connect_fail(rc, app_error, EPROTO);
    if (strcmp(rc->rbuf, "+PONG\r\n") != 0)
        return connect_fail(rc, app_error, EPROTO);
    int fl = fcntl(rc->fd, F_GETFL);
    if (fl < 0 || fcntl(rc->fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return connect_fail(rc, app_error, errno);
    rc->c = redisConnectFd(rc->fd); /* blocking from here on; it owns the socket */
    if (rc->c == NULL || rc->c->err) {
        *app_error = rc->c ? rc->c->err : ENOMEM;
        if (rc->c)
            redisFree(rc->c); /* closes the socket */
        else
            close(rc->fd);
        rc->c = NULL;
        rc->fd = -1;
        return -1;
    }
    rc->fd = -1;
    struct timeval tv = {0, 200000};
    redisSetTimeout(rc->c, tv); /* every command's */
    return 1;
}

static void crash_connect_abort(struct conn *rc)
{
    close(rc->fd); /* a half-open connection */
    rc->fd = -1;
}

/* a "server" that queues the connection and never answers PING */
static void crash_blackhole(const char *dir, char *path, size_t path_n, char *target,
                            size_t target_n)
{
    snprintf(path, path_n, "%s/blackhole.sock", dir);
    snprintf(target, target_n, "%s", path);
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
