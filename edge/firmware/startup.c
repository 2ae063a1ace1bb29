/* startup.c - reset handler shared by every Cortex-M4F board.
 *
 * Why: -nostartfiles gives us no crt0, so this copies .data, zeroes .bss,
 * turns the FPU on (CPACR, before any float instruction, or it hard-faults),
 * lets the board set VTOR and peripherals, runs main() and exits with its
 * status. Each board supplies the vector table (its IRQ count differs).
 */
#include <stdint.h>

#include "board.h"

extern uint32_t __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
int main(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void Reset_Handler(void) {
    uint32_t *src = &__etext;
    for (uint32_t *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    SCB_CPACR |= 0xFu << 20; /* CP10 + CP11 full access */
    __asm volatile("dsb\n isb" ::: "memory");
    board_init();
    board_exit(main());
}

/* A fault ends the run with status 127 so a test sees it instead of hanging. */
void HardFault_Handler(void) {
    board_debug("tinyfleet: HardFault\n");
    board_exit(127);
}

void Default_Handler(void) {
    board_debug("tinyfleet: unexpected interrupt\n");
    board_exit(126);
}

/* newlib hooks: printf goes to the UART; no files. */
int _write(int fd, const char *buf, int len) {
    (void)fd;
    board_uart_write((const uint8_t *)buf, (size_t)len);
    return len;
}
void _init(void) {}
void _fini(void) {}
