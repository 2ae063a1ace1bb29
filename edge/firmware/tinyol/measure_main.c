/* measure_main.c - the TinyOL measurement image: a compiled backbone + the head on embedded samples.
 *
 * Why one program for tests and benchmark: the exactness tests (tests/edge/test_firmware_backbone_*.py) and
 * the instruction counts (bench/firmware.py) must be about the very same code and bytes; the helper in
 * edge/firmware/tinyol/__init__.py writes "vectors.h" (the samples, head, quantisation, counts) and the
 * backbone's C, builds this file with them and parses what it prints. Output lines (hex of the raw bytes,
 * so the host compares bits):
 *
 *     infer <i> <status>   every sample; if the status is 0, then:
 *     q <i> <hex>          its quantised input          feat <i> <hex>   the backbone's int8 features
 *     logits <i> <hex>     the head's logits (float32)
 *     sgd <i> <status> <hex loss>       imprint <i> <status> <hex loss>
 *     params sgd|imprint <hex>          counts <c0> <c1> ...
 *     ticks <name> <ticks> <repeats>    (TIMING builds: board timer around `repeats` calls)
 *
 * Phase 1 infers every sample (input scaling if the case has a scaler, quantise, backbone, head forward). Phase 2 takes one SGD step per sample from the
 * initial head (features of each sample, then the step on them). Phase 3 imprints every sample into the
 * initial head (classifiers only). The timing phase then counts, each over its own loop:
 *     infer    = quantise + backbone + dequantise + head logits          (tinyol_learner_infer)
 *     backbone = quantise + backbone + dequantise                          (tinyol_learner_features)
 *     head_forward = the head's logits alone                               (tinyol_predict)
 *     learn    = one SGD step on features already computed (tinyol_learner_learn = tinyol_learn_one, which
 *                recomputes the head's logits itself, then softmax/residual, gradient, rank-1 update and
 *                the finiteness check of the new weights; the backbone does not run)
 *     imprint  = one imprint on features already computed (tinyol_imprint_one: logits for the loss, the
 *                class mean, its squared norm)
 */
#include <stdio.h>
#include <string.h>

#include "backbone.h"
#include "board.h"
#include "board_config.h"
#include "tinyol_learner.h"
#include "vectors.h"

#define NP ((N_FEATURES + 1) * N_OUTPUTS)

static int8_t q_in[N_INPUTS], q_out[N_FEATURES];
static float features[N_FEATURES], params[NP], spare[NP], scratch[N_OUTPUTS], logits[N_OUTPUTS];
static uint32_t counts[N_OUTPUTS];
#if TIMING_STEPS > 0
static float cached[N_SAMPLES][N_FEATURES];
#endif

static void hex(const char *tag, int i, const void *data, unsigned n) {
    const unsigned char *b = (const unsigned char *)data;
    if (i >= 0) printf("%s %d ", tag, i); else printf("%s ", tag);
    for (unsigned k = 0; k < n; ++k) printf("%02x", b[k]);
    printf("\n");
}

static void reset(tinyol_learner_t *l) {
    memcpy(params, HEAD_INIT, sizeof params);
    memset(counts, 0, sizeof counts);
    l->head.params = params;
    l->head.spare = spare;
    l->features = features;
    l->has_features = 0;
}

static const float *sample(int i) { return XS + (size_t)i * N_INPUTS; }
static const float *target(int i) { return TARGETS + (size_t)i * N_OUTPUTS; }

int main(void) {
    tinyol_learner_t l = {backbone_invoke, N_INPUTS, N_FEATURES, IN_SCALE, IN_ZERO_POINT, OUT_SCALE, OUT_ZERO_POINT,
                          q_in, q_out, features, 0,
                          {N_FEATURES, N_OUTPUTS, TASK_KIND, params, spare, scratch, 0}, counts,
                          SCALER_COLUMNS, SCALER_MEAN, SCALER_SCALE, SCALER_LOG_MASK};
    reset(&l);
    for (int i = 0; i < N_SAMPLES; ++i) {
        tinyol_status_t s = tinyol_learner_infer(&l, sample(i), logits);
        printf("infer %d %d\n", i, (int)s);
        if (s != TINYOL_OK) continue; /* a refused sample (NaN): nothing else printed for it */
        hex("q", i, q_in, sizeof q_in);
        hex("feat", i, q_out, sizeof q_out);
        hex("logits", i, logits, sizeof logits);
    }
    for (int i = 0; i < N_SAMPLES; ++i) {
        float loss = 0.0f;
        tinyol_status_t s = tinyol_learner_features(&l, sample(i));
        if (s == TINYOL_OK) s = tinyol_learner_learn(&l, LABELS[i], target(i), LEARNING_RATE, &loss);
        printf("sgd %d %d ", i, (int)s);
        hex("", -1, &loss, sizeof loss); /* "sgd <i> <status>  <hex loss>" */
    }
    hex("params sgd", -1, l.head.params, sizeof params);
    reset(&l);
    if (TASK_KIND == TINYOL_CLASSIFICATION) {
        for (int i = 0; i < N_SAMPLES; ++i) {
            float loss = 0.0f;
            tinyol_status_t s = tinyol_learner_features(&l, sample(i));
            if (s == TINYOL_OK) s = tinyol_learner_imprint(&l, LABELS[i], MIN_RATE, &loss);
            printf("imprint %d %d ", i, (int)s);
            hex("", -1, &loss, sizeof loss);
        }
        hex("params imprint", -1, l.head.params, sizeof params);
        printf("counts");
        for (int j = 0; j < N_OUTPUTS; ++j) printf(" %lu", (unsigned long)counts[j]);
        printf("\n");
    }
#if TIMING_STEPS > 0
    reset(&l);
    uint32_t t0 = board_ticks();
    for (int r = 0; r < INFER_REPEATS; ++r)
        if (tinyol_learner_infer(&l, sample(r % N_SAMPLES), logits) != TINYOL_OK) return 3;
    uint32_t t1 = board_ticks();
    printf("ticks infer %lu %d\n", (unsigned long)(t1 - t0), INFER_REPEATS);
    t0 = board_ticks();
    for (int r = 0; r < INFER_REPEATS; ++r)
        if (tinyol_learner_features(&l, sample(r % N_SAMPLES)) != TINYOL_OK) return 3;
    t1 = board_ticks();
    printf("ticks backbone %lu %d\n", (unsigned long)(t1 - t0), INFER_REPEATS);
    for (int i = 0; i < N_SAMPLES; ++i) {
        if (tinyol_learner_features(&l, sample(i)) != TINYOL_OK) return 3;
        memcpy(cached[i], features, sizeof features);
    }
    t0 = board_ticks();
    for (int r = 0; r < TIMING_STEPS; ++r)
        if (tinyol_predict(&l.head, cached[r % N_SAMPLES], logits) != TINYOL_OK) return 4;
    t1 = board_ticks();
    printf("ticks head_forward %lu %d\n", (unsigned long)(t1 - t0), TIMING_STEPS);
    t0 = board_ticks();
    for (int r = 0; r < TIMING_STEPS; ++r) {
        l.features = cached[r % N_SAMPLES];
        if (tinyol_learner_learn(&l, LABELS[r % N_SAMPLES], target(r % N_SAMPLES), LEARNING_RATE, 0) != TINYOL_OK)
            return 5;
    }
    t1 = board_ticks();
    printf("ticks learn %lu %d\n", (unsigned long)(t1 - t0), TIMING_STEPS);
    if (TASK_KIND == TINYOL_CLASSIFICATION) {
        reset(&l);
        l.has_features = 1;
        t0 = board_ticks();
        for (int r = 0; r < TIMING_STEPS; ++r) {
            l.features = cached[r % N_SAMPLES];
            if (tinyol_learner_imprint(&l, LABELS[r % N_SAMPLES], MIN_RATE, 0) != TINYOL_OK) return 6;
        }
        t1 = board_ticks();
        printf("ticks imprint %lu %d\n", (unsigned long)(t1 - t0), TIMING_STEPS);
    }
    printf("per_tick %u\n", (unsigned)BOARD_INSTRUCTIONS_PER_TICK);
#endif
    printf("done\n");
    return 0;
}
