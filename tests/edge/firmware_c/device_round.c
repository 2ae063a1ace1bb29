/* Test main: whole device rounds (edge/firmware/device/round.c) on the TASK/MODEL pairs the test generated into
 * rounds.h, every round fed the same sample sequence SAMPLES from its start; prints each round's code, UPDATE
 * bytes and samples consumed, for Python to compare with firmware_sim.mqtt_round.run_task. Under QEMU it also
 * counts each round's ticks (x BOARD_INSTRUCTIONS_PER_TICK with -icount shift=0). With STEP_SIZE_ROUNDS (rounds.h),
 * each round also has a STEP_SIZES payload and runs tf_round_run_step_sizes; its HYPERGRADIENT is printed too. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "round.h"
#include "rounds.h" /* N_LAYERS, SIZES, N_PARAMS, LOCAL_INIT[], SAMPLES[], N_SAMPLES, DEVICE_ID, ROUNDS[N_ROUNDS] */

#ifndef N_IN /* floats of x and of y per sample in SAMPLES; CLASSIFY: y is one class label */
#define N_IN 1
#endif
#ifndef N_Y
#define N_Y 1
#endif
#ifdef CLASSIFY
#define IS_CLASSIFIER 1
#else
#define IS_CLASSIFIER 0
#endif

#ifdef __arm__
#include "board.h"
#include "board_config.h"
#define TICKS() board_ticks()
#else
#define TICKS() 0u
#endif

static float arena[2 * N_PARAMS + 512];
#ifdef STEP_SIZE_ROUNDS /* ROUNDS[i] also has step_sizes, step_sizes_len (NULL, 0: none came) */
static float scales[N_PARAMS];
static float step_scratch[STEP_SCRATCH_FLOATS];
static uint8_t hyper_buf[TFW_DEFAULT_MAX_PAYLOAD];
#endif
static float theta[N_PARAMS];
static float replay[(N_IN + N_Y) * 256];
static uint8_t update[TFW_DEFAULT_MAX_PAYLOAD];

typedef struct {
    uint32_t next;
} stream_t;

static int next_sample(void *ctx, float *x, float *y) {
    stream_t *s = ctx;
    if (s->next >= N_SAMPLES) return 1;
    memcpy(x, &SAMPLES[(N_IN + N_Y) * s->next], N_IN * sizeof(float));
    memcpy(y, &SAMPLES[(N_IN + N_Y) * s->next + N_IN], N_Y * sizeof(float));
    s->next++;
    return 0;
}

/* the test's books: the time and energy Python's device profile gave the same round */
static uint32_t booked_sent, booked_received;

static void costs(void *ctx, const tf_round_report *r, float *time_s, float *energy_j) {
    const round_t *rc = ctx;
    booked_sent = r->bytes_sent;
    booked_received = r->bytes_received;
    *time_s = rc->time_s;
    *energy_j = rc->energy_j;
}

int main(void) {
    static const uint32_t sizes[N_LAYERS + 1] = SIZES;
    tf_mlp m;
    if (tf_mlp_init(&m, N_LAYERS, sizes, arena, sizeof arena / sizeof arena[0]) != TF_MLP_OK) return 2;
    for (unsigned i = 0; i < N_ROUNDS; i++) {
        memcpy(m.params, LOCAL_INIT, sizeof LOCAL_INIT); /* the firmware boots with its own weights */
        stream_t stream = {0};
        tf_device d = {&m, LOCAL_INIT, theta, replay, sizeof replay / sizeof replay[0], DEVICE_ID,
                       next_sample, &stream, costs, (void *)&ROUNDS[i], IS_CLASSIFIER};
        tf_task_t task;
        tf_round_report report;
        const char *code;
        size_t len;
        booked_sent = booked_received = 0;
        uint32_t t0 = TICKS();
#ifdef STEP_SIZE_ROUNDS
        tf_step_size_memory memory = {scales, step_scratch, sizeof step_scratch / sizeof step_scratch[0]};
        size_t hyper_len = 0;
        tf_round_run_step_sizes(&d, &memory, (const char *)ROUNDS[i].task, ROUNDS[i].task_len, ROUNDS[i].model,
                                ROUNDS[i].model_len, ROUNDS[i].step_sizes, ROUNDS[i].step_sizes_len,
                                TFW_DEFAULT_MAX_PAYLOAD, update, sizeof update, &len, hyper_buf, sizeof hyper_buf,
                                &hyper_len, &task, &report, &code);
#else
        tf_round_run(&d, (const char *)ROUNDS[i].task, ROUNDS[i].task_len, ROUNDS[i].model, ROUNDS[i].model_len,
                     TFW_DEFAULT_MAX_PAYLOAD, update, sizeof update, &len, &task, &report, &code);
#endif
        uint32_t t1 = TICKS();
        printf("round %u %s consumed %lu steps %lu ticks %lu booked %lu %lu update ", i, code, (unsigned long)stream.next,
               (unsigned long)(len ? report.steps : 0), (unsigned long)(t1 - t0), (unsigned long)booked_sent,
               (unsigned long)booked_received);
        for (size_t k = 0; k < len; k++) printf("%02x", update[k]);
        printf("\n");
#ifdef STEP_SIZE_ROUNDS
        printf("hypergradient %u dropped %d ", i, len ? report.hypergradient_dropped : 0);
        for (size_t k = 0; k < hyper_len; k++) printf("%02x", hyper_buf[k]);
        printf("\n");
#endif
    }
    printf("done\n");
    return 0;
}
