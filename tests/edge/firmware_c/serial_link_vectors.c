/* Serial-link codec vectors: the same source runs on the host (cc) and under
 * QEMU (printf -> UART0). The test generates serial_link_vectors.h (a byte
 * stream to decode, frames to encode) and compares every line printed here
 * with what edge/serial_link.py makes of the same bytes:
 *   F <topic> <sequence> <len> <crc32 of payload>   a decoded frame
 *   E <code>                                        a refused frame
 *   X <hex>                                         an encoded frame
 *   C <crc32>                                       sl_crc32 of CRC_INPUT */
#include <stdio.h>

#include "serial_link.h"
#include "serial_link_vectors.h"

static uint8_t rx_buf[SL_RAW_SIZE(VEC_MAX_PAYLOAD)];
static uint8_t tx_buf[SL_ENCODED_SIZE(VEC_ENC_MAX)];

int main(void) {
    printf("C %08lx\n", (unsigned long)sl_crc32(0, CRC_INPUT, sizeof CRC_INPUT - 1));
    sl_decoder_t d;
    sl_decoder_init(&d, rx_buf, sizeof rx_buf, VEC_ACCEPT);
    for (size_t i = 0; i < STREAM_LEN; i++) {
        sl_frame_t f;
        sl_result_t r = sl_decoder_push(&d, STREAM[i], &f);
        if (r == SL_FRAME) {
            printf("F %u %u %lu %08lx\n", f.topic, f.sequence, (unsigned long)f.len,
                   (unsigned long)sl_crc32(0, f.payload, f.len));
        } else if (r != SL_PENDING) {
            printf("E %s\n", sl_result_code(r));
        }
    }
    sl_result_t r = sl_decoder_flush(&d);
    if (r != SL_PENDING) printf("E %s\n", sl_result_code(r));
    for (size_t k = 0; k + 1 <= (size_t)ENC_COUNT; k++) {
        size_t n = sl_encode_frame(tx_buf, sizeof tx_buf, ENC_TOPIC[k], ENC_SEQ[k], ENC_DATA + ENC_OFF[k], ENC_LEN[k]);
        printf("X ");
        for (size_t i = 0; i < n; i++) printf("%02x", tx_buf[i]);
        printf("\n");
    }
    printf("END\n");
    return 0;
}
