"""Split an MLP into a frozen int8 backbone (flash) and a float head trained on the device.

TinyOL-style devices cannot afford to train the whole network: they run all
layers but the last as a fixed, full-integer int8 feature extractor (small in
flash, integer-only kernels) and train only the last layer, an
:class:`edge.online_head.OnlineHead`, in float RAM. This module turns a
weight dict of :mod:`edge.mlp` (w0, b0, ..., e.g. meta-learned by the
federation) into those two parts.

The backbone computes ``x -> tanh(... tanh(x·w0 + b0) ...)``, the activations
of the last hidden layer; its weights are constants in the .tflite file.
Input batch size is dynamic (the converter and the int8 kernels accept it);
a microcontroller build would run it with a batch of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from server.models.quantize import convert_full_int8


def _check_layers(weights: Mapping[str, np.ndarray], n_layers: int) -> None:
    if n_layers < 2:
        raise ValueError(f"a backbone needs an MLP with at least 2 layers, got n_layers={n_layers}")
    missing = [f"{p}{i}" for i in range(n_layers) for p in ("w", "b") if f"{p}{i}" not in weights]
    if missing:
        raise ValueError(f"weights lack {missing} for an MLP of {n_layers} layers")


def split_backbone_head(
    weights: Mapping[str, np.ndarray], n_layers: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(backbone weights w0..b{n-2}, head weights {head_w, head_b} from the last layer)."""
    _check_layers(weights, n_layers)
    last = n_layers - 1
    backbone = {f"{p}{i}": np.asarray(weights[f"{p}{i}"], np.float32).copy() for i in range(last) for p in ("w", "b")}
    head = {
        "head_w": np.asarray(weights[f"w{last}"], np.float32).copy(),
        "head_b": np.asarray(weights[f"b{last}"], np.float32).copy(),
    }
    return backbone, head


def join_backbone_head(
    backbone: Mapping[str, np.ndarray], head: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Inverse of :func:`split_backbone_head`: the whole-MLP weight dict, e.g. to aggregate a fleet."""
    last = len(backbone) // 2
    weights = {k: np.asarray(v, np.float32).copy() for k, v in backbone.items()}
    weights[f"w{last}"] = np.asarray(head["head_w"], np.float32).copy()
    weights[f"b{last}"] = np.asarray(head["head_b"], np.float32).copy()
    return weights


class _Backbone(tf.Module):
    """Backbone layers with their weights as graph constants, so they end up in flash."""

    def __init__(self, backbone: Mapping[str, np.ndarray], n_hidden: int) -> None:
        super().__init__(name="backbone")
        self.kernels = [tf.constant(backbone[f"w{i}"]) for i in range(n_hidden)]
        self.biases = [tf.constant(backbone[f"b{i}"]) for i in range(n_hidden)]
        spec = tf.TensorSpec([None, int(self.kernels[0].shape[0])], tf.float32, name="x")
        self.features = tf.function(self._features, input_signature=[spec])

    def _features(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        h = x
        for w, b in zip(self.kernels, self.biases):
            h = tf.tanh(tf.matmul(h, w) + b)
        return {"features": h}


def _convert(
    weights: Mapping[str, np.ndarray], n_layers: int, representative_x: np.ndarray | None
) -> bytes:
    backbone, _ = split_backbone_head(weights, n_layers)
    module = _Backbone(backbone, n_layers - 1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.features.get_concrete_function()], module)
    if representative_x is None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    samples = np.asarray(representative_x, np.float32)
    if samples.ndim != 2 or samples.shape[1] != backbone["w0"].shape[0] or len(samples) == 0:
        raise ValueError(f"representative_x must have shape (n>0, {backbone['w0'].shape[0]}), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise ValueError("representative_x contains NaN or Inf")

    return convert_full_int8(converter, samples)


def export_int8_backbone(
    weights: Mapping[str, np.ndarray], path: str | Path, representative_x: np.ndarray, n_layers: int
) -> Path:
    """Full-integer int8 backbone (int8 input and output) calibrated on ``representative_x`` (n, in).

    The calibration samples should cover the input range the device will see:
    inputs outside it saturate at the int8 input scale's limits.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_convert(weights, n_layers, representative_x))
    return out


def export_float_backbone(weights: Mapping[str, np.ndarray], path: str | Path, n_layers: int) -> Path:
    """The same backbone in float32: the reference the int8 one is measured against."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_convert(weights, n_layers, None))
    return out
