"""The model describer's numbers match counts computed independently from Keras layer configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rdflib import URIRef
from rdflib.namespace import RDF

from ontology.describe_model import describe_model_file
from ontology.tflite_facts import ModelReadError, read_facts_file
from ontology.validation import validate_graph
from ontology.vocab import TF


def _keras_macs(model) -> int:  # noqa: ANN001
    """MACs from layer configs and Keras output shapes (batch 1), independent of the flatbuffer."""
    import tensorflow as tf

    total = 0
    for layer in model.layers:
        out = [d for d in layer.output.shape[1:]]
        if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += int(np.prod(out)) * kh * kw
        elif isinstance(layer, tf.keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            total += int(np.prod(out)) * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, tf.keras.layers.Dense):
            total += layer.units * layer.input.shape[-1]
    return total


@pytest.fixture(scope="module")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, int]]:
    """name -> (file, Keras parameter count, Keras MACs) for tiny float and int8 models."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    out: dict[str, tuple[Path, int, int]] = {}
    specs = {
        "dense": lambda: tf.keras.Sequential([tf.keras.Input((12,)), tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(3)]),
        "conv": lambda: tf.keras.Sequential([
            tf.keras.Input((10, 10, 2)), tf.keras.layers.Conv2D(6, 3, activation="relu"),
            tf.keras.layers.DepthwiseConv2D(3), tf.keras.layers.Flatten(), tf.keras.layers.Dense(4),
        ]),
    }  # fmt: skip
    directory = tmp_path_factory.mktemp("models")
    for name, build in specs.items():
        model = build()
        # Random, distinct weights: the converter shares identical constant buffers and drops zero biases.
        model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
        shape = (1, *model.input_shape[1:])
        for quant in ("float", "int8"):
            converter = tf.lite.TFLiteConverter.from_keras_model(model)
            if quant == "int8":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(16))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
            path = directory / f"{name}-{quant}.tflite"
            path.write_bytes(converter.convert())
            out[f"{name}-{quant}"] = (path, model.count_params(), _keras_macs(model))
    return out


@pytest.mark.parametrize("name", ["dense-float", "dense-int8", "conv-float", "conv-int8"])
def test_parameters_and_macs_match_keras(built_models: dict[str, tuple[Path, int, int]], name: str) -> None:
    path, params, macs = built_models[name]
    facts = read_facts_file(path)
    assert facts.parameters == params
    assert facts.macs == macs
    assert facts.file_bytes == path.stat().st_size
    assert facts.peak_live_bytes <= facts.arena_bytes <= facts.sum_tensor_bytes + 16 * len(facts.layers) + 16
    assert facts.tflm_arena_bytes == facts.arena_bytes + facts.tflm_tail_bytes > facts.tflm_arena_bytes_32bit > facts.arena_bytes
    assert facts.tflm_unsupported is None
    quant = {layer.quantization for layer in facts.layers if layer.op in ("FULLY_CONNECTED", "CONV_2D")}
    from edge.compiler.tflm_probe import tflm_arena  # TFLM's used arena: the estimate holds within +-25 % here too

    assert abs(facts.tflm_arena_bytes / tflm_arena(path).total - 1) <= 0.25
    assert quant == ({"int8 per-channel"} if name.endswith("int8") else {"float32"})


def test_model_rdf_conforms_and_carries_the_numbers(built_models: dict[str, tuple[Path, int, int]]) -> None:
    path, params, macs = built_models["conv-int8"]
    iri, g = describe_model_file(path, train_last_dense=True)
    assert validate_graph(g) == []
    assert (iri, RDF.type, TF.Model) in g
    assert g.value(iri, TF.parameterCount).toPython() == params
    assert g.value(iri, TF.macs).toPython() == macs
    assert g.value(iri, TF.modelSizeBytes).toPython() == path.stat().st_size
    ops = sorted(str(g.value(layer, TF.operatorType)) for layer in g.objects(iri, TF.hasLayer))
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    training = g.value(iri, TF.hasOnDeviceTraining)
    assert g.value(training, TF.trainingRamBytes).toPython() > g.value(iri, TF.tensorArenaBytes).toPython()
    assert g.value(iri, TF.plannerHeadBytes).toPython() < g.value(iri, TF.tensorArenaBytes).toPython()
    assert g.value(iri, TF.compiledRamBytes) is None  # best-effort: the compiler refuses Keras Flatten's SHAPE op
    dense_iri, dense = describe_model_file(built_models["dense-int8"][0])
    assert 0 < dense.value(dense_iri, TF.compiledRamBytes).toPython() < dense.value(dense_iri, TF.tensorArenaBytes).toPython()
    assert (iri, TF.runtime, TF.TFLiteMicro) in g
    assert describe_model_file(path)[0] == iri  # content-addressed: same file, same IRI
    assert isinstance(iri, URIRef)


def test_project_training_model_is_described(tmp_path: Path) -> None:
    """The project's on-device training MLP (resource variables, 4 signatures) from server.models.sine_mlp."""
    from server.models.sine_mlp import export_training_model

    path = tmp_path / "sine.tflite"
    sizes = (1, 16, 1)
    export_training_model(path, sizes)
    facts = read_facts_file(path)
    assert facts.parameters == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    assert facts.macs == sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def test_corrupt_and_missing_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelReadError, match="TFL3"):
        read_facts_file(bad)
    truncated = tmp_path / "t.tflite"
    truncated.write_bytes(b"\x20\x00\x00\x00TFL3" + b"\xff" * 24)
    with pytest.raises(ModelReadError, match="corrupt"):
        read_facts_file(truncated)
    with pytest.raises(ModelReadError, match="cannot read"):
        read_facts_file(tmp_path / "missing.tflite")


def _relabelled(path: Path, retype: dict[str, int]) -> Path:
    """The tiny fixture with some tensors' types changed (by name), through the flatbuffer object API."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from tiny_tflite import tiny_tflite_bytes

    model = schema.ModelT.InitFromPackedBuf(bytearray(tiny_tflite_bytes()), 0)
    for tensor in model.subgraphs[0].tensors:
        tensor.type = retype.get(tensor.name.decode(), tensor.type)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


@pytest.mark.parametrize("kind", ["legacy_uint8", "hybrid"])
def test_models_tflm_cannot_run_are_flagged_not_labelled_tflm(tmp_path: Path, kind: str) -> None:
    from ai_edge_litert import schema_py_generated as schema

    u8, i8 = schema.TensorType.UINT8, schema.TensorType.INT8
    retype = {"legacy_uint8": {"input": u8, "weights": u8, "output": u8}, "hybrid": {"weights": i8}}[kind]
    path = _relabelled(tmp_path / f"{kind}.tflite", retype)
    facts = read_facts_file(path)
    assert facts.tflm_unsupported and facts.tflm_unsupported.startswith(kind.replace("_", " ")[:6])
    iri, g = describe_model_file(path)
    assert validate_graph(g) == []
    assert (iri, TF.runtime, TF.TFLiteMicro) not in g and (iri, TF.runtime, TF.LiteRT) in g
    assert "FULLY_CONNECTED at index 0" in str(g.value(iri, TF.tflmUnsupported))
    assert g.value(iri, TF.compiledRamBytes) is None  # the compiler refuses them too
