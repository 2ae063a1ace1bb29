"""Keyword spotting from a generated corpus: espeak-ng voices speaking in simulated rooms.

An offline stand-in for Speech Commands (same words, 16 kHz, 1 s clips). A
device is one speaker in one room: the speaker is an espeak-ng accent and
variant with their own pitch and pace, and every utterance varies both a
little; the room adds its reverberation, noise colour and level, mains hum and
microphone gain. Clips are placed at a random offset in the second, as real
recordings are. New words can be added to a device's task at run time
(:meth:`KeywordTask.with_words`), which is how on-device class addition is
exercised.

Every random choice comes from the seeds, and espeak-ng is deterministic, so
the same seed gives the same samples; utterances are cached on disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from firmware_sim.tasks.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_clip
from firmware_sim.tasks.episodes import ClassDrawer
from firmware_sim.tasks.espeak import Synthesizer, Voice

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# The other Speech Commands v2 words: candidates for classes a device learns after deployment.
EXTRA_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "learn", "follow", "forward", "backward", "visual",
)  # fmt: skip
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3")
# Per-utterance variation, quantised so a speaker says each word at most 25 ways and the cache stays small.
PITCH_STEPS = (-6, -3, 0, 3, 6)
SPEECH_LEVEL_DBFS = -26.0  # utterance RMS before the room's gain: a talker at arm's length, with headroom
SPEED_STEPS = (-15, -8, 0, 8, 15)

_SPEAKER, _ROOM, _SAMPLE = range(3)


@dataclass(frozen=True)
class Speaker:
    language: str
    variant: str
    pitch: int
    speed: int

    def voice(self, pitch_step: int = 0, speed_step: int = 0) -> Voice:
        return Voice(self.language, self.variant, int(np.clip(self.pitch + pitch_step, 0, 99)), self.speed + speed_step)


@dataclass(frozen=True)
class Room:
    """Where the microphone is: acoustics and noise that every clip of this device shares."""

    snr_db: float  # speech-to-noise power ratio over the utterance
    noise_colour: float  # spectral slope exponent: 0 white, 1 pink, 2 brown
    rt60_s: float  # reverberation time
    direct_to_reverb_db: float
    hum_hz: float  # mains frequency, 50 or 60
    hum_dbfs: float
    gain_db: float  # microphone and preamp gain


@dataclass(frozen=True)
class KeywordTask:
    """A device's task: one speaker in one room, classifying ``words`` (labels are their indices)."""

    device: int
    speaker: Speaker
    room: Room
    words: tuple[str, ...] = KEYWORDS
    snr_drift_db_per_sample: float = 0.0  # the room getting noisier as the stream goes on

    def with_words(self, *words: str) -> KeywordTask:
        """The same device, later asked to also spot ``words`` (new labels appended)."""
        return replace(self, words=self.words + tuple(w for w in words if w not in self.words))


def sample_speaker(seed: int, device: int) -> Speaker:
    rng = np.random.default_rng([seed, _SPEAKER, device])
    return Speaker(
        language=str(rng.choice(LANGUAGES)),
        variant=str(rng.choice(VARIANTS)),
        pitch=int(rng.integers(25, 76)),
        speed=int(rng.integers(120, 191)),
    )


def sample_room(seed: int, device: int) -> Room:
    rng = np.random.default_rng([seed, _ROOM, device])
    return Room(
        snr_db=float(rng.uniform(5.0, 30.0)),
        noise_colour=float(rng.choice([0.0, 1.0, 2.0])),
        rt60_s=float(rng.uniform(0.1, 0.7)),
        direct_to_reverb_db=float(rng.uniform(0.0, 12.0)),
        hum_hz=float(rng.choice([50.0, 60.0])),
        hum_dbfs=float(rng.uniform(-70.0, -35.0)),
        gain_db=float(rng.uniform(-8.0, 4.0)),
    )


def sample_task(
    seed: int, device: int, words: Sequence[str] = KEYWORDS, snr_drift_db_per_sample: float = 0.0
) -> KeywordTask:
    """Device ``device``'s speaker and room; the same seed and device always give the same task."""
    return KeywordTask(device, sample_speaker(seed, device), sample_room(seed, device), tuple(words), snr_drift_db_per_sample)


def reverberate(clip: np.ndarray, room: Room, rng: np.random.Generator) -> np.ndarray:
    """Direct sound plus an exponentially decaying diffuse tail (a statistical room impulse response)."""
    n = int(room.rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.normal(size=n) * np.exp(-6.9 * t / room.rt60_s)  # -60 dB at rt60
    tail *= 10 ** (-room.direct_to_reverb_db / 20) / np.sqrt((tail**2).sum())
    response = np.concatenate([[1.0], tail])
    size = clip.size + response.size - 1
    wet = np.fft.irfft(np.fft.rfft(clip, size) * np.fft.rfft(response, size), size)[: clip.size]
    return wet.astype(np.float32)


def coloured_noise(n: int, colour: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power falls as ``1/f**colour``."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    frequencies = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum *= np.maximum(frequencies, 20.0) ** (-colour / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def record(utterance: np.ndarray, room: Room, rng: np.random.Generator, snr_offset_db: float = 0.0) -> np.ndarray:
    """What the device's microphone hears: the utterance at a random offset in a 1 s clip, in the room."""
    utterance = utterance[:CLIP_SAMPLES].astype(np.float64)
    speech_power = float(np.mean(utterance**2)) or 1e-8
    utterance *= 10 ** (SPEECH_LEVEL_DBFS / 20) / np.sqrt(speech_power)
    speech_power = 10 ** (SPEECH_LEVEL_DBFS / 10)
    clip = fit_clip(utterance, CLIP_SAMPLES, offset=int(rng.integers(0, CLIP_SAMPLES - utterance.size + 1)))
    clip = reverberate(clip, room, rng)
    snr = room.snr_db + rng.normal(0.0, 2.0) + snr_offset_db
    clip = clip + coloured_noise(CLIP_SAMPLES, room.noise_colour, rng) * np.sqrt(speech_power / 10 ** (snr / 10))
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    clip = clip + 10 ** (room.hum_dbfs / 20) * np.sin(2 * np.pi * room.hum_hz * t + rng.uniform(0, 2 * np.pi))
    return np.clip(clip * 10 ** (room.gain_db / 20), -1.0, 1.0).astype(np.float32)


class KeywordCorpus:
    """Clips of any word by any device's speaker in that device's room."""

    def __init__(self, synthesizer: Synthesizer) -> None:
        self.synthesizer = synthesizer

    def clip(self, task: KeywordTask, word: str, rng: np.random.Generator, snr_offset_db: float = 0.0) -> np.ndarray:
        """One 1 s, 16 kHz float32 clip of ``word``."""
        voice = task.speaker.voice(int(rng.choice(PITCH_STEPS)), int(rng.choice(SPEED_STEPS)))
        return record(self.synthesizer.speak(word, voice), task.room, rng, snr_offset_db)

    def drawer(self, tasks: Sequence[KeywordTask], words: Sequence[str]) -> ClassDrawer:
        """Episode source: class ``i`` is ``words[i]``, each clip from a device picked at random from ``tasks``."""

        def draw(class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
            picks = rng.integers(len(tasks), size=count)
            return np.stack([self.clip(tasks[p], words[class_id], rng) for p in picks])

        return draw


class KeywordStream:
    """Labelled clips a device's microphone produces, one at a time."""

    def __init__(self, task: KeywordTask, corpus: KeywordCorpus, seed: int | tuple[int, ...]) -> None:
        self.task = task
        self.corpus = corpus
        self._rng = np.random.default_rng([*np.atleast_1d(seed).tolist(), _SAMPLE])
        self.samples_emitted = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        return self

    def __next__(self) -> tuple[np.ndarray, int]:
        label = int(self._rng.integers(len(self.task.words)))
        drift = -self.task.snr_drift_db_per_sample * self.samples_emitted
        clip = self.corpus.clip(self.task, self.task.words[label], self._rng, drift)
        self.samples_emitted += 1
        return clip, label

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [next(self) for _ in range(n)]
        return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64)
