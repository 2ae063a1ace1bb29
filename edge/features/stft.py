"""Framing, windowing and the power spectrum: the first half of every audio front end.

Conventions match ``tf.signal.stft`` with its defaults (periodic Hann window,
no end padding, each frame zero-padded to ``fft_length``) so the spectra a
device computes are the ones the training graph saw.
"""

from __future__ import annotations

import numpy as np


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window, as ``tf.signal.hann_window(periodic=True)``.

    Periodic (not symmetric) because the frames tile a longer signal; the
    symmetric form would weight the frame's last sample as if it ended a block.
    """
    if length <= 0:
        raise ValueError("window length must be positive")
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def frame_signal(signal: np.ndarray, frame_length: int, frame_step: int) -> np.ndarray:
    """Overlapping frames ``[n_frames, frame_length]`` of a 1-D signal, dropping a partial last frame.

    A strided view, so no copy: on a device the frame buffer is the audio buffer.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {signal.shape}")
    if frame_length <= 0 or frame_step <= 0:
        raise ValueError("frame_length and frame_step must be positive")
    if signal.size < frame_length:
        return np.zeros((0, frame_length), dtype=signal.dtype)
    n_frames = 1 + (signal.size - frame_length) // frame_step
    stride = signal.strides[0]
    return np.lib.stride_tricks.as_strided(
        signal, shape=(n_frames, frame_length), strides=(frame_step * stride, stride), writeable=False
    )


def power_spectrogram(frames: np.ndarray, window: np.ndarray, fft_length: int) -> np.ndarray:
    """``|rFFT(frame·window)|²`` per frame: ``[n_frames, fft_length // 2 + 1]`` float32.

    Power rather than magnitude because the mel energies of the standard KWS
    recipes (and of ``tf.signal`` examples) sum power.
    """
    if fft_length < frames.shape[-1]:
        raise ValueError("fft_length must be at least the frame length")
    spectrum = np.fft.rfft(frames.astype(np.float32) * window, n=fft_length, axis=-1)
    return (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
