"""A Flower ``Grid`` that runs each message through a ClientApp on this machine: in this process, or in a pool.

Why: benchmarks train many federations (seeds, methods, tasks), and what
they compare is the algorithms, not the transport. Flower's simulation engine
costs a Ray start per run and ~0.1 s of polling per round; this grid costs
nothing, so the same ``run_federation``, strategies and ClientApp code run in
seconds. It is a transport for measurement only: the transports users run
(Flower simulation and deployment, MQTT) are tested with the same strategies
and device code, and ``tests/server/test_simulation_reproducible.py`` and
``tests/server/test_task_federation.py`` check that this grid and Flower's
simulation engine learn bit-identical meta-models.

With ``workers`` > 1 the messages a round pushes run in that many worker
processes (as Flower's engine runs them in Ray actors), so a round's device
rounds use every core. Each device round is a function of its message and
its node's context alone, and replies come back in the order the messages
were pushed, so the result is bit-identical to ``workers=1``
(``tests/server/test_inprocess_grid.py``). The workers start from a
forkserver, not a fork of this process: forking a process with threads
(a progress display, a store) can copy a lock another thread holds.

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
import multiprocessing
import pickle
import random
import uuid
from collections.abc import Iterable
from multiprocessing.pool import Pool
from types import TracebackType

from flwr.app import Context, Error, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from edge import record_keys as keys
from server.transports.own_grid import OwnGrid

log = logging.getLogger(__name__)

_IDENTITY = ("run_id", "node_id", "task_id")
WORKER_START_TIMEOUT_S = 120.0  # a forkserver's workers start in < 0.2 s; minutes only on a badly loaded machine
_worker_app: ClientApp | None = None  # the ClientApp of a worker process (set by _start_worker)


def handle(client_app: ClientApp, message: Message, context: Context) -> Message:
    """The node's reply to ``message``: what the ClientApp returns, or an error reply if it raised."""
    try:
        return client_app(message, context)
    except Exception as exc:  # noqa: BLE001 - a device failing is a reply, as in Flower
        return Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)


def _start_worker(client_app: ClientApp, identity: tuple[int, int, int]) -> None:
    """A worker's setup: its ClientApp, and the run identity a reply's metadata reads (as the ServerApp's)."""
    global _worker_app
    _worker_app = client_app
    for name, value in zip(_IDENTITY, identity):
        setattr(TaskIdentity, name, value)


def _worker_ready() -> bool:
    return _worker_app is not None


def _handle_in_worker(job: tuple[Message, Context]) -> tuple[Message, Context]:
    """One message in a worker; the context goes back too, in case the ClientApp changed the node's state."""
    message, context = job
    assert _worker_app is not None, "worker not started"
    return handle(_worker_app, message, context), context


def start_forkserver(preload: Iterable[str] = ()) -> None:
    """Start the forkserver the workers come from now, importing ``preload`` (e.g. the ClientApp's module) in it.

    Optional: the first pool starts it anyway. Called before other work (the demo's registry selection), the
    forkserver's imports run beside that work instead of before the first round.
    """
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__, *preload])
    forkserver.ensure_running()


class InProcessGrid(OwnGrid):
    """``n_nodes`` nodes, node i playing partition i; the messages of a push are handled before it returns.

    ``workers`` > 1 runs them in that many processes (the ClientApp must pickle, as a module-level
    ``ClientApp()`` does); call :meth:`close` (or use the grid as a context manager) to stop them. As with
    any start method but fork, a worker imports the ``__main__`` script again: a script that trains with
    workers keeps its work under ``if __name__ == "__main__":`` (``tinyfleet`` and the benches do); without
    it the workers cannot start, and the grid raises after :data:`WORKER_START_TIMEOUT_S`.
    """

    def __init__(
        self, client_app: ClientApp, n_nodes: int, *, node_id_seed: int | None = None, run_id: int = 1, workers: int = 1
    ) -> None:
        if n_nodes < 1:
            raise ValueError("an in-process grid needs at least one node")
        if workers < 1:
            raise ValueError("an in-process grid needs at least one worker")
        super().__init__(run_id)
        rng = random.Random(node_id_seed) if node_id_seed is not None else random.SystemRandom()
        self._client_app = client_app
        self._contexts = {
            node_id: Context(run_id, node_id, {"partition-id": i, "num-partitions": n_nodes}, RecordDict(), {})
            for i, node_id in enumerate(rng.sample(range(2, 2**63), n_nodes))
        }
        self._replies: dict[str, Message] = {}
        self.reply_log: list[dict[str, float]] = []  # one entry per train/evaluate reply: its metrics and the node
        self.workers = workers
        self._pool: Pool | None = None
        if workers > 1:
            try:
                pickle.dumps(client_app)
            except Exception as exc:  # noqa: BLE001 - say which app, whatever pickle raised
                raise ValueError(f"workers={workers} needs a ClientApp that pickles (a module-level one): {exc}") from exc

    def get_node_ids(self) -> list[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Run each message's node now; its reply waits for :meth:`pull_messages`."""
        jobs: list[tuple[Message, Context]] = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            context = self._contexts.get(message.metadata.dst_node_id)
            if context is None:
                log.warning("node %s does not exist; message not sent", message.metadata.dst_node_id)
                continue
            jobs.append((message, context))
        ids = []
        for (message, _), (reply, context) in zip(jobs, self._handle_all(jobs)):
            self._contexts[context.node_id] = context
            self._log(message, reply, context)
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def _handle_all(self, jobs: list[tuple[Message, Context]]) -> list[tuple[Message, Context]]:
        """Replies (and contexts) in the order of ``jobs``: here, or spread over the workers."""
        if self.workers == 1 or len(jobs) < 2:
            return [(handle(self._client_app, message, context), context) for message, context in jobs]
        return self._worker_pool().map(_handle_in_worker, jobs, chunksize=1)

    def _worker_pool(self) -> Pool:
        if self._pool is None:
            start = multiprocessing.get_context("forkserver")
            start.set_forkserver_preload([__name__])  # flwr and numpy imported once, by the forkserver (if not running)
            identity = tuple(getattr(TaskIdentity, name) for name in _IDENTITY)
            pool = start.Pool(self.workers, _start_worker, (self._client_app, identity))
            try:  # a worker that cannot start is replaced forever by the pool: fail loudly instead of hanging
                pool.apply_async(_worker_ready).get(timeout=WORKER_START_TIMEOUT_S)
            except multiprocessing.TimeoutError:
                pool.terminate()
                raise RuntimeError(
                    f"the grid's worker processes did not start within {WORKER_START_TIMEOUT_S:g} s; a script that "
                    'trains with workers > 1 must keep its work under `if __name__ == "__main__":`'
                ) from None
            self._pool = pool
        return self._pool

    def close(self) -> None:
        """Stop the worker processes, if any were started; the grid still works, in this process."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        self.workers = 1

    def __enter__(self) -> InProcessGrid:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

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
