// tests/cpp/concurrency.cpp -- concurrency control from C++: ap_sem,
// ap_tb and ap_bp under std::thread contention. Permits are conserved and
// never exceeded; a bucket admits exactly its burst at one instant; every
// element given to a DROP_OLDEST buffer comes out exactly once, popped or
// evicted.
#include "cpp_test.hpp"

static void semaphore_scenario()
{
    const unsigned T = 6;
    const uint64_t n = scale(2000);
    ap_sem s;
    CHECK_OK(ap_sem_init(&s, 3));
    std::atomic<int> inside{0};
    std::atomic<uint64_t> done{0};
    run_threads(T, [&](unsigned id) {
        for (uint64_t i = 0; i < n; i++) {
            size_t k = 1 + (id + i) % 2;
            CHECK_OK(ap_sem_acquire_wait(&s, k, AP_DEADLINE_NONE));
            int now = inside.fetch_add((int)k) + (int)k;
            CHECK(now <= 3); // never more than 3 permits out
            inside.fetch_sub((int)k);
            CHECK_OK(ap_sem_release(&s, k));
            done.fetch_add(1, std::memory_order_relaxed);
        }
    });
    CHECK(done.load() == T * n);
    CHECK(ap_sem_available(&s) == 3); // conserved
    CHECK(ap_sem_release(&s, 1) != AP_OK); // above max: refused, nothing changes
    CHECK(ap_sem_available(&s) == 3);
    ap_sem_fini(&s);
}

static void token_bucket_scenario()
{
    const unsigned T = 4;
    ap_tb tb;
    ap_tb_desc d = ap_tb_desc();
    d.n = 100;
    d.period_ns = AP_NS_PER_SEC;
    d.burst = 50;
    CHECK_OK(ap_tb_init(&tb, &d));
    const uint64_t t0 = 1000 * AP_NS_PER_SEC;
    for (uint64_t round = 0; round < 3; round++) {
        // at one instant exactly the burst is admitted, however many ask
        const uint64_t now = t0 + round * 10 * AP_NS_PER_SEC;
        std::atomic<uint64_t> ok{0}, refused{0};
        run_threads(T, [&](unsigned) {
            for (int i = 0; i < 40; i++) {
                uint64_t retry_at = 0;
                ap_status st = ap_tb_try_acquire(&tb, 1, now, &retry_at);
                if (st == AP_OK) {
                    ok.fetch_add(1);
                } else {
                    CHECK(retry_at > now);
                    refused.fetch_add(1);
                }
            }
        });
        CHECK(ok.load() == 50);
        CHECK(refused.load() == T * 40 - 50);
    }
    ap_tb_fini(&tb);
}

static void backpressure_scenario()
{
    const unsigned P = 3;
    const uint64_t n = scale(4000);
    ap_bp *bp;
    ap_bp_desc d = ap_bp_desc();
    d.capacity = 16;
    d.elem_size = sizeof(uint64_t);
    d.strategy = AP_BP_STRATEGY_DROP_OLDEST;
    CHECK_OK(ap_bp_create(&bp, &d, NULL));
    ledger led(P, n);
    std::atomic<uint64_t> evicted{0};
    std::atomic<unsigned> producing{P};
    std::vector<std::thread> ts;
    for (unsigned p = 0; p < P; p++)
        ts.emplace_back([&, p] {
            for (uint64_t s = 0; s < n; s++) {
                uint64_t it = ledger::item(p, s), old = ~0ull;
                ap_status st = ap_bp_push(bp, &it, ap_now_ns(), &old, NULL);
                if (st == AP_DROPPED) {
                    led.take(old); // the evicted element is ours again
                    evicted.fetch_add(1, std::memory_order_relaxed);
                } else {
                    CHECK_OK(st);
                }
            }
            if (producing.fetch_sub(1) == 1)
                ap_bp_close(bp);
        });
    ts.emplace_back([&] {
        for (;;) {
            uint64_t it;
            ap_status st = ap_bp_pop_wait(bp, &it, AP_DEADLINE_NONE);
            if (st == AP_CLOSED)
                break;
            CHECK_OK(st);
            led.take(it);
        }
    });
    for (auto &t : ts)
        t.join();
    led.done();
    ap_bp_stats bs;
    ap_bp_stats_get(bp, &bs);
    CHECK(bs.popped + evicted.load() == P * n);
    ap_bp_destroy(bp);
}

int main()
{
    semaphore_scenario();
    token_bucket_scenario();
    backpressure_scenario();
    std::puts("concurrency: ok (semaphore, token_bucket, backpressure)");
    return 0;
}
