"""The Speech Commands loader on a small folder in the real layout, written with the stdlib ``wave``."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.tasks.audio import CLIP_SAMPLES, SAMPLE_RATE, fit_clip, read_wav, resample
from firmware_sim.tasks.episodes import sample_episode
from firmware_sim.tasks.speech_commands import background_noise, load_speech_commands

TONES = {"yes": 440.0, "no": 880.0, "up": 1_320.0}


def _write(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.5 * np.sin(2 * np.pi * frequency * t)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three words x four speakers (hash_nohash_N names as in the dataset), one short and one long clip."""
    root = tmp_path_factory.mktemp("speech_commands")
    for word, frequency in TONES.items():
        for speaker in range(4):
            seconds = {0: 0.6, 1: 1.2}.get(speaker, 1.0)
            _write(root / word / f"{speaker:08x}_nohash_0.wav", _tone(frequency, seconds))
    _write(root / "_background_noise_" / "white_noise.wav", 0.1 * np.random.default_rng(0).normal(size=3 * SAMPLE_RATE))
    (root / "validation_list.txt").write_text("yes/00000002_nohash_0.wav\nno/00000002_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/00000003_nohash_0.wav\nno/00000003_nohash_0.wav\nup/00000003_nohash_0.wav\n")
    return root


def test_loads_words_not_background_noise_and_fixes_length(root: Path):
    data = load_speech_commands(root)
    assert data.words == ("no", "up", "yes")  # sorted; "_background_noise_" is not a word
    assert data.clips.shape == (12, CLIP_SAMPLES) and data.clips.dtype == np.float32
    assert np.bincount(data.labels).tolist() == [4, 4, 4]
    short = data.clips[data.files.index("yes/00000000_nohash_0.wav")]
    assert np.abs(short[: int(0.6 * SAMPLE_RATE) - 1]).max() > 0.4 and not short[int(0.6 * SAMPLE_RATE) :].any()
    long = data.clips[data.files.index("yes/00000001_nohash_0.wav")]
    np.testing.assert_allclose(long, _tone(440.0, 1.0), atol=1e-4)  # the first second kept (16-bit rounding)


def test_split_lists_are_honoured(root: Path):
    train = load_speech_commands(root, split="training")
    validation = load_speech_commands(root, split="validation")
    testing = load_speech_commands(root, split="testing")
    assert len(train.files) == 7 and len(validation.files) == 2 and len(testing.files) == 3
    assert set(train.files).isdisjoint(validation.files) and set(train.files).isdisjoint(testing.files)
    picked = load_speech_commands(root, words=["yes", "no"], split="testing")
    assert picked.words == ("yes", "no") and picked.labels.tolist() == [0, 1]


def test_clips_hold_the_recorded_signal_and_feed_episodes(root: Path):
    data = load_speech_commands(root)
    for label, word in enumerate(data.words):
        spectrum = np.abs(np.fft.rfft(data.clips[data.labels == label][-1]))
        assert abs(np.argmax(spectrum) * SAMPLE_RATE / CLIP_SAMPLES - TONES[word]) < 2.0
    episode = sample_episode(data.drawer(), range(3), n_way=3, k_shot=1, n_query=3, rng=np.random.default_rng(0))
    assert episode.support_x.shape == (3, CLIP_SAMPLES) and episode.query_x.shape == (9, CLIP_SAMPLES)


def test_background_noise_and_refusals(root: Path, tmp_path: Path):
    noise = background_noise(root)
    assert len(noise) == 1 and noise[0].shape == (3 * SAMPLE_RATE,)
    _write(tmp_path / "yes" / "a.wav", _tone(440, 1.0)[::2], rate=8_000)
    with pytest.raises(ValueError, match="8000 Hz"):
        load_speech_commands(tmp_path)
    with pytest.raises(ValueError, match="no folder"):
        load_speech_commands(root, words=["banana"])
    with pytest.raises(FileNotFoundError):
        load_speech_commands(tmp_path / "missing")


def test_audio_helpers_resample_and_round_trip(tmp_path: Path):
    tone = _tone(1_000.0, 1.0).astype(np.float32)
    at_22k = resample(tone, SAMPLE_RATE, 22_050)
    assert at_22k.size == 22_050
    back = resample(at_22k, 22_050, SAMPLE_RATE)
    np.testing.assert_allclose(back, tone, atol=1e-4)
    _write(tmp_path / "t.wav", tone)
    samples, rate = read_wav(tmp_path / "t.wav")
    assert rate == SAMPLE_RATE and np.abs(samples - tone).max() < 1e-4
    assert fit_clip(np.ones(3), 5).tolist() == [0, 1, 1, 1, 0]
    assert fit_clip(np.arange(6), 3, offset=-2).tolist() == [2, 3, 4]
