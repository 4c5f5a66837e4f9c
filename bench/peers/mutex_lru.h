/*
 * bench/peers/mutex_lru.h -- the naive baseline cache: one pthread mutex
 * around a chained hash table and a doubly linked LRU list.
 *
 * This is the design most code starts from: every get takes the one lock
 * and moves the entry to the front of the list (the write that SIEVE
 * avoids); a put of a new key into a full cache evicts the list's tail.
 * Keys are uint64_t, values uint64_t. Fixed capacity, nodes preallocated,
 * so the comparison is about locking and list traffic, not malloc.
 */
#ifndef ASYNCPAT_BENCH_MUTEX_LRU_H
#define ASYNCPAT_BENCH_MUTEX_LRU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define MUTEX_LRU_NIL UINT32_MAX

typedef struct mutex_lru_node {
    uint64_t key, value;
    uint32_t prev, next;  /* LRU list: prev toward the front (most recent) */
    uint32_t chain;       /* next node in the bucket */
} mutex_lru_node;

typedef struct mutex_lru {
    pthread_mutex_t mu;
    mutex_lru_node *nodes;
    uint32_t *buckets;    /* first node of each bucket, or NIL */
    size_t cap, nbuckets, len;
    uint32_t front, back, free_list;
    uint64_t hits, misses, evictions;
} mutex_lru;

static inline size_t mutex_lru__bucket(const mutex_lru *l, uint64_t key)
{
    key ^= key >> 33;
    key *= UINT64_C(0xff51afd7ed558ccd);
    key ^= key >> 33;
    return (size_t)(key & (l->nbuckets - 1));
}

static inline int mutex_lru_init(mutex_lru *l, size_t cap)
{
    size_t nb = 1;
    while (nb < 2 * cap)
        nb <<= 1;
    l->nodes = (mutex_lru_node *)malloc(cap * sizeof *l->nodes);
    l->buckets = (uint32_t *)malloc(nb * sizeof *l->buckets);
    if (!l->nodes || !l->buckets) {
        free(l->nodes);
        free(l->buckets);
        return -1;
    }
    for (size_t i = 0; i < nb; i++)
        l->buckets[i] = MUTEX_LRU_NIL;
    for (size_t i = 0; i < cap; i++)
        l->nodes[i].chain = i + 1 < cap ? (uint32_t)(i + 1) : MUTEX_LRU_NIL;
    l->free_list = 0;
    l->cap = cap;
    l->nbuckets = nb;
    l->len = 0;
    l->front = l->back = MUTEX_LRU_NIL;
    l->hits = l->misses = l->evictions = 0;
    pthread_mutex_init(&l->mu, NULL);
    return 0;
}

static inline void mutex_lru_fini(mutex_lru *l)
{
    pthread_mutex_destroy(&l->mu);
    free(l->nodes);
    free(l->buckets);
}

static inline void mutex_lru__unlink(mutex_lru *l, uint32_t n)
{
    mutex_lru_node *x = &l->nodes[n];
    if (x->prev != MUTEX_LRU_NIL)
        l->nodes[x->prev].next = x->next;
    else
        l->front = x->next;
    if (x->next != MUTEX_LRU_NIL)
        l->nodes[x->next].prev = x->prev;
    else
        l->back = x->prev;
}

static inline void mutex_lru__push_front(mutex_lru *l, uint32_t n)
{
    mutex_lru_node *x = &l->nodes[n];
    x->prev = MUTEX_LRU_NIL;
    x->next = l->front;
    if (l->front != MUTEX_LRU_NIL)
        l->nodes[l->front].prev = n;
    else
        l->back = n;
    l->front = n;
}

static inline uint32_t mutex_lru__find(const mutex_lru *l, uint64_t key)
{
    for (uint32_t n = l->buckets[mutex_lru__bucket(l, key)]; n != MUTEX_LRU_NIL;
         n = l->nodes[n].chain)
        if (l->nodes[n].key == key)
            return n;
    return MUTEX_LRU_NIL;
}

/* true on a hit (*value set; the entry moves to the front) */
static inline bool mutex_lru_get(mutex_lru *l, uint64_t key, uint64_t *value)
{
    pthread_mutex_lock(&l->mu);
    uint32_t n = mutex_lru__find(l, key);
    if (n != MUTEX_LRU_NIL) {
        *value = l->nodes[n].value;
        mutex_lru__unlink(l, n);
        mutex_lru__push_front(l, n);
        l->hits++;
    } else {
        l->misses++;
    }
    pthread_mutex_unlock(&l->mu);
    return n != MUTEX_LRU_NIL;
}

/* insert or update; returns true when an entry was evicted */
static inline bool mutex_lru_put(mutex_lru *l, uint64_t key, uint64_t value)
{
    bool evicted = false;
    pthread_mutex_lock(&l->mu);
    uint32_t n = mutex_lru__find(l, key);
    if (n != MUTEX_LRU_NIL) {
        l->nodes[n].value = value;
        mutex_lru__unlink(l, n);
        mutex_lru__push_front(l, n);
        pthread_mutex_unlock(&l->mu);
        return false;
    }
    if (l->len == l->cap) { /* evict the least recently used */
        n = l->back;
        mutex_lru__unlink(l, n);
        uint32_t *p = &l->buckets[mutex_lru__bucket(l, l->nodes[n].key)];
        while (*p != n)
            p = &l->nodes[*p].chain;
        *p = l->nodes[n].chain;
        l->len--;
        l->evictions++;
        evicted = true;
    } else {
        n = l->free_list;
        l->free_list = l->nodes[n].chain;
    }
    mutex_lru_node *x = &l->nodes[n];
    x->key = key;
    x->value = value;
    size_t b = mutex_lru__bucket(l, key);
    x->chain = l->buckets[b];
    l->buckets[b] = n;
    mutex_lru__push_front(l, n);
    l->len++;
    pthread_mutex_unlock(&l->mu);
    return evicted;
}

#endif /* ASYNCPAT_BENCH_MUTEX_LRU_H */
