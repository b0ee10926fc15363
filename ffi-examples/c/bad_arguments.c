/*
 * Every bad argument gets its status code and a useful tw_last_error(), never a crash.
 * Exits 0 when all checks pass; prints each failure otherwise.
 */
#define _POSIX_C_SOURCE 200809L /* sockets, nanosleep */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tickwire.h"

static int failures = 0;

static void expect(const char *what, tw_status got, tw_status want, const char *needle) {
    const char *err = tw_last_error();
    if (got != want) {
        printf("FAIL %s: got %s, want %s (%s)\n", what, tw_status_str(got), tw_status_str(want), err);
        failures++;
    } else if (needle != NULL && strstr(err, needle) == NULL) {
        printf("FAIL %s: tw_last_error() \"%s\" does not mention \"%s\"\n", what, err, needle);
        failures++;
    } else {
        printf("ok   %s: %s: %s\n", what, tw_status_str(got), err);
    }
}

/* tw_broker_start(cfg) must return NULL, with a tw_last_error() mentioning `needle`. */
static void expect_no_start(const char *what, const tw_config *cfg, const char *needle) {
    tw_broker *b = tw_broker_start(cfg);
    const char *err = tw_last_error();
    if (b != NULL) {
        printf("FAIL %s: a broker started\n", what);
        failures++;
        tw_broker_stop(b);
    } else if (strstr(err, needle) == NULL) {
        printf("FAIL %s: tw_last_error() \"%s\" does not mention \"%s\"\n", what, err, needle);
        failures++;
    } else {
        printf("ok   %s: NULL: %s\n", what, err);
    }
}

/* The on_connection callback runs on a worker thread: stopping the broker from there must be
 * refused (it would wait for its own thread), not deadlock. */
static tw_broker *callback_broker = NULL;
static atomic_int callback_stop_status = 1;
static atomic_int callback_shutdown_status = 1;
static char callback_error[512];

static void stop_from_callback(tw_connection_event event, size_t open, void *user) {
    (void)open;
    (void)user;
    if (event != TW_CONNECTION_OPENED || atomic_load(&callback_stop_status) != 1) return;
    tw_status stopped = tw_broker_stop(callback_broker);
    snprintf(callback_error, sizeof callback_error, "%s", tw_last_error());
    tw_status shut = tw_broker_shutdown(callback_broker);
    tw_broker_free(callback_broker); /* refused too: frees nothing */
    atomic_store(&callback_shutdown_status, (int)shut);
    atomic_store(&callback_stop_status, (int)stopped);
}

/* Opens a WebSocket to addr ("127.0.0.1:PORT") with a raw socket; returns the fd or -1. */
static int open_websocket(const char *addr) {
    const char *colon = strrchr(addr, ':');
    if (colon == NULL) return -1;
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)atoi(colon + 1));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) return -1;
    const char *req = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) return -1;
    char head[512];
    size_t got = 0;
    while (got + 1 < sizeof head) {
        ssize_t n = read(fd, head + got, 1);
        if (n <= 0) return -1;
        got += (size_t)n;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n") != NULL) return fd;
    }
    return -1;
}

int main(void) {
    const uint8_t json[] = "{\"bid\":1}";
    const size_t len = sizeof json - 1;

    expect("NULL config", tw_config_init(NULL, sizeof(tw_config)), TW_ERR_NULL_ARGUMENT, "cfg");
    tw_config sized;
    expect("a config size no header has", tw_config_init(&sized, 3), TW_ERR_CONFIG,
           "not one this library knows");
    expect_no_start("start with a NULL config", NULL, "cfg is NULL");
    expect("publish on a NULL handle", tw_publish(NULL, "quotes/A", json, len, NULL),
           TW_ERR_NULL_ARGUMENT, "handle");
    tw_message one = {"quotes/A", json, len};
    expect("batch on a NULL handle", tw_publish_batch(NULL, &one, 1, NULL), TW_ERR_NULL_ARGUMENT,
           "handle");
    tw_stats no_stats;
    expect("stats of a NULL handle", tw_broker_stats(NULL, &no_stats), TW_ERR_NULL_ARGUMENT,
           "handle");
    char addr[64];
    expect("address of a NULL handle", tw_broker_public_addr(NULL, addr, sizeof addr),
           TW_ERR_NULL_ARGUMENT, "handle");
    expect("local address of a NULL handle", tw_broker_local_addr(NULL, addr, sizeof addr),
           TW_ERR_NULL_ARGUMENT, "handle");
    expect("shutdown of a NULL handle", tw_broker_shutdown(NULL), TW_ERR_NULL_ARGUMENT, "handle");
    if (strcmp(tw_status_str(-1000), "TW_UNKNOWN_STATUS") != 0 ||
        strcmp(tw_status_str(TW_ERR_STOPPED), "TW_ERR_STOPPED") != 0) {
        printf("FAIL tw_status_str names\n");
        failures++;
    }

    tw_config cfg;
    tw_config_init(&cfg, sizeof cfg);
    cfg.size = 12345;
    expect_no_start("a config of an unknown size", &cfg, "size 12345 is not one this library knows");
    tw_config_init(&cfg, sizeof cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.jwt_key = "/nonexistent/jwt.key";
    expect_no_start("a token key that is not there", &cfg, "jwt_key: cannot read /nonexistent/jwt.key");
    cfg.jwt_key = NULL;
    cfg.tls_cert = "/nonexistent/cert.pem";
    expect_no_start("a TLS certificate without its key", &cfg, "tls_key is not");
    cfg.tls_key = "/nonexistent/key.pem";
    expect_no_start("a TLS certificate that is not there", &cfg, "cannot read /nonexistent/cert.pem");
    tw_config_init(&cfg, sizeof cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.history = 1000000;
    expect_no_start("more history than the bound", &cfg, "history");
    cfg.history = 100;
    cfg.max_update_rate = -1;
    expect_no_start("a negative update rate", &cfg, "max_update_rate");
    cfg.max_update_rate = 0;
    cfg.max_json_depth = 0;
    expect_no_start("a JSON depth of 0", &cfg, "max_json_depth");
    tw_config_init(&cfg, sizeof cfg);
    cfg.listen = "not an address";
    expect_no_start("bad listen address", &cfg, "expected IP:PORT or HOST:PORT");
    cfg.listen = "127.0.0.1:\xc3";
    expect_no_start("non-UTF-8 listen address", &cfg, "not UTF-8");
    cfg.listen = NULL;
    expect_no_start("NULL listen address", &cfg, "listen is NULL");
    cfg.listen = "127.0.0.1:0";
    cfg.publish_queue = 0;
    expect_no_start("a zero publish queue", &cfg, "publish_queue is 0: it must be from 1");
    tw_config_init(&cfg, sizeof cfg);

    /* A port another socket listens on: the broker cannot bind it (TW_ERR_IO's case). */
    int other = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sin_len = sizeof sin;
    if (other < 0 || bind(other, (struct sockaddr *)&sin, sizeof sin) != 0 || listen(other, 1) != 0 ||
        getsockname(other, (struct sockaddr *)&sin, &sin_len) != 0) {
        printf("FAIL cannot set up a listening socket\n");
        return 1;
    }
    char in_use[32];
    snprintf(in_use, sizeof in_use, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    cfg.listen = in_use;
    cfg.local_listen = NULL;
    expect_no_start("an address in use", &cfg, "in use");
    close(other);

    cfg.listen = "127.0.0.1:0";
    cfg.local_listen = NULL;
    cfg.max_payload = 64;
    tw_broker *b = tw_broker_start(&cfg);
    if (b == NULL) {
        printf("FAIL start: %s\n", tw_last_error());
        return 1;
    }
    uint64_t seq = 0;
    expect("good publish", tw_publish(b, "quotes/A", json, len, &seq), TW_OK, NULL);
    if (seq != 1) {
        printf("FAIL first seq is %llu\n", (unsigned long long)seq);
        failures++;
    }
    expect("NULL topic", tw_publish(b, NULL, json, len, NULL), TW_ERR_NULL_ARGUMENT, "topic");
    expect("NULL payload", tw_publish(b, "quotes/A", NULL, 3, NULL), TW_ERR_NULL_ARGUMENT, "payload");
    expect("empty level", tw_publish(b, "quotes//A", json, len, NULL), TW_ERR_INVALID_TOPIC,
           "level is empty");
    expect("wildcard topic", tw_publish(b, "quotes/+", json, len, NULL), TW_ERR_INVALID_TOPIC,
           "wildcard");
    expect("invalid UTF-8 topic", tw_publish(b, "quotes/\xff\xfe", json, len, NULL),
           TW_ERR_INVALID_UTF8, "UTF-8");
    const uint8_t not_json[] = "{bid";
    expect("payload not JSON", tw_publish(b, "quotes/A", not_json, 4, NULL),
           TW_ERR_INVALID_PAYLOAD, "JSON");
    char big[100];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    expect("payload over the limit", tw_publish(b, "quotes/A", (const uint8_t *)big, sizeof big, NULL),
           TW_ERR_PAYLOAD_TOO_LARGE, "over the limit");
    char tiny[4];
    expect("address buffer too small", tw_broker_public_addr(b, tiny, sizeof tiny),
           TW_ERR_BUFFER_TOO_SMALL, "needed");
    expect("address into NULL", tw_broker_public_addr(b, NULL, 64), TW_ERR_NULL_ARGUMENT, "buf");
    expect("local address when disabled", tw_broker_local_addr(b, addr, sizeof addr),
           TW_ERR_CONFIG, "disabled");
    expect("stats into NULL", tw_broker_stats(b, NULL), TW_ERR_NULL_ARGUMENT, "out");
    expect("reload without TLS or tokens", tw_broker_reload(b), TW_OK, NULL);
    expect("reload of a NULL handle", tw_broker_reload(NULL), TW_ERR_NULL_ARGUMENT, "handle");

    tw_message batch[2] = {{"quotes/A", json, len}, {"quotes//B", json, len}};
    size_t published = 99;
    expect("batch with a bad item", tw_publish_batch(b, batch, 2, &published),
           TW_ERR_INVALID_TOPIC, "messages[1]");
    if (published != 99) {
        printf("FAIL a failed batch wrote published=%zu\n", published);
        failures++;
    }
    expect("batch from NULL", tw_publish_batch(b, NULL, 2, &published), TW_ERR_NULL_ARGUMENT,
           "messages");
    batch[1].topic = "quotes/B";
    batch[1].len = sizeof big;
    batch[1].payload = (const uint8_t *)big;
    expect("batch with a payload over the limit", tw_publish_batch(b, batch, 2, &published),
           TW_ERR_PAYLOAD_TOO_LARGE, "messages[1]");
    batch[1].payload = json;
    batch[1].len = len;
    expect("good batch", tw_publish_batch(b, batch, 2, &published), TW_OK, NULL);
    if (published != 2) {
        printf("FAIL a good batch wrote published=%zu\n", published);
        failures++;
    }
    expect("empty batch", tw_publish_batch(b, NULL, 0, NULL), TW_OK, NULL);

    expect("shutdown", tw_broker_shutdown(b), TW_OK, NULL);
    expect("publish after stop", tw_publish(b, "quotes/A", json, len, NULL), TW_ERR_STOPPED,
           "shutting down");
    expect("batch after stop", tw_publish_batch(b, batch, 2, NULL), TW_ERR_STOPPED,
           "shutting down");
    expect("second shutdown", tw_broker_shutdown(b), TW_OK, NULL);
    tw_stats st;
    expect("stats after stop", tw_broker_stats(b, &st), TW_ERR_STOPPED, "stopped");
    expect("reload after stop", tw_broker_reload(b), TW_ERR_STOPPED, "stopped");
    tw_broker_free(b);
    tw_broker_free(NULL);
    expect("stop of NULL", tw_broker_stop(NULL), TW_OK, NULL);

    /* Stopping from the on_connection callback is refused, and the broker keeps running. */
    tw_config_init(&cfg, sizeof cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.local_listen = NULL;
    cfg.on_connection = stop_from_callback;
    callback_broker = tw_broker_start(&cfg);
    if (callback_broker == NULL || tw_broker_public_addr(callback_broker, addr, sizeof addr) != TW_OK) {
        printf("FAIL start for the callback check: %s\n", tw_last_error());
        return 1;
    }
    int ws = open_websocket(addr);
    for (int i = 0; i < 500 && atomic_load(&callback_stop_status) == 1; i++) {
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
    if (ws < 0) {
        printf("FAIL could not open a WebSocket to %s\n", addr);
        failures++;
    }
    tw_status in_callback = (tw_status)atomic_load(&callback_stop_status);
    if (in_callback != TW_ERR_WRONG_THREAD || strstr(callback_error, "worker threads") == NULL ||
        atomic_load(&callback_shutdown_status) != TW_ERR_WRONG_THREAD) {
        printf("FAIL stop from the callback: got %s (%s)\n", tw_status_str(in_callback), callback_error);
        failures++;
    } else {
        printf("ok   stop from the callback: %s: %s\n", tw_status_str(in_callback), callback_error);
    }
    expect("the broker still runs after a refused stop", tw_publish(callback_broker, "quotes/A", json, len, NULL),
           TW_OK, NULL);
    if (ws >= 0) close(ws);
    expect("stop from the main thread", tw_broker_stop(callback_broker), TW_OK, NULL);

    printf("version %s, %d failure(s)\n", tw_version(), failures);
    return failures == 0 ? 0 : 1;
}
