/* tests/cpp/mixed.h -- a C API over asyncpat types, as a project that mixes
 * C and C++ would declare it; included by C and by C++ (inside extern "C"). */
#ifndef ASYNCPAT_TESTS_MIXED_H
#define ASYNCPAT_TESTS_MIXED_H
#ifdef __cplusplus
extern "C" {
#endif
#include "asyncpat.h"
void mixed_c_produce(ap_mpmc *q, ap_sem *s, unsigned id, uint64_t n);
size_t mixed_c_sizeof_mpmc(void);
size_t mixed_c_offsetof_mpmc_head(void);
size_t mixed_c_sizeof_sem(void);
#ifdef __cplusplus
}
#endif
#endif
