/* board.c - QEMU mps2-an386 (Cortex-M4F): CMSDK UART0 with an RX interrupt
 * into a ring buffer (idle waits sleep in wfi instead of burning a host core),
 * TIMER0 as a free-running down-counter, semihosting for debug text and exit.
 *
 * Why TIMER1 exists here (the RX fix): QEMU 7.2's CMSDK UART model holds one
 * byte and, when the guest reads DATA, never tells the chardev it can take
 * the next one (no qemu_chr_fe_accept_input). The chardev is only asked again
 * when QEMU's main loop wakes up, and with the CPU asleep in wfi nothing wakes
 * it: host->device bytes sat in the socket for ever (the old echo hang; the
 * IRQ number 0, CTRL RX/RX-int bits and BAUDDIV=16 were right). Rewriting
 * TIMER1's VALUE re-arms a QEMU timer, which wakes the main loop, which polls
 * the chardev again ("rx_kick"). We kick after draining a byte and before
 * every wfi; TIMER1 also runs periodically (1 kHz, its interrupt off, so the
 * guest stays asleep) as a backstop. On real hardware none of this matters.
 */
#include <stdint.h>

#include "board.h"

#define UART0_BASE 0x40004000u
#define UART_DATA (*(volatile uint32_t *)(UART0_BASE + 0x00))
#define UART_STATE (*(volatile uint32_t *)(UART0_BASE + 0x04))
#define UART_CTRL (*(volatile uint32_t *)(UART0_BASE + 0x08))
#define UART_INTSTATUS (*(volatile uint32_t *)(UART0_BASE + 0x0C))
#define UART_BAUDDIV (*(volatile uint32_t *)(UART0_BASE + 0x10))
#define STATE_TX_FULL 1u
#define STATE_RX_FULL 2u
#define CTRL_TX_EN 1u
#define CTRL_RX_EN 2u
#define CTRL_RX_INT_EN 8u
#define INT_RX 2u

#define TIMER0_BASE 0x40000000u
#define TIMER_CTRL (*(volatile uint32_t *)(TIMER0_BASE + 0x00))
#define TIMER_VALUE (*(volatile uint32_t *)(TIMER0_BASE + 0x04))
#define TIMER_RELOAD (*(volatile uint32_t *)(TIMER0_BASE + 0x08))

#define TIMER1_BASE 0x40001000u
#define TIMER1_CTRL (*(volatile uint32_t *)(TIMER1_BASE + 0x00))
#define TIMER1_VALUE (*(volatile uint32_t *)(TIMER1_BASE + 0x04))
#define TIMER1_RELOAD (*(volatile uint32_t *)(TIMER1_BASE + 0x08))
#define KICK_RELOAD 25000u /* 1 ms at 25 MHz: the backstop wake-up of QEMU's main loop */

#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define UART0_RX_IRQ 0

#define RX_SIZE 1024u /* power of two */
static volatile uint8_t rx_buf[RX_SIZE];
static volatile uint32_t rx_head, rx_tail;

/* Make QEMU's main loop offer the UART the next host byte (see the top). */
static inline void rx_kick(void) { TIMER1_VALUE = 1u; }

/* Move bytes from the UART into the ring while it has room. When the ring is
 * full the byte stays in DATA: RXFULL stays set, QEMU offers no more and the
 * host's bytes wait in the socket (back-pressure, nothing lost, however
 * slowly the application reads). board_uart_try_getc drains again. */
static void rx_drain(void) {
    while (UART_STATE & STATE_RX_FULL) {
        uint32_t next = (rx_head + 1u) & (RX_SIZE - 1u);
        if (next == rx_tail) return; /* full: leave the byte in the UART, no kick */
        rx_buf[rx_head] = (uint8_t)UART_DATA;
        rx_head = next;
    }
    rx_kick();
}

void UART0RX_Handler(void) {
    /* Clear the interrupt *before* draining: a byte that lands after the last
     * RXFULL check then raises the interrupt again. Clearing after the loop
     * lost that byte's interrupt, RXFULL stayed set and the line stalled. */
    UART_INTSTATUS = INT_RX;
    __asm volatile("dsb" ::: "memory");
    rx_drain();
}

extern uint32_t __StackTop;
void Reset_Handler(void);
void HardFault_Handler(void);
void Default_Handler(void);

__attribute__((section(".isr_vector"), used)) static void (*const vectors[16 + 32])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, Default_Handler, HardFault_Handler,
    HardFault_Handler, HardFault_Handler, HardFault_Handler, 0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler,
    [16 + UART0_RX_IRQ] = UART0RX_Handler,
    [16 + 1] = Default_Handler, /* UART0 TX: never enabled */
};

void board_init(void) {
    UART_BAUDDIV = 16; /* QEMU refuses to move bytes below 16 */
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    NVIC_ISER0 = 1u << UART0_RX_IRQ;
    TIMER_RELOAD = 0xFFFFFFFFu;
    TIMER_VALUE = 0xFFFFFFFFu;
    TIMER_CTRL = 1u;
    TIMER1_RELOAD = KICK_RELOAD;
    TIMER1_CTRL = 1u; /* enabled, interrupt off */
    __asm volatile("cpsie i" ::: "memory");
}

void board_uart_putc(uint8_t c) {
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = c;
}

void board_uart_write(const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) board_uart_putc(data[i]);
}

int board_uart_try_getc(void) {
    if (rx_tail == rx_head) {
        /* The ring may have been full with a byte held in the UART (no
         * interrupt comes for it): take it now, interrupts masked. */
        uint32_t primask;
        __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
        rx_drain();
        __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
        if (rx_tail == rx_head) return -1;
    }
    uint8_t c = rx_buf[rx_tail];
    rx_tail = (rx_tail + 1u) & (RX_SIZE - 1u);
    return c;
}

uint8_t board_uart_getc(void) {
    for (;;) {
        /* Check with interrupts masked, then wfi: an RX interrupt between the
         * check and the sleep still wakes wfi, so no byte is slept through. */
        __asm volatile("cpsid i" ::: "memory");
        int c = board_uart_try_getc();
        if (c < 0) {
            rx_kick();
            __asm volatile("wfi" ::: "memory");
        }
        __asm volatile("cpsie i" ::: "memory");
        if (c >= 0) return (uint8_t)c;
    }
}

uint32_t board_ticks(void) { return 0xFFFFFFFFu - TIMER_VALUE; }

static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void board_debug(const char *text) { semihost(0x04 /* SYS_WRITE0 */, (void *)text); }

void board_exit(int code) {
    uint32_t block[2] = {0x20026u /* ADP_Stopped_ApplicationExit */, (uint32_t)code};
    for (;;) semihost(0x20 /* SYS_EXIT_EXTENDED */, block);
}
