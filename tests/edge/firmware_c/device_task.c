/* Test main: the device's TASK parser (edge/firmware/device/task.c) on the tasks the test generated into
 * tasks.h; prints each one's code and, when accepted, the request's fields, for Python to compare with
 * TaskAssignment.from_json + RoundRequest.from_hyperparameters. Host and board alike. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "task.h"
#include "tasks.h" /* N_TASKS, TASKS[] = {data, len} */

#ifdef __arm__
#include "board.h"
#include "board_config.h"
#define TICKS() board_ticks()
#else
#define TICKS() 0u
#define BOARD_INSTRUCTIONS_PER_TICK 0u
#endif

static uint64_t bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

int main(void) {
    for (unsigned i = 0; i < N_TASKS; i++) {
        tf_task_t t;
        memset(&t, 0, sizeof t);
        uint32_t t0 = TICKS();
        tf_task_status_t s = tf_task_parse((const char *)TASKS[i].data, TASKS[i].len, 6, &t);
        uint32_t t1 = TICKS();
        printf("instructions %u %lu\n", i, (unsigned long)(t1 - t0) * BOARD_INSTRUCTIONS_PER_TICK);
        printf("task %u %s", i, tf_task_error_code(s));
        if (s == TF_TASK_OK)
            printf(" %lu %lu %d %lu %lu %lu %08lx%08lx %lu %lu %08lx%08lx %08lx%08lx %d %d", (unsigned long)t.round_id,
                   (unsigned long)t.server_round, t.evaluate, (unsigned long)t.shots, (unsigned long)t.epochs,
                   (unsigned long)t.probe, (unsigned long)(bits(t.learning_rate) >> 32),
                   (unsigned long)(bits(t.learning_rate) & 0xFFFFFFFFu), (unsigned long)t.private_mask,
                   (unsigned long)t.reconstruction_samples, (unsigned long)(bits(t.reconstruction_lr) >> 32),
                   (unsigned long)(bits(t.reconstruction_lr) & 0xFFFFFFFFu), (unsigned long)(bits(t.top_p) >> 32),
                   (unsigned long)(bits(t.top_p) & 0xFFFFFFFFu), t.radio, t.imprint);
        if (s == TF_TASK_OK)
            printf(" %d %08lx%08lx %lu %lu", t.measures_step_sizes, (unsigned long)(bits(t.step_size_base_rate) >> 32),
                   (unsigned long)(bits(t.step_size_base_rate) & 0xFFFFFFFFu), (unsigned long)t.step_size_shots,
                   (unsigned long)t.step_size_query);
        printf("\n");
    }
    printf("done\n");
    return 0;
}
