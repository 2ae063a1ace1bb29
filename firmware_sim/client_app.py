"""The Flower binding of the round contract, device side: the ClientApp of a simulated sine device.

Each Flower node stands for one device of the fleet (``partition-id`` picks
which, see :func:`device_seed_of`). A training or evaluation message is
decoded into the round contract's :class:`edge.round_contract.RoundRequest`
(its ConfigRecord), θ and the step sizes (its ArrayRecords); the device runs
the one device round, :func:`edge.device_round.run_device_round`, the very
function MQTT boards run (:mod:`firmware_sim.mqtt_round`); and its
:class:`edge.round_contract.RoundReply` is packed back as records: φ
(``arrays``) or the Top-P sparse delta (``sparse-delta``), the hypergradient
(``hypergradient``) and the metrics. Bytes are the wire payloads' lengths
(:func:`edge.wire.encoded_size`), so a SuperNode and an MQTT board report the
same cost for the same update.

What is not part of the round but of the simulation, the device's model and
data, also comes in the config: ``learner`` (numpy MLP, or a ``tflite``
training graph at ``model-path``), ``drift-per-sample``, and for a request
with private weights ``layer-sizes`` (the shared part alone does not say how
big the private head is).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge.device import SimulatedDevice
from edge.device_round import run_device_round
from edge.flower_records import from_array_record, to_array_record
from edge.learner import Learner
from edge.round_contract import RoundReply, RoundRequest
from edge.sparse_records import sparse_to_array_record
from edge.wire import encoded_size
from edge.identity import DEFAULT_FAMILY
from firmware_sim.device_tasks import device_task
from firmware_sim.fleet import local_init, mlp_learner_for, sine_device

log = logging.getLogger(__name__)

app = ClientApp()
Weights = dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def _tflite_trainer(model_path: str) -> Learner:
    # One interpreter per process and model: set_weights overwrites all state each round.
    from edge.tflite_learner import TFLiteTrainer

    return TFLiteTrainer(model_path)


def make_learner(config: ConfigRecord, weights: dict) -> tuple[Learner, int | None]:
    """The learner named in ``config`` and the flash bytes its model image occupies."""
    kind = str(config.get(keys.LEARNER, "numpy"))
    if kind == "numpy":
        return mlp_learner_for(weights), None
    if kind == "tflite":
        trainer = _tflite_trainer(str(config[keys.MODEL_PATH]))
        return trainer, int(getattr(trainer, "flash_bytes", 0)) or None
    raise ValueError(f"unknown learner {kind!r}; use 'numpy' or 'tflite'")


def parse_layer_sizes(value: object) -> tuple[int, ...]:
    """``"1,40,40,1"`` -> ``(1, 40, 40, 1)``; a ValueError that says what is wrong otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"{keys.LAYER_SIZES} must be a string like '1,40,40,1', got {value!r}")
    try:
        sizes = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ValueError(f"{keys.LAYER_SIZES} must be comma-separated integers, got {value!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"{keys.LAYER_SIZES} needs at least two positive sizes, got {value!r}")
    return sizes


def device_seed_of(config: ConfigRecord, context: Context) -> int:
    """The simulated device this node plays: picked from the server's list (e.g. the devices a registry
    query selected), else ``device-seed-base`` + partition id."""
    partition = int(context.node_config["partition-id"])
    seeds = config.get(keys.DEVICE_SEEDS)
    if seeds:
        if partition >= len(seeds):
            raise ValueError(f"node partition {partition} has no device: the server listed {len(seeds)} devices")
        return int(seeds[partition])
    return int(config.get(keys.DEVICE_SEED_BASE, 0)) + partition


# ---- the Flower codec of the round contract ------------------------------------------------------------------


def request_of(message: Message) -> RoundRequest:
    """The round contract's request a Flower message carries; WireFormatError if refused.

    Over Flower the step sizes travel as an ArrayRecord beside the config, so a
    message without one asks for no measurement, whatever its config says.
    """
    config = message.content.config_records[keys.CONFIG]
    request = RoundRequest.from_hyperparameters(dict(config), evaluate=message.metadata.message_type == MessageType.EVALUATE)
    if request.step_sizes is not None and keys.STEP_SIZES not in message.content.array_records:
        request = request.with_(step_sizes=None)
    return request


def theta_of(message: Message) -> Weights:
    return from_array_record(message.content.array_records[keys.ARRAYS])


def step_sizes_of(message: Message, request: RoundRequest) -> Weights | None:
    """The step sizes sent with θ, when the request measures them (None otherwise)."""
    record = message.content.array_records.get(keys.STEP_SIZES)
    return from_array_record(record) if record is not None and request.measures_step_sizes else None


def payload_bytes(request: RoundRequest, theta: Weights, step_sizes: Weights | None) -> int:
    """What the request's tensors cost on the radio: the MODEL (and STEP_SIZES) payloads' lengths."""
    if not request.radio:
        return 0
    return encoded_size(theta) + (encoded_size(step_sizes) if step_sizes is not None else 0)


def reply_message(message: Message, reply: RoundReply, device_seed: int) -> Message:
    """A reply as Flower carries it: metrics, φ or the sparse delta, and the hypergradient."""
    metrics = MetricRecord({**reply.metric_record(), keys.DEVICE_SEED: device_seed})
    content = RecordDict({keys.METRICS: metrics})
    if reply.sparse_delta is not None:
        content[keys.SPARSE_DELTA] = sparse_to_array_record(reply.sparse_delta)
    elif reply.weights is not None:
        content[keys.ARRAYS] = to_array_record(reply.weights)
    if reply.hypergradient is not None:
        content[keys.HYPERGRADIENT] = to_array_record(reply.hypergradient)
    return Message(content=content, reply_to=message)


def play_round(message: Message, device: SimulatedDevice, private_init: Weights | None) -> RoundReply:
    """Decode ``message``, run the device round on ``device`` (its model deployed), and return its reply."""
    request = request_of(message)
    theta = theta_of(message)
    step_sizes = step_sizes_of(message, request)
    return run_device_round(
        device, request, theta, received_bytes=payload_bytes(request, theta, step_sizes),
        private_init=private_init, step_sizes=step_sizes,
    )  # fmt: skip


def sine_round(message: Message, context: Context) -> tuple[RoundReply, int]:
    """One round of the sine device this node plays: (its reply, its seed)."""
    config = message.content.config_records[keys.CONFIG]
    request = request_of(message)
    device_seed = device_seed_of(config, context)
    device = sine_device(
        device_seed, stream_key=request.round_id, drift_per_sample=float(config.get(keys.DRIFT_PER_SAMPLE, 0.0))
    )
    private_init = None
    if request.private_names:
        if keys.LAYER_SIZES not in config:
            raise ValueError(f"a request with private weights must say '{keys.LAYER_SIZES}' (the device's model)")
        private_init = local_init(device_seed, parse_layer_sizes(config[keys.LAYER_SIZES]))
        learner, flash_bytes = make_learner(config, private_init)
    else:
        learner, flash_bytes = make_learner(config, theta_of(message))
    device.deploy(learner, flash_bytes)
    return play_round(message, device, private_init), device_seed


def task_round(message: Message, context: Context) -> tuple[RoundReply, int]:
    """One round of the device this node plays, of the task the request names (``task``, default sine).

    A sine device's model comes from the config (numpy MLP or a training
    .tflite, :func:`sine_round`); every other task's device is built by its
    descriptor (:mod:`firmware_sim.device_tasks`), with its firmware init
    as the start of a private part.
    """
    config = message.content.config_records[keys.CONFIG]
    task = device_task(str(config.get(keys.TASK, DEFAULT_FAMILY)))
    if task.name == DEFAULT_FAMILY:
        return sine_round(message, context)
    request = request_of(message)
    device_seed = device_seed_of(config, context)
    device = task.device(device_seed, stream_key=request.round_id)
    private_init = task.firmware_init(device_seed) if request.private_names else None
    return play_round(message, device, private_init), device_seed


def handle_round(message: Message, context: Context) -> Message:
    reply, device_seed = task_round(message, context)
    return reply_message(message, reply, device_seed)


@app.train()
def train(message: Message, context: Context) -> Message:
    return handle_round(message, context)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return handle_round(message, context)


@app.query()
def identify_device(message: Message, context: Context) -> Message:
    """Which device this node plays, resolved from the same config a training request carries.

    The server asks once per node (:class:`server.strategies.common.DeviceOrderedGrid`):
    Flower's node ids are random per run, so only the device seed lets it
    sample the same devices every run.
    """
    config = message.content.config_records[keys.CONFIG]
    return Message(RecordDict({keys.METRICS: MetricRecord({keys.DEVICE_SEED: device_seed_of(config, context)})}), reply_to=message)
