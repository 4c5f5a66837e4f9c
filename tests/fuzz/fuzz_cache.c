/* tests/fuzz/fuzz_cache.c -- libFuzzer harness for asyncpat/cache.h
 *
 * Input: descs (any capacity, shards and value_size, or a NULL desc, for
 * the AP_INVAL paths of bytes, init and create), then a cache of 1..8
 * shards (1 half the time: plain SIEVE), a capacity of shards..shards+47
 * and a value size of 0..200 bytes (over 128: the locked read path), and a
 * single-threaded sequence of get / put / remove on keys from a small
 * range (so that shards fill up and evict), each put's value encoding its
 * key and a fresh version, checked against a reference SIEVE per shard
 * (the shard picked as the cache does): a FIFO queue, oldest first, with
 * a visited bit per entry and a hand that stays where it stopped:
 *   - bytes / init / create: AP_INVAL exactly for capacity 0, shards not a
 *     power of two, above 2^31 or above capacity, more than 2^30 entries
 *     per shard, value_size above SIZE_MAX / 4, or a size that overflows;
 *     init also for a buffer smaller than AP_CACHE_BYTES; then *c, *out
 *     and the buffer are untouched and nothing is allocated;
 *     ap_cache_bytes equals AP_CACHE_BYTES; create/destroy balance
 *   - every decision matches the model: hit or miss, the value a get or
 *     remove returns (the latest put's, byte for byte), update or insert,
 *     whether a put evicts and the victim's key and value
 *   - after every step: each shard's queue (oldest to newest), visited
 *     bits, hand position and len equal the model's; len() <= capacity
 *     and equals the model; out-params are untouched on AP_EMPTY and a
 *     victim's value buffer when nothing was evicted
 *   - stats are exact: hits + misses == gets, inserts, updates, removes,
 *     evictions and hand_steps as the model counts them, and
 *     hand_steps <= evictions + hits + updates
 *   - the cache writes nothing past AP_CACHE_BYTES of its buffer
 *   - timed caches (half the inputs; issue #15): expire_after_write and/or
 *     expire_after_access from 1 ns to 2^40 ns (or AP_CACHE_NEVER with
 *     per-entry TTLs), a fake clock the input moves by up to 2^55 ns at a
 *     time: a get (desc clock or get_at) hits iff the entry is held and
 *     now < both its deadlines (a hit raises the access deadline);
 *     put_ttl overrides the write deadline (AP_INVAL on an untimed cache,
 *     changing nothing); ap_cache_maintain returns exactly the number of
 *     held entries whose deadline passed and removes exactly those (the
 *     SIEVE queue and hand then equal the model's), and
 *     inserts - evictions - removes - expirations == len
 *   - ap_cache_kv with expiry (kv_phase, the same bytes read again): the
 *     model of kv_phase's comment: hard expiry after write / access / a
 *     per-entry TTL, maintain reclaims exactly the expired, every value
 *     released exactly once with its cause and never while pinned
 */
#include "asyncpat/cache.h"
#include "fuzz_common.h"

#define MAXS 8
#define MAXCAP (MAXS + 48)
#define MAXVS 200
#define BUFSZ (256 * 1024)

static _Alignas(AP_CACHELINE) unsigned char cbuf[BUFSZ];

/* ---- the AP_INVAL paths ---- */

static unsigned __int128 pow2_ceil128(unsigned __int128 x)
{
    unsigned __int128 p = 1;
    while (p < x) p <<= 1;
    return p;
}

/* the size a desc needs, or 0 if it is invalid */
static size_t expect_bytes(size_t cap, size_t shards, size_t vs)
{
    size_t s = shards ? shards : 1;
    if (cap == 0 || (s & (s - 1)) != 0 || cap < s || s > ((size_t)1 << 31)) return 0;
    size_t share = cap / s + (cap % s != 0);
    if (share > ((size_t)1 << 30) || vs > SIZE_MAX / 4) return 0;
    /* a node: a hot part and its value (at least 32 bytes), room for a
     * cold part (32 bytes, timed caches), all nodes to a whole line */
    unsigned __int128 nb = sizeof(ap__cache_node) + ((unsigned __int128)vs + 7) / 8 * 8;
    if (nb < 32) nb = 32;
    unsigned __int128 room = ((unsigned __int128)share * (nb + 32) + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    unsigned __int128 sb = room +
                           (pow2_ceil128(2 * (unsigned __int128)share) + AP__CACHE_WBUCKETS) * 4;
    sb = (sb + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    /* the load table: AP_CACHE_LOADS slots, each a slot header and a value */
    unsigned __int128 lt = (unsigned __int128)AP_CACHE_LOADS *
                           ((sizeof(ap__cache_load) + 7) / 8 * 8 + ((unsigned __int128)vs + 7) / 8 * 8);
    lt = (lt + AP_CACHELINE - 1) / AP_CACHELINE * AP_CACHELINE;
    unsigned __int128 total = (unsigned __int128)s * (sb + sizeof(ap__cache_shard)) +
                              AP__CACHE_STRIPES * sizeof(ap__cache_ctr) + lt;
    if (total > SIZE_MAX) return 0;
    return (size_t)total;
}

static void check_inval(fz *f)
{
    uint8_t k = fz_u8(f);
    ap_cache_desc d;
    memset(&d, 0, sizeof d);
    d.capacity = (k & 1) ? fz_size(f) : fz_u8(f);
    d.shards = (k & 2) ? fz_size(f) : (k & 4) ? ((size_t)1 << (fz_u8(f) % 64)) : fz_u8(f) % 9;
    d.value_size = (k & 8) ? fz_size(f) : fz_u8(f);
    const ap_cache_desc *dp = (k & 0xf0) == 0xf0 ? NULL : &d;
    size_t exp = dp ? expect_bytes(d.capacity, d.shards, d.value_size) : 0;
    size_t sz = 12345;
    ap_status st = ap_cache_bytes(dp, &sz);
    if (!exp) {
        FZ_CHECK(st == AP_INVAL && sz == 12345);
    } else {
        FZ_CHECK(st == AP_OK && sz == exp);
        FZ_CHECK(sz == AP_CACHE_BYTES(d.capacity, d.shards, d.value_size));
    }
    /* init: a bad desc, or a buffer one byte (or more) too small */
    ap_cache c;
    size_t give = exp ? exp - 1 - (size_t)(fz_u8(f) % 64) : (size_t)fz_size(f);
    if (exp && give >= exp) give = 0; /* wrapped: exp < 65 cannot happen, but be safe */
    if (give > BUFSZ) give = BUFSZ;
    if (!exp || exp <= BUFSZ) {
        fz_fill(&c, sizeof c);
        fz_fill(cbuf, 4096);
        st = ap_cache_init(&c, cbuf, give, dp);
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&c, sizeof c));
        FZ_CHECK(fz_untouched(cbuf, 4096));
    }
    if (exp && exp <= BUFSZ) {
        /* a valid init with room to spare: a round trip */
        fz_fill(cbuf, exp + 64 <= BUFSZ ? exp + 64 : BUFSZ);
        size_t extra = (k & 0x10) && exp + 64 <= BUFSZ ? 64 : 0;
        FZ_CHECK(ap_cache_init(&c, cbuf, exp + extra, dp) == AP_OK);
        FZ_CHECK(fz_untouched(cbuf + exp, extra));
        FZ_CHECK(ap_cache_capacity(&c) == d.capacity && ap_cache_len(&c) == 0);
        FZ_CHECK(c.desc.capacity == d.capacity && c.desc.value_size == d.value_size);
        FZ_CHECK(c.desc.shards == (d.shards ? d.shards : 1));
        ap_cache_stats s0;
        ap_cache_stats_get(&c, &s0);
        FZ_CHECK(s0.hits == 0 && s0.misses == 0 && s0.inserts == 0 && s0.updates == 0 &&
                 s0.evictions == 0 && s0.removes == 0 && s0.hand_steps == 0);
        static unsigned char v[MAXVS + 8], o[MAXVS + 8];
        if (d.value_size <= MAXVS) {
            memset(v, 0x5c, sizeof v);
            uint64_t key = fz_u64(f);
            FZ_CHECK(ap_cache_get(&c, key, o) == AP_EMPTY);
            ap_cache_put(&c, key, v, NULL);
            memset(o, 0, sizeof o);
            FZ_CHECK(ap_cache_get(&c, key, o) == AP_OK && memcmp(o, v, d.value_size) == 0);
            FZ_CHECK(ap_cache_len(&c) == 1);
            FZ_CHECK(ap_cache_remove(&c, key, NULL) == AP_OK && ap_cache_len(&c) == 0);
        }
        ap_cache_fini(&c);
    }
    /* create */
    ap_cache *cp;
    fz_fill(&cp, sizeof cp);
    int before = allocs;
    size_t hdr = ap__align_up(sizeof(ap_cache), AP_CACHELINE);
    st = ap_cache_create(&cp, dp, &fz_allocator);
    if (!exp || exp > SIZE_MAX - hdr) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
        FZ_CHECK(fz_untouched(&cp, sizeof cp));
    } else if (st == AP_OK) {
        FZ_CHECK(hdr + exp <= ((size_t)1 << 20));
        FZ_CHECK(ap_cache_capacity(cp) == d.capacity && ap_cache_len(cp) == 0);
        FZ_CHECK(ap_cache_get(cp, 1, NULL) == AP_EMPTY);
        ap_cache_destroy(cp);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_NOMEM && hdr + exp > ((size_t)1 << 20));
        FZ_CHECK(fz_untouched(&cp, sizeof cp));
        allocs = before;
    }
}

/* ---- the model: a reference SIEVE per shard ---- */

typedef struct mshard {
    uint64_t key[MAXCAP]; /* key[0] is the oldest (the tail) */
    uint64_t ver[MAXCAP];
    uint64_t wexp[MAXCAP], aexp[MAXCAP]; /* timed caches: the deadlines */
    unsigned char vis[MAXCAP];
    int len, cap;
    int hand; /* a position, or -1 (NIL: start at the tail) */
} mshard;
static mshard ms[MAXS];
static size_t S, cap_all, vs;
static uint64_t st_hits, st_misses, st_ins, st_upd, st_ev, st_rem, st_steps, st_exp, gets;
/* timed mode: the fake clock and the desc's durations */
static int timed;
static uint64_t fnow, eaw, eaa;
static uint64_t fake_clock(void *ctx) { (void)ctx; return fnow; }
static uint64_t after(uint64_t now, uint64_t dur) /* the cache's saturating now + dur */
{
    return dur == 0 || dur == AP_CACHE_NEVER ? UINT64_MAX
           : now > UINT64_MAX - dur          ? UINT64_MAX - 1
                                             : now + dur;
}
static void stamp(mshard *m, int k, uint64_t ttl)
{
    m->wexp[k] = timed ? after(fnow, ttl ? ttl : eaw) : UINT64_MAX;
    m->aexp[k] = timed ? after(fnow, eaa) : UINT64_MAX;
}
static int alive(const mshard *m, int k)
{
    uint64_t now = fnow < UINT64_MAX ? fnow : UINT64_MAX - 1; /* MAX: "never" */
    return !timed || (now < m->wexp[k] && now < m->aexp[k]);
}

static void mkval(unsigned char *out, uint64_t key, uint64_t ver)
{
    uint64_t x = key * UINT64_C(0x9E3779B97F4A7C15) + ver;
    for (size_t j = 0; j < vs; j++) out[j] = (unsigned char)((x >> (8 * (j % 8))) + (j / 8) * 0x3b);
}

static int shard_of(uint64_t key) { return (int)((ap__mix64(key) >> 32) & (S - 1)); }

static int m_find(const mshard *m, uint64_t key)
{
    for (int i = 0; i < m->len; i++)
        if (m->key[i] == key) return i;
    return -1;
}

static void m_delete(mshard *m, int r)
{
    if (m->hand == r) m->hand = r + 1 < m->len ? r : -1;
    else if (m->hand > r) m->hand--;
    memmove(m->key + r, m->key + r + 1, (size_t)(m->len - r - 1) * sizeof m->key[0]);
    memmove(m->ver + r, m->ver + r + 1, (size_t)(m->len - r - 1) * sizeof m->ver[0]);
    memmove(m->wexp + r, m->wexp + r + 1, (size_t)(m->len - r - 1) * sizeof m->wexp[0]);
    memmove(m->aexp + r, m->aexp + r + 1, (size_t)(m->len - r - 1) * sizeof m->aexp[0]);
    memmove(m->vis + r, m->vis + r + 1, (size_t)(m->len - r - 1));
    m->len--;
}

/* SIEVE's victim; the hand stops on it (m_delete moves it on) */
static int m_sieve(mshard *m)
{
    int o = m->hand >= 0 ? m->hand : 0;
    uint64_t steps = 1;
    while (m->vis[o] && steps <= 2 * (uint64_t)m->cap) {
        m->vis[o] = 0;
        o = o + 1 < m->len ? o + 1 : 0;
        steps++;
    }
    st_steps += steps;
    m->hand = o;
    return o;
}

static void check_state(ap_cache *c)
{
    size_t tot = 0;
    for (size_t i = 0; i < S; i++) {
        ap__cache_shard *s = &c->shards[i];
        mshard *m = &ms[i];
        FZ_CHECK(s->cap == (uint32_t)m->cap);
        FZ_CHECK(s->used == (uint32_t)m->len && AP_ATOMIC_LOAD(&s->len, memory_order_relaxed) == (size_t)m->len);
        FZ_CHECK(m->len <= m->cap);
        FZ_CHECK(AP_ATOMIC_LOAD(&s->seq, memory_order_relaxed) % 2 == 0);
        /* the queue, oldest to newest, with its visited bits and the hand */
        uint32_t n = s->tail, prev = AP__CACHE_NIL;
        int hand_at = -1;
        for (int k = 0; k < m->len; k++) {
            FZ_CHECK(n != AP__CACHE_NIL && n < s->cap);
            ap__cache_node *node = ap__cache_node_at(c, s, n);
            FZ_CHECK(node->older == prev);
            FZ_CHECK(AP_ATOMIC_LOAD(&node->key, memory_order_relaxed) == m->key[k]);
            FZ_CHECK((AP_ATOMIC_LOAD(&node->visited, memory_order_relaxed) != 0) == (m->vis[k] != 0));
            if (s->hand == n) hand_at = k;
            prev = n;
            n = node->newer;
        }
        FZ_CHECK(n == AP__CACHE_NIL && s->head == prev);
        FZ_CHECK(hand_at == m->hand);
        if (m->hand < 0) FZ_CHECK(s->hand == AP__CACHE_NIL);
        tot += (size_t)m->len;
    }
    FZ_CHECK(ap_cache_len(c) == tot && tot <= cap_all);
    ap_cache_stats st;
    ap_cache_stats_get(c, &st);
    FZ_CHECK(st.hits == st_hits && st.misses == st_misses && st.hits + st.misses == gets);
    FZ_CHECK(st.inserts == st_ins && st.updates == st_upd && st.removes == st_rem);
    FZ_CHECK(st.evictions == st_ev && st.hand_steps == st_steps);
    FZ_CHECK(st.hand_steps <= st.evictions + st.hits + st.updates);
    FZ_CHECK(st.expirations == st_exp);
    FZ_CHECK(st.inserts - st.evictions - st.removes - st.expirations == tot);
}

/* ---- ap_cache_kv with expiry against a sequential model ----
 * The same input bytes, read again: an ap_cache_kv of one or two shards
 * with room for every key (no SIZE evictions), expire_after_write and/or
 * expire_after_access from 1 ns to 2^40 ns on a fake clock, and a
 * sequence of put / put_ttl / get_at (holding at most one pin across
 * steps) / remove / time moving / maintain over 8 byte-string keys. The
 * model: a get hits iff the key is held and now < both its deadlines (a
 * hit raises the access deadline); maintain returns exactly the held
 * entries whose deadline passed; every value is released exactly once
 * with the model's cause (REPLACED, EXPLICIT, EXPIRED), never while the
 * pin on it is held (then at its unpin), and fini releases the rest. */
#define KVK 8
static struct {
    int held;               /* the key's entry is in the cache */
    uint64_t wexp, aexp;
    int val;                /* the value's id */
} km[KVK];
static int kv_released[4096], kv_cause[4096], kv_pinned_id = -1, kv_vals;
static int kv_ids[4096];
static char kv_keys[KVK][12];

static void kv_rel(void *ctx, ap_cache_key key, void *value, ap_cache_cause cause)
{
    (void)ctx;
    (void)key;
    int id = *(int *)value;
    FZ_CHECK(id >= 0 && id < kv_vals && kv_released[id] == 0); /* exactly once */
    FZ_CHECK(id != kv_pinned_id);                              /* never while pinned */
    kv_released[id] = 1;
    kv_cause[id] = (int)cause;
}

static int kv_alive(int k, uint64_t now)
{
    if (now == UINT64_MAX)
        now = UINT64_MAX - 1;
    return km[k].held && now < km[k].wexp && now < km[k].aexp;
}

static void kv_phase(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    uint8_t t0 = fz_u8(&f);
    static const uint64_t durs[8] = {0, 1, 7, 1000, (uint64_t)1 << 20, (uint64_t)1 << 27,
                                     (uint64_t)1 << 40, AP_CACHE_NEVER};
    uint64_t w = durs[t0 & 7], a = durs[(t0 >> 3) & 7] == AP_CACHE_NEVER ? 0 : durs[(t0 >> 3) & 7];
    if (w == 0 && a == 0)
        w = AP_CACHE_NEVER;
    fnow = (t0 & 0x40) ? fz_u64(&f) >> (fz_u8(&f) % 64) : 0;
    ap_cache_kv_desc d = {.capacity = 2 * KVK, .shards = (t0 & 0x80) ? 2 : 1, .release = kv_rel,
                          .expire_after_write = w, .expire_after_access = a,
                          .max_loads = 1, .max_key_len = 16};
    d.clock.now = fake_clock;
    size_t need = 0;
    FZ_CHECK(ap_cache_kv_bytes(&d, &need) == AP_OK && need <= BUFSZ);
    ap_cache_kv c;
    FZ_CHECK(ap_cache_kv_init(&c, cbuf, BUFSZ, &d) == AP_OK);
    memset(km, 0, sizeof km);
    memset(kv_released, 0, sizeof kv_released);
    kv_vals = 0;
    kv_pinned_id = -1;
    ap_cache_kv_pin pin = {NULL, 0, 0};
    size_t expired = 0, left = 0;
    for (int k = 0; k < KVK; k++)
        snprintf(kv_keys[k], sizeof kv_keys[k], "k%.*d", k + 1, k); /* lengths 2..9 */
    for (int steps = 0; fz_more(&f) && steps < 1024 && kv_vals < 4000; steps++) {
        uint8_t op = fz_u8(&f);
        int k = fz_u8(&f) % KVK;
        ap_cache_key key = ap_cache_key_of(kv_keys[k], strlen(kv_keys[k]));
        switch (op % 6) {
        case 0: case 1: { /* put (or put_ttl) */
            int id = kv_vals++;
            kv_ids[id] = id;
            uint64_t ttl = (op & 0x40) ? durs[(op >> 3) & 7] : 0;
            ap_status st = (op & 0x40) ? ap_cache_kv_put_ttl(&c, key, &kv_ids[id], 1, fnow, ttl)
                                       : ap_cache_kv_put(&c, key, &kv_ids[id], 1);
            FZ_CHECK(st == AP_OK);
            if (km[k].held) {
                int old = km[k].val;
                FZ_CHECK(old == kv_pinned_id || (kv_released[old] && kv_cause[old] == AP_CACHE_CAUSE_REPLACED));
                km[k].held = 0;
                left++;
            }
            km[k].held = 1;
            km[k].val = id;
            km[k].wexp = after(fnow, ttl ? ttl : w);
            km[k].aexp = after(fnow, a);
            break;
        }
        case 2: { /* get_at; keep the pin (dropping the one held) or unpin at once */
            ap_cache_kv_pin p;
            int hit = kv_alive(k, fnow);
            ap_status st = ap_cache_kv_get_at(&c, key, &p, fnow);
            FZ_CHECK(st == (hit ? AP_OK : AP_EMPTY));
            if (st != AP_OK)
                break;
            FZ_CHECK(*(int *)p.value == km[k].val);
            if (a && after(fnow, a) > km[k].aexp)
                km[k].aexp = after(fnow, a);
            if (op & 0x40) {
                if (kv_pinned_id >= 0) {
                    int was = kv_pinned_id;
                    kv_pinned_id = -1;
                    ap_cache_kv_unpin(&c, &pin);
                    (void)was;
                }
                pin = p;
                kv_pinned_id = km[k].val;
            } else if (km[k].val != kv_pinned_id) {
                ap_cache_kv_unpin(&c, &p);
            } else {
                ap_cache_kv_unpin(&c, &p); /* a second pin of the pinned value */
            }
            break;
        }
        case 3: { /* remove */
            ap_status st = ap_cache_kv_remove(&c, key);
            FZ_CHECK(st == (km[k].held ? AP_OK : AP_EMPTY));
            if (km[k].held) {
                int id = km[k].val;
                FZ_CHECK(id == kv_pinned_id || (kv_released[id] && kv_cause[id] == AP_CACHE_CAUSE_EXPLICIT));
                km[k].held = 0;
                left++;
            }
            break;
        }
        case 4: { /* time moves on */
            uint64_t dt = (uint64_t)fz_u8(&f) << (fz_u8(&f) % 44);
            fnow = fnow > UINT64_MAX - dt ? UINT64_MAX - 1 : fnow + dt;
            break;
        }
        default: { /* maintain */
            size_t want = 0;
            for (int j = 0; j < KVK; j++)
                if (km[j].held && !kv_alive(j, fnow)) {
                    km[j].held = 0;
                    want++;
                    int id = km[j].val;
                    km[j].val = id;
                }
            FZ_CHECK(ap_cache_kv_maintain(&c, fnow) == want);
            for (int j = 0; j < kv_vals; j++) /* each one it took out: EXPIRED, or pinned */
                if (kv_released[j] && kv_cause[j] == AP_CACHE_CAUSE_EXPIRED)
                    FZ_CHECK(j != kv_pinned_id);
            expired += want;
            left += want;
            break;
        }
        }
        ap_cache_kv_stats st;
        ap_cache_kv_stats_get(&c, &st);
        size_t held = 0;
        for (int j = 0; j < KVK; j++)
            held += km[j].held;
        FZ_CHECK(st.len == held && st.expired == expired);
    }
    if (kv_pinned_id >= 0) {
        int id = kv_pinned_id;
        int in_cache = 0;
        for (int j = 0; j < KVK; j++)
            in_cache |= km[j].held && km[j].val == id;
        kv_pinned_id = -1;
        ap_cache_kv_unpin(&c, &pin);
        FZ_CHECK(kv_released[id] == !in_cache); /* a leaver goes at its last unpin */
    }
    ap_cache_kv_fini(&c);
    for (int j = 0; j < kv_vals; j++)
        FZ_CHECK(kv_released[j] == 1);
    (void)left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kv_phase(data, size);
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    uint8_t c0 = fz_u8(&f);
    S = (c0 & 1) ? (size_t)1 << ((c0 >> 1) % 4) : 1;
    cap_all = S + (size_t)(fz_u8(&f) % 48);
    uint8_t v0 = fz_u8(&f);
    static const size_t vsizes[8] = {0, 1, 7, 8, 9, 24, 128, 129};
    vs = (v0 & 0x80) ? (size_t)(v0 % (MAXVS + 1)) : vsizes[v0 & 7];
    ap_cache_desc d = {.capacity = cap_all, .shards = (c0 & 0x10) && S == 1 ? 0 : S, .value_size = vs};
    /* timed half the time: expire after write and/or access (1 ns to ~2^44 ns,
     * or AP_CACHE_NEVER: per-entry TTLs only), on a fake clock */
    uint8_t t0 = fz_u8(&f);
    timed = t0 & 1;
    fnow = (t0 & 2) ? fz_u64(&f) >> (fz_u8(&f) % 64) : 0;
    eaw = eaa = 0;
    if (timed) {
        static const uint64_t durs[8] = {0, 1, 7, 1000, (uint64_t)1 << 20, (uint64_t)1 << 27,
                                         (uint64_t)1 << 40, AP_CACHE_NEVER};
        eaw = durs[(t0 >> 2) & 7];
        eaa = durs[(t0 >> 5) & 7] == AP_CACHE_NEVER ? 0 : durs[(t0 >> 5) & 7];
        if (eaw == 0 && eaa == 0)
            eaw = AP_CACHE_NEVER;
        d.expire_after_write = eaw;
        d.expire_after_access = eaa;
        d.clock.now = fake_clock;
    }
    size_t total = AP_CACHE_BYTES(cap_all, S, vs);
    FZ_CHECK(total + 64 <= BUFSZ);
    fz_fill(cbuf, total + 64);
    ap_cache c;
    FZ_CHECK(ap_cache_init(&c, cbuf, total, &d) == AP_OK);
    for (size_t i = 0; i < S; i++) {
        ms[i].len = 0;
        ms[i].hand = -1;
        ms[i].cap = (int)(cap_all / S + (i < cap_all % S));
    }
    st_hits = st_misses = st_ins = st_upd = st_ev = st_rem = st_steps = st_exp = gets = 0;
    uint64_t ver = 0;
    /* keys: base + a small offset, so that shards fill up and evict */
    uint8_t kk = fz_u8(&f);
    size_t krange = 1 + (size_t)fz_u8(&f) % (2 * cap_all + 8);
    uint64_t base = (kk & 3) == 0 ? 0 : (kk & 3) == 1 ? UINT64_MAX - krange / 2 : fz_u64(&f);
    static unsigned char val[MAXVS + 8], out[MAXVS + 8], exp[MAXVS + 8], vic[MAXVS + 8];

    for (int steps = 0; fz_more(&f) && steps < 2048; steps++) {
        uint8_t op = fz_u8(&f);
        uint64_t key = base + fz_u8(&f) % krange;
        int si = shard_of(key);
        mshard *m = &ms[si];
        int at = m_find(m, key);
        if (timed && (op & 0xc0) == 0xc0) { /* time moves on; sometimes maintain */
            uint8_t a = fz_u8(&f);
            uint64_t dt = (uint64_t)fz_u8(&f) << (a % 48);
            fnow = fnow > UINT64_MAX - dt ? UINT64_MAX - 1 : fnow + dt;
            if (op & 0x20) {
                size_t want = 0;
                for (size_t i = 0; i < S; i++)
                    for (int k = ms[i].len; k-- > 0;)
                        if (!alive(&ms[i], k)) {
                            m_delete(&ms[i], k);
                            want++;
                        }
                FZ_CHECK(ap_cache_maintain(&c, fnow) == want);
                st_exp += want;
            }
            check_state(&c);
            continue;
        }
        /* an expired entry that maintain has not reclaimed yet: a get
         * misses (hard expiry), a put updates it, a remove takes it */
        switch (op % 4) {
        case 0: case 1: { /* put */
            ver++;
            mkval(val, key, ver);
            ap_cache_victim v, *vp = NULL;
            fz_fill(vic, sizeof vic);
            if (op & 0x10) {
                fz_fill(&v, sizeof v);
                v.value = (op & 0x20) ? vic : NULL;
                vp = &v;
            }
            uint64_t ttl = 0;
            if (timed && (op & 0x80)) { /* a TTL of its own */
                uint8_t tb = fz_u8(&f);
                ttl = (tb & 0x80) ? AP_CACHE_NEVER : ((uint64_t)1 + (tb & 7)) << ((tb >> 3) % 16 * 3);
                FZ_CHECK(ap_cache_put_ttl(&c, key, vs ? val : NULL, fnow, ttl, vp) == AP_OK);
            } else if (!timed && (op & 0x80) && (op & 0x40)) {
                FZ_CHECK(ap_cache_put_ttl(&c, key, val, fnow, 5, vp) == AP_INVAL);
                FZ_CHECK(fz_untouched(vic, sizeof vic));
                check_state(&c);
                break;
            } else {
                ap_cache_put(&c, key, vs ? val : ((op & 0x40) ? NULL : val), vp);
            }
            if (at >= 0) { /* update: visited, no eviction */
                m->ver[at] = ver;
                m->vis[at] = 1;
                stamp(m, at, ttl);
                st_upd++;
                if (vp) FZ_CHECK(!v.evicted);
            } else {
                int evicted = 0;
                if (m->len == m->cap) {
                    int o = m_sieve(m);
                    if (vp) {
                        FZ_CHECK(v.evicted && v.key == m->key[o]);
                        if (v.value) {
                            mkval(exp, m->key[o], m->ver[o]);
                            FZ_CHECK(memcmp(vic, exp, vs) == 0);
                        }
                    }
                    m_delete(m, o);
                    st_ev++;
                    evicted = 1;
                }
                FZ_CHECK(m->len < m->cap);
                m->key[m->len] = key;
                m->ver[m->len] = ver;
                m->vis[m->len] = 0;
                stamp(m, m->len, ttl);
                m->len++;
                st_ins++;
                if (vp) FZ_CHECK((v.evicted != 0) == evicted);
            }
            if (vp && !v.evicted) FZ_CHECK(fz_untouched(vic, sizeof vic));
            if (vp && v.evicted) FZ_CHECK(fz_untouched(vic + vs, sizeof vic - vs));
            break;
        }
        case 2: { /* get */
            fz_fill(out, sizeof out);
            ap_status st = (op & 0x20) ? ap_cache_get_at(&c, key, (op & 0x10) ? NULL : out, fnow)
                                       : ap_cache_get(&c, key, (op & 0x10) ? NULL : out);
            gets++;
            if (at >= 0 && alive(m, at)) {
                FZ_CHECK(st == AP_OK);
                m->vis[at] = 1;
                if (timed && eaa && after(fnow, eaa) > m->aexp[at])
                    m->aexp[at] = after(fnow, eaa);
                st_hits++;
                if (!(op & 0x10)) {
                    mkval(exp, key, m->ver[at]);
                    FZ_CHECK(memcmp(out, exp, vs) == 0);
                    FZ_CHECK(fz_untouched(out + vs, sizeof out - vs));
                }
            } else {
                FZ_CHECK(st == AP_EMPTY);
                st_misses++;
            }
            if (st != AP_OK || (op & 0x10)) FZ_CHECK(fz_untouched(out, sizeof out));
            break;
        }
        default: { /* remove */
            fz_fill(out, sizeof out);
            ap_status st = ap_cache_remove(&c, key, (op & 0x10) ? NULL : out);
            if (at >= 0) {
                FZ_CHECK(st == AP_OK);
                if (!(op & 0x10)) {
                    mkval(exp, key, m->ver[at]);
                    FZ_CHECK(memcmp(out, exp, vs) == 0);
                    FZ_CHECK(fz_untouched(out + vs, sizeof out - vs));
                }
                m_delete(m, at);
                st_rem++;
            } else {
                FZ_CHECK(st == AP_EMPTY);
            }
            if (st != AP_OK || (op & 0x10)) FZ_CHECK(fz_untouched(out, sizeof out));
            break;
        }
        }
        check_state(&c);
    }
    /* every entry still holds its latest value */
    for (size_t i = 0; i < S; i++)
        for (int k = 0; k < ms[i].len; k++) {
            fz_fill(out, sizeof out);
            if (!alive(&ms[i], k)) {
                FZ_CHECK(ap_cache_get(&c, ms[i].key[k], out) == AP_EMPTY);
                continue;
            }
            FZ_CHECK(ap_cache_get(&c, ms[i].key[k], out) == AP_OK);
            mkval(exp, ms[i].key[k], ms[i].ver[k]);
            FZ_CHECK(memcmp(out, exp, vs) == 0);
        }
    /* nothing written past the buffer's AP_CACHE_BYTES */
    FZ_CHECK(fz_untouched(cbuf + total, 64));
    ap_cache_fini(&c);
    return 0;
}
