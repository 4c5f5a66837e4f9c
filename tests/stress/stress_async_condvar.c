/*
 * tests/stress/stress_async_condvar.c -- stress_async.c again, with
 * ap_block_on parking on a pthread condition variable (AP_BLOCK_ON_CONDVAR)
 * instead of a Linux futex: the parker that non-Linux systems use, and one
 * whose mutex/condvar TSan models in full.
 */
#define AP_BLOCK_ON_CONDVAR 1
#define STRESS_ASYNC_NAME "stress_async_condvar"
#define STRESS_ASYNC_SHARE 0.5 /* the futex build does the full count */
#include "stress_async.c"
