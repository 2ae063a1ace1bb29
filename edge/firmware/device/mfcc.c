/* mfcc.c - edge.features.FrontEnd's MFCC in C for the device (contract in mfcc.h).
 *
 * The real FFT: a 512-point real FFT is one 256-point complex FFT of z[n] = x[2n] + i x[2n+1] (iterative
 * radix-2, decimation in time, bit-reversed load) and a split step X[k] = E[k] + W^k O[k]; the frame's zero
 * padding (samples 480..511) is never loaded. float32 throughout: the M4F's FPU is single precision, and
 * numpy's float64 FFT is the one place the two paths differ beyond an ulp or two (see the test's tolerance).
 * Fixed summation orders (bins ascending for the mel bands, bands ascending for the DCT) make the bytes
 * the same on the host and on the Cortex-M4F.
 */
#include "mfcc.h"

#include <string.h>

#define HALF (TF_MFCC_FFT_LENGTH / 2)

#if TF_MFCC_FRAME_LENGTH > TF_MFCC_FFT_LENGTH || (TF_MFCC_FRAME_LENGTH % 2) != 0
#error "mfcc.c needs an even frame length no longer than the FFT"
#endif

static float fft_buf[2 * HALF];           /* HALF complex values, interleaved re, im */
static float power[TF_MFCC_MEL_MAX_BIN];  /* |X[k]|^2 for the bins the filterbank uses */
static float log_mel_buf[TF_MFCC_NUM_MEL];

static int is_finite(float x) {
    union { float f; uint32_t u; } v;
    v.f = x;
    return (v.u & 0x7f800000u) != 0x7f800000u;
}

float tf_mfcc_logf(float x) {
    union { float f; uint32_t u; } v;
    v.f = x;
    if (x != x || x < 0.0f) return (x - x) / (x - x); /* NaN */
    if (x == 0.0f) return -1.0f / 0.0f;
    if (!is_finite(x)) return x; /* +inf */
    int e = 0;
    if ((v.u & 0x7f800000u) == 0u) { /* subnormal: scale by 2^25 into the normal range */
        v.f = x * 33554432.0f;
        e = -25;
    }
    e += (int)((v.u >> 23) & 0xffu) - 126;
    v.u = (v.u & 0x807fffffu) | 0x3f000000u; /* mantissa in [0.5, 1) */
    float m = v.f;
    if (m < 0.707106781186547524f) {
        e -= 1;
        m = m + m - 1.0f;
    } else {
        m = m - 1.0f;
    }
    float z = m * m;
    float y = ((((((((7.0376836292E-2f * m - 1.1514610310E-1f) * m + 1.1676998740E-1f) * m - 1.2420140846E-1f) * m +
                   1.4249322787E-1f) * m - 1.6668057665E-1f) * m + 2.0000714765E-1f) * m - 2.4999993993E-1f) * m +
              3.3333331174E-1f) * m * z;
    float fe = (float)e;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    float r = m + y;
    r += 0.693359375f * fe;
    return r;
}

/* power[k] = |rFFT(frame * window, TF_MFCC_FFT_LENGTH)[k]|^2 for k < TF_MFCC_MEL_MAX_BIN. */
static void power_spectrum(const float *frame) {
    /* load z[n] = w x[2n] + i w x[2n+1] at its bit-reversed place; the zero padding stays zero */
    for (int n = 0; n < HALF; n++) {
        int j = TF_MFCC_BITREV[n];
        float re = 0.0f, im = 0.0f;
        if (2 * n < TF_MFCC_FRAME_LENGTH) {
            re = frame[2 * n] * TF_MFCC_WINDOW[2 * n];
            im = frame[2 * n + 1] * TF_MFCC_WINDOW[2 * n + 1];
        }
        fft_buf[2 * j] = re;
        fft_buf[2 * j + 1] = im;
    }
    /* radix-2 butterflies; W_len^j = W_N^(j N / len), N = TF_MFCC_FFT_LENGTH */
    for (int len = 2, stride = TF_MFCC_FFT_LENGTH / 2; len <= HALF; len *= 2, stride /= 2) {
        int half = len / 2;
        for (int base = 0; base < HALF; base += len) {
            for (int j = 0; j < half; j++) {
                float wr = TF_MFCC_TWIDDLE[2 * j * stride], wi = TF_MFCC_TWIDDLE[2 * j * stride + 1];
                float *a = &fft_buf[2 * (base + j)], *b = &fft_buf[2 * (base + j + half)];
                float tr = b[0] * wr - b[1] * wi;
                float ti = b[0] * wi + b[1] * wr;
                b[0] = a[0] - tr;
                b[1] = a[1] - ti;
                a[0] = a[0] + tr;
                a[1] = a[1] + ti;
            }
        }
    }
    /* split: X[k] = E + W_N^k O, E = (Z[k] + conj Z[H-k]) / 2, O = -i (Z[k] - conj Z[H-k]) / 2 */
    for (int k = 0; k < TF_MFCC_MEL_MAX_BIN; k++) {
        float xr, xi;
        if (k == 0 || k == HALF) { /* k == HALF (Nyquist) only if a band reaches it: FrontEnd's never do (weight 0) */
            xr = k == 0 ? fft_buf[0] + fft_buf[1] : fft_buf[0] - fft_buf[1];
            xi = 0.0f;
        } else {
            float zr = fft_buf[2 * k], zi = fft_buf[2 * k + 1];
            float cr = fft_buf[2 * (HALF - k)], ci = -fft_buf[2 * (HALF - k) + 1];
            float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
            float or_ = 0.5f * (zi - ci), oi = -0.5f * (zr - cr);
            float wr = TF_MFCC_TWIDDLE[2 * k], wi = TF_MFCC_TWIDDLE[2 * k + 1];
            xr = er + (or_ * wr - oi * wi);
            xi = ei + (or_ * wi + oi * wr);
        }
        power[k] = xr * xr + xi * xi;
    }
}

void tf_log_mel_frame(const float *frame, float *log_mel) {
    power_spectrum(frame);
    const float *w = TF_MFCC_MEL_W;
    for (int m = 0; m < TF_MFCC_NUM_MEL; m++) {
        const float *p = &power[TF_MFCC_MEL_START[m]];
        float acc = 0.0f;
        for (int i = 0; i < TF_MFCC_MEL_COUNT[m]; i++) acc += p[i] * w[i];
        w += TF_MFCC_MEL_COUNT[m];
        log_mel[m] = tf_mfcc_logf(acc + TF_MFCC_LOG_OFFSET);
    }
}

void tf_mfcc_frame(const float *frame, float *mfcc) {
    tf_log_mel_frame(frame, log_mel_buf);
    for (int k = 0; k < TF_MFCC_NUM_MFCC; k++) {
        float acc = 0.0f;
        for (int m = 0; m < TF_MFCC_NUM_MEL; m++) acc += log_mel_buf[m] * TF_MFCC_DCT[m * TF_MFCC_NUM_MFCC + k];
        mfcc[k] = acc;
    }
}

size_t tf_mfcc_num_frames(size_t n_samples) {
    if (n_samples < TF_MFCC_FRAME_LENGTH) return 0;
    return 1 + (n_samples - TF_MFCC_FRAME_LENGTH) / TF_MFCC_FRAME_STEP;
}

static int run_clip(const float *clip, size_t n_samples, float *out, size_t max_frames, int mfcc) {
    size_t frames = tf_mfcc_num_frames(n_samples);
    if (frames > max_frames) return TF_MFCC_NO_ROOM;
    for (size_t i = 0; i < n_samples; i++)
        if (!is_finite(clip[i])) return TF_MFCC_NON_FINITE;
    size_t width = mfcc ? TF_MFCC_NUM_MFCC : TF_MFCC_NUM_MEL;
    for (size_t f = 0; f < frames; f++) {
        const float *frame = clip + f * TF_MFCC_FRAME_STEP;
        if (mfcc)
            tf_mfcc_frame(frame, out + f * width);
        else
            tf_log_mel_frame(frame, out + f * width);
    }
    return (int)frames;
}

int tf_mfcc_clip(const float *clip, size_t n_samples, float *out, size_t max_frames) {
    return run_clip(clip, n_samples, out, max_frames, 1);
}

int tf_log_mel_clip(const float *clip, size_t n_samples, float *out, size_t max_frames) {
    return run_clip(clip, n_samples, out, max_frames, 0);
}

/* ---- streaming: samples in chunks of any size, a frame's MFCC each FRAME_STEP samples (frame_signal's frames) */

static float stream_buf[TF_MFCC_FRAME_LENGTH]; /* the current frame's samples so far */
static size_t stream_fill;

void tf_mfcc_stream_reset(void) { stream_fill = 0; }

static size_t stream_frames(size_t n) {
    size_t total = stream_fill + n;
    return total < TF_MFCC_FRAME_LENGTH ? 0 : 1 + (total - TF_MFCC_FRAME_LENGTH) / TF_MFCC_FRAME_STEP;
}

/* Append one sample; when the frame is full, write its MFCC to out and keep the overlap. Returns 1 if it did. */
static int stream_add(float sample, float *out) {
    stream_buf[stream_fill++] = sample;
    if (stream_fill < TF_MFCC_FRAME_LENGTH) return 0;
    tf_mfcc_frame(stream_buf, out);
    memmove(stream_buf, stream_buf + TF_MFCC_FRAME_STEP, (TF_MFCC_FRAME_LENGTH - TF_MFCC_FRAME_STEP) * sizeof(float));
    stream_fill = TF_MFCC_FRAME_LENGTH - TF_MFCC_FRAME_STEP;
    return 1;
}

int tf_mfcc_stream_push(const float *samples, size_t n, float *out, size_t max_frames) {
    if (stream_frames(n) > max_frames) return TF_MFCC_NO_ROOM;
    for (size_t i = 0; i < n; i++)
        if (!is_finite(samples[i])) return TF_MFCC_NON_FINITE;
    int frames = 0;
    for (size_t i = 0; i < n; i++) frames += stream_add(samples[i], out + (size_t)frames * TF_MFCC_NUM_MFCC);
    return frames;
}

int tf_mfcc_stream_push_i16(const int16_t *pcm, size_t n, float scale, float *out, size_t max_frames) {
    if (stream_frames(n) > max_frames) return TF_MFCC_NO_ROOM;
    if (!is_finite(scale) || !is_finite(32768.0f * scale)) return TF_MFCC_NON_FINITE;
    int frames = 0;
    for (size_t i = 0; i < n; i++) frames += stream_add((float)pcm[i] * scale, out + (size_t)frames * TF_MFCC_NUM_MFCC);
    return frames;
}

int tf_mfcc_clip_i16(const int16_t *pcm, size_t n_samples, float scale, float *out, size_t max_frames) {
    if (tf_mfcc_num_frames(n_samples) > max_frames) return TF_MFCC_NO_ROOM;
    tf_mfcc_stream_reset();
    int rc = tf_mfcc_stream_push_i16(pcm, n_samples, scale, out, max_frames);
    tf_mfcc_stream_reset();
    return rc;
}

/* ---- the task's feature vector (firmware_sim.task_families.keyword_features) */

int tf_mfcc_features(const float *mfcc, size_t frames, size_t pool, const float *mean, const float *spread, float *out,
                     size_t max_out) {
    if (pool == 0) return TF_MFCC_NO_ROOM;
    size_t steps = frames / pool, n = steps * TF_MFCC_NUM_MFCC;
    if (n > max_out) return TF_MFCC_NO_ROOM;
    for (size_t t = 0; t < steps; t++) {
        for (int k = 0; k < TF_MFCC_NUM_MFCC; k++) {
            float acc = mfcc[(t * pool) * TF_MFCC_NUM_MFCC + (size_t)k];
            for (size_t j = 1; j < pool; j++) acc += mfcc[(t * pool + j) * TF_MFCC_NUM_MFCC + (size_t)k];
            size_t i = t * TF_MFCC_NUM_MFCC + (size_t)k;
            out[i] = (acc / (float)pool - mean[i]) / spread[i];
        }
    }
    return (int)n;
}
