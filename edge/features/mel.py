"""The mel filterbank: triangular bands on the HTK mel scale.

Built exactly as ``tf.signal.linear_to_mel_weight_matrix`` builds it (HTK
``1127·ln(1 + f/700)``, DC bin zeroed, triangles interpolated in mel space)
so the numpy and TensorFlow paths agree to float rounding.
"""

from __future__ import annotations

import numpy as np

MEL_BREAK_FREQUENCY_HERTZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0


def hertz_to_mel(frequencies_hertz: np.ndarray | float) -> np.ndarray:
    return MEL_HIGH_FREQUENCY_Q * np.log1p(np.asarray(frequencies_hertz, dtype=np.float64) / MEL_BREAK_FREQUENCY_HERTZ)


def mel_weight_matrix(
    num_mel_bins: int,
    num_spectrogram_bins: int,
    sample_rate: int,
    lower_edge_hertz: float,
    upper_edge_hertz: float,
) -> np.ndarray:
    """``[num_spectrogram_bins, num_mel_bins]`` float32 weights; ``power @ W`` gives mel energies."""
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_edge_hertz < upper_edge_hertz <= nyquist:
        raise ValueError(f"need 0 <= lower_edge_hertz < upper_edge_hertz <= {nyquist}")
    if num_mel_bins <= 0 or num_spectrogram_bins < 2:
        raise ValueError("need num_mel_bins > 0 and num_spectrogram_bins >= 2")
    # The DC bin carries no speech and TF drops it before building the bands; so do we.
    linear_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins)[1:])[:, None]
    edges = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    lower_slopes = (linear_mel - lower) / (center - lower)
    upper_slopes = (upper - linear_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)
