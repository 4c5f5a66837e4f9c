// tests/consumers/consumer.cpp -- the C++ program tests/build.sh builds (as
// main.cpp) through CMake (a C++-only project) and meson: asyncpat from C++17,
// a std::thread producer pushing 1..N through an ap_mpmc, every value
// arriving once. Prints "consumer ok <version>" and exits 0, else exits 1.
#include <cstdio>
#include <thread>
#include <vector>
#include "asyncpat.h"

int main()
{
    constexpr unsigned N = 100000;
    ap_mpmc *q = nullptr;
    if (ap_mpmc_create(&q, 8, sizeof(unsigned), nullptr) != AP_OK)
        return 1;
    bool pushed = true;
    std::thread producer([&] {
        for (unsigned v = 1; v <= N; v++)
            if (ap_mpmc_push_wait(q, &v, AP_DEADLINE_NONE) != AP_OK)
                pushed = false;
        ap_mpmc_close(q);
    });
    std::vector<unsigned char> seen(N + 1);
    unsigned v, count = 0;
    ap_status st;
    while ((st = ap_mpmc_pop_wait(q, &v, AP_DEADLINE_NONE)) == AP_OK) {
        if (v < 1 || v > N || seen[v]++)
            return std::fprintf(stderr, "consumer: value %u twice or out of range\n", v), 1;
        count++;
    }
    producer.join();
    ap_mpmc_destroy(q);
    if (st != AP_CLOSED || !pushed || count != N)
        return std::fprintf(stderr, "consumer: status %d, %u values\n", int(st), count), 1;
    std::printf("consumer ok %s\n", AP_VERSION_STRING);
    return 0;
}
