// tests/cpp/queues.cpp -- the queue family from C++: ap_spsc and ap_mpmc
// with std::thread producers and consumers; every item pushed with AP_OK is
// popped exactly once, in each producer's order per consumer.
#include "cpp_test.hpp"

static void spsc_scenario()
{
    const uint64_t n = scale(20000);
    std::vector<unsigned char> buf(AP_SPSC_BYTES(16, sizeof(uint64_t)));
    ap_spsc q;
    CHECK_OK(ap_spsc_init(&q, buf.data(), buf.size(), 16, sizeof(uint64_t)));
    ledger led(1, n);
    std::thread prod([&] {
        for (uint64_t s = 0; s < n; s++) {
            uint64_t it = ledger::item(0, s);
            ap_status st;
            while ((st = ap_spsc_try_push(&q, &it)) == AP_FULL)
                std::this_thread::yield();
            CHECK_OK(st);
        }
        ap_spsc_close(&q);
    });
    uint64_t next = 0;
    for (;;) {
        uint64_t it = ~0ull;
        ap_status st = ap_spsc_pop_wait(&q, &it, AP_DEADLINE_NONE);
        if (st == AP_CLOSED)
            break;
        CHECK_OK(st);
        CHECK(it == ledger::item(0, next)); // FIFO
        next++;
        led.take(it);
    }
    prod.join();
    led.done();
    CHECK(ap_spsc_len(&q) == 0);
    ap_spsc_fini(&q);
}

static void mpmc_scenario()
{
    const unsigned P = 4, C = 4;
    const uint64_t n = scale(5000);
    ap_mpmc *q;
    CHECK_OK(ap_mpmc_create(&q, 8, sizeof(uint64_t), NULL));
    ledger led(P, n);
    std::atomic<unsigned> producing{P};
    std::vector<std::thread> ts;
    for (unsigned p = 0; p < P; p++)
        ts.emplace_back([&, p] {
            for (uint64_t s = 0; s < n; s++) {
                uint64_t it = ledger::item(p, s);
                CHECK_OK(ap_mpmc_push_wait(q, &it, AP_DEADLINE_NONE));
            }
            if (producing.fetch_sub(1) == 1)
                ap_mpmc_close(q);
        });
    for (unsigned c = 0; c < C; c++)
        ts.emplace_back([&] {
            std::vector<uint64_t> last(P, UINT64_MAX);
            for (;;) {
                uint64_t it;
                ap_status st = ap_mpmc_pop_wait(q, &it, AP_DEADLINE_NONE);
                if (st == AP_CLOSED)
                    break;
                CHECK_OK(st);
                led.take(it);
                unsigned p = (unsigned)(it >> 32);
                uint64_t s = it & 0xffffffffu;
                CHECK(last[p] == UINT64_MAX || s > last[p]); // per-producer order
                last[p] = s;
            }
        });
    for (auto &t : ts)
        t.join();
    led.done();
    CHECK(ap_mpmc_len(q) == 0);
    ap_mpmc_destroy(q);
}

int main()
{
    spsc_scenario();
    mpmc_scenario();
    std::puts("queues: ok (spsc, mpmc)");
    return 0;
}
