"""What every Flower ``Grid`` TinyFleet implements itself (MQTT, in-process) shares.

Flower's own grids live in a SuperLink's or the simulation's process, which
set the run and the task identity that :class:`flwr.app.Message` reads. A grid
that *is* the transport runs in the ServerApp's process with no SuperLink, so
it must set them itself, once, without overriding a runtime that already did.
"""

from __future__ import annotations

from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


class OwnGrid(Grid):
    """Run bookkeeping and message creation; subclasses move the messages."""

    def __init__(self, run_id: int = 1) -> None:
        self._run = Run.create_empty(run_id)
        for name, value in (("run_id", run_id), ("node_id", SUPERLINK_NODE_ID), ("task_id", 1)):
            if getattr(TaskIdentity, f"_{name}") is None:  # this process is the ServerApp's runtime
                setattr(TaskIdentity, name, value)

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)
