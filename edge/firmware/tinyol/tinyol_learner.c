/* tinyol_learner.c - the compiled int8 backbone feeding the TinyOL head; see tinyol_learner.h for why and how. */
#include "tinyol_learner.h"

#include <math.h>
#include <stddef.h>

static int valid(const tinyol_learner_t *l) {
    return l && l->invoke && l->q_input && l->q_output && l->features && l->n_inputs && l->n_features &&
           l->head.n_features == l->n_features;
}

tinyol_status_t tinyol_learner_features(tinyol_learner_t *l, const float *x) {
    if (!valid(l) || !x) return TINYOL_BAD_ARGUMENT;
    l->has_features = 0;
    const float scale = l->input_scale, zero = (float)l->input_zero_point;
    if (!(scale > 0.0f) || !isfinite(scale)) return TINYOL_BAD_ARGUMENT;
    const uint32_t columns = l->scaler_columns;
    if (columns && (!l->scaler_mean || !l->scaler_scale || l->n_inputs % columns)) return TINYOL_BAD_ARGUMENT;
    for (uint32_t c = 0; c < columns; ++c)
        if (!(l->scaler_scale[c] > 0.0f) || !isfinite(l->scaler_mean[c])) return TINYOL_BAD_ARGUMENT;
    for (uint32_t i = 0; i < l->n_inputs; ++i)
        if (!isfinite(x[i])) return TINYOL_NONFINITE_SAMPLE;
    for (uint32_t i = 0, c = 0; i < l->n_inputs; ++i) {
        float v = x[i];
        if (columns) { /* InputScaler: (f(x) - mean) / scale, f = log1p(max(x, 0)) on the log columns */
            if (c < 32 && (l->scaler_log_mask >> c & 1u)) v = log1pf(v > 0.0f ? v : 0.0f);
            v = (v - l->scaler_mean[c]) / l->scaler_scale[c];
            if (!isfinite(v)) return TINYOL_NONFINITE_SAMPLE; /* a tiny scale can overflow a finite sample */
            if (++c == columns) c = 0;
        }
        v = v / scale;
        v = truncf(v + copysignf(0.5f, v)); /* round half away from zero, as FrozenBackbone.feature_vector */
        v += zero;
        if (v > 127.0f) v = 127.0f;
        if (v < -128.0f) v = -128.0f;
        l->q_input[i] = (int8_t)v;
    }
    if (l->invoke(l->q_input, l->q_output) != 0) return TINYOL_BACKBONE_FAILED;
    const float out_scale = l->output_scale, out_zero = (float)l->output_zero_point;
    for (uint32_t k = 0; k < l->n_features; ++k) l->features[k] = ((float)l->q_output[k] - out_zero) * out_scale;
    l->has_features = 1;
    return TINYOL_OK;
}

tinyol_status_t tinyol_learner_infer(tinyol_learner_t *l, const float *x, float *logits) {
    if (!logits) return TINYOL_BAD_ARGUMENT;
    const tinyol_status_t status = tinyol_learner_features(l, x);
    if (status != TINYOL_OK) return status;
    return tinyol_predict(&l->head, l->features, logits);
}

tinyol_status_t tinyol_learner_learn(tinyol_learner_t *l, int32_t label, const float *target, float learning_rate,
                                     float *loss) {
    if (!valid(l)) return TINYOL_BAD_ARGUMENT;
    if (!l->has_features) return TINYOL_NO_FEATURES;
    return tinyol_learn_one(&l->head, l->features, label, target, learning_rate, loss);
}

tinyol_status_t tinyol_learner_imprint(tinyol_learner_t *l, int32_t label, float min_rate, float *loss) {
    if (!valid(l) || !l->counts) return TINYOL_BAD_ARGUMENT;
    if (!l->has_features) return TINYOL_NO_FEATURES;
    return tinyol_imprint_one(&l->head, l->counts, l->features, label, min_rate, loss);
}
