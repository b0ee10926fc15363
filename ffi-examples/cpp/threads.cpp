// Publishes from several std::threads at once through the RAII wrapper.
//
// Usage: threads [SECONDS] [LISTEN]     (defaults: 5, 127.0.0.1:8080)
// Thread t owns topic quotes/T<t> and publishes {"thread":t,"n":n} with n counting from 0, so a
// subscriber can check that each topic arrives complete and in order.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "tickwire.hpp"

using Clock = std::chrono::steady_clock;

// One thread's feed: quotes/T<t> until `end`. A full queue means nothing was published, so the
// same n is retried; any other error is thrown.
static void feed(const tickwire::Broker &broker, int t, Clock::time_point end,
                 std::atomic<uint64_t> &refused) {
    const std::string topic = "quotes/T" + std::to_string(t);
    uint64_t n = 0;
    while (Clock::now() < end) {
        const std::string json =
            "{\"thread\":" + std::to_string(t) + ",\"n\":" + std::to_string(n) + "}";
        try {
            broker.publish(topic, json);
            n++;
        } catch (const tickwire::Error &e) {
            if (e.status() != TW_ERR_QUEUE_FULL) throw;
            refused++;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

int main(int argc, char **argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 5.0;
    const std::string listen = argc > 2 ? argv[2] : "127.0.0.1:8080";
    try {
        tickwire::Broker broker(tickwire::Config().listen(listen).no_local_listener().workers(1));
        std::printf("listening on ws://%s/ws\n", broker.public_addr().c_str());
        std::fflush(stdout);

        constexpr int kThreads = 4;
        std::atomic<uint64_t> refused{0};
        const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(seconds));
        // An exception must not leave a thread (std::terminate): each thread keeps its own and
        // main rethrows the first one after joining them all.
        std::vector<std::exception_ptr> errors(kThreads);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; t++) {
            threads.emplace_back([&, t] {
                try {
                    feed(broker, t, end, refused);
                } catch (...) {
                    errors[t] = std::current_exception();
                }
            });
        }
        for (auto &th : threads) th.join();
        for (const auto &e : errors) {
            if (e) std::rethrow_exception(e);
        }

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
