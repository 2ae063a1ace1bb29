"""TinyOL on the emulated board (edge/firmware/tinyol): the compiled int8 backbone of each TinyML task, under QEMU
mps2-an386, gives TFLite's features bit for bit, and the float head it feeds steps and imprints as its numpy twin.

The backbones are the tasks' own architectures (``server.models.<task>.ARCH``: the characters CNN, the keywords
DS-CNN, the presence MLP) exported full-integer int8 by the project's exporter (``export_backbone``) with seeded
weights and calibration, not trained: training changes the weights, not the ops, kernels or quantisation
scheme the test is about, and it costs 2 to 26 s per task (keywords needs the espeak corpus).
``bench/firmware.py`` measures the trained ones.

Where bits are equal by construction, the test asserts equality: the C quantises and dequantises with the
same float32 operations as :class:`edge.tflite_learner.FrozenBackbone` (one division, trunc(v ± 0.5), one
multiply), and the compiled kernels are integer arithmetic matching TFLite's. Where two float computations
differ in order (the head's logits: four partial sums in C, BLAS in numpy), a tolerance is stated.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.online_head import OnlineHead
from edge.tflite_learner import FrozenBackbone
from edge.tflite_runtime import load_interpreter
from edge.validation import InvalidInputError

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="make system-deps installs arm-none-eabi-gcc and qemu-system-arm")  # fmt: skip

TASKS = {"characters": 5, "keywords": 10, "presence": 2}  # task -> head outputs (N_WAY, the ten keywords, empty/occupied)
N_SAMPLES = 8
NAN_SAMPLE = 3  # this sample holds a NaN: refused on both sides, nothing learned from it
LEARNING_RATE = 0.05
MIN_RATE = 0.25  # imprint: running mean for the first 4 samples of a class, then a moving average
# The head after a stream of 7 steps or imprints, C against numpy: their logits are the same sum in another
# order (C: four partial sums; numpy: BLAS, which varies by CPU), a few float32 ulps per step, carried through the
# softmax into the update. test_c_head.py measured such streams within 1e-4 relative / 1e-5 absolute over 300
# steps; the same bound here.
RTOL, ATOL = 1e-4, 1e-5


def _backbone(task: str, seed: int = 0) -> tuple[bytes, np.ndarray]:
    """The task's int8 backbone (seeded weights, calibrated on seeded inputs) and N_SAMPLES inputs for it."""
    from server.models import characters, keywords, presence
    from server.models.architecture import init_params
    from server.models.backbone_export import export_backbone

    arch = {"characters": characters, "keywords": keywords, "presence": presence}[task].ARCH
    rng = np.random.default_rng(seed)
    if task == "characters":  # ink 1.0 on 0.0
        calibration = (rng.uniform(size=(64, arch.n_inputs)) < 0.2).astype(np.float32)
        xs = (rng.uniform(size=(N_SAMPLES, arch.n_inputs)) < 0.2).astype(np.float32)
    else:  # scaled inputs (the InputScaler's standardised columns); some beyond the calibrated range saturate
        calibration = rng.normal(size=(64, arch.n_inputs)).astype(np.float32)
        xs = (1.5 * rng.normal(size=(N_SAMPLES, arch.n_inputs))).astype(np.float32)
    xs[NAN_SAMPLE, 0] = np.nan
    return export_backbone(arch, init_params(arch, seed), calibration), xs


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """task -> (case, image, run): one QEMU image per task (no timing phase)."""
    from edge.firmware.tinyol import TinyOLCase, build_image, run_image

    out = {}
    for task, n_outputs in TASKS.items():
        model, xs = _backbone(task)
        n_features = FrozenBackbone(model).n_features
        rng = np.random.default_rng(len(task))
        labels = np.arange(N_SAMPLES) % n_outputs  # every class seen (presence: both, four times)
        case = TinyOLCase(model=model, head_w=(0.1 * rng.normal(size=(n_features, n_outputs))).astype(np.float32),
                          head_b=(0.1 * rng.normal(size=n_outputs)).astype(np.float32), task="classification", xs=xs,
                          labels=labels, learning_rate=LEARNING_RATE, min_rate=MIN_RATE)  # fmt: skip
        image = build_image(case, tmp_path_factory.mktemp(f"tinyol_{task}"))
        out[task] = (case, image, run_image(image))
    return out


def _good(case) -> list[int]:  # noqa: ANN001
    return [i for i in range(len(case.xs)) if i != NAN_SAMPLE]


def _reference_interpreter(model: bytes):  # noqa: ANN202
    """TFLite (ai-edge-litert) with its reference kernels, the integer arithmetic TFLite Micro runs too.

    Why not the default resolver: it delegates int8 convolutions and dense layers to XNNPACK, whose
    requantisation rounds differently; on these backbones 1 LSB off in up to ~15 % of the features.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, inp["shape"][1]])
    interpreter.allocate_tensors()
    return interpreter


@pytest.mark.parametrize("task", TASKS)
def test_compiled_backbone_equals_tflite_bit_for_bit(task: str, runs: dict, tmp_path: Path) -> None:
    from compiler_models import tflm_outputs

    from edge.firmware.tinyol import dequantize

    case, image, run = runs[task]
    good = _good(case)
    backbone = FrozenBackbone(case.model)
    # quantisation: the C's int8 input is FrozenBackbone's (the same float32 operations)
    np.testing.assert_array_equal(run.q_inputs[good], backbone._quantize(case.xs[good]))
    # the backbone: TFLite's interpreter (reference kernels) on those very int8 inputs gives the same int8 features
    interpreter = _reference_interpreter(case.model)
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in good:
        interpreter.set_tensor(inp["index"], run.q_inputs[i : i + 1])
        interpreter.invoke()
        np.testing.assert_array_equal(run.features_q[i], interpreter.get_tensor(outp["index"])[0], err_msg=f"{task} sample {i}")
    # and TFLite Micro's (PyPI tflite-micro), which the compiler is built to match
    path = tmp_path / f"{task}.tflite"
    path.write_bytes(case.model)
    np.testing.assert_array_equal(run.features_q[good], tflm_outputs(path, run.q_inputs[good][:, None, :]).reshape(len(good), -1))
    assert len(np.unique(run.features_q[good])) > 3  # the features vary: the comparison means something
    # the float features the head reads are FrozenBackbone's dequantisation of those int8 features, to the bit
    np.testing.assert_array_equal(dequantize(run.features_q[good], image.compiled), backbone._dequantize(run.features_q[good]))


@pytest.mark.parametrize("task", TASKS)
def test_nan_sample_is_refused_on_the_board_as_in_numpy(task: str, runs: dict) -> None:
    case, _, run = runs[task]
    assert run.infer_status == [2 if i == NAN_SAMPLE else 0 for i in range(N_SAMPLES)]  # TINYOL_NONFINITE_SAMPLE
    assert run.sgd_status[NAN_SAMPLE] == 2 and run.imprint_status[NAN_SAMPLE] == 2
    with pytest.raises(InvalidInputError):
        FrozenBackbone(case.model).feature_vector(case.xs[NAN_SAMPLE])


def _twin(case) -> OnlineHead:  # noqa: ANN001
    head = OnlineHead(case.head_w.shape[0], case.head_w.shape[1], "classification", seed=0)
    head.set_weights({"head_w": case.head_w, "head_b": case.head_b})
    return head


def _features(case, image, run) -> dict[int, np.ndarray]:  # noqa: ANN001
    from edge.firmware.tinyol import dequantize

    return {i: dequantize(run.features_q[i], image.compiled) for i in _good(case)}


@pytest.mark.parametrize("task", TASKS)
def test_head_logits_and_sgd_steps_equal_the_numpy_twin(task: str, runs: dict) -> None:
    case, image, run = runs[task]
    features = _features(case, image, run)
    head = _twin(case)
    for i, f in features.items():
        np.testing.assert_allclose(run.logits[i], f @ case.head_w + case.head_b, rtol=RTOL, atol=ATOL)
    for i, f in features.items():
        assert run.sgd_status[i] == 0
        assert run.sgd_losses[i] == pytest.approx(head.learn_one(f, int(case.labels[i]), LEARNING_RATE), rel=RTOL, abs=ATOL)
    want = head.get_weights()
    np.testing.assert_allclose(run.params_sgd[:-1], want["head_w"], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(run.params_sgd[-1], want["head_b"], rtol=RTOL, atol=ATOL)
    assert np.abs(run.params_sgd[:-1] - case.head_w).max() > 1e-3  # the stream really trained the head


@pytest.mark.parametrize("task", TASKS)
def test_imprints_equal_the_numpy_twin(task: str, runs: dict) -> None:
    case, image, run = runs[task]
    features = _features(case, image, run)
    head = _twin(case)
    for i, f in features.items():
        assert run.imprint_status[i] == 0
        assert run.imprint_losses[i] == pytest.approx(head.imprint_one(f, int(case.labels[i]), MIN_RATE), rel=RTOL, abs=ATOL)
    want = head.get_weights()
    assert run.counts == head.imprint_counts.tolist()
    # the class means: the same float32 operations on both sides (c + (x - c) * rate, or x itself), so equal bits
    np.testing.assert_array_equal(run.params_imprint[:-1], want["head_w"])
    # the bias -1/2 |mu|^2: a sum of squares in another order (C: four partial sums)
    np.testing.assert_allclose(run.params_imprint[-1], want["head_b"], rtol=RTOL, atol=ATOL)
    imprinted = sorted({int(case.labels[i]) for i in features})
    assert not np.array_equal(run.params_imprint[:-1, imprinted], case.head_w[:, imprinted])


def test_a_float_backbone_is_refused_with_the_reason(tmp_path: Path) -> None:
    from edge.firmware.tinyol import TinyOLCase, build_image
    from server.models import presence
    from server.models.architecture import init_params
    from server.models.backbone_export import export_backbone

    model = export_backbone(presence.ARCH, init_params(presence.ARCH, 0), None)  # float32 in and out
    case = TinyOLCase(model=model, head_w=np.zeros((8, 2), np.float32), head_b=np.zeros(2, np.float32),
                      task="classification", xs=np.zeros((1, 11), np.float32), labels=np.zeros(1))  # fmt: skip
    with pytest.raises(ValueError, match="int8-in, int8-out backbone; this one is float32 -> float32"):
        build_image(case, tmp_path)


def test_the_largest_tinyol_image_fits_the_nano_33_ble_sense(tmp_path: Path) -> None:
    """The characters backbone (the most flash and arena) + its head builds for the nRF52840 and fits it."""
    from edge.firmware.build import board
    from edge.firmware.tinyol import TinyOLCase, build_image

    model, xs = _backbone("characters")
    case = TinyOLCase(model=model, head_w=np.zeros((64, 5), np.float32), head_b=np.zeros(5, np.float32),
                      task="classification", xs=xs, labels=np.arange(N_SAMPLES) % 5)  # fmt: skip
    image = build_image(case, tmp_path, board="nano33ble")
    nano = board("nano33ble")
    assert image.elf.is_file() and image.size.bss > image.compiled.arena_bytes  # the backbone's arena is static RAM
    assert image.size.flash_bytes < nano.flash_bytes and image.size.ram_bytes < nano.ram_bytes
