/* tinyol_learner.h - TinyOL on the device: a compiled int8 backbone feeding the float TinyOL head.
 *
 * Why a layer of its own: the backbone (edge/compiler output, bit-identical to TFLite Micro) speaks int8,
 * the head (edge/c/tinyol_head.c) learns in float32. This file is the glue between them, and nothing else:
 * quantise a float sample with the backbone's input (scale, zero point), invoke the backbone, dequantise its
 * int8 features, and hand them to the head's forward pass, SGD step or imprint. It is the C twin of
 * edge/tflite_learner.py (FrozenBackbone.feature_vector + BackboneHeadLearner), and does the same float32
 * operations in the same order, so its features equal numpy's to the bit:
 *
 *     quantise:   v = x / s_in;  v = trunc(v + copysign(0.5, v));  v += z_in;  clamp to [-128, 127]
 *     dequantise: f = ((float)q - (float)z_out) * s_out
 *
 * (trunc(v +- 0.5) is what FrozenBackbone does; it equals TFLite's std::round except where v + 0.5 rounds up
 * in float32, i.e. |v| within half an ulp below k + 0.5.)
 *
 * A device loop does what TinyOL does per labelled sample: tinyol_learner_infer (the prediction, which
 * leaves the features of x in l->features), then tinyol_learner_learn or tinyol_learner_imprint on those
 * same features, so the update never runs the backbone again.
 *
 * A raw sample first goes through the task's input scaling, if the learner has one (the InputScaler a task
 * model ships, server/models/input_scaler.py): column c = i % scaler_columns becomes (f(x) - mean[c]) / scale[c],
 * f = log1p(max(x, 0)) on the columns set in scaler_log_mask, identity elsewhere; the same float32 operations
 * as numpy except log1pf, which is newlib's (numpy's may differ in the last bit, so a log column's int8 value
 * can differ by one where it sits on a rounding boundary).
 *
 * The caller owns every buffer (static arrays next to the backbone's own static arena); nothing allocates.
 */
#ifndef TINYFLEET_TINYOL_LEARNER_H
#define TINYFLEET_TINYOL_LEARNER_H

#include <stdint.h>

#include "tinyol_head.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The backbone failed (its invoke returned non-zero); no feature was written. */
#define TINYOL_BACKBONE_FAILED ((tinyol_status_t)16)
/* learn/imprint called before any tinyol_learner_features / _infer succeeded. */
#define TINYOL_NO_FEATURES ((tinyol_status_t)17)

/* The compiled backbone's {prefix}_invoke: int8 input in, int8 features out; 0 on success. */
typedef int (*tinyol_backbone_invoke_t)(const void *input, void *output);

typedef struct {
    tinyol_backbone_invoke_t invoke;
    uint32_t n_inputs;   /* elements of the backbone's input */
    uint32_t n_features; /* elements of its output = the head's n_features */
    float input_scale;
    int32_t input_zero_point;
    float output_scale;
    int32_t output_zero_point;
    int8_t *q_input;  /* n_inputs: the quantised sample */
    int8_t *q_output; /* n_features: the backbone's int8 features */
    float *features;  /* n_features: the dequantised features the head reads (a pointer: a caller may point it
                       * at features it computed earlier) */
    int32_t has_features; /* set by a successful tinyol_learner_features; learn/imprint refuse without it */
    tinyol_head_t head;   /* its n_features must equal the backbone's */
    uint32_t *counts;     /* n_outputs imprint counters (tinyol_imprint_one), or NULL if the device never imprints */
    uint32_t scaler_columns;     /* 0: x is already scaled; else the scaler's columns (n_inputs a multiple of it) */
    const float *scaler_mean;    /* scaler_columns floats */
    const float *scaler_scale;   /* scaler_columns floats, > 0 */
    uint32_t scaler_log_mask;    /* bit c: column c < 32 is log1p(max(x, 0)) before the affine map */
} tinyol_learner_t;

/* Scale (if the learner has a scaler) and quantise x (n_inputs floats), run the backbone, dequantise into
 * l->features. x holding NaN/Inf, or scaling to NaN/Inf, is refused (TINYOL_NONFINITE_SAMPLE) before the
 * backbone runs; finite values beyond the int8 range saturate, as in TFLite. A scaler that does not divide
 * n_inputs, or a scale <= 0, is TINYOL_BAD_ARGUMENT. On any error l->has_features is 0. */
tinyol_status_t tinyol_learner_features(tinyol_learner_t *l, const float *x);

/* One inference: tinyol_learner_features then the head's logits (n_outputs floats) into `logits`. */
tinyol_status_t tinyol_learner_infer(tinyol_learner_t *l, const float *x, float *logits);

/* One TinyOL SGD step of the head on l->features (tinyol_learn_one: label for a classifier, target for a
 * regressor); the backbone does not run. */
tinyol_status_t tinyol_learner_learn(tinyol_learner_t *l, int32_t label, const float *target, float learning_rate,
                                     float *loss);

/* One imprint of class `label` on l->features (tinyol_imprint_one with l->counts); the backbone does not run. */
tinyol_status_t tinyol_learner_imprint(tinyol_learner_t *l, int32_t label, float min_rate, float *loss);

#ifdef __cplusplus
}
#endif

#endif
