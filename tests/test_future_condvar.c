/*
 * tests/test_future_condvar.c -- every test of test_future.c again, with
 * ap_block_on parking on a condition variable instead of a futex
 * (suite "future_condvar").
 */
#define AP_BLOCK_ON_CONDVAR 1
#define FUTURE_SUITE future_condvar
#include "test_future.c"

#ifdef AP__PARK_FUTEX
#error "AP_BLOCK_ON_CONDVAR did not select the condition-variable parker"
#endif
