"""The keyword-spotting front end a device runs: audio clip → log-mel or MFCC image.

Defaults are the usual TinyML KWS recipe (Speech Commands, DS-CNN): 16 kHz,
30 ms frames every 20 ms, 40 mel bands from 20 Hz to 4 kHz, 10 MFCCs, which
turns a 1 s clip into 49 × 10 features. Tables (window, filterbank, DCT) are
built once; :attr:`FrontEnd.nbytes` reports what they hold, since on a device
they sit in RAM or flash next to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.features.mel import mel_weight_matrix
from edge.features.mfcc import dct_ii_matrix
from edge.features.stft import frame_signal, hann_window, power_spectrogram


@dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 16_000
    frame_length: int = 480
    frame_step: int = 320
    fft_length: int = 512
    num_mel_bins: int = 40
    lower_edge_hertz: float = 20.0
    upper_edge_hertz: float = 4_000.0
    num_mfccs: int = 10
    log_offset: float = 1e-6  # keeps log() finite on digital silence

    @property
    def num_spectrogram_bins(self) -> int:
        return self.fft_length // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.frame_step


class FrontEnd:
    """Stateless feature extractor; the same object serves every clip."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        self.config = config or FrontEndConfig()
        c = self.config
        self.window = hann_window(c.frame_length)
        self.mel_matrix = mel_weight_matrix(
            c.num_mel_bins, c.num_spectrogram_bins, c.sample_rate, c.lower_edge_hertz, c.upper_edge_hertz
        )
        self.dct_matrix = dct_ii_matrix(c.num_mel_bins, c.num_mfccs)

    @property
    def nbytes(self) -> int:
        """Bytes of the precomputed tables (window, filterbank, DCT)."""
        return int(self.window.nbytes + self.mel_matrix.nbytes + self.dct_matrix.nbytes)

    def _check(self, signal: np.ndarray) -> np.ndarray:
        signal = np.asarray(signal, dtype=np.float32)
        if signal.ndim != 1:
            raise ValueError(f"expected a mono 1-D clip, got shape {signal.shape}")
        if not np.all(np.isfinite(signal)):
            raise ValueError("clip contains NaN or inf")
        return signal

    def mel_spectrogram(self, signal: np.ndarray) -> np.ndarray:
        """Mel power ``[n_frames, num_mel_bins]`` float32."""
        c = self.config
        frames = frame_signal(self._check(signal), c.frame_length, c.frame_step)
        return power_spectrogram(frames, self.window, c.fft_length) @ self.mel_matrix

    def log_mel(self, signal: np.ndarray) -> np.ndarray:
        """``log(mel + log_offset)``, ``[n_frames, num_mel_bins]`` float32."""
        return np.log(self.mel_spectrogram(signal) + np.float32(self.config.log_offset))

    def mfcc(self, signal: np.ndarray) -> np.ndarray:
        """The first ``num_mfccs`` MFCCs, ``[n_frames, num_mfccs]`` float32."""
        return self.log_mel(signal) @ self.dct_matrix
