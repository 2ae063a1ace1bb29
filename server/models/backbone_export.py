"""Export a trained backbone (input -> features) to ``.tflite``: full-integer int8 for the device, float32 as reference.

The weights become graph constants (they go to flash). The input is flat,
``(n, prod(input_shape))``, and reshaped inside the graph, which is the layout
:class:`edge.tflite_learner.FrozenBackbone` expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from server.models.architecture import Architecture, forward
from server.models.quantize import convert_full_int8


class _Backbone(tf.Module):
    """The trained backbone with its weights as graph constants (they go to flash)."""

    def __init__(self, arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__(name="backbone")
        self.arch = arch
        self.weights = [(tf.constant(w), tf.constant(b)) for w, b in backbone]
        spec = tf.TensorSpec([None, arch.n_inputs], tf.float32, name="x")
        self.features = tf.function(
            lambda x: {"features": forward(self.arch, self.weights, x)}, input_signature=[spec], autograph=False
        )


def export_backbone(
    arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]], representative_x: np.ndarray | None
) -> bytes:
    """Full-integer int8 .tflite (int8 in/out) calibrated on ``representative_x``; float32 if it is None."""
    module = _Backbone(arch, backbone)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.features.get_concrete_function()], module)
    if representative_x is None:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter.convert()
    samples = np.asarray(representative_x, np.float32).reshape(len(representative_x), -1)
    if len(samples) == 0 or samples.shape[1] != arch.n_inputs or not np.all(np.isfinite(samples)):
        raise ValueError(f"representative_x must be finite with shape (n>0, {arch.n_inputs}), got {samples.shape}")

    return convert_full_int8(converter, samples)
