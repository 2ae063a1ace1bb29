"""The Fleet page's rows: every device the registry (or the broker) knows, with what fits it and why it is left out.

One row joins four sources by device IRI: the Thing Description (profile,
RAM/flash, sensors, runtime), the broker's retained status and telemetry
(:mod:`server.console.presence`), the rounds of the run (who took part,
``rounds.jsonl``) and the registry's matchmaking: ``models-for-device`` run
once for every device (the shipped query with its ``device`` left unbound),
``eligible-devices`` for each federation's model and task, and, for a device
it leaves out, the facts that say why (the same comparisons, in the same
words, as the server's :class:`server.registry.registry_selection.AnnouncedSelection`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge.identity import RESOURCE_BASE
from edge.profiles import PROFILES
from server.console.presence import DeviceSeen
from server.registry.registry_selection import exclusion_reason

DEVICE_BASE = f"{RESOURCE_BASE}device/"
TF = "https://w3id.org/tinyfleet#"

FEDERATIONS = """PREFIX tf: <https://w3id.org/tinyfleet#>
SELECT ?federation ?model ?task ?task_label WHERE {
  ?federation a tf:Federation ; tf:trainsModel ?model ; tf:forTask ?task .
  OPTIONAL { ?task <http://www.w3.org/2000/01/rdf-schema#label> ?task_label }
}"""


@dataclass(frozen=True)
class Federation:
    """A federation the registry knows: what it trains, on which task."""

    iri: str
    model: str
    task: str
    task_label: str

    @property
    def name(self) -> str:
        return self.iri.rsplit("/", 1)[-1]


@dataclass
class DeviceRow:
    """One device as the Fleet page shows it."""

    iri: str
    device_id: str
    title: str = ""
    profile: str = ""
    ram_bytes: int | None = None
    flash_bytes: int | None = None
    sensors: tuple[str, ...] = ()
    runtime: str = ""
    online: bool | None = None
    last_seen: float | None = None
    registered: bool = False
    models: tuple[str, ...] = ()  # names of the models that fit it
    rounds: tuple[int, ...] = ()  # rounds of this run it took part in
    bytes_up: int = 0
    bytes_down: int = 0
    energy_j: float = 0.0
    eligible: dict[str, bool] = field(default_factory=dict)  # federation name -> eligible
    reasons: dict[str, str] = field(default_factory=dict)  # federation name -> why not

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(sorted(self.eligible))


def _local(term: Any) -> str:
    text = term.get("@id") if isinstance(term, dict) else term
    text = str(text or "")
    return text.split(":", 1)[1] if text.startswith("tf:") else text.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def profile_of(td: Mapping[str, Any]) -> str:
    """The device profile a TD's board is (``Arduino Nano 33 BLE Sense (sine-0)`` -> ``nano33ble``)."""
    board = str(td.get("title", "")).rsplit(" (", 1)[0]
    return next((p.name for p in PROFILES.values() if p.board == board), board)


def row_from_td(td: Mapping[str, Any], registered: bool) -> DeviceRow:
    """What a Thing Description says about its device."""
    iri = str(td.get("id", ""))
    mcu = td.get("tf:hasMicrocontroller") if isinstance(td.get("tf:hasMicrocontroller"), dict) else {}
    sensors = td.get("tf:hasSensor") or []
    return DeviceRow(
        iri=iri, device_id=iri[len(DEVICE_BASE):] if iri.startswith(DEVICE_BASE) else iri, title=str(td.get("title", "")),
        profile=profile_of(td), ram_bytes=_int(mcu.get("tf:ramBytes")), flash_bytes=_int(mcu.get("tf:flashBytes")),
        sensors=tuple(sorted(_local(s.get("@type")) for s in sensors if isinstance(s, dict))),
        runtime=_local(td.get("tf:supportsRuntime")), registered=registered,
    )  # fmt: skip


def needs_by_model(rows: Iterable[Mapping[str, str]]) -> dict[str, tuple[set[str], int, int]]:
    out: dict[str, tuple[set[str], int, int]] = {}
    for row in rows:
        runtimes, size, ram = out.get(row["model"], (set(), 0, 0))
        out[row["model"]] = (runtimes | {row["runtime"]}, max(size, int(row["size"])), max(ram, int(row["training_ram"])))
    return out


def offers_by_device(rows: Iterable[Mapping[str, str]]) -> dict[str, tuple[set[str], int, int]]:
    out: dict[str, tuple[set[str], int, int]] = {}
    for row in rows:
        runtimes, _ram, _flash = out.get(row["device"], (set(), 0, 0))
        out[row["device"]] = (runtimes | {row["runtime"]}, int(row["ram"]), int(row["flash"]))
    return out


@dataclass
class RegistryFacts:
    """What the registry said, in one refresh, that the rows need."""

    things: list[dict[str, Any]] = field(default_factory=list)
    fits: dict[str, list[str]] = field(default_factory=dict)  # device IRI -> model names
    federations: list[Federation] = field(default_factory=list)
    eligible: dict[str, set[str]] = field(default_factory=dict)  # federation name -> device IRIs
    needs: dict[str, tuple[set[str], int, int]] = field(default_factory=dict)
    offers: dict[str, tuple[set[str], int, int]] = field(default_factory=dict)
    error: str | None = None  # why some of it is missing


def fleet_rows(facts: RegistryFacts, seen: Mapping[str, DeviceSeen], rounds: Sequence[Mapping[str, Any]]) -> list[DeviceRow]:
    """Every device of the registry, and every device only the broker knows, as rows sorted by device id."""
    rows = {td["id"]: row_from_td(td, True) for td in facts.things if isinstance(td.get("id"), str)
            and "tf:Device" in (td.get("@type") if isinstance(td.get("@type"), list) else [td.get("@type")])}
    for device_id, info in seen.items():
        iri = DEVICE_BASE + device_id
        if iri not in rows:
            rows[iri] = row_from_td(info.td, False) if info.td else DeviceRow(iri=iri, device_id=device_id)
            rows[iri].device_id = device_id
    took_part: dict[str, list[int]] = {}
    for record in rounds:
        for participant in record.get("participants") or ():
            took_part.setdefault(str(participant), []).append(int(record["round"]))
    for iri, row in rows.items():
        info = seen.get(row.device_id)
        if info is not None:
            row.online, row.last_seen = info.online, info.last_seen
            row.bytes_up, row.bytes_down, row.energy_j = info.bytes_up, info.bytes_down, info.energy_j
        row.rounds = tuple(took_part.get(iri, ()))
        row.models = tuple(sorted(facts.fits.get(iri, ())))
        for federation in facts.federations:
            eligible = iri in facts.eligible.get(federation.name, set())
            row.eligible[federation.name] = eligible
            if not eligible:
                row.reasons[federation.name] = (exclusion_reason(facts.offers.get(iri), facts.needs.get(federation.model))
                                                if row.registered else "no Thing Description registered")
    return sorted(rows.values(), key=lambda r: _natural(r.device_id))


def _natural(text: str) -> tuple[Any, ...]:
    """``sine-2`` before ``sine-10``."""
    head, _, tail = text.rpartition("-")
    return (head, int(tail), "") if tail.isdigit() else (text, -1, text)


@dataclass(frozen=True)
class FleetFilter:
    """The Fleet page's filters (query parameters): a task, a profile, eligible / excluded."""

    task: str = ""  # a federation's task label or IRI
    profile: str = ""
    eligibility: str = ""  # "", "eligible" or "excluded"

    def federations(self, facts: RegistryFacts) -> list[Federation]:
        return [f for f in facts.federations if not self.task or self.task in (f.task, f.task_label)]

    def keep(self, row: DeviceRow, federations: Sequence[Federation]) -> bool:
        if self.profile and row.profile != self.profile:
            return False
        names = [f.name for f in federations]
        if self.task and not names:
            return False
        if self.eligibility == "eligible":
            return any(row.eligible.get(n) for n in names)
        if self.eligibility == "excluded":
            return bool(names) and not any(row.eligible.get(n) for n in names)
        return True
