// tests/cpp/performance.cpp -- performance patterns from C++: ap_batch fed
// by std::thread producers and drained by a consumer thread, a sharded
// ap_cache hammered by readers and writers, ap_prefetch whose loads are
// MPMC pop futures completed by a producer thread. Every item lands in
// exactly one batch; a get returns the value of its own key, never torn,
// and the hit/miss books balance; every loaded item is seen exactly once.
#include "cpp_test.hpp"

static void batch_scenario()
{
    const unsigned P = 3;
    const uint64_t n = scale(4000);
    const size_t M = 16;
    std::vector<uint64_t> buf(M), out(M);
    ap_batch b;
    ap_batch_desc d = ap_batch_desc();
    d.elem_size = sizeof(uint64_t);
    d.max_size = M;
    d.max_delay_ns = 100000;
    CHECK_OK(ap_batch_init(&b, buf.data(), M * sizeof(uint64_t), &d));
    ledger led(P, n);
    std::atomic<unsigned> producing{P};
    std::vector<std::thread> ts;
    for (unsigned p = 0; p < P; p++)
        ts.emplace_back([&, p] {
            for (uint64_t s = 0; s < n; s++) {
                uint64_t it = ledger::item(p, s);
                bool due;
                ap_status st;
                while ((st = ap_batch_add(&b, &it, ap_now_ns(), &due)) == AP_FULL)
                    std::this_thread::yield(); // the consumer takes it
                CHECK_OK(st);
            }
            producing.fetch_sub(1);
        });
    ts.emplace_back([&] {
        uint64_t batches = 0;
        for (;;) {
            bool last = producing.load() == 0;
            size_t k = 0;
            ap_status st = last ? ap_batch_flush(&b, out.data(), &k)
                                : ap_batch_take(&b, out.data(), ap_now_ns(), &k);
            if (st == AP_OK) {
                CHECK(k >= 1 && k <= M);
                for (size_t i = 0; i < k; i++)
                    led.take(out[i]);
                batches++;
            } else if (last) {
                break; // everything added has been flushed
            } else {
                std::this_thread::yield();
            }
        }
        CHECK(batches > 0);
    });
    for (auto &t : ts)
        t.join();
    led.done();
    ap_batch_fini(&b);
}

struct val {
    uint64_t k[4];
};

static void cache_scenario()
{
    const unsigned T = 4;
    const uint64_t n = scale(20000);
    const size_t bytes = AP_CACHE_BYTES(256, 4, sizeof(val));
    std::vector<unsigned char> raw(bytes + AP_CACHE_ALIGN);
    void *mem = raw.data();
    size_t space = raw.size();
    CHECK(std::align(AP_CACHE_ALIGN, bytes, mem, space));
    ap_cache c;
    ap_cache_desc d = ap_cache_desc();
    d.capacity = 256;
    d.shards = 4;
    d.value_size = sizeof(val);
    CHECK_OK(ap_cache_init(&c, mem, bytes, &d));
    std::atomic<uint64_t> gets{0}, hits{0}, puts{0};
    run_threads(T, [&](unsigned id) {
        uint64_t x = 0x2545f4914f6cdd1dull * (id + 1);
        for (uint64_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint64_t key = x % 1024;
            if (x % 4 == 0) {
                val v = {{key, key * 3, key * 5, key * 7}};
                ap_cache_put(&c, key, &v, NULL);
                puts.fetch_add(1, std::memory_order_relaxed);
            } else {
                val v = {{0, 0, 0, 0}};
                ap_status st = ap_cache_get(&c, key, &v);
                gets.fetch_add(1, std::memory_order_relaxed);
                if (st == AP_OK) {
                    hits.fetch_add(1, std::memory_order_relaxed);
                    CHECK(v.k[0] == key && v.k[1] == key * 3 && v.k[2] == key * 5 &&
                          v.k[3] == key * 7); // its own value, whole
                } else {
                    CHECK(st == AP_EMPTY);
                }
            }
        }
    });
    ap_cache_stats s;
    ap_cache_stats_get(&c, &s);
    CHECK(s.hits == hits.load() && s.hits + s.misses == gets.load());
    CHECK(s.inserts + s.updates == puts.load());
    CHECK(ap_cache_len(&c) <= 256);
    ap_cache_fini(&c);
}

struct page {
    ap_mpmc_pop_fut f;
    uint64_t data;
};
struct loader {
    ap_mpmc *q;
    uint64_t n;
};

static ap_future *load(void *ctx, uint64_t key, void *slot, uint64_t now)
{
    (void)now;
    loader *l = static_cast<loader *>(ctx);
    if (key >= l->n)
        return NULL; // past the end: refused
    page *pg = static_cast<page *>(slot);
    pg->data = ~0ull;
    ap_mpmc_pop_fut_init(&pg->f, l->q, &pg->data);
    return &pg->f.base;
}

static void prefetch_scenario()
{
    const uint64_t n = scale(3000);
    loader l;
    l.n = n;
    CHECK_OK(ap_mpmc_create(&l.q, 8, sizeof(uint64_t), NULL));
    ledger led(1, n);
    std::thread prod([&] {
        for (uint64_t s = 0; s < n; s++) {
            uint64_t it = ledger::item(0, s);
            CHECK_OK(ap_mpmc_push_wait(l.q, &it, AP_DEADLINE_NONE));
        }
    });
    alignas(64) static unsigned char ring[AP_PREFETCH_BYTES(4, sizeof(page))];
    ap_prefetch pf;
    ap_prefetch_desc d = ap_prefetch_desc();
    d.start = load;
    d.ctx = &l;
    d.depth = 4;
    d.slot_size = sizeof(page);
    CHECK_OK(ap_prefetch_init(&pf, ring, sizeof ring, &d));
    for (uint64_t k = 0; k < n; k++) {
        void *slot;
        CHECK_OK(ap_prefetch_get_wait(&pf, k, &slot, AP_DEADLINE_NONE));
        page *pg = static_cast<page *>(slot);
        CHECK_OK(ap_mpmc_pop_status(&pg->f));
        led.take(pg->data);
    }
    void *slot;
    CHECK(ap_prefetch_get_wait(&pf, n, &slot, AP_DEADLINE_NONE) != AP_OK); // refused key
    ap_prefetch_fini(&pf);
    prod.join();
    led.done();
    CHECK(ap_mpmc_len(l.q) == 0);
    ap_mpmc_destroy(l.q);
}

int main()
{
    batch_scenario();
    cache_scenario();
    prefetch_scenario();
    std::puts("performance: ok (batch, cache, prefetch)");
    return 0;
}
