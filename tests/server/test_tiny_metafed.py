"""TinyMetaFed's server math: private part never sent, Top-P updates summed and applied sparsely."""

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

from edge import record_keys as keys
from edge.flower_records import from_array_record, to_array_record
from edge.sparse_records import sparse_from_array_record, sparse_to_array_record
from edge.validation import InvalidInputError
from edge.wire import SparseTensor, top_p_sparsify
from server.strategies.sparse_math import apply_sparse, sum_sparse
from tests.server.strategy_harness import FixedGrid, configured, flower_task_identity  # noqa: F401 (fixture)
from server.strategies.tiny_metafed import TinyMetaFed, TinyMetaFedConfig


pytestmark = pytest.mark.usefixtures("flower_task_identity")


THETA = {
    "w0": np.zeros((2, 3), np.float32),
    "b0": np.zeros(3, np.float32),
    "w1": np.full((3, 1), 7.0, np.float32),  # the private head
    "b1": np.full(1, 7.0, np.float32),
}
CONFIG = dict(clients_per_round=2, meta_step_size=0.5, anneal="constant", private_names=("w1", "b1"), top_p=0.25)


def sparse_reply(message, sparse, sent=100, received=300):
    metrics = MetricRecord({keys.NUM_EXAMPLES: 10, keys.BYTES_SENT: sent, keys.BYTES_RECEIVED: received})
    return Message(content=RecordDict({keys.SPARSE_DELTA: sparse_to_array_record(sparse), keys.METRICS: metrics}), reply_to=message)


def test_private_part_is_never_sent_and_devices_are_told_how_to_rebuild_it():
    config = ConfigRecord({"inner-learning-rate": 0.1})
    messages = list(TinyMetaFed(TinyMetaFedConfig(**CONFIG)).configure_train(1, to_array_record(THETA), config, FixedGrid([1, 2])))
    for message in messages:
        assert sorted(message.content[keys.ARRAYS]) == ["b0", "w0"]
        sent = message.content[keys.CONFIG]
        assert sent[keys.PRIVATE_NAMES] == "w1,b1" and sent[keys.TOP_P] == 0.25
        assert sent[keys.RECONSTRUCTION_SAMPLES] == 5
        assert keys.RECONSTRUCTION_RULE not in sent  # SGD, the default, goes as the frames older firmware knows
    assert keys.TOP_P not in config  # caller's config untouched


def test_the_imprint_rule_is_sent_and_an_unknown_rule_is_refused():
    strategy = TinyMetaFed(TinyMetaFedConfig(**CONFIG, reconstruction_rule="imprint"))
    messages = list(strategy.configure_train(1, to_array_record(THETA), ConfigRecord({}), FixedGrid([1, 2])))
    assert [m.content[keys.CONFIG][keys.RECONSTRUCTION_RULE] for m in messages] == ["imprint", "imprint"]
    with pytest.raises(ValueError, match="reconstruction_rule 'mean' is not one of"):
        TinyMetaFedConfig(**CONFIG, reconstruction_rule="mean")


def test_step_size_learning_is_refused_rather_than_silently_ignored():
    from server.core.federation import FederationSettings
    from server.core.run_config import settings_from_run_config

    with pytest.raises(TypeError):  # TinyMetaFed's config has no step sizes to set
        TinyMetaFedConfig(**CONFIG, step_size_learning_rate=0.01)
    with pytest.raises(ValueError, match="applies to strategy tinyreptile only"):  # nor does its run config
        settings_from_run_config({"strategy": "tinymetafed", "step-size-learning-rate": 0.05})
    filler = FederationSettings().reptile.step_size_learning_rate  # what the Flower App's table lists for it
    settings_from_run_config({"strategy": "tinymetafed", "step-size-learning-rate": filler})


def test_sparse_updates_are_summed_and_applied_with_epsilon_over_n():
    strategy = TinyMetaFed(TinyMetaFedConfig(**CONFIG))
    sent = configured(strategy, THETA)
    d1 = {"w0": np.array([[1, 0, 0], [0, 0, -4]], np.float32), "b0": np.array([0, 2, 0], np.float32)}
    d2 = {"w0": np.array([[3, 0, 0], [0, 0, 0]], np.float32), "b0": np.array([0, 0, 8], np.float32)}
    s1, s2 = top_p_sparsify(d1, 3 / 9), top_p_sparsify(d2, 2 / 9)
    arrays, metrics = strategy.aggregate_train(1, [sparse_reply(sent[0], s1), sparse_reply(sent[1], s2, sent=40)])
    theta = from_array_record(arrays)
    # θ + 0.5/2 · (d1 + d2), only at the entries sent; the private head is untouched
    np.testing.assert_allclose(theta["w0"], [[1.0, 0, 0], [0, 0, -1.0]])
    np.testing.assert_allclose(theta["b0"], [0, 0.5, 2.0])
    np.testing.assert_array_equal(theta["w1"], THETA["w1"])
    np.testing.assert_array_equal(theta["b1"], THETA["b1"])
    assert metrics["clients"] == 2 and metrics["bytes-sent"] == 140 and metrics["bytes-received"] == 600
    assert metrics["uplink-density"] == pytest.approx(5 / 18)
    assert strategy.traffic[1] == {sent[0].metadata.dst_node_id: {"bytes-received": 300.0, "bytes-sent": 100.0},
                                   sent[1].metadata.dst_node_id: {"bytes-received": 300.0, "bytes-sent": 40.0}}


def test_top_p_keeps_the_largest_entries_and_dense_replies_agree_with_p_1():
    rng = np.random.default_rng(0)
    shared = {"w0": rng.normal(size=(2, 3)).astype(np.float32), "b0": rng.normal(size=3).astype(np.float32)}
    delta = {"w0": rng.normal(size=(2, 3)).astype(np.float32), "b0": rng.normal(size=3).astype(np.float32)}
    kept = top_p_sparsify(delta, 0.34)  # ceil(0.34 * 9) = 4 entries
    magnitudes = np.sort(np.abs(np.concatenate([delta["w0"].ravel(), delta["b0"]])))[::-1]
    assert sorted(np.abs(np.concatenate([kept["w0"].values, kept["b0"].values])), reverse=True) == pytest.approx(magnitudes[:4])
    # applied sparsely == dense arithmetic on the densified update
    applied = apply_sparse(shared, kept, 0.3)
    for name in shared:
        np.testing.assert_allclose(applied[name], shared[name] + 0.3 * kept[name].to_dense(), rtol=1e-6)
    # a dense reply φ is the Top-100% update
    theta = {**shared, "w1": np.zeros((3, 1), np.float32), "b1": np.zeros(1, np.float32)}
    strategy = TinyMetaFed(TinyMetaFedConfig(**{**CONFIG, "clients_per_round": 1, "meta_step_size": 1.0}))
    sent = configured(strategy, theta, nodes=(1,))
    phi = {k: shared[k] + delta[k] for k in shared}
    reply = Message(content=RecordDict({keys.ARRAYS: to_array_record(phi), keys.METRICS: MetricRecord()}), reply_to=sent[0])
    arrays, _ = strategy.aggregate_train(1, [reply])
    for name in shared:
        np.testing.assert_allclose(from_array_record(arrays)[name], phi[name], rtol=1e-6)


def test_sum_sparse_is_order_independent_and_matches_dense_sums():
    rng = np.random.default_rng(1)
    updates = [top_p_sparsify({"a": rng.normal(size=(4, 5)).astype(np.float32)}, 0.2) for _ in range(5)]
    total = sum_sparse(updates)
    np.testing.assert_allclose(total["a"].to_dense(), sum(u["a"].to_dense().astype(np.float64) for u in updates))
    assert sum_sparse(updates[::-1]) == total
    with pytest.raises(ValueError, match="differ in names"):
        sum_sparse([updates[0], {"b": updates[1]["a"]}])


def bad_records():
    good = {"w0": SparseTensor((2, 3), np.array([1, 4], np.uint32), np.ones(2, np.float32)),
            "b0": SparseTensor((3,), np.array([0], np.uint32), np.ones(1, np.float32))}
    record = sparse_to_array_record(good)
    yield "missing", {k: v for k, v in record.items() if k != "b0.values"}, "missing ['b0.values']"
    for name, (idx, val), text in [
        ("nan", (np.array([1, 4]), np.array([np.nan, 1], np.float32)), "NaN"),
        ("unsorted", (np.array([4, 1]), np.ones(2, np.float32)), "strictly increasing"),
        ("range", (np.array([1, 6]), np.ones(2, np.float32)), "out of range"),
        ("dtype", (np.array([1, 4]), np.ones(2, np.float64)), "dtype float64"),
        ("count", (np.array([1, 4]), np.ones(3, np.float32)), "equal length"),
    ]:
        yield name, {**sparse_to_array_record({"w0": good["w0"], "b0": good["b0"]}),
                     "w0.indices": to_array_record({"x": idx})["x"], "w0.values": to_array_record({"x": val})["x"]}, text


@pytest.mark.parametrize("name, record, text", list(bad_records()), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_sparse_replies_are_refused_with_a_reason_and_the_round_goes_on(name, record, text):
    spec = {"w0": ((2, 3), np.float32), "b0": ((3,), np.float32)}
    from flwr.app import ArrayRecord

    with pytest.raises(InvalidInputError, match=text.replace("[", r"\[").replace("]", r"\]")):
        sparse_from_array_record(ArrayRecord(dict(record)), spec)
    strategy = TinyMetaFed(TinyMetaFedConfig(**CONFIG))
    sent = configured(strategy, THETA)
    bad = Message(content=RecordDict({keys.SPARSE_DELTA: ArrayRecord(dict(record))}), reply_to=sent[0])
    good = sparse_reply(sent[1], {"w0": SparseTensor((2, 3), np.array([0], np.uint32), np.array([2.0], np.float32)),
                                  "b0": SparseTensor((3,), np.zeros(0, np.uint32), np.zeros(0, np.float32))})
    arrays, metrics = strategy.aggregate_train(1, [bad, good])
    assert metrics["clients"] == 1
    assert from_array_record(arrays)["w0"][0, 0] == pytest.approx(0.5 * 2.0)  # ε/n with n = 1 accepted


def test_cosine_is_the_default_schedule_and_config_is_checked():
    strategy = TinyMetaFed(TinyMetaFedConfig(total_rounds=10, meta_step_size=1.0))
    assert strategy.epsilon(1) == 1.0 and strategy.epsilon(6) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="did you mean|kept fraction"):
        TinyMetaFedConfig(top_p=10)


def test_outer_momentum_applies_to_the_shared_part_as_in_tinyreptile():
    """μ > 0 is not silently ignored: the same replies twice give d, then d + μ·(μ·d + d) with Nesterov."""
    strategy = TinyMetaFed(TinyMetaFedConfig(**{**CONFIG, "outer_momentum": 0.5, "nesterov": True, "top_p": 1.0}))
    d = {"w0": np.array([[1, 0, 0], [0, 0, -4]], np.float32), "b0": np.array([0, 2, 0], np.float32)}
    dense = top_p_sparsify(d, 1.0)
    sent = configured(strategy, THETA)
    first = from_array_record(strategy.aggregate_train(1, [sparse_reply(sent[0], dense), sparse_reply(sent[1], dense)])[0])
    # round 1: m = d; Nesterov step d + μ·m = 1.5·d, scaled by ε = 0.5
    np.testing.assert_allclose(first["w0"], 0.75 * d["w0"])
    sent = configured(strategy, first)
    second = from_array_record(strategy.aggregate_train(2, [sparse_reply(sent[0], dense), sparse_reply(sent[1], dense)])[0])
    # round 2: m = μ·d + d = 1.5·d; step d + μ·m = 1.75·d
    np.testing.assert_allclose(second["w0"], first["w0"] + 0.5 * 1.75 * d["w0"], rtol=1e-6)
    np.testing.assert_array_equal(second["w1"], THETA["w1"])  # the private head is outside the buffer
    assert sorted(strategy.strategy_state()) == ["momentum/b0", "momentum/w0"]
