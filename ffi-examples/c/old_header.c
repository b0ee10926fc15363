/*
 * A program compiled against an older tickwire.h still works with this library: its tw_config
 * is the older, shorter one (declared below as that header had it), and tw_config_init and
 * tw_broker_start touch only the bytes it has. Exits 0 when every check passes.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tickwire.h" /* for the functions; the struct below stands for the older header's */

/* tw_config as the header before the entitlement and TLS fields declared it. */
typedef struct old_tw_config {
    size_t size;
    const char *listen;
    const char *local_listen;
    uint32_t workers;
    uint32_t max_connections;
    uint32_t max_payload;
    uint32_t max_subscriptions;
    uint32_t publish_queue;
    uint32_t outbound_soft_limit;
    uint32_t outbound_hard_limit;
    const char *publish_token;
    tw_connection_callback on_connection;
    void *on_connection_user;
    const char *redis;
    const char *redis_prefix;
} old_tw_config;

int main(void) {
    /* Whatever the old program keeps right after its struct: it must be neither written nor
     * read as new fields (0xA5 bytes would be wild pointers if read as paths). */
    struct {
        old_tw_config cfg;
        unsigned char after[64];
    } mem;
    memset(&mem, 0xA5, sizeof mem);
    if (sizeof(old_tw_config) >= sizeof(tw_config)) {
        printf("FAIL the old struct (%zu bytes) is not shorter than this header's (%zu)\n",
               sizeof(old_tw_config), sizeof(tw_config));
        return 1;
    }
    tw_status rc = tw_config_init((tw_config *)&mem.cfg, sizeof mem.cfg);
    if (rc != TW_OK) {
        printf("FAIL tw_config_init with the old size: %s: %s\n", tw_status_str(rc), tw_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof mem.after; i++) {
        if (mem.after[i] != 0xA5) {
            printf("FAIL tw_config_init wrote past the old struct (byte %zu)\n", i);
            return 1;
        }
    }
    if (mem.cfg.size != sizeof(old_tw_config) || mem.cfg.max_payload != 65536) {
        printf("FAIL the old struct was not filled (size %zu, max_payload %u)\n", mem.cfg.size,
               mem.cfg.max_payload);
        return 1;
    }
    mem.cfg.listen = "127.0.0.1:0";
    mem.cfg.local_listen = NULL;
    mem.cfg.max_payload = 100;
    tw_broker *b = tw_broker_start((const tw_config *)&mem.cfg);
    if (b == NULL) {
        printf("FAIL tw_broker_start with the old struct: %s\n", tw_last_error());
        return 1;
    }
    const char quote[] = "{\"bid\":1}";
    uint64_t seq = 0;
    rc = tw_publish(b, "quotes/OLD", (const uint8_t *)quote, sizeof quote - 1, &seq);
    char big[200];
    memset(big, ' ', sizeof big);
    big[0] = '1';
    tw_status too_big = tw_publish(b, "quotes/OLD", (const uint8_t *)big, sizeof big, NULL);
    tw_status stopped = tw_broker_stop(b);
    if (rc != TW_OK || seq != 1 || too_big != TW_ERR_PAYLOAD_TOO_LARGE || stopped != TW_OK) {
        printf("FAIL publish %s seq %llu, over max_payload %s, stop %s\n", tw_status_str(rc),
               (unsigned long long)seq, tw_status_str(too_big), tw_status_str(stopped));
        return 1;
    }
    printf("ok   a %zu-byte tw_config from an older header (this one is %zu bytes) starts a broker\n",
           sizeof(old_tw_config), sizeof(tw_config));
    return 0;
}
