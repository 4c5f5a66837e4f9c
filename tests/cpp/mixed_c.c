/* tests/cpp/mixed_c.c -- the C half of tests/cpp/mixed.cpp: objects made by
 * C++ code are used by C code in the same program (one layout, one set of
 * memory orders across the boundary). */
#include <stdlib.h> /* system headers first, under strict -std=c11: */
#include <time.h>   /* asyncpat must not depend on coming first */
#include <pthread.h>

#include "asyncpat.h"

#include "mixed.h"

void mixed_c_produce(ap_mpmc *q, ap_sem *s, unsigned id, uint64_t n)
{
    for (uint64_t seq = 0; seq < n; seq++) {
        uint64_t it = (uint64_t)id << 32 | seq;
        if (ap_sem_acquire_wait(s, 1, AP_DEADLINE_NONE) != AP_OK)
            abort();
        if (ap_mpmc_push_wait(q, &it, AP_DEADLINE_NONE) != AP_OK)
            abort();
        if (ap_sem_release(s, 1) != AP_OK)
            abort();
    }
}

size_t mixed_c_sizeof_mpmc(void) { return sizeof(ap_mpmc); }
size_t mixed_c_offsetof_mpmc_head(void) { return offsetof(ap_mpmc, head); }
size_t mixed_c_sizeof_sem(void) { return sizeof(ap_sem); }
