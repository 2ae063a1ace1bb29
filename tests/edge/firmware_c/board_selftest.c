/* Board self-test image: printf over UART0, float math (FPU on), semihosting
 * text, timer ticks, UART echo of stdin until '\n', exit status from argv-less
 * main. The test checks each of these on the host side. */
#include <stdio.h>

#include "board.h"
#include "board_config.h"

static volatile float sink;

static uint32_t loop_ticks(int n) {
    uint32_t t0 = board_ticks();
    for (volatile int i = 0; i < n; i++) {
    }
    return board_ticks() - t0;
}

int main(void) {
    volatile float a = 1.5f, b = 2.25f;
    sink = a * b;
    printf("board=%s product_x100=%d\n", BOARD_NAME, (int)(sink * 100.0f));
    board_debug("semihosting ok\n");
    printf("ticks1000=%lu ticks2000=%lu\n", (unsigned long)loop_ticks(1000), (unsigned long)loop_ticks(2000));
#ifdef ECHO
    board_uart_write((const uint8_t *)"READY\n", 6);
    for (;;) {
        uint8_t c = board_uart_getc();
        board_uart_putc(c);
        if (c == '\n') break;
    }
#endif
#ifdef FAULT
    *(volatile uint32_t *)0xFFFFFFF0u = 1u;
#endif
    return EXIT_STATUS;
}
