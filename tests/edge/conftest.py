"""Models the TFLite edge tests run, converted once per session (TensorFlow conversion takes seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tflite_models import BackboneModels, export_backbones, export_training


@pytest.fixture(scope="session")
def training_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_training(tmp_path_factory.mktemp("edge_models"))


@pytest.fixture(scope="session")
def backbone_models(tmp_path_factory: pytest.TempPathFactory) -> BackboneModels:
    return export_backbones(tmp_path_factory.mktemp("edge_backbones"))
