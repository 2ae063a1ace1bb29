/* mfcc.h - the keyword task's feature front end on the device: raw 16 kHz audio -> log-mel / MFCC frames.
 *
 * The C twin of edge.features.FrontEnd (edge/features/frontend.py, stft.py, mel.py, mfcc.py), step for step:
 *   frame (480 samples every 320, partial last frame dropped) -> x periodic Hann window (float32 product)
 *   -> zero-pad to 512, real FFT -> power |X|^2 -> mel energies (power @ filterbank, 40 bands)
 *   -> log(mel + 1e-6) -> MFCC = log_mel @ DCT-II (first 10).
 * Tested equal to numpy in tests/edge/test_firmware_mfcc.py (tolerance and its reason stated there).
 *
 * Tables (window, FFT twiddles, sparse mel filterbank, DCT) come from the generated header mfcc_tables.h
 * (python -m edge.firmware.mfcc_tables DIR): the bits numpy's FrontEnd holds, const, in flash. Put its
 * directory on the include path. The configuration is therefore fixed per image.
 *
 * No malloc: the FFT and spectrum buffers are static (~3.4 KB with the defaults), so the functions are not
 * re-entrant (one caller at a time). Only the C standard library; no libm (logf is ours, so the host and the
 * Cortex-M4F give the same bytes; build in ISO C mode, -std=c99/c11, so the compiler does not fuse a*b+c).
 */
#ifndef TF_MFCC_H
#define TF_MFCC_H

#include <stddef.h>
#include <stdint.h>

#include "mfcc_tables.h"

#define TF_MFCC_OK 0
#define TF_MFCC_NON_FINITE (-1) /* a sample is NaN or inf: FrontEnd refuses the clip too (ValueError) */
#define TF_MFCC_NO_ROOM (-2)    /* the output holds fewer frames than the clip gives */

/* Frames a clip of n samples gives: 0 if n < TF_MFCC_FRAME_LENGTH, else 1 + (n - FRAME_LENGTH) / FRAME_STEP. */
size_t tf_mfcc_num_frames(size_t n_samples);

/* One frame (TF_MFCC_FRAME_LENGTH samples) -> TF_MFCC_NUM_MEL log-mel energies / TF_MFCC_NUM_MFCC MFCCs.
 * The samples are not checked here (the clip functions check them). */
void tf_log_mel_frame(const float *frame, float *log_mel);
void tf_mfcc_frame(const float *frame, float *mfcc);

/* A whole clip -> frames x TF_MFCC_NUM_MFCC MFCCs, row-major, as FrontEnd.mfcc(clip).
 * Returns the number of frames, TF_MFCC_NON_FINITE (nothing written) or TF_MFCC_NO_ROOM. */
int tf_mfcc_clip(const float *clip, size_t n_samples, float *out, size_t max_frames);
int tf_log_mel_clip(const float *clip, size_t n_samples, float *out, size_t max_frames);

/* The same from 16-bit PCM as a microphone gives it: sample i is (float)pcm[i] * scale, exactly the float32
 * FrontEnd.mfcc(pcm.astype(np.float32) * np.float32(scale)) sees (scale 1/32768 maps full scale to [-1, 1)).
 * Runs through the stream below (no clip-sized float buffer) and resets it before and after. */
int tf_mfcc_clip_i16(const int16_t *pcm, size_t n_samples, float scale, float *out, size_t max_frames);

/* Streaming, for a sensor driver's chunks of any size: the frames are frame_signal's (one every FRAME_STEP samples
 * once FRAME_LENGTH have arrived), so pushing a clip in pieces gives tf_mfcc_clip's bytes. Each push returns the
 * frames it completed (written to out, TF_MFCC_NUM_MFCC each), or TF_MFCC_NON_FINITE / TF_MFCC_NO_ROOM having
 * consumed nothing. The state is one static FRAME_LENGTH buffer: one stream per image. */
void tf_mfcc_stream_reset(void);
int tf_mfcc_stream_push(const float *samples, size_t n, float *out, size_t max_frames);
int tf_mfcc_stream_push_i16(const int16_t *pcm, size_t n, float scale, float *out, size_t max_frames);

/* The keyword task's feature vector from a clip's MFCC (firmware_sim.task_families.keyword_features): the mean of
 * each run of `pool` frames (a partial last run dropped), standardised, ((sum / pool) - mean[i]) / spread[i], with
 * mean/spread the scaler the firmware ships (steps x TF_MFCC_NUM_MFCC each; mfcc_tables.py can put them in the
 * header as TF_MFCC_FEATURE_MEAN / _SPREAD). Returns the number of features written, or TF_MFCC_NO_ROOM. */
int tf_mfcc_features(const float *mfcc, size_t frames, size_t pool, const float *mean, const float *spread, float *out,
                     size_t max_out);

/* Natural log for float32, ~1 ulp (Cephes logf), the same bits on every IEEE target. */
float tf_mfcc_logf(float x);

#endif
