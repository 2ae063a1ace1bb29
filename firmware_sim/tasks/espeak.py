"""Speech from Debian's ``espeak-ng``, resampled to 16 kHz and cached on disk.

espeak-ng is a formant synthesiser: the same text, voice, pitch and speed give
byte-identical audio (checked by the tests), so a cache keyed by those
parameters is exact and a generated corpus is reproducible from its seed.
Synthesis is a subprocess (~7 ms a word here); a cache hit is a file read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_sim.tasks.audio import SAMPLE_RATE, decode_wav, read_wav, resample, trim_silence, write_wav

ESPEAK = "espeak-ng"
CACHE_ENV = "TINYFLEET_CACHE"
SYNTHESIS_TIMEOUT_S = 20.0


class EspeakUnavailable(RuntimeError):
    """espeak-ng is not installed; ``apt-get install espeak-ng`` (the Makefile's system-deps does)."""


@dataclass(frozen=True)
class Voice:
    """What espeak-ng is asked for: ``-v language+variant -p pitch -s speed``."""

    language: str  # e.g. "en-us", "en-gb-scotland"
    variant: str  # e.g. "m3", "f2", "klatt2"
    pitch: int  # 0..99
    speed: int  # words per minute, 80..450

    def arguments(self) -> list[str]:
        return ["-v", f"{self.language}+{self.variant}", "-p", str(self.pitch), "-s", str(self.speed)]


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "tinyfleet")) / "espeak"


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


class Synthesizer:
    """Speaks words in a voice; every utterance is cached as a 16 kHz 16-bit WAV under ``cache_dir``."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        if not espeak_available():
            raise EspeakUnavailable(f"{ESPEAK} not found on PATH; install Debian's espeak-ng")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.synthesised = 0  # subprocess calls, to tell cache hits from misses
        self._version = subprocess.run([ESPEAK, "--version"], capture_output=True, text=True, check=True).stdout.strip()

    def _path(self, word: str, voice: Voice) -> Path:
        # the espeak version is in the key: another release may speak differently
        key = repr((self._version, word, voice.arguments(), SAMPLE_RATE)).encode()
        return self.cache_dir / f"{hashlib.sha256(key).hexdigest()[:32]}.wav"

    def speak(self, word: str, voice: Voice) -> np.ndarray:
        """The utterance at 16 kHz, float32, leading and trailing silence trimmed."""
        if not word[:1].isalpha() or not all(ch.isalpha() or ch in " '-" for ch in word):
            raise ValueError(f"refusing to speak {word!r}: a letter first, then letters, spaces, ' and - only")
        path = self._path(word, voice)
        if path.exists():
            return read_wav(path)[0]
        # the text goes in on stdin, never as an argument espeak-ng could read as an option
        result = subprocess.run(
            [ESPEAK, *voice.arguments(), "--stdout"],
            input=word.encode(),
            capture_output=True,
            timeout=SYNTHESIS_TIMEOUT_S,
            check=True,
        )
        samples, rate = decode_wav(result.stdout)
        utterance = trim_silence(resample(samples, rate, SAMPLE_RATE))
        self.synthesised += 1
        # write then rename: concurrent generators never read a half-written file
        with tempfile.NamedTemporaryFile(dir=self.cache_dir, suffix=".tmp", delete=False) as handle:
            temporary = Path(handle.name)
        write_wav(temporary, utterance)
        temporary.replace(path)
        return read_wav(path)[0]  # the cached (16-bit) form, so hits and misses return identical samples
