/* Test main: K SGD steps of the device MLP (edge/firmware/device/mlp.c) from weights and samples the test
 * generated into vectors.h; prints each step's loss and then phi as float32 bit patterns, one per line,
 * so Python compares them with NumpyMLP. Builds on the host (cc) and for the board (arm-none-eabi-gcc),
 * where it also counts the ticks of TIMING_STEPS more steps (x BOARD_INSTRUCTIONS_PER_TICK under -icount).
 * With CLASSIFY, the softmax cross-entropy step of MLPClassifier on labels YS; with AFTER_FORWARD, each step is
 * the forward pass then tf_mlp_update_after_forward (the update of a device that has just run its inference).
 * With IMPRINT, tf_mlp_imprint_one on labels YS instead of a step.
 * The board build also prints update_ticks: TIMING_STEPS updates after a forward pass, without the passes (and
 * with CLASSIFY imprint_ticks, an imprint's cost beyond its forward pass). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mlp.h"
#include "vectors.h" /* N_LAYERS, SIZES, N_PARAMS, INIT[], N_STEPS, XS[], YS[], LR, TRAINABLE */

#ifdef __arm__
#include "board.h"
#include "board_config.h"
#endif

static float arena[2 * N_PARAMS + 2048]; /* + activations and two deltas (inputs up to ~1,500 wide) */
#if defined(IMPRINT) || (defined(CLASSIFY) && defined(__arm__) && defined(TIMING_STEPS))
static float counts[4096];
#endif

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

int main(void) {
    static const uint32_t sizes[N_LAYERS + 1] = SIZES;
    tf_mlp m;
    int rc = tf_mlp_init(&m, N_LAYERS, sizes, arena, sizeof arena / sizeof arena[0]);
    if (rc != TF_MLP_OK || m.n_params != N_PARAMS) {
        printf("init failed rc=%d\n", rc);
        return 2;
    }
    const uint32_t n_in = sizes[0], n_out = sizes[N_LAYERS];
    (void)n_out; /* unused with CLASSIFY: one label per sample */
    memcpy(m.params, INIT, sizeof INIT);
    for (uint32_t s = 0; s < N_STEPS; ++s) {
        float loss = -1.0f;
#if defined(IMPRINT) /* imprint the output layer from class means (YS: labels), the counts from zero */
        rc = tf_mlp_imprint_one(&m, &XS[s * n_in], (uint32_t)YS[s], counts, &loss);
#elif defined(CLASSIFY) && defined(AFTER_FORWARD) /* the inference, then the update from its activations */
        tf_mlp_forward(&m, &XS[s * n_in]);
        rc = tf_mlp_update_after_forward_class(&m, (uint32_t)YS[s], LR, TRAINABLE, &loss);
#elif defined(CLASSIFY) /* YS holds one class label per sample (MLPClassifier) */
        rc = tf_mlp_learn_one_class(&m, &XS[s * n_in], (uint32_t)YS[s], LR, TRAINABLE, &loss);
#elif defined(AFTER_FORWARD)
        tf_mlp_forward(&m, &XS[s * n_in]);
        rc = tf_mlp_update_after_forward(&m, &YS[s * n_out], LR, TRAINABLE, &loss);
#else
        rc = tf_mlp_learn_one(&m, &XS[s * n_in], &YS[s * n_out], LR, TRAINABLE, &loss);
#endif
        printf("loss %lu %d %08lx\n", (unsigned long)s, rc, (unsigned long)bits(loss));
    }
    for (uint32_t i = 0; i < m.n_params; ++i) printf("p %08lx\n", (unsigned long)bits(m.params[i]));
#if defined(__arm__) && defined(TIMING_STEPS)
    memcpy(m.params, INIT, sizeof INIT);
    float loss;
    uint32_t t0 = board_ticks();
    for (uint32_t s = 0; s < TIMING_STEPS; ++s)
#ifdef CLASSIFY
        tf_mlp_learn_one_class(&m, &XS[(s % N_STEPS) * n_in], (uint32_t)YS[s % N_STEPS], LR, TRAINABLE, &loss);
#else
        tf_mlp_learn_one(&m, &XS[(s % N_STEPS) * n_in], &YS[(s % N_STEPS) * n_out], LR, TRAINABLE, &loss);
#endif
    uint32_t t1 = board_ticks();
    printf("ticks %lu steps %lu per_tick %lu\n", (unsigned long)(t1 - t0), (unsigned long)TIMING_STEPS,
           (unsigned long)BOARD_INSTRUCTIONS_PER_TICK);
    volatile float sink = 0.0f;
    t0 = board_ticks();
    for (uint32_t s = 0; s < TIMING_STEPS; ++s) sink += tf_mlp_forward(&m, &XS[(s % N_STEPS) * n_in])[0];
    t1 = board_ticks();
    printf("forward_ticks %lu\n", (unsigned long)(t1 - t0));
    /* the update after the inference (TinyOL's head update): the same forward passes, each followed by
     * tf_mlp_update_after_forward; minus the forward passes alone. With only the output layer trainable the
     * hidden activations are those of the loop above, so the difference is the update's exact cost. */
    uint32_t forward_only = t1 - t0;
    memcpy(m.params, INIT, sizeof INIT);
    t0 = board_ticks();
    for (uint32_t s = 0; s < TIMING_STEPS; ++s) {
        sink += tf_mlp_forward(&m, &XS[(s % N_STEPS) * n_in])[0];
#ifdef CLASSIFY
        tf_mlp_update_after_forward_class(&m, (uint32_t)YS[s % N_STEPS], LR, TRAINABLE, &loss);
#else
        tf_mlp_update_after_forward(&m, &YS[(s % N_STEPS) * n_out], LR, TRAINABLE, &loss);
#endif
    }
    t1 = board_ticks();
    printf("forward_update_ticks %lu update_ticks %ld\n", (unsigned long)(t1 - t0), (long)(t1 - t0) - (long)forward_only);
#ifdef CLASSIFY
    /* imprinting (its own forward pass included), then less the forward passes alone: the imprint's own cost */
    memcpy(m.params, INIT, sizeof INIT);
    memset(counts, 0, sizeof counts);
    t0 = board_ticks();
    for (uint32_t s = 0; s < TIMING_STEPS; ++s) tf_mlp_imprint_one(&m, &XS[(s % N_STEPS) * n_in], (uint32_t)YS[s % N_STEPS], counts, &loss);
    t1 = board_ticks();
    printf("forward_imprint_ticks %lu imprint_ticks %ld\n", (unsigned long)(t1 - t0), (long)(t1 - t0) - (long)forward_only);
#endif
#endif
    printf("done\n");
    return 0;
}
