"""The classifier tasks' devices: writers, speakers or rooms of a :class:`firmware_sim.task_families.TaskFamily`.

Each is an :class:`edge.mlp_classifier.MLPClassifier` on a Nano 33 BLE Sense
profile, with the firmware's own init (:func:`firmware_init`);
:mod:`firmware_sim.device_tasks` builds them for every transport. The round
itself is the one ClientApp's (:func:`firmware_sim.client_app.task_round`):
decoded by the Flower binding of the round contract and run by
:func:`edge.device_round.run_device_round`, the function MQTT boards use.
:func:`make_task_client_app` binds that app to one task for the benchmark.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge.device import SimulatedDevice
from edge.identity import DEFAULT_FAMILY, DeviceIdentity
from edge.mlp_classifier import MLPClassifier
from edge.profiles import NANO_33_BLE_SENSE, DeviceProfile
from firmware_sim.client_app import handle_round, identify_device
from firmware_sim.fleet import local_init
from firmware_sim.task_families import TaskFamily, task_family


def firmware_init(family: TaskFamily, device_seed: int) -> dict[str, np.ndarray]:
    """The weights a device's firmware ships with: the device's own random hidden layers and an empty output layer.

    The output layer starts at zero because it is what a device rebuilds from
    a handful of samples (TinyMetaFed's private part, or a new device's whole
    model): at zero logits the cross-entropy gradient of a sample is its
    features times (one-hot − 1/N), so the first SGD steps imprint class
    prototypes instead of first unlearning a random projection. Every method
    that starts from the firmware (from-scratch, TinyMetaFed's private part)
    starts from this.
    """
    weights = local_init(device_seed, family.layer_sizes)
    for name in family.private_names:
        weights[name] = np.zeros_like(weights[name])
    return weights


def task_device(family: TaskFamily, device_seed: int, stream_key: int, profile: DeviceProfile = NANO_33_BLE_SENSE) -> SimulatedDevice:
    """Device ``device_seed`` of ``family``, its stream starting at ``stream_key`` (e.g. the round)."""
    device = SimulatedDevice(
        device_id=DeviceIdentity.of_seed(device_seed, family.name).device_id, profile=profile, stream=family.stream(device_seed, stream_key)
    )
    device.deploy(MLPClassifier(family.layer_sizes))
    return device


def make_task_client_app(task: str) -> ClientApp:
    """A ClientApp whose nodes are devices of the named task: TinyFleet's one ClientApp, checked against ``task``.

    The round's config names its task (``task``), which
    :func:`firmware_sim.client_app.task_round` builds the device for; this
    app only refuses a request for another task, so a benchmark cannot
    silently train the wrong devices.
    """
    task_family(task)  # refuses an unknown family now, not at the first round
    app = ClientApp()

    def handle(message: Message, context: Context) -> Message:
        asked = str(message.content.config_records[keys.CONFIG].get(keys.TASK, DEFAULT_FAMILY))
        if asked != task:
            raise ValueError(f"this ClientApp plays {task} devices; the request is for task {asked!r}")
        return handle_round(message, context)

    app.train()(handle)
    app.evaluate()(handle)
    app.query()(identify_device)  # which device this node plays: the same answer as a sine node's
    return app
