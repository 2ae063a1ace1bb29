"""The generated keyword corpus: espeak-ng determinism, the cache, clip format, rooms, learnability.

Needs Debian's espeak-ng (the Makefile's system-deps installs it). Clips are
cached once per test session, and the whole module synthesises about 250
utterances (~7 ms each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.features import FrontEnd
from firmware_sim.tasks.audio import CLIP_SAMPLES, SAMPLE_RATE
from firmware_sim.tasks.espeak import Synthesizer, Voice, espeak_available
from firmware_sim.tasks.keywords import (
    EXTRA_WORDS,
    KEYWORDS,
    KeywordCorpus,
    KeywordStream,
    record,
    sample_room,
    sample_task,
)

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (apt-get install espeak-ng)")
WORDS = ("yes", "no", "left", "stop")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> KeywordCorpus:
    return KeywordCorpus(Synthesizer(tmp_path_factory.mktemp("espeak_cache")))


def test_espeak_is_deterministic_so_the_cache_is_exact(tmp_path: Path):
    voice = Voice("en-gb-scotland", "f2", pitch=60, speed=150)
    first = Synthesizer(tmp_path / "a").speak("forward", voice)
    second_synth = Synthesizer(tmp_path / "b")
    second = second_synth.speak("forward", voice)  # a fresh process and a cold cache
    np.testing.assert_array_equal(first, second)
    assert second_synth.synthesised == 1
    np.testing.assert_array_equal(second_synth.speak("forward", voice), first)
    assert second_synth.synthesised == 1, "the second request must be a cache hit"
    assert len(list((tmp_path / "b").glob("*.wav"))) == 1 and not list((tmp_path / "b").glob("*.tmp"))
    assert 0.1 * SAMPLE_RATE < first.size < CLIP_SAMPLES  # one word, silence trimmed


def test_a_different_voice_speaks_differently(corpus: KeywordCorpus):
    a = corpus.synthesizer.speak("yes", Voice("en-us", "m3", 50, 150))
    b = corpus.synthesizer.speak("yes", Voice("en-us", "m3", 70, 150))
    assert a.size != b.size or np.abs(a - b).max() > 0.01
    with pytest.raises(ValueError):
        corpus.synthesizer.speak("-v evil", Voice("en-us", "m3", 50, 150))
    with pytest.raises(ValueError):
        corpus.synthesizer.speak("yes; rm", Voice("en-us", "m3", 50, 150))


def test_same_seed_same_clips_different_seed_different(corpus: KeywordCorpus):
    def clips(seed: int) -> tuple[np.ndarray, np.ndarray]:
        return KeywordStream(sample_task(seed, device=2, words=WORDS), corpus, seed=(seed, 2)).take(4)

    (x1, y1), (x2, y2) = clips(5), clips(5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert np.abs(clips(6)[0] - x1).mean() > 1e-3


def test_clips_are_one_second_16k_float_and_not_clipped(corpus: KeywordCorpus):
    x, y = KeywordStream(sample_task(0, device=1), corpus, seed=1).take(8)
    assert x.shape == (8, CLIP_SAMPLES) and x.dtype == np.float32
    assert np.abs(x).max() < 0.99 and (np.abs(x).max(axis=1) > 0.01).all()
    assert set(y.tolist()) <= set(range(len(KEYWORDS)))


def test_devices_are_different_speakers_in_different_rooms():
    tasks = [sample_task(0, d) for d in range(20)]
    assert len({t.speaker for t in tasks}) == 20
    assert len({t.room for t in tasks}) == 20
    assert len({t.speaker.language for t in tasks}) >= 4


def test_a_device_can_be_taught_new_words(corpus: KeywordCorpus):
    task = sample_task(0, device=3, words=WORDS).with_words(EXTRA_WORDS[0], "yes")
    assert task.words == (*WORDS, EXTRA_WORDS[0])  # appended once, existing labels unchanged
    _, labels = KeywordStream(task, corpus, seed=3).take(25)
    assert labels.max() == len(WORDS)


def test_room_noise_follows_snr_and_drift_makes_the_room_noisier():
    room = sample_room(0, 0)
    burst = 0.3 * np.sin(2 * np.pi * 440 * np.arange(4_000) / SAMPLE_RATE)

    def noise_floor(offset_db: float) -> float:
        clip = record(burst, room, np.random.default_rng(0), snr_offset_db=offset_db)
        quiet = np.sort(np.abs(clip))[: CLIP_SAMPLES // 2]  # mostly the part without speech
        return float(np.sqrt(np.mean(quiet.astype(np.float64) ** 2)))

    assert noise_floor(-20.0) > 5 * noise_floor(0.0)  # 20 dB less SNR: 10x the noise amplitude


def _mfcc_statistics(clips: np.ndarray, front: FrontEnd) -> np.ndarray:
    """Mean and std of MFCCs over the louder half of the frames: shift-invariant, as the word sits anywhere."""
    rows = []
    for clip in clips:
        mfcc, energy = front.mfcc(clip), front.log_mel(clip).mean(axis=1)
        active = energy >= np.median(energy)
        rows.append(np.concatenate([mfcc[active].mean(axis=0), mfcc[active].std(axis=0)]))
    return np.asarray(rows)


def _nearest_centroid(train_x, train_y, test_x, test_y, n_classes: int) -> float:
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(n_classes)])
    predicted = ((test_x[:, None] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    return float((predicted == test_y).mean())


def test_keywords_are_learnable_within_and_across_devices(corpus: KeywordCorpus):
    # Measured with 4 words (chance 0.25): within one device 1.0 on each of 4 devices;
    # trained on 6 devices and tested on 2 unseen speakers/rooms, 0.67.
    front = FrontEnd()
    features, labels = [], []
    for device in range(8):
        clips, y = KeywordStream(sample_task(0, device, WORDS), corpus, seed=device).take(24)
        features.append(_mfcc_statistics(clips, front))
        labels.append(y)
    within = _nearest_centroid(features[0][:12], labels[0][:12], features[0][12:], labels[0][12:], len(WORDS))
    across = _nearest_centroid(
        np.concatenate(features[:6]), np.concatenate(labels[:6]), np.concatenate(features[6:]), np.concatenate(labels[6:]), len(WORDS)
    )
    assert within >= 0.75
    assert across >= 0.45
