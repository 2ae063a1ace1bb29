"""RDF description of a .tflite model, from the facts in :mod:`ontology.tflite_facts`.

The model's IRI is derived from its content (SHA-256), so describing the same
file twice gives the same IRI and re-registering replaces rather than
duplicates it. On-device training is described only when the caller says
which part trains: the flatbuffer cannot tell a frozen backbone from a
trainable head. The training-RAM estimate for a TinyOL-style trainable last
layer is documented on :func:`tinyol_training_ram`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rdflib import BNode, Graph, Literal, URIRef
from rdflib.namespace import RDF, RDFS, XSD

from ontology.tflite_facts import ModelFacts, ModelReadError, read_facts
from ontology.vocab import RESOURCE_BASE, RUNTIMES, SCHEMA, TF, bind_prefixes

ARENA_METHOD = (
    "TFLite Micro's whole used arena, estimated: its greedy planner's head replayed (non-constant tensors and the "
    "reference kernels' scratch buffers over their operator lifetimes, 16-byte aligned, largest first, TFLM's tie-break) "
    "plus its persistent tail modelled per tensor, operator, I/O tensor and per-channel quantisation array, calibrated on "
    "the 64-bit PyPI tflite-micro interpreter (within about 10 % of its print_allocations() total on the models tested); "
    "a 32-bit target needs somewhat less (tf:tensorArenaBytes32Bit, an estimate)"
)


def compiled_ram_bytes(data: bytes) -> int | None:
    """RAM of the model compiled by :mod:`edge.compiler`: MODEL_ARENA_BYTES + the input and output buffers, or None.

    Best-effort: a model the compiler refuses (an op or quantisation outside
    its set), or that it fails on, gets None and so no tf:compiledRamBytes.
    """
    try:
        from edge.compiler import compile_model

        compiled = compile_model(data)
    except Exception:  # noqa: BLE001 - any refusal or failure only means "no compiled figure"
        return None
    return compiled.arena_bytes + compiled.input_bytes + compiled.output_bytes


def model_iri(data: bytes, name: str) -> URIRef:
    """Content-addressed IRI: same bytes -> same model resource."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)[:64] or "model"
    return URIRef(f"{RESOURCE_BASE}model/{safe}-{digest}")


def tinyol_training_ram(facts: ModelFacts, layer_index: int) -> int:
    """RAM to train layer ``layer_index`` on device, TinyOL style, in bytes.

    Inference arena (TFLM's whole arena, estimated) + the layer's parameters held as float32 in RAM twice
    (weights and their gradient/update buffer) + its input activations as
    float32 (kept for the weight gradient). An estimate, stated as such in
    the RDF via the layer it refers to.
    """
    layer = facts.layers[layer_index]
    inputs = 1
    for d in layer.input_shape or ():
        inputs *= max(d, 1)
    return facts.tflm_arena_bytes + 4 * (2 * layer.parameters + inputs)


def _shape(shape: tuple[int, ...] | None) -> Literal:
    return Literal(json.dumps(list(shape or ())).replace(",", ", ").replace(",  ", ", "))


def describe_facts(
    facts: ModelFacts,
    iri: URIRef,
    *,
    name: str,
    runtime: str = "tflite-micro",
    task: str | None = None,
    train_last_dense: bool = False,
    sha256: str | None = None,
    compiled_ram: int | None = None,
) -> Graph:
    """Graph describing model ``iri``: sizes, layers, tensors, runtime, optional task and trainable part.

    A model TFLite Micro cannot run (``facts.tflm_unsupported``) is never
    labelled tf:TFLiteMicro: it gets tf:LiteRT and tf:tflmUnsupported with
    the reason, so matchmaking offers it to no microcontroller.
    ``compiled_ram`` (see :func:`compiled_ram_bytes`) adds tf:compiledRamBytes.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if facts.tflm_unsupported and runtime == "tflite-micro":
        runtime = "litert"
    g = bind_prefixes(Graph())
    g.add((iri, RDF.type, TF.Model))
    g.add((iri, SCHEMA.name, Literal(name)))
    if sha256:
        g.add((iri, SCHEMA.identifier, Literal(f"sha256:{sha256}")))
    g.add((iri, TF.modelSizeBytes, Literal(facts.file_bytes, datatype=XSD.integer)))
    g.add((iri, TF.tensorArenaBytes, Literal(facts.tflm_arena_bytes, datatype=XSD.integer)))
    g.add((iri, TF.tensorArenaBytes32Bit, Literal(facts.tflm_arena_bytes_32bit, datatype=XSD.integer)))
    g.add((iri, TF.plannerHeadBytes, Literal(facts.arena_bytes, datatype=XSD.integer)))
    g.add((iri, TF.arenaEstimateMethod, Literal(ARENA_METHOD)))
    if compiled_ram is not None:
        g.add((iri, TF.compiledRamBytes, Literal(compiled_ram, datatype=XSD.integer)))
    if facts.tflm_unsupported:
        g.add((iri, TF.tflmUnsupported, Literal(facts.tflm_unsupported)))
    g.add((iri, TF.parameterCount, Literal(facts.parameters, datatype=XSD.integer)))
    g.add((iri, TF.macs, Literal(facts.macs, datatype=XSD.integer)))
    g.add((iri, TF.runtime, TF[RUNTIMES[runtime]]))
    if task:
        g.add((iri, TF.forTask, URIRef(task)))
    for prop, tensors in ((TF.hasInput, facts.inputs), (TF.hasOutput, facts.outputs)):
        for t in tensors:
            node = URIRef(f"{iri}/tensor/{t.index}")
            g.add((iri, prop, node))
            g.add((node, RDF.type, TF.TensorSpec))
            g.add((node, TF.shape, _shape(t.shape)))
            g.add((node, TF.elementType, Literal(t.dtype)))
            if t.name:
                g.add((node, RDFS.label, Literal(t.name)))
    layer_nodes = []
    for layer in facts.layers:
        node = URIRef(f"{iri}/layer/{layer.index}")
        layer_nodes.append(node)
        g.add((iri, TF.hasLayer, node))
        g.add((node, RDF.type, TF.Layer))
        g.add((node, TF.layerIndex, Literal(layer.index, datatype=XSD.integer)))
        g.add((node, TF.operatorType, Literal(layer.op)))
        g.add((node, TF.outputShape, _shape(layer.output_shape)))
        if layer.input_shape is not None:
            g.add((node, TF.inputShape, _shape(layer.input_shape)))
        if layer.weight_shape is not None:
            g.add((node, TF.weightShape, _shape(layer.weight_shape)))
        g.add((node, TF.quantization, Literal(layer.quantization)))
        g.add((node, TF.parameterCount, Literal(layer.parameters, datatype=XSD.integer)))
        g.add((node, TF.macs, Literal(layer.macs, datatype=XSD.integer)))
    if train_last_dense:
        dense = [layer.index for layer in facts.layers if layer.op == "FULLY_CONNECTED"]
        if not dense:
            raise ValueError("train_last_dense: the model has no FULLY_CONNECTED layer to train on device")
        training = BNode()
        g.add((iri, TF.hasOnDeviceTraining, training))
        g.add((training, RDF.type, TF.OnDeviceTraining))
        g.add((training, TF.trainingMethod, Literal("TinyOL")))
        g.add((training, TF.trainsLayer, layer_nodes[dense[-1]]))
        g.add((training, TF.trainingRamBytes, Literal(tinyol_training_ram(facts, dense[-1]), datatype=XSD.integer)))
    return g


def describe_model_bytes(data: bytes, name: str = "model", **options: object) -> tuple[URIRef, Graph]:
    """(IRI, RDF) of the model in ``data``; ModelReadError if it is not a readable .tflite."""
    facts = read_facts(data)
    iri = model_iri(data, name)
    return iri, describe_facts(facts, iri, name=name, sha256=hashlib.sha256(data).hexdigest(),  # type: ignore[arg-type]
                               compiled_ram=compiled_ram_bytes(data), **options)


def describe_model_file(path: str | Path, **options: object) -> tuple[URIRef, Graph]:
    """describe_model_bytes of a file, named after its stem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    return describe_model_bytes(data, name=p.stem, **options)
