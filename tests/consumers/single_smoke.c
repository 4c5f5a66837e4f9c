/*
 * tests/consumers/single_smoke.c -- the single-file header (make single) alone:
 * one smoke test per family of patterns, each using the real API and
 * checking its answer. Built by tests/build.sh with -std=c11 -Wall -Wextra
 * -Wpedantic -Werror and -I pointing only at the generated header's folder,
 * under gcc and clang. Prints "<family> ok" per family, exits 1 at the first
 * wrong answer (saying which).
 */
#include "asyncpat_single.h"
#include <stdio.h>

#define CHECK(c)                                                                        \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "single_smoke: %s:%d: %s failed\n", __func__, __LINE__, #c); \
            return 1;                                                                   \
        }                                                                               \
    } while (0)

/* queues: spsc FIFO across wrap-around; mpmc exact capacity, close drains */
static int queues(void)
{
    static unsigned char buf[AP_SPSC_BYTES(16, sizeof(int))];
    ap_spsc s;
    CHECK(ap_spsc_init(&s, buf, sizeof buf, 16, sizeof(int)) == AP_OK);
    int next_in = 0, next_out = 0, v;
    while (next_out < 1000) {
        while (next_in < 1000 && ap_spsc_try_push(&s, &next_in) == AP_OK)
            next_in++;
        CHECK(next_in - next_out <= 16);
        while (ap_spsc_try_pop(&s, &v) == AP_OK)
            CHECK(v == next_out++);
    }
    ap_mpmc *q;
    CHECK(ap_mpmc_create(&q, 5, sizeof(int), NULL) == AP_OK);
    int n = 0;
    while (ap_mpmc_try_push(q, &n) == AP_OK)
        n++;
    CHECK(n == 5);
    ap_mpmc_close(q);
    CHECK(ap_mpmc_try_push(q, &n) == AP_CLOSED);
    for (int i = 0; i < 5; i++)
        CHECK(ap_mpmc_try_pop(q, &v) == AP_OK && v == i);
    CHECK(ap_mpmc_try_pop(q, &v) == AP_CLOSED);
    ap_mpmc_destroy(q);
    return 0;
}

/* concurrency control: semaphore all-or-nothing; token bucket exact burst
 * and the exact instant the next token comes back */
static int control(void)
{
    ap_sem sem = AP_SEM_INITIALIZER(3);
    CHECK(ap_sem_try_acquire(&sem, 2) == AP_OK);
    CHECK(ap_sem_try_acquire(&sem, 2) == AP_EMPTY);
    CHECK(ap_sem_available(&sem) == 1);
    CHECK(ap_sem_release(&sem, 2) == AP_OK);
    CHECK(ap_sem_available(&sem) == 3);
    ap_tb tb;
    ap_tb_desc d = {0};
    d.n = 10, d.period_ns = AP_NS_PER_SEC, d.burst = 5;
    CHECK(ap_tb_init(&tb, &d) == AP_OK);
    uint64_t t0 = AP_NS_PER_SEC, retry_at = 0;
    for (int i = 0; i < 5; i++)
        CHECK(ap_tb_try_acquire(&tb, 1, t0, &retry_at) == AP_OK);
    CHECK(ap_tb_try_acquire(&tb, 1, t0, &retry_at) != AP_OK);
    CHECK(retry_at == t0 + 100 * AP_NS_PER_MS);
    CHECK(ap_tb_try_acquire(&tb, 1, retry_at, &retry_at) == AP_OK);
    return 0;
}

/* error handling: a circuit breaker opens after its window of failures and
 * then refuses calls until open_ns has passed */
static int errors(void)
{
    ap_breaker *b;
    ap_breaker_desc d = {0};
    d.window_size = 4, d.open_ns = AP_NS_PER_SEC;
    CHECK(ap_breaker_create(&b, &d, NULL) == AP_OK);
    uint64_t now = 1000, retry_at = 0;
    ap_breaker_permit p;
    for (int i = 0; i < 4; i++) {
        CHECK(ap_breaker_allow(b, now, &p, &retry_at) == AP_OK);
        CHECK(ap_breaker_record(b, &p, AP_BREAKER_OUTCOME_FAILURE, 10, now) == AP_OK);
    }
    CHECK(ap_breaker_state_at(b, now) == AP_BREAKER_STATE_OPEN);
    CHECK(ap_breaker_allow(b, now, &p, &retry_at) != AP_OK);
    CHECK(retry_at == now + AP_NS_PER_SEC);
    CHECK(ap_breaker_state_at(b, now + AP_NS_PER_SEC) == AP_BREAKER_STATE_HALF_OPEN);
    ap_breaker_destroy(b);
    return 0;
}

/* resources: an object pool lends each object once; a cache returns what
 * was put for a key */
static int resources(void)
{
    static int objs[4];
    static AP_ALIGNAS(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(4)];
    ap_pool pool;
    CHECK(ap_pool_init(&pool, st, sizeof st, objs, sizeof objs, 4, sizeof objs[0]) == AP_OK);
    void *got[4], *extra;
    for (int i = 0; i < 4; i++) {
        CHECK(ap_pool_try_get(&pool, &got[i]) == AP_OK);
        for (int j = 0; j < i; j++)
            CHECK(got[j] != got[i]);
    }
    CHECK(ap_pool_try_get(&pool, &extra) == AP_EMPTY);
    CHECK(ap_pool_put(&pool, got[2]) == AP_OK);
    CHECK(ap_pool_try_get(&pool, &extra) == AP_OK && extra == got[2]);

    static AP_ALIGNAS(AP_CACHE_ALIGN) unsigned char mem[AP_CACHE_BYTES(64, 4, sizeof(long))];
    ap_cache c;
    ap_cache_desc cd = {0};
    cd.capacity = 64, cd.shards = 4, cd.value_size = sizeof(long);
    CHECK(ap_cache_init(&c, mem, sizeof mem, &cd) == AP_OK);
    long v = 0;
    for (long k = 1; k <= 32; k++) {
        long val = k * k;
        ap_cache_put(&c, (uint64_t)k, &val, NULL);
    }
    CHECK(ap_cache_get(&c, 7, &v) == AP_OK && v == 49);
    CHECK(ap_cache_get(&c, 1000, &v) == AP_EMPTY && v == 49);
    return 0;
}

/* streams: a batch is due at max_size and hands its items back in order;
 * an aggregate sums exactly */
static int streams(void)
{
    static int buf[4], out[4];
    ap_batch b;
    ap_batch_desc d = {0};
    d.elem_size = sizeof(int), d.max_size = 4, d.max_delay_ns = AP_NS_PER_MS;
    CHECK(ap_batch_init(&b, buf, sizeof buf, &d) == AP_OK);
    bool due = false;
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(ap_batch_add(&b, &i, 100, &due) == AP_OK);
        CHECK(due == (i == 3));
    }
    CHECK(ap_batch_take(&b, out, 100, &n) == AP_OK && n == 4);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == i);
    ap_agg a = {0};
    int64_t sum, lo, hi;
    for (int64_t x = -50; x <= 100; x++)
        ap_agg_add(&a, x);
    CHECK(ap_agg_sum(&a, &sum) == AP_OK && sum == 3775);
    CHECK(ap_agg_min(&a, &lo) == AP_OK && lo == -50);
    CHECK(ap_agg_max(&a, &hi) == AP_OK && hi == 100);
    return 0;
}

/* coordination: a lifecycle admits work only while running, drains, ends */
static int coordination(void)
{
    ap_life life = AP_LIFE_INITIALIZER;
    CHECK(ap_life_enter(&life) != AP_OK); /* NEW: refused */
    CHECK(ap_life_start(&life) == AP_OK);
    CHECK(ap_life_started(&life, true) == AP_OK);
    CHECK(ap_life_enter(&life) == AP_OK);
    ap_life_leave(&life);
    CHECK(ap_life_stop(&life) == AP_OK);
    CHECK(ap_life_enter(&life) != AP_OK); /* stopping: refused */
    CHECK(ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, ap_now_ns() + AP_NS_PER_SEC) == AP_OK);
    CHECK(ap_life_terminated(&life) == AP_OK);
    return 0;
}

/* performance: a work-stealing deque, owner LIFO, thief FIFO, each task once */
static int performance(void)
{
    static AP_ALIGNAS(AP_WS_ALIGN) unsigned char mem[AP_WS_BYTES(8)];
    static int tasks[8];
    ap_ws dq;
    CHECK(ap_ws_init(&dq, mem, sizeof mem, 8) == AP_OK);
    for (int i = 0; i < 8; i++)
        CHECK(ap_ws_try_push(&dq, &tasks[i]) == AP_OK);
    CHECK(ap_ws_try_push(&dq, &tasks[0]) == AP_FULL);
    void *t;
    CHECK(ap_ws_try_pop(&dq, &t) == AP_OK && t == &tasks[7]);
    CHECK(ap_ws_try_steal(&dq, &t) == AP_OK && t == &tasks[0]);
    int left = 0;
    while (ap_ws_try_pop(&dq, &t) == AP_OK)
        left++;
    CHECK(left == 6);
    CHECK(ap_ws_try_steal(&dq, &t) == AP_EMPTY);
    return 0;
}

int main(void)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } families[] = {{"queues", queues},       {"control", control},
                    {"errors", errors},       {"resources", resources},
                    {"streams", streams},     {"coordination", coordination},
                    {"performance", performance}};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (families[i].fn() != 0)
            return 1;
        printf("%s ok\n", families[i].name);
    }
    return 0;
}
