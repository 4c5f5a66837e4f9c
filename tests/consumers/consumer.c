/*
 * tests/consumers/consumer.c -- the program every consumer in tests/build.sh
 * builds (as main.c), through each build system.
 *
 * <stdio.h> comes BEFORE asyncpat.h, compiled as strict ISO C11 with
 * warnings as errors: asyncpat must not need a feature-test macro from the
 * build (glibc hides clock_gettime then; asyncpat/time.h copes). Then real
 * use: a producer thread pushes 1..N through a small ap_mpmc
 * (so it waits for room), main pops until AP_CLOSED, and every value must
 * arrive exactly once (a tally per value, plus count and sum). Prints
 * "consumer ok <version>" and exits 0, else says what went wrong and exits 1.
 */
#include <stdio.h>
#include "asyncpat.h"
#include <pthread.h>

enum { N = 100000, CAP = 8 };
static ap_mpmc *q;
static unsigned char seen[N + 1];

static void *produce(void *arg)
{
    (void)arg;
    for (unsigned v = 1; v <= N; v++)
        if (ap_mpmc_push_wait(q, &v, AP_DEADLINE_NONE) != AP_OK)
            return (void *)1;
    ap_mpmc_close(q);
    return NULL;
}

int main(void)
{
    if (ap_mpmc_create(&q, CAP, sizeof(unsigned), NULL) != AP_OK) {
        fprintf(stderr, "consumer: ap_mpmc_create failed\n");
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, produce, NULL) != 0) {
        fprintf(stderr, "consumer: pthread_create failed\n");
        return 1;
    }
    unsigned v;
    unsigned long long count = 0, sum = 0;
    ap_status st;
    while ((st = ap_mpmc_pop_wait(q, &v, AP_DEADLINE_NONE)) == AP_OK) {
        if (v < 1 || v > N || seen[v]++) {
            fprintf(stderr, "consumer: value %u out of range or seen twice\n", v);
            return 1;
        }
        count++, sum += v;
    }
    void *res;
    pthread_join(th, &res);
    ap_mpmc_destroy(q);
    if (st != AP_CLOSED || res != NULL || count != N ||
        sum != (unsigned long long)N * (N + 1) / 2) {
        fprintf(stderr, "consumer: status %d, producer %p, %llu values, sum %llu\n",
                (int)st, res, count, sum);
        return 1;
    }
    printf("consumer ok %s\n", AP_VERSION_STRING);
    return 0;
}
