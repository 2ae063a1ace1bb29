"""Train backbone + linear softmax head with plain ``tf.Variable`` weights, a hand-written Adam and cosine decay.

No Keras, so the forward pass is :func:`server.models.architecture.forward`,
the same function the exported backbone runs; :func:`float_features` is the
float reference the int8 model is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from server.models.architecture import Architecture, forward, init_params


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4  # L2 on kernels, keeps features in a range int8 covers well
    seed: int = 0


@dataclass
class TrainResult:
    backbone: list[tuple[np.ndarray, np.ndarray]]
    head: dict[str, np.ndarray]
    train_accuracy: float
    seconds: float
    history: list[float] = field(default_factory=list)  # mean loss per epoch


def train_classifier(
    arch: Architecture, x: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig = TrainConfig()
) -> TrainResult:
    """Train backbone + linear softmax head on scaled flat inputs ``x`` (n, n_inputs) and integer labels ``y``."""
    start = time.perf_counter()
    tf.random.set_seed(config.seed)
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    y = np.asarray(y, np.int32)
    params = [(tf.Variable(w), tf.Variable(b)) for w, b in init_params(arch, config.seed)]
    head_limit = np.sqrt(6.0 / (arch.n_features + n_classes))
    rng = np.random.default_rng(config.seed)
    head_w = tf.Variable(rng.uniform(-head_limit, head_limit, (arch.n_features, n_classes)).astype(np.float32))
    head_b = tf.Variable(np.zeros(n_classes, np.float32))
    variables = [v for pair in params for v in pair] + [head_w, head_b]
    kernels = [w for w, _ in params] + [head_w]
    slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v))) for v in variables]
    step = tf.Variable(0.0)
    beta1, beta2, eps = 0.9, 0.999, 1e-7

    @tf.function(autograph=False, reduce_retracing=True)
    def train_step(xb: tf.Tensor, yb: tf.Tensor, lr: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.matmul(forward(arch, params, xb), head_w) + head_b
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
            total = loss + config.weight_decay * tf.add_n([tf.reduce_sum(k * k) for k in kernels])
        grads = tape.gradient(total, variables)
        step.assign_add(1.0)
        correction = tf.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for v, g, (m, s) in zip(variables, grads, slots):
            m.assign(beta1 * m + (1 - beta1) * g)
            s.assign(beta2 * s + (1 - beta2) * g * g)
            v.assign_sub(lr * correction * m / (tf.sqrt(s) + eps))
        return loss

    history = []
    n_batches = max(1, len(x) // config.batch_size)
    total_steps = config.epochs * n_batches
    for epoch in range(config.epochs):
        order = rng.permutation(len(x))
        losses = []
        for i in range(n_batches):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            done = epoch * n_batches + i
            lr = config.learning_rate * 0.5 * (1 + np.cos(np.pi * done / total_steps))  # cosine decay
            losses.append(float(train_step(x[idx], y[idx], tf.constant(lr, tf.float32))))
        history.append(float(np.mean(losses)))

    backbone = [(w.numpy(), b.numpy()) for w, b in params]
    head = {"head_w": head_w.numpy(), "head_b": head_b.numpy()}
    features = float_features(arch, backbone, x)
    accuracy = float(np.mean((features @ head["head_w"] + head["head_b"]).argmax(1) == y))
    return TrainResult(backbone, head, accuracy, time.perf_counter() - start, history)


def float_features(arch: Architecture, backbone: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Features of the float backbone in TensorFlow (the reference for the int8 model)."""
    consts = [(tf.constant(w), tf.constant(b)) for w, b in backbone]
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return np.concatenate([forward(arch, consts, tf.constant(x[i : i + 512])).numpy() for i in range(0, len(x), 512)])
