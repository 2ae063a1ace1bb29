/* board.c - Arduino Nano 33 BLE Sense (nRF52840). QEMU has no nRF52 machine,
 * so this is only linked in CI (sizes read with arm-none-eabi-size); it has
 * not run on hardware. UARTE0 on the Nano's TX/RX header pins (P1.03 TX,
 * P1.10 RX), one-byte EasyDMA transfers; TIMER0 at 16 MHz; VTOR = 0x10000
 * because the Arduino bootloader owns the first 64 KB.
 */
#include <stdint.h>

#include "board.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define UARTE0 0x40002000u
#define UARTE_TASKS_STARTRX REG(UARTE0 + 0x000)
#define UARTE_TASKS_STARTTX REG(UARTE0 + 0x008)
#define UARTE_EVENTS_ENDRX REG(UARTE0 + 0x110)
#define UARTE_EVENTS_ENDTX REG(UARTE0 + 0x120)
#define UARTE_ENABLE REG(UARTE0 + 0x500)
#define UARTE_PSEL_TXD REG(UARTE0 + 0x50C)
#define UARTE_PSEL_RXD REG(UARTE0 + 0x514)
#define UARTE_BAUDRATE REG(UARTE0 + 0x524)
#define UARTE_RXD_PTR REG(UARTE0 + 0x534)
#define UARTE_RXD_MAXCNT REG(UARTE0 + 0x538)
#define UARTE_TXD_PTR REG(UARTE0 + 0x544)
#define UARTE_TXD_MAXCNT REG(UARTE0 + 0x548)
#define BAUD_115200 0x01D7E000u
#define PIN_P1(n) (32u + (n))

#define TIMER0 0x40008000u
#define TIMER_TASKS_START REG(TIMER0 + 0x000)
#define TIMER_TASKS_CAPTURE0 REG(TIMER0 + 0x040)
#define TIMER_MODE REG(TIMER0 + 0x504)
#define TIMER_BITMODE REG(TIMER0 + 0x508)
#define TIMER_PRESCALER REG(TIMER0 + 0x510)
#define TIMER_CC0 REG(TIMER0 + 0x540)

#define SCB_VTOR REG(0xE000ED08u)
#define SCB_AIRCR REG(0xE000ED0Cu)

extern uint32_t __StackTop;
void Reset_Handler(void);
void HardFault_Handler(void);
void Default_Handler(void);

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16 + 48])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, Default_Handler, HardFault_Handler,
    HardFault_Handler, HardFault_Handler, HardFault_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
};

static uint8_t rx_byte;  /* EasyDMA needs RAM buffers */
static uint8_t tx_byte;

void board_init(void) {
    SCB_VTOR = 0x10000u;
    UARTE_PSEL_TXD = PIN_P1(3);
    UARTE_PSEL_RXD = PIN_P1(10);
    UARTE_BAUDRATE = BAUD_115200;
    UARTE_ENABLE = 8u;
    UARTE_RXD_PTR = (uint32_t)&rx_byte;
    UARTE_RXD_MAXCNT = 1u;
    UARTE_EVENTS_ENDRX = 0u;
    UARTE_TASKS_STARTRX = 1u;
    TIMER_MODE = 0u;
    TIMER_BITMODE = 3u;   /* 32 bit */
    TIMER_PRESCALER = 0u; /* 16 MHz */
    TIMER_TASKS_START = 1u;
}

void board_uart_putc(uint8_t c) {
    tx_byte = c;
    UARTE_TXD_PTR = (uint32_t)&tx_byte;
    UARTE_TXD_MAXCNT = 1u;
    UARTE_EVENTS_ENDTX = 0u;
    UARTE_TASKS_STARTTX = 1u;
    while (!UARTE_EVENTS_ENDTX) {
    }
}

void board_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) board_uart_putc(data[i]);
}

int board_uart_try_getc(void) {
    if (!UARTE_EVENTS_ENDRX) return -1;
    uint8_t c = rx_byte;
    UARTE_EVENTS_ENDRX = 0u;
    UARTE_TASKS_STARTRX = 1u;
    return c;
}

uint8_t board_uart_getc(void) {
    int c;
    while ((c = board_uart_try_getc()) < 0) __asm volatile("wfe");
    return (uint8_t)c;
}

uint32_t board_ticks(void) {
    TIMER_TASKS_CAPTURE0 = 1u;
    return TIMER_CC0;
}

void board_debug(const char *text) {
    while (*text) board_uart_putc((uint8_t)*text++);
}

void board_exit(int code) {
    (void)code;
    for (;;) __asm volatile("wfi");
}
