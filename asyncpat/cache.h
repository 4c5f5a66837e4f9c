/*
 * asyncpat/cache.h -- bounded key/value cache: sharded SIEVE eviction,
 *                     O(1) hits that never lock (seqlock reads),
 *                     single-flight loading, expiry on a timer wheel
 *
 * PATTERN
 *   A cache of at most `capacity` entries. Keys are uint64_t (hash your own
 *   keys: two keys with the same 64 bits are the same key); values are
 *   fixed-size byte strings of `value_size` bytes (0 = a set of keys),
 *   copied in by put and copied out by get, so the cache never holds a
 *   pointer of yours and nothing needs a release callback.
 *
 *   Keys are spread (splitmix64 finaliser) over S shards (a power of two).
 *   Each shard holds ceil or floor of capacity/S entries in a node array,
 *   a linear-probing index (node numbers, load <= 1/2) and the SIEVE
 *   queue of Zhang et al., "SIEVE is Simpler than LRU" (NSDI 2024):
 *
 *     queue   insertion order, newest at the head, oldest at the tail;
 *             one `visited` bit per entry, one `hand` (a position)
 *     hit     visited = 1. Nothing moves, no lock is taken.
 *     insert  (shard full) o = hand, or the tail if there is none; while
 *             o.visited: o.visited = 0, o = the next newer entry (the tail
 *             after the head). Evict o; hand = the entry newer than o.
 *             The new entry goes in at the head, unvisited.
 *
 *   Unlike LRU a hit never relinks a list, so reads need no exclusive
 *   access to the ordering structure (Caffeine's insight, without its
 *   read buffers). Writers (put, remove) take the shard's ap__lock; readers
 *   take no lock: each shard has a sequence counter (a seqlock), readers
 *   probe and copy optimistically and retry if a writer overlapped them.
 *
 *   LOADING (single flight). ap_cache_get_or_load is a future in caller
 *   memory. On a miss it looks in a table of max_loads load slots (under
 *   one table lock; the slow path only) for a load of its key in flight:
 *   it joins that load, or claims a free slot and calls the caller's
 *   loader once, outside every lock. The loader starts the load any way it
 *   likes and whoever finishes it calls ap_cache_load_complete(key,
 *   status, value): the value goes into the cache, then into the slot,
 *   the slot turns DONE and every joined future is woken and completes
 *   with that status and value. The load belongs to the slot, not to the
 *   future that started it, so cancelling any waiter (the first too)
 *   never cancels the load. A failed load is not cached (every waiter
 *   gets its status; the next miss loads again), unless negative_ttl_ns
 *   is set: then the slot keeps the error that long (a negative entry)
 *   and a miss within it completes with that error, no loader call. The
 *   table (ap__cache_flights) is written once and serves both caches.
 *   This is the shape a
 *   library without a runtime can offer: no thread of ours runs the load,
 *   and a load may finish on any thread (an I/O callback, a worker).
 *
 *   EXPIRY. A desc with expire_after_write, expire_after_access or
 *   refresh_after_write (ns on desc.clock) makes the cache TIMED: each
 *   entry keeps a write deadline (put time + expire_after_write, or the
 *   put's own TTL: ap_cache_put_ttl), an access deadline (raised to now +
 *   expire_after_access by every hit) and its write time. A get at or
 *   after either deadline is a miss (hard expiry: an expired entry is
 *   never returned, reclaimed or not). ap_cache_maintain(now) reclaims
 *   expired entries without a get: each shard keeps a hierarchical timer
 *   wheel (5 levels of 64 buckets, ~1 ms to ~4.9 h per bucket; Varghese
 *   and Lauck 1987, as in Caffeine) linking every entry with a deadline
 *   into the bucket of its deadline; a maintain empties the buckets the
 *   clock passed, reclaims the entries that are due and places the others
 *   again (lower, or later when a hit moved their access deadline). With
 *   refresh_after_write a get_or_load hit on an entry older than that
 *   completes at once with the value held and starts one reload (a load
 *   slot nobody waits for); the reload's value replaces it, a failed
 *   reload leaves it. There is no thread: call ap_cache_maintain from
 *   your loop.
 *
 *   ANY KEY, ANY VALUE: ap_cache_kv (below, a second type in this header)
 *   takes byte-string keys of any length and pointer values you own,
 *   weighs each entry (the bound is on the total weight as well as the
 *   count) and calls your release callback exactly once per entry that
 *   leaves, with its cause (SIZE, EXPIRED, REPLACED, EXPLICIT), after its
 *   last pin (entries expire after write, after access or at their own
 *   TTL, hard, reclaimed by ap_cache_kv_maintain on the same kind of
 *   timer wheel; ap_cache_kv_get_or_load loads with the same single
 *   flight table, every waiter getting its own pin of the loaded value):
 *   a get pins the entry it returns. Its reads take the shard lock: a
 *   pointer handed out must stay valid after the get returns, which needs
 *   a pin (a count the reader writes) whatever the read path.
 *
 *   EVICTION POLICY: SIEVE, chosen on bench/bench_cache_policy.c (21
 *   traces: Zipf 0.6/0.8/1.0/1.2, Zipf with one-hit scans, a loop, a
 *   shifting working set, at 0.1%, 1% and 10% of the distinct keys;
 *   1M accesses each). Mean miss ratio: SIEVE 57.90%, S3-FIFO 57.16%,
 *   W-TinyLFU (a fixed 1% window, no hill climbing) 57.46%, LRU 63.51%,
 *   Belady's optimum 50.33%. SIEVE is within 0.8 points of the best of
 *   them and 5.6 better than LRU, and its hit writes at most one bit that
 *   is usually set already: no frequency sketch, no ghost queue, no per-hit
 *   write that would make readers share a written line. Its weak spot is
 *   a working set that moves under a large cache (shift at 10%: SIEVE
 *   32.4%, S3-FIFO 26.1%, LRU 25.3%). Shards cost hit ratio when a shard
 *   is small (Zipf 1.2 in 47 entries: 37.2% with 1 shard, 50.0% with 16):
 *   keep each shard at a thousand entries or more.
 *
 * USAGE (fetch_page, url_of and url_hash are the caller's)
 *   typedef struct { uint32_t len; char body[60]; } page;
 *   static void load(void *ctx, ap_cache *c, uint64_t key) { // one call per miss burst
 *       (void)ctx;
 *       page p;
 *       ap_status st = fetch_page(url_of(key), &p);   // or start it; complete later
 *       if (ap_cache_load_complete(c, key, st, &p, ap_now_ns()) != AP_OK) abort();
 *   }
 *   static AP_ALIGNAS(AP_CACHE_ALIGN) unsigned char mem[AP_CACHE_BYTES(4096, 16, sizeof(page))];
 *   ap_cache c;
 *   if (ap_cache_init(&c, mem, sizeof mem,
 *                     &(ap_cache_desc){.capacity = 4096, .shards = 16, .value_size = sizeof(page),
 *                                      .expire_after_write = 60 * AP_NS_PER_SEC}) != AP_OK) abort();
 *   page p;                                   // N threads missing one key: one load
 *   ap_status st = ap_cache_get_or_load_wait(&c, url_hash, &p, (ap_cache_loader){load, NULL},
 *                                            AP_DEADLINE_NONE);  // AP_OK, or fetch's error
 *   size_t expired = ap_cache_maintain(&c, ap_now_ns());  // now and then, from your loop
 *
 * GUARANTEES (invariants the tests check)
 *   - len() <= capacity at every step; each shard holds <= its share
 *   - a get never evicts; a put evicts at most one entry, and only when
 *     its key is new and its shard is full; an update never evicts
 *   - nothing is lost silently: a put that evicts reports the victim's key
 *     and value in its ap_cache_victim, remove hands the value back, and
 *     the stats count every eviction
 *   - O(1) amortized eviction: hand_steps (entries the hand examined)
 *     <= evictions + visited bits set <= evictions + hits + updates
 *   - with S = 1 the cache makes exactly SIEVE's decisions (tests compare
 *     it decision by decision with a reference model on a Zipf trace)
 *   - a get returns a value that was put for that key (never a torn mix of
 *     two puts, never another key's value)
 *   - hits + misses == number of gets (stats)
 *   - AP_INVAL changes nothing; out-params are untouched on AP_EMPTY
 *   - single flight: at most one load of a key is in flight at any time,
 *     so loads of a key <= get_or_load misses that found no load of it in
 *     flight (a miss re-reads the cache under the table lock before it
 *     claims a slot, so one that comes after a completion finds the value)
 *   - every future joined to a load completes with the load's status and,
 *     on AP_OK, its value; a cancelled future leaves the load and the
 *     others untouched; a failed load is not cached; every load slot is
 *     freed once its load is complete and its last waiter has read it
 *   - hard expiry: a timed cache never returns an entry at or after its
 *     write or access deadline; ap_cache_maintain(now) reclaims exactly
 *     the held entries whose deadline is <= now (none early, none left)
 *   - inserts - evictions - removes - expirations == len (stats)
 *   - ap_cache_kv: count <= capacity and weight <= max_weight at every
 *     step (pinned leavers included); each value put is released exactly
 *     once, never while a pin on it is held, outside every lock; a put
 *     that gets AP_INVAL or AP_FULL changed nothing and took nothing
 *   - ap_cache_kv expiry: a get at or after an entry's write deadline
 *     (put + expire_after_write, or its put_ttl) or access deadline (last
 *     hit + expire_after_access) misses, reclaimed or not; maintain(now)
 *     takes out exactly the held entries whose deadline is <= now and
 *     releases each once with cause EXPIRED (a pinned one at its unpin)
 *   - ap_cache_kv single flight: as ap_cache's (loads of a key <= misses
 *     that found no load of it in flight); every waiter of a successful
 *     load holds a pin of its value (taken before any waiter can see the
 *     result; a waiter that cancels after it arrived has it dropped)
 *   - negative TTL (both caches): a load that failed at t with
 *     negative_ttl_ns = n answers a get_or_load miss at now < t + n with
 *     its error and no loader call; at now >= t + n a miss loads again
 *
 * CONCURRENCY        get   put   remove   len/stats   fini
 *   get              yes   yes   yes      yes         no
 *   put              yes   yes   yes      yes         no
 *   remove           yes   yes   yes      yes         no
 *   (get_or_load's poll, load_complete and maintain are like put: any
 *   thread, with anything but fini; one future is polled by one thread at
 *   a time, per the waker contract of future.h)
 *   Progress: get is obstruction-free in its fast path: it retries only
 *   when a put/remove on the same shard overlapped it, at most
 *   AP_SPIN_LIMIT times, then it reads under the shard lock (bounded).
 *   Values over 128 bytes are always read under the shard lock (the fast
 *   path copies into a stack buffer first, so *out is untouched on a miss).
 *   A get writes shared memory only to set a clear visited bit and to add
 *   to one of 32 striped hit/miss counters (picked per thread stack).
 *   put and remove hold the shard's ap__lock (core.h) for O(1) expected
 *   work (a probe, a link, and the hand's walk, O(1) amortized). Shards
 *   are independent: operations on different shards never contend.
 *   Sharding makes SIEVE exact per shard, approximate for the whole cache:
 *   a put may evict from its full shard while other shards have room.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * DOES NOT   (ap_cache) take byte-string keys, pointer values or weights:
 *            that is ap_cache_kv; (ap_cache_kv) read without a lock or
 *            refresh after write; (either) copy values of varying size
 *            (ap_cache_kv holds your pointer: make the object as large as
 *            it needs to be), report ap_cache's evictions through a
 *            listener (a put reports its victim; maintain only counts),
 *            keep a remembered failure when every load slot is needed
 *            (the one ending first gives its slot up), or run a thread:
 *            maintain is yours to call.
 * LIMITS     a shard's sequence word is 32 bits (2 per write): a lock-free
 *            get stalled across exactly 2^31 writes to its shard could
 *            accept a torn copy (the usual seqlock wrap bound).
 *            Time: UINT64_MAX is "never" as a deadline (also at now =
 *            UINT64_MAX); now + duration saturates at UINT64_MAX - 1. A
 *            maintain whose now is before the previous one's reclaims
 *            nothing new. get_or_load and load_complete look slots up in
 *            O(max_loads) under one cache-wide lock (a miss's slow path).
 *
 * COMPLEXITY   get: O(1) expected (a probe at load <= 1/2 and a copy);
 *              put/remove: O(1) expected, eviction O(1) amortized (hand
 *              steps as above), O(share) worst case for one put; a timed
 *              put also links the entry into one wheel bucket (O(1)).
 *              maintain: O(buckets passed (<= 320 per shard) + entries
 *              visited); an entry is visited at most once per wheel level
 *              on its way down, once per call while its deadline is in
 *              the current ~1 ms bucket, and once per hit that moved its
 *              access deadline since it was last placed.
 *              Memory: AP_CACHE_BYTES(capacity, shards, value_size) =
 *              32 counter lines (2 KiB) + per shard 2 cache lines, 1280
 *              bytes of timer wheel and up to 2 lines of padding + per
 *              entry a node of max(32, 24 + value_size rounded up to 8)
 *              bytes (key, visited bit, queue links, value: all an
 *              untimed get reads) and room for a timed cache's 32 more
 *              (deadlines, write time, wheel links) + 8 to 16 bytes of
 *              index (entries are ceil(capacity/S) per shard). With 8-byte
 *              values that is 64 bytes an entry, of which an untimed
 *              cache's nodes use 32 (two to a line) and a timed cache's
 *              64 (one line) + max_loads load slots of 88
 *              bytes (LP64) + value_size rounded up (AP_CACHE_BYTES assumes
 *              AP_CACHE_LOADS = 16; AP_CACHE_BYTES_LOADS takes max_loads).
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_CACHE_BYTES(...), aligned to AP_CACHE_ALIGN (=
 *              AP_CACHELINE; malloc's 16-byte alignment is not enough and
 *              is AP_INVAL: use aligned_alloc(AP_CACHE_ALIGN, ...) or
 *              ap_cache_create); create: allocates once via ap_allocator.
 *              Nothing else allocates.
 * ERRORS       AP_EMPTY (get/remove: key absent, or expired), AP_NOMEM
 *              (create); AP_INVAL from put_ttl on an untimed cache and
 *              from load_complete with no load of the key in flight or a
 *              bad status (nothing changed); get_or_load completes with
 *              AP_OK, the loader's error, or AP_CANCELED;
 *              AP_INVAL: desc NULL, capacity 0, shards not a power of two,
 *              capacity < shards (a shard of 0 entries), more than 2^30
 *              entries per shard, max_loads above 2^20, sizes that overflow, a buffer that is
 *              NULL, misaligned or too small. AP_INVAL changes nothing
 *              (neither the handle nor the buffer).
 * CONFIG       AP_CACHELINE, AP_ASSERT, AP_NO_MALLOC, AP_SPIN_LIMIT
 * SEE ALSO     tests/test_cache.c, tests/stress/stress_cache.c,
 *              tests/verify/verify_cache.c, tests/fuzz/fuzz_cache.c,
 *              bench/bench_cache.c, bench/bench_cache_policy.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_CACHE_H
#define ASYNCPAT_CACHE_H

#include "core.h"
#include "future.h"
#include "time.h"
#include "waitlist.h"

/** ap_cache_desc - configuration; a zero field means its default */
typedef struct ap_cache_desc {
    size_t capacity;   /* entries in all (required: 0 is AP_INVAL) */
    size_t shards;     /* power of two <= capacity (default: 1, exact SIEVE) */
    size_t value_size; /* bytes per value (default 0: keys only) */
    /* Time (ns on `clock`; 0 = off). Any of the three makes the cache
     * TIMED: get and put then read `clock` (or take the caller's now in
     * the _at forms), and ap_cache_maintain reclaims expired entries.
     * AP_CACHE_NEVER as expire_after_write makes a cache timed whose
     * entries live until their own TTL (ap_cache_put_ttl) says. */
    uint64_t expire_after_write;  /* an entry dies this long after its put */
    uint64_t expire_after_access; /* ... or this long after its last hit */
    uint64_t refresh_after_write; /* get_or_load hits older than this start
                                     one reload and serve the old value */
    ap_clock clock;               /* zero: ap_now_ns() */
    size_t max_loads; /* loads in flight at once (default AP_CACHE_LOADS) */
    /* a failed load's error is remembered this long (ns from its
     * load_complete's now; 0: not at all): a get_or_load miss within it
     * completes with that error and calls no loader (a negative entry;
     * it holds a load slot, and gives it up early when a load needs one) */
    uint64_t negative_ttl_ns;
} ap_cache_desc;

/** AP_CACHE_NEVER - a duration that never ends (a timed cache, no default TTL) */
#define AP_CACHE_NEVER UINT64_MAX
/** AP_CACHE_LOADS - default max_loads, the one AP_CACHE_BYTES assumes */
#define AP_CACHE_LOADS 16

/** ap_cache_victim - what a put evicted (caller memory; optional) */
typedef struct ap_cache_victim {
    void *value;  /* in: a buffer of value_size bytes for the victim's value,
                     or NULL; left untouched when nothing was evicted */
    uint64_t key; /* out: the victim's key, when evicted */
    bool evicted; /* out: whether this put evicted an entry */
} ap_cache_victim;

/** ap_cache_stats - counters, summed over shards (a racy snapshot) */
typedef struct ap_cache_stats {
    uint64_t hits, misses; /* gets that returned AP_OK / AP_EMPTY */
    uint64_t inserts;      /* puts of a new key */
    uint64_t updates;      /* puts of a present key */
    uint64_t evictions;    /* entries evicted by inserts */
    uint64_t removes;      /* removes that found their key */
    uint64_t hand_steps;   /* entries the SIEVE hand examined */
    uint64_t expirations;  /* entries reclaimed by ap_cache_maintain */
    uint64_t loads;        /* loader calls (misses that found no load in
                              flight, and refreshes) */
    uint64_t load_joins;   /* get_or_load misses that joined a load in flight */
    uint64_t load_failures;/* loads completed with a status other than AP_OK */
    uint64_t refreshes;    /* loads started to refresh a hit */
    uint64_t negative_hits;/* get_or_load misses answered by a remembered
                              failure (negative_ttl_ns) */
} ap_cache_stats;

/* An entry has a HOT part: what an untimed get reads (key, visited bit,
 * value) and what the SIEVE hand walks (visited, queue links), its value
 * (value_size rounded up to 8 bytes) following it, AP__CACHE_NODE_BYTES
 * in all (at least 32). A timed cache's entries also have a COLD part
 * (ap__cache_cold, 32 bytes) right after it, which only timed caches
 * read. So an untimed cache's nodes are 32 bytes apart with 8-byte values,
 * two to a cache line: a large cache keeps twice as many entries in the
 * CPU's caches as with one line each (issue #15, cost flat in size), and
 * a timed get still reads one node line (64 bytes: hot, then cold). */
typedef struct ap__cache_node {
    AP_ATOMIC_T(uint64_t) key;
    uint32_t newer, older;     /* queue links (under the lock) */
    uint16_t wbucket;          /* its wheel bucket, or AP__CACHE_WNONE (under the lock) */
    AP_ATOMIC_T(uint8_t) visited;   /* the SIEVE bit */
} ap__cache_node;

/* An entry's COLD part, the last 32 bytes of a timed cache's node (an
 * untimed cache has none): its deadlines and write time (a timed get's
 * expiry test, put, maintain) and its timer wheel links. */
typedef struct ap__cache_cold {
    AP_ATOMIC_T(uint64_t) wexp;  /* write deadline (put; UINT64_MAX: none) */
    AP_ATOMIC_T(uint64_t) aexp;  /* access deadline (raised by hits) */
    AP_ATOMIC_T(uint64_t) born;  /* time of the put (refresh_after_write) */
    uint32_t wprev, wnext;       /* timer wheel bucket links (under the lock) */
} ap__cache_cold;

#define AP__CACHE_NIL UINT32_MAX
/* The timer wheel: AP__CACHE_WLEVELS levels of 64 buckets; a bucket of
 * level k spans 2^(AP__CACHE_WSHIFT + 6k) ns (about 1 ms, 67 ms, 4.3 s,
 * 4.6 min, 4.9 h); deadlines beyond the top level's 13 days wait in its
 * farthest bucket and are placed again when it fires. */
#define AP__CACHE_WLEVELS 5
#define AP__CACHE_WSHIFT 20
#define AP__CACHE_WBUCKETS (AP__CACHE_WLEVELS * 64)
#define AP__CACHE_WNONE 0xFFFFu

/* One shard: written by writers under its lock; readers read only seq and
 * the layout fields (cap, tmask, nodes, index). */
typedef struct ap__cache_shard {
    AP_ALIGNAS(AP_CACHELINE) ap__lock lock;
    AP_ATOMIC_T(uint32_t) seq;   /* odd while a writer changes the shard */
    uint32_t cap;           /* entries this shard may hold */
    uint32_t tmask;         /* index slots - 1 */
    uint32_t nmask;         /* an index slot: node + 1 in its nmask bits, the
                               key's hash tag in the others (ap__cache_tag) */
    uint32_t head, tail;    /* newest / oldest entry, or NIL */
    uint32_t hand;          /* next eviction candidate, or NIL (= tail) */
    uint32_t free_list;     /* unused nodes, linked by `older` */
    uint32_t used;          /* entries (under the lock) */
    unsigned char *nodes;   /* cap nodes of node_bytes each */
    AP_ATOMIC_T(uint32_t) *index; /* node + 1, or 0 = empty */
    AP_ATOMIC_T(size_t) len;     /* `used`, for lock-free len() */
    AP_ATOMIC_T(uint64_t) inserts, updates, evictions, removes, hand_steps, expirations;
    uint32_t *wheel;        /* AP__CACHE_WBUCKETS list heads (node or NIL) */
    uint64_t wnow;          /* the wheel's time: the last maintain's now */
} ap__cache_shard;

/* Hit/miss counters, striped over their own cache lines, so that a get is
 * a read except for one relaxed add to a line that other threads rarely
 * touch (one counter per shard would bounce between every pair of
 * readers). asyncpat has no TLS and no thread ids, so the stripe is picked
 * by the address of a local variable: threads run on different stacks.
 * Two threads that land on one stripe only share a line; counts stay
 * exact either way. */
#define AP__CACHE_STRIPES 32
typedef struct ap__cache_ctr {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) hits;
    AP_ATOMIC_T(uint64_t) misses;
} ap__cache_ctr;

/* A load in flight (the single-flight table; all fields under its lock).
 * Its result buffer (vsize rounded up to 8) follows it, then (ap_cache_kv)
 * a copy of its key's bytes (kcap rounded up to 8). */
typedef struct ap__cache_load {
    ap_waitlist wl;   /* futures waiting for this load */
    uint64_t key;     /* ap_cache: the key; ap_cache_kv: the key's hash */
    uint64_t until;   /* a failure is remembered while now < until (0: not) */
    uint32_t state;   /* AP__CACHE_L_* */
    uint32_t refs;    /* futures attached (each drops its ref once) */
    ap_status status; /* the loader's status, once DONE */
    uint32_t klen;    /* ap_cache_kv: bytes of the key copy (ap_cache: 0) */
} ap__cache_load;

/* The single-flight table, written once for both caches: max_loads load
 * slots, the misses waiting for a free one, and its counters. */
typedef struct ap__cache_flights {
    ap__lock lock;           /* the table's lock (slow path only) */
    ap_waitlist lwait;       /* misses waiting for a free load slot */
    unsigned char *slots;    /* n slots of slot_bytes each */
    size_t slot_bytes;
    size_t vsize;            /* result bytes (value_size; kv: a pin) */
    size_t kcap;             /* key bytes a slot copies (ap_cache: 0) */
    uint32_t n;              /* slots */
    uint64_t neg_ttl;        /* desc.negative_ttl_ns */
    AP_ATOMIC_T(uint64_t) loads, load_joins, load_failures, refreshes, negative_hits;
} ap__cache_flights;

/* The single-flight part of a get_or_load future (both caches). */
typedef struct ap__cache_ff {
    ap_waiter waiter;
    uint32_t slot;     /* the load it waits for, or AP__CACHE_NIL */
    uint32_t on_lwait; /* registered on lwait (no free slot) */
    ap_status status;
} ap__cache_ff;

/** ap_cache - a sharded SIEVE cache; set up with ap_cache_init or create */
typedef struct ap_cache {
    ap__cache_flights fl;    /* loads in flight (single flight) */
    bool timed;              /* any expiry or refresh configured */
    ap__cache_shard *shards;
    ap__cache_ctr *ctrs; /* AP__CACHE_STRIPES of them */
    size_t nshards;      /* power of two */
    size_t capacity;
    size_t value_size;
    size_t words;        /* value_size rounded up, in uint64_t words */
    size_t node_bytes;   /* AP__CACHE_NODE_BYTES(value_size), + its cold part if timed */
    size_t bytes;        /* AP_CACHE_BYTES of this configuration */
    ap_cache_desc desc;  /* as resolved */
    const ap_allocator *alloc; /* set by create */
} ap_cache;

/* Sizing (constant expressions). */
#define AP__CACHE_SHARES(capacity, shards) \
    (((size_t)(capacity) + (size_t)(shards)-1) / (size_t)(shards))
/* a hot part and its value, at least 32 bytes (values of 8 bytes or less:
 * two to a line, none across one) */
#define AP__CACHE_NODE_BYTES(value_size)                                   \
    (sizeof(ap__cache_node) + AP__ALIGN_UP((value_size), 8) < 32           \
         ? (size_t)32                                                      \
         : sizeof(ap__cache_node) + AP__ALIGN_UP((value_size), 8))
/* a shard's region: nodes (room for timed ones: hot and cold parts), to
 * a whole line, then index and wheel */
#define AP__CACHE_SHARD_BYTES(capacity, shards, value_size)                       \
    AP__ALIGN_UP(AP__ALIGN_UP(AP__CACHE_SHARES(capacity, shards) *                \
                                  (AP__CACHE_NODE_BYTES(value_size) +             \
                                   sizeof(ap__cache_cold)),                       \
                              AP_CACHELINE) +                                     \
                     (AP__POW2_CEIL(2 * AP__CACHE_SHARES(capacity, shards)) +     \
                      AP__CACHE_WBUCKETS) * sizeof(uint32_t),                      \
                 AP_CACHELINE)
#define AP__CACHE_LOAD_BYTES(value_size) \
    (AP__ALIGN_UP(sizeof(ap__cache_load), 8) + AP__ALIGN_UP((value_size), 8))

/**
 * AP_CACHE_BYTES - least buffer bytes for ap_cache_init (constant expression)
 * @capacity:   entries in all
 * @shards:     shard count as given in the desc (0 means 1)
 * @value_size: bytes per value
 * The buffer must be aligned to AP_CACHE_ALIGN. For a configuration whose
 * size would overflow size_t the macro wraps; ap_cache_init checks the
 * size itself (ap_cache_bytes gives it checked at run time).
 */
#define AP_CACHE_BYTES(capacity, shards, value_size) \
    AP_CACHE_BYTES_LOADS(capacity, shards, value_size, AP_CACHE_LOADS)
/** AP_CACHE_BYTES_LOADS - AP_CACHE_BYTES for a desc whose max_loads is @loads */
#define AP_CACHE_BYTES_LOADS(capacity, shards, value_size, loads)                   \
    (AP__CACHE_STRIPES * sizeof(ap__cache_ctr) +                                    \
     ((size_t)(shards) ? (size_t)(shards) : 1u) * sizeof(ap__cache_shard) +         \
     ((size_t)(shards) ? (size_t)(shards) : 1u) *                                   \
         AP__CACHE_SHARD_BYTES((capacity), ((size_t)(shards) ? (size_t)(shards) : 1u), \
                               (value_size)) +                                      \
     AP__ALIGN_UP(((size_t)(loads) ? (size_t)(loads) : AP_CACHE_LOADS) *            \
                      AP__CACHE_LOAD_BYTES(value_size), AP_CACHELINE))

/** AP_CACHE_ALIGN - the alignment ap_cache_init needs of its buffer
 *  (constant expression: AP_CACHELINE; e.g. static AP_ALIGNAS(AP_CACHE_ALIGN)
 *  unsigned char buf[AP_CACHE_BYTES(1024, 4, 16)]) */
#define AP_CACHE_ALIGN ((size_t)AP_CACHELINE)

/**
 * ap_cache_desc_resolved - the desc with defaults filled in
 * Returns a copy in which shards 0 became 1.
 */
AP_API ap_cache_desc ap_cache_desc_resolved(const ap_cache_desc *desc);

/**
 * ap_cache_bytes - AP_CACHE_BYTES for a desc, checked
 * @desc: the configuration
 * @out:  receives the size
 *
 * Returns AP_OK, or AP_INVAL (bad desc, or the size overflows; *out untouched).
 */
AP_API AP_NODISCARD ap_status ap_cache_bytes(const ap_cache_desc *desc, size_t *out);

/**
 * ap_cache_init - set up an empty cache in caller memory
 * @c:    caller memory for the handle
 * @buf:  at least AP_CACHE_BYTES(capacity, shards, value_size) bytes,
 *        aligned to AP_CACHE_ALIGN; the cache owns it until fini
 * @size: bytes in @buf (more than needed is fine; the excess is not touched)
 * @desc: capacity, shards, value_size; read now, not kept
 *
 * Returns AP_OK, or AP_INVAL: @desc NULL or bad (see ERRORS), @buf NULL or
 * not aligned to AP_CACHE_ALIGN, @size too small. On AP_INVAL neither *c
 * nor @buf is touched.
 */
AP_API AP_NODISCARD ap_status ap_cache_init(ap_cache *c, void *buf, size_t size,
                                            const ap_cache_desc *desc);

/** ap_cache_fini - end the cache's life; no call may run concurrently, no
 *  load may be in flight and no get_or_load future may still wait */
AP_API void ap_cache_fini(ap_cache *c);

#ifndef AP_NO_MALLOC
/**
 * ap_cache_create - allocate and initialise a cache in one allocation
 * @out:   receives the cache
 * @desc:  as for ap_cache_init
 * @alloc: allocator, or NULL for the C library's
 *
 * Returns AP_OK, AP_INVAL (bad desc) or AP_NOMEM; *out untouched on failure.
 */
AP_API AP_NODISCARD ap_status ap_cache_create(ap_cache **out, const ap_cache_desc *desc,
                                              const ap_allocator *alloc);

/** ap_cache_destroy - free a cache from ap_cache_create (NULL is a no-op) */
AP_API void ap_cache_destroy(ap_cache *c);
#endif

/**
 * ap_cache_get - look a key up; on a hit copy its value out
 * @c:   initialized cache
 * @key: any 64-bit key
 * @out: value_size bytes, or NULL (just test presence); untouched on a miss
 *
 * Returns AP_OK (hit: the entry is marked visited) or AP_EMPTY (miss).
 * Concurrency: any thread, with anything but fini; takes no lock unless
 *              writers keep overlapping it (then the shard lock, bounded).
 * Ordering:    a hit happens-after the put that stored the value.
 */
AP_API AP_NODISCARD ap_status ap_cache_get(ap_cache *c, uint64_t key, void *out);

/**
 * ap_cache_put - insert or update a key; evicts one entry if its shard is full
 * @c:      initialized cache
 * @key:    any 64-bit key
 * @val:    value_size bytes to copy in (may be NULL only if value_size is 0)
 * @victim: NULL, or receives whether an entry was evicted, its key, and its
 *          value (into victim->value, when not NULL)
 *
 * Cannot fail (returns nothing). An update marks the entry visited and
 * never evicts.
 * Concurrency: any thread, with anything but fini; holds the shard lock.
 * Ordering:    release: pairs with the acquire in ap_cache_get.
 */
AP_API void ap_cache_put(ap_cache *c, uint64_t key, const void *val, ap_cache_victim *victim);

/**
 * ap_cache_remove - delete a key
 * @c:   initialized cache
 * @key: the key
 * @out: NULL, or value_size bytes that receive the removed value
 *
 * Returns AP_OK, or AP_EMPTY (absent; *out untouched).
 */
AP_API AP_NODISCARD ap_status ap_cache_remove(ap_cache *c, uint64_t key, void *out);

/** ap_cache_len - entries held (a snapshot under concurrency) */
AP_API size_t ap_cache_len(const ap_cache *c);

/** ap_cache_capacity - the capacity given at init */
AP_API size_t ap_cache_capacity(const ap_cache *c);

/** ap_cache_stats_get - the counters summed over shards into *@out (a snapshot) */
AP_API void ap_cache_stats_get(const ap_cache *c, ap_cache_stats *out);

/**
 * ap_cache_get_at - ap_cache_get at the caller's @now (on the desc's clock)
 * A timed cache answers AP_EMPTY for an entry whose write or access
 * deadline is <= @now (hard expiry: an expired entry is never returned,
 * whether or not ap_cache_maintain has reclaimed it yet). An untimed cache
 * ignores @now. A hit with expire_after_access pushes the entry's access
 * deadline to @now + expire_after_access.
 */
AP_API AP_NODISCARD ap_status ap_cache_get_at(ap_cache *c, uint64_t key, void *out, uint64_t now);

/**
 * ap_cache_put_ttl - ap_cache_put with this entry's own time to live
 * @ttl: ns from now (the desc's clock) until the entry expires; 0 means
 *       the desc's expire_after_write; AP_CACHE_NEVER: no write deadline
 * @now: the caller's time on the desc's clock
 *
 * Returns AP_OK, or AP_INVAL (the cache is not timed: nothing changed).
 * expire_after_access still applies beside the TTL (whichever ends first).
 */
AP_API AP_NODISCARD ap_status ap_cache_put_ttl(ap_cache *c, uint64_t key, const void *val,
                                               uint64_t now, uint64_t ttl,
                                               ap_cache_victim *victim);

/**
 * ap_cache_maintain - reclaim expired entries (the timer wheel's turn)
 * @c:   initialized cache
 * @now: the time on the desc's clock; not before the previous call's
 *
 * Returns how many entries it reclaimed (their deadline <= @now). Call it
 * from your loop now and then (every few ms to s): the cache has no
 * thread. Untimed caches: returns 0. O(entries that expire + buckets
 * passed) per call: each entry is placed in a bucket at most once per
 * wheel level (5) and once more per access that moved its deadline.
 * Concurrency: any thread, with anything but fini; takes each shard lock.
 */
AP_API size_t ap_cache_maintain(ap_cache *c, uint64_t now);

/** ap_cache_loader - starts the load of one key (see ap_cache_get_or_load) */
typedef struct ap_cache_loader {
    /* Called once per load started, outside every cache lock, from the
     * thread polling the future that found no load in flight (or that
     * found a hit due for refresh). It must arrange exactly one
     * ap_cache_load_complete(c, key, ...) call: at once (a synchronous
     * load), or later from any thread (a request sent, a job queued). */
    void (*load)(void *ctx, ap_cache *c, uint64_t key);
    void *ctx;
} ap_cache_loader;

/** ap_cache_load_fut - a get_or_load in caller memory (.base is the future) */
typedef struct ap_cache_load_fut {
    ap_future base; /* first: (ap_future *)&f is the future */
    ap_cache *c;
    uint64_t key;
    void *out;
    ap_cache_loader loader;
    ap__cache_ff ff; /* the wait (shared with ap_cache_kv_load_fut) */
} ap_cache_load_fut;

/**
 * ap_cache_get_or_load - a future that gets @key, loading it on a miss
 *                        with single flight
 * @f:      caller memory for the future; poll it with ap_cache_load_poll
 *          (or drive (ap_future *)f with ap_block_on_until_clock, the
 *          desc's clock: cx.now is the cache's time)
 * @c:      initialized cache
 * @key:    the key
 * @out:    value_size bytes for the value (or NULL); written only on AP_OK
 * @loader: starts a load when needed (copied into @f)
 *
 * The first poll: a hit completes at once (AP_OK). A miss looks for a
 * load of @key in flight: it joins it, or it starts one (claims a load
 * slot and calls @loader once). Every future joined to a load completes
 * with that load's status and, on AP_OK, its value. A load finishes when
 * the loader's side calls ap_cache_load_complete; the value is put into
 * the cache first (a failed load is not cached). Cancelling a waiting
 * future, also the one that started the load, never cancels the load:
 * the others still get its result. With refresh_after_write, a hit whose
 * entry is older than that starts one reload (unless one is in flight)
 * and completes at once with the old value.
 * All max_loads slots busy: the miss waits for one to free.
 */
AP_API void ap_cache_get_or_load(ap_cache_load_fut *f, ap_cache *c, uint64_t key, void *out,
                                 ap_cache_loader loader);
/** ap_cache_load_poll - poll; AP_READY once ap_cache_load_status says */
AP_API ap_poll ap_cache_load_poll(ap_cache_load_fut *f, ap_cx *cx);
/** ap_cache_load_cancel - stop waiting (the load goes on); idempotent */
AP_API void ap_cache_load_cancel(ap_cache_load_fut *f);
/**
 * ap_cache_load_status - AP_NOT_READY while pending; then AP_OK (the value
 * is in *out), the status the loader completed with (an error), or
 * AP_CANCELED
 */
AP_API AP_NODISCARD ap_status ap_cache_load_status(const ap_cache_load_fut *f);

/**
 * ap_cache_load_complete - finish the load of @key that a loader started
 * @c:      the cache
 * @key:    the key the loader was called with
 * @status: AP_OK, or the error every waiter gets (anything but AP_OK and
 *          AP_NOT_READY); an error is not cached
 * @value:  value_size bytes (AP_OK; may be NULL when value_size is 0)
 * @now:    the time on the desc's clock (the entry's write time)
 *
 * On AP_OK the value is put into the cache (with the desc's TTL), then
 * every waiter completes. Any thread; call it exactly once per loader
 * call. Returns AP_OK, or AP_INVAL (no load of @key in flight, or a bad
 * status: nothing changed).
 */
AP_API AP_NODISCARD ap_status ap_cache_load_complete(ap_cache *c, uint64_t key, ap_status status,
                                                     const void *value, uint64_t now);

/**
 * ap_cache_get_or_load_wait - drive ap_cache_get_or_load on this thread
 * (ap_block_on_until_clock on the desc's clock) until done or @deadline
 * Returns the load status, or AP_TIMEDOUT (this wait is cancelled; the
 * load goes on).
 */
AP_API AP_NODISCARD ap_status ap_cache_get_or_load_wait(ap_cache *c, uint64_t key, void *out,
                                                        ap_cache_loader loader,
                                                        ap_deadline deadline);
/**
 * AP_CACHE_DEFINE - a typed cache of values of type V
 * Generates `name` (wrapping ap_cache) and name_init(self, buf, size,
 * capacity, shards), name_get, name_put, name_remove, name_len, name_fini;
 * the desc's value_size is sizeof(V).
 */
#define AP_CACHE_DEFINE(name, V)                                                      \
    typedef struct name { ap_cache c; } name;                                         \
    AP__TYPED AP_NODISCARD ap_status name##_init(name *self, void *buf, size_t size,              \
                                                 size_t capacity, size_t shards)      \
    {                                                                                 \
        ap_cache_desc d = AP__ZERO;                                                   \
        d.capacity = capacity;                                                        \
        d.shards = shards;                                                            \
        d.value_size = sizeof(V);                                                     \
        return ap_cache_init(&self->c, buf, size, &d);                                \
    }                                                                                 \
    AP__TYPED AP_NODISCARD ap_status name##_get(name *self, uint64_t key, V *out)                 \
    { return ap_cache_get(&self->c, key, out); }                                      \
    AP__TYPED void name##_put(name *self, uint64_t key, const V *val,                 \
                                           ap_cache_victim *victim)                   \
    { ap_cache_put(&self->c, key, val, victim); }                                     \
    AP__TYPED AP_NODISCARD ap_status name##_remove(name *self, uint64_t key, V *out)              \
    { return ap_cache_remove(&self->c, key, out); }                                   \
    AP__TYPED size_t name##_len(const name *self)                                     \
    { return ap_cache_len(&self->c); }                                                \
    AP__TYPED void name##_fini(name *self) { ap_cache_fini(&self->c); }

/* ---- ap_cache_kv: any key, pointer values, weights (issue #15) ----
 *
 * A second cache type beside ap_cache, for what a fixed-size value cannot
 * hold: keys are byte strings of any length (ap_cache_key: bytes, length
 * and a 64-bit hash you may compute yourself, or ap_cache_key_of), values
 * are pointers you own, each entry has a weight (put's, or desc.weigher's)
 * and the bound is on the total weight as well as the count. Eviction is
 * SIEVE per shard, as in ap_cache. The cache never copies a key or a
 * value: both must stay valid until desc.release is called for the entry.
 *
 * Release: desc.release(ctx, key, value, cause) runs exactly once per
 * entry that leaves the cache (cause SIZE: evicted for room; EXPIRED: its
 * write or access deadline passed, at ap_cache_kv_maintain; REPLACED: a put of
 * its key; EXPLICIT: ap_cache_kv_remove or fini), outside every
 * lock, and only once no reader can see the entry: a get PINS the entry
 * it returns (ap_cache_kv_pin) and the caller unpins it when done; an
 * entry that leaves while pinned is released by its last unpin. Readers
 * here take the shard lock (a short ap__lock): a pointer cannot be read
 * lock-free without a reclamation scheme, and the pin makes the value
 * safe to use after the get returns, which a lock-free read alone would
 * not. Pinned entries still count against the bounds (their memory is
 * held); the hand skips them (evicting one frees nothing).
 */

/** ap_cache_cause - why an entry left an ap_cache_kv */
typedef enum ap_cache_cause {
    AP_CACHE_CAUSE_SIZE = 1, /* evicted to make room */
    AP_CACHE_CAUSE_EXPIRED,  /* its deadline passed (ap_cache_kv_maintain) */
    AP_CACHE_CAUSE_REPLACED, /* a put of its key replaced it */
    AP_CACHE_CAUSE_EXPLICIT  /* ap_cache_kv_remove, or fini */
} ap_cache_cause;

/** ap_cache_key - a byte-string key: bytes (caller memory), length, hash */
typedef struct ap_cache_key {
    const void *bytes; /* may be NULL only if len is 0 */
    size_t len;
    uint64_t hash;     /* any 64-bit hash of the bytes (equal keys, equal hashes) */
} ap_cache_key;

/** ap_cache_key_of - a key with the library's hash (FNV-1a, then mixed) */
AP_API ap_cache_key ap_cache_key_of(const void *bytes, size_t len);

/** ap_cache_kv_desc - configuration of an ap_cache_kv */
typedef struct ap_cache_kv_desc {
    size_t capacity;     /* entries at most, pinned leavers included (required) */
    size_t shards;       /* power of two <= capacity (default 1) */
    uint64_t max_weight; /* total weight at most (0: no weight bound) */
    /* weight of an entry when put passes weight 0 (NULL: 1) */
    uint64_t (*weigher)(void *ctx, ap_cache_key key, void *value);
    /* called once per entry that leaves, outside every lock (required) */
    void (*release)(void *ctx, ap_cache_key key, void *value, ap_cache_cause cause);
    void *ctx;
    /* Time (ns on `clock`; 0 = off); either makes the cache TIMED. An
     * entry expires this long after its put (or at its own TTL:
     * ap_cache_kv_put_ttl; AP_CACHE_NEVER: only by its TTL) ... */
    uint64_t expire_after_write;
    ap_clock clock; /* zero: ap_now_ns() */
    /* ... or this long after its last hit; a get at or after either
     * deadline misses (hard expiry) and ap_cache_kv_maintain releases it
     * (cause EXPIRED) */
    uint64_t expire_after_access;
    size_t max_loads;   /* get_or_load loads in flight at once (default AP_CACHE_LOADS) */
    size_t max_key_len; /* longest key get_or_load takes (a load slot copies
                           it while the load runs; default 256) */
    uint64_t negative_ttl_ns; /* a failed load's error is remembered this
                                 long (0: not at all); as ap_cache_desc's */
} ap_cache_kv_desc;

/** ap_cache_kv_pin - a pinned entry: value stays valid until unpinned */
typedef struct ap_cache_kv_pin {
    void *value;
    uint32_t shard, node;
} ap_cache_kv_pin;

/** ap_cache_kv_stats - counters (a snapshot) */
typedef struct ap_cache_kv_stats {
    uint64_t hits, misses, inserts, replaced, evicted, removed, released, expired;
    uint64_t loads, load_joins, load_failures, negative_hits; /* as ap_cache_stats */
    uint64_t len;    /* entries held (not counting pinned leavers) */
    uint64_t weight; /* weight held, pinned leavers included */
} ap_cache_kv_stats;

struct ap__ckv_shard;
/** ap_cache_kv - set up with ap_cache_kv_init or ap_cache_kv_create */
typedef struct ap_cache_kv {
    struct ap__ckv_shard *shards;
    size_t nshards;
    size_t bytes;
    ap_cache_kv_desc desc; /* as resolved */
    bool timed;            /* expire_after_write or expire_after_access */
    const ap_allocator *alloc;
    ap__cache_flights fl;  /* loads in flight (as ap_cache's) */
} ap_cache_kv;

/** ap_cache_kv_bytes - buffer bytes ap_cache_kv_init needs (AP_INVAL: bad desc) */
AP_API AP_NODISCARD ap_status ap_cache_kv_bytes(const ap_cache_kv_desc *desc, size_t *out);
/**
 * ap_cache_kv_init - an empty cache in caller memory
 * @buf: ap_cache_kv_bytes(desc) bytes at least, aligned to AP_CACHE_ALIGN
 * Returns AP_OK, or AP_INVAL (desc NULL, capacity 0, shards not a power of
 * two or above capacity, no release, a buffer NULL, misaligned or too
 * small): nothing touched.
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_init(ap_cache_kv *c, void *buf, size_t size,
                                               const ap_cache_kv_desc *desc);
/** ap_cache_kv_fini - release every entry (cause EXPLICIT); no pin may be held */
AP_API void ap_cache_kv_fini(ap_cache_kv *c);
#ifndef AP_NO_MALLOC
/** ap_cache_kv_create - allocate and init (AP_INVAL, AP_NOMEM) */
AP_API AP_NODISCARD ap_status ap_cache_kv_create(ap_cache_kv **out, const ap_cache_kv_desc *desc,
                                                 const ap_allocator *alloc);
/** ap_cache_kv_destroy - fini and free (NULL: no-op) */
AP_API void ap_cache_kv_destroy(ap_cache_kv *c);
#endif
/**
 * ap_cache_kv_put - insert or replace @key -> @value
 * @weight: the entry's weight; 0: desc.weigher's (or 1 without one)
 * Evicts unpinned entries (SIEVE, cause SIZE) until the entry fits; a
 * present key's entry is replaced (cause REPLACED). Releases run after
 * the shard lock is dropped, before put returns. When the room it needs
 * is held by entries another thread is releasing right now, put waits
 * (spinning) for those release calls to return.
 * Returns AP_OK (the cache now owns @key's bytes and @value until their
 * release), AP_INVAL (weight above the shard's share of max_weight, or a
 * NULL key.bytes with a length), or AP_FULL (pinned entries hold the
 * room it needs); on AP_INVAL and AP_FULL nothing changed and nothing is
 * released.
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_put(ap_cache_kv *c, ap_cache_key key, void *value,
                                              uint64_t weight);
/**
 * ap_cache_kv_get - find @key and pin its entry
 * Returns AP_OK (*pin holds the value; call ap_cache_kv_unpin once) or
 * AP_EMPTY (*pin untouched).
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_get(ap_cache_kv *c, ap_cache_key key,
                                              ap_cache_kv_pin *pin);
/** ap_cache_kv_unpin - drop a pin from ap_cache_kv_get (exactly once per pin);
 *  releases the entry if it had left the cache and this was its last pin */
AP_API void ap_cache_kv_unpin(ap_cache_kv *c, ap_cache_kv_pin *pin);
/** ap_cache_kv_remove - take @key out (released now, or at its last unpin);
 *  AP_OK or AP_EMPTY */
AP_API AP_NODISCARD ap_status ap_cache_kv_remove(ap_cache_kv *c, ap_cache_key key);
/**
 * ap_cache_kv_maintain - release the entries whose deadline is <= @now
 * (cause EXPIRED; pinned ones at their last unpin), turning each shard's
 * timer wheel as ap_cache_maintain does. Returns how many left the cache.
 * Untimed caches (expire_after_write 0): returns 0.
 */
AP_API size_t ap_cache_kv_maintain(ap_cache_kv *c, uint64_t now);
/** ap_cache_kv_stats_get - the counters summed over shards into *@out */
AP_API void ap_cache_kv_stats_get(ap_cache_kv *c, ap_cache_kv_stats *out);
/**
 * ap_cache_kv_get_at - ap_cache_kv_get at the caller's @now (desc.clock's
 * time): an entry whose write or access deadline is <= @now is a miss
 * (hard expiry, reclaimed or not); a hit with expire_after_access moves
 * the access deadline to @now + expire_after_access. Untimed: @now ignored.
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_get_at(ap_cache_kv *c, ap_cache_key key,
                                                 ap_cache_kv_pin *pin, uint64_t now);
/**
 * ap_cache_kv_put_ttl - ap_cache_kv_put with this entry's own time to live
 * @now: the caller's time on desc.clock
 * @ttl: ns from @now until the entry expires; 0: the desc's
 *       expire_after_write; AP_CACHE_NEVER: no write deadline
 * Returns as ap_cache_kv_put, or AP_INVAL when the cache is not timed
 * (nothing changed). expire_after_access still applies beside the TTL.
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_put_ttl(ap_cache_kv *c, ap_cache_key key, void *value,
                                                  uint64_t weight, uint64_t now, uint64_t ttl);

/** ap_cache_kv_loader - starts the load of one key (see ap_cache_kv_get_or_load) */
typedef struct ap_cache_kv_loader {
    /* Called once per load started, outside every lock, on the thread
     * polling the future that found no load of @key in flight. @key's
     * bytes are valid during the call only. It must arrange exactly one
     * ap_cache_kv_load_complete for the key (now, or later on any thread). */
    void (*load)(void *ctx, ap_cache_kv *c, ap_cache_key key);
    void *ctx;
} ap_cache_kv_loader;

/** ap_cache_kv_load_fut - an ap_cache_kv get_or_load in caller memory */
typedef struct ap_cache_kv_load_fut {
    ap_future base; /* first: (ap_future *)&f is the future */
    ap_cache_kv *c;
    ap_cache_key key;
    ap_cache_kv_pin *out;
    ap_cache_kv_loader loader;
    ap__cache_ff ff; /* the wait (shared with ap_cache_load_fut) */
} ap_cache_kv_load_fut;

/**
 * ap_cache_kv_get_or_load - a future that gets and pins @key, loading it
 *                           on a miss with single flight
 * @f:      caller memory; poll with ap_cache_kv_load_poll (cx.now on
 *          desc.clock), or use ap_cache_kv_get_or_load_wait
 * @key:    its bytes must stay valid until @f completes or is cancelled
 *          (a load slot keeps its own copy: at most desc.max_key_len
 *          bytes, longer keys complete with AP_INVAL at the first poll)
 * @out:    receives the pin on AP_OK: call ap_cache_kv_unpin once
 * @loader: starts a load when needed (copied into @f)
 *
 * As ap_cache_get_or_load: a hit pins and completes; a miss joins the
 * load of @key in flight or starts one (one loader call for N misses);
 * every future joined to it completes with its status and, on AP_OK, a
 * pin of the value it loaded; cancelling any of them (the first too)
 * leaves the load to the others (a cancelled future's pin, if its result
 * had arrived, is dropped for it). With negative_ttl_ns a failure is
 * remembered: a miss within that time completes with the same error and
 * calls no loader.
 */
AP_API void ap_cache_kv_get_or_load(ap_cache_kv_load_fut *f, ap_cache_kv *c, ap_cache_key key,
                                    ap_cache_kv_pin *out, ap_cache_kv_loader loader);
/** ap_cache_kv_load_poll - poll; AP_READY once ap_cache_kv_load_status says */
AP_API ap_poll ap_cache_kv_load_poll(ap_cache_kv_load_fut *f, ap_cx *cx);
/** ap_cache_kv_load_cancel - stop waiting (the load goes on); idempotent */
AP_API void ap_cache_kv_load_cancel(ap_cache_kv_load_fut *f);
/** ap_cache_kv_load_status - AP_NOT_READY while pending; AP_OK (*out holds
 *  a pin), the load's error, AP_INVAL (key too long) or AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_cache_kv_load_status(const ap_cache_kv_load_fut *f);
/**
 * ap_cache_kv_load_complete - finish the load of @key that a loader started
 * @key:    the key the entry keeps: bytes equal to the loader's key, valid
 *          until the entry's release (as for ap_cache_kv_put)
 * @status: AP_OK, or the error every waiter gets (not AP_NOT_READY)
 * @value:  AP_OK: the value, put into the cache (the desc's TTL) and
 *          pinned once for every waiter before any of them can see it
 * @weight: as for ap_cache_kv_put
 * @now:    the time on desc.clock (write time; start of a negative TTL)
 *
 * Returns AP_OK (the load completed with @status), AP_FULL (pinned
 * entries hold the room: the load completed with AP_FULL for every
 * waiter and @value stays yours) or AP_INVAL (no load of @key in flight,
 * a bad status or weight: nothing changed, the load still runs).
 * Call it exactly once per loader call, from any thread.
 */
AP_API AP_NODISCARD ap_status ap_cache_kv_load_complete(ap_cache_kv *c, ap_cache_key key,
                                                        ap_status status, void *value,
                                                        uint64_t weight, uint64_t now);
/** ap_cache_kv_get_or_load_wait - drive ap_cache_kv_get_or_load on this
 *  thread (desc.clock) until done or @deadline; AP_TIMEDOUT cancels this
 *  wait only (the load goes on) */
AP_API AP_NODISCARD ap_status ap_cache_kv_get_or_load_wait(ap_cache_kv *c, ap_cache_key key,
                                                           ap_cache_kv_pin *out,
                                                           ap_cache_kv_loader loader,
                                                           ap_deadline deadline);

/* ---- implementation ---- */

/*
 * ORDERING
 *   Writers, under the shard lock: seq = odd (relaxed), release fence,
 *   the changes (relaxed atomic stores to keys, values, index slots),
 *   seq = even (release). Readers: s1 = seq (acquire; odd: retry), probe
 *   and copy with relaxed loads, acquire fence, s2 = seq (relaxed);
 *   s1 == s2 means no write overlapped: the copy is one put's value
 *   (Boehm, "Can seqlocks get along with programming language memory
 *   models?", MSPC 2012). All shared data is atomic, so a racing read is
 *   merely discarded, never undefined. A get that returns AP_OK
 *   happens-after the put that stored the value it returns (the release
 *   store of the even seq, read by the acquire load of s1), so the
 *   value's bytes may carry pointers to memory written before the put.
 *   The visited bit is a relaxed byte: a hit racing with the hand may set
 *   it on an entry the hand just passed or recycled; this only delays one
 *   eviction, never evicts wrongly or loses anything. Counters and len
 *   are relaxed snapshots. Under ThreadSanitizer (which does not model
 *   fences) the fences are replaced by release data stores and acquire
 *   data loads, a strictly stronger form that TSan can see.
 *
 *   Expiry. A put writes the entry's write deadline, access deadline and
 *   write time inside its write section, so a seqlock read that accepts
 *   a value accepts the deadlines of the same put; the expiry test runs
 *   on that copy. A hit raises the access deadline outside the section
 *   with a relaxed CAS that only raises it (never lowers): a hit racing a
 *   recycle of the node stores at most its own now + expire_after_access,
 *   which the new entry's put (later, on a clock that does not go back)
 *   already reached, so the CAS leaves it; at worst an entry lives one
 *   access period longer than a strict order of the two would give. The
 *   timer wheel's links are touched only under the shard lock.
 *
 *   Loading. Every load slot field is read and written under the cache's
 *   table lock (ltab_lock). Single flight: a slot is claimed only under
 *   that lock, after finding no RUNNING slot of the key and (re-reading
 *   the cache under the lock) no live entry; ap_cache_load_complete puts
 *   the value (shard lock, seqlock release) and turns the slot DONE in ONE
 *   critical section of the table lock. So a claim either precedes the
 *   completion's section (then it saw the RUNNING slot and joined) or
 *   follows it (then its re-read under the lock happens-after the put and
 *   finds the value, unless it expired or was evicted or removed since:
 *   a new miss, which may load again). Hence at most one RUNNING slot per
 *   key at any time. Lock order: table lock, then a shard lock (never the
 *   reverse); no lock is held while the loader or a waker runs.
 *   Values: a waiter copies the slot's value under the table lock after
 *   seeing DONE, so it happens-after load_complete's copy (the bytes may
 *   carry pointers to memory written before load_complete).
 *   No lost wake: a waiter links itself on the slot's waitlist (its lock,
 *   count++), then re-checks DONE under the table lock; a completer sets
 *   DONE under the table lock, releases it, then wakes all (reading the
 *   count). If the re-check saw RUNNING, the waiter's link happened-before
 *   its re-check, which happened-before the completer's section (same
 *   lock), which happened-before the completer's count read: the wake
 *   finds the waiter. The same argument covers waiters for a free slot
 *   (lwait) against the unref that frees one. Slot lifetime: a waiter
 *   holds a reference from its join until it has read the result or
 *   cancelled, and unlinks its waiter from the slot's list before it drops
 *   the reference, so a slot is reused only with nobody on its list; a
 *   wake_all that runs after a reuse wakes the new waiters spuriously
 *   (allowed by the waker contract), never touches freed memory (slots
 *   live as long as the cache). Checked in every interleaving within the
 *   bound by tests/verify/verify_cache.c (cache_single_flight*), under
 *   threads by tests/stress/stress_cache.c (cache loads).
 *
 *   ap_cache_kv. Every field of a shard and its nodes is read and written
 *   under the shard's lock, except by the one thread that owns a LIMBO
 *   node (below). A value is released only from LIMBO, and a node enters
 *   LIMBO under the lock with no pin: when it leaves the index with
 *   refs == 0 (put, remove, eviction, fini), or at the unpin that drops
 *   its last pin after it left (GHOST). It is then in no index, queue or
 *   free list, so no get can find it and no other thread touches it: the
 *   thread that moved it releases it after dropping the lock, and returns
 *   the node to the free list under the lock afterwards. Every pinner's
 *   use of the value lies between its get and its unpin, both under the
 *   lock, and the unpin (refs--) happens-before the lock section that
 *   sees refs == 0 and moves the node to LIMBO, hence before the release:
 *   no reader can still see a released value. Exactly once: LIMBO is
 *   entered once per node occupancy (LIVE -> LIMBO, or LIVE -> GHOST ->
 *   LIMBO) and only the mover releases. Checked in every interleaving by
 *   verify_cache (cache_kv_retire_after_unpin, also in the C11 mode with
 *   its data-race detector on the value's bytes) and under threads by
 *   stress_cache (cache_kv: a magic word flipped once per value).
 *
 *   ap_cache_kv loading uses the table above (its lock, slots, waiters),
 *   with one difference: ap_cache_kv_load_complete puts the value BEFORE
 *   it takes the table lock (a put may release replaced or evicted
 *   values, which must run outside every lock), pinned once for itself
 *   so that it cannot leave. Single flight still holds: a miss that
 *   takes the table lock before the completion's DONE section finds the
 *   slot RUNNING and joins; one that takes it after re-reads the cache
 *   under the table lock, and the put (shard lock) happened-before the
 *   DONE section, which happened-before that re-read (same table lock):
 *   it finds the value unless it left since (a new miss). In the DONE
 *   section, under the table lock and then the shard lock (the order
 *   above), the entry's pin count rises by the slot's refs, one per
 *   attached future, before any of them can read DONE; each future then
 *   owns one pin: it takes it (copying the pin under the table lock) or,
 *   cancelling after DONE, drops it (unpin, outside every lock). The
 *   completer drops its own pin last. So an entry loaded for N waiters is
 *   released only after all N unpinned (verify_cache
 *   cache_kv_single_flight*, stress_cache cache_kv loads).
 *   Kv expiry: deadlines are read and written only under the shard lock
 *   (a hit raises the access deadline there); an expired entry leaves
 *   through ap__ckv_leave like any other, so the retirement argument
 *   above covers it (verify_cache cache_kv_expire_vs_pinned*).
 */

AP_STATIC_ASSERT(sizeof(ap__cache_node) % 8 == 0, "cache node keeps values 8-aligned");
AP_STATIC_ASSERT(sizeof(ap__cache_node) + 8 <= 32, "hot part and an 8-byte value in 32 bytes");
AP_STATIC_ASSERT(sizeof(ap__cache_cold) == 32, "a timed node of an 8-byte value is one line");
AP_STATIC_ASSERT(sizeof(ap__cache_ctr) % AP_CACHELINE == 0, "one counter stripe per line");
AP_STATIC_ASSERT(sizeof(ap__cache_shard) % AP_CACHELINE == 0, "shards are whole lines");

/* Seqlock orders: AP__SEQLOCK_* in core.h (Boehm's fences; stronger under TSan). */
#define AP__CACHE_SHARE_LIMIT ((size_t)1 << 30)
/* Values up to this many words are read optimistically into a stack copy
 * (so *out is untouched on a miss); bigger ones are read under the lock. */
#define AP__CACHE_FAST_WORDS 16
/* load slot states */
#define AP__CACHE_L_FREE 0u
#define AP__CACHE_L_RUNNING 1u /* the loader was called; no result yet */
#define AP__CACHE_L_DONE 2u    /* status (and value) set; waiters read it */
#define AP__CACHE_L_NEG 3u     /* a failure remembered until `until`;
                                  claimable (negative_ttl_ns) */
AP_API void ap__cache_flights_init(ap__cache_flights *t, unsigned char *mem, size_t n,
                                   size_t vsize, size_t kcap, uint64_t neg_ttl);

AP_API ap_cache_desc ap_cache_desc_resolved(const ap_cache_desc *desc)
{
    ap_cache_desc d = *desc;
    if (d.shards == 0)
        d.shards = 1;
    if (d.max_loads == 0)
        d.max_loads = AP_CACHE_LOADS;
    return d;
}

/* Validate a desc; compute node bytes and total bytes. */
AP_API ap_status ap__cache_layout(const ap_cache_desc *desc, ap_cache_desc *d, size_t *node_bytes,
                                  size_t *shard_bytes, size_t *total)
{
    if (desc == NULL)
        return AP_INVAL;
    *d = ap_cache_desc_resolved(desc);
    size_t s = d->shards;
    if (d->capacity == 0 || (s & (s - 1)) != 0 || d->capacity < s || s > ((size_t)1 << 31))
        return AP_INVAL;
    size_t share = d->capacity / s + (d->capacity % s != 0);
    if (share > AP__CACHE_SHARE_LIMIT || d->value_size > SIZE_MAX / 4 ||
        d->max_loads > ((size_t)1 << 20))
        return AP_INVAL;
    size_t nb = AP__CACHE_NODE_BYTES(d->value_size), nodes, sb;
    /* room for timed nodes (hot and cold parts), to a whole line */
    if (!ap__size_muladd(share, nb + sizeof(ap__cache_cold), AP_CACHELINE - 1, &nodes) ||
        !ap__size_muladd(ap__pow2_ceil(2 * share) + AP__CACHE_WBUCKETS, sizeof(uint32_t),
                         nodes & ~((size_t)AP_CACHELINE - 1), &sb) ||
        sb > SIZE_MAX - (AP_CACHELINE - 1))
        return AP_INVAL;
    sb = ap__align_up(sb, AP_CACHELINE);
    size_t lb = AP__CACHE_LOAD_BYTES(d->value_size), ltab;
    if (sb == 0 || sb > SIZE_MAX - sizeof(ap__cache_shard) ||
        !ap__size_muladd(d->max_loads, lb, AP_CACHELINE - 1, &ltab) ||
        !ap__size_muladd(s, sb + sizeof(ap__cache_shard),
                         AP__CACHE_STRIPES * sizeof(ap__cache_ctr), total) ||
        *total > SIZE_MAX - ltab)
        return AP_INVAL;
    *total += ltab & ~((size_t)AP_CACHELINE - 1);
    *node_bytes = nb;
    *shard_bytes = sb;
    return AP_OK;
}

AP_API ap_status ap_cache_bytes(const ap_cache_desc *desc, size_t *out)
{
    ap_cache_desc d;
    size_t nb, sb, total;
    AP_ASSERT(out != NULL);
    if (ap__cache_layout(desc, &d, &nb, &sb, &total) != AP_OK)
        return AP_INVAL;
    *out = total;
    return AP_OK;
}

AP_API ap_status ap_cache_init(ap_cache *c, void *buf, size_t size, const ap_cache_desc *desc)
{
    AP_ASSERT(c != NULL);
    ap_cache_desc d;
    size_t nb, sb, total;
    /* every check before the first write: AP_INVAL touches nothing. The
     * shards and counter stripes are AP_ALIGNAS(AP_CACHELINE) types, so a
     * less aligned buffer (malloc's 16 bytes) cannot hold them. */
    if (buf == NULL || (uintptr_t)buf % AP_CACHE_ALIGN != 0 ||
        ap__cache_layout(desc, &d, &nb, &sb, &total) != AP_OK || size < total)
        return AP_INVAL;
    size_t s = d.shards, share = d.capacity / s, extra = d.capacity % s;
    size_t span = share + (extra != 0), tsize = ap__pow2_ceil(2 * span);
    bool timed = d.expire_after_write != 0 || d.expire_after_access != 0 ||
                 d.refresh_after_write != 0;
    size_t stride = nb + (timed ? sizeof(ap__cache_cold) : 0); /* a node: hot (+ cold) */
    size_t room = ap__align_up(span * (nb + sizeof(ap__cache_cold)), AP_CACHELINE);
    unsigned char *mem = (unsigned char *)buf;
    ap__cache_ctr *ctrs = (ap__cache_ctr *)buf;
    ap__cache_shard *sh = (ap__cache_shard *)(void *)(mem + AP__CACHE_STRIPES * sizeof(ap__cache_ctr));
    unsigned char *region = (unsigned char *)(sh + s);
    for (size_t i = 0; i < AP__CACHE_STRIPES; i++) {
        AP_ATOMIC_INIT(&ctrs[i].hits, 0u);
        AP_ATOMIC_INIT(&ctrs[i].misses, 0u);
    }
    for (size_t i = 0; i < s; i++, region += sb) {
        ap__cache_shard *x = &sh[i];
        AP_ATOMIC_INIT(&x->lock.held, 0u);
        AP_ATOMIC_INIT(&x->seq, 0u);
        x->cap = (uint32_t)(share + (i < extra));
        x->tmask = (uint32_t)(tsize - 1);
        x->nmask = (uint32_t)(ap__pow2_ceil((size_t)x->cap + 1) - 1);
        x->head = x->tail = x->hand = AP__CACHE_NIL;
        x->used = 0;
        x->nodes = region;
        x->index = (AP_ATOMIC_T(uint32_t) *)(void *)(region + room);
        x->wheel = (uint32_t *)(void *)(region + room + tsize * sizeof(uint32_t));
        for (size_t b = 0; b < AP__CACHE_WBUCKETS; b++)
            x->wheel[b] = AP__CACHE_NIL;
        x->wnow = 0;
        x->free_list = AP__CACHE_NIL;
        for (size_t n = x->cap; n-- > 0;) { /* free list 0, 1, 2, ... */
            ap__cache_node *node = (ap__cache_node *)(void *)(region + n * stride);
            AP_ATOMIC_INIT(&node->key, 0u);
            AP_ATOMIC_INIT(&node->visited, 0u);
            if (timed) {
                ap__cache_cold *ck = (ap__cache_cold *)(void *)((unsigned char *)node + nb);
                AP_ATOMIC_INIT(&ck->wexp, UINT64_MAX);
                AP_ATOMIC_INIT(&ck->aexp, UINT64_MAX);
                AP_ATOMIC_INIT(&ck->born, 0u);
                ck->wprev = ck->wnext = AP__CACHE_NIL;
            }
            node->wbucket = AP__CACHE_WNONE;
            node->newer = AP__CACHE_NIL;
            node->older = x->free_list;
            x->free_list = (uint32_t)n;
            AP_ATOMIC_T(uint64_t) *w = (AP_ATOMIC_T(uint64_t) *)(void *)(node + 1);
            for (size_t k = 0; k < nb / 8 - sizeof(ap__cache_node) / 8; k++)
                AP_ATOMIC_INIT(&w[k], 0u); /* the value and the padding */
        }
        for (size_t t = 0; t < tsize; t++)
            AP_ATOMIC_INIT(&x->index[t], 0u);
        AP_ATOMIC_INIT(&x->len, (size_t)0);
        AP_ATOMIC_INIT(&x->inserts, 0u);
        AP_ATOMIC_INIT(&x->updates, 0u);
        AP_ATOMIC_INIT(&x->evictions, 0u);
        AP_ATOMIC_INIT(&x->removes, 0u);
        AP_ATOMIC_INIT(&x->hand_steps, 0u);
        AP_ATOMIC_INIT(&x->expirations, 0u);
    }
    ap__cache_flights_init(&c->fl, region, d.max_loads, d.value_size, 0, d.negative_ttl_ns);
    c->timed = timed;
    c->shards = sh;
    c->ctrs = ctrs;
    c->nshards = s;
    c->capacity = d.capacity;
    c->value_size = d.value_size;
    c->words = (d.value_size + 7) / 8;
    c->node_bytes = stride;
    c->bytes = total;
    c->desc = d;
    c->alloc = NULL;
    return AP_OK;
}

AP_API void ap_cache_fini(ap_cache *c)
{
    AP_ASSERT(c != NULL && c->shards != NULL); /* live: fini once */
    c->shards = NULL; /* a later call trips AP_ASSERT */
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_cache_create(ap_cache **out, const ap_cache_desc *desc,
                                 const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_cache), AP_CACHELINE), nb, sb, total;
    ap_cache_desc d;
    AP_ASSERT(out != NULL);
    if (a == NULL || ap__cache_layout(desc, &d, &nb, &sb, &total) != AP_OK ||
        total > SIZE_MAX - hdr)
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(hdr + total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_cache *c = (ap_cache *)(void *)mem;
    ap_status st = ap_cache_init(c, mem + hdr, total, desc);
    AP_ASSERT(st == AP_OK);
    (void)st;
    c->alloc = a;
    *out = c;
    return AP_OK;
}

AP_API void ap_cache_destroy(ap_cache *c)
{
    if (c == NULL)
        return;
    AP_ASSERT(c->alloc != NULL); /* only caches from ap_cache_create */
    const ap_allocator *a = c->alloc;
    size_t total = ap__align_up(sizeof(ap_cache), AP_CACHELINE) + c->bytes;
    if (c->shards != NULL) /* fini may have run already */
        ap_cache_fini(c);
    a->free(c, total, a->user);
}
#endif

AP_FORCE_INLINE ap__cache_shard *ap__cache_shard_of(const ap_cache *c, uint64_t h)
{
    /* high half picks the shard, low half the home slot: independent bits */
    return &c->shards[(size_t)(h >> 32) & (c->nshards - 1)];
}

AP_FORCE_INLINE ap__cache_ctr *ap__cache_ctr_of(const ap_cache *c)
{
    unsigned char here; /* its address says which thread's stack we run on */
    uint64_t x = (uint64_t)(uintptr_t)&here >> 16; /* stable within a thread */
    return &c->ctrs[(size_t)((x * UINT64_C(0x9E3779B97F4A7C15)) >> 40) & (AP__CACHE_STRIPES - 1)];
}

AP_FORCE_INLINE ap__cache_node *ap__cache_node_at(const ap_cache *c, const ap__cache_shard *s,
                                                  uint32_t n)
{
    return (ap__cache_node *)(void *)(s->nodes + (size_t)n * c->node_bytes);
}

/* Node n's cold part (deadlines, write time, wheel links): the last
 * bytes of its node; timed caches only (an untimed one has none). */
AP_FORCE_INLINE ap__cache_cold *ap__cache_cold_at(const ap_cache *c, const ap__cache_shard *s,
                                                  uint32_t n)
{
    return (ap__cache_cold *)(void *)(s->nodes + (size_t)n * c->node_bytes + c->node_bytes -
                                      sizeof(ap__cache_cold));
}

/* The same, from the node's hot part. */
AP_FORCE_INLINE ap__cache_cold *ap__cache_cold_of(const ap_cache *c, ap__cache_node *node)
{
    return (ap__cache_cold *)(void *)((unsigned char *)node + c->node_bytes -
                                      sizeof(ap__cache_cold));
}

AP_FORCE_INLINE AP_ATOMIC_T(uint64_t) *ap__cache_words(ap__cache_node *node)
{
    return (AP_ATOMIC_T(uint64_t) *)(void *)(node + 1);
}

/* The hash tag an index slot keeps beside its node number: hash bits the
 * shard choice and the home slot do not use (the top of h), in the slot's
 * bits above nmask. A probe reads a node (another cache line) only when
 * the tag matches, so a miss and each slot passed on the way to a hit
 * cost no node line but for a false match (2^-(32 - bits of nmask)). */
AP_FORCE_INLINE uint32_t ap__cache_tag(const ap__cache_shard *s, uint64_t h)
{
    return (uint32_t)(h >> 32) & ~s->nmask;
}

/*
 * Probe for key. Returns the node number, or NIL; *slot receives the index
 * slot where the key is (found) or the first empty slot (not found).
 * Safe without the lock: every load is atomic, node numbers are checked
 * against cap, and the walk is bounded by the table size, so a probe that
 * races with a writer ends, and the seqlock then discards its answer.
 */
AP_FORCE_INLINE uint32_t ap__cache_find(const ap_cache *c, const ap__cache_shard *s, uint64_t h,
                                        uint64_t key, uint32_t *slot)
{
    uint32_t mask = s->tmask, i = (uint32_t)h & mask, tag = ap__cache_tag(s, h);
    for (uint32_t seen = 0; seen <= mask; seen++) {
        /* relaxed: validated by the seqlock (or we hold the lock) */
        uint32_t e = AP_ATOMIC_LOAD(&s->index[i], AP__SEQLOCK_MO_LOAD);
        if (e == 0)
            break;
        /* one compare: n < cap <= nmask holds only if e's tag bits are ours */
        uint32_t n = (e ^ tag) - 1;
        if (AP_LIKELY(n < s->cap)) {
            ap__cache_node *node = ap__cache_node_at(c, s, n);
            if (AP_ATOMIC_LOAD(&node->key, AP__SEQLOCK_MO_LOAD) == key) {
                *slot = i;
                return n;
            }
        }
        i = (i + 1) & mask;
    }
    *slot = i;
    return AP__CACHE_NIL;
}

/* Writer side of the seqlock (caller holds the lock). */
AP_FORCE_INLINE void ap__cache_write_begin(ap__cache_shard *s)
{
    uint32_t q = AP_ATOMIC_LOAD(&s->seq, memory_order_relaxed); /* only writers change it */
    AP_ATOMIC_STORE(&s->seq, q + 1, memory_order_relaxed);
    /* release fence: orders the odd seq before the changes that follow; a
     * reader that sees any of them and then runs its acquire fence reads
     * seq >= q + 1 and retries (Boehm 2012). A release store could not
     * order the LATER stores, hence the fence. */
    AP__SEQLOCK_FENCE_RELEASE();
}

AP_FORCE_INLINE void ap__cache_write_end(ap__cache_shard *s)
{
    uint32_t q = AP_ATOMIC_LOAD(&s->seq, memory_order_relaxed);
    /* release: publishes the changes; pairs with the acquire load of s1 in
     * ap_cache_get */
    AP_ATOMIC_STORE(&s->seq, q + 1, memory_order_release);
}

AP_FORCE_INLINE void ap__cache_store_value(const ap_cache *c, ap__cache_node *node,
                                           const void *val)
{
    AP_ATOMIC_T(uint64_t) *w = ap__cache_words(node);
    const unsigned char *src = (const unsigned char *)val;
    size_t left = c->value_size;
    for (size_t k = 0; k < c->words; k++, left -= 8) {
        uint64_t x = 0;
        if (AP_LIKELY(left >= 8))
            memcpy(&x, src + 8 * k, 8); /* a constant size: a move, not a call */
        else
            memcpy(&x, src + 8 * k, left);
        AP_ATOMIC_STORE(&w[k], x, AP__SEQLOCK_MO_STORE); /* inside the write section */
        if (k == 0)
            AP_TEST_YIELD(); /* tests: widen the window a torn read would need */
    }
}

AP_FORCE_INLINE void ap__cache_load_value(const ap_cache *c, ap__cache_node *node, void *out)
{
    AP_ATOMIC_T(uint64_t) *w = ap__cache_words(node);
    unsigned char *dst = (unsigned char *)out;
    size_t left = c->value_size;
    for (size_t k = 0; k < c->words; k++, left -= 8) {
        uint64_t x = AP_ATOMIC_LOAD(&w[k], memory_order_relaxed);
        if (AP_LIKELY(left >= 8))
            memcpy(dst + 8 * k, &x, 8); /* a constant size: a move, not a call */
        else
            memcpy(dst + 8 * k, &x, left);
    }
}

/* ap__probe_delete's callbacks over one shard's index (under its lock). */
typedef struct ap__cache_probe {
    const ap_cache *c;
    ap__cache_shard *s;
} ap__cache_probe;

AP_FORCE_INLINE size_t ap__cache_probe_home(void *t, size_t j)
{
    ap__cache_probe *p = (ap__cache_probe *)t;
    uint32_t e = AP_ATOMIC_LOAD(&p->s->index[j], memory_order_relaxed);
    if (e == 0)
        return SIZE_MAX;
    uint64_t k = AP_ATOMIC_LOAD(&ap__cache_node_at(p->c, p->s, (e & p->s->nmask) - 1)->key,
                                memory_order_relaxed);
    return (size_t)((uint32_t)ap__mix64(k) & p->s->tmask);
}

AP_FORCE_INLINE void ap__cache_probe_move(void *t, size_t to, size_t from)
{
    ap__cache_probe *p = (ap__cache_probe *)t;
    uint32_t e = AP_ATOMIC_LOAD(&p->s->index[from], memory_order_relaxed);
    AP_ATOMIC_STORE(&p->s->index[to], e, AP__SEQLOCK_MO_STORE);
    AP_ATOMIC_STORE(&p->s->index[from], 0u, AP__SEQLOCK_MO_STORE);
}

/* Delete index slot i by backward shift (ap__probe_delete), so every key
 * stays reachable from its home without crossing an empty slot. */
AP_API void ap__cache_index_delete(const ap_cache *c, ap__cache_shard *s, uint32_t i)
{
    ap__cache_probe p = {c, s};
    AP_ATOMIC_STORE(&s->index[i], 0u, AP__SEQLOCK_MO_STORE);
    ap__probe_delete(&p, (size_t)s->tmask + 1, i, ap__cache_probe_home, ap__cache_probe_move);
}

/* Unlink node n from the queue; the hand moves on to the newer entry. */
AP_API void ap__cache_unlink(const ap_cache *c, ap__cache_shard *s, uint32_t n)
{
    ap__cache_node *node = ap__cache_node_at(c, s, n);
    if (s->hand == n)
        s->hand = node->newer;
    if (node->newer != AP__CACHE_NIL)
        ap__cache_node_at(c, s, node->newer)->older = node->older;
    else
        s->head = node->older;
    if (node->older != AP__CACHE_NIL)
        ap__cache_node_at(c, s, node->older)->newer = node->newer;
    else
        s->tail = node->newer;
}

/* SIEVE: the node to evict (the shard is full, so the queue is not empty). */
AP_API uint32_t ap__cache_sieve(const ap_cache *c, ap__cache_shard *s)
{
    uint32_t o = s->hand != AP__CACHE_NIL ? s->hand : s->tail;
    uint64_t steps = 1;
    for (;;) {
        ap__cache_node *node = ap__cache_node_at(c, s, o);
        /* bound: hits racing the hand could re-set bits forever; after two
         * laps take the candidate in hand (SIEVE's choice when no hit races) */
        if (!AP_ATOMIC_LOAD(&node->visited, memory_order_relaxed) || steps > 2 * (uint64_t)s->cap)
            break;
        /* relaxed: the bit orders nothing; a racing hit is benign */
        AP_ATOMIC_STORE(&node->visited, 0u, memory_order_relaxed);
        o = node->newer != AP__CACHE_NIL ? node->newer : s->tail;
        steps++;
    }
    /* Without racing hits at most cap + 1 steps: every step clears a bit,
     * and after one lap all are clear. */
    AP_ATOMIC_STORE(&s->hand_steps,
                    AP_ATOMIC_LOAD(&s->hand_steps, memory_order_relaxed) + steps,
                    memory_order_relaxed);
    s->hand = o; /* ap__cache_unlink then moves it on to o's newer neighbour */
    return o;
}

/* Bump a writer-only counter (under the lock): load + store, no RMW. */
AP_FORCE_INLINE void ap__cache_count(AP_ATOMIC_T(uint64_t) *ctr)
{
    AP_ATOMIC_STORE(ctr, AP_ATOMIC_LOAD(ctr, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* The entry's deadline: the earlier of its write and access deadlines. */
AP_FORCE_INLINE uint64_t ap__cache_deadline(ap__cache_cold *ck)
{
    /* relaxed: under the shard lock (put and maintain); a hit's racing
     * raise of aexp is monotonic and only delays a reclaim (ORDERING) */
    uint64_t w = AP_ATOMIC_LOAD(&ck->wexp, memory_order_relaxed);
    uint64_t a = AP_ATOMIC_LOAD(&ck->aexp, memory_order_relaxed); /* relaxed: see above, monotonic */
    return w < a ? w : a;
}

AP_FORCE_INLINE uint64_t ap__cache_after(uint64_t now, uint64_t dur)
{
    return dur == 0 || dur == AP_CACHE_NEVER ? UINT64_MAX
           : now > UINT64_MAX - dur          ? UINT64_MAX - 1
                                             : now + dur;
}

/* Timer wheel (under the shard lock). Take node n out of its bucket. */
AP_API void ap__cache_wheel_unlink(const ap_cache *c, ap__cache_shard *s, uint32_t n)
{
    ap__cache_node *node = ap__cache_node_at(c, s, n);
    if (node->wbucket == AP__CACHE_WNONE) /* always, in an untimed cache */
        return;
    ap__cache_cold *ck = ap__cache_cold_at(c, s, n);
    if (ck->wprev != AP__CACHE_NIL)
        ap__cache_cold_at(c, s, ck->wprev)->wnext = ck->wnext;
    else
        s->wheel[node->wbucket] = ck->wnext;
    if (ck->wnext != AP__CACHE_NIL)
        ap__cache_cold_at(c, s, ck->wnext)->wprev = ck->wprev;
    node->wbucket = AP__CACHE_WNONE;
    ck->wprev = ck->wnext = AP__CACHE_NIL;
}

/* The bucket of @deadline at wheel time @now (both ap_cache and
 * ap_cache_kv): the lowest level whose 64 buckets reach it from @now; the
 * top level's farthest bucket if none does; the current bucket if it has
 * passed. */
AP_API uint32_t ap__cache_wheel_bucket(uint64_t deadline, uint64_t now)
{
    uint64_t t = now >> AP__CACHE_WSHIFT;
    unsigned k = 0;
    if (deadline > now) {
        for (;; k++) {
            unsigned sh = AP__CACHE_WSHIFT + 6 * k;
            uint64_t dt = deadline >> sh, nt = now >> sh;
            if (dt - nt < 64) {
                t = dt;
                break;
            }
            if (k == AP__CACHE_WLEVELS - 1) {
                t = nt + 63;
                break;
            }
        }
    }
    uint32_t b = (uint32_t)(k * 64 + (t & 63));
    return b;
}

/* Put node n (in no bucket) in the bucket of @deadline. */
AP_API void ap__cache_wheel_add(const ap_cache *c, ap__cache_shard *s, uint32_t n,
                                uint64_t deadline)
{
    ap__cache_node *node = ap__cache_node_at(c, s, n);
    AP_ASSERT(node->wbucket == AP__CACHE_WNONE);
    if (deadline == UINT64_MAX)
        return;
    uint32_t b = ap__cache_wheel_bucket(deadline, s->wnow);
    ap__cache_cold *ck = ap__cache_cold_at(c, s, n);
    node->wbucket = (uint16_t)b;
    ck->wprev = AP__CACHE_NIL;
    ck->wnext = s->wheel[b];
    if (s->wheel[b] != AP__CACHE_NIL)
        ap__cache_cold_at(c, s, s->wheel[b])->wprev = n;
    s->wheel[b] = n;
}

/* Reclaim expired node n (under the lock, in no bucket). */
AP_API void ap__cache_expire(const ap_cache *c, ap__cache_shard *s, uint32_t n)
{
    ap__cache_node *node = ap__cache_node_at(c, s, n);
    uint64_t key = AP_ATOMIC_LOAD(&node->key, memory_order_relaxed); /* relaxed: under the shard lock */
    uint32_t slot;
    ap__cache_write_begin(s);
    uint32_t found = ap__cache_find(c, s, ap__mix64(key), key, &slot);
    AP_ASSERT(found == n);
    (void)found;
    ap__cache_index_delete(c, s, slot);
    ap__cache_unlink(c, s, n);
    node->older = s->free_list;
    s->free_list = n;
    s->used--;
    AP_ATOMIC_STORE(&s->len, (size_t)s->used, memory_order_relaxed); /* relaxed: a snapshot for len() */
    ap__cache_write_end(s);
    ap__cache_count(&s->expirations);
}

/* Advance shard s's wheel to @now (under the lock): every bucket whose
 * tick lies in [old tick, new tick] at each level (64 at most) is
 * emptied; its entries that are due are reclaimed, the others placed
 * again (lower, or later when a hit moved their access deadline). */
AP_API size_t ap__cache_advance(const ap_cache *c, ap__cache_shard *s, uint64_t now)
{
    uint64_t old = s->wnow;
    size_t gone = 0;
    if (now < old)
        now = old; /* a clock that went back: nothing new is due */
    if (now == UINT64_MAX)
        now = UINT64_MAX - 1; /* UINT64_MAX is "never" as a deadline */
    s->wnow = now;
    for (unsigned k = 0; k < AP__CACHE_WLEVELS; k++) {
        unsigned sh = AP__CACHE_WSHIFT + 6 * k;
        uint64_t t0 = old >> sh, span = (now >> sh) - t0 + 1;
        if (span > 64)
            span = 64;
        for (uint64_t i = 0; i < span; i++) {
            uint32_t b = (uint32_t)(k * 64 + ((t0 + i) & 63));
            uint32_t n = s->wheel[b];
            s->wheel[b] = AP__CACHE_NIL;
            while (n != AP__CACHE_NIL) {
                ap__cache_cold *ck = ap__cache_cold_at(c, s, n);
                uint32_t next = ck->wnext;
                ap__cache_node_at(c, s, n)->wbucket = AP__CACHE_WNONE;
                ck->wprev = ck->wnext = AP__CACHE_NIL;
                uint64_t dl = ap__cache_deadline(ck);
                if (dl <= now) {
                    ap__cache_expire(c, s, n);
                    gone++;
                } else {
                    ap__cache_wheel_add(c, s, n, dl);
                }
                n = next;
            }
        }
    }
    return gone;
}

AP_API size_t ap_cache_maintain(ap_cache *c, uint64_t now)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    size_t gone = 0;
    if (!c->timed)
        return 0;
    for (size_t i = 0; i < c->nshards; i++) {
        ap__cache_shard *s = &c->shards[i];
        ap__lock_acquire(&s->lock);
        gone += ap__cache_advance(c, s, now);
        ap__lock_release(&s->lock);
    }
    return gone;
}

/* Whether a hit on node is expired at now (timed caches). */
AP_FORCE_INLINE bool ap__cache_dead(uint64_t wexp, uint64_t aexp, uint64_t now)
{
    if (now == UINT64_MAX) /* a deadline of UINT64_MAX is "never", at any now */
        now = UINT64_MAX - 1;
    return now >= wexp || now >= aexp;
}

/* A hit at now: push the access deadline (relaxed CAS-max: hits never
 * lower it; a hit racing a recycle of the node stores at most its own
 * now + eaa, which the new entry's put already reached or passed). */
AP_FORCE_INLINE void ap__cache_touch(const ap_cache *c, ap__cache_cold *ck, uint64_t now)
{
    uint64_t eaa = c->desc.expire_after_access;
    if (eaa == 0)
        return;
    uint64_t want = ap__cache_after(now, eaa);
    /* relaxed: a monotonic maximum that orders no data; the CAS re-validates */
    uint64_t cur = AP_ATOMIC_LOAD(&ck->aexp, memory_order_relaxed);
    while (cur < want && /* relaxed: monotonic maximum, the CAS re-validates */
           !AP_ATOMIC_CAS_WEAK(&ck->aexp, &cur, want, memory_order_relaxed,
                               memory_order_relaxed)) { /* relaxed: monotonic, CAS re-validates */
    }
}

/* The get under the shard lock (the bounded fallback; big values). */
AP_API ap_status ap__cache_get_locked(ap_cache *c, ap__cache_shard *s, uint64_t h, uint64_t key,
                                      void *out, uint64_t now, uint64_t *born, bool count)
{
    uint32_t slot;
    ap__lock_acquire(&s->lock);
    uint32_t n = ap__cache_find(c, s, h, key, &slot);
    if (n != AP__CACHE_NIL) {
        ap__cache_node *node = ap__cache_node_at(c, s, n);
        ap__cache_cold *ck = c->timed ? ap__cache_cold_of(c, node) : NULL;
        if (ck && ap__cache_dead(AP_ATOMIC_LOAD(&ck->wexp, memory_order_relaxed),
                                 AP_ATOMIC_LOAD(&ck->aexp, memory_order_relaxed), now)) {
            n = AP__CACHE_NIL; /* hard expiry: never returned */
        } else {
            if (out)
                ap__cache_load_value(c, node, out);
            if (born) /* an untimed cache has no write time: 0, as the fast path */
                *born = ck ? AP_ATOMIC_LOAD(&ck->born, memory_order_relaxed) : 0;
            AP_ATOMIC_STORE(&node->visited, 1u, memory_order_relaxed);
            if (ck)
                ap__cache_touch(c, ck, now);
        }
    }
    ap__lock_release(&s->lock);
    if (count) { /* relaxed: statistics only */
        ap__cache_ctr *ctr = ap__cache_ctr_of(c);
        AP_ATOMIC_FETCH_ADD(n != AP__CACHE_NIL ? &ctr->hits : &ctr->misses, 1u,
                            memory_order_relaxed);
    }
    return n != AP__CACHE_NIL ? AP_OK : AP_EMPTY;
}

/* The get: lock-free seqlock read; @now is ignored by untimed caches;
 * *born (when not NULL) receives the hit's write time; @count: add to
 * hits/misses; @timed: c->timed, a constant in each of ap__cache_read's
 * two calls, so an untimed get carries no deadline code (nor registers). */
AP_FORCE_INLINE ap_status ap__cache_read_as(ap_cache *c, uint64_t key, void *out, uint64_t now,
                                            uint64_t *born, bool count, bool timed)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    uint64_t h = ap__mix64(key);
    ap__cache_shard *s = ap__cache_shard_of(c, h);
    if (AP_UNLIKELY(c->words > AP__CACHE_FAST_WORDS))
        return ap__cache_get_locked(c, s, h, key, out, now, born, count);
    uint64_t copy[AP__CACHE_FAST_WORDS];
    for (unsigned tries = 0; tries < AP_SPIN_LIMIT; tries++) {
        /* acquire: pairs with the release store in ap__cache_write_end;
         * everything the last completed write section stored is visible */
        uint32_t s1 = AP_ATOMIC_LOAD(&s->seq, memory_order_acquire);
        if (AP_UNLIKELY(s1 & 1u)) {
            AP_CPU_RELAX();
            continue;
        }
        uint32_t slot;
        uint32_t n = ap__cache_find(c, s, h, key, &slot);
        ap__cache_node *node = NULL;
        uint64_t wexp = 0, aexp = 0, b = 0;
        if (n != AP__CACHE_NIL) {
            node = ap__cache_node_at(c, s, n);
            AP_ATOMIC_T(uint64_t) *w = ap__cache_words(node);
            for (size_t k = 0; k < c->words; k++)
                copy[k] = AP_ATOMIC_LOAD(&w[k], AP__SEQLOCK_MO_LOAD);
            if (timed) { /* relaxed: validated by the seqlock, like the value */
                ap__cache_cold *ck = ap__cache_cold_at(c, s, n); /* in the node's line */
                wexp = AP_ATOMIC_LOAD(&ck->wexp, AP__SEQLOCK_MO_LOAD); /* relaxed: seqlock */
                aexp = AP_ATOMIC_LOAD(&ck->aexp, AP__SEQLOCK_MO_LOAD); /* relaxed: seqlock */
                b = AP_ATOMIC_LOAD(&ck->born, AP__SEQLOCK_MO_LOAD); /* relaxed: seqlock */
            }
        }
        AP_TEST_YIELD();
        /* acquire fence: pairs with the release fence in
         * ap__cache_write_begin; if any load above saw a write of a section
         * begun after s1, the reload below sees its odd seq */
        AP__SEQLOCK_FENCE_ACQUIRE();
        if (AP_ATOMIC_LOAD(&s->seq, memory_order_relaxed) != s1) {
            AP_CPU_RELAX();
            continue;
        }
        if (n != AP__CACHE_NIL && timed && ap__cache_dead(wexp, aexp, now))
            n = AP__CACHE_NIL; /* hard expiry: an expired entry is a miss */
        if (n == AP__CACHE_NIL) {
            if (count) /* relaxed: statistics only */
                AP_ATOMIC_FETCH_ADD(&ap__cache_ctr_of(c)->misses, 1u, memory_order_relaxed);
            return AP_EMPTY;
        }
        /* SIEVE hit: set the bit only if clear, so hot entries stay shared
         * in every reader's cache (no write per hit) */
        if (!AP_ATOMIC_LOAD(&node->visited, memory_order_relaxed))
            AP_ATOMIC_STORE(&node->visited, 1u, memory_order_relaxed);
        if (timed)
            ap__cache_touch(c, ap__cache_cold_at(c, s, n), now);
        if (out && c->value_size == 8)
            memcpy(out, copy, 8); /* the common size: one move, not a memcpy call */
        else if (out)
            memcpy(out, copy, c->value_size);
        if (born)
            *born = b;
        if (count)
            AP_ATOMIC_FETCH_ADD(&ap__cache_ctr_of(c)->hits, 1u, memory_order_relaxed);
        return AP_OK;
    }
    /* writers kept overlapping us */
    return ap__cache_get_locked(c, s, h, key, out, now, born, count);
}

AP_FORCE_INLINE ap_status ap__cache_read(ap_cache *c, uint64_t key, void *out, uint64_t now,
                                         uint64_t *born, bool count)
{
    AP_ASSERT(c != NULL);
    if (c->timed)
        return ap__cache_read_as(c, key, out, now, born, count, true);
    return ap__cache_read_as(c, key, out, now, born, count, false);
}

AP_API ap_status ap_cache_get(ap_cache *c, uint64_t key, void *out)
{
    AP_ASSERT(c != NULL);
    return ap__cache_read(c, key, out, c->timed ? ap_clock_now(&c->desc.clock) : 0, NULL, true);
}

AP_API ap_status ap_cache_get_at(ap_cache *c, uint64_t key, void *out, uint64_t now)
{
    return ap__cache_read(c, key, out, now, NULL, true);
}

/* Stamp node's times for a put at now with ttl (inside the write section). */
AP_FORCE_INLINE void ap__cache_stamp(const ap_cache *c, ap__cache_shard *s, uint32_t n,
                                     uint64_t now, uint64_t ttl)
{
    if (!c->timed) /* an untimed cache has no cold part */
        return;
    ap__cache_cold *ck = ap__cache_cold_at(c, s, n);
    uint64_t wexp = ap__cache_after(now, ttl ? ttl : c->desc.expire_after_write);
    uint64_t aexp = ap__cache_after(now, c->desc.expire_after_access);
    /* relaxed: inside the shard's seqlock write section, like the value:
     * a reader validates what it read by the seqlock (the fences in
     * ap__cache_write_begin / ap__cache_read) */
    AP_ATOMIC_STORE(&ck->wexp, wexp, AP__SEQLOCK_MO_STORE); /* relaxed: seqlock */
    AP_ATOMIC_STORE(&ck->aexp, aexp, AP__SEQLOCK_MO_STORE); /* relaxed: seqlock */
    AP_ATOMIC_STORE(&ck->born, now, AP__SEQLOCK_MO_STORE);  /* relaxed: seqlock */
}

AP_API void ap__cache_put(ap_cache *c, uint64_t key, const void *val, uint64_t now, uint64_t ttl,
                          ap_cache_victim *victim)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    AP_ASSERT(val != NULL || c->value_size == 0);
    uint64_t h = ap__mix64(key);
    ap__cache_shard *s = ap__cache_shard_of(c, h);
    bool evicted = false;
    uint32_t slot;
    ap__lock_acquire(&s->lock);
    uint32_t n = ap__cache_find(c, s, h, key, &slot);
    ap__cache_node *node;
    if (n != AP__CACHE_NIL) { /* update: an access, no eviction */
        node = ap__cache_node_at(c, s, n);
        ap__cache_write_begin(s);
        ap__cache_store_value(c, node, val);
        ap__cache_stamp(c, s, n, now, ttl);
        ap__cache_write_end(s);
        AP_ATOMIC_STORE(&node->visited, 1u, memory_order_relaxed);
        if (c->timed) {
            ap__cache_wheel_unlink(c, s, n);
            ap__cache_wheel_add(c, s, n, ap__cache_deadline(ap__cache_cold_at(c, s, n)));
        }
        ap__cache_count(&s->updates);
        ap__lock_release(&s->lock);
        if (victim)
            victim->evicted = false;
        return;
    }
    ap__cache_write_begin(s);
    if (s->used == s->cap) {
        n = ap__cache_sieve(c, s);
        node = ap__cache_node_at(c, s, n);
        uint64_t old = AP_ATOMIC_LOAD(&node->key, memory_order_relaxed);
        if (victim) {
            victim->key = old;
            if (victim->value)
                ap__cache_load_value(c, node, victim->value);
        }
        uint32_t vslot;
        uint32_t found = ap__cache_find(c, s, ap__mix64(old), old, &vslot);
        AP_ASSERT(found == n);
        (void)found;
        ap__cache_index_delete(c, s, vslot);
        ap__cache_unlink(c, s, n);
        ap__cache_wheel_unlink(c, s, n);
        s->used--;
        ap__cache_count(&s->evictions);
        evicted = true;
        /* the delete may have shifted entries: find our empty slot again */
        (void)ap__cache_find(c, s, h, key, &slot);
    } else {
        n = s->free_list;
        node = ap__cache_node_at(c, s, n);
        s->free_list = node->older;
    }
    AP_ATOMIC_STORE(&node->key, key, AP__SEQLOCK_MO_STORE);
    AP_ATOMIC_STORE(&node->visited, 0u, memory_order_relaxed);
    ap__cache_store_value(c, node, val);
    ap__cache_stamp(c, s, n, now, ttl);
    /* link at the head (newest) */
    node->newer = AP__CACHE_NIL;
    node->older = s->head;
    if (s->head != AP__CACHE_NIL)
        ap__cache_node_at(c, s, s->head)->newer = n;
    else
        s->tail = n;
    s->head = n;
    AP_ATOMIC_STORE(&s->index[slot], (n + 1) | ap__cache_tag(s, h), AP__SEQLOCK_MO_STORE);
    s->used++;
    AP_ATOMIC_STORE(&s->len, (size_t)s->used, memory_order_relaxed);
    ap__cache_write_end(s);
    if (c->timed)
        ap__cache_wheel_add(c, s, n, ap__cache_deadline(ap__cache_cold_at(c, s, n)));
    ap__cache_count(&s->inserts);
    ap__lock_release(&s->lock);
    if (victim)
        victim->evicted = evicted;
}

AP_API void ap_cache_put(ap_cache *c, uint64_t key, const void *val, ap_cache_victim *victim)
{
    AP_ASSERT(c != NULL);
    ap__cache_put(c, key, val, c->timed ? ap_clock_now(&c->desc.clock) : 0, 0, victim);
}

AP_API ap_status ap_cache_put_ttl(ap_cache *c, uint64_t key, const void *val, uint64_t now,
                                  uint64_t ttl, ap_cache_victim *victim)
{
    AP_ASSERT(c != NULL);
    if (!c->timed)
        return AP_INVAL;
    ap__cache_put(c, key, val, now, ttl, victim);
    return AP_OK;
}

AP_API ap_status ap_cache_remove(ap_cache *c, uint64_t key, void *out)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    uint64_t h = ap__mix64(key);
    ap__cache_shard *s = ap__cache_shard_of(c, h);
    uint32_t slot;
    ap__lock_acquire(&s->lock);
    uint32_t n = ap__cache_find(c, s, h, key, &slot);
    if (n == AP__CACHE_NIL) {
        ap__lock_release(&s->lock);
        return AP_EMPTY;
    }
    ap__cache_node *node = ap__cache_node_at(c, s, n);
    if (out)
        ap__cache_load_value(c, node, out);
    ap__cache_write_begin(s);
    ap__cache_index_delete(c, s, slot);
    ap__cache_unlink(c, s, n);
    ap__cache_wheel_unlink(c, s, n);
    node->older = s->free_list;
    s->free_list = n;
    s->used--;
    AP_ATOMIC_STORE(&s->len, (size_t)s->used, memory_order_relaxed);
    ap__cache_write_end(s);
    ap__cache_count(&s->removes);
    ap__lock_release(&s->lock);
    return AP_OK;
}

/* ---- loading: the single-flight table (both caches; all under t->lock) ---- */

AP_FORCE_INLINE ap__cache_load *ap__cache_slot(const ap__cache_flights *t, uint32_t i)
{
    return (ap__cache_load *)(void *)(t->slots + (size_t)i * t->slot_bytes);
}

AP_FORCE_INLINE unsigned char *ap__cache_slot_value(ap__cache_load *l)
{
    return (unsigned char *)l + AP__ALIGN_UP(sizeof(ap__cache_load), 8);
}

AP_FORCE_INLINE unsigned char *ap__cache_slot_key(const ap__cache_flights *t, ap__cache_load *l)
{
    return ap__cache_slot_value(l) + ap__align_up(t->vsize, 8);
}

/* Set up a table of n slots in mem (n * slot_bytes bytes). */
AP_API void ap__cache_flights_init(ap__cache_flights *t, unsigned char *mem, size_t n,
                                   size_t vsize, size_t kcap, uint64_t neg_ttl)
{
    t->slots = mem;
    t->vsize = vsize;
    t->kcap = kcap;
    t->slot_bytes = AP__CACHE_LOAD_BYTES(vsize) + ap__align_up(kcap, 8);
    t->n = (uint32_t)n;
    t->neg_ttl = neg_ttl;
    AP_ATOMIC_INIT(&t->lock.held, 0u);
    ap_waitlist_init(&t->lwait);
    for (size_t i = 0; i < n; i++) {
        ap__cache_load *l = ap__cache_slot(t, (uint32_t)i);
        /* as lwait (one registration syscall, not one per slot) */
        AP_ATOMIC_INIT(&l->wl.lock.held, 0u);
        AP_ATOMIC_INIT(&l->wl.count, (size_t)0);
        l->wl.head = l->wl.tail = NULL;
        l->wl.asym = t->lwait.asym;
        l->key = 0;
        l->until = 0;
        l->state = AP__CACHE_L_FREE;
        l->refs = 0;
        l->status = AP_NOT_READY;
        l->klen = 0;
    }
    AP_ATOMIC_INIT(&t->loads, 0u);
    AP_ATOMIC_INIT(&t->load_joins, 0u);
    AP_ATOMIC_INIT(&t->load_failures, 0u);
    AP_ATOMIC_INIT(&t->refreshes, 0u);
    AP_ATOMIC_INIT(&t->negative_hits, 0u);
}

/* Whether slot l belongs to the key (hash; kv: and its bytes). */
AP_FORCE_INLINE bool ap__cache_slot_is(const ap__cache_flights *t, ap__cache_load *l,
                                       uint64_t hash, const void *kb, size_t klen)
{
    return l->key == hash && l->klen == klen &&
           (klen == 0 || memcmp(ap__cache_slot_key(t, l), kb, klen) == 0);
}

/* The slot of the load of the key in flight, or NIL. O(max_loads). */
AP_API uint32_t ap__cache_inflight(const ap__cache_flights *t, uint64_t hash, const void *kb,
                                   size_t klen)
{
    for (uint32_t i = 0; i < t->n; i++) {
        ap__cache_load *l = ap__cache_slot(t, i);
        if (l->state == AP__CACHE_L_RUNNING && ap__cache_slot_is(t, l, hash, kb, klen))
            return i;
    }
    return AP__CACHE_NIL;
}

/* The key's remembered failure at now (a failed slot with now < until), or
 * NIL; a NEG slot of the key whose time is up is freed on the way. A
 * failure is remembered from its completion on: DONE (waiters still to
 * read it) as well as NEG (all have). */
AP_API uint32_t ap__cache_negative(const ap__cache_flights *t, uint64_t hash, const void *kb,
                                   size_t klen, uint64_t now)
{
    if (now == UINT64_MAX)
        now = UINT64_MAX - 1; /* UINT64_MAX is "never" as a deadline */
    for (uint32_t i = 0; i < t->n; i++) {
        ap__cache_load *l = ap__cache_slot(t, i);
        if ((l->state == AP__CACHE_L_NEG || (l->state == AP__CACHE_L_DONE && l->until != 0)) &&
            ap__cache_slot_is(t, l, hash, kb, klen)) {
            if (now < l->until)
                return i;
            if (l->state == AP__CACHE_L_NEG)
                l->state = AP__CACHE_L_FREE;
        }
    }
    return AP__CACHE_NIL;
}

/* Claim a slot for a load of the key with refs references, or NIL: a FREE
 * one, else the remembered failure that ends first (forgotten early). */
AP_API uint32_t ap__cache_claim(ap__cache_flights *t, uint64_t hash, const void *kb, size_t klen,
                                uint32_t refs)
{
    uint32_t pick = AP__CACHE_NIL;
    for (uint32_t i = 0; i < t->n; i++) {
        ap__cache_load *l = ap__cache_slot(t, i);
        if (l->state == AP__CACHE_L_FREE) {
            pick = i;
            break;
        }
        if (l->state == AP__CACHE_L_NEG &&
            (pick == AP__CACHE_NIL || l->until < ap__cache_slot(t, pick)->until))
            pick = i;
    }
    if (pick == AP__CACHE_NIL)
        return AP__CACHE_NIL;
    ap__cache_load *l = ap__cache_slot(t, pick);
    l->state = AP__CACHE_L_RUNNING;
    l->key = hash;
    l->klen = (uint32_t)klen;
    if (klen)
        memcpy(ap__cache_slot_key(t, l), kb, klen);
    l->refs = refs;
    l->until = 0;
    l->status = AP_NOT_READY;
    ap__cache_count(&t->loads);
    return pick;
}

/* A DONE slot nobody holds any more: remembered (NEG) or FREE. */
AP_FORCE_INLINE void ap__cache_settle(ap__cache_load *l)
{
    l->state = l->until != 0 ? AP__CACHE_L_NEG : AP__CACHE_L_FREE;
}

/* Drop one reference; true when that made the slot claimable. */
AP_FORCE_INLINE bool ap__cache_unref(ap__cache_load *l)
{
    AP_ASSERT(l->refs > 0);
    if (--l->refs == 0 && l->state == AP__CACHE_L_DONE) {
        ap__cache_settle(l);
        return true;
    }
    return false;
}

/* The load in slot l completed with status at now (the result, if any, is
 * in the slot already): DONE, and a failure is remembered for neg_ttl.
 * True when the slot became claimable (nobody was attached). */
AP_API bool ap__cache_done(ap__cache_flights *t, ap__cache_load *l, ap_status status,
                           uint64_t now)
{
    if (status != AP_OK)
        ap__cache_count(&t->load_failures);
    l->status = status;
    l->until = status != AP_OK && t->neg_ttl != 0 ? ap__cache_after(now, t->neg_ttl) : 0;
    l->state = AP__CACHE_L_DONE;
    if (l->refs == 0) { /* a refresh nobody joined, or every waiter left */
        ap__cache_settle(l);
        return true;
    }
    return false;
}

/* What a get_or_load future of either cache does beside the table. */
typedef struct ap__cache_fops {
    /* look the key up at now; a hit fills the future's out: true. first:
     * the poll's first look (counted; may start a refresh); else the
     * re-read under the table lock (not counted) */
    bool (*read)(void *self, uint64_t now, bool first);
    void (*load)(void *self); /* call the loader (outside every lock) */
    /* a result that arrived for a future that cancelled (NULL: nothing;
     * ap_cache_kv: unpin) */
    void (*drop)(void *self, const void *result);
} ap__cache_fops;

/* Attached to slot f->slot: completes if the load is DONE; else false. */
AP_API bool ap__cache_ff_try(ap__cache_flights *t, ap__cache_ff *f, void *out)
{
    ap__cache_load *l = ap__cache_slot(t, f->slot);
    ap__lock_acquire(&t->lock);
    bool done = l->state == AP__CACHE_L_DONE;
    ap__lock_release(&t->lock);
    if (!done)
        return false;
    /* off the slot's list before our reference goes (the slot may then be
     * reused); a wake it got is for this load only: nobody to pass it to */
    (void)ap_waitlist_cancel(&l->wl, &f->waiter);
    ap__lock_acquire(&t->lock);
    ap_status st = l->status;
    if (st == AP_OK && out && t->vsize)
        memcpy(out, ap__cache_slot_value(l), t->vsize);
    bool freed = ap__cache_unref(l);
    ap__lock_release(&t->lock);
    if (freed)
        (void)ap_waitlist_wake_all(&t->lwait);
    f->slot = AP__CACHE_NIL;
    f->status = st;
    return true;
}

/* The poll of a get_or_load future of either cache (key: hash, and the
 * bytes for ap_cache_kv). */
AP_API ap_poll ap__cache_ff_poll(ap__cache_flights *t, ap__cache_ff *f,
                                 const ap__cache_fops *ops, void *self, uint64_t hash,
                                 const void *kb, size_t klen, void *out, ap_cx *cx)
{
    if (f->status != AP_NOT_READY)
        return AP_READY;
    if (f->slot == AP__CACHE_NIL) {
        if (f->on_lwait) { /* every lwait wake is a wake_all: nothing to pass */
            (void)ap_waitlist_cancel(&t->lwait, &f->waiter);
            f->on_lwait = 0;
        }
        if (ops->read(self, cx->now, true)) {
            f->status = AP_OK;
            return AP_READY;
        }
        bool start = false;
        ap_status neg = AP_OK;
        ap__lock_acquire(&t->lock);
        uint32_t i = ap__cache_inflight(t, hash, kb, klen), j;
        if (i != AP__CACHE_NIL) {
            ap__cache_slot(t, i)->refs++;
            ap__cache_count(&t->load_joins);
        } else if (ops->read(self, cx->now, false)) {
            /* a load completed between our miss and the table lock */
            ap__lock_release(&t->lock);
            f->status = AP_OK;
            return AP_READY;
        } else if ((j = ap__cache_negative(t, hash, kb, klen, cx->now)) != AP__CACHE_NIL) {
            neg = ap__cache_slot(t, j)->status; /* a remembered failure */
            ap__cache_count(&t->negative_hits);
        } else {
            i = ap__cache_claim(t, hash, kb, klen, 1);
            start = i != AP__CACHE_NIL;
        }
        ap__lock_release(&t->lock);
        if (neg != AP_OK) {
            f->status = neg;
            return AP_READY;
        }
        if (i == AP__CACHE_NIL) {
            /* every slot busy: wait for one to free (register, re-check) */
            ap_waitlist_register_cx(&t->lwait, &f->waiter, cx);
            f->on_lwait = 1;
            AP_TEST_YIELD();
            ap__lock_acquire(&t->lock);
            bool any = false;
            for (uint32_t k = 0; k < t->n && !any; k++) {
                ap__cache_load *l = ap__cache_slot(t, k);
                any = l->state == AP__CACHE_L_FREE || l->state == AP__CACHE_L_NEG ||
                      (l->state == AP__CACHE_L_RUNNING && ap__cache_slot_is(t, l, hash, kb, klen));
            }
            ap__lock_release(&t->lock);
            if (any)
                ap_waker_wake(cx->waker); /* poll again at once */
            return AP_PENDING;
        }
        f->slot = i;
        if (start)
            ops->load(self); /* outside every lock */
    }
    if (ap__cache_ff_try(t, f, out))
        return AP_READY;
    ap_waitlist_register_cx(&ap__cache_slot(t, f->slot)->wl, &f->waiter, cx);
    AP_TEST_YIELD(); /* between registering and re-checking */
    if (ap__cache_ff_try(t, f, out))
        return AP_READY;
    return AP_PENDING;
}

AP_API void ap__cache_ff_cancel(ap__cache_flights *t, ap__cache_ff *f, const ap__cache_fops *ops,
                                void *self)
{
    if (f->on_lwait) {
        (void)ap_waitlist_cancel(&t->lwait, &f->waiter);
        f->on_lwait = 0;
    }
    if (f->slot != AP__CACHE_NIL) { /* leave the load; it goes on */
        ap__cache_load *l = ap__cache_slot(t, f->slot);
        uint64_t owed[4]; /* a result that is ours but was not taken (drop) */
        bool drop = false;
        (void)ap_waitlist_cancel(&l->wl, &f->waiter);
        ap__lock_acquire(&t->lock);
        if (ops->drop && l->state == AP__CACHE_L_DONE && l->status == AP_OK) {
            AP_ASSERT(t->vsize <= sizeof owed);
            memcpy(owed, ap__cache_slot_value(l), t->vsize);
            drop = true;
        }
        bool freed = ap__cache_unref(l);
        ap__lock_release(&t->lock);
        if (drop)
            ops->drop(self, owed); /* outside every lock */
        if (freed)
            (void)ap_waitlist_wake_all(&t->lwait);
        f->slot = AP__CACHE_NIL;
    }
    if (f->status == AP_NOT_READY)
        f->status = AP_CANCELED;
}

AP_FORCE_INLINE void ap__cache_ff_init(ap__cache_ff *f)
{
    ap_waiter_init(&f->waiter);
    f->slot = AP__CACHE_NIL;
    f->on_lwait = 0;
    f->status = AP_NOT_READY;
}

/* A hit due for refresh: start one reload unless one is in flight or a
 * failure of the key is remembered. */
AP_API void ap__cache_refresh(ap_cache *c, uint64_t key, ap_cache_loader loader, uint64_t now)
{
    ap__cache_flights *t = &c->fl;
    ap__lock_acquire(&t->lock);
    uint32_t i = AP__CACHE_NIL;
    if (ap__cache_inflight(t, key, NULL, 0) == AP__CACHE_NIL &&
        ap__cache_negative(t, key, NULL, 0, now) == AP__CACHE_NIL) {
        i = ap__cache_claim(t, key, NULL, 0, 0); /* nobody waits for a refresh */
        if (i != AP__CACHE_NIL)
            ap__cache_count(&t->refreshes);
    }
    ap__lock_release(&t->lock);
    if (i != AP__CACHE_NIL)
        loader.load(loader.ctx, c, key); /* outside every lock */
}

AP_API ap_status ap_cache_load_complete(ap_cache *c, uint64_t key, ap_status status,
                                        const void *value, uint64_t now)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    ap__cache_flights *t = &c->fl;
    if (status == AP_NOT_READY || (unsigned)status > (unsigned)AP_FILTERED ||
        (status == AP_OK && value == NULL && c->value_size != 0))
        return AP_INVAL;
    ap__lock_acquire(&t->lock);
    uint32_t i = ap__cache_inflight(t, key, NULL, 0);
    if (i == AP__CACHE_NIL) {
        ap__lock_release(&t->lock);
        return AP_INVAL;
    }
    ap__cache_load *l = ap__cache_slot(t, i);
    if (status == AP_OK) {
        /* into the cache before the slot says DONE, under the table lock:
         * a miss that then finds no load in flight finds the value */
        ap__cache_put(c, key, value, now, 0, NULL);
        if (c->value_size)
            memcpy(ap__cache_slot_value(l), value, c->value_size);
    }
    bool freed = ap__cache_done(t, l, status, now);
    ap__lock_release(&t->lock);
    /* wakes after the lock; a slot freed and reused meanwhile only gets a
     * spurious wake */
    (void)ap_waitlist_wake_all(&l->wl);
    if (freed)
        (void)ap_waitlist_wake_all(&t->lwait);
    return AP_OK;
}

AP__FUTURE_VTABLE(ap__cache_lf, ap_cache_load_fut, ap_cache_load_poll, ap_cache_load_cancel)

AP_API bool ap__cache_lf_read(void *self, uint64_t now, bool first)
{
    ap_cache_load_fut *f = (ap_cache_load_fut *)self;
    uint64_t born = 0;
    if (ap__cache_read(f->c, f->key, f->out, now, first ? &born : NULL, first) != AP_OK)
        return false;
    uint64_t raw = f->c->desc.refresh_after_write;
    if (first && raw != 0 && now >= born && now - born >= raw)
        ap__cache_refresh(f->c, f->key, f->loader, now); /* serve the old value */
    return true;
}

AP_API void ap__cache_lf_load(void *self)
{
    ap_cache_load_fut *f = (ap_cache_load_fut *)self;
    f->loader.load(f->loader.ctx, f->c, f->key);
}

AP_API void ap_cache_get_or_load(ap_cache_load_fut *f, ap_cache *c, uint64_t key, void *out,
                                 ap_cache_loader loader)
{
    AP_ASSERT(f != NULL && c != NULL && loader.load != NULL);
    f->base.poll = ap__cache_lf_poll_v;
    f->base.cancel = ap__cache_lf_cancel_v;
    f->c = c;
    f->key = key;
    f->out = out;
    f->loader = loader;
    ap__cache_ff_init(&f->ff);
}

AP_API ap_poll ap_cache_load_poll(ap_cache_load_fut *f, ap_cx *cx)
{
    ap__cache_fops ops = {ap__cache_lf_read, ap__cache_lf_load, NULL};
    return ap__cache_ff_poll(&f->c->fl, &f->ff, &ops, f, f->key, NULL, 0, f->out, cx);
}

AP_API void ap_cache_load_cancel(ap_cache_load_fut *f)
{
    ap__cache_fops ops = {ap__cache_lf_read, ap__cache_lf_load, NULL};
    ap__cache_ff_cancel(&f->c->fl, &f->ff, &ops, f);
}

AP_API ap_status ap_cache_load_status(const ap_cache_load_fut *f)
{
    return f->ff.status;
}

AP_API ap_status ap_cache_get_or_load_wait(ap_cache *c, uint64_t key, void *out,
                                           ap_cache_loader loader, ap_deadline deadline)
{
    ap_cache_load_fut f;
    ap_cache_get_or_load(&f, c, key, out, loader);
    if (ap_block_on_until_clock(&f.base, deadline, &c->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.ff.status;
}

AP_API size_t ap_cache_len(const ap_cache *c)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    size_t n = 0;
    for (size_t i = 0; i < c->nshards; i++)
        n += AP_ATOMIC_LOAD(&c->shards[i].len, memory_order_relaxed); /* snapshot */
    return n;
}

AP_API size_t ap_cache_capacity(const ap_cache *c)
{
    AP_ASSERT(c != NULL);
    return c->capacity;
}

AP_API void ap_cache_stats_get(const ap_cache *c, ap_cache_stats *out)
{
    AP_ASSERT(c != NULL && c->shards != NULL && out != NULL);
    ap_cache_stats st = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < c->nshards; i++) { /* relaxed: a snapshot */
        ap__cache_shard *s = &c->shards[i];
        st.inserts += AP_ATOMIC_LOAD(&s->inserts, memory_order_relaxed);
        st.updates += AP_ATOMIC_LOAD(&s->updates, memory_order_relaxed);
        st.evictions += AP_ATOMIC_LOAD(&s->evictions, memory_order_relaxed);
        st.removes += AP_ATOMIC_LOAD(&s->removes, memory_order_relaxed);
        st.hand_steps += AP_ATOMIC_LOAD(&s->hand_steps, memory_order_relaxed);
        st.expirations += AP_ATOMIC_LOAD(&s->expirations, memory_order_relaxed);
    }
    st.loads = AP_ATOMIC_LOAD(&c->fl.loads, memory_order_relaxed);
    st.load_joins = AP_ATOMIC_LOAD(&c->fl.load_joins, memory_order_relaxed);
    st.load_failures = AP_ATOMIC_LOAD(&c->fl.load_failures, memory_order_relaxed);
    st.refreshes = AP_ATOMIC_LOAD(&c->fl.refreshes, memory_order_relaxed);
    st.negative_hits = AP_ATOMIC_LOAD(&c->fl.negative_hits, memory_order_relaxed);
    for (size_t i = 0; i < AP__CACHE_STRIPES; i++) {
        st.hits += AP_ATOMIC_LOAD(&c->ctrs[i].hits, memory_order_relaxed);
        st.misses += AP_ATOMIC_LOAD(&c->ctrs[i].misses, memory_order_relaxed);
    }
    *out = st;
}

/* ---- ap_cache_kv implementation (everything under the shard lock,
 * except release calls) ---- */

enum { AP__CKV_FREE = 0, AP__CKV_LIVE, AP__CKV_GHOST, AP__CKV_LIMBO };

typedef struct ap__ckv_node {
    ap_cache_key key;
    void *value;
    uint64_t weight;
    uint32_t hnext;        /* bucket chain; the free list; the limbo chain */
    uint32_t newer, older; /* SIEVE queue (LIVE only) */
    uint32_t refs;         /* pins */
    uint64_t wexp, aexp;   /* write / access deadline (UINT64_MAX: none) */
    uint32_t wprev, wnext; /* timer wheel links */
    uint16_t wbucket;      /* AP__CACHE_WNONE: in no bucket */
    uint8_t visited, state, cause;
} ap__ckv_node;

typedef struct ap__ckv_shard {
    AP_ALIGNAS(AP_CACHELINE) ap__lock lock;
    ap__ckv_node *nodes;
    uint32_t *buckets; /* node + 1, or 0 */
    uint32_t bmask, cap;
    uint32_t head, tail, hand, free_list;
    uint64_t max_weight;                  /* this shard's share (UINT64_MAX: none) */
    uint64_t weight;                      /* LIVE + GHOST + LIMBO */
    uint64_t stuck_weight;                /* pinned LIVE + GHOST: cannot be freed now */
    uint64_t limbo_weight;                /* LIMBO: being released, freed soon */
    uint32_t live, free_n, pinned_live, limbo_n; /* counts */
    uint64_t hits, misses, inserts, replaced, evicted, removed, released, expired;
    uint64_t wnow;                        /* the wheel's time */
    uint32_t wheel[AP__CACHE_WBUCKETS];   /* bucket heads (node or NIL) */
} ap__ckv_shard;

AP_API ap_cache_key ap_cache_key_of(const void *bytes, size_t len)
{
    const unsigned char *p = (const unsigned char *)bytes;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * UINT64_C(0x100000001b3);
    ap_cache_key k;
    k.bytes = bytes;
    k.len = len;
    k.hash = ap__mix64(h ^ (uint64_t)len);
    return k;
}

/* The desc with defaults filled in (shards 1, max_loads, max_key_len). */
AP_API ap_cache_kv_desc ap__ckv_resolved(const ap_cache_kv_desc *desc)
{
    ap_cache_kv_desc d = *desc;
    if (d.shards == 0)
        d.shards = 1;
    if (d.max_loads == 0)
        d.max_loads = AP_CACHE_LOADS;
    if (d.max_key_len == 0)
        d.max_key_len = 256;
    return d;
}

/* Bytes of one load slot of an ap_cache_kv (a pin, then the key copy). */
#define AP__CKV_SLOT_BYTES(max_key_len) \
    (AP__CACHE_LOAD_BYTES(sizeof(ap_cache_kv_pin)) + AP__ALIGN_UP((max_key_len), 8))

AP_API ap_status ap__ckv_layout(const ap_cache_kv_desc *desc, size_t *share, size_t *nb,
                                size_t *sb, size_t *total)
{
    if (desc == NULL || desc->release == NULL || desc->capacity == 0)
        return AP_INVAL;
    ap_cache_kv_desc d = ap__ckv_resolved(desc);
    if (d.max_loads > ((size_t)1 << 20) || d.max_key_len > ((size_t)1 << 20))
        return AP_INVAL;
    size_t s = desc->shards ? desc->shards : 1;
    if ((s & (s - 1)) != 0 || desc->capacity < s || s > ((size_t)1 << 31))
        return AP_INVAL;
    *share = desc->capacity / s + (desc->capacity % s != 0);
    if (*share > ((size_t)1 << 30))
        return AP_INVAL;
    *nb = ap__pow2_ceil(*share);
    size_t x;
    if (!ap__size_muladd(*share, sizeof(ap__ckv_node), 0, &x) ||
        !ap__size_muladd(*nb, sizeof(uint32_t), x, &x))
        return AP_INVAL;
    *sb = ap__align_up(x, AP_CACHELINE);
    if (*sb == 0 || !ap__size_muladd(s, *sb + sizeof(ap__ckv_shard), 0, total) ||
        !ap__size_muladd(d.max_loads, AP__CKV_SLOT_BYTES(d.max_key_len), *total, total))
        return AP_INVAL;
    return AP_OK;
}

AP_API ap_status ap_cache_kv_bytes(const ap_cache_kv_desc *desc, size_t *out)
{
    size_t share, nb, sb, total;
    AP_ASSERT(out != NULL);
    if (ap__ckv_layout(desc, &share, &nb, &sb, &total) != AP_OK)
        return AP_INVAL;
    *out = total;
    return AP_OK;
}

AP_API ap_status ap_cache_kv_init(ap_cache_kv *c, void *buf, size_t size,
                                  const ap_cache_kv_desc *desc)
{
    size_t share, nb, sb, total;
    AP_ASSERT(c != NULL);
    if (buf == NULL || (uintptr_t)buf % AP_CACHE_ALIGN != 0 ||
        ap__ckv_layout(desc, &share, &nb, &sb, &total) != AP_OK || size < total)
        return AP_INVAL;
    size_t s = desc->shards ? desc->shards : 1;
    ap__ckv_shard *sh = (ap__ckv_shard *)buf;
    unsigned char *region = (unsigned char *)(sh + s);
    for (size_t i = 0; i < s; i++, region += sb) {
        ap__ckv_shard *x = &sh[i];
        AP_ATOMIC_INIT(&x->lock.held, 0u);
        x->cap = (uint32_t)(desc->capacity / s + (i < desc->capacity % s));
        x->nodes = (ap__ckv_node *)(void *)region;
        x->buckets = (uint32_t *)(void *)(region + share * sizeof(ap__ckv_node));
        x->bmask = (uint32_t)(nb - 1);
        for (size_t b = 0; b < nb; b++)
            x->buckets[b] = 0;
        x->head = x->tail = x->hand = AP__CACHE_NIL;
        x->free_list = AP__CACHE_NIL;
        for (uint32_t n = x->cap; n-- > 0;) {
            ap__ckv_node *node = &x->nodes[n];
            memset(node, 0, sizeof *node);
            node->state = AP__CKV_FREE;
            node->wbucket = AP__CACHE_WNONE;
            node->hnext = x->free_list;
            x->free_list = n;
        }
        x->max_weight = desc->max_weight ? desc->max_weight / s + (desc->max_weight % s != 0)
                                         : UINT64_MAX;
        x->weight = x->stuck_weight = x->limbo_weight = 0;
        x->live = x->pinned_live = x->limbo_n = 0;
        x->free_n = x->cap;
        x->hits = x->misses = x->inserts = x->replaced = x->evicted = x->removed = x->released = 0;
        x->expired = 0;
        x->wnow = 0;
        for (size_t b = 0; b < AP__CACHE_WBUCKETS; b++)
            x->wheel[b] = AP__CACHE_NIL;
    }
    ap_cache_kv_desc d = ap__ckv_resolved(desc);
    ap__cache_flights_init(&c->fl, region, d.max_loads, sizeof(ap_cache_kv_pin), d.max_key_len,
                           d.negative_ttl_ns);
    c->shards = sh;
    c->nshards = s;
    c->bytes = total;
    c->desc = d;
    c->timed = d.expire_after_write != 0 || d.expire_after_access != 0;
    c->alloc = NULL;
    return AP_OK;
}

AP_FORCE_INLINE ap__ckv_shard *ap__ckv_shard_of(const ap_cache_kv *c, uint64_t hash)
{
    return &c->shards[(size_t)(ap__mix64(hash) >> 32) & (c->nshards - 1)];
}

AP_FORCE_INLINE bool ap__ckv_eq(const ap_cache_key *a, const ap_cache_key *b)
{
    return a->hash == b->hash && a->len == b->len &&
           (a->len == 0 || memcmp(a->bytes, b->bytes, a->len) == 0);
}

/* The LIVE node of key, or NIL; *link: the chain slot that points to it. */
AP_API uint32_t ap__ckv_find(ap__ckv_shard *s, const ap_cache_key *key, uint32_t **link)
{
    uint32_t *l = &s->buckets[(uint32_t)key->hash & s->bmask];
    while (*l != 0) {
        uint32_t n = *l - 1;
        if (ap__ckv_eq(&s->nodes[n].key, key)) {
            *link = l;
            return n;
        }
        l = &s->nodes[n].hnext;
    }
    *link = l;
    return AP__CACHE_NIL;
}

/* Timer wheel of a kv shard (under its lock): as ap__cache_wheel_*. */
AP_API void ap__ckv_wheel_unlink(ap__ckv_shard *s, uint32_t n)
{
    ap__ckv_node *node = &s->nodes[n];
    if (node->wbucket == AP__CACHE_WNONE)
        return;
    if (node->wprev != AP__CACHE_NIL)
        s->nodes[node->wprev].wnext = node->wnext;
    else
        s->wheel[node->wbucket] = node->wnext;
    if (node->wnext != AP__CACHE_NIL)
        s->nodes[node->wnext].wprev = node->wprev;
    node->wbucket = AP__CACHE_WNONE;
    node->wprev = node->wnext = AP__CACHE_NIL;
}

/* The node's deadline: the earlier of its write and access deadlines. */
AP_FORCE_INLINE uint64_t ap__ckv_deadline(const ap__ckv_node *node)
{
    return node->wexp < node->aexp ? node->wexp : node->aexp;
}

AP_API void ap__ckv_wheel_add(ap__ckv_shard *s, uint32_t n)
{
    ap__ckv_node *node = &s->nodes[n];
    uint64_t dl = ap__ckv_deadline(node);
    if (dl == UINT64_MAX)
        return;
    uint32_t b = ap__cache_wheel_bucket(dl, s->wnow);
    node->wbucket = (uint16_t)b;
    node->wprev = AP__CACHE_NIL;
    node->wnext = s->wheel[b];
    if (s->wheel[b] != AP__CACHE_NIL)
        s->nodes[s->wheel[b]].wprev = n;
    s->wheel[b] = n;
}

/* Take LIVE node n out of the index and the queue (the hand moves on). */
AP_API void ap__ckv_unlink(ap__ckv_shard *s, uint32_t n)
{
    ap__ckv_node *node = &s->nodes[n];
    ap__ckv_wheel_unlink(s, n);
    uint32_t *l;
    uint32_t found = ap__ckv_find(s, &node->key, &l);
    AP_ASSERT(found == n);
    (void)found;
    *l = node->hnext;
    if (s->hand == n)
        s->hand = node->newer;
    if (node->newer != AP__CACHE_NIL)
        s->nodes[node->newer].older = node->older;
    else
        s->head = node->older;
    if (node->older != AP__CACHE_NIL)
        s->nodes[node->older].newer = node->newer;
    else
        s->tail = node->newer;
    s->live--;
}

/* Node n leaves with @cause: a GHOST while pinned, else onto *limbo (to be
 * released after the lock). */
AP_API void ap__ckv_leave(ap__ckv_shard *s, uint32_t n, ap_cache_cause cause, uint32_t *limbo)
{
    ap__ckv_node *node = &s->nodes[n];
    ap__ckv_unlink(s, n);
    node->cause = (uint8_t)cause;
    if (node->refs > 0) {
        node->state = AP__CKV_GHOST; /* pinned: stuck already; its last unpin releases it */
        s->pinned_live--;
    } else {
        node->state = AP__CKV_LIMBO;
        s->limbo_weight += node->weight;
        s->limbo_n++;
        node->hnext = *limbo;
        *limbo = n;
    }
}

/* SIEVE over unpinned LIVE entries (one exists: the caller checked). */
AP_API uint32_t ap__ckv_victim(ap__ckv_shard *s)
{
    uint32_t o = s->hand != AP__CACHE_NIL ? s->hand : s->tail;
    for (uint64_t steps = 0;; steps++) {
        ap__ckv_node *node = &s->nodes[o];
        if (node->refs == 0 && (!node->visited || steps > 2 * (uint64_t)s->cap))
            break;
        if (node->refs == 0)
            node->visited = 0;
        o = node->newer != AP__CACHE_NIL ? node->newer : s->tail;
    }
    s->hand = o;
    return o;
}

/* After the lock: release the limbo chain, then free its nodes. */
AP_API void ap__ckv_bury(const ap_cache_kv *c, ap__ckv_shard *s, uint32_t limbo)
{
    if (limbo == AP__CACHE_NIL)
        return;
    uint32_t n = limbo;
    while (n != AP__CACHE_NIL) { /* LIMBO nodes are ours alone: no lock */
        ap__ckv_node *node = &s->nodes[n];
        uint32_t next = node->hnext;
        c->desc.release(c->desc.ctx, node->key, node->value, (ap_cache_cause)node->cause);
        n = next;
    }
    ap__lock_acquire(&s->lock);
    for (n = limbo; n != AP__CACHE_NIL;) {
        ap__ckv_node *node = &s->nodes[n];
        uint32_t next = node->hnext;
        s->weight -= node->weight;
        s->limbo_weight -= node->weight;
        s->limbo_n--;
        s->released++;
        node->state = AP__CKV_FREE;
        node->hnext = s->free_list;
        s->free_list = n;
        s->free_n++;
        n = next;
    }
    ap__lock_release(&s->lock);
}

/* A put at @now with @ttl (0: the desc's); @pin: NULL, or the new entry
 * comes out pinned once (ap_cache_kv_load_complete). */
AP_API ap_status ap__ckv_put(ap_cache_kv *c, ap_cache_key key, void *value, uint64_t weight,
                             uint64_t now, uint64_t ttl, ap_cache_kv_pin *pin)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    if (key.bytes == NULL && key.len != 0)
        return AP_INVAL;
    if (weight == 0)
        weight = c->desc.weigher ? c->desc.weigher(c->desc.ctx, key, value) : 1;
    ap__ckv_shard *s = ap__ckv_shard_of(c, key.hash);
    if (weight == 0 || weight > s->max_weight)
        return AP_INVAL;
    uint32_t limbo = AP__CACHE_NIL, *link;
    uint64_t wexp = UINT64_MAX, aexp = UINT64_MAX;
    if (c->timed) {
        wexp = ap__cache_after(now, ttl ? ttl : c->desc.expire_after_write);
        aexp = ap__cache_after(now, c->desc.expire_after_access);
    }
    ap__lock_acquire(&s->lock);
    for (;;) {
        /* feasible: the weight that cannot move (pinned entries, pinned
         * leavers) leaves room, and a node is free, in limbo or movable */
        if (s->stuck_weight > s->max_weight - weight ||
            s->free_n + s->limbo_n + (s->live - s->pinned_live) == 0) {
            ap__lock_release(&s->lock);
            ap__ckv_bury(c, s, limbo);
            return AP_FULL;
        }
        uint32_t old = ap__ckv_find(s, &key, &link);
        if (old != AP__CACHE_NIL) {
            ap__ckv_leave(s, old, AP_CACHE_CAUSE_REPLACED, &limbo);
            s->replaced++;
            continue;
        }
        if (s->free_n + s->limbo_n == 0 || s->weight - s->limbo_weight > s->max_weight - weight) {
            uint32_t v = ap__ckv_victim(s); /* movable > 0, by the check above */
            ap__ckv_leave(s, v, AP_CACHE_CAUSE_SIZE, &limbo);
            s->evicted++;
            continue;
        }
        if (s->free_n == 0 || s->weight > s->max_weight - weight) {
            /* the room is in limbo: ours (release it now) or another
             * put's (being released: wait for it) */
            ap__lock_release(&s->lock);
            if (limbo != AP__CACHE_NIL)
                ap__ckv_bury(c, s, limbo);
            else
                AP_CPU_RELAX();
            limbo = AP__CACHE_NIL;
            ap__lock_acquire(&s->lock);
            continue;
        }
        break;
    }
    uint32_t n = s->free_list;
    ap__ckv_node *node = &s->nodes[n];
    s->free_list = node->hnext;
    s->free_n--;
    node->key = key;
    node->value = value;
    node->weight = weight;
    node->refs = 0;
    node->visited = 0;
    node->state = AP__CKV_LIVE;
    node->hnext = 0;
    node->wexp = wexp;
    node->aexp = aexp;
    ap__ckv_wheel_add(s, n);
    if (pin) { /* pinned before anyone else can see it */
        node->refs = 1;
        s->pinned_live++;
        s->stuck_weight += weight;
        pin->value = value;
        pin->shard = (uint32_t)(s - c->shards);
        pin->node = n;
    }
    *link = n + 1; /* the empty end of key's chain, from the last find */
    node->newer = AP__CACHE_NIL;
    node->older = s->head;
    if (s->head != AP__CACHE_NIL)
        s->nodes[s->head].newer = n;
    else
        s->tail = n;
    s->head = n;
    s->live++;
    s->weight += weight;
    s->inserts++;
    ap__lock_release(&s->lock);
    ap__ckv_bury(c, s, limbo);
    return AP_OK;
}

AP_API ap_status ap_cache_kv_put(ap_cache_kv *c, ap_cache_key key, void *value, uint64_t weight)
{
    AP_ASSERT(c != NULL);
    return ap__ckv_put(c, key, value, weight, c->timed ? ap_clock_now(&c->desc.clock) : 0, 0,
                       NULL);
}

AP_API ap_status ap_cache_kv_put_ttl(ap_cache_kv *c, ap_cache_key key, void *value,
                                     uint64_t weight, uint64_t now, uint64_t ttl)
{
    AP_ASSERT(c != NULL);
    if (!c->timed)
        return AP_INVAL;
    return ap__ckv_put(c, key, value, weight, now, ttl, NULL);
}

/* The get at @now (untimed: ignored); @count: add to hits/misses. */
AP_API ap_status ap__ckv_get(ap_cache_kv *c, ap_cache_key key, ap_cache_kv_pin *pin,
                             uint64_t now, bool count)
{
    AP_ASSERT(c != NULL && c->shards != NULL && pin != NULL);
    ap__ckv_shard *s = ap__ckv_shard_of(c, key.hash);
    uint32_t *link;
    if (now == UINT64_MAX)
        now = UINT64_MAX - 1; /* UINT64_MAX is "never" as a deadline */
    ap__lock_acquire(&s->lock);
    uint32_t n = ap__ckv_find(s, &key, &link);
    if (n != AP__CACHE_NIL && c->timed && now >= ap__ckv_deadline(&s->nodes[n]))
        n = AP__CACHE_NIL; /* hard expiry: an expired entry is a miss */
    if (n == AP__CACHE_NIL) {
        s->misses += count;
        ap__lock_release(&s->lock);
        return AP_EMPTY;
    }
    ap__ckv_node *node = &s->nodes[n];
    if (node->refs++ == 0) {
        s->pinned_live++;
        s->stuck_weight += node->weight;
    }
    node->visited = 1;
    if (c->desc.expire_after_access) {
        /* it stays in its (earlier) wheel bucket: maintain places it again */
        uint64_t a = ap__cache_after(now, c->desc.expire_after_access);
        if (a > node->aexp)
            node->aexp = a;
    }
    s->hits += count;
    pin->value = node->value;
    pin->shard = (uint32_t)(s - c->shards);
    pin->node = n;
    ap__lock_release(&s->lock);
    return AP_OK;
}

AP_API ap_status ap_cache_kv_get(ap_cache_kv *c, ap_cache_key key, ap_cache_kv_pin *pin)
{
    AP_ASSERT(c != NULL);
    return ap__ckv_get(c, key, pin, c->timed ? ap_clock_now(&c->desc.clock) : 0, true);
}

AP_API ap_status ap_cache_kv_get_at(ap_cache_kv *c, ap_cache_key key, ap_cache_kv_pin *pin,
                                    uint64_t now)
{
    return ap__ckv_get(c, key, pin, now, true);
}

AP_API void ap_cache_kv_unpin(ap_cache_kv *c, ap_cache_kv_pin *pin)
{
    AP_ASSERT(c != NULL && c->shards != NULL && pin != NULL && pin->shard < c->nshards);
    ap__ckv_shard *s = &c->shards[pin->shard];
    uint32_t limbo = AP__CACHE_NIL;
    ap__lock_acquire(&s->lock);
    ap__ckv_node *node = &s->nodes[pin->node];
    AP_ASSERT(node->refs > 0 && (node->state == AP__CKV_LIVE || node->state == AP__CKV_GHOST));
    if (--node->refs == 0) {
        if (node->state == AP__CKV_LIVE) {
            s->pinned_live--;
            s->stuck_weight -= node->weight;
        } else { /* a leaver's last pin: release it now */
            s->stuck_weight -= node->weight;
            node->state = AP__CKV_LIMBO;
            s->limbo_weight += node->weight;
            s->limbo_n++;
            node->hnext = AP__CACHE_NIL;
            limbo = pin->node;
        }
    }
    ap__lock_release(&s->lock);
    pin->value = NULL;
    ap__ckv_bury(c, s, limbo);
}

AP_API ap_status ap_cache_kv_remove(ap_cache_kv *c, ap_cache_key key)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    ap__ckv_shard *s = ap__ckv_shard_of(c, key.hash);
    uint32_t limbo = AP__CACHE_NIL, *link;
    ap__lock_acquire(&s->lock);
    uint32_t n = ap__ckv_find(s, &key, &link);
    if (n != AP__CACHE_NIL) {
        ap__ckv_leave(s, n, AP_CACHE_CAUSE_EXPLICIT, &limbo);
        s->removed++;
    }
    ap__lock_release(&s->lock);
    ap__ckv_bury(c, s, limbo);
    return n != AP__CACHE_NIL ? AP_OK : AP_EMPTY;
}

AP_API size_t ap_cache_kv_maintain(ap_cache_kv *c, uint64_t now)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    size_t gone = 0;
    if (!c->timed)
        return 0;
    if (now == UINT64_MAX)
        now = UINT64_MAX - 1;
    for (size_t i = 0; i < c->nshards; i++) {
        ap__ckv_shard *s = &c->shards[i];
        uint32_t limbo = AP__CACHE_NIL;
        ap__lock_acquire(&s->lock);
        uint64_t old = s->wnow;
        if (now > old)
            s->wnow = now;
        uint64_t cur = s->wnow;
        for (unsigned k = 0; k < AP__CACHE_WLEVELS; k++) {
            unsigned sh = AP__CACHE_WSHIFT + 6 * k;
            uint64_t t0 = old >> sh, span = (cur >> sh) - t0 + 1;
            if (span > 64)
                span = 64;
            for (uint64_t j = 0; j < span; j++) {
                uint32_t b = (uint32_t)(k * 64 + ((t0 + j) & 63));
                uint32_t n = s->wheel[b];
                s->wheel[b] = AP__CACHE_NIL;
                while (n != AP__CACHE_NIL) {
                    ap__ckv_node *node = &s->nodes[n];
                    uint32_t next = node->wnext;
                    node->wbucket = AP__CACHE_WNONE;
                    node->wprev = node->wnext = AP__CACHE_NIL;
                    if (ap__ckv_deadline(node) <= cur) {
                        ap__ckv_leave(s, n, AP_CACHE_CAUSE_EXPIRED, &limbo);
                        s->expired++;
                        gone++;
                    } else {
                        ap__ckv_wheel_add(s, n);
                    }
                    n = next;
                }
            }
        }
        ap__lock_release(&s->lock);
        ap__ckv_bury(c, s, limbo);
    }
    return gone;
}

AP_API void ap_cache_kv_stats_get(ap_cache_kv *c, ap_cache_kv_stats *out)
{
    AP_ASSERT(c != NULL && c->shards != NULL && out != NULL);
    ap_cache_kv_stats st;
    memset(&st, 0, sizeof st);
    for (size_t i = 0; i < c->nshards; i++) {
        ap__ckv_shard *s = &c->shards[i];
        ap__lock_acquire(&s->lock);
        st.hits += s->hits;
        st.misses += s->misses;
        st.inserts += s->inserts;
        st.replaced += s->replaced;
        st.evicted += s->evicted;
        st.removed += s->removed;
        st.released += s->released;
        st.expired += s->expired;
        st.len += s->live;
        st.weight += s->weight;
        ap__lock_release(&s->lock);
    }
    st.loads = AP_ATOMIC_LOAD(&c->fl.loads, memory_order_relaxed); /* relaxed: a snapshot */
    st.load_joins = AP_ATOMIC_LOAD(&c->fl.load_joins, memory_order_relaxed);
    st.load_failures = AP_ATOMIC_LOAD(&c->fl.load_failures, memory_order_relaxed);
    st.negative_hits = AP_ATOMIC_LOAD(&c->fl.negative_hits, memory_order_relaxed);
    *out = st;
}

/* ---- ap_cache_kv loading: the same single-flight table as ap_cache ---- */

AP__FUTURE_VTABLE(ap__ckv_lf, ap_cache_kv_load_fut, ap_cache_kv_load_poll,
                  ap_cache_kv_load_cancel)

AP_API bool ap__ckv_lf_read(void *self, uint64_t now, bool first)
{
    ap_cache_kv_load_fut *f = (ap_cache_kv_load_fut *)self;
    return ap__ckv_get(f->c, f->key, f->out, now, first) == AP_OK; /* pins on a hit */
}

AP_API void ap__ckv_lf_load(void *self)
{
    ap_cache_kv_load_fut *f = (ap_cache_kv_load_fut *)self;
    f->loader.load(f->loader.ctx, f->c, f->key);
}

AP_API void ap__ckv_lf_drop(void *self, const void *result)
{
    ap_cache_kv_load_fut *f = (ap_cache_kv_load_fut *)self;
    ap_cache_kv_pin pin;
    memcpy(&pin, result, sizeof pin);
    ap_cache_kv_unpin(f->c, &pin); /* the pin the load took for us */
}

AP_API void ap_cache_kv_get_or_load(ap_cache_kv_load_fut *f, ap_cache_kv *c, ap_cache_key key,
                                    ap_cache_kv_pin *out, ap_cache_kv_loader loader)
{
    AP_ASSERT(f != NULL && c != NULL && out != NULL && loader.load != NULL);
    f->base.poll = ap__ckv_lf_poll_v;
    f->base.cancel = ap__ckv_lf_cancel_v;
    f->c = c;
    f->key = key;
    f->out = out;
    f->loader = loader;
    ap__cache_ff_init(&f->ff);
    if ((key.bytes == NULL && key.len != 0) || key.len > c->fl.kcap)
        f->ff.status = AP_INVAL; /* done at once: no slot could hold the key */
}

AP_API ap_poll ap_cache_kv_load_poll(ap_cache_kv_load_fut *f, ap_cx *cx)
{
    ap__cache_fops ops = {ap__ckv_lf_read, ap__ckv_lf_load, ap__ckv_lf_drop};
    return ap__cache_ff_poll(&f->c->fl, &f->ff, &ops, f, f->key.hash, f->key.bytes, f->key.len,
                             f->out, cx);
}

AP_API void ap_cache_kv_load_cancel(ap_cache_kv_load_fut *f)
{
    ap__cache_fops ops = {ap__ckv_lf_read, ap__ckv_lf_load, ap__ckv_lf_drop};
    ap__cache_ff_cancel(&f->c->fl, &f->ff, &ops, f);
}

AP_API ap_status ap_cache_kv_load_status(const ap_cache_kv_load_fut *f)
{
    return f->ff.status;
}

AP_API ap_status ap_cache_kv_load_complete(ap_cache_kv *c, ap_cache_key key, ap_status status,
                                           void *value, uint64_t weight, uint64_t now)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    ap__cache_flights *t = &c->fl;
    if (status == AP_NOT_READY || (unsigned)status > (unsigned)AP_FILTERED ||
        (key.bytes == NULL && key.len != 0) || key.len > t->kcap)
        return AP_INVAL;
    ap__lock_acquire(&t->lock);
    uint32_t i = ap__cache_inflight(t, key.hash, key.bytes, key.len);
    ap__lock_release(&t->lock);
    if (i == AP__CACHE_NIL)
        return AP_INVAL;
    /* Only this call completes slot i (once per loader call), so it stays
     * RUNNING meanwhile. The put runs outside the table lock (its
     * releases run outside every lock) and comes out pinned by us, so the
     * entry stays until the waiters' pins are added below. A miss between
     * the put and DONE finds the value (ORDERING). */
    ap_cache_kv_pin mine = {NULL, 0, 0};
    ap_status got = AP_OK;
    if (status == AP_OK) {
        got = ap__ckv_put(c, key, value, weight, now, 0, &mine);
        if (got == AP_INVAL)
            return AP_INVAL; /* nothing changed; the load still runs */
        if (got != AP_OK)
            status = got; /* AP_FULL: every waiter gets it; the value stays the caller's */
    }
    ap__lock_acquire(&t->lock);
    ap__cache_load *l = ap__cache_slot(t, i);
    if (status == AP_OK) {
        /* one pin per attached future, before any can see DONE (table
         * lock, then the shard lock: the order ap_cache uses) */
        ap__ckv_shard *s = &c->shards[mine.shard];
        ap__lock_acquire(&s->lock);
        s->nodes[mine.node].refs += l->refs;
        ap__lock_release(&s->lock);
        memcpy(ap__cache_slot_value(l), &mine, sizeof mine);
    }
    bool freed = ap__cache_done(t, l, status, now);
    ap__lock_release(&t->lock);
    if (status == AP_OK)
        ap_cache_kv_unpin(c, &mine); /* outside every lock: it may release */
    (void)ap_waitlist_wake_all(&l->wl);
    if (freed)
        (void)ap_waitlist_wake_all(&t->lwait);
    return got;
}

AP_API ap_status ap_cache_kv_get_or_load_wait(ap_cache_kv *c, ap_cache_key key,
                                              ap_cache_kv_pin *out, ap_cache_kv_loader loader,
                                              ap_deadline deadline)
{
    ap_cache_kv_load_fut f;
    ap_cache_kv_get_or_load(&f, c, key, out, loader);
    if (ap_block_on_until_clock(&f.base, deadline, &c->desc.clock) == AP_TIMEDOUT)
        return AP_TIMEDOUT;
    return f.ff.status;
}

AP_API void ap_cache_kv_fini(ap_cache_kv *c)
{
    AP_ASSERT(c != NULL && c->shards != NULL);
    for (size_t i = 0; i < c->nshards; i++) {
        ap__ckv_shard *s = &c->shards[i];
        uint32_t limbo = AP__CACHE_NIL;
        ap__lock_acquire(&s->lock);
        AP_ASSERT(s->pinned_live == 0 && s->stuck_weight == 0); /* no pin held */
        while (s->tail != AP__CACHE_NIL) {
            ap__ckv_leave(s, s->tail, AP_CACHE_CAUSE_EXPLICIT, &limbo);
            s->removed++;
        }
        ap__lock_release(&s->lock);
        ap__ckv_bury(c, s, limbo);
    }
    c->shards = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_cache_kv_create(ap_cache_kv **out, const ap_cache_kv_desc *desc,
                                    const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_cache_kv), AP_CACHELINE), total;
    AP_ASSERT(out != NULL);
    if (a == NULL || ap_cache_kv_bytes(desc, &total) != AP_OK || total > SIZE_MAX - hdr)
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(hdr + total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_cache_kv *c = (ap_cache_kv *)(void *)mem;
    ap_status st = ap_cache_kv_init(c, mem + hdr, total, desc);
    AP_ASSERT(st == AP_OK);
    (void)st;
    c->alloc = a;
    *out = c;
    return AP_OK;
}

AP_API void ap_cache_kv_destroy(ap_cache_kv *c)
{
    if (c == NULL)
        return;
    AP_ASSERT(c->alloc != NULL);
    const ap_allocator *a = c->alloc;
    size_t total = ap__align_up(sizeof(ap_cache_kv), AP_CACHELINE) + c->bytes;
    if (c->shards != NULL)
        ap_cache_kv_fini(c);
    a->free(c, total, a->user);
}
#endif

#endif /* ASYNCPAT_CACHE_H */
