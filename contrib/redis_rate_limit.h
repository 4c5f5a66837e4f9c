/*
 * contrib/redis_rate_limit.h -- one GCRA limit shared by a fleet of
 *                               processes, in Redis (needs hiredis)
 *
 * PATTERN
 *   token_bucket.h's GCRA on the integer emission grid, run inside Redis
 *   as one Lua script per acquire (EVALSHA, atomic on the server), so any
 *   number of processes and threads share one limit: `n` tokens per
 *   `period_ns`, at most `burst` at once. The state is one Redis string
 *   (the TAT C, in emission intervals T = period/n, as a decimal integer)
 *   and the clock is the server's (Redis TIME, in ns = s * 1e9 + us * 1e3),
 *   so the clients' clocks do not matter. The script computes exactly what
 *   ap_tb_try_acquire computes (same gcd-reduced n/p, V(t) = floor(t*n/p),
 *   base = max(C, V(t)), admit iff base + m <= V(t) + burst, C = base + m,
 *   retry_at = ceil((base + m - burst) * p / n), refusal when C would pass
 *   2^64 - 2 or the instant 2^64 - 1 ns); Lua has only doubles, so it
 *   computes with arbitrary-size integers in base-256 limbs (the reason
 *   for the LIMITS below). tests/contrib/redis_fleet.c compares the script
 *   with ap_tb_try_acquire decision by decision.
 *   The key expires (PEXPIRE, with a margin of 1 s) only once the bucket
 *   is full again, when an absent key and the stored state mean the same.
 *
 * GUARANTEES (tests/contrib/redis_fleet.c checks them against a real
 * redis-server, 4 processes x 2 threads)
 *   - exact bound, fleet-wide, on the server's clock: admissions stamped
 *     in any window (s, t] are at most burst + V(t) - V(s)
 *     (<= burst + ceil(n * (t - s) / period)), as for one ap_tb
 *   - failure is explicit and counted: when Redis cannot answer (no
 *     connection, a timeout, a restart in progress, an error reply) the
 *     call fails closed (AP_REJECTED) or open (AP_OK) as desc.fail_open
 *     says, with reply->failed set, counted in failed_closed / failed_open;
 *     a fail-open admission is outside the bound (by your choice)
 *   - a restarted server (empty script cache) is handled: NOSCRIPT makes
 *     the call send the script itself (EVAL, which also caches it) once,
 *     counted in script_loads; with AOF persistence (appendfsync always)
 *     the bound holds across the restart, without it the bucket restarts
 *     full (at most one extra burst per restart)
 *
 * CONCURRENCY  one ap_redis_rl may be used by any number of threads, each
 *   with its own redisContext (hiredis contexts are not thread-safe). The
 *   counters are relaxed atomics. Progress: blocking (one round trip; set
 *   a timeout on the context with redisSetTimeout).
 * ERRORS       AP_OK (admitted), AP_EMPTY (not now: reply->retry_at_ns on
 *              the server clock), AP_REJECTED (never within the clock's
 *              range, or failed closed: reply->failed), AP_INVAL (bad
 *              desc; m > burst; NULL context): nothing sent.
 * LIMITS       n <= period_ns; after dividing both by their gcd, period
 *              at most 2^44 ns (about 4.9 hours; a larger reduced period
 *              is AP_INVAL): the script multiplies and divides its limbs
 *              by n and p in doubles, exact below 2^53.
 * MEMORY       ap_redis_rl lives in caller memory; the key string is the
 *              caller's, kept until the last call. Nothing allocates
 *              except hiredis.
 * SEE ALSO     asyncpat/token_bucket.h (the same law in one process),
 *              tests/contrib/redis_fleet.c, contrib/README.md
 * STABILITY    experimental (contrib; never included by asyncpat.h)
 *
 * USAGE
 *   ap_redis_rl rl;   // 100 requests per second across the fleet, bursts of 20
 *   if (ap_redis_rl_init(&rl, &(ap_redis_rl_desc){.key = "rl:api", .n = 100,
 *                        .burst = 20}) != AP_OK) abort();
 *   redisContext *c = redisConnectWithTimeout("10.0.0.5", 6379, tv);  // per thread
 *   redisSetTimeout(c, tv);
 *   ap_redis_rl_reply r;
 *   ap_status st = ap_redis_rl_try_acquire(&rl, c, 1, &r);
 *   if (st == AP_OK) serve();
 *   else reply_429();
 *   if (r.failed && c->err) { redisFree(c); c = reconnect(); }
 */
#ifndef ASYNCPAT_CONTRIB_REDIS_RATE_LIMIT_H
#define ASYNCPAT_CONTRIB_REDIS_RATE_LIMIT_H

#include "../asyncpat/core.h"
#include "../asyncpat/status.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/** ap_redis_rl_desc - configuration; a zero field means its default */
typedef struct ap_redis_rl_desc {
    const char *key;    /* the Redis key holding the state (required; kept by the caller) */
    uint64_t n;         /* tokens per period (required) */
    uint64_t period_ns; /* default 1 s; n <= period_ns */
    uint64_t burst;     /* bucket capacity (required) */
    bool fail_open;     /* Redis unavailable: admit (true) or refuse (false, default) */
} ap_redis_rl_desc;

/** ap_redis_rl_stats - counters (relaxed snapshots) */
typedef struct ap_redis_rl_stats {
    uint64_t admitted, refused, rejected; /* AP_OK / AP_EMPTY / AP_REJECTED from the server */
    uint64_t failed_open, failed_closed;  /* Redis failures, admitted / refused by policy */
    uint64_t script_loads;                /* NOSCRIPT answered by sending the script */
} ap_redis_rl_stats;

/** ap_redis_rl - a fleet-wide limiter handle (caller memory) */
typedef struct ap_redis_rl {
    const char *key;
    char n[24], p[24], burst[24]; /* gcd-reduced, as decimal strings for the script */
    uint64_t burst_v;
    bool fail_open;
    char sha[41];
    AP_ATOMIC_T(uint64_t) admitted, refused, rejected, failed_open, failed_closed, script_loads;
} ap_redis_rl;

/** ap_redis_rl_reply - what one call learned */
typedef struct ap_redis_rl_reply {
    bool failed;          /* Redis did not decide (see the context's err / errstr) */
    uint64_t now_ns;      /* the server's TIME the decision used (0 if failed) */
    uint64_t retry_at_ns; /* AP_EMPTY: the earliest admission instant, server clock */
} ap_redis_rl_reply;

/**
 * ap_redis_rl_init - check and reduce the configuration; talks to nobody
 * Returns AP_OK or AP_INVAL (key NULL or empty, n or burst 0, n > period,
 * reduced period above 2^44 ns, burst >= 2^64 - 1); *rl untouched then.
 */
static inline ap_status ap_redis_rl_init(ap_redis_rl *rl, const ap_redis_rl_desc *desc);

/**
 * ap_redis_rl_try_acquire - take m tokens of the shared limit now, all or
 * nothing, on the server's clock
 * @c:     a connected hiredis context used by this thread only
 * @reply: NULL, or receives what the call learned
 * Returns AP_OK (admitted; also a fail-open failure: reply->failed),
 * AP_EMPTY (not enough tokens: reply->retry_at_ns), AP_REJECTED (never
 * within the clock's range, or a fail-closed failure), AP_INVAL (m >
 * burst, c NULL: nothing sent). m = 0 is AP_OK with no round trip. After
 * a failure with c->err set the context is dead: free it and reconnect.
 */
static inline ap_status ap_redis_rl_try_acquire(ap_redis_rl *rl, redisContext *c, uint64_t m,
                                                ap_redis_rl_reply *reply);

/** ap_redis_rl_stats_get - the counters (relaxed snapshot) */
static inline void ap_redis_rl_stats_get(ap_redis_rl *rl, ap_redis_rl_stats *out);

/* ---- implementation ---- */

/* The script. KEYS[1] = state; ARGV = n, p, burst, m (decimal, n and p
 * gcd-reduced) and, for the tests only, ARGV[5] = a time in ns replacing
 * TIME (then no expiry is set). Returns {1, now} admitted, {0, now,
 * retry_at} not yet, {-1, now} never. Integers are little-endian arrays of
 * base-256 limbs; multipliers and divisors stay below 2^44, so every
 * intermediate stays below 2^52 and every double operation is exact. */
#define AP__REDIS_RL_SCRIPT                                                                    \
    "local B=256\n"                                                                            \
    "local function trim(a) while #a>1 and a[#a]==0 do a[#a]=nil end return a end\n"          \
    "local function big(x) local r={} repeat local d=x%B r[#r+1]=d x=(x-d)/B until x==0 "      \
    "return r end\n"                                                                           \
    "local function mul(a,s) local r,c={},0 for i=1,#a do local v=a[i]*s+c local d=v%B "       \
    "r[i]=d c=(v-d)/B end while c>0 do local d=c%B r[#r+1]=d c=(c-d)/B end return trim(r) "    \
    "end\n"                                                                                    \
    "local function divmod(a,s) local q,rem={},0 for i=#a,1,-1 do local v=rem*B+a[i] "         \
    "local d=v%s q[i]=(v-d)/s rem=d end return trim(q),rem end\n"                              \
    "local function add(a,b) local r,c={},0 for i=1,math.max(#a,#b) do "                       \
    "local v=(a[i] or 0)+(b[i] or 0)+c if v>=B then r[i]=v-B c=1 else r[i]=v c=0 end end "     \
    "if c>0 then r[#r+1]=c end return r end\n"                                                 \
    "local function sub(a,b) local r,c={},0 for i=1,#a do local v=a[i]-(b[i] or 0)-c "         \
    "if v<0 then r[i]=v+B c=1 else r[i]=v c=0 end end return trim(r) end\n"                    \
    "local function cmp(a,b) if #a~=#b then return #a<#b and -1 or 1 end for i=#a,1,-1 do "    \
    "if a[i]~=b[i] then return a[i]<b[i] and -1 or 1 end end return 0 end\n"                   \
    "local function dec(s) local r={0} for i=1,#s,6 do local ch=string.sub(s,i,i+5) "          \
    "r=add(mul(r,10^#ch),big(tonumber(ch))) end return trim(r) end\n"                          \
    "local function str(a) local parts={} repeat local d a,d=divmod(a,1000000) "               \
    "table.insert(parts,1,string.format('%06d',d)) until #a==1 and a[1]==0 "                  \
    "local s=string.gsub(table.concat(parts),'^0+','') if s=='' then s='0' end return s end\n" \
    "local n,p=tonumber(ARGV[1]),tonumber(ARGV[2])\n"                                          \
    "local burst,m=dec(ARGV[3]),dec(ARGV[4])\n"                                                \
    "local t\n"                                                                                \
    "if ARGV[5] then t=dec(ARGV[5]) else local tm=redis.call('TIME') "                         \
    "t=add(mul(big(tonumber(tm[1])),1000000000),big(tonumber(tm[2])*1000)) end\n"              \
    "local v=divmod(mul(t,n),p)\n"                                                             \
    "local cs=redis.call('GET',KEYS[1])\n"                                                     \
    "local c=cs and dec(cs) or {0}\n"                                                          \
    "local base=cmp(c,v)>0 and c or v\n"                                                       \
    "local nxt=add(base,m)\n"                                                                  \
    "local cmax=sub(dec('18446744073709551616'),{2})\n"                                        \
    "local tmax=sub(dec('18446744073709551616'),{1})\n"                                        \
    "if cmp(nxt,cmax)>0 then return {-1,str(t)} end\n"                                         \
    "if cmp(nxt,add(v,burst))<=0 then\n"                                                       \
    "  redis.call('SET',KEYS[1],str(nxt))\n"                                                   \
    "  if not ARGV[5] then\n"                                                                  \
    "    local q,r=divmod(mul(nxt,p),n) if r>0 then q=add(q,{1}) end\n"                        \
    "    local ms={1}\n"                                                                       \
    "    if cmp(q,t)>0 then ms=divmod(sub(q,t),1000000) end\n"                                 \
    "    ms=add(ms,big(1001))\n"                                                               \
    "    local s=str(ms) if #s<=15 then redis.call('PEXPIRE',KEYS[1],s) "                      \
    "else redis.call('PERSIST',KEYS[1]) end\n"                                                 \
    "  end\n"                                                                                  \
    "  return {1,str(t)}\n"                                                                    \
    "end\n"                                                                                    \
    "local q,r=divmod(mul(sub(nxt,burst),p),n) if r>0 then q=add(q,{1}) end\n"                 \
    "if cmp(q,tmax)>0 then return {-1,str(t)} end\n"                                           \
    "return {0,str(t),str(q)}\n"

/* SHA-1 (FIPS 180-4), for EVALSHA's script id: init talks to nobody. */
static inline uint32_t ap__redis_rl_rol(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static inline void ap__redis_rl_sha1(const char *msg, char out[41])
{
    uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
    size_t len = strlen(msg), total = ((len + 8) / 64 + 1) * 64;
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++) {
            uint32_t x = 0;
            for (int j = 0; j < 4; j++) {
                size_t k = off + (size_t)i * 4 + (size_t)j;
                unsigned char b;
                if (k < len)
                    b = (unsigned char)msg[k];
                else if (k == len)
                    b = 0x80;
                else if (k >= total - 8)
                    b = (unsigned char)(((uint64_t)len * 8) >> (8 * (total - 1 - k)));
                else
                    b = 0;
                x = (x << 8) | b;
            }
            w[i] = x;
        }
        for (int i = 16; i < 80; i++)
            w[i] = ap__redis_rl_rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5a827999u;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ed9eba1u;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8f1bbcdcu;
            } else {
                f = b ^ c ^ d;
                k = 0xca62c1d6u;
            }
            uint32_t t = ap__redis_rl_rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = ap__redis_rl_rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (int i = 0; i < 5; i++)
        snprintf(out + 8 * i, 9, "%08x", (unsigned)h[i]);
}

static inline uint64_t ap__redis_rl_gcd(uint64_t a, uint64_t b)
{
    while (b != 0) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static inline ap_status ap_redis_rl_init(ap_redis_rl *rl, const ap_redis_rl_desc *desc)
{
    if (rl == NULL || desc == NULL || desc->key == NULL || desc->key[0] == '\0')
        return AP_INVAL;
    uint64_t period = desc->period_ns ? desc->period_ns : 1000000000u;
    if (desc->n == 0 || desc->burst == 0 || desc->n > period || desc->burst >= UINT64_MAX - 1)
        return AP_INVAL;
    uint64_t g = ap__redis_rl_gcd(desc->n, period);
    if (period / g > ((uint64_t)1 << 44))
        return AP_INVAL;
    rl->key = desc->key;
    snprintf(rl->n, sizeof rl->n, "%llu", (unsigned long long)(desc->n / g));
    snprintf(rl->p, sizeof rl->p, "%llu", (unsigned long long)(period / g));
    snprintf(rl->burst, sizeof rl->burst, "%llu", (unsigned long long)desc->burst);
    rl->burst_v = desc->burst;
    rl->fail_open = desc->fail_open;
    ap__redis_rl_sha1(AP__REDIS_RL_SCRIPT, rl->sha);
    AP_ATOMIC_INIT(&rl->admitted, 0u);
    AP_ATOMIC_INIT(&rl->refused, 0u);
    AP_ATOMIC_INIT(&rl->rejected, 0u);
    AP_ATOMIC_INIT(&rl->failed_open, 0u);
    AP_ATOMIC_INIT(&rl->failed_closed, 0u);
    AP_ATOMIC_INIT(&rl->script_loads, 0u);
    return AP_OK;
}

static inline void ap__redis_rl_count(AP_ATOMIC_T(uint64_t) *ctr)
{
    /* relaxed: statistics only */
    (void)AP_ATOMIC_FETCH_ADD(ctr, (uint64_t)1, memory_order_relaxed);
}

/* A decimal integer element of the script's reply, or false. */
static inline bool ap__redis_rl_u64(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0)
            return false;
        *out = (uint64_t)r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < (size_t)r->len; i++) {
        unsigned d = (unsigned)(r->str[i] - '0');
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* One decision; @now: NULL (the server's TIME) or a test time in ns. */
static inline ap_status ap__redis_rl_call(ap_redis_rl *rl, redisContext *c, uint64_t m,
                                          const char *now, ap_redis_rl_reply *reply)
{
    ap_redis_rl_reply r = {false, 0, 0};
    if (rl == NULL || c == NULL || m > rl->burst_v)
        return AP_INVAL;
    if (m == 0) {
        if (reply)
            *reply = r;
        return AP_OK;
    }
    char ms[24];
    snprintf(ms, sizeof ms, "%llu", (unsigned long long)m);
    const char *argv[9] = {"EVALSHA", rl->sha, "1", rl->key, rl->n, rl->p, rl->burst, ms, now};
    int argc = now ? 9 : 8;
    redisReply *rep = NULL;
    if (c->err == 0)
        rep = (redisReply *)redisCommandArgv(c, argc, argv, NULL);
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        /* a fresh server: send the script itself (EVAL caches it) */
        freeReplyObject(rep);
        ap__redis_rl_count(&rl->script_loads);
        argv[0] = "EVAL";
        argv[1] = AP__REDIS_RL_SCRIPT;
        rep = (redisReply *)redisCommandArgv(c, argc, argv, NULL);
    }
    ap_status st = AP_OK;
    bool ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 2 &&
              rep->element[0]->type == REDIS_REPLY_INTEGER &&
              ap__redis_rl_u64(rep->element[1], &r.now_ns);
    if (ok) {
        long long k = rep->element[0]->integer;
        if (k == 1) {
            st = AP_OK;
            ap__redis_rl_count(&rl->admitted);
        } else if (k == 0 && rep->elements >= 3 &&
                   ap__redis_rl_u64(rep->element[2], &r.retry_at_ns)) {
            st = AP_EMPTY;
            ap__redis_rl_count(&rl->refused);
        } else if (k == -1) {
            st = AP_REJECTED;
            r.retry_at_ns = UINT64_MAX;
            ap__redis_rl_count(&rl->rejected);
        } else {
            ok = false;
        }
    }
    if (rep != NULL)
        freeReplyObject(rep);
    if (!ok) { /* no decision: the configured policy */
        r.failed = true;
        r.now_ns = r.retry_at_ns = 0;
        st = rl->fail_open ? AP_OK : AP_REJECTED;
        ap__redis_rl_count(rl->fail_open ? &rl->failed_open : &rl->failed_closed);
    }
    if (reply)
        *reply = r;
    return st;
}

static inline ap_status ap_redis_rl_try_acquire(ap_redis_rl *rl, redisContext *c, uint64_t m,
                                                ap_redis_rl_reply *reply)
{
    return ap__redis_rl_call(rl, c, m, NULL, reply);
}

static inline void ap_redis_rl_stats_get(ap_redis_rl *rl, ap_redis_rl_stats *out)
{
    out->admitted = AP_ATOMIC_LOAD(&rl->admitted, memory_order_relaxed);
    out->refused = AP_ATOMIC_LOAD(&rl->refused, memory_order_relaxed);
    out->rejected = AP_ATOMIC_LOAD(&rl->rejected, memory_order_relaxed);
    out->failed_open = AP_ATOMIC_LOAD(&rl->failed_open, memory_order_relaxed);
    out->failed_closed = AP_ATOMIC_LOAD(&rl->failed_closed, memory_order_relaxed);
    out->script_loads = AP_ATOMIC_LOAD(&rl->script_loads, memory_order_relaxed);
}

#endif /* ASYNCPAT_CONTRIB_REDIS_RATE_LIMIT_H */
