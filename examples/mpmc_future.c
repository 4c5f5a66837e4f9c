/*
 * examples/mpmc_future.c -- drive ap_mpmc pop futures from your own loop
 *
 * asyncpat has no runtime: the caller polls a future and supplies its waker.
 * Here the "event loop" waits on a flag the waker sets (from the pushing
 * thread, so it is atomic); a real loop would write an eventfd it polls.
 * Another thread pushes 1..N with ap_mpmc_push_wait (the same kind of future,
 * driven by ap_block_on), then closes; the loop must pop them all, in order.
 */
#include "asyncpat.h" /* first: under -std=c11 it enables POSIX (sched_yield) */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>

enum { N = 10000, CAP = 4 };
static _Alignas(size_t) unsigned char buf[AP_MPMC_BYTES(CAP, sizeof(int))];
static ap_mpmc q; /* in caller memory: nothing here allocates */

static void set_flag(void *ctx) { atomic_store((atomic_bool *)ctx, true); }

static void *pusher(void *arg)
{
    (void)arg;
    for (int i = 1; i <= N; i++)
        if (ap_mpmc_push_wait(&q, &i, AP_DEADLINE_NONE) != AP_OK) break;
    ap_mpmc_close(&q);
    return NULL;
}

int main(void)
{
    atomic_bool woken = false;
    ap_cx cx = {{set_flag, &woken}, 0, AP_DEADLINE_NONE}; /* waker, now, deadline */
    unsigned long idle = 0;
    int v, next = 1;
    pthread_t th;
    if (ap_mpmc_init(&q, buf, sizeof buf, CAP, sizeof v) != AP_OK || pthread_create(&th, NULL, pusher, NULL))
        return 1;
    ap_mpmc_pop_fut f;
    do {
        ap_mpmc_pop_fut_init(&f, &q, &v);
        /* The flag is consumed before each re-poll, so a wake that lands
         * during a poll is not lost: the loop just polls once more. */
        /* a driver passes the time and honours the deadline a poll asks for */
        for (cx.now = ap_now_ns(), cx.deadline = AP_DEADLINE_NONE;
             ap_mpmc_pop_poll(&f, &cx) == AP_PENDING;
             cx.now = ap_now_ns(), cx.deadline = AP_DEADLINE_NONE)
            while (!atomic_exchange(&woken, false) && ap_now_ns() < cx.deadline) {
                idle++; /* the loop's other work, or its epoll_wait, goes here */
                sched_yield();
            }
        if (ap_mpmc_pop_status(&f) == AP_OK && v != next++) {
            fprintf(stderr, "popped %d, expected %d\n", v, next - 1);
            return 1;
        }
    } while (ap_mpmc_pop_status(&f) == AP_OK); /* then AP_CLOSED: closed and drained */
    pthread_join(th, NULL);
    ap_mpmc_fini(&q);
    printf("popped %d in order, then %s; %lu idle turns\n", next - 1,
           ap_status_str(ap_mpmc_pop_status(&f)), idle);
    return next - 1 == N && ap_mpmc_pop_status(&f) == AP_CLOSED ? 0 : 1;
}
