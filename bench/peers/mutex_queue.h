/*
 * bench/peers/mutex_queue.h -- the naive baseline: a bounded ring of
 * uint64_t guarded by one pthread mutex and two condition variables.
 *
 * This is the design most code starts from, and the baseline every queue
 * bench compares against. push blocks while full, pop blocks while empty;
 * each operation signals the other side's condvar (always, as the textbook
 * version does; glibc makes a signal with no waiter cheap).
 */
#ifndef ASYNCPAT_BENCH_MUTEX_QUEUE_H
#define ASYNCPAT_BENCH_MUTEX_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct mutex_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    uint64_t *buf;
    size_t cap, head, tail, count;
} mutex_queue;

static inline int mutex_queue_init(mutex_queue *q, size_t cap)
{
    q->buf = (uint64_t *)malloc(cap * sizeof(uint64_t));
    if (q->buf == NULL)
        return -1;
    q->cap = cap;
    q->head = q->tail = q->count = 0;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    return 0;
}

static inline void mutex_queue_fini(mutex_queue *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
    free(q->buf);
}

static inline void mutex_queue_push(mutex_queue *q, uint64_t v)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == q->cap)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[q->tail] = v;
    if (++q->tail == q->cap)
        q->tail = 0;
    q->count++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static inline uint64_t mutex_queue_pop(mutex_queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->mu);
    uint64_t v = q->buf[q->head];
    if (++q->head == q->cap)
        q->head = 0;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return v;
}

#endif /* ASYNCPAT_BENCH_MUTEX_QUEUE_H */
