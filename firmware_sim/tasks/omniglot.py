"""Loader for the Omniglot folder layout: ``root/<alphabet>/<character>/*.png``.

Omniglot's own archives unpack to ``images_background/`` (30 alphabets, for
meta-training) and ``images_evaluation/`` (20 alphabets, for meta-testing);
pass either as ``root``. Images are 105 × 105 black ink on white; they are
downsampled to 28 × 28 (Lanczos, as in the MAML/Reptile preprocessing) and
inverted so ink is 1.0, matching :mod:`firmware_sim.tasks.characters`, so one
model and one episode sampler serve both. Nothing is downloaded here: the user
provides the folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from firmware_sim.tasks.characters import IMAGE_SIZE
from firmware_sim.tasks.episodes import ClassDrawer


@dataclass(frozen=True, eq=False)  # holds arrays: compare them explicitly
class OmniglotData:
    """All images of a root, grouped by class; ``images`` is uint8 ink (255 = full ink) to keep RAM at 1 byte/pixel."""

    images: np.ndarray  # [n, size, size] uint8
    labels: np.ndarray  # [n] int64 class index
    class_names: tuple[str, ...]  # "alphabet/character"
    alphabets: tuple[str, ...]  # alphabet of each class

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def examples(self, class_id: int) -> np.ndarray:
        """Every image of one class as float32 ``[n, size, size, 1]`` in [0, 1]."""
        return (self.images[self.labels == class_id].astype(np.float32) / 255.0)[..., None]

    def drawer(self) -> ClassDrawer:
        """Draws without replacement within a call, so support and query never share a drawing."""

        def draw(class_id: int, count: int, rng: np.random.Generator) -> np.ndarray:
            pool = self.examples(class_id)
            if count > len(pool):
                raise ValueError(f"class {self.class_names[class_id]} has {len(pool)} drawings, {count} requested")
            return pool[rng.choice(len(pool), size=count, replace=False)]

        return draw


def load_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One drawing as uint8 ink ``[size, size]``: greyscale, Lanczos downsampled, inverted."""
    with Image.open(path) as image:
        grey = image.convert("L").resize((size, size), Image.LANCZOS)
    return 255 - np.asarray(grey, dtype=np.uint8)


def load_omniglot(root: str | Path, size: int = IMAGE_SIZE) -> OmniglotData:
    """Every ``root/<alphabet>/<character>/*.png``, classes in sorted path order (stable across machines)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no Omniglot folder at {root}")
    images, labels, names, alphabets = [], [], [], []
    for alphabet in sorted(p for p in root.iterdir() if p.is_dir()):
        for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
            files = sorted(character.glob("*.png"))
            if not files:
                continue
            images += [load_image(f, size) for f in files]
            labels += [len(names)] * len(files)
            names.append(f"{alphabet.name}/{character.name}")
            alphabets.append(alphabet.name)
    if not names:
        raise ValueError(f"{root} has no <alphabet>/<character>/*.png drawings")
    return OmniglotData(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(names),
        alphabets=tuple(alphabets),
    )
