/* Test main (host only): the device's MODEL decoder and TASK parser on cases read from stdin, one code per line,
 * for a differential test against edge.wire. A case is: kind u8 (1 = MODEL, 2 = TASK, 3 = STEP_SIZES), len u32, cap u32,
 * round u32, shared u32 (little-endian), then len bytes. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mlp.h"
#include "task.h"
#include "update.h"

static float arena[2 * 1761 + 512];
static uint8_t buf[70000];
static float scales[1761];

static int read_u32(uint32_t *v) {
    uint8_t b[4];
    if (fread(b, 1, 4, stdin) != 4) return 0;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 1;
}

int main(void) {
    static const uint32_t sizes[4] = {1, 40, 40, 1};
    tf_mlp m;
    if (tf_mlp_init(&m, 3, sizes, arena, sizeof arena / sizeof arena[0]) != TF_MLP_OK) return 2;
    int kind;
    while ((kind = getchar()) != EOF) {
        uint32_t len, cap, round_id, shared;
        if (!read_u32(&len) || !read_u32(&cap) || !read_u32(&round_id) || !read_u32(&shared) || len > sizeof buf) return 3;
        if (fread(buf, 1, len, stdin) != len) return 4;
        if (kind == 1) {
            printf("%s\n", tfw_error_code(tfw_read_model(buf, len, cap, round_id, &m, shared, NULL)));
        } else if (kind == 3) {
            printf("%s\n", tfw_error_code(tfw_read_step_sizes(buf, len, cap, round_id, &m, scales)));
        } else {
            tf_task_t t;
            printf("%s\n", tf_task_error_code(tf_task_parse((const char *)buf, len, 6, &t)));
        }
    }
    return 0;
}
