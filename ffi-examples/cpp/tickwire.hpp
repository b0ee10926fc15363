// A small C++17 RAII wrapper over the tickwire C API: the broker stops when the object goes out
// of scope, and every error status becomes a tickwire::Error carrying the code and message.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "tickwire.h"

namespace tickwire {

class Error : public std::runtime_error {
  public:
    Error(tw_status status, const std::string &what)
        : std::runtime_error(std::string(tw_status_str(status)) + ": " + what), status_(status) {}
    tw_status status() const noexcept { return status_; }

  private:
    tw_status status_;
};

inline void check(tw_status status) {
    if (status != TW_OK) throw Error(status, tw_last_error());
}

class Config {
  public:
    Config() { check(tw_config_init(&raw_, sizeof raw_)); }
    Config &listen(std::string addr) {
        listen_ = std::move(addr);
        raw_.listen = listen_.c_str();
        return *this;
    }
    Config &no_local_listener() {
        raw_.local_listen = nullptr;
        return *this;
    }
    Config &workers(uint32_t n) {
        raw_.workers = n;
        return *this;
    }
    const tw_config *get() const { return &raw_; }

  private:
    tw_config raw_{};
    std::string listen_;
};

class Broker {
  public:
    // Starts the broker; throws tickwire::Error if it cannot. tw_broker_start answers only NULL
    // and a message, so the status is TW_ERR_IO for every start failure: read what().
    explicit Broker(const Config &config) : raw_(tw_broker_start(config.get())) {
        if (raw_ == nullptr) throw Error(TW_ERR_IO, tw_last_error());
    }
    ~Broker() { tw_broker_stop(raw_); }
    Broker(const Broker &) = delete;
    Broker &operator=(const Broker &) = delete;
    Broker(Broker &&other) noexcept : raw_(std::exchange(other.raw_, nullptr)) {}

    // Publishes from any thread; returns the topic's sequence number.
    uint64_t publish(const std::string &topic, std::string_view json) const {
        uint64_t seq = 0;
        check(tw_publish(raw_, topic.c_str(), reinterpret_cast<const uint8_t *>(json.data()),
                         json.size(), &seq));
        return seq;
    }

    std::string public_addr() const {
        char buf[64];
        check(tw_broker_public_addr(raw_, buf, sizeof buf));
        return buf;
    }

    tw_stats stats() const {
        tw_stats s{};
        check(tw_broker_stats(raw_, &s));
        return s;
    }

  private:
    tw_broker *raw_;
};

}  // namespace tickwire
