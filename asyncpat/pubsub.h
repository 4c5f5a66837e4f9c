/*
 * asyncpat/pubsub.h -- publish-subscribe: a bounded broadcast channel
 *
 * PATTERN
 *   A ring of `capacity` slots in caller memory, each slot a 64-bit stamp
 *   followed by the message (the LMAX Disruptor's ring, with tokio's
 *   broadcast-channel semantics). Publishers claim the next sequence number
 *   with a CAS on `tail` and write the message into slot seq % capacity;
 *   every subscriber (an ap_sub in caller memory) keeps its own cursor and
 *   reads the slots without taking anything away from the others, so every
 *   subscriber sees every message. Nothing tracks the subscribers: the
 *   channel's shared state is `tail` and the slots, whatever their number.
 *
 *   Slow subscribers (policy AP_PUBSUB_POLICY_OVERWRITE, the only one so far):
 *   publishers never wait for subscribers. A message lives until it is
 *   overwritten `capacity` publishes later; a subscriber that fell further
 *   behind than that gets AP_DROPPED once, with the exact number of
 *   messages it lost, and its cursor jumps to the oldest message still in
 *   the ring (tokio's RecvError::Lagged). Nothing is lost silently.
 *   (A BLOCK policy, where publishers wait while the slowest subscriber is
 *   `capacity` behind, would need a registry of cursors that every
 *   publish scans, or a per-slot count of readers still to come, plus a
 *   publish future; this channel has none, and init refuses it with
 *   AP_INVAL. topic.h has them: subjects with NATS wildcards, and per
 *   subscription OVERWRITE, BLOCK or DISCONNECT, at the price of a short
 *   publish lock.)
 *
 *   Stamps (s = the sequence number a slot holds; a slot's stamps only rise):
 *     0           never written
 *     2s + 1      message s is being written
 *     2s + 2      message s is complete
 *   A publisher may claim t only when t's slot reads 2(t - capacity) + 2
 *   (0 for t < capacity): the slot's previous writer has finished, so two
 *   publishers never write one slot at once. The reader of r copies the
 *   slot when it reads 2r + 2 and re-checks the stamp afterwards, as a
 *   seqlock (cache.h): a stamp that moved means message r was overwritten
 *   while it was copied, and the copy is thrown away (AP_DROPPED).
 *
 * USAGE
 *   static uint64_t ring[AP_PUBSUB_BYTES(64, sizeof(struct tick)) / 8];
 *   ap_pubsub ch;
 *   if (ap_pubsub_init(&ch, ring, sizeof ring, 64, sizeof(struct tick), AP_PUBSUB_POLICY_OVERWRITE))
 *       abort();
 *   ap_sub sub = {0};                 // each subscriber thread (zero: not subscribed)
 *   ap_pubsub_subscribe(&ch, &sub);
 *   struct tick t = {0};              // any publisher thread:
 *   while (ap_pubsub_try_publish(&ch, &t) == AP_AGAIN) {}   // a lapped writer: retry
 *   for (;;) {                        // the subscriber:
 *       ap_status st = ap_sub_recv_wait(&sub, &t, AP_DEADLINE_NONE);
 *       if (st == AP_OK) use(&t);
 *       else if (st == AP_DROPPED) note_gap(ap_sub_last_dropped(&sub));
 *       else break;                   // AP_CLOSED: closed and drained
 *   }
 *   ap_pubsub_unsubscribe(&ch, &sub);
 *
 * GUARANTEES (invariants the tests check)
 *   - a subscriber receives every message published after it subscribed,
 *     each exactly once, in sequence order (so in publish order for each
 *     publisher), except a run of messages it is told about with
 *     AP_DROPPED and their exact number: at any quiescent point,
 *     ap_sub_received + ap_sub_lost == messages published since it
 *     subscribed ("after": the publish's claim follows the subscribe; a
 *     publish that returned before the subscribe began is never seen, one
 *     begun after the subscribe returned always counts)
 *   - a message is never torn: AP_OK hands out the bytes of one publish
 *   - drops happen only to subscribers more than `capacity` behind
 *   - after close: publishes return AP_CLOSED; subscribers receive what is
 *     left (or are told it was dropped), then get AP_CLOSED; every
 *     receive future wakes
 *   - no lost wakeup: a receive future that returned AP_PENDING is woken
 *     by the next publish or by close (THE LADDER in waitlist.h)
 *
 * CONCURRENCY        try_publish  try_recv  subscribe  close  fini
 *   try_publish          yes        yes        yes      yes    no
 *   try_recv (sub A)     yes      other subs    yes      yes    no
 *   subscribe            yes        yes        yes      yes    no
 *   One ap_sub belongs to one thread at a time (its cursor is plain
 *   memory); different subscribers are fully concurrent.
 *   Progress: try_publish and try_recv never block. A publisher preempted
 *   between claiming and completing its slot holds up (a) subscribers at
 *   that sequence, which spin AP_SPIN_LIMIT times and then answer AP_AGAIN
 *   ("a message is in flight: retry"), and (b) the publisher a whole lap
 *   later that needs the same slot (AP_AGAIN likewise). So, like mpmc.h,
 *   the channel is not lock-free in the strict sense; it never waits for
 *   a subscriber.
 *
 * ORDERING     the happens-before edges and why they hold: the ORDERING
 *              comment after the API (below "---- implementation ----")
 *
 * COMPLEXITY   try_publish, try_recv: O(elem_size / 8), one CAS per publish
 *              (retried only when another publisher won), no RMW per
 *              receive; subscribe/unsubscribe O(1). A publish with parked
 *              subscribers wakes all of them (broadcast).
 *              Memory: AP_PUBSUB_BYTES(capacity, elem_size) =
 *              capacity * (8 + elem_size rounded up to 8) + the header.
 * MEMORY       init: a caller buffer and its size in bytes: at least
 *              AP_PUBSUB_BYTES(capacity, elem_size), aligned to
 *              AP_PUBSUB_ALIGN (8); else AP_INVAL with nothing written;
 *              create: one allocation. ap_sub and futures: caller memory.
 * ERRORS       AP_EMPTY, AP_AGAIN (a publisher is between claiming and
 *              completing the slot: retry at once), AP_DROPPED, AP_CLOSED;
 *              AP_NOT_READY as a pending receive future's status; AP_INVAL for
 *              capacity 0, elem_size 0, a policy other than
 *              AP_PUBSUB_POLICY_OVERWRITE, sizes that overflow, or a buffer that
 *              is NULL, too small or misaligned (nothing is changed).
 *              Out-params are untouched unless AP_OK, with one
 *              exception: for elements over 128 bytes the copy goes straight
 *              into *out, which a read that raced with an overwrite
 *              (reported AP_DROPPED) leaves scribbled.
 * WAKE ORDER   every parked receive future is woken by each publish (wake
 *              all: they all want the same message); order unspecified.
 *              A cancelled receive took nothing and costs nobody a wake.
 * CONFIG       AP_CACHELINE, AP_SPIN_LIMIT, AP_ASSERT, AP_NO_MALLOC
 * SEE ALSO     topic.h (subjects, per-subscriber policies), mpmc.h (one
 *              consumer per item), waitlist.h, cache.h (seqlock),
 *              tests/test_pubsub.c, bench/bench_pubsub.c
 * STABILITY    experimental (0.x): names may still change before 1.0
 */
#ifndef ASYNCPAT_PUBSUB_H
#define ASYNCPAT_PUBSUB_H

#include "core.h"
#include "future.h"
#include "waitlist.h"

/** AP_PUBSUB_STRIDE - bytes per slot: a uint64_t stamp, then the message in 8-byte words */
#define AP_PUBSUB_STRIDE(elem_size) \
    ((size_t)8 + ((size_t)(elem_size) + 7) / 8 * 8)
/** AP_PUBSUB_BYTES - buffer bytes for ap_pubsub_init (constant expression) */
#define AP_PUBSUB_BYTES(capacity, elem_size) \
    ((size_t)(capacity) * AP_PUBSUB_STRIDE(elem_size))
/** AP_PUBSUB_ALIGN - the alignment ap_pubsub_init needs of its buffer: the
 *  slots are atomic 64-bit words (constant expression). That is the atomic
 *  type's alignment, 8 (config.h asserts it), not uint64_t's: on i386 a
 *  plain uint64_t is 4-aligned, and a 64-bit atomic load there is one
 *  8-byte access, whole only when 8-aligned. */
#define AP_PUBSUB_ALIGN ((size_t)AP_ALIGNOF(AP_ATOMIC_T(uint64_t)))

/** What a publisher does about subscribers that fall behind (see PATTERN). */
typedef enum ap_pubsub_policy {
    AP_PUBSUB_POLICY_OVERWRITE = 0 /* never wait; laggards get AP_DROPPED with a count */
} ap_pubsub_policy;

typedef struct ap_pubsub {
    AP_ALIGNAS(AP_CACHELINE) AP_ATOMIC_T(uint64_t) tail; /* next sequence | CLOSED bit */
    AP_ALIGNAS(AP_CACHELINE) unsigned char *buf;    /* read-only after init from here */
    size_t capacity;
    size_t elem_size;
    size_t words;  /* elem_size in 8-byte words, rounded up */
    size_t stride; /* AP_PUBSUB_STRIDE(elem_size) */
    bool pow2;     /* capacity is a power of two: index with a mask */
    ap_pubsub_policy policy;
    const ap_allocator *alloc; /* set by create */
    AP_ALIGNAS(AP_CACHELINE) ap_waitlist wl; /* parked receive futures */
} ap_pubsub;

AP_STATIC_ASSERT(offsetof(ap_pubsub, buf) - offsetof(ap_pubsub, tail) >= AP_CACHELINE,
               "ap_pubsub: tail must have its cache line to itself");
AP_STATIC_ASSERT(offsetof(ap_pubsub, wl) - offsetof(ap_pubsub, buf) >= AP_CACHELINE,
               "ap_pubsub: the waiter list must not share the read-only line");

/**
 * ap_sub - one subscriber's cursor, in caller memory. A zero ap_sub is
 * unsubscribed. Owned by one thread at a time; read its counters only there.
 */
typedef struct ap_sub {
    ap_pubsub *ps;      /* NULL: not subscribed */
    uint64_t next;      /* sequence number of the next message to receive */
    uint64_t received;  /* messages received (AP_OK) since subscribing */
    uint64_t lost;      /* messages reported lost (sum over AP_DROPPED) */
    uint64_t last_lost; /* the count of the latest AP_DROPPED */
} ap_sub;

typedef struct ap_sub_recv_fut { ap_future base; ap_waitop op; } ap_sub_recv_fut;

/**
 * ap_pubsub_stats - counters (ap_pubsub_stats_get; a relaxed snapshot, exact
 * at quiescence). published is read off tail, so publish counts nothing;
 * the rest is the receive waitlist's, written only when a receiver queues
 * or parks. The channel tracks no subscribers (no count of them), and a
 * drop is a subscriber's own: see ap_pubsub_sub_stats.
 */
typedef struct ap_pubsub_stats {
    uint64_t published; /* messages claimed since init (ap_pubsub_published) */
    uint64_t waiters;   /* receive futures parked now */
    uint64_t waits;     /* times a receiver queued (a future or ap_sub_recv_wait) */
    uint64_t wait_ns;   /* ns parked in ap_sub_recv_wait (ap_now_ns; only callers that parked) */
} ap_pubsub_stats;

/**
 * ap_pubsub_sub_stats - one subscriber's counters (ap_pubsub_sub_stats_get),
 * since it subscribed; its own plain memory, so exact on its owner's thread.
 */
typedef struct ap_pubsub_sub_stats {
    uint64_t received; /* messages received (AP_OK): ap_sub_received */
    uint64_t dropped;  /* messages reported lost (sum over AP_DROPPED): ap_sub_lost */
} ap_pubsub_sub_stats;

/**
 * ap_pubsub_init - set up a channel in caller memory
 * @buf:       at least AP_PUBSUB_BYTES(capacity, elem_size) bytes aligned to
 *             AP_PUBSUB_ALIGN
 * @bytes:     the size of @buf (the excess is not touched)
 * @capacity:  messages retained for slow subscribers (>= 1), exactly
 * @elem_size: bytes per message (>= 1)
 * @policy:    AP_PUBSUB_POLICY_OVERWRITE
 *
 * Returns AP_OK or AP_INVAL (capacity or elem_size 0, unknown policy, sizes
 * that overflow, @buf NULL, misaligned or @bytes too small); on AP_INVAL
 * *ps and buf are untouched.
 */
AP_API AP_NODISCARD ap_status ap_pubsub_init(ap_pubsub *ps, void *buf, size_t bytes,
                                             size_t capacity, size_t elem_size,
                                             ap_pubsub_policy policy);
/** ap_pubsub_fini - end of life; frees nothing. Receive futures must be done. */
AP_API void ap_pubsub_fini(ap_pubsub *ps);

#ifndef AP_NO_MALLOC
/**
 * ap_pubsub_create - allocate and initialise a channel (one allocation)
 * @out:   receives the channel; untouched on failure
 * @alloc: allocator, or NULL for aligned_alloc/free
 *
 * Returns AP_OK, AP_INVAL (nothing allocated) or AP_NOMEM.
 */
AP_API AP_NODISCARD ap_status ap_pubsub_create(ap_pubsub **out, size_t capacity,
                                               size_t elem_size, ap_pubsub_policy policy,
                                               const ap_allocator *alloc);
/** ap_pubsub_destroy - free a channel from ap_pubsub_create; NULL is a no-op */
AP_API void ap_pubsub_destroy(ap_pubsub *ps);
#endif

/**
 * ap_pubsub_try_publish - broadcast one message to every current subscriber
 * @elem: elem_size bytes, copied in; the caller keeps ownership
 *
 * Returns AP_OK, AP_AGAIN (the slot's writer of one lap ago is still
 * copying in: retry; nothing was claimed) or AP_CLOSED.
 * Concurrency: any thread. Never waits for a subscriber.
 * Ordering: release on success; pairs with the acquire in ap_sub_try_recv.
 */
AP_API AP_NODISCARD ap_status ap_pubsub_try_publish(ap_pubsub *ps, const void *elem);

/** ap_pubsub_close - refuse further publishes, wake every receive future; idempotent */
AP_API void ap_pubsub_close(ap_pubsub *ps);
/** ap_pubsub_is_closed - whether ap_pubsub_close has been called */
AP_API bool ap_pubsub_is_closed(ap_pubsub *ps);
/** ap_pubsub_published - messages claimed so far (racy snapshot; the next sequence) */
AP_API uint64_t ap_pubsub_published(ap_pubsub *ps);
/** ap_pubsub_capacity - the capacity given at init */
AP_API size_t ap_pubsub_capacity(const ap_pubsub *ps);
/** ap_pubsub_stats_get - the channel's counters into *@out (relaxed snapshot; any thread) */
AP_API void ap_pubsub_stats_get(ap_pubsub *ps, ap_pubsub_stats *out);
/** ap_pubsub_sub_stats_get - @sub's counters into *@out (its owner's thread, as ap_sub_received) */
AP_API void ap_pubsub_sub_stats_get(const ap_sub *sub, ap_pubsub_sub_stats *out);

/**
 * ap_pubsub_subscribe - start receiving: @sub's cursor is the current tail
 * @sub: caller memory, not subscribed (zero, or unsubscribed)
 *
 * Messages whose publish claims its sequence after this load are
 * received; earlier ones never are. Counters start at zero. Works on a
 * closed channel (the first receive says AP_CLOSED).
 * Concurrency: any thread; touches no shared state but a load of tail.
 */
AP_API void ap_pubsub_subscribe(ap_pubsub *ps, ap_sub *sub);
/**
 * ap_pubsub_unsubscribe - stop receiving; @sub may then be reused
 * A receive future on @sub must be completed or cancelled first. O(1):
 * nothing shared remembers the subscriber.
 */
AP_API void ap_pubsub_unsubscribe(ap_pubsub *ps, ap_sub *sub);

/**
 * ap_sub_try_recv - take this subscriber's next message
 * @out:     receives elem_size bytes; untouched unless AP_OK (see ERRORS
 *           for elements over 128 bytes)
 * @dropped: NULL, or receives the number of lost messages on AP_DROPPED
 *
 * Returns AP_OK; AP_EMPTY (nothing new); AP_AGAIN (the next message is
 * still being copied in by a publisher: retry); AP_DROPPED (this
 * subscriber fell more than capacity behind: n messages were overwritten
 * before it read them, *dropped = n, the cursor moved to the oldest
 * message still held, and the next call goes on from there); or AP_CLOSED
 * (closed, and nothing is left for this subscriber).
 * Concurrency: the subscriber's owner; concurrent with everything else.
 */
AP_API AP_NODISCARD ap_status ap_sub_try_recv(ap_sub *sub, void *out, uint64_t *dropped);

/** ap_sub_len - messages published (or claimed) not yet taken by @sub; may exceed capacity (then the next receive reports a drop). Racy snapshot. */
AP_API uint64_t ap_sub_len(ap_sub *sub);
/** ap_sub_received - messages @sub received since it subscribed */
AP_API uint64_t ap_sub_received(const ap_sub *sub);
/** ap_sub_lost - messages @sub was told it lost (sum of every AP_DROPPED count) */
AP_API uint64_t ap_sub_lost(const ap_sub *sub);
/** ap_sub_last_dropped - the count reported by @sub's latest AP_DROPPED (0 if none) */
AP_API uint64_t ap_sub_last_dropped(const ap_sub *sub);

/**
 * ap_sub_recv_fut_init / _poll / _cancel: a future that receives @sub's
 * next message into @out, parking until a publish or close. Result via
 * ap_sub_recv_status: AP_OK, AP_DROPPED (count in ap_sub_last_dropped;
 * poll again with a new future for the next message), AP_CLOSED or
 * AP_CANCELED. A cancelled receive took nothing. @sub and @out must stay
 * valid until the future completes or is cancelled; one future per
 * subscriber at a time.
 */
AP_API void ap_sub_recv_fut_init(ap_sub_recv_fut *f, ap_sub *sub, void *out);
AP_API ap_poll ap_sub_recv_poll(ap_sub_recv_fut *f, ap_cx *cx);
AP_API void ap_sub_recv_cancel(ap_sub_recv_fut *f);
/** result of a receive future: AP_NOT_READY while pending, then AP_OK/AP_DROPPED/AP_CLOSED/AP_CANCELED */
AP_API AP_NODISCARD ap_status ap_sub_recv_status(const ap_sub_recv_fut *f);

/**
 * ap_sub_recv_wait - block this thread until a message, a drop report,
 * close, or deadline_ns. Returns AP_OK, AP_DROPPED, AP_CLOSED or AP_TIMEDOUT.
 */
AP_API AP_NODISCARD ap_status ap_sub_recv_wait(ap_sub *sub, void *out,
                                               ap_deadline deadline_ns);

/**
 * AP_PUBSUB_DEFINE(name, T) - typed wrapper: name (the channel), name_init,
 * name_fini, name_try_publish, name_close, name_subscribe, name_try_recv,
 * with the element size the constant sizeof(T).
 */
#define AP_PUBSUB_DEFINE(name, T)                                                              \
    typedef struct name { ap_pubsub ps; } name;                                                \
    AP__TYPED AP_NODISCARD ap_status name##_init(name *self, void *buf,                         \
                                                              size_t bytes, size_t capacity)    \
    { return ap_pubsub_init(&self->ps, buf, bytes, capacity, sizeof(T), AP_PUBSUB_POLICY_OVERWRITE); } \
    AP__TYPED void name##_fini(name *self) { ap_pubsub_fini(&self->ps); }                       \
    AP__TYPED AP_NODISCARD ap_status name##_try_publish(name *self, const T *elem)              \
    { return ap__pubsub_publish(&self->ps, elem, sizeof(T)); }                                  \
    AP__TYPED void name##_close(name *self) { ap_pubsub_close(&self->ps); }                     \
    AP__TYPED void name##_subscribe(name *self, ap_sub *sub)                                    \
    { ap_pubsub_subscribe(&self->ps, sub); }                                                    \
    AP__TYPED AP_NODISCARD ap_status name##_try_recv(ap_sub *sub, T *out,                       \
                                                                  uint64_t *dropped)           \
    { return ap__sub_recv(sub, out, sizeof(T), dropped); }

/* ---- implementation ---- */

/*
 * ORDERING
 *   A try_publish returning AP_OK happens-before a try_recv that returns
 *   its message (release store of the stamp 2s + 2 / acquire load), so a
 *   message may carry pointers to memory written before the publish.
 *   Seqlock read (Boehm, "Can seqlocks get along with programming language
 *   memory models?", MSPC 2012): the writer stores the odd stamp (relaxed),
 *   a release fence, the message words (relaxed), the even stamp
 *   (release); the reader loads the stamp (acquire), the words (relaxed),
 *   an acquire fence, the stamp again (relaxed). If any word came from a
 *   later writer, the fences synchronise and the second stamp load sees
 *   that writer's odd stamp, so the copy is discarded. Message bytes are
 *   copied as relaxed atomic 64-bit words, so a racing copy is a discarded
 *   value, never undefined behaviour. Under ThreadSanitizer (which does
 *   not model fences) the fences go and the word stores/loads become
 *   release/acquire: strictly stronger, and visible to TSan.
 *   A publisher's claim loads the slot's stamp with acquire, pairing with
 *   the previous writer's release: its words are ordered after the old
 *   ones. Lost wakeups (THE LADDER of waitlist.h; the waiter pays): a
 *   publish publishes with its release store of the even stamp, then
 *   checks ap_waitlist_parked (LIGHT + a relaxed count load); a parked
 *   subscriber registers (count++, HEAVY barrier) and re-checks the
 *   stamp (acquire) and tail. Either the publisher sees the waiter or
 *   HEAVY makes the stamp visible to the re-check. The tail CAS only
 *   claims a ticket (relaxed, as the mpmc's claims): the stamps carry the
 *   data. In the fallback ladder (TSan, non-Linux, AP_NO_ASYM_BARRIER)
 *   the tail CAS is seq_cst, the waking side's SC operation, and the
 *   re-check's tail load is seq_cst. close's fetch_or stays seq_cst
 *   before wake_all's seq_cst count load (rare). With nobody parked a
 *   publish is its claim CAS, its stamp and word stores, the seqlock's
 *   release fence (a compiler barrier on x86) and one relaxed load.
 */

#define AP__PUBSUB_CLOSED (UINT64_C(1) << 63)
/* capacity and sequence limits: 2 * seq + 2 must fit in 64 bits */
#define AP__PUBSUB_CAP_LIMIT (SIZE_MAX >> 4)
/* Messages up to this many words are copied into a stack buffer first, so
 * *out is untouched when the copy turns out torn. */
#define AP__PUBSUB_FAST_WORDS 16

/* Seqlock orders: AP__SEQLOCK_* in core.h, as in cache.h. */

AP_FORCE_INLINE AP_ATOMIC_T(uint64_t) *ap__pubsub_slot(const ap_pubsub *ps, uint64_t seq)
{
    size_t index = ps->pow2 ? (size_t)(seq & (uint64_t)(ps->capacity - 1))
                            : (size_t)(seq % (uint64_t)ps->capacity);
    return (AP_ATOMIC_T(uint64_t) *)(void *)(ps->buf + index * ps->stride);
}

/* The stamp a slot must show before a publisher may claim @seq for it. */
AP_FORCE_INLINE uint64_t ap__pubsub_free_stamp(const ap_pubsub *ps, uint64_t seq)
{
    return seq < ps->capacity ? 0 : 2 * (seq - ps->capacity) + 2;
}

AP_API bool ap__pubsub_config_ok(size_t capacity, size_t elem_size, ap_pubsub_policy policy,
                                 size_t extra, size_t *total)
{
    return capacity != 0 && elem_size != 0 && capacity <= AP__PUBSUB_CAP_LIMIT &&
           elem_size <= SIZE_MAX / 2 && policy == AP_PUBSUB_POLICY_OVERWRITE &&
           ap__size_muladd(capacity, AP_PUBSUB_STRIDE(elem_size), extra, total);
}

AP_API ap_status ap_pubsub_init(ap_pubsub *ps, void *buf, size_t bytes, size_t capacity,
                                size_t elem_size, ap_pubsub_policy policy)
{
    size_t need;
    AP_ASSERT(ps != NULL);
    /* every check before the first write: AP_INVAL touches nothing (issue
     * #11: a short buffer was overrun; NULL or misaligned tripped AP_ASSERT) */
    if (!ap__pubsub_config_ok(capacity, elem_size, policy, 0, &need) || buf == NULL ||
        (uintptr_t)buf % AP_PUBSUB_ALIGN != 0 || bytes < need)
        return AP_INVAL;
    ps->buf = (unsigned char *)buf;
    ps->capacity = capacity;
    ps->elem_size = elem_size;
    ps->words = (elem_size + 7) / 8;
    ps->stride = AP_PUBSUB_STRIDE(elem_size);
    ps->pow2 = (capacity & (capacity - 1)) == 0;
    ps->policy = policy;
    ps->alloc = NULL;
    for (size_t i = 0; i < capacity; i++) {
        AP_ATOMIC_T(uint64_t) *slot = ap__pubsub_slot(ps, i);
        for (size_t k = 0; k <= ps->words; k++)
            AP_ATOMIC_INIT(&slot[k], (uint64_t)0); /* stamp 0: never written */
    }
    AP_ATOMIC_INIT(&ps->tail, (uint64_t)0);
    ap_waitlist_init(&ps->wl);
    return AP_OK;
}

AP_API void ap_pubsub_fini(ap_pubsub *ps)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL); /* live: fini once */
    /* Every build: a parked receive future would be woken into freed memory. */
    AP_ASSERT(!ap_waitlist_has_waiters(&ps->wl));
    ps->buf = NULL;
}

#ifndef AP_NO_MALLOC
AP_API ap_status ap_pubsub_create(ap_pubsub **out, size_t capacity, size_t elem_size,
                                  ap_pubsub_policy policy, const ap_allocator *alloc)
{
    const ap_allocator *a = ap__allocator_or_default(alloc);
    size_t hdr = ap__align_up(sizeof(ap_pubsub), AP_CACHELINE), total;
    AP_ASSERT(out != NULL);
    if (a == NULL || !ap__pubsub_config_ok(capacity, elem_size, policy, hdr, &total))
        return AP_INVAL;
    unsigned char *mem = (unsigned char *)a->alloc(total, AP_CACHELINE, a->user);
    if (mem == NULL)
        return AP_NOMEM;
    ap_pubsub *ps = (ap_pubsub *)(void *)mem;
    ap_status st = ap_pubsub_init(ps, mem + hdr, total - hdr, capacity, elem_size, policy);
    AP_ASSERT(st == AP_OK);
    (void)st;
    ps->alloc = a;
    *out = ps;
    return AP_OK;
}

AP_API void ap_pubsub_destroy(ap_pubsub *ps)
{
    if (ps == NULL)
        return;
    AP_ASSERT(ps->alloc != NULL); /* only channels from ap_pubsub_create */
    const ap_allocator *a = ps->alloc;
    size_t total = ap__align_up(sizeof(ap_pubsub), AP_CACHELINE) + ps->capacity * ps->stride;
    if (ps->buf != NULL) /* fini may have run already */
        ap_pubsub_fini(ps);
    a->free(ps, total, a->user);
}
#endif

/* The one publish algorithm (sz is a constant in the typed wrapper). */
AP_FORCE_INLINE ap_status ap__pubsub_publish(ap_pubsub *ps, const void *elem, size_t sz)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL);
    AP_ASSERT(elem != NULL && sz == ps->elem_size);
    unsigned spins = 0;
    /* relaxed: only a guess at the ticket; the CAS below decides */
    uint64_t t = AP_ATOMIC_LOAD(&ps->tail, memory_order_relaxed);
    for (;;) {
        if (AP_UNLIKELY(t & AP__PUBSUB_CLOSED))
            return AP_CLOSED;
        AP_ATOMIC_T(uint64_t) *slot = ap__pubsub_slot(ps, t);
        /* acquire: pairs with the release of the even stamp by the slot's
         * previous writer (t - capacity): its words are ordered before ours */
        uint64_t s = AP_ATOMIC_LOAD(&slot[0], memory_order_acquire);
        if (s == ap__pubsub_free_stamp(ps, t)) {
            /* relaxed: the claim orders nothing (the stamps carry the
             * data); seq_cst in the fallback ladder, where it is the
             * waking side's SC operation (waitlist.h); relaxed on
             * failure, we only re-read tail */
            if (AP_ATOMIC_CAS_WEAK(&ps->tail, &t, t + 1,
                                   AP__ASYM ? memory_order_relaxed : memory_order_seq_cst,
                                   memory_order_relaxed)) {
                /* relaxed: ordered before the words by the fence below */
                AP_ATOMIC_STORE(&slot[0], 2 * t + 1, memory_order_relaxed);
                /* release fence: a reader whose word load sees any store
                 * below, then runs its acquire fence, re-reads a stamp of
                 * at least 2t + 1 and discards its copy (Boehm 2012). A
                 * release store could not order the LATER stores. */
                AP__SEQLOCK_FENCE_RELEASE();
                AP_TEST_YIELD(); /* between claiming and publishing */
                const unsigned char *src = (const unsigned char *)elem;
                size_t left = sz;
                for (size_t k = 1; left > 0; k++) {
                    uint64_t x = 0;
                    size_t n = left < 8 ? left : 8;
                    memcpy(&x, src, n);
                    AP_ATOMIC_STORE(&slot[k], x, AP__SEQLOCK_MO_STORE);
                    src += n;
                    left -= n;
                }
                /* release: pairs with the acquire stamp load in
                 * ap__sub_recv; the words are visible before the slot
                 * reads complete; the publishing store of THE LADDER */
                AP_ATOMIC_STORE(&slot[0], 2 * t + 2, memory_order_release);
                if (AP_UNLIKELY(ap_waitlist_parked(&ps->wl)))
                    (void)ap_waitlist_wake_all(&ps->wl);
                return AP_OK;
            }
            continue; /* t was reloaded by the failed CAS */
        }
        /* The slot is not free for ticket t. If tail moved, our view was
         * stale: retry. Otherwise the slot's writer of one lap ago is
         * still copying in: a window it is guaranteed to close. */
        uint64_t now = AP_ATOMIC_LOAD(&ps->tail, memory_order_relaxed);
        if (now != t) {
            t = now;
            continue;
        }
        if (spins >= AP_SPIN_LIMIT)
            return AP_AGAIN;
        ap__backoff(&spins);
    }
}

/* Copy message words out of a slot (seqlock-validated by the caller). */
AP_FORCE_INLINE void ap__pubsub_copy_out(AP_ATOMIC_T(uint64_t) *slot, unsigned char *dst, size_t sz)
{
    for (size_t k = 1; sz > 0; k++) {
        /* relaxed: validated by the stamp re-check (seqlock) */
        uint64_t x = AP_ATOMIC_LOAD(&slot[k], AP__SEQLOCK_MO_LOAD);
        size_t n = sz < 8 ? sz : 8;
        memcpy(dst, &x, n);
        dst += n;
        sz -= n;
    }
}

/* The one receive algorithm. */
AP_FORCE_INLINE ap_status ap__sub_recv(ap_sub *sub, void *out, size_t sz, uint64_t *dropped)
{
    AP_ASSERT(sub != NULL && sub->ps != NULL && sub->ps->buf != NULL);
    ap_pubsub *ps = sub->ps;
    AP_ASSERT(out != NULL && sz == ps->elem_size);
    uint64_t r = sub->next, want = 2 * r + 2;
    AP_ATOMIC_T(uint64_t) *slot = ap__pubsub_slot(ps, r);
    uint64_t copy[AP__PUBSUB_FAST_WORDS];
    bool fast = ps->words <= AP__PUBSUB_FAST_WORDS;
    unsigned spins = 0;
    for (;;) {
        /* acquire: pairs with the release of the even stamp in
         * ap__pubsub_publish: the message's words are visible */
        uint64_t s1 = AP_ATOMIC_LOAD(&slot[0], memory_order_acquire);
        if (s1 == want) {
            ap__pubsub_copy_out(slot, fast ? (unsigned char *)copy : (unsigned char *)out, sz);
            AP_TEST_YIELD(); /* tests: widen the window an overwrite needs */
            /* acquire fence: pairs with the release fence in
             * ap__pubsub_publish; if a word came from a later writer, the
             * reload below sees its odd stamp */
            AP__SEQLOCK_FENCE_ACQUIRE();
            uint64_t s2 = AP_ATOMIC_LOAD(&slot[0], memory_order_relaxed);
            if (AP_LIKELY(s2 == s1)) {
                if (fast)
                    memcpy(out, copy, sz);
                sub->next = r + 1;
                sub->received++;
                return AP_OK;
            }
            s1 = s2; /* overwritten while we copied: we lagged */
        }
        if (s1 > want) {
            /* The slot holds (or is taking) message h >= r + capacity, so
             * r .. oldest-1 are gone. oldest is the first message still
             * held by tail's view, never below h + 1 - capacity (a tail
             * load may lag the stamp we saw). */
            uint64_t h = (s1 - 1) / 2;
            /* seq_cst: any fresher tail shortens the next drop report */
            uint64_t tail = AP_ATOMIC_LOAD(&ps->tail, memory_order_seq_cst) &
                            ~AP__PUBSUB_CLOSED;
            if (tail < h + 1)
                tail = h + 1;
            uint64_t oldest = tail - ps->capacity, n = oldest - r;
            sub->next = oldest;
            sub->lost += n;
            sub->last_lost = n;
            if (dropped)
                *dropped = n;
            return AP_DROPPED;
        }
        /* Message r is not complete. Empty iff no publish has claimed it.
         * seq_cst: the ladder's re-check for parked receive futures. */
        uint64_t tail = AP_ATOMIC_LOAD(&ps->tail, memory_order_seq_cst);
        if ((tail & ~AP__PUBSUB_CLOSED) <= r)
            return (tail & AP__PUBSUB_CLOSED) ? AP_CLOSED : AP_EMPTY;
        /* claimed, still being copied in by its publisher */
        if (spins >= AP_SPIN_LIMIT)
            return AP_AGAIN;
        ap__backoff(&spins);
    }
}

AP_API ap_status ap_pubsub_try_publish(ap_pubsub *ps, const void *elem)
{
    AP_ASSERT(ps != NULL);
    return ap__pubsub_publish(ps, elem, ps->elem_size);
}

AP_API ap_status ap_sub_try_recv(ap_sub *sub, void *out, uint64_t *dropped)
{
    AP_ASSERT(sub != NULL && sub->ps != NULL);
    return ap__sub_recv(sub, out, sub->ps->elem_size, dropped);
}

AP_API void ap_pubsub_close(ap_pubsub *ps)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL);
    /* seq_cst: ordered before the waitlist scan below (the ladder) */
    (void)AP_ATOMIC_FETCH_OR(&ps->tail, AP__PUBSUB_CLOSED, memory_order_seq_cst);
    (void)ap_waitlist_wake_all(&ps->wl);
}

AP_API bool ap_pubsub_is_closed(ap_pubsub *ps)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL);
    /* relaxed: a snapshot; receives re-check tail themselves */
    return (AP_ATOMIC_LOAD(&ps->tail, memory_order_relaxed) & AP__PUBSUB_CLOSED) != 0;
}

AP_API uint64_t ap_pubsub_published(ap_pubsub *ps)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL);
    return AP_ATOMIC_LOAD(&ps->tail, memory_order_relaxed) & ~AP__PUBSUB_CLOSED; /* snapshot */
}

AP_API size_t ap_pubsub_capacity(const ap_pubsub *ps)
{
    return ps->capacity;
}

AP_API void ap_pubsub_stats_get(ap_pubsub *ps, ap_pubsub_stats *out)
{
    ap_waitlist_stats w;
    AP_ASSERT(ps != NULL && ps->buf != NULL && out != NULL);
    out->published = AP_ATOMIC_LOAD(&ps->tail, memory_order_relaxed) & ~AP__PUBSUB_CLOSED; /* relaxed: statistics snapshot */
    ap_waitlist_stats_get(&ps->wl, &w);
    out->waiters = w.waiters;
    out->waits = w.waits;
    out->wait_ns = w.wait_ns;
}

AP_API void ap_pubsub_sub_stats_get(const ap_sub *sub, ap_pubsub_sub_stats *out)
{
    AP_ASSERT(sub != NULL && out != NULL);
    out->received = sub->received;
    out->dropped = sub->lost;
}

AP_API void ap_pubsub_subscribe(ap_pubsub *ps, ap_sub *sub)
{
    AP_ASSERT(ps != NULL && ps->buf != NULL && sub != NULL);
    AP_ASSERT(sub->ps == NULL); /* not already subscribed */
    sub->ps = ps;
    /* seq_cst (stronger than needed): a publish whose claim CAS follows
     * the value we read in tail's modification order gets a sequence >=
     * our cursor (coherence; the claim may be relaxed) */
    sub->next = AP_ATOMIC_LOAD(&ps->tail, memory_order_seq_cst) & ~AP__PUBSUB_CLOSED;
    sub->received = sub->lost = sub->last_lost = 0;
}

AP_API void ap_pubsub_unsubscribe(ap_pubsub *ps, ap_sub *sub)
{
    AP_ASSERT(ps != NULL && sub != NULL && sub->ps == ps);
    sub->ps = NULL;
}

AP_API uint64_t ap_sub_len(ap_sub *sub)
{
    AP_ASSERT(sub != NULL && sub->ps != NULL);
    uint64_t tail = ap_pubsub_published(sub->ps);
    return tail > sub->next ? tail - sub->next : 0;
}

AP_API uint64_t ap_sub_received(const ap_sub *sub)
{
    return sub->received;
}

AP_API uint64_t ap_sub_lost(const ap_sub *sub)
{
    return sub->lost;
}

AP_API uint64_t ap_sub_last_dropped(const ap_sub *sub)
{
    return sub->last_lost;
}

AP_API ap_status ap__sub_try_recv_v(void *sub, void *out)
{
    return ap_sub_try_recv((ap_sub *)sub, out, NULL);
}

AP__WAITOP_FUTURE(ap_sub_recv, ap_sub_recv_fut, ap_sub, ps->wl, ap__sub_try_recv_v, void *)

#endif /* ASYNCPAT_PUBSUB_H */
