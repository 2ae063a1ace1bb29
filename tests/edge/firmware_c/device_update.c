/* Test main: the device's wire codec (edge/firmware/device/update.c). The test generates cases.h with
 * MODEL payloads (good and corrupted) and the tensors of an UPDATE; this prints, per case, the decoder's
 * code and whether the MLP kept its weights, the decoded weights of the good cases, and the bytes of the
 * dense and sparse UPDATEs it encodes, for Python to compare with edge.wire. Host and board alike. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mlp.h"
#include "update.h"
#include "cases.h" /* N_LAYERS, SIZES, N_PARAMS, CASES[N_CASES], ENC_*, SP_* */

static float arena[2 * N_PARAMS + 512];
static uint8_t out[TFW_DEFAULT_MAX_PAYLOAD];

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void dump(const char *tag, const uint8_t *p, size_t n) {
    printf("%s %lu ", tag, (unsigned long)n);
    for (size_t i = 0; i < n; i++) printf("%02x", p[i]);
    printf("\n");
}

int main(void) {
    static const uint32_t sizes[N_LAYERS + 1] = SIZES;
    tf_mlp m;
    if (tf_mlp_init(&m, N_LAYERS, sizes, arena, sizeof arena / sizeof arena[0]) != TF_MLP_OK) return 2;
    for (unsigned c = 0; c < N_CASES; c++) {
        for (uint32_t i = 0; i < m.n_params; i++) m.params[i] = -7.0f; /* sentinel: a refusal must leave it */
        tfw_info_t info;
        tfw_status_t s = tfw_read_model(CASES[c].data, CASES[c].len, CASES[c].cap, CASES[c].round_id, &m, CASES[c].shared, &info);
        int kept = 1;
        for (uint32_t i = 0; i < m.n_params; i++) kept &= m.params[i] == -7.0f;
        printf("case %u %s kept %d\n", c, tfw_error_code(s), kept);
        if (s == TFW_OK) {
            printf("w");
            for (uint32_t i = 0; i < m.n_params; i++) printf(" %08lx", (unsigned long)bits(m.params[i]));
            printf("\n");
        }
    }
    /* a dense UPDATE of ENC_PARAMS as the MLP's tensors */
    memcpy(m.params, ENC_PARAMS, sizeof ENC_PARAMS);
    tfw_writer w;
    tfw_begin(&w, out, sizeof out, TFW_KIND_UPDATE, ENC_ROUND, ENC_EXAMPLES, ENC_DEVICE, 2, (uint16_t)tf_mlp_tensor_count(&m));
    tfw_metric(&w, "loss-before", ENC_M0);
    tfw_metric(&w, "loss-after", ENC_M1);
    for (uint32_t t = 0; t < tf_mlp_tensor_count(&m); t++) {
        uint32_t layer = t / 2, shape[2] = {sizes[layer], sizes[layer + 1]};
        if (t % 2) shape[0] = sizes[layer + 1];
        tfw_dense_f32(&w, tfw_mlp_tensor_name(t), t % 2 ? 1 : 2, shape, tf_mlp_tensor(&m, t, NULL));
    }
    size_t n = tfw_finish(&w);
    printf("dense_status %s\n", tfw_error_code(w.status));
    dump("dense", out, n);
    /* a sparse UPDATE: SP_COUNT entries of w1, none of b0 */
    tfw_begin(&w, out, sizeof out, TFW_KIND_UPDATE, ENC_ROUND, ENC_EXAMPLES, ENC_DEVICE, 0, 2);
    uint32_t w1_shape[2] = {sizes[1], sizes[2]}, b0_shape[1] = {sizes[1]};
    tfw_sparse_f32(&w, "w1", 2, w1_shape, SP_COUNT, SP_INDICES, SP_VALUES);
    tfw_sparse_f32(&w, "b0", 1, b0_shape, 0, SP_INDICES, SP_VALUES);
    n = tfw_finish(&w);
    printf("sparse_status %s\n", tfw_error_code(w.status));
    dump("sparse", out, n);
    /* the encoder refuses what Python's refuses */
    float nan_value[1] = {0.0f};
    nan_value[0] = nan_value[0] / nan_value[0];
    uint32_t one[1] = {1};
    tfw_begin(&w, out, sizeof out, TFW_KIND_UPDATE, 0, 0, "mcu-01", 0, 1);
    tfw_dense_f32(&w, "x", 1, one, nan_value);
    printf("refuse_nan %s %lu\n", tfw_error_code(w.status), (unsigned long)tfw_finish(&w));
    tfw_begin(&w, out, sizeof out, TFW_KIND_UPDATE, 0, 0, "bad/id", 0, 0);
    printf("refuse_id %s\n", tfw_error_code(w.status));
    tfw_begin(&w, out, 40, TFW_KIND_UPDATE, 0, 0, "mcu-01", 0, 1);
    tfw_dense_f32(&w, "w", 2, w1_shape, ENC_PARAMS);
    printf("refuse_room %s %lu\n", tfw_error_code(w.status), (unsigned long)tfw_finish(&w));
    printf("done\n");
    return 0;
}
