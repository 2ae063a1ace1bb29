/* The device MLP; see mlp.h for the contract and edge/mlp.py (NumpyMLP) for the reference it is tested equal to. */
#include "mlp.h"

#include <math.h>

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

int tf_mlp_init(tf_mlp *m, uint32_t n_layers, const uint32_t *sizes, float *arena, size_t arena_floats) {
    size_t need = tf_mlp_arena_floats(n_layers, sizes);
    if (need == 0) return TF_MLP_BAD_SHAPE;
    if (arena == NULL || arena_floats < need) return TF_MLP_NO_ROOM;
    m->n_layers = n_layers;
    uint32_t params = 0, widest = 0;
    for (uint32_t i = 0; i <= n_layers; ++i) {
        m->sizes[i] = sizes[i];
        if (sizes[i] > widest) widest = sizes[i];
        if (i < n_layers) params += sizes[i] * sizes[i + 1] + sizes[i + 1];
    }
    m->n_params = params;
    m->params = arena;
    m->grads = arena + params;
    float *p = m->params, *g = m->grads;
    for (uint32_t i = 0; i < n_layers; ++i) {
        uint32_t nw = sizes[i] * sizes[i + 1];
        m->w[i] = p; m->gw[i] = g; p += nw; g += nw;
        m->b[i] = p; m->gb[i] = g; p += sizes[i + 1]; g += sizes[i + 1];
    }
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

/* backpropagate() of edge/mlp.py from the output delta in m->delta, then the checked SGD step */
static int backward_and_step(tf_mlp *m, float learning_rate, uint32_t trainable) {
    const uint32_t L = m->n_layers;
    /* backward, every gradient from the weights before the step (numpy's backpropagate) */
    for (uint32_t i = L; i-- > 0;) {
        const uint32_t n_in = m->sizes[i], n_o = m->sizes[i + 1];
        const float *a = m->act[i], *d = m->delta;
        float *gw = m->gw[i], *gb = m->gb[i];
        for (uint32_t k = 0; k < n_in; ++k)
            for (uint32_t j = 0; j < n_o; ++j) gw[(size_t)k * n_o + j] = a[k] * d[j];
        for (uint32_t j = 0; j < n_o; ++j) gb[j] = d[j];
        if (i > 0) {
            const float *w = m->w[i];
            for (uint32_t k = 0; k < n_in; ++k) {
                float s = 0.0f;
                for (uint32_t j = 0; j < n_o; ++j) s += d[j] * w[(size_t)k * n_o + j];
                m->delta_prev[k] = s * (1.0f - a[k] * a[k]);
            }
            float *t = m->delta; m->delta = m->delta_prev; m->delta_prev = t;
        }
    }
    /* refuse a step that leaves any weight non-finite (frozen ones included, as NumpyMLP checks before
     * train_subset restores them), then write the trainable tensors */
    const float step = learning_rate;
    for (uint32_t i = 0; i < m->n_params; ++i)
        if (!isfinite(m->params[i] - step * m->grads[i])) return TF_MLP_DIVERGED;
    for (uint32_t t = 0; t < 2 * L; ++t) {
        if (!(trainable & (1u << t))) continue;
        uint32_t n = 0;
        float *p = tf_mlp_tensor(m, t, &n);
        const float *g = m->grads + (p - m->params);
        for (uint32_t i = 0; i < n; ++i) p[i] = p[i] - step * g[i];
    }
    return TF_MLP_OK;
}

int tf_mlp_learn_one(tf_mlp *m, const float *x, const float *y, float learning_rate, uint32_t trainable, float *loss) {
    const uint32_t n_out = m->sizes[m->n_layers];
    if (!finite_all(x, m->sizes[0]) || !finite_all(y, n_out)) return TF_MLP_NON_FINITE;
    const float *out = tf_mlp_forward(m, x);
    float sse = 0.0f;
    const float scale = (float)(2.0 / (double)n_out); /* numpy: error * (2.0 / (batch * out_dim)) in float32 */
    for (uint32_t j = 0; j < n_out; ++j) {
        float e = out[j] - y[j];
        sse += e * e;
        m->delta[j] = e * scale;
    }
    int rc = backward_and_step(m, learning_rate, trainable);
    if (rc == TF_MLP_OK && loss) *loss = sse / (float)n_out;
    return rc;
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

int tf_mlp_learn_one_class(tf_mlp *m, const float *x, uint32_t label, float learning_rate, uint32_t trainable, float *loss) {
    if (label >= m->sizes[m->n_layers] || m->sizes[m->n_layers] < 2) return TF_MLP_BAD_SHAPE;
    if (!finite_all(x, m->sizes[0])) return TF_MLP_NON_FINITE;
    float ce = softmax_cross_entropy(m, tf_mlp_forward(m, x), label);
    m->delta[label] -= 1.0f; /* probs - onehot, over a batch of one */
    int rc = backward_and_step(m, learning_rate, trainable);
    if (rc == TF_MLP_OK && loss) *loss = ce;
    return rc;
}
