/*
 * examples/metrics.c -- every pattern reports what it is doing (issue #14):
 * a small job system (an ap_tb rate limit in front of an ap_mpmc job
 * queue; workers that borrow a buffer from an ap_pool and a backend slot
 * from an ap_sem, check a per-client ap_tb_keyed limit, split each job into
 * two parts on their own ap_ws deque (idle workers steal), and route the
 * result through an ap_split to two collectors) whose ap_<p>_stats_get
 * counters one thread serves in the
 * Prometheus text exposition format on a loopback port: GET /metrics.
 *
 *   metrics [port]    (default 0: the kernel picks; the port is printed)
 * Prints "listening 127.0.0.1:<port>", runs the workload, prints "quiescent"
 * once every worker has finished, and serves until GET /quit (or 60 s).
 * Metric names: asyncpat_<pattern>_<counter>{name="<object>"}; counters end
 * in _total, gauges (waiters now, idle, available) do not.
 */
#define _POSIX_C_SOURCE 200809L
#include "asyncpat/mpmc.h"
#include "asyncpat/pool.h"
#include "asyncpat/semaphore.h"
#include "asyncpat/split.h"
#include "asyncpat/token_bucket.h"
#include "asyncpat/work_steal.h"
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { PRODUCERS = 2, WORKERS = 3, JOBS = 500, BUFS = 2, SLOTS = 1, QCAP = 8, BUFSZ = 256,
       CLIENTS = 8, WSCAP = 16, RCAP = 4 };

static ap_mpmc jobs;
static ap_sem backend;
static ap_tb limiter;
static ap_pool bufs;
static _Alignas(8) unsigned char qmem[AP_MPMC_BYTES(QCAP, sizeof(uint64_t))];
static _Alignas(AP_POOL_STATE_ALIGN) unsigned char pstate[AP_POOL_STATE_BYTES(BUFS)];
static unsigned char pobjs[BUFS * BUFSZ];
static ap_tb_keyed clients; /* per-client limit, keyed by job id % CLIENTS */
static _Alignas(AP_TB_KEYED_ALIGN) unsigned char kmem[AP_TB_KEYED_BYTES(4)];
static ap_ws deque[WORKERS]; /* each worker's parts; idle workers steal */
static _Alignas(AP_WS_ALIGN) unsigned char wmem[WORKERS][AP_WS_BYTES(WSCAP)];
static ap_split results; /* results by job id onto two collectors */
static ap_mpmc rq[2];
static ap_mpmc *rqs[2] = {&rq[0], &rq[1]};
static _Alignas(8) unsigned char rmem[2][AP_MPMC_BYTES(RCAP, sizeof(uint64_t))];
static _Alignas(AP_SPLIT_STATS_ALIGN) unsigned char smem[AP_SPLIT_STATS_BYTES(2)];

static void *producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg * JOBS;
    /* producer 0 waits up to 5 ms for a token, producer 1 only 100 us: its
     * jobs are shed (counted as rejected) whenever the bucket runs dry */
    uint64_t patience = arg == NULL ? 5 * AP_NS_PER_MS : 100 * AP_NS_PER_US;
    for (uint64_t i = 0; i < JOBS; i++, id++) {
        if (ap_tb_acquire_wait(&limiter, 1, ap_now_ns() + patience) != AP_OK)
            continue;
        if (ap_mpmc_push_wait(&jobs, &id, AP_DEADLINE_NONE) != AP_OK)
            abort();
    }
    return NULL;
}

/* run a job's parts: the owner pops its own, a peer may steal one */
static void parts(ap_ws *mine, uint64_t id)
{
    void *t;
    if (ap_ws_try_push(mine, (void *)(uintptr_t)(2 * id + 1)) != AP_OK ||
        ap_ws_try_push(mine, (void *)(uintptr_t)(2 * id + 2)) != AP_OK)
        abort(); /* WSCAP leaves room: a deque holds at most two parts */
    while (ap_ws_try_pop(mine, &t) == AP_OK) {
    }
}

static void *worker(void *arg)
{
    uint64_t id;
    void *buf, *t;
    struct timespec work = {0, 500000}; /* 500 us of "backend call" */
    ap_ws *mine = &deque[(uintptr_t)arg];
    while (ap_mpmc_pop_wait(&jobs, &id, AP_DEADLINE_NONE) == AP_OK) {
        /* the client's own limit: 200 per second; over it, served anyway
         * here, but the limiter counts it as rejected */
        ap_status ks = ap_tb_keyed_try_acquire(&clients, id % CLIENTS, 1, ap_now_ns(), NULL);
        (void)ks;
        for (uintptr_t v = 0; v < WORKERS; v++) /* steal a peer's part, if any */
            if (&deque[v] != mine && ap_ws_try_steal(&deque[v], &t) == AP_OK) {
                /* a stolen part runs here (nothing to do in this demo) */
            }
        parts(mine, id);
        if (ap_pool_get_wait(&bufs, &buf, AP_DEADLINE_NONE) != AP_OK)
            abort();
        snprintf((char *)buf, BUFSZ, "job %" PRIu64, id);
        if (ap_sem_acquire_wait(&backend, 1, AP_DEADLINE_NONE) != AP_OK)
            abort();
        nanosleep(&work, NULL);
        if (ap_sem_release(&backend, 1) != AP_OK || ap_pool_put(&bufs, buf) != AP_OK)
            abort();
        if (ap_split_push_wait(&results, id, &id, AP_DEADLINE_NONE) != AP_OK)
            abort();
    }
    return NULL;
}

static void *collector(void *arg)
{
    uint64_t id;
    struct timespec slow = {0, 200000}; /* slower than the workers: they wait */
    while (ap_mpmc_pop_wait(&rq[(uintptr_t)arg], &id, AP_DEADLINE_NONE) == AP_OK)
        nanosleep(&slow, NULL);
    return NULL;
}

/* ---- the exposition: one family header, then its samples ---- */

typedef struct out { char *p; size_t len, cap; } out;

static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len)
        abort(); /* the buffer is sized for every family below */
    o->len += (size_t)n;
}

/* a family with one object's sample: HELP, TYPE, name{name="obj"} value */
static void metric(out *o, const char *pattern, const char *counter, int is_counter,
                   const char *help, const char *obj, uint64_t v)
{
    const char *sfx = is_counter ? "_total" : "";
    put(o, "# HELP asyncpat_%s_%s%s %s\n", pattern, counter, sfx, help);
    put(o, "# TYPE asyncpat_%s_%s%s %s\n", pattern, counter, sfx, is_counter ? "counter" : "gauge");
    put(o, "asyncpat_%s_%s%s{name=\"%s\"} %" PRIu64 "\n", pattern, counter, sfx, obj, v);
}

static void render(out *o)
{
    ap_mpmc_stats q;
    ap_sem_stats s;
    ap_tb_stats t;
    ap_pool_stats p;
    ap_ws_stats w, wi;
    ap_split_stats r;
    ap_tb_keyed_stats k;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < WORKERS; i++) { /* the workers' deques, summed */
        ap_ws_stats_get(&deque[i], &wi);
        w.pushes += wi.pushes, w.pops += wi.pops, w.steals += wi.steals;
        w.full += wi.full, w.steal_aborts += wi.steal_aborts;
    }
    ap_split_stats_get(&results, &r);
    ap_tb_keyed_stats_get(&clients, &k);
    ap_mpmc_stats_get(&jobs, &q);
    ap_sem_stats_get(&backend, &s);
    ap_tb_stats_get(&limiter, &t);
    ap_pool_stats_get(&bufs, &p);
    metric(o, "mpmc", "pushed", 1, "Elements pushed since init.", "jobs", q.pushed);
    metric(o, "mpmc", "popped", 1, "Elements popped since init.", "jobs", q.popped);
    metric(o, "mpmc", "push_waiters", 0, "Push futures queued now.", "jobs", q.push_waiters);
    metric(o, "mpmc", "pop_waiters", 0, "Pop futures queued now.", "jobs", q.pop_waiters);
    metric(o, "mpmc", "push_waits", 1, "Times a pusher queued.", "jobs", q.push_waits);
    metric(o, "mpmc", "pop_waits", 1, "Times a popper queued.", "jobs", q.pop_waits);
    metric(o, "mpmc", "wait_ns", 1, "Nanoseconds parked in push_wait/pop_wait.", "jobs", q.wait_ns);
    metric(o, "sem", "available", 0, "Permits in the count now.", "backend", s.available);
    metric(o, "sem", "max", 0, "The ceiling of the count.", "backend", s.max);
    metric(o, "sem", "waiters", 0, "Acquire futures queued now.", "backend", s.waiters);
    metric(o, "sem", "waits", 1, "Times an acquire queued.", "backend", s.waits);
    metric(o, "sem", "wait_ns", 1, "Nanoseconds parked in acquire_wait.", "backend", s.wait_ns);
    metric(o, "tb", "offered", 1, "Acquire futures polled.", "limiter", t.offered);
    metric(o, "tb", "admitted", 1, "Acquire futures that took their tokens.", "limiter", t.admitted);
    metric(o, "tb", "rejected", 1, "Acquire futures refused (timed out, rejected).", "limiter", t.rejected);
    metric(o, "tb", "canceled", 1, "Acquire futures cancelled.", "limiter", t.canceled);
    metric(o, "tb", "waits", 1, "Reservations that waited for their tokens.", "limiter", t.waits);
    metric(o, "tb", "wait_ns", 1, "Nanoseconds of those waits (bucket clock).", "limiter", t.wait_ns);
    metric(o, "pool", "capacity", 0, "Objects in the pool.", "bufs", p.capacity);
    metric(o, "pool", "idle", 0, "Objects idle now.", "bufs", p.idle);
    metric(o, "pool", "in_use", 0, "Objects lent now.", "bufs", p.in_use);
    metric(o, "pool", "waiters", 0, "Get futures queued now.", "bufs", p.waiters);
    metric(o, "pool", "waits", 1, "Times a get queued.", "bufs", p.waits);
    metric(o, "pool", "wait_ns", 1, "Nanoseconds parked in get_wait.", "bufs", p.wait_ns);
    metric(o, "ws", "pushes", 1, "Tasks pushed by the owners.", "workers", w.pushes);
    metric(o, "ws", "pops", 1, "Tasks popped by the owners.", "workers", w.pops);
    metric(o, "ws", "steals", 1, "Tasks stolen by peers.", "workers", w.steals);
    metric(o, "ws", "full", 1, "Pushes refused (deque full).", "workers", w.full);
    metric(o, "ws", "steal_aborts", 1, "Steals that lost the race.", "workers", w.steal_aborts);
    metric(o, "split", "routed", 1, "Items the outputs accepted.", "results", r.routed);
    metric(o, "split", "refused", 1, "Pushes an output refused (full).", "results", r.refused);
    metric(o, "split", "closed", 1, "Pushes a closed output refused.", "results", r.closed);
    metric(o, "split", "waiters", 0, "Push futures waiting now.", "results", r.waiters);
    metric(o, "split", "waits", 1, "Times a push waited for room.", "results", r.waits);
    metric(o, "split", "wait_ns", 1, "Nanoseconds parked in push_wait.", "results", r.wait_ns);
    metric(o, "tb_keyed", "admitted", 1, "Calls that took their tokens.", "clients", k.admitted);
    metric(o, "tb_keyed", "rejected", 1, "Calls a key's bucket refused.", "clients", k.rejected);
    metric(o, "tb_keyed", "full", 1, "Calls refused for want of a slot.", "clients", k.full);
    metric(o, "tb_keyed", "keys", 0, "Keys tracked now.", "clients", k.keys);
    metric(o, "tb_keyed", "inserted", 1, "Keys added to the table.", "clients", k.inserted);
    metric(o, "tb_keyed", "evicted", 1, "Keys dropped, their bucket full again.", "clients", k.evicted);
    metric(o, "tb_keyed", "probes", 1, "Slots of other keys stepped over.", "clients", k.probes);
}

/* one request per connection: GET /metrics, GET /quit, else 404 */
static int serve_one(int c)
{
    char req[1024], body[32768], head[256];
    size_t got = 0;
    if (c < 0)
        return 0;
    req[0] = 0;
    while (got < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t n = read(c, req + got, sizeof req - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        req[got] = 0;
    }
    req[got] = 0;
    out o = {body, 0, sizeof body};
    int quit = strncmp(req, "GET /quit ", 10) == 0, code = 200;
    if (strncmp(req, "GET /metrics ", 13) == 0)
        render(&o);
    else if (quit)
        put(&o, "bye\n");
    else
        code = 404, put(&o, "not found\n");
    int h = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     code, code == 200 ? "OK" : "Not Found", o.len);
    if (write(c, head, (size_t)h) != h || write(c, body, o.len) != (ssize_t)o.len)
        perror("write");
    close(c);
    return quit;
}

static void *server(void *arg)
{
    int s = *(int *)arg;
    while (!serve_one(accept(s, NULL, NULL))) {
    }
    return NULL;
}

int main(int argc, char **argv)
{
    ap_tb_desc d;
    memset(&d, 0, sizeof d);
    d.n = 800; /* jobs per second, a burst of 10 */
    d.period_ns = AP_NS_PER_SEC;
    d.burst = 10;
    ap_tb_desc kd;
    memset(&kd, 0, sizeof kd);
    kd.n = 200; /* per client: 200 per second, a burst of 2 */
    kd.period_ns = AP_NS_PER_SEC;
    kd.burst = 2;
    for (int i = 0; i < WORKERS; i++)
        if (ap_ws_init(&deque[i], wmem[i], sizeof wmem[i], WSCAP) != AP_OK)
            return 1;
    for (int i = 0; i < 2; i++)
        if (ap_mpmc_init(&rq[i], rmem[i], sizeof rmem[i], RCAP, sizeof(uint64_t)) != AP_OK)
            return 1;
    if (ap_split_init(&results, rqs, sizeof rqs, AP_SPLIT_MODE_HASH) != AP_OK ||
        ap_split_stats_init(&results, smem, sizeof smem) != AP_OK ||
        ap_tb_keyed_init(&clients, kmem, sizeof kmem, 4, &kd) != AP_OK)
        return 1;
    if (ap_mpmc_init(&jobs, qmem, sizeof qmem, QCAP, sizeof(uint64_t)) != AP_OK ||
        ap_sem_init(&backend, SLOTS) != AP_OK || ap_tb_init(&limiter, &d) != AP_OK ||
        ap_pool_init(&bufs, pstate, sizeof pstate, pobjs, sizeof pobjs, BUFS, BUFSZ) != AP_OK)
        return 1;
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)(argc > 1 ? atoi(argv[1]) : 0));
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16) ||
        getsockname(s, (struct sockaddr *)&a, &al)) {
        perror("metrics: socket");
        return 1;
    }
    printf("listening 127.0.0.1:%u\n", (unsigned)ntohs(a.sin_port));
    fflush(stdout);
    pthread_t srv, p[PRODUCERS], w[WORKERS], col[2];
    pthread_create(&srv, NULL, server, &s);
    for (uintptr_t i = 0; i < 2; i++)
        pthread_create(&col[i], NULL, collector, (void *)i);
    for (uintptr_t i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, worker, (void *)i);
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&p[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(p[i], NULL);
    ap_mpmc_close(&jobs); /* workers drain what is queued, then stop */
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < 2; i++) { /* the collectors drain, then stop */
        ap_mpmc_close(&rq[i]);
        pthread_join(col[i], NULL);
    }
    printf("quiescent\n");
    fflush(stdout);
    alarm(60); /* a forgotten server does not outlive its test */
    pthread_join(srv, NULL);
    close(s);
    return 0;
}
