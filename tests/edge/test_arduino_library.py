"""The Arduino library (edge.firmware.arduino_library): its layout per the Arduino library specification, and its
C and C++ compiled for the Nano 33 BLE Sense's nRF52840 with arm-none-eabi-gcc.

No Arduino core is packaged on this machine (Debian has only the AVR core and no arduino-cli), so the sketch and
the board layer are compiled as C++ against a small stub ``Arduino.h`` this test writes (the few calls they make:
Serial, micros, yield, analogRead, digitalRead, pinMode, delay), and everything is linked into one ELF with
newlib-nano to prove no symbol is missing. Nothing here runs on a board.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge.compiler import compile_model
from edge.firmware.arduino_library import (
    MODEL_PREFIX,
    ArduinoLibrary,
    library_properties,
    write_mlp_library,
    write_model_library,
)
from edge.firmware.build import CPU_FLAGS, image_size, toolchain_available
from edge.mlp import init_mlp_weights
from edge.profiles import get_profile

pytestmark = pytest.mark.skipif(not toolchain_available(), reason="arm-none-eabi-gcc not installed (make system-deps)")

REQUIRED_FIELDS = ("name", "version", "author", "maintainer", "sentence", "paragraph", "category", "url", "architectures")

STUB_ARDUINO_H = """\
/* A stub of the Arduino core's API, only what the TinyFleet library and its examples call. */
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#define HIGH 1
#define LOW 0
#define INPUT 0
#define A0 14
class StubSerial {
  public:
    void begin(unsigned long baud);
    size_t write(uint8_t c);
    size_t write(const uint8_t *data, size_t len);
    int available();
    int read();
    explicit operator bool() const { return true; }
    template <typename T> size_t print(T value) { (void)value; return 0; }
    template <typename T> size_t println(T value) { (void)value; return 0; }
};
extern StubSerial Serial;
unsigned long micros(void);
void yield(void);
void delay(unsigned long ms);
int analogRead(uint8_t pin);
int digitalRead(uint8_t pin);
void pinMode(uint8_t pin, uint8_t mode);
void setup(void);
void loop(void);
"""

STUB_ARDUINO_CPP = """\
#include "Arduino.h"
StubSerial Serial;
void StubSerial::begin(unsigned long baud) { (void)baud; }
size_t StubSerial::write(uint8_t c) { (void)c; return 1; }
size_t StubSerial::write(const uint8_t *data, size_t len) { (void)data; return len; }
int StubSerial::available() { return 0; }
int StubSerial::read() { return -1; }
unsigned long micros(void) { return 0; }
void yield(void) {}
void delay(unsigned long ms) { (void)ms; }
int analogRead(uint8_t pin) { return pin; }
int digitalRead(uint8_t pin) { return pin & 1; }
void pinMode(uint8_t pin, uint8_t mode) { (void)pin; (void)mode; }
int main(void) { setup(); for (;;) loop(); }
"""


def compile_for_nano(library: ArduinoLibrary, build: Path) -> Path:
    """Every src/ file and the sketch compiled for the nRF52840 (Cortex-M4F, hard float), linked with the stub core."""
    stub = build / "stub"
    stub.mkdir(parents=True)
    (stub / "Arduino.h").write_text(STUB_ARDUINO_H)
    (stub / "Arduino.cpp").write_text(STUB_ARDUINO_CPP)
    sketch = build / "sketch.cpp"  # what the IDE makes of an .ino: Arduino.h first, then the sketch
    sketch.write_text('#include <Arduino.h>\n#line 1 "TinyFleetDevice.ino"\n' + library.sketch.read_text())
    flags = [*CPU_FLAGS, "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections", "-fdata-sections",
             f"-I{library.root / 'src'}", f"-I{stub}"]  # fmt: skip
    objects = []
    for source in [*library.sources, stub / "Arduino.cpp", sketch]:
        obj = build / f"{source.parent.name}_{source.name}.o"
        cpp = source.suffix == ".cpp"
        cmd = ["arm-none-eabi-g++" if cpp else "arm-none-eabi-gcc", *flags,
               *(("-std=gnu++17", "-fno-exceptions", "-fno-rtti") if cpp else ("-std=gnu11",)), "-c", str(source), "-o", str(obj)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{source.name}:\n{done.stderr}"
        objects.append(str(obj))
    elf = build / "library.elf"
    link = ["arm-none-eabi-gcc", *CPU_FLAGS, "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
            *objects, "-lm", "-o", str(elf)]  # fmt: skip
    done = subprocess.run(link, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return elf


def mlp_library(out: Path) -> ArduinoLibrary:
    from server.export_run import RunModel, c_sources

    theta = init_mlp_weights((1, 40, 40, 1), 0)
    run = RunModel(theta, {k: np.full_like(v, 0.5) for k, v in theta.items()}, "sine", (1, 40, 40, 1), 7, "tinyreptile", (), out)
    sensor = [(np.array([x], np.float32), np.array([np.sin(x)], np.float32)) for x in np.linspace(-5, 5, 200)]
    return write_mlp_library(out, c_sources(run, MODEL_PREFIX), device_id="sine-3", theta=theta, sensor=sensor,
                             profile=get_profile("nano33ble"), version="0.1.0", about="the sine meta-model of a test run")  # fmt: skip


def check_layout(library: ArduinoLibrary) -> dict[str, str]:
    properties = dict(line.split("=", 1) for line in (library.root / "library.properties").read_text().splitlines())
    assert all(properties.get(k) for k in REQUIRED_FIELDS), properties
    assert properties["name"] == "TinyFleet" and properties["includes"] == "TinyFleet.h"
    assert properties["category"] == "Data Processing"  # one of the specification's categories
    assert (library.root / "src" / "TinyFleet.h").is_file() and library.sketch.is_file()
    return properties


def test_the_mlp_library_is_laid_out_per_the_specification_and_compiles_for_the_nrf52840(tmp_path: Path) -> None:
    library = mlp_library(tmp_path / "TinyFleet")
    check_layout(library)
    names = {Path(f).name for f in library.files}
    assert {"round.c", "mlp.c", "task.c", "update.c", "serial_link.c", "tinyol_head.c", "tinyfleet_model.c",
            "tinyfleet_board.cpp", "tinyfleet_device.c", "sine_firmware.inc", "device_config.h"} <= names  # fmt: skip
    assert "#define DEVICE_ID \"sine-3\"" in (library.root / "src" / "device_config.h").read_text()
    elf = compile_for_nano(library, tmp_path / "build")
    size = image_size(elf)
    print(f"MLP library + stub core for the nRF52840: flash {size.flash_bytes:,} B, RAM {size.ram_bytes:,} B")
    assert size.flash_bytes < 0xF0000 and size.ram_bytes < 256 * 1024  # the Nano's application flash and RAM


def test_the_model_library_compiles_the_backbone_and_the_head(backbone_models, tmp_path: Path) -> None:
    compiled = compile_model(backbone_models.int8_path.read_bytes(), MODEL_PREFIX)
    library = write_model_library(tmp_path / "TinyFleet", compiled, head_classes=3, version="0.1.0", about="the sine backbone")
    check_layout(library)
    names = {Path(f).name for f in library.files}
    assert {"tinyfleet_model.c", "fully_connected.c", "tinyol_head.c", "serial_link.c", "round.c"} <= names
    assert "#define HEAD_CLASSES 3" in library.sketch.read_text()
    elf = compile_for_nano(library, tmp_path / "build")
    size = image_size(elf)
    print(f"model library + stub core for the nRF52840: flash {size.flash_bytes:,} B, RAM {size.ram_bytes:,} B")


def test_bad_inputs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    from server.export_run import RunModel, c_sources

    theta = init_mlp_weights((2, 4, 1), 0)
    files = c_sources(RunModel(theta, None, "sine", (2, 4, 1), 1, "fedavg", (), tmp_path), MODEL_PREFIX)
    sensor = [(np.zeros(2, np.float32), np.zeros(1, np.float32))]
    with pytest.raises(ValueError, match=r"one x and one y per sample; this MLP is \[2, 4, 1\]"):
        write_mlp_library(tmp_path / "a", files, device_id="sine-1", theta=theta, sensor=sensor,
                          profile=get_profile("nano33ble"), version="0.1.0", about="x")  # fmt: skip
    with pytest.raises(ValueError, match="not a valid device id|device id"):
        write_mlp_library(tmp_path / "b", files, device_id="no spaces", theta=init_mlp_weights((1, 4, 1), 0),
                          sensor=sensor, profile=get_profile("nano33ble"), version="0.1.0", about="x")  # fmt: skip
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        mlp_library(tmp_path / "busy")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="one non-empty line"):
        library_properties("0.1.0", "two\nlines", "p")


def test_only_tasks_whose_firmware_is_packaged_are_taken() -> None:
    from edge.firmware.arduino_library import check_library_task

    check_library_task("sine")
    with pytest.raises(ValueError, match="task 'keywords' is not packaged yet"):
        check_library_task("keywords")
