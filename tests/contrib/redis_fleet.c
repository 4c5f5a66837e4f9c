/*
 * tests/contrib/redis_fleet.c -- contrib/redis_rate_limit.h against a real
 * redis-server that this program starts (and kills, and restarts) itself
 * on a temporary directory's Unix socket.
 *
 *   1. exactness: the Lua script and ap_tb_try_acquire (token_bucket.h)
 *      take the same decisions, with the same retry instants, on the same
 *      times (a test-only time argument replaces TIME), over random rates
 *      (integer and non-integer emission intervals), bursts, requests and
 *      times up to 2^64 - 1 ns;
 *   2. fleet: 4 processes x 2 threads take tokens greedily from one key for
 *      3.5 s while the server is frozen (SIGSTOP: clients time out) and
 *      killed and restarted (AOF, appendfsync always); every admission is
 *      stamped with the server's TIME, and in every window (s, t] of the
 *      union, admissions <= burst + V(t) - V(s); the failures are counted
 *      and failed closed (AP_REJECTED, never admitted);
 *   3. fail open: the same freeze with desc.fail_open admits, counted.
 * A server that cannot start is a FAILURE with the reason printed.
 * Last line: "redis_fleet: ok ..." and exit 0, else exit 1.
 */
#define _GNU_SOURCE
#include "../../contrib/redis_rate_limit.h"
#include "../../asyncpat/token_bucket.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                                           \
    do {                                                                                    \
        fprintf(stderr, "redis_fleet: FAIL: " __VA_ARGS__);                                 \
        fputc('\n', stderr);                                                                \
        cleanup();                                                                          \
        exit(1);                                                                            \
    } while (0)

static char dir[64], sock[128];
static pid_t server = -1;

static void cleanup(void)
{
    if (server > 0) {
        kill(server, SIGCONT);
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        server = -1;
    }
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "redis_fleet: could not remove %s\n", dir);
    }
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static redisContext *connect_sock(unsigned timeout_ms)
{
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);
    if (c != NULL && c->err == 0)
        redisSetTimeout(c, tv);
    return c;
}

static void start_server(void)
{
    const char *bin = getenv("REDIS_SERVER");
    if (bin == NULL)
        bin = "redis-server";
    server = fork();
    if (server < 0)
        FAIL("fork: %s", strerror(errno));
    if (server == 0) {
        char log[160];
        snprintf(log, sizeof log, "%s/redis.log", dir);
        execlp(bin, bin, "--port", "0", "--unixsocket", sock, "--dir", dir, "--appendonly", "yes",
               "--appendfsync", "always", "--save", "", "--logfile", log, (char *)NULL);
        fprintf(stderr, "redis_fleet: cannot run %s: %s (install redis-server: "
                        "scripts/deps.sh servers)\n", bin, strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < 250; i++) { /* up to 5 s */
        int st;
        if (waitpid(server, &st, WNOHANG) == server) {
            server = -1;
            FAIL("redis-server exited at start (status %d); see %s/redis.log", st, dir);
        }
        redisContext *c = connect_sock(200);
        if (c != NULL && c->err == 0) {
            redisReply *r = (redisReply *)redisCommand(c, "PING");
            bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(c);
            if (ok)
                return;
        } else if (c) {
            redisFree(c);
        }
        sleep_ms(20);
    }
    FAIL("redis-server did not answer PING on %s within 5 s", sock);
}

/* ---- 1. exactness against ap_tb ---- */

static uint64_t rng_s = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void)
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static unsigned long exact_cases, exact_by[3]; /* admitted, not yet, never */

static void exactness(void)
{
    redisContext *c = connect_sock(2000);
    if (c == NULL || c->err)
        FAIL("connect for exactness: %s", c ? c->errstr : "no memory");
    /* the script id computed by init is the server's */
    ap_redis_rl rl;
    if (ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "x", .n = 1, .burst = 1}) != AP_OK)
        FAIL("init");
    redisReply *r = (redisReply *)redisCommand(c, "SCRIPT LOAD %s", AP__REDIS_RL_SCRIPT);
    if (r == NULL || r->type != REDIS_REPLY_STRING || strcmp(r->str, rl.sha) != 0)
        FAIL("SCRIPT LOAD gave %s, init computed %s", r && r->str ? r->str : "?", rl.sha);
    freeReplyObject(r);
    static const uint64_t periods[] = {1000000000u, 1000000u, 7u, 86400000000000u};
    for (int cfg = 0; cfg < 40; cfg++) {
        uint64_t period = periods[cfg % 4], n, burst;
        switch (cfg % 5) {
        case 0: n = 3; break;                                  /* T non-integer */
        case 1: n = 1; break;                                  /* n' = 1 */
        case 2: n = 1 + rnd() % period; break;                 /* any */
        case 3: n = period; break;                             /* 1 per ns */
        default: n = 1 + rnd() % (period < 1000 ? period : 1000); break;
        }
        burst = 1 + rnd() % (cfg % 3 == 0 ? 5 : 1000);
        char key[32];
        snprintf(key, sizeof key, "exact:%d", cfg);
        ap_redis_rl_desc d = {.key = key, .n = n, .period_ns = period, .burst = burst};
        ap_tb tb;
        if (ap_redis_rl_init(&rl, &d) != AP_OK) {
            /* only a reduced period above 2^44 may be refused */
            uint64_t g = ap__tb_gcd(n, period);
            if (period / g <= ((uint64_t)1 << 44))
                FAIL("init refused n=%llu p=%llu", (unsigned long long)n,
                     (unsigned long long)period);
            continue;
        }
        if (ap_tb_init(&tb, &(ap_tb_desc){.n = n, .period_ns = period, .burst = burst}) != AP_OK)
            FAIL("ap_tb_init");
        uint64_t t = cfg % 7 == 6 ? UINT64_MAX - rnd() % 100000000000u : rnd() % 1000000000000u;
        for (int i = 0; i < 120; i++) {
            uint64_t m = 1 + rnd() % burst;
            if (i % 17 == 16 && t > 1000)
                t -= rnd() % 1000; /* time going backwards */
            else {
                uint64_t dt = rnd() % (period / (n < 50 ? n : 50) + 2);
                t = t > UINT64_MAX - dt ? UINT64_MAX : t + dt;
            }
            uint64_t want_retry = 0;
            ap_status want = ap_tb_try_acquire(&tb, m, t, &want_retry);
            char now[24];
            snprintf(now, sizeof now, "%llu", (unsigned long long)t);
            ap_redis_rl_reply rep;
            ap_status got = ap__redis_rl_call(&rl, c, m, now, &rep);
            if (rep.failed)
                FAIL("script failed: %s", c->errstr);
            if (got != want || rep.now_ns != t || (want == AP_EMPTY && rep.retry_at_ns != want_retry))
                FAIL("cfg %d op %d n=%llu p=%llu burst=%llu m=%llu t=%llu: redis %d retry %llu, "
                     "ap_tb %d retry %llu",
                     cfg, i, (unsigned long long)n, (unsigned long long)period,
                     (unsigned long long)burst, (unsigned long long)m, (unsigned long long)t,
                     (int)got, (unsigned long long)rep.retry_at_ns, (int)want,
                     (unsigned long long)want_retry);
            exact_cases++;
            exact_by[want == AP_OK ? 0 : want == AP_EMPTY ? 1 : 2]++;
        }
    }
    /* bad input changes nothing and sends nothing */
    if (ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "bad", .n = 2, .period_ns = 1,
                                                  .burst = 1}) != AP_INVAL ||
        ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "", .n = 1, .burst = 1}) != AP_INVAL ||
        ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "b", .n = 1, .burst = 0}) != AP_INVAL ||
        ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "b", .n = 1,
                                                  .period_ns = ((uint64_t)1 << 44) + 1,
                                                  .burst = 1}) != AP_INVAL)
        FAIL("bad desc accepted");
    if (ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "b", .n = 1, .burst = 2}) != AP_OK ||
        ap_redis_rl_try_acquire(&rl, c, 3, NULL) != AP_INVAL ||
        ap_redis_rl_try_acquire(&rl, NULL, 1, NULL) != AP_INVAL)
        FAIL("m > burst or a NULL context not AP_INVAL");
    r = (redisReply *)redisCommand(c, "EXISTS b");
    if (r == NULL || r->integer != 0)
        FAIL("AP_INVAL wrote the key");
    freeReplyObject(r);
    redisFree(c);
}

/* ---- 2. and 3. the fleet ---- */

enum { PROCS = 4, THREADS = 2, CAP = 1 << 16 };
#define RATE 200u
#define BURST 20u

struct worker {
    ap_redis_rl *rl;
    uint64_t until;
    uint64_t *stamps; /* admitted, server ns */
    size_t n_stamps;
    uint64_t failures, timeouts, reconnects, fail_admits, refused;
};

static void *worker_thread(void *arg)
{
    struct worker *w = arg;
    redisContext *c = connect_sock(100);
    while (mono_ns() < w->until) {
        if (c == NULL || c->err) {
            if (c)
                redisFree(c);
            sleep_ms(10);
            c = connect_sock(100);
            w->reconnects++;
        }
        ap_redis_rl_reply rep;
        ap_status st = ap_redis_rl_try_acquire(w->rl, c, 1, &rep);
        if (rep.failed) {
            w->failures++;
            if (c && c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily") != NULL)
                w->timeouts++;
            if (st == AP_OK)
                w->fail_admits++;
            else if (st != AP_REJECTED)
                FAIL("a failure returned %d", (int)st);
            continue;
        }
        if (st == AP_OK) {
            if (w->n_stamps == CAP)
                FAIL("stamp buffer full");
            w->stamps[w->n_stamps++] = rep.now_ns;
        } else if (st == AP_EMPTY) {
            w->refused++;
            if (rep.retry_at_ns <= rep.now_ns)
                FAIL("refused with retry_at %llu <= now %llu",
                     (unsigned long long)rep.retry_at_ns, (unsigned long long)rep.now_ns);
            uint64_t wait = rep.retry_at_ns - rep.now_ns;
            if (wait > 2000000)
                wait = 2000000;
            struct timespec ts = {0, (long)wait};
            nanosleep(&ts, NULL);
        } else {
            FAIL("unexpected status %d", (int)st);
        }
    }
    if (c)
        redisFree(c);
    return NULL;
}

/* One process: THREADS threads on one ap_redis_rl; writes its stamps and
 * counters to @out. */
static int worker_process(const char *key, bool fail_open, uint64_t until, const char *out)
{
    ap_redis_rl rl;
    if (ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = key, .n = RATE, .burst = BURST,
                                                  .fail_open = fail_open}) != AP_OK)
        return 2;
    struct worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].rl = &rl;
        w[i].until = until;
        w[i].stamps = malloc(CAP * sizeof(uint64_t));
        if (w[i].stamps == NULL || pthread_create(&th[i], NULL, worker_thread, &w[i]) != 0)
            return 3;
    }
    FILE *f = fopen(out, "wb");
    if (f == NULL)
        return 4;
    ap_redis_rl_stats s;
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ap_redis_rl_stats_get(&rl, &s);
    uint64_t hdr[8] = {0};
    for (int i = 0; i < THREADS; i++) {
        hdr[0] += w[i].n_stamps;
        hdr[1] += w[i].failures;
        hdr[2] += w[i].timeouts;
        hdr[3] += w[i].fail_admits;
        hdr[4] += w[i].refused;
    }
    hdr[5] = s.failed_open + s.failed_closed;
    hdr[6] = s.script_loads;
    hdr[7] = s.admitted;
    fwrite(hdr, sizeof hdr, 1, f);
    for (int i = 0; i < THREADS; i++)
        fwrite(w[i].stamps, sizeof(uint64_t), w[i].n_stamps, f);
    fclose(f);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* V(t) = floor(t * RATE / 1e9), exactly: RATE divides 1e9 */
static uint64_t V(uint64_t t)
{
    return t / (1000000000u / RATE);
}

struct fleet_result {
    uint64_t admitted, failures, timeouts, fail_admits, refused, script_loads;
    uint64_t first, last, worst_slack_lo; /* ... */
    double span_s;
    uint64_t bound_total;
};

/* Run @procs processes for @ms; at the listed offsets freeze / restart the
 * server. Checks the window bound on the union of the stamps. */
static struct fleet_result fleet(const char *key, bool fail_open, int procs, unsigned ms,
                                 unsigned freeze_at, unsigned freeze_ms, unsigned restart_at)
{
    uint64_t until = mono_ns() + (uint64_t)ms * 1000000u;
    pid_t pids[PROCS];
    char out[PROCS][160];
    for (int i = 0; i < procs; i++) {
        snprintf(out[i], sizeof out[i], "%s/%s.%d", dir, key, i);
        pids[i] = fork();
        if (pids[i] < 0)
            FAIL("fork: %s", strerror(errno));
        if (pids[i] == 0) {
            server = -1; /* the parent owns it */
            dir[0] = 0;
            _exit(worker_process(key, fail_open, until, out[i]));
        }
    }
    uint64_t t0 = mono_ns();
    if (freeze_at) {
        sleep_ms(freeze_at);
        kill(server, SIGSTOP); /* clients time out (100 ms) */
        sleep_ms(freeze_ms);
        kill(server, SIGCONT);
    }
    if (restart_at) {
        uint64_t el = (mono_ns() - t0) / 1000000u;
        if (el < restart_at)
            sleep_ms((unsigned)(restart_at - el));
        kill(server, SIGKILL); /* state survives in the AOF */
        waitpid(server, NULL, 0);
        server = -1;
        sleep_ms(200);         /* clients fail to connect meanwhile */
        start_server();
    }
    struct fleet_result res = {0};
    size_t total = 0;
    uint64_t *all = NULL;
    for (int i = 0; i < procs; i++) {
        int st;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            FAIL("worker process %d failed (status %d)", i, st);
        FILE *f = fopen(out[i], "rb");
        uint64_t hdr[8];
        if (f == NULL || fread(hdr, sizeof hdr, 1, f) != 1)
            FAIL("worker %d wrote no result", i);
        all = realloc(all, (total + hdr[0] + 1) * sizeof *all);
        if (all == NULL || fread(all + total, sizeof *all, hdr[0], f) != hdr[0])
            FAIL("worker %d: short result", i);
        fclose(f);
        total += hdr[0];
        res.failures += hdr[1];
        res.timeouts += hdr[2];
        res.fail_admits += hdr[3];
        res.refused += hdr[4];
        res.script_loads += hdr[6];
        if (hdr[5] != hdr[1])
            FAIL("worker %d: the limiter counted %llu failures, its threads saw %llu", i,
                 (unsigned long long)hdr[5], (unsigned long long)hdr[1]);
        if (hdr[7] != hdr[0])
            FAIL("worker %d: the limiter counted %llu admissions, its threads kept %llu", i,
                 (unsigned long long)hdr[7], (unsigned long long)hdr[0]);
    }
    if (total == 0)
        FAIL("%s: nothing admitted", key);
    qsort(all, total, sizeof *all, cmp_u64);
    /* every window [all[i], all[j]] = (all[i] - 1, all[j]], over whole tie
     * groups: count <= burst + V(all[j]) - V(all[i] - 1) */
    for (size_t i = 0; i < total; i++) {
        if (i > 0 && all[i] == all[i - 1])
            continue;
        uint64_t vs = V(all[i] - 1);
        for (size_t j = i; j < total; j++) {
            if (j + 1 < total && all[j + 1] == all[j])
                continue;
            uint64_t count = j - i + 1, bound = BURST + V(all[j]) - vs;
            if (count > bound)
                FAIL("%s: %llu admissions in (%llu, %llu] ns, bound %llu", key,
                     (unsigned long long)count, (unsigned long long)(all[i] - 1),
                     (unsigned long long)all[j], (unsigned long long)bound);
        }
    }
    res.admitted = total;
    res.first = all[0];
    res.last = all[total - 1];
    res.span_s = (double)(res.last - res.first) / 1e9;
    res.bound_total = BURST + V(res.last) - V(res.first - 1);
    free(all);
    return res;
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/ap_redis_fleet.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        dir[0] = 0;
        FAIL("mkdtemp: %s", strerror(errno));
    }
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    signal(SIGPIPE, SIG_IGN);
    start_server();
    if (getenv("AP_FLEET_SKIP_EXACT") == NULL) /* set only to try a mutant on the fleet check */
        exactness();
    if (exact_by[0] == 0 || exact_by[1] == 0 || exact_by[2] == 0)
        fprintf(stderr, "redis_fleet: exactness did not reach every outcome (%lu/%lu/%lu)\n",
                exact_by[0], exact_by[1], exact_by[2]);

    struct fleet_result a = fleet("fleet:closed", false, PROCS, 3500, 1000, 400, 2200);
    if (a.failures == 0 || a.timeouts == 0)
        FAIL("fail-closed run saw %llu failures, %llu timeouts: the faults were not seen",
             (unsigned long long)a.failures, (unsigned long long)a.timeouts);
    if (a.fail_admits != 0)
        FAIL("fail-closed admitted %llu on failure", (unsigned long long)a.fail_admits);
    if (a.script_loads == 0)
        FAIL("the restarted server never asked for the script (NOSCRIPT)");
    /* liveness: greedy callers get most of what the law allows (the
     * outages cost at most their length minus one burst) */
    if (a.admitted * 10 < a.bound_total * 6)
        FAIL("fail-closed admitted %llu of a bound of %llu", (unsigned long long)a.admitted,
             (unsigned long long)a.bound_total);
    printf("fleet fail-closed: %d procs x %d threads, %.2f s: admitted %llu <= bound %llu "
           "(burst %u + %u/s), every window checked; refused %llu; failures %llu "
           "(timeouts %llu) all refused; script reloads %llu\n",
           PROCS, THREADS, a.span_s, (unsigned long long)a.admitted,
           (unsigned long long)a.bound_total, BURST, RATE, (unsigned long long)a.refused,
           (unsigned long long)a.failures, (unsigned long long)a.timeouts,
           (unsigned long long)a.script_loads);

    struct fleet_result b = fleet("fleet:open", true, 1, 1200, 400, 300, 0);
    if (b.failures == 0 || b.fail_admits != b.failures)
        FAIL("fail-open: %llu failures, %llu admitted by policy",
             (unsigned long long)b.failures, (unsigned long long)b.fail_admits);
    printf("fleet fail-open: 1 proc x %d threads, %.2f s: admitted by the server %llu <= "
           "bound %llu; failures %llu (timeouts %llu) all admitted by policy, counted\n",
           THREADS, b.span_s, (unsigned long long)b.admitted, (unsigned long long)b.bound_total,
           (unsigned long long)b.failures, (unsigned long long)b.timeouts);
    cleanup();
    if (exact_by[0] == 0 || exact_by[1] == 0 || exact_by[2] == 0)
        FAIL("exactness: admitted %lu, not yet %lu, never %lu: an outcome was not compared",
             exact_by[0], exact_by[1], exact_by[2]);
    printf("redis_fleet: ok (%lu decisions equal to ap_tb_try_acquire: %lu admitted, %lu not "
           "yet with the same retry_at, %lu never)\n",
           exact_cases, exact_by[0], exact_by[1], exact_by[2]);
    return 0;
}
