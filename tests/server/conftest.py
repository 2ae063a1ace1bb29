import pytest


@pytest.fixture
def flower_task_identity(monkeypatch):
    """Messages read the run and node ids of the process, which a SuperLink sets; set them as it would."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
