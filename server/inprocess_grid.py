"""A Flower ``Grid`` that runs each message through a ClientApp in this process, one after another.

Why: benchmarks run hundreds of rounds for five methods on three tasks, and
what they compare is the algorithms, not the transport. Flower's simulation
engine costs a Ray start per run and ~0.1 s of polling per round; this grid
costs nothing, so the same ``Strategy.start`` and the same ClientApp code run
in seconds. It is a transport for measurement only: the transports users run
(Flower simulation and deployment, MQTT) are tested with the same strategies
and device code in ``tests/server/test_simulation*.py``, ``test_flower_deployment.py``
and ``tests/fleet``, and ``tests/server/test_task_federation.py`` runs a task
family through Flower's simulation engine too.

Every reply's metrics (bytes, simulated device time and energy) are kept in
:attr:`InProcessGrid.reply_log` so a benchmark can read per-device costs
whatever a strategy's aggregate does with them (Flower's FedAvg averages
metrics, TinyReptile sums counters).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys

FIRST_NODE_ID = 1001  # arbitrary but fixed, so node ids (and any sampling over them) repeat run to run


class InProcessGrid(Grid):
    """``n_nodes`` nodes, node i playing partition i; a message is handled when it is pushed."""

    def __init__(self, client_app: ClientApp, n_nodes: int, run_id: int = 1) -> None:
        if n_nodes < 1:
            raise ValueError("an in-process grid needs at least one node")
        self._run = Run.create_empty(run_id)
        for name, value in (("run_id", run_id), ("node_id", SUPERLINK_NODE_ID), ("task_id", 1)):
            if getattr(TaskIdentity, f"_{name}") is None:  # this process is the ServerApp's runtime
                setattr(TaskIdentity, name, value)
        self._client_app = client_app
        self._contexts = {
            FIRST_NODE_ID + i: Context(
                run_id=run_id, node_id=FIRST_NODE_ID + i, node_config={"partition-id": i, "num-partitions": n_nodes},
                state=RecordDict(), run_config={},
            )
            for i in range(n_nodes)
        }  # fmt: skip
        self._replies: dict[str, Message] = {}
        self.reply_log: list[dict[str, float]] = []  # one entry per train/evaluate reply: its metrics and the node

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return sorted(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            context = self._contexts.get(message.metadata.dst_node_id)
            if context is None:
                raise ValueError(f"node {message.metadata.dst_node_id} is not on this grid")
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            reply = self._client_app(message, context)
            is_round = message.metadata.message_type in (MessageType.TRAIN, MessageType.EVALUATE)
            if is_round and not reply.has_error() and keys.METRICS in reply.content.metric_records:
                metrics = reply.content.metric_records[keys.METRICS]
                self.reply_log.append(
                    {"node": float(context.node_id), **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}
                )
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))
