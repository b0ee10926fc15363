// Publishes from several std::threads at once through the RAII wrapper.
//
// Usage: threads [SECONDS] [LISTEN]     (defaults: 5, 127.0.0.1:8080)
// Thread t owns topic quotes/T<t> and publishes {"thread":t,"n":n} with n counting from 0, so a
// subscriber can check that each topic arrives complete and in order.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "tickwire.hpp"

int main(int argc, char **argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
    const std::string listen = argc > 2 ? argv[2] : "127.0.0.1:8080";
    try {
        tickwire::Broker broker(tickwire::Config().listen(listen).no_local_listener().workers(1));
        std::printf("listening on ws://%s/ws\n", broker.public_addr().c_str());
        std::fflush(stdout);

        constexpr int kThreads = 4;
        std::atomic<uint64_t> published{0}, refused{0};
        const auto end = std::chrono::steady_clock::now() +
                         std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(seconds));
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; t++) {
            threads.emplace_back([&, t] {
                const std::string topic = "quotes/T" + std::to_string(t);
                uint64_t n = 0;
                while (std::chrono::steady_clock::now() < end) {
                    const std::string json =
                        "{\"thread\":" + std::to_string(t) + ",\"n\":" + std::to_string(n) + "}";
                    try {
                        broker.publish(topic, json);
                        n++;
                        published++;
                    } catch (const tickwire::Error &e) {
                        if (e.status() != TW_ERR_QUEUE_FULL) throw;
                        refused++;  // retry the same n later: nothing was published
                    }
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                }
            });
        }
        for (auto &th : threads) th.join();
        const tw_stats s = broker.stats();
        std::printf("published %llu (refused %llu) from %d threads, deliveries %llu\n",
                    static_cast<unsigned long long>(s.published),
                    static_cast<unsigned long long>(refused.load()), kThreads,
                    static_cast<unsigned long long>(s.deliveries));
        try {
            broker.publish("bad//topic", "1");
            std::printf("an invalid topic was accepted\n");
            return 1;
        } catch (const tickwire::Error &e) {
            std::printf("invalid topic refused: %s\n", e.what());
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "threads: %s\n", e.what());
        return 1;
    }
    return 0;
}
