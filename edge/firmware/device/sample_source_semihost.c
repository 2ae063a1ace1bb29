/* sample_source_semihost.c - the sample source in emulation: labelled clips from a host FIFO through semihosting
 * (contract and record format in sample_source.h; the host's writer is edge/firmware/host_feed.py).
 *
 * Why semihosting and not the UART: QEMU's UART model moves host->device bytes at 11-47 kB/s (one byte held, polled
 * lazily), so one second of float32 audio (64 KB) would take 1.4-6 s and starve the protocol; a semihosting SYS_READ
 * is one host read() of the whole buffer (190-1000 MB/s measured). The serial frames stay on the UART, exactly as on
 * a board, and only the microphone is replaced.
 *
 * The feed is opened on the first call (not at boot: QEMU's open() of a FIFO waits for the writer, and nothing should
 * wait before the device has said it is online). SYS_READ returns the bytes it did NOT read; a FIFO may return fewer
 * bytes than asked, so reads loop until the buffer is full or a read makes no progress (the writer closed: EOF).
 */
#include <string.h>

#include "sample_source.h"

#define SYS_OPEN 0x01
#define SYS_READ 0x06
#define OPEN_RB 1 /* fopen mode "rb" */

static int feed = -1;   /* semihosting handle; -1 not open yet */
static int closed;      /* the feed ended or went out of step: every later call says so */

/* The ARM semihosting call (bkpt 0xAB in Thumb state); QEMU runs it on the host with -semihosting. */
static int semihost(int op, void *arg) {
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Read exactly n bytes; 0 on success, non-zero at EOF (or a host error) before n. */
static int read_exact(void *buf, uint32_t n) {
    uint8_t *p = (uint8_t *)buf;
    while (n) {
        uint32_t block[3] = {(uint32_t)feed, (uint32_t)p, n};
        int left = semihost(SYS_READ, block); /* bytes not read */
        if (left < 0 || (uint32_t)left >= n) return 1;
        p += n - (uint32_t)left;
        n = (uint32_t)left;
    }
    return 0;
}

int ss_next_clip(ss_chunk_fn consume, void *ctx, int32_t *label, uint32_t *n_samples) {
    *label = -1;
    *n_samples = 0;
    if (closed) return SS_ENDED;
    if (feed < 0) {
        static const char path[] = SS_FEED_PATH;
        uint32_t block[3] = {(uint32_t)path, OPEN_RB, sizeof path - 1};
        feed = semihost(SYS_OPEN, block);
        if (feed < 0) { closed = 1; return SS_ENDED; }
    }
    uint8_t header[12];
    if (read_exact(header, sizeof header)) { closed = 1; return SS_ENDED; }
    uint32_t n;
    memcpy(label, header + 4, 4);
    memcpy(&n, header + 8, 4);
    if (memcmp(header, "TFC1", 4) != 0 || n == 0 || n > SS_MAX_CLIP_SAMPLES) { closed = 1; return SS_BAD_RECORD; }
    *n_samples = n;
    float chunk[SS_CHUNK_SAMPLES];
    int refused = 0;
    for (uint32_t done = 0; done < n;) {
        uint32_t k = n - done < SS_CHUNK_SAMPLES ? n - done : SS_CHUNK_SAMPLES;
        if (read_exact(chunk, k * (uint32_t)sizeof(float))) { closed = 1; return SS_ENDED; }
        if (!refused && consume(ctx, chunk, k)) refused = 1;
        done += k;
    }
    return refused ? SS_REFUSED : SS_OK;
}
