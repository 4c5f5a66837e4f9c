/*
 * examples/epoll_server.c -- a TCP service on one thread: epoll, and asyncpat
 * futures for admission (issue #13). No runtime: the loop below is the
 * README's idiom (ap_cx_reset, poll every live future, epoll_wait until a
 * wake or ap_deadline_to_ms_timeout(cx.deadline, now)).
 *
 * A request is a line "REQ <id> <backend_ms>". In order it passes
 *   - a keyed token bucket per client IPv4 address (RATE/s, BURST): else
 *     "LIMITED <id> <retry_after_us>";
 *   - a semaphore bulkhead of BULKHEAD in-flight backend calls (the request
 *     waits for a permit: an ap_sem acquire future);
 *   - a circuit breaker (3 failures in a row open it for 200 ms): else
 *     "OPEN <id>";
 *   - the backend call, simulated by a timerfd that fires <backend_ms>
 *     later, under an ap_timeout of TIMEOUT_MS: "OK <id>" or "TIMEOUT <id>"
 *     (recorded as the breaker's success or failure).
 * SIGTERM or SIGINT (a signalfd): ap_life_stop, close the listening socket,
 * answer later requests "UNAVAILABLE <id>", drain (an ap_life wait future),
 * flush every reply, close, print the counters and the clock, exit 0.
 * "STATS" answers the counters at once.
 *
 *   epoll_server [port]                         serve on 127.0.0.1 (0: any port)
 *   epoll_server load PORT SRC_IP N WINDOW MS PACE_US
 *                      N requests "REQ i MS", WINDOW outstanding, PACE_US
 *                      between a reply and the next request; prints counts
 *   epoll_server send PORT SRC_IP LINE...  one at a time: send, print the reply
 */
#define _GNU_SOURCE
#include "asyncpat/circuit_breaker.h"
#include "asyncpat/lifecycle.h"
#include "asyncpat/semaphore.h"
#include "asyncpat/timeout.h"
#include "asyncpat/token_bucket.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

enum { RATE = 50, BURST = 5, BULKHEAD = 4, TIMEOUT_MS = 250, KEYS = 64, NEV = 64 };
enum { SRC_LISTEN, SRC_SIGNAL, SRC_WAKE, SRC_CONN, SRC_BACKEND };
enum { RS_OK, RS_LIMITED, RS_OPEN, RS_TIMEOUT, RS_UNAVAILABLE, RS_BAD, RS_STATS, RS_N };
static const char *const rname[RS_N] = {"ok", "limited", "open", "timeout", "unavailable", "bad", "stats"};

struct src { int kind; };
struct conn {
    struct src src;
    int fd, refs; /* refs: its requests not yet answered */
    uint32_t ip;
    bool eof;
    char in[4096];
    size_t inlen, outlen, outcap;
    char *out;
    struct conn *next;
};
/* the backend call: done when its timerfd fires */
struct backend {
    ap_future base;
    struct src src;
    int tfd;
    bool done;
    uint64_t due;
    ap_waker waker;
    int ep;
};
struct keystat { uint32_t ip; uint64_t first, lastref, adm_at_lastref, admitted, limited; };
struct req {
    struct req *next;
    int state; /* 0 admit, 1 bulkhead, 2 backend, 3 drain */
    struct conn *c;
    long id;
    uint64_t ms, started;
    ap_sem_acquire_fut permit;
    ap_breaker_permit bp;
    struct backend be;
    ap_timeout to;
    ap_life_wait_fut drain;
};
struct loop {
    int ep, lfd, sfd, efd;
    bool wake_pending, drained;
    struct req *live;
    struct conn *conns;
    ap_life life;
    ap_tb_keyed limiter;
    ap_sem bulkhead;
    ap_breaker *breaker;
    uint64_t turns, timer_turns; /* loop turns; those that only a timer ended */
    uint64_t waits;              /* requests that waited for a bulkhead permit */
    uint64_t t0, stop_at, accepted, answered, count[RS_N], inflight, max_inflight, at_stop;
    struct keystat keys[KEYS];
    int nkeys;
};
static _Alignas(AP_TB_KEYED_ALIGN) unsigned char table[AP_TB_KEYED_BYTES(KEYS)];

static void die(const char *what) { perror(what); exit(2); }

static void wake_loop(void *ctx)
{
    struct loop *l = ctx;
    uint64_t one = 1;
    if (!l->wake_pending && write(l->efd, &one, sizeof one) == (ssize_t)sizeof one)
        l->wake_pending = true;
}

static ap_poll backend_poll(ap_future *f, ap_cx *cx)
{
    struct backend *b = (struct backend *)(void *)f;
    if (b->done) return AP_READY;
    b->waker = cx->waker;
    if (b->tfd < 0) { /* start the call: a timer on the clock of ap_now_ns, in ns */
        struct itimerspec its = {{0, 0}, {(time_t)(b->due / AP_NS_PER_SEC), (long)(b->due % AP_NS_PER_SEC)}};
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &b->src};
        if ((b->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0 ||
            timerfd_settime(b->tfd, TFD_TIMER_ABSTIME, &its, NULL) || epoll_ctl(b->ep, EPOLL_CTL_ADD, b->tfd, &ev))
            die("backend timerfd");
    }
    return AP_PENDING;
}
static void backend_cancel(ap_future *f)
{
    struct backend *b = (struct backend *)(void *)f;
    if (b->tfd >= 0) close(b->tfd); /* leaves the epoll set with it */
    b->tfd = -1, b->waker = AP_WAKER_NONE;
}

static void conn_flush(struct loop *l, struct conn *c)
{
    size_t off = 0;
    while (off < c->outlen) {
        ssize_t n = write(c->fd, c->out + off, c->outlen - off);
        if (n > 0) { off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN) c->eof = true, off = c->outlen; /* peer gone: drop */
        break;
    }
    memmove(c->out, c->out + off, c->outlen - off);
    c->outlen -= off;
    struct epoll_event ev = {.events = EPOLLIN | (c->outlen ? EPOLLOUT : 0u), .data.ptr = &c->src};
    epoll_ctl(l->ep, EPOLL_CTL_MOD, c->fd, &ev);
}
static void reply(struct loop *l, struct conn *c, int kind, const char *fmt, ...)
{
    char line[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (c->outlen + (size_t)n > c->outcap) {
        c->outcap = 2 * (c->outlen + (size_t)n);
        if (!(c->out = realloc(c->out, c->outcap))) die("realloc");
    }
    memcpy(c->out + c->outlen, line, (size_t)n);
    c->outlen += (size_t)n;
    l->answered++, l->count[kind]++;
    conn_flush(l, c);
}
static void conn_maybe_close(struct loop *l, struct conn *c)
{
    if (!c->eof || c->refs || c->outlen) return;
    struct conn **p = &l->conns;
    while (*p != c) p = &(*p)->next;
    *p = c->next;
    close(c->fd), free(c->out), free(c);
}

static struct keystat *keystat(struct loop *l, uint32_t ip)
{
    for (int i = 0; i < l->nkeys; i++)
        if (l->keys[i].ip == ip) return &l->keys[i];
    if (l->nkeys == KEYS) return NULL;
    l->keys[l->nkeys] = (struct keystat){.ip = ip};
    return &l->keys[l->nkeys++];
}

/* one request's future: admission, bulkhead, breaker, backend under a timeout */
static ap_poll req_poll(struct req *r, ap_cx *cx)
{
    struct loop *l = cx->waker.ctx;
    uint64_t retry_at = 0;
    switch (r->state) {
    case 0: {
        struct keystat *k = keystat(l, r->c->ip);
        ap_status st = ap_tb_keyed_try_acquire(&l->limiter, r->c->ip, 1, cx->now, &retry_at);
        if (k && !k->first) k->first = cx->now;
        if (st != AP_OK) {
            if (k) k->limited++, k->lastref = cx->now, k->adm_at_lastref = k->admitted;
            reply(l, r->c, RS_LIMITED, "LIMITED %ld %llu\n", r->id,
                  (unsigned long long)(ap_time_until(retry_at, cx->now) / AP_NS_PER_US));
            return AP_READY;
        }
        if (k) k->admitted++;
        ap_sem_acquire_fut_init(&r->permit, &l->bulkhead, 1);
        r->state = 1;
        if (ap_sem_acquire_poll(&r->permit, cx) == AP_PENDING) return l->waits++, AP_PENDING;
    } /* fall through */
    case 1:
        if (ap_sem_acquire_poll(&r->permit, cx) == AP_PENDING) return AP_PENDING;
        if (ap_sem_acquire_status(&r->permit) != AP_OK) die("bulkhead");
        if (++l->inflight > l->max_inflight) l->max_inflight = l->inflight;
        if (ap_breaker_allow(l->breaker, cx->now, &r->bp, &retry_at) != AP_OK) {
            reply(l, r->c, RS_OPEN, "OPEN %ld\n", r->id);
            goto release;
        }
        r->be = (struct backend){{backend_poll, backend_cancel}, {SRC_BACKEND}, -1, false,
                                 ap_deadline_after(cx->now, r->ms * AP_NS_PER_MS), AP_WAKER_NONE, l->ep};
        ap_timeout_init_after(&r->to, &r->be.base, cx->now, TIMEOUT_MS * AP_NS_PER_MS);
        r->started = cx->now, r->state = 2;
        /* fall through */
    case 2: {
        if (ap_timeout_poll(&r->to, cx) == AP_PENDING) return AP_PENDING;
        bool ok = ap_timeout_status(&r->to) == AP_OK;
        backend_cancel(&r->be.base); /* closes its timerfd */
        if (ap_breaker_record(l->breaker, &r->bp, ok ? AP_BREAKER_OUTCOME_SUCCESS : AP_BREAKER_OUTCOME_FAILURE,
                              cx->now - r->started, cx->now) != AP_OK) die("breaker record");
        reply(l, r->c, ok ? RS_OK : RS_TIMEOUT, ok ? "OK %ld\n" : "TIMEOUT %ld\n", r->id);
    }
    release:
        l->inflight--;
        if (ap_sem_release(&l->bulkhead, 1) != AP_OK) die("bulkhead release"); /* may wake a waiter */
        return AP_READY;
    default: /* the drain */
        return ap_life_wait_poll(&r->drain, cx);
    }
}
static struct req *req_finish(struct loop *l, struct req *r)
{
    struct req *next = r->next;
    if (r->state == 3) {
        l->drained = true;
    } else {
        r->c->refs--;
        conn_maybe_close(l, r->c);
        ap_life_leave(&l->life);
    }
    free(r);
    return next;
}
static bool loop_done(struct loop *l)
{
    if (!l->drained) return false;
    for (struct conn *c = l->conns; c; c = c->next)
        if (c->outlen) return false; /* replies still going out */
    return true;
}

static void start_req(struct loop *l, struct conn *c, const char *line)
{
    long id;
    unsigned long long ms;
    l->accepted++;
    if (strcmp(line, "STATS") == 0) {
        reply(l, c, RS_STATS, "STATS now=%llu inflight=%llu max_inflight=%llu accepted=%llu answered=%llu\n",
              (unsigned long long)ap_now_ns(), (unsigned long long)l->inflight,
              (unsigned long long)l->max_inflight, (unsigned long long)l->accepted,
              (unsigned long long)l->answered + 1);
        return;
    }
    if (sscanf(line, "REQ %ld %llu", &id, &ms) != 2 || ms > 60000) {
        reply(l, c, RS_BAD, "BAD %s\n", line);
        return;
    }
    if (ap_life_enter(&l->life) != AP_OK) { /* stopping: nothing new starts */
        reply(l, c, RS_UNAVAILABLE, "UNAVAILABLE %ld\n", id);
        return;
    }
    struct req *r = calloc(1, sizeof *r);
    if (!r) die("calloc");
    r->c = c, r->id = id, r->ms = ms, c->refs++;
    r->next = l->live, l->live = r; /* polled in the next turn */
}

static void stop(struct loop *l)
{
    if (ap_life_stop(&l->life) != AP_OK) return; /* a second signal */
    l->stop_at = ap_now_ns(), l->at_stop = ap_life_in_flight(&l->life);
    close(l->lfd); /* stop accepting */
    struct req *d = calloc(1, sizeof *d);
    if (!d) die("calloc");
    d->state = 3;
    ap_life_wait_fut_init(&d->drain, &l->life, AP_LIFE_EVENT_DRAINED);
    d->next = l->live, l->live = d;
    fprintf(stderr, "epoll_server: stopping, %llu in flight\n", (unsigned long long)l->at_stop);
}

static void loop_dispatch(struct loop *l, struct epoll_event *ev, int n)
{
    l->turns++, l->timer_turns += n == 0;
    for (int i = 0; i < n; i++) {
        struct src *s = ev[i].data.ptr;
        if (s->kind == SRC_WAKE) {
            uint64_t v;
            if (read(l->efd, &v, sizeof v) > 0) l->wake_pending = false;
        } else if (s->kind == SRC_SIGNAL) {
            struct signalfd_siginfo si;
            if (read(l->sfd, &si, sizeof si) == (ssize_t)sizeof si) stop(l);
        } else if (s->kind == SRC_BACKEND) {
            struct backend *b = (struct backend *)(void *)((char *)s - offsetof(struct backend, src));
            b->done = true;
            ap_waker_wake(b->waker);
        } else if (s->kind == SRC_LISTEN) {
            struct sockaddr_in a;
            socklen_t al = sizeof a;
            int fd = accept4(l->lfd, (struct sockaddr *)&a, &al, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) continue;
            struct conn *c = calloc(1, sizeof *c);
            if (!c) die("calloc");
            *c = (struct conn){.src = {SRC_CONN}, .fd = fd, .ip = ntohl(a.sin_addr.s_addr), .next = l->conns};
            l->conns = c;
            struct epoll_event e = {.events = EPOLLIN, .data.ptr = &c->src};
            if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &e)) die("epoll_ctl");
        } else {
            struct conn *c = (struct conn *)(void *)s;
            if (ev[i].events & EPOLLOUT) conn_flush(l, c);
            while (!c->eof && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t got = read(c->fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen);
                if (got < 0 && errno == EAGAIN) break;
                if (got <= 0) { c->eof = true; break; }
                c->inlen += (size_t)got;
                char *p = c->in, *nl;
                while ((nl = memchr(p, '\n', c->inlen - (size_t)(p - c->in)))) {
                    *nl = '\0';
                    start_req(l, c, p);
                    p = nl + 1;
                }
                c->inlen -= (size_t)(p - c->in);
                memmove(c->in, p, c->inlen);
                if (c->inlen == sizeof c->in - 1) c->eof = true; /* a line too long: hang up */
            }
            conn_maybe_close(l, c);
        }
    }
}

static int serve(int port)
{
    static struct loop loop;
    struct epoll_event ev[NEV];
    ap_tb_desc per_client = {.n = RATE, .period_ns = AP_NS_PER_SEC, .burst = BURST};
    ap_breaker_desc bd = {.consecutive_failures = 3, .open_ns = 200 * AP_NS_PER_MS, .half_open_probes = 1};
    if (ap_tb_keyed_init(&loop.limiter, table, sizeof table, KEYS, &per_client) != AP_OK ||
        ap_sem_init(&loop.bulkhead, BULKHEAD) != AP_OK || ap_breaker_create(&loop.breaker, &bd, NULL) != AP_OK)
        return 2;
    ap_life_init(&loop.life);
    if (ap_life_start(&loop.life) != AP_OK) return 2;
    sigset_t sigs;
    sigemptyset(&sigs), sigaddset(&sigs, SIGTERM), sigaddset(&sigs, SIGINT);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int one = 1;
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) || (loop.sfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0 ||
        (loop.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 || (loop.ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (loop.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
        setsockopt(loop.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(loop.lfd, (struct sockaddr *)&a, sizeof a) || listen(loop.lfd, 128) ||
        getsockname(loop.lfd, (struct sockaddr *)&a, &al))
        die("setup");
    static struct src s_listen = {SRC_LISTEN}, s_signal = {SRC_SIGNAL}, s_wake = {SRC_WAKE};
    struct epoll_event e1 = {.events = EPOLLIN, .data.ptr = &s_listen}, e2 = {.events = EPOLLIN, .data.ptr = &s_signal},
                       e3 = {.events = EPOLLIN, .data.ptr = &s_wake};
    if (epoll_ctl(loop.ep, EPOLL_CTL_ADD, loop.lfd, &e1) || epoll_ctl(loop.ep, EPOLL_CTL_ADD, loop.sfd, &e2) ||
        epoll_ctl(loop.ep, EPOLL_CTL_ADD, loop.efd, &e3) || ap_life_started(&loop.life, true) != AP_OK)
        die("setup");
    loop.t0 = ap_now_ns();
    printf("listening on 127.0.0.1:%d\n", ntohs(a.sin_port));
    fflush(stdout);

    ap_cx cx = {{wake_loop, &loop}, 0, AP_DEADLINE_NONE}; /* the waker writes the loop's eventfd */
    for (;;) {
        ap_cx_reset(&cx, ap_now_ns()); /* this turn's time, no deadline yet */
        for (struct req **p = &loop.live; *p;) /* poll every live future: each may lower cx.deadline */
            if (req_poll(*p, &cx) == AP_READY) *p = req_finish(&loop, *p); else p = &(*p)->next;
        if (loop_done(&loop)) break;
        int n = epoll_wait(loop.ep, ev, NEV, ap_deadline_to_ms_timeout(cx.deadline, ap_now_ns()));
        loop_dispatch(&loop, ev, n); /* accept, read requests, SIGTERM; reading the eventfd clears wakes */
    }

    if (ap_life_terminated(&loop.life) != AP_OK) return 2;
    while (loop.conns) { /* every reply is out: close */
        struct conn *c = loop.conns;
        loop.conns = c->next;
        close(c->fd), free(c->out), free(c);
    }
    uint64_t now = ap_now_ns();
    printf("stats: clock_ns=%llu uptime_ms=%llu accepted=%llu answered=%llu max_inflight=%llu bulkhead=%d "
           "in_flight_at_stop=%llu drain_ms=%llu turns=%llu timer_turns=%llu bulkhead_waits=%llu", (unsigned long long)now,
           (unsigned long long)((now - loop.t0) / AP_NS_PER_MS), (unsigned long long)loop.accepted,
           (unsigned long long)loop.answered, (unsigned long long)loop.max_inflight, BULKHEAD,
           (unsigned long long)loop.at_stop, (unsigned long long)((now - loop.stop_at) / AP_NS_PER_MS),
           (unsigned long long)loop.turns, (unsigned long long)loop.timer_turns,
           (unsigned long long)loop.waits);
    for (int i = 0; i < RS_N; i++) printf(" %s=%llu", rname[i], (unsigned long long)loop.count[i]);
    printf("\nconfig: rate=%d period_ns=%llu burst=%d\n", RATE, (unsigned long long)AP_NS_PER_SEC, BURST);
    for (int i = 0; i < loop.nkeys; i++) {
        struct keystat *k = &loop.keys[i];
        struct in_addr ia = {htonl(k->ip)};
        printf("key %s first_ns=%llu lastref_ns=%llu admitted_at_lastref=%llu admitted=%llu limited=%llu\n",
               inet_ntoa(ia), (unsigned long long)k->first, (unsigned long long)k->lastref,
               (unsigned long long)k->adm_at_lastref, (unsigned long long)k->admitted,
               (unsigned long long)k->limited);
    }
    ap_breaker_destroy(loop.breaker);
    ap_sem_fini(&loop.bulkhead);
    ap_tb_keyed_fini(&loop.limiter);
    return loop.accepted == loop.answered ? 0 : 1;
}

/* ---- the clients (blocking sockets) ---- */

static int dial(int port, const char *src_ip)
{
    struct sockaddr_in s = {.sin_family = AF_INET}, d = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || inet_pton(AF_INET, src_ip, &s.sin_addr) != 1 || bind(fd, (struct sockaddr *)&s, sizeof s) ||
        connect(fd, (struct sockaddr *)&d, sizeof d)) {
        fprintf(stderr, "connect from %s: %s\n", src_ip, strerror(errno));
        exit(3);
    }
    return fd;
}
/* read one line (up to '\n') from fd; false at EOF */
static bool read_line(int fd, char *buf, size_t cap)
{
    static char in[8192];
    static size_t len;
    for (;;) {
        char *nl = memchr(in, '\n', len);
        if (nl) {
            size_t n = (size_t)(nl - in) + 1 < cap ? (size_t)(nl - in) : cap - 1;
            memcpy(buf, in, n), buf[n] = '\0';
            len -= (size_t)(nl - in) + 1;
            memmove(in, nl + 1, len);
            return true;
        }
        ssize_t got = read(fd, in + len, sizeof in - len);
        if (got <= 0) return false;
        len += (size_t)got;
    }
}
static void send_line(int fd, const char *line)
{
    size_t n = strlen(line), off = 0;
    while (off < n) {
        ssize_t w = write(fd, line + off, n - off);
        if (w <= 0) { perror("write"); exit(3); }
        off += (size_t)w;
    }
}

static int load(int port, const char *ip, long n, long window, long ms, long pace_us)
{
    int fd = dial(port, ip);
    char line[256];
    unsigned long count[RS_N] = {0};
    long sent = 0, got = 0;
    uint64_t t0 = ap_now_ns();
    while (got < n) {
        while (sent < n && sent - got < window) {
            snprintf(line, sizeof line, "REQ %ld %ld\n", sent++, ms);
            send_line(fd, line);
        }
        if (!read_line(fd, line, sizeof line)) { fprintf(stderr, "%s: EOF after %ld replies\n", ip, got); return 1; }
        got++;
        if (pace_us > 0) nanosleep(&(struct timespec){0, pace_us * 1000}, NULL);
        int k = strncmp(line, "OK ", 3) == 0 ? RS_OK : strncmp(line, "LIMITED ", 8) == 0 ? RS_LIMITED
              : strncmp(line, "OPEN ", 5) == 0 ? RS_OPEN : strncmp(line, "TIMEOUT ", 8) == 0 ? RS_TIMEOUT
              : strncmp(line, "UNAVAILABLE ", 12) == 0 ? RS_UNAVAILABLE : RS_BAD;
        count[k]++;
    }
    double s = (double)(ap_now_ns() - t0) / 1e9;
    printf("client %s: sent=%ld replies=%ld", ip, sent, got);
    for (int i = 0; i < RS_N; i++) printf(" %s=%lu", rname[i], count[i]);
    printf(" seconds=%.3f req_per_s=%.0f\n", s, (double)got / s);
    close(fd);
    return count[RS_BAD] ? 1 : 0;
}

static int send_lines(int port, const char *ip, int n, char **lines)
{
    int fd = dial(port, ip);
    char line[256];
    for (int i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%s\n", lines[i]);
        send_line(fd, line);
        if (!read_line(fd, line, sizeof line)) { printf("EOF\n"); return 1; }
        printf("%s\n", line);
        fflush(stdout);
    }
    fflush(stdout);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 8 && strcmp(argv[1], "load") == 0)
        return load(atoi(argv[2]), argv[3], atol(argv[4]), atol(argv[5]), atol(argv[6]), atol(argv[7]) % 1000000);
    if (argc >= 5 && strcmp(argv[1], "send") == 0)
        return send_lines(atoi(argv[2]), argv[3], argc - 4, argv + 4);
    if (argc <= 2 && (argc == 1 || argv[1][0] != '-'))
        return serve(argc == 2 ? atoi(argv[1]) : 0);
    fprintf(stderr, "usage: %s [port] | load PORT SRC_IP N WINDOW MS PACE_US | send PORT SRC_IP LINE...\n", argv[0]);
    return 2;
}
