"""Partial local reconstruction on the device: which arrays move in which phase."""

import numpy as np
import pytest

from edge.mlp import NumpyMLP, init_mlp_weights
from edge.reconstruction import parse_private_names, reconstruct_and_adapt, split_weights, train_subset
from firmware_sim.tasks.sine import SineStream, sample_task

SIZES = (1, 8, 8, 1)


def test_train_subset_moves_only_the_trainable_arrays():
    learner = NumpyMLP(SIZES)
    before = learner.get_weights()
    stream = SineStream(sample_task(3), seed=0)
    losses = train_subset(learner, stream, 4, 0.05, trainable={"w2", "b2"})
    after = learner.get_weights()
    assert len(losses) == 4 and stream.samples_emitted == 4
    assert not np.array_equal(after["w2"], before["w2"])
    for name in ("w0", "b0", "w1", "b1"):
        np.testing.assert_array_equal(after[name], before[name])


def test_reconstruct_then_adapt_returns_only_the_shared_phi_and_improves_the_probe():
    theta = init_mlp_weights(SIZES, 0)
    shared, private = split_weights(theta, parse_private_names("w2, b2"))
    stream = SineStream(sample_task(5), seed=1)
    phi, report = reconstruct_and_adapt(
        NumpyMLP(SIZES), shared, private, stream,
        reconstruction_samples=20, reconstruction_lr=0.05, shots=40, learning_rate=0.05, probe=10,
    )
    assert sorted(phi) == ["b0", "b1", "w0", "w1"]
    assert stream.samples_emitted == 70 and report.samples_used == 60
    assert report.loss_after < report.loss_before
    assert np.isfinite(report.reconstruction_loss) and np.isfinite(report.prequential_loss)


def test_refuses_unknown_or_overlapping_private_names():
    theta = init_mlp_weights(SIZES, 0)
    with pytest.raises(ValueError, match=r"\['head'\]"):
        split_weights(theta, ("head",))
    with pytest.raises(ValueError, match="both shared and private"):
        reconstruct_and_adapt(NumpyMLP(SIZES), theta, {"w2": theta["w2"]}, iter([]), reconstruction_samples=0,
                              reconstruction_lr=0.1, shots=0, learning_rate=0.1)
    assert parse_private_names("") == ()
