"""Reading a run's meta-model (server.export_run.load_run) and writing it as .npz and C arrays.

The runs are real: ``make_run`` runs the federation (``run_federation``, the ServerApp's loop, on the
in-process grid with the real ClientApp) into ``W/checkpoints``, where ``tinyfleet server --workdir W``
puts them (server.core.run_dir.prepare_run).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from edge.firmware.device import DEVICE_DIR, MLP_C, build_host, host_compiler
from edge.mlp import init_mlp_weights, mlp_forward
from firmware_sim.client_app import app as client_app
from server.core.checkpoint import Checkpointer
from server.core.federation import DeviceRoundConfig, FederationSettings, run_federation
from server.core.run_dir import CHECKPOINTS
from server.export_run import ExportError, RunModel, c_sources, load_run, write_c, write_npz
from server.strategies.tiny_metafed import TinyMetaFedConfig
from server.strategies.tiny_reptile import TinyReptileConfig
from server.transports.inprocess_grid import InProcessGrid

SIZES = (1, 8, 8, 1)
SMALL = FederationSettings(
    num_rounds=2, layer_sizes=SIZES,
    reptile=TinyReptileConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant", seed=3,
                              step_size_learning_rate=0.05, step_size_shots=3, step_size_query=6),
    metafed=TinyMetaFedConfig(clients_per_round=2, meta_step_size=0.5, anneal="constant", seed=3,
                              private_names=("w2", "b2")),
    device=DeviceRoundConfig(stream_samples=6, device_seeds=(40, 41, 42, 43)),
)  # fmt: skip


def make_run(workdir: Path, strategy: str = "tinyreptile", rounds: int = 2, **changes: object) -> Path:
    """A finished federation run in ``workdir`` as the server leaves it (``changes``: other FederationSettings fields);
    returns the workdir."""
    saved = {name: getattr(TaskIdentity, name, None) for name in ("_run_id", "_node_id", "_task_id")}
    for name in saved:  # what a Flower runtime sets for messages built outside it
        setattr(TaskIdentity, name, 1)
    try:
        settings = replace(SMALL, strategy=strategy, num_rounds=rounds, checkpoint_dir=str(workdir / CHECKPOINTS), **changes)
        run_federation(InProcessGrid(client_app, 4, node_id_seed=0), settings)
    finally:
        for name, value in saved.items():
            setattr(TaskIdentity, name, value)
    return workdir


@pytest.fixture(scope="module")
def reptile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("reptile_run"))


def test_load_run_reads_theta_step_sizes_and_what_the_run_was(reptile_run: Path) -> None:
    model = load_run(reptile_run)
    checkpoint = Checkpointer(reptile_run / CHECKPOINTS).load_latest()
    assert (model.task, model.layer_sizes, model.server_round, model.strategy) == ("sine", SIZES, 2, "tinyreptile")
    assert model.private_names == ()
    for name, value in checkpoint.weights.items():
        np.testing.assert_array_equal(model.theta[name], value)
    assert model.step_sizes is not None and set(model.step_sizes) == set(model.theta)
    assert any(not np.all(v == 1.0) for v in model.step_sizes.values())  # two rounds of Adam moved them
    assert load_run(reptile_run / CHECKPOINTS).theta.keys() == model.theta.keys()  # the checkpoint dir itself


def test_a_metafed_run_names_its_private_part_and_has_no_step_sizes(tmp_path: Path) -> None:
    model = load_run(make_run(tmp_path, "tinymetafed", rounds=1))
    assert (model.strategy, model.private_names, model.step_sizes, model.server_round) == ("tinymetafed", ("w2", "b2"), None, 1)


def test_the_task_comes_from_the_checkpoint_meta(tmp_path: Path) -> None:
    theta = init_mlp_weights((3, 4, 2), 0)
    Checkpointer(tmp_path / CHECKPOINTS).save(5, theta, {"strategy": "fedavg", "settings": {"device": {"task": "presence"}, "layer_sizes": [3, 4, 2]}})
    model = load_run(tmp_path)
    assert (model.task, model.layer_sizes, model.server_round, model.step_sizes) == ("presence", (3, 4, 2), 5, None)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "holds no checkpoint"),
        (lambda d: (d / "file.txt").write_text("x") and d / "file.txt", "is not a run directory"),
    ],
)
def test_bad_run_directories_are_refused_in_one_line(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(ExportError, match=message) as refused:
        load_run(setup(tmp_path))
    assert "\n" not in str(refused.value)


def test_a_checkpoint_that_contradicts_its_settings_is_refused(tmp_path: Path) -> None:
    Checkpointer(tmp_path).save(1, init_mlp_weights((1, 4, 1), 0), {"strategy": "fedavg", "settings": {"layer_sizes": [1, 5, 1]}})
    with pytest.raises(ExportError, match=r"says layer sizes \[1, 5, 1\] but θ is \[1, 4, 1\]"):
        load_run(tmp_path)


def test_a_torn_latest_json_is_refused_not_a_traceback(tmp_path: Path) -> None:
    Checkpointer(tmp_path).save(1, init_mlp_weights((1, 4, 1), 0), {})
    (tmp_path / "latest.json").write_text("{not json")
    with pytest.raises(ExportError, match="cannot read the checkpoint"):
        load_run(tmp_path)


def test_npz_holds_theta_and_step_sizes_with_a_manifest(reptile_run: Path, tmp_path: Path) -> None:
    model = load_run(reptile_run)
    written = write_npz(model, tmp_path)
    assert [p.name for p in written] == ["theta.npz", "step_sizes.npz", "manifest.json"]
    with np.load(tmp_path / "theta.npz") as theta, np.load(tmp_path / "step_sizes.npz") as steps:
        for name in model.theta:
            np.testing.assert_array_equal(theta[name], model.theta[name])
            np.testing.assert_array_equal(steps[name], model.step_sizes[name])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest | {"source": None} == {
        "task": "sine", "layer_sizes": [1, 8, 8, 1], "round": 2, "strategy": "tinyreptile", "private_names": [],
        "weights": ["w0", "b0", "w1", "b1", "w2", "b2"], "step_sizes": True, "source": None,
    }  # fmt: skip


def test_c_arrays_hold_thetas_bits_in_mlp_h_layout(reptile_run: Path, tmp_path: Path) -> None:
    """Compiled with mlp.c on the host: the params the firmware installs are θ bit for bit, and its forward pass
    agrees with numpy's within 1e-5 (float32 sums in C's order against numpy's BLAS order)."""
    if host_compiler() is None:
        pytest.skip("no host C compiler")
    model = load_run(reptile_run)
    write_c(model, tmp_path, prefix="sine_meta")
    xs = np.linspace(-5.0, 5.0, 7, dtype=np.float32)
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include <string.h>\n#include "mlp.h"\n#include "sine_meta.h"\n'
        "static float arena[4096];\n"
        "int main(void) {\n  tf_mlp m; uint32_t i;\n"
        "  if (tf_mlp_init(&m, SINE_META_N_LAYERS, sine_meta_sizes, arena, 4096) != TF_MLP_OK) return 2;\n"
        "  memcpy(m.params, sine_meta_theta, sizeof sine_meta_theta);\n"
        '  for (i = 0; i < SINE_META_N_PARAMS; i++) { uint32_t u, v; memcpy(&u, &m.params[i], 4); '
        'memcpy(&v, &sine_meta_step_sizes[i], 4); printf("%08x %08x\\n", u, v); }\n'
        f"  {{ const float xs[7] = {{{', '.join(f'{x!r}f' for x in xs)}}}; int k;\n"
        '    for (k = 0; k < 7; k++) printf("y %.9g\\n", (double)tf_mlp_forward(&m, &xs[k])[0]); }\n'
        "  return 0;\n}\n"
    )
    exe = build_host([tmp_path / "main.c", tmp_path / "sine_meta.c", MLP_C], [tmp_path, DEVICE_DIR], tmp_path / "check")
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True, timeout=30).stdout.split("\n")
    bits = [tuple(int(h, 16) for h in line.split()) for line in lines if line and not line.startswith("y ")]
    assert [b[0] for b in bits] == model.flat(model.theta).view(np.uint32).tolist()
    assert [b[1] for b in bits] == model.flat(model.step_sizes).view(np.uint32).tolist()
    c_out = np.array([float(line[2:]) for line in lines if line.startswith("y ")])
    numpy_out = mlp_forward(model.theta, xs.reshape(-1, 1), model.n_layers)[-1].ravel()
    np.testing.assert_allclose(c_out, numpy_out, rtol=1e-5, atol=1e-5)


def test_c_without_learned_step_sizes_ships_ones_and_says_so(tmp_path: Path) -> None:
    model = RunModel(init_mlp_weights((1, 3, 1), 0), None, "sine", (1, 3, 1), 1, "fedavg", (), tmp_path)
    header, body = c_sources(model, "m").values()
    assert "#define M_HAS_STEP_SIZES 0" in header and "#define M_N_PARAMS 10u" in header
    assert body.count("0x1.0000000000000p+0f") == 10


def test_c_refuses_a_prefix_that_is_not_an_identifier(tmp_path: Path) -> None:
    model = RunModel(init_mlp_weights((1, 3, 1), 0), None, "sine", (1, 3, 1), 1, "fedavg", (), tmp_path)
    with pytest.raises(ExportError, match="not a C identifier"):
        write_c(model, tmp_path / "out", prefix="9-bad")
    assert not (tmp_path / "out").exists()
