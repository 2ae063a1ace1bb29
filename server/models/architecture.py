"""A backbone's architecture as data, its initial weights, and the one forward pass that trains and exports.

Layers are frozen dataclasses rather than Keras layers so the same
:func:`forward` runs on ``tf.Variable`` weights while training and on graph
constants when the backbone is exported to TFLite (Keras 3 layers inside a
``tf.Module`` do not convert cleanly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class Conv:
    """2-D convolution, SAME padding, ReLU."""

    filters: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class DepthwiseConv:
    """Depthwise 3×3 (by default) convolution, SAME padding, ReLU; follow it by a 1×1 :class:`Conv` for DS-CNN."""

    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class MaxPool:
    size: int = 2


@dataclass(frozen=True)
class GlobalAveragePool:
    pass


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with ReLU; a 4-D input is flattened first."""

    units: int


Layer = Conv | DepthwiseConv | MaxPool | GlobalAveragePool | Dense


@dataclass(frozen=True)
class Architecture:
    """A backbone: ``input_shape`` (H, W, C) or (D,), then layers; the last must be :class:`Dense` (the features)."""

    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[-1], Dense):
            raise ValueError("the last backbone layer must be Dense: its activations are the feature vector")

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_features(self) -> int:
        return self.layers[-1].units  # type: ignore[union-attr]


def init_params(arch: Architecture, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """He-uniform kernels and zero biases, one (kernel, bias) pair per weighted layer."""
    rng = np.random.default_rng(seed)
    shape = tuple(arch.input_shape)
    params = []

    def he(kernel_shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, size=kernel_shape).astype(np.float32)

    for layer in arch.layers:
        if isinstance(layer, Conv):
            kh, kw = layer.kernel
            params.append((he((kh, kw, shape[-1], layer.filters), kh * kw * shape[-1]), np.zeros(layer.filters, np.float32)))
            shape = (-(-shape[0] // layer.stride[0]), -(-shape[1] // layer.stride[1]), layer.filters)
        elif isinstance(layer, DepthwiseConv):
            kh, kw = layer.kernel
            params.append((he((kh, kw, shape[-1], 1), kh * kw), np.zeros(shape[-1], np.float32)))
            shape = (-(-shape[0] // layer.stride[0]), -(-shape[1] // layer.stride[1]), shape[-1])
        elif isinstance(layer, MaxPool):
            shape = (shape[0] // layer.size, shape[1] // layer.size, shape[2])
        elif isinstance(layer, GlobalAveragePool):
            shape = (shape[-1],)
        else:
            fan_in = int(np.prod(shape))
            params.append((he((fan_in, layer.units), fan_in), np.zeros(layer.units, np.float32)))
            shape = (layer.units,)
    return params


def forward(arch: Architecture, params: Sequence[tuple[tf.Tensor, tf.Tensor]], x: tf.Tensor) -> tf.Tensor:
    """Features of a flat batch ``x`` (n, n_inputs); the same code runs on variables (training) and constants (export)."""
    h = tf.reshape(x, [-1, *arch.input_shape])
    weights = iter(params)
    for layer in arch.layers:
        if isinstance(layer, Conv):
            w, b = next(weights)
            h = tf.nn.relu(tf.nn.conv2d(h, w, [1, *layer.stride, 1], "SAME") + b)
        elif isinstance(layer, DepthwiseConv):
            w, b = next(weights)
            h = tf.nn.relu(tf.nn.depthwise_conv2d(h, w, [1, *layer.stride, 1], "SAME") + b)
        elif isinstance(layer, MaxPool):
            h = tf.nn.max_pool2d(h, layer.size, layer.size, "VALID")
        elif isinstance(layer, GlobalAveragePool):
            h = tf.reduce_mean(h, axis=[1, 2])
        else:
            w, b = next(weights)
            if len(h.shape) > 2:
                h = tf.reshape(h, [-1, int(np.prod(h.shape[1:]))])
            h = tf.nn.relu(tf.matmul(h, w) + b)
    return h
