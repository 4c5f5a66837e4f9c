/*
 * examples/uv_mpmc.c -- asyncpat futures on a libuv loop (issue #13)
 *
 * The waker is a uv_async_t (uv_async_send may be called from any thread);
 * cx.deadline is a uv_timer_t. A thread pushes 1..N into an ap_mpmc with
 * ap_mpmc_push_wait and closes it; the loop takes a token from an ap_tb
 * (RATE/s: a future that waits for time only) before each pop, so both the
 * wake and the timer paths run. libuv timers count whole ms from the loop's
 * cached time (uv_now, which may lag the real clock): the timeout is
 * ap_deadline_to_ms_timeout(deadline, uv_now * 1 ms) after uv_update_time,
 * rounded up from that earlier instant, so a timer never fires before its
 * deadline. Checks: all popped in order, then AP_CLOSED; no timer fired
 * early; at most one timer fire per token waited for plus one per pending
 * pop (its confirm re-poll): no busy poll. Build: cc ... uv_mpmc.c $(pkg-config --libs libuv)
 */
#define _DEFAULT_SOURCE 1 /* <uv.h> needs POSIX types hidden by -std=c11 */
#include "asyncpat/mpmc.h"
#include "asyncpat/token_bucket.h"
#include <pthread.h>
#include <stdio.h>
#include <uv.h>

enum { N = 1000, CAP = 4, RATE = 5000, BURST = 8 };
static _Alignas(AP_MPMC_ALIGN) unsigned char buf[AP_MPMC_BYTES(CAP, sizeof(int))];
static ap_mpmc q;
static ap_tb tb;
static uv_loop_t *loop;
static uv_async_t async;
static uv_timer_t timer;
static ap_cx cx;
static ap_tb_acquire_fut token;
static ap_mpmc_pop_fut pop;
static int v, next = 1, state; /* 0: waiting for a token, 1: popping, 2: done */
static uint64_t armed = AP_DEADLINE_NONE;
static bool waited; /* the current token future has been pending */
static unsigned long fires, early, wakes, polls, token_waits, pop_waits;

static void *pusher(void *arg)
{
    (void)arg;
    for (int i = 1; i <= N; i++)
        if (ap_mpmc_push_wait(&q, &i, AP_DEADLINE_NONE) != AP_OK) break;
    ap_mpmc_close(&q);
    return NULL;
}

static void on_timer(uv_timer_t *t);
/* poll until something is pending, then arm the timer for cx.deadline */
static void drive(void)
{
    while (state != 2) {
        ap_cx_reset(&cx, ap_now_ns());
        polls++;
        if (state == 0) {
            if (ap_tb_acquire_poll(&token, &cx) == AP_PENDING) { token_waits += !waited; waited = true; break; }
            if (ap_tb_acquire_status(&token) != AP_OK) { fprintf(stderr, "token\n"); exit(1); }
            ap_mpmc_pop_fut_init(&pop, &q, &v);
            state = 1;
            continue;
        }
        if (ap_mpmc_pop_poll(&pop, &cx) == AP_PENDING) { pop_waits++; break; }
        if (ap_mpmc_pop_status(&pop) != AP_OK) { state = 2; break; } /* closed and drained */
        if (v != next++) { fprintf(stderr, "popped %d, expected %d\n", v, next - 1); exit(1); }
        ap_tb_acquire_fut_init(&token, &tb, 1, AP_DEADLINE_NONE);
        state = 0, waited = false;
    }
    if (state == 2) {
        uv_close((uv_handle_t *)&async, NULL), uv_close((uv_handle_t *)&timer, NULL);
        return;
    }
    uv_update_time(loop); /* timers count from the loop's cached ms */
    int ms = ap_deadline_to_ms_timeout(cx.deadline, uv_now(loop) * AP_NS_PER_MS);
    armed = cx.deadline;
    if (ms < 0) uv_timer_stop(&timer);
    else uv_timer_start(&timer, on_timer, (uint64_t)ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    fires++;
    if (ap_now_ns() < armed) early++; /* woke before the deadline: would spin */
    drive();
}
static void on_async(uv_async_t *a) { (void)a; wakes++; drive(); }
static void wake_async(void *ctx) { uv_async_send(ctx); } /* any thread */

int main(void)
{
    pthread_t th;
    loop = uv_default_loop();
    if (ap_mpmc_init(&q, buf, sizeof buf, CAP, sizeof v) != AP_OK ||
        ap_tb_init(&tb, &(ap_tb_desc){.n = RATE, .period_ns = AP_NS_PER_SEC, .burst = BURST}) != AP_OK ||
        uv_async_init(loop, &async, on_async) || uv_timer_init(loop, &timer))
        return 1;
    cx.waker = (ap_waker){wake_async, &async};
    ap_tb_acquire_fut_init(&token, &tb, 1, AP_DEADLINE_NONE);
    if (pthread_create(&th, NULL, pusher, NULL)) return 1;
    uint64_t t0 = ap_now_ns();
    drive();
    uv_run(loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    double ms = (double)(ap_now_ns() - t0) / 1e6;
    printf("popped %d in order, then closed; %.1f ms (%d tokens/s); %lu polls, %lu async wakes, "
           "%lu timer fires (%lu early) for %lu tokens waited for and %lu pop waits\n",
           next - 1, ms, RATE, polls, wakes, fires, early, token_waits, pop_waits);
    ap_mpmc_fini(&q);
    ap_tb_fini(&tb);
    uv_loop_close(loop);
    return next - 1 == N && early == 0 && fires <= token_waits + pop_waits + 1 ? 0 : 1;
}
