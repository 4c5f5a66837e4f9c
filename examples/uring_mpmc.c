/*
 * examples/uring_mpmc.c -- asyncpat futures on an io_uring loop (issue #13)
 *
 * The waker writes an eventfd that the loop keeps a READ queued on;
 * cx.deadline is an IORING_OP_TIMEOUT with IORING_TIMEOUT_ABS, an absolute
 * instant on CLOCK_MONOTONIC (the clock of ap_now_ns) in ns: no rounding at
 * all. A thread pushes 1..N into an ap_mpmc with ap_mpmc_push_wait and
 * closes it; the loop takes a token from an ap_tb (RATE/s) before each pop.
 * A timeout already queued for an instant no later than the new deadline is
 * kept (it wakes the loop first, which then re-arms); a later one fires as
 * a spurious wake. Checks: all popped in order, then AP_CLOSED; no timeout
 * completed before its instant; at most one timeout per token waited for
 * plus one per pending pop (no busy poll).
 * io_uring may be disabled (seccomp in containers, kernel.io_uring_disabled):
 * then it prints "skipped: io_uring unavailable (<error>)" and exits 77.
 * Build: cc ... uring_mpmc.c $(pkg-config --libs liburing)
 */
#define _GNU_SOURCE
#include "asyncpat/mpmc.h"
#include "asyncpat/token_bucket.h"
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

enum { N = 1000, CAP = 4, RATE = 5000, BURST = 8 };
#define READ_TAG UINT64_C(0) /* user_data of the eventfd read; a timeout's is its instant */
static _Alignas(AP_MPMC_ALIGN) unsigned char buf[AP_MPMC_BYTES(CAP, sizeof(int))];
static ap_mpmc q;
static ap_tb tb;
static struct io_uring ring;
static int efd;
static uint64_t efd_val;

static void *pusher(void *arg)
{
    (void)arg;
    for (int i = 1; i <= N; i++)
        if (ap_mpmc_push_wait(&q, &i, AP_DEADLINE_NONE) != AP_OK) break;
    ap_mpmc_close(&q);
    return NULL;
}
static void wake_efd(void *ctx)
{
    uint64_t one = 1;
    if (write(*(int *)ctx, &one, sizeof one) < 0) abort(); /* any thread */
}
static struct io_uring_sqe *sqe(void)
{
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
    if (!s) abort();
    return s;
}
static void arm_read(void)
{
    struct io_uring_sqe *s = sqe();
    io_uring_prep_read(s, efd, &efd_val, sizeof efd_val, 0);
    io_uring_sqe_set_data64(s, READ_TAG);
}

int main(void)
{
    int err = io_uring_queue_init(8, &ring, 0);
    if (err == -ENOSYS || err == -EPERM || err == -EACCES) {
        printf("skipped: io_uring unavailable (%s)\n", strerror(-err));
        return 77;
    }
    efd = eventfd(0, EFD_CLOEXEC);
    if (err < 0 || efd < 0 || ap_mpmc_init(&q, buf, sizeof buf, CAP, sizeof(int)) != AP_OK ||
        ap_tb_init(&tb, &(ap_tb_desc){.n = RATE, .period_ns = AP_NS_PER_SEC, .burst = BURST}) != AP_OK) {
        fprintf(stderr, "setup: %s\n", strerror(err < 0 ? -err : errno));
        return 1;
    }
    ap_cx cx = {{wake_efd, &efd}, 0, AP_DEADLINE_NONE}; /* the waker writes the eventfd */
    ap_tb_acquire_fut token;
    ap_mpmc_pop_fut pop;
    int v, next = 1, state = 0; /* 0: waiting for a token, 1: popping, 2: done */
    bool waited = false;
    uint64_t armed = AP_DEADLINE_NONE; /* the latest timeout queued, while queued */
    unsigned long queued = 0, fires = 0, early = 0, wakes = 0, polls = 0, token_waits = 0, pop_waits = 0;
    pthread_t th;
    ap_tb_acquire_fut_init(&token, &tb, 1, AP_DEADLINE_NONE);
    if (pthread_create(&th, NULL, pusher, NULL)) return 1;
    uint64_t t0 = ap_now_ns();
    arm_read();
    for (;;) {
        /* poll until something is pending */
        while (state != 2) {
            ap_cx_reset(&cx, ap_now_ns());
            polls++;
            if (state == 0) {
                if (ap_tb_acquire_poll(&token, &cx) == AP_PENDING) { token_waits += !waited, waited = true; break; }
                if (ap_tb_acquire_status(&token) != AP_OK) return 1;
                ap_mpmc_pop_fut_init(&pop, &q, &v);
                state = 1;
                continue;
            }
            if (ap_mpmc_pop_poll(&pop, &cx) == AP_PENDING) { pop_waits++; break; }
            if (ap_mpmc_pop_status(&pop) != AP_OK) { state = 2; break; } /* closed and drained */
            if (v != next++) { fprintf(stderr, "popped %d, expected %d\n", v, next - 1); return 1; }
            ap_tb_acquire_fut_init(&token, &tb, 1, AP_DEADLINE_NONE);
            state = 0, waited = false;
        }
        if (state == 2) break;
        /* the deadline, exactly: an absolute CLOCK_MONOTONIC timeout in ns */
        if (cx.deadline != AP_DEADLINE_NONE && (queued == 0 || cx.deadline < armed)) {
            struct __kernel_timespec ts = {(long long)(cx.deadline / AP_NS_PER_SEC),
                                           (long long)(cx.deadline % AP_NS_PER_SEC)};
            struct io_uring_sqe *s = sqe();
            io_uring_prep_timeout(s, &ts, 0, IORING_TIMEOUT_ABS);
            io_uring_sqe_set_data64(s, cx.deadline);
            armed = cx.deadline, queued++;
            if (io_uring_submit(&ring) < 0) return 1; /* the kernel reads ts here */
        }
        struct io_uring_cqe *c;
        if ((err = io_uring_submit_and_wait(&ring, 1)) < 0 && err != -EINTR) return 1;
        while (io_uring_peek_cqe(&ring, &c) == 0) {
            uint64_t tag = io_uring_cqe_get_data64(c);
            int res = c->res;
            io_uring_cqe_seen(&ring, c);
            if (tag == READ_TAG) { /* a wake: the eventfd was written */
                if (res < 0 && res != -EINTR) return 1;
                wakes++;
                arm_read();
            } else {
                if (res != -ETIME) { fprintf(stderr, "timeout: %s\n", strerror(-res)); return 1; }
                fires++, queued--;
                if (ap_now_ns() < tag) early++; /* completed before its instant: would spin */
                if (tag == armed) armed = AP_DEADLINE_NONE;
            }
        }
    }
    pthread_join(th, NULL);
    double ms = (double)(ap_now_ns() - t0) / 1e6;
    printf("popped %d in order, then closed; %.1f ms (%d tokens/s); %lu polls, %lu eventfd wakes, "
           "%lu timeouts (%lu early) for %lu tokens waited for and %lu pop waits\n",
           next - 1, ms, RATE, polls, wakes, fires, early, token_waits, pop_waits);
    io_uring_queue_exit(&ring); /* cancels the read and any timeout still queued */
    close(efd);
    ap_mpmc_fini(&q);
    ap_tb_fini(&tb);
    return next - 1 == N && early == 0 && fires <= token_waits + pop_waits + 1 ? 0 : 1;
}
