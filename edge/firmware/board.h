/* board.h - the one board interface every TinyFleet firmware is written against.
 *
 * Why: the same application C runs on QEMU's mps2-an386 (CI) and on the
 * Arduino Nano 33 BLE Sense (nRF52840). Each board directory implements these
 * functions; nothing else in the firmware touches registers. No malloc, no OS.
 */
#ifndef TINYFLEET_BOARD_H
#define TINYFLEET_BOARD_H

#include <stddef.h>
#include <stdint.h>

/* Called by the reset handler before main(): UART, timer, interrupts. */
void board_init(void);

/* UART: blocking write; read sleeps (wfi) until a byte arrives. */
void board_uart_write(const uint8_t *data, size_t len);
void board_uart_putc(uint8_t c);
uint8_t board_uart_getc(void);
/* -1 if no byte is waiting, else the byte. Never blocks. */
int board_uart_try_getc(void);

/* Free-running tick counter (mps2-an386: 25 MHz TIMER0; with QEMU -icount
 * shift=0 one tick is BOARD_INSTRUCTIONS_PER_TICK instructions). */
uint32_t board_ticks(void);

/* Debug text on the host console (semihosting on QEMU; UART on a board). */
void board_debug(const char *text);

/* End the program: QEMU exits with this status (SYS_EXIT_EXTENDED); a board halts. */
void board_exit(int code) __attribute__((noreturn));

#endif
