/* mps2-an386 constants (QEMU): SYSCLK 25 MHz; with -icount shift=0 an
 * instruction is 1 ns of virtual time, so one timer tick is 40 instructions. */
#ifndef TINYFLEET_BOARD_CONFIG_H
#define TINYFLEET_BOARD_CONFIG_H
#define BOARD_NAME "mps2-an386"
#define BOARD_TICK_HZ 25000000u
#define BOARD_INSTRUCTIONS_PER_TICK 40u
#endif
