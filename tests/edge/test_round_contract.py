"""The round contract: one request type and one reply type, whatever carries them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge import record_keys as keys
from edge.round_contract import RoundReply, RoundRequest, StepSizeRequest, request_fields
from edge.wire import WireFormatError

FULL = RoundRequest(
    round_id=3, shots=8, epochs=2, probe=4, learning_rate=0.05, private_names=("w2", "b2"), reconstruction_samples=5,
    reconstruction_lr=0.1, reconstruction_rule="imprint", top_p=0.2,
    step_sizes=StepSizeRequest(base_rate=0.05, shots=4, query=6), extras={keys.LAYER_SIZES: "1,40,40,1"},
)  # fmt: skip


@pytest.mark.parametrize("request_", [RoundRequest(), FULL, RoundRequest(evaluate=True, radio=False)])
def test_a_request_survives_its_flat_encoding(request_):
    values = request_.to_hyperparameters()
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())
    assert RoundRequest.from_hyperparameters(values) == request_


def test_absent_fields_take_the_contracts_defaults_and_only_those():
    assert RoundRequest.from_hyperparameters({}) == RoundRequest()
    assert RoundRequest().shots == 10 and RoundRequest().epochs == 1 and RoundRequest().probe == 0
    assert "round_id" in request_fields() and "step_sizes" in request_fields()


def test_a_dense_top_p_means_a_dense_update():
    assert RoundRequest.from_hyperparameters({keys.TOP_P: 1.0}).top_p is None


def test_a_message_type_or_an_override_decides_evaluation():
    assert RoundRequest.from_hyperparameters({keys.MESSAGE_TYPE: "evaluate"}).evaluate
    assert not RoundRequest.from_hyperparameters({keys.MESSAGE_TYPE: "evaluate"}, evaluate=False).evaluate


def test_step_sizes_are_measured_only_in_whole_model_training_rounds():
    plan = StepSizeRequest(0.05, 4, 6)
    assert RoundRequest(step_sizes=plan).measures_step_sizes
    assert not RoundRequest(step_sizes=plan, evaluate=True).measures_step_sizes
    assert not RoundRequest(step_sizes=plan, private_names=("w2",)).measures_step_sizes


@pytest.mark.parametrize(
    "values, reason",
    [
        ({keys.STREAM_SAMPLES: -1}, "stream-samples"),
        ({keys.STREAM_SAMPLES: True}, "stream-samples"),
        ({keys.STREAM_SAMPLES: 2.5}, "stream-samples"),
        ({keys.LOCAL_EPOCHS: 0}, "local-epochs"),
        ({keys.INNER_LEARNING_RATE: math.nan}, "inner-learning-rate"),
        ({keys.INNER_LEARNING_RATE: 11.0}, "inner-learning-rate"),
        ({keys.RECONSTRUCTION_RULE: "mean"}, "'mean' is not one of"),
        ({keys.PRIVATE_NAMES: 3}, "private-names"),
        ({keys.TOP_P: 0.0}, "top-p"),
        ({keys.TOP_P: "half"}, "top-p"),
        ({keys.STEP_SIZE_SHOTS: 4}, "step-size-base-rate"),
        ({keys.STEP_SIZE_BASE_RATE: 0.1, keys.STEP_SIZE_SHOTS: 0, keys.STEP_SIZE_QUERY: 1}, "step-size-shots"),
        ({keys.RADIO: "yes"}, "radio"),
        ({keys.MESSAGE_TYPE: "infer"}, "message-type"),
    ],
)
def test_a_bad_request_is_refused_with_one_error_type_naming_the_field(values, reason):
    with pytest.raises(WireFormatError, match=reason):
        RoundRequest.from_hyperparameters(values)


def test_a_request_built_in_code_is_held_to_the_same_checks():
    with pytest.raises(WireFormatError, match="local-epochs"):
        RoundRequest(epochs=0)
    with pytest.raises(WireFormatError, match="not one of"):
        RoundRequest(reconstruction_rule="mean")


def test_the_reply_reports_one_flat_metric_record():
    reply = RoundReply(
        device_id="sine-1", round_id=2, weights={"w": np.zeros(2, np.float32)}, sparse_delta=None,
        metrics={keys.LOSS_BEFORE: 1.0}, num_examples=10, bytes_sent=100, bytes_received=200, time_s=0.5,
        energy_j=0.01, step_size_query_loss=float("nan"),
    )  # fmt: skip
    record = reply.metric_record()
    assert record[keys.NUM_EXAMPLES] == 10 and record[keys.BYTES_SENT] == 100 and record[keys.LOSS_BEFORE] == 1.0
    assert keys.STEP_SIZE_QUERY_LOSS not in record  # a non-finite measurement is not reported
