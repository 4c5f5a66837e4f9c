/*
 * examples/resilient_client.c -- one ap_resil_fut per call: limiter (50/s) ->
 * bulkhead (8) -> breaker -> 150 ms timeout(attempt), inside a retry with a
 * budget. A flaky dependency is called every 100 ms of simulated time (a
 * fake clock: 40 s in a blink); from 10 s to 20 s it fails (HTTP 503) or
 * hangs. Per second: calls ok / failed / rejected by the breaker, and its
 * state. Exits 1 unless the breaker opened in the outage and closed after.
 */
#include "asyncpat.h" /* first: under -std=c11 it enables POSIX */
#include <stdio.h>
#define MS AP_NS_PER_MS
static ap_rng rng;

/* One attempt: completes at done_at with HTTP status `http`, or hangs. */
typedef struct { ap_future base; uint64_t done_at; int http; bool hangs; } attempt;

static ap_poll attempt_poll(ap_future *f, ap_cx *cx)
{
    attempt *a = (attempt *)(void *)f;
    if (!a->hangs && cx->now >= a->done_at) return AP_READY;
    if (!a->hangs) ap_cx_wake_at(cx, a->done_at); /* a hang: only the timeout ends it */
    return AP_PENDING;
}
static ap_future *start(void *ctx, uint32_t k, uint64_t now)
{
    attempt *a = ctx; (void)k;
    bool down = now >= 10000 * MS && now < 20000 * MS; /* the outage */
    uint64_t roll = ap_rng_below(&rng, 100);
    *a = (attempt){{attempt_poll, NULL}, now + (20 + roll) * MS,
                   (down || roll < 3) ? 503 : 200, down && roll < 30};
    return &a->base;
}
static ap_status result(void *ctx, ap_future *f, int *app_error, uint64_t *hint)
{
    (void)ctx, (void)hint;
    *app_error = ((attempt *)(void *)f)->http; /* travels beside the status */
    return *app_error == 200 ? AP_OK : AP_REJECTED; /* 503: the server shed it */
}
static bool transient(ap_status e, void *c) { (void)c; return e == AP_REJECTED || e == AP_TIMEDOUT; }

int main(void)
{
    static const char *names[] = {"closed", "OPEN", "half-open", "forced-open", "disabled"};
    ap_breaker *br; ap_tb tb; ap_sem bulk; ap_retry_budget budget; attempt att;
    int opened = 0, closed_after = 0; ap_rng_seed(&rng, 42);
    if (ap_breaker_create(&br, &(ap_breaker_desc){.window_size = 20, .open_ns = 2000 * MS,
                                             .half_open_probes = 3}, NULL) != AP_OK ||
        ap_tb_init(&tb, &(ap_tb_desc){.n = 50, .burst = 50}) || ap_sem_init(&bulk, 8) ||
        ap_retry_budget_init(&budget, &(ap_retry_budget_desc){0}))
        return 1;
    ap_retry_desc rd = {.max_attempts = 3, .initial_ns = 20 * MS, .cap_ns = 200 * MS,
                        .retryable = transient};
    ap_resil_desc d = {.limiter = &tb, .bulkhead = &bulk, .breaker = br, .budget = &budget,
                       .attempt_timeout_ns = 150 * MS, .retry = &rd, .rng = &rng};
    ap_resil_op op = {.start = start, .result = result, .ctx = &att};
    uint64_t now = 0;
    for (int sec = 0; sec < 40; sec++) {
        int ok = 0, failed = 0, rejected = 0;
        for (; now < (uint64_t)(sec + 1) * 1000 * MS; now += 100 * MS) {
            ap_resil_fut call;
            if (ap_resil_fut_init(&call, &d, &op, now + 900 * MS) != AP_OK) return 1;
            ap_cx cx = {AP_WAKER_NONE, now, AP_DEADLINE_NONE};
            while (ap_resil_fut_poll(&call, &cx) == AP_PENDING) /* the fake clock jumps */
                cx = (ap_cx){AP_WAKER_NONE, cx.deadline, AP_DEADLINE_NONE};
            ap_resil_result r = ap_resil_fut_result(&call); /* r.app_error: last HTTP status */
            /* AP_EXHAUSTED (3 failures: 503s or timeouts), AP_REJECTED (the
             * breaker refused the last attempt), AP_TIMEDOUT (900 ms passed) */
            if (r.status == AP_OK) ok++;
            else if (r.rejected_by == AP_RESIL_LAYER_BREAKER) rejected++; else failed++;
        }
        ap_breaker_state st = ap_breaker_state_at(br, now);
        opened |= sec >= 10 && sec < 20 && st == AP_BREAKER_STATE_OPEN;
        closed_after = sec >= 25 && st == AP_BREAKER_STATE_CLOSED;
        printf("t=%2ds  ok %2d  failed %2d  rejected %2d  breaker %s\n", sec + 1, ok, failed,
               rejected, names[st]);
    }
    ap_breaker_destroy(br); bool good = opened && closed_after;
    puts(good ? "breaker opened in the outage and recovered"
              : "UNEXPECTED: breaker did not open and recover");
    return good ? 0 : 1;
}
