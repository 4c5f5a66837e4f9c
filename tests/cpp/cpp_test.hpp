// tests/cpp/cpp_test.hpp -- the shared bits of the C++ family tests
// (tests/cpp/*.cpp, built and run by tests/cpp.sh): a CHECK that exits,
// an identity ledger and a start gate for std::thread workers. Only C++
// code of the test suite includes it; the library is included as a C++
// user would include it.
#ifndef ASYNCPAT_TESTS_CPP_TEST_HPP
#define ASYNCPAT_TESTS_CPP_TEST_HPP

#include "asyncpat.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#define CHECK(c)                                                                    \
    do {                                                                            \
        if (!(c)) {                                                                 \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
            std::exit(1);                                                           \
        }                                                                           \
    } while (0)

#define CHECK_OK(e) CHECK((e) == AP_OK)

// every item is (producer << 32 | seq); take() counts its sightings, done()
// says every pushed item was seen exactly once and nothing else was seen
struct ledger {
    unsigned producers;
    uint64_t per;
    std::unique_ptr<std::atomic<uint32_t>[]> seen;
    ledger(unsigned p, uint64_t n)
        : producers(p), per(n), seen(new std::atomic<uint32_t>[p * n]) {
        for (uint64_t i = 0; i < p * n; i++)
            seen[i].store(0, std::memory_order_relaxed);
    }
    static uint64_t item(unsigned producer, uint64_t seq) {
        return (uint64_t)producer << 32 | seq;
    }
    void take(uint64_t it) {
        unsigned p = (unsigned)(it >> 32);
        uint64_t s = it & 0xffffffffu;
        CHECK(p < producers && s < per); // never invented
        CHECK(seen[p * per + s].fetch_add(1, std::memory_order_relaxed) == 0); // never twice
    }
    uint64_t count() const {
        uint64_t n = 0;
        for (uint64_t i = 0; i < producers * per; i++)
            n += seen[i].load(std::memory_order_relaxed);
        return n;
    }
    void done() const { // every one exactly once
        for (uint64_t i = 0; i < producers * per; i++)
            CHECK(seen[i].load(std::memory_order_relaxed) == 1);
    }
};

template <class F> static void run_threads(unsigned n, F f) {
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < n; i++)
        ts.emplace_back(f, i);
    for (auto &t : ts)
        t.join();
}

static inline uint64_t scale(uint64_t n) {
    const char *s = std::getenv("CPP_SCALE");
    double f = s ? std::atof(s) : 1.0;
    uint64_t r = (uint64_t)((double)n * f);
    return r ? r : 1;
}

#endif
