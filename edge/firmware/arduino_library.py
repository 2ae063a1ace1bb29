"""An Arduino library of a TinyFleet device (issue 15: ``tinyfleet export arduino``), laid out per the Arduino
library specification (1.5 format, rev. 2.2).

Why a module of its own: the library is a packaging of C that already exists and is tested elsewhere,
so this module copies it rather than writing another firmware. Its layout, as the specification asks:

* ``library.properties``: name, version, author, maintainer, sentence, paragraph, category, url,
  architectures, includes (the fields the specification lists; ``includes`` names ``TinyFleet.h``);
* ``src/``: compiled recursively by the IDE, with ``TinyFleet.h`` the one header a sketch includes
  (every C header wrapped in ``extern "C"``, since a sketch is C++), the model, the device round in C
  (``edge/firmware/device/``: MLP, TASK parser, MODEL/UPDATE codec, round), the TinyOL head
  (``edge/c/tinyol_head.c``), the serial binding (``edge/firmware/serial_link.c``, docs/protocol.md §7)
  and a board layer (``tinyfleet_board.cpp``) that implements ``edge/firmware/board.h`` on the Arduino
  core's ``Serial`` and ``micros()``;
* ``examples/TinyFleetDevice/TinyFleetDevice.ino``: the sketch.

Two kinds of library:

* **a run's MLP** (:func:`write_mlp_library`): the firmware of ``device/sine_firmware.c`` itself, the
  same main loop the QEMU board runs in the federation tests, renamed ``tinyfleet_device_main`` (its
  source is shipped as ``sine_firmware.inc`` and included by ``tinyfleet_device.c``, so the IDE does
  not compile it twice) and called from the sketch's ``loop()``. Its weights are the run's θ
  (``tinyfleet_model.c``, written by the caller in ``edge/firmware/device/mlp.h``'s layout; see
  :data:`MLP_MODEL_SYMBOLS`) and its sensor is a recording of the device's stream, as on QEMU;
* **a compiled .tflite** (:func:`write_model_library`): the model compiler's C (``edge.compiler``) and a
  sketch that runs it on a window of analog readings and trains a TinyOL head on its features.

The library's C is compiled for the nRF52840 with ``arm-none-eabi-gcc`` in ``tests/edge/test_arduino_library.py``
(and the sketch as C++ against a stub ``Arduino.h``); no Arduino core is packaged here, so nothing of it
ran on a board.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.c_head import SOURCE as TINYOL_HEAD_C
from edge.compiler import CompiledModel
from edge.firmware.build import FIRMWARE_DIR, SERIAL_LINK_C
from edge.firmware.device import DEVICE_DIR, LIBRARY, SINE_FIRMWARE_C, c_floats, c_header
from edge.profiles import DeviceProfile
from edge.wire import check_device_id
from edge.wire.encode import encoded_size

LIBRARY_NAME = "TinyFleet"
MAIN_HEADER = "TinyFleet.h"
SKETCH = "TinyFleetDevice"
MODEL_PREFIX = "tinyfleet_model"
# What the caller's tinyfleet_model.{h,c} must define for an MLP library (server.export_run.c_sources writes them).
MLP_MODEL_SYMBOLS = ("TINYFLEET_MODEL_N_LAYERS", "TINYFLEET_MODEL_N_PARAMS", "tinyfleet_model_sizes",
                     "tinyfleet_model_theta", "tinyfleet_model_step_sizes")  # fmt: skip
ARCHITECTURES = "mbed_nano,mbed"  # ArduinoCore-mbed, the Nano 33 BLE (Sense) core: the board the C was compiled for
URL = "https://w3id.org/tinyfleet"
LIBRARY_TASKS = ("sine",)  # tasks whose device firmware write_mlp_library packages (sine_firmware.c)
_HEADERS = [DEVICE_DIR / n for n in ("mlp.h", "task.h", "update.h", "round.h")] + [FIRMWARE_DIR / "serial_link.h",
                                                                                   TINYOL_HEAD_C.with_suffix(".h")]


def check_library_task(task: str) -> None:
    """None for a task the MLP library packages; ValueError with the one-line reason (and what to use) otherwise."""
    if task not in LIBRARY_TASKS:
        raise ValueError(
            f"the Arduino library packages the {', '.join(LIBRARY_TASKS)} device firmware only; task {task!r} is not "
            f"packaged yet (`tinyfleet firmware build --board nano33ble --task {task}` builds a firmware image if it has one)"
        )


@dataclass(frozen=True)
class ArduinoLibrary:
    """A written library: its folder, the files in it (relative paths) and the sketch."""

    root: Path
    files: tuple[str, ...]

    @property
    def sketch(self) -> Path:
        return self.root / "examples" / SKETCH / f"{SKETCH}.ino"

    @property
    def sources(self) -> list[Path]:
        """The C and C++ files the IDE compiles (``src/`` recursively)."""
        return sorted(p for p in (self.root / "src").rglob("*") if p.suffix in (".c", ".cpp"))


def library_properties(version: str, sentence: str, paragraph: str) -> str:
    """``library.properties``: key=value, UTF-8, the fields of the specification's table."""
    fields = {
        "name": LIBRARY_NAME, "version": version, "author": "TinyFleet", "maintainer": "TinyFleet",
        "sentence": sentence, "paragraph": paragraph, "category": "Data Processing", "url": URL,
        "architectures": ARCHITECTURES, "includes": MAIN_HEADER,
    }  # fmt: skip
    for key, value in fields.items():
        if "\n" in value or not value:
            raise ValueError(f"library.properties field {key} must be one non-empty line")
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def _copy_common(src: Path) -> None:
    """The device round, wire codec, serial binding and TinyOL head, as the repository has them."""
    for path in (*LIBRARY, SERIAL_LINK_C, *_HEADERS):
        shutil.copyfile(path, src / path.name)
    # tinyol_head.c times its benchmark helpers with clock_gettime(CLOCK_MONOTONIC), which newlib on a board
    # lacks; the build flag the firmware passes (-DTINYOL_NO_TIMING) cannot be set by a library, so it goes first.
    text = TINYOL_HEAD_C.read_text()
    (src / TINYOL_HEAD_C.name).write_text(
        "/* tinyfleet export arduino: timing helpers off (no CLOCK_MONOTONIC on a board). */\n"
        f"#define TINYOL_NO_TIMING 1\n{text}"
    )


_BOARD_CPP = """\
/* tinyfleet_board.cpp - edge/firmware/board.h on the Arduino core: the UART is Serial, ticks are micros().
 * Written by tinyfleet export arduino. */
#include <Arduino.h>

extern "C" {
#include "board.h"
}

extern "C" void board_init(void) {}
extern "C" void board_uart_write(const uint8_t *data, size_t len) { Serial.write(data, len); }
extern "C" void board_uart_putc(uint8_t c) { Serial.write(c); }
extern "C" uint8_t board_uart_getc(void) {
    while (Serial.available() <= 0) yield();
    return (uint8_t)Serial.read();
}
extern "C" int board_uart_try_getc(void) { return Serial.available() > 0 ? Serial.read() : -1; }
extern "C" uint32_t board_ticks(void) { return (uint32_t)micros(); }
extern "C" void board_debug(const char *text) { (void)text; }
extern "C" void board_exit(int code) {
    (void)code;
    for (;;) yield();
}
"""

_BOARD_CONFIG = """\
/* board_config.h - written by tinyfleet export arduino: the board layer's ticks are micros(). The firmware's
 * "device-instructions" are ticks x BOARD_INSTRUCTIONS_PER_TICK: on a 64 MHz Cortex-M4F at about one
 * instruction per cycle that is an estimate, not a count (QEMU's -icount gives counts). */
#ifndef TINYFLEET_BOARD_CONFIG_H
#define TINYFLEET_BOARD_CONFIG_H
#define BOARD_NAME "arduino"
#define BOARD_TICK_HZ 1000000u
#define BOARD_INSTRUCTIONS_PER_TICK 64u
#endif
"""


def _main_header(model_header: str, extra: Sequence[str] = ()) -> str:
    includes = [*(p.name for p in _HEADERS), model_header]
    return "\n".join([
        f"/* {MAIN_HEADER} - the TinyFleet device library: include this one header in a sketch. */",
        "#ifndef TINYFLEET_H", "#define TINYFLEET_H", "", "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        *(f'#include "{name}"' for name in includes), *extra, "",
        "#ifdef __cplusplus", "}", "#endif", "", "#endif", "",
    ])  # fmt: skip


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _finish(root: Path) -> ArduinoLibrary:
    return ArduinoLibrary(root, tuple(sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())))


def _fresh(out: Path) -> Path:
    """``out`` (created); a non-empty folder that is not a TinyFleet library is refused rather than mixed into."""
    if out.exists() and any(out.iterdir()) and not (out / "library.properties").is_file():
        raise ValueError(f"{out} is not empty and holds no library.properties: give a new --out folder")
    (out / "src").mkdir(parents=True, exist_ok=True)
    return out


def write_mlp_library(
    out: Path | str,
    model_files: Mapping[str, str],
    *,
    device_id: str,
    theta: Mapping[str, np.ndarray],
    sensor: Sequence[tuple[np.ndarray, np.ndarray]],
    profile: DeviceProfile,
    version: str,
    about: str,
) -> ArduinoLibrary:
    """The library of a federated MLP device: sine_firmware.c's round loop with the run's θ and a sensor recording.

    ``model_files`` are ``tinyfleet_model.h`` / ``.c`` defining :data:`MLP_MODEL_SYMBOLS` (θ in mlp.h's
    layout); ``theta`` is the same θ, which sizes the MODEL buffers. ValueError for a model sine_firmware.c
    cannot run (it reads one x and one y per sample), a bad id or an empty recording.
    """
    check_device_id(device_id)
    names = sorted(theta, key=lambda k: (int(k[1:]), k[0] != "w"))
    sizes = [int(theta["w0"].shape[0])] + [int(theta[f"w{i}"].shape[1]) for i in range(len(names) // 2)]
    if sizes[0] != 1 or sizes[-1] != 1:
        raise ValueError(f"the MLP device firmware reads one x and one y per sample; this MLP is {sizes}")
    if not sensor:
        raise ValueError("the sensor recording needs at least one sample")
    missing = [s for s in MLP_MODEL_SYMBOLS if not any(s in text for text in model_files.values())]
    if set(model_files) != {f"{MODEL_PREFIX}.h", f"{MODEL_PREFIX}.c"} or missing:
        raise ValueError(f"model files must be {MODEL_PREFIX}.h/.c defining {', '.join(MLP_MODEL_SYMBOLS)}; missing {missing}")
    root = _fresh(Path(out))
    src = root / "src"
    _copy_common(src)
    shutil.copyfile(SINE_FIRMWARE_C, src / "sine_firmware.inc")
    shutil.copyfile(FIRMWARE_DIR / "board.h", src / "board.h")  # the board interface tinyfleet_board.cpp implements
    max_model = (encoded_size(dict(theta), device_id="x" * 64) + 255) // 256 * 256
    recording = np.array([[float(np.ravel(x)[0]), float(np.ravel(y)[0])] for x, y in sensor], np.float32)
    c_header(src / "device_config.h", {
        "DEVICE_ID": f'"{device_id}"', "N_LAYERS": "TINYFLEET_MODEL_N_LAYERS", "SIZES": "{" + ",".join(map(str, sizes)) + "}",
        "N_PARAMS": "TINYFLEET_MODEL_N_PARAMS", "N_SENSOR_SAMPLES": len(recording), "LOCAL_INIT": "tinyfleet_model_theta",
        "PROFILE_CLOCK_HZ": f"{float(profile.clock_hz)!r}", "PROFILE_SUPPLY_V": repr(float(profile.supply_voltage_v)),
        "PROFILE_ACTIVE_A": repr(float(profile.active_current_a)), "PROFILE_RADIO_BPS": f"{float(profile.radio_bitrate_bps)!r}",
        "PROFILE_TX_A": repr(float(profile.radio_tx_current_a)), "PROFILE_RX_A": repr(float(profile.radio_rx_current_a)),
    }, [f'#include "{MODEL_PREFIX}.h"', c_floats("SENSOR", recording)])  # fmt: skip
    files = {
        **{f"src/{name}": text for name, text in model_files.items()},
        "src/board_config.h": _BOARD_CONFIG,
        "src/tinyfleet_board.cpp": _BOARD_CPP,
        "src/tinyfleet_device.c": (
            "/* tinyfleet_device.c - the device firmware of edge/firmware/device/sine_firmware.c (shipped as\n"
            " * sine_firmware.inc), its main() renamed so the sketch's loop() calls it. Written by tinyfleet export arduino. */\n"
            f"#define DEVICE_MAX_MODEL {max_model}u\n#define main tinyfleet_device_main\n#include \"sine_firmware.inc\"\n"
        ),
        f"src/{MAIN_HEADER}": _main_header(f"{MODEL_PREFIX}.h", [
            "", "/* The device: announces itself on Serial, then runs every round the gateway brings; never returns. */",
            "int tinyfleet_device_main(void);"]),
        f"examples/{SKETCH}/{SKETCH}.ino": _MLP_SKETCH.format(device_id=device_id, about=about, sizes="-".join(map(str, sizes)),
                                                            samples=len(recording)),
        "library.properties": library_properties(version, "A TinyFleet federated-learning device: the meta-model and its round.",
                                                 f"{about}. Joins a TinyFleet federation over Serial through `tinyfleet gateway`."),
    }  # fmt: skip
    _write(root, files)
    return _finish(root)


_MLP_SKETCH = """\
/* {SKETCH}.ino - a TinyFleet device: {about}.
 *
 * The device {device_id} (MLP {sizes}, the run's θ as its starting weights) speaks the serial binding
 * (docs/protocol.md section 7) on Serial; on the host, `tinyfleet gateway --serial /dev/ttyACM0 --id {device_id}
 * --accounts accounts.json` carries its frames to the federation's MQTT broker with the device's own account.
 * Each round it receives TASK and MODEL, learns online from its sensor and replies an UPDATE.
 * The sensor is a recording of {samples} samples of the device's stream in flash (each used once, as on the
 * emulated board); a board with a real sensor replaces the sensor() function of sine_firmware.inc.
 */
#include <TinyFleet.h>

void setup() {{
    Serial.begin(115200);
    while (!Serial) yield(); /* USB serial: wait for the gateway to open the port */
}}

void loop() {{
    tinyfleet_device_main(); /* returns only if the MLP does not fit its arena */
}}
""".replace("{SKETCH}", SKETCH)


def write_model_library(
    out: Path | str, compiled: CompiledModel, *, head_classes: int, version: str, about: str
) -> ArduinoLibrary:
    """The library of a compiled .tflite backbone with a TinyOL head of ``head_classes`` outputs on its features."""
    if head_classes < 2:
        raise ValueError("the TinyOL head needs at least 2 classes")
    if compiled.prefix != MODEL_PREFIX:
        raise ValueError(f"compile the model with prefix {MODEL_PREFIX!r}, not {compiled.prefix!r}")
    x, y = compiled.graph.tensors[compiled.graph.input], compiled.graph.tensors[compiled.graph.output]
    kinds = {"int8": "int8_t", "float32": "float"}
    if x.type_name not in kinds or y.type_name not in kinds:
        raise ValueError(f"the sketch feeds int8 or float32 models; this one takes {x.type_name} and gives {y.type_name}")
    root = _fresh(Path(out))
    _copy_common(root / "src")
    defines = [
        "", "/* The compiled model's input and output (written by tinyfleet export arduino). */",
        f"#define TINYFLEET_N_INPUTS {x.elements}", f"#define TINYFLEET_N_FEATURES {y.elements}",
        f"typedef {kinds[x.type_name]} tinyfleet_input_t;", f"typedef {kinds[y.type_name]} tinyfleet_output_t;",
        f"#define TINYFLEET_INPUT_INT8 {int(x.type_name == 'int8')}", f"#define TINYFLEET_OUTPUT_INT8 {int(y.type_name == 'int8')}",
        f"#define TINYFLEET_INPUT_SCALE {float(x.scale or 1.0)!r}f", f"#define TINYFLEET_INPUT_ZERO_POINT {x.zero_point}",
        f"#define TINYFLEET_OUTPUT_SCALE {float(y.scale or 1.0)!r}f", f"#define TINYFLEET_OUTPUT_ZERO_POINT {y.zero_point}",
    ]  # fmt: skip
    files = {
        **{f"src/{name}": text for name, text in compiled.sources.files.items()},
        f"src/{MAIN_HEADER}": _main_header(f"{MODEL_PREFIX}.h", defines),
        f"examples/{SKETCH}/{SKETCH}.ino": _MODEL_SKETCH.replace("{CLASSES}", str(head_classes)).replace("{ABOUT}", about),
        "library.properties": library_properties(version, "A TinyFleet device model: a compiled backbone and a TinyOL head.",
                                                 f"{about}. The backbone runs as C from one static arena; the head learns on the device."),
    }  # fmt: skip
    _write(root, files)
    return _finish(root)


_MODEL_SKETCH = """\
/* TinyFleetDevice.ino - {ABOUT}: the compiled backbone on a window of sensor readings, and a TinyOL
 * head of {CLASSES} classes that takes one SGD step per labelled sample on the backbone's features (TinyOL).
 *
 * The example's sensor is analog pin A0, read TINYFLEET_N_INPUTS times into the model's input, and its
 * label a button on LABEL_PIN (pressed: class 1); replace read_window() and read_label() with your sensor.
 */
#include <math.h> /* lroundf, INFINITY: not every core's Arduino.h includes it */
#include <TinyFleet.h>

#define HEAD_CLASSES {CLASSES}
#define LABEL_PIN 2
#define LEARNING_RATE 0.01f

static tinyfleet_input_t input[TINYFLEET_N_INPUTS];
static tinyfleet_output_t output[TINYFLEET_N_FEATURES];
static float features[TINYFLEET_N_FEATURES];
static float head_params[(TINYFLEET_N_FEATURES + 1) * HEAD_CLASSES];
static float head_spare[(TINYFLEET_N_FEATURES + 1) * HEAD_CLASSES];
static float head_scratch[HEAD_CLASSES];
static tinyol_head_t head = {TINYFLEET_N_FEATURES, HEAD_CLASSES, TINYOL_CLASSIFICATION, head_params, head_spare,
                             head_scratch, NULL};

static void read_window(void) {
    for (int i = 0; i < TINYFLEET_N_INPUTS; i++) {
        float v = analogRead(A0) / 1023.0f; /* 10-bit reading scaled to [0, 1] */
#if TINYFLEET_INPUT_INT8
        long q = lroundf(v / TINYFLEET_INPUT_SCALE) + TINYFLEET_INPUT_ZERO_POINT;
        input[i] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
#else
        input[i] = v;
#endif
    }
}

static int read_label(void) { return digitalRead(LABEL_PIN) == HIGH ? 1 : 0; }

static int predict(void) {
    int best = 0;
    float best_logit = -INFINITY;
    for (int c = 0; c < HEAD_CLASSES; c++) {
        float z = head.params[TINYFLEET_N_FEATURES * HEAD_CLASSES + c];
        for (int f = 0; f < TINYFLEET_N_FEATURES; f++) z += features[f] * head.params[f * HEAD_CLASSES + c];
        if (z > best_logit) best_logit = z, best = c;
    }
    return best;
}

void setup() {
    Serial.begin(115200);
    pinMode(LABEL_PIN, INPUT);
}

void loop() {
    float loss = 0.0f;
    read_window();
    if (tinyfleet_model_invoke(input, output) != 0) return;
    for (int f = 0; f < TINYFLEET_N_FEATURES; f++) {
#if TINYFLEET_OUTPUT_INT8
        features[f] = (output[f] - TINYFLEET_OUTPUT_ZERO_POINT) * TINYFLEET_OUTPUT_SCALE;
#else
        features[f] = output[f];
#endif
    }
    int guess = predict();
    int status = tinyol_learn_one(&head, features, read_label(), NULL, LEARNING_RATE, &loss);
    Serial.print("predicted ");
    Serial.print(guess);
    Serial.print(" loss ");
    Serial.print(loss);
    Serial.print(" status ");
    Serial.println(status);
    delay(100);
}
"""
