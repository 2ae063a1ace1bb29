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
    float *z = h->scratch;

    /* logits z = [x, 1] · P, one output at a time with four partial sums: independent chains keep a
     * pipelined FPU busy (a single running sum would wait on each add) */
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

    float step_loss, scale;
    if (classify) {
        /* the weights are always finite, so non-finite logits mean a bad sample or an overflow */
        if (!all_finite(z, no)) return all_finite(x, nf) ? TINYOL_DIVERGED : TINYOL_NONFINITE_SAMPLE;
        float top = z[0];
        for (uint32_t j = 1; j < no; ++j)
            if (z[j] > top) top = z[j];
        float total = 0.0f; /* >= 1: the largest term is exp(0) */
        for (uint32_t j = 0; j < no; ++j) {
            z[j] = expf(z[j] - top);
            total += z[j];
        }
        const float probability = z[label] / total;
        step_loss = -logf(probability > TINYOL_MIN_PROBABILITY ? probability : TINYOL_MIN_PROBABILITY);
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

#ifndef TINYOL_NO_TIMING
#include <time.h>

tinyol_status_t tinyol_time_steps(tinyol_head_t *h, const float *xs, const int32_t *labels, uint32_t n_samples,
                                  uint32_t steps, float learning_rate, uint64_t *elapsed_ns) {
    if (!h || !xs || !labels || !elapsed_ns || n_samples == 0) return TINYOL_BAD_ARGUMENT;
    tinyol_status_t status = TINYOL_OK;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint32_t s = 0, k = 0; s < steps; ++s) {
        status = tinyol_learn_one(h, xs + (size_t)k * h->n_features, labels[k], NULL, learning_rate, NULL);
        if (status != TINYOL_OK) break;
        if (++k == n_samples) k = 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *elapsed_ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
    return status;
}
#endif
