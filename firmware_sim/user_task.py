"""A user's own task: a folder with a ``task.toml``, their data in a real layout, and optionally their model.

``load_user_task(folder)`` reads the folder, checks everything (the data,
the model against the data, the settings) and registers a
:class:`firmware_sim.device_tasks.DeviceTask` under the task's name, so every
transport builds its devices as it builds the built-in ones: device
``<name>-<seed>`` plays the ``seed``-th device of the data in sorted order.
:func:`resolve_task` is what a ``--task`` option resolves through: a folder
holding a task.toml is loaded, anything else is a task name.

A task.toml (every key but ``name`` and ``[data] layout``/``path`` has a default)::

    name = "machines"                # a device id prefix: letters, digits, '_'
    [data]
    layout = "csv"                   # csv | images | wav  (firmware_sim.tasks.user_data)
    path = "data"                    # relative to the task folder
    label_column = "label"           # csv
    device_column = "machine"        # csv; leave out for one <device>.csv per device
    feature_columns = ["rms", "peak"]  # csv; default: every other column
    labels = ["ok", "worn"]          # the class order; default: sorted labels of the training devices
    held_out = ["m9"]                # devices kept out of the scaler and the labels (e.g. to evaluate on)
    min_samples = 10
    ink = "dark"                     # images
    [model]
    kind = "mlp"                     # mlp (default) | tflite | backbone
    hidden = [32]                    # mlp: hidden layer sizes over the features
    path = "model.tflite"            # tflite: a training graph (server/models/sine_mlp.py's signatures);
                                     # backbone: an int8 (or float) feature extractor
    head_size = 3                    # backbone: outputs of the trained head (the number of labels)
    [training]
    learning_rate = 0.05             # per-sample SGD step on the device
    shots = 5                        # samples a new device adapts on
    profile = "nano33ble"            # the board its devices run on unless placed on another
    [method]                         # overrides of the server's method for this task (server.core.tasks)

The three model kinds, and what TinyMetaFed keeps private on the device:

- ``mlp``: :class:`edge.mlp_classifier.MLPClassifier` over the features, a
  fresh MLP at round 0, the output layer private (labels are a device's own),
  starting at zero as the built-in classifiers' firmware does.
- ``tflite``: the user's training graph in the real interpreter
  (:class:`edge.tflite_learner.TFLiteTrainer`); θ at round 0 is the model's own
  weights. The project's training graphs minimise squared error, so a sample's
  class is given to it as its one-hot target. Its last ``w``/``b`` pair is private.
- ``backbone``: TinyOL, a frozen backbone and a head of ``head_size`` outputs
  (:class:`edge.tflite_learner.BackboneHeadLearner`). The head is all that
  trains, so nothing is private: the whole head is federated.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.device import SimulatedDevice
from edge.identity import DeviceIdentity
from edge.learner import Learner
from edge.mlp_classifier import MLPClassifier
from edge.profiles import DeviceProfile, get_profile
from firmware_sim.device_tasks import BUILT_IN, DeviceTask, device_task, register_device_task
from firmware_sim.fleet import local_init
from firmware_sim.tasks.user_data import DataError, DataSpec, UserData, load_data, load_placed, read_layout

TASK_FILE = "task.toml"
MODEL_KINDS = ("mlp", "tflite", "backbone")
STREAM_SALT = 13  # keeps a user task's sample order apart from other streams keyed by the same (seed, round)
TABLES: dict[str, tuple[str, ...]] = {
    "": ("name", "data", "model", "training", "method"),
    "data": ("layout", "path", "label_column", "device_column", "feature_columns", "labels", "held_out",
             "min_samples", "ink"),
    "model": ("kind", "hidden", "path", "head_size"),
    "training": ("learning_rate", "shots", "profile"),
}  # fmt: skip


class TaskFileError(ValueError):
    """A task folder that cannot be used; the message names the file and the key or what is wrong."""


@dataclass(frozen=True)
class ModelSpec:
    kind: str = "mlp"
    hidden: tuple[int, ...] = (32,)
    path: Path | None = None
    head_size: int | None = None


@dataclass(frozen=True, eq=False)  # holds the data's arrays
class UserDeviceTask(DeviceTask):
    """A :class:`DeviceTask` read from a task folder, with what the server asks of it besides."""

    folder: Path = Path(".")
    data: UserData | None = None
    model: ModelSpec = ModelSpec()
    learning_rate: float = 0.05
    shots: int = 5
    profile: str = "nano33ble"
    method: Mapping[str, Any] = field(default_factory=dict)  # TaskMethod overrides; the server checks the names
    learner: Callable[[int], tuple[Learner, int | None]] | None = None  # seed -> (learner, flash bytes)
    targets: Callable[[np.ndarray], np.ndarray] | None = None  # class indices -> what the learner trains on

    def placed(self, data_dir: str | Path) -> DeviceTask:
        """The same task whose devices learn from the one device's data in ``data_dir`` (``device run --data``)."""
        assert self.data is not None
        x, y = load_placed(self.data, Path(data_dir))
        return dataclasses.replace(self, build=self._builder(lambda _seed: (x, y)))

    def _builder(self, arrays: Callable[[int], tuple[np.ndarray, np.ndarray]]) -> Callable[..., SimulatedDevice]:
        def build(seed: int, stream_key: int, profile: DeviceProfile | None) -> SimulatedDevice:
            x, y = arrays(seed)
            assert self.learner is not None and self.targets is not None
            device = SimulatedDevice(
                device_id=DeviceIdentity.of_seed(seed, self.name).device_id,
                profile=profile or get_profile(self.profile),
                stream=cycled(x, self.targets(y), seed, stream_key),
            )
            learner, flash = self.learner(seed)
            device.deploy(learner, flash_bytes=flash)
            return device

        return build


def cycled(x: np.ndarray, targets: np.ndarray, seed: int, stream_key: int) -> Iterator[tuple[np.ndarray, Any]]:
    """A device's samples without end: each pass in a fresh order drawn from (seed, stream_key).

    A user's device holds a few dozen samples, fewer than a federation asks
    of it over its rounds, so passes repeat; within a pass none does.
    """
    rng = np.random.default_rng([seed, stream_key, STREAM_SALT])
    while True:
        for i in rng.permutation(len(x)):
            yield x[i], targets[i]


# --- a built-in task's device with the user's own files -------------------------------------------------------

PLACEABLE_BUILT_INS = {"characters": "images", "keywords": "wav"}
"""Built-in tasks whose device can learn from a user's files, and their layout. Presence's window features are
standardised by constants :mod:`firmware_sim.task_families` keeps private, so its devices cannot take files yet."""


def place_built_in(task: DeviceTask, data_dir: str | Path) -> DeviceTask:
    """``task``'s device, learning from one drawer's Omniglot folder (characters) or one speaker's Speech Commands
    folder (keywords) instead of its generated stream: the features its firmware computes, its own class order
    (sorted folder names, as a device's labels are its own), exactly as many classes as the task's output layer."""
    from firmware_sim.task_families import keyword_features

    if task.name not in PLACEABLE_BUILT_INS:
        raise ValueError(f"--data: a {task.name} device generates its own data; files can be given to "
                         f"{', '.join(PLACEABLE_BUILT_INS)} devices or to a user task (a folder with a {TASK_FILE})")  # fmt: skip
    spec = DataSpec(PLACEABLE_BUILT_INS[task.name], Path(data_dir), min_samples=1)  # type: ignore[arg-type]
    found, _ = read_layout(spec, spec.path, keyword_features if task.name == "keywords" else None)
    if len(found) != 1:
        raise DataError(f"{data_dir} holds {len(found)} devices ({sorted(found)}); a placed device takes the data of one")
    (samples,) = found.values()
    labels = sorted(set(samples.labels))
    n_way = task.layer_sizes[-1]
    if len(labels) != n_way:
        raise DataError(f"{data_dir}: a {task.name} device learns {n_way} classes, the folder has {len(labels)}: {labels}")
    x = samples.raw.astype(np.float32)
    y = np.array([labels.index(label) for label in samples.labels], np.int64)
    built = task.build

    def build(seed: int, stream_key: int, profile: DeviceProfile | None) -> SimulatedDevice:
        device = built(seed, stream_key, profile)
        device.stream = cycled(x, y, seed, stream_key)  # the generated stream was never started: nothing is drawn
        return device

    return dataclasses.replace(task, build=build)


# --- reading a task folder ----------------------------------------------------------------------------


def load_user_task(folder: str | Path) -> UserDeviceTask:
    """Read, check and register the task in ``folder``; TaskFileError or DataError naming what is wrong."""
    folder = Path(folder)
    path = folder / TASK_FILE
    if not path.is_file():
        raise TaskFileError(f"{folder} has no {TASK_FILE}; a task folder describes its data and model there")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{path}: not valid TOML ({exc})") from None
    for table, known in TABLES.items():
        section = doc if not table else doc.get(table, {})
        if not isinstance(section, dict):
            raise TaskFileError(f"{path}: [{table}] must be a table")
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise TaskFileError(f"{path}: unknown key(s) {unknown}{f' in [{table}]' if table else ''}; known: {list(known)}")
    name = _get(doc, "name", str, path)
    _check_name(name, path)
    data_table, model_table, training = doc.get("data", {}), doc.get("model", {}), doc.get("training", {})
    method = doc.get("method", {})
    if not isinstance(method, dict):
        raise TaskFileError(f"{path}: [method] must be a table")
    spec = _data_spec(data_table, folder, path)
    model = _model_spec(model_table, folder, path)
    learning_rate = float(_get(training, "learning_rate", (int, float), path, 0.05))
    shots = _get(training, "shots", int, path, 5)
    profile = _get(training, "profile", str, path, "nano33ble")
    if not learning_rate > 0 or shots < 1:
        raise TaskFileError(f"{path}: [training] learning_rate must be > 0 and shots >= 1")
    try:
        get_profile(profile)
    except KeyError as exc:
        raise TaskFileError(f"{path}: [training] profile: {exc.args[0]}") from None
    data = load_data(spec)
    task = UserDeviceTask(
        name=name, build=_unbuilt, data=data, model=model, folder=folder.resolve(), learning_rate=learning_rate,
        shots=shots, profile=profile, method=dict(method), **_model_parts(data, model, path),
    )  # fmt: skip
    task = dataclasses.replace(task, build=task._builder(data.device_arrays))
    task.device(0)  # the first device builds and its model fits its board, or the folder is refused now
    register_device_task(task)
    return task


_loaded: dict[Path, UserDeviceTask] = {}


def resolve_task(name_or_path: str | Path) -> DeviceTask:
    """What a ``--task`` value names: a task folder (loaded once per process and registered), or a task name."""
    text = str(name_or_path)
    folder = Path(text)
    if (folder / TASK_FILE).is_file():
        key = folder.resolve()
        if key not in _loaded:
            _loaded[key] = load_user_task(folder)
        return register_device_task(_loaded[key])
    if folder.is_dir() or "/" in text or text.endswith(".toml"):
        raise TaskFileError(f"{text} is not a task folder: it has no {TASK_FILE}")
    return device_task(text)


def task_source(task: DeviceTask) -> str:
    """What names ``task`` to another process (an accounts file, a device's ``--task``): a user task's folder, which
    that process must load, or a built-in's name. :func:`resolve_task` turns it back into the task."""
    return str(task.folder) if isinstance(task, UserDeviceTask) else task.name


def _check_name(name: str, path: Path) -> None:
    if name in BUILT_IN:
        raise TaskFileError(f"{path}: name {name!r} is a built-in task; choose another name")
    try:
        DeviceIdentity.parse(f"{name}-0")
        valid = DeviceIdentity.parse(f"{name}-0").seed == 0
    except ValueError:
        valid = False
    if not valid:
        raise TaskFileError(f"{path}: name {name!r} must start with a letter and hold only letters, digits and '_' "
                            "(it prefixes device ids: <name>-<seed>)")  # fmt: skip


def _get(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise TaskFileError(f"{path}: {key!r} is missing")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise TaskFileError(f"{path}: {key!r} must be {names}, got {value!r}")
    return value


def _strings(table: Mapping[str, Any], key: str, path: Path) -> tuple[str, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskFileError(f"{path}: {key!r} must be a list of strings, got {value!r}")
    return tuple(value)


def _data_spec(table: Mapping[str, Any], folder: Path, path: Path) -> DataSpec:
    where = folder / _get(table, "path", str, path)
    try:
        return DataSpec(
            layout=_get(table, "layout", str, path), path=where,
            label_column=_get(table, "label_column", str, path, "label"),
            device_column=_get(table, "device_column", str, path, None),
            feature_columns=_strings(table, "feature_columns", path), labels=_strings(table, "labels", path),
            held_out=_strings(table, "held_out", path) or (), min_samples=_get(table, "min_samples", int, path, 10),
            ink=_get(table, "ink", str, path, "dark"),
        )  # fmt: skip
    except DataError as exc:
        raise TaskFileError(f"{path}: [data] {exc}") from None


def _model_spec(table: Mapping[str, Any], folder: Path, path: Path) -> ModelSpec:
    kind = _get(table, "kind", str, path, "mlp")
    if kind not in MODEL_KINDS:
        raise TaskFileError(f"{path}: [model] kind {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    hidden = table.get("hidden", [32])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise TaskFileError(f"{path}: [model] hidden must be a list of positive integers, got {hidden!r}")
    model_path = _get(table, "path", str, path, None)
    if kind != "mlp" and model_path is None:
        raise TaskFileError(f"{path}: [model] kind {kind!r} needs a path to its .tflite file")
    head_size = _get(table, "head_size", int, path, None)
    return ModelSpec(kind, tuple(hidden), None if model_path is None else folder / model_path, head_size)


# --- the three model kinds --------------------------------------------------------------------------------


ModelParts = dict[str, Any]  # the DeviceTask fields a model kind decides


def _model_parts(data: UserData, model: ModelSpec, path: Path) -> ModelParts:
    if model.kind == "tflite":
        return _tflite_parts(data, model, path)
    if model.kind == "backbone":
        return _backbone_parts(data, model, path)
    layers = (data.n_features, *model.hidden, len(data.labels))
    last = len(model.hidden)
    private = (f"w{last}", f"b{last}")

    def firmware(seed: int) -> dict[str, np.ndarray]:
        weights = local_init(seed, layers)  # the device's own hidden layers and an empty output layer,
        for key in private:  # as the built-in classifiers' firmware ships (firmware_sim.task_client_app)
            weights[key] = np.zeros_like(weights[key])
        return weights

    return dict(layer_sizes=layers, private_names=private, firmware_init=firmware, metric="accuracy",
                learner=lambda seed: (MLPClassifier(layers), None), targets=lambda y: y)  # fmt: skip


def _unbuilt(seed: int, stream_key: int, profile: DeviceProfile | None) -> SimulatedDevice:
    raise AssertionError("replaced by UserDeviceTask._builder")


def _model_bytes(model: ModelSpec, path: Path) -> bytes:
    assert model.path is not None
    try:
        return model.path.read_bytes()
    except OSError as exc:
        raise TaskFileError(f"{path}: [model] path {model.path}: {exc.strerror or exc}") from None


def _tflite_parts(data: UserData, model: ModelSpec, path: Path) -> ModelParts:
    from edge.tflite_learner import TFLiteTrainer
    from edge.tflite_runtime import ModelLoadError

    blob = _model_bytes(model, path)
    try:
        probe = TFLiteTrainer(blob)
    except (ModelLoadError, ValueError) as exc:
        raise TaskFileError(f"{path}: [model] {model.path}: {exc}") from None
    n_features, n_classes = data.n_features, len(data.labels)
    if (probe.n_inputs, probe.n_outputs) != (n_features, n_classes):
        raise TaskFileError(f"{path}: [model] {model.path} maps {probe.n_inputs} inputs to {probe.n_outputs} outputs; "
                            f"the data has {n_features} features and {n_classes} labels")  # fmt: skip
    theta = probe.get_weights()
    kernels = sorted((k for k in theta if k.startswith("w") and k[1:].isdigit()), key=lambda k: int(k[1:]))
    private: tuple[str, ...] = ()
    if kernels and f"b{kernels[-1][1:]}" in theta:
        private = (kernels[-1], f"b{kernels[-1][1:]}")
    layers = (n_features, *(theta[k].shape[1] for k in kernels)) if kernels else (n_features, n_classes)

    def firmware(seed: int) -> dict[str, np.ndarray]:
        weights = {k: v.copy() for k, v in theta.items()}
        for key in private:
            weights[key] = np.zeros_like(weights[key])
        return weights

    def learner(seed: int) -> tuple[Learner, int | None]:
        trainer = TFLiteTrainer(blob)
        return trainer, trainer.flash_bytes

    one_hot = np.eye(n_classes, dtype=np.float32)
    return dict(layer_sizes=layers, private_names=private, firmware_init=firmware, metric="accuracy",
                initial_weights=lambda seed: {k: v.copy() for k, v in theta.items()}, learner=learner,
                targets=lambda y: one_hot[y])  # fmt: skip


def _backbone_parts(data: UserData, model: ModelSpec, path: Path) -> ModelParts:
    from edge.tflite_learner import BackboneHeadLearner, FrozenBackbone
    from edge.tflite_runtime import ModelLoadError

    blob = _model_bytes(model, path)
    try:
        probe = FrozenBackbone(blob)
    except (ModelLoadError, ValueError) as exc:
        raise TaskFileError(f"{path}: [model] {model.path}: {exc}") from None
    n_features, n_classes = data.n_features, len(data.labels)
    if probe.n_inputs != n_features:
        raise TaskFileError(f"{path}: [model] {model.path} takes {probe.n_inputs} inputs; the data has {n_features} features")
    head = model.head_size if model.head_size is not None else n_classes
    if head != n_classes:
        raise TaskFileError(f"{path}: [model] head_size is {head} but the data has {n_classes} labels {list(data.labels)}")

    def learner(seed: int) -> tuple[Learner, int | None]:
        backbone = FrozenBackbone(blob)
        learner = BackboneHeadLearner(backbone, n_outputs=n_classes, task="classification", seed=seed)
        return learner, backbone.flash_bytes + learner.memory_footprint().weights  # the head's init ships too

    def fresh_head(seed: int) -> dict[str, np.ndarray]:
        return BackboneHeadLearner(probe, n_outputs=n_classes, task="classification", seed=seed).get_weights()

    return dict(layer_sizes=(n_features, probe.n_features, n_classes), private_names=(), firmware_init=fresh_head,
                metric="accuracy", initial_weights=fresh_head, learner=learner, targets=lambda y: y)  # fmt: skip
