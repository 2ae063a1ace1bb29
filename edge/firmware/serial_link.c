/* serial_link.c - serial binding v1 (see serial_link.h and docs/protocol.md, "Serial binding").
 *
 * The decoder undoes COBS byte by byte into the caller's buffer, exactly as
 * edge/serial_link.py's cobs_decode does on a whole frame, so both refuse the
 * same frame with the same code, checked in the same order: oversized (while
 * decoding), bad-cobs, truncated, bad-crc, unsupported-version, unknown-topic.
 */
#include "serial_link.h"

#include <string.h>

const char *sl_result_code(sl_result_t result) {
    switch (result) {
    case SL_PENDING: return "pending";
    case SL_FRAME: return "ok";
    case SL_ERR_BAD_COBS: return "bad-cobs";
    case SL_ERR_TRUNCATED: return "truncated";
    case SL_ERR_BAD_CRC: return "bad-crc";
    case SL_ERR_OVERSIZED: return "oversized";
    case SL_ERR_UNSUPPORTED_VERSION: return "unsupported-version";
    case SL_ERR_UNKNOWN_TOPIC: return "unknown-topic";
    }
    return "unknown-result";
}

/* Nibble table: 64 bytes of flash instead of zlib's 1 KB, two lookups per byte. */
static const uint32_t CRC_NIBBLE[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t sl_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc = CRC_NIBBLE[(crc ^ data[i]) & 0xFu] ^ (crc >> 4);
        crc = CRC_NIBBLE[(crc ^ (data[i] >> 4)) & 0xFu] ^ (crc >> 4);
    }
    return ~crc;
}

int sl_topic_accepted(uint8_t topic, unsigned accept) {
    switch (topic) {
    case SL_TOPIC_ANNOUNCE:
    case SL_TOPIC_STATUS:
    case SL_TOPIC_TELEMETRY:
    case SL_TOPIC_UPDATE: return (accept & SL_ACCEPT_DEVICE_TO_HOST) != 0;
    case SL_TOPIC_TASK:
    case SL_TOPIC_MODEL: return (accept & SL_ACCEPT_HOST_TO_DEVICE) != 0;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ decoder */

static void decoder_reset(sl_decoder_t *d) {
    d->len = 0;
    d->block_code = 0;
    d->block_left = 0;
    d->started = 0;
    d->overflow = 0;
}

void sl_decoder_init(sl_decoder_t *d, uint8_t *buf, size_t cap, unsigned accept) {
    d->buf = buf;
    d->cap = cap;
    d->accept = accept;
    decoder_reset(d);
}

static void emit(sl_decoder_t *d, uint8_t byte) {
    if (d->len >= d->cap) {
        d->overflow = 1;
        return;
    }
    d->buf[d->len++] = byte;
}

static sl_result_t finish(sl_decoder_t *d, sl_frame_t *out) {
    if (d->overflow) return SL_ERR_OVERSIZED;
    if (d->block_left != 0) return SL_ERR_BAD_COBS; /* the last block runs past the delimiter */
    if (d->len < SL_MIN_RAW) return SL_ERR_TRUNCATED;
    size_t body = d->len - SL_CRC_BYTES;
    const uint8_t *c = d->buf + body;
    uint32_t stored = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
    if (stored != sl_crc32(0, d->buf, body)) return SL_ERR_BAD_CRC;
    if (d->buf[0] != SL_VERSION) return SL_ERR_UNSUPPORTED_VERSION;
    if (!sl_topic_accepted(d->buf[1], d->accept)) return SL_ERR_UNKNOWN_TOPIC;
    out->topic = d->buf[1];
    out->sequence = (uint16_t)(d->buf[2] | d->buf[3] << 8);
    out->payload = d->buf + SL_HEADER_BYTES;
    out->len = body - SL_HEADER_BYTES;
    return SL_FRAME;
}

sl_result_t sl_decoder_push(sl_decoder_t *d, uint8_t byte, sl_frame_t *out) {
    if (byte == 0) {
        sl_result_t result = d->started ? finish(d, out) : SL_PENDING; /* empty frame: ignored */
        decoder_reset(d);
        return result;
    }
    d->started = 1;
    if (d->overflow) return SL_PENDING;
    if (d->block_left == 0) { /* a code byte */
        if (d->block_code != 0 && d->block_code < 0xFFu) emit(d, 0);
        d->block_code = byte;
        d->block_left = (uint8_t)(byte - 1u);
    } else {
        emit(d, byte);
        d->block_left--;
    }
    return SL_PENDING;
}

sl_result_t sl_decoder_flush(sl_decoder_t *d) {
    sl_result_t result = d->started ? SL_ERR_TRUNCATED : SL_PENDING;
    decoder_reset(d);
    return result;
}

/* ------------------------------------------------------------------ encoder */

typedef struct {
    sl_write_fn write;
    void *ctx;
    uint8_t block[255]; /* [0] = code byte, then up to 254 data bytes */
    uint8_t n;          /* data bytes in block */
} cobs_writer_t;

static void cobs_flush_block(cobs_writer_t *w) {
    w->block[0] = (uint8_t)(w->n + 1u);
    w->write(w->ctx, w->block, (size_t)w->n + 1u);
    w->n = 0;
}

static void cobs_put(cobs_writer_t *w, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (data[i] == 0) {
            cobs_flush_block(w);
            continue;
        }
        w->block[1u + w->n++] = data[i];
        if (w->n == 254u) cobs_flush_block(w); /* code 0xFF: no implied zero */
    }
}

int sl_write_frame(sl_write_fn write, void *ctx, uint8_t topic, uint16_t sequence, const uint8_t *payload, size_t len) {
    if (len > SL_MAX_PAYLOAD) return SL_ERR_OVERSIZED;
    if (!sl_topic_accepted(topic, SL_ACCEPT_ANY)) return SL_ERR_UNKNOWN_TOPIC;
    cobs_writer_t w;
    w.write = write;
    w.ctx = ctx;
    w.n = 0;
    uint8_t head[SL_HEADER_BYTES] = {SL_VERSION, topic, (uint8_t)sequence, (uint8_t)(sequence >> 8)};
    uint32_t crc = sl_crc32(sl_crc32(0, head, sizeof head), payload, len);
    uint8_t tail[SL_CRC_BYTES] = {(uint8_t)crc, (uint8_t)(crc >> 8), (uint8_t)(crc >> 16), (uint8_t)(crc >> 24)};
    cobs_put(&w, head, sizeof head);
    cobs_put(&w, payload, len);
    cobs_put(&w, tail, sizeof tail);
    /* The final block always goes out, even empty after a 254-byte block: the
     * Python encoder does the same, so the bytes are identical. */
    cobs_flush_block(&w);
    static const uint8_t delimiter = 0;
    write(ctx, &delimiter, 1);
    return 0;
}

typedef struct {
    uint8_t *out;
    size_t cap;
    size_t len;
    int overflow;
} buffer_ctx_t;

static void buffer_write(void *ctx, const uint8_t *data, size_t len) {
    buffer_ctx_t *b = (buffer_ctx_t *)ctx;
    if (b->overflow || len > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->out + b->len, data, len);
    b->len += len;
}

size_t sl_encode_frame(uint8_t *out, size_t cap, uint8_t topic, uint16_t sequence, const uint8_t *payload, size_t len) {
    buffer_ctx_t b = {out, cap, 0, 0};
    if (sl_write_frame(buffer_write, &b, topic, sequence, payload, len) != 0 || b.overflow) return 0;
    return b.len;
}
