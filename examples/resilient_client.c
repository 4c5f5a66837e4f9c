/*
 * examples/resilient_client.c -- timeout + retry (with a budget) + breaker
 *
 * A client calls a flaky dependency once every 100 ms of simulated time
 * (a fake clock: 40 s run in a blink). Each attempt is bounded by a 150 ms
 * timeout, failed calls are retried with jittered backoff under a shared
 * retry budget, and a circuit breaker fails fast while the dependency is
 * down. The dependency is healthy, then from 10 s to 20 s it fails or hangs,
 * then recovers. Per second it prints: calls ok / failed / rejected by the
 * breaker, and the breaker's state, so you see it open and recover. Exits 1
 * if the breaker did not open during the outage or did not close after it.
 */
#include "asyncpat.h" /* first: under -std=c11 it enables POSIX */
#include <stdio.h>

#define MS AP_NS_PER_MS
static ap_rng rng;

/* One attempt: completes at done_at with `outcome`, or hangs forever. */
typedef struct { ap_future base; uint64_t done_at; ap_status outcome; bool hangs; } attempt;
typedef struct { attempt a; ap_timeout t; } attempt_box; /* timeout(attempt) */

static ap_poll attempt_poll(ap_future *f, ap_cx *cx)
{
    attempt *a = (attempt *)(void *)f;
    if (!a->hangs && cx->now >= a->done_at) return AP_READY;
    if (!a->hangs) ap_cx_wake_at(cx, a->done_at);
    return AP_PENDING; /* a hang: only the timeout ends it */
}

static ap_future *start(void *ctx, void *storage, uint32_t k, uint64_t now)
{
    (void)ctx, (void)k;
    attempt_box *b = storage;
    bool down = now >= 10000 * MS && now < 20000 * MS; /* the outage */
    uint64_t roll = ap_rng_below(&rng, 100);
    b->a = (attempt){{attempt_poll, NULL}, now + (20 + roll) * MS,
                     (down || roll < 3) ? AP_REJECTED : AP_OK, down && roll < 30};
    ap_timeout_init_after(&b->t, &b->a.base, now, 150 * MS);
    return &b->t.base;
}

static ap_status result(void *ctx, ap_future *f, uint64_t *hint)
{
    (void)ctx, (void)hint;
    ap_timeout *t = (ap_timeout *)(void *)f;
    return ap_timeout_status(t) == AP_OK ? AP_CONTAINER_OF(t, attempt_box, t)->a.outcome
                                         : AP_TIMEDOUT;
}

int main(void)
{
    static const char *names[] = {"closed", "OPEN", "half-open", "forced-open", "disabled"};
    ap_breaker *br;
    ap_retry_budget budget;
    ap_retry_desc rd = {.max_attempts = 3, .initial_ns = 20 * MS, .cap_ns = 200 * MS};
    attempt_box box;
    ap_retry_op op = {.start = start, .result = result, .storage = &box};
    int opened = 0, closed_after = 0;
    ap_rng_seed(&rng, 42);
    if (ap_cb_create(&br, &(ap_breaker_desc){.window_size = 20, .open_ns = 2000 * MS,
                                             .half_open_probes = 3}, NULL) != AP_OK ||
        ap_retry_budget_init(&budget, &(ap_retry_budget_desc){0}) != AP_OK)
        return 1;
    uint64_t now = 0;
    for (int sec = 0; sec < 40; sec++) {
        int ok = 0, failed = 0, rejected = 0;
        for (; now < (uint64_t)(sec + 1) * 1000 * MS; now += 100 * MS) {
            ap_cb_permit p;
            uint64_t retry_at, t0 = now;
            if (ap_cb_allow(br, now, &p, &retry_at) != AP_OK) { rejected++; continue; }
            ap_retry_fut f;
            if (ap_retry_fut_init(&f, &rd, &rng, &budget, &op, now + 900 * MS) != AP_OK) return 1;
            ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
            while (ap_retry_fut_poll(&f, &cx) == AP_PENDING) /* the fake clock jumps */
                cx = (ap_cx){AP_WAKER_NONE, cx.deadline, AP_DEADLINE_NONE};
            bool good = ap_retry_fut_status(&f) == AP_OK;
            ok += good, failed += !good;
            if (ap_cb_record(br, &p, good ? AP_BREAKER_OUTCOME_SUCCESS : AP_BREAKER_OUTCOME_FAILURE,
                             cx.now - t0, cx.now) != AP_OK)
                return 1;
        }
        ap_breaker_state st = ap_cb_state(br, now);
        opened |= sec >= 10 && sec < 20 && st == AP_BREAKER_STATE_OPEN;
        closed_after = sec >= 25 && st == AP_BREAKER_STATE_CLOSED;
        printf("t=%2ds  ok %2d  failed %2d  rejected %2d  breaker %s\n", sec + 1, ok, failed,
               rejected, names[st]);
    }
    ap_cb_destroy(br);
    printf("%s\n", opened && closed_after ? "breaker opened in the outage and recovered"
                                          : "UNEXPECTED: breaker did not open and recover");
    return opened && closed_after ? 0 : 1;
}
