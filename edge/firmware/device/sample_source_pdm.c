/* sample_source_pdm.c - the sample source on the Arduino Nano 33 BLE Sense: its MP34DT05 PDM microphone through the
 * nRF52840's PDM peripheral (contract in sample_source.h).
 *
 * COMPILE-ONLY: QEMU has no nRF52 machine and no board is attached here, so this is built and sized in the tests
 * (tests/edge/test_firmware_keywords_build.py) and has never run on hardware. Registers and values are from the
 * nRF52840 Product Specification (PDM chapter) and nrfx's nrf_pdm.h; the pins from ArduinoCore-mbed's Nano 33 BLE
 * variant (PDM DIN P0.25, CLK P0.26, microphone power P0.20).
 *
 * 16 kHz mono: PDM clock 1.280 MHz with ratio 80 (what Arduino's PDM library uses for 16 kHz). EasyDMA fills one of
 * two int16 buffers of SS_CHUNK_SAMPLES while the other is converted (sample * 1/32768, the scale
 * edge.features expects for full-scale PCM) and handed on; SAMPLE.PTR is swapped on EVENTS_STARTED, when the
 * peripheral has latched the previous pointer. Polled, no interrupt: the round is the only thing the device does.
 * The label is the class the device prompts the speaker for, round robin (a board has no ground truth; the prompt
 * itself would go out as status, which the application does).
 */
#include "sample_source.h"

#define REG(a) (*(volatile uint32_t *)(a))
#define PDM 0x4001D000u
#define PDM_TASKS_START REG(PDM + 0x000)
#define PDM_TASKS_STOP REG(PDM + 0x004)
#define PDM_EVENTS_STARTED REG(PDM + 0x100)
#define PDM_EVENTS_STOPPED REG(PDM + 0x104)
#define PDM_EVENTS_END REG(PDM + 0x108)
#define PDM_ENABLE REG(PDM + 0x500)
#define PDM_PDMCLKCTRL REG(PDM + 0x504)
#define PDM_MODE REG(PDM + 0x508)
#define PDM_GAINL REG(PDM + 0x518)
#define PDM_GAINR REG(PDM + 0x51C)
#define PDM_RATIO REG(PDM + 0x520)
#define PDM_PSEL_CLK REG(PDM + 0x540)
#define PDM_PSEL_DIN REG(PDM + 0x544)
#define PDM_SAMPLE_PTR REG(PDM + 0x560)
#define PDM_SAMPLE_MAXCNT REG(PDM + 0x564)
#define PDMCLKCTRL_1280K 0x0A000000u
#define RATIO_80 1u
#define MODE_MONO_LEFT_FALLING 1u /* OPERATION = Mono (bit 0), EDGE = LeftFalling (bit 1 clear) */
#define GAIN_0DB 0x28u

#define GPIO_P0 0x50000000u
#define GPIO_OUTSET REG(GPIO_P0 + 0x508)
#define GPIO_DIRSET REG(GPIO_P0 + 0x518)
#define PIN_MIC_PWR 20u
#define PIN_PDM_CLK 26u
#define PIN_PDM_DIN 25u

static int16_t dma[2][SS_CHUNK_SAMPLES]; /* EasyDMA needs RAM buffers */
static uint32_t prompts;

static void start(void) {
    GPIO_DIRSET = 1u << PIN_MIC_PWR;
    GPIO_OUTSET = 1u << PIN_MIC_PWR;
    PDM_PSEL_CLK = PIN_PDM_CLK;
    PDM_PSEL_DIN = PIN_PDM_DIN;
    PDM_PDMCLKCTRL = PDMCLKCTRL_1280K;
    PDM_RATIO = RATIO_80;
    PDM_MODE = MODE_MONO_LEFT_FALLING;
    PDM_GAINL = GAIN_0DB;
    PDM_GAINR = GAIN_0DB;
    PDM_SAMPLE_PTR = (uint32_t)dma[0];
    PDM_SAMPLE_MAXCNT = SS_CHUNK_SAMPLES; /* in 16-bit samples (mono) */
    PDM_EVENTS_STARTED = 0u;
    PDM_EVENTS_END = 0u;
    PDM_EVENTS_STOPPED = 0u;
    PDM_ENABLE = 1u;
    PDM_TASKS_START = 1u;
}

static void stop(void) {
    PDM_TASKS_STOP = 1u;
    while (!PDM_EVENTS_STOPPED) {
    }
    PDM_EVENTS_STOPPED = 0u;
    PDM_ENABLE = 0u;
}

int ss_next_clip(ss_chunk_fn consume, void *ctx, int32_t *label, uint32_t *n_samples) {
    *label = (int32_t)(prompts++ % SS_PROMPT_CLASSES);
    *n_samples = SS_CLIP_SAMPLES;
    float chunk[SS_CHUNK_SAMPLES];
    int refused = 0;
    uint32_t filling = 0;
    start();
    for (uint32_t done = 0; done < SS_CLIP_SAMPLES;) {
        while (!PDM_EVENTS_STARTED) {
        }
        PDM_EVENTS_STARTED = 0u;
        PDM_SAMPLE_PTR = (uint32_t)dma[filling ^ 1u]; /* the buffer after the one now filling */
        while (!PDM_EVENTS_END) {
        }
        PDM_EVENTS_END = 0u;
        uint32_t k = SS_CLIP_SAMPLES - done < SS_CHUNK_SAMPLES ? SS_CLIP_SAMPLES - done : SS_CHUNK_SAMPLES;
        for (uint32_t i = 0; i < k; ++i) chunk[i] = (float)dma[filling][i] * (1.0f / 32768.0f);
        if (!refused && consume(ctx, chunk, k)) refused = 1;
        filling ^= 1u;
        done += k;
    }
    stop();
    return refused ? SS_REFUSED : SS_OK;
}
