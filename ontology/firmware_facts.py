"""A device's firmware facts: the image it runs and that image's measured flash and RAM (issue 15).

``tinyfleet firmware build`` writes a size report (``<task>_firmware.size.json``,
:meth:`edge.firmware.images.FirmwareImage.as_json`): the task, the board, the device id and
``arm-none-eabi-size``'s text/data/bss, with flash = text + data and RAM = data + bss. This module
checks such a report and records it for a device:

* the image is ``<device IRI>/firmware`` (one image per device: recording again replaces it),
  a ``tf:FirmwareImage`` with ``tf:firmwareBoard``, ``tf:firmwareTask``, ``tf:firmwareModel``
  (if the caller names the model the image carries), ``tf:firmwareFlashBytes``,
  ``tf:firmwareRamBytes`` and the three sections;
* the device gets ``tf:runsFirmware`` to it. Both live in the image's own named graph, because a
  device's graph is replaced whenever its TD is registered again (an MQTT announce, a PUT), and
  the measured facts must outlive that. A device need not be registered yet: the facts wait for it.

Why measured numbers matter: the model's ``tf:modelSizeBytes`` and ``tf:tensorArenaBytes`` are
estimates from the flatbuffer; the image's sizes are what the board really holds, model, arena,
learner buffers and firmware together. ``models-for-device`` uses them instead of the estimates
for the model the device's image carries, and ``eligible-devices`` leaves out a device whose
measured image does not fit its usable memory (ontology/queries).

>>> report = {"task": "sine", "board": "nano33ble", "device_id": "sine-3", "flash_bytes": 66968, "ram_bytes": 59192,
...           "size": {"text": 66000, "data": 968, "bss": 58224}, "tool": "arm-none-eabi-size -B"}
>>> facts = firmware_facts(report, "sine-3")
>>> facts.flash_bytes, facts.ram_bytes, facts.image
(66968, 59192, 'https://w3id.org/tinyfleet/id/device/sine-3/firmware')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF, XSD

from edge.firmware.build import BOARDS
from edge.identity import RESOURCE_BASE
from ontology.store import RegistryStore, check_iri
from ontology.thing_description import device_iri
from ontology.validation import check_description
from ontology.vocab import TF, bind_prefixes

#: The report's fields this module reads (the rest -- files, ELF path, board limits -- stays in the report).
REQUIRED = ("task", "board", "flash_bytes", "ram_bytes", "size")


class FirmwareReportError(ValueError):
    """The size report cannot be recorded as sent; the message lists what is wrong. Nothing was written."""


@dataclass(frozen=True)
class FirmwareFacts:
    """One measured image of one device."""

    device: str  # IRI
    task: str  # IRI
    board: str
    flash_bytes: int
    ram_bytes: int
    text: int
    data: int
    bss: int
    model: str | None = None  # IRI
    tool: str | None = None

    @property
    def image(self) -> str:
        return f"{self.device}/firmware"

    def graph(self) -> Graph:
        """The image's triples and the device's ``tf:runsFirmware`` link (the image's named graph)."""
        g = bind_prefixes(Graph())
        image = URIRef(self.image)
        g.add((URIRef(self.device), TF.runsFirmware, image))
        g.add((image, RDF.type, TF.FirmwareImage))
        g.add((image, TF.firmwareBoard, Literal(self.board)))
        g.add((image, TF.firmwareTask, URIRef(self.task)))
        if self.model is not None:
            g.add((image, TF.firmwareModel, URIRef(self.model)))
        for prop, value in ((TF.firmwareFlashBytes, self.flash_bytes), (TF.firmwareRamBytes, self.ram_bytes),
                            (TF.firmwareTextBytes, self.text), (TF.firmwareDataBytes, self.data),
                            (TF.firmwareBssBytes, self.bss)):  # fmt: skip
            g.add((image, prop, Literal(value, datatype=XSD.integer)))
        if self.tool:
            g.add((image, TF.firmwareSizeTool, Literal(self.tool)))
        return g


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def firmware_facts(report: Any, device: str, model: str | None = None) -> FirmwareFacts:
    """The facts of a size report for ``device`` (a device id or IRI), or FirmwareReportError listing every problem.

    The report must be consistent with itself (flash = text + data, RAM = data + bss, as
    ``arm-none-eabi-size`` defines them), name a known board, and, if it names a device, name this one.
    """
    if not isinstance(report, dict):
        raise FirmwareReportError("a firmware size report is a JSON object (tinyfleet firmware build writes <task>_firmware.size.json)")
    problems = [f"'{key}' is missing" for key in REQUIRED if key not in report]
    iri = str(check_iri(device)) if ":" in device else device_iri(device)
    board, task = report.get("board"), report.get("task")
    if "board" in report and board not in BOARDS:
        near = get_close_matches(str(board), list(BOARDS), n=1)
        problems.append(f"unknown board {board!r}" + (f" (did you mean {near[0]!r}?)" if near else "") + f"; boards: {', '.join(sorted(BOARDS))}")
    if "task" in report and (not isinstance(task, str) or not task or any(c in task for c in " <>\"{}|^`\\")):
        problems.append(f"'task' must be a task name such as 'sine' or a task IRI (got {task!r})")
    named = report.get("device_id")
    if named is not None and device_iri(str(named)) != iri and str(named) != iri:
        problems.append(f"the report is for device {named!r}, not {device!r}")
    size = report.get("size")
    sections = {k: size.get(k) for k in ("text", "data", "bss")} if isinstance(size, dict) else {}
    if "size" in report and (not sections or not all(_size(v) for v in sections.values())):
        problems.append("'size' must hold 'text', 'data' and 'bss', each a number of bytes >= 0")
    for key in ("flash_bytes", "ram_bytes"):
        if key in report and not _size(report[key]):
            problems.append(f"'{key}' must be a number of bytes >= 0 (got {report[key]!r})")
    if not problems and sections:
        if report["flash_bytes"] != sections["text"] + sections["data"]:
            problems.append(f"flash_bytes {report['flash_bytes']} is not text + data = {sections['text'] + sections['data']}")
        if report["ram_bytes"] != sections["data"] + sections["bss"]:
            problems.append(f"ram_bytes {report['ram_bytes']} is not data + bss = {sections['data'] + sections['bss']}")
    if model is not None and ":" not in model:
        problems.append(f"--model must be the model's IRI, e.g. {RESOURCE_BASE}model/<name> (got {model!r})")
    if problems:
        raise FirmwareReportError("size report refused:\n" + "\n".join(f"  - {p}" for p in problems))
    task_iri = str(check_iri(task)) if ":" in task else f"{RESOURCE_BASE}task/{task}"
    tool = report.get("tool")
    return FirmwareFacts(iri, task_iri, str(board), report["flash_bytes"], report["ram_bytes"], sections["text"],
                         sections["data"], sections["bss"], None if model is None else str(check_iri(model)),
                         tool if isinstance(tool, str) else None)  # fmt: skip


def read_report(path: Path | str) -> Any:
    """The JSON of a size report file, or FirmwareReportError saying why it cannot be read."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FirmwareReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FirmwareReportError(f"{path} is not a JSON size report: {exc}") from None


def record_firmware(store: RegistryStore, report: Any, device: str, model: str | None = None) -> FirmwareFacts:
    """Check ``report`` and record it as ``device``'s firmware facts (replacing earlier ones); the facts recorded.

    The one call ``tinyfleet firmware build`` makes once it has written its report::

        record_firmware(store, image.as_json(), image.device_id, model=None)
    """
    facts = firmware_facts(report, device, model)
    graph = check_description(facts.graph())
    store.put_graph(facts.image, graph)
    return facts


def device_firmware(store: RegistryStore, device: str) -> FirmwareFacts | None:
    """The firmware facts recorded for ``device`` (id or IRI), or None."""
    iri = str(check_iri(device)) if ":" in device else device_iri(device)
    rows = store.query(
        "PREFIX tf: <https://w3id.org/tinyfleet#> SELECT ?task ?board ?flash ?ram ?text ?data ?bss ?model ?tool WHERE {"
        f" {URIRef(iri).n3()} tf:runsFirmware ?image . ?image tf:firmwareTask ?task ; tf:firmwareBoard ?board ;"
        " tf:firmwareFlashBytes ?flash ; tf:firmwareRamBytes ?ram ; tf:firmwareTextBytes ?text ;"
        " tf:firmwareDataBytes ?data ; tf:firmwareBssBytes ?bss ."
        " OPTIONAL { ?image tf:firmwareModel ?model } OPTIONAL { ?image tf:firmwareSizeTool ?tool } }",
        isolate=False, self_contained=True,
    ).rows  # fmt: skip
    if not rows:
        return None
    task, board, flash, ram, text, data, bss, model, tool = rows[0]
    ints = [int(v.toPython()) for v in (flash, ram, text, data, bss)]  # type: ignore[union-attr]
    return FirmwareFacts(iri, str(task), str(board), *ints, model=None if model is None else str(model),
                         tool=None if tool is None else str(tool))  # fmt: skip


__all__ = ["FirmwareFacts", "FirmwareReportError", "device_firmware", "firmware_facts", "read_report", "record_firmware"]
