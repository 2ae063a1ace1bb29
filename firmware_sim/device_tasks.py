"""Tasks as plugins, device side: one descriptor per task says what a device of that task is.

Every transport builds its devices here — the Flower ClientApp
(:mod:`firmware_sim.client_app`), the MQTT fleet (:mod:`firmware_sim.mqtt_fleet`),
``tinyfleet device run`` — so "a keywords device" is one thing everywhere: a
stream of labelled samples keyed by the device's seed and the round, the
learner its firmware runs, the weights its firmware ships (where a private
part is rebuilt from), and the profile it runs on unless the user places it on
another. The server's half of a task (its default method settings and export)
is :mod:`server.core.tasks`, built on this one.

A device learns its task from its id: ``keywords-7`` is seed 7 of the
``keywords`` task (:class:`edge.identity.DeviceIdentity`), so an accounts file
or an announced Thing Description says it all and ``fleet run`` needs no
``--task``. A user's own task (:mod:`firmware_sim.user_task`) registers a
descriptor under its own name with :func:`register_device_task`.

    >>> device_task("keywords").layer_sizes[-1]
    4
    >>> task_of_device("characters-12").name
    'characters'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge.device import SimulatedDevice
from edge.identity import DEFAULT_FAMILY, DeviceIdentity
from edge.mlp import NumpyMLP, init_mlp_weights
from edge.profiles import DeviceProfile
from edge.wire import DEFAULT_MAX_PAYLOAD, encoded_size

Weights = dict[str, np.ndarray]
PAYLOAD_HEADROOM = 1024  # a device id (<= 64 B) and up to 16 metrics beside the weights of an UPDATE
DeviceFactory = Callable[[int, int, "DeviceProfile | None"], SimulatedDevice]


class UnknownTaskError(ValueError):
    """A task name no descriptor is registered under; the message lists the known ones."""


@dataclass(frozen=True)
class DeviceTask:
    """What a device of one task is; see the module docstring.

    ``build(seed, stream_key, profile)`` returns the device with its learner
    deployed (refused there if it does not fit the profile); ``stream_key``
    (e.g. the server round) selects fresh samples, ``profile`` None means the
    task's own choice for that seed.
    """

    name: str
    layer_sizes: tuple[int, ...]
    private_names: tuple[str, ...]  # what TinyMetaFed keeps on the device: the output layer
    build: DeviceFactory
    firmware_init: Callable[[int], Weights]  # the weights a device's firmware ships with (private parts start here)
    metric: str  # how a new device is scored: "mse", "accuracy" or "balanced-accuracy"
    initial_weights: Callable[[int], Weights] | None = None  # θ at round 0 for this seed; None: a fresh MLP

    def device(self, seed: int, stream_key: int = 0, profile: DeviceProfile | None = None) -> SimulatedDevice:
        return self.build(seed, stream_key, profile)

    def device_id(self, seed: int) -> str:
        return DeviceIdentity.of_seed(seed, self.name).device_id

    def with_layer_sizes(self, layer_sizes: tuple[int, ...] | None) -> DeviceTask:
        """The same task with another MLP size (small fleets in tests, or a user's choice); only the sine MLP
        is resizable: a classifier task's input and output are fixed by its data."""
        if layer_sizes is None or tuple(layer_sizes) == self.layer_sizes:
            return self
        if self.name != DEFAULT_FAMILY:
            raise ValueError(f"task {self.name!r} has layer sizes {self.layer_sizes}; only sine's MLP can be resized")
        return _sine_task(tuple(layer_sizes))

    def receive_buffer_bytes(self) -> int:
        """The firmware's receive buffer: the protocol's 64 KiB default, or, for a model whose whole MODEL or
        dense UPDATE payload is larger (characters' MLP is 67 KB), that payload's size plus room for the
        device id and metrics, rounded up to 4 KiB. The firmware is built for its task, so it knows this size;
        the server sends and accepts the same cap (docs/protocol.md, "Size cap")."""
        needed = encoded_size(self.firmware_init(0)) + PAYLOAD_HEADROOM
        return max(DEFAULT_MAX_PAYLOAD, -(-needed // 4096) * 4096)

    def theta0(self, seed: int) -> Weights:
        """θ at round 0: the task's own (a user's trained model) or a fresh MLP of its layer sizes."""
        if self.initial_weights is not None:
            return self.initial_weights(seed)
        return init_mlp_weights(self.layer_sizes, seed)


def _sine_task(layers: tuple[int, ...] = (1, 40, 40, 1)) -> DeviceTask:
    from firmware_sim.fleet import local_init, sine_device

    last = len(layers) - 2

    def build(seed: int, stream_key: int, profile: DeviceProfile | None) -> SimulatedDevice:
        device = sine_device(seed, stream_key)
        if profile is not None:
            device.profile = profile
        device.deploy(NumpyMLP(layers))
        return device

    return DeviceTask(
        name=DEFAULT_FAMILY, layer_sizes=layers, private_names=(f"w{last}", f"b{last}"),
        build=build, firmware_init=lambda seed: local_init(seed, layers), metric="mse",
    )  # fmt: skip


def _family_task(name: str) -> DeviceTask:
    from edge.profiles import NANO_33_BLE_SENSE
    from firmware_sim.task_client_app import firmware_init, task_device
    from firmware_sim.task_families import task_family

    family = task_family(name)

    def build(seed: int, stream_key: int, profile: DeviceProfile | None) -> SimulatedDevice:
        return task_device(family, seed, stream_key, profile or NANO_33_BLE_SENSE)

    return DeviceTask(
        name=family.name, layer_sizes=family.layer_sizes, private_names=family.private_names, build=build,
        firmware_init=lambda seed: firmware_init(family, seed),
        metric="balanced-accuracy" if family.balanced else "accuracy",
    )  # fmt: skip


BUILT_IN: dict[str, Callable[[], DeviceTask]] = {
    DEFAULT_FAMILY: _sine_task,
    "characters": lambda: _family_task("characters"),
    "keywords": lambda: _family_task("keywords"),
    "presence": lambda: _family_task("presence"),
}
_registered: dict[str, DeviceTask] = {}


def register_device_task(task: DeviceTask) -> DeviceTask:
    """Make ``task`` known by its name (a user's own task); a built-in name cannot be taken."""
    if task.name in BUILT_IN:
        raise ValueError(f"task name {task.name!r} is a built-in task; choose another name")
    DeviceIdentity.of_seed(0, task.name)  # refuses a name that cannot prefix a device id
    _registered[task.name] = task
    return task


def task_names() -> tuple[str, ...]:
    return (*BUILT_IN, *sorted(_registered))


def device_task(name: str) -> DeviceTask:
    """The descriptor of task ``name``; UnknownTaskError naming the known tasks otherwise."""
    if name in _registered:
        return _registered[name]
    if name not in BUILT_IN:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    return _built_in(name)


@functools.lru_cache(maxsize=None)
def _built_in(name: str) -> DeviceTask:
    return BUILT_IN[name]()


def task_of_device(device_id: str) -> DeviceTask:
    """The task a generated device id names (``keywords-7`` -> keywords); ValueError if the id names none."""
    identity = DeviceIdentity.parse(device_id)
    if identity.seed is None:
        raise ValueError(f"device id {device_id!r} is not <task>-<number>, so it names no task")
    return device_task(device_id.rsplit("-", 1)[0])


def seed_of(device_id: str) -> int:
    """``keywords-7`` -> 7: which device of its task this id plays (its stream, its firmware init)."""
    identity = DeviceIdentity.parse(device_id)
    if identity.seed is None:
        raise ValueError(f"device id must be <task>-<number> (e.g. sine-3, keywords-7), got {device_id!r}")
    task_of_device(device_id)  # the task must exist
    return identity.seed
