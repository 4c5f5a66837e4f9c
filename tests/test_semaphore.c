/*
 * tests/test_semaphore.c -- the fair counting semaphore
 */
#include "asyncpat/semaphore.h"

#include <criterion/criterion.h>
#include "test_util.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>


/* ---- helpers ---- */

/* the counting waker (tw, tw_wake, calls, cx_of): test_util.h */


static size_t waiters(ap_sem *s) { return atomic_load(&s->wl.count); }

/* poll once with t's waker */
static ap_poll poll1(ap_sem_acquire_fut *f, tw *t)
{
    ap_cx cx = cx_of(t);
    return ap_sem_acquire_poll(f, &cx);
}

/* ---- configuration ---- */

Test(semaphore, init_bad_config_is_inval_and_changes_nothing)
{
    static const size_t bad[][2] = {
        {0, 0}, {5, 4}, {1, 0}, {0, AP_SEM_PERMITS_MAX + 1}, {SIZE_MAX, SIZE_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ap_sem s, before;
        memset(&s, 0xa5, sizeof s);
        memcpy(&before, &s, sizeof s);
        EXPECT_EQ(ap_sem_init_max(&s, bad[i][0], bad[i][1]), AP_INVAL, "init_max(%zu, %zu)",
                     bad[i][0], bad[i][1]);
        EXPECT_EQ(memcmp(&s, &before, sizeof s), 0, "init_max wrote on AP_INVAL");
    }
    ap_sem s, before;
    memset(&s, 0x5a, sizeof s);
    memcpy(&before, &s, sizeof s);
    EXPECT_EQ(ap_sem_init(&s, 0), AP_INVAL);
    EXPECT_EQ(ap_sem_init(&s, AP_SEM_PERMITS_MAX + 1), AP_INVAL);
    EXPECT_EQ(memcmp(&s, &before, sizeof s), 0);
    EXPECT_EQ(ap_sem_init(&s, AP_SEM_PERMITS_MAX), AP_OK, "the largest max is accepted");
    EXPECT_EQ(ap_sem_available(&s), AP_SEM_PERMITS_MAX);
    EXPECT_EQ(ap_sem_try_acquire(&s, AP_SEM_PERMITS_MAX), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, AP_SEM_PERMITS_MAX), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_INVAL);
    ap_sem_fini(&s);
}

Test(semaphore, static_initializer_and_init_agree)
{
    static ap_sem st = AP_SEM_INITIALIZER(3);
    ap_sem rt;
    EXPECT_EQ(ap_sem_init(&rt, 3), AP_OK);
    ap_sem *both[] = {&st, &rt};
    for (int i = 0; i < 2; i++) {
        ap_sem *s = both[i];
        EXPECT_EQ(ap_sem_available(s), 3);
        EXPECT_EQ(ap_sem_max(s), 3);
        EXPECT(!ap_sem_is_closed(s));
        EXPECT_EQ(ap_sem_try_acquire(s, 2), AP_OK);
        EXPECT_EQ(ap_sem_try_acquire(s, 2), AP_EMPTY, "all or nothing");
        EXPECT_EQ(ap_sem_available(s), 1, "a failed try took something");
        EXPECT_EQ(ap_sem_try_acquire(s, 1), AP_OK);
        EXPECT_EQ(ap_sem_try_acquire(s, 1), AP_EMPTY);
        EXPECT_EQ(ap_sem_release(s, 3), AP_OK);
        EXPECT_EQ(ap_sem_available(s), 3);
    }
    ap_sem_fini(&rt);
}

Test(semaphore, init_max_starts_below_the_ceiling)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init_max(&s, 0, 4), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(ap_sem_max(&s), 4);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_EMPTY);
    EXPECT_EQ(ap_sem_try_acquire(&s, 5), AP_INVAL, "n > max");
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_INVAL, "3 + 2 > 4");
    EXPECT_EQ(ap_sem_available(&s), 3, "a refused release changed the count");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 4);
    ap_sem_fini(&s);
}

Test(semaphore, inval_cases_change_nothing)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 4), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK);
    tw t = {0};
    /* a request larger than the maximum could never succeed */
    EXPECT_EQ(ap_sem_try_acquire(&s, 5), AP_INVAL);
    EXPECT_EQ(ap_sem_try_acquire(&s, SIZE_MAX), AP_INVAL);
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s, 5);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_INVAL);
    EXPECT_EQ(waiters(&s), 0, "an invalid future queued");
    EXPECT_EQ(ap_sem_acquire_wait(&s, 5, AP_DEADLINE_NONE), AP_INVAL);
    /* a release above the ceiling: refused, not clamped */
    EXPECT_EQ(ap_sem_release(&s, 2), AP_INVAL);
    EXPECT_EQ(ap_sem_release(&s, SIZE_MAX), AP_INVAL);
    EXPECT_EQ(ap_sem_available(&s), 3);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 4);
    EXPECT_EQ(calls(&t), 0);
    ap_sem_fini(&s);
}

Test(semaphore, zero_permits_succeed_at_once_unless_closed)
{
    ap_sem s;
    tw t = {0}, tq = {0};
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 0), AP_OK, "n = 0 with nothing available");
    /* with a future queued, n = 0 takes nothing, so it overtakes nobody */
    ap_sem_acquire_fut q, z;
    ap_sem_acquire_fut_init(&q, &s, 1);
    EXPECT_EQ(poll1(&q, &tq), AP_PENDING);
    EXPECT_EQ(ap_sem_try_acquire(&s, 0), AP_OK);
    ap_sem_acquire_fut_init(&z, &s, 0);
    EXPECT_EQ(poll1(&z, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&z), AP_OK);
    EXPECT_EQ(ap_sem_acquire_wait(&s, 0, AP_DEADLINE_NONE), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 0), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(waiters(&s), 1);
    ap_sem_close(&s);
    EXPECT_EQ(ap_sem_try_acquire(&s, 0), AP_CLOSED, "close wins over n = 0");
    ap_sem_acquire_fut_init(&z, &s, 0);
    EXPECT_EQ(poll1(&z, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&z), AP_CLOSED);
    EXPECT_EQ(poll1(&q, &tq), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&q), AP_CLOSED);
    EXPECT_EQ(calls(&t), 0);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 2);
    ap_sem_fini(&s);
}

Test(semaphore, forget_removes_at_most_what_is_available)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 5), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_forget(&s, 2), 2);
    EXPECT_EQ(ap_sem_available(&s), 1);
    EXPECT_EQ(ap_sem_forget(&s, 10), 1, "only what is available");
    EXPECT_EQ(ap_sem_forget(&s, 10), 0);
    EXPECT_EQ(ap_sem_forget(&s, 0), 0);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK, "the held ones come back");
    /* the ceiling stays: forgotten permits may be released back (resizing) */
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_INVAL);
    EXPECT_EQ(ap_sem_available(&s), 5);
    ap_sem_fini(&s);
}

Test(semaphore, forget_with_a_queued_future_does_not_grant)
{
    ap_sem s;
    tw t = {0};
    EXPECT_EQ(ap_sem_init(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s, 2);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    EXPECT_EQ(ap_sem_forget(&s, 1), 1);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(calls(&t), 0, "1 permit does not satisfy 2");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(calls(&t), 1);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    ap_sem_fini(&s);
}

/* ---- fairness ---- */

Test(semaphore, fifo_mixed_sizes_large_head_first_no_herd)
{
    ap_sem s;
    wake_log log = {{0}, 0};
    tw t[5];
    ap_sem_acquire_fut f[5];
    static const size_t want[5] = {3, 1, 2, 1, 4};
    EXPECT_EQ(ap_sem_init(&s, 4), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 4), AP_OK);
    for (int i = 0; i < 5; i++) {
        t[i] = (tw){0, i, &log};
        ap_sem_acquire_fut_init(&f[i], &s, want[i]);
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_PENDING, "future %d", i);
    }
    EXPECT_EQ(waiters(&s), 5);
    /* 1 permit: the head wants 3; the small request behind it must wait */
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(atomic_load(&log.n), 0, "a release woke a waiter it cannot satisfy");
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_EMPTY, "try_acquire barged past the queue");
    EXPECT_EQ(ap_sem_available(&s), 1);
    /* a fresh future must queue behind, not take the idle permit */
    ap_sem_acquire_fut late;
    tw tl = {0, 9, &log};
    ap_sem_acquire_fut_init(&late, &s, 1);
    EXPECT_EQ(poll1(&late, &tl), AP_PENDING);
    /* re-polling a waiting future does not jump the queue either */
    EXPECT_EQ(poll1(&f[1], &t[1]), AP_PENDING);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK); /* 3: the head only */
    EXPECT_EQ(atomic_load(&log.n), 1);
    EXPECT_EQ(log.order[0], 0);
    EXPECT_EQ(poll1(&f[0], &t[0]), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f[0]), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 0);
    /* the head gives its 3 back: B(1) and C(2) are served, D(1) is not */
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    EXPECT_EQ(atomic_load(&log.n), 3);
    EXPECT_EQ(log.order[1], 1);
    EXPECT_EQ(log.order[2], 2);
    for (int i = 1; i <= 2; i++) {
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_READY);
        EXPECT_EQ(ap_sem_acquire_status(&f[i]), AP_OK);
    }
    /* 4 back: D(1), then E(4) blocks (only 3 left) and the late 1 waits */
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    EXPECT_EQ(atomic_load(&log.n), 4);
    EXPECT_EQ(log.order[3], 3);
    EXPECT_EQ(poll1(&f[3], &t[3]), AP_READY);
    EXPECT_EQ(calls(&t[4]), 0);
    EXPECT_EQ(calls(&tl), 0);
    EXPECT_EQ(ap_sem_available(&s), 2);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK); /* D's */
    EXPECT_EQ(calls(&t[4]), 0);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK); /* f[0]'s last: 4 */
    EXPECT_EQ(calls(&t[4]), 1);
    EXPECT_EQ(calls(&tl), 0);
    EXPECT_EQ(poll1(&f[4], &t[4]), AP_READY);
    EXPECT_EQ(ap_sem_release(&s, 4), AP_OK);
    EXPECT_EQ(calls(&tl), 1);
    EXPECT_EQ(poll1(&late, &tl), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&late), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 4, "permits not conserved");
    EXPECT_EQ(waiters(&s), 0);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(calls(&t[i]), 1, "future %d woken %d times", i, calls(&t[i]));
    ap_sem_fini(&s);
}

/* ---- cancellation ---- */

Test(semaphore, cancel_after_grant_passes_permits_on)
{
    ap_sem s;
    tw a = {0}, b = {0};
    ap_sem_acquire_fut fa, fb;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    ap_sem_acquire_fut_init(&fa, &s, 2);
    ap_sem_acquire_fut_init(&fb, &s, 1);
    EXPECT_EQ(poll1(&fa, &a), AP_PENDING);
    EXPECT_EQ(poll1(&fb, &b), AP_PENDING);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(calls(&a), 1);
    EXPECT_EQ(calls(&b), 0);
    EXPECT_EQ(ap_sem_available(&s), 0, "granted permits still counted");
    /* a cancels before it saw its grant: the 2 go back, b gets 1 of them */
    ap_sem_acquire_cancel(&fa);
    EXPECT_EQ(ap_sem_acquire_status(&fa), AP_CANCELED);
    EXPECT_EQ(calls(&b), 1, "the cancelled grant was not passed on");
    EXPECT_EQ(ap_sem_available(&s), 1);
    ap_sem_acquire_cancel(&fa); /* idempotent: no second give-back */
    EXPECT_EQ(ap_sem_available(&s), 1);
    EXPECT_EQ(poll1(&fa, &a), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&fa), AP_CANCELED);
    EXPECT_EQ(poll1(&fb, &b), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&fb), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 2, "permits not conserved");
    EXPECT_EQ(calls(&a), 1);
    ap_sem_fini(&s);
}

Test(semaphore, cancel_partly_covered_head_lets_smaller_requests_through)
{
    ap_sem s;
    tw a = {0}, b = {0}, c = {0};
    ap_sem_acquire_fut fa, fb, fc;
    EXPECT_EQ(ap_sem_init(&s, 5), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 3), AP_OK); /* 2 left */
    ap_sem_acquire_fut_init(&fa, &s, 4);            /* 2 of its 4 are there */
    ap_sem_acquire_fut_init(&fb, &s, 1);
    ap_sem_acquire_fut_init(&fc, &s, 2);
    EXPECT_EQ(poll1(&fa, &a), AP_PENDING);
    EXPECT_EQ(poll1(&fb, &b), AP_PENDING, "b overtook the head");
    EXPECT_EQ(poll1(&fc, &c), AP_PENDING);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK); /* 3 of 4 */
    EXPECT_EQ(calls(&a) + calls(&b) + calls(&c), 0);
    EXPECT_EQ(ap_sem_available(&s), 3);
    ap_sem_acquire_cancel(&fa);
    EXPECT_EQ(calls(&a), 0, "a cancelled waiter was woken");
    EXPECT_EQ(calls(&b), 1);
    EXPECT_EQ(calls(&c), 1);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(poll1(&fb, &b), AP_READY);
    EXPECT_EQ(poll1(&fc, &c), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&fb), AP_OK);
    EXPECT_EQ(ap_sem_acquire_status(&fc), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1 + 2 + 2), AP_OK); /* b, c, and 2 of the 3 held */
    EXPECT_EQ(ap_sem_release(&s, 0), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 5, "permits not conserved");
    EXPECT_EQ(waiters(&s), 0);
    ap_sem_fini(&s);
}

Test(semaphore, cancel_is_idempotent_and_no_wake_after_it)
{
    ap_sem s;
    tw t = {0};
    ap_sem_acquire_fut f;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK);
    ap_sem_acquire_fut_init(&f, &s, 1);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    ap_sem_acquire_cancel(&f);
    ap_sem_acquire_cancel(&f);
    ap_future_cancel(&f.base); /* through the vtable too */
    EXPECT_EQ(waiters(&s), 0);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    ap_sem_close(&s);
    EXPECT_EQ(calls(&t), 0, "a cancelled waiter was woken");
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_sem_available(&s), 1);
    ap_sem_fini(&s);
}

Test(semaphore, cancel_before_first_poll_and_after_completion)
{
    ap_sem s;
    tw t = {0};
    ap_sem_acquire_fut f;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    ap_sem_acquire_fut_init(&f, &s, 1);
    ap_sem_acquire_cancel(&f);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_CANCELED);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_CANCELED);
    EXPECT_EQ(ap_sem_available(&s), 2, "a never-polled future took permits");
    ap_sem_acquire_fut_init(&f, &s, 2);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_OK);
    ap_sem_acquire_cancel(&f); /* after completion: the caller keeps the permits */
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 0);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    ap_sem_fini(&s);
}

Test(semaphore, repoll_with_new_waker_replaces_old)
{
    ap_sem s;
    tw a = {0}, b = {0};
    ap_sem_acquire_fut f;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK);
    ap_sem_acquire_fut_init(&f, &s, 1);
    EXPECT_EQ(poll1(&f, &a), AP_PENDING);
    EXPECT_EQ(poll1(&f, &b), AP_PENDING);
    EXPECT_EQ(waiters(&s), 1, "re-poll registered twice");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(calls(&a), 0, "the replaced waker was called");
    EXPECT_EQ(calls(&b), 1);
    EXPECT_EQ(poll1(&f, &b), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    ap_sem_fini(&s);
}

/* ---- close ---- */

Test(semaphore, close_wakes_all_with_closed)
{
    ap_sem s;
    tw t[4];
    ap_sem_acquire_fut f[4];
    EXPECT_EQ(ap_sem_init(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    for (int i = 0; i < 4; i++) {
        t[i] = (tw){0, i, NULL};
        ap_sem_acquire_fut_init(&f[i], &s, (size_t)(i % 2) + 2);
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_PENDING);
    }
    ap_sem_close(&s);
    EXPECT(ap_sem_is_closed(&s));
    EXPECT_EQ(waiters(&s), 0);
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(calls(&t[i]), 1, "waiter %d not woken by close", i);
        EXPECT_EQ(poll1(&f[i], &t[i]), AP_READY);
        EXPECT_EQ(ap_sem_acquire_status(&f[i]), AP_CLOSED);
    }
    /* every later acquire fails the same way, also when permits are there */
    EXPECT_EQ(ap_sem_available(&s), 1);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_CLOSED);
    EXPECT_EQ(ap_sem_acquire_wait(&s, 1, AP_DEADLINE_NONE), AP_CLOSED);
    ap_sem_acquire_fut g;
    tw tg = {0};
    ap_sem_acquire_fut_init(&g, &s, 1);
    EXPECT_EQ(poll1(&g, &tg), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&g), AP_CLOSED);
    ap_sem_close(&s); /* idempotent */
    /* held permits still come back */
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 3);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_INVAL);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(calls(&t[i]), 1);
    ap_sem_fini(&s);
}

Test(semaphore, granted_before_close_completes_ok)
{
    ap_sem s;
    tw a = {0}, b = {0};
    ap_sem_acquire_fut fa, fb;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    ap_sem_acquire_fut_init(&fa, &s, 1);
    ap_sem_acquire_fut_init(&fb, &s, 2);
    EXPECT_EQ(poll1(&fa, &a), AP_PENDING);
    EXPECT_EQ(poll1(&fb, &b), AP_PENDING);
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK); /* granted to a */
    ap_sem_close(&s);
    EXPECT_EQ(poll1(&fa, &a), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&fa), AP_OK, "a grant before close was revoked");
    EXPECT_EQ(poll1(&fb, &b), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&fb), AP_CLOSED);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 2);
    ap_sem_fini(&s);
}

/* ---- blocking ---- */

Test(semaphore, wait_times_out_and_takes_nothing, .timeout = TEST_TIMEOUT_S)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK);
    uint64_t t0 = ap_now_ns();
    EXPECT_EQ(ap_sem_acquire_wait(&s, 2, t0 + 20 * AP_NS_PER_MS), AP_TIMEDOUT);
    EXPECT_GE(ap_now_ns() - t0, 20 * AP_NS_PER_MS);
    EXPECT_EQ(waiters(&s), 0, "a timed-out wait left its waiter queued");
    EXPECT_EQ(ap_sem_available(&s), 1);
    EXPECT_EQ(ap_sem_acquire_wait(&s, 1, ap_now_ns() + AP_NS_PER_SEC), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 2);
    ap_sem_fini(&s);
}

typedef struct waitarg {
    ap_sem *s;
    size_t n;
    ap_status st;
    atomic_int done;
} waitarg;

static void *wait_main(void *p)
{
    waitarg *w = p;
    w->st = ap_sem_acquire_wait(w->s, w->n, AP_DEADLINE_NONE);
    atomic_store(&w->done, 1);
    return NULL;
}

static void wait_for_waiters(ap_sem *s, size_t n)
{
    while (waiters(s) < n)
        ms_sleep(1);
}

Test(semaphore, parked_threads_served_in_order_by_releases, .timeout = TEST_TIMEOUT_S)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 3), AP_OK);
    waitarg w[3] = {{&s, 3, AP_NOT_READY, 0}, {&s, 1, AP_NOT_READY, 0}, {&s, 2, AP_NOT_READY, 0}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
        wait_for_waiters(&s, (size_t)i + 1); /* queue in a known order */
    }
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    ms_sleep(20);
    EXPECT_EQ(atomic_load(&w[0].done) + atomic_load(&w[1].done) + atomic_load(&w[2].done), 0,
                 "a smaller request overtook the head");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    pthread_join(th[0], NULL);
    EXPECT_EQ(w[0].st, AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    pthread_join(th[1], NULL);
    pthread_join(th[2], NULL);
    EXPECT_EQ(w[1].st, AP_OK);
    EXPECT_EQ(w[2].st, AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 3), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 3);
    ap_sem_fini(&s);
}

Test(semaphore, parked_threads_all_woken_by_close, .timeout = TEST_TIMEOUT_S)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    waitarg w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (waitarg){&s, (size_t)(i % 2) + 1, AP_NOT_READY, 0};
        EXPECT_EQ(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
    }
    wait_for_waiters(&s, 4);
    ap_sem_close(&s);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        EXPECT_EQ(w[i].st, AP_CLOSED);
    }
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 2);
    ap_sem_fini(&s);
}

/* ---- the theorem: active(t) <= n, reached, permits conserved ---- */

#define THREADS 8
#define PERMITS 4

typedef struct theorem {
    ap_sem s;
    atomic_int active, high, violations;
    int iters;
    bool random_sizes;
    long plain; /* written only under the semaphore when PERMITS == n taken */
} theorem;

typedef struct tharg {
    theorem *th;
    unsigned id;
} tharg;

static void *theorem_main(void *p)
{
    tharg *a = p;
    theorem *th = a->th;
    uint64_t rng = 0x9E3779B97F4A7C15u * (a->id + 1);
    for (int i = 0; i < th->iters; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        size_t k = th->random_sizes ? (size_t)(rng % PERMITS) + 1 : 1;
        ap_status st;
        if (rng & 0x100) {
            st = ap_sem_acquire_wait(&th->s, k, AP_DEADLINE_NONE);
        } else {
            unsigned spins = 0;
            while ((st = ap_sem_try_acquire(&th->s, k)) == AP_EMPTY)
                ap__backoff(&spins);
        }
        if (st != AP_OK) {
            atomic_fetch_add(&th->violations, 1);
            return NULL;
        }
        int now = atomic_fetch_add_explicit(&th->active, (int)k, memory_order_relaxed) + (int)k;
        if (now > PERMITS)
            atomic_fetch_add(&th->violations, 1);
        int hi = atomic_load_explicit(&th->high, memory_order_relaxed);
        while (now > hi &&
               !atomic_compare_exchange_weak_explicit(&th->high, &hi, now, memory_order_relaxed,
                                                      memory_order_relaxed)) {
        }
        if (k == PERMITS)
            th->plain++; /* exclusive: the semaphore must order these */
        if (!th->random_sizes)
            ms_sleep(1); /* hold long enough for others to pile up */
        else if (rng & 0x200)
            sched_yield();
        atomic_fetch_sub_explicit(&th->active, (int)k, memory_order_relaxed);
        if (ap_sem_release(&th->s, k) != AP_OK)
            atomic_fetch_add(&th->violations, 1);
    }
    return NULL;
}

static void run_theorem(bool random_sizes, int iters)
{
    static theorem th;
    memset(&th, 0, sizeof th);
    EXPECT_EQ(ap_sem_init(&th.s, PERMITS), AP_OK);
    th.iters = iters;
    th.random_sizes = random_sizes;
    pthread_t t[THREADS];
    tharg a[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        a[i] = (tharg){&th, i};
        EXPECT_EQ(pthread_create(&t[i], NULL, theorem_main, &a[i]), 0);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    EXPECT_EQ(atomic_load(&th.violations), 0, "active exceeded n or an op failed");
    EXPECT_LE(atomic_load(&th.high), PERMITS);
    EXPECT_EQ(atomic_load(&th.high), PERMITS, "high-water %d < n: over-serialised",
                 atomic_load(&th.high));
    EXPECT_EQ(ap_sem_available(&th.s), PERMITS, "permits not conserved");
    EXPECT_EQ(waiters(&th.s), 0);
    ap_sem_fini(&th.s);
}

Test(semaphore, theorem_unit_requests_reach_n_and_never_exceed, .timeout = TEST_TIMEOUT_S)
{
    run_theorem(false, 40);
}

Test(semaphore, theorem_random_sizes_never_exceed_n, .timeout = TEST_TIMEOUT_S)
{
    run_theorem(true, 3000);
}

/* ---- preconditions ---- */

Test(semaphore, use_after_fini_asserts, .signal = SIGABRT)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    ap_sem_fini(&s);
    ap_status st = ap_sem_try_acquire(&s, 1);
    cr_log_error("returned %s", ap_status_str(st));
}

Test(semaphore, release_after_fini_asserts, .signal = SIGABRT)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    ap_sem_fini(&s);
    ap_status st = ap_sem_release(&s, 1);
    cr_log_error("returned %s", ap_status_str(st));
}

/* Every build, not only AP_DEBUG: a queued future at end of life would be
 * granted or woken into memory the caller is about to reuse. */
Test(semaphore, fini_with_a_queued_future_asserts, .signal = SIGABRT)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_OK);
    tw t = {0};
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s, 1);
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    ap_sem_fini(&s);
}

Test(semaphore, null_semaphore_asserts, .signal = SIGABRT)
{
    ap_status st = ap_sem_init(NULL, 1);
    cr_log_error("returned %s", ap_status_str(st));
}

Test(semaphore, zero_struct_is_not_a_semaphore, .signal = SIGABRT)
{
    static ap_sem z; /* max 0: use before init */
    ap_status st = ap_sem_try_acquire(&z, 0);
    cr_log_error("returned %s", ap_status_str(st));
}

/* ---- the status table (issue #11) ---- */

/* regression: "nothing available now" is AP_EMPTY (was AP_AGAIN), for no
 * permits and for permits held back by a queued future (fairness); a
 * pending future's status is AP_NOT_READY (was AP_AGAIN) */
Test(semaphore, status_table_empty_and_not_ready, .timeout = TEST_TIMEOUT_S)
{
    ap_sem s;
    EXPECT_EQ(ap_sem_init(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 2), AP_OK);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_EMPTY, "no permits");
    tw t = {0};
    ap_sem_acquire_fut f;
    ap_sem_acquire_fut_init(&f, &s, 2);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_NOT_READY, "before the first poll");
    EXPECT_EQ(poll1(&f, &t), AP_PENDING);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_NOT_READY, "pending");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(ap_sem_available(&s), 1);
    EXPECT_EQ(ap_sem_try_acquire(&s, 1), AP_EMPTY, "a future is queued first");
    EXPECT_EQ(ap_sem_release(&s, 1), AP_OK);
    EXPECT_EQ(poll1(&f, &t), AP_READY);
    EXPECT_EQ(ap_sem_acquire_status(&f), AP_OK);
    EXPECT_EQ(ap_sem_release(&s, 2), AP_OK);
    ap_sem_fini(&s);
}
