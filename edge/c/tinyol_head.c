/* TinyOL head update as firmware C; see tinyol_head.h for the contract and edge/online_head.py for
 * the Python reference it is tested equal to (tests/edge/test_c_head.py). */
#if !defined(TINYOL_NO_TIMING) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 199309L /* clock_gettime, for tinyol_time_steps only */
#endif

#include "tinyol_head.h"

#include <math.h>
#include <stddef.h>

#define TINYOL_MIN_PROBABILITY 1e-12f /* as _MIN_PROBABILITY in online_head.py: one confident mistake stays finite */

static int all_finite(const float *v, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* Sum of squares with four partial sums (see the logits below for why). */
static float squared_norm(const float *v, uint32_t n) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += v[i] * v[i];
        s1 += v[i + 1] * v[i + 1];
        s2 += v[i + 2] * v[i + 2];
        s3 += v[i + 3] * v[i + 3];
    }
    for (; i < n; ++i) s0 += v[i] * v[i];
    return (s0 + s1) + (s2 + s3);
}

/* logits z = [x, 1] · P, one output at a time with four partial sums: independent chains keep a
 * pipelined FPU busy (a single running sum would wait on each add) */
static void logits(const tinyol_head_t *h, const float *x, float *z) {
    const uint32_t nf = h->n_features, no = h->n_outputs;
    const float *p = h->params;
    const float *bias = p + (size_t)nf * no;
    for (uint32_t j = 0; j < no; ++j) {
        float s0 = bias[j], s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        const float *column = p + j;
        uint32_t i = 0;
        for (; i + 4 <= nf; i += 4) {
            s0 += x[i] * column[(size_t)i * no];
            s1 += x[i + 1] * column[(size_t)(i + 1) * no];
            s2 += x[i + 2] * column[(size_t)(i + 2) * no];
            s3 += x[i + 3] * column[(size_t)(i + 3) * no];
        }
        for (; i < nf; ++i) s0 += x[i] * column[(size_t)i * no];
        z[j] = (s0 + s1) + (s2 + s3);
    }
}

/* Softmax cross-entropy of class `label` from the logits in z (stable: shifted by the max), leaving
 * exp(z - max) in z; writes their sum and the loss. Non-finite logits are refused: the weights are always
 * finite, so they mean a bad sample or an overflow. Here the summation order is this file's, fixed on every
 * CPU; the numpy head, whose BLAS order varies, refuses instead by the order-free bound
 * ||[x, 1]||·||[W; b]||_F > 1e38 (online_head.LOGIT_BOUND), so within a factor of ~3 of float32's range it may
 * refuse a step this code takes. */
static tinyol_status_t cross_entropy(const float *x, uint32_t nf, float *z, uint32_t no, int32_t label, float *total,
                                     float *step_loss) {
    if (!all_finite(z, no)) return all_finite(x, nf) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;
    float top = z[0];
    for (uint32_t j = 1; j < no; ++j)
        if (z[j] > top) top = z[j];
    float sum = 0.0f; /* >= 1: the largest term is exp(0) */
    for (uint32_t j = 0; j < no; ++j) {
        z[j] = expf(z[j] - top);
        sum += z[j];
    }
    const float probability = z[label] / sum;
    *step_loss = -logf(probability > TINYOL_MIN_PROBABILITY ? probability : TINYOL_MIN_PROBABILITY);
    *total = sum;
    return TINYOL_OK;
}

tinyol_status_t tinyol_learn_one(tinyol_head_t *h, const float *x, int32_t label, const float *target,
                                 float learning_rate, float *loss) {
    if (!h || !x || !h->params || !h->spare || !h->scratch || h->n_features == 0 || h->n_outputs == 0)
        return TINYOL_BAD_ARGUMENT;
    if (!isfinite(learning_rate)) return TINYOL_BAD_ARGUMENT;
    const uint32_t nf = h->n_features, no = h->n_outputs;
    const int classify = h->task == TINYOL_CLASSIFICATION;
    if (classify ? (label < 0 || (uint32_t)label >= no) : (h->task != TINYOL_REGRESSION || !target))
        return TINYOL_BAD_ARGUMENT;
    const float *p = h->params;
    const float *bias = p + (size_t)nf * no;
    float *z = h->scratch;
    logits(h, x, z);

    float step_loss, scale;
    if (classify) {
        float total;
        const tinyol_status_t status = cross_entropy(x, nf, z, no, label, &total, &step_loss);
        if (status != TINYOL_OK) return status;
        z[label] -= total; /* total · (softmax − onehot) */
        scale = -learning_rate / total;
    } else {
        float sum = 0.0f;
        for (uint32_t j = 0; j < no; ++j) {
            z[j] -= target[j];
            sum += z[j] * z[j];
        }
        step_loss = sum / (float)no;
        if (!isfinite(step_loss)) {
            if (!all_finite(target, no)) return TINYOL_NONFINITE_LABEL;
            return all_finite(x, nf) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;
        }
        scale = -2.0f * learning_rate / (float)no;
    }
    for (uint32_t j = 0; j < no; ++j) z[j] *= scale; /* z is now delta = −lr · dLoss/dlogits */

    /* new weights P + [x, 1] ⊗ delta into the spare block, then its squared norm in float32 as the finiteness
     * check (as in online_head.py: NaN, Inf, or weights beyond ~1.8e19 all count as divergence) */
    float *q = h->spare;
    const float *s = h->step_sizes;
    for (uint32_t i = 0; i < nf; ++i) {
        const float xi = x[i];
        const float *row = p + (size_t)i * no;
        float *out = q + (size_t)i * no;
        if (s) {
            const float *si = s + (size_t)i * no;
            for (uint32_t j = 0; j < no; ++j) out[j] = row[j] + (xi * z[j]) * si[j];
        } else {
            for (uint32_t j = 0; j < no; ++j) out[j] = row[j] + xi * z[j];
        }
    }
    float *out_bias = q + (size_t)nf * no;
    if (s) {
        const float *sb = s + (size_t)nf * no;
        for (uint32_t j = 0; j < no; ++j) out_bias[j] = bias[j] + z[j] * sb[j];
    } else {
        for (uint32_t j = 0; j < no; ++j) out_bias[j] = bias[j] + z[j];
    }
    if (!isfinite(squared_norm(q, (nf + 1) * no))) return all_finite(x, nf) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;

    h->spare = h->params;
    h->params = q;
    if (loss) *loss = step_loss;
    return TINYOL_OK;
}

tinyol_status_t tinyol_predict(const tinyol_head_t *h, const float *x, float *z) {
    if (!h || !x || !z || !h->params || h->n_features == 0 || h->n_outputs == 0) return TINYOL_BAD_ARGUMENT;
    logits(h, x, z);
    if (all_finite(z, h->n_outputs)) return TINYOL_OK;
    return all_finite(x, h->n_features) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;
}

tinyol_status_t tinyol_imprint_one(tinyol_head_t *h, uint32_t *counts, const float *x, int32_t label, float min_rate,
                                   float *loss) {
    if (!h || !counts || !x || !h->params || !h->spare || !h->scratch || h->n_features == 0 || h->n_outputs == 0)
        return TINYOL_BAD_ARGUMENT;
    const uint32_t nf = h->n_features, no = h->n_outputs;
    if (h->task != TINYOL_CLASSIFICATION || label < 0 || (uint32_t)label >= no) return TINYOL_BAD_ARGUMENT;
    if (!(min_rate >= 0.0f && min_rate <= 1.0f)) return TINYOL_BAD_ARGUMENT; /* NaN fails too */
    float *z = h->scratch;
    logits(h, x, z);
    float total, step_loss;
    const tinyol_status_t status = cross_entropy(x, nf, z, no, label, &total, &step_loss);
    if (status != TINYOL_OK) return status;

    uint32_t n = counts[label];
    if (n < UINT32_MAX) ++n; /* saturates: the mean then moves by 1 / UINT32_MAX (or min_rate) */
    float *column = h->params + label; /* column `label` of W, stride no; its bias at row nf */
    float *mean = h->spare;            /* the new column, copied in only if finite */
    if (n == 1) {
        for (uint32_t i = 0; i < nf; ++i) mean[i] = x[i];
    } else {
        float rate = 1.0f / (float)n;
        if (rate < min_rate) rate = min_rate;
        for (uint32_t i = 0; i < nf; ++i) {
            const float c = column[(size_t)i * no];
            mean[i] = c + (x[i] - c) * rate;
        }
    }
    const float squared = squared_norm(mean, nf);
    if (!isfinite(squared)) return all_finite(x, nf) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;
    for (uint32_t i = 0; i < nf; ++i) column[(size_t)i * no] = mean[i];
    column[(size_t)nf * no] = -0.5f * squared;
    counts[label] = n;
    if (loss) *loss = step_loss;
    return TINYOL_OK;
}

#ifndef TINYOL_NO_TIMING
#include <time.h>

/* `steps` SGD steps (counts NULL; rate = learning rate) or imprints (rate = min_rate) cycling through the
 * samples, timed by clock_gettime around the loop */
static tinyol_status_t time_loop(tinyol_head_t *h, uint32_t *counts, const float *xs, const int32_t *labels,
                                 uint32_t n_samples, uint32_t steps, float rate, uint64_t *elapsed_ns) {
    if (!h || !xs || !labels || !elapsed_ns || n_samples == 0) return TINYOL_BAD_ARGUMENT;
    tinyol_status_t status = TINYOL_OK;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t s = 0, k = 0; s < steps; ++s) {
        const float *x = xs + (size_t)k * h->n_features;
        status = counts ? tinyol_imprint_one(h, counts, x, labels[k], rate, NULL)
                        : tinyol_learn_one(h, x, labels[k], NULL, rate, NULL);
        if (status != TINYOL_OK) break;
        if (++k == n_samples) k = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *elapsed_ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
    return status;
}

tinyol_status_t tinyol_time_steps(tinyol_head_t *h, const float *xs, const int32_t *labels, uint32_t n_samples,
                                  uint32_t steps, float learning_rate, uint64_t *elapsed_ns) {
    return time_loop(h, NULL, xs, labels, n_samples, steps, learning_rate, elapsed_ns);
}

tinyol_status_t tinyol_time_imprints(tinyol_head_t *h, uint32_t *counts, const float *xs, const int32_t *labels,
                                     uint32_t n_samples, uint32_t steps, float min_rate, uint64_t *elapsed_ns) {
    if (!counts) return TINYOL_BAD_ARGUMENT;
    return time_loop(h, counts, xs, labels, n_samples, steps, min_rate, elapsed_ns);
}
#endif
