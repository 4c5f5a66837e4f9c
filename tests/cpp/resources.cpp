// tests/cpp/resources.cpp -- resources from C++: ap_pool, ap_connpool and
// ap_life with std::thread workers. An object or connection is held by one
// worker at a time and every one comes back; opens and closes balance; no
// entry is admitted after a stop, and the drain waits for every one inside.
#include "cpp_test.hpp"

#include <chrono>

static void pool_scenario()
{
    const unsigned T = 6, N = 4;
    const uint64_t n = scale(2000);
    struct obj {
        std::atomic<int> holder;
    };
    obj objs[N];
    for (auto &o : objs)
        o.holder.store(-1);
    alignas(AP_POOL_STATE_ALIGN) unsigned char st[AP_POOL_STATE_BYTES(N)];
    ap_pool p;
    CHECK_OK(ap_pool_init(&p, st, sizeof st, objs, sizeof objs, N, sizeof objs[0]));
    run_threads(T, [&](unsigned id) {
        for (uint64_t i = 0; i < n; i++) {
            void *v;
            CHECK_OK(ap_pool_get_wait(&p, &v, AP_DEADLINE_NONE));
            obj *o = static_cast<obj *>(v);
            int was = -1;
            CHECK(o->holder.compare_exchange_strong(was, (int)id)); // exclusive
            CHECK(o->holder.exchange(-1) == (int)id);
            CHECK_OK(ap_pool_put(&p, v));
        }
    });
    CHECK(ap_pool_idle(&p) == N); // conserved
    void *v;
    CHECK_OK(ap_pool_get_wait(&p, &v, AP_DEADLINE_NONE));
    CHECK_OK(ap_pool_put(&p, v));
    CHECK(ap_pool_put(&p, v) == AP_INVAL); // a double put changes nothing
    CHECK(ap_pool_idle(&p) == N);
    ap_pool_fini(&p);
}

struct conn {
    uint64_t id;
    std::atomic<int> users;
};
struct server {
    std::atomic<uint64_t> opened{0}, closed{0};
};

static ap_status conn_open(void *ctx, void *c, int *app_error)
{
    (void)app_error;
    server *s = static_cast<server *>(ctx);
    conn *k = static_cast<conn *>(c);
    k->id = s->opened.fetch_add(1) + 1;
    k->users.store(0);
    return AP_OK;
}

static void conn_close(void *ctx, void *c)
{
    static_cast<server *>(ctx)->closed.fetch_add(1);
    CHECK(static_cast<conn *>(c)->users.load() == 0);
}

static void connpool_scenario()
{
    const unsigned T = 6;
    const uint64_t n = scale(1500);
    server srv;
    alignas(max_align_t) static unsigned char buf[AP_CONNPOOL_BYTES(3, sizeof(conn))];
    ap_connpool cp;
    ap_connpool_desc d = ap_connpool_desc();
    d.max_size = 3;
    d.conn_size = sizeof(conn);
    ap_connpool_ops ops = {conn_open, conn_close, NULL, &srv};
    CHECK_OK(ap_connpool_init(&cp, buf, sizeof buf, &d, &ops));
    std::atomic<uint64_t> broken{0};
    run_threads(T, [&](unsigned id) {
        for (uint64_t i = 0; i < n; i++) {
            void *c;
            ap_connpool_fail why;
            CHECK_OK(ap_connpool_checkout_wait(&cp, &c, AP_DEADLINE_NONE, &why));
            conn *k = static_cast<conn *>(c);
            CHECK(k->users.fetch_add(1) == 0); // one user per connection
            k->users.fetch_sub(1);
            bool brk = (i + id) % 50 == 0;     // now and then: closed, reopened
            broken.fetch_add(brk);
            CHECK_OK(ap_connpool_return(&cp, c, brk, ap_now_ns()));
        }
    });
    ap_connpool_stats s;
    ap_connpool_stats_get(&cp, &s);
    CHECK(s.in_use == 0 && s.live <= 3);
    CHECK(s.broken == broken.load());
    CHECK(s.opened == srv.opened.load() && s.closed == srv.closed.load());
    CHECK(s.live == s.opened - s.closed);
    ap_connpool_close(&cp);
    ap_connpool_fini(&cp);
    CHECK(srv.opened.load() == srv.closed.load()); // every open closed once
}

static ap_life life = AP_LIFE_INITIALIZER; // static init from C++

static void lifecycle_scenario()
{
    const unsigned T = 4;
    CHECK_OK(ap_life_start(&life));
    CHECK_OK(ap_life_started(&life, true));
    std::atomic<int> inside{0};
    std::atomic<bool> stopped{false};
    std::atomic<uint64_t> entered{0}, after_stop{0};
    std::vector<std::thread> ts;
    for (unsigned i = 0; i < T; i++)
        ts.emplace_back([&] {
            for (;;) {
                bool was_stopped = stopped.load();
                if (ap_life_enter(&life) != AP_OK)
                    break;
                if (was_stopped)
                    after_stop.fetch_add(1);
                inside.fetch_add(1);
                entered.fetch_add(1);
                std::this_thread::yield();
                inside.fetch_sub(1);
                ap_life_leave(&life);
            }
        });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_OK(ap_life_stop(&life));
    stopped.store(true);
    CHECK_OK(ap_life_wait(&life, AP_LIFE_EVENT_DRAINED, AP_DEADLINE_NONE));
    CHECK(inside.load() == 0); // the drain waited for everyone inside
    CHECK_OK(ap_life_terminated(&life));
    for (auto &t : ts)
        t.join();
    CHECK(after_stop.load() == 0); // nobody got in after stop returned
    CHECK(entered.load() > 0);
    CHECK(ap_life_enter(&life) != AP_OK);
}

int main()
{
    pool_scenario();
    connpool_scenario();
    lifecycle_scenario();
    std::puts("resources: ok (pool, connpool, lifecycle)");
    return 0;
}
