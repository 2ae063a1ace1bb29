"""The exported training graph: builtin ops only, four signatures, NumpyMLP's exact SGD step.

Uses a multi-input, multi-output MLP (not the 1→40→40→1 sine net the edge tests
use) so that shapes, the 2/out_dim MSE scaling and weight naming are checked in
general.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights
from edge.tflite_runtime import load_interpreter
from edge.validation import InvalidInputError
from server.models.sine_mlp import SIGNATURES, export_training_model

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

SIZES = (3, 8, 6, 2)
TOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NumpyMLP]:
    reference = NumpyMLP(SIZES, seed=11)
    weights = reference.get_weights()
    weights["b1"] = np.linspace(-0.5, 0.5, 6, dtype=np.float32)  # non-zero biases must survive export
    reference.set_weights(weights)
    path = export_training_model(tmp_path_factory.mktemp("server_models") / "mlp.tflite", SIZES, weights)
    return path, reference


def builtin_op_names(data: bytes) -> set[str]:
    model = schema.Model.GetRootAsModel(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        assert code.CustomCode() is None, f"custom op {code.CustomCode()!r}"
        ops.add(names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return ops


def test_only_builtin_ops(exported: tuple[Path, NumpyMLP]) -> None:
    ops = builtin_op_names(exported[0].read_bytes())
    assert "CUSTOM" not in ops and not any(op.startswith("FLEX") for op in ops)
    assert {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "TANH"} <= ops


def test_signatures(exported: tuple[Path, NumpyMLP]) -> None:
    interpreter = load_interpreter(exported[0])
    signatures = interpreter.get_signature_list()
    names = {"w0", "b0", "w1", "b1", "w2", "b2"}
    assert set(signatures) == set(SIGNATURES)
    assert set(signatures["train"]["inputs"]) == {"x", "y", "lr"}
    assert set(signatures["train"]["outputs"]) == {"loss", "applied"}
    assert set(signatures["get_weights"]["outputs"]) == set(signatures["set_weights"]["inputs"]) == names
    infer_x = interpreter.get_signature_runner("infer").get_input_details()["x"]
    assert list(infer_x["shape_signature"]) == [-1, SIZES[0]]  # dynamic batch


def test_train_infer_and_weights_match_numpy(exported: tuple[Path, NumpyMLP]) -> None:
    path, reference = exported
    interpreter = load_interpreter(path)
    train, infer = interpreter.get_signature_runner("train"), interpreter.get_signature_runner("infer")
    get_weights = interpreter.get_signature_runner("get_weights")
    for name, value in get_weights().items():
        np.testing.assert_array_equal(value, reference.get_weights()[name])
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.normal(size=(1, SIZES[0])).astype(np.float32)
        y = rng.normal(size=(1, SIZES[-1])).astype(np.float32)
        reference.set_weights({k: np.asarray(v, np.float32) for k, v in get_weights().items()})
        out = train(x=x, y=y, lr=np.array(0.1, np.float32))
        assert bool(out["applied"])
        assert float(out["loss"]) == pytest.approx(reference.learn_one(x[0], y[0], 0.1), rel=TOL, abs=TOL)
        for name, value in get_weights().items():
            np.testing.assert_allclose(value, reference.get_weights()[name], rtol=TOL, atol=TOL, err_msg=name)
    batch = rng.normal(size=(9, SIZES[0])).astype(np.float32)
    np.testing.assert_allclose(infer(x=batch)["y"], reference.predict(batch), rtol=TOL, atol=TOL)


def test_set_weights_signature(exported: tuple[Path, NumpyMLP]) -> None:
    interpreter = load_interpreter(exported[0])
    new = init_mlp_weights(SIZES, seed=123)
    echoed = interpreter.get_signature_runner("set_weights")(**new)
    current = interpreter.get_signature_runner("get_weights")()
    for name in new:
        np.testing.assert_array_equal(echoed[name], new[name])
        np.testing.assert_array_equal(current[name], new[name])


def test_diverging_step_is_not_applied(exported: tuple[Path, NumpyMLP]) -> None:
    interpreter = load_interpreter(exported[0])
    before = interpreter.get_signature_runner("get_weights")()
    out = interpreter.get_signature_runner("train")(
        x=np.full((1, SIZES[0]), 10.0, np.float32), y=np.full((1, SIZES[-1]), 1e4, np.float32),
        lr=np.array(3e38, np.float32),
    )  # fmt: skip
    assert not bool(out["applied"])
    for name, value in interpreter.get_signature_runner("get_weights")().items():
        np.testing.assert_array_equal(value, before[name])


def test_default_weights_and_bad_arguments(tmp_path: Path) -> None:
    path = export_training_model(tmp_path / "sub" / "small.tflite", (2, 3, 1), seed=4)
    weights = load_interpreter(path).get_signature_runner("get_weights")()
    for name, value in init_mlp_weights((2, 3, 1), seed=4).items():
        np.testing.assert_array_equal(weights[name], value)
    with pytest.raises(ValueError):
        export_training_model(tmp_path / "bad.tflite", (3,))
    with pytest.raises(InvalidInputError):
        export_training_model(tmp_path / "bad.tflite", (2, 3, 1), {"w0": np.zeros((2, 3), np.float32)})
    assert not (tmp_path / "bad.tflite").exists()
