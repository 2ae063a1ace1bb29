"""The federated few-shot task families: deterministic, device-shaped, unseen classes really unseen, drift real."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from firmware_sim.task_families import (
    DRIFT_RAMP_SAMPLES,
    TEST_SEED_BASE,
    _character_world,
    drift_strength,
    task_family,
)
from firmware_sim.tasks import characters as chars
from firmware_sim.tasks.espeak import espeak_available

FAST = ("characters", "presence")
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed (apt-get install espeak-ng)")
ALL = (*FAST, pytest.param("keywords", marks=needs_espeak))


def take(stream, n):
    return list(itertools.islice(stream, n))


@pytest.mark.parametrize("name", ALL)
def test_streams_and_episodes_are_pure_functions_of_their_seeds(name):
    family = task_family(name)
    a, b = take(family.stream(3, 7), 12), take(family.stream(3, 7), 12)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        assert ya == yb
    other = take(family.stream(3, 8), 12)
    assert any(not np.array_equal(x, y) for (x, _), (y, _) in zip(a, other)), "another round must bring fresh samples"
    e1, e2 = family.episode(TEST_SEED_BASE, 2, 3), family.episode(TEST_SEED_BASE, 2, 3)
    np.testing.assert_array_equal(e1.support_x, e2.support_x)
    np.testing.assert_array_equal(e1.query_y, e2.query_y)


@pytest.mark.parametrize("name", ALL)
def test_samples_fit_the_model_the_device_trains(name):
    family = task_family(name)
    x, y = next(family.stream(0, 0))
    assert x.shape == (family.n_features,) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert 0 <= int(y) < family.n_way
    episode = family.episode(TEST_SEED_BASE + 1, 3, 2)
    assert episode.support_x.shape[1] == family.n_features
    # K shots of every class, in a shuffled stream order
    assert np.bincount(episode.support_y, minlength=family.n_way).tolist() == [3] * family.n_way
    assert set(np.unique(episode.query_y)) == set(range(family.n_way))
    assert family.layer_sizes == (family.n_features, *family.hidden, family.n_way)


def test_unseen_writers_write_characters_of_alphabets_no_training_device_holds():
    world, split = _character_world()
    train_classes = {c for d in range(50) for c in chars.sample_task(0, d, split.meta_train, 5).classes}
    test_classes = set(chars.sample_task(0, TEST_SEED_BASE, split.meta_test, 5).classes)
    assert train_classes and test_classes and not train_classes & test_classes
    assert {c // chars.CHARACTERS_PER_ALPHABET for c in train_classes}.isdisjoint(
        {c // chars.CHARACTERS_PER_ALPHABET for c in test_classes}
    )


def test_drift_strength_ramps_in_after_the_start():
    assert drift_strength(99, 100) == 0.0
    assert drift_strength(100 + DRIFT_RAMP_SAMPLES // 2, 100) == pytest.approx(0.5)
    assert drift_strength(10_000, 100) == 1.0


@pytest.mark.parametrize("name", FAST)
def test_a_drifting_stream_matches_its_undrifted_twin_until_the_drift(name):
    family = task_family(name)
    start = 20
    drifting = take(family.drifting(TEST_SEED_BASE, start), start + DRIFT_RAMP_SAMPLES + 10)
    steady = take(family.drifting(TEST_SEED_BASE, 10**9), start + DRIFT_RAMP_SAMPLES + 10)
    for i, ((xd, yd), (xs, ys)) in enumerate(zip(drifting, steady)):
        assert yd == ys  # the same labels in the same order
        if i <= start:
            np.testing.assert_array_equal(xd, xs)
    late = slice(start + DRIFT_RAMP_SAMPLES, None)
    shift = np.mean([np.abs(xd - xs).mean() for (xd, _), (xs, _) in zip(drifting[late], steady[late])])
    assert shift > 0.05, f"the drift must change what the device sees (mean |Δx| {shift:.3f})"


def test_unknown_task_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="characters, keywords, presence"):
        task_family("weather")
