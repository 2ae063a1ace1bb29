/* round.h - the one device round in firmware C: edge/device_round.py's run_device_round as
 * firmware_sim.mqtt_round.run_task drives it, TASK and MODEL bytes in, UPDATE bytes out.
 *
 *   1. parse the TASK (task.h) and check the MODEL against the shared part of
 *      the weight table (update.h); refuse, changing nothing, with the Python code;
 *   2. install θ, and the firmware's local init for the private tensors;
 *   3. hold back `probe` samples; rebuild the private part by SGD on
 *      `reconstruction-samples` samples (shared part frozen), or, with
 *      reconstruction-rule "imprint", a classifier's output layer from class
 *      means (tf_mlp_imprint_one; anything else is refused as bad-field after
 *      the MODEL's check, as check_imprintable refuses it); score the probe;
 *      adapt the shared part on `stream-samples` samples, `local-epochs` passes
 *      (private part frozen); score the probe again (edge.reconstruction.reconstruct_and_adapt);
 *   4. reply δ = φ − θ dense, or its Top-P entries (edge.wire.top_p_sparsify),
 *      or no tensors for an evaluation round, with the metrics run_task sends.
 *
 * Samples come from a callback, one (x, y) at a time, as from a sensor. The
 * round keeps the probe samples and, for more than one epoch, the shots in the
 * caller's replay buffer, where fresh samples also pass through one slot: (probe
 * + max(shots if replayed, 1)) * (n_in + n_y) floats, n_y = n_out (1 for a
 * classifier's label); a task needing more is refused as "too-many", with its
 * numbers (tf_round_refusal_reason). Inputs of any width the MLP takes. Time and energy are the firmware's
 * own books: a callback reports them (e.g. ticks times the board's profile).
 */
#ifndef TINYFLEET_DEVICE_ROUND_H
#define TINYFLEET_DEVICE_ROUND_H

#include <stddef.h>
#include <stdint.h>

#include "mlp.h"
#include "task.h"
#include "update.h"

/* Next sample of the stream into x[n_in], y[n_out] (a classifier: y[0] = the class label); non-zero if none. */
typedef int (*tf_sample_fn)(void *ctx, float *x, float *y);

typedef struct {
    float loss_before, loss_after;   /* probe loss with θ (and the rebuilt private part), then with φ; NaN if no probe */
    float prequential_loss;          /* mean loss before each adaptation step (first pass); NaN if no shots */
    float reconstruction_loss;       /* mean loss while rebuilding the private part; NaN if none */
    uint32_t num_examples;           /* reconstruction + adaptation samples */
    uint32_t steps;                  /* SGD steps taken */
    uint32_t kept;                   /* entries of a sparse reply */
    uint32_t bytes_received;         /* TASK + MODEL bytes (0 if the task says radio false, as Python books it) */
    uint32_t bytes_sent;             /* the UPDATE's length, known before its metrics are (0 if radio false),
                                      * plus the HYPERGRADIENT's when one goes before it */
    int hypergradient_dropped;       /* step sizes came but the hypergradient was not finite: the UPDATE went alone */
} tf_round_report;

/* The device's time and energy for the round (the metrics device-time-s and device-energy-j). */
typedef void (*tf_costs_fn)(void *ctx, const tf_round_report *report, float *time_s, float *energy_j);

typedef struct {
    tf_mlp *mlp;
    const float *local_init;   /* mlp->n_params floats: the weights the firmware ships with */
    float *theta;              /* mlp->n_params floats of scratch */
    float *replay;             /* replay buffer (see above) */
    size_t replay_floats;
    const char *device_id;
    tf_sample_fn next;
    void *stream;
    tf_costs_fn costs;
    void *costs_ctx;
    int classify;              /* 1: the MLP is MLPClassifier (softmax cross-entropy on a label), 0: NumpyMLP */
} tf_device;

/* The memory of a round that measures step sizes (tf_round_run_step_sizes), the caller's: */
typedef struct {
    float *scales;             /* mlp->n_params floats: the round's STEP_SIZES */
    float *scratch;            /* the hypergradient's: tf_round_step_size_floats() floats for the task's shots, query */
    size_t scratch_floats;
} tf_step_size_memory;

/* One round. Returns 0 and the UPDATE in update[0..*update_len), or non-zero with *code the refusal
 * ("bad-field", "bad-crc", ..., "too-many", "stream-ended", "diverged", "bad-label", "too-large").
 * "too-large": the MODEL is an MLP (w0, b0, ... chained) that is not this firmware's and needs more RAM to train
 * than the device's arena and θ buffer hold (a smaller one stays "spec-mismatch", as Python says). */
int tf_round_run(tf_device *d, const char *task_json, size_t task_len, const uint8_t *model, size_t model_len,
                 size_t model_cap, uint8_t *update, size_t update_cap, size_t *update_len, tf_task_t *task,
                 tf_round_report *report, const char **code);

/* Why the last refused round was refused, in numbers, when its code alone does not say it: "" or e.g.
 * "model 1-64-64-1 needs 53,268 B of RAM to train, device has 23,180 B" ("too-large"), "task needs 4,808 B of
 * sample buffer (probe + replayed shots), device has 4,096 B" ("too-many"). A static buffer, overwritten by the
 * next round (the firmware is single-threaded). */
const char *tf_round_refusal_reason(void);

/* The same round with the step sizes' hypergradient (edge/device_round.py measure_hypergradient), as
 * mqtt_round.run_task with a STEP_SIZES payload: when the task measures step sizes (a whole-model training
 * round naming step-size-base-rate/-shots/-query), `step_sizes` must be the round's STEP_SIZES (else
 * "bad-field"; its faults refused with the decoder's codes, "non-positive" included) and the learner the
 * regressor ("bad-field" for a classifier), all before anything changes. After the round's own samples the
 * device takes step-size-shots + step-size-query more, measures d(query loss)/d(log step size) from θ, and
 * writes the HYPERGRADIENT (encode_hypergradient: num_examples shots + query, the metric
 * step-size-query-loss) in hypergradient_buf, to be sent before the UPDATE; *hypergradient_len is 0 when
 * the task does not measure step sizes or the hypergradient is not finite (report->hypergradient_dropped).
 * The bytes booked (received and sent) include these payloads, as Python books them. `receive_cap` bounds
 * the MODEL and the STEP_SIZES alike (the device's receive buffer). A `memory` too small for the task's
 * shots and query (or NULL) refuses it as "too-many", the firmware's buffer, after the checks above. */
int tf_round_run_step_sizes(tf_device *d, const tf_step_size_memory *memory, const char *task_json, size_t task_len,
                            const uint8_t *model, size_t model_len, const uint8_t *step_sizes, size_t step_sizes_len,
                            size_t receive_cap, uint8_t *update,
                            size_t update_cap, size_t *update_len, uint8_t *hypergradient_buf, size_t hypergradient_cap,
                            size_t *hypergradient_len, tf_task_t *task, tf_round_report *report, const char **code);

/* Floats of d->step_scratch a round measuring step sizes with these shots and query needs: the hypergradient,
 * the K + Q samples and the K intermediate weight sets with four more (tf_mlp_hypergradient_floats). */
size_t tf_round_step_size_floats(const tf_device *d, uint32_t shots, uint32_t query);

#endif
