"""One reply screening for every strategy: each refusal is dropped alone, with its reason, and nothing else changes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict

from edge import record_keys as keys
from edge.flower_records import to_array_record
from edge.sparse_records import sparse_to_array_record
from edge.wire.sparse import top_p_sparsify
from server.strategies.screening import screen_replies
from server.strategies.tiny_reptile import TinyReptile, TinyReptileConfig
from tests.server.strategy_harness import configured, flower_task_identity  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("flower_task_identity")
THETA = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def sent(n: int = 4) -> list[Message]:
    return configured(TinyReptile(TinyReptileConfig(clients_per_round=n)), THETA, nodes=tuple(range(1, n + 1)))


def reply(to: Message, records: dict, node: int | None = None) -> Message:
    content = RecordDict({**records, keys.METRICS: MetricRecord({keys.NUM_EXAMPLES: 5})})
    message = Message(content=content, reply_to=to)
    if node is not None:
        message.metadata.__dict__["_src_node_id"] = node
    return message


def phi(value: float = 1.0) -> dict:
    return {k: np.full_like(v, value) for k, v in THETA.items()}


def test_good_replies_pass_in_their_order_and_each_bad_one_is_dropped_with_its_reason(caplog):
    out = sent(5)
    nan = phi()
    nan["w"][0, 0] = np.nan
    wrong_shape = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}
    replies = [
        reply(out[0], {keys.ARRAYS: to_array_record(phi(1.0))}),
        reply(out[1], {keys.ARRAYS: to_array_record(nan)}),
        reply(out[2], {keys.ARRAYS: to_array_record(wrong_shape)}),
        reply(out[3], {}),
        reply(out[4], {keys.ARRAYS: to_array_record(phi(2.0))}),
    ]
    with caplog.at_level(logging.WARNING):
        accepted = screen_replies(replies, THETA)
    assert [r.node for r in accepted] == [out[0].metadata.dst_node_id, out[4].metadata.dst_node_id]
    assert float(accepted[1].weights["w"][0, 0]) == 2.0 and accepted[0].delta is None
    assert "NaN" in caplog.text or "finite" in caplog.text
    assert "shape" in caplog.text and "no 'arrays' record" in caplog.text


def test_a_second_reply_from_one_node_counts_once(caplog):
    out = sent(2)
    first = reply(out[0], {keys.ARRAYS: to_array_record(phi(1.0))})
    again = reply(out[0], {keys.ARRAYS: to_array_record(phi(9.0))})
    with caplog.at_level(logging.WARNING):
        accepted = screen_replies([first, again], THETA)
    assert len(accepted) == 1 and float(accepted[0].weights["b"][0]) == 1.0
    assert "replied twice" in caplog.text


def test_sparse_deltas_are_screened_and_dense_replies_become_deltas():
    out = sent(3)
    delta = top_p_sparsify({k: np.arange(v.size, dtype=np.float32).reshape(v.shape) + 1 for k, v in THETA.items()}, 0.5)
    bad = sparse_to_array_record(delta)
    bad["w.indices"] = to_array_record({"x": np.array([0, 99], np.uint32)})["x"]  # out of range
    replies = [
        reply(out[0], {keys.SPARSE_DELTA: sparse_to_array_record(delta)}),
        reply(out[1], {keys.SPARSE_DELTA: bad}),
        reply(out[2], {keys.ARRAYS: to_array_record(phi(3.0))}),
    ]
    accepted = screen_replies(replies, THETA, sparse=True)
    assert len(accepted) == 2 and all(r.weights is None for r in accepted)
    dense = accepted[1].delta["w"]
    assert dense.nnz == THETA["w"].size and np.all(dense.values == 3.0)


def test_a_bad_hypergradient_is_dropped_alone_and_its_update_still_counts(caplog):
    out = sent(2)
    good = {k: np.ones_like(v) for k, v in THETA.items()}
    bad = {"w": np.ones((2, 3), np.float32)}  # a name missing
    replies = [
        reply(out[0], {keys.ARRAYS: to_array_record(phi()), keys.HYPERGRADIENT: to_array_record(good)}),
        reply(out[1], {keys.ARRAYS: to_array_record(phi()), keys.HYPERGRADIENT: to_array_record(bad)}),
    ]
    with caplog.at_level(logging.WARNING):
        accepted = screen_replies(replies, THETA, hypergradients=True)
    assert len(accepted) == 2
    assert accepted[0].hypergradient is not None and accepted[1].hypergradient is None
    assert "hypergradient refused" in caplog.text
