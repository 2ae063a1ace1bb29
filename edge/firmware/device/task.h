/* task.h - the TASK a device is given for one round (docs/protocol.md §3), parsed strictly into the round's request.
 *
 * One function does what edge.wire.TaskAssignment.from_json, then
 * edge.round_contract.RoundRequest.from_hyperparameters (via
 * firmware_sim.mqtt_round.request_of) and edge.device_round.shared_spec do in
 * Python, in their order and with their codes (tf_task_error_code() gives the
 * Python WireFormatError code: "bad-json", "bad-field", ...):
 *
 *   - strict JSON: UTF-8, 4 KiB cap, no duplicate keys at any depth, no NaN or
 *     Infinity, nothing after the object;
 *   - exactly the fields v (1), type ("task"), round_id, deadline_s,
 *     hyperparameters (<= 32 scalars named by 1..32 printable ASCII), top_p;
 *   - the round's hyperparameters by the rules of RoundRequest (counts are
 *     whole numbers, 3.0 included; rates are finite in [0, 10]; flags are
 *     booleans), with the same defaults;
 *   - private-names resolved against the firmware's weight table (w0, b0, ...).
 *
 * Where the firmware is narrower than Python, it refuses (and says so here):
 * a count above 2^32 - 1 (bad-field), nesting deeper than TF_TASK_MAX_DEPTH
 * (bad-json). reconstruction-rule "imprint" is parsed into `imprint`; the round
 * refuses it (bad-field, as Python) unless the learner is a classifier whose
 * private part is exactly its output layer. Step-size keys are checked as
 * StepSizeRequest checks them; `measures_step_sizes` says whether the round
 * measures their hypergradient (RoundRequest.measures_step_sizes: a whole-model
 * training round). tf_round_run ignores it (firmware from before kind 3,
 * STEP_SIZES, as mqtt_round.run_task(..., measures_step_sizes=False));
 * tf_round_run_step_sizes honours it. No allocation: the parser keeps the open objects' keys in a static 2.5 KB table
 * (so it is not reentrant) and recurses at most TF_TASK_MAX_DEPTH deep on the stack.
 */
#ifndef TINYFLEET_DEVICE_TASK_H
#define TINYFLEET_DEVICE_TASK_H

#include <stddef.h>
#include <stdint.h>

#define TF_TASK_MAX_BYTES 4096u
#define TF_TASK_MAX_DEPTH 16

typedef enum {
    TF_TASK_OK = 0,
    TF_TASK_OVERSIZED,       /* oversized */
    TF_TASK_BAD_JSON,        /* bad-json */
    TF_TASK_BAD_FIELD,       /* bad-field */
    TF_TASK_BAD_VERSION,     /* unsupported-version */
    TF_TASK_BAD_NAME,        /* bad-name */
    TF_TASK_TOO_MANY,        /* too-many */
    TF_TASK_NON_FINITE,      /* non-finite */
    TF_TASK_SPEC_MISMATCH,   /* spec-mismatch: a private name the firmware does not have */
    TF_TASK_N_ERRORS
} tf_task_status_t;

const char *tf_task_error_code(tf_task_status_t status);

typedef struct {
    uint32_t round_id;              /* the MODEL's round */
    double deadline_s;
    uint32_t server_round;          /* server-round (default 0) */
    int evaluate;                   /* message-type "evaluate" */
    uint32_t shots;                 /* stream-samples (10) */
    uint32_t epochs;                /* local-epochs (1, >= 1) */
    uint32_t probe;                 /* probe-samples (0) */
    double learning_rate;           /* inner-learning-rate (0.02) */
    uint32_t private_mask;          /* private-names as tensor bits (w0 = bit 0, b0 = bit 1, ...) */
    uint32_t reconstruction_samples;/* 0 unless private names are given */
    double reconstruction_lr;       /* reconstruction-lr (0.02) */
    double top_p;                   /* kept fraction in (0, 1) for a sparse reply; 0 = dense */
    int radio;                      /* radio (true) */
    int imprint;                    /* reconstruction-rule "imprint" with a private part (else SGD) */
    int measures_step_sizes;        /* step-size-* given, whole model, training: measure the hypergradient */
    double step_size_base_rate;     /* step-size-base-rate, in (0, 10] (0 if not given) */
    uint32_t step_size_shots;       /* step-size-shots (>= 1): online steps the hypergradient goes through */
    uint32_t step_size_query;       /* step-size-query (>= 1): samples the adapted model is scored on */
} tf_task_t;

/* Parse json[0..len) for a firmware whose weight table has `n_tensors` tensors (w0, b0, ... in order). */
tf_task_status_t tf_task_parse(const char *json, size_t len, uint32_t n_tensors, tf_task_t *task);

#endif
