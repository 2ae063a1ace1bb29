"""Flower ClientApps for the TinyML applications: a simulated board per node, learning one task family.

The sine ClientApp (:mod:`firmware_sim.client_app`) plays sine devices; this
one plays writers, speakers or rooms of a :class:`firmware_sim.task_families.TaskFamily`
with an :class:`edge.mlp_classifier.MLPClassifier` on a Nano 33 BLE Sense
profile. The round itself is the same code: a request naming private weights
(TinyMetaFed) goes through :func:`firmware_sim.device_round.run_round`, the
function MQTT boards and the sine SuperNodes use; any other request (TinyReptile,
FedAvg) installs θ and adapts online with ``local-epochs`` passes, as
:func:`firmware_sim.client_app.run_device_round` does. Time and energy come
from the profile, bytes from the payload sizes.

A family is bound when the app is built (``make_task_client_app("characters")``)
because Flower's simulation takes an app object; the node's device is picked
by :func:`firmware_sim.client_app.device_seed_of` as for sine devices.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message, MessageType
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge.flower_records import from_array_record
from edge.mlp_classifier import MLPClassifier
from edge.validation import check_weights
from edge.wire import encoded_size
from firmware_sim.client_app import adapt_and_reply, device_seed_of, identify_device, metafed_reply
from firmware_sim.device import SimulatedDevice
from firmware_sim.device_round import RoundPlan, kept_fraction, local_init, run_round, shared_spec
from edge.profiles import NANO_33_BLE_SENSE, DeviceProfile
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
        device_id=f"{family.name}-{device_seed}", profile=profile, stream=family.stream(device_seed, stream_key)
    )
    device.deploy(MLPClassifier(family.layer_sizes))
    return device


def _metafed_round(family: TaskFamily, message: Message, device_seed: int) -> Message:
    config = message.content.config_records[keys.CONFIG]
    evaluate = message.metadata.message_type == MessageType.EVALUATE
    plan = RoundPlan.from_hyperparameters(config, top_p=kept_fraction(config.get(keys.TOP_P)), evaluate=evaluate)
    device = task_device(family, device_seed, stream_key=int(config.get(keys.SERVER_ROUND, 0)))
    firmware = firmware_init(family, device_seed)
    theta = check_weights(
        from_array_record(message.content.array_records[keys.ARRAYS]), shared_spec(device.learner, plan.private_names)
    )
    outcome = run_round(device, firmware, theta, plan, received_bytes=encoded_size(theta))
    return metafed_reply(message, outcome, theta, device_seed)


def _whole_model_round(family: TaskFamily, message: Message, device_seed: int, send_weights: bool) -> Message:
    config = message.content.config_records[keys.CONFIG]
    device = task_device(family, device_seed, stream_key=int(config.get(keys.SERVER_ROUND, 0)))
    weights = from_array_record(message.content.array_records[keys.ARRAYS])
    return adapt_and_reply(message, device, weights, device_seed, send_weights, family.learning_rate, encoded_size)


def make_task_client_app(task: str) -> ClientApp:
    """A ClientApp whose nodes are devices of the named task family."""
    family = task_family(task)
    app = ClientApp()

    def handle(message: Message, context: Context, send_weights: bool) -> Message:
        config = message.content.config_records[keys.CONFIG]
        device_seed = device_seed_of(config, context)
        if str(config.get(keys.PRIVATE_NAMES, "")).strip():
            return _metafed_round(family, message, device_seed)
        return _whole_model_round(family, message, device_seed, send_weights)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        return handle(message, context, send_weights=True)

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        return handle(message, context, send_weights=False)

    app.query()(identify_device)  # which device this node plays: the same answer as a sine node's
    return app
