// tests/cpp/mixed.cpp -- one program, two languages: C++ creates an MPMC
// queue and a semaphore, C producers (mixed_c.c, built as C11) push through
// them, C++ consumers pop. Every item arrives exactly once and the
// semaphore's permits are conserved; both languages see one layout.
#include "mixed.h"
#include "cpp_test.hpp"

int main()
{
    CHECK(mixed_c_sizeof_mpmc() == sizeof(ap_mpmc));
    CHECK(mixed_c_offsetof_mpmc_head() == offsetof(ap_mpmc, head));
    CHECK(mixed_c_sizeof_sem() == sizeof(ap_sem));
    const unsigned P = 3, C = 2;
    const uint64_t n = scale(4000);
    ap_mpmc *q;
    CHECK_OK(ap_mpmc_create(&q, 8, sizeof(uint64_t), NULL));
    static ap_sem s = AP_SEM_INITIALIZER(2);
    ledger led(P, n);
    std::vector<std::thread> prods, cons;
    for (unsigned p = 0; p < P; p++)
        prods.emplace_back(mixed_c_produce, q, &s, p, n);
    for (unsigned c = 0; c < C; c++)
        cons.emplace_back([&] {
            uint64_t it;
            while (ap_mpmc_pop_wait(q, &it, AP_DEADLINE_NONE) == AP_OK)
                led.take(it);
        });
    for (auto &t : prods)
        t.join();
    ap_mpmc_close(q);
    for (auto &t : cons)
        t.join();
    led.done();
    CHECK(ap_sem_available(&s) == 2);
    ap_mpmc_destroy(q);
    std::puts("mixed: ok (C producers, C++ consumers)");
    return 0;
}
