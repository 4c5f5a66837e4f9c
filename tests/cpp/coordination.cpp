// tests/cpp/coordination.cpp -- coordination from C++: ap_barrier rounds
// across std::thread workers, an ap_fanout of MPMC pop futures fed by a
// producer thread, an ap_ws deque with thieves. Nobody passes a round early
// and its function runs once per round; every pushed item is popped by
// exactly one child; every task runs exactly once.
#include "cpp_test.hpp"

static std::atomic<uint64_t> rounds_fn{0};
static void round_done(void *ctx)
{
    (void)ctx;
    rounds_fn.fetch_add(1, std::memory_order_relaxed);
}

static void barrier_scenario()
{
    const unsigned T = 4;
    const uint64_t R = scale(300);
    ap_barrier b;
    CHECK_OK(ap_barrier_init(&b, T, AP_BARRIER_POLICY_BREAK, round_done, NULL));
    std::unique_ptr<std::atomic<unsigned>[]> arrived(new std::atomic<unsigned>[R]);
    for (uint64_t r = 0; r < R; r++)
        arrived[r].store(0);
    run_threads(T, [&](unsigned) {
        for (uint64_t r = 0; r < R; r++) {
            arrived[r].fetch_add(1, std::memory_order_relaxed);
            CHECK_OK(ap_barrier_wait(&b, AP_DEADLINE_NONE));
            CHECK(arrived[r].load(std::memory_order_relaxed) == T); // nobody passed early
        }
    });
    CHECK(rounds_fn.load() == R); // once per round
    ap_barrier_fini(&b);
}

static ap_status pop_result(void *ctx, size_t i, ap_future *f)
{
    (void)ctx;
    (void)i;
    return ap_mpmc_pop_status((ap_mpmc_pop_fut *)f);
}

static void fanout_scenario()
{
    const size_t K = 64;
    const uint64_t sets = scale(20);
    ap_mpmc *q;
    CHECK_OK(ap_mpmc_create(&q, 8, sizeof(uint64_t), NULL));
    ledger led(1, K * sets);
    std::thread prod([&] {
        for (uint64_t s = 0; s < K * sets; s++) {
            uint64_t it = ledger::item(0, s);
            CHECK_OK(ap_mpmc_push_wait(q, &it, AP_DEADLINE_NONE));
        }
    });
    for (uint64_t round = 0; round < sets; round++) {
        std::vector<ap_mpmc_pop_fut> pops(K);
        std::vector<ap_future *> kids(K);
        std::vector<ap_fanout_child> recs(K);
        std::vector<uint64_t> out(K, ~0ull);
        for (size_t i = 0; i < K; i++) {
            ap_mpmc_pop_fut_init(&pops[i], q, &out[i]);
            kids[i] = &pops[i].base;
        }
        ap_fanout set;
        ap_fanout_desc d = ap_fanout_desc();
        d.children = kids.data();
        d.n = K;
        d.limit = 8;
        d.policy = AP_FANOUT_POLICY_ALL;
        d.result = pop_result;
        CHECK_OK(ap_fanout_init(&set, recs.data(), recs.size() * sizeof recs[0], &d));
        ap_block_on(&set.base);
        CHECK_OK(ap_fanout_status(&set));
        for (size_t i = 0; i < K; i++)
            led.take(out[i]);
    }
    prod.join();
    led.done();
    CHECK(ap_mpmc_len(q) == 0);
    ap_mpmc_destroy(q);
}

static void work_steal_scenario()
{
    const unsigned thieves = 3;
    const uint64_t n = scale(20000);
    std::vector<void *> mem(AP_WS_BYTES(256) / sizeof(void *) + 1);
    ap_ws dq;
    CHECK_OK(ap_ws_init(&dq, mem.data(), AP_WS_BYTES(256), 256));
    std::unique_ptr<std::atomic<uint32_t>[]> ran(new std::atomic<uint32_t>[n]);
    std::vector<uint64_t> task(n);
    for (uint64_t i = 0; i < n; i++) {
        ran[i].store(0);
        task[i] = i;
    }
    std::atomic<bool> owner_done{false};
    auto run = [&](void *t) {
        uint64_t i = *static_cast<uint64_t *>(t);
        CHECK(i < n && ran[i].fetch_add(1) == 0); // exactly once
    };
    std::vector<std::thread> ts;
    for (unsigned k = 0; k < thieves; k++)
        ts.emplace_back([&] {
            for (;;) {
                void *t;
                ap_status st = ap_ws_try_steal(&dq, &t);
                if (st == AP_OK)
                    run(t);
                else if (owner_done.load() && ap_ws_len(&dq) == 0)
                    break;
                else
                    std::this_thread::yield();
            }
        });
    for (uint64_t i = 0; i < n; i++) { // the owner
        if (ap_ws_try_push(&dq, &task[i]) != AP_OK)
            run(&task[i]);
        void *t;
        if (i % 3 == 0 && ap_ws_try_pop(&dq, &t) == AP_OK)
            run(t);
    }
    void *t;
    while (ap_ws_try_pop(&dq, &t) == AP_OK)
        run(t);
    owner_done.store(true);
    for (auto &th : ts)
        th.join();
    for (uint64_t i = 0; i < n; i++)
        CHECK(ran[i].load() == 1);
    ap_ws_fini(&dq);
}

int main()
{
    barrier_scenario();
    fanout_scenario();
    work_steal_scenario();
    std::puts("coordination: ok (barrier, fanout, work_steal)");
    return 0;
}
