"""One device identity: seed, device id, Flower node id and registry IRI.

A simulated device is generated from an integer *seed* (its task, its
profile, its data stream); on the wire and in the registry it is known by its
*device id*; Flower knows it by a 63-bit *node id*; the registry by an *IRI*.
Every conversion between them lives here, so the transports, the registry
link and the experiments cannot drift apart.

>>> ident = DeviceIdentity.of_seed(7)
>>> ident.device_id, DeviceIdentity.parse(ident.device_id).seed
('sine-7', 7)
>>> ident.iri
'https://w3id.org/tinyfleet/id/device/sine-7'
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: Where registry resources are minted (devices, models, rounds ...); ``ontology.vocab`` re-exports it.
RESOURCE_BASE = "https://w3id.org/tinyfleet/id/"
#: The family of the default sine-regression devices; a device id is ``<family>-<seed>``.
DEFAULT_FAMILY = "sine"

#: Seed ranges of every simulated fleet (sine and the task families). Training fleets use seeds from 0;
#: validation devices (used to choose settings) start at VALIDATION_SEED_BASE; held-out test devices, reported
#: on and never used for any choice, at TEST_SEED_BASE.
VALIDATION_SEED_BASE = 1_000_000
TEST_SEED_BASE = 2_000_000

_DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEEDED_ID = re.compile(r"^(?P<family>[A-Za-z][A-Za-z0-9_]*)-(?P<seed>0|[1-9][0-9]{0,17})$")


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is safe as an MQTT topic level and an IRI segment, else ValueError saying why."""
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise ValueError(f"device id {device_id!r} must be 1-128 characters of letters, digits, '.', '_' or '-'")
    return device_id


def device_iri(device_id: str) -> str:
    """IRI of a device in the registry; ``device_id`` is restricted so it cannot break the IRI."""
    return f"{RESOURCE_BASE}device/{check_device_id(device_id)}"


def node_id_of(device_id: str) -> int:
    """A stable 63-bit Flower node id for a device id, the same after a server restart."""
    value = int.from_bytes(hashlib.sha256(check_device_id(device_id).encode("ascii")).digest()[:8], "little") >> 1
    return value if value > 1 else value + 2  # 0 is invalid and 1 is the SuperLink's own id


@dataclass(frozen=True)
class DeviceIdentity:
    """A device's names: ``device_id`` always; ``seed`` when the device is generated (simulated)."""

    device_id: str
    seed: int | None = None

    def __post_init__(self) -> None:
        check_device_id(self.device_id)

    @classmethod
    def of_seed(cls, seed: int, family: str = DEFAULT_FAMILY) -> DeviceIdentity:
        if int(seed) < 0:
            raise ValueError(f"a device seed is a non-negative integer, got {seed}")
        return cls(f"{family}-{int(seed)}", int(seed))

    @classmethod
    def parse(cls, device_id: str) -> DeviceIdentity:
        """The identity of ``device_id``; its seed if it has the ``<family>-<seed>`` form of a generated device."""
        match = _SEEDED_ID.match(check_device_id(device_id))
        return cls(device_id, int(match["seed"]) if match else None)

    @property
    def iri(self) -> str:
        return device_iri(self.device_id)

    @property
    def node_id(self) -> int:
        return node_id_of(self.device_id)


def device_id_of(seed: int, family: str = DEFAULT_FAMILY) -> str:
    """The device id of the generated device with this seed (``sine-7``)."""
    return DeviceIdentity.of_seed(seed, family).device_id
