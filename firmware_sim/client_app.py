"""The Flower ClientApp of a simulated microcontroller.

Each Flower node stands for one device of the fleet (``partition-id`` picks
which). On a training request the device installs the received θ, refusing it
if it does not fit its profile, adapts online on fresh samples of its own
stream and replies with φ and what the round cost it.
"""

from __future__ import annotations

import copy
import functools
import logging

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from edge import weights as W
from edge.flower_records import from_array_record, to_array_record
from edge.learner import Learner
from firmware_sim.fleet import mlp_learner_for, sine_device

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


def run_device_round(message: Message, context: Context, send_weights: bool) -> Message:
    config = message.content.config_records[keys.CONFIG]
    weights = from_array_record(message.content.array_records[keys.ARRAYS])
    device_seed = int(config.get(keys.DEVICE_SEED_BASE, 0)) + int(context.node_config["partition-id"])
    device = sine_device(
        device_seed,
        stream_key=int(config.get(keys.SERVER_ROUND, 0)),
        drift_per_sample=float(config.get(keys.DRIFT_PER_SAMPLE, 0.0)),
    )
    learner, flash_bytes = make_learner(config, weights)
    device.deploy(learner, flash_bytes)
    ledger_at_start = copy.copy(device.ledger)
    device.receive(weights, payload_bytes=W.nbytes(weights))
    report = device.adapt(
        shots=int(config.get(keys.STREAM_SAMPLES, 10)),
        learning_rate=float(config.get(keys.INNER_LEARNING_RATE, 0.02)),
        probe=int(config.get(keys.PROBE_SAMPLES, 0)),
        epochs=int(config.get(keys.LOCAL_EPOCHS, 1)),
    )
    phi = learner.get_weights()
    if send_weights:
        device.send(W.nbytes(phi))
    cost = device.close_round(ledger_at_start)
    metrics = MetricRecord(
        {
            keys.NUM_EXAMPLES: report.samples_used,
            keys.SAMPLES_USED: report.samples_used,
            keys.LOSS_BEFORE: report.loss_before,
            keys.LOSS_AFTER: report.loss_after,
            keys.PREQUENTIAL_LOSS: report.prequential_loss,
            keys.BYTES_RECEIVED: device.ledger.bytes_received,
            keys.BYTES_SENT: device.ledger.bytes_sent,
            keys.DEVICE_TIME_S: cost.compute_s + cost.radio_s,
            keys.DEVICE_ENERGY_J: cost.energy_j,
        }
    )
    content = RecordDict({keys.METRICS: metrics})
    if send_weights:
        content[keys.ARRAYS] = to_array_record(phi)
    return Message(content=content, reply_to=message)


@app.train()
def train(message: Message, context: Context) -> Message:
    return run_device_round(message, context, send_weights=True)


@app.evaluate()
def evaluate(message: Message, context: Context) -> Message:
    return run_device_round(message, context, send_weights=False)
