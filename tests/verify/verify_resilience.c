/*
 * verify_resilience.c -- the composed call (resilience.h) under every
 * interleaving within the preemption bound, in SC and x86-TSO modes.
 *
 * Two composed calls X and Y share one bulkhead of 1 permit (waiting with
 * no limit) and one breaker (COUNT window 4, K = 1). T0 polls X once and
 * hands it over; T2 takes it and cancels it (a future moves between
 * threads, never polled by two at once: future.h rule 4); T1 drives Y to
 * completion. Each attempt wakes itself at its first poll and completes at
 * its second, so X, once admitted, holds its bulkhead permit and its
 * breaker permit while the others run. Y may queue behind X on the
 * bulkhead and is then woken only by X's cancel.
 *
 *   closed      the breaker is CLOSED: both calls are admitted by it
 *   half_open   the breaker is tripped in set-up and its open time is over:
 *               one probe slot (K = 1); the call that does not get it is
 *               refused (AP_REJECTED, rejected_by BREAKER) and gives its
 *               bulkhead permit back
 *
 * Theorems checked at the end of every execution: the bulkhead permit is
 * back (available == 1, nobody queued); every breaker permit was recorded
 * exactly once (allowed == successes + failures + ignored + canceled +
 * stale; allowed == attempts started; canceled == 1 exactly when X's
 * attempt had started); X ended AP_CANCELED and its attempt was cancelled
 * exactly once if it started; Y ended AP_OK, or AP_REJECTED by the breaker
 * in half_open; no half-open probe slot is held at the end (a fresh allow
 * succeeds); and no lost wakeup: Y is never left parked (the scheduler
 * fails the run when nobody can run and Y waits).
 *
 * Plain ints: the "threads" are coroutines on one OS thread.
 */
#include "vf.h"
#include "asyncpat/resilience.h"

static ap_resil_stats resil_stats_of(const ap_resil_fut *x)
{
    ap_resil_stats s;
    ap_resil_stats_get(x, &s);
    return s;
}

#define NOW UINT64_C(1000000) /* vf's constant clock */
#define OPEN_NS UINT64_C(1000)

typedef struct vatt {
    ap_future base;
    int polls;
    int *starts, *completions, *cancels;
} vatt;

typedef struct rst {
    ap_sem sem;
    ap_breaker b;
    uint64_t buf[AP_BREAKER_BYTES(4, 1) / sizeof(uint64_t)];
    ap_resil_fut x, y;
    vatt ax, ay;
    int starts[2], completions[2], cancels[2];
    int handed; /* T0 -> T2: X is no longer polled by T0 */
    bool half_open;
    bool y_queued; /* Y waited on the bulkhead while X's attempt held it */
} rst;

static bool vr_half_open;
static unsigned long vr_queued; /* executions in which Y queued behind X */

static ap_poll vatt_poll(ap_future *f, ap_cx *cx)
{
    vatt *a = (vatt *)(void *)f;
    VF_CHECK(*a->cancels == 0, "a cancelled attempt polled");
    if (++a->polls == 1) {
        ap_waker_wake(cx->waker); /* progress at once: come back */
        return AP_PENDING;
    }
    VF_CHECK(a->polls == 2, "an attempt polled after it completed");
    ++*a->completions;
    return AP_READY;
}

static void vatt_cancel(ap_future *f)
{
    vatt *a = (vatt *)(void *)f;
    VF_CHECK(*a->cancels == 0 && a->polls < 2, "attempt cancelled twice or after completing");
    ++*a->cancels;
}

static ap_future *v_start(void *ctx, uint32_t k, uint64_t now)
{
    vatt *a = ctx;
    (void)k, (void)now;
    VF_CHECK(++*a->starts == 1, "a second attempt (no retry configured)");
    a->base = (ap_future){vatt_poll, vatt_cancel};
    a->polls = 0;
    return &a->base;
}

static ap_status v_result(void *ctx, ap_future *f, int *app, uint64_t *hint)
{
    (void)ctx, (void)f, (void)hint;
    *app = 200;
    return AP_OK;
}

static void *vr_setup(void)
{
    rst *s = aligned_alloc(AP_CACHELINE, (sizeof(rst) + AP_CACHELINE - 1) / AP_CACHELINE *
                                             AP_CACHELINE);
    VF_CHECK(s != NULL);
    memset(s, 0, sizeof *s);
    s->half_open = vr_half_open;
    VF_CHECK(ap_sem_init(&s->sem, 1) == AP_OK);
    ap_breaker_desc bd = {.window_size = 4, .min_calls = 4, .open_ns = OPEN_NS,
                          .half_open_probes = 1, .probe_lease_ns = UINT64_C(1) << 40};
    VF_CHECK(ap_breaker_bytes(&bd) <= sizeof s->buf);
    VF_CHECK(ap_breaker_init(&s->b, s->buf, sizeof s->buf, &bd) == AP_OK);
    if (s->half_open) { /* trip at NOW - OPEN_NS: half-open from NOW on */
        for (int i = 0; i < 4; i++) {
            ap_breaker_permit p;
            VF_CHECK(ap_breaker_allow(&s->b, NOW - OPEN_NS, &p, NULL) == AP_OK);
            VF_CHECK(ap_breaker_record(&s->b, &p, AP_BREAKER_OUTCOME_FAILURE, 0, NOW - OPEN_NS) ==
                     AP_OK);
        }
        VF_CHECK(ap_breaker_state_at(&s->b, NOW - 1) == AP_BREAKER_STATE_OPEN);
    }
    ap_resil_desc d = {.bulkhead = &s->sem, .bulkhead_wait_ns = AP_DEADLINE_NONE,
                       .breaker = &s->b};
    vatt *a[2] = {&s->ax, &s->ay};
    ap_resil_fut *f[2] = {&s->x, &s->y};
    for (int i = 0; i < 2; i++) {
        a[i]->starts = &s->starts[i];
        a[i]->completions = &s->completions[i];
        a[i]->cancels = &s->cancels[i];
        ap_resil_op op = {.start = v_start, .result = v_result, .ctx = a[i]};
        VF_CHECK(ap_resil_fut_init(f[i], &d, &op, AP_DEADLINE_NONE) == AP_OK);
    }
    return s;
}

static void vr_thread(void *p, int id)
{
    rst *s = p;
    if (id == 0) { /* poll X once, then hand it to T2 */
        VF_CHECK(vf_poll(&s->x.base) == AP_PENDING || s->half_open);
        s->handed = 1;
        vf_hb_release(&s->handed); /* C11: the hand-off synchronises */
    } else if (id == 1) {
        vf_wait(&s->y.base);
    } else {
        while (!s->handed)
            vf_yield();
        vf_hb_acquire(&s->handed);
        ap_resil_fut_cancel(&s->x);
        ap_resil_fut_cancel(&s->x); /* idempotent */
    }
}

static void vr_invariant(void *p)
{
    rst *s = p;
    if (s->y.att.sem_waiting && s->starts[0] && !s->cancels[0])
        s->y_queued = true;
}

static void vr_check(void *p)
{
    rst *s = p;
    vr_queued += s->y_queued;
    ap_resil_result rx = ap_resil_fut_result(&s->x), ry = ap_resil_fut_result(&s->y);
    /* bulkhead */
    VF_CHECK(ap_sem_available(&s->sem) == 1, "bulkhead: %zu permits at the end",
             ap_sem_available(&s->sem));
    VF_CHECK(!ap_waitlist_has_waiters(&s->sem.wl), "a waiter left on the bulkhead");
    /* the calls */
    if (s->half_open && rx.status == AP_REJECTED) {
        VF_CHECK(rx.rejected_by == AP_RESIL_LAYER_BREAKER && s->starts[0] == 0);
    } else {
        VF_CHECK(rx.status == AP_CANCELED, "X ended %d", rx.status);
    }
    VF_CHECK(ry.status == AP_OK || (s->half_open && ry.status == AP_REJECTED &&
                                    ry.rejected_by == AP_RESIL_LAYER_BREAKER),
             "Y ended %d (by %d)", ry.status, ry.rejected_by);
    /* the status table: a refusal of the one attempt stays AP_REJECTED (the
     * retry alone would say AP_EXHAUSTED); nothing ends AP_NOT_READY */
    VF_CHECK(rx.stop != AP_RETRY_STOP_RUNNING && ry.stop != AP_RETRY_STOP_RUNNING &&
             rx.status != AP_NOT_READY && ry.status != AP_NOT_READY);
    if (ry.status == AP_REJECTED)
        VF_CHECK(ry.stop == AP_RETRY_STOP_EXHAUSTED && ry.last_error == AP_REJECTED &&
                 ry.app_error == 0, "Y refused: stop %d, last %d", ry.stop, ry.last_error);
    if (ry.status == AP_OK)
        VF_CHECK(ry.app_error == 200, "Y's app_error %d", ry.app_error);
    VF_CHECK(s->starts[0] == s->cancels[0] && s->completions[0] == 0,
             "X's attempt: %d started, %d cancelled", s->starts[0], s->cancels[0]);
    VF_CHECK(s->starts[1] == s->completions[1] && s->cancels[1] == 0);
    VF_CHECK((ry.status == AP_OK) == (s->starts[1] == 1));
    /* the breaker: one record per permit, CANCELED for X's started attempt */
    ap_breaker_stats st;
    ap_breaker_stats_get(&s->b, &st);
    uint64_t base = s->half_open ? 4 : 0;
    VF_CHECK(st.allowed == base + (uint64_t)(s->starts[0] + s->starts[1]),
             "allowed %llu, attempts started %d", (unsigned long long)st.allowed,
             s->starts[0] + s->starts[1]);
    VF_CHECK(st.allowed == st.successes + st.failures + st.ignored + st.canceled + st.stale,
             "breaker not conserved");
    VF_CHECK(st.canceled + st.stale >= (uint64_t)s->starts[0]);
    VF_CHECK(resil_stats_of(&s->x).breaker_canceled == (uint64_t)s->starts[0]);
    VF_CHECK(st.successes + st.stale >= (uint64_t)s->starts[1]);
    /* no probe slot held: a fresh call is admitted */
    ap_breaker_state bs = ap_breaker_state_at(&s->b, NOW);
    if (bs == AP_BREAKER_STATE_HALF_OPEN)
        VF_CHECK(s->b.inflight == 0, "a half-open probe slot leaked");
    ap_breaker_permit fresh;
    VF_CHECK(ap_breaker_allow(&s->b, NOW + 2 * OPEN_NS, &fresh, NULL) == AP_OK,
             "a fresh call refused in state %d", (int)bs);
}

static void vr_teardown(void *p)
{
    rst *s = p;
    ap_breaker_fini(&s->b);
    free(s);
}

static unsigned long run(const char *name, bool tso, bool half_open)
{
    vf_scenario sc = {.name = name, .nthreads = 3, .tso = tso, .bound = 3,
                      .setup = vr_setup, .thread = vr_thread, .invariant = vr_invariant,
                      .check = vr_check,
                      .teardown = vr_teardown};
    vr_half_open = half_open;
    vr_queued = 0;
    unsigned long n = vf_explore(&sc);
    if (n && !getenv("VF_REPLAY") && vr_queued == 0) {
        fprintf(stderr, "FAIL %s: no execution had Y queued behind X's permit\n", name);
        exit(1);
    }
    return n;
}

int main(void)
{
    unsigned long total = 0;
    total += run("resil_cancel_closed", false, false);
    total += run("resil_cancel_closed_tso", true, false);
    total += run("resil_cancel_half_open", false, true);
    total += run("resil_cancel_half_open_tso", true, true);
    printf("verify_resilience: %lu executions\n", total);
    return 0;
}
