/* TinyOL head update as firmware C: one SGD step (or one imprint) of a dense float32 head per labelled sample.
 *
 * The same math as edge/online_head.py (OnlineHead.learn_one): the weights and bias live in one
 * row-major float32 block P = [W; b] of shape (n_features + 1, n_outputs), multiplied by the
 * augmented input [x, 1]. A step is written into a second block of the same size and swapped in
 * only if it is finite (double buffering), so a bad sample or a diverging step never touches the
 * weights a device has learned. Plain C99, no allocation, no global state: the caller owns every
 * buffer (on a microcontroller, static arrays next to the TFLite Micro tensor arena).
 */
#ifndef TINYOL_HEAD_H
#define TINYOL_HEAD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TINYOL_OK = 0,
    TINYOL_BAD_ARGUMENT = 1,     /* null buffer, zero size, label out of range, non-finite learning rate */
    TINYOL_NONFINITE_SAMPLE = 2, /* the feature vector holds NaN/Inf */
    TINYOL_NONFINITE_LABEL = 3,  /* regression target holds NaN/Inf */
    TINYOL_DIVERGED = 4          /* logits or new weights not finite (or their squared norm overflows float32) */
} tinyol_status_t;

typedef enum { TINYOL_CLASSIFICATION = 0, TINYOL_REGRESSION = 1 } tinyol_task_t;

typedef struct {
    uint32_t n_features;
    uint32_t n_outputs;
    int32_t task;   /* tinyol_task_t */
    float *params;  /* active weights, (n_features + 1) * n_outputs floats; the last row is the bias */
    float *spare;   /* same size: the step is computed here and swapped with params if finite */
    float *scratch; /* n_outputs floats: logits, then exp / residuals, then the delta row */
    const float *step_sizes; /* NULL, or (n_features + 1) * n_outputs per-weight multipliers of the learning
                              * rate laid out like params (meta-learned, edge/step_sizes.py) */
} tinyol_head_t;

/* One SGD step on one sample; on success swaps h->params and h->spare and writes the loss before the
 * step to *loss (if loss is not NULL). Classification: softmax cross-entropy (probability clipped at
 * 1e-12 in the loss), label = class index, target ignored. Regression: mean squared error over the
 * outputs, target = n_outputs floats, label ignored. On any error the weights are unchanged. */
tinyol_status_t tinyol_learn_one(tinyol_head_t *h, const float *x, int32_t label, const float *target,
                                 float learning_rate, float *loss);

/* Imprinting (edge/imprinting.py; OnlineHead.imprint_one): fold one sample into its class's running mean
 * mu and write that class's column as w = mu and its bias as -1/2 |mu|^2, so a head whose classes were all
 * imprinted is a nearest-class-mean classifier. Classification heads only. mu moves by
 * (x - mu) * max(1 / n, min_rate), n the class's count after this sample: the exact mean for min_rate 0, an
 * exponential moving average once n > 1 / min_rate. A class's first sample (count 0) overwrites its column
 * with x. Writes the cross-entropy loss before the update to *loss (if loss is not NULL).
 *
 * counts: n_outputs uint32_t owned by the caller next to the head's other buffers (a static array sized
 * like the outputs), the number of samples imprinted per class; zero it when the head starts or its
 * weights are replaced, and give a class added at run time a 0. It is the only state imprinting adds: the
 * new column is computed in h->spare (whose content is never meaningful between calls) and copied into
 * h->params only once its squared norm is finite; params and spare are not swapped. SGD steps
 * (tinyol_learn_one) may be mixed in: they fine-tune columns and leave counts alone, and the next imprint
 * of a class averages into its column as it then is. step_sizes are not used.
 *
 * Errors, with weights and counts unchanged: TINYOL_BAD_ARGUMENT (null buffer, regression head, label out
 * of range, min_rate not in [0, 1]), TINYOL_NONFINITE_SAMPLE, TINYOL_DIVERGED (logits or the new mean's
 * squared norm beyond float32). */
tinyol_status_t tinyol_imprint_one(tinyol_head_t *h, uint32_t *counts, const float *x, int32_t label, float min_rate,
                                   float *loss);

/* The head's forward pass for inference: logits z = [x, 1] . [W; b] into `logits` (n_outputs floats, caller's;
 * it may be h->scratch), summed in the same order as the step's, so a prediction and the loss a step reports
 * agree to the bit. No softmax (argmax of the logits is the class). Returns TINYOL_BAD_ARGUMENT for a null
 * buffer or an empty head, TINYOL_NONFINITE_SAMPLE if x holds NaN/Inf, TINYOL_DIVERGED if finite features
 * still give a non-finite logit; the logits are written either way. */
tinyol_status_t tinyol_predict(const tinyol_head_t *h, const float *x, float *logits);

/* Benchmark helper: `steps` classification steps cycling through `n_samples` feature vectors
 * (row-major, n_samples * n_features) and their labels, timed with clock_gettime(CLOCK_MONOTONIC)
 * around the loop. Writes the elapsed nanoseconds; returns the first non-OK status (and stops). */
tinyol_status_t tinyol_time_steps(tinyol_head_t *h, const float *xs, const int32_t *labels, uint32_t n_samples,
                                  uint32_t steps, float learning_rate, uint64_t *elapsed_ns);

/* The same for `steps` imprints (tinyol_imprint_one with `counts` and `min_rate`). */
tinyol_status_t tinyol_time_imprints(tinyol_head_t *h, uint32_t *counts, const float *xs, const int32_t *labels,
                                     uint32_t n_samples, uint32_t steps, float min_rate, uint64_t *elapsed_ns);

#ifdef __cplusplus
}
#endif

#endif /* TINYOL_HEAD_H */
