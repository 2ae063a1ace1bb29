/* A serial-binding test device: what the gateway and its tests talk to.
 *
 * On start it sends 0x00 (flush), status "online" and a small announce. Then,
 * for each frame from the host:
 *   model         -> an update frame with the same payload (an echo);
 *   task "exit"   -> main returns 0 (QEMU exits);
 *   task "noise"  -> garbage bytes, a frame with a bad CRC, then telemetry
 *                    {"noise-sent":2,"v":1} (the gateway must refuse the first
 *                    two and still forward the third);
 *   other task    -> telemetry {"task-bytes":N,"v":1};
 * and for each refused frame, telemetry {"serial-error":"<code>","v":1}; the
 * device keeps running. No malloc: one static receive buffer.
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "serial_link.h"

#ifndef DEVICE_MAX_PAYLOAD
#define DEVICE_MAX_PAYLOAD 4096u
#endif

static uint8_t rx_buf[SL_RAW_SIZE(DEVICE_MAX_PAYLOAD)];
static uint16_t tx_sequence;

static void uart_sink(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    board_uart_write(data, len);
}

static void send(uint8_t topic, const void *payload, size_t len) {
    sl_write_frame(uart_sink, NULL, topic, tx_sequence++, (const uint8_t *)payload, len);
}

static void send_text(uint8_t topic, const char *text) { send(topic, text, strlen(text)); }

int main(void) {
    static const char announce[] = "{\"id\":\"qemu-echo\",\"title\":\"TinyFleet serial test device\"}";
    board_uart_putc(0);
    send_text(SL_TOPIC_STATUS, "online");
    send_text(SL_TOPIC_ANNOUNCE, announce);
    sl_decoder_t dec;
    sl_decoder_init(&dec, rx_buf, sizeof rx_buf, SL_ACCEPT_HOST_TO_DEVICE);
    char text[96];
    for (;;) {
        sl_frame_t f;
        sl_result_t r = sl_decoder_push(&dec, board_uart_getc(), &f);
        if (r == SL_PENDING) continue;
        if (r != SL_FRAME) {
            snprintf(text, sizeof text, "{\"serial-error\":\"%s\",\"v\":1}", sl_result_code(r));
            send_text(SL_TOPIC_TELEMETRY, text);
            continue;
        }
        if (f.topic == SL_TOPIC_MODEL) {
            send(SL_TOPIC_UPDATE, f.payload, f.len);
        } else if (f.len == 4 && memcmp(f.payload, "exit", 4) == 0) {
            return 0;
        } else if (f.len == 5 && memcmp(f.payload, "noise", 5) == 0) {
            static const uint8_t garbage[] = {0x13, 0x37, 0xFF, 0x42, 0x00};
            board_uart_write(garbage, sizeof garbage);
            uint8_t bad[64];
            size_t n = sl_encode_frame(bad, sizeof bad, SL_TOPIC_TELEMETRY, tx_sequence++, (const uint8_t *)"{\"v\":1}", 7);
            bad[2] ^= 0x01; /* topic id 0x03 -> 0x02 after the CRC was computed: bad CRC */
            board_uart_write(bad, n);
            send_text(SL_TOPIC_TELEMETRY, "{\"noise-sent\":2,\"v\":1}");
        } else {
            snprintf(text, sizeof text, "{\"task-bytes\":%u,\"v\":1}", (unsigned)f.len);
            send_text(SL_TOPIC_TELEMETRY, text);
        }
    }
}
