"""Flower ClientApps for the TinyML applications: a simulated board per node, learning one task family.

The sine ClientApp (:mod:`firmware_sim.client_app`) plays sine devices; this
one plays writers, speakers or rooms of a :class:`firmware_sim.task_families.TaskFamily`
with an :class:`edge.mlp_classifier.MLPClassifier` on a Nano 33 BLE Sense
profile. The round itself is the same code: the message is decoded by the
Flower binding of the round contract and run by
:func:`edge.device_round.run_device_round`, the function MQTT boards and the
sine SuperNodes use. Time and energy come from the profile, bytes from the
payload sizes.

A family is bound when the app is built (``make_task_client_app("characters")``)
because Flower's simulation takes an app object; the node's device is picked
by :func:`firmware_sim.client_app.device_seed_of` as for sine devices.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge.device import SimulatedDevice
from edge.identity import DeviceIdentity
from edge.mlp_classifier import MLPClassifier
from edge.profiles import NANO_33_BLE_SENSE, DeviceProfile
from firmware_sim.client_app import device_seed_of, identify_device, play_round, reply_message, request_of
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
    """A ClientApp whose nodes are devices of the named task family."""
    family = task_family(task)
    app = ClientApp()

    def handle(message: Message, context: Context) -> Message:
        device_seed = device_seed_of(message.content.config_records[keys.CONFIG], context)
        request = request_of(message)
        device = task_device(family, device_seed, stream_key=request.round_id)
        private_init = firmware_init(family, device_seed) if request.private_names else None
        return reply_message(message, play_round(message, device, private_init), device_seed)

    app.train()(handle)
    app.evaluate()(handle)

    app.query()(identify_device)  # which device this node plays: the same answer as a sine node's
    return app
