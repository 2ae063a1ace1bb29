/* The device round; see round.h for the contract, edge/device_round.py and edge/reconstruction.py for the reference
 * it is tested equal to (tests/edge/test_firmware_device_round.py). */
#include "round.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ refusals that name numbers */

static char reason[160]; /* the last refusal's reason ("" if its code says it all); see tf_round_refusal_reason */

const char *tf_round_refusal_reason(void) { return reason; }

/* n with thousands separators, as Python's f"{n:,}" (the words of edge.device.check_fits) */
static char *put_count(char *p, char *end, uint64_t n) {
    char digits[32];
    int k = 0;
    do { digits[k++] = (char)('0' + n % 10u); n /= 10u; } while (n && k < 26);
    for (int i = k - 1; i >= 0 && p < end - 1; --i) {
        *p++ = digits[i];
        if (i && i % 3 == 0 && p < end - 1) *p++ = ',';
    }
    *p = '\0';
    return p;
}

static char *put_text(char *p, char *end, const char *t) {
    while (*t && p < end - 1) *p++ = *t++;
    *p = '\0';
    return p;
}

/* reason = "<what> needs N B of <where>, device has M B" */
static void say_needs(const char *what, uint64_t needs, const char *where, uint64_t has) {
    char *p = reason, *end = reason + sizeof reason;
    p = put_text(p, end, what);
    p = put_text(p, end, " needs ");
    p = put_count(p, end, needs);
    p = put_text(p, end, " B of ");
    p = put_text(p, end, where);
    p = put_text(p, end, ", device has ");
    p = put_count(p, end, has);
    put_text(p, end, " B");
}

/* A MODEL whose tensors are an MLP (w_i: n_i x n_{i+1}, b_i: n_{i+1}; a private tensor at the device's own shape)
 * other than the device's: the floats training it would take, as this device lays training out (weights,
 * gradients, θ, activations, two deltas), into *needs; its layer sizes into sizes[0..*n]. 0 if not such an MLP. */
static int model_mlp(const tf_device *d, const tf_task_t *task, const uint8_t *model, size_t len, size_t cap,
                     uint64_t *needs, uint32_t *sizes, uint32_t *n) {
    enum { MAX = 16 };
    tfw_tensor_shape shapes[MAX];
    uint16_t count;
    if (tfw_model_shapes(model, len, cap, shapes, MAX, &count) != TFW_OK) return 0;
    const tf_mlp *m = d->mlp;
    uint64_t params = 0, acts = 0, widest = 0;
    uint32_t layers = 0, used = 0;
    for (uint32_t i = 0; i < MAX / 2; ++i) {
        uint32_t w[2] = {0, 0}, b = 0;
        int have_w = 0, have_b = 0;
        for (uint16_t t = 0; t < count; ++t) {
            char want[8] = {'w', (char)('0' + i), 0};
            if (!strcmp(shapes[t].name, want) && shapes[t].ndim == 2) { w[0] = shapes[t].shape[0]; w[1] = shapes[t].shape[1]; have_w = 1; used++; }
            want[0] = 'b';
            if (!strcmp(shapes[t].name, want) && shapes[t].ndim == 1) { b = shapes[t].shape[0]; have_b = 1; used++; }
        }
        if (i < m->n_layers && (task->private_mask >> (2 * i)) & 1u && !have_w) { w[0] = m->sizes[i]; w[1] = m->sizes[i + 1]; have_w = 1; }
        if (i < m->n_layers && (task->private_mask >> (2 * i + 1)) & 1u && !have_b) { b = m->sizes[i + 1]; have_b = 1; }
        if (!have_w && !have_b) break;
        if (!have_w || !have_b || b != w[1] || (layers && w[0] != sizes[layers]) || !w[0] || !w[1]) return 0;
        if (!layers) sizes[0] = w[0];
        sizes[++layers] = w[1];
    }
    if (!layers || used != count) return 0; /* a tensor that is no part of an MLP */
    for (uint32_t i = 0; i <= layers; ++i) {
        acts += sizes[i];
        if (sizes[i] > widest) widest = sizes[i];
        if (i < layers) params += (uint64_t)sizes[i] * sizes[i + 1] + sizes[i + 1];
    }
    *needs = 3 * params + acts + 2 * widest;
    *n = layers;
    return 1;
}

/* After the weight table refused a MODEL (spec-mismatch): is it an MLP too large for this device? Then the code is
 * "too-large" and the reason names the RAM it needs and what the device has (its arena and θ's buffer). */
static int too_large(const tf_device *d, const tf_task_t *task, const uint8_t *model, size_t len, size_t cap) {
    uint32_t sizes[17], n;
    uint64_t needs;
    if (!model_mlp(d, task, model, len, cap, &needs, sizes, &n)) return 0;
    const uint64_t has = (uint64_t)d->mlp->arena_floats + d->mlp->n_params;
    if (needs <= has) return 0; /* it would fit: the shapes are simply not this firmware's */
    char what[80], *p = what, *end = what + sizeof what;
    p = put_text(p, end, "model ");
    for (uint32_t i = 0; i <= n; ++i) {
        if (i) p = put_text(p, end, "-");
        p = put_count(p, end, sizes[i]);
    }
    say_needs(what, 4 * needs, "RAM to train", 4 * has);
    return 1;
}

typedef struct {
    tf_device *d;
    uint32_t n_in, n_out; /* n_out: floats of y per sample (1, the label, for a classifier) */
    float *probe; /* probe samples, then the replayed shots */
    float *shots;
} ctx_t;

static int pull(tf_device *d, float *x, float *y) { return d->next(d->stream, x, y); }

/* one SGD step of the device's learner; 0 or the refusal's code */
static const char *step(ctx_t *c, const float *x, const float *y, float lr, uint32_t trainable, float *loss) {
    int rc = c->d->classify ? (y[0] >= 0.0f && y[0] == (float)(uint32_t)y[0]
                                   ? tf_mlp_learn_one_class(c->d->mlp, x, (uint32_t)y[0], lr, trainable, loss)
                                   : TF_MLP_BAD_SHAPE)
                            : tf_mlp_learn_one(c->d->mlp, x, y, lr, trainable, loss);
    return rc == TF_MLP_OK ? NULL : rc == TF_MLP_BAD_SHAPE ? "bad-label" : "diverged";
}

/* train_subset(): one step per fresh sample, then epochs - 1 replays; the mean first-pass loss (NaN if none) */
static int train(ctx_t *c, uint32_t samples, uint32_t epochs, float lr, uint32_t trainable, int keep, float *mean,
                 uint32_t *steps, const char **code) {
    double sum = 0.0;
    for (uint32_t s = 0; s < samples; ++s) {
        float *x = c->shots + (keep ? (size_t)s * (c->n_in + c->n_out) : 0); /* not kept: one slot, reused */
        float *y = x + c->n_in;
        float loss;
        if (pull(c->d, x, y)) { *code = "stream-ended"; return 1; }
        const char *refused = step(c, x, y, lr, trainable, &loss);
        if (refused) { *code = refused; return 1; }
        sum += (double)loss;
        ++*steps;
    }
    for (uint32_t e = 1; e < epochs; ++e)
        for (uint32_t s = 0; s < samples; ++s) {
            float *x = c->shots + (size_t)s * (c->n_in + c->n_out);
            float loss;
            const char *refused = step(c, x, x + c->n_in, lr, trainable, &loss);
            if (refused) { *code = refused; return 1; }
            ++*steps;
        }
    *mean = samples ? (float)(sum / samples) : NAN;
    return 0;
}

/* imprint_output_layer(): one fresh sample at a time into its class's mean (an Imprinter per round, so the
 * class counts start at zero; they live in the MLP's gradient buffer, which imprinting does not use) */
static int imprint(ctx_t *c, uint32_t samples, float *mean, uint32_t *steps, const char **code) {
    tf_mlp *m = c->d->mlp;
    float *counts = m->grads;
    memset(counts, 0, m->sizes[m->n_layers] * sizeof(float));
    double sum = 0.0;
    float *x = c->shots, *y = x + c->n_in; /* one slot of the replay buffer, reused */
    for (uint32_t s = 0; s < samples; ++s) {
        float loss;
        if (pull(c->d, x, y)) { *code = "stream-ended"; return 1; }
        int rc = y[0] >= 0.0f && y[0] == (float)(uint32_t)y[0] ? tf_mlp_imprint_one(m, x, (uint32_t)y[0], counts, &loss)
                                                               : TF_MLP_BAD_SHAPE;
        if (rc != TF_MLP_OK) { *code = rc == TF_MLP_BAD_SHAPE ? "bad-label" : "diverged"; return 1; }
        sum += (double)loss;
        ++*steps;
    }
    *mean = samples ? (float)(sum / samples) : NAN;
    return 0;
}

/* check_imprintable(): a classifier whose private part is exactly its output layer */
static int imprintable(const tf_device *d, uint32_t private_mask) {
    const uint32_t L = d->mlp->n_layers;
    return d->classify && L >= 2 && private_mask == (3u << (2 * (L - 1)));
}

/* learner.loss() over the probe: mean squared error of every output, or mean cross-entropy (a classifier) */
static float probe_loss(ctx_t *c, uint32_t probe) {
    if (!probe) return NAN;
    double sum = 0.0;
    for (uint32_t s = 0; s < probe; ++s) {
        const float *x = c->probe + (size_t)s * (c->n_in + c->n_out);
        sum += c->d->classify ? (double)tf_mlp_sample_cross_entropy(c->d->mlp, x, (uint32_t)x[c->n_in])
                              : (double)tf_mlp_sample_sse(c->d->mlp, x, x + c->n_in);
    }
    return (float)(sum / ((double)probe * (c->d->classify ? 1 : c->n_out)));
}

static uint32_t abs_bits(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return u & 0x7FFFFFFFu;
}

/* Shared tensors in ASCII name order (top_p_sparsify's order, and its tie order). */
static uint32_t sorted_tensors(const tf_mlp *m, uint32_t shared, uint8_t *out) {
    uint32_t n = 0;
    for (uint32_t t = 0; t < tf_mlp_tensor_count(m); ++t)
        if (shared & (1u << t)) out[n++] = (uint8_t)t;
    for (uint32_t i = 1; i < n; ++i)
        for (uint32_t j = i; j > 0 && strcmp(tfw_mlp_tensor_name(out[j - 1]), tfw_mlp_tensor_name(out[j])) > 0; --j) {
            uint8_t t = out[j]; out[j] = out[j - 1]; out[j - 1] = t;
        }
    return n;
}

/* top_p_count(): ceil(round(p * total, 9)), at least 1, at most total */
static uint32_t top_p_count(uint32_t total, double p) {
    if (!total) return 0;
    double k = ceil(round(p * total * 1e9) / 1e9);
    if (k < 1) k = 1;
    return k > total ? total : (uint32_t)k;
}

/* The k largest |δ| over the shared tensors: every entry above the threshold bit pattern, and of those at it the
 * first in (name, index) order; found by bisection on the bits (|float| orders as its bits), no memory. */
static void top_p_threshold(const tf_mlp *m, const float *delta, const uint8_t *order, uint32_t n, uint32_t k,
                            uint32_t *threshold, uint32_t *ties) {
    uint32_t lo = 0, hi = 0x7F800000u; /* count(bits >= lo) >= k; the answer is the largest such lo */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo + 1) / 2, above = 0;
        for (uint32_t i = 0; i < n; ++i) {
            uint32_t count;
            float *p = tf_mlp_tensor(m, order[i], &count);
            const float *dv = delta + (p - m->params);
            for (uint32_t j = 0; j < count; ++j) above += abs_bits(dv[j]) >= mid;
        }
        if (above >= k) lo = mid; else hi = mid - 1;
    }
    uint32_t strictly = 0;
    for (uint32_t i = 0; i < n; ++i) {
        uint32_t count;
        float *p = tf_mlp_tensor(m, order[i], &count);
        const float *dv = delta + (p - m->params);
        for (uint32_t j = 0; j < count; ++j) strictly += abs_bits(dv[j]) > lo;
    }
    *threshold = lo;
    *ties = k - strictly;
}

static void shape_of(const tf_mlp *m, uint32_t t, uint8_t *ndim, uint32_t *shape) {
    uint32_t layer = t / 2;
    *ndim = t % 2 ? 1 : 2;
    shape[0] = t % 2 ? m->sizes[layer + 1] : m->sizes[layer];
    shape[1] = m->sizes[layer + 1];
}

static size_t pad4(size_t n) { return (n + 3u) & ~(size_t)3u; }

/* Entries of tensor t a Top-P reply keeps: above the threshold, and `*ties` at it (consumed in order). */
static uint32_t kept_in(const tf_mlp *m, const float *delta, uint32_t t, uint32_t threshold, uint32_t *ties,
                        uint32_t *idx, float *val) {
    uint32_t count, kept = 0;
    float *p = tf_mlp_tensor(m, t, &count);
    const float *dv = delta + (p - m->params);
    for (uint32_t j = 0; j < count; ++j) {
        uint32_t b = abs_bits(dv[j]);
        if (b > threshold || (b == threshold && *ties && (*ties)--)) {
            if (idx) { idx[kept] = j; val[kept] = dv[j]; }
            kept++;
        }
    }
    return kept;
}

static size_t encode(tf_device *d, const tf_task_t *task, const tfw_info_t *model, uint32_t shared, uint32_t also_sent,
                     tf_round_report *r, uint8_t *buf, size_t cap, const char **code) {
    tf_mlp *m = d->mlp;
    float *delta = d->theta; /* θ becomes δ = φ − θ in place (float32, as (phi - theta).astype(float32)) */
    for (uint32_t i = 0; i < m->n_params; ++i) delta[i] = m->params[i] - delta[i];
    const char *names[6];
    float values[6];
    uint8_t n = 0;
    float losses[4] = {r->loss_before, r->loss_after, r->prequential_loss, r->reconstruction_loss};
    static const char *const METRICS[4] = {"loss-before", "loss-after", "prequential-loss", "reconstruction-loss"};
    for (int i = 0; i < 4; ++i) {
        if (i == 3 && !task->private_mask) break;
        if (isfinite(losses[i])) { names[n] = METRICS[i]; values[n++] = losses[i]; }
    }
    names[n] = "device-time-s";
    names[n + 1] = "device-energy-j";
    uint8_t order[TF_MLP_MAX_TENSORS];
    uint32_t n_shared = sorted_tensors(m, shared, order);
    const int sparse = !task->evaluate && task->top_p > 0.0;
    uint32_t threshold = 0, ties = 0;
    /* the payload's length first (docs/protocol.md §2): the device books it in its time and energy */
    size_t len = 24 + pad4(strlen(d->device_id)) + 4;
    for (uint8_t i = 0; i < n + 2; ++i) len += 8 + pad4(strlen(names[i]));
    if (sparse) {
        uint32_t total = 0, t_ties;
        for (uint32_t i = 0; i < n_shared; ++i) {
            uint32_t count;
            tf_mlp_tensor(m, order[i], &count);
            total += count;
        }
        top_p_threshold(m, delta, order, n_shared, top_p_count(total, task->top_p), &threshold, &ties);
        t_ties = ties;
        r->kept = 0;
        for (uint32_t i = 0; i < n_shared; ++i) {
            uint32_t count, kept = kept_in(m, delta, order[i], threshold, &t_ties, NULL, NULL);
            tf_mlp_tensor(m, order[i], &count);
            len += 24 + pad4(strlen(tfw_mlp_tensor_name(order[i]))) + pad4((count <= 65536u ? 2u : 4u) * kept) + 4u * kept;
            r->kept += kept;
        }
    } else if (!task->evaluate) {
        for (uint32_t i = 0; i < n_shared; ++i) {
            uint32_t count;
            tf_mlp_tensor(m, order[i], &count);
            len += 24 + pad4(strlen(tfw_mlp_tensor_name(order[i]))) + 4u * count;
        }
    }
    r->bytes_sent = task->radio ? (uint32_t)len + also_sent : 0; /* reply_payload_bytes: and the HYPERGRADIENT */
    d->costs(d->costs_ctx, r, &values[n], &values[n + 1]);
    n += 2;

    tfw_writer w;
    tfw_begin(&w, buf, cap, TFW_KIND_UPDATE, task->round_id, r->num_examples, d->device_id, n,
              task->evaluate ? 0 : (uint16_t)n_shared);
    for (uint8_t i = 0; i < n; ++i) tfw_metric(&w, names[i], values[i]);
    if (!task->evaluate && !sparse) {
        for (uint32_t i = 0; i < model->tensor_count; ++i) { /* encode_reply: in θ's (the MODEL's) order */
            uint32_t t = model->order[i], shape[2];
            uint8_t ndim;
            shape_of(m, t, &ndim, shape);
            float *p = tf_mlp_tensor(m, t, NULL);
            tfw_dense_f32(&w, tfw_mlp_tensor_name(t), ndim, shape, delta + (p - m->params));
        }
    } else if (sparse) { /* top_p_sparsify: every shared tensor in name order, indices ascending */
        for (uint32_t i = 0; i < n_shared; ++i) {
            uint32_t shape[2], t_ties = ties;
            uint8_t ndim;
            uint32_t kept = kept_in(m, delta, order[i], threshold, &t_ties, NULL, NULL);
            shape_of(m, order[i], &ndim, shape);
            /* indices and values go to the UPDATE buffer's tail as scratch, past room for this record */
            size_t need = (size_t)kept * 8u;
            if (w.status != TFW_OK || 2 * need + 64 > w.cap - w.pos) { *code = "oversized"; return 0; }
            uint32_t *idx = (uint32_t *)(void *)(buf + ((w.cap - need) & ~(size_t)3u));
            float *val = (float *)(idx + kept);
            kept_in(m, delta, order[i], threshold, &ties, idx, val);
            tfw_sparse_f32(&w, tfw_mlp_tensor_name(order[i]), ndim, shape, kept, idx, val);
        }
    }
    len = tfw_finish(&w);
    if (!len) *code = tfw_error_code(w.status);
    return len;
}

size_t tf_round_step_size_floats(const tf_device *d, uint32_t shots, uint32_t query) {
    const tf_mlp *m = d->mlp;
    const size_t row = m->sizes[0] + (d->classify ? 1u : m->sizes[m->n_layers]);
    return m->n_params + ((size_t)shots + query) * row + tf_mlp_hypergradient_floats(m, shots);
}

/* measure_hypergradient(): on the next shots + query samples, from θ (d->theta) at the STEP_SIZES' rates; the
 * HYPERGRADIENT payload in buf (encode_hypergradient: every tensor in the weight table's order, the query loss its
 * one metric) and its length, 0 with r->hypergradient_dropped if not finite (the UPDATE then goes alone) */
static int hypergradient(tf_device *d, const tf_step_size_memory *mem, const tf_task_t *task, tf_round_report *r,
                         uint8_t *buf, size_t cap, size_t *len, const char **code) {
    tf_mlp *m = d->mlp;
    const uint32_t K = task->step_size_shots, Q = task->step_size_query;
    const size_t P = m->n_params, row = m->sizes[0] + m->sizes[m->n_layers];
    float *hyper = mem->scratch, *rows = hyper + P, *scratch = rows + ((size_t)K + Q) * row;
    for (uint32_t s = 0; s < K + Q; ++s)
        if (pull(d, rows + s * row, rows + s * row + m->sizes[0])) { *code = "stream-ended"; return 1; }
    float query_loss;
    if (tf_mlp_hypergradient(m, d->theta, mem->scales, (float)task->step_size_base_rate, rows, K, rows + (size_t)K * row,
                             Q, scratch, mem->scratch_floats - (size_t)(scratch - mem->scratch), hyper,
                             &query_loss) != TF_MLP_OK) {
        *code = "too-many";
        return 1;
    }
    int finite = isfinite(query_loss);
    for (size_t i = 0; i < P && finite; ++i) finite = isfinite(hyper[i]);
    *len = 0;
    if (!finite) { r->hypergradient_dropped = 1; return 0; }
    tfw_writer w;
    tfw_begin(&w, buf, cap, TFW_KIND_HYPERGRADIENT, task->round_id, K + Q, d->device_id, 1,
              (uint16_t)tf_mlp_tensor_count(m));
    tfw_metric(&w, "step-size-query-loss", query_loss);
    for (uint32_t t = 0; t < tf_mlp_tensor_count(m); ++t) {
        uint32_t shape[2];
        uint8_t ndim;
        shape_of(m, t, &ndim, shape);
        const float *p = tf_mlp_tensor(m, t, NULL);
        tfw_dense_f32(&w, tfw_mlp_tensor_name(t), ndim, shape, hyper + (p - m->params));
    }
    *len = tfw_finish(&w);
    if (!*len) { *code = tfw_error_code(w.status); return 1; }
    return 0;
}

/* run_task's step-size checks, after the MODEL's: a STEP_SIZES must have come, decode, and the learner measure it */
static const char *check_step_sizes(tf_device *d, const tf_step_size_memory *mem, const tf_task_t *task,
                                    const uint8_t *step_sizes, size_t step_sizes_len, size_t cap, const uint8_t *hyper_buf) {
    tfw_status_t ws;
    if (step_sizes == NULL) return "bad-field"; /* "the round asks for step sizes but none came" */
    if (mem == NULL || mem->scales == NULL) {
        say_needs("step sizes", 4ull * d->mlp->n_params, "RAM", 0);
        return "too-many";
    }
    if ((ws = tfw_read_step_sizes(step_sizes, step_sizes_len, cap, task->round_id, d->mlp, mem->scales)) != TFW_OK)
        return tfw_error_code(ws);
    if (d->classify) return "bad-field"; /* check_step_sizes: the numpy regressor only */
    const size_t need = tf_round_step_size_floats(d, task->step_size_shots, task->step_size_query);
    if (hyper_buf == NULL || mem->scratch == NULL || need > mem->scratch_floats) { /* the firmware's buffer */
        say_needs("the step sizes' hypergradient", 4ull * need, "RAM", mem->scratch ? 4ull * mem->scratch_floats : 0);
        return "too-many";
    }
    return NULL;
}

/* The step-size part of a round, reached only through tf_round_run_step_sizes: a firmware calling tf_round_run
 * alone links none of it (--gc-sections drops what no one takes the address of). */
typedef struct {
    const char *(*check)(tf_device *, const tf_step_size_memory *, const tf_task_t *, const uint8_t *, size_t, size_t,
                         const uint8_t *);
    int (*measure)(tf_device *, const tf_step_size_memory *, const tf_task_t *, tf_round_report *, uint8_t *, size_t,
                   size_t *, const char **);
} step_size_ops;

/* The round; `ops` NULL plays firmware from before STEP_SIZES (the step-size keys are then ignored). */
static int run(tf_device *d, const tf_step_size_memory *mem, const char *task_json, size_t task_len, const uint8_t *model, size_t model_len,
               const uint8_t *step_sizes, size_t step_sizes_len, const step_size_ops *ops, size_t model_cap, uint8_t *update,
               size_t update_cap, size_t *update_len, uint8_t *hyper_buf, size_t hyper_cap, size_t *hyper_len,
               tf_task_t *task, tf_round_report *report, const char **code) {
    tf_mlp *m = d->mlp;
    const uint32_t all = (1u << tf_mlp_tensor_count(m)) - 1u;
    *update_len = 0;
    if (hyper_len) *hyper_len = 0;
    *code = "ok";
    reason[0] = '\0';
    tf_task_status_t ts = tf_task_parse(task_json, task_len, tf_mlp_tensor_count(m), task);
    if (ts != TF_TASK_OK) { *code = tf_task_error_code(ts); return 1; }
    const uint32_t shared = all & ~task->private_mask;
    const uint32_t n_in = m->sizes[0], n_out = d->classify ? 1 : m->sizes[m->n_layers];
    /* the probe, and the shots when they are replayed, else one slot the fresh samples pass through */
    size_t need = ((size_t)task->probe + (task->epochs > 1 && task->shots > 1 ? task->shots : 1)) * (n_in + n_out);
    if (need > d->replay_floats) { /* the firmware's buffer */
        say_needs("task", 4ull * need, "sample buffer (probe + replayed shots)", 4ull * d->replay_floats);
        *code = "too-many";
        return 1;
    }
    tfw_info_t info; /* θ is checked against the weight table before anything changes */
    memcpy(d->theta, m->params, m->n_params * sizeof(float)); /* to restore if a check after θ's refuses */
    tfw_status_t ws = tfw_read_model(model, model_len, model_cap, task->round_id, m, shared, &info);
    if (ws == TFW_SPEC_MISMATCH && too_large(d, task, model, model_len, model_cap)) { *code = "too-large"; return 1; }
    if (ws != TFW_OK) { *code = tfw_error_code(ws); return 1; }
    const char *refused = NULL;
    if (task->imprint && !imprintable(d, task->private_mask)) refused = "bad-field"; /* run_device_round, after θ */
    const int measuring = ops && task->measures_step_sizes;
    if (!refused && measuring) refused = ops->check(d, mem, task, step_sizes, step_sizes_len, model_cap, hyper_buf);
    if (refused) {
        memcpy(m->params, d->theta, m->n_params * sizeof(float));
        *code = refused;
        return 1;
    }
    for (uint32_t t = 0; t < tf_mlp_tensor_count(m); ++t)
        if (task->private_mask & (1u << t)) {
            uint32_t count;
            float *p = tf_mlp_tensor(m, t, &count);
            memcpy(p, d->local_init + (p - m->params), count * sizeof(float));
        }
    memcpy(d->theta, m->params, m->n_params * sizeof(float));

    ctx_t c = {d, n_in, n_out, d->replay, d->replay + (size_t)task->probe * (n_in + n_out)};
    tf_round_report r = {NAN, NAN, NAN, NAN, task->reconstruction_samples + task->shots, 0, 0,
                         task->radio ? (uint32_t)(task_len + model_len + (measuring ? step_sizes_len : 0)) : 0, 0, 0};
    for (uint32_t s = 0; s < task->probe; ++s) {
        float *x = c.probe + (size_t)s * (n_in + n_out);
        if (pull(d, x, x + n_in)) { *code = "stream-ended"; return 1; }
        if (d->classify && !(x[n_in] >= 0.0f && x[n_in] < (float)m->sizes[m->n_layers] && x[n_in] == (float)(uint32_t)x[n_in])) {
            *code = "bad-label";
            return 1;
        }
    }
    if (task->imprint ? imprint(&c, task->reconstruction_samples, &r.reconstruction_loss, &r.steps, code)
                      : train(&c, task->reconstruction_samples, 1, (float)task->reconstruction_lr, task->private_mask, 0,
                              &r.reconstruction_loss, &r.steps, code))
        return 1;
    r.loss_before = probe_loss(&c, task->probe);
    if (train(&c, task->shots, task->epochs, (float)task->learning_rate, shared, task->epochs > 1, &r.prequential_loss,
              &r.steps, code))
        return 1;
    r.loss_after = probe_loss(&c, task->probe);
    size_t hlen = 0;
    if (measuring && ops->measure(d, mem, task, &r, hyper_buf, hyper_cap, &hlen, code)) return 1;
    *update_len = encode(d, task, &info, shared, (uint32_t)hlen, &r, update, update_cap, code);
    /* the length booked is the length written (the metric values do not change it) */
    if (*update_len && r.bytes_sent && r.bytes_sent != *update_len + hlen) { *code = "length-mismatch"; *update_len = 0; }
    if (hyper_len) *hyper_len = *update_len ? hlen : 0;
    if (report) *report = r;
    return *update_len ? 0 : 1;
}

int tf_round_run(tf_device *d, const char *task_json, size_t task_len, const uint8_t *model, size_t model_len,
                 size_t model_cap, uint8_t *update, size_t update_cap, size_t *update_len, tf_task_t *task,
                 tf_round_report *report, const char **code) {
    return run(d, NULL, task_json, task_len, model, model_len, NULL, 0, NULL, model_cap, update, update_cap, update_len, NULL, 0,
               NULL, task, report, code);
}

int tf_round_run_step_sizes(tf_device *d, const tf_step_size_memory *memory, const char *task_json, size_t task_len,
                            const uint8_t *model, size_t model_len, const uint8_t *step_sizes, size_t step_sizes_len,
                            size_t receive_cap, uint8_t *update,
                            size_t update_cap, size_t *update_len, uint8_t *hypergradient_buf, size_t hypergradient_cap,
                            size_t *hypergradient_len, tf_task_t *task, tf_round_report *report, const char **code) {
    static const step_size_ops OPS = {check_step_sizes, hypergradient};
    return run(d, memory, task_json, task_len, model, model_len, step_sizes, step_sizes_len, &OPS, receive_cap, update, update_cap,
               update_len, hypergradient_buf, hypergradient_cap, hypergradient_len, task, report, code);
}
