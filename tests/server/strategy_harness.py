"""What strategy unit tests need to exchange Flower messages without a SuperLink."""

import pytest
from flwr.app import ConfigRecord, Message
from flwr.serverapp.strategy import Strategy

from edge.flower_records import to_array_record


class FixedGrid:
    """A Grid stand-in that only lists nodes; the real Grid runs in test_simulation.py and tests/fleet."""

    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return self.nodes


def configured(strategy: Strategy, theta: dict, nodes=(1, 2), config: ConfigRecord | None = None) -> list[Message]:
    """The training messages of round 1, with the message ids a Grid would assign on push."""
    config = config if config is not None else ConfigRecord({"inner-learning-rate": 0.1})
    messages = list(strategy.configure_train(1, to_array_record(theta), config, FixedGrid(list(nodes))))
    for i, message in enumerate(messages):
        message.metadata.__dict__["_message_id"] = f"m{i}"
    return messages


@pytest.fixture
def flower_task_identity(monkeypatch):
    """Messages read the run and node ids of the process, which a SuperLink sets; set them as it would."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
