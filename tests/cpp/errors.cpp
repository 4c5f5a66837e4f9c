// tests/cpp/errors.cpp -- error handling from C++: ap_retry_call with a
// shared budget, ap_breaker allow/record, ap_timeout around a queue pop,
// each driven by std::thread workers. Every attempt is counted once, every
// permit is reported once and the breaker's books balance, and a pop that
// timed out never swallows an item.
#include "cpp_test.hpp"

#include <chrono>

struct flaky {
    uint32_t calls, fail_first;
};

static ap_status flaky_call(void *ctx, int *app_error)
{
    flaky *f = static_cast<flaky *>(ctx);
    if (++f->calls <= f->fail_first) {
        *app_error = 503;
        return AP_TIMEDOUT;
    }
    return AP_OK;
}

static void retry_scenario()
{
    const unsigned T = 4;
    const uint64_t n = scale(300);
    ap_retry_budget budget;
    ap_retry_budget_desc bd = ap_retry_budget_desc();
    CHECK_OK(ap_retry_budget_init(&budget, &bd));
    std::atomic<uint64_t> ok{0}, attempts{0}, calls{0};
    run_threads(T, [&](unsigned id) {
        ap_rng rng;
        ap_rng_seed(&rng, 42 + id);
        ap_retry_desc d = ap_retry_desc();
        d.max_attempts = 4;
        d.initial_ns = 1000;
        d.cap_ns = 10000;
        for (uint64_t i = 0; i < n; i++) {
            flaky f = {0, (uint32_t)((id + i) % 3)};
            ap_retry_result r;
            ap_status st = ap_retry_call(&d, &rng, &budget, flaky_call, &f, AP_DEADLINE_NONE, &r);
            CHECK(r.attempts == f.calls); // every attempt ran once
            CHECK(r.status == st);
            if (st == AP_OK) {
                CHECK(f.calls == f.fail_first + 1);
                ok.fetch_add(1);
            } else {
                CHECK(st == AP_EXHAUSTED); // the budget said no
                CHECK(f.calls <= f.fail_first && r.last_error == AP_TIMEDOUT && r.app_error == 503);
            }
            attempts.fetch_add(r.attempts);
            calls.fetch_add(f.calls);
        }
    });
    CHECK(attempts.load() == calls.load());
    CHECK(ok.load() >= T * n / 3); // the calls that never fail always succeed
}

static void breaker_scenario()
{
    const unsigned T = 4;
    const uint64_t n = scale(3000);
    ap_breaker *b;
    ap_breaker_desc d = ap_breaker_desc();
    d.window_size = 20;
    d.open_ns = 20000;
    d.half_open_probes = 2;
    CHECK_OK(ap_breaker_create(&b, &d, NULL));
    std::atomic<uint64_t> allowed{0}, rejected{0};
    run_threads(T, [&](unsigned id) {
        uint64_t x = 0x9e3779b97f4a7c15ull * (id + 1);
        for (uint64_t i = 0; i < n; i++) {
            ap_breaker_permit p;
            uint64_t retry_at = 0, t0 = ap_now_ns();
            ap_status st = ap_breaker_allow(b, t0, &p, &retry_at);
            if (st != AP_OK) {
                CHECK(st == AP_REJECTED && retry_at > 0);
                rejected.fetch_add(1);
                continue;
            }
            allowed.fetch_add(1);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ap_breaker_outcome o = (x % 4 == 0) ? AP_BREAKER_OUTCOME_FAILURE
                                                : AP_BREAKER_OUTCOME_SUCCESS;
            CHECK_OK(ap_breaker_record(b, &p, o, 0, ap_now_ns()));
            if (i % 97 == 0) // a permit reported twice is refused
                CHECK(ap_breaker_record(b, &p, o, 0, ap_now_ns()) != AP_OK);
        }
    });
    ap_breaker_stats s;
    ap_breaker_stats_get(b, &s);
    CHECK(s.allowed == allowed.load());
    CHECK(s.rejected == rejected.load());
    CHECK(s.allowed == s.successes + s.failures + s.ignored + s.canceled + s.stale);
    ap_breaker_destroy(b);
}

static void timeout_scenario()
{
    const uint64_t n = scale(400);
    ap_mpmc *q;
    CHECK_OK(ap_mpmc_create(&q, 4, sizeof(uint64_t), NULL));
    ledger led(1, n);
    std::thread prod([&] {
        for (uint64_t s = 0; s < n; s++) {
            uint64_t it = ledger::item(0, s);
            CHECK_OK(ap_mpmc_push_wait(q, &it, AP_DEADLINE_NONE));
            if (s % 40 == 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    });
    uint64_t got = 0, timeouts = 0;
    while (got < n) {
        uint64_t it = ~0ull;
        ap_mpmc_pop_fut pop;
        ap_timeout t;
        ap_mpmc_pop_fut_init(&pop, q, &it);
        ap_timeout_init(&t, &pop.base, ap_deadline_after(ap_now_ns(), 200000));
        ap_block_on(&t.base);
        ap_status st = ap_timeout_status(&t);
        if (st == AP_OK) {
            CHECK_OK(ap_mpmc_pop_status(&pop));
            led.take(it);
            got++;
        } else {
            CHECK(st == AP_TIMEDOUT);
            CHECK(it == ~0ull); // a cancelled pop wrote nothing
            timeouts++;
        }
    }
    prod.join();
    led.done();
    CHECK(ap_mpmc_len(q) == 0);
    CHECK(timeouts > 0); // the producer's pauses were seen
    ap_mpmc_destroy(q);
}

int main()
{
    retry_scenario();
    breaker_scenario();
    timeout_scenario();
    std::puts("errors: ok (retry, circuit_breaker, timeout)");
    return 0;
}
