/*
 * tests/test_loop.c -- driving futures from an event loop (future.h, EVENT
 * LOOPS): ap_cx_reset, ap_deadline_to_ms_timeout, and the README's loop
 * idiom (section "Event loops and servers", the loop of
 * examples/epoll_server.c) copied literally and run on a fake clock, to show
 * that it never wakes before the earliest deadline and so never busy-polls.
 */
#include "asyncpat.h"
#include "test_util.h"
#include <limits.h>

/* ---- ap_deadline_to_ms_timeout: exact values ---- */

Test(loop, ms_timeout_exact)
{
    const uint64_t now = 5 * AP_NS_PER_SEC + 123;
    EXPECT_EQ(ap_deadline_to_ms_timeout(AP_DEADLINE_NONE, now), -1, "no deadline: no timer");
    EXPECT_EQ(ap_deadline_to_ms_timeout(AP_DEADLINE_NONE, 0), -1);
    EXPECT_EQ(ap_deadline_to_ms_timeout(AP_DEADLINE_NONE, UINT64_MAX), -1);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now, now), 0, "reached: do not wait");
    EXPECT_EQ(ap_deadline_to_ms_timeout(now - 1, now), 0, "passed: do not wait");
    EXPECT_EQ(ap_deadline_to_ms_timeout(0, now), 0);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + 1, now), 1, "1 ns left is 1 ms, never 0");
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + AP_WAIT_CONFIRM_NS, now), 1, "the confirm re-poll");
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + AP_NS_PER_MS - 1, now), 1);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + AP_NS_PER_MS, now), 1, "whole ms stay as they are");
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + AP_NS_PER_MS + 1, now), 2);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + 1500 * AP_NS_PER_MS, now), 1500);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + (uint64_t)INT_MAX * AP_NS_PER_MS, now), INT_MAX);
    EXPECT_EQ(ap_deadline_to_ms_timeout(now + (uint64_t)INT_MAX * AP_NS_PER_MS + 1, now), INT_MAX,
              "clamped: a longer wait takes several turns");
    EXPECT_EQ(ap_deadline_to_ms_timeout(UINT64_MAX - 1, 0), INT_MAX, "no overflow");
    EXPECT_EQ(ap_deadline_to_ms_timeout(UINT64_MAX - 1, UINT64_MAX - 2), 1);
}

/* the smallest whole number of ms that covers what is left, for any left */
Test(loop, ms_timeout_rounds_up_exactly)
{
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 100000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        uint64_t now = s >> (s & 31);
        uint64_t left = 1 + (s % (i % 2 ? 10 * AP_NS_PER_MS : 1000 * AP_NS_PER_SEC));
        if (left > UINT64_MAX - 1 - now)
            continue;
        int ms = ap_deadline_to_ms_timeout(now + left, now);
        EXPECT_GE(ms, 1);
        EXPECT_GE((uint64_t)ms * AP_NS_PER_MS, left, "never early");
        EXPECT_LT((uint64_t)(ms - 1) * AP_NS_PER_MS, left, "and not a ms later than needed");
    }
}

Test(loop, cx_reset)
{
    int ctx = 0;
    ap_cx cx = {{(void (*)(void *))NULL, &ctx}, 7, 9};
    ap_cx_reset(&cx, 1234);
    EXPECT_EQ(cx.now, 1234);
    EXPECT_EQ(cx.deadline, AP_DEADLINE_NONE);
    EXPECT(cx.waker.ctx == &ctx, "the waker is kept");
    /* one cx over several futures: after the turn it holds their earliest */
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK); /* none left: every acquire waits */
    ap_sem_acquire_fut a[3];
    ap_timeout t[3];
    const uint64_t after[3] = {7 * AP_NS_PER_MS, 3 * AP_NS_PER_MS, 5 * AP_NS_PER_MS};
    ap_cx_reset(&cx, 1000);
    (void)cx; /* a waker that does nothing: nobody releases */
    cx.waker = AP_WAKER_NONE;
    for (int i = 0; i < 3; i++) {
        ap_sem_acquire_fut_init(&a[i], &s, 1);
        ap_timeout_init_after(&t[i], &a[i].base, cx.now, after[i]);
    }
    /* the confirm re-poll (50 us) is earliest on the first turn ... */
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_timeout_poll(&t[i], &cx), AP_PENDING);
    EXPECT_LE(cx.deadline, 1000 + 3 * AP_NS_PER_MS);
    /* ... and once confirmed, the earliest timeout */
    ap_cx_reset(&cx, 2000);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(ap_timeout_poll(&t[i], &cx), AP_PENDING);
    EXPECT_EQ(cx.deadline, 1000 + 3 * AP_NS_PER_MS, "the earliest of the three");
    for (int i = 0; i < 3; i++)
        ap_timeout_cancel(&t[i]);
    ap_sem_fini(&s);
}

/* ---- the README loop, copied literally, on a fake clock ----
 *
 * Three chains of futures run in it for SPAN of fake time: token-bucket
 * acquires at 7000/s (each waits about 143 us for its token), sem acquires
 * under a 350 us timeout (each times out), and pops of an ap_mpmc into
 * which a scheduled "peer" pushes every 3.25 ms (each wakes the loop
 * through its waker). All three wait for less than a millisecond, the
 * resolution of epoll_wait: a timeout rounded down (0 ms) wakes the loop
 * before the deadline, and the loop re-polls and sleeps 0 ms again until
 * the deadline passes (the busy poll of issue #13). The fake epoll_wait
 * below charges LOOP_COST of fake time per call. */

#define SPAN (200 * AP_NS_PER_MS)
#define LOOP_COST AP_NS_PER_US
#define PUSH_EVERY (3250 * AP_NS_PER_US)
enum { NEV = 8 };

static uint64_t fake_t;
static uint64_t fake_now(void) { return fake_t; }

struct req {
    struct req *next;
    int kind; /* 0 token, 1 timeout, 2 pop */
    ap_tb_acquire_fut tb;
    ap_sem_acquire_fut acq;
    ap_timeout to;
    ap_mpmc_pop_fut pop;
    int v;
};

struct loop {
    struct req *live, *incoming;
    bool woken; /* the eventfd */
    int ep;
    ap_tb tb;
    ap_sem sem;
    ap_mpmc q;
    uint64_t next_push;
    int pushed;
    /* counters */
    unsigned long turns, polls, fires, early_fires, done[3];
    const ap_cx *cx; /* the snippet's cx, for the fake epoll_wait */
};

static _Alignas(AP_MPMC_ALIGN) unsigned char qbuf[AP_MPMC_BYTES(64, sizeof(int))];

static void wake_loop(void *ctx) { ((struct loop *)ctx)->woken = true; }

static struct loop *cur;

static ap_poll req_poll(struct req *r, ap_cx *cx)
{
    cur->polls++;
    cur->cx = cx;
    switch (r->kind) {
    case 0: return ap_tb_acquire_poll(&r->tb, cx);
    case 1: return ap_timeout_poll(&r->to, cx);
    default: return ap_mpmc_pop_poll(&r->pop, cx);
    }
}

static void req_start(struct loop *l, struct req *r)
{
    switch (r->kind) {
    case 0: ap_tb_acquire_fut_init(&r->tb, &l->tb, 1, AP_DEADLINE_NONE); break;
    case 1:
        ap_sem_acquire_fut_init(&r->acq, &l->sem, 1);
        ap_timeout_init_after(&r->to, &r->acq.base, fake_t, 350 * AP_NS_PER_US);
        break;
    default: ap_mpmc_pop_fut_init(&r->pop, &l->q, &r->v); break;
    }
    r->next = l->incoming, l->incoming = r;
    l->woken = true; /* new work: the loop polls it next turn */
}

/* a finished future: check its result, start the next one of its chain */
static struct req *req_finish(struct loop *l, struct req *r)
{
    struct req *next = r->next;
    switch (r->kind) {
    case 0: EXPECT_EQ(ap_tb_acquire_status(&r->tb), AP_OK); break;
    case 1:
        EXPECT_EQ(ap_timeout_status(&r->to), AP_TIMEDOUT);
        EXPECT_GE(fake_t, r->to.deadline, "timed out no earlier than its deadline");
        break;
    default:
        if (ap_mpmc_pop_status(&r->pop) == AP_CLOSED)
            return next; /* closed and drained: the chain ends */
        EXPECT_EQ(ap_mpmc_pop_status(&r->pop), AP_OK);
        EXPECT_EQ(r->v, (int)l->done[2] + 1, "popped in order");
        break;
    }
    l->done[r->kind]++;
    if (fake_t < SPAN)
        req_start(l, r);
    return next;
}

static bool loop_done(struct loop *l) { return l->live == NULL && l->incoming == NULL; }

/* epoll_wait on the fake clock: a pending wake returns at once; else the
 * next scheduled push, or the timeout, whichever is first */
static int fake_epoll_wait(int ep, int *ev, int nev, int timeout_ms)
{
    (void)ep, (void)nev;
    struct loop *l = cur;
    l->turns++;
    if (!l->woken) {
        uint64_t until = timeout_ms < 0 ? AP_DEADLINE_NONE
                                        : fake_t + (uint64_t)timeout_ms * AP_NS_PER_MS;
        if (l->next_push != AP_DEADLINE_NONE && l->next_push <= until) {
            fake_t = l->next_push > fake_t ? l->next_push : fake_t;
            int x = ++l->pushed;
            EXPECT_EQ(ap_mpmc_try_push(&l->q, &x), AP_OK); /* wakes the pop through wake_loop */
            l->next_push = fake_t + PUSH_EVERY < SPAN ? fake_t + PUSH_EVERY : AP_DEADLINE_NONE;
            if (l->next_push == AP_DEADLINE_NONE)
                ap_mpmc_close(&l->q); /* the last one: the pop chain ends with AP_CLOSED */
        } else if (until == AP_DEADLINE_NONE) {
            EXPECT_FAIL("the loop waits for ever with nothing scheduled");
        } else {
            fake_t = until;
            l->fires++;
            /* the timer fired before the earliest deadline a future asked for */
            if (fake_t < l->cx->deadline)
                l->early_fires++;
        }
    }
    fake_t += LOOP_COST;
    int n = l->woken ? 1 : 0;
    l->woken = false; /* reading the eventfd */
    if (n)
        ev[0] = 1;
    return n;
}

static void loop_dispatch(struct loop *l, int *ev, int n)
{
    (void)ev, (void)n;
    while (l->incoming) { /* new requests join the live list */
        struct req *r = l->incoming;
        l->incoming = r->next;
        r->next = l->live, l->live = r;
    }
}

#define ap_now_ns() fake_now()
#define epoll_wait fake_epoll_wait

static void run_readme_loop(struct loop *lp)
{
    struct loop loop = *lp;
    int ev[NEV];
    cur = &loop;
    struct req reqs[3] = {{.kind = 0}, {.kind = 1}, {.kind = 2}};
    for (int i = 0; i < 3; i++)
        req_start(&loop, &reqs[i]);
    loop_dispatch(&loop, ev, 0);
    /* README.md "Event loops and servers": the loop, copied literally */
    ap_cx cx = {{wake_loop, &loop}, 0, AP_DEADLINE_NONE}; /* the waker writes the loop's eventfd */
    for (;;) {
        ap_cx_reset(&cx, ap_now_ns()); /* this turn's time, no deadline yet */
        for (struct req **p = &loop.live; *p;) /* poll every live future: each may lower cx.deadline */
            if (req_poll(*p, &cx) == AP_READY) *p = req_finish(&loop, *p); else p = &(*p)->next;
        if (loop_done(&loop)) break;
        int n = epoll_wait(loop.ep, ev, NEV, ap_deadline_to_ms_timeout(cx.deadline, ap_now_ns()));
        loop_dispatch(&loop, ev, n); /* accept, read requests, SIGTERM; reading the eventfd clears wakes */
    }
    /* end of the README copy */
    *lp = loop;
}

#undef ap_now_ns
#undef epoll_wait

Test(loop, readme_loop_does_not_busy_poll, .timeout = TEST_TIMEOUT_S)
{
    static struct loop l;
    fake_t = 777; /* not on a ms grid; SPAN counts from 0 */
    EXPECT_EQ(ap_tb_init(&l.tb, &(ap_tb_desc){.n = 7000, .period_ns = AP_NS_PER_SEC,
                                                 .burst = 1}), AP_OK);
    EXPECT_EQ(ap_sem_init(&l.sem, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&l.sem, 1), AP_OK); /* none left: every acquire times out */
    EXPECT_EQ(ap_mpmc_init(&l.q, qbuf, sizeof qbuf, 64, sizeof(int)), AP_OK);
    l.next_push = fake_t + PUSH_EVERY;
    run_readme_loop(&l);
    cr_log_info("loop: %lu turns, %lu polls, %lu timer fires (%lu early); done: %lu tokens, "
                "%lu timeouts, %lu pops of %d pushed; fake time %.3f ms",
                l.turns, l.polls, l.fires, l.early_fires, l.done[0], l.done[1], l.done[2],
                l.pushed, (double)fake_t / 1e6);
    EXPECT_EQ(l.early_fires, 0, "no timer fires before the earliest deadline");
    EXPECT_EQ((int)l.done[2], l.pushed, "every push popped");
    EXPECT_GE(l.done[0], 100, "the token chain progressed");
    EXPECT_GE(l.done[1], 100, "the timeout chain progressed");
    /* every turn is a wake (a push, or a finished future starting the next)
     * or a timer at or after a deadline (a token ready, a timeout, a waiter's
     * confirm re-poll); each of those happens at most once per future */
    unsigned long finished = l.done[0] + l.done[1] + l.done[2];
    EXPECT_LE(l.turns, 3 * finished + 3, "turns: at most three per finished future");
    EXPECT_LE(l.polls, 3 * l.turns, "three live futures at most");
    ap_mpmc_fini(&l.q);
    ap_sem_fini(&l.sem);
    ap_tb_fini(&l.tb);
}

/* ---- the copy above is the README's: every line of the README block is a
 * line of this file (whitespace-normalised, as tests/docs.sh compares) ---- */

static void norm_line(char *s)
{
    char *w = s;
    bool sp = false;
    for (char *r = s; *r && *r != '\n'; r++) {
        if (*r == ' ' || *r == '\t') { sp = w != s; continue; }
        if (sp) *w++ = ' ';
        sp = false;
        *w++ = *r;
    }
    *w = '\0';
}

Test(loop, readme_block_is_this_copy)
{
    FILE *rd = fopen("README.md", "r"), *me = fopen(__FILE__, "r");
    EXPECT(rd && me, "run from the repository root (README.md, %s)", __FILE__);
    static char mine[2048][512];
    int nmine = 0, nblock = 0;
    char line[512];
    while (nmine < 2048 && fgets(line, sizeof line, me)) {
        norm_line(line);
        memcpy(mine[nmine++], line, sizeof line);
    }
    int stage = 0; /* 0 before the section, 1 in it, 2 in its first C block */
    while (stage < 3 && fgets(line, sizeof line, rd)) {
        norm_line(line);
        if (stage == 0 && strcmp(line, "## Event loops and servers") == 0) stage = 1;
        else if (stage == 1 && strcmp(line, "```c") == 0) stage = 2;
        else if (stage == 2 && strcmp(line, "```") == 0) stage = 3;
        else if (stage == 2 && line[0]) {
            bool found = false;
            for (int i = 0; i < nmine && !found; i++) found = strcmp(mine[i], line) == 0;
            EXPECT(found, "README line not in tests/test_loop.c: %s", line);
            nblock++;
        }
    }
    EXPECT_EQ(stage, 3, "README.md has the section and its C block");
    EXPECT_GE(nblock, 8);
    fclose(rd), fclose(me);
}
