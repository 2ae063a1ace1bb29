"""The struct-based flatbuffer reader agrees with the official schema bindings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_models import BackboneModels

from edge.tflite_layout import LayoutError, read_layout
from edge.tflite_runtime import load_interpreter

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

ITEM_BITS = {0: 32, 2: 32, 3: 8, 4: 64, 6: 8, 9: 8, 13: 0}  # the tensor types these models use


def reference_tensor_bytes(data: bytes) -> list[int]:
    model = schema.Model.GetRootAsModel(data, 0)
    constant = {i for i in range(1, model.BuffersLength()) if model.Buffers(i).DataLength() > 0}
    totals = []
    for g in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(g)
        total = 0
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.Buffer() in constant:
                continue
            elements = 1 if tensor.ShapeIsNone() else int(np.prod(np.maximum(tensor.ShapeAsNumpy(), 1)))
            total += elements * ITEM_BITS[tensor.Type()] // 8
        totals.append(total)
    return totals


def test_training_model_layout(training_model: Path) -> None:
    data = training_model.read_bytes()
    layout = read_layout(data)
    assert list(layout.tensor_bytes) == reference_tensor_bytes(data)
    interpreter = load_interpreter(training_model)
    wrapper = interpreter._interpreter  # the runner's own signature -> subgraph map
    assert layout.signatures == {key: wrapper.GetSubgraphIndexFromSignature(key) for key in layout.signatures}
    assert set(layout.signatures) == {"train", "infer", "get_weights", "set_weights", "set_step_sizes"}
    assert all(0 < peak <= total for peak, total in zip(layout.peak_bytes, layout.tensor_bytes) if total)
    # get_weights returns every weight at once: nothing can be reused there.
    assert layout.signature_bytes("get_weights") == layout.peak_bytes[layout.signatures["get_weights"]] == 1761 * 4


def test_backbone_layout(backbone_models: BackboneModels) -> None:
    for path, item in ((backbone_models.int8_path, 1), (backbone_models.float_path, 4)):
        data = path.read_bytes()
        layout = read_layout(data)
        assert list(layout.tensor_bytes) == reference_tensor_bytes(data)
        # input (1) + two dense outputs and two tanh outputs of 40 features each
        assert layout.tensor_bytes == ((1 + 4 * 40) * item,)
        assert layout.peak_bytes == (2 * 40 * item,)
        assert layout.dense_macs == (1 * 40 + 40 * 40,)
        assert layout.constant_bytes < len(data)


@pytest.mark.parametrize("cut", [8, 64, 1000, 5000])
def test_truncated_flatbuffers_are_refused(training_model: Path, cut: int) -> None:
    with pytest.raises(LayoutError):
        read_layout(training_model.read_bytes()[:cut])


def test_not_a_model() -> None:
    with pytest.raises(LayoutError, match="TFL3"):
        read_layout(b"hello world, not a model")
