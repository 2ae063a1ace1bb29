/* serial_link.h - serial binding v1: the device's MQTT topics as COBS frames on a UART.
 *
 * Why: a microcontroller has no TCP stack; a gateway on the host speaks MQTT
 * for it (firmware_sim/serial_gateway.py). Each MQTT message is one frame:
 *
 *     raw   = version u8 | topic id u8 | sequence u16 LE | payload | crc32 u32 LE
 *     frame = COBS(raw) | 0x00
 *
 * crc32 is zlib's CRC-32 over version..payload. 0x00 only ever ends a frame,
 * so after garbage, a lost byte or a reset the decoder resynchronises at the
 * next 0x00 and loses nothing after it; empty frames are ignored. The Python
 * twin is edge/serial_link.py (same bytes, same error order; tested against
 * each other on the host and under QEMU); the spec is docs/protocol.md,
 * "Serial binding".
 *
 * No malloc: the caller owns the decoder's buffer (SL_RAW_SIZE(max payload)
 * bytes) and a decoded frame's payload points into it until the next push.
 * The encoder streams through a write callback and needs no frame buffer.
 */
#ifndef TINYFLEET_SERIAL_LINK_H
#define TINYFLEET_SERIAL_LINK_H

#include <stddef.h>
#include <stdint.h>

#define SL_VERSION 1u
#define SL_HEADER_BYTES 4u /* version, topic id, sequence */
#define SL_CRC_BYTES 4u
#define SL_MIN_RAW (SL_HEADER_BYTES + SL_CRC_BYTES)
#define SL_MAX_PAYLOAD 65536u /* the protocol's cap; a receiver may choose less */
/* Decoder buffer bytes for payloads up to max_payload. */
#define SL_RAW_SIZE(max_payload) ((size_t)(max_payload) + SL_MIN_RAW)
/* Line bytes of the largest frame with a payload of n bytes, delimiter included. */
#define SL_ENCODED_SIZE(n) (SL_RAW_SIZE(n) + SL_RAW_SIZE(n) / 254u + 2u)

/* Topic ids: the device's MQTT channels (tinyfleet/v1/dev/{id}/<channel>); high bit = host -> device. */
typedef enum {
    SL_TOPIC_ANNOUNCE = 0x01,
    SL_TOPIC_STATUS = 0x02,
    SL_TOPIC_TELEMETRY = 0x03,
    SL_TOPIC_UPDATE = 0x04,
    SL_TOPIC_TASK = 0x81,
    SL_TOPIC_MODEL = 0x82,
} sl_topic_t;

/* Which topic ids a decoder accepts: a device takes host->device frames, a gateway device->host. */
#define SL_ACCEPT_DEVICE_TO_HOST 1u
#define SL_ACCEPT_HOST_TO_DEVICE 2u
#define SL_ACCEPT_ANY 3u

typedef enum {
    SL_PENDING = 0, /* byte taken, no frame ended yet (or an empty frame) */
    SL_FRAME = 1,   /* a frame ended and is good: see *out */
    SL_ERR_BAD_COBS = -1,
    SL_ERR_TRUNCATED = -2,
    SL_ERR_BAD_CRC = -3,
    SL_ERR_OVERSIZED = -4,
    SL_ERR_UNSUPPORTED_VERSION = -5,
    SL_ERR_UNKNOWN_TOPIC = -6,
} sl_result_t;

/* The protocol's short code for a result ("bad-crc", ...), as Python's SerialFrameError.code. */
const char *sl_result_code(sl_result_t result);

/* CRC-32 as zlib.crc32: start with crc = 0, chain calls over consecutive chunks. */
uint32_t sl_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* 1 if ``topic`` is a defined id inside the ``accept`` mask. */
int sl_topic_accepted(uint8_t topic, unsigned accept);

typedef struct {
    uint8_t topic;
    uint16_t sequence;
    const uint8_t *payload; /* into the decoder's buffer: valid until the next sl_decoder_push */
    size_t len;
} sl_frame_t;

typedef struct {
    uint8_t *buf;
    size_t cap; /* SL_RAW_SIZE(max payload) */
    size_t len;
    unsigned accept;
    uint8_t block_code; /* code byte of the current COBS block */
    uint8_t block_left; /* its data bytes still to come */
    uint8_t started;    /* a non-zero byte has been seen since the last delimiter */
    uint8_t overflow;   /* decoded bytes passed cap: skip to the next delimiter */
} sl_decoder_t;

void sl_decoder_init(sl_decoder_t *d, uint8_t *buf, size_t cap, unsigned accept);
/* Take one line byte. At a 0x00 returns SL_FRAME (fills *out) or the error that
 * refuses the frame; every other byte returns SL_PENDING. Never blocks. */
sl_result_t sl_decoder_push(sl_decoder_t *d, uint8_t byte, sl_frame_t *out);
/* The stream ended: SL_ERR_TRUNCATED if a frame was in progress, else SL_PENDING. */
sl_result_t sl_decoder_flush(sl_decoder_t *d);

typedef void (*sl_write_fn)(void *ctx, const uint8_t *data, size_t len);
/* Encode one frame and hand its line bytes (delimiter included) to ``write``.
 * Returns 0, SL_ERR_OVERSIZED (len > SL_MAX_PAYLOAD) or SL_ERR_UNKNOWN_TOPIC. */
int sl_write_frame(sl_write_fn write, void *ctx, uint8_t topic, uint16_t sequence, const uint8_t *payload, size_t len);
/* The same into ``out``; returns the frame's length, or 0 if it does not fit ``cap`` or is refused. */
size_t sl_encode_frame(uint8_t *out, size_t cap, uint8_t topic, uint16_t sequence, const uint8_t *payload, size_t len);

#endif
