/* tests/fuzz/fuzz_work_steal.c -- libFuzzer harness for asyncpat/work_steal.h
 *
 * Input: capacities (any 64-bit values, for the AP_INVAL paths of init,
 * create and the injector), then two deques A and B (power-of-two
 * capacities 1..256, their positions started anywhere, near the size_t
 * wrap included, through the ap__ws_init_at test hook) and an injector,
 * and a single-threaded sequence of push / pop / steal / steal_half (both
 * directions) / injector push, pop and close, checked against a sequential
 * model (each deque a plain array: the owner's end is the bottom, LIFO;
 * thieves take the top, FIFO; the injector a FIFO):
 *   - init / create: AP_INVAL exactly for capacity 0, not a power of two,
 *     or above AP_WS_CAPACITY_MAX (init: or a buffer misaligned or smaller
 *     than AP_WS_BYTES, sometimes one byte short; the injector's one byte
 *     short or NULL), and then *d (or *out) and the buffer untouched and
 *     nothing allocated; create/destroy balance the allocator
 *   - push: AP_FULL exactly when len == capacity (the task is not stored)
 *   - pop returns the newest task, steal the oldest, AP_EMPTY on an empty
 *     deque (never AP_AGAIN single-threaded); out-params untouched unless
 *     AP_OK
 *   - steal_half moves min(ceil(n/2), room in dst) tasks, oldest first, in
 *     the order taken; AP_EMPTY / AP_FULL with nothing moved
 *   - len and capacity equal the model after every step
 *   - every task pushed with AP_OK comes back exactly once (a bitmap of
 *     returned ids; the deques and the injector are drained at the end)
 */
#include "asyncpat/work_steal.h"
#include "fuzz_common.h"

#define MAXCAP 256
#define MAXTASK 8192
#define INJCAP 64

typedef struct mdq {
    uintptr_t v[MAXCAP]; /* v[0] is the top (oldest) */
    size_t len, cap;
} mdq;

static unsigned char returned[MAXTASK];
static unsigned char pushed[MAXTASK];
static uintptr_t next_id;

static void m_push(mdq *m, uintptr_t x) { m->v[m->len++] = x; }
static uintptr_t m_pop(mdq *m) { return m->v[--m->len]; }
static uintptr_t m_steal(mdq *m)
{
    uintptr_t x = m->v[0];
    memmove(m->v, m->v + 1, (m->len - 1) * sizeof m->v[0]);
    m->len--;
    return x;
}

static void got(void *task)
{
    uintptr_t id = (uintptr_t)task;
    FZ_CHECK(id < next_id && id < MAXTASK);
    FZ_CHECK(pushed[id]);
    FZ_CHECK(!returned[id]);
    returned[id] = 1;
}

static void check_inval(fz *f)
{
    size_t cap = fz_size(f);
    int bad = cap == 0 || (cap & (cap - 1)) != 0 || cap > AP_WS_CAPACITY_MAX;
    ap_ws d;
    fz_fill(&d, sizeof d);
    {
        /* issue #11: the size comes along; one byte short of AP_WS_BYTES,
         * misaligned, or a valid capacity too big for this buffer is
         * AP_INVAL with nothing written */
        static _Alignas(AP_WS_ALIGN) unsigned char buf[AP_WS_BYTES(MAXCAP) + sizeof(void *)];
        uint8_t how = fz_u8(f);
        unsigned char *b = buf;
        size_t bytes = sizeof buf;
        if (how & 2) {
            size_t off = 1 + (size_t)(how >> 2) % (AP_WS_ALIGN - 1);
            b += off;
            bytes -= off;
        }
        if (!bad && (how & 1)) bytes = AP_WS_BYTES(cap) - 1;
        if (!bad && b == buf && (how & 1) == 0 && (how & 0x80)) bytes = AP_WS_BYTES(cap);
        int ibad = bad || b != buf || bytes < AP_WS_BYTES(cap);
        fz_fill(buf, sizeof buf);
        ap_status st = ap_ws_init(&d, b, bytes, cap);
        if (ibad) {
            FZ_CHECK(st == AP_INVAL);
            FZ_CHECK(fz_untouched(&d, sizeof d));
            FZ_CHECK(fz_untouched(buf, sizeof buf));
        } else {
            FZ_CHECK(st == AP_OK);
            FZ_CHECK(ap_ws_capacity(&d) == cap && ap_ws_len(&d) == 0);
            ap_ws_fini(&d);
        }
    }
    ap_ws *p;
    fz_fill(&p, sizeof p);
    int before = allocs;
    ap_status st = ap_ws_create(&p, cap, &fz_allocator);
    if (bad) {
        FZ_CHECK(st == AP_INVAL);
        FZ_CHECK(allocs == before);
    }
    if (st == AP_OK) {
        FZ_CHECK(ap_ws_capacity(p) == cap && ap_ws_len(p) == 0);
        void *t = (void *)(uintptr_t)7;
        FZ_CHECK(ap_ws_try_push(p, t) == AP_OK);
        void *o = NULL;
        FZ_CHECK(ap_ws_try_steal(p, &o) == AP_OK && o == t);
        ap_ws_destroy(p);
        FZ_CHECK(allocs == before);
    } else {
        /* valid but over the allocator's 1 MiB: AP_NOMEM */
        FZ_CHECK(st == AP_INVAL || (st == AP_NOMEM && !bad));
        FZ_CHECK(fz_untouched(&p, sizeof p));
        allocs = before;
    }
    /* the injector: capacity 0 is AP_INVAL, untouched */
    ap_ws_injector inj;
    fz_fill(&inj, sizeof inj);
    static _Alignas(AP_WS_INJECTOR_ALIGN) unsigned char ib[AP_WS_INJECTOR_BYTES(1)];
    FZ_CHECK(ap_ws_injector_init(&inj, ib, sizeof ib, 0) == AP_INVAL);
    fz_fill(ib, sizeof ib);
    FZ_CHECK(ap_ws_injector_init(&inj, ib, sizeof ib - 1, 1) == AP_INVAL); /* one byte short */
    FZ_CHECK(ap_ws_injector_init(&inj, NULL, sizeof ib, 1) == AP_INVAL);
    FZ_CHECK(fz_untouched(&inj, sizeof inj));
    FZ_CHECK(fz_untouched(ib, sizeof ib));
}

static size_t pick_cap(fz *f) { return (size_t)1 << (fz_u8(f) % 9); }
static size_t pick_start(fz *f)
{
    uint8_t k = fz_u8(f);
    switch (k & 3) {
    case 0: return 0;
    case 1: return SIZE_MAX - (k >> 2); /* wraps soon */
    case 2: return SIZE_MAX / 2 - (k >> 2);
    default: return fz_size(f);
    }
}

static void check_deque(ap_ws *d, const mdq *m)
{
    FZ_CHECK(ap_ws_len(d) == m->len);
    FZ_CHECK(ap_ws_capacity(d) == m->cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = {data, size};
    check_inval(&f);
    check_inval(&f);

    static _Alignas(AP_WS_ALIGN) unsigned char ba[AP_WS_BYTES(MAXCAP)], bb[AP_WS_BYTES(MAXCAP)];
    static _Alignas(AP_WS_INJECTOR_ALIGN) unsigned char ib[AP_WS_INJECTOR_BYTES(INJCAP)];
    static mdq ma, mb;
    ap_ws A, B;
    ma.cap = pick_cap(&f);
    mb.cap = pick_cap(&f);
    ma.len = mb.len = 0;
    FZ_CHECK(ap__ws_init_at(&A, ba, sizeof ba, ma.cap, pick_start(&f)) == AP_OK);
    FZ_CHECK(ap__ws_init_at(&B, bb, AP_WS_BYTES(mb.cap), mb.cap, pick_start(&f)) == AP_OK);
    size_t icap = 1 + fz_u8(&f) % INJCAP;
    ap_ws_injector inj;
    FZ_CHECK(ap_ws_injector_init(&inj, ib, sizeof ib, icap) == AP_OK);
    static uintptr_t mi[INJCAP];
    size_t mi_head = 0, mi_len = 0;
    int iclosed = 0;
    memset(returned, 0, sizeof returned);
    memset(pushed, 0, sizeof pushed);
    next_id = 0;
    void *const SENT = (void *)(uintptr_t)0xdeadbeef;

    for (int steps = 0; fz_more(&f) && steps < 4096 && next_id < MAXTASK; steps++) {
        uint8_t op = fz_u8(&f);
        ap_ws *d = (op & 0x80) ? &B : &A, *o = (op & 0x80) ? &A : &B;
        mdq *m = (op & 0x80) ? &mb : &ma, *mo = (op & 0x80) ? &ma : &mb;
        switch (op % 8) {
        case 0: case 1: { /* push (a burst of up to 8) */
            int k = 1 + ((op >> 3) & 7);
            for (int j = 0; j < k && next_id < MAXTASK; j++) {
                uintptr_t id = next_id;
                ap_status st = ap_ws_try_push(d, (void *)id);
                if (m->len == m->cap) {
                    FZ_CHECK(st == AP_FULL);
                } else {
                    FZ_CHECK(st == AP_OK);
                    pushed[id] = 1;
                    next_id++;
                    m_push(m, id);
                }
            }
            break;
        }
        case 2: { /* pop: the newest */
            void *out = SENT;
            ap_status st = ap_ws_try_pop(d, &out);
            if (m->len == 0) {
                FZ_CHECK(st == AP_EMPTY && out == SENT);
            } else {
                FZ_CHECK(st == AP_OK);
                FZ_CHECK((uintptr_t)out == m_pop(m));
                got(out);
            }
            break;
        }
        case 3: { /* steal: the oldest */
            void *out = SENT;
            ap_status st = ap_ws_try_steal(d, &out);
            if (m->len == 0) {
                FZ_CHECK(st == AP_EMPTY && out == SENT);
            } else {
                FZ_CHECK(st == AP_OK);
                FZ_CHECK((uintptr_t)out == m_steal(m));
                got(out);
            }
            break;
        }
        case 4: { /* steal_half(d -> o) */
            size_t moved = 12345;
            ap_status st = ap_ws_steal_half(d, o, &moved);
            size_t want = (m->len + 1) / 2, room = mo->cap - mo->len;
            if (want > room) want = room;
            if (m->len == 0) {
                FZ_CHECK(st == AP_EMPTY && moved == 12345);
            } else if (want == 0) {
                FZ_CHECK(st == AP_FULL && moved == 12345);
            } else {
                FZ_CHECK(st == AP_OK && moved == want);
                for (size_t j = 0; j < want; j++) m_push(mo, m_steal(m));
            }
            break;
        }
        case 5: { /* injector push */
            uintptr_t id = next_id;
            ap_status st = ap_ws_injector_try_push(&inj, (void *)id);
            if (iclosed) FZ_CHECK(st == AP_CLOSED);
            else if (mi_len == icap) FZ_CHECK(st == AP_FULL);
            else {
                FZ_CHECK(st == AP_OK);
                pushed[id] = 1;
                next_id++;
                mi[(mi_head + mi_len++) % INJCAP] = id;
            }
            break;
        }
        case 6: { /* injector pop, then the owner pushes what it got */
            void *out = SENT;
            ap_status st = ap_ws_injector_try_pop(&inj, &out);
            if (mi_len == 0) {
                FZ_CHECK(st == (iclosed ? AP_CLOSED : AP_EMPTY) && out == SENT);
            } else {
                FZ_CHECK(st == AP_OK);
                FZ_CHECK((uintptr_t)out == mi[mi_head]);
                mi_head = (mi_head + 1) % INJCAP;
                mi_len--;
                if (m->len < m->cap && (op & 0x40)) {
                    FZ_CHECK(ap_ws_try_push(d, out) == AP_OK);
                    m_push(m, (uintptr_t)out);
                } else {
                    got(out);
                }
            }
            break;
        }
        default: /* injector close (rarely) */
            if ((op & 0x78) == 0x78) {
                ap_ws_injector_close(&inj);
                iclosed = 1;
            }
            break;
        }
        check_deque(&A, &ma);
        check_deque(&B, &mb);
        FZ_CHECK(ap_ws_injector_len(&inj) == mi_len);
    }
    /* drain: every task comes back exactly once */
    void *out;
    while (ma.len) {
        FZ_CHECK(ap_ws_try_steal(&A, &out) == AP_OK && (uintptr_t)out == m_steal(&ma));
        got(out);
    }
    while (mb.len) {
        FZ_CHECK(ap_ws_try_pop(&B, &out) == AP_OK && (uintptr_t)out == m_pop(&mb));
        got(out);
    }
    while (mi_len) {
        FZ_CHECK(ap_ws_injector_try_pop(&inj, &out) == AP_OK && (uintptr_t)out == mi[mi_head]);
        mi_head = (mi_head + 1) % INJCAP;
        mi_len--;
        got(out);
    }
    FZ_CHECK(ap_ws_try_pop(&A, &out) == AP_EMPTY && ap_ws_try_steal(&B, &out) == AP_EMPTY);
    for (uintptr_t i = 0; i < next_id; i++) FZ_CHECK(pushed[i] && returned[i]);
    ap_ws_injector_fini(&inj);
    ap_ws_fini(&A);
    ap_ws_fini(&B);
    return 0;
}
