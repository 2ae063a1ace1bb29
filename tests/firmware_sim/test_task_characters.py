"""The generated handwritten-character task: determinism, shapes, the class split, learnability."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.tasks.characters import (
    IMAGE_SHAPE,
    N_CLASSES,
    CharacterSet,
    CharacterStream,
    class_split,
    glyph,
    sample_task,
    writer_style,
)
from firmware_sim.tasks.episodes import nearest_centroid_accuracy, sample_episode


def test_hundreds_of_classes_each_a_distinct_glyph():
    assert N_CLASSES >= 600
    a, b = glyph(0, 10), glyph(0, 11)
    assert all(s.ndim == 2 and s.shape[1] == 2 for s in a.strokes)
    assert not (len(a.strokes) == len(b.strokes) and all(np.array_equal(x, y) for x, y in zip(a.strokes, b.strokes)))
    with pytest.raises(ValueError):
        glyph(0, N_CLASSES)


def test_same_seed_same_pixels_different_seed_different_pixels():
    def images(seed: int) -> np.ndarray:
        task = sample_task(seed, device=3, classes=class_split(seed).meta_train)
        return CharacterStream(task, CharacterSet(seed), seed=(seed, 3)).take(6)[0]

    np.testing.assert_array_equal(images(1), images(1))
    assert np.abs(images(1) - images(2)).mean() > 0.01


def test_images_have_omniglot_shape_dtype_and_range():
    task = sample_task(0, device=0, classes=class_split(0).meta_train, n_way=5)
    x, y = CharacterStream(task, CharacterSet(0), seed=0).take(20)
    assert x.shape == (20, *IMAGE_SHAPE) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert 0.03 < x.mean() < 0.4  # ink covers part of the canvas, not none and not all
    assert y.dtype == np.int64 and set(y.tolist()) <= set(range(5))


def test_meta_test_classes_never_appear_in_meta_training():
    split = class_split(0)
    assert set(split.meta_train).isdisjoint(split.meta_test)
    assert len(split.meta_train) + len(split.meta_test) == N_CLASSES
    assert len(split.meta_test) >= 100
    # the split holds out whole alphabets, so not even a sibling character leaks
    from firmware_sim.tasks.characters import CHARACTERS_PER_ALPHABET as per

    assert {c // per for c in split.meta_train}.isdisjoint({c // per for c in split.meta_test})
    train_task = sample_task(0, device=7, classes=split.meta_train)
    assert set(train_task.classes) <= set(split.meta_train)


def test_writers_differ_and_drift_changes_the_hand():
    assert writer_style(0, 1) != writer_style(0, 2)
    characters = CharacterSet(0)
    classes = class_split(0).meta_train
    steady = CharacterStream(sample_task(0, 4, classes), characters, seed=9)
    drifting = CharacterStream(sample_task(0, 4, classes, slant_drift_per_sample=0.01), characters, seed=9)
    steady.take(100), drifting.take(100)
    a, b = next(steady), next(drifting)
    assert a[1] == b[1]  # same label sequence: only the hand drifted
    assert np.abs(a[0] - b[0]).mean() > 0.01


def test_episode_sampler_shapes_and_labels():
    draw = CharacterSet(0).drawer(writers=range(10))
    episode = sample_episode(draw, class_split(0).meta_test, n_way=5, k_shot=3, n_query=4, rng=np.random.default_rng(0))
    assert episode.support_x.shape == (15, *IMAGE_SHAPE) and episode.query_x.shape == (20, *IMAGE_SHAPE)
    assert episode.support_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert len(set(episode.classes)) == 5 and set(episode.classes) <= set(class_split(0).meta_test)
    with pytest.raises(ValueError):
        sample_episode(draw, [1, 2], n_way=5, k_shot=1, n_query=1, rng=np.random.default_rng(0))


def test_unseen_characters_are_learnable_but_not_trivial():
    # Measured over 40 episodes with 50 writers: 1-shot 0.59, 5-shot 0.83 for pixel nearest-centroid
    # (chance 0.20); meta-learning has room above it, as on Omniglot.
    draw = CharacterSet(0).drawer(writers=range(50))
    test_classes = class_split(0).meta_test
    accuracy = np.mean(
        [nearest_centroid_accuracy(sample_episode(draw, test_classes, 5, 5, 5, np.random.default_rng(i))) for i in range(12)]
    )
    assert 0.5 < accuracy < 0.97
