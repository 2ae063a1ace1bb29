"""A Flower ``Grid`` that runs each message through a ClientApp in this process, one after another.

Why: benchmarks train many federations (seeds, methods, tasks), and what
they compare is the algorithms, not the transport. Flower's simulation engine
costs a Ray start per run and ~0.1 s of polling per round; this grid costs
nothing, so the same ``run_federation``, strategies and ClientApp code run in
seconds. It is a transport for measurement only: the transports users run
(Flower simulation and deployment, MQTT) are tested with the same strategies
and device code, and ``tests/server/test_simulation_reproducible.py`` and
``tests/server/test_task_federation.py`` check that this grid and Flower's
simulation engine learn bit-identical meta-models.

As in Flower's simulation, node ids are random 63-bit numbers (drawn from
``node_id_seed``; None draws fresh ones) and node i has ``partition-id`` i, so
sampling that must not depend on node ids is exercised here too; and a
device's exception becomes an error reply. Every reply's metrics (bytes,
simulated device time and energy) are kept in :attr:`InProcessGrid.reply_log`
so a benchmark can read per-device costs whatever a strategy's aggregate does
with them (Flower's FedAvg averages metrics, TinyReptile sums counters).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable

from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp

from edge import record_keys as keys
from server.transports.own_grid import OwnGrid

log = logging.getLogger(__name__)


class InProcessGrid(OwnGrid):
    """``n_nodes`` nodes, node i playing partition i; a message is handled when it is pushed."""

    def __init__(self, client_app: ClientApp, n_nodes: int, *, node_id_seed: int | None = None, run_id: int = 1) -> None:
        if n_nodes < 1:
            raise ValueError("an in-process grid needs at least one node")
        super().__init__(run_id)
        rng = random.Random(node_id_seed) if node_id_seed is not None else random.SystemRandom()
        self._client_app = client_app
        self._contexts = {
            node_id: Context(run_id, node_id, {"partition-id": i, "num-partitions": n_nodes}, RecordDict(), {})
            for i, node_id in enumerate(rng.sample(range(2, 2**63), n_nodes))
        }
        self._replies: dict[str, Message] = {}
        self.reply_log: list[dict[str, float]] = []  # one entry per train/evaluate reply: its metrics and the node

    def get_node_ids(self) -> list[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Run each message's node now; its reply waits for :meth:`pull_messages`."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            context = self._contexts.get(message.metadata.dst_node_id)
            if context is None:
                log.warning("node %s does not exist; message not sent", message.metadata.dst_node_id)
                continue
            try:
                reply = self._client_app(message, context)
            except Exception as exc:  # noqa: BLE001 - a device failing is a reply, as in Flower
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)
            self._log(message, reply, context)
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def _log(self, message: Message, reply: Message, context: Context) -> None:
        if message.metadata.message_type not in (MessageType.TRAIN, MessageType.EVALUATE) or reply.has_error():
            return
        if keys.METRICS in reply.content.metric_records:
            metrics = reply.content.metric_records[keys.METRICS]
            numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            self.reply_log.append({"node": float(context.node_id), **numbers})

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return self.pull_messages(self.push_messages(messages))
