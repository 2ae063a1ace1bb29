/* sample_source.h - where a firmware's raw sensor samples come from: one function the application calls for the next
 * labelled clip, with one driver per place the firmware runs.
 *
 * Why one function: the keyword firmware (keywords_firmware.c) must not know whether its audio comes from a
 * microphone or from the host, or it would be two applications. It asks for the next clip and gets its samples in
 * order, in chunks of at most SS_CHUNK_SAMPLES, through a callback (so no clip-sized buffer: a 1 s clip is 64 KB of
 * float32, a quarter of the Nano's RAM), and the clip's label.
 *
 * Drivers (link exactly one):
 *   sample_source_semihost.c - emulation (QEMU mps2-an386): clips the host writes into a FIFO (or file) read by
 *     semihosting (SYS_OPEN / SYS_READ, 190-1000 MB/s measured, against 11-47 kB/s for host->device UART bytes), so
 *     the serial protocol keeps the UART to itself. The host side is edge/firmware/host_feed.py; its record format:
 *         magic "TFC1" | label int32 LE | n_samples uint32 LE | n_samples float32 LE
 *     The feed is SS_FEED_PATH, relative to QEMU's working directory (the host runs QEMU in the device's folder).
 *   sample_source_pdm.c - the Arduino Nano 33 BLE Sense: its MP34DT05 microphone through the nRF52840's PDM
 *     peripheral, 16 kHz mono int16, scaled by 1/32768 to float32 in [-1, 1). Compile-only: built and sized in the
 *     tests, never run on hardware here. A board has no ground-truth label, so the label is the class the device
 *     prompts the speaker for (round robin over SS_PROMPT_CLASSES), as on-device keyword enrolment is done.
 *
 * Errors are codes, never a hang or a fault: a record that is not one (bad magic, a length of 0 or over
 * SS_MAX_CLIP_SAMPLES) is SS_BAD_RECORD and the feed is closed (it can no longer be parsed in step); a feed that ends
 * before or inside a record is SS_ENDED; a consumer that refuses a chunk (non-zero) gets no more of the clip, which
 * is still read to its end (so the next clip starts in step), and the call returns SS_REFUSED. Whether the label is
 * one of the model's classes is the application's check.
 */
#ifndef TINYFLEET_SAMPLE_SOURCE_H
#define TINYFLEET_SAMPLE_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#ifndef SS_CHUNK_SAMPLES
#define SS_CHUNK_SAMPLES 320u /* one MFCC frame step at 16 kHz: 1.25 KB of float32 on the stack */
#endif
#ifndef SS_MAX_CLIP_SAMPLES
#define SS_MAX_CLIP_SAMPLES 32000u /* 2 s at 16 kHz: a longer record is not a clip this firmware takes */
#endif
#ifndef SS_FEED_PATH
#define SS_FEED_PATH "samples.fifo"
#endif
#ifndef SS_CLIP_SAMPLES
#define SS_CLIP_SAMPLES 16000u /* the PDM driver's clip: 1 s at 16 kHz */
#endif
#ifndef SS_PROMPT_CLASSES
#define SS_PROMPT_CLASSES 4u
#endif

enum {
    SS_OK = 0,
    SS_ENDED = 1,      /* no more clips: the feed closed (or never opened) */
    SS_BAD_RECORD = 2, /* the feed sent something that is not a record; it is closed */
    SS_REFUSED = 3,    /* the consumer refused a chunk */
};

/* Receives the clip's samples in order; non-zero refuses the rest of the clip. */
typedef int (*ss_chunk_fn)(void *ctx, const float *samples, size_t n);

/* The next clip: every sample to `consume` in chunks of at most SS_CHUNK_SAMPLES, its label in *label and length in
 * *n_samples. Returns SS_OK or one of the codes above. */
int ss_next_clip(ss_chunk_fn consume, void *ctx, int32_t *label, uint32_t *n_samples);

/* The code's name for telemetry ("ok", "ended", "bad-record", "refused"). */
static inline const char *ss_code(int code) {
    return code == SS_OK ? "ok" : code == SS_ENDED ? "ended" : code == SS_BAD_RECORD ? "bad-record"
         : code == SS_REFUSED ? "refused" : "unknown";
}

#endif
