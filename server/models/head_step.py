"""The TinyOL head's SGD step as a TFLite graph, to time it in the same interpreter as the backbone (benchmarks).

Used by ``bench/task_models.py`` only: the numpy step of
:class:`edge.online_head.OnlineHead` costs Python call overhead whatever its
size, so comparing it with a compiled ``invoke()`` would be unfair.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


_FLOAT32_MAX = float(np.finfo(np.float32).max)  # |w| <= this: a finiteness test of builtin ops (NaN compares False)


class _HeadStep(tf.Module):
    """One TinyOL softmax-head SGD step as a pure function of builtin ops (weights in, weights out)."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__(name="head_step")
        specs = [
            tf.TensorSpec([1, n_features + 1], tf.float32, name="x1"),  # [features, 1]
            tf.TensorSpec([1, n_outputs], tf.float32, name="onehot"),
            tf.TensorSpec([], tf.float32, name="lr"),
            tf.TensorSpec([n_features + 1, n_outputs], tf.float32, name="params"),  # [W; b]
        ]
        self.step = tf.function(self._step, input_signature=specs, autograph=False)

    @staticmethod
    def _step(x1: tf.Tensor, onehot: tf.Tensor, lr: tf.Tensor, params: tf.Tensor) -> dict[str, tf.Tensor]:
        p = tf.nn.softmax(tf.matmul(x1, params))
        loss = -tf.reduce_sum(onehot * tf.math.log(tf.maximum(p, 1e-12)))
        updated = params - lr * (tf.reshape(x1, [-1, 1]) * (p - onehot))
        applied = tf.reduce_all(tf.abs(updated) <= _FLOAT32_MAX)
        return {"params": tf.where(applied, updated, params), "loss": loss, "applied": applied}


def export_head_step(n_features: int, n_outputs: int) -> bytes:
    """The softmax head's SGD step as a float32 .tflite of builtin ops only, for timing it in the interpreter.

    :class:`edge.online_head.OnlineHead` runs this step in numpy, where each
    call costs about half a microsecond of Python whatever its size; this
    graph lets ``bench/task_models.py`` time the same arithmetic (forward,
    softmax, rank-1 update, finiteness check, keep-or-refuse) compiled, in
    the same interpreter and with the same call overhead as the backbone's
    ``invoke()``. Weights go in and come out as tensors, so the graph holds
    no state; a firmware build would keep them in a variable or in C.
    """
    module = _HeadStep(n_features, n_outputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.step.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


class InterpretedHeadStep:
    """:func:`export_head_step` in a real interpreter, its inputs addressed by tensor index (no signature runner,
    whose per-call Python bookkeeping would be timed too)."""

    def __init__(self, n_features: int, n_outputs: int, backend: str = "ai_edge_litert", num_threads: int = 1) -> None:
        from edge.tflite_runtime import load_interpreter

        self.n_features, self.n_outputs = n_features, n_outputs
        self.interpreter = load_interpreter(export_head_step(n_features, n_outputs), backend, num_threads)
        self.interpreter.allocate_tensors()
        runner = self.interpreter.get_signature_runner()
        self._in = {name: d["index"] for name, d in runner.get_input_details().items()}
        self._out = {name: d["index"] for name, d in runner.get_output_details().items()}
        del runner  # it holds views into the interpreter's buffers, which would block invoke()

    def load(self, features: np.ndarray, label: int, learning_rate: float, weights: dict[str, np.ndarray]) -> None:
        """Set the step's inputs: one feature vector, its class, the learning rate and the head's weights."""
        onehot = np.zeros((1, self.n_outputs), np.float32)
        onehot[0, label] = 1.0
        x1 = np.append(np.asarray(features, np.float32), np.float32(1.0)).reshape(1, -1)
        params = np.vstack([weights["head_w"], weights["head_b"].reshape(1, -1)]).astype(np.float32)
        for name, value in (("x1", x1), ("onehot", onehot), ("lr", np.array(learning_rate, np.float32)), ("params", params)):
            self.interpreter.set_tensor(self._in[name], value)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def result(self) -> tuple[dict[str, np.ndarray], float, bool]:
        """(weights after the step, loss before it, whether the step was applied)."""
        params = self.interpreter.get_tensor(self._out["params"])
        weights = {"head_w": params[: self.n_features].copy(), "head_b": params[self.n_features].copy()}
        return weights, float(self.interpreter.get_tensor(self._out["loss"])), bool(self.interpreter.get_tensor(self._out["applied"]))
