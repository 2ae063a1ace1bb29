/* mlp.h - the float32 multilayer perceptron a device trains one sample at a time.
 *
 * The C twin of edge/mlp.py's NumpyMLP (the 1-40-40-1 sine regressor): tanh on
 * hidden layers, linear output, mean-squared-error loss, one SGD step per
 * sample, every gradient computed from the weights before the step. Weights are
 * stored as NumpyMLP names them, w0, b0, w1, b1, ... in that order, each in C
 * order (w_i is fan_in x fan_out, row-major), contiguously in `params`: the
 * order a MODEL payload lists them in.
 *
 * Memory: the caller owns one float arena (tf_mlp_arena_floats() says how
 * many); nothing is allocated. Layout of the arena:
 *
 *   | params (n_params) | grads (n_params) | activations (sum of sizes) | delta | delta' |
 *
 * Order of operations (so the numpy reference can be matched): z_j = (sum_k
 * h_k w_kj, k ascending) + b_j; the output delta is (out - y) * (2 / out_dim);
 * the previous delta is (sum_j delta_j w_kj, j ascending) * (1 - a_k^2). What
 * float32 cannot make identical is numpy's BLAS summation order and tanh; see
 * tests/edge/test_firmware_device_mlp.py for the tolerance this gives.
 *
 * Back-propagation stops at the lowest layer that trains: with w2, b2 alone
 * trainable (a head update, TinyMetaFed's private part) no delta is propagated
 * into the hidden layers, so a head step costs the head's multiply-adds, not
 * three times the model's. Results are those of the full pass (the gradients
 * of the trained tensors do not depend on the ones below). The one difference
 * from NumpyMLP: it refuses a step when any weight would become non-finite,
 * frozen ones included; this checks the tensors it computes gradients for
 * (every tensor from the lowest trained layer up), since the others' are never
 * formed.
 */
#ifndef TINYFLEET_DEVICE_MLP_H
#define TINYFLEET_DEVICE_MLP_H

#include <stddef.h>
#include <stdint.h>

#define TF_MLP_MAX_LAYERS 4 /* weight layers; 8 tensors */
#define TF_MLP_MAX_TENSORS (2 * TF_MLP_MAX_LAYERS)

enum {
    TF_MLP_OK = 0,
    TF_MLP_BAD_SHAPE = 1,   /* layer sizes out of range */
    TF_MLP_NO_ROOM = 2,     /* arena too small */
    TF_MLP_NON_FINITE = 3,  /* a sample was NaN/Inf */
    TF_MLP_DIVERGED = 4,    /* the step would leave a non-finite weight: refused, weights untouched */
};

typedef struct {
    uint32_t n_layers;                       /* weight layers (sizes has n_layers + 1 entries) */
    uint32_t sizes[TF_MLP_MAX_LAYERS + 1];
    uint32_t n_params;
    float *params;                           /* w0, b0, w1, b1, ... contiguous */
    float *grads;                            /* same layout as params */
    float *w[TF_MLP_MAX_LAYERS], *b[TF_MLP_MAX_LAYERS];
    float *gw[TF_MLP_MAX_LAYERS], *gb[TF_MLP_MAX_LAYERS];
    float *act[TF_MLP_MAX_LAYERS + 1];       /* act[0] = input, act[n_layers] = output */
    float *delta, *delta_prev;
    size_t arena_floats;                     /* the caller's arena, as given to tf_mlp_init (what the device has) */
} tf_mlp;

/* Floats the arena must hold for these sizes; 0 if the sizes are refused. */
size_t tf_mlp_arena_floats(uint32_t n_layers, const uint32_t *sizes);

/* Lay the MLP out in the caller's arena (weights left as they are in it; set them through params). */
int tf_mlp_init(tf_mlp *m, uint32_t n_layers, const uint32_t *sizes, float *arena, size_t arena_floats);

/* Tensor t (0 = w0, 1 = b0, ...): its values and element count. */
float *tf_mlp_tensor(const tf_mlp *m, uint32_t t, uint32_t *count);
uint32_t tf_mlp_tensor_count(const tf_mlp *m);

/* Forward pass of one sample; returns the output layer (m->act[n_layers]). */
const float *tf_mlp_forward(tf_mlp *m, const float *x);

/* Squared error of one sample, summed over outputs (the sum NumpyMLP's loss divides). */
float tf_mlp_sample_sse(tf_mlp *m, const float *x, const float *y);

/* One SGD step on (x, y): loss before the step in *loss. `trainable` is a bit mask over tensors
 * (bit t = tensor t; ~0u = all): frozen tensors keep their values, as edge.reconstruction.train_subset
 * restores them. A step that would make any weight non-finite is refused (TF_MLP_DIVERGED) and
 * changes nothing, as NumpyMLP.learn_one refuses it. */
int tf_mlp_learn_one(tf_mlp *m, const float *x, const float *y, float learning_rate, uint32_t trainable, float *loss);

/* The classification twin (edge/mlp_classifier.py, MLPClassifier.learn_one): softmax cross-entropy of class
 * `label` (0 <= label < n_out) on the logits; the loss -log(max(p_label, 1e-12)) before the step in *loss.
 * Same gradient path, trainable mask and refusals as tf_mlp_learn_one; TF_MLP_BAD_SHAPE for a bad label. */
int tf_mlp_learn_one_class(tf_mlp *m, const float *x, uint32_t label, float learning_rate, uint32_t trainable, float *loss);

/* Cross-entropy of one sample (MLPClassifier.loss over a batch of one). */
float tf_mlp_sample_cross_entropy(tf_mlp *m, const float *x, uint32_t label);

/* The update half of tf_mlp_learn_one / tf_mlp_learn_one_class, for a device that has just run
 * tf_mlp_forward(m, x) on the sample (its inference): the step from the activations that pass left in the
 * arena, without a second forward pass. tf_mlp_learn_one(m, x, y, ...) is exactly tf_mlp_forward(m, x)
 * then tf_mlp_update_after_forward(m, y, ...). This is TinyOL's "head update" (the cost on top of the
 * inference the device runs anyway): with trainable = the output layer's two bits it touches only the
 * output layer. */
int tf_mlp_update_after_forward(tf_mlp *m, const float *y, float learning_rate, uint32_t trainable, float *loss);
int tf_mlp_update_after_forward_class(tf_mlp *m, uint32_t label, float learning_rate, uint32_t trainable, float *loss);

/* Imprinting (edge/imprinting.py, Imprinter.learn_one with min_rate 0): fold sample x of class `label` into
 * that class's running mean of the last hidden layer and write the output layer's column `label` as
 * w = mean, b = -0.5 |mean|^2; counts[label] (a float per class, exact to 2^24; zero them to start a
 * layer, as a new Imprinter does) counts the samples folded in. *loss is the cross-entropy before the
 * update. TF_MLP_BAD_SHAPE for a bad label or a model with no hidden layer or < 2 classes; TF_MLP_NON_FINITE
 * for a non-finite x; TF_MLP_DIVERGED (nothing written) if the new column is not finite. */
int tf_mlp_imprint_one(tf_mlp *m, const float *x, uint32_t label, float *counts, float *loss);

/* The step sizes' hypergradient (edge/step_sizes.py, log_scale_hypergradient with regression_gradients):
 * d(mean squared error on the `query` samples after one step per `support` sample from theta, at rates
 * base_rate * scales)/d(log scale), into hyper[n_params], and that query loss in *query_loss. Samples are
 * (x[n_in], y[n_out]) rows. Hessian-vector products by central differences of two gradients, as in
 * Python. m's weights and gradients are left as they were (its activations are not); the intermediate
 * weights live in the caller's scratch, tf_mlp_hypergradient_floats() floats. Returns TF_MLP_NO_ROOM if the
 * scratch is short, else TF_MLP_OK (a non-finite result is the caller's to drop, as run_device_round does). */
size_t tf_mlp_hypergradient_floats(const tf_mlp *m, uint32_t shots);
int tf_mlp_hypergradient(tf_mlp *m, const float *theta, const float *scales, float base_rate, const float *support,
                         uint32_t shots, const float *query, uint32_t n_query, float *scratch, size_t scratch_floats,
                         float *hyper, float *query_loss);

#endif
