/* Host->device UART bulk test: after READY, reads a 4-byte little-endian
 * length N, then N bytes, and prints their count and FNV-1a hash, so the
 * test can check every byte arrived, in order, none lost or doubled. With
 * -DSTALL_LOOPS=K it first busy-waits (the host keeps sending while the RX
 * ring fills), to show a slow reader loses nothing. */
#include <stdio.h>

#include "board.h"

int main(void) {
    board_uart_write((const uint8_t *)"READY\n", 6);
    uint32_t n = 0;
    for (int i = 0; i < 4; i++) n |= (uint32_t)board_uart_getc() << (8 * i);
#ifdef STALL_LOOPS
    for (volatile uint32_t i = 0; i < STALL_LOOPS; i++) {
    }
#endif
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) {
        h ^= board_uart_getc();
        h *= 16777619u;
    }
    printf("n=%lu fnv=%08lx\n", (unsigned long)n, (unsigned long)h);
    return 0;
}
