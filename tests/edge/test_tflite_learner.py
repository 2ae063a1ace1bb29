"""TFLite learners honour the Learner contract exactly like their numpy references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tflite_models import LAYER_SIZES, SEED, BackboneModels

from edge.mlp import NumpyMLP, mlp_forward
from edge.online_head import OnlineHead
from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone, TFLiteTrainer
from edge.tflite_runtime import ModelLoadError
from edge.validation import InvalidInputError
from firmware_sim.tasks.sine import SineStream, sample_task

TOL = 1e-5
# Measured with the pinned versions: over 1000 uniform x in [-5, 5] the int8 backbone's
# features differ from the float backbone's by at most 0.053 (mean 0.0093); features lie in [-1, 1].
INT8_MAX_ERROR = 0.08
INT8_MEAN_ERROR = 0.02


@pytest.fixture()
def trainer(training_model: Path) -> TFLiteTrainer:
    return TFLiteTrainer(training_model)


def assert_weights_close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], tol: float = TOL) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=tol, atol=tol, err_msg=name)


def assert_weights_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_train_signature_matches_numpy_sgd(trainer: TFLiteTrainer) -> None:
    """Each step, from the same weights, gives the same loss and updated weights as NumpyMLP."""
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    assert_weights_equal(trainer.get_weights(), reference.get_weights())
    rng = np.random.default_rng(42)
    for step in range(40):
        x = rng.uniform(-5, 5, size=1).astype(np.float32)
        y = rng.uniform(-5, 5, size=1).astype(np.float32)
        lr = [0.001, 0.01, 0.05][step % 3]
        reference.set_weights(trainer.get_weights())  # float32 round-off would otherwise compound
        loss = trainer.learn_one(x, y, lr)
        expected = reference.learn_one(x, y, lr)
        assert loss == pytest.approx(expected, rel=TOL, abs=TOL)
        assert_weights_close(trainer.get_weights(), reference.get_weights())


def test_many_steps_stay_close_to_numpy(trainer: TFLiteTrainer) -> None:
    """Without re-synchronising, 200 sine-stream steps drift apart by float32 round-off only."""
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    for x, y in SineStream(sample_task(3), seed=3).take(200):
        assert trainer.learn_one(x, y, 0.01) == pytest.approx(reference.learn_one(x, y, 0.01), rel=1e-4, abs=1e-4)
    assert_weights_close(trainer.get_weights(), reference.get_weights(), tol=1e-4)


def test_step_sizes_in_the_graph_match_numpy(trainer: TFLiteTrainer) -> None:
    """Per-weight step sizes set on the interpreter give NumpyMLP's scaled step; None restores plain SGD."""
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    rng = np.random.default_rng(7)
    scales = {k: np.exp(rng.normal(0, 0.7, v.shape)).astype(np.float32) for k, v in reference.get_weights().items()}
    trainer.set_step_sizes(scales)
    reference.set_step_sizes(scales)
    for x, y in SineStream(sample_task(4), seed=4).take(20):
        reference.set_weights(trainer.get_weights())
        assert trainer.learn_one(x, y, 0.02) == pytest.approx(reference.learn_one(x, y, 0.02), rel=TOL, abs=TOL)
        assert_weights_close(trainer.get_weights(), reference.get_weights())
    trainer.set_step_sizes(None)
    reference.set_step_sizes(None)
    x, y = next(SineStream(sample_task(5), seed=5))
    reference.set_weights(trainer.get_weights())
    trainer.learn_one(x, y, 0.02)
    reference.learn_one(x, y, 0.02)
    assert_weights_close(trainer.get_weights(), reference.get_weights())
    bad = {k: v.copy() for k, v in scales.items()}
    bad["b0"][0] = np.inf
    with pytest.raises(InvalidInputError, match="step sizes 'b0' must be finite and positive"):
        trainer.set_step_sizes(bad)


def test_infer_and_loss_match_numpy(trainer: TFLiteTrainer) -> None:
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    x = np.linspace(-5, 5, 64, dtype=np.float32).reshape(-1, 1)
    y = np.sin(x)
    np.testing.assert_allclose(trainer.predict(x), reference.predict(x), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(trainer.predict(x[:1]), reference.predict(x[:1]), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(trainer.predict(x.ravel()), reference.predict(x.ravel()), rtol=TOL, atol=TOL)
    assert trainer.predict(np.zeros((0, 1), np.float32)).shape == (0, 1)
    assert trainer.loss(x, y) == pytest.approx(reference.loss(x, y), rel=TOL)


def test_weights_round_trip(trainer: TFLiteTrainer) -> None:
    other = NumpyMLP(LAYER_SIZES, seed=99)
    trainer.set_weights(other.get_weights())
    assert_weights_equal(trainer.get_weights(), other.get_weights())
    x = np.linspace(-5, 5, 20, dtype=np.float32).reshape(-1, 1)
    np.testing.assert_allclose(trainer.predict(x), other.predict(x), rtol=TOL, atol=TOL)
    assert trainer.learn_one([0.5], [1.0], 0.01) == pytest.approx(other.learn_one([0.5], [1.0], 0.01), rel=TOL)
    assert_weights_close(trainer.get_weights(), other.get_weights())


def _bad_weight_sets() -> dict[str, dict[str, np.ndarray]]:
    good = NumpyMLP(LAYER_SIZES, seed=5).get_weights()
    nan = {**good, "w1": good["w1"].copy()}
    nan["w1"][3, 4] = np.nan
    missing = dict(good)
    del missing["b2"]
    return {
        "nan": nan,
        "inf": {**good, "b0": np.full_like(good["b0"], np.inf)},
        "missing": missing,
        "extra": {**good, "w3": np.zeros((1, 1), np.float32)},
        "wrong-shape": {**good, "w1": np.zeros((40, 41), np.float32)},
        "float64": {**good, "w0": good["w0"].astype(np.float64)},
        "strings": {**good, "b2": np.array(["1.0"])},
    }


@pytest.mark.parametrize("case", sorted(_bad_weight_sets()))
def test_bad_weights_are_refused_and_weights_kept(trainer: TFLiteTrainer, case: str) -> None:
    before = trainer.get_weights()
    with pytest.raises(InvalidInputError):
        trainer.set_weights(_bad_weight_sets()[case])
    assert_weights_equal(trainer.get_weights(), before)


BAD_SAMPLES = {
    "x-wrong-shape": ([1.0, 2.0], [0.5], 0.01),
    "x-2d": ([[1.0]], [0.5], 0.01),
    "x-string": (["1.0"], [0.5], 0.01),
    "x-object": ([None], [0.5], 0.01),
    "x-nan": ([np.nan], [0.5], 0.01),
    "x-inf": ([np.inf], [0.5], 0.01),
    "y-nan": ([1.0], [np.nan], 0.01),
    "y-wrong-shape": ([1.0], [0.5, 0.5], 0.01),
    "y-string": ([1.0], "0.5", 0.01),
    "lr-nan": ([1.0], [0.5], float("nan")),
    "lr-string": ([1.0], [0.5], "fast"),
    "diverged": ([1.0], [100.0], 3e38),  # finite inputs, but the updated weights overflow to Inf
}


@pytest.mark.parametrize("case", sorted(BAD_SAMPLES))
def test_bad_samples_are_refused_and_weights_kept(trainer: TFLiteTrainer, case: str) -> None:
    x, y, lr = BAD_SAMPLES[case]
    before = trainer.get_weights()
    with pytest.raises(InvalidInputError):
        trainer.learn_one(x, y, lr)
    assert_weights_equal(trainer.get_weights(), before)
    assert trainer.learn_one([1.0], [0.5], 0.01) > 0  # still usable


def test_diverged_step_is_refused_by_numpy_too() -> None:
    # Same semantics as the reference: the sample TFLite refuses as "diverged", NumpyMLP refuses as well.
    with pytest.raises(InvalidInputError, match="diverged"), np.errstate(over="ignore"):
        NumpyMLP(LAYER_SIZES, seed=SEED).learn_one([1.0], [100.0], 3e38)


def test_bad_predict_input(trainer: TFLiteTrainer) -> None:
    for bad in (np.array([[1.0, 2.0]]), np.array([["a"]]), np.array([[np.nan]])):
        with pytest.raises(InvalidInputError):
            trainer.predict(bad)
    with pytest.raises(InvalidInputError):
        trainer.loss(np.zeros((3, 1), np.float32), np.zeros(2, np.float32))


def test_memory_flash_and_compute(trainer: TFLiteTrainer, training_model: Path) -> None:
    reference = NumpyMLP(LAYER_SIZES, seed=SEED)
    footprint = trainer.memory_footprint()
    assert trainer.flash_bytes == training_model.stat().st_size
    assert footprint.weights == reference.memory_footprint().weights == 1761 * 4
    # The infer subgraph at least holds a READ_VARIABLE copy of every weight; training holds more.
    assert footprint.inference >= footprint.weights
    assert footprint.training > footprint.inference
    assert trainer.compute_cost() == reference.compute_cost()
    assert trainer.backend == "ai_edge_litert"


def test_a_backbone_is_not_a_training_model(backbone_models: BackboneModels) -> None:
    with pytest.raises(ModelLoadError, match="not a training model"):
        TFLiteTrainer(backbone_models.int8_path)


def test_float_backbone_equals_numpy_forward(backbone_models: BackboneModels) -> None:
    backbone = FrozenBackbone(backbone_models.float_path)
    x = np.linspace(-5, 5, 100, dtype=np.float32).reshape(-1, 1)
    expected = mlp_forward(backbone_models.weights, x, 3)[2]
    assert not backbone.quantized
    np.testing.assert_allclose(backbone.features(x), expected, rtol=TOL, atol=TOL)


def test_int8_features_close_to_float(backbone_models: BackboneModels) -> None:
    int8, floating = FrozenBackbone(backbone_models.int8_path), FrozenBackbone(backbone_models.float_path)
    assert int8.quantized and (int8.n_inputs, int8.n_features) == (1, 40)
    x = np.random.default_rng(0).uniform(-5, 5, size=(1000, 1)).astype(np.float32)
    error = np.abs(int8.features(x) - floating.features(x))
    assert error.max() < INT8_MAX_ERROR and error.mean() < INT8_MEAN_ERROR
    one_by_one = np.concatenate([int8.features(x[i : i + 1]) for i in range(10)])
    np.testing.assert_array_equal(one_by_one, int8.features(x[:10]))
    assert int8.flash_bytes < floating.flash_bytes and int8.arena_bytes < floating.arena_bytes
    with pytest.raises(InvalidInputError):
        int8.features(np.array([[np.nan]]))


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_feature_vector_is_features_of_a_batch_of_one(backbone_models: BackboneModels, kind: str) -> None:
    # The per-sample device-loop path must give the batch path's features (int8: bit-identical), including inputs
    # that sit exactly halfway between two int8 steps (rounded away from zero) and inputs that saturate.
    backbone = FrozenBackbone(backbone_models.int8_path if kind == "int8" else backbone_models.float_path)
    scale = np.float32(backbone._input["quantization"][0]) if backbone.quantized else np.float32(0.01)
    ties = (np.arange(-140, 140, dtype=np.float32) + np.float32(0.5)) * scale
    extremes = np.array([0.0, -0.0, 1e30, -1e30, 3e38, -3e38], np.float32)
    rng = np.random.default_rng(3)
    x = np.concatenate([ties, extremes, rng.uniform(-6, 6, 200).astype(np.float32)]).reshape(-1, 1)
    with np.errstate(over="ignore"):
        batch = backbone.features(x)  # a batch first: the per-sample path must resize back to one
        one_by_one = np.stack([backbone.feature_vector(sample) for sample in x])
        assert backbone.features(x[:3]).shape == (3, backbone.n_features)
        same_as_batch(backbone.feature_vector(x[7]), batch[7], kind)
    assert one_by_one.dtype == np.float32
    same_as_batch(one_by_one, batch, kind)
    same_as_batch(backbone.feature_vector([0.25]), backbone.features([[0.25]])[0], kind)  # a list


def same_as_batch(one: np.ndarray, batch: np.ndarray, kind: str) -> None:
    """int8: equal bit for bit (integer arithmetic, the same on every CPU). float: XNNPACK may tile a batch of
    one and a batch of many with different kernels, whose float32 sums round differently in the last bits, so
    within a few ulps (rtol 1e-6) rather than exactly."""
    if kind == "int8":
        np.testing.assert_array_equal(one, batch)
    else:
        np.testing.assert_allclose(one, batch, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad,message", [([np.nan], "non-finite"), ([-np.inf], "non-finite"), ([1.0, 2.0], "shape"), (["a"], "dtype")])
def test_feature_vector_refuses_bad_samples(backbone_models: BackboneModels, bad: list, message: str) -> None:
    backbone = FrozenBackbone(backbone_models.int8_path)
    with pytest.raises(InvalidInputError, match=message):
        backbone.feature_vector(np.array(bad) if message != "shape" else np.array(bad, np.float32))


def test_backbone_head_learner_learns_a_linear_target(backbone_models: BackboneModels) -> None:
    floating = FrozenBackbone(backbone_models.float_path)
    learner = BackboneHeadLearner(FrozenBackbone(backbone_models.int8_path), seed=1)
    rng = np.random.default_rng(2)
    v = rng.normal(size=(40, 1)).astype(np.float32)

    def target(x: np.ndarray) -> np.ndarray:
        return floating.features(x) @ v + 0.5

    grid = np.linspace(-5, 5, 50, dtype=np.float32).reshape(-1, 1)
    before = learner.loss(grid, target(grid))
    xs = rng.uniform(-5, 5, size=(500, 1)).astype(np.float32)
    losses = [learner.learn_one(x, y, 0.05) for x, y in zip(xs, target(xs))]
    after = learner.loss(grid, target(grid))
    assert after < before / 100
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) / 10


def test_backbone_head_learner_adapts_to_a_sine(backbone_models: BackboneModels) -> None:
    learner = BackboneHeadLearner(FrozenBackbone(backbone_models.int8_path), seed=1)
    task = sample_task(7)
    grid_x, grid_y = task.evaluation_grid()
    before = learner.loss(grid_x, grid_y)
    for x, y in SineStream(task, seed=11).take(1000):
        learner.learn_one(x, y, 0.02)
    assert learner.loss(grid_x, grid_y) < before / 4


def test_backbone_head_learner_weights_and_budget(backbone_models: BackboneModels) -> None:
    backbone = FrozenBackbone(backbone_models.int8_path)
    head = OnlineHead(40, 1, seed=0)
    learner = BackboneHeadLearner(backbone, head)
    assert set(learner.get_weights()) == {"head_w", "head_b"}
    new = {"head_w": backbone_models.weights["w2"], "head_b": backbone_models.weights["b2"]}
    learner.set_weights(new)
    assert_weights_equal(learner.get_weights(), new)
    before = learner.get_weights()
    for bad in ({"head_w": new["head_w"]}, {**new, "head_b": np.array([np.nan], np.float32)}):
        with pytest.raises(InvalidInputError):
            learner.set_weights(bad)
        assert_weights_equal(learner.get_weights(), before)
    for x, y in (([np.nan], [1.0]), (["a"], [1.0]), ([1.0], [np.inf]), ([1.0, 2.0], [1.0])):
        with pytest.raises(InvalidInputError):
            learner.learn_one(x, y, 0.01)
        assert_weights_equal(learner.get_weights(), before)
    footprint, head_footprint = learner.memory_footprint(), head.memory_footprint()
    assert footprint.weights == head_footprint.weights and footprint.training == head_footprint.training
    assert footprint.inference == head_footprint.inference + backbone.arena_bytes
    cost = learner.compute_cost()
    assert cost.inference_int8_macs == 1 * 40 + 40 * 40 and cost.training_float_macs == 2 * 40
    with pytest.raises(ValueError):
        BackboneHeadLearner(backbone, OnlineHead(8, 1))


def test_a_conv_backbone_charges_every_layer_s_macs(tmp_path) -> None:
    """The time model charges a backbone's convolutions too: FrozenBackbone counts what the compiler lowers, far
    more than its FULLY_CONNECTED layers alone on the characters CNN (about 18k of 1.5M MACs)."""
    from compiler_models import build_model_bytes

    from edge.compiler import compile_model

    data = build_model_bytes("backbone_characters")
    path = tmp_path / "characters.tflite"
    path.write_bytes(data)
    backbone = FrozenBackbone(path)
    assert backbone.macs == compile_model(data).macs
    assert backbone.macs > 10 * sum(backbone.layout.dense_macs)
