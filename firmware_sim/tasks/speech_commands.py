"""Loader for the Speech Commands layout: ``root/<word>/*.wav`` (16 kHz, 16-bit mono, ≤ 1 s).

The dataset's own conventions are honoured: folders starting with ``_`` (the
``_background_noise_`` recordings) are not words, and ``validation_list.txt``
/ ``testing_list.txt`` at the root name the held-out files, so the standard
split is reproduced (everything not listed is training). Short clips are
zero-padded at the end and long ones trimmed to exactly one second, as the
TensorFlow reference pipeline does. Nothing is downloaded: the user provides
the folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from firmware_sim.tasks.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_clip, read_wav
from firmware_sim.tasks.episodes import ClassDrawer

Split = Literal["training", "validation", "testing"]
LIST_FILES = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
BACKGROUND_NOISE_DIR = "_background_noise_"


@dataclass(frozen=True, eq=False)  # holds arrays: compare them explicitly
class SpeechCommandsData:
    clips: np.ndarray  # [n, 16000] float32 in [-1, 1]
    labels: np.ndarray  # [n] int64, index into words
    words: tuple[str, ...]
    files: tuple[str, ...]  # "word/file.wav", as the split lists name them

    def drawer(self) -> ClassDrawer:
        """Episode source over ``words``; draws without replacement within a call."""

        def draw(class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
            pool = np.flatnonzero(self.labels == class_id)
            if count > pool.size:
                raise ValueError(f"{self.words[class_id]!r} has {pool.size} clips, {count} requested")
            return self.clips[rng.choice(pool, size=count, replace=False)]

        return draw


def load_clip(path: str | Path) -> np.ndarray:
    """One file as exactly one second at 16 kHz; any other rate is refused rather than silently resampled."""
    samples, rate = read_wav(path)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: {rate} Hz, Speech Commands clips are {SAMPLE_RATE} Hz")
    return fit_clip(samples, CLIP_SAMPLES, offset=0)


def _listed(root: Path, split: Split) -> set[str]:
    path = root / LIST_FILES[split]
    return set(path.read_text().split()) if path.exists() else set()


def load_speech_commands(
    root: str | Path, words: Sequence[str] | None = None, split: Split | None = None
) -> SpeechCommandsData:
    """Clips of ``words`` (default: every word folder, sorted) from ``split`` (default: all files)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no Speech Commands folder at {root}")
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
    words = tuple(words) if words is not None else tuple(available)
    missing = [w for w in words if w not in available]
    if missing:
        raise ValueError(f"{root} has no folder for {missing}")
    held_out = {name: _listed(root, name) for name in LIST_FILES}
    clips, labels, files = [], [], []
    for label, word in enumerate(words):
        for path in sorted((root / word).glob("*.wav")):
            relative = f"{word}/{path.name}"
            in_split = next((name for name, listed in held_out.items() if relative in listed), "training")
            if split is not None and in_split != split:
                continue
            clips.append(load_clip(path))
            labels.append(label)
            files.append(relative)
    return SpeechCommandsData(
        clips=np.stack(clips) if clips else np.zeros((0, CLIP_SAMPLES), np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        words=words,
        files=tuple(files),
    )


def background_noise(root: str | Path) -> list[np.ndarray]:
    """The long ``_background_noise_`` recordings (any length, 16 kHz), for mixing into clips."""
    folder = Path(root) / BACKGROUND_NOISE_DIR
    out = []
    for path in sorted(folder.glob("*.wav")):
        samples, rate = read_wav(path)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {rate} Hz, expected {SAMPLE_RATE} Hz")
        out.append(samples)
    return out
