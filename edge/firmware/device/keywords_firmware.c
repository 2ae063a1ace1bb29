/* keywords_firmware.c - a keyword-spotting device that joins the federation over its UART: raw audio in, the MFCC
 * front end (mfcc.c) on the device, pooled and standardised as firmware_sim.task_families.keyword_features, the
 * classifier device round (round.h, MLPClassifier's twin), an UPDATE out (docs/protocol.md §1-3 payloads in §7
 * serial frames, which firmware_sim/serial_gateway.py carries to and from MQTT).
 *
 * Built by edge.firmware.images.build_image(task="keywords"), which generates device_config.h (the device id, the
 * weights the firmware ships with: its hidden layers and a zero output layer, where TinyMetaFed's private part is
 * rebuilt from; its profile) and mfcc_tables.h (the front end's tables and the task's feature scaler, the bits numpy
 * holds). The audio comes from the sample source (sample_source.h): the host's feed under QEMU, the PDM microphone
 * on the Nano. Each clip is one sample of the round: its MFCC frames are computed as its chunks arrive (no clip
 * buffer), then pooled by TF_MFCC_POOL and standardised into the MLP's TF_MFCC_NUM_FEATURES inputs.
 *
 * Protocol, as sine_firmware.c: 0x00, status "online", a small announce; a MODEL and a TASK of the same round_id run
 * the round: an UPDATE frame, then telemetry {"bytes-received":N,"bytes-sent":N,"device-instructions":I,
 * "feature-instructions":F,"round-id":R,"stack-bytes":S,"v":1} (I: the whole round, F: its front end, both board
 * ticks x BOARD_INSTRUCTIONS_PER_TICK, exact under QEMU -icount shift=0 to within a tick; S: the deepest the stack
 * has been since boot, measured by painting the free RAM); a refused round sends
 * {"round-error":"<code>","round-id":R,"v":1}, with "sample-error":"<code>" when a clip was the cause (the feed
 * ended or sent a bad record, a clip of the wrong length, a non-finite sample) or "reason" when the round names
 * numbers (tf_round_refusal_reason: a MODEL too large for this device's RAM, "too-large"); a refused frame sends
 * {"serial-error":"<code>","v":1} (an oversized one with a "reason" giving the limit). The device keeps running
 * after every refusal.
 *
 * RAM (the Nano has 256 KB): the learner's arena (weights + gradients, ~99 KB), θ (~48 KB) and one frame buffer
 * big enough for a MODEL (~50 KB). The MODEL stays where its frame was decoded, the decoder moves to a small
 * buffer (TASK-sized) until the round has run, and the UPDATE is written over the MODEL: tf_round_run reads the
 * MODEL completely (tfw_read_model) before it writes a byte of the UPDATE (encode, at the end). A second large
 * frame while a MODEL is held (a newer MODEL: the TASK of the held one was lost) does not fit the small buffer: it
 * is refused as "oversized" and the held MODEL dropped, so the next round starts clean. A TASK of another round
 * than the held MODEL drops the MODEL too. No STEP_SIZES are taken: step sizes are the sine regressor's (the
 * round refuses them for a classifier, as run_task does), so a STEP_SIZES frame is one such large frame.
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "board_config.h"
#include "device_config.h"
#include "mfcc.h"
#include "round.h"
#include "sample_source.h"
#include "serial_link.h"

#ifndef TF_MFCC_HAS_FEATURES
#error "keywords_firmware.c needs mfcc_tables.h with the task's feature scaler (edge.firmware.mfcc_tables, scaler=)"
#endif
#ifndef DEVICE_MAX_MODEL
#define DEVICE_MAX_MODEL 51200u /* the 120-64-64-4 classifier's MODEL: 48,852 B whole, 47,756 B without w2, b2 */
#endif
#ifndef DEVICE_REPLAY_FLOATS
#define DEVICE_REPLAY_FLOATS (32u * (TF_MFCC_NUM_FEATURES + 1u)) /* probe + replayed shots: 32 samples held */
#endif
#define N_IN TF_MFCC_NUM_FEATURES
#define MAX_FRAMES ((N_IN / TF_MFCC_NUM_MFCC) * TF_MFCC_POOL + TF_MFCC_POOL - 1u) /* a partial last pool is dropped */

/* frames of any topic while no MODEL is held; then the held MODEL; then the UPDATE written over it */
static uint8_t big_buf[SL_RAW_SIZE(DEVICE_MAX_MODEL)] __attribute__((aligned(4)));
static uint8_t small_buf[SL_RAW_SIZE(TF_TASK_MAX_BYTES)] __attribute__((aligned(4))); /* frames while one is held */
static char task_buf[TF_TASK_MAX_BYTES];
static float arena[ARENA_FLOATS];
static float theta[N_PARAMS];
static float replay[DEVICE_REPLAY_FLOATS];
static float frames[MAX_FRAMES * TF_MFCC_NUM_MFCC];
static uint16_t tx_sequence;
static uint32_t round_start, round_ticks, feature_ticks;
static const char *sample_error; /* why the last clip was refused, for the round's telemetry */

/* The stack's high-water mark: RAM between .bss and the stack is painted at boot, and after each round the deepest
 * word the stack changed is found, so the telemetry says how much of the room left above .bss + .data it needed. */
extern uint32_t __bss_end__, __StackTop;
#define STACK_PAINT 0x5AC3A55Au

static void paint_stack(void) {
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &__bss_end__; p < sp - 64; ++p) *p = STACK_PAINT; /* 256 B below sp: this call's own frame */
}

static uint32_t stack_bytes(void) {
    const uint32_t *p = &__bss_end__;
    while (p < &__StackTop && *p == STACK_PAINT) ++p;
    return (uint32_t)((uintptr_t)&__StackTop - (uintptr_t)p);
}

static void uart_sink(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    board_uart_write(data, len);
}

static void send(uint8_t topic, const void *payload, size_t len) {
    sl_write_frame(uart_sink, NULL, topic, tx_sequence++, (const uint8_t *)payload, len);
}

static void send_text(uint8_t topic, const char *text) { send(topic, text, strlen(text)); }

typedef struct {
    size_t frames;
    int mfcc_error; /* TF_MFCC_NON_FINITE or TF_MFCC_NO_ROOM from the stream, 0 if none */
} clip_t;

/* A chunk of the clip through the MFCC stream: its completed frames appended to `frames`. */
static int consume(void *ctx, const float *samples, size_t n) {
    clip_t *c = (clip_t *)ctx;
    int got = tf_mfcc_stream_push(samples, n, frames + c->frames * TF_MFCC_NUM_MFCC, MAX_FRAMES - c->frames);
    if (got < 0) {
        c->mfcc_error = got;
        return 1;
    }
    c->frames += (size_t)got;
    return 0;
}

/* round.h's sample callback: the next clip from the sample source, as keyword_features(clip) and its label. */
static int sensor(void *ctx, float *x, float *y) {
    (void)ctx;
    uint32_t start = board_ticks();
    clip_t clip = {0, 0};
    int32_t label;
    uint32_t n;
    tf_mfcc_stream_reset();
    int rc = ss_next_clip(consume, &clip, &label, &n);
    int features = rc == SS_OK ? tf_mfcc_features(frames, clip.frames, TF_MFCC_POOL, TF_MFCC_FEATURE_MEAN,
                                                  TF_MFCC_FEATURE_SPREAD, x, N_IN)
                               : 0;
    feature_ticks += board_ticks() - start;
    if (rc == SS_REFUSED) {
        sample_error = clip.mfcc_error == TF_MFCC_NON_FINITE ? "non-finite" : "clip-too-long";
        return 1;
    }
    if (rc != SS_OK) {
        sample_error = ss_code(rc);
        return 1;
    }
    if (features != (int)N_IN) { /* fewer frames than the MLP's inputs need (or more: NO_ROOM) */
        sample_error = features < (int)N_IN && features >= 0 ? "clip-too-short" : "clip-too-long";
        return 1;
    }
    y[0] = (float)label; /* the round refuses a label that is not one of the model's classes ("bad-label") */
    return 0;
}

static void costs(void *ctx, const tf_round_report *r, float *time_s, float *energy_j) {
    (void)ctx;
    round_ticks = board_ticks() - round_start;
    double compute = (double)round_ticks * BOARD_INSTRUCTIONS_PER_TICK / PROFILE_CLOCK_HZ;
    double tx = 8.0 * r->bytes_sent / PROFILE_RADIO_BPS, rx = 8.0 * r->bytes_received / PROFILE_RADIO_BPS;
    *time_s = (float)(compute + tx + rx);
    *energy_j = (float)(PROFILE_SUPPLY_V * (PROFILE_ACTIVE_A * compute + PROFILE_TX_A * tx + PROFILE_RX_A * rx));
}

static uint32_t round_of(const uint8_t *payload, size_t len) {
    uint32_t r = 0;
    if (len >= 16) memcpy(&r, payload + 12, 4);
    return r;
}

int main(void) {
    static const uint32_t sizes[N_LAYERS + 1] = SIZES;
    char text[320];
    tf_mlp m;
    if (sizes[0] != N_IN || tf_mlp_init(&m, N_LAYERS, sizes, arena, ARENA_FLOATS) != TF_MLP_OK) {
        board_debug("keywords_firmware: the MLP does not fit its arena or the front end's features\n");
        return 3;
    }
    memcpy(m.params, LOCAL_INIT, sizeof LOCAL_INIT);
    paint_stack();
    tf_device dev = {&m, LOCAL_INIT, theta, replay, DEVICE_REPLAY_FLOATS, DEVICE_ID, sensor, NULL, costs, NULL, 1};

    board_uart_putc(0);
    send_text(SL_TOPIC_STATUS, "online");
    send_text(SL_TOPIC_ANNOUNCE, "{\"id\":\"" DEVICE_ID "\",\"title\":\"TinyFleet keywords MLP firmware\"}");
    sl_decoder_t dec;
    sl_decoder_init(&dec, big_buf, sizeof big_buf, SL_ACCEPT_HOST_TO_DEVICE);
    const uint8_t *model = NULL; /* the held MODEL, in big_buf */
    size_t model_len = 0, task_len = 0;
    for (;;) {
        sl_frame_t f;
        sl_result_t res = sl_decoder_push(&dec, board_uart_getc(), &f);
        if (res == SL_PENDING) continue;
        if (res != SL_FRAME) {
            if (res == SL_ERR_OVERSIZED && model) { /* a large frame while a MODEL is held: drop the MODEL */
                snprintf(text, sizeof text,
                         "{\"reason\":\"a frame's payload may be %lu B while a MODEL waits for its TASK; the MODEL is "
                         "dropped\",\"serial-error\":\"%s\",\"v\":1}",
                         (unsigned long)(sizeof small_buf - SL_RAW_SIZE(0)), sl_result_code(res));
                model = NULL;
                model_len = 0;
                sl_decoder_init(&dec, big_buf, sizeof big_buf, SL_ACCEPT_HOST_TO_DEVICE);
            } else if (res == SL_ERR_OVERSIZED) { /* a frame longer than the receive buffer: say how long one may be */
                snprintf(text, sizeof text,
                         "{\"reason\":\"a frame's payload may be %lu B at most on this device\",\"serial-error\":\"%s\",\"v\":1}",
                         (unsigned long)(sizeof big_buf - SL_RAW_SIZE(0)), sl_result_code(res));
            } else {
                snprintf(text, sizeof text, "{\"serial-error\":\"%s\",\"v\":1}", sl_result_code(res));
            }
            send_text(SL_TOPIC_TELEMETRY, text);
            continue;
        }
        if (f.topic == SL_TOPIC_MODEL) {
            if (f.payload != big_buf + SL_HEADER_BYTES) memcpy(big_buf + SL_HEADER_BYTES, f.payload, f.len); /* small */
            model = big_buf + SL_HEADER_BYTES;
            model_len = f.len;
            sl_decoder_init(&dec, small_buf, sizeof small_buf, SL_ACCEPT_HOST_TO_DEVICE);
        } else if (f.topic == SL_TOPIC_TASK && f.len <= sizeof task_buf) {
            memcpy(task_buf, f.payload, f.len);
            task_len = f.len;
        } else {
            snprintf(text, sizeof text, "{\"reason\":\"TASK of %lu B, device holds %lu B\",\"serial-error\":\"oversized\",\"v\":1}",
                     (unsigned long)f.len, (unsigned long)sizeof task_buf);
            send_text(SL_TOPIC_TELEMETRY, text);
            continue;
        }
        if (!task_len || !model) continue;
        tf_task_t task;
        tf_task_status_t ts = tf_task_parse(task_buf, task_len, tf_mlp_tensor_count(&m), &task);
        if (ts == TF_TASK_OK && task.round_id != round_of(model, model_len)) {
            if (f.topic == SL_TOPIC_TASK) { /* a TASK of another round: the held MODEL is stale, wait for its own */
                model = NULL;
                model_len = 0;
                sl_decoder_init(&dec, big_buf, sizeof big_buf, SL_ACCEPT_HOST_TO_DEVICE);
            }
            continue; /* a MODEL of another round than the held TASK: wait for that round's TASK */
        }
        tf_round_report report;
        const char *code;
        size_t len;
        sample_error = NULL;
        feature_ticks = 0;
        round_start = board_ticks();
        /* the UPDATE goes over the MODEL (see the top): big_buf's room is the UPDATE's */
        int refused = tf_round_run(&dev, task_buf, task_len, model, model_len, sizeof big_buf - SL_MIN_RAW, big_buf,
                                   sizeof big_buf, &len, &task, &report, &code);
        uint32_t round_id = ts == TF_TASK_OK ? task.round_id : round_of(model, model_len);
        if (!refused) {
            send(SL_TOPIC_UPDATE, big_buf, len);
            snprintf(text, sizeof text,
                     "{\"bytes-received\":%lu,\"bytes-sent\":%lu,\"device-instructions\":%lu,"
                     "\"feature-instructions\":%lu,\"round-id\":%lu,\"stack-bytes\":%lu,\"v\":1}",
                     (unsigned long)report.bytes_received, (unsigned long)report.bytes_sent,
                     (unsigned long)round_ticks * BOARD_INSTRUCTIONS_PER_TICK,
                     (unsigned long)feature_ticks * BOARD_INSTRUCTIONS_PER_TICK, (unsigned long)round_id,
                     (unsigned long)stack_bytes());
        } else if (sample_error) {
            snprintf(text, sizeof text, "{\"round-error\":\"%s\",\"round-id\":%lu,\"sample-error\":\"%s\",\"v\":1}", code,
                     (unsigned long)round_id, sample_error);
        } else if (*tf_round_refusal_reason()) { /* the numbers behind it: "model ... needs N B of RAM ..., device has M B" */
            snprintf(text, sizeof text, "{\"reason\":\"%s\",\"round-error\":\"%s\",\"round-id\":%lu,\"v\":1}",
                     tf_round_refusal_reason(), code, (unsigned long)round_id);
        } else {
            snprintf(text, sizeof text, "{\"round-error\":\"%s\",\"round-id\":%lu,\"v\":1}", code, (unsigned long)round_id);
        }
        send_text(SL_TOPIC_TELEMETRY, text);
        task_len = model_len = 0;
        model = NULL;
        sl_decoder_init(&dec, big_buf, sizeof big_buf, SL_ACCEPT_HOST_TO_DEVICE);
    }
}
