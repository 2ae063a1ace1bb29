"""The Flower ClientApp of a simulated microcontroller.

Each Flower node stands for one device of the fleet (``partition-id`` picks
which). On a training request the device installs the received θ, refusing it
if it does not fit its profile, adapts online on fresh samples of its own
stream and replies with φ and what the round cost it.

When the request names private weights (TinyMetaFed), the device follows the
very protocol of the MQTT microcontrollers, through the same function
(:func:`firmware_sim.device_round.run_round`): θ arrives without its private
part, the device rebuilds that part from its firmware's local init on its
first samples, adapts the shared part and replies with the Top-P% sparse
delta (``sparse-delta``; dense φ if no Top-P is asked). Bytes are counted as
the wire codec's payload sizes, so a SuperNode and an MQTT board report the
same cost for the same update. The model's layer sizes come with the request
(``layer-sizes``) because the shared part alone does not say how big the head
is; a request whose θ does not fit them is refused.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable

import numpy as np

from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge import weights as W
from edge.flower_records import from_array_record, to_array_record
from edge.learner import Learner
from edge.step_sizes import check_scales
from edge.sparse_records import sparse_to_array_record
from edge.validation import check_weights
from edge.wire import encoded_size
from firmware_sim.device_round import RoundOutcome, RoundPlan, kept_fraction, local_init, run_round, shared_spec
from firmware_sim.device import SimulatedDevice
from firmware_sim.fleet import mlp_learner_for, sine_device
from firmware_sim.mqtt_round import StepSizePlan, measure_hypergradient

log = logging.getLogger(__name__)

app = ClientApp()


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


def run_metafed_round(message: Message, context: Context) -> Message:
    """A TinyMetaFed round, exactly as an MQTT microcontroller runs it (see the module docstring)."""
    config = message.content.config_records[keys.CONFIG]
    evaluate = message.metadata.message_type == MessageType.EVALUATE
    plan = RoundPlan.from_hyperparameters(config, top_p=kept_fraction(config.get(keys.TOP_P)), evaluate=evaluate)
    if keys.LAYER_SIZES not in config:
        raise ValueError(f"a request with private weights must say '{keys.LAYER_SIZES}' (the device's model)")
    device_seed = device_seed_of(config, context)
    firmware_init = local_init(device_seed, parse_layer_sizes(config[keys.LAYER_SIZES]))
    learner, flash_bytes = make_learner(config, firmware_init)
    spec = shared_spec(learner, plan.private_names)
    theta = check_weights(from_array_record(message.content.array_records[keys.ARRAYS]), spec)
    device = sine_device(
        device_seed,
        stream_key=int(config.get(keys.SERVER_ROUND, 0)),
        drift_per_sample=float(config.get(keys.DRIFT_PER_SAMPLE, 0.0)),
    )
    device.deploy(learner, flash_bytes)
    outcome = run_round(device, firmware_init, theta, plan, received_bytes=encoded_size(theta))
    return metafed_reply(message, outcome, theta, device_seed)


def metafed_reply(message: Message, outcome: RoundOutcome, theta: dict, device_seed: int) -> Message:
    """A TinyMetaFed round's reply as Flower carries it: metrics, and the sparse delta (or dense φ)."""
    metrics = MetricRecord(
        {
            **outcome.metrics,
            keys.NUM_EXAMPLES: outcome.num_examples,
            keys.SAMPLES_USED: outcome.num_examples,
            keys.BYTES_RECEIVED: outcome.bytes_received,
            keys.BYTES_SENT: outcome.bytes_sent,
            keys.DEVICE_SEED: device_seed,
        }
    )
    content = RecordDict({keys.METRICS: metrics})
    if outcome.sparse is not None:
        content[keys.SPARSE_DELTA] = sparse_to_array_record(outcome.sparse)
    elif outcome.dense is not None:
        content[keys.ARRAYS] = to_array_record({k: theta[k] + outcome.dense[k] for k in theta})
    return Message(content=content, reply_to=message)


def run_device_round(message: Message, context: Context, send_weights: bool) -> Message:
    config = message.content.config_records[keys.CONFIG]
    if str(config.get(keys.PRIVATE_NAMES, "")).strip():
        return run_metafed_round(message, context)
    weights = from_array_record(message.content.array_records[keys.ARRAYS])
    device_seed = device_seed_of(config, context)
    device = sine_device(
        device_seed,
        stream_key=int(config.get(keys.SERVER_ROUND, 0)),
        drift_per_sample=float(config.get(keys.DRIFT_PER_SAMPLE, 0.0)),
    )
    learner, flash_bytes = make_learner(config, weights)
    device.deploy(learner, flash_bytes)
    return adapt_and_reply(message, device, weights, device_seed, send_weights, 0.02, W.nbytes)


def adapt_and_reply(
    message: Message,
    device: SimulatedDevice,
    weights: dict[str, np.ndarray],
    device_seed: int,
    send_weights: bool,
    default_learning_rate: float,
    payload_size: Callable[[dict[str, np.ndarray]], int],
) -> Message:
    """A whole-model round (TinyReptile, FedAvg) on a deployed device: install θ, adapt online, reply φ and costs.

    ``payload_size`` says what the model costs on the radio (raw arrays, or the
    wire codec's payload); probe losses that were not measured are left out.
    """
    config = message.content.config_records[keys.CONFIG]
    if not bool(config.get(keys.RADIO, True)):  # a device learning alone: the model never crosses the radio
        payload_size = _no_radio
    step_sizes = requested_step_sizes(message, device, weights) if send_weights else None  # refused before the round
    ledger_at_start = copy.copy(device.ledger)
    device.receive(weights, payload_bytes=payload_size(weights))
    report = device.adapt(
        shots=int(config.get(keys.STREAM_SAMPLES, 10)),
        learning_rate=float(config.get(keys.INNER_LEARNING_RATE, default_learning_rate)),
        probe=int(config.get(keys.PROBE_SAMPLES, 0)),
        epochs=int(config.get(keys.LOCAL_EPOCHS, 1)),
    )
    phi = device.learner.get_weights()
    step_size_reply = measure_step_sizes(device, weights, step_sizes, payload_size) if step_sizes else None
    if send_weights:
        device.send(payload_size(phi))
    cost = device.close_round(ledger_at_start)
    metrics = {
        keys.NUM_EXAMPLES: report.samples_used,
        keys.SAMPLES_USED: report.samples_used,
        keys.LOSS_BEFORE: report.loss_before,
        keys.LOSS_AFTER: report.loss_after,
        keys.PREQUENTIAL_LOSS: report.prequential_loss,
        keys.BYTES_RECEIVED: device.ledger.bytes_received,
        keys.BYTES_SENT: device.ledger.bytes_sent,
        keys.DEVICE_TIME_S: cost.compute_s + cost.radio_s,
        keys.DEVICE_ENERGY_J: cost.energy_j,
        keys.DEVICE_SEED: device_seed,
    }
    content = RecordDict({keys.METRICS: MetricRecord({k: v for k, v in metrics.items() if v == v})})  # NaN: no probe
    if send_weights:
        content[keys.ARRAYS] = to_array_record(phi)
    if step_size_reply is not None:
        hypergradient, query_loss = step_size_reply
        content[keys.STEP_SIZE_GRADIENT] = to_array_record(hypergradient)
        content.metric_records[keys.METRICS][keys.STEP_SIZE_QUERY_LOSS] = query_loss
    return Message(content=content, reply_to=message)


def _no_radio(_weights: dict[str, np.ndarray]) -> int:
    return 0


def requested_step_sizes(
    message: Message, device: SimulatedDevice, theta: dict[str, np.ndarray]
) -> tuple[StepSizePlan, dict[str, np.ndarray]] | None:
    """The step sizes the server sent with θ and what to measure with them, checked before the round starts.

    None if the request carries no step sizes. A refusal (names, shapes,
    dtype, NaN or non-positive step sizes, a plan the learner cannot carry out)
    raises before the device's learner, stream or ledger is touched.
    """
    if keys.STEP_SIZES not in message.content.array_records:
        return None
    plan = StepSizePlan.from_hyperparameters(message.content.config_records[keys.CONFIG], device.learner)
    return plan, check_scales(from_array_record(message.content.array_records[keys.STEP_SIZES]), theta)


def measure_step_sizes(
    device: SimulatedDevice,
    theta: dict[str, np.ndarray],
    step_sizes: tuple[StepSizePlan, dict[str, np.ndarray]],
    payload_size: Callable[[dict[str, np.ndarray]], int],
) -> tuple[dict[str, np.ndarray], float]:
    """The hypergradient of K-shot adaptation from θ on the samples after the round's, as the MQTT firmware measures it.

    :func:`firmware_sim.mqtt_round.measure_hypergradient` does the work and
    books the compute; here the Flower transport books its bytes: the step
    sizes received and the hypergradient sent.
    """
    plan, scales = step_sizes
    device.ledger.bytes_received += payload_size(scales)
    hypergradient, query_loss = measure_hypergradient(device, theta, scales, plan)
    device.send(payload_size(hypergradient))
    return hypergradient, query_loss


@app.train()
def train(message: Message, context: Context) -> Message:
    return run_device_round(message, context, send_weights=True)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return run_device_round(message, context, send_weights=False)


@app.query()
def identify_device(message: Message, context: Context) -> Message:
    """Which device this node plays, resolved from the same config a training request carries.

    The server asks once per node (:class:`server.strategies.common.DeviceOrderedGrid`):
    Flower's node ids are random per run, so only the device seed lets it
    sample the same devices every run.
    """
    config = message.content.config_records[keys.CONFIG]
    return Message(RecordDict({keys.METRICS: MetricRecord({keys.DEVICE_SEED: device_seed_of(config, context)})}), reply_to=message)
