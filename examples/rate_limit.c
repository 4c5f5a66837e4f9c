/*
 * examples/rate_limit.c -- a per-client rate limiter in front of a server
 *
 * A simulated request stream (a fake clock: one simulated minute, no
 * sleeping) from four clients that ask at different rates, through one
 * ap_tb_keyed: 5 requests per second per client, bursts of 10. Prints
 * admitted/rejected per client and checks the exact law: a client that
 * asks faster than the rate gets burst + floor(5 * t) for t the time of its
 * last request (10 + 299 = 309), one that asks slower gets everything.
 * Exits 1 on any mismatch.
 */
#include "asyncpat.h" /* first: under -std=c11 it enables POSIX */
#include <inttypes.h>
#include <stdio.h>

enum { CLIENTS = 4, RATE = 5, BURST = 10, SECONDS = 60, SLOTS = 16 };

static _Alignas(AP_TB_KEYED_ALIGN) unsigned char table[AP_TB_KEYED_BYTES(SLOTS)];

int main(void)
{
    /* how often each client asks, in ms: 50/s, 10/s, 5/s, 1/s */
    const uint64_t every_ms[CLIENTS] = {20, 100, 200, 1000};
    uint64_t admitted[CLIENTS] = {0}, rejected[CLIENTS] = {0};
    ap_tb_keyed limiter;
    ap_tb_desc per_client = {.n = RATE, .period_ns = AP_NS_PER_SEC, .burst = BURST};
    if (ap_tb_keyed_init(&limiter, table, sizeof table, SLOTS, &per_client) != AP_OK)
        return 1;

    /* every millisecond of simulated time, whoever is due sends a request */
    for (uint64_t ms = 0; ms < SECONDS * 1000; ms++) {
        uint64_t now = ms * AP_NS_PER_MS;
        for (int c = 0; c < CLIENTS; c++) {
            if (ms % every_ms[c] != 0)
                continue;
            uint64_t retry_at;
            uint64_t client_id = 0x1000u + (uint64_t)c; /* e.g. an IP address */
            switch (ap_tb_keyed_try_acquire(&limiter, client_id, 1, now, &retry_at)) {
            case AP_OK: admitted[c]++; break;           /* serve it */
            case AP_EMPTY: rejected[c]++; break;        /* 429, Retry-After: retry_at */
            default: return 1;                          /* AP_FULL: table too small */
            }
        }
    }

    int bad = 0;
    for (int c = 0; c < CLIENTS; c++) {
        uint64_t asked = SECONDS * 1000 / every_ms[c];
        /* exact: admitted = min(asked, burst + floor(rate * t_last)) */
        uint64_t last_ms = (asked - 1) * every_ms[c];
        uint64_t cap = BURST + RATE * last_ms / 1000;
        uint64_t want = asked < cap ? asked : cap;
        printf("client %d: asked %4" PRIu64 " admitted %4" PRIu64 " rejected %4" PRIu64 "%s\n",
               c, asked, admitted[c], rejected[c], admitted[c] == want ? "" : "  MISMATCH");
        bad |= admitted[c] != want || admitted[c] + rejected[c] != asked;
    }
    printf("%s\n", bad ? "rate limit check FAILED" : "rate limit exact: burst + rate*t");
    ap_tb_keyed_fini(&limiter);
    return bad;
}
