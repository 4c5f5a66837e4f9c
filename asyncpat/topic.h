/*
 * asyncpat/topic.h -- publish-subscribe with subjects (NATS-style topics)
 *
 * PATTERN
 *   A message bus in caller memory. A publisher sends a message on a
 *   subject ("orders.eu.paid": tokens separated by '.'); a subscription
 *   names a pattern in NATS syntax: a literal subject, `*` for exactly one
 *   token ("orders.*.paid"), and a last `>` for one or more trailing tokens
 *   ("orders.>"). The patterns live in a trie of tokens whose children are
 *   found through one open-addressing hash table keyed by (parent, token)
 *   (a node points at its `*` and `>` children directly), so a publish
 *   visits only the trie nodes that are prefixes of patterns matching its
 *   subject: at each token, one hash look-up per live branch. The table's
 *   load stays at most 1/2: other subscriptions cost a publish only the
 *   probes of that load (expected 1.5 entries for a hit, 2.5 for a miss;
 *   an entry holds the hash, so a probe past another key reads no node).
 *
 *   Each message is written ONCE, with its subject, into a shared ring of
 *   `capacity` slots (the seqlock-stamped slots of pubsub.h). Every
 *   matching subscription gets a 16-byte reference (sequence number, slot)
 *   pushed into its own ring of `depth` references (caller memory, one
 *   writer at a time: the publisher; one reader: the subscription's owner).
 *   Publishers, subscribe, unsubscribe and close serialise on a short
 *   internal lock (core.h's ap__lock); receivers take no lock.
 *
 *   Per-subscription overflow policy:
 *   AP_TOPIC_POLICY_OVERWRITE   the publisher never waits. A message that
 *       finds the reference ring full, or whose slot the shared ring
 *       reused before the subscriber read it, is counted; the subscriber
 *       gets AP_DROPPED(n), exact, at the place the gap has in publish
 *       order (a drop marker travels in the ring).
 *   AP_TOPIC_POLICY_BLOCK       nothing is lost: a publish that matches a
 *       BLOCK subscription whose ring is full publishes nothing and answers
 *       AP_FULL (its future waits, with a deadline if given, until the
 *       slowest matching BLOCK subscriber takes one). Its references pin
 *       their slots: the shared ring skips a pinned slot, never overwrites it.
 *   AP_TOPIC_POLICY_DISCONNECT  the publisher never waits: a message that
 *       finds the ring full closes the subscription (it is unlinked from
 *       the trie); the subscriber receives what was queued, then AP_CLOSED,
 *       with the message that did not fit counted in ap_topic_sub_lost.
 *       Its references pin their slots as BLOCK's do.
 *   Pinned slots are budgeted: the depths of BLOCK and DISCONNECT
 *   subscriptions together stay below `capacity` (subscribe answers
 *   AP_FULL otherwise), so a publisher always finds a free slot.
 *
 * USAGE
 *   static uint64_t mem[AP_TOPIC_BYTES(256, sizeof(struct tick), 64) / 8];
 *   static uint64_t refs[AP_TOPIC_SUB_BYTES(32) / 8];
 *   ap_topic bus;
 *   if (ap_topic_init(&bus, mem, sizeof mem, 256, sizeof(struct tick), 64))
 *       abort();
 *   static ap_topic_sub sub;          // zero: not subscribed
 *   if (ap_topic_subscribe(&bus, &sub, "md.*.trade", AP_TOPIC_POLICY_OVERWRITE,
 *                          refs, sizeof refs, 32))
 *       abort();                      // AP_INVAL: bad pattern; AP_FULL: no room
 *   struct tick t = {0};              // any publisher thread:
 *   while (ap_topic_try_publish(&bus, "md.EURUSD.trade", &t) == AP_FULL) {} // BLOCK: full
 *   char subject[AP_TOPIC_SUBJECT_MAX + 1];
 *   for (;;) {                        // the subscriber:
 *       ap_status st = ap_topic_sub_recv_wait(&sub, &t, subject, AP_DEADLINE_NONE);
 *       if (st == AP_OK) use(subject, &t);
 *       else if (st == AP_DROPPED) note_gap(ap_topic_sub_last_dropped(&sub));
 *       else break;                   // AP_CLOSED: closed (or disconnected) and drained
 *   }
 *   ap_topic_unsubscribe(&bus, &sub);
 *
 * GUARANTEES (invariants the tests check)
 *   - matching is NATS's: a pattern's tokens match the subject's one for
 *     one, `*` matches any one token, a last `>` any one or more; the
 *     messages meant for a subscription are exactly those whose subject
 *     its pattern matches, published after its subscribe and before its
 *     unsubscribe (or disconnect), in the order of the publish lock
 *   - per subscription, in publish order: every such message is received
 *     exactly once or counted in an AP_DROPPED report at its place; at any
 *     quiescent point received + lost == matching messages published
 *     while it was subscribed (for DISCONNECT: up to and including the one
 *     that closed it)
 *   - BLOCK loses nothing; a publish waits (AP_FULL) exactly while some
 *     matching BLOCK subscription's ring is full, and publishes nothing then
 *   - OVERWRITE and DISCONNECT subscribers never make a publisher wait
 *   - one copy of each message, however many subscriptions match
 *   - a message is never torn: AP_OK hands out the bytes of one publish
 *   - invalid subjects or patterns (empty, an empty token, `>` not last, a
 *     wildcard inside a token or in a published subject, a token over
 *     AP_TOPIC_TOKEN_MAX or a subject over AP_TOPIC_SUBJECT_MAX bytes) are
 *     AP_INVAL and change nothing
 *   - after close: publishes answer AP_CLOSED; subscribers drain, then get
 *     AP_CLOSED; every future wakes
 *   - no lost wakeup (THE LADDER in waitlist.h) for receive and publish futures
 *
 * CONCURRENCY       publish  subscribe  unsubscribe  recv(sub A)  close  fini
 *   publish           yes       yes         yes         yes       yes    no
 *   subscribe         yes       yes         yes         yes       yes    no
 *   unsubscribe(A)    yes       yes       other subs  no (owner)  yes    no
 *   recv (sub A)      yes       yes       other subs  no (owner)  yes    no
 *   Progress: receive never blocks and takes no lock, except once after
 *   an OVERWRITE ring ran full: the drops that found no room are taken
 *   under the bus lock when the subscriber has caught up. Publish, subscribe,
 *   unsubscribe and close take the bus lock (spin, then sched_yield); a
 *   publisher holds it for one publish and never waits for a subscriber
 *   under it. Receive-future wakers are called under the bus lock: they
 *   must not call back into this bus (the future.h contract: a waker only
 *   schedules).
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   publish of a subject of L tokens: O(L * B + M + W) where B
 *              is the number of live trie branches (1 + the `*` nodes on
 *              the way; at most 2^L, 1 without wildcards), M the matching
 *              subscriptions and W the message's words; a look-up is
 *              expected O(1) (load <= 1/2); independent of the number of
 *              subscriptions that do not match. Finding a free slot skips
 *              pinned slots: amortised O(1) (fewer than `capacity` pins).
 *              receive: O(W + drop markers passed). subscribe,
 *              unsubscribe: O(L) expected. close: O(nodes).
 *              Memory: AP_TOPIC_BYTES(capacity, elem_size, nodes) =
 *              capacity * AP_TOPIC_STRIDE(elem_size) + nodes + 1 trie nodes
 *              + a table of 2 * (nodes + 1) 8-byte entries; AP_TOPIC_SUB_BYTES(depth)
 *              = 16 * depth per subscription.
 * MEMORY       init: a caller buffer of AP_TOPIC_BYTES bytes aligned to
 *              AP_TOPIC_ALIGN; subscribe: a reference ring of
 *              AP_TOPIC_SUB_BYTES(depth) bytes, aligned to AP_TOPIC_ALIGN;
 *              NULL, too small or misaligned is AP_INVAL with nothing
 *              written. ap_topic_sub and futures: caller memory. Nothing
 *              allocates.
 * ERRORS       AP_INVAL (see above; also capacity, elem_size, nodes 0 or
 *              overflowing, depth < 2, an unknown policy); AP_FULL
 *              (publish: a matching BLOCK subscription is full; subscribe:
 *              no trie node left, or the pin budget would reach capacity);
 *              AP_EMPTY, AP_DROPPED, AP_CLOSED on receive; AP_CLOSED on
 *              publish after close. Out-params are untouched unless AP_OK
 *              (elements over 128 bytes are copied straight into *out,
 *              which a read that raced with an overwrite leaves scribbled).
 * WAKE ORDER   a publish wakes the receive future of each subscription it
 *              pushed to; a BLOCK subscriber's receive wakes every parked
 *              publish future (each re-tries; order unspecified).
 * CONFIG       AP_CACHELINE, AP_SPIN_LIMIT, AP_ASSERT
 * SEE ALSO     pubsub.h (one subject, lock-free publish), waitlist.h,
 *              tests/test_pubsub.c, tests/fuzz/fuzz_subject.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_TOPIC_H
#define ASYNCPAT_TOPIC_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

#include <string.h>

/** AP_TOPIC_SUBJECT_MAX - the longest subject or pattern, in bytes (no NUL) */
#define AP_TOPIC_SUBJECT_MAX 128
/** AP_TOPIC_TOKEN_MAX - the longest token, in bytes */
#define AP_TOPIC_TOKEN_MAX 32
#define AP__TOPIC_SUBJ_WORDS ((AP_TOPIC_SUBJECT_MAX + 7) / 8)
#define AP__TOPIC_MAX_TOKENS ((AP_TOPIC_SUBJECT_MAX + 1) / 2)

/** AP_TOPIC_STRIDE - bytes per shared slot: stamp, pins, subject length,
 *  the subject, then the message in 8-byte words */
#define AP_TOPIC_STRIDE(elem_size) \
    ((size_t)8 * (3 + AP__TOPIC_SUBJ_WORDS) + ((size_t)(elem_size) + 7) / 8 * 8)

/* A trie node (private; in the caller's buffer). */
typedef struct ap__topic_node {
    /* 8-aligned, so a whole number of words also where pointers are 4
     * bytes (i386): AP_TOPIC_BYTES stays a multiple of 8 and the hash
     * table after the nodes 8-aligned */
    AP_ALIGNAS(8) struct ap_topic_sub *subs; /* subscriptions whose pattern ends here */
    uint32_t parent;           /* node index; the free list's next when free */
    uint32_t star, gt;         /* the `*` and `>` children (0: none) */
    uint32_t refs;             /* children + subscriptions; 0: removable */
    uint32_t hash;             /* of (parent, token) */
    uint32_t len;              /* token bytes */
    char tok[AP_TOPIC_TOKEN_MAX];
} ap__topic_node;
AP_STATIC_ASSERT(sizeof(ap__topic_node) % 8 == 0, "topic.h: a node is a whole number of 8-byte words");

/** AP_TOPIC_BYTES - buffer bytes for ap_topic_init (constant expression) */
#define AP_TOPIC_BYTES(capacity, elem_size, nodes)                   \
    ((size_t)(capacity) * AP_TOPIC_STRIDE(elem_size) +               \
     2 * ((size_t)(nodes) + 1) * 8 +                                  \
     (((size_t)(nodes) + 1) * sizeof(ap__topic_node) + 7) / 8 * 8)
/** AP_TOPIC_SUB_BYTES - a subscription's reference ring (constant expression) */
#define AP_TOPIC_SUB_BYTES(depth) ((size_t)(depth) * 16)
/** AP_TOPIC_ALIGN - the alignment both buffers need: 64-bit atomics */
#define AP_TOPIC_ALIGN ((size_t)AP_ALIGNOF(AP_ATOMIC_T(uint64_t)))

/** What a publisher does about a matching subscription that is full (PATTERN). */
typedef enum ap_topic_policy {
    AP_TOPIC_POLICY_OVERWRITE = 0, /* never wait; the subscriber gets AP_DROPPED(n) */
    AP_TOPIC_POLICY_BLOCK = 1,     /* lose nothing; the publish waits (AP_FULL) */
    AP_TOPIC_POLICY_DISCONNECT = 2 /* never wait; the subscription is closed */
} ap_topic_policy;

typedef struct ap_topic {
    ap__lock lock;             /* publish, subscribe, unsubscribe, close */
    AP_ATOMIC_T(uint32_t) closed;
    AP_ATOMIC_T(uint64_t) seq; /* messages published (written under the lock) */
    size_t next_slot;          /* under the lock: where the slot search starts */
    size_t pinned;             /* under the lock: depths of pinning subscriptions */
    size_t nblock;             /* under the lock: BLOCK subscriptions */
    uint32_t free_node;        /* under the lock: free list head (0: none) */
    uint32_t nodes_free;       /* under the lock */
    /* statistics (ap_topic_stats_get): written under the lock (a load and
     * a store, no RMW), read relaxed without it; none on a publish that
     * pushes to every match */
    AP_ATOMIC_T(uint64_t) nsubs;        /* linked subscriptions */
    AP_ATOMIC_T(uint64_t) blocked;      /* publishes answered AP_FULL */
    AP_ATOMIC_T(uint64_t) dropped;      /* OVERWRITE pushes that found the ring full */
    AP_ATOMIC_T(uint64_t) disconnected; /* DISCONNECT subscriptions closed */
    /* read-only after init from here: its own line, receivers read it */
    AP_ALIGNAS(AP_CACHELINE) unsigned char *store;
    ap__topic_node *node;      /* node[0] is the root */
    uint64_t *table;           /* 0: empty; else hash << 32 | node index */
    size_t capacity, elem_size, words, stride, nnodes, tsize;
    AP_ALIGNAS(AP_CACHELINE) ap_waitlist pub_wl; /* publish futures waiting for BLOCK */
} ap_topic;

AP_STATIC_ASSERT(offsetof(ap_topic, store) - offsetof(ap_topic, lock) >= AP_CACHELINE,
                 "ap_topic: the publishers' line must not share the read-only line");

/**
 * ap_topic_sub - one subscription, in caller memory (zero: not subscribed).
 * Owned by one thread at a time; read its counters only there.
 */
typedef struct ap_topic_sub {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) tail; /* by the publisher */
    AP_ATOMIC_T(uint32_t) state;  /* AP__TOPIC_DISC | AP__TOPIC_CLOSED bits */
    AP_ATOMIC_T(uint64_t) pend;   /* under the lock: drops not yet in the ring */
    uint64_t disc_lost;           /* publisher: counted at disconnect */
    struct ap_topic_sub *next, *prev; /* the node's list, under the lock */
    struct ap_topic_sub *vnext;   /* a publish's disconnect list, under the lock */
    uint32_t node;                /* its trie node, under the lock */
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) head; /* by the owner */
    ap_topic *bus;                /* NULL: not subscribed */
    uint64_t *ring;
    size_t depth;
    ap_topic_policy policy;
    uint64_t received, lost, last_lost; /* owner only */
    uint32_t disc_seen;           /* owner only: disc_lost counted */
    ap_waitlist wl;               /* its parked receive future */
} ap_topic_sub;

/**
 * ap_topic_stats - the bus's counters (ap_topic_stats_get; a relaxed
 * snapshot, exact at quiescence). All are kept under the bus lock, and only
 * on the paths that decide something (subscribe, unlink, a refused publish,
 * a full ring), so a publish that pushes to every match counts nothing but
 * its sequence number. The waiting fields are the publish waitlist's
 * (publishes waiting for a full BLOCK subscription); receivers wait on their
 * own subscription's list (ap_topic_sub_stats).
 */
typedef struct ap_topic_stats {
    uint64_t published;     /* messages published since init (ap_topic_published) */
    uint64_t subscriptions; /* subscriptions linked now (a disconnect unlinks one) */
    uint64_t blocked;       /* publish attempts answered AP_FULL (BLOCK; a waiting publish counts each try) */
    uint64_t dropped;       /* messages an OVERWRITE subscription's full ring could not take
                             * (the publisher's count; a subscriber's own, in
                             * ap_topic_sub_stats, adds the ones whose slot was
                             * reused before it read them) */
    uint64_t disconnected;  /* DISCONNECT subscriptions a full ring closed */
    uint64_t waiters;       /* publish futures parked now */
    uint64_t waits;         /* times a publish queued (a future or ap_topic_publish_wait) */
    uint64_t wait_ns;       /* ns parked in ap_topic_publish_wait (ap_now_ns; only callers that parked) */
} ap_topic_stats;

/**
 * ap_topic_sub_stats - one subscription's counters (ap_topic_sub_stats_get)
 * since it subscribed: received and dropped are its owner's plain memory
 * (exact on the owner's thread), the waiting fields its receive waitlist's.
 */
typedef struct ap_topic_sub_stats {
    uint64_t received; /* messages received (AP_OK): ap_topic_sub_received */
    uint64_t dropped;  /* messages reported lost (AP_DROPPED counts and a disconnect's): ap_topic_sub_lost */
    uint64_t waits;    /* times its receiver queued (a future or ap_topic_sub_recv_wait) */
    uint64_t wait_ns;  /* ns parked in ap_topic_sub_recv_wait (ap_now_ns; only callers that parked) */
} ap_topic_sub_stats;

typedef struct ap_topic_pub_fut {
    ap_future base; /* first: &f->base is the future (forwards to the typed poll) */
    ap_waitop op;
    const char *subject;
    const void *elem;
} ap_topic_pub_fut;

typedef struct ap_topic_recv_fut {
    ap_future base; /* first: &f->base is the future */
    ap_waitop op;
    void *out;
    char *subject;
} ap_topic_recv_fut;

/**
 * ap_topic_init - set up a bus in caller memory
 * @buf:       at least AP_TOPIC_BYTES(capacity, elem_size, nodes) bytes,
 *             aligned to AP_TOPIC_ALIGN
 * @bytes:     the size of @buf
 * @capacity:  shared slots (>= 1): how far an OVERWRITE subscriber may lag
 *             before its oldest references go stale
 * @elem_size: bytes per message (>= 1)
 * @nodes:     trie nodes for the patterns (one per distinct pattern prefix)
 *
 * Returns AP_OK or AP_INVAL (nothing written).
 */
AP_API AP_NODISCARD ap_status ap_topic_init(ap_topic *t, void *buf, size_t bytes,
                                            size_t capacity, size_t elem_size, size_t nodes);
/** ap_topic_fini - end of life; every subscription must be unsubscribed (disconnected ones too) */
AP_API void ap_topic_fini(ap_topic *t);

/**
 * ap_topic_check - validate a subject (@pattern false: no wildcards) or a
 * pattern (@pattern true): AP_OK or AP_INVAL. Pure.
 */
AP_API AP_NODISCARD ap_status ap_topic_check(const char *subject, bool pattern);

/**
 * ap_topic_subscribe - link @sub under @pattern with @policy
 * @ring, @ring_bytes, @depth: AP_TOPIC_SUB_BYTES(depth) bytes aligned to
 *             AP_TOPIC_ALIGN, depth >= 2 (references held for this
 *             subscriber; OVERWRITE keeps one entry for a drop marker)
 *
 * Returns AP_OK; AP_INVAL (bad pattern, policy, ring or depth; @sub
 * already subscribed); AP_FULL (no trie node left for the pattern, or a
 * pinning policy whose depth would bring the pins to capacity). Anything
 * but AP_OK changes nothing. Works on a closed bus (receives say AP_CLOSED).
 */
AP_API AP_NODISCARD ap_status ap_topic_subscribe(ap_topic *t, ap_topic_sub *sub,
                                                 const char *pattern, ap_topic_policy policy,
                                                 void *ring, size_t ring_bytes, size_t depth);
/**
 * ap_topic_unsubscribe - stop receiving (also after a disconnect); unpins
 * what @sub still holds. Safe during concurrent publishes: one that
 * already matched @sub finishes its push first. A receive future on @sub
 * must be done or cancelled. @sub may then be reused.
 */
AP_API void ap_topic_unsubscribe(ap_topic *t, ap_topic_sub *sub);

/**
 * ap_topic_try_publish - send @elem on @subject (no wildcards)
 * Returns AP_OK (also when nothing matches), AP_FULL (a matching BLOCK
 * subscription is full: nothing was published), AP_INVAL (bad subject:
 * nothing changed) or AP_CLOSED.
 * Ordering: release; pairs with the acquire in ap_topic_sub_try_recv.
 */
AP_API AP_NODISCARD ap_status ap_topic_try_publish(ap_topic *t, const char *subject,
                                                   const void *elem);
/**
 * ap_topic_publish_fut_init / _poll / _cancel / _status: a publish that
 * waits while a matching BLOCK subscription is full. @subject and @elem
 * must stay valid until it completes. Result: AP_OK, AP_INVAL, AP_CLOSED
 * or AP_CANCELED (nothing published).
 */
AP_API void ap_topic_publish_fut_init(ap_topic_pub_fut *f, ap_topic *t, const char *subject,
                                      const void *elem);
AP_API ap_poll ap_topic_publish_poll(ap_topic_pub_fut *f, ap_cx *cx);
AP_API void ap_topic_publish_cancel(ap_topic_pub_fut *f);
AP_API AP_NODISCARD ap_status ap_topic_publish_status(const ap_topic_pub_fut *f);
/** ap_topic_publish_wait - block until published, closed or @deadline_ns (AP_TIMEDOUT: nothing published) */
AP_API AP_NODISCARD ap_status ap_topic_publish_wait(ap_topic *t, const char *subject,
                                                    const void *elem, ap_deadline deadline_ns);

/** ap_topic_close - refuse further publishes, wake every future; idempotent */
AP_API void ap_topic_close(ap_topic *t);
/** ap_topic_is_closed - whether ap_topic_close has been called */
AP_API bool ap_topic_is_closed(ap_topic *t);
/** ap_topic_published - messages published so far (racy snapshot) */
AP_API uint64_t ap_topic_published(ap_topic *t);
/** ap_topic_stats_get - the bus's counters into *@out (relaxed snapshot; any thread, no lock) */
AP_API void ap_topic_stats_get(ap_topic *t, ap_topic_stats *out);

/**
 * ap_topic_sub_try_recv - take this subscription's next message
 * @out:      receives elem_size bytes (untouched unless AP_OK, see ERRORS)
 * @subject:  NULL, or AP_TOPIC_SUBJECT_MAX + 1 bytes: the subject, NUL-ended
 * @dropped:  NULL, or receives the count on AP_DROPPED
 *
 * Returns AP_OK; AP_EMPTY; AP_DROPPED (n messages for this subscription
 * were lost here, in publish order; the next call goes on after them);
 * AP_CLOSED (the bus was closed, or this subscription disconnected, and
 * nothing is left).
 * Concurrency: the subscription's owner; concurrent with everything else.
 */
AP_API AP_NODISCARD ap_status ap_topic_sub_try_recv(ap_topic_sub *sub, void *out,
                                                    char *subject, uint64_t *dropped);
/** ap_topic_recv_fut_init / _poll / _cancel / _status: a receive that parks until a message, a drop report or close */
AP_API void ap_topic_recv_fut_init(ap_topic_recv_fut *f, ap_topic_sub *sub, void *out,
                                   char *subject);
AP_API ap_poll ap_topic_recv_poll(ap_topic_recv_fut *f, ap_cx *cx);
AP_API void ap_topic_recv_cancel(ap_topic_recv_fut *f);
AP_API AP_NODISCARD ap_status ap_topic_recv_status(const ap_topic_recv_fut *f);
/** ap_topic_sub_recv_wait - block until AP_OK, AP_DROPPED, AP_CLOSED or AP_TIMEDOUT */
AP_API AP_NODISCARD ap_status ap_topic_sub_recv_wait(ap_topic_sub *sub, void *out,
                                                     char *subject, ap_deadline deadline_ns);

/** ap_topic_sub_len - references queued for @sub (racy snapshot) */
AP_API uint64_t ap_topic_sub_len(ap_topic_sub *sub);
/** ap_topic_sub_received - messages @sub received since it subscribed */
AP_API uint64_t ap_topic_sub_received(const ap_topic_sub *sub);
/** ap_topic_sub_lost - messages @sub was told it lost (AP_DROPPED counts, and a disconnect's) */
AP_API uint64_t ap_topic_sub_lost(const ap_topic_sub *sub);
/** ap_topic_sub_last_dropped - the count of @sub's latest AP_DROPPED (0 if none) */
AP_API uint64_t ap_topic_sub_last_dropped(const ap_topic_sub *sub);
/** ap_topic_sub_is_disconnected - whether a DISCONNECT policy closed @sub */
AP_API bool ap_topic_sub_is_disconnected(ap_topic_sub *sub);
/** ap_topic_sub_stats_get - @sub's counters into *@out (its owner's thread, as ap_topic_sub_received) */
AP_API void ap_topic_sub_stats_get(ap_topic_sub *sub, ap_topic_sub_stats *out);

/* ---- implementation ---- */

/*
 * ORDERING
 *   The bus lock (acquire/release, core.h) orders every publish,
 *   subscribe, unsubscribe and close: the trie, the node lists, each
 *   subscription's `pend`, `tail` value and the pin budget are plain data
 *   under it. So "published after subscribe" is the lock's order, and an
 *   unsubscribe that holds the lock waits out a publish that matched it.
 *   Shared slot: a seqlock (pubsub.h's ORDERING; Boehm, MSPC 2012): the
 *   writer stores the odd stamp, a release fence, the words, the even
 *   stamp (release); the reader loads the stamp (acquire), the words, an
 *   acquire fence, the stamp again; a moved stamp means the slot was
 *   reused while copied (OVERWRITE: counted as dropped).
 *   Reference ring (one writer under the lock, one reader): the publisher
 *   writes the entry (plain), then stores tail (release; AP__PUB_MO) and
 *   checks the subscription's waitlist (THE LADDER); the reader loads
 *   tail (AP__CHECK_MO) before reading the entry. The reader finishes
 *   with the entry and the slot, releases the slot's pin (fetch_sub,
 *   release) and stores head (AP__PUB_MO), then checks the publish
 *   waitlist; the publisher loads head (AP__CHECK_MO) before reusing the
 *   entry and a pin (acquire) before reusing a slot. Pins are added
 *   (relaxed) before the tail store that hands out the reference.
 *   Drops counted while an OVERWRITE ring was full (pend) are moved into
 *   the ring by the next push with room, or taken by the reader under the
 *   lock when it finds the ring empty: either way after every entry
 *   queued before them and before every entry queued after them.
 *   Disconnect stores state = DISC (AP__PUB_MO) after the last push;
 *   close sets CLOSED in the state of every linked subscription (seq_cst)
 *   under the lock, after every publish's tail stores, and a subscribe
 *   after close starts CLOSED; a reader loads its state (seq_cst) and then
 *   tail, so if it sees either bit, tail holds everything that will ever
 *   come. Receivers read only their subscription's lines, the shared
 *   slot and the bus's read-only line, never the publishers' line.
 */

#define AP__TOPIC_MARK (UINT64_C(1) << 63)
#define AP__TOPIC_DISC 1u   /* state: a DISCONNECT policy closed it */
#define AP__TOPIC_CLOSED 2u /* state: the bus was closed (close marks each live one) */
#define AP__TOPIC_FAST_WORDS 16

typedef struct ap__topic_toks {
    const char *s;
    unsigned n;
    uint16_t off[AP__TOPIC_MAX_TOKENS], len[AP__TOPIC_MAX_TOKENS];
} ap__topic_toks;

/* Split and validate; AP_INVAL for anything the GUARANTEES list. */
AP_API ap_status ap__topic_split(const char *s, bool pattern, ap__topic_toks *tk)
{
    if (s == NULL)
        return AP_INVAL;
    size_t n = 0, start = 0, i = 0;
    for (;; i++) {
        if (i > AP_TOPIC_SUBJECT_MAX)
            return AP_INVAL; /* too long */
        char c = s[i];
        if (c == '.' || c == '\0') {
            size_t len = i - start;
            if (len == 0 || len > AP_TOPIC_TOKEN_MAX)
                return AP_INVAL; /* empty token (also "" and "a..b") or too long */
            const char *tok = s + start;
            bool wild = len == 1 && (tok[0] == '*' || tok[0] == '>');
            if (wild && !pattern)
                return AP_INVAL; /* a published subject names no wildcard */
            if (wild && tok[0] == '>' && c != '\0')
                return AP_INVAL; /* '>' only last */
            if (!wild && (memchr(tok, '*', len) || memchr(tok, '>', len)))
                return AP_INVAL; /* a wildcard is a whole token */
            tk->off[n] = (uint16_t)start;
            tk->len[n] = (uint16_t)len;
            n++;
            if (c == '\0')
                break;
            start = i + 1;
        } else if ((unsigned char)c <= ' ' || (unsigned char)c == 0x7f) {
            return AP_INVAL; /* whitespace and control bytes, as NATS */
        }
    }
    tk->s = s;
    tk->n = (unsigned)n;
    return AP_OK;
}

AP_API ap_status ap_topic_check(const char *subject, bool pattern)
{
    ap__topic_toks tk;
    return ap__topic_split(subject, pattern, &tk);
}

AP_FORCE_INLINE uint32_t ap__topic_hash(uint32_t parent, const char *tok, size_t len)
{
    uint32_t h = 2166136261u ^ (parent * 0x9E3779B1u); /* FNV-1a, seeded by the parent */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)tok[i];
        h *= 16777619u;
    }
    return h ^ (h >> 15);
}

/* A hash's home bucket: multiply-shift onto [0, tsize), no division. */
AP_FORCE_INLINE size_t ap__topic_home(const ap_topic *t, uint32_t h)
{
    return (size_t)(((uint64_t)h * (uint64_t)t->tsize) >> 32);
}

AP_FORCE_INLINE size_t ap__topic_next(const ap_topic *t, size_t i)
{
    return i + 1 == t->tsize ? 0 : i + 1;
}

/* The child of @parent spelled @tok, or 0. Entries carry the hash, so a
 * probe past another key reads no node. */
AP_API uint32_t ap__topic_child(const ap_topic *t, uint32_t parent, const char *tok, size_t len)
{
    uint32_t h = ap__topic_hash(parent, tok, len);
    for (size_t i = ap__topic_home(t, h);; i = ap__topic_next(t, i)) {
        uint64_t e = t->table[i];
        if (e == 0)
            return 0;
        if ((uint32_t)(e >> 32) != h)
            continue;
        uint32_t x = (uint32_t)e;
        const ap__topic_node *nd = &t->node[x];
        if (nd->parent == parent && nd->len == len && memcmp(nd->tok, tok, len) == 0)
            return x;
    }
}

AP_API uint32_t ap__topic_add_child(ap_topic *t, uint32_t parent, const char *tok, size_t len)
{
    uint32_t x = t->free_node;
    AP_ASSERT(x != 0);
    ap__topic_node *nd = &t->node[x];
    t->free_node = nd->parent;
    t->nodes_free--;
    nd->subs = NULL;
    nd->parent = parent;
    nd->star = nd->gt = 0;
    nd->refs = 0;
    nd->hash = ap__topic_hash(parent, tok, len);
    nd->len = (uint32_t)len;
    memcpy(nd->tok, tok, len);
    size_t i = ap__topic_home(t, nd->hash);
    while (t->table[i] != 0)
        i = ap__topic_next(t, i);
    t->table[i] = (uint64_t)nd->hash << 32 | x;
    t->node[parent].refs++;
    if (len == 1 && tok[0] == '*')
        t->node[parent].star = x;
    else if (len == 1 && tok[0] == '>')
        t->node[parent].gt = x;
    return x;
}

/* Remove node @x (refs 0) and every ancestor it leaves empty. */
AP_API void ap__topic_prune(ap_topic *t, uint32_t x)
{
    while (x != 0 && t->node[x].refs == 0) {
        ap__topic_node *nd = &t->node[x];
        size_t i = ap__topic_home(t, nd->hash);
        while ((uint32_t)t->table[i] != x)
            i = ap__topic_next(t, i);
        /* backward-shift deletion (linear probing keeps no tombstones) */
        for (size_t j = ap__topic_next(t, i); t->table[j] != 0; j = ap__topic_next(t, j)) {
            size_t k = ap__topic_home(t, (uint32_t)(t->table[j] >> 32));
            bool move = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
            if (move) {
                t->table[i] = t->table[j];
                i = j;
            }
        }
        t->table[i] = 0;
        uint32_t parent = nd->parent;
        if (t->node[parent].star == x)
            t->node[parent].star = 0;
        if (t->node[parent].gt == x)
            t->node[parent].gt = 0;
        nd->parent = t->free_node;
        t->free_node = x;
        t->nodes_free++;
        t->node[parent].refs--;
        x = parent;
    }
}

AP_API ap_status ap_topic_init(ap_topic *t, void *buf, size_t bytes, size_t capacity,
                               size_t elem_size, size_t nodes)
{
    AP_ASSERT(t != NULL);
    size_t stride = AP_TOPIC_STRIDE(elem_size), store, nb, need;
    if (capacity == 0 || elem_size == 0 || nodes == 0 || elem_size > SIZE_MAX / 4 ||
        nodes >= UINT32_MAX / 4 || capacity > (SIZE_MAX >> 8) ||
        !ap__size_muladd(capacity, stride, 0, &store) ||
        !ap__size_muladd(2 * (nodes + 1), 8, store, &nb) ||
        !ap__size_muladd(nodes + 1, sizeof(ap__topic_node), nb + 7, &need) || buf == NULL ||
        (uintptr_t)buf % AP_TOPIC_ALIGN != 0 || bytes < need / 8 * 8)
        return AP_INVAL;
    AP_ATOMIC_INIT(&t->lock.held, 0u);
    t->next_slot = t->pinned = t->nblock = 0;
    t->store = (unsigned char *)buf;
    /* slots, then the table (8-byte entries), then the nodes: every part
     * starts 8-aligned whatever sizeof(ap__topic_node) is (60 on i386) */
    t->table = (uint64_t *)(void *)(t->store + store);
    t->node = (ap__topic_node *)(void *)(t->store + nb);
    t->capacity = capacity;
    t->elem_size = elem_size;
    t->words = (elem_size + 7) / 8;
    t->stride = stride;
    t->nnodes = nodes + 1;
    t->tsize = 2 * (nodes + 1);
    for (size_t i = 0; i < capacity; i++) {
        AP_ATOMIC_T(uint64_t) *slot = (AP_ATOMIC_T(uint64_t) *)(void *)(t->store + i * stride);
        for (size_t k = 0; k < stride / 8; k++)
            AP_ATOMIC_INIT(&slot[k], (uint64_t)0);
    }
    memset(t->node, 0, (nodes + 1) * sizeof(ap__topic_node));
    memset(t->table, 0, t->tsize * 8);
    for (uint32_t i = 1; i <= (uint32_t)nodes; i++) /* free list: 1, 2, ..., nodes */
        t->node[i].parent = i < (uint32_t)nodes ? i + 1 : 0;
    t->free_node = 1;
    t->nodes_free = (uint32_t)nodes;
    AP_ATOMIC_INIT(&t->closed, 0u);
    AP_ATOMIC_INIT(&t->seq, (uint64_t)0);
    AP_ATOMIC_INIT(&t->nsubs, (uint64_t)0);
    AP_ATOMIC_INIT(&t->blocked, (uint64_t)0);
    AP_ATOMIC_INIT(&t->dropped, (uint64_t)0);
    AP_ATOMIC_INIT(&t->disconnected, (uint64_t)0);
    ap_waitlist_init(&t->pub_wl);
    return AP_OK;
}

AP_API void ap_topic_fini(ap_topic *t)
{
    AP_ASSERT(t != NULL && t->store != NULL);
    /* every subscription unsubscribed, disconnected ones too (they hold pins) */
    AP_ASSERT(t->node[0].refs == 0 && t->pinned == 0);
    AP_ASSERT(!ap_waitlist_has_waiters(&t->pub_wl));
    t->store = NULL;
}

AP_FORCE_INLINE AP_ATOMIC_T(uint64_t) *ap__topic_slot(const ap_topic *t, size_t i)
{
    return (AP_ATOMIC_T(uint64_t) *)(void *)(t->store + i * t->stride);
}

AP_FORCE_INLINE bool ap__topic_pins(ap_topic_policy p)
{
    return p != AP_TOPIC_POLICY_OVERWRITE;
}

/* Under the lock: add @d to a statistics counter (a load and a store, no RMW). */
AP_API void ap__topic_count(AP_ATOMIC_T(uint64_t) *c, uint64_t d)
{
    AP_ATOMIC_STORE(c, AP_ATOMIC_LOAD(c, memory_order_relaxed) + d, memory_order_relaxed); /* relaxed: statistics counter under the lock */
}

AP_API ap_status ap_topic_subscribe(ap_topic *t, ap_topic_sub *sub, const char *pattern,
                                    ap_topic_policy policy, void *ring, size_t ring_bytes,
                                    size_t depth)
{
    ap__topic_toks tk;
    AP_ASSERT(t != NULL && t->store != NULL && sub != NULL);
    if (sub->bus != NULL || ap__topic_split(pattern, true, &tk) != AP_OK ||
        (policy != AP_TOPIC_POLICY_OVERWRITE && policy != AP_TOPIC_POLICY_BLOCK &&
         policy != AP_TOPIC_POLICY_DISCONNECT) ||
        depth < 2 || depth > SIZE_MAX / 32 || ring == NULL ||
        (uintptr_t)ring % AP_TOPIC_ALIGN != 0 || ring_bytes < AP_TOPIC_SUB_BYTES(depth))
        return AP_INVAL;
    ap__lock_acquire(&t->lock);
    /* count the nodes the pattern still needs before creating any */
    uint32_t x = 0;
    unsigned have = 0;
    while (have < tk.n) {
        uint32_t c = ap__topic_child(t, x, tk.s + tk.off[have], tk.len[have]);
        if (c == 0)
            break;
        x = c;
        have++;
    }
    if (tk.n - have > t->nodes_free ||
        (ap__topic_pins(policy) && t->pinned + depth >= t->capacity)) {
        ap__lock_release(&t->lock);
        return AP_FULL;
    }
    for (; have < tk.n; have++)
        x = ap__topic_add_child(t, x, tk.s + tk.off[have], tk.len[have]);
    AP_ATOMIC_INIT(&sub->tail, (uint64_t)0);
    AP_ATOMIC_INIT(&sub->head, (uint64_t)0);
    /* relaxed: under the lock, as close's store; close marks the linked ones */
    AP_ATOMIC_INIT(&sub->state, AP_ATOMIC_LOAD(&t->closed, memory_order_relaxed) ? AP__TOPIC_CLOSED : 0u);
    AP_ATOMIC_INIT(&sub->pend, (uint64_t)0);
    sub->disc_lost = 0;
    sub->bus = t;
    sub->ring = (uint64_t *)ring;
    sub->depth = depth;
    sub->policy = policy;
    sub->received = sub->lost = sub->last_lost = 0;
    sub->disc_seen = 0;
    ap_waitlist_init(&sub->wl);
    sub->node = x;
    sub->prev = NULL;
    sub->next = t->node[x].subs;
    if (sub->next != NULL)
        sub->next->prev = sub;
    t->node[x].subs = sub;
    t->node[x].refs++;
    if (ap__topic_pins(policy))
        t->pinned += depth;
    if (policy == AP_TOPIC_POLICY_BLOCK)
        t->nblock++;
    ap__topic_count(&t->nsubs, 1);
    ap__lock_release(&t->lock);
    return AP_OK;
}

/* Under the lock: take @sub out of the trie (not the pin budget). */
AP_API void ap__topic_unlink(ap_topic *t, ap_topic_sub *sub)
{
    if (sub->prev != NULL)
        sub->prev->next = sub->next;
    else
        t->node[sub->node].subs = sub->next;
    if (sub->next != NULL)
        sub->next->prev = sub->prev;
    sub->next = sub->prev = NULL;
    t->node[sub->node].refs--;
    ap__topic_prune(t, sub->node);
    if (sub->policy == AP_TOPIC_POLICY_BLOCK)
        t->nblock--;
    ap__topic_count(&t->nsubs, (uint64_t)-1);
}

AP_API void ap_topic_unsubscribe(ap_topic *t, ap_topic_sub *sub)
{
    AP_ASSERT(t != NULL && sub != NULL && sub->bus == t);
    AP_ASSERT(!ap_waitlist_has_waiters(&sub->wl)); /* its receive future is done */
    ap__lock_acquire(&t->lock);
    if (!(AP_ATOMIC_LOAD(&sub->state, memory_order_relaxed) & AP__TOPIC_DISC)) /* else unlinked */
        ap__topic_unlink(t, sub);
    if (ap__topic_pins(sub->policy)) {
        /* unpin what it never read; no publisher pushes to it any more.
         * relaxed: head is the owner's own; tail is written under the lock held here */
        uint64_t h = AP_ATOMIC_LOAD(&sub->head, memory_order_relaxed);
        uint64_t tl = AP_ATOMIC_LOAD(&sub->tail, memory_order_relaxed); /* relaxed: under the lock */
        for (; h != tl; h++) {
            uint64_t *e = sub->ring + 2 * (size_t)(h % sub->depth);
            /* release: our reads of the slot (none) precede its reuse */
            (void)AP_ATOMIC_FETCH_SUB(&ap__topic_slot(t, (size_t)e[1])[1], (uint64_t)1,
                                      memory_order_release);
        }
        AP_ATOMIC_STORE(&sub->head, tl, memory_order_release);
        t->pinned -= sub->depth;
    }
    ap__lock_release(&t->lock);
    /* a publisher may wait for room that this unsubscribe just made */
    if (sub->policy == AP_TOPIC_POLICY_BLOCK && ap_waitlist_has_waiters(&t->pub_wl))
        (void)ap_waitlist_wake_all(&t->pub_wl);
    sub->bus = NULL;
}

enum { AP__TOPIC_CHECK, AP__TOPIC_PUSH };

typedef struct ap__topic_pub {
    ap_topic *t;
    const ap__topic_toks *tk;
    int mode;
    uint64_t seq;
    uint64_t slot;
    ap_topic_sub *victims; /* DISCONNECT subscriptions to close after the walk */
} ap__topic_pub;

/* Under the lock: one matching subscription. CHECK: false if a BLOCK one is full. */
AP_API bool ap__topic_one(ap__topic_pub *p, ap_topic_sub *sub)
{
    uint64_t tl = AP_ATOMIC_LOAD(&sub->tail, memory_order_relaxed); /* ours */
    /* AP__CHECK_MO: the re-check of a parked publish future (THE LADDER);
     * acquire: the reader is done with the entries before we reuse them */
    uint64_t room = sub->depth - (tl - AP_ATOMIC_LOAD(&sub->head, AP__CHECK_MO));
    if (p->mode == AP__TOPIC_CHECK)
        return sub->policy != AP_TOPIC_POLICY_BLOCK || room > 0;
    uint64_t *e, pend;
    switch (sub->policy) {
    case AP_TOPIC_POLICY_OVERWRITE:
        /* relaxed: pend is ours under the lock (a reader peeks at it) */
        pend = AP_ATOMIC_LOAD(&sub->pend, memory_order_relaxed);
        if (room < (pend ? 2u : 1u)) {
            AP_ATOMIC_STORE(&sub->pend, pend + 1, memory_order_relaxed);
            ap__topic_count(&p->t->dropped, 1);
            return true;
        }
        if (pend) { /* the gap goes in first, at its place in order */
            e = sub->ring + 2 * (size_t)(tl % sub->depth);
            e[0] = AP__TOPIC_MARK | pend;
            e[1] = 0;
            AP_ATOMIC_STORE(&sub->pend, (uint64_t)0, memory_order_relaxed); /* relaxed: under the lock */
            tl++;
        }
        break;
    case AP_TOPIC_POLICY_DISCONNECT:
        if (room == 0) {
            sub->disc_lost = 1;
            sub->vnext = p->victims; /* unlinked after the walk */
            p->victims = sub;
            return true;
        }
        /* fallthrough */
    default: /* BLOCK: CHECK found room */
        AP_ASSERT(room > 0);
        /* relaxed: handed out by the tail store below */
        (void)AP_ATOMIC_FETCH_ADD(&ap__topic_slot(p->t, (size_t)p->slot)[1], (uint64_t)1,
                                  memory_order_relaxed);
        break;
    }
    e = sub->ring + 2 * (size_t)(tl % sub->depth);
    e[0] = p->seq;
    e[1] = p->slot;
    /* AP__PUB_MO: release hands out the entry; THE LADDER's publishing store */
    AP_ATOMIC_STORE(&sub->tail, tl + 1, AP__PUB_MO);
    if (AP_UNLIKELY(ap_waitlist_parked(&sub->wl)))
        (void)ap_waitlist_wake_all(&sub->wl);
    return true;
}

AP_API bool ap__topic_each(ap__topic_pub *p, uint32_t x)
{
    ap_topic_sub *sub = p->t->node[x].subs;
    while (sub != NULL) {
        ap_topic_sub *next = sub->next;
        if (!ap__topic_one(p, sub))
            return false;
        sub = next;
    }
    return true;
}

/* Visit every node whose pattern matches tokens i.. of the subject below @x. */
AP_API bool ap__topic_walk(ap__topic_pub *p, uint32_t x, unsigned i)
{
    const ap__topic_toks *tk = p->tk;
    if (i == tk->n)
        return ap__topic_each(p, x);
    uint32_t c = ap__topic_child(p->t, x, tk->s + tk->off[i], tk->len[i]);
    if (c != 0 && !ap__topic_walk(p, c, i + 1))
        return false;
    c = p->t->node[x].star;
    if (c != 0 && !ap__topic_walk(p, c, i + 1))
        return false;
    c = p->t->node[x].gt;
    return c == 0 || ap__topic_each(p, c);
}

AP_API ap_status ap_topic_try_publish(ap_topic *t, const char *subject, const void *elem)
{
    ap__topic_toks tk;
    AP_ASSERT(t != NULL && t->store != NULL && elem != NULL);
    if (ap__topic_split(subject, false, &tk) != AP_OK)
        return AP_INVAL;
    ap__lock_acquire(&t->lock);
    if (AP_ATOMIC_LOAD(&t->closed, memory_order_relaxed)) {
        ap__lock_release(&t->lock);
        return AP_CLOSED;
    }
    ap__topic_pub p;
    p.t = t;
    p.tk = &tk;
    p.victims = NULL;
    p.mode = AP__TOPIC_CHECK;
    if (t->nblock != 0 && !ap__topic_walk(&p, 0, 0)) {
        ap__topic_count(&t->blocked, 1);
        ap__lock_release(&t->lock);
        return AP_FULL; /* nothing published */
    }
    /* a slot nobody pins; fewer than capacity are pinned (the budget) */
    size_t i = t->next_slot;
    /* acquire: pairs with the reader's release of the pin */
    while (AP_ATOMIC_LOAD(&ap__topic_slot(t, i)[1], memory_order_acquire) != 0)
        i = i + 1 == t->capacity ? 0 : i + 1;
    t->next_slot = i + 1 == t->capacity ? 0 : i + 1;
    uint64_t seq = AP_ATOMIC_LOAD(&t->seq, memory_order_relaxed);
    AP_ATOMIC_T(uint64_t) *slot = ap__topic_slot(t, i);
    AP_ATOMIC_STORE(&slot[0], 2 * seq + 1, memory_order_relaxed);
    AP__SEQLOCK_FENCE_RELEASE(); /* the words below are after the odd stamp */
    AP_ATOMIC_STORE(&slot[2], (uint64_t)strlen(subject), AP__SEQLOCK_MO_STORE);
    const unsigned char *src = (const unsigned char *)subject;
    size_t left = (size_t)strlen(subject), k = 3;
    for (; left > 0; k++) {
        uint64_t x = 0;
        size_t n = left < 8 ? left : 8;
        memcpy(&x, src, n);
        AP_ATOMIC_STORE(&slot[k], x, AP__SEQLOCK_MO_STORE);
        src += n;
        left -= n;
    }
    src = (const unsigned char *)elem;
    left = t->elem_size;
    for (k = 3 + AP__TOPIC_SUBJ_WORDS; left > 0; k++) {
        uint64_t x = 0;
        size_t n = left < 8 ? left : 8;
        memcpy(&x, src, n);
        AP_ATOMIC_STORE(&slot[k], x, AP__SEQLOCK_MO_STORE);
        src += n;
        left -= n;
    }
    /* release: the words are visible to whoever sees the even stamp */
    AP_ATOMIC_STORE(&slot[0], 2 * seq + 2, memory_order_release);
    AP_TEST_YIELD(); /* tests: a subscriber may run between slot and references */
    p.mode = AP__TOPIC_PUSH;
    p.seq = seq;
    p.slot = i;
    (void)ap__topic_walk(&p, 0, 0);
    AP_ATOMIC_STORE(&t->seq, seq + 1, memory_order_relaxed);
    while (p.victims != NULL) {
        ap_topic_sub *v = p.victims;
        p.victims = v->vnext;
        v->vnext = NULL;
        ap__topic_unlink(t, v);
        ap__topic_count(&t->disconnected, 1);
        /* AP__PUB_MO: after its last push; a reader that sees it sees them */
        AP_ATOMIC_STORE(&v->state, AP__TOPIC_DISC, AP__PUB_MO);
        if (ap_waitlist_parked(&v->wl))
            (void)ap_waitlist_wake_all(&v->wl);
    }
    ap__lock_release(&t->lock);
    return AP_OK;
}

AP_API void ap_topic_close(ap_topic *t)
{
    AP_ASSERT(t != NULL && t->store != NULL);
    ap__lock_acquire(&t->lock);
    AP_ATOMIC_STORE(&t->closed, 1u, memory_order_relaxed); /* relaxed: under the lock */
    /* each linked subscription learns it from its own state word, so a
     * receiver never reads the publishers' line; seq_cst: before the
     * waitlist scan (THE LADDER) */
    for (size_t x = 1; x < t->nnodes; x++)
        if (t->node[x].refs != 0)
            for (ap_topic_sub *s = t->node[x].subs; s != NULL; s = s->next) {
                (void)AP_ATOMIC_FETCH_OR(&s->state, AP__TOPIC_CLOSED, memory_order_seq_cst);
                (void)ap_waitlist_wake_all(&s->wl);
            }
    ap__lock_release(&t->lock);
    (void)ap_waitlist_wake_all(&t->pub_wl);
}

AP_API bool ap_topic_is_closed(ap_topic *t)
{
    return AP_ATOMIC_LOAD(&t->closed, memory_order_relaxed) != 0; /* relaxed: snapshot */
}

AP_API uint64_t ap_topic_published(ap_topic *t)
{
    return AP_ATOMIC_LOAD(&t->seq, memory_order_relaxed); /* relaxed: snapshot */
}

AP_API ap_status ap_topic_sub_try_recv(ap_topic_sub *sub, void *out, char *subject,
                                       uint64_t *dropped)
{
    AP_ASSERT(sub != NULL && sub->bus != NULL && out != NULL);
    ap_topic *t = sub->bus;
    uint64_t h = AP_ATOMIC_LOAD(&sub->head, memory_order_relaxed); /* ours */
    uint64_t n = 0, copy[AP__TOPIC_FAST_WORDS], subj[AP__TOPIC_SUBJ_WORDS + 1];
    bool fast = t->words <= AP__TOPIC_FAST_WORDS;
    for (;;) {
        /* seq_cst: the flags before tail (see ORDERING), the ladder's re-check */
        uint32_t state = AP_ATOMIC_LOAD(&sub->state, memory_order_seq_cst);
        /* AP__CHECK_MO: pairs with the publisher's tail store */
        uint64_t tl = AP_ATOMIC_LOAD(&sub->tail, AP__CHECK_MO);
        if (h == tl) {
            if (n == 0 && AP_ATOMIC_LOAD(&sub->pend, memory_order_relaxed) != 0) {
                /* Drops the publisher could not queue (the ring was full)
                 * and we caught up: they follow everything queued. Take
                 * them under the lock, while no publisher pushes.
                 * relaxed: under the lock (pend and tail are written there) */
                ap__lock_acquire(&t->lock);
                if (AP_ATOMIC_LOAD(&sub->tail, memory_order_relaxed) == h) { /* relaxed: under the lock */
                    n = AP_ATOMIC_LOAD(&sub->pend, memory_order_relaxed); /* relaxed: under the lock */
                    AP_ATOMIC_STORE(&sub->pend, (uint64_t)0, memory_order_relaxed); /* relaxed: under the lock */
                }
                ap__lock_release(&t->lock);
                if (n == 0)
                    continue; /* something came: read it first */
            }
            if (n != 0)
                break;
            if (state == 0)
                return AP_EMPTY;
            if ((state & AP__TOPIC_DISC) && !sub->disc_seen) {
                sub->disc_seen = 1; /* the message that did not fit */
                sub->lost += sub->disc_lost;
            }
            return AP_CLOSED;
        }
        const uint64_t *e = sub->ring + 2 * (size_t)(h % sub->depth);
        uint64_t seq = e[0], want = 2 * e[0] + 2;
        if (seq & AP__TOPIC_MARK) { /* drops the publisher counted here */
            n += seq & ~AP__TOPIC_MARK;
            h++;
            continue;
        }
        AP_ATOMIC_T(uint64_t) *slot = ap__topic_slot(t, (size_t)e[1]);
        /* acquire: pairs with the even stamp's release store */
        uint64_t s1 = AP_ATOMIC_LOAD(&slot[0], memory_order_acquire);
        if (s1 != want) { /* reused before we came (OVERWRITE only) */
            AP_ASSERT(!ap__topic_pins(sub->policy));
            n++;
            h++;
            continue;
        }
        if (n != 0)
            break; /* report the gap first; this one is next */
        size_t len = 0;
        if (subject != NULL) {
            /* relaxed: seqlock, validated by the stamp re-check below */
            len = (size_t)AP_ATOMIC_LOAD(&slot[2], AP__SEQLOCK_MO_LOAD);
            if (len > AP_TOPIC_SUBJECT_MAX)
                len = AP_TOPIC_SUBJECT_MAX; /* torn: the re-check throws it away */
            for (size_t k = 0; k < (len + 7) / 8; k++)
                subj[k] = AP_ATOMIC_LOAD(&slot[3 + k], AP__SEQLOCK_MO_LOAD); /* relaxed: seqlock */
        }
        unsigned char *dst = fast ? (unsigned char *)copy : (unsigned char *)out;
        size_t left = t->elem_size;
        for (size_t k = 3 + AP__TOPIC_SUBJ_WORDS; left > 0; k++) {
            uint64_t x = AP_ATOMIC_LOAD(&slot[k], AP__SEQLOCK_MO_LOAD);
            size_t c = left < 8 ? left : 8;
            memcpy(dst, &x, c);
            dst += c;
            left -= c;
        }
        AP_TEST_YIELD(); /* tests: widen the window an overwrite needs */
        AP__SEQLOCK_FENCE_ACQUIRE();
        if (AP_ATOMIC_LOAD(&slot[0], memory_order_relaxed) != s1) {
            n++; /* overwritten while we copied */
            h++;
            continue;
        }
        if (fast)
            memcpy(out, copy, t->elem_size);
        if (subject != NULL) {
            memcpy(subject, subj, len);
            subject[len] = '\0';
        }
        if (ap__topic_pins(sub->policy))
            /* release: our reads of the slot precede its reuse */
            (void)AP_ATOMIC_FETCH_SUB(&slot[1], (uint64_t)1, memory_order_release);
        /* AP__PUB_MO: the entry is free; THE LADDER's store for publish futures */
        AP_ATOMIC_STORE(&sub->head, h + 1, AP__PUB_MO);
        sub->received++;
        if (sub->policy == AP_TOPIC_POLICY_BLOCK && ap_waitlist_parked(&t->pub_wl))
            (void)ap_waitlist_wake_all(&t->pub_wl);
        return AP_OK;
    }
    /* release: the entries are free (OVERWRITE: nothing pinned) */
    AP_ATOMIC_STORE(&sub->head, h, AP__PUB_MO);
    sub->lost += n;
    sub->last_lost = n;
    if (dropped != NULL)
        *dropped = n;
    return AP_DROPPED;
}

AP_API uint64_t ap_topic_sub_len(ap_topic_sub *sub)
{
    /* relaxed: snapshot */
    return AP_ATOMIC_LOAD(&sub->tail, memory_order_relaxed) -
           AP_ATOMIC_LOAD(&sub->head, memory_order_relaxed); /* relaxed: snapshot */
}

AP_API uint64_t ap_topic_sub_received(const ap_topic_sub *sub)
{
    return sub->received;
}

AP_API uint64_t ap_topic_sub_lost(const ap_topic_sub *sub)
{
    return sub->lost;
}

AP_API uint64_t ap_topic_sub_last_dropped(const ap_topic_sub *sub)
{
    return sub->last_lost;
}

AP_API bool ap_topic_sub_is_disconnected(ap_topic_sub *sub)
{
    return (AP_ATOMIC_LOAD(&sub->state, memory_order_acquire) & AP__TOPIC_DISC) != 0;
}

AP_API void ap_topic_stats_get(ap_topic *t, ap_topic_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(t != NULL && t->store != NULL && out != NULL);
    out->published = AP_ATOMIC_LOAD(&t->seq, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->subscriptions = AP_ATOMIC_LOAD(&t->nsubs, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->blocked = AP_ATOMIC_LOAD(&t->blocked, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->dropped = AP_ATOMIC_LOAD(&t->dropped, memory_order_relaxed); /* relaxed: statistics snapshot */
    out->disconnected = AP_ATOMIC_LOAD(&t->disconnected, memory_order_relaxed); /* relaxed: statistics snapshot */
    ap_waitlist_stats_get(&t->pub_wl, &w);
    out->waiters = w.waiters;
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

AP_API void ap_topic_sub_stats_get(ap_topic_sub *sub, ap_topic_sub_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(sub != NULL && out != NULL);
    out->received = sub->received;
    out->dropped = sub->lost;
    ap_waitlist_stats_get(&sub->wl, &w);
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

/* ---- futures ---- */

AP_API ap_status ap__topic_pub_try_v(void *obj, void *arg)
{
    const ap_topic_pub_fut *f = (const ap_topic_pub_fut *)arg;
    return ap_topic_try_publish((ap_topic *)obj, f->subject, f->elem);
}

AP_API ap_poll ap_topic_publish_poll(ap_topic_pub_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_topic_publish_cancel(ap_topic_pub_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP__FUTURE_VTABLE(ap__topic_publish, ap_topic_pub_fut, ap_topic_publish_poll,
                  ap_topic_publish_cancel)

AP_API void ap_topic_publish_fut_init(ap_topic_pub_fut *f, ap_topic *t, const char *subject,
                                      const void *elem)
{
    AP_ASSERT(f != NULL && t != NULL);
    f->subject = subject;
    f->elem = elem;
    ap_waitop_init(&f->op, &t->pub_wl, ap__topic_pub_try_v, t, f);
    f->base.poll = ap__topic_publish_poll_v;
    f->base.cancel = ap__topic_publish_cancel_v;
}

AP_API ap_status ap_topic_publish_status(const ap_topic_pub_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_topic_publish_wait(ap_topic *t, const char *subject, const void *elem,
                                       ap_deadline deadline_ns)
{
    ap_topic_pub_fut f;
    /* one attempt first: only a caller that parks reads the clock */
    ap_status st = ap_topic_try_publish(t, subject, elem);
    if (st != AP_FULL)
        return st;
    ap_topic_publish_fut_init(&f, t, subject, elem);
    uint64_t t0 = ap_now_ns();
    st = ap_waitop_wait(&f.op, deadline_ns);
    ap__waitlist_waited(&t->pub_wl, ap_now_ns() - t0);
    return st;
}

AP_API ap_status ap__topic_recv_try_v(void *obj, void *arg)
{
    const ap_topic_recv_fut *f = (const ap_topic_recv_fut *)arg;
    return ap_topic_sub_try_recv((ap_topic_sub *)obj, f->out, f->subject, NULL);
}

AP_API ap_poll ap_topic_recv_poll(ap_topic_recv_fut *f, ap_cx *cx)
{
    return ap_waitop_poll(&f->op, cx);
}

AP_API void ap_topic_recv_cancel(ap_topic_recv_fut *f)
{
    ap_waitop_cancel(&f->op);
}

AP__FUTURE_VTABLE(ap__topic_recv, ap_topic_recv_fut, ap_topic_recv_poll, ap_topic_recv_cancel)

AP_API void ap_topic_recv_fut_init(ap_topic_recv_fut *f, ap_topic_sub *sub, void *out,
                                   char *subject)
{
    AP_ASSERT(f != NULL && sub != NULL && sub->bus != NULL);
    f->out = out;
    f->subject = subject;
    ap_waitop_init(&f->op, &sub->wl, ap__topic_recv_try_v, sub, f);
    f->base.poll = ap__topic_recv_poll_v;
    f->base.cancel = ap__topic_recv_cancel_v;
}

AP_API ap_status ap_topic_recv_status(const ap_topic_recv_fut *f)
{
    return ap_waitop_status(&f->op);
}

AP_API ap_status ap_topic_sub_recv_wait(ap_topic_sub *sub, void *out, char *subject,
                                        ap_deadline deadline_ns)
{
    ap_topic_recv_fut f;
    /* one attempt first: only a caller that parks reads the clock */
    ap_status st = ap_topic_sub_try_recv(sub, out, subject, NULL);
    if (st != AP_EMPTY && st != AP_AGAIN)
        return st;
    ap_topic_recv_fut_init(&f, sub, out, subject);
    uint64_t t0 = ap_now_ns();
    st = ap_waitop_wait(&f.op, deadline_ns);
    ap__waitlist_waited(&sub->wl, ap_now_ns() - t0);
    return st;
}

#endif /* ASYNCPAT_TOPIC_H */
