/*
 * Starts an in-process tickwire broker and publishes a random-walk feed for a few symbols.
 *
 * Usage: publisher [SECONDS] [LISTEN]     (defaults: 5, 127.0.0.1:8080)
 * Prints "listening on ws://HOST:PORT/ws" first, publishes quotes/<SYMBOL> about 1000 times a
 * second for SECONDS, then prints the broker's counters and stops it.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tickwire.h"

#define N_SYMBOLS 4

static const char *const SYMBOLS[N_SYMBOLS] = {"AAPL", "MSFT", "NVDA", "BRK.B"};

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
    const char *listen = argc > 2 ? argv[2] : "127.0.0.1:8080";

    tw_config cfg;
    tw_config_init(&cfg);
    cfg.listen = listen;
    cfg.local_listen = NULL; /* this program is the only publisher */
    cfg.workers = 1;

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
            } else if (rc == TW_ERR_QUEUE_FULL) {
                refused++; /* subscribers are behind: nothing was published, try later */
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
    return 0;
}
