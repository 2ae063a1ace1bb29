"""The Omniglot loader on a small folder in the real layout (105 × 105 one-bit PNGs, black ink on white)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from firmware_sim.tasks.characters import glyph
from firmware_sim.tasks.episodes import nearest_centroid_accuracy, sample_episode
from firmware_sim.tasks.omniglot import load_omniglot

ALPHABETS = {"Alphabet_of_the_Magi": 3, "Futurama": 2}
DRAWINGS = 6


def _write_fixture(root: Path) -> None:
    """Each character is a generated glyph drawn by PIL with a per-drawer shift, saved as Omniglot saves it."""
    rng = np.random.default_rng(0)
    class_id = 0
    for alphabet, n_characters in ALPHABETS.items():
        for c in range(n_characters):
            folder = root / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(DRAWINGS):
                image = Image.new("1", (105, 105), 1)
                pen = ImageDraw.Draw(image)
                shift = rng.normal(0, 3, size=2)
                for stroke in glyph(0, class_id * 7).strokes:
                    points = [tuple(p) for p in (stroke * 80 + 12 + shift)]
                    pen.line(points, fill=0, width=int(rng.integers(3, 6)))
                image.save(folder / f"{class_id:04d}_{d + 1:02d}.png")
            class_id += 1
    (root / "Futurama" / "empty_character").mkdir()  # ignored: no drawings


@pytest.fixture(scope="module")
def omniglot_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("omniglot") / "images_background"
    _write_fixture(root)
    return root


def test_loads_every_drawing_resized_and_inverted(omniglot_root: Path):
    data = load_omniglot(omniglot_root)
    assert data.n_classes == 5
    assert data.images.shape == (5 * DRAWINGS, 28, 28) and data.images.dtype == np.uint8
    assert data.class_names[0] == "Alphabet_of_the_Magi/character01"
    assert data.alphabets == ("Alphabet_of_the_Magi",) * 3 + ("Futurama",) * 2
    assert np.bincount(data.labels).tolist() == [DRAWINGS] * 5
    ink = data.examples(0)
    assert ink.shape == (DRAWINGS, 28, 28, 1) and ink.dtype == np.float32
    # inverted: the white background is 0, the black strokes are high
    assert np.median(ink) < 0.05 and ink.max() > 0.8


def test_episodes_never_reuse_a_drawing_and_classes_are_separable(omniglot_root: Path):
    data = load_omniglot(omniglot_root)
    draw = data.drawer()
    rng = np.random.default_rng(0)
    episode = sample_episode(draw, range(data.n_classes), n_way=5, k_shot=2, n_query=4, rng=rng)
    for c in range(5):
        support = episode.support_x[episode.support_y == c].reshape(2, -1)
        query = episode.query_x[episode.query_y == c].reshape(4, -1)
        assert not any(np.array_equal(s, q) for s in support for q in query)
    with pytest.raises(ValueError):
        draw(0, DRAWINGS + 1, rng)
    accuracy = np.mean([nearest_centroid_accuracy(sample_episode(draw, range(5), 5, 1, 5, np.random.default_rng(i))) for i in range(10)])
    assert accuracy > 0.5  # chance is 0.2


def test_missing_or_empty_root_is_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_omniglot(tmp_path / "nope")
    with pytest.raises(ValueError):
        load_omniglot(tmp_path)
