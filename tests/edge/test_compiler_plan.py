"""The compiler's memory plan, header API and refusals: real models, real TFLM arena figures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from compiler_models import ALL_MODELS, PROJECT_BACKBONES, model_file, refused_model
from tflite_models import BackboneModels

from edge.compiler import UnsupportedModelError, compile_model, export_c
from edge.compiler.tflm_probe import tflm_arena


def test_header_declares_exactly_the_issue_api(backbone_models: BackboneModels, tmp_path: Path) -> None:
    compiled = export_c(backbone_models.int8_path, tmp_path, prefix="model")
    header = (tmp_path / "model.h").read_text()
    assert re.search(r"^#define MODEL_ARENA_BYTES (\d+)$", header, re.M).group(1) == str(compiled.arena_bytes)
    for decl in ("size_t model_input_bytes(void);", "size_t model_output_bytes(void);",
                 "int model_invoke(const void *input, void *output);"):
        assert decl in header
    source = (tmp_path / "model.c").read_text()
    assert "malloc" not in source and "static union" in source
    # every global in the model source but the one arena is const (flash)
    globals_ = [line for line in source.splitlines() if line.startswith("static ")]
    assert all(line.startswith("static const") for line in globals_ if "_arena" not in line)
    other = compile_model(backbone_models.int8_path.read_bytes(), prefix="kws").sources.files
    assert "KWS_ARENA_BYTES" in other["kws.h"] and "int kws_invoke(const void *input, void *output);" in other["kws.h"]
    with pytest.raises(ValueError, match="C identifier"):
        compile_model(backbone_models.int8_path.read_bytes(), prefix="9bad-name")


def test_backbone_runs_in_place_in_one_hidden_layer_of_ram(backbone_models: BackboneModels) -> None:
    compiled = compile_model(backbone_models.int8_path.read_bytes())
    hidden = [compiled.graph.tensors[s.op.outputs[0]].nbytes for s in compiled.steps[:-1]]
    # FC -> TANH (in place) -> FC (writes the caller's output) -> TANH (in place there): one hidden vector
    assert compiled.arena_bytes == max(hidden) == 40
    plan = compiled.plan_text()
    assert plan.splitlines()[0] == "arena 40 bytes, one column = 1 bytes"
    assert len([line for line in plan.splitlines() if "|" in line]) == len(compiled.steps)
    assert "caller's output buffer" in plan and "caller's input buffer" in plan


@pytest.mark.parametrize("name", ["dw_inplace_s1", "dw_inplace_s2", "dw_inplace_s1_f32"])
def test_depthwise_multiplier_1_runs_in_place_on_one_channel_plane(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    compiled = compile_model(model_file(name, tmp_path_factory).path.read_bytes())
    (dw,) = [s for s, step in enumerate(compiled.steps) if step.op.name == "DEPTHWISE_CONV_2D"]
    assert dw in compiled.plan.inplace_steps
    g = compiled.graph
    x, y = (g.tensors[t] for t in (compiled.steps[dw].op.inputs[0], compiled.steps[dw].op.outputs[0]))
    assert compiled.plan.placement[x.index] == compiled.plan.placement[y.index]  # one buffer for both
    plane = x.shape[1] * x.shape[2] * x.dtype.itemsize
    (scratch,) = [b for b in compiled.plan.buffers if b.label == f"scratch of step {dw}"]
    assert plane <= scratch.size <= plane + 3 and scratch.first == scratch.last == dw
    # the conv output (= depthwise input) and one channel plane of scratch (in the arena, or borrowed from
    # the not-yet-written output buffer): no separate depthwise output
    assert compiled.arena_bytes == x.nbytes + (scratch.size if scratch.region == "arena" else 0)
    assert compiled.arena_bytes < x.nbytes + y.nbytes
    assert "tfc_depthwise_inplace" in compiled.sources.files["model.c"]
    # exactness of the in-place kernel is checked with every other model in test_compiler_exactness/_board


@pytest.mark.parametrize("name", ["fc_tanh_batch3", "fc_float_io", "fc_tanh_softmax_f32", "dw_inplace_s1", "residual_add_mean_logistic"])
def test_arena_never_exceeds_tflm_used_arena(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    model = model_file(name, tmp_path_factory)
    compiled = compile_model(model.path.read_bytes())
    tflm = tflm_arena(model.path)
    assert tflm.total == tflm.head + tflm.tail and tflm.tail > 0
    # even counting the caller's input and output buffers, which TFLM keeps in its arena
    assert compiled.arena_bytes + compiled.input_bytes + compiled.output_bytes <= tflm.total
    assert compiled.arena_bytes <= tflm.head


@pytest.mark.parametrize("task", PROJECT_BACKBONES)
def test_project_backbones_need_less_ram_than_tflm(task: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    model = model_file(f"backbone_{task}", tmp_path_factory)
    compiled = compile_model(model.path.read_bytes())
    tflm = tflm_arena(model.path)
    assert compiled.arena_bytes + compiled.input_bytes + compiled.output_bytes < tflm.total
    assert compiled.graph.tensors[compiled.graph.input].type_name == "int8"  # full-integer, as the device runs it


@pytest.mark.parametrize("name", ["pad_resize_half_pixel", "pad_resize_f32"])
def test_zero_pad_is_folded_into_the_convolution(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from edge.compiler.graph import read_graph

    data = model_file(name, tmp_path_factory).path.read_bytes()
    original = read_graph(data)
    assert [op.name for op in original.operators][:2] == ["PAD", "CONV_2D"]
    compiled = compile_model(data)
    assert "PAD" not in compiled.op_counts and compiled.op_counts["CONV_2D"] == 1
    conv = compiled.steps[0].op
    assert conv.inputs[0] == original.input and conv.options["fusedPad"][:2] == (1, 2)  # tf.pad's top and left
    padded = original.tensors[original.operators[0].outputs[0]]
    assert all(padded.index not in b.tensors for b in compiled.plan.buffers)  # the padded tensor never exists
    # bit-identity with TFLM's PAD + CONV_2D is checked with every model in test_compiler_exactness/_board


def test_overlapping_lifetimes_get_disjoint_offsets(tmp_path_factory: pytest.TempPathFactory) -> None:
    used_output_region = 0
    for name in ALL_MODELS:
        compiled = compile_model(model_file(name, tmp_path_factory).path.read_bytes())
        plan, graph = compiled.plan, compiled.graph
        borrowed = {t for b in plan.buffers for t in b.tensors}
        output_group = {t for t, (where, _) in plan.placement.items() if where == "output" and t not in borrowed}
        out_first_write = min(s for s, step in enumerate(compiled.steps) if step.op.outputs[0] in output_group)
        for a in plan.buffers:
            for b in plan.buffers:
                if a is not b and a.region == b.region and not (a.last < b.first or b.last < a.first):
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (name, a, b)
            if a.region == "arena":
                assert a.offset % 4 == 0 and a.offset + a.size <= plan.arena_bytes
            else:  # borrowed from the caller's output buffer: dead before the output is written, no wider alignment
                used_output_region += 1
                assert a.offset + a.size <= compiled.output_bytes and a.last < out_first_write, (name, a)
                assert all(graph.tensors[t].dtype.itemsize <= graph.tensors[graph.output].dtype.itemsize for t in a.tensors)
    assert used_output_region > 0


def test_unsupported_op_is_refused_with_its_name_and_index(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(UnsupportedModelError) as info:
        compile_model(refused_model("abs", tmp_path_factory).read_bytes())
    assert info.value.op_name == "ABS" and info.value.op_index == 1
    assert "op 1 (ABS)" in str(info.value)


def test_hybrid_quantisation_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(UnsupportedModelError, match="hybrid") as info:
        compile_model(refused_model("hybrid", tmp_path_factory).read_bytes())
    assert info.value.op_name == "FULLY_CONNECTED" and info.value.op_index == 0


def test_legacy_uint8_quantisation_is_refused(tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(UnsupportedModelError, match="legacy uint8") as info:
        compile_model(refused_model("legacy_uint8", tmp_path_factory).read_bytes())
    assert info.value.op_name == "FULLY_CONNECTED" and info.value.op_index == 0


def test_uint8_model_io_converted_by_quantize_is_compiled(tmp_path_factory: pytest.TempPathFactory) -> None:
    compiled = compile_model(model_file("fc_uint8_io", tmp_path_factory).path.read_bytes())
    assert compiled.op_counts["QUANTIZE"] == 2  # uint8 -> int8 in, int8 -> uint8 out; exactness is in test_compiler_exactness
    assert compiled.graph.tensors[compiled.graph.input].type_name == "uint8"


def test_not_a_model_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="TFL3"):
        compile_model(b"\x00" * 64)


def test_plan_text_is_safe_inside_the_generated_c_comment() -> None:
    from edge.compiler.planner import _c_comment_safe

    assert "*/" not in _c_comment_safe("model/conv*/x\n") and "/*" not in _c_comment_safe("a/*b")
