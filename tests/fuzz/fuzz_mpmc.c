/* tests/fuzz/fuzz_mpmc.c -- libFuzzer harness for asyncpat/mpmc.h
 *
 * Input: a configuration (capacity, elem_size, start lap; also extreme
 * values tried on init/create for the AP_INVAL paths) and a sequence of
 * single-threaded operations (try_push, try_pop, close, len, push/pop
 * futures, cancel), checked against a plain array FIFO:
 *   - every push that returned AP_OK comes out exactly once, in order
 *   - FULL iff the model holds capacity; EMPTY/CLOSED iff it is empty
 *   - AP_INVAL init/create leaves *q / *out untouched and allocates nothing
 *   - a buffer one byte short of AP_MPMC_BYTES is AP_INVAL, and neither the
 *     queue nor the buffer is touched (issue #11)
 *   - out-parameters are untouched unless AP_OK
 */
#include "asyncpat/mpmc.h"
#include "fuzz_common.h"

#define MAXCAP 256
#define MAXES 48

static int wakes;
static void fz_wake(void *ctx) { (void)ctx; wakes++; }

/* the model */
static unsigned char model[MAXCAP][MAXES];
static size_t mhead, mlen;
static uint64_t tagc;

static void make_elem(unsigned char *e, size_t es)
{
    uint64_t t = ++tagc;
    for (size_t i = 0; i < es; i++) e[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)(i * 31);
}

static void model_push(const unsigned char *e, size_t es, size_t cap)
{
    FZ_CHECK(mlen < cap);
    memcpy(model[(mhead + mlen) % MAXCAP], e, es);
    mlen++;
}

static void model_pop_check(const unsigned char *e, size_t es)
{
    FZ_CHECK(mlen > 0);
    FZ_CHECK(memcmp(model[mhead], e, es) == 0);
    mhead = (mhead + 1) % MAXCAP;
    mlen--;
}

static void check_inval_paths(fz *f)
{
    /* extreme configurations: must be AP_INVAL with *q untouched, or AP_OK
     * for the ones that are honourable (checked without allocating). */
    size_t cap = fz_size(f), es = fz_size(f);
    ap_mpmc q;
    fz_fill(&q, sizeof q);
    int bad = cap == 0 || es == 0 || cap > (SIZE_MAX >> 4) || es > SIZE_MAX / 2;
    size_t stride = AP_MPMC_STRIDE(es);
    if (!bad && (stride < es || cap > SIZE_MAX / stride)) bad = 1;
    if (bad) {
        static size_t dummy[4];
        ap_status st = ap_mpmc_init(&q, dummy, sizeof dummy, cap, es);
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(fz_untouched(&q, sizeof q));
    }
    ap_mpmc *out;
    fz_fill(&out, sizeof out);
    int before = allocs;
    ap_status st = ap_mpmc_create(&out, cap, es, &fz_allocator);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
    }
    if (st == AP_OK) {
        FZ_CHECK(ap_mpmc_capacity(out) == cap);
        FZ_CHECK(ap_mpmc_len(out) == 0);
        ap_mpmc_destroy(out);
        FZ_CHECK(allocs == before);
    } else {
        FZ_CHECK(st == AP_INVAL || st == AP_NOMEM);
        FZ_CHECK(fz_untouched(&out, sizeof out));
        FZ_CHECK(allocs == before + (st == AP_NOMEM));
        allocs = before;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval_paths(&f);

    size_t cap = 1 + fz_u8(&f) % MAXCAP;
    size_t es = 1 + fz_u8(&f) % MAXES;
    uint8_t sel = fz_u8(&f);
    size_t lap = (sel & 1) ? fz_size(&f) : 0;
    static _Alignas(64) unsigned char buf[AP_MPMC_BYTES(MAXCAP, MAXES)];
    ap_mpmc q;
    size_t need = AP_MPMC_BYTES(cap, es);
    if (sel & 2) { /* one byte short: AP_INVAL, nothing written */
        fz_fill(&q, sizeof q);
        fz_fill(buf, need);
        FZ_CHECK(ap__mpmc_init_at(&q, buf, need - 1, cap, es, lap) == AP_INVAL);
        FZ_CHECK(ap_mpmc_init(&q, buf, need - 1, cap, es) == AP_INVAL);
        FZ_CHECK(fz_untouched(&q, sizeof q));
        FZ_CHECK(fz_untouched(buf, need));
    }
    if (ap__mpmc_init_at(&q, buf, (sel & 4) ? need : sizeof buf, cap, es, lap) != AP_OK) abort();
    mhead = mlen = 0;
    tagc = 0;
    int closed = 0;
    unsigned char elem[MAXES], out[MAXES], pattern[MAXES];
    memset(pattern, 0x5A, sizeof pattern);

    ap_mpmc_push_fut pf; int pf_live = 0; unsigned char pf_elem[MAXES];
    ap_mpmc_pop_fut of; int of_live = 0; unsigned char of_out[MAXES];
    ap_cx cx = {{fz_wake, NULL}, 0, UINT64_MAX};

    for (int steps = 0; fz_more(&f) && steps < 4096; steps++) {
        uint8_t op = fz_u8(&f);
        switch (op % 10) {
        case 0: case 1: case 2: { /* try_push */
            make_elem(elem, es);
            unsigned char copy[MAXES];
            memcpy(copy, elem, es);
            ap_status st = ap_mpmc_try_push(&q, elem);
            FZ_CHECK(memcmp(copy, elem, es) == 0);
            if (closed) FZ_CHECK(st == AP_CLOSED);
            else if (mlen == cap) FZ_CHECK(st == AP_FULL);
            else FZ_CHECK(st == AP_OK);
            if (st == AP_OK) model_push(elem, es, cap);
            break;
        }
        case 3: case 4: case 5: { /* try_pop */
            memcpy(out, pattern, es);
            ap_status st = ap_mpmc_try_pop(&q, out);
            if (mlen) {
                FZ_CHECK(st == AP_OK);
                model_pop_check(out, es);
            } else {
                FZ_CHECK(st == (closed ? AP_CLOSED : AP_EMPTY));
                FZ_CHECK(memcmp(out, pattern, es) == 0);
            }
            break;
        }
        case 6:
            if ((op >> 4) == 0) { ap_mpmc_close(&q); closed = 1; }
            break;
        case 7: /* push future */
            if (!pf_live) {
                make_elem(pf_elem, es);
                ap_mpmc_push_fut_init(&pf, &q, pf_elem);
                pf_live = 1;
            }
            if (op & 0x80) {
                ap_mpmc_push_cancel(&pf);
                pf_live = 0;
            } else {
                size_t before = mlen;
                ap_poll r = ap_mpmc_push_poll(&pf, &cx);
                if (r == AP_READY) {
                    ap_status st = ap_mpmc_push_status(&pf);
                    if (st == AP_OK) { FZ_CHECK(!closed && before < cap); model_push(pf_elem, es, cap); }
                    else FZ_CHECK(st == AP_CLOSED && closed);
                    pf_live = 0;
                } else {
                    FZ_CHECK(!closed && mlen == cap);
                }
            }
            break;
        case 8: /* pop future */
            if (!of_live) {
                memcpy(of_out, pattern, es);
                ap_mpmc_pop_fut_init(&of, &q, of_out);
                of_live = 1;
            }
            if (op & 0x80) {
                ap_mpmc_pop_cancel(&of);
                FZ_CHECK(memcmp(of_out, pattern, es) == 0);
                of_live = 0;
            } else {
                ap_poll r = ap_mpmc_pop_poll(&of, &cx);
                if (r == AP_READY) {
                    ap_status st = ap_mpmc_pop_status(&of);
                    if (st == AP_OK) model_pop_check(of_out, es);
                    else { FZ_CHECK(st == AP_CLOSED && closed && mlen == 0); FZ_CHECK(memcmp(of_out, pattern, es) == 0); }
                    of_live = 0;
                } else {
                    FZ_CHECK(mlen == 0 && !closed);
                    FZ_CHECK(memcmp(of_out, pattern, es) == 0);
                }
            }
            break;
        default:
            FZ_CHECK(ap_mpmc_len(&q) == mlen);
            FZ_CHECK(ap_mpmc_capacity(&q) == cap);
            FZ_CHECK(ap_mpmc_is_closed(&q) == (closed != 0));
            break;
        }
        FZ_CHECK(ap_mpmc_len(&q) == mlen);
    }
    if (pf_live) ap_mpmc_push_cancel(&pf);
    if (of_live) { ap_mpmc_pop_cancel(&of); FZ_CHECK(memcmp(of_out, pattern, es) == 0); }
    /* drain: exactly what the model holds, in order */
    while (mlen) {
        FZ_CHECK(ap_mpmc_try_pop(&q, out) == AP_OK);
        model_pop_check(out, es);
    }
    FZ_CHECK(ap_mpmc_try_pop(&q, out) == (closed ? AP_CLOSED : AP_EMPTY));
    ap_mpmc_fini(&q);
    return 0;
}
