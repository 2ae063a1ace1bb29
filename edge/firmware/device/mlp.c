/* The device MLP; see mlp.h for the contract and edge/mlp.py (NumpyMLP) for the reference it is tested equal to. */
#include "mlp.h"

#include <math.h>
#include <string.h>

size_t tf_mlp_arena_floats(uint32_t n_layers, const uint32_t *sizes) {
    if (n_layers < 1 || n_layers > TF_MLP_MAX_LAYERS) return 0;
    size_t params = 0, acts = 0, widest = 0;
    for (uint32_t i = 0; i <= n_layers; ++i) {
        if (sizes[i] == 0 || sizes[i] > 4096) return 0;
        acts += sizes[i];
        if (sizes[i] > widest) widest = sizes[i];
        if (i < n_layers) params += (size_t)sizes[i] * sizes[i + 1] + sizes[i + 1];
    }
    return 2 * params + acts + 2 * widest;
}

/* Point the tensor views at a params/grads pair of the arena's layout (the hypergradient evaluates
 * gradients at weights other than the MLP's own). */
static void bind(tf_mlp *m, float *params, float *grads) {
    m->params = params;
    m->grads = grads;
    float *p = params, *g = grads;
    for (uint32_t i = 0; i < m->n_layers; ++i) {
        uint32_t nw = m->sizes[i] * m->sizes[i + 1];
        m->w[i] = p; m->gw[i] = g; p += nw; g += nw;
        m->b[i] = p; m->gb[i] = g; p += m->sizes[i + 1]; g += m->sizes[i + 1];
    }
}

int tf_mlp_init(tf_mlp *m, uint32_t n_layers, const uint32_t *sizes, float *arena, size_t arena_floats) {
    size_t need = tf_mlp_arena_floats(n_layers, sizes);
    if (need == 0) return TF_MLP_BAD_SHAPE;
    if (arena == NULL || arena_floats < need) return TF_MLP_NO_ROOM;
    m->n_layers = n_layers;
    m->arena_floats = arena_floats;
    uint32_t params = 0, widest = 0;
    for (uint32_t i = 0; i <= n_layers; ++i) {
        m->sizes[i] = sizes[i];
        if (sizes[i] > widest) widest = sizes[i];
        if (i < n_layers) params += sizes[i] * sizes[i + 1] + sizes[i + 1];
    }
    m->n_params = params;
    bind(m, arena, arena + params);
    float *a = m->grads + params;
    for (uint32_t i = 0; i <= n_layers; ++i) {
        m->act[i] = a;
        a += sizes[i];
    }
    m->delta = a;
    m->delta_prev = a + widest;
    return TF_MLP_OK;
}

uint32_t tf_mlp_tensor_count(const tf_mlp *m) { return 2 * m->n_layers; }

float *tf_mlp_tensor(const tf_mlp *m, uint32_t t, uint32_t *count) {
    uint32_t layer = t / 2;
    if (layer >= m->n_layers) return NULL;
    if (t % 2 == 0) {
        if (count) *count = m->sizes[layer] * m->sizes[layer + 1];
        return m->w[layer];
    }
    if (count) *count = m->sizes[layer + 1];
    return m->b[layer];
}

const float *tf_mlp_forward(tf_mlp *m, const float *x) {
    for (uint32_t k = 0; k < m->sizes[0]; ++k) m->act[0][k] = x[k];
    for (uint32_t i = 0; i < m->n_layers; ++i) {
        const uint32_t n_in = m->sizes[i], n_out = m->sizes[i + 1];
        const float *h = m->act[i], *w = m->w[i], *b = m->b[i];
        float *out = m->act[i + 1];
        const int hidden = i + 1 < m->n_layers;
        for (uint32_t j = 0; j < n_out; ++j) {
            float s = 0.0f;
            for (uint32_t k = 0; k < n_in; ++k) s += h[k] * w[(size_t)k * n_out + j];
            s += b[j]; /* numpy: (h @ w) + b */
            out[j] = hidden ? tanhf(s) : s;
        }
    }
    return m->act[m->n_layers];
}

float tf_mlp_sample_sse(tf_mlp *m, const float *x, const float *y) {
    const float *out = tf_mlp_forward(m, x);
    float s = 0.0f;
    for (uint32_t j = 0; j < m->sizes[m->n_layers]; ++j) {
        float e = out[j] - y[j];
        s += e * e;
    }
    return s;
}

static int finite_all(const float *v, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* The lowest weight layer with a trainable tensor (n_layers if none): back-propagation stops there. */
static uint32_t lowest_trained(const tf_mlp *m, uint32_t trainable) {
    for (uint32_t i = 0; i < m->n_layers; ++i)
        if (trainable & (3u << (2 * i))) return i;
    return m->n_layers;
}

/* backpropagate() of edge/mlp.py from the output delta in m->delta, down to layer `lowest`: the gradients of
 * layers lowest..n_layers-1, every one from the weights before the step; no delta goes below `lowest`. */
static void backward(tf_mlp *m, uint32_t lowest) {
    for (uint32_t i = m->n_layers; i-- > lowest;) {
        const uint32_t n_in = m->sizes[i], n_o = m->sizes[i + 1];
        const float *a = m->act[i], *d = m->delta;
        float *gw = m->gw[i], *gb = m->gb[i];
        for (uint32_t k = 0; k < n_in; ++k)
            for (uint32_t j = 0; j < n_o; ++j) gw[(size_t)k * n_o + j] = a[k] * d[j];
        for (uint32_t j = 0; j < n_o; ++j) gb[j] = d[j];
        if (i > lowest) {
            const float *w = m->w[i];
            for (uint32_t k = 0; k < n_in; ++k) {
                float s = 0.0f;
                for (uint32_t j = 0; j < n_o; ++j) s += d[j] * w[(size_t)k * n_o + j];
                m->delta_prev[k] = s * (1.0f - a[k] * a[k]);
            }
            float *t = m->delta; m->delta = m->delta_prev; m->delta_prev = t;
        }
    }
}

/* backward() to the lowest trained layer, then the checked SGD step of the trainable tensors */
static int backward_and_step(tf_mlp *m, float learning_rate, uint32_t trainable) {
    const uint32_t lowest = lowest_trained(m, trainable);
    backward(m, lowest);
    /* refuse a step that leaves any weight non-finite, frozen ones included as NumpyMLP checks them before
     * train_subset restores them: every tensor whose gradient was formed (layers lowest.. up; see mlp.h) */
    const float step = learning_rate;
    if (lowest < m->n_layers) {
        const float *p = m->w[lowest], *g = m->gw[lowest];
        const size_t n = (size_t)(m->params + m->n_params - p);
        for (size_t i = 0; i < n; ++i)
            if (!isfinite(p[i] - step * g[i])) return TF_MLP_DIVERGED;
    }
    for (uint32_t t = 2 * lowest; t < 2 * m->n_layers; ++t) {
        if (!(trainable & (1u << t))) continue;
        uint32_t n = 0;
        float *p = tf_mlp_tensor(m, t, &n);
        const float *g = m->grads + (p - m->params);
        for (uint32_t i = 0; i < n; ++i) p[i] = p[i] - step * g[i];
    }
    return TF_MLP_OK;
}

/* The regression output delta (out - y) * (2 / out_dim) * scale_batch into m->delta; the squared error */
static float regression_delta(tf_mlp *m, const float *y, float scale) {
    const uint32_t n_out = m->sizes[m->n_layers];
    const float *out = m->act[m->n_layers];
    float sse = 0.0f;
    for (uint32_t j = 0; j < n_out; ++j) {
        float e = out[j] - y[j];
        sse += e * e;
        m->delta[j] = e * scale;
    }
    return sse;
}

int tf_mlp_update_after_forward(tf_mlp *m, const float *y, float learning_rate, uint32_t trainable, float *loss) {
    const uint32_t n_out = m->sizes[m->n_layers];
    if (!finite_all(y, n_out)) return TF_MLP_NON_FINITE;
    /* numpy: error * (2.0 / (batch * out_dim)) in float32 */
    float sse = regression_delta(m, y, (float)(2.0 / (double)n_out));
    int rc = backward_and_step(m, learning_rate, trainable);
    if (rc == TF_MLP_OK && loss) *loss = sse / (float)n_out;
    return rc;
}

int tf_mlp_learn_one(tf_mlp *m, const float *x, const float *y, float learning_rate, uint32_t trainable, float *loss) {
    if (!finite_all(x, m->sizes[0]) || !finite_all(y, m->sizes[m->n_layers])) return TF_MLP_NON_FINITE;
    tf_mlp_forward(m, x);
    return tf_mlp_update_after_forward(m, y, learning_rate, trainable, loss);
}

/* softmax() of edge/mlp_classifier.py into m->delta (probabilities); -log(max(p_label, 1e-12)) */
static float softmax_cross_entropy(tf_mlp *m, const float *logits, uint32_t label) {
    const uint32_t n = m->sizes[m->n_layers];
    float top = logits[0], sum = 0.0f;
    for (uint32_t j = 1; j < n; ++j)
        if (logits[j] > top) top = logits[j];
    for (uint32_t j = 0; j < n; ++j) {
        m->delta[j] = expf(logits[j] - top);
        sum += m->delta[j];
    }
    for (uint32_t j = 0; j < n; ++j) m->delta[j] = m->delta[j] / sum;
    float picked = m->delta[label] > 1e-12f ? m->delta[label] : 1e-12f;
    return -logf(picked);
}

float tf_mlp_sample_cross_entropy(tf_mlp *m, const float *x, uint32_t label) {
    return softmax_cross_entropy(m, tf_mlp_forward(m, x), label);
}

int tf_mlp_update_after_forward_class(tf_mlp *m, uint32_t label, float learning_rate, uint32_t trainable, float *loss) {
    if (label >= m->sizes[m->n_layers] || m->sizes[m->n_layers] < 2) return TF_MLP_BAD_SHAPE;
    float ce = softmax_cross_entropy(m, m->act[m->n_layers], label);
    m->delta[label] -= 1.0f; /* probs - onehot, over a batch of one */
    int rc = backward_and_step(m, learning_rate, trainable);
    if (rc == TF_MLP_OK && loss) *loss = ce;
    return rc;
}

int tf_mlp_learn_one_class(tf_mlp *m, const float *x, uint32_t label, float learning_rate, uint32_t trainable, float *loss) {
    if (label >= m->sizes[m->n_layers] || m->sizes[m->n_layers] < 2) return TF_MLP_BAD_SHAPE;
    if (!finite_all(x, m->sizes[0])) return TF_MLP_NON_FINITE;
    tf_mlp_forward(m, x);
    return tf_mlp_update_after_forward_class(m, label, learning_rate, trainable, loss);
}

/* ------------------------------------------------------------------ imprinting (edge/imprinting.py) */

int tf_mlp_imprint_one(tf_mlp *m, const float *x, uint32_t label, float *counts, float *loss) {
    const uint32_t L = m->n_layers, n_out = m->sizes[L];
    if (L < 2 || n_out < 2 || label >= n_out) return TF_MLP_BAD_SHAPE;
    if (!finite_all(x, m->sizes[0])) return TF_MLP_NON_FINITE;
    float ce = softmax_cross_entropy(m, tf_mlp_forward(m, x), label);
    const uint32_t hidden = m->sizes[L - 1];
    const float *features = m->act[L - 1];
    const float count = counts[label] + 1.0f;
    const float rate = (float)(1.0 / (double)count); /* max(1 / count, min_rate 0), a float32 scalar in numpy */
    float *mean = m->delta_prev, *w = m->w[L - 1];  /* the new column, written only once it is known finite */
    float norm = 0.0f;
    for (uint32_t k = 0; k < hidden; ++k) {
        float prev = count > 1.0f ? w[(size_t)k * n_out + label] : 0.0f;
        mean[k] = prev + (features[k] - prev) * rate;
        norm += mean[k] * mean[k];
    }
    const float bias = -0.5f * norm;
    if (!finite_all(mean, hidden) || !isfinite(bias)) return TF_MLP_DIVERGED; /* set_weights refuses it */
    for (uint32_t k = 0; k < hidden; ++k) w[(size_t)k * n_out + label] = mean[k];
    m->b[L - 1][label] = bias;
    counts[label] = count;
    if (loss) *loss = ce;
    return TF_MLP_OK;
}

/* ------------------------------------------------------------------ step sizes (edge/step_sizes.py) */

/* The regression gradient of one sample at `params` (not m's own) into `grads`, the output delta scaled by
 * 2 / (batch * out_dim) as mlp_gradients() scales it for a batch; the sample's squared error. */
static float gradient_at(tf_mlp *m, float *params, float *grads, const float *x, const float *y, uint32_t batch) {
    float *own_params = m->params, *own_grads = m->grads;
    bind(m, params, grads);
    tf_mlp_forward(m, x);
    float sse = regression_delta(m, y, (float)(2.0 / ((double)batch * m->sizes[m->n_layers])));
    backward(m, 0);
    bind(m, own_params, own_grads);
    return sse;
}

/* sqrt(sum over tensors of float(vdot(v, v))): _norm() of step_sizes.py, a float32 dot per tensor, summed in double */
static double norm_of(const tf_mlp *m, const float *v) {
    double total = 0.0;
    for (uint32_t t = 0; t < tf_mlp_tensor_count(m); ++t) {
        uint32_t n = 0;
        const float *p = tf_mlp_tensor(m, t, &n);
        const float *vt = v + (p - m->params);
        float dot = 0.0f;
        for (uint32_t i = 0; i < n; ++i) dot += vt[i] * vt[i];
        total += (double)dot;
    }
    return sqrt(total);
}

size_t tf_mlp_hypergradient_floats(const tf_mlp *m, uint32_t shots) { return ((size_t)shots + 4u) * m->n_params; }

int tf_mlp_hypergradient(tf_mlp *m, const float *theta, const float *scales, float base_rate, const float *support,
                         uint32_t shots, const float *query, uint32_t n_query, float *scratch, size_t scratch_floats,
                         float *hyper, float *query_loss) {
    const size_t P = m->n_params, row = m->sizes[0] + m->sizes[m->n_layers];
    if (scratch_floats < tf_mlp_hypergradient_floats(m, shots) || n_query == 0) return TF_MLP_NO_ROOM;
    /* scratch: | φ_0 .. φ_{K-1} (K·P) | v | work (φ_K, then φ_t ± h·u) | plus | minus | */
    float *phis = scratch, *v = phis + shots * P, *work = v + P, *plus = work + P, *minus = plus + P;
    memcpy(phis, theta, P * sizeof(float));
    /* forward: φ_t = φ_{t-1} − (base_rate · scale) ⊙ g_t(φ_{t-1}), one step per support sample */
    for (uint32_t t = 0; t < shots; ++t) {
        float *cur = phis + t * P, *next = t + 1 < shots ? cur + P : work;
        const float *x = support + t * row;
        gradient_at(m, cur, plus, x, x + m->sizes[0], 1);
        for (size_t i = 0; i < P; ++i) next[i] = cur[i] - (base_rate * scales[i]) * plus[i];
    }
    if (shots == 0) memcpy(work, theta, P * sizeof(float));
    /* v = ∇L_q(φ_K) over the query batch (mean squared error of every output), summed sample by sample */
    memset(v, 0, P * sizeof(float));
    float sse = 0.0f;
    for (uint32_t q = 0; q < n_query; ++q) {
        const float *x = query + q * row;
        sse += gradient_at(m, work, plus, x, x + m->sizes[0], n_query);
        for (size_t i = 0; i < P; ++i) v[i] += plus[i];
    }
    *query_loss = (float)((double)sse / ((double)n_query * m->sizes[m->n_layers]));
    memset(hyper, 0, P * sizeof(float));
    /* backward: the step's contribution −v ⊙ α ⊙ g_t, then v ← v − H_t·(α ⊙ v) by a central difference */
    for (uint32_t t = shots; t-- > 0;) {
        float *cur = phis + t * P;
        const float *x = support + t * row, *y = x + m->sizes[0];
        gradient_at(m, cur, plus, x, y, 1); /* g_t again: the same inputs give the forward pass's bits */
        for (size_t i = 0; i < P; ++i) hyper[i] -= v[i] * (base_rate * scales[i]) * plus[i];
        for (size_t i = 0; i < P; ++i) minus[i] = (base_rate * scales[i]) * v[i]; /* the probe α ⊙ v */
        double size = norm_of(m, minus);
        if (size == 0.0 || !isfinite(size)) break;
        double h = 1e-3 / size; /* FINITE_DIFFERENCE */
        const float hf = (float)h, twice = (float)(2.0 * h);
        for (size_t i = 0; i < P; ++i) work[i] = cur[i] + hf * minus[i];
        gradient_at(m, work, plus, x, y, 1);
        for (size_t i = 0; i < P; ++i) work[i] = cur[i] + (-hf) * minus[i];
        gradient_at(m, work, minus, x, y, 1);
        for (size_t i = 0; i < P; ++i) v[i] = v[i] - (plus[i] - minus[i]) / twice;
    }
    return TF_MLP_OK;
}
