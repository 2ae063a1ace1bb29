"""Mono audio plumbing shared by the keyword corpora: WAV I/O, resampling, fixed-length clips.

Stdlib ``wave`` and numpy only (no scipy, no soundfile) so the loaders work in
the device-side install too.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # Speech Commands clips are one second


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes → (float32 mono in [-1, 1], sample rate); channels are averaged.

    Reads to the end of the data rather than trusting the header's frame count,
    which streamed WAVs (``espeak-ng --stdout``) leave at a placeholder.
    """
    with wave.open(io.BytesIO(data)) as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit PCM, got {8 * reader.getsampwidth()}-bit")
        channels, rate = reader.getnchannels(), reader.getframerate()
        frames = reader.readframes(2**31 - 1)
    samples = np.frombuffer(frames[: len(frames) // (2 * channels) * 2 * channels], dtype="<i2")
    return (samples.reshape(-1, channels).mean(axis=1) / 32768.0).astype(np.float32), rate


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    return decode_wav(Path(path).read_bytes())


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """float samples in [-1, 1] → 16-bit mono PCM (clipped), the Speech Commands format."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(sample_rate)
        writer.writeframes(pcm.tobytes())


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by truncating (or zero-padding) the spectrum.

    Exact for a periodic signal and fine for a short utterance framed by
    silence; truncation is an ideal low-pass at the new Nyquist, so no aliasing.
    """
    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float32)
    n_out = int(round(samples.size * rate_out / rate_in))
    spectrum = np.fft.rfft(samples.astype(np.float64))
    bins = n_out // 2 + 1
    spectrum = spectrum[:bins] if spectrum.size >= bins else np.pad(spectrum, (0, bins - spectrum.size))
    return (np.fft.irfft(spectrum, n=n_out) * (n_out / samples.size)).astype(np.float32)


def fit_clip(samples: np.ndarray, length: int = CLIP_SAMPLES, offset: int | None = None) -> np.ndarray:
    """Pad with zeros or trim to ``length``; ``offset`` is where the samples start (centred if None).

    A negative offset trims the start; Speech Commands pads short clips the same way (at the end by
    default in its loader below, offset 0).
    """
    samples = np.asarray(samples, dtype=np.float32)
    if offset is None:
        offset = (length - samples.size) // 2
    out = np.zeros(length, dtype=np.float32)
    src_start, dst_start = max(0, -offset), max(0, offset)
    n = min(samples.size - src_start, length - dst_start)
    if n > 0:
        out[dst_start : dst_start + n] = samples[src_start : src_start + n]
    return out


def trim_silence(samples: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop leading and trailing samples quieter than ``threshold`` of full scale."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]
