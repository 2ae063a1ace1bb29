/* update.h - the wire protocol v1 payloads a device reads and writes (docs/protocol.md §2, §6).
 *
 * Decoding: tfw_read_model() checks a received MODEL completely, in the order
 * of edge/wire/decode.py, and refuses with the same fault the Python decoder
 * names (tfw_error_code() gives its code string, e.g. "bad-crc"), then checks
 * the tensors against the device's own weight table (the MLP's tensors minus
 * the private ones: names, shapes, dense float32; "spec-mismatch"), and only
 * then copies θ into the MLP. A refused payload changes nothing.
 *
 * Encoding: a tfw_writer builds an UPDATE (or any kind) in the caller's buffer,
 * byte for byte what edge.wire.encode_weights writes for the same tensors,
 * metrics and device id, CRC32 included.
 *
 * Little-endian targets only (Cortex-M, x86-64): records are memcpy'd.
 * No allocation; the decoder keeps name pointers of one message on the stack
 * (~0.7 KB at the protocol's limits of 64 tensors and 16 metrics).
 */
#ifndef TINYFLEET_DEVICE_UPDATE_H
#define TINYFLEET_DEVICE_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "mlp.h"

enum { TFW_KIND_MODEL = 1, TFW_KIND_UPDATE = 2, TFW_KIND_STEP_SIZES = 3, TFW_KIND_HYPERGRADIENT = 4 };
#define TFW_DEFAULT_MAX_PAYLOAD 65536u

/* Refusals, one per code of edge.wire.WireFormatError that a MODEL can earn. */
typedef enum {
    TFW_OK = 0,
    TFW_OVERSIZED,          /* oversized */
    TFW_BAD_MAGIC,          /* bad-magic */
    TFW_TRUNCATED,          /* truncated */
    TFW_BAD_VERSION,        /* unsupported-version */
    TFW_TRAILING_BYTES,     /* trailing-bytes */
    TFW_BAD_CRC,            /* bad-crc */
    TFW_BAD_KIND,           /* unknown-kind (also: not the expected kind) */
    TFW_BAD_FLAGS,          /* bad-flags */
    TFW_BAD_FIELD,          /* bad-field */
    TFW_BAD_DEVICE_ID,      /* bad-device-id */
    TFW_TOO_MANY,           /* too-many */
    TFW_WRONG_ROUND,        /* wrong-round */
    TFW_BAD_NAME,           /* bad-name */
    TFW_DUPLICATE_NAME,     /* duplicate-name */
    TFW_BAD_DTYPE,          /* unknown-dtype */
    TFW_BAD_SHAPE,          /* bad-shape */
    TFW_BAD_INDICES,        /* bad-indices */
    TFW_NON_FINITE,         /* non-finite */
    TFW_BAD_PADDING,        /* bad-padding */
    TFW_SPEC_MISMATCH,      /* spec-mismatch */
    TFW_NO_ROOM,            /* encoder: the buffer is too small (Python: oversized) */
    TFW_NON_POSITIVE,       /* non-positive: a step size <= 0 in a STEP_SIZES payload */
    TFW_N_ERRORS
} tfw_status_t;

/* The Python code string of a status ("bad-crc"); "ok" for TFW_OK. */
const char *tfw_error_code(tfw_status_t status);

typedef struct {
    uint8_t kind, device_id_len;
    uint32_t total_len, round_id, num_examples;
    uint16_t tensor_count;
    uint8_t metric_count;
    uint8_t order[TF_MLP_MAX_TENSORS]; /* tfw_read_model: the MLP tensor of each wire tensor, in wire order */
} tfw_info_t;

uint32_t tfw_crc32(const uint8_t *data, size_t n);

/* Check the MODEL in buf[0..len) (cap = the device's receive buffer) for round `round_id` against the
 * MLP's tensors whose bit is set in `shared` (bit t = tensor t, as in tf_mlp_learn_one), then write θ
 * into those tensors. Any refusal leaves the MLP as it was. `info` (may be NULL) gets the header. */
tfw_status_t tfw_read_model(const uint8_t *buf, size_t len, size_t cap, uint32_t round_id, tf_mlp *m, uint32_t shared,
                            tfw_info_t *info);

/* The names and shapes of a MODEL's tensors (after every check of tfw_read_model but the weight table's), so a
 * device can say what a model it cannot hold would need; at most `max` of them (else TFW_TOO_MANY). Names are
 * NUL-terminated. */
typedef struct {
    char name[33];
    uint8_t ndim;
    uint32_t shape[4];
} tfw_tensor_shape;
tfw_status_t tfw_model_shapes(const uint8_t *buf, size_t len, size_t cap, tfw_tensor_shape *out, uint16_t max,
                              uint16_t *count);

/* decode_step_sizes(): check the STEP_SIZES in buf[0..len) for round `round_id` against every tensor of the
 * MLP (step sizes are measured in whole-model rounds), dense float32, finite and > 0 ("bad-flags" for a sparse
 * one, "non-positive"), then write them into scales[n_params], laid out as the MLP's params. A refusal writes
 * nothing. */
tfw_status_t tfw_read_step_sizes(const uint8_t *buf, size_t len, size_t cap, uint32_t round_id, const tf_mlp *m,
                                 float *scales);

/* Name of MLP tensor t as NumpyMLP names it ("w0", "b0", ...), NUL-terminated, in a static table. */
const char *tfw_mlp_tensor_name(uint32_t t);

/* ---- encoder ---- */
typedef struct {
    uint8_t *buf;
    size_t cap, pos;
    uint16_t tensors, tensors_declared;
    uint8_t metrics, metrics_declared;
    tfw_status_t status; /* first error; every call after it does nothing */
} tfw_writer;

/* Start a payload: header and device id (may be "" for none). Counts must be what follows. */
void tfw_begin(tfw_writer *w, uint8_t *buf, size_t cap, uint8_t kind, uint32_t round_id, uint32_t num_examples,
               const char *device_id, uint8_t metric_count, uint16_t tensor_count);
/* Metrics come first, then tensors, in the order the Python encoder is given them. */
void tfw_metric(tfw_writer *w, const char *name, float value);
void tfw_dense_f32(tfw_writer *w, const char *name, uint8_t ndim, const uint32_t *shape, const float *values);
/* A sparse float32 tensor: `count` strictly increasing flat indices < prod(shape) and their values. */
void tfw_sparse_f32(tfw_writer *w, const char *name, uint8_t ndim, const uint32_t *shape, uint32_t count,
                    const uint32_t *indices, const float *values);
/* Write total_len and the CRC; returns the payload length, or 0 with w->status set. */
size_t tfw_finish(tfw_writer *w);

#endif
