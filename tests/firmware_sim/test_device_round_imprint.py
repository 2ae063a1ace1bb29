"""A TinyMetaFed round that imprints the private output layer: on a classifier it runs, elsewhere it is refused."""

import numpy as np
import pytest

from edge import record_keys as keys
from edge.wire import WireFormatError
from edge.device_round import run_device_round, shared_spec
from edge.round_contract import RoundRequest
from firmware_sim.fleet import local_init, sine_device
from firmware_sim.task_client_app import firmware_init, task_device
from firmware_sim.task_families import task_family
from edge.mlp import NumpyMLP

IMPRINT = {keys.PRIVATE_NAMES: "w2,b2", keys.RECONSTRUCTION_SAMPLES: 10, keys.STREAM_SAMPLES: 5,
           keys.RECONSTRUCTION_RULE: "imprint"}  # fmt: skip


def test_a_classifier_device_imprints_its_head_and_sends_only_the_shared_part():
    family = task_family("presence")  # the smallest model: 11-32-32-2
    device = task_device(family, 3, stream_key=1)
    plan = RoundRequest.from_hyperparameters(IMPRINT, evaluate=False)
    theta = {k: v for k, v in local_init(0, family.layer_sizes).items() if k not in ("w2", "b2")}
    assert set(shared_spec(device.learner, plan.private_names)) == set(theta)
    outcome = run_device_round(device, plan, theta, received_bytes=100, private_init=firmware_init(family, 3))
    assert outcome.weights is not None and set(outcome.weights) == set(theta)
    assert outcome.num_examples == 15 and np.isfinite(outcome.metrics[keys.RECONSTRUCTION_LOSS])
    head = device.learner.get_weights()
    assert head["b2"].max() <= 0 and np.abs(head["w2"]).sum() > 0  # class means in, −½‖μ‖² biases


def test_a_regressor_or_an_unknown_rule_is_refused_before_the_device_pays_anything():
    device = sine_device(3, stream_key=1)
    device.deploy(NumpyMLP((1, 40, 40, 1)))
    plan = RoundRequest.from_hyperparameters(IMPRINT, evaluate=False)
    theta = {k: v for k, v in local_init(0, (1, 40, 40, 1)).items() if k not in ("w2", "b2")}
    with pytest.raises(WireFormatError, match="needs a classifier"):
        run_device_round(device, plan, theta, received_bytes=100, private_init=local_init(3, (1, 40, 40, 1)))
    assert device.ledger.bytes_received == 0 and device.ledger.samples == 0
    with pytest.raises(WireFormatError, match="'mean' is not one of"):
        RoundRequest.from_hyperparameters({**IMPRINT, keys.RECONSTRUCTION_RULE: "mean"}, evaluate=False)
