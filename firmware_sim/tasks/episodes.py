"""N-way K-shot episodes: the unit of few-shot learning and of few-shot evaluation.

Any class source fits as long as it can draw examples of one class; the
generated characters, the Omniglot loader and the keyword corpora all plug in
here, so every task is sampled and scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

# draw(class_id, count, rng) -> ``count`` examples of that class, stacked on axis 0.
ClassDrawer = Callable[[int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True, eq=False)  # holds arrays: compare them explicitly
class Episode:
    """Support and query sets; labels are 0..n_way-1 in the order of ``classes``."""

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    classes: tuple[int, ...]

    @property
    def n_way(self) -> int:
        return len(self.classes)

    def support_stream(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The support set as a device streams it, one labelled sample at a time, in the stored order."""
        return iter(zip(self.support_x, self.support_y))


def sample_episode(
    draw: ClassDrawer,
    classes: Sequence[int],
    n_way: int,
    k_shot: int,
    n_query: int,
    rng: np.random.Generator,
) -> Episode:
    """Pick ``n_way`` of ``classes`` and draw ``k_shot`` support and ``n_query`` query examples of each."""
    if n_way < 2 or k_shot < 1 or n_query < 0:
        raise ValueError("need n_way >= 2, k_shot >= 1, n_query >= 0")
    if len(classes) < n_way:
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes, got {len(classes)}")
    chosen = tuple(int(c) for c in rng.choice(np.asarray(classes), size=n_way, replace=False))
    return episode_of(draw, chosen, k_shot, n_query, rng)


def episode_of(
    draw: ClassDrawer, classes: Sequence[int], k_shot: int, n_query: int, rng: np.random.Generator
) -> Episode:
    """The episode of exactly these ``classes``, label i for ``classes[i]``, support and query grouped by class.

    Support and query come from one ``draw`` call per class so a finite source
    (a loader) never puts the same example in both sets.
    """
    support, query = [], []
    for class_id in classes:
        examples = draw(class_id, k_shot + n_query, rng)
        support.append(examples[:k_shot])
        query.append(examples[k_shot:])
    labels = np.arange(len(classes), dtype=np.int64)
    return Episode(
        support_x=np.concatenate(support),
        support_y=np.repeat(labels, k_shot),
        query_x=np.concatenate(query) if n_query else np.zeros((0, *support[0].shape[1:]), support[0].dtype),
        query_y=np.repeat(labels, n_query),
        classes=tuple(int(c) for c in classes),
    )


def shuffled_support(episode: Episode, rng: np.random.Generator) -> Episode:
    """The same episode with its support in random order: how a device's stream would bring it."""
    order = rng.permutation(len(episode.support_y))
    return replace(episode, support_x=episode.support_x[order], support_y=episode.support_y[order])


def nearest_centroid_accuracy(episode: Episode) -> float:
    """Query accuracy of the nearest class mean of the flattened support: the weakest sensible learner.

    Used as the learnability floor of a generated task and as a baseline in benchmarks.
    """
    sx = episode.support_x.reshape(len(episode.support_x), -1).astype(np.float64)
    qx = episode.query_x.reshape(len(episode.query_x), -1).astype(np.float64)
    centroids = np.stack([sx[episode.support_y == c].mean(axis=0) for c in range(episode.n_way)])
    distances = ((qx[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return float((distances.argmin(axis=1) == episode.query_y).mean())
