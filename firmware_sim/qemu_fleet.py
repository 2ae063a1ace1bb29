"""QEMU devices in a fleet: N of an accounts file's devices run as C firmware under QEMU, each behind its own gateway.

Why here: a QEMU device is a fleet device like :class:`firmware_sim.mqtt_fleet.MqttDevice`, only its round runs in
C on an emulated Cortex-M4F. What makes it *that* device lives in firmware_sim (its shipped weights, its samples,
its profile: :mod:`firmware_sim.device_tasks`); edge builds and runs the image (:mod:`edge.firmware.images`,
:mod:`edge.firmware.qemu`, :mod:`edge.firmware.host_feed`). Each device gets:

- its image, built for its id (``<task>-<seed>``): sine's carries a recording of its stream, keywords' reads raw
  clips from the host (:func:`device_clips`, the very clips its simulated twin draws, in the same order);
- a :class:`firmware_sim.serial_gateway.SerialGateway` logged in with the device's own account (so the broker's
  ACL holds per device, and the gateway's Last Will says ``offline`` if it dies), listening for QEMU's UART;
- QEMU itself, run in the device's folder (where a keywords firmware opens its feed), with ``-icount shift=0`` so
  its instruction counts are exact.

    with QemuFleet(accounts_file, ["keywords-6", "keywords-7"], QemuFleetConfig(workdir=Path("runs/qemu"))) as fleet:
        ...  # the server's rounds reach them as any device

:meth:`QemuFleet.kill` ends one QEMU the way a board loses power (its gateway stays up and says ``offline``);
the server's round deadline then closes the round without it.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy as np

from edge.firmware.host_feed import FEED_NAME, ClipFeed, start_fed_elf
from edge.firmware.images import DEFAULT_SENSOR_SAMPLES, SINE_LAYERS, FirmwareImage, build_image
from edge.identity import DeviceIdentity

log = logging.getLogger(__name__)


def device_clips(seed: int, stream_key: int = 0) -> Iterator[tuple[np.ndarray, int]]:
    """Keywords device ``seed``'s raw clips and labels: what ``task_families.keywords().stream(seed, stream_key)``
    turns into feature vectors, clip for clip (tests/edge/test_firmware_keywords.py holds the two equal)."""
    from firmware_sim import task_families as families
    from firmware_sim.tasks import keywords as kws

    n_way = families.keywords().n_way
    corpus, _ = families._keyword_world()
    task = kws.sample_task(families.DATASET_SEED, seed, families._keyword_words(seed, kws.KEYWORDS, n_way))
    for clip, label in kws.KeywordStream(task, corpus, seed=(seed, stream_key)):
        yield clip, int(label)


def build_device_image(board_name: str, device_id: str, out: Path, samples: int = DEFAULT_SENSOR_SAMPLES) -> FirmwareImage:
    """The image of fleet device ``device_id`` (``sine-N`` or ``keywords-N``) for ``board_name``, in ``out``:
    its firmware's shipped weights, its profile and (sine) its sensor recording or (keywords) the feature scaler."""
    identity = DeviceIdentity.parse(device_id)
    family = device_id.rsplit("-", 1)[0] if identity.seed is not None else ""
    if family == "keywords":
        from firmware_sim import task_families as families
        from firmware_sim.task_client_app import firmware_init, task_device

        keywords = families.keywords()
        return build_image(board_name, "keywords", out, device_id=device_id, local_init=firmware_init(keywords, identity.seed),
                           profile=task_device(keywords, identity.seed, 0).profile, scaler=families._keyword_scaler(),
                           pool=families.KEYWORD_FRAME_POOL)  # fmt: skip
    if family != "sine":
        raise ValueError(f"{device_id!r} is not a sine-N or keywords-N device: those are the tasks with firmware")
    if samples < 1:
        raise ValueError("the sensor recording needs at least one sample")
    from firmware_sim.fleet import local_init, profile_for, sine_device

    recording = sine_device(identity.seed, stream_key=0).stream.take(samples)  # the simulated twin's: each sample once
    return build_image(board_name, "sine", out, device_id=device_id, local_init=local_init(identity.seed, SINE_LAYERS),
                       sensor=recording, profile=profile_for(identity.seed))  # fmt: skip
