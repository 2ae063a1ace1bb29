"""A minimal valid .tflite (one FULLY_CONNECTED layer) written with the flatbuffer object API: no TensorFlow.

The CLI and service tests need a real model file to describe and register;
converting a Keras model costs seconds of TensorFlow start-up per session,
while this takes milliseconds and its numbers are known by construction:
12 weights + 3 biases = 15 parameters, 12 MACs.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

IN, OUT = 4, 3
PARAMETERS = IN * OUT + OUT
MACS = IN * OUT


def _tensor(name: str, shape: list[int], buffer: int) -> schema.TensorT:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type, tensor.buffer = name.encode(), shape, schema.TensorType.FLOAT32, buffer
    return tensor


def tiny_tflite_bytes() -> bytes:
    """Bytes of the model: input [1, 4] -> FULLY_CONNECTED (3 units) -> output [1, 3], float32."""
    rng = np.random.default_rng(1)
    buffers = [schema.BufferT() for _ in range(5)]
    buffers[2].data = rng.normal(size=(OUT, IN)).astype("<f4").tobytes()
    buffers[3].data = rng.normal(size=(OUT,)).astype("<f4").tobytes()
    subgraph = schema.SubGraphT()
    subgraph.tensors = [_tensor("input", [1, IN], 1), _tensor("weights", [OUT, IN], 2), _tensor("bias", [OUT], 3),
                        _tensor("output", [1, OUT], 4)]
    subgraph.inputs, subgraph.outputs = [0], [3]
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    subgraph.operators = [op]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [subgraph], buffers
    model.description = b"tiny"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_tiny_tflite(path: Path) -> Path:
    path.write_bytes(tiny_tflite_bytes())
    return path
