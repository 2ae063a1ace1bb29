"""Firmware facts: a size report checked and recorded for a device; matchmaking uses its measured numbers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import ID, fill
from typer.testing import CliRunner

from edge.profiles import PROFILES
from ontology.cli import app
from ontology.directory import Directory
from ontology.firmware_facts import FirmwareReportError, device_firmware, firmware_facts, record_firmware
from ontology.named_queries import run_named_query
from ontology.store import RegistryStore, open_store
from ontology.thing_description import device_iri, thing_description

#: What `tinyfleet firmware build --board nano33ble --task sine` wrote (edge.firmware.images.FirmwareImage.as_json).
REPORT = {"task": "sine", "board": "nano33ble", "device_id": "sine-3", "elf": "out/sine_firmware.elf",
          "files": ["out/sine_firmware.elf", "out/sine_firmware.bin", "out/sine_firmware.hex"], "sensor_samples": 2000,
          "flash_bytes": 66968, "ram_bytes": 59192, "board_flash_bytes": 983040, "board_ram_bytes": 262144,
          "size": {"text": 66000, "data": 968, "bss": 58224}, "tool": "arm-none-eabi-size -B"}
KWS, PERSON = f"{ID}model/kws-small", f"{ID}model/person-big"


def report(**changes: object) -> dict:
    out = copy.deepcopy(REPORT)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


def sized(ram: int, flash: int, device_id: str = "sine-3") -> dict:
    """A consistent report with these measured sizes (data 0: flash = text, RAM = bss)."""
    return report(device_id=device_id, flash_bytes=flash, ram_bytes=ram, size={"text": flash, "data": 0, "bss": ram})


@pytest.mark.parametrize(("bad", "reason"), [
    (report(board="nano33"), "unknown board 'nano33' (did you mean 'nano33ble'?)"),
    (report(flash_bytes=1), "flash_bytes 1 is not text + data = 66968"),
    (report(ram_bytes=-5), "'ram_bytes' must be a number of bytes >= 0"),
    (report(flash_bytes=True), "'flash_bytes' must be a number of bytes >= 0"),
    (report(size={"text": 1, "data": 2}), "'size' must hold 'text', 'data' and 'bss'"),
    (report(task=None, size=None), "'task' is missing"),
    (report(task="sine wave"), "'task' must be a task name"),
    (report(device_id="sine-9"), "the report is for device 'sine-9', not 'sine-3'"),
    ([REPORT], "a firmware size report is a JSON object"),
])
def test_a_bad_report_is_refused_with_its_reason(bad: object, reason: str) -> None:
    with pytest.raises(FirmwareReportError) as info:
        firmware_facts(bad, "sine-3")
    assert reason in str(info.value)


def test_a_report_is_recorded_replaced_and_outlives_the_devices_td_registration() -> None:
    with open_store("memory:") as store:
        directory = Directory(store)
        directory.put(device_iri("sine-3"), thing_description(PROFILES["nano33ble"], "sine-3"))
        record_firmware(store, REPORT, "sine-3")
        facts = device_firmware(store, "sine-3")
        assert facts is not None and (facts.board, facts.flash_bytes, facts.ram_bytes) == ("nano33ble", 66968, 59192)
        assert (facts.text, facts.data, facts.bss, facts.model) == (66000, 968, 58224, None)
        assert facts.task == f"{ID}task/sine"
        record_firmware(store, sized(60000, 70000), device_iri("sine-3"), model=KWS)  # again: replaced, not added
        directory.put(device_iri("sine-3"), thing_description(PROFILES["nano33ble"], "sine-3"))  # re-announced TD
        facts = device_firmware(store, "sine-3")
        assert facts is not None and (facts.flash_bytes, facts.ram_bytes, facts.model) == (70000, 60000, KWS)
        images = store.query("SELECT ?i WHERE { ?d <https://w3id.org/tinyfleet#runsFirmware> ?i }").rows
        assert len(images) == 1
        assert device_firmware(store, "sine-4") is None


def _fits(store: RegistryStore, device_id: str) -> dict[str, tuple]:
    result = run_named_query(store, "models-for-device", {"device": device_iri(device_id)})
    at = {v: i for i, v in enumerate(result.variables)}
    return {str(r[at["model"]]): r for r in result.rows}, at  # type: ignore[return-value]


def test_models_for_device_uses_the_measured_sizes_where_the_device_runs_the_model() -> None:
    with open_store("memory:") as store:
        fill(store)
        fits, at = _fits(store, "stm-1")  # 256 KB usable RAM: person-big's 300,000 B arena estimate does not fit
        assert KWS in fits and PERSON not in fits
        ram, flash = int(fits[KWS][at["ram"]].toPython()), int(fits[KWS][at["flash"]].toPython())
        assert int(fits[KWS][at["ram_need"]].toPython()) == 50_000  # the estimated arena
        # measured on the board, the person-big image needs less than its estimate: it fits after all
        record_firmware(store, sized(ram - 1, flash - 1, "stm-1"), "stm-1", model=PERSON)
        fits, at = _fits(store, "stm-1")
        assert PERSON in fits and int(fits[PERSON][at["ram_need"]].toPython()) == ram - 1
        assert KWS in fits  # other models keep their estimates
        # an image of kws-small that measured more RAM than the device has: that model no longer fits
        record_firmware(store, sized(ram + 1, 100_000, "stm-1"), "stm-1", model=KWS)
        fits, _ = _fits(store, "stm-1")
        assert KWS not in fits and PERSON not in fits  # one image per device: the person-big image was replaced
        assert KWS in _fits(store, "esp-1")[0]  # another device is not affected


def test_eligible_devices_leaves_out_a_device_whose_measured_image_does_not_fit() -> None:
    with open_store("memory:") as store:
        fill(store)
        params = {"model": KWS, "task": f"{ID}task/kws"}
        result = run_named_query(store, "eligible-devices", params)
        at = {v: i for i, v in enumerate(result.variables)}
        eligible = {str(r[at["device"]]): int(r[at["ram"]].toPython()) for r in result.rows}
        assert {device_iri("esp-1"), device_iri("stm-1")} <= set(eligible)
        esp_ram = eligible[device_iri("esp-1")]
        record_firmware(store, sized(esp_ram - 1, 200_000, "esp-1"), "esp-1", model=KWS)  # fits: still eligible
        assert device_iri("esp-1") in {str(r[at["device"]]) for r in run_named_query(store, "eligible-devices", params).rows}
        record_firmware(store, sized(esp_ram + 1, 200_000, "esp-1"), "esp-1", model=KWS)
        after = {str(r[at["device"]]) for r in run_named_query(store, "eligible-devices", params).rows}
        assert after == set(eligible) - {device_iri("esp-1")}


def test_registry_add_firmware_records_or_refuses_a_report(tmp_path: Path) -> None:
    runner = CliRunner()
    good, bad = tmp_path / "sine_firmware.size.json", tmp_path / "bad.size.json"
    good.write_text(json.dumps(REPORT))
    bad.write_text(json.dumps(report(ram_bytes=1)))
    store = str(tmp_path / "registry")
    result = runner.invoke(app, ["add-firmware", str(good), "--device", "sine-3", "--store", store])
    assert result.exit_code == 0, result.output
    assert "flash 66,968 B, RAM 59,192 B" in result.output and "no TD registered yet" in result.output
    refused = runner.invoke(app, ["add-firmware", str(bad), "--device", "sine-3", "--store", store])
    assert refused.exit_code == 1 and "ram_bytes 1 is not data + bss = 59192" in refused.output
    missing = runner.invoke(app, ["add-firmware", str(tmp_path / "none.json"), "--device", "sine-3", "--store", store])
    assert missing.exit_code == 1 and "cannot read" in missing.output
    with open_store(store, create=False) as opened:  # the refused report changed nothing
        facts = device_firmware(opened, "sine-3")
    assert facts is not None and facts.ram_bytes == 59192
