/*
 * Starts an in-process tickwire broker and publishes a random-walk feed for a few symbols.
 *
 * Usage: publisher [SECONDS] [LISTEN] [REDIS_URL]     (defaults: 5, 127.0.0.1:0 = any free port, none)
 * Prints "listening on ws://HOST:PORT/ws" first, publishes quotes/<SYMBOL> about 1000 times a
 * second for SECONDS, then prints the broker's counters, stops it, and prints how many clients
 * opened and closed (counted by the connection callback). The library's log lines go to stderr
 * through the log callback. With REDIS_URL (e.g. redis://127.0.0.1:6379) the broker shares its
 * feed with every other tickwire using that Redis: each tw_publish goes through Redis.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tickwire.h"

#define N_SYMBOLS 4

static const char *const SYMBOLS[N_SYMBOLS] = {"AAPL", "MSFT", "NVDA", "BRK.B"};

/* Both callbacks run on broker threads (a worker, or the thread calling tw_*), possibly at once:
 * they only touch atomics and stderr. */
static atomic_ulong clients_opened, clients_closed;

static void on_connection(tw_connection_event event, size_t open_clients, void *user) {
    (void)open_clients;
    (void)user;
    if (event == TW_CONNECTION_OPENED) {
        atomic_fetch_add(&clients_opened, 1);
    } else {
        atomic_fetch_add(&clients_closed, 1);
    }
}

static void on_log(int level, const char *message, void *user) {
    static const char *const NAMES[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    fprintf((FILE *)user, "tickwire %s: %s\n", NAMES[level >= 1 && level <= 5 ? level : 0],
            message);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    const char *listen = argc > 2 ? argv[2] : "127.0.0.1:0"; /* any free port */
    const char *redis = argc > 3 ? argv[3] : NULL;

    if (tw_set_log_callback(on_log, stderr, TW_LOG_INFO) != TW_OK) {
        fprintf(stderr, "publisher: %s\n", tw_last_error());
    }

    tw_config cfg;
    tw_config_init(&cfg, sizeof cfg);
    cfg.listen = listen;
    cfg.local_listen = NULL; /* this program is the only publisher */
    cfg.workers = 1;
    cfg.on_connection = on_connection;
    cfg.on_connection_user = NULL;
    cfg.redis = redis; /* NULL: this process only */

    tw_broker *broker = tw_broker_start(&cfg);
    if (broker == NULL) {
        fprintf(stderr, "publisher: cannot start: %s\n", tw_last_error());
        return 1;
    }
    char addr[64];
    if (tw_broker_public_addr(broker, addr, sizeof addr) != TW_OK) {
        fprintf(stderr, "publisher: %s\n", tw_last_error());
        tw_broker_stop(broker);
        return 1;
    }
    printf("listening on ws://%s/ws\n", addr);
    fflush(stdout);

    double price[N_SYMBOLS] = {189.5, 415.2, 121.4, 412.7};
    uint64_t sent = 0, refused = 0;
    unsigned seed = 42;
    double start = now_seconds();
    while (now_seconds() - start < seconds) {
        for (int i = 0; i < N_SYMBOLS; i++) {
            seed = seed * 1103515245u + 12345u;
            price[i] *= 1.0 + ((double)(seed >> 16 & 0x7fff) / 32767.0 - 0.5) * 0.001;
            char topic[32], payload[128];
            snprintf(topic, sizeof topic, "quotes/%s", SYMBOLS[i]);
            int len = snprintf(payload, sizeof payload,
                               "{\"symbol\":\"%s\",\"bid\":%.2f,\"ask\":%.2f,\"n\":%llu}",
                               SYMBOLS[i], price[i] - 0.01, price[i] + 0.01,
                               (unsigned long long)sent);
            uint64_t seq = 0;
            tw_status rc = tw_publish(broker, topic, (const uint8_t *)payload, (size_t)len, &seq);
            if (rc == TW_OK) {
                sent++;
            } else if (rc == TW_ERR_QUEUE_FULL || rc == TW_ERR_UNAVAILABLE) {
                /* Subscribers are behind, or Redis is out of reach: nothing was published. */
                refused++;
            } else {
                fprintf(stderr, "publisher: %s: %s\n", tw_status_str(rc), tw_last_error());
                tw_broker_stop(broker);
                return 1;
            }
        }
        sleep_ms(4);
    }

    tw_stats stats;
    if (tw_broker_stats(broker, &stats) == TW_OK) {
        printf("published %llu (refused %llu), deliveries %llu, topics %llu, connections %llu\n",
               (unsigned long long)stats.published, (unsigned long long)refused,
               (unsigned long long)stats.deliveries, (unsigned long long)stats.topics,
               (unsigned long long)stats.connections);
    }
    tw_broker_stop(broker);
    printf("clients opened %lu, closed %lu\n", atomic_load(&clients_opened),
           atomic_load(&clients_closed));
    tw_set_log_callback(NULL, NULL, 0);
    return 0;
}
