/* sine_firmware.c - a device that joins the federation over its UART: the 1-40-40-1 sine MLP, one round per
 * TASK + MODEL of the same round_id, replies an UPDATE (docs/protocol.md §1-3 payloads in §7 serial frames,
 * which firmware_sim/serial_gateway.py carries to and from MQTT).
 *
 * Built by edge.firmware.device.build_sine_firmware(), which generates device_config.h: the device id, the
 * weights the firmware ships with (its local init, where a private part is rebuilt from), its sensor (a
 * recording of the device's samples: QEMU has no sensor; each sample is used once, across rounds) and its
 * profile (clock, supply, currents, radio bit rate: edge/profiles.py, the one home of those figures).
 *
 * On start: 0x00 (flush), status "online", a small announce. Per frame from the host:
 *   model -> kept (the latest one);  task -> kept (the latest one);
 *   both held with the same round_id -> the round (round.h): an update frame, then telemetry
 *     {"bytes-received":N,"bytes-sent":N,"device-instructions":I,"round-id":R,"v":1} (I: the round's
 *     instructions, board ticks x BOARD_INSTRUCTIONS_PER_TICK, exact under QEMU -icount shift=0, to within
 *     one tick); or, if refused, no update and telemetry
 *     {"round-error":"<code>","round-id":R,"v":1}, with "reason" when the round names numbers (a MODEL too
 *     large for this device's RAM: "too-large", "model 1-64-64-1 needs 53,268 B of RAM to train, device has
 *     23,180 B"); either way both are dropped;
 *   a refused frame -> telemetry {"serial-error":"<code>","v":1} (an oversized one with a "reason" giving the
 *     device's limit).
 * Time and energy are the firmware's own books: board ticks as instructions (exact under QEMU -icount
 * shift=0) at one per cycle of the profile's clock, radio time from the profile's bit rate, energy
 * V x (I_active t_compute + I_tx t_tx + I_rx t_rx) as edge.profiles.DeviceProfile.energy_joules.
 * No malloc: every buffer below is static (arm-none-eabi-size reports them).
 */
#include <stdio.h>
#include <string.h>

#include "board.h"
#include "board_config.h"
#include "device_config.h"
#include "round.h"
#include "serial_link.h"

#ifndef DEVICE_MAX_MODEL
#define DEVICE_MAX_MODEL 8192u /* the sine MLP's MODEL is 7,240 bytes */
#endif
#ifndef DEVICE_REPLAY_FLOATS
#define DEVICE_REPLAY_FLOATS 1024u /* (probe + shots) x 2 floats: up to 512 samples held */
#endif

static uint8_t rx_buf[SL_RAW_SIZE(DEVICE_MAX_MODEL > TF_TASK_MAX_BYTES ? DEVICE_MAX_MODEL : TF_TASK_MAX_BYTES)];
static uint8_t model_buf[DEVICE_MAX_MODEL];
static char task_buf[TF_TASK_MAX_BYTES];
static uint8_t update_buf[DEVICE_MAX_MODEL + 256u]; /* a dense UPDATE of the model, its id and metrics */
static float arena[2 * N_PARAMS + 512];
static float theta[N_PARAMS];
static float replay[DEVICE_REPLAY_FLOATS];
static uint16_t tx_sequence;
static uint32_t sensor_next;
static uint32_t round_start, round_ticks;

static void uart_sink(void *ctx, const uint8_t *data, size_t len) {
    (void)ctx;
    board_uart_write(data, len);
}

static void send(uint8_t topic, const void *payload, size_t len) {
    sl_write_frame(uart_sink, NULL, topic, tx_sequence++, (const uint8_t *)payload, len);
}

static void send_text(uint8_t topic, const char *text) { send(topic, text, strlen(text)); }

static int sensor(void *ctx, float *x, float *y) {
    (void)ctx;
    if (sensor_next >= N_SENSOR_SAMPLES) return 1;
    x[0] = SENSOR[2 * sensor_next];
    y[0] = SENSOR[2 * sensor_next + 1];
    sensor_next++;
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

static uint32_t model_round(size_t len) {
    uint32_t r = 0;
    if (len >= 16) memcpy(&r, model_buf + 12, 4);
    return r;
}

int main(void) {
    static const uint32_t sizes[N_LAYERS + 1] = SIZES;
    char text[320];
    tf_mlp m;
    if (tf_mlp_init(&m, N_LAYERS, sizes, arena, sizeof arena / sizeof arena[0]) != TF_MLP_OK) return 2;
    memcpy(m.params, LOCAL_INIT, sizeof LOCAL_INIT);
    tf_device dev = {&m, LOCAL_INIT, theta, replay, DEVICE_REPLAY_FLOATS, DEVICE_ID, sensor, NULL, costs, NULL, 0};

    board_uart_putc(0);
    send_text(SL_TOPIC_STATUS, "online");
    send_text(SL_TOPIC_ANNOUNCE, "{\"id\":\"" DEVICE_ID "\",\"title\":\"TinyFleet sine MLP firmware\"}");
    sl_decoder_t dec;
    sl_decoder_init(&dec, rx_buf, sizeof rx_buf, SL_ACCEPT_HOST_TO_DEVICE);
    size_t model_len = 0, task_len = 0;
    for (;;) {
        sl_frame_t f;
        sl_result_t res = sl_decoder_push(&dec, board_uart_getc(), &f);
        if (res == SL_PENDING) continue;
        if (res != SL_FRAME) {
            if (res == SL_ERR_OVERSIZED) /* a frame longer than the receive buffer: say how long a frame may be */
                snprintf(text, sizeof text,
                         "{\"reason\":\"a frame's payload may be %lu B at most on this device\",\"serial-error\":\"%s\",\"v\":1}",
                         (unsigned long)(sizeof rx_buf - SL_RAW_SIZE(0)), sl_result_code(res));
            else
                snprintf(text, sizeof text, "{\"serial-error\":\"%s\",\"v\":1}", sl_result_code(res));
            send_text(SL_TOPIC_TELEMETRY, text);
            continue;
        }
        if (f.topic == SL_TOPIC_MODEL && f.len <= sizeof model_buf) {
            memcpy(model_buf, f.payload, f.len);
            model_len = f.len;
        } else if (f.topic == SL_TOPIC_TASK && f.len <= sizeof task_buf) {
            memcpy(task_buf, f.payload, f.len);
            task_len = f.len;
        } else {
            snprintf(text, sizeof text, "{\"reason\":\"%s of %lu B, device holds %lu B\",\"serial-error\":\"oversized\",\"v\":1}",
                     f.topic == SL_TOPIC_MODEL ? "MODEL" : "TASK", (unsigned long)f.len,
                     (unsigned long)(f.topic == SL_TOPIC_MODEL ? sizeof model_buf : sizeof task_buf));
            send_text(SL_TOPIC_TELEMETRY, text);
            continue;
        }
        if (!task_len || !model_len) continue;
        tf_task_t task;
        tf_task_status_t ts = tf_task_parse(task_buf, task_len, tf_mlp_tensor_count(&m), &task);
        if (ts == TF_TASK_OK && task.round_id != model_round(model_len)) continue; /* wait for the other half */
        tf_round_report report;
        const char *code;
        size_t len;
        round_start = board_ticks();
        int refused = tf_round_run(&dev, task_buf, task_len, model_buf, model_len, sizeof model_buf, update_buf,
                                   sizeof update_buf, &len, &task, &report, &code);
        if (!refused) {
            send(SL_TOPIC_UPDATE, update_buf, len);
            snprintf(text, sizeof text,
                     "{\"bytes-received\":%lu,\"bytes-sent\":%lu,\"device-instructions\":%lu,\"round-id\":%lu,\"v\":1}",
                     (unsigned long)report.bytes_received, (unsigned long)report.bytes_sent,
                     (unsigned long)round_ticks * BOARD_INSTRUCTIONS_PER_TICK, (unsigned long)task.round_id);
        } else if (*tf_round_refusal_reason()) { /* the numbers behind it: "model ... needs N B of RAM ..., device has M B" */
            snprintf(text, sizeof text, "{\"reason\":\"%s\",\"round-error\":\"%s\",\"round-id\":%lu,\"v\":1}",
                     tf_round_refusal_reason(), code, (unsigned long)(ts == TF_TASK_OK ? task.round_id : model_round(model_len)));
        } else {
            snprintf(text, sizeof text, "{\"round-error\":\"%s\",\"round-id\":%lu,\"v\":1}", code,
                     (unsigned long)(ts == TF_TASK_OK ? task.round_id : model_round(model_len)));
        }
        send_text(SL_TOPIC_TELEMETRY, text);
        task_len = model_len = 0;
    }
}
