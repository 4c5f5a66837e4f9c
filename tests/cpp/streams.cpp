// tests/cpp/streams.cpp -- streams from C++: ap_window fed through an MPMC
// queue by std::thread producers, per-thread ap_agg merged, ap_split routing
// to shard queues drained by one consumer per shard. Every event lands in
// exactly one window (counts and sums add up), merged aggregates equal the
// whole, and every item reaches exactly the shard its key routes to.
#include "cpp_test.hpp"

struct win_sink {
    uint64_t windows = 0, count = 0;
    int64_t sum = 0;
};

static void on_window(void *ctx, const ap_window_result *r)
{
    win_sink *s = static_cast<win_sink *>(ctx);
    int64_t sum;
    CHECK_OK(ap_agg_sum(&r->agg, &sum));
    CHECK(r->end - r->start == 100);
    s->windows++;
    s->count += r->agg.count;
    s->sum += sum;
}

static void window_scenario()
{
    const unsigned P = 3;
    const uint64_t n = scale(2000);
    ap_mpmc *q;
    CHECK_OK(ap_mpmc_create(&q, 32, sizeof(uint64_t), NULL));
    ap_window_desc d = ap_window_desc();
    d.kind = AP_WINDOW_KIND_TUMBLING;
    d.size_ns = 100;
    d.lateness_ns = n; // nothing is ever late
    std::vector<unsigned char> buf(AP_WINDOW_BYTES(AP_WINDOW_SLOTS(100, 100, n)) + AP_WINDOW_ALIGN);
    void *mem = buf.data();
    size_t space = buf.size();
    CHECK(std::align(AP_WINDOW_ALIGN, AP_WINDOW_BYTES(AP_WINDOW_SLOTS(100, 100, n)), mem, space));
    ap_window w;
    CHECK_OK(ap_window_init(&w, mem, space, &d));
    std::atomic<unsigned> producing{P};
    std::vector<std::thread> ts;
    for (unsigned p = 0; p < P; p++)
        ts.emplace_back([&, p] {
            for (uint64_t s = 0; s < n; s++) {
                uint64_t it = ledger::item(p, s);
                CHECK_OK(ap_mpmc_push_wait(q, &it, AP_DEADLINE_NONE));
            }
            if (producing.fetch_sub(1) == 1)
                ap_mpmc_close(q);
        });
    win_sink sink;
    uint64_t it;
    while (ap_mpmc_pop_wait(q, &it, AP_DEADLINE_NONE) == AP_OK) // the window's one thread
        CHECK_OK(ap_window_add(&w, it & 0xffffffffu, (int64_t)(it & 0xffffffffu), on_window, &sink));
    ap_window_advance(&w, AP_WINDOW_FLUSH, on_window, &sink);
    for (auto &t : ts)
        t.join();
    CHECK(sink.count == P * n);
    CHECK(sink.sum == (int64_t)(P * (n * (n - 1) / 2)));
    CHECK(sink.windows == (n + 99) / 100);
    ap_window_fini(&w);
    ap_mpmc_destroy(q);
}

static void aggregate_scenario()
{
    const unsigned T = 4;
    const uint64_t n = scale(10000);
    std::vector<ap_agg> part(T);
    run_threads(T, [&](unsigned id) {
        ap_agg a = ap_agg();
        for (uint64_t i = 0; i < n; i++)
            ap_agg_add(&a, (int64_t)(id * n + i) - (int64_t)(T * n / 2));
        part[id] = a; // each thread owns its aggregate
    });
    ap_agg all = ap_agg();
    for (auto &a : part)
        CHECK_OK(ap_agg_merge(&all, &a));
    ap_agg whole = ap_agg();
    for (uint64_t v = 0; v < T * n; v++)
        ap_agg_add(&whole, (int64_t)v - (int64_t)(T * n / 2));
    int64_t s1, s2, lo, hi;
    CHECK(all.count == T * n && all.count == whole.count);
    CHECK_OK(ap_agg_sum(&all, &s1));
    CHECK_OK(ap_agg_sum(&whole, &s2));
    CHECK(s1 == s2);
    CHECK_OK(ap_agg_min(&all, &lo));
    CHECK_OK(ap_agg_max(&all, &hi));
    CHECK(lo == -(int64_t)(T * n / 2) && hi == (int64_t)(T * n / 2) - 1);
}

static void split_scenario()
{
    const unsigned P = 3, S = 4;
    const uint64_t n = scale(3000);
    ap_mpmc *shard[S];
    for (auto &q : shard)
        CHECK_OK(ap_mpmc_create(&q, 16, sizeof(uint64_t), NULL));
    ap_split sp;
    CHECK_OK(ap_split_init(&sp, shard, sizeof shard, AP_SPLIT_MODE_HASH));
    ledger led(P, n);
    std::atomic<unsigned> producing{P};
    std::vector<std::thread> ts;
    for (unsigned p = 0; p < P; p++)
        ts.emplace_back([&, p] {
            for (uint64_t s = 0; s < n; s++) {
                uint64_t it = ledger::item(p, s);
                CHECK_OK(ap_split_push_wait(&sp, it, &it, AP_DEADLINE_NONE));
            }
            if (producing.fetch_sub(1) == 1)
                for (auto &q : shard)
                    ap_mpmc_close(q);
        });
    for (unsigned c = 0; c < S; c++)
        ts.emplace_back([&, c] {
            uint64_t it;
            while (ap_mpmc_pop_wait(shard[c], &it, AP_DEADLINE_NONE) == AP_OK) {
                CHECK(ap_split_route(&sp, it) == c); // same key, same shard
                led.take(it);
            }
        });
    for (auto &t : ts)
        t.join();
    led.done();
    ap_split_fini(&sp);
    for (auto &q : shard)
        ap_mpmc_destroy(q);
}

int main()
{
    window_scenario();
    aggregate_scenario();
    split_scenario();
    std::puts("streams: ok (window, aggregate, split)");
    return 0;
}
