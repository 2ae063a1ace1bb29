"""MFCCs from log-mel energies: a DCT-II as one small matrix product.

A precomputed ``[num_mel_bins, num_mfccs]`` matrix is cheaper on a
microcontroller than an FFT-based DCT for 40 bins, and it lets the device keep
only the coefficients it uses.
"""

from __future__ import annotations

import numpy as np


def dct_ii_matrix(num_mel_bins: int, num_mfccs: int) -> np.ndarray:
    """``log_mel @ M`` equals ``tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :num_mfccs]``.

    TF takes an unnormalised DCT-II (``2·Σ x_n cos(πk(2n+1)/2N)``) and scales it
    by ``1/sqrt(2N)``; the matrix folds that scale in.
    """
    if not 0 < num_mfccs <= num_mel_bins:
        raise ValueError("need 0 < num_mfccs <= num_mel_bins")
    n = np.arange(num_mel_bins, dtype=np.float64)[:, None]
    k = np.arange(num_mfccs, dtype=np.float64)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * num_mel_bins))
    return (basis / np.sqrt(2.0 * num_mel_bins)).astype(np.float32)
