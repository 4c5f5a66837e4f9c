/*
 * examples/pool_crash.h -- the crash test shared by examples/redis_pool.c and
 * examples/pg_pool.c: a connection pool (asyncpat/connpool.h) of real server
 * connections, surviving a server crash. Not part of the library.
 *
 *   <example> <target> <kill-command> <start-command>
 *
 * Six threads share at most four connections for 2.4 s, each taking one
 * (waiting in FIFO order when all are lent), running one query, giving it
 * back. The example's factory opens asynchronously (desc.open_async: the
 * connect is a future that the checkout's poll drives, readiness checked
 * with poll(2) at zero timeout, re-polled within 1 ms), with the pool's
 * connect timeout (desc.connect_timeout_ns), and pings on every lend
 * (validate); the pool retires connections
 * after a jittered lifetime (400 ms less up to 25%, seeded) and reports a
 * connection held too long (leak detection, with the checkout's file:line:
 * AP_DEBUG is on). At 0.6 s the program runs <kill-command> (the server
 * dies: every connection breaks), at 1.2 s <start-command> (a new server on
 * the same address). It checks, and exits 1 otherwise:
 *   - no broken connection is ever lent: a connection opened before a kill
 *     that finished before the checkout began must have failed validate
 *   - at most max_size connections exist at every instant (the factory
 *     counts opens minus closes at every open)
 *   - connections are replaced once the server is back (queries succeed
 *     after the restart on connections opened after it)
 *   - every connection opened is closed exactly once (opens == closes,
 *     and the pool's own counters agree)
 *   - the one deliberate leak is reported once, with its call site
 *   - first, before the crash run: a connect to a black-holed server (a
 *     Unix socket that listens and never answers) times out at the
 *     pool's connect timeout, is aborted, and is counted in open_timeouts
 *
 * The including example defines CRASH_NAME ("redis_pool"), CRASH_TARGET
 * (the usage word for argv[1]), CRASH_QUERIES (the report's word for its
 * queries) and CRASH_HANDLE (its connection type), includes this header
 * after its driver's own headers, and then defines crash_connect_start,
 * crash_connect_step, crash_connect_abort, crash_blackhole,
 * crash_disconnect, crash_ping and crash_query, and CONNECT_TIMEOUT_NS.
 */
#ifndef EXAMPLES_POOL_CRASH_H
#define EXAMPLES_POOL_CRASH_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX = 4, THREADS = 6 };

struct conn {
    CRASH_HANDLE *c;
    unsigned epoch; /* the server generation it connected to */
    /* while the open is in flight: what to wait for (wait_fd < 0: nothing,
     * step at once), and the driver's own progress */
    int wait_fd;
    short wait_events;
    int fd, phase, rlen;
    char rbuf[16];
};

/* the example's driver (defined after this header is included) */
/* begin a non-blocking connect; false: failed at once (*app_error set,
 * nothing left to free) */
static bool crash_connect_start(struct conn *c, const char *target, int *app_error);
/* make progress (its socket is ready): 1 connected, -1 failed (*app_error
 * set, nothing left to free), 0 not yet (c->wait_fd / wait_events say for
 * what to wait) */
static int crash_connect_step(struct conn *c, int *app_error);
static void crash_connect_abort(struct conn *c); /* free a half-open connect */
/* a black-holed server in @dir: the Unix socket path to listen on (and
 * never answer), and the target that connects to it */
static void crash_blackhole(const char *dir, char *path, size_t path_n, char *target,
                            size_t target_n);
static void crash_disconnect(struct conn *c);
static bool crash_ping(struct conn *c);  /* validate: the server answers */
static bool crash_query(struct conn *c); /* the work done with a lent connection */
/* the checkout that will leak, written in the example so that the leak
 * report names the example's file:line (it sets leak_line) */
static ap_status crash_checkout_leaky(void **c, ap_connpool_fail *why);

struct factory {
    const char *target; /* argv[1]: socket path or conninfo */
    AP_ATOMIC_T(unsigned) epoch; /* +1 after each kill has completed */
    AP_ATOMIC_T(long) opens, closes, max_live, failed_connects, in_flight, aborts;
};

static struct factory fac;
static AP_ATOMIC_T(int) errors;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, CRASH_NAME ": FAIL: " __VA_ARGS__);                    \
            fputc('\n', stderr);                                                \
            AP_ATOMIC_FETCH_ADD(&errors, 1, memory_order_relaxed);              \
        }                                                                       \
    } while (0)

static ap_status r_open_start(void *ctx, void *conn, uint64_t now, int *app_error)
{
    struct factory *f = ctx;
    struct conn *rc = conn;
    (void)now;
    rc->epoch = AP_ATOMIC_LOAD(&f->epoch, memory_order_acquire);
    rc->c = NULL;
    rc->wait_fd = -1;
    rc->fd = -1;
    rc->phase = rc->rlen = 0;
    if (!crash_connect_start(rc, f->target, app_error)) {
        AP_ATOMIC_FETCH_ADD(&f->failed_connects, 1, memory_order_relaxed);
        return AP_CLOSED; /* the caller sees AP_EXHAUSTED, this beside it */
    }
    long busy = AP_ATOMIC_FETCH_ADD(&f->in_flight, 1, memory_order_acq_rel) + 1 +
                AP_ATOMIC_LOAD(&f->opens, memory_order_acquire) -
                AP_ATOMIC_LOAD(&f->closes, memory_order_acquire);
    CHECK(busy <= MAX, "%ld connections open or opening, max %d", busy, MAX);
    return AP_OK;
}

/* The open future's step: no thread of ours and no blocking; the socket's
 * readiness is checked with poll(2) at zero timeout. A real event loop
 * would watch wait_fd and call cx->waker; the checkout_wait driving us
 * here parks instead, so we ask to be polled again within 1 ms. */
static ap_poll r_open_poll(void *ctx, void *conn, ap_cx *cx, ap_status *result, int *app_error)
{
    struct factory *f = ctx;
    struct conn *rc = conn;
    if (rc->wait_fd >= 0) {
        struct pollfd pfd = {rc->wait_fd, rc->wait_events, 0};
        if (poll(&pfd, 1, 0) == 0) {
            ap_cx_wake_at(cx, cx->now + 1000000u);
            return AP_PENDING;
        }
    }
    int r = crash_connect_step(rc, app_error);
    if (r == 0) {
        ap_cx_wake_at(cx, cx->now + 1000000u);
        return AP_PENDING;
    }
    AP_ATOMIC_FETCH_SUB(&f->in_flight, 1, memory_order_acq_rel);
    if (r < 0) {
        AP_ATOMIC_FETCH_ADD(&f->failed_connects, 1, memory_order_relaxed);
        *result = AP_CLOSED;
        return AP_READY;
    }
    long live = AP_ATOMIC_FETCH_ADD(&f->opens, 1, memory_order_acq_rel) + 1 -
                AP_ATOMIC_LOAD(&f->closes, memory_order_acquire);
    CHECK(live <= MAX, "%ld connections open, max %d", live, MAX);
    long m = AP_ATOMIC_LOAD(&f->max_live, memory_order_relaxed);
    while (live > m && !AP_ATOMIC_CAS_WEAK(&f->max_live, &m, live, memory_order_relaxed,
                                           memory_order_relaxed)) {
    }
    *result = AP_OK;
    return AP_READY;
}

static void r_open_abort(void *ctx, void *conn)
{
    struct factory *f = ctx;
    crash_connect_abort((struct conn *)conn);
    AP_ATOMIC_FETCH_SUB(&f->in_flight, 1, memory_order_acq_rel);
    AP_ATOMIC_FETCH_ADD(&f->aborts, 1, memory_order_relaxed);
}

static const ap_connpool_open_async r_open_async = {r_open_start, r_open_poll, r_open_abort};

static void r_close(void *ctx, void *conn)
{
    struct factory *f = ctx;
    struct conn *rc = conn;
    CHECK(rc->c != NULL, "a connection closed twice");
    crash_disconnect(rc);
    rc->c = NULL;
    AP_ATOMIC_FETCH_ADD(&f->closes, 1, memory_order_acq_rel);
}

static bool r_validate(void *ctx, void *conn)
{
    (void)ctx;
    return crash_ping((struct conn *)conn);
}

static struct {
    int calls;
    int line;
    const char *file;
    uint64_t held_ns;
} leak;
static void on_leak(void *ctx, const ap_connpool_leak *l)
{
    (void)ctx;
    leak.calls++; /* only the main thread runs leak_check */
    leak.file = l->file;
    leak.line = l->line;
    leak.held_ns = l->held_ns;
}

static ap_connpool pool;
static AP_ALIGNAS(max_align_t) unsigned char pool_buf[AP_CONNPOOL_BYTES(MAX, sizeof(struct conn))];
static AP_ATOMIC_T(uint64_t) t_end; /* moved to 1.2 s after the restart */
static AP_ATOMIC_T(uint64_t) t_restarted; /* 0 until the server is back */
static AP_ATOMIC_T(long) query_ok, query_failed, query_after_restart, lent_broken, exhausted;
static int leak_line;
/* The test's fault injection: a checkout (from reading the epoch until it
 * returns) and the kill (until the epoch is raised) exclude each other, so
 * "opened before a kill that finished before the checkout began" is exact. */
static pthread_rwlock_t fault;

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    bool leaked = false;
    while (ap_now_ns() < AP_ATOMIC_LOAD(&t_end, memory_order_acquire)) {
        pthread_rwlock_rdlock(&fault);
        unsigned e0 = AP_ATOMIC_LOAD(&fac.epoch, memory_order_acquire);
        void *c;
        ap_connpool_fail why;
        ap_status st;
        uint64_t back = AP_ATOMIC_LOAD(&t_restarted, memory_order_acquire);
        bool leak_now = id == 0 && !leaked && back != 0 && ap_now_ns() > back + 100000000u;
        if (leak_now) {
            st = crash_checkout_leaky(&c, &why); /* its file:line is the example's */
        } else {
            st = AP_CONNPOOL_CHECKOUT_WAIT(&pool, &c, ap_now_ns() + 300000000u, &why);
        }
        pthread_rwlock_unlock(&fault);
        if (st == AP_EXHAUSTED) { /* the server is down: the factory's error beside it */
            AP_ATOMIC_FETCH_ADD(&exhausted, 1, memory_order_relaxed);
            struct timespec ts = {0, 20000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (st != AP_OK)
            continue; /* AP_TIMEDOUT: all four lent for 300 ms */
        struct conn *rc = c;
        if (rc->epoch < e0) { /* opened before a kill that had finished: broken */
            AP_ATOMIC_FETCH_ADD(&lent_broken, 1, memory_order_relaxed);
            CHECK(0, "a connection of server %u lent after kill %u", rc->epoch, e0);
        }
        bool ok = crash_query(rc);
        AP_ATOMIC_FETCH_ADD(ok ? &query_ok : &query_failed, 1, memory_order_relaxed);
        if (ok && rc->epoch >= 1) /* opened after the kill: on the new server */
            AP_ATOMIC_FETCH_ADD(&query_after_restart, 1, memory_order_relaxed);
        if (leak_now) {
            leaked = true; /* hold it too long, once: a leak */
            struct timespec ts = {0, 700000000};
            nanosleep(&ts, NULL);
        }
        /* broken (the server died under us): the pool closes it */
        CHECK(ap_connpool_return(&pool, c, !ok, ap_now_ns()) == AP_OK, "return");
        ap_connpool_stats s;
        ap_connpool_stats_get(&pool, &s);
        CHECK(s.live <= MAX && s.opened - s.closed == s.live, "live %zu", s.live);
    }
    return NULL;
}

/* Before the crash run: a server that accepts connections into its listen
 * queue and never answers (a Unix socket nobody accepts on). Every open
 * of a pool with a connect timeout must end at that timeout: aborted,
 * counted in open_timeouts, reported beside AP_EXHAUSTED. */
static void blackhole_check(void)
{
    enum { BH_TIMEOUT_MS = 150 };
    char dir[] = "/tmp/ap_blackhole.XXXXXX", path[100], target[200];
    if (mkdtemp(dir) == NULL) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    crash_blackhole(dir, path, sizeof path, target, sizeof target);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(ls >= 0 && bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 16) == 0,
          "black hole at %s: %s", path, strerror(errno));
    static struct factory bh;
    bh.target = target;
    static ap_connpool bp;
    static AP_ALIGNAS(max_align_t) unsigned char bp_buf[AP_CONNPOOL_BYTES(1, sizeof(struct conn))];
    ap_connpool_desc d = {.max_size = 1, .conn_size = sizeof(struct conn),
                          .connect_timeout_ns = BH_TIMEOUT_MS * 1000000u,
                          .open_async = &r_open_async};
    ap_connpool_ops ops = {NULL, r_close, r_validate, &bh};
    CHECK(ap_connpool_init(&bp, bp_buf, sizeof bp_buf, &d, &ops) == AP_OK, "black hole pool");
    void *c = NULL;
    ap_connpool_fail why = {AP_OK, 0, false};
    uint64_t t0 = ap_now_ns();
    ap_status st = ap_connpool_checkout_wait(&bp, &c, t0 + 5 * AP_NS_PER_SEC, &why);
    uint64_t ms = (ap_now_ns() - t0) / 1000000u;
    ap_connpool_stats s;
    ap_connpool_stats_get(&bp, &s);
    CHECK(st == AP_EXHAUSTED && why.error == AP_TIMEDOUT && why.open_timeout,
          "a connect to a black hole: %s (%s, open_timeout %d), want a connect timeout",
          ap_status_str(st), ap_status_str(why.error), (int)why.open_timeout);
    CHECK(ms >= BH_TIMEOUT_MS && ms < BH_TIMEOUT_MS + 500, "timed out after %llu ms, not %d",
          (unsigned long long)ms, BH_TIMEOUT_MS);
    CHECK(s.open_timeouts == 1 && s.open_failures == 1 && s.opened == 0 && s.live == 0 &&
              s.opening == 0, "open_timeouts %llu, live %zu, opening %zu",
          (unsigned long long)s.open_timeouts, s.live, s.opening);
    long aborts = AP_ATOMIC_LOAD(&bh.aborts, memory_order_relaxed);
    CHECK(aborts == 1 && AP_ATOMIC_LOAD(&bh.in_flight, memory_order_relaxed) == 0,
          "the half-open connect was aborted %ld times", aborts);
    if (st == AP_OK)
        CHECK(ap_connpool_return(&bp, c, true, ap_now_ns()) == AP_OK, "return");
    ap_connpool_close(&bp);
    ap_connpool_fini(&bp);
    close(ls);
    unlink(path);
    rmdir(dir);
    printf(CRASH_NAME ": black hole: %s after %llu ms (connect timeout %d ms), open_timeouts %llu, "
           "aborted %ld, opened %llu\n",
           why.open_timeout ? "connect timed out" : ap_status_str(st), (unsigned long long)ms,
           BH_TIMEOUT_MS, (unsigned long long)s.open_timeouts, aborts,
           (unsigned long long)s.opened);
}

int main(int argc, char **argv) /* the whole run; see the top of this header */
{
    if (argc != 4) {
        fprintf(stderr, "usage: " CRASH_NAME " " CRASH_TARGET " <kill-command> <start-command>\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    blackhole_check();
    fac.target = argv[1];
    AP_ATOMIC_INIT(&fac.epoch, 0u);
    AP_ATOMIC_INIT(&t_restarted, (uint64_t)0);
    ap_connpool_desc d = {.max_size = MAX, .conn_size = sizeof(struct conn),
                          .max_lifetime_ns = 400000000u, .lifetime_jitter_pct = 25,
                          .jitter_seed = 20240613u, .idle_timeout_ns = 300000000u,
                          .leak_threshold_ns = 500000000u, .on_leak = on_leak,
                          .connect_timeout_ns = CONNECT_TIMEOUT_NS, .open_async = &r_open_async};
    ap_connpool_ops ops = {NULL, r_close, r_validate, &fac}; /* opens: r_open_async */
    if (ap_connpool_init(&pool, pool_buf, sizeof pool_buf, &d, &ops) != AP_OK)
        return 1;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra); /* a waiting kill goes first */
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&fault, &ra);
    uint64_t t0 = ap_now_ns();
    AP_ATOMIC_INIT(&t_end, t0 + 2400000000u);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    bool killed = false, started = false;
    while (ap_now_ns() < AP_ATOMIC_LOAD(&t_end, memory_order_acquire)) { /* housekeeping: expiry, leaks, the fault */
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        uint64_t now = ap_now_ns();
        (void)ap_connpool_evict(&pool, now);
        (void)ap_connpool_leak_check(&pool, now);
        if (!killed && now - t0 > 600000000u) {
            killed = true;
            pthread_rwlock_wrlock(&fault); /* no checkout in progress */
            CHECK(system(argv[2]) == 0, "kill command failed: %s", argv[2]);
            AP_ATOMIC_FETCH_ADD(&fac.epoch, 1u, memory_order_acq_rel); /* after it is dead */
            pthread_rwlock_unlock(&fault);
        }
        if (!started && now - t0 > 1200000000u) {
            started = true;
            CHECK(system(argv[3]) == 0, "start command failed: %s", argv[3]);
            AP_ATOMIC_STORE(&t_restarted, ap_now_ns(), memory_order_release);
            AP_ATOMIC_STORE(&t_end, ap_now_ns() + 1200000000u, memory_order_release);
        }
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    (void)ap_connpool_leak_check(&pool, ap_now_ns());
    ap_connpool_stats s;
    ap_connpool_stats_get(&pool, &s);
    ap_connpool_close(&pool);
    ap_connpool_fini(&pool);
    long opens = AP_ATOMIC_LOAD(&fac.opens, memory_order_relaxed);
    long closes = AP_ATOMIC_LOAD(&fac.closes, memory_order_relaxed);
    CHECK(opens == closes, "opened %ld, closed %ld", opens, closes);
    CHECK(AP_ATOMIC_LOAD(&fac.in_flight, memory_order_relaxed) == 0, "an open left in flight");
    CHECK(s.open_timeouts <= s.open_failures, "open_timeouts %llu", (unsigned long long)s.open_timeouts);
    CHECK((uint64_t)opens == s.opened, "the pool counted %llu opens, the factory %ld",
          (unsigned long long)s.opened, opens);
    CHECK(AP_ATOMIC_LOAD(&lent_broken, memory_order_relaxed) == 0, "broken connections lent");
    CHECK(s.validate_failures + s.broken >= 1, "the crash was never detected");
    CHECK(AP_ATOMIC_LOAD(&exhausted, memory_order_relaxed) >= 1,
          "no open failed while the server was down");
    CHECK(AP_ATOMIC_LOAD(&query_after_restart, memory_order_relaxed) >= 10,
          "connections were not replaced after the restart");
    CHECK(s.expired >= 1, "no connection reached its (jittered) lifetime");
    CHECK(leak.calls == 1 && leak.line == leak_line && leak.file != NULL &&
              strstr(leak.file, CRASH_NAME ".c") != NULL && leak.held_ns >= 500000000u,
          "leak reports %d (line %d, want 1 at %d)", leak.calls, leak.line, leak_line);
    printf(CRASH_NAME ": " CRASH_QUERIES " ok %ld, failed %ld (server down), after restart %ld; "
           "opens %ld = closes %ld, max live %ld <= %d; validate refused %llu, returned "
           "broken %llu, expired %llu, failed opens %llu; broken lent %ld; leak reported "
           "%d at %s:%d after %llu ms\n"
           CRASH_NAME ": crash run: open timeouts %llu, aborted opens %ld\n",
           AP_ATOMIC_LOAD(&query_ok, memory_order_relaxed),
           AP_ATOMIC_LOAD(&query_failed, memory_order_relaxed),
           AP_ATOMIC_LOAD(&query_after_restart, memory_order_relaxed), opens, closes,
           AP_ATOMIC_LOAD(&fac.max_live, memory_order_relaxed), MAX,
           (unsigned long long)s.validate_failures, (unsigned long long)s.broken,
           (unsigned long long)s.expired, (unsigned long long)s.open_failures,
           AP_ATOMIC_LOAD(&lent_broken, memory_order_relaxed), leak.calls,
           leak.file ? leak.file : "?", leak.line,
           (unsigned long long)(leak.held_ns / 1000000u), (unsigned long long)s.open_timeouts,
           AP_ATOMIC_LOAD(&fac.aborts, memory_order_relaxed));
    return AP_ATOMIC_LOAD(&errors, memory_order_relaxed) ? 1 : 0;
}

#endif /* EXAMPLES_POOL_CRASH_H */
