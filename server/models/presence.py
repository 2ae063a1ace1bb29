"""Presence detection: a small int8 MLP backbone on five-minute sensor windows, for a TinyOL head.

The backbone is trained to tell occupied from empty on rooms of
:mod:`firmware_sim.tasks.presence` (each its own layout, schedule, climate and
drifting sensors); its classifier becomes the initial head (outputs
``empty``, ``occupied``) and its 8-d last layer the feature vector.
A room never seen in training adapts the head online to its own sensors.

Why 64 → 32 → 8 and not 64 → 32 features: the TinyOL head's SGD step costs
``2 · features · classes`` float MACs against the int8 backbone's MACs (this
choice was made when the Cortex-M4F profile charged 4 and 1 cycles; the
model calibrated under QEMU charges 14.8 and 5.9, and ``bench/firmware.py``
measures the compiled head update at 4.7 % of inference). With 32 features
the step cost 18.6 % of an inference on the Nano 33 BLE Sense; an 8-d
feature layer behind one more small layer brings it to 4.3 % for about the
same backbone MACs (3,008 vs 2,752), less RAM, and the same balanced
accuracy on unseen rooms (``bench/task_models.py``: shipped head 0.990,
adapted online 0.991, empty head 0.909, vs 0.990 / 0.992 / 0.906 with 32).

Input: the 11 window features, scaled on the device by the model's
:class:`~server.models.tinyml.InputScaler` (``log1p`` of light and PIR
counts, then per-feature standardisation). Architecture::

    dense 64 → dense 32 → dense 8 (features)
"""

from __future__ import annotations

import numpy as np

from firmware_sim.tasks.presence import FEATURES, PresenceStream, PresenceTask, sample_task
from server.models.tinyml import (
    Architecture,
    Dense,
    InputScaler,
    TaskModel,
    TrainConfig,
    build_task_model,
    float_features,
    head_learning_rate,
)

TASK = "presence"
CLASSES = ("empty", "occupied")
ARCH = Architecture((len(FEATURES),), (Dense(64), Dense(32), Dense(8)))
LOG_COLUMNS = tuple(FEATURES.index(name) for name in ("light_mean", "light_range", "pir_count"))
TRAIN_ROOMS = 40
TEST_ROOM_BASE = 10_000
WINDOWS_PER_DAY = 288

# (rooms, days per room, epochs); the architecture never changes with the size
SIZES = {"default": (TRAIN_ROOMS, 4, 8), "small": (6, 1, 3)}


def room_windows(task: PresenceTask, days: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``days`` days of a room's stream: features (n, 11) and labels (1 = occupied)."""
    return PresenceStream(task).take(days * WINDOWS_PER_DAY)


def build(seed: int = 0, small: bool = False) -> TaskModel:
    """Train on the training rooms, export int8; the initial head is the trained empty/occupied classifier."""
    rooms, days, epochs = SIZES["small" if small else "default"]
    parts = [room_windows(sample_task(seed, room), days) for room in range(rooms)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    scaler = InputScaler.fit(x, log_columns=LOG_COLUMNS)
    model = build_task_model(
        TASK,
        ARCH,
        x,
        y,
        CLASSES,
        scaler,
        TrainConfig(epochs=epochs, batch_size=128, learning_rate=3e-3, seed=seed),
        info={"seed": seed, "size": "small" if small else "default", "train_rooms": rooms, "days_per_room": days},
    )
    model.info["head_learning_rate"] = head_learning_rate(float_features(ARCH, model.train.backbone, scaler(x[:2000])))
    return model


def test_rooms(seed: int, n_rooms: int) -> list[PresenceTask]:
    """Rooms never used in training."""
    return [sample_task(seed, TEST_ROOM_BASE + i) for i in range(n_rooms)]
