import numpy as np
import pytest
from flwr.app import ConfigRecord

from edge import record_keys as keys
from edge.mlp import NumpyMLP, init_mlp_weights
from edge.tflite_learner import TFLiteTrainer
from firmware_sim.client_app import make_learner


def test_learner_kind_comes_from_the_round_config(tmp_path):
    from server.models.sine_mlp import export_training_model

    weights = init_mlp_weights((1, 40, 40, 1), 0)
    model = export_training_model(tmp_path / "m.tflite")
    numpy_learner, flash = make_learner(ConfigRecord({keys.LEARNER: "numpy"}), weights)
    assert isinstance(numpy_learner, NumpyMLP) and flash is None
    tflite_learner, flash = make_learner(ConfigRecord({keys.LEARNER: "tflite", keys.MODEL_PATH: str(model)}), weights)
    assert isinstance(tflite_learner, TFLiteTrainer) and flash == model.stat().st_size
    tflite_learner.set_weights(weights)
    x = np.linspace(-5, 5, 7, dtype=np.float32).reshape(-1, 1)
    reference = NumpyMLP((1, 40, 40, 1))
    reference.set_weights(weights)
    np.testing.assert_allclose(tflite_learner.predict(x), reference.predict(x), atol=1e-5)
    with pytest.raises(ValueError, match="unknown learner"):
        make_learner(ConfigRecord({keys.LEARNER: "pytorch"}), weights)
