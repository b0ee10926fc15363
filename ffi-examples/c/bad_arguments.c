/*
 * Every bad argument gets its status code and a useful tw_last_error(), never a crash.
 * Exits 0 when all checks pass; prints each failure otherwise.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

int main(void) {
    const uint8_t json[] = "{\"bid\":1}";
    const size_t len = sizeof json - 1;

    expect("NULL config", tw_config_init(NULL), TW_ERR_NULL_ARGUMENT, "cfg");
    if (tw_broker_start(NULL) != NULL) {
        printf("FAIL start(NULL) returned a handle\n");
        failures++;
    }
    expect("publish on a NULL handle", tw_publish(NULL, "quotes/A", json, len, NULL),
           TW_ERR_NULL_ARGUMENT, "handle");

    tw_config cfg;
    tw_config_init(&cfg);
    cfg.listen = "not an address";
    if (tw_broker_start(&cfg) != NULL) {
        printf("FAIL a bad listen address started a broker\n");
        failures++;
    }
    printf("ok   bad listen address: %s\n", tw_last_error());

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

    tw_message batch[2] = {{"quotes/A", json, len}, {"quotes//B", json, len}};
    size_t published = 99;
    expect("batch with a bad item", tw_publish_batch(b, batch, 2, &published),
           TW_ERR_INVALID_TOPIC, "messages[1]");
    if (published != 99) {
        printf("FAIL a failed batch wrote published=%zu\n", published);
        failures++;
    }
    batch[1].topic = "quotes/B";
    expect("good batch", tw_publish_batch(b, batch, 2, &published), TW_OK, NULL);

    expect("shutdown", tw_broker_shutdown(b), TW_OK, NULL);
    expect("publish after stop", tw_publish(b, "quotes/A", json, len, NULL), TW_ERR_STOPPED,
           "shutting down");
    tw_stats st;
    expect("stats after stop", tw_broker_stats(b, &st), TW_ERR_STOPPED, "stopped");
    tw_broker_free(b);
    tw_broker_free(NULL);
    tw_broker_stop(NULL);

    printf("version %s, %d failure(s)\n", tw_version(), failures);
    return failures == 0 ? 0 : 1;
}
